/*
 * pt_breaker -- node-wide backend state: circuit breakers, health, and the
 * choice of a pool member.  Pure logic over counts and clocks (every time
 * is passed in, in milliseconds of the coarse monotonic clock), shared by
 * every worker and the health checker; no request types.
 *
 * A backend's state (struct pt_bestate) is found by its id and a key the
 * caller builds (the url of a single backend, the member list of a pool):
 * a new generation that keeps a backend's id and key gets the very same
 * state, so a trip, the health verdict and a pool's round-robin position
 * survive reloads.  Changed circuit breaker rules clear the breaker's
 * counts (not its health).
 *
 * Hot path: whether a backend is open is one relaxed atomic load; counting
 * an outcome takes the backend's own mutex (only for backends with rules);
 * a pool's choice takes the pool's own mutex for a loop over its members.
 * There is no lock shared by different backends.
 */
#ifndef PT_BREAKER_H
#define PT_BREAKER_H

#include "base/pt.h"
#include "conf/pt_genmodel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define PT_BREAKER_MAX_RULES 16         /* circuitBreaker.rules allows 16 */
#define PT_BREAKER_SLOTS 10             /* an interval is counted in 10 slots */
#define PT_BREAKER_MAX_MEMBERS 256      /* a pool's members (pool.services allows 256) */
#define PT_BREAKER_MAX_TRIP_MS 86400000 /* one day: a longer Retry-After is cut to it */

/* Rules are the generation's compiled struct pt_cbrule (conf/pt_genmodel.h):
   failures within `interval_ms` trip the breaker when they reach `count`,
   or when they are at least `percentage` % of the calls counted in the
   interval. */

struct pt_brk_window {
    int64_t epoch; /* absolute slot number of the newest slot */
    uint32_t total[PT_BREAKER_SLOTS], fail[PT_BREAKER_SLOTS];
};

struct pt_bestate {
    struct pt_bestate *next; /* the registry's chain */
    char *id, *key;
    int refs;      /* under the registry's lock */
    uint64_t born; /* creation order (the newest of an id is its metrics series) */
    uint64_t rules_sig;
    pthread_mutex_t mu; /* the windows and the pool's weights */
    struct pt_brk_window win[PT_BREAKER_MAX_RULES];
    _Atomic int64_t open_until; /* monotonic ms; 0: closed */
    _Atomic uint64_t trips;
    _Atomic bool down;    /* the health check's verdict */
    _Atomic bool checked; /* a health check ran for it */
    int hc_ok, hc_fail;   /* consecutive results (health thread only) */
    _Atomic uint64_t hc_failures;
    int nmembers;
    int64_t *cur; /* [nmembers]: smooth weighted round robin */
};

/* The registry (control thread at generation build and free; the metrics
   collector reads it). */
void pt_breaker_init(void);
struct pt_bestate *pt_breaker_state(const char *id, const char *key, uint64_t rules_sig, int nmembers);
void pt_breaker_state_ref(struct pt_bestate *s);
void pt_breaker_state_put(struct pt_bestate *s);
/* A signature of compiled rules (for pt_breaker_state). */
uint64_t pt_breaker_rules_sig(const struct pt_cbrule *rules, int n);

/* ms until the breaker closes (0: closed). */
int64_t pt_breaker_open_ms(struct pt_bestate *s, int64_t now);
/* Whether calls may go to the backend: closed and not marked down. */
bool pt_breaker_available(struct pt_bestate *s, int64_t now);

/*
 * Counts one call's outcome: `status` the backend's status (0: none), or
 * `reason` the error reason of a call that got no response (NULL
 * otherwise); `retry_after_ms` the backend's Retry-After (0: none).  true
 * when this outcome tripped the breaker.  Calls ending while it is open
 * are not counted.
 */
bool pt_breaker_record(struct pt_bestate *s, const struct pt_cbrule *rules, int nrules, int status,
                       const char *reason, int64_t retry_after_ms, int64_t now);
/* Whether an outcome counts as a failure for a rule. */
bool pt_breaker_is_failure(const struct pt_cbrule *r, int status, const char *reason);

/*
 * A pool's choice: among the members that are available, those of the best
 * (lowest) priority; within them smooth weighted round robin (each member
 * gets `weight` of every sum-of-weights calls, spread out).  The index, or
 * -1 when none is available, with *wait_ms the time until the first trip
 * ends (0 when members are only down by health checks).
 */
int pt_breaker_pick(struct pt_bestate *pool, const struct pt_bemember *m, int n, int64_t now,
                    int64_t *wait_ms);

/* The generation's backends get their states (at build) and let them go
   (at free).  Single: by id and url; Pool: by id and its member list. */
void pt_breaker_attach(struct pt_backdef *defs, int n);
void pt_breaker_detach(struct pt_backdef *defs, int n);

/*
 * A health check's result for a backend: `ok` or not, against the
 * thresholds (consecutive results).  +1 when it just came up, -1 when it
 * just went down, 0 otherwise.
 */
int pt_breaker_health(struct pt_bestate *s, bool ok, int healthy, int unhealthy);

/* A Retry-After value (delay-seconds or an HTTP date, against the wall
   clock `wall_s`) in ms, capped at PT_BREAKER_MAX_TRIP_MS; 0 when invalid
   or in the past. */
int64_t pt_breaker_retry_after(pt_str v, time_t wall_s);

#endif
