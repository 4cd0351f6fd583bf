/*
 * validate_jwt.c -- validate-jwt: a small verifier on OpenSSL EVP.
 *
 * Compact JWS only (an encrypted token is refused), HS256/384/512 with
 * symmetric keys, RS256/384/512 and PS256 with RSA keys (n/e or a PEM
 * certificate or public key), ES256/384 with EC keys (PEM).  "alg: none"
 * is always refused, and a key is only ever used with its own family: an
 * HS token is never checked with the bytes of an RSA public key (key-type
 * confusion).  Keys are read and signatures checked by core/base/pt_jwt.c
 * (shared with the portal's sign-in); identity providers' key sets are
 * fetched by oidc.c.  Tokens and claims are read with jansson.
 */
#include "access.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define JWT_KEYS_TRIED 16 /* keys a token is checked against at most (see oidc.c) */

static const char *const claim_match[] = {"all", "any", NULL};

static const struct pt_attr_def jwt_key_attrs[] = {
    {"value", PT_ATTR_STRING, PT_ATTR_SCALAR, NULL, NULL, NULL, 0, 0, "a symmetric key, base64"},
    {"id", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "matched with the token's kid"},
    {"n", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "RSA modulus, base64url"},
    {"e", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "RSA exponent, base64url"},
    {"certificate", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "a PEM certificate or public key (RSA or EC)"},
    {0},
};
static const struct pt_attr_def jwt_keys_attrs[] = {
    {"key", PT_ATTR_ELEMENT, PT_ATTR_MULTI | PT_ATTR_SCALAR, NULL, NULL, jwt_key_attrs, 0, 0,
     "a signing key"},
    {0},
};
static const struct pt_attr_def jwt_oidc_attrs[] = {
    {"url", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_SCALAR, NULL, NULL, NULL, 0, 0,
     "the OpenID Connect metadata (.../.well-known/openid-configuration)"},
    {0},
};
static const struct pt_attr_def jwt_aud_attrs[] = {
    {"audience", PT_ATTR_STRING, PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0, "an accepted aud"},
    {0},
};
static const struct pt_attr_def jwt_iss_attrs[] = {
    {"issuer", PT_ATTR_STRING, PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0, "an accepted iss"},
    {0},
};
static const struct pt_attr_def jwt_claim_attrs[] = {
    {"name", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "the claim"},
    {"match", PT_ATTR_ENUM, 0, "all", claim_match, NULL, 0, 0, "all values must be there, or any one"},
    {"separator", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "splits a string claim into values (\" \" for scope)"},
    {"value", PT_ATTR_STRING, PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0, "accepted values; none = present"},
    {0},
};
static const struct pt_attr_def jwt_claims_attrs[] = {
    {"claim", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, jwt_claim_attrs, 0, 0, "a required claim"},
    {0},
};

const struct pt_attr_def validate_jwt_attrs[] = {
    {"header-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "the header carrying the token (default Authorization)"},
    {"query-parameter-name", PT_ATTR_STRING, PT_ATTR_OR, NULL, NULL, NULL, 0, 0,
     "the query parameter carrying the token"},
    {"token-value", PT_ATTR_STRING, PT_ATTR_EXPR | PT_ATTR_OR, NULL, NULL, NULL, 0, 0,
     "the token itself (an expression)"},
    {"require-scheme", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "the scheme before the token (Bearer)"},
    {"failed-validation-httpcode", PT_ATTR_INT, 0, "401", NULL, NULL, 200, 599, "status of a refusal"},
    {"failed-validation-error-message", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "message of every refusal (default: one per failure)"},
    {"require-expiration-time", PT_ATTR_BOOL, 0, "true", NULL, NULL, 0, 0, "refuse a token without exp"},
    {"require-signed-tokens", PT_ATTR_BOOL, 0, "true", NULL, NULL, 0, 0,
     "refuse unsigned tokens (alg none is refused regardless)"},
    {"clock-skew", PT_ATTR_STRING, 0, "0", NULL, NULL, 0, 0,
     "tolerance on exp and nbf: seconds, or a timespan such as 00:05:00 (at most a day)"},
    {"output-token-variable-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "variable receiving the token's claims (JSON) once valid"},
    {"openid-config", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, jwt_oidc_attrs, 0, 0,
     "an identity provider whose published keys (jwks_uri) sign tokens"},
    {"issuer-signing-keys", PT_ATTR_ELEMENT, 0, NULL, NULL, jwt_keys_attrs, 0, 0,
     "the keys tokens may be signed with"},
    {"audiences", PT_ATTR_ELEMENT, 0, NULL, NULL, jwt_aud_attrs, 0, 0, "accepted audiences (any one)"},
    {"issuers", PT_ATTR_ELEMENT, 0, NULL, NULL, jwt_iss_attrs, 0, 0, "accepted issuers (any one)"},
    {"required-claims", PT_ATTR_ELEMENT, 0, NULL, NULL, jwt_claims_attrs, 0, 0, "claims the token must have"},
    {0},
};

struct jwt_claim {
    const char *name, *sep;
    bool any;
    const char **values;
    int nvalues;
};

struct jwt {
    const char *header, *query, *scheme, *msg, *out_var;
    pt_value *token;
    int code;
    bool require_exp, require_signed;
    int64_t skew;
    struct jwt_key *keys;
    int nkeys;
    const char **auds, **isss;
    int naud, niss;
    struct jwt_claim *claims;
    int nclaims;
    struct oidc **oidc;
    int noidc;
};

static const char **literal_list(const struct pt_api *api, pt_compile *c, pt_element *e, const char *name,
                                 int *n)
{
    pt_value **vals;
    int cnt = e ? api->elem_values(e, name, &vals) : 0;
    const char **out = api->compile_alloc(c, sizeof(char *) * (size_t)(cnt ? cnt : 1));
    *n = 0;
    for (int i = 0; i < cnt; i++) {
        pt_bytes b;
        if (api->eval(NULL, vals[i], &b) != 0)
            continue;
        char *s = api->compile_alloc(c, b.len + 1);
        memcpy(s, b.data, b.len);
        out[(*n)++] = s;
    }
    return out;
}

void validate_jwt_free(void *inst)
{
    struct jwt *j = inst;
    for (int i = 0; j && i < j->nkeys; i++) {
        free(j->keys[i].secret);
        EVP_PKEY_free(j->keys[i].pkey);
    }
}

/* "90" (seconds) or APIM's timespan "[d.]hh:mm:ss"; at most a day. */
static bool parse_timespan(const char *s, int64_t *out)
{
    long long d = 0, h, m, sec;
    int n = 0;
    if (!strchr(s, ':')) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || *end || v < 0 || v > 86400)
            return false;
        *out = v;
        return true;
    }
    if (strchr(s, '.') && strchr(s, '.') < strchr(s, ':')) {
        if (sscanf(s, "%lld.%lld:%lld:%lld%n", &d, &h, &m, &sec, &n) != 4)
            return false;
    } else if (sscanf(s, "%lld:%lld:%lld%n", &h, &m, &sec, &n) != 3)
        return false;
    if (s[n] || d < 0 || h < 0 || h > 23 || m < 0 || m > 59 || sec < 0 || sec > 59)
        return false;
    *out = d * 86400 + h * 3600 + m * 60 + sec;
    return *out <= 86400;
}

int validate_jwt_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct jwt *j = api->compile_alloc(c, sizeof(*j));
    j->header = api->attr_literal(c, "header-name");
    j->query = api->attr_literal(c, "query-parameter-name");
    j->token = api->attr_value(c, "token-value");
    j->scheme = api->attr_literal(c, "require-scheme");
    j->msg = api->attr_literal(c, "failed-validation-error-message");
    j->out_var = api->attr_literal(c, "output-token-variable-name");
    j->code = (int)api->attr_int(c, "failed-validation-httpcode", 401);
    j->require_exp = api->attr_bool(c, "require-expiration-time", 1);
    j->require_signed = api->attr_bool(c, "require-signed-tokens", 1);
    const char *skew = api->attr_literal(c, "clock-skew");
    if (skew && !parse_timespan(skew, &j->skew)) {
        api->compile_error(c, "clock-skew",
                           "'%s' is neither seconds nor a timespan [d.]hh:mm:ss of at most a day", skew);
        return -1;
    }
    if ((j->header != NULL) + (j->query != NULL) + (j->token != NULL) > 1) {
        api->compile_error(c, NULL, "give one of header-name, query-parameter-name and token-value");
        return -1;
    }
    if (!j->header && !j->query && !j->token)
        j->header = "Authorization";
    *instance = j;
    pt_element **e, **keys;
    int nk = 0;
    if (api->attr_elements(c, "issuer-signing-keys", &e) > 0)
        nk = api->elem_elements(e[0], "key", &keys);
    j->keys = api->compile_alloc(c, sizeof(*j->keys) * (size_t)(nk ? nk : 1));
    for (int i = 0; i < nk; i++) {
        struct jwt_key *k = &j->keys[j->nkeys++];
        k->id = api->elem_literal(keys[i], "id");
        const char *v = api->elem_literal(keys[i], "value"), *n = api->elem_literal(keys[i], "n"),
                   *ex = api->elem_literal(keys[i], "e"), *pem = api->elem_literal(keys[i], "certificate");
        if (v && *v) {
            k->secret = pt_jwt_b64_decode(v, strlen(v), &k->secret_len);
            if (!k->secret || k->secret_len < 16) {
                api->compile_error(c, "issuer-signing-keys",
                                   "a symmetric key must be base64 of at least 16 bytes");
                return -1;
            }
        } else if (n && ex) {
            if (!(k->pkey = pt_jwt_rsa_from_ne(n, ex))) {
                api->compile_error(c, "issuer-signing-keys", "the RSA key (n, e) cannot be read");
                return -1;
            }
        } else if (pem) {
            if (!(k->pkey = pt_jwt_key_from_pem(pem))) {
                api->compile_error(c, "issuer-signing-keys",
                                   "the certificate or public key cannot be read (PEM)");
                return -1;
            }
        } else {
            api->compile_error(c, "issuer-signing-keys", "a key needs value, n and e, or certificate");
            return -1;
        }
        const char *bad = k->pkey ? pt_jwt_key_unreasonable(k->pkey) : NULL;
        if (bad) {
            api->compile_error(c, "issuer-signing-keys", bad);
            return -1;
        }
    }
    pt_element **oc;
    int noc = api->attr_elements(c, "openid-config", &oc);
    j->oidc = api->compile_alloc(c, sizeof(*j->oidc) * (size_t)(noc ? noc : 1));
    for (int i = 0; i < noc; i++) {
        const char *url = api->elem_literal(oc[i], "url");
        if (!url || (strncmp(url, "https://", 8) && strncmp(url, "http://", 7))) {
            api->compile_error(c, "openid-config", "url must be an http(s) URL");
            return -1;
        }
        j->oidc[j->noidc++] = oidc_get(url);
    }
    if (api->attr_elements(c, "audiences", &e) > 0)
        j->auds = literal_list(api, c, e[0], "audience", &j->naud);
    if (api->attr_elements(c, "issuers", &e) > 0)
        j->isss = literal_list(api, c, e[0], "issuer", &j->niss);
    if (api->attr_elements(c, "required-claims", &e) > 0) {
        pt_element **cl;
        int ncl = api->elem_elements(e[0], "claim", &cl);
        j->claims = api->compile_alloc(c, sizeof(*j->claims) * (size_t)(ncl ? ncl : 1));
        for (int i = 0; i < ncl; i++) {
            struct jwt_claim *x = &j->claims[j->nclaims++];
            x->name = api->elem_literal(cl[i], "name");
            const char *m = api->elem_literal(cl[i], "match");
            x->any = m && !strcmp(m, "any");
            x->sep = api->elem_literal(cl[i], "separator");
            x->values = literal_list(api, c, cl[i], "value", &x->nvalues);
        }
    }
    return 0;
}

static pt_status jwt_refuse(const struct pt_api *api, pt_call *call, const struct jwt *j, const char *reason,
                            const char *msg)
{
    return api->fail(call, j->code, reason, j->msg && *j->msg ? j->msg : msg);
}

/* Does the signature verify with this key?  -1: the key is not of the alg's family. */
static int jwt_verify(const char *alg, const struct jwt_key *k, const unsigned char *data, size_t dlen,
                      const unsigned char *sig, size_t slen)
{
    return pt_jwt_verify(alg, k->secret, k->secret_len, k->pkey, data, dlen, sig, slen);
}

static bool json_has_value(json_t *v, const char *want, const char *sep)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!sep || !*sep)
            return !strcmp(s, want);
        size_t wl = strlen(want), sl = strlen(sep);
        for (const char *p = s;;) {
            const char *q = strstr(p, sep);
            size_t len = q ? (size_t)(q - p) : strlen(p);
            if (len == wl && !memcmp(p, want, wl))
                return true;
            if (!q)
                return false;
            p = q + sl;
        }
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            if (json_has_value(x, want, sep))
                return true;
        }
        return false;
    }
    if (json_is_boolean(v))
        return !strcmp(want, json_is_true(v) ? "true" : "false");
    if (json_is_integer(v)) {
        char b[32];
        snprintf(b, sizeof(b), "%lld", (long long)json_integer_value(v));
        return !strcmp(b, want);
    }
    return false;
}

struct jwt_wait {
    int64_t deadline;
    const struct jwt *j;
};

/* The poll timer: run the validation again, and resume unless it waits on. */
static void jwt_poll(pt_call *call, void *arg)
{
    struct jwt_wait *w = arg;
    pt_status st = validate_jwt_run(access_api, call, (void *)w->j);
    if (st != PT_AGAIN)
        access_api->resume(call, st);
}

pt_status validate_jwt_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct jwt *j = inst;
    pt_bytes tok = {"", 0};
    int st;
    if (j->token) {
        if ((st = ptl_eval(api, call, j->token, &tok)))
            return (pt_status)st;
    } else if (j->query) {
        if (api->query_param(call, (pt_bytes){j->query, strlen(j->query)}, &tok) != 0)
            tok = (pt_bytes){"", 0};
    } else if (api->header_get(call, PT_MSG_REQUEST, (pt_bytes){j->header, strlen(j->header)}, &tok, 1) <= 0)
        tok = (pt_bytes){"", 0};
    if (j->header && tok.len) {
        const char *scheme = j->scheme ? j->scheme : "Bearer";
        size_t sl = strlen(scheme);
        if (tok.len > sl + 1 && !strncasecmp(tok.data, scheme, sl) && tok.data[sl] == ' ') {
            tok.data += sl + 1;
            tok.len -= sl + 1;
        } else if (j->scheme && !strcasecmp(j->header, "Authorization"))
            tok.len = 0; /* the scheme is required (APIM: of the Authorization header only) */
    }
    while (tok.len && tok.data[0] == ' ') {
        tok.data++;
        tok.len--;
    }
    if (!tok.len)
        return jwt_refuse(api, call, j, "TokenNotPresent", "JWT not present.");
    const char *d1 = memchr(tok.data, '.', tok.len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', tok.len - (size_t)(d1 + 1 - tok.data)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', tok.len - (size_t)(d2 + 1 - tok.data)))
        return jwt_refuse(api, call, j, "JwtInvalid", "JWT is not a signed compact token.");
    size_t hl, pl, sl;
    unsigned char *h = pt_jwt_b64_decode(tok.data, (size_t)(d1 - tok.data), &hl);
    unsigned char *pb = pt_jwt_b64_decode(d1 + 1, (size_t)(d2 - d1 - 1), &pl);
    unsigned char *sig = pt_jwt_b64_decode(d2 + 1, tok.len - (size_t)(d2 + 1 - tok.data), &sl);
    /* a member named twice is refused (RFC 7519 section 4: parsers must not pick one) */
    json_t *hdr = h ? json_loadb((const char *)h, hl, JSON_REJECT_DUPLICATES, NULL) : NULL;
    json_t *claims = pb ? json_loadb((const char *)pb, pl, JSON_REJECT_DUPLICATES, NULL) : NULL;
    pt_status result = PT_OK;
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    if (!json_is_object(hdr) || !json_is_object(claims) || !sig || !alg) {
        result = jwt_refuse(api, call, j, "JwtInvalid", "JWT is malformed.");
        goto out;
    }
    if (json_object_get(hdr, "crit")) {
        /* RFC 7515 section 4.1.11: extensions marked critical must be understood; none are */
        result = jwt_refuse(api, call, j, "JwtInvalid",
                            "JWT header lists critical extensions that are not supported.");
        goto out;
    }
    if (!strcmp(alg, "none") || !sl) {
        result = jwt_refuse(api, call, j, "TokenSignatureInvalid", "JWT is not signed.");
        goto out;
    }
    /* the signature: keys with the token's kid first, then keys without an id;
       inline keys, then the providers' */
    const char *kid = json_string_value(json_object_get(hdr, "kid"));
    int tried = 0, valid = 0;
    struct keyset *sets[9] = {0};
    int nsets = 0;
    bool waiting = false;
    for (int i = 0; i < j->noidc && nsets < 8; i++) {
        bool never;
        struct keyset *ks = oidc_keys(j->oidc[i], &never);
        if (ks)
            sets[nsets++] = ks;
        else if (never)
            waiting = true;
    }
    for (int pass = 0; pass < 2 && !valid; pass++)
        for (int si = -1; si < nsets && !valid; si++) {
            const struct jwt_key *keys = si < 0 ? j->keys : sets[si]->keys;
            int nk = si < 0 ? j->nkeys : sets[si]->n;
            for (int i = 0; i < nk && !valid; i++) {
                const struct jwt_key *k = &keys[i];
                bool match = kid && k->id && !strcmp(kid, k->id);
                if (pass == 0 ? !match : (k->id && kid))
                    continue;
                if (tried == JWT_KEYS_TRIED)
                    break; /* a token is checked against a bounded number of keys */
                int r = jwt_verify(alg, k, (const unsigned char *)tok.data, (size_t)(d2 - tok.data), sig, sl);
                if (r >= 0) {
                    tried++;
                    valid = r;
                }
            }
        }
    for (int i = 0; i < nsets; i++)
        oidc_keyset_unref(sets[i]);
    if (!valid && waiting) {
        /* a provider not fetched yet: poll for its keys without holding the worker */
        void **slot = api->call_state(call);
        struct jwt_wait *w = *slot;
        if (!w) {
            w = api->alloc(call, sizeof(*w));
            w->deadline = oidc_now_ms() + 5000;
            w->j = j;
            *slot = w;
        }
        if (oidc_now_ms() < w->deadline) {
            result = PT_AGAIN;
            api->timer_start(call, 50, jwt_poll, w);
            goto out;
        }
    }
    if (!valid && kid && tried == 0)
        for (int i = 0; i < j->noidc; i++)
            oidc_want(j->oidc[i]); /* an unknown kid: the provider may have rotated its keys */
    if (!valid) {
        result = tried
                     ? jwt_refuse(api, call, j, "TokenSignatureInvalid", "JWT signature is invalid.")
                     : jwt_refuse(api, call, j, "TokenSignatureKeyNotFound", "JWT signature key not found.");
        goto out;
    }
    time_t now = time(NULL);
    json_t *exp = json_object_get(claims, "exp"), *nbf = json_object_get(claims, "nbf");
    if (!json_is_number(exp) && j->require_exp) {
        result = jwt_refuse(api, call, j, "JwtInvalid", "JWT is missing expiration time.");
        goto out;
    }
    if (json_is_number(exp) && (double)now > json_number_value(exp) + (double)j->skew) {
        result = jwt_refuse(api, call, j, "TokenExpired", "JWT has expired.");
        goto out;
    }
    if (json_is_number(nbf) && (double)now + (double)j->skew < json_number_value(nbf)) {
        result = jwt_refuse(api, call, j, "JwtInvalid", "JWT is not valid yet.");
        goto out;
    }
    if (j->naud) {
        bool ok = false;
        for (int i = 0; i < j->naud && !ok; i++)
            ok = json_has_value(json_object_get(claims, "aud"), j->auds[i], NULL);
        if (!ok) {
            result = jwt_refuse(api, call, j, "TokenAudienceNotAllowed", "JWT audience is not allowed.");
            goto out;
        }
    }
    if (j->niss) {
        bool ok = false;
        for (int i = 0; i < j->niss && !ok; i++)
            ok = json_has_value(json_object_get(claims, "iss"), j->isss[i], NULL);
        if (!ok) {
            result = jwt_refuse(api, call, j, "TokenIssuerNotAllowed", "JWT issuer is not allowed.");
            goto out;
        }
    }
    for (int i = 0; i < j->nclaims; i++) {
        const struct jwt_claim *x = &j->claims[i];
        json_t *v = json_object_get(claims, x->name);
        if (!v) {
            char m[300];
            snprintf(m, sizeof(m), "JWT claim '%s' is missing.", x->name);
            result = jwt_refuse(api, call, j, "TokenClaimNotFound", m);
            goto out;
        }
        int hits = 0;
        for (int k = 0; k < x->nvalues; k++)
            hits += json_has_value(v, x->values[k], x->sep);
        if (x->nvalues && (x->any ? hits == 0 : hits < x->nvalues)) {
            char m[300];
            snprintf(m, sizeof(m), "JWT claim '%s' has a value that is not allowed.", x->name);
            result = jwt_refuse(api, call, j, "TokenClaimValueNotAllowed", m);
            goto out;
        }
    }
    if (j->out_var && *j->out_var) {
        char *txt = json_dumps(claims, JSON_COMPACT);
        if (txt) {
            api->var_set(call, (pt_bytes){j->out_var, strlen(j->out_var)}, (pt_bytes){txt, strlen(txt)});
            free(txt);
        }
    }
out:
    json_decref(hdr);
    json_decref(claims);
    free(h);
    free(pb);
    free(sig);
    return result;
}
