/*
 * test_model_lists.c -- the entity lists a generation is built from are read
 * again only where the store was written: which lists a write of each kind
 * renews, and that the lists served after every kind of write (deletes,
 * cascades, a sweep, transactions undone) are what a fresh read of the store
 * gives (a real SQLite store); lists of one kind patched by id (only the
 * entities written read again) and read in full whenever the store cannot
 * tell what was written.
 */
#include "conf/pt_conf.h"
#include "conf/pt_model.h"
#include "conf/pt_node.h"
#include "conf/pt_store.h"

#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "store_helpers.h"

static void put_from(struct pt_store *st, const char *source, const char *kind, const char *parent,
                     const char *id, const char *json)
{
    json_t *body = json_loads(json, 0, NULL);
    assert_non_null(body);
    assert_true(pt_store_put(st, kind, parent, id, "", body, source, NULL));
    json_decref(body);
}

static void put(struct pt_store *st, const char *kind, const char *parent, const char *id, const char *json)
{
    put_from(st, "api", kind, parent, id, json);
}

/* The lists a build gets, checked against a fresh read of the store: whatever was kept from an
   earlier read must still be what the store holds. */
static json_t *lists(struct pt_store *st)
{
    struct pt_errors errs = {0};
    json_t *ents = pt_model_entities_shared(st, NULL, &errs);
    assert_non_null(ents);
    assert_int_equal(errs.n, 0);
    json_t *fresh = pt_model_entities(st, NULL, NULL, &errs);
    assert_non_null(fresh);
    assert_int_equal(errs.n, 0);
    assert_true(json_equal(ents, fresh));
    json_decref(fresh);
    return ents;
}

/* The same, when only the comparison matters. */
static void check_lists(struct pt_store *st)
{
    json_decref(lists(st));
}

static size_t list_size(const json_t *ents, const char *name)
{
    return json_array_size(json_object_get(ents, name));
}

/* true when `name` is the very list of `before` (kept, not read again) */
static bool kept(const json_t *before, const json_t *after, const char *name)
{
    const json_t *a = json_object_get(before, name);
    return a && a == json_object_get(after, name);
}

static const char *first_str(const json_t *ents, const char *list, const char *field)
{
    return json_string_value(json_object_get(json_array_get(json_object_get(ents, list), 0), field));
}

static void test_a_write_renews_the_lists_read_from_its_kind(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = open_store(dir, "modellists");
    put(st, "api", "", "a1", "{\"path\": \"a1\", \"serviceUrl\": \"http://127.0.0.1:1\"}");
    put(st, "operation", "a1", "o1", "{\"method\": \"GET\", \"urlTemplate\": \"/x\"}");
    put(st, "product", "", "p1", "{\"displayName\": \"P\", \"state\": \"published\"}");
    assert_true(pt_store_link(st, "product-api", "p1", "a1", "api"));
    put(st, "user", "", "u1", "{\"email\": \"u1@example.com\"}");
    put(st, "subscription", "", "s1",
        "{\"scope\": \"/products/p1\", \"ownerId\": \"/users/u1\", \"primaryKey\": \"k1k1k1k1k1\"}");
    json_t *e1 = lists(st);
    json_t *again = lists(st); /* nothing written: the same lists */
    assert_ptr_equal(e1, again);
    json_decref(again);

    /* a key regenerated: the subscriptions only */
    put(st, "subscription", "", "s1",
        "{\"scope\": \"/products/p1\", \"ownerId\": \"/users/u1\", \"primaryKey\": \"k2k2k2k2k2\"}");
    json_t *e2 = lists(st);
    assert_false(kept(e1, e2, "subscriptions"));
    assert_string_equal(first_str(e2, "subscriptions", "primaryKey"), "k2k2k2k2k2");
    assert_true(kept(e1, e2, "apis"));
    assert_true(kept(e1, e2, "products"));
    assert_true(kept(e1, e2, "users"));

    /* an API's policy: the lists policies go into (APIs, products) are looked at, the APIs patched
       and the products kept (none of them has that policy), not the others */
    put(st, "policy", "", "api:a1", "{\"inbound\": [\"base\"]}");
    json_t *e3 = lists(st);
    assert_false(kept(e2, e3, "apis"));
    assert_true(kept(e2, e3, "products"));
    assert_true(kept(e2, e3, "subscriptions"));
    assert_true(kept(e2, e3, "users"));
    assert_non_null(json_object_get(json_array_get(json_object_get(e3, "apis"), 0), "policies"));

    /* an operation: the APIs */
    put(st, "operation", "a1", "o2", "{\"method\": \"POST\", \"urlTemplate\": \"/y\"}");
    json_t *e4 = lists(st);
    assert_false(kept(e3, e4, "apis"));
    assert_true(kept(e3, e4, "products"));
    assert_int_equal(
        json_array_size(json_object_get(json_array_get(json_object_get(e4, "apis"), 0), "operations")), 2);

    /* a group membership: the users, and what it says is there */
    assert_true(pt_store_link(st, "group-user", "developers", "u1", "api"));
    json_t *e5 = lists(st);
    assert_false(kept(e4, e5, "users"));
    assert_true(kept(e4, e5, "apis"));
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(json_array_get(json_object_get(e5, "users"), 0), "groups"), 0)),
                        "developers");

    /* a product's API unlinked: the products */
    assert_true(pt_store_unlink(st, "product-api", "p1", "a1"));
    json_t *e6 = lists(st);
    assert_false(kept(e5, e6, "products"));
    assert_int_equal(
        json_array_size(json_object_get(json_array_get(json_object_get(e6, "products"), 0), "apis")), 0);
    assert_true(kept(e5, e6, "users"));

    /* a rollback may have undone anything: every list is read again */
    assert_true(pt_store_begin(st));
    pt_store_rollback(st);
    json_t *e7 = lists(st);
    assert_false(kept(e6, e7, "apis"));
    assert_false(kept(e6, e7, "users"));
    assert_false(kept(e6, e7, "subscriptions"));

    json_t *all[] = {e1, e2, e3, e4, e5, e6, e7};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        json_decref(all[i]);
    pt_model_entities_forget();
    close_store(st, dir);
}

/* Every kind of input and link, then deletes and the cascades of removing an entity, and the
   file's sweep: after each, the lists served are the store's. */
static void test_every_kind_of_write_is_served_as_stored(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = open_store(dir, "modellists-kinds");
    put(st, "api", "", "a1", "{\"path\": \"a1\", \"serviceUrl\": \"http://127.0.0.1:1\"}");
    check_lists(st);
    put(st, "operation", "a1", "o1", "{\"method\": \"GET\", \"urlTemplate\": \"/x\"}");
    check_lists(st);
    put(st, "policy", "", "op:a1/o1", "{\"inbound\": [\"base\"]}");
    check_lists(st);
    put(st, "workspace", "", "w1", "{\"displayName\": \"W\"}");
    check_lists(st);
    put(st, "policy", "", "workspace:w1", "{\"inbound\": [\"base\"]}");
    check_lists(st);
    put(st, "policy", "", "global", "{\"inbound\": []}");
    check_lists(st);
    put(st, "gateway", "", "g1", "{\"location\": \"here\"}");
    check_lists(st);
    assert_true(pt_store_link(st, "gateway-api", "g1", "a1", "api"));
    check_lists(st);
    put(st, "group", "", "gr", "{\"displayName\": \"G\"}");
    check_lists(st);
    put(st, "user", "", "u1", "{\"email\": \"u1@example.com\"}");
    check_lists(st);
    assert_true(pt_store_link(st, "group-user", "gr", "u1", "api"));
    check_lists(st);
    put(st, "product", "", "p1", "{\"displayName\": \"P\", \"state\": \"published\"}");
    check_lists(st);
    assert_true(pt_store_link(st, "product-api", "p1", "a1", "api"));
    check_lists(st);
    assert_true(pt_store_link(st, "product-group", "p1", "gr", "api"));
    check_lists(st);
    put(st, "policy", "", "product:p1", "{\"inbound\": [\"base\"]}");
    check_lists(st);
    put(st, "subscription", "", "s1",
        "{\"scope\": \"/products/p1\", \"ownerId\": \"/users/u1\", \"primaryKey\": \"k1k1k1k1k1\"}");
    check_lists(st);
    put(st, "namedValue", "", "nv", "{\"value\": \"v\"}");
    check_lists(st);
    put(st, "backend", "", "b1", "{\"url\": \"http://127.0.0.1:1\"}");
    check_lists(st);

    json_t *before = lists(st);
    assert_true(pt_store_delete(st, "operation", "a1", "o1"));
    check_lists(st);
    assert_true(pt_store_delete(st, "policy", "", "global"));
    json_t *after = lists(st);
    assert_null(json_object_get(after, "policies"));
    assert_true(kept(before, after, "users"));
    json_decref(before);
    json_decref(after);
    assert_true(pt_store_delete(st, "policy", "", "workspace:w1"));
    check_lists(st);
    assert_true(pt_store_unlink(st, "group-user", "gr", NULL));
    check_lists(st);

    /* removing an entity takes what hangs on it */
    assert_true(pt_model_remove(st, "gateway", "", "g1"));
    check_lists(st);
    assert_true(pt_model_remove(st, "group", "", "gr"));
    check_lists(st);
    assert_true(pt_model_remove(st, "user", "", "u1"));
    check_lists(st);
    assert_true(pt_model_remove(st, "product", "", "p1"));
    check_lists(st);
    assert_true(pt_model_remove(st, "api", "", "a1"));
    json_t *emptied = lists(st);
    assert_int_equal(list_size(emptied, "apis"), 0);
    assert_int_equal(list_size(emptied, "products"), 0);
    json_decref(emptied);

    /* the file's sweep: what the file no longer holds goes, whatever its kind */
    put_from(st, "config", "api", "", "f1", "{\"path\": \"f1\", \"serviceUrl\": \"http://127.0.0.1:1\"}");
    put_from(st, "config", "user", "", "fu", "{\"email\": \"fu@example.com\"}");
    json_t *filed = lists(st);
    assert_int_equal(list_size(filed, "users"), 1);
    json_decref(filed);
    pt_store_mark(st, "config");
    put_from(st, "config", "api", "", "f1", "{\"path\": \"f1\", \"serviceUrl\": \"http://127.0.0.1:1\"}");
    assert_int_equal(pt_store_sweep(st, "config"), 1);
    json_t *swept = lists(st);
    assert_int_equal(list_size(swept, "users"), 0);
    assert_int_equal(list_size(swept, "apis"), 1);
    json_decref(swept);

    pt_model_entities_forget();
    close_store(st, dir);
}

/* A store with an API and one subscription to it, its lists read. */
static struct pt_store *store_with_a_subscription(char dir[64], const char *name)
{
    struct pt_store *st = open_store(dir, name);
    put(st, "api", "", "a1", "{\"path\": \"a1\", \"serviceUrl\": \"http://127.0.0.1:1\"}");
    put(st, "subscription", "", "s1", "{\"scope\": \"/apis/a1\", \"primaryKey\": \"k1k1k1k1k1\"}");
    check_lists(st);
    return st;
}

/* After a transaction that was undone: a write of another kind, and the lists must not hold what
   was undone (the subscription read inside the transaction). */
static void check_undone(struct pt_store *st)
{
    assert_int_equal(pt_store_count(st, "subscription", ""), 1);
    put(st, "api", "", "a2", "{\"path\": \"a2\", \"serviceUrl\": \"http://127.0.0.1:1\"}");
    json_t *after = lists(st);
    assert_int_equal(list_size(after, "subscriptions"), 1);
    assert_int_equal(list_size(after, "apis"), 2);
    json_decref(after);
}

/* Writes, a build inside the transaction (as a management write does), then a nested step fails:
   the commit rolls everything back. */
static void test_a_transaction_rolled_back_at_its_commit_is_read_again(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = store_with_a_subscription(dir, "modellists-nested");
    assert_true(pt_store_begin(st));
    put(st, "subscription", "", "s2", "{\"scope\": \"/apis/a1\", \"primaryKey\": \"k2k2k2k2k2\"}");
    assert_true(pt_store_begin(st));
    pt_store_rollback(st);
    json_t *inside = lists(st);
    assert_int_equal(list_size(inside, "subscriptions"), 2);
    json_decref(inside);
    assert_false(pt_store_commit(st));
    check_undone(st);

    /* the same with the whole transaction rolled back by its owner */
    assert_true(pt_store_begin(st));
    put(st, "subscription", "", "s3", "{\"scope\": \"/apis/a1\", \"primaryKey\": \"k3k3k3k3k3\"}");
    check_lists(st);
    pt_store_rollback(st);
    assert_true(pt_model_remove(st, "api", "", "a2"));
    json_t *after = lists(st);
    assert_int_equal(list_size(after, "subscriptions"), 1);
    json_decref(after);

    pt_model_entities_forget();
    close_store(st, dir);
}

/* COMMIT itself fails (the log cannot grow, as on a full disk: here a file size limit) and SQLite
   rolls the transaction back. */
static void test_a_transaction_whose_commit_fails_is_read_again(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = store_with_a_subscription(dir, "modellists-commit");
    assert_true(pt_store_begin(st));
    put(st, "subscription", "", "s2", "{\"scope\": \"/apis/a1\", \"primaryKey\": \"k2k2k2k2k2\"}");
    json_t *inside = lists(st);
    assert_int_equal(list_size(inside, "subscriptions"), 2);
    json_decref(inside);

    struct rlimit old, none;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    none = old;
    none.rlim_cur = 1;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &none), 0);
    bool committed = pt_store_commit(st);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    assert_false(committed);
    check_undone(st);

    pt_model_entities_forget();
    close_store(st, dir);
}

/* The lists kept from a store are not served for another one opened after it was closed, even at
   the same address (its counters start where the first one's did): each store has a serial of its
   own.  Stores are opened and closed, each with its own key, until one comes at the address of the
   one before (bounded; an allocator that does not reuse addresses soon, as ASan's, never gives
   one, and then the serials and the lists of every store are still checked). */
static void test_a_closed_store_lists_are_not_served_for_the_next(void **state)
{
    (void)state;
    const void *last = NULL;
    uint64_t last_serial = 0;
    bool reused = false;
    for (int i = 0; i < 32 && !reused; i++) {
        char dir[64], sub[128];
        struct pt_store *st = open_store(dir, "modellists-reopen");
        reused = (const void *)st == last;
        last = st;
        assert_true(pt_store_serial(st) != last_serial);
        last_serial = pt_store_serial(st);
        snprintf(sub, sizeof(sub), "{\"scope\": \"/apis/a1\", \"primaryKey\": \"key%07d\"}", i);
        put(st, "api", "", "a1", "{\"path\": \"a1\", \"serviceUrl\": \"http://127.0.0.1:1\"}");
        put(st, "subscription", "", "s1", sub);
        json_t *ents = lists(st);
        json_t *body = json_loads(sub, 0, NULL);
        assert_string_equal(first_str(ents, "subscriptions", "primaryKey"),
                            json_string_value(json_object_get(body, "primaryKey")));
        json_decref(body);
        json_decref(ents);
        close_store(st, dir);
    }
    pt_model_entities_forget();
}

/* Which writes a generation may follow with its subscriptions alone: only subscription writes
   since the mark; any other kind, a rollback, another store: everything is built again. */
static void test_only_subscription_writes_build_the_subscriptions_alone(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = store_with_a_subscription(dir, "modellists-subsonly");
    struct pt_model_mark m = {0};
    assert_false(pt_model_subs_only(st, &m)); /* no mark taken: nothing to share */
    pt_model_mark_take(st, &m);
    assert_true(pt_model_subs_only(st, &m)); /* nothing written */
    put(st, "subscription", "", "s2", "{\"scope\": \"/apis/a1\", \"primaryKey\": \"k2k2k2k2k2\"}");
    put(st, "subscription", "", "s2", "{\"scope\": \"/apis/a1\", \"primaryKey\": \"k3k3k3k3k3\"}");
    assert_true(pt_model_subs_only(st, &m));
    assert_true(pt_model_remove(st, "subscription", "", "s2"));
    assert_true(pt_model_subs_only(st, &m));

    /* each other kind (entities and links) */
    static const char *const others[][2] = {
        {"api", "{\"path\": \"a9\", \"serviceUrl\": \"http://127.0.0.1:1\"}"},
        {"user", "{\"email\": \"u9@example.com\"}"},
        {"product", "{\"displayName\": \"P\"}"},
        {"group", "{\"displayName\": \"G\"}"},
        {"namedValue", "{\"value\": \"v\"}"},
        {"backend", "{\"url\": \"http://127.0.0.1:1\"}"},
        {"workspace", "{\"displayName\": \"W\"}"},
        {"policy", "{\"inbound\": [\"base\"]}"},
    };
    for (size_t i = 0; i < PT_ARRAY_LEN(others); i++) {
        pt_model_mark_take(st, &m);
        put(st, others[i][0], "", "x9", others[i][1]);
        assert_false(pt_model_subs_only(st, &m));
        /* a subscription written after it does not make it one */
        put(st, "subscription", "", "s3", "{\"scope\": \"/apis/a1\", \"primaryKey\": \"k4k4k4k4k4\"}");
        assert_false(pt_model_subs_only(st, &m));
    }
    const char *links[][3] = {{"product-api", "x9", "a1"}, {"group-user", "developers", "x9"}};
    for (size_t i = 0; i < PT_ARRAY_LEN(links); i++) {
        pt_model_mark_take(st, &m);
        assert_true(pt_store_link(st, links[i][0], links[i][1], links[i][2], "api"));
        assert_false(pt_model_subs_only(st, &m));
    }

    /* a transaction undone may have undone anything */
    pt_model_mark_take(st, &m);
    assert_true(pt_store_begin(st));
    put(st, "subscription", "", "s4", "{\"scope\": \"/apis/a1\", \"primaryKey\": \"k5k5k5k5k5\"}");
    assert_true(pt_model_subs_only(st, &m));
    pt_store_rollback(st);
    assert_false(pt_model_subs_only(st, &m));

    /* another store's counters say nothing of this one's */
    pt_model_mark_take(st, &m);
    char dir2[64];
    struct pt_store *other = open_store(dir2, "modellists-subsonly2");
    assert_false(pt_model_subs_only(other, &m));
    close_store(other, dir2);

    pt_model_entities_forget();
    close_store(st, dir);
}

/* The errors of a whole build (the configuration, then its references) for what the store holds. */
static void full_errors(struct pt_store *st, const struct pt_conf *file, struct pt_errors *errs)
{
    struct pt_conf *cf = pt_model_build(st, file, NULL, errs);
    if (cf) {
        pt_conf_check_refs(cf, errs);
        pt_conf_free(cf);
    }
}

/* A bad subscription write is refused by the subscriptions-only build with the very messages of
   the whole build, and a good one gives the subscriptions a whole build would. */
static void test_the_subscriptions_alone_are_checked_as_a_whole_build_checks_them(void **state)
{
    (void)state;
    static const char text[] = "listen: \"127.0.0.1:1\"\nsamples: false\n";
    struct pt_errors errs = {0};
    struct pt_conf *file = pt_conf_parse("portico.yaml", text, sizeof(text) - 1, &errs);
    assert_non_null(file);
    char dir[64];
    struct pt_store *st = open_store(dir, "modellists-subscheck");
    put(st, "workspace", "", "w1", "{\"displayName\": \"W1\"}");
    put(st, "workspace", "", "w2", "{\"displayName\": \"W2\"}");
    put(st, "api", "", "a1", "{\"path\": \"a1\", \"serviceUrl\": \"http://127.0.0.1:1\"}");
    put(st, "product", "", "p1", "{\"displayName\": \"P1\", \"state\": \"published\"}");
    put(st, "product", "", "plim",
        "{\"displayName\": \"L\", \"state\": \"published\", \"subscriptionsLimit\": 1}");
    json_t *pw2 =
        json_loads("{\"displayName\": \"P2\", \"state\": \"published\", \"workspace\": \"w2\"}", 0, NULL);
    assert_true(pt_store_put(st, "product", "", "pw2", "w2", pw2, "api", NULL));
    json_decref(pw2);
    assert_true(pt_store_link(st, "product-api", "p1", "a1", "api"));
    put(st, "user", "", "u1", "{\"email\": \"u1@example.com\"}");
    put(st, "subscription", "", "s1",
        "{\"scope\": \"/products/p1\", \"ownerId\": \"/users/u1\", \"primaryKey\": \"k1k1k1k1k1\", "
        "\"state\": \"active\"}");
    put(st, "subscription", "", "s2",
        "{\"scope\": \"/products/plim\", \"ownerId\": \"/users/u1\", \"state\": \"active\"}");
    struct pt_conf *base = pt_model_build(st, file, NULL, &errs);
    assert_non_null(base);
    assert_true(pt_conf_check_refs(base, &errs));
    assert_int_equal(errs.n, 0);

    static const struct {
        const char *workspace, *json;
    } bad[] = {
        {"", "{\"scope\": \"/products/nope\"}"},
        {"w1", "{\"scope\": \"/products/pw2\", \"workspace\": \"w1\"}"},
        {"w1", "{\"scope\": \"/apis\", \"workspace\": \"w1\"}"},
        {"", "{\"scope\": \"/apis/a1\", \"ownerId\": \"/users/ghost\"}"},
        {"", "{\"scope\": \"/apis/a1\", \"primaryKey\": \"k1k1k1k1k1\"}"},
        {"", "{\"scope\": \"/products/plim\", \"ownerId\": \"/users/u1\", \"state\": \"active\"}"},
        {"", "{\"scope\": \"/things/x\"}"},
        {"w9", "{\"scope\": \"/apis/a1\", \"workspace\": \"w9\"}"},
    };
    for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++) {
        assert_true(pt_store_begin(st));
        json_t *body = json_loads(bad[i].json, 0, NULL);
        assert_true(pt_store_put(st, "subscription", "", "bad", bad[i].workspace, body, "api", NULL));
        json_decref(body);
        struct pt_errors whole = {0}, alone = {0};
        full_errors(st, file, &whole);
        struct pt_conf *cf = pt_model_build_subs(st, file, base, NULL, &alone);
        if (cf) {
            assert_false(pt_conf_check_subs(cf, &alone));
            pt_conf_free(cf);
        }
        assert_true(whole.n > 0);
        assert_int_equal(whole.n, alone.n);
        for (int k = 0; k < whole.n; k++)
            assert_string_equal(whole.msgs[k], alone.msgs[k]);
        pt_node_errors_clear(&whole);
        pt_node_errors_clear(&alone);
        pt_store_rollback(st);
    }

    /* a good one: every subscription, linked to nothing else than the base's */
    put(st, "subscription", "", "s3", "{\"scope\": \"/apis/a1\", \"primaryKey\": \"k3k3k3k3k3\"}");
    struct pt_conf *cf = pt_model_build_subs(st, file, base, NULL, &errs);
    assert_non_null(cf);
    assert_true(pt_conf_check_subs(cf, &errs));
    assert_int_equal(errs.n, 0);
    assert_int_equal(cf->nsubs, 3);
    assert_ptr_equal(cf->shares, base);
    assert_ptr_equal(cf->apis, base->apis);
    assert_int_equal(base->nsubs, 2); /* the base is left as it was */
    assert_string_equal(cf->subs[2].primary_key, "k3k3k3k3k3");
    pt_conf_free(cf);

    pt_conf_free(base);
    pt_conf_free(file);
    pt_model_entities_forget();
    close_store(st, dir);
}

/* ------------------------------------------------ subscriptions patched by id */

/* A sealer for tests: "v1:" and the text reversed (a real one encrypts; what matters here is that
   every read unseals). */
static char *reverse_seal(void *arg, const char *in)
{
    (void)arg;
    size_t n = strlen(in);
    char *out = malloc(n + 4);
    assert_non_null(out);
    memcpy(out, "v1:", 3);
    for (size_t i = 0; i < n; i++)
        out[3 + i] = in[n - 1 - i];
    out[n + 3] = '\0';
    return out;
}

static char *reverse_unseal(void *arg, const char *in)
{
    (void)arg;
    if (strncmp(in, "v1:", 3))
        return NULL;
    in += 3;
    size_t n = strlen(in);
    char *out = malloc(n + 1);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++)
        out[i] = in[n - 1 - i];
    out[n] = '\0';
    return out;
}

static void put_sub(struct pt_store *st, const char *id, int key)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"scope\": \"/apis/a1\", \"primaryKey\": \"key-%s-%06d\"}", id, key);
    put(st, "subscription", "", id, body);
}

/* The entry of `id` in a list, or NULL. */
static const json_t *entry(const json_t *ents, const char *list, const char *id)
{
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(ents, list), i, e)
    {
        if (!strcmp(json_string_value(json_object_get(e, "id")), id))
            return e;
    }
    return NULL;
}

/* How many entries of `after`'s list are the very objects of `before`'s (kept, not read again). */
static size_t entries_kept(const json_t *before, const json_t *after, const char *list)
{
    size_t n = 0, i;
    const json_t *e;
    json_array_foreach(json_object_get(after, list), i, e)
    {
        n += entry(before, list, json_string_value(json_object_get(e, "id"))) == e;
    }
    return n;
}

/* Lists read after `before`: only the entry `id` of the subscriptions was read again (gone, when
   `gone`), every other entry kept; every other list kept.  Returns the new lists. */
static json_t *patched(struct pt_store *st, json_t *before, const char *id, bool gone)
{
    json_t *after = lists(st);
    size_t n = list_size(after, "subscriptions");
    assert_int_equal(entries_kept(before, after, "subscriptions"), gone ? n : n - 1);
    if (gone)
        assert_null(entry(after, "subscriptions", id));
    else
        assert_true(entry(after, "subscriptions", id) != entry(before, "subscriptions", id));
    assert_true(kept(before, after, "apis"));
    json_decref(before);
    return after;
}

/* New subscriptions before, between and after the others, keys regenerated, deletes (the first,
   the last, one that is not there): each read again alone, sealed keys unsealed, and the list
   always the store's (lists() compares with a whole read). */
static void test_subscription_writes_patch_the_list_by_id(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = open_store(dir, "modellists-patch");
    pt_store_set_sealer(st, reverse_seal, reverse_unseal, NULL);
    put(st, "api", "", "a1", "{\"path\": \"a1\", \"serviceUrl\": \"http://127.0.0.1:1\"}");
    put_sub(st, "s10", 0);
    put_sub(st, "s20", 0);
    put_sub(st, "s30", 0);
    json_t *e = lists(st);
    json_t *raw = NULL;
    assert_true(pt_store_get(st, "subscription", "", "s10", &raw, NULL));
    assert_string_equal(json_string_value(json_object_get(raw, "primaryKey")), "key-s10-000000");
    json_decref(raw);

    static const char *const news[] = {"s05", "s15", "s35", "s300", "s1"};
    for (size_t i = 0; i < PT_ARRAY_LEN(news); i++) {
        put_sub(st, news[i], 0);
        e = patched(st, e, news[i], false);
    }
    for (int k = 1; k <= 3; k++) { /* keys regenerated, each served at once */
        put_sub(st, "s20", k);
        e = patched(st, e, "s20", false);
        char want[32];
        snprintf(want, sizeof(want), "key-s20-%06d", k);
        assert_string_equal(
            json_string_value(json_object_get(entry(e, "subscriptions", "s20"), "primaryKey")), want);
    }
    assert_true(pt_model_remove(st, "subscription", "", "s1")); /* the first */
    e = patched(st, e, "s1", true);
    assert_true(pt_model_remove(st, "subscription", "", "s35")); /* the last */
    e = patched(st, e, "s35", true);
    assert_false(pt_store_delete(st, "subscription", "", "nope"));
    e = patched(st, e, "nope", true);
    put_sub(st, "s20", 9); /* regenerated twice, deleted, back: read once */
    put_sub(st, "s20", 10);
    assert_true(pt_store_delete(st, "subscription", "", "s20"));
    put_sub(st, "s20", 11);
    e = patched(st, e, "s20", false);

    /* one deleted until none is left, then the first one again */
    while (list_size(e, "subscriptions")) {
        char id[64];
        snprintf(id, sizeof(id), "%s", first_str(e, "subscriptions", "id"));
        assert_true(pt_store_delete(st, "subscription", "", id));
        e = patched(st, e, id, true);
    }
    assert_null(json_object_get(e, "subscriptions"));
    put_sub(st, "s50", 0);
    json_t *one = lists(st);
    assert_int_equal(list_size(one, "subscriptions"), 1);
    json_decref(one);

    json_decref(e);
    pt_model_entities_forget();
    close_store(st, dir);
}

/* What the store cannot tell by id makes the list read again in full: a transaction undone (a write
   failing half-way), the sweep, a reseal, a sealer set, more writes than are remembered, another
   store.  Checked by the entries (none kept) and by the content (lists() compares). */
static void test_what_the_store_cannot_tell_reads_the_subscriptions_again(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = open_store(dir, "modellists-patchfull");
    put(st, "api", "", "a1", "{\"path\": \"a1\", \"serviceUrl\": \"http://127.0.0.1:1\"}");
    put_sub(st, "s1", 0); /* plain, before any sealer: the reseal below rewrites it */
    put_sub(st, "s2", 0);
    json_t *e = lists(st);

    /* a sealer set: what keys read as may change */
    pt_store_set_sealer(st, reverse_seal, reverse_unseal, NULL);
    json_t *after = lists(st);
    assert_int_equal(entries_kept(e, after, "subscriptions"), 0);
    json_decref(e);
    e = after;

    /* the reseal rewrites the plain keys (the same as read) */
    assert_int_equal(pt_store_reseal(st), 2);
    after = lists(st);
    assert_int_equal(entries_kept(e, after, "subscriptions"), 0);
    json_decref(e);
    e = after;

    /* a write failing half-way: a subscription written, then one that cannot be stored (a NUL),
       the transaction undone */
    assert_true(pt_store_begin(st));
    put_sub(st, "s3", 0);
    put_sub(st, "s1", 1);
    json_t *nul = json_pack("{s:s#}", "scope", "/apis/a\0x", 9);
    assert_false(pt_store_put(st, "subscription", "", "s4", "", nul, "api", NULL));
    json_decref(nul);
    json_t *inside = lists(st); /* a build inside the transaction sees its writes */
    assert_int_equal(list_size(inside, "subscriptions"), 3);
    pt_store_rollback(st);
    after = lists(st);
    assert_int_equal(list_size(after, "subscriptions"), 2);
    assert_int_equal(entries_kept(inside, after, "subscriptions"), 0);
    assert_string_equal(json_string_value(json_object_get(entry(after, "subscriptions", "s1"), "primaryKey")),
                        "key-s1-000000");
    json_decref(inside);
    json_decref(e);
    e = after;

    /* the file's sweep */
    put_sub(st, "s3", 0);
    e = patched(st, e, "s3", false);
    put_from(st, "config", "subscription", "", "f1",
             "{\"scope\": \"/apis/a1\", \"primaryKey\": \"fkfkfkfkfk\"}");
    e = patched(st, e, "f1", false);
    pt_store_mark(st, "config");
    assert_int_equal(pt_store_sweep(st, "config"), 1);
    after = lists(st);
    assert_null(entry(after, "subscriptions", "f1"));
    assert_int_equal(entries_kept(e, after, "subscriptions"), 0);
    json_decref(e);
    e = after;

    /* more writes between two reads than the store remembers: bounded, then a whole read */
    for (int k = 0; k < 600; k++)
        put_sub(st, "s2", k);
    after = lists(st);
    assert_int_equal(entries_kept(e, after, "subscriptions"), 0);
    assert_string_equal(json_string_value(json_object_get(entry(after, "subscriptions", "s2"), "primaryKey")),
                        "key-s2-000599");
    json_decref(e);
    e = after;
    put_sub(st, "s2", 600); /* and patched again after it */
    e = patched(st, e, "s2", false);

    /* an operation has a parent: a write of another kind with a parent leaves the subscriptions */
    put(st, "operation", "a1", "s2", "{\"method\": \"GET\", \"urlTemplate\": \"/x\"}");
    after = lists(st);
    assert_true(kept(e, after, "subscriptions"));
    json_decref(e);
    e = after;

    json_decref(e);
    pt_model_entities_forget();
    close_store(st, dir);
}

/* The store's journal itself: the ids written since a reading, or false when it cannot tell. */
static bool collect_written(void *arg, const char *parent, const char *id)
{
    char *out = arg;
    size_t n = strlen(out);
    snprintf(out + n, 256 - n, "%s%s/%s", n ? "," : "", parent, id);
    return true;
}

static void test_the_store_tells_the_ids_written_since_a_reading(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = open_store(dir, "modellists-journal");
    char got[256] = "";
    uint64_t v = pt_store_kind_writes(st, "subscription"), any = pt_store_any_writes(st);
    assert_true(pt_store_written_ids(st, "subscription", v, any, collect_written, got));
    assert_string_equal(got, ""); /* nothing yet */
    put_sub(st, "s1", 0);
    put(st, "api", "", "a1", "{\"path\": \"a1\", \"serviceUrl\": \"http://127.0.0.1:1\"}");
    assert_true(pt_store_delete(st, "subscription", "", "s1"));
    put(st, "subscription", "x", "s2", "{}");
    assert_true(pt_store_written_ids(st, "subscription", v, any, collect_written, got));
    assert_string_equal(got, "/s1,/s1,x/s2");
    got[0] = '\0';
    assert_true(pt_store_written_ids(st, "api", pt_store_kind_writes(st, "api"), any, collect_written, got));
    assert_string_equal(got, "");
    assert_false(pt_store_written_ids(st, "product-api", v + 1, any, collect_written, got)); /* never */

    /* a link kind is counted, never journaled: it cannot be told by id */
    uint64_t lv = pt_store_kind_writes(st, "product-api");
    assert_true(pt_store_link(st, "product-api", "p", "a1", "api"));
    assert_false(pt_store_written_ids(st, "product-api", lv, any, collect_written, got));

    /* a rollback: nothing can be told about anything read before it */
    v = pt_store_kind_writes(st, "subscription");
    assert_true(pt_store_begin(st));
    put_sub(st, "s3", 0);
    pt_store_rollback(st);
    assert_false(pt_store_written_ids(st, "subscription", v, any, collect_written, got));
    close_store(st, dir);
}

/* A long bounded run of subscription writes mixed with other kinds, transactions undone and
   committed, compared with a whole read after each step (deterministic sequence). */
static void test_a_long_run_of_writes_patches_as_a_whole_read_reads(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = open_store(dir, "modellists-run");
    pt_store_set_sealer(st, reverse_seal, reverse_unseal, NULL);
    put(st, "api", "", "a1", "{\"path\": \"a1\", \"serviceUrl\": \"http://127.0.0.1:1\"}");
    unsigned r = 12345;
    for (int step = 0; step < 400; step++) {
        r = r * 1103515245u + 12345u;
        unsigned op = (r >> 16) % 10, n = (r >> 8) % 40;
        char id[16];
        snprintf(id, sizeof(id), "s%u", n);
        if (op < 5)
            put_sub(st, id, step);
        else if (op < 8)
            pt_store_delete(st, "subscription", "", id);
        else if (op == 8) {
            assert_true(pt_store_begin(st));
            put_sub(st, id, step);
            if (n % 2)
                pt_store_rollback(st);
            else
                assert_true(pt_store_commit(st));
        } else
            put(st, "group", "", id, "{\"displayName\": \"G\"}");
        check_lists(st);
    }
    pt_model_entities_forget();
    close_store(st, dir);
}

/* true when id's entry is the very object of `before` (kept, not read again) */
static bool same_entry(const json_t *before, const json_t *after, const char *list, const char *id)
{
    const json_t *a = entry(before, list, id);
    return a && a == entry(after, list, id);
}

/* The APIs, products and workspaces (lists read from several kinds) are patched by the entities
   their written rows belong to: an API's or operation's policy, an operation, a product's or a
   workspace's policy read that entity again and keep the others as they were; another scope's
   policy keeps the list; a link (not journaled) reads the products in full.  Then a long mixed run,
   every step checked against a fresh read. */
static void test_lists_of_several_kinds_are_patched_by_owner(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = open_store(dir, "modellists-owner");
    const char *apis[] = {"a1", "a2", "a3"};
    for (int i = 0; i < 3; i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"path\": \"%s\", \"serviceUrl\": \"http://127.0.0.1:1\"}", apis[i]);
        put(st, "api", "", apis[i], body);
        put(st, "operation", apis[i], "o1", "{\"method\": \"GET\", \"urlTemplate\": \"/x\"}");
    }
    put(st, "product", "", "p1", "{\"displayName\": \"P1\", \"state\": \"published\"}");
    put(st, "product", "", "p2", "{\"displayName\": \"P2\", \"state\": \"published\"}");
    assert_true(pt_store_link(st, "product-api", "p1", "a1", "api"));
    put(st, "workspace", "", "w1", "{\"displayName\": \"W1\"}");
    put(st, "workspace", "", "w2", "{\"displayName\": \"W2\"}");
    json_t *e1 = lists(st);

    put(st, "policy", "", "api:a2", "{\"inbound\": [\"base\"]}");
    json_t *e2 = lists(st);
    assert_true(same_entry(e1, e2, "apis", "a1") && same_entry(e1, e2, "apis", "a3"));
    assert_false(same_entry(e1, e2, "apis", "a2"));
    assert_non_null(json_object_get(entry(e2, "apis", "a2"), "policies"));
    assert_true(kept(e1, e2, "products") && kept(e1, e2, "workspaces"));

    put(st, "policy", "", "op:a3/o1", "{\"inbound\": [\"base\"]}");
    json_t *e3 = lists(st);
    assert_true(same_entry(e2, e3, "apis", "a1") && same_entry(e2, e3, "apis", "a2"));
    assert_false(same_entry(e2, e3, "apis", "a3"));
    assert_non_null(json_object_get(json_array_get(json_object_get(entry(e3, "apis", "a3"), "operations"), 0),
                                    "policies"));

    assert_true(pt_store_delete(st, "operation", "a1", "o1"));
    json_t *e4 = lists(st);
    assert_false(same_entry(e3, e4, "apis", "a1"));
    assert_true(same_entry(e3, e4, "apis", "a2") && same_entry(e3, e4, "apis", "a3"));
    assert_int_equal(json_array_size(json_object_get(entry(e4, "apis", "a1"), "operations")), 0);

    put(st, "policy", "", "product:p2", "{\"inbound\": [\"base\"]}");
    put(st, "policy", "", "workspace:w1", "{\"inbound\": [\"base\"]}");
    json_t *e5 = lists(st);
    assert_true(kept(e4, e5, "apis"));
    assert_true(same_entry(e4, e5, "products", "p1") && !same_entry(e4, e5, "products", "p2"));
    assert_true(same_entry(e4, e5, "workspaces", "w2") && !same_entry(e4, e5, "workspaces", "w1"));

    put(st, "policy", "", "global", "{\"inbound\": []}");
    json_t *e6 = lists(st);
    assert_true(kept(e5, e6, "apis") && kept(e5, e6, "products") && kept(e5, e6, "workspaces"));

    assert_true(pt_store_link(st, "product-api", "p2", "a2", "api"));
    json_t *e7 = lists(st);
    assert_false(same_entry(e6, e7, "products", "p1")); /* a link: read in full */
    assert_int_equal(json_array_size(json_object_get(entry(e7, "products", "p2"), "apis")), 1);

    assert_true(pt_store_delete(st, "api", "", "a3"));
    json_t *e8 = lists(st);
    assert_null(entry(e8, "apis", "a3"));
    assert_true(same_entry(e7, e8, "apis", "a1"));

    json_t *all[] = {e1, e2, e3, e4, e5, e6, e7, e8};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        json_decref(all[i]);

    /* a long mixed run over the kinds these lists read */
    unsigned r = 4242;
    for (int step = 0; step < 300; step++) {
        r = r * 1103515245u + 12345u;
        unsigned op = (r >> 16) % 12, n = (r >> 8) % 6;
        char id[16], pid[48], body[128];
        snprintf(id, sizeof(id), "a%u", n);
        snprintf(body, sizeof(body), "{\"path\": \"%s\", \"displayName\": \"step %d\"}", id, step);
        if (op == 0)
            put(st, "api", "", id, body);
        else if (op == 1)
            pt_store_delete(st, "api", "", id);
        else if (op == 2)
            put(st, "operation", id, n % 2 ? "o1" : "o2", "{\"method\": \"GET\", \"urlTemplate\": \"/z\"}");
        else if (op == 3)
            pt_store_delete(st, "operation", id, "o1");
        else if (op == 4 || op == 5) {
            snprintf(pid, sizeof(pid), op == 4 ? "api:%s" : "op:%s/o1", id);
            put(st, "policy", "", pid, "{\"outbound\": [\"base\"]}");
        } else if (op == 6) {
            snprintf(pid, sizeof(pid), "product:p%u", n % 3);
            if (n % 2)
                put(st, "policy", "", pid, "{\"inbound\": [\"base\"]}");
            else
                pt_store_delete(st, "policy", "", pid);
        } else if (op == 7) {
            snprintf(pid, sizeof(pid), "p%u", n % 3);
            put(st, "product", "", pid, "{\"displayName\": \"P\", \"state\": \"published\"}");
        } else if (op == 8) {
            snprintf(pid, sizeof(pid), "p%u", n % 3);
            if (n % 2)
                pt_store_link(st, "product-api", pid, id, "api");
            else
                pt_store_unlink(st, "product-api", pid, id);
        } else if (op == 9) {
            snprintf(pid, sizeof(pid), "workspace:w%u", n % 2 + 1);
            put(st, "policy", "", pid, "{\"inbound\": [\"base\"]}");
        } else if (op == 10) {
            assert_true(pt_store_begin(st));
            put(st, "api", "", id, body);
            if (n % 2)
                pt_store_rollback(st);
            else
                assert_true(pt_store_commit(st));
        } else
            put(st, "group", "", id, "{\"displayName\": \"G\"}");
        check_lists(st);
    }
    pt_model_entities_forget();
    close_store(st, dir);
}

/* The line of the file where `id` is declared ("  - id: ID"), or 0. */
static int line_of(const char *text, const char *id)
{
    char want[64];
    snprintf(want, sizeof(want), "- id: %s\n", id);
    int line = 1;
    for (const char *p = text; *p; p++) {
        if (!strncmp(p, want, strlen(want)))
            return line;
        line += *p == '\n';
    }
    return 0;
}

/* ------------------------------------------------ the file applied again */

/* A sealer that seals the same text differently every time, as a real one does (a counter where a
   real one has a random nonce): "v1:", the counter's letter, the text reversed. */
static int salt;
static char *salted_seal(void *arg, const char *in)
{
    char *r = reverse_seal(arg, in);
    size_t n = strlen(r);
    char *out = malloc(n + 2);
    assert_non_null(out);
    memcpy(out, "v1:", 3);
    out[3] = (char)('a' + salt++ % 26);
    memcpy(out + 4, r + 3, n - 2);
    free(r);
    return out;
}

static char *salted_unseal(void *arg, const char *in)
{
    if (strncmp(in, "v1:", 3) || !in[3])
        return NULL;
    char *r = malloc(strlen(in));
    assert_non_null(r);
    memcpy(r, "v1:", 3);
    strcpy(r + 3, in + 4);
    char *out = reverse_unseal(arg, r);
    free(r);
    return out;
}

static void etag_of(struct pt_store *st, const char *kind, const char *id, char tag[24])
{
    json_t *body = NULL;
    assert_true(pt_store_get(st, kind, "", id, &body, tag));
    json_decref(body);
}

static void put_in(struct pt_store *st, const char *kind, const char *id, const char *ws, const char *json)
{
    json_t *body = json_loads(json, 0, NULL);
    assert_non_null(body);
    assert_true(pt_store_put(st, kind, "", id, ws, body, "config", NULL));
    json_decref(body);
}

/* One application of "the file": the entities put under a new mark, unchanged ones kept. */
static void apply_begin(struct pt_store *st)
{
    usleep(2000); /* the mark is the wall clock's milliseconds: a new one */
    assert_true(pt_store_begin(st));
    pt_store_mark(st, "config");
    pt_store_keep_unchanged(st, true);
}

static void apply_end(struct pt_store *st)
{
    pt_store_keep_unchanged(st, false);
    assert_true(pt_store_commit(st));
}

#define SUB1 "{\"scope\": \"/apis/a1\", \"primaryKey\": \"key-s1-000001\"}"

/* The file applied again (pt_store_keep_unchanged): what it declares as stored keeps its ETag and
   moves no write counter, so every list is kept; a sealed kind is compared unsealed (its stored
   text differs at every seal); deleting or unlinking what is not there and linking what is write
   nothing either; a changed body, workspace or source is written, with a new ETag; the sweep keeps
   what was put again unchanged and takes what was not declared.  Outside it (a management write),
   the same body is written again with a new ETag, as before. */
static void test_the_file_applied_again_writes_only_what_changed(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = open_store(dir, "again");
    pt_store_set_sealer(st, salted_seal, salted_unseal, NULL);
    apply_begin(st);
    put_in(st, "api", "a1", "", "{\"path\": \"a1\", \"displayName\": \"A1\"}");
    put_in(st, "api", "a2", "", "{\"path\": \"a2\", \"displayName\": \"A2\"}");
    put_in(st, "product", "p1", "", "{\"displayName\": \"P1\"}");
    put_in(st, "subscription", "s1", "", SUB1);
    assert_true(pt_store_link(st, "product-api", "p1", "a1", "config"));
    apply_end(st);
    char a1[24], a2[24], s1[24], again[24];
    etag_of(st, "api", "a1", a1);
    etag_of(st, "api", "a2", a2);
    etag_of(st, "subscription", "s1", s1);
    json_t *before = lists(st);
    uint64_t writes = pt_store_entity_writes(st);

    /* the same again: nothing written, the ETags kept, every list kept */
    apply_begin(st);
    put_in(st, "api", "a1", "", "{\"displayName\": \"A1\", \"path\": \"a1\"}"); /* keys in another order */
    put_in(st, "api", "a2", "", "{\"path\": \"a2\", \"displayName\": \"A2\"}");
    put_in(st, "product", "p1", "", "{\"displayName\": \"P1\"}");
    put_in(st, "subscription", "s1", "", SUB1);
    json_t *read = NULL;
    assert_true(pt_store_get(st, "subscription", "", "s1", &read, NULL));
    json_t *body = json_loads(SUB1, 0, NULL);
    assert_true(pt_store_put_read(st, "subscription", "", "s1", "", body, "config", again, read));
    assert_string_equal(again, s1); /* compared with what the caller read */
    json_decref(body);
    json_decref(read);
    assert_true(pt_store_link(st, "product-api", "p1", "a1", "config"));
    assert_false(pt_store_delete(st, "api", "", "not-there"));
    assert_true(pt_store_unlink(st, "product-api", "p1", "not-there"));
    assert_int_equal(pt_store_sweep(st, "config"), 0);
    apply_end(st);
    assert_int_equal(pt_store_entity_writes(st), writes);
    etag_of(st, "api", "a1", again);
    assert_string_equal(again, a1);
    etag_of(st, "subscription", "s1", again);
    assert_string_equal(again, s1);
    json_t *after = lists(st);
    assert_true(kept(before, after, "apis") && kept(before, after, "products") &&
                kept(before, after, "subscriptions"));
    json_decref(before);
    before = after;

    /* a changed body, a changed workspace, a changed key: written, with new ETags; a2 not declared */
    apply_begin(st);
    put_in(st, "api", "a1", "", "{\"path\": \"a1\", \"displayName\": \"A1 renamed\"}");
    put_in(st, "product", "p1", "w1", "{\"displayName\": \"P1\"}");
    put_in(st, "subscription", "s1", "", "{\"scope\": \"/apis/a1\", \"primaryKey\": \"key-s1-000002\"}");
    assert_true(pt_store_link(st, "product-api", "p1", "a1", "config"));
    assert_int_equal(pt_store_sweep(st, "config"), 1); /* a2 */
    apply_end(st);
    assert_true(pt_store_entity_writes(st) > writes);
    etag_of(st, "api", "a1", again);
    assert_string_not_equal(again, a1);
    etag_of(st, "subscription", "s1", again);
    assert_string_not_equal(again, s1);
    assert_false(pt_store_get(st, "api", "", "a2", &read, NULL));
    after = lists(st);
    assert_string_equal(first_str(after, "apis", "displayName"), "A1 renamed");
    assert_int_equal(list_size(after, "apis"), 1);
    json_decref(before);
    json_decref(after);

    /* a source of its own: the same body from the management API is written */
    etag_of(st, "api", "a1", a1);
    apply_begin(st);
    body = json_loads("{\"path\": \"a1\", \"displayName\": \"A1 renamed\"}", 0, NULL);
    assert_true(pt_store_put(st, "api", "", "a1", "", body, "api", NULL));
    apply_end(st);
    etag_of(st, "api", "a1", again);
    assert_string_not_equal(again, a1);
    /* a management write (not applying the file): the same body gets a new ETag, as always */
    memcpy(a1, again, sizeof(a1));
    assert_true(pt_store_begin(st));
    assert_true(pt_store_put(st, "api", "", "a1", "", body, "api", NULL));
    assert_true(pt_store_commit(st));
    etag_of(st, "api", "a1", again);
    assert_string_not_equal(again, a1);
    json_decref(body);
    close_store(st, dir);
}

/* A secret stored in plain (before sealing was set up, or a reseal that failed) is written again,
   sealed, by the next application of the file, even though it says the same. */
static void test_a_secret_stored_in_plain_is_sealed_when_applied_again(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = open_store(dir, "again-plain");
    apply_begin(st);
    put_in(st, "subscription", "s1", "", SUB1); /* no sealer yet: stored in plain */
    apply_end(st);
    char before[24], after[24];
    etag_of(st, "subscription", "s1", before);
    pt_store_set_sealer(st, salted_seal, salted_unseal, NULL);
    apply_begin(st);
    put_in(st, "subscription", "s1", "", SUB1);
    apply_end(st);
    etag_of(st, "subscription", "s1", after);
    assert_string_not_equal(before, after); /* written again: sealed now */
    apply_begin(st);
    put_in(st, "subscription", "s1", "", SUB1);
    apply_end(st);
    etag_of(st, "subscription", "s1", before);
    assert_string_equal(before, after); /* sealed and the same: kept */
    close_store(st, dir);
}

/* ------------------------------------ what the file gave, trusted while nothing else wrote */

#define GIVEN_HEAD                                                                                           \
    "listen: \"127.0.0.1:1\"\n"                                                                              \
    "samples: false\n"                                                                                       \
    "apis:\n"                                                                                                \
    "  - id: a1\n"                                                                                           \
    "    path: a1\n"                                                                                         \
    "    serviceUrl: http://127.0.0.1:1\n"                                                                   \
    "    operations:\n"                                                                                      \
    "      - id: o1\n"                                                                                       \
    "        method: GET\n"
#define GIVEN_A2                                                                                             \
    "  - id: a2\n"                                                                                           \
    "    path: a2\n"                                                                                         \
    "    serviceUrl: http://127.0.0.1:1\n"
#define GIVEN_NV                                                                                             \
    "namedValues:\n"                                                                                         \
    "  - id: nv1\n"                                                                                          \
    "    value: hush\n"                                                                                      \
    "    secret: true\n"

static void apply_text(struct pt_store *st, const char *text, const char *key)
{
    struct pt_errors errs = {0};
    struct pt_conf *file = pt_conf_parse("portico.yaml", text, strlen(text), &errs);
    for (int i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    assert_non_null(file);
    assert_true(pt_model_apply_file(st, file, key, &errs));
    assert_int_equal(errs.n, 0);
    pt_conf_free(file);
}

/* Changes a row behind the store's back (as no part of Portico does): what a read would find. */
static void raw_template(struct pt_store *st, const char *tpl)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "UPDATE entities SET body = json_set(body, '$.urlTemplate', '%s')"
             " WHERE kind = 'operation' AND parent = 'a1' AND id = 'o1'",
             tpl);
    assert_int_equal(sqlite3_exec(pt_store_sqlite(st), sql, NULL, NULL, NULL), SQLITE_OK);
}

static const char *stored_template(struct pt_store *st, char out[64])
{
    json_t *body = NULL;
    assert_true(pt_store_get(st, "operation", "a1", "o1", &body, NULL));
    snprintf(out, 64, "%s", json_string_value(json_object_get(body, "urlTemplate")));
    json_decref(body);
    return out;
}

/* The file applied again passes over what it gives unchanged without reading it, as long as the
   store can name every write since the last application: a row changed behind its back stays as
   it is (the proof that it was not read), and is made again from the file after anything the
   store cannot name or that touched it -- a write to the row (through the store), a rollback,
   more writes than its journal holds, a new process.  Removals still go (the sweep reads the
   store when a row the last application declared is missing), and a secret is sealed again
   under a new key. */
static void test_the_file_given_again_is_passed_over_while_nothing_else_wrote(void **state)
{
    (void)state;
    static const char t1[] = GIVEN_HEAD "        urlTemplate: /x\n" GIVEN_A2 "products:\n"
                                        "  - id: p1\n"
                                        "    apis: [a1, a2]\n" GIVEN_NV;
    static const char t2[] = GIVEN_HEAD "        urlTemplate: /y\n" GIVEN_A2 "products:\n"
                                        "  - id: p1\n"
                                        "    apis: [a1, a2]\n" GIVEN_NV;
    static const char t3[] = GIVEN_HEAD "        urlTemplate: /y\n"
                                        "products:\n"
                                        "  - id: p1\n"
                                        "    apis: [a1]\n" GIVEN_NV;
    char dir[64], tpl[64];
    struct pt_store *st = open_store(dir, "given");
    apply_text(st, t1, "key-one");
    assert_string_equal(stored_template(st, tpl), "/x");

    /* unchanged and nothing else wrote: not read, so the change behind its back stays */
    raw_template(st, "/behind");
    uint64_t writes = pt_store_entity_writes(st);
    apply_text(st, t1, "key-one");
    assert_string_equal(stored_template(st, tpl), "/behind");
    assert_int_equal(pt_store_entity_writes(st), writes);
    /* the file changes the operation: written from it */
    apply_text(st, t2, "key-one");
    assert_string_equal(stored_template(st, tpl), "/y");

    /* a write the store names (its journal): that row is made again from the file */
    json_t *body = json_pack("{s:s,s:s}", "method", "GET", "urlTemplate", "/written");
    assert_true(pt_store_begin(st));
    assert_true(pt_store_put(st, "operation", "a1", "o1", "", body, "config", NULL));
    assert_true(pt_store_commit(st));
    json_decref(body);
    apply_text(st, t2, "key-one");
    assert_string_equal(stored_template(st, tpl), "/y");

    /* a rollback: nothing trusted */
    raw_template(st, "/behind");
    assert_true(pt_store_begin(st));
    put(st, "api", "", "junk", "{\"path\": \"junk\"}");
    pt_store_rollback(st);
    apply_text(st, t2, "key-one");
    assert_string_equal(stored_template(st, tpl), "/y");

    /* more writes than the journal holds, none of them to the row: nothing trusted either */
    raw_template(st, "/behind");
    assert_true(pt_store_begin(st));
    for (int i = 0; i < 300; i++) {
        char id[32];
        snprintf(id, sizeof(id), "junk-%d", i);
        put(st, "api", "", id, "{\"path\": \"junk\"}");
    }
    assert_true(pt_store_commit(st));
    apply_text(st, t2, "key-one");
    assert_string_equal(stored_template(st, tpl), "/y");
    apply_text(st, t2, "key-one"); /* within the journal again: trusted */
    raw_template(st, "/behind");
    apply_text(st, t2, "key-one");
    assert_string_equal(stored_template(st, tpl), "/behind");

    /* a new process (the store opened again) trusts nothing of the last one's */
    pt_store_close(st);
    char err[256];
    st = pt_store_open(dir, err, sizeof(err));
    assert_non_null(st);
    apply_text(st, t2, "key-one");
    assert_string_equal(stored_template(st, tpl), "/y");

    /* the file's links are trusted too: one deleted behind the store's back stays deleted (not
       looked up), until something ends the trust (here a new process) */
    assert_int_equal(sqlite3_exec(pt_store_sqlite(st),
                                  "DELETE FROM links WHERE kind = 'product-api' AND a = 'p1' AND b = 'a2'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    apply_text(st, t2, "key-one");
    assert_false(pt_store_linked(st, "product-api", "p1", "a2"));
    pt_store_close(st);
    st = pt_store_open(dir, err, sizeof(err));
    assert_non_null(st);
    apply_text(st, t2, "key-one");
    assert_true(pt_store_linked(st, "product-api", "p1", "a2"));

    /* a2 renamed a3, as many rows declared as the last time: a2 and its link are swept all the
       same, a3 is written */
    static const char t2r[] = GIVEN_HEAD "        urlTemplate: /y\n"
                                         "  - id: a3\n"
                                         "    path: a3\n"
                                         "    serviceUrl: http://127.0.0.1:1\n"
                                         "products:\n"
                                         "  - id: p1\n"
                                         "    apis: [a1, a3]\n" GIVEN_NV;
    apply_text(st, t2r, "key-one");
    json_t *renamed = NULL;
    assert_false(pt_store_get(st, "api", "", "a2", &renamed, NULL));
    assert_true(pt_store_get(st, "api", "", "a3", &renamed, NULL));
    json_decref(renamed);
    assert_false(pt_store_linked(st, "product-api", "p1", "a2"));
    assert_true(pt_store_linked(st, "product-api", "p1", "a3"));
    apply_text(st, t2, "key-one");
    assert_true(pt_store_linked(st, "product-api", "p1", "a2"));

    /* a2 and its link no longer declared: removed, then the same file again changes nothing */
    assert_true(pt_store_linked(st, "product-api", "p1", "a2"));
    apply_text(st, t3, "key-one");
    json_t *gone = NULL;
    assert_false(pt_store_get(st, "api", "", "a2", &gone, NULL));
    assert_false(pt_store_linked(st, "product-api", "p1", "a2"));
    assert_true(pt_store_linked(st, "product-api", "p1", "a1"));
    writes = pt_store_entity_writes(st);
    apply_text(st, t3, "key-one");
    assert_int_equal(pt_store_entity_writes(st), writes);
    assert_true(pt_store_linked(st, "product-api", "p1", "a1"));

    /* a group of the management API's that the file takes over loses its links (replace_foreign):
       the link of a product given unchanged is written again, not trusted */
    put(st, "group", "", "g1", "{\"displayName\": \"G1\"}");
    static const char t4[] = GIVEN_HEAD "        urlTemplate: /y\n"
                                        "products:\n"
                                        "  - id: p1\n"
                                        "    apis: [a1]\n"
                                        "    groups: [g1]\n" GIVEN_NV;
    static const char t5[] = GIVEN_HEAD "        urlTemplate: /y\n"
                                        "groups:\n"
                                        "  - id: g1\n"
                                        "    displayName: G1\n"
                                        "products:\n"
                                        "  - id: p1\n"
                                        "    apis: [a1]\n"
                                        "    groups: [g1]\n" GIVEN_NV;
    apply_text(st, t4, "key-one");
    apply_text(st, t4, "key-one"); /* trusted from here */
    assert_true(pt_store_linked(st, "product-group", "p1", "g1"));
    apply_text(st, t5, "key-one");
    assert_true(pt_store_linked(st, "product-group", "p1", "g1"));
    char src[16];
    assert_true(pt_store_info(st, "group", "", "g1", src, NULL));
    assert_string_equal(src, "config");
    /* a link removed between two applications (links are not journaled): the file's links are all
       looked up again */
    apply_text(st, t5, "key-one");
    assert_true(pt_store_begin(st));
    assert_true(pt_store_unlink(st, "product-api", "p1", "a1"));
    assert_true(pt_store_commit(st));
    apply_text(st, t5, "key-one");
    assert_true(pt_store_linked(st, "product-api", "p1", "a1"));

    /* the same secret under another key: sealed again, and opens with the new key only */
    apply_text(st, t5, "key-two");
    json_t *nv = NULL;
    assert_true(pt_store_get(st, "namedValue", "", "nv1", &nv, NULL));
    const char *sealed = json_string_value(json_object_get(nv, "sealed"));
    assert_non_null(sealed);
    char *open = pt_model_unseal("key-two", sealed);
    assert_non_null(open);
    assert_string_equal(open, "hush");
    free(open);
    assert_null(pt_model_unseal("key-one", sealed));
    json_decref(nv);
    close_store(st, dir);
}

static const char *stored_value(struct pt_store *st, const char *id, char out[64])
{
    json_t *body = NULL;
    assert_true(pt_store_get(st, "namedValue", "", id, &body, NULL));
    snprintf(out, 64, "%s", json_string_value(json_object_get(body, "value")));
    json_decref(body);
    return out;
}

/* Two cases where a row is written twice within one application: an id the file gives twice (the
   last one given is stored, at every application, as a fresh start stores it), and a link declared
   then deleted by a removal (the next application looks the file's links up again, and writes it
   back, as a full comparison does). */
static void test_what_one_application_writes_twice_is_not_trusted(void **state)
{
    (void)state;
    static const char twice[] = "listen: \"127.0.0.1:1\"\n"
                                "samples: false\n"
                                "namedValues:\n"
                                "  - id: nv1\n"
                                "    value: first\n"
                                "  - id: nv1\n"
                                "    value: second\n";
    static const char grouped[] = "listen: \"127.0.0.1:1\"\n"
                                  "samples: false\n"
                                  "groups:\n"
                                  "  - id: g1\n"
                                  "    displayName: G1\n"
                                  "users:\n"
                                  "  - id: u1\n"
                                  "    email: u1@example.com\n"
                                  "    groups: [g1]\n";
    static const char ungrouped[] = "listen: \"127.0.0.1:1\"\n"
                                    "samples: false\n"
                                    "users:\n"
                                    "  - id: u1\n"
                                    "    email: u1@example.com\n"
                                    "    groups: [g1]\n";
    char dir[64], v[64];
    struct pt_store *st = open_store(dir, "given-twice");
    for (int round = 0; round < 4; round++) {
        apply_text(st, twice, NULL);
        assert_string_equal(stored_value(st, "nv1", v), "second");
    }
    /* an id given as a number is stored as JSON reads it, under no id: the row of the string id
       it was given as the last time is not declared by it, and goes */
    static const char quoted_id[] = "listen: \"127.0.0.1:1\"\n"
                                    "samples: false\n"
                                    "namedValues:\n"
                                    "  - id: \"123\"\n"
                                    "    value: quoted\n";
    static const char number_id[] = "listen: \"127.0.0.1:1\"\n"
                                    "samples: false\n"
                                    "namedValues:\n"
                                    "  - id: 123\n"
                                    "    value: number\n";
    apply_text(st, quoted_id, NULL);
    apply_text(st, quoted_id, NULL);
    assert_string_equal(stored_value(st, "123", v), "quoted");
    apply_text(st, number_id, NULL);
    json_t *gone = NULL;
    assert_false(pt_store_get(st, "namedValue", "", "123", &gone, NULL));

    apply_text(st, grouped, NULL);
    apply_text(st, grouped, NULL); /* trusted from here */
    assert_true(pt_store_linked(st, "group-user", "g1", "u1"));
    apply_text(st, ungrouped, NULL); /* g1 removed with its links, after u1's was declared */
    assert_false(pt_store_linked(st, "group-user", "g1", "u1"));
    apply_text(st, ungrouped, NULL);
    assert_true(pt_store_linked(st, "group-user", "g1", "u1")); /* as a comparison of every row does */
    close_store(st, dir);
}

/* The file's entities keep pointing into the file (their lines) in every build from it: the whole
   builds and the subscriptions-only ones, the file's lists sorted by id once and kept with it, the
   file's order not the store's. */
static void test_every_build_from_the_file_points_into_it(void **state)
{
    (void)state;
    static const char text[] = "listen: \"127.0.0.1:1\"\n"
                               "samples: false\n"
                               "apis:\n"
                               "  - id: zz\n"
                               "    path: zz\n"
                               "    serviceUrl: http://127.0.0.1:1\n"
                               "  - id: aa\n"
                               "    path: aa\n"
                               "    serviceUrl: http://127.0.0.1:1\n"
                               "subscriptions:\n"
                               "  - id: s3\n"
                               "    scope: /apis/zz\n"
                               "  - id: s1\n"
                               "    scope: /apis/aa\n"
                               "  - id: s2\n"
                               "    scope: /apis\n";
    struct pt_errors errs = {0};
    struct pt_conf *file = pt_conf_parse("portico.yaml", text, sizeof(text) - 1, &errs);
    assert_non_null(file);
    char dir[64];
    struct pt_store *st = open_store(dir, "modellists-positions");
    assert_true(pt_model_apply_file(st, file, NULL, &errs));
    assert_null(file->model_ids);
    for (int round = 0; round < 3; round++) {
        struct pt_conf *cf = pt_model_build(st, file, NULL, &errs);
        assert_non_null(cf);
        assert_int_equal(errs.n, 0);
        assert_non_null(file->model_ids); /* kept from the first build on */
        assert_int_equal(cf->napis, 2);
        for (int i = 0; i < cf->napis; i++)
            assert_int_equal(cf->apis[i].node->line, line_of(text, cf->apis[i].id));
        /* a subscription written through the API: read alone, the file's still point into it */
        put(st, "subscription", "", round ? "s0" : "s9", "{\"scope\": \"/apis\"}");
        struct pt_conf *subs = pt_model_build_subs(st, file, cf, NULL, &errs);
        assert_non_null(subs);
        assert_int_equal(subs->nsubs, 4 + (round > 0));
        for (int i = 0; i < subs->nsubs; i++) {
            int want = line_of(text, subs->subs[i].id);
            if (want)
                assert_int_equal(subs->subs[i].node->line, want);
            else /* the store's own: no place in the file */
                assert_true(subs->subs[i].node->file == NULL || subs->subs[i].node->line == 0);
        }
        pt_conf_free(subs);
        pt_conf_free(cf);
    }
    pt_conf_free(file);
    pt_model_entities_forget();
    close_store(st, dir);
}

/* Where an entity sits in its list, as error paths name it, counted by the store without reading
   the bodies: the same as its index in a whole read. */
static void test_an_entity_index_is_its_place_in_the_list(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = open_store(dir, "modellists-index");
    static const char *const ids[] = {"b", "a", "B", "ab", "a-b", "zz", "\xc3\xa9t\xc3\xa9", "a0"};
    for (size_t i = 0; i < PT_ARRAY_LEN(ids); i++)
        put_sub(st, ids[i], 0);
    put(st, "operation", "api1", "o2", "{}");
    put(st, "operation", "api1", "o1", "{}");
    put(st, "operation", "api0", "o0", "{}");
    json_t *ents = lists(st);
    const json_t *subs = json_object_get(ents, "subscriptions");
    assert_int_equal(json_array_size(subs), PT_ARRAY_LEN(ids));
    for (size_t i = 0; i < json_array_size(subs); i++)
        assert_int_equal(
            pt_store_count_before(st, "subscription", "",
                                  json_string_value(json_object_get(json_array_get(subs, i), "id"))),
            (int)i);
    assert_int_equal(pt_store_count_before(st, "subscription", "", "new"), 6); /* B a a-b a0 ab b */
    assert_int_equal(pt_store_count_before(st, "subscription", "", ""), 0);
    assert_int_equal(pt_store_count_before(st, "operation", "api1", "o2"), 1);
    assert_int_equal(pt_store_count_before(st, "operation", "api0", "o2"), 1);
    assert_int_equal(pt_store_count_before(st, "api", "", "x"), 0);
    json_decref(ents);
    pt_model_entities_forget();
    close_store(st, dir);
}

static int int_cmp(const void *a, const void *b)
{
    return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

/* The sort the lists' checks use: what is in order stays, anything else comes out sorted. */
static void test_a_sort_leaves_what_is_in_order(void **state)
{
    (void)state;
    int sorted[] = {1, 2, 2, 3, 9}, last[] = {1, 2, 3, 9, 0}, first[] = {9, 1, 2, 3, 4}, one[] = {5};
    pt_str_sort(sorted, 5, sizeof(int), int_cmp);
    pt_str_sort(last, 5, sizeof(int), int_cmp);
    pt_str_sort(first, 5, sizeof(int), int_cmp);
    pt_str_sort(one, 1, sizeof(int), int_cmp);
    pt_str_sort(NULL, 0, sizeof(int), int_cmp);
    static const int want_sorted[] = {1, 2, 2, 3, 9}, want_last[] = {0, 1, 2, 3, 9},
                     want_first[] = {1, 2, 3, 4, 9};
    assert_memory_equal(sorted, want_sorted, sizeof(sorted));
    assert_memory_equal(last, want_last, sizeof(last));
    assert_memory_equal(first, want_first, sizeof(first));
    assert_int_equal(one[0], 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_write_renews_the_lists_read_from_its_kind),
        cmocka_unit_test(test_every_kind_of_write_is_served_as_stored),
        cmocka_unit_test(test_a_transaction_rolled_back_at_its_commit_is_read_again),
        cmocka_unit_test(test_a_transaction_whose_commit_fails_is_read_again),
        cmocka_unit_test(test_a_closed_store_lists_are_not_served_for_the_next),
        cmocka_unit_test(test_only_subscription_writes_build_the_subscriptions_alone),
        cmocka_unit_test(test_the_subscriptions_alone_are_checked_as_a_whole_build_checks_them),
        cmocka_unit_test(test_subscription_writes_patch_the_list_by_id),
        cmocka_unit_test(test_what_the_store_cannot_tell_reads_the_subscriptions_again),
        cmocka_unit_test(test_the_store_tells_the_ids_written_since_a_reading),
        cmocka_unit_test(test_a_long_run_of_writes_patches_as_a_whole_read_reads),
        cmocka_unit_test(test_lists_of_several_kinds_are_patched_by_owner),
        cmocka_unit_test(test_the_file_applied_again_writes_only_what_changed),
        cmocka_unit_test(test_a_secret_stored_in_plain_is_sealed_when_applied_again),
        cmocka_unit_test(test_the_file_given_again_is_passed_over_while_nothing_else_wrote),
        cmocka_unit_test(test_what_one_application_writes_twice_is_not_trusted),
        cmocka_unit_test(test_every_build_from_the_file_points_into_it),
        cmocka_unit_test(test_an_entity_index_is_its_place_in_the_list),
        cmocka_unit_test(test_a_sort_leaves_what_is_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
