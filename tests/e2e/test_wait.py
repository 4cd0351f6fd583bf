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
        {"wait": {"for": "all", "policies": [lane(900, "a", value="A"), lane(800, "b", value="B")]}}, REPORT]))
    status, _, body, took = timed(p)
    assert status == 200, body
    assert json.loads(body) == {"a": "A", "b": "B", "c": "nil"}
    # side by side: the longer lane's time, not the sum (1.7 s)
    assert 0.85 <= took < 1.5, took
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
    assert 1.1 <= took < 2.2, took
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
    assert 0.14 <= took < 1.2, took


def test_lanes_that_finish_at_once(backend, workdir, portico):
    """A lane that resumes from inside its own run(), and one with no wait at all."""
    p = portico(config(backend, workdir, [
        {"wait": {"policies": [lane(0, "a", inline=True, value="inline"), lane(0, "b"),
                               {"choose": [{"when": "@(false)", "then": [{"test-sleep": {"name": "c"}}]}]}]}},
        REPORT]))
    status, _, body, took = timed(p)
    assert status == 200 and json.loads(body) == {"a": "inline", "b": "done", "c": "nil"}, body
    assert took < 1.0


def test_any_with_a_lane_done_at_once(backend, workdir, portico):
    p = portico(config(backend, workdir, [
        {"wait": {"for": "any", "policies": [lane(2000, "a"), lane(0, "b", inline=True)]}}, REPORT]))
    status, _, body, took = timed(p)
    assert status == 200 and json.loads(body) == {"a": "nil", "b": "done", "c": "nil"}
    assert took < 1.2
    assert_stays(lambda: "test-sleep a fired" not in p.log_text(), 1.0, what="the abandoned timer")


def test_a_lost_lanes_timer_cancelled_at_the_end(backend, workdir, portico):
    """The plugin keeps the handle of a timer whose lane lost and cancels it from at_end: the handle is
    still valid (the timer stopped at the wait's end, freed at the request's), and the gateway is fine."""
    p = portico(config(backend, workdir, [
        {"wait": {"for": "any", "policies": [lane(50, "a", **{"cancel-at-end": True}),
                                             lane(3000, "b", **{"cancel-at-end": True})]}}, REPORT]))
    for i in range(5):
        status, _, body = p.request("GET", "/echo/items/%d" % i)
        assert status == 200 and json.loads(body) == {"a": "done", "b": "nil", "c": "nil"}, body
    wait_for(lambda: p.log_text().count("test-sleep b cancelled at end") == 5, what="the at_end cancels")
    log = p.log_text()
    assert "test-sleep a cancelled at end" not in log  # a fired: its handle was spent
    assert "test-sleep b fired" not in log
    assert p.proc.poll() is None
    assert p.request("GET", "/echo/items/9")[0] == 200


def test_hooks_of_a_lost_lane_do_not_run(backend, workdir, portico):
    """Both lanes register an at_response hook before they wait: only the winner's runs."""
    p = portico(config(backend, workdir, [
        {"wait": {"for": "any", "policies": [lane(2000, "a", hook=True), lane(50, "b", hook=True)]}},
        {"test-sleep": {"ms": 0, "name": "z", "hook": True}}, REPORT]))
    status, headers, body = p.request("GET", "/echo/items/1")
    assert status == 200 and json.loads(body)["b"] == "done", body
    assert headers.get("x-hook-b") == "1" and headers.get("x-hook-z") == "1", headers
    assert "x-hook-a" not in headers, headers


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
                                             lane(2000, "b")]}},
        {"set-header": {"name": "X-A", "value": "@(context.variables:get('a', 'none'))"}}]))
    status, headers, _, took = timed(p)
    assert status == 200 and headers["x-a"] == "200"
    assert took < 1.5
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
    assert 0.85 < took < 2.0, took
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


def test_error_of_a_plain_policy_in_a_lane_names_it(backend, workdir, portico):
    p = portico(config(backend, workdir, [
        {"wait": {"policies": [lane(300, "a"), {"choose": [{"when": "@(true)", "then": [
            {"set-header": {"name": "X-Bad", "value": "@('a' .. string.char(13, 10) .. 'b: c')"}}]}]}]}},
        REPORT], on_error=ON_ERROR))
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 599
    e = json.loads(body)
    assert e["source"] == "set-header" and e["reason"] == "InvalidHeaderValue", e
    assert e["path"] == "wait[1]/choose[2]/when[1]/set-header[1]", e


def test_return_response_in_a_lane_answers(backend, workdir, portico):
    p = portico(config(backend, workdir, [
        {"wait": {"policies": [lane(2500, "a"), {"choose": [{"when": "@(true)", "then": [
            {"test-sleep": {"name": "b", "ms": 50}},
            {"return-response": {"set-status": {"code": 203},
                                 "set-body": "@('b=' .. context.variables.b)"}}]}]}]}}, REPORT]))
    status, _, body, took = timed(p)
    assert status == 203 and body == b"b=done"
    assert took < 1.5
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


def test_a_lane_resumed_while_the_request_body_is_read(backend, workdir, portico):
    """Lane a asks for the body, which the client sends slowly; lane b wakes up during the read and its
    next statement reads the body too: it runs once the body is in, and sees all of it."""
    p = portico(config(backend, workdir, [
        {"wait": {"policies": [
            {"choose": [{"when": "@(context.request.body:asString(true) ~= '')", "then": [
                {"test-sleep": {"name": "a", "ms": 0, "value": "@(context.request.body:asString(true))"}}]}]},
            {"choose": [{"when": "@(true)", "then": [
                {"test-sleep": {"name": "b", "ms": 100}},
                {"choose": [{"when": "@(context.request.body:asString(true) ~= '')", "then": [
                    {"test-sleep": {"name": "c", "ms": 0, "value": "@(context.request.body:asString(true))"}}]}]},
            ]}]},
        ]}},
        {"set-header": {"name": "X-Lanes", "value": "@(context.variables.a .. '|' .. context.variables.c)"}}]))
    body = b'{"part": 1, "rest": "' + b"r" * 20 + b'"}'
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    try:
        s.sendall(b"POST /echo/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
        wait_for(lambda: "test-sleep b fired" in p.log_text(), what="lane b to wake up during the read")
        time.sleep(0.1)
        s.sendall(body[10:])
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 200"), data[:300]
    seen = backend.last()
    assert seen.header("X-Lanes") == body.decode() + "|" + body.decode()
    assert seen.body == body
    log = p.log_text()
    assert log.count("test-sleep a started") == 1 and log.count("test-sleep c started") == 1, log


def test_a_lane_resumed_while_the_response_body_is_read(backend, workdir, portico):
    """Outbound: lane a needs the backend's body, which streams in 5 chunks over 500 ms; lane b wakes up
    after 150 ms and reads the body next.  b waits for the whole body (not the part that arrived), and
    the client gets all of it too."""
    size = lambda name: {"test-sleep": {"name": name, "ms": 0,
                                        "value": "@(tostring(#context.response.body:asString(true)))"}}
    p = portico(config(backend, workdir, ["base"], outbound=[
        {"wait": {"policies": [
            {"choose": [{"when": "@(context.response.body:asString(true) ~= '')", "then": [size("a")]}]},
            {"choose": [{"when": "@(true)", "then": [
                {"test-sleep": {"name": "b", "ms": 150}},
                {"choose": [{"when": "@(context.response.body:asString(true) ~= '')", "then": [size("c")]}]},
            ]}]},
        ]}},
        {"set-header": {"name": "X-Sizes", "value": "@(context.variables.a .. '|' .. context.variables.c)"}}]))
    status, headers, out = p.request("GET", "/echo/stream?chunks=5&size=10&delay=100")
    assert status == 200
    assert headers["x-sizes"] == "50|50", headers
    assert out == b"a" * 10 + b"b" * 10 + b"c" * 10 + b"d" * 10 + b"e" * 10, out
    log = p.log_text()
    assert log.count("test-sleep a started") == 1 and log.count("test-sleep c started") == 1, log


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


def test_deep_lane_runs(backend, workdir, portico):
    """choose nested 12 deep in a lane (the YAML reader's depth bound comes before the lane's 16 frames)."""
    body = [{"test-sleep": {"name": "a", "ms": 10, "value": "deep"}}]
    for _ in range(12):
        body = [{"choose": [{"when": "@(true)", "then": body}]}]
    p = portico(config(backend, workdir, [{"wait": {"policies": body}}, REPORT]))
    status, _, out = p.request("GET", "/echo/items/1")
    assert status == 200 and json.loads(out)["a"] == "deep", out


def test_wait_sections_and_for(backend, workdir, portico):
    cfg = config(backend, workdir, ["base"], on_error=[{"wait": {"policies": []}}])
    code, out = portico(cfg, start=False).check()
    assert code != 0 and "not allowed in the on-error section" in out, out
    cfg = config(backend, workdir, [{"wait": {"for": "some", "policies": []}}])
    code, out = portico(cfg, start=False).check()
    assert code != 0 and "some" in out, out
    cfg = config(backend, workdir, [{"wait": {"for": "any"}}])
    code, out = portico(cfg, start=False).check()
    assert code != 0 and "'wait' needs the attribute 'policies'" in out, out


def test_wait_in_the_policy_reference(backend, workdir):
    import subprocess
    from conftest import BIN
    r = subprocess.run([BIN, "-P", "-c", os.path.join(os.path.dirname(__file__), "..", "..", "conf", "portico.yaml")],
                       capture_output=True, text=True)
    heads = [line for line in r.stdout.splitlines() if line.startswith("#")]
    assert "## wait" in heads and "## cache-lookup-value" in heads, heads


# ------------------------------------------------- over real send-requests

needs_routing = pytest.mark.skipif(not os.path.isdir(os.path.join(BUILD_PLUGINS, "routing")),
                                   reason="the routing family (send-request) is not in this build")


class HoldService:
    """A side service that reads requests and never answers; notes when each connection was closed."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.accepted = []  # monotonic times
        self.closed = []
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted.append(time.monotonic())
                self.conns.append(c)
            threading.Thread(target=self._read, args=(c,), daemon=True).start()

    def _read(self, c):
        while True:
            try:
                d = c.recv(65536)
            except OSError:
                d = b""
            if not d:
                with self.lock:
                    self.closed.append(time.monotonic())
                return

    def close(self):
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


@pytest.fixture
def hold():
    h = HoldService()
    yield h
    h.close()


def send(var, url, **kw):
    attrs = {"response-variable-name": var, "set-url": url, "timeout": 10}
    attrs.update(kw)
    return {"send-request": attrs}


SEND_REPORT = {"return-response": {
    "set-header": [{"name": "Content-Type", "value": "application/json"}],
    "set-body": {"value": "@(json.encode({"
                          "fast = context.variables.fast and context.variables.fast.body:asJson().target or 'nil', "
                          "slow = context.variables.slow and context.variables.slow.body:asJson().target or 'nil', "
                          "v = context.variables:get('v', 'nil')}))"}}}


@needs_routing
def test_all_over_two_send_requests(backend, workdir, portico):
    side = backend  # the echo service answers /sleep/{ms} after waiting
    p = portico(config(backend, workdir, [
        {"wait": {"for": "all", "policies": [send("slow", side.url + "/sleep/1000"),
                                             send("fast", side.url + "/sleep/900")]}}, SEND_REPORT]))
    status, _, body, took = timed(p)
    assert status == 200, body
    assert json.loads(body) == {"fast": "/sleep/900", "slow": "/sleep/1000", "v": "nil"}
    assert 0.95 <= took < 1.7, took  # the slower call's time, not the sum (1.9 s)
    assert len(side.requests) == 2


@needs_routing
def test_any_over_two_send_requests_ends_at_the_fast_one(backend, workdir, portico, hold):
    p = portico(config(backend, workdir, [
        {"wait": {"for": "any", "policies": [send("slow", hold.url + "/never"),
                                             send("fast", backend.url + "/sleep/200")]}}, SEND_REPORT]))
    status, _, body, took = timed(p)
    assert status == 200, body
    assert json.loads(body) == {"fast": "/sleep/200", "slow": "nil", "v": "nil"}
    assert 0.19 <= took < 2.0, took  # the fast call's time plus a margin, not the slow call's 10 s timeout
    wait_for(lambda: len(hold.closed) == 1, timeout=2, what="the abandoned call's connection to close")
    assert len(hold.accepted) == 1


@needs_routing
def test_any_cancels_the_slow_call_when_it_loses(backend, workdir, portico, hold):
    """The request lives on after the wait (a 1 s sleep): the losing call is closed when the wait ends,
    not when the request does."""
    p = portico(config(backend, workdir, [
        {"wait": {"for": "any", "policies": [send("slow", hold.url + "/never"),
                                             send("fast", backend.url + "/sleep/150")]}},
        {"test-sleep": {"ms": 1000, "name": "z"}}, SEND_REPORT]))
    t0 = time.monotonic()
    status, _, body = p.request("GET", "/echo/items/1")
    t_end = time.monotonic()
    assert status == 200 and json.loads(body)["fast"] == "/sleep/150"
    assert len(hold.accepted) == 1 and len(hold.closed) == 1
    # closed when the wait ended, a second before the request did
    assert t_end - hold.closed[0] > 0.6, (hold.closed[0] - t0, t_end - t0)


@needs_routing
def test_an_error_in_a_send_request_lane_runs_on_error(backend, workdir, portico, hold):
    from conftest import free_port
    refused = "http://127.0.0.1:%d/x" % free_port()
    p = portico(config(backend, workdir, [
        {"wait": {"policies": [send("slow", hold.url + "/never"), send("fast", refused)]}}, SEND_REPORT],
        on_error=ON_ERROR))
    status, _, body, took = timed(p)
    assert status == 599, body
    e = json.loads(body)
    assert e["reason"] == "BackendConnectionFailure" and e["source"] == "send-request"
    assert e["path"] == "wait[1]/send-request[2]", e["path"]
    assert took < 2.5
    wait_for(lambda: len(hold.closed) == 1, timeout=2, what="the sibling's connection to close")


@needs_routing
def test_ignore_error_in_a_lane_leaves_nil(backend, workdir, portico):
    from conftest import free_port
    refused = "http://127.0.0.1:%d/x" % free_port()
    p = portico(config(backend, workdir, [
        {"wait": {"policies": [send("slow", refused, **{"ignore-error": True}),
                               send("fast", backend.url + "/sleep/100")]}}, SEND_REPORT]))
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 200 and json.loads(body) == {"fast": "/sleep/100", "slow": "nil", "v": "nil"}


@needs_routing
def test_client_going_away_mid_wait_cancels_the_calls(backend, workdir, portico, hold):
    p = portico(config(backend, workdir, [
        {"wait": {"policies": [send("slow", hold.url + "/a"), send("fast", hold.url + "/b")]}}, SEND_REPORT]))
    s = socket.create_connection(("127.0.0.1", p.port))
    s.sendall(b"GET /echo/items/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: len(hold.accepted) == 2, timeout=3, what="both calls to arrive")
    s.close()
    wait_for(lambda: len(hold.closed) == 2, timeout=3, what="both calls to be cancelled")
    # once more: nothing is left behind
    s = socket.create_connection(("127.0.0.1", p.port))
    s.sendall(b"GET /echo/items/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: len(hold.accepted) == 4, timeout=3, what="both calls to arrive")
    s.close()
    wait_for(lambda: len(hold.closed) == 4, timeout=3, what="both calls to be cancelled")
    assert p.proc.poll() is None


@needs_routing
def test_cache_lookup_value_in_a_lane(backend, workdir, portico, hold):
    """A cache hit answers at once: with for=any it wins over a slow send-request, which is cancelled."""
    p = portico(config(backend, workdir, [
        {"cache-store-value": {"key": "k1", "value": "cached", "duration": 60, "caching-type": "internal"}},
        {"wait": {"for": "any", "policies": [
            send("slow", hold.url + "/never"),
            {"cache-lookup-value": {"key": "k1", "variable-name": "v", "caching-type": "internal"}}]}},
        SEND_REPORT]))
    status, _, body, took = timed(p)
    assert status == 200 and json.loads(body) == {"fast": "nil", "slow": "nil", "v": "cached"}, body
    assert took < 2.0
    wait_for(lambda: len(hold.closed) == len(hold.accepted), timeout=2, what="the send-request to be cancelled")


# ------------------------------------------------------------------ traces

def test_a_traced_wait(backend, workdir, portico):
    """A traced request through a wait (lanes suspended, one failing later, response variables set):
    the trace records the wait as one step, its variables, and the lane's error in on-error."""
    from conftest import free_port
    from mgmt_helpers import TOKEN, Mgmt
    cfg = config(backend, workdir, [
        {"wait": {"policies": [lane(100, "x", response=True, value="A"), lane(200, "b", value="B")]}},
        {"wait": {"for": "any", "policies": [lane(50, "c", fail=True), lane(900, "d")]}}],
        on_error=ON_ERROR, management={"listen": "127.0.0.1:%d" % free_port()})
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    token = m.ok("POST", "gateways/managed/listDebugCredentials",
                 {"credentialsExpireAfter": "PT1H", "apiId": "echo", "purposes": ["tracing"]})["token"]
    status, h, body = p.request("GET", "/echo/items/1", headers={"Apim-Debug-Authorization": token})
    assert status == 599, body
    assert json.loads(body)["path"] == "wait[2]/choose[1]/when[1]/test-sleep[1]"

    def fetch():
        st, _, out = m.call("POST", "gateways/managed/listTrace", {"traceId": h["apim-trace-id"]})
        return out if st == 200 else None
    trace = wait_for(fetch, what="the trace")
    text = json.dumps(trace)
    inbound = trace["traceEntries"]["inbound"]
    assert [e.get("path") for e in inbound if e.get("path", "").startswith("wait")][:2] == ["wait[1]", "wait[2]"], \
        text[:2000]
    assert '"statusCode": 200' in text  # the response variable a, shown by its status
    assert trace["traceEntries"]["on-error"], text[:2000]
    failed = [e for e in inbound if e.get("path") == "wait[2]"][0]
    assert failed["data"]["error"]["path"] == "wait[2]/choose[1]/when[1]/test-sleep[1]", failed


@needs_routing
def test_churn_of_waits_with_clients_leaving(backend, workdir, portico, hold):
    """Many requests at once, each an any-wait over a call that never answers and one that answers after
    a while, half of the clients leaving before the answer: every call ends up closed, the answers that
    are awaited are right, and the gateway keeps serving."""
    p = portico(config(backend, workdir, [
        {"wait": {"for": "any", "policies": [send("slow", hold.url + "/never"),
                                             send("fast", backend.url + "/sleep/300")]}}, SEND_REPORT]))
    answers = {}

    def one(i):
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        try:
            s.sendall(b"GET /echo/items/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            if i % 2:
                time.sleep(0.05 + (i % 5) * 0.02)
                return  # the client leaves mid-wait
            data = b""
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            answers[i] = data
        finally:
            s.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(answers) == 15
    for data in answers.values():
        assert data.startswith(b"HTTP/1.1 200"), data[:300]
        assert json.loads(data.split(b"\r\n\r\n", 1)[1])["fast"] == "/sleep/300", data[:300]
    wait_for(lambda: len(hold.accepted) == 30 and len(hold.closed) == 30, timeout=5,
             what="every never-answered call to be closed")
    status, _, body = p.request("GET", "/echo/items/99")
    assert status == 200 and json.loads(body)["fast"] == "/sleep/300"


# ------------------------------------------------------- cache reads in Redis

def _redis():
    try:
        import redis_helpers
    except ImportError:
        return None
    return redis_helpers


@pytest.mark.skipif(_redis() is None or not os.path.exists(getattr(_redis(), "REDIS_SERVER", "")),
                    reason="redis-server or the Redis store is not in this build")
def test_redis_lookups_in_lanes(backend, workdir, portico):
    """cache-lookup-value through Redis answers later (a lane suspends on it): with for=all both lanes'
    values arrive; with for=any a lane that is done at once wins and the Redis answer that comes after is
    dropped (the variable stays unset while the request goes on)."""
    r = _redis().RedisServer()
    r.start()
    try:
        look = {"cache-lookup-value": {"key": "rk", "variable-name": "v", "caching-type": "external"}}
        cfg = config(backend, workdir, [
            {"cache-store-value": {"key": "rk", "value": "from-redis", "duration": 60, "caching-type": "external"}},
            {"wait": {"for": "all", "policies": [look, lane(100, "a")]}},
            {"set-variable": {"name": "first", "value": "@(context.variables:get('v', 'nil'))"}},
            {"set-variable": {"name": "v", "value": "reset"}},
            {"wait": {"for": "any", "policies": [look, lane(0, "b", inline=True)]}},
            {"test-sleep": {"ms": 300, "name": "z"}},
            {"return-response": {"set-body": "@(context.variables.first .. '|' .. context.variables.v .. '|' .. "
                                             "context.variables.b)"}}], cache={"redis": r.url})
        p = portico(cfg)
        body = b""
        for _ in range(20):  # the store's SET is not awaited: the first request may miss it
            status, _, body = p.request("GET", "/echo/items/1")
            assert status == 200, body
            if body.startswith(b"from-redis"):
                break
            time.sleep(0.05)
        assert body == b"from-redis|reset|done", body
    finally:
        r.stop()
