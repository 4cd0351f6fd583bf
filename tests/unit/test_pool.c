/*
 * Arenas: the soft cap and the failure mark that tell the owner to end its
 * work (the reserve for a refusing malloc is not reachable from a test).
 */
#include "base/pt_pool.h"
#include "http/pt_http.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static void test_allocations_within_the_cap_do_not_fail(void **state)
{
    (void)state;
    struct pt_pool *p = pt_pool_new(1024);
    pt_pool_set_limit(p, 64 * 1024);
    for (int i = 0; i < 60; i++)
        assert_non_null(pt_pool_alloc(p, 1000));
    assert_false(pt_pool_failed(p));
    assert_int_equal(pt_pool_used(p), 60 * 1008);
    pt_pool_free(p);
}

static void test_passing_the_cap_marks_the_pool_and_still_serves(void **state)
{
    (void)state;
    struct pt_pool *p = pt_pool_new(1024);
    pt_pool_set_limit(p, 4096);
    assert_non_null(pt_pool_alloc(p, 4000));
    assert_false(pt_pool_failed(p));
    /* over the cap: marked, and served all the same (small and large), so
       whatever was being built is finished before the owner gives up */
    char *r = pt_pool_alloc(p, 200);
    assert_non_null(r);
    memset(r, 'x', 200);
    assert_true(pt_pool_failed(p));
    char *big = pt_pool_alloc(p, 1 << 20);
    assert_non_null(big);
    memset(big, 'y', 1 << 20);
    assert_int_equal(pt_pool_used(p), 4000 + 208 + (1 << 20));
    /* a size that would wrap around: NULL, never a short block */
    assert_null(pt_pool_alloc(p, SIZE_MAX - 3));
    pt_pool_free(p);
}

static void test_reset_clears_the_mark_and_keeps_the_cap(void **state)
{
    (void)state;
    struct pt_pool *p = pt_pool_new(1024);
    pt_pool_set_limit(p, 2048);
    assert_non_null(pt_pool_alloc(p, 3000));
    assert_true(pt_pool_failed(p));
    pt_pool_reset(p);
    assert_false(pt_pool_failed(p));
    assert_non_null(pt_pool_alloc(p, 2000));
    assert_false(pt_pool_failed(p));
    pt_pool_alloc(p, 2000);
    assert_true(pt_pool_failed(p)); /* the cap survived the reset */
    pt_pool_free(p);
}

static void test_a_zero_sized_block_is_not_a_failure(void **state)
{
    (void)state;
    struct pt_pool *p = pt_pool_new(1024);
    assert_non_null(pt_pool_alloc(p, 0));
    assert_false(pt_pool_failed(p));
    pt_pool_free(p);
}

static void test_a_buffer_past_the_cap_keeps_everything(void **state)
{
    (void)state;
    struct pt_pool *p = pt_pool_new(1024);
    pt_pool_set_limit(p, 1024);
    struct pt_buf b;
    pt_buf_init(&b, p, 512);
    pt_buf_lit(&b, "abc");
    char chunk[1000];
    memset(chunk, 'y', sizeof(chunk));
    for (int i = 0; i < 64; i++)
        pt_buf_add(&b, chunk, sizeof(chunk));
    assert_true(pt_pool_failed(p));
    assert_int_equal(b.n, 64 * 1000 + 3); /* nothing dropped: the owner decides, at its next check */
    assert_memory_equal(b.p, "abc", 3);
    assert_int_equal(b.p[b.n - 1], 'y');
    pt_pool_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allocations_within_the_cap_do_not_fail),
        cmocka_unit_test(test_passing_the_cap_marks_the_pool_and_still_serves),
        cmocka_unit_test(test_reset_clears_the_mark_and_keeps_the_cap),
        cmocka_unit_test(test_a_zero_sized_block_is_not_a_failure),
        cmocka_unit_test(test_a_buffer_past_the_cap_keeps_everything),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
