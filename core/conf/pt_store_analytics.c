/*
 * pt_store_analytics -- the analytics tables of the store: buckets upserted
 * by key, request records appended, roll-up and expiry in bounded batches,
 * and the queries behind the reports.
 */
#include "conf/pt_store_analytics.h"

#include "base/pt_log.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

/* Statements kept across calls of one flush (by their SQL text's address). */
static struct {
    sqlite3 *db;
    const char *sql;
    sqlite3_stmt *st;
} cache[8];

static sqlite3_stmt *prep(struct pt_store *s, const char *sql)
{
    sqlite3 *db = pt_store_sqlite(s);
    for (size_t i = 0; i < PT_ARRAY_LEN(cache); i++)
        if (cache[i].sql == sql && cache[i].db == db) {
            sqlite3_reset(cache[i].st);
            sqlite3_clear_bindings(cache[i].st);
            return cache[i].st;
        }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        pt_warn("store: analytics: %s", sqlite3_errmsg(db));
        return NULL;
    }
    for (size_t i = 0; i < PT_ARRAY_LEN(cache); i++)
        if (!cache[i].sql) {
            cache[i].db = db;
            cache[i].sql = sql;
            cache[i].st = st;
            return st;
        }
    pt_store_analytics_release(s); /* full: start over */
    cache[0].db = db;
    cache[0].sql = sql;
    cache[0].st = st;
    return st;
}

void pt_store_analytics_release(struct pt_store *s)
{
    (void)s;
    for (size_t i = 0; i < PT_ARRAY_LEN(cache); i++) {
        sqlite3_finalize(cache[i].st);
        cache[i].st = NULL;
        cache[i].sql = NULL;
        cache[i].db = NULL;
    }
}

/* A one-off statement (queries): finalized by the caller. */
static sqlite3_stmt *prep_once(struct pt_store *s, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(pt_store_sqlite(s), sql, -1, &st, NULL) != SQLITE_OK) {
        pt_warn("store: analytics: %s", sqlite3_errmsg(pt_store_sqlite(s)));
        return NULL;
    }
    return st;
}

static bool step_done(struct pt_store *s, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        pt_warn("store: analytics: %s", sqlite3_errmsg(pt_store_sqlite(s)));
        sqlite3_reset(st);
        return false;
    }
    sqlite3_reset(st);
    return true;
}

static bool exec(struct pt_store *s, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(pt_store_sqlite(s), sql, NULL, NULL, &msg) != SQLITE_OK) {
        pt_warn("store: analytics: %s", msg ? msg : sqlite3_errmsg(pt_store_sqlite(s)));
        sqlite3_free(msg);
        return false;
    }
    return true;
}

bool pt_store_analytics_begin(struct pt_store *s)
{
    if (pt_store_in_transaction(s))
        return false;
    return exec(s, "BEGIN IMMEDIATE");
}

bool pt_store_analytics_commit(struct pt_store *s)
{
    if (exec(s, "COMMIT"))
        return true;
    exec(s, "ROLLBACK");
    return false;
}

void pt_store_analytics_rollback(struct pt_store *s)
{
    exec(s, "ROLLBACK");
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    sqlite3_bind_text(st, i, v ? v : "", -1, SQLITE_STATIC);
}

/* The columns of a bucket's counts, in the order the statements bind them. */
#define COUNT_COLS                                                                                           \
    "success, blocked, failed, other, bandwidth, cache_hit, cache_miss, api_sum, api_min, api_max, svc_n, "  \
    "svc_sum, svc_min, svc_max"

/* Every stored sum saturates at 2^60 (1152921504606846976): a bucket's
   upsert adds with min(a + b, 2^60) (SQLite makes an overflowing integer sum
   a REAL, which min() brings back), and the roll-ups and reports add with
   total() (a float: never the "integer overflow" error sum() raises past
   2^63; exact below 2^53) clamped to 2^60.  So no data, even data a node
   made up, can stop a report or a roll-up, and four clamped outcomes still
   add up in an int64. */

/* How two buckets' counts merge: sums add (saturating), minimums and
   maximums keep the extreme (a backend minimum or maximum of a bucket
   without backend calls is NULL and loses). */
/* clang-format off */
#define MERGE_COUNTS \
    " success = min(success + excluded.success, 1152921504606846976)," \
    " blocked = min(blocked + excluded.blocked, 1152921504606846976)," \
    " failed = min(failed + excluded.failed, 1152921504606846976)," \
    " other = min(other + excluded.other, 1152921504606846976)," \
    " bandwidth = min(bandwidth + excluded.bandwidth, 1152921504606846976)," \
    " cache_hit = min(cache_hit + excluded.cache_hit, 1152921504606846976)," \
    " cache_miss = min(cache_miss + excluded.cache_miss, 1152921504606846976)," \
    " api_sum = min(api_sum + excluded.api_sum, 1152921504606846976)," \
    " api_min = min(coalesce(api_min, excluded.api_min), coalesce(excluded.api_min, api_min))," \
    " api_max = max(coalesce(api_max, excluded.api_max), coalesce(excluded.api_max, api_max))," \
    " svc_n = min(svc_n + excluded.svc_n, 1152921504606846976)," \
    " svc_sum = min(svc_sum + excluded.svc_sum, 1152921504606846976)," \
    " svc_min = min(coalesce(svc_min, excluded.svc_min), coalesce(excluded.svc_min, svc_min))," \
    " svc_max = max(coalesce(svc_max, excluded.svc_max), coalesce(excluded.svc_max, svc_max))"

/* A group's counts, in COUNT_COLS' order. */
#define SUM_COUNTS \
    "min(total(success), 1152921504606846976), min(total(blocked), 1152921504606846976)," \
    " min(total(failed), 1152921504606846976), min(total(other), 1152921504606846976)," \
    " min(total(bandwidth), 1152921504606846976), min(total(cache_hit), 1152921504606846976)," \
    " min(total(cache_miss), 1152921504606846976), min(total(api_sum), 1152921504606846976)," \
    " min(api_min), max(api_max), min(total(svc_n), 1152921504606846976)," \
    " min(total(svc_sum), 1152921504606846976), min(svc_min), max(svc_max)"
/* clang-format on */

#define KEY_COLS "grain, ts, api, op, product, sub, user"

bool pt_store_analytics_add_bucket(struct pt_store *s, const struct pt_store_an_bucket *b)
{
    static const char sql[] =
        "INSERT INTO analytics_buckets (" KEY_COLS ", " COUNT_COLS ")"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,"
        " ?17, ?18, ?19, ?20, ?21)"
        " ON CONFLICT (" KEY_COLS ") DO UPDATE SET" MERGE_COUNTS;
    sqlite3_stmt *st = prep(s, sql);
    if (!st)
        return false;
    sqlite3_bind_int(st, 1, b->grain);
    sqlite3_bind_int64(st, 2, b->ts);
    bind_text(st, 3, b->api);
    bind_text(st, 4, b->op);
    bind_text(st, 5, b->product);
    bind_text(st, 6, b->sub);
    bind_text(st, 7, b->user);
    const struct pt_store_an_counts *c = &b->c;
    int64_t v[] = {c->success,    c->blocked, c->failed,  c->other,   c->bandwidth, c->cache_hit,
                   c->cache_miss, c->api_sum, c->api_min, c->api_max, c->svc_n,     c->svc_sum};
    for (int i = 0; i < (int)PT_ARRAY_LEN(v); i++)
        sqlite3_bind_int64(st, 8 + i, v[i]);
    if (c->svc_n) {
        sqlite3_bind_int64(st, 20, c->svc_min);
        sqlite3_bind_int64(st, 21, c->svc_max);
    }
    return step_done(s, st);
}

bool pt_store_analytics_add_request(struct pt_store *s, const struct pt_store_an_request *r)
{
    static const char sql[] =
        "INSERT INTO analytics_requests (ts, request_id, api, op, product, sub, user, method, url, ip, "
        "status,"
        " backend_status, request_size, response_size, cache, api_time, service_time, reason)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";
    sqlite3_stmt *st = prep(s, sql);
    if (!st)
        return false;
    sqlite3_bind_int64(st, 1, r->ts_ms);
    bind_text(st, 2, r->request_id);
    bind_text(st, 3, r->api);
    bind_text(st, 4, r->op);
    bind_text(st, 5, r->product);
    bind_text(st, 6, r->sub);
    bind_text(st, 7, r->user);
    bind_text(st, 8, r->method);
    bind_text(st, 9, r->url);
    bind_text(st, 10, r->ip);
    sqlite3_bind_int(st, 11, r->status);
    if (r->backend_status)
        sqlite3_bind_int(st, 12, r->backend_status);
    sqlite3_bind_int64(st, 13, r->request_size);
    sqlite3_bind_int64(st, 14, r->response_size);
    sqlite3_bind_int(st, 15, r->cache);
    sqlite3_bind_int64(st, 16, r->api_time);
    if (r->service_time >= 0)
        sqlite3_bind_int64(st, 17, r->service_time);
    bind_text(st, 18, r->reason);
    return step_done(s, st);
}

/* ------------------------------------------------------------- housekeeping */

int pt_store_analytics_rollup(struct pt_store *s, int from, int64_t before, int limit)
{
    if (from < PT_AN_MINUTE || from >= PT_AN_DAY)
        return 0;
        /* the same rows for both statements: the primary key's order, in one transaction */
#define PICK                                                                                                 \
    " rowid IN (SELECT rowid FROM analytics_buckets WHERE grain = ?1 AND ts < ?2 ORDER BY grain, ts LIMIT "  \
    "?3)"
    static const char ins[] = "INSERT INTO analytics_buckets (" KEY_COLS ", " COUNT_COLS ")"
                              " SELECT ?4, ts - ts % ?5 AS t, api, op, product, sub, user, " SUM_COUNTS
                              " FROM analytics_buckets WHERE" PICK " GROUP BY t, api, op, product, sub, user"
                              " ON CONFLICT (" KEY_COLS ") DO UPDATE SET" MERGE_COUNTS;
    static const char del[] = "DELETE FROM analytics_buckets WHERE" PICK;
#undef PICK
    sqlite3_stmt *a = prep_once(s, ins), *d = prep_once(s, del);
    int n = -1;
    if (a && d) {
        sqlite3_bind_int(a, 1, from);
        sqlite3_bind_int64(a, 2, before);
        sqlite3_bind_int(a, 3, limit);
        sqlite3_bind_int(a, 4, from + 1);
        sqlite3_bind_int64(a, 5, from == PT_AN_MINUTE ? 3600 : 86400);
        sqlite3_bind_int(d, 1, from);
        sqlite3_bind_int64(d, 2, before);
        sqlite3_bind_int(d, 3, limit);
        if (step_done(s, a) && step_done(s, d))
            n = sqlite3_changes(pt_store_sqlite(s));
    }
    sqlite3_finalize(a);
    sqlite3_finalize(d);
    return n;
}

int pt_store_analytics_expire(struct pt_store *s, int64_t before, int limit)
{
    sqlite3_stmt *st = prep_once(s, "DELETE FROM analytics_buckets WHERE rowid IN (SELECT rowid FROM"
                                    " analytics_buckets WHERE grain = ?1 AND ts < ?2 LIMIT ?3)");
    if (!st)
        return -1;
    int n = 0;
    for (int g = PT_AN_MINUTE; g <= PT_AN_DAY && n >= 0; g++) {
        sqlite3_bind_int(st, 1, g);
        sqlite3_bind_int64(st, 2, before);
        sqlite3_bind_int(st, 3, limit);
        if (step_done(s, st))
            n += sqlite3_changes(pt_store_sqlite(s));
        else
            n = -1;
    }
    sqlite3_finalize(st);
    return n;
}

int pt_store_analytics_sender_get(struct pt_store *s, const char *key, struct pt_store_an_sender *r)
{
    sqlite3_stmt *st = prep_once(s, "SELECT high, last, bits FROM analytics_senders WHERE key = ?1");
    if (!st)
        return -1;
    bind_text(st, 1, key);
    int rc = sqlite3_step(st), found = 0;
    if (rc == SQLITE_ROW) {
        found = 1;
        r->high = (uint64_t)sqlite3_column_int64(st, 0);
        r->last_ms = sqlite3_column_int64(st, 1);
        const unsigned char *b = sqlite3_column_blob(st, 2);
        size_t n = (size_t)sqlite3_column_bytes(st, 2) / 8;
        for (size_t i = 0; i < r->nwords; i++) { /* little-endian words, whatever the host */
            uint64_t w = 0;
            for (int k = 0; i < n && k < 8; k++)
                w |= (uint64_t)b[i * 8 + (size_t)k] << (8 * k);
            r->bits[i] = w;
        }
    } else if (rc != SQLITE_DONE) {
        pt_warn("store: analytics: %s", sqlite3_errmsg(pt_store_sqlite(s)));
        found = -1;
    }
    sqlite3_finalize(st);
    return found;
}

bool pt_store_analytics_sender_put(struct pt_store *s, const char *key, const struct pt_store_an_sender *r)
{
    unsigned char *b = malloc(r->nwords * 8 + 1);
    sqlite3_stmt *st =
        b ? prep(s, "INSERT INTO analytics_senders (key, high, last, bits) VALUES (?1, ?2, ?3, ?4)"
                    " ON CONFLICT (key) DO UPDATE SET high = excluded.high,"
                    " last = excluded.last, bits = excluded.bits")
          : NULL;
    if (!st) {
        free(b);
        return false;
    }
    for (size_t i = 0; i < r->nwords; i++)
        for (int k = 0; k < 8; k++)
            b[i * 8 + (size_t)k] = (unsigned char)(r->bits[i] >> (8 * k));
    bind_text(st, 1, key);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)r->high);
    sqlite3_bind_int64(st, 3, r->last_ms);
    sqlite3_bind_blob(st, 4, b, (int)(r->nwords * 8), SQLITE_STATIC);
    bool ok = step_done(s, st);
    sqlite3_clear_bindings(st); /* the blob goes now */
    free(b);
    return ok;
}

int pt_store_analytics_sender_expire(struct pt_store *s, int64_t before_ms, int limit)
{
    sqlite3_stmt *st = prep_once(s, "DELETE FROM analytics_senders WHERE key IN (SELECT key FROM"
                                    " analytics_senders WHERE last < ?1 LIMIT ?2)");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, before_ms);
    sqlite3_bind_int(st, 2, limit);
    int n = step_done(s, st) ? sqlite3_changes(pt_store_sqlite(s)) : -1;
    sqlite3_finalize(st);
    return n;
}

int pt_store_analytics_trim_requests(struct pt_store *s, int64_t before_ms, int64_t max_count, int limit)
{
    sqlite3_stmt *st = prep_once(
        s, "DELETE FROM analytics_requests WHERE seq IN (SELECT seq FROM analytics_requests WHERE ts < ?1 OR"
           " seq <= (SELECT coalesce(max(seq), 0) FROM analytics_requests) - ?2 ORDER BY seq LIMIT ?3)");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, before_ms);
    sqlite3_bind_int64(st, 2, max_count);
    sqlite3_bind_int(st, 3, limit);
    int n = step_done(s, st) ? sqlite3_changes(pt_store_sqlite(s)) : -1;
    sqlite3_finalize(st);
    return n;
}

/* ------------------------------------------------------------------ reports */

/* The WHERE clause of a query (bound from ?1: from, to, api, op, product,
   sub, user, apis_json); its range is in seconds for buckets, ms for requests. */
static void where(char *w, size_t n, const struct pt_store_an_query *q)
{
    snprintf(w, n, "ts >= ?1 AND ts <= ?2%s%s%s%s%s%s", q->api ? " AND api = ?3" : "",
             q->op ? " AND op = ?4" : "", q->product ? " AND product = ?5" : "",
             q->sub ? " AND sub = ?6" : "", q->user ? " AND user = ?7" : "",
             q->apis_json ? " AND api IN (SELECT value FROM json_each(?8))" : "");
}

static void bind_where(sqlite3_stmt *st, const struct pt_store_an_query *q, int64_t from, int64_t to)
{
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, to);
    const char *v[] = {q->api, q->op, q->product, q->sub, q->user, q->apis_json};
    for (int i = 0; i < 6; i++)
        if (v[i])
            bind_text(st, 3 + i, v[i]);
}

/* Does the query match more than max_rows stored rows of `table`? -1 on error. */
static int too_many(struct pt_store *s, const char *table, const struct pt_store_an_query *q, int64_t from,
                    int64_t to)
{
    char w[512], sql[1024];
    where(w, sizeof(w), q);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM (SELECT 1 FROM %s WHERE %s LIMIT ?9)", table, w);
    sqlite3_stmt *st = prep_once(s, sql);
    if (!st)
        return -1;
    bind_where(st, q, from, to);
    sqlite3_bind_int64(st, 9, q->max_rows + 1);
    int r = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) > q->max_rows : -1;
    sqlite3_finalize(st);
    return r;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const char *t = (const char *)sqlite3_column_text(st, i);
    return t ? t : "";
}

int pt_store_analytics_report(struct pt_store *s, const struct pt_store_an_query *q, pt_store_an_row_fn fn,
                              void *arg)
{
    /* buckets are kept by their start: one that starts in the range counts */
    int64_t from = q->from / 1000, to = q->to / 1000;
    int t = too_many(s, "analytics_buckets", q, from, to);
    if (t)
        return t < 0 ? -1 : -2;
    static const char *const group[] = {
        [PT_AN_BY_API] = "api",          [PT_AN_BY_OPERATION] = "api, op", [PT_AN_BY_PRODUCT] = "product",
        [PT_AN_BY_SUBSCRIPTION] = "sub", [PT_AN_BY_USER] = "user",         [PT_AN_BY_TIME] = "k",
    };
    static const char *const nonempty[] = {
        [PT_AN_BY_API] = " AND api <> ''",         [PT_AN_BY_OPERATION] = " AND op <> ''",
        [PT_AN_BY_PRODUCT] = " AND product <> ''", [PT_AN_BY_SUBSCRIPTION] = " AND sub <> ''",
        [PT_AN_BY_USER] = " AND user <> ''",       [PT_AN_BY_TIME] = "",
    };
    char w[512], sql[2048];
    where(w, sizeof(w), q);
    snprintf(sql, sizeof(sql),
             "SELECT max(api), max(op), max(product), max(sub), max(user), ts - ts %% ?10 AS k, %s"
             " FROM analytics_buckets WHERE %s%s GROUP BY %s ORDER BY %s",
             SUM_COUNTS, w, nonempty[q->by], group[q->by], group[q->by]);
    sqlite3_stmt *st = prep_once(s, sql);
    if (!st)
        return -1;
    bind_where(st, q, from, to);
    sqlite3_bind_int64(st, 10, q->by == PT_AN_BY_TIME && q->interval > 0 ? q->interval : 60);
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct pt_store_an_row r = {col_text(st, 0), col_text(st, 1), col_text(st, 2),
                                    col_text(st, 3), col_text(st, 4), sqlite3_column_int64(st, 5)};
        int64_t *v[] = {&r.c.success,   &r.c.blocked,    &r.c.failed,  &r.c.other,   &r.c.bandwidth,
                        &r.c.cache_hit, &r.c.cache_miss, &r.c.api_sum, &r.c.api_min, &r.c.api_max,
                        &r.c.svc_n,     &r.c.svc_sum,    &r.c.svc_min, &r.c.svc_max};
        for (int i = 0; i < (int)PT_ARRAY_LEN(v); i++)
            *v[i] = sqlite3_column_int64(st, 6 + i);
        fn(arg, &r);
        n++;
    }
    if (rc != SQLITE_DONE)
        n = -1;
    sqlite3_finalize(st);
    return n;
}

bool pt_store_analytics_requests(struct pt_store *s, const struct pt_store_an_query *q, bool asc, int64_t top,
                                 int64_t skip, pt_store_an_req_fn fn, void *arg, int64_t *count)
{
    char w[512], sql[1024];
    where(w, sizeof(w), q);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM (SELECT 1 FROM analytics_requests WHERE %s LIMIT ?9)",
             w);
    sqlite3_stmt *st = prep_once(s, sql);
    if (!st)
        return false;
    bind_where(st, q, q->from, q->to);
    sqlite3_bind_int64(st, 9, q->max_rows);
    *count = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    snprintf(sql, sizeof(sql),
             "SELECT ts, request_id, api, op, product, sub, user, method, url, ip, status, backend_status,"
             " request_size, response_size, cache, api_time, service_time, reason FROM analytics_requests"
             " WHERE %s ORDER BY ts %s, seq %s LIMIT ?9 OFFSET ?10",
             w, asc ? "ASC" : "DESC", asc ? "ASC" : "DESC");
    st = prep_once(s, sql);
    if (!st)
        return false;
    bind_where(st, q, q->from, q->to);
    sqlite3_bind_int64(st, 9, top);
    sqlite3_bind_int64(st, 10, skip);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct pt_store_an_request r = {
            .ts_ms = sqlite3_column_int64(st, 0),
            .request_id = col_text(st, 1),
            .api = col_text(st, 2),
            .op = col_text(st, 3),
            .product = col_text(st, 4),
            .sub = col_text(st, 5),
            .user = col_text(st, 6),
            .method = col_text(st, 7),
            .url = col_text(st, 8),
            .ip = col_text(st, 9),
            .status = sqlite3_column_int(st, 10),
            .backend_status = sqlite3_column_type(st, 11) == SQLITE_NULL ? 0 : sqlite3_column_int(st, 11),
            .request_size = sqlite3_column_int64(st, 12),
            .response_size = sqlite3_column_int64(st, 13),
            .cache = sqlite3_column_int(st, 14),
            .api_time = sqlite3_column_int64(st, 15),
            .service_time = sqlite3_column_type(st, 16) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 16),
            .reason = col_text(st, 17),
        };
        fn(arg, &r);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE;
}
