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
from backends import EchoBackend, stop_server


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
            owner.heads.append(head)
        want = "Basic " + base64.b64encode(owner.creds.encode()).decode()
        if headers.get("proxy-authorization") != want:
            self.wfile.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Proxy-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            up = socket.create_connection(("127.0.0.1", int(port)), timeout=10)  # [::1] too: a loopback
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
        self.heads = []  # every head received, verbatim (what the gateway sent the proxy)
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _ProxyHandler)
        self.server.daemon_threads = True
        self.server.owner = self
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def close(self):
        stop_server(self.server)


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
        assert proxy.heads[-1].lower().count(b"proxy-authorization:") == 1  # the policy's, once
        # https: a CONNECT tunnel, TLS end to end with the side service
        status, _, body = p.request("GET", "/echo/good", headers={"X-Url": tls.url + "/tunnel"})
        assert status == 200, body
        assert proxy.seen[-1][0:2] == ("CONNECT", "localhost:%d" % tls.port)
        assert json.loads(body)["target"] == "/tunnel" and tls.sni[-1] == "localhost"
        # the credentials go on the CONNECT only, never inside the tunnel
        assert proxy.heads[-1].startswith(b"CONNECT localhost:%d HTTP/1.1\r\n" % tls.port)
        assert tls.requests[-1].header("Proxy-Authorization") is None
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
    ({"send-request": {"response-variable-name": "r", "set-url": "http://127.0.0.1/", "set-method": "CONNECT"}},
     "CONNECT cannot be sent"),
    ({"send-one-way-request": {"set-url": "http://127.0.0.1/", "set-method": "connect"}}, "CONNECT cannot be sent"),
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
    """A service that answers 413 after the head, without reading the body.  "drain": it reads (and drops)
    the rest, so the write completes and the answer is read as usual.  "stall" (review T3): it stops
    reading and closes a second later, so the gateway's write fails (window full, then a reset) with the
    413 already received: that answer must be the response, not a connection failure."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # the 6 MiB cannot sit in the buffers
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
            c.shutdown(socket.SHUT_WR)
            if modes.pop(0) == "drain":
                while c.recv(65536):
                    pass
            else:
                time.sleep(1)  # not reading: the client's write stalls, then the close resets it
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    try:
        p = gateway(portico, backend, {
            "inbound": [{"send-request": {"mode": "copy", "response-variable-name": "r", "timeout": 10,
                                          "set-url": "http://127.0.0.1:%d/up" % port}},
                        {"return-response": {"response-variable-name": "r"}}],
            "on-error": [reason_reply()]}, limits={"bufferSize": "8m"})
        body = b"z" * (6 << 20)
        for mode in ("drain", "stall", "stall"):
            modes.append(mode)
            status, _, got = p.request("POST", "/echo/side", body=body)
            assert (status, got) == (413, b"big"), (mode, status, got)
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



def test_copy_mode_leaves_the_clients_proxy_credentials_and_hop_by_hop_headers(portico, backend, side, pki):
    """Review L3/T1: copy mode does not forward the client's Proxy-Authorization (directly or inside a tunnel)
    nor the headers its Connection header names."""
    from tls_helpers import TLSEchoBackend
    proxy = Proxy("user:secret")
    cert = pki.leaf("side-copy", "localhost", ["DNS:localhost"])
    tls = TLSEchoBackend(*cert)
    try:
        def pol(url, via_proxy):
            sr = {"mode": "copy", "response-variable-name": "r", "timeout": 5, "set-url": url}
            if via_proxy:
                sr["proxy"] = {"url": proxy.url, "username": "user", "password": "secret"}
            return {"inbound": [{"send-request": sr}, answer_with()], "on-error": [reason_reply()]}
        cfg = basic_config(backend.url, workers=1, upstream={"caFile": pki.ca})
        cfg["apis"][0]["operations"].insert(0, {"id": "direct", "method": "GET", "urlTemplate": "/direct",
                                                "policies": pol(side.url + "/d", False)})
        cfg["apis"][0]["operations"].insert(0, {"id": "tunnel", "method": "GET", "urlTemplate": "/tunnel",
                                                "policies": pol(tls.url + "/t", True)})
        p = portico(cfg)
        client = {"Proxy-Authorization": "Basic Y2xpZW50OnNlY3JldA==", "Connection": "keep-alive, X-Hop",
                  "X-Hop": "hop", "X-Keep": "kept", "Authorization": "Bearer client"}
        status, _, body = p.request("GET", "/echo/direct", headers=client)
        assert status == 200, body
        seen = side.requests[-1]
        assert seen.header("Proxy-Authorization") is None and seen.header("X-Hop") is None
        assert seen.header("X-Keep") == "kept" and seen.header("Authorization") == "Bearer client"
        status, _, body = p.request("GET", "/echo/tunnel", headers=client)
        assert status == 200, body
        seen = tls.requests[-1]
        assert seen.target == "/t" and seen.header("X-Keep") == "kept"
        assert seen.header("Proxy-Authorization") is None and seen.header("X-Hop") is None
        assert b"Y2xpZW50OnNlY3JldA" not in b"".join(proxy.heads)
    finally:
        proxy.close()
        tls.close()


def test_connect_through_a_proxy_to_an_ipv6_literal(portico, backend, pki):
    """Review L1: the CONNECT line and its Host keep the brackets of an IPv6 literal."""
    from tls_helpers import TLSEchoBackend
    proxy = Proxy("user:secret")
    cert = pki.leaf("side-v6", "side-v6", ["IP:::1"])
    tls = TLSEchoBackend(*cert)  # on 127.0.0.1: the test proxy tunnels [::1] there; the name checked is ::1
    try:
        p = gateway(portico, backend, {
            "inbound": [{"send-request": {"response-variable-name": "r", "timeout": 5,
                                          "set-url": "https://[::1]:%d/six" % tls.port,
                                          "proxy": {"url": proxy.url, "username": "user", "password": "secret"}}},
                        answer_with()],
            "on-error": [reason_reply()]}, upstream={"caFile": pki.ca})
        status, _, body = p.request("GET", "/echo/side")
        assert proxy.heads, "the proxy saw nothing"
        assert proxy.heads[-1].startswith(b"CONNECT [::1]:%d HTTP/1.1\r\nHost: [::1]:%d\r\n" % (tls.port, tls.port)), \
            proxy.heads[-1]
        assert status == 200 and json.loads(body)["target"] == "/six", body
    finally:
        proxy.close()
        tls.close()


def test_set_method_connect_from_an_expression_is_refused(portico, backend, side):
    """Review L4: CONNECT is refused at request time when the method is an expression."""
    p = gateway(portico, backend, {
        "inbound": [{"send-request": {"response-variable-name": "r",
                                      "set-url": side.url + "/m",
                                      "set-method": "@(context.request.headers:get('X-M', 'GET'))"}},
                    answer_with()],
        "on-error": [reason_reply()]})
    status, _, body = p.request("GET", "/echo/side", headers={"X-M": "CONNECT"})
    assert status == 599 and body.startswith(b"ExpressionValueEvaluationFailure|"), body
    assert not side.requests
    status, _, body = p.request("GET", "/echo/side", headers={"X-M": "PATCH"})
    assert status == 200 and json.loads(body)["method"] == "PATCH", body


def test_header_values_from_expressions_cannot_inject(portico, backend, side):
    """Review T5/L6: a value with CR LF, or any other control character, from an expression is refused
    (ExpressionValueEvaluationFailure) and nothing reaches the side service; an invalid name likewise."""
    p = gateway(portico, backend, {
        "inbound": [{"send-request": {"response-variable-name": "r", "set-url": side.url + "/inj",
                                      "set-header": [{"name": "@(context.request.headers:get('X-Name', 'X-Ok'))",
                                                      "value": "@(context.request.headers:get('X-V', 'ok'))"},
                                                     {"name": "X-Lua",
                                                      "value": "@(context.request.headers:has('X-Evil') and "
                                                               "('a\\r\\nX-Injected: 1') or "
                                                               "(context.request.headers:has('X-Ctl') and "
                                                               "'a\\1b' or 'fine'))"}]}},
                    answer_with()],
        "on-error": [reason_reply()]})
    for headers in ({"X-Evil": "1"}, {"X-Ctl": "1"}, {"X-Name": "bad name"}, {"X-Name": "X:y"}):
        status, _, body = p.request("GET", "/echo/side", headers=headers)
        assert status == 599 and body.startswith(b"ExpressionValueEvaluationFailure|"), (headers, body)
    assert not side.requests
    status, _, body = p.request("GET", "/echo/side", headers={"X-V": "tab\there"})
    assert status == 200, body
    seen = side.requests[-1]
    assert seen.header("X-Ok") == "tab\there" and seen.header("X-Lua") == "fine"
    assert seen.header("X-Injected") is None


def test_policy_set_framing_headers_are_dropped_and_host_wins(portico, backend, side):
    """Review T5: Content-Length, Transfer-Encoding, Connection and Expect set by the policy are not sent
    (the real Content-Length is); a policy-set Host replaces the URL's."""
    p = gateway(portico, backend, {"inbound": [
        {"send-request": {"response-variable-name": "r", "set-url": side.url + "/framing", "set-method": "POST",
                          "set-body": "abc",
                          "set-header": [{"name": "Content-Length", "value": "999"},
                                         {"name": "Transfer-Encoding", "value": "chunked"},
                                         {"name": "Connection", "value": "upgrade"},
                                         {"name": "Expect", "value": "100-continue"},
                                         {"name": "Host", "value": "other.example:81"}]}},
        answer_with()]})
    status, _, body = p.request("GET", "/echo/side")
    assert status == 200, body
    seen = side.requests[-1]
    assert seen.body == b"abc" and seen.header_all("Content-Length") == ["3"]
    assert seen.header("Transfer-Encoding") is None and seen.header("Expect") is None
    assert seen.header_all("Connection") == ["close"]
    assert seen.header_all("Host") == ["other.example:81"]


def test_hostile_heads_oversized_and_interim_floods(portico, backend, side):
    """Review T5: a 70 KiB response head, 17 interim 103s and a 101 are broken answers."""
    p = gateway(portico, backend, {
        "inbound": [{"send-request": {"mode": "copy", "response-variable-name": "r", "timeout": 5,
                                      "set-url": side.url + "/raw"}},
                    {"return-response": {"response-variable-name": "r"}}],
        "on-error": [reason_reply()]})
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    big = b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * (70 << 10) + b"\r\nContent-Length: 2\r\n\r\nok"
    flood = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" * 17 + ok
    some = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" * 3 + ok
    switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n" + ok
    for raw in (flood, switch):
        status, _, body = p.request("GET", "/echo/side", headers={"X-Raw-Response": raw.hex()})
        assert status == 599 and body.startswith(b"BackendConnectionFailure|"), (raw[:40], body)
    # too big to travel in X-Raw-Response: a server of its own
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(2)

    def serve():
        c, _ = srv.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            d = c.recv(4096)
            if not d:
                break
            data += d
        try:
            c.sendall(big)
        except OSError:
            pass
        time.sleep(0.5)
        c.close()
    threading.Thread(target=serve, daemon=True).start()
    p2 = gateway(portico, backend, {
        "inbound": [{"send-request": {"response-variable-name": "r", "timeout": 5,
                                      "set-url": "http://127.0.0.1:%d/big-head" % srv.getsockname()[1]}},
                    {"return-response": {"response-variable-name": "r"}}],
        "on-error": [reason_reply()]})
    try:
        status, _, body = p2.request("GET", "/echo/side")
        assert status == 599 and body.startswith(b"BackendConnectionFailure|"), body
    finally:
        srv.close()
    status, _, body = p.request("GET", "/echo/side", headers={"X-Raw-Response": some.hex()})
    assert (status, body) == (200, b"ok")


def test_ignore_error_covers_a_response_with_a_control_character(portico, backend, side):
    """A control character in a response header is a broken answer, which ignore-error covers (the variable
    is nil).  (Review L5's own path, a response the variable cannot keep, is reached only when the request's
    arena is exhausted: not reachable from here.)"""
    p = gateway(portico, backend, {"inbound": [
        {"send-request": {"mode": "copy", "response-variable-name": "r", "ignore-error": True,
                          "set-url": side.url + "/raw"}},
        {"return-response": {"set-body": "@(tostring(context.variables['r'] == nil))"}}],
        "on-error": [reason_reply()]})
    raw = b"HTTP/1.1 200 OK\r\nX-Odd: a\x01b\r\nContent-Length: 2\r\n\r\nok"
    status, _, body = p.request("GET", "/echo/side", headers={"X-Raw-Response": raw.hex()})
    assert (status, body) == (200, b"true"), body


def _hold_cancel(portico, backend, hold, policy_extra, url, first_bytes, **extra):
    p = gateway(portico, backend, {"inbound": [
        dict({"send-request": dict({"response-variable-name": "r", "timeout": 30, "set-url": url},
                                   **policy_extra)}), answer_with()]}, **extra)
    s = socket.create_connection(("127.0.0.1", p.port))
    s.sendall(b"GET /echo/side HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: hold.accepted == 1, what="the side connection")
    time.sleep(0.3)  # the gateway's first bytes (a ClientHello, a CONNECT) arrive and it waits
    s.close()
    wait_for(lambda: hold.closed == 1, timeout=3, what="the side connection closed by the gateway")
    assert hold.data[0].startswith(first_bytes), hold.data[0][:40]
    assert p.request("GET", "/echo/items/1")[0] == 200
    assert p.access_entries(wait_for=2)[0]["status"] == 499


def test_cancel_during_the_tls_handshake(portico, backend):
    """Review T5: a service that accepts and never speaks TLS; the client leaves; the gateway closes it."""
    hold = HoldServer()
    try:
        _hold_cancel(portico, backend, hold, {}, "https://127.0.0.1:%d/tls" % hold.port, b"\x16\x03",
                     upstream={"verify": False})
    finally:
        hold.close()


def test_cancel_while_the_proxy_holds_the_connect(portico, backend):
    """Review T5: a proxy that never answers CONNECT; the client leaves; the gateway closes it."""
    hold = HoldServer()
    try:
        _hold_cancel(portico, backend, hold, {"proxy": {"url": hold.url}}, "https://localhost:1/x",
                     b"CONNECT localhost:1 HTTP/1.1\r\n", upstream={"verify": False})
    finally:
        hold.close()


def test_an_unasked_answer_after_a_delay_is_never_read_as_the_next_one(portico, backend):
    """Review T2: the extra answer arrives on the idle kept connection 100 ms after the first; the next
    call must not take it (the peek finds it): it goes out on a new connection."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    conns = []

    def handle(c, n):
        data = b""
        while b"\r\n\r\n" not in data:
            d = c.recv(4096)
            if not d:
                return
            data += d
        if n == 0:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
            time.sleep(0.1)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
        else:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")
        # keep the connection open (reading) until the peer closes it
        while True:
            try:
                if not c.recv(4096):
                    break
            except OSError:
                break
        c.close()

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            conns.append(c)
            threading.Thread(target=handle, args=(c, len(conns) - 1), daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    try:
        p = gateway(portico, backend, {"inbound": [
            {"send-request": {"response-variable-name": "r", "timeout": 5,
                              "set-url": "http://127.0.0.1:%d/k" % port}},
            {"return-response": {"response-variable-name": "r"}}]})
        status, _, body = p.request("GET", "/echo/side")
        assert (status, body) == (200, b"first")
        time.sleep(0.4)  # the extra answer is on the idle connection now
        status, _, body = p.request("GET", "/echo/side")
        assert (status, body) == (200, b"fresh")
        assert len(conns) == 2  # a new connection, the tainted one closed
    finally:
        srv.close()


def test_private_addresses_can_be_refused(portico, backend, side):
    """Review M2: upstream.sideCallsToPrivateAddresses: false refuses loopback targets (a literal and a name
    resolving to one), for send-request and send-one-way-request; calls through a proxy are not checked."""
    proxy = Proxy("user:secret")
    mport = free_port()
    try:
        p = gateway(portico, backend, {
            "inbound": [{"choose": [{"when": "@(context.request.headers:has('X-Proxy'))", "then": [
                            {"send-request": {"response-variable-name": "r", "timeout": 5,
                                              "set-url": "@(context.request.headers:get('X-Url', ''))",
                                              "proxy": {"url": proxy.url, "username": "user",
                                                        "password": "secret"}}}]},
                                    {"otherwise": [
                            {"send-one-way-request": {"set-url": side.url + "/oneway"}},
                            {"send-request": {"response-variable-name": "r", "timeout": 5,
                                              "set-url": "@(context.request.headers:get('X-Url', ''))"}}]}]},
                        answer_with()],
            "on-error": [reason_reply()]},
            upstream={"sideCallsToPrivateAddresses": False},
            metrics={"listen": "127.0.0.1:%d" % mport, "auth": "none"})
        for url in (side.url + "/lit", "http://localhost:%d/name" % side.port,
                    "http://[::ffff:127.0.0.1]:%d/mapped" % side.port):
            status, _, body = p.request("GET", "/echo/side", headers={"X-Url": url})
            assert status == 599 and body.startswith(b"BackendConnectionFailure|"), (url, body)
        wait_for(lambda: metric(metrics_text(mport), "portico_send_one_way_requests_total", "failed") == 3,
                 timeout=5, what="the one-way calls refused")
        assert not side.requests
        # through a proxy: the gateway connects to the proxy, the target is not checked
        status, _, body = p.request("GET", "/echo/side", headers={"X-Url": side.url + "/via", "X-Proxy": "1"})
        assert status == 200 and json.loads(body)["target"] == "/via", body
    finally:
        proxy.close()


class SilentDns:
    """A UDP "name server" on loopback that notes the queries and never answers."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                self.sock.recvfrom(4096)
            except OSError:
                return
            self.queries += 1

    def close(self):
        self.sock.close()


def test_a_lookup_never_answered_holds_the_call_not_the_worker(portico, backend, workdir):
    """Review T4/L7: with a name server that never answers, the worker (only one) serves other requests
    while a lookup is outstanding, the call ends as Timeout at its deadline, and the gateway stops cleanly
    with lookups outstanding (a send-request and a one-way call)."""
    import os
    dns = SilentDns()
    conf = os.path.join(str(workdir), "resolv.conf")
    with open(conf, "w") as f:
        f.write("nameserver 127.0.0.1:%d\noptions timeout:30 attempts:1\n" % dns.port)
    try:
        cfg = basic_config(backend.url, workers=1)
        for name, timeout in (("side", 2), ("long", 60)):
            cfg["apis"][0]["operations"].insert(0, {"id": name, "method": "*", "urlTemplate": "/" + name,
                                                    "policies": {
                "inbound": [{"send-one-way-request": {"set-url": "http://oneway.portico-test.example:1/x",
                                                      "timeout": 60}},
                            {"send-request": {"response-variable-name": "r", "timeout": timeout,
                                              "set-url": "http://slow.portico-test.example:1/x"}},
                            answer_with()],
                "on-error": [reason_reply()]}})
        p = portico(cfg, env={"PORTICO_RESOLV_CONF": conf})
        got = {}

        def slow():
            t0 = time.monotonic()
            got["answer"] = p.request("GET", "/echo/side")
            got["took"] = time.monotonic() - t0
        t = threading.Thread(target=slow)
        t.start()
        wait_for(lambda: dns.queries >= 1, what="the lookup")
        t0 = time.monotonic()
        assert p.request("GET", "/echo/items/1")[0] == 200
        assert time.monotonic() - t0 < 0.5  # the worker was not held by the lookup
        t.join(10)
        status, _, body = got["answer"]
        assert status == 599 and body.startswith(b"Timeout|"), body
        assert 1.8 < got["took"] < 3.5, got["took"]
        # stopping with lookups outstanding
        n = dns.queries  # before sending: the lookups may come at once
        s = socket.create_connection(("127.0.0.1", p.port))
        s.sendall(b"GET /echo/long HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for(lambda: dns.queries >= n + 2, what="the new lookups")
        t0 = time.monotonic()
        assert p.stop() == 0
        assert time.monotonic() - t0 < 5
        s.close()
    finally:
        dns.close()


class TwoFamilyDns:
    """A UDP name server on loopback answering every name with 127.0.0.1 (A) and ::1 (AAAA)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.qtypes = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        import struct
        while True:
            try:
                q, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            i = 12
            while i < len(q) and q[i]:
                i += q[i] + 1
            qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
            question = q[12:i + 5]
            self.qtypes.append(qtype)
            rdata = {1: socket.inet_pton(socket.AF_INET, "127.0.0.1"),
                     28: socket.inet_pton(socket.AF_INET6, "::1")}.get(qtype)
            head = q[:2] + struct.pack("!HHHHH", 0x8180, 1, 1 if rdata else 0, 0, 0)
            answer = struct.pack("!HHHIH", 0xc00c, qtype, 1, 60, len(rdata)) + rdata if rdata else b""
            self.sock.sendto(head + question + answer, peer)

    def close(self):
        self.sock.close()


def test_the_next_resolved_address_is_tried(portico, backend, side, workdir):
    """Review L2: a name resolving to 127.0.0.1 and ::1 reaches a service listening on only one of them,
    whichever the resolver gives first."""
    import os
    dns = TwoFamilyDns()
    conf = os.path.join(str(workdir), "resolv.conf")
    with open(conf, "w") as f:
        f.write("nameserver 127.0.0.1:%d\noptions timeout:2 attempts:1\n" % dns.port)
    try:
        v6 = socket.socket(socket.AF_INET6)
        v6.bind(("::1", 0))
    except OSError:
        dns.close()
        pytest.skip("no IPv6 loopback here")
    v6.listen(4)

    def serve():
        while True:
            try:
                c, _ = v6.accept()
            except OSError:
                return
            data = b""
            while b"\r\n\r\n" not in data:
                d = c.recv(4096)
                if not d:
                    break
                data += d
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nv6")
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    try:
        cfg = basic_config(backend.url, workers=1)
        cfg["apis"][0]["operations"].insert(0, {"id": "side", "method": "*", "urlTemplate": "/side", "policies": {
            "inbound": [{"send-request": {"response-variable-name": "r", "timeout": 5,
                                          "set-url": "@(context.request.headers:get('X-Url', ''))"}},
                        {"return-response": {"set-body": "@(context.variables['r'].body:asString())"}}],
            "on-error": [reason_reply()]}})
        p = portico(cfg, env={"PORTICO_RESOLV_CONF": conf})
        status, _, body = p.request("GET", "/echo/side",
                                    headers={"X-Url": "http://both.portico-test.example:%d/x" % v6.getsockname()[1]})
        if 28 not in dns.qtypes:
            pytest.skip("the resolver asked no AAAA here (no IPv6 route): %r" % dns.qtypes)
        assert (status, body) == (200, b"v6"), body
        status, _, body = p.request("GET", "/echo/side",
                                    headers={"X-Url": "http://both.portico-test.example:%d/y" % side.port})
        assert status == 200 and json.loads(body)["target"] == "/y", body
    finally:
        v6.close()
        dns.close()


def _close_wait_to(port):
    """Sockets in CLOSE_WAIT whose peer is 127.0.0.1:port (from /proc/net/tcp)."""
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if int(parts[2].split(":")[1], 16) == port and parts[3] == "08":
                n += 1
    return n


def test_idle_connections_the_service_closed_are_released(portico, backend):
    """Review L10: a kept connection the service closes while idle is closed by the gateway within a few
    seconds (no CLOSE_WAIT left), without another side call."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]

    def serve():
        c, _ = srv.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            d = c.recv(4096)
            if not d:
                break
            data += d
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nkept")
        time.sleep(0.3)
        c.close()  # the service closes the idle connection
    threading.Thread(target=serve, daemon=True).start()
    try:
        p = gateway(portico, backend, {"inbound": [
            {"send-request": {"response-variable-name": "r", "set-url": "http://127.0.0.1:%d/k" % port}},
            {"return-response": {"response-variable-name": "r"}}]})
        assert p.request("GET", "/echo/side")[2] == b"kept"
        wait_for(lambda: _close_wait_to(port) == 1, timeout=3, what="the idle connection half-closed")
        wait_for(lambda: _close_wait_to(port) == 0, timeout=5, what="the gateway closing it")
    finally:
        srv.close()
