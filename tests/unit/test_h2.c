/*
 * test_h2 -- the pure pieces of HTTP/2 from clients (core/proxy/pt_h2.c):
 * request fields into an HTTP/1.1 head, a response head into HTTP/2 fields.
 */
#include "base/pt_pool.h"
#include "http/pt_http.h"
#include "proxy/pt_h2.h"

#include <event2/buffer.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void field(struct pt_h2_reqhead *r, const char *name, const char *value)
{
    assert_true(
        pt_h2head_field(r, (const uint8_t *)name, strlen(name), (const uint8_t *)value, strlen(value)));
}

/* The head as text (NUL-terminated copy). */
static char *written(struct pt_h2_reqhead *r, bool end_stream, bool *chunked)
{
    struct evbuffer *b = evbuffer_new();
    if (!pt_h2head_req_write(r, end_stream, b, chunked)) {
        evbuffer_free(b);
        return NULL;
    }
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    evbuffer_free(b);
    return s;
}

static void test_request_head_from_fields(void **state)
{
    struct pt_h2_reqhead r;
    pt_h2head_init(&r, 4096);
    field(&r, ":method", "GET");
    field(&r, ":scheme", "https");
    field(&r, ":path", "/a/b?c=1");
    field(&r, ":authority", "api.example:8443");
    field(&r, "host", "ignored.example");
    field(&r, "cookie", "a=1");
    field(&r, "accept", "*/*");
    field(&r, "cookie", "b=2");
    bool chunked = true;
    char *s = written(&r, true, &chunked);
    assert_non_null(s);
    assert_false(chunked);
    assert_string_equal(s, "GET /a/b?c=1 HTTP/1.1\r\nHost: api.example:8443\r\naccept: */*\r\n"
                           "Cookie: a=1; b=2\r\n\r\n");
    free(s);
    pt_h2head_free(&r);
}

static void test_request_body_framing(void **state)
{
    struct pt_h2_reqhead r;
    bool chunked = false;
    pt_h2head_init(&r, 4096);
    field(&r, ":method", "POST");
    field(&r, ":path", "/p");
    field(&r, "host", "h.example");
    char *s = written(&r, false, &chunked);
    assert_true(chunked); /* more to come and no length: chunked */
    assert_string_equal(s, "POST /p HTTP/1.1\r\nHost: h.example\r\nTransfer-Encoding: chunked\r\n\r\n");
    free(s);
    pt_h2head_free(&r);

    pt_h2head_init(&r, 4096);
    field(&r, ":method", "POST");
    field(&r, ":path", "/p");
    field(&r, "content-length", "5");
    s = written(&r, false, &chunked);
    assert_false(chunked); /* the client's length stands */
    assert_string_equal(s, "POST /p HTTP/1.1\r\ncontent-length: 5\r\n\r\n");
    free(s);
    pt_h2head_free(&r);
}

static void test_request_head_bounds(void **state)
{
    struct pt_h2_reqhead r;
    bool chunked;
    pt_h2head_init(&r, 200);
    field(&r, ":method", "GET");
    assert_null(written(&r, true, &chunked)); /* no :path */
    char big[300];
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    field(&r, "x-big", big);
    assert_true(r.too_big);
    field(&r, "x-more", "1"); /* nothing more is kept */
    assert_null(r.fields);
    pt_h2head_free(&r);
}

static void test_response_fields(void **state)
{
    struct pt_pool *pool = pt_pool_new(4096);
    static const char resp[] =
        "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nConnection: close\r\n"
        "Transfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\nX-Request-ID: abc\r\n\r\n";
    char *copy = pt_pool_alloc(pool, sizeof(resp) - 1);
    memcpy(copy, resp, sizeof(resp) - 1);
    struct pt_head h = {0};
    struct pt_http_err err = {0};
    assert_true(pt_http_parse_response(&h, copy, sizeof(resp) - 1, pool, 100, false, &err));
    nghttp2_nv *nv;
    int n = pt_h2head_nv(&h, NULL, pool, &nv);
    assert_int_equal(n, 3);
    assert_memory_equal(nv[0].name, ":status", 7);
    assert_memory_equal(nv[0].value, "404", 3);
    assert_int_equal(nv[1].namelen, 12);
    assert_memory_equal(nv[1].name, "content-type", 12);
    assert_memory_equal(nv[2].name, "x-request-id", 12); /* lower case, as HTTP/2 requires */
    assert_memory_equal(nv[2].value, "abc", 3);
    pt_pool_free(pool);
}

/* Fields an HTTP/1.1 head cannot carry as they are, refused whatever nghttp2 let through. */
static void test_request_fields_refused(void **state)
{
    (void)state;
    static const struct {
        const char *name, *value;
        size_t vlen;
    } bad[] = {
        {"x-a", "a\r\nInjected: 1", 15},
        {"x-a", "a\nb", 3},
        {"x-a", "a\0b", 3},
        {"X-Upper", "v", 1},
        {"x:y", "v", 1},
        {"x y", "v", 1},
        {"", "v", 1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct pt_h2_reqhead r;
        pt_h2head_init(&r, 8192);
        assert_false(pt_h2head_field(&r, (const uint8_t *)bad[i].name, strlen(bad[i].name),
                                     (const uint8_t *)bad[i].value, bad[i].vlen));
        pt_h2head_free(&r);
    }
    struct pt_h2_reqhead r;
    pt_h2head_init(&r, 8192);
    field(&r, ":path", "/a");
    field(&r, "x-ok_1.~", "a b\tc");
    pt_h2head_free(&r);
}

static void test_preface(void **state)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, "PRI * HTTP/2.0\r\n", 16);
    assert_int_equal(pt_h2_preface(b), -1);
    evbuffer_add(b, "\r\nSM\r\n\r\n", 8);
    assert_int_equal(pt_h2_preface(b), 1);
    evbuffer_drain(b, 24);
    evbuffer_add(b, "GET / HTTP/1.1\r\n", 16);
    assert_int_equal(pt_h2_preface(b), 0);
    evbuffer_free(b);
}

/* A request head as HTTP/2 fields: pseudo-fields from the head, Host and connection-specific fields left
   out, TE kept only as "trailers". */
static void test_request_to_fields(void **state)
{
    (void)state;
    struct pt_pool *pool = pt_pool_new(4096);
    static const char req[] = "POST /a/b?c=1 HTTP/1.1\r\nHost: api.example:8443\r\nConnection: keep-alive\r\n"
                              "TE: trailers\r\nContent-Type: application/grpc\r\nContent-Length: 3\r\n\r\n";
    char *copy = pt_pool_alloc(pool, sizeof(req) - 1);
    memcpy(copy, req, sizeof(req) - 1);
    struct pt_head h = {0};
    struct pt_http_err err = {0};
    assert_true(pt_http_parse_request(&h, copy, sizeof(req) - 1, pool, 100, UINT64_MAX, &err));
    nghttp2_nv *nv;
    int n = pt_h2head_nv(&h, "https", pool, &nv);
    assert_int_equal(n, 7);
    const char *want[][2] = {
        {":method", "POST"},    {":scheme", "https"}, {":authority", "api.example:8443"},
        {":path", "/a/b?c=1"},  {"te", "trailers"},   {"content-type", "application/grpc"},
        {"content-length", "3"}};
    for (int i = 0; i < n; i++) {
        assert_int_equal(nv[i].namelen, strlen(want[i][0]));
        assert_memory_equal(nv[i].name, want[i][0], nv[i].namelen);
        assert_int_equal(nv[i].valuelen, strlen(want[i][1]));
        assert_memory_equal(nv[i].value, want[i][1], nv[i].valuelen);
    }
    /* another TE value is not passed */
    static const char req2[] = "GET / HTTP/1.1\r\nHost: h\r\nTE: gzip\r\n\r\n";
    copy = pt_pool_alloc(pool, sizeof(req2) - 1);
    memcpy(copy, req2, sizeof(req2) - 1);
    memset(&h, 0, sizeof(h));
    assert_true(pt_http_parse_request(&h, copy, sizeof(req2) - 1, pool, 100, UINT64_MAX, &err));
    assert_int_equal(pt_h2head_nv(&h, "http", pool, &nv), 4);
    pt_pool_free(pool);
}

static char *drain_str(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    evbuffer_remove(b, s, n);
    s[n] = 0;
    return s;
}

/* A response's HEADERS as an HTTP/1.1 head: chunked without a length, a length of 0 when the HEADERS end
   the stream, nothing for HEAD / 204 / 304; a bad :status refused. */
static void test_response_head_from_fields(void **state)
{
    (void)state;
    static const struct {
        const char *status, *length;
        bool end, head;
        const char *want;
        int ret;
    } cases[] = {
        {"200", NULL, false, false, "HTTP/1.1 200 OK\r\nx-a: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 200},
        {"200", "5", false, false, "HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 5\r\n\r\n", 200},
        {"404", NULL, true, false, "HTTP/1.1 404 Not Found\r\nx-a: 1\r\nContent-Length: 0\r\n\r\n", 404},
        {"204", NULL, true, false, "HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n", 204},
        {"200", NULL, true, true, "HTTP/1.1 200 OK\r\nx-a: 1\r\n\r\n", 200},
        {"100", NULL, false, false, "HTTP/1.1 100 Continue\r\nx-a: 1\r\n\r\n", 100},
        {"20", NULL, false, false, "", -1},
        {"2x0", NULL, false, false, "", -1},
        {"099", NULL, false, false, "", -1},
        {NULL, NULL, false, false, "", -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pt_h2_reqhead r;
        pt_h2head_init(&r, 65536);
        if (cases[i].status)
            field(&r, ":status", cases[i].status);
        field(&r, "x-a", "1");
        if (cases[i].length)
            field(&r, "content-length", cases[i].length);
        struct evbuffer *out = evbuffer_new();
        bool chunked = false;
        assert_int_equal(pt_h2head_resp_write(&r, cases[i].end, cases[i].head, out, &chunked), cases[i].ret);
        if (cases[i].ret > 0) {
            char *got = drain_str(out);
            assert_string_equal(got, cases[i].want);
            assert_int_equal(chunked, strstr(cases[i].want, "chunked") != NULL);
            free(got);
        }
        evbuffer_free(out);
        pt_h2head_free(&r);
    }
}

/* The chunked decoder copies the end of a body (last chunk, trailers) when asked, and the copy reads
   back as HTTP/2 trailer fields. */
static void test_trailers_copied_and_read(void **state)
{
    (void)state;
    static const char body[] = "3\r\nabc\r\n0\r\nGrpc-Status: 0\r\nX-Trailer: yes\r\n\r\n";
    struct evbuffer *in = evbuffer_new(), *end = evbuffer_new();
    struct pt_chunked ck = {0};
    struct pt_http_err err = {0};
    size_t payload = 0;
    /* byte by byte: the copy does not depend on how the body arrives */
    for (size_t i = 0; i < sizeof(body) - 1; i++) {
        evbuffer_add(in, body + i, 1);
        for (;;) {
            ck.end_to = end;
            ssize_t r = pt_http_chunked_next(&ck, in, &err);
            assert_int_not_equal(r, PT_CHUNKED_ERROR);
            if (r <= 0)
                break;
            evbuffer_drain(in, (size_t)r);
            pt_http_chunked_took(&ck, (size_t)r);
            payload += (size_t)r;
        }
    }
    assert_int_equal(payload, 3);
    struct pt_pool *pool = pt_pool_new(4096);
    struct evbuffer *copy = evbuffer_new();
    evbuffer_add_buffer_reference(copy, end);
    char *s = drain_str(copy);
    assert_string_equal(s, "0\r\nGrpc-Status: 0\r\nX-Trailer: yes\r\n\r\n");
    free(s);
    nghttp2_nv *nv;
    assert_int_equal(pt_h2_trailer_fields(end, pool, &nv), 2);
    assert_memory_equal(nv[0].name, "grpc-status", 11);
    assert_memory_equal(nv[0].value, "0", 1);
    assert_memory_equal(nv[1].name, "x-trailer", 9);
    /* none: nothing to send */
    evbuffer_add(end, "0\r\n\r\n", 5);
    assert_int_equal(pt_h2_trailer_fields(end, pool, &nv), 0);
    /* a malformed field is dropped, and only it */
    evbuffer_drain(end, evbuffer_get_length(end));
    evbuffer_add(end, "0\r\nno colon\r\n\r\n", 16);
    assert_int_equal(pt_h2_trailer_fields(end, pool, &nv), 0);
    static const char mixed[] = "0\r\nno colon\r\nGrpc-Status: 13\r\n\r\n";
    evbuffer_add(end, mixed, sizeof(mixed) - 1);
    assert_int_equal(pt_h2_trailer_fields(end, pool, &nv), 1);
    assert_memory_equal(nv[0].name, "grpc-status", 11);
    assert_memory_equal(nv[0].value, "13", 2);
    pt_pool_free(pool);
    evbuffer_free(copy);
    evbuffer_free(in);
    evbuffer_free(end);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_head_from_fields), cmocka_unit_test(test_request_body_framing),
        cmocka_unit_test(test_request_head_bounds),      cmocka_unit_test(test_response_fields),
        cmocka_unit_test(test_request_fields_refused),   cmocka_unit_test(test_preface),
        cmocka_unit_test(test_request_to_fields),        cmocka_unit_test(test_response_head_from_fields),
        cmocka_unit_test(test_trailers_copied_and_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
