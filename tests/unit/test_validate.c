/*
 * test_validate -- the pure helpers of the validation plugin
 * (plugins/validate): the JSON body reader (values, strictness, where an
 * error is), a parameter's text converted by its declared type, the
 * response entry for a status (`default` included), action names and
 * overrides, and the standard headers never reported as unspecified
 * (the lists are searched by bsearch: every name must be found).
 */
#include "validate.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static json_t *parse(const char *text, char *err)
{
    return body_parse_json(text, strlen(text), err, 256);
}

static void expect_same(const char *text, const char *as_json)
{
    char err[256];
    json_t *mine = parse(text, err);
    json_t *want = json_loads(as_json, JSON_DECODE_ANY, NULL);
    assert_non_null(want);
    if (!mine)
        fail_msg("refused %s: %s", text, err);
    assert_true(json_equal(mine, want));
    json_decref(mine);
    json_decref(want);
}

static void expect_refused(const char *text, const char *what, int line, int pos)
{
    char err[256], where[64];
    json_t *v = parse(text, err);
    if (v)
        fail_msg("accepted %s", text);
    print_message("# %s\n", err);
    assert_non_null(strstr(err, what));
    snprintf(where, sizeof(where), "Line: %d, Position: %d", line, pos);
    assert_non_null(strstr(err, where));
}

static void test_body_values(void **state)
{
    (void)state;
    expect_same("{\"a\": [1, -2, 0.5, -1.5e3, true, false, null, \"x\"], \"b\": {}}",
                "{\"a\": [1, -2, 0.5, -1500.0, true, false, null, \"x\"], \"b\": {}}");
    expect_same(" \r\n\t42 \n", "42");
    expect_same("\"caf\\u00e9 \\ud83d\\ude00 \\\"\\\\\\/\\b\\f\\n\\r\\t\"",
                "\"caf\\u00e9 \\ud83d\\ude00 \\\"\\\\/\\b\\f\\n\\r\\t\"");
    expect_same("\"caf\xc3\xa9\"", "\"caf\\u00e9\"");
    expect_same("{\"k\": 1, \"k\": 2}", "{\"k\": 2}"); /* the last one wins, as in jansson */
    expect_same("9223372036854775807", "9223372036854775807");
    expect_same("-9223372036854775808", "-9223372036854775808");
    expect_same("\xEF\xBB\xBF[]", "[]"); /* a byte order mark */
    char err[256];
    json_t *big = parse("18446744073709551616", err); /* past 64 bits: a real */
    assert_true(json_is_real(big));
    json_decref(big);
    /* a key escaped long enough to need the scratch buffer, with a value that needs it too */
    char text[600];
    snprintf(text, sizeof(text), "{\"%s\\u0041\": \"\\u00e9%s\"}",
             "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
             "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
             "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
             "vvvvvvvvvv");
    json_t *o = parse(text, err);
    assert_non_null(o);
    assert_int_equal(json_object_size(o), 1);
    json_decref(o);
}

static void test_body_refusals(void **state)
{
    (void)state;
    expect_refused("", "unexpected end", 1, 1);
    expect_refused("{\"a\": 01}", "',' or '}' expected", 1, 8);
    expect_refused("[1,]", "invalid", 1, 4);
    expect_refused("{\"a\": 1,\n \"b\" 2}", "':' expected", 2, 6);
    expect_refused("{\"a\": tru}", "invalid literal", 1, 7);
    expect_refused("\"\\ud800\"", "unpaired surrogate", 1, 8);
    expect_refused("\"\\udc00\"", "unpaired surrogate", 1, 8);
    expect_refused("\"a\tb\"", "control character", 1, 3);
    expect_refused("\"\xed\xa0\x80\"", "invalid UTF-8", 1, 2);
    expect_refused("\"\xc0\xaf\"", "invalid UTF-8", 1, 2);
    expect_refused("\"\\x\"", "invalid escape", 1, 4);
    expect_refused("\"abc", "unterminated", 1, 5);
    expect_refused("1 2", "end of the body expected", 1, 3);
    expect_refused("{\"a\\u0000\": 1}", "NUL character in a member name", 1, 14);
    expect_refused("1e999", "out of range", 1, 6);
    expect_refused("-", "invalid number", 1, 2);
    expect_refused("1.", "invalid number", 1, 3);
    expect_refused("// x\n1", "invalid number", 1, 1);
    char deep[2 * BODY_MAX_DEPTH + 10];
    memset(deep, '[', BODY_MAX_DEPTH + 2);
    memset(deep + BODY_MAX_DEPTH + 2, ']', BODY_MAX_DEPTH + 2);
    deep[2 * BODY_MAX_DEPTH + 4] = '\0';
    char err[256];
    assert_null(parse(deep, err));
    assert_non_null(strstr(err, "nested too deeply"));
    deep[BODY_MAX_DEPTH + 1] = ']'; /* BODY_MAX_DEPTH + 1 levels: still accepted */
    memmove(deep + BODY_MAX_DEPTH + 1, deep + BODY_MAX_DEPTH + 2, BODY_MAX_DEPTH + 3);
    deep[2 * BODY_MAX_DEPTH + 2] = '\0';
    json_t *ok = parse(deep, err);
    if (!ok)
        fail_msg("%s", err);
    json_decref(ok);
}

static json_t *param_value(const char *param, const char *schema, const char *text, const char **why)
{
    json_t *p = json_loads(param, 0, NULL), *s = schema ? json_loads(schema, 0, NULL) : NULL;
    json_t *v = defs_param_value(p, s, (pt_bytes){text, strlen(text)}, why);
    json_decref(p);
    json_decref(s);
    return v;
}

static void expect_param(const char *param, const char *schema, const char *text, const char *as_json)
{
    const char *why = NULL;
    json_t *v = param_value(param, schema, text, &why);
    json_t *want = json_loads(as_json, JSON_DECODE_ANY, NULL);
    if (!v)
        fail_msg("%s refused: %s", text, why);
    assert_true(json_equal(v, want));
    json_decref(v);
    json_decref(want);
}

static void expect_unparsed(const char *param, const char *schema, const char *text)
{
    const char *why = NULL;
    json_t *v = param_value(param, schema, text, &why);
    if (v)
        fail_msg("%s accepted", text);
    assert_non_null(why);
}

static void test_param_values(void **state)
{
    (void)state;
    expect_param("{\"type\": \"integer\"}", NULL, "42", "42");
    expect_param("{\"type\": \"integer\"}", NULL, "-7", "-7");
    expect_param("{\"type\": \"number\"}", NULL, "0.25", "0.25");
    expect_param("{\"type\": \"number\"}", NULL, "1e3", "1000.0");
    expect_param("{\"type\": \"boolean\"}", NULL, "True", "true");
    expect_param("{\"type\": \"boolean\"}", NULL, "false", "false");
    expect_param("{\"type\": \"string\"}", NULL, "42", "\"42\"");
    expect_param("{}", NULL, "x", "\"x\"");
    expect_param("{}", "{\"type\": \"integer\"}", "5",
                 "5"); /* the schema's type when the parameter has none */
    expect_param("{\"type\": \"array\"}", "{\"items\": {\"type\": \"integer\"}}", "1,2,3", "[1, 2, 3]");
    expect_param("{\"type\": \"array\"}", NULL, "a,b", "[\"a\", \"b\"]");
    expect_unparsed("{\"type\": \"integer\"}", NULL, "4.5");
    expect_unparsed("{\"type\": \"integer\"}", NULL, "");
    expect_unparsed("{\"type\": \"integer\"}", NULL, " 4");
    expect_unparsed("{\"type\": \"integer\"}", NULL, "99999999999999999999");
    expect_unparsed("{\"type\": \"number\"}", NULL, "nan");
    expect_unparsed("{\"type\": \"number\"}", NULL, "0x10");
    expect_unparsed("{\"type\": \"number\"}", NULL, "1e999");
    expect_unparsed("{\"type\": \"boolean\"}", NULL, "yes");
    expect_unparsed("{\"type\": \"string\"}", NULL, "\xff");
    expect_unparsed("{\"type\": \"array\"}", "{\"items\": {\"type\": \"integer\"}}", "1,x");
}

static void test_responses(void **state)
{
    (void)state;
    json_t *op =
        json_loads("{\"responses\": [{\"statusCode\": 200, \"description\": \"a\"}, {\"statusCode\": \"404\","
                   " \"description\": \"b\"}, {\"statusCode\": \"default\", \"description\": \"c\"}]}",
                   0, NULL);
    assert_string_equal(defs_str(defs_response(op, 200), "description"), "a");
    assert_string_equal(defs_str(defs_response(op, 404), "description"), "b");
    assert_string_equal(defs_str(defs_response(op, 500), "description"), "c");
    json_t *op2 = json_loads("{\"responses\": [{\"statusCode\": 200}]}", 0, NULL);
    assert_null(defs_response(op2, 201));
    json_t *op3 = json_loads("{}", 0, NULL);
    assert_null(defs_response(op3, 200));
    json_decref(op);
    json_decref(op2);
    json_decref(op3);
}

static void test_actions(void **state)
{
    (void)state;
    assert_int_equal(report_action_index("ignore"), ACT_IGNORE);
    assert_int_equal(report_action_index("detect"), ACT_DETECT);
    assert_int_equal(report_action_index("prevent"), ACT_PREVENT);
    assert_int_equal(report_action_index("block"), -1);
    assert_int_equal(report_action_index(NULL), -1);
    struct override o[] = {{"X-Key", ACT_IGNORE}, {"limit", ACT_PREVENT}};
    assert_int_equal(report_override_action(o, 2, PTL_LIT("x-key"), true, ACT_DETECT), ACT_IGNORE);
    assert_int_equal(report_override_action(o, 2, PTL_LIT("x-key"), false, ACT_DETECT), ACT_DETECT);
    assert_int_equal(report_override_action(o, 2, PTL_LIT("limit"), false, ACT_DETECT), ACT_PREVENT);
    assert_int_equal(report_override_action(o, 2, PTL_LIT("limits"), false, ACT_DETECT), ACT_DETECT);
}

static void test_standard_headers(void **state)
{
    (void)state;
    /* docs/validation.md's lists: each must be found (the tables are sorted for bsearch) */
    static const char *const req[] = {"Accept",
                                      "Accept-Charset",
                                      "Accept-Encoding",
                                      "Accept-Language",
                                      "Authorization",
                                      "Cache-Control",
                                      "Connection",
                                      "Content-Encoding",
                                      "Content-Language",
                                      "Content-Length",
                                      "Content-MD5",
                                      "Content-Type",
                                      "Cookie",
                                      "Date",
                                      "Expect",
                                      "Forwarded",
                                      "Host",
                                      "If-Match",
                                      "If-Modified-Since",
                                      "If-None-Match",
                                      "If-Range",
                                      "If-Unmodified-Since",
                                      "Keep-Alive",
                                      "Max-Forwards",
                                      "Ocp-Apim-Subscription-Key",
                                      "Ocp-Apim-Trace",
                                      "Origin",
                                      "Pragma",
                                      "Proxy-Authorization",
                                      "Proxy-Connection",
                                      "Range",
                                      "Referer",
                                      "TE",
                                      "Trailer",
                                      "Transfer-Encoding",
                                      "Upgrade",
                                      "User-Agent",
                                      "Via",
                                      "X-Forwarded-For",
                                      "X-Forwarded-Host",
                                      "X-Forwarded-Port",
                                      "X-Forwarded-Proto",
                                      "X-Request-Id",
                                      NULL};
    static const char *const resp[] = {"Accept-Ranges",
                                       "Access-Control-Allow-Credentials",
                                       "Access-Control-Allow-Headers",
                                       "Access-Control-Allow-Methods",
                                       "Access-Control-Allow-Origin",
                                       "Access-Control-Expose-Headers",
                                       "Access-Control-Max-Age",
                                       "Age",
                                       "Cache-Control",
                                       "Connection",
                                       "Content-Disposition",
                                       "Content-Encoding",
                                       "Content-Language",
                                       "Content-Length",
                                       "Content-Location",
                                       "Content-MD5",
                                       "Content-Range",
                                       "Content-Type",
                                       "Date",
                                       "ETag",
                                       "Expires",
                                       "Keep-Alive",
                                       "Last-Modified",
                                       "Pragma",
                                       "Proxy-Authenticate",
                                       "Server",
                                       "Strict-Transport-Security",
                                       "Trailer",
                                       "Transfer-Encoding",
                                       "Upgrade",
                                       "Vary",
                                       "Via",
                                       "X-Request-Id",
                                       NULL};
    for (int i = 0; req[i]; i++)
        if (!report_standard_header((pt_bytes){req[i], strlen(req[i])}, false))
            fail_msg("request header %s not found", req[i]);
    for (int i = 0; resp[i]; i++)
        if (!report_standard_header((pt_bytes){resp[i], strlen(resp[i])}, true))
            fail_msg("response header %s not found", resp[i]);
    assert_false(report_standard_header(PTL_LIT("X-Tenant"), false));
    assert_false(report_standard_header(PTL_LIT("Set-Cookie"), true));
    assert_false(report_standard_header(PTL_LIT("Host"), true));
    assert_false(report_standard_header(PTL_LIT("ETag"), false));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_values),  cmocka_unit_test(test_body_refusals),
        cmocka_unit_test(test_param_values), cmocka_unit_test(test_responses),
        cmocka_unit_test(test_actions),      cmocka_unit_test(test_standard_headers),
    };
    return cmocka_run_group_tests_name("validate", tests, NULL, NULL);
}
