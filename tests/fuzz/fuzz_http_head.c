/*
 * fuzz_http_head -- the three gates an HTTP/1 head passes (core/http/
 * pt_http.c) on arbitrary bytes, as a client sends a request or a backend
 * a response: the head scanner, then llhttp's parse and the framing checks.
 *
 * The first input byte says what the rest is: a request or a response (bit
 * 0), the answer to a HEAD request (bit 1), and in what pieces it reaches
 * the scanner (bits 2-7: 1 to 63 bytes, or whole).  The scanner's verdict
 * (the head's length, a need for more, or the error status) must not depend
 * on the pieces: it is compared with a scan of the whole input.  An
 * accepted head has its slices inside the copy, header values free of
 * control bytes, a request path that starts with '/' (or is "*") and holds
 * no dot segments, a valid Host, and framing that agrees with itself and
 * with the body limit.  Never a read or write out of bounds (ASan).
 */
#include "base/pt_url.h"
#include "http/pt_http.h"

#include <event2/buffer.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEAD 8192
#define MAX_LINE 2048
#define MAX_HEADERS 32
#define MAX_BODY 100000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct verdict {
    int rc;
    size_t len;
    int status;
};

/* Scans data[0..size) fed `step` bytes at a time (0: whole). */
static struct verdict scan(const uint8_t *data, size_t size, size_t step, bool is_request)
{
    struct pt_scan s = {0};
    s.max_hline = MAX_LINE;
    struct evbuffer *in = evbuffer_new();
    if (!in)
        abort();
    struct verdict v = {0, 0, 0};
    struct pt_http_err err = {0};
    size_t off = 0;
    do {
        size_t n = !step || size - off < step ? size - off : step;
        evbuffer_add(in, data + off, n);
        off += n;
        v.rc = pt_http_scan(&s, in, MAX_HEAD, MAX_LINE, is_request, &v.len, &err);
    } while (v.rc == 0 && off < size);
    if (v.rc < 0) {
        if (!err.status || !err.msg)
            abort(); /* a refusal that says neither what nor why */
        v.status = err.status;
        v.len = 0;
    } else if (v.rc > 0 && (v.len > size || v.len > MAX_HEAD || v.len < 4))
        abort();
    else if (v.rc == 0)
        v.len = 0;
    evbuffer_free(in);
    return v;
}

static void in_copy(pt_str s, const char *buf, size_t len)
{
    if (s.len && (s.data < buf || s.data + s.len > buf + len))
        abort(); /* a slice outside the head's copy */
}

/* The path holds no "." or ".." segment once normalised. */
static void check_path(pt_str p)
{
    if (p.len == 1 && p.data[0] == '*')
        return;
    if (!p.len || p.data[0] != '/')
        abort();
    for (size_t i = 0; i < p.len;) {
        size_t j = i + 1;
        while (j < p.len && p.data[j] != '/')
            j++;
        size_t n = j - i - 1;
        if ((n == 1 && p.data[i + 1] == '.') || (n == 2 && p.data[i + 1] == '.' && p.data[i + 2] == '.')) {
            fprintf(stderr, "dot segment left in '%.*s'\n", (int)p.len, p.data);
            abort();
        }
        i = j;
    }
}

static void check_head(const struct pt_head *h, const char *buf, size_t len, bool is_request,
                       bool head_request)
{
    if (h->nh < 0 || h->nh > MAX_HEADERS)
        abort();
    for (int i = 0; i < h->nh; i++) {
        in_copy(h->h[i].name, buf, len);
        in_copy(h->h[i].value, buf, len);
        if (!h->h[i].name.len || !pt_http_value_ok(h->h[i].value))
            abort();
    }
    if (h->body == PT_BODY_LENGTH && h->content_length < 0)
        abort();
    if (is_request) {
        if (h->major != 1 || h->body == PT_BODY_EOF)
            abort();
        if (h->body == PT_BODY_LENGTH && h->content_length > MAX_BODY)
            abort();
        check_path(h->path);
        if (h->host.len && !pt_url_host_valid(h->host))
            abort();
    } else {
        if (h->status < 100 || h->status > 999)
            abort();
        if ((head_request || h->status < 200 || h->status == 204 || h->status == 304) &&
            h->body != PT_BODY_NONE)
            abort(); /* a body where none can follow */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0;
    unsigned mode = data[0];
    data++;
    size--;
    bool is_request = !(mode & 1), head_request = mode & 2;
    size_t step = mode >> 2;
    struct verdict whole = scan(data, size, 0, is_request);
    if (step) {
        struct verdict parts = scan(data, size, step, is_request);
        if (parts.rc != whole.rc || parts.len != whole.len || parts.status != whole.status) {
            fprintf(stderr, "scan in %zu-byte pieces: %d/%zu/%d, whole: %d/%zu/%d\n", step, parts.rc,
                    parts.len, parts.status, whole.rc, whole.len, whole.status);
            abort();
        }
    }
    if (whole.rc <= 0)
        return 0;
    /* exactly the head, as the connection copies it into the request's pool */
    char *buf = malloc(whole.len);
    if (!buf)
        return 0;
    memcpy(buf, data, whole.len);
    struct pt_pool *pool = pt_pool_new(4096);
    struct pt_head h = {0};
    struct pt_http_err err = {0};
    bool ok = is_request ? pt_http_parse_request(&h, buf, whole.len, pool, MAX_HEADERS, MAX_BODY, &err)
                         : pt_http_parse_response(&h, buf, whole.len, pool, MAX_HEADERS, head_request, &err);
    if (!ok && (err.status < 400 || err.status > 599 || !err.msg))
        abort();
    if (ok)
        check_head(&h, buf, whole.len, is_request, head_request);
    pt_pool_free(pool);
    free(buf);
    return 0;
}

/* Seeds for the standalone runner (standalone.c): heads, after the mode byte it adds. */
const char *fuzz_name = "fuzz_http_head";
const char *const fuzz_seeds[] = {
    "GET /echo/items?id=1&x=%20 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept: */*\r\nUser-Agent: t\r\n\r\n",
    "POST /api/v1/./a/../b HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nExpect: "
    "100-continue\r\n\r\nhello",
    "PUT http://example.com:80/x?y HTTP/1.1\r\nHost: other\r\nTransfer-Encoding: chunked\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: "
    "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
    "GET /%2e%2e/etc HTTP/1.1\r\nHost: a\r\nX_Under: 1\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody until the end",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nTrailer: X\r\n\r\n",
    NULL,
};
