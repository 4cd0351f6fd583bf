/*
 * fuzz_chunked -- the chunked body decoder (pt_http_chunked_next and
 * pt_http_chunked_took, core/http/pt_http.c) on arbitrary bytes, as a
 * client or a backend may frame a body.
 *
 * The first input byte gives the size of the pieces the rest arrives in (1
 * to 127 bytes, or whole for 0) and how much of each payload run the caller takes
 * at a time.  The decoder's verdict (done, error or more) and the payload
 * it yields must not depend on either: they are compared with a decode of
 * the whole input taken in one go.  A body it accepts is re-framed as the
 * proxy forwards it (one chunk per run, then "0\r\n\r\n") and decoding that
 * gives the same payload back.  The re-framing keeps the last chunk and the
 * trailer fields as the decoder copies them (pt_chunked.end_to, as the
 * proxy passes trailers on), and the copy must not depend on the pieces
 * either.  Never a read or write out of bounds (ASan).
 */
#include "http/pt_http.h"

#include <event2/buffer.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct decoded {
    ssize_t end; /* PT_CHUNKED_DONE, PT_CHUNKED_ERROR or PT_CHUNKED_MORE */
    struct evbuffer *payload;
    struct evbuffer *reframed; /* as the proxy forwards it */
    struct evbuffer *last;     /* the end as the decoder copied it: last chunk, trailers, CRLF */
};

/* Decodes data[0..size) fed `step` bytes at a time (0: whole), taking at most `take` bytes per call. */
static struct decoded decode(const uint8_t *data, size_t size, size_t step, size_t take)
{
    struct pt_chunked c = {0};
    struct decoded d = {PT_CHUNKED_MORE, evbuffer_new(), evbuffer_new(), evbuffer_new()};
    struct evbuffer *in = evbuffer_new();
    if (!d.payload || !d.reframed || !d.last || !in)
        abort();
    size_t off = 0;
    for (;;) {
        struct pt_http_err err = {400, NULL};
        c.end_to = d.last;
        ssize_t r = pt_http_chunked_next(&c, in, &err);
        if (r > 0) {
            if ((size_t)r > evbuffer_get_length(in))
                abort(); /* payload announced that is not there */
            size_t n = take && take < (size_t)r ? take : (size_t)r;
            char hdr[24];
            evbuffer_add(d.reframed, hdr, (size_t)snprintf(hdr, sizeof(hdr), "%zx\r\n", n));
            unsigned char *p = evbuffer_pullup(in, (ev_ssize_t)n);
            evbuffer_add(d.reframed, p, n);
            evbuffer_add(d.reframed, "\r\n", 2);
            evbuffer_remove_buffer(in, d.payload, n);
            pt_http_chunked_took(&c, n);
            continue;
        }
        if (r == PT_CHUNKED_ERROR) {
            if (!err.msg)
                abort(); /* an error that does not say why */
            d.end = r;
            break;
        }
        if (r == PT_CHUNKED_DONE) {
            evbuffer_add(d.reframed, evbuffer_pullup(d.last, -1), evbuffer_get_length(d.last));
            d.end = r;
            break;
        }
        if (r != PT_CHUNKED_MORE)
            abort();
        if (off == size)
            break;
        size_t n = !step || size - off < step ? size - off : step;
        evbuffer_add(in, data + off, n);
        off += n;
    }
    evbuffer_free(in);
    return d;
}

static bool same(struct evbuffer *a, struct evbuffer *b)
{
    size_t n = evbuffer_get_length(a);
    return n == evbuffer_get_length(b) && (!n || !memcmp(evbuffer_pullup(a, -1), evbuffer_pullup(b, -1), n));
}

static void release(struct decoded *d)
{
    evbuffer_free(d->payload);
    evbuffer_free(d->reframed);
    evbuffer_free(d->last);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0;
    size_t step = data[0] >> 1, take = (data[0] & 1) ? 7 : 0;
    data++;
    size--;
    struct decoded whole = decode(data, size, 0, 0);
    struct decoded parts = decode(data, size, step, take);
    if (whole.end != parts.end || (whole.end == PT_CHUNKED_DONE && !same(whole.payload, parts.payload))) {
        fprintf(stderr, "in %zu-byte pieces: end %zd, %zu payload bytes; whole: end %zd, %zu bytes\n", step,
                parts.end, evbuffer_get_length(parts.payload), whole.end, evbuffer_get_length(whole.payload));
        abort();
    }
    if (whole.end == PT_CHUNKED_DONE && !same(whole.last, parts.last)) {
        fprintf(stderr, "in %zu-byte pieces the copied end differs\n", step);
        abort();
    }
    if (whole.end == PT_CHUNKED_DONE) {
        size_t n = evbuffer_get_length(whole.reframed);
        uint8_t *copy = malloc(n ? n : 1);
        if (!copy)
            abort();
        memcpy(copy, evbuffer_pullup(whole.reframed, -1), n);
        struct decoded again = decode(copy, n, 0, 0);
        if (again.end != PT_CHUNKED_DONE || !same(again.payload, whole.payload)) {
            fprintf(stderr, "the re-framed body does not decode to the same payload\n");
            abort();
        }
        release(&again);
        free(copy);
    }
    release(&whole);
    release(&parts);
    return 0;
}

/* Seeds for the standalone runner (standalone.c): bodies, after the byte it adds. */
const char *fuzz_name = "fuzz_chunked";
const char *const fuzz_seeds[] = {
    "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    "5;ext=1;name=\"q\"\r\nhello\r\n0\r\nTrailer: x\r\nOther: y\r\n\r\n",
    "00000A\r\n0123456789\r\n0\r\n\r\n",
    "fffffffffffffffff\r\nx\r\n",
    "1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0;last\r\n\r\n",
    "3\r\nabc\n0\r\n\r\n",
    "0\r\n\r\nafter",
    "-1\r\n",
    "1 \r\nx\r\n0\r\n\r\n",
    NULL,
};
