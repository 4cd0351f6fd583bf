/*
 * test_exprlint -- expressions written for APIM (C#) and unknown members of
 * `context` are refused with the Lua equivalent; valid Lua never is.
 */
#include "base/pt.h"
#include "base/pt_pool.h"
#include "base/pt_utf8.h"
#include "conf/pt_node.h"
#include "lua/pt_exprlint.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static char err[1024];

static bool check(const char *src, bool block)
{
    err[0] = '\0';
    return pt_exprlint_check(src, strlen(src), block, err, sizeof(err));
}

/* The expression is refused and the message contains every `want`. */
static void refused(const char *src, bool block, const char *want1, const char *want2)
{
    if (check(src, block))
        fail_msg("accepted: %s", src);
    if (want1 && !strstr(err, want1))
        fail_msg("%s: message \"%s\" lacks \"%s\"", src, err, want1);
    if (want2 && !strstr(err, want2))
        fail_msg("%s: message \"%s\" lacks \"%s\"", src, err, want2);
}

static void accepted(const char *src, bool block)
{
    if (!check(src, block))
        fail_msg("refused: %s: %s", src, err);
}

static void test_csharp_members_get_their_lua_names(void **state)
{
    (void)state;
    refused("context.Request.Headers.GetValueOrDefault(\"x\",\"\")", false, "'Request' is the C# name",
            "In Lua: @(context.request.headers:get(\"x\",\"\"))");
    refused("context.Variables[\"tier\"]", false, "'Variables'", "@(context.variables[\"tier\"])");
    refused("context.Response.StatusCode == 200", false, "'StatusCode'",
            "@(context.response.statusCode == 200)");
    refused("context.Subscription.Key", false, "In Lua: @(context.subscription.key)", NULL);
    refused("context.User.Email", false, "@(context.user.email)", NULL);
    refused("context.Api.Name", false, "@(context.api.name)", NULL);
    refused("context.Operation.Id", false, "@(context.operation.id)", NULL);
    refused("context.Product.Name", false, "@(context.product.name)", NULL);
    refused("context.Variables.GetValueOrDefault<string>(\"n\", \"\")", false,
            "@(context.variables:get(\"n\", \"\"))", NULL);
    refused("context.Request.Url.Query.GetValueOrDefault(\"page\", \"1\")", false,
            "@(context.request.url.query:get(\"page\", \"1\"))", NULL);
    refused("context.Request.MatchedParameters[\"id\"]", false,
            "@(context.request.matchedParameters[\"id\"])", NULL);
}

static void test_csharp_methods_casts_and_idioms(void **state)
{
    (void)state;
    refused("context.Request.Body.As<JObject>(preserveContent: true)[\"id\"]", false, "'.As<JObject>('",
            "@(context.request.body:asJson( true)[\"id\"])");
    refused("context.Response.Body.As<string>()", false, "@(context.response.body:asString())", NULL);
    refused("(string)context.Variables[\"x\"]", false, "the cast '(string)'", "@(context.variables[\"x\"])");
    refused("(int)context.Variables[\"n\"] + 1", false, "'(int)'", NULL);
    refused("context.Variables.GetValueOrDefault<string>(\"s\").AsJObject()", false, "json.decode", NULL);
    refused("DateTime.UtcNow", false, "@(now())", NULL);
    refused("string.Format(\"{0}-x\", context.RequestId)", false, "string.format", "'RequestId'");
    refused("new JObject()", false, "Lua table", NULL);
    refused("context.variables.tier != null && context.variables.n == 1", false, "'~='",
            "@(context.variables.tier ~= nil and context.variables.n == 1)");
    refused("context.request.headers:get('a', '').ToString()", false, "tostring(x)", NULL);
    refused("context.request.headers.get('a', '')", false, "':get('",
            "@(context.request.headers:get('a', ''))");
    refused("context.request.method.ToLower()", false, "@(context.request.method:lower())", NULL);
    refused("context.request.method.Length", false, "#value", NULL);
}

/* The common APIM forms that used to become a vague Lua error, each with a
   Lua hint that is right, or with no rewrite where none is safe. */
static void test_common_apim_forms(void **state)
{
    (void)state;
    refused("\"Bearer \" + context.variables.token", false, "'..'",
            "@(\"Bearer \" .. context.variables.token)");
    refused("Regex.IsMatch(context.request.url.path, \"^/a\")", false, "s:find(pattern)", NULL);
    refused("Regex.Replace(context.request.url.path, \"a\", \"b\")", false, "s:gsub(", NULL);
    refused("Convert.ToInt32(context.variables.n)", false, "tonumber(x)", NULL);
    refused("Math.Max(1, context.response.statusCode)", false, "@(math.max(1, context.response.statusCode))",
            NULL);
    refused("Encoding.UTF8.GetBytes(context.variables.s)", false, "use the string", NULL);
    refused("context.request.headers:get('a'):AsJwt()", false, "asJwt(token)", NULL);
    refused("context.request.headers:get('a'):AsBasic()", false, "asBasic(value)", NULL);
    refused("context.request.body:asJson().Value<string>(\"id\")", false, "t.name", NULL);
    refused("context.request.body.AsFormUrlEncodedContent()", false, "url.decodeForm", NULL);
    refused("context.request.headers:get('a'):Trim()", false, "trim(s)", NULL);
    refused("x:ToString()", false, "tostring(x)", NULL);
    refused("context.request.headers:get('a').Length", false, "#value", NULL);
    refused("context.variables.user?.name", false, "x and x.name", NULL);
    /* no rewrite that indexes a number */
    check("context.Elapsed.TotalMilliseconds", false);
    assert_non_null(strstr(err, "'elapsed'"));
    assert_null(strstr(err, "In Lua: @(context.elapsed.TotalMilliseconds)"));
    accepted("1 + 2", false);
    accepted("context.request.headers:get('a'):lower()", false);
    accepted("t.Length", false);
}

static void test_odd_valid_lua(void **state)
{
    (void)state;
    accepted("local s = (string) return s", true);
    accepted("t[1] = (bool) if t then end", true);
    accepted("if x then return new end", true);
    accepted("local new = 1 return new + 1", true);
    refused("new { a = 1 }", false, "Lua table", NULL);
}

static void test_unknown_members_suggest_the_closest(void **state)
{
    (void)state;
    refused("context.requets.method", false, "'context' has no member 'requets'",
            "did you mean 'context.request'?");
    refused("context.request.hedaers:get('a')", false, "did you mean 'context.request.headers'", NULL);
    refused("context.api.nope", false, "its members: id, name", NULL);
    refused("context.lastError.mesage", false, "'context.lastError.message'", NULL);
    refused("context.Request.hedaers", false, "did you mean 'context.request.headers'", NULL);
}

static void test_valid_lua_is_never_refused(void **state)
{
    (void)state;
    accepted("context.request.headers:get('x-tier', 'basic')", false);
    accepted("'context.Request.Headers is C#; (string) x != y && z'", false);
    accepted("[[ context.Variables.GetValueOrDefault(\"x\") ]] .. [==[ new JObject() ]==]", false);
    accepted("-- context.Request\n context.request.method", false);
    accepted("--[[ context.Request.Body.As<JObject>() ]] context.response.statusCode ~= 200", false);
    accepted("context.request.headers.Authorization", false);
    accepted("context.request.headers['X-Name']", false);
    accepted("context.variables.Tier or context.variables.GetSomething", false);
    accepted("context.request.url.query.Page", false);
    accepted("context.variables:getValueOrDefault('n', 0) + 1", false);
    accepted("json.null == nil", false);
    accepted("local t = {Trim = function(s) return s end}; return t.Trim('a')", true);
    accepted("local context = {Request = 1}; return context.Request", true);
    accepted("local function f(context) return context.Anything end; return f({})", true);
    accepted("local int = tostring; return (int)(1)", true);
    accepted("string.format('%s', context.requestId):lower()", false);
    accepted("f(string)", false);
    accepted("(x) and 1 or 2", false);
    accepted("context.user and context.user.groups[1]", false);
    accepted("context.deployment.gateway.instanceId", false);
    accepted("context.request.body:asJson(true).Items", false);
    accepted("split(context.request.headers:get('X-Tags', ''), ',')[1]", false);
    accepted("#context.request.url.path * 2", false);
    accepted("t:method{1}", false);
    accepted("f(a, b:c())", false);
    accepted("context.trace('x')", false);
    accepted("", false);
}

static bool valid_utf8(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0, l; i < n; i += l)
        if (!(l = pt_utf8_seq((const unsigned char *)s + i, n - i)))
            return false;
    return true;
}

/* Long non-ASCII text in a refused expression: whatever length the message
   is cut at, it is valid UTF-8 (a JSON body cannot carry it otherwise). */
static void test_cut_messages_stay_utf8(void **state)
{
    (void)state;
    static const char *const forms[] = {"context.Request.Method == '%s'", "x.As<'%s'>()",
                                        "context.Request.Nope == '%s'", "(string)'%s'"};
    static const char *const chars[] = {"\u00e9", "\u20ac", "\U0001F600"};
    for (size_t f = 0; f < sizeof(forms) / sizeof(forms[0]); f++)
        for (size_t c = 0; c < 3; c++)
            for (int pad = 0; pad < 3; pad++)
                for (int count = 100; count < 500; count += 37) {
                    char text[4096], src[5000];
                    size_t k = 0;
                    for (int i = 0; i < pad; i++)
                        text[k++] = 'a';
                    for (int i = 0; i < count && k + 5 < sizeof(text); i++) {
                        memcpy(text + k, chars[c], strlen(chars[c]));
                        k += strlen(chars[c]);
                    }
                    text[k] = '\0';
                    snprintf(src, sizeof(src), forms[f], text);
                    assert_false(check(src, false));
                    if (!valid_utf8(err))
                        fail_msg("not UTF-8 for %s (pad %d, %d chars): %s", forms[f], pad, count, err);
                }
}

static void test_utf8_cut(void **state)
{
    (void)state;
    char buf[8];
    /* "ab" then a 3-byte character that does not fit with the "…" */
    assert_int_equal(pt_str_fmt(buf, sizeof(buf), "ab\u20ac\u20ac"), 5);
    assert_string_equal(buf, "ab\u2026");
    assert_int_equal(pt_str_fmt(buf, sizeof(buf), "abc"), 3);
    assert_string_equal(buf, "abc");
    assert_int_equal(pt_str_fmt(buf, 3, "\u00e9\u00e9"), 2);
    assert_string_equal(buf, "\u00e9");
}

/* The place of a value under a long non-ASCII key, and under keys with
   control and direction characters: cut at a character, escaped. */
static void test_places_stay_utf8_and_escape_keys(void **state)
{
    (void)state;
    for (int pad = 0; pad < 3; pad++) {
        char yaml[4096];
        size_t k = 0;
        k += (size_t)snprintf(yaml + k, sizeof(yaml) - k, "apis:\n  - id: a\n    x%.*s", pad, "yy");
        for (int i = 0; i < 300; i++)
            k += (size_t)snprintf(yaml + k, sizeof(yaml) - k, "\u203a");
        k += (size_t)snprintf(yaml + k, sizeof(yaml) - k, ":\n      \"k\\u202e\\u0007\": 1\n");
        struct pt_pool *pool = pt_pool_new(4096);
        struct pt_errors errs = {0};
        struct pt_node *root = pt_node_parse_yaml(pool, NULL, yaml, k, &errs);
        assert_non_null(root);
        struct pt_node *apis = pt_node_get(root, "apis");
        struct pt_node *deep = pt_node_val(pt_node_val(apis->items[0], 1), 0);
        char where[200];
        pt_node_where(deep, where, sizeof(where));
        if (!valid_utf8(where))
            fail_msg("not UTF-8 (pad %d): %s", pad, where);
        assert_non_null(strstr(where, "\u2026"));
        assert_non_null(strstr(where, "k\\u{202e}\\x07"));
        assert_true(strlen(where) < 200);
        pt_node_errors_clear(&errs);
        pt_pool_free(pool);
    }
}

#ifndef PT_TOP_SRCDIR
#define PT_TOP_SRCDIR "."
#endif

/* Every member name pt_context.c answers (each `key_is(k, kl, "name")`) is
   known to the check: a member added there and not to the check's model
   would make the check refuse expressions that work. */
static void test_the_model_knows_every_context_member(void **state)
{
    (void)state;
    FILE *f = fopen(PT_TOP_SRCDIR "/core/lua/pt_context.c", "r");
    assert_non_null(f);
    char line[1024];
    int seen = 0;
    while (fgets(line, sizeof(line), f))
        for (char *p = strstr(line, "key_is("); p; p = strstr(p + 1, "key_is(")) {
            char *q = strchr(p, '"');
            char *e = q ? strchr(q + 1, '"') : NULL;
            if (!e)
                continue; /* the definition of key_is itself */
            *e = '\0';
            if (!pt_exprlint_knows_member(q + 1))
                fail_msg("pt_context.c answers '%s', which the expression check does not know", q + 1);
            *e = '"';
            seen++;
        }
    fclose(f);
    assert_true(seen > 50); /* the file was read, its members found */
}

static void test_hostile_input_is_bounded(void **state)
{
    (void)state;
    char big[20000];
    for (size_t i = 0; i + 1 < sizeof(big); i++)
        big[i] = "context.Request["[i % 16];
    big[sizeof(big) - 1] = '\0';
    assert_false(check(big, false));
    assert_non_null(strstr(err, "context.request"));
    assert_true(valid_utf8(err));
    accepted("'unterminated", false);
    accepted("[==[ unterminated", false);
    accepted("--[[ unterminated", false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csharp_members_get_their_lua_names),
        cmocka_unit_test(test_csharp_methods_casts_and_idioms),
        cmocka_unit_test(test_common_apim_forms),
        cmocka_unit_test(test_odd_valid_lua),
        cmocka_unit_test(test_unknown_members_suggest_the_closest),
        cmocka_unit_test(test_valid_lua_is_never_refused),
        cmocka_unit_test(test_hostile_input_is_bounded),
        cmocka_unit_test(test_cut_messages_stay_utf8),
        cmocka_unit_test(test_utf8_cut),
        cmocka_unit_test(test_places_stay_utf8_and_escape_keys),
        cmocka_unit_test(test_the_model_knows_every_context_member),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
