/*
 * test_counters_redis -- the lease arithmetic of counters across nodes
 * (event/pt_counters.c, event/pt_counters_redis.c), without Redis: the pure
 * rules (tokens wanted, tokens granted, the overshoot bound, the script's
 * answer, the Redis key), and the table driven through pt_counters_take and
 * pt_counters_done by a Redis of the test's own (the script's rule in C,
 * pt_counters_grant): admissions are tokens, at most the grace before the
 * first lease, refusals past the window counted (not a quota's), unused tokens
 * given back and then used elsewhere,
 * increments pushed, and per-node counting while Redis is down, merged after.
 */
#include "event/pt_counters.h"
#include "event/pt_counters_redis.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

static void test_want(void **state)
{
    (void)state;
    assert_int_equal(pt_counters_want(0, 0, 100), 1);      /* no demand seen yet: one token */
    assert_int_equal(pt_counters_want(10, 0, 100), 21);    /* two intervals' worth and one */
    assert_int_equal(pt_counters_want(10, 15, 100), 6);    /* less what is held */
    assert_int_equal(pt_counters_want(10, 50, 100), 1);    /* never less than one */
    assert_int_equal(pt_counters_want(1000, 0, 100), 100); /* never more than the limit */
    assert_int_equal(pt_counters_want(5, 0, 0), 0);        /* no limit: no tokens */
    assert_int_equal(pt_counters_want(-3, 0, 10), 1);
    assert_int_equal(pt_counters_want(INT64_MAX / 2, 0, 1000000000), 1000000000); /* no overflow */
}

static void test_grant(void **state)
{
    (void)state;
    assert_int_equal(pt_counters_grant(50, 0, 100), 25); /* a quarter of the room at most */
    assert_int_equal(pt_counters_grant(10, 0, 100), 10);
    assert_int_equal(pt_counters_grant(50, 96, 100), 1); /* room 4: one at a time */
    assert_int_equal(pt_counters_grant(50, 95, 100), 2); /* room 5: rounded up */
    assert_int_equal(pt_counters_grant(50, 99, 100), 1);
    assert_int_equal(pt_counters_grant(50, 100, 100), 0); /* full */
    assert_int_equal(pt_counters_grant(50, 130, 100), 0); /* refused calls pushed past it */
    assert_int_equal(pt_counters_grant(0, 0, 100), 0);
    assert_int_equal(pt_counters_grant(5, 0, 0), 0);
    /* the grants of one window never pass the limit, whatever is asked in whatever order */
    int64_t total = 0, rounds = 0;
    for (int64_t want = 1; rounds < 1000; rounds++, want = want * 7 % 97 + 1) {
        int64_t g = pt_counters_grant(want, total, 100);
        assert_true(g >= 0 && g <= want);
        total += g;
        assert_true(total <= 100);
    }
    assert_int_equal(total, 100); /* and they do give all of it out */
}

static void test_overshoot(void **state)
{
    (void)state;
    assert_int_equal(PT_COUNTERS_GRACE, 1);
    assert_int_equal(pt_counters_overshoot(3, 100), 3); /* the 3 nodes at calls 100: at most 103 */
    assert_true(pt_counters_overshoot(5, 100) <= 5);
    assert_int_equal(pt_counters_overshoot(0, 100), 0);
    assert_int_equal(pt_counters_credit(1), 1);
    assert_int_equal(pt_counters_credit(127), 1);
    assert_int_equal(pt_counters_credit(128), 2);
    assert_int_equal(pt_counters_credit(6400), 100);                  /* 1/64 of large limits */
    assert_int_equal(pt_counters_overshoot(3, 1000000000), 46875000); /* 4.7 %, only in a burst (docs) */
}

static void test_answer(void **state)
{
    (void)state;
    struct pt_counters_answer a;
    const char *ok = "25 75 86644983333 1234 0";
    assert_true(pt_counters_redis_answer(ok, strlen(ok), &a));
    assert_int_equal(a.granted, 25);
    assert_int_equal(a.total, 75);
    assert_int_equal(a.slot, 86644983333LL);
    assert_int_equal(a.left_ms, 1234);
    assert_int_equal(a.retry_ms, 0);
    const char *never = "1 1 0 -1 0"; /* renewal-period 0: left -1 */
    assert_true(pt_counters_redis_answer(never, strlen(never), &a));
    assert_int_equal(a.left_ms, -1);
    const char *bad[] = {"",
                         "1 2 3 4",
                         "1 2 3 4 5 6",
                         "1 2 3 4 x",
                         "1  2 3 4 5",
                         "1 2 3 4 5 ",
                         "-1 2 3 4 5",
                         "1 -2 3 4 5",
                         "1 2 3 4 -5",
                         "1 2 3 4 1234567890123456789",
                         "1.5 2 3 4 5",
                         "- 2 3 4 5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(pt_counters_redis_answer(bad[i], strlen(bad[i]), &a));
    /* a length that stops early is honoured (no NUL needed) */
    assert_true(pt_counters_redis_answer("1 2 3 4 5garbage", 9, &a));
    assert_int_equal(a.retry_ms, 5);
}

static void test_key(void **state)
{
    (void)state;
    char k[PT_COUNTERS_REDIS_KEY_LEN + 1];
    pt_counters_redis_key("abc", 3, k);
    /* SHA-256("abc") starts ba7816bf8f01cfea414140de5dae2223 */
    assert_string_equal(k, "portico:ctr:ba7816bf8f01cfea414140de5dae2223");
    assert_int_equal(strlen(k), PT_COUNTERS_REDIS_KEY_LEN);
}

/* ---- the table against a Redis of the test's own ---- */

static int wakes;
static void on_wake(void)
{
    wakes++;
}

/* One window of a fake Redis: the script's rule for one key. */
static int64_t fake_total, fake_tokens;

static void serve(struct pt_counters_job *jobs, size_t n, uint64_t now, bool answer)
{
    for (size_t i = 0; i < n; i++) {
        struct pt_counters_job *j = &jobs[i];
        if (!answer) {
            pt_counters_done(j, NULL, now);
            pt_counters_job_free(j);
            continue;
        }
        if (j->ret > 0)
            fake_total -= j->ret;
        fake_total += j->push;
        int64_t g = pt_counters_grant(j->want, fake_total, j->limit);
        fake_total += g;
        fake_tokens += g;
        struct pt_counters_answer a = {.granted = g, .total = fake_total, .slot = 7, .left_ms = 60000};
        pt_counters_done(j, &a, now);
        pt_counters_job_free(j);
    }
}

/* A new table shared with the fake Redis, which starts empty. */
static void fresh_table(void)
{
    pt_counters_free();
    pt_counters_init(100000);
    pt_counters_share(true, on_wake);
    pt_counters_set_up(true);
    fake_total = fake_tokens = 0;
}

static int decide(const char *key, int64_t limit)
{
    struct pt_counter_op op = {0};
    op.key = (pt_bytes){key, strlen(key)};
    op.kind = PT_COUNTER_SLIDING | PT_COUNTER_COUNT_REFUSED;
    op.window_ms = 60000;
    op.limit = limit;
    op.add = 1;
    int ok = pt_counters_apply(&op);
    if (ok)
        assert_true(op.count <= limit);
    else
        assert_true(op.count > limit && op.retry_ms > 0);
    return ok;
}

static void test_leases(void **state)
{
    (void)state;
    static struct pt_counters_job jobs[64];
    fresh_table();
    wakes = 0;
    uint64_t now = pt_clock_now_ms();
    /* first sight: the grace, then refusals (not counted: the window has room) until the lease */
    assert_int_equal(decide("k", 100), 1);
    assert_int_equal(wakes, 1); /* the sync thread is woken at once */
    assert_int_equal(decide("k", 100), 0);
    size_t n = pt_counters_take(jobs, 64, now, 50);
    assert_int_equal(n, 1);
    assert_int_equal(jobs[0].push, 1); /* the grace call */
    assert_true(jobs[0].want >= 1);
    assert_int_equal(jobs[0].limit, 100);
    serve(jobs, n, now, true);
    /* from now on every admission is a token; the loop runs until the window is spent */
    int admitted = 1, guard = 0;
    for (; guard < 10000 && fake_total < 100; guard++) {
        admitted += decide("k", 100);
        if (guard % 5 == 0) {
            now += 10;
            serve(jobs, pt_counters_take(jobs, 64, now, 50), now, true);
        }
    }
    for (int i = 0; i < 50; i++)
        admitted += decide("k", 100); /* the last tokens held */
    assert_int_equal(admitted, 100);  /* exact: one grace call and 99 tokens */
    assert_int_equal(fake_tokens, 99);
    /* refused past the full window: they count (pushed), as in APIM */
    for (int i = 0; i < 5; i++)
        assert_int_equal(decide("k", 100), 0);
    now += 10;
    serve(jobs, pt_counters_take(jobs, 64, now, 50), now, true);
    assert_true(fake_total >= 105);
    pt_counters_share(false, NULL);
    pt_counters_free();
}

/* A call on credit made while a sync is out is paid by the tokens that sync brings: they are not
   handed out a second time (limit 3: three admitted, not four). */
static void test_tokens_pay_for_credit_calls(void **state)
{
    (void)state;
    static struct pt_counters_job jobs[64];
    fresh_table();
    uint64_t now = pt_clock_now_ms();
    int admitted = decide("p", 3); /* the grace call */
    serve(jobs, pt_counters_take(jobs, 64, now, 50), now, true);
    admitted += decide("p", 3); /* a token */
    now += 10;
    size_t n = pt_counters_take(jobs, 64, now, 50); /* a refill on its way ... */
    assert_int_equal(n, 1);
    admitted += decide("p", 3); /* ... meanwhile a call on credit */
    assert_int_equal(admitted, 3);
    serve(jobs, n, now, true); /* the refill's token pays for it */
    assert_int_equal(fake_total, 3);
    assert_int_equal(decide("p", 3), 0);
    assert_int_equal(decide("p", 3), 0);
    now += 10;
    serve(jobs, pt_counters_take(jobs, 64, now, 50), now, true);
    assert_int_equal(fake_total, 5); /* the refused calls count once the window is full, as in APIM */
    pt_counters_share(false, NULL);
    pt_counters_free();
}

static void test_unused_tokens_go_back(void **state)
{
    (void)state;
    static struct pt_counters_job jobs[64];
    fresh_table();
    uint64_t now = pt_clock_now_ms();
    int admitted = decide("idle", 1000);
    serve(jobs, pt_counters_take(jobs, 64, now, 50), now, true);
    for (int i = 0; i < 200; i++) {
        admitted += decide("idle", 1000);
        if (i % 10 == 9) {
            now += 5;
            serve(jobs, pt_counters_take(jobs, 64, now, 50), now, true);
        }
    }
    assert_true(admitted > 150);
    assert_true(fake_tokens + 1 > admitted); /* tokens are held ahead of use */
    /* no more calls: the demand decays, then the tokens held go back */
    for (int i = 0; i < 40; i++) {
        now += 50;
        serve(jobs, pt_counters_take(jobs, 64, now, 50), now, true);
    }
    assert_int_equal(fake_total, admitted);                        /* what was used, no more */
    assert_int_equal(pt_counters_take(jobs, 64, now + 50, 50), 0); /* off the queue */
    pt_counters_share(false, NULL);
    pt_counters_free();
}

/* decide() for a quota: a fixed period of an hour from the epoch. */
static int decide_quota(const char *key, int64_t limit)
{
    struct pt_counter_op op = {0};
    op.key = (pt_bytes){key, strlen(key)};
    op.kind = PT_COUNTER_FIXED | PT_COUNTER_COUNT_REFUSED;
    op.window_ms = 3600000;
    op.origin_ms = 0;
    op.limit = limit;
    op.add = 1;
    return pt_counters_apply(&op);
}

/* Another node holds a quota's last tokens when this one is refused; it gives them back unused,
   and this node then gets them: the quota is not cut short by the refusals in between (a rate
   limit's refusals count, a quota's past its limit would only cancel the tokens given back). */
static void test_quota_tokens_given_back_are_used(void **state)
{
    (void)state;
    static struct pt_counters_job jobs[64];
    fresh_table();
    uint64_t now = pt_clock_now_ms();
    int admitted = decide_quota("q", 30);
    serve(jobs, pt_counters_take(jobs, 64, now, 50), now, true);
    fake_total += 10; /* the other node reserves a third of the quota */
    for (int i = 0; i < 400 && fake_total < 30; i++) {
        admitted += decide_quota("q", 30);
        if (i % 5 == 4) {
            now += 10;
            serve(jobs, pt_counters_take(jobs, 64, now, 50), now, true);
        }
    }
    for (int i = 0; i < 40; i++)
        admitted += decide_quota("q", 30); /* the tokens still held */
    assert_int_equal(admitted, 20);
    /* the count across nodes is full: refused, whatever the demand */
    int refused = 0;
    for (int r = 0; r < 5; r++) {
        for (int i = 0; i < 10; i++)
            refused += !decide_quota("q", 30);
        now += 10;
        serve(jobs, pt_counters_take(jobs, 64, now, 50), now, true);
    }
    assert_int_equal(refused, 50);
    assert_int_equal(fake_total, 30); /* a quota's refusals past its limit are not pushed */
    fake_total -= 4;                  /* the other node used 6 of its 10 and gives 4 back */
    int later = 0;
    for (int i = 0; i < 200 && later < 4; i++) {
        later += decide_quota("q", 30);
        if (i % 5 == 4) {
            now += 10;
            serve(jobs, pt_counters_take(jobs, 64, now, 50), now, true);
        }
    }
    assert_int_equal(later, 4); /* used here: 30 admitted across the two nodes */
    for (int i = 0; i < 20; i++)
        assert_int_equal(decide_quota("q", 30), 0);
    now += 10;
    serve(jobs, pt_counters_take(jobs, 64, now, 50), now, true);
    assert_int_equal(fake_total, 30);
    pt_counters_share(false, NULL);
    pt_counters_free();
}

static void test_down_counts_per_node_and_merges(void **state)
{
    (void)state;
    static struct pt_counters_job jobs[64];
    fresh_table();
    uint64_t now = pt_clock_now_ms();
    decide("d", 10);
    size_t n = pt_counters_take(jobs, 64, now, 50);
    serve(jobs, n, now, false); /* the job failed: its push is pushed again later */
    pt_counters_set_up(false);
    uint64_t before = pt_counters_fallbacks();
    int ok = 0;
    for (int i = 0; i < 12; i++)
        ok += decide("d", 10);
    assert_int_equal(ok, 9); /* per node: the local count (with the grace call) holds the limit */
    assert_int_equal(pt_counters_fallbacks() - before, 12);
    pt_counters_set_up(true);
    now += 50;
    serve(jobs, pt_counters_take(jobs, 64, now, 50), now, true);
    assert_int_equal(fake_total, 13); /* every call counted while down, and the failed push */
    pt_counters_share(false, NULL);
    pt_counters_free();
}

/* Workers admitting while a sync thread serves: never more admissions than tokens and grace. */
static atomic_int admitted_mt;
static atomic_bool stop_mt;

static void *worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 50000000 && !atomic_load(&stop_mt); i++)
        admitted_mt += decide("mt", 500);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    static struct pt_counters_job jobs[64];
    fresh_table();
    admitted_mt = 0;
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, worker, NULL);
    uint64_t now = pt_clock_now_ms();
    for (int i = 0, after = 0; i < 4000 && after < 50; i++) {
        after += fake_total >= 500; /* a few turns more: the tokens held are used */
        now += 1;
        serve(jobs, pt_counters_take(jobs, 64, now, 50), now, true);
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&stop_mt, true);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    now += 1;
    serve(jobs, pt_counters_take(jobs, 64, now, 50), now, true); /* the last calls on credit pushed */
    assert_true(admitted_mt <= 500 + pt_counters_overshoot(1, 500));
    assert_true(admitted_mt <= fake_total); /* every admission is a token or a push */
    assert_true(admitted_mt >= 450);        /* and the window was used */
    pt_counters_share(false, NULL);
    pt_counters_free();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_want),
        cmocka_unit_test(test_grant),
        cmocka_unit_test(test_overshoot),
        cmocka_unit_test(test_answer),
        cmocka_unit_test(test_key),
        cmocka_unit_test(test_leases),
        cmocka_unit_test(test_tokens_pay_for_credit_calls),
        cmocka_unit_test(test_unused_tokens_go_back),
        cmocka_unit_test(test_quota_tokens_given_back_are_used),
        cmocka_unit_test(test_down_counts_per_node_and_merges),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
