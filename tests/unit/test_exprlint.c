/*
 * test_exprlint -- expressions written for APIM (C#) and unknown members of
 * `context` are refused with the Lua equivalent; valid Lua never is.
 */
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

static void test_hostile_input_is_bounded(void **state)
{
    (void)state;
    char big[20000];
    for (size_t i = 0; i + 1 < sizeof(big); i++)
        big[i] = "context.Request["[i % 16];
    big[sizeof(big) - 1] = '\0';
    check(big, false); /* any answer, without overflowing the message */
    assert_true(strlen(err) < sizeof(err));
    accepted("'unterminated", false);
    accepted("[==[ unterminated", false);
    accepted("--[[ unterminated", false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csharp_members_get_their_lua_names),
        cmocka_unit_test(test_csharp_methods_casts_and_idioms),
        cmocka_unit_test(test_unknown_members_suggest_the_closest),
        cmocka_unit_test(test_valid_lua_is_never_refused),
        cmocka_unit_test(test_hostile_input_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
