/*
 * pt_metrics -- the metrics registry behind /metrics (docs/metrics.md).
 *
 * A family is a named metric (counter, gauge or histogram) with labels.
 * Its series (one per distinct set of label values) are interned once, in
 * a table shared by every thread: the table only grows, its slots are
 * published with release stores and read with acquire loads, so finding a
 * series never takes a lock; the registry's mutex is taken only to add a
 * new series, which happens at most `maxSeries` times per family in the
 * life of the process.  Past that cap a new label set is counted in the
 * family's "other" series (every label value "other"); a few slots above
 * the cap are kept for those.
 *
 * Values are sharded: every family holds one array of plain 64-bit slots
 * per shard, shard 0 for the control thread and shard w + 1 for worker w.
 * Only the shard's own thread writes its slots, with relaxed load and store
 * (no read-modify-write, no lock, no allocation), and a scrape sums the
 * shards with relaxed loads.  Counters and gauges are a slot per series
 * (gauges: each shard's value, summed); a histogram is a slot per bucket
 * (not cumulative; the scrape accumulates), its count and its sum in
 * microseconds.  Buckets are the same for every histogram
 * (PT_METRICS_BUCKETS_US).
 *
 * Values read at scrape time from elsewhere (pools, the counter table, the
 * stats of other parts) come from collectors: functions called on the
 * scraping thread that write samples through a sink.
 */
#ifndef PT_METRICS_H
#define PT_METRICS_H

#include "base/pt.h"

#include <stdatomic.h>

struct evbuffer;

enum pt_metrics_type { PT_METRICS_COUNTER, PT_METRICS_GAUGE, PT_METRICS_HISTOGRAM };

/* Family flags */
#define PT_METRICS_DOUBLE 0x1 /* counter values are doubles (emit-metric's sums) */
#define PT_METRICS_CUSTOM 0x2 /* an emit-metric family: label names per series, in the OTLP rendering */

/* Histogram buckets, upper bounds in microseconds (rendered in seconds). */
#define PT_METRICS_NBUCKETS 15
extern const uint64_t pt_metrics_buckets_us[PT_METRICS_NBUCKETS];

#define PT_METRICS_MAX_LABELS 10      /* label names of one series */
#define PT_METRICS_VALUE_MAX 128      /* bytes of one label value kept (longer ones are cut) */
#define PT_METRICS_OTHER_SLOTS 16     /* series above the cap, kept for "other" label sets */
#define PT_METRICS_MAX_CUSTOM 256     /* emit-metric families */
#define PT_METRICS_DEFAULT_SERIES 500 /* metrics.maxSeries */

struct pt_metrics_series {
    const char *key; /* the rendered labels: name="value",... (escaped); "" for none */
    size_t keylen;
};

struct pt_metrics_family {
    char *name;
    char *help;
    int type; /* PT_METRICS_* */
    unsigned flags;
    const char *labels[PT_METRICS_MAX_LABELS + 1]; /* fixed label names, NULL-terminated */
    int nlabels;
    int stride;                       /* slots per series */
    int cap;                          /* series kept before "other" */
    int max;                          /* cap + PT_METRICS_OTHER_SLOTS */
    _Atomic uint64_t **shards;        /* [nshards][max * stride] */
    struct pt_metrics_series *series; /* [max] */
    _Atomic int nseries;              /* published with release */
    _Atomic uint64_t *index;          /* open addressing: hash (high 32) | id + 1 (low 32); 0 free */
    uint32_t index_mask;
    _Atomic uint64_t dropped; /* additions with no series to go to (never with built-in families) */
};

/* ---- the families of the core (created by pt_metrics_init) ---- */

enum pt_metrics_core {
    PT_MC_REQUESTS,          /* portico_requests_total{api,operation,product,status_class} */
    PT_MC_REQUEST_DURATION,  /* portico_request_duration_seconds{api,operation,status_class} */
    PT_MC_BACKEND_REQUESTS,  /* portico_backend_requests_total{api,status_class} */
    PT_MC_BACKEND_DURATION,  /* portico_backend_duration_seconds{api} */
    PT_MC_CONNECTIONS,       /* portico_connections_active */
    PT_MC_UPSTREAM_IDLE,     /* portico_upstream_connections_idle */
    PT_MC_LUA_MEMORY,        /* portico_lua_memory_bytes */
    PT_MC_LUA_TIMEOUTS,      /* portico_lua_timeouts_total */
    PT_MC_CONFIG_GENERATION, /* portico_config_generation */
    PT_MC_RELOADS,           /* portico_reloads_total{result} */
    PT_MC_COUNT
};
extern struct pt_metrics_family *pt_metrics_core[PT_MC_COUNT];

/* Whether requests are counted (metrics.enabled); read on the hot path. */
extern _Atomic bool pt_metrics_enabled;

/* The control thread's shard; worker w writes shard w + 1. */
#define PT_METRICS_CONTROL 0
static inline int pt_metrics_worker_shard(int worker)
{
    return worker + 1;
}

/*
 * Sets the registry up for `nworkers` workers with `max_series` series per
 * family, and creates the core's families.  Once, on the control thread,
 * before the workers start.  Calling it again (unit tests) frees the
 * previous registry first.
 */
bool pt_metrics_init(int nworkers, int max_series);
/* Frees everything (no thread may be using the registry). */
void pt_metrics_free(void);

/* A new family (control thread, or under the registry's own lock for
   custom families).  labels: NULL-terminated fixed label names, or NULL.
   NULL when the registry is full or the name is taken. */
struct pt_metrics_family *pt_metrics_family_new(const char *name, const char *help, int type,
                                                const char *const *labels, unsigned flags);

/* The emit-metric family `name` (already sanitized: pt_metrics_sanitize),
   created on first use; NULL when PT_METRICS_MAX_CUSTOM families exist or
   the name starts with portico_ or process_ (the gateway's own).  Lock-free once it exists. */
struct pt_metrics_family *pt_metrics_custom(pt_str name);

/*
 * The series of f for these label values, interned on first sight; past
 * the cap, f's "other" series.  names: the label names (NULL: f's own, and
 * n must be f->nlabels).  Values longer than PT_METRICS_VALUE_MAX are cut.
 * Returns the series number, or -1 (nothing to count into: f->dropped
 * grows).  Lock-free unless the series is new.
 */
int pt_metrics_series(struct pt_metrics_family *f, const pt_str *names, const pt_str *values, int n);

/* ---- updates: only from the shard's own thread ---- */

static inline _Atomic uint64_t *pt_metrics_slot(struct pt_metrics_family *f, int shard, int series)
{
    return &f->shards[shard][(size_t)series * (size_t)f->stride];
}

static inline void pt_metrics_bump(_Atomic uint64_t *s, uint64_t n)
{
    atomic_store_explicit(s, atomic_load_explicit(s, memory_order_relaxed) + n, memory_order_relaxed);
}

/* Counter: + n. */
static inline void pt_metrics_add(struct pt_metrics_family *f, int shard, int series, uint64_t n)
{
    if (series >= 0)
        pt_metrics_bump(pt_metrics_slot(f, shard, series), n);
}

/* PT_METRICS_DOUBLE counter: + v. */
void pt_metrics_add_double(struct pt_metrics_family *f, int shard, int series, double v);

/* Gauge: this shard's value (the scrape sums the shards). */
static inline void pt_metrics_set(struct pt_metrics_family *f, int shard, int series, int64_t v)
{
    if (series >= 0)
        atomic_store_explicit(pt_metrics_slot(f, shard, series), (uint64_t)v, memory_order_relaxed);
}

/* Histogram: one observation of `us` microseconds. */
static inline void pt_metrics_observe(struct pt_metrics_family *f, int shard, int series, uint64_t us)
{
    if (series < 0)
        return;
    _Atomic uint64_t *s = pt_metrics_slot(f, shard, series);
    int b = 0;
    while (b < PT_METRICS_NBUCKETS && us > pt_metrics_buckets_us[b])
        b++;
    pt_metrics_bump(&s[b], 1); /* b == NBUCKETS: +Inf */
    /* no count slot: the count is the +Inf bucket's cumulative value, so a
       scrape never shows the two apart */
    pt_metrics_bump(&s[PT_METRICS_NBUCKETS + 1], us);
}

/* ---- scrape ---- */

/* A sink collectors write samples to. */
struct pt_metrics_sink;
typedef void (*pt_metrics_collect_fn)(struct pt_metrics_sink *s, void *arg);

/* Adds a collector, called at every scrape on the scraping thread (control
   thread only; at start).  Its samples follow the registry's families. */
void pt_metrics_collector(pt_metrics_collect_fn fn, void *arg);

/*
 * One sample from a collector: family `name` (HELP and TYPE are written
 * before its first sample; write a family's samples one after the other),
 * n label names and values (escaped here), value v.
 */
void pt_metrics_sink_sample(struct pt_metrics_sink *s, const char *name, const char *help, int type,
                            const char *const *names, const pt_str *values, int n, double v);
/* The same without labels. */
void pt_metrics_sink_value(struct pt_metrics_sink *s, const char *name, const char *help, int type, double v);

/* The whole registry and the collectors' samples in the Prometheus text
   format 0.0.4, appended to out. */
void pt_metrics_render(struct evbuffer *out);

/*
 * The emit-metric counters as an OTLP/HTTP JSON ExportMetricsServiceRequest
 * body: one resource (service.name = service, plus service.instance.id when
 * given), one scope ("portico.emit-metric"), one cumulative monotonic sum
 * per family, one data point per series with the series' labels as string
 * attributes, start time the registry's start and time now_ns (0: now).
 * Returns malloc'd NUL-terminated text (free it) and its length, or NULL.
 * Empty metrics list when nothing was emitted.
 */
char *pt_metrics_otlp_json(const char *service, const char *instance, uint64_t now_ns, size_t *len);
/* Has any custom metric a series yet (something to export)?  Any thread. */
bool pt_metrics_has_custom(void);

/* ---- names ---- */

/* The longest name of a custom metric (namespace_name). */
#define PT_METRICS_NAME_MAX 200

/*
 * A Prometheus name from free text: ASCII letters lower-cased, every run of
 * other characters one '_', no '_' at either end; a leading digit gets a
 * '_' before it.  Writes at most cap - 1 bytes and a NUL; returns the
 * length (0 when nothing is left).
 */
size_t pt_metrics_sanitize(pt_str in, char *out, size_t cap);

/* Appends a label value escaped for the text format (\\, \", \n; other
   control bytes and invalid UTF-8 become '?'), at most PT_METRICS_VALUE_MAX
   bytes of v; returns the bytes written (out has room for 4 * that + 1). */
size_t pt_metrics_escape(pt_str v, char *out);

#endif
