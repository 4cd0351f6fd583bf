/*
 * routing.c -- the routing family's descriptor, named and shaped after
 * Azure API Management's routing and external-call policies.
 */
#include "routing.h"

static const struct pt_policy_def policies[] = {
    {"set-backend-service", PT_SECTION_INBOUND | PT_SECTION_BACKEND, PT_SCOPE_ALL, 0,
     set_backend_service_attrs, set_backend_service_compile, set_backend_service_run, NULL,
     "Changes where forward-request sends the request: a base URL or a configured backend "
     "(docs/backends.md)."},
    {"proxy", PT_SECTION_INBOUND | PT_SECTION_BACKEND, PT_SCOPE_ALL, 0, proxy_attrs, proxy_compile, proxy_run,
     NULL, "Sends forward-request's call through an HTTP proxy, with Basic credentials when given."},
    {"send-request", PT_SECTION_ALL, PT_SCOPE_ALL, 0, send_request_attrs, send_request_compile,
     send_request_run, NULL,
     "Calls another HTTP service and keeps its response in a variable (docs/routing.md). The request is "
     "suspended, not the worker: it serves other requests meanwhile."},
    {"send-one-way-request", PT_SECTION_ALL, PT_SCOPE_ALL, 0, send_one_way_request_attrs,
     send_one_way_request_compile, send_one_way_request_run, NULL,
     "Calls another HTTP service without waiting for it (fire and forget; docs/routing.md)."},
    {0},
};

static int routing_init(const struct pt_api *api, const char **err)
{
    if (api->size < offsetof(struct pt_api, cache_mark) + sizeof(void *)) {
        *err = "the routing policies need a gateway with plugin ABI 1.7";
        return -1;
    }
    return 0;
}

PT_PLUGIN("routing", "1.0.0", policies, routing_init, NULL);
