"""API types: a WebSocket API gets its onHandshake operation (the upgrade is
tunnelled, handshake policies run, the policies APIM refuses there are
configuration errors at their line), and a GraphQL API written without
operations answers POST / and GET / (both forwarded)."""

import json
import socket
import subprocess

from backends import ws_frame, ws_read_frame
from conftest import BIN, free_port


def ws_config(backend, policies=None):
    api = {"id": "chat", "path": "chat", "apiType": "websocket",
           "serviceUrl": backend.url.replace("http://", "ws://") + "/ws", "subscriptionRequired": False}
    if policies:
        api["policies"] = policies
    return {"listen": ["127.0.0.1:%d" % free_port()], "workers": 1, "apis": [api]}


def upgrade(port, path="/chat"):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(("GET %s HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" % path).encode())
    f = s.makefile("rb")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        c = f.read(1)
        assert c, head
        head += c
    return s, f, head


def test_websocket_api_tunnels_through_its_handshake_operation(backend, portico):
    p = portico(ws_config(backend, {"inbound": [
        {"set-header": {"name": "X-Handshake", "value": "@(context.operation.id)"}}]}))
    s, f, head = upgrade(p.port)
    try:
        assert head.startswith(b"HTTP/1.1 101"), head
        s.sendall(ws_frame(1, b"hello", mask=True))
        op, data = ws_read_frame(f)
        assert (op, data) == (1, b"hello")
    finally:
        s.close()
    got = backend.last()
    assert got.target == "/ws", got.target
    assert got.header("X-Handshake") == "onHandshake"


def test_websocket_api_lists_its_implicit_operation(backend, portico):
    cfg = ws_config(backend)
    cfg["management"] = {"listen": "127.0.0.1:%d" % free_port(), "adminToken": "t" * 32}
    p = portico(cfg)
    import urllib.request
    req = urllib.request.Request("http://%s/management/apis/chat/operations" % cfg["management"]["listen"],
                                 headers={"Authorization": "Bearer " + "t" * 32})
    ops = json.load(urllib.request.urlopen(req, timeout=5))["value"]
    assert [(o["id"], o["method"], o["urlTemplate"]) for o in ops] == [("onHandshake", "GET", "/")]


def test_websocket_handshake_refuses_what_apim_refuses(backend, workdir):
    cfg_path = workdir + "/ws.yaml"
    with open(cfg_path, "w") as f:
        f.write("listen: [127.0.0.1:%d]\n"
                "apis:\n"
                "- id: chat\n"
                "  path: chat\n"
                "  apiType: websocket\n"
                "  serviceUrl: %s\n"
                "  policies:\n"
                "    inbound:\n"
                "    - base\n"
                "    - cors: {allowed-origins: ['*']}\n"
                "    - set-body: {value: x}\n" % (free_port(), backend.url.replace("http://", "wss://")))
    r = subprocess.run([BIN, "-t", "-c", cfg_path], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert "ws.yaml:10:7: api 'chat' › inbound[1] cors: cors cannot run on a WebSocket API's handshake" in r.stderr, r.stderr
    assert "ws.yaml:11:7: api 'chat' › inbound[2] set-body: set-body cannot run on a WebSocket API's handshake" in r.stderr, r.stderr


def test_graphql_api_without_operations_answers_post_and_get(backend, portico):
    cfg = {"listen": ["127.0.0.1:%d" % free_port()], "workers": 1,
           "apis": [{"id": "gql", "path": "graphql", "apiType": "graphql", "serviceUrl": backend.url + "/gql",
                     "subscriptionRequired": False}]}
    p = portico(cfg)
    st, _, _ = p.request("POST", "/graphql", body=b'{"query": "{ me { id } }"}',
                         headers={"Content-Type": "application/json"})
    assert st == 200
    got = backend.last()
    assert (got.method, got.target, got.body) == ("POST", "/gql", b'{"query": "{ me { id } }"}')
    st, _, _ = p.request("GET", "/graphql?query=%7Bme%7Bid%7D%7D")
    assert st == 200 and backend.last().method == "GET"
    st, _, _ = p.request("PUT", "/graphql")
    assert st == 404  # only the two operations


def test_mock_response_answers_a_sample_of_the_schema_without_an_example(backend, portico):
    """mock-response with a response that has a schema and no example: the
    body is a sample built from the schema ($ref followed, example and enum
    values used, required properties present); an example still wins."""
    components = {"components": {"schemas": {
        "Pet": {"type": "object", "required": ["id", "name"],
                "properties": {"id": {"type": "integer"}, "name": {"type": "string", "example": "Rex"},
                               "tag": {"$ref": "#/components/schemas/Tag"}}},
        "Tag": {"type": "string", "enum": ["dog", "cat"]}}}}
    mock = {"inbound": [{"mock-response": {"status-code": 200}}]}
    cfg = {"listen": ["127.0.0.1:%d" % free_port()], "workers": 1, "apis": [{
        "id": "pets", "path": "pets", "subscriptionRequired": False,
        "schemas": [{"id": "c", "contentType": "application/vnd.oai.openapi.components+json",
                     "document": components}],
        "operations": [
            {"id": "get", "method": "GET", "urlTemplate": "/pets/{id}", "policies": mock,
             "responses": [{"statusCode": 200, "representations": [
                 {"contentType": "application/json", "schemaId": "c", "typeName": "Pet"}]}]},
            {"id": "list", "method": "GET", "urlTemplate": "/pets", "policies": mock,
             "responses": [{"statusCode": 200, "representations": [
                 {"contentType": "application/json", "schema": {"type": "array", "items": {
                     "$ref": "#/components/schemas/Pet"}},
                  "examples": {"default": {"value": [{"id": 7, "name": "given"}]}}}]}]},
        ]}]}
    p = portico(cfg)
    st, h, body = p.request("GET", "/pets/pets/1")
    assert st == 200 and h.get("content-type") == "application/json", (st, h)
    assert json.loads(body) == {"id": 0, "name": "Rex", "tag": "dog"}
    st, _, body = p.request("GET", "/pets/pets")
    assert st == 200 and json.loads(body) == [{"id": 7, "name": "given"}]
    assert backend.requests == []
