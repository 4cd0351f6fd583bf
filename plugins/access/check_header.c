/*
 * check_header.c -- check-header: requires a request header, optionally
 * with one of the listed values.
 */
#include "access.h"

#include <string.h>
#include <strings.h>

static bool bytes_ieq(pt_bytes a, pt_bytes b)
{
    return a.len == b.len && (!a.len || !strncasecmp(a.data, b.data, a.len));
}

const struct pt_attr_def check_header_attrs[] = {
    {"name", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "the request header to check"},
    {"failed-check-httpcode", PT_ATTR_INT, PT_ATTR_REQUIRED, NULL, NULL, NULL, 200, 599,
     "status when the check fails"},
    {"failed-check-error-message", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0,
     "message of the error body"},
    {"ignore-case", PT_ATTR_BOOL, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0,
     "compare values case-insensitively"},
    {"value", PT_ATTR_STRING, PT_ATTR_MULTI | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "allowed values (any one passes); none = the header must only be present"},
    {0},
};

struct check_header {
    const char *name;
    int code;
    const char *msg;
    bool icase;
    pt_value **values;
    int nvalues;
};

int check_header_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct check_header *x = api->compile_alloc(c, sizeof(*x));
    x->name = api->attr_literal(c, "name");
    x->code = (int)api->attr_int(c, "failed-check-httpcode", 401);
    x->msg = api->attr_literal(c, "failed-check-error-message");
    x->icase = api->attr_bool(c, "ignore-case", 0);
    x->nvalues = api->attr_values(c, "value", &x->values);
    if (!x->name || !*x->name) {
        api->compile_error(c, "name", "a header name is required (not an expression)");
        return -1;
    }
    *instance = x;
    return 0;
}

pt_status check_header_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct check_header *x = inst;
    pt_bytes got[16];
    int n = api->header_get(call, PT_MSG_REQUEST, (pt_bytes){x->name, strlen(x->name)}, got, 16);
    if (n <= 0)
        return api->fail(call, x->code, "HeaderNotFound", x->msg ? x->msg : "");
    if (!x->nvalues)
        return PT_OK;
    for (int i = 0; i < x->nvalues; i++) {
        pt_bytes want;
        int st = ptl_eval(api, call, x->values[i], &want);
        if (st)
            return (pt_status)st;
        for (int k = 0; k < n && k < 16; k++)
            if (x->icase ? bytes_ieq(got[k], want)
                         : (got[k].len == want.len && !memcmp(got[k].data, want.data, want.len)))
                return PT_OK;
    }
    return api->fail(call, x->code, "HeaderValueNotAllowed", x->msg ? x->msg : "");
}
