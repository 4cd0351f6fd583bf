/*
 * test_lpat -- the budgeted pattern functions against LuaJIT's own.
 *
 * A fresh state holds the original string library as O and a copy whose
 * find/match/gmatch/gsub are pt_lpat's as N (lpat_twins.h).  Lua snippets run the same
 * calls through both and compare everything they return (or that both
 * fail): a fixed table of cases covering every pattern item, then a few
 * thousand random patterns and subjects from a seeded generator.  Then the
 * budget: a pathological pattern stops with "time limit exceeded" once the
 * callback says so, and the subject cap refuses long subjects.
 */
#include "lpat_twins.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static int polls, polls_allowed = -1;

static bool expired(void)
{
    polls++;
    return polls_allowed >= 0 && polls > polls_allowed;
}

static struct pt_lpat_env env = {0, expired};

static const char COMPARE[] =
    LPAT_TWINS_LUA "local function same(a, b)\n"
                   "  if a.n ~= b.n then return false end\n"
                   "  for i = 1, a.n do if a[i] ~= b[i] then return false end end\n"
                   "  return true\n"
                   "end\n"
                   /* both succeed with the same values, or both fail */
                   "function check(what, f, g, ...)\n"
                   "  local a, b = pack(pcall(f, ...)), pack(pcall(g, ...))\n"
                   "  if a[1] == false and b[1] == false then return end\n"
                   "  if not same(a, b) then\n"
                   "    local args = pack(...)\n"
                   "    error(what .. show(args) .. ': LuaJIT ' .. show(a) .. ', pt_lpat ' .. show(b), 0)\n"
                   "  end\n"
                   "end\n"
                   "function compare(s, p)\n"
                   "  for _, init in ipairs({false, 1, 2, 3, -1, -2, 0, 50}) do\n"
                   "    local i = init or nil\n"
                   "    check('find', O.find, N.find, s, p, i)\n"
                   "    check('find plain', O.find, N.find, s, p, i, true)\n"
                   "    check('match', O.match, N.match, s, p, i)\n"
                   "  end\n"
                   "  check('gmatch', function(s, p) return all(O.gmatch, s, p) end,\n"
                   "        function(s, p) return all(N.gmatch, s, p) end, s, p)\n"
                   "  for _, r in ipairs({'[%0]', '%1-%1', '%%', 'x%', 7, repl_t, repl_f}) do\n"
                   "    check('gsub', O.gsub, N.gsub, s, p, r)\n"
                   "    check('gsub 1', O.gsub, N.gsub, s, p, r, 1)\n"
                   "  end\n"
                   "end\n";

static lua_State *new_state(void)
{
    char err[512];
    lua_State *L = lpat_twins(&env, COMPARE, err, sizeof(err));
    if (!L)
        fail_msg("%s", err);
    return L;
}

static void run(lua_State *L, const char *code)
{
    if (luaL_dostring(L, code))
        fail_msg("%s", lua_tostring(L, -1));
}

static void test_table_of_cases(void **state)
{
    (void)state;
    lua_State *L = new_state();
    run(L,
        "local subjects = {'', 'a', 'hello world', 'aaa', 'abcabc', ' x = 10, y = 20 ', 'THE (quick) fox',\n"
        "  'f(a(b)c)d', '[[x]]', 'a.b-c+d*e?f^g$h%i', 'tab\\there\\nnl', 'x\\0y\\0z', '\\200\\255é', "
        "'123abc456', 'x%]y', 'm-%%]`',\n"
        "  'key=value&k2=v2', '/api/v1/items/42', 'aXbXc', 'THE END'}\n"
        "local patterns = {'', 'a', 'l+', 'l*', 'l-', 'l?', 'o', '.', '.-', '.*', '^h', '^', '$', 'd$', "
        "'^$',\n"
        "  '%a+', '%A+', '%d+', '%D', '%g+', '%G', '%l+', '%u+', '%s', '%S+', '%w+', '%W', '%x+', '%p', "
        "'%c', '%z',\n"
        "  '[aeiou]', '[^aeiou]+', '[a-c]+', '[%a%d]+', '[%]]', '[]]', '[^]]', '[a-]', '[-a]', '[%-]',\n"
        "  '(a)', '(a+)(b*)', '()a()', '(h)(e)(l)(l)(o)', '((a)(b))', '(%w+)=(%w+)', '%f[%w]%w+', '%f[%W]',\n"
        "  '%b()', '%b[]', '%bxy', '(a)%1', '(%w)%1', '(.)(.)%2%1', 'x%', '%', '[a', '(', ')', '(()', '%1',\n"
        "  '%0', '(a)%2', '%f', '%fa', '%b', '%ba', 'a-b', '.-b', '.-$', '[%s]*', 'X', '%.', '%%', '%$',\n"
        "  '$a', 'a$b', '^^', '%^', '[^%s]+', 'é', '\\0', '%z+', '[\\0-\\31]', '.-%-', 'THE%s*(%w+)$',\n"
        "  '/api/(v%d+)/(%w+)/(%d+)', '([^&=]+)=([^&=]*)', '(%d+)(%a+)(%d+)', '*', '+', '-', '?', 'a**',\n"
        "  '[a-z][A-Z]', '[z-a]', '%w-%d', '(x*)', '()', '(())', '%f[%z]', '[m-%%]', '.-[f.m-%%]', "
        "'[%a-%%]'}\n"
        "for _, s in ipairs(subjects) do for _, p in ipairs(patterns) do compare(s, p) end end\n");
    lua_close(L);
}

static void test_random_patterns(void **state)
{
    (void)state;
    lua_State *L = new_state();
    run(L, "local seed = 12345\n"
           "local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n + 1 end\n"
           "local atoms = {'a', 'b', '.', '%a', '%d', '%s', '%W', '[ab]', '[^a]', '[%d%s]', '[a-c]', '%%', "
           "'x',\n"
           "  '1', '(', ')', '()', '%1', '%2', '%ba)', '%b()', '%f[%a]', '%f[%A]', '^', '$', ' ', '-', '[]', "
           "'[^]'}\n"
           "local quant = {'', '', '', '*', '+', '-', '?'}\n"
           "local chars = {'a', 'b', 'c', '1', '2', ' ', '(', ')', 'x', '%', '-'}\n"
           "for _ = 1, 20000 do\n"
           "  local p = {}\n"
           "  for _ = 1, rnd(6) do p[#p + 1] = atoms[rnd(#atoms)] .. quant[rnd(#quant)] end\n"
           "  local s = {}\n"
           "  for _ = 1, rnd(12) - 1 do s[#s + 1] = chars[rnd(#chars)] end\n"
           "  compare(table.concat(s), table.concat(p))\n"
           "end\n");
    lua_close(L);
}

static void test_pathological_pattern_stops_on_the_budget(void **state)
{
    (void)state;
    lua_State *L = new_state();
    polls = 0;
    polls_allowed = 50; /* about 200,000 steps */
    run(L, "local ok, err = pcall(N.find, string.rep('a', 4000), '.-.-.-.-b')\n"
           "assert(not ok and err:find('time limit exceeded', 1, true), tostring(err))\n"
           "ok, err = pcall(N.gsub, string.rep('a', 3000), '(.-)(.-)(.-)b', 'x')\n"
           "assert(not ok and err:find('time limit exceeded', 1, true), tostring(err))\n"
           "ok, err = pcall(N.match, string.rep('a', 3000), '^(a*)*b')\n"
           "assert(ok or err:find('time limit', 1, true), tostring(err))\n");
    assert_true(polls > 50 && polls < 60);
    /* and a gmatch loop cannot hide the budget behind many small calls: each call is bounded */
    polls = 0;
    run(L,
        "local ok, err = pcall(function() for _ in N.gmatch(string.rep('a', 3000), 'a.-.-.-b') do end end)\n"
        "assert(not ok and err:find('time limit exceeded', 1, true), tostring(err))\n");
    polls_allowed = -1;
    /* a matcher nested too deep is refused as LuaJIT refuses it */
    run(L, "local ok, err = pcall(N.find, string.rep('a', 300), string.rep('a?', 300))\n"
           "assert(not ok and err:find('too complex', 1, true), tostring(err))\n"
           "assert(not pcall(O.find, string.rep('a', 300), string.rep('a?', 300)))\n");
    lua_close(L);
}

static void test_subject_cap(void **state)
{
    (void)state;
    struct pt_lpat_env capped = {100, NULL};
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_getglobal(L, "string");
    pt_lpat_install(L, -1, &capped);
    lua_pop(L, 1);
    run(L, "local s = string.rep('x', 101)\n"
           "for _, f in ipairs({string.find, string.match, string.gmatch, string.gsub}) do\n"
           "  local ok, err = pcall(f, s, 'x+', f == string.gsub and '' or nil)\n"
           "  assert(not ok and err:find('lua.patternLimit', 1, true), tostring(err))\n"
           "end\n"
           "assert(string.find(s, 'xx', 1, true) == 1)\n" /* plain finds are linear: exempt */
           "assert(string.find(s, 'xx') == 1)\n"
           "assert(select(2, string.gsub(string.rep('x', 100), 'x', 'y')) == 100)\n");
    lua_close(L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_of_cases),
        cmocka_unit_test(test_random_patterns),
        cmocka_unit_test(test_pathological_pattern_stops_on_the_budget),
        cmocka_unit_test(test_subject_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
