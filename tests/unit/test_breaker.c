/*
 * test_breaker -- backends' node-wide state: failure matching, count and
 * percentage trips over a sliding interval, trip length and Retry-After,
 * recovery, the registry across "reloads", pool choice by priority and
 * weight, health thresholds, and counting from several threads.
 */
#include "event/pt_breaker.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

static const struct pt_cbrange r5xx[] = {{500, 599}};
static const char *const conn_reasons[] = {"BackendConnectionFailure", "Timeout"};

static struct pt_cbrule count_rule(int64_t n, uint32_t interval, uint32_t trip)
{
    struct pt_cbrule r = {.name = "r", .count = n, .interval_ms = interval, .trip_ms = trip};
    r.ranges = r5xx;
    r.nranges = 1;
    r.reasons = conn_reasons;
    r.nreasons = 2;
    return r;
}

static void test_failure_matching(void **state)
{
    (void)state;
    struct pt_cbrule r = count_rule(1, 1000, 1000);
    assert_true(pt_breaker_is_failure(&r, 500, NULL));
    assert_true(pt_breaker_is_failure(&r, 599, NULL));
    assert_false(pt_breaker_is_failure(&r, 499, NULL));
    assert_false(pt_breaker_is_failure(&r, 200, NULL));
    assert_true(pt_breaker_is_failure(&r, 0, "Timeout"));
    assert_true(pt_breaker_is_failure(&r, 0, "backendconnectionfailure"));
    assert_false(pt_breaker_is_failure(&r, 0, "ClientConnectionFailure"));
    /* status ranges only: an error reason is not a failure */
    r.nreasons = 0;
    assert_false(pt_breaker_is_failure(&r, 0, "Timeout"));
    /* neither: server errors and every failed call */
    r.nranges = 0;
    assert_true(pt_breaker_is_failure(&r, 503, NULL));
    assert_false(pt_breaker_is_failure(&r, 429, NULL));
    assert_true(pt_breaker_is_failure(&r, 0, "Timeout"));
}

static void test_count_trip_and_recovery(void **state)
{
    (void)state;
    struct pt_bestate *s = pt_breaker_state("count", "http://a", 1, 0);
    assert_non_null(s);
    struct pt_cbrule r = count_rule(3, 10000, 5000);
    int64_t t = 1000000;
    assert_false(pt_breaker_record(s, &r, 1, 500, NULL, 0, t));
    assert_false(pt_breaker_record(s, &r, 1, 200, NULL, 0, t + 1)); /* success: not a failure */
    assert_false(pt_breaker_record(s, &r, 1, 0, "Timeout", 0, t + 2));
    assert_true(pt_breaker_available(s, t + 2));
    assert_true(pt_breaker_record(s, &r, 1, 502, NULL, 0, t + 3)); /* the third failure */
    assert_false(pt_breaker_available(s, t + 3));
    assert_int_equal(pt_breaker_open_ms(s, t + 3), 5000);
    assert_int_equal(pt_breaker_open_ms(s, t + 1003), 4000);
    assert_int_equal(atomic_load(&s->trips), 1);
    /* calls ending while open are not counted */
    assert_false(pt_breaker_record(s, &r, 1, 500, NULL, 0, t + 10));
    /* recovery after tripDuration, with fresh counts */
    assert_true(pt_breaker_available(s, t + 5003));
    assert_false(pt_breaker_record(s, &r, 1, 500, NULL, 0, t + 5004));
    assert_false(pt_breaker_record(s, &r, 1, 500, NULL, 0, t + 5005));
    assert_true(pt_breaker_available(s, t + 5005));
    pt_breaker_state_put(s);
}

static void test_interval_slides(void **state)
{
    (void)state;
    struct pt_bestate *s = pt_breaker_state("slide", "http://a", 1, 0);
    struct pt_cbrule r = count_rule(3, 1000, 1000);
    int64_t t = 5000000;
    assert_false(pt_breaker_record(s, &r, 1, 500, NULL, 0, t));
    assert_false(pt_breaker_record(s, &r, 1, 500, NULL, 0, t + 100));
    /* the first two fell out of the interval */
    assert_false(pt_breaker_record(s, &r, 1, 500, NULL, 0, t + 1300));
    assert_false(pt_breaker_record(s, &r, 1, 500, NULL, 0, t + 1400));
    assert_true(pt_breaker_available(s, t + 1400));
    assert_true(pt_breaker_record(s, &r, 1, 500, NULL, 0, t + 1500));
    pt_breaker_state_put(s);
}

static void test_percentage(void **state)
{
    (void)state;
    struct pt_bestate *s = pt_breaker_state("pct", "http://a", 1, 0);
    struct pt_cbrule r = count_rule(0, 10000, 2000);
    r.percentage = 50;
    int64_t t = 9000000;
    for (int i = 0; i < 6; i++)
        assert_false(pt_breaker_record(s, &r, 1, 200, NULL, 0, t + i));
    /* 5 failures of 11 calls: 45 % */
    for (int i = 0; i < 5; i++)
        assert_false(pt_breaker_record(s, &r, 1, 500, NULL, 0, t + 10 + i));
    /* 6 of 12: 50 % */
    assert_true(pt_breaker_record(s, &r, 1, 500, NULL, 0, t + 20));
    assert_int_equal(pt_breaker_open_ms(s, t + 20), 2000);
    pt_breaker_state_put(s);
}

static void test_retry_after(void **state)
{
    (void)state;
    struct pt_bestate *s = pt_breaker_state("ra", "http://a", 1, 0);
    struct pt_cbrule r = count_rule(1, 10000, 2000);
    int64_t t = 100000;
    /* not accepted: tripDuration */
    assert_true(pt_breaker_record(s, &r, 1, 503, NULL, 7000, t));
    assert_int_equal(pt_breaker_open_ms(s, t), 2000);
    r.accept_retry_after = true;
    t += 3000;
    assert_true(pt_breaker_record(s, &r, 1, 503, NULL, 7000, t));
    assert_int_equal(pt_breaker_open_ms(s, t), 7000);
    /* without a Retry-After: tripDuration */
    t += 8000;
    assert_true(pt_breaker_record(s, &r, 1, 503, NULL, 0, t));
    assert_int_equal(pt_breaker_open_ms(s, t), 2000);
    pt_breaker_state_put(s);

    time_t wall = 1700000000; /* 2023-11-14T22:13:20Z */
    assert_int_equal(pt_breaker_retry_after(PT_STR("7"), wall), 7000);
    assert_int_equal(pt_breaker_retry_after(PT_STR(" 120 "), wall), 120000);
    assert_int_equal(pt_breaker_retry_after(PT_STR("0"), wall), 0);
    assert_int_equal(pt_breaker_retry_after(PT_STR("-5"), wall), 0);
    assert_int_equal(pt_breaker_retry_after(PT_STR("5s"), wall), 0);
    assert_int_equal(pt_breaker_retry_after(PT_STR(""), wall), 0);
    assert_int_equal(pt_breaker_retry_after(PT_STR("99999999999999999999999"), wall), PT_BREAKER_MAX_TRIP_MS);
    assert_int_equal(pt_breaker_retry_after(PT_STR("Tue, 14 Nov 2023 22:13:50 GMT"), wall), 30000);
    assert_int_equal(pt_breaker_retry_after(PT_STR("Tue, 14 Nov 2023 22:13:10 GMT"), wall), 0); /* past */
    assert_int_equal(pt_breaker_retry_after(PT_STR("Tue, 14 Foo 2023 22:13:50 GMT"), wall), 0);
    assert_int_equal(pt_breaker_retry_after(PT_STR("Tue, 14 Nov 2023 22:13:50 UTC"), wall), 0);
    assert_int_equal(pt_breaker_retry_after(PT_STR("Tue, 14 Nov 2033 22:13:50 GMT"), wall),
                     PT_BREAKER_MAX_TRIP_MS);
}

static void test_registry_keeps_state(void **state)
{
    (void)state;
    struct pt_cbrule r = count_rule(1, 1000, 60000);
    uint64_t sig = pt_breaker_rules_sig(&r, 1);
    struct pt_bestate *a = pt_breaker_state("keep", "http://x", sig, 0);
    assert_true(pt_breaker_record(a, &r, 1, 500, NULL, 0, 1000));
    /* a "reload": the same id and url get the same, still open, state */
    struct pt_bestate *b = pt_breaker_state("keep", "http://x", sig, 0);
    assert_ptr_equal(a, b);
    assert_false(pt_breaker_available(b, 2000));
    pt_breaker_state_put(a);
    /* another url: a state of its own */
    struct pt_bestate *c = pt_breaker_state("keep", "http://y", sig, 0);
    assert_ptr_not_equal(b, c);
    assert_true(pt_breaker_available(c, 2000));
    /* changed rules: the counts and the trip start over */
    r.count = 2;
    struct pt_bestate *d = pt_breaker_state("keep", "http://x", pt_breaker_rules_sig(&r, 1), 0);
    assert_ptr_equal(b, d);
    assert_true(pt_breaker_available(d, 2000));
    pt_breaker_state_put(b);
    pt_breaker_state_put(c);
    pt_breaker_state_put(d);
    /* all let go: a fresh one */
    struct pt_bestate *e = pt_breaker_state("keep", "http://x", sig, 0);
    assert_int_equal(atomic_load(&e->trips), 0);
    pt_breaker_state_put(e);
}

static void test_pool_weights(void **state)
{
    (void)state;
    struct pt_bestate *a = pt_breaker_state("wa", "u", 0, 0), *b = pt_breaker_state("wb", "u", 0, 0),
                      *c = pt_breaker_state("wc", "u", 0, 0);
    struct pt_bestate *pool = pt_breaker_state("wpool", "wa,wb,wc", 0, 3);
    struct pt_backdef d[3] = {{.id = "wa", .state = a}, {.id = "wb", .state = b}, {.id = "wc", .state = c}};
    struct pt_bemember m[3] = {{&d[0], 3, 0}, {&d[1], 1, 0}, {&d[2], 1, 1}};
    int n[3] = {0};
    int64_t wait;
    for (int i = 0; i < 400; i++) {
        int k = pt_breaker_pick(pool, m, 3, 10, &wait);
        assert_true(k >= 0 && k < 3);
        n[k]++;
    }
    assert_int_equal(n[0], 300); /* exact: 3 of every 4 */
    assert_int_equal(n[1], 100);
    assert_int_equal(n[2], 0); /* a worse priority group while the best has members */
    /* smooth: never more than 3 in a row for weight 3 of 4 */
    int run = 0, maxrun = 0;
    for (int i = 0; i < 40; i++) {
        int k = pt_breaker_pick(pool, m, 3, 10, &wait);
        run = k == 0 ? run + 1 : 0;
        if (run > maxrun)
            maxrun = run;
    }
    assert_true(maxrun <= 3);

    /* a trips: b takes everything in the best group */
    struct pt_cbrule r = count_rule(1, 1000, 1000);
    assert_true(pt_breaker_record(a, &r, 1, 500, NULL, 0, 100));
    for (int i = 0; i < 10; i++)
        assert_int_equal(pt_breaker_pick(pool, m, 3, 200, &wait), 1);
    /* b marked down by health checks: the next group */
    assert_int_equal(pt_breaker_health(b, false, 2, 1), -1);
    for (int i = 0; i < 10; i++)
        assert_int_equal(pt_breaker_pick(pool, m, 3, 200, &wait), 2);
    /* c trips too: none, and the wait is the first trip's end */
    assert_true(pt_breaker_record(c, &r, 1, 0, "Timeout", 0, 300));
    assert_int_equal(pt_breaker_pick(pool, m, 3, 400, &wait), -1);
    assert_int_equal(wait, 700); /* a opens until 1100 */
    /* a recovers */
    assert_int_equal(pt_breaker_pick(pool, m, 3, 1100, &wait), 0);
    pt_breaker_state_put(pool);
    pt_breaker_state_put(a);
    pt_breaker_state_put(b);
    pt_breaker_state_put(c);
}

static void test_health_thresholds(void **state)
{
    (void)state;
    struct pt_bestate *s = pt_breaker_state("hc", "http://h", 0, 0);
    assert_int_equal(pt_breaker_health(s, false, 2, 3), 0);
    assert_int_equal(pt_breaker_health(s, false, 2, 3), 0);
    assert_int_equal(pt_breaker_health(s, true, 2, 3), 0); /* the run is broken */
    assert_int_equal(pt_breaker_health(s, false, 2, 3), 0);
    assert_int_equal(pt_breaker_health(s, false, 2, 3), 0);
    assert_true(pt_breaker_available(s, 0));
    assert_int_equal(pt_breaker_health(s, false, 2, 3), -1);
    assert_false(pt_breaker_available(s, 0));
    assert_int_equal(pt_breaker_health(s, false, 2, 3), 0);
    assert_int_equal(pt_breaker_health(s, true, 2, 3), 0);
    assert_false(pt_breaker_available(s, 0));
    assert_int_equal(pt_breaker_health(s, true, 2, 3), 1);
    assert_true(pt_breaker_available(s, 0));
    assert_int_equal(atomic_load(&s->hc_failures), 6);
    pt_breaker_state_put(s);
}

struct thr {
    struct pt_bestate *s, *pool;
    const struct pt_bemember *m;
    int picks[2];
};

static void *worker(void *arg)
{
    struct thr *t = arg;
    struct pt_cbrule r = count_rule(1000000, 60000, 1000);
    int64_t wait;
    for (int i = 0; i < 20000; i++) {
        pt_breaker_record(t->s, &r, 1, i % 2 ? 500 : 200, NULL, 0, 1000);
        int k = pt_breaker_pick(t->pool, t->m, 2, 1000, &wait);
        if (k >= 0)
            t->picks[k]++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct pt_bestate *s = pt_breaker_state("thr", "http://t", 0, 0);
    struct pt_bestate *a = pt_breaker_state("ta", "u", 0, 0), *b = pt_breaker_state("tb", "u", 0, 0);
    struct pt_bestate *pool = pt_breaker_state("tpool", "ta,tb", 0, 2);
    struct pt_backdef d[2] = {{.id = "ta", .state = a}, {.id = "tb", .state = b}};
    struct pt_bemember m[2] = {{&d[0], 1, 0}, {&d[1], 1, 0}};
    struct thr t[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (struct thr){s, pool, m, {0, 0}};
        pthread_create(&th[i], NULL, worker, &t[i]);
    }
    int picks[2] = {0};
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        picks[0] += t[i].picks[0];
        picks[1] += t[i].picks[1];
    }
    uint64_t total = 0, fail = 0;
    for (int k = 0; k < PT_BREAKER_SLOTS; k++) {
        total += s->win[0].total[k];
        fail += s->win[0].fail[k];
    }
    assert_int_equal(total, 80000); /* nothing lost under the lock */
    assert_int_equal(fail, 40000);
    assert_int_equal(picks[0], 40000);
    assert_int_equal(picks[1], 40000);
    pt_breaker_state_put(s);
    pt_breaker_state_put(pool);
    pt_breaker_state_put(a);
    pt_breaker_state_put(b);
}

static void test_two_rules(void **state)
{
    (void)state;
    /* rule 0: five 5xx; rule 1: two 429s, a longer trip */
    static const struct pt_cbrange r429[] = {{429, 429}};
    struct pt_cbrule rules[2] = {count_rule(5, 10000, 1000), count_rule(2, 10000, 9000)};
    rules[1].ranges = r429;
    rules[1].nreasons = 0;
    struct pt_bestate *s = pt_breaker_state("two", "http://t", pt_breaker_rules_sig(rules, 2), 0);
    int64_t t = 50000;
    assert_false(pt_breaker_record(s, rules, 2, 500, NULL, 0, t));
    assert_false(pt_breaker_record(s, rules, 2, 429, NULL, 0, t + 1));
    assert_false(pt_breaker_record(s, rules, 2, 500, NULL, 0, t + 2));
    assert_true(pt_breaker_record(s, rules, 2, 429, NULL, 0, t + 3)); /* the second rule */
    assert_int_equal(pt_breaker_open_ms(s, t + 3), 9000);
    pt_breaker_state_put(s);
}

static void test_attach(void **state)
{
    (void)state;
    struct pt_backend_cf cfa = {.id = "x1", .url = "http://127.0.0.1:1"};
    struct pt_backdef d[3] = {
        {.id = "x1", .cf = &cfa}, {.id = "x2", .cf = &cfa}, {.id = "xp", .type = PT_BE_POOL}};
    struct pt_bemember m[2] = {{&d[0], 2, 0}, {&d[1], 1, 1}};
    d[2].members = m;
    d[2].nmembers = 2;
    pt_breaker_attach(d, 3);
    assert_non_null(d[0].state);
    assert_ptr_not_equal(d[0].state, d[1].state); /* same url, other id */
    assert_int_equal(d[2].state->nmembers, 2);
    /* a second generation with the same backends shares the states */
    struct pt_backdef e[3] = {
        {.id = "x1", .cf = &cfa}, {.id = "x2", .cf = &cfa}, {.id = "xp", .type = PT_BE_POOL}};
    struct pt_bemember n[2] = {{&e[0], 2, 0}, {&e[1], 1, 1}};
    e[2].members = n;
    e[2].nmembers = 2;
    pt_breaker_attach(e, 3);
    assert_ptr_equal(d[0].state, e[0].state);
    assert_ptr_equal(d[2].state, e[2].state);
    /* a changed weight: the pool is another */
    n[0].weight = 3;
    struct pt_backdef p2 = {.id = "xp", .type = PT_BE_POOL, .members = n, .nmembers = 2};
    pt_breaker_attach(&p2, 1);
    assert_ptr_not_equal(p2.state, d[2].state);
    pt_breaker_detach(&p2, 1);
    pt_breaker_detach(d, 3);
    assert_null(d[0].state);
    pt_breaker_detach(e, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failure_matching), cmocka_unit_test(test_count_trip_and_recovery),
        cmocka_unit_test(test_interval_slides),  cmocka_unit_test(test_percentage),
        cmocka_unit_test(test_retry_after),      cmocka_unit_test(test_registry_keeps_state),
        cmocka_unit_test(test_pool_weights),     cmocka_unit_test(test_health_thresholds),
        cmocka_unit_test(test_threads),          cmocka_unit_test(test_attach),
        cmocka_unit_test(test_two_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
