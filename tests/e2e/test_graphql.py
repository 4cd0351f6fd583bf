"""GraphQL APIs end to end: validate-graphql-request in front of a small
GraphQL-ish backend, and a graphql-ws subscription through the WebSocket
tunnel.

The backend answers every POST/GET with fixed JSON and records what it got,
so each test can say whether the gateway called it and with which query.

Two groups:
- policy tests with the API's schema absent (the plugin then checks syntax,
  size, depth, field count and authorize rules by the types the document
  names): they run against any build;
- schema tests: the API carries its SDL in `schemas` (apiType graphql).  They
  need the API model's apiType/schemas and SDK 1.5's schema_definition; when
  the configuration reader does not accept them yet, they SKIP saying so.
"""

import json
import os
import socket
import subprocess
import threading
import urllib.parse

import pytest

from backends import read_request, ws_accept_key, ws_frame, ws_read_frame
from conftest import BIN, free_port, to_yaml

SDL = """
type Query { me: User users(first: Int = 10): [User!]! secret: String hello: String }
type User { id: ID! name: String secret: String posts: [Post] }
type Post { title: String author: User }
type Mutation { addUser(name: String!): User deleteUser(id: ID!): Boolean }
type Subscription { ticks: Int }
"""


class GraphQLBackend:
    """A GraphQL-ish backend: answers {"data": {"ok": true}} (or what a test
    sets), records (method, target, headers, body); /graphql/ws speaks
    graphql-transport-ws: ack, then three `next` ticks and `complete` for a
    subscribe."""

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        self.answer = b'{"data":{"ok":true}}'
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        self.ws_messages = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        f = c.makefile("rb")
        try:
            while True:
                try:
                    req = read_request(f)
                except Exception:
                    return
                if req is None:
                    return
                with self.lock:
                    self.requests.append(req)
                if req.header("Upgrade", "").lower() == "websocket":
                    self._graphql_ws(c, f, req)
                    return
                body = self.answer
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                          % (len(body), body))
        finally:
            c.close()

    def _graphql_ws(self, c, f, req):
        proto = req.header("Sec-WebSocket-Protocol", "")
        c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: %s\r\n\r\n"
                   % (ws_accept_key(req.header("Sec-WebSocket-Key", "")), proto)).encode())
        while True:
            try:
                op, data = ws_read_frame(f)
            except Exception:
                return
            if op == 8:
                c.sendall(ws_frame(8, data))
                return
            msg = json.loads(data)
            with self.lock:
                self.ws_messages.append(msg)
            if msg.get("type") == "connection_init":
                c.sendall(ws_frame(1, json.dumps({"type": "connection_ack"}).encode()))
            elif msg.get("type") == "subscribe":
                for i in range(3):
                    c.sendall(ws_frame(1, json.dumps({"id": msg["id"], "type": "next",
                                                      "payload": {"data": {"ticks": i}}}).encode()))
                c.sendall(ws_frame(1, json.dumps({"id": msg["id"], "type": "complete"}).encode()))

    def received(self):
        with self.lock:
            return list(self.requests)

    def close(self):
        self.closed = True
        self.sock.close()


@pytest.fixture
def gql_backend():
    b = GraphQLBackend()
    yield b
    b.close()


def gql_config(backend, policy=None, schema=False, outbound=None):
    api = {
        "id": "gql",
        "path": "gql",
        "serviceUrl": backend.url + "/graphql",
        "subscriptionRequired": False,
        "operations": [
            {"id": "graphql-post", "method": "POST", "urlTemplate": "/"},
            {"id": "graphql-get", "method": "GET", "urlTemplate": "/"},
            {"id": "graphql-ws", "method": "GET", "urlTemplate": "/ws"},
        ],
    }
    if schema:
        api["apiType"] = "graphql"
        api["schemas"] = [{"id": "graphql", "contentType": "application/vnd.ms-azure-apim.graphql.schema",
                           "value": SDL}]
    if policy is not None:
        api["policies"] = {"inbound": ["base", {"validate-graphql-request": policy}]}
        if outbound:
            api["policies"]["outbound"] = ["base"] + outbound
    return {"listen": ["127.0.0.1:%d" % free_port()], "workers": 2, "apis": [api]}


def post(p, query, operation_name=None, variables=None, ctype="application/json"):
    if ctype == "application/json":
        body = {"query": query}
        if operation_name is not None:
            body["operationName"] = operation_name
        if variables is not None:
            body["variables"] = variables
        data = json.dumps(body).encode()
    else:
        data = query.encode()
    status, headers, out = p.request("POST", "/gql/", body=data, headers={"Content-Type": ctype})
    return status, headers, json.loads(out) if out else None


def errors_of(resp):
    assert resp is not None and "errors" in resp, resp
    assert "data" not in resp, resp  # a request error has no data block
    return [(e["extensions"]["code"], e["message"]) for e in resp["errors"]]


POLICY = {"max-size": 2048, "max-depth": 3, "error-variable-name": "gqlerr"}
ERR_HEADER = [{"set-header": {"name": "X-GraphQL-Errors", "exists-action": "override",
                              "value": "@(context.variables.gqlerr or 'none')"}}]


def test_valid_query_is_forwarded(gql_backend, portico):
    p = portico(gql_config(gql_backend, dict(POLICY)))
    status, _, resp = post(p, "query Me($n: Int) { users(first: $n) { name } }", "Me", {"n": 0.1})
    assert status == 200 and resp == {"data": {"ok": True}}
    got = gql_backend.received()
    assert len(got) == 1 and got[0].method == "POST" and got[0].target == "/graphql/"
    assert json.loads(got[0].body) == {"query": "query Me($n: Int) { users(first: $n) { name } }",
                                       "operationName": "Me", "variables": {"n": 0.1}}
    # untouched: the body is forwarded byte for byte when nothing is removed
    assert b'"variables": {"n": 0.1}' in got[0].body


def test_too_deep_is_a_request_error_and_the_backend_is_not_called(gql_backend, portico):
    p = portico(gql_config(gql_backend, dict(POLICY)))
    status, headers, resp = post(p, "{ me { posts { author { name } } } }")
    assert status == 200 and headers["content-type"].startswith("application/json")
    (code, msg), = errors_of(resp)
    assert code == "QUERY_TOO_DEEP" and "4 levels deep" in msg and "limit of 3" in msg
    assert gql_backend.received() == []
    # depth 3 passes
    assert post(p, "{ me { posts { title } } }")[2] == {"data": {"ok": True}}


def test_too_large(gql_backend, portico):
    p = portico(gql_config(gql_backend, dict(POLICY, **{"max-size": 200})))
    status, _, resp = post(p, "{ me { %s } }" % " ".join("f%d" % i for i in range(100)))
    (code, msg), = errors_of(resp)
    assert status == 200 and code == "REQUEST_TOO_LARGE" and "limit of 200 bytes" in msg
    assert gql_backend.received() == []


def test_syntax_error_has_a_position(gql_backend, portico):
    p = portico(gql_config(gql_backend, dict(POLICY)))
    _, _, resp = post(p, "{ me {\n  name(: 1) } }")
    (code, msg), = errors_of(resp)
    assert code == "GRAPHQL_PARSE_FAILED" and "syntax error" in msg
    assert resp["errors"][0]["locations"] == [{"line": 2, "column": 8}]
    assert gql_backend.received() == []


def test_reject_rule(gql_backend, portico):
    policy = dict(POLICY, authorize={"rule": [{"path": "/Mutation/deleteUser", "action": "reject"}]})
    p = portico(gql_config(gql_backend, policy, outbound=ERR_HEADER))
    _, _, resp = post(p, 'mutation { addUser(name: "x") { id } deleteUser(id: "1") }')
    (code, msg), = errors_of(resp)
    assert code == "FORBIDDEN" and "Mutation.deleteUser" in msg
    assert gql_backend.received() == []
    status, headers, resp = post(p, 'mutation { addUser(name: "x") { id } }')
    assert resp == {"data": {"ok": True}} and headers["x-graphql-errors"] == "none"


def test_remove_rule_strips_the_field_from_what_the_backend_gets(gql_backend, portico):
    policy = dict(POLICY, authorize={"rule": [
        {"path": "/Query/secret", "action": "remove"},
        {"path": "/User/secret", "action": "remove"},
        {"path": "/User/*", "action": "allow"},
    ]})
    p = portico(gql_config(gql_backend, policy, outbound=ERR_HEADER))
    q = "query Q { hello secret me { ... on User { name secret } } }"
    status, headers, resp = post(p, q, "Q", {"a": [1, 2]})
    assert status == 200 and resp == {"data": {"ok": True}}
    (got,) = gql_backend.received()
    body = json.loads(got.body)
    assert body["query"] == "query Q{hello me{...on User{name}}}"
    assert body["operationName"] == "Q" and body["variables"] == {"a": [1, 2]}
    errors = json.loads(headers["x-graphql-errors"])
    assert [e["extensions"]["code"] for e in errors] == ["FIELD_REMOVED", "FIELD_REMOVED"]
    assert "Query.secret" in errors[0]["message"] and "User.secret" in errors[1]["message"]
    # everything removed: the gateway answers itself
    status, _, resp = post(p, "{ secret }")
    assert resp["data"] is None and resp["errors"][0]["extensions"]["code"] == "FIELD_REMOVED"
    assert len(gql_backend.received()) == 1


def test_introspection_rule(gql_backend, portico):
    policy = dict(POLICY, authorize={"rule": [{"path": "/__*", "action": "reject"}]})
    p = portico(gql_config(gql_backend, policy))
    for q in ("{ __schema { types { name } } }", '{ __type(name: "User") { name } }',
              "query M { me { name } } query I { __schema { queryType { name } } }"):
        _, _, resp = post(p, q, "I" if "query I" in q else None)
        (code, _), = errors_of(resp)
        assert code == "FORBIDDEN", q
    assert gql_backend.received() == []
    # __typename is not introspection
    assert post(p, "{ __typename me { __typename name } }")[2] == {"data": {"ok": True}}


def test_get_query(gql_backend, portico):
    policy = dict(POLICY, authorize={"rule": [{"path": "/Query/secret", "action": "remove"}]})
    p = portico(gql_config(gql_backend, policy))
    qs = urllib.parse.urlencode({"query": "{ me { name } }", "x": "1"})
    status, _, out = p.request("GET", "/gql/?" + qs)
    assert status == 200 and json.loads(out) == {"data": {"ok": True}}
    got = gql_backend.received()[-1]
    assert got.method == "GET" and got.target == "/graphql/?" + qs
    # removed from a GET: the query parameter is rewritten, the others kept
    qs = urllib.parse.urlencode({"x": "1", "query": "{ me { name } secret }"})
    status, _, out = p.request("GET", "/gql/?" + qs)
    assert status == 200
    target = gql_backend.received()[-1].target
    params = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
    assert params == {"x": ["1"], "query": ["{me{name}}"]}
    # too deep by GET
    qs = urllib.parse.urlencode({"query": "{ a { b { c { d } } } }"})
    status, _, out = p.request("GET", "/gql/?" + qs)
    (code, _), = errors_of(json.loads(out))
    assert code == "QUERY_TOO_DEEP"


def test_application_graphql_body(gql_backend, portico):
    policy = dict(POLICY, authorize={"rule": [{"path": "/Query/secret", "action": "remove"}]})
    p = portico(gql_config(gql_backend, policy))
    status, _, resp = post(p, "{ secret hello }", ctype="application/graphql")
    assert resp == {"data": {"ok": True}}
    assert gql_backend.received()[-1].body == b"{hello}"


def test_bad_requests(gql_backend, portico):
    p = portico(gql_config(gql_backend, dict(POLICY)))
    for body, ctype, code in [
        (b"{not json", "application/json", "BAD_REQUEST"),
        (b'[{"query": "{a}"}]', "application/json", "BAD_REQUEST"),
        (b'{"variables": {}}', "application/json", "BAD_REQUEST"),
        (b'{"query": 5}', "application/json", "BAD_REQUEST"),
        (b"{a}", "text/plain", "BAD_REQUEST"),
        (b'{"query": "query A { a } query B { b }"}', "application/json", "GRAPHQL_VALIDATION_FAILED"),
        (b'{"query": "query($v: Int) { a }"}', "application/json", "GRAPHQL_VALIDATION_FAILED"),
        (b'{"query": "{ ...F }"}', "application/json", "GRAPHQL_VALIDATION_FAILED"),
        # what the backend could read differently from what was checked
        (b'{"query": "{ a }", "query": "{ b }"}', "application/json", "BAD_REQUEST"),
        (b'{"query": "{ a }", "operationName": null, "operationName": "X"}', "application/json", "BAD_REQUEST"),
    ]:
        status, _, out = p.request("POST", "/gql/", body=body, headers={"Content-Type": ctype})
        (got, _), = errors_of(json.loads(out))
        assert status == 200 and got == code, body
    for method, target, body in [("POST", "/gql/?query=%7Bb%7D", b'{"query": "{ a }"}'),
                                 ("GET", "/gql/?query=%7Ba%7D&query=%7Bb%7D", None),
                                 ("GET", "/gql/?query=%7Ba%7D&operationName=A&operationName=B", None)]:
        status, _, out = p.request(method, target, body=body, headers={"Content-Type": "application/json"})
        (got, _), = errors_of(json.loads(out))
        assert status == 200 and got == "BAD_REQUEST", target
    assert gql_backend.received() == []


def test_more_than_250_fields(gql_backend, portico):
    p = portico(gql_config(gql_backend, dict(POLICY, **{"max-size": 102400})))
    q = "{ %s }" % " ".join("f%d" % i for i in range(251))
    (code, _), = errors_of(post(p, q)[2])
    assert code == "TOO_MANY_FIELDS"
    # a fragment counts at each spread
    q = "{ a { ...F } b { ...F } } fragment F on T { %s }" % " ".join("f%d" % i for i in range(125))
    (code, _), = errors_of(post(p, q)[2])
    assert code == "TOO_MANY_FIELDS"
    assert gql_backend.received() == []


def test_configuration_errors(gql_backend, workdir):
    for policy, where in [
        ({"max-size": 102401}, "max-size"),
        ({"max-size": 100, "max-depth": 0}, "max-depth"),
        ({}, "max-size"),
        ({"max-size": 100, "authorize": {"rule": [{"path": "Query/x"}]}}, "path"),
        ({"max-size": 100, "authorize": {"rule": [{"path": "/Query/x", "action": "maybe"}]}}, "action"),
    ]:
        path = os.path.join(workdir, "bad.yaml")
        with open(path, "w") as f:
            f.write(to_yaml(gql_config(gql_backend, policy)) + "\n")
        r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, timeout=30, cwd=workdir)
        out = (r.stdout + r.stderr).decode()
        assert r.returncode != 0 and where in out, (policy, out)


# ------------------------------------------------------------ with the schema

def schema_supported(gql_backend, workdir):
    path = os.path.join(workdir, "probe.yaml")
    with open(path, "w") as f:
        f.write(to_yaml(gql_config(gql_backend, dict(POLICY), schema=True)) + "\n")
    r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, timeout=30, cwd=workdir)
    return r.returncode == 0, (r.stdout + r.stderr).decode()


@pytest.fixture
def schema_gateway(gql_backend, portico, workdir):
    ok, why = schema_supported(gql_backend, workdir)
    if not ok:
        pytest.skip("needs the API model's apiType/schemas (the lead's API definitions): portico -t says: "
                    + why.strip().splitlines()[-1][:200])

    def make(policy, **kw):
        return portico(gql_config(gql_backend, policy, schema=True, **kw))
    return make


def test_schema_validation(gql_backend, schema_gateway):
    p = schema_gateway(dict(POLICY))
    assert post(p, "{ me { name posts { title } } }")[2] == {"data": {"ok": True}}
    for q, needle in [
        ("{ me { nme } }", "cannot query field nme on type User"),
        ("{ users(frist: 1) { id } }", "unknown argument frist"),
        ('mutation { addUser { id } }', "required argument name"),
        ("{ me }", "must have a selection"),
        ("{ hello { x } }", "must not have a selection"),
        ("{ me { ... on Post { title } } }", None),
        ("{ me { ...F } } fragment F on Nope { id }", "unknown type Nope"),
    ]:
        _, _, resp = post(p, q)
        if needle is None:
            continue
        (code, msg), = errors_of(resp)
        assert code == "GRAPHQL_VALIDATION_FAILED" and needle in msg, (q, msg)
    # introspection is valid against any schema
    assert post(p, "{ __schema { queryType { name } } __typename }")[2] == {"data": {"ok": True}}


def test_schema_types_in_rules(gql_backend, schema_gateway):
    policy = dict(POLICY, authorize={"rule": [{"path": "/User/secret", "action": "remove"}]})
    p = schema_gateway(policy)
    assert post(p, "{ me { name secret } users { secret id } secret }")[2] == {"data": {"ok": True}}
    body = json.loads(gql_backend.received()[-1].body)
    assert body["query"] == "{me{name}users{id}secret}"


def test_workers_share_the_schema_and_a_reload_brings_the_new_one(gql_backend, schema_gateway):
    """Two workers, eight clients at once: the schema is parsed once per generation and read by all;
    after a reload that adds a field, the field is valid."""
    p = schema_gateway(dict(POLICY))
    results = []

    def client(k):
        for i in range(25):
            if (i + k) % 2:
                results.append(post(p, "{ me { name } }")[2] == {"data": {"ok": True}})
            else:
                (code, _), = errors_of(post(p, "{ me { age } }")[2])
                results.append(code == "GRAPHQL_VALIDATION_FAILED")
    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 200 and all(results)
    cfg = dict(p.config)
    cfg["apis"][0]["schemas"][0]["value"] = SDL.replace("type User {", "type User { age: Int")
    assert p.reload(cfg)
    assert post(p, "{ me { age } }")[2] == {"data": {"ok": True}}


# ------------------------------------------------------------ graphql-ws

def test_graphql_ws_subscription_is_tunnelled(gql_backend, portico):
    """A graphql-transport-ws subscription goes through the WebSocket tunnel
    (upgrades pass through; validate-graphql-request applies to HTTP
    requests, not to the messages inside the tunnel)."""
    p = portico(gql_config(gql_backend, dict(POLICY)))
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    try:
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        s.sendall(("GET /gql/ws HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n" % key).encode())
        f = s.makefile("rb")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += f.read(1)
        lines = head.decode().split("\r\n")
        assert lines[0].startswith("HTTP/1.1 101")
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        assert headers["sec-websocket-accept"] == ws_accept_key(key)
        assert headers["sec-websocket-protocol"] == "graphql-transport-ws"

        def send(msg):
            s.sendall(ws_frame(1, json.dumps(msg).encode(), mask=True))

        def recv():
            op, data = ws_read_frame(f)
            assert op == 1
            return json.loads(data)
        send({"type": "connection_init", "payload": {}})
        assert recv() == {"type": "connection_ack"}
        send({"id": "1", "type": "subscribe", "payload": {"query": "subscription { ticks }"}})
        assert [recv() for _ in range(4)] == [
            {"id": "1", "type": "next", "payload": {"data": {"ticks": 0}}},
            {"id": "1", "type": "next", "payload": {"data": {"ticks": 1}}},
            {"id": "1", "type": "next", "payload": {"data": {"ticks": 2}}},
            {"id": "1", "type": "complete"},
        ]
        s.sendall(ws_frame(8, b"\x03\xe8", mask=True))
        assert ws_read_frame(f)[0] == 8
    finally:
        s.close()
    req = gql_backend.received()[0]
    assert req.target == "/graphql/ws" and req.header("Sec-WebSocket-Protocol") == "graphql-transport-ws"
    assert gql_backend.ws_messages[1]["payload"]["query"] == "subscription { ticks }"


# ------------------------------------------------------------ import

INTROSPECTION = {"data": {"__schema": {
    "queryType": {"name": "Query"}, "mutationType": None, "subscriptionType": None,
    "types": [
        {"kind": "OBJECT", "name": "Query", "description": "the root", "fields": [
            {"name": "me", "args": [], "type": {"kind": "OBJECT", "name": "User", "ofType": None},
             "isDeprecated": False, "deprecationReason": None},
            {"name": "hello", "args": [{"name": "to", "type": {"kind": "NON_NULL", "name": None,
                                                               "ofType": {"kind": "SCALAR", "name": "String"}},
                                        "defaultValue": None}],
             "type": {"kind": "SCALAR", "name": "String"}, "isDeprecated": False}],
         "interfaces": []},
        {"kind": "OBJECT", "name": "User", "fields": [
            {"name": "name", "args": [], "type": {"kind": "SCALAR", "name": "String"}},
            {"name": "secret", "args": [], "type": {"kind": "SCALAR", "name": "String"}}], "interfaces": []},
        {"kind": "SCALAR", "name": "String"},
        {"kind": "OBJECT", "name": "__Schema", "fields": []},
    ],
    "directives": [{"name": "include", "locations": ["FIELD"], "args": []}]}}}


def test_import_sdl_from_the_configuration_file(gql_backend, portico, workdir):
    """apis[].import with format graphql builds the schema the policy validates against."""
    with open(os.path.join(workdir, "schema.graphql"), "w") as f:
        f.write(SDL)
    cfg = gql_config(gql_backend, dict(POLICY))
    api = cfg["apis"][0]
    del api["operations"]
    api["import"] = {"format": "graphql", "file": "schema.graphql"}
    p = portico(cfg)
    assert post(p, "{ me { name } }")[2] == {"data": {"ok": True}}
    (code, msg), = errors_of(post(p, "{ me { nme } }")[2])
    assert code == "GRAPHQL_VALIDATION_FAILED" and "nme" in msg
    # the introspection result of a backend, saved to a file, imports the same way
    with open(os.path.join(workdir, "schema.json"), "w") as f:
        json.dump(INTROSPECTION, f)
    api["import"] = {"format": "graphql", "file": "schema.json"}
    assert p.reload(cfg)
    (code, msg), = errors_of(post(p, "{ hello }")[2])
    assert code == "GRAPHQL_VALIDATION_FAILED" and "required argument to" in msg
    assert post(p, '{ hello(to: "x") me { secret } }')[2] == {"data": {"ok": True}}


def test_graphql_link_import_through_the_management_api(gql_backend, portico):
    """format graphql-link: the gateway POSTs the introspection query to the backend and stores the SDL."""
    from mgmt_helpers import TOKEN, Mgmt
    cfg = {"listen": ["127.0.0.1:%d" % free_port()], "workers": 1,
           "management": {"listen": "127.0.0.1:%d" % free_port(), "importPrivateLinks": True}}
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    gql_backend.answer = json.dumps(INTROSPECTION).encode()
    st, _, api = m.call("PUT", "apis/linked", {"format": "graphql-link", "value": gql_backend.url + "/graphql",
                                               "path": "linked", "subscriptionRequired": False})
    assert st in (200, 201), api
    sent = json.loads(gql_backend.received()[0].body)
    assert sent["query"].startswith("query IntrospectionQuery")
    st, _, got = m.call("GET", "apis/linked")
    assert got["apiType"] == "graphql" and got["serviceUrl"] == gql_backend.url + "/graphql"
    (schema,) = got["schemas"]
    assert schema["id"] == "graphql" and schema["contentType"] == "application/vnd.ms-azure-apim.graphql.schema"
    assert "type Query {" in schema["value"] and "type User {" in schema["value"]
    assert '"""\nthe root\n"""' in schema["value"]
    # a backend that refuses introspection: the import fails with its message
    gql_backend.answer = b'{"errors":[{"message":"introspection is disabled"}]}'
    st, _, err = m.call("PUT", "apis/other", {"format": "graphql-link", "value": gql_backend.url + "/graphql",
                                              "path": "other"})
    assert st == 400 and "introspection is disabled" in json.dumps(err), err
