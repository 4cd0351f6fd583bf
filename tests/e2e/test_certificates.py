"""The certificate store (`certificates:` and /management/certificates):
PEM and PKCS#12 uploads, what reads show (never the key), certificates
named by authentication-certificate and validate-client-certificate, CA
certificates and revocation lists of the store, expiry reporting.  The
certificates are made by the openssl CLI (tls_helpers.Pki)."""

import base64
import contextlib
import glob
import hashlib
import json
import os
import subprocess
import tempfile

import pytest

from conftest import basic_config, free_port
from mgmt_helpers import TOKEN, Mgmt, mgmt_config
from test_client_cert import get as tls_get
from tls_helpers import Pki, TLSEchoBackend, _openssl


@pytest.fixture(scope="module")
def pki():
    with tempfile.TemporaryDirectory(prefix="portico-pki-") as d:
        p = Pki(d)
        p.server = p.leaf("server", "localhost", ["DNS:localhost"])
        p.alice = p.leaf("alice", "alice", [], eku="clientAuth")
        p.eve = p.leaf("eve", "eve", [], eku="clientAuth")  # revoked below
        p.mallory = p.leaf("mallory", "alice", [], issuer="other", eku="clientAuth")
        os.makedirs(p.path("impostor-ca"), exist_ok=True)
        imp = Pki(p.path("impostor-ca"))  # a CA named "Portico Test CA" too, with another key
        p.impostor = imp.leaf("alice-forged", "alice", [], eku="clientAuth")
        p.gateway = p.leaf("gateway-client", "gateway", [], eku="clientAuth", days=90)
        p.soon = p.leaf("soon", "soon", [], eku="clientAuth", days=10)
        p.backend_cert = p.leaf("backend-mtls", "localhost", ["DNS:localhost"])
        yield p


def read(path):
    with open(path) as f:
        return f.read()


def thumbprint(pem_path):
    der = subprocess.run(["openssl", "x509", "-in", pem_path, "-outform", "DER"], capture_output=True,
                         check=True).stdout
    return hashlib.sha1(der).hexdigest().upper()


def pem_with_key(pair):
    return read(pair[0]) + read(pair[1])


def admin(backend, portico, **extra):
    cfg = mgmt_config(backend.url, **extra)
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    return p, Mgmt(p)


def no_secret_in(text, pki, pair):
    """Neither the key's PEM nor its base64 body appears in text."""
    key_body = "".join(l for l in read(pair[1]).splitlines() if not l.startswith("-----"))
    assert "PRIVATE KEY" not in text and key_body[:40] not in text


# ------------------------------------------------------------ the REST API

def test_pkcs12_upload_shows_thumbprint_never_the_key(backend, portico, pki, workdir):
    p, m = admin(backend, portico)
    p12 = base64.b64encode(pki.pkcs12("gw", pki.gateway[0], pki.gateway[1], "s3cret")).decode()
    status, _, out = m.call("PUT", "certificates/gw", {"properties": {"data": p12, "password": "s3cret"}})
    assert status == 201, out
    assert out["thumbprint"] == thumbprint(pki.gateway[0])
    assert out["subject"] == "CN=gateway" and out["issuer"] == "CN=Portico Test CA"
    assert out["hasPrivateKey"] is True and out["expiresInDays"] in (89, 90) and out["nearExpiry"] is False
    for shown in (out, m.ok("GET", "certificates/gw"), m.ok("GET", "certificates")["value"][0]):
        assert "data" not in shown and "password" not in shown and "sealedKey" not in shown, shown
    export = m.call("GET", "export")[2]
    assert export["certificates"][0]["id"] == "gw"
    text = json.dumps(export)
    no_secret_in(text, pki, pki.gateway)
    assert "s3cret" not in text
    # at rest: sealed, nowhere in the store's files or the logs
    for f in glob.glob(os.path.join(workdir, "**"), recursive=True):
        if os.path.isfile(f) and not f.endswith((".pem", ".key", ".p12")):
            with open(f, "rb") as fh:
                data = fh.read()
            assert b"PRIVATE KEY" not in data and b"s3cret" not in data, f


def test_pkcs12_wrong_or_missing_password_is_a_400(backend, portico, pki):
    p, m = admin(backend, portico)
    p12 = base64.b64encode(pki.pkcs12("gw2", pki.gateway[0], pki.gateway[1], "right")).decode()
    status, _, out = m.call("PUT", "certificates/gw", {"properties": {"data": p12, "password": "wrong"}})
    assert status == 400 and "password does not open the PKCS#12" in json.dumps(out), out
    status, _, out = m.call("PUT", "certificates/gw", {"data": p12})
    assert status == 400 and "password" in json.dumps(out), out
    assert m.call("GET", "certificates/gw")[0] == 404
    m.ok("PUT", "certificates/gw", {"properties": {"data": p12, "password": "right"}})
    log = p.log_text()
    assert "right" not in log and "wrong" not in log and p12[:40] not in log, log


def test_pkcs12_asking_for_endless_key_derivation_is_refused(backend, portico, pki):
    """A file made to keep the gateway deriving keys is refused before any work (the bound is
    600000 iterations; exports use 2000 to 10000)."""
    p, m = admin(backend, portico)
    p12 = base64.b64encode(pki.pkcs12("slow", pki.gateway[0], pki.gateway[1], "pw", iterations=700000)).decode()
    status, _, out = m.call("PUT", "certificates/slow", {"data": p12, "password": "pw"})
    assert status == 400 and "too many key derivation iterations" in json.dumps(out), out
    assert m.call("GET", "certificates/slow")[0] == 404


def test_pkcs12_key_derivation_is_bounded_per_upload(backend, portico, pki):
    """Each derivation below the bound, but the MAC, the certificates' part and the key together
    (the MAC and the encrypted part derived twice) pass the upload's 2000000."""
    p, m = admin(backend, portico)
    p12 = base64.b64encode(pki.pkcs12("sum", pki.gateway[0], pki.gateway[1], "pw", iterations=500000)).decode()
    status, _, out = m.call("PUT", "certificates/sum", {"data": p12, "password": "pw"})
    assert status == 400 and "2000000 in all" in json.dumps(out), out
    assert m.call("GET", "certificates/sum")[0] == 404
    p12 = base64.b64encode(pki.pkcs12("fair", pki.gateway[0], pki.gateway[1], "pw", iterations=200000)).decode()
    assert m.ok("PUT", "certificates/fair", {"data": p12, "password": "pw"})["hasPrivateKey"] is True


def test_pem_without_key_and_patch_keeps_the_key(backend, portico, pki):
    p, m = admin(backend, portico)
    out = m.ok("PUT", "certificates/ca", {"data": read(pki.ca)})
    assert out["hasPrivateKey"] is False and out["thumbprint"] == thumbprint(pki.ca)
    m.ok("PUT", "certificates/gw", {"data": pem_with_key(pki.gateway), "description": "first"})
    out = m.ok("PATCH", "certificates/gw", {"description": "second"})
    assert out["description"] == "second" and out["hasPrivateKey"] is True


def test_a_long_non_ascii_subject_is_stored_and_shown(backend, portico, pki):
    """A name longer than what reads show is cut between characters, never inside one."""
    p, m = admin(backend, portico)
    for pad in range(3):  # each padding puts the cut at another byte of a two-byte character
        key, pem = pki.path("utf8-%d.key" % pad), pki.path("utf8-%d.pem" % pad)
        subj = "/CN=x" + "".join("/OU=" + "\u00e9" * 30 for _ in range(12)) + "/OU=" + "a" * pad
        subprocess.run(["openssl", "req", "-x509", "-utf8", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", key, "-out", pem, "-days", "30", "-subj", subj], check=True,
                       capture_output=True)
        out = m.ok("PUT", "certificates/u%d" % pad, {"data": read(pem)})
        assert out["subject"].startswith("OU=a" if pad else "OU=\u00e9") or "\u00e9\u00e9" in out["subject"], out
        assert "\u00e9" * 30 in m.ok("GET", "certificates/u%d" % pad)["subject"]
    cfg = basic_config(backend.url)
    cfg["certificates"] = [{"id": "u", "data": read(pki.path("utf8-1.pem"))}]
    code, out = portico(cfg, start=False).check()
    assert code == 0, out


@pytest.mark.parametrize("data, reason", ids=["text", "der-garbage", "empty-pem", "huge"], argvalues=[
    ("not a certificate at all!", "neither PEM nor base64"),
    (base64.b64encode(b"\x30\x82garbage" * 50).decode(), "neither a PKCS#12 file nor a DER certificate"),
    ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "no certificate found"),
    ("A" * (300 * 1024), "larger than 256 KB"),
])
def test_garbage_uploads_are_400_with_the_reason(backend, portico, pki, data, reason):
    p, m = admin(backend, portico)
    status, _, out = m.call("PUT", "certificates/bad", {"data": data})
    assert status in (400, 413) and (status == 413 or reason in json.dumps(out)), (status, out)
    assert m.call("GET", "certificates/bad")[0] == 404
    assert m.call("GET", "certificates")[2]["count"] == 0


def test_a_key_that_is_not_the_certificates_is_refused(backend, portico, pki):
    p, m = admin(backend, portico)
    status, _, out = m.call("PUT", "certificates/mix", {"data": read(pki.gateway[0]) + read(pki.alice[1])})
    assert status == 400 and "does not belong to the certificate" in json.dumps(out), out


def test_non_administrators_cannot_write_or_see_keys(backend, portico, pki):
    p, m = admin(backend, portico)
    m.ok("PUT", "workspaces/wsa", {"displayName": "A"})
    m.ok("PUT", "certificates/gw", {"data": pem_with_key(pki.gateway)})
    for role in ("reader", "workspaceContributor", "apiDeveloper"):
        body = {"role": role}
        if role != "reader":
            body["workspace"] = "wsa"
        tok = m.ok("PUT", "tokens/t-" + role, body)["token"]
        status, _, _ = m.call("PUT", "certificates/mine", {"data": pem_with_key(pki.alice)}, token=tok)
        assert status == 403, role
        assert m.call("DELETE", "certificates/gw", token=tok)[0] == 403, role
        status, _, out = m.call("GET", "certificates/gw", token=tok)
        if role == "reader":  # reads the service's certificates, never a key
            assert status == 200 and out["hasPrivateKey"] is True, out
            no_secret_in(json.dumps(out), pki, pki.gateway)
        else:  # service-level entities are not a workspace role's
            assert status == 403, (role, status, out)
    assert m.call("GET", "certificates/mine")[0] == 404
    assert m.ok("GET", "certificates/gw")["hasPrivateKey"] is True


# -------------------------------------------------- authentication-certificate

def mtls_backend(pki):
    return TLSEchoBackend(*pki.backend_cert, client_ca=pki.ca)


@contextlib.contextmanager
def behind_mtls(portico, pki):
    """A gateway with the management API in front of a backend that asks for client
    certificates (trusting the test CA): yields the backend, the gateway and its Mgmt."""
    be = mtls_backend(pki)
    try:
        p = portico(mgmt_config(be.url, upstream={"caFile": pki.ca}), env={"PORTICO_ADMIN_TOKEN": TOKEN})
        yield be, p, Mgmt(p)
    finally:
        be.close()


def present(m, cid):
    """The echo API presents the stored certificate `cid` to its backend."""
    m.ok("PUT", "apis/echo/policies/policy",
         {"inbound": ["base", {"authentication-certificate": {"certificate-id": cid}}]})


@pytest.mark.parametrize("by", ["certificate-id", "thumbprint"])
def test_authentication_certificate_from_the_store(portico, pki, by):
    be = mtls_backend(pki)
    try:
        cfg = basic_config(be.url, upstream={"caFile": pki.ca})
        cfg["certificates"] = [{"id": "gw", "data": pem_with_key(pki.gateway)}]
        ref = "gw" if by == "certificate-id" else thumbprint(pki.gateway[0]).lower()
        cfg["apis"][0]["policies"] = {"inbound": ["base", {"authentication-certificate": {by: ref}}]}
        p = portico(cfg)
        status, _, body = p.request("GET", "/echo/items/1")
        assert status == 200, body
        assert be.client_cns == ["gateway"]  # the backend saw the stored certificate
        assert json.loads(body)["target"] == "/base/items/1"
        no_secret_in(p.log_text(), pki, pki.gateway)
    finally:
        be.close()


def test_authentication_certificate_set_over_rest_reaches_the_backend(portico, pki):
    with behind_mtls(portico, pki) as (be, p, m):
        pol = {"inbound": ["base", {"authentication-certificate": {"certificate-id": "gw"}}]}
        status, _, out = m.call("PUT", "apis/echo/policies/policy", pol)
        assert status == 400 and "no certificate with id 'gw'" in json.dumps(out), out
        p12 = base64.b64encode(pki.pkcs12("gwr", pki.gateway[0], pki.gateway[1], "pw")).decode()
        m.ok("PUT", "certificates/gw", {"properties": {"data": p12, "password": "pw"}})
        m.ok("PUT", "apis/echo/policies/policy", pol)
        assert p.request("GET", "/echo/items/1")[0] == 200
        assert be.client_cns == ["gateway"]
        # in use: it cannot go away under the policy
        status, _, out = m.call("DELETE", "certificates/gw")
        assert status == 409, out


@pytest.mark.parametrize("role", ["workspaceContributor", "apiDeveloper"])
def test_a_workspace_cannot_use_the_services_certificates(portico, pki, role):
    """The attack: a workspace's policy naming the service's certificate, to act under
    its TLS identity towards a backend of the workspace's choosing."""
    with behind_mtls(portico, pki) as (be, p, m):
        m.ok("PUT", "workspaces/wsa", {"displayName": "A"})
        m.ok("PUT", "certificates/svc", {"data": pem_with_key(pki.gateway)})
        m.ok("PUT", "certificates/ca", {"data": read(pki.ca), "ca": True})
        tok = m.ok("PUT", "tokens/t", {"role": role, "workspace": "wsa"})["token"]
        m.ok("PUT", "workspaces/wsa/apis/aapi", {"path": "aapi", "serviceUrl": be.url,
                                                 "subscriptionRequired": False}, token=tok)
        m.ok("PUT", "workspaces/wsa/apis/aapi/operations/all", {"method": "*", "urlTemplate": "/*"}, token=tok)
        attacks = [
            ("certificate-id", "svc", {"authentication-certificate": {"certificate-id": "svc"}}),
            ("thumbprint", "svc", {"authentication-certificate": {"thumbprint": thumbprint(pki.gateway[0])}}),
            ("issuer", "ca", {"validate-client-certificate": {
                "identities": {"identity": [{"issuer-certificate-id": "ca"}]}}}),
        ]
        for what, named, stmt in attacks:
            pol = {"inbound": ["base", stmt]}
            st, _, out = m.call("PUT", "workspaces/wsa/apis/aapi/policies/policy", pol, token=tok)
            text = json.dumps(out)
            assert st == 400 and "certificates are service-level" in text, (what, st, out)
            if what != "thumbprint":
                assert "'%s'" % named in text, out
        if role == "workspaceContributor":  # the workspace's own policy document is scoped too
            pol = {"inbound": [{"authentication-certificate": {"certificate-id": "svc"}}]}
            st, _, out = m.call("PUT", "workspaces/wsa/policies/policy", pol, token=tok)
            assert st == 400 and "certificates are service-level" in json.dumps(out), (st, out)
        # the backend never saw the service's identity: it refuses a client without one
        p.request("GET", "/aapi/x")
        assert "gateway" not in be.client_cns
        # the service level still may
        present(m, "svc")
        assert p.request("GET", "/echo/x")[0] == 200 and be.client_cns[-1] == "gateway"


def test_a_certificate_replaced_while_in_use_is_presented_at_once(portico, pki):
    with behind_mtls(portico, pki) as (be, p, m):
        m.ok("PUT", "certificates/gw", {"data": pem_with_key(pki.gateway)})
        present(m, "gw")
        assert p.request("GET", "/echo/x")[0] == 200 and be.client_cns[-1] == "gateway"
        renewed = pki.leaf("gateway-renewed", "gateway-2", [], eku="clientAuth")
        m.ok("PUT", "certificates/gw", {"data": pem_with_key(renewed)})
        assert p.request("GET", "/echo/x")[0] == 200 and be.client_cns[-1] == "gateway-2"
        # a certificate without a key cannot replace one a policy presents
        status, _, out = m.call("PUT", "certificates/gw", {"data": read(pki.alice[0])})
        assert status == 400 and "private key" in json.dumps(out), out
        assert p.request("GET", "/echo/x")[0] == 200 and be.client_cns[-1] == "gateway-2"


def test_by_thumbprint_the_copy_with_the_key_is_used(portico, pki):
    be = mtls_backend(pki)
    try:
        cfg = basic_config(be.url, upstream={"caFile": pki.ca})
        cfg["certificates"] = [{"id": "public-copy", "data": read(pki.gateway[0])},
                               {"id": "gw", "data": pem_with_key(pki.gateway)}]
        cfg["apis"][0]["policies"] = {"inbound": ["base", {"authentication-certificate": {
            "thumbprint": thumbprint(pki.gateway[0])}}]}
        p = portico(cfg)
        assert p.request("GET", "/echo/items/1")[0] == 200
        assert be.client_cns == ["gateway"]
    finally:
        be.close()


def test_an_exported_certificate_put_back_keeps_its_key(portico, pki):
    with behind_mtls(portico, pki) as (be, p, m):
        m.ok("PUT", "certificates/gw", {"data": pem_with_key(pki.gateway)})
        m.ok("PUT", "certificates/spare", {"data": pem_with_key(pki.alice)})
        present(m, "gw")
        exported = {c["id"]: c for c in m.ok("GET", "export")["certificates"]}
        assert "PRIVATE KEY" not in json.dumps(exported)
        for cid in ("gw", "spare"):  # in use or not, the key is not lost without a word
            m.ok("PUT", "certificates/" + cid, {"data": exported[cid]["data"]})
            assert m.ok("GET", "certificates/" + cid)["hasPrivateKey"] is True, cid
        assert p.request("GET", "/echo/x")[0] == 200 and be.client_cns[-1] == "gateway"
        # the whole export applied back: the same
        m.ok("POST", "apply", {"certificates": list(exported.values())})
        for cid in ("gw", "spare"):
            assert m.ok("GET", "certificates/" + cid)["hasPrivateKey"] is True, cid
        assert p.request("GET", "/echo/x")[0] == 200 and be.client_cns[-1] == "gateway"
        # another certificate without a key still replaces it (and is refused while in use)
        m.ok("PUT", "certificates/spare", {"data": read(pki.eve[0])})
        assert m.ok("GET", "certificates/spare")["hasPrivateKey"] is False


def test_unknown_certificate_in_the_file_names_the_place(backend, portico, pki):
    cfg = basic_config(backend.url)
    cfg["certificates"] = [{"id": "ca", "data": read(pki.ca)}]
    cfg["apis"][0]["policies"] = {"inbound": [{"authentication-certificate": {"certificate-id": "nope"}}]}
    p = portico(cfg, start=False)
    code, out = p.check()
    assert code != 0 and "no certificate with id 'nope'" in out and "portico.yaml:" in out, out
    cfg["apis"][0]["policies"] = {"inbound": [{"authentication-certificate": {"certificate-id": "ca"}}]}
    p = portico(cfg, start=False)
    code, out = p.check()
    assert code != 0 and "has no private key" in out, out


def test_bad_certificate_in_the_file_is_file_line_column(backend, portico, pki):
    cfg = basic_config(backend.url)
    cfg["certificates"] = [{"id": "x", "data": "garbage!"}]
    p = portico(cfg, start=False)
    code, out = p.check()
    assert code != 0 and "certificate 'x'" in out, out
    import re
    assert re.search(r"portico\.yaml:\d+:\d+: .*neither PEM nor base64", out), out


# ------------------------------------------------ validate-client-certificate

def client_gateway(backend, portico, pki, policy, certificates):
    """A TLS listener asking for client certificates, with no clientCa: trust comes from the store."""
    cfg = basic_config(backend.url)
    port = free_port()
    cfg["listen"].append({"address": "127.0.0.1:%d" % port, "certificate": pki.server[0], "key": pki.server[1],
                          "clientCertificate": "optional"})
    cfg["certificates"] = certificates
    cfg["apis"][0]["policies"] = {"inbound": ["base", {"validate-client-certificate": policy}]}
    return portico(cfg), port


def test_store_ca_certificates_are_trusted(backend, portico, pki):
    p, port = client_gateway(backend, portico, pki, {}, [{"id": "ca", "data": read(pki.ca), "ca": True}])
    assert tls_get(port, pki, pki.alice)[0] == 200
    assert tls_get(port, pki, pki.mallory)[0] == 401
    assert p.access_entries(wait_for=2)[-1]["reason"] == "ClientCertificateNotTrusted"
    # the same issuer name from another key is no better
    assert tls_get(port, pki, pki.impostor)[0] == 401
    assert p.access_entries(wait_for=3)[-1]["reason"] == "ClientCertificateNotTrusted"


def test_store_trust_leaves_dates_to_the_policy(backend, portico, pki):
    old = pki.expired_leaf("old-client", "old-client")
    certs = [{"id": "ca", "data": read(pki.ca), "ca": True}]
    p, port = client_gateway(backend, portico, pki, {}, certs)
    assert tls_get(port, pki, old)[0] == 401
    assert p.access_entries(wait_for=1)[-1]["reason"] == "ClientCertificateExpired"
    p2, port2 = client_gateway(backend, portico, pki, {"validate-not-after": False}, certs)
    assert tls_get(port2, pki, old)[0] == 200


def test_store_certificate_not_marked_ca_is_not_trusted(backend, portico, pki):
    p, port = client_gateway(backend, portico, pki, {}, [{"id": "ca", "data": read(pki.ca)}])
    assert tls_get(port, pki, pki.alice)[0] == 401


@pytest.mark.parametrize("attr", ["issuer-certificate-id", "issuer-thumbprint"])
def test_identity_by_issuer_certificate(backend, portico, pki, attr):
    certs = [{"id": "ca", "data": read(pki.ca), "ca": True}, {"id": "other", "data": read(pki.other_ca)}]
    ref = "ca" if attr == "issuer-certificate-id" else thumbprint(pki.ca)
    policy = {"validate-trust": False, "identities": {"identity": [{attr: ref}]}}
    p, port = client_gateway(backend, portico, pki, policy, certs)
    assert tls_get(port, pki, pki.alice)[0] == 200
    # the same issuer name would not do: the impostor's CA is another key
    assert tls_get(port, pki, pki.impostor)[0] == 401
    assert p.access_entries(wait_for=2)[-1]["reason"] == "ClientCertificateIdentityNotAllowed"


def test_unknown_issuer_certificate_is_a_configuration_error(backend, portico, pki):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["policies"] = {"inbound": [{"validate-client-certificate": {
        "identities": {"identity": [{"issuer-certificate-id": "missing"}]}}}]}
    p = portico(cfg, start=False)
    code, out = p.check()
    assert code != 0 and "no certificate with id 'missing'" in out, out


def test_revoked_client_certificate_is_refused(backend, portico, pki):
    crl = pki.crl([pki.eve[0]])
    certs = [{"id": "ca", "data": read(pki.ca), "ca": True, "crl": crl}]
    p, port = client_gateway(backend, portico, pki, {}, certs)
    assert tls_get(port, pki, pki.alice)[0] == 200
    status, body = tls_get(port, pki, pki.eve)
    assert status == 401, body
    assert p.access_entries(wait_for=2)[-1]["reason"] == "ClientCertificateRevoked"
    # validate-revocation: false lets it through
    p2, port2 = client_gateway(backend, portico, pki, {"validate-revocation": False}, certs)
    assert tls_get(port2, pki, pki.eve)[0] == 200


def test_bad_crl_is_refused(backend, portico, pki):
    p, m = admin(backend, portico)
    status, _, out = m.call("PUT", "certificates/ca", {"data": read(pki.ca), "ca": True, "crl": "nope"})
    assert status == 400 and "not a PEM X509 CRL" in json.dumps(out), out


def test_crl_of_another_ca_with_the_same_name_is_refused(backend, portico, pki):
    os.makedirs(pki.path("impostor"), exist_ok=True)
    imp = Pki(pki.path("impostor"))  # its own "Portico Test CA", another key
    forged = imp.crl([pki.alice[0]])
    p, m = admin(backend, portico)
    for crl, why in ((forged, "not signed by this certificate's key"),
                     (pki.crl([]) + "garbage-after", "not a PEM X509 CRL"),
                     (pki.crl([]) + pki.crl([], issuer="other"), "issuer is not this certificate's subject")):
        status, _, out = m.call("PUT", "certificates/ca", {"data": read(pki.ca), "ca": True, "crl": crl})
        assert status == 400 and why in json.dumps(out), out
    # the same in the file: file:line:column
    cfg = basic_config(backend.url)
    cfg["certificates"] = [{"id": "ca", "data": read(pki.ca), "ca": True, "crl": forged}]
    code, out = portico(cfg, start=False).check()
    assert code != 0 and "not signed by this certificate's key" in out and "portico.yaml:" in out, out
    # the genuine list of that CA is accepted, and alice is not revoked by the forgery
    m.ok("PUT", "certificates/ca", {"data": read(pki.ca), "ca": True, "crl": pki.crl([pki.eve[0]])})


def test_an_expired_crl_refuses_and_is_logged(backend, portico, pki):
    conf, ca, ca_key = pki._ca_db("stale", "ca")
    out = os.path.join(os.path.dirname(conf), "stale.pem")
    _openssl("ca", "-config", conf, "-keyfile", ca_key, "-cert", ca, "-gencrl", "-out", out,
             "-crl_lastupdate", "20200101000000Z", "-crl_nextupdate", "20200201000000Z", cwd=os.path.dirname(conf))
    certs = [{"id": "ca", "data": read(pki.ca), "ca": True, "crl": read(out)}]
    p, port = client_gateway(backend, portico, pki, {}, certs)
    assert tls_get(port, pki, pki.alice)[0] == 401
    assert p.access_entries(wait_for=1)[-1]["reason"] == "ClientCertificateRevocationUnknown"
    assert tls_get(port, pki, pki.alice)[0] == 401
    assert p.log_text().count("certificate 'ca': its CRL expired") == 1, p.log_text()
    p2, port2 = client_gateway(backend, portico, pki, {"validate-revocation": False}, certs)
    assert tls_get(port2, pki, pki.alice)[0] == 200


def intermediate(pki, name, dates=None):
    """A CA under the test CA (valid now, or between dates=(start, end)) and a client leaf it
    issued; returns (leaf path, key path) with the leaf's file holding the intermediate after it."""
    conf, ca, ca_key = pki._ca_db(name, "ca")
    d = os.path.dirname(conf)
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("[v]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
    ikey, icsr, ipem = (os.path.join(d, "int" + s) for s in (".key", ".csr", ".pem"))
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", ikey,
             "-out", icsr, "-subj", "/CN=" + name, cwd=d)
    when = ["-startdate", dates[0], "-enddate", dates[1]] if dates else ["-days", "30"]
    _openssl("ca", "-batch", "-notext", "-config", conf, "-keyfile", ca_key, "-cert", ca, "-in", icsr, "-out", ipem,
             "-extfile", ext, "-extensions", "v", *when, cwd=d)
    saved = pki.other_ca, pki.other_ca_key
    pki.other_ca, pki.other_ca_key = ipem, ikey  # leaf() issues from "other"
    try:
        leaf = pki.leaf(name + "-leaf", name + "-client", [], issuer="other", eku="clientAuth", days=20)
    finally:
        pki.other_ca, pki.other_ca_key = saved
    chained = leaf[0] + ".chain"
    with open(chained, "w") as f:
        f.write(read(leaf[0]) + read(ipem))
    return chained, leaf[1]


def test_store_trust_is_for_tls_clients_through_sent_intermediates(backend, portico, pki):
    certs = [{"id": "ca", "data": read(pki.ca), "ca": True}]
    p, port = client_gateway(backend, portico, pki, {}, certs)
    # a certificate for servers only is no client certificate, as at the listener
    server_only = pki.leaf("server-only", "server-only", [], eku="serverAuth")
    assert tls_get(port, pki, server_only)[0] == 401
    assert p.access_entries(wait_for=1)[-1]["reason"] == "ClientCertificateNotTrusted"
    # root in the store, the intermediate sent by the client
    assert tls_get(port, pki, intermediate(pki, "int-now"))[0] == 200
    # an expired intermediate does not vouch, whatever the policy says of the leaf's dates
    old = intermediate(pki, "int-old", ("20200101000000Z", "20200201000000Z"))
    assert tls_get(port, pki, old)[0] == 401
    p2, port2 = client_gateway(backend, portico, pki, {"validate-not-after": False, "validate-not-before": False},
                               certs)
    assert tls_get(port2, pki, old)[0] == 401


# ------------------------------------------------------------------- expiry

def test_near_expiry_is_logged_once_and_reported(backend, portico, pki):
    cfg = mgmt_config(backend.url)
    cfg["certificates"] = [{"id": "soon", "data": read(pki.soon[0])}, {"id": "gw", "data": read(pki.gateway[0])}]
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    out = m.ok("GET", "certificates/soon")
    assert out["nearExpiry"] is True and out["expiresInDays"] in (9, 10) and out["expired"] is False
    assert m.ok("GET", "certificates/gw")["nearExpiry"] is False
    log = p.log_text()
    assert log.count("certificate 'soon' expires") == 1, log
    assert "certificate 'gw' expires" not in log
    status, _, metrics = m.call("GET", "/metrics")
    assert status == 200, metrics
    line = [l for l in metrics.splitlines() if l.startswith('portico_certificate_expiry_seconds{id="soon"}')]
    assert line and 8 * 86400 < float(line[0].split()[-1]) <= 10 * 86400, line
    # a management change does not repeat it (it logs what it brings in); a reload does, once
    m.ok("PUT", "certificates/other", {"data": read(pki.leaf("other-soon", "other", [], days=20)[0])})
    log = p.log_text()
    assert log.count("certificate 'soon' expires") == 1 and log.count("certificate 'other' expires") == 1, log
    assert p.reload()
    assert p.log_text().count("certificate 'soon' expires") == 2


def test_expired_certificate_is_logged_and_reported(backend, portico, pki):
    cfg = mgmt_config(backend.url)
    cfg["certificates"] = [{"id": "old", "data": read(pki.expired_leaf("old", "old")[0])}]
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    out = m.ok("GET", "certificates/old")
    assert out["expired"] is True and out["nearExpiry"] is True and out["expirationDate"] == "2020-02-01T00:00:00Z"
    assert "certificate 'old' expired on 2020-02-01T00:00:00Z" in p.log_text()
    metrics = m.call("GET", "/metrics")[2]
    line = [l for l in metrics.splitlines() if l.startswith('portico_certificate_expiry_seconds{id="old"}')]
    assert line and float(line[0].split()[-1]) < -86400 * 300, line
