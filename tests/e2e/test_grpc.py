"""gRPC APIs from the user's side: a .proto imported through the management
API, the CLI and the configuration file (apiType grpc, one POST operation per
rpc, the streaming kind on it, the file kept and exported), bad files refused
with line:column, workspaces kept apart; the gateway's own refusals as a real
gRPC client (Python grpcio over h2c) reads them, grpc-timeout as the backend
call's deadline; the portal's reference page and the .proto download."""

import os
import re
import subprocess

import grpc
import pytest
import yaml

from conftest import BIN, free_port
from mgmt_helpers import TOKEN, Mgmt, mgmt_config
from portal_helpers import Client

PROTO = """// Route guide, as a provider writes it.
syntax = "proto3";

package routeguide.v1;

import "google/protobuf/empty.proto";

// A point on the map.
message Point {
  int32 latitude = 1;
  int32 longitude = 2;
}

message Rectangle { Point lo = 1; Point hi = 2; }

message Feature {
  string name = 1;
  Point location = 2;
  map<string, string> labels = 3;
  oneof kind { string road = 4; int64 river_id = 5; }
  message Detail { repeated string notes = 1; }
}

message RouteSummary { int32 point_count = 1; }

// Interface exported by the server.
service RouteGuide {
  // Obtains the feature at a given position.
  rpc GetFeature(Point) returns (Feature) {}
  // Lists the features in a rectangle.
  rpc ListFeatures(Rectangle) returns (stream Feature);
  rpc RecordRoute(stream Point) returns (RouteSummary);
  rpc RouteChat(stream Point) returns (stream Feature) { option deprecated = true; }
}
"""

SERVICE = "routeguide.v1.RouteGuide"
KEY = "grpc-test-key-000000000001"


def ops_of(m, api, token=None):
    return sorted((o["id"], o["method"], o["urlTemplate"])
                  for o in m.ok("GET", "apis/%s/operations" % api, token=token)["value"])


def http1_backend(cfg):
    """These tests watch what reaches the HTTP/1.1 echo backend: a grpc API's calls go over HTTP/2
    unless forward-request says otherwise (test_grpc_forward.py has a real gRPC backend)."""
    cfg["policies"] = {"backend": [{"forward-request": {"http-version": "1"}}]}
    return cfg


def h2c_listen(cfg):
    port = int(cfg["listen"][0].rsplit(":", 1)[1])
    cfg["listen"] = [{"address": "127.0.0.1:%d" % port, "protocols": ["http/1.1", "h2"]}]
    return port


@pytest.fixture
def world(backend, portico):
    cfg = http1_backend(mgmt_config(backend.url))
    h2c_listen(cfg)
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    return p, Mgmt(p)


# ------------------------------------------------------------------ import

def test_import_by_rest_builds_grpc_operations_that_route(world, backend):
    p, m = world
    st, _, out = m.call("PUT", "apis/routes", {"properties": {
        "format": "grpc", "value": PROTO, "path": "routes", "serviceUrl": backend.url,
        "subscriptionRequired": False}})
    assert st == 201, out
    imp = out["import"]
    assert imp["format"] == "grpc"
    assert sorted(imp["created"]) == ["RouteGuide-GetFeature", "RouteGuide-ListFeatures",
                                      "RouteGuide-RecordRoute", "RouteGuide-RouteChat"], imp
    assert any("google/protobuf/empty.proto" in w for w in imp["warnings"]), imp["warnings"]
    api = m.ok("GET", "apis/routes")
    assert api["apiType"] == "grpc" and api["displayName"] == "routeguide.v1", api
    assert api["description"] == "Interface exported by the server."
    assert ops_of(m, "routes") == [
        ("RouteGuide-GetFeature", "POST", "/%s/GetFeature" % SERVICE),
        ("RouteGuide-ListFeatures", "POST", "/%s/ListFeatures" % SERVICE),
        ("RouteGuide-RecordRoute", "POST", "/%s/RecordRoute" % SERVICE),
        ("RouteGuide-RouteChat", "POST", "/%s/RouteChat" % SERVICE)]
    op = m.ok("GET", "apis/routes/operations/RouteGuide-ListFeatures")
    assert op["displayName"] == "ListFeatures" and op["description"] == "Lists the features in a rectangle."
    assert op["grpc"] == {"service": SERVICE, "method": "ListFeatures", "requestType": "routeguide.v1.Rectangle",
                          "responseType": "routeguide.v1.Feature", "clientStreaming": False,
                          "serverStreaming": True, "kind": "server-streaming"}, op
    kinds = {o["displayName"]: o["grpc"]["kind"] for o in m.ok("GET", "apis/routes/operations")["value"]}
    assert kinds == {"GetFeature": "unary", "ListFeatures": "server-streaming",
                     "RecordRoute": "client-streaming", "RouteChat": "bidi-streaming"}
    # the operations route: a POST to the method's path reaches the backend there
    backend.clear()
    st, _, _ = p.request("POST", "/routes/%s/GetFeature" % SERVICE, body=b"\0\0\0\0\0",
                         headers={"Content-Type": "application/grpc"})
    assert backend.last().target == "/%s/GetFeature" % SERVICE and backend.last().method == "POST", st
    # another method, or a GET, is no operation of the API: a gRPC error for a gRPC client
    st, h, body = p.request("POST", "/routes/%s/Nope" % SERVICE, body=b"",
                            headers={"Content-Type": "application/grpc"})
    assert (st, h["content-type"], h["grpc-status"], body) == (200, "application/grpc", "12", b""), (st, h)


def test_export_round_trip_and_reimport(world, backend):
    p, m = world
    m.ok("PUT", "apis/routes", {"format": "grpc", "value": PROTO, "path": "routes", "serviceUrl": backend.url,
                                "subscriptionRequired": False})
    st, h, text = m.call("GET", "apis/routes?export=true&format=grpc")
    assert st == 200 and h["content-type"] == "text/plain; charset=utf-8", h
    assert text == PROTO
    # the exported file imports again to the same operations
    m.ok("PUT", "apis/again", {"format": "grpc", "value": text, "path": "again", "serviceUrl": backend.url})
    assert ops_of(m, "again") == ops_of(m, "routes")
    # an OpenAPI export of a gRPC API has its operations too; a WSDL one does not exist
    st, _, doc = m.call("GET", "apis/routes?export=true&format=openapi+json")
    assert st == 200 and "/%s/GetFeature" % SERVICE in doc["paths"], doc
    st, _, out = m.call("GET", "apis/again?export=true&format=wsdl")
    assert st == 400 and out["error"]["code"] == "ExportFormatNotAvailable"
    # re-import: a policy on a kept operation stays, a gone rpc's operation goes, a new one comes
    pol = {"inbound": ["base", {"set-header": {"name": "X-Kept", "value": "1"}}]}
    m.ok("PUT", "apis/routes/operations/RouteGuide-GetFeature/policies/policy", pol)
    v2 = PROTO.replace("  rpc RecordRoute(stream Point) returns (RouteSummary);\n", "").replace(
        "service RouteGuide {", "service RouteGuide {\n  rpc Ping(Point) returns (Point);")
    st, _, out = m.call("PUT", "apis/routes", {"format": "grpc", "value": v2, "path": "routes",
                                               "serviceUrl": backend.url})
    assert st == 200, out
    assert out["import"]["created"] == ["RouteGuide-Ping"] and out["import"]["deleted"] == [
        "RouteGuide-RecordRoute"], out["import"]
    assert [o[0] for o in ops_of(m, "routes")] == ["RouteGuide-GetFeature", "RouteGuide-ListFeatures",
                                                  "RouteGuide-Ping", "RouteGuide-RouteChat"]
    st, _, text = m.call("GET", "apis/routes?export=true&format=grpc")
    assert text == v2
    backend.clear()
    p.request("POST", "/routes/%s/GetFeature" % SERVICE, body=b"", headers={"Content-Type": "application/grpc"})
    assert backend.last().header("X-Kept") == "1"


def test_bad_proto_files_name_the_place_and_store_nothing(world):
    p, m = world
    cases = [
        ('syntax = "proto3";\nmessage A {\n  int32 x = ;\n}\nservice S { rpc M(A) returns (A); }\n',
         "3:13: expected a field number, found ';'"),
        ("message A {}\nservice S {\n  rpc M(A) returns (A);\n  rpc M(A) returns (A);\n}\n",
         "4:7: rpc 'M' is defined twice in this service"),
        ("message A {}\nservice S { rpc M(Nope) returns (A); }\n", "message type 'Nope' is not defined"),
        ("message A { int32 x = 1; }\n", "the file defines no service"),
        # hostile: nested past the bound, a huge option aggregate, more than the size limit
        ("message A { " * 200 + "}" * 200 + "\nservice S { rpc M(A) returns (A); }", "nested more than 64 deep"),
        ("option x = " + "{ a " * 100000 + "}" * 100000 + ";", "nested more than 64 deep"),
    ]
    for text, want in cases:
        st, _, out = m.call("PUT", "apis/bad", {"format": "grpc", "value": text, "path": "bad"})
        assert st == 400 and out["error"]["code"] == "InvalidDefinition", (st, out)
        assert want in out["error"]["message"], out
    st, _, out = m.call("PUT", "apis/bad", {"format": "grpc", "value": "//" + "x" * (4 * 1024 * 1024),
                                            "path": "bad"})
    assert st == 400 and "4194304" in out["error"]["message"], out
    assert m.call("GET", "apis/bad")[0] == 404
    assert [a["id"] for a in m.ok("GET", "apis")["value"]] == ["echo"]
    # the gateway still serves
    assert p.request("GET", "/echo/items/1")[0] == 200


def test_cli_import_and_export(world, backend, workdir):
    p, m = world
    path = os.path.join(workdir, "routes.proto")
    with open(path, "w") as f:
        f.write(PROTO)
    env = dict(os.environ, PORTICO_URL=m.url, PORTICO_ADMIN_TOKEN=TOKEN)
    r = subprocess.run([BIN, "api", "import", path, "--id", "routes", "--path", "routes", "--service-url",
                        backend.url, "-o", "table"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "imported routes (grpc) at /routes: 4 created, 0 updated, 0 deleted" in r.stdout, r.stdout
    assert "google/protobuf/empty.proto" in r.stderr
    r = subprocess.run([BIN, "api", "export", "routes", "--format", "grpc"], capture_output=True, text=True,
                       env=env, timeout=30)
    assert r.returncode == 0 and r.stdout == PROTO, r.stderr
    # a .proto with an error: the CLI says where, and nothing is stored
    with open(path, "w") as f:
        f.write("service S {\n  rpc M(A) returns A;\n}\n")
    r = subprocess.run([BIN, "api", "import", path, "--id", "broken", "--path", "broken"], capture_output=True,
                       text=True, env=env, timeout=30)
    assert r.returncode == 1 and "2:20: expected '('" in r.stderr, r.stderr
    assert m.call("GET", "apis/broken")[0] == 404


def test_configuration_file_import(backend, portico, workdir):
    cfg = {"listen": ["127.0.0.1:%d" % free_port()], "workers": 1, "apis": [{
        "id": "routes", "path": "routes", "serviceUrl": backend.url, "subscriptionRequired": False,
        "import": {"format": "grpc", "value": PROTO},
        "operations": [{"id": "RouteGuide-GetFeature", "policies": {"inbound": [
            "base", {"set-header": {"name": "X-From-File", "value": "1"}}]}}]}]}
    http1_backend(cfg)
    p = portico(cfg)
    backend.clear()
    st, _, _ = p.request("POST", "/routes/%s/GetFeature" % SERVICE, body=b"",
                         headers={"Content-Type": "application/grpc"})
    assert st == 200 and backend.last().header("X-From-File") == "1"
    # a broken file is named with its place by portico -t
    cfg["apis"][0]["import"]["value"] = "service S { rpc M(A) returns (A); }"
    path = os.path.join(workdir, "broken.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and "broken.yaml:" in r.stderr and "import" in r.stderr, r.stderr
    assert "message type 'A' is not defined" in r.stderr, r.stderr
    # an operation's grpc map written by hand is checked too
    cfg["apis"][0].pop("import")
    cfg["apis"][0]["operations"] = [{"id": "m", "method": "POST", "urlTemplate": "/S/M",
                                     "grpc": {"service": "S", "kind": "sideways"}}]
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and "grpc.kind is one of unary" in r.stderr, r.stderr
    cfg["apis"][0]["operations"][0]["grpc"] = {"service": "S", "kind": "unary", "serverStreaming": False,
                                               "streams": True}
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and "unknown key 'streams' in grpc" in r.stderr, r.stderr
    cfg["apis"][0]["operations"][0]["grpc"].pop("streams")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr


def test_a_workspace_member_cannot_import_into_another_scope(backend, portico):
    cfg = mgmt_config(backend.url)
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    for w in ("wsa", "wsb"):
        m.ok("PUT", "workspaces/" + w, {"displayName": w.upper()})
    m.ok("PUT", "workspaces/wsb/apis/bapi", {"path": "bapi", "serviceUrl": backend.url})
    tok = m.ok("PUT", "tokens/a-dev", {"role": "apiDeveloper", "workspace": "wsa"})["token"]
    body = {"format": "grpc", "value": PROTO, "path": "stolen", "serviceUrl": backend.url}
    # into the other workspace, over its API, or at the service level: refused, nothing written
    for path in ("workspaces/wsb/apis/bapi", "workspaces/wsb/apis/new", "apis/echo", "apis/new"):
        st, _, out = m.call("PUT", path, body, token=tok)
        assert st in (403, 404), (path, st, out)
    assert m.ok("GET", "workspaces/wsb/apis/bapi").get("apiType", "http") == "http"
    assert m.call("GET", "workspaces/wsb/apis/new")[0] == 404 and m.call("GET", "apis/new")[0] == 404
    assert m.ok("GET", "apis/echo").get("apiType", "http") == "http"
    # an API path of another scope cannot be taken by importing
    st, _, _ = m.call("PUT", "workspaces/wsa/apis/mine", dict(body, path="bapi"), token=tok)
    assert st in (400, 409)
    # its own workspace works
    st, _, out = m.call("PUT", "workspaces/wsa/apis/mine", body, token=tok)
    assert st == 201 and out["apiType"] == "grpc" and out["workspace"] == "wsa", out


# ---------------------------------------------------------------- refusals

def refusals_config(backend):
    imp = {"format": "grpc", "value": PROTO}
    cfg = http1_backend(mgmt_config(backend.url))
    port = h2c_listen(cfg)

    def api(id_, path, **kw):
        a = {"id": id_, "path": path, "serviceUrl": backend.url, "import": imp}
        a.update(kw)
        return a
    cfg["apis"] += [
        api("routes", "", subscriptionRequired=True),  # an empty suffix: the methods' own paths
        api("limited", "limited", subscriptionRequired=False,
            policies={"inbound": ["base", {"rate-limit-by-key": {"calls": 1, "renewal-period": 300,
                                                          "counter-key": "everyone"}}]}),
        api("mocked", "mocked", subscriptionRequired=False,
            policies={"inbound": [{"mock-response": {"status-code": 200}}]}),
        api("down", "down", subscriptionRequired=False, serviceUrl="http://127.0.0.1:%d" % free_port()),
        api("slow", "slow", subscriptionRequired=False,
            policies={"inbound": ["base", {"rewrite-uri": {"template": "/sleep/5000"}}]}),
        {"id": "plain", "path": "plain", "serviceUrl": backend.url, "subscriptionRequired": True,
         "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]},
        api("failing", "failing", subscriptionRequired=False,
            policies={"inbound": [{"return-response": {"set-status": {"code": 403, "reason": "Forbidden"}}}]}),
    ]
    cfg["subscriptions"] = [{"id": "s1", "scope": "/apis/routes", "state": "active", "primaryKey": KEY}]
    return cfg, port


@pytest.fixture
def gw(backend, portico):
    cfg, port = refusals_config(backend)
    p = portico(cfg)
    ch = grpc.insecure_channel("127.0.0.1:%d" % port)
    yield p, ch
    ch.close()


def unary(ch, method, metadata=None, timeout=10):
    call = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
    return call(b"\x08\x01", metadata=metadata, timeout=timeout)


def rpc_error(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value


def test_refusals_reach_a_grpc_client_as_grpc_errors(gw, backend):
    p, ch = gw
    m = "/%s/GetFeature" % SERVICE
    backend.clear()
    # no key: UNAUTHENTICATED with the gateway's message
    e = rpc_error(lambda: unary(ch, m))
    assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e
    assert "missing subscription key" in e.details(), e.details()
    e = rpc_error(lambda: unary(ch, m, metadata=[("ocp-apim-subscription-key", "wrong")]))
    assert e.code() == grpc.StatusCode.UNAUTHENTICATED and "invalid subscription key" in e.details()
    assert backend.last() is None  # refused before the backend
    # a method the API does not have, or no API at all: UNIMPLEMENTED
    e = rpc_error(lambda: unary(ch, "/%s/Nope" % SERVICE, metadata=[("ocp-apim-subscription-key", KEY)]))
    assert e.code() == grpc.StatusCode.UNIMPLEMENTED, e
    e = rpc_error(lambda: unary(ch, "/nowhere.Svc/Method"))
    assert e.code() == grpc.StatusCode.UNIMPLEMENTED, e
    # rate limit: the second call is RESOURCE_EXHAUSTED
    lm = "/limited/%s/GetFeature" % SERVICE
    first = rpc_error(lambda: unary(ch, lm))  # reaches the HTTP/1.1 echo backend: not a gRPC answer
    assert first.code() != grpc.StatusCode.RESOURCE_EXHAUSTED
    e = rpc_error(lambda: unary(ch, lm))
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "Rate limit" in e.details(), (e.code(), e.details())
    # a backend that is not there: UNAVAILABLE
    e = rpc_error(lambda: unary(ch, "/down/%s/GetFeature" % SERVICE))
    assert e.code() == grpc.StatusCode.UNAVAILABLE, (e.code(), e.details())
    # return-response 403 of a policy: PERMISSION_DENIED
    e = rpc_error(lambda: unary(ch, "/failing/%s/GetFeature" % SERVICE))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED, (e.code(), e.details())
    # mock-response: no message can be made up, the call ends OK with no messages
    stream = ch.unary_stream("/mocked/%s/ListFeatures" % SERVICE, request_serializer=None,
                             response_deserializer=None)
    assert list(stream(b"", timeout=10)) == []
    # the access log keeps the refusal's HTTP status and reason
    log = p.access_entries(wait_for=8)
    mine = [(e["status"], e.get("reason")) for e in log if e.get("api") == "routes" or "routes" in str(e)]
    assert (401, "SubscriptionKeyNotFound") in mine and (401, "SubscriptionKeyInvalid") in mine, log[:3]
    assert any(e["status"] == 429 for e in log), log


def test_grpc_timeout_is_the_backend_calls_deadline(gw, backend):
    p, ch = gw
    e = rpc_error(lambda: unary(ch, "/slow/%s/GetFeature" % SERVICE, timeout=0.5))
    assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # the gateway itself gives up on the backend at the client's deadline (not the backend's 5 s):
    # an HTTP/1.1 client that does not cancel sees the gateway's answer
    st, h, body = p.request("POST", "/slow/%s/GetFeature" % SERVICE, body=b"",
                            headers={"Content-Type": "application/grpc", "grpc-timeout": "300m"}, timeout=10)
    assert (st, h.get("grpc-status"), body) == (200, "4", b""), (st, h)
    entries = p.access_entries(wait_for=2, timeout=10)
    assert entries[-1]["status"] == 504 and entries[-1]["api"] == "slow", entries[-1]
    assert entries[-1]["backendTime"] < 4000, entries[-1]
    # a malformed grpc-timeout is ignored: the call goes on and is answered by the backend
    backend.clear()
    st, h, _ = p.request("POST", "/limited/%s/ListFeatures" % SERVICE, body=b"",
                         headers={"Content-Type": "application/grpc", "grpc-timeout": "soon"})
    assert st == 200 and "grpc-status" not in h and backend.last().header("grpc-timeout") == "soon", h


def test_http_clients_of_other_apis_keep_json_errors(gw):
    p, _ = gw
    st, h, body = p.request("GET", "/plain/x")
    assert st == 401 and h["content-type"] == "application/json" and b"missing subscription key" in body, (st, h)
    assert "grpc-status" not in h
    # an HTTP/1.1 client of the gRPC API gets the gRPC shape (its API says so)...
    st, h, body = p.request("POST", "/%s/GetFeature" % SERVICE, body=b"")
    assert (st, h["content-type"], h["grpc-status"], body) == (200, "application/grpc", "16", b""), (st, h)
    assert h["grpc-message"].startswith("Access denied due to missing subscription key.")
    # ...but what is not a gRPC call (no gRPC call is a GET or a preflight) keeps the JSON shape
    st, h, body = p.request("GET", "/%s/GetFeature" % SERVICE)
    assert st == 404 and h["content-type"] == "application/json" and "grpc-status" not in h, (st, h)
    st, h, _ = p.request("OPTIONS", "/%s/GetFeature" % SERVICE, headers={
        "Origin": "http://a.example", "Access-Control-Request-Method": "POST"})
    assert "grpc-status" not in h, h
    # ...and a gRPC content type makes a refusal of another API one too
    st, h, _ = p.request("POST", "/plain/x", body=b"", headers={"Content-Type": "application/grpc+proto"})
    assert (st, h["grpc-status"]) == (200, "16")


# ------------------------------------------------------------------ portal

def test_portal_shows_services_and_downloads_the_proto(backend, portico):
    cfg = mgmt_config(backend.url)
    gw_addr = cfg["listen"][0]
    cfg["apis"].append({"id": "routes", "path": "routes", "serviceUrl": backend.url,
                        "import": {"format": "grpc", "value": PROTO}})
    evil = ('package x;\n// <script>alert(1)</script> [a](javascript:alert(2))\n'
            'service S { // <img src=x onerror=alert(3)>\n rpc M(A) returns (stream A); }\nmessage A {}\n')
    cfg["apis"].append({"id": "evil", "path": "evil", "serviceUrl": backend.url,
                        "import": {"format": "grpc", "value": evil}})
    cfg["products"] = [{"id": "public", "displayName": "Public", "state": "published",
                        "apis": ["echo", "routes", "evil"],
                        "groups": ["guests", "developers"]}]
    cfg["portal"] = {"listen": "127.0.0.1:%d" % free_port(), "gatewayUrl": "http://%s" % gw_addr}
    p = portico(cfg)
    c = Client(p.portal_url)
    st, _, page = c.get("/apis/routes")
    assert st == 200
    svc = page[page.index('<section class="grpc-services">'):]
    svc = svc[:svc.index("</section>")]
    assert SERVICE in svc
    rows = [[re.sub(r"<[^>]+>", "", td) for td in re.findall(r"<td>(.*?)</td>", tr)]
            for tr in re.findall(r"<tr><td>.*?</tr>", svc)]
    assert rows == [["GetFeature", "unary", "routeguide.v1.Point", "routeguide.v1.Feature"],
                    ["ListFeatures", "server-streaming", "routeguide.v1.Rectangle", "stream routeguide.v1.Feature"],
                    ["RecordRoute", "client-streaming", "stream routeguide.v1.Point", "routeguide.v1.RouteSummary"],
                    ["RouteChat", "bidi-streaming", "stream routeguide.v1.Point", "stream routeguide.v1.Feature"]]
    assert "<dt>Type</dt><dd>grpc</dd>" in page
    # the download list offers the .proto, and it is the file
    hrefs = sorted(re.findall(r'<a class="download" href="([^"]+)"', page))
    assert "/apis/routes/definition?format=proto" in hrefs, hrefs
    st, h, body = c.get("/apis/routes/definition?format=proto")
    assert st == 200 and body == PROTO
    assert h["content-type"] == "text/plain; charset=utf-8"
    assert h["content-disposition"] == 'attachment; filename="routes.proto"'
    # an API without a .proto has no such download
    assert c.get("/apis/echo/definition?format=proto")[0] == 404
    st, _, echo = c.get("/apis/echo")
    assert st == 200 and "format=proto" not in echo
    # comments of a hostile file go through the portal's markdown sanitising: no script, no handler
    st, _, ev = c.get("/apis/evil")
    assert st == 200 and "<script>alert" not in ev and "onerror" not in ev and 'href="javascript:' not in ev
    assert "alert(3)" not in ev
    # the operation page tells the kind and says why there is no console
    st, _, op = c.get("/apis/routes/operations/RouteGuide-ListFeatures")
    assert st == 200 and 'class="grpc-no-console"' in op and 'id="console"' not in op
    assert '<dd class="grpc-kind">server-streaming</dd>' in op
