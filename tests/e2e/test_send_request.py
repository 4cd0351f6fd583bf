"""send-request and send-one-way-request against real side services.

The gateway is the real binary; the side services are real HTTP servers the
tests start on loopback (EchoBackend, TLSEchoBackend, and the small servers
below: a service that holds connections open and notes when they close, and
an HTTP proxy with Basic credentials that tunnels CONNECT).  Each test checks
what the client got and what the side service (or proxy) saw.
"""

import base64
import json
import socket
import socketserver
import threading
import time
import urllib.request

import pytest

from conftest import basic_config, free_port, wait_for
from backends import EchoBackend


# ------------------------------------------------------------------ helpers


def gateway(portico, backend, policies, workers=1, **extra):
    cfg = basic_config(backend.url, workers=workers, **extra)
    cfg["apis"][0]["operations"].insert(0, {"id": "side", "method": "*", "urlTemplate": "/side",
                                            "policies": policies})
    return portico(cfg)


def answer_with(var="r"):
    """return-response with the side call's status, a header and its body (as text)."""
    return {"return-response": {
        "set-status": {"code": "@(context.variables['%s'].statusCode)" % var},
        "set-header": [{"name": "X-Side-Type",
                        "value": "@(context.variables['%s'].headers:get('Content-Type', ''))" % var}],
        "set-body": "@(context.variables['%s'].body:asString())" % var}}


def reason_reply():
    """on-error answering with the reason and message of context.lastError."""
    return {"return-response": {"set-status": {"code": 599},
                                "set-body": "@(context.lastError.reason .. '|' .. context.lastError.message)"}}


def refused_port():
    """A loopback port nobody listens on."""
    return free_port()


class HoldServer:
    """Accepts connections, reads what comes, never answers; notes when a peer closes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.accepted = 0
        self.closed = 0
        self.data = []
        self.conns = []
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.conns.append(c)
            threading.Thread(target=self._read, args=(c,), daemon=True).start()

    def _read(self, c):
        buf = b""
        while True:
            try:
                d = c.recv(65536)
            except OSError:
                d = b""
            if not d:
                with self.lock:
                    self.closed += 1
                    self.data.append(buf)
                return
            buf += d

    def close(self):
        self.stop = True
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


class _ProxyHandler(socketserver.StreamRequestHandler):
    def handle(self):
        owner = self.server.owner
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = self.rfile.readline(65536)
            if not line:
                return
            head += line
        lines = head.decode("latin1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for ln in lines[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        with owner.lock:
            owner.seen.append((method, target, headers.get("proxy-authorization")))
        want = "Basic " + base64.b64encode(owner.creds.encode()).decode()
        if headers.get("proxy-authorization") != want:
            self.wfile.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Proxy-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            up = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            self._relay(self.connection, up)
            return
        # absolute form: to origin form towards the target
        rest = target.split("://", 1)[1]
        hostport, _, path = rest.partition("/")
        port = int(hostport.rsplit(":", 1)[1]) if ":" in hostport else 80
        up = socket.create_connection(("127.0.0.1", port), timeout=10)
        n = int(headers.get("content-length", "0"))
        body = self.rfile.read(n) if n else b""
        kept = [ln for ln in lines[1:] if ln and not ln.lower().startswith("proxy-authorization:")]
        up.sendall(("%s /%s HTTP/1.1\r\n" % (method, path) + "\r\n".join(kept) + "\r\n\r\n").encode("latin1")
                   + body)
        self._relay(self.connection, up)

    def _relay(self, a, b):
        def pump(src, dst):
            try:
                while True:
                    d = src.recv(65536)
                    if not d:
                        break
                    dst.sendall(d)
            except OSError:
                pass
            for s in (dst,):
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        t = threading.Thread(target=pump, args=(b, a), daemon=True)
        t.start()
        pump(a, b)
        t.join(10)
        b.close()


class Proxy:
    def __init__(self, creds="user:secret"):
        self.creds = creds
        self.lock = threading.Lock()
        self.seen = []
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _ProxyHandler)
        self.server.daemon_threads = True
        self.server.owner = self
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def side():
    b = EchoBackend()
    yield b
    b.close()


@pytest.fixture
def pki(workdir):
    from tls_helpers import Pki
    return Pki(workdir)


# ------------------------------------------------------------------ tests


def test_new_request_is_sent_as_written_and_kept_in_a_variable(portico, backend, side):
    p = gateway(portico, backend, {"inbound": [
        {"send-request": {"mode": "new", "response-variable-name": "r", "timeout": 5,
                          "set-url": side.url + "/status/201?q=1&x=%20",
                          "set-method": "PUT",
                          "set-header": [{"name": "X-One", "value": "a"},
                                         {"name": "X-Two", "value": ["b", "c"]},
                                         {"name": "X-From", "value": "@(context.request.headers:get('X-In', '?'))"},
                                         {"name": "X-Gone", "value": "z"},
                                         {"name": "X-Gone", "exists-action": "delete"}],
                          "set-body": "@('body of ' .. context.request.method)",
                          "authentication-basic": {"username": "ann", "password": "pw:1"}}},
        answer_with("r")]})
    status, headers, body = p.request("GET", "/echo/side", headers={"X-In": "from-client"})
    assert status == 201, body
    assert headers["x-side-type"] == "application/json"
    seen = json.loads(body)
    assert seen["method"] == "PUT" and seen["target"] == "/status/201?q=1&x=%20"
    h = {k.lower(): v for k, v in seen["headers"]}
    assert h["x-one"] == "a" and h["x-two"] == "b, c" and h["x-from"] == "from-client"
    assert "x-gone" not in h and "x-in" not in h  # a new request carries nothing of the client's
    assert h["host"] == "127.0.0.1:%d" % side.port
    assert h["authorization"] == "Basic " + base64.b64encode(b"ann:pw:1").decode()
    assert base64.b64decode(seen["body"]) == b"body of GET"
    assert h["content-length"] == str(len(b"body of GET"))
    assert len(side.requests) == 1 and not backend.requests  # the backend is never called
    entry = p.access_entries(wait_for=1)[-1]
    assert entry["status"] == 201


def test_return_response_answers_with_the_variable(portico, backend, side):
    p = gateway(portico, backend, {"inbound": [
        {"send-request": {"response-variable-name": "resp", "set-url": side.url + "/status/202"}},
        {"return-response": {"response-variable-name": "resp",
                             "set-header": [{"name": "X-Added", "value": "yes"}]}}]})
    status, headers, body = p.request("GET", "/echo/side")
    assert status == 202 and headers["x-added"] == "yes", (status, headers)
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["target"] == "/status/202"


def test_outbound_send_request_sees_the_backend_response_and_copy_keeps_the_body_out(portico, backend, side):
    p = gateway(portico, backend, {
        "backend": ["base"],
        "outbound": [{"send-request": {"mode": "copy", "response-variable-name": "r",
                                       "set-url": side.url + "/copied"}},
                     {"set-header": {"name": "X-Side", "value": "@(tostring(context.variables['r'].statusCode))"}}]})
    status, headers, body = p.request("POST", "/echo/side", body=b"client body", headers={"X-Copy": "c1"})
    assert status == 200 and headers["x-side"] == "200"
    assert json.loads(body)["target"] == "/base/side"  # the backend's answer goes on to the client
    seen = side.requests[-1]
    assert seen.method == "POST" and seen.header("X-Copy") == "c1"
    assert seen.body == b""  # APIM: a copy made in outbound carries no body
    assert seen.header("Host") == "127.0.0.1:%d" % side.port


def test_copy_mode_in_inbound_copies_method_headers_and_body(portico, backend, side):
    p = gateway(portico, backend, {"inbound": [
        {"send-request": {"mode": "copy", "response-variable-name": "r", "set-url": side.url + "/copy",
                          "set-header": {"name": "X-Copy", "exists-action": "append", "value": "added"}}},
        answer_with()]})
    status, _, body = p.request("POST", "/echo/side?k=v", body=b'{"a": 1}',
                                headers={"X-Copy": "c1", "Content-Type": "application/json"})
    assert status == 200, body
    seen = side.requests[-1]
    assert seen.method == "POST" and seen.target == "/copy" and seen.body == b'{"a": 1}'
    assert seen.header("X-Copy") == "c1, added" and seen.header("Content-Type") == "application/json"
    assert not backend.requests


def test_copy_mode_without_set_url_goes_to_the_backend_url(portico, backend):
    p = gateway(portico, backend, {"inbound": [
        {"send-request": {"mode": "copy", "response-variable-name": "r"}}, answer_with()]})
    status, _, body = p.request("GET", "/echo/side?k=v")
    assert status == 200, body
    assert json.loads(body)["target"] == "/base/side?k=v"
    assert len(backend.requests) == 1  # the side call only


def test_timeout_runs_on_error_with_reason_timeout(portico, backend, side):
    p = gateway(portico, backend, {
        "inbound": [{"send-request": {"response-variable-name": "r", "timeout": 1,
                                      "set-url": side.url + "/sleep/3000"}}, answer_with()],
        "on-error": [reason_reply()]})
    t0 = time.monotonic()
    status, _, body = p.request("GET", "/echo/side")
    took = time.monotonic() - t0
    assert status == 599 and body.decode().startswith("Timeout|"), body
    assert 0.9 < took < 2.5, took
    assert p.access_entries(wait_for=1)[-1]["reason"] == "Timeout"


def test_timeout_without_on_error_is_a_500(portico, backend, side):
    p = gateway(portico, backend, {"inbound": [
        {"send-request": {"response-variable-name": "r", "timeout": 1, "set-url": side.url + "/sleep/3000"}},
        answer_with()]})
    status, _, body = p.request("GET", "/echo/side")
    assert status == 500 and json.loads(body)["statusCode"] == 500


def test_connection_refused_is_backend_connection_failure(portico, backend):
    p = gateway(portico, backend, {
        "inbound": [{"send-request": {"response-variable-name": "r",
                                      "set-url": "http://127.0.0.1:%d/x" % refused_port()}}, answer_with()],
        "on-error": [reason_reply()]})
    status, _, body = p.request("GET", "/echo/side")
    assert status == 599 and body.decode().startswith("BackendConnectionFailure|"), body


def test_ignore_error_sets_the_variable_to_nil(portico, backend, side):
    p = gateway(portico, backend, {"inbound": [
        {"set-variable": {"name": "r", "value": "before"}},
        {"send-request": {"response-variable-name": "r", "ignore-error": True, "timeout": 1,
                          "set-url": "http://127.0.0.1:%d/x" % refused_port()}},
        {"send-request": {"response-variable-name": "slow", "ignore-error": True, "timeout": 1,
                          "set-url": side.url + "/sleep/3000"}},
        {"return-response": {"set-body": "@(tostring(context.variables['r'] == nil) .. ',' .. "
                                         "tostring(context.variables['slow'] == nil))"}}]})
    status, _, body = p.request("GET", "/echo/side")
    assert (status, body) == (200, b"true,true")


def test_hostile_side_services_fail_cleanly(portico, backend, side):
    # too large for limits.bufferSize, cut mid-body, garbage instead of a head, silence then close
    p = gateway(portico, backend, {
        "inbound": [{"send-request": {"response-variable-name": "r", "timeout": 5,
                                      "set-url": "@(context.request.headers:get('X-Url', ''))"}},
                    {"return-response": {"set-body": "@(context.variables['r'].body:asString())"}}],
        "on-error": [reason_reply()]}, limits={"bufferSize": "64k"})
    cases = [side.url + "/big?bytes=200000", side.url + "/close-mid", side.url + "/close-before",
             side.url + "/until-close?bytes=1000"]
    got = []
    for url in cases:
        status, _, body = p.request("GET", "/echo/side", headers={"X-Url": url})
        got.append((status, body.decode()[:40]))
    assert got[0][0] == 599 and got[0][1].startswith("BackendConnectionFailure|"), got
    assert got[1][0] == 599 and got[1][1].startswith("BackendConnectionFailure|"), got
    assert got[2][0] == 599 and got[2][1].startswith("BackendConnectionFailure|"), got
    assert got[3] == (200, "y" * 40), got  # a body ended by the close is whole
    # raw garbage and an endless 1xx flood
    garbage = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello".encode().hex()
    status, _, body = p.request("GET", "/echo/side?", headers={"X-Url": side.url + "/raw",
                                                              "X-Raw-Response": garbage})
    assert status == 599 and body.startswith(b"BackendConnectionFailure|"), body
    # not a URL at all (from an expression): refused, the worker goes on
    status, _, body = p.request("GET", "/echo/side", headers={"X-Url": "ftp://x/"})
    assert status == 599 and body.startswith(b"BackendConnectionFailure|"), body
    assert p.request("GET", "/echo/items/1")[0] == 200


def test_side_call_sees_x_raw_headers_forwarded(portico, backend, side):
    # the client's headers only travel with mode copy: X-Raw-Response must reach /raw there
    p = gateway(portico, backend, {"inbound": [
        {"send-request": {"mode": "copy", "response-variable-name": "r", "set-url": side.url + "/raw"}},
        {"return-response": {"response-variable-name": "r"}}]})
    raw = b"HTTP/1.1 203 Fine\r\nX-Odd: 1\r\nContent-Length: 2\r\n\r\nok"
    status, headers, body = p.request("GET", "/echo/side", headers={"X-Raw-Response": raw.hex()})
    assert (status, headers.get("x-odd"), body) == (203, "1", b"ok")


def test_names_are_resolved_without_blocking_and_https_uses_the_test_ca(portico, backend, pki):
    from tls_helpers import TLSEchoBackend
    cert = pki.leaf("side", "localhost", ["DNS:localhost"])
    tls = TLSEchoBackend(*cert)
    try:
        p = gateway(portico, backend, {
            "inbound": [{"send-request": {"response-variable-name": "r", "timeout": 5,
                                          "set-url": "@(context.request.headers:get('X-Url', ''))"}},
                        answer_with()],
            "on-error": [reason_reply()]}, upstream={"caFile": pki.ca})
        status, _, body = p.request("GET", "/echo/side", headers={"X-Url": tls.url + "/tls?a=b"})
        assert status == 200, body
        assert json.loads(body)["target"] == "/tls?a=b"
        assert tls.sni[-1] == "localhost"
        # the wrong name: the certificate is for localhost, not 127.0.0.1
        status, _, body = p.request("GET", "/echo/side",
                                    headers={"X-Url": "https://127.0.0.1:%d/x" % tls.port})
        assert status == 599 and b"BackendConnectionFailure|" in body, body
        # an unknown name: resolved by the worker's own resolver, refused, and the worker goes on
        status, _, body = p.request("GET", "/echo/side", headers={"X-Url": "http://no-such-host.invalid/x"})
        assert status == 599 and body.startswith(b"BackendConnectionFailure|"), body
    finally:
        tls.close()


def test_https_with_an_untrusted_certificate_is_refused(portico, backend, pki):
    from tls_helpers import TLSEchoBackend
    cert = pki.leaf("side-other", "localhost", ["DNS:localhost"], issuer="other")
    tls = TLSEchoBackend(*cert)
    try:
        p = gateway(portico, backend, {
            "inbound": [{"send-request": {"response-variable-name": "r", "set-url": tls.url + "/x"}},
                        answer_with()],
            "on-error": [reason_reply()]}, upstream={"caFile": pki.ca})
        status, _, body = p.request("GET", "/echo/side")
        assert status == 599 and b"BackendConnectionFailure|" in body, body
        assert tls.handshakes == 0
    finally:
        tls.close()


def test_client_certificate_is_presented(portico, backend, pki):
    from tls_helpers import TLSEchoBackend
    cert = pki.leaf("side-mtls", "localhost", ["DNS:localhost"])
    client = pki.leaf("sr-client", "send-request-client", [], eku="clientAuth")
    tls = TLSEchoBackend(*cert, client_ca=pki.ca)
    try:
        p = gateway(portico, backend, {"inbound": [
            {"send-request": {"response-variable-name": "r", "set-url": tls.url + "/m",
                              "authentication-certificate": {"certificate": client[0], "key": client[1]}}},
            answer_with()]}, upstream={"caFile": pki.ca})
        status, _, body = p.request("GET", "/echo/side")
        assert status == 200, body
        assert tls.client_cns == ["send-request-client"]
    finally:
        tls.close()


def test_through_a_proxy_with_basic_credentials(portico, backend, side, pki):
    from tls_helpers import TLSEchoBackend
    proxy = Proxy("user:secret")
    cert = pki.leaf("side-proxied", "localhost", ["DNS:localhost"])
    tls = TLSEchoBackend(*cert)
    try:
        def pol(user):
            return {"inbound": [
                {"send-request": {"response-variable-name": "r", "timeout": 5,
                                  "set-url": "@(context.request.headers:get('X-Url', ''))",
                                  "proxy": {"url": proxy.url, "username": user, "password": "secret"}}},
                answer_with()], "on-error": [reason_reply()]}
        cfg = basic_config(backend.url, workers=1, upstream={"caFile": pki.ca})
        cfg["apis"][0]["operations"].insert(0, {"id": "good", "method": "GET", "urlTemplate": "/good",
                                                "policies": pol("user")})
        cfg["apis"][0]["operations"].insert(0, {"id": "bad", "method": "GET", "urlTemplate": "/bad",
                                                "policies": pol("mallory")})
        p = portico(cfg)
        # http: absolute form to the proxy, credentials on the proxy only
        status, _, body = p.request("GET", "/echo/good", headers={"X-Url": side.url + "/via?x=1"})
        assert status == 200, body
        assert proxy.seen[-1] == ("GET", side.url + "/via?x=1",
                                  "Basic " + base64.b64encode(b"user:secret").decode())
        assert side.requests[-1].target == "/via?x=1"
        assert side.requests[-1].header("Proxy-Authorization") is None
        # https: a CONNECT tunnel, TLS end to end with the side service
        status, _, body = p.request("GET", "/echo/good", headers={"X-Url": tls.url + "/tunnel"})
        assert status == 200, body
        assert proxy.seen[-1][0:2] == ("CONNECT", "localhost:%d" % tls.port)
        assert json.loads(body)["target"] == "/tunnel" and tls.sni[-1] == "localhost"
        # wrong credentials: the proxy's 407 is the answer over http; a refused tunnel is a failure
        status, _, body = p.request("GET", "/echo/bad", headers={"X-Url": side.url + "/never"})
        assert status == 407, body
        status, _, body = p.request("GET", "/echo/bad", headers={"X-Url": tls.url + "/never"})
        assert status == 599 and body.startswith(b"BackendConnectionFailure|"), body
        assert all(r.target != "/never" for r in side.requests) and tls.handshakes == 1
    finally:
        proxy.close()
        tls.close()


def test_client_going_away_mid_call_cancels_it(portico, backend):
    hold = HoldServer()
    try:
        p = gateway(portico, backend, {"inbound": [
            {"send-request": {"response-variable-name": "r", "timeout": 30, "set-url": hold.url + "/hold"}},
            answer_with()]})
        for i in range(3):
            s = socket.create_connection(("127.0.0.1", p.port))
            s.sendall(b"GET /echo/side HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_for(lambda: hold.accepted == i + 1, what="the side call")
            s.close()
            wait_for(lambda: hold.closed == i + 1, timeout=3, what="the call cancelled")
        # every side connection is closed by the gateway soon after its client went away
        wait_for(lambda: hold.closed == 3 and hold.accepted == 3, timeout=5, what="the calls cancelled")
        assert all(d.startswith(b"GET /hold HTTP/1.1\r\n") for d in hold.data)
        assert p.request("GET", "/echo/items/1")[0] == 200  # the worker is fine
        entries = p.access_entries(wait_for=4)
        assert [e["status"] for e in entries[:3]] == [499, 499, 499]
    finally:
        hold.close()


def test_one_way_request_does_not_wait(portico, backend, side):
    hold = HoldServer()
    try:
        p = gateway(portico, backend, {"inbound": [
            {"send-one-way-request": {"set-url": side.url + "/oneway", "set-method": "POST",
                                      "set-body": "@(context.request.headers:get('X-N', ''))"}},
            {"send-one-way-request": {"set-url": hold.url + "/slow", "timeout": 2}},
            {"return-response": {"set-body": "done"}}]})
        t0 = time.monotonic()
        for i in range(5):
            assert p.request("GET", "/echo/side", headers={"X-N": str(i)})[2] == b"done"
        assert time.monotonic() - t0 < 1.5  # nobody waited for the held calls
        wait_for(lambda: len(side.requests) == 5, what="the one-way calls")
        assert sorted(r.body for r in side.requests) == [b"0", b"1", b"2", b"3", b"4"]
        assert all(r.method == "POST" and r.target == "/oneway" for r in side.requests)
        # the held ones end at their timeout: the gateway closes them
        wait_for(lambda: hold.closed == 5, timeout=6, what="the held calls timed out")
    finally:
        hold.close()


def metrics_text(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        return r.read().decode()


def metric(text, name, result):
    for line in text.splitlines():
        if line.startswith('%s{result="%s"}' % (name, result)):
            return float(line.split()[-1])
    return None


def test_one_way_queue_is_bounded_and_drops_are_counted(portico, backend):
    hold = HoldServer()
    mport = free_port()
    try:
        p = gateway(portico, backend, {"inbound": [
            {"send-one-way-request": {"set-url": hold.url + "/q", "timeout": 3}},
            {"return-response": {"set-body": "ok"}}]},
            metrics={"listen": "127.0.0.1:%d" % mport, "auth": "none"})
        n = 120
        for _ in range(n):
            assert p.request("GET", "/echo/side")[0] == 200  # never refused: the call is dropped
        # one worker: 16 running, 64 waiting, the rest dropped
        text = metrics_text(mport)
        assert metric(text, "portico_send_one_way_requests_total", "dropped") == n - 80, text
        assert hold.accepted <= 16
        # as the running ones time out, the waiting ones go out; all of them end
        wait_for(lambda: metric(metrics_text(mport), "portico_send_one_way_requests_total", "failed") == 80,
                 timeout=30, what="the queued calls to run and time out")
        assert hold.accepted == 80
        assert p.request("GET", "/echo/items/1")[0] == 200
    finally:
        hold.close()


def test_stopping_with_calls_in_flight(portico, backend):
    hold = HoldServer()
    try:
        p = gateway(portico, backend, {"inbound": [
            {"send-one-way-request": {"set-url": hold.url + "/q", "timeout": 60}},
            {"choose": [{"when": "@(context.request.headers:has('X-Wait'))", "then": [
                {"send-request": {"response-variable-name": "r", "timeout": 60, "set-url": hold.url + "/w"}}]}]},
            {"return-response": {"set-body": "ok"}}]})
        for _ in range(30):
            assert p.request("GET", "/echo/side")[0] == 200
        wait_for(lambda: hold.accepted == 16, what="the running calls")
        # and a request waiting for its own side call (its one-way call queued behind the others)
        s = socket.create_connection(("127.0.0.1", p.port))
        s.sendall(b"GET /echo/side HTTP/1.1\r\nHost: x\r\nX-Wait: 1\r\n\r\n")
        wait_for(lambda: hold.accepted == 17, what="the waiting request's call")
        t0 = time.monotonic()
        assert p.stop() == 0
        assert time.monotonic() - t0 < 5
    finally:
        hold.close()


@pytest.mark.parametrize("policy,message", [
    ({"send-request": {"response-variable-name": "r"}}, "needs set-url"),
    ({"send-request": {"response-variable-name": "r", "set-url": "ftp://x/"}}, "is not an absolute http"),
    ({"send-request": {"set-url": "http://127.0.0.1/"}}, "response-variable-name"),
    ({"send-request": {"response-variable-name": "r", "set-url": "http://127.0.0.1/", "timeout": 0}}, "timeout"),
    ({"send-request": {"response-variable-name": "r", "set-url": "http://127.0.0.1/",
                       "proxy": {"url": "https://p:1"}}}, "must be http://"),
    ({"send-request": {"response-variable-name": "r", "set-url": "http://127.0.0.1/",
                       "set-header": {"name": "bad name", "value": "x"}}}, "is not a header name"),
    ({"send-one-way-request": {"mode": "new"}}, "needs set-url"),
])
def test_bad_configurations_are_refused_with_a_position(portico, backend, policy, message):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["operations"][0]["policies"] = {"inbound": [policy]}
    code, out = portico(cfg, start=False).check()
    assert code != 0 and message in out, out
    assert "portico.yaml:" in out, out


def test_kept_connections_are_reused_only_when_clean(portico, backend, side):
    p = gateway(portico, backend, {"inbound": [
        {"send-request": {"mode": "copy", "response-variable-name": "r",
                          "set-url": "@(context.request.headers:get('X-Url', ''))"}},
        {"return-response": {"response-variable-name": "r"}}]})
    # GET without a body: the connection is kept and used again
    first = json.loads(p.request("GET", "/echo/side", headers={"X-Url": side.url + "/a"})[2])
    second = json.loads(p.request("GET", "/echo/side", headers={"X-Url": side.url + "/b"})[2])
    assert first["connection"] == second["connection"]
    assert all(k.lower() != "connection" for k, _ in second["headers"])
    # a POST always gets a connection of its own, and asks for Connection: close
    third = json.loads(p.request("POST", "/echo/side", body=b"x", headers={"X-Url": side.url + "/c"})[2])
    assert third["connection"] != second["connection"]
    assert ["Connection", "close"] in third["headers"]
    # a service that answers and then closes: the next call notices and connects afresh
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nraw1"
    status, _, body = p.request("GET", "/echo/side", headers={"X-Url": side.url + "/raw",
                                                              "X-Raw-Response": ok.hex()})
    assert (status, body) == (200, b"raw1")
    time.sleep(0.2)
    status, _, body = p.request("GET", "/echo/side", headers={"X-Url": side.url + "/d"})
    assert status == 200 and json.loads(body)["target"] == "/d"
    # a service that sends a second, unasked answer on a kept connection: it is never read as the next one
    smuggled = ok + b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"
    status, _, body = p.request("GET", "/echo/side", headers={"X-Url": side.url + "/raw", "X-Raw-Keep": "1",
                                                              "X-Raw-Response": smuggled.hex()})
    assert (status, body) == (200, b"raw1")
    for path in ("/e", "/f"):
        status, _, body = p.request("GET", "/echo/side", headers={"X-Url": side.url + path})
        assert status == 200 and json.loads(body)["target"] == path, body


def test_a_trickling_service_is_cut_at_the_deadline(portico, backend, side):
    p = gateway(portico, backend, {
        "inbound": [{"send-request": {"response-variable-name": "r", "timeout": 1,
                                      "set-url": side.url + "/stream?chunks=40&size=1&delay=100"}},
                    answer_with()],
        "on-error": [reason_reply()]})
    t0 = time.monotonic()
    status, _, body = p.request("GET", "/echo/side")
    assert status == 599 and body.startswith(b"Timeout|"), body
    assert time.monotonic() - t0 < 2.5


def test_ipv6_literal_urls(portico, backend):
    try:
        srv = socket.socket(socket.AF_INET6)
        srv.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    srv.listen(4)
    port = srv.getsockname()[1]
    seen = []

    def serve():
        c, _ = srv.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            d = c.recv(4096)
            if not d:
                break
            data += d
        seen.append(data)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nv6")
        c.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        p = gateway(portico, backend, {"inbound": [
            {"send-request": {"response-variable-name": "r", "set-url": "http://[::1]:%d/six" % port}},
            answer_with()]})
        status, _, body = p.request("GET", "/echo/side")
        assert (status, body) == (200, b"v6")
        t.join(5)
        assert seen[0].startswith(b"GET /six HTTP/1.1\r\n") and (b"Host: [::1]:%d\r\n" % port) in seen[0]
    finally:
        srv.close()


def test_an_early_answer_to_a_large_body(portico, backend):
    """A service that answers 413 after the head, without reading the body: the answer is taken when it
    arrives (draining), and a service that also closes at once gives its 413 or a clean failure."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    modes = []

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            data = b""
            while b"\r\n\r\n" not in data:
                d = c.recv(4096)
                if not d:
                    break
                data += d
            c.sendall(b"HTTP/1.1 413 Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig")
            if modes.pop(0) == "drain":
                c.shutdown(socket.SHUT_WR)
                while c.recv(65536):
                    pass
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    try:
        p = gateway(portico, backend, {
            "inbound": [{"send-request": {"mode": "copy", "response-variable-name": "r", "timeout": 10,
                                          "set-url": "http://127.0.0.1:%d/up" % port}},
                        {"return-response": {"response-variable-name": "r"}}],
            "on-error": [reason_reply()]}, limits={"bufferSize": "8m"})
        body = b"z" * (6 << 20)
        modes.append("drain")
        status, _, got = p.request("POST", "/echo/side", body=body)
        assert (status, got) == (413, b"big")
        modes.append("close")
        status, _, got = p.request("POST", "/echo/side", body=body)
        assert (status, got) in ((413, b"big"), (599, got)) and (status == 413 or got.startswith(
            b"BackendConnectionFailure|")), (status, got)
        assert p.request("GET", "/echo/items/1")[0] == 200
    finally:
        srv.close()


def test_https_side_calls_use_upstream_tls_without_an_https_backend(portico, backend, pki):
    """The side calls' TLS context is the generation's, built at load with upstream.tls (review M1): with no
    https backend and no caFile, a TLS 1.2-only service is refused under minVersion 1.3."""
    import ssl
    from tls_helpers import TLSEchoBackend
    cert = pki.leaf("side-tls", "localhost", ["DNS:localhost"])
    modern = TLSEchoBackend(*cert)
    old = TLSEchoBackend(*cert)
    old.server.ssl_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        p = gateway(portico, backend, {
            "inbound": [{"send-request": {"response-variable-name": "r", "timeout": 5,
                                          "set-url": "@(context.request.headers:get('X-Url', ''))"}},
                        answer_with()],
            "on-error": [reason_reply()]}, upstream={"verify": False, "tls": {"minVersion": "1.3"}})
        status, _, body = p.request("GET", "/echo/side", headers={"X-Url": modern.url + "/new"})
        assert status == 200 and json.loads(body)["target"] == "/new", body
        status, _, body = p.request("GET", "/echo/side", headers={"X-Url": old.url + "/old"})
        assert status == 599 and body.startswith(b"BackendConnectionFailure|"), body
        assert old.handshakes == 0 and not old.requests
    finally:
        modern.close()
        old.close()


def test_one_way_calls_end_at_the_answers_head(portico, backend, side):
    """Review M3: a one-way call is sent once the answer's head arrives; a body over limits.bufferSize or one
    that trickles past the timeout is never read, and the call counts as sent, not failed."""
    mport = free_port()
    p = gateway(portico, backend, {"inbound": [
        {"send-one-way-request": {"set-url": side.url + "/big?bytes=3000000"}},
        {"send-one-way-request": {"set-url": side.url + "/stream?chunks=40&size=1&delay=100", "timeout": 1}},
        {"return-response": {"set-body": "ok"}}]},
        limits={"bufferSize": "64k"}, metrics={"listen": "127.0.0.1:%d" % mport, "auth": "none"})
    t0 = time.monotonic()
    assert p.request("GET", "/echo/side")[0] == 200
    wait_for(lambda: metric(metrics_text(mport), "portico_send_one_way_requests_total", "sent") == 2,
             timeout=5, what="both one-way calls sent")
    assert time.monotonic() - t0 < 0.9  # the trickling one did not run to its 1 s timeout
    time.sleep(1.2)
    text = metrics_text(mport)
    assert metric(text, "portico_send_one_way_requests_total", "failed") == 0, text
    assert metric(text, "portico_send_one_way_requests_total", "sent") == 2, text
    assert len(side.requests) == 2
