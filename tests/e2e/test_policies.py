"""The policy engine end to end: composition of scopes with `base`,
fragments, named values, expressions and the context they read, config
errors with positions, runtime errors and on-error, return-response,
mock-response, retry and the asynchronous suspension of the pipeline.

Every test checks what the client got and what the backend received.
Only core policies are used (set-variable, choose, return-response,
mock-response, retry, forward-request, include-fragment)."""

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest

from conftest import BIN, basic_config, free_port, parse_responses, raw_exchange, to_yaml
from policy_helpers import FlakyBackend


# ------------------------------------------------------------------ helpers

def trail(tag):
    """A statement appending `tag,` to the variable `trail`."""
    return {"set-variable": {"name": "trail", "value": "@((context.variables.trail or '') .. '%s,')" % tag}}


def reply(body="@(context.variables.trail or '')", status=None, headers=None):
    rr = {}
    if status is not None:
        rr["set-status"] = status
    if headers is not None:
        rr["set-header"] = headers
    rr["set-body"] = body
    return {"return-response": rr}


def reply_seen(expr):
    """Outbound statements answering with expr evaluated on the response as it is (a set-variable
    first: inside return-response the response is already the new one, see
    test_return_response_expressions_see_backend_response)."""
    return [{"set-variable": {"name": "seen", "value": expr}}, reply(body="@(context.variables.seen)")]


def op(cfg, op_id, method, template, policies=None, api=0, **extra):
    """Adds an operation in front of the others (literal templates win anyway)."""
    o = {"id": op_id, "method": method, "urlTemplate": template}
    if policies is not None:
        o["policies"] = policies
    o.update(extra)
    cfg["apis"][api]["operations"].insert(0, o)
    return o


def echo(data):
    return json.loads(data)


def request_multi(p, method, path, headers, body=None, timeout=10):
    """Like p.request but with repeatable headers: headers is a list of (name, value)."""
    c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=timeout)
    try:
        c.putrequest(method, path, skip_accept_encoding=True)
        for k, v in headers:
            c.putheader(k, v)
        if body is not None:
            c.putheader("Content-Length", str(len(body)))
        c.endheaders(body)
        r = c.getresponse()
        data = r.read()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
    finally:
        c.close()


def check_config(workdir, cfg, name="portico.yaml"):
    """Runs `portico -t` on cfg; returns (exit code, output, config text, path)."""
    cfg = dict(cfg)
    cfg.setdefault("log", {"error": os.path.join(workdir, "check-error.log"),
                           "access": os.path.join(workdir, "check-access.log")})
    text = to_yaml(cfg) + "\n"
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run([BIN, "-t", "-c", path], cwd=workdir, capture_output=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace"), text, path


def line_of(text, needle, nth=1):
    """1-based line number of the nth line containing needle (or needle = (text, nth))."""
    if isinstance(needle, tuple):
        needle, nth = needle
    k = 0
    for i, line in enumerate(text.split("\n")):
        if needle in line:
            k += 1
            if k == nth:
                return i + 1
    raise AssertionError("%r not in config" % needle)


def closed_port():
    return free_port()


@pytest.fixture
def flaky():
    b = FlakyBackend()
    yield b
    b.close()


# ------------------------------------------------------------- composition

@pytest.mark.parametrize("op_inbound,expected", [
    (["base", trail("o")], "a1,g,a2,o,"),
    ([trail("o"), "base"], "o,a1,g,a2,"),
    ([trail("o1"), "base", trail("o2")], "o1,a1,g,a2,o2,"),
    ([trail("o1"), "base", trail("o2"), "base"], "o1,a1,g,a2,o2,a1,g,a2,"),
], ids=["base-first", "base-last", "base-middle", "base-twice"])
def test_base_splices_parent_section_where_it_stands(backend, portico, op_inbound, expected):
    cfg = basic_config(backend.url)
    cfg["policies"] = {"inbound": [trail("g")]}
    cfg["apis"][0]["policies"] = {"inbound": [trail("a1"), "base", trail("a2")]}
    op(cfg, "t", "GET", "/t", {"inbound": op_inbound, "backend": [], "outbound": [reply()]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/t")
    assert (status, body.decode()) == (200, expected)
    assert backend.requests == []


def test_outbound_and_backend_sections_compose_with_base(backend, portico):
    cfg = basic_config(backend.url)
    cfg["policies"] = {"outbound": [trail("g-out")]}
    cfg["apis"][0]["policies"] = {
        "backend": [trail("a-be"), "base"],
        "outbound": [trail("a1-out"), "base", trail("a2-out")]}
    op(cfg, "t", "GET", "/t", {"backend": ["base", trail("o-be")],
                               "outbound": [trail("o-out"), "base", reply()]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/t")
    assert status == 200
    assert body.decode() == "a-be,o-be,o-out,a1-out,g-out,a2-out,"
    # the global default backend (forward-request) was spliced in between
    assert len(backend.requests) == 1
    assert backend.last().target == "/base/t"


def test_on_error_composes_with_base(backend, portico):
    cfg = basic_config(backend.url)
    cfg["policies"] = {"on-error": [trail("g-err"), reply(status={"code": 500, "reason": "Failed"})]}
    cfg["apis"][0]["policies"] = {"on-error": [trail("a-err"), "base"]}
    op(cfg, "t", "GET", "/t", {"inbound": [{"set-variable": {"name": "x", "value": "@(nil .. 'x')"}}],
                               "on-error": [trail("o-err"), "base"]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/t")
    assert (status, body.decode()) == (500, "o-err,a-err,g-err,")
    assert backend.requests == []


def test_section_without_base_drops_parent_statements(backend, portico):
    cfg = basic_config(backend.url)
    cfg["policies"] = {"inbound": [reply(body="blocked by global", status={"code": 403})]}
    op(cfg, "open", "GET", "/open", {"inbound": [trail("o")],
                                     "outbound": ["base", reply(body="@('out:' .. context.variables.trail)")]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/open")
    assert (status, body) == (200, b"out:o,")
    assert [r.target for r in backend.requests] == ["/base/open"]
    # an operation without policies inherits the global block
    status, _, body = p.request("GET", "/echo/items/1")
    assert (status, body) == (403, b"blocked by global")
    assert len(backend.requests) == 1


def test_scope_without_section_behaves_as_base(backend, portico):
    cfg = basic_config(backend.url)
    cfg["policies"] = {"inbound": [trail("g")],
                       "outbound": [reply(body="@('out:' .. context.variables.trail)")]}
    # the API has policies, but no inbound section: it is [base]
    cfg["apis"][0]["policies"] = {"outbound": [trail("a-out"), "base"]}
    op(cfg, "t", "GET", "/t", {"inbound": [trail("o1"), "base", trail("o2")], "outbound": ["base"]})
    # an operation with no policies at all: every section is [base]
    op(cfg, "plain", "GET", "/plain", None)
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/t")
    assert (status, body) == (200, b"out:o1,g,o2,a-out,")
    status, _, body = p.request("GET", "/echo/plain")
    assert (status, body) == (200, b"out:g,a-out,")
    assert [r.target for r in backend.requests] == ["/base/t", "/base/plain"]


def test_workspace_scope_sits_between_global_and_product(backend, portico):
    """global -> workspace -> product -> API -> operation: an API in a workspace gets the
    workspace's document; an API outside it does not; a product's sits inside the workspace's."""
    cfg = basic_config(backend.url)
    cfg["policies"] = {"inbound": [trail("g")], "backend": [],
                       "outbound": [reply(body="@(context.variables.trail .. '|' .. context.variables.ws)")]}
    cfg["workspaces"] = [{"id": "team", "displayName": "Team",
                          "policies": {"inbound": [trail("w1"), "base", trail("w2")],
                                       "outbound": [{"set-variable": {"name": "ws", "value": "team"}}, "base"]}}]
    cfg["apis"][0]["policies"] = {"outbound": [{"set-variable": {"name": "ws", "value": "none"}}, "base"]}
    cfg["apis"].append({"id": "teamapi", "path": "team", "serviceUrl": backend.url, "workspace": "team",
                        "subscriptionRequired": False,
                        "policies": {"inbound": [trail("a1"), "base", trail("a2")]},
                        "operations": [{"id": "all", "method": "GET", "urlTemplate": "/*",
                                        "policies": {"inbound": ["base", trail("o")]}}]})
    cfg["products"] = [{"id": "p", "displayName": "P", "subscriptionRequired": True, "state": "published",
                        "workspace": "team", "apis": ["teamapi"],
                        "policies": {"inbound": [trail("p1"), "base"]}}]
    cfg["subscriptions"] = [{"id": "s", "scope": "/products/p", "state": "active", "workspace": "team",
                             "primaryKey": "workspace-scope-key-0001"}]
    p = portico(cfg)
    # no product: operation -> API -> workspace -> global
    status, _, body = p.request("GET", "/team/x")
    assert (status, body) == (200, b"a1,w1,g,w2,a2,o,|team")
    # product context: the product's document sits between the API's and the workspace's
    status, _, body = p.request("GET", "/team/x", headers={"Ocp-Apim-Subscription-Key": "workspace-scope-key-0001"})
    assert (status, body) == (200, b"a1,p1,w1,g,w2,a2,o,|team")
    # an API outside the workspace never sees its statements
    status, _, body = p.request("GET", "/echo/x")
    assert (status, body) == (200, b"g,|none")
    assert backend.requests == []


def test_workspace_policy_errors_point_into_the_file(workdir, backend):
    cfg = basic_config(backend.url)
    cfg["workspaces"] = [{"id": "team", "policies": {"inbound": [{"no-such-policy": {}}]}}]
    code, out, text, _ = check_config(workdir, cfg)
    assert code != 0
    line = line_of(text, "no-such-policy")
    assert ("portico.yaml:%d:" % line) in out and "unknown policy 'no-such-policy'" in out, out


def test_base_at_global_scope_does_nothing(backend, portico):
    cfg = basic_config(backend.url)
    cfg["policies"] = {"inbound": ["base", trail("g"), "base"],
                       "outbound": ["base", reply(), "base"]}
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/items/3")
    assert (status, body) == (200, b"g,")
    assert [r.target for r in backend.requests] == ["/base/items/3"]


def test_empty_backend_section_calls_no_backend(backend, portico):
    cfg = basic_config(backend.url)
    op(cfg, "nobe", "GET", "/nobe", {"backend": [], "outbound": reply_seen(
        "@(context.response.statusCode .. '|' .. context.response.body:asString() .. '|' .. "
        "tostring(context.response.headers:get('Content-Type', 'none')))")})
    op(cfg, "nobe-plain", "GET", "/nobe-plain", {"backend": []})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/nobe")
    assert (status, body) == (200, b"200||none")
    status, headers, body = p.request("GET", "/echo/nobe-plain")
    assert (status, body) == (200, b"")
    assert headers.get("content-length") == "0"
    assert backend.requests == [] and backend.connections == 0


def test_empty_backend_at_api_scope_is_inherited_and_overridable(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["policies"] = {"backend": []}
    op(cfg, "fwd", "GET", "/fwd", {"backend": [{"forward-request": {"timeout": 5}}]})
    op(cfg, "inherit", "GET", "/inherit", {"backend": ["base"]})
    p = portico(cfg)
    assert p.request("GET", "/echo/inherit")[::2] == (200, b"")
    assert p.request("GET", "/echo/items/1")[::2] == (200, b"")
    assert backend.requests == []
    status, _, body = p.request("GET", "/echo/fwd")
    assert status == 200 and echo(body)["target"] == "/base/fwd"
    assert len(backend.requests) == 1


def test_default_backend_is_forward_request(backend, portico):
    cfg = basic_config(backend.url)
    cfg["policies"] = {"inbound": [trail("g")]}  # global without a backend section
    cfg["apis"][0]["policies"] = {"backend": ["base"]}
    p = portico(cfg)
    status, _, body = p.request("POST", "/echo/items", body=b"payload", headers={"Content-Type": "text/plain"})
    assert status == 200
    got = echo(body)
    assert got["target"] == "/base/items" and base64.b64decode(got["body"]) == b"payload"
    assert backend.last().body == b"payload"


def test_api_policies_do_not_leak_into_other_apis(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"].append({"id": "other", "path": "other", "serviceUrl": backend.url + "/other",
                        "subscriptionRequired": False,
                        "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]})
    cfg["policies"] = {"outbound": [reply(body="@('g:' .. (context.variables.trail or '-'))")]}
    cfg["apis"][0]["policies"] = {"inbound": ["base", trail("echo-api")],
                                  "outbound": [reply(body="@('echo:' .. context.variables.trail)")]}
    p = portico(cfg)
    assert p.request("GET", "/echo/x")[::2] == (200, b"echo:echo-api,")
    assert p.request("GET", "/other/x")[::2] == (200, b"g:-")
    assert [r.target for r in backend.requests] == ["/base/x", "/other/x"]


# --------------------------------------------------------------- fragments

def test_fragments_are_inserted_in_place(backend, portico):
    cfg = basic_config(backend.url)
    cfg["policyFragments"] = [
        {"id": "two", "description": "appends f1 and f2", "value": [trail("f1"), trail("f2")]},
        {"id": "stop", "value": [reply(body="@('stopped:' .. context.variables.trail)",
                                       status={"code": 299})]},
    ]
    cfg["policies"] = {"inbound": [trail("g"), {"include-fragment": {"fragment-id": "two"}}]}
    op(cfg, "t", "GET", "/t", {"inbound": [
        trail("o1"), "base", {"include-fragment": {"fragment-id": "two"}},
        {"choose": [{"when": "@(context.request.headers:get('x-stop') == 'yes')",
                     "then": [{"include-fragment": {"fragment-id": "stop"}}]}]},
        trail("o2")],
        "backend": [], "outbound": [reply()]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/t")
    assert (status, body) == (200, b"o1,g,f1,f2,f1,f2,o2,")
    status, _, body = p.request("GET", "/echo/t", headers={"X-Stop": "yes"})
    assert (status, body) == (299, b"stopped:o1,g,f1,f2,f1,f2,")
    assert backend.requests == []


def test_fragment_in_on_error_and_outbound(backend, portico):
    cfg = basic_config(backend.url)
    cfg["policyFragments"] = [{"id": "err", "value": [
        reply(body="@('frag:' .. context.lastError.reason)", status={"code": 503})]}]
    cfg["policies"] = {"on-error": [{"include-fragment": {"fragment-id": "err"}}]}
    op(cfg, "t", "GET", "/t", {"outbound": [{"set-variable": {"name": "x", "value": "@(nil + 1)"}}]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/t")
    assert (status, body) == (503, b"frag:ExpressionValueEvaluationFailure")
    assert [r.target for r in backend.requests] == ["/base/t"]


# ------------------------------------------------------------ named values

def test_named_values_are_substituted(backend, portico):
    cfg = basic_config(backend.url)
    cfg["namedValues"] = [{"id": "greeting", "value": "hello"}, {"id": "who", "value": "world"},
                          {"id": "code", "value": "418"}, {"id": "hdr", "value": "X-From-Named"},
                          {"id": "secret-key", "displayName": "SecretKey", "value": "k3y", "secret": True}]
    op(cfg, "t", "GET", "/t", {"inbound": [
        {"set-variable": {"name": "lit", "value": "{{greeting}}-{{who}}"}},
        {"set-variable": {"name": "expr", "value": "@('{{greeting}}' .. ', ' .. string.upper('{{who}}'))"}},
        reply(body="@(context.variables.lit .. '|' .. context.variables.expr .. '|{{SecretKey}}')",
              status={"code": "{{code}}", "reason": "{{greeting}} teapot"},
              headers=[{"name": "{{hdr}}", "value": "{{greeting}}"}])]})
    p = portico(cfg)
    c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5)
    c.request("GET", "/echo/t")
    r = c.getresponse()
    body = r.read()
    c.close()
    assert (r.status, r.reason) == (418, "hello teapot")
    assert r.getheader("X-From-Named") == "hello"
    assert body == b"hello-world|hello, WORLD|k3y"
    assert backend.requests == []


def test_named_value_holding_an_expression(backend, portico):
    """As in APIM, substitution comes first: a named value may hold a whole expression."""
    cfg = basic_config(backend.url)
    cfg["namedValues"] = [{"id": "expr", "value": "@(context.request.method .. '!')"}]
    op(cfg, "t", "GET", "/t", {"inbound": [reply(body="{{expr}}")]})
    p = portico(cfg)
    assert p.request("GET", "/echo/t")[::2] == (200, b"GET!")
    assert backend.requests == []


def test_named_value_in_retry_condition(flaky, portico):
    cfg = basic_config(flaky.url)
    cfg["namedValues"] = [{"id": "limit", "value": "500"}]
    op(cfg, "t", "GET", "/fail/{n}/{s}/{k}", {"backend": [{"retry": {
        "condition": "@(context.response.statusCode >= {{limit}})", "count": 2, "interval": 0,
        "policies": [{"forward-request": {}}]}}]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/fail/9/503/nv")
    assert status == 503 and echo(body)["attempt"] == 3
    assert len(flaky.hits("/nv")) == 3
    status, _, body = p.request("GET", "/echo/fail/9/499/nv2")
    assert status == 499 and echo(body)["attempt"] == 1


def test_named_value_in_retry_count(flaky, portico):
    cfg = basic_config(flaky.url)
    cfg["namedValues"] = [{"id": "tries", "value": "2"}]
    op(cfg, "t", "GET", "/fail/{n}/{s}/{k}", {"backend": [{"retry": {
        "condition": "@(context.response.statusCode >= 500)", "count": "{{tries}}", "interval": 0,
        "policies": [{"forward-request": {}}]}}]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/fail/9/503/nvc")
    assert len(flaky.hits("/nvc")) == 3
    assert status == 503 and echo(body)["attempt"] == 3


def test_named_value_in_forward_timeout(backend, portico):
    cfg = basic_config(backend.url)
    cfg["namedValues"] = [{"id": "to", "value": "1"}]
    op(cfg, "t", "GET", "/sleep/{ms}", {"backend": [{"forward-request": {"timeout": "{{to}}"}}]})
    p = portico(cfg)
    t0 = time.monotonic()
    status, _, body = p.request("GET", "/echo/sleep/2500")
    assert [r.target for r in backend.requests] == ["/base/sleep/2500"]
    assert status == 504 and time.monotonic() - t0 < 2.0


def test_named_value_in_mock_status_code(backend, portico):
    cfg = basic_config(backend.url)
    cfg["namedValues"] = [{"id": "sc", "value": "201"}]
    op(cfg, "t", "GET", "/m", {"inbound": [{"mock-response": {"status-code": "{{sc}}"}}]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/m")
    assert (status, body) == (201, b"")
    assert backend.requests == []


# ------------------------------------------------------------- expressions

def test_expression_forms_and_typed_variables(backend, portico):
    cfg = basic_config(backend.url)
    op(cfg, "t", "GET", "/t", {"inbound": [
        {"set-variable": {"name": "n", "value": "@(41)"}},
        {"set-variable": {"name": "m", "value": "@(context.variables.n + 1)"}},
        {"set-variable": {"name": "s", "value": "41"}},
        {"set-variable": {"name": "b", "value": "@(1 == 1)"}},
        {"set-variable": {"name": "f", "value": "@(2.5 * 2 + 0.25)"}},
        {"set-variable": {"name": "blk", "value": "@{ local t = 0; for i = 1, 10 do t = t + i end; return t }"}},
        reply(body="@{ local v = context.variables; return table.concat({type(v.n), type(v.m), v.m, type(v.s), "
                   "v.s .. '1', type(v.b), tostring(v.b), v.f, v.blk + 0, tostring(v.missing), "
                   "tostring(v:containsKey('n')), v:get('none', 'dflt')}, ',') }")]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/t")
    assert status == 200
    assert body.decode() == "number,number,42,string,411,boolean,true,5.25,55,nil,true,dflt"
    assert backend.requests == []


def test_request_context_members(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["displayName"] = "Echo API"
    op(cfg, "ctx", "GET", "/ctx/{id}", {"inbound": [reply(body=(
        "@{ local r = context.request; local u = r.url; return {"
        "method = r.method, scheme = u.scheme, host = u.host, port = u.port, path = u.path,"
        "qs = u.queryString, x = u.query:get('x'), y = u.query:get('y'), dflt = u.query:get('zz', 'd'),"
        "opath = r.originalUrl.path, oqs = r.originalUrl.queryString,"
        "case = r.headers:get('x-CASE-test'), hdflt = r.headers:get('X-Missing', 'fallback'),"
        "all = r.headers:getAll('X-Multi'), ip = r.ipAddress, id = r.matchedParameters.id,"
        "id2 = r.matchedParameters:get('id'), nop = r.matchedParameters:get('nope', 'np'),"
        "api_id = context.api.id, api_name = context.api.name, api_path = context.api.path,"
        "api_url = context.api.serviceUrl, op_id = context.operation.id, op_m = context.operation.method,"
        "op_t = context.operation.urlTemplate, gw = context.deployment.gatewayId,"
        "rid = context.requestId, el = type(context.elapsed), elv = context.elapsed,"
        "ts = context.timestamp, le = tostring(context.lastError) } }"))]})
    p = portico(cfg)
    status, headers, body = request_multi(p, "GET", "/echo/ctx/a%20b?x=1&y=two%20words&y=3", [
        ("X-Case-Test", "Yes"), ("X-Multi", "a"), ("X-Multi", "b")])
    assert status == 200, body
    got = echo(body)
    assert got["method"] == "GET"
    assert got["scheme"] == "http"
    assert got["host"] == "127.0.0.1"
    assert got["port"] == p.port
    assert got["path"] == "/echo/ctx/a%20b"
    assert got["qs"].lstrip("?") == "x=1&y=two%20words&y=3"
    assert got["x"] == "1"
    assert got["y"] == "two words,3"
    assert got["dflt"] == "d"
    assert got["opath"] == "/echo/ctx/a%20b"
    assert got["oqs"].lstrip("?") == "x=1&y=two%20words&y=3"
    assert got["case"] == "Yes"
    assert got["hdflt"] == "fallback"
    assert got["all"] == ["a", "b"]
    assert got["ip"] == "127.0.0.1"
    assert got["id"] == "a b" and got["id2"] == "a b" and got["nop"] == "np"
    assert (got["api_id"], got["api_name"], got["api_path"]) == ("echo", "Echo API", "echo")
    assert got["api_url"] == backend.url + "/base"
    assert (got["op_id"], got["op_m"], got["op_t"]) == ("ctx", "GET", "/ctx/{id}")
    assert got["gw"] == "portico"
    assert got["el"] == "number" and 0 <= got["elv"] < 5000
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", got["ts"]), got["ts"]
    assert got["le"] == "nil"
    entry = p.access_entries(wait_for=1)[-1]
    assert got["rid"] == entry["requestId"] and got["rid"]
    assert entry["status"] == 200 and entry["operation"] == "ctx"
    assert backend.requests == []


def test_request_id_matches_backend_header_and_access_log(backend, portico):
    cfg = basic_config(backend.url)
    op(cfg, "t", "GET", "/t", {"inbound": [{"set-variable": {"name": "rid", "value": "@(context.requestId)"}}],
                               "outbound": [reply(body="@(context.variables.rid)")]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/t")
    assert status == 200 and body
    assert backend.last().header("X-Request-Id") == body.decode()
    assert p.access_entries(wait_for=1)[-1]["requestId"] == body.decode()


def test_trace_writes_to_the_error_log(backend, portico):
    cfg = basic_config(backend.url)
    op(cfg, "t", "GET", "/t", {"inbound": [
        {"set-variable": {"name": "x", "value": "@{ context.trace('trace-marker-' .. context.request.method); "
                                                "return 1 }"}},
        reply(body="@(context.requestId)")]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/t")
    assert status == 200
    deadline = time.time() + 3
    while "trace-marker-GET" not in p.log_text() and time.time() < deadline:
        time.sleep(0.05)
    line = [ln for ln in p.log_text().splitlines() if "trace-marker-GET" in ln]
    assert line and body.decode() in line[0]
    assert backend.requests == []


def test_request_body_read_with_preserve_content_reaches_backend(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["operations"][1]["policies"] = {  # create-item POST /items
        "inbound": [{"set-variable": {"name": "raw", "value": "@(context.request.body:asString(true))"}},
                    {"set-variable": {"name": "a", "value": "@(context.request.body:asJson(true).a + 1)"}}],
        "outbound": [reply(body="@(context.variables.raw .. '|' .. context.variables.a .. '|' .. "
                                "type(context.variables.a))")]}
    p = portico(cfg)
    payload = b'{"a": 1, "b": "x"}'
    status, _, body = p.request("POST", "/echo/items", body=payload, headers={"Content-Type": "application/json"})
    assert (status, body) == (200, payload + b"|2|number")
    assert backend.last().body == payload
    assert backend.last().header("Content-Length") == str(len(payload))


def test_request_body_read_without_preserve_is_consumed(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["operations"][1]["policies"] = {
        "inbound": [{"set-variable": {"name": "raw", "value": "@(context.request.body:asString())"}}],
        "outbound": ["base"] + reply_seen("@(context.variables.raw .. '|' .. context.response.statusCode)")}
    p = portico(cfg)
    status, _, body = p.request("POST", "/echo/items", body=b"consumed!", headers={"Content-Type": "text/plain"})
    assert (status, body) == (200, b"consumed!|200")
    assert backend.last().body == b""
    assert backend.last().header("Content-Length", "0") == "0"


def test_response_context_in_outbound(backend, portico):
    cfg = basic_config(backend.url)
    op(cfg, "st", "GET", "/status/{code}", {"outbound": [
        {"set-variable": {"name": "seen", "value": (
            "@{ local r = context.response; return json.encode({ code = r.statusCode, reason = r.statusReason,"
            " ct = r.headers:get('content-type'), target = r.body:asJson(true).target }) }")}},
        reply(body="@(context.variables.seen)")]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/status/201")
    assert status == 200
    assert echo(body) == {"code": 201, "reason": "Status", "ct": "application/json", "target": "/base/status/201"}
    assert [r.target for r in backend.requests] == ["/base/status/201"]


def test_return_response_expressions_see_backend_response(backend, portico):
    cfg = basic_config(backend.url)
    op(cfg, "st", "GET", "/status/{code}", {"outbound": [reply(
        body="@(context.response.statusCode .. ',' .. tostring(context.response.headers:get('content-type'))"
             " .. ',' .. context.response.body:asJson(true).target)",
        status={"code": "@(context.response.statusCode + 1)"})]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/status/201")
    assert [r.target for r in backend.requests] == ["/base/status/201"]
    assert (status, body) == (202, b"201,application/json,/base/status/201")


def test_response_body_preserved_or_consumed_in_outbound(backend, portico):
    cfg = basic_config(backend.url)
    op(cfg, "keep", "GET", "/keep", {"outbound": [
        {"set-variable": {"name": "b", "value": "@(context.response.body:asString(true))"}}]})
    op(cfg, "eat", "GET", "/eat", {"outbound": [
        {"set-variable": {"name": "b", "value": "@(context.response.body:asString())"}}]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/keep")
    assert status == 200 and echo(body)["target"] == "/base/keep"
    status, headers, body = p.request("GET", "/echo/eat")
    assert status == 200 and body == b""
    assert [r.target for r in backend.requests] == ["/base/keep", "/base/eat"]


def test_helper_library(backend, portico):
    cfg = basic_config(backend.url)

    def b64url(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    token = "%s.%s.%s" % (b64url({"alg": "HS256", "typ": "JWT"}), b64url({"sub": "alice", "n": 7}), "c2ln")
    op(cfg, "t", "GET", "/t", {"inbound": [reply(body=(
        "@{ local h = context.request.headers; return {"
        " j = json.decode('{\"k\":[1,2]}').k[2], je = json.decode(json.encode({a = 'x'})).a,"
        " b64 = base64.encode('hello'), b64d = base64.decode('aGVsbG8='),"
        " u = url.encode('a b&c'),"
        " sha = crypto.hex(crypto.sha256('abc')),"
        " mac = crypto.hex(crypto.hmac('sha256', 'key', 'The quick brown fox jumps over the lazy dog')),"
        " sub = asJwt(h:get('X-Token')).claims.sub, n = asJwt(h:get('X-Token')).claims.n,"
        " user = asBasic(h:get('Authorization')).userId } }"))]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/t", headers={
        "X-Token": token, "Authorization": "Basic " + base64.b64encode(b"bob:pw").decode()})
    assert status == 200, body
    got = echo(body)
    assert got["j"] == 2 and got["je"] == "x"
    assert got["b64"] == "aGVsbG8=" and got["b64d"] == "hello"
    assert got["u"] in ("a%20b%26c", "a+b%26c")
    assert got["sha"] == hashlib.sha256(b"abc").hexdigest()
    assert got["mac"] == hmac.new(b"key", b"The quick brown fox jumps over the lazy dog", "sha256").hexdigest()
    assert got["sub"] == "alice" and got["n"] == 7
    assert got["user"] == "bob"
    assert backend.requests == []


def test_choose_branches_and_otherwise(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["policies"] = {"inbound": [
        "base",
        {"set-variable": {"name": "tier", "value": "@(context.request.headers:get('x-tier', 'basic'))"}},
        {"choose": [
            {"when": "@(context.variables.tier == 'gold')", "then": [trail("gold")]},
            {"when": "@(context.variables.tier == 'silver')", "then": [trail("silver"), trail("s2")]},
            {"when": "@(context.variables.tier == 'empty')"},
            {"otherwise": [trail("other")]}]},
        trail("after")],
        "backend": [], "outbound": [reply()]}
    p = portico(cfg)
    for tier, expected in [("gold", b"gold,after,"), ("silver", b"silver,s2,after,"), ("empty", b"after,"),
                           (None, b"other,after,"), ("bronze", b"other,after,")]:
        status, _, body = p.request("GET", "/echo/x", headers={"X-Tier": tier} if tier else {})
        assert (status, body) == (200, expected), tier
    assert backend.requests == []


def test_choose_first_true_wins_and_nested(backend, portico):
    cfg = basic_config(backend.url)
    op(cfg, "t", "GET", "/t", {"inbound": [
        {"choose": [
            {"when": "@(true)", "then": [
                trail("first"),
                {"choose": [{"when": "@(false)", "then": [trail("no")]},
                            {"otherwise": [trail("nested-otherwise")]}]}]},
            {"when": "@(true)", "then": [trail("second")]}]},
        reply()]})
    p = portico(cfg)
    assert p.request("GET", "/echo/t")[::2] == (200, b"first,nested-otherwise,")
    assert backend.requests == []


# -------------------------------------------------------- config errors

BAD_CASES = [
    ("expression-syntax",
     {"inbound": [{"set-variable": {"name": "x", "value": "@(1 + )"}}]}, "@(1 + )", "expression"),
    ("block-syntax",
     {"inbound": [{"set-variable": {"name": "x", "value": "@{ return 1 +  }"}}]}, "@{ return 1 +  }", "expression"),
    ("unterminated-expression",
     {"inbound": [{"set-variable": {"name": "x", "value": "@(1 + 2"}}]}, "@(1 + 2", "must end"),
    ("unknown-policy", {"inbound": [{"no-such-policy": {"a": 1}}]}, "no-such-policy", "unknown policy"),
    ("attribute-not-allowed",
     {"inbound": [{"set-variable": {"name": "x", "value": "1", "colour": "red"}}]}, "colour", "colour"),
    ("missing-attribute", {"inbound": [{"set-variable": {"name": "only-name"}}]}, "only-name", "value"),
    ("forward-in-inbound", {"inbound": [{"forward-request": {"timeout": 5}}]}, "forward-request", "inbound"),
    ("mock-in-backend", {"backend": [{"mock-response": {"status-code": 200}}]}, "mock-response", "backend"),
    ("base-inside-choose",
     {"inbound": [{"choose": [{"when": "@(true)", "then": ["base"]}]}]}, "- \"base\"", "base"),
    ("base-inside-retry",
     {"backend": [{"retry": {"condition": "@(false)", "count": 1, "interval": 0, "policies": ["base"]}}]},
     "- \"base\"", "base"),
    ("unknown-section", {"inbound-ish": []}, "inbound-ish", "section"),
    ("unknown-fragment", {"inbound": [{"include-fragment": {"fragment-id": "nope"}}]}, "nope", "nope"),
    ("unknown-named-value",
     {"inbound": [{"set-variable": {"name": "x", "value": "{{missing-nv}}"}}]}, "missing-nv", "missing-nv"),
    ("unknown-named-value-in-expression",
     {"inbound": [{"set-variable": {"name": "x", "value": "@('{{missing-nv}}')"}}]}, "missing-nv", "missing-nv"),
    ("bad-int", {"backend": [{"forward-request": {"timeout": "soon"}}]}, "soon", "integer"),
    ("bad-enum", {"inbound": [reply(headers=[{"name": "X", "exists-action": "maybe", "value": "v"}])]},
     "maybe", "maybe"),
    ("expression-not-allowed",
     {"backend": [{"forward-request": {"timeout": "@(5)"}}]}, "@(5)", "expression"),
    ("otherwise-not-last",
     {"inbound": [{"choose": [{"otherwise": [trail("x")]}, {"when": "@(true)", "then": []}]}]},
     "otherwise", "last"),
    ("forward-twice",
     {"backend": [{"forward-request": {}}, {"forward-request": {"timeout": 2}}]}, ("forward-request", 2), "once"),
    ("retry-count-zero",
     {"backend": [{"retry": {"condition": "@(true)", "count": 0, "interval": 0, "policies": []}}]},
     "count: 0", "between"),
    ("retry-without-policies",
     {"backend": [{"retry": {"condition": "@(true)", "count": 1, "interval": 0}}]}, "condition:", "policies"),
    ("statement-not-a-map", {"inbound": ["set-variable"]}, "- \"set-variable\"", "statement"),
    ("return-response-variable-empty",
     {"inbound": [{"return-response": {"response-variable-name": ""}}]}, "response-variable-name", "empty"),
    ("wait-child",
     {"inbound": [{"wait": {"policies": [{"set-header": {"name": "X", "value": "v"}}]}}]}, "set-header",
     "child of wait"),
]


@pytest.mark.parametrize("policies,needle,words", [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
@pytest.mark.parametrize("scope", ["global", "api", "operation"])
def test_config_error_has_position(workdir, backend, policies, needle, words, scope):
    cfg = basic_config(backend.url)
    cfg["namedValues"] = [{"id": "known", "value": "v"}]
    if scope == "global":
        cfg["policies"] = policies
    elif scope == "api":
        cfg["apis"][0]["policies"] = policies
    else:
        cfg["apis"][0]["operations"][0]["policies"] = policies
    rc, out, text, path = check_config(workdir, cfg)
    assert rc == 1, out
    line = line_of(text, needle)
    m = re.search(r"portico\.yaml:(\d+):(\d+): (.*)", out)
    assert m, out
    assert int(m.group(1)) == line, (out, text)
    assert words.lower() in m.group(3).lower(), out


@pytest.mark.parametrize("scope", ["api", "operation"])
def test_once_per_section_holds_after_base(workdir, backend, scope):
    """[base, forward-request] under the global default forward-request would call the backend twice."""
    cfg = basic_config(backend.url)
    doc = {"backend": ["base", {"forward-request": {"timeout": 5}}]}
    if scope == "api":
        cfg["apis"][0]["policies"] = doc
    else:
        cfg["apis"][0]["operations"][0]["policies"] = doc
    rc, out, text, _ = check_config(workdir, cfg)
    assert rc == 1, out
    errors = [l for l in out.splitlines() if re.search(r"portico\.yaml:\d+:\d+:", l)]
    # said once, not once per operation
    assert len(errors) == 1 and ("portico.yaml:%d:" % line_of(text, "forward-request")) in errors[0], out
    assert "base makes the backend section hold two" in errors[0] and "default of the global scope" in errors[0], out
    # without base it is fine, and so is a global document with its own backend section and an API's base
    doc["backend"] = [{"forward-request": {"timeout": 5}}]
    assert check_config(workdir, cfg)[0] == 0


@pytest.mark.parametrize("frag,needle,words", [
    ([trail("a"), "base"], "- \"base\"", "base"),
    ([{"include-fragment": {"fragment-id": "other"}}], "include-fragment", "fragment"),
    ([{"choose": [{"when": "@(true)", "then": ["base"]}]}], "- \"base\"", "base"),
    ([{"set-variable": {"name": "x", "value": "@(1 +)"}}], "@(1 +)", "expression"),
], ids=["base", "include-fragment", "base-in-choose", "expression"])
def test_bad_fragment_is_a_config_error(workdir, backend, frag, needle, words):
    cfg = basic_config(backend.url)
    cfg["policyFragments"] = [{"id": "other", "value": [trail("o")]}, {"id": "bad", "value": frag}]
    cfg["policies"] = {"inbound": [{"include-fragment": {"fragment-id": "bad"}}]}
    rc, out, text, _ = check_config(workdir, cfg)
    assert rc == 1, out
    m = re.search(r"portico\.yaml:(\d+):(\d+): (.*)", out)
    assert m and int(m.group(1)) == line_of(text, needle), (out, text)
    assert words in m.group(3).lower(), out


def test_unused_fragment_with_base_is_a_config_error(workdir, backend):
    cfg = basic_config(backend.url)
    cfg["policyFragments"] = [{"id": "bad", "value": [trail("a"), "base"]}]
    rc, out, text, _ = check_config(workdir, cfg)
    assert rc == 1, out
    assert "portico.yaml:%d:" % line_of(text, "- \"base\"") in out, out


def test_valid_config_passes_check(workdir, backend):
    cfg = basic_config(backend.url)
    cfg["namedValues"] = [{"id": "greeting", "value": "hello"}]
    cfg["policyFragments"] = [{"id": "f", "value": [trail("f")]}]
    cfg["policies"] = {"inbound": [{"include-fragment": {"fragment-id": "f"}},
                                   {"set-variable": {"name": "g", "value": "@('{{greeting}}')"}}],
                       "on-error": [reply(status={"code": 500, "reason": "Failed"})]}
    rc, out, _, _ = check_config(workdir, cfg)
    assert rc == 0, out


def test_broken_reload_keeps_old_policies(backend, portico):
    cfg = basic_config(backend.url)
    op(cfg, "t", "GET", "/t", {"inbound": [reply(body="@('v1:' .. context.request.method)")]})
    p = portico(cfg)
    assert p.request("GET", "/echo/t")[::2] == (200, b"v1:GET")
    bad = json.loads(json.dumps(cfg))
    bad["apis"][0]["operations"][0]["policies"] = {"inbound": [reply(body="@('v2:' .. )")]}
    assert p.reload(bad) is False
    assert "v2:' .. )" in p.log_text() or "expression" in p.log_text()
    assert p.request("GET", "/echo/t")[::2] == (200, b"v1:GET")
    good = json.loads(json.dumps(cfg))
    good["apis"][0]["operations"][0]["policies"] = {"inbound": [reply(body="@('v3:' .. context.request.method)")]}
    assert p.reload(good) is True
    assert p.request("GET", "/echo/t")[::2] == (200, b"v3:GET")
    assert backend.requests == []


# ---------------------------------------------------------- runtime errors

LAST_ERROR_BODY = ("@{ local e = context.lastError; return { source = e.source, reason = e.reason,"
                   " message = e.message, section = e.section, path = e.path, policyId = e.policyId,"
                   " scope = e.scope, trail = context.variables.trail } }")


def error_config(backend_url, **kw):
    cfg = basic_config(backend_url, **kw)
    cfg["policies"] = {"on-error": [reply(body=LAST_ERROR_BODY, status={"code": 500, "reason": "Failed"})]}
    return cfg


def test_expression_error_in_inbound_runs_on_error(backend, portico):
    cfg = error_config(backend.url)
    op(cfg, "t", "GET", "/t", {"inbound": [
        trail("before"),
        {"set-variable": {"id": "concat-nil", "name": "x", "value": "@(nil .. 'x')"}},
        trail("after")],
        "outbound": [trail("outbound")]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/t")
    assert status == 500
    e = echo(body)
    assert e["source"] == "expression"
    assert e["reason"] == "ExpressionValueEvaluationFailure"
    assert "concatenate" in e["message"] and "nil" in e["message"]
    assert e["section"] == "inbound"
    assert e["path"] == "set-variable[2]"
    assert e["policyId"] == "concat-nil"
    assert e["scope"] == "operation"
    assert e["trail"] == "before,"  # the rest of inbound and outbound did not run
    assert backend.requests == []
    entry = p.access_entries(wait_for=1)[-1]
    assert entry["status"] == 500 and entry["reason"] == "ExpressionValueEvaluationFailure"


def test_expression_error_without_on_error_is_gateway_500(backend, portico):
    cfg = basic_config(backend.url)
    op(cfg, "t", "GET", "/t", {"inbound": [{"set-variable": {"name": "x", "value": "@(nil .. 'x')"}}]})
    p = portico(cfg)
    status, headers, body = p.request("GET", "/echo/t")
    assert status == 500
    assert headers["content-type"] == "application/json"
    got = echo(body)
    assert got["statusCode"] == 500 and isinstance(got["message"], str) and got["message"]
    assert backend.requests == []
    assert p.access_entries(wait_for=1)[-1]["reason"] == "ExpressionValueEvaluationFailure"


def test_error_scope_is_the_failing_statements_scope(backend, portico):
    cfg = error_config(backend.url)
    cfg["policies"]["inbound"] = [{"set-variable": {"id": "g1", "name": "x",
                                                    "value": "@(context.request.headers:get('x-fail') == 'g' "
                                                             "and nil .. 'x' or 1)"}}]
    cfg["apis"][0]["policies"] = {"inbound": [
        "base", {"set-variable": {"id": "a1", "name": "x",
                                  "value": "@(context.request.headers:get('x-fail') == 'a' and nil .. 'x' or 1)"}}]}
    p = portico(cfg)
    for who, scope, pid, path in [("g", "global", "g1", "set-variable[1]"), ("a", "api", "a1", "set-variable[2]")]:
        status, _, body = p.request("GET", "/echo/items/1", headers={"X-Fail": who})
        assert status == 500
        e = echo(body)
        assert (e["scope"], e["policyId"], e["path"], e["section"]) == (scope, pid, path, "inbound"), e
    assert p.request("GET", "/echo/items/1")[0] == 200
    assert [r.target for r in backend.requests] == ["/base/items/1"]


def test_error_path_inside_choose(backend, portico):
    cfg = error_config(backend.url)
    op(cfg, "t", "GET", "/t", {"inbound": [
        trail("a"),
        {"choose": [
            {"when": "@(false)", "then": [trail("no")]},
            {"when": "@(true)", "then": [trail("b"), {"set-variable": {"id": "in-choose", "name": "x",
                                                                        "value": "@(nil .. 'x')"}}]}]},
        trail("after")]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/t")
    assert status == 500
    e = echo(body)
    assert e["trail"] == "a,b,"
    assert e["policyId"] == "in-choose" and e["section"] == "inbound"
    assert e["path"].startswith("choose[2]/"), e["path"]
    assert e["path"].endswith("set-variable[2]"), e["path"]
    assert backend.requests == []


def test_error_in_choose_condition(backend, portico):
    cfg = error_config(backend.url)
    op(cfg, "t", "GET", "/t", {"inbound": [
        {"choose": [{"when": "@(context.variables.nope.x)", "then": [trail("no")]}]}]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/t")
    assert status == 500
    e = echo(body)
    assert e["reason"] == "ExpressionValueEvaluationFailure" and e["section"] == "inbound"
    assert e["path"] == "choose[1]"
    assert e.get("trail") is None
    assert backend.requests == []


def test_error_in_outbound_section(backend, portico):
    cfg = error_config(backend.url)
    op(cfg, "t", "GET", "/t", {"outbound": [trail("o1"), {"set-variable": {"name": "x", "value": "@(nil + 1)"}},
                                            trail("o2")]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/t")
    assert status == 500
    e = echo(body)
    assert (e["section"], e["path"], e["trail"]) == ("outbound", "set-variable[2]", "o1,")
    assert [r.target for r in backend.requests] == ["/base/t"]


def test_backend_connection_refused(backend, portico):
    port = closed_port()
    cfg = error_config(backend.url)
    cfg["apis"].append({"id": "dead", "path": "dead", "serviceUrl": "http://127.0.0.1:%d/x" % port,
                        "subscriptionRequired": False,
                        "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}],
                        "policies": {"outbound": [trail("outbound")]}})
    cfg["apis"].append({"id": "dead2", "path": "dead2", "serviceUrl": "http://127.0.0.1:%d/x" % port,
                        "subscriptionRequired": False,
                        "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}],
                        "policies": {"on-error": []}})
    p = portico(cfg)
    status, _, body = p.request("GET", "/dead/a")
    assert status == 500
    e = echo(body)
    assert e["reason"] == "BackendConnectionFailure" and e["source"] == "forward-request"
    assert e["section"] == "backend" and e["path"] == "forward-request[1]" and e["scope"] == "global"
    assert e.get("trail") is None
    # without on-error: the gateway's own 502
    status, headers, body = p.request("GET", "/dead2/a")
    assert status == 502 and headers["content-type"] == "application/json"
    assert echo(body)["statusCode"] == 502
    entries = p.access_entries(wait_for=2)
    assert [e.get("reason") for e in entries[-2:]] == ["BackendConnectionFailure", "BackendConnectionFailure"]


def test_backend_timeout(backend, portico):
    cfg = error_config(backend.url)
    op(cfg, "slow", "GET", "/sleep/{ms}", {"backend": [{"forward-request": {"timeout": 1}}]})
    op(cfg, "slow-plain", "GET", "/plain/sleep/{ms}", {"backend": [{"forward-request": {"timeout": 1}}],
                                                       "on-error": []})
    p = portico(cfg)
    t0 = time.monotonic()
    status, _, body = p.request("GET", "/echo/sleep/3000")
    took = time.monotonic() - t0
    assert status == 500
    e = echo(body)
    assert (e["reason"], e["section"], e["source"]) == ("Timeout", "backend", "forward-request")
    assert 0.9 <= took < 2.5, took
    status, headers, body = p.request("GET", "/echo/plain/sleep/3000")
    assert status == 504 and echo(body)["statusCode"] == 504
    assert [r.target for r in backend.requests] == ["/base/sleep/3000", "/base/plain/sleep/3000"]
    assert p.access_entries(wait_for=2)[-1]["reason"] == "Timeout"


def test_fail_on_error_status_code_runs_on_error(backend, portico):
    cfg = error_config(backend.url)
    op(cfg, "st", "GET", "/status/{code}", {"backend": [{"forward-request": {"fail-on-error-status-code": True}}]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/status/503")
    assert status == 500
    e = echo(body)
    assert e["section"] == "backend" and e["source"] == "forward-request" and e["reason"]
    status, _, body = p.request("GET", "/echo/status/204")
    assert status == 204
    assert [r.target for r in backend.requests] == ["/base/status/503", "/base/status/204"]


def test_error_inside_on_error_gives_gateway_response(backend, portico):
    cfg = basic_config(backend.url)
    cfg["policies"] = {"on-error": [trail("e"), {"set-variable": {"name": "y", "value": "@(nil .. 'y')"}},
                                    reply(status={"code": 418})]}
    op(cfg, "t", "GET", "/t", {"inbound": [{"set-variable": {"name": "x", "value": "@(nil .. 'x')"}}]})
    p = portico(cfg)
    status, headers, body = p.request("GET", "/echo/t")
    assert status == 500 and echo(body)["statusCode"] == 500
    assert headers["content-type"] == "application/json"
    assert backend.requests == []


def test_on_error_without_return_response_sends_error_status(backend, portico):
    """on-error that only records things: the client still gets an error response, not a 200."""
    cfg = basic_config(backend.url)
    cfg["policies"] = {"on-error": [trail("handled")]}
    op(cfg, "t", "GET", "/t", {"inbound": [{"set-variable": {"name": "x", "value": "@(nil .. 'x')"}}]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/t")
    assert status == 500 and echo(body)["statusCode"] == 500
    assert backend.requests == []


def test_lasterror_is_nil_outside_errors(backend, portico):
    cfg = basic_config(backend.url)
    op(cfg, "t", "GET", "/t", {"outbound": [reply(body="@(tostring(context.lastError))")]})
    p = portico(cfg)
    assert p.request("GET", "/echo/t")[::2] == (200, b"nil")
    assert len(backend.requests) == 1


# --------------------------------------------------------- return-response

def test_return_response_defaults(backend, portico):
    cfg = basic_config(backend.url)
    op(cfg, "t", "GET", "/t", {"inbound": [{"return-response": None}, trail("never")],
                               "outbound": [reply(status={"code": 418})]})
    p = portico(cfg)
    status, headers, body = p.request("GET", "/echo/t")
    assert (status, body) == (200, b"")
    assert headers.get("content-length") == "0"
    assert backend.requests == [] and backend.connections == 0


def test_return_response_status_headers_body_with_expressions(backend, portico):
    cfg = basic_config(backend.url)
    op(cfg, "t", "GET", "/t/{n}", {"inbound": [
        {"set-variable": {"name": "n", "value": "@(tonumber(context.request.matchedParameters.n))"}},
        reply(body="@(json.encode({n = context.variables.n, m = context.request.method}))",
              status={"code": "@(200 + context.variables.n)", "reason": "@('Reason ' .. context.variables.n)"},
              headers=[
                  {"name": "X-One", "value": "@('v' .. context.variables.n)"},
                  {"name": "X-Two", "exists-action": "append", "value": ["a", "b"]},
                  {"name": "X-Two", "exists-action": "append", "value": "c"},
                  {"name": "X-Skip", "value": "first"},
                  {"name": "X-Skip", "exists-action": "skip", "value": "second"},
                  {"name": "X-Over", "value": "old"},
                  {"name": "X-Over", "exists-action": "override", "value": "new"},
                  {"name": "X-Gone", "value": "bye"},
                  {"name": "X-Gone", "exists-action": "delete"},
                  {"name": "Content-Type", "value": "application/json"}])]})
    p = portico(cfg)
    c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5)
    c.request("GET", "/echo/t/7")
    r = c.getresponse()
    body = r.read()
    c.close()
    assert (r.status, r.reason) == (207, "Reason 7")
    assert json.loads(body) == {"n": 7, "m": "GET"}
    assert r.getheader("X-One") == "v7"
    assert r.getheader("X-Two").replace(" ", "") == "a,b,c"
    assert r.getheader("X-Skip") == "first"
    assert r.getheader("X-Over") == "new"
    assert r.getheader("X-Gone") is None
    assert r.getheader("Content-Type") == "application/json"
    assert r.getheader("Content-Length") == str(len(body))
    assert backend.requests == []


def test_return_response_in_outbound_replaces_backend_response(backend, portico):
    cfg = basic_config(backend.url)
    op(cfg, "st", "GET", "/status/{code}", {"outbound": [
        {"set-variable": {"name": "was", "value": "@(context.response.statusCode)"}},
        reply(body="@('replaced ' .. context.variables.was)", status={"code": 202},
              headers=[{"name": "X-Replaced", "value": "yes"}]),
        trail("never")]})
    p = portico(cfg)
    status, headers, body = p.request("GET", "/echo/status/404")
    assert (status, body) == (202, b"replaced 404")
    assert headers["x-replaced"] == "yes"
    assert headers.get("content-type") is None
    assert [r.target for r in backend.requests] == ["/base/status/404"]
    # the connection and the next request are fine
    status, _, body = p.request("GET", "/echo/status/500")
    assert (status, body) == (202, b"replaced 500")


def test_return_response_in_inbound_skips_outbound(backend, portico):
    cfg = basic_config(backend.url)
    cfg["policies"] = {"outbound": [reply(body="outbound ran", status={"code": 500})]}
    op(cfg, "t", "GET", "/t", {"inbound": [reply(body="inbound answer", status={"code": 201})]})
    p = portico(cfg)
    assert p.request("GET", "/echo/t")[::2] == (201, b"inbound answer")
    assert backend.requests == []


def test_return_response_keeps_connection_and_client_body(backend, portico):
    """An early answer to a POST with a body: the next request on the connection still works."""
    cfg = basic_config(backend.url)
    cfg["apis"][0]["operations"][1]["policies"] = {"inbound": [reply(body="early")]}
    p = portico(cfg)
    c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5)
    try:
        c.request("POST", "/echo/items", body=b"x" * 5000, headers={"Content-Type": "text/plain"})
        r = c.getresponse()
        assert (r.status, r.read()) == (200, b"early")
        if r.getheader("Connection", "").lower() == "close":
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5)
        c.request("GET", "/echo/items/9")
        r = c.getresponse()
        assert r.status == 200 and echo(r.read())["target"] == "/base/items/9"
    finally:
        c.close()
    assert [r.target for r in backend.requests] == ["/base/items/9"]


# ----------------------------------------------------------- mock-response

def mock_config(backend_url):
    cfg = basic_config(backend_url)
    op(cfg, "mocked", "GET", "/mocked", {"inbound": [{"mock-response": {"status-code": 200,
                                                                        "content-type": "application/json"}}]},
       responses=[
           {"statusCode": 200, "representations": [
               {"contentType": "application/xml", "examples": {"default": {"value": "<a>1</a>"}}},
               {"contentType": "application/json", "examples": {"default": {"value": {"id": 1, "name": "x"}}}}]},
           {"statusCode": 201, "representations": [
               {"contentType": "text/plain", "examples": {"first": {"value": "created!"}}}]}])
    op(cfg, "mocked201", "GET", "/mocked201", {"inbound": [{"mock-response": {"status-code": 201}}]},
       responses=[{"statusCode": 201, "representations": [
           {"contentType": "text/plain", "examples": {"first": {"value": "created!"}}}]}])
    op(cfg, "noexample", "GET", "/noexample", {"inbound": [{"mock-response": {"status-code": 404}}]},
       responses=[{"statusCode": 200, "representations": [
           {"contentType": "application/json", "examples": {"default": {"value": {"id": 1}}}}]}])
    op(cfg, "default", "GET", "/mockdefault", {"inbound": [{"mock-response": None}]})
    op(cfg, "outmock", "GET", "/outmock", {"outbound": [{"mock-response": {"status-code": 200}}]},
       responses=[{"statusCode": 200, "representations": [
           {"contentType": "application/json", "examples": {"default": {"value": {"mocked": True}}}}]}])
    return cfg


def test_mock_response_uses_operation_example(backend, portico):
    p = portico(mock_config(backend.url))
    status, headers, body = p.request("GET", "/echo/mocked")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"id": 1, "name": "x"}
    status, headers, body = p.request("GET", "/echo/mocked201")
    assert (status, body) == (201, b"created!")
    assert headers["content-type"] == "text/plain"
    assert backend.requests == []


def test_mock_response_without_example_is_empty(backend, portico):
    p = portico(mock_config(backend.url))
    status, headers, body = p.request("GET", "/echo/noexample")
    assert (status, body) == (404, b"")
    status, headers, body = p.request("GET", "/echo/mockdefault")
    assert (status, body) == (200, b"")
    assert headers.get("content-length") == "0"
    assert backend.requests == []


def test_mock_response_in_outbound_replaces_backend_answer(backend, portico):
    p = portico(mock_config(backend.url))
    status, headers, body = p.request("GET", "/echo/outmock")
    assert status == 200 and json.loads(body) == {"mocked": True}
    assert headers["content-type"] == "application/json"
    assert [r.target for r in backend.requests] == ["/base/outmock"]


# ------------------------------------------------------------------- retry

def retry_backend(condition="@(context.response.statusCode >= 500)", count=3, interval=0, fwd=None, **kw):
    r = {"condition": condition, "count": count, "interval": interval,
         "policies": [{"forward-request": fwd or {}}]}
    r.update(kw)
    return {"backend": [{"retry": r}]}


def test_retry_until_success(flaky, portico):
    cfg = basic_config(flaky.url)
    cfg["apis"][0]["policies"] = retry_backend()
    p = portico(cfg)
    status, headers, body = p.request("GET", "/echo/fail/2/503/a")
    assert status == 200
    got = echo(body)
    assert got["attempt"] == 3 and got["status"] == 200
    assert headers["x-attempt"] == "3"
    hits = flaky.hits("/fail/2/503/a")
    assert [h["attempt"] for h in hits] == [1, 2, 3]
    assert all(h["target"] == "/base/fail/2/503/a" for h in hits)


def test_retry_stops_after_count(flaky, portico):
    cfg = basic_config(flaky.url)
    cfg["apis"][0]["policies"] = retry_backend(count=2)
    p = portico(cfg)
    status, headers, body = p.request("GET", "/echo/fail/10/502/b")
    assert status == 502
    assert echo(body)["attempt"] == 3  # the first attempt and 2 retries; the last answer is passed on
    assert len(flaky.hits("/fail/10/502/b")) == 3


def test_retry_condition_false_runs_once(flaky, portico):
    cfg = basic_config(flaky.url)
    cfg["apis"][0]["policies"] = retry_backend(condition="@(context.response.statusCode == 599)")
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/fail/1/503/c")
    assert status == 503 and echo(body)["attempt"] == 1
    assert len(flaky.hits("/fail/1/503/c")) == 1


def test_retry_outbound_sees_final_response(flaky, portico):
    cfg = basic_config(flaky.url)
    cfg["apis"][0]["policies"] = retry_backend()
    cfg["apis"][0]["policies"]["outbound"] = [
        {"set-variable": {"name": "seen",
                          "value": "@(context.response.statusCode .. ':' .. context.response.headers:get('X-Attempt'))"}},
        reply(body="@(context.variables.seen)")]
    p = portico(cfg)
    assert p.request("GET", "/echo/fail/1/500/d")[::2] == (200, b"200:2")
    assert len(flaky.hits("/fail/1/500/d")) == 2


def test_retry_generic_statements(backend, portico):
    """retry is not tied to forward-request: it repeats any statements while the condition holds."""
    cfg = basic_config(backend.url)
    op(cfg, "t", "GET", "/t", {"inbound": [
        {"set-variable": {"name": "n", "value": "@(0)"}},
        {"retry": {"condition": "@(context.variables.n < 4)", "count": 10, "interval": 0,
                   "policies": [{"set-variable": {"name": "n", "value": "@(context.variables.n + 1)"}},
                                trail("r")]}},
        reply(body="@(context.variables.n .. '|' .. context.variables.trail)")]})
    p = portico(cfg)
    assert p.request("GET", "/echo/t")[::2] == (200, b"4|r,r,r,r,")
    assert backend.requests == []


def test_retry_of_a_failing_expression_then_on_error(backend, portico):
    cfg = error_config(backend.url)
    op(cfg, "t", "GET", "/t", {"inbound": [
        {"retry": {"condition": "@(true)", "count": 2, "interval": 0,
                   "policies": [trail("try"), {"set-variable": {"name": "x", "value": "@(nil .. 'x')"}}]}}]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/t")
    assert status == 500
    e = echo(body)
    assert e["trail"] == "try,try,try,"
    assert e["reason"] == "ExpressionValueEvaluationFailure"
    assert e["path"] == "retry[1]/set-variable[2]"
    assert backend.requests == []


def test_retry_on_connection_failure(backend, portico):
    """A refused connection inside retry: the condition can look at lastError and the retries happen."""
    cfg = error_config(backend.url)
    port = closed_port()
    cfg["apis"][0]["serviceUrl"] = "http://127.0.0.1:%d/base" % port
    op(cfg, "t", "GET", "/t", {"backend": [{"retry": {
        "condition": "@(context.lastError ~= nil)", "count": 2, "interval": 0,
        "policies": [trail("attempt"), {"forward-request": {}}]}}]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/t")
    assert status == 500
    e = echo(body)
    assert e["reason"] == "BackendConnectionFailure" and e["section"] == "backend"
    assert e["trail"] == "attempt,attempt,attempt,"  # three attempts, each refused


def test_retry_fixed_interval_waits_without_blocking_the_worker(flaky, backend, portico):
    cfg = basic_config(flaky.url)
    cfg["apis"][0]["policies"] = retry_backend(count=1, interval=1)
    cfg["apis"].append({"id": "fast", "path": "fast", "serviceUrl": backend.url + "/fast",
                        "subscriptionRequired": False,
                        "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]})
    p = portico(cfg)
    assert cfg["workers"] == 1
    result = {}

    def slow():
        t0 = time.monotonic()
        result["slow"] = p.request("GET", "/echo/fail/1/503/e")
        result["slow_t"] = time.monotonic() - t0
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)  # the first attempt is done, the retry waits
    t0 = time.monotonic()
    fast = [p.request("GET", "/fast/x") for _ in range(3)]
    fast_t = time.monotonic() - t0
    t.join()
    assert all(f[0] == 200 for f in fast)
    assert fast_t < 0.5, fast_t
    assert result["slow"][0] == 200 and echo(result["slow"][2])["attempt"] == 2
    assert 1.0 <= result["slow_t"] < 2.5, result["slow_t"]
    hits = flaky.hits("/fail/1/503/e")
    assert len(hits) == 2
    assert 0.9 <= hits[1]["time"] - hits[0]["time"] < 2.0
    assert len(backend.requests) == 3


def test_many_waiting_retries_run_concurrently(flaky, portico):
    cfg = basic_config(flaky.url)
    cfg["apis"][0]["policies"] = retry_backend(count=1, interval=1)
    p = portico(cfg)
    results = []

    def one(i):
        results.append(p.request("GET", "/echo/fail/1/503/par%d" % i, timeout=10))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    assert len(results) == 6 and all(r[0] == 200 for r in results)
    assert all(echo(r[2])["attempt"] == 2 for r in results)
    assert took < 3.0, took  # six 1 s waits overlap on the one worker
    assert len(flaky.hits("/par")) == 12


def test_retry_first_fast_retry(flaky, portico):
    cfg = basic_config(flaky.url)
    cfg["apis"][0]["policies"] = retry_backend(count=2, interval=1, **{"first-fast-retry": True})
    p = portico(cfg)
    t0 = time.monotonic()
    status, _, body = p.request("GET", "/echo/fail/1/503/f")
    took = time.monotonic() - t0
    assert status == 200 and echo(body)["attempt"] == 2
    assert took < 0.7, took  # the first retry does not wait
    # with two failures, the second retry waits the interval
    t0 = time.monotonic()
    status, _, body = p.request("GET", "/echo/fail/2/503/g")
    took = time.monotonic() - t0
    assert status == 200 and echo(body)["attempt"] == 3
    assert 0.9 <= took < 2.5, took
    hits = flaky.hits("/fail/2/503/g")
    assert hits[1]["time"] - hits[0]["time"] < 0.5
    assert hits[2]["time"] - hits[1]["time"] >= 0.9


def test_retry_linear_interval(flaky, portico):
    cfg = basic_config(flaky.url)
    # waits: interval + (n-1) * delta -> 0 s, then 1 s
    cfg["apis"][0]["policies"] = retry_backend(count=2, interval=0, delta=1)
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/fail/2/503/h")
    assert status == 200 and echo(body)["attempt"] == 3
    hits = flaky.hits("/fail/2/503/h")
    gaps = [hits[i + 1]["time"] - hits[i]["time"] for i in range(2)]
    assert gaps[0] < 0.5 and 0.9 <= gaps[1] < 1.8, gaps


def test_retry_exponential_interval_is_capped(flaky, portico):
    cfg = basic_config(flaky.url)
    # exponential: interval + (2^(n-1) - 1) * ~delta for the n-th retry, capped by max-interval:
    # 0 s, then 1 s instead of ~5 s
    cfg["apis"][0]["policies"] = retry_backend(count=2, interval=0, delta=5, **{"max-interval": 1})
    p = portico(cfg)
    t0 = time.monotonic()
    status, _, body = p.request("GET", "/echo/fail/2/503/i")
    took = time.monotonic() - t0
    assert status == 200 and echo(body)["attempt"] == 3
    assert 0.9 <= took < 2.0, took
    assert len(flaky.hits("/fail/2/503/i")) == 3


def test_retry_exponential_first_retry_waits_the_interval(flaky, portico):
    cfg = basic_config(flaky.url)
    # 1 s, then 1 s + 1 * ~1 s (0.8-1.2): about 2.8-3.2 s in all (not 1.8-2.2 + 3.4-4.6)
    cfg["apis"][0]["policies"] = retry_backend(count=2, interval=1, delta=1, **{"max-interval": 10})
    p = portico(cfg)
    t0 = time.monotonic()
    status, _, body = p.request("GET", "/echo/fail/2/503/x")
    took = time.monotonic() - t0
    assert status == 200 and echo(body)["attempt"] == 3
    assert 2.6 <= took < 4.0, took


def test_retry_resends_buffered_request_body(flaky, portico):
    cfg = basic_config(flaky.url)
    cfg["apis"][0]["policies"] = retry_backend(fwd={"buffer-request-body": True})
    p = portico(cfg)
    payload = b"0123456789" * 3000
    status, _, body = p.request("POST", "/echo/fail/2/503/j", body=payload, headers={"Content-Type": "text/plain"})
    assert status == 200
    assert echo(body)["attempt"] == 3
    hits = flaky.hits("/fail/2/503/j")
    assert len(hits) == 3
    assert all(h["body"] == payload and h["method"] == "POST" for h in hits)


def test_retry_of_streamed_body_fails(flaky, portico):
    cfg = basic_config(flaky.url)
    cfg["apis"][0]["policies"] = retry_backend()
    cfg["policies"] = {"on-error": [reply(body="@(context.lastError.reason .. '|' .. context.lastError.message)",
                                          status={"code": 500})]}
    p = portico(cfg)
    status, _, body = p.request("POST", "/echo/fail/2/503/k", body=b"streamed body",
                                headers={"Content-Type": "text/plain"})
    assert status == 500
    assert b"buffer-request-body" in body
    hits = flaky.hits("/fail/2/503/k")
    assert len(hits) == 1 and hits[0]["body"] == b"streamed body"
    # a request without a body is retried normally on the same config
    assert p.request("GET", "/echo/fail/1/503/l")[0] == 200


def test_retry_with_request_body_read_in_inbound(flaky, portico):
    """A body read (preserved) by an inbound expression is in memory: retries resend it."""
    cfg = basic_config(flaky.url)
    cfg["apis"][0]["policies"] = retry_backend()
    cfg["apis"][0]["policies"]["inbound"] = [
        {"set-variable": {"name": "len", "value": "@(#context.request.body:asString(true))"}}]
    p = portico(cfg)
    status, _, body = p.request("POST", "/echo/fail/1/503/m", body=b"abc", headers={"Content-Type": "text/plain"})
    assert status == 200 and echo(body)["attempt"] == 2
    assert [h["body"] for h in flaky.hits("/fail/1/503/m")] == [b"abc", b"abc"]


def test_retry_suspension_keeps_variables_and_sections(flaky, portico):
    """The pipeline resumes after each suspension with its state: variables set before, inside and after."""
    cfg = basic_config(flaky.url)
    op(cfg, "t", "GET", "/fail/{n}/{s}/{k}", {
        "inbound": [trail("in"), {"set-variable": {"name": "num", "value": "@(40)"}}],
        "backend": [{"retry": {"condition": "@(context.response.statusCode >= 500)", "count": 3, "interval": 1,
                               "first-fast-retry": True,
                               "policies": [trail("try"), {"forward-request": {"timeout": 5}}]}},
                    trail("be-after")],
        "outbound": reply_seen("@(context.variables.trail .. context.response.statusCode .. ',' .. "
                               "(context.variables.num + 2))")})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/fail/2/500/n")
    assert (status, body) == (200, b"in,try,try,try,be-after,200,42")
    assert len(flaky.hits("/fail/2/500/n")) == 3


# ------------------------------------------------- asynchronous suspension

def test_outbound_body_read_suspends_without_blocking(backend, portico):
    """Reading a slowly streamed backend body in outbound suspends the pipeline; others are served meanwhile."""
    cfg = basic_config(backend.url)
    op(cfg, "stream", "GET", "/stream", {"outbound": [
        {"set-variable": {"name": "b", "value": "@(context.response.body:asString(true))"}},
        {"set-variable": {"name": "el", "value": "@(context.elapsed)"}},
        reply(body="@(#context.variables.b .. ':' .. context.variables.b:sub(1, 12) .. ':' .. "
                   "tostring(context.variables.el >= 900))")]})
    p = portico(cfg)
    result = {}

    def slow():
        result["r"] = p.request("GET", "/echo/stream?chunks=5&size=10&delay=200")
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    fast = [p.request("GET", "/echo/items/%d" % i) for i in range(3)]
    fast_t = time.monotonic() - t0
    t.join()
    assert result["r"][::2] == (200, b"50:aaaaaaaaaabb:true")
    assert all(f[0] == 200 for f in fast) and fast_t < 0.5, fast_t
    assert len(backend.requests) == 4


def test_inbound_body_read_waits_for_slow_upload_without_blocking(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["operations"][1]["policies"] = {  # create-item POST /items
        "inbound": [{"set-variable": {"name": "h", "value": "@(crypto.hex(crypto.sha256("
                                                            "context.request.body:asString(true))))"}}],
        "outbound": [reply(body="@(context.variables.h)")]}
    p = portico(cfg)
    payload = b"slow-upload-" * 100
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    try:
        s.sendall(b"POST /echo/items HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(payload) + payload[:100])
        time.sleep(0.3)
        # the pipeline waits for the body: another client is served at once
        t0 = time.monotonic()
        assert p.request("GET", "/echo/items/5")[0] == 200
        assert time.monotonic() - t0 < 0.5
        s.sendall(payload[100:])
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 64:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 200")
    assert data.split(b"\r\n\r\n", 1)[1] == hashlib.sha256(payload).hexdigest().encode()
    assert backend.requests[-1].body == payload
    assert [r.target for r in backend.requests] == ["/base/items/5", "/base/items"]


def test_client_gone_during_retry_wait(flaky, portico):
    """Clients that leave while their retry waits: the worker keeps serving, nothing breaks, and each
    request is tried at most count + 1 times (the gateway does not watch idle clients, so the pending
    attempt may still run)."""
    cfg = basic_config(flaky.url)
    cfg["apis"][0]["policies"] = retry_backend(count=1, interval=1)
    p = portico(cfg)
    for i in range(3):
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        s.sendall(b"GET /echo/fail/5/503/gone%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        time.sleep(0.2)
        s.close()
    status, _, body = p.request("GET", "/echo/fail/0/503/during")
    assert status == 200 and echo(body)["attempt"] == 1
    time.sleep(1.3)  # the waits have ended
    status, _, body = p.request("GET", "/echo/fail/0/503/after")
    assert status == 200 and echo(body)["attempt"] == 1
    assert p.proc.poll() is None
    assert all(1 <= len(flaky.hits("/gone%d" % i)) <= 2 for i in range(3))
    entries = p.access_entries(wait_for=5)
    assert sorted(e["path"] for e in entries if "gone" in e["path"]) == ["/echo/fail/5/503/gone%d" % i
                                                                          for i in range(3)]


def test_shutdown_with_a_pending_retry_timer(flaky, portico):
    cfg = basic_config(flaky.url)
    cfg["apis"][0]["policies"] = retry_backend(count=3, interval=5)
    p = portico(cfg)
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    try:
        s.sendall(b"GET /echo/fail/9/503/pending HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        assert len(flaky.hits("/pending")) == 1
        assert p.stop(timeout=20) is not None  # the sanitizer checks of the fixture run on stop
    finally:
        s.close()
    assert len(flaky.hits("/pending")) <= 2


def test_table_and_nil_values(backend, portico):
    cfg = basic_config(backend.url)
    op(cfg, "t", "GET", "/t", {"inbound": [
        {"set-variable": {"name": "t", "value": "@({a = 1, b = {2, 3}})"}},
        reply(body="@(context.variables.t .. '|' .. type(context.variables.t))")]})
    op(cfg, "nil", "GET", "/nil", {"inbound": [reply(body="@(nil)")]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/t")
    js, _, typ = body.decode().partition("|")
    assert status == 200 and json.loads(js) == {"a": 1, "b": [2, 3]} and typ == "string"
    assert p.request("GET", "/echo/nil")[::2] == (200, b"")
    assert backend.requests == []


def test_timeout_inside_retry(backend, portico):
    cfg = error_config(backend.url)
    op(cfg, "to", "GET", "/sleep/{ms}", {"backend": [{"retry": {
        "condition": "@(context.lastError ~= nil and context.lastError.reason == 'Timeout')", "count": 1,
        "interval": 0, "policies": [trail("try"), {"forward-request": {"timeout": 1}}]}}]})
    p = portico(cfg)
    t0 = time.monotonic()
    status, _, body = p.request("GET", "/echo/sleep/1500")
    took = time.monotonic() - t0
    assert status == 500
    e = echo(body)
    assert (e["reason"], e["section"], e["trail"]) == ("Timeout", "backend", "try,try,")
    assert e["path"] == "retry[1]/forward-request[2]"
    assert 1.8 <= took < 3.5, took
    assert [r.target for r in backend.requests] == ["/base/sleep/1500"] * 2
    # the timed-out connections are not reused
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 200 and echo(body)["connection"] == 3


def test_pipelined_requests_wait_for_a_suspended_pipeline(backend, portico):
    cfg = basic_config(backend.url)
    op(cfg, "wait", "GET", "/wait", {"inbound": [
        {"retry": {"condition": "@(context.variables.n == nil)", "count": 1, "interval": 1, "policies": [
            {"set-variable": {"name": "n", "value": "@(context.variables.m)"}},
            {"set-variable": {"name": "m", "value": "@(1)"}}]}},
        reply(body="@('waited ' .. context.variables.n)")]})
    p = portico(cfg)
    t0 = time.monotonic()
    out = raw_exchange(p.port, b"GET /echo/wait HTTP/1.1\r\nHost: x\r\n\r\n"
                               b"GET /echo/items/2 HTTP/1.1\r\nHost: x\r\n\r\n"
                               b"GET /echo/wait HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=6)
    took = time.monotonic() - t0
    got = parse_responses(out)
    assert [(s, b[:8]) for s, _, b in got] == [(200, b"waited 1"), (200, b'{"method'), (200, b"waited 1")]
    assert echo(got[1][2])["target"] == "/base/items/2"
    assert 1.9 <= took < 4.0, took
    assert [r.target for r in backend.requests] == ["/base/items/2"]


def test_mock_response_in_outbound_drops_streamed_backend_body(backend, portico):
    cfg = basic_config(backend.url)
    op(cfg, "om", "GET", "/stream", {"outbound": [{"mock-response": {"status-code": 203}}]})
    p = portico(cfg)
    t0 = time.monotonic()
    status, _, body = p.request("GET", "/echo/stream?chunks=5&delay=200")
    assert (status, body) == (203, b"")
    assert time.monotonic() - t0 < 0.8  # the slow body is not waited for
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 200 and echo(body)["connection"] == 2
    assert [r.target for r in backend.requests] == ["/base/stream?chunks=5&delay=200", "/base/items/1"]


def test_return_response_invalid_status_from_expression(backend, portico):
    cfg = error_config(backend.url)
    op(cfg, "t", "GET", "/t", {"inbound": [reply(status={"code": "@('abc')"}, body="x")]})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/t")
    assert status == 500
    e = echo(body)
    assert (e["source"], e["section"], e["path"]) == ("return-response", "inbound", "return-response[1]")
    assert backend.requests == []


def test_suspension_inside_choose_and_retry_resumes_in_place(flaky, portico):
    cfg = basic_config(flaky.url)
    op(cfg, "t", "GET", "/fail/{n}/{s}/{k}", {
        "backend": [
            trail("b0"),
            {"choose": [
                {"when": "@(context.request.headers:get('x-mode') == 'retry')", "then": [
                    {"retry": {"condition": "@(context.response.statusCode >= 500)", "count": 3, "interval": 0,
                               "policies": [{"choose": [{"when": "@(true)", "then": [
                                   trail("fwd"), {"forward-request": {"timeout": 5}}, trail("back")]}]}]}},
                    trail("retried")]},
                {"otherwise": [{"forward-request": {}}, trail("plain")]}]},
            trail("b-end")],
        "outbound": reply_seen("@(context.variables.trail .. context.response.statusCode)")})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/fail/2/503/sc", headers={"X-Mode": "retry"})
    assert (status, body) == (200, b"b0,fwd,back,fwd,back,fwd,back,retried,b-end,200")
    status, _, body = p.request("GET", "/echo/fail/1/503/sc2")
    assert (status, body) == (200, b"b0,plain,b-end,503")
    assert len(flaky.hits("/sc")) == 4


def test_outbound_error_drops_streamed_backend_body(backend, portico):
    cfg = error_config(backend.url)
    op(cfg, "st", "GET", "/stream", {"outbound": [{"set-variable": {"name": "x", "value": "@(nil .. 'x')"}}]})
    p = portico(cfg)
    t0 = time.monotonic()
    status, _, body = p.request("GET", "/echo/stream?chunks=5&delay=200")
    assert status == 500 and time.monotonic() - t0 < 0.8
    e = echo(body)
    assert (e["section"], e["source"]) == ("outbound", "expression")
    assert re.search(r"portico\.yaml:\d+:\d+", e["message"]), e["message"]  # where the expression is
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 200 and echo(body)["connection"] == 2
