"""The management plane in operation: roles and workspaces, durability
across kill -9, apply -> export -> apply round trips through the CLI, and
changes under gateway load."""

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import http.client

import pytest

from conftest import BIN, free_port
from mgmt_helpers import TOKEN, Mgmt, gateway_call, mgmt_config


@pytest.fixture
def env(backend, portico):
    p = portico(mgmt_config(backend.url), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    return p, Mgmt(p)


def cli(m, *args, token=TOKEN, url=None, stdin=None):
    e = dict(os.environ)
    e["PORTICO_URL"] = url or m.url
    if token is None:
        e.pop("PORTICO_ADMIN_TOKEN", None)
    else:
        e["PORTICO_ADMIN_TOKEN"] = token
    r = subprocess.run([BIN] + list(args), capture_output=True, timeout=60, env=e, input=stdin)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


# ------------------------------------------------------------ role matrix

ROLES = ["administrator", "reader", "workspaceContributor", "workspaceReader", "apiDeveloper", "apiProductManager"]

# (what, method, path, body, roles allowed)
MATRIX = [
    ("service read", "GET", "apis", None, {"administrator", "reader"}),
    ("service write", "PUT", "apis/svc", {"path": "svc", "serviceUrl": "http://127.0.0.1:1"}, {"administrator"}),
    ("service users", "PUT", "users/someone", {"email": "s@example.com", "firstName": "S", "lastName": "O"},
     {"administrator"}),
    ("workspace read", "GET", "workspaces/w1/apis", None, set(ROLES)),
    ("workspace itself", "GET", "workspaces/w1", None, set(ROLES)),
    ("workspace api write", "PUT", "workspaces/w1/apis/wa", {"path": "wa", "serviceUrl": "http://127.0.0.1:1"},
     {"administrator", "workspaceContributor", "apiDeveloper"}),
    ("workspace product write", "PUT", "workspaces/w1/products/wp", {"displayName": "WP"},
     {"administrator", "workspaceContributor", "apiProductManager"}),
    ("workspace keys", "POST", "workspaces/w1/subscriptions/ws-sub/listSecrets", None,
     {"administrator", "workspaceContributor", "apiProductManager"}),
    ("other workspace read", "GET", "workspaces/w2/apis", None, {"administrator", "reader"}),
    ("other workspace write", "PUT", "workspaces/w2/groups/g", {"displayName": "G"}, {"administrator"}),
    ("workspace policy", "PUT", "workspaces/w1/policies/policy", {"inbound": ["base"]},
     {"administrator", "workspaceContributor", "apiDeveloper"}),
    ("workspace policy read", "GET", "workspaces/w1/policies", None, set(ROLES)),
    ("other workspace policy", "PUT", "workspaces/w2/policies/policy", {"inbound": ["base"]}, {"administrator"}),
    ("tokens", "GET", "tokens", None, {"administrator", "reader"}),
    ("token write", "PUT", "tokens/more", {"role": "reader"}, {"administrator"}),
    ("export", "GET", "export", None, {"administrator"}),
    ("global policy", "PUT", "policies/policy", {"inbound": []}, {"administrator"}),
]


def test_role_matrix(env):
    p, m = env
    m.ok("PUT", "workspaces/w1", {"displayName": "W1"})
    m.ok("PUT", "workspaces/w2", {"displayName": "W2"})
    m.ok("PUT", "workspaces/w1/apis/w1api", {"path": "w1api", "serviceUrl": "http://127.0.0.1:1"})
    m.ok("PUT", "workspaces/w1/subscriptions/ws-sub", {"scope": "/apis/w1api", "state": "active"})
    tokens = {"administrator": TOKEN}
    for r in ROLES[1:]:
        body = {"role": r}
        if r.startswith("workspace") or r.startswith("api"):
            body["workspace"] = "w1"
        st, _, out = m.call("PUT", "tokens/t-" + r, body)
        assert st == 201 and out["token"].startswith("pt_"), out
        tokens[r] = out["token"]
    failures = []
    for what, method, path, body, allowed in MATRIX:
        for role in ROLES:
            st, _, out = m.call(method, path, body, token=tokens[role])
            ok = st < 400
            if ok != (role in allowed) or (not ok and st != 403):
                failures.append((what, role, st, out))
            if ok and method == "PUT":  # undo, so the next role meets the same state
                m.call("DELETE", path, token=TOKEN)
    assert not failures, failures
    # a workspace role cannot reach an entity of its workspace through the service path either
    st, _, _ = m.call("GET", "subscriptions/ws-sub", token=tokens["workspaceContributor"])
    assert st == 403
    # a bad role or a workspace role without a workspace is refused
    assert m.call("PUT", "tokens/x", {"role": "superuser"})[0] == 400
    assert m.call("PUT", "tokens/x", {"role": "workspaceReader"})[0] == 400
    # a deleted token stops working at once
    m.ok("DELETE", "tokens/t-reader")
    assert m.call("GET", "apis", token=tokens["reader"])[0] == 401


def test_workspace_entities_are_scoped(env, backend):
    p, m = env
    m.ok("PUT", "workspaces/w1", {"displayName": "W1"})
    m.ok("PUT", "workspaces/w2", {"displayName": "W2"})
    st, _, api = m.call("PUT", "workspaces/w1/apis/team", {"path": "team", "serviceUrl": backend.url,
                                                           "subscriptionRequired": False})
    assert st == 201 and api["workspace"] == "w1"
    m.ok("PUT", "workspaces/w1/apis/team/operations/all", {"method": "GET", "urlTemplate": "/*"})
    assert [a["id"] for a in m.ok("GET", "workspaces/w1/apis")["value"]] == ["team"]
    assert m.ok("GET", "workspaces/w2/apis")["value"] == []
    assert m.call("GET", "workspaces/w2/apis/team")[0] == 404
    assert m.ok("GET", "apis/team")["workspace"] == "w1"  # the service level sees every workspace
    assert m.call("GET", "workspaces/nope/apis")[0] == 404
    assert gateway_call(p, "/team/hello")[0] == 200
    # a workspace with entities cannot be deleted
    st, _, err = m.call("DELETE", "workspaces/w1")
    assert st == 409, err
    m.ok("DELETE", "workspaces/w1/apis/team")
    assert m.call("DELETE", "workspaces/w1")[0] == 204


def test_workspace_policy_document(env, backend):
    p, m = env
    m.ok("PUT", "workspaces/w1", {"displayName": "W1"})
    m.ok("PUT", "workspaces/w1/apis/team", {"path": "team", "serviceUrl": backend.url, "subscriptionRequired": False})
    m.ok("PUT", "workspaces/w1/apis/team/operations/all", {"method": "GET", "urlTemplate": "/*"})
    assert m.call("GET", "workspaces/w1/policies/policy")[0] == 404
    doc = {"inbound": ["base", {"set-header": {"name": "X-Workspace", "value": "w1"}}]}
    st, hdrs, out = m.call("PUT", "workspaces/w1/policies/policy", doc)
    assert st == 201 and out == doc and hdrs.get("etag")
    deadline = time.time() + 5
    while time.time() < deadline:
        backend.requests.clear()
        if gateway_call(p, "/team/hello")[0] == 200 and backend.last().header("X-Workspace") == "w1":
            break
        time.sleep(0.05)
    assert backend.last().header("X-Workspace") == "w1"
    # APIs outside the workspace do not get it
    backend.requests.clear()
    assert gateway_call(p, "/echo/hello")[0] == 200
    assert backend.last().header("X-Workspace") is None
    # validated like the file's documents, with a path to the bad statement
    st, _, err = m.call("PUT", "workspaces/w1/policies/policy", {"inbound": [{"set-header": {"nam": "x"}}]})
    assert st == 400 and "inbound" in json.dumps(err), err
    # listed, exported, and removed with the workspace
    assert m.ok("GET", "workspaces/w1/policies")["value"][0]["value"] == doc
    exported = m.ok("GET", "export")
    assert [w.get("policies") for w in exported["workspaces"]] == [doc]
    assert m.call("DELETE", "workspaces/nope/policies/policy")[0] == 404
    m.ok("DELETE", "workspaces/w1/apis/team")
    assert m.call("DELETE", "workspaces/w1")[0] == 204
    m.ok("PUT", "workspaces/w1", {"displayName": "W1 again"})
    assert m.call("GET", "workspaces/w1/policies/policy")[0] == 404


def test_management_over_https(backend, portico, workdir):
    from tls_helpers import Pki, client_context
    pki = Pki(workdir)
    cert, key = pki.leaf("mgmt", "localhost", sans=("DNS:localhost", "IP:127.0.0.1"))
    cfg = mgmt_config(backend.url)
    cfg["management"].update({"certificate": cert, "key": key})
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    port = int(cfg["management"]["listen"].rsplit(":", 1)[1])
    # a TLS client trusting the test CA gets answers; plain HTTP does not
    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=client_context(pki.ca))
    c.request("PUT", "/management/apis/secure", body=json.dumps({"path": "secure", "serviceUrl": backend.url,
                                                                  "subscriptionRequired": False}),
              headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 201, r.read()
    r.read()
    c.close()
    plain = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        plain.request("GET", "/management/apis", headers={"Authorization": "Bearer " + TOKEN})
        plain.getresponse().read()
    # the CLI speaks https, checking the certificate against --ca-file / $PORTICO_CA_FILE
    url = "https://127.0.0.1:%d" % port
    e = dict(os.environ, PORTICO_ADMIN_TOKEN=TOKEN)
    e.pop("PORTICO_CA_FILE", None)
    r = subprocess.run([BIN, "api", "list", "--url", url, "--ca-file", pki.ca], capture_output=True, timeout=60, env=e)
    assert r.returncode == 0 and b"secure" in r.stdout, r.stderr
    r = subprocess.run([BIN, "api", "list", "--url", url], capture_output=True, timeout=60,
                       env=dict(e, PORTICO_CA_FILE=pki.ca))
    assert r.returncode == 0 and b"secure" in r.stdout, r.stderr
    # an untrusted certificate is refused with a clear message
    r = subprocess.run([BIN, "api", "list", "--url", url, "--ca-file", pki.other_ca], capture_output=True,
                       timeout=60, env=e)
    assert r.returncode == 1 and b"certificate not trusted" in r.stderr, r.stderr
    # a name the certificate does not carry is refused too
    r = subprocess.run([BIN, "api", "list", "--url", "https://[::1]:%d" % port, "--ca-file", pki.ca],
                       capture_output=True, timeout=60, env=e)
    assert r.returncode == 1, r.stdout


def test_management_tls_config_errors(backend, workdir):
    cfg = mgmt_config(backend.url)
    cfg["management"]["certificate"] = os.path.join(workdir, "missing.pem")
    path = os.path.join(workdir, "bad.yaml")
    from conftest import to_yaml
    text = to_yaml(cfg) + "\n"
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, timeout=30)
    assert r.returncode != 0 and b"needs both certificate and key" in r.stderr, r.stderr
    cfg["management"]["key"] = os.path.join(workdir, "missing.key")
    with open(path, "w") as f:
        f.write(to_yaml(cfg) + "\n")
    r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, timeout=30)
    assert r.returncode != 0 and b"bad.yaml:" in r.stderr and b"missing.pem" in r.stderr, r.stderr


# ------------------------------------------------------------- durability


def test_kill_9_during_writes_loses_nothing_acknowledged(backend, portico, workdir):
    cfg = mgmt_config(backend.url)
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    acked = []
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set() and i < 5000:
            uid = "u%05d" % i
            try:
                st, _, _ = m.call("PUT", "users/" + uid, {"email": uid + "@example.com", "firstName": "F",
                                                          "lastName": "L"})
            except OSError:
                return
            if st == 201:
                acked.append(uid)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    deadline = time.time() + 10
    while len(acked) < 30 and time.time() < deadline:
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.proc.wait()
    stop.set()
    t.join(30)
    assert len(acked) >= 30
    db = sqlite3.connect(os.path.join(workdir, "var", "portico.db"))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    p2 = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m2 = Mgmt(p2)
    users = set()
    page = m2.ok("GET", "users?$top=1000")
    users.update(u["id"] for u in page["value"])
    missing = [u for u in acked if u not in users]
    assert not missing, missing[:5]
    assert gateway_call(p2, "/echo/items/1")[0] == 200


# ----------------------------------------------------------- round trip

DOC = """
namedValues:
  - {id: greeting, displayName: greeting, value: hello}
  - {id: pw, displayName: pw, value: "p@ss: word", secret: true}
policyFragments:
  - id: stamp
    value:
      - set-header: {name: X-Stamp, value: "{{greeting}}"}
groups:
  - {id: partners, displayName: Partners, description: "external teams"}
users:
  - {id: ann, email: ann@example.com, firstName: Ann, lastName: Lee, groups: [partners]}
  - {id: bob, email: bob@example.com, firstName: Bob, lastName: "O'Neil", state: blocked}
backends:
  - {id: main, url: "BACKEND/base", description: "the main backend"}
apis:
  - id: shop
    displayName: "Shop: the API"
    path: shop
    serviceUrl: "BACKEND"
    subscriptionRequired: true
    subscriptionKeyParameterNames: {header: X-Shop-Key, query: shop-key}
    policies:
      inbound:
        - base
        - include-fragment: {fragment-id: stamp}
    operations:
      - {id: list, method: GET, urlTemplate: /items, displayName: "List items"}
      - id: get
        method: GET
        urlTemplate: "/items/{id}"
        policies:
          inbound: [base, {set-header: {name: X-Item, value: "@(context.request.matchedParameters.id)"}}]
products:
  - id: retail
    displayName: Retail
    description: "multi\\nline"
    state: published
    subscriptionRequired: true
    approvalRequired: true
    subscriptionsLimit: 3
    apis: [shop]
    groups: [partners, developers]
    policies:
      inbound: [base, {set-header: {name: X-Product, value: retail}}]
subscriptions:
  - {id: ann-retail, displayName: "Ann", scope: /products/retail, ownerId: /users/ann, state: active,
     primaryKey: 0123456789abcdef0123456789abcdef, secondaryKey: fedcba9876543210fedcba9876543210}
  - {id: all, scope: /apis, state: suspended}
policies:
  inbound: [{set-header: {name: X-Global, value: "yes"}}]
"""


def test_apply_export_apply_round_trip_with_the_cli(backend, portico, workdir, tmp_path):
    cfg = mgmt_config(backend.url)
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN, "PORTICO_SECRET_KEY": "x" * 32})
    m = Mgmt(p)
    f = tmp_path / "entities.yaml"
    f.write_text(DOC.replace("BACKEND", backend.url))
    rc, out, err = cli(m, "apply", "-f", str(f))
    assert rc == 0, err
    assert "applied" in out
    status, _, _ = gateway_call(p, "/shop/items/7", "0123456789abcdef0123456789abcdef", header="X-Shop-Key")
    assert status == 200
    r = backend.last()
    assert (r.header("X-Stamp"), r.header("X-Item"), r.header("X-Product"), r.header("X-Global")) == \
        ("hello", "7", "retail", "yes")
    rc, exported, err = cli(m, "export")
    assert rc == 0, err
    assert "p@ss: word" in exported  # export carries secrets: it must restore them
    # a second gateway with an empty store takes the export and exports the same
    cfg2 = mgmt_config(backend.url, data=str(tmp_path / "second"))
    cfg2["listen"] = ["127.0.0.1:%d" % free_port()]
    p2 = portico(cfg2, env={"PORTICO_ADMIN_TOKEN": TOKEN, "PORTICO_SECRET_KEY": "y" * 32})
    m2 = Mgmt(p2)
    f2 = tmp_path / "exported.yaml"
    f2.write_text(exported)
    rc, out, err = cli(m2, "apply", "-f", str(f2))
    assert rc == 0, err
    rc, exported2, err = cli(m2, "export")
    assert exported2 == exported
    assert gateway_call(p2, "/shop/items/7", "0123456789abcdef0123456789abcdef", header="X-Shop-Key")[0] == 200
    assert m2.ok("POST", "namedValues/pw/listValue") == {"value": "p@ss: word"}
    # and applying the same export again changes nothing
    rc, out, err = cli(m2, "apply", "-f", str(f2))
    assert rc == 0 and cli(m2, "export")[1] == exported


def test_cli_tables_json_and_errors(env, backend, tmp_path):
    p, m = env
    rc, out, err = cli(m, "api", "list", "-o", "table")
    assert rc == 0 and out.split("\n")[0].split() == ["id", "displayName", "path", "serviceUrl",
                                                      "subscriptionRequired"]
    assert out.split("\n")[1].split()[0] == "echo"
    rc, out, err = cli(m, "api", "list")  # a pipe: JSON
    assert rc == 0 and [a["id"] for a in json.loads(out)] == ["echo"]
    m.ok("PUT", "products/p", {"displayName": "P", "state": "published"})
    m.ok("PUT", "products/p/apis/echo")
    rc, out, err = cli(m, "subscription", "create", "s1", "--scope", "/products/p", "--name", "First")
    assert rc == 0, err
    rc, out, err = cli(m, "subscription", "keys", "s1", "-o", "table")
    keys = dict(line.split() for line in out.strip().split("\n"))
    assert keys["primaryKey"] == m.keys("s1")["primaryKey"]
    rc, out, err = cli(m, "subscription", "regenerate", "s1", "-o", "table")
    assert rc == 0 and out.split()[1] != keys["primaryKey"] and out.split()[1] == m.keys("s1")["primaryKey"]
    for verb, state in (("suspend", "suspended"), ("approve", "active"), ("cancel", "cancelled")):
        rc, out, err = cli(m, "subscription", verb, "s1")
        assert rc == 0 and m.ok("GET", "subscriptions/s1")["state"] == state
    rc, out, err = cli(m, "subscription", "show", "s1")
    assert rc == 0 and "scope" in out and "/products/p" in out
    rc, out, err = cli(m, "api", "show", "ghost")
    assert rc == 1 and "404" in err and "ResourceNotFound" in err and "ghost" in err
    rc, out, err = cli(m, "api", "list", token="wrong")
    assert rc == 1 and "401" in err
    rc, out, err = cli(m, "api", "list", url="http://127.0.0.1:%d" % free_port())
    assert rc == 1 and "cannot reach" in err
    rc, out, err = cli(m, "api", "frobnicate", "x")
    assert rc == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("apis:\n  - id: z\n    path: z\n    serviceUrl: gopher://x\n")
    rc, out, err = cli(m, "apply", "-f", str(bad))
    assert rc == 1 and "%s:4:" % bad in err, err
    rc, out, err = cli(m, "product", "delete", "p")
    assert rc == 1 and "409" in err  # the subscription still uses it


# ------------------------------------------------------- change under load


def test_management_changes_under_load_drop_nothing(backend, portico):
    cfg = mgmt_config(backend.url, workers=2)
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    m.ok("PUT", "products/p", {"displayName": "P", "state": "published"})
    m.ok("PUT", "products/p/apis/echo")
    m.ok("PUT", "subscriptions/load", {"scope": "/products/p", "state": "active"})
    m.ok("PUT", "subscriptions/other", {"scope": "/apis", "state": "active"})
    key = m.keys("load")["primaryKey"]
    statuses = []
    stop = threading.Event()

    def client():
        c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
        n = 0
        while not stop.is_set() and n < 200000:
            try:
                c.request("GET", "/echo/items/%d" % n, headers={"Ocp-Apim-Subscription-Key": key})
                r = c.getresponse()
                r.read()
                statuses.append(r.status)
            except (OSError, http.client.HTTPException) as e:
                statuses.append(repr(e))
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
            n += 1
        c.close()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(15):
        m.ok("PUT", "users/load-%d" % i,
             {"email": "l%d@example.com" % i, "firstName": "L", "lastName": "D"})
        m.ok("POST", "subscriptions/other/regeneratePrimaryKey")
        m.ok("PUT", "products/p/policies/policy",
             {"inbound": ["base", {"set-header": {"name": "X-Round", "value": str(i)}}]})
    stop.set()
    for t in threads:
        t.join(30)
    bad = [s for s in statuses if s != 200]
    assert len(statuses) > 100 and not bad, (len(statuses), bad[:5])
    # the last change is what every worker serves now
    seen = set()
    for _ in range(20):
        gateway_call(p, "/echo/items/x", key)
        seen.add(backend.last().header("X-Round"))
    assert seen == {"14"}


def test_cli_every_list_delete_and_secondary_key(env, backend):
    """Every noun's list, api delete, subscription regenerate --secondary."""
    p, m = env
    m.ok("PUT", "products/lp", {"displayName": "LP", "state": "published"})
    m.ok("PUT", "users/lu", {"email": "lu@example.com", "firstName": "L", "lastName": "U"})
    m.ok("PUT", "groups/lg", {"displayName": "LG"})
    m.ok("PUT", "namedValues/lnv", {"displayName": "lnv", "value": "v"})
    m.ok("PUT", "workspaces/lw", {"displayName": "LW"})
    m.ok("PUT", "apis/gone", {"path": "gone", "serviceUrl": backend.url})
    for noun, want in (("product", "lp"), ("user", "lu"), ("group", "lg"), ("named-value", "lnv"),
                       ("workspace", "lw"), ("api", "gone")):
        rc, out, err = cli(m, noun, "list", "-o", "json")
        assert rc == 0, (noun, err)
        assert want in [x["id"] for x in json.loads(out)], (noun, out)
    rc, out, err = cli(m, "api", "delete", "gone")
    assert rc == 0, err
    assert m.call("GET", "apis/gone")[0] == 404
    m.ok("PUT", "products/lp/apis/echo")
    m.ok("PUT", "subscriptions/ls", {"scope": "/products/lp", "state": "active"})
    before = m.keys("ls")
    rc, out, err = cli(m, "subscription", "regenerate", "ls", "--secondary")
    assert rc == 0, err
    after = m.keys("ls")
    assert after["primaryKey"] == before["primaryKey"] and after["secondaryKey"] != before["secondaryKey"]
    assert gateway_call(p, "/echo/items/1", before["secondaryKey"])[0] == 401
    assert gateway_call(p, "/echo/items/1", after["secondaryKey"])[0] == 200


def test_a_fragment_in_use_cannot_be_deleted(env):
    p, m = env
    m.ok("PUT", "policyFragments/used", {"value": [{"set-header": {"name": "X-F", "value": "1"}}]})
    m.ok("PUT", "apis/echo/policies/policy", {"inbound": ["base", {"include-fragment": {"fragment-id": "used"}}]})
    st, _, err = m.call("DELETE", "policyFragments/used")
    assert st == 409, err
    assert m.call("GET", "policyFragments/used")[0] == 200
    m.ok("DELETE", "apis/echo/policies/policy")
    assert m.call("DELETE", "policyFragments/used")[0] == 204
