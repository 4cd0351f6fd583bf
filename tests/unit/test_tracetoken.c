/*
 * test_tracetoken -- the debug tokens of request tracing (http/pt_tracetoken.c):
 * signing and checking, expiry, another API, every kind of tampering,
 * keys of other nodes, the signed trace locations, ISO 8601 durations and
 * APIM's forms of an API id.
 */
#include "http/pt_tracetoken.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#define NOW 1796000000000ULL /* 2026-11-29 */

static struct pt_tracetoken_key key(const char *secret)
{
    struct pt_tracetoken_key k = {0};
    pt_tracetoken_derive(secret, "portico debug token v1", &k);
    return k;
}

static enum pt_tracetoken_verdict check(const struct pt_tracetoken_key *k, const char *tok, const char *api,
                                        uint64_t now)
{
    return pt_tracetoken_verify(k, pt_str_c(tok), pt_str_c(api), now);
}

static void test_sign_and_verify(void **state)
{
    (void)state;
    struct pt_tracetoken_key k = key("node-secret");
    char tok[PT_TRACETOKEN_MAX];
    assert_true(pt_tracetoken_sign(&k, "echo", NOW + 3600000, tok));
    assert_memory_equal(tok, "v1.", 3);
    assert_int_equal(check(&k, tok, "echo", NOW), PT_TRACETOKEN_OK);
    assert_int_equal(check(&k, tok, "echo", NOW + 3599999), PT_TRACETOKEN_OK);
    /* API ids of any length and bytes up to the maximum */
    char api[PT_TRACETOKEN_API_MAX + 2];
    for (size_t n = 1; n <= PT_TRACETOKEN_API_MAX; n += 7) {
        memset(api, 'a' + (int)(n % 26), n);
        api[n] = '\0';
        assert_true(pt_tracetoken_sign(&k, api, NOW + 1, tok));
        assert_true(strlen(tok) < PT_TRACETOKEN_MAX);
        assert_int_equal(check(&k, tok, api, NOW), PT_TRACETOKEN_OK);
    }
    memset(api, 'x', PT_TRACETOKEN_API_MAX + 1);
    api[PT_TRACETOKEN_API_MAX + 1] = '\0';
    assert_false(pt_tracetoken_sign(&k, api, NOW, tok));
    assert_false(pt_tracetoken_sign(&k, "", NOW, tok));
    struct pt_tracetoken_key none = {0};
    assert_false(pt_tracetoken_sign(&none, "echo", NOW, tok));
}

static void test_expiry_and_api(void **state)
{
    (void)state;
    struct pt_tracetoken_key k = key("node-secret");
    char tok[PT_TRACETOKEN_MAX];
    assert_true(pt_tracetoken_sign(&k, "echo", NOW, tok));
    assert_int_equal(check(&k, tok, "echo", NOW), PT_TRACETOKEN_EXPIRED);
    assert_int_equal(check(&k, tok, "echo", NOW + 1), PT_TRACETOKEN_EXPIRED);
    assert_int_equal(check(&k, tok, "echo", NOW - 1), PT_TRACETOKEN_OK);
    assert_int_equal(check(&k, tok, "other", NOW - 1), PT_TRACETOKEN_WRONG_API);
    assert_int_equal(check(&k, tok, "ech", NOW - 1), PT_TRACETOKEN_WRONG_API);
    assert_int_equal(check(&k, tok, "echo2", NOW - 1), PT_TRACETOKEN_WRONG_API);
    assert_int_equal(check(&k, tok, "", NOW - 1), PT_TRACETOKEN_WRONG_API);
    /* expired and for another API: expired (the expiry is checked first) */
    assert_int_equal(check(&k, tok, "other", NOW + 5), PT_TRACETOKEN_EXPIRED);
}

static void test_tampering(void **state)
{
    (void)state;
    struct pt_tracetoken_key k = key("node-secret");
    char tok[PT_TRACETOKEN_MAX], bad[PT_TRACETOKEN_MAX + 8];
    assert_true(pt_tracetoken_sign(&k, "echo", NOW + 1000, tok));
    size_t n = strlen(tok);
    /* every byte changed, one at a time, to a few other values */
    const char subst[] = {'A', '0', '.', 'f', '_', '\0' + 1};
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < sizeof(subst); j++) {
            if (tok[i] == subst[j])
                continue;
            memcpy(bad, tok, n + 1);
            bad[i] = subst[j];
            assert_int_equal(check(&k, bad, "echo", NOW), PT_TRACETOKEN_INVALID);
        }
    /* cut short, lengthened */
    for (size_t i = 0; i < n; i++) {
        memcpy(bad, tok, i);
        bad[i] = '\0';
        assert_int_equal(check(&k, bad, "echo", NOW), PT_TRACETOKEN_INVALID);
    }
    snprintf(bad, sizeof(bad), "%sx", tok);
    assert_int_equal(check(&k, bad, "echo", NOW), PT_TRACETOKEN_INVALID);
    snprintf(bad, sizeof(bad), "x%s", tok);
    assert_int_equal(check(&k, bad, "echo", NOW), PT_TRACETOKEN_INVALID);
    /* another API's name with this signature, a later expiry with this signature */
    char other[PT_TRACETOKEN_MAX];
    assert_true(pt_tracetoken_sign(&k, "other", NOW + 1000, other));
    const char *sig = strrchr(tok, '.');
    snprintf(bad, sizeof(bad), "v1.b3RoZXI.%llu%s", (unsigned long long)(NOW + 1000), sig);
    assert_int_equal(check(&k, bad, "other", NOW), PT_TRACETOKEN_INVALID);
    snprintf(bad, sizeof(bad), "v1.ZWNobw.%llu%s", (unsigned long long)(NOW + 9999999), sig);
    assert_int_equal(check(&k, bad, "echo", NOW), PT_TRACETOKEN_INVALID);
    /* garbage */
    const char *junk[] = {
        "", "v1", "v1.", "v1....", "v2.ZWNobw.1.0000", "Bearer x", "v1.ZWNobw.99999999999999."};
    for (size_t i = 0; i < PT_ARRAY_LEN(junk); i++)
        assert_int_equal(check(&k, junk[i], "echo", NOW), PT_TRACETOKEN_INVALID);
    char longone[2000];
    memset(longone, 'v', sizeof(longone) - 1);
    longone[sizeof(longone) - 1] = '\0';
    assert_int_equal(check(&k, longone, "echo", NOW), PT_TRACETOKEN_INVALID);
    /* bytes that are not text */
    char bin[100];
    memcpy(bin, tok, 3);
    for (int i = 3; i < 99; i++)
        bin[i] = (char)(i * 37);
    assert_int_equal(pt_tracetoken_verify(&k, (pt_str){bin, 99}, pt_str_c("echo"), NOW),
                     PT_TRACETOKEN_INVALID);
}

static void test_other_nodes_keys(void **state)
{
    (void)state;
    struct pt_tracetoken_key a = key("node-a"), b = key("node-b"), unset = {0};
    char tok[PT_TRACETOKEN_MAX];
    assert_true(pt_tracetoken_sign(&a, "echo", NOW + 1000, tok));
    assert_int_equal(check(&b, tok, "echo", NOW), PT_TRACETOKEN_INVALID);
    assert_int_equal(check(&unset, tok, "echo", NOW), PT_TRACETOKEN_INVALID);
    /* the location key of the same node does not make debug tokens */
    struct pt_tracetoken_key loc = {0};
    pt_tracetoken_derive("node-a", "portico trace location v1", &loc);
    assert_int_equal(check(&loc, tok, "echo", NOW), PT_TRACETOKEN_INVALID);
    /* the node's keys */
    pt_tracetoken_set_secret("node-a");
    assert_true(pt_tracetoken_debug_key.set && pt_tracetoken_location_key.set);
    assert_int_equal(check(&pt_tracetoken_debug_key, tok, "echo", NOW), PT_TRACETOKEN_OK);
}

static void test_locations(void **state)
{
    (void)state;
    struct pt_tracetoken_key k = {0};
    pt_tracetoken_derive("node-a", "portico trace location v1", &k);
    const char *id = "0123456789abcdef0123456789abcdef";
    char sig[65];
    pt_tracetoken_location_sig(&k, id, 1796000000, sig);
    assert_int_equal(strlen(sig), 64);
    assert_true(pt_tracetoken_location_ok(&k, id, 1796000000, sig));
    assert_false(pt_tracetoken_location_ok(&k, id, 1796000001, sig));
    assert_false(pt_tracetoken_location_ok(&k, "0123456789abcdef0123456789abcdee", 1796000000, sig));
    assert_false(pt_tracetoken_location_ok(&k, id, 1796000000, ""));
    assert_false(pt_tracetoken_location_ok(&k, id, 1796000000, NULL));
    char bad[80];
    snprintf(bad, sizeof(bad), "%.63s0", sig);
    if (sig[63] != '0')
        assert_false(pt_tracetoken_location_ok(&k, id, 1796000000, bad));
    snprintf(bad, sizeof(bad), "%s0", sig);
    assert_false(pt_tracetoken_location_ok(&k, id, 1796000000, bad));
    struct pt_tracetoken_key unset = {0};
    assert_false(pt_tracetoken_location_ok(&unset, id, 1796000000, sig));
}

static void test_durations(void **state)
{
    (void)state;
    struct {
        const char *s;
        uint64_t ms;
    } good[] = {
        {"PT1H", 3600000}, {"PT30M", 1800000},    {"PT1S", 1000},       {"PT0.5S", 500},
        {"PT1,5S", 1500},  {"P1D", 86400000},     {"P1DT2H", 93600000}, {"PT1H30M5S", 5405000},
        {"pt1h", 3600000}, {"PT59M59S", 3599000}, {"PT3600S", 3600000}, {"P0D", 0},
        {"PT0.001S", 1},   {"PT0S", 0},           {"PT90M", 5400000},   {"P0DT1H", 3600000},
    };
    for (size_t i = 0; i < PT_ARRAY_LEN(good); i++) {
        uint64_t ms = 12345;
        assert_true(pt_tracetoken_duration_ms(good[i].s, &ms));
        assert_int_equal(ms, good[i].ms);
    }
    const char *bad[] = {"",       "P",      "PT",     "1H",     "PT1",
                         "PTH",    "P1Y",    "P1M",    "P1W",    "PT1D",
                         "P1H",    "PT1H1H", "PT1M1H", "PT1S1M", "PT-1H",
                         "PT1.H",  "PT.5S",  "P1DT",   "PT1HX",  " PT1H",
                         "PT1H ",  "P1D1D",  "PTT1H",  NULL,     "PT99999999999999999H",
                         "P4000D", "PT1e3S"};
    for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++) {
        uint64_t ms = 0;
        assert_false(pt_tracetoken_duration_ms(bad[i], &ms));
    }
}

static void test_api_ids(void **state)
{
    (void)state;
    assert_string_equal(pt_tracetoken_api_id("echo"), "echo");
    assert_string_equal(pt_tracetoken_api_id("/apis/echo"), "echo");
    assert_string_equal(pt_tracetoken_api_id("/subscriptions/x/resourceGroups/r/providers/"
                                             "Microsoft.ApiManagement/service/s/apis/echo"),
                        "echo");
    assert_string_equal(pt_tracetoken_api_id("/apis/"), "");
    assert_string_equal(pt_tracetoken_api_id("apis/echo"), "apis/echo");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_and_verify), cmocka_unit_test(test_expiry_and_api),
        cmocka_unit_test(test_tampering),       cmocka_unit_test(test_other_nodes_keys),
        cmocka_unit_test(test_locations),       cmocka_unit_test(test_durations),
        cmocka_unit_test(test_api_ids),
    };
    return cmocka_run_group_tests_name("tracetoken", tests, NULL, NULL);
}
