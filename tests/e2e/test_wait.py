"""The wait policy: children run side by side in lanes (for all|any), the
losers of an `any` abandoned (their timers never fire), errors in a lane run
on-error located in the lane, bodies read for a lane, a client going away
mid-wait, and the children wait accepts (file:line:column otherwise).

Until send-request and cache-lookup-value are merged, the lanes suspend on
the test plugin's timers (tests/e2e/plugins/lanes.c: test-sleep inside a
choose, since wait's direct children may only be send-request,
cache-lookup-value or choose); the send-request cases at the end run when
the routing family is in the build."""

import json
import os
import socket
import threading
import time

import pytest

from conftest import assert_stays, basic_config, wait_for
from lanes_helpers import BUILD_PLUGINS, lanes_plugin_dir


def lane(ms, name, **kw):
    """A lane: a choose whose branch is one test-sleep."""
    attrs = {"ms": ms, "name": name}
    attrs.update(kw)
    return {"choose": [{"when": "@(true)", "then": [{"test-sleep": attrs}]}]}


REPORT = {"return-response": {
    "set-status": {"code": 200},
    "set-header": [{"name": "Content-Type", "value": "application/json"}],
    "set-body": {"value": "@(json.encode({a = context.variables:get('a', 'nil'), "
                          "b = context.variables:get('b', 'nil'), c = context.variables:get('c', 'nil')}))"}}}

ON_ERROR = [{"return-response": {
    "set-status": {"code": 599},
    "set-body": {"value": "@(json.encode({reason = context.lastError.reason, source = context.lastError.source, "
                          "path = context.lastError.path, section = context.lastError.section, "
                          "a = context.variables:get('a', 'nil'), b = context.variables:get('b', 'nil')}))"}}}]


def config(backend, workdir, inbound, on_error=None, outbound=None, **extra):
    cfg = basic_config(backend.url, pluginDir=lanes_plugin_dir(workdir), **extra)
    pol = {"inbound": inbound}
    if on_error is not None:
        pol["on-error"] = on_error
    if outbound is not None:
        pol["outbound"] = outbound
    cfg["apis"][0]["policies"] = pol
    return cfg


def timed(p, method="GET", path="/echo/items/1", **kw):
    t0 = time.monotonic()
    status, headers, body = p.request(method, path, **kw)
    return status, headers, body, time.monotonic() - t0


# ------------------------------------------------------------------ all / any

def test_all_runs_the_lanes_side_by_side(backend, workdir, portico):
    p = portico(config(backend, workdir, [
        {"wait": {"for": "all", "policies": [lane(600, "a", value="A"), lane(500, "b", value="B")]}}, REPORT]))
    status, _, body, took = timed(p)
    assert status == 200, body
    assert json.loads(body) == {"a": "A", "b": "B", "c": "nil"}
    # side by side: the longer lane's time, not the sum (1.1 s)
    assert 0.55 <= took < 0.95, took
    assert backend.last() is None  # return-response answered: no backend call


def test_all_is_the_default(backend, workdir, portico):
    p = portico(config(backend, workdir, [
        {"wait": {"policies": [lane(50, "a"), lane(300, "b")]}}, REPORT]))
    status, _, body, took = timed(p)
    assert status == 200 and json.loads(body) == {"a": "done", "b": "done", "c": "nil"}
    assert took >= 0.28


def test_any_ends_at_the_first_and_abandons_the_rest(backend, workdir, portico):
    # after the wait the request lives on (z sleeps 1 s): an abandoned lane's timer would fire meanwhile
    p = portico(config(backend, workdir, [
        {"wait": {"for": "any", "policies": [lane(700, "a"), lane(150, "b"), lane(600, "c")]}},
        {"test-sleep": {"ms": 1000, "name": "z"}}, REPORT]))
    status, _, body, took = timed(p)
    assert status == 200, body
    assert json.loads(body) == {"a": "nil", "b": "done", "c": "nil"}
    assert 1.1 <= took < 1.6, took
    log = p.log_text()
    assert "test-sleep b fired" in log and "test-sleep z fired" in log
    # the slow lanes' timers were released with them: they never fired, their variables stay unset
    assert "test-sleep a started" in log and "test-sleep a fired" not in log
    assert "test-sleep c fired" not in log
    assert p.request("GET", "/echo/items/2")[0] == 200  # and the worker is fine


def test_any_timing(backend, workdir, portico):
    p = portico(config(backend, workdir, [
        {"wait": {"for": "any", "policies": [lane(1500, "a"), lane(150, "b")]}}, REPORT]))
    status, _, body, took = timed(p)
    assert status == 200 and json.loads(body)["b"] == "done"
    assert 0.14 <= took < 0.6, took


def test_lanes_that_finish_at_once(backend, workdir, portico):
    """A lane that resumes from inside its own run(), and one with no wait at all."""
    p = portico(config(backend, workdir, [
        {"wait": {"policies": [lane(0, "a", inline=True, value="inline"), lane(0, "b"),
                               {"choose": [{"when": "@(false)", "then": [{"test-sleep": {"name": "c"}}]}]}]}},
        REPORT]))
    status, _, body, took = timed(p)
    assert status == 200 and json.loads(body) == {"a": "inline", "b": "done", "c": "nil"}, body
    assert took < 0.5


def test_any_with_a_lane_done_at_once(backend, workdir, portico):
    p = portico(config(backend, workdir, [
        {"wait": {"for": "any", "policies": [lane(800, "a"), lane(0, "b", inline=True)]}}, REPORT]))
    status, _, body, took = timed(p)
    assert status == 200 and json.loads(body) == {"a": "nil", "b": "done", "c": "nil"}
    assert took < 0.5
    assert_stays(lambda: "test-sleep a fired" not in p.log_text(), 1.0, what="the abandoned timer")


def test_empty_wait_goes_on(backend, workdir, portico):
    p = portico(config(backend, workdir, [{"wait": {"policies": []}}, REPORT]))
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 200 and json.loads(body)["a"] == "nil"


def test_wait_then_the_backend(backend, workdir, portico):
    """After the wait the pipeline goes on: the backend sees what the lanes set."""
    p = portico(config(backend, workdir, [
        {"wait": {"policies": [lane(100, "a", value="x1"), lane(150, "b", value="x2")]}},
        {"set-header": {"name": "X-Lanes", "value": "@(context.variables.a .. '+' .. context.variables.b)"}}]))
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 200
    assert backend.last().header("X-Lanes") == "x1+x2"


def test_wait_in_outbound(backend, workdir, portico):
    p = portico(config(backend, workdir, ["base"], outbound=[
        {"wait": {"for": "any", "policies": [lane(100, "a", value="@(tostring(context.response.statusCode))"),
                                             lane(900, "b")]}},
        {"set-header": {"name": "X-A", "value": "@(context.variables:get('a', 'none'))"}}]))
    status, headers, _, took = timed(p)
    assert status == 200 and headers["x-a"] == "200"
    assert took < 0.7
    assert backend.last() is not None


def test_many_requests_wait_at_once(backend, workdir, portico):
    """One worker: 20 requests each waiting 400 ms in two lanes are served together, not one after another."""
    p = portico(config(backend, workdir, [
        {"wait": {"policies": [lane(400, "a", value="@(context.request.url.query:get('n', ''))"),
                               lane(300, "b", value="@(context.requestId)")]}}, REPORT]))
    results = {}

    def one(i):
        status, _, body = p.request("GET", "/echo/items/1?n=%d" % i, timeout=10)
        results[i] = (status, json.loads(body))

    t0 = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    took = time.monotonic() - t0
    assert len(results) == 20
    for i, (status, body) in results.items():
        assert status == 200 and body["a"] == str(i), (i, body)  # each request its own variables
    assert len({body["b"] for _, body in results.values()}) == 20
    assert took < 3.0, took  # 20 x 0.4 s one after another would be 8 s


# --------------------------------------------------------------------- errors

def test_error_in_a_lane_runs_on_error_located_in_the_lane(backend, workdir, portico):
    # on-error sleeps 0.8 s first: the other lane (due at 0.6 s) would fire meanwhile were it not abandoned
    p = portico(config(backend, workdir, [
        {"wait": {"policies": [lane(600, "a"), lane(100, "b", fail=True)]}}, REPORT],
        on_error=[{"test-sleep": {"ms": 800, "name": "z"}}] + ON_ERROR))
    status, _, body, took = timed(p)
    assert status == 599, body
    e = json.loads(body)
    assert e["reason"] == "TestFailure" and e["source"] == "test-sleep"
    assert e["section"] == "inbound"
    assert e["path"] == "wait[1]/choose[2]/when[1]/test-sleep[1]", e["path"]
    assert e["a"] == "nil"  # the other lane was abandoned
    assert 0.85 < took < 1.4, took
    assert "test-sleep a fired" not in p.log_text() and "test-sleep z fired" in p.log_text()


def test_error_in_a_lane_without_on_error(backend, workdir, portico):
    p = portico(config(backend, workdir, [
        {"wait": {"for": "any", "policies": [lane(50, "b", fail=True), lane(600, "a")]}}, REPORT]))
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 502  # the status the lane failed with
    assert p.access_entries(wait_for=1)[-1]["reason"] == "TestFailure"


def test_expression_error_in_a_lane_condition(backend, workdir, portico):
    p = portico(config(backend, workdir, [
        {"wait": {"policies": [lane(300, "a"), {"choose": [{"when": "@(nil + 1)", "then": [
            {"test-sleep": {"name": "b"}}]}]}]}}, REPORT], on_error=ON_ERROR))
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 599
    e = json.loads(body)
    assert e["reason"] == "ExpressionValueEvaluationFailure"
    assert e["path"].startswith("wait[1]/choose[2]"), e["path"]


def test_return_response_in_a_lane_answers(backend, workdir, portico):
    p = portico(config(backend, workdir, [
        {"wait": {"policies": [lane(900, "a"), {"choose": [{"when": "@(true)", "then": [
            {"test-sleep": {"name": "b", "ms": 50}},
            {"return-response": {"set-status": {"code": 203},
                                 "set-body": "@('b=' .. context.variables.b)"}}]}]}]}}, REPORT]))
    status, _, body, took = timed(p)
    assert status == 203 and body == b"b=done"
    assert took < 0.6
    assert_stays(lambda: "test-sleep a fired" not in p.log_text(), 1.0, what="the abandoned lane's timer")


# ------------------------------------------------------------------- bodies

def test_lanes_read_the_request_body(backend, workdir, portico):
    """A lane whose condition needs the body: the driver reads it, that lane runs again, the other lane
    is not run twice, and the backend still gets the body (preserved)."""
    p = portico(config(backend, workdir, [
        {"wait": {"policies": [
            lane(200, "a", value="@(context.request.body:asString(true))"),
            {"choose": [{"when": "@(context.request.body:asJson(true).go == true)", "then": [
                {"test-sleep": {"name": "b", "ms": 100, "value": "went"}}]}]},
        ]}},
        {"set-header": {"name": "X-Lanes", "value": "@(context.variables.a .. '|' .. context.variables.b)"}}]))
    status, _, _ = p.request("POST", "/echo/items", body=b'{"go": true}',
                             headers={"Content-Type": "application/json"})
    assert status == 200
    seen = backend.last()
    assert seen.header("X-Lanes") == '{"go": true}|went'
    assert seen.body == b'{"go": true}'
    assert p.log_text().count("test-sleep a started") == 1
    assert p.log_text().count("test-sleep b started") == 1


# ------------------------------------------------------- the client goes away

def test_client_going_away_mid_wait(backend, workdir, portico):
    p = portico(config(backend, workdir, [
        {"wait": {"policies": [lane(500, "a"), lane(700, "b")]}}, REPORT]))
    s = socket.create_connection(("127.0.0.1", p.port))
    s.sendall(b"GET /echo/items/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: "test-sleep b started" in p.log_text(), what="the lanes to start")
    s.close()
    # the request is over: its lanes' timers went with it
    assert_stays(lambda: "fired" not in p.log_text(), 1.2, what="the lanes of a request that ended")
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 200 and json.loads(body)["a"] == "done"
    assert p.proc.poll() is None


# ----------------------------------------------------------- configuration

@pytest.mark.parametrize("child, words", [
    ({"set-header": {"name": "X", "value": "1"}}, "'set-header' cannot be a child of wait"),
    ({"return-response": {}}, "'return-response' cannot be a child of wait"),
    ({"choose": [{"when": "@(true)", "then": [{"retry": {"condition": "@(false)", "count": 1, "interval": 0,
                                                          "policies": []}}]}]},
     "'retry' cannot run inside wait"),
    ({"choose": [{"when": "@(true)", "then": [{"wait": {"policies": []}}]}]}, "'wait' cannot run inside wait"),
], ids=["set-header", "return-response", "retry-in-choose", "wait-in-choose"])
def test_children_are_checked_with_positions(backend, workdir, portico, child, words):
    p = portico(config(backend, workdir, [{"wait": {"policies": [lane(1, "a"), child]}}]), start=False)
    code, out = p.check()
    assert code != 0 and words in out, out
    assert "portico.yaml:" in out, out  # file:line:column


def test_wait_sections_and_for(backend, workdir, portico):
    cfg = config(backend, workdir, ["base"], on_error=[{"wait": {"policies": []}}])
    code, out = portico(cfg, start=False).check()
    assert code != 0 and "not allowed in the on-error section" in out, out
    cfg = config(backend, workdir, [{"wait": {"for": "some", "policies": []}}])
    code, out = portico(cfg, start=False).check()
    assert code != 0 and "some" in out, out
    cfg = config(backend, workdir, [{"wait": {"for": "any"}}])
    code, out = portico(cfg, start=False).check()
    assert code != 0 and "policies" in out, out


def test_wait_in_the_policy_reference(backend, workdir):
    import subprocess
    from conftest import BIN
    r = subprocess.run([BIN, "-P", "-c", os.path.join(os.path.dirname(__file__), "..", "..", "conf", "portico.yaml")],
                       capture_output=True, text=True)
    assert "wait" in r.stdout and "cache-lookup-value" in r.stdout, r.stdout[-500:]
