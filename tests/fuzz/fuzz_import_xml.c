/*
 * fuzz_import_xml -- the WSDL and OData $metadata converters
 * (pt_import_wsdl_convert, pt_import_odata_convert) on arbitrary bytes, as
 * an API provider may upload them.
 *
 * Whatever the bytes, each converter either fails with a terminated message
 * and no result, or returns an API object and a warnings array whose
 * operations the router accepts (valid templates, no two alike); it never
 * reads or writes out of bounds or leaks (run under ASan).  WSDL is read
 * once without selectors and once with the service/endpoint names the first
 * byte picks (the driver's own byte, as standalone.c provides; the document
 * is the rest), so the selection paths are exercised too.
 */
#include "conf/pt_import_odata.h"
#include "conf/pt_import_wsdl.h"
#include "conf/pt_router.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, struct pt_import_doc *d, const char *err, size_t errlen)
{
    if (!memchr(err, '\0', errlen))
        abort();
    if (ok) {
        if (!json_is_object(d->api) || !json_is_array(d->warnings) ||
            !json_is_array(json_object_get(d->api, "operations")))
            abort();
        char *s = json_dumps(d->api, 0); /* every string is valid UTF-8 */
        if (!s)
            abort();
        free(s);
        /* every operation is one the router takes: a valid template, no two alike */
        struct pt_router *r = pt_router_new();
        int a = pt_router_add_api(r, "x", NULL, NULL);
        size_t i;
        json_t *op;
        json_array_foreach(json_object_get(d->api, "operations"), i, op)
        {
            const char *m = json_string_value(json_object_get(op, "method"));
            const char *t = json_string_value(json_object_get(op, "urlTemplate"));
            const char *why = m && t ? pt_router_add_op(r, a, m, t, op, NULL) : "no method or template";
            if (why) {
                fprintf(stderr, "%s %s: %s\n", m ? m : "", t ? t : "", why);
                abort();
            }
        }
        pt_router_free(r);
    } else if (d->api || d->warnings || !err[0])
        abort();
    json_decref(d->api);
    json_decref(d->warnings);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const services[] = {NULL, "S", "Orders", ""};
    static const char *const endpoints[] = {NULL, "P", "OrdersSoap12", ""};
    if (!size)
        return 0;
    unsigned sel = data[0];
    data++;
    size--;
    char err[256];
    struct pt_import_doc d;
    memset(err, 0x5a, sizeof(err));
    bool ok = pt_import_wsdl_convert((const char *)data, size, services[sel & 3], endpoints[(sel >> 2) & 3],
                                     &d, err, sizeof(err));
    check(ok, &d, err, sizeof(err));
    memset(err, 0x5a, sizeof(err));
    ok = pt_import_odata_convert((const char *)data, size, &d, err, sizeof(err));
    check(ok, &d, err, sizeof(err));
    return 0;
}

/* Seeds for the standalone runner (standalone.c): documents, after the first byte it adds. */
const char *fuzz_name = "fuzz_import_xml";
const char *const fuzz_seeds[] = {
    "<definitions xmlns=\"http://schemas.xmlsoap.org/wsdl/\" "
    "xmlns:soap=\"http://schemas.xmlsoap.org/wsdl/soap/\" "
    "xmlns:t=\"urn:t\" targetNamespace=\"urn:t\"><types><s:schema "
    "xmlns:s=\"http://www.w3.org/2001/XMLSchema\" "
    "targetNamespace=\"urn:t\"><s:element name=\"A\" type=\"s:string\"/></s:schema></types>"
    "<message name=\"M\"><part name=\"p\" element=\"t:A\"/></message><portType name=\"PT\"><operation "
    "name=\"Op\">"
    "<input message=\"t:M\"/><output message=\"t:M\"/><fault name=\"F\" "
    "message=\"t:M\"/></operation></portType>"
    "<binding name=\"B\" type=\"t:PT\"><soap:binding style=\"document\"/><operation name=\"Op\">"
    "<soap:operation soapAction=\"urn:a&amp;b\"/><input><soap:body use=\"literal\" parts=\"p\"/></input>"
    "<output><soap:body use=\"literal\"/></output></operation></binding>"
    "<service name=\"S\"><port name=\"P\" binding=\"t:B\"><soap:address "
    "location=\"http://127.0.0.1/x\"/></port>"
    "</service></definitions>",
    "<description xmlns=\"http://www.w3.org/ns/wsdl\" xmlns:wsoap=\"http://www.w3.org/ns/wsdl/soap\" "
    "xmlns:t=\"urn:t\" targetNamespace=\"urn:t\"><interface name=\"I\"><fault name=\"F\" element=\"t:f\"/>"
    "<operation name=\"Op\"><input element=\"t:a\"/><output element=\"#any\"/><outfault "
    "ref=\"t:F\"/></operation>"
    "</interface><binding name=\"B\" interface=\"t:I\" type=\"http://www.w3.org/ns/wsdl/soap\" "
    "wsoap:version=\"1.1\">"
    "<operation ref=\"t:Op\" wsoap:action=\"urn:op\"/></binding><service name=\"S\" interface=\"t:I\">"
    "<endpoint name=\"P\" binding=\"t:B\" address=\"http://127.0.0.1/y\"/></service></description>",
    "<edmx:Edmx Version=\"4.0\" xmlns:edmx=\"http://docs.oasis-open.org/odata/ns/edmx\"><edmx:DataServices>"
    "<Schema Namespace=\"N\" Alias=\"A\" xmlns=\"http://docs.oasis-open.org/odata/ns/edm\">"
    "<EntityType Name=\"E\"><Key><PropertyRef Name=\"Id\"/><PropertyRef Name=\"K\"/></Key>"
    "<Property Name=\"Id\" Type=\"Edm.Int32\"/></EntityType><EntityType Name=\"D\" BaseType=\"A.E\"/>"
    "<EntityType Name=\"L\" BaseType=\"A.L\"/>"
    "<Function Name=\"F\"><Parameter Name=\"x\" Type=\"Edm.String\"/></Function>"
    "<Function Name=\"G\" IsBound=\"true\"><Parameter Name=\"b\" Type=\"Collection(N.D)\"/></Function>"
    "<Action Name=\"H\" IsBound=\"true\"><Parameter Name=\"b\" Type=\"A.E\"/></Action>"
    "<EntityContainer Name=\"C\"><EntitySet Name=\"Es\" EntityType=\"A.E\"/><EntitySet Name=\"Ds\" "
    "EntityType=\"N.D\"/><EntitySet Name=\"Ls\" EntityType=\"N.L\"/><FunctionImport Name=\"F\" "
    "Function=\"N.F\"/>"
    "<ActionImport Name=\"Z\" Action=\"N.Z\"/><Singleton Name=\"Me\" "
    "Type=\"N.E\"/></EntityContainer></Schema>"
    "</edmx:DataServices></edmx:Edmx>",
    "<edmx:Edmx xmlns:edmx=\"http://schemas.microsoft.com/ado/2007/06/edmx\"><edmx:DataServices "
    "xmlns:m=\"http://schemas.microsoft.com/ado/2007/08/dataservices/metadata\"><Schema Namespace=\"N\" "
    "xmlns=\"http://schemas.microsoft.com/ado/2008/09/edm\"><EntityType Name=\"P\"><Key><PropertyRef "
    "Name=\"I\"/>"
    "</Key></EntityType><EntityContainer Name=\"C\" m:IsDefaultEntityContainer=\"true\"><EntitySet "
    "Name=\"Ps\" "
    "EntityType=\"N.P\"/><FunctionImport Name=\"F\" m:HttpMethod=\"POST\"><Parameter Name=\"a\" "
    "Type=\"Edm.Int32\" "
    "Nullable=\"true\"/></FunctionImport></EntityContainer></Schema></edmx:DataServices></edmx:Edmx>",
    "<!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><a>&x;</a>",
    NULL,
};
