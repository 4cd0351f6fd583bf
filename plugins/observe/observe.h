/*
 * observe.h -- what the files of the observability family share
 * (plugins/observe: trace, emit-metric, log-to-eventhub and its alias
 * log-to).  Names follow the other families: a policy's file offers its
 * attributes, compile() and run() named after the policy.
 */
#ifndef PORTICO_PLUGINS_OBSERVE_H
#define PORTICO_PLUGINS_OBSERVE_H

#include "ptlib.h"

/* ---- trace.c ---- */

extern const struct pt_attr_def trace_attrs[];
int trace_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status trace_run(const struct pt_api *api, pt_call *call, void *instance);
/* log_to.c: log-to-eventhub and its alias log-to (L) */
extern const struct pt_attr_def log_to_attrs[];
int log_to_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status log_to_run(const struct pt_api *api, pt_call *call, void *inst);
/* ---- emit_metric.c: emit-metric ---- */

extern const struct pt_attr_def emit_metric_attrs[];
int emit_metric_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status emit_metric_run(const struct pt_api *api, pt_call *call, void *inst);

#endif
