/*
 * proxy.c -- proxy (owner: the BACKENDS piece of issue 13; a placeholder
 * that refuses the policy until it lands).
 */
#include "routing.h"

const struct pt_attr_def proxy_attrs[] = {
    {0},
};

int proxy_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    (void)instance;
    api->compile_error(c, NULL, "proxy is not implemented yet");
    return -1;
}

pt_status proxy_run(const struct pt_api *api, pt_call *call, void *inst)
{
    (void)api, (void)call, (void)inst;
    return PT_OK;
}
