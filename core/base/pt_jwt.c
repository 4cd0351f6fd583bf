/*
 * pt_jwt -- see pt_jwt.h.  Moved here from plugins/access (oidc.c and
 * validate_jwt.c) so that the portal's OpenID Connect sign-in checks
 * id_tokens with the same code as the validate-jwt policy.
 */
#include "pt_jwt.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- base64url */

unsigned char *pt_jwt_b64_decode(const char *s, size_t n, size_t *outlen)
{
    while (n && s[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return NULL;
    size_t padded = (n + 3) / 4 * 4;
    char *std = malloc(padded + 1);
    if (!std)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
              c == '/' || c == '-' || c == '_')) {
            free(std);
            return NULL;
        }
        std[i] = c == '-' ? '+' : c == '_' ? '/' : c; /* both alphabets: OpenSSL decodes the standard one */
    }
    for (size_t i = n; i < padded; i++)
        std[i] = '=';
    std[padded] = '\0';
    unsigned char *out = malloc(padded / 4 * 3 + 1);
    int len = out && padded ? EVP_DecodeBlock(out, (const unsigned char *)std, (int)padded) : 0;
    free(std);
    if (!out || len < 0) {
        free(out);
        return NULL;
    }
    *outlen = (size_t)len - (padded - n); /* EVP_DecodeBlock counts the padding as zero bytes */
    return out;
}

void pt_jwt_b64url_encode(const unsigned char *in, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v =
            (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = abc[v >> 6 & 63];
        if (i + 2 < n)
            out[o++] = abc[v & 63];
    }
    out[o] = '\0';
}

/* ------------------------------------------------------------------ keys */

EVP_PKEY *pt_jwt_rsa_from_ne(const char *n64, const char *e64)
{
    size_t nl = 0, el = 0;
    unsigned char *n = pt_jwt_b64_decode(n64, strlen(n64), &nl),
                  *e = pt_jwt_b64_decode(e64, strlen(e64), &el);
    EVP_PKEY *pkey = NULL;
    if (n && e && nl && el) {
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
        OSSL_PARAM_BLD_push_BN(bld, "n", bn);
        OSSL_PARAM_BLD_push_BN(bld, "e", be);
        OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
        if (ctx && params && EVP_PKEY_fromdata_init(ctx) == 1)
            EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
        EVP_PKEY_CTX_free(ctx);
        OSSL_PARAM_free(params);
        OSSL_PARAM_BLD_free(bld);
        BN_free(bn);
        BN_free(be);
    }
    free(n);
    free(e);
    ERR_clear_error();
    return pkey;
}

EVP_PKEY *pt_jwt_ec_from_xy(const char *crv, const char *x64, const char *y64)
{
    size_t xl = 0, yl = 0;
    unsigned char *x = pt_jwt_b64_decode(x64, strlen(x64), &xl),
                  *y = pt_jwt_b64_decode(y64, strlen(y64), &yl);
    const char *group = !strcmp(crv, "P-256") ? "prime256v1" : !strcmp(crv, "P-384") ? "secp384r1" : NULL;
    EVP_PKEY *pkey = NULL;
    if (x && y && group && xl == yl && xl <= 66) {
        unsigned char pub[1 + 2 * 66];
        pub[0] = 4; /* uncompressed point */
        memcpy(pub + 1, x, xl);
        memcpy(pub + 1 + xl, y, yl);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        OSSL_PARAM_BLD_push_utf8_string(bld, "group", group, 0);
        OSSL_PARAM_BLD_push_octet_string(bld, "pub", pub, 1 + 2 * xl);
        OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        if (ctx && params && EVP_PKEY_fromdata_init(ctx) == 1)
            EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
        EVP_PKEY_CTX_free(ctx);
        OSSL_PARAM_free(params);
        OSSL_PARAM_BLD_free(bld);
    }
    free(x);
    free(y);
    ERR_clear_error();
    return pkey;
}

EVP_PKEY *pt_jwt_key_from_pem(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
    if (!k) {
        BIO_free(b);
        b = BIO_new_mem_buf(pem, -1);
        X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (x) {
            k = X509_get_pubkey(x);
            X509_free(x);
        }
    }
    BIO_free(b);
    ERR_clear_error();
    return k;
}

EVP_PKEY *pt_jwt_key_from_jwk(const json_t *jwk)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    const char *n = json_string_value(json_object_get(jwk, "n")),
               *e = json_string_value(json_object_get(jwk, "e"));
    const char *x = json_string_value(json_object_get(jwk, "x")),
               *y = json_string_value(json_object_get(jwk, "y"));
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    if (kty && !strcmp(kty, "RSA") && n && e)
        return pt_jwt_rsa_from_ne(n, e);
    if (kty && !strcmp(kty, "EC") && x && y && crv)
        return pt_jwt_ec_from_xy(crv, x, y);
    return NULL;
}

const char *pt_jwt_key_unreasonable(EVP_PKEY *k)
{
    if (EVP_PKEY_is_a(k, "RSA")) {
        int bits = EVP_PKEY_get_bits(k);
        if (bits < 2048 || bits > 8192)
            return "an RSA key must have 2048 to 8192 bits";
        BIGNUM *e = NULL;
        if (!EVP_PKEY_get_bn_param(k, "e", &e))
            return "an RSA key without a public exponent";
        int ebits = BN_num_bits(e);
        bool odd = BN_is_odd(e);
        BN_free(e);
        if (ebits > 32 || ebits < 2 || !odd)
            return "an RSA public exponent must be odd and at most 32 bits";
        return NULL;
    }
    if (EVP_PKEY_is_a(k, "EC")) {
        int bits = EVP_PKEY_get_bits(k);
        if (bits != 256 && bits != 384 && bits != 521)
            return "an EC key must be on P-256, P-384 or P-521";
        return NULL;
    }
    return "only RSA and EC keys are used";
}

/* ------------------------------------------------------------- compact JWS */

void pt_jwt_parts_free(struct pt_jwt_parts *p)
{
    json_decref(p->header);
    json_decref(p->claims);
    free(p->sig);
    memset(p, 0, sizeof(*p));
}

static json_t *decoded_object(const char *s, size_t n)
{
    size_t len = 0;
    unsigned char *b = pt_jwt_b64_decode(s, n, &len);
    /* a member named twice is refused (RFC 7519 section 4: parsers must not pick one) */
    json_t *j = b ? json_loadb((const char *)b, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    free(b);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

bool pt_jwt_split(const char *tok, size_t len, struct pt_jwt_parts *p)
{
    memset(p, 0, sizeof(*p));
    const char *d1 = memchr(tok, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)))
        return false;
    p->header = decoded_object(tok, (size_t)(d1 - tok));
    p->claims = decoded_object(d1 + 1, (size_t)(d2 - d1 - 1));
    p->sig = pt_jwt_b64_decode(d2 + 1, len - (size_t)(d2 + 1 - tok), &p->sig_len);
    p->signed_len = (size_t)(d2 - tok);
    p->alg = json_string_value(json_object_get(p->header, "alg"));
    if (!p->header || !p->claims || !p->sig || !p->alg) {
        pt_jwt_parts_free(p);
        return false;
    }
    return true;
}

int pt_jwt_verify(const char *alg, const unsigned char *secret, size_t secret_len, EVP_PKEY *pkey,
                  const unsigned char *data, size_t dlen, const unsigned char *sig, size_t slen)
{
    if (!alg || strlen(alg) != 5)
        return -1; /* "none" among them: never a family of any key */
    int bits = atoi(alg + 2);
    const EVP_MD *md = bits == 256   ? EVP_sha256()
                       : bits == 384 ? EVP_sha384()
                       : bits == 512 ? EVP_sha512()
                                     : NULL;
    if (!md)
        return -1;
    if (!strncmp(alg, "HS", 2)) {
        if (!secret)
            return -1;
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int ml = 0;
        if (!HMAC(md, secret, (int)secret_len, data, dlen, mac, &ml))
            return 0;
        return ml == slen && CRYPTO_memcmp(mac, sig, ml) == 0;
    }
    if (!pkey)
        return -1;
    int type = EVP_PKEY_get_base_id(pkey);
    bool rsa = !strncmp(alg, "RS", 2) || !strncmp(alg, "PS", 2), ec = !strncmp(alg, "ES", 2);
    /* a key is used with its own family only (no key-type confusion) */
    if ((rsa && type != EVP_PKEY_RSA) || (ec && type != EVP_PKEY_EC) || (!rsa && !ec))
        return -1;
    unsigned char *der = NULL;
    if (ec) {
        /* JWS carries r || s; EVP wants DER */
        size_t half = bits == 256 ? 32 : bits == 384 ? 48 : 66;
        if (slen != 2 * half)
            return 0;
        ECDSA_SIG *es = ECDSA_SIG_new();
        ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)half, NULL), BN_bin2bn(sig + half, (int)half, NULL));
        int l = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
        if (l <= 0)
            return 0;
        sig = der;
        slen = (size_t)l;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    int ok = ctx && EVP_DigestVerifyInit(ctx, &pctx, md, NULL, pkey) == 1;
    if (ok && !strncmp(alg, "PS", 2))
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
    ok = ok && EVP_DigestVerify(ctx, sig, slen, data, dlen) == 1;
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    ERR_clear_error();
    return ok;
}
