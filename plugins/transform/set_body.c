/*
 * set_body.c -- set-body: replaces the body of the current message.
 */
#include "transform.h"

static const char *const xsi_nil_values[] = {"blank", "null", NULL};

const struct pt_attr_def set_body_attrs[] = {
    {"value", PT_ATTR_STRING, PT_ATTR_EXPR | PT_ATTR_SCALAR, NULL, NULL, NULL, 0, 0,
     "the new body: a literal or an expression; may be written as the policy's bare value"},
    {"template", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "not supported (Liquid templates); build the body with an expression"},
    {"xsi-nil", PT_ATTR_ENUM, 0, "blank", xsi_nil_values, NULL, 0, 0,
     "accepted for compatibility: a missing or nil value always gives an empty body"},
    {0},
};

int set_body_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    if (api->attr_value(c, "template") || api->attr_literal(c, "template")) {
        api->compile_error(c, "template",
                           "Liquid templates are not supported; build the body with an expression");
        return -1;
    }
    /* *instance stays NULL without a value: the body becomes empty */
    *instance = api->attr_value(c, "value");
    return 0;
}

/* The new body replaces the current message's; the core keeps Content-Length right. */
pt_status set_body_run(const struct pt_api *api, pt_call *call, void *inst)
{
    pt_bytes body = {"", 0};
    int st;
    if (inst && (st = ptl_eval(api, call, inst, &body)))
        return (pt_status)st;
    return api->body_set(call, PT_MSG_CURRENT, body) == 0 ? PT_OK : PT_ERROR;
}
