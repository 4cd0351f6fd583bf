/*
 * test_luahelp -- the Lua helper library: json, base64(url), url, crypto,
 * jwt and basic, driven through Lua snippets run against a fresh state with
 * the helpers as global `h`.  Snippets assert with eq()/bad() (see PRELUDE);
 * any Lua error fails the test.
 */
#include "lua/pt_luahelp.h"

#include <lauxlib.h>
#include <lualib.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const char PRELUDE[] =
    "function eq(got, want, what)\n"
    "  if got ~= want then\n"
    "    error(string.format('%s: got %q, want %q', what or 'value', tostring(got), tostring(want)), 2)\n"
    "  end\n"
    "end\n"
    /* bad(v, err): v is nil and err a string (optionally containing pat) */
    "function bad(v, err, pat, what)\n"
    "  if v ~= nil or type(err) ~= 'string' or (pat and not err:find(pat, 1, true)) then\n"
    "    error(string.format('%s: expected nil + message%s, got %s, %s', what or 'call',\n"
    "          pat and (' with ' .. pat) or '', tostring(v), tostring(err)), 2)\n"
    "  end\n"
    "end\n"
    /* raises(pat, f, ...): f(...) raises an error containing pat */
    "function raises(pat, f, ...)\n"
    "  local ok, err = pcall(f, ...)\n"
    "  if ok or not tostring(err):find(pat, 1, true) then\n"
    "    error('expected an error with ' .. pat .. ', got ' .. tostring(ok) .. ' ' .. tostring(err), 2)\n"
    "  end\n"
    "end\n"
    "function hex(s) return h.crypto.hex(s) end\n";

static void run(lua_State *L, const char *code)
{
    int top = lua_gettop(L);
    if (luaL_loadstring(L, code) != 0 || lua_pcall(L, 0, 0, 0) != 0)
        fail_msg("Lua: %s", lua_tostring(L, -1));
    assert_int_equal(lua_gettop(L), top);
}

static void open_helpers(lua_State *L)
{
    luaL_openlibs(L);
    pt_luahelp_push(L);
    assert_int_equal(lua_type(L, -1), LUA_TTABLE);
    lua_setglobal(L, "h");
    run(L, PRELUDE);
}

static int setup(void **state)
{
    lua_State *L = luaL_newstate();
    if (!L)
        return -1;
    open_helpers(L);
    *state = L;
    return 0;
}

static int teardown(void **state)
{
    lua_close(*state);
    return 0;
}

static void test_json_encode(void **state)
{
    run(*state,
        "local e = h.json.encode\n"
        "eq(e({a=1}), '{\"a\":1}')\n"
        "eq(e({b=2, a=1, c={}}), '{\"a\":1,\"b\":2,\"c\":{}}', 'keys sorted')\n"
        "eq(e({1, 2, 'x'}), '[1,2,\"x\"]')\n"
        "eq(e({}), '{}', 'empty table')\n"
        "eq(e({[1]=1, [3]=3}), '{\"1\":1,\"3\":3}', 'sparse')\n"
        "eq(e({1, 2, x=3}), '{\"1\":1,\"2\":2,\"x\":3}', 'mixed')\n"
        "eq(e({[1.5]=true}), '{\"1.5\":true}', 'float key')\n"
        "eq(e({h.json.null, false, {}}), '[null,false,{}]')\n"
        "eq(e(nil), 'null'); eq(e(h.json.null), 'null'); eq(e(true), 'true')\n"
        "eq(e({a={b={c={1,{d='e'}}}}}), '{\"a\":{\"b\":{\"c\":[1,{\"d\":\"e\"}]}}}')\n"
        /* numbers */
        "eq(e(42), '42'); eq(e(-7), '-7'); eq(e(0), '0'); eq(e(-0.0), '0')\n"
        "eq(e(2^53), '9007199254740992'); eq(e(-2^53), '-9007199254740992')\n"
        "eq(e(2^53 + 2), '9007199254740994'); eq(e(2^60), '1.152921504606847e+18')\n"
        "eq(e(1.5), '1.5'); eq(e(0.1), '0.1'); eq(e(-2.25e-7), '-2.25e-07'); eq(e(1e300), '1e+300')\n"
        "eq(h.json.decode(e(1/3)), 1/3, '1/3 round trip')\n"
        "raises('NaN', e, 0/0); raises('infinity', e, math.huge); raises('infinity', e, {-math.huge})\n"
        /* strings */
        "eq(e('a\"b\\\\c/\\n\\r\\t\\b\\f\\0\\1\\31 '), [[\"a\\\"b\\\\c/\\n\\r\\t\\b\\f\\u0000\\u0001\\u001f "
        "\"]])\n"
        "eq(e('\\195\\169\\226\\130\\172\\240\\159\\152\\128'), "
        "'\"\\195\\169\\226\\130\\172\\240\\159\\152\\128\"', "
        "'UTF-8 passes through')\n"
        "eq(e({['k\"']='v'}), [[{\"k\\\"\":\"v\"}]], 'escaped key')\n"
        "raises('UTF-8', e, '\\255'); raises('UTF-8', e, '\\192\\128'); raises('UTF-8', e, "
        "'\\237\\160\\128')\n"
        "raises('UTF-8', e, '\\224\\128\\128'); raises('UTF-8', e, 'x\\195'); raises('UTF-8', e, "
        "'\\244\\144\\128\\128')\n"
        /* what cannot be encoded */
        "raises('function', e, print); raises('function', e, {f=print})\n"
        "raises('boolean keys', e, {[true]=1}); raises('table keys', e, {[{}]=1})\n"
        "raises('two keys', e, {[1]=1, ['1']=2, x=0})\n"
        "raises('bad argument', e)\n");
}

static void test_json_encode_limits(void **state)
{
    run(*state, "local function nest(n) local t = {} for i = 2, n do t = {t} end return t end\n"
                "eq(#h.json.encode(nest(64)), 64 * 2, 'depth 64 is fine')\n"
                "raises('deeper than 64', h.json.encode, nest(65))\n"
                "local t = {} t.self = t\n"
                "raises('contains itself', h.json.encode, t)\n"
                "local a = {} local b = {a} a[1] = b\n"
                "raises('contains itself', h.json.encode, {a})\n"
                "local shared = {1} eq(h.json.encode({shared, shared}), '[[1],[1]]', 'shared is no cycle')\n"
                "local big = string.rep('x', 9 * 1024 * 1024)\n"
                "raises('larger than', h.json.encode, {big, big})\n");
}

static void test_json_decode(void **state)
{
    run(*state,
        "local d = h.json.decode\n"
        "local v = d([[ "
        "{\"a\":[1,2,{\"b\":null}],\"c\":\"x\\u00e9\\ud83d\\ude00\\n\\/\",\"d\":true,\"e\":false,"
        "\"f\":-0.5e1, \"g\":{}} ]])\n"
        "eq(#v.a, 3); eq(v.a[1], 1); eq(v.a[3].b, h.json.null, 'null')\n"
        "eq(v.c, 'x\\195\\169\\240\\159\\152\\128\\n/', 'escapes')\n"
        "eq(v.d, true); eq(v.e, false); eq(v.f, -5); eq(next(v.g), nil)\n"
        "eq(d('{\"a\":1,\"a\":2}').a, 2, 'last duplicate wins')\n"
        "eq(d('\"\\195\\169\"'), '\\195\\169', 'raw UTF-8')\n"
        "eq(d('\"a\\\\u0000b\"'), 'a\\0b', 'NUL escape')\n"
        "eq(d('[null,null]')[2], h.json.null)\n"
        /* numbers */
        "eq(d('9007199254740991'), 2^53 - 1); eq(d('-9007199254740992'), -2^53)\n"
        "eq(d('123456789012345678'), 123456789012345678)\n"
        "eq(h.json.encode(d('123456789012345')), '123456789012345')\n"
        "eq(d('0.1'), 0.1); eq(d('1E3'), 1000); eq(d('2.5e-3'), 0.0025); eq(d('-0'), 0)\n"
        "eq(d('0.1000000000000000055511151231257827'), 0.1, 'long mantissa')\n"
        /* round trip */
        "local s = "
        "[[{\"arr\":[1,2.5,\"x\",null,true,{\"k\":\"v\"}],\"n\":-3,\"s\":\"\\\"q\\\"\\\\\\u0001\"}]]\n"
        "eq(h.json.encode(d(s)), s, 'round trip')\n"
        /* invalid: nil + message, never an error */
        "for _, s in ipairs({'', ' ', '{', '[1,]', '{\"a\":1,}', '{\"a\" 1}', '{a:1}', \"{'a':1}\",\n"
        "    'tru', 'nul', '01', '1.', '.5', '-', '+1', '1e', '0x10', 'NaN', 'Infinity', '1e999',\n"
        "    '\"abc', '\"\\1\"', '\"\\\\x\"', '\"\\\\u12\"', '\"\\\\ud800\"', '\"\\\\udc00\"',\n"
        "    '\"\\\\ud800\\\\u0041\"', '\"\\255\"', '\"\\237\\160\\128\"', '\"\\224\\128\\128\"', "
        "'\"x\\195\"', '[1] x', '[1][2]', '\\239\\187\\191[]'}) do\n"
        "  local v, err = d(s)\n"
        "  bad(v, err, 'invalid JSON', s)\n"
        "end\n"
        "bad(d('[1,x]'), select(2, d('[1,x]')), 'offset 3')\n"
        "raises('bad argument', d, {}); raises('bad argument', d)\n");
}

static void test_json_decode_depth(void **state)
{
    run(*state,
        "local d = h.json.decode\n"
        "local ok = d(string.rep('[', 64) .. string.rep(']', 64))\n"
        "local n = 0 while type(ok) == 'table' do n = n + 1 ok = ok[1] end eq(n, 64, 'depth 64 decodes')\n"
        "bad(d(string.rep('[', 65) .. string.rep(']', 65)), select(2, d(string.rep('[', 65) .. "
        "string.rep(']', "
        "65))), 'too deep')\n"
        "local v, err = d(string.rep('{\"a\":', 65) .. '1' .. string.rep('}', 65))\n"
        "bad(v, err, 'too deep', 'objects')\n"
        "bad(d(string.rep('[', 100000)), select(2, d(string.rep('[', 100000))), 'too deep')\n");
}

static void test_json_c_api(void **state)
{
    lua_State *L = *state;
    int top = lua_gettop(L);
    assert_true(pt_luahelp_json_decode(L, "{\"x\":[null]}", 12));
    lua_getfield(L, -1, "x");
    lua_rawgeti(L, -1, 1);
    assert_true(pt_luahelp_is_null(L, -1));
    lua_settop(L, top);
    assert_false(pt_luahelp_json_decode(L, "{\"x\":", 5));
    assert_non_null(strstr(lua_tostring(L, -1), "end of input"));
    lua_pop(L, 1);
    pt_luahelp_push_null(L);
    assert_true(pt_luahelp_is_null(L, -1));
    lua_pushlightuserdata(L, L);
    assert_false(pt_luahelp_is_null(L, -1));
    lua_settop(L, top);
}

static void test_base64(void **state)
{
    run(*state,
        "local vec = {{'', ''}, {'f', 'Zg=='}, {'fo', 'Zm8='}, {'foo', 'Zm9v'}, {'foob', 'Zm9vYg=='},\n"
        "             {'fooba', 'Zm9vYmE='}, {'foobar', 'Zm9vYmFy'}}\n"
        "for _, v in ipairs(vec) do\n"
        "  eq(h.base64.encode(v[1]), v[2], 'encode ' .. v[1])\n"
        "  eq(h.base64.decode(v[2]), v[1], 'decode ' .. v[2])\n"
        "  local bare = v[2]:gsub('=', '')\n"
        "  eq(h.base64.decode(bare), v[1], 'decode unpadded ' .. bare)\n"
        "  eq(h.base64url.encode(v[1]), bare, 'url encode ' .. v[1])\n"
        "  eq(h.base64url.decode(bare), v[1], 'url decode ' .. bare)\n"
        "end\n"
        "eq(h.base64.encode('\\251\\255\\254'), '+//+'); eq(h.base64url.encode('\\251\\255\\254'), '-__-')\n"
        "eq(h.base64.encode('\\255\\254'), '//4='); eq(h.base64url.encode('\\255\\254'), '__4')\n"
        "eq(h.base64url.decode('-__-'), '\\251\\255\\254'); eq(h.base64url.decode('__4='), '\\255\\254')\n"
        "eq(h.base64url.decode('+//+'), nil, 'std alphabet in url'); eq(h.base64.decode('-__-'), nil)\n"
        "for _, s in ipairs({'Z', 'Zg=', 'Zg===', 'Zm9v!', 'Zm9v Zg', 'Zg==Zg==', '====', '=', 'Zm9=v'}) do\n"
        "  eq(h.base64.decode(s), nil, 'invalid ' .. s)\n"
        "end\n"
        "local all = {} for i = 0, 255 do all[#all + 1] = string.char(i) end all = table.concat(all)\n"
        "eq(h.base64.decode(h.base64.encode(all)), all); eq(h.base64url.decode(h.base64url.encode(all)), "
        "all)\n"
        "raises('bad argument', h.base64.encode, nil); raises('bad argument', h.base64url.decode, {})\n");
}

static void test_url(void **state)
{
    run(*state,
        "eq(h.url.encode('a b&c=d/\\195\\169~-_.!*()'), 'a%20b%26c%3Dd%2F%C3%A9~-_.%21%2A%28%29')\n"
        "eq(h.url.encode('AZaz09'), 'AZaz09'); eq(h.url.encode(''), '')\n"
        "eq(h.url.decode('a%20b+c%2f%2F%C3%a9'), 'a b+c//\\195\\169', 'plus stays')\n"
        "eq(h.url.decodeForm('a+b%2B+'), 'a b+ ', 'plus is space')\n"
        "eq(h.url.decode('%00'), '\\0')\n"
        "for _, s in ipairs({'%', '%2', 'a%zz', '%g0', 'x%2'}) do\n"
        "  eq(h.url.decode(s), nil, 'bad escape ' .. s); eq(h.url.decodeForm(s), nil, 'form ' .. s)\n"
        "end\n"
        "local all = {} for i = 0, 255 do all[#all + 1] = string.char(i) end all = table.concat(all)\n"
        "eq(h.url.decode(h.url.encode(all)), all, 'round trip')\n"
        "raises('bad argument', h.url.encode, nil)\n");
}

static void test_crypto(void **state)
{
    run(*state,
        "local c = h.crypto\n"
        "eq(hex(c.sha256('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')\n"
        "eq(#c.sha256(''), 32)\n"
        "eq(hex(c.sha1('abc')), 'a9993e364706816aba3e25717850c26c9cd0d89d')\n"
        "eq(hex(c.md5('abc')), '900150983cd24fb0d6963f7d28e17f72')\n"
        "eq(hex(c.sha512('abc')), 'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a'"
        "  .. '2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f')\n"
        /* RFC 4231 test case 2, RFC 2202 test case 2 */
        "local k, m = 'Jefe', 'what do ya want for nothing?'\n"
        "eq(hex(c.hmac('sha256', k, m)), "
        "'5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843')\n"
        "eq(hex(c.hmac('sha384', k, m)), 'af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec373632244'"
        "  .. '5e8e2240ca5e69e2c78b3239ecfab21649')\n"
        "eq(hex(c.hmac('sha512', k, m)), '164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554'"
        "  .. '9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737')\n"
        "eq(hex(c.hmac('sha1', k, m)), 'effcdf6ae5eb2fa2d27416d5f184df9c259a7c79')\n"
        "eq(hex(c.hmac('md5', k, m)), '750c783e6ab0b503eaa86e310a5db738')\n"
        "eq(hex(c.hmac('sha256', '', '')), "
        "'b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad')\n"
        "raises('unknown HMAC', c.hmac, 'sha3', k, m); raises('bad argument', c.hmac, 'sha256', nil, m)\n"
        "eq(hex('\\0\\1\\171\\255'), '0001abff'); eq(hex(''), '')\n"
        "eq(c.equals('abc', 'abc'), true); eq(c.equals('abc', 'abd'), false)\n"
        "eq(c.equals('abc', 'ab'), false); eq(c.equals('ab', 'abc'), false); eq(c.equals('', ''), true)\n"
        "raises('bad argument', c.equals, 'a')\n"
        "local r1, r2 = c.random(32), c.random(32)\n"
        "eq(#r1, 32); assert(r1 ~= r2, 'random repeats'); eq(c.random(0), ''); eq(#c.random(1024), 1024)\n"
        "raises('between', c.random, 1025); raises('between', c.random, -1); raises('bad argument', "
        "c.random, 'x')\n");
}

static void test_jwt(void **state)
{
    run(*state,
        "local b = h.base64url.encode\n"
        "local hdr = '{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"k1\"}'\n"
        "local pl = '{\"jti\":\"id1\",\"iss\":\"https://issuer\",\"sub\":\"user@x\",\"aud\":\"api://a\",'\n"
        "  .. '\"exp\":1700000000,\"nbf\":1690000000,\"iat\":1690000001,\"roles\":[\"a\",\"b\"],\"n\":5,'\n"
        "  .. '\"big\":2.5,\"o\":{\"x\":1},\"z\":null,\"e\":[]}'\n"
        "local tok = b(hdr) .. '.' .. b(pl) .. '.' .. b('sig\\0\\255')\n"
        "local t = assert(h.jwt.parse(tok))\n"
        "eq(t.algorithm, 'RS256'); eq(t.type, 'JWT'); eq(t.keyId, 'k1'); eq(t.header.kid, 'k1')\n"
        "eq(t.id, 'id1'); eq(t.issuer, 'https://issuer'); eq(t.subject, 'user@x')\n"
        "eq(#t.audiences, 1); eq(t.audiences[1], 'api://a')\n"
        "eq(t.expirationTime, 1700000000); eq(t.notBefore, 1690000000); eq(t.issuedAt, 1690000001)\n"
        "eq(t.signature, 'sig\\0\\255'); eq(t.signingInput, b(hdr) .. '.' .. b(pl)); eq(t.claims.n, 5)\n"
        "local claim = h.jwt.claim\n"
        "eq(claim(t, 'roles'), 'a,b'); eq(claim(t, 'sub'), 'user@x'); eq(claim(t, 'n'), '5')\n"
        "eq(claim(t, 'big'), '2.5'); eq(claim(t, 'o'), '{\"x\":1}'); eq(claim(t, 'e', 'd'), '')\n"
        "eq(claim(t, 'missing', 'def'), 'def'); eq(claim(t, 'missing'), nil); eq(claim(t, 'z', 'd'), 'd')\n"
        "raises('parsed JWT', claim, {}, 'x'); raises('bad argument', claim, t)\n"
        /* aud as an array; no exp; no signature (alg none) */
        "t = assert(h.jwt.parse(b('{\"alg\":\"none\"}') .. '.' .. "
        "b('{\"aud\":[\"x\",7,\"y\"],\"exp\":\"soon\"}') "
        ".. '.'))\n"
        "eq(#t.audiences, 2); eq(t.audiences[1], 'x'); eq(t.audiences[2], 'y'); eq(t.expirationTime, nil)\n"
        "eq(t.signature, ''); eq(t.type, nil); eq(claim(t, 'aud'), 'x,7,y')\n"
        "eq(#assert(h.jwt.parse(b(hdr) .. '.' .. b('{}') .. '.eA')).audiences, 0, 'no aud')\n"
        /* the jwt.io example token, checked with its HMAC key */
        "local io = "
        "'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0'\n"
        "  .. 'IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c'\n"
        "t = assert(h.jwt.parse(io))\n"
        "eq(t.subject, '1234567890'); eq(t.issuedAt, 1516239022); eq(claim(t, 'name'), 'John Doe')\n"
        "assert(h.crypto.equals(h.crypto.hmac('sha256', 'your-256-bit-secret', t.signingInput), "
        "t.signature))\n"
        /* bad tokens */
        "local p = b(pl)\n"
        "for _, s in ipairs({'', 'abc', 'a.b', 'a.b.c.d.e', '..', b(hdr) .. '.!!.eA', '!!.' .. p .. '.eA',\n"
        "    b(hdr) .. '.' .. p .. '.@@', b('[1]') .. '.' .. p .. '.eA', b(hdr) .. '.' .. b('{') .. '.eA',\n"
        "    b(hdr) .. '.' .. b('\"s\"') .. '.eA', b('{\"typ\":\"JWT\"}') .. '.' .. p .. '.eA',\n"
        "    b('{\"alg\":1}') .. '.' .. p .. '.eA', b(hdr) .. '.' .. b('{} x') .. '.eA'}) do\n"
        "  local v, err = h.jwt.parse(s)\n"
        "  bad(v, err, 'JWT', s)\n"
        "end\n"
        "raises('bad argument', h.jwt.parse, nil)\n");
}

static void test_basic(void **state)
{
    run(*state, "local B = h.base64.encode\n"
                "local c = assert(h.basic.parse('Basic ' .. B('alice:pa:ss')))\n"
                "eq(c.userId, 'alice'); eq(c.password, 'pa:ss', 'split at first colon')\n"
                "c = assert(h.basic.parse(' \\tbAsIc   ' .. B('bob:') .. '  '))\n"
                "eq(c.userId, 'bob'); eq(c.password, '')\n"
                "c = assert(h.basic.parse(B(':p'))); eq(c.userId, ''); eq(c.password, 'p')\n"
                "c = assert(h.basic.parse('basic ' .. B('u:p'):gsub('=', ''))); eq(c.userId, 'u')\n"
                "for _, s in ipairs({'', 'Basic', 'Basic ', 'Bearer ' .. B('u:p'), 'Basic !!!!', 'Basic ' .. "
                "B('nocolon'),\n"
                "    'Basic ' .. B('u:p') .. ' x', 'Basic' .. B('u:p'), 'Digest x=y'}) do\n"
                "  eq(h.basic.parse(s), nil, s)\n"
                "end\n"
                "raises('bad argument', h.basic.parse, nil)\n");
}

static void test_input_bound(void **state)
{
    run(*state, "local big = string.rep('a', 16 * 1024 * 1024 + 1)\n"
                "for _, f in ipairs({h.json.decode, h.base64.encode, h.base64url.decode, h.url.decode,\n"
                "    h.crypto.sha256, h.crypto.hex, h.jwt.parse, h.basic.parse}) do\n"
                "  raises('larger than', f, big)\n"
                "end\n"
                "raises('larger than', h.crypto.hmac, 'sha256', 'k', big)\n"
                "eq(#h.crypto.sha256(big:sub(2)), 32, 'exactly 16 MiB is fine')\n");
}

/* An allocator that refuses to grow past a limit, as the sandbox's does. */
struct capped {
    size_t used, limit;
};

static void *capped_alloc(void *ud, void *p, size_t osize, size_t nsize)
{
    struct capped *c = ud;
    if (nsize == 0) {
        free(p);
        c->used -= p ? osize : 0;
        return NULL;
    }
    size_t old = p ? osize : 0;
    if (nsize > old && c->used + (nsize - old) > c->limit)
        return NULL;
    void *q = realloc(p, nsize);
    if (q)
        c->used = c->used - old + nsize;
    return q;
}

static void test_memory_errors(void **state)
{
    (void)state;
    struct capped cap = {0, (size_t)64 << 20};
    lua_State *L = lua_newstate(capped_alloc, &cap);
    if (!L)
        skip(); /* this LuaJIT build cannot take a custom allocator */
    open_helpers(L);
    run(L, "big = string.rep('\\1', 1024 * 1024)\n"
           "tab = {} for i = 1, 2000 do tab[i] = {k = 'value ' .. i, n = i} end\n"
           "jtext = h.json.encode(tab)\n"
           "jbig = '[' .. string.rep('{\"k\":\"v\"},', 20000) .. '1]'\n");
    /* now only a little more memory: every helper must fail cleanly */
    run(L, "collectgarbage()");
    cap.limit = cap.used + (64 << 10);
    run(L, "local fails = 0\n"
           /* LuaJIT has no emergency GC: collect after each failure so the
              garbage a failed call leaves does not starve the next one */
           "local function try(f, ...)\n"
           "  local ok, v, err = pcall(f, ...)\n"
           "  collectgarbage()\n"
           "  if not ok then fails = fails + 1 assert(tostring(v):find('memory'), tostring(v)) end\n"
           "  assert(not ok or v ~= nil, 'memory error reported as a result: ' .. tostring(err))\n"
           "end\n"
           "for i = 1, 3 do\n"
           "  try(h.json.decode, jbig)\n"
           "  try(h.json.encode, {big, big}); try(h.json.encode, tab); try(h.json.decode, jtext)\n"
           "  try(h.base64.encode, big); try(h.url.encode, big); try(h.crypto.hex, big)\n"
           "end\n"
           "assert(fails >= 15, 'expected memory errors, got ' .. fails)\n");
    /* and the state is still usable afterwards */
    cap.limit = (size_t)256 << 20;
    run(L, "eq(#h.json.decode(jtext), 2000); eq(#h.crypto.hex(big), 2 * 1024 * 1024)\n");
    lua_close(L);
    assert_int_equal(cap.used, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json_encode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_encode_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_decode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_decode_depth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_c_api, setup, teardown),
        cmocka_unit_test_setup_teardown(test_base64, setup, teardown),
        cmocka_unit_test_setup_teardown(test_url, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crypto, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jwt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_input_bound, setup, teardown),
        cmocka_unit_test(test_memory_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
