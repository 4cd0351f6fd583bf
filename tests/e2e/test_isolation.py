"""Workspace isolation, written as the attacks: a principal scoped to a
workspace can read and change only its workspace's entities, and nothing it
writes may change who is let in, which API or backend serves, or what code
runs for a request to an API outside its workspace.

The service has an API `echo` (path echo), a product `gold` holding it and
a subscription `allapis` (scope /apis); workspace `wsb` has an API `bapi`;
the attacker holds tokens of workspace `wsa`."""

import json
import os
import sqlite3
import stat

import pytest

from backends import EchoBackend
from mgmt_helpers import TOKEN, Mgmt, gateway_call, mgmt_config

ROLES = ["workspaceContributor", "apiDeveloper", "apiProductManager"]
VICTIM_KEY = "victim-primary-key-0001"


@pytest.fixture
def attacker_backend():
    b = EchoBackend()
    yield b
    b.close()


@pytest.fixture
def svc(backend, portico):
    cfg = mgmt_config(backend.url)
    cfg["apis"] = []
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    for w in ("wsa", "wsb"):
        m.ok("PUT", "workspaces/" + w, {"displayName": w.upper()})
    m.ok("PUT", "apis/echo", {"path": "echo", "serviceUrl": backend.url, "subscriptionRequired": True})
    m.ok("PUT", "apis/echo/operations/all", {"method": "*", "urlTemplate": "/*"})
    m.ok("PUT", "products/gold", {"displayName": "Gold", "state": "published"})
    m.ok("PUT", "products/gold/apis/echo")
    m.ok("PUT", "products/p2", {"displayName": "P2", "state": "published"})
    m.ok("PUT", "subscriptions/allapis", {"scope": "/apis", "state": "active", "primaryKey": VICTIM_KEY,
                                          "secondaryKey": "victim-secondary-key-0001"})
    m.ok("PUT", "workspaces/wsb/apis/bapi", {"path": "bapi", "serviceUrl": backend.url})
    m.ok("PUT", "workspaces/wsa/apis/aapi", {"path": "aapi", "serviceUrl": backend.url})
    m.ok("PUT", "workspaces/wsa/products/ap", {"displayName": "AP", "state": "published"})
    tokens = {}
    for r in ROLES:
        out = m.ok("PUT", "tokens/a-" + r, {"role": r, "workspace": "wsa"})
        tokens[r] = out["token"]
    out = m.ok("PUT", "tokens/b-contrib", {"role": "workspaceContributor", "workspace": "wsb"})
    tokens["wsb"] = out["token"]
    return p, m, tokens


# ------------------------------------------------------------ 1. id reuse

@pytest.mark.parametrize("kind, wid, body", [
    ("apis", "bapi", {"path": "stolen", "serviceUrl": "http://127.0.0.1:1"}),            # another workspace's
    ("apis", "echo", {"path": "stolen", "serviceUrl": "http://127.0.0.1:1"}),            # the service's
    ("subscriptions", "allapis", {"scope": "/apis/aapi", "state": "active"}),
    ("products", "gold", {"displayName": "Mine", "state": "published"}),
])
def test_a_workspace_cannot_take_over_an_id(svc, backend, kind, wid, body):
    p, m, tokens = svc
    before = m.ok("GET", "%s/%s" % (kind, wid)) if kind != "apis" or wid == "echo" else \
        m.ok("GET", "workspaces/wsb/apis/bapi")
    st, _, err = m.call("PUT", "workspaces/wsa/%s/%s" % (kind, wid), body, token=tokens["workspaceContributor"])
    assert st == 409 and err["error"]["code"] == "IdInUse", (st, err)
    # nothing moved: the owner still has it, unchanged, and wsa cannot see it
    after = m.ok("GET", "%s/%s" % (kind, wid)) if kind != "apis" or wid == "echo" else \
        m.ok("GET", "workspaces/wsb/apis/bapi", token=tokens["wsb"])
    assert after == before
    assert m.call("GET", "workspaces/wsa/%s/%s" % (kind, wid), token=tokens["workspaceContributor"])[0] == 404
    if kind == "subscriptions":
        st, _, _ = m.call("POST", "workspaces/wsa/subscriptions/allapis/listSecrets",
                          token=tokens["workspaceContributor"])
        assert st == 404
    # the service's traffic is as before
    assert gateway_call(p, "/echo/x", VICTIM_KEY)[0] == 200


def test_the_service_level_does_not_move_entities_between_scopes(svc):
    p, m, tokens = svc
    # a PUT without a workspace keeps the entity where it is
    m.ok("PUT", "apis/bapi", {"path": "bapi", "serviceUrl": "http://127.0.0.1:9", "displayName": "B"})
    assert m.ok("GET", "workspaces/wsb/apis/bapi", token=tokens["wsb"])["displayName"] == "B"
    # naming another workspace is refused
    st, _, err = m.call("PUT", "apis/bapi", {"path": "bapi", "serviceUrl": "http://127.0.0.1:9", "workspace": "wsa"})
    assert st == 409 and err["error"]["code"] == "WorkspaceChange"
    st, _, _ = m.call("PATCH", "apis/bapi", {"workspace": None})
    assert st == 409
    assert m.ok("GET", "workspaces/wsb/apis/bapi", token=tokens["wsb"])["workspace"] == "wsb"


# ------------------------------------------------ 2. subscriptions that open everything

@pytest.mark.parametrize("role, scope", [
    ("workspaceContributor", "/apis"),
    ("apiProductManager", "/apis"),
    ("apiProductManager", "/products/p2"),    # a service product
    ("workspaceContributor", "/apis/echo"),   # a service API
    ("workspaceContributor", "/apis/bapi"),   # another workspace's API
])
def test_a_workspace_subscription_stays_in_its_workspace(svc, role, scope):
    p, m, tokens = svc
    m.ok("PUT", "products/p2/apis/echo")
    key = "attacker-chosen-key-1234"
    st, _, err = m.call("PUT", "workspaces/wsa/subscriptions/evil",
                        {"scope": scope, "state": "active", "primaryKey": key}, token=tokens[role])
    assert st == 400, (st, err)
    assert "outside the workspace" in str(err) or "service-level subscriptions" in str(err), err
    assert m.call("GET", "subscriptions/evil")[0] == 404
    assert gateway_call(p, "/echo/x", key)[0] == 401


def test_a_workspace_subscription_inside_works(svc):
    p, m, tokens = svc
    key = "workspace-own-key-5678"
    m.ok("PUT", "workspaces/wsa/subscriptions/mine", {"scope": "/apis/aapi", "state": "active", "primaryKey": key},
         token=tokens["workspaceContributor"])
    m.ok("PUT", "workspaces/wsa/apis/aapi/operations/all", {"method": "*", "urlTemplate": "/*"},
         token=tokens["apiDeveloper"])
    assert gateway_call(p, "/aapi/x", key)[0] == 200
    assert gateway_call(p, "/echo/x", key)[0] == 401


def test_a_workspace_product_holds_only_its_apis(svc):
    p, m, tokens = svc
    # the link to a service API is not visible from the workspace
    st, _, _ = m.call("PUT", "workspaces/wsa/products/ap/apis/echo", token=tokens["apiProductManager"])
    assert st == 404
    # and the service level cannot make it either
    st, _, err = m.call("PUT", "products/ap/apis/echo")
    assert st == 400 and "a workspace's products hold its own APIs" in str(err), err


# ------------------------------------------------------------ 3. path shadowing

@pytest.mark.parametrize("body", [
    {"path": "echo", "host": "127.0.0.1"},  # host-bound beats host-less on the same path
    {"path": "echo/items"},                 # a longer path under the service API's
    {"path": "echo/items", "host": "127.0.0.1"},
])
def test_a_workspace_api_cannot_shadow_another_scopes_path(svc, backend, attacker_backend, body):
    p, m, tokens = svc
    b = dict(body, serviceUrl=attacker_backend.url, subscriptionRequired=False)
    st, _, err = m.call("PUT", "workspaces/wsa/apis/shadow", b, token=tokens["apiDeveloper"])
    assert st == 409 and err["error"]["code"] == "Conflict", (st, err)
    assert "claims requests of API 'echo'" in str(err)
    # the victim's key still reaches the real backend, and the attacker saw nothing
    st, _, _ = gateway_call(p, "/echo/items/1", VICTIM_KEY)
    assert st == 200
    assert backend.last().header("Ocp-Apim-Subscription-Key") in (None, VICTIM_KEY)
    assert attacker_backend.last() is None


def test_workspace_paths_that_do_not_overlap_are_fine(svc):
    p, m, tokens = svc
    m.ok("PUT", "workspaces/wsa/apis/other", {"path": "echoes", "serviceUrl": "http://127.0.0.1:1"},
         token=tokens["apiDeveloper"])
    m.ok("PUT", "workspaces/wsa/apis/under", {"path": "aapi/v2", "serviceUrl": "http://127.0.0.1:1"},
         token=tokens["apiDeveloper"])  # under its own workspace's API


# ------------------------------------------------------------ 7. expired subscriptions

@pytest.mark.parametrize("field", ["expirationDate", "endDate"])
def test_expired_subscriptions_are_refused(svc, field):
    p, m, _ = svc
    m.ok("PUT", "subscriptions/old", {"scope": "/apis", "state": "active", "primaryKey": "old-key-000001",
                                      field: "2020-01-01T00:00:00Z"})
    st, _, body = gateway_call(p, "/echo/x", "old-key-000001")
    assert st == 401
    assert m.ok("GET", "subscriptions/old")["state"] == "expired"
    m.ok("PUT", "subscriptions/later", {"scope": "/apis", "state": "active", "primaryKey": "later-key-00001",
                                        field: "2999-01-01"})
    assert gateway_call(p, "/echo/x", "later-key-00001")[0] == 200
    st, _, err = m.call("PUT", "subscriptions/bad", {"scope": "/apis", "state": "active", field: "next tuesday"})
    assert st == 400 and "ISO 8601" in str(err)


# ------------------------------------------------------------ 10. smaller holes

def test_ids_and_paging_bounds(svc):
    p, m, tokens = svc
    before = m.ok("GET", "groups")["count"]
    for bad in ("..", "."):
        st, _, err = m.call("PUT", "workspaces/wsa/groups/" + bad, {"displayName": "X"},
                            token=tokens["workspaceContributor"])
        assert st in (400, 404), (bad, st, err)
        st, _, err = m.call("PUT", "groups/" + bad, {"displayName": "X"})
        assert st in (400, 404), (bad, st, err)
    assert m.ok("GET", "groups")["count"] == before
    st, _, err = m.call("GET", "apis?$skip=9223372036854775807")
    assert st == 400 and err["error"]["code"] == "InvalidParameter"
    st, _, out = m.call("GET", "apis?$skip=1000000000&$top=1000")
    assert st == 200 and out["value"] == [] and out["nextLink"] is None


def test_named_value_secrets_follow_the_roles(svc):
    p, m, tokens = svc
    m.ok("PUT", "workspaces/wsa/namedValues/s1", {"displayName": "s1", "value": "hush", "secret": True},
         token=tokens["apiDeveloper"])
    assert m.call("POST", "workspaces/wsa/namedValues/s1/listValue", token=tokens["apiDeveloper"])[0] == 200
    assert m.call("POST", "workspaces/wsa/namedValues/s1/listValue", token=tokens["apiProductManager"])[0] == 403
    assert m.call("POST", "workspaces/wsa/namedValues/s1/listValue", token=tokens["workspaceContributor"])[0] == 200


# ------------------------------------------- 4. named values and fragments by scope

def test_workspace_policies_see_only_their_workspace_named_values(svc, backend):
    p, m, tokens = svc
    dev = tokens["apiDeveloper"]
    m.ok("PUT", "namedValues/filesecret", {"displayName": "filesecret", "value": "service-secret-value",
                                          "secret": True})
    m.ok("PUT", "workspaces/wsa/apis/aapi/operations/all", {"method": "*", "urlTemplate": "/*"}, token=dev)
    m.ok("PUT", "workspaces/wsa/apis/aapi", {"path": "aapi", "serviceUrl": backend.url,
                                             "subscriptionRequired": False}, token=dev)
    # the attack: a workspace policy that reads the service's secret
    pol = {"inbound": ["base", {"set-header": {"name": "X-Exfil", "value": "{{filesecret}}"}}]}
    st, _, err = m.call("PUT", "workspaces/wsa/apis/aapi/policies/policy", pol, token=dev)
    assert st == 400 and "unknown named value 'filesecret'" in str(err), (st, err)
    assert "no named values are defined in this workspace" in str(err), err  # the service's are not listed
    backend.clear()
    assert p.request("GET", "/aapi/x")[0] == 200
    assert backend.last().header("X-Exfil") is None
    # the workspace's own named value works, under /workspaces/{ws}/namedValues
    m.ok("PUT", "workspaces/wsa/namedValues/wsval", {"displayName": "wsval", "value": "ours"}, token=dev)
    pol = {"inbound": ["base", {"set-header": {"name": "X-Val", "value": "{{wsval}}"}}]}
    m.ok("PUT", "workspaces/wsa/apis/aapi/policies/policy", pol, token=dev)
    assert p.request("GET", "/aapi/x")[0] == 200
    assert backend.last().header("X-Val") == "ours"
    assert [v["id"] for v in m.ok("GET", "workspaces/wsa/namedValues", token=dev)["value"]] == ["wsval"]
    # a misspelt name lists the workspace's own named values, never the service's
    pol = {"inbound": ["base", {"set-header": {"name": "X-Val", "value": "{{filesecrt}}"}}]}
    st, _, err = m.call("PUT", "workspaces/wsa/apis/aapi/policies/policy", pol, token=dev)
    assert st == 400 and "(named values: 'wsval')" in str(err) and "'filesecret'" not in str(err), err
    # and another workspace cannot use it
    pol = {"inbound": ["base", {"set-header": {"name": "X-Val", "value": "{{wsval}}"}}]}
    st, _, err = m.call("PUT", "workspaces/wsb/apis/bapi/policies/policy", pol, token=tokens["wsb"])
    assert st == 400 and "unknown named value 'wsval'" in str(err)


def test_workspace_policies_include_only_their_workspace_fragments(svc, backend):
    p, m, tokens = svc
    dev = tokens["apiDeveloper"]
    m.ok("PUT", "policyFragments/svcfrag", {"value": [{"set-header": {"name": "X-F", "value": "svc"}}]})
    pol = {"inbound": ["base", {"include-fragment": {"fragment-id": "svcfrag"}}]}
    st, _, err = m.call("PUT", "workspaces/wsa/apis/aapi/policies/policy", pol, token=dev)
    assert st == 400 and "unknown policy fragment 'svcfrag'" in str(err), (st, err)
    m.ok("PUT", "workspaces/wsa/policyFragments/wsfrag", {"value": [{"set-header": {"name": "X-F", "value": "ws"}}]},
         token=dev)
    m.ok("PUT", "workspaces/wsa/apis/aapi/policies/policy",
         {"inbound": ["base", {"include-fragment": {"fragment-id": "wsfrag"}}]}, token=dev)


# ------------------------------------------------------------ 8. keys at rest and in logs

def store_bytes(workdir):
    out = b""
    for name in ("portico.db", "portico.db-wal"):
        path = os.path.join(workdir, "var", name)
        if os.path.exists(path):
            out += open(path, "rb").read()
    return out


def test_subscription_keys_are_sealed_at_rest_and_the_store_is_private(svc, workdir):
    p, m, _ = svc
    m.ok("PUT", "subscriptions/s8", {"scope": "/apis", "state": "active", "primaryKey": "sealed-primary-0008",
                                     "secondaryKey": "sealed-secondary-0008"})
    assert gateway_call(p, "/echo/x", "sealed-primary-0008")[0] == 200
    assert m.ok("POST", "subscriptions/s8/listSecrets")["primaryKey"] == "sealed-primary-0008"
    raw = store_bytes(workdir)
    assert b"sealed-primary-0008" not in raw and b"sealed-secondary-0008" not in raw
    assert VICTIM_KEY.encode() not in raw
    # a regenerated key is sealed too
    m.ok("POST", "subscriptions/s8/regeneratePrimaryKey")
    new = m.ok("POST", "subscriptions/s8/listSecrets")["primaryKey"]
    assert new.encode() not in store_bytes(workdir)
    assert gateway_call(p, "/echo/x", new)[0] == 200
    for name in ("portico.db", "portico.db-wal", "portico.db-shm"):
        path = os.path.join(workdir, "var", name)
        if os.path.exists(path):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, (name, oct(os.stat(path).st_mode))


def test_plain_keys_of_an_older_store_are_sealed_at_start(svc, workdir):
    p, m, _ = svc
    p.stop()
    db = sqlite3.connect(os.path.join(workdir, "var", "portico.db"))
    body = json.dumps({"scope": "/apis", "state": "active", "primaryKey": "plain-old-key-0001",
                       "secondaryKey": "plain-old-key-0002"})
    db.execute("UPDATE entities SET body = ? WHERE kind = 'subscription' AND id = 'allapis'", (body,))
    db.commit()
    db.close()
    os.chmod(os.path.join(workdir, "var", "portico.db"), 0o644)
    p.start()
    assert "sealed the keys of 1 subscription" in p.log_text()
    assert b"plain-old-key-0001" not in store_bytes(workdir)
    assert gateway_call(p, "/echo/x", "plain-old-key-0001")[0] == 200
    assert stat.S_IMODE(os.stat(os.path.join(workdir, "var", "portico.db")).st_mode) == 0o600


def test_the_access_log_never_holds_a_key(svc):
    p, m, _ = svc
    assert p.request("GET", "/echo/x?a=1&subscription-key=%s&b=2" % VICTIM_KEY)[0] == 200
    assert p.request("GET", "/nowhere?subscription-key=%s" % VICTIM_KEY)[0] == 404
    entries = p.access_entries(wait_for=2)
    text = json.dumps(entries)
    assert VICTIM_KEY not in text
    assert any(e.get("query") == "a=1&subscription-key=REDACTED&b=2" for e in entries), entries
    # and the parameters an API names as secret
    m.ok("PATCH", "apis/echo", {"secretQueryParameters": ["code", "token"]})
    assert p.request("GET", "/echo/x?code=abc123secret&x=1&subscription-key=%s" % VICTIM_KEY)[0] == 200
    entries = p.access_entries(wait_for=3)
    assert "abc123secret" not in json.dumps(entries)
    assert entries[-1]["query"] == "code=REDACTED&x=1&subscription-key=REDACTED", entries[-1]


# ------------------------------------------------------------ 9. host files

def test_policies_through_the_api_cannot_name_host_files(svc, workdir):
    p, m, tokens = svc
    outside = os.path.join(os.path.dirname(workdir), "portico-e2e-outside.pem")
    inside = os.path.join(workdir, "client.pem")
    for path in (outside, inside):
        with open(path, "w") as f:
            f.write("not really a certificate\n")
    try:
        pol = {"inbound": ["base", {"authentication-certificate": {"certificate": "/etc/ssl/private/x.pem",
                                                                    "key": "/etc/ssl/private/x.key"}}]}
        # a workspace role: no file at all
        st, _, err = m.call("PUT", "workspaces/wsa/apis/aapi/policies/policy", pol, token=tokens["apiDeveloper"])
        assert st == 403 and "only an administrator" in str(err), (st, err)
        frag = {"value": [{"authentication-certificate": {"certificate": inside, "key": inside}}]}
        st, _, err = m.call("PUT", "workspaces/wsa/policyFragments/f9", frag, token=tokens["apiDeveloper"])
        assert st == 403
        # an administrator: only under the configuration's folder
        for path in (outside, "../" + os.path.basename(outside), "/etc/passwd"):
            pol = {"inbound": ["base", {"authentication-certificate": {"certificate": path, "key": path}}]}
            st, _, err = m.call("PUT", "apis/echo/policies/policy", pol)
            assert st == 400 and "under the configuration's folder" in str(err), (path, st, err)
        # inside it, the usual validation takes over (this file is no certificate)
        pol = {"inbound": ["base", {"authentication-certificate": {"certificate": "client.pem", "key": "client.pem"}}]}
        st, _, err = m.call("PUT", "apis/echo/policies/policy", pol)
        assert st == 400 and "under the configuration's folder" not in str(err), (st, err)
    finally:
        os.unlink(outside)
