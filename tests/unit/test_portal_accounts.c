/*
 * test_portal_accounts -- the pure pieces of the portal's accounts: random
 * ids and their form, the hashes the store keeps, the constant-time
 * comparison, cookie parsing, the password and address rules, Argon2id,
 * the sign-in throttle's arithmetic; and the account tables of the store
 * (single-use tokens, stamps, the session sweep) on a real SQLite file.
 */
#include "conf/pt_store.h"
#include "conf/pt_store_accounts.h"
#include "portal/pt_portal_int.h"

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

static void test_random_ids(void **state)
{
    (void)state;
    char a[PT_PORTAL_SESSION_CHARS + 1], b[PT_PORTAL_SESSION_CHARS + 1], small[43];
    assert_true(pt_portal_session_random(a, sizeof(a)));
    assert_true(pt_portal_session_random(b, sizeof(b)));
    assert_int_equal(strlen(a), 43); /* 256 bits in base64url */
    assert_true(pt_portal_session_well_formed(a));
    assert_string_not_equal(a, b);
    assert_false(pt_portal_session_random(small, sizeof(small)));
    assert_string_equal(small, "");
    /* every character of the alphabet shows up over many ids: no bias to a subset */
    int seen[128] = {0}, kinds = 0;
    for (int i = 0; i < 200; i++) {
        pt_portal_session_random(a, sizeof(a));
        for (const char *p = a; *p; p++)
            seen[(unsigned char)*p]++;
    }
    for (int c = 0; c < 128; c++)
        kinds += seen[c] > 0;
    assert_int_equal(kinds, 64);
}

static void test_well_formed(void **state)
{
    (void)state;
    char ok[44];
    memset(ok, 'A', 43);
    ok[43] = '\0';
    assert_true(pt_portal_session_well_formed(ok));
    ok[5] = '-';
    ok[6] = '_';
    assert_true(pt_portal_session_well_formed(ok));
    ok[7] = '+'; /* base64, not base64url */
    assert_false(pt_portal_session_well_formed(ok));
    ok[7] = 'A';
    ok[42] = '\0';
    assert_false(pt_portal_session_well_formed(ok)); /* 42 */
    assert_false(pt_portal_session_well_formed(""));
    assert_false(pt_portal_session_well_formed("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")); /* 44 */
    assert_false(pt_portal_session_well_formed("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA A"));
}

static void test_hash(void **state)
{
    (void)state;
    char h[65];
    pt_portal_session_hash("abc", h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    pt_portal_session_hash("", h);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_equal(void **state)
{
    (void)state;
    assert_true(pt_portal_session_equal("token-1", "token-1"));
    assert_false(pt_portal_session_equal("token-1", "token-2"));
    assert_false(pt_portal_session_equal("token-1", "token-12"));
    assert_false(pt_portal_session_equal("token-12", "token-1"));
    assert_false(pt_portal_session_equal("", "")); /* no session: never a match */
    assert_false(pt_portal_session_equal("x", ""));
}

static void test_cookie_value(void **state)
{
    (void)state;
    char v[64];
    assert_true(
        pt_portal_session_cookie_value("a=1; portico_session=XYZ; b=2", "portico_session", v, sizeof(v)));
    assert_string_equal(v, "XYZ");
    assert_true(pt_portal_session_cookie_value("portico_session=abc", "portico_session", v, sizeof(v)));
    assert_string_equal(v, "abc");
    /* a name that ends or begins like ours is not ours */
    assert_false(pt_portal_session_cookie_value("xportico_session=1; portico_sessionx=2", "portico_session",
                                                v, sizeof(v)));
    assert_false(pt_portal_session_cookie_value("__Host-portico_session=1", "portico_session", v, sizeof(v)));
    assert_true(pt_portal_session_cookie_value("portico_session=1; __Host-portico_session=2",
                                               "__Host-portico_session", v, sizeof(v)));
    assert_string_equal(v, "2");
    /* longer than the buffer: refused, not cut */
    assert_false(pt_portal_session_cookie_value("portico_session=0123456789", "portico_session", v, 8));
    assert_false(pt_portal_session_cookie_value("", "portico_session", v, sizeof(v)));
    assert_true(pt_portal_session_cookie_value(";;  portico_session=q ;", "portico_session", v, sizeof(v)));
    assert_string_equal(v, "q");
}

static void test_password_rule(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_false(pt_portal_account_password_ok("123456789", &why));
    assert_non_null(strstr(why, "10"));
    assert_true(pt_portal_account_password_ok("1234567890", &why));
    /* characters, not bytes: nine two-byte characters are still nine */
    assert_false(pt_portal_account_password_ok("ééééééééé", &why));
    assert_true(pt_portal_account_password_ok("éééééééééé", &why));
    char big[1100];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_false(pt_portal_account_password_ok(big, &why));
    big[1024] = '\0';
    assert_true(pt_portal_account_password_ok(big, &why));
}

static void test_name_rule(void **state)
{
    (void)state;
    assert_true(pt_portal_account_name_ok("Ada"));
    assert_true(pt_portal_account_name_ok("Zo\xc3\xab O'Brien-Sm\xc3\xadth"));
    assert_false(pt_portal_account_name_ok(""));
    assert_false(pt_portal_account_name_ok(NULL));
    assert_false(pt_portal_account_name_ok("Eve\r\n\r\nClick https://evil.example/reset"));
    assert_false(pt_portal_account_name_ok("Eve\nX"));
    assert_false(pt_portal_account_name_ok("Eve\tX"));
    assert_false(pt_portal_account_name_ok("Eve\x1b[31m"));
    assert_false(pt_portal_account_name_ok("Eve\x7f"));
    assert_false(pt_portal_account_name_ok("Eve\xc2\x85X"));     /* NEL */
    assert_false(pt_portal_account_name_ok("Eve\xe2\x80\xa8X")); /* LINE SEPARATOR */
    char big[102];
    memset(big, 'a', 101);
    big[101] = '\0';
    assert_false(pt_portal_account_name_ok(big));
    big[100] = '\0';
    assert_true(pt_portal_account_name_ok(big));
}

static void test_email_rule(void **state)
{
    (void)state;
    assert_true(pt_portal_account_email_ok("dev@example.com"));
    assert_true(pt_portal_account_email_ok("first.last+tag@sub.example.org"));
    assert_false(pt_portal_account_email_ok("dev"));
    assert_false(pt_portal_account_email_ok("@example.com"));
    assert_false(pt_portal_account_email_ok("dev@"));
    assert_false(pt_portal_account_email_ok("dev@localhost"));
    assert_false(pt_portal_account_email_ok("a@b@example.com"));
    assert_false(pt_portal_account_email_ok("dev@example.com\r\nBcc: x@example.com"));
    assert_false(pt_portal_account_email_ok("dev @example.com"));
    assert_false(pt_portal_account_email_ok("<dev@example.com>"));
}

static void test_argon2id(void **state)
{
    (void)state;
    char h1[160], h2[160];
    assert_true(pt_portal_account_hash_password("correct horse battery", h1, sizeof(h1)));
    assert_true(pt_portal_account_hash_password("correct horse battery", h2, sizeof(h2)));
    assert_memory_equal(h1, "$argon2id$v=19$m=19456,t=2,p=1$", 31);
    assert_string_not_equal(h1, h2); /* salted */
    assert_true(pt_portal_account_verify_password(h1, "correct horse battery"));
    assert_true(pt_portal_account_verify_password(h2, "correct horse battery"));
    assert_false(pt_portal_account_verify_password(h1, "correct horse batterY"));
    assert_false(pt_portal_account_verify_password(h1, ""));
    /* only Argon2id hashes are accepted: not another variant, not garbage */
    char other[160];
    snprintf(other, sizeof(other), "$argon2i$%s", h1 + 10);
    assert_false(pt_portal_account_verify_password(other, "correct horse battery"));
    assert_false(pt_portal_account_verify_password("", "x"));
    assert_false(pt_portal_account_verify_password("plain", "plain"));
    char tiny[20];
    assert_false(pt_portal_account_hash_password("correct horse battery", tiny, sizeof(tiny)));
}

static void test_throttle(void **state)
{
    (void)state;
    struct pt_store_accounts_throttle t = {0};
    int64_t now = 1000000;
    for (int i = 0; i < 4; i++) {
        pt_portal_account_throttle_fail(&t, now + i, 5, 60000);
        assert_false(pt_portal_account_throttle_locked(&t, now + i));
    }
    pt_portal_account_throttle_fail(&t, now + 10, 5, 60000);
    assert_true(pt_portal_account_throttle_locked(&t, now + 10));
    assert_true(pt_portal_account_throttle_locked(&t, now + 10 + 59999));
    assert_false(pt_portal_account_throttle_locked(&t, now + 10 + 60000));
    assert_int_equal(t.failures, 0); /* counted afresh after the lockout */
    /* failures further apart than the lockout period do not add up */
    struct pt_store_accounts_throttle s = {0};
    for (int i = 0; i < 10; i++)
        pt_portal_account_throttle_fail(&s, now + (int64_t)i * 61000, 5, 60000);
    assert_false(pt_portal_account_throttle_locked(&s, now + 9 * 61000));
    assert_int_equal(s.failures, 1);
}

/* ---------------------------------------------------------- the store */

static void test_store_tokens(void **state)
{
    (void)state;
    char dir[64], user[128];
    struct pt_store *st = open_store(dir, "accounts");
    assert_true(pt_store_accounts_token_put(st, "h1", "reset", "u1", 5000));
    /* the wrong purpose, or after the expiry: refused and not spent */
    assert_false(pt_store_accounts_token_use(st, "h1", "confirm", 1000, user));
    assert_false(pt_store_accounts_token_use(st, "h1", "reset", 5000, user));
    assert_true(pt_store_accounts_token_peek(st, "h1", "reset", 1000, user));
    assert_string_equal(user, "u1");
    assert_true(pt_store_accounts_token_use(st, "h1", "reset", 1000, user));
    assert_string_equal(user, "u1");
    /* once only */
    assert_false(pt_store_accounts_token_use(st, "h1", "reset", 1000, user));
    assert_false(pt_store_accounts_token_peek(st, "h1", "reset", 1000, user));
    /* a user's unused tokens can be dropped (a password set by other means) */
    assert_true(pt_store_accounts_token_put(st, "h2", "reset", "u2", 5000));
    assert_true(pt_store_accounts_token_drop_user(st, "u2", "reset"));
    assert_false(pt_store_accounts_token_use(st, "h2", "reset", 1000, user));
    assert_int_equal(pt_store_accounts_token_sweep(st, 6000), 1);
    close_store(st, dir);
}

static void test_store_stamps_and_sessions(void **state)
{
    (void)state;
    char dir[64], hash[200];
    struct pt_store *st = open_store(dir, "accounts");
    int64_t s1 = 0, s2 = 0, s3 = 0, got = 0;
    assert_false(pt_store_accounts_cred_get(st, "u1", "Dev@Example.com", hash, sizeof(hash), &got));
    assert_true(pt_store_accounts_cred_set(st, "u1", "dev@example.com", "$argon2id$one", &s1));
    assert_true(pt_store_accounts_cred_set(st, "u1", "dev@example.com", "$argon2id$two", &s2));
    assert_true(s2 > s1); /* every new password moves the stamp on */
    assert_true(pt_store_accounts_cred_get(st, "u1", "Dev@Example.com", hash, sizeof(hash), &got));
    assert_string_equal(hash, "$argon2id$two");
    assert_int_equal(got, s2);
    /* set for another address: not this user's password (an id reused for someone else) */
    assert_false(pt_store_accounts_cred_get(st, "u1", "other@example.com", hash, sizeof(hash), &got));
    assert_true(pt_store_accounts_cred_delete(st, "u1"));
    assert_true(pt_store_accounts_cred_set(st, "u1", "dev@example.com", "$argon2id$three", &s3));
    assert_true(s3 > 0);
    assert_true(pt_store_accounts_cred_get(st, "u1", "Dev@Example.com", hash, sizeof(hash), &got));
    assert_string_equal(hash, "$argon2id$three");

    struct pt_store_accounts_session se = {.created = 100, .seen = 100, .stamp = s3};
    snprintf(se.user, sizeof(se.user), "u1");
    snprintf(se.csrf, sizeof(se.csrf), "c1");
    assert_true(pt_store_accounts_session_put(st, "user-a", &se));
    assert_true(pt_store_accounts_session_put(st, "user-b", &se));
    se.user[0] = '\0';
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof(id), "guest-%d", i);
        se.seen = 200 + i;
        assert_true(pt_store_accounts_session_put(st, id, &se));
    }
    assert_int_equal(pt_store_accounts_session_count(st, NULL), 7);
    /* past the cap, the stalest guests go, never a user */
    assert_int_equal(pt_store_accounts_session_sweep(st, 0, 0, 4), 3);
    assert_int_equal(pt_store_accounts_session_count(st, "u1"), 2);
    struct pt_store_accounts_session out;
    assert_false(pt_store_accounts_session_get(st, "guest-0", &out));
    assert_true(pt_store_accounts_session_get(st, "guest-4", &out));
    /* idle ones go whoever they are */
    assert_int_equal(pt_store_accounts_session_sweep(st, 150, 0, 1000), 2);
    assert_int_equal(pt_store_accounts_session_count(st, "u1"), 0);
    /* all of a user's sessions end at once; "" (the guests) never does */
    snprintf(se.user, sizeof(se.user), "u2");
    se.seen = 1000;
    assert_true(pt_store_accounts_session_put(st, "x1", &se));
    assert_true(pt_store_accounts_session_put(st, "x2", &se));
    assert_int_equal(pt_store_accounts_session_delete_user(st, ""), 0);
    assert_int_equal(pt_store_accounts_session_delete_user(st, "u2"), 2);
    close_store(st, dir);
}

static void test_store_email_lookup(void **state)
{
    (void)state;
    char dir[64], id[128];
    struct pt_store *st = open_store(dir, "accounts");
    json_t *u = json_pack("{s:s,s:s}", "id", "u1", "email", "Dev@Example.com");
    assert_true(pt_store_put(st, "user", "", "u1", "", u, "api", NULL));
    json_decref(u);
    assert_true(pt_store_accounts_user_by_email(st, "dev@example.COM", id));
    assert_string_equal(id, "u1");
    assert_false(pt_store_accounts_user_by_email(st, "dev@example.co", id));
    assert_false(pt_store_accounts_user_by_email(st, "%@example.com", id));
    /* a closed account gives its address back: the lookup finds the live user, or nobody */
    u = json_pack("{s:s,s:s,s:s}", "id", "a0", "email", "gone@example.com", "state", "deleted");
    assert_true(pt_store_put(st, "user", "", "a0", "", u, "api", NULL));
    json_decref(u);
    assert_false(pt_store_accounts_user_by_email(st, "gone@example.com", id));
    u = json_pack("{s:s,s:s,s:s}", "id", "z9", "email", "GONE@example.com", "state", "pending");
    assert_true(pt_store_put(st, "user", "", "z9", "", u, "api", NULL));
    json_decref(u);
    assert_true(pt_store_accounts_user_by_email(st, "gone@example.com", id));
    assert_string_equal(id, "z9");
    assert_true(pt_store_link(st, "group-user", "developers", "u1", "api"));
    assert_true(pt_store_link(st, "group-user", "administrators", "u1", "api"));
    json_t *groups = json_array();
    assert_true(pt_store_accounts_user_groups(st, "u1", groups));
    assert_int_equal(json_array_size(groups), 2);
    assert_string_equal(json_string_value(json_array_get(groups, 0)), "administrators");
    json_decref(groups);
    close_store(st, dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_ids),
        cmocka_unit_test(test_well_formed),
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_cookie_value),
        cmocka_unit_test(test_password_rule),
        cmocka_unit_test(test_email_rule),
        cmocka_unit_test(test_name_rule),
        cmocka_unit_test(test_argon2id),
        cmocka_unit_test(test_throttle),
        cmocka_unit_test(test_store_tokens),
        cmocka_unit_test(test_store_stamps_and_sessions),
        cmocka_unit_test(test_store_email_lookup),
    };
    return cmocka_run_group_tests_name("portal_accounts", tests, NULL, NULL);
}
