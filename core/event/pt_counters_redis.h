/*
 * pt_counters_redis -- the counters' sync thread: rate limits and quotas
 * counted across nodes through Redis (counters.redis; docs/access-policies.md,
 * "Counting across nodes").
 *
 * One thread with its own event loop and one connection (plain TCP or TLS
 * through pt_io, RESP through pt_redis's reader and writer: the one Redis
 * client of the tree).  Every counters.syncInterval, and at once when a key
 * needs its first lease or ran out of tokens, it takes the keys that need
 * Redis from the counter table (pt_counters_take) and runs one EVALSHA of a
 * small Lua script per key, pipelined: unused tokens are given back, pushed
 * increments added, new tokens reserved atomically (a sliding window in 20
 * slots for rate limits, the period's index for quotas, Redis's own clock
 * for both), and the window's count returned.  The answers go back to the
 * table (pt_counters_done).  Requests never wait for this thread.
 *
 * Redis keys: PT_COUNTERS_REDIS_PREFIX + 32 hex digits of SHA-256 of the
 * counter's name (a hash whose fields are slot or period numbers).  When
 * Redis cannot be reached, or does not answer within counters.timeout, the
 * table counts per node (pt_counters_set_up(false)) with one log line per
 * change of state, and the connection is tried again (100 ms doubling to
 * 2 s); what was counted meanwhile is pushed when it answers again.
 */
#ifndef PT_COUNTERS_REDIS_H
#define PT_COUNTERS_REDIS_H

#include "base/pt.h"
#include "conf/pt_conf.h"

#define PT_COUNTERS_REDIS_PREFIX "portico:ctr:"
#define PT_COUNTERS_REDIS_INFLIGHT 4096 /* commands waiting for their answer at most */
#define PT_COUNTERS_REDIS_BACKOFF_MAX_MS 2000

/* Starts the thread when cf->redis.redis is set (at start; no-op otherwise).  false with a message
   when it cannot start (the counters then stay per node). */
bool pt_counters_redis_start(const struct pt_counters_cf *cf, char *err, size_t errlen);
/* Stops the thread (at exit, the workers gone): a last turn gives back the tokens held and pushes
   what is pending, waiting for Redis at most counters.timeout. */
void pt_counters_redis_stop(void);

/* The script's answer, a bulk "granted total slot left_ms retry_ms" (pure; fuzzed): false when it
   is not five integers in range. */
struct pt_counters_answer;
bool pt_counters_redis_answer(const char *p, size_t n, struct pt_counters_answer *a);
/* The Redis key of a counter name, NUL-terminated, in out (at least PT_COUNTERS_REDIS_KEY_LEN + 1). */
#define PT_COUNTERS_REDIS_KEY_LEN (sizeof(PT_COUNTERS_REDIS_PREFIX) - 1 + 32)
void pt_counters_redis_key(const char *name, size_t len, char *out);

struct pt_counters_redis_stats {
    bool configured, up;
    uint64_t syncs;     /* answers to EVALSHA */
    uint64_t leases;    /* answers that reserved tokens */
    uint64_t tokens;    /* tokens reserved */
    uint64_t failures;  /* connections lost or refused, timeouts, error answers */
    uint64_t fallbacks; /* operations counted per node while Redis was down */
    uint64_t changes;   /* changes of state (up / down) */
};
void pt_counters_redis_stats(struct pt_counters_redis_stats *st);

#endif
