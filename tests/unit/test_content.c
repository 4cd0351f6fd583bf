/*
 * test_content -- the portal's content in a real store (conf/pt_content.c):
 * the checks of sites, pages and templates (what CSS could be broken out
 * of, ids, shapes), media recognized by their bytes, publishing and
 * restoring revisions, and the configuration file's content: applied as
 * file-owned, published only when it changed, dropped pages removed from
 * what is published while the administrators' drafts stay drafts.
 */
#include "conf/pt_content.h"
#include "conf/pt_model.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static bool check_json(const char *text, int which, const char *id, char *first_error, size_t len)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    assert_non_null(j);
    struct pt_pool *pool = pt_pool_new(4096);
    struct pt_node *n = pt_node_from_json(pool, j, NULL, 0);
    struct pt_errors errs = {0};
    bool ok = which == 0   ? pt_content_check_site(n, &errs)
              : which == 1 ? pt_content_check_page(n, id, &errs)
                           : pt_content_check_template(n, id, &errs);
    if (first_error)
        snprintf(first_error, len, "%s", errs.n ? errs.msgs[0] : "");
    pt_node_errors_clear(&errs);
    pt_pool_free(pool);
    json_decref(j);
    return ok;
}

static void test_site_checks(void **state)
{
    (void)state;
    char e[512];
    assert_true(check_json("{}", 0, NULL, e, sizeof(e)));
    assert_true(check_json(
        "{\"title\": \"T\", \"logo\": \"logo.png\", \"favicon\": null, \"colors\": {\"primary\": "
        "\"#abc\", \"background\": \"white\", \"text\": \"rgb(1, 2, 3)\", \"link\": \"hsl(120deg 50% "
        "50%)\"}, \"fonts\": {\"body\": \"'Open Sans', Arial, sans-serif\"}, \"customCss\": \"a{}\", "
        "\"home\": \"# x\", \"terms\": \"\", \"signupEnabled\": false, \"requireSignin\": true}",
        0, NULL, e, sizeof(e)));
    static const char *const bad[][2] = {
        {"{\"colors\": {\"primary\": \"red;}body{x:y\"}}", "colors.primary: not a color"},
        {"{\"colors\": {\"primary\": \"#12345\"}}", "not a color"},
        {"{\"colors\": {\"primary\": \"url(javascript:x)\"}}", "not a color"},
        {"{\"colors\": {\"primary\": \"rgb(1,2,3);x\"}}", "not a color"},
        {"{\"colors\": {\"primary\": \"expression(alert(1))\"}}", "not a color"},
        {"{\"colors\": {\"shadow\": \"#fff\"}}", "unknown key 'shadow'"},
        {"{\"fonts\": {\"body\": \"a\\\"; } * {\"}}", "fonts.body: not a font list"},
        {"{\"fonts\": {\"body\": \"'unbalanced\"}}", "not a font list"},
        {"{\"title\": \"\"}", "title: may not be empty"},
        {"{\"title\": {\"a\": 1}}", "title: expected text"},
        {"{\"logo\": \"../x\"}", "logo: expected a media id"},
        {"{\"signupEnabled\": \"true\"}", "signupEnabled: expected true or false"},
        {"{\"nope\": 1}", "site: unknown key 'nope'"},
        {"[]", "site: expected a map"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(check_json(bad[i][0], 0, NULL, e, sizeof(e)));
        if (!strstr(e, bad[i][1]))
            fail_msg("%s: got \"%s\", wanted \"%s\"", bad[i][0], e, bad[i][1]);
    }
}

static void test_page_and_template_checks(void **state)
{
    (void)state;
    char e[512];
    assert_true(
        check_json("{\"title\": \"T\", \"markdown\": \"x\", \"groups\": [\"developers\"], \"menuOrder\": 3}",
                   1, "p", e, sizeof(e)));
    assert_true(check_json("{\"id\": \"p\", \"title\": \"T\", \"html\": \"<p>x</p>\", \"menuOrder\": null}",
                           1, NULL, e, sizeof(e)));
    static const char *const bad[][3] = {
        {"{\"title\": \"T\"}", "", "page: id is required"},
        {"{\"id\": \"q\", \"title\": \"T\"}", "p", "'q' is not the page's id 'p'"},
        {"{\"id\": \".x\", \"title\": \"T\"}", "", "1 to 80 letters"},
        {"{\"markdown\": \"x\"}", "p", "page: title is required"},
        {"{\"title\": \"T\", \"markdown\": \"a\", \"html\": \"b\"}", "p", "not both"},
        {"{\"title\": \"T\", \"groups\": [\"a b\"]}", "p", "groups[0]: not a group id"},
        {"{\"title\": \"T\", \"menuOrder\": 1.5}", "p", "menuOrder: expected a whole number"},
        {"{\"title\": \"T\", \"menuOrder\": 1000000}", "p", "expected a whole number"},
        {"{\"title\": \"T\", \"style\": \"x\"}", "p", "unknown key 'style'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(check_json(bad[i][0], 1, *bad[i][1] ? bad[i][1] : NULL, e, sizeof(e)));
        if (!strstr(e, bad[i][2]))
            fail_msg("%s: got \"%s\", wanted \"%s\"", bad[i][0], e, bad[i][2]);
    }
    assert_true(check_json("{\"subject\": \"S {{firstName}}\", \"body\": \"B\"}", 2, "invite", e, sizeof(e)));
    assert_false(check_json("{\"subject\": \"S\"}", 2, "welcome", e, sizeof(e)));
    assert_non_null(strstr(e, "id must be one of"));
    assert_false(check_json("{\"subject\": \"S\", \"from\": \"x\"}", 2, "invite", e, sizeof(e)));
    assert_true(pt_content_id_ok("a.b_c-1") && pt_content_id_ok("X"));
    assert_false(pt_content_id_ok("") || pt_content_id_ok(".x") || pt_content_id_ok("a/b") ||
                 pt_content_id_ok("a b"));
}

static void test_media_types(void **state)
{
    (void)state;
    const unsigned char png[] = "\x89PNG\r\n\x1a\n....";
    const unsigned char gif[] = "GIF87a....";
    const unsigned char jpg[] = "\xff\xd8\xff\xe0";
    const unsigned char webp[] = "RIFF\x10\x00\x00\x00WEBPVP8 ";
    const unsigned char ico[] = "\x00\x00\x01\x00\x02\x00";
    assert_string_equal(pt_content_media_type(png, sizeof(png) - 1), "image/png");
    assert_string_equal(pt_content_media_type(gif, sizeof(gif) - 1), "image/gif");
    assert_string_equal(pt_content_media_type(jpg, sizeof(jpg) - 1), "image/jpeg");
    assert_string_equal(pt_content_media_type(webp, sizeof(webp) - 1), "image/webp");
    assert_string_equal(pt_content_media_type(ico, sizeof(ico) - 1), "image/x-icon");
    const char *refused[] = {"<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
                             "<?xml version=\"1.0\"?><svg/>",
                             "<html><script>",
                             "%PDF-1.4",
                             "RIFF\x10\x00\x00\x00WAVE",
                             "\x89PNG",
                             "GIF8",
                             ""};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        assert_null(pt_content_media_type((const unsigned char *)refused[i], strlen(refused[i])));
    const unsigned char ico0[] = "\x00\x00\x01\x00\x00\x00"; /* an icon of no image */
    assert_null(pt_content_media_type(ico0, 6));
}

struct fixture {
    char dir[64];
    struct pt_store *st;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/pt_content_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char err[256];
    f->st = pt_store_open(f->dir, err, sizeof(err));
    assert_non_null(f->st);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    pt_store_close(f->st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static json_t *J(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    assert_non_null(j);
    return j;
}

static const char *title_of(json_t *rev)
{
    return json_string_value(json_object_get(json_object_get(rev, "site"), "title"));
}

static void test_publish_and_restore(void **state)
{
    struct fixture *f = *state;
    struct pt_store *st = f->st;
    assert_int_equal(pt_content_latest(st), 0);
    assert_true(pt_store_begin(st));
    json_t *site = J("{\"title\": \"One\"}"),
           *page = J("{\"id\": \"a\", \"title\": \"A\", \"markdown\": \"x\"}");
    assert_true(pt_content_put_site(st, site, "api") && pt_content_put_page(st, page, "api"));
    assert_int_equal(pt_content_publish(st, "first", "tester"), 1);
    json_decref(site);
    site = J("{\"title\": \"Two\"}");
    assert_true(pt_content_put_site(st, site, "api"));
    assert_true(pt_store_delete(st, PT_CONTENT_PAGE_KIND, "", "a"));
    assert_int_equal(pt_content_publish(st, "second", "tester"), 2);
    assert_true(pt_store_commit(st));
    json_t *r = pt_content_revision(st, 2);
    assert_string_equal(title_of(r), "Two");
    assert_int_equal(json_array_size(json_object_get(r, "pages")), 0);
    json_decref(r);
    json_t *list = pt_content_revisions(st);
    assert_int_equal(json_array_size(list), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "id")),
                     2); /* newest first */
    assert_null(json_object_get(json_array_get(list, 0), "site"));
    json_decref(list);
    /* restore 1: a new revision 3 equal to 1, and the draft is 1 again */
    assert_true(pt_store_begin(st));
    assert_int_equal(pt_content_restore(st, 1, "tester"), 3);
    assert_int_equal(pt_content_restore(st, 99, "tester"), 0);
    assert_true(pt_store_commit(st));
    r = pt_content_revision(st, 3);
    assert_string_equal(title_of(r), "One");
    assert_string_equal(json_string_value(json_object_get(r, "comment")), "restored revision 1");
    json_decref(r);
    json_t *d = pt_content_draft(st);
    assert_string_equal(title_of(d), "One");
    assert_int_equal(json_array_size(json_object_get(d, "pages")), 1);
    json_decref(d);
    assert_int_equal(pt_content_latest(st), 3);
    /* the site over the defaults */
    json_t *full = pt_content_site_full(json_object_get(d = pt_content_draft(st), "site"));
    assert_string_equal(json_string_value(json_object_get(full, "title")), "One");
    assert_string_equal(json_string_value(json_object_get(json_object_get(full, "colors"), "background")),
                        "#ffffff");
    assert_true(json_is_true(json_object_get(full, "signupEnabled")));
    json_decref(full);
    json_decref(d);
    json_decref(site);
    json_decref(page);
}

static void test_media_round_trip(void **state)
{
    struct fixture *f = *state;
    unsigned char bytes[300];
    for (size_t i = 0; i < sizeof(bytes); i++)
        bytes[i] = (unsigned char)(i * 7);
    memcpy(bytes, "\x89PNG\r\n\x1a\n", 8);
    for (size_t n = 1; n <= 12; n++) { /* every length modulo 3 */
        char etag[24], type[64], id[16];
        snprintf(id, sizeof(id), "m%zu", n);
        assert_true(pt_store_begin(f->st));
        assert_true(pt_content_media_put(f->st, id, "image/png", bytes, n + 288, etag));
        assert_true(pt_store_commit(f->st));
        unsigned char *b = NULL;
        size_t len = 0;
        assert_true(pt_content_media_get(f->st, id, type, &b, &len, NULL));
        assert_int_equal(len, n + 288);
        assert_memory_equal(b, bytes, len);
        assert_string_equal(type, "image/png");
        free(b);
    }
    json_t *list = pt_content_media_list(f->st);
    assert_int_equal(json_array_size(list), 12);
    assert_null(json_object_get(json_array_get(list, 0), "data"));
    json_decref(list);
}

static struct pt_conf *conf_with(const char *portal)
{
    char text[4096];
    snprintf(text, sizeof(text), "listen: [\"127.0.0.1:1\"]\nportal:\n%s", portal);
    struct pt_errors errs = {0};
    struct pt_conf *cf = pt_conf_parse("portico.yaml", text, strlen(text), &errs);
    for (int i = 0; i < errs.n; i++)
        print_message("%s\n", errs.msgs[i]);
    pt_node_errors_clear(&errs);
    return cf;
}

static void apply(struct pt_store *st, struct pt_conf *cf)
{
    struct pt_errors errs = {0};
    usleep(3000); /* the store's sweep tells applies apart by their millisecond */
    bool ok = pt_model_apply_file(st, cf, NULL, &errs);
    for (int i = 0; i < errs.n; i++)
        print_message("%s\n", errs.msgs[i]);
    pt_node_errors_clear(&errs);
    assert_true(ok);
    pt_conf_free(cf);
}

static void test_file_content(void **state)
{
    struct fixture *f = *state;
    struct pt_store *st = f->st;
    struct pt_conf *cf = conf_with("  site: {title: From file}\n"
                                   "  pages:\n"
                                   "    - {id: guide, title: Guide, markdown: text, menuOrder: 1}\n"
                                   "    - {id: old, title: Old, markdown: gone soon}\n"
                                   "  templates:\n"
                                   "    - {id: invite, subject: Join}\n");
    assert_non_null(cf);
    apply(st, cf);
    assert_int_equal(pt_content_latest(st), 1);
    assert_true(pt_content_from_file(st, PT_CONTENT_SITE_KIND, "site"));
    assert_true(pt_content_from_file(st, PT_CONTENT_PAGE_KIND, "guide"));
    assert_true(pt_content_from_file(st, PT_CONTENT_TEMPLATE_KIND, "invite"));
    /* an administrator's draft page beside the file's */
    assert_true(pt_store_begin(st));
    json_t *mine = J("{\"id\": \"mine\", \"title\": \"Mine\", \"markdown\": \"draft only\"}");
    assert_true(pt_content_put_page(st, mine, "api"));
    json_decref(mine);
    assert_true(pt_store_commit(st));
    /* the same file again: nothing new is published */
    apply(st, conf_with("  site: {title: From file}\n"
                        "  pages:\n"
                        "    - {id: guide, title: Guide, markdown: text, menuOrder: 1}\n"
                        "    - {id: old, title: Old, markdown: gone soon}\n"
                        "  templates:\n"
                        "    - {id: invite, subject: Join}\n"));
    assert_int_equal(pt_content_latest(st), 1);
    /* a changed file: published; its dropped page leaves the draft and the published revision; the
       administrator's draft page stays a draft */
    apply(st, conf_with("  site: {title: Changed}\n"
                        "  pages:\n"
                        "    - {id: guide, title: Guide 2, markdown: text, menuOrder: 1}\n"));
    assert_int_equal(pt_content_latest(st), 2);
    json_t *r = pt_content_revision(st, 2);
    assert_string_equal(title_of(r), "Changed");
    json_t *pages = json_object_get(r, "pages");
    assert_int_equal(json_array_size(pages), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(pages, 0), "title")), "Guide 2");
    json_decref(r);
    assert_false(pt_store_get(st, PT_CONTENT_PAGE_KIND, "", "old", NULL, NULL));
    assert_false(pt_store_get(st, PT_CONTENT_TEMPLATE_KIND, "", "invite", NULL, NULL));
    assert_true(pt_store_get(st, PT_CONTENT_PAGE_KIND, "", "mine", NULL, NULL));
    /* export: only what the API wrote, or everything */
    json_t *e = pt_content_export(st, "api");
    assert_int_equal(json_array_size(json_object_get(e, "pages")), 1);
    assert_null(json_object_get(e, "site"));
    json_decref(e);
    e = pt_content_export(st, NULL);
    assert_int_equal(json_array_size(json_object_get(e, "pages")), 2);
    assert_string_equal(json_string_value(json_object_get(json_object_get(e, "site"), "title")), "Changed");
    json_decref(e);
}

static void test_file_errors_have_positions(void **state)
{
    (void)state;
    const char *text = "listen: [\"127.0.0.1:1\"]\n"
                       "portal:\n"
                       "  site:\n"
                       "    colors: {primary: \"red;}\"}\n"
                       "  pages:\n"
                       "    - {id: a, title: A}\n"
                       "    - {id: a, title: B, menuOrder: x}\n";
    struct pt_errors errs = {0};
    struct pt_conf *cf = pt_conf_parse("portico.yaml", text, strlen(text), &errs);
    assert_null(cf);
    char all[4096] = "";
    for (int i = 0; i < errs.n; i++) {
        strncat(all, errs.msgs[i], sizeof(all) - strlen(all) - 2);
        strcat(all, "\n");
    }
    pt_node_errors_clear(&errs);
    assert_non_null(strstr(all, "portico.yaml:4:23: not a color"));
    assert_non_null(strstr(all, "portico.yaml:7:12: the page id 'a' is used twice"));
    assert_non_null(strstr(all, "portico.yaml:7:36: expected a whole number"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_site_checks),
        cmocka_unit_test(test_page_and_template_checks),
        cmocka_unit_test(test_media_types),
        cmocka_unit_test_setup_teardown(test_publish_and_restore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_media_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_content, setup, teardown),
        cmocka_unit_test(test_file_errors_have_positions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
