"""A new store starts like a new APIM instance (`samples`, on by default):
the Starter and Unlimited products, the Echo API on the demo backend and the
administrator's subscriptions -- seeded once, never brought back, left out
with `samples: false`, never added to a store made by an earlier version,
never on a gateway node, and always beaten by what the file declares."""

import os
import socket
import sqlite3
import subprocess

from conftest import BIN, wait_for
from gateway_helpers import gw  # noqa: F401 (fixture)
from mgmt_helpers import TOKEN, Mgmt, gateway_call, mgmt_config

ADMIN = {"id": "admin", "email": "admin@example.com", "firstName": "Ann", "lastName": "Admin",
         "groups": ["administrators"]}


def sample_config(backend, samples=True, users=(ADMIN,), **extra):
    """A gateway with a management API and no entities of its own but the users."""
    cfg = mgmt_config(backend.url, **extra)
    del cfg["apis"]
    cfg["samples"] = samples
    if users:
        cfg["users"] = list(users)
    return cfg


def start(portico, cfg):
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    return p, Mgmt(p)


def ids(m, collection):
    return sorted(e["id"] for e in m.ok("GET", collection)["value"])


def test_a_new_store_gets_apims_samples(portico, backend):
    p, m = start(portico, sample_config(backend))
    assert "store: new, so it starts with the samples" in p.log_text()
    assert ids(m, "products") == ["starter", "unlimited"]
    starter, unlimited = m.ok("GET", "products/starter"), m.ok("GET", "products/unlimited")
    for prod, approval in ((starter, False), (unlimited, True)):
        assert prod["state"] == "published" and prod["subscriptionRequired"] is True, prod
        assert prod["approvalRequired"] is approval and prod["subscriptionsLimit"] == 1, prod
        assert sorted(g["id"] if isinstance(g, dict) else g for g in
                      m.ok("GET", "products/%s/groups" % prod["id"])["value"]) == [
            "administrators", "developers", "guests"]
        assert [a["id"] for a in m.ok("GET", "products/%s/apis" % prod["id"])["value"]] == ["echo-api"]
    # APIM's Starter: 5 calls per 60 s, 100 calls per week
    doc = m.ok("GET", "products/starter/policies/policy")
    text = str(doc)
    assert "rate-limit" in text and "quota" in text and "604800" in text, doc
    # as APIM's: the limits come before base
    assert text.index("rate-limit") < text.index("quota") < text.index("base"), doc
    api = m.ok("GET", "apis/echo-api")
    assert api["path"] == "echo" and api["serviceUrl"] == "http://127.0.0.1:9001", api
    subs = {s["id"]: s for s in m.ok("GET", "subscriptions")["value"]}
    assert sorted(subs) == ["admin-starter", "admin-unlimited"]
    for sid, product in (("admin-starter", "starter"), ("admin-unlimited", "unlimited")):
        assert subs[sid]["scope"].endswith("/products/" + product), subs[sid]
        assert subs[sid]["ownerId"].endswith("/users/admin") and subs[sid]["state"] == "active", subs[sid]
    # the Echo API wants a key
    st, _, body = gateway_call(p, "/echo/resource")
    assert st == 401 and b"subscription key" in body, (st, body)
    assert backend.requests == []


def test_starter_limits_and_unlimited_do_not(portico, backend):
    # the file's own echo-api (to reach the test's backend) wins over the sample one; the sample
    # products hold it
    cfg = sample_config(backend)
    cfg["apis"] = [{"id": "echo-api", "path": "echo", "serviceUrl": backend.url,
                    "operations": [{"id": "anything", "method": "*", "urlTemplate": "/*"}]}]
    p, m = start(portico, cfg)
    assert m.ok("GET", "apis/echo-api")["serviceUrl"] == backend.url
    starter = m.keys("admin-starter")["primaryKey"]
    got = [gateway_call(p, "/echo/items/%d" % i, key=starter)[0] for i in range(6)]
    assert got == [200] * 5 + [429], got
    assert [r.target for r in backend.requests] == ["/items/%d" % i for i in range(5)]
    unlimited = m.keys("admin-unlimited")["primaryKey"]
    got = [gateway_call(p, "/echo/u/%d" % i, key=unlimited)[0] for i in range(8)]
    assert got == [200] * 8, got
    assert len(backend.requests) == 13


def test_seeded_once_deleted_samples_stay_deleted(portico, backend):
    cfg = sample_config(backend)
    p, m = start(portico, cfg)
    m.ok("DELETE", "subscriptions/admin-unlimited")
    m.ok("DELETE", "products/unlimited")
    assert p.reload()
    assert ids(m, "products") == ["starter"]
    p.stop()
    p2, m2 = start(portico, cfg)
    assert ids(m2, "products") == ["starter"] and ids(m2, "subscriptions") == ["admin-starter"]
    assert p2.log_text().count("store: new, so it starts with the samples") == 1


def test_samples_false_and_settled_for_good(portico, backend):
    cfg = sample_config(backend, samples=False)
    p, m = start(portico, cfg)
    assert ids(m, "products") == [] and ids(m, "apis") == [] and ids(m, "subscriptions") == []
    assert gateway_call(p, "/echo/resource")[0] == 404
    p.stop()
    # turning samples on later does not add them: the store was settled at its first start
    p2, m2 = start(portico, dict(cfg, samples=True))
    assert ids(m2, "products") == [] and ids(m2, "apis") == []


def test_a_store_of_an_earlier_version_gets_no_samples(portico, backend, workdir):
    cfg = sample_config(backend, samples=False)
    p, m = start(portico, cfg)
    p.stop()
    # what an earlier version left: entities (the admin user) and no record of samples
    db = sqlite3.connect(os.path.join(workdir, "var", "portico.db"))
    with db:
        assert db.execute("DELETE FROM sync_state WHERE name = 'samples'").rowcount == 1
    db.close()
    p2, m2 = start(portico, dict(cfg, samples=True))
    assert "made by an earlier version, so no samples" in p2.log_text()
    assert ids(m2, "products") == [] and ids(m2, "subscriptions") == []


def test_the_file_wins_over_samples(portico, backend):
    cfg = sample_config(backend)
    cfg["apis"] = [{"id": "mine", "path": "/echo/", "serviceUrl": backend.url, "subscriptionRequired": False,
                    "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]}]
    cfg["products"] = [{"id": "starter", "displayName": "My starter", "subscriptionRequired": False,
                        "apis": ["mine"]}]
    p, m = start(portico, cfg)
    # the file's API has the sample's path: no sample API (and no duplicate-path error)
    assert ids(m, "apis") == ["mine"]
    assert m.ok("GET", "products/starter")["displayName"] == "My starter"
    assert m.ok("GET", "products/unlimited")["displayName"] == "Unlimited"
    assert m.ok("GET", "products/unlimited/apis")["value"] == []
    # the file's Starter is no sample: the administrator gets the Unlimited subscription only
    assert ids(m, "subscriptions") == ["admin-unlimited"]
    st, _, _ = gateway_call(p, "/echo/x")
    assert st == 200 and backend.last().target == "/x"


def test_no_administrator_no_subscriptions(portico, backend):
    p, m = start(portico, sample_config(backend, users=()))
    assert ids(m, "products") == ["starter", "unlimited"] and ids(m, "subscriptions") == []


def test_a_gateway_node_never_seeds(gw):  # noqa: F811
    # the control plane seeds its own store; a node of it serves the sample only once it is assigned
    gw.control_plane(apis=(), extra={"samples": True})
    assert "store: new, so it starts with the samples" in gw.cp.log_text()
    token = gw.gateway("g1")
    node = gw.node(token, extra={"samples": True})
    wait_for(lambda: "generation" in node.log_text(), what="the node's first configuration")
    assert node.status("/echo/resource") == 404
    assert "store: new" not in node.log_text()
    gw.cp.assign("g1", "echo-api")
    wait_for(lambda: node.status("/echo/resource") == 401, what="the node to serve the assigned Echo API")
    assert "store: new" not in node.log_text()


def test_samples_must_be_a_boolean(portico, backend):
    p = portico(sample_config(backend, samples="maybe"), start=False)
    rc, out = p.check()
    with open(p.config_path) as f:
        line = [n for n, text in enumerate(f, 1) if text.startswith("samples:")][0]
    assert rc != 0 and "portico.yaml:%d:" % line in out and "expected true or false, found 'maybe'" in out, out


def start_fails(p):
    """Starts `p`'s configuration and expects it to refuse: its exit code and what it said."""
    r = subprocess.run([BIN, "-c", p.config_path], cwd=p.workdir, env=p.env, capture_output=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def echo_in_file(backend):
    return {"id": "echo-api", "path": "echo", "serviceUrl": backend.url,
            "operations": [{"id": "anything", "method": "*", "urlTemplate": "/*"}]}


def test_the_file_dropping_an_api_the_samples_link_still_starts(portico, backend):
    # the sample products link to the file's echo-api; the file then drops it
    cfg = sample_config(backend)
    cfg["apis"] = [echo_in_file(backend)]
    p, m = start(portico, cfg)
    assert [a["id"] for a in m.ok("GET", "products/starter/apis")["value"]] == ["echo-api"]
    p.stop()
    del cfg["apis"]
    p2, m2 = start(portico, cfg)
    assert "the file no longer declares api 'echo-api': removed with its links" in p2.log_text()
    assert ids(m2, "apis") == []
    for product in ("starter", "unlimited"):
        assert m2.ok("GET", "products/%s/apis" % product)["value"] == []
    key = m2.keys("admin-starter")["primaryKey"]
    assert gateway_call(p2, "/echo/resource", key=key)[0] == 404
    assert backend.requests == []
    # and again: nothing dangles
    p2.stop()
    start(portico, cfg)


def test_an_id_the_file_declares_later_replaces_the_sample_wholly(portico, backend):
    cfg = sample_config(backend)
    p, m = start(portico, cfg)
    assert len(m.ok("GET", "apis/echo-api/operations")["value"]) == 6
    p.stop()
    cfg["apis"] = [{"id": "echo-api", "path": "mine", "serviceUrl": backend.url,
                    "operations": [{"id": "get-one", "method": "GET", "urlTemplate": "/one"}]}]
    cfg["products"] = [{"id": "starter", "displayName": "Mine", "subscriptionRequired": False, "apis": []}]
    p2, m2 = start(portico, cfg)
    log = p2.log_text()
    assert "the file's api 'echo-api' replaces the one made through the management API" in log
    assert "the file's product 'starter' replaces the one made" in log
    # exactly what the file says: its one operation, no sample links, no sample policy
    assert [o["id"] for o in m2.ok("GET", "apis/echo-api/operations")["value"]] == ["get-one"]
    assert m2.ok("GET", "products/starter/apis")["value"] == []
    assert m2.call("GET", "products/starter/policies/policy")[0] == 404
    # the sample Unlimited lost its link to the replaced API as a DELETE would take it
    assert m2.ok("GET", "products/unlimited/apis")["value"] == []
    # the sample's `*` `/*` operation is gone: only the file's operation reaches the backend
    assert gateway_call(p2, "/mine/other")[0] == 404
    assert backend.requests == []
    # a later start replaces nothing more: the entities are the file's now
    p2.stop()
    p3, m3 = start(portico, cfg)
    assert p3.log_text().count("the file's api 'echo-api' replaces") == 1
    assert [o["id"] for o in m3.ok("GET", "apis/echo-api/operations")["value"]] == ["get-one"]


def test_the_administrators_own_subscription_in_the_file_is_kept(portico, backend):
    cfg = sample_config(backend)
    cfg["subscriptions"] = [{"id": "mine", "scope": "/products/starter", "ownerId": "/users/admin",
                             "state": "active"}]
    p, m = start(portico, cfg)
    assert ids(m, "subscriptions") == ["admin-unlimited", "mine"]
    assert "no subscription 'admin-starter': the file already gives user 'admin' one to product 'starter'" \
        in p.log_text()


def test_a_file_api_on_a_sample_path_later_names_the_sample(portico, backend):
    cfg = sample_config(backend)
    p, m = start(portico, cfg)
    p.stop()
    cfg["apis"] = [{"id": "echo", "path": "echo", "serviceUrl": backend.url}]
    p.write_config(cfg)
    with open(p.config_path) as f:
        lines = f.read().split("\n")
    line = [n for n, text in enumerate(lines, 1) if text.strip() == 'path: "echo"'][0]
    rc, out = start_fails(p)
    assert rc != 0, out
    assert "portico.yaml:%d:" % line in out, out
    assert "path 'echo' is already used by API 'echo-api', which was made through the management API or " \
           "came with the samples; remove it (portico api delete echo-api)" in out, out
    assert "apis[1]" not in out, out
    # nothing was written: the store still has the sample alone
    p2, m2 = start(portico, sample_config(backend))
    assert ids(m2, "apis") == ["echo-api"]


def test_checking_the_file_alone_counts_the_samples_a_new_store_has(portico, backend):
    cfg = sample_config(backend, users=(ADMIN, dict(ADMIN, id="dev", email="dev@example.com", groups=[])))
    cfg["subscriptions"] = [{"id": "dev-starter", "scope": "/products/starter", "ownerId": "/users/dev"},
                            {"id": "dev-echo", "scope": "/apis/echo-api", "ownerId": "/users/dev"}]
    cfg["products"] = [{"id": "partners", "apis": ["echo-api"]}]
    p = portico(cfg, start=False, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    rc, out = p.check()
    assert rc == 0, out
    # the server agrees on a new store
    p.start()
    m = Mgmt(p)
    assert ids(m, "subscriptions") == ["admin-starter", "admin-unlimited", "dev-echo", "dev-starter"]
    assert [a["id"] for a in m.ok("GET", "products/partners/apis")["value"]] == ["echo-api"]
    # without samples neither has them
    p2 = portico(dict(cfg, samples=False), start=False)
    rc, out = p2.check()
    assert rc != 0 and "scope '/products/starter': there is no product 'starter'" in out, out
    assert "product 'partners' lists unknown API 'echo-api'" in out, out
    # nor when the file has its own API at the sample's path (the sample Echo API is left out)
    cfg["apis"] = [{"id": "mine", "path": "echo", "serviceUrl": backend.url}]
    p3 = portico(cfg, start=False)
    rc, out = p3.check()
    assert rc != 0 and "there is no API 'echo-api'" in out, out


def test_a_failed_first_start_seeds_nothing_and_the_next_start_does(portico, backend, workdir):
    cfg = sample_config(backend)
    p = portico(cfg, start=False, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    with socket.socket() as taken:  # the gateway's port is in use: the start fails after seeding
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", p.port))
        taken.listen(1)
        rc, out = start_fails(p)
    assert rc != 0, out
    db_path = os.path.join(workdir, "var", "portico.db")
    if os.path.exists(db_path):
        db = sqlite3.connect(db_path)
        try:
            assert db.execute("SELECT count(*) FROM sync_state WHERE name = 'samples'").fetchone() == (0,)
            assert db.execute("SELECT count(*) FROM entities WHERE kind IN ('api', 'product', "
                              "'subscription')").fetchone() == (0,)
        finally:
            db.close()
    p.start()
    m = Mgmt(p)
    assert ids(m, "products") == ["starter", "unlimited"]
    assert ids(m, "subscriptions") == ["admin-starter", "admin-unlimited"]


def test_a_reload_of_a_store_settled_without_samples_adds_none(portico, backend):
    cfg = sample_config(backend, samples=False)
    p, m = start(portico, cfg)
    assert p.reload(dict(cfg, samples=True))
    assert ids(m, "products") == [] and ids(m, "apis") == [] and ids(m, "subscriptions") == []
    assert "store: new" not in p.log_text()


def test_an_administrator_who_is_not_active_gets_no_sample_subscription(portico, backend):
    blocked = dict(ADMIN, state="blocked")
    later = dict(ADMIN, id="zed", email="zed@example.com")
    p, m = start(portico, sample_config(backend, users=(blocked, later)))
    subs = m.ok("GET", "subscriptions")["value"]
    assert sorted(s["id"] for s in subs) == ["admin-starter", "admin-unlimited"]
    assert all(s["ownerId"].endswith("/users/zed") for s in subs), subs


def test_the_sample_echo_api_routes_with_a_key(portico, backend):
    # the sample itself (not a file API of the same id), pointed at the test's backend
    p, m = start(portico, sample_config(backend))
    m.ok("PATCH", "apis/echo-api", {"serviceUrl": backend.url + "/base"})
    starter = m.keys("admin-starter")["primaryKey"]
    calls = [("GET", "/echo/resource"), ("POST", "/echo/resource"), ("HEAD", "/echo/resource"),
             ("DELETE", "/echo/a/b?x=1"), ("PATCH", "/echo/other")]
    got = [gateway_call(p, path, key=starter, method=method)[0] for method, path in calls]
    assert got == [200] * 5, got
    assert [(r.method, r.target) for r in backend.requests] == [
        ("GET", "/base/resource"), ("POST", "/base/resource"), ("HEAD", "/base/resource"),
        ("DELETE", "/base/a/b?x=1"), ("PATCH", "/base/other")]
    # Starter's sixth call within the minute: 429, and it never reaches the backend
    assert gateway_call(p, "/echo/resource", key=starter)[0] == 429
    assert len(backend.requests) == 5
    unlimited = m.keys("admin-unlimited")["primaryKey"]
    assert [gateway_call(p, "/echo/resource", key=unlimited)[0] for _ in range(7)] == [200] * 7
    assert len(backend.requests) == 12
