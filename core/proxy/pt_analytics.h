/*
 * pt_analytics -- request records and their aggregation (docs/analytics.md).
 *
 * Workers: every request, when it ends (log_request in pt_conn.c), adds its
 * figures to a per-minute bucket in the worker's own chunk -- an
 * open-addressing table keyed by (minute, generation, API, operation,
 * product, subscription) -- and, unless raw records are off, appends its
 * record to the chunk's preallocated batch.  Strings are copied into the
 * chunk's own arena, since the generation they come from may be gone when
 * the chunk is written.  No lock, no allocation, no system call per request.
 *
 * A chunk goes to the control thread when it is full, when it is older than
 * a quarter of a second (on the worker's 50 ms tick) and when the worker
 * ends: pushed onto one lock-free stack that the control thread empties with
 * an atomic exchange.  The control thread writes chunks to the store every
 * analytics.flushInterval in bounded transactions (pt_store_analytics), then
 * hands each chunk back, cleared, to its worker through the worker's own
 * return stack (which the worker also empties with an exchange, so no ABA).
 * It also rolls minute buckets up into hours and days and deletes what is
 * past retention, in small batches.
 */
#ifndef PT_ANALYTICS_H
#define PT_ANALYTICS_H

#include "base/pt.h"
#include "conf/pt_conf.h"
#include "conf/pt_store_analytics.h"

#include <jansson.h>

struct pt_req;
struct pt_store;
struct event_base;
struct pt_analytics_w;

/* ---- pure pieces ---- */

enum { PT_AN_SUCCESS, PT_AN_BLOCKED, PT_AN_FAILED, PT_AN_OTHER };
/* APIM's outcome of a response status: success (<= 301, 304, 307), blocked
   (401, 403, 429), failed (400, 500-599), other. */
int pt_analytics_outcome(int status);
/* The counts of one request: its status, bytes in + out, cache status (0 none,
   1 hit, 2 miss), total time and backend time (µs; < 0: no backend call). */
void pt_analytics_counts_of(struct pt_store_an_counts *c, int status, uint64_t bytes, int cache,
                            uint64_t api_us, int64_t svc_us);
/* Adds b's counts to a (sums add; minimums and maximums keep the extreme, a
   bucket without calls, or without backend calls for the backend times,
   counting for nothing). */
void pt_analytics_counts_merge(struct pt_store_an_counts *a, const struct pt_store_an_counts *b);

/* ---- workers ---- */

/* A worker's analytics state (its chunks); lives until pt_analytics_stop. */
struct pt_analytics_w *pt_analytics_worker_new(int id);
/* Records a request that ends (the worker's thread only). */
void pt_analytics_record(struct pt_analytics_w *w, struct pt_req *req);
/* The worker's tick: hands an aged chunk over. */
void pt_analytics_tick(struct pt_analytics_w *w);
/* The worker ends: hands everything over. */
void pt_analytics_worker_end(struct pt_analytics_w *w);

/* ---- control thread ---- */

/* Starts the flush timer on the control thread's loop, writing to store. */
void pt_analytics_start(struct event_base *base, struct pt_store *store, const struct pt_analytics_cf *cf);
/* A new running configuration (copied). */
void pt_analytics_configure(const struct pt_analytics_cf *cf);
/* Writes what the workers handed over now (they have ended: everything). */
void pt_analytics_flush(void);
/* Final flush, then frees every chunk; after the workers ended, before the store closes. */
void pt_analytics_stop(void);

/* Counters for /metrics (atomic reads, any thread). */
struct pt_analytics_stats {
    uint64_t records;          /* requests recorded by the workers */
    uint64_t flushed;          /* requests whose figures are in the store */
    uint64_t dropped;          /* requests not recorded (no free chunk, or a chunk given up) */
    uint64_t buckets_written;  /* bucket upserts written */
    uint64_t requests_written; /* raw request records written */
    uint64_t flush_errors;     /* flushes the store refused (retried) */
    uint64_t unsampled;        /* requests counted but without a request record (maxPerSecond) */
};
void pt_analytics_stats(struct pt_analytics_stats *out);

/* ---- gateway nodes: figures shipped to the control plane ----
 *
 * A node's flushed minute buckets go to the control plane in its heartbeats
 * as a JSON batch (docs/analytics.md, "Gateway nodes"):
 *   {"version": 1, "id": "<node part>-<sequence>", "dropped": <calls>,
 *    "buckets": [{"start": <Unix s, a minute>, "api", "operation", "product",
 *                 "subscription", "user" (strings; absent: none),
 *                 "success", "blocked", "failed", "other", "bandwidth",
 *                 "cacheHit", "cacheMiss", "timeSum", "timeMin", "timeMax",
 *                 "backendCount", "backendSum", "backendMin", "backendMax"
 *                 (integers, µs for times; absent: 0)}, ...]}
 */
#define PT_ANALYTICS_SHIPMENT_VERSION 1
/* On a node: flushed buckets are kept for shipping (bounded: 20,000
   buckets, the oldest dropped and counted) and not written to the store, and
   no request records are made: a node has no management API to read them,
   so they would only grow its memory.  Off: what is kept is freed. */
void pt_analytics_shipping(bool on);
/* Adds one minute bucket to what is kept (what the flush does for each bucket
   it committed; tests).  Nothing while shipping is off. */
void pt_analytics_shipment_keep(const struct pt_store_an_bucket *b);
/* The next batch (a put-back one first, as it was, though never twice in a
   row while fresh buckets wait; else up to 2,000 buckets kept since the last
   take), NULL when there is nothing.  Any thread. */
json_t *pt_analytics_shipment_take(void);
/* A batch that could not be delivered goes back whole, to be taken again
   first (bounded: 16 batches, the oldest dropped and counted).  Takes the
   reference.  Not for a batch the control plane refused (400): that one
   would be refused again. */
void pt_analytics_shipment_putback(json_t *batch);
/* Calls whose figures a node dropped before shipping them (queue full). */
uint64_t pt_analytics_shipment_dropped(void);
/* On the control plane: checks a node's batch strictly (all of it before
   writing any: sizes, types, figures a node can count, keys once, the
   gateway's own APIs and existing ids, minutes within retention) and adds
   its buckets to the store's minute buckets -- the same buckets as the
   control plane's own traffic, so every report covers every node.  A batch
   whose (gateway, node part, sequence) was taken already is answered as
   delivered (true, nothing added).  false
   with err set: "analytics: ..." for a bad batch, "store: ..." when the
   store refused (send again).  st NULL: checks only.  Control thread. */
bool pt_analytics_shipment_ingest(struct pt_store *st, const json_t *batch, const char *gateway, char *err,
                                  size_t errlen);
#endif
