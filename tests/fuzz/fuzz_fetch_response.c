/*
 * fuzz_fetch_response -- the outbound client's response parser
 * (pt_fetch_parse: head scanner, llhttp head parser, chunked decoder, size
 * cap) on arbitrary bytes, as an identity provider or any server the
 * gateway fetches from may send them.
 *
 * The first input byte picks how the rest is fed: whole, or in pieces of
 * 1 to 255 bytes, with or without an end of stream, so that every state of
 * the incremental parser meets a boundary.  Whatever the bytes, the parser
 * must end in a complete response, a need for more, or an error -- never a
 * read or write out of bounds (run under ASan), and never a body over the
 * cap.
 */
#include "http/pt_fetch.h"

#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>

#define FUZZ_MAX_BODY 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned mode = data[0];
    data++;
    size--;
    size_t step = mode & 0x7f ? (mode & 0x7f) * 2 - 1 : size;
    bool eof = mode & 0x80;
    struct pt_fetch_parser p;
    pt_fetch_parser_init(&p, FUZZ_MAX_BODY, false);
    struct evbuffer *in = evbuffer_new();
    char err[256];
    int rc = 0;
    size_t off = 0;
    while (rc == 0 && off < size) {
        size_t n = size - off < step ? size - off : step;
        evbuffer_add(in, data + off, n);
        off += n;
        rc = pt_fetch_parse(&p, in, false, err, sizeof(err));
    }
    if (rc == 0 && eof)
        rc = pt_fetch_parse(&p, in, true, err, sizeof(err));
    if (rc == 1 && evbuffer_get_length(p.body) > FUZZ_MAX_BODY)
        abort(); /* the cap did not hold */
    if (rc == 1 && (p.h.status < 200 || p.h.status > 999))
        abort(); /* an interim or invalid status taken as the answer */
    evbuffer_free(in);
    pt_fetch_parser_free(&p);
    return 0;
}

/* Seeds for the standalone runner (standalone.c). */
const char *fuzz_name = "fuzz_fetch_response";
const char *const fuzz_seeds[] = {
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"keys\": []}\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: "
    "x\r\n\r\n",
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 "
    "OK\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody until the end",
    "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n",
    "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1/\r\nContent-Length: 0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\n\0\r\n0\r\n\r\n",
    NULL,
};
