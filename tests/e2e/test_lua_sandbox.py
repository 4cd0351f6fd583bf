"""The Lua sandbox: every breach fails only its own request (500, on-error
runs, reason logged); requests running in parallel on the same worker are
unaffected, and the worker keeps serving afterwards."""

import json
import threading
import time

import pytest

from conftest import basic_config


def sandbox_config(backend_url, expr, timeout="100ms", memory="16m"):
    cfg = basic_config(backend_url)
    cfg["lua"] = {"timeout": timeout, "memory": memory}
    cfg["apis"][0]["operations"].insert(0, {
        "id": "evil", "method": "GET", "urlTemplate": "/evil",
        "policies": {"inbound": [{"set-variable": {"name": "x", "value": expr}}]}})
    cfg["apis"][0]["operations"].insert(0, {
        "id": "good", "method": "GET", "urlTemplate": "/good",
        "policies": {"inbound": [
            {"set-variable": {"name": "y", "value": "@(string.upper('fine') .. #string.rep('a', 3))"}},
            {"return-response": {"set-body": "@(context.variables.y)"}}]}})
    cfg["policies"] = {"on-error": [{"return-response": {
        "set-status": {"code": 500, "reason": "Sandboxed"},
        "set-header": {"name": "X-Reason", "value": "@(context.lastError.reason)"},
        "set-body": "@(context.lastError.message)"}}]}
    return cfg


CASES = [
    ("busy-loop", "@{ while true do end }", "time limit"),
    ("busy-loop-jit-hot", "@{ local i = 0; while true do i = i + 1 end }", "time limit"),
    ("rep-huge", "@(string.rep('x', 2^30))", "too large"),
    ("rep-method", "@(('x'):rep(2^30))", "too large"),
    ("table-growth", "@{ local t = {}; for i = 1, 1e9 do t[i] = {i, i, i} end }", "memory limit"),
    ("string-growth", "@{ local s = 'x'; for i = 1, 40 do s = s .. s end return #s }", "limit"),
    ("load-dump", "@(load(string.dump(function() end)))", "nil"),
    ("loadstring", "@(loadstring('return 1'))", "nil"),
    ("string-dump", "@(string.dump(print))", "nil"),
    ("debug", "@(debug.getregistry())", "nil"),
    ("ffi", "@(ffi.C)", "nil"),
    ("jit", "@(jit.off())", "nil"),
    ("require", "@(require('os'))", "nil"),
    ("io", "@(io.open('/etc/passwd'))", "nil"),
    ("os-execute", "@(os.execute('true'))", "nil"),
    ("getfenv", "@(getfenv(2))", "nil"),
    ("setfenv", "@(setfenv(1, {}))", "nil"),
    ("collectgarbage", "@(collectgarbage('stop'))", "nil"),
    ("rawset", "@(rawset(string, 'x', 1))", "nil"),
    ("pcall-swallow-deadline", "@{ pcall(function() while true do end end); return 'escaped' }", "time limit"),
    ("xpcall-swallow-deadline",
     "@{ xpcall(function() while true do end end, function() return 'caught' end); return 'escaped' }",
     "time limit"),
    ("pcall-swallow-memory", "@{ pcall(function() local t = {} for i = 1, 1e9 do t[i] = i end end); return 'x' }",
     "memory limit"),
    ("pattern-huge", "@(string.find(string.rep('a', 1000000), '.-.-.-.-b'))", "exceeds the limit"),
    # small subjects, patterns that backtrack for minutes: the deadline reaches into the matcher
    ("pattern-backtracking", "@(string.find(string.rep('a', 4000), '.-.-.-.-b'))", "time limit"),
    ("pattern-gsub-method", "@(select(2, ('a'):rep(3000):gsub('(.-)(.-)(.-)b', 'x')))", "time limit"),
    ("pattern-gmatch", "@{ for _ in string.gmatch(string.rep('a', 3000), 'a.-.-.-b') do end }", "time limit"),
    ("pattern-match-pcall", "@{ pcall(string.match, string.rep('a', 4000), '.-.-.-.-b'); return 'escaped' }",
     "time limit"),
    ("metatable-tamper", "@(getmetatable('').__index)", "index"),
]


@pytest.mark.parametrize("expr,expect", [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_breach_fails_only_its_request(backend, portico, expr, expect):
    # memory cases get time enough to reach the memory cap even on a slow (sanitizer) build
    p = portico(sandbox_config(backend.url, expr, timeout="5s" if "memory" in expect else "100ms"))
    results = []

    def good_loop():
        for _ in range(20):
            status, _, body = p.request("GET", "/echo/good")
            results.append((status, body))
            time.sleep(0.01)

    t = threading.Thread(target=good_loop)
    t.start()
    status, headers, body = p.request("GET", "/echo/evil")
    t.join()
    assert status == 500, body
    assert headers.get("x-reason") == "ExpressionValueEvaluationFailure"
    assert expect.lower() in body.decode().lower(), body
    assert results and all(r == (200, b"FINE3") for r in results), results[:3]
    # the worker still serves, also Lua, after the breach
    for _ in range(3):
        assert p.request("GET", "/echo/good")[:1] == (200,)
    assert p.request("GET", "/echo/good")[2] == b"FINE3"
    assert backend.last() is None  # the evil request never reached the backend
    evil = [e for e in p.access_entries(wait_for=25) if "/echo/evil" in json.dumps(e)]
    assert evil and evil[-1]["reason"] == "ExpressionValueEvaluationFailure", evil


def test_string_metatable_tampering_does_not_leak(backend, portico):
    """A script that tries to replace string methods cannot affect other expressions."""
    cfg = sandbox_config(backend.url, "@{ local mt = getmetatable(''); return tostring(mt) }")
    cfg["apis"][0]["operations"][1]["policies"]["inbound"].append(
        {"return-response": {"set-body": "@(context.variables.x)"}})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/evil")
    assert (status, body) == (200, b"false")  # the metatable is locked: only its __metatable (false) shows
    # writes to the shared string table are refused
    cfg2 = sandbox_config(backend.url, "@{ string.upper = function() return 'pwned' end; return 'x' }")
    p.stop()
    p2 = portico(cfg2)
    status, _, body = p2.request("GET", "/echo/evil")
    assert status == 500 and b"read-only" in body
    assert p2.request("GET", "/echo/good")[2] == b"FINE3"
    # globals a script sets stay in its own environment
    cfg3 = sandbox_config(backend.url, "@{ tostring = function() return 'pwned' end; return 'x' }")
    p2.stop()
    p3 = portico(cfg3)
    assert p3.request("GET", "/echo/evil")[0] == 200
    assert p3.request("GET", "/echo/good")[2] == b"FINE3"


def test_state_is_rebuilt_after_a_breach(backend, portico):
    p = portico(sandbox_config(backend.url, "@{ local t = {}; for i = 1, 1e9 do t[i] = i end }", memory="8m"))
    for _ in range(3):
        assert p.request("GET", "/echo/evil")[0] == 500
        assert p.request("GET", "/echo/good")[2] == b"FINE3"
    assert "rebuilding the Lua state" in p.log_text()


def test_globals_last_one_evaluation(backend, portico):
    """A global a script sets is its own for that evaluation only: the next request (another client's,
    perhaps) does not find it."""
    expr = ("@{ local before = seen; seen = context.request.headers:get('X-Secret', ''); "
            "function twice(v) return v .. v end; return tostring(before) .. '|' .. twice(seen) }")
    cfg = sandbox_config(backend.url, expr)
    cfg["apis"][0]["operations"][1]["policies"]["inbound"].append(
        {"return-response": {"set-body": "@(context.variables.x)"}})
    p = portico(cfg)
    for secret in ("alpha", "beta"):
        status, _, body = p.request("GET", "/echo/evil", headers={"X-Secret": secret})
        assert (status, body) == (200, ("nil|" + secret * 2).encode())
    # a global from one statement is not visible to another either
    assert p.request("GET", "/echo/good")[2] == b"FINE3"
