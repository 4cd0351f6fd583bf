"""The developer portal's accounts and their security, over real HTTP.

A client here is a small browser: a cookie jar, forms posted with the CSRF
token the page gave, redirects not followed (each test looks at the 303).
Mail goes to the outbox folder; the links are read from the newest .eml
addressed to the user.  Every security point of issue 12 is a test written
as the attack: what the attacker sends, and what they must not get (checked
on the answer, in the store and in the outbox).
"""

import hashlib
import os
import re
import socket
import sqlite3
import ssl
import statistics
import threading
import time

import pytest

from conftest import basic_config, free_port, wait_for
from mgmt_helpers import TOKEN, Mgmt
from portal_helpers import (PASSWORD, Client, last_mail, mail_paths, outbox_mails, path_of, set_password_by_mail,
                            token_of)

ADMIN_EMAIL = "admin@example.com"


# ------------------------------------------------------------------ helpers

def portal_config(backend, workdir, users=None, **portal):
    cfg = basic_config(backend.url)
    cfg["management"] = {"listen": "127.0.0.1:%d" % free_port()}
    cfg["data"] = os.path.join(workdir, "data")
    p = {"listen": "127.0.0.1:%d" % free_port(), "mail": {"outbox": os.path.join(workdir, "outbox")}}
    p.update(portal)
    cfg["portal"] = p
    cfg["users"] = users if users is not None else [
        {"id": "admin", "email": ADMIN_EMAIL, "firstName": "Ada", "lastName": "Admin",
         "groups": ["administrators"]}]
    return cfg


def start(portico, backend, workdir, **kw):
    p = portico(portal_config(backend, workdir, **kw), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    return p, Mgmt(p)


def signup(c, mail, password=PASSWORD, first="Dev", last="Eloper", **extra):
    form = {"email": mail, "password": password, "firstName": first, "lastName": last}
    form.update(extra)
    return c.post("/signup", form, page_path="/signup")


def confirm(c, link):
    status, _, page = c.get(path_of(link))
    assert status == 200 and 'id="confirm-form"' in page, page
    return c.post("/confirm", {"token": token_of(link)})


def make_user(p, workdir, mail, password=PASSWORD):
    """A confirmed, active user; returns their id."""
    c = Client(p)
    before = mail_paths(workdir)
    status, _, page = signup(c, mail, password)
    assert status == 200, page
    _, _, link = last_mail(workdir, mail, after=before)
    status, h, _ = confirm(c, link)
    assert status == 303 and h["location"] == "/signin"
    return user_id(p, mail)


def user_id(p, mail):
    m = Mgmt(p)
    users = m.ok("GET", "users")
    items = users["value"] if isinstance(users, dict) else users
    for u in items:
        if u.get("email", "").lower() == mail.lower():
            return u["id"]
    return None


def get_user(p, uid):
    return Mgmt(p).ok("GET", "users/" + uid)


def signed_in_client(p, workdir, mail, password=PASSWORD, source="127.0.0.1"):
    c = Client(p, source=source)
    status, h, page = c.signin(mail, password)
    assert status == 303, (status, page)
    assert c.signed_in()
    return c


def set_admin_password(p, workdir, password=PASSWORD):
    """The administrator declared in the file gets a password through the reset mail."""
    set_password_by_mail(Client(p), workdir, ADMIN_EMAIL, password)
    return signed_in_client(p, workdir, ADMIN_EMAIL, password)


def db(workdir):
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(workdir, "data", "portico.db"), uri=True)
    return con


# ----------------------------------------------------------- the happy path

def test_signup_confirm_signin_signout(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    c = Client(p)
    status, _, page = c.get("/signup")
    assert status == 200 and 'id="signup-form"' in page and 'name="csrf"' in page
    before = mail_paths(workdir)
    status, _, page = signup(c, "dev@example.com", first="Grace", last="Hopper")
    assert status == 200 and "Check your mail" in page
    uid = user_id(p, "dev@example.com")
    u = get_user(p, uid)
    assert u["state"] == "pending" and u["firstName"] == "Grace"
    assert uid in [x["id"] for x in m.ok("GET", "groups/developers/users")["value"]]
    subject, body, link = last_mail(workdir, "dev@example.com", after=before)
    assert link and link.startswith(p.portal_url + "/confirm?token="), body
    # a pending user cannot sign in yet, even with the right password
    status, _, page = Client(p).signin("dev@example.com")
    assert status == 403 and "Confirm your address" in page
    # the link's GET only shows a button (a mail scanner opening it uses nothing)
    for _ in range(2):
        status, _, page = c.get(path_of(link))
        assert status == 200 and 'id="confirm-form"' in page
    assert get_user(p, uid)["state"] == "pending"
    status, h, _ = c.post("/confirm", {"token": token_of(link)})
    assert status == 303 and h["location"] == "/signin"
    assert get_user(p, uid)["state"] == "active"
    # sign in, see the profile, sign out
    status, h, _ = c.signin("DEV@example.com")  # addresses compare without case
    assert status == 303 and h["location"] == "/"
    status, _, page = c.get("/profile")
    assert status == 200 and "dev@example.com" in page and 'id="profile-form"' in page
    assert 'id="password-form"' in page and 'id="close-form"' in page
    status, _, page = c.get("/")
    assert 'id="signout-form"' in page
    status, h, _ = c.post("/signout", {}, page_path="/")
    assert status == 303
    assert not c.signed_in()


def test_profile_names_are_saved(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    uid = make_user(p, workdir, "names@example.com")
    c = signed_in_client(p, workdir, "names@example.com")
    status, h, _ = c.post("/profile", {"firstName": "Katherine", "lastName": "Johnson"}, page_path="/profile")
    assert status == 303 and h["location"] == "/profile"
    u = get_user(p, uid)
    assert (u["firstName"], u["lastName"], u["state"]) == ("Katherine", "Johnson", "active")
    status, _, page = c.get("/profile")
    assert 'value="Katherine"' in page
    # empty names are refused and nothing changes
    status, _, page = c.post("/profile", {"firstName": " ", "lastName": "X"}, page_path="/profile")
    assert status == 400 and 'class="error" role="alert"' in page
    assert get_user(p, uid)["firstName"] == "Katherine"


def test_signup_rules(backend, portico, workdir):
    p, m = start(portico, backend, workdir, site={"terms": "Be nice to the API."})
    c = Client(p)
    status, _, page = c.get("/signup")
    assert 'name="terms"' in page
    cases = [
        ({"password": "short9chr"}, "at least 10"),
        ({"terms": ""}, "terms"),
        ({"email": "not-an-address"}, "valid email"),
        ({"firstName": ""}, "names"),
    ]
    for change, says in cases:
        form = {"email": "rules@example.com", "password": PASSWORD, "firstName": "A", "lastName": "B",
                "terms": "on"}
        form.update(change)
        status, _, page = c.post("/signup", form, page_path="/signup")
        assert status == 400 and 'class="error" role="alert"' in page and says in page, (change, page)
    assert user_id(p, "rules@example.com") is None
    assert not outbox_mails(workdir)
    # ten characters (not bytes) are enough, accepted terms too
    status, _, _ = signup(c, "rules@example.com", password="ééééééééé1", terms="on")
    assert status == 200
    assert user_id(p, "rules@example.com")


def test_names_with_line_breaks_are_refused(backend, portico, workdir):
    """The attack: a name with CR/LF signs up any address, and the confirmation mail to that address opens
    with lines the attacker wrote ("Hello Eve\r\n\r\nYour account is locked, go to https://evil...")."""
    p, m = start(portico, backend, workdir)
    before = mail_paths(workdir)
    for first, last in (("Eve\r\n\r\nYour account is locked: https://evil.example/", "X"),
                        ("Eve", "X\nY"), ("Eve\x1b[2J", "X"), ("Eve\u0085", "X"), ("Eve\u2028", "X")):
        status, _, page = signup(Client(p), "victim@example.com", first=first, last=last)
        assert status == 400 and "control characters" in page, (first, last, status)
    time.sleep(0.3)
    assert user_id(p, "victim@example.com") is None
    assert mail_paths(workdir) == before
    # the profile form too
    make_user(p, workdir, "named@example.com")
    c = signed_in_client(p, workdir, "named@example.com")
    status, _, page = c.post("/profile", {"firstName": "A\r\nB", "lastName": "C"}, page_path="/profile")
    assert status == 400
    assert get_user(p, user_id(p, "named@example.com"))["firstName"] == "Dev"
    # names that are only unusual still pass
    status, _, _ = c.post("/profile", {"firstName": "Zo\u00eb", "lastName": "O'Brien-Sm\u00edth"},
                          page_path="/profile")
    assert status == 303 and get_user(p, user_id(p, "named@example.com"))["firstName"] == "Zo\u00eb"


def test_names_with_line_breaks_are_refused_through_the_management_api(backend, portico, workdir):
    """The same names written by an API client instead of the portal's form: refused with the key named,
    and nothing stored."""
    p, m = start(portico, backend, workdir)
    for key in ("firstName", "lastName"):
        body = {"email": "api-user@example.com", "firstName": "Eve", "lastName": "X"}
        body[key] = "Eve\r\n\r\nYour account is locked: https://evil.example/"
        status, _, out = m.call("PUT", "users/api-user", body)
        assert status == 400, (key, status, out)
        assert "%s holds a control character" % key in str(out), out
    assert m.call("GET", "users/api-user")[0] == 404


def test_signup_can_be_closed(backend, portico, workdir):
    p, m = start(portico, backend, workdir, site={"signupEnabled": False})
    c = Client(p)
    status, _, page = c.get("/signup")
    assert "closed" in page and 'id="signup-form"' not in page
    c.get("/signin")
    status, _, _ = c.post("/signup", {"email": "x@example.com", "password": PASSWORD, "firstName": "a",
                                      "lastName": "b"})
    assert status == 403
    assert user_id(p, "x@example.com") is None


# ------------------------------------------------------------------ cookies

def check_cookie(headers, name, secure):
    mine = [h for h in headers if h.startswith(name + "=")]
    assert len(mine) == 1, headers
    attrs = [a.strip().lower() for a in mine[0].split(";")[1:]]
    assert "httponly" in attrs and "samesite=lax" in attrs and "path=/" in attrs, mine
    assert ("secure" in attrs) == secure, mine
    assert not any(a.startswith("domain") for a in attrs), mine
    value = mine[0].split(";", 1)[0].split("=", 1)[1]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", value), value  # 256 bits
    return value


def test_cookie_flags_over_http(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    make_user(p, workdir, "flags@example.com")
    c = Client(p)
    _, h, _ = c.request("GET", "/signin")
    assert "strict-transport-security" not in h
    check_cookie(c.set_cookies, "portico_session", secure=False)
    c.signin("flags@example.com")
    check_cookie(c.set_cookies, "portico_session", secure=False)
    assert not any(h.startswith("__Host-") for h in c.set_cookies)


def test_cookie_flags_over_https(backend, portico, workdir):
    from tls_helpers import Pki, client_context
    pki = Pki(workdir)
    cert, key = pki.leaf("portal", "localhost", sans=("DNS:localhost", "IP:127.0.0.1"))
    p, m = start(portico, backend, workdir, certificate=cert, key=key)
    ctx = client_context(pki.ca, check_hostname=False)
    c = Client(p, context=ctx)
    assert c.https
    before = mail_paths(workdir)
    c.get("/signup")
    check_cookie(c.set_cookies, "__Host-portico_session", secure=True)
    signup(c, "tls@example.com")
    _, _, link = last_mail(workdir, "tls@example.com", after=before)
    assert link.startswith("https://")
    c.get(path_of(link))
    c.post("/confirm", {"token": token_of(link)})
    c2 = Client(p, context=ctx)
    c2.get("/signin")
    check_cookie(c2.set_cookies, "__Host-portico_session", secure=True)
    status, _, _ = c2.signin("tls@example.com")
    assert status == 303
    check_cookie(c2.set_cookies, "__Host-portico_session", secure=True)
    assert c2.signed_in()
    # the plain name is not read over HTTPS
    c3 = Client(p, context=ctx)
    c3.cookies["portico_session"] = c2.session
    assert not c3.signed_in()


def test_cookie_flags_behind_a_tls_terminating_proxy(backend, portico, workdir):
    """The portal has no certificate of its own, but publicUrl is https://: a proxy in front ends TLS, so
    the browser is on HTTPS and the cookies must be Secure (else any plain-HTTP request to the host, from a
    network attacker's redirect, would carry the session in clear)."""
    p, m = start(portico, backend, workdir, publicUrl="https://portal.example")
    make_user(p, workdir, "proxied@example.com")
    c = Client(p)
    assert not c.https
    _, h, _ = c.request("GET", "/signin")
    check_cookie(c.set_cookies, "__Host-portico_session", secure=True)
    assert all("secure" in [a.strip().lower() for a in sc.split(";")] for sc in c.set_cookies), c.set_cookies
    assert h.get("strict-transport-security", "").startswith("max-age=")
    status, _, _ = c.signin("proxied@example.com")
    assert status == 303
    check_cookie(c.set_cookies, "__Host-portico_session", secure=True)
    assert c.signed_in()


# ----------------------------------------------------------------- sessions

def test_session_rotated_at_signin(backend, portico, workdir):
    """Session fixation: an id the visitor had before signing in opens nothing afterwards."""
    p, m = start(portico, backend, workdir)
    make_user(p, workdir, "fix@example.com")
    attacker = Client(p)
    attacker.get("/signin")
    planted = attacker.session
    assert planted
    victim = Client(p)
    victim.cookies["portico_session"] = planted  # planted by the attacker
    status, _, _ = victim.signin("fix@example.com")
    assert status == 303
    assert victim.session and victim.session != planted
    assert victim.signed_in()
    assert not attacker.signed_in()
    # a made-up id opens nothing either, and is told to go away
    forged = Client(p)
    forged.cookies["portico_session"] = "A" * 43
    status, h, _ = forged.get("/profile")
    assert status == 303 and h["location"] == "/signin"


def test_store_keeps_only_hashes(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    before = mail_paths(workdir)
    uid = make_user(p, workdir, "hash@example.com")
    c = signed_in_client(p, workdir, "hash@example.com")
    c.post("/reset-password", {"email": "hash@example.com"}, page_path="/reset-password")
    links = [link for _, body, link in [last_mail(workdir, "hash@example.com", after=before)]]
    with db(workdir) as con:
        dump = "\n".join(con.iterdump())
        (h,) = con.execute("SELECT hash FROM portal_credentials WHERE user = ?", (uid,)).fetchone()
        ids = [r[0] for r in con.execute("SELECT id_hash FROM portal_sessions WHERE user = ?", (uid,))]
    assert h.startswith("$argon2id$") and PASSWORD not in dump
    assert c.session not in dump
    assert hashlib.sha256(c.session.encode()).hexdigest() in ids
    for link in links:
        assert token_of(link) not in dump
        assert hashlib.sha256(token_of(link).encode()).hexdigest() in dump


def test_idle_expiry(backend, portico, workdir):
    p, m = start(portico, backend, workdir, sessions={"idleTimeout": "2s", "absoluteTimeout": "1h"})
    make_user(p, workdir, "idle@example.com")
    c = signed_in_client(p, workdir, "idle@example.com")
    # used every half second, it lives past the idle limit
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3:
        assert c.signed_in()
        time.sleep(0.5)
    time.sleep(2.6)  # then left alone longer than the limit
    assert not c.signed_in()
    with db(workdir) as con:
        (n,) = con.execute("SELECT count(*) FROM portal_sessions WHERE user <> ''").fetchone()
    assert n == 0


def test_absolute_expiry(backend, portico, workdir):
    p, m = start(portico, backend, workdir, sessions={"idleTimeout": "30m", "absoluteTimeout": "3s"})
    make_user(p, workdir, "abs@example.com")
    c = signed_in_client(p, workdir, "abs@example.com")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2:
        assert c.signed_in()
        time.sleep(0.4)
    # however busy, the session ends at the absolute limit
    wait_for(lambda: not c.signed_in(), timeout=4, what="the absolute limit", step=0.2)
    assert time.monotonic() - t0 >= 2.5


def test_password_change_ends_the_other_sessions(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    make_user(p, workdir, "change@example.com")
    a = signed_in_client(p, workdir, "change@example.com")
    b = signed_in_client(p, workdir, "change@example.com")  # e.g. a stolen session
    old_a = a.session
    # the current password is required
    status, _, page = a.post("/profile/password", {"current": "wrong password!", "password": "new password 2"},
                             page_path="/profile")
    assert status == 403 and 'role="alert"' in page
    assert b.signed_in()
    status, h, _ = a.post("/profile/password", {"current": PASSWORD, "password": "new password 2"},
                          page_path="/profile")
    assert status == 303 and h["location"] == "/profile"
    assert a.signed_in() and a.session != old_a
    assert not b.signed_in()
    stale = Client(p)
    stale.cookies["portico_session"] = old_a
    assert not stale.signed_in()
    assert Client(p).signin("change@example.com")[0] == 401
    assert Client(p).signin("change@example.com", "new password 2")[0] == 303


def test_password_reset_ends_every_session(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    make_user(p, workdir, "reset@example.com")
    thief = signed_in_client(p, workdir, "reset@example.com")
    c = Client(p)
    before = mail_paths(workdir)
    status, _, page = c.post("/reset-password", {"email": "reset@example.com"}, page_path="/reset-password")
    assert status == 200 and "If an account has this address" in page
    subject, body, link = last_mail(workdir, "reset@example.com", after=before)
    assert "/reset-password/confirm?token=" in link
    status, _, page = c.get(path_of(link))
    assert status == 200 and 'name="password"' in page
    # a short password is refused and the token still works afterwards
    status, _, page = c.post("/reset-password/confirm", {"token": token_of(link), "password": "short"})
    assert status == 400 and 'role="alert"' in page
    status, h, _ = c.post("/reset-password/confirm", {"token": token_of(link), "password": "brand new pass"})
    assert status == 303 and h["location"] == "/signin"
    assert not thief.signed_in()
    assert Client(p).signin("reset@example.com")[0] == 401
    assert Client(p).signin("reset@example.com", "brand new pass")[0] == 303


# --------------------------------------------------------------------- CSRF

POST_ROUTES = ["/signup", "/confirm", "/signin", "/signout", "/reset-password", "/reset-password/confirm",
               "/profile", "/profile/password", "/profile/close", "/admin/invite", "/invitation"]


def test_csrf_missing_or_wrong_is_refused_on_every_post_route(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    uid = make_user(p, workdir, "csrf@example.com")
    admin = set_admin_password(p, workdir)
    victim = signed_in_client(p, workdir, "csrf@example.com")
    other = Client(p)
    other.get("/signin")
    foreign = other.csrf()  # a real token, of another session
    before = mail_paths(workdir)
    forms = {
        "/signup": {"email": "new@example.com", "password": PASSWORD, "firstName": "a", "lastName": "b"},
        "/confirm": {"token": "x" * 43},
        "/signin": {"email": "csrf@example.com", "password": PASSWORD},
        "/signout": {},
        "/reset-password": {"email": "csrf@example.com"},
        "/reset-password/confirm": {"token": "x" * 43, "password": "another password"},
        "/profile": {"firstName": "Mallory", "lastName": "M"},
        "/profile/password": {"current": PASSWORD, "password": "attacker password"},
        "/profile/close": {"password": PASSWORD},
        "/admin/invite": {"email": "evil@example.com", "firstName": "e", "lastName": "v"},
        "/invitation": {"token": "x" * 43, "password": "attacker password"},
    }
    assert sorted(forms) == sorted(POST_ROUTES)
    for route in POST_ROUTES:
        who = admin if route == "/admin/invite" else victim
        for csrf in (False, "", "A" * 43, foreign):
            status, _, page = who.post(route, forms[route], csrf=csrf)
            assert status == 403, (route, csrf, status, page[:300])
    # nothing happened: no mail, no user, the victim's names, password and session unchanged
    assert mail_paths(workdir) == before
    assert user_id(p, "new@example.com") is None and user_id(p, "evil@example.com") is None
    u = get_user(p, uid)
    assert (u["firstName"], u["state"]) == ("Dev", "active")
    assert victim.signed_in() and admin.signed_in()
    assert Client(p).signin("csrf@example.com")[0] == 303
    # the JSON form of the refusal for scripts
    status, _, text = victim.request("POST", "/profile", form={"firstName": "x", "lastName": "y"},
                                     headers={"Accept": "application/json"})
    assert status == 403 and "InvalidCsrfToken" in text


# ----------------------------------------------------------------- lockout

def test_lockout_per_account(backend, portico, workdir):
    p, m = start(portico, backend, workdir, signin={"maxFailures": 3, "lockout": "3s"})
    make_user(p, workdir, "victim@example.com")
    make_user(p, workdir, "bystander@example.com")
    attacker = Client(p)
    for _ in range(3):
        assert attacker.signin("victim@example.com", "guess %d password" % _)[0] == 401
    # locked: even the right password is refused, with the same answer whoever asks
    status, _, page = Client(p).signin("victim@example.com")
    assert status == 429 and "Too many" in page
    # an unknown address is locked the same way (the lock says nothing about who has an account)
    for _ in range(3):
        attacker.signin("nobody@example.com", "guess password %d" % _)
    assert Client(p).signin("nobody@example.com")[0] == 429
    # other accounts from the same address are not locked
    assert Client(p).signin("bystander@example.com")[0] == 303
    time.sleep(3.2)
    assert Client(p).signin("victim@example.com")[0] == 303


def test_lockout_per_address(backend, portico, workdir):
    """One address trying many accounts (password spraying) is locked: 4 x maxFailures."""
    p, m = start(portico, backend, workdir, signin={"maxFailures": 2, "lockout": "1m"})
    make_user(p, workdir, "target@example.com")
    sprayer = "127.0.0.2"
    for i in range(8):  # 8 accounts, one failure each: no account is locked
        assert Client(p, source=sprayer).signin("user%d@example.com" % i, "Password123!")[0] == 401
    status, _, _ = Client(p, source=sprayer).signin("target@example.com")
    assert status == 429
    # the account itself is not locked: from another address it signs in
    assert Client(p, source="127.0.0.3").signin("target@example.com")[0] == 303


def test_signups_per_address_are_limited(backend, portico, workdir):
    """Each sign-up makes a user and a generation: one address makes 4 x maxFailures per lockout period."""
    p, m = start(portico, backend, workdir, signin={"maxFailures": 1, "lockout": "1m"})
    for i in range(4):
        assert signup(Client(p, source="127.0.0.4"), "bulk%d@example.com" % i)[0] == 200
    status, _, page = signup(Client(p, source="127.0.0.4"), "bulk9@example.com")
    assert status == 429 and 'role="alert"' in page
    assert user_id(p, "bulk9@example.com") is None
    # another address is not held back
    assert signup(Client(p, source="127.0.0.5"), "other@example.com")[0] == 200
    assert user_id(p, "other@example.com")


# --------------------------------------------------------- no enumeration

def strip_echo(page, *words):
    page = re.sub(r'name="csrf" value="[^"]*"', "", page)
    for w in words:
        page = page.replace(w, "")
    return page


def test_unknown_and_known_users_get_the_same_answer(backend, portico, workdir):
    p, m = start(portico, backend, workdir, signin={"maxFailures": 1000, "lockout": "1s"})
    make_user(p, workdir, "known@example.com")
    # sign-in: a wrong password and an unknown address read the same
    s1, _, known = Client(p).signin("known@example.com", "wrong password")
    s2, _, unknown = Client(p).signin("unknown@example.com", "wrong password")
    assert s1 == s2 == 401
    assert strip_echo(known, "known@example.com") == strip_echo(unknown, "unknown@example.com")
    # reset: the same page, a mail only for the account
    before = mail_paths(workdir)
    s1, _, known = Client(p).post("/reset-password", {"email": "known@example.com"}, page_path="/reset-password")
    s2, _, unknown = Client(p).post("/reset-password", {"email": "unknown@example.com"},
                                    page_path="/reset-password")
    assert s1 == s2 == 200 and strip_echo(known) == strip_echo(unknown)
    new = mail_paths(workdir) - before
    assert len(new) == 1
    # sign-up with a taken address: the same page as a new one, and the account is untouched
    s1, _, taken = signup(Client(p), "known@example.com", password="hijack password")
    s2, _, fresh = signup(Client(p), "fresh@example.com")
    assert s1 == s2 == 200 and strip_echo(taken) == strip_echo(fresh)
    assert Client(p).signin("known@example.com")[0] == 303
    assert Client(p).signin("known@example.com", "hijack password")[0] == 401
    # timing: measured (not asserted tightly): both check one Argon2id hash
    def timed(mail):
        c = Client(p)
        c.get("/signin")
        t = time.perf_counter()
        c.post("/signin", {"email": mail, "password": "wrong password"})
        return time.perf_counter() - t
    k = [timed("known@example.com") for _ in range(7)]
    u = [timed("unknown@example.com") for _ in range(7)]
    mk, mu = statistics.median(k), statistics.median(u)
    print("sign-in timing: known %.1f ms, unknown %.1f ms (medians of 7)" % (mk * 1000, mu * 1000))
    assert 0.4 < mu / mk < 2.5, (mk, mu)


class StallingSmtp:
    """A mail server that accepts and says nothing for `stall` seconds, then hangs up: any mail sent before
    the answer would make the answer that slow."""

    def __init__(self, stall=1.5):
        self.stall = stall
        self.port = free_port()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        self.connections = 0
        self.stop = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.hold, args=(conn,), daemon=True).start()

    def hold(self, conn):
        time.sleep(self.stall)
        conn.close()

    def close(self):
        self.stop = True
        self.sock.close()


def test_signup_and_reset_answer_before_the_work_that_differs(backend, portico, workdir):
    """The attack: time the answers. A new address used to make a user, publish and send a mail before the
    answer; a known reset address made a token and a mail. With a mail server that takes 1.5 s, every
    answer must still come at once, and the work must still be done after it."""
    smtp = StallingSmtp()
    try:
        cfg = portal_config(backend, workdir)
        cfg["portal"]["mail"] = {"smtp": {"url": "smtp://127.0.0.1:%d" % smtp.port, "starttls": False}}
        p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
        m = Mgmt(p)
        m.ok("PUT", "users/known", {"email": "known@example.com", "firstName": "K", "lastName": "N",
                                    "state": "active"})

        def timed(path, form):
            c = Client(p)
            c.get(path)
            sent = smtp.connections
            t = time.perf_counter()
            status, _, page = c.post(path, form)
            took = time.perf_counter() - t
            # wait for the work after the answer (the mail server hangs up after its stall)
            wait_for(lambda: m.call("GET", "users")[0] == 200, timeout=10, what="the control thread")
            return status, took, smtp.connections - sent

        new = timed("/signup", {"email": "new@example.com", "password": PASSWORD, "firstName": "N",
                                "lastName": "W"})
        taken = timed("/signup", {"email": "known@example.com", "password": PASSWORD, "firstName": "N",
                                  "lastName": "W"})
        known = timed("/reset-password", {"email": "known@example.com"})
        unknown = timed("/reset-password", {"email": "nobody@example.com"})
        for name, (status, took, _) in (("new", new), ("taken", taken), ("known", known), ("unknown", unknown)):
            assert status == 200, name
            assert took < 1.0, (name, took)
        # the work was done after the answers: the new user exists, mails went out for the three addresses
        # that get one (the confirmation, "you have an account", the reset link), none for nobody
        assert user_id(p, "new@example.com") is not None
        assert get_user(p, user_id(p, "new@example.com"))["state"] == "pending"
        wait_for(lambda: smtp.connections >= 3, timeout=15, what="three mails")
        time.sleep(smtp.stall + 0.5)
        assert smtp.connections == 3
    finally:
        smtp.close()


def test_signup_with_a_taken_address_mails_its_owner_in_the_same_time(backend, portico, workdir):
    p, m = start(portico, backend, workdir, signin={"maxFailures": 1000, "lockout": "1s"})
    make_user(p, workdir, "owner@example.com")
    before = mail_paths(workdir)
    status, _, _ = signup(Client(p), "owner@example.com", password="another password")
    assert status == 200
    subject, body, _ = last_mail(workdir, "owner@example.com", after=before)
    assert "account" in subject.lower() and "/signin" in body and "already" in body
    assert Client(p).signin("owner@example.com")[0] == 303

    # timing: a new address (a user, a publish, a mail with its fsync) and a taken one (a mail) answer in
    # about the same time: the work that differs is done after the answer
    def timed(mail):
        c = Client(p)
        c.get("/signup")
        t = time.perf_counter()
        st, _, _ = c.post("/signup", {"email": mail, "password": PASSWORD, "firstName": "T", "lastName": "T"})
        took = time.perf_counter() - t
        assert st == 200
        return took
    taken = [timed("owner@example.com") for _ in range(7)]
    fresh = [timed("fresh%d@example.com" % i) for i in range(7)]
    mt, mf = statistics.median(taken), statistics.median(fresh)
    print("sign-up timing: taken %.1f ms, new %.1f ms (medians of 7)" % (mt * 1000, mf * 1000))
    assert 0.5 < mf / mt < 2.0, (mt, mf)


def test_reset_mails_cannot_be_silenced_for_a_victim(backend, portico, workdir):
    """The attack: use up the reset mails of someone's address (maxFailures per period) so their own
    request sends nothing; and one client going through many mailboxes."""
    p, m = start(portico, backend, workdir, signin={"maxFailures": 2, "lockout": "1m"})
    for name in ["victim"] + ["t%d" % i for i in range(10)]:
        m.ok("PUT", "users/" + name, {"email": "%s@example.com" % name, "firstName": "V", "lastName": "W",
                                      "state": "active"})

    def reset(source, mail):
        c = Client(p, source=source)
        status, _, page = c.post("/reset-password", {"email": mail}, page_path="/reset-password")
        assert status == 200 and "Check your mail" in page
        time.sleep(0.05)  # the mail goes after the answer

    def mails_to(mail):
        return [path for _, path, msg in outbox_mails(workdir) if mail in str(msg["To"])]

    for _ in range(5):
        reset("127.0.0.2", "victim@example.com")
    time.sleep(0.3)
    assert len(mails_to("victim@example.com")) == 2  # the target's count still limits the flood
    # the victim's own first request in the period still sends
    reset("127.0.0.3", "victim@example.com")
    wait_for(lambda: len(mails_to("victim@example.com")) == 3, timeout=5, what="the victim's reset mail")
    _, body, link = last_mail(workdir, "victim@example.com")
    assert "/reset-password/confirm?token=" in link
    # and not their second: that would be a flood again
    reset("127.0.0.3", "victim@example.com")
    reset("127.0.0.3", "victim@example.com")
    time.sleep(0.3)
    assert len(mails_to("victim@example.com")) == 3
    # one client through many mailboxes: counted per client address (4 x maxFailures requests)
    for i in range(10):
        reset("127.0.0.2", "t%d@example.com" % i)
    time.sleep(0.3)
    sent = sum(len(mails_to("t%d@example.com" % i)) for i in range(10))
    assert sent <= 3, sent
    # another client is not affected
    reset("127.0.0.4", "t9@example.com")
    wait_for(lambda: len(mails_to("t9@example.com")) == 1, timeout=5, what="t9's reset mail")


# ---------------------------------------------------------------- tokens

def test_tokens_are_single_use(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    c = Client(p)
    before = mail_paths(workdir)
    signup(c, "once@example.com")
    _, _, link = last_mail(workdir, "once@example.com", after=before)
    assert confirm(c, link)[0] == 303
    # the second use: refused, on GET and POST
    status, _, page = c.get(path_of(link))
    assert status == 400 and 'id="confirm-form"' not in page
    assert c.post("/confirm", {"token": token_of(link)}, page_path="/signin")[0] == 400
    # a reset link works once
    before = mail_paths(workdir)
    c.post("/reset-password", {"email": "once@example.com"}, page_path="/reset-password")
    _, _, link = last_mail(workdir, "once@example.com", after=before)
    c.get(path_of(link))
    assert c.post("/reset-password/confirm", {"token": token_of(link), "password": "first new pass"})[0] == 303
    c.get("/signin")
    status, _, _ = c.post("/reset-password/confirm", {"token": token_of(link), "password": "second new pass"})
    assert status == 400
    assert Client(p).signin("once@example.com", "first new pass")[0] == 303
    assert Client(p).signin("once@example.com", "second new pass")[0] == 401


def test_tokens_expire(backend, portico, workdir):
    p, m = start(portico, backend, workdir, tokens={"confirm": "1s", "reset": "1s"})
    c = Client(p)
    before = mail_paths(workdir)
    signup(c, "late@example.com")
    _, _, link = last_mail(workdir, "late@example.com", after=before)
    time.sleep(1.3)
    assert c.get(path_of(link))[0] == 400
    assert c.post("/confirm", {"token": token_of(link)}, page_path="/signin")[0] == 400
    uid = user_id(p, "late@example.com")
    assert get_user(p, uid)["state"] == "pending"
    # a reset link expires the same way (and would have confirmed the address)
    before = mail_paths(workdir)
    c.post("/reset-password", {"email": "late@example.com"}, page_path="/reset-password")
    _, _, link = last_mail(workdir, "late@example.com", after=before)
    time.sleep(1.3)
    c.get("/signin")
    assert c.post("/reset-password/confirm", {"token": token_of(link), "password": "too late pass"})[0] == 400
    assert get_user(p, uid)["state"] == "pending"


def test_tokens_only_for_their_purpose_and_their_user(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    a = Client(p)
    before = mail_paths(workdir)
    signup(a, "alice@example.com")
    _, _, confirm_link = last_mail(workdir, "alice@example.com", after=before)
    make_user(p, workdir, "bob@example.com")
    # a confirmation token is no reset token, nor an invitation
    assert a.post("/reset-password/confirm", {"token": token_of(confirm_link), "password": "takeover pass"},
                  page_path="/signin")[0] == 400
    assert a.post("/invitation", {"token": token_of(confirm_link), "password": "takeover pass"},
                  page_path="/signin")[0] == 400
    assert a.get("/invitation?token=" + token_of(confirm_link))[0] == 400
    # malformed tokens
    for bad in ("", "short", "x" * 44, "%00" * 43, "../" * 15):
        assert a.get("/confirm?token=" + bad)[0] == 400
    # Alice's reset link, sent by Bob's session with Bob's address in the form, sets Alice's password only
    confirm(a, confirm_link)
    before = mail_paths(workdir)
    a.post("/reset-password", {"email": "alice@example.com"}, page_path="/reset-password")
    _, _, reset_link = last_mail(workdir, "alice@example.com", after=before)
    bob = signed_in_client(p, workdir, "bob@example.com")
    bob.get(path_of(reset_link))
    status, _, _ = bob.post("/reset-password/confirm", {"token": token_of(reset_link), "password": "chosen by bob",
                                                        "email": "bob@example.com", "user": user_id(p, "bob@example.com")})
    assert status == 303
    assert Client(p).signin("bob@example.com")[0] == 303
    assert Client(p).signin("bob@example.com", "chosen by bob")[0] == 401
    assert Client(p).signin("alice@example.com", "chosen by bob")[0] == 303


# ------------------------------------------------------ who may not sign in

def test_blocked_and_pending_users_cannot_sign_in(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    uid = make_user(p, workdir, "blocked@example.com")
    c = signed_in_client(p, workdir, "blocked@example.com")
    body = get_user(p, uid)
    body["state"] = "blocked"
    body.pop("id", None)
    m.ok("PUT", "users/" + uid, body)
    # the open session ends at its next request, and sign-in is refused
    assert not c.signed_in()
    status, _, page = Client(p).signin("blocked@example.com")
    assert status == 403 and "cannot sign in" in page
    # a pending user (never confirmed) cannot either
    before = mail_paths(workdir)
    signup(Client(p), "pending@example.com")
    status, _, page = Client(p).signin("pending@example.com")
    assert status == 403 and 'id="signin-form"' in page
    # blocked before confirming: the confirmation link does not unblock
    _, _, link = last_mail(workdir, "pending@example.com", after=before)
    pid = user_id(p, "pending@example.com")
    pbody = get_user(p, pid)
    pbody["state"] = "blocked"
    pbody.pop("id", None)
    m.ok("PUT", "users/" + pid, pbody)
    c2 = Client(p)
    c2.get(path_of(link))
    assert c2.post("/confirm", {"token": token_of(link)}, page_path="/signin")[0] == 400
    assert get_user(p, pid)["state"] == "blocked"
    assert Client(p).signin("pending@example.com")[0] == 403
    # unblocked by the administrator, the first user signs in again
    body["state"] = "active"
    m.ok("PUT", "users/" + uid, body)
    assert Client(p).signin("blocked@example.com")[0] == 303


def test_a_reused_id_or_a_changed_address_does_not_keep_the_password(backend, portico, workdir):
    """An administrator deletes a user and makes another one with the same id for someone else: the old
    owner's password and session open nothing.  An address changed by an administrator needs a new password."""
    p, m = start(portico, backend, workdir)
    uid = make_user(p, workdir, "first@example.com")
    old_owner = signed_in_client(p, workdir, "first@example.com")
    assert m.call("DELETE", "users/" + uid)[0] == 204
    m.ok("PUT", "users/" + uid, {"email": "second@example.com", "firstName": "S", "lastName": "T",
                                 "state": "active"})
    assert not old_owner.signed_in()
    assert Client(p).signin("second@example.com")[0] == 401
    # the address moves: the password stays with the old address, so it is asked again by mail
    uid2 = make_user(p, workdir, "moving@example.com")
    mover = signed_in_client(p, workdir, "moving@example.com")
    body = get_user(p, uid2)
    body.pop("id", None)
    body["email"] = "moved@example.com"
    m.ok("PUT", "users/" + uid2, body)
    assert not mover.signed_in()
    assert Client(p).signin("moved@example.com")[0] == 401
    before = mail_paths(workdir)
    c = Client(p)
    c.post("/reset-password", {"email": "moved@example.com"}, page_path="/reset-password")
    _, _, link = last_mail(workdir, "moved@example.com", after=before)
    c.get(path_of(link))
    assert c.post("/reset-password/confirm", {"token": token_of(link), "password": "moved password"})[0] == 303
    assert Client(p).signin("moved@example.com", "moved password")[0] == 303


# ------------------------------------------------------------------ closing

def test_close_account(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    uid = make_user(p, workdir, "leaving@example.com")
    m.ok("PUT", "products/starter", {"displayName": "Starter", "state": "published",
                                     "subscriptionRequired": True})
    m.ok("PUT", "products/starter/apis/echo")
    m.ok("PUT", "subscriptions/leaving-sub", {"scope": "/products/starter", "ownerId": "/users/" + uid,
                                               "state": "active"})
    c = signed_in_client(p, workdir, "leaving@example.com")
    other = signed_in_client(p, workdir, "leaving@example.com")
    # the password is required
    status, _, page = c.post("/profile/close", {"password": "not my password"}, page_path="/profile")
    assert status == 403 and get_user(p, uid)["state"] == "active"
    status, h, _ = c.post("/profile/close", {"password": PASSWORD}, page_path="/profile")
    assert status == 303 and h["location"] == "/"
    assert get_user(p, uid)["state"] == "deleted"
    assert m.ok("GET", "subscriptions/leaving-sub")["state"] == "cancelled"
    assert not c.signed_in() and not other.signed_in()
    assert Client(p).signin("leaving@example.com")[0] == 401
    with db(workdir) as con:
        assert con.execute("SELECT count(*) FROM portal_credentials WHERE user = ?", (uid,)).fetchone()[0] == 0


def test_close_account_cancels_subscriptions_owned_under_a_service_path(backend, portico, workdir):
    """The model accepts a service path before /users/ID, and the subscriptions pages and the console treat
    such a subscription as the user's: closing the account must cancel it too (the same rule)."""
    p, m = start(portico, backend, workdir)
    uid = make_user(p, workdir, "prefixed@example.com")
    m.ok("PUT", "products/starter", {"displayName": "Starter", "state": "published",
                                     "subscriptionRequired": True})
    m.ok("PUT", "products/starter/apis/echo")
    m.ok("PUT", "products/starter/groups/developers")
    owner = "/subscriptions/0/resourceGroups/rg/providers/Microsoft.ApiManagement/service/s/users/" + uid
    m.ok("PUT", "subscriptions/prefixed-sub", {"scope": "/products/starter", "ownerId": owner,
                                               "displayName": "Prefixed", "state": "active"})
    # another user whose id ends like this one's is not matched
    m.ok("PUT", "users/x" + uid, {"email": "other@example.com", "firstName": "O", "lastName": "T"})
    m.ok("PUT", "subscriptions/other-sub", {"scope": "/products/starter", "ownerId": "/users/x" + uid,
                                            "state": "active"})
    c = signed_in_client(p, workdir, "prefixed@example.com")
    status, _, page = c.get("/subscriptions")
    assert status == 200 and "prefixed-sub" in page and "other-sub" not in page
    status, _, page = c.get("/apis/echo/operations/" + m.ok("GET", "apis/echo/operations")["value"][0]["id"])
    assert status == 200 and '<option value="prefixed-sub">' in page and "other-sub" not in page
    status, h, _ = c.post("/profile/close", {"password": PASSWORD}, page_path="/profile")
    assert status == 303 and get_user(p, uid)["state"] == "deleted"
    assert m.ok("GET", "subscriptions/prefixed-sub")["state"] == "cancelled"
    assert m.ok("GET", "subscriptions/other-sub")["state"] == "active"


def test_close_account_kept_in_the_configuration_is_refused(backend, portico, workdir):
    """A user or subscription declared in the file would come back at the next reload (keys included):
    closing such an account on the portal is refused with a message, and nothing changes."""
    users = [{"id": "admin", "email": ADMIN_EMAIL, "firstName": "Ada", "lastName": "Admin",
              "groups": ["administrators"]},
             {"id": "fileuser", "email": "file@example.com", "firstName": "Fi", "lastName": "Le"}]
    cfg = portal_config(backend, workdir, users=users)
    cfg["products"] = [{"id": "fp", "displayName": "File product", "state": "published", "apis": ["echo"]}]
    cfg["subscriptions"] = [{"id": "file-sub", "scope": "/products/fp", "ownerId": "/users/fileuser",
                             "state": "active"}]
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    st, _, _ = m.call("PUT", "/management/users/fileuser/password", {"password": PASSWORD})
    assert st == 204
    c = signed_in_client(p, workdir, "file@example.com")
    status, _, page = c.post("/profile/close", {"password": PASSWORD}, page_path="/profile")
    assert status == 409 and "provider" in page
    assert get_user(p, "fileuser").get("state", "active") == "active"
    assert m.ok("GET", "subscriptions/file-sub").get("state", "active") == "active"
    assert c.signed_in()
    assert p.reload(cfg)
    assert m.ok("GET", "subscriptions/file-sub").get("state", "active") == "active"


def test_a_closed_accounts_address_can_sign_up_and_be_invited_again(backend, portico, workdir):
    """A closed account (state deleted) kept its address for ever: a sign-up was answered like a taken
    address and nothing happened, an invitation was refused."""
    p, m = start(portico, backend, workdir)
    for mail in ("again@example.com", "invited@example.com"):
        old = make_user(p, workdir, mail)
        c = signed_in_client(p, workdir, mail)
        status, _, _ = c.post("/profile/close", {"password": PASSWORD}, page_path="/profile")
        assert status == 303 and get_user(p, old)["state"] == "deleted"
    # sign-up: a new pending user, a confirmation mail, then signing in works
    before = mail_paths(workdir)
    c = Client(p)
    status, _, _ = signup(c, "again@example.com", password="a new password 1")
    assert status == 200
    subject, _, link = last_mail(workdir, "again@example.com", after=before)
    assert link and "/confirm?token=" in link, subject
    assert confirm(c, link)[0] == 303
    assert Client(p).signin("again@example.com", "a new password 1")[0] == 303
    users = [u for u in m.ok("GET", "users")["value"] if u.get("email", "").lower() == "again@example.com"]
    assert sorted(u.get("state", "active") for u in users) == ["active", "deleted"]
    # invitation by an administrator
    admin = set_admin_password(p, workdir)
    before = mail_paths(workdir)
    status, _, page = admin.post("/admin/invite", {"email": "invited@example.com", "firstName": "In",
                                                   "lastName": "Vited"}, page_path="/admin/invite")
    assert status == 303, page
    _, _, link = last_mail(workdir, "invited@example.com", after=before)
    assert "/invitation?token=" in link
    # a live account's address is still taken
    status, _, _ = admin.post("/admin/invite", {"email": "again@example.com", "firstName": "a",
                                                "lastName": "b"}, page_path="/admin/invite")
    assert status == 409


# -------------------------------------------------------------- invitations

def test_invitation(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    make_user(p, workdir, "plain@example.com")
    # the page is an administrator's: a developer gets a 404, a guest is sent to sign in
    dev = signed_in_client(p, workdir, "plain@example.com")
    assert dev.get("/admin/invite")[0] == 404
    assert dev.post("/admin/invite", {"email": "x@example.com", "firstName": "x", "lastName": "y"},
                    page_path="/profile")[0] == 404
    assert user_id(p, "x@example.com") is None
    assert Client(p).get("/admin/invite")[0] == 303
    admin = set_admin_password(p, workdir)
    status, _, page = admin.get("/admin/invite")
    assert status == 200 and 'id="invite-form"' in page
    before = mail_paths(workdir)
    status, h, _ = admin.post("/admin/invite", {"email": "guest@example.com", "firstName": "Guest",
                                                "lastName": "Star"})
    assert status == 303
    uid = user_id(p, "guest@example.com")
    assert get_user(p, uid)["state"] == "pending"
    # an address that has an account is refused
    status, _, page = admin.post("/admin/invite", {"email": "plain@example.com", "firstName": "a",
                                                   "lastName": "b"}, page_path="/admin/invite")
    assert status == 409 and 'role="alert"' in page
    _, _, first_link = last_mail(workdir, "guest@example.com", after=before)
    # invited again before accepting: a new link, and the first one no longer works
    before = mail_paths(workdir)
    status, h, _ = admin.post("/admin/invite", {"email": "guest@example.com", "firstName": "Guest",
                                                "lastName": "Star"}, page_path="/admin/invite")
    assert status == 303
    subject, body, link = last_mail(workdir, "guest@example.com", after=before)
    assert "/invitation?token=" in link and link != first_link
    assert Client(p).get(path_of(first_link))[0] == 400
    # no password yet: signing in fails like any wrong password
    assert Client(p).signin("guest@example.com", "anything at all")[0] == 401
    g = Client(p)
    status, _, page = g.get(path_of(link))
    assert status == 200 and 'id="invitation-form"' in page
    status, h, _ = g.post("/invitation", {"token": token_of(link), "password": "guest password"})
    assert status == 303 and g.signed_in()
    assert get_user(p, uid)["state"] == "active"
    assert g.post("/invitation", {"token": token_of(link), "password": "again password"},
                  page_path="/profile")[0] == 400
    assert Client(p).signin("guest@example.com", "guest password")[0] == 303
