/*
 * pt_gwtoken -- gateway node tokens (see pt_gwtoken.h).
 */
#include "base/pt_gwtoken.h"
#include "base/pt_civil.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

bool pt_gwtoken_id_ok(pt_str s)
{
    if (!s.data || s.len == 0 || s.len > PT_GWTOKEN_ID_MAX)
        return false;
    bool dots_only = true; /* ".", "..": path segments any proxy or client folds away */
    for (size_t i = 0; i < s.len; i++) {
        char c = s.data[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                  c == '_' || c == '-';
        if (!ok)
            return false;
        dots_only = dots_only && c == '.';
    }
    return !dots_only;
}

static int month_days(int64_t y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* The latest second the stamp can name: 9999-12-31 23:59. */
#define STAMP_MAX_T ((int64_t)253402300740)

bool pt_gwtoken_stamp(int64_t t, char out[13])
{
    if (t < 0 || t > STAMP_MAX_T + 59)
        return false;
    int64_t days = t / 86400, secs = t % 86400, y;
    int m, d;
    pt_civil_from_days(days, &y, &m, &d);
    const int64_t parts[5] = {y, m, d, secs / 3600, secs % 3600 / 60};
    char *o = out;
    for (int i = 0; i < 5; i++)
        for (int64_t div = i == 0 ? 1000 : 10; div; div /= 10)
            *o++ = (char)('0' + parts[i] / div % 10);
    *o = '\0';
    return true;
}

/* 12 digits naming a real minute (years 1970-9999) → Unix seconds. */
static bool stamp_read(const char *s, int64_t *t)
{
    int v[12];
    for (int i = 0; i < 12; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v[i] = s[i] - '0';
    }
    int64_t y = v[0] * 1000 + v[1] * 100 + v[2] * 10 + v[3];
    int mo = v[4] * 10 + v[5], d = v[6] * 10 + v[7], h = v[8] * 10 + v[9], mi = v[10] * 10 + v[11];
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo) || h > 23 || mi > 59)
        return false;
    *t = pt_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60;
    return true;
}

/* HMAC-SHA512(key, id "\n" stamp) */
static bool sign(const char *id, const char *stamp, const char *key, unsigned char out[64])
{
    char msg[PT_GWTOKEN_ID_MAX + 1 + 12 + 1];
    int n = snprintf(msg, sizeof(msg), "%s\n%s", id, stamp);
    if (n <= 0 || (size_t)n >= sizeof(msg))
        return false;
    unsigned int ml = 0;
    return HMAC(EVP_sha512(), key, (int)strlen(key), (const unsigned char *)msg, (size_t)n, out, &ml) &&
           ml == 64;
}

static void b64_encode64(const unsigned char in[64], char out[PT_GWTOKEN_SIG_B64 + 1])
{
    size_t o = 0;
    for (size_t i = 0; i < 64; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < 64)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < 64)
            v |= in[i + 2];
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = i + 1 < 64 ? b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < 64 ? b64[v & 63] : '=';
    }
    out[o] = '\0';
}

static int b64_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Exactly 88 characters: 86 of the alphabet then "==", the last data
   character with its unused low 4 bits zero (one text per signature). */
static bool b64_decode64(const char *s, unsigned char out[64])
{
    if (s[86] != '=' || s[87] != '=')
        return false;
    int vals[86];
    for (int i = 0; i < 86; i++)
        if ((vals[i] = b64_val(s[i])) < 0)
            return false;
    if (vals[85] & 15)
        return false;
    size_t o = 0;
    for (int i = 0; i < 84; i += 4) {
        uint32_t v = (uint32_t)vals[i] << 18 | (uint32_t)vals[i + 1] << 12 | (uint32_t)vals[i + 2] << 6 |
                     (uint32_t)vals[i + 3];
        out[o++] = (unsigned char)(v >> 16);
        out[o++] = (unsigned char)(v >> 8);
        out[o++] = (unsigned char)v;
    }
    out[o] = (unsigned char)(vals[84] << 2 | vals[85] >> 4);
    return o == 63;
}

bool pt_gwtoken_make(const char *id, const char *key, int64_t expiry, char out[PT_GWTOKEN_MAX])
{
    char stamp[13];
    unsigned char mac[64];
    char sig[PT_GWTOKEN_SIG_B64 + 1];
    if (!id || !key || !*key || !pt_gwtoken_id_ok(pt_str_c(id)) || !pt_gwtoken_stamp(expiry, stamp) ||
        !sign(id, stamp, key, mac))
        return false;
    b64_encode64(mac, sig);
    snprintf(out, PT_GWTOKEN_MAX, "GatewayKey %s&%s&%s", id, stamp, sig);
    return true;
}

bool pt_gwtoken_parse(pt_str text, struct pt_gwtoken *out)
{
    const char *p = text.data;
    size_t n = text.data ? text.len : 0;
    /* the scheme, when there: "GatewayKey" and at least one space */
    static const char scheme[] = "GatewayKey";
    const size_t sl = sizeof(scheme) - 1;
    if (n > sl && pt_str_ieq((pt_str){p, sl}, pt_str_c(scheme)) && p[sl] == ' ') {
        p += sl, n -= sl;
        for (int i = 0; n && *p == ' ' && i < 16; i++)
            p++, n--;
    }
    /* id & 12 digits & 88 characters of base64: the id's length is what is left */
    const size_t tail = 1 + 12 + 1 + PT_GWTOKEN_SIG_B64;
    if (n <= tail || n - tail > PT_GWTOKEN_ID_MAX)
        return false;
    size_t idl = n - tail;
    if (!pt_gwtoken_id_ok((pt_str){p, idl}) || p[idl] != '&' || p[idl + 13] != '&')
        return false;
    struct pt_gwtoken t;
    memcpy(t.id, p, idl);
    t.id[idl] = '\0';
    memcpy(t.stamp, p + idl + 1, 12);
    t.stamp[12] = '\0';
    memcpy(t.sig_b64, p + idl + 14, PT_GWTOKEN_SIG_B64);
    t.sig_b64[PT_GWTOKEN_SIG_B64] = '\0';
    if (!stamp_read(t.stamp, &t.expiry) || !b64_decode64(t.sig_b64, t.sig))
        return false;
    *out = t;
    return true;
}

bool pt_gwtoken_signed_by(const struct pt_gwtoken *t, const char *key)
{
    unsigned char mac[64];
    if (!t || !key || !*key || !sign(t->id, t->stamp, key, mac))
        return false;
    return CRYPTO_memcmp(mac, t->sig, 64) == 0;
}

bool pt_gwtoken_expired(const struct pt_gwtoken *t, int64_t now)
{
    return now >= t->expiry;
}
