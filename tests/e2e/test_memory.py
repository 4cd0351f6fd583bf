"""A request's arena is bounded (limits.requestMemory): a request whose
policies need more memory than that, like one whose allocation the system
refuses, is answered 500 with the reason OutOfMemory; the gateway goes on
serving, and the next request on the same connection has its whole budget."""
import http.client
import json
import os
import re

import pytest

from conftest import basic_config, raw_exchange


def big_header_config(backend_url, size, limit="256k", on_error=False):
    cfg = basic_config(backend_url)
    cfg["limits"] = {"requestMemory": limit}
    policies = {"inbound": [{"set-header": {"name": "X-Big", "value": "@(string.rep('a', %d))" % size}}]}
    if on_error:
        policies["on-error"] = [{"set-header": {"name": "X-On-Error", "value": "ran"}}]
    cfg["apis"][0]["policies"] = policies
    return cfg


def test_a_request_past_its_memory_gets_500_out_of_memory(backend, portico):
    p = portico(big_header_config(backend.url, 1000000, on_error=True))
    status, headers, body = p.request("GET", "/echo/items/1")
    assert status == 500, (status, body)
    assert json.loads(body) == {"statusCode": 500, "message": "Internal server error"}
    assert "x-on-error" not in headers  # on-error would need memory too: it does not run
    assert backend.requests == []  # refused before the backend call
    entry = p.access_entries(wait_for=1)[-1]
    assert (entry["status"], entry["reason"]) == (500, "OutOfMemory"), entry


def test_the_same_policy_within_the_budget_passes(backend, portico):
    p = portico(big_header_config(backend.url, 20000))
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 200, (status, body)
    assert backend.last().header("X-Big") == "a" * 20000


def test_the_next_request_on_the_connection_has_its_whole_budget(backend, portico):
    cfg = big_header_config(backend.url, 1000000)
    # the big header only when asked for: the same arena serves both requests
    cfg["apis"][0]["policies"]["inbound"][0]["set-header"]["value"] = (
        "@(context.request.headers['X-Want'] == 'big' and string.rep('a', 1000000) or 'small')")
    p = portico(cfg)
    c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
    try:
        c.request("GET", "/echo/items/1", headers={"X-Want": "big"})
        r = c.getresponse()
        r.read()
        assert r.status == 500
        if r.getheader("Connection", "").lower() == "close":
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
        c.request("GET", "/echo/items/2")
        r = c.getresponse()
        r.read()
        assert r.status == 200
        assert backend.last().header("X-Big") == "small"
    finally:
        c.close()


def test_a_limit_below_its_floor_is_refused_with_its_position(backend, portico):
    cfg = basic_config(backend.url)
    cfg["limits"] = {"requestMemory": "1k"}
    p = portico(cfg, start=False)
    code, out = p.check()
    assert code != 0
    assert re.search(r"portico\.yaml:\d+:\d+: size out of range \(65536\.\.", out), out


# ------------------------------------------- past the cap inside one statement

FLOOD = """
return {
  name = "flood",
  sections = {"inbound"},
  attributes = {what = {type = "enum", values = {"headers", "variables"}}},
  inbound = function(context, attrs)
    for i = 1, 5000 do
      if attrs.what == "headers" then
        context.request.headers:set("X-H" .. i, string.rep("v", 60))
      else
        context.variables:set("v" .. i, string.rep("v", 60))
      end
    end
  end,
}
"""


def flood_config(backend_url, workdir, what):
    d = os.path.join(workdir, "lua-policies")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "flood.lua"), "w") as f:
        f.write(FLOOD)
    cfg = basic_config(backend_url)
    cfg["limits"] = {"requestMemory": "64k"}
    cfg["lua"] = {"policyPath": [d]}
    cfg["apis"][0]["operations"][0]["policies"] = {"inbound": ["base", {"flood": {"what": what}}]}
    return cfg


def assert_answered_500_and_alive(p, backend, path="/echo/items/1"):
    """A whole 500 response (head and JSON body), the reason in the access log, and the
    gateway serving the next request."""
    raw = raw_exchange(p.port, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 "), raw[:300]
    length = int(re.search(rb"\r\nContent-Length: (\d+)", head).group(1))
    assert json.loads(body[:length]) == {"statusCode": 500, "message": "Internal server error"}
    assert p.access_entries(wait_for=1)[-1]["reason"] == "OutOfMemory"
    status, _, _ = p.request("GET", "/echo/other")
    assert status == 200
    assert p.proc.poll() is None


@pytest.mark.parametrize("what", ["headers", "variables"])
def test_a_lua_loop_past_the_cap_gets_a_whole_500(backend, portico, workdir, what):
    p = portico(flood_config(backend.url, workdir, what))
    assert_answered_500_and_alive(p, backend)
    assert all(r.target != "/base/items/1" for r in backend.requests)


def test_a_large_expression_result_past_the_cap_gets_a_whole_500(backend, portico):
    cfg = basic_config(backend.url)
    cfg["limits"] = {"requestMemory": "256k"}
    cfg["apis"][0]["operations"][0]["policies"] = {
        "inbound": ["base", {"set-body": {"value": "@(string.rep('a', 3000000))"}}]}
    p = portico(cfg)
    assert_answered_500_and_alive(p, backend)


def test_a_large_backend_head_past_the_cap_gets_a_whole_500(portico):
    """The arena is near its cap when the backend's head arrives: the head is
    read whole, and the request ends with the 500 instead of the response."""
    from upstream_helpers import ScriptedBackend
    big = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" +
           b"".join(b"X-Big-%d: %s\r\n" % (i, b"b" * 6000) for i in range(6)) + b"\r\nok")
    be = ScriptedBackend(lambda cid, n: (big, "keep"))
    try:
        cfg = basic_config(be.url)
        cfg["limits"] = {"requestMemory": "64k"}
        cfg["apis"][0]["operations"][0]["policies"] = {
            "inbound": ["base", {"set-header": {"name": "X-Fill", "value": "@(string.rep('f', 12000))"}}]}
        p = portico(cfg)
        raw = raw_exchange(p.port, b"GET /echo/items/1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        head, _, body = raw.partition(b"\r\n\r\n")
        # below the cap before the backend answered: the backend was called
        assert [r.target for r in be.requests] == ["/base/items/1"]
        assert head.startswith(b"HTTP/1.1 500 "), raw[:300]
        assert json.loads(body) == {"statusCode": 500, "message": "Internal server error"}
        assert p.access_entries(wait_for=1)[-1]["reason"] == "OutOfMemory"
        assert p.proc.poll() is None
    finally:
        be.close()
