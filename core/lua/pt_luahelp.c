/*
 * pt_luahelp -- the helper library that policy expressions and Lua policies
 * see: json, base64, base64url, url, crypto, jwt and basic, as one table.
 * json is pt_luajson.c's; the rest is here.
 *
 * The rule in pt_luahelp_int.h holds here too: no C-owned heap memory is
 * alive across a Lua API call, so OpenSSL one-shot calls finish (freeing
 * their own contexts) before anything is pushed.
 *
 * Work is bounded: string arguments above PT_LUAHELP_MAX_INPUT raise, and
 * crypto.random gives at most 1024 bytes.  Tables are read raw (no
 * metamethods).
 */
#include "config.h"

#include "lua/pt_luahelp.h"
#include "lua/pt_luahelp_int.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define LH_MAX_RANDOM 1024

/* ------------------------------------------------------------------ */
/* base64 and base64url                                                */
/* ------------------------------------------------------------------ */

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64_encode(const unsigned char *in, size_t n, char *out, bool url)
{
    const char *a = url ? b64_url : b64_std;
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
        out[o++] = a[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = a[(v >> 6) & 63];
        else if (!url)
            out[o++] = '=';
        if (!url)
            out[o++] = '=';
    }
    return o;
}

static int b64_val(unsigned char c, bool url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

/*
 * Decodes into out (room for n / 4 * 3 + 3 bytes).  Padding is optional but,
 * when present, must complete the last group.  Returns false on bad input.
 */
static bool b64_decode(const char *in, size_t n, unsigned char *out, size_t *outn, bool url)
{
    size_t m = n;
    while (m > 0 && n - m < 2 && in[m - 1] == '=')
        m--;
    if ((m < n && n % 4 != 0) || m % 4 == 1)
        return false;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < m; i++) {
        int v = b64_val((unsigned char)in[i], url);
        if (v < 0)
            return false;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *outn = o;
    return true;
}

static int b64_encode_fn(lua_State *L, bool url)
{
    size_t n;
    const char *s = check_input(L, 1, &n);
    char *out = lua_newuserdata(L, (n + 2) / 3 * 4 + 1);
    lua_pushlstring(L, out, b64_encode((const unsigned char *)s, n, out, url));
    return 1;
}

static int b64_decode_fn(lua_State *L, bool url)
{
    size_t n, on;
    const char *s = check_input(L, 1, &n);
    unsigned char *out = lua_newuserdata(L, n / 4 * 3 + 3);
    if (b64_decode(s, n, out, &on, url))
        lua_pushlstring(L, (const char *)out, on);
    else
        lua_pushnil(L);
    return 1;
}

static int l_b64_encode(lua_State *L)
{
    return b64_encode_fn(L, false);
}
static int l_b64_decode(lua_State *L)
{
    return b64_decode_fn(L, false);
}
static int l_b64url_encode(lua_State *L)
{
    return b64_encode_fn(L, true);
}
static int l_b64url_decode(lua_State *L)
{
    return b64_decode_fn(L, true);
}

/* ------------------------------------------------------------------ */
/* url                                                                 */
/* ------------------------------------------------------------------ */

static bool url_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

/* url.encode(s) -> string, like encodeURIComponent but also escaping !'()* */
static int l_url_encode(lua_State *L)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n;
    const char *s = check_input(L, 1, &n);
    size_t esc = 0;
    for (size_t i = 0; i < n; i++)
        esc += !url_unreserved((unsigned char)s[i]);
    char *out = lua_newuserdata(L, n + 2 * esc + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (url_unreserved(c)) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    lua_pushlstring(L, out, o);
    return 1;
}

static int url_decode_fn(lua_State *L, bool plus_is_space)
{
    size_t n;
    const char *s = check_input(L, 1, &n);
    char *out = lua_newuserdata(L, n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = n - i >= 3 ? pt_hexval((unsigned char)s[i + 1]) : -1;
            int lo = n - i >= 3 ? pt_hexval((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                lua_pushnil(L);
                return 1;
            }
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = (plus_is_space && c == '+') ? ' ' : c;
        }
    }
    lua_pushlstring(L, out, o);
    return 1;
}

static int l_url_decode(lua_State *L)
{
    return url_decode_fn(L, false);
}
static int l_url_decode_form(lua_State *L)
{
    return url_decode_fn(L, true);
}

/* ------------------------------------------------------------------ */
/* crypto                                                              */
/* ------------------------------------------------------------------ */

static const EVP_MD *md_by_name(const char *name)
{
    if (strcmp(name, "sha256") == 0)
        return EVP_sha256();
    if (strcmp(name, "sha1") == 0)
        return EVP_sha1();
    if (strcmp(name, "sha384") == 0)
        return EVP_sha384();
    if (strcmp(name, "sha512") == 0)
        return EVP_sha512();
    if (strcmp(name, "md5") == 0)
        return EVP_md5();
    return NULL;
}

static int digest_fn(lua_State *L, const EVP_MD *md)
{
    size_t n;
    const char *s = check_input(L, 1, &n);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int on = 0;
    if (!EVP_Digest(s, n, out, &on, md, NULL))
        return luaL_error(L, "digest %s failed", EVP_MD_get0_name(md));
    lua_pushlstring(L, (const char *)out, on);
    return 1;
}

static int l_sha1(lua_State *L)
{
    return digest_fn(L, EVP_sha1());
}
static int l_sha256(lua_State *L)
{
    return digest_fn(L, EVP_sha256());
}
static int l_sha512(lua_State *L)
{
    return digest_fn(L, EVP_sha512());
}
static int l_md5(lua_State *L)
{
    return digest_fn(L, EVP_md5());
}

/* crypto.hmac(alg, key, data) -> raw bytes */
static int l_hmac(lua_State *L)
{
    const char *alg = luaL_checkstring(L, 1);
    size_t kn, dn;
    const char *key = check_input(L, 2, &kn);
    const char *data = check_input(L, 3, &dn);
    const EVP_MD *md = md_by_name(alg);
    if (!md)
        return luaL_error(L, "bad argument #1 (unknown HMAC algorithm '%s')", alg);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int on = 0;
    /* HMAC() with a NULL key means "reuse the last key": never pass NULL */
    if (!HMAC(md, kn ? key : "", (int)kn, (const unsigned char *)data, dn, out, &on))
        return luaL_error(L, "HMAC-%s failed", alg);
    lua_pushlstring(L, (const char *)out, on);
    return 1;
}

/* crypto.hex(s) -> lowercase hex */
static int l_hex(lua_State *L)
{
    static const char hex[] = "0123456789abcdef";
    size_t n;
    const unsigned char *s = (const unsigned char *)check_input(L, 1, &n);
    char *out = lua_newuserdata(L, 2 * n + 1);
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[s[i] >> 4];
        out[2 * i + 1] = hex[s[i] & 15];
    }
    lua_pushlstring(L, out, 2 * n);
    return 1;
}

/* crypto.random(n) -> n random bytes, 0 <= n <= 1024 */
static int l_random(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0 && n <= LH_MAX_RANDOM, 1, "must be between 0 and 1024");
    unsigned char buf[LH_MAX_RANDOM];
    if (n > 0 && RAND_bytes(buf, (int)n) != 1)
        return luaL_error(L, "no random bytes available");
    lua_pushlstring(L, (const char *)buf, (size_t)n);
    return 1;
}

/* crypto.equals(a, b) -> boolean, in time independent of where they differ */
static int l_equals(lua_State *L)
{
    size_t an, bn;
    const char *a = check_input(L, 1, &an);
    const char *b = check_input(L, 2, &bn);
    lua_pushboolean(L, an == bn && CRYPTO_memcmp(a, b, an) == 0);
    return 1;
}

/* ------------------------------------------------------------------ */
/* jwt                                                                 */
/* ------------------------------------------------------------------ */

static int fail2(lua_State *L, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

/*
 * Base64url-decodes a token part and JSON-decodes it as an object.
 * Stack: ... -> ..., table           (returns true)
 *        ... -> ..., nil, message    (returns false)
 */
static bool jwt_part(lua_State *L, const char *s, size_t n, const char *what)
{
    unsigned char *buf = lua_newuserdata(L, n / 4 * 3 + 3);
    size_t m, i = 0;
    if (!b64_decode(s, n, buf, &m, true)) {
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_pushfstring(L, "JWT %s is not valid base64url", what);
        return false;
    }
    while (i < m && is_json_ws((char)buf[i]))
        i++;
    if (i == m || buf[i] != '{') {
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_pushfstring(L, "JWT %s is not a JSON object", what);
        return false;
    }
    bool ok = pt_luajson_decode(L, (const char *)buf, m); /* buf stays anchored */
    lua_remove(L, -2);                                    /* the userdata */
    if (ok)
        return true;
    lua_pushfstring(L, "JWT %s: %s", what, lua_tostring(L, -1));
    lua_remove(L, -2);
    lua_pushnil(L);
    lua_insert(L, -2);
    return false;
}

/* dst[dkey] = src[skey] when that is of type t.  Stack unchanged. */
static void copy_field(lua_State *L, int src, const char *skey, int t, int dst, const char *dkey)
{
    lua_pushstring(L, skey);
    lua_rawget(L, src);
    if (lua_type(L, -1) == t)
        lua_setfield(L, dst, dkey);
    else
        lua_pop(L, 1);
}

/* jwt.parse(token) -> table | nil, message.  Parses; does not verify. */
static int l_jwt_parse(lua_State *L)
{
    size_t n;
    const char *t = check_input(L, 1, &n);
    lua_settop(L, 1);
    const char *end = t + n;
    const char *d1 = memchr(t, '.', n);
    const char *d2 = d1 ? memchr(d1 + 1, '.', (size_t)(end - d1 - 1)) : NULL;
    if (!d2 || memchr(d2 + 1, '.', (size_t)(end - d2 - 1)))
        return fail2(L, "JWT is not a compact JWS (header.payload.signature)");
    if (!jwt_part(L, t, (size_t)(d1 - t), "header")) /* slot 2 */
        return 2;
    if (!jwt_part(L, d1 + 1, (size_t)(d2 - d1 - 1), "payload")) /* slot 3 */
        return 2;
    lua_getfield(L, 2, "alg");
    if (lua_type(L, -1) != LUA_TSTRING)
        return fail2(L, "JWT header has no \"alg\"");
    lua_pop(L, 1);

    size_t sn = (size_t)(end - d2 - 1), sm;
    unsigned char *sig = lua_newuserdata(L, sn / 4 * 3 + 3); /* slot 4 */
    if (!b64_decode(d2 + 1, sn, sig, &sm, true))
        return fail2(L, "JWT signature is not valid base64url");

    lua_createtable(L, 0, 16); /* slot 5: the result */
    lua_pushvalue(L, 2);
    lua_setfield(L, 5, "header");
    lua_pushvalue(L, 3);
    lua_setfield(L, 5, "claims");
    copy_field(L, 2, "alg", LUA_TSTRING, 5, "algorithm");
    copy_field(L, 2, "typ", LUA_TSTRING, 5, "type");
    copy_field(L, 2, "kid", LUA_TSTRING, 5, "keyId");
    copy_field(L, 3, "jti", LUA_TSTRING, 5, "id");
    copy_field(L, 3, "iss", LUA_TSTRING, 5, "issuer");
    copy_field(L, 3, "sub", LUA_TSTRING, 5, "subject");
    copy_field(L, 3, "exp", LUA_TNUMBER, 5, "expirationTime");
    copy_field(L, 3, "nbf", LUA_TNUMBER, 5, "notBefore");
    copy_field(L, 3, "iat", LUA_TNUMBER, 5, "issuedAt");

    lua_newtable(L); /* audiences: the strings of aud */
    lua_getfield(L, 3, "aud");
    if (lua_type(L, -1) == LUA_TSTRING) {
        lua_rawseti(L, -2, 1);
    } else {
        if (lua_type(L, -1) == LUA_TTABLE) {
            int k = 0;
            for (int i = 1;; i++) {
                lua_rawgeti(L, -1, i);
                if (lua_isnil(L, -1)) {
                    lua_pop(L, 1);
                    break;
                }
                if (lua_type(L, -1) == LUA_TSTRING)
                    lua_rawseti(L, -3, ++k);
                else
                    lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }
    lua_setfield(L, 5, "audiences");

    lua_pushlstring(L, (const char *)sig, sm);
    lua_setfield(L, 5, "signature");
    lua_pushlstring(L, t, (size_t)(d2 - t));
    lua_setfield(L, 5, "signingInput");
    return 1;
}

/* Appends one claim value as text: strings as-is, others as JSON. */
static void claim_text(lua_State *L, int idx, struct hbuf *b)
{
    size_t n;
    const char *s;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &n);
        hbuf_add(b, s, n);
        break;
    default:
        pt_luajson_encode(L, idx, b);
    }
}

/*
 * jwt.claim(parsed, name [, default]) -> string | default
 * Like APIM's Claims.GetValueOrDefault: array values are joined with ','.
 */
static int l_jwt_claim(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *name = luaL_checkstring(L, 2);
    lua_settop(L, 3);
    lua_getfield(L, 1, "claims"); /* 4 */
    luaL_argcheck(L, lua_istable(L, 4), 1, "not a parsed JWT (no claims table)");
    lua_getfield(L, 4, name); /* 5 */
    int t = lua_type(L, 5);
    if (t == LUA_TNIL || pt_luajson_is_null(L, 5)) {
        lua_pushvalue(L, 3);
        return 1;
    }
    if (t == LUA_TSTRING)
        return 1;
    struct hbuf b;
    hbuf_init(L, &b, 64); /* 6 */
    bool join = false;
    if (t == LUA_TTABLE) { /* arrays, and the empty table, are joined */
        join = lua_objlen(L, 5) > 0;
        if (!join) {
            lua_pushnil(L);
            join = lua_next(L, 5) == 0;
            lua_settop(L, 6);
        }
    }
    if (join) {
        size_t len = lua_objlen(L, 5);
        for (size_t i = 1; i <= len; i++) {
            if (i > 1)
                hbuf_addc(&b, ',');
            lua_rawgeti(L, 5, (int)i);
            claim_text(L, -1, &b);
            lua_pop(L, 1);
        }
    } else {
        claim_text(L, 5, &b);
    }
    lua_pushlstring(L, b.p, b.n);
    return 1;
}

/* ------------------------------------------------------------------ */
/* basic                                                               */
/* ------------------------------------------------------------------ */

static bool is_sp(char c)
{
    return c == ' ' || c == '\t';
}

/* basic.parse(value) -> {userId=, password=} | nil */
static int l_basic_parse(lua_State *L)
{
    size_t n;
    const char *s = check_input(L, 1, &n);
    const char *p = s, *end = s + n;
    while (p < end && is_sp(*p))
        p++;
    while (end > p && is_sp(end[-1]))
        end--;
    static const char scheme[] = "basic";
    size_t sl = sizeof(scheme) - 1;
    bool has_scheme = (size_t)(end - p) >= sl;
    for (size_t i = 0; has_scheme && i < sl; i++)
        has_scheme = (p[i] | 0x20) == scheme[i];
    if (has_scheme && ((size_t)(end - p) == sl || is_sp(p[sl]))) {
        p += sl;
        while (p < end && is_sp(*p))
            p++;
    }
    /* what is left must be one base64 word (another scheme fails here) */
    size_t bn = (size_t)(end - p), m;
    if (bn == 0) {
        lua_pushnil(L);
        return 1;
    }
    unsigned char *buf = lua_newuserdata(L, bn / 4 * 3 + 3);
    const unsigned char *colon;
    if (!b64_decode(p, bn, buf, &m, false) || !(colon = memchr(buf, ':', m))) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, 0, 2);
    lua_pushlstring(L, (const char *)buf, (size_t)(colon - buf));
    lua_setfield(L, -2, "userId");
    lua_pushlstring(L, (const char *)colon + 1, (size_t)(buf + m - colon - 1));
    lua_setfield(L, -2, "password");
    return 1;
}

/* ------------------------------------------------------------------ */
/* The table                                                           */
/* ------------------------------------------------------------------ */

static const luaL_Reg b64_fns[] = {{"encode", l_b64_encode}, {"decode", l_b64_decode}, {NULL, NULL}};
static const luaL_Reg b64url_fns[] = {{"encode", l_b64url_encode}, {"decode", l_b64url_decode}, {NULL, NULL}};
static const luaL_Reg url_fns[] = {
    {"encode", l_url_encode}, {"decode", l_url_decode}, {"decodeForm", l_url_decode_form}, {NULL, NULL}};
static const luaL_Reg crypto_fns[] = {{"sha1", l_sha1},     {"sha256", l_sha256}, {"sha512", l_sha512},
                                      {"md5", l_md5},       {"hmac", l_hmac},     {"hex", l_hex},
                                      {"random", l_random}, {"equals", l_equals}, {NULL, NULL}};
static const luaL_Reg jwt_fns[] = {{"parse", l_jwt_parse}, {"claim", l_jwt_claim}, {NULL, NULL}};
static const luaL_Reg basic_fns[] = {{"parse", l_basic_parse}, {NULL, NULL}};

/* Stack: ..., t -> ..., t  with t[name] = a table of fns */
static void add_group(lua_State *L, const char *name, const luaL_Reg *fns)
{
    lua_newtable(L);
    for (; fns->name; fns++) {
        lua_pushcfunction(L, fns->func);
        lua_setfield(L, -2, fns->name);
    }
    lua_setfield(L, -2, name);
}

/* See pt_luahelp.h.  Stack: ... -> ..., helpers */
void pt_luahelp_push(lua_State *L)
{
    luaL_checkstack(L, 4, "out of stack");
    lua_createtable(L, 0, 7);
    pt_luajson_push(L);
    lua_setfield(L, -2, "json");
    add_group(L, "base64", b64_fns);
    add_group(L, "base64url", b64url_fns);
    add_group(L, "url", url_fns);
    add_group(L, "crypto", crypto_fns);
    add_group(L, "jwt", jwt_fns);
    add_group(L, "basic", basic_fns);
}

/* See pt_luahelp.h. */
bool pt_luahelp_json_decode(lua_State *L, const char *s, size_t n)
{
    return pt_luajson_decode(L, s, n);
}

/* See pt_luahelp.h. */
void pt_luahelp_push_null(lua_State *L)
{
    pt_luajson_push_null(L);
}

/* See pt_luahelp.h. */
bool pt_luahelp_is_null(lua_State *L, int idx)
{
    return pt_luajson_is_null(L, idx);
}
