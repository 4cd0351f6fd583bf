/*
 * send_request.c -- send-request and send-one-way-request (docs/routing.md).
 */
#include "routing.h"

const struct pt_attr_def send_request_attrs[] = {
    {0},
};
const struct pt_attr_def send_one_way_request_attrs[] = {
    {0},
};

int send_request_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    (void)instance;
    api->compile_error(c, NULL, "send-request is not implemented yet");
    return -1;
}

pt_status send_request_run(const struct pt_api *api, pt_call *call, void *inst)
{
    (void)api, (void)call, (void)inst;
    return PT_OK;
}

int send_one_way_request_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    (void)instance;
    api->compile_error(c, NULL, "send-one-way-request is not implemented yet");
    return -1;
}

pt_status send_one_way_request_run(const struct pt_api *api, pt_call *call, void *inst)
{
    (void)api, (void)call, (void)inst;
    return PT_OK;
}
