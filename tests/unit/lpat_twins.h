/*
 * lpat_twins.h -- what test_lpat and fuzz_lpat share to compare pt_lpat
 * with LuaJIT's own pattern functions: a Lua state holding the original
 * string library as O and a copy whose find/match/gmatch/gsub are
 * pt_lpat's as N, and the Lua helpers their comparisons are written with
 * (LPAT_TWINS_LUA: pack, show, all, repl_t, repl_f; locals, so a chunk
 * starts with it).
 */
#ifndef PT_TESTS_LPAT_TWINS_H
#define PT_TESTS_LPAT_TWINS_H

#include "lua/pt_lpat.h"

#include <lauxlib.h>
#include <lualib.h>

#include <stdio.h>

#define LPAT_TWINS_LUA                                                                                       \
    "local function pack(...) return {n = select('#', ...), ...} end\n"                                      \
    "local function show(t)\n"                                                                               \
    "  local o = {}\n"                                                                                       \
    "  for i = 1, t.n do o[#o + 1] = string.format('%q', tostring(t[i])) end\n"                              \
    "  return '{' .. table.concat(o, ', ') .. '}'\n"                                                         \
    "end\n"                                                                                                  \
    "local function all(gm, s, p)\n"                                                                         \
    "  local out = {}\n"                                                                                     \
    "  for a, b, c in gm(s, p) do out[#out + 1] = tostring(a) .. '|' .. tostring(b) .. '|' .. tostring(c)\n" \
    "    if #out > 200 then break end end\n"                                                                 \
    "  return table.concat(out, ';')\n"                                                                      \
    "end\n"                                                                                                  \
    "local repl_t = {a = 'A', ab = 1, [''] = 'E', x = false}\n"                                              \
    "local function repl_f(a, b) if a == 'b' then return nil end return '<' .. tostring(a) .. tostring(b) "  \
    ".. '>' end\n"

/* The state with O and N, `code` run in it (starting with LPAT_TWINS_LUA);
   NULL with the reason in err when either fails. */
static inline lua_State *lpat_twins(struct pt_lpat_env *env, const char *code, char *err, size_t errsize)
{
    lua_State *L = luaL_newstate();
    if (!L) {
        snprintf(err, errsize, "no memory for a Lua state");
        return NULL;
    }
    luaL_openlibs(L);
    lua_getglobal(L, "string");
    lua_setglobal(L, "O");
    lua_newtable(L); /* N: a copy of string... */
    lua_getglobal(L, "string");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_settable(L, -5);
    }
    lua_pop(L, 1);
    pt_lpat_install(L, -1, env); /* ...with pt_lpat's functions */
    lua_setglobal(L, "N");
    if (luaL_dostring(L, code)) {
        snprintf(err, errsize, "%s", lua_tostring(L, -1));
        lua_close(L);
        return NULL;
    }
    return L;
}

#endif
