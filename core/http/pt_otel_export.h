/*
 * pt_otel_export -- the OTLP/HTTP exporter thread.
 *
 * One thread takes finished spans from the workers' queues (pt_otel.c) and
 * posts them in batches (telemetry.batchSize, at least every
 * telemetry.exportInterval) to telemetry.endpoint with pt_fetch.  A batch
 * that fails (no connection, a timeout, 429 or 5xx) is tried twice more,
 * after 200 ms and 800 ms, then dropped and counted.  Workers never wait
 * for it: what the queues cannot hold is dropped where it is produced.
 * It also posts OTLP metrics, when a source is registered, every
 * telemetry.metricsInterval to telemetry.metricsEndpoint.
 *
 * Everything here runs on the control thread except the thread itself.
 */
#ifndef PT_OTEL_EXPORT_H
#define PT_OTEL_EXPORT_H

#include "base/pt.h"
#include "conf/pt_conf.h"

/* At start, with the number of workers (fixed for the process) and the
   first generation's settings.  false when the queues or thread cannot be
   made (the gateway runs on without exporting). */
bool pt_otel_export_start(int nworkers, const struct pt_telemetry_cf *t);
/* A new generation's settings (reload, management write): used from the
   next batch on.  The queue size stays what it was at start. */
void pt_otel_export_configure(const struct pt_telemetry_cf *t);
/* At stop, once the workers are gone: sends what the queues hold within
   deadline_ms (then cancels), ends the thread, writes the counters to the
   error log and frees the queues. */
void pt_otel_export_stop(uint32_t deadline_ms);

/* A source of OTLP metrics: returns a malloc'd OTLP/JSON
   ExportMetricsServiceRequest body (the exporter frees it) and its length,
   or NULL when there is nothing to send.  Called on the exporter thread
   every telemetry.metricsInterval; it must only read thread-safe state. */
typedef char *(*pt_otel_export_metrics_fn)(void *arg, size_t *len);
/* Registers (or, with NULL, removes) the metrics source; any thread, any time. */
void pt_otel_export_set_metrics(pt_otel_export_metrics_fn fn, void *arg);

#endif
