/*
 * test_store_accounts -- the pieces of pt_store_accounts that the portal and
 * the management API share: a new mail token (what the link carries is
 * not what the store keeps; it opens once), and a password set through
 * pt_store_accounts_password_set (Argon2id, bound to the address, the stamp
 * moves on), on a real SQLite file.
 */
#include "conf/pt_store.h"
#include "conf/pt_store_accounts.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store_helpers.h"

static void test_token_new(void **state)
{
    (void)state;
    char dir[64], user[128], raw[PT_STORE_ACCOUNTS_SECRET_CHARS + 1],
        raw2[PT_STORE_ACCOUNTS_SECRET_CHARS + 1];
    char h[65];
    struct pt_store *st = open_store(dir, "staccounts");
    assert_true(pt_store_accounts_token_new(st, "invite", "admin", 5000, raw));
    assert_true(pt_store_accounts_token_new(st, "invite", "admin", 5000, raw2));
    assert_true(pt_store_accounts_well_formed(raw));
    assert_string_not_equal(raw, raw2);
    /* the raw token is not a key of the table: only its hash is */
    assert_false(pt_store_accounts_token_peek(st, raw, "invite", 1000, user));
    pt_store_accounts_secret_hash(raw, h);
    assert_int_equal(strlen(h), 64);
    assert_true(pt_store_accounts_token_peek(st, h, "invite", 1000, user));
    assert_string_equal(user, "admin");
    assert_false(pt_store_accounts_token_use(st, h, "reset", 1000, user)); /* another purpose */
    assert_true(pt_store_accounts_token_use(st, h, "invite", 1000, user));
    assert_false(pt_store_accounts_token_use(st, h, "invite", 1000, user)); /* once */
    /* a new invitation drops the earlier links */
    pt_store_accounts_secret_hash(raw2, h);
    assert_true(pt_store_accounts_token_drop_user(st, "admin", "invite"));
    assert_false(pt_store_accounts_token_use(st, h, "invite", 1000, user));
    close_store(st, dir);
}

static void test_password_set(void **state)
{
    (void)state;
    char dir[64], hash[PT_STORE_ACCOUNTS_HASH_MAX];
    int64_t s1 = 0, s2 = 0;
    const char *why = NULL;
    struct pt_store *st = open_store(dir, "staccounts");
    assert_false(pt_store_accounts_password_ok("123456789", &why));
    assert_non_null(strstr(why, "10 characters"));
    assert_true(pt_store_accounts_password_ok("0123456789", &why));
    assert_true(pt_store_accounts_password_set(st, "admin", "Admin@Example.com", "first password"));
    assert_true(pt_store_accounts_cred_get(st, "admin", "admin@example.com", hash, sizeof(hash), &s1));
    assert_memory_equal(hash, "$argon2id$", 10);
    assert_null(strstr(hash, "first password"));
    assert_true(pt_store_accounts_verify_password(hash, "first password"));
    assert_false(pt_store_accounts_verify_password(hash, "first passworD"));
    /* bound to the address: another one finds no password */
    assert_false(pt_store_accounts_cred_get(st, "admin", "other@example.com", hash, sizeof(hash), NULL));
    /* a new password moves the stamp on (older sessions end) */
    assert_true(pt_store_accounts_password_set(st, "admin", "admin@example.com", "second password"));
    assert_true(pt_store_accounts_cred_get(st, "admin", "admin@example.com", hash, sizeof(hash), &s2));
    assert_true(s2 > s1);
    assert_true(pt_store_accounts_verify_password(hash, "second password"));
    assert_false(pt_store_accounts_verify_password(hash, "first password"));
    assert_false(pt_store_accounts_verify_password("$2b$10$notargon", "second password"));
    close_store(st, dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_new),
        cmocka_unit_test(test_password_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
