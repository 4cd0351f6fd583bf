/*
 * test_retry -- retry's waits (pt_corepol_retry_wait): fixed, linear and
 * exponential intervals, the random factor of exponential waits,
 * first-fast-retry, the one-hour cap and large attempt numbers.
 *
 * The random factor is 0.8 + 0.4 * (rnd % 10001) / 10000: rnd % 10001 ==
 * 5000 gives exactly 1.0, 0 gives 0.8 and 10000 gives 1.2.
 */
#include "policy/pt_corepol.h"

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#define F10 5000u  /* factor 1.0 */
#define F08 0u     /* factor 0.8 */
#define F12 10000u /* factor 1.2 */
#define HOUR 3600000u

static struct pt_retry R(uint32_t interval, uint32_t max, uint32_t delta, bool first_fast) {
    return (struct pt_retry){.cond = NULL,
                             .count = 50,
                             .interval_ms = interval,
                             .max_interval_ms = max,
                             .delta_ms = delta,
                             .first_fast = first_fast};
}

static void
test_fixed(void **state)
{
    (void)state;
    struct pt_retry r = R(5000, 0, 0, false);
    for (int n = 1; n <= 50; n++)
        assert_int_equal(pt_corepol_retry_wait(&r, n, (uint64_t)n * 7919), 5000);
    /* without delta, max-interval plays no part */
    r = R(5000, 1000, 0, false);
    assert_int_equal(pt_corepol_retry_wait(&r, 1, F10), 5000);
    assert_int_equal(pt_corepol_retry_wait(&r, 9, F10), 5000);
    r = R(0, 0, 0, false);
    assert_int_equal(pt_corepol_retry_wait(&r, 1, F10), 0);
    assert_int_equal(pt_corepol_retry_wait(&r, 3, F10), 0);
}

static void test_linear(void **state)
{
    (void)state;
    /* interval + (n-1) * delta, no randomness */
    struct pt_retry r = R(1000, 0, 500, false);
    static const uint32_t want[] = {1000, 1500, 2000, 2500, 3000};
    for (int n = 1; n <= 5; n++) {
        assert_int_equal(pt_corepol_retry_wait(&r, n, F08), want[n - 1]);
        assert_int_equal(pt_corepol_retry_wait(&r, n, F12), want[n - 1]);
    }
    assert_int_equal(pt_corepol_retry_wait(&r, 50, F10), 1000 + 49 * 500);
    r = R(0, 0, 2000, false);
    assert_int_equal(pt_corepol_retry_wait(&r, 1, F10), 0);
    assert_int_equal(pt_corepol_retry_wait(&r, 4, F10), 6000);
}

static void test_exponential_documented_sequence(void **state)
{
    (void)state;
    /* the comment's example: interval 10, delta 10, max-interval 100 -> 10, 20, 40, 80, 100 (seconds) */
    struct pt_retry r = R(10000, 100000, 10000, false);
    static const uint32_t want[] = {10000, 20000, 40000, 80000, 100000, 100000};
    for (int n = 1; n <= 6; n++)
        assert_int_equal(pt_corepol_retry_wait(&r, n, F10), want[n - 1]);
    /* only rnd % 10001 counts */
    assert_int_equal(pt_corepol_retry_wait(&r, 4, F10 + 10001), 80000);
    assert_int_equal(pt_corepol_retry_wait(&r, 4, F10 + 10001ull * 123456789), 80000);
    /* interval + (2^(n-1) - 1) * delta */
    r = R(1000, HOUR, 100, false);
    for (int n = 1; n <= 12; n++)
        assert_int_equal(pt_corepol_retry_wait(&r, n, F10), 1000 + ((1u << (n - 1)) - 1) * 100);
}

static void test_exponential_random_bounds(void **state)
{
    (void)state;
    struct pt_retry r = R(10000, HOUR, 10000, false);
    /* the first retry waits the interval whatever the factor */
    assert_int_equal(pt_corepol_retry_wait(&r, 1, F08), 10000);
    assert_int_equal(pt_corepol_retry_wait(&r, 1, F12), 10000);
    /* the extremes: 0.8 and 1.2 of each delta */
    assert_int_equal(pt_corepol_retry_wait(&r, 2, F08), 18000);
    assert_int_equal(pt_corepol_retry_wait(&r, 2, F12), 22000);
    assert_int_equal(pt_corepol_retry_wait(&r, 3, F08), 34000);
    assert_int_equal(pt_corepol_retry_wait(&r, 3, F12), 46000);
    assert_int_equal(pt_corepol_retry_wait(&r, 4, F08), 66000);
    assert_int_equal(pt_corepol_retry_wait(&r, 4, F12), 94000);
    /* every rnd stays within [0.8, 1.2] and the wait grows with it */
    uint32_t prev = 0;
    for (uint64_t rnd = 0; rnd <= 10000; rnd++) {
        uint32_t w = pt_corepol_retry_wait(&r, 3, rnd);
        assert_in_range(w, 34000, 46000);
        assert_true(w >= prev);
        prev = w;
    }
    assert_in_range(pt_corepol_retry_wait(&r, 3, UINT64_MAX), 34000, 46000);
}

static void test_exponential_cap(void **state)
{
    (void)state;
    struct pt_retry r = R(1000, 5000, 1000, false);
    assert_int_equal(pt_corepol_retry_wait(&r, 1, F12), 1000);
    assert_int_equal(pt_corepol_retry_wait(&r, 2, F12), 2200);
    assert_int_equal(pt_corepol_retry_wait(&r, 3, F12), 4600);
    assert_int_equal(pt_corepol_retry_wait(&r, 4, F08), 5000); /* 1000 + 7 * 800 = 6600, capped */
    assert_int_equal(pt_corepol_retry_wait(&r, 4, F12), 5000);
    /* the cap is the exact bound */
    r = R(1000, 1999, 1000, false);
    assert_int_equal(pt_corepol_retry_wait(&r, 2, F10), 1999);
    r = R(1000, 2000, 1000, false);
    assert_int_equal(pt_corepol_retry_wait(&r, 2, F10), 2000);
    /* max-interval caps even the first retry when it is below the interval */
    r = R(30000, 10000, 1000, false);
    assert_int_equal(pt_corepol_retry_wait(&r, 1, F10), 10000);
}

static void test_first_fast_retry(void **state)
{
    (void)state;
    /* the first retry at once; the later ones shifted by one */
    struct pt_retry r = R(1000, 0, 0, true);
    assert_int_equal(pt_corepol_retry_wait(&r, 1, F10), 0);
    assert_int_equal(pt_corepol_retry_wait(&r, 2, F10), 1000);
    assert_int_equal(pt_corepol_retry_wait(&r, 3, F10), 1000);
    r = R(1000, 0, 500, true);
    assert_int_equal(pt_corepol_retry_wait(&r, 1, F10), 0);
    assert_int_equal(pt_corepol_retry_wait(&r, 2, F10), 1000);
    assert_int_equal(pt_corepol_retry_wait(&r, 3, F10), 1500);
    assert_int_equal(pt_corepol_retry_wait(&r, 4, F10), 2000);
    r = R(10000, 100000, 10000, true);
    static const uint32_t want[] = {0, 10000, 20000, 40000, 80000, 100000};
    for (int n = 1; n <= 6; n++)
        assert_int_equal(pt_corepol_retry_wait(&r, n, F10), want[n - 1]);
}

static void test_one_hour_cap(void **state)
{
    (void)state;
    /* a fixed interval is returned as it is, uncapped (the schema already
       stops `interval` at 3600 s: only a hand-built one goes past the hour) */
    struct pt_retry r = R(4000000, 0, 0, false);
    assert_int_equal(pt_corepol_retry_wait(&r, 1, F10), 4000000);
    /* computed waits are capped at one hour */
    r = R(HOUR, 0, 1000, false);
    assert_int_equal(pt_corepol_retry_wait(&r, 1, F10), HOUR);
    assert_int_equal(pt_corepol_retry_wait(&r, 2, F10), HOUR);
    r = R(HOUR - 500, 0, 1000, false);
    assert_int_equal(pt_corepol_retry_wait(&r, 1, F10), HOUR - 500);
    assert_int_equal(pt_corepol_retry_wait(&r, 2, F10), HOUR);
    r = R(1000, 2 * HOUR, 1000, false);
    assert_int_equal(pt_corepol_retry_wait(&r, 10, F10), 1000 + 511 * 1000);
    assert_int_equal(pt_corepol_retry_wait(&r, 20, F10), HOUR);
}

static void test_large_attempt_numbers(void **state)
{
    (void)state;
    /* the largest values the schema allows: no overflow, the waits never shrink */
    struct pt_retry r = R(HOUR, HOUR, HOUR, false);
    static const int ns[] = {30, 31, 32, 33, 40, 63, 64, 65, 1000, INT_MAX};
    for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
        assert_int_equal(pt_corepol_retry_wait(&r, ns[i], F08), HOUR);
        assert_int_equal(pt_corepol_retry_wait(&r, ns[i], F12), HOUR);
    }
    r = R(0, HOUR, 1, false);
    uint32_t prev = 0;
    for (int n = 1; n <= 100; n++) {
        uint32_t w = pt_corepol_retry_wait(&r, n, F12);
        assert_true(w >= prev);
        prev = w;
    }
    assert_int_equal(prev, HOUR);
    assert_int_equal(pt_corepol_retry_wait(&r, 22, F10), (1u << 21) - 1); /* 2097151 ms, below the cap */
    assert_int_equal(pt_corepol_retry_wait(&r, 23, F10), HOUR);
    /* linear with huge n */
    r = R(1000, 0, HOUR, false);
    assert_int_equal(pt_corepol_retry_wait(&r, INT_MAX, F10), HOUR);
    /* (n-1) * delta past 2^32: 4294968 * 1000 would wrap to 704 in 32 bits */
    r = R(0, 0, 1000, false);
    assert_int_equal(pt_corepol_retry_wait(&r, 4294968 + 1, F10), HOUR);
    r = R(0, 0, 1, false);
    assert_int_equal(pt_corepol_retry_wait(&r, 1000000, F10), 999999);
    assert_int_equal(pt_corepol_retry_wait(&r, INT_MAX, F10), HOUR);
    /* first-fast with the largest n */
    r = R(HOUR, HOUR, HOUR, true);
    assert_int_equal(pt_corepol_retry_wait(&r, INT_MAX, F10), HOUR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_exponential_documented_sequence),
        cmocka_unit_test(test_exponential_random_bounds),
        cmocka_unit_test(test_exponential_cap),
        cmocka_unit_test(test_first_fast_retry),
        cmocka_unit_test(test_one_hour_cap),
        cmocka_unit_test(test_large_attempt_numbers),
    };
    return cmocka_run_group_tests_name("retry", tests, NULL, NULL);
}
