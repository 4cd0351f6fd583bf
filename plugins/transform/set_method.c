/*
 * set_method.c -- set-method: changes the method of the request to the backend.
 */
#include "transform.h"

#include <string.h>

const struct pt_attr_def set_method_attrs[] = {
    {"value", PT_ATTR_STRING, PT_ATTR_EXPR | PT_ATTR_SCALAR, NULL, NULL, NULL, 0, 0,
     "the new method (a token such as POST); may be written as the policy's bare value"},
    {0},
};

int set_method_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    pt_value *v = api->attr_value(c, "value");
    const char *lit = api->attr_literal(c, "value");
    if (!v) {
        api->compile_error(c, NULL, "the method is missing (write e.g. `set-method: POST`)");
        return -1;
    }
    if (lit && !ptl_is_token(lit, strlen(lit))) {
        api->compile_error(c, "value", "'%s' is not a valid method", lit);
        return -1;
    }
    *instance = v;
    return 0;
}

pt_status set_method_run(const struct pt_api *api, pt_call *call, void *inst)
{
    pt_bytes m;
    int st;
    if ((st = ptl_eval(api, call, inst, &m)))
        return (pt_status)st;
    return api->set_method(call, ptl_trim(m)) == 0 ? PT_OK : PT_ERROR;
}
