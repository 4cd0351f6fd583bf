/*
 * test_jschema -- the JSON Schema validator (core/base/pt_jschema.c).
 *
 * Runs the official JSON Schema Test Suite (draft4 and draft2020-12, every
 * required file) from the shared test data: PORTICO_TESTDATA, else
 * <top_srcdir>/../shared/testdata; skipped with a message when neither has it.
 * The suite's remotes/ are served by a loader from that folder (never the
 * network), the meta-schemas from jschema_metaschemas.h.  SKIPS below is the
 * complete list of cases not run (docs/jsonschema.md explains each).
 *
 * Then: the OpenAPI flags, error messages and pointers, the depth bound,
 * sample instances, the regex engine, and several threads validating with one
 * compiled schema.
 */
#include "base/pt_jschema.h"

#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "jschema_metaschemas.h"

#ifndef PT_TOP_SRCDIR
#define PT_TOP_SRCDIR "."
#endif

/* cases not run: file, group description, test description (NULL: the whole group) */
static const struct {
    const char *draft, *file, *group, *test;
} SKIPS[] = {
    {NULL, NULL, NULL, NULL}, /* none: every required case of both drafts runs */
};

static char suite_dir[1024];

static bool find_suite(void)
{
    const char *env = getenv("PORTICO_TESTDATA");
    struct stat st;
    if (env && *env)
        snprintf(suite_dir, sizeof(suite_dir), "%s/json-schema-test-suite", env);
    else
        snprintf(suite_dir, sizeof(suite_dir), "%s/../shared/testdata/json-schema-test-suite", PT_TOP_SRCDIR);
    return stat(suite_dir, &st) == 0 && S_ISDIR(st.st_mode);
}

static json_t *loader(const char *uri, void *ud)
{
    (void)ud;
    for (size_t i = 0; i < sizeof(jschema_metaschemas) / sizeof(jschema_metaschemas[0]); i++)
        if (strcmp(uri, jschema_metaschemas[i].uri) == 0)
            return json_loads(jschema_metaschemas[i].text, 0, NULL);
    const char *pre = "http://localhost:1234/";
    if (strncmp(uri, pre, strlen(pre)) != 0 || strstr(uri, ".."))
        return NULL;
    char path[2048];
    snprintf(path, sizeof(path), "%s/remotes/%s", suite_dir, uri + strlen(pre));
    return json_load_file(path, 0, NULL);
}

static bool skipped(const char *draft, const char *file, const char *group, const char *test)
{
    for (size_t i = 0; i < sizeof(SKIPS) / sizeof(SKIPS[0]); i++) {
        if (!SKIPS[i].draft)
            continue;
        if (strcmp(SKIPS[i].draft, draft) == 0 && strcmp(SKIPS[i].file, file) == 0 &&
            strcmp(SKIPS[i].group, group) == 0 && (!SKIPS[i].test || strcmp(SKIPS[i].test, test) == 0))
            return true;
    }
    return false;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

struct counts {
    int total, passed, skips, failed;
};

/* runs every file of tests/<draft>[/<sub>]; failures are printed when `loud` */
static void run_dir(const char *draft, const char *sub, unsigned flags, bool loud, struct counts *cnt)
{
    char dir[1200];
    snprintf(dir, sizeof(dir), "%s/tests/%s%s%s", suite_dir, draft, sub ? "/" : "", sub ? sub : "");
    DIR *d = opendir(dir);
    assert_non_null(d);
    char *names[256];
    size_t nn = 0;
    struct dirent *de;
    while ((de = readdir(d)) && nn < 256) {
        size_t l = strlen(de->d_name);
        if (l > 5 && strcmp(de->d_name + l - 5, ".json") == 0)
            names[nn++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, nn, sizeof(names[0]), cmp_str);
    int total = 0, passed = 0, skips = 0, failed = 0;
    if (getenv("PT_JSCHEMA_VERBOSE"))
        loud = true;
    for (size_t f = 0; f < nn; f++) {
        char path[1500];
        snprintf(path, sizeof(path), "%s/%s", dir, names[f]);
        json_error_t je;
        json_t *groups = json_load_file(path, JSON_ALLOW_NUL, &je);
        if (!groups) {
            if (loud)
                printf("# %s/%s: %s\n", draft, names[f], je.text);
            failed++;
            free(names[f]);
            continue;
        }
        size_t gi;
        json_t *g;
        json_array_foreach(groups, gi, g)
        {
            const char *gd = json_string_value(json_object_get(g, "description"));
            json_t *schema = json_object_get(g, "schema");
            char err[256];
            struct pt_jschema *s = pt_jschema_compile_ex(schema, NULL, flags, loader, NULL, err, sizeof(err));
            size_t ti;
            json_t *t;
            json_array_foreach(json_object_get(g, "tests"), ti, t)
            {
                const char *td = json_string_value(json_object_get(t, "description"));
                total++;
                if (skipped(draft, names[f], gd, td)) {
                    skips++;
                    continue;
                }
                if (!s) {
                    if (loud)
                        printf("# FAIL %s/%s: \"%s\" / \"%s\": does not compile: %s\n", draft, names[f], gd,
                               td, err);
                    failed++;
                    continue;
                }
                bool want = json_is_true(json_object_get(t, "valid"));
                struct pt_jschema_error e;
                bool got = pt_jschema_validate(s, json_object_get(t, "data"), &e);
                bool quiet = pt_jschema_validate(s, json_object_get(t, "data"), NULL);
                if (got == want && quiet == got) {
                    passed++;
                } else if (loud) {
                    printf("# FAIL %s/%s: \"%s\" / \"%s\": expected %s, got %s%s (%s: %s at '%s')\n", draft,
                           names[f], gd, td, want ? "valid" : "invalid", got ? "valid" : "invalid",
                           quiet != got ? " (differs without an error record)" : "", e.keyword, e.message,
                           e.path);
                    failed++;
                } else {
                    failed++;
                }
            }
            pt_jschema_free(s);
        }
        json_decref(groups);
        free(names[f]);
    }
    cnt->total += total;
    cnt->passed += passed;
    cnt->skips += skips;
    cnt->failed += failed;
}

static void run_draft(const char *draft, unsigned flags)
{
    struct counts c = {0}, o = {0}, f = {0};
    run_dir(draft, NULL, flags, true, &c);
    printf("# %s: %d/%d passed, %d skipped (listed), %d failed\n", draft, c.passed, c.total - c.skips,
           c.skips, c.failed);
    /* informational: the optional cases, and the format cases with format assertion on */
    run_dir(draft, "optional", flags, false, &o);
    run_dir(draft, "optional/format", flags | PT_JSCHEMA_FORMATS, false, &f);
    printf(
        "# %s optional (not required, informational): %d/%d passed; optional/format with PT_JSCHEMA_FORMATS: "
        "%d/%d passed\n",
        draft, o.passed, o.total, f.passed, f.total);
    assert_int_equal(c.failed, 0);
    assert_true(c.passed > 0);
}

static void test_suite_draft4(void **state)
{
    (void)state;
    if (!find_suite()) {
        printf("# no JSON Schema Test Suite at %s (set PORTICO_TESTDATA)\n", suite_dir);
        skip();
    }
    run_draft("draft4", PT_JSCHEMA_DRAFT4);
}

static void test_suite_draft2020(void **state)
{
    (void)state;
    if (!find_suite()) {
        printf("# no JSON Schema Test Suite at %s (set PORTICO_TESTDATA)\n", suite_dir);
        skip();
    }
    run_draft("draft2020-12", 0);
}

/* helpers for the hand-written cases */

static struct pt_jschema *compile_text(const char *text, unsigned flags)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
    if (!j)
        fail_msg("bad JSON in test: %s", je.text);
    char err[256];
    struct pt_jschema *s = pt_jschema_compile(j, NULL, flags, err, sizeof(err));
    json_decref(j); /* the compiled schema holds its own reference */
    if (!s)
        fail_msg("does not compile: %s", err);
    return s;
}

static bool check(const struct pt_jschema *s, const char *inst, struct pt_jschema_error *e)
{
    json_t *j = json_loads(inst, JSON_DECODE_ANY, NULL);
    assert_non_null(j);
    bool ok = pt_jschema_validate(s, j, e);
    json_decref(j);
    return ok;
}

static void test_openapi_flags(void **state)
{
    (void)state;
    struct pt_jschema_error e;
    const char *sch = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"nullable\":true},"
                      "\"b\":{\"type\":\"integer\",\"minimum\":1,\"exclusiveMinimum\":true}}}";
    struct pt_jschema *s = compile_text(sch, PT_JSCHEMA_OPENAPI);
    assert_true(check(s, "{\"a\":null,\"b\":2}", &e));
    assert_false(check(s, "{\"b\":1}", &e));
    assert_string_equal(e.keyword, "exclusiveMinimum");
    assert_string_equal(e.path, "/b");
    assert_true(check(s, "{\"a\":\"x\",\"extra\":1}", &e));
    pt_jschema_free(s);
    /* without the OpenAPI flag nullable is an unknown keyword */
    s = compile_text(sch, 0);
    assert_false(check(s, "{\"a\":null}", &e));
    assert_string_equal(e.message, "Invalid type. Expected String but got Null.");
    pt_jschema_free(s);
    /* NO_ADDITIONAL: unknown properties refused, also through allOf composition */
    const char *comp = "{\"allOf\":[{\"$ref\":\"#/$defs/A\"},{\"properties\":{\"b\":{}}}],"
                       "\"$defs\":{\"A\":{\"properties\":{\"a\":{}}}}}";
    s = compile_text(comp, PT_JSCHEMA_NO_ADDITIONAL);
    assert_true(check(s, "{\"a\":1,\"b\":2}", &e));
    assert_false(check(s, "{\"a\":1,\"c\":2}", &e));
    assert_string_equal(e.keyword, "additionalProperties");
    assert_string_equal(e.path, "/c");
    assert_string_equal(
        e.message, "Property 'c' has not been defined and the schema does not allow additional properties.");
    pt_jschema_free(s);
    /* a $ref next to properties is a part of the schema; a $ref alone is the referenced schema */
    s = compile_text("{\"$ref\":\"#/$defs/A\",\"properties\":{\"b\":{},\"c\":{\"$ref\":\"#/$defs/A\"}},"
                     "\"$defs\":{\"A\":{\"properties\":{\"a\":{}}}}}",
                     PT_JSCHEMA_NO_ADDITIONAL);
    assert_true(check(s, "{\"a\":1,\"b\":2,\"c\":{\"a\":1}}", &e));
    assert_false(check(s, "{\"a\":1,\"d\":2}", &e));
    assert_string_equal(e.path, "/d");
    assert_false(check(s, "{\"c\":{\"a\":1,\"b\":1}}", &e));
    assert_string_equal(e.path, "/c/b");
    pt_jschema_free(s);
    s = compile_text("{\"properties\":{\"in\":{\"properties\":{\"x\":{}}}},\"additionalProperties\":true}",
                     PT_JSCHEMA_NO_ADDITIONAL);
    assert_true(check(s, "{\"in\":{\"x\":1},\"other\":1}", &e));
    assert_false(check(s, "{\"in\":{\"x\":1,\"y\":2}}", &e));
    assert_string_equal(e.path, "/in/y");
    pt_jschema_free(s);
    /* ALLOW_ADDITIONAL: additionalProperties: false ignored */
    const char *closed = "{\"properties\":{\"a\":{}},\"additionalProperties\":false}";
    s = compile_text(closed, PT_JSCHEMA_ALLOW_ADDITIONAL);
    assert_true(check(s, "{\"a\":1,\"b\":2}", &e));
    pt_jschema_free(s);
    s = compile_text(closed, 0);
    assert_false(check(s, "{\"a\":1,\"b\":2}", &e));
    pt_jschema_free(s);
    /* formats assert only with PT_JSCHEMA_FORMATS */
    const char *fmt = "{\"type\":\"string\",\"format\":\"date-time\"}";
    s = compile_text(fmt, 0);
    assert_true(check(s, "\"yesterday\"", &e));
    pt_jschema_free(s);
    s = compile_text(fmt, PT_JSCHEMA_FORMATS);
    assert_false(check(s, "\"yesterday\"", &e));
    assert_string_equal(e.keyword, "format");
    assert_true(check(s, "\"2024-02-29T10:00:00.5+01:00\"", &e));
    assert_false(check(s, "\"2023-02-29T10:00:00Z\"", &e));
    pt_jschema_free(s);
    s = compile_text("{\"format\":\"uuid\"}", PT_JSCHEMA_FORMATS);
    assert_true(check(s, "\"3fa85f64-5717-4562-b3fc-2c963f66afa6\"", &e));
    assert_false(check(s, "\"3fa85f64-5717-4562-b3fc\"", &e));
    pt_jschema_free(s);
    s = compile_text("{\"format\":\"email\"}", PT_JSCHEMA_FORMATS);
    assert_true(check(s, "\"joe@example.com\"", &e));
    assert_false(check(s, "\"joe.example.com\"", &e));
    pt_jschema_free(s);
    s = compile_text("{\"format\":\"ipv4\"}", PT_JSCHEMA_FORMATS);
    assert_true(check(s, "\"192.168.0.1\"", &e));
    assert_false(check(s, "\"192.168.0.256\"", &e));
    pt_jschema_free(s);
}

static void test_messages(void **state)
{
    (void)state;
    struct pt_jschema_error e;
    struct pt_jschema *s = compile_text(
        "{\"type\":\"object\",\"required\":[\"name\",\"id\"],\"properties\":{\"id\":{\"type\":\"integer\"},"
        "\"name\":{\"type\":\"string\",\"maxLength\":3,\"pattern\":\"^[a-z]+$\"},"
        "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\"]},\"uniqueItems\":true},"
        "\"a/b~c\":{\"type\":\"number\",\"maximum\":5}},\"additionalProperties\":false}",
        0);
    assert_false(check(s, "{\"id\":1}", &e));
    assert_string_equal(e.keyword, "required");
    assert_string_equal(e.path, "");
    assert_string_equal(e.message, "Required properties are missing from object: name.");
    assert_false(check(s, "{}", &e));
    assert_string_equal(e.message, "Required properties are missing from object: name, id.");
    assert_false(check(s, "{\"id\":\"7\",\"name\":\"x\"}", &e));
    assert_string_equal(e.message, "Invalid type. Expected Integer but got String.");
    assert_string_equal(e.path, "/id");
    assert_string_equal(e.keyword, "type");
    assert_false(check(s, "{\"id\":1,\"name\":\"x\",\"x\":1}", &e));
    assert_string_equal(
        e.message, "Property 'x' has not been defined and the schema does not allow additional properties.");
    assert_false(check(s, "{\"id\":1,\"name\":\"abcd\"}", &e));
    assert_string_equal(e.keyword, "maxLength");
    assert_string_equal(e.message, "String 'abcd' exceeds maximum length of 3.");
    assert_false(check(s, "{\"id\":1,\"name\":\"A\"}", &e));
    assert_string_equal(e.message, "String 'A' does not match regex pattern '^[a-z]+$'.");
    assert_false(check(s, "{\"id\":1,\"name\":\"a\",\"tags\":[\"a\",\"c\"]}", &e));
    assert_string_equal(e.path, "/tags/1");
    assert_string_equal(e.keyword, "enum");
    assert_string_equal(e.message, "Value \"c\" is not defined in enum.");
    assert_false(check(s, "{\"id\":1,\"name\":\"a\",\"tags\":[\"a\",\"a\"]}", &e));
    assert_string_equal(e.message, "Non-unique array item at index 1.");
    assert_string_equal(e.path, "/tags/1");
    assert_false(check(s, "{\"id\":1,\"name\":\"a\",\"a/b~c\":6}", &e));
    assert_string_equal(e.path, "/a~1b~0c");
    assert_string_equal(e.message, "Integer 6 exceeds maximum value of 5.");
    assert_true(check(s, "{\"id\":1,\"name\":\"a\",\"a/b~c\":4.5,\"tags\":[\"b\"]}", &e));
    pt_jschema_free(s);
    s = compile_text("{\"oneOf\":[{\"type\":\"integer\"},{\"minimum\":0}]}", 0);
    assert_false(check(s, "1", &e));
    assert_string_equal(e.keyword, "oneOf");
    assert_string_equal(
        e.message, "JSON is valid against more than one schema from 'oneOf'. Valid schema indexes: 0, 1.");
    pt_jschema_free(s);
    s = compile_text("{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"null\"}]}", 0);
    assert_false(check(s, "\"x\"", &e));
    assert_string_equal(e.message, "JSON does not match any schemas from 'anyOf'.");
    pt_jschema_free(s);
    s = compile_text("{\"type\":[\"object\",\"null\"]}", 0);
    assert_false(check(s, "3.5", &e));
    assert_string_equal(e.message, "Invalid type. Expected Object, Null but got Number.");
    pt_jschema_free(s);
    /* a schema that does not compile says why */
    char err[256];
    json_t *bad = json_loads("{\"properties\":{\"a\":{\"$ref\":\"#/nowhere\"}}}", 0, NULL);
    assert_null(pt_jschema_compile(bad, NULL, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "#/nowhere"));
    json_decref(bad);
    bad = json_loads("{\"pattern\":\"(?i)b\"}", 0, NULL);
    assert_null(pt_jschema_compile(bad, NULL, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "inline flags"));
    json_decref(bad);
}

static void test_root_document(void **state)
{
    (void)state;
    /* an inline schema whose $refs name the API's schema document */
    json_t *doc =
        json_loads("{\"components\":{\"schemas\":{\"Pet\":{\"type\":\"object\",\"required\":[\"name\"],"
                   "\"properties\":{\"name\":{\"type\":\"string\"},\"kids\":{\"type\":\"array\","
                   "\"items\":{\"$ref\":\"#/components/schemas/Pet\"}}}}}}}",
                   0, NULL);
    json_t *inl =
        json_loads("{\"type\":\"array\",\"items\":{\"$ref\":\"#/components/schemas/Pet\"}}", 0, NULL);
    char err[256];
    struct pt_jschema *s = pt_jschema_compile(inl, doc, PT_JSCHEMA_OPENAPI, err, sizeof(err));
    assert_non_null(s);
    struct pt_jschema_error e;
    assert_true(check(s, "[{\"name\":\"a\",\"kids\":[{\"name\":\"b\"}]}]", &e));
    assert_false(check(s, "[{\"name\":\"a\",\"kids\":[{\"nom\":\"b\"}]}]", &e));
    assert_string_equal(e.path, "/0/kids/0");
    pt_jschema_free(s);
    /* a schema inside the document */
    s = pt_jschema_compile(
        json_object_get(json_object_get(json_object_get(doc, "components"), "schemas"), "Pet"), doc, 0, err,
        sizeof(err));
    assert_non_null(s);
    assert_true(check(s, "{\"name\":\"a\"}", &e));
    pt_jschema_free(s);
    json_decref(inl);
    json_decref(doc);
}

static void test_depth_bound(void **state)
{
    (void)state;
    struct pt_jschema_error e;
    /* a recursive schema, and an instance nested 1000 deep */
    struct pt_jschema *s =
        compile_text("{\"$defs\":{\"n\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/n\"}}},"
                     "\"$ref\":\"#/$defs/n\"}",
                     0);
    char *deep = malloc(2001);
    for (int i = 0; i < 1000; i++) {
        deep[i] = '[';
        deep[1000 + i] = ']';
    }
    deep[2000] = '\0';
    json_t *j = json_loads(deep, 0, NULL);
    if (j) { /* jansson itself may refuse that depth */
        assert_false(pt_jschema_validate(s, j, &e));
        assert_string_equal(e.keyword, "maxDepth");
        assert_false(pt_jschema_validate(s, j, NULL));
        json_decref(j);
    }
    /* build it by hand instead, beyond any parser limit */
    json_t *root = json_array(), *cur = root;
    for (int i = 0; i < 300; i++) {
        json_t *n = json_array();
        json_array_append_new(cur, n);
        cur = n;
    }
    assert_false(pt_jschema_validate(s, root, &e));
    assert_string_equal(e.keyword, "maxDepth");
    assert_int_equal(strncmp(e.path, "/0/0/0", 6), 0);
    /* inside not/anyOf the depth error is still an error, never turned into success */
    struct pt_jschema *sn =
        compile_text("{\"not\":{\"$ref\":\"#/$defs/n\"},"
                     "\"$defs\":{\"n\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/n\"}}}}",
                     0);
    assert_false(pt_jschema_validate(sn, root, &e));
    assert_string_equal(e.keyword, "maxDepth");
    pt_jschema_free(sn);
    json_decref(root);
    free(deep);
    pt_jschema_free(s);
    /* a $ref loop that never reaches the instance is bounded too */
    s = compile_text(
        "{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}",
        0);
    assert_false(check(s, "1", &e));
    assert_string_equal(e.keyword, "maxDepth");
    pt_jschema_free(s);
}

static void test_regex(void **state)
{
    (void)state;
    char err[128];
    struct {
        const char *p, *s;
        int want;
    } cases[] = {
        {"^[a-z0-9_-]{3,16}$", "john_doe-1", 1},
        {"^[a-z0-9_-]{3,16}$", "jo", 0},
        {"^\\d{3}-\\d{4}$", "555-1234", 1},
        {"^(?:\\+?1[-. ]?)?\\(?([0-9]{3})\\)?[-. ]?([0-9]{3})[-. ]?([0-9]{4})$", "+1 (555) 123-4567", 1},
        {"^(a|ab)(c|bcd)(d*)$", "abcd", 1},
        {"(\\w+)\\s\\1", "hello hello", 1},
        {"^(?!foo)\\w+$", "foobar", 0},
        {"^(?!foo)\\w+$", "barfoo", 1},
        {"^(?=.*\\d)(?=.*[a-z]).{8,}$", "abcdefg1", 1},
        {"^.*?b$", "aaab", 1},
        {"colou?r", "my color", 1},
        {"^\\p{Lu}\\p{Ll}+$", "Émile", 1},
        {"^[^\\s]+$", "a b", 0},
        {"\\bcat\\b", "a cat!", 1},
        {"^\\u00e9$", "\xc3\xa9", 1},
        {"^.$", "\xf0\x9f\x90\xb2", 1},
        {"^a{2}$", "aaa", 0},
        {"x{", "x{", 1},
        {"(?<=\\$)\\d+", "cost $42", 1},
        {"(?<!\\$)\\b\\d+", "$42", 0},
        {"^(?<y>\\d{4})-\\k<y>$", "2024-2024", 1},
        {"^(a+)+$", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", -1}, /* catastrophic: runs out of steps */
        /* a repeat giving back characters of invalid UTF-8 (stray continuation bytes, a cut sequence)
           one at a time, as it read them, never past where it started */
        {"^.+.$", "\x8c\x8c", 1},
        {"^a.+.$", "a\x8c\x8c\x8c", 1},
        {"^.+.$", "\xe2\x82\x8c\xe2\x82", 1}, /* U+208C, then a cut sequence: two characters */
        {"^.+..$", "\xe2\x82\x8c\xe2\x82", 0},
        {"^.+\\u20ac.$", "\x8c\xe2\x82\xac\x8c", 1},
        /* a sequence cut short by ASCII at the end of the subject: the lead byte alone is one
           character and each ASCII byte (\x61 a, \x62 b) another, read forward or given back */
        {"^...$", "\xf0\x61\x62", 1},
        {"^.$", "\xf0\x61\x62", 0},
        {"^.*b$", "\xf0\x61\x62", 1},
        {"^.b$", "\xf0\x61\x62", 0},
        {"^..$", "\xe2\x61", 1},
        {"^.*a$", "\xe2\x61", 1},
        {"^.a$", "\xe2\x61", 1},
        {"^.+.$", "\xe2\x61", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int r = pt_jschema_regex_test(cases[i].p, cases[i].s, strlen(cases[i].s), err, sizeof(err));
        if (r != cases[i].want)
            fail_msg("/%s/ on '%s': %d, expected %d (%s)", cases[i].p, cases[i].s, r, cases[i].want, err);
    }
    assert_int_equal(pt_jschema_regex_test("(ab", "ab", 2, err, sizeof(err)), -1);
    assert_int_equal(pt_jschema_regex_test("a**", "a", 1, err, sizeof(err)), -1);
    /* a long subject with a simple repeat: no recursion per character */
    size_t n = 200000;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    big[n] = '\0';
    assert_int_equal(pt_jschema_regex_test("^[a-z]+$", big, n, err, sizeof(err)), 1);
    assert_int_equal(pt_jschema_regex_test("^a*b?$", big, n, err, sizeof(err)), 1);
    free(big);
}

static void test_sample(void **state)
{
    (void)state;
    json_t *doc = json_loads(
        "{\"components\":{\"schemas\":{"
        "\"Pet\":{\"type\":\"object\",\"required\":[\"name\",\"id\"],\"properties\":{"
        "\"tag\":{\"type\":\"string\"},\"id\":{\"type\":\"integer\",\"format\":\"int64\",\"minimum\":10},"
        "\"name\":{\"type\":\"string\",\"example\":\"doggie\"},"
        "\"status\":{\"type\":\"string\",\"enum\":[\"available\",\"sold\"]},"
        "\"born\":{\"type\":\"string\",\"format\":\"date-time\"},\"uid\":{\"type\":\"string\",\"format\":"
        "\"uuid\"},"
        "\"owner\":{\"$ref\":\"#/components/schemas/Owner\"},"
        "\"photos\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"format\":\"uri\"}},"
        "\"parent\":{\"$ref\":\"#/components/schemas/Pet\"}}},"
        "\"Owner\":{\"type\":\"object\",\"properties\":{\"email\":{\"type\":\"string\",\"format\":\"email\"},"
        "\"active\":{\"type\":\"boolean\",\"default\":false}}}}}}",
        0, NULL);
    assert_non_null(doc);
    json_t *pet = json_object_get(json_object_get(json_object_get(doc, "components"), "schemas"), "Pet");
    json_t *s = pt_jschema_sample(pet, doc);
    assert_non_null(s);
    char *t = json_dumps(s, JSON_COMPACT);
    printf("# sample: %s\n", t);
    /* required first */
    assert_int_equal(strncmp(t, "{\"name\":\"doggie\",\"id\":10,", 25), 0);
    free(t);
    assert_string_equal(json_string_value(json_object_get(s, "status")), "available");
    assert_string_equal(json_string_value(json_object_get(s, "born")), "2024-01-01T00:00:00Z");
    assert_int_equal(json_string_length(json_object_get(s, "uid")), 36);
    assert_non_null(strchr(json_string_value(json_object_get(json_object_get(s, "owner"), "email")), '@'));
    assert_true(json_is_false(json_object_get(json_object_get(s, "owner"), "active")));
    assert_int_equal(json_array_size(json_object_get(s, "photos")), 1);
    /* the recursive parent stops at the depth bound */
    json_t *p = s;
    int depth = 0;
    while ((p = json_object_get(p, "parent")))
        depth++;
    assert_true(depth > 0 && depth < 12);
    /* the sample validates against its schema */
    char err[256];
    struct pt_jschema *c =
        pt_jschema_compile(pet, doc, PT_JSCHEMA_OPENAPI | PT_JSCHEMA_FORMATS, err, sizeof(err));
    assert_non_null(c);
    struct pt_jschema_error e;
    if (!pt_jschema_validate(c, s, &e))
        fail_msg("sample does not validate: %s at %s", e.message, e.path);
    pt_jschema_free(c);
    json_decref(s);
    /* examples first, then const, enum, by type */
    struct {
        const char *schema, *want;
    } cases[] = {
        {"{\"type\":\"string\",\"examples\":[\"x\",\"y\"]}", "\"x\""},
        {"{\"type\":\"string\",\"examples\":{\"one\":{\"value\":\"v1\"}}}", "\"v1\""},
        {"{\"const\":42}", "42"},
        {"{\"enum\":[null,1]}", "null"},
        {"{\"type\":[\"null\",\"number\"],\"minimum\":1.5}", "1.5"},
        {"{\"type\":\"integer\",\"exclusiveMinimum\":3}", "4"},
        {"{\"type\":\"string\",\"minLength\":8}", "\"stringst\""},
        {"{\"type\":\"string\",\"format\":\"date\"}", "\"2024-01-01\""},
        {"{\"allOf\":[{\"properties\":{\"a\":{\"type\":\"integer\"}}},{\"properties\":{\"b\":{\"type\":"
         "\"boolean\"}}}]}",
         "{\"a\":0,\"b\":true}"},
        {"{\"oneOf\":[{\"type\":\"boolean\"},{\"type\":\"string\"}]}", "true"},
        {"{\"type\":\"array\",\"prefixItems\":[{\"type\":\"integer\"},{\"type\":\"string\"}]}",
         "[0,\"string\"]"},
        {"true", "{}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *sch = json_loads(cases[i].schema, JSON_DECODE_ANY, NULL);
        json_t *got = pt_jschema_sample(sch, NULL);
        json_t *want = json_loads(cases[i].want, JSON_DECODE_ANY, NULL);
        char *g = got ? json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        if (!got || !json_equal(got, want))
            fail_msg("sample of %s: %s, expected %s", cases[i].schema, g ? g : "NULL", cases[i].want);
        free(g);
        json_decref(got);
        json_decref(want);
        json_decref(sch);
    }
    json_decref(doc);
}

struct thr {
    const struct pt_jschema *s;
    json_t *good, *bad;
    int errors;
};

static void *thr_run(void *arg)
{
    struct thr *t = arg;
    for (int i = 0; i < 3000; i++) {
        struct pt_jschema_error e;
        if (!pt_jschema_validate(t->s, t->good, &e))
            t->errors++;
        if (pt_jschema_validate(t->s, t->bad, &e) || strcmp(e.path, "/items/1/n") != 0)
            t->errors++;
        if (pt_jschema_validate(t->s, t->bad, NULL))
            t->errors++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct pt_jschema *s =
        compile_text("{\"$id\":\"http://example.com/"
                     "root\",\"type\":\"object\",\"properties\":{\"items\":{\"type\":\"array\","
                     "\"items\":{\"$ref\":\"#/$defs/item\"}}},\"unevaluatedProperties\":false,"
                     "\"$defs\":{\"item\":{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\"},"
                     "\"s\":{\"type\":\"string\",\"pattern\":\"^[a-z]+$\"}},\"required\":[\"n\"]}}}",
                     0);
    json_t *good = json_loads("{\"items\":[{\"n\":1,\"s\":\"ab\"},{\"n\":2}]}", 0, NULL);
    json_t *bad = json_loads("{\"items\":[{\"n\":1,\"s\":\"ab\"},{\"n\":\"2\"}]}", 0, NULL);
    pthread_t th[8];
    struct thr t[8];
    for (int i = 0; i < 8; i++) {
        t[i] = (struct thr){s, good, bad, 0};
        assert_int_equal(pthread_create(&th[i], NULL, thr_run, &t[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].errors, 0);
    }
    json_decref(good);
    json_decref(bad);
    pt_jschema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_suite_draft4),  cmocka_unit_test(test_suite_draft2020),
        cmocka_unit_test(test_openapi_flags), cmocka_unit_test(test_messages),
        cmocka_unit_test(test_root_document), cmocka_unit_test(test_depth_bound),
        cmocka_unit_test(test_regex),         cmocka_unit_test(test_sample),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
