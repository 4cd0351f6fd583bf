/*
 * pt_tracetoken -- debug tokens and signed trace locations (see pt_tracetoken.h).
 */
#include "http/pt_tracetoken.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>

struct pt_tracetoken_key pt_tracetoken_debug_key, pt_tracetoken_location_key;

void pt_tracetoken_derive(const char *secret, const char *purpose, struct pt_tracetoken_key *out)
{
    unsigned int n = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)purpose, strlen(purpose), out->k,
         &n);
    out->set = n == 32;
}

void pt_tracetoken_set_secret(const char *secret)
{
    if (!secret || !*secret)
        return;
    pt_tracetoken_derive(secret, "portico debug token v1", &pt_tracetoken_debug_key);
    pt_tracetoken_derive(secret, "portico trace location v1", &pt_tracetoken_location_key);
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[in[i] >> 4];
        out[2 * i + 1] = hx[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static void mac(const struct pt_tracetoken_key *key, const void *data, size_t n, char out[65])
{
    unsigned char m[32];
    unsigned int ml = 0;
    HMAC(EVP_sha256(), key->k, 32, data, n, m, &ml);
    hex(m, 32, out);
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64_encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = b64url[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = b64url[v & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64_val(char c)
{
    const char *p = c ? strchr(b64url, c) : NULL;
    return p ? (int)(p - b64url) : -1;
}

/* Decodes unpadded base64url; -1 on a bad character or length, or past max. */
static long b64_decode(const char *in, size_t n, unsigned char *out, size_t max)
{
    if (n % 4 == 1)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        size_t k = PT_MIN(4, n - i);
        for (size_t j = 0; j < 4; j++) {
            int d = j < k ? b64_val(in[i + j]) : 0;
            if (d < 0)
                return -1;
            v = (v << 6) | (uint32_t)d;
        }
        for (size_t j = 0; j + 1 < k; j++) {
            if (o == max)
                return -1;
            out[o++] = (unsigned char)(v >> (16 - 8 * j));
        }
    }
    return (long)o;
}

bool pt_tracetoken_sign(const struct pt_tracetoken_key *key, const char *api, uint64_t expires_ms,
                        char out[PT_TRACETOKEN_MAX])
{
    size_t an = strlen(api);
    if (!key->set || an == 0 || an > PT_TRACETOKEN_API_MAX)
        return false;
    char body[PT_TRACETOKEN_MAX];
    memcpy(body, "v1.", 3);
    size_t n = 3 + b64_encode((const unsigned char *)api, an, body + 3);
    n += (size_t)snprintf(body + n, sizeof(body) - n, ".%llu", (unsigned long long)expires_ms);
    char m[65];
    mac(key, body, n, m);
    snprintf(out, PT_TRACETOKEN_MAX, "%.*s.%s", (int)n, body, m);
    return true;
}

enum pt_tracetoken_verdict pt_tracetoken_verify(const struct pt_tracetoken_key *key, pt_str token, pt_str api,
                                                uint64_t now_ms)
{
    /* v1.<api>.<expiry>.<64 hex> */
    if (!key->set || token.len < 3 + 1 + 1 + 1 + 1 + 64 || token.len >= PT_TRACETOKEN_MAX ||
        memcmp(token.data, "v1.", 3))
        return PT_TRACETOKEN_INVALID;
    size_t signed_len = token.len - 65;
    if (token.data[signed_len] != '.')
        return PT_TRACETOKEN_INVALID;
    char want[65];
    mac(key, token.data, signed_len, want);
    if (CRYPTO_memcmp(want, token.data + signed_len + 1, 64) != 0)
        return PT_TRACETOKEN_INVALID;
    /* genuine: made by this node (so well-formed), read its fields */
    const char *a = token.data + 3, *end = token.data + signed_len;
    const char *dot = memchr(a, '.', (size_t)(end - a));
    if (!dot || dot == a || dot + 1 == end)
        return PT_TRACETOKEN_INVALID;
    uint64_t exp = 0;
    for (const char *p = dot + 1; p < end; p++) {
        if (*p < '0' || *p > '9' || exp > UINT64_MAX / 10 - 10)
            return PT_TRACETOKEN_INVALID;
        exp = exp * 10 + (uint64_t)(*p - '0');
    }
    if (now_ms >= exp)
        return PT_TRACETOKEN_EXPIRED;
    unsigned char id[PT_TRACETOKEN_API_MAX + 4];
    long idn = b64_decode(a, (size_t)(dot - a), id, sizeof(id));
    if (idn < 0)
        return PT_TRACETOKEN_INVALID;
    if ((size_t)idn != api.len || memcmp(id, api.data, api.len))
        return PT_TRACETOKEN_WRONG_API;
    return PT_TRACETOKEN_OK;
}

void pt_tracetoken_location_sig(const struct pt_tracetoken_key *key, const char *id, uint64_t expires_s,
                                char out[65])
{
    char buf[256];
    int n = snprintf(buf, sizeof(buf), "%s|%llu", id, (unsigned long long)expires_s);
    mac(key, buf, (size_t)PT_MIN(n, (int)sizeof(buf) - 1), out);
}

bool pt_tracetoken_location_ok(const struct pt_tracetoken_key *key, const char *id, uint64_t expires_s,
                               const char *sig)
{
    if (!key->set || !sig || strlen(sig) != 64)
        return false;
    char want[65];
    pt_tracetoken_location_sig(key, id, expires_s, want);
    return CRYPTO_memcmp(want, sig, 64) == 0;
}

/* Reads digits with an optional fraction ("1", "0.5", "1,5"): value in thousandths. */
static bool number(const char **pp, uint64_t *milli)
{
    const char *p = *pp;
    uint64_t v = 0;
    int k = 0;
    while (*p >= '0' && *p <= '9') {
        if (v > 1000000000ULL)
            return false;
        v = v * 10 + (uint64_t)(*p++ - '0');
        k++;
    }
    if (!k)
        return false;
    v *= 1000;
    if (*p == '.' || *p == ',') {
        p++;
        uint64_t scale = 100, frac = 0;
        int f = 0;
        while (*p >= '0' && *p <= '9') {
            frac += (uint64_t)(*p++ - '0') * scale;
            scale /= 10;
            f++;
        }
        if (!f)
            return false;
        v += frac;
    }
    *pp = p;
    *milli = v;
    return true;
}

bool pt_tracetoken_duration_ms(const char *s, uint64_t *ms)
{
    if (!s || (*s != 'P' && *s != 'p'))
        return false;
    const char *p = s + 1;
    bool time = false, any = false;
    uint64_t total = 0;
    /* units in order: D, then after T: H, M, S; each at most once */
    int last = -1;
    while (*p) {
        if (*p == 'T' || *p == 't') {
            if (time)
                return false;
            time = true;
            p++;
            if (!*p)
                return false;
            continue;
        }
        uint64_t v;
        if (!number(&p, &v))
            return false;
        int unit;
        uint64_t mult;
        switch (*p) {
        case 'D':
        case 'd':
            unit = 0;
            mult = 86400000;
            break;
        case 'H':
        case 'h':
            unit = 1;
            mult = 3600000;
            break;
        case 'M':
        case 'm':
            unit = 2;
            mult = 60000;
            break;
        case 'S':
        case 's':
            unit = 3;
            mult = 1000;
            break;
        default:
            return false; /* Y, W, or junk */
        }
        if ((unit == 0) == time || unit <= last)
            return false; /* D after T, H/M/S before it, or out of order */
        last = unit;
        p++;
        total += (v / 1000) * mult + (v % 1000) * mult / 1000;
        any = true;
        if (total > 10ULL * 366 * 86400000)
            return false;
    }
    if (!any)
        return false;
    *ms = total;
    return true;
}

const char *pt_tracetoken_api_id(const char *s)
{
    const char *last = NULL;
    for (const char *p = s; (p = strstr(p, "/apis/")); p += 6)
        last = p + 6;
    return last ? last : s;
}
