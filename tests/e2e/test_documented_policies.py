"""Attributes that docs/policies.md documents and no other test exercised:
forward-request's timeout-ms, continue-timeout, http-version (HTTP/2 itself: test_http2_upstream.py),
follow-redirects and buffer-response; validate-client-certificate's date,
serial-number, issuer-subject and trust refusals; validate-jwt's
require-signed-tokens.  Each test checks what the client got, what the
backend saw, and the reason in the access log or context.lastError."""

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import random
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import CALL_MARK, basic_config, check_call_mark, free_port, new_call_mark
from tls_helpers import Pki, read_http_response
from upstream_helpers import recv_head, split_head

# calls marked with CALL_MARK: a refused one (4xx) must not have reached the `backend` fixture
pytestmark = pytest.mark.usefixtures("refusals_leave_the_backend_alone")


# ------------------------------------------------------------------ helpers

def with_forward(backend_url, fwd, **extra):
    """basic_config whose API's backend section is one forward-request with the attributes `fwd`."""
    cfg = basic_config(backend_url, **extra)
    cfg["apis"][0]["policies"] = {"backend": [{"forward-request": fwd}]}
    return cfg


LAST_ERROR = ("@(context.lastError.source .. '|' .. context.lastError.reason .. '|' .. context.lastError.message"
              " .. '|' .. context.lastError.section)")


def on_error_reply():
    """An on-error section answering 418 with what context.lastError holds."""
    return [{"return-response": {"set-status": {"code": 418, "reason": "Caught"}, "set-body": LAST_ERROR}}]


def entries_after(p, before):
    """The access-log entries once there are more than `before`."""
    return p.access_entries(wait_for=before + 1)[before:]


# ------------------------------------------------ forward-request: timeout-ms

def test_forward_timeout_ms_is_a_504_timeout(backend, portico):
    """timeout-ms: 400 -- a backend answering within it passes; one that
    takes 3 s is cut after 400 ms (not 400 s: milliseconds) with the
    gateway's 504 and the reason Timeout; in on-error, context.lastError
    says Timeout from forward-request in the backend section."""
    cfg = with_forward(backend.url, {"timeout-ms": 400})
    cfg["apis"][0]["operations"].insert(0, {
        "id": "guarded", "method": "GET", "urlTemplate": "/guarded/sleep/{ms}",
        "policies": {"backend": [{"forward-request": {"timeout-ms": 400}}], "on-error": on_error_reply()}})
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/sleep/50")
    assert status == 200 and json.loads(body)["target"] == "/base/sleep/50"

    t0 = time.monotonic()
    status, headers, body = p.request("GET", "/echo/sleep/3000")  # the backend sleeps: the scenario
    took = time.monotonic() - t0
    assert status == 504
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"statusCode": 504, "message": "Gateway timeout: the backend did not answer in time"}
    assert 0.35 <= took < 2.5, took
    e = p.access_entries(wait_for=2)[1]
    assert (e["status"], e["reason"], e["path"]) == (504, "Timeout", "/echo/sleep/3000")
    assert "no response within forward-request's timeout (400 ms)" in p.log_text()

    t0 = time.monotonic()
    status, _, body = p.request("GET", "/echo/guarded/sleep/3000")
    took = time.monotonic() - t0
    assert (status, body) == (418, b"forward-request|Timeout|Gateway timeout: the backend did not answer in time|"
                                   b"backend")
    assert 0.35 <= took < 2.5, took
    assert [r.target for r in backend.requests] == ["/base/sleep/50", "/base/sleep/3000", "/base/guarded/sleep/3000"]


# ------------------------------------------- forward-request: continue-timeout

def test_continue_timeout_is_accepted_and_the_gateway_answers_100_continue(backend, portico):
    """continue-timeout is accepted; `Expect: 100-continue` is answered by
    the gateway itself (the echo backend never sends 100): the client gets
    `100 Continue` before it has sent a byte of its body, then the backend's
    answer, and the backend gets the whole body without the Expect header."""
    p = portico(with_forward(backend.url, {"continue-timeout": 2}))
    body = b"0123456789" * 1000
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    try:
        s.sendall(b"POST /echo/items HTTP/1.1\r\nHost: gw\r\nContent-Type: application/octet-stream\r\n"
                  b"Content-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n" % len(body))
        got = recv_head(s)  # waits for the interim answer (the socket's 5 s bound a failure)
        assert got is not None, "the gateway closed instead of answering 100 Continue"
        head, rest = got
        assert head == b"HTTP/1.1 100 Continue" and rest == b""
        s.sendall(body)
        data = bytearray()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    status, headers, _, rest = split_head(bytes(data))
    assert status == 200
    echo = json.loads(rest)
    assert base64.b64decode(echo["body"]) == body
    assert (echo["method"], echo["target"]) == ("POST", "/base/items")
    assert [k for k, _ in echo["headers"] if k.lower() == "expect"] == []
    assert len(backend.requests) == 1
    # "once the request has been routed and accepted": a request for no API gets its 404 instead
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    try:
        s.sendall(b"POST /nowhere HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n")
        head, _ = recv_head(s)
    finally:
        s.close()
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 404 Not Found"
    assert len(backend.requests) == 1


# ----------------------------------------------- forward-request: http-version

@pytest.mark.parametrize("version", [None, "1", "2or1"], ids=["default", "1", "2or1"])
def test_http_version_1_and_2or1_speak_http11_to_the_backend(backend, portico, version):
    p = portico(with_forward(backend.url, {} if version is None else {"http-version": version}))
    status, _, body = p.request("GET", "/echo/items/7")
    assert status == 200
    assert (json.loads(body)["version"], json.loads(body)["target"]) == ("HTTP/1.1", "/base/items/7")
    assert backend.last().version == "HTTP/1.1"


def test_http_version_2_speaks_http2_to_the_backend(backend, portico):
    """http-version 2 to an http:// backend is h2c with prior knowledge (docs/http2.md): an HTTP/1.1-only
    backend never gets the request as HTTP/1.1, and the client gets a 502 with the usual JSON body."""
    p = portico(with_forward(backend.url, {"http-version": "2"}))
    status, _, body = p.request("GET", "/echo/items/7")
    assert status == 502, body
    assert json.loads(body)["message"].startswith("Bad gateway: "), body
    assert not [r for r in backend.requests if r.target == "/base/items/7"]


# ------------------------------------------- forward-request: follow-redirects

@pytest.mark.parametrize("follow", [None, False], ids=["default", "false"])
def test_a_backend_redirect_reaches_the_client_unchanged(backend, portico, follow):
    """follow-redirects false (the default): the backend's 302 is the
    client's answer, Location untouched, and the gateway does not fetch the
    Location (which names the same backend: a fetch would show there)."""
    p = portico(with_forward(backend.url, {} if follow is None else {"follow-redirects": follow}))
    location = backend.url + "/base/elsewhere?x=1"
    raw = ("HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n"
           "X-From: backend\r\n\r\nmoved!" % location).encode()
    status, headers, body = p.request("GET", "/echo/raw", headers={"X-Raw-Response": raw.hex(), "X-Raw-Keep": "1"})
    assert (status, body) == (302, b"moved!")
    assert headers["location"] == location and headers["x-from"] == "backend"
    assert headers["content-type"] == "text/plain"
    e = p.access_entries(wait_for=1)[0]
    assert (e["status"], e["backendStatus"]) == (302, 302) and "reason" not in e
    assert [r.target for r in backend.requests] == ["/base/raw"]


# -------------------------------------------- forward-request: buffer-response

class GatedStreamBackend:
    """Answers each request with a chunked body: `first`, then -- only once
    the test sets `release` -- the chunks of `rest`.  A gateway that holds
    the response until it is complete never delivers `first` before the
    release."""

    def __init__(self, first, rest):
        self.first, self.rest = first, rest
        self.release = threading.Event()
        self.heads = []
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        try:
            got = recv_head(s)
            if got is None:
                return
            self.heads.append(got[0])
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n"
                      b"\r\n%x\r\n%s\r\n" % (len(self.first), self.first))
            if not self.release.wait(15):
                return
            for c in self.rest:
                s.sendall(b"%x\r\n%s\r\n" % (len(c), c))
            s.sendall(b"0\r\n\r\n")
            s.settimeout(5)
            while s.recv(65536):
                pass
        except OSError:
            pass
        finally:
            s.close()

    def close(self):
        self.release.set()
        self.srv.close()


@pytest.mark.parametrize("buffer", [None, True, False], ids=["default", "true", "false"])
def test_buffer_response_is_accepted_and_bodies_stream(portico, buffer):
    """buffer-response (true by default) is accepted, and the body streams
    anyway: the first chunk reaches the client while the backend still
    holds the rest, then 4 MiB more arrive byte for byte."""
    rnd = random.Random(20261206)
    first = rnd.randbytes(1000)
    rest = [rnd.randbytes(rnd.randint(1, 131072)) for _ in range(60)]
    whole = first + b"".join(rest)
    b = GatedStreamBackend(first, rest)
    try:
        p = portico(with_forward(b.url, {} if buffer is None else {"buffer-response": buffer}))
        c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5)
        try:
            c.request("GET", "/echo/stream")
            r = c.getresponse()
            assert r.status == 200 and r.getheader("Transfer-Encoding") == "chunked"
            # read(n) blocks until n bytes came: a buffering gateway makes this time out
            assert r.read(len(first)) == first
            assert not b.release.is_set()
            b.release.set()
            tail = r.read()
        finally:
            c.close()
        assert len(first) + len(tail) == len(whole)
        assert hashlib.sha256(first + tail).hexdigest() == hashlib.sha256(whole).hexdigest()
        assert len(b.heads) == 1 and b.heads[0].startswith(b"GET /base/stream HTTP/1.1\r\n")
        e = p.access_entries(wait_for=1)[0]
        assert (e["status"], e["backendStatus"]) == (200, 200) and "reason" not in e
    finally:
        b.close()


# ------------------------------------------------ validate-client-certificate

def _openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, timeout=60)
    assert r.returncode == 0, "openssl %s failed:\n%s" % (" ".join(args), (r.stdout + r.stderr).decode())


def _stamp(when):
    return when.strftime("%Y%m%d%H%M%SZ")


class ClientPki(Pki):
    """Pki plus client certificates with chosen dates and serial numbers
    (`openssl ca`), and a self-signed one."""

    def issue(self, name, cn, start, end, serial):
        d = self.dir
        if not os.path.exists(self.path("ca.cnf")):
            with open(self.path("ca.cnf"), "w") as f:
                f.write("[ca]\ndefault_ca = tca\n[tca]\ndatabase = index.txt\nnew_certs_dir = issued\n"
                        "serial = serial\ndefault_md = sha256\npolicy = pol\nunique_subject = no\n"
                        "[pol]\ncommonName = supplied\n[client]\nbasicConstraints = CA:FALSE\n"
                        "keyUsage = critical,digitalSignature\nextendedKeyUsage = clientAuth\n")
            open(self.path("index.txt"), "w").close()
            os.mkdir(self.path("issued"))
        with open(self.path("serial"), "w") as f:
            f.write("%08X\n" % serial)
        key, csr, pem = (self.path(name + s) for s in (".key", ".csr", ".pem"))
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                 "-out", csr, "-subj", "/CN=" + cn, cwd=d)
        _openssl("ca", "-batch", "-config", "ca.cnf", "-cert", self.ca, "-keyfile", self.ca_key, "-in", csr,
                 "-out", pem, "-startdate", _stamp(start), "-enddate", _stamp(end), "-extensions", "client",
                 "-notext", cwd=d)
        return pem, key

    def self_signed(self, name, cn):
        key, pem = self.path(name + ".key"), self.path(name + ".pem")
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                 "-out", pem, "-subj", "/CN=" + cn, "-days", "30", "-addext", "extendedKeyUsage=clientAuth",
                 cwd=self.dir)
        return pem, key


@pytest.fixture(scope="module")
def pki():
    with tempfile.TemporaryDirectory(prefix="portico-pki-") as d:
        p = ClientPki(d)
        now = datetime.datetime.now(datetime.timezone.utc)
        p.server = p.leaf("server", "localhost", ["DNS:localhost"])
        p.alice = p.issue("alice", "alice", now - datetime.timedelta(days=1), now + datetime.timedelta(days=20),
                          0x0A11CE01)
        p.expired = p.issue("expired", "alice", datetime.datetime(2020, 1, 1), datetime.datetime(2021, 1, 1),
                            0x0A11CE02)
        p.future = p.issue("future", "alice", now + datetime.timedelta(days=10), now + datetime.timedelta(days=20),
                           0x0A11CE03)
        p.serial = p.issue("serial", "alice", now - datetime.timedelta(days=1), now + datetime.timedelta(days=20),
                           0x5EED0001)
        p.mallory = p.leaf("mallory", "alice", [], issuer="other", eku="clientAuth")
        p.selfsigned = p.self_signed("selfsigned", "alice")
        yield p


def cert_gateway(backend, portico, pki, policy):
    """A TLS listener asking for client certificates (clientCa: the test CA)
    in front of two APIs with the same validate-client-certificate: `echo`
    (the gateway's 401) and `guarded` (an on-error answering with
    context.lastError)."""
    cfg = basic_config(backend.url)
    port = free_port()
    cfg["listen"].append({"address": "127.0.0.1:%d" % port, "certificate": pki.server[0], "key": pki.server[1],
                          "clientCertificate": "optional", "clientCa": pki.ca})
    cfg["apis"][0]["policies"] = {"inbound": ["base", {"validate-client-certificate": policy}]}
    guarded = dict(cfg["apis"][0], id="guarded", path="guarded")
    guarded["policies"] = {"inbound": ["base", {"validate-client-certificate": policy}], "on-error": on_error_reply()}
    cfg["apis"].append(guarded)
    p = portico(cfg)
    p.tls_port = port
    return p


def tls_get(p, pki, cert, api="echo"):
    """GET /<api>/items/1 over TLS presenting `cert`: (status, body bytes)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=pki.ca)
    ctx.load_cert_chain(cert[0], cert[1])
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", p.tls_port), timeout=10),
                        server_hostname="localhost")
    mark = new_call_mark()
    try:
        s.sendall(b"GET /%s/items/1 HTTP/1.1\r\nHost: localhost\r\n%s: %s\r\nConnection: close\r\n\r\n"
                  % (api.encode(), CALL_MARK.encode(), mark.encode()))
        status, _, body = read_http_response(s.makefile("rb"))
    finally:
        s.close()
    check_call_mark(mark, status)
    return status, body


def assert_refused(p, pki, cert, reason, message):
    """`cert` gets the gateway's 401 with `message` and `reason` in the
    access log, and in on-error context.lastError says the same.  Returns
    the access-log entry of the 401."""
    before = len(p.access_entries())
    status, body = tls_get(p, pki, cert)
    assert (status, json.loads(body)) == (401, {"statusCode": 401, "message": message})
    e = entries_after(p, before)[0]
    assert (e["status"], e["reason"], e["api"]) == (401, reason, "echo")
    status, body = tls_get(p, pki, cert, api="guarded")
    assert (status, body.decode()) == (418, "validate-client-certificate|%s|%s|inbound" % (reason, message))
    return e


def assert_accepted(p, pki, cert):
    status, body = tls_get(p, pki, cert)
    assert status == 200 and json.loads(body)["target"] == "/base/items/1"


DATE_CASES = [
    ("expired", "ClientCertificateExpired", "The client certificate has expired.", "validate-not-after",
     "validate-not-before"),
    ("future", "ClientCertificateNotYetValid", "The client certificate is not valid yet.", "validate-not-before",
     "validate-not-after"),
]


@pytest.mark.parametrize("which,reason,message,switch,other", DATE_CASES, ids=[c[0] for c in DATE_CASES])
def test_client_certificate_dates(backend, portico, pki, which, reason, message, switch, other):
    """An expired / not yet valid certificate from the trusted CA is refused
    with its own reason; its own switch set to false lets it through (the
    date is then no trust failure either), the other switch does not."""
    cert = getattr(pki, which)
    p = cert_gateway(backend, portico, pki, {})
    assert_accepted(p, pki, pki.alice)
    e = assert_refused(p, pki, cert, reason, message)
    assert e["clientCertificate"]["verify"] != "ok", e  # the handshake let it through, unverified

    p = cert_gateway(backend, portico, pki, {switch: False})
    assert_accepted(p, pki, cert)
    p = cert_gateway(backend, portico, pki, {other: False})
    assert_refused(p, pki, cert, reason, message)


def test_client_certificate_serial_number(backend, portico, pki):
    """identity serial-number (hex): the certificate with serial 0x5EED0001
    passes; alice, same CA and CN but another serial, is refused."""
    p = cert_gateway(backend, portico, pki, {"identities": {"identity": [{"serial-number": "5EED0001"}]}})
    assert_accepted(p, pki, pki.serial)
    assert_refused(p, pki, pki.alice, "ClientCertificateIdentityNotAllowed",
                   "The client certificate matches no allowed identity.")


def test_client_certificate_issuer_subject(backend, portico, pki):
    """identity issuer-subject: alice's issuer matches; a certificate with
    the same subject from another issuer does not (trust switched off, so
    that only the issuer decides); an identity naming another issuer
    refuses alice."""
    p = cert_gateway(backend, portico, pki, {"validate-trust": False,
                                             "identities": {"identity": [{"issuer-subject": "CN=Portico Test CA"}]}})
    assert_accepted(p, pki, pki.alice)
    assert_refused(p, pki, pki.mallory, "ClientCertificateIdentityNotAllowed",
                   "The client certificate matches no allowed identity.")
    p = cert_gateway(backend, portico, pki,
                     {"identities": {"identity": [{"issuer-subject": "CN=Untrusted Test CA"}]}})
    assert_refused(p, pki, pki.alice, "ClientCertificateIdentityNotAllowed",
                   "The client certificate matches no allowed identity.")


def test_client_certificate_self_signed_is_not_trusted(backend, portico, pki):
    """A self-signed certificate (named like alice) does not chain to
    clientCa: ClientCertificateNotTrusted; validate-trust: false accepts it."""
    p = cert_gateway(backend, portico, pki, {})
    assert_accepted(p, pki, pki.alice)
    e = assert_refused(p, pki, pki.selfsigned, "ClientCertificateNotTrusted",
                       "The client certificate is not trusted.")
    assert "self-signed" in e["clientCertificate"]["verify"], e
    p = cert_gateway(backend, portico, pki, {"validate-trust": False})
    assert_accepted(p, pki, pki.selfsigned)


# ------------------------------------------------ validate-jwt: require-signed-tokens

SECRET = b"0123456789abcdef0123456789abcdef"


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(header, sign=True, signature=None):
    payload = {"iss": "https://issuer.example", "aud": "orders", "sub": "u1", "exp": int(time.time()) + 600}
    si = b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(payload).encode())
    if signature is None:
        signature = hmac.new(SECRET, si.encode(), hashlib.sha256).digest() if sign else b""
    return si + "." + b64u(signature)


UNSIGNED = {
    "alg-none": token({"alg": "none", "typ": "JWT"}, sign=False),
    "alg-none-with-signature": token({"alg": "none", "typ": "JWT"}, signature=b"s" * 32),
    "hs256-without-signature": token({"alg": "HS256", "typ": "JWT"}, sign=False),
}


@pytest.mark.parametrize("require", [None, True, False], ids=["default", "true", "false"])
@pytest.mark.parametrize("case", sorted(UNSIGNED))
def test_unsigned_tokens_are_refused_whatever_require_signed_tokens(backend, portico, require, case):
    """require-signed-tokens: true by default; `false` changes nothing (the
    documented decision): an unsigned token is refused with 401
    TokenSignatureInvalid `JWT is not signed.` and never reaches the
    backend, while a signed token passes under the same configuration."""
    conf = {"issuer-signing-keys": {"key": [base64.b64encode(SECRET).decode()]},
            "audiences": {"audience": ["orders"]}}
    if require is not None:
        conf["require-signed-tokens"] = require
    cfg = basic_config(backend.url)
    cfg["apis"][0]["policies"] = {"inbound": ["base", {"validate-jwt": conf}]}
    p = portico(cfg)
    mark = new_call_mark()
    status, _, body = p.request("GET", "/echo/items/1", headers={"Authorization": "Bearer " + UNSIGNED[case],
                                                                 CALL_MARK: mark})
    check_call_mark(mark, status)
    assert (status, json.loads(body)) == (401, {"statusCode": 401, "message": "JWT is not signed."})
    e = p.access_entries(wait_for=1)[0]
    assert (e["status"], e["reason"]) == (401, "TokenSignatureInvalid")
    assert backend.requests == []
    mark = new_call_mark()
    status, _, _ = p.request("GET", "/echo/items/1", headers={"Authorization": "Bearer " + token({"alg": "HS256"}),
                                                              CALL_MARK: mark})
    check_call_mark(mark, status)
    assert status == 200 and len(backend.requests) == 1
