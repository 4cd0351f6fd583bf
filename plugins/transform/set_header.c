/*
 * set_header.c -- set-header: sets, appends, keeps or deletes a header of
 * the current message.
 *
 * It also offers set-query-parameter what the two share: the exists-action
 * values and the compiled instance (a name, a mode and values).
 */
#include "transform.h"

#include <string.h>

const char *const set_header_exists_actions[] = {"override", "skip", "append", "delete", NULL};
static const char *const protected_headers[] = {"Connection", "Content-Length", "Keep-Alive",
                                                "Transfer-Encoding", NULL};

const struct pt_attr_def set_header_attrs[] = {
    {"name", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "name of the header to set (a token)"},
    {"exists-action", PT_ATTR_ENUM, 0, "override", set_header_exists_actions, NULL, 0, 0,
     "override replaces it, skip keeps an existing one, append adds values, delete removes it"},
    {"value", PT_ATTR_STRING, PT_ATTR_EXPR | PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0,
     "one or more values (required unless exists-action is delete); several are joined with ', ' "
     "except for headers that must stay separate lines such as Set-Cookie"},
    {0},
};

/* The instance set-header and set-query-parameter share: the name, exists-action and the values. */
int set_header_compile_named(const struct pt_api *api, pt_compile *c, void **instance, const char *what)
{
    struct named_values *x = api->compile_alloc(c, sizeof(*x));
    if (!x)
        return -1;
    x->name = api->attr_value(c, "name");
    x->mode = (pt_header_mode)api->attr_enum(c, "exists-action", PT_HEADER_OVERRIDE);
    x->nvalues = api->attr_values(c, "value", &x->values);
    if (!x->name || x->nvalues < 0)
        return -1;
    if (x->mode != PT_HEADER_DELETE && x->nvalues == 0) {
        api->compile_error(c, NULL, "%s needs at least one value unless exists-action is delete", what);
        return -1;
    }
    *instance = x;
    return 0;
}

/* Literal names are checked now; names from expressions when they are set. */
int set_header_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    const char *name = api->attr_literal(c, "name");
    if (name) {
        if (!ptl_is_token(name, strlen(name))) {
            api->compile_error(c, "name", "'%s' is not a valid header name", name);
            return -1;
        }
        for (int i = 0; protected_headers[i]; i++)
            if (ptl_bytes_ieq((pt_bytes){name, strlen(name)}, protected_headers[i])) {
                api->compile_error(c, "name", "the %s header is managed by the gateway and cannot be set",
                                   protected_headers[i]);
                return -1;
            }
    }
    return set_header_compile_named(api, c, instance, "set-header");
}

pt_status set_header_eval_named(const struct pt_api *api, pt_call *call, const struct named_values *x,
                                pt_bytes *name, pt_bytes **vals, int *n)
{
    int st;
    if ((st = ptl_eval(api, call, x->name, name)))
        return (pt_status)st;
    *n = x->mode == PT_HEADER_DELETE ? 0 : x->nvalues;
    *vals = api->alloc(call, sizeof(**vals) * (size_t)(*n ? *n : 1));
    if (!*vals)
        return ptl_out_of_memory(api, call);
    for (int i = 0; i < *n; i++)
        if ((st = ptl_eval(api, call, x->values[i], &(*vals)[i])))
            return (pt_status)st;
    return PT_OK;
}

/* Evaluates the name and every value, then sets them in one call (the core joins). */
pt_status set_header_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct named_values *x = inst;
    pt_bytes name, *vals;
    int n;
    pt_status st = set_header_eval_named(api, call, x, &name, &vals, &n);
    if (st != PT_OK)
        return st;
    if (api->header_set(call, PT_MSG_CURRENT, name, vals, n, x->mode) != 0)
        return PT_ERROR;
    return PT_OK;
}
