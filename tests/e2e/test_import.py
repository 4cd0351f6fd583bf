"""Importing API definitions, from the user's side: the management API (a
body, APIM's `properties` envelope, YAML, a link served by a test server),
the CLI, and `import:` in the configuration file; re-import that updates,
creates and deletes operations and keeps policies; export and the round
trip; bad definitions with their place, and nothing half-imported."""

import http.server
import json
import os
import subprocess
import threading

import pytest

from conftest import BIN, free_port
from mgmt_helpers import TOKEN, Mgmt, mgmt_config
from backends import stop_server

PETSTORE = {
    "openapi": "3.0.3",
    "info": {"title": "Petstore", "version": "1.0", "description": "Pets for everyone"},
    "servers": [{"url": "http://127.0.0.1:1/v1"}],
    "paths": {
        "/pets": {
            "get": {"operationId": "listPets", "summary": "List all pets",
                    "parameters": [{"name": "limit", "in": "query", "required": True,
                                    "schema": {"type": "integer", "maximum": 100}},
                                   {"name": "sid", "in": "cookie", "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "A page of pets", "content": {"application/json": {
                        "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Pet"}}}}}}},
            "post": {"operationId": "createPets", "summary": "Create a pet",
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/Pet"}}}},
                     "responses": {"201": {"description": "Created"}}},
        },
        "/pets/{petId}": {
            "get": {"operationId": "showPetById", "summary": "Info for a pet",
                    "parameters": [{"name": "petId", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "The pet", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Pet"},
                        "example": {"id": 1, "name": "Rex"}}}}}},
        },
    },
    "components": {"schemas": {"Pet": {"type": "object", "required": ["id", "name"], "properties": {
        "id": {"type": "integer", "format": "int64"}, "name": {"type": "string"}, "tag": {"type": "string"}}}}},
}


def ops_of(m, api):
    return sorted((o["id"], o["method"], o["urlTemplate"]) for o in m.ok("GET", "apis/%s/operations" % api)["value"])


@pytest.fixture
def world(backend, portico):
    cfg = mgmt_config(backend.url)
    cfg["management"]["importPrivateLinks"] = True  # the documents are served on 127.0.0.1
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    return p, Mgmt(p)


class DocServer:
    """Serves fixed documents on 127.0.0.1 (the -link formats fetch them)."""

    def __init__(self, docs):
        outer = self
        self.docs = docs
        self.hits = []

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits.append(self.path)
                body = outer.docs.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        stop_server(self.srv)


def test_import_openapi_body_builds_operations_that_route(world, backend):
    p, m = world
    st, _, out = m.call("PUT", "apis/pets", {"format": "openapi+json", "value": json.dumps(PETSTORE),
                                             "path": "pets", "serviceUrl": backend.url + "/v1",
                                             "subscriptionRequired": False})
    assert st == 201, out
    imp = out["import"]
    assert sorted(imp["created"]) == ["createpets", "listpets", "showpetbyid"], imp
    assert imp["updated"] == [] and imp["deleted"] == []
    assert any("cookie" in w and "sid" in w for w in imp["warnings"]), imp["warnings"]
    assert out["displayName"] == "Petstore" and out["serviceUrl"] == backend.url + "/v1"  # the body wins
    assert ops_of(m, "pets") == [("createpets", "POST", "/pets"), ("listpets", "GET", "/pets?limit={limit}"),
                                 ("showpetbyid", "GET", "/pets/{petId}")]
    show = m.ok("GET", "apis/pets/operations/showpetbyid")
    assert show["displayName"] == "Info for a pet"
    assert show["templateParameters"][0]["name"] == "petId"
    # the gateway routes by the imported templates
    st, _, _ = p.request("GET", "/pets/pets/7")
    assert st == 200 and backend.last().target == "/v1/pets/7"
    st, _, _ = p.request("GET", "/pets/pets?limit=5")
    assert st == 200 and backend.last().target == "/v1/pets?limit=5"
    st, _, _ = p.request("GET", "/pets/pets")  # the required query parameter is part of the template
    assert st == 404
    st, _, _ = p.request("DELETE", "/pets/pets/7")
    assert st == 404


def test_import_in_properties_envelope_and_yaml(world, backend):
    p, m = world
    yaml_doc = ("openapi: 3.0.0\ninfo: {title: Tiny, version: '1'}\npaths:\n  /ping:\n    get:\n"
                "      operationId: ping\n      responses: {'200': {description: pong}}\n")
    st, _, out = m.call("PUT", "apis/tiny", {"properties": {"format": "openapi", "value": yaml_doc, "path": "tiny",
                                                            "serviceUrl": backend.url, "subscriptionRequired": False}})
    assert st == 201, out
    assert ops_of(m, "tiny") == [("ping", "GET", "/ping")]
    assert p.request("GET", "/tiny/ping")[0] == 200


def test_import_by_link_and_fetch_failures(world, backend):
    p, m = world
    docs = DocServer({"/openapi.json": json.dumps(PETSTORE).encode()})
    try:
        st, _, out = m.call("PUT", "apis/linked", {"format": "openapi+json-link", "value": docs.url + "/openapi.json",
                                                   "path": "linked", "subscriptionRequired": False})
        assert st == 201, out
        assert docs.hits == ["/openapi.json"]
        # without serviceUrl in the body, the document's server is used
        assert out["serviceUrl"] == "http://127.0.0.1:1/v1"
        st, _, out = m.call("PUT", "apis/missing", {"format": "openapi-link", "value": docs.url + "/nope.yaml",
                                                    "path": "missing"})
        assert st == 400 and out["error"]["code"] == "ImportFetchFailed" and "404" in out["error"]["message"]
        st, _, out = m.call("PUT", "apis/missing", {"format": "openapi-link", "value": "http://127.0.0.1:%d/x"
                                                    % free_port(), "path": "missing"})
        assert st == 400 and out["error"]["code"] == "ImportFetchFailed", out
        assert m.call("GET", "apis/missing")[0] == 404
    finally:
        docs.close()


def test_links_to_private_addresses_are_refused_by_default(backend, portico):
    """As the attacker: an API developer's link may not make the gateway read
    its own network (loopback, private, link-local: a cloud's metadata
    service) unless management.importPrivateLinks allows it."""
    p = portico(mgmt_config(backend.url), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    docs = DocServer({"/openapi.json": json.dumps(PETSTORE).encode()})
    try:
        for url in (docs.url + "/openapi.json", "http://localhost:%d/openapi.json" % docs.srv.server_address[1],
                    "http://[::ffff:127.0.0.1]:%d/openapi.json" % docs.srv.server_address[1],
                    "http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/x.json"):
            st, _, out = m.call("PUT", "apis/ssrf", {"format": "openapi+json-link", "value": url, "path": "ssrf"})
            assert st == 400 and out["error"]["code"] == "ImportFetchFailed", (url, out)
            assert "private" in out["error"]["message"] and "importPrivateLinks" in out["error"]["message"], out
        assert docs.hits == []
        assert m.call("GET", "apis/ssrf")[0] == 404
    finally:
        docs.close()


def test_reimport_updates_creates_deletes_and_keeps_policies(world, backend):
    p, m = world
    m.ok("PUT", "apis/pets", {"format": "openapi+json", "value": json.dumps(PETSTORE), "path": "pets",
                              "serviceUrl": backend.url, "subscriptionRequired": False})
    policy = {"inbound": ["base", {"set-header": {"name": "X-Kept", "value": "yes"}}]}
    m.ok("PUT", "apis/pets/operations/showpetbyid/policies/policy", policy)
    v2 = json.loads(json.dumps(PETSTORE))
    v2["paths"]["/pets/{petId}"]["get"]["summary"] = "One pet, by id"
    del v2["paths"]["/pets"]["post"]
    v2["paths"]["/pets/{petId}"]["delete"] = {"operationId": "deletePet", "responses": {"204": {"description": "gone"}}}
    st, _, out = m.call("PUT", "apis/pets", {"format": "openapi+json", "value": json.dumps(v2), "path": "pets",
                                             "serviceUrl": backend.url, "subscriptionRequired": False})
    assert st == 200, out
    imp = out["import"]
    assert (imp["created"], imp["updated"], imp["deleted"], imp["unchanged"]) == (
        ["deletepet"], ["showpetbyid"], ["createpets"], ["listpets"]), imp
    assert m.ok("GET", "apis/pets/operations/showpetbyid")["displayName"] == "One pet, by id"
    assert m.call("GET", "apis/pets/operations/createpets")[0] == 404
    # the updated operation kept its policy, and it runs
    assert m.ok("GET", "apis/pets/operations/showpetbyid/policies/policy")["inbound"][1]["set-header"]["value"] == "yes"
    st, _, _ = p.request("GET", "/pets/pets/3")
    assert st == 200 and backend.last().header("X-Kept") == "yes"
    assert p.request("DELETE", "/pets/pets/3")[0] == 200
    assert p.request("POST", "/pets/pets", body=b"{}")[0] == 404


def test_export_round_trip_and_formats(world, backend):
    p, m = world
    m.ok("PUT", "apis/pets", {"format": "openapi+json", "value": json.dumps(PETSTORE), "path": "pets",
                              "serviceUrl": backend.url, "subscriptionRequired": False})
    st, h, doc = m.call("GET", "apis/pets?export=true&format=openapi+json")
    assert st == 200 and h["content-type"].startswith("application/json"), (st, h)
    assert doc["openapi"].startswith("3.0") and "/pets/{petId}" in doc["paths"]
    assert doc["components"]["schemas"]["Pet"]["required"] == ["id", "name"]
    st, _, out = m.call("PUT", "apis/again", {"format": "openapi+json", "value": json.dumps(doc), "path": "again",
                                              "serviceUrl": backend.url, "subscriptionRequired": False})
    assert st == 201, out
    assert ops_of(m, "again") == ops_of(m, "pets")
    st, h, text = m.call("GET", "apis/pets?export=true&format=openapi")
    assert st == 200 and "yaml" in h["content-type"] and "openapi:" in text, (h, text[:200])
    st, _, sw = m.call("GET", "apis/pets?export=true&format=swagger-json")
    assert st == 200 and sw["swagger"] == "2.0", sw
    # an API written by hand exports too
    st, _, hand = m.call("GET", "apis/echo?export=true&format=openapi+json")
    assert st == 200 and "/items/{id}" in hand["paths"], hand
    st, _, out = m.call("GET", "apis/pets?export=true&format=wsdl")
    assert st == 400 and out["error"]["code"] == "ExportFormatNotAvailable"
    st, _, out = m.call("GET", "apis/pets?export=true&format=pdf")
    assert st == 400


def test_bad_definitions_name_the_place_and_store_nothing(world, backend):
    p, m = world
    broken = json.loads(json.dumps(PETSTORE))
    broken["paths"]["/pets/{petId}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] = {
        "$ref": "#/components/schemas/Nope"}
    st, _, out = m.call("PUT", "apis/bad", {"format": "openapi+json", "value": json.dumps(broken), "path": "bad"})
    assert st == 400 and out["error"]["code"] == "InvalidDefinition", out
    assert "/paths/~1pets~1{petId}/get/responses/200" in out["error"]["message"] and "Nope" in out["error"]["message"]
    st, _, out = m.call("PUT", "apis/bad", {"format": "openapi+json", "value": '{"openapi": "3.0.0", "paths": {',
                                            "path": "bad"})
    assert st == 400 and "line 1" in out["error"]["message"], out
    st, _, out = m.call("PUT", "apis/bad", {"format": "openapi+xml", "value": "x", "path": "bad"})
    assert st == 400 and "format" in out["error"]["message"]
    st, _, out = m.call("PUT", "apis/bad", {"format": "openapi+json", "value": json.dumps(PETSTORE)})
    assert st == 400 and "path" in out["error"]["message"]
    st, _, out = m.call("PUT", "apis/bad", {"format": "openapi+json", "value": " " * (4 * 1024 * 1024 + 1),
                                            "path": "bad"})
    assert st == 400 and "4194304" in out["error"]["message"], out
    # a definition whose operations clash with another API's path is refused whole
    st, _, out = m.call("PUT", "apis/bad", {"format": "openapi+json", "value": json.dumps(PETSTORE), "path": "echo"})
    assert st in (400, 409), out
    assert m.call("GET", "apis/bad")[0] == 404
    assert [a["id"] for a in m.ok("GET", "apis")["value"]] == ["echo"]


def test_cli_import_and_export(world, backend, workdir):
    p, m = world
    path = os.path.join(workdir, "pets.json")
    with open(path, "w") as f:
        json.dump(PETSTORE, f)
    env = dict(os.environ, PORTICO_URL=m.url, PORTICO_ADMIN_TOKEN=TOKEN)
    r = subprocess.run([BIN, "api", "import", path, "--id", "pets", "--path", "pets", "--service-url",
                        backend.url, "-o", "table"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "imported pets (openapi+json) at /pets: 3 created, 0 updated, 0 deleted" in r.stdout, r.stdout
    assert "warning:" in r.stderr and "sid" in r.stderr
    r = subprocess.run([BIN, "api", "export", "pets", "--format", "openapi+json"], capture_output=True, text=True,
                       env=env, timeout=30)
    assert r.returncode == 0 and json.loads(r.stdout)["info"]["title"] == "Petstore", r.stderr
    r = subprocess.run([BIN, "api", "import", path, "--id", "x"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 1 and "path" in r.stderr
    with open(path, "w") as f:
        f.write("just words")
    r = subprocess.run([BIN, "api", "import", path, "--id", "pets", "--path", "pets"], capture_output=True,
                       text=True, env=env, timeout=30)
    assert r.returncode == 1 and "cannot be told" in r.stderr


def test_configuration_file_import(backend, portico, workdir):
    with open(os.path.join(workdir, "pets.json"), "w") as f:
        json.dump(PETSTORE, f)
    cfg = {"listen": ["127.0.0.1:%d" % free_port()], "workers": 1, "apis": [{
        "id": "pets", "path": "pets", "serviceUrl": backend.url, "subscriptionRequired": False,
        "import": {"format": "openapi+json", "file": "pets.json"},
        "operations": [{"id": "showpetbyid", "policies": {"inbound": [
            "base", {"set-header": {"name": "X-From-File", "value": "1"}}]}}]}]}
    p = portico(cfg)
    st, _, _ = p.request("GET", "/pets/pets/9")
    assert st == 200 and backend.last().header("X-From-File") == "1"
    assert p.request("GET", "/pets/pets?limit=1")[0] == 200
    # a definition that breaks refuses the reload and the old one keeps serving
    with open(os.path.join(workdir, "pets.json"), "w") as f:
        f.write('{"openapi": "3.0.0", "paths": {"/x": {"get": {"responses": {"200": {"$ref": "#/nope"}}}}}}')
    assert p.reload() is False
    assert "pets.json" in p.log_text() or "import" in p.log_text()
    assert p.request("GET", "/pets/pets/9")[0] == 200
    # portico -t names the import's place
    r = subprocess.run([BIN, "-t", "-c", p.config_path], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and "portico.yaml:" in r.stderr and "import" in r.stderr, r.stderr


def test_wsdl_by_body_with_selector_and_odata_by_link(world, backend):
    """The other formats through the management API: a WSDL in the body with
    wsdlSelector (SOAP 1.2 port; the WSDL comes back on export), an OData
    $metadata by link (the service URL is where the metadata is)."""
    from test_import_xml import ENVELOPE, METADATA, WSDL
    p, m = world
    wsdl = WSDL % {"style": "document", "url": backend.url}
    st, _, out = m.call("PUT", "apis/orders", {"format": "wsdl", "value": wsdl, "path": "orders",
                                               "subscriptionRequired": False,
                                               "wsdlSelector": {"wsdlServiceName": "OrderService",
                                                                "wsdlEndpointName": "Soap12Port"}})
    assert st == 201, out
    assert out["apiType"] == "soap" and out["serviceUrl"] == backend.url + "/orders12.svc", out
    assert sorted(out["import"]["created"]) == ["getorder", "placeorder"], out["import"]
    st, _, _ = p.request("POST", "/orders", body=ENVELOPE.encode() if isinstance(ENVELOPE, str) else ENVELOPE,
                         headers={"Content-Type": 'application/soap+xml; action="urn:example:orders/PlaceOrder"'})
    assert st == 200 and backend.last().target == "/orders12.svc"
    st, h, text = m.call("GET", "apis/orders?export=true&format=wsdl")
    assert st == 200 and "xml" in h["content-type"] and "OrderService" in text
    docs = DocServer({"/svc/$metadata": METADATA.encode()})
    try:
        st, _, out = m.call("PUT", "apis/people", {"format": "odata-link", "value": docs.url + "/svc/$metadata",
                                                   "path": "people", "subscriptionRequired": False})
        assert st == 201, out
        assert out["serviceUrl"] == docs.url + "/svc", out
        assert len(out["import"]["created"]) > 3, out["import"]
    finally:
        docs.close()


def test_api_schemas_one_by_one(world, backend):
    """/apis/{id}/schemas as APIM has it: the imported components are listed,
    a schema is added, replaced and deleted on its own (the API's operations
    stay), and a schema that is not valid is refused with its reason."""
    p, m = world
    m.ok("PUT", "apis/pets", {"format": "openapi+json", "value": json.dumps(PETSTORE), "path": "pets",
                              "serviceUrl": backend.url, "subscriptionRequired": False})
    listed = m.ok("GET", "apis/pets/schemas")["value"]
    assert [s["id"] for s in listed] == ["openapi"]
    assert "Pet" in m.ok("GET", "apis/pets/schemas/openapi")["document"]["components"]["schemas"]
    xsd = '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:element name="a" type="xs:int"/></xs:schema>'
    st, _, out = m.call("PUT", "apis/pets/schemas/order",
                        {"properties": {"contentType": "application/vnd.ms-azure-apim.xsd+xml", "value": xsd}})
    assert st == 201 and out["value"] == xsd, out
    st, _, out = m.call("PUT", "apis/pets/schemas/order", {"contentType": "application/schema+json",
                                                          "document": {"type": "object"}})
    assert st == 200 and out["document"] == {"type": "object"}, out
    assert sorted(s["id"] for s in m.ok("GET", "apis/pets/schemas")["value"]) == ["openapi", "order"]
    st, _, out = m.call("PUT", "apis/pets/schemas/bad", {"contentType": "application/schema+json", "value": "x"})
    assert st == 400 and "document" in json.dumps(out), out
    assert m.call("GET", "apis/pets/schemas/bad")[0] == 404
    assert m.call("DELETE", "apis/pets/schemas/order")[0] == 204
    assert m.call("GET", "apis/pets/schemas/order")[0] == 404
    assert m.call("DELETE", "apis/pets/schemas/order")[0] == 404
    assert len(ops_of(m, "pets")) == 3
    assert p.request("GET", "/pets/pets/1")[0] == 200
    assert m.call("GET", "apis/nope/schemas")[0] == 404
