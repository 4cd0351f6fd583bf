/*
 * store.c -- cache-store: the response cache's outbound half.
 *
 * APIM's attributes: duration (seconds, required, an expression allowed)
 * and cache-response (false: only 200 responses are stored; true: the
 * response whatever its status; an expression allowed).  It stores under the
 * key the request's cache-lookup computed (lookup.c's ticket), so it does
 * nothing for a request no lookup missed: not a GET, a private request the
 * lookup skipped, a hit (whose outbound does not run), no lookup at all.
 *
 * What is never stored, whatever cache-response says (decisions; APIM
 * documents none of them, and a shared cache must not do otherwise):
 *   - a response with Set-Cookie (a cookie is one client's);
 *   - Cache-Control no-store or no-cache (we cannot revalidate), and
 *     private unless the lookup allowed private responses
 *     (allow-private-response-caching);
 *   - Vary: * (the backend says no key can describe it), and a Vary
 *     naming a request header the lookup does not vary by (the key would
 *     not tell the representations apart: one client's Accept-Encoding or
 *     Accept would choose what everyone gets);
 *   - statuses 1xx, 206 and 304 (one client's part or "not modified");
 *   - a body whose length the head does not announce (chunked or until
 *     close): reading such a body could pass limits.bufferSize, which fails
 *     the response with 502 -- the cache must never fail a request -- so
 *     only responses with a Content-Length up to 2 MiB are read;
 *   - an entry over cache.maxEntry (the store refuses it; counted).
 *
 * A stored response leaves with the Cache-Control downstream-caching-type
 * gives it (max-age = duration), so the miss and the hits that follow say
 * the same thing to clients.
 */
#include "cache.h"

#include <string.h>

const struct pt_attr_def cache_store_attrs[] = {
    {"duration", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "how long the response is kept, in seconds (an expression allowed; 0 or less: not stored)"},
    {"cache-response", PT_ATTR_BOOL, PT_ATTR_EXPR, "false", NULL, NULL, 0, 0,
     "store the response whatever its status (false: only 200); an expression allowed"},
    {0},
};

struct store {
    pt_value *duration;
    pt_value *cache_response; /* NULL: false */
};

int cache_store_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct store *s = api->compile_alloc(c, sizeof(*s));
    if (!s || cache_check_duration(api, c, "duration"))
        return -1;
    s->duration = api->attr_value(c, "duration");
    s->cache_response = api->attr_value(c, "cache-response");
    if (!s->duration)
        return -1;
    *instance = s;
    return 0;
}

/* Response headers that are not kept: the connection's and the framing's (the core writes its own),
   the cookie (never stored anyway), and the two a hit writes afresh (Age, Cache-Control). */
static const char *const unkept[] = {"connection", "keep-alive", "transfer-encoding", "content-length",
                                     "te",         "trailer",    "upgrade",           "proxy-connection",
                                     "set-cookie", "age",        "cache-control",     NULL};

int cache_header_unkept(pt_bytes name)
{
    for (int i = 0; unkept[i]; i++)
        if (ptl_bytes_ieq(name, unkept[i]))
            return 1;
    return 0;
}

/* Is `token` one of the comma-separated directives of value v (case-insensitive, "token" or "token=...")? */
static int has_directive(pt_bytes v, const char *token)
{
    size_t a = 0;
    while (a < v.len) {
        size_t z = a;
        while (z < v.len && v.data[z] != ',')
            z++;
        pt_bytes d = ptl_trim((pt_bytes){v.data + a, z - a});
        size_t k = 0;
        while (k < d.len && d.data[k] != '=')
            k++;
        if (ptl_bytes_ieq(ptl_trim((pt_bytes){d.data, k}), token))
            return 1;
        a = z + 1;
    }
    return 0;
}

/* Does any line of response header `name` hold `token`?  Every line is seen (header_at), however many. */
static int header_has(const struct pt_api *api, pt_call *call, const char *name, const char *token)
{
    pt_bytes n, v;
    for (int i = 0; i < 65536 && api->header_at(call, PT_MSG_RESPONSE, i, &n, &v) == 0; i++)
        if (ptl_bytes_ieq(n, name) && has_directive(v, token))
            return 1;
    return 0;
}

/* Is `name` one of the comma-separated lower-case names of `list`? */
static int in_list(pt_bytes list, pt_bytes name)
{
    size_t a = 0;
    while (a < list.len) {
        size_t z = a;
        while (z < list.len && list.data[z] != ',')
            z++;
        if (z - a == name.len) {
            size_t k = 0;
            while (k < name.len && ptl_lower(name.data[k]) == list.data[a + k])
                k++;
            if (k == name.len)
                return 1;
        }
        a = z + 1;
    }
    return 0;
}

/* NULL when every name in the response's Vary lines is one the lookup varies by; else why not. */
static const char *vary_refusal(const struct pt_api *api, pt_call *call, const struct cache_ticket *t)
{
    pt_bytes n, v;
    for (int i = 0; i < 65536 && api->header_at(call, PT_MSG_RESPONSE, i, &n, &v) == 0; i++) {
        if (!ptl_bytes_ieq(n, "Vary"))
            continue;
        size_t a = 0;
        while (a < v.len) {
            size_t z = a;
            while (z < v.len && v.data[z] != ',')
                z++;
            pt_bytes d = ptl_trim((pt_bytes){v.data + a, z - a});
            if (ptl_bytes_is(d, "*"))
                return "Vary: *";
            if (d.len && !in_list(t->vary, d))
                return "Vary names a request header the lookup does not vary by";
            a = z + 1;
        }
    }
    return NULL;
}

/* A decimal number (digits only, at most 18); 0, or -1. */
static int decimal(pt_bytes v, uint64_t *out)
{
    if (v.len == 0 || v.len > 18)
        return -1;
    uint64_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.data[i] < '0' || v.data[i] > '9')
            return -1;
        n = n * 10 + (uint64_t)(v.data[i] - '0');
    }
    *out = n;
    return 0;
}

/* Why this response is not stored (static text for the debug log), or NULL when it may be. */
static const char *refusal(const struct pt_api *api, pt_call *call, const struct cache_ticket *t)
{
    pt_bytes v;
    if (api->header_get(call, PT_MSG_RESPONSE, PTL_LIT("Set-Cookie"), &v, 1) > 0)
        return "it sets a cookie";
    if (header_has(api, call, "Cache-Control", "no-store") ||
        header_has(api, call, "Cache-Control", "no-cache"))
        return "Cache-Control forbids it";
    if (!t->allow_private && header_has(api, call, "Cache-Control", "private"))
        return "it is private (allow-private-response-caching is false)";
    const char *why = vary_refusal(api, call, t);
    if (why)
        return why;
    if (api->header_get(call, PT_MSG_RESPONSE, PTL_LIT("Transfer-Encoding"), &v, 1) > 0)
        return "its length is not announced";
    if (api->header_get(call, PT_MSG_RESPONSE, PTL_LIT("Content-Length"), &v, 1) != 1)
        return "its length is not announced";
    uint64_t len, most = CACHE_ENTRY_MAX, buffer;
    if (decimal(ptl_trim(v), &len))
        return "its length is not announced";
    /* a body past limits.bufferSize cannot be read for a policy without failing the response (502) */
    if (!decimal(api->fact(call, PT_FACT_BUFFER_SIZE), &buffer) && buffer < most)
        most = buffer;
    return len > most ? "it is too large" : NULL;
}

/* The entry for the response as it stands: status, kept headers, body. */
static int build_entry(const struct pt_api *api, pt_call *call, pt_bytes body, int64_t ttl, pt_bytes *out)
{
    struct cache_entry e = {0};
    e.status = api->status(call);
    e.stored_at = cache_now();
    e.ttl = ttl;
    e.body = body;
    pt_bytes name, value;
    int n = 0;
    while (n < 4096 && api->header_at(call, PT_MSG_RESPONSE, n, &name, &value) == 0)
        n++;
    e.names = api->alloc(call, sizeof(*e.names) * (size_t)(n + 1));
    e.values = api->alloc(call, sizeof(*e.values) * (size_t)(n + 1));
    if (!e.names || !e.values)
        return -1;
    for (int i = 0; i < n; i++) {
        if (api->header_at(call, PT_MSG_RESPONSE, i, &name, &value) != 0)
            break;
        if (cache_header_unkept(name))
            continue;
        e.names[e.nheaders] = name;
        e.values[e.nheaders++] = value;
    }
    return cache_entry_encode(api, call, &e, out);
}

pt_status cache_store_run(const struct pt_api *api, pt_call *call, void *instance)
{
    const struct store *s = instance;
    struct cache_ticket t;
    if (!cache_ticket_get(api, call, &t))
        return PT_OK; /* no lookup missed in this request */
    int64_t ttl;
    int st = cache_eval_duration(api, call, s->duration, &ttl);
    if (st)
        return (pt_status)st;
    if (ttl <= 0)
        return PT_OK;
    int any_status = 0;
    if (s->cache_response) {
        int rc = api->eval_bool(call, s->cache_response, &any_status);
        if (rc == PT_AGAIN)
            return PT_AGAIN;
        if (rc)
            return PT_ERROR;
    }
    int status = api->status(call);
    if (!any_status && status != 200)
        return PT_OK;
    if (status < 200 || status == 206 || status == 304)
        return PT_OK; /* a part, "not modified", an interim answer: never a response for everyone */
    const char *why = refusal(api, call, &t);
    if (why) {
        api->log(PT_LOG_LEVEL_DEBUG, "cache-store: response not stored: %s", why);
        return PT_OK;
    }
    pt_bytes body;
    if ((st = ptl_body_get(api, call, PT_MSG_RESPONSE, &body)))
        return (pt_status)st; /* PT_AGAIN: run() comes again once the body is in memory */
    pt_bytes entry;
    if (build_entry(api, call, body, ttl, &entry))
        return ptl_out_of_memory(api, call);
    if (api->cache_put(call, t.caching_type, t.key, entry, (uint32_t)ttl) != 0)
        return PT_OK; /* too large for the store, or the store is down: counted there */
    const char *cc = cache_control_value(api, call, t.downstream, t.must_revalidate, ttl);
    pt_bytes ccv = {cc, strlen(cc)};
    /* the backend's Age would make the new max-age look spent already: the response is fresh now */
    if (api->header_set(call, PT_MSG_RESPONSE, PTL_LIT("Cache-Control"), &ccv, 1, PT_HEADER_OVERRIDE) ||
        api->header_set(call, PT_MSG_RESPONSE, PTL_LIT("Age"), NULL, 0, PT_HEADER_DELETE))
        return PT_ERROR;
    return PT_OK;
}
