/*
 * pt_luajson -- json for the helper library: json.encode, json.decode and
 * json.null, and the same codec for C (pt_luahelp_json_decode, jwt).
 *
 * JSON is hand-rolled rather than done with jansson because of the rule in
 * pt_luahelp_int.h (no C-owned heap memory across a Lua API call): the
 * decoder builds Lua tables while it parses, so there is never a foreign
 * tree to leak.  The decoder runs under lua_pcall so a syntax error deep in
 * the recursion simply raises and becomes (nil, message); a memory error is
 * re-raised instead of being reported as bad JSON.
 *
 * Work is bounded: text above PT_LUAHELP_MAX_INPUT is refused, output is
 * capped at the same size (so whatever json.encode makes, json.decode
 * accepts), and nesting is capped at PT_LUAHELP_MAX_DEPTH both ways.  Tables
 * are read raw (no metamethods).
 *
 * json.encode sorts object keys bytewise, so equal tables give equal text.
 * An empty table encodes as {}; json.null (a light userdata) stands for null
 * so that arrays with nulls keep their length.
 */
#include "config.h"

#include "base/pt_utf8.h"
#include "lua/pt_luahelp_int.h"

#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LH_MAX_DEPTH PT_LUAHELP_MAX_DEPTH
#define LH_MAX_SAFE_INT 9007199254740992.0 /* 2^53 */

static const char null_tag; /* json.null is &null_tag */
#define JSON_NULL ((void *)&null_tag)

/* ------------------------------------------------------------------ */
/* Small pure helpers                                                  */
/* ------------------------------------------------------------------ */

static bool utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0, k; i < n; i += k)
        if (!(k = pt_utf8_seq(s + i, n - i)))
            return false;
    return true;
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
 * See pt_luahelp_int.h.
 * Stack: ... -> ...  (a scratch table is pushed and popped)
 */
void pt_luajson_encode(lua_State *L, int idx, struct hbuf *out)
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
    pt_luajson_encode(L, 1, &out);
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
        int h = pt_hexval((unsigned char)p[i]);
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

/* Protected body of pt_luajson_decode.  Stack: jsrc -> ..., value */
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

/* See pt_luahelp_int.h. */
bool pt_luajson_decode(lua_State *L, const char *s, size_t n)
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
    if (pt_luajson_decode(L, s, n))
        return 1;
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

/* See pt_luahelp_int.h. */
void pt_luajson_push_null(lua_State *L)
{
    lua_pushlightuserdata(L, JSON_NULL);
}

/* See pt_luahelp_int.h. */
bool pt_luajson_is_null(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == JSON_NULL;
}

/* ------------------------------------------------------------------ */
/* The json table                                                      */
/* ------------------------------------------------------------------ */

static const luaL_Reg json_fns[] = {{"encode", l_json_encode}, {"decode", l_json_decode}, {NULL, NULL}};

/* See pt_luahelp_int.h.  Stack: ... -> ..., json */
void pt_luajson_push(lua_State *L)
{
    luaL_checkstack(L, 2, "out of stack");
    lua_newtable(L);
    for (const luaL_Reg *f = json_fns; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
    lua_pushlightuserdata(L, JSON_NULL);
    lua_setfield(L, -2, "null");
}
