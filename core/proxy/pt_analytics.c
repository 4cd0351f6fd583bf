/*
 * pt_analytics -- request records and their aggregation: the workers' chunks,
 * their hand-over to the control thread, and the control thread's writes,
 * roll-ups and expiry.  See pt_analytics.h for the design.
 */
#include "proxy/pt_analytics.h"

#include "base/pt_log.h"
#include "conf/pt_genmodel.h"
#include "conf/pt_store_analytics.h"
#include "http/pt_msg.h"
#include "proxy/pt_proxy.h"

#include <event2/event.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 1024 /* bucket table of a chunk: a power of two, used up to 3/4 */
#define SLOTS_USED (SLOTS / 4 * 3)
#define RECS 2048          /* request records of a chunk */
#define ARENA (256 * 1024) /* the chunk's strings */
#define URL_MAX 2048       /* longer URLs are cut in the request record */
#define HANDOVER_MS 250    /* a chunk older than this goes on the worker's next tick */
#define CHUNKS_MAX 8       /* chunks a worker may own; with none free, requests go unrecorded */
#define TX_ROWS 2000       /* rows per transaction (the transaction ends after the chunk passing it) */
#define FLUSH_ROWS 50000   /* rows per flush; the rest waits for the next one */
#define PENDING_MAX 256    /* chunks waiting for the store; beyond, the oldest is given up */
#define HOUSEKEEPING_ROWS 500

/* ------------------------------------------------------------ pure pieces */

int pt_analytics_outcome(int status)
{
    if (status <= 301 || status == 304 || status == 307)
        return PT_AN_SUCCESS;
    if (status == 401 || status == 403 || status == 429)
        return PT_AN_BLOCKED;
    if (status == 400 || (status >= 500 && status <= 599))
        return PT_AN_FAILED;
    return PT_AN_OTHER;
}

void pt_analytics_counts_of(struct pt_store_an_counts *c, int status, uint64_t bytes, int cache,
                            uint64_t api_us, int64_t svc_us)
{
    memset(c, 0, sizeof(*c));
    switch (pt_analytics_outcome(status)) {
    case PT_AN_SUCCESS:
        c->success = 1;
        break;
    case PT_AN_BLOCKED:
        c->blocked = 1;
        break;
    case PT_AN_FAILED:
        c->failed = 1;
        break;
    default:
        c->other = 1;
    }
    c->bandwidth = (int64_t)bytes;
    c->cache_hit = cache == 1;
    c->cache_miss = cache == 2;
    c->api_sum = c->api_min = c->api_max = (int64_t)api_us;
    if (svc_us >= 0) {
        c->svc_n = 1;
        c->svc_sum = c->svc_min = c->svc_max = svc_us;
    }
}

void pt_analytics_counts_merge(struct pt_store_an_counts *a, const struct pt_store_an_counts *b)
{
    int64_t na = a->success + a->blocked + a->failed + a->other;
    int64_t nb = b->success + b->blocked + b->failed + b->other;
    if (nb) {
        a->api_min = na ? PT_MIN(a->api_min, b->api_min) : b->api_min;
        a->api_max = na ? PT_MAX(a->api_max, b->api_max) : b->api_max;
    }
    if (b->svc_n) {
        a->svc_min = a->svc_n ? PT_MIN(a->svc_min, b->svc_min) : b->svc_min;
        a->svc_max = a->svc_n ? PT_MAX(a->svc_max, b->svc_max) : b->svc_max;
    }
    a->success += b->success;
    a->blocked += b->blocked;
    a->failed += b->failed;
    a->other += b->other;
    a->bandwidth += b->bandwidth;
    a->cache_hit += b->cache_hit;
    a->cache_miss += b->cache_miss;
    a->api_sum += b->api_sum;
    a->svc_n += b->svc_n;
    a->svc_sum += b->svc_sum;
}

/* ------------------------------------------------------------------ chunks */

/* A bucket: its key is the worker's pointers (valid for its generation,
   whose serial is part of the key), its strings offsets into the arena. */
struct slot {
    uint64_t minute; /* Unix minutes + 1; 0: a free slot */
    uint64_t serial;
    const void *api, *op, *product, *sub;
    uint32_t s_api, s_op, s_product, s_sub, s_user;
    struct pt_store_an_counts c;
};

struct rec {
    uint64_t ts_ms;
    uint32_t slot;
    uint32_t s_method, s_url, s_ip, s_id, s_reason;
    int status, backend_status;
    int cache;
    uint64_t req_size, resp_size, api_us;
    int64_t svc_us;
};

struct pt_an_chunk {
    struct pt_an_chunk *next;
    struct pt_analytics_w *owner;
    uint64_t first_ms; /* monotonic ms of the first request in it */
    uint32_t nslots, nrecs, an;
    uint64_t requests; /* requests counted in its buckets */
    struct slot slots[SLOTS];
    struct rec recs[RECS];
    char arena[ARENA]; /* arena[0] is "" */
};

struct pt_analytics_w {
    int id;
    struct pt_analytics_w *all_next;
    struct pt_an_chunk *cur;                /* being filled */
    struct pt_an_chunk *spare;              /* free, the worker's alone */
    _Atomic(struct pt_an_chunk *) returned; /* given back by the control thread */
    int nchunks;                            /* chunks allocated for this worker */
    _Atomic uint64_t records, dropped;      /* written by the worker only: no locked instruction */
    _Atomic uint64_t unsampled;             /* requests past this second's record budget (ditto) */
    uint64_t raw_sec;                       /* the wall second raw_n counts in */
    int64_t raw_n;                          /* request records kept in it */
};

static _Atomic(struct pt_an_chunk *) full; /* handed over, for the control thread */
static _Atomic(struct pt_analytics_w *) all_workers;
static _Atomic int nworkers; /* running: maxPerSecond is shared among them (workers: applies at restart) */
/* A gateway node's: figures go to the control plane only (no request records, nothing in the store). */
static _Atomic bool ship_only;
static _Atomic uint64_t st_flushed, st_dropped, st_buckets, st_requests, st_errors;

static void chunk_clear(struct pt_an_chunk *k)
{
    memset(k->slots, 0, sizeof(k->slots));
    k->nslots = k->nrecs = 0;
    k->an = 1;
    k->arena[0] = '\0';
    k->requests = 0;
    k->first_ms = 0;
    k->next = NULL;
}

static struct pt_an_chunk *chunk_new(struct pt_analytics_w *w)
{
    struct pt_an_chunk *k = malloc(sizeof(*k));
    if (!k)
        return NULL;
    chunk_clear(k);
    k->owner = w;
    w->nchunks++;
    return k;
}

static void push(_Atomic(struct pt_an_chunk *) *stack, struct pt_an_chunk *k)
{
    struct pt_an_chunk *head = atomic_load_explicit(stack, memory_order_relaxed);
    do
        k->next = head;
    while (
        !atomic_compare_exchange_weak_explicit(stack, &head, k, memory_order_release, memory_order_relaxed));
}

/* A free chunk for the worker, or NULL when all of its chunks are in flight. */
static struct pt_an_chunk *chunk_take(struct pt_analytics_w *w)
{
    if (!w->spare)
        w->spare = atomic_exchange_explicit(&w->returned, NULL, memory_order_acquire);
    struct pt_an_chunk *k = w->spare;
    if (k)
        w->spare = k->next;
    else if (w->nchunks < CHUNKS_MAX)
        k = chunk_new(w); /* at most CHUNKS_MAX times in the worker's life */
    if (k)
        k->next = NULL;
    return k;
}

static void hand_over(struct pt_analytics_w *w)
{
    struct pt_an_chunk *k = w->cur;
    w->cur = NULL;
    if (k && (k->nslots || k->nrecs))
        push(&full, k);
    else if (k) {
        k->next = w->spare;
        w->spare = k;
    }
}

struct pt_analytics_w *pt_analytics_worker_new(int id)
{
    struct pt_analytics_w *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->id = id;
    w->cur = chunk_new(w);
    struct pt_analytics_w *head = atomic_load(&all_workers);
    do
        w->all_next = head;
    while (!atomic_compare_exchange_weak(&all_workers, &head, w));
    atomic_fetch_add(&nworkers, 1);
    return w;
}

/* Copies s (cut to max bytes) into the chunk's arena; its offset (0: ""). */
static uint32_t intern(struct pt_an_chunk *k, const char *s, size_t n)
{
    if (!n)
        return 0;
    uint32_t at = k->an;
    memcpy(k->arena + at, s, n);
    k->arena[at + n] = '\0';
    k->an += (uint32_t)n + 1;
    return at;
}

static size_t slen(const char *s)
{
    return s ? strlen(s) : 0;
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h;
}

void pt_analytics_record(struct pt_analytics_w *w, struct pt_req *req)
{
    const struct pt_gen *g = req_gen(req);
    const struct pt_analytics_cf *cf = &g->conf->analytics;
    if (!w || !cf->enabled)
        return;
    uint64_t now = pt_clock_now_us();
    atomic_store_explicit(&w->records, atomic_load_explicit(&w->records, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    const char *api = req->api ? req->api->cf->id : NULL, *op = req->op ? req->op->cf->id : NULL;
    const char *product = req->product ? req->product->cf->id : NULL,
               *sub = req->sub ? req->sub->cf->id : NULL;
    const char *user = req->sub && req->sub->owner ? req->sub->owner->cf->id : NULL;
    uint64_t minute = req->wall0 / 60000 + 1;
    uint64_t h = mix(mix(mix(mix(mix(minute, g->serial), (uintptr_t)api), (uintptr_t)op), (uintptr_t)product),
                     (uintptr_t)sub);
    /* a node keeps no request records: no one could read them (it has no management API) */
    bool raw = cf->requests_max > 0 && !atomic_load_explicit(&ship_only, memory_order_relaxed);
    if (raw) { /* this worker's share of analytics.requests.maxPerSecond */
        uint64_t sec = req->wall0 / 1000;
        if (sec != w->raw_sec) {
            w->raw_sec = sec;
            w->raw_n = 0;
        }
        int nw = atomic_load_explicit(&nworkers, memory_order_relaxed);
        nw = nw > 0 ? nw : 1;
        if (w->raw_n >= (cf->requests_rate + nw - 1) / nw) {
            raw = false;
            atomic_store_explicit(&w->unsampled,
                                  atomic_load_explicit(&w->unsampled, memory_order_relaxed) + 1,
                                  memory_order_relaxed);
        } else
            w->raw_n++;
    }
    pt_str url = req->h.path, query = PT_NULL_STR;
    if (raw && req->h.query.len)
        query = pt_accesslog_redact_query(req);
    size_t url_n = PT_MIN(url.len + (query.len ? query.len + 1 : 0), (size_t)URL_MAX);
    size_t reason_n = slen(req->reason);
    size_t need = raw ? req->h.method.len + url_n + strlen(req->peer->ip) + req->idn + reason_n + 5 : 0;
    size_t ids = slen(api) + slen(op) + slen(product) + slen(sub) + slen(user) + 5;

    struct pt_an_chunk *k = w->cur;
    for (int attempt = 0;; attempt++) {
        if (k && k->nslots < SLOTS_USED && (!raw || k->nrecs < RECS) && k->an + need + ids <= ARENA)
            break;
        if (k)
            hand_over(w);
        k = w->cur = attempt < 2 ? chunk_take(w) : NULL;
        if (!k) {
            atomic_store_explicit(&w->dropped, atomic_load_explicit(&w->dropped, memory_order_relaxed) + 1,
                                  memory_order_relaxed);
            return;
        }
    }
    if (!k->first_ms)
        k->first_ms = pt_clock_now_ms();

    /* the bucket */
    uint32_t i = (uint32_t)h & (SLOTS - 1);
    struct slot *s;
    for (;; i = (i + 1) & (SLOTS - 1)) {
        s = &k->slots[i];
        if (!s->minute) {
            s->minute = minute;
            s->serial = g->serial;
            s->api = api;
            s->op = op;
            s->product = product;
            s->sub = sub;
            s->s_api = intern(k, api, slen(api));
            s->s_op = intern(k, op, slen(op));
            s->s_product = intern(k, product, slen(product));
            s->s_sub = intern(k, sub, slen(sub));
            s->s_user = intern(k, user, slen(user));
            k->nslots++;
            break;
        }
        if (s->minute == minute && s->serial == g->serial && s->api == api && s->op == op &&
            s->product == product && s->sub == sub)
            break;
    }
    uint64_t api_us = now - req->t0;
    int64_t svc_us = req->tb0 ? (int64_t)((req->tb1 ? req->tb1 : now) - req->tb0) : -1;
    struct pt_store_an_counts one;
    pt_analytics_counts_of(&one, req->status, req->bytes_in + req->bytes_out, req->cache_status, api_us,
                           svc_us);
    pt_analytics_counts_merge(&s->c, &one);
    k->requests++;
    if (!raw)
        return;

    /* the request record */
    struct rec *r = &k->recs[k->nrecs++];
    r->ts_ms = req->wall0;
    r->slot = i;
    r->s_method = intern(k, req->h.method.data, req->h.method.len);
    /* path, then '?' and the query with its secrets redacted (the access log's) */
    uint32_t at = k->an;
    size_t pn = PT_MIN(url.len, url_n);
    memcpy(k->arena + at, url.data, pn);
    if (query.len && pn < url_n) {
        k->arena[at + pn] = '?';
        memcpy(k->arena + at + pn + 1, query.data, url_n - pn - 1);
    }
    k->arena[at + url_n] = '\0';
    k->an += (uint32_t)url_n + 1;
    r->s_url = url_n ? at : 0;
    r->s_ip = intern(k, req->peer->ip, strlen(req->peer->ip));
    r->s_id = intern(k, req->id, req->idn);
    r->s_reason = intern(k, req->reason, reason_n);
    r->status = req->status;
    r->backend_status = req->backend_status;
    r->cache = req->cache_status;
    r->req_size = req->bytes_in;
    r->resp_size = req->bytes_out;
    r->api_us = api_us;
    r->svc_us = svc_us;
}

void pt_analytics_tick(struct pt_analytics_w *w)
{
    if (w && w->cur && w->cur->first_ms && pt_clock_now_ms() - w->cur->first_ms >= HANDOVER_MS)
        hand_over(w);
}

void pt_analytics_worker_end(struct pt_analytics_w *w)
{
    if (w)
        hand_over(w);
}

/* ----------------------------------------------------------- control thread */

static struct pt_store *store;
static struct event *timer;
static struct pt_analytics_cf conf;
static struct pt_an_chunk *pending, **pending_tail = &pending; /* FIFO, the control thread's */
static int npending;

/* Gives a written (or given up) chunk back to its worker, cleared. */
static void give_back(struct pt_an_chunk *k)
{
    chunk_clear(k);
    push(&k->owner->returned, k);
}

static void collect(void)
{
    struct pt_an_chunk *list = atomic_exchange_explicit(&full, NULL, memory_order_acquire);
    /* the stack is newest first: reversed, the oldest is written first */
    struct pt_an_chunk *rev = NULL;
    while (list) {
        struct pt_an_chunk *n = list->next;
        list->next = rev;
        rev = list;
        list = n;
    }
    while (rev) {
        struct pt_an_chunk *n = rev->next;
        rev->next = NULL;
        *pending_tail = rev;
        pending_tail = &rev->next;
        npending++;
        rev = n;
    }
    while (npending > PENDING_MAX) {
        struct pt_an_chunk *k = pending;
        pending = k->next;
        if (!pending)
            pending_tail = &pending;
        npending--;
        atomic_fetch_add(&st_dropped, k->requests);
        pt_warn("analytics: the store is not keeping up: %llu requests not recorded",
                (unsigned long long)k->requests);
        give_back(k);
    }
}

static const char *str_at(const struct pt_an_chunk *k, uint32_t off)
{
    return k->arena + off;
}

/* Writes one chunk; the number of rows, -1 on error. */
static int write_chunk(const struct pt_an_chunk *k)
{
    int rows = 0;
    for (uint32_t i = 0; i < SLOTS; i++) {
        const struct slot *s = &k->slots[i];
        if (!s->minute)
            continue;
        struct pt_store_an_bucket b = {PT_AN_MINUTE,
                                       (int64_t)(s->minute - 1) * 60,
                                       str_at(k, s->s_api),
                                       str_at(k, s->s_op),
                                       str_at(k, s->s_product),
                                       str_at(k, s->s_sub),
                                       str_at(k, s->s_user),
                                       s->c};
        if (!pt_store_analytics_add_bucket(store, &b))
            return -1;
        rows++;
    }
    for (uint32_t i = 0; i < k->nrecs; i++) {
        const struct rec *r = &k->recs[i];
        const struct slot *s = &k->slots[r->slot];
        struct pt_store_an_request q = {
            .ts_ms = (int64_t)r->ts_ms,
            .request_id = str_at(k, r->s_id),
            .api = str_at(k, s->s_api),
            .op = str_at(k, s->s_op),
            .product = str_at(k, s->s_product),
            .sub = str_at(k, s->s_sub),
            .user = str_at(k, s->s_user),
            .method = str_at(k, r->s_method),
            .url = str_at(k, r->s_url),
            .ip = str_at(k, r->s_ip),
            .reason = str_at(k, r->s_reason),
            .status = r->status,
            .backend_status = r->backend_status,
            .request_size = (int64_t)r->req_size,
            .response_size = (int64_t)r->resp_size,
            .cache = r->cache,
            .api_time = (int64_t)r->api_us,
            .service_time = r->svc_us,
        };
        if (!pt_store_analytics_add_request(store, &q))
            return -1;
        rows++;
    }
    return rows;
}

static void ship_chunk(const struct pt_an_chunk *k);

/* Writes pending chunks in transactions of about TX_ROWS rows; a chunk is
   given back once its transaction committed.  false when the store refused
   (what was not committed stays pending). */
static bool write_pending(bool all, int64_t *requests_written)
{
    int budget = FLUSH_ROWS;
    while (pending && (all || budget > 0)) {
        if (!pt_store_analytics_begin(store))
            return false;
        struct pt_an_chunk *done = NULL, **done_tail = &done;
        int rows = 0, ndone = 0;
        uint64_t reqs = 0, buckets = 0, recs = 0;
        bool ok = true;
        while (pending && rows < TX_ROWS) {
            struct pt_an_chunk *k = pending;
            int n = write_chunk(k);
            if (n < 0) {
                ok = false;
                break;
            }
            rows += n;
            reqs += k->requests;
            buckets += k->nslots;
            recs += k->nrecs;
            pending = k->next;
            k->next = NULL;
            *done_tail = k;
            done_tail = &k->next;
            ndone++;
        }
        if (ok)
            ok = pt_store_analytics_commit(store);
        else
            pt_store_analytics_rollback(store);
        if (!ok) {
            /* nothing of them is kept: back in front, in order, for the next flush */
            *done_tail = pending;
            pending = done;
            if (!*done_tail)
                pending_tail = done_tail;
            return false;
        }
        npending -= ndone;
        if (!pending)
            pending_tail = &pending;
        while (done) {
            struct pt_an_chunk *n = done->next;
            ship_chunk(done); /* a gateway node's: kept for the control plane too */
            give_back(done);
            done = n;
        }
        atomic_fetch_add(&st_flushed, reqs);
        atomic_fetch_add(&st_buckets, buckets);
        atomic_fetch_add(&st_requests, recs);
        *requests_written += (int64_t)recs;
        budget -= rows;
    }
    return true;
}

/* How long a gateway node's batches are told apart after its last one (see "batches taken already"). */
#define DEDUP_TTL_MS (24LL * 3600 * 1000)

/* Roll-ups, retention, the request ring and the senders' records: a few small batches. */
static void housekeeping(int64_t written)
{
    if (!pt_store_analytics_begin(store))
        return;
    int64_t now = (int64_t)(pt_clock_wall_ms() / 1000);
    bool ok =
        pt_store_analytics_rollup(store, PT_AN_MINUTE, now - (int64_t)conf.hour_after, HOUSEKEEPING_ROWS) >=
            0 &&
        pt_store_analytics_rollup(store, PT_AN_HOUR, now - (int64_t)conf.day_after, HOUSEKEEPING_ROWS) >= 0 &&
        pt_store_analytics_expire(store, now - (int64_t)conf.retention, HOUSEKEEPING_ROWS) >= 0 &&
        pt_store_analytics_trim_requests(store, (now - (int64_t)conf.requests_max_age) * 1000,
                                         conf.requests_max, (int)PT_MAX(written + 1000, 5000)) >= 0 &&
        pt_store_analytics_sender_expire(store, now * 1000 - DEDUP_TTL_MS, HOUSEKEEPING_ROWS) >= 0;
    if (ok)
        pt_store_analytics_commit(store);
    else
        pt_store_analytics_rollback(store);
}

/* A gateway node's flush: its buckets go to the shipping queue (bounded) and nowhere else -- a node
   has no management API, so what its store would keep (buckets for the retention, request records)
   could never be read and would only grow. */
static void ship_pending(void)
{
    while (pending) {
        struct pt_an_chunk *k = pending;
        pending = k->next;
        k->next = NULL;
        npending--;
        ship_chunk(k);
        atomic_fetch_add(&st_flushed, k->requests);
        give_back(k);
    }
    pending_tail = &pending;
}

static void flush(bool all)
{
    if (!store)
        return;
    collect();
    if (atomic_load(&ship_only)) {
        ship_pending();
        return;
    }
    int64_t written = 0;
    if (pending && !write_pending(all, &written)) {
        atomic_fetch_add(&st_errors, 1);
        if (pt_store_in_transaction(store))
            return; /* an entity write is open: next time */
        pt_warn("analytics: cannot write to the store (retried at the next flush)");
    }
    housekeeping(written);
    pt_store_analytics_release(store);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    flush(false);
}

static void arm(void)
{
    if (!timer)
        return;
    struct timeval tv = {conf.flush_interval / 1000, (conf.flush_interval % 1000) * 1000};
    event_add(timer, &tv);
}

void pt_analytics_start(struct event_base *base, struct pt_store *st, const struct pt_analytics_cf *cf)
{
    store = st;
    conf = *cf;
    timer = event_new(base, -1, EV_PERSIST, on_timer, NULL);
    arm();
}

void pt_analytics_configure(const struct pt_analytics_cf *cf)
{
    bool again = cf->flush_interval != conf.flush_interval;
    conf = *cf;
    if (again)
        arm();
}

void pt_analytics_flush(void)
{
    flush(true);
}

void pt_analytics_stop(void)
{
    flush(true);
    if (timer)
        event_free(timer);
    timer = NULL;
    while (pending) {
        struct pt_an_chunk *k = pending;
        pending = k->next;
        atomic_fetch_add(&st_dropped, k->requests);
        give_back(k);
    }
    pending_tail = &pending;
    npending = 0;
    struct pt_an_chunk *left = atomic_exchange(&full, NULL);
    while (left) {
        struct pt_an_chunk *n = left->next;
        atomic_fetch_add(&st_dropped, left->requests);
        give_back(left);
        left = n;
    }
    struct pt_analytics_w *w = atomic_exchange(&all_workers, NULL);
    atomic_store(&nworkers, 0);
    while (w) {
        struct pt_analytics_w *n = w->all_next;
        struct pt_an_chunk *lists[] = {w->cur, w->spare, atomic_exchange(&w->returned, NULL)};
        for (int i = 0; i < 3; i++)
            for (struct pt_an_chunk *k = lists[i]; k;) {
                struct pt_an_chunk *x = k->next;
                free(k);
                k = i == 0 ? NULL : x;
            }
        free(w);
        w = n;
    }
    store = NULL;
}

void pt_analytics_stats(struct pt_analytics_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (struct pt_analytics_w *w = atomic_load(&all_workers); w; w = w->all_next) {
        out->records += atomic_load_explicit(&w->records, memory_order_relaxed);
        out->dropped += atomic_load_explicit(&w->dropped, memory_order_relaxed);
        out->unsampled += atomic_load_explicit(&w->unsampled, memory_order_relaxed);
    }
    out->dropped += atomic_load(&st_dropped);
    out->flushed = atomic_load(&st_flushed);
    out->buckets_written = atomic_load(&st_buckets);
    out->requests_written = atomic_load(&st_requests);
    out->flush_errors = atomic_load(&st_errors);
}

/* ------------------------------------------------- gateway nodes' shipping
 *
 * On a gateway node (pt_analytics_shipping(true)), the minute buckets of
 * every chunk the flush committed are also added to a shipping queue:
 * merged by key (minute, API, operation, product, subscription, user), in
 * the order they came, at most SHIP_MAX of them (beyond, the oldest go and
 * their calls are counted as dropped).  The heartbeat thread takes up to
 * SHIP_BATCH of them at a time as a JSON batch (docs/analytics.md, "Gateway
 * nodes"); a batch it could not deliver comes back whole, with its id, and
 * is the next one taken, alternating with fresh ones (at most PUTBACK_MAX
 * of them; beyond, the oldest is dropped and counted).  The control plane ingests a batch into its own
 * minute buckets, once per id (a resent batch whose first delivery did get
 * through is recognised by its node's part and sequence: "batches taken
 * already" below).
 */
#define SHIP_MAX 20000     /* buckets waiting on a node */
#define SHIP_HASH 8192     /* their hash table's chains (a power of two) */
#define SHIP_BATCH 2000    /* buckets in one batch */
#define PUTBACK_MAX 16     /* batches waiting for a second try */
#define INGEST_MAX 5000    /* buckets a batch may hold */
#define INGEST_STR_MAX 256 /* bytes of an id in a bucket */
#define INGEST_ID_MAX 64   /* bytes of a batch's id */
#define INGEST_NUM_MAX (1LL << 53)
/* What one node can count in one minute bucket, and in one batch.  Bounds
   what a single heartbeat can add to the control plane's sums (a gateway
   token may sit on a less trusted machine); the store saturates anyway
   (pt_store_analytics), these keep the figures believable. */
#define INGEST_CALLS_MAX 1000000000LL          /* calls in a bucket: 16 M a second for a minute */
#define INGEST_BYTES_MAX (1LL << 40)           /* bytes in a bucket (1 TiB) */
#define INGEST_CALL_US (7LL * 86400 * 1000000) /* µs one call may last (a WebSocket tunnel: a week) */
#define INGEST_BATCH_CALLS (1LL << 40)         /* calls in a batch */
#define INGEST_BATCH_BYTES (1LL << 50)         /* bytes in a batch (1 PiB) */
#define INGEST_FUTURE 300 /* a bucket may start at most 5 minutes ahead of this clock (clock skew) */
#define INGEST_RETENTION (90LL * 86400) /* analytics.retention's default: before pt_analytics_start */

struct ship {
    struct ship *next;  /* queue order, oldest first */
    struct ship *hnext; /* hash chain */
    uint64_t hash;
    int64_t ts;
    const char *key[5]; /* api, operation, product, subscription, user: in text[] */
    struct pt_store_an_counts c;
    char text[];
};

static pthread_mutex_t ship_mu = PTHREAD_MUTEX_INITIALIZER;
static bool ship_on;
static struct ship *ship_head, **ship_tail = &ship_head;
static struct ship *ship_table[SHIP_HASH];
static size_t ship_n;
static json_t *putbacks[PUTBACK_MAX]; /* oldest first */
static int nputbacks;
static bool last_was_putback;         /* the last batch taken was a put-back one */
static uint64_t ship_seq, ship_node;  /* batch ids: a random node part and a sequence */
static uint64_t ship_dropped_unsent;  /* calls dropped since the last batch said so */
static _Atomic uint64_t ship_dropped; /* calls dropped, for the node's counters */
static const char *const ship_names[5] = {"api", "operation", "product", "subscription", "user"};

/* The key's hash: each string with its length, so ("a", "") and ("", "a") differ. */
static uint64_t ship_hash_of(int64_t ts, const char *const key[5])
{
    uint64_t h = mix(0, (uint64_t)ts);
    for (int i = 0; i < 5; i++) {
        size_t n = 0;
        for (const unsigned char *p = (const unsigned char *)key[i]; *p; p++, n++)
            h = mix(h, *p);
        h = mix(h, n);
    }
    return h;
}

static int64_t calls_of(const struct pt_store_an_counts *c)
{
    return c->success + c->blocked + c->failed + c->other;
}

static void ship_unhash(struct ship *e)
{
    struct ship **pp = &ship_table[e->hash & (SHIP_HASH - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
}

/* Adds a bucket to the queue (merged with its key's); under ship_mu. */
static void ship_add(int64_t ts, const char *const key[5], const struct pt_store_an_counts *c)
{
    uint64_t h = ship_hash_of(ts, key);
    for (struct ship *e = ship_table[h & (SHIP_HASH - 1)]; e; e = e->hnext)
        if (e->hash == h && e->ts == ts && !strcmp(e->key[0], key[0]) && !strcmp(e->key[1], key[1]) &&
            !strcmp(e->key[2], key[2]) && !strcmp(e->key[3], key[3]) && !strcmp(e->key[4], key[4])) {
            pt_analytics_counts_merge(&e->c, c);
            return;
        }
    size_t len[5], total = 0;
    for (int i = 0; i < 5; i++)
        total += (len[i] = strlen(key[i])) + 1;
    struct ship *e = malloc(sizeof(*e) + total);
    if (!e) {
        ship_dropped_unsent += (uint64_t)calls_of(c);
        atomic_fetch_add(&ship_dropped, (uint64_t)calls_of(c));
        return;
    }
    char *t = e->text;
    for (int i = 0; i < 5; i++) {
        memcpy(t, key[i], len[i] + 1);
        e->key[i] = t;
        t += len[i] + 1;
    }
    e->ts = ts;
    e->hash = h;
    e->c = *c;
    e->next = NULL;
    e->hnext = ship_table[h & (SHIP_HASH - 1)];
    ship_table[h & (SHIP_HASH - 1)] = e;
    *ship_tail = e;
    ship_tail = &e->next;
    ship_n++;
    while (ship_n > SHIP_MAX) { /* the oldest go: the control plane is long unreachable */
        struct ship *old = ship_head;
        ship_head = old->next;
        if (!ship_head)
            ship_tail = &ship_head;
        ship_unhash(old);
        ship_n--;
        ship_dropped_unsent += (uint64_t)calls_of(&old->c);
        atomic_fetch_add(&ship_dropped, (uint64_t)calls_of(&old->c));
        free(old);
    }
}

static void ship_chunk(const struct pt_an_chunk *k)
{
    pthread_mutex_lock(&ship_mu);
    if (ship_on)
        for (uint32_t i = 0; i < SLOTS; i++) {
            const struct slot *s = &k->slots[i];
            if (!s->minute)
                continue;
            const char *key[5] = {str_at(k, s->s_api), str_at(k, s->s_op), str_at(k, s->s_product),
                                  str_at(k, s->s_sub), str_at(k, s->s_user)};
            ship_add((int64_t)(s->minute - 1) * 60, key, &s->c);
        }
    pthread_mutex_unlock(&ship_mu);
}

static void ship_clear(void)
{
    while (ship_head) {
        struct ship *n = ship_head->next;
        free(ship_head);
        ship_head = n;
    }
    ship_tail = &ship_head;
    ship_n = 0;
    memset(ship_table, 0, sizeof(ship_table));
    for (int i = 0; i < nputbacks; i++)
        json_decref(putbacks[i]);
    nputbacks = 0;
}

void pt_analytics_shipment_keep(const struct pt_store_an_bucket *b)
{
    const char *key[5] = {b->api ? b->api : "", b->op ? b->op : "", b->product ? b->product : "",
                          b->sub ? b->sub : "", b->user ? b->user : ""};
    pthread_mutex_lock(&ship_mu);
    if (ship_on && b->grain == PT_AN_MINUTE)
        ship_add(b->ts, key, &b->c);
    pthread_mutex_unlock(&ship_mu);
}

void pt_analytics_shipping(bool on)
{
    pthread_mutex_lock(&ship_mu);
    if (on && !ship_node && RAND_bytes((unsigned char *)&ship_node, sizeof(ship_node)) != 1)
        ship_node = pt_clock_wall_ms() ^ ((uint64_t)(uintptr_t)&ship_node << 16);
    if (!on)
        ship_clear();
    ship_on = on;
    atomic_store(&ship_only, on);
    pthread_mutex_unlock(&ship_mu);
}

uint64_t pt_analytics_shipment_dropped(void)
{
    return atomic_load(&ship_dropped);
}

static json_t *bucket_json(const struct ship *e)
{
    json_t *b = json_object();
    json_object_set_new(b, "start", json_integer(e->ts));
    for (int i = 0; i < 5; i++)
        if (*e->key[i])
            json_object_set_new(b, ship_names[i], json_string(e->key[i]));
    const struct pt_store_an_counts *c = &e->c;
    const int64_t v[] = {c->success,   c->blocked,    c->failed,  c->other,   c->bandwidth,
                         c->cache_hit, c->cache_miss, c->api_sum, c->api_min, c->api_max,
                         c->svc_n,     c->svc_sum,    c->svc_min, c->svc_max};
    static const char *const names[] = {"success",      "blocked",    "failed",     "other",     "bandwidth",
                                        "cacheHit",     "cacheMiss",  "timeSum",    "timeMin",   "timeMax",
                                        "backendCount", "backendSum", "backendMin", "backendMax"};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        if (v[i] || i < 4) /* the backend's figures only when it was called; the outcomes always */
            json_object_set_new(b, names[i], json_integer(v[i]));
    return b;
}

json_t *pt_analytics_shipment_take(void)
{
    pthread_mutex_lock(&ship_mu);
    /* a batch that failed goes again first, as it was (its id too) -- but
       not twice in a row while fresh buckets wait: one the control plane
       refuses each time must not hold the others back for ever */
    if (nputbacks && !(last_was_putback && ship_head)) {
        json_t *b = putbacks[0];
        memmove(putbacks, putbacks + 1, (size_t)(nputbacks - 1) * sizeof(putbacks[0]));
        nputbacks--;
        last_was_putback = true;
        pthread_mutex_unlock(&ship_mu);
        return b;
    }
    last_was_putback = false;
    if (!ship_on || (!ship_head && !ship_dropped_unsent)) {
        pthread_mutex_unlock(&ship_mu);
        return NULL;
    }
    struct ship *list = ship_head, *last = NULL;
    int n = 0;
    for (struct ship *e = ship_head; e && n < SHIP_BATCH; e = e->next, n++) {
        ship_unhash(e);
        last = e;
    }
    if (last) {
        ship_head = last->next;
        last->next = NULL;
        if (!ship_head)
            ship_tail = &ship_head;
        ship_n -= (size_t)n;
    } else
        list = NULL;
    uint64_t dropped = ship_dropped_unsent;
    ship_dropped_unsent = 0;
    char id[40];
    snprintf(id, sizeof(id), "%016llx-%llu", (unsigned long long)ship_node, (unsigned long long)++ship_seq);
    pthread_mutex_unlock(&ship_mu);

    json_t *buckets = json_array();
    while (list) {
        struct ship *nx = list->next;
        json_array_append_new(buckets, bucket_json(list));
        free(list);
        list = nx;
    }
    return json_pack("{s:i, s:s, s:I, s:o}", "version", PT_ANALYTICS_SHIPMENT_VERSION, "id", id, "dropped",
                     (json_int_t)dropped, "buckets", buckets);
}

/* The calls a batch counts (for what a dropped one loses). */
static uint64_t batch_calls(const json_t *batch)
{
    uint64_t n = 0;
    size_t i;
    const json_t *b;
    json_array_foreach(json_object_get(batch, "buckets"), i, b)
    {
        static const char *const outcomes[] = {"success", "blocked", "failed", "other"};
        for (int k = 0; k < 4; k++) {
            json_int_t v = json_integer_value(json_object_get(b, outcomes[k]));
            n += v > 0 ? (uint64_t)v : 0;
        }
    }
    return n;
}

void pt_analytics_shipment_putback(json_t *batch)
{
    if (!batch)
        return;
    pthread_mutex_lock(&ship_mu);
    if (!ship_on) {
        pthread_mutex_unlock(&ship_mu);
        json_decref(batch);
        return;
    }
    if (nputbacks == PUTBACK_MAX) { /* the oldest goes */
        uint64_t lost = batch_calls(putbacks[0]);
        ship_dropped_unsent += lost;
        atomic_fetch_add(&ship_dropped, lost);
        json_decref(putbacks[0]);
        memmove(putbacks, putbacks + 1, (size_t)(PUTBACK_MAX - 1) * sizeof(putbacks[0]));
        nputbacks--;
    }
    putbacks[nputbacks++] = batch;
    pthread_mutex_unlock(&ship_mu);
}

/* ---- the control plane's side ---- */

static bool bad(char *err, size_t errlen, const char *fmt, ...) PT_PRINTF(3, 4);
static bool bad(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return false;
}

/* A count of a bucket: a JSON integer from 0 to 2^53 (absent: 0). */
static bool count_of(const json_t *b, const char *name, size_t at, int64_t *out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(b, name);
    *out = 0;
    if (!v)
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INGEST_NUM_MAX)
        return bad(err, errlen, "analytics: buckets[%zu].%s: must be an integer from 0 to 2^53", at, name);
    *out = (int64_t)json_integer_value(v);
    return true;
}

/* sum <= n * each, without the product (n and each are positive; sum <= 2^53). */
static bool at_most_each(int64_t sum, int64_t n, int64_t each)
{
    return n ? (sum + n - 1) / n <= each : sum == 0;
}

static bool bucket_of(const json_t *b, size_t at, int64_t now, struct pt_store_an_bucket *out, char *err,
                      size_t errlen)
{
    static const char *const known[] = {
        "start",   "api",     "operation",    "product",    "subscription", "user",      "success",
        "blocked", "failed",  "other",        "bandwidth",  "cacheHit",     "cacheMiss", "timeSum",
        "timeMin", "timeMax", "backendCount", "backendSum", "backendMin",   "backendMax"};
    if (!json_is_object(b))
        return bad(err, errlen, "analytics: buckets[%zu]: must be an object", at);
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)b, k, v)
    {
        size_t i = 0;
        while (i < sizeof(known) / sizeof(known[0]) && strcmp(k, known[i]))
            i++;
        if (i == sizeof(known) / sizeof(known[0]))
            return bad(err, errlen, "analytics: buckets[%zu]: unknown key '%.64s'", at, k);
    }
    memset(out, 0, sizeof(*out));
    out->grain = PT_AN_MINUTE;
    const json_t *start = json_object_get(b, "start");
    if (!json_is_integer(start))
        return bad(err, errlen, "analytics: buckets[%zu].start: required, an integer (Unix seconds)", at);
    json_int_t ts = json_integer_value(start);
    /* within what the store keeps (older would be deleted at once, or be
       1970), and not ahead of this clock by more than a skew */
    int64_t oldest = now - (conf.retention ? (int64_t)conf.retention : INGEST_RETENTION);
    if (ts < 0 || ts % 60 || ts < oldest || ts > now + INGEST_FUTURE)
        return bad(err, errlen,
                   "analytics: buckets[%zu].start: must be the start of a minute (a multiple of 60) within "
                   "analytics.retention and at most 5 minutes ahead of the control plane's clock",
                   at);
    out->ts = (int64_t)ts;
    const char **keys[5] = {&out->api, &out->op, &out->product, &out->sub, &out->user};
    for (int i = 0; i < 5; i++) {
        const json_t *s = json_object_get(b, ship_names[i]);
        *keys[i] = "";
        if (!s)
            continue;
        if (!json_is_string(s) || json_string_length(s) > INGEST_STR_MAX ||
            strlen(json_string_value(s)) != json_string_length(s))
            return bad(err, errlen, "analytics: buckets[%zu].%s: must be a string of at most %d bytes", at,
                       ship_names[i], INGEST_STR_MAX);
        *keys[i] = json_string_value(s);
    }
    struct pt_store_an_counts *c = &out->c;
    int64_t *const f[] = {&c->success,   &c->blocked,    &c->failed,  &c->other,   &c->bandwidth,
                          &c->cache_hit, &c->cache_miss, &c->api_sum, &c->api_min, &c->api_max,
                          &c->svc_n,     &c->svc_sum,    &c->svc_min, &c->svc_max};
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
        if (!count_of(b, known[6 + i], at, f[i], err, errlen))
            return false;
    /* figures that cannot come from real calls are refused, not stored */
    int64_t calls = calls_of(c);
    if (calls < 1 || calls > INGEST_CALLS_MAX)
        return bad(err, errlen,
                   "analytics: buckets[%zu]: success + blocked + failed + other must be 1 to %lld (what a "
                   "node can serve in a minute)",
                   at, INGEST_CALLS_MAX);
    if (c->bandwidth > INGEST_BYTES_MAX)
        return bad(err, errlen, "analytics: buckets[%zu].bandwidth: at most 2^40 bytes in a minute", at);
    if (c->cache_hit + c->cache_miss > calls || c->svc_n > calls)
        return bad(err, errlen, "analytics: buckets[%zu]: more cache lookups or backend calls than calls",
                   at);
    if (c->api_min > c->api_max || c->api_max > c->api_sum)
        return bad(err, errlen, "analytics: buckets[%zu]: timeMin <= timeMax <= timeSum is not true", at);
    if (c->svc_n ? c->svc_min > c->svc_max || c->svc_max > c->svc_sum
                 : c->svc_sum || c->svc_min || c->svc_max)
        return bad(err, errlen,
                   "analytics: buckets[%zu]: backendMin <= backendMax <= backendSum is not true (or backend "
                   "times without backendCount)",
                   at);
    if (c->api_max > INGEST_CALL_US || !at_most_each(c->api_sum, calls, INGEST_CALL_US) ||
        c->svc_max > INGEST_CALL_US || !at_most_each(c->svc_sum, c->svc_n, INGEST_CALL_US))
        return bad(err, errlen,
                   "analytics: buckets[%zu]: a call lasts at most 7 days (timeMax, backendMax, and the sums "
                   "per call)",
                   at);
    return true;
}

/* Orders buckets by their key: minute, API, operation, product, subscription, user. */
static int key_cmp(const void *a, const void *b)
{
    const struct pt_store_an_bucket *x = *(const struct pt_store_an_bucket *const *)a;
    const struct pt_store_an_bucket *y = *(const struct pt_store_an_bucket *const *)b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    const char *const kx[5] = {x->api, x->op, x->product, x->sub, x->user};
    const char *const ky[5] = {y->api, y->op, y->product, y->sub, y->user};
    for (int i = 0; i < 5; i++) {
        int c = strcmp(kx[i], ky[i]);
        if (c)
            return c;
    }
    return 0;
}

/* What holds for a batch as a whole: each key at most once (a node merges a
   key's figures before it ships them, so a repeated key can only add up
   what one bucket may not hold), and totals a node can reach. */
static bool batch_whole(const struct pt_store_an_bucket *bs, size_t n, char *err, size_t errlen)
{
    uint64_t calls = 0, bytes = 0;
    for (size_t i = 0; i < n; i++) { /* each <= 10^9 and 2^40, n <= 5000: no overflow */
        calls += (uint64_t)calls_of(&bs[i].c);
        bytes += (uint64_t)bs[i].c.bandwidth;
    }
    if (calls > (uint64_t)INGEST_BATCH_CALLS || bytes > (uint64_t)INGEST_BATCH_BYTES)
        return bad(err, errlen, "analytics: the batch counts more than 2^40 calls or 2^50 bytes in all");
    if (n < 2)
        return true;
    const struct pt_store_an_bucket **order = malloc(n * sizeof(*order));
    if (!order)
        return bad(err, errlen, "analytics: out of memory");
    for (size_t i = 0; i < n; i++)
        order[i] = &bs[i];
    qsort(order, n, sizeof(*order), key_cmp);
    bool ok = true;
    for (size_t i = 1; ok && i < n; i++)
        if (!key_cmp(&order[i - 1], &order[i])) {
            size_t a = (size_t)(order[i - 1] - bs), b = (size_t)(order[i] - bs);
            ok = bad(err, errlen,
                     "analytics: buckets[%zu] and buckets[%zu] have the same minute, API, operation, "
                     "product, subscription and user (a batch holds each key once)",
                     PT_MIN(a, b), PT_MAX(a, b));
        }
    free(order);
    return ok;
}

/* One value of a bucket key to look up once per batch: a (parent, id) pair
   and the first bucket that has it. */
struct ref {
    const char *parent, *id;
    size_t at;
};

static int ref_cmp(const void *a, const void *b)
{
    const struct ref *x = a, *y = b;
    int c = strcmp(x->parent, y->parent);
    if (!c)
        c = strcmp(x->id, y->id);
    return c ? c : x->at < y->at ? -1 : x->at > y->at;
}

/* Does each bucket name only what the gateway serves?  Its API assigned to
   the gateway (any API for the built-in one), its operation one of that
   API's, its product, subscription and user existing (or "").  Each
   distinct value is looked up once (sorted), so a batch costs at most a
   few thousand indexed reads. */
static bool batch_owned(struct pt_store *st, const struct pt_store_an_bucket *bs, size_t n,
                        const char *gateway, char *err, size_t errlen)
{
    static const char *const kinds[5] = {"api", "operation", "product", "subscription", "user"};
    bool builtin = !gateway || !strcmp(gateway, "managed");
    struct ref *r = malloc((n ? n : 1) * sizeof(*r));
    if (!r)
        return bad(err, errlen, "analytics: out of memory");
    bool ok = true;
    for (int f = 0; ok && f < 5; f++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            const struct pt_store_an_bucket *b = &bs[i];
            const char *v[5] = {b->api, b->op, b->product, b->sub, b->user};
            if (*v[f])
                r[m++] = (struct ref){f == 1 ? b->api : "", v[f], i};
        }
        qsort(r, m, sizeof(*r), ref_cmp);
        for (size_t i = 0; ok && i < m; i++) {
            if (i && !strcmp(r[i].parent, r[i - 1].parent) && !strcmp(r[i].id, r[i - 1].id))
                continue; /* looked up already */
            if (f == 0 && !builtin)
                ok = pt_store_linked(st, "gateway-api", gateway, r[i].id);
            else if (f == 1 && !*r[i].parent)
                ok = false; /* an operation of no API */
            else
                ok = pt_store_get(st, kinds[f], r[i].parent, r[i].id, NULL, NULL);
            if (!ok && f == 0)
                bad(err, errlen, "analytics: buckets[%zu].api: API '%.256s' is not served by gateway '%s'",
                    r[i].at, r[i].id, gateway ? gateway : "managed");
            else if (!ok)
                bad(err, errlen, "analytics: buckets[%zu].%s: no %s '%.256s'%s%.256s", r[i].at, ship_names[f],
                    kinds[f], r[i].id, f == 1 ? " in API " : "", r[i].parent);
        }
    }
    free(r);
    return ok;
}

/* ---- batches taken already: (gateway, node, sequence), for a time ----
 *
 * A batch id is "<node>-<sequence>": the node part is random for each node
 * process, the sequence grows by one for each batch it makes.  A batch goes
 * again only when its answer did not come (put back), and a node re-sends
 * its put-back batches alternately with fresh ones, at most 16 of them, so
 * a re-sent id is never far below the highest one of its node.  For each
 * (gateway, node) the control plane keeps the highest sequence taken and a
 * bitmap of the DEDUP_WINDOW sequences below it: a batch whose bit is set
 * -- or that is older than the window, which a node cannot send -- was
 * taken already and is answered as delivered without adding anything.  A
 * (gateway, node) is remembered DEDUP_TTL_MS after its last batch (a node
 * heartbeats every few seconds; the batch of a node silent for a day is
 * new again), at most DEDUP_MAX of them (beyond, the one silent for the
 * longest goes): memory stays bounded whatever the number of batches,
 * nodes and restarts.  The control thread's only.
 *
 * The record is also written to the store in the transaction that adds the
 * batch's counts (analytics_senders), so the two land together or not at
 * all, and a (gateway, node) not in memory -- after a restart of the
 * control plane, or evicted -- is read back from there.  Stored records go
 * DEDUP_TTL_MS after their last batch (housekeeping). */
#define DEDUP_MAX 16384   /* (gateway, node) pairs remembered */
#define DEDUP_HASH 4096   /* their hash chains (a power of two) */
#define DEDUP_WINDOW 1024 /* sequences below the highest whose batch is told apart */
#define DEDUP_KEY 160     /* "gateway\nnode": an 80-character id, a 64-byte batch id */

struct dedup {
    struct dedup *next; /* hash chain */
    uint64_t hash;
    int64_t last_ms;                  /* when its last batch was taken */
    uint64_t high;                    /* the highest sequence taken */
    uint64_t bits[DEDUP_WINDOW / 64]; /* bit i: sequence high - i taken */
    char key[DEDUP_KEY];
};

static struct dedup *dedup_table[DEDUP_HASH];
static size_t dedup_n;

static uint64_t key_hash(const char *key)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

/* The record of a key; NULL when none (or only an expired one, which goes). */
static struct dedup *dedup_find(const char *key, uint64_t h, int64_t now_ms)
{
    for (struct dedup **pp = &dedup_table[h & (DEDUP_HASH - 1)]; *pp; pp = &(*pp)->next) {
        struct dedup *d = *pp;
        if (d->hash != h || strcmp(d->key, key))
            continue;
        if (now_ms - d->last_ms > DEDUP_TTL_MS) {
            *pp = d->next;
            free(d);
            dedup_n--;
            return NULL;
        }
        return d;
    }
    return NULL;
}

/* Drops the record silent for the longest (the table is full). */
static void dedup_evict(void)
{
    struct dedup **victim = NULL;
    for (int i = 0; i < DEDUP_HASH; i++)
        for (struct dedup **pp = &dedup_table[i]; *pp; pp = &(*pp)->next)
            if (!victim || (*pp)->last_ms < (*victim)->last_ms)
                victim = pp;
    if (victim) {
        struct dedup *d = *victim;
        *victim = d->next;
        free(d);
        dedup_n--;
    }
}

/* Was sequence `seq` of the record taken already? */
static bool dedup_taken(const struct dedup *d, uint64_t seq)
{
    if (seq > d->high)
        return false;
    uint64_t back = d->high - seq;
    if (back >= DEDUP_WINDOW)
        return true; /* older than any batch a node can still send again: not counted twice */
    return d->bits[back / 64] >> (back % 64) & 1;
}

/* Moves the window of (high, bits) up to take sequence `seq`. */
static void window_take(uint64_t *high, uint64_t bits[DEDUP_WINDOW / 64], uint64_t seq)
{
    if (seq > *high) { /* the window moves up by the difference */
        uint64_t up = seq - *high;
        if (up >= DEDUP_WINDOW)
            memset(bits, 0, DEDUP_WINDOW / 8);
        else
            for (uint64_t i = 0; i < up; i++) { /* bounded: < DEDUP_WINDOW single-bit shifts of 16 words */
                for (int w = DEDUP_WINDOW / 64 - 1; w > 0; w--)
                    bits[w] = bits[w] << 1 | bits[w - 1] >> 63;
                bits[0] <<= 1;
            }
        *high = seq;
    }
    uint64_t back = *high - seq;
    if (back < DEDUP_WINDOW)
        bits[back / 64] |= 1ULL << (back % 64);
}

/* A new record of the key in the table (the oldest goes when it is full); NULL when out of memory. */
static struct dedup *dedup_add(const char *key, uint64_t h)
{
    if (dedup_n >= DEDUP_MAX)
        dedup_evict();
    struct dedup *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->hash = h;
    snprintf(d->key, sizeof(d->key), "%s", key);
    d->next = dedup_table[h & (DEDUP_HASH - 1)];
    dedup_table[h & (DEDUP_HASH - 1)] = d;
    dedup_n++;
    return d;
}

/* The record of a key from memory, else from the store (kept in memory then); NULL when neither has
   a live one.  *failed: the store could not be read (the batch must wait: it may have been taken). */
static struct dedup *dedup_lookup(struct pt_store *st, const char *key, uint64_t h, int64_t now_ms,
                                  bool *failed)
{
    *failed = false;
    struct dedup *d = dedup_find(key, h, now_ms);
    if (d || !st)
        return d;
    uint64_t bits[DEDUP_WINDOW / 64];
    struct pt_store_an_sender r = {.bits = bits, .nwords = DEDUP_WINDOW / 64};
    int found = pt_store_analytics_sender_get(st, key, &r);
    *failed = found < 0;
    if (found <= 0 || now_ms - r.last_ms > DEDUP_TTL_MS || !(d = dedup_add(key, h)))
        return NULL;
    d->high = r.high;
    d->last_ms = r.last_ms;
    memcpy(d->bits, bits, sizeof(d->bits));
    return d;
}

/* Remembers that sequence `seq` of the key was taken; false when out of memory. */
static bool dedup_mark(const char *key, uint64_t h, uint64_t seq, int64_t now_ms)
{
    struct dedup *d = dedup_find(key, h, now_ms);
    if (!d && !(d = dedup_add(key, h)))
        return false;
    d->last_ms = now_ms;
    window_take(&d->high, d->bits, seq);
    return true;
}

/* Writes what the key's record will be once `seq` is taken (inside the batch's transaction). */
static bool dedup_store(struct pt_store *st, const char *key, const struct dedup *d, uint64_t seq,
                        int64_t now_ms)
{
    uint64_t bits[DEDUP_WINDOW / 64] = {0};
    struct pt_store_an_sender r = {.high = 0, .last_ms = now_ms, .bits = bits, .nwords = DEDUP_WINDOW / 64};
    if (d) {
        r.high = d->high;
        memcpy(bits, d->bits, sizeof(bits));
    }
    window_take(&r.high, bits, seq);
    return pt_store_analytics_sender_put(st, key, &r);
}

/* Splits a batch id "<node>-<sequence>" (node: 1-47 letters, digits, '_',
   '.' or '-'; sequence: 1 to 16 digits, not 0); false when it is not one. */
static bool id_parts(const char *id, size_t len, size_t *node_len, uint64_t *seq)
{
    const char *dash = NULL;
    for (size_t i = len; i > 0 && !dash; i--)
        if (id[i - 1] == '-')
            dash = id + i - 1;
    if (!dash || dash == id || (size_t)(dash - id) > 47)
        return false;
    size_t digits = len - (size_t)(dash - id) - 1;
    if (digits < 1 || digits > 16)
        return false;
    uint64_t v = 0;
    for (const char *p = dash + 1; p < id + len; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    for (const char *p = id; p < dash; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '-' ||
              *p == '_' || *p == '.'))
            return false;
    *node_len = (size_t)(dash - id);
    *seq = v;
    return v > 0;
}

bool pt_analytics_shipment_ingest(struct pt_store *st, const json_t *batch, const char *gateway, char *err,
                                  size_t errlen)
{
    if (!json_is_object(batch))
        return bad(err, errlen, "analytics: the batch must be an object");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)batch, k, v)
    {
        if (strcmp(k, "version") && strcmp(k, "id") && strcmp(k, "dropped") && strcmp(k, "buckets"))
            return bad(err, errlen, "analytics: unknown key '%.64s' in the batch", k);
    }
    const json_t *ver = json_object_get(batch, "version");
    if (!json_is_integer(ver) || json_integer_value(ver) != PT_ANALYTICS_SHIPMENT_VERSION)
        return bad(err, errlen, "analytics: version must be %d (this control plane reads version %d batches)",
                   PT_ANALYTICS_SHIPMENT_VERSION, PT_ANALYTICS_SHIPMENT_VERSION);
    const json_t *idv = json_object_get(batch, "id");
    const char *id = json_string_value(idv);
    size_t node_len = 0;
    uint64_t seq = 0;
    if (!id || json_string_length(idv) > INGEST_ID_MAX ||
        !id_parts(id, json_string_length(idv), &node_len, &seq))
        return bad(err, errlen,
                   "analytics: id must be \"<node>-<sequence>\": the node's part 1 to 47 letters, digits, "
                   "'-', '_' or '.', the sequence 1 to 16 digits, not 0");
    int64_t dropped = 0;
    const json_t *dv = json_object_get(batch, "dropped");
    if (dv && (!json_is_integer(dv) || json_integer_value(dv) < 0 || json_integer_value(dv) > INGEST_NUM_MAX))
        return bad(err, errlen, "analytics: dropped must be an integer from 0 to 2^53");
    if (dv)
        dropped = (int64_t)json_integer_value(dv);
    const json_t *buckets = json_object_get(batch, "buckets");
    if (!json_is_array(buckets))
        return bad(err, errlen, "analytics: buckets must be an array");
    size_t n = json_array_size(buckets);
    if (n > INGEST_MAX)
        return bad(err, errlen, "analytics: %zu buckets in one batch; at most %d", n, INGEST_MAX);
    /* the whole batch is checked before anything is written: all of it or nothing */
    struct pt_store_an_bucket *bs = n ? calloc(n, sizeof(*bs)) : NULL;
    if (n && !bs)
        return bad(err, errlen, "analytics: out of memory");
    int64_t now = (int64_t)(pt_clock_wall_ms() / 1000);
    for (size_t i = 0; i < n; i++)
        if (!bucket_of(json_array_get(buckets, i), i, now, &bs[i], err, errlen)) {
            free(bs);
            return false;
        }
    if (!batch_whole(bs, n, err, errlen)) {
        free(bs);
        return false;
    }
    if (!st) { /* a dry run: checked only */
        free(bs);
        return true;
    }
    char key[DEDUP_KEY];
    snprintf(key, sizeof(key), "%.80s\n%.*s", gateway ? gateway : "", (int)node_len, id);
    uint64_t h = key_hash(key);
    int64_t now_ms = (int64_t)pt_clock_wall_ms();
    bool unread;
    const struct dedup *d = dedup_lookup(st, key, h, now_ms, &unread);
    if (d && dedup_taken(d, seq)) { /* a resent batch whose first delivery got through */
        free(bs);
        return true;
    }
    if (unread) {
        free(bs);
        return bad(err, errlen, "store: the batches taken could not be read (send it again)");
    }
    if (!batch_owned(st, bs, n, gateway, err, errlen)) {
        free(bs);
        return false;
    }
    bool ok = true;
    if (n) {
        ok = pt_store_analytics_begin(st); /* false while an entity transaction is open: not ours to end */
        bool began = ok;
        for (size_t i = 0; ok && i < n; i++)
            ok = pt_store_analytics_add_bucket(st, &bs[i]);
        ok = ok && dedup_store(st, key, d, seq, now_ms); /* with the counts it guards */
        if (ok)
            ok = pt_store_analytics_commit(st);
        else if (began)
            pt_store_analytics_rollback(st);
        pt_store_analytics_release(st);
    }
    free(bs);
    if (!ok)
        return bad(err, errlen, "store: the analytics of this batch could not be written (send it again)");
    if (!dedup_mark(key, h, seq, now_ms))
        pt_warn("analytics: out of memory: batch %s of gateway %s may be counted again if it is resent", id,
                gateway ? gateway : "-");
    if (dropped)
        pt_warn("analytics: a node of gateway %s dropped the figures of %lld calls before it could ship them",
                gateway ? gateway : "-", (long long)dropped);
    return true;
}
