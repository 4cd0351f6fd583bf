/*
 * pt_redis -- the external cache: one Redis connection per worker, on the
 * worker's event loop, never blocking it (docs/caching.md).
 *
 * The protocol is RESP2, written and read here: commands are arrays of bulk
 * strings; the replies the cache needs are simple strings, errors, integers
 * and bulk strings, and anything else (arrays, RESP3 types, a line longer
 * than PT_REDIS_LINE_MAX, a bulk length over PT_REDIS_BULK_ABSURD) is a
 * protocol error that closes the connection.  A bulk longer than
 * cache.maxEntry (written by another program, or before maxEntry was
 * lowered) is a miss: its bytes are discarded as they arrive, never held.  The connection is a pt_io: plain
 * TCP or TLS (rediss://) through the same drivers as backend connections.
 *
 * A worker's connection is made on first use and remade after a failure
 * with a backoff (100 ms doubling to 5 s).  Commands are pipelined; each
 * has a deadline of cache.commandTimeout from when it was asked.  While
 * the connection is being made, commands wait in a bounded queue
 * (PT_REDIS_QUEUE_MAX); while it is down (within the backoff), a lookup
 * answers a miss at once and a store or removal is skipped.  A command
 * past its deadline answers a miss, and if it was sent the connection is
 * closed and remade (its answer would come on a connection we no longer
 * trust to be in step).  A lookup's answer always comes from the event
 * loop, never from inside pt_redis_get.  Failures are counted per worker
 * and logged at most once every PT_REDIS_LOG_MS across the node.
 */
#ifndef PT_REDIS_H
#define PT_REDIS_H

#include "base/pt.h"
#include "conf/pt_conf.h"

struct event_base;

#define PT_REDIS_QUEUE_MAX 1024         /* commands waiting or in flight per worker */
#define PT_REDIS_LINE_MAX 4096          /* a simple string or error reply */
#define PT_REDIS_BULK_ABSURD (1u << 30) /* a bulk length past this is a broken server (Redis: 512 MiB) */
#define PT_REDIS_LOG_MS 30000           /* the least time between two "Redis is down" lines */
#define PT_REDIS_MAX_WORKERS 256        /* as many as `workers` allows */
#define PT_REDIS_KEY_PREFIX "portico:"  /* every key the gateway writes */
#define PT_REDIS_RETRY_MIN_MS 1000      /* a name that did not resolve: first try again after ... */
#define PT_REDIS_RETRY_MAX_MS 30000     /* ... doubling up to this */

/* ---- the protocol (pure: unit-tested and fuzzed) ---- */

struct pt_redis_reply {
    char type;       /* '+', '-', ':' or '$' */
    const char *str; /* '+' and '-': the line; '$': the bulk (NULL when nil) */
    size_t len;
    int64_t integer; /* ':' */
    size_t need;     /* when 0 is returned for a bulk: the bytes the whole reply takes */
    size_t skip;     /* a bulk over max_bulk: only its head was read (str NULL, as nil); this many
                        bytes follow, the bulk and its CRLF, to be discarded */
};

/*
 * Reads one reply from the start of p[0..n).  Returns the bytes it takes
 * (> 0) with *r filled, 0 when more bytes are needed (r->need says how many
 * in all when known, else 0), -1 when the bytes are not a reply we accept
 * (r->str then names the reason).  A bulk over max_bulk bytes is read as
 * its head only, with r->skip set (a value too large for this gateway is a
 * miss, not a broken connection); one over PT_REDIS_BULK_ABSURD is refused.
 */
ssize_t pt_redis_parse(const char *p, size_t n, size_t max_bulk, struct pt_redis_reply *r);
/* Appends a command: an array of bulk strings (the writer of this client and of the counters' sync
   thread, event/pt_counters_redis.c). */
struct evbuffer;
void pt_redis_encode(struct evbuffer *out, int argc, const pt_bytes *argv);

/* ---- the node's settings (control thread) ---- */

/* Takes the cache settings of a new generation: resolves the host (at start, at each reload that
   changes a Redis setting, and at every reload while the current settings did not resolve),
   builds the TLS context; the workers remake their connection at their next command.  NULL redis: no Redis.
   false with a message in err when the host does not resolve or the TLS settings cannot be loaded (Redis then
   counts as down). */
bool pt_redis_configure(const struct pt_cache_cf *cf, char *err, size_t errlen);
/* While the settings did not resolve (or their TLS files did not load): tries again, on a thread
   of its own so that a slow resolver holds nothing up, first PT_REDIS_RETRY_MIN_MS after the
   failure then doubling to PT_REDIS_RETRY_MAX_MS; when the name resolves, the workers take the new
   address at their next turn.  Called by the control loop's timer (every second).  true when a
   try was started. */
bool pt_redis_retry(uint64_t now_ms);
/* Is a try of pt_redis_retry running?  Do the current settings resolve?  (Tests, logs.) */
bool pt_redis_retrying(void);
bool pt_redis_resolved(void);
/* The resolver (getaddrinfo by default; NULL puts it back).  Tests only. */
struct addrinfo;
void pt_redis_set_resolver(int (*fn)(const char *, const char *, const struct addrinfo *,
                                     struct addrinfo **));
/* Is Redis configured (cache.redis)? */
bool pt_redis_configured(void);
/* Frees the settings at exit, once the workers are gone. */
void pt_redis_shutdown(void);

/* The bytes of commands that may wait to be written per worker: 16 MiB, or two of the largest
   SET commands cache.maxEntry allows when that is more, so that any value the settings admit can
   be stored (docs/caching.md, "Bounds"). */
uint64_t pt_redis_out_max(uint64_t max_entry);

/* ---- a worker's commands (on its own thread; base is its event loop) ---- */

/* The answer to a lookup: found 1 with the value (valid during the call only), 0 on a miss
   (nothing there, an error, a timeout, the connection lost). */
typedef void (*pt_redis_get_cb)(void *arg, int found, pt_bytes value);

/*
 * Asks for key (the PT_REDIS_KEY_PREFIX is added).  1: asked, cb runs later
 * from the event loop and *handle can cancel it until then; 0: a miss now
 * (not configured, down, queue full, key too long, no cb), cb never runs.
 */
int pt_redis_get(struct event_base *base, int worker, pt_bytes key, pt_redis_get_cb cb, void *arg,
                 void **handle);
/* The lookup's cb will not run (its request ended). */
void pt_redis_cancel(void *handle);
/* SET key value [EX ttl_s] (ttl_s 0: no expiry) and DEL key: 0 when sent or queued, -1 when
   skipped (not configured, down, queue full, too large).  Never waits for the answer. */
int pt_redis_set(struct event_base *base, int worker, pt_bytes key, pt_bytes value, uint32_t ttl_s);
int pt_redis_del(struct event_base *base, int worker, pt_bytes key);
/* The worker's periodic turn: new settings close a connection the old ones made, even when no
   command comes any more (Redis taken out of the configuration). */
void pt_redis_worker_tick(int worker);
/* The worker is stopping: its connection closes, pending lookups are dropped without their cb. */
void pt_redis_worker_end(int worker);

/* ---- counters (any thread) ---- */

struct pt_redis_stats {
    uint64_t hits, misses, stores, removals, skipped;
    uint64_t timeouts, conn_errors, protocol_errors, error_replies, auth_errors;
    uint64_t connects;    /* connections made (handshake done) */
    uint64_t too_large;   /* lookups that found a value over cache.maxEntry (a miss) */
    uint64_t connections; /* workers connected now */
};
void pt_redis_stats(struct pt_redis_stats *st);

#endif
