/*
 * emit_metric.c -- emit-metric: adds a value to a custom counter with
 * dimensions, shown on /metrics (and rendered for OTLP) by the gateway
 * (api->metric_emit, ABI 1.6; docs/metrics.md).
 *
 * As APIM: `name` is required and literal, `namespace` defaults to "API
 * Management", `value` (a double, an expression allowed) to 1, and one to
 * ten `dimension` elements name the series; the built-in dimensions (API
 * ID, Operation ID, Product ID, User ID, Subscription ID, Location, Gateway
 * ID) may leave out their value and take the request's.  Decisions where
 * APIM leaves room: a value that is not a finite number >= 0 at run time
 * fails the statement (ExpressionValueEvaluationFailure, as a bad
 * expression would), since a Prometheus counter only grows; names that
 * become the same Prometheus name are refused at compile time.
 */
#include "observe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DIMS 10

static const struct pt_attr_def dimension_attrs[] = {
    {"name", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0,
     "the dimension's name (a Prometheus label once lower-cased, other characters as `_`)"},
    {"value", PT_ATTR_STRING, PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "its value; only the built-in dimensions may leave it out (they take the request's)"},
    {0},
};

const struct pt_attr_def emit_metric_attrs[] = {
    {"name", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0,
     "the metric's name (not an expression)"},
    {"namespace", PT_ATTR_STRING, 0, "API Management", NULL, NULL, 0, 0,
     "the metric's namespace: the Prometheus name is namespace_name"},
    {"value", PT_ATTR_STRING, PT_ATTR_EXPR, "1", NULL, NULL, 0, 0, "what is added: a number >= 0"},
    {"dimension", PT_ATTR_ELEMENT, PT_ATTR_MULTI | PT_ATTR_REQUIRED, NULL, NULL, dimension_attrs, 0, 0,
     "one to ten: name and value"},
    {0},
};

struct emit_metric {
    const char *ns, *name;
    double value;   /* when literal */
    pt_value *expr; /* the value, when an expression */
    pt_bytes names[MAX_DIMS];
    pt_value *values[MAX_DIMS]; /* NULL: a built-in dimension's own value */
    int n;
};

/* A number >= 0 written out in full; false otherwise. */
static bool parse_value(pt_bytes b, double *out)
{
    char s[64];
    b = ptl_trim(b);
    if (!b.len || b.len >= sizeof(s))
        return false;
    memcpy(s, b.data, b.len);
    s[b.len] = '\0';
    char *end;
    double d = strtod(s, &end);
    if (*end || !isfinite(d) || d < 0)
        return false;
    *out = d;
    return true;
}

int emit_metric_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    if (api->size < offsetof(struct pt_api, metric_emit) + sizeof(void *) || !api->metric_emit) {
        api->compile_error(c, NULL, "emit-metric needs a gateway with plugin ABI 1.6");
        return -1;
    }
    struct emit_metric *m = api->compile_alloc(c, sizeof(*m));
    if (!m)
        return -1;
    m->name = api->attr_literal(c, "name");
    m->ns = api->attr_literal(c, "namespace");
    if (!m->ns)
        m->ns = "API Management";
    if (!m->name || api->metric_emit(NULL, m->ns, m->name, 1, NULL, NULL, 0) != 0) {
        api->compile_error(c, "name",
                           "'%s' (namespace '%s') makes no metric name: it needs a letter or digit, and "
                           "portico_ and process_ names are the gateway's own",
                           m->name ? m->name : "", m->ns);
        return -1;
    }
    const char *lit = api->attr_literal(c, "value");
    pt_value *v = api->attr_value(c, "value");
    m->value = 1;
    if (lit) {
        if (!parse_value((pt_bytes){lit, strlen(lit)}, &m->value)) {
            api->compile_error(c, "value", "'%s' is not a number >= 0", lit);
            return -1;
        }
    } else if (v)
        m->expr = v;
    pt_element **dims;
    int nd = api->attr_elements(c, "dimension", &dims);
    if (nd < 1 || nd > MAX_DIMS) {
        api->compile_error(c, "dimension", "emit-metric takes 1 to %d dimensions, not %d", MAX_DIMS, nd);
        return -1;
    }
    for (int i = 0; i < nd; i++) {
        const char *dn = api->elem_literal(dims[i], "name");
        if (!dn) {
            api->compile_error(c, "dimension", "a dimension's name is written out, not an expression");
            return -1;
        }
        m->names[i] = (pt_bytes){dn, strlen(dn)};
        m->values[i] = api->elem_value(dims[i], "value");
        /* alone: a usable name, and a value unless built in */
        pt_bytes none = {NULL, 0}, some = {"", 0};
        if (api->metric_emit(NULL, m->ns, m->name, 1, &m->names[i], m->values[i] ? &some : &none, 1) != 0) {
            if (api->metric_emit(NULL, m->ns, m->name, 1, &m->names[i], &some, 1) != 0)
                api->compile_error(c, "dimension", "dimension name '%s' makes no label name", dn);
            else
                api->compile_error(
                    c, "dimension",
                    "dimension '%s' needs a value: only API ID, Operation ID, Product ID, User "
                    "ID, Subscription ID, Location and Gateway ID may leave it out",
                    dn);
            return -1;
        }
        for (int k = 0; k < i; k++) {
            pt_bytes pair[2] = {m->names[k], m->names[i]}, vals[2] = {{"", 0}, {"", 0}};
            if (api->metric_emit(NULL, m->ns, m->name, 1, pair, vals, 2) != 0) {
                api->compile_error(c, "dimension", "dimensions '%s' and '%s' have the same name as labels",
                                   m->names[k].data, dn);
                return -1;
            }
        }
    }
    m->n = nd;
    *instance = m;
    return 0;
}

pt_status emit_metric_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct emit_metric *m = inst;
    double value = m->value;
    if (m->expr) {
        pt_bytes b;
        int st = ptl_eval(api, call, m->expr, &b);
        if (st)
            return (pt_status)st;
        if (!parse_value(b, &value))
            return api->fail(call, 500, "ExpressionValueEvaluationFailure",
                             "emit-metric: the value is not a number >= 0");
    }
    pt_bytes vals[MAX_DIMS];
    for (int i = 0; i < m->n; i++) {
        if (!m->values[i]) {
            vals[i] = (pt_bytes){NULL, 0};
            continue;
        }
        int st = ptl_eval(api, call, m->values[i], &vals[i]);
        if (st)
            return (pt_status)st;
        if (!vals[i].data)
            vals[i].data = "";
    }
    api->metric_emit(call, m->ns, m->name, value, m->names, vals, m->n);
    return PT_OK;
}
