/*
 * test_mgmt_filter -- the management API's $filter: what the parser accepts
 * (eq, ne, contains, startswith, endswith, "and", quoting, spaces, the most
 * conditions), what it refuses, how a condition reads a JSON object, and the
 * page taken from the matching items.
 */
#include "mgmt/pt_mgmt_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* One more than the parser may fill, to see that it stays within max. */
static struct pt_mgmt_filter_cond conds[PT_MGMT_FILTER_MAX + 1];

static int parse_max(const char *text, int max)
{
    memset(conds, 0x5a, sizeof(conds));
    int n = pt_mgmt_filter_parse(text, conds, max);
    print_message("# $filter '%.60s%s' -> %d\n", text, strlen(text) > 60 ? "..." : "", n);
    return n;
}

static int parse(const char *text)
{
    return parse_max(text, PT_MGMT_FILTER_MAX);
}

static void expect_cond(int i, const char *field, const char *op, const char *value)
{
    assert_string_equal(conds[i].field, field);
    assert_string_equal(conds[i].op, op);
    assert_string_equal(conds[i].value, value);
}

/* Parses text as exactly one condition and expects it. */
static void expect_one(const char *text, const char *field, const char *op, const char *value)
{
    assert_int_equal(parse(text), 1);
    expect_cond(0, field, op, value);
}

static void expect_refused(const char *text)
{
    assert_int_equal(parse(text), -1);
}

/* Does the one condition of text hold for the object (JSON text)? */
static bool holds(const char *filter, const char *object)
{
    json_error_t je;
    json_t *o = json_loads(object, 0, &je);
    assert_non_null(o);
    assert_int_equal(parse(filter), 1);
    bool r = pt_mgmt_filter_holds(&conds[0], o);
    json_decref(o);
    return r;
}

/* ------------------------------------------------------------------ parsing */

static void test_comparisons(void **state)
{
    (void)state;
    expect_one("name eq 'Echo'", "name", "eq", "Echo");
    expect_one("state ne 'active'", "state", "ne", "active");
    expect_one("displayName eq 'Echo API v1'", "displayName", "eq", "Echo API v1");
    /* the field is any run of characters up to the space */
    expect_one("x-api.name_1 eq 'a'", "x-api.name_1", "eq", "a");
}

static void test_functions(void **state)
{
    (void)state;
    expect_one("contains(path,'v1')", "path", "contains", "v1");
    expect_one("startswith(displayName,'Ech')", "displayName", "startswith", "Ech");
    expect_one("endswith(displayName,'API')", "displayName", "endswith", "API");
    /* function names are read without case; op is always lower case */
    expect_one("CONTAINS(path,'v1')", "path", "contains", "v1");
    expect_one("StartsWith(name,'a')", "name", "startswith", "a");
    expect_one("endsWith(name,'z')", "name", "endswith", "z");
}

static void test_bare_values(void **state)
{
    (void)state;
    expect_one("subscriptionRequired eq true", "subscriptionRequired", "eq", "true");
    expect_one("count ne 3", "count", "ne", "3");
    expect_one("contains(path,v1)", "path", "contains", "v1");
    expect_one("startswith(name,a-b.c)", "name", "startswith", "a-b.c");
}

static void test_quoting(void **state)
{
    (void)state;
    expect_one("name eq 'O''Brien'", "name", "eq", "O'Brien");
    expect_one("name eq ''", "name", "eq", "");
    expect_one("name eq ''''", "name", "eq", "'");
    expect_one("name eq ''''''", "name", "eq", "''");
    expect_one("name eq 'a''''b'", "name", "eq", "a''b");
    /* inside quotes nothing is syntax: spaces, "and", parentheses, commas */
    expect_one("name eq 'a b  c'", "name", "eq", "a b  c");
    expect_one("name eq 'x and y eq z'", "name", "eq", "x and y eq z");
    expect_one("contains(name,'a,b)')", "name", "contains", "a,b)");
    expect_one("contains(name,'it''s')", "name", "contains", "it's");
}

static void test_whitespace(void **state)
{
    (void)state;
    expect_one("   name eq 'x'", "name", "eq", "x");
    expect_one("name eq 'x'   ", "name", "eq", "x");
    expect_one("contains(path,   'v1'   )", "path", "contains", "v1");
    expect_one("  contains(path,v1 )  ", "path", "contains", "v1");
    /* the field of a function is taken as written, spaces included */
    expect_one("contains( path ,'v1')", " path ", "contains", "v1");

    assert_int_equal(parse("a eq 'x'   and    b ne 'y'"), 2);
    expect_cond(0, "a", "eq", "x");
    expect_cond(1, "b", "ne", "y");
    assert_int_equal(parse("a eq 'x' AND b eq 'y' And contains(c,'z')"), 3);
    expect_cond(0, "a", "eq", "x");
    expect_cond(1, "b", "eq", "y");
    expect_cond(2, "c", "contains", "z");

    /* between field, operator and value exactly one space */
    expect_refused("name  eq 'x'");
    expect_refused("name eq  'x'");
    expect_refused("name\teq 'x'");
    expect_refused("name eq\t'x'");
    expect_refused("a eq 'x' and\tb eq 'y'");
}

static void test_and(void **state)
{
    (void)state;
    assert_int_equal(parse("contains(name,'echo') and subscriptionRequired eq true and state ne 'x'"), 3);
    expect_cond(0, "name", "contains", "echo");
    expect_cond(1, "subscriptionRequired", "eq", "true");
    expect_cond(2, "state", "ne", "x");
    /* a quoted value may be followed by "and" without a space before it */
    assert_int_equal(parse("a eq 'x'and b eq 'y'"), 2);
    expect_cond(1, "b", "eq", "y");
    /* "and " with nothing after it ends the filter */
    assert_int_equal(parse("a eq 'x' and "), 1);
    expect_cond(0, "a", "eq", "x");
}

static void test_most_conditions(void **state)
{
    (void)state;
    char text[1024] = "";
    for (int i = 0; i < PT_MGMT_FILTER_MAX; i++) {
        char one[64];
        snprintf(one, sizeof(one), "%sf%d eq 'v%d'", i ? " and " : "", i, i);
        strcat(text, one);
    }
    assert_int_equal(parse(text), PT_MGMT_FILTER_MAX);
    for (int i = 0; i < PT_MGMT_FILTER_MAX; i++) {
        char f[16], v[16];
        snprintf(f, sizeof(f), "f%d", i);
        snprintf(v, sizeof(v), "v%d", i);
        expect_cond(i, f, "eq", v);
    }
    /* one more is refused, and nothing is written past the max */
    strcat(text, " and extra eq 'x'");
    expect_refused(text);
    const unsigned char *past = (const unsigned char *)&conds[PT_MGMT_FILTER_MAX];
    for (size_t i = 0; i < sizeof(conds[0]); i++)
        assert_int_equal(past[i], 0x5a);

    /* the caller's max is what counts */
    assert_int_equal(parse_max("a eq 'x' and b eq 'y'", 2), 2);
    assert_int_equal(parse_max("a eq 'x' and b eq 'y' and c eq 'z'", 2), -1);
    assert_int_equal(parse_max("a eq 'x'", 0), -1);
    assert_int_equal(parse_max("", 0), 0);

    /* a long chain: refused once past the max */
    size_t n = 20000 * strlen("a eq 'x' and ") + 1;
    char *chain = malloc(n);
    chain[0] = '\0';
    char *p = chain;
    for (int i = 0; i < 20000; i++)
        p += sprintf(p, "%sa eq 'x'", i ? " and " : "");
    expect_refused(chain);
    free(chain);
}

static void test_empty(void **state)
{
    (void)state;
    /* an empty $filter has no conditions (every item matches) */
    assert_int_equal(parse(""), 0);
    /* only spaces is not empty: refused */
    expect_refused(" ");
    expect_refused("     ");
}

static void test_refused(void **state)
{
    (void)state;
    /* unbalanced quotes */
    expect_refused("name eq 'x");
    expect_refused("name eq 'it''s");
    expect_refused("name eq '''");
    expect_refused("contains(name,'x)");
    /* unknown or misspelt operators (lower case only; ge, gt, le and lt are
       read for the reports' timestamps, lists refuse them: pt_mgmt_filter_send_page) */
    expect_one("name gt 'x'", "name", "gt", "x");
    expect_one("name lt 3", "name", "lt", "3");
    expect_refused("name GT 'x'");
    expect_refused("name EQ 'x'");
    expect_refused("name Ne 'x'");
    expect_refused("name eqq 'x'");
    expect_refused("name e 'x'");
    expect_refused("name = 'x'");
    /* unknown functions */
    expect_refused("substringof('x',name)");
    expect_refused("has(name,'x')");
    expect_refused("contain(name,'x')");
    expect_refused("contains (name,'x')");
    /* ...though before eq or ne it is only a field name, which no member has */
    expect_one("tolower(name) eq 'x'", "tolower(name)", "eq", "x");
    /* functions without their comma, value or closing parenthesis */
    expect_refused("contains(name 'x')");
    expect_refused("contains(name)");
    expect_refused("contains(name,)");
    expect_refused("contains(name,'x'");
    expect_refused("contains(name,'x' ");
    expect_refused("contains(name,'x'))");
    expect_refused("contains(name,x y)");
    /* incomplete comparisons */
    expect_refused("name");
    expect_refused("name eq");
    expect_refused("name eq ");
    expect_refused("eq 'x'");
    /* trailing garbage, other joins */
    expect_refused("name eq 'x' garbage");
    expect_refused("name eq 'x')");
    expect_refused("name eq 'x'y");
    expect_refused("name eq x)");
    expect_refused("name eq 'x' or b eq 'y'");
    expect_refused("name eq 'x' and");
    expect_refused("name eq 'x' andb eq 'y'");
    expect_refused("name eq 'x' && b eq 'y'");
    expect_refused("and name eq 'x'");
    expect_refused("not name eq 'x'");
    expect_refused("(name eq 'x')");
}

static void test_long_input(void **state)
{
    (void)state;
    char field[200];
    /* a field has at most 63 characters */
    memset(field, 'f', 63);
    snprintf(field + 63, sizeof(field) - 63, " eq 'x'");
    assert_int_equal(parse(field), 1);
    assert_int_equal(strlen(conds[0].field), 63);
    memset(field, 'f', 64);
    snprintf(field + 64, sizeof(field) - 64, " eq 'x'");
    expect_refused(field);
    char fs[65];
    memset(fs, 'f', 64);
    fs[64] = '\0';
    snprintf(field, sizeof(field), "contains(%.63s,'x')", fs);
    assert_int_equal(parse(field), 1);
    assert_int_equal(strlen(conds[0].field), 63);
    snprintf(field, sizeof(field), "contains(%.64s,'x')", fs);
    expect_refused(field);

    /* 100 000 characters without a space */
    size_t n = 100000;
    char *big = malloc(n + 64);
    memset(big, 'a', n);
    big[n] = '\0';
    expect_refused(big);
    /* a quoted value keeps its first 255 characters */
    memcpy(big, "name eq '", 9);
    big[n - 1] = '\'';
    assert_int_equal(parse(big), 1);
    assert_int_equal(strlen(conds[0].value), 255);
    assert_int_equal(strspn(conds[0].value, "a"), 255);
    /* a quote doubled past the 255th character does not end the value */
    memcpy(big + n - 3, "'''", 3);
    assert_int_equal(parse(big), 1);
    assert_int_equal(strlen(conds[0].value), 255);
    /* bare values longer than 255 characters are refused */
    memset(big, 'a', n);
    memcpy(big, "name eq ", 8);
    big[n] = '\0';
    expect_refused(big);
    memcpy(big, "contains(name,", 14);
    strcpy(big + n - 1, ")");
    expect_refused(big);
    free(big);
}

/* ----------------------------------------------------------------- matching */

static const char *const entity =
    "{\"name\": \"Echo API\", \"path\": \"echo/v1\", \"subscriptionRequired\": true,"
    " \"beta\": false, \"count\": 3, \"negative\": -42, \"ratio\": 1.5, \"none\": null,"
    " \"tags\": [\"a\"], \"nested\": {\"k\": \"v\"}, \"a.b\": \"dotted\","
    " \"empty\": \"\"}";

static void test_holds_strings(void **state)
{
    (void)state;
    /* eq and ne: whole value, without case */
    assert_true(holds("name eq 'Echo API'", entity));
    assert_true(holds("name eq 'echo api'", entity));
    assert_false(holds("name eq 'Echo'", entity));
    assert_false(holds("name eq 'Echo API '", entity));
    assert_true(holds("name ne 'Echo'", entity));
    assert_false(holds("name ne 'ECHO API'", entity));
    /* contains, startswith, endswith: without case */
    assert_true(holds("contains(path,'V1')", entity));
    assert_true(holds("contains(name,'o a')", entity));
    assert_false(holds("contains(path,'v2')", entity));
    assert_true(holds("contains(path,'')", entity));
    assert_true(holds("startswith(name,'echo')", entity));
    assert_false(holds("startswith(name,'API')", entity));
    assert_true(holds("startswith(name,'Echo API')", entity));
    assert_false(holds("startswith(name,'Echo API!')", entity));
    assert_true(holds("endswith(name,'api')", entity));
    assert_false(holds("endswith(name,'Echo')", entity));
    assert_false(holds("endswith(name,'the Echo API')", entity));
    assert_true(holds("endswith(name,'')", entity));
    assert_true(holds("empty eq ''", entity));
    assert_false(holds("empty ne ''", entity));
}

static void test_holds_other_types(void **state)
{
    (void)state;
    /* booleans read as true / false */
    assert_true(holds("subscriptionRequired eq true", entity));
    assert_true(holds("subscriptionRequired eq 'TRUE'", entity));
    assert_false(holds("subscriptionRequired eq false", entity));
    assert_true(holds("beta eq false", entity));
    assert_true(holds("beta ne true", entity));
    /* integers in decimal */
    assert_true(holds("count eq 3", entity));
    assert_true(holds("count eq '3'", entity));
    assert_false(holds("count eq 03", entity));
    assert_true(holds("negative eq -42", entity));
    assert_true(holds("startswith(negative,'-4')", entity));
    /* missing and null read as '' */
    assert_true(holds("missing eq ''", entity));
    assert_false(holds("missing eq 'x'", entity));
    assert_true(holds("missing ne 'x'", entity));
    assert_true(holds("none eq ''", entity));
    assert_false(holds("none eq 'null'", entity));
    /* reals, arrays and objects satisfy no condition, ne included */
    assert_false(holds("ratio eq 1.5", entity));
    assert_false(holds("ratio ne 1.5", entity));
    assert_false(holds("tags eq 'a'", entity));
    assert_false(holds("tags ne 'a'", entity));
    assert_false(holds("contains(tags,'a')", entity));
    assert_false(holds("nested eq ''", entity));
    assert_false(holds("nested ne 'x'", entity));
}

static void test_holds_no_nesting(void **state)
{
    (void)state;
    /* a field names a top-level member only, as written */
    assert_false(holds("nested/k eq 'v'", entity));
    assert_false(holds("nested.k eq 'v'", entity));
    assert_true(holds("nested.k eq ''", entity));
    assert_true(holds("a.b eq 'dotted'", entity));
    /* member names are compared with case */
    assert_false(holds("NAME eq 'Echo API'", entity));
    assert_true(holds("NAME eq ''", entity));
}

/* -------------------------------------------------------------------- pages */

static json_t *items_json(void)
{
    return json_loads("[{\"id\": \"a1\", \"kind\": \"a\"}, {\"id\": \"b1\", \"kind\": \"b\"},"
                      " {\"id\": \"a2\", \"kind\": \"a\"}, {\"id\": \"b2\", \"kind\": \"b\"},"
                      " {\"id\": \"a3\", \"kind\": \"A\"}]",
                      0, NULL);
}

/* The ids of a page, joined by commas. */
static const char *ids(const json_t *page)
{
    static char out[256];
    out[0] = '\0';
    size_t i;
    json_t *v;
    json_array_foreach(page, i, v)
    {
        if (i)
            strcat(out, ",");
        strcat(out, json_string_value(json_object_get(v, "id")));
    }
    return out;
}

static void test_page(void **state)
{
    (void)state;
    json_t *items = items_json();
    assert_non_null(items);
    long count = -1;

    json_t *page = pt_mgmt_filter_page(items, conds, 0, 100, 0, &count);
    assert_int_equal(count, 5);
    assert_string_equal(ids(page), "a1,b1,a2,b2,a3");
    /* the page holds the items themselves */
    assert_ptr_equal(json_array_get(page, 0), json_array_get(items, 0));
    json_decref(page);

    assert_int_equal(parse("kind eq 'a'"), 1);
    page = pt_mgmt_filter_page(items, conds, 1, 100, 0, &count);
    assert_int_equal(count, 3);
    assert_string_equal(ids(page), "a1,a2,a3");
    json_decref(page);
    page = pt_mgmt_filter_page(items, conds, 1, 2, 0, &count);
    assert_int_equal(count, 3);
    assert_string_equal(ids(page), "a1,a2");
    json_decref(page);
    page = pt_mgmt_filter_page(items, conds, 1, 2, 2, &count);
    assert_int_equal(count, 3);
    assert_string_equal(ids(page), "a3");
    json_decref(page);
    page = pt_mgmt_filter_page(items, conds, 1, 2, 3, &count);
    assert_int_equal(count, 3);
    assert_string_equal(ids(page), "");
    json_decref(page);
    page = pt_mgmt_filter_page(items, conds, 1, 1000, 1000000000L, &count);
    assert_int_equal(count, 3);
    assert_int_equal(json_array_size(page), 0);
    json_decref(page);

    /* every condition must hold */
    assert_int_equal(parse("kind eq 'a' and endswith(id,'2')"), 2);
    page = pt_mgmt_filter_page(items, conds, 2, 100, 0, &count);
    assert_int_equal(count, 1);
    assert_string_equal(ids(page), "a2");
    json_decref(page);
    assert_int_equal(parse("kind eq 'a' and kind eq 'b'"), 2);
    page = pt_mgmt_filter_page(items, conds, 2, 100, 0, &count);
    assert_int_equal(count, 0);
    assert_int_equal(json_array_size(page), 0);
    json_decref(page);

    /* items are left as they were */
    assert_int_equal(json_array_size(items), 5);
    assert_int_equal(items->refcount, 1);
    json_decref(items);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_comparisons),      cmocka_unit_test(test_functions),
        cmocka_unit_test(test_bare_values),      cmocka_unit_test(test_quoting),
        cmocka_unit_test(test_whitespace),       cmocka_unit_test(test_and),
        cmocka_unit_test(test_most_conditions),  cmocka_unit_test(test_empty),
        cmocka_unit_test(test_refused),          cmocka_unit_test(test_long_input),
        cmocka_unit_test(test_holds_strings),    cmocka_unit_test(test_holds_other_types),
        cmocka_unit_test(test_holds_no_nesting), cmocka_unit_test(test_page),
    };
    return cmocka_run_group_tests_name("mgmt_filter", tests, NULL, NULL);
}
