/*
 * test_shipment -- gateway nodes' analytics on their way to the control
 * plane: buckets kept and merged on the node, taken as a versioned JSON
 * batch, put back whole after a failed delivery (same id, taken first),
 * the bounds (queue, batch, put-backs: the oldest dropped and counted), and
 * the control plane's ingest into a real store -- once per batch id, all of
 * a batch or nothing, hostile batches refused with a message naming what.
 */
#include "conf/pt_store.h"
#include "conf/pt_store_analytics.h"
#include "proxy/pt_analytics.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "store_helpers.h"

static int64_t minute_now(void)
{
    return (int64_t)time(NULL) / 60 * 60;
}

static void keep(int64_t ts, const char *api, const char *op, int64_t success, int64_t failed, int64_t api_us)
{
    struct pt_store_an_bucket b = {PT_AN_MINUTE, ts, api, op, "", "", ""};
    b.c.success = success;
    b.c.failed = failed;
    b.c.bandwidth = 100 * (success + failed);
    b.c.api_sum = api_us * (success + failed);
    b.c.api_min = b.c.api_max = api_us;
    pt_analytics_shipment_keep(&b);
}

/* An entity in the store (what the control plane's management API writes). */
static void entity(struct pt_store *st, const char *kind, const char *parent, const char *id)
{
    json_t *b = json_object();
    assert_true(pt_store_put(st, kind, parent, id, "", b, "api", NULL));
    json_decref(b);
}

/* API `api` with operation `op` (none: NULL) assigned to gateway `gw`. */
static void serve(struct pt_store *st, const char *gw, const char *api, const char *op)
{
    entity(st, "api", "", api);
    if (op)
        entity(st, "operation", api, op);
    assert_true(pt_store_link(st, "gateway-api", gw, api, "api"));
}

struct calls {
    int64_t by_api[4]; /* echo, other, "", anything else */
    int rows;
};

static void count_row(void *arg, const struct pt_store_an_row *r)
{
    struct calls *c = arg;
    int64_t n = r->c.success + r->c.blocked + r->c.failed + r->c.other;
    int i = !strcmp(r->api, "echo") ? 0 : !strcmp(r->api, "other") ? 1 : !*r->api ? 2 : 3;
    c->by_api[i] += n;
    c->rows++;
}

static struct calls report(struct pt_store *st)
{
    struct calls c = {{0}, 0};
    struct pt_store_an_query q = {.by = PT_AN_BY_API, .from = 0, .to = INT64_MAX / 2, .max_rows = 1000000};
    assert_true(pt_store_analytics_report(st, &q, count_row, &c) >= 0);
    return c;
}

static void test_round_trip(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = open_store(dir, "shipment");
    serve(st, "gw1", "echo", "get");
    serve(st, "gw1", "other", NULL);
    assert_true(pt_store_link(st, "gateway-api", "gw2", "echo", "api"));
    assert_true(pt_store_link(st, "gateway-api", "gw2", "other", "api"));
    pt_analytics_shipping(true);
    assert_null(pt_analytics_shipment_take()); /* nothing kept yet */
    int64_t t = minute_now();
    keep(t, "echo", "get", 3, 1, 500);
    keep(t, "echo", "get", 2, 0, 900);     /* same key: merged */
    keep(t - 60, "echo", "get", 1, 0, 50); /* another minute */
    keep(t, "other", "", 5, 0, 10);
    json_t *b = pt_analytics_shipment_take();
    assert_non_null(b);
    assert_int_equal(json_integer_value(json_object_get(b, "version")), PT_ANALYTICS_SHIPMENT_VERSION);
    assert_non_null(json_string_value(json_object_get(b, "id")));
    assert_int_equal(json_integer_value(json_object_get(b, "dropped")), 0);
    json_t *bs = json_object_get(b, "buckets");
    assert_int_equal(json_array_size(bs), 3);
    json_t *first = json_array_get(bs, 0); /* in the order they came */
    assert_int_equal(json_integer_value(json_object_get(first, "start")), t);
    assert_string_equal(json_string_value(json_object_get(first, "api")), "echo");
    assert_int_equal(json_integer_value(json_object_get(first, "success")), 5);
    assert_int_equal(json_integer_value(json_object_get(first, "failed")), 1);
    assert_int_equal(json_integer_value(json_object_get(first, "timeMin")), 500);
    assert_int_equal(json_integer_value(json_object_get(first, "timeMax")), 900);
    assert_int_equal(json_integer_value(json_object_get(first, "timeSum")), 4 * 500 + 2 * 900);
    assert_null(json_object_get(first, "product")); /* "" is left out */
    assert_null(json_object_get(json_array_get(bs, 2), "operation"));
    assert_null(pt_analytics_shipment_take()); /* taken: gone */

    /* through text, as it travels */
    char *text = json_dumps(b, JSON_COMPACT);
    json_t *again = json_loads(text, 0, NULL);
    free(text);
    char err[256] = "";
    assert_true(pt_analytics_shipment_ingest(st, again, "gw1", err, sizeof(err)));
    struct calls c = report(st);
    assert_int_equal(c.by_api[0], 7);
    assert_int_equal(c.by_api[1], 5);
    /* the same batch again (a lost answer, resent): counted once */
    assert_true(pt_analytics_shipment_ingest(st, again, "gw1", err, sizeof(err)));
    c = report(st);
    assert_int_equal(c.by_api[0], 7);
    /* the same id from another gateway is another batch */
    assert_true(pt_analytics_shipment_ingest(st, again, "gw2", err, sizeof(err)));
    assert_int_equal(report(st).by_api[0], 14);
    json_decref(again);
    json_decref(b);
    pt_analytics_shipping(false);
    close_store(st, dir);
}

static void test_putback(void **state)
{
    (void)state;
    pt_analytics_shipping(true);
    int64_t t = minute_now();
    keep(t, "echo", "a", 1, 0, 1);
    json_t *b1 = pt_analytics_shipment_take();
    const char *id1 = json_string_value(json_object_get(b1, "id"));
    keep(t, "echo", "a", 1, 0, 1); /* kept after the take: the next batch */
    json_t *b2 = pt_analytics_shipment_take();
    assert_string_not_equal(id1, json_string_value(json_object_get(b2, "id")));
    json_incref(b1);
    pt_analytics_shipment_putback(b1);
    json_t *again = pt_analytics_shipment_take();
    assert_ptr_equal(again, b1); /* whole, same id */
    json_decref(again);
    json_decref(b1);
    json_decref(b2);
    /* at most 16 put back: the 17th pushes the oldest out, its calls counted */
    uint64_t before = pt_analytics_shipment_dropped();
    json_t *kept[17];
    for (int i = 0; i < 17; i++) {
        keep(t, "echo", "a", i + 1, 0, 1);
        kept[i] = pt_analytics_shipment_take();
        assert_non_null(kept[i]);
    }
    for (int i = 0; i < 17; i++)
        pt_analytics_shipment_putback(kept[i]);
    assert_int_equal(pt_analytics_shipment_dropped() - before, 1); /* the first: 1 call */
    json_t *next = pt_analytics_shipment_take();
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(json_object_get(next, "buckets"), 0), "success")),
        2);
    json_decref(next);
    for (int i = 0; i < 15; i++) { /* the other put-back batches, in order */
        next = pt_analytics_shipment_take();
        json_t *nb = json_array_get(json_object_get(next, "buckets"), 0);
        assert_int_equal(json_integer_value(json_object_get(nb, "success")), i + 3);
        json_decref(next);
    }
    /* the next fresh batch says what was dropped */
    keep(t, "echo", "a", 1, 0, 1);
    json_t *b = pt_analytics_shipment_take();
    assert_int_equal(json_integer_value(json_object_get(b, "dropped")), 1);
    json_decref(b);
    /* a batch refused every time does not hold fresh ones back: they alternate */
    keep(t, "echo", "p", 1, 0, 1);
    json_t *poisoned = pt_analytics_shipment_take();
    for (int round = 0; round < 3; round++) {
        keep(t, "echo", "fresh", 1, 0, 1);
        pt_analytics_shipment_putback(poisoned);
        poisoned = pt_analytics_shipment_take();
        assert_string_equal(json_string_value(json_object_get(
                                json_array_get(json_object_get(poisoned, "buckets"), 0), "operation")),
                            "p");
        json_t *fresh = pt_analytics_shipment_take();
        assert_non_null(fresh);
        assert_string_equal(json_string_value(json_object_get(
                                json_array_get(json_object_get(fresh, "buckets"), 0), "operation")),
                            "fresh");
        json_decref(fresh);
    }
    json_decref(poisoned);
    pt_analytics_shipping(false);
    assert_null(pt_analytics_shipment_take());
    keep(t, "echo", "a", 1, 0, 1); /* off: nothing kept */
    assert_null(pt_analytics_shipment_take());
}

static void test_bounds(void **state)
{
    (void)state;
    pt_analytics_shipping(true);
    uint64_t before = pt_analytics_shipment_dropped();
    int64_t t = minute_now() - 3600;
    char op[32];
    for (int i = 0; i < 20010; i++) { /* 10 more than the queue holds */
        snprintf(op, sizeof(op), "op%d", i);
        keep(t, "echo", op, 2, 0, 1);
    }
    assert_int_equal(pt_analytics_shipment_dropped() - before, 20); /* the 10 oldest, 2 calls each */
    int batches = 0;
    size_t total = 0;
    json_t *b;
    while ((b = pt_analytics_shipment_take()) && batches < 20) {
        json_t *bs = json_object_get(b, "buckets");
        assert_true(json_array_size(bs) <= 2000);
        if (!batches) {
            assert_int_equal(json_integer_value(json_object_get(b, "dropped")), 20);
            /* the oldest left is the 11th kept */
            assert_string_equal(json_string_value(json_object_get(json_array_get(bs, 0), "operation")),
                                "op10");
            char err[256];
            assert_true(
                pt_analytics_shipment_ingest(NULL, b, "gw", err, sizeof(err))); /* a full batch is valid */
        }
        total += json_array_size(bs);
        batches++;
        json_decref(b);
    }
    assert_null(b);
    assert_int_equal(total, 20000);
    assert_int_equal(batches, 10);
    pt_analytics_shipping(false);
}

static void test_hostile_batches(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = open_store(dir, "shipment-bad");
    serve(st, "gw", "echo", NULL);
    char now_s[32], future[32];
    snprintf(now_s, sizeof(now_s), "%lld", (long long)minute_now());
    snprintf(future, sizeof(future), "%lld", (long long)minute_now() + 420);
    static const char *const cases[][2] = {
        {"[]", "must be an object"},
        {"{\"version\":2,\"id\":\"a-1\",\"buckets\":[]}", "version must be 1"},
        {"{\"version\":\"1\",\"id\":\"a-1\",\"buckets\":[]}", "version must be 1"},
        {"{\"id\":\"a-1\",\"buckets\":[]}", "version must be 1"},
        {"{\"version\":1,\"buckets\":[]}", "id must be"},
        {"{\"version\":1,\"id\":\"\",\"buckets\":[]}", "id must be"},
        {"{\"version\":1,\"id\":\"a b\",\"buckets\":[]}", "id must be"},
        {"{\"version\":1,\"id\":\"a\\u0000b\",\"buckets\":[]}", "id must be"},
        {"{\"version\":1,\"id\":\"a-1\",\"buckets\":{}}", "buckets must be an array"},
        {"{\"version\":1,\"id\":\"a-1\",\"buckets\":[],\"extra\":1}", "unknown key 'extra'"},
        {"{\"version\":1,\"id\":\"a-1\",\"dropped\":-1,\"buckets\":[]}", "dropped must be"},
        {"{\"version\":1,\"id\":\"a-1\",\"buckets\":[1]}", "buckets[0]: must be an object"},
        {"{\"version\":1,\"id\":\"a-1\",\"buckets\":[{\"success\":1}]}", "buckets[0].start: required"},
        {"{\"version\":1,\"id\":\"a-1\",\"buckets\":[{\"start\":61,\"success\":1}]}", "start of a minute"},
        {"{\"version\":1,\"id\":\"a-1\",\"buckets\":[{\"start\":-60,\"success\":1}]}", "start of a minute"},
        {"{\"version\":1,\"id\":\"a-1\",\"buckets\":[{\"start\":60.0,\"success\":1}]}", "start: required"},
        {"{\"version\":1,\"id\":\"a-1\",\"buckets\":[{\"start\":60,\"success\":1,\"api\":7}]}",
         "buckets[0].api"},
        {"{\"version\":1,\"id\":\"a-1\",\"buckets\":[{\"start\":60,\"success\":1,\"user\":\"a\\u0000b\"}]}",
         "buckets[0].user"},
        {"{\"version\":1,\"id\":\"a-1\",\"buckets\":[{\"start\":60,\"success\":-1}]}", "buckets[0].success"},
        {"{\"version\":1,\"id\":\"a-1\",\"buckets\":[{\"start\":60,\"success\":9007199254740993}]}",
         "buckets[0].success"},
        {"{\"version\":1,\"id\":\"a-1\",\"buckets\":[{\"start\":60,\"success\":1.5}]}", "buckets[0].success"},
        {"{\"version\":1,\"id\":\"a-1\",\"buckets\":[{\"start\":60}]}", "must be 1 to 1000000000"},
        {"{\"version\":1,\"id\":\"a-1\",\"buckets\":[{\"start\":60,\"success\":1,\"cacheHit\":2}]}",
         "more cache lookups"},
        {"{\"version\":1,\"id\":\"a-1\",\"buckets\":[{\"start\":60,\"success\":1,\"timeMin\":5,\"timeMax\":3,"
         "\"timeSum\":9}]}",
         "timeMin <= timeMax"},
        {"{\"version\":1,\"id\":\"a-1\",\"buckets\":[{\"start\":60,\"success\":1,\"backendSum\":5}]}",
         "backendCount"},
        {"{\"version\":1,\"id\":\"a-1\",\"buckets\":[{\"start\":60,\"success\":1,\"colour\":\"red\"}]}",
         "unknown key 'colour'"},
    };
    char err[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* "start":60, stands for the current minute (a minute of 1970 is refused by itself) */
        char textc[1024];
        const char *at = strstr(cases[i][0], "\"start\":60");
        if (at && (at[10] == ',' || at[10] == '}'))
            snprintf(textc, sizeof(textc), "%.*s\"start\":%s%s", (int)(at - cases[i][0]), cases[i][0], now_s,
                     at + 10);
        else
            snprintf(textc, sizeof(textc), "%s", cases[i][0]);
        json_error_t je;
        json_t *j = json_loads(textc, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        assert_non_null(j);
        err[0] = '\0';
        bool ok = pt_analytics_shipment_ingest(st, j, "gw", err, sizeof(err));
        if (ok || !strstr(err, cases[i][1]))
            fail_msg("case %zu (%s): %s", i, textc, ok ? "accepted" : err);
        json_decref(j);
    }
    /* 5 minutes ahead is the limit, and analytics.retention back (90 days: not 1970); a string over 256
       bytes; more than 5000 buckets */
    char text[1024];
    snprintf(text, sizeof(text), "{\"version\":1,\"id\":\"f-1\",\"buckets\":[{\"start\":%s,\"success\":1}]}",
             future);
    json_t *j = json_loads(text, 0, NULL);
    assert_false(pt_analytics_shipment_ingest(st, j, "gw", err, sizeof(err)));
    assert_non_null(strstr(err, "5 minutes ahead"));
    json_decref(j);
    static const int64_t starts[] = {0, 60, -91 * 86400};
    for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
        int64_t t0 = starts[i] < 0 ? minute_now() + starts[i] : starts[i];
        j = json_pack("{s:i, s:s, s:[{s:I, s:i}]}", "version", 1, "id", "old-1", "buckets", "start",
                      (json_int_t)t0, "success", 1);
        assert_false(pt_analytics_shipment_ingest(st, j, "gw", err, sizeof(err)));
        assert_non_null(strstr(err, "buckets[0].start: must be the start of a minute"));
        json_decref(j);
    }
    j = json_pack("{s:i, s:s, s:[{s:I, s:i}, {s:I, s:i}]}", "version", 1, "id", "edges-1", "buckets", "start",
                  (json_int_t)(minute_now() - 89 * 86400), "success", 1, "start",
                  (json_int_t)(minute_now() + 240), "success", 1);
    assert_true(pt_analytics_shipment_ingest(NULL, j, "gw", err, sizeof(err)));
    json_decref(j);
    char longname[300];
    memset(longname, 'x', 257);
    longname[257] = '\0';
    j = json_pack("{s:i, s:s, s:[{s:I, s:i, s:s}]}", "version", 1, "id", "l-1", "buckets", "start",
                  (json_int_t)minute_now(), "success", 1, "api", longname);
    assert_false(pt_analytics_shipment_ingest(st, j, "gw", err, sizeof(err)));
    assert_non_null(strstr(err, "at most 256 bytes"));
    json_decref(j);
    j = json_pack("{s:i, s:s, s:[]}", "version", 1, "id", "big-1", "buckets");
    for (int i = 0; i < 5001; i++)
        json_array_append_new(json_object_get(j, "buckets"),
                              json_pack("{s:I, s:i}", "start", (json_int_t)minute_now(), "success", 1));
    assert_false(pt_analytics_shipment_ingest(st, j, "gw", err, sizeof(err)));
    assert_non_null(strstr(err, "at most 5000"));
    json_decref(j);
    /* all or nothing: a good bucket before a bad one is not written */
    snprintf(text, sizeof(text),
             "{\"version\":1,\"id\":\"half-1\",\"buckets\":[{\"start\":%s,\"api\":\"echo\",\"success\":4},"
             "{\"start\":%s,\"api\":\"echo\",\"success\":-4}]}",
             now_s, now_s);
    j = json_loads(text, 0, NULL);
    assert_false(pt_analytics_shipment_ingest(st, j, "gw", err, sizeof(err)));
    assert_non_null(strstr(err, "buckets[1].success"));
    json_decref(j);
    assert_int_equal(report(st).rows, 0); /* nothing of any refused batch reached the store */
    /* and a good one does (the keys left out are "") */
    snprintf(text, sizeof(text),
             "{\"version\":1,\"id\":\"ok-1\",\"buckets\":[{\"start\":%s,\"api\":\"echo\",\"success\":4,"
             "\"timeSum\":8,"
             "\"timeMin\":1,\"timeMax\":3}]}",
             now_s);
    j = json_loads(text, 0, NULL);
    assert_true(pt_analytics_shipment_ingest(st, j, "gw", err, sizeof(err)));
    json_decref(j);
    struct calls c = report(st);
    assert_int_equal(c.by_api[0], 4);
    assert_int_equal(c.rows, 1);
    close_store(st, dir);
}

/* A batch of `n` buckets made by fn(i) (a new reference each). */
static json_t *batch_of(const char *id, int n, json_t *(*fn)(int i))
{
    json_t *j = json_pack("{s:i, s:s, s:[]}", "version", 1, "id", id, "buckets");
    for (int i = 0; i < n; i++)
        json_array_append_new(json_object_get(j, "buckets"), fn(i));
    return j;
}

static json_t *overflow_bucket(int i) /* the review's attack: 2^53 calls each, a user each */
{
    char user[16];
    snprintf(user, sizeof(user), "u%d", i);
    return json_pack("{s:I, s:s, s:s, s:I}", "start", (json_int_t)minute_now() - 60, "api", "echo", "user",
                     user, "success", (json_int_t)1 << 53);
}

static json_t *full_bucket(int i) /* the most one bucket may count, an operation each */
{
    char op[16];
    snprintf(op, sizeof(op), "op%d", i);
    return json_pack("{s:I, s:s, s:s, s:I}", "start", (json_int_t)minute_now() - 60, "api", "echo",
                     "operation", op, "success", (json_int_t)1000000000);
}

static void refused_for(struct pt_store *st, const char *gw, json_t *j, const char *why)
{
    char err[512] = "";
    bool ok = pt_analytics_shipment_ingest(st, j, gw, err, sizeof(err));
    if (ok || !strstr(err, why))
        fail_msg("expected '%s', got %s", why, ok ? "accepted" : err);
    json_decref(j);
}

static void refused(struct pt_store *st, json_t *j, const char *why)
{
    refused_for(st, "gw", j, why);
}

static void test_figures_are_bounded(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = open_store(dir, "shipment-bounds");
    /* one heartbeat of huge counts: refused, nothing written */
    refused(st, batch_of("atk-1", 1100, overflow_bucket), "must be 1 to 1000000000");
    assert_int_equal(report(st).rows, 0);
    int64_t t = minute_now() - 60;
    char text[1024];
    static const struct {
        const char *fields, *why;
    } cases[] = {
        {"\"success\":1000000001", "must be 1 to 1000000000"},
        {"\"success\":600000000,\"failed\":400000001", "must be 1 to 1000000000"},
        {"\"success\":1,\"bandwidth\":1099511627777", "bandwidth: at most 2^40"},
        {"\"success\":1,\"timeMin\":1,\"timeMax\":604800000001,\"timeSum\":604800000001", "at most 7 days"},
        {"\"success\":2,\"timeMin\":1,\"timeMax\":604800000000,\"timeSum\":1209600000001", "at most 7 days"},
        {"\"success\":2,\"backendCount\":1,\"backendMin\":1,\"backendMax\":2,\"backendSum\":604800000001",
         "at most 7 days"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), "{\"version\":1,\"id\":\"b-1%zu\",\"buckets\":[{\"start\":%lld,%s}]}", i,
                 (long long)t, cases[i].fields);
        json_t *j = json_loads(text, 0, NULL);
        assert_non_null(j);
        refused(st, j, cases[i].why);
    }
    /* the limits themselves are figures a node may send */
    snprintf(text, sizeof(text),
             "{\"version\":1,\"id\":\"edge-1\",\"buckets\":[{\"start\":%lld,\"api\":\"echo\",\"success\":"
             "1000000000,\"bandwidth\":1099511627776,\"timeMin\":1,\"timeMax\":604800000000,\"timeSum\":"
             "604800000000}]}",
             (long long)t);
    json_t *j = json_loads(text, 0, NULL);
    char err[512] = "";
    if (!pt_analytics_shipment_ingest(NULL, j, "gw", err, sizeof(err)))
        fail_msg("%s", err);
    json_decref(j);
    /* a key twice in one batch: refused, naming both */
    snprintf(text, sizeof(text),
             "{\"version\":1,\"id\":\"dup-1\",\"buckets\":[{\"start\":%lld,\"api\":\"echo\",\"success\":1},"
             "{\"start\":%lld,\"api\":\"echo\",\"success\":1},{\"start\":%lld,\"api\":\"echo\",\"success\":"
             "1}]}",
             (long long)t, (long long)t - 60, (long long)t);
    refused(st, json_loads(text, 0, NULL), "buckets[0] and buckets[2] have the same minute");
    /* a batch's totals: 1,100 full buckets are more than 2^40 calls */
    refused(st, batch_of("tot-1", 1100, full_bucket), "more than 2^40 calls");
    j = batch_of("tot-2", 1000, full_bucket); /* 10^12: fine */
    if (!pt_analytics_shipment_ingest(NULL, j, "gw", err, sizeof(err)))
        fail_msg("%s", err);
    json_decref(j);
    assert_int_equal(report(st).rows, 0);
    close_store(st, dir);
}

/* Reports that saw the groups (and what they summed). */
struct sums {
    int rows;
    int64_t max_success, max_bandwidth;
};

static void sum_row(void *arg, const struct pt_store_an_row *r)
{
    struct sums *s = arg;
    s->rows++;
    s->max_success = PT_MAX(s->max_success, r->c.success);
    s->max_bandwidth = PT_MAX(s->max_bandwidth, r->c.bandwidth);
}

static void test_store_sums_saturate(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = open_store(dir, "shipment-sat");
    /* rows as large as SQLite holds, written straight to the store (say, by an older control plane): the
       same key twice (its upsert overflows) and several keys of one API (their sum overflows) */
    int64_t t = minute_now() - 3 * 86400;
    assert_true(pt_store_analytics_begin(st));
    for (int i = 0; i < 6; i++) {
        char user[8];
        snprintf(user, sizeof(user), "u%d", i % 4);
        struct pt_store_an_bucket b = {PT_AN_MINUTE, t, "echo", "", "", "", user};
        b.c.success = INT64_MAX / 2;
        b.c.bandwidth = INT64_MAX / 2;
        b.c.api_sum = INT64_MAX / 2;
        b.c.api_min = 1;
        b.c.api_max = 2;
        assert_true(pt_store_analytics_add_bucket(st, &b));
    }
    assert_true(pt_store_analytics_commit(st));
    pt_store_analytics_release(st);
    const int64_t sat = (int64_t)1 << 60;
    enum pt_store_an_by by[] = {PT_AN_BY_API, PT_AN_BY_USER, PT_AN_BY_TIME};
    for (size_t i = 0; i < sizeof(by) / sizeof(by[0]); i++) {
        struct sums s = {0};
        struct pt_store_an_query q = {
            .by = by[i], .from = 0, .to = INT64_MAX / 2, .interval = 3600, .max_rows = 1000000};
        assert_true(pt_store_analytics_report(st, &q, sum_row, &s) > 0);
        assert_int_equal(s.max_success, sat); /* saturated, not failed */
        assert_int_equal(s.max_bandwidth, sat);
    }
    /* the roll-up into hours, then days: also fine, and the reports after it */
    assert_true(pt_store_analytics_begin(st));
    assert_true(pt_store_analytics_rollup(st, PT_AN_MINUTE, t + 60, 100) > 0);
    assert_true(pt_store_analytics_rollup(st, PT_AN_HOUR, t + 86400, 100) > 0);
    assert_true(pt_store_analytics_commit(st));
    pt_store_analytics_release(st);
    struct sums s = {0};
    struct pt_store_an_query q = {.by = PT_AN_BY_API, .from = 0, .to = INT64_MAX / 2, .max_rows = 1000000};
    assert_int_equal(pt_store_analytics_report(st, &q, sum_row, &s), 1);
    assert_int_equal(s.max_success, sat);
    /* ordinary figures stay exact */
    assert_true(pt_store_analytics_begin(st));
    struct pt_store_an_bucket b = {PT_AN_MINUTE, t, "other", "", "", "", ""};
    b.c.success = 4000000000000LL;
    b.c.api_min = b.c.api_max = 1;
    b.c.api_sum = 1;
    assert_true(pt_store_analytics_add_bucket(st, &b));
    b.c.success = 1;
    assert_true(pt_store_analytics_add_bucket(st, &b));
    b.user = "u1"; /* another row: summed by the report */
    b.c.success = 234;
    assert_true(pt_store_analytics_add_bucket(st, &b));
    assert_true(pt_store_analytics_commit(st));
    pt_store_analytics_release(st);
    struct pt_store_an_query q2 = {
        .by = PT_AN_BY_API, .api = "other", .from = 0, .to = INT64_MAX / 2, .max_rows = 1000000};
    s = (struct sums){0};
    assert_int_equal(pt_store_analytics_report(st, &q2, sum_row, &s), 1);
    assert_int_equal(s.max_success, 4000000000235LL);
    close_store(st, dir);
}

static void test_only_its_own_traffic(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = open_store(dir, "shipment-own");
    serve(st, "g1", "a1", "op");
    entity(st, "api", "", "a2"); /* served by the built-in gateway only */
    entity(st, "operation", "a2", "op2");
    entity(st, "product", "", "p1");
    entity(st, "subscription", "", "s1");
    entity(st, "user", "", "u1");
    int64_t t = minute_now() - 60;
    char text[1024];
    static const struct {
        const char *keys, *why;
    } cases[] = {
        {"\"api\":\"a2\"", "buckets[1].api: API 'a2' is not served by gateway 'g1'"},
        {"\"api\":\"nope\"", "buckets[1].api: API 'nope' is not served by gateway 'g1'"},
        {"\"api\":\"a1\",\"operation\":\"op2\"", "buckets[1].operation: no operation 'op2' in API a1"},
        {"\"operation\":\"op\"", "buckets[1].operation: no operation 'op'"},
        {"\"api\":\"a1\",\"product\":\"p2\"", "buckets[1].product: no product 'p2'"},
        {"\"api\":\"a1\",\"subscription\":\"s2\"", "buckets[1].subscription: no subscription 's2'"},
        {"\"api\":\"a1\",\"user\":\"u2\"", "buckets[1].user: no user 'u2'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* a good bucket first: all of the batch is refused */
        snprintf(
            text, sizeof(text),
            "{\"version\":1,\"id\":\"c-1%zu\",\"buckets\":[{\"start\":%lld,\"api\":\"a1\",\"success\":1},"
            "{\"start\":%lld,%s,\"success\":1000}]}",
            i, (long long)t, (long long)t - 60, cases[i].keys);
        json_t *j = json_loads(text, 0, NULL);
        assert_non_null(j);
        refused_for(st, "g1", j, cases[i].why);
    }
    assert_int_equal(report(st).rows, 0); /* nothing written */
    /* what g1 serves, with existing ids (or none), is taken */
    snprintf(
        text, sizeof(text),
        "{\"version\":1,\"id\":\"good-1\",\"buckets\":[{\"start\":%lld,\"api\":\"a1\",\"operation\":\"op\","
        "\"product\":\"p1\",\"subscription\":\"s1\",\"user\":\"u1\",\"success\":3},{\"start\":%lld,"
        "\"success\":"
        "2},{\"start\":%lld,\"api\":\"a1\",\"success\":1}]}",
        (long long)t, (long long)t, (long long)t - 60);
    json_t *j = json_loads(text, 0, NULL);
    char err[512] = "";
    if (!pt_analytics_shipment_ingest(st, j, "g1", err, sizeof(err)))
        fail_msg("%s", err);
    json_decref(j);
    struct calls c = report(st);
    assert_int_equal(c.by_api[3], 4); /* a1 (byApi leaves the bucket of no API out) */
    /* the built-in gateway's traffic may be of any API that exists */
    snprintf(
        text, sizeof(text),
        "{\"version\":1,\"id\":\"m-1\",\"buckets\":[{\"start\":%lld,\"api\":\"a2\",\"operation\":\"op2\","
        "\"success\":1}]}",
        (long long)t);
    j = json_loads(text, 0, NULL);
    assert_true(pt_analytics_shipment_ingest(st, j, "managed", err, sizeof(err)));
    json_decref(j);
    close_store(st, dir);
}

/* Ingests batch `id` of gateway `gw`: one bucket of `calls` calls of API "echo" (0: no bucket). */
static void send_batch(struct pt_store *st, const char *gw, const char *id, int calls)
{
    json_t *j = json_pack("{s:i, s:s, s:[]}", "version", 1, "id", id, "buckets");
    if (calls)
        json_array_append_new(json_object_get(j, "buckets"),
                              json_pack("{s:I, s:s, s:i}", "start", (json_int_t)minute_now() - 60, "api",
                                        "echo", "success", calls));
    char err[512] = "";
    if (!pt_analytics_shipment_ingest(st, j, gw, err, sizeof(err)))
        fail_msg("%s: %s", id, err);
    json_decref(j);
}

static void test_resent_batches_count_once(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = open_store(dir, "shipment-dedup");
    serve(st, "g1", "echo", NULL);
    assert_true(pt_store_link(st, "gateway-api", "g2", "echo", "api"));
    char id[64];
    send_batch(st, "g1", "9f3c0a1be2d47760-1", 1);
    /* many other nodes' batches meanwhile (2,000, more than the 1,024 ids once remembered) */
    for (int i = 0; i < 2000; i++) {
        snprintf(id, sizeof(id), "node%d-1", i);
        send_batch(st, "g1", id, 0);
    }
    send_batch(st, "g1", "9f3c0a1be2d47760-1", 1); /* the first one again: its answer was lost */
    assert_int_equal(report(st).by_api[0], 1);
    /* its node's own later batches, some out of order (put back, then sent again between fresh ones) */
    for (int i = 2; i <= 1000; i++) {
        if (i == 500)
            continue; /* held back */
        snprintf(id, sizeof(id), "9f3c0a1be2d47760-%d", i);
        send_batch(st, "g1", id, i == 999 ? 5 : 0);
    }
    send_batch(st, "g1", "9f3c0a1be2d47760-500", 7); /* late, not taken before: counted */
    send_batch(st, "g1", "9f3c0a1be2d47760-500", 7); /* again: not */
    send_batch(st, "g1", "9f3c0a1be2d47760-999", 5); /* an earlier one again: not */
    send_batch(st, "g1", "9f3c0a1be2d47760-1", 1);   /* the first again: not */
    assert_int_equal(report(st).by_api[0], 1 + 5 + 7);
    /* below the window of 1,024 under its node's highest (no node sends that late): taken as delivered */
    send_batch(st, "g1", "9f3c0a1be2d47760-3000", 0);
    send_batch(st, "g1", "9f3c0a1be2d47760-1", 1);
    send_batch(st, "g1", "9f3c0a1be2d47760-1976", 1);
    send_batch(st, "g1", "9f3c0a1be2d47760-1977", 1); /* the oldest in the window: counted */
    assert_int_equal(report(st).by_api[0], 1 + 5 + 7 + 1);
    send_batch(st, "g1", "9f3c0a1be2d47760-1977", 1);
    assert_int_equal(report(st).by_api[0], 1 + 5 + 7 + 1);
    /* a restarted node (another node part, its sequence from 1 again) is another node; the same id from
       another gateway is another batch */
    send_batch(st, "g1", "0000000000000abc-1", 2);
    send_batch(st, "g2", "9f3c0a1be2d47760-1", 3);
    assert_int_equal(report(st).by_api[0], 1 + 5 + 7 + 1 + 2 + 3);
    /* ids that are not "<node>-<sequence>" are refused (400): nothing to remember them by */
    static const char *const bad_ids[] = {"a", "-1", "a-", "a-0", "a-1x", "a-12345678901234567", "a b-1"};
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        json_t *j = json_pack("{s:i, s:s, s:[]}", "version", 1, "id", bad_ids[i], "buckets");
        refused_for(st, "g1", j, "id must be");
    }
    close_store(st, dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_putback),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_hostile_batches),
        cmocka_unit_test(test_figures_are_bounded),
        cmocka_unit_test(test_store_sums_saturate),
        cmocka_unit_test(test_only_its_own_traffic),
        cmocka_unit_test(test_resent_batches_count_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
