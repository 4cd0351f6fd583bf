/*
 * transform.c -- the transformation family's descriptor: the policy table,
 * PT_PLUGIN and init/fini.
 *
 * Twelve policies that change the message a request is working on, named
 * and shaped after Azure API Management's: set-header, set-query-parameter,
 * rewrite-uri, set-method, set-status, set-body, find-and-replace,
 * json-to-xml, xml-to-json, jsonp, redirect-content-urls and xsl-transform.
 * Each lives in its own file (json-to-xml and xml-to-json share json_xml.c;
 * xsl-transform runs libxslt through xslt.c's limits); transform.h
 * says how they work and what they share, plugins/lib the helpers both
 * families use.
 */
#include "transform.h"

#include "xslt.h"

/* ============================================================== descriptor */

#define IBOE (PT_SECTION_INBOUND | PT_SECTION_BACKEND | PT_SECTION_OUTBOUND | PT_SECTION_ON_ERROR)

static const struct pt_policy_def policies[] = {
    {"set-header", IBOE, PT_SCOPE_ALL, 0, set_header_attrs, set_header_compile, set_header_run, NULL,
     "Sets, appends, keeps or deletes a header of the current message: the request to the backend in "
     "inbound/backend, the response to the client in outbound/on-error."},
    {"set-query-parameter", PT_SECTION_INBOUND | PT_SECTION_BACKEND, PT_SCOPE_ALL, 0,
     set_query_parameter_attrs, set_query_parameter_compile, set_query_parameter_run, NULL,
     "Sets, appends, keeps or deletes a query parameter of the request to the backend; values are "
     "percent-encoded and the other parameters are left as they were."},
    {"rewrite-uri", PT_SECTION_INBOUND, PT_SCOPE_ALL, 0, rewrite_uri_attrs, rewrite_uri_compile,
     rewrite_uri_run, NULL,
     "Replaces the backend path and query with a template filled from the operation's matched parameters; "
     "unmatched query parameters of the request are kept unless copy-unmatched-params is false."},
    {"set-method", PT_SECTION_INBOUND | PT_SECTION_ON_ERROR, PT_SCOPE_ALL, 0, set_method_attrs,
     set_method_compile, set_method_run, NULL, "Changes the method of the request to the backend."},
    {"set-status", IBOE, PT_SCOPE_ALL, 0, set_status_attrs, set_status_compile, set_status_run, NULL,
     "Sets the response's status code and reason phrase."},
    {"set-body", PT_SECTION_INBOUND | PT_SECTION_BACKEND | PT_SECTION_OUTBOUND, PT_SCOPE_ALL, 0,
     set_body_attrs, set_body_compile, set_body_run, NULL,
     "Replaces the body of the current message with a literal or the value of an expression "
     "(Content-Length follows)."},
    {"find-and-replace", IBOE, PT_SCOPE_ALL, 0, find_and_replace_attrs, find_and_replace_compile,
     find_and_replace_run, NULL, "Replaces every occurrence of a text in the body of the current message."},
    {"json-to-xml", PT_SECTION_INBOUND | PT_SECTION_OUTBOUND | PT_SECTION_ON_ERROR, PT_SCOPE_ALL, 0,
     json_to_xml_attrs, json_to_xml_compile, json_to_xml_run, NULL,
     "Converts a JSON body to XML (a single-member object gives the root element, anything else is wrapped "
     "in <Document>) and sets Content-Type: application/xml. A body that is not JSON, nests deeper than 256 "
     "levels or has a member name longer than an XML name may be (50,000 bytes once encoded) fails with "
     "InvalidJson: 400 for a request, 500 for a response."},
    {"xml-to-json", PT_SECTION_INBOUND | PT_SECTION_OUTBOUND | PT_SECTION_ON_ERROR, PT_SCOPE_ALL, 0,
     xml_to_json_attrs, xml_to_json_compile, xml_to_json_run, NULL,
     "Converts an XML body to JSON ({\"root\": ...}; repeated elements become arrays) and sets Content-Type: "
     "application/json.  Documents with a DOCTYPE are refused; no entity is ever expanded or loaded."},
    {"jsonp", PT_SECTION_OUTBOUND, PT_SCOPE_ALL, PT_POLICY_ONCE_PER_SECTION, jsonp_attrs, jsonp_compile,
     jsonp_run, NULL,
     "When the request names a callback in the configured query parameter, wraps the body as cb(body); "
     "with Content-Type: application/javascript."},
    {"redirect-content-urls", PT_SECTION_INBOUND | PT_SECTION_OUTBOUND, PT_SCOPE_ALL,
     PT_POLICY_ONCE_PER_SECTION, NULL, redirect_content_urls_compile, redirect_content_urls_run, NULL,
     "Rewrites the backend's base URL in the response body into the gateway's (outbound), or the "
     "gateway's into the backend's in the request body (inbound); headers are left alone."},
    {"xsl-transform", PT_SECTION_INBOUND | PT_SECTION_OUTBOUND, PT_SCOPE_ALL, 0, xsl_transform_attrs,
     xsl_transform_compile, xsl_transform_run, xsl_transform_free,
     "Transforms the XML body of the current message with an XSLT 1.0 stylesheet (libxslt), compiled once "
     "per configuration; parameters are strings.  Documents with a DOCTYPE are refused; the stylesheet "
     "may not import, include, load or write files; depth, instructions, XPath operations, memory (64 MiB) "
     "and time (2 s) are capped (docs/xslt.md)."},
    {0},
};

/* Makes libxml2 ready for the worker threads and disables external entities process-wide. */
static int transform_init(const struct pt_api *api, const char **err)
{
    (void)api;
    (void)err;
    json_xml_init();
    xslt_init();
    return 0;
}

static void transform_fini(void)
{
    xslt_fini();
    json_xml_fini();
}

PT_PLUGIN("transform", "1.0.0", policies, transform_init, transform_fini);
