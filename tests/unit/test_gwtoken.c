/*
 * test_gwtoken -- core/base/pt_gwtoken.c: gateway node tokens made, read
 * and checked; a known answer (computed outside Portico), then what an
 * attacker may send: forged and truncated signatures, another gateway's
 * id, an expired stamp, padding games, huge and odd inputs.
 */
#include "base/pt_gwtoken.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define KEY "primary-key-text"
/* 2027-01-05T00:00:00Z */
#define EXP ((int64_t)1799107200)
/* base64(HMAC-SHA512("primary-key-text", "gw-1\n202701050000")), from Python's hmac */
#define SIG "5f6vCgDTDi5piumTd+0h8wr9FJ7CfSn23KWn9+wWA9HHXcgGPkTRm3YP3HORdy9K5N7byvqmgKcY4gQeo26TcA=="
#define TOKEN "GatewayKey gw-1&202701050000&" SIG

static bool parse(const char *s, struct pt_gwtoken *t)
{
    return pt_gwtoken_parse(pt_str_c(s), t);
}

static void test_known_answer(void **state)
{
    (void)state;
    char out[PT_GWTOKEN_MAX];
    assert_true(pt_gwtoken_make("gw-1", KEY, EXP, out));
    assert_string_equal(out, TOKEN);
    /* seconds within the minute are dropped */
    assert_true(pt_gwtoken_make("gw-1", KEY, EXP + 59, out));
    assert_string_equal(out, TOKEN);
    struct pt_gwtoken t;
    assert_true(parse(TOKEN, &t));
    assert_string_equal(t.id, "gw-1");
    assert_string_equal(t.stamp, "202701050000");
    assert_int_equal(t.expiry, EXP);
    assert_string_equal(t.sig_b64, SIG);
    assert_true(pt_gwtoken_signed_by(&t, KEY));
    assert_false(pt_gwtoken_signed_by(&t, "secondary-key-text"));
    assert_false(pt_gwtoken_signed_by(&t, ""));
    assert_false(pt_gwtoken_expired(&t, EXP - 1));
    assert_true(pt_gwtoken_expired(&t, EXP));
    /* the bare parts, and the scheme in any case with several spaces */
    assert_true(parse("gw-1&202701050000&" SIG, &t));
    assert_true(parse("gatewaykey   gw-1&202701050000&" SIG, &t));
    assert_true(pt_gwtoken_signed_by(&t, KEY));
}

static void test_round_trip(void **state)
{
    (void)state;
    char id[PT_GWTOKEN_ID_MAX + 1];
    memset(id, 'a', PT_GWTOKEN_ID_MAX);
    id[PT_GWTOKEN_ID_MAX] = '\0';
    const char *ids[] = {"a", "A.b_c-9", id};
    for (size_t i = 0; i < sizeof(ids) / sizeof(*ids); i++) {
        char out[PT_GWTOKEN_MAX];
        assert_true(pt_gwtoken_make(ids[i], "k", 1835481540, out));
        assert_true(strlen(out) < PT_GWTOKEN_MAX);
        struct pt_gwtoken t;
        assert_true(parse(out, &t));
        assert_string_equal(t.id, ids[i]);
        assert_string_equal(t.stamp, "202802292359"); /* a leap day */
        assert_int_equal(t.expiry, 1835481540);
        assert_true(pt_gwtoken_signed_by(&t, "k"));
    }
    /* ids and times that cannot be made */
    char out[PT_GWTOKEN_MAX];
    char longid[PT_GWTOKEN_ID_MAX + 2];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    assert_false(pt_gwtoken_make(longid, "k", EXP, out));
    assert_false(pt_gwtoken_make("", "k", EXP, out));
    assert_false(pt_gwtoken_make("a&b", "k", EXP, out));
    assert_false(pt_gwtoken_make("a b", "k", EXP, out));
    assert_false(pt_gwtoken_make("a", "", EXP, out));
    assert_false(pt_gwtoken_make("a", "k", -1, out));
    assert_false(pt_gwtoken_make("a", "k", (int64_t)300000000000, out));
    char st[13];
    assert_true(pt_gwtoken_stamp(0, st));
    assert_string_equal(st, "197001010000");
}

static void test_forged(void **state)
{
    (void)state;
    struct pt_gwtoken t;
    /* one bit of the signature changed */
    char s[] = TOKEN;
    char *sig = strrchr(s, '&') + 1;
    sig[10] = sig[10] == 'A' ? 'B' : 'A';
    assert_true(parse(s, &t));
    assert_false(pt_gwtoken_signed_by(&t, KEY));
    /* another gateway's id, or another expiry, with the genuine signature */
    assert_true(parse("GatewayKey gw-2&202701050000&" SIG, &t));
    assert_false(pt_gwtoken_signed_by(&t, KEY));
    assert_true(parse("GatewayKey gw-1&202801050000&" SIG, &t));
    assert_false(pt_gwtoken_signed_by(&t, KEY));
    /* a signature made with another key */
    char out[PT_GWTOKEN_MAX];
    assert_true(pt_gwtoken_make("gw-1", "another", EXP, out));
    assert_true(parse(out, &t));
    assert_false(pt_gwtoken_signed_by(&t, KEY));
    /* all zeros */
    char zeros[PT_GWTOKEN_MAX];
    snprintf(zeros, sizeof(zeros), "gw-1&202701050000&%.*s==", 86,
             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_true(parse(zeros, &t));
    assert_false(pt_gwtoken_signed_by(&t, KEY));
}

static void test_malformed(void **state)
{
    (void)state;
    struct pt_gwtoken t;
    memset(&t, 0x5a, sizeof(t));
    const char *bad[] = {
        "",
        "GatewayKey",
        "GatewayKey ",
        "Bearer gw-1&202701050000&" SIG,
        "GatewayKey gw-1&202701050000&" SIG " ",
        " GatewayKey gw-1&202701050000&" SIG,
        "GatewayKey gw-1&202701050000&" SIG "=",
        "GatewayKey gw-1&202701050000&" SIG "A",
        /* truncated */
        "GatewayKey "
        "gw-1&202701050000&5f6vCgDTDi5piumTd+0h8wr9FJ7CfSn23KWn9+"
        "wWA9HHXcgGPkTRm3YP3HORdy9K5N7byvqmgKcY4gQeo26TcA=",
        "GatewayKey "
        "gw-1&202701050000&5f6vCgDTDi5piumTd+0h8wr9FJ7CfSn23KWn9+"
        "wWA9HHXcgGPkTRm3YP3HORdy9K5N7byvqmgKcY4gQeo26TcA",
        "GatewayKey gw-1&202701050000&",
        "GatewayKey gw-1&202701050000",
        "GatewayKey gw-1",
        /* padding games: unpadded, padding inside, non-canonical last character, base64url */
        "GatewayKey "
        "gw-1&202701050000&5f6vCgDTDi5piumTd+0h8wr9FJ7CfSn23KWn9+"
        "wWA9HHXcgGPkTRm3YP3HORdy9K5N7byvqmgKcY4gQeo26TcAAA",
        "GatewayKey "
        "gw-1&202701050000&5f6vCgDTDi5piumTd+0h8wr9FJ7CfSn23KWn9+"
        "wWA9HHXcgGPkTRm3YP3HORdy9K5N7byvqmgKcY4gQeo26T==A=",
        "GatewayKey "
        "gw-1&202701050000&5f6vCgDTDi5piumTd+0h8wr9FJ7CfSn23KWn9+"
        "wWA9HHXcgGPkTRm3YP3HORdy9K5N7byvqmgKcY4gQeo26TcB==",
        "GatewayKey "
        "gw-1&202701050000&5f6vCgDTDi5piumTd-0h8wr9FJ7CfSn23KWn9-"
        "wWA9HHXcgGPkTRm3YP3HORdy9K5N7byvqmgKcY4gQeo26TcA==",
        /* stamps: short, long, not digits, impossible dates and times, before 1970 */
        "GatewayKey gw-1&20270105000&" SIG,
        "GatewayKey gw-1&2027010500000&" SIG,
        "GatewayKey gw-1&2027-1050000&" SIG,
        "GatewayKey gw-1&202713050000&" SIG,
        "GatewayKey gw-1&202702290000&" SIG,
        "GatewayKey gw-1&202701322359&" SIG,
        "GatewayKey gw-1&202701052400&" SIG,
        "GatewayKey gw-1&202701050060&" SIG,
        "GatewayKey gw-1&196912312359&" SIG,
        "GatewayKey gw-1&202700050000&" SIG,
        /* ids: empty, bad characters, an extra part */
        "GatewayKey &202701050000&" SIG,
        "GatewayKey gw 1&202701050000&" SIG,
        "GatewayKey gw/1&202701050000&" SIG,
        "GatewayKey gw&1&202701050000&" SIG,
        "GatewayKey gw-1&&202701050000&" SIG,
        "GatewayKey gw-1&202701050000&&" SIG,
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        if (parse(bad[i], &t))
            fail_msg("accepted: %s", bad[i]);
    }
    /* without the space it is the bare form of another id (refused by the id check of the caller) */
    assert_true(parse("GatewayKeygw-1&202701050000&" SIG, &t));
    assert_string_equal(t.id, "GatewayKeygw-1");
    assert_false(pt_gwtoken_signed_by(&t, KEY));
    memset(&t, 0x5a, sizeof(t));
    /* a NUL inside, and the length that ends before the text does */
    char withnul[] = TOKEN;
    withnul[13] = '\0';
    assert_false(pt_gwtoken_parse((pt_str){withnul, sizeof(withnul) - 1}, &t));
    assert_false(pt_gwtoken_parse((pt_str){TOKEN, strlen(TOKEN) - 1}, &t));
    assert_false(pt_gwtoken_parse((pt_str){NULL, 0}, &t));
    /* nothing was written by the refusals */
    assert_int_equal((unsigned char)t.id[0], 0x5a);
    /* a 1 MB value, and an id one longer than allowed */
    size_t huge = 1 << 20;
    char *h = malloc(huge + 1);
    memset(h, 'a', huge);
    h[huge] = '\0';
    assert_false(parse(h, &t));
    snprintf(h, huge, "GatewayKey %0*d&202701050000&%s", PT_GWTOKEN_ID_MAX + 1, 0, SIG);
    assert_false(parse(h, &t));
    snprintf(h, huge, "GatewayKey %0*d&202701050000&%s", PT_GWTOKEN_ID_MAX, 0, SIG);
    assert_true(parse(h, &t));
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_forged),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
