"""APIs imported from WSDL and OData $metadata in the configuration file
(apis[].import), served by the real gateway.

SOAP pass-through: the operations are told apart by the SOAP action (the
SOAPAction header for SOAP 1.1, the action parameter of Content-Type for
1.2), each routed to its own operation (the access log names it) and
forwarded to the soap:address of the chosen port.  OData: the entity-set
operations route by key, with validate-odata-request in front.
"""

import http.client
import json

from conftest import Portico, free_port

WSDL = """<?xml version="1.0" encoding="utf-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:soap12="http://schemas.xmlsoap.org/wsdl/soap12/"
    xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:tns="urn:example:orders" targetNamespace="urn:example:orders">
  <wsdl:types>
    <xs:schema targetNamespace="urn:example:orders" elementFormDefault="qualified">
      <xs:element name="GetOrder" type="xs:int"/><xs:element name="GetOrderResponse" type="xs:string"/>
      <xs:element name="PlaceOrder" type="xs:string"/><xs:element name="PlaceOrderResponse" type="xs:int"/>
    </xs:schema>
  </wsdl:types>
  <wsdl:message name="GetIn"><wsdl:part name="p" element="tns:GetOrder"/></wsdl:message>
  <wsdl:message name="GetOut"><wsdl:part name="p" element="tns:GetOrderResponse"/></wsdl:message>
  <wsdl:message name="PlaceIn"><wsdl:part name="p" element="tns:PlaceOrder"/></wsdl:message>
  <wsdl:message name="PlaceOut"><wsdl:part name="p" element="tns:PlaceOrderResponse"/></wsdl:message>
  <wsdl:portType name="Orders">
    <wsdl:operation name="GetOrder"><wsdl:input message="tns:GetIn"/><wsdl:output message="tns:GetOut"/>
    </wsdl:operation>
    <wsdl:operation name="PlaceOrder"><wsdl:input message="tns:PlaceIn"/><wsdl:output message="tns:PlaceOut"/>
    </wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="Soap11" type="tns:Orders">
    <soap:binding transport="http://schemas.xmlsoap.org/soap/http" style="%(style)s"/>
    <wsdl:operation name="GetOrder"><soap:operation soapAction="urn:example:orders/GetOrder"/>
      <wsdl:input><soap:body use="literal"/></wsdl:input><wsdl:output><soap:body use="literal"/></wsdl:output>
    </wsdl:operation>
    <wsdl:operation name="PlaceOrder"><soap:operation soapAction="urn:example:orders/Place Order"/>
      <wsdl:input><soap:body use="literal"/></wsdl:input><wsdl:output><soap:body use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:binding name="Soap12" type="tns:Orders">
    <soap12:binding transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="GetOrder"><soap12:operation soapAction="urn:example:orders/GetOrder"/>
      <wsdl:input><soap12:body use="literal"/></wsdl:input><wsdl:output><soap12:body use="literal"/></wsdl:output>
    </wsdl:operation>
    <wsdl:operation name="PlaceOrder"><soap12:operation soapAction="urn:example:orders/PlaceOrder"/>
      <wsdl:input><soap12:body use="literal"/></wsdl:input><wsdl:output><soap12:body use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="OrderService">
    <wsdl:port name="Soap11Port" binding="tns:Soap11"><soap:address location="%(url)s/orders11.svc"/></wsdl:port>
    <wsdl:port name="Soap12Port" binding="tns:Soap12"><soap12:address location="%(url)s/orders12.svc"/></wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"""

METADATA = """<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">
  <edmx:DataServices>
    <Schema Namespace="Trip" xmlns="http://docs.oasis-open.org/odata/ns/edm">
      <EntityType Name="Person"><Key><PropertyRef Name="UserName"/></Key>
        <Property Name="UserName" Type="Edm.String" Nullable="false"/></EntityType>
      <Function Name="Nearest"><Parameter Name="lat" Type="Edm.Double"/><ReturnType Type="Trip.Person"/></Function>
      <EntityContainer Name="TripService">
        <EntitySet Name="People" EntityType="Trip.Person"/>
        <FunctionImport Name="Nearest" Function="Trip.Nearest"/>
      </EntityContainer>
    </Schema>
  </edmx:DataServices>
</edmx:Edmx>
"""


def config(backend_url, style="document"):
    soap = {"id": "orders", "path": "orders", "subscriptionRequired": False,
            "import": {"format": "wsdl", "value": WSDL % {"url": backend_url, "style": style}}}
    soap12 = {"id": "orders12", "path": "orders12", "subscriptionRequired": False,
              "import": {"format": "wsdl", "value": WSDL % {"url": backend_url, "style": style},
                         "wsdlSelector": {"wsdlServiceName": "OrderService", "wsdlEndpointName": "Soap12Port"}}}
    od = {"id": "trip", "path": "trip", "subscriptionRequired": False, "serviceUrl": backend_url + "/trip.svc",
          "import": {"format": "odata", "value": METADATA},
          "policies": {"inbound": [{"validate-odata-request": {"max-odata-version": "4.01"}}]}}
    return {"listen": ["127.0.0.1:%d" % free_port()], "workers": 1, "apis": [soap, soap12, od]}


def send(p, method, path, headers=None, body=None):
    c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def last_operation(p, n):
    entries = p.access_entries(wait_for=n)
    assert len(entries) >= n
    return entries[n - 1].get("operation")


ENVELOPE = ('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
            '<GetOrder xmlns="urn:example:orders">5</GetOrder></s:Body></s:Envelope>')


def test_soap_pass_through_routes_by_action(portico, backend):
    p = portico(config(backend.url))
    n = 0
    # SOAP 1.1: the SOAPAction header, quoted or not
    for action, op in (('"urn:example:orders/GetOrder"', "getorder"), ("urn:example:orders/GetOrder", "getorder"),
                       ('"urn:example:orders/Place Order"', "placeorder")):
        status, body = send(p, "POST", "/orders", {"SOAPAction": action, "Content-Type": "text/xml"}, ENVELOPE)
        assert status == 200, body
        n += 1
        assert last_operation(p, n) == op
        seen = backend.last()
        assert seen.target == "/orders11.svc" or seen.target.startswith("/orders11.svc")
        assert seen.header("SOAPAction") == action
        assert seen.body == ENVELOPE.encode()
    # an action no operation has, or none at all: no operation
    status, _ = send(p, "POST", "/orders", {"SOAPAction": '"urn:example:orders/Other"'}, ENVELOPE)
    assert status == 404
    status, _ = send(p, "POST", "/orders", {"Content-Type": "text/xml"}, ENVELOPE)
    assert status == 404
    # SOAP 1.2: the action parameter of Content-Type
    ct = 'application/soap+xml; charset=utf-8; action="urn:example:orders/PlaceOrder"'
    status, body = send(p, "POST", "/orders12", {"Content-Type": ct}, ENVELOPE)
    assert status == 200, body
    assert last_operation(p, n + 3) == "placeorder"
    assert backend.last().target.startswith("/orders12.svc")


def test_odata_import_routes_and_validates(portico, backend):
    p = portico(config(backend.url))
    status, body = send(p, "GET", "/trip/People('russell')")
    assert status == 200, body
    assert last_operation(p, 1) == "get-people-by-key"
    assert backend.last().target == "/trip.svc/People('russell')"
    status, _ = send(p, "GET", "/trip/Nearest(lat=1.5)")
    assert status == 200
    assert last_operation(p, 2) == "nearest"
    status, _ = send(p, "GET", "/trip/$metadata")
    assert status == 200
    status, body = send(p, "GET", "/trip/People?$top=x")
    assert status == 400
    assert json.loads(body)["error"]["code"] == "InvalidSystemQueryOptionValue"
    status, _ = send(p, "GET", "/trip/Nowhere")
    assert status == 404


def test_refused_definitions_name_the_line(workdir, backend):
    rc, out = Portico(workdir, config(backend.url, style="rpc")).check()
    assert rc == 1
    assert "rpc style" in out and "line " in out, out
    cfg = config(backend.url)
    cfg["apis"][0]["import"]["value"] = ('<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                                         '<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/">&x;'
                                         '</wsdl:definitions>')
    rc, out = Portico(workdir, cfg).check()
    assert rc == 1
    assert "DOCTYPE" in out and "root:" not in out, out
