/*
 * validate_parameters.c -- validate-parameters: the request's path (template)
 * parameters, query parameters and headers against the operation's
 * definition: templateParameters, request.queryParameters, request.headers.
 *
 * A declared parameter is checked against its definition: required, one
 * value unless its type is array, the value converted by its type (integer,
 * number, boolean, array of those, string) and validated against its schema
 * (the inline `schema` with pattern, format, minimum...; else typeName in
 * schemaId; else {type, enum: values}).  An undeclared one is unspecified;
 * headers every request may carry (report_standard_header) and a value
 * equal to the call's subscription key are never unspecified.  Query
 * parameters of the URL template (/pets?limit={limit}) are template
 * parameters and checked as such.  Each group (<headers>, <query>, <path>)
 * may override the two actions, and <parameter name action> one name.
 */
#include "validate.h"

#include <string.h>
#include <strings.h>

/* clang-format off */
static const struct pt_attr_def param_attrs[] = {
    {"name", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "the parameter"},
    {"action", PT_ATTR_ENUM, PT_ATTR_REQUIRED, NULL, report_actions, NULL, 0, 0, "ignore, detect or prevent"},
    {0},
};

static const struct pt_attr_def group_attrs[] = {
    {"specified-parameter-action", PT_ATTR_ENUM, 0, NULL, report_actions, NULL, 0, 0,
     "overrides the policy's, for this kind of parameter"},
    {"unspecified-parameter-action", PT_ATTR_ENUM, 0, NULL, report_actions, NULL, 0, 0,
     "overrides the policy's, for this kind of parameter"},
    {"parameter", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, param_attrs, 0, 0, "the action for one parameter"},
    {0},
};

static const struct pt_attr_def path_attrs[] = {
    {"specified-parameter-action", PT_ATTR_ENUM, 0, NULL, report_actions, NULL, 0, 0,
     "overrides the policy's, for path parameters"},
    {"parameter", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, param_attrs, 0, 0, "the action for one parameter"},
    {0},
};

const struct pt_attr_def validate_parameters_attrs[] = {
    {"specified-parameter-action", PT_ATTR_ENUM, PT_ATTR_REQUIRED, NULL, report_actions, NULL, 0, 0,
     "ignore, detect or prevent, for a declared parameter whose value does not conform (or that is missing)"},
    {"unspecified-parameter-action", PT_ATTR_ENUM, PT_ATTR_REQUIRED, NULL, report_actions, NULL, 0, 0,
     "ignore, detect or prevent, for a parameter the definition does not declare"},
    {"errors-variable-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "variable receiving the errors found, a JSON array text of {Name, Type, ValidationRule, Details, Action}"},
    {"headers", PT_ATTR_ELEMENT, 0, NULL, NULL, group_attrs, 0, 0, "request headers"},
    {"query", PT_ATTR_ELEMENT, 0, NULL, NULL, group_attrs, 0, 0, "query parameters"},
    {"path", PT_ATTR_ELEMENT, 0, NULL, NULL, path_attrs, 0, 0, "path (template) parameters"},
    {0},
};
/* clang-format on */

struct group {
    int specified, unspecified;
    struct override *ov;
    int nov;
};

struct vp {
    struct defs *defs;
    const char *var;
    struct group headers, query, path;
};

static const struct report_kind k_path = {"PathParameter", "path parameter", "Path parameter"};
static const struct report_kind k_query = {"QueryParameter", "query parameter", "Query parameter"};
static const struct report_kind k_header = {"RequestHeader", "header", "Header"};

static int read_group(const struct pt_api *api, pt_compile *c, const char *name, int spec, int unspec,
                      struct group *g)
{
    g->specified = spec;
    g->unspecified = unspec;
    pt_element **els;
    if (api->attr_elements(c, name, &els) <= 0)
        return 0;
    const char *s = api->elem_literal(els[0], "specified-parameter-action");
    const char *u = api->elem_literal(els[0], "unspecified-parameter-action");
    if (s)
        g->specified = report_action_index(s);
    if (u)
        g->unspecified = report_action_index(u);
    if (g->specified < 0 || g->unspecified < 0) {
        api->compile_error(c, name, "%s: an action must be ignore, detect or prevent", name);
        return -1;
    }
    pt_element **ps;
    int n = api->elem_elements(els[0], "parameter", &ps);
    return report_overrides(api, c, ps, n, "name", &g->ov, &g->nov);
}

int validate_parameters_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct vp *x = api->compile_alloc(c, sizeof(*x));
    x->defs = defs_new();
    *instance = x;
    if (!x->defs) {
        api->compile_error(c, NULL, "out of memory");
        return -1;
    }
    int spec = api->attr_enum(c, "specified-parameter-action", ACT_IGNORE);
    int unspec = api->attr_enum(c, "unspecified-parameter-action", ACT_IGNORE);
    x->var = api->attr_literal(c, "errors-variable-name");
    if (read_group(api, c, "headers", spec, unspec, &x->headers) ||
        read_group(api, c, "query", spec, unspec, &x->query) ||
        read_group(api, c, "path", spec, unspec, &x->path))
        return -1;
    return 0;
}

void validate_parameters_free(void *inst)
{
    struct vp *x = inst;
    if (x)
        defs_free(x->defs);
}

/* Is {name} a variable of the template's query part (after '?')? */
static bool in_template_query(const char *tpl, pt_bytes name)
{
    const char *q = strchr(tpl, '?');
    for (const char *p = q ? q : ""; (p = strchr(p, '{')); p++) {
        const char *e = strchr(p, '}');
        if (!e)
            break;
        if ((size_t)(e - p - 1) == name.len && !memcmp(p + 1, name.data, name.len))
            return true;
    }
    return false;
}

/* Percent-decoding with '+' as a space (query strings). */
static pt_bytes form_decode(const struct pt_api *api, pt_call *call, pt_bytes s)
{
    if (!memchr(s.data, '+', s.len))
        return ptl_pct_decode(api, call, s);
    char *c = ptl_dup_bytes(api, call, s);
    if (!c)
        return s;
    for (size_t i = 0; i < s.len; i++)
        if (c[i] == '+')
            c[i] = ' ';
    return ptl_pct_decode(api, call, (pt_bytes){c, s.len});
}

static bool is_subscription_key(const struct pt_api *api, pt_call *call, pt_bytes v)
{
    pt_bytes key = api->fact(call, PT_FACT_SUBSCRIPTION_KEY);
    return key.len && ptl_bytes_eq(key, v);
}

/* The path: every declared template parameter, and variables of the template nobody declared. */
static bool check_path(const struct pt_api *api, pt_call *call, const struct vp *x, struct report *r,
                       const json_t *op)
{
    const json_t *declared = json_object_get(op, "templateParameters");
    size_t i;
    const json_t *p;
    json_array_foreach(declared, i, p)
    {
        const char *nm = defs_str(p, "name");
        pt_bytes name = {nm, strlen(nm)}, v;
        int action = report_override_action(x->path.ov, x->path.nov, name, false, x->path.specified);
        if (api->matched_param(call, name, &v) != 0 && api->query_param(call, name, &v) != 0) {
            if (report_required(r, &k_path, name, action))
                return true;
            continue;
        }
        if (report_param(r, x->defs, p, &k_path, name, v, action))
            return true;
    }
    const char *tpl = defs_str(op, "urlTemplate");
    for (const char *s = tpl; (s = strchr(s, '{')) && (!strchr(tpl, '?') || s < strchr(tpl, '?')); s++) {
        const char *e = strchr(s, '}');
        if (!e)
            break;
        pt_bytes name = {s + 1, (size_t)(e - s - 1)};
        if (name.len && name.data[0] == '*') /* a catch-all {*rest} */
            name = (pt_bytes){name.data + 1, name.len - 1};
        if (report_find_param(declared, name, false))
            continue;
        int action = report_override_action(x->path.ov, x->path.nov, name, false, x->path.unspecified);
        if (report_unspecified(r, &k_path, name, action))
            return true;
    }
    return false;
}

static bool check_query(const struct pt_api *api, pt_call *call, const struct vp *x, struct report *r,
                        const json_t *op)
{
    const json_t *declared = json_object_get(json_object_get(op, "request"), "queryParameters");
    const json_t *tparams = json_object_get(op, "templateParameters");
    const char *tpl = defs_str(op, "urlTemplate");
    struct ptl_qseg *segs;
    int n = ptl_query_split(api, call, api->query(call), &segs);
    if (n < 0) {
        r->recs.oom = true; /* report_finish answers 500 OutOfMemory */
        return true;
    }
    pt_bytes *keys = api->alloc(call, sizeof(*keys) * (size_t)(n ? n : 1));
    pt_bytes *vals = api->alloc(call, sizeof(*vals) * (size_t)(n ? n : 1));
    if (!keys || !vals) {
        r->recs.oom = true;
        return true;
    }
    for (int i = 0; i < n; i++) {
        pt_bytes raw = segs[i].raw;
        keys[i] = form_decode(api, call, segs[i].key);
        vals[i] = segs[i].key.len < raw.len
                      ? form_decode(api, call,
                                    (pt_bytes){raw.data + segs[i].key.len + 1, raw.len - segs[i].key.len - 1})
                      : (pt_bytes){"", 0};
    }
    for (int i = 0; i < n; i++) {
        bool seen = false;
        int count = 1;
        for (int j = 0; j < n; j++)
            if (j != i && ptl_bytes_eq(keys[j], keys[i])) {
                seen |= j < i;
                count++;
            }
        if (seen || !keys[i].len)
            continue;
        const json_t *p = report_find_param(declared, keys[i], false);
        if (!p && in_template_query(tpl, keys[i]) && report_find_param(tparams, keys[i], false))
            continue; /* a template parameter: checked with the path */
        int action = report_override_action(x->query.ov, x->query.nov, keys[i], false,
                                            p ? x->query.specified : x->query.unspecified);
        if (!p) {
            if (!is_subscription_key(api, call, vals[i]) && report_unspecified(r, &k_query, keys[i], action))
                return true;
            continue;
        }
        if (count > 1 && strcmp(defs_str(p, "type"), "array")) {
            if (report_multiple(r, &k_query, keys[i], action))
                return true;
            continue;
        }
        if (report_param(r, x->defs, p, &k_query, keys[i], vals[i], action))
            return true;
    }
    size_t i;
    const json_t *p;
    json_array_foreach(declared, i, p)
    {
        if (!json_is_true(json_object_get(p, "required")))
            continue;
        const char *nm = defs_str(p, "name");
        pt_bytes name = {nm, strlen(nm)};
        bool present = false;
        for (int j = 0; j < n && !present; j++)
            present = ptl_bytes_eq(keys[j], name);
        if (!present && report_required(r, &k_query, name,
                                        report_override_action(x->query.ov, x->query.nov, name, false,
                                                               x->query.specified)))
            return true;
    }
    return false;
}

static bool check_headers(const struct pt_api *api, pt_call *call, const struct vp *x, struct report *r,
                          const json_t *op)
{
    const json_t *declared = json_object_get(json_object_get(op, "request"), "headers");
    pt_bytes name, value;
    for (int i = 0; api->header_at(call, PT_MSG_REQUEST, i, &name, &value) == 0 && i < 1000; i++) {
        const json_t *p = report_find_param(declared, name, true);
        if (!p && report_standard_header(name, false))
            continue;
        bool seen = false;
        pt_bytes n2, v2;
        for (int j = 0; j < i && !seen && api->header_at(call, PT_MSG_REQUEST, j, &n2, &v2) == 0; j++)
            seen = n2.len == name.len && !strncasecmp(n2.data, name.data, name.len);
        if (seen)
            continue;
        int action = report_override_action(x->headers.ov, x->headers.nov, name, true,
                                            p ? x->headers.specified : x->headers.unspecified);
        if (!p) {
            if (!is_subscription_key(api, call, value) && report_unspecified(r, &k_header, name, action))
                return true;
            continue;
        }
        pt_bytes vals[2];
        if (api->header_get(call, PT_MSG_REQUEST, name, vals, 2) > 1 &&
            strcmp(defs_str(p, "type"), "array")) {
            if (report_multiple(r, &k_header, name, action))
                return true;
            continue;
        }
        if (report_param(r, x->defs, p, &k_header, name, value, action))
            return true;
    }
    size_t i;
    const json_t *p;
    json_array_foreach(declared, i, p)
    {
        if (!json_is_true(json_object_get(p, "required")))
            continue;
        const char *nm = defs_str(p, "name");
        pt_bytes b = {nm, strlen(nm)}, v;
        if (api->header_get(call, PT_MSG_REQUEST, b, &v, 1) <= 0 &&
            report_required(
                r, &k_header, b,
                report_override_action(x->headers.ov, x->headers.nov, b, true, x->headers.specified)))
            return true;
    }
    return false;
}

pt_status validate_parameters_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct vp *x = inst;
    const json_t *op = defs_operation(x->defs, api, call);
    if (!op)
        return PT_OK;
    struct report r;
    report_init(&r, api, call, "validate-parameters", x->var, false);
    if (!check_path(api, call, x, &r, op) && !check_query(api, call, x, &r, op))
        check_headers(api, call, x, &r, op);
    return report_finish(&r);
}
