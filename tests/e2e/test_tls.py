"""TLS on both sides: HTTPS listeners (one certificate or several chosen by
SNI), configuration checks of certificate/key files, and HTTPS backends with
certificate verification (CA file, host name, IP address, verify: false)."""

import base64
import json
import os
import re
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

from conftest import BIN, basic_config, free_port, to_yaml
from tls_helpers import client_context, Pki, TLSEchoBackend, peer_names, read_http_response, tls_connect


@pytest.fixture(scope="module")
def pki():
    with tempfile.TemporaryDirectory(prefix="portico-pki-") as d:
        p = Pki(d)
        p.server = p.leaf("server", "localhost", ["DNS:localhost", "DNS:gw.test"])
        p.a = p.leaf("a", "a.test", ["DNS:a.test", "DNS:www.a.test"])
        p.b = p.leaf("b", "b.test", ["DNS:b.test"], kind="rsa")
        p.cn_only = p.leaf("cn-only", "c.test", [])
        p.backend = p.leaf("backend", "localhost", ["DNS:localhost"])
        p.backend_ip = p.leaf("backend-ip", "localhost", ["DNS:localhost", "IP:127.0.0.1"])
        p.backend_other_ca = p.leaf("backend-other", "localhost", ["DNS:localhost"], issuer="other")
        p.backend_wrong_name = p.leaf("backend-wrong", "other.test", ["DNS:other.test"])
        yield p


def tls_listener_config(backend_url, cert=None, certificates=None, **extra):
    """basic_config with a plain listener first (readiness) and a TLS one; returns (cfg, tls_port)."""
    cfg = basic_config(backend_url, **extra)
    tls_port = free_port()
    item = {"address": "127.0.0.1:%d" % tls_port}
    if cert:
        item["certificate"], item["key"] = cert
    else:
        item["certificates"] = [{"certificate": c, "key": k} for c, k in certificates]
    cfg["listen"] = cfg["listen"] + [item]
    return cfg, tls_port


def https_exchange(sock, request):
    sock.sendall(request)
    return read_http_response(sock.makefile("rb"))


def echo(body):
    return json.loads(body)


def entry_for(p, path, timeout=5.0):
    deadline = time.time() + timeout
    while True:
        matches = [e for e in p.access_entries() if e.get("path") == path]
        if matches or time.time() > deadline:
            return matches[-1] if matches else None
        time.sleep(0.02)


# ------------------------------------------------------------ TLS listener

def test_https_request_reaches_backend_with_https_forwarding_headers(backend, portico, pki):
    cfg, tls_port = tls_listener_config(backend.url, cert=pki.server)
    p = portico(cfg)
    with tls_connect(tls_port, pki.ca, "localhost") as s:
        assert s.version() in ("TLSv1.2", "TLSv1.3")
        cn, dns = peer_names(s)
        assert cn == "localhost" and "localhost" in dns
        status, headers, body = https_exchange(
            s, b"GET /echo/items/7?q=1 HTTP/1.1\r\nHost: api.example:8443\r\nX-Forwarded-Proto: http\r\n"
               b"Connection: close\r\n\r\n")
    assert status == 200
    assert echo(body)["target"] == "/base/items/7?q=1"
    req = backend.last()
    assert req is not None and req.target == "/base/items/7?q=1"
    assert req.header_all("X-Forwarded-Proto") == ["https"]
    assert req.header("Forwarded") == 'for=127.0.0.1;host="api.example:8443";proto=https'
    assert req.header("X-Forwarded-For") == "127.0.0.1"
    e = entry_for(p, "/echo/items/7")
    assert e is not None and e["status"] == 200 and e["operation"] == "get-item"
    # the plain listener of the same gateway still says http
    status, _, _ = p.request("GET", "/echo/items/8")
    assert status == 200
    assert backend.last().header_all("X-Forwarded-Proto") == ["http"]
    assert backend.last().header("Forwarded").endswith(";proto=http")


def test_keepalive_over_tls(backend, portico, pki):
    cfg, tls_port = tls_listener_config(backend.url, cert=pki.server)
    portico(cfg)
    body = os.urandom(100_000)
    with tls_connect(tls_port, pki.ca, "localhost") as s:
        f = s.makefile("rb")
        for i in range(6):
            if i == 3:
                s.sendall(b"POST /echo/items HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            else:
                s.sendall(b"GET /echo/items/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            status, headers, data = read_http_response(f)
            assert status == 200, i
            assert headers.get("connection", "").lower() != "close"
            got = echo(data)
            if i == 3:
                assert got["method"] == "POST" and got["target"] == "/base/items"
                assert base64.b64decode(got["body"]) == body
            else:
                assert got["target"] == "/base/items/%d" % i
        # two pipelined requests on the same TLS connection
        s.sendall(b"GET /echo/items/p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /echo/items/p2 HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
        assert echo(read_http_response(f)[2])["target"] == "/base/items/p1"
        assert echo(read_http_response(f)[2])["target"] == "/base/items/p2"
        s.settimeout(5)
        assert f.read() == b""  # closed after Connection: close
    targets = [r.target for r in backend.requests]
    assert targets == ["/base/items/0", "/base/items/1", "/base/items/2", "/base/items", "/base/items/4",
                       "/base/items/5", "/base/items/p1", "/base/items/p2"]


@pytest.mark.parametrize("sni,expected_cn", [
    ("a.test", "a.test"),
    ("www.a.test", "a.test"),
    ("b.test", "b.test"),
    ("c.test", "c.test"),          # no subjectAltName: the CN is the name
    ("unknown.test", "a.test"),    # no match: the first certificate
    (None, "a.test"),              # no SNI at all: the first certificate
])
def test_sni_selects_certificate(backend, portico, pki, sni, expected_cn):
    cfg, tls_port = tls_listener_config(backend.url, certificates=[pki.a, pki.b, pki.cn_only])
    portico(cfg)
    # hostname checking is done below by hand: the fallback cases present a name that does not match
    with tls_connect(tls_port, pki.ca, sni, check_hostname=False) as s:
        cn, dns = peer_names(s)
        assert cn == expected_cn, (sni, cn, dns)
        if expected_cn == "a.test":
            assert sorted(dns) == ["a.test", "www.a.test"]
        elif expected_cn == "b.test":
            assert dns == ["b.test"]
        else:
            assert dns == []
        status, _, body = https_exchange(s, b"GET /echo/items/sni HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status == 200 and echo(body)["target"] == "/base/items/sni"
    assert backend.last().header_all("X-Forwarded-Proto") == ["https"]


def test_sni_match_verifies_with_hostname_check(backend, portico, pki):
    """A normal client (hostname checking on) gets a valid certificate for each configured name."""
    cfg, tls_port = tls_listener_config(backend.url, certificates=[pki.a, pki.b])
    portico(cfg)
    for name in ("a.test", "www.a.test", "b.test", "a.test"):
        with tls_connect(tls_port, pki.ca, name) as s:
            status, _, _ = https_exchange(s, b"GET /echo/items/1 HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                                          % name.encode())
            assert status == 200
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_connect(tls_port, pki.ca, "unknown.test")


def test_plain_http_and_garbage_on_tls_port_fail_cleanly(backend, portico, pki):
    cfg, tls_port = tls_listener_config(backend.url, cert=pki.server)
    p = portico(cfg)
    junk = [
        b"GET /echo/items/1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 20,  # truncated ClientHello, then EOF
        b"\x00" * 4096,
        b"",
    ]
    for data in junk:
        s = socket.create_connection(("127.0.0.1", tls_port), timeout=5)
        try:
            start = time.time()
            if data:
                s.sendall(data)
            if data.startswith(b"\x16"):
                s.shutdown(socket.SHUT_WR)
            out = bytearray()
            closed = False
            while time.time() - start < 5:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    closed = True
                    break
                except socket.timeout:
                    break
                if not chunk:
                    closed = True
                    break
                out += chunk
            if data:
                # no HTTP success, and the gateway closes the connection itself (no waiting for a timeout)
                assert not out.startswith(b"HTTP/1.1 2"), out[:100]
                assert closed, "the gateway kept a failed TLS connection open"
        finally:
            s.close()
    assert p.proc.poll() is None, "the gateway died"
    assert backend.requests == []
    # still serving, on both listeners
    with tls_connect(tls_port, pki.ca, "localhost") as s:
        status, _, body = https_exchange(s, b"GET /echo/items/ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200 and echo(body)["target"] == "/base/items/ok"
    assert p.request("GET", "/echo/items/plain")[0] == 200
    assert [r.target for r in backend.requests] == ["/base/items/ok", "/base/items/plain"]


def test_client_with_untrusting_ca_fails_and_gateway_survives(backend, portico, pki):
    cfg, tls_port = tls_listener_config(backend.url, cert=pki.server)
    p = portico(cfg)
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_connect(tls_port, pki.other_ca, "localhost")
    assert p.proc.poll() is None
    with tls_connect(tls_port, pki.ca, "localhost") as s:
        assert https_exchange(s, b"GET /echo/items/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] == 200


# ------------------------------------------------------- configuration checks

def run_check(workdir, cfg):
    path = os.path.join(workdir, "check.yaml")
    text = to_yaml(cfg) + "\n"
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run([BIN, "-t", "-c", path], cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    return path, text, r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def lines_of(text, *needles):
    """1-based numbers of the lines containing any of the needles."""
    return {i + 1 for i, line in enumerate(text.split("\n")) if any(n in line for n in needles)}


@pytest.mark.parametrize("case", ["missing-key", "mismatched-key", "missing-certificate", "key-is-a-certificate"])
@pytest.mark.parametrize("form", ["single", "list"])
def test_config_check_refuses_bad_certificate_or_key(pki, workdir, case, form):
    cert, key = pki.server
    bad_path = None
    if case == "missing-key":
        key = bad_path = os.path.join(workdir, "no-such.key")
    elif case == "mismatched-key":
        key = bad_path = pki.a[1]
    elif case == "missing-certificate":
        cert = bad_path = os.path.join(workdir, "no-such.pem")
    elif case == "key-is-a-certificate":
        key = bad_path = pki.server[0].replace("server.pem", "a.pem")
    if form == "single":
        cfg, _ = tls_listener_config("http://127.0.0.1:9", cert=(cert, key))
    else:
        cfg, _ = tls_listener_config("http://127.0.0.1:9", certificates=[pki.b, (cert, key)])
    path, text, rc, out, err = run_check(workdir, cfg)
    assert rc != 0, (out, err)
    assert "is valid" not in out
    located = re.findall(r"^%s:(\d+):(\d+): (.*)$" % re.escape(path), err, re.M)
    assert located, err
    # the error points into the listener entry that has the bad file, and names the file
    if form == "single":
        allowed = lines_of(text, '"address": ', "address:", cert, key) - lines_of(text, "serviceUrl")
    else:
        allowed = lines_of(text, cert, key) - lines_of(text, pki.b[0], pki.b[1])
    assert any(int(line) in allowed and int(col) >= 1 and bad_path in msg for line, col, msg in located), \
        (err, sorted(allowed))
    # the same configuration does not start either
    r = subprocess.run([BIN, "-c", path], cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    assert r.returncode != 0


def test_config_check_accepts_good_tls_config(pki, workdir):
    cfg, _ = tls_listener_config("https://localhost:9", certificates=[pki.a, pki.b],
                                 upstream={"caFile": pki.ca, "verify": True})
    path, text, rc, out, err = run_check(workdir, cfg)
    assert rc == 0, err
    assert "is valid" in out


def test_config_check_refuses_missing_ca_file(pki, workdir):
    missing = os.path.join(workdir, "no-such-ca.pem")
    cfg = basic_config("https://localhost:9", upstream={"caFile": missing})
    path, text, rc, out, err = run_check(workdir, cfg)
    assert rc != 0, (out, err)
    assert missing in err


# ------------------------------------------------------------ HTTPS backends

def https_backend_config(url, upstream=None):
    cfg = basic_config(url)
    if upstream is not None:
        cfg["upstream"] = upstream
    return cfg


@pytest.fixture
def tls_backends():
    started = []

    def make(cert_key, **kw):
        b = TLSEchoBackend(*cert_key, **kw)
        started.append(b)
        return b
    yield make
    for b in started:
        b.close()


def test_https_backend_with_ca_file(portico, pki, tls_backends):
    b = tls_backends(pki.backend)
    p = portico(https_backend_config(b.url, upstream={"caFile": pki.ca}))
    status, headers, body = p.request("GET", "/echo/items/1?x=y")
    assert status == 200, body
    assert echo(body)["target"] == "/base/items/1?x=y"
    payload = os.urandom(300_000)
    status, _, body = p.request("POST", "/echo/items", body=payload)
    assert status == 200
    assert base64.b64decode(echo(body)["body"]) == payload
    assert [r.target for r in b.requests] == ["/base/items/1?x=y", "/base/items"]
    assert b.requests[0].header("Host") == "localhost:%d" % b.port
    assert b.sni and all(name == "localhost" for name in b.sni), b.sni
    assert b.tls_errors == []


def test_tls_on_both_sides(portico, pki, tls_backends):
    b = tls_backends(pki.backend)
    cfg, tls_port = tls_listener_config(b.url, cert=pki.server, upstream={"caFile": pki.ca,
                                                                                     "verify": True})
    portico(cfg)
    with tls_connect(tls_port, pki.ca, "gw.test") as s:
        f = s.makefile("rb")
        for i in range(3):
            s.sendall(b"GET /echo/items/%d HTTP/1.1\r\nHost: gw.test\r\n\r\n" % i)
            status, _, body = read_http_response(f)
            assert status == 200 and echo(body)["target"] == "/base/items/%d" % i
    assert len(b.requests) == 3
    assert all(r.header_all("X-Forwarded-Proto") == ["https"] for r in b.requests)
    assert set(b.sni) == {"localhost"}


def assert_backend_connection_failure(p, b, path):
    status, headers, body = p.request("GET", path)
    assert status == 502, body
    e = entry_for(p, path.split("?")[0])
    assert e is not None and e["status"] == 502 and e.get("reason") == "BackendConnectionFailure", e
    assert b.requests == [], "the backend got a request over an unverified connection"
    deadline = time.time() + 5
    while not b.tls_errors and time.time() < deadline:
        time.sleep(0.02)
    assert b.tls_errors, "the backend saw no failed handshake"


def test_backend_signed_by_other_ca_is_refused(portico, pki, tls_backends):
    b = tls_backends(pki.backend_other_ca)
    p = portico(https_backend_config(b.url, upstream={"caFile": pki.ca, "verify": True}))
    assert_backend_connection_failure(p, b, "/echo/items/1")
    assert p.proc.poll() is None


def test_backend_with_wrong_name_is_refused(portico, pki, tls_backends):
    b = tls_backends(pki.backend_wrong_name)
    p = portico(https_backend_config(b.url, upstream={"caFile": pki.ca}))
    assert_backend_connection_failure(p, b, "/echo/items/1")
    assert b.sni and all(name == "localhost" for name in b.sni)


def test_backend_ip_url_needs_ip_in_certificate(portico, pki, tls_backends):
    b = tls_backends(pki.backend)  # DNS:localhost only
    p = portico(https_backend_config(b.ip_url, upstream={"caFile": pki.ca}))
    assert_backend_connection_failure(p, b, "/echo/items/1")


def test_backend_ip_url_with_ip_san_is_accepted(portico, pki, tls_backends):
    b = tls_backends(pki.backend_ip)  # DNS:localhost, IP:127.0.0.1
    p = portico(https_backend_config(b.ip_url, upstream={"caFile": pki.ca}))
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 200, body
    assert echo(body)["target"] == "/base/items/1"
    # RFC 6066: an IP literal is never sent as SNI
    assert b.sni and all(name is None for name in b.sni), b.sni


def test_default_verification_uses_system_store(portico, pki, tls_backends):
    """No upstream section at all: verification is on and the test CA is not in the system store."""
    b = tls_backends(pki.backend)
    p = portico(https_backend_config(b.url))
    assert_backend_connection_failure(p, b, "/echo/items/1")


@pytest.mark.parametrize("which,use_ip", [("backend_other_ca", False), ("backend_wrong_name", False),
                                          ("backend", True)])
def test_verify_false_accepts_any_backend_certificate(portico, pki, tls_backends, which, use_ip):
    b = tls_backends(getattr(pki, which))
    url = b.ip_url if use_ip else b.url
    p = portico(https_backend_config(url, upstream={"verify": False}))
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 200, body
    assert echo(body)["target"] == "/base/items/1"
    assert len(b.requests) == 1
    assert b.sni == ([None] if use_ip else ["localhost"])


# ------------------------------------------------------------ versions and suites

def tls12_client(port, ciphers, ca, name="b.test"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(ciphers + ":@SECLEVEL=0")
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(s, server_hostname=name)


@pytest.mark.parametrize("cipher, accepted", [
    ("AES128-SHA", False),                   # static RSA key exchange, CBC, SHA-1
    ("AES256-GCM-SHA384", False),            # static RSA key exchange
    ("ECDHE-RSA-AES128-SHA", False),         # forward secret, but CBC with SHA-1
    ("ECDHE-RSA-AES128-GCM-SHA256", True),
    ("ECDHE-RSA-CHACHA20-POLY1305", True),
])
def test_default_tls12_suites_are_forward_secret_aead(backend, portico, pki, cipher, accepted):
    cfg, port = tls_listener_config(backend.url, cert=pki.b)
    p = portico(cfg)
    if accepted:
        with tls12_client(port, cipher, pki.ca) as s:
            assert s.cipher()[0] == cipher
            s.sendall(b"GET /echo/items/1 HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n")
            assert s.recv(12) == b"HTTP/1.1 200"
    else:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls12_client(port, cipher, pki.ca).close()
    # TLS 1.3 works by default
    ctx = client_context(pki.ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="b.test") as s:
        assert s.version() == "TLSv1.3"


def test_tls_versions_and_suites_are_configurable(backend, portico, pki, workdir):
    cfg, port = tls_listener_config(backend.url, cert=pki.b)
    cfg["listen"][1]["tls"] = {"ciphers": "AES128-SHA:ECDHE-RSA-AES128-GCM-SHA256"}
    p = portico(cfg)
    with tls12_client(port, "AES128-SHA", pki.ca) as s:
        assert s.cipher()[0] == "AES128-SHA"
    p.stop()
    cfg, port = tls_listener_config(backend.url, cert=pki.b)
    cfg["listen"][1]["tls"] = {"minVersion": "1.3", "ciphersuites": "TLS_CHACHA20_POLY1305_SHA256"}
    p2 = portico(cfg)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls12_client(port, "ECDHE-RSA-AES128-GCM-SHA256", pki.ca).close()
    ctx = client_context(pki.ca)
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="b.test") as s:
        assert s.version() == "TLSv1.3" and s.cipher()[0] == "TLS_CHACHA20_POLY1305_SHA256"
    # mistakes are configuration errors with their position
    for bad, says in ((({"minVersion": "1.0"}), "minVersion"), ({"ciphers": "NOT-A-CIPHER"}, "no cipher"),
                      ({"ciphersuites": "TLS_NOPE"}, "no TLS 1.3 suite"), ({"cipher": "x"}, "unknown key")):
        cfg, _ = tls_listener_config(backend.url, cert=pki.b)
        cfg["listen"][1]["tls"] = bad
        path, text, rc, out, err = run_check(workdir, cfg)
        assert rc != 0 and says in out + err and "check.yaml:" in out + err, out + err


def test_backend_tls_follows_upstream_tls(portico, pki, tls_backends):
    b = tls_backends(pki.backend)
    # a backend that speaks TLS 1.2 and 1.3: requiring 1.3 still works
    p = portico(https_backend_config(b.url, upstream={"caFile": pki.ca, "tls": {"minVersion": "1.3"}}))
    assert p.request("GET", "/echo/items/1")[0] == 200
    p.stop()
    # suites the backend does not share: no connection (502)
    p2 = portico(https_backend_config(b.url, upstream={"caFile": pki.ca, "tls": {
        "minVersion": "1.3", "ciphersuites": "TLS_AES_128_CCM_8_SHA256"}}))
    assert p2.request("GET", "/echo/items/1")[0] == 502


@pytest.mark.parametrize("sni, expected_cn", [
    ("api.w.test", "*.w.test"),      # one label under the wildcard
    ("x.api.w.test", "a.test"),      # two labels: no match, the first certificate
    ("w.test", "a.test"),            # the bare domain is not covered
])
def test_wildcard_sni_certificate_matches_one_label(backend, portico, pki, sni, expected_cn):
    wild = pki.leaf("wild", "*.w.test", ["DNS:*.w.test"])
    cfg, tls_port = tls_listener_config(backend.url, certificates=[pki.a, wild])
    portico(cfg)
    with tls_connect(tls_port, pki.ca, sni, check_hostname=False) as s:
        cn, _ = peer_names(s)
        assert cn == expected_cn, (sni, cn)
