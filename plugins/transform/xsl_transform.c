/*
 * xsl_transform.c -- xsl-transform: XSLT 1.0 over the current message's
 * XML body (the request in inbound, the response in outbound), with
 * libxslt behind xslt.c's limits.
 *
 * The stylesheet is the `stylesheet` attribute's text (a YAML block
 * scalar), compiled once when the configuration generation is built and
 * shared by the workers; a stylesheet that does not compile, or that
 * imports, includes or writes files, is a configuration error at the
 * attribute, with the line and column inside the stylesheet.  `parameter`
 * elements give xsl:param values: strings (literals or expressions,
 * evaluated per request), never XPath.
 *
 * Decisions (docs/xslt.md):
 *  - An empty body is left alone; a body that is not well-formed XML (or
 *    has a DOCTYPE) fails: 400 InvalidXml for the client's request, 500
 *    for a response (the log says why), as xml-to-json does.
 *  - A transformation that fails or breaks a limit: 500 with the reason
 *    XslTransformFailed; the log has the stylesheet line.
 *  - Content-Type: xsl:output's media-type when given; else text/plain
 *    for method="text", text/html for method="html" (both with a charset:
 *    xsl:output's encoding, UTF-8 by default); else the message's own
 *    Content-Type when it is an XML type (its parameters dropped: the XML
 *    declaration carries the encoding), or application/xml.
 */
#include "transform.h"

#include "xslt.h"

#include <libxml/tree.h>
#include <stdio.h>
#include <string.h>

static const struct pt_attr_def parameter_attrs[] = {
    {"parameter-name", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0,
     "the name of a top-level xsl:param of the stylesheet (an XML name without a prefix)"},
    {"value", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "its value: a string, literal or expression (passed as a string, never evaluated as XPath)"},
    {0},
};

const struct pt_attr_def xsl_transform_attrs[] = {
    {"parameter", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, parameter_attrs, 0, 0,
     "values for the stylesheet's xsl:param declarations (a list of {parameter-name, value})"},
    {"stylesheet", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0,
     "the XSLT 1.0 stylesheet (xsl:stylesheet or xsl:transform) as text; self-contained: no xsl:import, "
     "xsl:include or document() of other files; at most 1 MiB"},
    {0},
};

#define MAX_PARAMS 64
/* the serialized result; the request arena's own cap may stop it earlier */
#define MAX_OUTPUT ((size_t)32 << 20)

struct xsl_transform {
    struct xslt_sheet *sheet;
    bool request;             /* compiled for inbound: the client's body */
    const char *content_type; /* set after the transformation; NULL: keep an XML type */
    int nparams;
    const char **names;
    pt_value **values;
};

void xsl_transform_free(void *instance)
{
    struct xsl_transform *x = instance;
    if (x)
        xslt_free(x->sheet);
}

/* The Content-Type the result gets from xsl:output (see the top); NULL: decided per request. */
static const char *result_type(const struct pt_api *api, pt_compile *c, const struct xslt_sheet *s)
{
    const char *media = xslt_media_type(s), *method = xslt_method(s), *enc = xslt_encoding(s);
    const char *type = media;
    if (!type && method && !strcmp(method, "text"))
        type = "text/plain";
    else if (!type && method && !strcmp(method, "html"))
        type = "text/html";
    if (!type)
        return NULL;
    if (strchr(type, ';'))
        return type; /* the stylesheet wrote its own parameters */
    size_t n = strlen(type) + strlen(enc ? enc : "UTF-8") + 16;
    char *t = api->compile_alloc(c, n);
    if (t)
        snprintf(t, n, "%s; charset=%s", type, enc ? enc : "UTF-8");
    return t;
}

int xsl_transform_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct xsl_transform *x = api->compile_alloc(c, sizeof(*x));
    if (!x)
        return -1;
    *instance = x;
    x->request = api->compile_section(c) == PT_SECTION_INBOUND;

    pt_element **ps = NULL;
    int n = api->attr_elements(c, "parameter", &ps);
    if (n > MAX_PARAMS) {
        api->compile_error(c, "parameter", "at most %d parameters", MAX_PARAMS);
        return -1;
    }
    x->names = api->compile_alloc(c, sizeof(*x->names) * (size_t)(n > 0 ? n : 1));
    x->values = api->compile_alloc(c, sizeof(*x->values) * (size_t)(n > 0 ? n : 1));
    if (!x->names || !x->values)
        return -1;
    for (int i = 0; i < n; i++) {
        const char *name = api->elem_literal(ps[i], "parameter-name");
        if (!name || xmlValidateNCName((const xmlChar *)name, 0) != 0) {
            api->compile_error(c, "parameter", "'%s' is not a parameter name (an XML name without a prefix)",
                               name ? name : "");
            return -1;
        }
        for (int k = 0; k < i; k++)
            if (!strcmp(x->names[k], name)) {
                api->compile_error(c, "parameter", "the parameter '%s' is given twice", name);
                return -1;
            }
        x->names[i] = name;
        x->values[i] = api->elem_value(ps[i], "value");
    }
    x->nparams = n > 0 ? n : 0;

    const char *text = api->attr_literal(c, "stylesheet");
    if (!text) {
        api->compile_error(c, "stylesheet", "the stylesheet must be literal text");
        return -1;
    }
    /* leading blank lines of a YAML block would put the XML declaration out of place */
    int skipped_lines = 0;
    while (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r')
        skipped_lines += *text++ == '\n';
    char err[320];
    int line, column;
    x->sheet = xslt_compile(text, strlen(text), err, sizeof(err), &line, &column);
    if (!x->sheet) {
        if (line > 0 && column > 0)
            api->compile_error(c, "stylesheet", "%s (stylesheet line %d, column %d)", err,
                               line + skipped_lines, column);
        else if (line > 0)
            api->compile_error(c, "stylesheet", "%s (stylesheet line %d)", err, line + skipped_lines);
        else
            api->compile_error(c, "stylesheet", "%s", err);
        return -1;
    }
    x->content_type = result_type(api, c, x->sheet);
    return 0;
}

/* ---- request time ---- */

/* A NUL-terminated copy in the arena with every byte that is not part of valid UTF-8 (and NUL) as
   U+FFFD: libxml2 would refuse the string, and a header is the client's to fill. */
static const char *utf8_copy(const struct pt_api *api, pt_call *call, pt_bytes v)
{
    struct ptl_buf b;
    ptl_buf_init(&b, api, call, v.len + 1);
    size_t i = 0;
    while (i < v.len) {
        uint32_t cp;
        size_t k = ptl_utf8_next((const unsigned char *)v.data + i, v.len - i, &cp);
        if (!k || cp == 0) {
            ptl_buf_lit(&b, "\xEF\xBF\xBD");
            i += k ? k : 1;
            continue;
        }
        ptl_buf_add(&b, v.data + i, k);
        i += k;
    }
    ptl_buf_ch(&b, '\0');
    return b.oom ? NULL : b.p;
}

struct sink {
    struct ptl_buf *buf;
    size_t max;
};

static int sink_write(void *arg, const char *data, size_t len)
{
    struct sink *s = arg;
    if (s->buf->n + len > s->max)
        return -1;
    ptl_buf_add(s->buf, data, len);
    return s->buf->oom ? -1 : 0;
}

static bool is_xml_type(pt_bytes v)
{
    const char *semi = memchr(v.data ? v.data : "", ';', v.len);
    pt_bytes m = ptl_trim((pt_bytes){v.data, semi ? (size_t)(semi - v.data) : v.len});
    const char *slash = memchr(m.data ? m.data : "", '/', m.len);
    if (!slash)
        return false;
    pt_bytes sub = {slash + 1, m.len - (size_t)(slash - m.data) - 1};
    return ptl_bytes_ieq(sub, "xml") ||
           (sub.len > 4 && ptl_bytes_ieq((pt_bytes){sub.data + sub.len - 4, 4}, "+xml"));
}

/* The Content-Type when xsl:output did not decide it: the message's XML type without parameters, or
   application/xml. */
static pt_bytes xml_type(const struct pt_api *api, pt_call *call)
{
    pt_bytes v;
    if (api->header_get(call, PT_MSG_CURRENT, PTL_LIT("Content-Type"), &v, 1) >= 1 && is_xml_type(v)) {
        const char *semi = memchr(v.data, ';', v.len);
        return ptl_trim((pt_bytes){v.data, semi ? (size_t)(semi - v.data) : v.len});
    }
    return PTL_LIT("application/xml");
}

static pt_status fail(const struct pt_api *api, pt_call *call, int status, const char *reason,
                      const char *msg, bool warn)
{
    pt_bytes id = api->fact(call, PT_FACT_REQUEST_ID);
    api->log(warn ? PT_LOG_LEVEL_WARN : PT_LOG_LEVEL_INFO, "request %.*s: xsl-transform: %s (%s)",
             (int)id.len, id.data, msg, reason);
    char full[400];
    snprintf(full, sizeof(full), "xsl-transform: %s", msg);
    return api->fail(call, status, reason, full);
}

pt_status xsl_transform_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct xsl_transform *x = inst;
    /* everything that may ask for the body again comes first (run() restarts from the top) */
    const char **params = NULL;
    if (x->nparams) {
        params = api->alloc(call, sizeof(*params) * (size_t)x->nparams * 2);
        if (!params)
            return ptl_out_of_memory(api, call);
        for (int i = 0; i < x->nparams; i++) {
            pt_bytes v;
            int st = ptl_eval(api, call, x->values[i], &v);
            if (st)
                return (pt_status)st;
            params[2 * i] = x->names[i];
            if (!(params[2 * i + 1] = utf8_copy(api, call, v)))
                return ptl_out_of_memory(api, call);
        }
    }
    pt_bytes body;
    int st;
    if ((st = ptl_body_get(api, call, PT_MSG_CURRENT, &body)))
        return (pt_status)st;
    if (!ptl_trim(body).len)
        return PT_OK;

    struct ptl_buf out;
    ptl_buf_init(&out, api, call, body.len + 256);
    struct sink sink = {&out, MAX_OUTPUT};
    char err[400];
    enum xslt_result r = xslt_apply(x->sheet, body.data, body.len, params, x->nparams, NULL, sink_write,
                                    &sink, err, sizeof(err));
    if (r == XSLT_BAD_INPUT)
        return fail(api, call, x->request ? 400 : 500, "InvalidXml", err, !x->request);
    if (r == XSLT_TOO_LARGE && out.oom)
        return ptl_out_of_memory(api, call);
    if (r != XSLT_OK)
        return fail(api, call, 500, "XslTransformFailed", err, true);

    pt_bytes type =
        x->content_type ? (pt_bytes){x->content_type, strlen(x->content_type)} : xml_type(api, call);
    if (api->body_set(call, PT_MSG_CURRENT, ptl_buf_bytes(&out)) != 0 ||
        api->header_set(call, PT_MSG_CURRENT, PTL_LIT("Content-Type"), &type, 1, PT_HEADER_OVERRIDE) != 0)
        return PT_ERROR;
    return PT_OK;
}
