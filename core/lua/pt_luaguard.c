/*
 * pt_luaguard -- the guards user code runs under, and the runtime they guard.
 *
 * pt_luaguard_rt is the runtime whose call runs on this thread (the calls in
 * pt_lua.c set it); the count hook and the pattern functions compare the
 * clock with its deadline and record a breach there.  A broken limit, or a
 * body that must be read first, is sticky: the pcall and xpcall user code
 * gets re-raise it, so a script cannot swallow it.  string.rep checks the
 * size of its result before making it; table.sort, which runs in C where no
 * hook reaches, takes a bounded number of elements.
 */
#include "base/pt_log.h"
#include "lua/pt_lua_int.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>

__thread struct pt_lua *pt_luaguard_rt;

/* ---------------------------------------------------------- deadline, pcall */

/* See pt_lua_int.h. */
bool pt_luaguard_expired(void)
{
    struct pt_lua *x = pt_luaguard_rt;
    if (x && x->deadline && pt_clock_now_ms() >= x->deadline) {
        x->breach = "time";
        return true;
    }
    return false;
}

/* See pt_lua_int.h. */
void pt_luaguard_hook(lua_State *L, lua_Debug *ar)
{
    if (pt_luaguard_expired()) {
        lua_pushstring(L, "time limit exceeded");
        lua_error(L);
    }
}

/* Re-raises a broken limit or a body request that a pcall caught. */
static void rethrow_if_sticky(lua_State *L)
{
    if (pt_luaguard_rt->breach || pt_luaguard_rt->need_body)
        lua_error(L);
}

/* pcall(f, ...) that cannot swallow a broken limit. */
int pt_luaguard_pcall(lua_State *L)
{
    luaL_checkany(L, 1);
    int st = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    if (st != 0)
        rethrow_if_sticky(L);
    lua_pushboolean(L, st == 0);
    lua_insert(L, 1);
    return lua_gettop(L);
}

/* xpcall(f, handler): the handler is not called for a broken limit. */
int pt_luaguard_xpcall(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    lua_pushvalue(L, 1);
    int st = lua_pcall(L, 0, LUA_MULTRET, 0);
    if (st != 0) {
        rethrow_if_sticky(L);
        lua_pushvalue(L, 2);
        lua_insert(L, -2);
        lua_call(L, 1, 1);
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_replace(L, 1);
    lua_remove(L, 2);
    return lua_gettop(L);
}

/* ------------------------------------------------- bounded string and table */

static size_t max_string(void)
{
    struct pt_lua *x = pt_luaguard_rt;
    return x && x->mem.cap ? x->mem.cap / 4 : (16u << 20);
}

/* string.rep: refuses a result larger than a quarter of the state's memory cap. */
int pt_luaguard_rep(lua_State *L)
{
    size_t l, ls = 0;
    luaL_checklstring(L, 1, &l);
    lua_Number n = luaL_checknumber(L, 2);
    if (lua_type(L, 3) == LUA_TSTRING)
        lua_tolstring(L, 3, &ls);
    double total = n > 0 ? (double)l * n + (double)ls * (n - 1) : 0;
    if (total > (double)max_string())
        return luaL_error(L, "string.rep: result too large (%f bytes)", total);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* table.sort: at most SORT_MAX elements.  Without a comparator the sort
   runs in C, where the deadline cannot reach; this many sort in a few ms. */
#define SORT_MAX 100000

int pt_luaguard_sort(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t n = lua_objlen(L, 1);
    if (n > SORT_MAX)
        return luaL_error(L, "table.sort: %d elements, more than the %d allowed",
                          (int)(n > INT32_MAX ? INT32_MAX : n), SORT_MAX);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 0);
    return 0;
}
