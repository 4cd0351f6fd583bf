/*
 * set_backend_service.c -- set-backend-service (owner: the BACKENDS piece of issue 13; a placeholder
 * that refuses the policy until it lands).
 */
#include "routing.h"

const struct pt_attr_def set_backend_service_attrs[] = {
    {0},
};

int set_backend_service_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    (void)instance;
    api->compile_error(c, NULL, "set-backend-service is not implemented yet");
    return -1;
}

pt_status set_backend_service_run(const struct pt_api *api, pt_call *call, void *inst)
{
    (void)api, (void)call, (void)inst;
    return PT_OK;
}
