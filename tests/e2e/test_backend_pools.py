"""Backends seen from the request path: pools (weight, priority groups),
circuit breakers (counts, percentages, status ranges, error reasons,
Retry-After, recovery), active health checks, and forward-request's
follow-redirects, buffer-response and fail-on-error-status-code.

Every backend is a small real HTTP/1.1 server the test starts on
127.0.0.1; tests check what the client got and which backend saw what."""

import http.client
import json
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import basic_config, free_port, wait_for
from backends import stop_server


# ------------------------------------------------------------------ backends

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _serve(self):
        b = self.server.owner
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        path, _, query = self.path.partition("?")
        rec = {"method": self.command, "target": self.path, "path": path, "body": body,
               "headers": dict((k.lower(), v) for k, v in self.headers.items())}
        with b.lock:
            b.requests.append(rec)
        parts = path.split("/")
        status, extra, payload = 200, [], None
        if path == "/health":
            with b.lock:
                b.health_hits += 1
            status = 200 if b.healthy else 503
        elif "loop" in parts:
            status = 302
            extra.append(("Location", path))
            payload = b"loop"
        elif "redirect" in parts:
            # /redirect/{status}/{urlencoded Location}
            i = parts.index("redirect")
            status = int(parts[i + 1])
            extra.append(("Location", urllib.parse.unquote(parts[i + 2])))
            payload = b"redirect body"
        elif "status" in parts:
            status = int(parts[parts.index("status") + 1])
        elif b.fail_status:
            status = b.fail_status
            if b.retry_after is not None:
                extra.append(("Retry-After", str(b.retry_after)))
        if b.delay:
            time.sleep(b.delay)
        if payload is None:
            payload = json.dumps({"backend": b.name, "method": self.command, "target": self.path,
                                  "body": body.decode("latin1")}).encode()
        self.send_response(status)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _serve


class Backend:
    """A named backend: answers 200 with {"backend": name, ...}, or
    `fail_status` (with Retry-After `retry_after`) while set; /health says
    200 or 503 after `healthy`; /status/N answers N; /redirect/S/LOC
    redirects.  Every request is recorded."""

    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.requests = []
        self.health_hits = 0
        self.healthy = True
        self.fail_status = None
        self.retry_after = None
        self.delay = 0
        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.srv.daemon_threads = True
        self.srv.owner = self
        self.port = self.srv.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def calls(self):
        with self.lock:
            return [r for r in self.requests if r["path"] != "/health"]

    def close(self):
        stop_server(self.srv)


@pytest.fixture
def backends():
    made = []

    def make(*names):
        bs = [Backend(n) for n in names]
        made.extend(bs)
        return bs if len(bs) > 1 else bs[0]
    yield make
    for b in made:
        b.close()


def get(p, path, method="GET", body=None, headers=None):
    status, hdrs, data = p.request(method, path, body=body, headers=headers)
    return status, hdrs, data


def with_forward(url, fwd, others=()):
    """An API on `url` with forward-request `fwd`; `others` are backends configured as entities
    (the origins a redirect may lead to)."""
    cfg = basic_config(url)
    cfg["apis"][0]["policies"] = {"backend": [{"forward-request": fwd}]}
    if others:
        cfg["backends"] = [{"id": o.name, "url": o.url} for o in others]
    return cfg


# ------------------------------------------------------- follow-redirects

def q(s):
    return urllib.parse.quote(s, safe="")


def test_follow_redirects_true_fetches_the_location(backends, portico):
    """A 302 to a path on the same backend and a 301 to an absolute URL on
    a second, configured, backend are followed; the client gets the final
    200 and never sees a redirect."""
    a, b = backends("a", "b")
    p = portico(with_forward(a.url, {"follow-redirects": True}, others=[b]))
    status, _, data = get(p, "/echo/redirect/302/" + q("/base/redirect/301/" + q(b.url + "/final?x=1")))
    assert status == 200
    j = json.loads(data)
    assert (j["backend"], j["target"]) == ("b", "/final?x=1")
    assert [r["path"] for r in a.calls()][0].startswith("/base/redirect/302/")
    assert [r["path"] for r in a.calls()][1].startswith("/base/redirect/301/")
    assert [r["target"] for r in b.calls()] == ["/final?x=1"]
    # the Host header names the redirect's target
    assert b.calls()[0]["headers"]["host"] == "127.0.0.1:%d" % b.port


def test_follow_redirects_default_passes_the_redirect(backends, portico):
    a = backends("a")
    p = portico(with_forward(a.url, {}))
    status, hdrs, data = get(p, "/echo/redirect/302/" + q("/base/final"))
    assert (status, hdrs["location"], data) == (302, "/base/final", b"redirect body")
    assert len(a.calls()) == 1


def test_303_turns_a_post_into_a_get_and_307_keeps_it(backends, portico):
    a = backends("a")
    p = portico(with_forward(a.url, {"follow-redirects": True, "buffer-request-body": True}))
    status, _, data = get(p, "/echo/redirect/303/" + q("/base/after"), method="POST", body=b"payload",
                          headers={"Content-Type": "text/plain", "Authorization": "Bearer t"})
    assert status == 200
    last = a.calls()[-1]
    assert (last["method"], last["path"], last["body"]) == ("GET", "/base/after", b"")
    assert "content-type" not in last["headers"] and "content-length" not in last["headers"]
    assert last["headers"]["authorization"] == "Bearer t"  # same host: kept
    status, _, data = get(p, "/echo/redirect/307/" + q("/base/again"), method="POST", body=b"payload")
    assert status == 200
    last = a.calls()[-1]
    assert (last["method"], last["path"], last["body"]) == ("POST", "/base/again", b"payload")


def test_307_of_a_streamed_body_is_passed_to_the_client(backends, portico):
    """Without buffer-request-body the body is gone: a 307 cannot be
    repeated, so the client gets it."""
    a = backends("a")
    p = portico(with_forward(a.url, {"follow-redirects": True}))
    status, hdrs, _ = get(p, "/echo/redirect/307/" + q("/base/again"), method="POST", body=b"payload")
    assert (status, hdrs["location"]) == (307, "/base/again")
    assert len(a.calls()) == 1


def test_cross_host_redirect_drops_credentials(backends, portico):
    """A redirect from backend entity a to backend entity b: nothing
    credential-like of the call to a reaches b (the client's Authorization,
    Cookie, Proxy-Authorization, subscription key, a's credential header
    names, a Host a policy set); b's own credentials are sent.  (The client's
    Proxy-Authorization reaches neither: it is for the client's own hop.)"""
    a, b = backends("a", "b")
    cfg = basic_config("http://127.0.0.1:9")
    del cfg["apis"][0]["serviceUrl"]
    cfg["apis"][0]["backendId"] = "a"
    cfg["backends"] = [{"id": "a", "url": a.url, "credentials": {"header": {"x-api-key": "for-a"}}},
                       {"id": "b", "url": b.url, "credentials": {"header": {"x-b-key": "for-b"}}}]
    cfg["apis"][0]["policies"] = {"backend": [
        {"set-header": {"name": "x-api-key", "exists-action": "override", "value": "policy-secret"}},
        # (a key the client sent would be checked: the API takes none, so a policy puts one there)
        {"set-header": {"name": "Ocp-Apim-Subscription-Key", "exists-action": "override", "value": "k-secret"}},
        {"forward-request": {"follow-redirects": True}}]}
    p = portico(cfg)
    status, _, _ = get(p, "/echo/redirect/302/" + q(b.url + "/x"),
                       headers={"Authorization": "Bearer secret", "Cookie": "s=1", "X-Keep": "1",
                                "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0"})
    assert status == 200
    ha = a.calls()[0]["headers"]
    assert ha["authorization"] == "Bearer secret" and ha["x-api-key"] == "for-a"
    assert ha["ocp-apim-subscription-key"] == "k-secret"
    assert "proxy-authorization" not in ha  # the client's proxy credentials are never passed on
    h = b.calls()[0]["headers"]
    for name in ("authorization", "cookie", "proxy-authorization", "ocp-apim-subscription-key", "x-api-key"):
        assert name not in h, name
    assert "secret" not in json.dumps(h)
    assert h["x-keep"] == "1" and h["x-b-key"] == "for-b"
    assert h["host"] == "127.0.0.1:%d" % b.port


def test_redirect_to_an_origin_that_is_not_configured_is_not_followed(backends, portico):
    """SSRF: a backend (or a client through a backend's open redirect) names
    an address: the gateway's own listener, loopback in its other spellings,
    an unconfigured backend.  None is fetched; the client gets the redirect."""
    a, b, c = backends("a", "b", "c")
    p = portico(with_forward(a.url, {"follow-redirects": True}, others=[c]))
    locs = [b.url + "/x",                                   # not a configured backend
            "http://127.0.0.1:%d/echo/x" % p.port,          # the gateway itself
            "http://0.0.0.0:%d/x" % b.port,                 # unspecified: Linux connects it to localhost
            "http://[::ffff:127.0.0.1]:%d/x" % b.port,      # v4-mapped loopback
            "http://[::1]:%d/x" % b.port,
            "http://127.0.0.2:%d/x" % c.port,               # loopback, another address than c's
            "http://localhost:%d/x" % b.port,               # a name: never resolved on a worker
            "https://127.0.0.1:%d/x" % c.port]              # c's address, another scheme
    for loc in locs:
        status, hdrs, data = get(p, "/echo/redirect/302/" + q(loc))
        assert (status, hdrs["location"], data) == (302, loc, b"redirect body"), loc
    assert b.calls() == [] and c.calls() == []
    assert len(a.calls()) == len(locs)
    assert len(p.access_entries(wait_for=len(locs))) == len(locs)  # no request came back in
    assert "neither the backend's nor a configured backend's" in p.log_text()
    # a configured backend's origin is followed
    status, _, data = get(p, "/echo/redirect/302/" + q(c.url + "/y"))
    assert status == 200 and json.loads(data)["backend"] == "c"


def test_redirect_loops_end_after_ten(backends, portico):
    """A redirect to itself: 10 are followed, then the 11th answer reaches
    the client as it is."""
    a = backends("a")
    p = portico(with_forward(a.url, {"follow-redirects": True}))
    status, hdrs, _ = get(p, "/echo/loop")
    assert (status, hdrs["location"]) == (302, "/base/loop")
    assert [r["path"] for r in a.calls()] == ["/base/loop"] * 11
    assert "too many redirects" in p.log_text()
    # a relative reference that is not a path is not followed
    status, hdrs, _ = get(p, "/echo/redirect/302/x")
    assert (status, hdrs["location"]) == (302, "x")


def test_a_retry_after_a_followed_redirect_starts_over(backends, portico):
    """retry around forward-request: each attempt starts at the API's
    backend again, not at the last redirect's target, and resends the
    client's request as it came: a POST with its body and Authorization,
    although the 303 made the hop a GET without them."""
    a, b = backends("a", "b")
    cfg = with_forward(a.url, {}, others=[b])
    cfg["apis"][0]["policies"] = {"backend": [{"retry": {
        "condition": "@(context.response.statusCode == 500)", "count": 1, "interval": 0,
        "policies": [{"forward-request": {"follow-redirects": True, "buffer-request-body": True}}]}}]}
    p = portico(cfg)
    status, _, _ = get(p, "/echo/redirect/303/" + q(b.url + "/status/500"), method="POST", body=b"payload",
                       headers={"Authorization": "Bearer t", "Content-Type": "text/plain"})
    assert status == 500
    assert len(a.calls()) == 2 and [r["path"] for r in b.calls()] == ["/status/500"] * 2
    for r in a.calls():
        assert (r["method"], r["body"]) == ("POST", b"payload")
        assert r["path"].startswith("/base/redirect/303/")
        assert r["headers"]["authorization"] == "Bearer t" and r["headers"]["content-type"] == "text/plain"
    for r in b.calls():
        assert (r["method"], r["body"]) == ("GET", b"")
        assert "authorization" not in r["headers"] and "content-type" not in r["headers"]


def test_a_redirect_hop_goes_through_its_backends_breaker_and_one_deadline(backends, portico):
    """A hop to a backend entity whose circuit is open is not followed (the
    client gets the redirect), and its outcomes count for its breaker; all
    hops share forward-request's timeout."""
    a, c = backends("a", "c")
    cfg = with_forward(a.url, {"follow-redirects": True}, others=[c])
    cfg["backends"][0]["circuitBreaker"] = {"rules": [rule(count=1, trip="PT30S")]}
    p = portico(cfg)
    loc = c.url + "/status/500"
    assert get(p, "/echo/redirect/302/" + q(loc))[0] == 500  # followed; c's 500 trips c
    status, hdrs, _ = get(p, "/echo/redirect/302/" + q(loc))
    assert (status, hdrs["location"]) == (302, loc)
    assert len(c.calls()) == 1
    assert "circuit breaker tripped" in p.log_text()
    # one deadline: each answer takes 0.4 s, the timeout is 0.6 s, so the hop has 0.2 s left
    a.delay = 0.4
    p2 = portico(with_forward(a.url, {"follow-redirects": True, "timeout-ms": 600}))
    t0 = time.time()
    status, _, _ = get(p2, "/echo/redirect/302/" + q("/base/x"))
    assert status in (500, 504) and time.time() - t0 < 1.0
    e = p2.access_entries(wait_for=1)
    assert e[-1].get("reason") == "Timeout"


def test_redirects_not_followed_warn_once_a_minute(backends, portico):
    """The backend decides how many redirects are refused: the warnings are
    limited (one a minute per worker)."""
    a = backends("a")
    p = portico(with_forward(a.url, {"follow-redirects": True}))
    for _ in range(6):
        assert get(p, "/echo/redirect/302/" + q("http://192.0.2.1/x"))[0] == 302
    n = p.log_text().count("is not followed")
    assert 1 <= n <= 2  # two workers at most


def test_redirect_to_a_name_or_a_downgrade_is_not_followed(backends, portico):
    a = backends("a")
    p = portico(with_forward(a.url, {"follow-redirects": True}))
    for loc in ("http://example.invalid/x", "ftp://127.0.0.1/x", "/bad path"):
        status, hdrs, _ = get(p, "/echo/redirect/302/" + q(loc))
        assert status == 302, loc
    assert len(a.calls()) == 3
    assert "not followed" in p.log_text()


def test_an_https_backend_redirecting_to_http_is_not_followed(workdir, backends, portico):
    """The downgrade: an https backend's redirect to http is not followed,
    even to a configured backend's origin."""
    import ssl
    from tls_helpers import Pki
    pki = Pki(workdir)
    cert, key = pki.leaf("sec", "localhost", ["DNS:localhost"])
    sec, plain = backends("sec", "plain")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    sec.srv.socket = ctx.wrap_socket(sec.srv.socket, server_side=True)
    sec.url = "https://localhost:%d" % sec.port
    cfg = with_forward(sec.url, {"follow-redirects": True}, others=[plain])
    cfg["upstream"] = {"caFile": pki.ca}
    p = portico(cfg)
    loc = plain.url + "/x"
    status, hdrs, _ = get(p, "/echo/redirect/302/" + q(loc))
    assert (status, hdrs["location"]) == (302, loc)
    assert plain.calls() == [] and len(sec.calls()) == 1
    assert "an https backend redirected to http" in p.log_text()
    # an https path on the same backend is followed
    status, _, data = get(p, "/echo/redirect/302/" + q("/base/final"))
    assert status == 200 and json.loads(data)["target"] == "/base/final"


# ------------------------------------------------ fail-on-error-status-code

def test_fail_on_error_status_code_runs_on_error(backends, portico):
    a = backends("a")
    cfg = with_forward(a.url, {"fail-on-error-status-code": True})
    cfg["apis"][0]["policies"]["on-error"] = [{"return-response": {
        "set-status": {"code": 599}, "set-body": "@(context.lastError.reason .. '|' .. context.lastError.source)"}}]
    p = portico(cfg)
    for code, want in ((404, 599), (500, 599), (399, 399), (200, 200)):
        status, _, data = get(p, "/echo/status/%d" % code)
        assert status == want, code
        if want == 599:
            assert data.decode().startswith("BackendStatusError|forward-request")
    # without it, the backend's 500 reaches the client
    p2 = portico(with_forward(a.url, {}))
    assert get(p2, "/echo/status/500")[0] == 500


# ---------------------------------------------------------- buffer-response

def test_buffer_response_false_streams_server_sent_events(portico):
    """An event stream: the first event reaches the client while the
    backend still holds the second."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    release = threading.Event()

    def serve():
        s, _ = srv.accept()
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"d\r\ndata: first\n\n\r\n")
        release.wait(10)
        s.sendall(b"e\r\ndata: second\n\n\r\n0\r\n\r\n")
        time.sleep(0.2)
        s.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        p = portico(with_forward("http://127.0.0.1:%d" % srv.getsockname()[1], {"buffer-response": False}))
        c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5)
        c.request("GET", "/echo/events")
        r = c.getresponse()
        assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
        assert r.read(13) == b"data: first\n\n"
        assert not release.is_set()
        release.set()
        assert r.read() == b"data: second\n\n"
        c.close()
    finally:
        release.set()
        srv.close()


# ------------------------------------------------------- pools and breakers

def single(b, rules=None, health=None, bid=None):
    d = {"id": bid or b.name, "url": b.url}
    if rules is not None:
        d["circuitBreaker"] = {"rules": rules}
    if health is not None:
        d["healthCheck"] = health
    return d


def rule(count=None, percentage=None, interval="PT10S", ranges=((500, 599),), reasons=None, trip="PT1S",
         accept_retry_after=None, name="r1"):
    fc = {"interval": interval}
    if count is not None:
        fc["count"] = count
    if percentage is not None:
        fc["percentage"] = percentage
    if ranges:
        fc["statusCodeRanges"] = [{"min": lo, "max": hi} for lo, hi in ranges]
    if reasons:
        fc["errorReasons"] = list(reasons)
    r = {"name": name, "failureCondition": fc, "tripDuration": trip}
    if accept_retry_after is not None:
        r["acceptRetryAfter"] = accept_retry_after
    return r


def pool(pid, members):
    """members: (id, weight, priority)"""
    return {"id": pid, "type": "Pool",
            "pool": {"services": [{"id": i, "weight": w, "priority": pr} for i, w, pr in members]}}


def config_for(backend_id, backends_list, workers=2, **extra):
    cfg = basic_config("http://127.0.0.1:9", workers=workers, **extra)
    del cfg["apis"][0]["serviceUrl"]
    cfg["apis"][0]["backendId"] = backend_id
    cfg["backends"] = backends_list
    return cfg


def who(p, path="/echo/x", n=1):
    out = []
    for _ in range(n):
        status, _, data = get(p, path)
        out.append(json.loads(data)["backend"] if status == 200 else status)
    return out


def test_pool_distributes_by_weight_within_the_best_priority(backends, portico):
    """Weights 3 and 1 in priority 0 share the calls exactly 3:1, spread out
    (never more than 3 in a row), across two workers; the priority-1 member
    gets nothing while the better group has members."""
    a, b, c = backends("a", "b", "c")
    p = portico(config_for("p", [single(a), single(b), single(c),
                                 pool("p", [("a", 3, 0), ("b", 1, 0), ("c", 5, 1)])]))
    seen = who(p, n=40)
    assert seen.count("a") == 30 and seen.count("b") == 10 and not c.calls()
    run = longest = 0
    for x in seen:
        run = run + 1 if x == "a" else 0
        longest = max(longest, run)
    assert longest <= 3
    assert len(a.calls()) == 30 and len(b.calls()) == 10


def test_pool_falls_back_to_the_next_priority_then_503(backends, portico):
    """a and b (priority 0) trip on their first 500; c (priority 1) takes
    over; when c trips too, the gateway answers 503 BackendUnavailable
    without calling anyone, with Retry-After."""
    a, b, c = backends("a", "b", "c")
    r = [rule(count=1, trip="PT30S")]
    p = portico(config_for("p", [single(a, r), single(b, r), single(c, r),
                                 pool("p", [("a", 1, 0), ("b", 1, 0), ("c", 1, 1)])]))
    a.fail_status = b.fail_status = 500
    assert sorted(x for x in who(p, n=2)) == [500, 500]
    assert (len(a.calls()), len(b.calls())) == (1, 1)
    assert who(p, n=4) == ["c"] * 4
    c.fail_status = 502
    assert who(p) == [502]
    status, hdrs, data = get(p, "/echo/x")
    assert status == 503
    j = json.loads(data)
    assert j["statusCode"] == 503 and "unavailable" in j["message"]
    assert 28 <= int(hdrs["retry-after"]) <= 30
    assert (len(a.calls()), len(b.calls()), len(c.calls())) == (1, 1, 5)
    # two workers write their own access-log lines: order by nothing
    e = p.access_entries(wait_for=8)
    assert sorted((x["status"], x.get("reason", "")) for x in e if x["status"] >= 500) == \
        [(500, "")] * 2 + [(502, "")] + [(503, "BackendUnavailable")]


def test_count_rule_trips_and_recovers_after_trip_duration(backends, portico):
    a = backends("a")
    p = portico(config_for("a", [single(a, [rule(count=3, trip="PT1S")])]))
    a.fail_status = 500
    assert who(p, n=3) == [500, 500, 500]
    status, hdrs, data = get(p, "/echo/x")
    assert status == 503 and hdrs["retry-after"] == "1"
    assert json.loads(data) == {"statusCode": 503, "message": "The backend is unavailable (circuit breaker "
                                "open). Try again in 1 seconds."}
    assert b'"a"' not in data and b"Backend a" not in data  # no internal entity id
    assert len(a.calls()) == 3  # not called while open
    assert "circuit breaker tripped" in p.log_text()
    a.fail_status = None
    time.sleep(1.1)
    assert who(p, n=3) == ["a"] * 3


def test_the_gateways_own_failures_do_not_trip_the_backend(backends, portico):
    """Out of file descriptors (EMFILE) the gateway cannot open the backend
    connection: the client gets 502, but the backend did not fail, so a
    count=1 rule on connection failures does not trip."""
    import os
    import resource
    a = backends("a")
    cfg = config_for("a", [single(a, [rule(count=1, ranges=None, reasons=["BackendConnectionFailure"],
                                           trip="PT30S")])])
    p = portico(cfg)  # (no call yet: no pooled backend connection to reuse)
    pid = p.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5)
    c.connect()  # the client's connection is accepted with a descriptor to spare, no more
    time.sleep(0.2)
    try:
        # the lowest free descriptor number is the limit: the next socket() gets EMFILE
        used = set(int(x) for x in os.listdir("/proc/%d/fd" % pid))
        low = next(i for i in range(len(used) + 1) if i not in used)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (low, hard))
        c.request("GET", "/echo/fresh", headers={"Connection": "close"})
        status = c.getresponse().status
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        c.close()
    assert status == 502 and "Too many open files" in p.log_text()
    assert a.calls() == []
    assert who(p, n=2) == ["a", "a"]  # not tripped
    assert "circuit breaker tripped" not in p.log_text()


def test_successes_do_not_trip_and_ranges_choose_what_fails(backends, portico):
    """Only 429 is a failure here: 500s pass through untouched, 429s trip."""
    a = backends("a")
    p = portico(config_for("a", [single(a, [rule(count=2, ranges=[(429, 429)], trip="PT30S")])]))
    for _ in range(5):
        assert get(p, "/echo/status/500")[0] == 500
    assert get(p, "/echo/status/429")[0] == 429
    assert get(p, "/echo/x")[0] == 200
    assert get(p, "/echo/status/429")[0] == 429
    assert get(p, "/echo/x")[0] == 503
    assert len(a.calls()) == 8


def test_percentage_rule(backends, portico):
    """50 %: a first failure alone does not trip (10 calls at least are
    judged); then 5 successes and the 5th failure (5 of 10) trip."""
    a = backends("a")
    p = portico(config_for("a", [single(a, [rule(percentage=50, trip="PT30S")])]))
    a.fail_status = 500
    assert who(p) == [500]
    a.fail_status = None
    assert who(p, n=5) == ["a"] * 5
    a.fail_status = 500
    assert who(p, n=4) == [500] * 4  # 5 of 10: trips with this one
    assert who(p) == [503]
    assert len(a.calls()) == 10


def test_error_reasons_trip_on_connection_failures_and_timeouts(backends, portico):
    """errorReasons: a backend that refuses connections trips a
    BackendConnectionFailure rule; a slow one trips a Timeout rule."""
    dead_port = free_port()
    dead = {"id": "dead", "url": "http://127.0.0.1:%d" % dead_port,
            "circuitBreaker": {"rules": [rule(count=2, ranges=None, reasons=["BackendConnectionFailure"],
                                              trip="PT30S")]}}
    p = portico(config_for("dead", [dead]))
    assert [get(p, "/echo/x")[0] for _ in range(3)] == [502, 502, 503]
    e = p.access_entries(wait_for=3)
    assert [x.get("reason") for x in e] == ["BackendConnectionFailure"] * 2 + ["BackendUnavailable"]

    slow = backends("slow")
    slow.delay = 0.5
    cfg = config_for("slow", [single(slow, [rule(count=1, ranges=None, reasons=["Timeout"], trip="PT30S")])])
    cfg["apis"][0]["policies"] = {"backend": [{"forward-request": {"timeout-ms": 100}}]}
    p2 = portico(cfg)
    assert get(p2, "/echo/x")[0] in (500, 504)
    assert get(p2, "/echo/x")[0] == 503
    time.sleep(0.6)
    assert len(slow.calls()) == 1


def test_accept_retry_after_sets_the_trip_length(backends, portico):
    """tripDuration is a minute; with acceptRetryAfter the backend's
    Retry-After (1 s) is the trip's length; without it, the minute holds."""
    a, b = backends("a", "b")
    p = portico(config_for("a", [single(a, [rule(count=1, trip="PT1M", accept_retry_after=True)])]))
    a.fail_status, a.retry_after = 503, 1
    assert who(p) == [503]
    status, hdrs, _ = get(p, "/echo/x")
    assert status == 503 and hdrs["retry-after"] == "1"
    a.fail_status = None
    time.sleep(1.1)
    assert who(p) == ["a"]
    # not accepted: a minute
    p2 = portico(config_for("b", [single(b, [rule(count=1, trip="PT1M")])]))
    b.fail_status, b.retry_after = 503, 1
    assert who(p2) == [503]
    b.fail_status = None
    time.sleep(1.1)
    status, hdrs, _ = get(p2, "/echo/x")
    assert status == 503 and 55 <= int(hdrs["retry-after"]) <= 60
    # an HTTP date works too
    a.fail_status = 503
    a.retry_after = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 2))
    assert who(p) == [503]
    status, hdrs, _ = get(p, "/echo/x")
    assert status == 503 and 1 <= int(hdrs["retry-after"]) <= 3


def test_a_trip_survives_a_reload_that_keeps_the_backend(backends, portico):
    a, b = backends("a", "b")
    cfg = config_for("a", [single(a, [rule(count=1, trip="PT30S")]), single(b)])
    p = portico(cfg)
    a.fail_status = 500
    assert who(p) == [500]
    assert who(p) == [503]
    cfg["apis"][0]["description"] = "reloaded"
    assert p.reload(cfg)
    assert who(p) == [503]  # same id, same url: still open
    # another url under the same id: a new backend, closed
    cfg["backends"][0]["url"] = b.url
    assert p.reload(cfg)
    assert who(p) == ["b"]


# ------------------------------------------------------------ health checks

def test_health_checks_mark_a_member_down_and_up(backends, portico):
    a, b = backends("a", "b")
    hc = {"path": "/health", "interval": "100ms", "timeout": "100ms", "healthyThreshold": 2,
          "unhealthyThreshold": 2}
    p = portico(config_for("p", [single(a, health=hc), single(b), pool("p", [("a", 1, 0), ("b", 1, 1)])]))
    wait_for(lambda: a.health_hits >= 1, what="a first health check")
    assert who(p, n=4) == ["a"] * 4
    a.healthy = False
    wait_for(lambda: "backend a is down" in p.log_text(), what="a marked down")
    assert who(p, n=4) == ["b"] * 4
    a.healthy = True
    wait_for(lambda: "backend a is up again" in p.log_text(), what="a marked up")
    assert who(p, n=4) == ["a"] * 4
    # the checks ask for the path, with the backend's Host
    with a.lock:
        h = [r for r in a.requests if r["path"] == "/health"][-1]
    assert h["method"] == "GET" and h["headers"]["host"] == "127.0.0.1:%d" % a.port
    assert not [r for r in b.requests if r["path"] == "/health"]  # b has no healthCheck


def test_health_checks_against_hostile_backends(backends, portico):
    """A backend that accepts and never answers, and one that answers
    garbage, are both marked down; a single backend marked down answers 503."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    garbage = socket.socket()
    garbage.bind(("127.0.0.1", 0))
    garbage.listen(64)
    stop = threading.Event()

    def spew():
        garbage.settimeout(0.2)
        while not stop.is_set():
            try:
                s, _ = garbage.accept()
            except OSError:
                continue
            try:
                s.sendall(b"\x00\xffnot http at all" * 200)
            except OSError:
                pass
            s.close()
    threading.Thread(target=spew, daemon=True).start()
    hc = {"path": "/h", "interval": "100ms", "timeout": "100ms", "unhealthyThreshold": 1}
    try:
        p = portico(config_for("silent", [
            {"id": "silent", "url": "http://127.0.0.1:%d" % silent.getsockname()[1], "healthCheck": hc},
            {"id": "garbage", "url": "http://127.0.0.1:%d" % garbage.getsockname()[1], "healthCheck": hc}]))
        wait_for(lambda: "backend silent is down" in p.log_text() and "backend garbage is down" in p.log_text(),
                 what="both marked down")
        status, _, data = get(p, "/echo/x")
        assert status == 503 and "unavailable" in json.loads(data)["message"]
        assert "timed out" in p.log_text()
    finally:
        stop.set()
        silent.close()
        garbage.close()


def test_backend_metrics(backends, portico):
    a, b = backends("a", "b")
    mport = free_port()
    hc = {"path": "/health", "interval": "100ms", "timeout": "100ms", "unhealthyThreshold": 1}
    p = portico(config_for("a", [single(a, [rule(count=1, trip="PT30S")]), single(b, health=hc)],
                           metrics={"listen": "127.0.0.1:%d" % mport, "auth": "none"}))
    b.healthy = False
    a.fail_status = 500
    assert who(p) == [500]

    def scrape():
        c = http.client.HTTPConnection("127.0.0.1", mport, timeout=5)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
        return text
    text = wait_for(lambda: (lambda t: t if 'portico_backend_up{backend="b"} 0' in t else None)(scrape()),
                    what="b down in /metrics")
    assert 'portico_backend_up{backend="a"} 0' in text
    assert 'portico_backend_trips_total{backend="a"} 1' in text
    assert 'portico_backend_trips_total{backend="b"} 0' in text
    fails = [ln for ln in text.splitlines()
             if ln.startswith('portico_backend_health_check_failures_total{backend="b"} ')]
    assert len(fails) == 1 and float(fails[0].split()[-1]) >= 1
    assert 'portico_backend_health_check_failures_total{backend="a"} 0' in text


def test_health_checks_over_tls_verify_the_backend(workdir, portico):
    """An https backend is checked over TLS with its own settings: a
    certificate from the trusted CA passes; one from an untrusted CA fails
    the check (down), unless the backend turns chain validation off."""
    from tls_helpers import Pki, TLSEchoBackend
    pki = Pki(workdir)
    good = TLSEchoBackend(*pki.leaf("good", "localhost", ["DNS:localhost"]))
    bad = TLSEchoBackend(*pki.leaf("bad", "localhost", ["DNS:localhost"], issuer="other"))
    lax = TLSEchoBackend(*pki.leaf("lax", "localhost", ["DNS:localhost"], issuer="other"))
    try:
        hc = {"path": "/health", "interval": "200ms", "timeout": "200ms", "unhealthyThreshold": 1,
              "healthyThreshold": 1}
        cfg = config_for("good", [
            {"id": "good", "url": good.url, "healthCheck": hc},
            {"id": "bad", "url": bad.url, "healthCheck": hc},
            {"id": "lax", "url": lax.url, "healthCheck": hc,
             "tls": {"validateCertificateChain": False, "validateCertificateName": False}}],
            upstream={"caFile": pki.ca})
        p = portico(cfg)
        wait_for(lambda: "backend bad is down" in p.log_text(), what="bad marked down")
        wait_for(lambda: good.handshakes >= 2 and lax.handshakes >= 2, what="checks of good and lax")
        assert "backend good is down" not in p.log_text() and "backend lax is down" not in p.log_text()
        assert [r.target for r in good.requests][:1] == ["/health"]
        assert "localhost" in good.sni
        status, _, _ = get(p, "/echo/x")
        assert status == 200
    finally:
        good.close()
        bad.close()
        lax.close()


def test_retry_goes_to_another_member_and_meets_the_open_circuit_once(backends, portico):
    """retry around forward-request chooses a pool member per attempt: a's
    500 is retried on b.  Once everything is tripped, retries get 503s
    without calling anyone, and the client gets one Retry-After."""
    a, b = backends("a", "b")
    r = [rule(count=1, trip="PT20S")]
    cfg = config_for("p", [single(a, r), single(b, r), pool("p", [("a", 1, 0), ("b", 1, 0)])], workers=1)
    cfg["apis"][0]["policies"] = {"backend": [{"retry": {
        "condition": "@(context.response.statusCode >= 500)", "count": 3, "interval": 0,
        "policies": [{"forward-request": {}}]}}]}
    p = portico(cfg)
    a.fail_status = 500
    status, _, data = get(p, "/echo/x")
    assert (status, json.loads(data)["backend"]) == (200, "b")
    assert (len(a.calls()), len(b.calls())) == (1, 1)
    b.fail_status = 500
    status, _, _ = get(p, "/echo/x")  # b fails and trips; the retries find nobody
    assert status == 503
    assert (len(a.calls()), len(b.calls())) == (1, 2)
    status, hdrs, _ = get(p, "/echo/x")
    assert status == 503 and 18 <= int(hdrs["retry-after"]) <= 20
    assert (len(a.calls()), len(b.calls())) == (1, 2)


def test_a_reload_keeps_the_health_verdict_and_removing_the_check_clears_it(backends, portico):
    a = backends("a")
    hc = {"path": "/health", "interval": "100ms", "timeout": "100ms", "unhealthyThreshold": 1,
          "healthyThreshold": 50}
    cfg = config_for("a", [single(a, health=hc)])
    p = portico(cfg)
    a.healthy = False
    wait_for(lambda: "backend a is down" in p.log_text(), what="a marked down")
    assert get(p, "/echo/x")[0] == 503
    # healthy again, but 50 checks (5 s) must pass; a reload that keeps the id and url keeps the
    # verdict (a fresh state would start up)
    a.healthy = True
    hc["interval"] = "110ms"
    assert p.reload(cfg)
    assert get(p, "/echo/x")[0] == 503
    del cfg["backends"][0]["healthCheck"]
    assert p.reload(cfg)
    assert who(p) == ["a"]


def test_a_refused_reload_changes_no_live_state(backends, portico):
    """A trip in progress, then a reload with other rules (and without a
    health check) that is refused for a bad policy: the previous
    configuration keeps serving, with its trip: the backend is not called."""
    a = backends("a")
    cfg = config_for("a", [single(a, [rule(count=1, trip="PT30S")])])
    p = portico(cfg)
    a.fail_status = 500
    assert who(p) == [500]
    assert who(p) == [503]
    bad = json.loads(json.dumps(cfg))
    bad["backends"][0]["circuitBreaker"]["rules"][0]["tripDuration"] = "PT31S"
    bad["apis"][0]["policies"] = {"inbound": [{"no-such-policy": {}}]}
    assert not p.reload(bad)
    assert "reload refused" in p.log_text()
    status, hdrs, _ = get(p, "/echo/x")
    assert status == 503 and 25 <= int(hdrs["retry-after"]) <= 30
    assert len(a.calls()) == 1
    # and reverting to the live rules keeps it too
    assert p.reload(cfg)
    assert who(p) == [503] and len(a.calls()) == 1


def test_circuit_breaker_or_health_check_on_a_pool_is_refused(backends, portico, workdir):
    """A Pool's calls are its members': its own circuitBreaker or
    healthCheck would do nothing, so the configuration is refused with the
    place of the key."""
    import subprocess
    from conftest import to_yaml
    a = backends("a")
    for key, val in (("circuitBreaker", {"rules": [rule(count=1)]}), ("healthCheck", {"path": "/health"})):
        pl = pool("p", [("a", 1, 0)])
        pl[key] = val
        cfg = config_for("p", [single(a), pl])
        path = "%s/pool-%s.yaml" % (workdir, key)
        with open(path, "w") as f:
            f.write(to_yaml(cfg))
        r = subprocess.run([PORTICO_BIN(), "-t", "-c", path], capture_output=True, text=True, timeout=30)
        assert r.returncode != 0, key
        out = r.stdout + r.stderr
        assert ("pool-%s.yaml:" % key) in out and "a Pool's calls carry its members' " + key in out, out


def PORTICO_BIN():
    import os
    return os.environ["PORTICO_BIN"]


def test_backend_metrics_one_series_per_backend_across_reloads(backends, portico):
    a, b = backends("a", "b")
    mport = free_port()
    cfg = config_for("a", [single(a, [rule(count=1, trip="PT30S")])],
                     metrics={"listen": "127.0.0.1:%d" % mport, "auth": "none"})
    p = portico(cfg)
    a.fail_status = 500
    assert who(p) == [500]
    cfg["backends"][0]["url"] = b.url  # a new backend under the same id: closed, no trips
    assert p.reload(cfg)
    c = http.client.HTTPConnection("127.0.0.1", mport, timeout=5)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    assert text.count('portico_backend_up{backend="a"}') == 1
    assert 'portico_backend_up{backend="a"} 1' in text
    assert 'portico_backend_trips_total{backend="a"} 0' in text


def test_on_error_sees_backend_unavailable(backends, portico):
    """The open circuit is an error like any forward-request error:
    on-error runs with lastError.reason BackendUnavailable; its own
    answer (not a 503) gets no Retry-After."""
    a = backends("a")
    cfg = config_for("a", [single(a, [rule(count=1, trip="PT30S")])])
    cfg["apis"][0]["policies"] = {"on-error": [{"return-response": {
        "set-status": {"code": 599},
        "set-body": "@(context.lastError.reason .. '|' .. context.lastError.source .. '|' .. "
                    "context.lastError.message)"}}]}
    p = portico(cfg)
    a.fail_status = 500
    assert get(p, "/echo/x")[0] == 500  # a backend's 500 is not an error
    status, hdrs, data = get(p, "/echo/x")
    assert status == 599 and "retry-after" not in hdrs
    reason, source, message = data.decode().split("|", 2)
    assert (reason, source) == ("BackendUnavailable", "forward-request")
    assert "circuit breaker open" in message and "Try again in 30 seconds" in message
    assert len(a.calls()) == 1


def test_backends_made_through_the_management_api(backends, portico):
    """A pool and its members PUT through the management API: the pool
    serves, a member trips, and a later write of another entity (a new
    generation) keeps the trip; a write changing the member's rules ends it."""
    from mgmt_helpers import TOKEN, Mgmt, mgmt_config
    a, b = backends("a", "b")
    p = portico(mgmt_config(a.url, workers=1), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    r = {"rules": [rule(count=1, trip="PT30S")]}
    m.ok("PUT", "backends/a", {"url": a.url, "circuitBreaker": r})
    m.ok("PUT", "backends/b", {"url": b.url, "circuitBreaker": r})
    m.ok("PUT", "backends/p", {"type": "Pool", "pool": {"services": [{"id": "a", "priority": 0},
                                                                       {"id": "b", "priority": 1}]}})
    m.ok("PUT", "apis/pooled", {"path": "pooled", "backendId": "p", "subscriptionRequired": False})
    m.ok("PUT", "apis/pooled/operations/any", {"method": "*", "urlTemplate": "/*"})
    assert who(p, "/pooled/x", n=2) == ["a", "a"]
    a.fail_status = 500
    assert who(p, "/pooled/x", n=3) == [500, "b", "b"]
    m.ok("PUT", "backends/other", {"url": b.url})  # a new generation: a stays tripped
    assert who(p, "/pooled/x", n=2) == ["b", "b"]
    a.fail_status = None
    r2 = {"rules": [rule(count=2, trip="PT30S")]}
    m.ok("PUT", "backends/a", {"url": a.url, "circuitBreaker": r2})  # other rules: counts start over
    assert who(p, "/pooled/x", n=2) == ["a", "a"]
