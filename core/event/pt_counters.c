/*
 * pt_counters -- sharded node-wide counters (see pt_counters.h).
 */
#include "event/pt_counters.h"

#include <pthread.h>
#include <stdlib.h>

#define NSHARDS 64
#define NSLOTS 20

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
};

struct shard {
    pthread_mutex_t mu;
    struct entry *e; /* open addressing, cap a power of two; key == NULL: free */
    size_t cap, used, max;
    int64_t rescan_ms; /* full of live keys: no new look for idle ones before this */
};

static struct shard shards[NSHARDS];
static bool ready;

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
        for (size_t k = 0; k < s->cap; k++)
            free(s->e[k].key);
        free(s->e);
        s->e = NULL;
        s->cap = s->used = 0;
        s->rescan_ms = 0;
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

int pt_counters_apply(struct pt_counter_op *op)
{
    PT_DCHECK(op->key.data && op->key.len && op->kind >= PT_COUNTER_SLIDING && op->kind <= PT_COUNTER_GAUGE);
    uint64_t h = pt_hash(op->key.data, op->key.len, false);
    struct shard *s = shard_of(h);
    int64_t now = mono_ms();
    int ok = 1;
    pthread_mutex_lock(&s->mu);
    struct entry *e = slot_for(s, op->key.data, op->key.len, h, op->add > 0, now);
    if (!e) {
        pthread_mutex_unlock(&s->mu);
        op->period_end_ms = 0;
        if (op->add > 0) {
            /* no room for a new key: refused as if its limit were reached
               (stricter, never looser); the count says so to callers that
               count without a limit */
            op->count = INT64_MAX / 4;
            op->retry_ms = op->kind == PT_COUNTER_SLIDING && op->window_ms > 0 ? op->window_ms : 1000;
            return 0;
        }
        op->count = 0; /* a look, or a release, for a key that has no count */
        op->retry_ms = 0;
        return 1;
    }
    if (e->kind == PT_COUNTER_FIXED && op->kind == PT_COUNTER_FIXED && e->window == 0 && op->window_ms > 0)
        e->window = op->window_ms; /* seeded from the store: keeps its period and value */
    else if (e->kind != op->kind || e->window != op->window_ms) {
        /* first use, or the same key now counted another way: start over */
        memset(e->slots, 0, sizeof(e->slots));
        e->value = 0;
        e->period = -1;
        e->kind = op->kind;
        e->window = op->window_ms > 0 ? op->window_ms : 1;
        e->slot_epoch = 0;
    }
    e->persist = op->persist;
    op->retry_ms = 0;
    op->period_end_ms = 0;
    switch (op->kind) {
    case PT_COUNTER_SLIDING: {
        int64_t slot_len = e->window / NSLOTS > 0 ? e->window / NSLOTS : 1;
        int64_t slot = now / slot_len;
        advance(e, slot);
        int64_t sum = sliding_sum(e);
        if (op->limit > 0 && op->add > 0 && sum + op->add > op->limit)
            ok = 0;
        else if (op->add) {
            e->slots[slot % NSLOTS] += op->add;
            sum += op->add;
            e->last_ms = now;
        }
        op->count = sum;
        int64_t need = op->add > 0 ? op->add : 1;
        if (op->limit > 0 && sum + need > op->limit) {
            /* room for the next call comes back when enough of the oldest
               slots have left the window */
            int64_t left = sum;
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
        if (op->limit > 0 && op->add > 0 && e->value + op->add > op->limit)
            ok = 0;
        else if (op->add) {
            e->value += op->add;
            e->last_ms = now;
            e->dirty = e->persist;
        }
        op->count = e->value;
        op->period_end_ms = op->origin_ms + (period + 1) * e->window;
        if (op->limit > 0 && e->value + (op->add > 0 ? op->add : 1) > op->limit)
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
    pthread_mutex_unlock(&s->mu);
    return ok;
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
