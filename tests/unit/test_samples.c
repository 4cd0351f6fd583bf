/*
 * test_samples -- a new store's samples in a real store (conf/pt_samples.c):
 * what an empty store gets, that the decision is recorded once (seeded or
 * not) and never taken again, that a store with entities and no record (an
 * earlier version's) gets nothing, and that what the file declares wins.
 */
#include "conf/pt_model.h"
#include "conf/pt_samples.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "store_helpers.h"

static struct pt_conf *parse(const char *text)
{
    struct pt_errors errs = {0};
    struct pt_conf *cf = pt_conf_parse("t.yaml", text, strlen(text), &errs);
    for (int i = 0; i < errs.n; i++)
        print_message("%s\n", errs.msgs[i]);
    pt_node_errors_clear(&errs);
    assert_non_null(cf);
    return cf;
}

/* One start: probe, apply the file, settle, commit (as main.c's build_running and commit_running). */
static enum pt_samples_before start(struct pt_store *st, const char *text)
{
    struct pt_conf *cf = parse(text);
    struct pt_errors errs = {0};
    assert_true(pt_store_begin(st));
    enum pt_samples_before before = pt_samples_probe(st);
    bool ok = pt_model_apply_file(st, cf, "0123456789abcdef0123456789abcdef", &errs) &&
              pt_samples_settle(st, cf, "0123456789abcdef0123456789abcdef", before, &errs);
    for (int i = 0; i < errs.n; i++)
        print_message("%s\n", errs.msgs[i]);
    pt_node_errors_clear(&errs);
    assert_true(ok);
    assert_true(pt_store_commit(st));
    pt_conf_free(cf);
    return before;
}

static bool has(struct pt_store *st, const char *kind, const char *id, const char *source)
{
    char src[16];
    return pt_store_info(st, kind, "", id, src, NULL) && !strcmp(src, source);
}

static const char admin_file[] =
    "listen: [\"127.0.0.1:1\"]\n"
    "users:\n"
    "  - {id: root, email: r@example.com, firstName: R, lastName: T, groups: [administrators]}\n"
    "  - {id: ann, email: a@example.com, firstName: A, lastName: L, groups: [administrators]}\n";

static void test_a_new_store_is_seeded_once(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = open_store(dir, "samples-new");
    assert_int_equal(start(st, admin_file), PT_SAMPLES_EMPTY);
    assert_true(has(st, "product", "starter", "api") && has(st, "product", "unlimited", "api"));
    assert_true(has(st, "api", "echo-api", "api"));
    assert_int_equal(pt_store_count(st, "operation", "echo-api"), 6);
    assert_true(pt_store_linked(st, "product-api", "starter", "echo-api"));
    assert_true(pt_store_linked(st, "product-group", "unlimited", "guests"));
    /* the first administrator by id owns both subscriptions */
    json_t *sub = NULL;
    assert_true(pt_store_get(st, "subscription", "", "admin-starter", &sub, NULL));
    assert_string_equal(json_string_value(json_object_get(sub, "ownerId")), "/users/ann");
    assert_string_equal(json_string_value(json_object_get(sub, "state")), "active");
    json_decref(sub);
    json_t *pol = NULL;
    assert_true(pt_store_get(st, "policy", "", "product:starter", &pol, NULL));
    char *text = json_dumps(pol, JSON_COMPACT);
    assert_non_null(strstr(text, "\"rate-limit\":{\"calls\":5,\"renewal-period\":60}"));
    assert_non_null(strstr(text, "\"quota\":{\"calls\":100,\"renewal-period\":604800}"));
    free(text);
    json_decref(pol);
    /* deleted, then started again: settled, nothing comes back */
    assert_true(pt_store_delete(st, "product", "", "unlimited"));
    assert_int_equal(start(st, admin_file), PT_SAMPLES_SETTLED);
    assert_false(has(st, "product", "unlimited", "api"));
    int64_t v = -1;
    assert_true(pt_store_state_get(st, "samples", &v));
    assert_int_equal(v, 1);
    close_store(st, dir);
}

static void test_samples_false_settles_too(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = open_store(dir, "samples-off");
    char text[1024];
    snprintf(text, sizeof(text), "%ssamples: false\n", admin_file);
    assert_int_equal(start(st, text), PT_SAMPLES_EMPTY);
    assert_int_equal(pt_store_count(st, "product", NULL), 0);
    assert_int_equal(start(st, admin_file), PT_SAMPLES_SETTLED); /* samples: true later: still none */
    assert_int_equal(pt_store_count(st, "product", NULL), 0);
    int64_t v = -1;
    assert_true(pt_store_state_get(st, "samples", &v));
    assert_int_equal(v, 0);
    close_store(st, dir);
}

static void test_an_earlier_versions_store_gets_none(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = open_store(dir, "samples-old");
    /* what an earlier version left: an entity and no record */
    json_t *body = json_pack("{s:s}", "displayName", "Old");
    assert_true(pt_store_put(st, "product", "", "old", "", body, "api", NULL));
    json_decref(body);
    assert_int_equal(start(st, admin_file), PT_SAMPLES_OLDER);
    assert_int_equal(pt_store_count(st, "product", NULL), 1);
    assert_int_equal(pt_store_count(st, "subscription", NULL), 0);
    assert_int_equal(pt_samples_probe(st), PT_SAMPLES_SETTLED);
    close_store(st, dir);
}

static void test_the_file_wins(void **state)
{
    (void)state;
    char dir[64];
    struct pt_store *st = open_store(dir, "samples-file");
    char text[2048];
    snprintf(text, sizeof(text),
             "%sapis:\n"
             "  - {id: mine, path: /echo, serviceUrl: \"http://127.0.0.1:1\"}\n"
             "products:\n"
             "  - {id: unlimited, displayName: Mine, apis: [mine]}\n",
             admin_file);
    start(st, text);
    assert_false(has(st, "api", "echo-api", "api")); /* the path is the file's */
    assert_true(has(st, "product", "unlimited", "config"));
    assert_true(has(st, "product", "starter", "api"));
    assert_false(pt_store_linked(st, "product-api", "starter", "echo-api"));
    assert_true(has(st, "subscription", "admin-starter", "api"));
    assert_false(has(st, "subscription", "admin-unlimited", "api")); /* not a sample product */
    close_store(st, dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_new_store_is_seeded_once),
        cmocka_unit_test(test_samples_false_settles_too),
        cmocka_unit_test(test_an_earlier_versions_store_gets_none),
        cmocka_unit_test(test_the_file_wins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
