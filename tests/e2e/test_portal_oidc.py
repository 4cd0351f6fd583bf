"""Signing in to the developer portal with an OpenID Connect provider
(authorization code + PKCE), over real HTTP, against a small provider
written here: discovery, an authorize endpoint that sends the browser
straight back with a code, a token endpoint that checks the client secret
and the PKCE verifier, and a JWKS whose RSA key `openssl` makes at test
time (id_tokens are signed with `openssl dgst`).  Only Python's standard
library and the openssl binary.

Each attack is a test: what the provider (or an attacker) gives the portal,
and what must not follow (no session, no user in the store)."""

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import basic_config, free_port
from mgmt_helpers import TOKEN, Mgmt
from portal_helpers import cookie_header, keep_cookies
from backends import stop_server

SECRET = "s3cret-of-the-portal-client-0123456789"
CLIENT = "portal-client"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


# ------------------------------------------------------------ the provider

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        p = self.server.owner
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        with p.lock:
            p.hits[u.path] = p.hits.get(u.path, 0) + 1
        if u.path == "/.well-known/openid-configuration":
            if p.slow:
                time.sleep(p.slow)
            self._send(200, {"issuer": p.issuer, "authorization_endpoint": p.url + "/authorize",
                             "token_endpoint": p.url + "/token", "jwks_uri": p.url + "/jwks",
                             "token_endpoint_auth_methods_supported": p.auth_methods})
        elif u.path == "/jwks":
            self._send(200, {"keys": [p.jwk]})
        elif u.path == "/authorize":
            with p.lock:
                p.authorize_requests.append(q)
                code = b64u(os.urandom(16))
                challenge = q.get("code_challenge")
                if p.inject_challenge:
                    # a code made for someone else's PKCE (an injected code)
                    challenge = b64u(hashlib.sha256(b"the attacker's verifier").digest())
                p.codes[code] = {"client_id": q.get("client_id"), "redirect_uri": q.get("redirect_uri"),
                                 "challenge": challenge, "method": q.get("code_challenge_method"),
                                 "nonce": q.get("nonce")}
            sep = "&" if "?" in q["redirect_uri"] else "?"
            loc = q["redirect_uri"] + sep + urllib.parse.urlencode({"code": code, "state": q.get("state", "")})
            self._send(303, None, {"Location": loc})
        else:
            self._send(404, {"error": "not_found"})

    def do_POST(self):
        p = self.server.owner
        n = int(self.headers.get("Content-Length", "0"))
        form = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode()))
        with p.lock:
            p.hits["/token"] = p.hits.get("/token", 0) + 1
            p.token_requests.append({"form": form, "authorization": self.headers.get("Authorization")})
            grant = p.codes.pop(form.get("code"), None)
        # the client: HTTP Basic or the form's client_secret
        auth = self.headers.get("Authorization", "")
        cid, sec = form.get("client_id"), form.get("client_secret")
        if auth.startswith("Basic "):
            pair = base64.b64decode(auth[6:]).decode()
            cid, _, sec = pair.partition(":")
            cid, sec = urllib.parse.unquote_plus(cid), urllib.parse.unquote_plus(sec)
        if cid != CLIENT or not hmac.compare_digest(sec or "", SECRET):
            return self._send(401, {"error": "invalid_client"})
        if not grant or grant["redirect_uri"] != form.get("redirect_uri") or form.get("grant_type") != \
                "authorization_code":
            return self._send(400, {"error": "invalid_grant"})
        verifier = form.get("code_verifier", "")
        if grant["method"] != "S256" or b64u(hashlib.sha256(verifier.encode()).digest()) != grant["challenge"]:
            return self._send(400, {"error": "invalid_grant", "error_description": "PKCE"})
        self._send(200, {"access_token": "at", "token_type": "Bearer", "expires_in": 300,
                         "id_token": p.id_token(grant)})


class Provider:
    def __init__(self, tmp, tls=None):
        self.key = os.path.join(tmp, "idp-key.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                        "-out", self.key], check=True, capture_output=True)
        self.other_key = os.path.join(tmp, "other-key.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                        "-out", self.other_key], check=True, capture_output=True)
        mod = subprocess.run(["openssl", "rsa", "-in", self.key, "-noout", "-modulus"], check=True,
                             capture_output=True, text=True).stdout.strip().split("=", 1)[1]
        self.jwk = {"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
                    "n": b64u(bytes.fromhex(mod)), "e": b64u((65537).to_bytes(3, "big"))}
        self.lock = threading.Lock()
        self.hits = {}
        self.codes = {}
        self.authorize_requests = []
        self.token_requests = []
        self.auth_methods = ["client_secret_basic", "client_secret_post"]
        self.slow = 0
        self.inject_challenge = False
        self.user = {"sub": "sub-alice", "email": "alice@example.com", "email_verified": True,
                     "given_name": "Alice", "family_name": "Liddell"}
        self.claims = {}   # over the usual claims (None removes one)
        self.header = {}   # over the usual header
        self.sign = "good"  # good | badsig | none | otherkey | hs256
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.owner = self
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.url = "https://localhost:%d" % self.server.server_address[1]
        self.issuer = self.url
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def id_token(self, grant):
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": CLIENT, "iat": now, "exp": now + 300, "nonce": grant["nonce"]}
        claims.update(self.user)
        for k, v in self.claims.items():
            if v is None:
                claims.pop(k, None)
            else:
                claims[k] = v
        header = {"alg": "RS256", "typ": "JWT", "kid": "k1"}
        if self.sign == "none":
            header["alg"] = "none"
        if self.sign == "hs256":
            header["alg"] = "HS256"
        header.update(self.header)
        signing = (b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(claims).encode())).encode()
        if self.sign == "none":
            return signing.decode() + "."
        if self.sign == "hs256":
            # the client secret as an HMAC key: the portal takes asymmetric signatures only
            return signing.decode() + "." + b64u(hmac.new(SECRET.encode(), signing, hashlib.sha256).digest())
        key = self.other_key if self.sign == "otherkey" else self.key
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing, check=True,
                             capture_output=True).stdout
        if self.sign == "badsig":
            sig = sig[:-1] + bytes([sig[-1] ^ 1])
        return signing.decode() + "." + b64u(sig)

    def close(self):
        stop_server(self.server)


@pytest.fixture
def idp(workdir):
    p = Provider(workdir)
    yield p
    p.close()


# ------------------------------------------------------------ the browser

class Browser:
    """Cookies, no redirects followed; talks to the portal and to the provider."""

    def __init__(self):
        self.cookies = {}
        self.last = ""
        self.ca = None

    def request(self, url, method="GET", form=None):
        u = urllib.parse.urlsplit(url)
        if u.scheme == "https":
            c = http.client.HTTPSConnection(u.hostname, u.port, timeout=30,
                                            context=ssl.create_default_context(cafile=self.ca))
        else:
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        h = {}
        portal = u.port == self.portal_port
        if self.cookies and portal:
            h["Cookie"] = cookie_header(self.cookies)
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            h["Content-Type"] = "application/x-www-form-urlencoded"
        path = u.path + ("?" + u.query if u.query else "")
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            text = r.read().decode(errors="replace")
            if portal:
                keep_cookies(self.cookies, r.headers.get_all("Set-Cookie") or [])
            self.last = text
            return r.status, {k.lower(): v for k, v in r.getheaders()}, text
        finally:
            c.close()

    @property
    def session(self):
        return self.cookies.get("portico_session")


def start_portal(portico, idp, workdir, backend, users=None, provider=None, site=None, env=None):
    cfg = basic_config(backend.url)
    cfg["management"] = {"listen": "127.0.0.1:%d" % free_port()}
    cfg["data"] = os.path.join(workdir, "data")
    prov = {"id": "test", "displayName": "Test IdP", "issuer": idp.issuer, "clientId": CLIENT,
            "clientSecret": SECRET, "allowInsecure": True}
    prov.update(provider or {})
    portal = {"listen": "127.0.0.1:%d" % free_port(), "mail": {"outbox": os.path.join(workdir, "outbox")},
              "identityProviders": [prov]}
    if site is not None:
        portal["site"] = site
    cfg["portal"] = portal
    if users is not None:
        cfg["users"] = users
    p = portico(cfg, env=dict(env or {}, PORTICO_ADMIN_TOKEN=TOKEN))
    b = Browser()
    b.base = p.portal_url
    b.portal_port = urllib.parse.urlsplit(p.portal_url).port
    return p, Mgmt(p), b


def begin(b):
    """The portal's sign-in page, its button, and the portal's 303 to the provider: the authorize URL."""
    status, _, page = b.request(b.base + "/signin")
    assert status == 200
    m = re.search(r'<a class="idp-signin[^"]*" href="(/signin/oidc/test)">Sign in with Test IdP</a>', page)
    assert m, page
    status, h, _ = b.request(b.base + m.group(1))
    assert status == 303, b.last
    assert b.session, "the visitor has a (guest) session bound to the sign-in"
    return h["location"]


def at_provider(b, authorize):
    status, h, _ = b.request(authorize)
    assert status == 303
    return h["location"]


def sign_in(b):
    """The whole flow; (status, headers, body) of the portal's callback."""
    cb = at_provider(b, begin(b))
    return b.request(cb)


def signed_in(b):
    status, _, page = b.request(b.base + "/profile")
    return status == 200 and 'id="profile-form"' in page


def users_by_email(m, email):
    st, _, body = m.call("GET", "users")
    assert st == 200
    return [u for u in body["value"] if u.get("email", "").lower() == email.lower()]


# ------------------------------------------------------------------ flows

def test_signup_through_the_provider_then_sign_in_again(portico, idp, workdir, backend):
    p, m, b = start_portal(portico, idp, workdir, backend)
    authorize = begin(b)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize).query))
    assert authorize.startswith(idp.url + "/authorize?")
    assert q["response_type"] == "code" and q["client_id"] == CLIENT
    assert q["redirect_uri"] == b.base + "/signin/oidc/test/callback"
    assert q["scope"] == "openid email profile"
    assert q["code_challenge_method"] == "S256" and re.fullmatch(r"[A-Za-z0-9_-]{43}", q["code_challenge"])
    assert len(q["state"]) >= 43 and len(q["nonce"]) >= 43 and q["state"] != q["nonce"]
    guest = b.session
    status, h, _ = b.request(at_provider(b, authorize))
    assert status == 303 and h["location"] == "/", b.last
    assert b.session and b.session != guest, "the session is rotated at sign-in"
    assert signed_in(b)
    # the token request: the verifier of the challenge, the secret by HTTP Basic (not in the form)
    tr = idp.token_requests[-1]
    assert b64u(hashlib.sha256(tr["form"]["code_verifier"].encode()).digest()) == q["code_challenge"]
    assert tr["authorization"].startswith("Basic ") and "client_secret" not in tr["form"]
    users = users_by_email(m, "alice@example.com")
    assert len(users) == 1 and users[0]["state"] == "active"
    assert users[0]["firstName"] == "Alice" and users[0]["lastName"] == "Liddell"
    uid = users[0]["id"]
    st, _, groups = m.call("GET", "groups/developers/users")
    assert st == 200 and uid in json.dumps(groups)
    # a second sign-in finds the same user; discovery and keys came from the cache
    b2 = Browser()
    b2.base, b2.portal_port = b.base, b.portal_port
    assert sign_in(b2)[0] == 303 and signed_in(b2)
    assert len(users_by_email(m, "alice@example.com")) == 1
    assert idp.hits.get("/.well-known/openid-configuration") == 1 and idp.hits.get("/jwks") == 1
    # the provider changes the address: the link (provider + sub) still finds the user
    idp.user = dict(idp.user, email="alice.new@example.com")
    b3 = Browser()
    b3.base, b3.portal_port = b.base, b.portal_port
    assert sign_in(b3)[0] == 303 and signed_in(b3)
    assert "alice@example.com" in b3.request(b.base + "/profile")[2]
    assert users_by_email(m, "alice.new@example.com") == []


def test_a_name_claim_with_a_line_break_is_dropped(portico, idp, workdir, backend):
    """The provider's given_name is text the user chose: one carrying a line break (which would forge
    lines in the portal's mails) is left out; the sign-up still works and the other name is kept."""
    p, m, b = start_portal(portico, idp, workdir, backend)
    idp.user["given_name"] = "Alice\r\n\r\nYour account is locked: https://evil.example/"
    status, _, _ = b.request(at_provider(b, begin(b)))
    assert status == 303 and signed_in(b), b.last
    users = users_by_email(m, "alice@example.com")
    assert len(users) == 1 and users[0]["state"] == "active"
    assert users[0].get("firstName", "") == "" and users[0]["lastName"] == "Liddell"


def test_an_https_provider_checked_against_the_trusted_cas(portico, workdir, backend, tmp_path):
    sys.path.insert(0, os.path.dirname(__file__))
    from tls_helpers import Pki
    pki = Pki(str(tmp_path))
    idp = Provider(workdir, tls=pki.leaf("idp", "localhost", ["DNS:localhost"]))
    try:
        p, m, b = start_portal(portico, idp, workdir, backend, provider={"allowInsecure": False},
                               env={"SSL_CERT_FILE": pki.ca})
        b.ca = pki.ca
        assert b.request(b.base + "/signin/oidc/test")[1]["location"].startswith("https://localhost:")
        b2 = Browser()
        b2.base, b2.portal_port, b2.ca = b.base, b.portal_port, pki.ca
        assert sign_in(b2)[0] == 303 and signed_in(b2)
    finally:
        idp.close()


def test_an_untrusted_https_provider_is_not_used(portico, workdir, backend, tmp_path):
    sys.path.insert(0, os.path.dirname(__file__))
    from tls_helpers import Pki
    pki = Pki(str(tmp_path))
    idp = Provider(workdir, tls=pki.leaf("idp", "localhost", ["DNS:localhost"]))
    try:
        # the portal trusts the system's CAs only: the test CA's certificate is refused
        p, m, b = start_portal(portico, idp, workdir, backend, provider={"allowInsecure": False})
        status, _, page = b.request(b.base + "/signin/oidc/test")
        assert status == 502 and "Sign-in failed" in page
        assert idp.hits.get("/.well-known/openid-configuration", 0) == 0
        assert "discovery document" in p.log_text()
    finally:
        idp.close()


def test_client_secret_post_when_the_provider_takes_only_that(portico, idp, workdir, backend):
    idp.auth_methods = ["client_secret_post"]
    p, m, b = start_portal(portico, idp, workdir, backend)
    assert sign_in(b)[0] == 303 and signed_in(b)
    tr = idp.token_requests[-1]
    assert tr["form"]["client_secret"] == SECRET and not tr["authorization"]


def test_an_existing_user_signs_in_and_a_blocked_one_cannot(portico, idp, workdir, backend):
    users = [{"id": "bob", "email": "Bob@Example.com", "firstName": "Bob", "lastName": "B"},
             {"id": "eve", "email": "eve@example.com", "firstName": "Eve", "lastName": "E", "state": "blocked"}]
    p, m, b = start_portal(portico, idp, workdir, backend, users=users)
    idp.user = {"sub": "sub-bob", "email": "bob@example.com", "email_verified": True}
    assert sign_in(b)[0] == 303 and signed_in(b)
    assert "Bob" in b.request(b.base + "/profile")[2]
    assert len(users_by_email(m, "bob@example.com")) == 1
    idp.user = {"sub": "sub-eve", "email": "eve@example.com", "email_verified": True}
    b2 = Browser()
    b2.base, b2.portal_port = b.base, b.portal_port
    status, _, page = sign_in(b2)
    assert status == 403 and "cannot sign in" in page
    assert not signed_in(b2)


def test_signup_closed_refuses_unknown_addresses(portico, idp, workdir, backend):
    p, m, b = start_portal(portico, idp, workdir, backend, provider={"allowSignup": False})
    status, _, page = sign_in(b)
    assert status == 403 and "signing up is closed" in page
    assert not signed_in(b)
    assert users_by_email(m, "alice@example.com") == []


def test_site_signup_disabled_is_followed_without_allow_signup(portico, idp, workdir, backend):
    p, m, b = start_portal(portico, idp, workdir, backend, site={"signupEnabled": False})
    assert sign_in(b)[0] == 403 and not signed_in(b)
    assert users_by_email(m, "alice@example.com") == []


def test_signup_with_terms_asks_for_their_acceptance(portico, idp, workdir, backend):
    p, m, b = start_portal(portico, idp, workdir, backend, site={"terms": "Be **kind** to the APIs."})
    status, _, page = sign_in(b)
    assert status == 200 and 'id="oidc-terms-form"' in page and "<strong>kind</strong>" in page, page
    assert users_by_email(m, "alice@example.com") == [], "no account before the terms are accepted"
    csrf = re.search(r'name="csrf" value="([^"]*)"', page).group(1)
    # another browser cannot finish this sign-up (it is bound to the session)
    other = Browser()
    other.base, other.portal_port = b.base, b.portal_port
    st, _, opage = other.request(b.base + "/signin")
    ocsrf = re.search(r'name="csrf" value="([^"]*)"', opage).group(1)
    assert other.request(b.base + "/signin/oidc/test/signup", "POST", {"csrf": ocsrf, "terms": "on"})[0] == 400
    # no CSRF token: refused; terms not ticked: asked again
    assert b.request(b.base + "/signin/oidc/test/signup", "POST", {"terms": "on"})[0] == 403
    st, _, page = b.request(b.base + "/signin/oidc/test/signup", "POST", {"csrf": csrf})
    assert st == 400 and "Accept the terms" in page
    assert users_by_email(m, "alice@example.com") == []
    st, h, _ = b.request(b.base + "/signin/oidc/test/signup", "POST", {"csrf": csrf, "terms": "on"})
    assert st == 303 and h["location"] == "/" and signed_in(b)
    [u] = users_by_email(m, "alice@example.com")
    assert u["state"] == "active" and u["firstName"] == "Alice"
    assert not signed_in(other)
    # used: the form again makes nothing more
    assert b.request(b.base + "/signin/oidc/test/signup", "POST", {"csrf": csrf, "terms": "on"})[0] == 400
    assert len(users_by_email(m, "alice@example.com")) == 1


def test_a_pending_signup_is_activated_and_its_password_dropped(portico, idp, workdir, backend):
    p, m, b = start_portal(portico, idp, workdir, backend)
    # someone signs up with alice's address and a password of theirs, never confirming it
    st, _, page = b.request(b.base + "/signup")
    csrf = re.search(r'name="csrf" value="([^"]*)"', page).group(1)
    st, _, _ = b.request(b.base + "/signup", "POST", {"csrf": csrf, "email": "alice@example.com",
                                                      "password": "attacker password 1", "firstName": "A",
                                                      "lastName": "B"})
    assert st in (200, 303)
    [u] = users_by_email(m, "alice@example.com")
    assert u["state"] == "pending"
    alice = Browser()
    alice.base, alice.portal_port = b.base, b.portal_port
    assert sign_in(alice)[0] == 303 and signed_in(alice)
    [u2] = users_by_email(m, "alice@example.com")
    assert u2["id"] == u["id"] and u2["state"] == "active"
    # the password typed by whoever signed up opens nothing
    atk = Browser()
    atk.base, atk.portal_port = b.base, b.portal_port
    st, _, page = atk.request(b.base + "/signin")
    csrf = re.search(r'name="csrf" value="([^"]*)"', page).group(1)
    st, _, _ = atk.request(b.base + "/signin", "POST", {"csrf": csrf, "email": "alice@example.com",
                                                        "password": "attacker password 1"})
    assert st == 401 and not signed_in(atk)


def test_one_address_cannot_begin_sign_ins_without_end(portico, idp, workdir, backend):
    p, m, b = start_portal(portico, idp, workdir, backend)
    answers = [b.request(b.base + "/signin/oidc/test") for _ in range(33)]
    assert [a[0] for a in answers[:32]] == [303] * 32 and answers[32][0] == 429
    assert "Too many sign-ins" in answers[32][2]
    # finishing one frees its place
    status, _, _ = b.request(at_provider(b, answers[5][1]["location"]))
    assert status == 303 and signed_in(b)
    assert b.request(b.base + "/signin/oidc/test")[0] == 303
    assert b.request(b.base + "/signin/oidc/test")[0] == 429


def test_fetches_do_not_block_the_portal(portico, idp, workdir, backend):
    idp.slow = 2.0
    p, m, b = start_portal(portico, idp, workdir, backend)
    status, _, page = b.request(b.base + "/signin")
    out = {}

    def go():
        out["r"] = b.request(b.base + "/signin/oidc/test")
    t = threading.Thread(target=go)
    t.start()
    time.sleep(0.3)  # the discovery fetch is under way
    other = Browser()
    other.base, other.portal_port = b.base, b.portal_port
    t0 = time.monotonic()
    assert other.request(b.base + "/")[0] == 200
    assert time.monotonic() - t0 < 1.0, "another visitor waited for the provider"
    t.join(10)
    assert out["r"][0] == 303 and out["r"][1]["location"].startswith(idp.url + "/authorize?")


# ---------------------------------------------------------------- attacks

def test_wrong_state_is_refused(portico, idp, workdir, backend):
    p, m, b = start_portal(portico, idp, workdir, backend)
    cb = at_provider(b, begin(b))
    bad = re.sub(r"state=[^&]+", "state=" + b64u(os.urandom(32)), cb)
    status, _, page = b.request(bad)
    assert status == 400 and "Start again" in page
    assert not signed_in(b)
    assert idp.hits.get("/token", 0) == 0, "the code was not spent"


def test_reused_state_is_refused(portico, idp, workdir, backend):
    p, m, b = start_portal(portico, idp, workdir, backend)
    cb = at_provider(b, begin(b))
    assert b.request(cb)[0] == 303 and signed_in(b)
    # the same callback again, from a fresh guest holding the first one's pre-sign-in cookie too
    again = Browser()
    again.base, again.portal_port = b.base, b.portal_port
    assert again.request(cb)[0] == 400 and not signed_in(again)
    assert b.request(cb)[0] == 400
    assert idp.hits.get("/token") == 1


def test_state_from_another_browser_is_refused(portico, idp, workdir, backend):
    p, m, b = start_portal(portico, idp, workdir, backend)
    cb = at_provider(b, begin(b))
    victim = Browser()
    victim.base, victim.portal_port = b.base, b.portal_port
    victim.request(b.base + "/signin")  # a guest session of their own
    assert victim.request(cb)[0] == 400 and not signed_in(victim)
    # and the state is spent: the one who began cannot finish either (a login CSRF leaves nothing)
    assert b.request(cb)[0] == 400 and not signed_in(b)


def test_a_code_without_our_pkce_is_refused(portico, idp, workdir, backend):
    """A code bound to another verifier (an injected code): the provider refuses the exchange."""
    idp.inject_challenge = True
    p, m, b = start_portal(portico, idp, workdir, backend)
    status, _, page = sign_in(b)
    assert status == 502 and "not signed in" in page
    assert not signed_in(b)
    assert idp.token_requests[-1]["form"]["code_verifier"]
    assert users_by_email(m, "alice@example.com") == []


@pytest.mark.parametrize("attack", [
    "badsig", "none", "otherkey", "hs256", "aud", "aud-list-foreign-azp", "iss", "expired", "future-iat",
    "nonce", "no-nonce", "unverified", "no-email", "crit"])
def test_a_bad_id_token_is_refused(portico, idp, workdir, backend, attack):
    now = int(time.time())
    if attack in ("badsig", "none", "otherkey", "hs256"):
        idp.sign = attack
    elif attack == "aud":
        idp.claims = {"aud": "someone-else"}
    elif attack == "aud-list-foreign-azp":
        idp.claims = {"aud": [CLIENT, "someone-else"], "azp": "someone-else"}
    elif attack == "iss":
        idp.claims = {"iss": "http://127.0.0.1:1/evil"}
    elif attack == "expired":
        idp.claims = {"exp": now - 3600, "iat": now - 3900}
    elif attack == "future-iat":
        idp.claims = {"iat": now + 3600, "exp": now + 7200}
    elif attack == "nonce":
        idp.claims = {"nonce": b64u(os.urandom(32))}
    elif attack == "no-nonce":
        idp.claims = {"nonce": None}
    elif attack == "unverified":
        idp.user = dict(idp.user, email_verified=False)
    elif attack == "no-email":
        idp.user = {"sub": "sub-x"}
    elif attack == "crit":
        idp.header = {"crit": ["exp"]}
    p, m, b = start_portal(portico, idp, workdir, backend)
    status, _, page = sign_in(b)
    assert status in (403, 502), (status, page)
    assert not signed_in(b)
    assert users_by_email(m, "alice@example.com") == []
    why = {"badsig": "signature is not valid", "otherkey": "signature is not valid",
           "none": "alg is not an asymmetric", "hs256": "alg is not an asymmetric", "aud": "audience (aud)",
           "aud-list-foreign-azp": "audience (aud)", "iss": "issuer (iss)", "expired": "has expired",
           "future-iat": "issue time (iat)", "nonce": "nonce", "no-nonce": "nonce", "crit": "critical"}
    if attack in why:
        assert status == 502
        assert re.search(r"OpenID Connect sign-in with test from \S+ failed: .*" + re.escape(why[attack]),
                         p.log_text()), p.log_text()[-2000:]
    else:
        assert status == 403 and ("not verified" in page or "did not give an email" in page), page


def test_an_unknown_kid_refetches_the_key_set_at_most_once_a_minute(portico, idp, workdir, backend):
    p, m, b = start_portal(portico, idp, workdir, backend)
    assert sign_in(b)[0] == 303 and signed_in(b)
    assert idp.hits.get("/jwks") == 1
    idp.header = {"kid": "k2"}
    idp.sign = "otherkey"
    for n in range(2):
        other = Browser()
        other.base, other.portal_port = b.base, b.portal_port
        status, _, _ = sign_in(other)
        assert status == 502 and not signed_in(other)
        assert idp.hits.get("/jwks") == 2, "the key set is fetched again once (a rotation), not per token"


# ------------------------------------------------------ the entity and its secret

def test_client_secret_never_leaves_in_clear(portico, idp, workdir, backend):
    p, m, b = start_portal(portico, idp, workdir, backend)
    st, _, body = m.call("GET", "portal/identityProviders")
    assert st == 200
    [one] = body["value"]
    assert one["id"] == "test" and one["hasClientSecret"] is True and "clientSecret" not in one
    assert one["scopes"] == "openid email profile" and one["allowInsecure"] is True
    st, _, one = m.call("GET", "portal/identityProviders/test")
    assert st == 200 and SECRET not in json.dumps(one)
    # one made through the API: written, never read back
    st, _, made = m.call("PUT", "portal/identityProviders/corp", {
        "displayName": "Corp", "issuer": "https://login.example.com/tenant", "clientId": "c1",
        "clientSecret": "api-secret-value-42", "scopes": "openid email"})
    assert st == 201, made
    assert "clientSecret" not in made and made["hasClientSecret"] is True
    # a PUT without the secret keeps it
    st, _, made = m.call("PUT", "portal/identityProviders/corp", {
        "displayName": "Corp 2", "issuer": "https://login.example.com/tenant", "clientId": "c1"})
    assert st == 200 and made["hasClientSecret"] is True and made["displayName"] == "Corp 2"
    st, _, exp = m.call("GET", "export?includeFile=true")
    text = json.dumps(exp) if not isinstance(exp, str) else exp
    assert st == 200 and "corp" in text and "login.example.com" in text
    assert "api-secret-value-42" not in text and SECRET not in text
    # the export applied again (without the secret) keeps the stored secret
    st, _, doc = m.call("GET", "export")
    assert st == 200 and [x["id"] for x in doc["portal"]["identityProviders"]] == ["corp"]
    st, _, out = m.call("POST", "apply", doc)
    assert st in (200, 201), out
    st, _, made = m.call("GET", "portal/identityProviders/corp")
    assert made["hasClientSecret"] is True and made["displayName"] == "Corp 2"
    # a document without providers leaves them (and the file's) as they are
    st, _, out = m.call("POST", "apply", {"portal": {"site": {"title": "T"}}})
    assert st in (200, 201), out
    st, _, body = m.call("GET", "portal/identityProviders")
    assert [x["id"] for x in body["value"]] == ["corp", "test"]
    # sealed at rest: the store file holds neither secret in clear
    db = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(workdir, "data")) for f in fs]
    raw = b"".join(open(f, "rb").read() for f in db if os.path.isfile(f))
    assert raw and b"api-secret-value-42" not in raw and SECRET.encode() not in raw
    # the sign-in page shows both providers; the file's may not be changed through the API
    assert 'href="/signin/oidc/corp">Sign in with Corp 2<' in b.request(b.base + "/signin")[2]
    st, _, err = m.call("PUT", "portal/identityProviders/test", {"issuer": idp.issuer, "clientId": "x",
                                                                 "allowInsecure": True})
    assert st == 409
    st, _, _ = m.call("DELETE", "portal/identityProviders/corp")
    assert st == 204
    assert m.call("GET", "portal/identityProviders/corp")[0] == 404
    assert "/signin/oidc/corp" not in b.request(b.base + "/signin")[2]
    assert b.request(b.base + "/signin/oidc/corp")[0] == 404


@pytest.mark.parametrize("body,where", [
    ({"issuer": "http://login.example.com", "clientId": "c"}, "https"),
    ({"issuer": "http://login.example.com", "clientId": "c", "allowInsecure": True}, "loopback"),
    ({"issuer": "https://login.example.com/?x=1", "clientId": "c"}, "query"),
    ({"issuer": "https://login.example.com", "clientId": "c", "scopes": "email profile"}, "openid"),
    ({"issuer": "https://login.example.com"}, "clientId is required"),
    ({"issuer": "https://login.example.com", "clientId": "c", "color": "red"}, "unknown key"),
])
def test_bad_providers_are_refused(portico, idp, workdir, backend, body, where):
    p, m, b = start_portal(portico, idp, workdir, backend)
    st, _, err = m.call("PUT", "portal/identityProviders/bad", body)
    assert st == 400 and where in json.dumps(err), err
    assert m.call("GET", "portal/identityProviders/bad")[0] == 404


def test_the_file_is_checked_with_positions(portico, workdir, backend):
    cfg = basic_config(backend.url)
    cfg["portal"] = {"listen": "127.0.0.1:%d" % free_port(),
                     "identityProviders": [{"id": "x", "issuer": "http://idp.example.com", "clientId": "c"}]}
    p = portico(cfg, start=False)
    rc, out = p.check()
    assert rc != 0
    assert "issuer must be an https:// URL" in out and re.search(r"\.yaml:\d+:\d+", out), out
