"""Custom policies written in Lua: the two shipped with Portico (add-greeting,
require-header) and policies the tests write into a folder named by
lua.policyPath -- their schemas checked like any policy's, their section
functions run in the sandbox, their results ("done", "fail", errors) and
the limits they run under."""

import json
import os
import textwrap
import time

import pytest

from conftest import basic_config


def with_inbound(backend, stmts, outbound=None, on_error=None, **extra):
    cfg = basic_config(backend.url, **extra)
    pol = {"inbound": ["base"] + stmts}
    if outbound is not None:
        pol["outbound"] = ["base"] + outbound
    if on_error is not None:
        pol["on-error"] = on_error
    cfg["apis"][0]["policies"] = pol
    return cfg


def policy_dir(workdir, files):
    """Writes {name: lua source} into a fresh folder and returns its path."""
    d = os.path.join(workdir, "luapol-%d" % len(os.listdir(workdir)))
    os.makedirs(d)
    for name, src in files.items():
        path = os.path.join(d, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(src))
    return d


SHIPPED = os.path.join(os.path.dirname(__file__), "..", "..", "policies")


# ------------------------------------------------------------ shipped ones

def test_add_greeting_inbound_and_outbound(backend, portico):
    cfg = with_inbound(backend, [{"add-greeting": {
        "greeting": "@(context.request.headers:get('X-Name', 'world'))", "times": 2}}],
        outbound=[{"add-greeting": {"greeting": "bye", "header": "X-Farewell"}}])
    p = portico(cfg)
    status, headers, _ = p.request("GET", "/echo/items/1", headers={"X-Name": "ann"})
    assert status == 200
    assert backend.last().header("X-Greeting") == "ann ann"  # evaluated per request, repeated
    assert headers["x-farewell"] == "bye"                    # outbound: on the response


def test_require_header_fails_with_its_reason(backend, portico):
    cfg = with_inbound(backend, [{"require-header": {"name": "X-Api-Version", "status": 412}}])
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 412 and json.loads(body)["message"] == "the request must carry X-Api-Version"
    assert backend.last() is None
    assert p.access_entries(wait_for=1)[-1]["reason"] == "HeaderNotFound"
    assert p.request("GET", "/echo/items/1", headers={"X-Api-Version": "2"})[0] == 200


@pytest.mark.parametrize("attrs, words", [
    ({"times": 2}, "greeting"),                              # required attribute missing
    ({"greeting": "hi", "times": 11}, "times"),              # over its max
    ({"greeting": "hi", "colour": "red"}, "colour"),         # not in the schema
    ({"greeting": "hi", "header": "@(1)"}, "expression"),    # not an expression attribute
], ids=["missing", "max", "unknown", "no-expression"])
def test_schema_errors_have_positions(backend, portico, attrs, words):
    cfg = with_inbound(backend, [{"add-greeting": attrs}])
    code, out = portico(cfg, start=False).check()
    assert code != 0 and "portico.yaml:" in out and words in out, out


def test_section_not_declared_is_refused(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["policies"] = {"backend": [{"add-greeting": {"greeting": "x"}}]}
    code, out = portico(cfg, start=False).check()
    assert code != 0 and "not allowed in the backend section" in out, out


# ------------------------------------------------------- written by tests

CUSTOM = {
    "stamp.lua": """
        return {
          name = "stamp",
          description = "Stamps the request and can answer or fail by itself.",
          sections = {"inbound", "outbound", "on-error"},
          attributes = {
            mode = {type = "enum", values = {"pass", "done", "fail", "error", "loop", "probe"}, default = "pass"},
            value = {type = "string", expression = true, default = "stamped"},
          },
          inbound = function(context, attrs)
            context.request.headers:set("X-Stamp", attrs.value)
            context.variables:set("stamped", attrs.value)
            if attrs.mode == "done" then
              context.response:setStatus(203, "Stamped")
              context.response.headers:set("Content-Type", "text/plain")
              context.response.body:set("answered by stamp: " .. attrs.value)
              return "done"
            elseif attrs.mode == "fail" then
              return "fail", 409, "StampRefused", "stamp says no"
            elseif attrs.mode == "error" then
              error("stamp broke")
            elseif attrs.mode == "loop" then
              while true do end
            elseif attrs.mode == "probe" then
              context.request.headers:set("X-Probe", tostring(io) .. "|" .. tostring(os.execute) .. "|" ..
                tostring(require) .. "|" .. tostring(debug) .. "|" .. tostring(load) .. "|" .. tostring(rawset))
            end
          end,
          outbound = function(context, attrs)
            context.response.headers:set("X-Stamped", tostring(context.variables:get("stamped", "none")))
          end,
          ["on-error"] = function(context, attrs)
            context.response.headers:set("X-Stamp-Error", context.lastError.reason)
            context.response.headers:set("X-Stamp-Message", context.lastError.message)
          end,
        }
    """,
}


def custom_config(backend, workdir, mode, value="stamped", timeout="100ms"):
    d = policy_dir(workdir, CUSTOM)
    cfg = with_inbound(backend, [{"stamp": {"mode": mode, "value": value}}],
                       outbound=[{"stamp": {}}], on_error=[{"stamp": {}}])
    cfg["lua"] = {"policyPath": [d], "timeout": timeout}
    return cfg


def test_custom_policy_changes_request_and_response(backend, portico, workdir):
    p = portico(custom_config(backend, workdir, "pass", value="@(context.request.method .. '-stamp')"))
    status, headers, _ = p.request("GET", "/echo/items/1")
    assert status == 200
    assert backend.last().header("X-Stamp") == "GET-stamp"
    assert headers["x-stamped"] == "GET-stamp"  # a variable set in inbound, read in outbound


def test_custom_policy_done_answers_without_backend(backend, portico, workdir):
    p = portico(custom_config(backend, workdir, "done"))
    status, headers, body = p.request("GET", "/echo/items/1")
    assert (status, body) == (203, b"answered by stamp: stamped")
    assert headers["content-type"] == "text/plain"
    assert backend.last() is None


@pytest.mark.parametrize("mode, status, reason, message", [
    ("fail", 409, "StampRefused", "stamp says no"),
    ("error", 500, None, "stamp broke"),
    ("loop", 500, None, "time limit"),
])
def test_custom_policy_failures_reach_on_error(backend, portico, workdir, mode, status, reason, message):
    p = portico(custom_config(backend, workdir, mode))
    got, headers, body = p.request("GET", "/echo/items/1")
    assert got == status, body
    assert backend.last() is None
    err = headers.get("x-stamp-error")
    assert err and (reason is None or err == reason), headers
    assert message in headers.get("x-stamp-message", ""), headers  # the message on-error saw
    entry = p.access_entries(wait_for=1)[-1]
    assert entry.get("reason") == err, entry  # the access log names the same reason
    if mode == "fail":
        assert json.loads(body)["message"] == message
    # the worker and its Lua state are fine afterwards
    p2_status, _, _ = p.request("GET", "/nowhere")
    assert p2_status == 404


def test_custom_policy_runs_in_the_sandbox(backend, portico, workdir):
    """What a custom policy sees of the dangerous globals, sent to the backend
    one by one: each of them is nil (a policy that could reach one would send
    something else)."""
    p = portico(custom_config(backend, workdir, "probe"))
    status, _, _ = p.request("GET", "/echo/items/1")
    assert status == 200
    assert backend.last().header("X-Probe") == "nil|nil|nil|nil|nil|nil"


def test_broken_policy_files_are_config_errors(backend, portico, workdir):
    for src, words in [
        ("return {name = 'broken', sections = {'inbound'}, inbound = function( end}", "broken.lua"),
        ("return {name = 'Bad Name', sections = {'inbound'}, inbound = function() end}", "name"),
        ("return {name = 'no-fn', sections = {'inbound'}}", "inbound"),
        ("return {name = 'typo', sections = {'inbound'}, attributes = {a = {type = 'float'}},"
         " inbound = function() end}", "float"),
        ("while true do end", "took too long"),
        ("local s = string.rep('x', 2^30) return {}", "memory"),
        ("local t = {} for i = 1, 1e9 do t[i] = {i} end return {}", "memory"),
        ("string.find(string.rep('a', 4000), '.-.-.-.-b') return {}", "time limit"),
    ]:
        d = policy_dir(workdir, {"broken.lua": src})
        cfg = with_inbound(backend, [])
        cfg["lua"] = {"policyPath": [d]}
        t0 = time.time()
        code, out = portico(cfg, start=False).check()
        assert code != 0 and words in out and "broken.lua" in out, (src, out)
        assert time.time() - t0 < 10  # a declaration that never ends is cut off
