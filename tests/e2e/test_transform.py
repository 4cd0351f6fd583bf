"""The transformation policy family (plugins/transform): set-header,
set-query-parameter, rewrite-uri, set-method, set-status, set-body,
find-and-replace, json-to-xml, xml-to-json, jsonp, redirect-content-urls.

Every test runs the real gateway with the plugin loaded and checks both
what the client got and what the backend received (EchoBackend describes
the request it saw; its /raw path answers with bytes the test chooses).
"""

import base64
import http.client
import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import BIN, Portico, basic_config, free_port, parse_responses, raw_exchange


# ------------------------------------------------------------------ helpers

def call(p, method, path, body=None, headers=None):
    """One request; returns (status, reason, [(name, value)...], body)."""
    c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.reason, r.getheaders(), r.read()
    finally:
        c.close()


def hget(headers, name):
    """All values of a header in a (name, value) list, case-insensitive."""
    return [v for k, v in headers if k.lower() == name.lower()]


def seen(backend):
    """What the backend received last: (method, target, headers list, body bytes)."""
    r = backend.last()
    assert r is not None, "the backend was not called"
    return r


def echo_body(data):
    got = json.loads(data)
    return base64.b64decode(got["body"])


def with_policies(backend, where="api", **sections):
    cfg = basic_config(backend.url)
    doc = {k.replace("_", "-"): v for k, v in sections.items()}
    if where == "api":
        cfg["apis"][0]["policies"] = doc
    else:
        cfg["policies"] = doc
    return cfg


def inbound(*stmts):
    return ["base"] + list(stmts)


def raw_response(body, content_type="application/json", status="200 OK", extra=""):
    """Hex of a complete backend response, for EchoBackend's /raw path."""
    if isinstance(body, str):
        body = body.encode()
    head = "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n" % (
        status, content_type, len(body), extra)
    return (head.encode() + body).hex()


def config_check(workdir, cfg):
    """Runs `portico -t` on a configuration; returns (exit code, output)."""
    p = Portico(workdir, cfg)
    r = subprocess.run([BIN, "-t", "-c", p.config_path], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


ON_ERROR_REPORT = [
    {"set-header": {"name": "X-Error-Reason", "value": "@(context.lastError.reason)"}},
    {"set-header": {"name": "X-Error-Source", "value": "@(context.lastError.source)"}},
    {"set-header": {"name": "X-Error-Section", "value": "@(context.lastError.section)"}},
]


# --------------------------------------------------------------- set-header

def test_set_header_inbound_exists_actions(backend, portico):
    p = portico(with_policies(backend, inbound=inbound(
        {"set-header": {"name": "X-Over", "value": "new"}},  # override is the default
        {"set-header": {"name": "X-Skip", "exists-action": "skip", "value": "new"}},
        {"set-header": {"name": "X-Absent", "exists-action": "skip", "value": "added"}},
        {"set-header": {"name": "X-App", "exists-action": "append", "value": "new"}},
        {"set-header": {"name": "X-Del", "exists-action": "delete"}},
        {"set-header": {"name": "X-Del-Absent", "exists-action": "delete"}},
    )))
    status, _, headers, _ = call(p, "GET", "/echo/items/1", headers={
        "X-Over": "old", "X-Skip": "old", "X-App": "old", "X-Del": "old", "X-Kept": "k"})
    assert status == 200
    r = seen(backend)
    assert r.header_all("X-Over") == ["new"]
    assert r.header_all("X-Skip") == ["old"]
    assert r.header_all("X-Absent") == ["added"]
    assert r.header_all("X-App") == ["old, new"]
    assert r.header_all("X-Del") == []
    assert r.header_all("X-Kept") == ["k"]
    # inbound changes the request only
    assert hget(headers, "X-Over") == [] and hget(headers, "X-Absent") == []


def test_set_header_outbound_reaches_the_client_only(backend, portico):
    p = portico(with_policies(backend, outbound=inbound(
        {"set-header": {"name": "X-Out", "value": "to-client"}},
        {"set-header": {"name": "Content-Type", "exists-action": "skip", "value": "text/plain"}},
        {"set-header": {"name": "X-Powered", "exists-action": "append", "value": "portico"}},
        {"set-header": {"name": "Server", "exists-action": "delete"}},
    )))
    status, _, headers, body = call(p, "GET", "/echo/items/1")
    assert status == 200
    assert hget(headers, "X-Out") == ["to-client"]
    assert hget(headers, "Content-Type") == ["application/json"]  # skip: the backend's stays
    assert hget(headers, "X-Powered") == ["portico"]
    assert seen(backend).header("X-Out") is None
    assert json.loads(body)["target"] == "/base/items/1"


def test_set_header_outbound_delete_and_override_backend_header(backend, portico):
    p = portico(with_policies(backend, outbound=inbound(
        {"set-header": {"name": "content-type", "exists-action": "delete"}},
        {"set-header": {"name": "X-Backend", "value": ["one", "two"]}},
    )))
    status, _, headers, body = call(p, "GET", "/echo/items/1")
    assert status == 200
    assert hget(headers, "Content-Type") == []
    assert hget(headers, "X-Backend") == ["one, two"]
    assert json.loads(body)["method"] == "GET"


def test_set_header_values_joined_except_separate_line_headers(backend, portico):
    p = portico(with_policies(
        backend,
        inbound=inbound({"set-header": {"name": "X-Multi", "value": ["a", "b", "c"]}},
                        {"set-header": {"name": "Cookie", "value": ["k1=v1", "k2=v2"]}}),
        outbound=inbound({"set-header": {"name": "Set-Cookie", "value": ["a=1; Path=/", "b=2"]}},
                         {"set-header": {"name": "X-Multi", "value": ["x", "y"]}})))
    out = raw_exchange(p.port, b"GET /echo/items/1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head = out.split(b"\r\n\r\n", 1)[0].decode()
    lines = head.split("\r\n")[1:]
    assert [l for l in lines if l.lower().startswith("set-cookie:")] == ["Set-Cookie: a=1; Path=/",
                                                                      "Set-Cookie: b=2"]
    assert [l for l in lines if l.lower().startswith("x-multi:")] == ["X-Multi: x, y"]
    r = seen(backend)
    assert r.header_all("X-Multi") == ["a, b, c"]
    assert r.header_all("Cookie") == ["k1=v1", "k2=v2"]


def test_set_header_expressions_for_name_and_value(backend, portico):
    p = portico(with_policies(backend, inbound=inbound(
        {"set-header": {"name": "@('X-' .. 'Dyn')",
                        "value": ["@(context.request.headers:get('x-in', 'none'))",
                                  "@(context.request.method)",
                                  "@{ local n = 6 * 7; return tostring(n) }"]}},
    )))
    call(p, "PUT", "/echo/things", headers={"X-In": "hello"})
    assert seen(backend).header_all("X-Dyn") == ["hello, PUT, 42"]
    call(p, "GET", "/echo/things")
    assert seen(backend).header_all("X-Dyn") == ["none, GET, 42"]


def test_set_header_value_reading_the_body_is_set_once(backend, portico):
    """The value needs the request body: the statement is run again once it is read,
    and must not have appended anything the first time."""
    p = portico(with_policies(backend, inbound=inbound(
        {"set-header": {"name": "X-Body", "exists-action": "append",
                        "value": "@(context.request.body:asString(true))"}},
    )))
    status, _, _, body = call(p, "POST", "/echo/items", body=b"payload", headers={"X-Body": "first"})
    assert status == 200
    r = seen(backend)
    assert r.header_all("X-Body") == ["first, payload"]
    assert r.body == b"payload"


@pytest.mark.parametrize("name", ["Connection", "Content-Length", "keep-alive", "Transfer-Encoding"])
def test_protected_header_refused_by_config_test(backend, workdir, name):
    cfg = with_policies(backend, inbound=inbound({"set-header": {"name": name, "value": "x"}}))
    rc, out = config_check(workdir, cfg)
    assert rc != 0
    assert "managed by the gateway" in out and name.lower() in out.lower()


def test_set_header_config_errors_and_a_valid_config(backend, workdir):
    ok = with_policies(backend, inbound=inbound({"set-header": {"name": "X-A", "value": "1"}},
                                                {"set-header": {"name": "X-B", "exists-action": "delete"}}))
    rc, out = config_check(workdir, ok)
    assert rc == 0, out
    missing = with_policies(backend, inbound=inbound({"set-header": {"name": "X-A"}}))
    rc, out = config_check(workdir, missing)
    assert rc != 0 and "value" in out
    bad_name = with_policies(backend, inbound=inbound({"set-header": {"name": "Bad Name", "value": "1"}}))
    rc, out = config_check(workdir, bad_name)
    assert rc != 0 and "not a valid header name" in out
    bad_action = with_policies(backend, inbound=inbound(
        {"set-header": {"name": "X-A", "exists-action": "replace", "value": "1"}}))
    rc, out = config_check(workdir, bad_action)
    assert rc != 0 and "exists-action" in out


def test_set_header_crlf_from_expression_runs_on_error(backend, portico):
    cfg = with_policies(backend, inbound=inbound(
        {"set-header": {"name": "X-Evil", "value": "@('a\\r\\nX-Injected: 1')"}}),
        on_error=ON_ERROR_REPORT)
    p = portico(cfg)
    status, _, headers, body = call(p, "GET", "/echo/items/1")
    assert status == 500
    assert hget(headers, "X-Error-Reason") == ["InvalidHeaderValue"]
    assert hget(headers, "X-Error-Section") == ["inbound"]
    assert hget(headers, "X-Injected") == []
    assert backend.last() is None
    assert json.loads(body)["statusCode"] == 500


def test_set_header_protected_name_from_expression_fails_at_runtime(backend, portico):
    p = portico(with_policies(backend, outbound=inbound(
        {"set-header": {"name": "@('Content-' .. 'Length')", "value": "5"}}), on_error=ON_ERROR_REPORT))
    status, _, headers, _ = call(p, "GET", "/echo/items/1")
    assert status == 500
    assert hget(headers, "X-Error-Reason") == ["ProtectedHeader"]


# ------------------------------------------------------ set-query-parameter

def test_set_query_parameter_actions_keep_other_parameters(backend, portico):
    p = portico(with_policies(backend, inbound=inbound(
        {"set-query-parameter": {"name": "over", "value": ["n1", "a b&c=d"]}},
        {"set-query-parameter": {"name": "skip", "exists-action": "skip", "value": "new"}},
        {"set-query-parameter": {"name": "fresh", "exists-action": "skip", "value": "f"}},
        {"set-query-parameter": {"name": "app", "exists-action": "append", "value": "y"}},
        {"set-query-parameter": {"name": "del", "exists-action": "delete"}},
        {"set-query-parameter": {"name": "@('u' .. 'ni')", "value": "@('\u00fc/~')"}},
    )))
    status, _, _, body = call(p, "GET", "/echo/items/1?keep=%7Eraw+x&over=1&over=2&skip=s&app=x&del=1&del=2&z=last")
    assert status == 200
    assert json.loads(body)["target"] == (
        "/base/items/1?keep=%7Eraw+x&over=n1&over=a%20b%26c%3Dd&skip=s&app=x&z=last&fresh=f&app=y"
        "&uni=%C3%BC%2F~")


def test_set_query_parameter_without_query_and_deleting_the_last(backend, portico):
    p = portico(with_policies(backend, inbound=inbound(
        {"set-query-parameter": {"name": "added", "value": "1"}},
        {"set-query-parameter": {"name": "gone", "exists-action": "delete"}},
    )))
    _, _, _, body = call(p, "GET", "/echo/items/1")
    assert json.loads(body)["target"] == "/base/items/1?added=1"
    p2 = portico(with_policies(backend, inbound=inbound(
        {"set-query-parameter": {"name": "gone", "exists-action": "delete"}})))
    _, _, _, body = call(p2, "GET", "/echo/items/1?gone=1&gone=2")
    assert json.loads(body)["target"] == "/base/items/1"


def test_set_query_parameter_matches_encoded_names_and_runs_in_backend(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["policies"] = {"backend": [{"set-query-parameter": {"name": "a b", "value": "2"}},
                                              {"set-header": {"name": "X-Backend-Section", "value": "yes"}},
                                              {"forward-request": None}]}
    p = portico(cfg)
    _, _, headers, body = call(p, "GET", "/echo/items/1?a%20b=1&c=3")
    assert json.loads(body)["target"] == "/base/items/1?a%20b=2&c=3"
    assert seen(backend).header("X-Backend-Section") == "yes" and hget(headers, "X-Backend-Section") == []


def test_set_query_parameter_needs_a_value(backend, workdir):
    rc, out = config_check(workdir, with_policies(backend, inbound=inbound(
        {"set-query-parameter": {"name": "a"}})))
    assert rc != 0 and "value" in out
    rc, out = config_check(workdir, with_policies(backend, inbound=inbound(
        {"set-query-parameter": {"name": "a", "exists-action": "delete"}})))
    assert rc == 0, out


# -------------------------------------------------------------- rewrite-uri

def _op_config(backend, ops, policies):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["operations"] = ops
    for op in ops:
        if op["id"] in policies:
            op["policies"] = policies[op["id"]]
    return cfg


def test_rewrite_uri_apim_example_copy_unmatched_params(backend, portico):
    ops = [{"id": "get", "method": "GET", "urlTemplate": "/get?a={b}"},
           {"id": "get-strict", "method": "GET", "urlTemplate": "/strict?a={b}"}]
    p = portico(_op_config(backend, ops, {
        "get": {"inbound": ["base", {"rewrite-uri": {"template": "/put"}}]},
        "get-strict": {"inbound": ["base", {"rewrite-uri": {"template": "/put",
                                                            "copy-unmatched-params": False}}]},
    }))
    status, _, _, body = call(p, "GET", "/echo/get?a=b&c=d")
    assert status == 200
    assert json.loads(body)["target"] == "/base/put?c=d"
    status, _, _, body = call(p, "GET", "/echo/strict?a=b&c=d")
    assert status == 200
    assert json.loads(body)["target"] == "/base/put"


def test_rewrite_uri_fills_parameters_and_encodes_them(backend, portico):
    ops = [{"id": "get-item", "method": "GET", "urlTemplate": "/items/{id}?kind={k}"}]
    p = portico(_op_config(backend, ops, {"get-item": {"inbound": ["base", {"rewrite-uri": {
        "template": "/v2/things/{id}/detail?source=gw&kind={k}&id={id}"}}]}}))
    status, _, _, body = call(p, "GET", "/echo/items/a%20b%C3%BC?kind=x%26y&source=client&extra=1&z")
    assert status == 200
    # matched values are decoded, then encoded for their place; the template's own
    # query parameters win over the request's; the others are copied unchanged
    assert json.loads(body)["target"] == (
        "/base/v2/things/a%20b%C3%BC/detail?source=gw&kind=x%26y&id=a%20b%C3%BC&extra=1&z")


def test_rewrite_uri_expression_template(backend, portico):
    p = portico(with_policies(backend, inbound=inbound(
        {"rewrite-uri": {"template": "@('/dyn/' .. context.request.method:lower() .. '?m=1')",
                         "copy-unmatched-params": False}})))
    _, _, _, body = call(p, "DELETE", "/echo/anything/here?q=1")
    assert json.loads(body)["target"] == "/base/dyn/delete?m=1"


def test_rewrite_uri_unknown_parameter_fails(backend, portico):
    p = portico(with_policies(backend, inbound=inbound({"rewrite-uri": {"template": "/x/{nope}"}}),
                              on_error=ON_ERROR_REPORT))
    status, _, headers, _ = call(p, "GET", "/echo/items/1")
    assert status == 500
    assert hget(headers, "X-Error-Reason") == ["TemplateParameterNotFound"]
    assert hget(headers, "X-Error-Source") == ["rewrite-uri"]
    assert backend.last() is None


def test_rewrite_uri_template_checked_at_load(backend, workdir):
    for bad in ("no-slash", "/a/{unclosed", "/a/{}", "/a#frag"):
        rc, out = config_check(workdir, with_policies(backend, inbound=inbound({"rewrite-uri": {"template": bad}})))
        assert rc != 0, bad
        assert "template" in out
    rc, out = config_check(workdir, with_policies(backend, outbound=inbound({"rewrite-uri": {"template": "/a"}})))
    assert rc != 0 and "not allowed in the outbound section" in out


# --------------------------------------------------------------- set-method

def test_set_method_map_form_and_expression(backend, portico):
    p = portico(with_policies(backend, inbound=inbound(
        {"set-method": {"value": "@(context.request.headers:get('x-method', 'PATCH'))"}})))
    call(p, "GET", "/echo/items/1", headers={"X-Method": "DELETE"})
    assert seen(backend).method == "DELETE"
    call(p, "GET", "/echo/items/1")
    assert seen(backend).method == "PATCH"


def test_set_method_bare_value(backend, portico, workdir):
    cfg = with_policies(backend, inbound=inbound({"set-method": "POST"}))
    rc, out = config_check(workdir, cfg)
    assert rc == 0, out  # today: "'set-method' expects a map of attributes, found a scalar"
    p = portico(cfg)
    status, _, _, body = call(p, "GET", "/echo/items/1")
    assert status == 200
    assert seen(backend).method == "POST"


def test_set_method_invalid_from_expression_fails(backend, portico):
    p = portico(with_policies(backend, inbound=inbound({"set-method": {"value": "@('GE T')"}}),
                              on_error=ON_ERROR_REPORT))
    status, _, headers, _ = call(p, "GET", "/echo/items/1")
    assert status == 500 and hget(headers, "X-Error-Reason") == ["InvalidMethod"]
    assert backend.last() is None


# --------------------------------------------------------------- set-status

def test_set_status_outbound(backend, portico):
    p = portico(with_policies(backend, outbound=inbound(
        {"choose": [{"when": "@(context.response.statusCode == 404)",
                     "then": [{"set-status": {"code": 200, "reason": "Found After All"}}]}]},
        {"set-status": {"code": "@(context.request.headers:get('x-code', '201'))"}},
    )))
    status, reason, _, body = call(p, "GET", "/echo/items/1")
    assert (status, reason) == (201, "Created")
    assert json.loads(body)["target"] == "/base/items/1"
    status, reason, _, _ = call(p, "GET", "/echo/items/1", headers={"X-Code": "418"})
    assert status == 418


def test_set_status_with_reason_and_choose_on_status(backend, portico):
    p = portico(with_policies(backend, outbound=inbound(
        {"choose": [{"when": "@(context.response.statusCode == 404)",
                     "then": [{"set-status": {"code": 299, "reason": "@('Custom ' .. 'Reason')"}}]}]})))
    status, reason, _, _ = call(p, "GET", "/echo/status/404")
    assert (status, reason) == (299, "Custom Reason")
    assert seen(backend).target == "/base/status/404"
    status, reason, _, _ = call(p, "GET", "/echo/status/200")
    assert status == 200


def test_set_status_bad_code_from_expression(backend, portico):
    p = portico(with_policies(backend, outbound=inbound({"set-status": {"code": "@('abc')"}}),
                              on_error=ON_ERROR_REPORT))
    status, _, headers, _ = call(p, "GET", "/echo/items/1")
    assert status == 500
    assert hget(headers, "X-Error-Reason") == ["ExpressionValueEvaluationFailure"]


def test_set_status_code_range_checked_at_load(backend, workdir):
    rc, out = config_check(workdir, with_policies(backend, outbound=inbound({"set-status": {"code": 99}})))
    assert rc != 0 and "code" in out


# ----------------------------------------------------------------- set-body

def test_set_body_literal_inbound_sets_length(backend, portico):
    p = portico(with_policies(backend, inbound=inbound({"set-body": {"value": "replaced body"}})))
    status, _, _, body = call(p, "POST", "/echo/items", body=b"the original, longer body")
    assert status == 200
    r = seen(backend)
    assert r.body == b"replaced body"
    assert r.header("Content-Length") == "13" and not r.chunked
    # a request without a body gets one
    call(p, "GET", "/echo/items/1")
    r = seen(backend)
    assert r.body == b"replaced body" and r.header("Content-Length") == "13"


def test_set_body_expression_reads_the_request_body(backend, portico):
    p = portico(with_policies(backend, inbound=inbound(
        {"set-body": {"value": "@(string.upper(context.request.body:asString()) .. '!')"}})))
    status, _, _, body = call(p, "POST", "/echo/items", body=b"chunky " * 1000,
                              headers={"Content-Type": "text/plain"})
    assert status == 200
    r = seen(backend)
    assert r.body == b"CHUNKY " * 1000 + b"!"
    assert r.header("Content-Length") == str(7001)


def test_set_body_outbound_expression(backend, portico):
    p = portico(with_policies(backend, outbound=inbound({"set-body": {
        "value": "@{ local b = context.response.body:asJson(); "
                 "return 'status=' .. context.response.statusCode .. ' target=' .. b.target }"}})))
    status, _, headers, body = call(p, "GET", "/echo/items/7")
    assert status == 200
    assert body == b"status=200 target=/base/items/7"
    assert hget(headers, "Content-Length") == [str(len(body))]


def test_set_body_empty_value(backend, portico):
    p = portico(with_policies(backend, outbound=inbound({"set-body": {"value": ""}})))
    status, _, headers, body = call(p, "GET", "/echo/items/7")
    assert status == 200 and body == b""
    assert hget(headers, "Content-Length") == ["0"]


def test_set_body_bare_value(backend, portico, workdir):
    cfg = with_policies(backend, outbound=inbound({"set-body": "plain"}))
    rc, out = config_check(workdir, cfg)
    assert rc == 0, out  # today: "'set-body' expects a map of attributes, found a scalar"
    p = portico(cfg)
    assert call(p, "GET", "/echo/items/7")[3] == b"plain"


def test_set_body_liquid_template_refused(backend, workdir):
    rc, out = config_check(workdir, with_policies(backend, outbound=inbound(
        {"set-body": {"template": "liquid", "value": "{% if context.Request.Method %}x{% endif %}"}})))
    assert rc != 0
    assert "Liquid templates are not supported" in out
    rc, out = config_check(workdir, with_policies(backend, outbound=inbound(
        {"set-body": {"xsi-nil": "null", "value": "x"}})))
    assert rc == 0, out


# --------------------------------------------------------- find-and-replace

def test_find_and_replace_request_and_response(backend, portico):
    p = portico(with_policies(
        backend,
        inbound=inbound({"find-and-replace": {"from": "foo", "to": "quux"}},
                        {"find-and-replace": {"from": "DELETE-ME", "to": ""}}),
        outbound=inbound({"find-and-replace": {"from": "/base/", "to": "/hidden/"}})))
    status, _, headers, body = call(p, "POST", "/echo/items", body=b"foo bar fooDELETE-ME foofoo")
    assert status == 200
    r = seen(backend)
    assert r.body == b"quux bar quux quuxquux"
    assert r.header("Content-Length") == str(len(r.body))
    got = json.loads(body)
    assert got["target"] == "/hidden/items"
    assert hget(headers, "Content-Length") == [str(len(body))]
    # a chunked request body is read, changed and sent with a Content-Length
    out = raw_exchange(p.port, b"POST /echo/items HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                               b"Connection: close\r\n\r\n3\r\nfoo\r\n4\r\n!foo\r\n0\r\n\r\n")
    (status, _, _), = parse_responses(out)
    assert status == 200
    r = seen(backend)
    assert r.body == b"quux!quux" and not r.chunked and r.header("Content-Length") == "9"


def test_find_and_replace_no_match_and_expressions(backend, portico):
    p = portico(with_policies(backend, inbound=inbound(
        {"find-and-replace": {"from": "@(context.request.headers:get('x-from', 'zzz'))",
                              "to": "@(context.request.method)"}})))
    call(p, "PUT", "/echo/items", body=b"abc abc")
    assert seen(backend).body == b"abc abc"
    call(p, "PUT", "/echo/items", body=b"abc abc", headers={"X-From": "b"})
    assert seen(backend).body == b"aPUTc aPUTc"


def test_find_and_replace_in_on_error(backend, portico):
    p = portico(with_policies(backend, inbound=inbound({"rewrite-uri": {"template": "/{missing}"}}),
                              on_error=[{"find-and-replace": {"from": "Internal server error",
                                                              "to": "something broke"}}]))
    status, _, _, body = call(p, "GET", "/echo/items/1")
    assert status == 500
    assert json.loads(body) == {"statusCode": 500, "message": "something broke"}


def test_find_and_replace_empty_from_refused(backend, workdir):
    rc, out = config_check(workdir, with_policies(backend, inbound=inbound(
        {"find-and-replace": {"from": "", "to": "x"}})))
    assert rc != 0 and "from" in out


# -------------------------------------------------------------- json-to-xml

def raw_call(p, path, raw_hex, method="GET", headers=None, body=None):
    h = {"X-Raw-Response": raw_hex}
    h.update(headers or {})
    return call(p, method, path, body=body, headers=h)


def test_json_to_xml_outbound_structure(backend, portico):
    p = portico(with_policies(backend, outbound=inbound(
        {"json-to-xml": {"apply": "always", "consider-accept-header": False}})))
    doc = {"name": "a <b> & \"c\"", "n": 1.5e3, "ok": True, "none": None, "list": [1, "two", {"x": "y"}],
           "nested": {"deep": {"v": "1"}}, "first name": "sp", "1st": "digit", "empty": {}, "nest": [[1, 2], 3]}
    status, _, headers, body = raw_call(p, "/echo/raw", raw_response(json.dumps(doc)))
    assert status == 200
    assert hget(headers, "Content-Type") == ["application/xml"]
    assert hget(headers, "Content-Length") == [str(len(body))]
    assert body.startswith(b'<?xml version="1.0" encoding="utf-8"?><Document>')
    root = ET.fromstring(body)
    assert root.tag == "Document"
    assert root.find("name").text == 'a <b> & "c"'
    assert root.find("n").text == "1500.0"
    assert root.find("ok").text == "true"
    assert root.find("none").text is None and len(root.find("none")) == 0
    assert [e.text for e in root.findall("list")][:2] == ["1", "two"]
    assert root.findall("list")[2].find("x").text == "y"
    assert root.find("nested/deep/v").text == "1"
    assert root.find("first_x0020_name").text == "sp"
    assert root.find("_x0031_st").text == "digit"
    assert root.find("empty") is not None
    nest = root.findall("nest")
    assert [i.text for i in nest[0].findall("item")] == ["1", "2"] and nest[1].text == "3"


def test_json_to_xml_single_member_object_is_the_root(backend, portico):
    p = portico(with_policies(backend, outbound=inbound(
        {"json-to-xml": {"apply": "always", "consider-accept-header": False}})))
    _, _, _, body = raw_call(p, "/echo/raw", raw_response('{"order": {"id": "7", "line": ["a", "b"]}}'))
    root = ET.fromstring(body)
    assert root.tag == "order"
    assert root.find("id").text == "7" and [e.text for e in root.findall("line")] == ["a", "b"]
    # a top-level array or primitive is wrapped in <Document>
    _, _, _, body = raw_call(p, "/echo/raw", raw_response('[1, {"a": null}]'))
    root = ET.fromstring(body)
    assert root.tag == "Document" and root.findall("item")[0].text == "1"


def test_json_to_xml_apim_soap_example(backend, portico):
    """The example of APIM's json-to-xml reference, with its exact attributes."""
    p = portico(with_policies(backend, outbound=inbound({"json-to-xml": {
        "apply": "always", "consider-accept-header": False, "parse-date": False,
        "namespace-separator": ":", "namespace-prefix": "xmlns", "attribute-block-name": "#attrs"}})))
    doc = {"soapenv:Envelope": {
        "xmlns:soapenv": "http://schemas.xmlsoap.org/soap/envelope/",
        "xmlns:v1": "http://localdomain.com/core/v1",
        "soapenv:Header": {},
        "soapenv:Body": {"v1:QueryList": {"#attrs": {"queryName": "test"},
                                          "v1:QueryItem": {"name": "dummy text"}}}}}
    _, _, _, body = raw_call(p, "/echo/raw", raw_response(json.dumps(doc)))
    assert body.decode() == (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:v1="http://localdomain.com/core/v1"><soapenv:Header />'
        '<soapenv:Body><v1:QueryList queryName="test"><v1:QueryItem><name>dummy text</name>'
        '</v1:QueryItem></v1:QueryList></soapenv:Body></soapenv:Envelope>')
    root = ET.fromstring(body)  # namespace-aware parse
    assert root.tag == "{http://schemas.xmlsoap.org/soap/envelope/}Envelope"
    ql = root.find(".//{http://localdomain.com/core/v1}QueryList")
    assert ql.get("queryName") == "test"


def test_json_to_xml_consider_accept_header(backend, portico):
    p = portico(with_policies(backend, outbound=inbound({"json-to-xml": {"apply": "always"}})))
    raw = raw_response('{"a": "1", "b": "2"}')
    # no Accept: converted
    _, _, headers, body = raw_call(p, "/echo/raw", raw)
    assert hget(headers, "Content-Type") == ["application/xml"] and ET.fromstring(body).tag == "Document"
    for accept, converted in [("application/json", False), ("*/*", False), ("text/xml", True),
                              ("text/html, application/xml;q=0.9", True), ("application/soap+xml", True),
                              ("application/xml;q=0", False)]:
        _, _, headers, body = raw_call(p, "/echo/raw", raw, headers={"Accept": accept})
        if converted:
            assert ET.fromstring(body).find("a").text == "1", accept
        else:
            assert json.loads(body) == {"a": "1", "b": "2"}, accept
            assert hget(headers, "Content-Type") == ["application/json"], accept


def test_json_to_xml_apply_content_type_json(backend, portico):
    p = portico(with_policies(backend, outbound=inbound(
        {"json-to-xml": {"apply": "content-type-json", "consider-accept-header": False}})))
    _, _, headers, body = raw_call(p, "/echo/raw", raw_response('{"a": "1", "b": 2}', "text/plain"))
    assert body == b'{"a": "1", "b": 2}' and hget(headers, "Content-Type") == ["text/plain"]
    _, _, headers, body = raw_call(p, "/echo/raw", raw_response('{"a": "1", "b": 2}',
                                                               "application/problem+json; charset=utf-8"))
    assert ET.fromstring(body).find("b").text == "2"
    _, _, headers, body = raw_call(p, "/echo/raw", raw_response('{"a": "1", "b": 2}', "Text/JSON"))
    assert ET.fromstring(body).find("a").text == "1"


def test_json_to_xml_invalid_json(backend, portico):
    p = portico(with_policies(
        backend,
        inbound=inbound({"json-to-xml": {"apply": "content-type-json", "consider-accept-header": False}}),
        outbound=inbound({"json-to-xml": {"apply": "always", "consider-accept-header": False}}),
        on_error=ON_ERROR_REPORT))
    status, _, headers, _ = raw_call(p, "/echo/raw", raw_response('{"a": '))
    assert status == 500
    assert hget(headers, "X-Error-Reason") == ["InvalidJson"]
    assert hget(headers, "X-Error-Section") == ["outbound"]
    backend.clear()
    status, _, headers, _ = call(p, "POST", "/echo/items", body=b"{'single': 'quotes'}",
                                 headers={"Content-Type": "application/json"})
    assert status == 400
    assert hget(headers, "X-Error-Reason") == ["InvalidJson"]
    assert backend.last() is None


def test_json_to_xml_inbound_request(backend, portico):
    p = portico(with_policies(backend, inbound=inbound(
        {"json-to-xml": {"apply": "content-type-json", "consider-accept-header": False}})))
    status, _, _, _ = call(p, "POST", "/echo/items", body=b'{"item": {"id": 3, "tags": ["x", "y"]}}',
                           headers={"Content-Type": "application/json"})
    assert status == 200
    r = seen(backend)
    assert r.header("Content-Type") == "application/xml"
    assert r.header("Content-Length") == str(len(r.body))
    root = ET.fromstring(r.body)
    assert root.tag == "item" and [t.text for t in root.findall("tags")] == ["x", "y"]
    # an empty body is left alone
    call(p, "POST", "/echo/items", body=b"", headers={"Content-Type": "application/json"})
    assert seen(backend).body == b"" and seen(backend).header("Content-Type") == "application/json"


# -------------------------------------------------------------- xml-to-json

SAMPLE_XML = (b'<?xml version="1.0"?>\n'
              b'<catalog xmlns:x="urn:x" version="2">\n'
              b'  <book id="b1" x:lang="en"><title>One &amp; Only</title><tag>a</tag><tag>b</tag></book>\n'
              b'  <book id="b2"><title><![CDATA[<Two>]]></title><empty/></book>\n'
              b'  <note>mixed <b>bold</b> text</note>\n'
              b'</catalog>')


def test_xml_to_json_javascript_friendly(backend, portico):
    p = portico(with_policies(backend, outbound=inbound(
        {"xml-to-json": {"kind": "javascript-friendly", "apply": "always", "consider-accept-header": False}})))
    status, _, headers, body = raw_call(p, "/echo/raw", raw_response(SAMPLE_XML, "application/xml"))
    assert status == 200
    assert hget(headers, "Content-Type") == ["application/json"]
    assert hget(headers, "Content-Length") == [str(len(body))]
    assert json.loads(body) == {"catalog": {
        "version": "2",
        "book": [{"id": "b1", "lang": "en", "title": "One & Only", "tag": ["a", "b"]},
                 {"id": "b2", "title": "<Two>", "empty": None}],
        "note": {"#text": "mixed  text", "b": "bold"}}}


def test_xml_to_json_direct(backend, portico):
    p = portico(with_policies(backend, outbound=inbound(
        {"xml-to-json": {"kind": "direct", "apply": "always", "consider-accept-header": False}})))
    _, _, _, body = raw_call(p, "/echo/raw", raw_response(SAMPLE_XML, "application/xml"))
    assert json.loads(body) == {"catalog": {
        "@version": "2", "@xmlns:x": "urn:x",
        "book": [{"@id": "b1", "@x:lang": "en", "title": "One & Only", "tag": ["a", "b"]},
                 {"@id": "b2", "title": "<Two>", "empty": None}],
        "note": {"#text": ["mixed ", " text"], "b": "bold"}}}


def test_xml_to_json_always_array_and_content_type_condition(backend, portico):
    p = portico(with_policies(backend, outbound=inbound(
        {"xml-to-json": {"kind": "javascript-friendly", "apply": "content-type-xml",
                         "consider-accept-header": False, "always-array-child-elements": True}})))
    xml = b"<r a='1'><one>x</one><two><c>y</c></two></r>"
    _, _, _, body = raw_call(p, "/echo/raw", raw_response(xml, "application/atom+xml"))
    assert json.loads(body) == {"r": {"a": "1", "one": ["x"], "two": [{"c": ["y"]}]}}
    _, _, headers, body = raw_call(p, "/echo/raw", raw_response(xml, "text/plain"))
    assert body == xml and hget(headers, "Content-Type") == ["text/plain"]


def test_xml_to_json_consider_accept_header(backend, portico):
    p = portico(with_policies(backend, outbound=inbound(
        {"xml-to-json": {"kind": "direct", "apply": "always"}})))
    raw = raw_response(b"<a>1</a>", "text/xml")
    assert json.loads(raw_call(p, "/echo/raw", raw)[3]) == {"a": "1"}
    assert json.loads(raw_call(p, "/echo/raw", raw, headers={"Accept": "application/json"})[3]) == {"a": "1"}
    assert raw_call(p, "/echo/raw", raw, headers={"Accept": "application/xml"})[3] == b"<a>1</a>"


def test_json_xml_round_trip_inbound(backend, portico):
    p = portico(with_policies(backend, inbound=inbound(
        {"json-to-xml": {"apply": "always", "consider-accept-header": False}},
        {"set-variable": {"name": "as-xml", "value": "@(context.request.body:asString(true))"}},
        {"xml-to-json": {"kind": "javascript-friendly", "apply": "content-type-xml",
                         "consider-accept-header": False}},
        {"set-header": {"name": "X-As-Xml", "value": "@(context.variables['as-xml'])"}},
    )))
    original = {"a": "1", "b": ["x", "y & z"], "c": {"d": "<e>"}}
    status, _, _, _ = call(p, "POST", "/echo/items", body=json.dumps(original).encode(),
                           headers={"Content-Type": "application/json"})
    assert status == 200
    r = seen(backend)
    assert r.header("Content-Type") == "application/json"
    assert json.loads(r.body) == {"Document": original}
    assert ET.fromstring(r.header("X-As-Xml")).find("c/d").text == "<e>"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE foo [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<foo>&xxe;</foo>"""

XXE_PARAM = b"""<?xml version="1.0"?>
<!DOCTYPE foo SYSTEM "file:///etc/passwd">
<foo>x</foo>"""


@pytest.mark.parametrize("doc", [BILLION_LAUGHS, XXE, XXE_PARAM], ids=["billion-laughs", "xxe", "external-dtd"])
def test_xml_to_json_refuses_entities_in_requests(backend, portico, doc):
    p = portico(with_policies(backend, inbound=inbound(
        {"xml-to-json": {"kind": "direct", "apply": "always", "consider-accept-header": False}}),
        on_error=ON_ERROR_REPORT + [{"set-header": {"name": "X-Error-Message",
                                                    "value": "@(context.lastError.message)"}}]))
    t0 = time.time()
    status, _, headers, body = call(p, "POST", "/echo/items", body=doc, headers={"Content-Type": "text/xml"})
    assert time.time() - t0 < 5
    assert status == 400
    assert hget(headers, "X-Error-Reason") == ["InvalidXml"]
    assert "DOCTYPE" in hget(headers, "X-Error-Message")[0]
    assert b"root:" not in body and b"lollol" not in body
    assert backend.last() is None
    assert p.rss_kb() < 200 * 1024


@pytest.mark.parametrize("doc", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "xxe"])
def test_xml_to_json_refuses_entities_in_responses(backend, portico, doc):
    p = portico(with_policies(backend, outbound=inbound(
        {"xml-to-json": {"kind": "javascript-friendly", "apply": "content-type-xml",
                         "consider-accept-header": False}}),
        on_error=ON_ERROR_REPORT))
    status, _, headers, body = raw_call(p, "/echo/raw", raw_response(doc, "application/xml"))
    assert status == 500
    assert hget(headers, "X-Error-Reason") == ["InvalidXml"]
    assert b"root:" not in body and b"lol" not in body
    # the gateway is fine afterwards
    assert call(p, "GET", "/echo/items/1")[0] == 200
    assert json.loads(raw_call(p, "/echo/raw", raw_response(b"<ok>1</ok>", "application/xml"))[3]) == {"ok": "1"}


def test_xml_to_json_not_well_formed(backend, portico):
    p = portico(with_policies(backend, outbound=inbound(
        {"xml-to-json": {"kind": "direct", "apply": "always", "consider-accept-header": False}}),
        on_error=ON_ERROR_REPORT))
    status, _, headers, _ = raw_call(p, "/echo/raw", raw_response(b"<a><b></a>", "application/xml"))
    assert status == 500 and hget(headers, "X-Error-Reason") == ["InvalidXml"]
    status, _, headers, body = raw_call(p, "/echo/raw", raw_response(b"<a>&undefined;</a>", "application/xml"))
    assert status == 500 and hget(headers, "X-Error-Reason") == ["InvalidXml"]


# -------------------------------------------------------------------- jsonp

def test_jsonp_valid_absent_invalid(backend, portico):
    p = portico(with_policies(backend, outbound=inbound({"jsonp": {"callback-parameter-name": "cb"}})))
    status, _, headers, body = call(p, "GET", "/echo/items/1?cb=my.handler_1")
    assert status == 200
    assert hget(headers, "Content-Type") == ["application/javascript"]
    assert hget(headers, "Content-Length") == [str(len(body))]
    assert body.startswith(b"my.handler_1(") and body.endswith(b");")
    assert json.loads(body[len(b"my.handler_1("):-2])["target"] == "/base/items/1?cb=my.handler_1"
    # absent: plain JSON
    status, _, headers, body = call(p, "GET", "/echo/items/1?other=1")
    assert status == 200 and hget(headers, "Content-Type") == ["application/json"]
    assert json.loads(body)["target"] == "/base/items/1?other=1"
    # invalid: 400 CallbackParameterInvalid
    for bad in ("1abc", "alert(1)", "a..b", "", "x%3Bevil"):
        status, _, headers, body = call(p, "GET", "/echo/items/1?cb=" + bad)
        assert status == 400, bad
        assert b"callback" in body.lower()
        assert not body.startswith(bad.encode() + b"(") or not bad
    entries = p.access_entries(wait_for=7)
    assert entries[-1]["reason"] == "CallbackParameterInvalid"


def test_jsonp_reads_the_clients_callback_even_when_inbound_removed_it(backend, portico):
    cfg = with_policies(backend, inbound=inbound({"set-query-parameter": {"name": "cb", "exists-action": "delete"}}),
                        outbound=inbound({"jsonp": {"callback-parameter-name": "cb"}}))
    p = portico(cfg)
    status, _, headers, body = call(p, "GET", "/echo/items/1?cb=handle&x=1")
    assert status == 200 and body.startswith(b"handle(") and body.endswith(b");")
    assert json.loads(body[len(b"handle("):-2])["target"] == "/base/items/1?x=1"  # the backend never saw it


def test_jsonp_once_per_section(backend, workdir):
    rc, out = config_check(workdir, with_policies(backend, outbound=inbound(
        {"jsonp": {"callback-parameter-name": "cb"}}, {"jsonp": {"callback-parameter-name": "x"}})))
    assert rc != 0 and "only once per section" in out
    rc, out = config_check(workdir, with_policies(backend, inbound=inbound(
        {"jsonp": {"callback-parameter-name": "cb"}})))
    assert rc != 0 and "not allowed in the inbound section" in out


# ---------------------------------------------------- redirect-content-urls

def test_redirect_content_urls_outbound(backend, portico):
    p = portico(with_policies(backend, outbound=inbound({"redirect-content-urls": None})))
    be = backend.url + "/base"
    gw = "http://127.0.0.1:%d/echo" % p.port
    content = json.dumps({"self": be + "/items/7", "root": be, "query": be + "?page=2",
                          "other": backend.url + "/baseball", "twice": [be + "/a", be + "/b"]})
    status, _, headers, body = raw_call(p, "/echo/raw", raw_response(content, extra="Location: %s/items/7\r\n" % be),
                                        headers={"Host": "127.0.0.1:%d" % p.port})
    assert status == 200
    got = json.loads(body)
    assert got == {"self": gw + "/items/7", "root": gw, "query": gw + "?page=2",
                   "other": backend.url + "/baseball", "twice": [gw + "/a", gw + "/b"]}
    assert hget(headers, "Location") == [be + "/items/7"]  # headers untouched
    assert hget(headers, "Content-Length") == [str(len(body))]


def test_redirect_content_urls_inbound(backend, portico):
    p = portico(with_policies(backend, inbound=inbound({"redirect-content-urls": None})))
    gw = "http://gateway.example:8080/echo"
    status, _, _, body = call(p, "POST", "/echo/items", body=("see %s/items/1 and %s" % (gw, gw)).encode(),
                              headers={"Host": "gateway.example:8080"})
    assert status == 200
    be = backend.url + "/base"
    assert seen(backend).body == ("see %s/items/1 and %s" % (be, be)).encode()


def test_redirect_content_urls_once_per_section(backend, workdir):
    rc, out = config_check(workdir, with_policies(backend, outbound=inbound(
        {"redirect-content-urls": None}, {"redirect-content-urls": None})))
    assert rc != 0 and "only once per section" in out


# ----------------------------------------------------------------- pipeline

def test_pipeline_with_choose_and_context(backend, portico):
    """Several transformations across sections, steered by choose and context members."""
    cfg = basic_config(backend.url)
    cfg["policies"] = {
        "inbound": [{"set-header": {"name": "X-Global", "value": "@(context.api.id)"}}],
        "outbound": [{"set-header": {"name": "X-Global-Out", "value": "@(tostring(context.response.statusCode))"}}],
    }
    cfg["apis"][0]["policies"] = {
        "inbound": ["base",
                    {"set-variable": {"name": "tier", "value": "@(context.request.headers:get('x-tier', 'free'))"}},
                    {"choose": [
                        {"when": "@(context.variables['tier'] == 'gold')",
                         "then": [{"set-query-parameter": {"name": "priority", "value": "high"}},
                                  {"set-header": {"name": "X-Tier", "value": "@(context.variables['tier'])"}}]},
                        {"otherwise": [{"set-query-parameter": {"name": "priority", "value": "low"}}]}]},
                    {"set-header": {"name": "X-Op", "value": "@(context.operation.id)"}}],
        # base last: the global outbound statement sees the status set here
        "outbound": [{"choose": [{"when": "@(context.request.method == 'POST')",
                                  "then": [{"set-status": {"code": 201, "reason": "Created"}},
                                           {"set-header": {"name": "Location",
                                                           "value": "@(context.request.url.path .. '/new')"}}]}]},
                     {"find-and-replace": {"from": "/base/", "to": "/api/"}},
                     {"json-to-xml": {"apply": "content-type-json", "consider-accept-header": True}},
                     "base"],
    }
    cfg["apis"][0]["operations"][0]["policies"] = {
        "inbound": ["base", {"rewrite-uri": {"template": "/v2/items/{id}"}}],
    }
    p = portico(cfg)
    status, _, headers, body = call(p, "GET", "/echo/items/9?x=1", headers={"X-Tier": "gold",
                                                                           "Accept": "application/json"})
    assert status == 200
    r = seen(backend)
    assert r.target == "/base/v2/items/9?x=1&priority=high"
    assert r.header("X-Tier") == "gold" and r.header("X-Global") == "echo" and r.header("X-Op") == "get-item"
    got = json.loads(body)  # Accept: JSON -> not converted
    assert got["target"] == "/api/v2/items/9?x=1&priority=high"
    assert hget(headers, "X-Global-Out") == ["200"]

    status, _, headers, body = call(p, "POST", "/echo/items", body=b"{}", headers={"Accept": "application/xml"})
    assert status == 201
    assert seen(backend).target == "/base/items?priority=low"
    assert hget(headers, "Location") == ["/echo/items/new"]
    assert hget(headers, "Content-Type") == ["application/xml"]
    root = ET.fromstring(body)
    assert root.tag == "Document" and root.find("target").text == "/api/items?priority=low"
    assert hget(headers, "X-Global-Out") == ["201"]


def test_policies_are_listed_by_the_plugin(backend, workdir):
    """Every policy of the family is known to the configuration check."""
    stmts = {
        "inbound": ["base",
                    {"set-header": {"name": "X-A", "value": "1"}},
                    {"set-query-parameter": {"name": "a", "value": "1"}},
                    {"rewrite-uri": {"template": "/x"}},
                    {"set-method": {"value": "GET"}},
                    {"set-body": {"value": "x"}},
                    {"find-and-replace": {"from": "a", "to": "b"}},
                    {"json-to-xml": {"apply": "always"}},
                    {"xml-to-json": {"kind": "direct", "apply": "always"}},
                    {"redirect-content-urls": None},
                    {"set-status": {"code": 200}}],
        "outbound": ["base", {"jsonp": {"callback-parameter-name": "cb"}}],
    }
    cfg = basic_config(backend.url)
    cfg["apis"][0]["policies"] = stmts
    rc, out = config_check(workdir, cfg)
    assert rc == 0, out


def test_json_to_xml_too_deep_names_the_reason(backend, portico):
    """Past the nesting limit: the client's body gets a 400 naming it; a
    backend's body gets a plain 500, and the error log says why."""
    p = portico(with_policies(backend, outbound=inbound(
        {"json-to-xml": {"apply": "always", "consider-accept-header": False}})))
    deep = "[" * 2000 + "]" * 2000
    status, _, _, body = raw_call(p, "/echo/raw", raw_response(deep))
    assert status == 500 and json.loads(body)["statusCode"] == 500
    deadline = time.time() + 5
    while time.time() < deadline and "nested deeper than 256 levels" not in p.log_text():
        time.sleep(0.05)
    assert "json-to-xml: the body is not valid JSON: nested deeper than 256 levels (InvalidJson)" in p.log_text()
    assert p.access_entries(wait_for=1)[-1]["reason"] == "InvalidJson"
    p2 = portico(with_policies(backend, inbound=inbound(
        {"json-to-xml": {"apply": "always", "consider-accept-header": False}})))
    status, _, _, body = call(p2, "POST", "/echo/items", body=deep.encode(),
                              headers={"Content-Type": "application/json"})
    assert status == 400 and "nested deeper than 256 levels" in json.loads(body)["message"]


def test_json_to_xml_member_name_too_long_for_xml(backend, portico):
    """A member name that would make an XML name longer than XML readers take (over 50,000 bytes
    once encoded: each character a name cannot hold becomes _xHHHH_) is refused like a body that
    is not JSON, instead of becoming XML nobody can read."""
    p = portico(with_policies(backend, inbound=inbound(
        {"json-to-xml": {"apply": "always", "consider-accept-header": False}})))
    backend.clear()
    status, _, _, body = call(p, "POST", "/echo/items", body=json.dumps({"a b" * 10000: 1}).encode(),
                              headers={"Content-Type": "application/json"})
    assert status == 400, body
    assert "a member name is too long for an XML name" in json.loads(body)["message"]
    assert backend.last() is None
    # just under the limit: 6,249 times "a_x0020_" (8 bytes) make 49,992 bytes
    status, _, _, body = call(p, "POST", "/echo/items", body=json.dumps({"a " * 6249: 1}).encode(),
                              headers={"Content-Type": "application/json"})
    assert status == 200, body
    assert ET.fromstring(backend.last().body).tag == "a_x0020_" * 6249
