/*
 * validate_headers.c -- validate-headers: the response's headers against
 * the headers the definition declares for its status (the response with
 * that statusCode, else the `default` one).
 *
 * A declared header is checked against its definition (type, enum, schema;
 * one value unless its type is array) and a required one must be present;
 * any other header is unspecified, except the protocol and entity headers
 * every response may carry (report_standard_response_header, listed in
 * docs/validation.md).  <header name action> overrides the action for one
 * header, declared or not.  A status the definition does not declare has
 * nothing to check against: that is validate-status-code's business.
 */
#include "validate.h"

#include <string.h>
#include <strings.h>

static const struct pt_attr_def header_attrs[] = {
    {"name", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "the header"},
    {"action", PT_ATTR_ENUM, PT_ATTR_REQUIRED, NULL, report_actions, NULL, 0, 0, "ignore, detect or prevent"},
    {0},
};

const struct pt_attr_def validate_headers_attrs[] = {
    {"specified-header-action", PT_ATTR_ENUM, PT_ATTR_REQUIRED, NULL, report_actions, NULL, 0, 0,
     "ignore, detect or prevent, for a declared header whose value does not conform (or that is missing)"},
    {"unspecified-header-action", PT_ATTR_ENUM, PT_ATTR_REQUIRED, NULL, report_actions, NULL, 0, 0,
     "ignore, detect or prevent, for a header the definition does not declare"},
    {"errors-variable-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "variable receiving the errors found, a JSON array text of {Name, Type, ValidationRule, Details, "
     "Action}"},
    {"header", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, header_attrs, 0, 0, "the action for one header"},
    {0},
};

struct vh {
    struct defs *defs;
    int specified, unspecified;
    const char *var;
    struct override *ov;
    int nov;
};

static const struct report_kind kind = {"ResponseHeader", "header", "Header"};

int validate_headers_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct vh *x = api->compile_alloc(c, sizeof(*x));
    x->defs = defs_new();
    *instance = x;
    if (!x->defs) {
        api->compile_error(c, NULL, "out of memory");
        return -1;
    }
    x->specified = api->attr_enum(c, "specified-header-action", ACT_IGNORE);
    x->unspecified = api->attr_enum(c, "unspecified-header-action", ACT_IGNORE);
    x->var = api->attr_literal(c, "errors-variable-name");
    pt_element **els;
    int n = api->attr_elements(c, "header", &els);
    return report_overrides(api, c, els, n, "name", &x->ov, &x->nov);
}

void validate_headers_free(void *inst)
{
    struct vh *x = inst;
    if (x)
        defs_free(x->defs);
}

pt_status validate_headers_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct vh *x = inst;
    const json_t *op = defs_operation(x->defs, api, call);
    const json_t *resp = op ? defs_response(op, api->status(call)) : NULL;
    if (!resp)
        return PT_OK;
    const json_t *declared = json_object_get(resp, "headers");
    struct report r;
    report_init(&r, api, call, "validate-headers", x->var, true);
    pt_bytes name, value;
    for (int i = 0; api->header_at(call, PT_MSG_RESPONSE, i, &name, &value) == 0 && i < 1000; i++) {
        if (report_standard_header(name, true))
            continue;
        bool seen = false; /* each name once */
        pt_bytes n2, v2;
        for (int j = 0; j < i && !seen && api->header_at(call, PT_MSG_RESPONSE, j, &n2, &v2) == 0; j++)
            seen = n2.len == name.len && !strncasecmp(n2.data, name.data, name.len);
        if (seen)
            continue;
        const json_t *p = report_find_param(declared, name, true);
        int action = report_override_action(x->ov, x->nov, name, true, p ? x->specified : x->unspecified);
        if (!p) {
            if (report_unspecified(&r, &kind, name, action))
                break;
            continue;
        }
        pt_bytes vals[2];
        int nv = api->header_get(call, PT_MSG_RESPONSE, name, vals, 2);
        if (nv > 1 && strcmp(defs_str(p, "type"), "array")) {
            if (report_multiple(&r, &kind, name, action))
                break;
            continue;
        }
        if (report_param(&r, x->defs, p, &kind, name, value, action))
            break;
    }
    size_t i;
    const json_t *p;
    json_array_foreach(declared, i, p)
    {
        if (r.prevented || !json_is_true(json_object_get(p, "required")))
            continue;
        const char *nm = defs_str(p, "name");
        pt_bytes b = {nm, strlen(nm)}, v;
        if (api->header_get(call, PT_MSG_RESPONSE, b, &v, 1) <= 0)
            report_required(&r, &kind, b, report_override_action(x->ov, x->nov, b, true, x->specified));
    }
    return report_finish(&r);
}
