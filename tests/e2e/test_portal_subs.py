"""The developer portal's subscriptions, keys, approvals, console relay and
usage (docs/portal.md "Subscriptions and keys", "The console", "Usage"),
against the real binary: real sign-ups through the outbox, the real gateway
with real keys, a real backend, the real analytics store.

Each test checks what the browser got and what really happened: the store
(through the management API), the gateway (calls with the old and the new
key), the backend (what the relay sent), the outbox (the mails).  Attacks:
another user's subscription id on every route, missing CSRF tokens, guests,
and console paths that try to leave the gateway."""

import email
import email.policy
import glob
import http.client
import json
import os
import re
import socket
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET

import pytest

from backends import EchoBackend
from conftest import free_port, wait_for
from mgmt_helpers import TOKEN, Mgmt, mgmt_config
import portal_helpers
from portal_helpers import csrf_of
from tls_helpers import Pki, TLSEchoBackend

PASSWORD = "correct horse battery staple"
SVG = "{http://www.w3.org/2000/svg}"


# ------------------------------------------------------------------ helpers

class Browser(portal_helpers.Client):
    """A portal visitor without JavaScript (the shared browser): JSON bodies for the console's API too."""

    def request(self, method, path, form=None, headers=None, body=None):
        if form is None and isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = dict(headers or {}, **{"Content-Type": "application/json"})
        return super().request(method, path, form=form, headers=headers, body=body)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def follow(self, status, hdrs, text):
        """Follows one 303 to the page (where the flash is shown)."""
        if status in (302, 303) and "location" in hdrs:
            loc = urllib.parse.urlsplit(hdrs["location"])
            return self.get(loc.path + ("?" + loc.query if loc.query else ""))
        return status, hdrs, text

    def csrf(self, page=None):
        token = csrf_of(page if page is not None else self.last)
        assert token is not None, "no CSRF field on the page"
        return token

    def post(self, path, fields=None, csrf=True, page="/subscriptions"):
        """POSTs a form with the session's CSRF token (taken from `page`)."""
        fields = dict(fields or {})
        if csrf:
            _, _, text = self.get(page)
            fields["csrf"] = self.csrf(text)
        return self.request("POST", path, form=fields)

    def token(self):
        _, _, text = self.get("/subscriptions")
        return self.csrf(text)


def outbox(p):
    return p.config["portal"]["mail"]["outbox"]


def mails(p, to=None):
    """The outbox's messages (oldest first) as (To, Subject, body)."""
    out = []
    for f in sorted(glob.glob(os.path.join(outbox(p), "*.eml")), key=os.path.getmtime):
        with open(f, "rb") as fh:
            m = email.message_from_binary_file(fh, policy=email.policy.default)
        body = m.get_body(preferencelist=("plain",))
        item = (str(m["To"]), str(m["Subject"]), body.get_content() if body else "")
        if to is None or to in item[0]:
            out.append(item)
    return out


def wait_mail(p, to, what, count=1):
    wait_for(lambda: len([m for m in mails(p, to) if what(m)]) >= count, timeout=5,
             what="%d mail(s) to %s" % (count, to))
    return [m for m in mails(p, to) if what(m)]


def signup(p, mail_addr, first="Dev", last="Eloper"):
    """Signs up, confirms through the outbox's link, signs in: a Browser with a session."""
    b = Browser(p.portal_url)
    _, _, page = b.get("/signup")
    st, hdrs, text = b.request("POST", "/signup", form={
        "csrf": b.csrf(page), "email": mail_addr, "password": PASSWORD, "firstName": first, "lastName": last,
        "terms": "on"})
    assert st in (200, 303), (st, text)
    msg = wait_mail(p, mail_addr, lambda m: "/confirm?token=" in m[2])[-1]
    token = re.search(r"/confirm\?token=([A-Za-z0-9_.~%-]+)", msg[2]).group(1)
    _, _, page = b.get("/confirm?token=" + token)
    st, _, text = b.request("POST", "/confirm", form={"csrf": b.csrf(page), "token": token})
    assert st in (200, 303), (st, text)
    signin(b, mail_addr)
    return b


def signin(b, mail_addr):
    b.cookies.clear()
    _, _, page = b.get("/signin")
    st, hdrs, text = b.request("POST", "/signin", form={"csrf": b.csrf(page), "email": mail_addr,
                                                        "password": PASSWORD})
    assert st == 303, (st, text)
    st, _, text = b.get("/subscriptions")
    assert st == 200 and 'id="subscriptions"' in text, (st, text[:500])


def user_id(m, mail_addr):
    for u in m.ok("GET", "users")["value"]:
        if u["email"].lower() == mail_addr.lower():
            return u["id"]
    raise AssertionError("no user " + mail_addr)


def make_admin(p, m, mail_addr):
    b = signup(p, mail_addr, "Ada", "Admin")
    m.ok("PUT", "groups/administrators/users/%s" % user_id(m, mail_addr))
    signin(b, mail_addr)  # a new session sees the new group
    return b


def subs_of(m, uid):
    return [s for s in m.ok("GET", "subscriptions")["value"] if s.get("ownerId", "").endswith("/users/" + uid)]


def subscribe(b, product, name="", terms=None):
    fields = {"name": name}
    if terms:
        fields["terms"] = terms
    st, hdrs, text = b.post("/products/%s/subscribe" % product, fields, page="/subscriptions")
    return b.follow(st, hdrs, text)


def gw(p, path, key=None, header="Ocp-Apim-Subscription-Key"):
    return p.request("GET", path, headers={header: key} if key else {})


def flash(text):
    m = re.search(r'<p id="flash" role="status">(.*?)</p>', text, re.S)
    return m.group(1) if m else ""


def row(text, sid):
    m = re.search(r'<tr data-subscription="%s".*?</tr>' % re.escape(sid), text, re.S)
    return m.group(0) if m else None


def test_console_paths_with_dot_segments_cannot_leave_the_api(site, backend):
    """The attack: the gateway normalizes "/echo/../limited/a" to "/limited/a" before routing, so a dot
    segment (in any spelling) would take the relay, with the developer's key, out of the API it opens."""
    p, m = site
    dev = signup(p, "dots@example.com")
    subscribe(dev, "starter", "Dots")
    sid = subs_of(m, user_id(m, "dots@example.com"))[0]["id"]
    backend.clear()
    for call in ({"path": "/echo/../limited/a"}, {"path": "/echo/%2e%2e/limited/a"},
                 {"path": "/echo/.%2E/limited/a"}, {"path": "/echo/./x"}, {"path": "/echo/%2e/x"},
                 {"path": "/../limited/a", "api": "echo"}, {"path": "/%2E%2E/limited/a", "api": "echo"},
                 {"path": "/a/..", "api": "echo"}):
        st, _, body = console(dev, subscription=sid, key="primary", method="GET", **call)
        assert st == 400, (call, st, body)
    assert not backend.requests
    # names that only look like dots still pass
    st, _, body = console(dev, subscription=sid, key="primary", method="GET", path="/echo/..x/.y?z=/../")
    assert st == 200 and json.loads(body)["status"] == 200
    assert backend.last().target.startswith("/..x/.y")


def config(backend, workdir, **portal):
    cfg = mgmt_config(backend.url)
    cfg["analytics"] = {"flushInterval": "200ms"}
    cfg["apis"] = [
        {"id": "echo", "displayName": "Echo API", "path": "echo", "serviceUrl": backend.url,
         "subscriptionRequired": True,
         "operations": [{"id": "anything", "method": "*", "urlTemplate": "/*"}]},
        {"id": "limited", "displayName": "Limited API", "path": "limited", "serviceUrl": backend.url,
         "subscriptionRequired": True, "subscriptionKeyParameterNames": {"header": "X-Api-Key"},
         "operations": [{"id": "anything", "method": "*", "urlTemplate": "/*"}]},
    ]
    cfg["groups"] = [{"id": "partners", "displayName": "Partners"}]
    cfg["products"] = [
        {"id": "starter", "displayName": "Starter", "state": "published", "apis": ["echo"],
         "groups": ["developers"], "subscriptionsLimit": 2},
        {"id": "gold", "displayName": "Gold <b>", "state": "published", "apis": ["echo"], "groups": ["developers"],
         "approvalRequired": True, "terms": "Be kind to the backend."},
        {"id": "limited", "displayName": "Limited", "state": "published", "apis": ["limited"],
         "groups": ["developers"],
         "policies": {"inbound": ["base", {"rate-limit": {"calls": 2, "renewal-period": 300}}]}},
        {"id": "partners-only", "displayName": "Partners only", "state": "published", "apis": ["echo"],
         "groups": ["partners"]},
        {"id": "draft", "displayName": "Draft", "state": "notPublished", "apis": ["echo"],
         "groups": ["developers"]},
        {"id": "open", "displayName": "Open", "state": "published", "apis": ["echo"], "groups": ["developers"],
         "subscriptionRequired": False},
    ]
    cfg["portal"] = dict({"listen": "127.0.0.1:%d" % free_port(), "site": {"title": "Acme APIs"},
                          "mail": {"outbox": os.path.join(workdir, "outbox")}}, **portal)
    return cfg


@pytest.fixture
def site(backend, portico, workdir):
    p = portico(config(backend, workdir), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    return p, Mgmt(p)


# -------------------------------------------------------------- subscribing

def test_subscribe_active_keys_masked_and_shown_only_to_the_owner(site, backend):
    p, m = site
    dev = signup(p, "dev@example.com")
    st, _, text = subscribe(dev, "starter", "My app")
    assert st == 200 and "keys are below" in flash(text), flash(text)
    uid = user_id(m, "dev@example.com")
    subs = subs_of(m, uid)
    assert len(subs) == 1 and subs[0]["state"] == "active" and subs[0]["displayName"] == "My app"
    assert subs[0]["scope"].endswith("/products/starter")
    sid = subs[0]["id"]
    keys = m.keys(sid)
    # the page: the row, both keys masked, the key values nowhere in the HTML
    r = row(text, sid)
    assert r and "My app" in r and 'data-state="active"' in r
    assert re.search(r'<code class="key" data-key="primary">•+</code>', r)
    assert re.search(r'<code class="key" data-key="secondary">•+</code>', r)
    assert keys["primaryKey"] not in text and keys["secondaryKey"] not in text
    # the JS endpoint: with the session's CSRF token, the keys; without it, 403 and no key
    tok = dev.token()
    st, hdrs, body = dev.get("/api/subscriptions/%s/keys" % sid, headers={"X-CSRF-Token": tok})
    assert st == 200 and json.loads(body) == {"primaryKey": keys["primaryKey"], "secondaryKey": keys["secondaryKey"]}
    assert "no-store" in hdrs.get("cache-control", "")
    st, _, body = dev.get("/api/subscriptions/%s/keys" % sid)
    assert st == 403 and keys["primaryKey"] not in body
    st, _, body = dev.get("/api/subscriptions/%s/keys" % sid, headers={"X-CSRF-Token": "x" * len(tok)})
    assert st == 403 and keys["primaryKey"] not in body
    # without JS: POST show renders them once, not cached
    st, hdrs, text = dev.post("/subscriptions/%s/show" % sid)
    assert st == 200 and keys["primaryKey"] in text and keys["secondaryKey"] in text
    assert "no-store" in hdrs.get("cache-control", "")
    st, _, text = dev.get("/subscriptions")
    assert keys["primaryKey"] not in text
    # the key the page shows opens the gateway
    backend.clear()
    st, _, _ = gw(p, "/echo/hello", keys["primaryKey"])
    assert st == 200 and backend.last().target == "/hello"
    st, _, _ = gw(p, "/echo/hello", keys["secondaryKey"])
    assert st == 200


def test_products_that_are_not_visible_cannot_be_subscribed(site):
    p, m = site
    dev = signup(p, "dev@example.com")
    for product in ("partners-only", "draft", "nope"):
        st, _, _ = dev.post("/products/%s/subscribe" % product, {"name": "x"})
        assert st == 404, product
    st, _, text = subscribe(dev, "open", "x")
    assert "answer without a key" in flash(text)
    assert subs_of(m, user_id(m, "dev@example.com")) == []
    guest = Browser(p.portal_url)
    st, hdrs, _ = guest.request("POST", "/products/starter/subscribe", form={"name": "x"})
    assert st in (303, 403) and m.ok("GET", "subscriptions")["value"] == []


def test_subscriptions_limit_and_terms(site):
    p, m = site
    dev = signup(p, "dev@example.com")
    uid = user_id(m, "dev@example.com")
    for i in range(2):
        st, _, text = subscribe(dev, "starter", "app %d" % i)
        assert "keys are below" in flash(text)
    st, _, text = subscribe(dev, "starter", "one too many")
    assert "the most it allows" in flash(text), flash(text)
    assert sorted(s["displayName"] for s in subs_of(m, uid)) == ["app 0", "app 1"]
    # cancelling one frees a place
    sid = subs_of(m, uid)[0]["id"]
    dev.post("/subscriptions/%s/cancel" % sid)
    st, _, text = subscribe(dev, "starter", "again")
    assert "keys are below" in flash(text)
    # terms: refused without acceptance, nothing made
    st, _, text = subscribe(dev, "gold", "gold app")
    assert "terms" in flash(text)
    assert not [s for s in subs_of(m, uid) if s["scope"].endswith("/gold")]
    # names: empty takes the product's, too long or control characters are refused
    st, _, text = subscribe(dev, "gold", "x" * 101, terms="on")
    assert "1 to 100" in flash(text)
    st, _, text = subscribe(dev, "gold", "", terms="on")
    gold = [s for s in subs_of(m, uid) if s["scope"].endswith("/gold")]
    assert len(gold) == 1 and gold[0]["displayName"] == "Gold <b>" and gold[0]["state"] == "submitted"
    assert "Gold &lt;b&gt;" in text and "Gold <b>" not in text


# --------------------------------------------------------------- approvals

def test_approval_flow_with_mails(site, backend):
    p, m = site
    admin = make_admin(p, m, "admin@example.com")
    dev = signup(p, "dev@example.com", "Grace", "Hopper")
    uid = user_id(m, "dev@example.com")
    st, _, text = subscribe(dev, "gold", "Gold app", terms="on")
    assert "approval" in flash(text)
    sub = subs_of(m, uid)[0]
    sid = sub["id"]
    assert sub["state"] == "submitted"
    # every administrator is told, with the developer and the product named
    got = wait_mail(p, "admin@example.com", lambda x: "Gold" in x[1] + x[2])
    assert "Grace" in got[-1][2] or "dev@example.com" in got[-1][2]
    # no keys while submitted: not on the page, not from the API, not at the gateway
    r = row(text, sid)
    assert r and 'data-state="submitted"' in r and "<code" not in r
    st, _, _ = dev.get("/api/subscriptions/%s/keys" % sid, headers={"X-CSRF-Token": dev.token()})
    assert st == 409
    keys = m.keys(sid)
    assert gw(p, "/echo/x", keys["primaryKey"])[0] == 401
    # the developer cannot see or use the approvals page
    assert dev.get("/admin/subscriptions")[0] == 404
    st, _, _ = dev.post("/admin/subscriptions/%s/approve" % sid, {"comment": "self"})
    assert st == 404 and m.ok("GET", "subscriptions/" + sid)["state"] == "submitted"
    # the administrator approves with a comment
    st, _, text = admin.get("/admin/subscriptions")
    assert st == 200 and re.search(r'<table id="pending".*data-subscription="%s"' % sid, text, re.S)
    st, _, _ = admin.post("/admin/subscriptions/%s/approve" % sid, {"comment": "Welcome aboard"},
                          page="/admin/subscriptions")
    assert st == 303
    s = m.ok("GET", "subscriptions/" + sid)
    assert s["state"] == "active" and s["stateComment"] == "Welcome aboard"
    got = wait_mail(p, "dev@example.com", lambda x: "Welcome aboard" in x[2])
    assert "Gold" in got[-1][1] + got[-1][2]
    assert gw(p, "/echo/x", keys["primaryKey"])[0] == 200
    st, _, text = admin.get("/admin/subscriptions")
    assert 'data-subscription="%s"' % sid not in text
    # a second decision on it is refused
    admin.post("/admin/subscriptions/%s/reject" % sid, {"comment": "late"}, page="/admin/subscriptions")
    assert m.ok("GET", "subscriptions/" + sid)["state"] == "active"
    # a rejection
    subscribe(dev, "gold", "Second", terms="on")
    sid2 = [x for x in subs_of(m, uid) if x["displayName"] == "Second"][0]["id"]
    admin.post("/admin/subscriptions/%s/reject" % sid2, {"comment": "Not this one"}, page="/admin/subscriptions")
    assert m.ok("GET", "subscriptions/" + sid2)["state"] == "rejected"
    wait_mail(p, "dev@example.com", lambda x: "Not this one" in x[2])
    st, _, text = dev.get("/subscriptions")
    assert 'data-state="rejected"' in row(text, sid2) and "Not this one" in row(text, sid2)
    # no CSRF token: 403, nothing decided
    subscribe(dev, "gold", "Third", terms="on")
    sid3 = [x for x in subs_of(m, uid) if x["displayName"] == "Third"][0]["id"]
    st, _, _ = admin.request("POST", "/admin/subscriptions/%s/approve" % sid3, form={"comment": "x"})
    assert st == 403 and m.ok("GET", "subscriptions/" + sid3)["state"] == "submitted"


def test_management_api_decisions_mail_the_owner(site):
    p, m = site
    dev = signup(p, "dev@example.com")
    uid = user_id(m, "dev@example.com")
    subscribe(dev, "gold", "A", terms="on")
    subscribe(dev, "gold", "B", terms="on")
    a, b_ = sorted(subs_of(m, uid), key=lambda s: s["displayName"])
    before = len(mails(p, "dev@example.com"))
    m.ok("PATCH", "subscriptions/" + a["id"], {"state": "active", "stateComment": "ok by API"})
    got = wait_mail(p, "dev@example.com", lambda x: "ok by API" in x[2])[-1]
    # the template's variables: the product, the subscription, the site's title, the link to the keys
    assert "Gold <b>" in got[1] and " A " in got[2] and "Acme APIs" in got[2]
    assert p.portal_url + "/subscriptions" in got[2]
    m.ok("PATCH", "subscriptions/" + b_["id"], {"state": "rejected", "stateComment": "no by API"})
    wait_mail(p, "dev@example.com", lambda x: "no by API" in x[2])
    # other changes send nothing
    m.ok("PATCH", "subscriptions/" + a["id"], {"displayName": "renamed"})
    m.ok("PATCH", "subscriptions/" + a["id"], {"state": "suspended"})
    time.sleep(0.3)
    assert len(mails(p, "dev@example.com")) == before + 2


# ---------------------------------------------------- regenerate, rename, cancel

def test_regenerate_rename_cancel_at_the_gateway(site):
    p, m = site
    dev = signup(p, "dev@example.com")
    subscribe(dev, "starter", "Keys")
    sid = subs_of(m, user_id(m, "dev@example.com"))[0]["id"]
    old = m.keys(sid)
    assert gw(p, "/echo/x", old["primaryKey"])[0] == 200
    st, hdrs, text = dev.follow(*dev.post("/subscriptions/%s/regenerate" % sid, {"key": "primary"}))
    assert "new primary key" in flash(text)
    new = m.keys(sid)
    assert new["primaryKey"] != old["primaryKey"] and new["secondaryKey"] == old["secondaryKey"]
    assert gw(p, "/echo/x", old["primaryKey"])[0] == 401
    assert gw(p, "/echo/x", new["primaryKey"])[0] == 200
    assert gw(p, "/echo/x", old["secondaryKey"])[0] == 200
    dev.post("/subscriptions/%s/regenerate" % sid, {"key": "secondary"})
    assert gw(p, "/echo/x", old["secondaryKey"])[0] == 401
    assert gw(p, "/echo/x", m.keys(sid)["secondaryKey"])[0] == 200
    dev.post("/subscriptions/%s/regenerate" % sid, {"key": "tertiary"})
    assert m.keys(sid)["primaryKey"] == new["primaryKey"]
    # rename
    st, hdrs, text = dev.follow(*dev.post("/subscriptions/%s/rename" % sid, {"name": "  Renamed <i>  "}))
    assert m.ok("GET", "subscriptions/" + sid)["displayName"] == "Renamed <i>"
    assert "Renamed &lt;i&gt;" in row(text, sid)
    for bad in ("", "   ", "x" * 101, "a\x01b"):
        dev.post("/subscriptions/%s/rename" % sid, {"name": bad})
        assert m.ok("GET", "subscriptions/" + sid)["displayName"] == "Renamed <i>"
    # cancel: the keys stop working at once
    key = m.keys(sid)["primaryKey"]
    st, hdrs, text = dev.follow(*dev.post("/subscriptions/%s/cancel" % sid))
    assert "Cancelled" in flash(text)
    assert m.ok("GET", "subscriptions/" + sid)["state"] == "cancelled"
    assert gw(p, "/echo/x", key)[0] == 401
    assert 'data-state="cancelled"' in row(text, sid)
    st, _, _ = dev.get("/api/subscriptions/%s/keys" % sid, headers={"X-CSRF-Token": dev.token()})
    assert st == 409
    st, _, text = dev.post("/subscriptions/%s/show" % sid)
    assert key not in text
    dev.post("/subscriptions/%s/regenerate" % sid, {"key": "primary"})
    assert m.keys(sid)["primaryKey"] == key


# ------------------------------------------------------------------ attacks

def test_another_users_subscription_on_every_route(site, backend):
    p, m = site
    alice = signup(p, "alice@example.com")
    subscribe(alice, "starter", "Alice's")
    sid = subs_of(m, user_id(m, "alice@example.com"))[0]["id"]
    keys = m.keys(sid)
    mallory = signup(p, "mallory@example.com")
    tok = mallory.token()
    st, _, body = mallory.get("/api/subscriptions/%s/keys" % sid, headers={"X-CSRF-Token": tok})
    assert st == 404 and keys["primaryKey"] not in body
    for action, fields in (("show", {}), ("regenerate", {"key": "primary"}), ("regenerate", {"key": "secondary"}),
                           ("rename", {"name": "pwned"}), ("cancel", {})):
        st, _, body = mallory.post("/subscriptions/%s/%s" % (sid, action), fields)
        assert st == 404, action
        assert keys["primaryKey"] not in body and keys["secondaryKey"] not in body
    s = m.ok("GET", "subscriptions/" + sid)
    assert s["state"] == "active" and s["displayName"] == "Alice's" and m.keys(sid) == keys
    backend.clear()
    st, _, body = mallory.request("POST", "/api/console", headers={"X-CSRF-Token": tok},
                                  body={"subscription": sid, "key": "primary", "method": "GET",
                                        "path": "/echo/steal"})
    assert st == 404 and keys["primaryKey"] not in body and not backend.requests
    # Alice's subscription is not listed for Mallory, nor her usage
    st, _, text = mallory.get("/subscriptions")
    assert sid not in text
    st, _, text = mallory.get("/usage?subscription=" + sid)
    assert st == 200 and "Alice&#39;s" not in text and "Alice's" not in text
    # no CSRF token: 403 and nothing changes, even for the owner
    for action, fields in (("regenerate", {"key": "primary"}), ("rename", {"name": "x"}), ("cancel", {}),
                           ("show", {})):
        st, _, body = alice.request("POST", "/subscriptions/%s/%s" % (sid, action), form=fields)
        assert st == 403, action
        assert keys["primaryKey"] not in body
        st, _, body = alice.request("POST", "/subscriptions/%s/%s" % (sid, action),
                                    form=dict(fields, csrf=mallory.token()))
        assert st == 403, action  # a token of another session is no token
    st, _, _ = alice.request("POST", "/api/console", body={"subscription": sid, "method": "GET", "path": "/echo/x"})
    assert st == 403
    assert m.ok("GET", "subscriptions/" + sid)["state"] == "active" and m.keys(sid) == keys
    # guests: sign in first
    guest = Browser(p.portal_url)
    st, _, body = guest.get("/api/subscriptions/%s/keys" % sid)
    assert st == 401 and json.loads(body)["error"]["code"] == "SignInRequired"
    st, _, body = guest.request("POST", "/api/console", body={"subscription": sid, "path": "/echo/x"})
    assert st in (401, 403) and keys["primaryKey"] not in body
    st, hdrs, _ = guest.get("/subscriptions")
    assert st == 303 and "/signin" in hdrs["location"]
    assert guest.get("/usage")[0] == 303
    assert guest.get("/admin/subscriptions")[0] in (303, 404)


# ------------------------------------------------------------------ console

def console(b, **call):
    return b.request("POST", "/api/console", headers={"X-CSRF-Token": b.token()}, body=call)


def test_created_date_from_the_management_api_is_escaped(site):
    """The attack: a createdDate holding markup, written through the management API (by anyone with a
    subscription-writing role), reaches the owner's subscriptions page."""
    p, m = site
    dev = signup(p, "dated@example.com")
    uid = user_id(m, "dated@example.com")
    m.ok("PUT", "subscriptions/dated", {"scope": "/products/starter", "ownerId": "/users/" + uid,
                                        "displayName": "Dated", "state": "active",
                                        "createdDate": "<b>x</b><script>alert(1)</script>"})
    st, _, page = dev.get("/subscriptions")
    assert st == 200 and 'data-subscription="dated"' in page
    assert "<b>x</b>" not in page and "<script>alert" not in page
    assert "&lt;b&gt;x&lt;/b&gt;&lt;s</time>" in page  # the first ten characters, escaped


def test_console_reaches_the_backend_through_the_gateway(site, backend):
    p, m = site
    dev = signup(p, "dev@example.com")
    subscribe(dev, "starter", "Console")
    sid = subs_of(m, user_id(m, "dev@example.com"))[0]["id"]
    keys = m.keys(sid)
    backend.clear()
    st, _, body = console(dev, subscription=sid, key="secondary", method="POST", path="/echo/items?x=1",
                          headers=[["Content-Type", "application/json"], ["X-Custom", "yes"],
                                   ["Ocp-Apim-Subscription-Key", "forged"], ["Host", "evil.example"],
                                   ["X-Forwarded-For", "6.6.6.6"]],
                          body='{"a": 1}')
    assert st == 200, body
    res = json.loads(body)
    assert res["status"] == 200 and res["timeMs"] > 0
    echoed = json.loads(res["body"])
    assert echoed["method"] == "POST"
    q = backend.last()
    assert q.method == "POST" and q.target == "/items?x=1" and q.body == b'{"a": 1}'
    assert q.header("X-Custom") == "yes"
    # the relay's key, never the caller's; the developer's address, not a forged one
    assert q.header("Ocp-Apim-Subscription-Key") in (None, keys["secondaryKey"])
    assert "forged" not in json.dumps(q.headers) and "6.6.6.6" not in json.dumps(q.headers)
    assert "evil.example" not in json.dumps(q.headers)
    assert any(n.lower() == "content-type" and "json" in v for n, v in res["headers"])
    # the operation page's form names the API: its path is after the API's URL suffix
    st, _, body = console(dev, subscription=sid, key="primary", method="GET", path="/items/7?y=2", api="echo")
    assert st == 200 and json.loads(body)["status"] == 200 and backend.last().target == "/items/7?y=2"
    st, _, body = console(dev, subscription=sid, key="primary", method="GET", path="/x", api="limited")
    assert st == 400  # an API the subscription does not open
    # the form's subscription select: the user's subscriptions that open the API
    st, _, body = dev.get("/api/subscriptions?api=echo")
    assert st == 200 and [x["id"] for x in json.loads(body)["value"]] == [sid]
    assert json.loads(dev.get("/api/subscriptions?api=limited")[2])["value"] == []
    assert Browser(p.portal_url).get("/api/subscriptions?api=echo")[0] == 401
    # the operation page carries the form and the script that drives it
    st, _, page = dev.get("/apis/echo/operations/anything")
    assert st == 200 and 'id="console"' in page and re.search(r'<script src="/assets/console\.[0-9a-f]+\.js"', page)
    # a backend's error status comes back as it is
    st, _, body = console(dev, subscription=sid, key="primary", method="GET", path="/echo/status/503")
    assert st == 200 and json.loads(body)["status"] == 503


def test_console_bounds(site, backend):
    """A response over 1 MiB is a clear 502, not a truncated answer; at most
    4 calls of one developer are in flight at once; the portal keeps serving
    while calls wait on a slow backend (the relay does not block)."""
    p, m = site
    dev = signup(p, "dev@example.com")
    subscribe(dev, "starter", "Bounds")
    sid = subs_of(m, user_id(m, "dev@example.com"))[0]["id"]
    st, _, body = console(dev, subscription=sid, key="primary", method="GET", path="/echo/big?bytes=1000000")
    assert st == 200 and len(json.loads(body)["body"]) == 1000000
    st, _, body = console(dev, subscription=sid, key="primary", method="GET", path="/echo/big?bytes=1100000")
    assert st == 502 and "1 MiB" in json.loads(body)["error"]["message"]
    tok = dev.token()
    results = []

    def slow():
        results.append(dev.request("POST", "/api/console", headers={"X-CSRF-Token": tok},
                                   body={"subscription": sid, "method": "GET", "path": "/echo/sleep/1500"})[0])
    threads = [threading.Thread(target=slow) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    t0 = time.time()
    st, _, _ = dev.get("/subscriptions")  # served at once while four calls wait
    assert st == 200 and time.time() - t0 < 1.0
    st, _, body = dev.request("POST", "/api/console", headers={"X-CSRF-Token": tok},
                              body={"subscription": sid, "method": "GET", "path": "/echo/x"})
    assert st == 429 and json.loads(body)["error"]["code"] == "TooManyCalls"
    for t in threads:
        t.join()
    assert results == [200] * 4
    st, _, body = console(dev, subscription=sid, key="primary", method="GET", path="/echo/x")
    assert st == 200
    # a browser that leaves while its call waits: the answer has nowhere to go, and nothing breaks
    body = json.dumps({"subscription": sid, "method": "GET", "path": "/echo/sleep/800"}).encode()
    for _ in range(3):
        c = socket.create_connection(("127.0.0.1", int(p.config["portal"]["listen"].rsplit(":", 1)[1])))
        c.sendall(b"POST /api/console HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"X-CSRF-Token: " + tok.encode() + b"\r\nCookie: " +
                  "; ".join("%s=%s" % kv for kv in dev.cookies.items()).encode() +
                  b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        time.sleep(0.05)
        c.close()
    time.sleep(1.2)  # their answers arrive for closed connections
    with backend.lock:
        assert len([q for q in backend.requests if q.target == "/sleep/800"]) == 3  # the calls were made
    st, _, body = console(dev, subscription=sid, key="primary", method="GET", path="/echo/after")
    assert st == 200 and json.loads(body)["status"] == 200
    assert p.proc.poll() is None
    # stopping while a call waits: the call is dropped, the process ends cleanly
    ended = []

    def dropped():
        try:
            slow()
        except (http.client.HTTPException, OSError):
            ended.append("closed")
    waiting = threading.Thread(target=dropped)
    waiting.start()
    wait_for(lambda: any(q.target == "/sleep/1500" for q in list(backend.requests)[-2:]), timeout=3,
             what="the waiting call to reach the backend")
    assert p.stop() == 0
    waiting.join()
    assert ended == ["closed"]  # the browser's connection ends with the process, unanswered


def test_console_gateway_policies_stay_in_force(site, backend):
    p, m = site
    dev = signup(p, "dev@example.com")
    uid = user_id(m, "dev@example.com")
    subscribe(dev, "limited", "Limited")
    sid = subs_of(m, uid)[0]["id"]
    # the API's own key header name is filled in
    backend.clear()
    st, _, body = console(dev, subscription=sid, key="primary", method="GET", path="/limited/a")
    assert st == 200 and json.loads(body)["status"] == 200
    assert backend.last().header("X-Api-Key") in (None, m.keys(sid)["primaryKey"])
    # the product's rate limit (2 calls) applies to relayed calls
    st, _, body = console(dev, subscription=sid, key="primary", method="GET", path="/limited/b")
    assert json.loads(body)["status"] == 200
    st, _, body = console(dev, subscription=sid, key="primary", method="GET", path="/limited/c")
    assert json.loads(body)["status"] == 429
    # a path under an API the subscription does not open
    st, _, body = console(dev, subscription=sid, key="primary", method="GET", path="/echo/x")
    assert st == 400 and json.loads(body)["error"]["code"] == "PathNotInSubscription"
    # a cancelled subscription's key: the gateway itself says 401
    subscribe(dev, "starter", "Soon cancelled")
    sid2 = [s for s in subs_of(m, uid) if s["displayName"] == "Soon cancelled"][0]["id"]
    dev.post("/subscriptions/%s/cancel" % sid2)
    backend.clear()
    st, _, body = console(dev, subscription=sid2, key="primary", method="GET", path="/echo/x")
    assert st == 200 and json.loads(body)["status"] == 401 and not backend.requests


def test_console_cannot_leave_the_gateway(site, backend):
    p, m = site
    evil = EchoBackend()
    try:
        dev = signup(p, "dev@example.com")
        subscribe(dev, "starter", "SSRF")
        sid = subs_of(m, user_id(m, "dev@example.com"))[0]["id"]
        bad_paths = ["//127.0.0.1:%d/x" % evil.port, "http://127.0.0.1:%d/x" % evil.port,
                     "@127.0.0.1:%d/x" % evil.port, "127.0.0.1:%d/x" % evil.port, "", "echo/x",
                     "/echo/x y", "/echo/x\r\nHost: 127.0.0.1:%d" % evil.port, "/\\127.0.0.1/x",
                     "/echo/x#frag", "/echo/\x00", "/" + "a" * 9000]
        for path in bad_paths:
            st, _, body = console(dev, subscription=sid, key="primary", method="GET", path=path)
            assert st == 400, (path, st, body)
        # paths that look like hosts stay paths on the gateway (404 there: no such API)
        for path in ("/@127.0.0.1:%d/x" % evil.port, "/127.0.0.1:%d/x" % evil.port,
                     "/echo/../../x", "/echo/%2F%2F127.0.0.1/x"):
            st, _, body = console(dev, subscription=sid, key="primary", method="GET", path=path)
            assert st in (200, 400), (path, st, body)
        for method in ("CONNECT", "TRACE", "GET /x HTTP/1.1", "", "get\r\n"):
            st, _, body = console(dev, subscription=sid, key="primary", method=method, path="/echo/x")
            assert st == 400, method
        for hdr in ([["Bad Name", "v"]], [["X-Ok", "a\r\nInjected: 1"]], [["X-Ok"]], [["", "v"]],
                    [["X-Many", "v"]] * 51, "X-Not-A-List: 1"):
            st, _, body = console(dev, subscription=sid, key="primary", method="GET", path="/echo/x", headers=hdr)
            assert st == 400, hdr
        st, _, body = console(dev, subscription=sid, key="primary", method="POST", path="/echo/x",
                              body="x" * (256 * 1024 + 1))
        assert st == 413
        st, _, body = console(dev, subscription=sid, key="tertiary", method="GET", path="/echo/x")
        assert st == 400
        assert not evil.requests and evil.connections == 0
    finally:
        evil.close()


def test_console_gateway_down_is_a_clear_error(backend, portico, workdir):
    dead = free_port()
    p = portico(config(backend, workdir, gatewayUrl="http://127.0.0.1:%d" % dead), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    dev = signup(p, "dev@example.com")
    subscribe(dev, "starter", "x")
    sid = subs_of(m, user_id(m, "dev@example.com"))[0]["id"]
    st, _, body = console(dev, subscription=sid, key="primary", method="GET", path="/echo/x")
    assert st == 502 and json.loads(body)["error"]["code"] == "GatewayUnavailable"
    # the portal still serves while and after
    assert dev.get("/subscriptions")[0] == 200


def test_console_to_an_https_gateway(backend, portico, workdir):
    """The default gatewayUrl of a TLS gateway is https: the relay trusts the
    gateway's own certificate (a private CA here) and checks its name; a
    server with a certificate nobody trusts gets nothing."""
    os.makedirs(os.path.join(workdir, "pki"))
    pki = Pki(os.path.join(workdir, "pki"))
    cert, key = pki.leaf("gw", "gateway", sans=["IP:127.0.0.1"])
    cfg = config(backend, workdir)
    cfg["listen"] = [{"address": "127.0.0.1:%d" % free_port(), "certificate": cert, "key": key}]
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    dev = signup(p, "dev@example.com")
    subscribe(dev, "starter", "tls")
    sid = subs_of(m, user_id(m, "dev@example.com"))[0]["id"]
    backend.clear()
    st, _, body = console(dev, subscription=sid, key="primary", method="GET", path="/echo/over-tls")
    assert st == 200 and json.loads(body)["status"] == 200, body
    assert backend.last().target == "/over-tls"
    # a gateway URL whose server shows a certificate of a CA nobody trusts
    bad_cert, bad_key = pki.leaf("bad", "bad", sans=["IP:127.0.0.1"], issuer="other")
    impostor = TLSEchoBackend(bad_cert, bad_key)
    try:
        cfg["portal"]["gatewayUrl"] = "https://127.0.0.1:%d" % impostor.port
        p.reload(cfg)
        wait_for(lambda: console(dev, subscription=sid, key="primary", method="GET", path="/echo/x")[0] == 502,
                 timeout=5, what="the relay to refuse the untrusted server")
        assert not impostor.requests
    finally:
        impostor.close()


# -------------------------------------------------------------------- usage

def totals(text):
    return {k: float(v) for k, v in re.findall(r'<dd data-total="(\w+)"[^>]*>([\d.]+)', text)}


def charts(text):
    """Each <figure class="chart">'s SVG, parsed (it must be well-formed XML)."""
    out = []
    for svg in re.findall(r'<figure class="chart">(<svg.*?</svg>)', text, re.S):
        out.append(ET.fromstring(svg))
    return out


def test_usage_shows_the_users_own_calls(site, backend):
    p, m = site
    dev = signup(p, "dev@example.com")
    other = signup(p, "other@example.com")
    subscribe(dev, "starter", "Usage app")
    subscribe(dev, "limited", "Limited app")
    uid = user_id(m, "dev@example.com")
    s1 = [s for s in subs_of(m, uid) if s["displayName"] == "Usage app"][0]["id"]
    s2 = [s for s in subs_of(m, uid) if s["displayName"] == "Limited app"][0]["id"]
    k1, k2 = m.keys(s1)["primaryKey"], m.keys(s2)["primaryKey"]
    for _ in range(3):
        assert gw(p, "/echo/ok", k1)[0] == 200
    assert gw(p, "/echo/status/500", k1)[0] == 500
    assert gw(p, "/echo/status/404", k1)[0] == 404
    for want in (200, 200, 429):
        assert gw(p, "/limited/x", k2, header="X-Api-Key")[0] == want
    subscribe(other, "starter", "Other app")
    ko = m.keys(subs_of(m, user_id(m, "other@example.com"))[0]["id"])["primaryKey"]
    assert gw(p, "/echo/other", ko)[0] == 200

    def page(q=""):
        return dev.get("/usage" + q)[2]
    wait_for(lambda: totals(page()).get("calls") == 8, timeout=6, what="the usage page to count 8 calls")
    text = page()
    t = totals(text)
    assert t == {"calls": 8, "success": 5, "blocked": 1, "failed": 1, "other": 1, "bandwidth": t["bandwidth"]}
    assert t["bandwidth"] > 0
    # the charts: well-formed, labelled, with their data tables
    svgs = charts(text)
    assert len(svgs) == 3
    for svg in svgs:
        assert svg.get("role") == "img" and svg.find(SVG + "title").text and svg.find(SVG + "desc").text
    assert "style=" not in text.split('id="usage-calls"', 1)[1]
    assert text.count('class="chart-data"') >= 3
    # the breakdowns name the user's subscriptions, products and APIs
    by_sub = re.search(r'<table id="usage-by-subscription".*?</table>', text, re.S).group(0)
    assert "Usage app" in by_sub and "Limited app" in by_sub and "Other app" not in by_sub
    assert re.search(r'data-key="%s">.*?<td class="calls">5</td>' % s1, by_sub, re.S)
    by_api = re.search(r'<table id="usage-by-api".*?</table>', text, re.S).group(0)
    assert "Echo API" in by_api and "Limited API" in by_api
    # filters
    assert totals(page("?subscription=" + s2))["calls"] == 3
    assert totals(page("?product=starter&period=7d"))["calls"] == 5
    assert totals(page("?api=limited&period=90d"))["blocked"] == 1
    assert totals(page("?period=30d"))["calls"] == 8
    assert totals(page("?period=bogus&api=%3Cscript%3E"))["calls"] == 8
    # the other user sees only their own call; a filter on someone else's subscription widens nothing
    ot = other.get("/usage")[2]
    assert totals(ot)["calls"] == 1 and "Usage app" not in ot
    assert totals(other.get("/usage?subscription=" + s1)[2])["calls"] == 1


def test_usage_says_when_analytics_is_off(backend, portico, workdir):
    cfg = config(backend, workdir)
    cfg["analytics"] = {"enabled": False}
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    dev = signup(p, "dev@example.com")
    st, _, text = dev.get("/usage")
    assert st == 200 and "analytics is off" in text and totals(text)["calls"] == 0
