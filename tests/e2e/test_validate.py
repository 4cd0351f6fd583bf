"""The content-validation plugin (plugins/validate): validate-content,
validate-parameters, validate-headers and validate-status-code against an API
definition written by hand in the configuration (operations with
templateParameters, request, responses; an API schema and a service-level
schema), with the real binary and a backend that records what it got.

For every policy and action: a valid message passes (the backend gets it),
prevent refuses (400 inbound with APIM's message, the backend not called;
502 with the neutral message outbound), detect lets it through and leaves the
record in the errors variable (echoed here by a set-header expression),
ignore lets it through silently."""

import json
import socket

import pytest

from conftest import CALL_MARK, basic_config, check_call_mark, new_call_mark, parse_responses, raw_exchange

NEUTRAL = "The request could not be processed due to an internal error. Contact the API owner."

PETSTORE = {"components": {"schemas": {
    "Pet": {"type": "object", "required": ["name"], "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0},
                           "tag": {"$ref": "#/components/schemas/Tag"}}},
    "Tag": {"type": "string", "maxLength": 8},
    "Loose": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}},
}}}

ADDRESS = {"type": "object", "required": ["street"], "properties": {"street": {"type": "string"}},
           "definitions": {"Zip": {"type": "string", "pattern": "^[0-9]{5}$"}}}


# the tests' own call mark (conftest) is a declared header of the definition
MARK_HEADER = {"name": CALL_MARK, "type": "string"}


ORDER_XSD = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:orders"
    xmlns="urn:orders" elementFormDefault="qualified">
  <xs:element name="order">
    <xs:complexType><xs:sequence>
      <xs:element name="id" type="xs:int"/>
      <xs:element name="item" type="xs:string"/>
    </xs:sequence></xs:complexType>
  </xs:element>
</xs:schema>"""

ORDER_OK = '<order xmlns="urn:orders"><id>1</id><item>pen</item></order>'
ORDER_BAD = '<order xmlns="urn:orders"><id>one</id></order>'


def soap(body):
    return ('<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>%s</soap:Body>'
            '</soap:Envelope>' % body)


def definition(backend):
    return {
        "id": "pets", "path": "pets", "serviceUrl": backend.url + "/base", "subscriptionRequired": False,
        "schemas": [{"id": "petstore", "contentType": "application/vnd.oai.openapi.components+json",
                     "document": PETSTORE},
                    {"id": "orders", "contentType": "application/vnd.ms-azure-apim.xsd+xml", "value": ORDER_XSD}],
        "operations": [
            {"id": "create", "method": "POST", "urlTemplate": "/pets",
             "request": {"headers": [MARK_HEADER], "representations": [
                 {"contentType": "application/json", "schemaId": "petstore", "typeName": "Pet"},
                 {"contentType": "application/vnd.loose+json", "schemaId": "petstore", "typeName": "Loose"},
                 {"contentType": "application/vnd.inline+json",
                  "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Tag"}}},
                 {"contentType": "text/plain"}]},
             "responses": [{"statusCode": 200}]},
            {"id": "get", "method": "GET", "urlTemplate": "/pets/{id}",
             "templateParameters": [{"name": "id", "type": "integer", "required": True}],
             "request": {
                 "queryParameters": [
                     {"name": "limit", "type": "integer", "required": True},
                     {"name": "color", "type": "string", "values": ["red", "green"]},
                     {"name": "code", "type": "string", "schema": {"type": "string", "pattern": "^[A-Z]{3}$"}},
                     {"name": "ratio", "type": "number", "schema": {"type": "number", "maximum": 1}},
                     {"name": "flag", "type": "boolean"}],
                 "headers": [{"name": "X-Tenant", "type": "string", "values": ["a", "b"]},
                             {"name": "X-Count", "type": "integer", "required": True}, MARK_HEADER]},
             "responses": [{"statusCode": 200}]},
            {"id": "order", "method": "POST", "urlTemplate": "/orders",
             "request": {"headers": [MARK_HEADER], "representations": [
                 {"contentType": "application/xml", "schemaId": "orders", "typeName": "order"},
                 {"contentType": "text/xml", "schemaId": "orders", "typeName": "order"}]}},
            {"id": "raw", "method": "GET", "urlTemplate": "/raw",
             "responses": [
                 {"statusCode": 200,
                  "headers": [{"name": "X-Rate", "type": "integer", "required": True},
                              {"name": "X-Mode", "type": "string", "values": ["fast", "slow"]}],
                  "representations": [{"contentType": "application/json", "schemaId": "petstore",
                                       "typeName": "Pet"}]},
                 {"statusCode": 404}]},
            {"id": "raw-default", "method": "GET", "urlTemplate": "/anything/raw",
             "responses": [{"statusCode": "default"}]},
        ],
    }


ECHO_ERRORS = {"set-header": {"name": "X-Errors", "exists-action": "override",
                              "value": "@(context.variables:get('errs', 'none'))"}}


def gw(portico, backend, inbound=(), outbound=(), on_error=None, **extra):
    cfg = basic_config(backend.url)
    api = definition(backend)
    api["policies"] = {"inbound": ["base"] + list(inbound), "outbound": ["base"] + list(outbound) + [ECHO_ERRORS]}
    if on_error is not None:
        api["policies"]["on-error"] = ["base"] + list(on_error)
    cfg["apis"] = [api]
    cfg["schemas"] = [{"id": "address", "schemaType": "json", "document": ADDRESS},
                      {"id": "order-xsd", "schemaType": "xml", "value": ORDER_XSD}]
    cfg.update(extra)
    return portico(cfg)


pytestmark = pytest.mark.usefixtures("refusals_leave_the_backend_alone")


def call(p, method, path, body=None, headers=None):
    h = dict(headers or {})
    mark = new_call_mark()
    h[CALL_MARK] = mark
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        h.setdefault("Content-Type", "application/json")
    status, hdrs, data = p.request(method, path, body=body, headers=h)
    if "X-Raw-Response" not in h:  # a 4xx the backend itself answers is not a refusal
        check_call_mark(mark, status)  # refused (4xx) calls never reach the backend
    return status, hdrs, data


def errors(hdrs):
    v = hdrs.get("x-errors", "none")
    return None if v == "none" else json.loads(v)


def message(data):
    return json.loads(data)["message"]


def raw_headers(status, headers, body):
    """Headers asking the backend's /raw to answer with exactly this response."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    body = body.encode() if isinstance(body, str) else body
    head = "HTTP/1.1 %d X\r\n" % status + "".join("%s: %s\r\n" % kv for kv in headers)
    head += "Content-Length: %d\r\n\r\n" % len(body)
    return {"X-Raw-Response": (head.encode() + body).hex(), "X-Raw-Keep": "1"}


def content(**kw):
    attrs = {"unspecified-content-type-action": "prevent", "max-size": 1024, "size-exceeded-action": "prevent",
             "errors-variable-name": "errs"}
    attrs.update(kw)
    return {"validate-content": attrs}


JSON_PREVENT = [{"type": "application/json", "validate-as": "json", "action": "prevent"}]

# ------------------------------------------------------------ validate-content, request side


def test_content_valid_body_reaches_the_backend(backend, portico):
    p = gw(portico, backend, inbound=[content(content=JSON_PREVENT)])
    status, h, _ = call(p, "POST", "/pets/pets", {"name": "rex", "age": 3, "tag": "dog"})
    assert status == 200
    assert json.loads(backend.last().body) == {"name": "rex", "age": 3, "tag": "dog"}
    assert errors(h) is None


@pytest.mark.parametrize("body,detail", [
    ({"name": 5}, "Invalid type. Expected String but got Integer. Path: '/name'."),
    ({"age": 1}, "Required properties are missing from object: name."),
    ({"name": "a", "age": -1}, "Path: '/age'."),
    ({"name": "a", "tag": "far-too-long-a-tag"}, "Path: '/tag'."),  # through a $ref into the API schema
    ({"name": "a", "extra": 1}, "Property 'extra' has not been defined"),
])
def test_content_prevent_refuses_with_the_reason(backend, portico, body, detail):
    p = gw(portico, backend, inbound=[content(content=JSON_PREVENT)])
    status, _, data = call(p, "POST", "/pets/pets", body)
    assert status == 400
    msg = message(data)
    assert msg.startswith("Body of the request does not conform to the definition Pet, which is associated "
                          "with the content type application/json. ")
    assert detail in msg
    assert not backend.requests


def test_content_malformed_json_says_where(backend, portico):
    p = gw(portico, backend, inbound=[content(content=JSON_PREVENT)])
    status, _, data = call(p, "POST", "/pets/pets", '{"name": "a",\n "age": }',
                           {"Content-Type": "application/json; charset=utf-8"})
    assert status == 400
    assert "Line: 2, Position:" in message(data)


def test_content_first_reads_of_a_definition_at_once_on_every_worker(backend, portico):
    """An operation's definition text is made at its first read, by whichever worker asks first:
    four workers asking at once all validate by it, valid bodies pass and invalid ones are refused,
    every time, with nothing lost or freed twice (the sanitizer pass checks the rest)."""
    import threading
    p = gw(portico, backend, inbound=[content(content=JSON_PREVENT)], workers=4)
    results, lock = [], threading.Lock()
    start = threading.Event()

    def client(k):
        start.wait(5)
        for i in range(20):
            good = (k + i) % 2 == 0
            body = {"name": "rex", "age": 3} if good else {"name": 5}
            status, _, _ = p.request("POST", "/pets/pets", body=json.dumps(body),
                                     headers={"Content-Type": "application/json"})
            with lock:
                results.append((good, status))
    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(16)]
    for t in threads:
        t.start()
    start.set()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert len(results) == 16 * 20
    assert all(status == (200 if good else 400) for good, status in results), results[:10]
    assert sum(1 for good, _ in results if good) == len(backend.requests)


def test_content_prevent_sets_last_error(backend, portico):
    on_error = [{"set-header": {"name": "X-Reason", "value": "@(context.lastError.reason)"}},
                {"set-header": {"name": "X-Source", "value": "@(context.lastError.source)"}},
                {"set-header": {"name": "X-Section", "value": "@(context.lastError.section)"}}]
    p = gw(portico, backend, inbound=[content(content=JSON_PREVENT)], on_error=on_error)
    status, h, data = call(p, "POST", "/pets/pets", {"name": 1})
    assert status == 400
    assert h["x-reason"] == "Bad request"
    assert h["x-source"] == "validate-content"
    assert h["x-section"] == "inbound"
    assert message(data).startswith("Body of the request does not conform")


def test_content_detect_passes_and_records(backend, portico):
    p = gw(portico, backend, inbound=[content(content=[{"type": "application/json", "action": "detect"}])])
    status, h, _ = call(p, "POST", "/pets/pets", {"name": 5})
    assert status == 200
    assert json.loads(backend.last().body) == {"name": 5}
    [rec] = errors(h)
    assert rec["Name"] == "application/json"
    assert rec["Type"] == "RequestBody"
    assert rec["ValidationRule"] == "IncorrectMessage"
    assert rec["Action"] == "detect"
    assert rec["Details"].startswith("Body of the request does not conform to the definition Pet")
    assert "Path: '/name'" in rec["Details"]


def test_content_ignore_passes_silently(backend, portico):
    p = gw(portico, backend, inbound=[content(content=[{"type": "application/json", "action": "ignore"}])])
    status, h, _ = call(p, "POST", "/pets/pets", {"name": 5})
    assert status == 200
    assert errors(h) is None
    assert len(backend.requests) == 1


def test_content_unspecified_content_type(backend, portico):
    p = gw(portico, backend, inbound=[content(content=JSON_PREVENT)])
    status, _, data = call(p, "POST", "/pets/pets", "<a/>", {"Content-Type": "text/xml"})
    assert (status, message(data)) == (400, "Unspecified content type text/xml is not allowed.")
    # listed in the definition without a content element: specified, not validated
    assert call(p, "POST", "/pets/pets", "hello", {"Content-Type": "text/plain"})[0] == 200
    # detect and ignore let it through
    p2 = gw(portico, backend, inbound=[content(**{"unspecified-content-type-action": "detect"})])
    status, h, _ = call(p2, "POST", "/pets/pets", "<a/>", {"Content-Type": "Text/XML; charset=utf-8"})
    assert status == 200
    assert errors(h) == [{"Name": "text/xml", "Type": "RequestBody", "ValidationRule": "Unspecified",
                          "Details": "Unspecified content type text/xml is not allowed.", "Action": "detect"}]
    p3 = gw(portico, backend, inbound=[content(**{"unspecified-content-type-action": "ignore"})])
    status, h, _ = call(p3, "POST", "/pets/pets", "<a/>", {"Content-Type": "text/xml"})
    assert status == 200 and errors(h) is None


def test_content_without_a_body_is_not_checked(backend, portico):
    p = gw(portico, backend, inbound=[content(content=JSON_PREVENT)])
    assert call(p, "GET", "/pets/pets/1?limit=1")[0] == 200
    # a Content-Type alone, without a body, is not an unspecified content type
    assert call(p, "GET", "/pets/pets/1?limit=1", headers={"Content-Type": "text/xml"})[0] == 200
    assert call(p, "POST", "/pets/pets", b"", {"Content-Type": "text/xml"})[0] == 200


def test_content_max_size_by_content_length(backend, portico):
    p = gw(portico, backend, inbound=[content(**{"max-size": 100}, content=JSON_PREVENT)])
    body = json.dumps({"name": "x" * 200})
    status, _, data = call(p, "POST", "/pets/pets", body, {"Content-Type": "application/json"})
    assert (status, message(data)) == (400, "Request's body is %d bytes long and it exceeds the limit of 100 "
                                             "bytes." % len(body))
    assert not backend.requests
    assert call(p, "POST", "/pets/pets", {"name": "x"})[0] == 200


def test_content_max_size_refuses_before_reading_the_body(backend, portico):
    """A Content-Length over max-size is refused at once: the body is never awaited."""
    p = gw(portico, backend, inbound=[content(**{"max-size": 100}, content=JSON_PREVENT)])
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    try:
        s.sendall(b"POST /pets/pets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 50000\r\n\r\n{\"name\":")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 400")
    assert not backend.requests


def test_content_max_size_by_chunked_body(backend, portico):
    p = gw(portico, backend, inbound=[content(**{"max-size": 100}, content=JSON_PREVENT)])
    body = json.dumps({"name": "x" * 200}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 50]), body[i:i + 50]) for i in range(0, len(body), 50))
    req = (b"POST /pets/pets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks + b"0\r\n\r\n")
    [(status, _, data)] = parse_responses(raw_exchange(p.port, req))
    assert status == 400
    assert message(data) == "Request's body is %d bytes long and it exceeds the limit of 100 bytes." % len(body)
    assert not backend.requests
    # a small chunked body is validated like any other
    small = json.dumps({"name": 1}).encode()
    req = (b"POST /pets/pets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(small), small))
    [(status, _, data)] = parse_responses(raw_exchange(p.port, req))
    assert status == 400 and "Path: '/name'" in message(data)


def test_content_size_detect_skips_the_body(backend, portico):
    p = gw(portico, backend, inbound=[content(**{"max-size": 10, "size-exceeded-action": "detect"},
                                              content=JSON_PREVENT)])
    body = json.dumps({"name": 12345})  # invalid too, but over the size: not validated
    status, h, _ = call(p, "POST", "/pets/pets", body, {"Content-Type": "application/json"})
    assert status == 200
    assert errors(h) == [{"Name": "", "Type": "RequestBody", "ValidationRule": "SizeLimit",
                          "Details": "Request's body is %d bytes long and it exceeds the configured limit of 10 "
                                     "bytes." % len(body), "Action": "detect"}]


def test_content_type_map(backend, portico):
    cmap = {"missing-content-type-value": "application/json",
            "type": [{"from": "text/json", "to": "application/json"},
                     {"when": "@(context.request.headers:get('X-Loose', '') == '1')",
                      "to": "application/vnd.loose+json"}]}
    p = gw(portico, backend, inbound=[content(**{"content-type-map": cmap},
                                              content=JSON_PREVENT + [{"type": "application/vnd.loose+json",
                                                                       "action": "prevent"}])])
    # no Content-Type: validated as application/json
    status, _, data = call(p, "POST", "/pets/pets", '{"name": 1}', {})
    assert status == 400 and "content type application/json" in message(data)
    # text/json mapped to application/json
    status, _, data = call(p, "POST", "/pets/pets", '{"name": 1}', {"Content-Type": "text/json"})
    assert status == 400 and "definition Pet" in message(data)
    assert call(p, "POST", "/pets/pets", '{"name": "a"}', {"Content-Type": "text/json"})[0] == 200
    # a condition maps to the Loose definition
    status, _, data = call(p, "POST", "/pets/pets", '{"name": "a"}',
                           {"Content-Type": "application/json", "X-Loose": "1"})
    assert status == 400 and "definition Loose" in message(data)
    # any-content-type-value wins over everything
    p2 = gw(portico, backend, inbound=[content(**{"content-type-map": {"any-content-type-value": "application/json"}},
                                               content=JSON_PREVENT)])
    status, _, data = call(p2, "POST", "/pets/pets", '{"name": 1}', {"Content-Type": "text/plain"})
    assert status == 400 and "content type application/json" in message(data)


def test_content_schema_id(backend, portico):
    p = gw(portico, backend, inbound=[content(content=[
        {"type": "application/vnd.address+json", "schema-id": "address", "action": "prevent"},
        {"type": "application/vnd.zip+json", "schema-id": "address", "schema-ref": "#/definitions/Zip",
         "action": "prevent"}])])
    ct = {"Content-Type": "application/vnd.address+json"}
    assert call(p, "POST", "/pets/pets", '{"street": "Main"}', ct)[0] == 200
    status, _, data = call(p, "POST", "/pets/pets", '{"road": "Main"}', ct)
    assert status == 400
    assert message(data).startswith("Body of the request does not conform to the definition address")
    zip_ct = {"Content-Type": "application/vnd.zip+json"}
    assert call(p, "POST", "/pets/pets", '"12345"', zip_ct)[0] == 200
    status, _, data = call(p, "POST", "/pets/pets", '"1234a"', zip_ct)
    assert status == 400 and "#/definitions/Zip" in message(data)


def test_content_schema_id_missing(backend, portico):
    p = gw(portico, backend, inbound=[content(content=[
        {"type": "application/json", "schema-id": "nope", "action": "detect"}])])
    status, h, _ = call(p, "POST", "/pets/pets", {"name": "a"})
    assert status == 200
    [rec] = errors(h)
    assert rec["Type"] == "ApiSchema"
    assert rec["Details"] == "API's schema does not exist or it could not be resolved."
    p2 = gw(portico, backend, inbound=[content(content=[
        {"type": "application/json", "schema-id": "nope", "action": "prevent"}])])
    status, _, data = call(p2, "POST", "/pets/pets", {"name": "a"})
    assert (status, message(data)) == (400, NEUTRAL)


def test_content_inline_schema_refs_the_api_schema(backend, portico):
    p = gw(portico, backend, inbound=[content(content=[{"action": "prevent"}])])  # no type: all listed types
    ct = {"Content-Type": "application/vnd.inline+json"}
    assert call(p, "POST", "/pets/pets", '["a", "b"]', ct)[0] == 200
    status, _, data = call(p, "POST", "/pets/pets", '["a", "much-too-long"]', ct)
    assert status == 400 and "Path: '/1'" in message(data)


def test_content_allow_additional_properties(backend, portico):
    allow = gw(portico, backend, inbound=[content(content=[
        {"type": "application/json", "action": "prevent", "allow-additional-properties": True}])])
    assert call(allow, "POST", "/pets/pets", {"name": "a", "extra": 1})[0] == 200
    deny = gw(portico, backend, inbound=[content(content=[
        {"type": "application/vnd.loose+json", "action": "prevent", "allow-additional-properties": False}])])
    ct = {"Content-Type": "application/vnd.loose+json"}
    assert call(deny, "POST", "/pets/pets", '{"id": 1}', ct)[0] == 200
    status, _, data = call(deny, "POST", "/pets/pets", '{"id": 1, "extra": 2}', ct)
    assert status == 400 and "extra" in message(data)
    # the schema's own rule when the attribute is absent
    as_is = gw(portico, backend, inbound=[content(content=[
        {"type": "application/vnd.loose+json", "action": "prevent"}])])
    assert call(as_is, "POST", "/pets/pets", '{"id": 1, "extra": 2}', ct)[0] == 200


def test_content_compressed_body_cannot_be_validated(backend, portico):
    p = gw(portico, backend, inbound=[content(content=[{"type": "application/json", "action": "detect"}])])
    status, h, _ = call(p, "POST", "/pets/pets", b"\x1f\x8b junk",
                        {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert status == 200
    [rec] = errors(h)
    assert rec["ValidationRule"] == "ValidationException"


def test_content_xml(backend, portico):
    p = gw(portico, backend, inbound=[content(content=[
        {"type": "application/xml", "validate-as": "xml", "action": "prevent"}])])
    ct = {"Content-Type": "application/xml"}
    assert call(p, "POST", "/pets/orders", ORDER_OK, ct)[0] == 200
    assert backend.last().body == ORDER_OK.encode()
    status, _, data = call(p, "POST", "/pets/orders", ORDER_BAD, ct)
    assert status == 400
    assert message(data).startswith("Body of the request does not conform to the definition order, which is "
                                    "associated with the content type application/xml.")
    # not well-formed, and a DOCTYPE (entities) is refused outright
    assert call(p, "POST", "/pets/orders", "<order", ct)[0] == 400
    xxe = ('<?xml version="1.0"?><!DOCTYPE order [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           '<order xmlns="urn:orders"><id>1</id><item>&x;</item></order>')
    status, _, data = call(p, "POST", "/pets/orders", xxe, ct)
    assert status == 400 and b"root:" not in data


def test_content_soap(backend, portico):
    p = gw(portico, backend, inbound=[content(content=[
        {"type": "text/xml", "validate-as": "soap", "action": "prevent"}])])
    ct = {"Content-Type": "text/xml; charset=utf-8"}
    assert call(p, "POST", "/pets/orders", soap(ORDER_OK), ct)[0] == 200
    status, _, data = call(p, "POST", "/pets/orders", soap(ORDER_BAD), ct)
    assert status == 400 and "definition order" in message(data)
    # detect lets it through with the record
    d = gw(portico, backend, inbound=[content(content=[
        {"type": "text/xml", "validate-as": "soap", "action": "detect"}])])
    status, h, _ = call(d, "POST", "/pets/orders", soap(ORDER_BAD), ct)
    assert status == 200
    [rec] = errors(h)
    assert (rec["Type"], rec["ValidationRule"]) == ("RequestBody", "IncorrectMessage")


def test_content_xml_schema_id(backend, portico):
    p = gw(portico, backend, inbound=[content(content=[
        {"type": "application/xml", "validate-as": "xml", "schema-id": "order-xsd", "action": "prevent"}])])
    ct = {"Content-Type": "application/xml"}
    assert call(p, "POST", "/pets/pets", ORDER_OK, ct)[0] == 200
    status, _, data = call(p, "POST", "/pets/pets", ORDER_BAD, ct)
    assert status == 400 and "definition order-xsd" in message(data)


# two embedded schemas, the first importing the second's namespace without a location: the
# import makes them the API schemas xsd and xsd-2, which validate-content compiles as one set
TWO_SCHEMA_WSDL = """<?xml version="1.0" encoding="utf-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:tns="urn:a" xmlns:b="urn:b" targetNamespace="urn:a">
  <wsdl:types>
    <xs:schema targetNamespace="urn:a" elementFormDefault="qualified">
      <xs:import namespace="urn:b"/>
      <xs:element name="Order" type="b:OrderType"/>
      <xs:element name="OrderResponse" type="xs:int"/>
    </xs:schema>
    <xs:schema targetNamespace="urn:b" elementFormDefault="qualified">
      <xs:complexType name="OrderType"><xs:sequence><xs:element name="qty" type="xs:int"/></xs:sequence>
      </xs:complexType>
    </xs:schema>
  </wsdl:types>
  <wsdl:message name="In"><wsdl:part name="p" element="tns:Order"/></wsdl:message>
  <wsdl:message name="Out"><wsdl:part name="p" element="tns:OrderResponse"/></wsdl:message>
  <wsdl:portType name="P"><wsdl:operation name="Place"><wsdl:input message="tns:In"/>
    <wsdl:output message="tns:Out"/></wsdl:operation></wsdl:portType>
  <wsdl:binding name="B" type="tns:P"><soap:binding transport="http://schemas.xmlsoap.org/soap/http" style="document"/>
    <wsdl:operation name="Place"><soap:operation soapAction="urn:a/Place"/>
      <wsdl:input><soap:body use="literal"/></wsdl:input><wsdl:output><soap:body use="literal"/></wsdl:output>
    </wsdl:operation></wsdl:binding>
  <wsdl:service name="S"><wsdl:port name="Port" binding="tns:B"><soap:address location="%s/svc"/></wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"""


def test_content_soap_imported_from_wsdl(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"] = [{"id": "soap", "path": "soap", "subscriptionRequired": False,
                    "import": {"format": "wsdl", "value": TWO_SCHEMA_WSDL % backend.url},
                    "policies": {"inbound": [content(content=[
                        {"type": "text/xml", "validate-as": "soap", "action": "prevent"}])]}}]
    p = portico(cfg)
    h = {"SOAPAction": '"urn:a/Place"', "Content-Type": "text/xml"}
    ok = soap('<Order xmlns="urn:a"><qty xmlns="urn:b">2</qty></Order>')
    assert call(p, "POST", "/soap", ok, h)[0] == 200
    assert backend.last().body == ok.encode()
    status, _, data = call(p, "POST", "/soap", soap('<Order xmlns="urn:a"><qty xmlns="urn:b">two</qty></Order>'), h)
    assert status == 400
    assert message(data).startswith("Body of the request does not conform to the definition Order")


OPENAPI = {
    "openapi": "3.0.3", "info": {"title": "shop", "version": "1"},
    "paths": {"/items/{id}": {
        "put": {"operationId": "putItem",
                "parameters": [{"name": "id", "in": "path", "required": True,
                                "schema": {"type": "integer", "minimum": 1}},
                               {"name": "mode", "in": "query", "schema": {"type": "string", "enum": ["fast", "safe"]}}],
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}}},
                "responses": {"200": {"description": "ok"}}}}},
    "components": {"schemas": {
        "Item": {"type": "object", "required": ["sku"], "properties": {
            "sku": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]+$"},
            "price": {"type": "number", "minimum": 0, "nullable": True}}}}},
}


def test_definitions_imported_from_openapi(backend, portico):
    """The converter's output (schemas, $refs into the components, parameters with their schemas) is what
    the policies check against."""
    cfg = basic_config(backend.url)
    cfg["apis"] = [{"id": "shop", "path": "shop", "serviceUrl": backend.url, "subscriptionRequired": False,
                    "import": {"format": "openapi+json", "value": json.dumps(OPENAPI)},
                    "policies": {"inbound": [
                        {"validate-parameters": {"specified-parameter-action": "prevent",
                                                 "unspecified-parameter-action": "ignore"}},
                        content(content=JSON_PREVENT)]}}]
    p = portico(cfg)
    assert call(p, "PUT", "/shop/items/3?mode=fast", {"sku": "AB-12", "price": None})[0] == 200
    status, _, data = call(p, "PUT", "/shop/items/3", {"sku": "ab"})
    assert status == 400 and "Path: '/sku'" in message(data), data
    status, _, data = call(p, "PUT", "/shop/items/0", {"sku": "AB-1"})
    assert status == 400 and "path parameter id" in message(data), data
    status, _, data = call(p, "PUT", "/shop/items/3?mode=slow", {"sku": "AB-1"})
    assert status == 400 and "query parameter mode" in message(data), data


# ------------------------------------------------------------ validate-content, response side


def test_content_response_valid_and_invalid(backend, portico):
    p = gw(portico, backend, outbound=[content(content=JSON_PREVENT)])
    ok = raw_headers(200, [("Content-Type", "application/json"), ("X-Rate", "1")], {"name": "rex"})
    status, _, data = call(p, "GET", "/pets/raw", headers=ok)
    assert status == 200 and json.loads(data) == {"name": "rex"}
    bad = raw_headers(200, [("Content-Type", "application/json")], {"name": 1})
    status, h, data = call(p, "GET", "/pets/raw", headers=bad)
    assert (status, message(data)) == (502, NEUTRAL)
    assert b"name" not in data  # nothing of the backend's answer leaks


def test_content_response_detect(backend, portico):
    p = gw(portico, backend, outbound=[content(content=[{"type": "application/json", "action": "detect"}])])
    bad = raw_headers(200, [("Content-Type", "application/json")], {"name": 1, "x": 2})
    status, h, data = call(p, "GET", "/pets/raw", headers=bad)
    assert status == 200 and json.loads(data) == {"name": 1, "x": 2}
    [rec] = errors(h)
    assert rec["Type"] == "ResponseBody" and rec["ValidationRule"] == "IncorrectMessage"
    assert rec["Details"].startswith("Body of the response does not conform to the definition Pet")


def test_content_response_size_and_unspecified(backend, portico):
    p = gw(portico, backend, outbound=[content(**{"max-size": 20}, content=JSON_PREVENT)])
    big = raw_headers(200, [("Content-Type", "application/json")], {"name": "x" * 100})
    status, _, data = call(p, "GET", "/pets/raw", headers=big)
    assert (status, message(data)) == (502, NEUTRAL)
    other = raw_headers(200, [("Content-Type", "text/html")], "<p>")
    status, _, data = call(p, "GET", "/pets/raw", headers=other)
    assert (status, message(data)) == (502, NEUTRAL)
    # a status the definition does not describe lists no content types
    p2 = gw(portico, backend, outbound=[content(**{"unspecified-content-type-action": "detect"})])
    status, h, _ = call(p2, "GET", "/pets/raw", headers=raw_headers(404, [("Content-Type", "text/html")], "x"))
    assert status == 404
    assert errors(h)[0]["ValidationRule"] == "Unspecified"


def test_content_response_prevent_sets_last_error(backend, portico):
    on_error = [{"set-header": {"name": "X-Reason", "value": "@(context.lastError.reason)"}}]
    p = gw(portico, backend, outbound=[content(content=JSON_PREVENT)], on_error=on_error)
    bad = raw_headers(200, [("Content-Type", "application/json")], {"name": 1})
    status, h, data = call(p, "GET", "/pets/raw", headers=bad)
    assert (status, message(data), h["x-reason"]) == (502, NEUTRAL, "Response not allowed")


# ------------------------------------------------------------ validate-parameters


def params(**kw):
    attrs = {"specified-parameter-action": "prevent", "unspecified-parameter-action": "prevent",
             "errors-variable-name": "errs"}
    attrs.update(kw)
    return {"validate-parameters": attrs}


GOOD = {"X-Count": "2"}


def test_parameters_valid_pass(backend, portico):
    p = gw(portico, backend, inbound=[params()])
    status, h, _ = call(p, "GET", "/pets/pets/7?limit=10&color=red&code=ABC&ratio=0.5&flag=true",
                        headers=dict(GOOD, **{"X-Tenant": "a"}))
    assert status == 200 and errors(h) is None
    assert backend.last().target.startswith("/base/pets/7?limit=10")


@pytest.mark.parametrize("path,headers,msg", [
    ("/pets/pets/7", GOOD, "Request must contain the required query parameter limit."),
    ("/pets/pets/7?limit=ten", GOOD,
     "Value of the query parameter limit couldn't be parsed according to the definition. The value is not an "
     "integer."),
    ("/pets/pets/7?limit=1&color=blue", GOOD,
     "The value of the query parameter color does not conform to the definition. Value \"blue\" is not defined "
     "in enum."),
    ("/pets/pets/7?limit=1&code=abc", GOOD,
     "The value of the query parameter code does not conform to the definition. String 'abc' does not match "
     "regex pattern '^[A-Z]{3}$'."),
    ("/pets/pets/7?limit=1&ratio=2", GOOD, "The value of the query parameter ratio does not conform"),
    ("/pets/pets/7?limit=1&flag=maybe", GOOD, "Value of the query parameter flag couldn't be parsed"),
    ("/pets/pets/7?limit=1&limit=2", GOOD, "Request cannot contain multiple values for the query parameter limit."),
    ("/pets/pets/seven?limit=1", GOOD,
     "Value of the path parameter id couldn't be parsed according to the definition. The value is not an "
     "integer."),
    ("/pets/pets/7?limit=1&extra=1", GOOD, "Unspecified query parameter extra is not allowed."),
    ("/pets/pets/7?limit=1", dict(GOOD, **{"X-Other": "1"}), "Unspecified header X-Other is not allowed."),
    ("/pets/pets/7?limit=1", {}, "Request must contain the required header X-Count."),
    ("/pets/pets/7?limit=1", {"X-Count": "x"}, "Value of the header X-Count couldn't be parsed"),
    ("/pets/pets/7?limit=1", dict(GOOD, **{"X-Tenant": "c"}),
     "The value of the header X-Tenant does not conform to the definition."),
])
def test_parameters_prevent(backend, portico, path, headers, msg):
    p = gw(portico, backend, inbound=[params()])
    status, _, data = call(p, "GET", path, headers=headers)
    assert status == 400
    assert message(data).startswith(msg), message(data)
    assert not backend.requests


def test_parameters_detect_records_everything(backend, portico):
    p = gw(portico, backend, inbound=[params(**{"specified-parameter-action": "detect",
                                                "unspecified-parameter-action": "detect"})])
    status, h, _ = call(p, "GET", "/pets/pets/x?limit=a&extra=1", headers={"X-Other": "1"})
    assert status == 200
    recs = errors(h)
    got = [(r["Name"], r["Type"], r["ValidationRule"], r["Action"]) for r in recs]
    assert got == [("id", "PathParameter", "IncorrectMessage", "detect"),
                   ("limit", "QueryParameter", "IncorrectMessage", "detect"),
                   ("extra", "QueryParameter", "Unspecified", "detect"),
                   ("X-Other", "RequestHeader", "Unspecified", "detect"),
                   ("X-Count", "RequestHeader", "IncorrectMessage", "detect")]


def test_parameters_ignore_and_overrides(backend, portico):
    p = gw(portico, backend, inbound=[params(**{"unspecified-parameter-action": "ignore"})])
    assert call(p, "GET", "/pets/pets/7?limit=1&extra=1", headers=dict(GOOD, **{"X-Other": "1"}))[0] == 200
    # group and per-parameter overrides
    p2 = gw(portico, backend, inbound=[params(
        query={"unspecified-parameter-action": "ignore",
               "parameter": [{"name": "color", "action": "ignore"}, {"name": "debug", "action": "prevent"}]},
        headers={"specified-parameter-action": "detect"})])
    status, h, _ = call(p2, "GET", "/pets/pets/7?limit=1&extra=1&color=blue",
                        headers={"X-Count": "many"})
    assert status == 200
    assert [(r["Name"], r["Action"]) for r in errors(h)] == [("X-Count", "detect")]
    status, _, data = call(p2, "GET", "/pets/pets/7?limit=1&debug=1", headers=GOOD)
    assert (status, message(data)) == (400, "Unspecified query parameter debug is not allowed.")


def test_parameters_and_content_share_the_errors_variable(backend, portico):
    p = gw(portico, backend, inbound=[params(**{"unspecified-parameter-action": "detect"}),
                                      content(content=[{"type": "application/json", "action": "detect"}])])
    status, h, _ = call(p, "POST", "/pets/pets?x=1", {"name": 1})
    assert status == 200
    assert [r["Type"] for r in errors(h)] == ["QueryParameter", "RequestBody"]


def test_parameters_once_per_section(backend, portico, workdir):
    cfg = basic_config(backend.url)
    cfg["apis"] = [definition(backend)]
    cfg["apis"][0]["policies"] = {"inbound": [params(), params()]}
    p = portico(cfg, start=False)
    rc, out = p.check()
    assert rc != 0
    assert "validate-parameters" in out


# ------------------------------------------------------------ validate-headers


def headers_policy(**kw):
    attrs = {"specified-header-action": "prevent", "unspecified-header-action": "prevent",
             "errors-variable-name": "errs"}
    attrs.update(kw)
    return {"validate-headers": attrs}


def test_headers_valid_pass(backend, portico):
    p = gw(portico, backend, outbound=[headers_policy()])
    ok = raw_headers(200, [("Content-Type", "application/json"), ("X-Rate", "5"), ("X-Mode", "fast"),
                           ("Cache-Control", "no-store"), ("ETag", '"1"')], {"name": "a"})
    status, h, _ = call(p, "GET", "/pets/raw", headers=ok)
    assert status == 200 and h["x-rate"] == "5"


@pytest.mark.parametrize("hdrs,name,rule", [
    ([], "X-Rate", "IncorrectMessage"),                                   # required, missing
    ([("X-Rate", "fast")], "X-Rate", "IncorrectMessage"),                 # not an integer
    ([("X-Rate", "1"), ("X-Mode", "turbo")], "X-Mode", "IncorrectMessage"),  # not in the enum
    ([("X-Rate", "1"), ("X-Rate", "2")], "X-Rate", "IncorrectMessage"),   # two values
    ([("X-Rate", "1"), ("X-Secret", "s3cr3t")], "X-Secret", "Unspecified"),
])
def test_headers_prevent_and_detect(backend, portico, hdrs, name, rule):
    resp = raw_headers(200, [("Content-Type", "application/json")] + hdrs, {"name": "a"})
    p = gw(portico, backend, outbound=[headers_policy()])
    status, h, data = call(p, "GET", "/pets/raw", headers=resp)
    assert (status, message(data)) == (502, NEUTRAL)
    assert b"s3cr3t" not in data
    d = gw(portico, backend, outbound=[headers_policy(**{"specified-header-action": "detect",
                                                         "unspecified-header-action": "detect"})])
    status, h, _ = call(d, "GET", "/pets/raw", headers=resp)
    assert status == 200
    [rec] = errors(h)
    assert (rec["Name"], rec["Type"], rec["ValidationRule"]) == (name, "ResponseHeader", rule)


def test_headers_override_and_ignore(backend, portico):
    resp = raw_headers(200, [("Content-Type", "application/json"), ("X-Secret", "1")], {"name": "a"})
    p = gw(portico, backend, outbound=[headers_policy(**{"specified-header-action": "ignore"},
                                                      header=[{"name": "x-secret", "action": "ignore"}])])
    status, h, _ = call(p, "GET", "/pets/raw", headers=resp)
    assert status == 200 and errors(h) is None


# ------------------------------------------------------------ validate-status-code


def status_policy(**kw):
    attrs = {"unspecified-status-code-action": "prevent", "errors-variable-name": "errs"}
    attrs.update(kw)
    return {"validate-status-code": attrs}


def test_status_code_declared_passes(backend, portico):
    p = gw(portico, backend, outbound=[status_policy()])
    assert call(p, "GET", "/pets/raw", headers=raw_headers(404, [], "gone"))[0] == 404
    assert call(p, "GET", "/pets/raw", headers=raw_headers(200, [], "{}"))[0] == 200


def test_status_code_undeclared(backend, portico):
    p = gw(portico, backend, outbound=[status_policy()])
    status, _, data = call(p, "GET", "/pets/raw", headers=raw_headers(500, [], "stack trace at line 12"))
    assert (status, message(data)) == (502, NEUTRAL)
    assert b"stack trace" not in data
    d = gw(portico, backend, outbound=[status_policy(**{"unspecified-status-code-action": "detect"})])
    status, h, data = call(d, "GET", "/pets/raw", headers=raw_headers(500, [], "stack trace"))
    assert status == 500 and data == b"stack trace"
    assert errors(h) == [{"Name": "500", "Type": "StatusCode", "ValidationRule": "Unspecified",
                          "Details": "Response status code 500 is not allowed.", "Action": "detect"}]
    i = gw(portico, backend, outbound=[status_policy(**{"unspecified-status-code-action": "ignore"})])
    status, h, _ = call(i, "GET", "/pets/raw", headers=raw_headers(500, [], "x"))
    assert status == 500 and errors(h) is None


def test_status_code_overrides_and_default(backend, portico):
    p = gw(portico, backend, outbound=[status_policy(**{"status-code": [{"code": 503, "action": "ignore"},
                                                                         {"code": 404, "action": "prevent"}]})])
    assert call(p, "GET", "/pets/raw", headers=raw_headers(503, [], "busy"))[0] == 503
    # an override never applies to a declared status
    assert call(p, "GET", "/pets/raw", headers=raw_headers(404, [], "gone"))[0] == 404
    # a default response declares every status
    assert call(p, "GET", "/pets/anything/raw", headers=raw_headers(418, [], "teapot"))[0] == 418


def test_status_code_in_on_error(backend, portico):
    """In on-error the response is the gateway's error; an undeclared status becomes 502."""
    p = gw(portico, backend, inbound=[content(content=JSON_PREVENT)], on_error=[status_policy()])
    status, _, data = call(p, "POST", "/pets/pets", {"name": 1})
    assert (status, message(data)) == (502, NEUTRAL)


def test_reload_swaps_definitions_and_frees_the_old(backend, portico):
    """Compiled schemas belong to their generation: after a reload that changes the schema the new one
    applies, with several workers validating at once; under ASan the old generation's are freed."""
    import threading
    p = gw(portico, backend, inbound=[content(content=JSON_PREVENT)], workers=2)
    assert call(p, "POST", "/pets/pets", {"name": "a", "age": 5})[0] == 200
    cfg = dict(p.config)
    schema = cfg["apis"][0]["schemas"][0]["document"]["components"]["schemas"]["Pet"]
    schema["properties"]["age"]["maximum"] = 3
    assert p.reload(cfg)
    results = []

    def hammer():
        for _ in range(20):
            results.append(p.request("POST", "/pets/pets", body=json.dumps({"name": "a", "age": 5}),
                                     headers={"Content-Type": "application/json"})[0])
    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [400] * 80
    assert call(p, "POST", "/pets/pets", {"name": "a", "age": 2})[0] == 200


# ------------------------------------------------------------ configuration


@pytest.mark.parametrize("stmt,words", [
    (content(**{"max-size": 200000}), "max-size"),
    (content(content=[{"type": "application/json", "action": "block"}]), "action"),
    (content(content=[{"type": "application/json", "action": "prevent", "schema-ref": "#/x"}]), "schema-id"),
])
def test_configuration_errors(backend, portico, stmt, words):
    cfg = basic_config(backend.url)
    cfg["apis"] = [definition(backend)]
    cfg["apis"][0]["policies"] = {"inbound": [stmt]}
    p = portico(cfg, start=False)
    rc, out = p.check()
    assert rc != 0
    assert words in out, out
