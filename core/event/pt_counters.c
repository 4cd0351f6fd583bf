/*
 * pt_counters -- sharded node-wide counters (see pt_counters.h).
 */
#include "event/pt_counters.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define NSHARDS 64
#define NSLOTS 20

/* What an entry keeps when counting across nodes (see pt_counters.h); apart, so that a node without
   counters.redis pays one pointer per key. */
struct share {
    int64_t origin;        /* fixed: the first period's start (wall ms) */
    int64_t limit;         /* the limit of the last counted call that had one */
    int64_t lease;         /* tokens reserved in Redis, not yet used ... */
    int64_t lease_slot;    /* ... of this Redis slot or period ... */
    uint64_t lease_until;  /* ... usable before this (monotonic ms) */
    int64_t ret, ret_slot; /* unused tokens to give back */
    int64_t pend;          /* increments not yet pushed */
    int64_t inflight;      /* increments pushed, not yet answered */
    int64_t demand;        /* counted calls with a limit since the last job */
    int64_t rate;          /* demand per sync interval, smoothed */
    uint64_t rate_ms;      /* when demand was last taken */
    int64_t remote;        /* Redis's count at the last answer */
    int64_t remote_retry;  /* sliding: Redis's time until room, at the last answer */
    uint64_t remote_ms, remote_until;
    uint64_t alone_until; /* Redis refused this key's script (a key of another type ...): per node until */
    int64_t credit;     /* calls admitted without a token that Redis does not know yet (unpushed + pushing) */
    int64_t credit_new; /* ... the part not pushed yet */
    bool synced, asked, queued, exhausted;
};

struct entry {
    char *key;
    size_t klen;
    uint64_t hash;
    int kind;
    bool persist, dirty;
    int64_t window;  /* ms */
    int64_t last_ms; /* last time anything was counted */
    /* sliding: slot counts, the slot index (time / slot length) of slots[0..] ring */
    int64_t slots[NSLOTS];
    int64_t slot_epoch; /* absolute slot number of the newest slot */
    /* fixed: period index and value; gauge: value */
    int64_t period;
    int64_t value;
    struct share *sh; /* across nodes (counters.redis): made at the first shared operation */
};

/* A key on a shard's sync queue (a copy: entries move when the table grows). */
struct qkey {
    char *key;
    size_t klen;
};

struct shard {
    pthread_mutex_t mu;
    struct entry *e; /* open addressing, cap a power of two; key == NULL: free */
    size_t cap, used, max;
    int64_t rescan_ms; /* full of live keys: no new look for idle ones before this */
    struct qkey *q;    /* keys the sync thread looks at (each entry at most once: e->queued) */
    size_t nq, qcap;
};

static struct shard shards[NSHARDS];
static bool ready;

static _Atomic bool shared_on, redis_up = true, wake_pending, releasing;
static void (*waker)(void);
static _Atomic uint64_t fallbacks;
static _Atomic unsigned take_from; /* the shard pt_counters_take starts at: fair when jobs run out */

void pt_counters_init(size_t max_keys)
{
    if (max_keys < NSHARDS)
        max_keys = NSHARDS;
    if (!ready) {
        for (int i = 0; i < NSHARDS; i++)
            pthread_mutex_init(&shards[i].mu, NULL);
        ready = true;
    }
    for (int i = 0; i < NSHARDS; i++) {
        pthread_mutex_lock(&shards[i].mu);
        shards[i].max = max_keys / NSHARDS;
        pthread_mutex_unlock(&shards[i].mu);
    }
}

void pt_counters_free(void)
{
    if (!ready)
        return;
    for (int i = 0; i < NSHARDS; i++) {
        struct shard *s = &shards[i];
        for (size_t k = 0; k < s->cap; k++) {
            free(s->e[k].key);
            free(s->e[k].sh);
        }
        free(s->e);
        s->e = NULL;
        s->cap = s->used = 0;
        s->rescan_ms = 0;
        for (size_t k = 0; k < s->nq; k++)
            free(s->q[k].key);
        free(s->q);
        s->q = NULL;
        s->nq = s->qcap = 0;
    }
}

static int64_t mono_ms(void)
{
    return (int64_t)pt_clock_now_ms();
}

/* Moves a sliding entry's ring to `slot` (an absolute slot number), zeroing
   the slots that went by. */
static void advance(struct entry *e, int64_t slot)
{
    int64_t d = slot - e->slot_epoch;
    if (d <= 0)
        return;
    if (d >= NSLOTS)
        memset(e->slots, 0, sizeof(e->slots));
    else
        for (int64_t i = 1; i <= d; i++)
            e->slots[(e->slot_epoch + i) % NSLOTS] = 0;
    e->slot_epoch = slot;
}

static int64_t sliding_sum(const struct entry *e)
{
    int64_t n = 0;
    for (int i = 0; i < NSLOTS; i++)
        n += e->slots[i];
    return n;
}

static bool idle(const struct entry *e, int64_t now)
{
    if (e->kind == PT_COUNTER_GAUGE)
        return e->value == 0;
    if (e->persist && e->dirty)
        return false; /* not yet in the store */
    if (e->sh && (e->sh->queued || e->sh->lease || e->sh->pend || e->sh->inflight || e->sh->asked))
        return false; /* the sync thread has business with it */
    return now - e->last_ms > e->window;
}

static struct entry *slot_for(struct shard *s, const char *key, size_t klen, uint64_t h, bool create,
                              int64_t now)
{
    if (s->cap) {
        for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
            struct entry *e = &s->e[i];
            if (!e->key)
                break;
            if (e->hash == h && e->klen == klen && !memcmp(e->key, key, klen))
                return e;
        }
    }
    if (!create)
        return NULL;
    if (s->used >= s->max) {
        /* room: drop idle keys (a rebuild of the table without them); a
           shard found full of live keys is not scanned again for a while,
           so a flood of new keys costs a lookup each, not a scan */
        if (now < s->rescan_ms)
            return NULL;
        size_t live = 0;
        for (size_t i = 0; i < s->cap; i++)
            if (s->e[i].key && !idle(&s->e[i], now))
                live++;
        if (live >= s->max) {
            s->rescan_ms = now + 100;
            return NULL;
        }
        struct entry *old = s->e;
        size_t oc = s->cap;
        s->e = calloc(s->cap, sizeof(*s->e));
        s->used = 0;
        for (size_t i = 0; i < oc; i++) {
            if (!old[i].key)
                continue;
            if (idle(&old[i], now)) {
                free(old[i].key);
                free(old[i].sh);
                continue;
            }
            size_t k = old[i].hash & (s->cap - 1);
            while (s->e[k].key)
                k = (k + 1) & (s->cap - 1);
            s->e[k] = old[i];
            s->used++;
        }
        free(old);
    }
    if ((s->used + 1) * 2 > s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 16;
        struct entry *ne = calloc(nc, sizeof(*ne));
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->e[i].key)
                continue;
            size_t k = s->e[i].hash & (nc - 1);
            while (ne[k].key)
                k = (k + 1) & (nc - 1);
            ne[k] = s->e[i];
        }
        free(s->e);
        s->e = ne;
        s->cap = nc;
    }
    size_t i = h & (s->cap - 1);
    while (s->e[i].key)
        i = (i + 1) & (s->cap - 1);
    struct entry *e = &s->e[i];
    memset(e, 0, sizeof(*e));
    e->key = malloc(klen + 1);
    memcpy(e->key, key, klen);
    e->key[klen] = '\0';
    e->klen = klen;
    e->hash = h;
    e->period = -1;
    s->used++;
    return e;
}

/* The shard of a hash: FNV's high bits barely depend on a key's last bytes,
   so they are mixed first (a murmur3 finalizer). */
static struct shard *shard_of(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return &shards[h % NSHARDS];
}

/* ------------------------------------------------------ across nodes */

void pt_counters_share(bool on, void (*wake)(void))
{
    waker = wake;
    atomic_store(&shared_on, on);
    if (on)
        atomic_store(&releasing, false);
}

void pt_counters_release(void)
{
    atomic_store(&releasing, true);
}

void pt_counters_set_up(bool up)
{
    atomic_store(&redis_up, up);
}

bool pt_counters_is_up(void)
{
    return atomic_load(&redis_up);
}

uint64_t pt_counters_fallbacks(void)
{
    return atomic_load_explicit(&fallbacks, memory_order_relaxed);
}

int64_t pt_counters_want(int64_t demand, int64_t held, int64_t limit)
{
    if (limit <= 0)
        return 0;
    if (demand < 0)
        demand = 0;
    int64_t w = (demand > limit ? limit : demand) * 2 + 1 - (held > 0 ? held : 0);
    return w < 1 ? 1 : w > limit ? limit : w;
}

int64_t pt_counters_grant(int64_t want, int64_t total, int64_t limit)
{
    if (want <= 0 || limit <= 0 || total >= limit)
        return 0;
    int64_t room = limit - (total > 0 ? total : 0);
    int64_t most = (room + 3) / 4; /* a quarter, rounded up: at least 1 */
    return want < most ? want : most;
}

int64_t pt_counters_credit(int64_t limit)
{
    int64_t c = limit / PT_COUNTERS_CREDIT_DIV;
    return c > PT_COUNTERS_GRACE ? c : PT_COUNTERS_GRACE;
}

int64_t pt_counters_overshoot(int64_t nodes, int64_t limit)
{
    return nodes > 0 ? nodes * pt_counters_credit(limit) : 0;
}

/* The sync thread is to look at e soon (and, with now_too, at once). */
static void queue_key(struct shard *s, struct entry *e, bool now_too)
{
    if (!e->sh->queued) {
        if (s->nq == s->qcap) {
            size_t nc = s->qcap ? s->qcap * 2 : 16;
            struct qkey *nq = realloc(s->q, nc * sizeof(*nq));
            if (!nq)
                return; /* counted here all the same; synced when memory allows */
            s->q = nq;
            s->qcap = nc;
        }
        char *k = malloc(e->klen + 1);
        if (!k)
            return;
        memcpy(k, e->key, e->klen + 1);
        s->q[s->nq++] = (struct qkey){k, e->klen};
        e->sh->queued = true;
    }
    if (now_too && waker && !atomic_exchange(&wake_pending, true))
        waker();
}

/* Tokens past their slot (or period) are no longer usable: they are given back to it. */
static void expire(struct entry *e, uint64_t now)
{
    if (e->sh->lease && now >= e->sh->lease_until) {
        if (!e->sh->ret ||
            e->sh->ret_slot == e->sh->lease_slot) { /* else an older give-back is dropped: stricter */
            e->sh->ret += e->sh->lease;
            e->sh->ret_slot = e->sh->lease_slot;
        } else {
            e->sh->ret = e->sh->lease;
            e->sh->ret_slot = e->sh->lease_slot;
        }
        e->sh->lease = 0;
    }
    if (e->sh->remote_until && now >= e->sh->remote_until) {
        e->sh->exhausted = false; /* room may have come back: the next refusal asks again */
        if (e->kind == PT_COUNTER_FIXED)
            e->sh->remote = 0; /* a new period */
        e->sh->remote_until = 0;
    }
}

/* What the node knows of the count across nodes: Redis's, less this node's unused tokens, plus
   what it has not pushed yet. */
static int64_t estimate(const struct entry *e)
{
    int64_t v = e->sh->remote - e->sh->lease + e->sh->pend + e->sh->inflight;
    return v > 0 ? v : 0;
}

/* The shared part of an operation on e, the local count being done (local_ok its verdict). */
static int shared_apply(struct shard *s, struct entry *e, struct pt_counter_op *op, int64_t now, bool decide,
                        int local_ok)
{
    expire(e, (uint64_t)now);
    if (!atomic_load_explicit(&redis_up, memory_order_relaxed) || (uint64_t)now < e->sh->alone_until) {
        /* Redis down: the local count decides; what is added is merged back when it returns */
        if (op->add > 0) {
            e->sh->pend += op->add;
            queue_key(s, e, false);
        }
        if (op->add || decide)
            atomic_fetch_add_explicit(&fallbacks, 1, memory_order_relaxed);
        return local_ok;
    }
    int ok = 1;
    bool urgent = !e->sh->synced; /* a key never synced: its first answer is wanted at once */
    if (decide) {
        e->sh->limit = op->limit;
        e->sh->demand += op->add;
        if (e->sh->lease >= op->add) {
            e->sh->lease -= op->add;
            if (e->sh->lease < e->sh->rate / 2 && !e->sh->asked)
                urgent = true; /* half an interval's worth left: refill before it runs out */
        } else if (e->sh->credit + op->add <= PT_COUNTERS_GRACE
                       ? estimate(e) + op->add <= op->limit
                       : e->sh->credit + op->add <= pt_counters_credit(op->limit) &&
                             estimate(e) + op->add <= op->limit / 2) {
            /* no token at hand (the first calls of a key, tokens late under a burst, the last ones
               trickling one by one) while the count known has room: a call on credit -- one at a
               time, more only while the count known is at most half the limit -- pushed at the next
               turn: the bounded overshoot */
            e->sh->credit += op->add;
            e->sh->credit_new += op->add;
            e->sh->pend += op->add;
            urgent = urgent || !e->sh->asked;
        } else {
            ok = 0;
            if (e->sh->exhausted) {
                /* refused by the limit across nodes: it counts, as in APIM (pushed at the next turn: no
                   hurry) -- except a quota's: past the limit its count changes no verdict in the
                   period, and pushed it would cancel the tokens other nodes give back unused, cutting
                   the quota short for the rest of the period */
                if (e->kind != PT_COUNTER_FIXED)
                    e->sh->pend += op->add;
            } else
                urgent = urgent || !e->sh->asked; /* this node ran out, the window has room: ask now */
        }
    } else if (op->add > 0)
        e->sh->pend += op->add;
    queue_key(s, e, urgent);
    int64_t est = estimate(e);
    if (decide)
        op->count = ok ? PT_MIN(PT_MAX(est, op->add), op->limit) : PT_MAX(est, op->limit + 1);
    else
        op->count = est;
    int64_t need = op->add > 0 ? op->add : 1;
    if (op->limit > 0 && (decide ? !ok : op->count + need > op->limit)) {
        if (e->kind == PT_COUNTER_FIXED)
            op->retry_ms = op->period_end_ms - (int64_t)pt_clock_wall_ms();
        else {
            int64_t r = e->sh->remote_retry > 0 ? e->sh->remote_retry - (now - (int64_t)e->sh->remote_ms) : 0;
            int64_t slot_len = e->window / NSLOTS > 0 ? e->window / NSLOTS : 1;
            op->retry_ms = r > 0 ? r : op->retry_ms > 0 ? PT_MIN(op->retry_ms, slot_len) : slot_len;
        }
        if (op->retry_ms < 1)
            op->retry_ms = 1;
    } else
        op->retry_ms = 0;
    return ok;
}

int pt_counters_apply(struct pt_counter_op *op)
{
    int kind = op->kind & PT_COUNTER_KIND_MASK;
    /* counted whatever the limit says, the verdict returned (PT_COUNTER_COUNT_REFUSED) */
    bool decide = (op->kind & PT_COUNTER_COUNT_REFUSED) && op->limit > 0 && op->add > 0;
    PT_DCHECK(op->key.data && op->key.len && kind >= PT_COUNTER_SLIDING && kind <= PT_COUNTER_GAUGE);
    bool shared = kind != PT_COUNTER_GAUGE && atomic_load_explicit(&shared_on, memory_order_relaxed);
    uint64_t h = pt_hash(op->key.data, op->key.len, false);
    struct shard *s = shard_of(h);
    int64_t now = mono_ms();
    int ok = 1;
    pthread_mutex_lock(&s->mu);
    /* shared: a look creates the key too, so that the sync thread learns its count */
    struct entry *e = slot_for(s, op->key.data, op->key.len, h, op->add > 0 || shared, now);
    if (!e) {
        pthread_mutex_unlock(&s->mu);
        op->period_end_ms = 0;
        if (op->add > 0) {
            /* no room for a new key: refused as if its limit were reached
               (stricter, never looser); the count says so to callers that
               count without a limit */
            op->count = INT64_MAX / 4;
            op->retry_ms = kind == PT_COUNTER_SLIDING && op->window_ms > 0 ? op->window_ms : 1000;
            return 0;
        }
        op->count = 0; /* a look, or a release, for a key that has no count */
        op->retry_ms = 0;
        return 1;
    }
    if (e->kind == PT_COUNTER_FIXED && kind == PT_COUNTER_FIXED && e->window == 0 && op->window_ms > 0)
        e->window = op->window_ms; /* seeded from the store: keeps its period and value */
    else if (e->kind != kind || e->window != op->window_ms) {
        /* first use, or the same key now counted another way: start over (tokens held for the old
           way stay counted in Redis: stricter) */
        memset(e->slots, 0, sizeof(e->slots));
        e->value = 0;
        e->period = -1;
        e->kind = kind;
        e->window = op->window_ms > 0 ? op->window_ms : 1;
        e->slot_epoch = 0;
        if (e->sh) {
            e->sh->lease = e->sh->remote = 0;
            e->sh->remote_until = 0;
            e->sh->exhausted = false;
        }
    }
    e->persist = op->persist;
    op->retry_ms = 0;
    op->period_end_ms = 0;
    switch (kind) {
    case PT_COUNTER_SLIDING: {
        int64_t slot_len = e->window / NSLOTS > 0 ? e->window / NSLOTS : 1;
        int64_t slot = now / slot_len;
        advance(e, slot);
        int64_t sum = sliding_sum(e);
        if (op->limit > 0 && op->add > 0 && !decide && sum + op->add > op->limit)
            ok = 0;
        else if (op->add) {
            e->slots[slot % NSLOTS] += op->add;
            sum += op->add;
            e->last_ms = now;
        }
        if (decide && sum > op->limit)
            ok = 0;
        op->count = sum;
        int64_t need = op->add > 0 ? op->add : 1;
        if (op->limit > 0 && (decide ? !ok : sum + need > op->limit)) {
            /* room for the next call comes back when enough of the oldest
               slots have left the window */
            int64_t left = sum;
            need = decide ? 1 : need;
            for (int64_t k = slot - NSLOTS + 1; k <= slot; k++) {
                left -= e->slots[((k % NSLOTS) + NSLOTS) % NSLOTS];
                if (left + need <= op->limit) {
                    op->retry_ms = (k + NSLOTS) * slot_len - now;
                    break;
                }
            }
        }
        break;
    }
    case PT_COUNTER_FIXED: {
        int64_t wall = (int64_t)pt_clock_wall_ms();
        int64_t since = wall - op->origin_ms;
        int64_t period = since >= 0 ? since / e->window : -1;
        if (period != e->period) {
            e->period = period;
            e->value = 0;
        }
        if (op->limit > 0 && op->add > 0 && !decide && e->value + op->add > op->limit)
            ok = 0;
        else if (op->add) {
            e->value += op->add;
            e->last_ms = now;
            e->dirty = e->persist;
        }
        if (decide && e->value > op->limit)
            ok = 0;
        op->count = e->value;
        op->period_end_ms = op->origin_ms + (period + 1) * e->window;
        if (op->limit > 0 && (decide ? !ok : e->value + (op->add > 0 ? op->add : 1) > op->limit))
            op->retry_ms = op->period_end_ms - wall;
        break;
    }
    default: /* gauge */
        if (op->limit > 0 && op->add > 0 && e->value + op->add > op->limit)
            ok = 0;
        else {
            e->value += op->add;
            if (e->value < 0)
                e->value = 0;
            e->last_ms = now;
        }
        op->count = e->value;
        break;
    }
    if (shared && !e->sh)
        e->sh = calloc(1, sizeof(*e->sh)); /* out of memory: this key counts per node */
    if (shared && e->sh) {
        e->sh->origin = op->origin_ms;
        ok = shared_apply(s, e, op, now, decide, ok);
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

/* The entry of a queued key, or NULL. */
static struct entry *find(struct shard *s, const char *key, size_t klen)
{
    return slot_for(s, key, klen, pt_hash(key, klen, false), false, 0);
}

size_t pt_counters_take(struct pt_counters_job *jobs, size_t max, uint64_t now, uint32_t interval)
{
    atomic_store(&wake_pending, false);
    size_t n = 0;
    unsigned first = atomic_fetch_add(&take_from, 1) % NSHARDS;
    for (int i = 0; i < NSHARDS; i++) {
        struct shard *s = &shards[(first + (unsigned)i) % NSHARDS];
        pthread_mutex_lock(&s->mu);
        size_t keep = 0;
        for (size_t k = 0; k < s->nq; k++) {
            struct qkey q = s->q[k];
            struct entry *e = find(s, q.key, q.klen);
            if (!e || !e->sh) {
                free(q.key);
                continue;
            }
            if (n == max || e->sh->asked) {
                s->q[keep++] = q;
                continue;
            }
            expire(e, now);
            /* demand per interval since the last look (a look right after a wake-up reads a burst as
               the rate it is; the grant rule and the give-back bound what a guess too high holds) */
            uint64_t span = e->sh->rate_ms ? now - e->sh->rate_ms : interval;
            int64_t per = e->sh->demand * (int64_t)interval / (int64_t)(span > 1 ? span : 1);
            e->sh->rate = per > e->sh->rate ? per : (e->sh->rate + per) / 2;
            e->sh->demand = 0;
            e->sh->rate_ms = now;
            if (atomic_load_explicit(&releasing, memory_order_relaxed))
                e->sh->rate = 0; /* stopping: every token held goes back, none is asked for */
            if (!e->sh->rate && e->sh->lease && (!e->sh->ret || e->sh->ret_slot == e->sh->lease_slot)) {
                e->sh->ret += e->sh->lease; /* no demand any more: the tokens go back for other nodes */
                e->sh->ret_slot = e->sh->lease_slot;
                e->sh->lease = 0;
            }
            int64_t want = 0;
            if (e->sh->limit > 0 && e->sh->rate > 0 && e->sh->lease < e->sh->rate)
                want = pt_counters_want(e->sh->rate, e->sh->lease, e->sh->limit);
            if (!want && !e->sh->pend && !e->sh->ret && e->sh->synced) {
                if (!e->sh->lease && !e->sh->rate) {
                    e->sh->queued = false; /* nothing to do: off the queue until used again */
                    free(q.key);
                } else
                    s->q[keep++] = q;
                continue;
            }
            struct pt_counters_job *j = &jobs[n++];
            *j = (struct pt_counters_job){.key = q.key,
                                          .klen = q.klen,
                                          .kind = e->kind,
                                          .window_ms = e->window,
                                          .origin_ms = e->sh->origin,
                                          .limit = e->sh->limit,
                                          .want = want,
                                          .ret = e->sh->ret,
                                          .ret_slot = e->sh->ret_slot,
                                          .push = e->sh->pend,
                                          .credit = e->sh->credit_new,
                                          .sent_ms = now};
            j->key = malloc(q.klen + 1);
            if (!j->key) {
                n--;
                s->q[keep++] = q;
                continue;
            }
            memcpy(j->key, q.key, q.klen + 1);
            e->sh->inflight += e->sh->pend;
            e->sh->pend = 0;
            e->sh->credit_new = 0;
            e->sh->ret = 0;
            e->sh->asked = true;
            s->q[keep++] = q;
        }
        s->nq = keep;
        pthread_mutex_unlock(&s->mu);
    }
    return n;
}

void pt_counters_done(const struct pt_counters_job *job, const struct pt_counters_answer *a, uint64_t now)
{
    uint64_t h = pt_hash(job->key, job->klen, false);
    struct shard *s = shard_of(h);
    pthread_mutex_lock(&s->mu);
    struct entry *e = slot_for(s, job->key, job->klen, h, false, 0);
    if (!e || !e->sh || e->kind != job->kind || e->window != job->window_ms) {
        pthread_mutex_unlock(&s->mu); /* gone, or counted another way: its tokens stay counted */
        return;
    }
    e->sh->asked = false;
    e->sh->inflight -= job->push;
    if (!a) {
        e->sh->pend += job->push; /* pushed again with the next job (perhaps twice, if Redis did take it) */
        e->sh->credit_new += job->credit;
        pthread_mutex_unlock(&s->mu);
        return;
    }
    e->sh->synced = true;
    e->sh->credit -= job->credit; /* in Redis's count now */
    e->sh->remote = a->total;
    e->sh->remote_ms = now;
    /* left < 0: a period that never ends (renewal-period 0) */
    e->sh->remote_until = a->left_ms < 0 ? UINT64_MAX : job->sent_ms + (uint64_t)a->left_ms;
    e->sh->remote_retry = a->retry_ms;
    if (a->granted > 0) {
        /* calls admitted on credit since the job left are not in Redis's count yet: the tokens pay
           for them first (they are then no longer pushed), so that they are never admitted twice */
        int64_t g = a->granted, paid = PT_MIN(g, e->sh->credit_new);
        if (paid > 0) {
            e->sh->credit_new -= paid;
            e->sh->credit -= paid;
            e->sh->pend -= paid;
            g -= paid;
        }
        if (e->sh->lease && e->sh->lease_slot != a->slot) {
            e->sh->ret = e->sh->lease; /* tokens of a slot gone by: given back */
            e->sh->ret_slot = e->sh->lease_slot;
            e->sh->lease = 0;
        }
        e->sh->lease += g;
        e->sh->lease_slot = a->slot;
        /* counted from when the job was sent: never past the slot's end on Redis's clock */
        e->sh->lease_until = e->sh->remote_until;
    }
    e->sh->exhausted = e->sh->limit > 0 && a->total >= e->sh->limit;
    /* calls came while this job was out and the grant did not cover them: the next at once */
    if (a->granted > 0 && !e->sh->exhausted && e->sh->demand > 0 && e->sh->lease < e->sh->rate / 2 + 1 &&
        waker && !atomic_exchange(&wake_pending, true))
        waker();
    /* the local count follows the count across nodes, so that counting per node (Redis down)
       starts from it */
    int64_t others = a->total - e->sh->lease;
    if (e->kind == PT_COUNTER_SLIDING) {
        int64_t slot_len = e->window / NSLOTS > 0 ? e->window / NSLOTS : 1;
        int64_t slot = (int64_t)now / slot_len;
        advance(e, slot);
        int64_t sum = sliding_sum(e);
        if (others > sum)
            e->slots[slot % NSLOTS] += others - sum;
    } else if (e->period == a->slot && others > e->value)
        e->value = others;
    pthread_mutex_unlock(&s->mu);
}

void pt_counters_refused(const struct pt_counters_job *job, uint64_t now)
{
    pt_counters_done(job, NULL, now);
    uint64_t h = pt_hash(job->key, job->klen, false);
    struct shard *s = shard_of(h);
    pthread_mutex_lock(&s->mu);
    struct entry *e = slot_for(s, job->key, job->klen, h, false, 0);
    if (e && e->sh)
        e->sh->alone_until = now + PT_COUNTERS_ALONE_MS;
    pthread_mutex_unlock(&s->mu);
}

void pt_counters_job_free(struct pt_counters_job *job)
{
    free(job->key);
    job->key = NULL;
}

void pt_counters_each_dirty(void (*fn)(void *arg, const char *key, int64_t period, int64_t value), void *arg)
{
    for (int i = 0; i < NSHARDS; i++) {
        struct shard *s = &shards[i];
        pthread_mutex_lock(&s->mu);
        for (size_t k = 0; k < s->cap; k++) {
            struct entry *e = &s->e[k];
            if (e->key && e->persist && e->dirty) {
                fn(arg, e->key, e->period, e->value);
                e->dirty = false;
            }
        }
        pthread_mutex_unlock(&s->mu);
    }
}

void pt_counters_seed(const char *key, int64_t period, int64_t value)
{
    size_t klen = strlen(key);
    uint64_t h = pt_hash(key, klen, false);
    struct shard *s = shard_of(h);
    pthread_mutex_lock(&s->mu);
    struct entry *e = slot_for(s, key, klen, h, true, mono_ms());
    if (!e) { /* no room: the key starts from nothing when it is used */
        pthread_mutex_unlock(&s->mu);
        return;
    }
    e->kind = PT_COUNTER_FIXED;
    e->persist = true;
    e->period = period;
    e->value = value;
    e->window =
        0; /* adopted by the first operation on the key (which keeps the value if the period matches) */
    e->last_ms = mono_ms();
    pthread_mutex_unlock(&s->mu);
}

size_t pt_counters_count(void)
{
    size_t n = 0;
    for (int i = 0; i < NSHARDS; i++) {
        pthread_mutex_lock(&shards[i].mu);
        n += shards[i].used;
        pthread_mutex_unlock(&shards[i].mu);
    }
    return n;
}

size_t pt_counters_capacity(void)
{
    size_t n = 0;
    for (int i = 0; ready && i < NSHARDS; i++) {
        pthread_mutex_lock(&shards[i].mu);
        n += shards[i].max;
        pthread_mutex_unlock(&shards[i].mu);
    }
    return n;
}
