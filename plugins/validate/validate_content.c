/*
 * validate_content.c -- validate-content: the size, the content type and
 * the body of a request (inbound) or a response (outbound, on-error)
 * against the operation's definition or a service-level schema.
 *
 * In order:
 *   1. the content type: the Content-Type header's media type (no
 *      parameters, lower case), through content-type-map;
 *   2. the size: Content-Length against max-size without reading the body;
 *      a body without Content-Length (chunked, or a response read to its
 *      end) is read and its length checked;
 *   3. whether the content type is specified: listed in the definition's
 *      representations (the request's, or the response's for its status,
 *      else the `default` response's) or named by a <content> element;
 *   4. the body, when a <content> element applies (its type, or no type for
 *      any type the definition lists) and its action is not ignore: JSON
 *      against the representation's schema or schema-id (+ schema-ref); XML
 *      and SOAP against an XSD.  A body over max-size is not validated.
 * A request body within max-size is read first when a content element may
 * validate it (run() starts over once it is in memory, so the steps run
 * once); otherwise a body is read only when step 2 or 4 needs it.  It is
 * parsed once.
 */
#include "validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { AS_JSON = 0, AS_XML = 1, AS_SOAP = 2 };
static const char *const validate_as[] = {"json", "xml", "soap", NULL};

/* clang-format off */
static const struct pt_attr_def type_attrs[] = {
    {"from", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "a content type as sent (media type, no parameters)"},
    {"when", PT_ATTR_STRING, PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "a condition (expression), instead of from"},
    {"to", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "the content type to validate as"},
    {0},
};

static const struct pt_attr_def map_attrs[] = {
    {"any-content-type-value", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "validate every message as this content type, whatever it says"},
    {"missing-content-type-value", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "the content type of a message without Content-Type"},
    {"type", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, type_attrs, 0, 0,
     "maps one content type (from, or when a condition holds) to another (to); the first that applies wins"},
    {0},
};

static const struct pt_attr_def content_attrs[] = {
    {"type", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "the content type whose body is validated; none: every content type the definition lists"},
    {"validate-as", PT_ATTR_ENUM, 0, "json", validate_as, NULL, 0, 0, "json, xml or soap"},
    {"schema-id", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "a service-level schema (top-level schemas:) instead of the operation's definition"},
    {"schema-ref", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "with a JSON schema-id: a local reference into it (#/components/schemas/address)"},
    {"action", PT_ATTR_ENUM, PT_ATTR_REQUIRED, NULL, report_actions, NULL, 0, 0,
     "ignore, detect or prevent, for a body that does not conform"},
    {"allow-additional-properties", PT_ATTR_BOOL, 0, NULL, NULL, NULL, 0, 0,
     "true: additionalProperties false is ignored; false: undeclared properties are refused; absent: as the schema says"},
    {0},
};

const struct pt_attr_def validate_content_attrs[] = {
    {"unspecified-content-type-action", PT_ATTR_ENUM, PT_ATTR_REQUIRED, NULL, report_actions, NULL, 0, 0,
     "ignore, detect or prevent, for a content type the definition does not list"},
    {"max-size", PT_ATTR_INT, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 102400,
     "the largest body, bytes (at most 102400)"},
    {"size-exceeded-action", PT_ATTR_ENUM, PT_ATTR_REQUIRED, NULL, report_actions, NULL, 0, 0,
     "ignore, detect or prevent, for a larger body"},
    {"errors-variable-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "variable receiving the errors found, a JSON array text of {Name, Type, ValidationRule, Details, Action}"},
    {"content-type-map", PT_ATTR_ELEMENT, 0, NULL, NULL, map_attrs, 0, 0,
     "how a message's content type is read"},
    {"content", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, content_attrs, 0, 0,
     "validates the body of a content type"},
    {0},
};
/* clang-format on */

struct vc_type {
    const char *from, *to;
    pt_value *when;
};

struct vc_content {
    const char *type; /* NULL: every type the definition lists */
    int as;
    const char *schema_id, *schema_ref;
    int action;
    int addl; /* -1: as the schema says */
};

struct vc {
    struct defs *defs;
    bool response;
    int unspecified, size_action;
    int64_t max;
    const char *var;
    const char *any, *missing;
    struct vc_type *types;
    int ntypes;
    struct vc_content *contents;
    int ncontents;
};

static int enum_of(const char *s, const char *const *names, int def)
{
    if (!s)
        return def;
    for (int i = 0; names[i]; i++)
        if (!strcmp(s, names[i]))
            return i;
    return -1;
}

/* A media type without parameters, trimmed (compared case-insensitively). */
static pt_bytes media_type(pt_bytes v)
{
    size_t n = 0;
    while (n < v.len && v.data[n] != ';')
        n++;
    return ptl_trim((pt_bytes){v.data, n});
}

static bool type_is(pt_bytes a, const char *b)
{
    pt_bytes m = media_type((pt_bytes){b, strlen(b)});
    return a.len == m.len && (!a.len || !strncasecmp(a.data, m.data, a.len));
}

int validate_content_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct vc *x = api->compile_alloc(c, sizeof(*x));
    x->defs = defs_new();
    *instance = x;
    if (!x->defs) {
        api->compile_error(c, NULL, "out of memory");
        return -1;
    }
    x->response = api->compile_section(c) != PT_SECTION_INBOUND;
    x->unspecified = api->attr_enum(c, "unspecified-content-type-action", ACT_IGNORE);
    x->size_action = api->attr_enum(c, "size-exceeded-action", ACT_IGNORE);
    x->max = api->attr_int(c, "max-size", 102400);
    if (x->max < 0 || x->max > 102400) {
        api->compile_error(c, "max-size", "max-size must be from 0 to 102400 bytes");
        return -1;
    }
    x->var = api->attr_literal(c, "errors-variable-name");
    pt_element **maps;
    if (api->attr_elements(c, "content-type-map", &maps) > 0) {
        x->any = api->elem_literal(maps[0], "any-content-type-value");
        x->missing = api->elem_literal(maps[0], "missing-content-type-value");
        pt_element **types;
        int n = api->elem_elements(maps[0], "type", &types);
        x->types = api->compile_alloc(c, sizeof(*x->types) * (size_t)(n > 0 ? n : 1));
        for (int i = 0; i < n; i++) {
            struct vc_type *t = &x->types[x->ntypes++];
            t->from = api->elem_literal(types[i], "from");
            t->to = api->elem_literal(types[i], "to");
            t->when = t->from ? NULL : api->elem_value(types[i], "when");
            if ((!t->from && !t->when) || !t->to || !*t->to) {
                api->compile_error(c, "content-type-map",
                                   "a type mapping needs from (or when) and to, as literal content types");
                return -1;
            }
        }
    }
    pt_element **cs;
    int n = api->attr_elements(c, "content", &cs);
    x->contents = api->compile_alloc(c, sizeof(*x->contents) * (size_t)(n > 0 ? n : 1));
    for (int i = 0; i < n; i++) {
        struct vc_content *k = &x->contents[x->ncontents++];
        k->type = api->elem_literal(cs[i], "type");
        if (k->type && !*k->type)
            k->type = NULL;
        k->as = enum_of(api->elem_literal(cs[i], "validate-as"), validate_as, AS_JSON);
        k->schema_id = api->elem_literal(cs[i], "schema-id");
        k->schema_ref = api->elem_literal(cs[i], "schema-ref");
        k->action = report_action_index(api->elem_literal(cs[i], "action"));
        const char *addl = api->elem_literal(cs[i], "allow-additional-properties");
        k->addl = !addl ? -1 : !strcmp(addl, "true") ? 1 : !strcmp(addl, "false") ? 0 : -2;
        if (k->as < 0 || k->action < 0 || k->addl == -2) {
            api->compile_error(c, "content",
                               "content: validate-as, action or allow-additional-properties is not "
                               "one of the allowed values");
            return -1;
        }
        if (k->schema_ref && *k->schema_ref && (!k->schema_id || !*k->schema_id)) {
            api->compile_error(c, "content", "content: schema-ref needs schema-id");
            return -1;
        }
        if (k->schema_ref && *k->schema_ref && k->as != AS_JSON) {
            api->compile_error(c, "content", "content: schema-ref is for JSON schemas");
            return -1;
        }
        if (k->as != AS_JSON && !defs_have_xsd()) {
            api->compile_error(c, "content",
                               "content: validate-as %s needs XML Schema support, which this build lacks",
                               validate_as[k->as]);
            return -1;
        }
    }
    return 0;
}

void validate_content_free(void *inst)
{
    struct vc *x = inst;
    if (x)
        defs_free(x->defs);
}

/* The representations for this side: the request's, or the response's for the status. */
static const json_t *side_representations(const json_t *op, bool response, int status)
{
    if (!op)
        return NULL;
    if (!response)
        return json_object_get(json_object_get(op, "request"), "representations");
    return json_object_get(defs_response(op, status), "representations");
}

static const json_t *find_representation(const json_t *reps, pt_bytes ct)
{
    size_t i;
    const json_t *r;
    json_array_foreach(reps, i, r)
    {
        if (type_is(ct, defs_str(r, "contentType")))
            return r;
    }
    return NULL;
}

static int64_t parse_length(pt_bytes v)
{
    if (!v.len || v.len > 18)
        return -1;
    int64_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.data[i] < '0' || v.data[i] > '9')
            return -1;
        n = n * 10 + (v.data[i] - '0');
    }
    return n;
}

/* What the body of this side is called in messages. */
#define SIDE(x) ((x)->response ? "response" : "request")
#define BODY_TYPE(x) ((x)->response ? "ResponseBody" : "RequestBody")

/* Validates a JSON body; false when a record prevented. */
static bool check_json(const struct pt_api *api, pt_call *call, const struct vc *x, struct report *r,
                       const struct vc_content *k, const json_t *rep, const char *ct, pt_bytes body)
{
    unsigned add = k->addl == 1 ? PT_JSCHEMA_ALLOW_ADDITIONAL : k->addl == 0 ? PT_JSCHEMA_NO_ADDITIONAL : 0;
    bool service = k->schema_id && *k->schema_id;
    if (!service && !rep)
        return true; /* the definition lists no schema for it: nothing to check against */
    const struct defs_plan *plan = service
                                       ? defs_plan(x->defs, api, call, k, k->schema_id, k->schema_ref, add)
                                       : defs_plan(x->defs, api, call, rep, NULL, NULL, add);
    if (!plan) {
        r->recs.oom = true;
        return false;
    }
    if (plan->missing) {
        if (plan->api_schema)
            return !report_add(r, k->action, "", "ApiSchema", "", plan->missing, REPORT_NEUTRAL);
        return !report_add(
            r, k->action, ct, BODY_TYPE(x), "MissingDefinition",
            report_fmt(api, call,
                       "API's schema does not contain definition %s, which is associated with the "
                       "content type %s.",
                       plan->name, ct),
            REPORT_NEUTRAL);
    }
    if (plan->none)
        return true;
    const struct pt_jschema *js = plan->js;
    if (!js)
        return !report_add(r, k->action, ct, BODY_TYPE(x), "ValidationException",
                           report_fmt(api, call,
                                      "Body of the %s cannot be validated for the content type %s. %s",
                                      SIDE(x), ct, plan->err ? plan->err : ""),
                           REPORT_NEUTRAL);
    const char *problem = NULL;
    char perr[256];
    json_t *doc = body_parse_json(body.data, body.len, perr, sizeof(perr));
    if (!doc) {
        problem = report_fmt(api, call, "%s", perr);
    } else {
        struct pt_jschema_error e;
        if (!pt_jschema_validate(js, doc, &e))
            problem = e.path[0] ? report_fmt(api, call, "%s Path: '%s'.", e.message, e.path)
                                : report_fmt(api, call, "%s", e.message);
        json_decref(doc);
    }
    if (!problem)
        return true;
    const char *details =
        report_fmt(api, call,
                   "Body of the %s does not conform to the definition %s, which is associated "
                   "with the content type %s. %s",
                   SIDE(x), plan->name, ct, problem);
    return !report_add(r, k->action, ct, BODY_TYPE(x), "IncorrectMessage", details, details);
}

/* Validates an XML or SOAP body against an XSD; false when a record prevented.  The XSD is
   schema-id's (a service schema of schemaType xml), else the representation's schemaId (the API's
   first schema when absent; its first embedded XSD when that is a WSDL).  The schemas a WSDL import
   made (xsd, xsd-2, ...) import each other's namespaces, so they are compiled as one set. */
static bool check_xml(const struct pt_api *api, pt_call *call, const struct vc *x, struct report *r,
                      const struct vc_content *k, const json_t *rep, const char *ct, pt_bytes body)
{
    const struct defs_doc *doc;
    const char *name;
    bool api_doc = !(k->schema_id && *k->schema_id);
    if (!api_doc) {
        doc = defs_doc(x->defs, api, call, PT_SCHEMA_SERVICE, (pt_bytes){k->schema_id, strlen(k->schema_id)});
        name = k->schema_id;
    } else {
        if (!rep)
            return true; /* the definition lists no schema for it */
        const char *sid = defs_str(rep, "schemaId");
        doc = defs_doc(x->defs, api, call, PT_SCHEMA_API, (pt_bytes){sid, strlen(sid)});
        if (doc && doc->kind == DEFS_K_WSDL && !*sid)
            doc = defs_doc(x->defs, api, call, PT_SCHEMA_API, PTL_LIT("xsd"));
        name = *defs_str(rep, "typeName") ? defs_str(rep, "typeName") : doc ? doc->id : sid;
    }
    if (!doc)
        return !report_add(r, k->action, "", "ApiSchema", "",
                           "API's schema does not exist or it could not be resolved.", REPORT_NEUTRAL);
    if (doc->kind != DEFS_K_XSD || !doc->value)
        return !report_add(r, k->action, "", "ApiSchema", "", "API's schema does not specify definitions.",
                           REPORT_NEUTRAL);
    const char *texts[DEFS_XSD_MAX_SET];
    size_t lens[DEFS_XSD_MAX_SET];
    int n = 0;
    texts[n] = doc->value;
    lens[n++] = doc->vlen;
    bool wsdl_set = api_doc && (!strcmp(doc->id, "xsd") || !strncmp(doc->id, "xsd-", 4));
    for (int i = 1; wsdl_set && i <= DEFS_XSD_MAX_SET && n < DEFS_XSD_MAX_SET; i++) {
        char id[16];
        snprintf(id, sizeof(id), i == 1 ? "xsd" : "xsd-%d", i);
        const struct defs_doc *o = defs_doc(x->defs, api, call, PT_SCHEMA_API, (pt_bytes){id, strlen(id)});
        if (!o)
            break;
        if (o != doc && o->kind == DEFS_K_XSD && o->value) {
            texts[n] = o->value;
            lens[n++] = o->vlen;
        }
    }
    const char *err;
    const void *xsd = defs_xsd(x->defs, texts, lens, n, &err);
    if (!xsd)
        return !report_add(r, k->action, ct, BODY_TYPE(x), "ValidationException",
                           report_fmt(api, call,
                                      "Body of the %s cannot be validated for the content type %s. %s",
                                      SIDE(x), ct, err),
                           REPORT_NEUTRAL);
    char msg[512];
    if (defs_xsd_validate(xsd, body.data, body.len, k->as == AS_SOAP, msg, sizeof(msg)))
        return true;
    const char *details =
        report_fmt(api, call,
                   "Body of the %s does not conform to the definition %s, which is associated "
                   "with the content type %s. %s",
                   SIDE(x), name, ct, msg);
    return !report_add(r, k->action, ct, BODY_TYPE(x), "IncorrectMessage", details, details);
}

pt_status validate_content_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct vc *x = inst;
    pt_msg m = x->response ? PT_MSG_RESPONSE : PT_MSG_REQUEST;
    pt_bytes hv[2];

    /* A request body within max-size is asked for first when a content element may validate it:
       body_get suspends and run() starts over once the body is in memory, so the work below is
       done once.  (A body that turns out not to need it was read for nothing: at most max-size.) */
    if (!x->response && x->ncontents) {
        int64_t n = -1;
        if (api->header_get(call, m, PTL_LIT("Content-Length"), hv, 1) > 0)
            n = parse_length(ptl_trim(hv[0]));
        pt_bytes early;
        if (n != 0 && n <= x->max) {
            int st = ptl_body_get(api, call, m, &early);
            if (st)
                return (pt_status)st;
        }
    }

    /* 1. the content type */
    int nct = api->header_get(call, m, PTL_LIT("Content-Type"), hv, 1);
    pt_bytes ct = nct > 0 ? media_type(hv[0]) : (pt_bytes){"", 0};
    if (!ct.len && x->missing)
        ct = (pt_bytes){x->missing, strlen(x->missing)};
    if (x->any)
        ct = (pt_bytes){x->any, strlen(x->any)};
    for (int i = 0; i < x->ntypes; i++) {
        const struct vc_type *t = &x->types[i];
        int hit = 0;
        if (t->from) {
            hit = type_is(ct, t->from);
        } else {
            int rc = api->eval_bool(call, t->when, &hit);
            if (rc)
                return rc == PT_AGAIN ? PT_AGAIN : PT_ERROR;
        }
        if (hit) {
            ct = (pt_bytes){t->to, strlen(t->to)};
            break;
        }
    }
    const char *ctz = ptl_dup_bytes(api, call, ct);
    if (!ctz)
        return ptl_out_of_memory(api, call);
    for (char *p = (char *)ctz; *p; p++)
        *p = ptl_lower(*p);
    ct = (pt_bytes){ctz, strlen(ctz)};

    /* 2. the announced size (a request's Content-Length is its body's current
       length; without one a request's body is chunked or absent, and
       body_get tells which at no cost when absent) */
    int64_t cl = -1;
    if (api->header_get(call, m, PTL_LIT("Content-Length"), hv, 1) > 0)
        cl = parse_length(ptl_trim(hv[0]));
    int status = x->response ? api->status(call) : 0;
    bool no_body = x->response ? (cl == 0 || status == 204 || status == 304 || status < 200 ||
                                  ptl_bytes_is(api->method(call), "HEAD"))
                               : cl == 0;
    pt_bytes body = {"", 0};
    bool have_body = false;
    if (!x->response && cl < 0) {
        int st = ptl_body_get(api, call, m, &body);
        if (st)
            return (pt_status)st;
        have_body = true;
        no_body = body.len == 0;
    }
    if (no_body)
        return PT_OK; /* nothing to check: no body, whatever Content-Type says */
    bool too_big_announced = cl > x->max;

    /* 3. specified? */
    const json_t *op = defs_operation(x->defs, api, call);
    const json_t *reps = side_representations(op, x->response, status);
    const json_t *rep = find_representation(reps, ct);
    const struct vc_content *k = NULL;
    for (int i = 0; i < x->ncontents && !k; i++)
        if (x->contents[i].type && type_is(ct, x->contents[i].type))
            k = &x->contents[i];
    for (int i = 0; i < x->ncontents && !k && rep; i++)
        if (!x->contents[i].type)
            k = &x->contents[i];
    bool specified = rep || k;

    /* 4. the body, when something needs it */
    bool validate = k && k->action != ACT_IGNORE && !too_big_announced && !no_body;
    bool measure = cl < 0 && !no_body && x->size_action != ACT_IGNORE;
    if (!have_body && (validate || measure)) {
        int st = ptl_body_get(api, call, m, &body);
        if (st)
            return (pt_status)st;
    }

    struct report r;
    report_init(&r, api, call, "validate-content", x->var, x->response);
    int64_t size = too_big_announced ? cl : (int64_t)body.len;
    if ((too_big_announced || (cl < 0 && (int64_t)body.len > x->max))) {
        validate = false;
        if (report_add(
                &r, x->size_action, "", BODY_TYPE(x), "SizeLimit",
                report_fmt(api, call,
                           "%s's body is %lld bytes long and it exceeds the configured limit of %lld bytes.",
                           x->response ? "Response" : "Request", (long long)size, (long long)x->max),
                report_fmt(api, call, "%s's body is %lld bytes long and it exceeds the limit of %lld bytes.",
                           x->response ? "Response" : "Request", (long long)size, (long long)x->max)))
            return report_finish(&r);
    }
    if (!specified) {
        const char *msg = report_fmt(api, call, "Unspecified content type %s is not allowed.", ctz);
        if (report_add(&r, x->unspecified, ctz, BODY_TYPE(x), "Unspecified", msg, msg))
            return report_finish(&r);
    }
    if (validate && body.len) {
        pt_bytes ce;
        if (api->header_get(call, m, PTL_LIT("Content-Encoding"), &ce, 1) > 0 &&
            !ptl_bytes_ieq(ptl_trim(ce), "identity")) {
            report_add(
                &r, k->action, ctz, BODY_TYPE(x), "ValidationException",
                report_fmt(
                    api, call,
                    "Body of the %s cannot be validated for the content type %s. It is encoded (%.*s).",
                    SIDE(x), ctz, (int)ce.len, ce.data),
                REPORT_NEUTRAL);
        } else if (k->as == AS_JSON) {
            check_json(api, call, x, &r, k, rep, ctz, body);
        } else {
            check_xml(api, call, x, &r, k, rep, ctz, body);
        }
    }
    return report_finish(&r);
}
