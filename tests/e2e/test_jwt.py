"""validate-jwt (plugins/access) with tokens and keys made here: HMAC by
hand, RSA, RSA-PSS and ECDSA with the openssl command line."""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time

import pytest

from conftest import CALL_MARK, assert_stays, basic_config, check_call_mark, new_call_mark, peer_has_read, wait_for

SECRET = b"0123456789abcdef0123456789abcdef"


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**kw):
    c = {"iss": "https://issuer.example", "aud": "orders", "sub": "u1", "exp": int(time.time()) + 600,
         "scope": "read write"}
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}


def signing_input(header, payload):
    return (b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(payload).encode())).encode()


def hs256(payload, key=SECRET, header=None):
    h = header or {"alg": "HS256", "typ": "JWT"}
    si = signing_input(h, payload)
    return si.decode() + "." + b64u(hmac.new(key, si, hashlib.sha256).digest())


class Keys:
    """RSA and EC key pairs made with the openssl CLI."""

    def __init__(self, d):
        self.d = d
        self.rsa = os.path.join(d, "rsa.pem")
        self.ec = os.path.join(d, "ec.pem")
        self.ec384 = os.path.join(d, "ec384.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
                        self.rsa], check=True, capture_output=True)
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                        self.ec], check=True, capture_output=True)
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out",
                        self.ec384], check=True, capture_output=True)
        self.ec384_pub = subprocess.run(["openssl", "pkey", "-in", self.ec384, "-pubout"], check=True,
                                        capture_output=True).stdout.decode()
        self.rsa_pub = subprocess.run(["openssl", "pkey", "-in", self.rsa, "-pubout"], check=True,
                                      capture_output=True).stdout.decode()
        self.ec_pub = subprocess.run(["openssl", "pkey", "-in", self.ec, "-pubout"], check=True,
                                     capture_output=True).stdout.decode()
        mod = subprocess.run(["openssl", "rsa", "-in", self.rsa, "-noout", "-modulus"], check=True,
                             capture_output=True).stdout.decode().strip().split("=", 1)[1]
        self.n = b64u(bytes.fromhex(mod))
        self.e = "AQAB"

    def sign(self, alg, payload, kid=None):
        h = {"alg": alg, "typ": "JWT"}
        if kid:
            h["kid"] = kid
        si = signing_input(h, payload)
        path = os.path.join(self.d, "si.bin")
        with open(path, "wb") as f:
            f.write(si)
        digest = "-sha" + alg[2:]
        if alg.startswith("RS"):
            cmd = ["openssl", "dgst", digest, "-sign", self.rsa, path]
        elif alg.startswith("PS"):
            cmd = ["openssl", "dgst", digest, "-sign", self.rsa, "-sigopt", "rsa_padding_mode:pss",
                   "-sigopt", "rsa_pss_saltlen:digest", path]
        else:
            cmd = ["openssl", "dgst", digest, "-sign", self.ec384 if alg == "ES384" else self.ec, path]
        sig = subprocess.run(cmd, check=True, capture_output=True).stdout
        if alg.startswith("ES"):
            sig = der_to_raw(sig, 48 if alg == "ES384" else 32)
        return si.decode() + "." + b64u(sig)


def der_to_raw(der, size):
    """ECDSA DER (SEQUENCE of two INTEGERs) to r || s."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 3
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        ln = der[i + 1]
        v = der[i + 2:i + 2 + ln].lstrip(b"\0")
        out += v.rjust(size, b"\0")
        i += 2 + ln
    return out


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return Keys(str(tmp_path_factory.mktemp("jwtkeys")))


def gw(backend, portico, jwt, subs=False):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["subscriptionRequired"] = subs
    cfg["apis"][0]["policies"] = {"inbound": ["base", {"validate-jwt": jwt}]}
    return portico(cfg)


pytestmark = pytest.mark.usefixtures("refusals_leave_the_backend_alone")


def send(p, token=None, header="Authorization", scheme="Bearer ", path="/echo/items/1"):
    h = {header: scheme + token} if token is not None else {}
    mark = new_call_mark()
    h[CALL_MARK] = mark
    status, _, body = p.request("GET", path, headers=h)
    check_call_mark(mark, status)
    return status, (json.loads(body) if body and status != 200 else None)


def reason(p, n):
    return p.access_entries(wait_for=n)[-1].get("reason")


HS_CONF = {"issuer-signing-keys": {"key": [base64.b64encode(SECRET).decode()]},
           "audiences": {"audience": ["orders"]}, "issuers": {"issuer": ["https://issuer.example"]},
           "output-token-variable-name": "jwt"}


def test_hs256_valid_and_claims_passed_on(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["policies"] = {"inbound": ["base", {"validate-jwt": dict(HS_CONF)}, {"set-header": {
        "name": "X-Claims", "value": "@(context.variables.jwt)"}}]}
    p = portico(cfg)
    assert send(p, hs256(claims(role="ops")))[0] == 200
    got = json.loads(backend.last().header("X-Claims"))
    assert got["aud"] == "orders" and got["iss"] == "https://issuer.example" and got["role"] == "ops"


@pytest.mark.parametrize("case, expect", [
    ("missing", ("TokenNotPresent", "JWT not present.")),
    ("garbage", ("JwtInvalid", None)),
    ("bad-signature", ("TokenSignatureInvalid", None)),
    ("expired", ("TokenExpired", "JWT has expired.")),
    ("not-yet", ("JwtInvalid", None)),
    ("no-exp", ("JwtInvalid", None)),
    ("audience", ("TokenAudienceNotAllowed", None)),
    ("issuer", ("TokenIssuerNotAllowed", None)),
    ("alg-none", ("TokenSignatureInvalid", None)),
    ("wrong-scheme", ("TokenNotPresent", None)),
])
def test_hs256_refusals(backend, portico, case, expect):
    p = gw(backend, portico, dict(HS_CONF, **{"require-scheme": "Bearer"}))
    token = {
        "missing": None,
        "garbage": "abc.def",
        "bad-signature": hs256(claims(), key=b"x" * 32),
        "expired": hs256(claims(exp=int(time.time()) - 60)),
        "not-yet": hs256(claims(nbf=int(time.time()) + 600)),
        "no-exp": hs256(claims(exp=None)),
        "audience": hs256(claims(aud="billing")),
        "issuer": hs256(claims(iss="https://evil.example")),
        "alg-none": signing_input({"alg": "none"}, claims()).decode() + ".",
        "wrong-scheme": hs256(claims()),
    }[case]
    status, body = send(p, token, scheme="Token " if case == "wrong-scheme" else "Bearer ")
    assert status == 401, case
    assert reason(p, 1) == expect[0]
    if expect[1]:
        assert body == {"statusCode": 401, "message": expect[1]}
    assert backend.last() is None


@pytest.mark.parametrize("skew", [120, "00:02:00"])
def test_clock_skew_and_custom_status(backend, portico, skew):
    p = gw(backend, portico, dict(HS_CONF, **{"clock-skew": skew, "failed-validation-httpcode": 403,
                                             "failed-validation-error-message": "go away"}))
    assert send(p, hs256(claims(exp=int(time.time()) - 30)))[0] == 200  # within the skew
    status, body = send(p, hs256(claims(exp=int(time.time()) - 300)))
    assert status == 403 and body == {"statusCode": 403, "message": "go away"}


def test_bad_clock_skew_is_a_config_error(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["policies"] = {"inbound": [{"validate-jwt": dict(HS_CONF, **{"clock-skew": "5 minutes"})}]}
    code, out = portico(cfg, start=False).check()
    assert code != 0 and "clock-skew" in out and "portico.yaml:" in out, out


def test_require_scheme_applies_to_authorization_only(backend, portico):
    p = gw(backend, portico, dict(HS_CONF, **{"require-scheme": "Bearer", "header-name": "X-Token"}))
    assert send(p, hs256(claims()), header="X-Token", scheme="")[0] == 200
    assert send(p, hs256(claims()), header="X-Token", scheme="Bearer ")[0] == 200


def test_required_claims(backend, portico):
    conf = dict(HS_CONF, **{"required-claims": {"claim": [
        {"name": "scope", "match": "all", "separator": " ", "value": ["read", "write"]},
        {"name": "role", "match": "any", "value": ["admin", "ops"]}]}})
    p = gw(backend, portico, conf)
    assert send(p, hs256(claims(role="ops")))[0] == 200
    assert send(p, hs256(claims(role=["viewer", "admin"])))[0] == 200
    assert send(p, hs256(claims()))[0] == 401 and reason(p, 3) == "TokenClaimNotFound"
    assert send(p, hs256(claims(role="ops", scope="read")))[0] == 401
    assert reason(p, 4) == "TokenClaimValueNotAllowed"


def test_query_parameter_and_token_value_sources(backend, portico):
    p = gw(backend, portico, dict(HS_CONF, **{"query-parameter-name": "access_token"}))
    assert send(p, path="/echo/x?access_token=" + hs256(claims()))[0] == 200
    assert send(p, hs256(claims()))[0] == 401
    p.stop()
    p = gw(backend, portico, dict(HS_CONF, **{"token-value": "@(context.request.headers:get('X-Jwt', ''))"}))
    assert send(p, hs256(claims()), header="X-Jwt", scheme="")[0] == 200


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256"])
def test_rsa_algorithms_with_n_e_and_pem(backend, portico, keys, alg):
    p = gw(backend, portico, {"issuer-signing-keys": {"key": [{"n": keys.n, "e": keys.e, "id": "r1"}]}})
    assert send(p, keys.sign(alg, claims(), kid="r1"))[0] == 200
    p.stop()
    p = gw(backend, portico, {"issuer-signing-keys": {"key": [{"certificate": keys.rsa_pub}]}})
    assert send(p, keys.sign(alg, claims()))[0] == 200
    forged = keys.sign(alg, claims(sub="u1")).rsplit(".", 1)[0] + "." + b64u(b"\1" * 256)
    assert send(p, forged)[0] == 401


def test_es256(backend, portico, keys):
    p = gw(backend, portico, {"issuer-signing-keys": {"key": [{"certificate": keys.ec_pub}]}})
    assert send(p, keys.sign("ES256", claims()))[0] == 200
    assert send(p, hs256(claims()))[0] == 401  # no symmetric key configured
    assert reason(p, 2) == "TokenSignatureKeyNotFound"


def test_es384(backend, portico, keys):
    p = gw(backend, portico, {"issuer-signing-keys": {"key": [{"certificate": keys.ec384_pub}]}})
    assert send(p, keys.sign("ES384", claims()))[0] == 200
    assert send(p, keys.sign("ES256", claims()))[0] == 401  # a P-256 signature is not this key's


def test_key_type_confusion_is_refused(backend, portico, keys):
    """An HS256 token 'signed' with the RSA public key's PEM text must not pass."""
    p = gw(backend, portico, {"issuer-signing-keys": {"key": [{"certificate": keys.rsa_pub}]}})
    forged = hs256(claims(), key=keys.rsa_pub.encode())
    assert send(p, forged)[0] == 401


def test_key_rotation_by_kid(backend, portico, keys):
    old = base64.b64encode(b"o" * 32).decode()
    new = base64.b64encode(b"n" * 32).decode()
    p = gw(backend, portico, {"issuer-signing-keys": {"key": [{"value": old, "id": "k1"}, {"value": new, "id": "k2"}]}})
    for key, kid in ((b"o" * 32, "k1"), (b"n" * 32, "k2")):
        assert send(p, hs256(claims(), key=key, header={"alg": "HS256", "kid": kid}))[0] == 200
    # a kid naming the other key does not verify
    assert send(p, hs256(claims(), key=b"o" * 32, header={"alg": "HS256", "kid": "k2"}))[0] == 401


def test_bad_keys_are_config_errors(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["policies"] = {"inbound": [{"validate-jwt": {"issuer-signing-keys": {"key": ["c2hvcnQ="]}}}]}
    p = portico(cfg, start=False)
    code, out = p.check()
    assert code != 0 and "at least 16 bytes" in out and "portico.yaml:" in out


# ------------------------------------------------------------ openid-config

@pytest.fixture
def provider(keys, tmp_path):
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    from oidc_helpers import OidcProvider
    from tls_helpers import Pki
    pki = Pki(str(tmp_path))
    cert = pki.leaf("idp", "localhost", ["DNS:localhost"])
    prov = OidcProvider(*cert)
    prov.ca = pki.ca
    yield prov
    prov.close()


def jwk_rsa(keys, kid):
    return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": keys.n, "e": keys.e}


def oidc_gw(backend, portico, provider):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["policies"] = {"inbound": ["base", {"validate-jwt": {
        "openid-config": {"url": provider.url + "/.well-known/openid-configuration"},
        "audiences": {"audience": ["orders"]}}}]}
    return portico(cfg, env={"SSL_CERT_FILE": provider.ca})


def test_openid_config_keys_and_rotation(backend, portico, keys, provider):
    provider.keys = [jwk_rsa(keys, "old")]
    p = oidc_gw(backend, portico, provider)
    # the first call waits (without blocking the worker) for the first fetch
    assert send(p, keys.sign("RS256", claims(), kid="old"))[0] == 200
    assert provider.fetches() == 1
    assert send(p, keys.sign("RS256", claims(), kid="old"))[0] == 200
    assert provider.fetches() == 1  # cached
    # the provider rotates: a token with the new kid fails once, triggers a refetch, then passes
    provider.keys = [jwk_rsa(keys, "new")]
    status, _ = send(p, keys.sign("RS256", claims(), kid="new"))
    assert status == 401 and reason(p, 3) == "TokenSignatureKeyNotFound"
    wait_for(lambda: provider.fetches() >= 2, 10, what="the refetch of the key set")
    # the provider has been asked; the gateway takes the keys up once it has read and parsed the
    # answer, which shows only in a call: the new kid passes then (no further fetch: checked below)
    wait_for(lambda: send(p, keys.sign("RS256", claims(), kid="new"))[0] == 200,
             what="a token with the new kid to pass")
    # unknown kids do not make it refetch more than once per 5 minutes
    metadata = provider.fetches("/.well-known/openid-configuration")
    for _ in range(3):
        assert send(p, keys.sign("RS256", claims(), kid="ghost"))[0] == 401
    # A refetch would run on the gateway's own fetching thread, after the 401s and ordered
    # against nothing a test can send, so no later event can show it has not happened: watch the
    # provider for a while instead.  It would ask for the metadata first, then the key set.
    assert_stays(lambda: provider.fetches("/.well-known/openid-configuration") == metadata
                 and provider.fetches() == 2, for_seconds=0.5, what="no refetch for unknown kids")


def test_openid_config_provider_down(backend, portico, keys, provider):
    provider.keys = [jwk_rsa(keys, "k")]
    cfg = basic_config(backend.url)
    cfg["apis"][0]["policies"] = {"inbound": ["base", {"validate-jwt": {
        "openid-config": {"url": "https://localhost:1/.well-known/openid-configuration"}}}]}
    p = portico(cfg, env={"SSL_CERT_FILE": provider.ca})
    t0 = time.time()
    status, _ = send(p, keys.sign("RS256", claims(), kid="k"))
    assert status == 401 and time.time() - t0 < 15
    assert p.request("GET", "/nowhere")[0] == 404
    # once the first fetch has failed, tokens are refused at once (no waiting on a dead provider)
    for _ in range(3):
        t0 = time.time()
        assert send(p, keys.sign("RS256", claims(), kid="k"))[0] == 401
        assert time.time() - t0 < 1.0


def raw_hs256(header_json, payload_json, key=SECRET):
    si = (b64u(header_json.encode()) + "." + b64u(payload_json.encode())).encode()
    return si.decode() + "." + b64u(hmac.new(key, si, hashlib.sha256).digest())


def test_duplicate_claim_names_and_crit_headers_are_refused(backend, portico):
    """RFC 7519 section 4 (a claim named twice) and RFC 7515 section 4.1.11
    (critical extensions nobody here understands): correctly signed, refused."""
    p = gw(backend, portico, dict(HS_CONF))
    exp = int(time.time()) + 600
    good = '{"iss": "https://issuer.example", "aud": "orders", "exp": %d, "role": "user"}' % exp
    assert send(p, raw_hs256('{"alg": "HS256"}', good))[0] == 200
    dup = '{"iss": "https://issuer.example", "aud": "orders", "exp": %d, "role": "user", "role": "admin"}' % exp
    assert send(p, raw_hs256('{"alg": "HS256"}', dup))[0] == 401
    assert reason(p, 2) == "JwtInvalid"
    assert send(p, raw_hs256('{"alg": "HS256", "alg": "HS256"}', good))[0] == 401
    status, body = send(p, raw_hs256('{"alg": "HS256", "crit": ["exp-ext"], "exp-ext": 1}', good))
    assert status == 401 and "critical" in body["message"]


def test_a_silent_provider_holds_no_worker(backend, portico, keys):
    """The provider accepts and never answers: the first token waits (without
    its worker) for up to 5 s; requests beside it are answered at once."""
    import socket
    import threading
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    call = None
    try:
        cfg = basic_config(backend.url)
        cfg["apis"][0]["policies"] = {"inbound": ["base", {"validate-jwt": {
            "openid-config": {"url": "http://127.0.0.1:%d/meta" % silent.getsockname()[1]}}}]}
        p = portico(cfg)
        result = {}
        mark = new_call_mark()
        call = socket.create_connection(("127.0.0.1", p.port), timeout=20)
        call.sendall(("GET /echo/items/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n%s: %s\r\n"
                      "Connection: close\r\n\r\n" % (keys.sign("RS256", claims(), kid="k"), CALL_MARK, mark)).encode())

        def token_call():
            data = b""
            while True:
                chunk = call.recv(65536)
                if not chunk:
                    break
                data += chunk
            result["status"] = int(data.split(b" ", 2)[1])
        t = threading.Thread(target=token_call)
        t.start()
        # once the gateway has read the token call, its one worker has taken it up: whatever it does
        # with it (waiting without the worker, or holding the worker) comes before the call below
        wait_for(lambda: peer_has_read(p.proc.pid, call), what="the gateway to read the token call")
        assert t.is_alive(), "the token was not waiting for the provider"
        t1 = time.time()
        assert p.request("GET", "/nowhere")[0] == 404
        assert time.time() - t1 < 1.0
        assert t.is_alive()  # still waiting, on no worker
        t.join(20)
        assert result["status"] == 401
        check_call_mark(mark, result["status"])
    finally:
        if call is not None:
            call.close()
        silent.close()


def test_require_expiration_time_false_accepts_a_token_without_exp(backend, portico):
    p = gw(backend, portico, dict(HS_CONF, **{"require-expiration-time": False}))
    assert send(p, hs256(claims(exp=None)))[0] == 200
    # an exp that is there is still checked
    status, body = send(p, hs256(claims(exp=int(time.time()) - 600)))
    assert status == 401 and body["message"] == "JWT has expired."


def test_x509_certificate_as_signing_key(backend, portico, keys, tmp_path):
    cert = str(tmp_path / "signer.pem")
    subprocess.run(["openssl", "req", "-new", "-x509", "-key", keys.rsa, "-subj", "/CN=signer", "-days", "1",
                    "-out", cert], check=True, capture_output=True)
    pem = open(cert).read()
    assert "BEGIN CERTIFICATE" in pem
    conf = {"issuer-signing-keys": {"key": [{"certificate": pem}]}}
    p = gw(backend, portico, conf)
    assert send(p, keys.sign("RS256", claims()))[0] == 200
    status, _ = send(p, hs256(claims()))
    assert status == 401
