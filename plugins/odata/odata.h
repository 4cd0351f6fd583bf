/*
 * odata.h -- what the files of the OData family share (plugins/odata:
 * validate-odata-request).  Names follow the other families: a policy's
 * file offers its attributes, compile() and run() named after the policy.
 */
#ifndef PORTICO_PLUGINS_ODATA_H
#define PORTICO_PLUGINS_ODATA_H

#include "ptlib.h"

extern const struct pt_attr_def validate_odata_request_attrs[];
int validate_odata_request_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status validate_odata_request_run(const struct pt_api *api, pt_call *call, void *instance);

#endif
