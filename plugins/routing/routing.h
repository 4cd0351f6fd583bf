/*
 * routing.h -- what the files of the routing family share
 * (plugins/routing: set-backend-service, proxy, send-request,
 * send-one-way-request).  Names follow the other families: a policy's file
 * offers its attributes, compile() and run() named after the policy.
 */
#ifndef PORTICO_PLUGINS_ROUTING_H
#define PORTICO_PLUGINS_ROUTING_H

#include "ptlib.h"

/* ---- set_backend_service.c: set-backend-service ---- */

extern const struct pt_attr_def set_backend_service_attrs[];
int set_backend_service_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status set_backend_service_run(const struct pt_api *api, pt_call *call, void *inst);

/* ---- proxy.c: proxy (forward-request through an HTTP proxy) ---- */

extern const struct pt_attr_def proxy_attrs[];
int proxy_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status proxy_run(const struct pt_api *api, pt_call *call, void *inst);

/* ---- send_request.c: send-request and send-one-way-request ---- */

extern const struct pt_attr_def send_request_attrs[];
extern const struct pt_attr_def send_one_way_request_attrs[];
int send_request_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status send_request_run(const struct pt_api *api, pt_call *call, void *inst);
int send_one_way_request_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status send_one_way_request_run(const struct pt_api *api, pt_call *call, void *inst);

#endif
