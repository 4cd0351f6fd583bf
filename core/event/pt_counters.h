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
 * The interface (pt_counter_op) is what a cluster-wide store would
 * implement too.
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

/* How many keys are in use (for tests and metrics). */
size_t pt_counters_count(void);
/* How many keys may be in use at most (limits.counterKeys, rounded to the shards). */
size_t pt_counters_capacity(void);

#endif
