/*
 * pt_jwt -- the pure pieces of JSON Web Tokens: base64url, reading public
 * keys (RSA n/e, EC x/y, PEM, a JWK), refusing keys of unreasonable sizes,
 * splitting a compact JWS and checking one signature.
 *
 * Depends only on libc, OpenSSL and jansson, so the access family
 * (plugins/access: validate-jwt and its openid-config key sets) compiles the
 * same source as the core (the portal's OpenID Connect sign-in).  Nothing
 * here reads the clock or the network: the callers decide which keys to try
 * and which claims to accept.
 */
#ifndef PT_JWT_H
#define PT_JWT_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>

/* base64 or base64url, padding optional; malloc'd, NULL when malformed. */
unsigned char *pt_jwt_b64_decode(const char *s, size_t n, size_t *outlen);
/* base64url without padding of n bytes into out (size >= 4 * n / 3 + 2). */
void pt_jwt_b64url_encode(const unsigned char *in, size_t n, char *out);

/* An RSA public key from base64url n and e; NULL when unreadable. */
EVP_PKEY *pt_jwt_rsa_from_ne(const char *n64, const char *e64);
/* An EC public key on crv ("P-256", "P-384") from base64url x and y. */
EVP_PKEY *pt_jwt_ec_from_xy(const char *crv, const char *x64, const char *y64);
/* A public key from a PEM public key or certificate; NULL when unreadable. */
EVP_PKEY *pt_jwt_key_from_pem(const char *pem);
/* The public key of one JWK (kty RSA with n/e, or EC with crv/x/y); NULL
   for any other or an unreadable one. */
EVP_PKEY *pt_jwt_key_from_jwk(const json_t *jwk);
/* Why a key is not used (its type or size), or NULL when it is reasonable:
   RSA of 2048 to 8192 bits with an odd exponent of at most 32 bits, EC on
   P-256, P-384 or P-521. */
const char *pt_jwt_key_unreasonable(EVP_PKEY *k);

/* A compact JWS split and decoded: header and claims (objects; a member
   named twice is refused), the signature's bytes and the length of the
   signed part (header "." payload).  false when malformed (three parts,
   base64url, JSON objects, an "alg" string); free with pt_jwt_parts_free. */
struct pt_jwt_parts {
    json_t *header, *claims;
    unsigned char *sig;
    size_t sig_len;
    size_t signed_len;
    const char *alg; /* borrowed from header */
};
bool pt_jwt_split(const char *tok, size_t len, struct pt_jwt_parts *p);
void pt_jwt_parts_free(struct pt_jwt_parts *p);

/* Does the signature over data verify with this key under alg (HS256/384/512
   with secret; RS256/384/512, PS256/384/512 with an RSA pkey; ES256/384/512
   with an EC pkey; JWS's r||s form)?  1 yes, 0 no, -1: the key is not of the
   alg's family (or alg is none or unknown), so it was not tried. */
int pt_jwt_verify(const char *alg, const unsigned char *secret, size_t secret_len, EVP_PKEY *pkey,
                  const unsigned char *data, size_t dlen, const unsigned char *sig, size_t slen);

#endif
