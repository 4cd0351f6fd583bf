/*
 * pt_luahelp -- the helper library policy expressions and Lua policies get:
 * json, base64, base64url, url, crypto, jwt and basic, as one Lua table.
 */
#ifndef PT_LUAHELP_H
#define PT_LUAHELP_H

#include <stdbool.h>
#include <stddef.h>

#include <lua.h>

/* Largest string any helper accepts, and largest JSON text json.encode makes. */
#define PT_LUAHELP_MAX_INPUT (16u << 20)
/* Deepest JSON nesting accepted either way (the outermost array/object is 1). */
#define PT_LUAHELP_MAX_DEPTH 64

/*
 * Pushes a new table with the helper functions onto L's stack (1 value).
 * Every call makes a fresh table; the functions keep no state of their own.
 */
void pt_luahelp_push(lua_State *L);

/*
 * Decodes the JSON text s[0..n) (which must stay alive during the call) into
 * a Lua value, exactly as json.decode does.  Pushes 1 value: the result and
 * returns true, or an error message and returns false.  Raises only on a
 * memory error.
 */
bool pt_luahelp_json_decode(lua_State *L, const char *s, size_t n);

/* Pushes json.null, the light userdata that stands for JSON null. */
void pt_luahelp_push_null(lua_State *L);

/* true when the value at idx is json.null. */
bool pt_luahelp_is_null(lua_State *L, int idx);

#endif
