"""A request's arena is bounded (limits.requestMemory): a request whose
policies need more memory than that, like one whose allocation the system
refuses, is answered 500 with the reason OutOfMemory; the gateway goes on
serving, and the next request on the same connection has its whole budget."""
import http.client
import json
import re

from conftest import basic_config


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
