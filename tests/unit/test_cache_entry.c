/*
 * test_cache_entry -- the caching family's response entries
 * (plugins/cache/entry.c): what cache-store writes reads back the same, and
 * bytes that someone else wrote (cut anywhere, any byte changed, header
 * names or values the core would refuse) read as "not an entry" -- a miss --
 * never as a crash or a read past the value.
 */
#include "cache.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The two API functions entry.c uses: an arena as a list of heap blocks freed after each test. */
struct block {
    struct block *next;
    max_align_t data[];
};
static struct block *blocks;

static void *fake_alloc(pt_call *call, size_t n)
{
    (void)call;
    struct block *b = calloc(1, sizeof(*b) + n + 1);
    if (!b)
        return NULL;
    b->next = blocks;
    blocks = b;
    return b->data;
}

static void free_blocks(void)
{
    while (blocks) {
        struct block *b = blocks;
        blocks = b->next;
        free(b);
    }
}

static struct pt_api api;

static int setup(void **state)
{
    (void)state;
    api.size = sizeof(api);
    api.alloc = fake_alloc;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free_blocks();
    return 0;
}

#define B(s) ((pt_bytes){(s), sizeof(s) - 1})

static pt_bytes sample(void)
{
    static pt_bytes names[3], values[3];
    names[0] = B("Content-Type");
    values[0] = B("application/json");
    names[1] = B("X-Empty");
    values[1] = B("");
    names[2] = B("Vary");
    values[2] = B("Accept,\tAccept-Language");
    struct cache_entry e = {200, B("OK"), 1700000000, 60, 3, names, values, B("{\"n\": 1}")};
    pt_bytes out;
    assert_int_equal(cache_entry_encode(&api, NULL, &e, &out), 0);
    return out;
}

static void round_trip(void **state)
{
    (void)state;
    pt_bytes b = sample();
    struct cache_entry e;
    assert_int_equal(cache_entry_decode(&api, NULL, b, &e), 0);
    assert_int_equal(e.status, 200);
    assert_int_equal(e.stored_at, 1700000000);
    assert_int_equal(e.ttl, 60);
    assert_int_equal(e.nheaders, 3);
    assert_true(e.reason.len == 2 && !memcmp(e.reason.data, "OK", 2));
    assert_true(e.names[2].len == 4 && !memcmp(e.names[2].data, "Vary", 4));
    assert_true(e.values[1].len == 0);
    assert_true(e.body.len == 8 && !memcmp(e.body.data, "{\"n\": 1}", 8));
}

static void empty_entry(void **state)
{
    (void)state;
    struct cache_entry e = {204, {"", 0}, 0, 1, 0, NULL, NULL, {"", 0}}, d;
    pt_bytes out;
    assert_int_equal(cache_entry_encode(&api, NULL, &e, &out), 0);
    assert_int_equal(cache_entry_decode(&api, NULL, out, &d), 0);
    assert_int_equal(d.status, 204);
    assert_int_equal(d.nheaders, 0);
    assert_int_equal(d.body.len, 0);
}

/* Every prefix is refused, and one byte more too: the body runs exactly to the end. */
static void cut_anywhere(void **state)
{
    (void)state;
    pt_bytes b = sample();
    struct cache_entry e;
    for (size_t n = 0; n < b.len; n++) {
        char *copy = malloc(n + 1); /* exactly n bytes readable (plus one never read) */
        memcpy(copy, b.data, n);
        assert_int_equal(cache_entry_decode(&api, NULL, (pt_bytes){copy, n}, &e), -1);
        free(copy);
    }
    char *longer = malloc(b.len + 1);
    memcpy(longer, b.data, b.len);
    longer[b.len] = 'x';
    assert_int_equal(cache_entry_decode(&api, NULL, (pt_bytes){longer, b.len + 1}, &e), -1);
    free(longer);
}

/* Any byte changed to any value: decoded or refused, never a crash (ASan watches the reads). */
static void every_byte_every_value(void **state)
{
    (void)state;
    pt_bytes s = sample();
    char *orig = malloc(s.len), *copy = malloc(s.len);
    memcpy(orig, s.data, s.len);
    pt_bytes b = {orig, s.len}; /* the arena is emptied below, after each decode */
    int accepted = 0;
    for (size_t i = 0; i < b.len; i++)
        for (int v = 0; v < 256; v++) {
            memcpy(copy, b.data, b.len);
            copy[i] = (char)v;
            struct cache_entry e;
            if (cache_entry_decode(&api, NULL, (pt_bytes){copy, b.len}, &e) == 0) {
                accepted++;
                assert_true(e.status >= 200 && e.status <= 599 && e.status != 206 && e.status != 304);
                assert_true(e.body.data >= copy && e.body.data + e.body.len <= copy + b.len);
            }
            free_blocks();
        }
    free(copy);
    free(orig);
    assert_true(accepted > 0); /* changes inside the body, say, still decode */
}

static void refuses_what_the_core_would(void **state)
{
    (void)state;
    static pt_bytes names[1], values[1];
    struct cache_entry e = {200, B("OK"), 1, 60, 1, names, values, B("")}, d;
    pt_bytes out;
    const char *bad_names[] = {"Bad Name", "", "X:Y", "X\r\n"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(*bad_names); i++) {
        names[0] = (pt_bytes){bad_names[i], strlen(bad_names[i])};
        values[0] = B("v");
        assert_int_equal(cache_entry_encode(&api, NULL, &e, &out), 0);
        assert_int_equal(cache_entry_decode(&api, NULL, out, &d), -1);
    }
    names[0] = B("X-Ok");
    values[0] = B("a\r\nInjected: yes");
    assert_int_equal(cache_entry_encode(&api, NULL, &e, &out), 0);
    assert_int_equal(cache_entry_decode(&api, NULL, out, &d), -1);
    values[0] = B("ok");
    e.reason = B("O\nK");
    assert_int_equal(cache_entry_encode(&api, NULL, &e, &out), 0);
    assert_int_equal(cache_entry_decode(&api, NULL, out, &d), -1);
    e.reason = B("OK");
    e.status = 42;
    assert_int_equal(cache_entry_encode(&api, NULL, &e, &out), 0);
    assert_int_equal(cache_entry_decode(&api, NULL, out, &d), -1);
}

/* Statuses cache-store never writes are someone else's bytes: an interim 1xx would leave the client
   waiting for a final answer, a 206 or a 304 is one client's; past 599 is no HTTP status. */
static void refuses_statuses_never_stored(void **state)
{
    (void)state;
    struct cache_entry e = {200, B("OK"), 1, 60, 0, NULL, NULL, B("x")}, d;
    pt_bytes out;
    const int bad[] = {0, 100, 101, 199, 206, 304, 600, 999};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        e.status = bad[i];
        assert_int_equal(cache_entry_encode(&api, NULL, &e, &out), 0);
        assert_int_equal(cache_entry_decode(&api, NULL, out, &d), -1);
    }
    const int good[] = {200, 203, 204, 301, 404, 500, 599};
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
        e.status = good[i];
        assert_int_equal(cache_entry_encode(&api, NULL, &e, &out), 0);
        assert_int_equal(cache_entry_decode(&api, NULL, out, &d), 0);
        assert_int_equal(d.status, good[i]);
    }
}

static void foreign_values(void **state)
{
    (void)state;
    struct cache_entry e;
    const char *foreign[] = {"", "PTC", "PTC2xxxxxxxxxxxxxxxxxxxxxxxxxxxx", "hello world", "{\"n\": 1}"};
    for (size_t i = 0; i < sizeof(foreign) / sizeof(*foreign); i++)
        assert_int_equal(cache_entry_decode(&api, NULL, (pt_bytes){foreign[i], strlen(foreign[i])}, &e), -1);
    /* a header count far beyond what the bytes could hold is refused before anything is allocated */
    unsigned char big[4 + 4 + 16 + 4 + 4] = {'P', 'T', 'C', '1', 200, 0, 0, 0};
    memset(big + 4 + 4 + 16 + 4, 0xff, 4);
    assert_int_equal(cache_entry_decode(&api, NULL, (pt_bytes){(const char *)big, sizeof(big)}, &e), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(cut_anywhere, setup, teardown),
        cmocka_unit_test_setup_teardown(every_byte_every_value, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_what_the_core_would, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_statuses_never_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(foreign_values, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
