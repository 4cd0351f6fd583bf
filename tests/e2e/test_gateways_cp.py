"""Self-hosted gateways, the control plane's side (docs/management-api.md#self-hosted-gateways):
the gateway entities and the built-in `managed`, API assignment, tokens and keys, and the sync
protocol nodes use (configuration long-poll with ETag and gzip, heartbeat, nodes), spoken here
directly with http.client -- no node involved.  Tokens are checked against an HMAC computed here,
not by Portico's own code."""

import base64
import calendar
import gzip
import hashlib
import hmac
import http.client
import json
import socket
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from conftest import wait_for
from mgmt_helpers import TOKEN, Mgmt, mgmt_config


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def in_days(d):
    return iso(datetime.now(timezone.utc) + timedelta(days=d))


def make_token(gid, key, when):
    """A GatewayKey token computed independently: base64(HMAC-SHA512(key, id \\n yyyyMMddHHmm))."""
    stamp = when.strftime("%Y%m%d%H%M")
    sig = base64.b64encode(hmac.new(key.encode(), ("%s\n%s" % (gid, stamp)).encode(), hashlib.sha512).digest())
    return "GatewayKey %s&%s&%s" % (gid, stamp, sig.decode())


class Sync:
    """A node's side of the protocol, by hand."""

    def __init__(self, m, gid, token):
        self.m, self.gid, self.token = m, gid, token

    def call(self, method, what, body=None, headers=None, token=None, timeout=70, gid=None, raw=None):
        c = http.client.HTTPConnection("127.0.0.1", self.m.port, timeout=timeout)
        h = {"Authorization": self.token if token is None else token}
        if token == "":
            del h["Authorization"]
        h.update(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        try:
            c.request(method, "/management/gateways/%s/%s" % (gid or self.gid, what), body=data, headers=h)
            r = c.getresponse()
            out = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, out
        finally:
            c.close()

    def config(self, wait=0, etag=None, headers=None, **kw):
        h = dict(headers or {})
        if etag is not None:
            h["If-None-Match"] = etag
        return self.call("GET", "configuration?wait=%s&node=n1" % wait, headers=h, **kw)

    def doc(self):
        st, hd, out = self.config()
        assert st == 200, (st, out)
        return hd, json.loads(out)


@pytest.fixture
def cp(backend, portico):
    """A control plane with APIs a1 (assigned to g1) and a2 (not), a product holding both,
    subscriptions to each and to the product, a secret named value."""
    cfg = mgmt_config(backend.url, log={"level": "debug"})
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    for a in ("a1", "a2"):
        m.ok("PUT", "apis/" + a, {"path": a, "serviceUrl": backend.url})
        m.ok("PUT", "apis/%s/operations/op" % a, {"method": "GET", "urlTemplate": "/x"})
    m.ok("PUT", "products/p1", {"displayName": "P", "state": "published"})
    m.ok("PUT", "products/p1/apis/a1")
    m.ok("PUT", "products/p1/apis/a2")
    for sid, scope in (("s1", "/apis/a1"), ("s2", "/apis/a2"), ("s3", "/products/p1")):
        m.ok("PUT", "subscriptions/" + sid, {"scope": scope, "state": "active"})
    m.ok("PUT", "namedValues/nv", {"displayName": "nv", "value": "very-secret", "secret": True})
    m.ok("PUT", "gateways/g1", {"description": "edge", "locationData": {"name": "Amsterdam", "city": "AMS"}})
    m.ok("PUT", "gateways/g1/apis/a1")
    tok = m.ok("POST", "gateways/g1/generateToken", {"keyType": "primary", "expiry": in_days(7)})["value"]
    return p, m, Sync(m, "g1", tok)


# ------------------------------------------------------------------ REST: entities


def test_gateway_entities_and_the_managed_one(cp):
    p, m, _ = cp
    lst = m.ok("GET", "gateways")
    assert [g["id"] for g in lst["value"]] == ["managed", "g1"]
    assert lst["value"][0]["builtIn"] is True
    g = m.ok("GET", "gateways/g1")
    assert g["locationData"] == {"name": "Amsterdam", "city": "AMS"} and g["description"] == "edge"
    assert "primaryKey" not in g and "secondaryKey" not in g and "apis" not in g
    # create needs locationData.name (APIM); the id is 1-80 of [A-Za-z0-9._-]
    st, _, out = m.call("PUT", "gateways/g2", {"description": "x"})
    assert st == 400 and "locationData" in json.dumps(out), out
    st, _, out = m.call("PUT", "gateways/g2", {"locationData": {"city": "x"}})
    assert st == 400 and "name" in json.dumps(out), out
    for bad in ("a" * 81, "a~b", "%2E", "%2E%2E", "..."):
        st, _, out = m.call("PUT", "gateways/" + bad, {"locationData": {"name": "x"}})
        assert st == 400 and out["error"]["code"] == "InvalidId", (bad, st, out)
    st, _, _ = m.call("PUT", "gateways/" + "b" * 80, {"locationData": {"name": "x"}})
    assert st == 201
    # keys and APIs are not part of the body
    st, _, out = m.call("PUT", "gateways/g2", {"locationData": {"name": "x"}, "apis": ["a1"]})
    assert st == 400 and "apis" in json.dumps(out)
    st, _, out = m.call("PUT", "gateways/g2", {"locationData": {"name": "x"}, "unknownField": 1})
    assert st == 400
    # PATCH keeps the rest; the keys stay what they were
    keys = m.ok("POST", "gateways/g1/listKeys")
    m.ok("PATCH", "gateways/g1", {"description": "edge 2"})
    g = m.ok("GET", "gateways/g1")
    assert g["description"] == "edge 2" and g["locationData"]["name"] == "Amsterdam"
    st, _, out = m.call("PATCH", "gateways/g1", {"locationData": {"name": None}})  # name stays required
    assert st == 400 and "name" in json.dumps(out), (st, out)
    assert m.ok("GET", "gateways/g1")["locationData"]["name"] == "Amsterdam"
    m.ok("PUT", "gateways/g1", {"locationData": {"name": "Rotterdam"}})
    assert m.ok("POST", "gateways/g1/listKeys") == keys
    assert [a["id"] for a in m.ok("GET", "gateways/g1/apis")["value"]] == ["a1"]  # the PUT kept the APIs
    # the built-in gateway: readable, never writable
    assert m.ok("GET", "gateways/managed")["id"] == "managed"
    for method, path, body in (("PUT", "gateways/managed", {"locationData": {"name": "x"}}),
                               ("PATCH", "gateways/managed", {"description": "x"}),
                               ("DELETE", "gateways/managed", None),
                               ("PUT", "gateways/managed/apis/a1", None),
                               ("DELETE", "gateways/managed/apis/a1", None),
                               ("POST", "gateways/managed/generateToken", {"keyType": "primary", "expiry": in_days(1)}),
                               ("POST", "gateways/managed/listKeys", None),
                               ("POST", "gateways/managed/regenerateKey", {"keyType": "primary"})):
        st, _, out = m.call(method, path, body)
        assert st == 400 and out["error"]["code"] == "BuiltInGateway", (method, path, st, out)
    assert sorted(a["id"] for a in m.ok("GET", "gateways/managed/apis")["value"]) == ["a1", "a2", "echo"]
    # delete
    assert m.call("DELETE", "gateways/" + "b" * 80)[0] == 204
    assert m.call("GET", "gateways/" + "b" * 80)[0] == 404
    assert m.call("GET", "gateways/nope/apis")[0] == 404


def test_api_assignment(cp):
    p, m, s = cp
    st, _, out = m.call("PUT", "gateways/g1/apis/a1")
    assert st == 200 and out["id"] == "a1"  # already there
    st, _, out = m.call("PUT", "gateways/g1/apis/a2")
    assert st == 201 and out["id"] == "a2"
    assert sorted(a["id"] for a in m.ok("GET", "gateways/g1/apis")["value"]) == ["a1", "a2"]
    assert m.call("GET", "gateways/g1/apis/a2")[0] == 200
    assert m.call("PUT", "gateways/g1/apis/nope")[0] == 404
    assert m.call("PUT", "gateways/nope/apis/a1")[0] == 404
    assert m.call("DELETE", "gateways/g1/apis/a2")[0] == 204
    assert m.call("GET", "gateways/g1/apis/a2")[0] == 404
    assert [a["id"] for a in m.ok("GET", "gateways/g1/apis")["value"]] == ["a1"]
    # deleting an API takes its assignments with it
    m.ok("PUT", "gateways/g1/apis/a2")
    m.ok("DELETE", "subscriptions/s2")
    m.ok("DELETE", "products/p1/apis/a2")
    m.ok("DELETE", "apis/a2")
    assert [a["id"] for a in m.ok("GET", "gateways/g1/apis")["value"]] == ["a1"]
    assert [a["id"] for a in json.loads(s.config()[2])["entities"]["apis"]] == ["a1"]
    # deleting a gateway takes its assignments and its keys
    m.ok("DELETE", "gateways/g1")
    m.ok("PUT", "gateways/g1", {"locationData": {"name": "again"}})
    assert m.ok("GET", "gateways/g1/apis")["value"] == []
    assert s.config()[0] == 401  # the old token: new keys


# ------------------------------------------------------------------ tokens and keys


def test_tokens_and_keys(cp):
    p, m, s = cp
    keys = m.ok("POST", "gateways/g1/listKeys")
    assert set(keys) == {"primary", "secondary"} and keys["primary"] != keys["secondary"]
    assert len(keys["primary"]) >= 32
    expiry = datetime.now(timezone.utc).replace(second=0, microsecond=0) + timedelta(days=2)
    tok = m.ok("POST", "gateways/g1/generateToken", {"keyType": "secondary", "expiry": iso(expiry)})["value"]
    assert tok == make_token("g1", keys["secondary"], expiry)  # the exact format, signed as documented
    assert s.config(token=tok)[0] == 200
    # expiry: in the future, at most 30 days ahead, a date-time; keyType: primary | secondary
    for body in ({"keyType": "primary", "expiry": in_days(-1)},
                 {"keyType": "primary", "expiry": in_days(31)},
                 {"keyType": "primary", "expiry": "tomorrow"},
                 {"keyType": "primary"},
                 {"keyType": "tertiary", "expiry": in_days(1)},
                 {"expiry": in_days(1)}):
        st, _, out = m.call("POST", "gateways/g1/generateToken", body)
        assert st == 400, (body, st, out)
    st, _, _ = m.call("POST", "gateways/g1/generateToken", raw=b"{not json", content_type="application/json")
    assert st == 400
    assert m.call("POST", "gateways/g1/generateToken", {"keyType": "primary", "expiry": in_days(29.9)})[0] == 200
    # the token names a minute: an expiry within the current minute (seconds ahead) is refused, never
    # made into a token that is expired already; one in the next minute works until that minute
    now = datetime.now(timezone.utc)
    if now.second >= 50:
        time.sleep(61 - now.second)
        now = datetime.now(timezone.utc)
    this_minute = now.replace(second=0, microsecond=0)
    st, _, out = m.call("POST", "gateways/g1/generateToken",
                        {"keyType": "secondary", "expiry": iso(this_minute + timedelta(seconds=59))})
    assert st == 400 and "minute" in out["error"]["message"], (st, out)
    soon = this_minute + timedelta(minutes=1, seconds=30)
    tok_soon = m.ok("POST", "gateways/g1/generateToken", {"keyType": "secondary", "expiry": iso(soon)})["value"]
    assert tok_soon == make_token("g1", keys["secondary"], soon.replace(second=0))
    assert s.config(token=tok_soon)[0] == 200
    # regenerating the primary key stops tokens made with it at once; the secondary's go on
    st, _, _ = m.call("POST", "gateways/g1/regenerateKey", {"keyType": "primary"})
    assert st == 204
    st, _, out = s.config()
    assert st == 401 and json.loads(out)["error"]["code"] == "Unauthorized"
    assert "signature" in json.loads(out)["error"]["message"]
    assert s.config(token=tok)[0] == 200
    keys2 = m.ok("POST", "gateways/g1/listKeys")
    assert keys2["primary"] != keys["primary"] and keys2["secondary"] == keys["secondary"]
    assert m.call("POST", "gateways/g1/regenerateKey", {"keyType": "both"})[0] == 400
    assert m.call("POST", "gateways/g1/regenerateKey", {})[0] == 400
    # who made tokens, listed and regenerated keys is logged (info), never a key or a token
    ops = m.ok("PUT", "tokens/ops", {"role": "administrator"})["token"]
    assert m.call("POST", "gateways/g1/listKeys", token=ops)[0] == 200
    log = p.log_text()
    assert "gateway 'g1': keys listed by access token 'ops' (administrator)" in log and ops not in log
    assert "gateway 'g1': a secondary-key token expiring %s made by the administrator token" % \
        expiry.strftime("%Y-%m-%dT%H:%MZ") in log, log
    assert "gateway 'g1': keys listed by the administrator token" in log
    assert "gateway 'g1': primary key regenerated by the administrator token" in log
    for secret in (keys["primary"], keys["secondary"], keys2["primary"], tok.split("&")[2], s.token.split("&")[2]):
        assert secret not in log
    # keys never leave through reads or the export
    exported = json.dumps(m.ok("GET", "export"))
    assert keys2["primary"] not in exported and keys2["secondary"] not in exported
    assert '"gateways"' in exported


def test_sync_refuses_what_is_not_its_token(cp):
    p, m, s = cp
    m.ok("PUT", "gateways/g2", {"locationData": {"name": "other"}})
    tok2 = m.ok("POST", "gateways/g2/generateToken", {"keyType": "primary", "expiry": in_days(1)})["value"]
    keys = m.ok("POST", "gateways/g1/listKeys")
    sig = s.token.rsplit("&", 1)[1]
    forged = s.token[:-10] + ("A" if s.token[-10] != "A" else "B") + s.token[-9:]
    past = datetime.now(timezone.utc) - timedelta(minutes=5)
    cases = [
        (tok2, 401, "Unauthorized", "another gateway"),  # gateway g2's token on g1
        (forged, 401, "Unauthorized", "signature"),
        (s.token[:-3], 401, "Unauthorized", "malformed"),  # truncated
        (s.token.replace("==", ""), 401, "Unauthorized", "malformed"),  # padding dropped
        ("GatewayKey g1&209901010000&" + sig, 401, "Unauthorized", "signature"),  # a later expiry, same sig
        (make_token("g1", keys["primary"], past), 401, "TokenExpired", "expired"),
        (make_token("g1", "not-the-key", datetime.now(timezone.utc) + timedelta(days=1)), 401, "Unauthorized", None),
        ("Bearer " + TOKEN, 401, "Unauthorized", "bearer"),  # a user's token: not here
        ("GatewayKey " + "A" * 5000, 401, "Unauthorized", "malformed"),
        ("", 401, "Unauthorized", None),
    ]
    for tok, want, code, words in cases:
        for what, method, body in (("configuration?wait=0", "GET", None),
                                   ("heartbeat", "POST", {"nodeId": "n1"})):
            st, hd, out = s.call(method, what, body=body, token=tok)
            assert st == want, (tok[:60], what, st, out)
            err = json.loads(out)["error"]
            if code:
                assert err["code"] == code, (tok[:60], err)
            if words:
                assert words in err["message"], (tok[:60], err)
            assert keys["primary"] not in err["message"] and "GatewayKey" in hd.get("www-authenticate", "")
    # a token for a gateway that does not exist (signed with anything): 404
    ghost = make_token("ghost", "k", datetime.now(timezone.utc) + timedelta(days=1))
    assert s.call("GET", "configuration", token=ghost, gid="ghost")[0] == 404
    # the path's gateway must be the token's
    assert s.call("GET", "configuration?wait=0", gid="g2")[0] == 401
    # and a GatewayKey token opens nothing else
    for method, path in (("GET", "gateways"), ("GET", "gateways/g1"), ("POST", "gateways/g1/listKeys"),
                         ("GET", "apis")):
        st, _, _ = m.call(method, path, token="", headers={"Authorization": s.token})
        assert st == 401, (method, path, st)
    # refusals are logged once per (peer, gateway, reason) and minute: 22 refusals above, 8 such keys
    # (another gateway, signature, malformed, expired, bearer, no token on g1; unknown on ghost; g2)
    log = p.log_text()
    assert log.count("refused a sync request") == 8, log
    assert "another gateway" in log


def test_refusal_log_cannot_be_flooded(cp):
    p, m, s = cp
    forged = s.token[:-10] + ("A" if s.token[-10] != "A" else "B") + s.token[-9:]
    before = p.log_text().count("refused a sync request")
    # the same bad token from the same peer, whatever node it says it is: one line
    for i in range(50):
        st, _, _ = s.call("GET", "configuration?wait=0&node=n%d%%0Aforged" % i, token=forged)
        assert st == 401
    log = p.log_text()
    assert log.count("refused a sync request") - before == 1, log
    # gateways of the client's choosing (unknown ones, and ids that are not ids): 20 lines a minute at most
    for i in range(60):
        ghost = make_token("ghost%d" % i, "k", datetime.now(timezone.utc) + timedelta(days=1))
        assert s.call("GET", "configuration?wait=0", token=ghost, gid="ghost%d" % i)[0] == 404
    for i in range(10):
        assert s.call("GET", "configuration?wait=0", gid="bad~%d" % i)[0] == 401
    log = p.log_text()
    assert log.count("refused a sync request") - before == 20, log
    assert "bad~" not in log and "(not a gateway id)" not in log  # past the budget: not logged at all


def test_authorization_of_the_rest_routes(cp):
    p, m, s = cp
    m.ok("PUT", "workspaces/wsa", {"displayName": "A"})
    reader = m.ok("PUT", "tokens/t-r", {"role": "reader"})["token"]
    wsc = m.ok("PUT", "tokens/t-w", {"role": "workspaceContributor", "workspace": "wsa"})["token"]
    assert m.call("GET", "gateways", token=reader)[0] == 200
    assert m.call("GET", "gateways/g1/nodes", token=reader)[0] == 200
    for method, path, body in (("PUT", "gateways/g9", {"locationData": {"name": "x"}}),
                               ("DELETE", "gateways/g1", None),
                               ("PUT", "gateways/g1/apis/a2", None),
                               ("POST", "gateways/g1/listKeys", None),
                               ("POST", "gateways/g1/generateToken", {"keyType": "primary", "expiry": in_days(1)}),
                               ("POST", "gateways/g1/regenerateKey", {"keyType": "primary"})):
        for tok in (reader, wsc):
            st, _, out = m.call(method, path, body, token=tok)
            assert st == 403, (method, path, st, out)
    assert m.call("GET", "gateways", token=wsc)[0] == 403
    for path in ("gateways/g1", "gateways/g1/nodes", "gateways/g1/apis", "gateways/g1/apis/a1", "gateways/managed"):
        st, _, out = m.call("GET", path, token=wsc)
        assert st == 403, (path, st, out)
    assert m.call("GET", "workspaces/wsa/gateways", token=wsc)[0] == 404  # no such route
    # nothing changed
    assert m.call("GET", "gateways/g9")[0] == 404
    assert [a["id"] for a in m.ok("GET", "gateways/g1/apis")["value"]] == ["a1"]
    assert s.config()[0] == 200


# ------------------------------------------------------------------ the sync protocol


def test_the_document_is_filtered_for_the_gateway(cp):
    p, m, s = cp
    hd, doc = s.doc()
    assert doc["gateway"] == "g1" and isinstance(doc["generation"], int)
    assert hd["etag"] == '"%d"' % doc["generation"]
    ents = doc["entities"]
    assert [a["id"] for a in ents["apis"]] == ["a1"]
    assert [o["id"] for o in ents["apis"][0]["operations"]] == ["op"]
    assert [pr["apis"] for pr in ents["products"] if pr["id"] == "p1"] == [["a1"]]
    subs = {x["id"]: x for x in ents["subscriptions"]}
    assert sorted(subs) == ["s1", "s3"]  # s2 opens only a2, which g1 does not serve
    real = m.ok("POST", "subscriptions/s1/listSecrets")
    assert subs["s1"]["primaryKey"] == real["primaryKey"] and subs["s1"]["secondaryKey"] == real["secondaryKey"]
    nv = [x for x in ents["namedValues"] if x["id"] == "nv"][0]
    assert nv["value"] == "very-secret" and "sealed" not in nv
    assert "gateways" not in ents and "portal" not in ents
    assert "echo" not in json.dumps(ents["apis"])
    # a gateway with no APIs gets the rest all the same, but not the keys of subscriptions that open
    # nothing there: s3's product has no API on g0 (all-APIs subscriptions go everywhere)
    m.ok("PUT", "subscriptions/s4", {"scope": "/apis", "state": "active"})
    m.ok("PUT", "gateways/g0", {"locationData": {"name": "empty"}})
    t0 = m.ok("POST", "gateways/g0/generateToken", {"keyType": "primary", "expiry": in_days(1)})["value"]
    d0 = json.loads(Sync(m, "g0", t0).config()[2])["entities"]
    assert "apis" not in d0 and [pr["apis"] for pr in d0["products"]] == [[]]
    assert sorted(x["id"] for x in d0["subscriptions"]) == ["s4"]
    s3 = m.ok("POST", "subscriptions/s3/listSecrets")
    assert s3["primaryKey"] not in json.dumps(d0) and s3["secondaryKey"] not in json.dumps(d0)
    # both built from the same read of the store: neither filter touched the other's
    m.ok("PATCH", "apis/a1", {"description": "both"})
    d0 = json.loads(Sync(m, "g0", t0).config()[2])["entities"]
    d1 = s.doc()[1]["entities"]
    assert "apis" not in d0 and [pr["apis"] for pr in d0["products"]] == [[]]
    assert [a["id"] for a in d1["apis"]] == ["a1"] and [pr["apis"] for pr in d1["products"]] == [["a1"]]
    assert sorted(x["id"] for x in d1["subscriptions"]) == ["s1", "s3", "s4"]
    # assigning an API of the product to g0 brings the product's subscriptions in
    m.ok("PUT", "gateways/g0/apis/a2")
    d0 = json.loads(Sync(m, "g0", t0).config()[2])["entities"]
    assert sorted(x["id"] for x in d0["subscriptions"]) == ["s2", "s3", "s4"]
    # the control plane listens on loopback here: no warning about plain HTTP
    assert "plain HTTP" not in p.log_text()


def test_plain_http_off_loopback_is_warned_about(backend, portico):
    cfg = mgmt_config(backend.url)
    cfg["management"]["listen"] = cfg["management"]["listen"].replace("127.0.0.1", "0.0.0.0")
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    m.ok("PUT", "gateways/g1", {"locationData": {"name": "x"}})
    tok = m.ok("POST", "gateways/g1/generateToken", {"keyType": "primary", "expiry": in_days(1)})["value"]
    s = Sync(m, "g1", tok)
    assert s.call("GET", "configuration?wait=0", token="GatewayKey junk")[0] == 401
    assert "plain HTTP" not in p.log_text()  # told when a node really syncs
    for _ in range(3):
        assert s.config()[0] == 200
    wait_for(lambda: "plain HTTP" in p.log_text(), timeout=5, what="the warning")
    log = p.log_text()
    assert log.count("plain HTTP") == 1 and "0.0.0.0" in log.split("plain HTTP")[1].splitlines()[0], log


def test_etag_304_and_gzip(cp):
    p, m, s = cp
    hd, doc = s.doc()
    etag = hd["etag"]
    t0 = time.time()
    st, hd2, out = s.config(wait=1, etag=etag)
    assert st == 304 and out == b"" and hd2["etag"] == etag and 0.9 <= time.time() - t0 < 3
    st, _, out = s.config(wait=0, etag=etag)
    assert st == 304
    st, _, out = s.config(wait=0, etag='W/' + etag)
    assert st == 304
    st, _, out = s.config(wait=0, etag='"0"')  # another generation: at once
    assert st == 200 and json.loads(out) == doc
    st, hz, out = s.config(headers={"Accept-Encoding": "gzip, deflate"})
    assert st == 200 and hz["content-encoding"] == "gzip" and hz["etag"] == etag
    assert json.loads(gzip.decompress(out)) == doc
    assert len(out) < len(json.dumps(doc))
    st, hz, out = s.config(headers={"Accept-Encoding": "gzip;q=0"})
    assert st == 200 and "content-encoding" not in hz
    for bad in ("61", "-1", "abc", ""):
        st, _, _ = s.call("GET", "configuration?wait=" + bad)
        assert st == 400, bad
    # the same generation is the same document, built once: unchanged across calls
    assert s.doc()[1] == doc


def poll_in_thread(s, etag, wait, **kw):
    res = {}

    def run():
        res["t0"] = time.time()
        res["answer"] = s.config(wait=wait, etag=etag, **kw)
        res["t1"] = time.time()
    th = threading.Thread(target=run)
    th.start()
    return th, res


def test_long_poll_is_woken_by_a_change(cp):
    p, m, s = cp
    hd, doc = s.doc()
    etag = hd["etag"]
    # a change to an API g1 does not serve leaves its nodes alone
    th, res = poll_in_thread(s, etag, 2)
    time.sleep(0.3)
    m.ok("PATCH", "apis/a2", {"description": "not g1's"})
    th.join(10)
    assert res["answer"][0] == 304
    assert s.doc()[1]["generation"] == doc["generation"]
    # a change to one it serves: answered within a second of the PUT, with the new document
    waiters = [poll_in_thread(s, etag, 30, headers={"Accept-Encoding": "gzip"} if i % 2 else {}) for i in range(3)]
    time.sleep(0.5)
    t_put = time.time()
    m.ok("PATCH", "apis/a1", {"description": "changed"})
    for th, res in waiters:
        th.join(10)
        st, hd2, out = res["answer"]
        assert st == 200, st
        assert res["t1"] - t_put < 1.0, res["t1"] - t_put
        new = json.loads(gzip.decompress(out) if hd2.get("content-encoding") == "gzip" else out)
        assert new["generation"] > doc["generation"] and hd2["etag"] == '"%d"' % new["generation"]
        assert new["entities"]["apis"][0]["description"] == "changed"
    # assignment is a change too
    etag = '"%d"' % new["generation"]
    th, res = poll_in_thread(s, etag, 30)
    time.sleep(0.3)
    m.ok("PUT", "gateways/g1/apis/a2")
    th.join(10)
    assert res["answer"][0] == 200
    assert sorted(a["id"] for a in json.loads(res["answer"][2])["entities"]["apis"]) == ["a1", "a2"]
    # a regenerated key answers the waiting nodes with a 401 now, not at the end of their wait
    etag = res["answer"][1]["etag"]
    th, res = poll_in_thread(s, etag, 30)
    time.sleep(0.3)
    m.ok("POST", "gateways/g1/regenerateKey", {"keyType": "primary"})
    th.join(10)
    assert res["answer"][0] == 401 and res["t1"] - res["t0"] < 5


def test_a_wake_checks_each_waiters_token_and_a_deleted_gateway_answers_404(cp):
    p, m, s = cp
    etag = s.doc()[0]["etag"]
    tok2 = m.ok("POST", "gateways/g1/generateToken", {"keyType": "secondary", "expiry": in_days(1)})["value"]
    # waiters holding tokens of either key: regenerating the primary answers its waiters 401 at once,
    # the secondary's keep waiting (checked against the keys read once for the whole wake)
    prim = [poll_in_thread(s, etag, 30) for _ in range(3)]
    sec = [poll_in_thread(s, etag, 30, token=tok2) for _ in range(3)]
    time.sleep(0.5)
    m.ok("POST", "gateways/g1/regenerateKey", {"keyType": "primary"})
    for th, res in prim:
        th.join(5)
        assert res["answer"][0] == 401 and b"signature" in res["answer"][2], res["answer"]
    time.sleep(0.3)
    assert all(th.is_alive() for th, _ in sec)
    m.ok("PATCH", "apis/a1", {"description": "seen by the secondary's"})
    for th, res in sec:
        th.join(5)
        assert res["answer"][0] == 200, res["answer"]
    # waiters of a gateway that is deleted: 404 at once
    etag = sec[0][1]["answer"][1]["etag"]
    waiting = [poll_in_thread(s, etag, 30, token=tok2) for _ in range(4)]
    time.sleep(0.5)
    t_del = time.time()
    m.ok("DELETE", "gateways/g1")
    for th, res in waiting:
        th.join(5)
        st, _, out = res["answer"]
        assert st == 404 and json.loads(out)["error"]["code"] == "ResourceNotFound", res["answer"]
        assert res["t1"] - t_del < 2


def test_a_node_leaving_mid_wait_and_waits_longer_than_the_idle_timeout(cp):
    p, m, s = cp
    etag = s.doc()[0]["etag"]
    req = ("GET /management/gateways/g1/configuration?wait=60&node=n1 HTTP/1.1\r\nHost: x\r\n"
           "Authorization: %s\r\nIf-None-Match: %s\r\n\r\n" % (s.token, etag)).encode()
    for _ in range(30):  # nodes that go away mid-wait: their waiters and requests go with them
        with socket.create_connection(("127.0.0.1", m.port)) as c:
            c.sendall(req)
            time.sleep(0.01)
    wait_for(lambda: p.log_text().count("a node left during its long-poll") == 30, timeout=5,
             what="every waiter of a node that left dropped")
    # one that sends bytes mid-wait (pipelining) is left alone until its answer
    c = socket.create_connection(("127.0.0.1", m.port))
    c.sendall(req)
    time.sleep(0.1)
    c.sendall(b"GET /management/gateways HTTP/1.1\r\n")
    st, _, _ = s.config(wait=0, etag=etag)
    assert st == 304
    # a 35 s wait outlives the listener's 30 s idle timeout, and is then answered 304
    th, res = poll_in_thread(s, etag, 35)
    th.join(50)
    assert res["answer"][0] == 304 and res["t1"] - res["t0"] >= 34.5
    # and a change after all that still wakes a waiter
    th, res = poll_in_thread(s, etag, 30)
    time.sleep(0.3)
    m.ok("PATCH", "apis/a1", {"description": "again"})
    th.join(10)
    assert res["answer"][0] == 200
    c.settimeout(5)
    assert c.recv(100).startswith(b"HTTP/1.1 200")
    c.close()


def test_heartbeats_and_nodes(cp):
    p, m, s = cp
    gen = s.doc()[1]["generation"]
    hb = {"nodeId": "host-a:8080", "version": "1.2.3", "generation": gen, "hostname": "host-a",
          "listen": ["0.0.0.0:8080"], "configError": None, "heartbeat": 1}
    st, _, out = s.call("POST", "heartbeat", hb)
    assert st == 200 and json.loads(out) == {"generation": gen}
    st, _, out = s.call("POST", "heartbeat", dict(hb, nodeId="host-b:8080", generation=0,
                                                  configError="apis[0]: bad", heartbeat=5))
    assert st == 200
    nodes = {n["id"]: n for n in m.ok("GET", "gateways/g1/nodes")["value"]}
    assert sorted(nodes) == ["host-a:8080", "host-b:8080"]
    a = nodes["host-a:8080"]
    assert a["address"] == "127.0.0.1" and a["version"] == "1.2.3" and a["generation"] == gen
    assert a["status"] == "connected" and a["configError"] is None
    assert a["lastHeartbeat"].endswith("Z") and a["lastHeartbeat"][:4].isdigit()
    assert nodes["host-b:8080"]["configError"] == "apis[0]: bad"
    assert m.ok("GET", "gateways/g1/nodes")["count"] == 2
    # three intervals without a heartbeat: disconnected
    wait_for(lambda: {n["id"]: n["status"] for n in m.ok("GET", "gateways/g1/nodes")["value"]}["host-a:8080"]
             == "disconnected", timeout=6, what="host-a disconnected")
    assert {n["id"]: n["status"] for n in m.ok("GET", "gateways/g1/nodes")["value"]}["host-b:8080"] == "connected"
    # malformed and oversized bodies
    for body in (b"not json", b"[]", b'{"version": "1"}', b'{"nodeId": ""}', b'{"nodeId": 5}',
                 json.dumps({"nodeId": "x" * 257}).encode(), json.dumps({"nodeId": "n", "generation": -1}).encode(),
                 json.dumps({"nodeId": "n", "generation": "1"}).encode(),
                 json.dumps({"nodeId": "n", "listen": "0.0.0.0:1"}).encode(),
                 json.dumps({"nodeId": "n", "configError": "e" * 5000}).encode()):
        st, _, out = s.call("POST", "heartbeat", raw=body, headers={"Content-Type": "application/json"})
        assert st == 400, (body[:40], st, out)
    st, _, _ = s.call("POST", "heartbeat", raw=b"{" + b" " * (11 << 20) + b"}",
                      headers={"Content-Type": "application/json"})
    assert st == 413
    assert sorted(n["id"] for n in m.ok("GET", "gateways/g1/nodes")["value"]) == ["host-a:8080", "host-b:8080"]
    # an analytics batch goes to pt_analytics_shipment_ingest, which checks it whole: this one (no
    # "version") is refused 400 InvalidAnalytics naming the reason, and the heartbeat is still counted
    before = {n["id"]: n["lastHeartbeat"] for n in m.ok("GET", "gateways/g1/nodes")["value"]}["host-a:8080"]
    time.sleep(1.1)
    st, _, out = s.call("POST", "heartbeat", dict(hb, analytics={"buckets": []}))
    assert st == 400 and json.loads(out)["error"]["code"] == "InvalidAnalytics", (st, out)
    assert "version" in json.loads(out)["error"]["message"], out
    after = {n["id"]: n["lastHeartbeat"] for n in m.ok("GET", "gateways/g1/nodes")["value"]}["host-a:8080"]
    assert after != before
    # at most 1,000 nodes per gateway are remembered
    c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=10)
    for i in range(1010):
        c.request("POST", "/management/gateways/g1/heartbeat", body=json.dumps({"nodeId": "bulk-%d" % i}),
                  headers={"Authorization": s.token, "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        assert r.status == 200
    c.close()
    page = m.ok("GET", "gateways/g1/nodes?$top=5&$skip=990")
    assert page["count"] == 1000 and len(page["value"]) == 5 and page["nextLink"], page
    assert len(m.ok("GET", "gateways/g1/nodes")["value"]) == 100  # pages like the other lists
    last = m.ok("GET", "gateways/g1/nodes?$skip=995")
    assert len(last["value"]) == 5 and last["nextLink"] is None
    assert m.ok("GET", "gateways/g1/nodes?$filter=id%20eq%20'bulk-700'")["count"] == 1
    assert m.call("GET", "gateways/g1/nodes?$top=0")[0] == 400


def test_the_node_cap_drops_the_oldest_disconnected_node_first(cp):
    p, m, s = cp

    def beat(c, body):
        c.request("POST", "/management/gateways/g1/heartbeat", body=json.dumps(body),
                  headers={"Authorization": s.token, "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        assert r.status == 200

    c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=10)
    beat(c, {"nodeId": "keep", "heartbeat": 3600})  # the longest silent, but connected (a long interval)
    beat(c, {"nodeId": "dead", "heartbeat": 1})
    wait_for(lambda: {n["id"]: n["status"] for n in m.ok("GET", "gateways/g1/nodes")["value"]}["dead"]
             == "disconnected", timeout=6, what="dead disconnected")
    for i in range(998):
        beat(c, {"nodeId": "bulk-%d" % i})
    ids = lambda: {n["id"] for n in m.ok("GET", "gateways/g1/nodes?$top=1000")["value"]}
    assert len(ids()) == 1000
    beat(c, {"nodeId": "late-1"})  # full: the disconnected one goes, not the longest silent
    now = ids()
    assert len(now) == 1000 and "late-1" in now and "dead" not in now and "keep" in now
    beat(c, {"nodeId": "late-2"})  # none disconnected: the longest silent goes
    now = ids()
    assert len(now) == 1000 and "late-2" in now and "keep" not in now and "bulk-0" in now
    c.close()


def test_what_is_bounded_by_the_minute(cp):
    """Slow (about 95 s): the refusal summary line at the minute's end, the idle timeout of a connection
    after its long-poll, and a node that measured one long gap shows disconnected within 60 s."""
    p, m, s = cp
    t0 = time.time()
    assert s.call("POST", "heartbeat", {"nodeId": "slow"})[0] == 200  # declares no interval
    for i in range(25):  # 20 lines, then 5 not logged: told at the minute's end
        ghost = make_token("ghost%d" % i, "k", datetime.now(timezone.utc) + timedelta(days=1))
        assert s.call("GET", "configuration?wait=0", token=ghost, gid="ghost%d" % i)[0] == 404
    assert p.log_text().count("refused a sync request") == 20
    # a long-poll raises its connection's timeout for the wait; answered, the connection is back to 30 s
    etag = s.doc()[0]["etag"]
    c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=70)
    th = threading.Timer(0.5, lambda: m.ok("PATCH", "apis/a1", {"description": "wake"}))
    th.start()
    c.request("GET", "/management/gateways/g1/configuration?wait=60&node=n1",
              headers={"Authorization": s.token, "If-None-Match": etag})
    r = c.getresponse()
    r.read()
    assert r.status == 200
    t_ans = time.time()
    c.sock.settimeout(45)
    assert c.sock.recv(1) == b""  # closed by the control plane, idle
    assert time.time() - t_ans < 34, time.time() - t_ans
    c.close()
    # the node's second heartbeat after a gap of 30 s and more: counted as 20 s at most
    assert time.time() - t0 > 30
    assert s.call("POST", "heartbeat", {"nodeId": "slow"})[0] == 200
    t2 = time.time()
    status = lambda: {n["id"]: n["status"] for n in m.ok("GET", "gateways/g1/nodes")["value"]}["slow"]
    assert status() == "connected"
    wait_for(lambda: "5 refused sync requests not logged in the last minute" in p.log_text(),
             timeout=max(1, 70 - (time.time() - t0)), what="the summary of refusals not logged")
    wait_for(lambda: status() == "disconnected", timeout=max(1, t2 + 65 - time.time()), what="slow disconnected")
    assert time.time() - t2 > 59


def test_generation_only_grows_across_restarts(cp):
    p, m, s = cp
    g1 = s.doc()[1]["generation"]
    m.ok("PATCH", "apis/a1", {"description": "x"})
    g2 = s.doc()[1]["generation"]
    assert g2 > g1
    p.stop()
    p.start()
    m2 = Mgmt(p)
    s2 = Sync(m2, "g1", s.token)  # the token survives: the keys are kept in the store
    hd, doc = s2.doc()
    assert doc["generation"] > g2
    assert doc["entities"]["apis"][0]["description"] == "x"
    assert s2.config(etag='"%d"' % g2)[0] == 200  # a node holding the old one fetches once


def test_gateways_in_the_configuration_file(backend, portico):
    cfg = mgmt_config(backend.url)
    cfg["gateways"] = [{"id": "gf", "description": "from the file", "locationData": {"name": "DC1"},
                        "apis": ["echo"]}]
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    assert [a["id"] for a in m.ok("GET", "gateways/gf/apis")["value"]] == ["echo"]
    keys = m.ok("POST", "gateways/gf/listKeys")
    st, _, out = m.call("PATCH", "gateways/gf", {"description": "x"})
    assert st == 409
    assert m.call("DELETE", "gateways/gf")[0] == 409
    assert m.call("PUT", "gateways/gf/apis/echo")[0] == 409
    exported = m.ok("GET", "export")
    assert exported.get("gateways") in (None, [])  # the export leaves out what the file declares
    # keys are made once and kept across reloads
    cfg["gateways"][0]["description"] = "changed"
    assert p.reload(cfg)
    assert m.ok("GET", "gateways/gf")["description"] == "changed"
    assert m.ok("POST", "gateways/gf/listKeys") == keys
    tok = m.ok("POST", "gateways/gf/generateToken", {"keyType": "primary", "expiry": in_days(1)})["value"]
    assert [a["id"] for a in json.loads(Sync(m, "gf", tok).config()[2])["entities"]["apis"]] == ["echo"]
    # the file no longer lists it: gone, with its keys
    del cfg["gateways"]
    assert p.reload(cfg)
    assert m.call("GET", "gateways/gf")[0] == 404


def test_file_errors_name_the_place(backend, portico):
    cfg = mgmt_config(backend.url)
    cfg["gateways"] = [{"id": "gf", "locationData": {"name": "DC1"}, "apis": ["echo", "nope"]}]
    p = portico(cfg, start=False)
    rc, out = p.check()
    assert rc != 0 and "gateway 'gf' lists unknown API 'nope'" in out
    assert "portico.yaml:" in out.split("unknown API 'nope'")[0].splitlines()[-1]
    for gw, words in (({"id": "managed", "locationData": {"name": "x"}}, "built-in"),
                      ({"id": "g", "description": "no location"}, "locationData"),
                      ({"id": "g", "locationData": {"city": "x"}}, "name"),
                      ({"id": "a" * 81, "locationData": {"name": "x"}}, "1 to 80"),
                      ({"id": "..", "locationData": {"name": "x"}}, "not only dots"),
                      ({"id": "g", "locationData": {"name": "x"}, "primaryKey": "k"}, "primaryKey")):
        cfg["gateways"] = [gw]
        p.write_config(cfg)
        rc, out = p.check()
        assert rc != 0 and words in out, (gw, out)


def test_export_and_apply_round_trip(cp):
    p, m, s = cp
    keys = m.ok("POST", "gateways/g1/listKeys")
    doc = m.ok("GET", "export")
    gws = {g["id"]: g for g in doc["gateways"]}
    assert gws["g1"]["apis"] == ["a1"] and gws["g1"]["locationData"]["name"] == "Amsterdam"
    assert "primaryKey" not in json.dumps(doc["gateways"])
    # apply the same document: the gateway and its keys are as they were
    m.ok("POST", "apply", doc)
    assert m.ok("POST", "gateways/g1/listKeys") == keys
    assert s.config()[0] == 200
    # a new gateway through apply: keys made, APIs assigned
    m.ok("POST", "apply", {"gateways": [{"id": "g3", "locationData": {"name": "x"}, "apis": ["a2"]}]})
    assert [a["id"] for a in m.ok("GET", "gateways/g3/apis")["value"]] == ["a2"]
    assert len(m.ok("POST", "gateways/g3/listKeys")["primary"]) >= 32
    st, _, out = m.call("POST", "apply", {"gateways": [{"id": "g4", "locationData": {"name": "x"},
                                                         "apis": ["nope"]}]})
    assert st == 400 and "unknown API 'nope'" in json.dumps(out)
