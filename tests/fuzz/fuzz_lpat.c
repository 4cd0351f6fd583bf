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
#include "../unit/lpat_twins.h"

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
static const char COMPARE[] = LPAT_TWINS_LUA
    "local inits = {false, 1, 2, -1, -3, 0, 5, 100}\n"
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
    char err[512];
    lua_State *L = lpat_twins(&env, COMPARE, err, sizeof(err));
    if (!L) {
        fprintf(stderr, "%s\n", err);
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
