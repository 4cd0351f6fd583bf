/*
 * test_jwt -- core/base/pt_jwt.c (base64url, keys, JWKs, splitting, one
 * signature of each family) and the portal's id_token check
 * (pt_portal_oidc_verify: iss, aud and azp, exp, iat, nbf, nonce, kid,
 * alg), with RSA and EC keys made here; and the identity provider URL rule.
 */
#include "base/pt_jwt.h"
#include "conf/pt_idp.h"
#include "portal/pt_portal_int.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

static EVP_PKEY *rsa, *ec, *rsa_small;

static char *b64u(const unsigned char *b, size_t n)
{
    char *out = malloc(n * 4 / 3 + 4);
    pt_jwt_b64url_encode(b, n, out);
    return out;
}

static char *b64u_str(const char *s)
{
    return b64u((const unsigned char *)s, strlen(s));
}

/* The JWK of a public key ({"kty", "kid", n/e or crv/x/y}). */
static json_t *jwk_of(EVP_PKEY *k, const char *kid)
{
    if (EVP_PKEY_is_a(k, "RSA")) {
        BIGNUM *n = NULL, *e = NULL;
        EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n);
        EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e);
        unsigned char nb[1024], eb[16];
        int nl = BN_bn2bin(n, nb), el = BN_bn2bin(e, eb);
        char *ns = b64u(nb, (size_t)nl), *es = b64u(eb, (size_t)el);
        json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "kty", "RSA", "kid", kid, "n", ns, "e", es);
        BN_free(n), BN_free(e), free(ns), free(es);
        return j;
    }
    unsigned char pub[133];
    size_t pl = 0;
    EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &pl);
    char *x = b64u(pub + 1, 32), *y = b64u(pub + 33, 32);
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "kid", kid, "crv", "P-256", "x", x, "y", y);
    free(x), free(y);
    return j;
}

/* A compact JWS of header and claims (JSON texts) signed with k under alg (RS256 or ES256). */
static char *sign(EVP_PKEY *k, const char *header, const char *claims)
{
    char *h = b64u_str(header), *c = b64u_str(claims);
    size_t il = strlen(h) + 1 + strlen(c);
    char *input = malloc(il + 1);
    snprintf(input, il + 1, "%s.%s", h, c);
    unsigned char sig[1024];
    size_t sl = sizeof(sig);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k), 1);
    assert_int_equal(EVP_DigestSign(ctx, sig, &sl, (unsigned char *)input, il), 1);
    EVP_MD_CTX_free(ctx);
    if (EVP_PKEY_is_a(k, "EC")) { /* DER to r || s */
        const unsigned char *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)sl);
        BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32);
        BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32);
        ECDSA_SIG_free(es);
        sl = 64;
    }
    char *s = b64u(sig, sl);
    char *tok = malloc(il + 2 + strlen(s));
    sprintf(tok, "%s.%s", input, s);
    free(h), free(c), free(input), free(s);
    return tok;
}

static int setup(void **state)
{
    (void)state;
    rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    rsa_small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    return rsa && ec && rsa_small ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(rsa), EVP_PKEY_free(ec), EVP_PKEY_free(rsa_small);
    return 0;
}

static void test_base64url(void **state)
{
    (void)state;
    size_t n = 0;
    unsigned char *b = pt_jwt_b64_decode("aGVsbG8", 7, &n);
    assert_non_null(b);
    assert_int_equal(n, 5);
    assert_memory_equal(b, "hello", 5);
    free(b);
    b = pt_jwt_b64_decode("-_8", 3, &n); /* both alphabets */
    assert_non_null(b);
    assert_int_equal(n, 2);
    assert_int_equal(b[0], 0xfb);
    assert_int_equal(b[1], 0xff);
    free(b);
    assert_null(pt_jwt_b64_decode("a.b", 3, &n));
    assert_null(pt_jwt_b64_decode("abcde", 5, &n)); /* a length no encoding has */
    for (size_t len = 0; len < 8; len++) {
        unsigned char in[8] = {0xff, 0x00, 0x7e, 0x80, 0x3f, 0xfe, 0x01, 0xaa};
        char out[16];
        pt_jwt_b64url_encode(in, len, out);
        assert_null(strpbrk(out, "+/="));
        unsigned char *back = pt_jwt_b64_decode(out, strlen(out), &n);
        assert_non_null(back);
        assert_int_equal(n, len);
        assert_memory_equal(back, in, len);
        free(back);
    }
}

static void test_keys_and_signatures(void **state)
{
    (void)state;
    json_t *jr = jwk_of(rsa, "r"), *je = jwk_of(ec, "e");
    EVP_PKEY *kr = pt_jwt_key_from_jwk(jr), *ke = pt_jwt_key_from_jwk(je);
    assert_non_null(kr);
    assert_non_null(ke);
    assert_null(pt_jwt_key_unreasonable(kr));
    assert_null(pt_jwt_key_unreasonable(ke));
    json_t *small = jwk_of(rsa_small, "s");
    EVP_PKEY *ks = pt_jwt_key_from_jwk(small);
    assert_string_equal(pt_jwt_key_unreasonable(ks), "an RSA key must have 2048 to 8192 bits");
    json_t *oct = json_pack("{s:s, s:s}", "kty", "oct", "k", "c2VjcmV0");
    assert_null(pt_jwt_key_from_jwk(oct));

    char *t = sign(rsa, "{\"alg\":\"RS256\"}", "{\"a\":1}");
    struct pt_jwt_parts p;
    assert_true(pt_jwt_split(t, strlen(t), &p));
    assert_string_equal(p.alg, "RS256");
    assert_int_equal(pt_jwt_verify("RS256", NULL, 0, kr, (unsigned char *)t, p.signed_len, p.sig, p.sig_len),
                     1);
    /* a key of another family is not tried; none never */
    assert_int_equal(pt_jwt_verify("RS256", NULL, 0, ke, (unsigned char *)t, p.signed_len, p.sig, p.sig_len),
                     -1);
    assert_int_equal(pt_jwt_verify("none", NULL, 0, kr, (unsigned char *)t, p.signed_len, p.sig, p.sig_len),
                     -1);
    assert_int_equal(pt_jwt_verify("HS256", NULL, 0, kr, (unsigned char *)t, p.signed_len, p.sig, p.sig_len),
                     -1);
    /* one byte of the signed part changed */
    t[3] ^= 1;
    assert_int_equal(pt_jwt_verify("RS256", NULL, 0, kr, (unsigned char *)t, p.signed_len, p.sig, p.sig_len),
                     0);
    pt_jwt_parts_free(&p);
    free(t);

    t = sign(ec, "{\"alg\":\"ES256\"}", "{\"a\":1}");
    assert_true(pt_jwt_split(t, strlen(t), &p));
    assert_int_equal(pt_jwt_verify("ES256", NULL, 0, ke, (unsigned char *)t, p.signed_len, p.sig, p.sig_len),
                     1);
    assert_int_equal(pt_jwt_verify("ES256", NULL, 0, ke, (unsigned char *)t, p.signed_len, p.sig, 63), 0);
    pt_jwt_parts_free(&p);
    free(t);

    /* malformed compact forms */
    assert_false(pt_jwt_split("a.b", 3, &p));
    assert_false(pt_jwt_split("a.b.c.d", 7, &p));
    char *dup = b64u_str("{\"alg\":\"RS256\",\"alg\":\"none\"}");
    char tok[200];
    snprintf(tok, sizeof(tok), "%s.e30.AAAA", dup);
    assert_false(pt_jwt_split(tok, strlen(tok), &p)); /* a member named twice */
    free(dup);
    EVP_PKEY_free(kr), EVP_PKEY_free(ke), EVP_PKEY_free(ks);
    json_decref(jr), json_decref(je), json_decref(small), json_decref(oct);
}

/* An id_token with claims over the usual ones, signed by k with kid. */
static char *id_token(EVP_PKEY *k, const char *alg, const char *kid, const char *extra)
{
    long now = (long)time(NULL);
    char header[200], claims[1000];
    snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"kid\":\"%s\"}", alg, kid);
    json_t *c = json_pack("{s:s, s:s, s:I, s:I, s:s, s:s}", "iss", "https://idp.example", "aud", "portal",
                          "iat", (json_int_t)now, "exp", (json_int_t)(now + 300), "nonce", "N1", "sub", "s1");
    if (extra) {
        json_t *x = json_loads(extra, 0, NULL);
        json_object_update(c, x);
        json_decref(x);
    }
    char *txt = json_dumps(c, JSON_COMPACT);
    snprintf(claims, sizeof(claims), "%s", txt);
    free(txt);
    json_decref(c);
    return sign(k, header, claims);
}

static const char *check(const char *tok, const json_t *set)
{
    json_t *claims = NULL;
    const char *why = NULL;
    bool ok = pt_portal_oidc_verify(tok, set, "https://idp.example", "portal", "N1", (int64_t)time(NULL),
                                    &claims, &why);
    assert_true(ok == (claims != NULL));
    json_decref(claims);
    return ok ? NULL : why;
}

static void test_id_token(void **state)
{
    (void)state;
    json_t *set = json_pack("{s:[o, o]}", "keys", jwk_of(rsa, "r1"), jwk_of(ec, "e1"));
    long now = (long)time(NULL);
    char extra[200];
    struct {
        EVP_PKEY *k;
        const char *alg, *kid, *extra, *why; /* why: a word of the refusal, NULL = accepted */
    } cases[] = {
        {rsa, "RS256", "r1", NULL, NULL},
        {ec, "ES256", "e1", NULL, NULL},
        {rsa, "RS256", "r1", "{\"aud\": [\"portal\"]}", NULL},
        {rsa, "RS256", "r1", "{\"aud\": [\"portal\", \"other\"], \"azp\": \"portal\"}", NULL},
        {rsa, "RS256", "r1", "{\"aud\": [\"portal\", \"other\"]}", "audience"},
        {rsa, "RS256", "r1", "{\"aud\": \"other\"}", "audience"},
        {rsa, "RS256", "r1", "{\"iss\": \"https://idp.example/\"}", "issuer"},
        {rsa, "RS256", "r1", "{\"nonce\": \"N2\"}", "nonce"},
        {rsa, "RS256", "r1", "{\"sub\": \"\"}", "subject"},
        {rsa, "RS256", "e1", NULL, "no key"},   /* the kid of a key of the other family */
        {rsa, "RS256", "nope", NULL, "no key"}, /* an unknown kid */
        {ec, "RS256", "r1", NULL, "not valid"}, /* another key's signature bytes */
        {rsa, "HS256", "r1", NULL, "alg"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *t = id_token(cases[i].k, cases[i].alg, cases[i].kid, cases[i].extra);
        const char *why = check(t, set);
        if (!cases[i].why)
            assert_null(why);
        else if (!why || !strstr(why, cases[i].why))
            fail_msg("case %zu: '%s' is not refused for '%s'", i, why ? why : "(accepted)", cases[i].why);
        free(t);
    }
    /* times: expired (past the skew), issued in the future, too old, not yet valid */
    const char *times[][2] = {
        {"{\"exp\": %ld}", "expired"}, {"{\"iat\": %ld}", "issue time"}, {"{\"nbf\": %ld}", "not valid yet"}};
    long at[] = {now - 300, now + 600, now + 600};
    for (int i = 0; i < 3; i++) {
        snprintf(extra, sizeof(extra), times[i][0], at[i]);
        char *t = id_token(rsa, "RS256", "r1", extra);
        const char *why = check(t, set);
        assert_non_null(why);
        assert_non_null(strstr(why, times[i][1]));
        free(t);
    }
    snprintf(extra, sizeof(extra), "{\"iat\": %ld}", now - 3600);
    char *t = id_token(rsa, "RS256", "r1", extra);
    assert_non_null(strstr(check(t, set), "too old"));
    free(t);
    /* within the skew is fine */
    snprintf(extra, sizeof(extra), "{\"exp\": %ld}", now - 30);
    t = id_token(rsa, "RS256", "r1", extra);
    assert_null(check(t, set));
    /* unsigned */
    char *dot = strrchr(t, '.');
    dot[1] = '\0';
    assert_non_null(check(t, set));
    free(t);
    char *h = b64u_str("{\"alg\":\"none\"}"), none[300];
    snprintf(none, sizeof(none), "%s.e30.", h);
    assert_non_null(check(none, set));
    free(h);
    json_decref(set);
}

static void test_idp_urls(void **state)
{
    (void)state;
    const char *why;
    assert_true(pt_idp_url_ok("https://login.example.com/tenant", false, &why));
    assert_false(pt_idp_url_ok("http://login.example.com", false, &why));
    assert_false(pt_idp_url_ok("http://login.example.com", true, &why));
    assert_true(pt_idp_url_ok("http://127.0.0.1:8080/realm", true, &why));
    assert_true(pt_idp_url_ok("http://[::1]:8080", true, &why));
    assert_true(pt_idp_url_ok("http://localhost", true, &why));
    assert_false(pt_idp_url_ok("http://127.0.0.1.evil.example", true, &why));
    assert_false(pt_idp_url_ok("http://localhost.evil.example/", true, &why));
    assert_false(pt_idp_url_ok("http://127.0.0.1", false, &why));
    assert_false(pt_idp_url_ok("https://user@login.example.com", false, &why));
    assert_false(pt_idp_url_ok("https://login.example.com/?a=1", false, &why));
    assert_false(pt_idp_url_ok("ftp://login.example.com", false, &why));
    assert_false(pt_idp_url_ok("https:///x", false, &why));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64url),
        cmocka_unit_test(test_keys_and_signatures),
        cmocka_unit_test(test_id_token),
        cmocka_unit_test(test_idp_urls),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
