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
    bool raw = cf->requests_max > 0;
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

/* Roll-ups, retention and the request ring: a few small batches. */
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
                                         conf.requests_max, (int)PT_MAX(written + 1000, 5000)) >= 0;
    if (ok)
        pt_store_analytics_commit(store);
    else
        pt_store_analytics_rollback(store);
}

static void flush(bool all)
{
    if (!store)
        return;
    collect();
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

/* Gateway nodes' shipping: filled in by the self-hosted gateways work. */
void pt_analytics_shipping(bool on)
{
    (void)on;
}

json_t *pt_analytics_shipment_take(void)
{
    return NULL;
}

void pt_analytics_shipment_putback(json_t *batch)
{
    json_decref(batch);
}

bool pt_analytics_shipment_ingest(struct pt_store *st, const json_t *batch, const char *gateway, char *err,
                                  size_t errlen)
{
    (void)st, (void)batch, (void)gateway;
    snprintf(err, errlen, "analytics from gateway nodes are not taken yet");
    return false;
}
