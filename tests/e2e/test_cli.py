"""The `portico` CLI against a real gateway: create/update/show/list/delete
of every management entity, documents from -f YAML, options before and
after the command, help, exit codes, the output rule (JSON when piped,
tables with -o table), the bash completion, policies at each scope, and
the default state of the subscriptions it creates."""

import json
import os
import pty
import shutil
import subprocess

import pytest

from conftest import BIN, free_port
from mgmt_helpers import TOKEN, Mgmt, gateway_call, mgmt_config

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPLETION = os.path.join(TOP, "contrib", "portico.bash")


@pytest.fixture
def env(backend, portico):
    p = portico(mgmt_config(backend.url), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    return p, Mgmt(p)


def cli(m, *args, token=TOKEN, env_url=True):
    """(exit status, stdout, stderr) of `portico ARGS`, its stdout a pipe."""
    e = dict(os.environ)
    e.pop("PORTICO_URL", None)
    if env_url:
        e["PORTICO_URL"] = m.url
    e["PORTICO_ADMIN_TOKEN"] = token
    r = subprocess.run([BIN] + list(args), capture_output=True, timeout=60, env=e)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def ok_json(m, *args):
    rc, out, err = cli(m, *args)
    assert rc == 0, (args, err)
    return json.loads(out)


# (noun, id, create flags, expected fields, update flags, expected after, REST collection)
ENTITIES = [
    ("api", "a1", ["--path", "a1", "--service-url", "http://127.0.0.1:9", "--display-name", "A one"],
     {"path": "a1", "displayName": "A one"}, ["--subscription-required", "false"],
     {"subscriptionRequired": False}, "apis"),
    ("product", "p1", ["--display-name", "P one", "--state", "published"], {"displayName": "P one"},
     ["--approval-required", "true", "--subscriptions-limit", "3"],
     {"approvalRequired": True, "subscriptionsLimit": 3}, "products"),
    ("user", "u1", ["--email", "u1@example.com", "--first-name", "U", "--last-name", "One"],
     {"email": "u1@example.com"}, ["--note", "checked"], {"note": "checked"}, "users"),
    ("group", "g1", ["--display-name", "G one"], {"displayName": "G one"}, ["--description", "the ones"],
     {"description": "the ones"}, "groups"),
    ("named-value", "nv1", ["--display-name", "nv1", "--value", "v1"], {"displayName": "nv1"},
     ["--set", "tags=[\"t\"]"], {"tags": ["t"]}, "namedValues"),
    ("backend", "b1", ["--backend-url", "http://127.0.0.1:9", "--protocol", "http"],
     {"url": "http://127.0.0.1:9"}, ["--description", "nine"], {"description": "nine"}, "backends"),
    ("policy-fragment", "f1", ["--value", "[{\"set-header\": {\"name\": \"X-F\", \"value\": \"1\"}}]"],
     {"value": [{"set-header": {"name": "X-F", "value": "1"}}]}, ["--description", "a fragment"],
     {"description": "a fragment"}, "policyFragments"),
    ("version-set", "vs1", ["--display-name", "VS", "--versioning-scheme", "Segment"],
     {"versioningScheme": "Segment"}, ["--description", "versions"], {"description": "versions"},
     "apiVersionSets"),
    ("workspace", "w1", ["--display-name", "W one"], {"displayName": "W one"}, ["--description", "team"],
     {"description": "team"}, "workspaces"),
    ("gateway", "gw1", ["--location", "Here"], {"locationData": {"name": "Here"}},
     ["--description", "edge"], {"description": "edge"}, "gateways"),
    ("logger", "l1", ["--logger-type", "file", "--set", "file.path=LOGDIR/l1.log"], {"loggerType": "file"},
     ["--description", "to a file"], {"description": "to a file"}, "loggers"),
    ("token", "t1", ["--role", "reader"], {"role": "reader"}, ["--role", "administrator"],
     {"role": "administrator"}, "tokens"),
    ("schema", "sc1", ["--schema-type", "json", "--document", "{\"type\": \"object\"}"],
     {"document": {"type": "object"}}, ["--set", "description=objects"], {"description": "objects"}, "schemas"),
    ("portal-page", "pg1", ["--title", "Hello", "--markdown", "# hi", "--menu-order", "2"],
     {"title": "Hello", "menuOrder": 2}, ["--title", "Bye"], {"title": "Bye"}, "portal/pages"),
]


@pytest.mark.parametrize("noun,eid,create,created,update,updated,coll", ENTITIES, ids=[e[0] for e in ENTITIES])
def test_every_entity_round_trip(env, noun, eid, create, created, update, updated, coll):
    p, m = env
    create = [a.replace("LOGDIR", p.workdir) for a in create]  # files written through the API: under its folder
    got = ok_json(m, noun, "create", eid, *create)
    for k, v in created.items():
        assert got[k] == v, (k, got)
    stored = m.ok("GET", "%s/%s" % (coll, eid))  # what the server holds, not what the CLI said
    for k, v in created.items():
        assert stored[k] == v
    assert eid in [x["id"] for x in ok_json(m, noun, "list")]
    ok_json(m, noun, "update", eid, *update)
    stored = m.ok("GET", "%s/%s" % (coll, eid))
    for k, v in dict(created, **updated).items():
        assert stored[k] == v, (k, stored)
    assert ok_json(m, noun, "show", eid)["id"] == eid
    rc, out, err = cli(m, noun, "delete", eid)
    assert rc == 0, err
    assert m.call("GET", "%s/%s" % (coll, eid))[0] == 404
    rc, out, err = cli(m, noun, "show", eid)
    assert rc == 1 and "404" in err and eid in err and out == ""


def test_operations_links_and_members(env, backend):
    p, m = env
    ok_json(m, "api", "create", "shop", "--path", "shop", "--service-url", backend.url + "/s",
            "--subscription-required", "false")
    ok_json(m, "api", "operation", "create", "shop", "get-thing", "--method", "GET", "--url-template", "/thing")
    assert m.ok("GET", "apis/shop/operations/get-thing")["urlTemplate"] == "/thing"
    ok_json(m, "api", "operation", "update", "shop", "get-thing", "--display-name", "Get a thing")
    assert m.ok("GET", "apis/shop/operations/get-thing")["displayName"] == "Get a thing"
    assert [o["id"] for o in ok_json(m, "api", "operation", "list", "shop")] == ["get-thing"]
    # the operation routes: /shop/thing reaches the backend, /shop/other has no operation
    assert gateway_call(p, "/shop/thing")[0] == 200 and backend.last().target == "/s/thing"
    assert gateway_call(p, "/shop/other")[0] == 404
    rc, out, err = cli(m, "api", "operation", "delete", "shop", "get-thing")
    assert rc == 0 and m.call("GET", "apis/shop/operations/get-thing")[0] == 404

    ok_json(m, "product", "create", "p", "--display-name", "P", "--state", "published")
    ok_json(m, "group", "create", "g", "--display-name", "G")
    ok_json(m, "user", "create", "u", "--email", "u@example.com", "--first-name", "U", "--last-name", "U")
    for verb, args in (("add-api", ("p", "shop")), ("add-group", ("p", "g"))):
        rc, out, err = cli(m, "product", verb, *args)
        assert rc == 0, err
    assert [a["id"] for a in ok_json(m, "product", "apis", "p")] == ["shop"]
    assert [g["id"] for g in m.ok("GET", "products/p/groups")["value"]] == ["g"]
    assert cli(m, "group", "add-member", "g", "u")[0] == 0
    assert [u["id"] for u in ok_json(m, "group", "members", "g")] == ["u"]
    assert cli(m, "group", "remove-member", "g", "u")[0] == 0
    assert m.ok("GET", "groups/g/users")["value"] == []
    assert cli(m, "product", "remove-api", "p", "shop")[0] == 0
    assert m.ok("GET", "products/p/apis")["value"] == []
    rc, out, err = cli(m, "product", "remove-api", "p", "shop")
    assert rc == 1 and "404" in err


def test_documents_from_yaml_files(env, tmp_path):
    p, m = env
    f = tmp_path / "api.yaml"
    f.write_text("displayName: From YAML\npath: fromyaml\nserviceUrl: http://127.0.0.1:9\n"
                 "subscriptionRequired: false\n")
    ok_json(m, "api", "create", "y1", "-f", str(f))
    stored = m.ok("GET", "apis/y1")
    assert stored["displayName"] == "From YAML" and stored["subscriptionRequired"] is False
    # flags change the file's body
    ok_json(m, "api", "create", "y2", "-f", str(f), "--path", "other")
    assert m.ok("GET", "apis/y2")["path"] == "other"
    # JSON is YAML too
    j = tmp_path / "p.json"
    j.write_text(json.dumps({"displayName": "J", "approvalRequired": True}))
    ok_json(m, "product", "create", "pj", "-f", str(j))
    assert m.ok("GET", "products/pj")["approvalRequired"] is True
    # a broken file: its position, exit 1, nothing written
    bad = tmp_path / "bad.yaml"
    bad.write_text("displayName: [unclosed\n")
    rc, out, err = cli(m, "api", "create", "y3", "-f", str(bad))
    assert rc == 1 and str(bad) in err and m.call("GET", "apis/y3")[0] == 404
    # a list is not an entity
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n- b\n")
    rc, out, err = cli(m, "api", "create", "y4", "-f", str(lst))
    assert rc == 1 and m.call("GET", "apis/y4")[0] == 404
    # the server's refusal names the field
    refused = tmp_path / "refused.yaml"
    refused.write_text("path: r\nserviceUrl: gopher://x\n")
    rc, out, err = cli(m, "api", "create", "y5", "-f", str(refused))
    assert rc == 1 and "400" in err and "serviceUrl" in err


def test_options_before_or_after_the_command(env):
    p, m = env
    for args in (["--url", m.url, "-o", "json", "api", "list"],
                 ["api", "list", "--url", m.url, "-o", "json"],
                 ["api", "--url", m.url, "list", "-o", "json"],
                 ["--token", TOKEN, "--url", m.url, "api", "list", "-o", "json"]):
        rc, out, err = cli(m, *args, env_url=False)
        assert rc == 0, (args, err)
        assert [a["id"] for a in json.loads(out)] == ["echo"]
    # the token is used wherever it is given
    rc, out, err = cli(m, "--token", "wrong", "api", "list")
    assert rc == 1 and "401" in err
    rc, out, err = cli(m, "api", "list", "--token", "wrong")
    assert rc == 1 and "401" in err
    # --ca-file before a command is the CLI's, not the gateway's -c run
    rc, out, err = cli(m, "--ca-file", "/nonexistent", "api", "list")
    assert rc == 0


def test_output_json_when_piped_table_or_yaml_when_asked(env):
    p, m = env
    rc, out, err = cli(m, "api", "list")
    assert rc == 0 and [a["id"] for a in json.loads(out)] == ["echo"]
    rc, out, err = cli(m, "api", "list", "-o", "table")
    lines = out.strip().split("\n")
    assert lines[0].split() == ["id", "displayName", "path", "serviceUrl", "subscriptionRequired"]
    assert lines[1].split()[0] == "echo"
    rc, out, err = cli(m, "-o", "yaml", "api", "show", "echo")
    assert rc == 0 and "id: echo\n" in out and "path: echo\n" in out
    rc, out, err = cli(m, "api", "show", "echo", "-o", "table")
    assert out.split("\n")[0].split() == ["id", "echo"]
    # on a terminal: a table (a pseudo-terminal as stdout)
    master, slave = pty.openpty()
    try:
        e = dict(os.environ, PORTICO_URL=m.url, PORTICO_ADMIN_TOKEN=TOKEN)
        proc = subprocess.Popen([BIN, "api", "list"], stdout=slave, stderr=subprocess.DEVNULL, env=e)
        os.close(slave)
        got = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO once the command has closed the terminal
                break
            if not chunk:
                break
            got += chunk
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(master)
    assert got.decode().split("\n")[0].split()[0] == "id", got
    rc, out, err = cli(m, "api", "list", "-o", "xml")
    assert rc == 2 and "-o" in err


def test_exit_codes_and_the_servers_message(env):
    p, m = env
    assert cli(m, "api", "show", "echo")[0] == 0
    rc, out, err = cli(m, "api", "show", "ghost")
    assert rc == 1 and "404" in err and "ResourceNotFound" in err and "ghost" in err
    m.ok("PUT", "products/p", {"displayName": "P", "state": "published"})
    m.ok("PUT", "subscriptions/s", {"scope": "/products/p", "state": "active"})
    rc, out, err = cli(m, "product", "delete", "p")
    assert rc == 1 and "409" in err and m.call("GET", "products/p")[0] == 200
    rc, out, err = cli(m, "api", "list", "--url", "http://127.0.0.1:%d" % free_port())
    assert rc == 1 and "cannot reach" in err
    for args in (["api", "frobnicate", "x"], ["frobnicate"], ["api", "show"], ["api", "show", "a", "b"],
                 ["api", "create", "x", "--no-such-flag", "1"], ["product", "create", "x", "--approval-required",
                                                                   "maybe"],
                 ["api", "list", "--url"], ["policy", "get", "--operation", "o"], ["policy", "set"],
                 ["api", "create", "x", "--set", "novalue"]):
        rc, out, err = cli(m, *args)
        assert rc == 2, (args, rc, err)
        assert err.startswith("portico: "), err
    assert m.call("GET", "apis/x")[0] == 404


def test_help_lists_every_command_verb_and_option(env):
    p, m = env
    rc, out, err = cli(m, "help")
    assert rc == 0
    for noun in ("api", "api operation", "product", "subscription", "user", "group", "named-value", "backend",
                 "policy-fragment", "version-set", "workspace", "logger", "gateway", "portal", "policy", "token",
                 "schema", "portal-page", "portal-template", "identity-provider",
                 "apply", "export", "report", "user-password", "user-invite", "probe"):
        assert "\n  %s " % noun in out, noun
    for word in ("add-api", "remove-api", "add-group", "remove-group", "add-member", "remove-member",
                 "approve", "reject", "suspend", "activate", "--url", "--token", "--ca-file", "-o table|json|yaml"):
        assert word in out, word
    rc, sub, err = cli(m, "help", "subscription")
    assert rc == 0 and "--scope" in sub and "--owner" in sub and "submitted" in sub
    rc, api, err = cli(m, "api", "--help")
    assert rc == 0 and "--service-url" in api and "--url-template" in api
    # every flag a create takes is in its help
    rc, prod, err = cli(m, "help", "product")
    for flag in ("--display-name", "--state", "--approval-required", "--subscriptions-limit"):
        assert flag in prod
    rc, out, err = cli(m, "help", "nothing")
    assert rc == 2
    r = subprocess.run([BIN, "--help"], capture_output=True, timeout=30)
    assert r.returncode == 0 and b"portico help" in r.stdout


def bash_complete(line):
    """What the completion script offers for the last word of line."""
    # as bash calls it: the line and the cursor at its end (COMP_WORDS as bash would split it)
    words = line.replace(":", " : ").replace("=", " = ").split(" ")
    script = ("source %s; complete -p portico; COMP_WORDS=(%s); COMP_CWORD=%d; COMP_LINE='%s'; "
              "COMP_POINT=%d; _portico; printf '%%s\\n' \"${COMPREPLY[@]}\"") % (
        COMPLETION, " ".join("'%s'" % w for w in words), len(words) - 1, line, len(line))
    e = dict(os.environ, PATH=os.path.dirname(BIN) + ":" + os.environ.get("PATH", ""))
    r = subprocess.run(["bash", "--norc", "-c", script], capture_output=True, timeout=30, env=e)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().split("\n")
    assert lines[0].startswith("complete ") and lines[0].endswith(" portico"), lines[0]
    return set(x for x in lines[1:] if x)


@pytest.mark.skipif(not shutil.which("bash"), reason="needs bash")
def test_bash_completion():
    words = bash_complete("portico ")
    assert {"api", "product", "subscription", "policy", "help", "--url"} <= words
    assert bash_complete("portico sub") == {"subscription"}
    assert {"list", "show", "create", "update", "delete", "operation", "import"} <= bash_complete("portico api ")
    assert bash_complete("portico subscription app") == {"approve"}
    assert {"--scope", "--owner", "--state"} <= bash_complete("portico subscription create s1 --")
    assert bash_complete("portico api create a1 --serv") == {"--service-url"}
    assert bash_complete("portico -o ") == {"table", "json", "yaml"}
    assert bash_complete("portico product add-") == {"add-api", "add-group"}
    assert {"--api", "--operation", "--product", "--workspace"} <= bash_complete("portico policy get --")
    # a URL's ':' and an option's '=' do not split the line into other words
    assert {"list", "show", "create"} <= bash_complete("portico --url http://127.0.0.1:8001 api ")
    assert bash_complete("portico --url=http://127.0.0.1:8001 subscription app") == {"approve"}


def test_policies_at_each_scope(env, backend, tmp_path):
    p, m = env
    m.ok("PUT", "products/p", {"displayName": "P", "state": "published", "subscriptionRequired": False})
    m.ok("PUT", "workspaces/w", {"displayName": "W"})
    doc = tmp_path / "p.yaml"
    scopes = [([], "policies/policy"), (["--api", "echo"], "apis/echo/policies/policy"),
              (["--api", "echo", "--operation", "get-item"], "apis/echo/operations/get-item/policies/policy"),
              (["--product", "p"], "products/p/policies/policy"),
              (["--workspace", "w"], "workspaces/w/policies/policy")]
    for i, (flags, path) in enumerate(scopes):
        doc.write_text("inbound:\n  - base\n  - set-header: {name: X-Scope-%d, value: \"v%d\"}\n" % (i, i))
        rc, out, err = cli(m, "policy", "set", *flags, "-f", str(doc))
        assert rc == 0, (flags, err)
        stored = m.ok("GET", path)
        assert stored["inbound"][1]["set-header"] == {"name": "X-Scope-%d" % i, "value": "v%d" % i}
        got = ok_json(m, "policy", "get", *flags)
        assert got == stored
        rc, out, err = cli(m, "policy", "get", *flags, "-o", "yaml")
        assert "name: X-Scope-%d" % i in out
    # the gateway applies the document set through the CLI
    assert gateway_call(p, "/echo/items/1")[0] == 200
    assert backend.last().header("X-Scope-1") == "v1" and backend.last().header("X-Scope-2") == "v2"
    # APIM's envelope goes through as the REST API takes it
    env_doc = tmp_path / "env.json"
    env_doc.write_text(json.dumps({"properties": {"format": "rawxml", "value":
                                   "<policies><inbound><base/><set-header name=\"X-Xml\" exists-action=\"override\">"
                                   "<value>x</value></set-header></inbound></policies>"}}))
    rc, out, err = cli(m, "policy", "set", "--api", "echo", "-f", str(env_doc))
    assert rc == 0, err
    assert gateway_call(p, "/echo/items/1")[0] == 200 and backend.last().header("X-Xml") == "x"
    # a document the server refuses: 1 with its message naming the place
    doc.write_text("inbound:\n  - set-header: {name: X, valu: y}\n")
    rc, out, err = cli(m, "policy", "set", "--api", "echo", "-f", str(doc))
    assert rc == 1 and "400" in err and "valu" in err
    for flags, path in scopes:
        rc, out, err = cli(m, "policy", "delete", *flags)
        assert rc == 0, (flags, err)
    assert gateway_call(p, "/echo/items/1")[0] == 200
    assert not [k for k, v in backend.last().headers if k.lower().startswith("x-scope")]


def test_subscription_default_state_follows_the_product(env, backend, tmp_path):
    p, m = env
    m.ok("PUT", "apis/keyed", {"path": "keyed", "serviceUrl": backend.url + "/base", "subscriptionRequired": True})
    m.ok("PUT", "apis/keyed/operations/all", {"method": "*", "urlTemplate": "/*"})
    m.ok("PUT", "products/gated", {"displayName": "Gated", "state": "published", "approvalRequired": True})
    m.ok("PUT", "products/open", {"displayName": "Open", "state": "published", "approvalRequired": False})
    for prod in ("gated", "open"):
        m.ok("PUT", "products/%s/apis/keyed" % prod)
    m.ok("PUT", "users/dev", {"email": "dev@example.com", "firstName": "D", "lastName": "V"})
    got = ok_json(m, "subscription", "create", "sg", "--scope", "/products/gated", "--owner", "dev")
    assert got["state"] == "submitted" and got["ownerId"] == "/users/dev"
    assert ok_json(m, "subscription", "create", "so", "--scope", "/products/open")["state"] == "active"
    assert ok_json(m, "subscription", "create", "sa", "--scope", "/apis/keyed")["state"] == "active"
    # --state wins over the product
    assert ok_json(m, "subscription", "create", "sx", "--scope", "/products/gated", "--state",
                   "active")["state"] == "active"
    # show and list display every state
    states = {s["id"]: s["state"] for s in ok_json(m, "subscription", "list")}
    assert states == {"sg": "submitted", "so": "active", "sa": "active", "sx": "active"}
    rc, out, err = cli(m, "subscription", "list", "-o", "table")
    assert [ln.split()[-1] for ln in out.strip().split("\n")[1:]] and "submitted" in out
    # the submitted key is refused at the gateway until approved; the open product's works
    key = ok_json(m, "subscription", "keys", "sg")["primaryKey"]
    assert gateway_call(p, "/keyed/x", key)[0] == 401
    assert gateway_call(p, "/keyed/x", m.keys("so")["primaryKey"])[0] == 200
    backend.clear()
    rc, out, err = cli(m, "subscription", "approve", "sg")
    assert rc == 0 and json.loads(out)["state"] == "active"
    assert gateway_call(p, "/keyed/x", key)[0] == 200 and backend.last().target == "/base/x"
    for verb, state, code in (("suspend", "suspended", 401), ("activate", "active", 200),
                              ("cancel", "cancelled", 401)):
        rc, out, err = cli(m, "subscription", verb, "sg")
        assert rc == 0 and m.ok("GET", "subscriptions/sg")["state"] == state
        assert gateway_call(p, "/keyed/x", key)[0] == code
    # the rest of the one rule: apply (the file's shape) -> active, REST PUT -> submitted
    doc = tmp_path / "subs.yaml"
    doc.write_text("subscriptions:\n  - id: from-apply\n    scope: /products/gated\n")
    assert cli(m, "apply", "-f", str(doc))[0] == 0
    assert ok_json(m, "subscription", "show", "from-apply")["state"] == "active"
    m.ok("PUT", "subscriptions/from-rest", {"scope": "/products/open"})
    assert ok_json(m, "subscription", "show", "from-rest")["state"] == "submitted"
    rc, out, err = cli(m, "export")
    assert rc == 0 and "id: from-rest" in out and "state: submitted" in out  # YAML, even in a pipe
    exported = {s["id"]: s.get("state") for s in ok_json(m, "export", "-o", "json")["subscriptions"]}
    assert exported["from-rest"] == "submitted" and exported["from-apply"] == "active"
    assert exported["sg"] == "cancelled"
    # an unknown product: the server's 404, nothing created
    rc, out, err = cli(m, "subscription", "create", "sz", "--scope", "/products/ghost")
    assert rc == 1 and "ghost" in err and m.call("GET", "subscriptions/sz")[0] == 404


def test_keys_and_regenerate_as_tables(env):
    p, m = env
    m.ok("PUT", "products/p", {"displayName": "P", "state": "published"})
    assert cli(m, "subscription", "create", "s1", "--scope", "/products/p")[0] == 0
    rc, out, err = cli(m, "subscription", "keys", "s1", "-o", "table")
    keys = dict(line.split() for line in out.strip().split("\n"))
    assert keys["primaryKey"] == m.keys("s1")["primaryKey"]
    rc, out, err = cli(m, "subscription", "regenerate", "s1", "--secondary", "-o", "table")
    assert out.split()[0] == "secondaryKey" and out.split()[1] == m.keys("s1")["secondaryKey"]
    assert out.split()[1] != keys["secondaryKey"]


def test_workspace_entities(env):
    p, m = env
    m.ok("PUT", "workspaces/w", {"displayName": "W"})
    ok_json(m, "api", "create", "wa", "--workspace", "w", "--path", "wa", "--service-url", "http://127.0.0.1:9")
    assert m.ok("GET", "workspaces/w/apis/wa")["path"] == "wa"
    assert [a["id"] for a in ok_json(m, "--workspace", "w", "api", "list")] == ["wa"]
    m.ok("PUT", "workspaces/w2", {"displayName": "W2"})
    assert ok_json(m, "api", "list", "--workspace", "w2") == []
    rc, out, err = cli(m, "api", "delete", "wa", "--workspace", "w2")
    assert rc == 1 and "404" in err and m.call("GET", "workspaces/w/apis/wa")[0] == 200
    # a command with no workspace form refuses the option: nothing is sent
    m.ok("PUT", "users/bob", {"email": "bob@example.com", "firstName": "B", "lastName": "O"})
    for args in (["user", "list"], ["user", "delete", "bob"], ["token", "list"], ["gateway", "list"],
                 ["logger", "list"], ["workspace", "list"], ["export"], ["apply", "-f", "-"],
                 ["user-invite", "bob"], ["portal", "publish"], ["gateway", "apis", "g"]):
        rc, out, err = cli(m, *(args + ["--workspace", "w"]))
        assert rc == 2 and "no workspace form" in err, (args, rc, err)
    assert m.call("GET", "users/bob")[0] == 200
    # api import and export go to the workspace's API
    spec = json.dumps({"openapi": "3.0.0", "info": {"title": "I", "version": "1"},
                       "paths": {"/x": {"get": {"operationId": "getx",
                                                "responses": {"200": {"description": "ok"}}}}}})
    m.ok("PUT", "apis/imp", {"path": "imp-svc", "serviceUrl": "http://127.0.0.1:9"})

    def imp(eid):
        return subprocess.run([BIN, "api", "import", "-", "--id", eid, "--path", "impw", "--workspace", "w"],
                              input=spec.encode(), capture_output=True, timeout=60,
                              env=dict(os.environ, PORTICO_URL=m.url, PORTICO_ADMIN_TOKEN=TOKEN))
    r = imp("imp")  # the workspace cannot take the service's id: the service-level API is untouched
    assert r.returncode == 1 and b"outside this workspace" in r.stderr, r.stderr
    assert m.ok("GET", "apis/imp")["path"] == "imp-svc"
    assert m.ok("GET", "apis/imp/operations")["value"] == []
    r = imp("impw")
    assert r.returncode == 0, r.stderr
    assert m.ok("GET", "workspaces/w/apis/impw")["path"] == "impw"
    rc, out, err = cli(m, "api", "export", "impw", "--workspace", "w")
    assert rc == 0 and "/x" in out, err


def test_portal_site(env):
    p, m = env
    got = ok_json(m, "portal", "update", "--title", "Dev Hub")
    assert got["title"] == "Dev Hub" and m.ok("GET", "portal/site")["title"] == "Dev Hub"
    assert ok_json(m, "portal", "show")["title"] == "Dev Hub"
    rc, out, err = cli(m, "portal", "delete")
    assert rc == 2
    # a mail template: changed, shown, and back to the built-in text by delete
    ok_json(m, "portal-template", "update", "invite", "--subject", "Join us")
    assert m.ok("GET", "portal/templates/invite")["subject"] == "Join us"
    rc, out, err = cli(m, "portal-template", "show", "invite", "-o", "table")
    assert rc == 0 and "\nsubject                Join us\n" in out
    assert cli(m, "portal-template", "delete", "invite")[0] == 0
    assert m.ok("GET", "portal/templates/invite")["builtIn"] is True
    assert "invite" in [t["id"] for t in ok_json(m, "portal-template", "list")]
    assert ok_json(m, "portal", "publish", "--comment", "first")["id"] >= 1
    assert m.ok("GET", "portal/revisions")["value"][0]["comment"] == "first"


def test_workspace_token_and_report(env):
    """A token made with the CLI for one workspace reads that workspace's
    report through --workspace, and is refused the service-level one."""
    p, m = env
    m.ok("PUT", "workspaces/w", {"displayName": "W"})
    secret = ok_json(m, "token", "create", "wr", "--role", "workspaceReader", "--workspace", "w")["token"]
    assert m.ok("GET", "tokens/wr")["workspace"] == "w"
    rc, out, err = cli(m, "report", "by-api", "--workspace", "w", "--token", secret)
    assert rc == 0, err
    assert json.loads(out)["value"] == []
    rc, out, err = cli(m, "report", "by-api", "--token", secret)
    assert rc == 1 and "403" in err
    # the token's own workspace view through the entity commands
    rc, out, err = cli(m, "api", "list", "--workspace", "w", "--token", secret)
    assert rc == 0 and json.loads(out) == []
    rc, out, err = cli(m, "api", "create", "nope", "--workspace", "w", "--token", secret, "--path", "nope",
                       "--service-url", "http://127.0.0.1:9")
    assert rc == 1 and "403" in err and m.call("GET", "workspaces/w/apis/nope")[0] == 404


def test_create_never_replaces(env, backend, tmp_path):
    """create sends If-None-Match: *: an existing id is refused with the
    server's message, and an active subscription on an approval product
    stays active (update is the verb that changes)."""
    p, m = env
    m.ok("PUT", "apis/keyed", {"path": "keyed", "serviceUrl": backend.url + "/base", "subscriptionRequired": True})
    m.ok("PUT", "apis/keyed/operations/all", {"method": "*", "urlTemplate": "/*"})
    m.ok("PUT", "products/gated", {"displayName": "Gated", "state": "published", "approvalRequired": True})
    m.ok("PUT", "products/gated/apis/keyed")
    m.ok("PUT", "subscriptions/s1", {"scope": "/products/gated", "state": "active", "displayName": "Old"})
    key = m.keys("s1")["primaryKey"]
    rc, out, err = cli(m, "subscription", "create", "s1", "--scope", "/products/gated", "--display-name", "New")
    assert rc == 1 and "412" in err and "already exists" in err and "update" in err, err
    got = m.ok("GET", "subscriptions/s1")
    assert got["state"] == "active" and got["displayName"] == "Old"
    assert gateway_call(p, "/keyed/x", key)[0] == 200
    rc, out, err = cli(m, "api", "create", "keyed", "--path", "other")
    assert rc == 1 and "412" in err and m.ok("GET", "apis/keyed")["path"] == "keyed"
    assert ok_json(m, "subscription", "update", "s1", "--display-name", "New")["displayName"] == "New"
    # APIM's long scope names the product as the server reads it; a scope it refuses is its to refuse
    long = "/subscriptions/x/resourceGroups/r/providers/Microsoft.ApiManagement/service/s/products/gated"
    assert ok_json(m, "subscription", "create", "s3", "--scope", long)["state"] == "submitted"
    rc, out, err = cli(m, "subscription", "create", "s2", "--scope", "/products/gated/")
    assert rc == 1 and "400" in err and m.call("GET", "subscriptions/s2")[0] == 404, err


def test_envelope_file_keeps_flags_and_defaults(env, tmp_path):
    p, m = env
    m.ok("PUT", "products/gated", {"displayName": "Gated", "state": "published", "approvalRequired": True})
    f = tmp_path / "env.json"
    f.write_text(json.dumps({"properties": {"scope": "/products/gated"}}))
    got = ok_json(m, "subscription", "create", "s8", "-f", str(f), "--display-name", "D")
    assert got["displayName"] == "D" and got["state"] == "submitted"
    f.write_text(json.dumps({"properties": {"serviceUrl": "http://127.0.0.1:9", "path": "from-file"}}))
    assert ok_json(m, "api", "create", "x", "-f", str(f), "--path", "from-flag")["path"] == "from-flag"
    assert m.ok("GET", "apis/x")["path"] == "from-flag"


def test_option_forms(env, tmp_path):
    p, m = env
    # --json and --output=json before the command are the CLI's, not the gateway's
    for args in (["--json", "api", "list"], ["--output=json", "api", "list"], ["--url=" + m.url, "api", "list"]):
        rc, out, err = cli(m, *args)
        assert rc == 0 and [a["id"] for a in json.loads(out)] == ["echo"], (args, err)
    rc, out, err = cli(m, "api", "list", "--json=yes")
    assert rc == 2 and "takes no value" in err
    # probe after an option is still probe: never exit 2
    rc, out, err = cli(m, "--ca-file", "/nonexistent", "probe", "http://127.0.0.1:%d/" % free_port())
    assert rc == 1 and "portico probe:" in err, (rc, err)
    rc, out, err = cli(m, "--url", m.url, "probe", "http://127.0.0.1:%d/" % free_port())
    assert rc == 1 and "portico probe:" in err, (rc, err)
    # `--` ends the options: an id that starts with '-'
    assert ok_json(m, "group", "create", "--display-name", "Dash", "--", "-g1")["id"] == "-g1"
    assert m.ok("GET", "groups/-g1")["displayName"] == "Dash"
    # ids that need encoding reach the server whole
    for gid in ("a~b.c", "x y", "q'r"):
        rc, out, err = cli(m, "group", "create", gid, "--display-name", "E")
        if rc == 0:
            assert ok_json(m, "group", "show", gid)["id"] == gid
        else:
            assert rc == 1 and "400" in err, err  # refused by the server's id rule, not mangled
    assert ok_json(m, "group", "show", "a~b.c")["id"] == "a~b.c"
    # the token from a file (or stdin), not the command line
    tf = tmp_path / "tok"
    tf.write_text(TOKEN + "\n")
    rc, out, err = cli(m, "api", "list", "--token-file", str(tf), token="wrong")
    assert rc == 0, err
    e = dict(os.environ, PORTICO_URL=m.url)
    e.pop("PORTICO_ADMIN_TOKEN", None)
    r = subprocess.run([BIN, "api", "list", "--token-file", "-"], input=TOKEN.encode(), capture_output=True,
                       timeout=60, env=e)
    assert r.returncode == 0, r.stderr
    tf.write_text("wrong\n")
    rc, out, err = cli(m, "api", "list", "--token-file", str(tf))
    assert rc == 1 and "401" in err
    # a password in the URL would show in every message: refused
    rc, out, err = cli(m, "api", "list", "--url", "http://admin:s3cret@127.0.0.1:1")
    assert rc == 2 and "s3cret" not in err
    # options a command does not use are refused, not ignored
    for args in (["api", "delete", "x", "--path", "y"], ["api", "list", "-f", "x"], ["export", "--secondary"],
                 ["api", "show", "echo", "--include-file"], ["subscription", "keys", "s", "--secondary"],
                 ["report", "by-api", "--top", "ten"], ["report", "by-api", "--api", "a" * 3000],
                 ["report", "by-api", "--api", "'" * 1100], ["api", "create", "z", "--set", b"k=\xff".decode(
                     "utf-8", "surrogateescape")], ["product", "create", "z", "--subscriptions-limit",
                                                    "99999999999999999999"]):
        rc, out, err = cli(m, *args)
        assert rc == 2, (args, rc, err)
    assert m.call("GET", "apis/z")[0] == 404 and m.call("GET", "products/z")[0] == 404


def test_help_lists_every_flag_the_completion_knows(env):
    p, m = env
    rc, top, err = cli(m, "help")
    for flag in subprocess.run([BIN, "__complete", ""], capture_output=True, text=True).stdout.split():
        if flag.startswith("-"):
            assert flag in top, flag
    assert "--workspace" in top and "--json" in top and "--token-file" in top
    nouns = [w for w in subprocess.run([BIN, "__complete"], capture_output=True, text=True).stdout.split()
             if not w.startswith("-")]
    for noun in nouns:
        if noun in ("help", "probe"):
            continue
        rc, text, err = cli(m, "help", noun)
        assert rc == 0, noun
        verb = {"policy": "get", "report": "by-api"}.get(noun, "create")
        flags = subprocess.run([BIN, "__complete", noun, verb, "X", "--"], capture_output=True,
                               text=True).stdout.split()
        for flag in flags:
            assert flag in text, (noun, flag)
    rc, sub, err = cli(m, "help", "subscription")
    assert "--state-comment" in sub and "create never replaces" in sub and "--set-string" in sub
    rc, rep, err = cli(m, "help", "report")
    assert "--workspace" in rep


def test_yaml_typing_and_other_entities(env, tmp_path):
    p, m = env
    f = tmp_path / "g.yaml"
    f.write_text('displayName: yes\ndescription: "123"\ntype: custom\n')
    got = ok_json(m, "group", "create", "gy", "-f", str(f))
    assert got["displayName"] == "yes" and got["description"] == "123"
    # --set reads JSON, --set-string always text
    got = ok_json(m, "group", "update", "gy", "--set-string", "description=123", "--set", "displayName=\"7\"")
    assert got["description"] == "123" and got["displayName"] == "7"
    rc, out, err = cli(m, "group", "update", "gy", "--set-string", "k" * 300 + "=v")
    assert rc == 2 and "KEY" in err
    f.write_text("displayName: G\ndescription: null\n")
    assert ok_json(m, "group", "update", "gy", "-f", str(f))["displayName"] == "G"
    # subscription update and delete; a portal template; an identity provider's refusal is the server's
    m.ok("PUT", "products/p", {"displayName": "P", "state": "published"})
    ok_json(m, "subscription", "create", "su", "--scope", "/products/p")
    assert ok_json(m, "subscription", "update", "su", "--state-comment", "ok")["stateComment"] == "ok"
    assert cli(m, "subscription", "delete", "su")[0] == 0 and m.call("GET", "subscriptions/su")[0] == 404
    assert cli(m, "portal-template", "create", "invite", "--subject", "S")[0] == 0
    assert m.ok("GET", "portal/templates/invite")["subject"] == "S"
    rc, out, err = cli(m, "portal-template", "create", "invite", "--subject", "T")
    assert rc == 1 and "412" in err and m.ok("GET", "portal/templates/invite")["subject"] == "S"
    rc, out, err = cli(m, "identity-provider", "create", "idp", "--issuer", "gopher://x", "--client-id", "c")
    assert rc == 1 and "400" in err and m.call("GET", "portal/identityProviders/idp")[0] == 404
