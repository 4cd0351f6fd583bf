/*
 * pt_reqmetrics -- the connection layer's figures on /metrics
 * (docs/metrics.md): every finished request counted by API, operation,
 * product and status class with its duration, its backend call, and the
 * worker's gauges (open connections, idle pooled backend connections, Lua
 * memory) published at each timer tick.
 *
 * Per request: a look in a small per-worker cache of series numbers keyed
 * by the generation and the request's API, operation, product and status
 * classes, then worker-local additions (event/pt_metrics.h).  No lock, no
 * allocation, no system call; a cache miss looks the series up in the
 * registry's lock-free tables.
 */
#ifndef PT_REQMETRICS_H
#define PT_REQMETRICS_H

#include "base/pt.h"

struct pt_req;
struct pt_worker;

/* Sets up the per-worker caches (pt_workers_start, before the threads run). */
void pt_reqmetrics_init(int nworkers);
/* Counts a finished request (log_request). */
void pt_reqmetrics_record(struct pt_req *req);
/* Publishes the worker's gauges (its timer tick). */
void pt_reqmetrics_tick(struct pt_worker *w);

#endif
