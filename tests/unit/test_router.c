/*
 * test_router -- API suffixes, operation tries, precedence, captures.
 */
#include "conf/pt_router.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

/* Data pointers are C strings naming the API or operation. */
#define NAME(p) ((const char *)(p))

static enum pt_route_result match4(const struct pt_router *r, const char *host, const char *method,
                                   const char *path, const char *query, struct pt_match *m)
{
    memset(m, 0x5a, sizeof(*m)); /* the router must set every field it reports */
    return pt_router_match(r, pt_str_c(host), pt_str_c(method), pt_str_c(path), pt_str_c(query), m);
}

static char sbuf[4][512];
static int sbuf_i;
/* A printable NUL-terminated copy of a slice (a few at a time). */
static const char *S(pt_str s)
{
    char *b = sbuf[sbuf_i++ & 3];
    snprintf(b, sizeof(sbuf[0]), "%.*s", (int)s.len, s.data ? s.data : "");
    return b;
}

/* Expects PT_ROUTE_OK with the given API and operation names. */
static void expect_op(const struct pt_router *r, const char *host, const char *method, const char *path,
                      const char *query, const char *api, const char *op, struct pt_match *m)
{
    print_message("# %s %s%s%s (host '%s')\n", method, path, *query ? "?" : "", query, host);
    enum pt_route_result res = match4(r, host, method, path, query, m);
    if (res != PT_ROUTE_OK)
        print_message("# result %d\n", res);
    assert_int_equal(res, PT_ROUTE_OK);
    assert_non_null(m->api);
    assert_non_null(m->op);
    assert_string_equal(NAME(m->api), api);
    assert_string_equal(NAME(m->op), op);
}

static void expect_no_op(const struct pt_router *r, const char *method, const char *path, const char *query,
                         const char *api)
{
    struct pt_match m;
    print_message("# %s %s?%s: no operation\n", method, path, query);
    assert_int_equal(match4(r, "", method, path, query, &m), PT_ROUTE_NO_OPERATION);
    assert_non_null(m.api);
    assert_string_equal(NAME(m.api), api);
    assert_null(m.op);
    assert_int_equal(m.nparams, 0);
}

static void expect_params(const struct pt_match *m, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n && i < m->nparams; i++) {
        const char *name = va_arg(ap, const char *);
        const char *value = va_arg(ap, const char *);
        print_message("# param %d: %s=%s\n", i, S(m->params[i].name), S(m->params[i].value));
        assert_string_equal(S(m->params[i].name), name);
        assert_string_equal(S(m->params[i].value), value);
    }
    va_end(ap);
    assert_int_equal(m->nparams, n);
}

static void add_op(struct pt_router *r, int api, const char *method, const char *tmpl, const char *data)
{
    void *clash = NULL;
    const char *why = pt_router_add_op(r, api, method, tmpl, (void *)data, &clash);
    if (why)
        print_message("# %s %s: %s\n", method, tmpl, why);
    assert_null(why);
    assert_null(clash);
}

/* ------------------------------------------------------------ API lookup */

static void test_api_suffix(void **state)
{
    struct pt_router *r = pt_router_new();
    assert_non_null(r);
    int echo = pt_router_add_api(r, "echo", NULL, "echo");
    int v2 = pt_router_add_api(r, "echo/v2", NULL, "echo/v2");
    int deep = pt_router_add_api(r, "a/b/c", NULL, "a/b/c");
    add_op(r, echo, "*", "/*", "echo-any");
    add_op(r, v2, "*", "/*", "v2-any");
    add_op(r, deep, "*", "/*", "deep-any");
    pt_router_finish(r);

    struct pt_match m;
    expect_op(r, "", "GET", "/echo", "", "echo", "echo-any", &m);
    assert_string_equal(S(m.rest), "");
    expect_op(r, "", "GET", "/echo/", "", "echo", "echo-any", &m);
    assert_string_equal(S(m.rest), "/");
    expect_op(r, "", "GET", "/echo/x/y", "", "echo", "echo-any", &m);
    assert_string_equal(S(m.rest), "/x/y");
    expect_op(r, "", "GET", "/echo/v2", "", "echo/v2", "v2-any", &m);
    assert_string_equal(S(m.rest), "");
    expect_op(r, "", "GET", "/echo/v2/x", "", "echo/v2", "v2-any", &m);
    assert_string_equal(S(m.rest), "/x");
    expect_op(r, "", "GET", "/echo/v2x", "", "echo", "echo-any", &m);
    assert_string_equal(S(m.rest), "/v2x");
    expect_op(r, "", "GET", "/echo/v3/v2", "", "echo", "echo-any", &m);
    expect_op(r, "", "GET", "/a/b/c/d/e", "", "a/b/c", "deep-any", &m);
    assert_string_equal(S(m.rest), "/d/e");

    /* whole segments only, case-sensitive, no API above */
    static const char *const none[] = {"/echoes", "/ech",    "/",    "/a/b", "/a/b/cd",
                                       "//echo",  "/x/echo", "echo", ""};
    for (size_t i = 0; i < PT_ARRAY_LEN(none); i++) {
        print_message("# '%s': no API\n", none[i]);
        assert_int_equal(match4(r, "", "GET", none[i], "", &m), PT_ROUTE_NO_API);
        assert_null(m.api);
        assert_null(m.op);
        assert_int_equal(m.nparams, 0);
    }
    pt_router_free(r);
}

static void test_root_api(void **state)
{
    struct pt_router *r = pt_router_new();
    int root = pt_router_add_api(r, "", NULL, "root");
    int echo = pt_router_add_api(r, "echo", NULL, "echo");
    add_op(r, root, "GET", "/", "root-home");
    add_op(r, root, "GET", "/echoes", "root-echoes");
    add_op(r, root, "GET", "/x/{id}", "root-x");
    add_op(r, echo, "GET", "/", "echo-home");
    pt_router_finish(r);

    struct pt_match m;
    expect_op(r, "", "GET", "/", "", "root", "root-home", &m);
    assert_string_equal(S(m.rest), "/");
    expect_op(r, "", "GET", "/echoes", "", "root", "root-echoes", &m);
    assert_string_equal(S(m.rest), "/echoes");
    expect_op(r, "", "GET", "/x/42", "", "root", "root-x", &m);
    expect_params(&m, 1, "id", "42");
    expect_op(r, "", "GET", "/echo", "", "echo", "echo-home", &m);
    expect_op(r, "", "GET", "/echo/", "", "echo", "echo-home", &m);
    /* the longer suffix wins even when it has no matching operation */
    expect_no_op(r, "GET", "/echo/x/1", "", "echo");
    expect_no_op(r, "GET", "/nothing", "", "root");
    /* a path not starting with '/' is never routed */
    assert_int_equal(match4(r, "", "GET", "x", "", &m), PT_ROUTE_NO_API);
    pt_router_free(r);
}

static void test_hosts(void **state)
{
    for (int order = 0; order < 2; order++) {
        struct pt_router *r = pt_router_new();
        int any, ex, other;
        if (order == 0) {
            any = pt_router_add_api(r, "api", NULL, "any");
            ex = pt_router_add_api(r, "api", "example.com", "ex");
            other = pt_router_add_api(r, "api", "other.test", "other");
        } else {
            other = pt_router_add_api(r, "api", "other.test", "other");
            ex = pt_router_add_api(r, "api", "example.com", "ex");
            any = pt_router_add_api(r, "api", NULL, "any");
        }
        int only = pt_router_add_api(r, "only", "example.com", "only");
        add_op(r, any, "*", "/*", "any-op");
        add_op(r, ex, "*", "/*", "ex-op");
        add_op(r, other, "*", "/*", "other-op");
        add_op(r, only, "*", "/*", "only-op");
        pt_router_finish(r);

        struct pt_match m;
        print_message("# order %d\n", order);
        expect_op(r, "example.com", "GET", "/api/x", "", "ex", "ex-op", &m);
        expect_op(r, "EXAMPLE.Com", "GET", "/api/x", "", "ex", "ex-op", &m);
        expect_op(r, "other.test", "GET", "/api", "", "other", "other-op", &m);
        expect_op(r, "unknown.test", "GET", "/api/x", "", "any", "any-op", &m);
        expect_op(r, "", "GET", "/api/x", "", "any", "any-op", &m);
        expect_op(r, "example.com", "GET", "/only/1", "", "only", "only-op", &m);
        assert_int_equal(match4(r, "other.test", "GET", "/only/1", "", &m), PT_ROUTE_NO_API);
        assert_int_equal(match4(r, "", "GET", "/only", "", &m), PT_ROUTE_NO_API);
        /* a host-bound API does not match a host that merely starts like it */
        assert_int_equal(match4(r, "example.com.evil", "GET", "/only", "", &m), PT_ROUTE_NO_API);
        pt_router_free(r);
    }

    /* a longer suffix bound to another host gives way to a shorter one */
    struct pt_router *r = pt_router_new();
    int v2 = pt_router_add_api(r, "api/v2", "a.example", "v2-a");
    int api = pt_router_add_api(r, "api", NULL, "api");
    add_op(r, v2, "*", "/*", "v2-op");
    add_op(r, api, "*", "/*", "api-op");
    pt_router_finish(r);
    struct pt_match m;
    expect_op(r, "a.example", "GET", "/api/v2/x", "", "v2-a", "v2-op", &m);
    expect_op(r, "b.example", "GET", "/api/v2/x", "", "api", "api-op", &m);
    assert_string_equal(S(m.rest), "/v2/x");
    pt_router_free(r);
}

static void test_many_apis(void **state)
{
    enum { N = 3000 };
    static char names[N][16];
    struct pt_router *r = pt_router_new();
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "svc%d", i);
        int a = pt_router_add_api(r, names[i], NULL, names[i]);
        add_op(r, a, "GET", "/", names[i]);
    }
    pt_router_finish(r);
    struct pt_match m;
    for (int i = 0; i < N; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/svc%d", i);
        assert_int_equal(match4(r, "", "GET", path, "", &m), PT_ROUTE_OK);
        assert_string_equal(NAME(m.api), names[i]);
        assert_string_equal(NAME(m.op), names[i]);
    }
    assert_int_equal(match4(r, "", "GET", "/svc3000", "", &m), PT_ROUTE_NO_API);
    pt_router_free(r);
}

/* ------------------------------------------------------------ operations */

static void test_precedence(void **state)
{
    struct pt_router *r = pt_router_new();
    int a = pt_router_add_api(r, "api", NULL, "api");
    /* added from the least to the most specific: order must not matter */
    add_op(r, a, "*", "/files/*", "wild");
    add_op(r, a, "GET", "/files/{id}", "param");
    add_op(r, a, "GET", "/files/{name}.{ext}", "pattern");
    add_op(r, a, "GET", "/files/readme.txt", "literal");
    add_op(r, a, "GET", "/files/v{major}.{minor}/info", "version");
    add_op(r, a, "GET", "/files/{id}/meta", "meta");
    pt_router_finish(r);

    struct pt_match m;
    expect_op(r, "", "GET", "/api/files/readme.txt", "", "api", "literal", &m);
    expect_params(&m, 0);
    expect_op(r, "", "GET", "/api/files/photo.jpeg", "", "api", "pattern", &m);
    expect_params(&m, 2, "name", "photo", "ext", "jpeg");
    /* the first parameter takes the shortest text */
    expect_op(r, "", "GET", "/api/files/a.tar.gz", "", "api", "pattern", &m);
    expect_params(&m, 2, "name", "a", "ext", "tar.gz");
    expect_op(r, "", "GET", "/api/files/readme", "", "api", "param", &m);
    expect_params(&m, 1, "id", "readme");
    /* parameters are never empty */
    expect_op(r, "", "GET", "/api/files/.txt", "", "api", "param", &m);
    expect_op(r, "", "GET", "/api/files/txt.", "", "api", "param", &m);
    expect_op(r, "", "GET", "/api/files/x/y/z", "", "api", "wild", &m);
    expect_params(&m, 0);
    expect_op(r, "", "GET", "/api/files/v1.2/info", "", "api", "version", &m);
    expect_params(&m, 2, "major", "1", "minor", "2");
    expect_op(r, "", "GET", "/api/files/42/meta", "", "api", "meta", &m);
    expect_params(&m, 1, "id", "42");
    /* backtracking: the literal and pattern only accept GET; POST falls to the wildcard */
    expect_op(r, "", "POST", "/api/files/readme.txt", "", "api", "wild", &m);
    expect_params(&m, 0);
    /* a deeper param branch that fails falls back to the wildcard, without stale captures */
    expect_op(r, "", "GET", "/api/files/42/other", "", "api", "wild", &m);
    expect_params(&m, 0);
    expect_op(r, "", "GET", "/api/files/v1.2/other", "", "api", "wild", &m);
    expect_params(&m, 0);
    pt_router_free(r);
}

/* Backtracking across several levels, and an exact end beating a wildcard. */
static void test_backtracking(void **state)
{
    struct pt_router *r = pt_router_new();
    int a = pt_router_add_api(r, "api", NULL, "api");
    add_op(r, a, "GET", "/a/b/c", "abc");
    add_op(r, a, "GET", "/a/{x}/d", "axd");
    add_op(r, a, "GET", "/a/{x}/{y}/e", "axye");
    add_op(r, a, "GET", "/a/{p}.{q}/f", "apqf");
    add_op(r, a, "GET", "/b/{x}/c", "bxc");
    add_op(r, a, "GET", "/{y}/q/d", "yqd");
    add_op(r, a, "GET", "/files", "files-exact");
    add_op(r, a, "GET", "/files/*", "files-wild");
    pt_router_finish(r);

    struct pt_match m;
    expect_op(r, "", "GET", "/api/a/b/c", "", "api", "abc", &m);
    expect_params(&m, 0);
    expect_op(r, "", "GET", "/api/a/b/d", "", "api", "axd", &m);
    expect_params(&m, 1, "x", "b");
    expect_op(r, "", "GET", "/api/a/b/c/e", "", "api", "axye", &m);
    expect_params(&m, 2, "x", "b", "y", "c");
    expect_op(r, "", "GET", "/api/a/b.c/f", "", "api", "apqf", &m);
    expect_params(&m, 2, "p", "b", "q", "c");
    expect_op(r, "", "GET", "/api/a/b.c/d", "", "api", "axd", &m);
    expect_params(&m, 1, "x", "b.c");
    expect_no_op(r, "GET", "/api/a/b/c/f", "", "api");
    /* a failed branch leaves no capture behind */
    expect_op(r, "", "GET", "/api/b/q/d", "", "api", "yqd", &m);
    expect_params(&m, 1, "y", "b");
    expect_op(r, "", "GET", "/api/b/q/c", "", "api", "bxc", &m);
    expect_params(&m, 1, "x", "q");
    expect_op(r, "", "GET", "/api/files", "", "api", "files-exact", &m);
    expect_op(r, "", "GET", "/api/files/x", "", "api", "files-wild", &m);
    pt_router_free(r);
}

/* A parameter followed by a final literal takes everything up to that
   literal: "{name}.txt" matches "a.txt.txt" with name "a.txt". */
static void test_pattern_suffix(void **state)
{
    struct pt_router *r = pt_router_new();
    int a = pt_router_add_api(r, "api", NULL, "api");
    add_op(r, a, "GET", "/p/{name}.txt", "txt");
    add_op(r, a, "GET", "/w/{word}s", "plural");
    add_op(r, a, "GET", "/v/{a}-{b}.json", "ab");
    pt_router_finish(r);

    struct pt_match m;
    expect_op(r, "", "GET", "/api/p/a.txt", "", "api", "txt", &m);
    expect_params(&m, 1, "name", "a");
    expect_op(r, "", "GET", "/api/w/cats", "", "api", "plural", &m);
    expect_params(&m, 1, "word", "cat");
    expect_no_op(r, "GET", "/api/p/.txt", "", "api");
    expect_no_op(r, "GET", "/api/p/a.txt2", "", "api");
    expect_op(r, "", "GET", "/api/p/a.txt.txt", "", "api", "txt", &m);
    expect_params(&m, 1, "name", "a.txt");
    expect_op(r, "", "GET", "/api/w/glasses", "", "api", "plural", &m);
    expect_params(&m, 1, "word", "glasse");
    expect_op(r, "", "GET", "/api/v/x-y.json.json", "", "api", "ab", &m);
    expect_params(&m, 2, "a", "x", "b", "y.json");
    pt_router_free(r);
}

static void test_methods(void **state)
{
    struct pt_router *r = pt_router_new();
    int a = pt_router_add_api(r, "api", NULL, "api");
    add_op(r, a, "*", "/x", "any");
    add_op(r, a, "GET", "/x", "get");
    add_op(r, a, "DELETE", "/x", "delete");
    add_op(r, a, "GET", "/only-get", "only-get");
    pt_router_finish(r);

    struct pt_match m;
    expect_op(r, "", "GET", "/api/x", "", "api", "get", &m);
    expect_op(r, "", "DELETE", "/api/x", "", "api", "delete", &m);
    expect_op(r, "", "POST", "/api/x", "", "api", "any", &m);
    expect_op(r, "", "get", "/api/x", "", "api", "any", &m); /* methods are case-sensitive */
    expect_op(r, "", "GETX", "/api/x", "", "api", "any", &m);
    expect_op(r, "", "GET", "/api/only-get", "", "api", "only-get", &m);
    expect_no_op(r, "POST", "/api/only-get", "", "api");
    expect_no_op(r, "GE", "/api/only-get", "", "api");
    pt_router_free(r);

    /* the method counts before the query: GET /s beats * /s?q={t} */
    r = pt_router_new();
    a = pt_router_add_api(r, "api", NULL, "api");
    add_op(r, a, "*", "/s?q={t}", "any-q");
    add_op(r, a, "GET", "/s", "get");
    pt_router_finish(r);
    expect_op(r, "", "GET", "/api/s", "q=1", "api", "get", &m);
    expect_op(r, "", "POST", "/api/s", "q=1", "api", "any-q", &m);
    expect_params(&m, 1, "t", "1");
    expect_no_op(r, "POST", "/api/s", "", "api");
    pt_router_free(r);
}

static void test_query_constraints(void **state)
{
    struct pt_router *r = pt_router_new();
    int a = pt_router_add_api(r, "api", NULL, "api");
    add_op(r, a, "GET", "/search", "plain");
    add_op(r, a, "GET", "/search?q={term}", "q");
    add_op(r, a, "GET", "/search?q={term}&page={page}", "q-page");
    add_op(r, a, "GET", "/search?mode=full", "full");
    add_op(r, a, "GET", "/search?debug", "debug");
    add_op(r, a, "GET", "/only?key={k}", "only");
    add_op(r, a, "GET", "/items/{id}?fields={f}", "fields");
    pt_router_finish(r);

    struct pt_match m;
    expect_op(r, "", "GET", "/api/search", "", "api", "plain", &m);
    expect_params(&m, 0);
    expect_op(r, "", "GET", "/api/search", "x=1", "api", "plain", &m);
    expect_op(r, "", "GET", "/api/search", "qq=1&xq=2", "api", "plain", &m);
    expect_op(r, "", "GET", "/api/search", "q=abc&x=1", "api", "q", &m);
    expect_params(&m, 1, "term", "abc");
    expect_op(r, "", "GET", "/api/search", "x=1&q=a%20b", "api", "q", &m);
    expect_params(&m, 1, "term", "a%20b");
    expect_op(r, "", "GET", "/api/search", "page=2&q=z", "api", "q-page", &m);
    expect_params(&m, 2, "term", "z", "page", "2");
    expect_op(r, "", "GET", "/api/search", "mode=full", "api", "full", &m);
    expect_op(r, "", "GET", "/api/search", "mode=lite", "api", "plain", &m);
    expect_op(r, "", "GET", "/api/search", "debug", "api", "debug", &m);
    expect_op(r, "", "GET", "/api/search", "debug=1", "api", "debug", &m);
    expect_op(r, "", "GET", "/api/only", "key=1", "api", "only", &m);
    expect_params(&m, 1, "k", "1");
    expect_no_op(r, "GET", "/api/only", "", "api");
    expect_no_op(r, "GET", "/api/only", "kee=1", "api");
    expect_op(r, "", "GET", "/api/items/7", "a=1&fields=name,size", "api", "fields", &m);
    expect_params(&m, 2, "id", "7", "f", "name,size");
    pt_router_free(r);
}

static void test_captures(void **state)
{
    struct pt_router *r = pt_router_new();
    int a = pt_router_add_api(r, "v1", NULL, "v1");
    add_op(r, a, "GET", "/users/{uid}/posts/{pid}", "post");
    add_op(r, a, "GET", "/users/{uid}/files/*", "files");
    add_op(r, a, "PUT", "/users/{user_id}/posts/{post-id}", "put-post");
    pt_router_finish(r);

    struct pt_match m;
    expect_op(r, "", "GET", "/v1/users/%41li/posts/9", "", "v1", "post", &m);
    expect_params(&m, 2, "uid", "%41li", "pid", "9");
    /* parameter slices point into the request's path */
    const char *path = "/v1/users/bob/posts/x";
    assert_int_equal(pt_router_match(r, PT_STR(""), PT_STR("GET"), pt_str_c(path), PT_STR(""), &m),
                     PT_ROUTE_OK);
    assert_ptr_equal(m.params[0].value.data, path + 10);
    assert_ptr_equal(m.params[1].value.data, path + 20);
    /* same trie path, other names: each operation reports its own names */
    expect_op(r, "", "PUT", "/v1/users/bob/posts/1", "", "v1", "put-post", &m);
    expect_params(&m, 2, "user_id", "bob", "post-id", "1");
    expect_op(r, "", "GET", "/v1/users/bob/files/a/b", "", "v1", "files", &m);
    expect_params(&m, 1, "uid", "bob");
    /* an empty segment does not fill a parameter */
    expect_no_op(r, "GET", "/v1/users//posts/1", "", "v1");
    pt_router_free(r);
}

static void test_slashes(void **state)
{
    struct pt_router *r = pt_router_new();
    int a = pt_router_add_api(r, "both", NULL, "both");
    int b = pt_router_add_api(r, "noslash", NULL, "noslash");
    int c = pt_router_add_api(r, "slash", NULL, "slash");
    int d = pt_router_add_api(r, "root", NULL, "root");
    int w = pt_router_add_api(r, "wild", NULL, "wild");
    add_op(r, a, "GET", "/items", "items");
    add_op(r, a, "GET", "/items/", "items/");
    add_op(r, b, "GET", "/items", "items");
    add_op(r, c, "GET", "/items/", "items/");
    add_op(r, c, "GET", "/p/{id}/", "p/");
    add_op(r, d, "GET", "/", "home");
    add_op(r, w, "GET", "/*", "all");
    pt_router_finish(r);

    struct pt_match m;
    expect_op(r, "", "GET", "/both/items", "", "both", "items", &m);
    expect_op(r, "", "GET", "/both/items/", "", "both", "items/", &m);
    expect_op(r, "", "GET", "/noslash/items", "", "noslash", "items", &m);
    expect_no_op(r, "GET", "/noslash/items/", "", "noslash");
    expect_no_op(r, "GET", "/noslash/items//", "", "noslash");
    expect_op(r, "", "GET", "/slash/items/", "", "slash", "items/", &m);
    expect_no_op(r, "GET", "/slash/items", "", "slash");
    expect_op(r, "", "GET", "/slash/p/3/", "", "slash", "p/", &m);
    expect_params(&m, 1, "id", "3");
    expect_no_op(r, "GET", "/slash/p/3", "", "slash");
    expect_op(r, "", "GET", "/root", "", "root", "home", &m);
    expect_op(r, "", "GET", "/root/", "", "root", "home", &m);
    expect_no_op(r, "GET", "/root/x", "", "root");
    expect_no_op(r, "GET", "/root//", "", "root");
    expect_op(r, "", "GET", "/wild", "", "wild", "all", &m);
    expect_op(r, "", "GET", "/wild/", "", "wild", "all", &m);
    expect_op(r, "", "GET", "/wild/a/b/c/", "", "wild", "all", &m);
    pt_router_free(r);
}

static void test_template_errors(void **state)
{
    struct pt_router *r = pt_router_new();
    int a = pt_router_add_api(r, "api", NULL, "api");
    static const struct {
        const char *tmpl;
        const char *why;
    } bad[] = {
        {"/a/{id", "has an unclosed '{'"},
        {"/a/{}", "has an empty parameter name '{}'"},
        {"/a/{i d}", "has an invalid character in a parameter name"},
        {"/a/{x}{y}", "has two parameters with nothing between them"},
        {"/a/b}", "has a '}' without '{'"},
        {"/a/*/b", "may use '*' only as its last segment"},
        {"/*/", "may use '*' only as its last segment"},
        {"/a/{id}/b/{id}", "uses the same parameter name twice"},
        {"/a/{id}.{id}", "uses the same parameter name twice"},
        {"/a/{x}?y={x}", "uses the same parameter name twice"},
        {"/a?x={}", "has an empty parameter name '{}'"},
        {"/a?x=a{b}", "has a query value mixing text and a parameter"},
        {"/a?x=1&x=2", "names the same query parameter twice"},
        {"/a?x=1&&y", "has an empty query parameter"},
        {"/a?=1", "has a query parameter without a name"},
        {"a", "urlTemplate must start with '/'"},
        {"", "urlTemplate must start with '/'"},
        {"/a//b", "has an empty segment ('//')"},
        {"/a/./b", "has a '.' or '..' segment"},
        {"/a/..", "has a '.' or '..' segment"},
        {"/a b", "has a character that must be percent-encoded"},
        {"/a/{p1}/{p2}/{p3}/{p4}/{p5}/{p6}/{p7}/{p8}/{p9}/{p10}/{p11}/{p12}/{p13}/{p14}/{p15}/{p16}/{p17}",
         "has more than 16 parameters"},
    };
    for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++) {
        void *clash = (void *)"untouched";
        print_message("# template '%s'\n", bad[i].tmpl);
        const char *why = pt_router_add_op(r, a, "GET", bad[i].tmpl, "x", &clash);
        assert_non_null(why);
        assert_string_equal(why, bad[i].why);
        assert_string_equal((const char *)clash, "untouched");
    }
    /* 16 parameters are fine */
    add_op(r, a, "GET",
           "/b/{p1}/{p2}/{p3}/{p4}/{p5}/{p6}/{p7}/{p8}/{p9}/{p10}/{p11}/{p12}/{p13}/{p14}/{p15}/{p16}",
           "sixteen");

    /* clashes: same method and the same template shape */
    add_op(r, a, "GET", "/x/{id}", "first");
    void *clash = NULL;
    const char *why = pt_router_add_op(r, a, "GET", "/x/{other}", "second", &clash);
    assert_non_null(why);
    assert_non_null(clash);
    assert_string_equal(why, "has the same method and URL template as another operation");
    assert_string_equal((const char *)clash, "first");
    clash = NULL;
    add_op(r, a, "*", "/x/{id}", "any");
    why = pt_router_add_op(r, a, "*", "/x/{id}", "any2", &clash);
    assert_non_null(why);
    assert_non_null(clash);
    assert_string_equal((const char *)clash, "any");
    add_op(r, a, "POST", "/x/{id}", "post");
    add_op(r, a, "GET", "/x/{id}/", "slash");
    add_op(r, a, "GET", "/x/*", "wild");
    add_op(r, a, "GET", "/x/{id}?v={v}", "query");
    clash = NULL;
    why = pt_router_add_op(r, a, "GET", "/x/{i}?v={w}", "query2", &clash);
    assert_non_null(why);
    assert_non_null(clash);
    assert_string_equal((const char *)clash, "query");
    add_op(r, a, "GET", "/x/{id}?v=1", "v1");
    clash = NULL;
    why = pt_router_add_op(r, a, "GET", "/x/{id}?v=1", "v1again", &clash);
    assert_non_null(why);
    assert_non_null(clash);
    assert_string_equal((const char *)clash, "v1");
    add_op(r, a, "GET", "/x/{id}?a=1&b=2", "ab");
    clash = NULL;
    why = pt_router_add_op(r, a, "GET", "/x/{id}?b=2&a=1", "ba", &clash);
    assert_non_null(why);
    assert_non_null(clash);
    assert_string_equal((const char *)clash, "ab");
    clash = NULL;
    why = pt_router_add_op(r, a, "GET", "/x/{a}.{b}", "pat", &clash);
    assert_null(why);
    why = pt_router_add_op(r, a, "GET", "/x/{c}.{d}", "pat2", &clash);
    assert_non_null(why);
    assert_non_null(clash);
    assert_string_equal((const char *)clash, "pat");
    /* a NULL clash pointer is allowed */
    assert_non_null(pt_router_add_op(r, a, "GET", "/x/{id}", "third", NULL));
    pt_router_finish(r);

    /* the failed adds left nothing behind */
    struct pt_match m;
    expect_op(r, "", "GET", "/api/x/1", "", "api", "first", &m);
    expect_params(&m, 1, "id", "1");
    expect_op(r, "", "GET", "/api/x/1", "v=9", "api", "query", &m);
    expect_params(&m, 2, "id", "1", "v", "9");
    expect_op(r, "", "GET", "/api/x/a.b", "", "api", "pat", &m);
    expect_op(r, "", "PUT", "/api/x/1", "", "api", "any", &m);
    assert_int_equal(match4(r, "", "GET", "/api/a/1", "", &m), PT_ROUTE_NO_OPERATION);
    expect_op(r, "", "GET", "/api/b/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16", "", "api", "sixteen", &m);
    assert_int_equal(m.nparams, 16);
    assert_string_equal(S(m.params[15].name), "p16");
    assert_string_equal(S(m.params[15].value), "16");
    pt_router_free(r);
}

static void test_big_router(void **state)
{
    enum { N = 10000 };
    static char names[N][24];
    static char wnames[N / 10][24];
    struct pt_router *r = pt_router_new();
    int a = pt_router_add_api(r, "big", NULL, "big");
    for (int i = 0; i < N; i++) {
        char tmpl[64];
        snprintf(names[i], sizeof(names[i]), "op%d", i);
        snprintf(tmpl, sizeof(tmpl), "/r%d/items/{id}", i);
        add_op(r, a, "GET", tmpl, names[i]);
    }
    for (int i = 0; i < N / 10; i++) {
        char tmpl[64];
        snprintf(wnames[i], sizeof(wnames[i]), "w%d", i);
        snprintf(tmpl, sizeof(tmpl), "/r%d/*", i * 10);
        add_op(r, a, "*", tmpl, wnames[i]);
    }
    pt_router_finish(r);

    struct pt_match m;
    for (int i = 0; i < N; i++) {
        char path[64], id[16];
        snprintf(path, sizeof(path), "/big/r%d/items/x%d", i, i);
        snprintf(id, sizeof(id), "x%d", i);
        assert_int_equal(match4(r, "", "GET", path, "", &m), PT_ROUTE_OK);
        assert_string_equal(NAME(m.op), names[i]);
        assert_int_equal(m.nparams, 1);
        assert_string_equal(S(m.params[0].name), "id");
        assert_string_equal(S(m.params[0].value), id);
        snprintf(path, sizeof(path), "/big/r%d/other", i);
        enum pt_route_result res = match4(r, "", "GET", path, "", &m);
        if (i % 10 == 0) {
            assert_int_equal(res, PT_ROUTE_OK);
            assert_string_equal(NAME(m.op), wnames[i / 10]);
        } else
            assert_int_equal(res, PT_ROUTE_NO_OPERATION);
    }
    assert_int_equal(match4(r, "", "GET", "/big/r10000/items/1", "", &m), PT_ROUTE_NO_OPERATION);
    assert_int_equal(match4(r, "", "GET", "/big/r01/items/1", "", &m), PT_ROUTE_NO_OPERATION);
    assert_int_equal(match4(r, "", "POST", "/big/r1/items/1", "", &m), PT_ROUTE_NO_OPERATION);
    assert_int_equal(match4(r, "", "POST", "/big/r20/items/1", "", &m), PT_ROUTE_OK);
    assert_string_equal(NAME(m.op), "w2");
    pt_router_free(r);
}

static void test_long_paths(void **state)
{
    struct pt_router *r = pt_router_new();
    int a = pt_router_add_api(r, "api", NULL, "api");
    add_op(r, a, "GET", "/*", "all");
    pt_router_finish(r);
    /* far more segments than PT_MAX_SEGMENTS: no overflow, still routed to the API */
    static char path[4096];
    strcpy(path, "/api");
    for (int i = 0; i < 600; i++)
        strcat(path, "/s");
    struct pt_match m;
    enum pt_route_result res = match4(r, "", "GET", path, "", &m);
    assert_true(res == PT_ROUTE_OK || res == PT_ROUTE_NO_OPERATION);
    assert_non_null(m.api);
    assert_string_equal(NAME(m.api), "api");
    pt_router_free(r);
}

/* A template the router takes matches its own path, up to the segment limit: a trailing '/' is a
   segment too (fuzz_router found one of PT_MAX_SEGMENTS segments and a '/' taken but never matched). */
static void test_segment_limit(void **state)
{
    static char within[1024], past[1024];
    strcpy(within, "");
    for (int i = 0; i < PT_MAX_SEGMENTS - 1; i++)
        strcat(within, "/s");
    strcat(within, "/");
    snprintf(past, sizeof(past), "/s%s", within);
    struct pt_router *r = pt_router_new();
    int a = pt_router_add_api(r, "", NULL, "root");
    add_op(r, a, "GET", within, "within");
    void *clash = NULL;
    const char *why = pt_router_add_op(r, a, "GET", past, "past", &clash);
    assert_non_null(why);
    assert_string_equal(why, "has too many segments");
    pt_router_finish(r);
    struct pt_match m;
    assert_int_equal(match4(r, "", "GET", within, "", &m), PT_ROUTE_OK);
    assert_string_equal(NAME(m.op), "within");
    pt_router_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_suffix),
        cmocka_unit_test(test_root_api),
        cmocka_unit_test(test_hosts),
        cmocka_unit_test(test_many_apis),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_backtracking),
        cmocka_unit_test(test_pattern_suffix),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_query_constraints),
        cmocka_unit_test(test_captures),
        cmocka_unit_test(test_slashes),
        cmocka_unit_test(test_template_errors),
        cmocka_unit_test(test_big_router),
        cmocka_unit_test(test_long_paths),
        cmocka_unit_test(test_segment_limit),
    };
    return cmocka_run_group_tests_name("router", tests, NULL, NULL);
}
