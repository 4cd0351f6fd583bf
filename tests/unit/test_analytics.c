/*
 * test_analytics -- the pure pieces of analytics: APIM's outcome of a
 * status, the counts of one request, bucket merging (sums, minimums and
 * maximums, backend times only from calls that had one), the reports'
 * ISO 8601 intervals and date-times, and the $filter conditions reports use.
 */
#include "mgmt/pt_mgmt_int.h"
#include "proxy/pt_analytics.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_outcome(void **state)
{
    (void)state;
    static const int success[] = {100, 101, 200, 201, 204, 299, 300, 301, 304, 307};
    static const int blocked[] = {401, 403, 429};
    static const int failed[] = {400, 500, 502, 503, 504, 599};
    static const int other[] = {302, 303, 305, 306, 308, 402, 404, 405, 408, 413, 499, 600, 999};
    for (size_t i = 0; i < PT_ARRAY_LEN(success); i++)
        assert_int_equal(pt_analytics_outcome(success[i]), PT_AN_SUCCESS);
    for (size_t i = 0; i < PT_ARRAY_LEN(blocked); i++)
        assert_int_equal(pt_analytics_outcome(blocked[i]), PT_AN_BLOCKED);
    for (size_t i = 0; i < PT_ARRAY_LEN(failed); i++)
        assert_int_equal(pt_analytics_outcome(failed[i]), PT_AN_FAILED);
    for (size_t i = 0; i < PT_ARRAY_LEN(other); i++)
        assert_int_equal(pt_analytics_outcome(other[i]), PT_AN_OTHER);
}

static void test_counts_of_one_request(void **state)
{
    (void)state;
    struct pt_store_an_counts c;
    pt_analytics_counts_of(&c, 429, 300, 0, 1500, -1);
    assert_int_equal(c.blocked, 1);
    assert_int_equal(c.success + c.failed + c.other, 0);
    assert_int_equal(c.bandwidth, 300);
    assert_int_equal(c.api_sum, 1500);
    assert_int_equal(c.api_min, 1500);
    assert_int_equal(c.api_max, 1500);
    assert_int_equal(c.svc_n, 0); /* no backend call: no backend time */
    pt_analytics_counts_of(&c, 200, 10, 1, 900, 700);
    assert_int_equal(c.success, 1);
    assert_int_equal(c.cache_hit, 1);
    assert_int_equal(c.cache_miss, 0);
    assert_int_equal(c.svc_n, 1);
    assert_int_equal(c.svc_sum, 700);
    pt_analytics_counts_of(&c, 503, 0, 2, 10, 0);
    assert_int_equal(c.failed, 1);
    assert_int_equal(c.cache_miss, 1);
    assert_int_equal(c.svc_n, 1); /* a backend call of 0 µs is a backend call */
}

static void test_merge(void **state)
{
    (void)state;
    struct pt_store_an_counts b = {0}, one;
    /* an empty bucket takes the first request's minimums and maximums */
    pt_analytics_counts_of(&one, 401, 100, 0, 50, -1);
    pt_analytics_counts_merge(&b, &one);
    assert_int_equal(b.api_min, 50);
    assert_int_equal(b.api_max, 50);
    assert_int_equal(b.svc_n, 0);
    pt_analytics_counts_of(&one, 200, 1000, 2, 3000, 2500);
    pt_analytics_counts_merge(&b, &one);
    pt_analytics_counts_of(&one, 500, 400, 1, 20, 10);
    pt_analytics_counts_merge(&b, &one);
    pt_analytics_counts_of(&one, 404, 7, 0, 80, -1);
    pt_analytics_counts_merge(&b, &one);
    assert_int_equal(b.success, 1);
    assert_int_equal(b.blocked, 1);
    assert_int_equal(b.failed, 1);
    assert_int_equal(b.other, 1);
    assert_int_equal(b.bandwidth, 1507);
    assert_int_equal(b.cache_hit, 1);
    assert_int_equal(b.cache_miss, 1);
    assert_int_equal(b.api_sum, 3150);
    assert_int_equal(b.api_min, 20);
    assert_int_equal(b.api_max, 3000);
    /* backend times: only the two calls that had one */
    assert_int_equal(b.svc_n, 2);
    assert_int_equal(b.svc_sum, 2510);
    assert_int_equal(b.svc_min, 10);
    assert_int_equal(b.svc_max, 2500);
    /* merging buckets: the same as merging their requests one by one */
    struct pt_store_an_counts x = {0}, y = {0}, all = {0};
    int st[] = {200, 201, 429, 500, 302, 200};
    int64_t svc[] = {5, -1, -1, 40, 7, 3};
    for (int i = 0; i < 6; i++) {
        pt_analytics_counts_of(&one, st[i], (uint64_t)i, 0, (uint64_t)(100 - i * 10), svc[i]);
        pt_analytics_counts_merge(i % 2 ? &x : &y, &one);
        pt_analytics_counts_merge(&all, &one);
    }
    pt_analytics_counts_merge(&x, &y);
    assert_memory_equal(&x, &all, sizeof(x));
    /* an empty bucket merged in changes nothing */
    struct pt_store_an_counts empty = {0}, before = all;
    pt_analytics_counts_merge(&all, &empty);
    assert_memory_equal(&before, &all, sizeof(all));
}

static void test_interval(void **state)
{
    (void)state;
    assert_int_equal(pt_mgmt_reports_interval("PT15M"), 900);
    assert_int_equal(pt_mgmt_reports_interval("PT1M"), 60);
    assert_int_equal(pt_mgmt_reports_interval("PT1H"), 3600);
    assert_int_equal(pt_mgmt_reports_interval("P1D"), 86400);
    assert_int_equal(pt_mgmt_reports_interval("P1W"), 7 * 86400);
    assert_int_equal(pt_mgmt_reports_interval("P1DT12H"), 86400 + 12 * 3600);
    assert_int_equal(pt_mgmt_reports_interval("PT1H30M"), 5400);
    assert_int_equal(pt_mgmt_reports_interval("PT120S"), 120);
    static const char *const bad[] = {"",     "P",     "PT",    "PT90S",           "PT0M",  "P1M",
                                      "P1Y",  "15m",   "PT15",  "pt15m",           "PT-1M", "P1H",
                                      "PT1D", "PT1MX", "P367D", "PT999999999999M", "P1DT",  "PT1M1M30S",
                                      NULL};
    for (int i = 0; bad[i]; i++) {
        print_message("# interval '%s'\n", bad[i]);
        assert_int_equal(pt_mgmt_reports_interval(bad[i]), -1);
    }
    assert_int_equal(pt_mgmt_reports_interval(NULL), -1);
}

static void test_datetime(void **state)
{
    (void)state;
    int64_t ms;
    assert_true(pt_mgmt_reports_datetime("2026-01-02T03:04:05Z", &ms));
    assert_int_equal(ms, 1767323045000LL);
    assert_true(pt_mgmt_reports_datetime("2026-01-02T03:04:05.25Z", &ms));
    assert_int_equal(ms, 1767323045250LL);
    assert_true(pt_mgmt_reports_datetime("2026-01-02T04:04:05+01:00", &ms));
    assert_int_equal(ms, 1767323045000LL);
    assert_true(pt_mgmt_reports_datetime("2026-01-02T03:04:05", &ms)); /* no zone: UTC */
    assert_int_equal(ms, 1767323045000LL);
    assert_true(pt_mgmt_reports_datetime("2026-01-02T03:04Z", &ms));
    assert_int_equal(ms, 1767323040000LL);
    assert_true(pt_mgmt_reports_datetime("2026-01-02", &ms));
    assert_int_equal(ms, 1767312000000LL);
    assert_true(pt_mgmt_reports_datetime("2024-02-29T00:00:00Z", &ms));
    static const char *const bad[] = {"",
                                      "2026",
                                      "2026-13-01T00:00:00Z",
                                      "2026-02-30T00:00:00Z",
                                      "2025-02-29",
                                      "2026-01-02T24:00:00Z",
                                      "2026-01-02T03:04:05ZZ",
                                      "2026-01-02T03:04:05.Z",
                                      "2026-01-02T03:04:05+1:00",
                                      "1969-12-31T23:59:59Z",
                                      "1970-01-01T00:00:00+01:00",
                                      "yesterday",
                                      "2026-01-02T03:04:05 ",
                                      NULL};
    for (int i = 0; bad[i]; i++) {
        print_message("# datetime '%s'\n", bad[i]);
        assert_false(pt_mgmt_reports_datetime(bad[i], &ms));
    }
}

static void test_filter_for_reports(void **state)
{
    (void)state;
    struct pt_mgmt_filter_cond c[PT_MGMT_FILTER_MAX];
    int n = pt_mgmt_filter_parse(
        "timestamp ge 2026-01-02T03:04:05Z and timestamp le "
        "datetime'2026-01-03T00:00:00Z' and apiId eq '/apis/echo' and x lt 3 and y gt '2'",
        c, PT_MGMT_FILTER_MAX);
    assert_int_equal(n, 5);
    assert_string_equal(c[0].op, "ge");
    assert_string_equal(c[0].value, "2026-01-02T03:04:05Z");
    assert_string_equal(c[1].op, "le");
    assert_string_equal(c[1].value, "2026-01-03T00:00:00Z");
    assert_string_equal(c[2].value, "/apis/echo");
    assert_string_equal(c[3].op, "lt");
    assert_string_equal(c[4].op, "gt");
    assert_int_equal(pt_mgmt_filter_parse("timestamp gte 2026-01-02", c, PT_MGMT_FILTER_MAX), -1);
    assert_int_equal(pt_mgmt_filter_parse("timestamp ge", c, PT_MGMT_FILTER_MAX), -1);
    /* ge and friends on a list compare text without case */
    json_t *o = json_pack("{s:s}", "name", "Mango");
    struct pt_mgmt_filter_cond k = {"name", "ge", "apple"};
    assert_true(pt_mgmt_filter_holds(&k, o));
    snprintf(k.op, sizeof(k.op), "lt");
    assert_false(pt_mgmt_filter_holds(&k, o));
    snprintf(k.value, sizeof(k.value), "mango");
    snprintf(k.op, sizeof(k.op), "le");
    assert_true(pt_mgmt_filter_holds(&k, o));
    snprintf(k.op, sizeof(k.op), "gt");
    assert_false(pt_mgmt_filter_holds(&k, o));
    json_decref(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outcome),  cmocka_unit_test(test_counts_of_one_request),
        cmocka_unit_test(test_merge),    cmocka_unit_test(test_interval),
        cmocka_unit_test(test_datetime), cmocka_unit_test(test_filter_for_reports),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
