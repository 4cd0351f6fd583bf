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
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const struct pt_api *cache_api;
EVP_MD *cache_sha256;

/* The key of the tickets' HMAC: random, drawn at every start, never leaves the process. */
static unsigned char ticket_secret[32];

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

void cache_field(struct ptl_buf *b, pt_bytes s)
{
    unsigned char n[4] = {(unsigned char)s.len, (unsigned char)(s.len >> 8), (unsigned char)(s.len >> 16),
                          (unsigned char)(s.len >> 24)};
    ptl_buf_add(b, n, 4);
    ptl_buf_add(b, s.data, s.len);
}

int cache_type_for(const struct pt_api *api, pt_call *call, int caching_type)
{
    return api->fact(call, PT_FACT_WORKSPACE_ID).len ? PT_CACHE_INTERNAL : caching_type;
}

int cache_mac_hex(const struct ptl_buf *in, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (in->oom ||
        !HMAC(EVP_sha256(), ticket_secret, sizeof(ticket_secret), (const unsigned char *)in->p, in->n, md,
              &mdlen) ||
        mdlen != 32)
        return -1;
    ptl_hex_encode(md, mdlen, out);
    for (int i = 0; i < 64; i++)
        out[i] = ptl_lower(out[i]);
    out[64] = '\0';
    return 0;
}

/* ============================================================ the family */

static const struct pt_policy_def policies[] = {
    {"cache-lookup", PT_SECTION_INBOUND, PT_SCOPE_ALL, PT_POLICY_ONCE_PER_SECTION, cache_lookup_attrs,
     cache_lookup_compile, cache_lookup_run, NULL,
     "Looks the request up in the response cache and, on a hit, answers with the cached response at once "
     "(the backend is not called and outbound does not run; the response gets Age and the Cache-Control "
     "downstream-caching-type asks for). Only GET requests are looked up; not those with an Authorization "
     "header unless allow-private-response-caching is true, nor range and conditional requests (Range, "
     "If-Range, If-None-Match, If-Match, If-Modified-Since, If-Unmodified-Since), nor anonymous calls when "
     "varying by developer, nor requests with more than 64 values of a varied parameter or header. The key "
     "is the API, its workspace, the operation, the backend path at this point, and what the statement "
     "varies by: the named query parameters (names matched in any case, kept as sent) and headers, the "
     "developer (the subscription's owner, else the subscription), the developer's groups. On a miss the "
     "key waits for cache-store in outbound (sealed, so that no policy can forge it). An API of a workspace "
     "always uses the internal cache. Hits and misses are the access log's and analytics' `cache` field."},
    {"cache-store", PT_SECTION_OUTBOUND, PT_SCOPE_ALL, PT_POLICY_ONCE_PER_SECTION, cache_store_attrs,
     cache_store_compile, cache_store_run, NULL,
     "Stores the response for `duration` seconds under the key cache-lookup computed for this request "
     "(nothing happens when no lookup missed before it). Only 200 responses are stored unless cache-response "
     "is true, and never a 1xx, 206 or 304, a response with Set-Cookie, with Cache-Control no-store or "
     "no-cache (private: only when the lookup allowed private responses), with a Vary naming a request "
     "header the lookup does not vary by (or Vary: *), without a Content-Length, or over 2 MiB "
     "(cache.maxEntry). A stored response gets the Cache-Control of the lookup's downstream-caching-type "
     "and loses the backend's Age. The request never fails because of the store."},
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
    if (RAND_bytes(ticket_secret, sizeof(ticket_secret)) != 1) {
        *err = "no random bytes for the cache-lookup tickets' key";
        return -1;
    }
    cache_api = api;
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    cache_sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
#endif
    return 0;
}

static void cache_fini(void)
{
    cache_api = NULL;
    OPENSSL_cleanse(ticket_secret, sizeof(ticket_secret));
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    EVP_MD_free(cache_sha256);
#endif
    cache_sha256 = NULL;
}

PT_PLUGIN("cache", "1.0.0", policies, cache_init, cache_fini);
