/*
 * test_logsink -- the log sinks' pure parts: RFC 5424 framing
 * (pt_logsink_syslog_format: PRI, header fields, structured data and its
 * escapes, the cut to the frame's length) and the UTF-8-safe cut
 * (pt_logsink_cut) that log-to-eventhub's 200 KB limit uses.
 */
#include "http/pt_logsink.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* 2026-12-06T10:20:30.456Z */
#define T0 1796552430456ULL

static size_t fmt(char *out, size_t max, int pri, const char *host, const char *app, const char *msgid,
                  const struct pt_logsink_sd *sd, int nsd, const char *msg)
{
    size_t n = pt_logsink_syslog_format(out, max, pri, T0, host, app, 42, msgid, "portico@32473", sd, nsd,
                                        msg, strlen(msg));
    out[n] = '\0';
    return n;
}

static void test_header_and_pri(void **state)
{
    (void)state;
    char out[1024];
    fmt(out, 1000, 19 * 8 + 4, "edge-1", "gw", "log-to", NULL, 0, "hello");
    assert_string_equal(out, "<156>1 2026-12-06T10:20:30.456Z edge-1 gw 42 log-to - hello");
    fmt(out, 1000, 0, "h", "a", "m", NULL, 0, "");
    assert_string_equal(out, "<0>1 2026-12-06T10:20:30.456Z h a 42 m -"); /* no MSG: no space */
    fmt(out, 1000, 191, "h", "a", "m", NULL, 0, "x");
    assert_string_equal(out, "<191>1 2026-12-06T10:20:30.456Z h a 42 m - x");
    fmt(out, 1000, 999, "h", "a", "m", NULL, 0, "x"); /* PRI clamped to local7.debug */
    assert_true(!strncmp(out, "<191>1 ", 7));
}

static void test_fields_nil_cut_and_printable(void **state)
{
    (void)state;
    char out[2048], host[300], app[60], id[40];
    memset(host, 'h', sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    memset(app, 'a', sizeof(app) - 1);
    app[sizeof(app) - 1] = '\0';
    memset(id, 'i', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    fmt(out, 2000, 14, host, app, id, NULL, 0, "m");
    char want[2048];
    snprintf(want, sizeof(want), "<14>1 2026-12-06T10:20:30.456Z %.255s %.48s 42 %.32s - m", host, app, id);
    assert_string_equal(out, want);
    /* empty fields are the NILVALUE; spaces and control bytes cannot break the header */
    fmt(out, 2000, 14, "", NULL, "a b\nc", NULL, 0, "m");
    assert_string_equal(out, "<14>1 2026-12-06T10:20:30.456Z - - 42 a_b_c - m");
    fmt(out, 2000, 14, "h\xc3\xa9", "app", "id", NULL, 0, "m");
    assert_string_equal(out, "<14>1 2026-12-06T10:20:30.456Z h__ app 42 id - m");
}

static void test_structured_data_escapes(void **state)
{
    (void)state;
    char out[1024];
    struct pt_logsink_sd sd[3] = {
        {"logger", {"a", 1}},
        {"partitionId", {"", 0}}, /* empty: left out */
        {"partitionKey", {"k\"\\]x", 5}},
    };
    fmt(out, 1000, 134, "h", "a", "log-to", sd, 3, "body ] \" \\");
    assert_string_equal(out, "<134>1 2026-12-06T10:20:30.456Z h a 42 log-to "
                             "[portico@32473 logger=\"a\" partitionKey=\"k\\\"\\\\\\]x\"] body ] \" \\");
    /* no parameter with a value: "-" */
    struct pt_logsink_sd none[1] = {{"partitionId", {"", 0}}};
    fmt(out, 1000, 134, "h", "a", "m", none, 1, "x");
    assert_string_equal(out, "<134>1 2026-12-06T10:20:30.456Z h a 42 m - x");
}

static void test_frame_cut_to_max(void **state)
{
    (void)state;
    char out[1024], msg[2000];
    memset(msg, 'x', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    size_t n = fmt(out, 480, 14, "h", "a", "m", NULL, 0, msg);
    assert_int_equal(n, 480);
    assert_true(!strncmp(out, "<14>1 2026-12-06T10:20:30.456Z h a 42 m - xxx", 45));
    /* a multi-byte character is never split: 3-byte characters after the header */
    char euro[1000] = "";
    for (int i = 0; i < 300; i++)
        strcat(euro, "\xe2\x82\xac");
    n = fmt(out, 480, 14, "h", "a", "m", NULL, 0, euro);
    size_t head = strlen("<14>1 2026-12-06T10:20:30.456Z h a 42 m - ");
    assert_true(n <= 480 && n > 476);
    assert_int_equal((n - head) % 3, 0);
    /* structured data that would not fit leaves the message room: it becomes "-" */
    char big[600];
    memset(big, 'k', sizeof(big));
    struct pt_logsink_sd sd[1] = {{"partitionKey", {big, sizeof(big)}}};
    n = fmt(out, 480, 14, "h", "a", "m", sd, 1, "msg");
    assert_string_equal(out, "<14>1 2026-12-06T10:20:30.456Z h a 42 m - msg");
}

static void test_cut_utf8(void **state)
{
    (void)state;
    const char *s = "ab\xc3\xa9"
                    "cd"; /* a b é c d */
    assert_int_equal(pt_logsink_cut(s, 6, 10), 6);
    assert_int_equal(pt_logsink_cut(s, 6, 4), 4);
    assert_int_equal(pt_logsink_cut(s, 6, 3), 2); /* would split é */
    assert_int_equal(pt_logsink_cut(s, 6, 2), 2);
    const char *four = "\xf0\x9f\x98\x80\xf0\x9f\x98\x80"; /* two 4-byte characters */
    for (size_t m = 4; m < 8; m++)
        assert_int_equal(pt_logsink_cut(four, 8, m), 4);
    assert_int_equal(pt_logsink_cut(four, 8, 3), 0);
    /* not UTF-8 (a run of continuation bytes): cut where asked */
    const char bad[] = "\x80\x80\x80\x80\x80\x80";
    assert_int_equal(pt_logsink_cut(bad, 6, 5), 5);
    /* APIM's 200 KB: 204,800 bytes at most */
    size_t big = PT_LOGSINK_MESSAGE_MAX + 10;
    char *p = malloc(big);
    memset(p, 'a', big);
    assert_int_equal(pt_logsink_cut(p, big, PT_LOGSINK_MESSAGE_MAX), 204800);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_and_pri),
        cmocka_unit_test(test_fields_nil_cut_and_printable),
        cmocka_unit_test(test_structured_data_escapes),
        cmocka_unit_test(test_frame_cut_to_max),
        cmocka_unit_test(test_cut_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
