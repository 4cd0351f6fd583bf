/*
 * test_portal_console -- the console relay's path check
 * (pt_portal_subs_path_ok): only a path that stays on the gateway when it
 * is appended to portal.gatewayUrl passes.
 */
#include "portal/pt_portal_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_paths_that_stay_on_the_gateway(void **state)
{
    (void)state;
    const char *ok[] = {"/",
                        "/echo",
                        "/echo/items/1?x=1&y=%20",
                        "/@evil.example/x",
                        "/evil.example:80/x",
                        "/echo/../../x",
                        "/echo/%2F%2Fevil/x",
                        "/a:b@c",
                        "/echo/x?next=http://evil/"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        assert_true(pt_portal_subs_path_ok(ok[i]));
}

static void test_paths_that_could_leave_it(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "echo/x",
                         "//evil.example/x",
                         "///evil",
                         "/\\evil.example",
                         "\\\\evil",
                         "http://evil.example/",
                         "@evil.example/x",
                         "evil.example:80/x",
                         "/echo/x y",
                         "/echo/x\r\nHost: evil",
                         "/echo/x\nX: 1",
                         "/echo/\t",
                         "/echo/\x7f",
                         "/echo/x#fragment",
                         "/echo/\xc3\xa9",
                         "/echo\\..\\x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(pt_portal_subs_path_ok(bad[i]));
    /* at most 8 KiB */
    char *long_path = malloc(8194);
    memset(long_path, 'a', 8193);
    long_path[0] = '/';
    long_path[8193] = '\0';
    assert_false(pt_portal_subs_path_ok(long_path));
    long_path[8192] = '\0';
    assert_true(pt_portal_subs_path_ok(long_path));
    free(long_path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_that_stay_on_the_gateway),
        cmocka_unit_test(test_paths_that_could_leave_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
