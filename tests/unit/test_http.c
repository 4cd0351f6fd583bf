/*
 * test_http -- head scanning, request/response parsing and checks, chunked
 * decoding, output helpers and URL helpers.
 */
#include "base/pt_url.h"
#include "http/pt_http.h"

#include <event2/buffer.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

static struct pt_pool *pool;

static int setup(void **state)
{
    pt_pool_reset(pool);
    return 0;
}

static int group_setup(void **state)
{
    pool = pt_pool_new(16 * 1024);
    return pool ? 0 : -1;
}

static int group_teardown(void **state)
{
    pt_pool_free(pool);
    return 0;
}

static char sbuf[4][1024];
static int sbuf_i;
/* A printable NUL-terminated copy of a slice (a few at a time). */
static const char *S(pt_str s)
{
    char *b = sbuf[sbuf_i++ & 3];
    snprintf(b, sizeof(sbuf[0]), "%.*s", (int)s.len, s.data ? s.data : "");
    return b;
}

#define assert_slice(s, lit) assert_string_equal(S(s), (lit))

/* A copy of text safe for a TAP comment line: CR, LF and controls escaped. */
static const char *E(const char *text, size_t n)
{
    static char b[2][4096];
    static int k;
    char *o = b[k++ & 1];
    size_t j = 0;
    for (size_t i = 0; i < n && j + 5 < sizeof(b[0]); i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\r')
            j += (size_t)sprintf(o + j, "\\r");
        else if (c == '\n')
            j += (size_t)sprintf(o + j, "\\n");
        else if (c < 0x20 || c >= 0x7f)
            j += (size_t)sprintf(o + j, "\\x%02x", c);
        else
            o[j++] = (char)c;
    }
    o[j] = '\0';
    return o;
}
#define ES(str) E((str), strlen(str))

/* ============================================================ scanning */

struct scan_res {
    int r;
    size_t head_len;
    size_t fed; /* bytes in the buffer when the result came */
    struct pt_http_err err;
};

/* Feeds text `step` bytes at a time (each piece its own buffer chain),
   scanning after each piece, until the scan returns non-zero. */
static struct scan_res scan(const char *text, size_t n, size_t step, size_t max_head, size_t max_line,
                            bool is_request)
{
    struct scan_res res = {0};
    struct pt_scan s = {0};
    struct evbuffer *b = evbuffer_new();
    assert_non_null(b);
    size_t fed = 0;
    for (;;) {
        if (step == 0) {
            evbuffer_add(b, text, n);
            fed = n;
        } else if (fed < n) {
            size_t k = PT_MIN(step, n - fed);
            evbuffer_add_reference(b, text + fed, k, NULL, NULL);
            fed += k;
        }
        res.r = pt_http_scan(&s, b, max_head, max_line, is_request, &res.head_len, &res.err);
        res.fed = fed;
        if (res.r != 0 || fed == n)
            break;
    }
    if (res.r < 0)
        print_message("# scan: %d %s after %zu bytes\n", res.err.status, res.err.msg, fed);
    /* the scan never consumes input */
    assert_int_equal(evbuffer_get_length(b), fed);
    evbuffer_free(b);
    return res;
}

static const size_t steps[] = {0, 1, 2, 3, 7, 1000};

/* The head must be found at every feeding granularity, exactly at its end. */
static void expect_head(const char *text, size_t head_len, size_t max_head, size_t max_line, bool is_request)
{
    size_t n = strlen(text);
    for (size_t i = 0; i < PT_ARRAY_LEN(steps); i++) {
        print_message("# step %zu\n", steps[i]);
        struct scan_res r = scan(text, n, steps[i], max_head, max_line, is_request);
        assert_int_equal(r.r, 1);
        assert_int_equal(r.head_len, head_len);
        if (steps[i] == 1)
            assert_int_equal(r.fed, head_len); /* found as soon as the last byte arrived */
    }
}

static void expect_scan_error(const char *text, size_t n, size_t max_head, size_t max_line, bool is_request,
                              int status)
{
    for (size_t i = 0; i < PT_ARRAY_LEN(steps); i++) {
        print_message("# step %zu\n", steps[i]);
        struct scan_res r = scan(text, n, steps[i], max_head, max_line, is_request);
        assert_int_equal(r.r, -1);
        assert_int_equal(r.err.status, status);
        assert_non_null(r.err.msg);
    }
}

#define SCAN_ERR(lit, status) expect_scan_error((lit), sizeof(lit) - 1, 8192, 1024, true, (status))

static void test_scan_complete(void **state)
{
    const char *req = "GET /a HTTP/1.1\r\nHost: h\r\nX-Tab:\tv\xc3\xa9\r\n\r\n";
    expect_head(req, strlen(req), 8192, 1024, true);

    /* a body or the next request after the head is not part of it */
    char buf[256];
    snprintf(buf, sizeof(buf), "%sBODY\r\n\r\nGET / HTTP/1.1\r\n\r\n", req);
    expect_head(buf, strlen(req), 8192, 1024, true);

    const char *resp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    expect_head(resp, strlen(resp), 8192, 1024, false);

    /* incomplete heads need more input */
    static const char *const partial[] = {"",
                                          "G",
                                          "GET / HTTP/1.1",
                                          "GET / HTTP/1.1\r",
                                          "GET / HTTP/1.1\r\n",
                                          "GET / HTTP/1.1\r\nHost: h\r\n",
                                          "GET / HTTP/1.1\r\nHost: h\r\n\r"};
    for (size_t i = 0; i < PT_ARRAY_LEN(partial); i++)
        for (size_t k = 0; k < PT_ARRAY_LEN(steps); k++) {
            struct scan_res r = scan(partial[i], strlen(partial[i]), steps[k], 8192, 1024, true);
            assert_int_equal(r.r, 0);
        }

    /* many small chains in one buffer, scanned at once */
    struct evbuffer *b = evbuffer_new();
    const char *big = "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: h\r\n"
                      "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\nTAIL";
    for (const char *p = big; *p; p += 2)
        evbuffer_add_reference(b, p, p[1] ? 2 : 1, NULL, NULL);
    struct pt_scan s = {0};
    struct pt_http_err err = {0};
    size_t hl = 0;
    assert_int_equal(pt_http_scan(&s, b, 8192, 1024, true, &hl, &err), 1);
    assert_int_equal(hl, strlen(big) - 4);
    evbuffer_free(b);
}

static void test_scan_errors(void **state)
{
    SCAN_ERR("GET / HTTP/1.1\nHost: h\r\n\r\n", 400);       /* bare LF ends the request line */
    SCAN_ERR("GET / HTTP/1.1\r\nHost: h\n\r\n", 400);       /* bare LF ends a header */
    SCAN_ERR("GET / HTTP/1.1\r\nHost: h\r\n\n", 400);       /* bare LF ends the head */
    SCAN_ERR("GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", 400);     /* bare CR */
    SCAN_ERR("GET / HTTP/1.1\r\r\nHost: h\r\n\r\n", 400);   /* CR CR LF */
    SCAN_ERR("GET / HTTP/1.1\r\nA: b\0c\r\n\r\n", 400);     /* NUL */
    SCAN_ERR("GET /\0 HTTP/1.1\r\nHost: h\r\n\r\n", 400);   /* NUL in the request line */
    SCAN_ERR("GET / HTTP/1.1\r\nA: \x01\r\n\r\n", 400);     /* control character */
    SCAN_ERR("GET / HTTP/1.1\r\nA: \x1b[0m\r\n\r\n", 400);  /* escape */
    SCAN_ERR("GET / HTTP/1.1\r\nA: \x7f\r\n\r\n", 400);     /* DEL */
    SCAN_ERR("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 400);  /* obs-fold, space */
    SCAN_ERR("GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n", 400); /* obs-fold, tab */
    SCAN_ERR("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400);    /* whitespace before the first header */
    SCAN_ERR("\r\nGET / HTTP/1.1\r\n\r\n", 400);            /* empty start line */

    /* the NUL message names it */
    struct scan_res r = scan("GET / HTTP/1.1\r\nA: \0\r\n\r\n", 24, 0, 8192, 1024, true);
    assert_int_equal(r.r, -1);
    assert_string_equal(r.err.msg, "NUL byte in the head");

    /* bytes that cannot begin a method are refused at once, before any line ends */
    SCAN_ERR("\xc0", 400);
    SCAN_ERR("&", 400);
    SCAN_ERR("get / HTTP/1.1\r\n\r\n", 400);
    SCAN_ERR("-GET / HTTP/1.1\r\n\r\n", 400);
    SCAN_ERR(" GET", 400);
    SCAN_ERR("\x16\x03\x01", 400);          /* a TLS hello on a plain port */
    SCAN_ERR("ABCDEFGHIJKLMNOPQRSTU", 400); /* longer than any method */
    r = scan("GE", 2, 0, 8192, 1024, true);
    assert_int_equal(r.r, 0); /* so far so good: more is needed */
    r = scan("M-SEARCH * HTTP/1.1\r\n\r\n", 24, 0, 8192, 1024, true);
    assert_int_equal(r.r, 1);

    /* for responses the same problems are a bad gateway */
    expect_scan_error("HTTP/1.1 200 OK\nA: b\r\n\r\n", 24, 8192, 1024, false, 502);
    expect_scan_error("HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", 29, 8192, 1024, false, 502);
}

static void test_scan_limits(void **state)
{
    const char *req = "GET / HTTP/1.1\r\nHost: h\r\nA: bbbbbbbbbb\r\n\r\n";
    size_t n = strlen(req);
    expect_head(req, n, n, 1024, true);
    expect_scan_error(req, n, n - 10, 1024, true, 431);
    expect_scan_error(req, n, 20, 1024, true, 431);
    /* over max_head while still in the request line */
    expect_scan_error(req, n, 10, 1024, true, 414);
    /* the request line over max_line */
    expect_head(req, n, 8192, 16, true); /* "GET / HTTP/1.1" + CRLF */
    expect_scan_error(req, n, 8192, 13, true, 414);
    expect_scan_error(req, n, 8192, 5, true, 414);
    /* responses: 502 */
    expect_scan_error("HTTP/1.1 200 OK\r\nA: b\r\n\r\n", 25, 20, 1024, false, 502);

    /* a long request line is refused before its end arrives */
    static char longline[20000];
    memset(longline, 'a', sizeof(longline) - 1);
    memcpy(longline, "GET /", 5);
    struct scan_res r = scan(longline, strlen(longline), 1, 65536, 100, true);
    assert_int_equal(r.r, -1);
    assert_int_equal(r.err.status, 414);
    assert_true(r.fed <= 101);
    /* and a huge header section before its end arrives */
    memcpy(longline, "GET / HTTP/1.1\r\nA: ", 19);
    r = scan(longline, strlen(longline), 1, 1000, 100, true);
    assert_int_equal(r.r, -1);
    assert_int_equal(r.err.status, 431);
    assert_true(r.fed <= 1001);
}

/* A head of exactly max_head bytes fits; one byte more does not, even when
   that byte is the LF ending the head. */
static void test_scan_max_head_boundary(void **state)
{
    const char *req = "GET / HTTP/1.1\r\nHost: h\r\nA: bbbbbbbbbb\r\n\r\n";
    size_t n = strlen(req);
    expect_head(req, n, n, 1024, true);
    expect_head(req, n, n + 1, 1024, true);
    expect_scan_error(req, n, n - 1, 1024, true, 431);
    expect_scan_error(req, n, n - 2, 1024, true, 431);
}

static void test_skip_empty_lines(void **state)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, "\r\n\r\nGET", 7);
    pt_http_skip_empty_lines(b);
    assert_int_equal(evbuffer_get_length(b), 3);
    evbuffer_drain(b, 3);
    evbuffer_add(b, "\nGET", 4);
    pt_http_skip_empty_lines(b);
    assert_int_equal(evbuffer_get_length(b), 4);
    evbuffer_free(b);
}

/* ============================================================ requests */

static struct pt_head H;

static bool parse_req(const char *text, int max_headers, uint64_t max_body, struct pt_http_err *err)
{
    size_t n = strlen(text);
    char *buf = pt_pool_strndup(pool, text, n);
    memset(err, 0, sizeof(*err));
    bool ok = pt_http_parse_request(&H, buf, n, pool, max_headers, max_body, err);
    if (!ok)
        print_message("# %d %s\n", err->status, err->msg ? err->msg : "(no message)");
    return ok;
}

static struct pt_head *req_ok(const char *text)
{
    struct pt_http_err err;
    print_message("# request: %s\n", ES(text));
    assert_true(parse_req(text, 100, 1 << 20, &err));
    assert_int_equal(err.status, 0);
    return &H;
}

static void req_err(const char *text, int status)
{
    struct pt_http_err err;
    print_message("# request: %s\n", ES(text));
    assert_false(parse_req(text, 100, 1 << 20, &err));
    assert_int_equal(err.status, status);
    assert_non_null(err.msg);
}

static struct pt_hdr *hdr(struct pt_head *h, const char *name)
{
    struct pt_hdr *x = pt_http_head_get(h, pt_str_c(name));
    assert_non_null(x);
    return x;
}

static void test_request_basic(void **state)
{
    struct pt_head *h = req_ok("GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: t\r\n"
                               "X-Empty:\r\n\r\n");
    assert_slice(h->method, "GET");
    assert_slice(h->target, "/a/b?x=1&y=2");
    assert_slice(h->path, "/a/b");
    assert_slice(h->query, "x=1&y=2");
    assert_slice(h->host, "example.com:8080");
    assert_int_equal(h->major, 1);
    assert_int_equal(h->minor, 1);
    assert_int_equal(h->nh, 3);
    assert_slice(h->h[0].name, "Host");
    assert_slice(h->h[0].value, "example.com:8080");
    assert_int_equal(h->h[0].kind, PT_H_HOST);
    assert_slice(h->h[1].name, "User-Agent");
    assert_slice(h->h[1].value, "t");
    assert_false(h->h[1].hop);
    assert_slice(h->h[2].value, "");
    assert_int_equal(h->body, PT_BODY_NONE);
    assert_int_equal(h->content_length, -1);
    assert_true(h->keepalive);
    assert_false(h->expect_continue);
    assert_false(h->upgrade_ws);
    assert_int_equal(h->host_count, 1);
    assert_true(pt_http_head_get(h, PT_STR("user-agent")) == &h->h[1]);
    assert_null(pt_http_head_get(h, PT_STR("Accept")));

    h = req_ok("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n");
    assert_slice(h->method, "POST");
    assert_int_equal(h->body, PT_BODY_LENGTH);
    assert_int_equal(h->content_length, 12);
    assert_true(hdr(h, "Content-Length")->hop);
    assert_slice(h->query, "");

    h = req_ok("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(h->body, PT_BODY_NONE);
    assert_int_equal(h->content_length, 0);

    h = req_ok("POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n");
    assert_int_equal(h->body, PT_BODY_CHUNKED);
    assert_true(hdr(h, "Transfer-Encoding")->hop);

    /* HTTP/1.0 needs no Host */
    h = req_ok("GET / HTTP/1.0\r\n\r\n");
    assert_int_equal(h->minor, 0);
    assert_int_equal(h->host_count, 0);
    assert_slice(h->host, "");

    h = req_ok("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_slice(h->path, "*");
}

static void test_request_absolute_form(void **state)
{
    struct pt_head *h =
        req_ok("GET http://Origin.example:81/x/../y?z=1 HTTP/1.1\r\nHost: other.example\r\n\r\n");
    assert_slice(h->host, "Origin.example:81");
    assert_slice(h->path, "/y");
    assert_slice(h->query, "z=1");
    h = req_ok("GET HTTPS://h.example HTTP/1.1\r\nHost: h.example\r\n\r\n");
    assert_slice(h->host, "h.example");
    assert_slice(h->path, "/");
    assert_slice(h->query, "");
    h = req_ok("GET http://h.example?a=b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_slice(h->path, "/");
    assert_slice(h->query, "a=b");
    h = req_ok("GET http://[::1]:8080/p HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_slice(h->host, "[::1]:8080");
    assert_slice(h->path, "/p");

    req_err("GET http://user@h.example/ HTTP/1.1\r\nHost: h.example\r\n\r\n", 400);
    req_err("GET http:///p HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    req_err("GET http://h/../x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    req_err("GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    req_err("GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    req_err("GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

static void test_request_dot_segments(void **state)
{
    static const struct {
        const char *target, *path, *query;
    } ok[] = {
        {"/a/./b/../c", "/a/c", ""},
        {"/a/b/..", "/a/", ""},
        {"/a/b/.", "/a/b/", ""},
        {"/.", "/", ""},
        {"/./", "/", ""},
        {"/a/..", "/", ""},
        {"/a/b/../../c", "/c", ""},
        {"/a//../b", "/a/b", ""},
        {"/a/./b/../c?q=/../..", "/a/c", "q=/../.."},
        {"/.hidden/..x/x../...", "/.hidden/..x/x../...", ""},
        {"/a/%2ex/x%2e/%2e%2ex", "/a/%2ex/x%2e/%2e%2ex", ""},
        {"/", "/", ""},
        {"/a/b/", "/a/b/", ""},
    };
    for (size_t i = 0; i < PT_ARRAY_LEN(ok); i++) {
        char req[256];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", ok[i].target);
        struct pt_head *h = req_ok(req);
        assert_slice(h->path, ok[i].path);
        assert_slice(h->query, ok[i].query);
    }
    static const char *const bad[] = {
        "/..",    "/../a",   "/a/../..",  "/a/../../b",  "/%2e%2e/a", "/a/%2E%2e/b",
        "/a/%2e", "/a/.%2e", "/a/%2e./b", "/a/%2e%2e?x", "/a/%2E/b",  "/a/b/../../..",
    };
    for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++) {
        char req[256];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", bad[i]);
        req_err(req, 400);
    }
    req_err("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

static void test_request_framing(void **state)
{
    req_err("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    req_err("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400);
    req_err("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400);
    req_err("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400);
    req_err("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n", 400);
    req_err("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1a\r\n\r\n", 400);
    req_err("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400);
    req_err("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\n", 400);
    req_err("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n", 400);
    req_err("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", 400);
    req_err("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400);
    req_err("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400);
    req_err("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            400);
    req_err("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
    req_err("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
    req_err("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);

    /* the body limit is checked up front */
    struct pt_http_err err;
    assert_false(parse_req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n", 100, 100, &err));
    assert_int_equal(err.status, 413);
    assert_true(parse_req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n", 100, 100, &err));
    assert_int_equal(H.content_length, 100);
    assert_int_equal(H.body, PT_BODY_LENGTH);
    assert_true(parse_req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", 100, 0, &err));
}

static void test_request_errors(void **state)
{
    req_err("GET / HTTP/1.1\r\n\r\n", 400);                       /* missing Host */
    req_err("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400); /* two Hosts */
    req_err("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);          /* invalid Host */
    req_err("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", 400);
    req_err("GET / HTTP/1.1\r\nHost:\r\n\r\n", 400);
    req_err("CONNECT h.example:443 HTTP/1.1\r\nHost: h.example:443\r\n\r\n", 405);
    req_err("TRACE / HTTP/1.1\r\nHost: h\r\n\r\n", 405);
    req_err("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505);
    req_err("GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505);
    req_err("GET / HTTP/1.1\r\nHost: h\r\nExpect: something\r\n\r\n", 417);
    req_err("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400); /* space before the colon */
    req_err("GET / HTTP/1.1\r\nHo(st: h\r\n\r\n", 400);
    req_err("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Content-Length: 3\r\n\r\n",
            400);

    /* header count */
    const char *three = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
    const char *four = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    struct pt_http_err err;
    assert_true(parse_req(three, 3, 1000, &err));
    assert_false(parse_req(four, 3, 1000, &err));
    assert_int_equal(err.status, 431);
}

static void test_request_expect(void **state)
{
    struct pt_head *h =
        req_ok("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
    assert_true(h->expect_continue);
    assert_true(hdr(h, "Expect")->hop);
    h = req_ok("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\n");
    assert_true(h->expect_continue);
    h = req_ok("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n");
    assert_false(h->expect_continue);
}

static void test_request_keepalive(void **state)
{
    static const struct {
        const char *req;
        bool keep;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: CLOSE\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: x-foo\r\n\r\n", true},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: close\r\n\r\n", false},
    };
    for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
        struct pt_head *h = req_ok(cases[i].req);
        assert_int_equal(h->keepalive, cases[i].keep);
    }
}

static void test_request_hop_by_hop(void **state)
{
    struct pt_head *h = req_ok("GET / HTTP/1.1\r\nHost: h\r\nX-Bar: 2\r\nConnection: X-Foo, close\r\n"
                               "x-foo: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\n"
                               "Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nAccept: */*\r\n\r\n");
    assert_true(hdr(h, "X-Foo")->hop);
    assert_false(hdr(h, "X-Bar")->hop);
    assert_false(hdr(h, "Accept")->hop);
    assert_true(hdr(h, "Connection")->hop);
    assert_true(hdr(h, "Keep-Alive")->hop);
    assert_true(hdr(h, "TE")->hop);
    assert_true(hdr(h, "Trailer")->hop);
    assert_true(hdr(h, "Proxy-Connection")->hop);
    assert_true(hdr(h, "Upgrade")->hop);
    assert_int_equal(hdr(h, "Keep-Alive")->kind, PT_H_KEEP_ALIVE);
    assert_int_equal(hdr(h, "TE")->kind, PT_H_TE);
    assert_false(h->upgrade_ws);
    assert_false(h->keepalive);

    /* a Connection header naming nothing special leaves the rest alone */
    h = req_ok("GET / HTTP/1.1\r\nHost: h\r\nConnection: , ,\r\nX-A: 1\r\n\r\n");
    assert_false(hdr(h, "X-A")->hop);
}

static void test_request_websocket(void **state)
{
    struct pt_head *h = req_ok("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
                               "Upgrade: websocket\r\nSec-WebSocket-Key: x\r\n\r\n");
    assert_true(h->upgrade_ws);
    assert_true(hdr(h, "Upgrade")->hop);
    h = req_ok("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: WebSocket\r\n\r\n");
    assert_true(h->upgrade_ws);
    h = req_ok("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n"); /* no Connection: upgrade */
    assert_false(h->upgrade_ws);
    h = req_ok("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n");
    assert_false(h->upgrade_ws);
}

/* =========================================================== responses */

static bool parse_resp(const char *text, bool head_request, struct pt_http_err *err)
{
    size_t n = strlen(text);
    char *buf = pt_pool_strndup(pool, text, n);
    memset(err, 0, sizeof(*err));
    print_message("# response: %s\n", ES(text));
    bool ok = pt_http_parse_response(&H, buf, n, pool, 100, head_request, err);
    if (!ok)
        print_message("# %d %s\n", err->status, err->msg ? err->msg : "(no message)");
    return ok;
}

static void resp_body(const char *text, bool head_request, enum pt_body body)
{
    struct pt_http_err err;
    assert_true(parse_resp(text, head_request, &err));
    assert_int_equal(H.body, body);
}

static void resp_err(const char *text)
{
    struct pt_http_err err;
    assert_false(parse_resp(text, false, &err));
    assert_int_equal(err.status, 502);
    assert_non_null(err.msg);
}

static void test_response(void **state)
{
    struct pt_http_err err;
    assert_true(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: b\r\n\r\n", false, &err));
    assert_int_equal(H.status, 200);
    assert_slice(H.reason, "OK");
    assert_int_equal(H.body, PT_BODY_LENGTH);
    assert_int_equal(H.content_length, 5);
    assert_true(H.keepalive);
    assert_int_equal(H.nh, 2);
    assert_int_equal(H.h[1].kind, PT_H_SERVER);

    resp_body("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", false, PT_BODY_NONE);
    resp_body("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false, PT_BODY_NONE);
    resp_body("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", false, PT_BODY_NONE);
    resp_body("HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n", false, PT_BODY_NONE);
    resp_body("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", true, PT_BODY_NONE);
    resp_body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, PT_BODY_NONE);
    resp_body("HTTP/1.1 200 OK\r\n\r\n", true, PT_BODY_NONE);
    resp_body("HTTP/1.1 100 Continue\r\n\r\n", false, PT_BODY_NONE);
    resp_body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, PT_BODY_CHUNKED);
    resp_body("HTTP/1.1 200 OK\r\n\r\n", false, PT_BODY_EOF);
    resp_body("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", false, PT_BODY_EOF);

    assert_true(parse_resp("HTTP/1.0 200 OK\r\n\r\n", false, &err));
    assert_false(H.keepalive);
    assert_int_equal(H.body, PT_BODY_EOF);
    assert_true(parse_resp("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", false, &err));
    assert_false(H.keepalive);
    assert_true(
        parse_resp("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
                   false, &err));
    assert_true(H.upgrade_ws);
    assert_int_equal(H.body, PT_BODY_NONE);

    resp_err("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
    resp_err("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
    resp_err("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
    resp_err("HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n");
    resp_err("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n");
    resp_err("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n");
    resp_err("HTTP/2.0 200 OK\r\n\r\n");
    resp_err("HTTP/1.1 20 OK\r\n\r\n");
    resp_err("HTTP/1.1 2000 OK\r\n\r\n");
    resp_err("HTTP/1.1 200 OK\r\nBad\x01: x\r\n\r\n");
    resp_err("GET / HTTP/1.1\r\nHost: h\r\n\r\n");

    /* too many headers from a backend */
    const char *two = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n";
    assert_false(pt_http_parse_response(&H, pt_pool_strdup(pool, two), strlen(two), pool, 1, false, &err));
    assert_int_equal(err.status, 502);
}

/* Field names are tokens (RFC 9110 5.1): a name with a space inside must not
   reach the backend or the client. */
static void test_header_name_token(void **state)
{
    req_err("GET / HTTP/1.1\r\nBad Header: x\r\nHost: h\r\n\r\n", 400);
    req_err("GET / HTTP/1.1\r\nHost: h\r\nContent Length: 5\r\n\r\n", 400);
    req_err("GET / HTTP/1.1\r\nHost: h\r\nHost : evil.example\r\n\r\n", 400); /* would reach the backend */
    req_err("GET / HTTP/1.1\r\nHost: h\r\nExpect : nothing\r\n\r\n", 400);
    req_err("GET / HTTP/1.1\r\nHost: h\r\n: x\r\n\r\n", 400); /* empty name */
    resp_err("HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n");
}

/* ============================================================= chunked */

struct dechunk {
    ssize_t r; /* the last result: DONE, ERROR or MORE (input ran out) */
    char out[65536];
    size_t outn;
    size_t left; /* input not consumed (in the buffer or never fed) */
    const char *msg;
};

static struct dechunk D;

/* Feeds `n` bytes `step` at a time (0: all at once) and decodes. */
static struct dechunk *dechunk(const char *in, size_t n, size_t step)
{
    struct pt_chunked c;
    memset(&c, 0, sizeof(c));
    memset(&D, 0, sizeof(D));
    struct evbuffer *b = evbuffer_new();
    size_t fed = 0;
    for (;;) {
        struct pt_http_err err = {0};
        ssize_t r = pt_http_chunked_next(&c, b, &err);
        if (r > 0) {
            size_t len = evbuffer_get_length(b);
            assert_true((size_t)r <= len);
            assert_true(D.outn + (size_t)r <= sizeof(D.out));
            assert_int_equal(evbuffer_remove(b, D.out + D.outn, (size_t)r), r);
            D.outn += (size_t)r;
            pt_http_chunked_took(&c, (size_t)r);
            continue;
        }
        if (r == PT_CHUNKED_MORE && fed < n) {
            size_t k = step ? PT_MIN(step, n - fed) : n - fed;
            evbuffer_add(b, in + fed, k);
            fed += k;
            continue;
        }
        D.r = r;
        D.msg = err.msg;
        break;
    }
    D.left = evbuffer_get_length(b) + (n - fed);
    evbuffer_free(b);
    return &D;
}

static void expect_chunked(const char *in, size_t n, const char *payload, size_t plen, size_t left)
{
    const size_t st[] = {0, 1, 2, 3, 5, 8, 13};
    print_message("# chunked body: %s\n", E(in, PT_MIN(n, 60)));
    for (size_t i = 0; i < PT_ARRAY_LEN(st); i++) {
        print_message("# chunked step %zu\n", st[i]);
        struct dechunk *d = dechunk(in, n, st[i]);
        if (d->r == PT_CHUNKED_ERROR)
            print_message("# error: %s\n", d->msg);
        assert_int_equal(d->r, PT_CHUNKED_DONE);
        assert_int_equal(d->outn, plen);
        assert_memory_equal(d->out, payload, d->outn);
        assert_int_equal(d->left, left);
    }
}

static void expect_chunked_error(const char *in, size_t n)
{
    const size_t st[] = {0, 1, 2, 7};
    print_message("# chunked body must be refused: %s\n", E(in, PT_MIN(n, 60)));
    for (size_t i = 0; i < PT_ARRAY_LEN(st); i++) {
        print_message("# chunked step %zu\n", st[i]);
        struct dechunk *d = dechunk(in, n, st[i]);
        assert_int_equal(d->r, PT_CHUNKED_ERROR);
        assert_non_null(d->msg);
    }
}

#define CHUNKED_OK(lit, payload, left)                                                                       \
    expect_chunked((lit), sizeof(lit) - 1, (payload), sizeof(payload) - 1, (left))
#define CHUNKED_ERR(lit) expect_chunked_error((lit), sizeof(lit) - 1)

static void test_chunked(void **state)
{
    CHUNKED_OK("4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n", "Wikipedia", 0);
    CHUNKED_OK("0\r\n\r\n", "", 0);
    CHUNKED_OK("A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", "0123456789abcdefghij", 0);
    CHUNKED_OK("00004\r\nWiki\r\n000\r\n\r\n", "Wiki", 0);
    CHUNKED_OK("00000000000000A\r\n0123456789\r\n0\r\n\r\n", "0123456789", 0); /* 15 digits */
    /* extensions, including quoted strings and whitespace before ';' */
    CHUNKED_OK("4;name=value\r\nWiki\r\n5 ; a=\"b c\";d\r\npedia\r\n0;last\r\n\r\n", "Wikipedia", 0);
    /* trailers */
    CHUNKED_OK("4\r\nWiki\r\n0\r\nX-Checksum: 1\r\nY: \t2\r\n\r\n", "Wiki", 0);
    /* data may contain CR, LF and NUL */
    CHUNKED_OK("6\r\n\r\n\0a\r\n\r\n0\r\n\r\n", "\r\n\0a\r\n", 0);
    /* what follows the body stays in the buffer */
    CHUNKED_OK("3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n", "abc", 16);

    /* many chunks */
    static char big[40000], payload[20000];
    size_t bn = 0, pn = 0;
    for (int i = 1; i <= 100; i++) {
        bn += (size_t)snprintf(big + bn, sizeof(big) - bn, "%x\r\n", i * 3);
        for (int k = 0; k < i * 3; k++) {
            char ch = (char)('a' + (i + k) % 26);
            big[bn++] = ch;
            payload[pn++] = ch;
        }
        memcpy(big + bn, "\r\n", 2);
        bn += 2;
    }
    memcpy(big + bn, "0\r\n\r\n", 5);
    bn += 5;
    payload[pn] = '\0';
    expect_chunked(big, bn, payload, pn, 0);
}

static void test_chunked_partial_take(void **state)
{
    struct pt_chunked c;
    memset(&c, 0, sizeof(c));
    struct pt_http_err err = {0};
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, "4\r\nWiki\r\n0\r\n\r\n", 14);
    assert_int_equal(pt_http_chunked_next(&c, b, &err), 4);
    assert_int_equal(evbuffer_get_length(b), 11);
    char tmp[8];
    assert_int_equal(evbuffer_remove(b, tmp, 1), 1);
    pt_http_chunked_took(&c, 1);
    assert_int_equal(pt_http_chunked_next(&c, b, &err), 3);
    assert_int_equal(evbuffer_copyout(b, tmp, 3), 3);
    assert_memory_equal(tmp, "iki", 3);
    evbuffer_drain(b, 3);
    pt_http_chunked_took(&c, 3);
    assert_int_equal(pt_http_chunked_next(&c, b, &err), PT_CHUNKED_DONE);
    assert_int_equal(evbuffer_get_length(b), 0);
    /* done stays done */
    assert_int_equal(pt_http_chunked_next(&c, b, &err), PT_CHUNKED_DONE);

    /* the count never runs past the chunk */
    memset(&c, 0, sizeof(c));
    evbuffer_add(b, "4\r\nWikiXYZ", 10);
    assert_int_equal(pt_http_chunked_next(&c, b, &err), 4);
    evbuffer_drain(b, 4);
    pt_http_chunked_took(&c, 4);
    assert_int_equal(pt_http_chunked_next(&c, b, &err), PT_CHUNKED_ERROR);
    assert_non_null(err.msg);
    evbuffer_free(b);
}

/* After the size only BWS ";" may follow (RFC 9112 7.1.1): "1 2" is not size 1. */
static void test_chunked_size_whitespace(void **state)
{
    CHUNKED_ERR("1 2\r\nx\r\n0\r\n\r\n");
    CHUNKED_ERR("1 x\r\nx\r\n0\r\n\r\n");
    /* whitespace before ';' is fine */
    CHUNKED_OK("1 ;a=b\r\nx\r\n0\r\n\r\n", "x", 0);
}

static void test_chunked_errors(void **state)
{
    CHUNKED_ERR("4\nWiki\r\n0\r\n\r\n");               /* bare LF after the size */
    CHUNKED_ERR("4;x\nWiki\r\n0\r\n\r\n");             /* bare LF after an extension */
    CHUNKED_ERR("4\rWiki\r\n0\r\n\r\n");               /* CR without LF */
    CHUNKED_ERR("4\r\nWikiX\r\n0\r\n\r\n");            /* no CRLF after the data */
    CHUNKED_ERR("4\r\nWiki\n0\r\n\r\n");               /* bare LF after the data */
    CHUNKED_ERR("4\r\nWiki\r0\r\n\r\n");               /* CR without LF after the data */
    CHUNKED_ERR("0000000000000001\r\nx\r\n0\r\n\r\n"); /* 16 hex digits */
    CHUNKED_ERR("FFFFFFFFFFFFFFFFF\r\n");              /* overflow */
    CHUNKED_ERR("g\r\nx\r\n0\r\n\r\n");                /* not hex */
    CHUNKED_ERR("\r\nx\r\n0\r\n\r\n");                 /* no size */
    CHUNKED_ERR(";x\r\n");                             /* extension without a size */
    CHUNKED_ERR("-1\r\n");
    CHUNKED_ERR("+1\r\nx\r\n0\r\n\r\n");
    CHUNKED_ERR("0x1\r\nx\r\n0\r\n\r\n");
    CHUNKED_ERR("1;a\x01\r\nx\r\n0\r\n\r\n");    /* control byte in an extension */
    CHUNKED_ERR("0\r\nX: 1\n\r\n");              /* bare LF in a trailer */
    CHUNKED_ERR("0\r\nX: 1\r\n folded\r\n\r\n"); /* obs-fold in trailers */
    CHUNKED_ERR("0\r\n\n");                      /* bare LF at the end */
    CHUNKED_ERR("0\r\n\rX");                     /* CR without LF at the end */
    CHUNKED_ERR("0\r\n:x\r\n\r\n");              /* trailer without a name */

    /* bounded extensions and trailers */
    static char big[80000];
    size_t n = (size_t)snprintf(big, sizeof(big), "1;");
    memset(big + n, 'e', 5000);
    n += 5000;
    memcpy(big + n, "\r\nx\r\n0\r\n\r\n", 10);
    expect_chunked_error(big, n + 10);
    n = (size_t)snprintf(big, sizeof(big), "0\r\n");
    for (int i = 0; n <= PT_HTTP_TRAILERS_MAX + PT_HTTP_TRAILERS_MAX / 10;
         i++) /* past the limit, LFs not counted */
        n += (size_t)snprintf(big + n, sizeof(big) - n, "X-Trailer-%d: %d\r\n", i, i);
    memcpy(big + n, "\r\n", 2);
    expect_chunked_error(big, n + 2);
    /* 40 KiB of trailers: within the limit an HTTP/2 trailer block has too */
    n = (size_t)snprintf(big, sizeof(big), "0\r\n");
    for (int i = 0; n < 40 * 1024; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "X-Trailer-%d: %d\r\n", i, i);
    memcpy(big + n, "\r\n", 2);
    expect_chunked(big, n + 2, "", 0, 0);
}

/* ============================================================== output */

static void test_buf(void **state)
{
    struct pt_buf b;
    pt_buf_init(&b, pool, 4);
    pt_buf_json(&b, PT_STR("a\"b\\c\n\r\t\x01\x1f\x7f/\xc3\xa9 z"));
    const char want[] = "a\\\"b\\\\c\\n\\r\\t\\u0001\\u001f\\u007f/\xc3\xa9 z";
    assert_int_equal(b.n, sizeof(want) - 1);
    assert_memory_equal(b.p, want, b.n);

    pt_buf_init(&b, pool, 0);
    pt_buf_json(&b, PT_STR(""));
    assert_int_equal(b.n, 0);
    pt_buf_json(&b, (pt_str){"\0x", 2});
    assert_int_equal(b.n, 7);
    assert_memory_equal(b.p, "\\u0000x", 7);

    pt_buf_init(&b, pool, 2);
    pt_buf_u64(&b, 0);
    pt_buf_lit(&b, " ");
    pt_buf_u64(&b, UINT64_MAX);
    pt_buf_lit(&b, " ");
    pt_buf_hex(&b, 0);
    pt_buf_lit(&b, " ");
    pt_buf_hex(&b, 0xdeadBEEFULL);
    pt_buf_lit(&b, " ");
    pt_buf_hex(&b, UINT64_MAX);
    const char want2[] = "0 18446744073709551615 0 deadbeef ffffffffffffffff";
    assert_int_equal(b.n, sizeof(want2) - 1);
    assert_memory_equal(b.p, want2, b.n);

    /* growth keeps what was written */
    pt_buf_init(&b, pool, 1);
    for (int i = 0; i < 1000; i++)
        pt_buf_add(&b, "0123456789", 10);
    assert_int_equal(b.n, 10000);
    assert_memory_equal(b.p + 9990, "0123456789", 10);
}

static void test_misc_http(void **state)
{
    assert_string_equal(pt_http_reason(200), "OK");
    assert_string_equal(pt_http_reason(404), "Not Found");
    assert_string_equal(pt_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(pt_http_reason(599), "Unknown");
    assert_true(pt_str_is_token(PT_STR("X-Custom_1!")));
    assert_false(pt_str_is_token(PT_STR("")));
    assert_false(pt_str_is_token(PT_STR("a b")));
    assert_false(pt_str_is_token(PT_STR("a:b")));
    assert_false(pt_str_is_token(PT_STR("a\"")));
    assert_true(pt_http_value_ok(PT_STR("a b\tc \xff")));
    assert_true(pt_http_value_ok(PT_STR("")));
    assert_false(pt_http_value_ok(PT_STR("a\r\nb")));
    assert_false(pt_http_value_ok((pt_str){"a\0", 2}));
    assert_false(pt_http_value_ok(PT_STR("\x7f")));
    assert_int_equal(pt_http_classify(PT_STR("content-LENGTH")), PT_H_CONTENT_LENGTH);
    assert_int_equal(pt_http_classify(PT_STR("Transfer-Encoding")), PT_H_TRANSFER_ENCODING);
    assert_int_equal(pt_http_classify(PT_STR("X-Forwarded-For")), PT_H_X_FORWARDED_FOR);
    assert_int_equal(pt_http_classify(PT_STR("x-request-id")), PT_H_X_REQUEST_ID);
    assert_int_equal(pt_http_classify(PT_STR("Hostx")), PT_H_OTHER);
    assert_int_equal(pt_http_classify(PT_STR("Content-Lengt")), PT_H_OTHER);

    /* pt_http_head_add / pt_http_head_get honour deletions */
    struct pt_head h;
    memset(&h, 0, sizeof(h));
    struct pt_hdr *x = pt_http_head_add(&h, pool, PT_STR("Via"), PT_STR("1"));
    assert_non_null(x);
    assert_int_equal(x->kind, PT_H_OTHER);
    pt_http_head_add(&h, pool, PT_STR("via"), PT_STR("2"));
    x->deleted = true;
    assert_slice(pt_http_head_get(&h, PT_STR("VIA"))->value, "2");
}

/* ================================================================= URLs */

static void test_url_parse(void **state)
{
    struct pt_url u;
    assert_null(pt_url_parse(pool, "http://Example.COM", &u));
    assert_false(u.https);
    assert_string_equal(u.host, "example.com");
    assert_int_equal(u.port, 80);
    assert_true(u.default_port);
    assert_string_equal(u.authority, "example.com");
    assert_string_equal(u.path, "");

    assert_null(pt_url_parse(pool, "https://h.example:8443/base/", &u));
    assert_true(u.https);
    assert_int_equal(u.port, 8443);
    assert_false(u.default_port);
    assert_string_equal(u.authority, "h.example:8443");
    assert_string_equal(u.path, "/base");

    assert_null(pt_url_parse(pool, "HTTPS://h:443//", &u));
    assert_true(u.https);
    assert_true(u.default_port);
    assert_string_equal(u.authority, "h");
    assert_string_equal(u.path, "");

    assert_null(pt_url_parse(pool, "http://h:80/a/b", &u));
    assert_true(u.default_port);
    assert_string_equal(u.authority, "h");
    assert_string_equal(u.path, "/a/b");

    assert_null(pt_url_parse(pool, "http://h:443", &u));
    assert_false(u.default_port);
    assert_string_equal(u.authority, "h:443");

    assert_null(pt_url_parse(pool, "http://[::1]:8080/x", &u));
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 8080);
    assert_string_equal(u.authority, "[::1]:8080");
    assert_null(pt_url_parse(pool, "https://[2001:DB8::1]", &u));
    assert_string_equal(u.host, "2001:db8::1");
    assert_string_equal(u.authority, "[2001:db8::1]");
    assert_int_equal(u.port, 443);
    assert_null(pt_url_parse(pool, "http://10.0.0.1:65535/%41", &u));
    assert_int_equal(u.port, 65535);
    assert_string_equal(u.path, "/%41");

    static const struct {
        const char *url, *why;
    } bad[] = {
        {"ftp://h/", "must start with http:// or https://"},
        {"h.example", "must start with http:// or https://"},
        {"http:/h", "must start with http:// or https://"},
        {"http://", "has no host"},
        {"http:///x", "has no host"},
        {"http://u@h/", "must not carry user information"},
        {"http://u:p@h/", "must not carry user information"},
        {"http://h/?a", "must not have a query or fragment"},
        {"http://h?a", "must not have a query or fragment"},
        {"http://h/p#f", "must not have a query or fragment"},
        {"http://h:", "has an empty port"},
        {"http://h:0", "has port 0"},
        {"http://h:65536", "has a port above 65535"},
        {"http://h:8a", "has an invalid port"},
        {"http://h:-1", "has an invalid port"},
        {"http://h:80:80", "has an invalid port"},
        {"http://[::1", "has an unterminated IPv6 literal"},
        {"http://[::1]x", "has junk after the IPv6 literal"},
        {"http://:80", "has an empty host"},
        {"http://[]:80", "has an empty host"},
        {"http://h%41/", "has an invalid character in the host"},
        {"http://h\"/", "has an invalid character in the host"},
        {"http://[::1%eth0]/", "has an invalid IPv6 literal"},
        {"http://h/a b", "has a character that must be percent-encoded in the path"},
        {"http://h/a{b}", "has a character that must be percent-encoded in the path"},
        {"http://h/\x7f", "has a character that must be percent-encoded in the path"},
    };
    int fails = 0;
    for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++) {
        const char *why = pt_url_parse(pool, bad[i].url, &u);
        if (!why || strcmp(why, bad[i].why)) {
            print_message("# FAIL: url '%s': expected '%s', got '%s'\n", ES(bad[i].url), bad[i].why,
                          why ? why : "(accepted)");
            fails++;
        }
    }
    assert_int_equal(fails, 0);
}

/* Brackets hold an IPv6 address and nothing else. */
static void test_url_ipv6_literal(void **state)
{
    struct pt_url u;
    static const char *const bad[] = {"http://[example.com]/", "http://[zz]/", "http://[1.2.3.4]/"};
    int fails = 0;
    for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++)
        if (!pt_url_parse(pool, bad[i], &u)) {
            print_message("# FAIL: url '%s' should be refused\n", bad[i]);
            fails++;
        }
    assert_int_equal(fails, 0);
}

static void test_host_valid(void **state)
{
    static const char *const good[] = {
        "example.com", "example.com:8080", "EXAMPLE.com",         "a",         "1.2.3.4", "1.2.3.4:65535",
        "[::1]",       "[::1]:80",         "[2001:db8::1.2.3.4]", "a-b_c~d.e", "x:1"};
    int fails = 0;
    for (size_t i = 0; i < PT_ARRAY_LEN(good); i++)
        if (!pt_url_host_valid(pt_str_c(good[i]))) {
            print_message("# FAIL: host '%s' should be valid\n", good[i]);
            fails++;
        }
    static const char *const bad[] = {"",     ":80",     "a b",    "a:123456", "a:8x",        "[::1",
                                      "[]",   "[::1]x",  "[::1]:", "[::g]",    "a@b",         "a%41",
                                      "a/b",  "a\tb",    "a?",     "a#",       "[::1]:80:80", "a:80:80",
                                      "a:-1", "a:65536", "a:99999"};
    for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++)
        if (pt_url_host_valid(pt_str_c(bad[i]))) {
            print_message("# FAIL: host '%s' should be invalid\n", ES(bad[i]));
            fails++;
        }
    assert_int_equal(fails, 0);
    char longname[300];
    memset(longname, 'a', sizeof(longname));
    assert_true(pt_url_host_valid((pt_str){longname, 255}));
    assert_false(pt_url_host_valid((pt_str){longname, 256}));
    /* only the given bytes count */
    assert_true(pt_url_host_valid((pt_str){"abc def", 3}));

    assert_slice(pt_url_host_strip_port(PT_STR("h.example:8080")), "h.example");
    assert_slice(pt_url_host_strip_port(PT_STR("h.example")), "h.example");
    assert_slice(pt_url_host_strip_port(PT_STR("[::1]:8080")), "[::1]");
    assert_slice(pt_url_host_strip_port(PT_STR("[::1]")), "[::1]");
}

static void test_pct_decode(void **state)
{
    static const struct {
        const char *in;
        bool plus;
        const char *out;
        ssize_t n;
    } cases[] = {
        {"", false, "", 0},         {"abc", false, "abc", 3},
        {"a%20b", false, "a b", 3}, {"%41%62%7a%7A", false, "Abzz", 4},
        {"a+b", true, "a b", 3},    {"a+b", false, "a+b", 3},
        {"%2B+", true, "+ ", 2},    {"%25", false, "%", 1},
        {"%2541", false, "%41", 3}, {"x%e2%82%ac", false, "x\xe2\x82\xac", 4},
    };
    for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
        char out[64];
        print_message("# decode '%s'\n", cases[i].in);
        ssize_t n = pt_url_pct_decode(pt_str_c(cases[i].in), out, cases[i].plus);
        assert_int_equal(n, cases[i].n);
        assert_memory_equal(out, cases[i].out, (size_t)n);
    }
    char out[8];
    assert_int_equal(pt_url_pct_decode((pt_str){"%00", 3}, out, false), 1);
    assert_int_equal(out[0], 0);
    static const char *const bad[] = {"%", "%4", "a%", "%zz", "%4g", "%g4", "ab%2", "%%41"};
    for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++) {
        print_message("# bad decode '%s'\n", bad[i]);
        assert_int_equal(pt_url_pct_decode(pt_str_c(bad[i]), out, false), -1);
    }
    /* only the given bytes: "%41" cut to "%4" is bad */
    assert_int_equal(pt_url_pct_decode((pt_str){"%41", 2}, out, false), -1);
    /* in place */
    char buf[] = "a%2Fb%3dc";
    ssize_t n = pt_url_pct_decode(pt_str_c(buf), buf, false);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "a/b=c", 5);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup(f, setup)
    const struct CMUnitTest tests[] = {
        T(test_scan_complete),
        T(test_scan_errors),
        T(test_scan_limits),
        T(test_scan_max_head_boundary),
        T(test_skip_empty_lines),
        T(test_request_basic),
        T(test_request_absolute_form),
        T(test_request_dot_segments),
        T(test_request_framing),
        T(test_request_errors),
        T(test_request_expect),
        T(test_request_keepalive),
        T(test_request_hop_by_hop),
        T(test_request_websocket),
        T(test_response),
        T(test_header_name_token),
        T(test_chunked),
        T(test_chunked_partial_take),
        T(test_chunked_errors),
        T(test_chunked_size_whitespace),
        T(test_buf),
        T(test_misc_http),
        T(test_url_parse),
        T(test_url_ipv6_literal),
        T(test_host_valid),
        T(test_pct_decode),
    };
    return cmocka_run_group_tests_name("http", tests, group_setup, group_teardown);
}
