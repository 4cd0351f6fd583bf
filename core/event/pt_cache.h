/*
 * pt_cache -- the internal cache: a node-wide key/value store shared by
 * every worker, bounded by bytes, with least-recently-used eviction and a
 * time to live per entry (docs/caching.md).
 *
 * The table is split in shards chosen by the key's hash, each with its own
 * mutex, hash chains and LRU list: two workers contend only when their keys
 * fall in the same shard, and a shard is held for a lookup and a list move,
 * never for copying a value (entries are reference-counted: a reader copies
 * outside the lock).  The byte budget is node-wide: an atomic total of the
 * entries' sizes, overhead counted (PT_CACHE_OVERHEAD per entry plus key and
 * value).  When a store passes it, entries are evicted oldest first across
 * all shards: each shard publishes the last-use stamp of its LRU tail in an
 * atomic, and the evictor picks the shard whose tail is oldest, so the order
 * is the node-wide LRU order up to concurrent touches.  An expired entry is
 * a miss and is dropped when found; expired entries nobody asks for age to
 * the tails and go first.
 *
 * The node's store (pt_cache_node) is created once at start and outlives
 * configuration generations: a reload only changes its limits (a smaller
 * budget evicts at once; 0 empties it and refuses stores).
 */
#ifndef PT_CACHE_H
#define PT_CACHE_H

#include "base/pt.h"

/* Bytes counted for an entry besides its key and value: the entry header, its hash slot and the
   allocator's own header, rounded. */
#define PT_CACHE_OVERHEAD 96

/* Keys are at most this long (longer keys are refused: a miss, a store skipped). */
#define PT_CACHE_KEY_MAX 8192

struct pt_cache;

struct pt_cache_stats {
    uint64_t hits, misses;   /* lookups that found a live entry / did not */
    uint64_t stores;         /* entries stored (new or replacing) */
    uint64_t skipped;        /* stores refused: too large, key too long, cache off, no memory */
    uint64_t evictions;      /* entries evicted for room */
    uint64_t expired;        /* entries dropped past their time to live */
    uint64_t removals;       /* entries removed by pt_cache_del */
    uint64_t entries, bytes; /* what the cache holds now */
    uint64_t limit;          /* the byte budget */
};

/* A store of max_bytes (0: off), values of at most max_entry bytes, nshards shards (rounded up to
   a power of two, 1..256).  NULL when out of memory. */
struct pt_cache *pt_cache_new(uint64_t max_bytes, uint64_t max_entry, int nshards);
/* Frees the store (no thread may be using it). */
void pt_cache_free(struct pt_cache *c);
/* New limits; a smaller budget evicts until the store fits. */
void pt_cache_set_limits(struct pt_cache *c, uint64_t max_bytes, uint64_t max_entry);
/* The clock TTLs are measured with (ms, monotonic); pt_clock_now_ms by default.  Tests only. */
void pt_cache_set_clock(struct pt_cache *c, uint64_t (*now_ms)(void));

/*
 * Looks a key up.  On a hit: 1, the value copied into memory from alloc(actx, len) (alloc may
 * return NULL for a zero length) and *out pointing at it.  0 on a miss (also when alloc fails).
 */
int pt_cache_get(struct pt_cache *c, const void *key, size_t klen, void *(*alloc)(void *actx, size_t n),
                 void *actx, pt_bytes *out);
/* Stores (or replaces) key for ttl_ms milliseconds (0: until evicted).  0, or -1 when skipped. */
int pt_cache_put(struct pt_cache *c, const void *key, size_t klen, const void *value, size_t vlen,
                 uint64_t ttl_ms);
/* Removes key; 1 when it was there, 0 when not. */
int pt_cache_del(struct pt_cache *c, const void *key, size_t klen);
/* Drops every entry. */
void pt_cache_clear(struct pt_cache *c);
/* Sums the shards' counters (takes each shard's lock in turn). */
void pt_cache_stats(struct pt_cache *c, struct pt_cache_stats *st);

/* ---- the node's store ---- */

/* Creates the node's store or changes its limits (control thread: at start and at each reload). */
bool pt_cache_node_configure(uint64_t max_bytes, uint64_t max_entry);
/* The node's store (NULL before pt_cache_node_configure). */
struct pt_cache *pt_cache_node(void);
/* Frees the node's store at exit, once the workers are gone. */
void pt_cache_node_free(void);

/* The /metrics collector of the caches (pt_metrics_collector). */
struct pt_metrics_sink;
void pt_cache_metrics(struct pt_metrics_sink *s, void *arg);

#endif
