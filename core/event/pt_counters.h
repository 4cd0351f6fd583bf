/*
 * pt_counters -- node-wide counters for rate limits, quotas and
 * concurrency limits, shared by every worker thread.
 *
 * The table is split in 64 shards, each with its own mutex, chosen by the
 * key's hash: two requests contend only when their keys fall in the same
 * shard, and a shard is held for a few hundred nanoseconds.  Three kinds:
 *
 *   sliding   calls within the last `window` ms, counted in 20 slots of
 *             window/20: a call is refused while the slots overlapping
 *             the last window hold `limit` calls (so the window is exact
 *             to one slot: a limit never lets more than `limit` calls
 *             through in any window aligned to a slot)
 *   fixed     calls (or bytes) in periods of `window` ms counted from
 *             `origin` (wall clock): quotas
 *   gauge     a value that goes up and down: concurrent requests
 *
 * Memory is bounded: at most `max_keys` keys (limits.counterKeys); an idle
 * key (nothing counted for a whole window) is reclaimed when its shard
 * needs room; when a shard is full of live keys, an addition under a new
 * key is refused as if its limit were reached (and a look at one finds 0),
 * so a flood of distinct keys can only make limits stricter, never exhaust
 * memory.  Keys that have a count keep it.
 *
 * Across nodes (counters.redis, docs/access-policies.md "Counting across
 * nodes"): the table stays the fast path.  A counted call with a limit
 * (PT_COUNTER_COUNT_REFUSED) is admitted against tokens the node reserved in
 * Redis ahead of time (its lease); any other addition is pushed to Redis in
 * batches, and looks answer from the total Redis gave at the last sync.  The
 * sync thread (event/pt_counters_redis.c) takes the keys that need it from
 * here (pt_counters_take) and hands Redis's answers back (pt_counters_done);
 * nothing here waits for it.  While Redis is down every key counts per node,
 * and what was counted then is pushed when it answers again.
 */
#ifndef PT_COUNTERS_H
#define PT_COUNTERS_H

#include "base/pt.h"

#include <portico/plugin.h>

/* Sets the key cap (before workers start, and at reload). */
void pt_counters_init(size_t max_keys);
void pt_counters_free(void);

/* Runs one operation (see struct pt_counter_op in plugin.h); 1 when the
   addition was made (or nothing was to be added), 0 when refused by the
   limit. */
int pt_counters_apply(struct pt_counter_op *op);

/* Fixed-window counters marked persistent, for the store: calls fn for
   each one changed since the last call (key, period index, value). */
void pt_counters_each_dirty(void (*fn)(void *arg, const char *key, int64_t period, int64_t value), void *arg);
/* Seeds a persistent fixed-window counter (at start, from the store). */
void pt_counters_seed(const char *key, int64_t period, int64_t value);

/* ---- counting across nodes (the sync thread's side) ---- */

/* Calls a node may admit under a key beyond its tokens, not yet known to Redis: PT_COUNTERS_GRACE
   while the count it knows has room (the first calls of a key, the last tokens trickling), up to
   limit / PT_COUNTERS_CREDIT_DIV while that count is at most half the limit (tokens late under a
   burst) (docs/access-policies.md: the overshoot bound). */
#define PT_COUNTERS_GRACE 1
#define PT_COUNTERS_CREDIT_DIV 64

/* Shared counting on (Redis configured) or off; wake is called (from any thread, at most once until
   the next pt_counters_take) when a key needs its first lease, or ran out of tokens. */
void pt_counters_share(bool on, void (*wake)(void));
/* Redis answers (true) or is down (false: every key counts per node until it answers again). */
void pt_counters_set_up(bool up);
bool pt_counters_is_up(void);
/* Stopping (the workers are gone): the next pt_counters_take gives back every token held and pushes
   what is pending, asking for nothing. */
void pt_counters_release(void);

/* What the sync thread asks Redis for one key. */
struct pt_counters_job {
    char *key; /* malloc'd copy, the job's (pt_counters_job_free) */
    size_t klen;
    int kind;          /* PT_COUNTER_SLIDING or PT_COUNTER_FIXED */
    int64_t window_ms; /* the window, or the period (0: never renewed) */
    int64_t origin_ms; /* fixed: the first period's start */
    int64_t limit;     /* 0: no tokens asked */
    int64_t want;      /* tokens to reserve */
    int64_t ret;       /* unused tokens given back ... */
    int64_t ret_slot;  /* ... to this slot or period */
    int64_t push;      /* increments to add (refused calls, bytes, counted while down, calls on credit) */
    int64_t credit;    /* ... of which calls admitted on credit */
    uint64_t sent_ms;  /* monotonic, when asked */
};
/* Redis's answer to a job. */
struct pt_counters_answer {
    int64_t granted;  /* tokens reserved */
    int64_t total;    /* the window's (or period's) count after the job */
    int64_t slot;     /* the slot or period the tokens belong to */
    int64_t left_ms;  /* until that slot or period ends (Redis's clock) */
    int64_t retry_ms; /* sliding: until one more call fits, when the window is full */
};
/* Fills up to max jobs from the keys that need syncing (one job in flight per key); now is
   monotonic ms, interval the sync interval. */
size_t pt_counters_take(struct pt_counters_job *jobs, size_t max, uint64_t now, uint32_t interval);
/* Redis answered a job (a NULL answer: it failed; what it pushed is pushed again later). */
void pt_counters_done(const struct pt_counters_job *job, const struct pt_counters_answer *a, uint64_t now);
/* Redis refused a job with an error (a key of another type under the name, a script error): the key
   counts per node for PT_COUNTERS_ALONE_MS, then tries Redis again. */
#define PT_COUNTERS_ALONE_MS 30000
void pt_counters_refused(const struct pt_counters_job *job, uint64_t now);
void pt_counters_job_free(struct pt_counters_job *job);
/* Adds for the metrics: operations decided per node while Redis was down. */
uint64_t pt_counters_fallbacks(void);

/* The lease arithmetic (pure; tests/unit/test_counters_redis.c). */
/* Tokens to ask for: enough for two sync intervals at the observed demand (calls per interval),
   at least one, at most the limit, less what is still held. */
int64_t pt_counters_want(int64_t demand, int64_t held, int64_t limit);
/* What Redis grants of `want` when the window holds `total` of `limit` (the script's rule, here to
   be tested): at most a quarter of the room left (at least 1), so the last tokens go out one at a
   time to whichever node needs them. */
int64_t pt_counters_grant(int64_t want, int64_t total, int64_t limit);
/* The calls a node may admit on credit under a limit: max(PT_COUNTERS_GRACE, limit / 64). */
int64_t pt_counters_credit(int64_t limit);
/* The most calls admitted in one window past `limit`, cluster-wide, for counted calls:
   nodes × pt_counters_credit(limit). */
int64_t pt_counters_overshoot(int64_t nodes, int64_t limit);

/* How many keys are in use (for tests and metrics). */
size_t pt_counters_count(void);
/* How many keys may be in use at most (limits.counterKeys, rounded to the shards). */
size_t pt_counters_capacity(void);

#endif
