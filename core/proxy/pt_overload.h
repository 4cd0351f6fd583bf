/*
 * pt_overload -- the node's overload protection, shared by its workers.
 *
 * Two limits hold for the node as a whole:
 *   - limits.connections: client connections open on all workers together.
 *     A worker that finds the node at the cap stops accepting (connections
 *     wait in the kernel's listen queue) and starts again once the count is
 *     below it: on one of its own connections closing, or at its next tick
 *     when another worker's closed.
 *   - limits.memory: the bytes held for client connections and their
 *     requests (what the connection layer keeps in its buffers and request
 *     arenas, see pt_overload_tick).  Each worker adds up its own at every
 *     tick and publishes it; past the mark the node is overloaded and new
 *     requests are refused with 503 until the total falls below 90 % of it
 *     and a second has passed.  With the mark off (0) there is no walk.
 *
 * The request path pays one relaxed load of pt_overload_active; accepting
 * a connection pays one atomic add.  Entering and leaving either state is
 * logged once, by whichever worker saw it first.
 */
#ifndef PT_OVERLOAD_H
#define PT_OVERLOAD_H

#include "base/pt.h"

#include <stdatomic.h>

struct pt_worker;
struct pt_limits_cf;

/* Past the memory mark: new requests get 503.  Read per request (relaxed). */
extern atomic_bool pt_overload_active;

/* The seconds a refused client is asked to wait (Retry-After). */
#define PT_OVERLOAD_RETRY_AFTER "1"
/* The least time the node stays overloaded once past the mark (ms). */
#define PT_OVERLOAD_HOLD_MS 1000

/* Sets the shared state up for n workers and adds its figures to /metrics
   (control thread, before the workers start; once). */
void pt_overload_init(int nworkers);

/* The limits of a configuration published to the workers (control thread,
   at start and at each reload): the mark every tick compares against, the
   figures on /metrics; a non-zero mark below what one request may hold is
   warned about. */
void pt_overload_limits(const struct pt_limits_cf *lim);

/* About the most one request may hold (3 x bufferSize + requestMemory). */
uint64_t pt_overload_one_request(const struct pt_limits_cf *lim);

/* A worker's connections changed by delta (+1 accepted, -1 closed); returns
   the node's count after it. */
int64_t pt_overload_conns_add(int delta);

/* Whether the node is at the connection cap `cap` (0: none).  `pausing`:
   the caller stops accepting because of it (counted, and the first pause of
   an episode logged). */
bool pt_overload_conns_capped(int64_t cap, bool pausing);

/* A worker's tick: publishes the bytes it holds and moves the node in or out
   of overload against the mark of its configuration. */
void pt_overload_tick(struct pt_worker *w);

/* A request refused because of overload (counted on /metrics). */
void pt_overload_refused(void);

#endif
