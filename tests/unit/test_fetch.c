/*
 * test_fetch -- the outbound client's response parser (pt_fetch_parse), fed
 * whole and byte by byte, and the error log's escaping of control bytes.
 */
#include "base/pt_log.h"
#include "http/pt_fetch.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

struct outcome {
    int rc;
    int status;
    size_t len;
    char body[256];
    char err[256];
};

/* Parses `n` bytes fed in pieces of `step` bytes (0: all at once), then EOF if eof. */
static struct outcome parse(const char *data, size_t n, size_t step, bool eof, size_t max_body)
{
    struct outcome o = {0};
    struct pt_fetch_parser p;
    pt_fetch_parser_init(&p, max_body, false);
    struct evbuffer *in = evbuffer_new();
    size_t off = 0;
    o.rc = 0;
    while (off < n && o.rc == 0) {
        size_t k = step ? (n - off < step ? n - off : step) : n - off;
        evbuffer_add(in, data + off, k);
        off += k;
        o.rc = pt_fetch_parse(&p, in, false, o.err, sizeof(o.err));
    }
    if (o.rc == 0 && eof)
        o.rc = pt_fetch_parse(&p, in, true, o.err, sizeof(o.err));
    if (o.rc == 1) {
        o.status = p.h.status;
        o.len = evbuffer_get_length(p.body);
        evbuffer_copyout(p.body, o.body, o.len < sizeof(o.body) ? o.len : sizeof(o.body) - 1);
    }
    evbuffer_free(in);
    pt_fetch_parser_free(&p);
    return o;
}

#define PARSE(s, step, eof) parse((s), sizeof(s) - 1, (step), (eof), 0)

static void test_length_body(void **state)
{
    (void)state;
    static const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    for (size_t step = 0; step < 4; step++) {
        struct outcome o = PARSE(r, step, false);
        assert_int_equal(o.rc, 1);
        assert_int_equal(o.status, 200);
        assert_int_equal(o.len, 5);
        assert_string_equal(o.body, "hello");
    }
    /* cut short */
    struct outcome o = parse(r, sizeof(r) - 3, 0, true, 0);
    assert_int_equal(o.rc, PT_FETCH_ERROR);
    assert_non_null(strstr(o.err, "before the end"));
}

static void test_chunked_body_with_nul_bytes(void **state)
{
    (void)state;
    /* the bug this client replaced: chunk data with NUL bytes sized the copy by strlen */
    static const char r[] =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\na\0\0b\r\n3;x=y\r\n\0cd\r\n0\r\n\r\n";
    for (size_t step = 0; step < 3; step++) {
        struct outcome o = PARSE(r, step, false);
        assert_int_equal(o.rc, 1);
        assert_int_equal(o.len, 7);
        assert_memory_equal(o.body, "a\0\0b\0cd", 7);
    }
    struct outcome o = PARSE("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, false);
    assert_int_equal(o.rc, PT_FETCH_ERROR);
    o = PARSE("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", 0, true);
    assert_int_equal(o.rc, PT_FETCH_ERROR);
}

static void test_size_cap(void **state)
{
    (void)state;
    static const char cl[] = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n0123456789a";
    assert_int_equal(parse(cl, sizeof(cl) - 1, 0, false, 10).rc, PT_FETCH_TOO_LARGE);
    assert_int_equal(parse(cl, sizeof(cl) - 1, 0, false, 11).rc, 1);
    static const char ch[] =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n6\r\n678901\r\n0\r\n\r\n";
    struct outcome o = parse(ch, sizeof(ch) - 1, 5, false, 10);
    assert_int_equal(o.rc, PT_FETCH_TOO_LARGE);
    assert_non_null(strstr(o.err, "larger than 10 bytes"));
    static const char eof[] = "HTTP/1.0 200 OK\r\n\r\n0123456789abc";
    assert_int_equal(parse(eof, sizeof(eof) - 1, 0, true, 10).rc, PT_FETCH_TOO_LARGE);
    o = parse(eof, sizeof(eof) - 1, 0, true, 100);
    assert_int_equal(o.rc, 1);
    assert_int_equal(o.len, 13);
}

static void test_interim_and_heads(void **state)
{
    (void)state;
    char buf[2048];
    size_t n = 0;
    for (int i = 0; i < PT_FETCH_INTERIM_MAX; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "HTTP/1.1 100 Continue\r\n\r\n");
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "HTTP/1.1 204 No Content\r\n\r\n");
    struct outcome o = parse(buf, n, 0, false, 0);
    assert_int_equal(o.rc, 1);
    assert_int_equal(o.status, 204);
    n = 0;
    for (int i = 0; i <= PT_FETCH_INTERIM_MAX; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "HTTP/1.1 103 Early Hints\r\n\r\n");
    o = parse(buf, n, 0, false, 0);
    assert_int_equal(o.rc, PT_FETCH_ERROR);
    assert_non_null(strstr(o.err, "interim"));
    assert_int_equal(PARSE("HTTP/1.1 101 Switching\r\nUpgrade: x\r\n\r\n", 0, false).rc, PT_FETCH_ERROR);
    assert_int_equal(PARSE("HTTP/2 200\r\n\r\n", 0, false).rc, PT_FETCH_ERROR);
    assert_int_equal(PARSE("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 0, false).rc,
                     PT_FETCH_ERROR);
    assert_int_equal(PARSE("HTTP/1.1 200 OK\r\nContent-Le", 0, true).rc, PT_FETCH_ERROR);
    assert_int_equal(PARSE("garbage\r\n\r\n", 0, false).rc, PT_FETCH_ERROR);
    /* a head over 64 KiB */
    size_t big = PT_FETCH_HEAD_MAX + 100;
    char *h = malloc(big);
    memcpy(h, "HTTP/1.1 200 OK\r\nX: ", 20);
    memset(h + 20, 'a', big - 20);
    assert_int_equal(parse(h, big, 0, false, 0).rc, PT_FETCH_ERROR);
    free(h);
}

static void test_log_escapes_control_bytes(void **state)
{
    (void)state;
    char path[] = "/tmp/pt-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(pt_log_open(path), 0);
    pt_log_write(PT_LOG_WARN, "peer said %s", "ok\r\n2026-01-01T00:00:00.000Z [error] forged\x1b[31m\x7f");
    pt_log_open("stderr");
    FILE *f = fopen(path, "r");
    char line[1024];
    int lines = 0;
    char first[1024] = "";
    while (fgets(line, sizeof(line), f)) {
        if (!lines)
            snprintf(first, sizeof(first), "%s", line);
        lines++;
    }
    fclose(f);
    unlink(path);
    assert_int_equal(lines, 1);
    assert_non_null(
        strstr(first, "[warn] peer said ok\\r\\n2026-01-01T00:00:00.000Z [error] forged\\x1b[31m\\x7f\n"));
}

/* The addresses a -link import may not reach without management.importPrivateLinks. */
static bool private_addr(const char *text)
{
    struct sockaddr_storage ss = {0};
    if (strchr(text, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, &a->sin6_addr), 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, &a->sin_addr), 1);
    }
    return pt_fetch_address_private((struct sockaddr *)&ss);
}

static void test_private_addresses(void **state)
{
    (void)state;
    static const char *const refused[] = {"127.0.0.1",
                                          "127.255.0.9",
                                          "10.0.0.1",
                                          "172.16.0.1",
                                          "172.31.255.255",
                                          "192.168.1.1",
                                          "169.254.169.254",
                                          "100.64.0.1",
                                          "0.0.0.0",
                                          "224.0.0.1",
                                          "255.255.255.255",
                                          "::1",
                                          "::",
                                          "fe80::1",
                                          "fd00::1",
                                          "ff02::1",
                                          "::ffff:127.0.0.1",
                                          "::ffff:10.0.0.1",
                                          "::ffff:169.254.169.254"};
    static const char *const allowed[] = {"8.8.8.8", "172.32.0.1",      "100.128.0.1",   "192.169.0.1",
                                          "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(*refused); i++)
        if (!private_addr(refused[i]))
            fail_msg("%s should be refused", refused[i]);
    for (size_t i = 0; i < sizeof(allowed) / sizeof(*allowed); i++)
        if (private_addr(allowed[i]))
            fail_msg("%s should be allowed", allowed[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_length_body),
        cmocka_unit_test(test_chunked_body_with_nul_bytes),
        cmocka_unit_test(test_size_cap),
        cmocka_unit_test(test_interim_and_heads),
        cmocka_unit_test(test_log_escapes_control_bytes),
        cmocka_unit_test(test_private_addresses),
    };
    return cmocka_run_group_tests_name("fetch", tests, NULL, NULL);
}
