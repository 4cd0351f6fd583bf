/*
 * test_import_xml -- the WSDL and OData $metadata converters, and the
 * plugins' XML Schema validation (plugins/lib/xsd.c).
 */
#include "conf/pt_import_odata.h"
#include "conf/pt_import_wsdl.h"
#include "conf/pt_router.h"

#include "ptl_xsd.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---------------------------------------------------------------- helpers */

static char err[512];

static bool wsdl(const char *text, const char *service, const char *endpoint, struct pt_import_doc *d)
{
    memset(d, 0, sizeof(*d));
    err[0] = '\0';
    bool ok = pt_import_wsdl_convert(text, strlen(text), service, endpoint, d, err, sizeof(err));
    if (!ok)
        print_message("# error: %s\n", err);
    else {
        char *w = json_dumps(d->warnings, 0);
        print_message("# warnings: %s\n", w);
        free(w);
    }
    return ok;
}

static bool odata(const char *text, struct pt_import_doc *d)
{
    memset(d, 0, sizeof(*d));
    err[0] = '\0';
    bool ok = pt_import_odata_convert(text, strlen(text), d, err, sizeof(err));
    if (!ok)
        print_message("# error: %s\n", err);
    return ok;
}

static void done(struct pt_import_doc *d)
{
    json_decref(d->api);
    json_decref(d->warnings);
}

static const char *str(const json_t *o, const char *path)
{
    /* "a/0/b": object keys and array indexes */
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    const json_t *cur = o;
    for (char *tok = strtok(buf, "/"); tok && cur; tok = strtok(NULL, "/")) {
        if (json_is_array(cur))
            cur = json_array_get(cur, (size_t)atoi(tok));
        else
            cur = json_object_get(cur, tok);
    }
    return cur && json_is_string(cur) ? json_string_value(cur) : NULL;
}

static json_t *op_by_id(const json_t *api, const char *id)
{
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(api, "operations"), i, o)
    {
        if (!strcmp(json_string_value(json_object_get(o, "id")), id))
            return o;
    }
    return NULL;
}

static bool warned(const struct pt_import_doc *d, const char *part)
{
    size_t i;
    json_t *w;
    json_array_foreach(d->warnings, i, w)
    {
        if (strstr(json_string_value(w), part))
            return true;
    }
    return false;
}

/* Builds a router of the API's operations (each added must be accepted) and matches a request. */
static const char *route(const json_t *api, const char *method, const char *rest, const char *query)
{
    struct pt_router *r = pt_router_new();
    int a = pt_router_add_api(r, "svc", NULL, (void *)"svc");
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(api, "operations"), i, o)
    {
        const char *why = pt_router_add_op(r, a, json_string_value(json_object_get(o, "method")),
                                           json_string_value(json_object_get(o, "urlTemplate")),
                                           (void *)json_string_value(json_object_get(o, "id")), NULL);
        if (why)
            print_message("# template %s: %s\n", json_string_value(json_object_get(o, "urlTemplate")), why);
        assert_null(why);
    }
    pt_router_finish(r);
    struct pt_match m;
    enum pt_route_result res =
        pt_router_match_in(r, a, pt_str_c(method), pt_str_c(rest), pt_str_c(query), &m);
    const char *id = res == PT_ROUTE_OK ? m.op : NULL;
    pt_router_free(r);
    return id;
}

/* What the gateway does for an API of apiType soap: the query made from a request's SOAP action. */
static const char *soap_route(const json_t *api, const char *action)
{
    char q[600] = "soapAction=";
    pt_import_wsdl_action_query(action, strlen(action), q + 11, sizeof(q) - 11);
    return route(api, "POST", "/", q);
}

/* ------------------------------------------------------------------ WSDL */

static const char WSDL11[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
    "<wsdl:definitions xmlns:wsdl=\"http://schemas.xmlsoap.org/wsdl/\"\n"
    "    xmlns:soap=\"http://schemas.xmlsoap.org/wsdl/soap/\"\n"
    "    xmlns:soap12=\"http://schemas.xmlsoap.org/wsdl/soap12/\"\n"
    "    xmlns:xs=\"http://www.w3.org/2001/XMLSchema\"\n"
    "    xmlns:tns=\"urn:example:orders\" targetNamespace=\"urn:example:orders\">\n"
    "  <wsdl:types>\n"
    "    <xs:schema targetNamespace=\"urn:example:orders\" elementFormDefault=\"qualified\">\n"
    "      <xs:element name=\"GetOrder\"><xs:complexType><xs:sequence>\n"
    "        <xs:element name=\"id\" type=\"xs:int\"/></xs:sequence></xs:complexType></xs:element>\n"
    "      <xs:element name=\"GetOrderResponse\" type=\"tns:Order\"/>\n"
    "      <xs:complexType name=\"Order\"><xs:sequence><xs:element name=\"id\" type=\"xs:int\"/>\n"
    "        <xs:element name=\"item\" type=\"xs:string\"/></xs:sequence></xs:complexType>\n"
    "      <xs:element name=\"PlaceOrder\" type=\"tns:Order\"/>\n"
    "      <xs:element name=\"PlaceOrderResponse\" type=\"xs:int\"/>\n"
    "      <xs:element name=\"OrderFault\" type=\"xs:string\"/>\n"
    "    </xs:schema>\n"
    "  </wsdl:types>\n"
    "  <wsdl:message name=\"GetOrderIn\"><wsdl:part name=\"p\" element=\"tns:GetOrder\"/></wsdl:message>\n"
    "  <wsdl:message name=\"GetOrderOut\"><wsdl:part name=\"p\" "
    "element=\"tns:GetOrderResponse\"/></wsdl:message>\n"
    "  <wsdl:message name=\"PlaceOrderIn\"><wsdl:part name=\"p\" "
    "element=\"tns:PlaceOrder\"/></wsdl:message>\n"
    "  <wsdl:message name=\"PlaceOrderOut\"><wsdl:part name=\"p\" "
    "element=\"tns:PlaceOrderResponse\"/></wsdl:message>\n"
    "  <wsdl:message name=\"Fault\"><wsdl:part name=\"f\" element=\"tns:OrderFault\"/></wsdl:message>\n"
    "  <wsdl:portType name=\"OrdersPort\">\n"
    "    <wsdl:operation name=\"GetOrder\"><wsdl:documentation>Reads an order</wsdl:documentation>\n"
    "      <wsdl:input message=\"tns:GetOrderIn\"/><wsdl:output message=\"tns:GetOrderOut\"/>\n"
    "      <wsdl:fault name=\"NotFound\" message=\"tns:Fault\"/></wsdl:operation>\n"
    "    <wsdl:operation name=\"PlaceOrder\">\n"
    "      <wsdl:input message=\"tns:PlaceOrderIn\"/><wsdl:output "
    "message=\"tns:PlaceOrderOut\"/></wsdl:operation>\n"
    "  </wsdl:portType>\n"
    "  <wsdl:binding name=\"OrdersSoap\" type=\"tns:OrdersPort\">\n"
    "    <soap:binding transport=\"http://schemas.xmlsoap.org/soap/http\" style=\"document\"/>\n"
    "    <wsdl:operation name=\"GetOrder\"><soap:operation soapAction=\"urn:example:orders/GetOrder\"/>\n"
    "      <wsdl:input><soap:body use=\"literal\"/></wsdl:input>"
    "<wsdl:output><soap:body use=\"literal\"/></wsdl:output></wsdl:operation>\n"
    "    <wsdl:operation name=\"PlaceOrder\"><soap:operation "
    "soapAction=\"urn:example:orders/Place&amp;Go\"/>\n"
    "      <wsdl:input><soap:body use=\"literal\"/></wsdl:input>"
    "<wsdl:output><soap:body use=\"literal\"/></wsdl:output></wsdl:operation>\n"
    "  </wsdl:binding>\n"
    "  <wsdl:binding name=\"OrdersSoap12\" type=\"tns:OrdersPort\">\n"
    "    <soap12:binding transport=\"http://schemas.xmlsoap.org/soap/http\"/>\n"
    "    <wsdl:operation name=\"GetOrder\"><soap12:operation soapAction=\"urn:example:orders/GetOrder\"/>\n"
    "      <wsdl:input><soap12:body use=\"literal\"/></wsdl:input>"
    "<wsdl:output><soap12:body use=\"literal\"/></wsdl:output></wsdl:operation>\n"
    "    <wsdl:operation name=\"PlaceOrder\"><soap12:operation soapAction=\"\"/>\n"
    "      <wsdl:input><soap12:body use=\"literal\"/></wsdl:input>"
    "<wsdl:output><soap12:body use=\"literal\"/></wsdl:output></wsdl:operation>\n"
    "  </wsdl:binding>\n"
    "  <wsdl:service name=\"Orders\"><wsdl:documentation>The order desk</wsdl:documentation>\n"
    "    <wsdl:port name=\"OrdersSoap\" binding=\"tns:OrdersSoap\">\n"
    "      <soap:address location=\"http://127.0.0.1:9000/orders.svc\"/></wsdl:port>\n"
    "    <wsdl:port name=\"OrdersSoap12\" binding=\"tns:OrdersSoap12\">\n"
    "      <soap12:address location=\"http://127.0.0.1:9000/orders12.svc\"/></wsdl:port>\n"
    "  </wsdl:service>\n"
    "</wsdl:definitions>\n";

static void wsdl11_document_literal(void **state)
{
    (void)state;
    struct pt_import_doc d;
    assert_true(wsdl(WSDL11, NULL, NULL, &d));
    const json_t *api = d.api;
    assert_string_equal(str(api, "apiType"), "soap");
    assert_string_equal(str(api, "displayName"), "Orders");
    assert_string_equal(str(api, "description"), "The order desk");
    assert_string_equal(str(api, "serviceUrl"), "http://127.0.0.1:9000/orders.svc");
    assert_null(json_object_get(api, "id"));
    /* the first SOAP port of two, with a warning */
    assert_true(warned(&d, "'OrdersSoap' is imported"));
    /* schemas: the WSDL itself and its embedded schema, standalone */
    assert_int_equal(json_array_size(json_object_get(api, "schemas")), 2);
    assert_string_equal(str(api, "schemas/0/id"), "wsdl");
    assert_string_equal(str(api, "schemas/0/contentType"), "application/vnd.ms-azure-apim.wsdl+xml");
    assert_string_equal(str(api, "schemas/0/value"), WSDL11);
    assert_string_equal(str(api, "schemas/1/id"), "xsd");
    assert_string_equal(str(api, "schemas/1/contentType"), "application/vnd.ms-azure-apim.xsd+xml");
    const char *xsd = str(api, "schemas/1/value");
    assert_non_null(strstr(xsd, "targetNamespace=\"urn:example:orders\""));
    assert_non_null(strstr(xsd, "xmlns:tns=\"urn:example:orders\"")); /* declared on wsdl:definitions */
    assert_null(strstr(xsd, "wsdl:"));
    /* operations */
    assert_int_equal(json_array_size(json_object_get(api, "operations")), 2);
    json_t *g = op_by_id(api, "getorder");
    assert_non_null(g);
    assert_string_equal(str(g, "method"), "POST");
    assert_string_equal(str(g, "displayName"), "GetOrder");
    assert_string_equal(str(g, "description"), "Reads an order");
    assert_string_equal(str(g, "urlTemplate"), "/?soapAction=urn:example:orders/GetOrder");
    assert_string_equal(str(g, "request/representations/0/contentType"), "text/xml");
    assert_string_equal(str(g, "request/representations/0/typeName"), "GetOrder");
    assert_string_equal(str(g, "request/representations/0/schemaId"), "xsd");
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(json_object_get(g, "responses"), 0), "statusCode")),
        200);
    assert_string_equal(str(g, "responses/0/representations/0/typeName"), "GetOrderResponse");
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(json_object_get(g, "responses"), 1), "statusCode")),
        500);
    assert_string_equal(str(g, "responses/1/representations/0/typeName"), "OrderFault");
    json_t *p = op_by_id(api, "placeorder");
    assert_non_null(p);
    /* '&' would split the query: encoded */
    assert_string_equal(str(p, "urlTemplate"), "/?soapAction=urn:example:orders/Place%26Go");
    /* the router tells them apart by the action the gateway passes as the query */
    assert_string_equal(soap_route(api, "urn:example:orders/GetOrder"), "getorder");
    assert_string_equal(soap_route(api, "urn:example:orders/Place&Go"), "placeorder");
    assert_null(soap_route(api, "urn:example:orders/Other"));
    done(&d);
}

static void wsdl11_selectors(void **state)
{
    (void)state;
    struct pt_import_doc d;
    /* the SOAP 1.2 port by name; PlaceOrder has no action: "/" takes it (and unknown actions) */
    assert_true(wsdl(WSDL11, "Orders", "OrdersSoap12", &d));
    assert_int_equal(json_array_size(d.warnings), 0);
    assert_string_equal(str(d.api, "serviceUrl"), "http://127.0.0.1:9000/orders12.svc");
    json_t *p = op_by_id(d.api, "placeorder");
    assert_string_equal(str(p, "urlTemplate"), "/");
    assert_string_equal(str(p, "request/representations/0/contentType"), "application/soap+xml");
    assert_string_equal(soap_route(d.api, "urn:example:orders/GetOrder"), "getorder");
    assert_string_equal(soap_route(d.api, ""), "placeorder");
    assert_string_equal(route(d.api, "POST", "/", ""), "placeorder");
    done(&d);
    /* unknown names are errors that list what exists */
    assert_false(wsdl(WSDL11, "Nope", NULL, &d));
    assert_non_null(strstr(err, "no service is named 'Nope'"));
    assert_non_null(strstr(err, "'Orders'"));
    assert_null(d.api);
    assert_false(wsdl(WSDL11, NULL, "Nope", &d));
    assert_non_null(strstr(err, "no port named 'Nope'"));
    assert_non_null(strstr(err, "'OrdersSoap', 'OrdersSoap12'"));
}

/* Replaces the first `from` in WSDL11 by `to` (a test document of its own). */
static char *variant(const char *from, const char *to)
{
    const char *at = strstr(WSDL11, from);
    assert_non_null(at);
    size_t n = strlen(WSDL11) - strlen(from) + strlen(to);
    char *s = malloc(n + 1);
    size_t pre = (size_t)(at - WSDL11);
    memcpy(s, WSDL11, pre);
    strcpy(s + pre, to);
    strcat(s, at + strlen(from));
    return s;
}

static void refused(const char *from, const char *to, const char *what)
{
    struct pt_import_doc d;
    char *s = variant(from, to);
    assert_false(wsdl(s, NULL, NULL, &d));
    assert_null(d.api);
    assert_null(d.warnings);
    assert_non_null(strstr(err, what));
    assert_true(!strncmp(err, "line ", 5));
    free(s);
}

static void wsdl11_refusals(void **state)
{
    (void)state;
    refused("style=\"document\"", "style=\"rpc\"", "rpc style");
    refused("<soap:operation soapAction=\"urn:example:orders/GetOrder\"/>",
            "<soap:operation soapAction=\"urn:example:orders/GetOrder\" style=\"rpc\"/>", "rpc style");
    refused("<wsdl:input><soap:body use=\"literal\"/>", "<wsdl:input><soap:body use=\"encoded\"/>",
            "encoded");
    refused("<wsdl:types>",
            "<wsdl:import namespace=\"urn:x\" location=\"http://127.0.0.1:1/x.wsdl\"/><wsdl:types>",
            "wsdl:import is not supported");
    refused("<xs:element name=\"GetOrder\">",
            "<xs:import namespace=\"urn:x\" schemaLocation=\"file:///etc/passwd\"/><xs:element "
            "name=\"GetOrder\">",
            "xsd:import of another document");
    refused("<xs:element name=\"GetOrder\">",
            "<xs:include schemaLocation=\"x.xsd\"/><xs:element name=\"GetOrder\">", "xsd:include");
    refused(
        "<wsdl:part name=\"p\" element=\"tns:GetOrder\"/>",
        "<wsdl:part name=\"p\" element=\"tns:GetOrder\"/><wsdl:part name=\"q\" element=\"tns:GetOrder\"/>",
        "2 parts");
    refused("binding=\"tns:OrdersSoap\"", "binding=\"tns:Missing\"", "");
}

static void wsdl11_duplicate_actions(void **state)
{
    (void)state;
    struct pt_import_doc d;
    char *s = variant("soapAction=\"urn:example:orders/Place&amp;Go\"",
                      "soapAction=\"urn:example:orders/GetOrder\"");
    assert_true(wsdl(s, NULL, "OrdersSoap", &d));
    assert_int_equal(json_array_size(json_object_get(d.api, "operations")), 1);
    assert_true(warned(&d, "same soapAction"));
    done(&d);
    free(s);
    /* several parts, but soap:body names the one that is the body */
    s = variant(
        "<wsdl:part name=\"p\" element=\"tns:GetOrder\"/>",
        "<wsdl:part name=\"h\" element=\"tns:OrderFault\"/><wsdl:part name=\"p\" element=\"tns:GetOrder\"/>");
    char *s2 = malloc(strlen(s) + 64);
    const char *at = strstr(s, "<wsdl:input><soap:body use=\"literal\"/>");
    size_t pre = (size_t)(at - s);
    memcpy(s2, s, pre);
    strcpy(s2 + pre, "<wsdl:input><soap:body use=\"literal\" parts=\"p\"/>");
    strcat(s2, at + strlen("<wsdl:input><soap:body use=\"literal\"/>"));
    assert_true(wsdl(s2, NULL, "OrdersSoap", &d));
    assert_string_equal(str(op_by_id(d.api, "getorder"), "request/representations/0/typeName"), "GetOrder");
    done(&d);
    free(s);
    free(s2);
}

static void wsdl_hostile(void **state)
{
    (void)state;
    struct pt_import_doc d;
    /* XXE: the DOCTYPE is refused before any entity is declared or read */
    const char *xxe = "<?xml version=\"1.0\"?>\n"
                      "<!DOCTYPE d [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\n"
                      "<wsdl:definitions xmlns:wsdl=\"http://schemas.xmlsoap.org/wsdl/\">"
                      "<wsdl:documentation>&x;</wsdl:documentation></wsdl:definitions>";
    assert_false(wsdl(xxe, NULL, NULL, &d));
    assert_non_null(strstr(err, "DOCTYPE"));
    assert_null(strstr(err, "root:"));
    assert_false(odata(xxe, &d));
    assert_non_null(strstr(err, "DOCTYPE"));
    /* an external DTD alone */
    assert_false(wsdl("<!DOCTYPE d SYSTEM \"file:///etc/passwd\"><wsdl:definitions "
                      "xmlns:wsdl=\"http://schemas.xmlsoap.org/wsdl/\"/>",
                      NULL, NULL, &d));
    assert_non_null(strstr(err, "DOCTYPE"));
    /* billion laughs */
    const char *lol =
        "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b "
        "\"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]><l>&c;</l>";
    assert_false(wsdl(lol, NULL, NULL, &d));
    assert_non_null(strstr(err, "DOCTYPE"));
    /* not XML, not WSDL, empty, too large */
    assert_false(wsdl("{\"openapi\": \"3.0.0\"}", NULL, NULL, &d));
    assert_non_null(strstr(err, "line 1"));
    assert_false(wsdl("<a/>", NULL, NULL, &d));
    assert_non_null(strstr(err, "not wsdl:definitions"));
    assert_false(wsdl("", NULL, NULL, &d));
    size_t big = 4u * 1024 * 1024 + 1;
    char *b = malloc(big + 1);
    memset(b, ' ', big);
    b[big] = '\0';
    memcpy(b, "<a>", 3);
    assert_false(pt_import_wsdl_convert(b, big, NULL, NULL, &d, err, sizeof(err)));
    assert_non_null(strstr(err, "4 MB"));
    free(b);
    /* deep nesting stops at libxml2's limit (no HUGE) */
    size_t depth = 5000;
    b = malloc(depth * 7 + 1);
    size_t n = 0;
    for (size_t i = 0; i < depth; i++)
        n += (size_t)sprintf(b + n, "<a>");
    for (size_t i = 0; i < depth; i++)
        n += (size_t)sprintf(b + n, "</a>");
    assert_false(pt_import_wsdl_convert(b, n, NULL, NULL, &d, err, sizeof(err)));
    free(b);
}

static const char WSDL20[] =
    "<?xml version=\"1.0\"?>\n"
    "<description xmlns=\"http://www.w3.org/ns/wsdl\" xmlns:wsoap=\"http://www.w3.org/ns/wsdl/soap\"\n"
    "    xmlns:tns=\"urn:example:greet\" xmlns:x=\"urn:example:greet:types\" "
    "targetNamespace=\"urn:example:greet\">\n"
    "  <types><xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" "
    "targetNamespace=\"urn:example:greet:types\">\n"
    "    <xs:element name=\"hello\" type=\"xs:string\"/><xs:element name=\"helloResponse\" "
    "type=\"xs:string\"/>\n"
    "    <xs:element name=\"bye\" type=\"xs:string\"/><xs:element name=\"oops\" type=\"xs:string\"/>\n"
    "  </xs:schema></types>\n"
    "  <interface name=\"Greeter\">\n"
    "    <fault name=\"Oops\" element=\"x:oops\"/>\n"
    "    <operation name=\"Hello\" pattern=\"http://www.w3.org/ns/wsdl/in-out\">\n"
    "      <input element=\"x:hello\"/><output element=\"x:helloResponse\"/><outfault "
    "ref=\"tns:Oops\"/></operation>\n"
    "    <operation name=\"Bye\" pattern=\"http://www.w3.org/ns/wsdl/in-only\"><input "
    "element=\"x:bye\"/></operation>\n"
    "  </interface>\n"
    "  <binding name=\"GreeterSoap\" interface=\"tns:Greeter\" type=\"http://www.w3.org/ns/wsdl/soap\"\n"
    "      wsoap:protocol=\"http://www.w3.org/2003/05/soap/bindings/HTTP/\">\n"
    "    <operation ref=\"tns:Hello\" wsoap:action=\"urn:example:greet/Hello\"/>\n"
    "    <operation ref=\"tns:Bye\" wsoap:action=\"urn:example:greet/Bye\"/>\n"
    "  </binding>\n"
    "  <service name=\"GreetService\" interface=\"tns:Greeter\">\n"
    "    <endpoint name=\"GreetEndpoint\" binding=\"tns:GreeterSoap\" "
    "address=\"http://127.0.0.1:9001/greet\"/>\n"
    "  </service>\n"
    "</description>\n";

static void wsdl20_soap12(void **state)
{
    (void)state;
    struct pt_import_doc d;
    assert_true(wsdl(WSDL20, NULL, NULL, &d));
    assert_int_equal(json_array_size(d.warnings), 0);
    assert_string_equal(str(d.api, "apiType"), "soap");
    assert_string_equal(str(d.api, "displayName"), "GreetService");
    assert_string_equal(str(d.api, "serviceUrl"), "http://127.0.0.1:9001/greet");
    assert_string_equal(str(d.api, "schemas/1/id"), "xsd");
    json_t *h = op_by_id(d.api, "hello");
    assert_non_null(h);
    assert_string_equal(str(h, "urlTemplate"), "/?soapAction=urn:example:greet/Hello");
    assert_string_equal(str(h, "request/representations/0/contentType"), "application/soap+xml");
    assert_string_equal(str(h, "request/representations/0/typeName"), "hello");
    assert_string_equal(str(h, "request/representations/0/schemaId"), "xsd");
    assert_string_equal(str(h, "responses/0/representations/0/typeName"), "helloResponse");
    assert_string_equal(str(h, "responses/1/representations/0/typeName"), "oops");
    json_t *b = op_by_id(d.api, "bye");
    assert_non_null(b);
    assert_int_equal(json_array_size(json_object_get(b, "responses")), 0);
    assert_string_equal(soap_route(d.api, "urn:example:greet/Bye"), "bye");
    done(&d);
    /* wsoap:version 1.1 */
    const char *at = strstr(WSDL20, "wsoap:protocol=");
    char *s = malloc(strlen(WSDL20) + 32);
    memcpy(s, WSDL20, (size_t)(at - WSDL20));
    strcpy(s + (at - WSDL20), "wsoap:version=\"1.1\" ");
    strcat(s, at);
    assert_true(wsdl(s, "GreetService", "GreetEndpoint", &d));
    assert_string_equal(str(op_by_id(d.api, "hello"), "request/representations/0/contentType"), "text/xml");
    done(&d);
    free(s);
}

/* ----------------------------------------------------------------- OData */

static const char ODATA4[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
    "<edmx:Edmx Version=\"4.0\" xmlns:edmx=\"http://docs.oasis-open.org/odata/ns/edmx\">\n"
    "  <edmx:DataServices>\n"
    "    <Schema Namespace=\"Trip.Models\" Alias=\"T\" xmlns=\"http://docs.oasis-open.org/odata/ns/edm\">\n"
    "      <EntityType Name=\"Person\"><Key><PropertyRef Name=\"UserName\"/></Key>\n"
    "        <Property Name=\"UserName\" Type=\"Edm.String\" Nullable=\"false\"/>\n"
    "        <Property Name=\"Age\" Type=\"Edm.Int32\"/></EntityType>\n"
    "      <EntityType Name=\"Employee\" BaseType=\"T.Person\"><Property Name=\"Dept\" Type=\"Edm.String\"/>"
    "</EntityType>\n"
    "      <EntityType Name=\"Line\"><Key><PropertyRef Name=\"OrderId\"/><PropertyRef Name=\"No\"/></Key>\n"
    "        <Property Name=\"OrderId\" Type=\"Edm.Int32\"/><Property Name=\"No\" Type=\"Edm.Int16\"/>"
    "</EntityType>\n"
    "      <Function Name=\"GetNearest\"><Parameter Name=\"lat\" Type=\"Edm.Double\"/>"
    "<Parameter Name=\"lon\" Type=\"Edm.Double\"/><ReturnType Type=\"T.Person\"/></Function>\n"
    "      <Function Name=\"Friends\" IsBound=\"true\"><Parameter Name=\"p\" Type=\"T.Person\"/>"
    "<ReturnType Type=\"Collection(T.Person)\"/></Function>\n"
    "      <Action Name=\"Reset\"/>\n"
    "      <Action Name=\"Promote\" IsBound=\"true\"><Parameter Name=\"e\" "
    "Type=\"Collection(Trip.Models.Employee)\"/>"
    "</Action>\n"
    "      <EntityContainer Name=\"TripContainer\">\n"
    "        <EntitySet Name=\"People\" EntityType=\"T.Person\"/>\n"
    "        <EntitySet Name=\"Staff\" EntityType=\"Trip.Models.Employee\"/>\n"
    "        <EntitySet Name=\"Lines\" EntityType=\"T.Line\"/>\n"
    "        <FunctionImport Name=\"GetNearest\" Function=\"T.GetNearest\"/>\n"
    "        <ActionImport Name=\"Reset\" Action=\"T.Reset\"/>\n"
    "        <Singleton Name=\"Me\" Type=\"T.Person\"/>\n"
    "      </EntityContainer>\n"
    "    </Schema>\n"
    "  </edmx:DataServices>\n"
    "</edmx:Edmx>\n";

static void odata_v4(void **state)
{
    (void)state;
    struct pt_import_doc d;
    assert_true(odata(ODATA4, &d));
    const json_t *api = d.api;
    assert_string_equal(str(api, "apiType"), "http");
    assert_string_equal(str(api, "displayName"), "TripContainer");
    assert_string_equal(str(api, "schemas/0/id"), "odata");
    assert_string_equal(str(api, "schemas/0/contentType"), "application/vnd.ms-azure-apim.odata.schema");
    assert_string_equal(str(api, "schemas/0/value"), ODATA4);
    assert_string_equal(str(op_by_id(api, "get-metadata"), "urlTemplate"), "/$metadata");
    assert_string_equal(str(op_by_id(api, "get-people"), "urlTemplate"), "/People");
    assert_string_equal(str(op_by_id(api, "get-people"), "request/queryParameters/6/name"), "$count");
    assert_string_equal(str(op_by_id(api, "create-people"), "method"), "POST");
    json_t *k = op_by_id(api, "get-people-by-key");
    assert_string_equal(str(k, "urlTemplate"), "/People({UserName})");
    assert_string_equal(str(k, "templateParameters/0/name"), "UserName");
    assert_string_equal(str(k, "templateParameters/0/type"), "string");
    assert_string_equal(str(op_by_id(api, "update-people"), "method"), "PATCH");
    assert_string_equal(str(op_by_id(api, "replace-people"), "method"), "PUT");
    assert_string_equal(str(op_by_id(api, "delete-people"), "method"), "DELETE");
    /* the key of a derived type comes from its base */
    assert_string_equal(str(op_by_id(api, "get-staff-by-key"), "urlTemplate"), "/Staff({UserName})");
    /* composite keys */
    json_t *l = op_by_id(api, "get-lines-by-key");
    assert_string_equal(str(l, "urlTemplate"), "/Lines(OrderId={OrderId},No={No})");
    assert_string_equal(str(l, "templateParameters/1/type"), "integer");
    /* function and action imports, bound operations */
    assert_string_equal(str(op_by_id(api, "getnearest"), "urlTemplate"), "/GetNearest(lat={lat},lon={lon})");
    assert_string_equal(str(op_by_id(api, "getnearest"), "method"), "GET");
    assert_string_equal(str(op_by_id(api, "reset"), "urlTemplate"), "/Reset");
    assert_string_equal(str(op_by_id(api, "reset"), "method"), "POST");
    assert_string_equal(str(op_by_id(api, "people-friends"), "urlTemplate"),
                        "/People({UserName})/Trip.Models.Friends()");
    assert_string_equal(str(op_by_id(api, "staff-promote"), "urlTemplate"), "/Staff/Trip.Models.Promote");
    assert_string_equal(str(op_by_id(api, "get-me"), "urlTemplate"), "/Me");
    /* every template is one the router takes, and requests reach them */
    assert_string_equal(route(api, "GET", "/People('russell')", ""), "get-people-by-key");
    assert_string_equal(route(api, "DELETE", "/Lines(OrderId=1,No=2)", ""), "delete-lines");
    assert_string_equal(route(api, "GET", "/People", "$top=2"), "get-people");
    assert_string_equal(route(api, "GET", "/$metadata", ""), "get-metadata");
    assert_string_equal(route(api, "GET", "/GetNearest(lat=1.5,lon=2)", ""), "getnearest");
    done(&d);
}

static const char ODATA2[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\" standalone=\"yes\"?>\n"
    "<edmx:Edmx Version=\"1.0\" xmlns:edmx=\"http://schemas.microsoft.com/ado/2007/06/edmx\">\n"
    "  <edmx:DataServices m:DataServiceVersion=\"2.0\" "
    "xmlns:m=\"http://schemas.microsoft.com/ado/2007/08/dataservices/metadata\">\n"
    "    <Schema Namespace=\"NW\" xmlns=\"http://schemas.microsoft.com/ado/2008/09/edm\">\n"
    "      <EntityType Name=\"Product\"><Key><PropertyRef Name=\"ProductID\"/></Key>\n"
    "        <Property Name=\"ProductID\" Type=\"Edm.Int32\" Nullable=\"false\"/></EntityType>\n"
    "    </Schema>\n"
    "    <Schema Namespace=\"NW.Container\" xmlns=\"http://schemas.microsoft.com/ado/2008/09/edm\">\n"
    "      <EntityContainer Name=\"NorthwindEntities\" m:IsDefaultEntityContainer=\"true\">\n"
    "        <EntitySet Name=\"Products\" EntityType=\"NW.Product\"/>\n"
    "        <FunctionImport Name=\"TopProducts\" EntitySet=\"Products\" "
    "ReturnType=\"Collection(NW.Product)\" "
    "m:HttpMethod=\"GET\"><Parameter Name=\"count\" Type=\"Edm.Int32\" Mode=\"In\"/></FunctionImport>\n"
    "        <FunctionImport Name=\"Discontinue\" m:HttpMethod=\"POST\"/>\n"
    "      </EntityContainer>\n"
    "    </Schema>\n"
    "  </edmx:DataServices>\n"
    "</edmx:Edmx>\n";

static void odata_v2(void **state)
{
    (void)state;
    struct pt_import_doc d;
    assert_true(odata(ODATA2, &d));
    const json_t *api = d.api;
    assert_string_equal(str(api, "displayName"), "NorthwindEntities");
    assert_string_equal(str(op_by_id(api, "get-products-by-key"), "urlTemplate"), "/Products({ProductID})");
    assert_string_equal(str(op_by_id(api, "get-products-by-key"), "templateParameters/0/type"), "integer");
    assert_string_equal(str(op_by_id(api, "get-products"), "request/queryParameters/6/name"), "$inlinecount");
    json_t *t = op_by_id(api, "topproducts");
    assert_string_equal(str(t, "urlTemplate"), "/TopProducts");
    assert_string_equal(str(t, "method"), "GET");
    assert_string_equal(str(t, "request/queryParameters/0/name"), "count");
    assert_string_equal(str(op_by_id(api, "discontinue"), "method"), "POST");
    assert_string_equal(route(api, "GET", "/Products(7)", ""), "get-products-by-key");
    done(&d);
    /* refusals */
    assert_false(odata("<edmx:Edmx xmlns:edmx=\"http://docs.oasis-open.org/odata/ns/edmx\"/>", &d));
    assert_non_null(strstr(err, "no edmx:DataServices"));
    assert_false(odata("<Edmx/>", &d));
    assert_non_null(strstr(err, "not edmx:Edmx"));
    assert_false(
        odata("<edmx:Edmx xmlns:edmx=\"http://docs.oasis-open.org/odata/ns/edmx\"><edmx:DataServices/>"
              "</edmx:Edmx>",
              &d));
    assert_non_null(strstr(err, "no EntityContainer"));
    /* names that are not identifiers, and two operations that would be the same request */
    const char *odd =
        "<edmx:Edmx xmlns:edmx=\"http://schemas.microsoft.com/ado/2007/06/edmx\"><edmx:DataServices "
        "xmlns:m=\"http://schemas.microsoft.com/ado/2007/08/dataservices/metadata\"><Schema "
        "Namespace=\"N\" xmlns=\"http://schemas.microsoft.com/ado/2008/09/edm\"><EntityContainer "
        "Name=\"C\"><EntitySet Name=\"A(B\" EntityType=\"N.T\"/><EntitySet Name=\"P\" "
        "EntityType=\"N.T\"/><EntitySet Name=\"P\" EntityType=\"N.T\"/><FunctionImport Name=\"P\"/>"
        "</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>";
    assert_true(odata(odd, &d));
    assert_true(warned(&d, "'A(B' has a name that is not an OData identifier"));
    assert_true(warned(&d, "would be GET /P like 'Get P'"));
    assert_int_equal(json_array_size(json_object_get(d.api, "operations")),
                     3); /* $metadata, GET and POST /P */
    assert_non_null(route(d.api, "GET", "/P", ""));
    done(&d);
    assert_false(odata("<edmx:Edmx", &d));
    assert_non_null(strstr(err, "line 1"));
}

/* ------------------------------------------------------------------- XSD */

static const char XSD[] =
    "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" targetNamespace=\"urn:o\"\n"
    "    xmlns:o=\"urn:o\" elementFormDefault=\"qualified\">\n"
    "  <xs:element name=\"order\"><xs:complexType><xs:sequence>\n"
    "    <xs:element name=\"id\" type=\"xs:int\"/>\n"
    "    <xs:element name=\"item\" type=\"xs:string\" maxOccurs=\"3\"/>\n"
    "  </xs:sequence></xs:complexType></xs:element>\n"
    "</xs:schema>\n";

static bool xsd_check(const struct ptl_xsd *s, const char *xml, int mode, char *msg)
{
    bool ok = ptl_xsd_validate(s, xml, strlen(xml), mode, msg, 256);
    if (!ok)
        print_message("# %s\n", msg);
    return ok;
}

static void xsd_documents(void **state)
{
    (void)state;
    char msg[256];
    struct ptl_xsd *s = ptl_xsd_compile(XSD, strlen(XSD), msg, sizeof(msg));
    assert_non_null(s);
    assert_true(
        xsd_check(s, "<order xmlns=\"urn:o\"><id>1</id><item>a</item></order>", PTL_XSD_DOCUMENT, msg));
    assert_false(
        xsd_check(s, "<order xmlns=\"urn:o\">\n<id>x</id><item>a</item></order>", PTL_XSD_DOCUMENT, msg));
    assert_non_null(strstr(msg, "line 2"));
    assert_false(xsd_check(s, "<order xmlns=\"urn:o\"><id>1</id></order>", PTL_XSD_DOCUMENT, msg));
    assert_false(xsd_check(s, "<other/>", PTL_XSD_DOCUMENT, msg));
    assert_false(xsd_check(s, "<order", PTL_XSD_DOCUMENT, msg));
    assert_non_null(strstr(msg, "line 1"));
    assert_false(xsd_check(s,
                           "<!DOCTYPE o [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
                           "<order xmlns=\"urn:o\"><id>1</id><item>&x;</item></order>",
                           PTL_XSD_DOCUMENT, msg));
    assert_non_null(strstr(msg, "DOCTYPE"));
    ptl_xsd_free(s);
    /* schemas that are not, or that point elsewhere */
    assert_null(ptl_xsd_compile("<a/>", 4, msg, sizeof(msg)));
    assert_null(ptl_xsd_compile("<xs:schema", 10, msg, sizeof(msg)));
    const char *inc = "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\">"
                      "<xs:include schemaLocation=\"file:///etc/passwd\"/>"
                      "<xs:element name=\"a\" type=\"xs:string\"/></xs:schema>";
    s = ptl_xsd_compile(inc, strlen(inc), msg, sizeof(msg));
    if (s) /* libxml2 may only warn about the include it could not load: it loaded nothing */
        ptl_xsd_free(s);
    else
        print_message("# include refused: %s\n", msg);
    const char *bad = "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\">"
                      "<xs:element name=\"a\" type=\"xs:nope\"/></xs:schema>";
    assert_null(ptl_xsd_compile(bad, strlen(bad), msg, sizeof(msg)));
    assert_non_null(strstr(msg, "line 1"));
}

static void xsd_soap(void **state)
{
    (void)state;
    char msg[256];
    struct ptl_xsd *s = ptl_xsd_compile(XSD, strlen(XSD), msg, sizeof(msg));
    assert_non_null(s);
    const char *ok11 =
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Header/>"
        "<s:Body><order xmlns=\"urn:o\"><id>1</id><item>a</item></order></s:Body></s:Envelope>";
    assert_true(xsd_check(s, ok11, PTL_XSD_SOAP_BODY, msg));
    const char *ok12 =
        "<e:Envelope xmlns:e=\"http://www.w3.org/2003/05/soap-envelope\">"
        "<e:Body><order xmlns=\"urn:o\"><id>1</id><item>a</item></order></e:Body></e:Envelope>";
    assert_true(xsd_check(s, ok12, PTL_XSD_SOAP_BODY, msg));
    const char *bad = "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\">\n<s:Body>\n"
                      "<order xmlns=\"urn:o\"><id>1</id><item>a</item><item>b</item><item>c</item>"
                      "<item>d</item></order></s:Body></s:Envelope>";
    assert_false(xsd_check(s, bad, PTL_XSD_SOAP_BODY, msg));
    assert_non_null(strstr(msg, "line 3"));
    assert_false(
        xsd_check(s, "<order xmlns=\"urn:o\"><id>1</id><item>a</item></order>", PTL_XSD_SOAP_BODY, msg));
    assert_non_null(strstr(msg, "not a SOAP"));
    assert_false(xsd_check(s, "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"/>",
                           PTL_XSD_SOAP_BODY, msg));
    assert_non_null(strstr(msg, "no Body"));
    assert_false(xsd_check(
        s, "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body/></s:Envelope>",
        PTL_XSD_SOAP_BODY, msg));
    assert_non_null(strstr(msg, "empty"));
    ptl_xsd_free(s);
}

/* One compiled schema, validated from several threads at once (one validation context per call). */
struct worker {
    const struct ptl_xsd *s;
    int bad;
};

static void *validate_many(void *arg)
{
    struct worker *w = arg;
    char msg[256];
    for (int i = 0; i < 300; i++) {
        bool want = i % 2 == 0;
        const char *doc = want ? "<order xmlns=\"urn:o\"><id>1</id><item>a</item></order>"
                               : "<order xmlns=\"urn:o\"><id>z</id><item>a</item></order>";
        if (ptl_xsd_validate(w->s, doc, strlen(doc), PTL_XSD_DOCUMENT, msg, sizeof(msg)) != want)
            w->bad++;
    }
    return NULL;
}

static void xsd_threads(void **state)
{
    (void)state;
    char msg[256];
    struct ptl_xsd *s = ptl_xsd_compile(XSD, strlen(XSD), msg, sizeof(msg));
    assert_non_null(s);
    pthread_t t[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){s, 0};
        assert_int_equal(pthread_create(&t[i], NULL, validate_many, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].bad, 0);
    }
    ptl_xsd_free(s);
}

/* Several schemas that import each other's namespaces without a location, compiled together. */
static void xsd_set(void **state)
{
    (void)state;
    char msg[256];
    const char *a = "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" targetNamespace=\"urn:a\"\n"
                    "    xmlns:b=\"urn:b\" elementFormDefault=\"qualified\">\n"
                    "  <xs:import namespace=\"urn:b\"/>\n"
                    "  <xs:element name=\"order\" type=\"b:Order\"/>\n"
                    "</xs:schema>";
    const char *b = "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" targetNamespace=\"urn:b\"\n"
                    "    elementFormDefault=\"qualified\">\n"
                    "  <xs:complexType name=\"Order\"><xs:sequence><xs:element name=\"n\" type=\"xs:int\"/>"
                    "</xs:sequence></xs:complexType>\n"
                    "</xs:schema>";
    const char *c = "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\">"
                    "<xs:element name=\"plain\" type=\"xs:boolean\"/></xs:schema>";
    const char *texts[] = {a, b, c};
    size_t lens[] = {strlen(a), strlen(b), strlen(c)};
    /* alone, the first cannot resolve b:Order */
    assert_null(ptl_xsd_compile(a, lens[0], msg, sizeof(msg)));
    struct ptl_xsd *s = ptl_xsd_compile_set(texts, lens, 3, msg, sizeof(msg));
    if (!s)
        print_message("# %s\n", msg);
    assert_non_null(s);
    assert_true(
        xsd_check(s, "<order xmlns=\"urn:a\"><n xmlns=\"urn:b\">3</n></order>", PTL_XSD_DOCUMENT, msg));
    assert_false(
        xsd_check(s, "<order xmlns=\"urn:a\"><n xmlns=\"urn:b\">x</n></order>", PTL_XSD_DOCUMENT, msg));
    assert_true(xsd_check(s, "<plain>true</plain>", PTL_XSD_DOCUMENT, msg));
    ptl_xsd_free(s);
    /* the same namespace twice, a DOCTYPE, or a location that is not one of the set: refused */
    const char *twice[] = {b, b};
    size_t tl[] = {lens[1], lens[1]};
    assert_null(ptl_xsd_compile_set(twice, tl, 2, msg, sizeof(msg)));
    assert_non_null(strstr(msg, "same target namespace"));
    const char *dt = "<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><x>&e;</x>";
    const char *bad[] = {a, dt};
    size_t bl[] = {lens[0], strlen(dt)};
    assert_null(ptl_xsd_compile_set(bad, bl, 2, msg, sizeof(msg)));
    assert_non_null(strstr(msg, "schema 2: "));
    assert_non_null(strstr(msg, "DOCTYPE"));
    const char *esc = "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" targetNamespace=\"urn:e\">"
                      "<xs:include schemaLocation=\"portico-xsd:0\"/><xs:import namespace=\"urn:z\" "
                      "schemaLocation=\"file:///etc/passwd\"/></xs:schema>";
    const char *esc_set[] = {esc, b};
    size_t el[] = {strlen(esc), lens[1]};
    s = ptl_xsd_compile_set(esc_set, el, 2, msg, sizeof(msg));
    if (s) /* what loaded was only the set's own text */
        ptl_xsd_free(s);
}

/* The embedded schema a WSDL import stores validates a SOAP request for its operation. */
static void wsdl_schema_validates(void **state)
{
    (void)state;
    struct pt_import_doc d;
    assert_true(wsdl(WSDL11, NULL, "OrdersSoap", &d));
    const char *xsd = str(d.api, "schemas/1/value");
    char msg[256];
    struct ptl_xsd *s = ptl_xsd_compile(xsd, strlen(xsd), msg, sizeof(msg));
    if (!s)
        print_message("# %s\n", msg);
    assert_non_null(s);
    const char *req = "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>"
                      "<GetOrder xmlns=\"urn:example:orders\"><id>5</id></GetOrder></s:Body></s:Envelope>";
    assert_true(xsd_check(s, req, PTL_XSD_SOAP_BODY, msg));
    const char *bad = "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>"
                      "<GetOrder xmlns=\"urn:example:orders\"><id>five</id></GetOrder></s:Body></s:Envelope>";
    assert_false(xsd_check(s, bad, PTL_XSD_SOAP_BODY, msg));
    ptl_xsd_free(s);
    done(&d);
}

int main(void)
{
    ptl_xsd_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(wsdl11_document_literal),
        cmocka_unit_test(wsdl11_selectors),
        cmocka_unit_test(wsdl11_refusals),
        cmocka_unit_test(wsdl11_duplicate_actions),
        cmocka_unit_test(wsdl_hostile),
        cmocka_unit_test(wsdl20_soap12),
        cmocka_unit_test(odata_v4),
        cmocka_unit_test(odata_v2),
        cmocka_unit_test(xsd_documents),
        cmocka_unit_test(xsd_soap),
        cmocka_unit_test(xsd_threads),
        cmocka_unit_test(wsdl_schema_validates),
        cmocka_unit_test(xsd_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
