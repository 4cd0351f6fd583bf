"""NUL characters in configuration strings, as an attack.

A double-quoted YAML scalar may spell a NUL ("\\0", "\\u0000"), and so may a
JSON string ("\\u0000").  The gateway reads strings up to their first NUL,
and the stored JSON copy of such a string does not load again: an API whose
ip-filter or check-header carried one used to pass `portico -t`, start, and
then run without any of its policies -- an open API.  Every way in refuses
it: the file with file:line:column and the key, the management API with a
400 naming the field; what ran before keeps running."""

import json
import os
import re
import sqlite3
import subprocess

import pytest

from conftest import BIN, basic_config, free_port, to_yaml
from mgmt_helpers import TOKEN, Mgmt, mgmt_config

LOCATION = re.compile(r"portico\.yaml:\d+:\d+: ")


def guarded(backend_url, address="10.0.0.1", header_value="Alpha", **extra):
    """An API that only 10.0.0.1 may call (the tests call from 127.0.0.1), and that
    wants an X-Tenant header: every call the tests make must be refused."""
    cfg = basic_config(backend_url, **extra)
    cfg["apis"][0]["policies"] = {"inbound": [
        "base",
        {"ip-filter": {"action": "allow", "address": [address]}},
        {"check-header": {"name": "X-Tenant", "failed-check-httpcode": 401,
                          "failed-check-error-message": "tenant missing", "ignore-case": False,
                          "value": [header_value]}},
    ]}
    return cfg


def refused_by_policy(p, backend):
    """The gateway answers 403 (ip-filter) and the backend saw nothing."""
    before = len(backend.requests)
    status, _, _ = p.request("GET", "/echo/items/1", headers={"X-Tenant": "Alpha"})
    assert status == 403, "the ip-filter is not enforced (status %d)" % status
    assert len(backend.requests) == before, "a refused call reached the backend"


def check_file(workdir, cfg):
    path = os.path.join(workdir, "portico.yaml")
    with open(path, "w") as f:
        f.write(to_yaml(cfg) + "\n")
    r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, timeout=30, cwd=workdir)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


# ------------------------------------------------------------ the file


def test_the_guarded_file_without_a_nul_is_valid(backend, workdir):
    """The control: what the tests below spoil is a valid configuration."""
    cfg = guarded(backend.url)
    cfg["policyFragments"] = [{"id": "only-10", "value": [{"ip-filter": {"action": "allow",
                                                                        "address": ["10.0.0.1"]}}]}]
    cfg["namedValues"] = [{"id": "allowed", "displayName": "allowed", "value": "10.0.0.1"}]
    rc, out = check_file(workdir, cfg)
    assert rc == 0 and "is valid" in out, out


@pytest.mark.parametrize("where, key", [
    ("ip-filter address", "api 'echo' › inbound[1] ip-filter address[0]"),
    ("ip-filter action", "api 'echo' › inbound[1] ip-filter action"),
    ("check-header value", "api 'echo' › inbound[2] check-header value[0]"),
    ("check-header name", "api 'echo' › inbound[2] check-header name"),
    ("fragment", "policy fragment 'only-10' › value[0] ip-filter address[0]"),
    ("named value", "named value 'allowed' › value"),
    ("map key", "api 'echo' › inbound[1] ip-filter"),
    ("description", "api 'echo' › description"),
])
def test_file_with_a_nul_is_refused_with_its_place(backend, workdir, where, key):
    cfg = guarded(backend.url)
    inbound = cfg["apis"][0]["policies"]["inbound"]
    if where == "ip-filter address":
        inbound[1]["ip-filter"]["address"] = ["10.0.0.1\0"]
    elif where == "ip-filter action":
        inbound[1]["ip-filter"]["action"] = "allow\0forbid"
    elif where == "check-header value":
        inbound[2]["check-header"]["value"] = ["Alpha\0"]
    elif where == "check-header name":
        inbound[2]["check-header"]["name"] = "X-Tenant\0"
    elif where == "fragment":
        cfg["policyFragments"] = [{"id": "only-10", "value": [{"ip-filter": {"action": "allow",
                                                                            "address": ["10.0.0.1\0"]}}]}]
        inbound[1] = {"include-fragment": {"fragment-id": "only-10"}}
    elif where == "named value":
        cfg["namedValues"] = [{"id": "allowed", "displayName": "allowed", "value": "10.0.0.1\0"}]
        inbound[1]["ip-filter"]["address"] = ["{{allowed}}"]
    elif where == "map key":
        inbound[1]["ip-filter"]['"audit\\0"'] = "x"  # to_yaml writes keys as they are
    elif where == "description":
        cfg["apis"][0]["description"] = "ok\0"
    rc, out = check_file(workdir, cfg)
    assert rc != 0, out
    assert "is valid" not in out
    assert LOCATION.search(out), out
    assert "NUL" in out and key in out, out


def test_both_yaml_spellings_are_refused_at_their_place(backend, workdir):
    for spelling in ("\\0", "\\u0000", "\\x00"):
        cfg = guarded(backend.url, address="10.0.0.1")
        text = to_yaml(cfg).replace('"10.0.0.1"', '"10.0.0.1%s"' % spelling)
        assert spelling in text
        path = os.path.join(workdir, "portico.yaml")
        with open(path, "w") as f:
            f.write(text + "\n")
        line = next(i for i, t in enumerate(text.splitlines(), 1) if spelling in t)
        r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, timeout=30, cwd=workdir)
        out = (r.stdout + r.stderr).decode(errors="replace")
        assert r.returncode != 0 and "portico.yaml:%d:" % line in out, (spelling, out)


def test_start_with_a_nul_policy_is_refused(backend, workdir):
    cfg = guarded(backend.url, address="10.0.0.1\0")
    path = os.path.join(workdir, "portico.yaml")
    with open(path, "w") as f:
        f.write(to_yaml(cfg) + "\n")
    # a gateway that started would not end by itself: run() would time out
    r = subprocess.run([BIN, "-c", path], capture_output=True, timeout=20, cwd=workdir)
    err = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode != 0 and "NUL" in err and LOCATION.search(err), (r.returncode, err)
    assert backend.requests == []


def test_reload_with_a_nul_keeps_the_policies_running(backend, portico):
    good = guarded(backend.url)
    p = portico(good)
    refused_by_policy(p, backend)
    for bad in (guarded(backend.url, address="10.0.0.1\0"), guarded(backend.url, header_value="Alpha\0")):
        bad["listen"] = good["listen"]
        assert p.reload(bad) is False
        assert "NUL" in p.log_text().split("reloading")[-1]
        refused_by_policy(p, backend)
    assert p.proc.poll() is None


# ------------------------------------------------------- management API


@pytest.fixture
def managed(backend, portico):
    cfg = mgmt_config(backend.url)
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    m.ok("PUT", "apis/echo/policies/policy", guarded(backend.url)["apis"][0]["policies"])
    refused_by_policy(p, backend)
    return p, m


def assert_400_naming(st, out, field):
    text = json.dumps(out)
    assert st == 400, (st, out)
    assert field in text and "NUL" in text, out


def test_rest_policy_with_a_nul_is_refused_and_unchanged(backend, managed):
    p, m = managed
    before = m.ok("GET", "apis/echo/policies/policy")
    open_doc = guarded(backend.url, address="10.0.0.1\0")["apis"][0]["policies"]
    st, _, out = m.call("PUT", "apis/echo/policies/policy", open_doc)
    assert_400_naming(st, out, "inbound[1].ip-filter.address[0]")
    # the same in the envelope, and as YAML inside it, and as a YAML body
    st, _, out = m.call("PUT", "apis/echo/policies/policy", {"properties": {"value": open_doc}})
    assert_400_naming(st, out, "ip-filter.address[0]")
    yaml_doc = 'inbound:\n  - base\n  - ip-filter: {action: allow, address: ["10.0.0.1\\0"]}\n'
    st, _, out = m.call("PUT", "apis/echo/policies/policy", {"properties": {"value": yaml_doc}})
    assert_400_naming(st, out, "inbound[1] ip-filter address[0]")
    assert "value:3:" in json.dumps(out), out
    st, _, out = m.call("PUT", "apis/echo/policies/policy", raw=yaml_doc.encode(), content_type="application/yaml")
    assert_400_naming(st, out, "inbound[1] ip-filter address[0]")
    assert "body:3:" in json.dumps(out), out
    # a raw JSON \u0000 that a client library would not produce by itself
    raw = b'{"inbound": ["base", {"check-header": {"name": "X-Tenant", "failed-check-httpcode": 401,' \
          b' "failed-check-error-message": "m", "value": ["Alpha\\u0000"]}}]}'
    st, _, out = m.call("PUT", "apis/echo/policies/policy", raw=raw, content_type="application/json")
    assert_400_naming(st, out, "inbound[1].check-header.value[0]")
    assert m.ok("GET", "apis/echo/policies/policy") == before
    refused_by_policy(p, backend)


def test_rest_fragments_named_values_and_entities_refuse_a_nul(backend, managed):
    p, m = managed
    m.ok("PUT", "policyFragments/only-10", {"value": [{"ip-filter": {"action": "allow", "address": ["10.0.0.1"]}}]})
    m.ok("PUT", "namedValues/allowed", {"displayName": "allowed", "value": "10.0.0.1"})
    frag = m.ok("GET", "policyFragments/only-10")
    nv = m.ok("GET", "namedValues/allowed")
    st, _, out = m.call("PUT", "policyFragments/only-10",
                        {"value": [{"ip-filter": {"action": "allow", "address": ["10.0.0.1\0"]}}]})
    assert_400_naming(st, out, "value[0].ip-filter.address[0]")
    st, _, out = m.call("PUT", "namedValues/allowed", {"displayName": "allowed", "value": "10.0.0.1\0"})
    assert_400_naming(st, out, "value")
    st, _, out = m.call("PATCH", "namedValues/allowed", {"value": "\0"})
    assert_400_naming(st, out, "value")
    m.ok("PUT", "apis/api2", {"path": "api2", "serviceUrl": backend.url})
    api = m.ok("GET", "apis/api2")
    st, _, out = m.call("PATCH", "apis/api2", {"displayName": "Echo\0"})
    assert_400_naming(st, out, "displayName")
    st, _, out = m.call("PUT", "apis/api2", {"path": "api2", "serviceUrl": backend.url, "description": "\0"})
    assert_400_naming(st, out, "description")
    st, _, out = m.call("PUT", "apis/other", {"path": "other\0", "serviceUrl": backend.url})
    assert_400_naming(st, out, "path")
    st, _, out = m.call("PUT", "products/p%00x", {"displayName": "P"})
    assert st in (400, 404), (st, out)  # an id with a NUL names no product, nor "p"
    assert [x["id"] for x in m.ok("GET", "products")["value"] if x["id"].startswith("p")] == [], out
    assert m.ok("GET", "policyFragments/only-10") == frag
    assert m.ok("GET", "namedValues/allowed") == nv
    assert m.ok("GET", "apis/api2") == api
    assert m.call("GET", "apis/other")[0] == 404
    refused_by_policy(p, backend)


def test_apply_and_import_refuse_a_nul(backend, managed, workdir):
    p, m = managed
    before = m.ok("GET", "apis/echo/policies/policy")
    doc = ('apis:\n  - id: echo\n    path: echo\n    serviceUrl: "%s/base"\n    policies:\n'
           '      inbound: [base, {ip-filter: {action: allow, address: ["10.0.0.1\\u0000"]}}]\n' % backend.url)
    st, _, out = m.call("POST", "apply", raw=doc.encode(), content_type="application/yaml")
    assert_400_naming(st, out, "inbound[1] ip-filter address[0]")
    assert "request:6:" in json.dumps(out), out
    # the CLI says the same and fails
    path = os.path.join(workdir, "apply.yaml")
    with open(path, "w") as f:
        f.write(doc)
    r = subprocess.run([BIN, "apply", "-f", path], capture_output=True, timeout=60,
                       env=dict(os.environ, PORTICO_ADMIN_TOKEN=TOKEN, PORTICO_URL=m.url))
    err = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode != 0 and "NUL" in err and "inbound[1] ip-filter address[0]" in err, err
    # an OpenAPI import whose document carries one (YAML text, JSON text)
    yaml_api = ('openapi: 3.0.0\ninfo: {title: "Tiny\\0", version: "1"}\npaths:\n  /ping:\n    get:\n'
                '      operationId: ping\n      responses: {"200": {description: pong}}\n')
    st, _, out = m.call("PUT", "apis/tiny", {"format": "openapi", "value": yaml_api, "path": "tiny",
                                             "serviceUrl": backend.url, "subscriptionRequired": False})
    assert st == 400 and "NUL" in json.dumps(out) and "info.title" in json.dumps(out), (st, out)
    json_api = ('{"openapi": "3.0.0", "info": {"title": "Tiny\\u0000", "version": "1"},'
                ' "paths": {"/ping": {"get": {"operationId": "ping", "responses": {"200": {"description": "p"}}}}}}')
    st, _, out = m.call("PUT", "apis/tiny", {"format": "openapi+json", "value": json_api, "path": "tiny",
                                             "serviceUrl": backend.url, "subscriptionRequired": False})
    assert st == 400, (st, out)
    # the whole import body spelled with a JSON \u0000
    st, _, out = m.call("PUT", "apis/tiny", {"format": "openapi", "value": yaml_api.replace("\\0", "\0"),
                                             "path": "tiny", "serviceUrl": backend.url})
    assert_400_naming(st, out, "value")
    assert m.call("GET", "apis/tiny")[0] == 404
    assert m.ok("GET", "apis/echo/policies/policy") == before
    refused_by_policy(p, backend)


def test_a_nul_never_reaches_the_store_from_the_file(backend, portico, workdir):
    """The old way in: a file that passed -t.  The gateway that refused it at
    start never created a store either way; one started from a good file and
    reloaded with the bad one keeps the good policy in its store."""
    cfg = mgmt_config(backend.url, **{k: v for k, v in guarded(backend.url).items() if k == "apis"})
    cfg["listen"] = ["127.0.0.1:%d" % free_port()]
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    before = m.ok("GET", "apis/echo/policies/policy")
    assert before["inbound"][1]["ip-filter"]["address"] == ["10.0.0.1"]
    bad = dict(cfg)
    bad["apis"] = guarded(backend.url, address="10.0.0.1\0")["apis"]
    assert p.reload(bad) is False
    assert m.ok("GET", "apis/echo/policies/policy") == before
    refused_by_policy(p, backend)


def test_a_stored_policy_that_does_not_load_stops_the_start(backend, portico, workdir):
    """A store written before NULs were refused may hold a policy document
    with a \\u0000 that does not load: the gateway must not run without it."""
    cfg = mgmt_config(backend.url, data=os.path.join(workdir, "var"))
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    m.ok("PUT", "apis/echo2", {"path": "echo2", "serviceUrl": backend.url, "subscriptionRequired": False})
    m.ok("PUT", "apis/echo2/operations/any", {"method": "*", "urlTemplate": "/*"})
    m.ok("PUT", "apis/echo2/policies/policy", guarded(backend.url)["apis"][0]["policies"])
    assert p.request("GET", "/echo2/x", headers={"X-Tenant": "Alpha"})[0] == 403
    assert p.stop() == 0
    db = sqlite3.connect(os.path.join(workdir, "var", "portico.db"))
    with db:
        body, = db.execute("SELECT body FROM entities WHERE kind = 'policy' AND id = 'api:echo2'").fetchone()
        assert "10.0.0.1" in body
        db.execute("UPDATE entities SET body = ? WHERE kind = 'policy' AND id = 'api:echo2'",
                   (body.replace("10.0.0.1", "10.0.0.1\\u0000"),))
    db.close()
    r = subprocess.run([BIN, "-c", p.config_path], capture_output=True, timeout=20, cwd=workdir,
                       env=dict(os.environ, PORTICO_ADMIN_TOKEN=TOKEN))
    out = (r.stdout + r.stderr).decode(errors="replace")
    log = p.log_text()
    assert r.returncode != 0, (out, log)
    assert "api:echo2" in out + log and "cannot be read" in out + log, (out, log)
    assert backend.requests == []
