/*
 * pt_cache -- the internal cache (see pt_cache.h).
 */
#include "event/pt_cache.h"
#include "event/pt_metrics.h"
#include "event/pt_redis.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

/* Evictions one store may cause at most: a 2 MiB value displaces at most ~22000 of the smallest
   entries, so this is only a guard against a store shrinking under concurrent stores. */
#define EVICT_MAX 65536
#define EMPTY_STAMP UINT64_MAX

struct entry {
    struct entry *hnext;       /* the hash chain */
    struct entry *prev, *next; /* the LRU list: head = most recently used */
    uint64_t hash;
    uint64_t stamp;      /* last use (stamp_store, stamp_hit) */
    uint64_t expires_ms; /* 0: never */
    uint64_t size;       /* counted bytes */
    _Atomic int refs;    /* 1 while in the table, + readers copying the value */
    uint32_t klen;
    uint32_t vlen;
    char data[]; /* key, then value */
};

struct shard {
    pthread_mutex_t mu;
    struct entry **buckets; /* power of two */
    size_t nbuckets, count;
    struct entry *head, *tail;
    _Atomic uint64_t tail_stamp; /* the LRU tail's stamp, EMPTY_STAMP when empty: read by evictors */
    uint64_t bytes;
    uint64_t hits, misses, stores, skipped, evictions, expired, removals;
    /* refusals made without the lock (key too long, cache off, no memory): counted in the shard
       of the key's hash, so that they too spread over the shards */
    _Atomic uint64_t refused_misses, refused_skipped;
} __attribute__((aligned(64)));

struct pt_cache {
    /* read by every lookup, written only when the limits change */
    struct shard *shards;
    int nshards;
    _Atomic uint64_t limit;     /* the byte budget */
    _Atomic uint64_t max_entry; /* the largest value */
    uint64_t (*now_ms)(void);
    char pad[64]; /* what follows is written by stores: kept off the line above */
    /* node-wide total of the entries' sizes: written by stores and evictions only (a hit never
       touches it), read by every store to keep the budget without summing the shards */
    _Atomic uint64_t bytes;
    _Atomic uint64_t epoch; /* stores so far: the use stamps (written by stores only) */
};

static uint64_t entry_size(size_t klen, size_t vlen)
{
    return PT_CACHE_OVERHEAD + (uint64_t)klen + (uint64_t)vlen;
}

struct pt_cache *pt_cache_new(uint64_t max_bytes, uint64_t max_entry, int nshards)
{
    int n = 1;
    while (n < nshards && n < 256)
        n <<= 1;
    struct pt_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    if (posix_memalign((void **)&c->shards, 64, sizeof(struct shard) * (size_t)n)) {
        free(c);
        return NULL;
    }
    memset(c->shards, 0, sizeof(struct shard) * (size_t)n);
    for (int i = 0; i < n; i++) {
        pthread_mutex_init(&c->shards[i].mu, NULL);
        atomic_init(&c->shards[i].tail_stamp, EMPTY_STAMP);
    }
    c->nshards = n;
    atomic_init(&c->limit, max_bytes);
    atomic_init(&c->max_entry, max_entry);
    c->now_ms = pt_clock_now_ms;
    return c;
}

static void entry_release(struct entry *e)
{
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        free(e);
}

/* Unlinks e from s's chain and list (s locked); the caller releases the table's reference. */
static void unlink_entry(struct pt_cache *c, struct shard *s, struct entry *e)
{
    struct entry **p = &s->buckets[e->hash & (s->nbuckets - 1)];
    while (*p != e)
        p = &(*p)->hnext;
    *p = e->hnext;
    if (e->prev)
        e->prev->next = e->next;
    else
        s->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
    s->count--;
    s->bytes -= e->size;
    atomic_fetch_sub_explicit(&c->bytes, e->size, memory_order_relaxed);
    atomic_store_explicit(&s->tail_stamp, s->tail ? s->tail->stamp : EMPTY_STAMP, memory_order_relaxed);
}

/* Puts e at the head of s's list (s locked). */
static void push_head(struct shard *s, struct entry *e)
{
    e->prev = NULL;
    e->next = s->head;
    if (s->head)
        s->head->prev = e;
    s->head = e;
    if (!s->tail)
        s->tail = e;
    atomic_store_explicit(&s->tail_stamp, s->tail->stamp, memory_order_relaxed);
}

static void move_head(struct shard *s, struct entry *e)
{
    if (s->head == e) {
        if (s->tail == e) /* alone: its stamp is the tail's */
            atomic_store_explicit(&s->tail_stamp, e->stamp, memory_order_relaxed);
        return;
    }
    e->prev->next = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
    push_head(s, e);
}

void pt_cache_clear(struct pt_cache *c)
{
    for (int i = 0; i < c->nshards; i++) {
        struct shard *s = &c->shards[i];
        pthread_mutex_lock(&s->mu);
        struct entry *e = s->head;
        s->head = s->tail = NULL;
        for (size_t b = 0; b < s->nbuckets; b++)
            s->buckets[b] = NULL;
        atomic_fetch_sub_explicit(&c->bytes, s->bytes, memory_order_relaxed);
        s->count = 0;
        s->bytes = 0;
        atomic_store_explicit(&s->tail_stamp, EMPTY_STAMP, memory_order_relaxed);
        pthread_mutex_unlock(&s->mu);
        while (e) {
            struct entry *next = e->next;
            entry_release(e);
            e = next;
        }
    }
}

void pt_cache_free(struct pt_cache *c)
{
    if (!c)
        return;
    pt_cache_clear(c);
    for (int i = 0; i < c->nshards; i++) {
        free(c->shards[i].buckets);
        pthread_mutex_destroy(&c->shards[i].mu);
    }
    free(c->shards);
    free(c);
}

void pt_cache_set_clock(struct pt_cache *c, uint64_t (*now_ms)(void))
{
    c->now_ms = now_ms ? now_ms : pt_clock_now_ms;
}

/* The shard of a hash: FNV's low bits are mixed first (a murmur3 finalizer), as in pt_counters. */
static struct shard *shard_of(struct pt_cache *c, uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return &c->shards[h & (uint64_t)(c->nshards - 1)];
}

static struct entry *find(struct shard *s, uint64_t h, const void *key, size_t klen)
{
    if (!s->nbuckets)
        return NULL;
    for (struct entry *e = s->buckets[h & (s->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->klen == klen && !memcmp(e->data, key, klen))
            return e;
    return NULL;
}

/* Use stamps for the LRU order.  A store takes a new one (the node's epoch goes up by one: a store
   writes node-wide lines anyway, the byte total); a hit only reads the epoch, so it writes nothing
   but its own shard, and the epoch's line stays shared in every core's cache between stores.  The
   node-wide order is therefore exact between stores and hits, and entries hit between the same
   two stores are equally recent: evictions happen only at stores, and a tie only chooses which of
   two such entries goes first. */
static uint64_t stamp_store(struct pt_cache *c)
{
    return 2 * (atomic_fetch_add_explicit(&c->epoch, 1, memory_order_relaxed) + 1);
}

/* odd: after the last store's stamp, before the next one's */
static uint64_t stamp_hit(struct pt_cache *c)
{
    return 2 * atomic_load_explicit(&c->epoch, memory_order_relaxed) + 1;
}

/* Counts a refusal made before any lock, in the shard of the key's hash (shard 0 without a key). */
static void refused(struct pt_cache *c, const void *key, size_t klen, bool lookup)
{
    struct shard *s = &c->shards[0];
    if (klen && klen <= PT_CACHE_KEY_MAX)
        s = shard_of(c, pt_hash(key, klen, false));
    atomic_fetch_add_explicit(lookup ? &s->refused_misses : &s->refused_skipped, 1, memory_order_relaxed);
}

/* Evicts one least recently used entry of the node: the shard whose tail is oldest.  false when
   every shard is empty. */
static bool evict_one(struct pt_cache *c)
{
    for (int tries = 0; tries < 4; tries++) {
        uint64_t best = EMPTY_STAMP;
        int at = -1;
        for (int i = 0; i < c->nshards; i++) {
            uint64_t t = atomic_load_explicit(&c->shards[i].tail_stamp, memory_order_relaxed);
            if (t < best) {
                best = t;
                at = i;
            }
        }
        if (at < 0)
            return false;
        struct shard *s = &c->shards[at];
        pthread_mutex_lock(&s->mu);
        struct entry *e = s->tail;
        if (e) {
            unlink_entry(c, s, e);
            if (e->expires_ms && e->expires_ms <= c->now_ms())
                s->expired++;
            else
                s->evictions++;
        }
        pthread_mutex_unlock(&s->mu);
        if (e) {
            entry_release(e);
            return true;
        }
        /* emptied by another thread since the look: look again */
    }
    return false;
}

static void fit(struct pt_cache *c)
{
    for (int i = 0; i < EVICT_MAX; i++) {
        if (atomic_load_explicit(&c->bytes, memory_order_relaxed) <=
            atomic_load_explicit(&c->limit, memory_order_relaxed))
            return;
        if (!evict_one(c))
            return;
    }
}

void pt_cache_set_limits(struct pt_cache *c, uint64_t max_bytes, uint64_t max_entry)
{
    atomic_store(&c->limit, max_bytes);
    atomic_store(&c->max_entry, max_entry);
    if (!max_bytes) {
        pt_cache_clear(c);
        return;
    }
    /* a much smaller budget may need more than one store's share of evictions: go on while each
       round makes progress (bounded by the entries there are) */
    for (;;) {
        uint64_t before = atomic_load(&c->bytes);
        fit(c);
        uint64_t after = atomic_load(&c->bytes);
        if (after <= atomic_load(&c->limit) || after >= before)
            return;
    }
}

int pt_cache_get(struct pt_cache *c, const void *key, size_t klen, void *(*alloc)(void *actx, size_t n),
                 void *actx, pt_bytes *out)
{
    if (!klen || klen > PT_CACHE_KEY_MAX || !atomic_load_explicit(&c->limit, memory_order_relaxed)) {
        refused(c, key, klen, true);
        return 0;
    }
    uint64_t h = pt_hash(key, klen, false);
    struct shard *s = shard_of(c, h);
    struct entry *dead = NULL, *hit = NULL;
    pthread_mutex_lock(&s->mu);
    struct entry *e = find(s, h, key, klen);
    if (e && e->expires_ms && e->expires_ms <= c->now_ms()) {
        unlink_entry(c, s, e);
        s->expired++;
        dead = e;
        e = NULL;
    }
    if (e) {
        e->stamp = stamp_hit(c);
        move_head(s, e);
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
        hit = e;
        s->hits++;
    } else
        s->misses++;
    pthread_mutex_unlock(&s->mu);
    if (dead)
        entry_release(dead);
    if (!hit)
        return 0;
    /* the copy is made outside the lock: the reference keeps the entry alive */
    char *mem = hit->vlen ? alloc(actx, hit->vlen) : NULL;
    int found = 1;
    if (hit->vlen && !mem)
        found = 0;
    else {
        if (hit->vlen)
            memcpy(mem, hit->data + hit->klen, hit->vlen);
        *out = (pt_bytes){mem ? mem : "", hit->vlen};
    }
    entry_release(hit);
    return found;
}

/* Makes room in s's hash table for one more entry (s locked); false when out of memory. */
static bool grow(struct shard *s)
{
    if (s->count < s->nbuckets)
        return true;
    size_t nb = s->nbuckets ? s->nbuckets * 2 : 64;
    struct entry **b = calloc(nb, sizeof(*b));
    if (!b)
        return s->nbuckets > 0; /* chains get longer, nothing breaks */
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct entry *e = s->buckets[i];
        while (e) {
            struct entry *next = e->hnext;
            e->hnext = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = nb;
    return true;
}

int pt_cache_put(struct pt_cache *c, const void *key, size_t klen, const void *value, size_t vlen,
                 uint64_t ttl_ms)
{
    uint64_t limit = atomic_load_explicit(&c->limit, memory_order_relaxed);
    uint64_t size = entry_size(klen, vlen);
    if (!klen || klen > PT_CACHE_KEY_MAX || vlen > UINT32_MAX || size > limit ||
        vlen > atomic_load_explicit(&c->max_entry, memory_order_relaxed)) {
        refused(c, key, klen, false);
        return -1;
    }
    /* the entry is built outside the lock: a 2 MiB copy holds no one up */
    struct entry *n = malloc(sizeof(*n) + klen + vlen);
    if (!n) {
        refused(c, key, klen, false);
        return -1;
    }
    memset(n, 0, sizeof(*n));
    memcpy(n->data, key, klen);
    if (vlen)
        memcpy(n->data + klen, value, vlen);
    n->klen = (uint32_t)klen;
    n->vlen = (uint32_t)vlen;
    n->hash = pt_hash(key, klen, false);
    n->size = size;
    atomic_init(&n->refs, 1);
    struct shard *s = shard_of(c, n->hash);
    uint64_t now = c->now_ms();
    n->expires_ms = ttl_ms ? now + ttl_ms : 0;
    pthread_mutex_lock(&s->mu);
    /* the cache may have been turned off since the limit was read: set_limits(0) stores the limit
       before it clears the shards, so under this lock either the clear has not reached this shard
       (and takes the entry with it) or the limit read here is 0 */
    if (!atomic_load(&c->limit)) {
        s->skipped++;
        pthread_mutex_unlock(&s->mu);
        free(n);
        return -1;
    }
    struct entry *old = find(s, n->hash, key, klen);
    if (old)
        unlink_entry(c, s, old);
    if (!grow(s)) {
        s->skipped++;
        pthread_mutex_unlock(&s->mu);
        if (old)
            entry_release(old);
        free(n);
        return -1;
    }
    n->stamp = stamp_store(c);
    size_t b = n->hash & (s->nbuckets - 1);
    n->hnext = s->buckets[b];
    s->buckets[b] = n;
    push_head(s, n);
    s->count++;
    s->bytes += size;
    s->stores++;
    atomic_fetch_add_explicit(&c->bytes, size, memory_order_relaxed);
    pthread_mutex_unlock(&s->mu);
    if (old)
        entry_release(old);
    fit(c);
    return 0;
}

int pt_cache_del(struct pt_cache *c, const void *key, size_t klen)
{
    if (!klen || klen > PT_CACHE_KEY_MAX)
        return 0;
    uint64_t h = pt_hash(key, klen, false);
    struct shard *s = shard_of(c, h);
    pthread_mutex_lock(&s->mu);
    struct entry *e = find(s, h, key, klen);
    if (e) {
        unlink_entry(c, s, e);
        s->removals++;
    }
    pthread_mutex_unlock(&s->mu);
    if (e)
        entry_release(e);
    return e != NULL;
}

void pt_cache_stats(struct pt_cache *c, struct pt_cache_stats *st)
{
    memset(st, 0, sizeof(*st));
    for (int i = 0; i < c->nshards; i++) {
        struct shard *s = &c->shards[i];
        pthread_mutex_lock(&s->mu);
        st->hits += s->hits;
        st->misses += s->misses;
        st->stores += s->stores;
        st->skipped += s->skipped;
        st->evictions += s->evictions;
        st->expired += s->expired;
        st->removals += s->removals;
        st->entries += s->count;
        st->bytes += s->bytes;
        pthread_mutex_unlock(&s->mu);
        st->misses += atomic_load_explicit(&s->refused_misses, memory_order_relaxed);
        st->skipped += atomic_load_explicit(&s->refused_skipped, memory_order_relaxed);
    }
    st->limit = atomic_load(&c->limit);
}

/* ------------------------------------------------------------ the node's */

static struct pt_cache *node_cache;

bool pt_cache_node_configure(uint64_t max_bytes, uint64_t max_entry)
{
    if (node_cache) {
        pt_cache_set_limits(node_cache, max_bytes, max_entry);
        return true;
    }
    node_cache = pt_cache_new(max_bytes, max_entry, 64);
    return node_cache != NULL;
}

struct pt_cache *pt_cache_node(void)
{
    return node_cache;
}

void pt_cache_node_free(void)
{
    pt_cache_free(node_cache);
    node_cache = NULL;
}

/* -------------------------------------------------------------- metrics */

/* A family with one sample per store: the internal cache's, then Redis's when it is configured. */
static void per_store(struct pt_metrics_sink *s, const char *name, const char *help, double internal,
                      bool redis, double external)
{
    static const char *const labels[] = {"store"};
    pt_str store = PT_STR("internal");
    pt_metrics_sink_sample(s, name, help, PT_METRICS_COUNTER, labels, &store, 1, internal);
    store = PT_STR("redis");
    if (redis)
        pt_metrics_sink_sample(s, name, help, PT_METRICS_COUNTER, labels, &store, 1, external);
}

void pt_cache_metrics(struct pt_metrics_sink *s, void *arg)
{
    (void)arg;
    if (!node_cache)
        return;
    struct pt_cache_stats st;
    pt_cache_stats(node_cache, &st);
    struct pt_redis_stats rs;
    pt_redis_stats(&rs);
    bool r = pt_redis_configured();
    per_store(s, "portico_cache_hits_total", "Cache lookups that found a value.", (double)st.hits, r,
              (double)rs.hits);
    per_store(s, "portico_cache_misses_total",
              "Cache lookups that found nothing (a store that is off, down or too slow answers a miss).",
              (double)st.misses, r, (double)rs.misses);
    per_store(s, "portico_cache_stores_total", "Values stored (Redis: SET commands sent).", (double)st.stores,
              r, (double)rs.stores);
    per_store(s, "portico_cache_skipped_total",
              "Commands not made: a value too large, the store off, Redis down or its queue full.",
              (double)st.skipped, r, (double)rs.skipped);
    pt_metrics_sink_value(s, "portico_cache_evictions_total",
                          "Entries the internal cache evicted for room (least recently used first).",
                          PT_METRICS_COUNTER, (double)st.evictions);
    pt_metrics_sink_value(s, "portico_cache_expired_total",
                          "Entries the internal cache dropped past their time to live.", PT_METRICS_COUNTER,
                          (double)st.expired);
    pt_metrics_sink_value(s, "portico_cache_entries", "Entries in the internal cache.", PT_METRICS_GAUGE,
                          (double)st.entries);
    pt_metrics_sink_value(s, "portico_cache_bytes",
                          "Bytes the internal cache's entries take, overhead counted.", PT_METRICS_GAUGE,
                          (double)st.bytes);
    pt_metrics_sink_value(s, "portico_cache_limit_bytes", "The internal cache's budget (cache.memory).",
                          PT_METRICS_GAUGE, (double)st.limit);
    if (!r)
        return;
    static const char *const reason[] = {"reason"};
    static const char *const help = "Redis failures: no answer in time, the connection failed or closed, a "
                                    "broken answer, an error answer, AUTH refused, a value over "
                                    "cache.maxEntry (read as a miss).";
    const struct {
        const char *name;
        uint64_t v;
    } errs[] = {{"timeout", rs.timeouts},         {"connection", rs.conn_errors},
                {"protocol", rs.protocol_errors}, {"error_reply", rs.error_replies},
                {"auth", rs.auth_errors},         {"too_large", rs.too_large}};
    for (size_t i = 0; i < PT_ARRAY_LEN(errs); i++) {
        pt_str v = pt_str_c(errs[i].name);
        pt_metrics_sink_sample(s, "portico_cache_redis_errors_total", help, PT_METRICS_COUNTER, reason, &v, 1,
                               (double)errs[i].v);
    }
    pt_metrics_sink_value(s, "portico_cache_redis_connects_total",
                          "Connections to Redis made (ready: AUTH and SELECT done).", PT_METRICS_COUNTER,
                          (double)rs.connects);
    pt_metrics_sink_value(s, "portico_cache_redis_connections", "Workers connected to Redis now.",
                          PT_METRICS_GAUGE, (double)rs.connections);
}
