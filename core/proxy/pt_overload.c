/*
 * pt_overload -- the node-wide connection cap and memory high-water mark
 * (see pt_overload.h).
 */
#include "proxy/pt_overload.h"

#include "base/pt_log.h"
#include "event/pt_metrics.h"
#include "proxy/pt_proxy.h"

#include <event2/buffer.h>
#include <stdalign.h>
#include <stdlib.h>

/* the flag read by every request and the count written at every accept
   and close each have a cache line of their own */
alignas(64) atomic_bool pt_overload_active;

alignas(64) static _Atomic int64_t node_conns;
alignas(64) static _Atomic uint64_t entered_ms; /* when the node last went past the mark */
static _Atomic uint64_t *held;                  /* [nworkers]: the bytes each worker held at its last tick */
static int nheld;
/* the limits of the configuration the workers serve, for /metrics */
static _Atomic uint64_t mark;
static _Atomic int64_t conn_cap;
static atomic_bool conns_capped; /* an episode at the connection cap is going on (logged) */
static _Atomic uint64_t conn_waits, refusals, episodes;

static void collect(struct pt_metrics_sink *s, void *arg)
{
    (void)arg;
    uint64_t total = 0;
    for (int i = 0; i < nheld; i++)
        total += atomic_load_explicit(&held[i], memory_order_relaxed);
    pt_metrics_sink_value(s, "portico_connections_node", "Open client connections, all workers together.",
                          PT_METRICS_GAUGE, (double)atomic_load(&node_conns));
    pt_metrics_sink_value(s, "portico_connections_limit",
                          "The node's connection cap (limits.connections; 0: none).", PT_METRICS_GAUGE,
                          (double)atomic_load(&conn_cap));
    pt_metrics_sink_value(s, "portico_connections_limit_waits_total",
                          "Times a worker stopped accepting because the node was at its connection cap.",
                          PT_METRICS_COUNTER, (double)atomic_load(&conn_waits));
    pt_metrics_sink_value(s, "portico_memory_buffered_bytes",
                          "Bytes held for client connections and their requests (buffers, bodies, arenas; 0 "
                          "with limits.memory off).",
                          PT_METRICS_GAUGE, (double)total);
    pt_metrics_sink_value(s, "portico_memory_limit_bytes",
                          "The memory high-water mark (limits.memory; 0: off).", PT_METRICS_GAUGE,
                          (double)atomic_load(&mark));
    pt_metrics_sink_value(s, "portico_overload",
                          "1 while past the memory mark (new requests get 503), else 0.", PT_METRICS_GAUGE,
                          atomic_load(&pt_overload_active) ? 1 : 0);
    pt_metrics_sink_value(s, "portico_overload_episodes_total", "Times the node went past its memory mark.",
                          PT_METRICS_COUNTER, (double)atomic_load(&episodes));
    pt_metrics_sink_value(s, "portico_overload_refusals_total", "Requests answered 503 because of overload.",
                          PT_METRICS_COUNTER, (double)atomic_load(&refusals));
}

void pt_overload_init(int nworkers)
{
    static bool done;
    free((void *)held);
    held = calloc((size_t)nworkers, sizeof(*held));
    nheld = held ? nworkers : 0;
    if (!done) {
        done = true;
        pt_metrics_collector(collect, NULL);
    }
}

int64_t pt_overload_conns_add(int delta)
{
    return atomic_fetch_add_explicit(&node_conns, delta, memory_order_relaxed) + delta;
}

bool pt_overload_conns_capped(int64_t cap, bool pausing)
{
    if (!cap)
        return false;
    int64_t n = atomic_load_explicit(&node_conns, memory_order_relaxed);
    if (n < cap)
        return false;
    if (pausing) {
        atomic_fetch_add_explicit(&conn_waits, 1, memory_order_relaxed);
        bool was = false;
        if (atomic_compare_exchange_strong(&conns_capped, &was, true))
            pt_warn("%lld client connections open on the node, its cap (limits.connections): new connections "
                    "wait until some close",
                    (long long)n);
    }
    return true;
}

/* The bytes one client connection holds now: its socket buffers, and its
   request's arena, bodies and backend connection's buffers. */
static uint64_t conn_held(const struct pt_conn *c)
{
    uint64_t n = evbuffer_get_length(c->io->in) + evbuffer_get_length(c->io->out);
    const struct pt_req *req = c->req;
    if (!req)
        return n;
    n += pt_pool_used(req->pool);
    if (req->req_body)
        n += evbuffer_get_length(req->req_body);
    if (req->resp_body)
        n += evbuffer_get_length(req->resp_body);
    if (req->up && req->up->io)
        n += evbuffer_get_length(req->up->io->in) + evbuffer_get_length(req->up->io->out);
    return n;
}

/* Ends the connection-cap episode once the node is well below the cap: by a
   tenth of it and at least two, so that a node hovering at the cap (one
   closes, a waiting one is taken) logs its episode once; with a cap of 1 or
   2 once no connection is left. */
static void conns_tick(int64_t cap)
{
    if (!atomic_load_explicit(&conns_capped, memory_order_relaxed))
        return;
    int64_t n = atomic_load_explicit(&node_conns, memory_order_relaxed);
    if (cap && n > PT_MAX(cap - PT_MAX(cap / 10, 2), 0))
        return;
    bool was = true;
    if (atomic_compare_exchange_strong(&conns_capped, &was, false))
        pt_info("%lld client connections open on the node: below its cap (limits.connections) again",
                (long long)n);
}

/* The bytes this worker holds now.  With the mark off nothing reads them
   and the walk (one visit per open connection) is skipped. */
static uint64_t worker_held(const struct pt_worker *w, uint64_t m)
{
    uint64_t mine = 0;
    if (!m)
        return 0;
    for (const struct pt_list *it = w->conns.next; it != &w->conns; it = it->next)
        mine += conn_held(pt_container_of(it, struct pt_conn, link));
    return mine;
}

/* Leaving overload takes the total below 90 % of the mark and at least
   PT_OVERLOAD_HOLD_MS in the state (the Retry-After given to the refused):
   a total swinging around the mark does not flip the node, nor its log
   lines, at every tick. */
static bool may_leave(uint64_t total, uint64_t m, uint64_t now)
{
    if (!m)
        return true;
    return total < m - m / 10 &&
           now - atomic_load_explicit(&entered_ms, memory_order_relaxed) >= PT_OVERLOAD_HOLD_MS;
}

void pt_overload_tick(struct pt_worker *w)
{
    conns_tick(w->node_max_conns);
    uint64_t m = atomic_load_explicit(&mark, memory_order_relaxed);
    if (w->id < nheld)
        atomic_store_explicit(&held[w->id], worker_held(w, m), memory_order_relaxed);
    uint64_t total = 0;
    for (int i = 0; i < nheld; i++)
        total += atomic_load_explicit(&held[i], memory_order_relaxed);
    bool on = atomic_load_explicit(&pt_overload_active, memory_order_relaxed);
    uint64_t now = pt_clock_now_ms();
    if (!on && m && total >= m) {
        bool was = false;
        atomic_store_explicit(&entered_ms, now, memory_order_relaxed);
        if (atomic_compare_exchange_strong(&pt_overload_active, &was, true)) {
            atomic_fetch_add_explicit(&episodes, 1, memory_order_relaxed);
            pt_warn(
                "overloaded: %llu bytes held for connections and requests, past limits.memory (%llu): new "
                "requests get 503 until it falls below 90 %%",
                (unsigned long long)total, (unsigned long long)m);
        }
    } else if (on && may_leave(total, m, now)) {
        bool was = true;
        if (atomic_compare_exchange_strong(&pt_overload_active, &was, false))
            pt_info("overload over: %llu bytes held for connections and requests (limits.memory %llu)",
                    (unsigned long long)total, (unsigned long long)m);
    }
}

void pt_overload_limits(const struct pt_limits_cf *lim)
{
    atomic_store_explicit(&conn_cap, lim->connections, memory_order_relaxed);
    atomic_store_explicit(&mark, lim->memory, memory_order_relaxed);
    uint64_t one = pt_overload_one_request(lim);
    if (lim->memory && lim->memory < one)
        pt_warn("limits.memory (%llu) is below what one request may hold (about %llu: 3 x bufferSize plus "
                "requestMemory): a single large request can put the node in overload",
                (unsigned long long)lim->memory, (unsigned long long)one);
}

uint64_t pt_overload_one_request(const struct pt_limits_cf *lim)
{
    /* its request body, the copy sent to the backend and the response
       body, plus its arena */
    return 3 * (uint64_t)lim->buffer_size + pt_conf_request_memory(lim);
}

void pt_overload_refused(void)
{
    atomic_fetch_add_explicit(&refusals, 1, memory_order_relaxed);
}
