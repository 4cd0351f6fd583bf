/*
 * pt_store_analytics -- the analytics tables of the store.
 *
 * Two tables of their own next to the entities (schema version 2):
 *
 *   analytics_buckets   aggregates by (grain, start, api, operation, product,
 *                       subscription, user): calls by outcome, bandwidth,
 *                       cache hits and misses, total and backend times (µs:
 *                       sum, min, max, and how many calls had a backend time).
 *                       grain 0 is a minute, 1 an hour, 2 a day (UTC).
 *   analytics_requests  one row per request (the byRequest report), a ring
 *                       trimmed by count and age.
 *
 * Writes run in transactions of their own (not pt_store_begin's: they do not
 * change the entities, so the management API's change counter stays), and
 * only while no entity transaction is open.  Only the control thread calls
 * these functions.
 */
#ifndef PT_STORE_ANALYTICS_H
#define PT_STORE_ANALYTICS_H

#include "base/pt.h"
#include "conf/pt_store.h"

enum { PT_AN_MINUTE, PT_AN_HOUR, PT_AN_DAY };

/* What a bucket counts; times in microseconds.  svc_min/svc_max mean
   something only when svc_n > 0. */
struct pt_store_an_counts {
    int64_t success, blocked, failed, other;
    int64_t bandwidth, cache_hit, cache_miss;
    int64_t api_sum, api_min, api_max;
    int64_t svc_n, svc_sum, svc_min, svc_max;
};

struct pt_store_an_bucket {
    int grain;
    int64_t ts;                                  /* start, Unix seconds */
    const char *api, *op, *product, *sub, *user; /* "" when none */
    struct pt_store_an_counts c;
};

struct pt_store_an_request {
    int64_t ts_ms; /* when the request started, Unix ms */
    const char *request_id, *api, *op, *product, *sub, *user, *method, *url, *ip, *reason;
    int status;
    int backend_status; /* 0: no backend response */
    int64_t request_size, response_size;
    int cache;            /* 0 none, 1 hit, 2 miss */
    int64_t api_time;     /* µs */
    int64_t service_time; /* µs; < 0: no backend call */
};

/* A write transaction of the analytics tables; false when an entity
   transaction is open (try later) or SQLite refuses. */
bool pt_store_analytics_begin(struct pt_store *s);
bool pt_store_analytics_commit(struct pt_store *s);
void pt_store_analytics_rollback(struct pt_store *s);

/* Adds a bucket's counts to the stored bucket of the same key (created if
   needed); inside a transaction. */
bool pt_store_analytics_add_bucket(struct pt_store *s, const struct pt_store_an_bucket *b);
/* Appends a request record; inside a transaction. */
bool pt_store_analytics_add_request(struct pt_store *s, const struct pt_store_an_request *r);
/* Finalizes the statements the two functions above keep between calls (before
   the store is closed, and at the end of each flush). */
void pt_store_analytics_release(struct pt_store *s);

/* Rolls at most `limit` buckets of grain `from` that start before `before`
   (Unix s) into buckets of grain from + 1; the number moved, -1 on error.
   Inside a transaction. */
int pt_store_analytics_rollup(struct pt_store *s, int from, int64_t before, int limit);
/* Deletes at most `limit` buckets that start before `before` (Unix s); the
   number deleted, -1 on error.  Inside a transaction. */
int pt_store_analytics_expire(struct pt_store *s, int64_t before, int limit);
/* Deletes at most `limit` request records older than before_ms or beyond the
   newest max_count; the number deleted, -1 on error.  Inside a transaction. */
int pt_store_analytics_trim_requests(struct pt_store *s, int64_t before_ms, int64_t max_count, int limit);

/* ---- the batches taken from gateway nodes ---- */

/* What is remembered of one sender (a gateway's node) so that a batch it sends
   again after its answer was lost is not counted twice, even across a restart
   of the control plane: the highest sequence taken, a bitmap of the `nbits`
   sequences below it, when the last batch came (Unix ms). */
struct pt_store_an_sender {
    uint64_t high;
    int64_t last_ms;
    uint64_t *bits;
    size_t nwords;
};
/* Reads the record of `key` into r (r->bits of r->nwords words, filled; a
   stored bitmap of another size is cut or padded with zeros).  1 found, 0 not,
   -1 on error. */
int pt_store_analytics_sender_get(struct pt_store *s, const char *key, struct pt_store_an_sender *r);
/* Writes the record of `key`; inside a transaction (the batch's own, so the
   record and the counts it guards are written together or not at all). */
bool pt_store_analytics_sender_put(struct pt_store *s, const char *key, const struct pt_store_an_sender *r);
/* Deletes at most `limit` records whose last batch came before before_ms; the
   number deleted, -1 on error.  Inside a transaction. */
int pt_store_analytics_sender_expire(struct pt_store *s, int64_t before_ms, int limit);

/* ---- reports ---- */

/* What a report groups by. */
enum pt_store_an_by {
    PT_AN_BY_API,
    PT_AN_BY_OPERATION,
    PT_AN_BY_PRODUCT,
    PT_AN_BY_SUBSCRIPTION,
    PT_AN_BY_USER,
    PT_AN_BY_TIME
};

struct pt_store_an_query {
    enum pt_store_an_by by;
    int64_t from, to;                            /* Unix ms, both included */
    const char *api, *op, *product, *sub, *user; /* equality filters; NULL: any */
    const char *apis_json; /* a JSON array of the API ids allowed (a workspace's); NULL: any */
    int64_t interval;      /* byTime: seconds */
    int64_t max_rows;      /* stored rows a report may read; more: -2 */
};

/* One group of a report: its key (api, op, product, sub, user; "" unused)
   or, for byTime, the start of its interval (Unix s). */
struct pt_store_an_row {
    const char *api, *op, *product, *sub, *user;
    int64_t ts;
    struct pt_store_an_counts c;
};
typedef void (*pt_store_an_row_fn)(void *arg, const struct pt_store_an_row *row);

/* Calls fn for every group of the query's report; the number of groups, -1 on
   a SQLite error, -2 when more than q->max_rows stored rows match. */
int pt_store_analytics_report(struct pt_store *s, const struct pt_store_an_query *q, pt_store_an_row_fn fn,
                              void *arg);

typedef void (*pt_store_an_req_fn)(void *arg, const struct pt_store_an_request *r);
/* The request records of the query (its filters and range), newest first
   unless asc, from the skip-th, at most top; *count is how many match in all
   (counted up to q->max_rows).  false on a SQLite error. */
bool pt_store_analytics_requests(struct pt_store *s, const struct pt_store_an_query *q, bool asc, int64_t top,
                                 int64_t skip, pt_store_an_req_fn fn, void *arg, int64_t *count);

#endif
