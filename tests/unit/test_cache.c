/*
 * test_cache -- the internal cache: hits and misses, replacement, removal,
 * the time to live (with a clock the test moves), the byte budget with its
 * overhead counted, least-recently-used eviction across shards, limits
 * changed on a live store, hostile sizes, and a concurrency smoke test
 * where threads read, write and delete the same keys while the budget
 * forces evictions (run it under ASan/TSan for races).
 */
#include "event/pt_cache.h"
#include "event/pt_redis.h"

#include <netdb.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

static uint64_t fake_now;
static uint64_t fake_clock(void)
{
    return fake_now;
}

/* Values copied out go to malloc'd memory the test frees. */
static void *test_alloc(void *actx, size_t n)
{
    void **slot = actx;
    *slot = malloc(n);
    return *slot;
}

/* 1 and the value as a malloc'd string when key is there; 0 otherwise. */
static int get(struct pt_cache *c, const char *key, char *buf, size_t cap)
{
    void *mem = NULL;
    pt_bytes v = {0};
    int r = pt_cache_get(c, key, strlen(key), test_alloc, &mem, &v);
    if (r == 1) {
        size_t n = v.len < cap - 1 ? v.len : cap - 1;
        memcpy(buf, v.data, n);
        buf[n] = '\0';
    }
    free(mem);
    return r;
}

static int put(struct pt_cache *c, const char *key, const char *value, uint64_t ttl_ms)
{
    return pt_cache_put(c, key, strlen(key), value, strlen(value), ttl_ms);
}

static void test_get_put_del(void **state)
{
    (void)state;
    struct pt_cache *c = pt_cache_new(1 << 20, 1 << 20, 8);
    char buf[64];
    assert_int_equal(get(c, "a", buf, sizeof(buf)), 0);
    assert_int_equal(put(c, "a", "one", 0), 0);
    assert_int_equal(get(c, "a", buf, sizeof(buf)), 1);
    assert_string_equal(buf, "one");
    /* replaced, not duplicated */
    assert_int_equal(put(c, "a", "two!", 0), 0);
    assert_int_equal(get(c, "a", buf, sizeof(buf)), 1);
    assert_string_equal(buf, "two!");
    /* an empty value is a value */
    assert_int_equal(put(c, "empty", "", 0), 0);
    assert_int_equal(get(c, "empty", buf, sizeof(buf)), 1);
    assert_string_equal(buf, "");
    /* keys are bytes: a NUL inside is part of the key */
    assert_int_equal(pt_cache_put(c, "k\0x", 3, "nul", 3, 0), 0);
    assert_int_equal(get(c, "k", buf, sizeof(buf)), 0);
    struct pt_cache_stats st;
    pt_cache_stats(c, &st);
    assert_int_equal(st.entries, 3);
    assert_int_equal(st.bytes, 3 * PT_CACHE_OVERHEAD + (1 + 4) + (5 + 0) + (3 + 3));
    assert_int_equal(st.stores, 4);
    assert_int_equal(pt_cache_del(c, "a", 1), 1);
    assert_int_equal(pt_cache_del(c, "a", 1), 0);
    assert_int_equal(get(c, "a", buf, sizeof(buf)), 0);
    pt_cache_stats(c, &st);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.removals, 1);
    assert_int_equal(st.hits, 3);
    assert_int_equal(st.misses, 3);
    pt_cache_clear(c);
    pt_cache_stats(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    pt_cache_free(c);
}

static void test_ttl(void **state)
{
    (void)state;
    struct pt_cache *c = pt_cache_new(1 << 20, 1 << 20, 4);
    fake_now = 1000;
    pt_cache_set_clock(c, fake_clock);
    char buf[16];
    assert_int_equal(put(c, "short", "s", 500), 0);
    assert_int_equal(put(c, "long", "l", 5000), 0);
    assert_int_equal(put(c, "forever", "f", 0), 0);
    fake_now = 1499;
    assert_int_equal(get(c, "short", buf, sizeof(buf)), 1);
    fake_now = 1500; /* expires_ms is the first instant it is gone */
    assert_int_equal(get(c, "short", buf, sizeof(buf)), 0);
    assert_int_equal(get(c, "long", buf, sizeof(buf)), 1);
    fake_now = 1000000;
    assert_int_equal(get(c, "long", buf, sizeof(buf)), 0);
    assert_int_equal(get(c, "forever", buf, sizeof(buf)), 1);
    struct pt_cache_stats st;
    pt_cache_stats(c, &st);
    assert_int_equal(st.expired, 2);
    assert_int_equal(st.entries, 1);
    /* storing again renews the time to live */
    assert_int_equal(put(c, "short", "again", 100), 0);
    fake_now += 99;
    assert_int_equal(get(c, "short", buf, sizeof(buf)), 1);
    assert_string_equal(buf, "again");
    pt_cache_free(c);
}

/* One shard: the eviction order is exactly least recently used. */
static void test_lru_order(void **state)
{
    (void)state;
    uint64_t one = PT_CACHE_OVERHEAD + 2 + 8; /* key "kN", 8-byte value */
    struct pt_cache *c = pt_cache_new(3 * one, 1 << 20, 1);
    char buf[16];
    assert_int_equal(put(c, "k1", "aaaaaaaa", 0), 0);
    assert_int_equal(put(c, "k2", "bbbbbbbb", 0), 0);
    assert_int_equal(put(c, "k3", "cccccccc", 0), 0);
    assert_int_equal(get(c, "k1", buf, sizeof(buf)), 1); /* k1 is now the most recent: k2 goes first */
    assert_int_equal(put(c, "k4", "dddddddd", 0), 0);
    assert_int_equal(get(c, "k2", buf, sizeof(buf)), 0);
    assert_int_equal(get(c, "k1", buf, sizeof(buf)), 1);
    assert_int_equal(get(c, "k3", buf, sizeof(buf)), 1);
    assert_int_equal(get(c, "k4", buf, sizeof(buf)), 1);
    struct pt_cache_stats st;
    pt_cache_stats(c, &st);
    assert_int_equal(st.evictions, 1);
    assert_true(st.bytes <= 3 * one);
    pt_cache_free(c);
}

/* Many shards: eviction still takes the oldest entries of the node first. */
static void test_lru_across_shards(void **state)
{
    (void)state;
    uint64_t one = PT_CACHE_OVERHEAD + 4 + 16;
    struct pt_cache *c = pt_cache_new(100 * one, 1 << 20, 64);
    char key[8], buf[32];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%03d", i);
        assert_int_equal(put(c, key, "0123456789abcdef", 0), 0);
    }
    /* touch the first 20: the next 20 (k020..k039) are now the oldest */
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "k%03d", i);
        assert_int_equal(get(c, key, buf, sizeof(buf)), 1);
    }
    for (int i = 100; i < 120; i++) {
        snprintf(key, sizeof(key), "k%03d", i);
        assert_int_equal(put(c, key, "0123456789abcdef", 0), 0);
    }
    for (int i = 0; i < 120; i++) {
        snprintf(key, sizeof(key), "k%03d", i);
        int want = i >= 20 && i < 40 ? 0 : 1;
        if (get(c, key, buf, sizeof(buf)) != want)
            fail_msg("%s: expected %s", key, want ? "a hit" : "evicted");
    }
    pt_cache_free(c);
}

static void test_byte_budget(void **state)
{
    (void)state;
    struct pt_cache *c = pt_cache_new(64 * 1024, 16 * 1024, 16);
    char *big = malloc(16 * 1024 + 1);
    memset(big, 'x', 16 * 1024 + 1);
    char key[16], buf[8];
    /* larger than maxEntry: skipped, counted */
    assert_int_equal(pt_cache_put(c, "big", 3, big, 16 * 1024 + 1, 0), -1);
    /* many stores of 16 KiB: never more than the budget */
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "v%d", i);
        assert_int_equal(pt_cache_put(c, key, strlen(key), big, 16 * 1024, 0), 0);
        struct pt_cache_stats st;
        pt_cache_stats(c, &st);
        assert_true(st.bytes <= 64 * 1024);
    }
    struct pt_cache_stats st;
    pt_cache_stats(c, &st);
    assert_int_equal(st.entries, 3); /* 4 would pass 64 KiB with the overhead */
    assert_int_equal(st.evictions, 97);
    assert_int_equal(st.skipped, 1);
    assert_int_equal(get(c, "v99", buf, sizeof(buf)), 1);
    assert_int_equal(get(c, "v96", buf, sizeof(buf)), 0);
    /* a smaller budget evicts at once; 0 empties the store and refuses everything */
    pt_cache_set_limits(c, 40 * 1024, 16 * 1024);
    pt_cache_stats(c, &st);
    assert_int_equal(st.entries, 2);
    assert_true(st.bytes <= 40 * 1024);
    pt_cache_set_limits(c, 0, 16 * 1024);
    pt_cache_stats(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(put(c, "a", "b", 0), -1);
    assert_int_equal(get(c, "a", buf, sizeof(buf)), 0);
    /* back on: works again */
    pt_cache_set_limits(c, 1024, 16 * 1024);
    assert_int_equal(put(c, "a", "b", 0), 0);
    /* an entry larger than the whole budget is refused, not stored then evicted */
    assert_int_equal(pt_cache_put(c, "huge", 4, big, 1000, 0), -1);
    assert_int_equal(get(c, "a", buf, sizeof(buf)), 1);
    free(big);
    pt_cache_free(c);
}

static void test_hostile_keys(void **state)
{
    (void)state;
    struct pt_cache *c = pt_cache_new(1 << 20, 1 << 20, 4);
    char buf[8];
    assert_int_equal(pt_cache_put(c, "", 0, "x", 1, 0), -1);
    assert_int_equal(get(c, "", buf, sizeof(buf)), 0);
    char *k = malloc(PT_CACHE_KEY_MAX + 1);
    memset(k, 'k', PT_CACHE_KEY_MAX + 1);
    assert_int_equal(pt_cache_put(c, k, PT_CACHE_KEY_MAX + 1, "x", 1, 0), -1);
    assert_int_equal(pt_cache_put(c, k, PT_CACHE_KEY_MAX, "x", 1, 0), 0);
    void *mem = NULL;
    pt_bytes v;
    assert_int_equal(pt_cache_get(c, k, PT_CACHE_KEY_MAX + 1, test_alloc, &mem, &v), 0);
    assert_int_equal(pt_cache_del(c, k, PT_CACHE_KEY_MAX + 1), 0);
    assert_int_equal(pt_cache_del(c, k, PT_CACHE_KEY_MAX), 1);
    free(k);
    /* keys that collide in their shard's table still stay apart: many keys in a 1-shard store */
    pt_cache_free(c);
    c = pt_cache_new(1 << 24, 1 << 20, 1);
    char key[16];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "%d", i);
        assert_int_equal(pt_cache_put(c, key, strlen(key), key, strlen(key), 0), 0);
    }
    for (int i = 0; i < 5000; i += 7) {
        snprintf(key, sizeof(key), "%d", i);
        char out[16];
        assert_int_equal(get(c, key, out, sizeof(out)), 1);
        assert_string_equal(out, key);
    }
    pt_cache_free(c);
}

/* ---- threads ---- */

struct worker {
    struct pt_cache *c;
    int id;
    long hits, bad;
};

static void *hammer(void *arg)
{
    struct worker *w = arg;
    char key[32], val[600];
    uint32_t x = (uint32_t)w->id * 2654435761u + 1;
    for (int i = 0; i < 40000; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        int k = (int)(x % 500);
        snprintf(key, sizeof(key), "key-%d", k);
        /* a value that names its key, so a reader sees whether it got the right one */
        int vlen = snprintf(val, sizeof(val), "value-of-%d|", k);
        int pad = (int)((x >> 9) % 400);
        memset(val + vlen, 'p', (size_t)pad);
        vlen += pad;
        switch ((x >> 20) % 4) {
        case 0:
        case 1: {
            void *mem = NULL;
            pt_bytes v;
            if (pt_cache_get(w->c, key, strlen(key), test_alloc, &mem, &v) == 1) {
                w->hits++;
                int n = snprintf(val, sizeof(val), "value-of-%d|", k);
                if (v.len < (size_t)n || memcmp(v.data, val, (size_t)n))
                    w->bad++;
            }
            free(mem);
            break;
        }
        case 2:
            pt_cache_put(w->c, key, strlen(key), val, (size_t)vlen, (x >> 25) % 2 ? 0 : 50);
            break;
        default:
            pt_cache_del(w->c, key, strlen(key));
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    /* about 60 of the 500 keys fit: constant eviction */
    struct pt_cache *c = pt_cache_new(40 * 1024, 1 << 20, 16);
    enum { N = 4 };
    pthread_t t[N];
    struct worker w[N];
    for (int i = 0; i < N; i++) {
        w[i] = (struct worker){.c = c, .id = i + 1};
        pthread_create(&t[i], NULL, hammer, &w[i]);
    }
    long hits = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].bad, 0);
        hits += w[i].hits;
    }
    struct pt_cache_stats st;
    pt_cache_stats(c, &st);
    assert_true(hits > 0);
    assert_true(st.evictions > 0);
    assert_int_equal((long)st.hits, hits);
    /* the totals agree with what the shards hold, and the budget holds once the stores are done */
    assert_true(st.bytes <= 40 * 1024);
    uint64_t entries = st.entries;
    pt_cache_clear(c);
    pt_cache_stats(c, &st);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.entries, 0);
    (void)entries;
    pt_cache_free(c);
}

static void test_node_store(void **state)
{
    (void)state;
    assert_null(pt_cache_node());
    assert_true(pt_cache_node_configure(1 << 20, 1 << 20));
    struct pt_cache *c = pt_cache_node();
    assert_non_null(c);
    assert_int_equal(put(c, "kept", "across reloads", 0), 0);
    /* a reload with other limits keeps the same store and its entries */
    assert_true(pt_cache_node_configure(2 << 20, 1 << 20));
    assert_ptr_equal(pt_cache_node(), c);
    char buf[32];
    assert_int_equal(get(c, "kept", buf, sizeof(buf)), 1);
    pt_cache_node_free();
    assert_null(pt_cache_node());
}

/* ---- the Redis replies (event/pt_redis) ---- */

static ssize_t parse(const char *text, size_t max, struct pt_redis_reply *r)
{
    return pt_redis_parse(text, strlen(text), max, r);
}

static void test_resp_replies(void **state)
{
    (void)state;
    struct pt_redis_reply r;
    assert_int_equal(parse("+OK\r\n", 100, &r), 5);
    assert_int_equal(r.type, '+');
    assert_int_equal(r.len, 2);
    assert_memory_equal(r.str, "OK", 2);
    assert_int_equal(parse("-WRONGPASS invalid\r\n+OK\r\n", 100, &r), 20);
    assert_int_equal(r.type, '-');
    assert_int_equal(parse(":-12\r\n", 100, &r), 6);
    assert_int_equal(r.integer, -12);
    assert_int_equal(parse("$5\r\nhello\r\n", 100, &r), 11);
    assert_int_equal(r.len, 5);
    assert_memory_equal(r.str, "hello", 5);
    assert_int_equal(parse("$0\r\n\r\n", 100, &r), 6);
    assert_non_null(r.str);
    assert_int_equal(parse("$-1\r\n", 100, &r), 5);
    assert_null(r.str);
    /* a value may hold CR LF and NUL: the length says where it ends */
    assert_int_equal(pt_redis_parse("$4\r\n\r\n\0x\r\n", 10, 100, &r), 10);
    assert_memory_equal(r.str, "\r\n\0x", 4);
    /* not all here yet */
    assert_int_equal(parse("+OK\r", 100, &r), 0);
    assert_int_equal(parse("$5\r\nhel", 100, &r), 0);
    assert_int_equal(r.need, 11);
    assert_int_equal(parse("$5", 100, &r), 0);
    /* refused */
    assert_int_equal(parse("*1\r\n$1\r\na\r\n", 100, &r), -1);
    assert_string_equal(r.str, "an array reply");
    assert_int_equal(parse("%1\r\n", 100, &r), -1);
    /* a bulk over the cap is read as its head: nil, the bulk and its CRLF to be thrown away */
    assert_int_equal(parse("$101\r\n", 100, &r), 6);
    assert_int_equal(r.type, '$');
    assert_null(r.str);
    assert_int_equal(r.skip, 103);
    assert_int_equal(parse("$5\r\nhello\r\n", 100, &r), 11);
    assert_int_equal(r.skip, 0);
    /* ... unless its length is absurd */
    assert_int_equal(parse("$1073741825\r\n", 100, &r), -1);
    assert_int_equal(parse("$1073741824\r\n", 100, &r), 13);
    assert_int_equal(parse("$-2\r\n", 100, &r), -1);
    assert_int_equal(parse("$5x\r\n", 100, &r), -1);
    assert_int_equal(parse("$99999999999999999999\r\n", 100, &r), -1);
    assert_int_equal(parse(":1\r\r\n", 100, &r), -1);
    assert_int_equal(parse("+a\nb\r\n", 100, &r), -1);
    assert_int_equal(parse("$3\r\nabcde", 100, &r), -1); /* no CRLF after the bulk */
    char *line = malloc(PT_REDIS_LINE_MAX + 10);
    line[0] = '+';
    memset(line + 1, 'x', PT_REDIS_LINE_MAX + 5);
    line[PT_REDIS_LINE_MAX + 6] = '\0';
    assert_int_equal(parse(line, 100, &r), -1);
    assert_string_equal(r.str, "a reply line too long");
    free(line);
}

/* A budget cut far below what is stored evicts all the way down, past one store's share. */
static void test_big_shrink(void **state)
{
    (void)state;
    struct pt_cache *c = pt_cache_new(1ULL << 30, 1 << 20, 64);
    char key[16];
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof(key), "%d", i);
        assert_int_equal(pt_cache_put(c, key, strlen(key), "v", 1, 0), 0);
    }
    pt_cache_set_limits(c, 10 * 1024, 1 << 20);
    struct pt_cache_stats st;
    pt_cache_stats(c, &st);
    assert_true(st.bytes <= 10 * 1024);
    assert_true(st.entries > 0);
    assert_int_equal(st.evictions, 100000 - st.entries);
    pt_cache_free(c);
}

/* Refusals made before any shard lock (cache off, key too long, value too large) are counted in
   the shards (no node-wide counter on the lookup path) and summed by pt_cache_stats; hits between
   two stores all protect their entries from the next eviction, whatever their shards. */
static void test_counters_and_stamps_in_shards(void **state)
{
    (void)state;
    uint64_t one = PT_CACHE_OVERHEAD + 4 + 1;
    struct pt_cache *c = pt_cache_new(64 * one, 16, 64);
    char key[8], buf[8];
    for (int i = 0; i < 64; i++) {
        snprintf(key, sizeof(key), "k%03d", i);
        assert_int_equal(put(c, key, "v", 0), 0);
    }
    /* every other entry used after the last store, in many shards */
    for (int i = 0; i < 64; i += 2) {
        snprintf(key, sizeof(key), "k%03d", i);
        assert_int_equal(get(c, key, buf, sizeof(buf)), 1);
    }
    for (int i = 64; i < 96; i++) {
        snprintf(key, sizeof(key), "k%03d", i);
        assert_int_equal(put(c, key, "v", 0), 0);
    }
    for (int i = 0; i < 64; i++) {
        snprintf(key, sizeof(key), "k%03d", i);
        if (get(c, key, buf, sizeof(buf)) != (i % 2 == 0))
            fail_msg("%s: expected %s", key, i % 2 == 0 ? "a hit" : "evicted");
    }
    struct pt_cache_stats st;
    pt_cache_stats(c, &st);
    uint64_t misses = st.misses, skipped = st.skipped;
    char big[32] = "0123456789abcdef0123456789";
    assert_int_equal(put(c, "k", big, 0), -1); /* over maxEntry */
    char *longkey = calloc(1, PT_CACHE_KEY_MAX + 2);
    memset(longkey, 'x', PT_CACHE_KEY_MAX + 1);
    assert_int_equal(get(c, longkey, buf, sizeof(buf)), 0);
    assert_int_equal(put(c, longkey, "v", 0), -1);
    free(longkey);
    pt_cache_set_limits(c, 0, 16);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "o%03d", i);
        assert_int_equal(get(c, key, buf, sizeof(buf)), 0);
        assert_int_equal(put(c, key, "v", 0), -1);
    }
    pt_cache_stats(c, &st);
    assert_int_equal(st.misses, misses + 101);
    assert_int_equal(st.skipped, skipped + 102);
    pt_cache_free(c);
}

/* The cache turned off while a store is under way (between its look at the limit and its shard
   lock): the clock, read in that window, turns it off. */
static struct pt_cache *racing;
static uint64_t clock_turning_off(void)
{
    if (racing) {
        struct pt_cache *c = racing;
        racing = NULL;
        pt_cache_set_limits(c, 0, 1 << 20);
    }
    return fake_now;
}

static void test_off_during_a_store(void **state)
{
    (void)state;
    struct pt_cache *c = pt_cache_new(1 << 20, 1 << 20, 8);
    pt_cache_set_clock(c, clock_turning_off);
    assert_int_equal(put(c, "before", "v", 0), 0);
    racing = c;
    assert_int_equal(put(c, "during", "v", 0), -1);
    assert_null(racing); /* the turn-off happened inside the store */
    struct pt_cache_stats st;
    pt_cache_stats(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    /* turned on again: nothing comes back */
    pt_cache_set_limits(c, 1 << 20, 1 << 20);
    char buf[8];
    assert_int_equal(get(c, "during", buf, sizeof(buf)), 0);
    assert_int_equal(get(c, "before", buf, sizeof(buf)), 0);
    pt_cache_free(c);
}

/* ---- a Redis host name that did not resolve is tried again (REVIEW-13a M5) ---- */

static _Atomic bool dns_up;
static _Atomic int dns_asked;

static int fake_resolver(const char *host, const char *port, const struct addrinfo *hints,
                         struct addrinfo **res)
{
    atomic_fetch_add(&dns_asked, 1);
    if (!atomic_load(&dns_up) || strcmp(host, "redis.test"))
        return EAI_NONAME;
    return getaddrinfo("127.0.0.1", port, hints, res);
}

static void wait_retry_done(void)
{
    for (int i = 0; i < 500 && pt_redis_retrying(); i++)
        usleep(10000);
    assert_false(pt_redis_retrying());
}

static void test_redis_name_retried(void **state)
{
    (void)state;
    pt_redis_set_resolver(fake_resolver);
    struct pt_cache_cf cf = {.max_entry = 1 << 20,
                             .redis = "redis://redis.test:6390",
                             .host = "redis.test",
                             .port = 6390,
                             .connect_timeout = 1000,
                             .command_timeout = 250,
                             .verify = true};
    char err[256];
    atomic_store(&dns_up, false);
    assert_false(pt_redis_configure(&cf, err, sizeof(err)));
    assert_non_null(strstr(err, "does not resolve"));
    assert_true(pt_redis_configured());
    assert_false(pt_redis_resolved());
    /* a reload that changes no setting tries the name again: the name is in DNS now */
    atomic_store(&dns_up, true);
    int asked = atomic_load(&dns_asked);
    assert_true(pt_redis_configure(&cf, err, sizeof(err)));
    assert_int_equal(atomic_load(&dns_asked), asked + 1);
    assert_true(pt_redis_resolved());
    /* ... and once it resolved, an unchanged reload keeps it (no lookup) */
    assert_true(pt_redis_configure(&cf, err, sizeof(err)));
    assert_int_equal(atomic_load(&dns_asked), asked + 1);
    assert_false(pt_redis_retry(pt_clock_now_ms() + 1000000)); /* nothing to retry */

    /* without a reload: the control loop's timer retries off the thread, with a backoff */
    struct pt_cache_cf none = {.max_entry = 1 << 20};
    assert_true(pt_redis_configure(&none, err, sizeof(err)));
    atomic_store(&dns_up, false);
    assert_false(pt_redis_configure(&cf, err, sizeof(err)));
    uint64_t t0 = pt_clock_now_ms();
    assert_false(pt_redis_retry(t0));                               /* not at once */
    assert_false(pt_redis_retry(t0 + PT_REDIS_RETRY_MIN_MS - 100)); /* nor before the first wait */
    asked = atomic_load(&dns_asked);
    assert_true(pt_redis_retry(t0 + PT_REDIS_RETRY_MIN_MS));
    wait_retry_done();
    assert_int_equal(atomic_load(&dns_asked), asked + 1);
    assert_false(pt_redis_resolved());
    /* the wait doubles */
    assert_false(pt_redis_retry(t0 + 2 * PT_REDIS_RETRY_MIN_MS));
    atomic_store(&dns_up, true);
    assert_true(pt_redis_retry(t0 + 3 * PT_REDIS_RETRY_MIN_MS));
    wait_retry_done();
    assert_true(pt_redis_resolved());
    assert_false(pt_redis_retry(t0 + 1000000));
    pt_redis_shutdown();
    assert_false(pt_redis_configured());
    pt_redis_set_resolver(NULL);
}

/* A lookup nobody could take the answer of (no callback) is a miss now, counted, and Redis is not
   asked (REVIEW-13a L8): never "asked" with an answer that goes nowhere. */
static void no_cb_answer(void *arg, int found, pt_bytes value)
{
    (void)found, (void)value;
    ++*(int *)arg;
}

static void test_redis_lookup_without_callback(void **state)
{
    (void)state;
    pt_redis_set_resolver(fake_resolver);
    atomic_store(&dns_up, true);
    struct pt_cache_cf cf = {.max_entry = 1 << 20,
                             .redis = "redis://redis.test:6391",
                             .host = "redis.test",
                             .port = 6391,
                             .connect_timeout = 1000,
                             .command_timeout = 250};
    char err[256];
    assert_true(pt_redis_configure(&cf, err, sizeof(err)));
    struct event_base *base = event_base_new();
    assert_non_null(base);
    struct pt_redis_stats before, after;
    pt_redis_stats(&before);
    void *handle = NULL;
    assert_int_equal(pt_redis_get(base, 0, (pt_bytes){"k", 1}, NULL, NULL, &handle), 0);
    assert_null(handle);
    pt_redis_stats(&after);
    assert_int_equal(after.misses, before.misses + 1);
    assert_int_equal(after.skipped, before.skipped + 1);
    /* with a callback the same lookup is asked (the connection is being made) */
    int answers = 0;
    assert_int_equal(pt_redis_get(base, 0, (pt_bytes){"k", 1}, no_cb_answer, &answers, &handle), 1);
    assert_non_null(handle);
    pt_redis_cancel(handle);
    pt_redis_worker_end(0);
    event_base_free(base);
    pt_redis_shutdown();
    pt_redis_set_resolver(NULL);
    assert_int_equal(answers, 0);
}

/* Every value cache.maxEntry admits can be sent to Redis, even past the 16 MiB that commands may
   otherwise wait in (REVIEW-13a L6): a SET of 20 MiB with maxEntry 24m is queued while the
   connection is being made, one over maxEntry is not. */
static void test_redis_set_up_to_max_entry(void **state)
{
    (void)state;
    assert_int_equal(pt_redis_out_max(2 << 20), 16 << 20);
    assert_true(pt_redis_out_max(64ULL << 20) >= 2 * (64ULL << 20));
    pt_redis_set_resolver(fake_resolver);
    atomic_store(&dns_up, true);
    struct pt_cache_cf cf = {.max_entry = 24 << 20,
                             .redis = "redis://redis.test:6392",
                             .host = "redis.test",
                             .port = 6392,
                             .connect_timeout = 1000,
                             .command_timeout = 250};
    char err[256];
    assert_true(pt_redis_configure(&cf, err, sizeof(err)));
    struct event_base *base = event_base_new();
    size_t n = 24 << 20;
    char *big = malloc(n + 1);
    memset(big, 'x', n + 1);
    struct pt_redis_stats before, after;
    pt_redis_stats(&before);
    assert_int_equal(pt_redis_set(base, 1, (pt_bytes){"k", 1}, (pt_bytes){big, 20 << 20}, 60), 0);
    assert_int_equal(pt_redis_set(base, 1, (pt_bytes){"k2", 2}, (pt_bytes){big, n}, 60), 0);
    assert_int_equal(pt_redis_set(base, 1, (pt_bytes){"k3", 2}, (pt_bytes){big, n + 1}, 60), -1);
    pt_redis_stats(&after);
    assert_int_equal(after.stores, before.stores + 2);
    assert_int_equal(after.skipped, before.skipped + 1);
    free(big);
    pt_redis_worker_end(1);
    event_base_free(base);
    pt_redis_shutdown();
    pt_redis_set_resolver(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_put_del),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_lru_order),
        cmocka_unit_test(test_lru_across_shards),
        cmocka_unit_test(test_byte_budget),
        cmocka_unit_test(test_hostile_keys),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_node_store),
        cmocka_unit_test(test_resp_replies),
        cmocka_unit_test(test_big_shrink),
        cmocka_unit_test(test_redis_name_retried),
        cmocka_unit_test(test_off_during_a_store),
        cmocka_unit_test(test_counters_and_stamps_in_shards),
        cmocka_unit_test(test_redis_lookup_without_callback),
        cmocka_unit_test(test_redis_set_up_to_max_entry),
    };
    return cmocka_run_group_tests_name("cache", tests, NULL, NULL);
}
