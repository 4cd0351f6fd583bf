/*
 * test_model_lists.c -- the entity lists a generation is built from are read
 * again only where the store was written: which lists a write of each kind
 * renews, and that a renewed list holds the write (a real SQLite store).
 */
#include "conf/pt_model.h"
#include "conf/pt_node.h"
#include "conf/pt_store.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store_helpers.h"

static void put(struct pt_store *st, const char *kind, const char *parent, const char *id, const char *json)
{
    json_t *body = json_loads(json, 0, NULL);
    assert_non_null(body);
    assert_true(pt_store_put(st, kind, parent, id, "", body, "api", NULL));
    json_decref(body);
}

static json_t *lists(struct pt_store *st)
{
    struct pt_errors errs = {0};
    json_t *ents = pt_model_entities_shared(st, NULL, &errs);
    assert_non_null(ents);
    assert_int_equal(errs.n, 0);
    return ents;
}

/* true when `name` is the very list of `before` (kept, not read again) */
static bool kept(const json_t *before, const json_t *after, const char *name)
{
    const json_t *a = json_object_get(before, name), *b = json_object_get(after, name);
    assert_non_null(a);
    assert_non_null(b);
    return a == b;
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

    /* an API's policy: the lists policies go into (APIs, products), not the others */
    put(st, "policy", "", "api:a1", "{\"inbound\": [\"base\"]}");
    json_t *e3 = lists(st);
    assert_false(kept(e2, e3, "apis"));
    assert_false(kept(e2, e3, "products"));
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_write_renews_the_lists_read_from_its_kind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
