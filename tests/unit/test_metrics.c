/*
 * test_metrics -- the metrics registry: shards summed at scrape (also with
 * threads writing their own shards), the series cap and its "other"
 * series, label escaping, name sanitizing, histogram buckets, collectors,
 * and the OTLP JSON rendering of custom counters.
 */
#include "event/pt_metrics.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The registry rendered, as a NUL-terminated string (free it). */
static char *render(void)
{
    struct evbuffer *b = evbuffer_new();
    pt_metrics_render(b);
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    evbuffer_free(b);
    return s;
}

/* The value of the sample line starting with `prefix ` (-1 when absent). */
static double sample(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, prefix, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

static int count_lines(const char *text, const char *prefix)
{
    int k = 0;
    size_t n = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        k += !strncmp(p, prefix, n);
    return k;
}

static void test_shards_are_summed(void **state)
{
    (void)state;
    assert_true(pt_metrics_init(3, 10));
    struct pt_metrics_family *f = pt_metrics_core[PT_MC_REQUESTS];
    pt_str v[4] = {PT_STR("a"), PT_STR("op"), PT_STR(""), PT_STR("2xx")};
    int id = pt_metrics_series(f, NULL, v, 4);
    assert_true(id >= 0);
    assert_int_equal(pt_metrics_series(f, NULL, v, 4), id); /* interned once */
    for (int shard = 0; shard < 4; shard++)
        pt_metrics_add(f, shard, id, (uint64_t)shard + 1);
    pt_metrics_set(pt_metrics_core[PT_MC_CONNECTIONS], 1, 0, 5);
    pt_metrics_set(pt_metrics_core[PT_MC_CONNECTIONS], 3, 0, 7);
    char *t = render();
    assert_true(
        sample(t, "portico_requests_total{api=\"a\",operation=\"op\",product=\"\",status_class=\"2xx\"}") ==
        10);
    assert_true(sample(t, "portico_connections_active") == 12);
    assert_non_null(strstr(t, "# TYPE portico_requests_total counter\n"));
    assert_non_null(strstr(t, "# HELP portico_requests_total "));
    /* labelled families with no series yet are left out; unlabelled ones show 0 */
    assert_null(strstr(t, "portico_backend_requests_total"));
    assert_true(sample(t, "portico_lua_timeouts_total") == 0);
    free(t);
}

#define NTHREADS 4
#define PER_THREAD 100000

static void *writer(void *arg)
{
    int shard = (int)(intptr_t)arg;
    struct pt_metrics_family *f = pt_metrics_core[PT_MC_REQUESTS];
    pt_str v[4] = {PT_STR("t"), PT_STR("o"), PT_STR("p"), PT_STR("2xx")};
    for (int i = 0; i < PER_THREAD; i++)
        pt_metrics_add(f, shard, pt_metrics_series(f, NULL, v, 4), 1);
    return NULL;
}

static void test_threads_each_on_their_shard(void **state)
{
    (void)state;
    assert_true(pt_metrics_init(NTHREADS, 10));
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        pthread_create(&th[i], NULL, writer, (void *)(intptr_t)(i + 1));
    /* a scrape while they write sees a count that never goes down */
    double last = 0;
    for (int k = 0; k < 20; k++) {
        char *t = render();
        double now =
            sample(t, "portico_requests_total{api=\"t\",operation=\"o\",product=\"p\",status_class=\"2xx\"}");
        if (now < 0) { /* not yet written: absent, and only before it ever showed */
            assert_true(last == 0);
            now = 0;
        }
        assert_true(now >= last);
        last = now;
        free(t);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    char *t = render();
    assert_true(
        sample(t, "portico_requests_total{api=\"t\",operation=\"o\",product=\"p\",status_class=\"2xx\"}") ==
        NTHREADS * PER_THREAD);
    assert_int_equal(count_lines(t, "portico_requests_total{"), 1);
    free(t);
}

static void test_cap_and_other(void **state)
{
    (void)state;
    assert_true(pt_metrics_init(1, 3));
    struct pt_metrics_family *f = pt_metrics_core[PT_MC_BACKEND_REQUESTS];
    int other = -1;
    for (int i = 0; i < 10; i++) {
        char api[16];
        snprintf(api, sizeof(api), "api%d", i);
        pt_str v[2] = {pt_str_c(api), PT_STR("2xx")};
        int id = pt_metrics_series(f, NULL, v, 2);
        assert_true(id >= 0);
        if (i >= 3) {
            if (other < 0)
                other = id;
            assert_int_equal(id, other); /* every one past the cap: the same series */
        }
        pt_metrics_add(f, 1, id, 1);
    }
    /* a kept series stays itself after the cap is reached */
    pt_str v0[2] = {PT_STR("api0"), PT_STR("2xx")};
    int id0 = pt_metrics_series(f, NULL, v0, 2);
    assert_true(id0 >= 0 && id0 != other);
    char *t = render();
    assert_int_equal(count_lines(t, "portico_backend_requests_total{"), 4);
    assert_true(sample(t, "portico_backend_requests_total{api=\"other\",status_class=\"other\"}") == 7);
    assert_true(sample(t, "portico_backend_requests_total{api=\"api2\",status_class=\"2xx\"}") == 1);
    free(t);
    assert_int_equal((int)f->dropped, 0);
}

static void test_escaping_and_names(void **state)
{
    (void)state;
    char out[4 * PT_METRICS_VALUE_MAX + 1];
    pt_metrics_escape(PT_STR("a\"b\\c\nd"), out);
    assert_string_equal(out, "a\\\"b\\\\c\\nd");
    pt_metrics_escape(PT_STR("x\ry\x01z\x7f"), out);
    assert_string_equal(out, "x?y?z?");
    pt_metrics_escape(PT_STR("caf\xc3\xa9 \xff\xc3"), out); /* valid UTF-8 kept, the rest '?' */
    assert_string_equal(out, "caf\xc3\xa9 ??");
    char big[300];
    memset(big, 'v', sizeof(big));
    assert_int_equal(pt_metrics_escape((pt_str){big, sizeof(big)}, out), PT_METRICS_VALUE_MAX);

    char n[64];
    assert_int_equal(pt_metrics_sanitize(PT_STR("API Management"), n, sizeof(n)), 14);
    assert_string_equal(n, "api_management");
    pt_metrics_sanitize(PT_STR("  Requests--Custom!! "), n, sizeof(n));
    assert_string_equal(n, "requests_custom");
    pt_metrics_sanitize(PT_STR("9lives"), n, sizeof(n));
    assert_string_equal(n, "_9lives");
    pt_metrics_sanitize(PT_STR("__x__y"), n, sizeof(n));
    assert_string_equal(n, "x_y");
    assert_int_equal(pt_metrics_sanitize(PT_STR("-- !"), n, sizeof(n)), 0);
    assert_int_equal(pt_metrics_sanitize(PT_STR("abcdefgh"), n, 4), 3);
    assert_string_equal(n, "abc");

    /* escaped values render as such, and hostile ones cannot break a line */
    assert_true(pt_metrics_init(1, 10));
    struct pt_metrics_family *f = pt_metrics_core[PT_MC_RELOADS];
    pt_str hostile = PT_STR("x\"} 99\nportico_fake 1");
    pt_metrics_add(f, 0, pt_metrics_series(f, NULL, &hostile, 1), 1);
    char *t = render();
    assert_non_null(strstr(t, "portico_reloads_total{result=\"x\\\"} 99\\nportico_fake 1\"} 1\n"));
    assert_int_equal(count_lines(t, "portico_fake"), 0);
    free(t);
}

static void test_histogram_buckets(void **state)
{
    (void)state;
    assert_true(pt_metrics_init(2, 10));
    struct pt_metrics_family *f = pt_metrics_core[PT_MC_BACKEND_DURATION];
    pt_str api = PT_STR("h");
    int id = pt_metrics_series(f, NULL, &api, 1);
    uint64_t obs[] = {500, 1000, 1001, 30000, 2000000, 61000000};
    for (size_t i = 0; i < PT_ARRAY_LEN(obs); i++)
        pt_metrics_observe(f, 1 + (int)(i % 2), id, obs[i]);
    char *t = render();
    const char *p = "portico_backend_duration_seconds_bucket{api=\"h\",le=";
    char line[128];
    struct {
        const char *le;
        double want;
    } cases[] = {{"0.001", 2}, {"0.0025", 3}, {"0.025", 3}, {"0.05", 4},
                 {"1", 4},     {"2.5", 5},    {"60", 5},    {"+Inf", 6}};
    for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
        snprintf(line, sizeof(line), "%s\"%s\"}", p, cases[i].le);
        assert_true(sample(t, line) == cases[i].want);
    }
    assert_int_equal(count_lines(t, p), PT_METRICS_NBUCKETS + 1);
    assert_true(sample(t, "portico_backend_duration_seconds_count{api=\"h\"}") == 6);
    assert_non_null(strstr(t, "portico_backend_duration_seconds_sum{api=\"h\"} 63.032501\n"));
    free(t);
}

static atomic_bool observing;
static uint64_t observed[NTHREADS + 1];

/* Observes until told to stop (or a bound), counting what it did. */
static void *observer(void *arg)
{
    int shard = (int)(intptr_t)arg;
    struct pt_metrics_family *f = pt_metrics_core[PT_MC_BACKEND_DURATION];
    pt_str api = PT_STR("w");
    uint64_t i = 0;
    for (; i < 200000000 && atomic_load(&observing); i++)
        pt_metrics_observe(f, shard, pt_metrics_series(f, NULL, &api, 1), (i % 5000) * 100);
    observed[shard] = i;
    return NULL;
}

/* Prometheus reads _count as the +Inf bucket: scrapes while workers observe
   show the two equal every time, and the total at the end. */
static void test_histogram_count_is_the_inf_bucket(void **state)
{
    (void)state;
    assert_true(pt_metrics_init(NTHREADS, 10));
    atomic_store(&observing, true);
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        pthread_create(&th[i], NULL, observer, (void *)(intptr_t)(i + 1));
    const char *inf = "portico_backend_duration_seconds_bucket{api=\"w\",le=\"+Inf\"}";
    const char *count = "portico_backend_duration_seconds_count{api=\"w\"}";
    int seen = 0; /* scrapes that found observations */
    for (int k = 0; k < 1000000 && seen < 300; k++) {
        char *t = render();
        assert_true(sample(t, inf) == sample(t, count));
        seen += sample(t, count) > 0;
        free(t);
    }
    assert_int_equal(seen, 300);
    atomic_store(&observing, false);
    uint64_t total = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        total += observed[i + 1];
    }
    char *t = render();
    assert_true(sample(t, count) == (double)total);
    assert_true(sample(t, inf) == (double)total);
    free(t);
}

static void collect(struct pt_metrics_sink *s, void *arg)
{
    static const char *const names[] = {"kind"};
    pt_str v[] = {PT_STR("a")};
    pt_metrics_sink_value(s, "portico_test_queue", "A test gauge.", PT_METRICS_GAUGE, *(double *)arg);
    pt_metrics_sink_sample(s, "portico_test_dropped_total", "Dropped.", PT_METRICS_COUNTER, names, v, 1, 2);
    v[0] = PT_STR("b");
    pt_metrics_sink_sample(s, "portico_test_dropped_total", "Dropped.", PT_METRICS_COUNTER, names, v, 1, 3);
}

static void test_collectors(void **state)
{
    (void)state;
    assert_true(pt_metrics_init(1, 10));
    double q = 1.5;
    pt_metrics_collector(collect, &q);
    char *t = render();
    assert_non_null(strstr(t, "# HELP portico_test_queue A test gauge.\n# TYPE portico_test_queue gauge\n"
                              "portico_test_queue 1.5\n"));
    assert_int_equal(count_lines(t, "# TYPE portico_test_dropped_total counter"), 1);
    assert_true(sample(t, "portico_test_dropped_total{kind=\"b\"}") == 3);
    free(t);
}

static void test_custom_and_otlp(void **state)
{
    (void)state;
    assert_true(pt_metrics_init(2, 2));
    /* nothing emitted: an empty list */
    size_t len;
    char *j = pt_metrics_otlp_json("gw", NULL, 2000, &len);
    json_t *doc = json_loads(j, 0, NULL);
    assert_non_null(doc);
    assert_int_equal(
        json_array_size(json_object_get(
            json_array_get(
                json_object_get(json_array_get(json_object_get(doc, "resourceMetrics"), 0), "scopeMetrics"),
                0),
            "metrics")),
        0);
    json_decref(doc);
    free(j);

    assert_null(pt_metrics_custom(PT_STR("portico_requests_total"))); /* the gateway's own names */
    struct pt_metrics_family *f = pt_metrics_custom(PT_STR("shop_orders"));
    assert_non_null(f);
    assert_ptr_equal(pt_metrics_custom(PT_STR("shop_orders")), f);
    pt_str names[2] = {PT_STR("api_id"), PT_STR("client")};
    pt_str v1[2] = {PT_STR("shop"), PT_STR("we\"b")}, v2[2] = {PT_STR("shop"), PT_STR("app")};
    int a = pt_metrics_series(f, names, v1, 2), b = pt_metrics_series(f, names, v2, 2);
    pt_metrics_add_double(f, 1, a, 2);
    pt_metrics_add_double(f, 2, a, 0.25);
    pt_metrics_add_double(f, 2, b, 1);
    /* past the cap (2): one "other" series with the same label names */
    pt_str v3[2] = {PT_STR("shop"), PT_STR("cli")};
    pt_metrics_add_double(f, 1, pt_metrics_series(f, names, v3, 2), 4);
    char *t = render();
    assert_non_null(strstr(t, "# TYPE shop_orders counter\n"));
    assert_true(sample(t, "shop_orders{api_id=\"shop\",client=\"we\\\"b\"}") == 2.25);
    assert_true(sample(t, "shop_orders{api_id=\"other\",client=\"other\"}") == 4);
    free(t);

    j = pt_metrics_otlp_json("portico", "gw-1", 5000000000ULL, &len);
    assert_int_equal(strlen(j), len);
    doc = json_loads(j, 0, NULL);
    assert_non_null(doc);
    json_t *rm = json_array_get(json_object_get(doc, "resourceMetrics"), 0);
    json_t *rattrs = json_object_get(json_object_get(rm, "resource"), "attributes");
    assert_string_equal(json_string_value(json_object_get(json_array_get(rattrs, 0), "key")), "service.name");
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(rattrs, 0), "value"),
                                                          "stringValue")),
                        "portico");
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(rattrs, 1), "value"),
                                                          "stringValue")),
                        "gw-1");
    json_t *sm = json_array_get(json_object_get(rm, "scopeMetrics"), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(sm, "scope"), "name")),
                        "portico.emit-metric");
    json_t *metrics = json_object_get(sm, "metrics");
    assert_int_equal(json_array_size(metrics), 1); /* only the custom ones */
    json_t *m = json_array_get(metrics, 0);
    assert_string_equal(json_string_value(json_object_get(m, "name")), "shop_orders");
    json_t *sum = json_object_get(m, "sum");
    assert_true(json_is_true(json_object_get(sum, "isMonotonic")));
    assert_int_equal(json_integer_value(json_object_get(sum, "aggregationTemporality")), 2);
    json_t *points = json_object_get(sum, "dataPoints");
    assert_int_equal(json_array_size(points), 3);
    json_t *p0 = json_array_get(points, 0);
    assert_true(json_real_value(json_object_get(p0, "asDouble")) == 2.25);
    assert_string_equal(json_string_value(json_object_get(p0, "timeUnixNano")), "5000000000");
    assert_true(json_is_string(json_object_get(p0, "startTimeUnixNano")));
    json_t *at = json_object_get(p0, "attributes");
    assert_int_equal(json_array_size(at), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(at, 1), "key")), "client");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(json_array_get(at, 1), "value"), "stringValue")),
        "we\"b"); /* unescaped again */
    json_decref(doc);
    free(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shards_are_summed), cmocka_unit_test(test_threads_each_on_their_shard),
        cmocka_unit_test(test_cap_and_other),     cmocka_unit_test(test_escaping_and_names),
        cmocka_unit_test(test_histogram_buckets), cmocka_unit_test(test_collectors),
        cmocka_unit_test(test_custom_and_otlp),   cmocka_unit_test(test_histogram_count_is_the_inf_bucket),
    };
    int rc = cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
    pt_metrics_free();
    return rc;
}
