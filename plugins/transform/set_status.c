/*
 * set_status.c -- set-status: the response's status code and reason phrase.
 */
#include "transform.h"

const struct pt_attr_def set_status_attrs[] = {
    {"code", PT_ATTR_INT, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 100, 999,
     "the status code (100-999)"},
    {"reason", PT_ATTR_STRING, PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "the reason phrase (the standard one when absent)"},
    {0},
};

struct set_status {
    int code; /* literal, or 0 */
    pt_value *code_expr;
    pt_value *reason;
};

int set_status_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct set_status *x = api->compile_alloc(c, sizeof(*x));
    if (!x)
        return -1;
    if (api->attr_literal(c, "code"))
        x->code = (int)api->attr_int(c, "code", 200);
    else if (!(x->code_expr = api->attr_value(c, "code")))
        return -1;
    x->reason = api->attr_value(c, "reason");
    *instance = x;
    return 0;
}

pt_status set_status_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct set_status *x = inst;
    int code = x->code, st;
    if (x->code_expr) {
        pt_bytes v;
        if ((st = ptl_eval(api, call, x->code_expr, &v)))
            return (pt_status)st;
        v = ptl_trim(v);
        long k = 0;
        size_t i = 0;
        for (; i < v.len && i < 4 && v.data[i] >= '0' && v.data[i] <= '9'; i++)
            k = k * 10 + (v.data[i] - '0');
        /* "404" or a number rendered by Lua as "404.0" */
        if (i < v.len && !(v.len - i == 2 && v.data[i] == '.' && v.data[i + 1] == '0'))
            i = 0;
        if (!i || k < 100 || k > 999)
            return api->fail(call, 500, "ExpressionValueEvaluationFailure",
                             "set-status: the code must be an integer between 100 and 999");
        code = (int)k;
    }
    pt_bytes reason = {"", 0};
    if (x->reason && (st = ptl_eval(api, call, x->reason, &reason)))
        return (pt_status)st;
    return api->set_status(call, code, reason) == 0 ? PT_OK : PT_ERROR;
}
