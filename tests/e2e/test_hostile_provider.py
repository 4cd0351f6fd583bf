"""validate-jwt against identity providers that misbehave: a chunk of NUL
bytes, a key set too large or full of absurd keys, a server that trickles
one byte a second.  None of them may crash the gateway, hold its shutdown,
or make one request expensive; `portico -t` contacts none of them."""

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import BIN, basic_config
from test_jwt import Keys, b64u, claims, reason, send
from upstream_helpers import _Base, recv_head


class RawProvider(_Base):
    """Plain-http provider on 127.0.0.1 answering each path with bytes the
    test chooses (`routes[path]` is bytes, or a function(sock) that writes)."""

    def __init__(self):
        self.routes = {}
        self.hits = {}
        super().__init__()

    def serve(self, s, cid):
        s.settimeout(30)
        got = recv_head(s)
        if got is None:
            return
        path = got[0].split(b" ")[1].decode()
        with self.lock:
            self.hits[path] = self.hits.get(path, 0) + 1
            route = self.routes.get(path)
        if route is None:
            s.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        elif callable(route):
            route(s, self)
        else:
            s.sendall(route)

    def count(self, path):
        with self.lock:
            return self.hits.get(path, 0)

    def json(self, path, doc):
        body = json.dumps(doc).encode()
        self.routes[path] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
            len(body), body)

    def meta(self, jwks_path):
        self.json("/meta", {"issuer": self.url, "jwks_uri": self.url + jwks_path})

@pytest.fixture
def idp():
    p = RawProvider()
    yield p
    p.close()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return Keys(str(tmp_path_factory.mktemp("jwtkeys")))


@pytest.fixture(scope="module")
def extra_rsa(tmp_path_factory):
    """17 more RSA-2048 public keys (n) that sign nothing the tests send."""
    d = str(tmp_path_factory.mktemp("extra"))
    out = []
    for i in range(17):
        path = os.path.join(d, "k%d.pem" % i)
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path],
                       check=True, capture_output=True)
        mod = subprocess.run(["openssl", "rsa", "-in", path, "-noout", "-modulus"], check=True,
                             capture_output=True).stdout.decode().strip().split("=", 1)[1]
        out.append(b64u(bytes.fromhex(mod)))
    return out


def gw(backend, portico, idp, **env):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["policies"] = {"inbound": ["base", {"validate-jwt": {
        "openid-config": {"url": idp.url + "/meta"}}}]}
    return portico(cfg, env=env or None)


def wait_for(cond, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_nul_bytes_in_a_chunked_key_set_do_not_crash(backend, portico, idp, keys):
    idp.meta("/jwks")
    chunk = b"\0" * 0x40000
    idp.routes["/jwks"] = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % len(chunk) + chunk
                           + b"\r\n0\r\n\r\n")
    p = gw(backend, portico, idp)
    assert wait_for(lambda: idp.count("/jwks") >= 1)
    status, _ = send(p, keys.sign("RS256", claims(), kid="k"))
    assert status == 401 and reason(p, 1) == "TokenSignatureKeyNotFound"
    # the provider is retried every 10 s: the gateway lives through the retry
    assert wait_for(lambda: idp.count("/jwks") >= 2, timeout=25)
    time.sleep(0.3)
    assert p.proc.poll() is None
    assert p.request("GET", "/nowhere")[0] == 404
    assert "holds a NUL byte" in p.log_text()


def test_a_key_set_over_1_mib_is_reported_as_too_large(backend, portico, idp, keys):
    idp.meta("/jwks")
    big = {"keys": [], "pad": "x" * (1024 * 1024 + 10)}
    idp.json("/jwks", big)
    p = gw(backend, portico, idp)
    assert wait_for(lambda: "larger than" in p.log_text())
    log = p.log_text()
    assert "key set" in log and "has no keys" not in log


def test_chunked_key_set_over_1_mib_is_cut_off(backend, portico, idp):
    """No Content-Length to refuse up front: the decoder stops at the cap."""
    idp.meta("/jwks")

    def endless(s, _):
        s.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        part = b"%x\r\n%s\r\n" % (65536, b"[" * 65536)
        for _ in range(64):  # 4 MiB at most
            s.sendall(part)
    idp.routes["/jwks"] = endless
    p = gw(backend, portico, idp)
    assert wait_for(lambda: "larger than 1048576 bytes" in p.log_text())


def test_absurd_keys_are_left_out_and_a_token_tries_few_keys(backend, portico, idp, keys, extra_rsa):
    idp.meta("/jwks")
    huge_e = b64u(b"\x01" * 383 + b"\x01")  # a 3072-bit public exponent
    absurd = [{"kty": "RSA", "kid": "e%d" % i, "use": "sig", "n": keys.n, "e": huge_e} for i in range(100)]
    good = {"kty": "RSA", "use": "sig", "n": keys.n, "e": keys.e}  # no kid
    decoys = [{"kty": "RSA", "use": "sig", "n": n, "e": "AQAB"} for n in extra_rsa[:16]]
    # first: the good key behind 16 others; a token without kid is checked against 16 keys only
    idp.json("/jwks", {"keys": absurd + decoys + [good]})
    p = gw(backend, portico, idp)
    token = keys.sign("RS256", claims())
    status, _ = send(p, token)
    assert status == 401 and reason(p, 1) == "TokenSignatureInvalid"
    assert "100 keys left out" in p.log_text() and "32 bits" in p.log_text()
    p.stop()
    # then the good key among the first 16: accepted
    idp.json("/jwks", {"keys": absurd + decoys[:15] + [good]})
    p2 = gw(backend, portico, idp)
    assert send(p2, token)[0] == 200


def test_key_sets_keep_at_most_64_keys(backend, portico, idp, keys, extra_rsa):
    idp.meta("/jwks")
    many = [{"kty": "RSA", "kid": "d%d" % i, "use": "sig", "n": extra_rsa[i % 17], "e": "AQAB"} for i in range(800)]
    idp.json("/jwks", {"keys": many + [{"kty": "RSA", "kid": "good", "use": "sig", "n": keys.n, "e": keys.e}]})
    p = gw(backend, portico, idp)
    status, _ = send(p, keys.sign("RS256", claims(), kid="good"))
    assert status == 401 and reason(p, 1) == "TokenSignatureKeyNotFound"
    assert "737 keys left out" in p.log_text() and "first 64" in p.log_text()


def trickle(s, _):
    s.sendall(b"HTTP/1.1 200 OK\r\n")
    for _ in range(120):
        time.sleep(1)
        s.sendall(b"X")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_is_not_held_by_a_trickling_provider(backend, portico, idp, sig):
    idp.routes["/meta"] = trickle
    p = gw(backend, portico, idp)
    assert wait_for(lambda: idp.count("/meta") >= 1)
    time.sleep(1.5)  # the fetch is well under way
    t0 = time.monotonic()
    p.send_signal(sig)
    p.proc.wait(timeout=20)
    # SIGTERM waits for in-flight requests (there are none); the fetch is cancelled at once
    assert time.monotonic() - t0 < 5, "the gateway waited for the identity provider"


def test_a_trickling_provider_is_cut_at_the_fetch_deadline(backend, portico, idp):
    idp.routes["/meta"] = trickle
    p = gw(backend, portico, idp)
    assert wait_for(lambda: "timed out" in p.log_text(), timeout=20)
    assert "openid-config" in p.log_text()


def test_checking_a_configuration_contacts_no_provider(backend, portico, idp):
    idp.meta("/jwks")
    idp.json("/jwks", {"keys": []})
    p = gw(backend, portico, idp)
    p.stop()
    before = idp.count("/meta")
    r = subprocess.run([BIN, "-t", "-c", p.config_path], capture_output=True, timeout=30, cwd=p.workdir)
    assert r.returncode == 0, r.stderr
    time.sleep(0.5)
    assert idp.count("/meta") == before
    r = subprocess.run([BIN, "-P", "-c", p.config_path], capture_output=True, timeout=30,
                       cwd=p.workdir)
    time.sleep(0.3)
    assert idp.count("/meta") == before
