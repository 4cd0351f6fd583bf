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
    {"send-request", PT_SECTION_ALL, PT_SCOPE_ALL, PT_POLICY_HTTP_SEND | PT_POLICY_HTTP_VERSION,
     send_request_attrs, send_request_compile, send_request_run, NULL,
     "Calls another HTTP service and keeps its response in the variable response-variable-name: in "
     "expressions context.variables[name] is a response object (statusCode, headers, body), and "
     "return-response can answer with it. The request is suspended, not the worker: the call runs on the "
     "worker's own non-blocking client (http or https, through an HTTP proxy with CONNECT for https, with a "
     "client certificate), one deadline (`timeout`) for the whole exchange, the response body capped at "
     "limits.bufferSize, no redirects followed. A failure runs on-error with the reason Timeout or "
     "BackendConnectionFailure, unless ignore-error makes the variable nil. The call is abandoned when the "
     "request ends (the client went away). See routing.md."},
    {"send-one-way-request", PT_SECTION_ALL, PT_SCOPE_ALL, PT_POLICY_HTTP_SEND | PT_POLICY_HTTP_VERSION,
     send_one_way_request_attrs, send_one_way_request_compile, send_one_way_request_run, NULL,
     "Calls another HTTP service without waiting for it (fire and forget): the request is copied to its "
     "worker's queue and the pipeline goes on at once. Each worker runs at most 16 such calls at a time and "
     "keeps 64 more waiting; past that a call is dropped and counted "
     "(portico_send_one_way_requests_total{result=\"dropped\"} on /metrics). Calls outlive the request "
     "that made them. Same attributes and children as send-request, without response-variable-name and "
     "ignore-error. See routing.md."},
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
