/*
 * fuzz_lpat -- the budgeted Lua pattern functions (core/lua/pt_lpat.c:
 * find, match, gmatch, gsub) on arbitrary patterns and subjects, as a Lua
 * policy may apply a pattern from configuration to request bytes, or a
 * pattern built from request bytes.
 *
 * Input: a mode byte (which call, which start position, which replacement),
 * a byte giving the pattern's length, the pattern, then the subject (at
 * most MAX_SUBJECT bytes).  Each call runs first through pt_lpat under a
 * budget; when it finishes within it, the same call through LuaJIT's own
 * string library must give the same results (or fail too).  A call that
 * runs out of budget must fail with "time limit exceeded", never hang.
 * Never a read or write out of bounds (ASan).
 */
#include "lua/pt_lpat.h"

#include <lauxlib.h>
#include <lualib.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SUBJECT 4096
#define POLLS_ALLOWED 8 /* a few tens of thousands of steps */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int polls;

static bool expired(void)
{
    return ++polls > POLLS_ALLOWED;
}

static struct pt_lpat_env env = {MAX_SUBJECT, expired};

/* compare(mode, s, p): the call picked by mode through N (pt_lpat), then through O (LuaJIT) */
static const char COMPARE[] =
    "local function pack(...) return {n = select('#', ...), ...} end\n"
    "local function show(t)\n"
    "  local o = {}\n"
    "  for i = 1, t.n do o[#o + 1] = string.format('%q', tostring(t[i])) end\n"
    "  return '{' .. table.concat(o, ', ') .. '}'\n"
    "end\n"
    "local function all(gm, s, p)\n"
    "  local out = {}\n"
    "  for a, b, c in gm(s, p) do out[#out + 1] = tostring(a) .. '|' .. tostring(b) .. '|' .. tostring(c)\n"
    "    if #out > 200 then break end end\n"
    "  return table.concat(out, ';')\n"
    "end\n"
    "local inits = {false, 1, 2, -1, -3, 0, 5, 100}\n"
    "local repl_t = {a = 'A', ab = 1, [''] = 'E', x = false}\n"
    "local function repl_f(a, b) if a == 'b' then return nil end return '<' .. tostring(a) .. tostring(b) .. "
    "'>' "
    "end\n"
    "local repls = {'[%0]', '%1-%2', '%%', 'x%', 7, repl_t, repl_f, ''}\n"
    "local function call(S, mode, s, p)\n"
    "  local init = inits[mode % 8 + 1] or nil\n"
    "  local kind = math.floor(mode / 8) % 8\n"
    "  if kind == 0 then return S.find(s, p, init) end\n"
    "  if kind == 1 then return S.find(s, p, init, true) end\n"
    "  if kind == 2 then return S.match(s, p, init) end\n"
    "  if kind == 3 then return all(S.gmatch, s, p) end\n"
    "  local r = repls[mode % 8 + 1]\n"
    "  if kind == 4 then return S.gsub(s, p, r) end\n"
    "  if kind == 5 then return S.gsub(s, p, r, 1) end\n"
    "  if kind == 6 then return S.gsub(s, p, r, math.floor(mode / 64)) end\n"
    "  return S.find(s, p)\n"
    "end\n"
    "function compare(mode, s, p)\n"
    "  local b = pack(pcall(call, N, mode, s, p))\n"
    "  if b[1] == false and tostring(b[2]):find('time limit exceeded', 1, true) then return 'budget' end\n"
    "  local a = pack(pcall(call, O, mode, s, p))\n"
    "  if a[1] == false and b[1] == false then return 'both failed' end\n"
    "  if a.n ~= b.n then return 'MISMATCH ' .. show(a) .. ' ' .. show(b) end\n"
    "  for i = 1, a.n do if a[i] ~= b[i] then return 'MISMATCH LuaJIT ' .. show(a) .. ', pt_lpat ' .. "
    "show(b) end end\n"
    "  return 'same'\n"
    "end\n";

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    if (!L)
        abort();
    luaL_openlibs(L);
    lua_getglobal(L, "string");
    lua_setglobal(L, "O");
    lua_newtable(L);
    lua_getglobal(L, "string");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_settable(L, -5);
    }
    lua_pop(L, 1);
    pt_lpat_install(L, -1, &env);
    lua_setglobal(L, "N");
    if (luaL_dostring(L, COMPARE)) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        abort();
    }
    return L;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lua_State *L;
    if (!L)
        L = new_state();
    if (size < 2)
        return 0;
    int mode = data[0];
    size_t plen = data[1];
    data += 2;
    size -= 2;
    if (plen > size)
        plen = size;
    size_t slen = size - plen;
    if (slen > MAX_SUBJECT)
        slen = MAX_SUBJECT;
    polls = 0;
    lua_getglobal(L, "compare");
    lua_pushinteger(L, mode);
    lua_pushlstring(L, (const char *)data + plen, slen);
    lua_pushlstring(L, (const char *)data, plen);
    if (lua_pcall(L, 3, 1, 0)) {
        fprintf(stderr, "compare failed: %s\n", lua_tostring(L, -1));
        abort();
    }
    const char *verdict = lua_tostring(L, -1);
    if (!verdict || !strncmp(verdict, "MISMATCH", 8)) {
        fprintf(stderr, "mode %d pattern '%.*s': %s\n", mode, (int)plen, (const char *)data,
                verdict ? verdict : "(no verdict)");
        abort();
    }
    lua_pop(L, 1);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}

/* Seeds for the standalone runner (standalone.c): after the mode byte it adds, the pattern's length byte,
   the pattern, the subject. */
const char *fuzz_name = "fuzz_lpat";
const char *const fuzz_seeds[] = {
    "\x0b(%w+)=(%w+)key=value&k2=v2",
    "\x17/api/(v%d+)/(%w+)/(%d+)/api/v1/items/42",
    "\x06%b()x(a(b)c)d",
    "\x0c%f[%w]%w+%1THE (quick) fox",
    "\x0c.-.-.-.-.-baaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "\x0a[^%s]+()%s hello  world\tx",
    "\x03(.)%1aabbcc",
    "\x05[%]]-[]]]-x",
    "\x08^(a*)$()aaaa",
    "\x04%z+xx\\0\\0y",
    "\x07([a-c]+abcabc",
    NULL,
};
