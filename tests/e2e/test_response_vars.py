"""Responses held in variables (PT_VAR_RESPONSE): set through the SDK
(api->var_set_response, here by the test plugin's test-respvar; send-request's
response-variable-name in production), read back by plugins
(var_get_response), read in Lua as a read-only object shaped like
context.response, and used by return-response's response-variable-name as the
base its children change.  Hostile responses are refused before they are
stored."""

import json
import os
import textwrap

import pytest

from conftest import basic_config
from lanes_helpers import lanes_plugin_dir


def config(backend, workdir, inbound, on_error=None, **extra):
    cfg = basic_config(backend.url, pluginDir=lanes_plugin_dir(workdir), **extra)
    pol = {"inbound": inbound}
    if on_error is not None:
        pol["on-error"] = on_error
    cfg["apis"][0]["policies"] = pol
    return cfg


RESP = {"test-respvar": {"name": "r", "status": 201, "reason": "Made", "body": '{"id": 7, "tags": ["x", "y"]}',
                         "header-name": "X-Multi", "header-value": "v"}}

ON_ERROR = [{"return-response": {
    "set-status": {"code": 599},
    "set-body": {"value": "@(json.encode({reason = context.lastError.reason, source = context.lastError.source, "
                          "message = context.lastError.message}))"}}}]


def answer(expr):
    """return-response whose body is a Lua expression's value."""
    return {"return-response": {"set-body": {"value": expr}}}


# ------------------------------------------------------------------ return-response

def test_return_response_from_a_variable(backend, workdir, portico):
    p = portico(config(backend, workdir, [RESP, {"return-response": {"response-variable-name": "r"}}]))
    status, headers, body = p.request("GET", "/echo/items/1")
    assert status == 201 and body == b'{"id": 7, "tags": ["x", "y"]}'
    assert headers["content-type"] == "application/json"
    assert headers["x-multi"] == "v, v"  # two fields, one list
    assert headers["content-length"] == str(len(body))
    assert backend.last() is None


def test_return_response_children_change_the_variables_response(backend, workdir, portico):
    p = portico(config(backend, workdir, [RESP, {"return-response": {
        "response-variable-name": "r",
        "set-status": {"code": 202, "reason": "Changed"},
        "set-header": [{"name": "X-Multi", "exists-action": "delete"},
                       {"name": "X-New", "value": "@(tostring(context.variables['r'].statusCode))"}],
        "set-body": "@('was ' .. context.variables['r'].body:asString())"}}]))
    status, headers, body = p.request("GET", "/echo/items/1")
    assert status == 202
    assert "x-multi" not in headers and headers["x-new"] == "201"
    assert headers["content-type"] == "application/json"  # kept from the variable's response
    assert body == b'was {"id": 7, "tags": ["x", "y"]}'


@pytest.mark.parametrize("before", [[], [{"set-variable": {"name": "r", "value": "text"}}],
                                    [{"test-respvar": {"name": "r", "nil": True}}]],
                         ids=["missing", "string", "nil"])
def test_return_response_without_a_response_fails(backend, workdir, portico, before):
    p = portico(config(backend, workdir, before + [{"return-response": {"response-variable-name": "r"}}],
                       on_error=ON_ERROR))
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 599, body
    e = json.loads(body)
    assert e["reason"] == "ResponseVariableNotFound" and e["source"] == "return-response"
    assert "'r'" in e["message"]
    assert backend.last() is None


def test_return_response_without_a_response_and_no_on_error(backend, workdir, portico):
    p = portico(config(backend, workdir, [{"return-response": {"response-variable-name": "nothing"}}]))
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 500 and json.loads(body)["statusCode"] == 500
    assert p.access_entries(wait_for=1)[-1]["reason"] == "ResponseVariableNotFound"


def test_empty_response_variable_name_is_refused(backend, workdir, portico):
    code, out = portico(config(backend, workdir, [{"return-response": {"response-variable-name": ""}}]),
                        start=False).check()
    assert code != 0 and "response-variable-name" in out and "portico.yaml:" in out, out


# --------------------------------------------------------------------- Lua

@pytest.mark.parametrize("expr, want", [
    ("@(context.variables['r'].statusCode)", "201"),
    ("@(context.variables.r.statusReason)", "Made"),
    ("@(context.variables:get('r').statusCode + 1)", "202"),
    ("@(context.variables['r'].headers:get('x-multi'))", "v,v"),
    ("@(context.variables['r'].headers:get('X-None', 'dflt'))", "dflt"),
    ("@(#context.variables['r'].headers:getAll('X-Multi'))", "2"),
    ("@(tostring(context.variables['r'].headers:has('content-type')))", "true"),
    ("@(tostring(context.variables['r'].headers:has('x-none')))", "false"),
    ("@(context.variables['r'].headers['Content-Type'])", "application/json"),
    ("@(context.variables['r'].body:asString())", '{"id": 7, "tags": ["x", "y"]}'),
    ("@(context.variables['r'].body:asJson().tags[2])", "y"),
    # reading the body does not consume it
    ("@{ local b = context.variables['r'].body; return b:asString() .. '|' .. b:asString() }",
     '{"id": 7, "tags": ["x", "y"]}|{"id": 7, "tags": ["x", "y"]}'),
    ("@(tostring(context.variables:containsKey('r')))", "true"),
    ("@(tostring(context.variables['r']))", "response object (response)"),
    ("@(type(context.variables['r']))", "userdata"),
    ("@(tostring(context.variables['r'].nothing))", "nil"),
], ids=lambda x: x if len(x) < 40 else x[:40])
def test_lua_reads_the_response_object(backend, workdir, portico, expr, want):
    p = portico(config(backend, workdir, [RESP, answer(expr)]))
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 200, body
    assert body.decode() == want


def test_status_reason_defaults_to_the_standard_one(backend, workdir, portico):
    p = portico(config(backend, workdir, [{"test-respvar": {"name": "r", "status": 404}},
                                          answer("@(context.variables.r.statusReason)")]))
    assert p.request("GET", "/echo/items/1")[2] == b"Not Found"


@pytest.mark.parametrize("expr, words", [
    ("@{ context.variables['r'].statusCode = 1; return 'x' }", "read-only"),
    ("@{ context.variables['r'].headers.X = 1; return 'x' }", "read-only"),
    ("@{ context.variables['r'].body:asJson(); return 'x' }", "not JSON"),
], ids=["status", "headers", "json"])
def test_lua_misuse_fails_the_request(backend, workdir, portico, expr, words):
    resp = RESP if "asJson" not in expr else {"test-respvar": {"name": "r", "body": "<xml/>"}}
    p = portico(config(backend, workdir, [resp, answer(expr)], on_error=ON_ERROR))
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 599
    e = json.loads(body)
    assert e["reason"] == "ExpressionValueEvaluationFailure" and words in e["message"], e


def lua_policy_dir(workdir, src):
    d = os.path.join(workdir, "luapol")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "respcopy.lua"), "w") as f:
        f.write(textwrap.dedent(src))
    return d


def test_lua_policy_copies_and_cannot_change_a_response(backend, workdir, portico):
    d = lua_policy_dir(workdir, """
        return {
          name = "resp-copy",
          sections = {"inbound"},
          attributes = {},
          inbound = function(context, attrs)
            local r = context.variables['r']
            context.variables:set('copy', r)
            local ok, err = pcall(function() r.headers:set('X', '1') end)
            context.variables:set('setError', tostring(err))
            local ok2, err2 = pcall(function() r.body:set('x') end)
            context.variables:set('bodyError', tostring(err2))
            local ok3, err3 = pcall(function() context.variables:set('bad', r.headers) end)
            context.variables:set('partError', tostring(err3))
          end,
        }
    """)
    p = portico(config(backend, workdir, [
        RESP, {"resp-copy": {}},
        {"return-response": {"response-variable-name": "copy", "set-header": [
            {"name": "X-Set-Error", "value": "@(context.variables.setError)"},
            {"name": "X-Body-Error", "value": "@(context.variables.bodyError)"},
            {"name": "X-Part-Error", "value": "@(context.variables.partError)"}]}}], lua={"policyPath": [d]}))
    status, headers, body = p.request("GET", "/echo/items/1")
    assert status == 201 and body == b'{"id": 7, "tags": ["x", "y"]}'
    assert "read-only" in headers["x-set-error"] and "read-only" in headers["x-body-error"]
    assert "response objects" in headers["x-part-error"]


def test_an_object_kept_after_its_variable_was_set_again_no_longer_reads(backend, workdir, portico):
    """A Lua policy takes the object (and its headers part), copies it into another variable, then sets the
    variable again: the kept object raises instead of reading, although the copy is still held."""
    d = lua_policy_dir(workdir, """
        return {
          name = "resp-stale",
          sections = {"inbound"},
          attributes = {},
          inbound = function(context, attrs)
            local o = context.variables['r']
            local h = o.headers
            local before = o.statusCode
            context.variables:set('copy', o)
            context.variables:set('r', 'x')
            local ok, err = pcall(function() return o.statusCode end)
            local ok2, err2 = pcall(function() return h:get('x-multi') end)
            context.variables:set('out', before .. '|' .. tostring(ok) .. '|' .. tostring(err) .. '|' ..
                                  tostring(ok2) .. '|' .. tostring(err2))
          end,
        }
    """)
    p = portico(config(backend, workdir, [RESP, {"resp-stale": {}}, answer(
        "@(context.variables.out .. '|' .. context.variables.copy.statusCode .. '|' .. context.variables.r)")],
        lua={"policyPath": [d]}))
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 200, body
    parts = body.decode().split("|")
    assert parts[0] == "201" and parts[1] == "false" and parts[3] == "false", parts
    assert "no longer held in a variable of this request" in parts[2], parts
    assert "no longer held in a variable of this request" in parts[4], parts
    assert parts[5:] == ["201", "x"], parts


def test_an_object_kept_from_an_earlier_request_no_longer_reads(backend, workdir, portico):
    """A Lua policy keeps the response object of one request in an upvalue and reads it in the next
    request, whose pt_req and arena are the same memory (the worker reuses them) and whose variable holds
    a response at the same address: the object still refuses."""
    d = lua_policy_dir(workdir, """
        local kept
        return {
          name = "resp-keep",
          sections = {"inbound"},
          attributes = {},
          inbound = function(context, attrs)
            if kept then
              local ok, err = pcall(function() return kept.statusCode end)
              context.variables:set('old', tostring(ok) .. ':' .. tostring(err))
            else
              context.variables:set('old', 'none')
            end
            kept = context.variables['r']
          end,
        }
    """)
    p = portico(config(backend, workdir, [RESP, {"resp-keep": {}}, answer("@(context.variables.old)")],
                       lua={"policyPath": [d]}))
    assert p.request("GET", "/echo/items/1")[2] == b"none"
    for i in range(3):
        status, _, body = p.request("GET", "/echo/items/1")
        assert status == 200, body
        assert body.startswith(b"false:") and b"no longer held in a variable of this request" in body, body


# ------------------------------------------------------------- what is refused

@pytest.mark.parametrize("attrs", [
    {"header-name": "Bad Name", "header-value": "v"},
    {"header-name": "X-Ok", "header-value": "a\r\nInjected: yes"},
    {"header-name": "X-Ok", "header-value": "@('nul' .. string.char(0) .. 'byte')"},
    {"reason": "Bad\r\nReason"},
    {"status": 99},
    {"status": 1000},
], ids=["name", "crlf", "nul", "reason", "status-low", "status-high"])
def test_hostile_responses_are_not_stored(backend, workdir, portico, attrs):
    a = {"name": "r"}
    a.update(attrs)
    p = portico(config(backend, workdir, [{"test-respvar": a}, {"return-response": {"response-variable-name": "r"}}],
                       on_error=ON_ERROR))
    status, headers, body = p.request("GET", "/echo/items/1")
    assert status == 599, body
    assert json.loads(body)["reason"] == "TestRefused"
    assert "injected" not in headers


def test_framing_headers_of_a_held_response_are_not_copied(backend, workdir, portico):
    p = portico(config(backend, workdir, [
        {"test-respvar": {"name": "r", "body": "abc", "header-name": "Transfer-Encoding", "header-value": "chunked"}},
        {"return-response": {"response-variable-name": "r"}}]))
    status, headers, body = p.request("GET", "/echo/items/1")
    assert status == 200 and body == b"abc"
    assert "transfer-encoding" not in headers and headers["content-length"] == "3"


def test_a_large_body_is_held(backend, workdir, portico):
    big = "x" * 300000
    p = portico(config(backend, workdir, [
        {"test-respvar": {"name": "r", "body": "@(string.rep('x', 300000))"}},
        {"return-response": {"response-variable-name": "r"}}]))
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 200 and body == big.encode()
