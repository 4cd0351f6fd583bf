/*
 * cache.c -- the caching family's descriptor, named and shaped after Azure
 * API Management's caching policies, and what several of them share
 * (durations, the clock).
 *
 * cache-lookup and cache-store cache whole responses of GET requests under
 * a key built from what the lookup varies by; cache-lookup-value,
 * cache-store-value and cache-remove-value keep values under keys the
 * configuration computes.  Decisions where APIM leaves room are documented
 * at each policy and in docs/caching.md.
 */
#include "cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const struct pt_api *cache_api;

const char *const cache_types[] = {"prefer-external", "external", "internal", NULL};
const char *const cache_downstream_types[] = {"none", "private", "public", NULL};

/* ============================================================ shared */

/* "300" -> 300; -1 when s is not a whole number (an optional sign, digits, spaces around). */
static int parse_seconds(const char *s, size_t n, int64_t *out)
{
    while (n && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    char tmp[32];
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(tmp, &end, 10);
    if (errno || *end)
        return -1;
    *out = v > CACHE_DURATION_MAX ? CACHE_DURATION_MAX : v;
    return 0;
}

int cache_check_duration(const struct pt_api *api, pt_compile *c, const char *attr)
{
    const char *lit = api->attr_literal(c, attr);
    int64_t v;
    if (lit && (parse_seconds(lit, strlen(lit), &v) || v < 0)) {
        api->compile_error(c, attr, "'%s' is not a number of seconds (a whole number >= 0)", lit);
        return -1;
    }
    return 0;
}

int cache_eval_duration(const struct pt_api *api, pt_call *call, const pt_value *v, int64_t *secs)
{
    pt_bytes b;
    int st = ptl_eval(api, call, v, &b);
    if (st)
        return st;
    if (parse_seconds(b.data, b.len, secs))
        return api->fail(call, 500, "ExpressionValueEvaluationFailure",
                         "the duration is not a whole number of seconds");
    return 0;
}

int64_t cache_now(void)
{
    return (int64_t)time(NULL);
}

/* ============================================================ the family */

static const struct pt_policy_def policies[] = {
    {"cache-lookup", PT_SECTION_INBOUND, PT_SCOPE_ALL, PT_POLICY_ONCE_PER_SECTION, cache_lookup_attrs,
     cache_lookup_compile, cache_lookup_run, NULL,
     "Looks the request up in the response cache and, on a hit, answers with the cached response at once "
     "(the backend is not called and outbound does not run; the response gets Age and the Cache-Control "
     "downstream-caching-type asks for). Only GET requests are looked up, and requests with an Authorization "
     "header only when allow-private-response-caching is true. The key is the API, the operation, the "
     "backend path at this point, and what the statement varies by: the named query parameters and headers, "
     "the developer (the subscription's owner), the developer's groups. On a miss the key waits for "
     "cache-store in outbound. Hits and misses are the access log's and analytics' `cache` field."},
    {"cache-store", PT_SECTION_OUTBOUND, PT_SCOPE_ALL, PT_POLICY_ONCE_PER_SECTION, cache_store_attrs,
     cache_store_compile, cache_store_run, NULL,
     "Stores the response for `duration` seconds under the key cache-lookup computed for this request "
     "(nothing "
     "happens when no lookup missed before it). Only 200 responses are stored unless cache-response is "
     "true, and never a response with Set-Cookie, with Cache-Control no-store or no-cache (private: only "
     "when the lookup allowed private responses), with Vary: *, without a Content-Length, or over 2 MiB "
     "(cache.maxEntry). A stored response gets the Cache-Control of the lookup's downstream-caching-type. "
     "The request never fails because of the store."},
    {"cache-lookup-value", PT_SECTION_ALL, PT_SCOPE_ALL, 0, cache_lookup_value_attrs,
     cache_lookup_value_compile, cache_lookup_value_run, NULL,
     "Reads the value cached under `key` into the variable `variable-name`. On a miss the variable gets "
     "default-value when one is given; without one the variable is left as it was (not set: an expression "
     "reading it gets nil). A cache that is down answers a miss."},
    {"cache-store-value", PT_SECTION_ALL, PT_SCOPE_ALL, 0, cache_store_value_attrs, cache_store_value_compile,
     cache_store_value_run, NULL,
     "Stores `value` under `key` for `duration` seconds, without waiting for the store (with Redis the "
     "write may land after the request goes on). A value over cache.maxEntry, or a store that is down, is "
     "skipped and counted; the request goes on."},
    {"cache-remove-value", PT_SECTION_ALL, PT_SCOPE_ALL, 0, cache_remove_value_attrs,
     cache_remove_value_compile, cache_remove_value_run, NULL,
     "Removes the value cached under `key` (nothing happens when there is none), without waiting for the "
     "store."},
    {0},
};

static int cache_init(const struct pt_api *api, const char **err)
{
    if (api->abi_minor < 7 || api->size < offsetof(struct pt_api, cache_mark) + sizeof(void *)) {
        *err = "the gateway's API table has no caches (it needs SDK 1.7)";
        return -1;
    }
    cache_api = api;
    return 0;
}

static void cache_fini(void)
{
    cache_api = NULL;
}

PT_PLUGIN("cache", "1.0.0", policies, cache_init, cache_fini);
