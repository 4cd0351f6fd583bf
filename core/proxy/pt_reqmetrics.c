/*
 * pt_reqmetrics -- requests, backend calls and the workers' gauges on
 * /metrics (see pt_reqmetrics.h).
 */
#include "proxy/pt_reqmetrics.h"

#include "event/pt_metrics.h"
#include "http/pt_msg.h"
#include "lua/pt_lua.h"
#include "policy/pt_gen.h"
#include "proxy/pt_req.h"
#include "proxy/pt_worker.h"

#include <stdlib.h>

#define CACHE_SIZE 256 /* entries per worker, direct-mapped */
#define NOT_YET (-2)   /* a backend series not looked up yet */

/* The series a kind of request counts into, in one generation. */
struct entry {
    uint64_t serial; /* 0: empty */
    const void *api, *op, *product;
    uint8_t cls, bcls;
    int32_t requests, duration, backend, bduration;
};

static struct entry (*caches)[CACHE_SIZE];
static int ncaches;

void pt_reqmetrics_init(int nworkers)
{
    free(caches);
    caches = calloc((size_t)nworkers, sizeof(*caches));
    ncaches = caches ? nworkers : 0;
}

static const pt_str class_names[] = {PT_STR("none"), PT_STR("1xx"), PT_STR("2xx"),
                                     PT_STR("3xx"),  PT_STR("4xx"), PT_STR("5xx")};

static uint8_t class_of(int status)
{
    return status >= 100 && status <= 599 ? (uint8_t)(status / 100) : 0;
}

static pt_str id_or_empty(const char *s)
{
    return s ? pt_str_c(s) : PT_STR("");
}

/* Looks up (or fills) the cache entry of this kind of request. */
static const struct entry *series_of(struct pt_req *req, int worker, uint8_t cls, uint8_t bcls)
{
    uint64_t serial = req_gen(req)->serial;
    uintptr_t h = ((uintptr_t)req->op >> 4) * 31 + ((uintptr_t)req->api >> 4) * 17 +
                  ((uintptr_t)req->product >> 4) * 7 + cls * 5u + bcls + (uintptr_t)serial * 13;
    h ^= h >> 8;
    struct entry *e = &caches[worker][h & (CACHE_SIZE - 1)];
    if (PT_LIKELY(e->serial == serial && e->api == req->api && e->op == req->op &&
                  e->product == req->product && e->cls == cls && e->bcls == bcls &&
                  (e->backend != NOT_YET || !req->tb0)))
        return e;
    pt_str api = id_or_empty(req->api ? req->api->cf->id : NULL);
    pt_str op = id_or_empty(req->op ? req->op->cf->id : NULL);
    pt_str prod = id_or_empty(req->product ? req->product->cf->id : NULL);
    pt_str v4[4] = {api, op, prod, class_names[cls]};
    e->requests = pt_metrics_series(pt_metrics_core[PT_MC_REQUESTS], NULL, v4, 4);
    e->duration = pt_metrics_series(pt_metrics_core[PT_MC_REQUEST_DURATION], NULL, v4, 4);
    if (req->tb0) { /* a backend series exists only for requests that called one */
        pt_str v2[2] = {api, class_names[bcls]};
        e->backend = pt_metrics_series(pt_metrics_core[PT_MC_BACKEND_REQUESTS], NULL, v2, 2);
        e->bduration = pt_metrics_series(pt_metrics_core[PT_MC_BACKEND_DURATION], NULL, &api, 1);
    } else
        e->backend = e->bduration = NOT_YET;
    e->serial = serial;
    e->api = req->api;
    e->op = req->op;
    e->product = req->product;
    e->cls = cls;
    e->bcls = bcls;
    return e;
}

void pt_reqmetrics_record(struct pt_req *req)
{
    int worker = req->peer->worker;
    if (!atomic_load_explicit(&pt_metrics_enabled, memory_order_relaxed) || worker >= ncaches ||
        !pt_metrics_core[0])
        return;
    int shard = pt_metrics_worker_shard(worker);
    /* a client that left before the answer's head: "none", whatever status was noted for the logs */
    uint8_t cls = req->resp_head_sent ? class_of(req->status) : 0, bcls = class_of(req->backend_status);
    const struct entry *e = series_of(req, worker, cls, bcls);
    uint64_t now = pt_clock_now_us();
    pt_metrics_add(pt_metrics_core[PT_MC_REQUESTS], shard, e->requests, 1);
    pt_metrics_observe(pt_metrics_core[PT_MC_REQUEST_DURATION], shard, e->duration, now - req->t0);
    if (req->tb0) {
        pt_metrics_add(pt_metrics_core[PT_MC_BACKEND_REQUESTS], shard, e->backend, 1);
        pt_metrics_observe(pt_metrics_core[PT_MC_BACKEND_DURATION], shard, e->bduration,
                           (req->tb1 ? req->tb1 : now) - req->tb0);
    }
}

void pt_reqmetrics_tick(struct pt_worker *w)
{
    if (!pt_metrics_core[0])
        return;
    int shard = pt_metrics_worker_shard(w->id);
    int64_t idle = 0;
    for (size_t i = 0; w->pools && i < w->npools; i++)
        for (struct pt_upool *p = w->pools[i]; p; p = p->next)
            idle += p->nidle;
    pt_metrics_set(pt_metrics_core[PT_MC_CONNECTIONS], shard, 0, w->nconns);
    pt_metrics_set(pt_metrics_core[PT_MC_UPSTREAM_IDLE], shard, 0, idle);
    pt_metrics_set(pt_metrics_core[PT_MC_LUA_MEMORY], shard, 0, (int64_t)pt_lua_memory(w->lua));
}
