"""validate-client-certificate (plugins/access) on a TLS listener that asks
for client certificates, with a test CA made by the openssl CLI."""

import json
import socket
import ssl
import tempfile

import pytest

from conftest import CALL_MARK, check_call_mark, new_call_mark, basic_config, free_port
from tls_helpers import Pki, read_http_response


@pytest.fixture(scope="module")
def pki():
    with tempfile.TemporaryDirectory(prefix="portico-pki-") as d:
        p = Pki(d)
        p.server = p.leaf("server", "localhost", ["DNS:localhost"])
        p.alice = p.leaf("alice", "alice", ["DNS:alice.example"], eku="clientAuth")
        p.bob = p.leaf("bob", "bob", [], eku="clientAuth")
        p.mallory = p.leaf("mallory", "alice", ["DNS:alice.example"], issuer="other", eku="clientAuth")
        yield p


def gateway(backend, portico, pki, policy, mode="optional"):
    cfg = basic_config(backend.url)
    port = free_port()
    cfg["listen"].append({"address": "127.0.0.1:%d" % port, "certificate": pki.server[0], "key": pki.server[1],
                          "clientCertificate": mode, "clientCa": pki.ca})
    cfg["apis"][0]["policies"] = {"inbound": ["base", {"validate-client-certificate": policy}]}
    return portico(cfg), port


pytestmark = pytest.mark.usefixtures("refusals_leave_the_backend_alone")


def get(port, pki, cert=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=pki.ca)
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    mark = new_call_mark()
    try:
        s.sendall(b"GET /echo/items/1 HTTP/1.1\r\nHost: localhost\r\n%s: %s\r\nConnection: close\r\n\r\n"
                  % (CALL_MARK.encode(), mark.encode()))
        status, headers, body = read_http_response(s.makefile("rb"))
    finally:
        s.close()
    check_call_mark(mark, status)
    return status, (json.loads(body) if status != 200 else None)


def test_trusted_certificate_passes(backend, portico, pki):
    p, port = gateway(backend, portico, pki, {})
    assert get(port, pki, pki.alice)[0] == 200


def test_missing_and_untrusted_certificates(backend, portico, pki):
    p, port = gateway(backend, portico, pki, {})
    status, body = get(port, pki)
    assert status == 401 and p.access_entries(wait_for=1)[-1]["reason"] == "ClientCertificateMissing"
    status, body = get(port, pki, pki.mallory)  # same names, another CA
    assert status == 401 and p.access_entries(wait_for=2)[-1]["reason"] == "ClientCertificateNotTrusted"
    assert backend.last() is None


def test_identities(backend, portico, pki):
    p, port = gateway(backend, portico, pki, {"identities": {"identity": [
        {"common-name": "alice", "dns-name": "alice.example"},
        {"subject": "CN=carol"}]}})
    assert get(port, pki, pki.alice)[0] == 200
    status, _ = get(port, pki, pki.bob)
    assert status == 401 and p.access_entries(wait_for=2)[-1]["reason"] == "ClientCertificateIdentityNotAllowed"


def test_thumbprint_identity(backend, portico, pki):
    import hashlib
    import subprocess
    der = subprocess.run(["openssl", "x509", "-in", pki.bob[0], "-outform", "DER"], capture_output=True,
                         check=True).stdout
    thumb = hashlib.sha1(der).hexdigest()
    p, port = gateway(backend, portico, pki, {"identities": {"identity": [{"thumbprint": thumb}]}})
    assert get(port, pki, pki.bob)[0] == 200
    assert get(port, pki, pki.alice)[0] == 401


def test_required_mode_refuses_the_handshake_without_a_certificate(backend, portico, pki):
    p, port = gateway(backend, portico, pki, {}, mode="required")
    refused_at_handshake(lambda: get(port, pki))
    assert backend.last() is None
    assert get(port, pki, pki.alice)[0] == 200


def refused_at_handshake(connect):
    """The TLS handshake refuses the client: an alert (TLS 1.2 fails the
    handshake; TLS 1.3 sends it on the first read), the handshake closed, or
    the connection reset right after -- never an HTTP answer."""
    try:
        got = connect()
    except ssl.SSLEOFError:
        return  # the server closed the handshake
    except ssl.SSLError as e:
        assert any(w in str(e).lower() for w in ("alert", "certificate", "handshake")), e
        return
    except (ConnectionResetError, BrokenPipeError):
        return
    raise AssertionError("the handshake went through: %r" % (got,))


def test_ignore_error_goes_on(backend, portico, pki):
    cfg_policy = {"ignore-error": True}
    p, port = gateway(backend, portico, pki, cfg_policy)
    assert get(port, pki)[0] == 200


def test_revocation_without_revocation_lists_refuses_nothing(backend, portico, pki):
    """validate-revocation (true by default, as APIM) consults the certificate store's CRLs
    (test_certificates.py); with none, a trusted certificate passes."""
    p, port = gateway(backend, portico, pki, {"validate-revocation": True})
    assert get(port, pki, pki.alice)[0] == 200


# ------------------------------------------------ authentication-certificate

def test_authentication_certificate_towards_the_backend(portico, pki):
    from tls_helpers import TLSEchoBackend
    be_cert = pki.leaf("backend-mtls", "localhost", ["DNS:localhost"])
    client = pki.leaf("gateway-client", "gateway", [], eku="clientAuth")
    backend = TLSEchoBackend(*be_cert, client_ca=pki.ca)
    try:
        cfg = basic_config("https://localhost:%d" % backend.port, upstream={"caFile": pki.ca})
        cfg["apis"][0]["operations"].append({"id": "plain", "method": "GET", "urlTemplate": "/plain"})
        cfg["apis"][0]["operations"][0]["policies"] = {"inbound": ["base", {
            "authentication-certificate": {"certificate": client[0], "key": client[1]}}]}
        p = portico(cfg)
        status, _, _ = p.request("GET", "/echo/items/1")
        assert status == 200
        assert backend.client_cns == ["gateway"]
        # an operation without the policy reaches the same backend without a certificate: refused there
        status, _, body = p.request("GET", "/echo/plain")
        assert status == 502 and json.loads(body)["statusCode"] == 502, body
        assert p.access_entries(wait_for=2)[-1]["reason"] == "BackendConnectionFailure"
        assert p.request("GET", "/echo/items/2")[0] == 200  # pooled apart, still works
    finally:
        backend.close()


def test_authentication_certificate_bad_files(backend, portico, pki):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["policies"] = {"inbound": [{"authentication-certificate": {"certificate": "nope.pem",
                                                                              "key": "nope.key"}}]}
    p = portico(cfg, start=False)
    code, out = p.check()
    assert code != 0 and "the certificate cannot be loaded" in out and "nope.pem" in out


def plain_gateway(backend, portico, pki, mode):
    cfg = basic_config(backend.url)
    port = free_port()
    cfg["listen"].append({"address": "127.0.0.1:%d" % port, "certificate": pki.server[0], "key": pki.server[1],
                          "clientCertificate": mode, "clientCa": pki.ca})
    return portico(cfg), port


def test_required_without_the_policy_warns_and_the_access_log_says_what_came(backend, portico, pki):
    """clientCertificate: required lets an untrusted certificate through the
    handshake; without validate-client-certificate nothing checks it: the
    gateway says so, and the access log records what each client showed."""
    p, port = plain_gateway(backend, portico, pki, "required")
    assert "no policy uses validate-client-certificate" in p.log_text()
    rc, out = p.check()
    assert rc == 0 and "no policy uses validate-client-certificate" in out, out
    assert get(port, pki, pki.mallory)[0] == 200  # what the warning is about
    e = p.access_entries(wait_for=1)[-1]
    cc = e["clientCertificate"]
    assert "CN=alice" in cc["subject"] and cc["verify"] != "ok", cc
    assert get(port, pki, pki.alice)[0] == 200
    assert p.access_entries(wait_for=2)[-1]["clientCertificate"]["verify"] == "ok"


def test_verified_mode_refuses_untrusted_certificates_at_the_handshake(backend, portico, pki):
    p, port = plain_gateway(backend, portico, pki, "verified")
    assert "validate-client-certificate" not in p.log_text()
    refused_at_handshake(lambda: get(port, pki, pki.mallory))
    refused_at_handshake(lambda: get(port, pki))
    assert get(port, pki, pki.alice)[0] == 200
    assert backend.last() is not None and len([e for e in p.access_entries(wait_for=1)]) == 1
