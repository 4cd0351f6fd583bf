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
        self.srv.shutdown()
        self.srv.server_close()


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


def with_forward(url, fwd):
    cfg = basic_config(url)
    cfg["apis"][0]["policies"] = {"backend": [{"forward-request": fwd}]}
    return cfg


# ------------------------------------------------------- follow-redirects

def q(s):
    return urllib.parse.quote(s, safe="")


def test_follow_redirects_true_fetches_the_location(backends, portico):
    """A 302 to a path on the same backend and a 301 to an absolute URL on
    a second backend (a literal address) are followed; the client gets the
    final 200 and never sees a redirect."""
    a, b = backends("a", "b")
    p = portico(with_forward(a.url, {"follow-redirects": True}))
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
    a, b = backends("a", "b")
    p = portico(with_forward(a.url, {"follow-redirects": True}))
    status, _, _ = get(p, "/echo/redirect/302/" + q(b.url + "/x"),
                       headers={"Authorization": "Bearer secret", "Cookie": "s=1", "X-Keep": "1"})
    assert status == 200
    h = b.calls()[0]["headers"]
    assert "authorization" not in h and "cookie" not in h and h["x-keep"] == "1"


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


def test_redirect_to_a_name_or_a_downgrade_is_not_followed(backends, portico):
    a = backends("a")
    p = portico(with_forward(a.url, {"follow-redirects": True}))
    for loc in ("http://example.invalid/x", "ftp://127.0.0.1/x", "/bad path"):
        status, hdrs, _ = get(p, "/echo/redirect/302/" + q(loc))
        assert status == 302, loc
    assert len(a.calls()) == 3
    assert "not followed" in p.log_text()


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
