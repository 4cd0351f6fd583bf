/*
 * pt_luahelp_int -- what the files of the helper library share; not for the
 * rest of the core (which sees pt_luahelp.h).
 *
 *   pt_luahelp.c  the table scripts get, and base64, base64url, url,
 *                 crypto, jwt and basic
 *   pt_luajson.c  json: the encoder, the decoder, json.null
 *
 * pt_luahelp.c calls into pt_luajson.c, never the other way.
 *
 * These functions run inside sandboxed LuaJIT states whose allocator may
 * refuse memory, and then any Lua API call that allocates raises an error
 * that unwinds straight through our C frames.  So one rule governs the
 * files: no C-owned heap memory is ever alive across a Lua API call.
 * Scratch space is Lua userdata (struct hbuf grows by allocating a bigger
 * userdata into a fixed stack slot), and results are built directly as Lua
 * values.
 */
#ifndef PT_LUAHELP_INT_H
#define PT_LUAHELP_INT_H

#include "base/pt.h"
#include "lua/pt_luahelp.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define LH_MAX_INPUT ((size_t)PT_LUAHELP_MAX_INPUT)

/* ---------------------------------- bounded arguments and growable buffers */

static inline const char *check_input(lua_State *L, int arg, size_t *n)
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
static inline void hbuf_init(lua_State *L, struct hbuf *b, size_t cap)
{
    b->L = L;
    b->n = 0;
    b->cap = cap < 64 ? 64 : cap;
    b->p = lua_newuserdata(L, b->cap);
    b->idx = lua_gettop(L);
}

/* Stack unchanged: the userdata at b->idx is replaced by a bigger one. */
static inline void hbuf_grow(struct hbuf *b, size_t extra)
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

static inline void hbuf_add(struct hbuf *b, const void *s, size_t n)
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

/* ------------------------------------------------------ small pure helpers */

static inline bool is_json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* ------------------------------------------------------------ pt_luajson.c */

/* Pushes a new json table: encode, decode and null. */
void pt_luajson_push(lua_State *L);
/* Appends the JSON text of the value at idx to out, as json.encode makes it
   (raises on what cannot be encoded).  Stack unchanged. */
void pt_luajson_encode(lua_State *L, int idx, struct hbuf *out);
/* What pt_luahelp_json_decode does (see pt_luahelp.h). */
bool pt_luajson_decode(lua_State *L, const char *s, size_t n);
/* json.null: pushes it, or tells whether the value at idx is it. */
void pt_luajson_push_null(lua_State *L);
bool pt_luajson_is_null(lua_State *L, int idx);

#endif
