/*
 * pt_luahelp -- the helper library that policy expressions and Lua policies
 * see: json, base64, base64url, url, crypto, jwt and basic.
 *
 * These functions run inside sandboxed LuaJIT states whose allocator may
 * refuse memory, and then any Lua API call that allocates raises an error
 * that unwinds straight through our C frames.  So one rule governs the file:
 * no C-owned heap memory is ever alive across a Lua API call.  Scratch space
 * is Lua userdata (struct hbuf grows by allocating a bigger userdata into a
 * fixed stack slot), results are built directly as Lua values, and OpenSSL
 * one-shot calls finish (freeing their own contexts) before anything is
 * pushed.  JSON is hand-rolled rather than done with jansson for the same
 * reason: the decoder builds Lua tables while it parses, so there is never a
 * foreign tree to leak.  The decoder runs under lua_pcall so a syntax error
 * deep in the recursion simply raises and becomes (nil, message); a memory
 * error is re-raised instead of being reported as bad JSON.
 *
 * Work is bounded: string arguments above PT_LUAHELP_MAX_INPUT raise, JSON
 * output is capped at the same size (so whatever json.encode makes,
 * json.decode accepts), nesting is capped at PT_LUAHELP_MAX_DEPTH both ways,
 * and crypto.random at 1024 bytes.  Tables are read raw (no metamethods).
 *
 * json.encode sorts object keys bytewise, so equal tables give equal text.
 * An empty table encodes as {}; json.null (a light userdata) stands for null
 * so that arrays with nulls keep their length.
 */
#include "config.h"

#include "lua/pt_luahelp.h"

#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define LH_MAX_INPUT ((size_t)PT_LUAHELP_MAX_INPUT)
#define LH_MAX_DEPTH PT_LUAHELP_MAX_DEPTH
#define LH_MAX_SAFE_INT 9007199254740992.0 /* 2^53 */
#define LH_MAX_RANDOM 1024

static const char null_tag; /* json.null is &null_tag */
#define JSON_NULL ((void *)&null_tag)

/* ------------------------------------------------------------------ */
/* Bounded arguments and Lua-owned growable buffers                    */
/* ------------------------------------------------------------------ */

static const char *check_input(lua_State *L, int arg, size_t *n)
{
    const char *s = luaL_checklstring(L, arg, n);
    if (*n > LH_MAX_INPUT)
        luaL_error(L, "bad argument #%d (string larger than %d bytes)", arg, (int)LH_MAX_INPUT);
    return s;
}

/* A byte buffer living in a userdata at a fixed stack slot (idx). */
struct hbuf {
    lua_State *L;
    int idx;
    char *p;
    size_t n, cap;
};

/* Stack: ... -> ..., userdata (at b->idx) */
static void hbuf_init(lua_State *L, struct hbuf *b, size_t cap)
{
    b->L = L;
    b->n = 0;
    b->cap = cap < 64 ? 64 : cap;
    b->p = lua_newuserdata(L, b->cap);
    b->idx = lua_gettop(L);
}

/* Stack unchanged: the userdata at b->idx is replaced by a bigger one. */
static void hbuf_grow(struct hbuf *b, size_t extra)
{
    if (extra > LH_MAX_INPUT - b->n)
        luaL_error(b->L, "result larger than %d bytes", (int)LH_MAX_INPUT);
    size_t need = b->n + extra;
    size_t cap = b->cap * 2;
    if (cap < need)
        cap = need;
    if (cap > LH_MAX_INPUT)
        cap = LH_MAX_INPUT;
    luaL_checkstack(b->L, 1, "out of stack");
    char *p = lua_newuserdata(b->L, cap);
    memcpy(p, b->p, b->n);
    lua_replace(b->L, b->idx); /* the old userdata is now garbage */
    b->p = p;
    b->cap = cap;
}

static inline void hbuf_reserve(struct hbuf *b, size_t extra)
{
    if (extra > b->cap - b->n)
        hbuf_grow(b, extra);
}

static void hbuf_add(struct hbuf *b, const void *s, size_t n)
{
    if (n == 0)
        return;
    hbuf_reserve(b, n);
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static inline void hbuf_addc(struct hbuf *b, char c)
{
    hbuf_reserve(b, 1);
    b->p[b->n++] = c;
}

#define hbuf_addlit(b, lit) hbuf_add((b), (lit), sizeof(lit) - 1)

/* ------------------------------------------------------------------ */
/* Small pure helpers                                                  */
/* ------------------------------------------------------------------ */

static bool utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* d is integral and within +-2^53 (no libm: the cast is safe in that range) */
static bool is_safe_int(double d)
{
    return d >= -LH_MAX_SAFE_INT && d <= LH_MAX_SAFE_INT && d == (double)(int64_t)d;
}

/*
 * Formats a finite number as JSON into buf[32]; returns the length, or 0 for
 * NaN and infinities.  Integral values within 2^53 have no decimal point;
 * others get the shortest of %.15g..%.17g that reads back exactly.
 */
static size_t fmt_number(double d, char *buf)
{
    if (!isfinite(d))
        return 0;
    if (is_safe_int(d))
        return (size_t)snprintf(buf, 32, "%lld", (long long)d);
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, 32, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    /* the locale may have put a ',' where JSON wants a '.' */
    size_t n = 0;
    for (; buf[n]; n++)
        if (!((buf[n] >= '0' && buf[n] <= '9') || buf[n] == '-' || buf[n] == '+' || buf[n] == 'e'))
            buf[n] = '.';
    return n;
}

static bool is_json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* ------------------------------------------------------------------ */
/* JSON encoding                                                       */
/* ------------------------------------------------------------------ */

struct jenc {
    struct hbuf *out;
    int seen; /* stack slot of a table: table -> true while it is being encoded */
};

struct okey {
    const char *s; /* the key as JSON text will show it, anchored in a Lua table */
    size_t n;
    int anchor; /* index in the anchor table of the original key */
};

static int okey_cmp(const void *a, const void *b)
{
    const struct okey *x = a, *y = b;
    int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
    if (c)
        return c;
    return (x->n > y->n) - (x->n < y->n);
}

static void enc_string(struct hbuf *b, const char *s, size_t n)
{
    if (!utf8_valid(s, n))
        luaL_error(b->L, "cannot encode a string that is not valid UTF-8 in JSON");
    hbuf_reserve(b, n + 2);
    hbuf_addc(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        hbuf_add(b, s + run, i - run);
        run = i + 1;
        char esc[8];
        switch (c) {
        case '"':
            hbuf_addlit(b, "\\\"");
            break;
        case '\\':
            hbuf_addlit(b, "\\\\");
            break;
        case '\b':
            hbuf_addlit(b, "\\b");
            break;
        case '\f':
            hbuf_addlit(b, "\\f");
            break;
        case '\n':
            hbuf_addlit(b, "\\n");
            break;
        case '\r':
            hbuf_addlit(b, "\\r");
            break;
        case '\t':
            hbuf_addlit(b, "\\t");
            break;
        default:
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            hbuf_add(b, esc, 6);
        }
    }
    hbuf_add(b, s + run, n - run);
    hbuf_addc(b, '"');
}

static void enc_number(struct hbuf *b, double d)
{
    char buf[32];
    size_t n = fmt_number(d, buf);
    if (n == 0)
        luaL_error(b->L, "cannot encode %s in JSON", isnan(d) ? "NaN" : "infinity");
    hbuf_add(b, buf, n);
}

static void enc_value(lua_State *L, struct jenc *e, int idx, int depth);

/* Stack: ... -> ...  (idx is an absolute index of a table) */
static void enc_table(lua_State *L, struct jenc *e, int idx, int depth)
{
    if (depth > LH_MAX_DEPTH)
        luaL_error(L, "cannot encode tables nested deeper than %d in JSON", LH_MAX_DEPTH);
    luaL_checkstack(L, 8, "out of stack");
    lua_pushvalue(L, idx);
    lua_rawget(L, e->seen);
    if (!lua_isnil(L, -1))
        luaL_error(L, "cannot encode a table that contains itself in JSON");
    lua_pop(L, 1);
    lua_pushvalue(L, idx);
    lua_pushboolean(L, 1);
    lua_rawset(L, e->seen);

    /* an array is a non-empty table whose keys are exactly 1..n */
    size_t count = 0;
    double max = 0;
    bool array = true;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        count++;
        if (array) {
            double k = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
            if (k >= 1 && is_safe_int(k))
                max = k > max ? k : max;
            else
                array = false;
        }
    }
    /* each element takes at least 2 bytes, each member at least 5 */
    if (count > LH_MAX_INPUT / 2)
        luaL_error(L, "result larger than %d bytes", (int)LH_MAX_INPUT);

    struct hbuf *b = e->out;
    if (count > 0 && array && max == (double)count) {
        hbuf_addc(b, '[');
        for (size_t i = 1; i <= count; i++) {
            if (i > 1)
                hbuf_addc(b, ',');
            lua_rawgeti(L, idx, (int)i);
            enc_value(L, e, lua_gettop(L), depth + 1);
            lua_pop(L, 1);
        }
        hbuf_addc(b, ']');
    } else {
        /*
         * Collect the keys as strings, sort them, then emit in that order.
         * anchor[2i-1] is the key's text (keeps okey.s alive), anchor[2i]
         * the original key used to look the value up again.
         */
        struct okey *keys = lua_newuserdata(L, (count ? count : 1) * sizeof(*keys));
        lua_createtable(L, (int)(count * 2), 0);
        int anchor = lua_gettop(L);
        size_t i = 0;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pop(L, 1);
            if (i == count) /* cannot happen: the table is not modified */
                luaL_error(L, "table changed while being encoded");
            int kt = lua_type(L, -1);
            if (kt == LUA_TSTRING) {
                lua_pushvalue(L, -1);
            } else if (kt == LUA_TNUMBER) {
                char nb[32];
                size_t nn = fmt_number(lua_tonumber(L, -1), nb);
                if (nn == 0)
                    luaL_error(L, "cannot encode an infinite key in JSON");
                lua_pushlstring(L, nb, nn);
            } else {
                luaL_error(L, "cannot encode a table with %s keys in JSON", luaL_typename(L, -1));
            }
            keys[i].s = lua_tolstring(L, -1, &keys[i].n);
            keys[i].anchor = (int)(2 * i + 2);
            lua_rawseti(L, anchor, (int)(2 * i + 1));
            lua_pushvalue(L, -1);
            lua_rawseti(L, anchor, (int)(2 * i + 2));
            i++;
        }
        qsort(keys, count, sizeof(*keys), okey_cmp);
        hbuf_addc(b, '{');
        for (i = 0; i < count; i++) {
            if (i > 0) {
                if (keys[i].n == keys[i - 1].n && memcmp(keys[i].s, keys[i - 1].s, keys[i].n) == 0)
                    luaL_error(L, "cannot encode a table with two keys named '%s' in JSON", keys[i].s);
                hbuf_addc(b, ',');
            }
            enc_string(b, keys[i].s, keys[i].n);
            hbuf_addc(b, ':');
            lua_rawgeti(L, anchor, keys[i].anchor);
            lua_rawget(L, idx);
            enc_value(L, e, lua_gettop(L), depth + 1);
            lua_pop(L, 1);
        }
        hbuf_addc(b, '}');
        lua_pop(L, 2); /* keys, anchor */
    }

    lua_pushvalue(L, idx);
    lua_pushnil(L);
    lua_rawset(L, e->seen);
}

/* Appends the JSON text of the value at absolute index idx.  Stack unchanged. */
static void enc_value(lua_State *L, struct jenc *e, int idx, int depth)
{
    struct hbuf *b = e->out;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        hbuf_addlit(b, "null");
        break;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            hbuf_addlit(b, "true");
        else
            hbuf_addlit(b, "false");
        break;
    case LUA_TNUMBER:
        enc_number(b, lua_tonumber(L, idx));
        break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        enc_string(b, s, n);
        break;
    }
    case LUA_TTABLE:
        enc_table(L, e, idx, depth);
        break;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == JSON_NULL) {
            hbuf_addlit(b, "null");
            break;
        }
        /* fall through */
    default:
        luaL_error(L, "cannot encode a %s in JSON", luaL_typename(L, idx));
    }
}

/*
 * Appends the JSON text of the value at idx to out.
 * Stack: ... -> ...  (a scratch table is pushed and popped)
 */
static void json_encode_into(lua_State *L, int idx, struct hbuf *out)
{
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    luaL_checkstack(L, 4, "out of stack");
    lua_newtable(L);
    struct jenc e = {out, lua_gettop(L)};
    enc_value(L, &e, idx, 1);
    lua_pop(L, 1);
}

/* json.encode(v) -> string */
static int l_json_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    struct hbuf out;
    hbuf_init(L, &out, 256);
    json_encode_into(L, 1, &out);
    lua_pushlstring(L, out.p, out.n);
    return 1;
}

/* ------------------------------------------------------------------ */
/* JSON decoding                                                       */
/* ------------------------------------------------------------------ */

struct jdec {
    const char *s, *p, *end;
    struct hbuf sb; /* scratch for strings with escapes */
};

static void dec_fail(lua_State *L, struct jdec *d, const char *what)
{
    lua_pushfstring(L, "invalid JSON at offset %d: %s", (int)(d->p - d->s), what);
    lua_error(L);
}

static void skip_ws(struct jdec *d)
{
    while (d->p < d->end && is_json_ws(*d->p))
        d->p++;
}

static void dec_value(lua_State *L, struct jdec *d, int depth);

static long read_u4(const char *p, const char *end)
{
    if (end - p < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval((unsigned char)p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

static size_t utf8_put(uint32_t cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* d->p at the opening quote.  Stack: ... -> ..., string */
static void dec_string(lua_State *L, struct jdec *d)
{
    const char *start = d->p + 1, *p = start, *end = d->end;
    while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
        p++;
    if (p < end && *p == '"') { /* no escapes: straight from the input */
        if (!utf8_valid(start, (size_t)(p - start)))
            dec_fail(L, d, "string is not valid UTF-8");
        lua_pushlstring(L, start, (size_t)(p - start));
        d->p = p + 1;
        return;
    }
    struct hbuf *b = &d->sb;
    b->n = 0;
    hbuf_add(b, start, (size_t)(p - start));
    for (;;) {
        const char *run = p;
        while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
            p++;
        hbuf_add(b, run, (size_t)(p - run));
        if (p >= end) {
            d->p = p;
            dec_fail(L, d, "unterminated string");
        }
        if (*p == '"')
            break;
        d->p = p;
        if (*p != '\\')
            dec_fail(L, d, "control character in string");
        if (end - p < 2)
            dec_fail(L, d, "unterminated string");
        char c = p[1];
        p += 2;
        switch (c) {
        case '"':
            hbuf_addc(b, '"');
            break;
        case '\\':
            hbuf_addc(b, '\\');
            break;
        case '/':
            hbuf_addc(b, '/');
            break;
        case 'b':
            hbuf_addc(b, '\b');
            break;
        case 'f':
            hbuf_addc(b, '\f');
            break;
        case 'n':
            hbuf_addc(b, '\n');
            break;
        case 'r':
            hbuf_addc(b, '\r');
            break;
        case 't':
            hbuf_addc(b, '\t');
            break;
        case 'u': {
            long cp = read_u4(p, end);
            if (cp < 0)
                dec_fail(L, d, "bad \\u escape");
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                long lo = (end - p >= 6 && p[0] == '\\' && p[1] == 'u') ? read_u4(p + 2, end) : -1;
                if (lo < 0xDC00 || lo > 0xDFFF)
                    dec_fail(L, d, "unpaired surrogate in \\u escape");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                dec_fail(L, d, "unpaired surrogate in \\u escape");
            }
            char u[4];
            hbuf_add(b, u, utf8_put((uint32_t)cp, u));
            break;
        }
        default:
            dec_fail(L, d, "bad escape in string");
        }
    }
    /* escapes always yield valid UTF-8, so this checks the raw bytes */
    if (!utf8_valid(b->p, b->n)) {
        d->p = start;
        dec_fail(L, d, "string is not valid UTF-8");
    }
    lua_pushlstring(L, b->p, b->n);
    d->p = p + 1;
}

static bool is_digit(const char *p, const char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

/* Stack: ... -> ..., number */
static void dec_number(lua_State *L, struct jdec *d)
{
    const char *start = d->p, *p = start, *end = d->end;
    bool neg = false, simple = true;
    if (*p == '-')
        neg = true, p++;
    if (!is_digit(p, end))
        dec_fail(L, d, "bad number");
    if (*p == '0')
        p++;
    else
        while (is_digit(p, end))
            p++;
    const char *int_end = p;
    if (p < end && *p == '.') {
        simple = false;
        p++;
        if (!is_digit(p, end))
            dec_fail(L, d, "bad number");
        while (is_digit(p, end))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        simple = false;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (!is_digit(p, end))
            dec_fail(L, d, "bad number");
        while (is_digit(p, end))
            p++;
    }
    double v;
    const char *digits = start + neg;
    if (simple && int_end - digits <= 15) {
        int64_t acc = 0;
        for (const char *q = digits; q < int_end; q++)
            acc = acc * 10 + (*q - '0');
        v = neg ? -(double)acc : (double)acc;
    } else {
        /* LuaJIT's own string-to-number: correctly rounded, locale-free */
        lua_pushlstring(L, start, (size_t)(p - start));
        if (!lua_isnumber(L, -1))
            dec_fail(L, d, "bad number");
        v = lua_tonumber(L, -1);
        lua_pop(L, 1);
        if (!isfinite(v))
            dec_fail(L, d, "number out of range");
    }
    d->p = p;
    lua_pushnumber(L, v);
}

static void dec_literal(lua_State *L, struct jdec *d, const char *word, size_t n)
{
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0)
        dec_fail(L, d, "unexpected character");
    d->p += n;
}

/* d->p at '{'.  Stack: ... -> ..., table */
static void dec_object(lua_State *L, struct jdec *d, int depth)
{
    if (depth > LH_MAX_DEPTH)
        dec_fail(L, d, "nested too deep");
    luaL_checkstack(L, 4, "out of stack");
    d->p++;
    lua_newtable(L);
    skip_ws(d);
    if (d->p < d->end && *d->p == '}') {
        d->p++;
        return;
    }
    for (;;) {
        skip_ws(d);
        if (d->p >= d->end || *d->p != '"')
            dec_fail(L, d, "expected a string key");
        dec_string(L, d);
        skip_ws(d);
        if (d->p >= d->end || *d->p != ':')
            dec_fail(L, d, "expected ':'");
        d->p++;
        dec_value(L, d, depth + 1);
        lua_rawset(L, -3); /* duplicate keys: the last one wins */
        skip_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
        } else if (d->p < d->end && *d->p == '}') {
            d->p++;
            return;
        } else {
            dec_fail(L, d, "expected ',' or '}'");
        }
    }
}

/* d->p at '['.  Stack: ... -> ..., table */
static void dec_array(lua_State *L, struct jdec *d, int depth)
{
    if (depth > LH_MAX_DEPTH)
        dec_fail(L, d, "nested too deep");
    luaL_checkstack(L, 4, "out of stack");
    d->p++;
    lua_newtable(L);
    skip_ws(d);
    if (d->p < d->end && *d->p == ']') {
        d->p++;
        return;
    }
    for (int i = 1;; i++) {
        dec_value(L, d, depth + 1);
        lua_rawseti(L, -2, i);
        skip_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
        } else if (d->p < d->end && *d->p == ']') {
            d->p++;
            return;
        } else {
            dec_fail(L, d, "expected ',' or ']'");
        }
    }
}

/* Stack: ... -> ..., value */
static void dec_value(lua_State *L, struct jdec *d, int depth)
{
    skip_ws(d);
    if (d->p >= d->end)
        dec_fail(L, d, "unexpected end of input");
    switch (*d->p) {
    case '{':
        dec_object(L, d, depth);
        break;
    case '[':
        dec_array(L, d, depth);
        break;
    case '"':
        dec_string(L, d);
        break;
    case 't':
        dec_literal(L, d, "true", 4);
        lua_pushboolean(L, 1);
        break;
    case 'f':
        dec_literal(L, d, "false", 5);
        lua_pushboolean(L, 0);
        break;
    case 'n':
        dec_literal(L, d, "null", 4);
        lua_pushlightuserdata(L, JSON_NULL);
        break;
    default:
        if (*d->p == '-' || (*d->p >= '0' && *d->p <= '9'))
            dec_number(L, d);
        else
            dec_fail(L, d, "unexpected character");
    }
}

struct jsrc {
    const char *s;
    size_t n;
};

/* Protected body of pt_luahelp_json_decode.  Stack: jsrc -> ..., value */
static int json_decode_protected(lua_State *L)
{
    const struct jsrc *src = lua_touserdata(L, 1);
    struct jdec d = {.s = src->s, .p = src->s, .end = src->s + src->n};
    hbuf_init(L, &d.sb, 256);
    dec_value(L, &d, 1);
    skip_ws(&d);
    if (d.p != d.end)
        dec_fail(L, &d, "unexpected text after the value");
    return 1;
}

/* See pt_luahelp.h. */
bool pt_luahelp_json_decode(lua_State *L, const char *s, size_t n)
{
    luaL_checkstack(L, 3, "out of stack");
    if (n > LH_MAX_INPUT) {
        lua_pushfstring(L, "JSON text larger than %d bytes", (int)LH_MAX_INPUT);
        return false;
    }
    struct jsrc src = {s, n};
    lua_pushcfunction(L, json_decode_protected);
    lua_pushlightuserdata(L, &src);
    int rc = lua_pcall(L, 1, 1, 0);
    if (rc == 0)
        return true;
    if (rc == LUA_ERRMEM || !lua_isstring(L, -1))
        lua_error(L); /* out of memory is not bad JSON */
    return false;
}

/* json.decode(s) -> value | nil, message */
static int l_json_decode(lua_State *L)
{
    size_t n;
    const char *s = check_input(L, 1, &n);
    if (pt_luahelp_json_decode(L, s, n))
        return 1;
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

/* See pt_luahelp.h. */
void pt_luahelp_push_null(lua_State *L)
{
    lua_pushlightuserdata(L, JSON_NULL);
}

/* See pt_luahelp.h. */
bool pt_luahelp_is_null(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == JSON_NULL;
}

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
            int hi = n - i >= 3 ? hexval((unsigned char)s[i + 1]) : -1;
            int lo = n - i >= 3 ? hexval((unsigned char)s[i + 2]) : -1;
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
    bool ok = pt_luahelp_json_decode(L, (const char *)buf, m); /* buf stays anchored */
    lua_remove(L, -2);                                         /* the userdata */
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
        json_encode_into(L, idx, b);
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
    if (t == LUA_TNIL || pt_luahelp_is_null(L, 5)) {
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

static const luaL_Reg json_fns[] = {{"encode", l_json_encode}, {"decode", l_json_decode}, {NULL, NULL}};
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
    add_group(L, "json", json_fns);
    lua_getfield(L, -1, "json");
    lua_pushlightuserdata(L, JSON_NULL);
    lua_setfield(L, -2, "null");
    lua_pop(L, 1);
    add_group(L, "base64", b64_fns);
    add_group(L, "base64url", b64url_fns);
    add_group(L, "url", url_fns);
    add_group(L, "crypto", crypto_fns);
    add_group(L, "jwt", jwt_fns);
    add_group(L, "basic", basic_fns);
}
