/*
 * test_status -- which requests are the status paths of a gateway listener
 * (pt_access_status_path): the exact paths, GET and HEAD only; near misses,
 * other methods and lengths that only match by size go on to routing.
 */
#include "proxy/pt_proxy.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static enum pt_access_status sp(const char *method, const char *path)
{
    return pt_access_status_path(pt_str_c(method), pt_str_c(path));
}

static void test_exact_paths(void **state)
{
    (void)state;
    assert_int_equal(sp("GET", "/status-0123456789abcdef"), PT_ACCESS_STATUS_LIVE);
    assert_int_equal(sp("HEAD", "/status-0123456789abcdef"), PT_ACCESS_STATUS_LIVE);
    assert_int_equal(sp("GET", "/internal-status-0123456789abcdef"), PT_ACCESS_STATUS_READY);
    assert_int_equal(sp("HEAD", "/internal-status-0123456789abcdef"), PT_ACCESS_STATUS_READY);
}

static void test_other_methods_route(void **state)
{
    (void)state;
    static const char *const methods[] = {"POST", "PUT",  "DELETE", "OPTIONS", "PATCH", "get",
                                          "head", "GETX", "HEA",    "",        "TRACE"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        assert_int_equal(sp(methods[i], "/status-0123456789abcdef"), PT_ACCESS_STATUS_NONE);
        assert_int_equal(sp(methods[i], "/internal-status-0123456789abcdef"), PT_ACCESS_STATUS_NONE);
    }
}

static void test_near_misses(void **state)
{
    (void)state;
    static const char *const paths[] = {
        "/status-0123456789abcdeF",          /* same length, one letter off */
        "/status-0123456789abcde",           /* one short */
        "/status-0123456789abcdef/",         /* one long */
        "/Status-0123456789abcdef",          /* case */
        "/internal-status-0123456789abcdeX", /* same length as readiness */
        "/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", /* 33 bytes */
        "/xxxxxxxxxxxxxxxxxxxxxxx",          /* 24 bytes */
        "//status-0123456789abcde",          /* 24 bytes, shifted */
        "/status-0123456789abcde%66",        /* encoded: not decoded here */
        "",
        "/",
    };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        assert_int_equal(sp("GET", paths[i]), PT_ACCESS_STATUS_NONE);
        assert_int_equal(sp("HEAD", paths[i]), PT_ACCESS_STATUS_NONE);
    }
}

static void test_not_nul_terminated(void **state)
{
    (void)state;
    /* request data is a view into the head: no terminating NUL is relied on */
    char buf[64];
    memset(buf, 'z', sizeof(buf));
    memcpy(buf, "/status-0123456789abcdef", 24);
    assert_int_equal(pt_access_status_path(PT_STR("GET"), (pt_str){buf, 24}), PT_ACCESS_STATUS_LIVE);
    assert_int_equal(pt_access_status_path(PT_STR("GET"), (pt_str){buf, 25}), PT_ACCESS_STATUS_NONE);
    assert_int_equal(pt_access_status_path((pt_str){"GETX", 3}, (pt_str){buf, 24}), PT_ACCESS_STATUS_LIVE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_paths),
        cmocka_unit_test(test_other_methods_route),
        cmocka_unit_test(test_near_misses),
        cmocka_unit_test(test_not_nul_terminated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
