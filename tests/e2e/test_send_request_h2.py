"""send-request and send-one-way-request over HTTP/2 (http-version 2 and 2or1).

The gateway is the real binary; the side services are real servers the tests
start on loopback: H2Backend (python3-h2, h2c with prior knowledge or TLS with
ALPN h2), TLSEchoBackend and EchoBackend (HTTP/1.1 only).  Each test checks
what the client got (the side call's response returned through a policy) and
what the side service received.
"""

import json
import urllib.request

import pytest

from backends import EchoBackend
from conftest import basic_config, free_port, wait_for
from test_http2_upstream import h2backends, pki  # noqa: F401 (fixtures)
from test_send_request import answer_with, reason_reply
from tls_helpers import TLSEchoBackend


def send(version="2", var="r", url="@(context.request.headers:get('X-Url', ''))", **kw):
    attrs = {"response-variable-name": var, "set-url": url, "timeout": 5, "http-version": version}
    attrs.update(kw)
    return {"send-request": attrs}


def gateway(portico, backend, policies, upstream=None, **extra):
    cfg = basic_config(backend.url, workers=1, **extra)
    cfg["apis"][0]["operations"].insert(0, {"id": "side", "method": "*", "urlTemplate": "/side",
                                            "policies": policies})
    if upstream is not None:
        cfg["upstream"] = upstream
    return portico(cfg)


def call(p, url, method="GET", body=None, headers=None):
    h = {"X-Url": url}
    h.update(headers or {})
    return p.request(method, "/echo/side", body=body, headers=h)


def metric(p, port, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


# ------------------------------------------------------------------ the basics


def test_get_and_post_over_h2c(portico, backend, h2backends):
    b = h2backends()
    mport = free_port()
    p = gateway(portico, backend, {"inbound": [
        send(**{"set-method": "@(context.request.method)",
                "set-header": [{"name": "X-One", "value": "a"}, {"name": "X-Two", "value": ["b", "c"]},
                               {"name": "Connection", "value": "keep-alive"}],
                "set-body": "@(context.request.headers:get('X-Body', ''))"}),
        answer_with()], "on-error": [reason_reply()]},
        metrics={"listen": "127.0.0.1:%d" % mport, "auth": "none"})
    status, headers, body = call(p, b.url + "/get/it?q=1")
    assert status == 200, body
    assert headers["x-side-type"] == "application/json"
    seen = json.loads(body)
    assert (seen["method"], seen["path"], seen["scheme"]) == ("GET", "/get/it?q=1", "http")
    assert seen["authority"] == "127.0.0.1:%d" % b.port
    h = dict(seen["headers"])
    assert h["x-one"] == "a" and h["x-two"] == "b, c" and "connection" not in h and "host" not in h
    assert h["user-agent"].startswith("portico/")
    assert seen["body_len"] == 0
    status, _, body = call(p, b.url + "/post", method="POST", headers={"X-Body": "hello over h2"})
    assert status == 200, body
    seen = json.loads(body)
    assert seen["method"] == "POST" and seen["text"] == "hello over h2"
    assert dict(seen["headers"])["content-length"] == str(len("hello over h2"))
    # the backend speaks only HTTP/2: it recorded both, as HTTP/2 streams
    assert [r["method"] for r in b.requests] == ["GET", "POST"]
    assert not backend.requests
    assert metric(p, mport, "portico_send_request_http2_streams_total") == 2
    assert metric(p, mport, "portico_send_request_http2_connections_total") >= 1


def test_tls_alpn_h2_with_2_and_2or1(portico, backend, h2backends, pki):
    b = h2backends(tls=pki.server)
    p = gateway(portico, backend, {"inbound": [
        {"choose": [{"when": "@(context.request.headers:get('X-V', '') == '2or1')", "then": [send("2or1")]},
                    {"otherwise": [send("2")]}]},
        answer_with()], "on-error": [reason_reply()]}, upstream={"caFile": pki.ca})
    for v in ("2", "2or1"):
        status, _, body = call(p, b.url + "/tls/" + v, headers={"X-V": v})
        assert status == 200, body
        seen = json.loads(body)
        assert seen["scheme"] == "https" and seen["path"] == "/tls/" + v
    assert [r["path"] for r in b.requests] == ["/tls/2", "/tls/2or1"]


def test_2or1_to_an_http11_tls_service_uses_http11_and_2_fails(portico, backend, pki):
    tls = TLSEchoBackend(*pki.server)
    try:
        p = gateway(portico, backend, {"inbound": [
            {"choose": [{"when": "@(context.request.headers:get('X-V', '') == '2or1')", "then": [send("2or1")]},
                        {"otherwise": [send("2", **{"ignore-error": True})]}]},
            {"choose": [{"when": "@(context.variables['r'] == nil)",
                         "then": [{"return-response": {"set-status": {"code": 204}}}]}]},
            answer_with()], "on-error": [reason_reply()]}, upstream={"caFile": pki.ca})
        status, _, body = call(p, tls.url + "/one", headers={"X-V": "2or1"})
        assert status == 200, body
        assert json.loads(body)["target"] == "/one"
        n = len(tls.requests)
        status, _, body = call(p, tls.url + "/two", headers={"X-V": "2"})
        assert status == 204, body  # ignore-error: the variable is nil
        assert len(tls.requests) == n  # nothing was sent over HTTP/1.1
    finally:
        tls.close()


def test_2_to_an_http11_only_service_is_a_connection_failure(portico, backend):
    side = EchoBackend()
    try:
        p = gateway(portico, backend, {"inbound": [send("2"), answer_with()], "on-error": [reason_reply()]})
        status, _, body = call(p, side.url + "/x")
        assert status == 599 and body.startswith(b"BackendConnectionFailure|"), body
        # 2or1 to http:// is HTTP/1.1 (no ALPN to ask)
        p2 = gateway(portico, backend, {"inbound": [send("2or1"), answer_with()],
                                        "on-error": [reason_reply()]})
        status, _, body = call(p2, side.url + "/y")
        assert status == 200, body
        assert json.loads(body)["target"] == "/y" and side.last().version == "HTTP/1.1"
    finally:
        side.close()


def test_one_way_request_over_h2c(portico, backend, h2backends):
    b = h2backends()
    p = gateway(portico, backend, {"inbound": [
        {"send-one-way-request": {"set-url": b.url + "/oneway", "set-method": "POST", "set-body": "fire",
                                  "http-version": "2", "timeout": 5}},
        {"return-response": {"set-status": {"code": 202}}}]})
    assert p.request("GET", "/echo/side")[0] == 202
    wait_for(lambda: len(b.requests) == 1, timeout=5, what="the one-way call over HTTP/2")
    assert b.requests[0]["path"] == "/oneway" and b.requests[0]["body"] == b"fire"


# ------------------------------------------------------------------ failures


def test_timeout_reset_and_too_large(portico, backend, h2backends):
    b = h2backends()
    p = gateway(portico, backend, {"inbound": [send(timeout=1), answer_with()], "on-error": [reason_reply()]},
                limits={"bufferSize": "64k"})
    status, _, body = call(p, b.url + "/silent")
    assert status == 599 and body.startswith(b"Timeout|"), body
    status, _, body = call(p, b.url + "/rst")
    assert status == 599 and body.startswith(b"BackendConnectionFailure|"), body
    # larger than limits.bufferSize: as over HTTP/1.1
    status, _, body = call(p, b.url + "/big?bytes=300000")
    assert status == 599 and body.startswith(b"BackendConnectionFailure|"), body
    # under the cap: whole
    status, _, body = call(p, b.url + "/big?bytes=60000")
    assert status == 200 and len(body) == 60000, (status, body[:80])
    # the reset stream and the silent one reached the backend as HTTP/2 requests; each call above went out
    assert b.connections >= 1 and [r["path"] for r in b.requests][-1] == "/big?bytes=60000"


def test_hostile_services_are_bounded_and_the_worker_goes_on(portico, backend, h2backends):
    big = h2backends()
    garbage = h2backends(hostile="garbage")
    flood = h2backends(hostile="settings-flood")
    p = gateway(portico, backend, {"inbound": [send(timeout=3), answer_with()], "on-error": [reason_reply()]})
    # an endless header list (200 fields of 1000 bytes): cut at 64 KiB, the call fails
    status, _, body = call(p, big.url + "/big-headers")
    assert status == 599 and body.startswith(b"BackendConnectionFailure|"), body
    for b in (garbage, flood):
        status, _, body = call(p, b.url + "/x")
        assert status == 599 and (body.startswith(b"BackendConnectionFailure|") or body.startswith(b"Timeout|")), \
            body
    # the worker serves on, and a good call on the same service works
    assert p.request("GET", "/echo/items/1")[0] == 200
    status, _, body = call(p, big.url + "/fine")
    assert status == 200 and json.loads(body)["path"] == "/fine"


# ------------------------------------------------------------------ reuse


def test_calls_reuse_one_connection(portico, backend, h2backends):
    b = h2backends()
    p = gateway(portico, backend, {"inbound": [
        send(**{"set-method": "@(context.request.method)",
                "set-body": "@(context.request.headers:get('X-Body', ''))"}),
        answer_with()], "on-error": [reason_reply()]})
    for i, m in enumerate(["GET", "POST", "GET", "DELETE"]):
        status, _, body = call(p, b.url + "/n/%d" % i, method=m, headers={"X-Body": "b%d" % i if m == "POST" else ""})
        assert status == 200, body
        assert json.loads(body)["method"] == m
    assert len(b.requests) == 4
    assert b.connections == 1, b.connections


def test_a_refused_stream_on_a_reused_session_goes_again_on_a_fresh_one(portico, backend, h2backends):
    # the second call's stream is refused by a GOAWAY (last-stream-id 0): not processed, so it is sent
    # again, on a new connection, even as a POST
    b = h2backends()
    p = gateway(portico, backend, {"inbound": [send(**{"set-method": "POST", "set-body": "x"}), answer_with()],
                                   "on-error": [reason_reply()]})
    assert call(p, b.url + "/first")[0] == 200
    status, _, body = call(p, b.url + "/goaway")
    assert status == 200, body
    assert json.loads(body)["path"] == "/goaway"
    assert b.goaway_sent and b.connections == 2, (b.goaway_sent, b.connections)
    assert [r["path"] for r in b.requests] == ["/first", "/goaway"]


def test_wait_with_three_side_calls(portico, backend, h2backends):
    b = h2backends()
    lanes = [send(var=v, url=b.url + "/lane/" + v) for v in ("a", "b", "c")]
    p = gateway(portico, backend, {"inbound": [
        {"wait": {"for": "all", "policies": lanes}},
        {"return-response": {
            "set-header": [{"name": "Content-Type", "value": "application/json"}],
            "set-body": {"value": "@(json.encode({"
                                  "a = context.variables.a.body:asJson().path, "
                                  "b = context.variables.b.body:asJson().path, "
                                  "c = context.variables.c.body:asJson().path}))"}}}],
        "on-error": [reason_reply()]})
    for _ in range(2):
        status, _, body = p.request("GET", "/echo/side")
        assert status == 200, body
        assert json.loads(body) == {"a": "/lane/a", "b": "/lane/b", "c": "/lane/c"}
    assert len(b.requests) == 6
    assert b.connections <= 3, b.connections  # the second round reuses the first round's sessions


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize("policy", [
    {"send-request": {"response-variable-name": "r", "set-url": "http://127.0.0.1/", "http-version": "3"}},
    {"send-one-way-request": {"set-url": "http://127.0.0.1/", "http-version": "1.1"}},
])
def test_a_bad_http_version_is_refused_with_a_position(portico, backend, policy):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["operations"][0]["policies"] = {"inbound": [policy]}
    code, out = portico(cfg, start=False).check()
    assert code != 0 and "http-version" in out, out
    assert "portico.yaml:" in out, out


def test_large_upload_follows_the_servers_window(portico, backend, h2backends):
    # 300 kB against the backend's 64 KiB windows: sent as its WINDOW_UPDATEs allow
    import hashlib
    b = h2backends(window=65535)
    p = gateway(portico, backend, {"inbound": [send(mode="copy", timeout=15), answer_with()],
                                   "on-error": [reason_reply()]})
    body = bytes(range(256)) * 1200
    status, _, got = call(p, b.url + "/upload", method="POST", body=body,
                          headers={"Content-Type": "application/octet-stream"})
    assert status == 200, got
    seen = json.loads(got)
    assert seen["method"] == "POST" and seen["body_len"] == len(body)
    assert seen["sha256"] == hashlib.sha256(body).hexdigest()


def test_through_a_proxy_it_is_http11(portico, backend):
    from test_send_request import Proxy
    proxy = Proxy("user:secret")
    side = EchoBackend()
    try:
        p = gateway(portico, backend, {"inbound": [
            send(proxy={"url": proxy.url, "username": "user", "password": "secret"}), answer_with()],
            "on-error": [reason_reply()]})
        status, _, body = call(p, side.url + "/via")
        assert status == 200, body
        assert proxy.seen[-1][0:2] == ("GET", side.url + "/via")
        assert side.last().target == "/via" and side.last().version == "HTTP/1.1"
    finally:
        proxy.close()
        side.close()


class ContinuationFlood:
    """An HTTP/2 server on loopback that answers the first stream with a header block that never ends:
    HEADERS without END_HEADERS, then CONTINUATION frames of 1000-byte fields until the peer goes (or a
    bound of frames is reached)."""

    MAX_FRAMES = 50000  # 50 MB of header block at most

    def __init__(self):
        import socket
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.sent = 0
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @staticmethod
    def frame(ftype, flags, sid, payload):
        import struct
        return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload

    def _serve(self):
        try:
            c, _ = self.sock.accept()
        except OSError:
            return
        try:
            c.settimeout(5)
            c.recv(65536)  # the preface, SETTINGS, the request's HEADERS
            field = b"\x00\x03x-a\x7f\xe9\x06" + b"v" * 1000  # a literal field, 1000-byte value
            c.sendall(self.frame(4, 0, 0, b"") + self.frame(1, 0, 1, b"\x88" + field))
            while not self.stop and self.sent < self.MAX_FRAMES:
                c.sendall(self.frame(9, 0, 1, field))
                self.sent += 1
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.sock.close()
        self.thread.join(10)


def test_an_endless_header_block_is_bounded(portico, backend):
    from test_http2 import sanitized
    flood = ContinuationFlood()
    try:
        p = gateway(portico, backend, {"inbound": [send(timeout=3), answer_with()], "on-error": [reason_reply()]})
        rss0 = p.rss_kb("VmRSS")
        status, _, body = call(p, flood.url + "/x")
        assert status == 599 and (body.startswith(b"BackendConnectionFailure|") or body.startswith(b"Timeout|")), \
            body
        assert flood.sent > 64  # more than the 64 KiB the call keeps was sent (or offered)
        if not sanitized():
            assert p.rss_kb("VmRSS") - rss0 < 32 * 1024, "the header block was not kept"
        assert p.request("GET", "/echo/items/1")[0] == 200
    finally:
        flood.close()
