"""Products, subscriptions and users declared in the configuration file, and
the gateway's access decision (APIM's rules), row by row.

Every test starts the real binary with a generated file; the store (SQLite)
lives in the test's own data folder.
"""

import json

import pytest

from conftest import basic_config

NOT_FOUND_MSG = ("Access denied due to missing subscription key. Make sure to include subscription key when "
                 "making requests to an API.")
INVALID_MSG = ("Access denied due to invalid subscription key. Make sure to provide a valid key for an active "
               "subscription.")

def hexkey(name, second=False):
    """A 32-character key made of hex digits, distinct per name."""
    h = "".join("%02x" % ord(c) for c in name)[:28]
    return (h + ("b" if second else "a") * 32)[:32]


def world(backend, **extra):
    """Two protected APIs, one open API in an open product, and every kind of subscription."""
    cfg = basic_config(backend.url)
    echo = cfg["apis"][0]
    echo["subscriptionRequired"] = True
    echo["policies"] = {"inbound": ["base", {"set-header": {"name": "X-Api", "value": "echo"}}]}
    cfg["apis"].append({
        "id": "other", "path": "other", "serviceUrl": backend.url, "subscriptionRequired": True,
        "subscriptionKeyParameterNames": {"header": "X-Key", "query": "key"},
        "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}],
    })
    cfg["apis"].append({
        "id": "free", "path": "free", "serviceUrl": backend.url, "subscriptionRequired": False,
        "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}],
    })
    cfg["products"] = [
        {"id": "starter", "displayName": "Starter", "state": "published", "subscriptionRequired": True,
         "apis": ["echo"],
         "policies": {"inbound": ["base", {"set-header": {"name": "X-Product", "value": "@(context.product.id)"}}]}},
        {"id": "open", "displayName": "Open", "state": "published", "subscriptionRequired": False,
         "apis": ["free"],
         "policies": {"inbound": ["base", {"set-header": {"name": "X-Product", "value": "@(context.product.id)"}}]}},
    ]
    cfg["users"] = [
        {"id": "u1", "email": "u1@example.com", "firstName": "U", "lastName": "One"},
        {"id": "bad", "email": "bad@example.com", "firstName": "B", "lastName": "Ad", "state": "blocked"},
    ]

    def sub(sid, scope, state="active", owner="/users/u1"):
        s = {"id": sid, "displayName": sid, "scope": scope, "state": state,
             "primaryKey": hexkey(sid), "secondaryKey": hexkey(sid, True)}
        if owner:
            s["ownerId"] = owner
        return s
    cfg["subscriptions"] = [
        sub("starter", "/products/starter"),
        sub("apiscoped", "/apis/echo"),
        sub("otherapi", "/apis/other", owner=None),
        sub("allapis", "/apis"),
        sub("suspended", "/products/starter", state="suspended"),
        sub("cancelled", "/products/starter", state="cancelled"),
        sub("submitted", "/products/starter", state="submitted"),
        sub("blocked", "/products/starter", owner="/users/bad"),
    ]
    cfg["apis"][0]["operations"].append({
        "id": "whoami", "method": "GET", "urlTemplate": "/whoami",
        "policies": {"inbound": ["base", {"return-response": {
            "set-status": {"code": 200},
            "set-body": "@(json.encode({sub = context.subscription and context.subscription.id or '', "
                        "user = context.user and context.user.email or '', "
                        "product = context.product and context.product.id or ''}))"}}]},
    })
    cfg.update(extra)
    return cfg


def error_of(data):
    return json.loads(data)


def call(p, path, key=None, header="Ocp-Apim-Subscription-Key", headers=None):
    h = dict(headers or {})
    if key is not None:
        h[header] = key
    return p.request("GET", path, headers=h)


@pytest.fixture
def gw(backend, portico):
    return portico(world(backend))


def test_missing_key_on_protected_api_is_401_subscription_key_not_found(gw, backend):
    status, _, data = call(gw, "/echo/items/1")
    assert status == 401
    assert error_of(data) == {"statusCode": 401, "message": NOT_FOUND_MSG}
    assert backend.last() is None
    e = gw.access_entries(wait_for=1)[-1]
    assert e["status"] == 401 and e["reason"] == "SubscriptionKeyNotFound"


@pytest.mark.parametrize("which", [False, True], ids=["primary", "secondary"])
def test_product_subscription_key_reaches_backend_in_product_context(gw, backend, which):
    key = hexkey("starter", which)
    status, _, data = call(gw, "/echo/items/1", key)
    assert status == 200, data
    r = backend.last()
    assert r.header("X-Product") == "starter"  # the product's policy ran
    assert r.header("X-Api") == "echo"
    assert r.header("Ocp-Apim-Subscription-Key") == key  # forwarded as APIM does
    e = gw.access_entries(wait_for=1)[-1]
    assert (e["product"], e["subscription"], e["user"]) == ("starter", "starter", "u1")


def test_context_of_the_call(gw):
    status, _, data = call(gw, "/echo/whoami", hexkey("starter"))
    assert status == 200
    assert json.loads(data) == {"sub": "starter", "user": "u1@example.com", "product": "starter"}
    status, _, data = call(gw, "/echo/whoami", hexkey("allapis"))
    assert json.loads(data) == {"sub": "allapis", "user": "u1@example.com", "product": ""}


def test_query_parameter_key(gw, backend):
    status, _, _ = call(gw, "/echo/items/1?subscription-key=" + hexkey("starter"))
    assert status == 200
    assert backend.last().target.endswith("subscription-key=" + hexkey("starter"))


def test_header_wins_over_query(gw):
    status, _, data = call(gw, "/echo/items/1?subscription-key=" + hexkey("starter"), "0" * 32)
    assert status == 401 and error_of(data)["message"] == INVALID_MSG
    status, _, _ = call(gw, "/echo/items/1?subscription-key=" + "0" * 32, hexkey("starter"))
    assert status == 200


def test_api_scoped_subscription_skips_product_policies(gw, backend):
    status, _, _ = call(gw, "/echo/items/1", hexkey("apiscoped"))
    assert status == 200
    r = backend.last()
    assert r.header("X-Api") == "echo" and r.header("X-Product") is None


def test_all_apis_subscription_opens_every_api(gw, backend):
    assert call(gw, "/echo/items/1", hexkey("allapis"))[0] == 200
    assert backend.last().header("X-Product") is None
    assert call(gw, "/other/x", hexkey("allapis"), header="X-Key")[0] == 200


def test_out_of_scope_keys_are_invalid(gw, backend):
    # an API-scoped key for another API, and a product key for an API outside the product
    status, _, data = call(gw, "/echo/items/1", hexkey("otherapi"))
    assert status == 401 and error_of(data) == {"statusCode": 401, "message": INVALID_MSG}
    assert call(gw, "/other/x", hexkey("starter"), header="X-Key")[0] == 401
    assert backend.last() is None
    e = gw.access_entries(wait_for=2)
    assert len(e) == 2 and all(x["reason"] == "SubscriptionKeyInvalid" for x in e), e


@pytest.mark.parametrize("sid", ["suspended", "cancelled", "submitted", "blocked"])
def test_inactive_subscriptions_and_blocked_owners_are_refused(gw, backend, sid):
    for second in (False, True):
        status, _, data = call(gw, "/echo/items/1", hexkey(sid, second))
        assert status == 401 and error_of(data)["message"] == INVALID_MSG
    assert backend.last() is None


def test_unknown_key_is_invalid(gw):
    for k in ("0" * 32, "x", hexkey("starter")[:-1], hexkey("starter") + "0"):
        status, _, data = call(gw, "/echo/items/1", k)
        assert status == 401 and error_of(data)["message"] == INVALID_MSG, k


def test_custom_key_names(gw, backend):
    key = hexkey("otherapi")
    # the default names mean nothing to this API
    status, _, data = call(gw, "/other/x", key)
    assert status == 401 and error_of(data)["message"] == NOT_FOUND_MSG
    assert call(gw, "/other/x", key, header="X-Key")[0] == 200
    assert call(gw, "/other/x?key=" + key)[0] == 200
    assert call(gw, "/other/x?subscription-key=" + key)[0] == 401


def test_open_product_keyless_call_runs_in_product_context(gw, backend):
    status, _, _ = call(gw, "/free/thing")
    assert status == 200
    assert backend.last().header("X-Product") == "open"
    e = gw.access_entries(wait_for=1)[-1]
    assert e["product"] == "open" and "subscription" not in e


def test_a_valid_key_on_an_open_api_is_used(gw, backend):
    status, _, _ = call(gw, "/free/thing", hexkey("allapis"))
    assert status == 200
    e = gw.access_entries(wait_for=1)[-1]
    assert e["subscription"] == "allapis"


def test_generated_keys_survive_restart_and_stay_out_of_the_file(backend, portico, workdir):
    cfg = world(backend)
    cfg["subscriptions"].append({"id": "gen", "scope": "/products/starter", "ownerId": "/users/u1",
                                 "state": "active"})
    cfg["apis"][0]["operations"][-1]["policies"] = {"inbound": ["base", {"return-response": {
        "set-status": {"code": 200},
        "set-body": "@(context.subscription and context.subscription.primaryKey or '')"}}]}
    from mgmt_helpers import TOKEN, Mgmt
    from conftest import free_port
    cfg["management"] = {"listen": "127.0.0.1:%d" % free_port()}
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    # the generated key is only visible to a caller who has it: an administrator's listSecrets
    keys = Mgmt(p).ok("POST", "subscriptions/gen/listSecrets")
    key = keys["primaryKey"]
    assert len(key) == 32 and all(c in "0123456789abcdef" for c in key)
    assert call(p, "/echo/whoami", key)[2] == key.encode()
    # in the store it is sealed
    import sqlite3
    import os
    db = sqlite3.connect(os.path.join(workdir, "var", "portico.db"))
    body = json.loads(db.execute("select body from entities where kind='subscription' and id='gen'").fetchone()[0])
    db.close()
    assert body["primaryKey"].startswith("v1:") and key not in json.dumps(body)
    p.stop()
    p2 = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    assert call(p2, "/echo/whoami", key)[0] == 200
    assert call(p2, "/echo/whoami", keys["secondaryKey"])[0] == 200


def test_removed_from_the_file_means_removed_at_reload(backend, portico):
    cfg = world(backend)
    p = portico(cfg)
    assert call(p, "/echo/items/1", hexkey("starter"))[0] == 200
    cfg["subscriptions"] = [s for s in cfg["subscriptions"] if s["id"] != "starter"]
    p.write_config(cfg)
    assert p.reload()
    assert call(p, "/echo/items/1", hexkey("starter"))[0] == 401
    assert call(p, "/echo/items/1", hexkey("allapis"))[0] == 200


@pytest.mark.parametrize("bad, message", [
    ({"scope": "/products/nope"}, "product 'nope'"),
    ({"scope": "/elsewhere"}, "scope"),
    ({"state": "sleeping"}, "sleeping"),
    ({"ownerId": "/users/ghost"}, "ghost"),
    ({"primaryKey": hexkey("allapis")}, "already"),
    ({"workspace": "nowhere"}, "unknown workspace 'nowhere'"),
])
def test_bad_subscriptions_are_refused_with_positions(backend, portico, bad, message):
    cfg = world(backend)
    cfg["subscriptions"][0].update(bad)
    p = portico(cfg, start=False)
    code, out = p.check()
    assert code != 0
    assert message in out, out
    assert ":" in out.split("\n")[0] and "portico.yaml:" in out, out


@pytest.mark.parametrize("entity", ["products", "backends"])
def test_entities_in_unknown_workspaces_are_refused(backend, portico, entity):
    cfg = world(backend)
    cfg.setdefault("backends", [{"id": "b1", "url": backend.url}])
    cfg[entity][0]["workspace"] = "nowhere"
    p = portico(cfg, start=False)
    code, out = p.check()
    assert code != 0 and "unknown workspace 'nowhere'" in out and "portico.yaml:" in out, out


def test_subscriptions_limit_per_user(backend, portico):
    cfg = world(backend)
    cfg["products"][0]["subscriptionsLimit"] = 1
    p = portico(cfg, start=False)
    code, out = p.check()
    # u1 owns starter, suspended and submitted (cancelled ones do not count): three live subscriptions
    assert code != 0 and "user 'u1' would have 3 subscriptions to product 'starter'" in out, out
    cfg["products"][0]["subscriptionsLimit"] = 3
    p = portico(cfg, start=False)
    assert p.check()[0] == 0
