/*
 * lookup.c -- cache-lookup: the response cache's inbound half.
 *
 * APIM's attributes: vary-by-developer (false), vary-by-developer-groups
 * (false), caching-type (prefer-external | external | internal, no
 * expression), downstream-caching-type (none | private | public, none),
 * must-revalidate (true), allow-private-response-caching (false, an
 * expression allowed); repeated vary-by-header and vary-by-query-parameter
 * children (a query parameter element may list several names separated by
 * ';').  In YAML the children are lists:
 *
 *   - cache-lookup:
 *       vary-by-developer: true
 *       downstream-caching-type: private
 *       vary-by-header: [Accept, Accept-Charset]
 *       vary-by-query-parameter: ["version;lang", page]
 *
 * The key.  Everything the response may depend on that the statement names,
 * length-prefixed (so that no two different requests write the same
 * bytes) and hashed with SHA-256, so that the key in the store is short,
 * fixed in size and holds nothing a client sent: the API and operation,
 * the backend path at this point (the operation's template parameters are
 * in it), the values of each named query parameter (all of them, in
 * order, %-decoded) and of each named header (all lines), the developer
 * (the subscription's owner) and the developer's groups.  Query parameters
 * that are not named do not vary the key, as in APIM.  The same
 * configuration gives the same keys, so cached responses survive a reload.
 *
 * The hand-over.  On a miss the lookup leaves a ticket in the request --
 * the request variable `portico.cache-lookup`, text -- with the key and
 * the settings cache-store needs (caching-type, downstream-caching-type,
 * must-revalidate, the evaluated allow-private-response-caching).  A
 * variable because it is the one per-request place two statements share in
 * the SDK; it is documented in docs/caching.md.
 */
#include "cache.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#define TICKET_VAR "portico.cache-lookup"
/* More values of one header or query parameter than this vary the key only by the first ones. */
#define MAX_VALUES 64

const struct pt_attr_def cache_lookup_attrs[] = {
    {"vary-by-developer", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0,
     "cache responses per developer (the owner of the request's subscription)"},
    {"vary-by-developer-groups", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0,
     "cache responses per set of groups the developer is in"},
    {"caching-type", PT_ATTR_ENUM, 0, "prefer-external", cache_types, NULL, 0, 0,
     "internal (the node's cache), external (Redis: cache.redis) or prefer-external (Redis when configured, "
     "else internal)"},
    {"downstream-caching-type", PT_ATTR_ENUM, 0, "none", cache_downstream_types, NULL, 0, 0,
     "what cached responses tell clients: none (Cache-Control: no-store), private or public (with "
     "max-age = the entry's remaining lifetime)"},
    {"must-revalidate", PT_ATTR_BOOL, 0, "true", NULL, NULL, 0, 0,
     "adds must-revalidate to Cache-Control when downstream caching is private or public"},
    {"allow-private-response-caching", PT_ATTR_BOOL, PT_ATTR_EXPR, "false", NULL, NULL, 0, 0,
     "look up (and store) requests that carry an Authorization header, and responses marked Cache-Control: "
     "private; an expression allowed"},
    {"vary-by-header", PT_ATTR_STRING, PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0,
     "a request header whose values vary the key (a list for several)"},
    {"vary-by-query-parameter", PT_ATTR_STRING, PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0,
     "a query parameter whose values vary the key; several names may be separated by ';' (a list for "
     "several)"},
    {0},
};

struct lookup {
    int by_developer, by_groups;
    int caching_type, downstream, must_revalidate;
    pt_value *allow_private; /* NULL: false */
    int nheaders, nparams;
    pt_bytes *headers, *params;
};

/* ------------------------------------------------------------- compile */

/* The names of vary-by-query-parameter: each value split at ';', trimmed, empty pieces dropped. */
static int compile_params(const struct pt_api *api, pt_compile *c, struct lookup *l)
{
    pt_value **vals = NULL;
    int n = api->attr_values(c, "vary-by-query-parameter", &vals);
    if (n <= 0)
        return 0;
    int total = 0;
    for (int i = 0; i < n; i++) {
        pt_bytes t;
        if (api->eval(NULL, vals[i], &t) != 0)
            return -1;
        for (size_t k = 0; k < t.len; k++)
            total += t.data[k] == ';';
        total++;
    }
    l->params = api->compile_alloc(c, sizeof(*l->params) * (size_t)total);
    if (!l->params)
        return -1;
    for (int i = 0; i < n; i++) {
        pt_bytes t;
        api->eval(NULL, vals[i], &t);
        size_t a = 0;
        while (a <= t.len) {
            size_t z = a;
            while (z < t.len && t.data[z] != ';')
                z++;
            pt_bytes name = ptl_trim((pt_bytes){t.data + a, z - a});
            if (name.len)
                l->params[l->nparams++] = name;
            a = z + 1;
        }
    }
    return 0;
}

static int compile_headers(const struct pt_api *api, pt_compile *c, struct lookup *l)
{
    pt_value **vals = NULL;
    int n = api->attr_values(c, "vary-by-header", &vals);
    if (n <= 0)
        return 0;
    l->headers = api->compile_alloc(c, sizeof(*l->headers) * (size_t)n);
    if (!l->headers)
        return -1;
    for (int i = 0; i < n; i++) {
        pt_bytes t;
        if (api->eval(NULL, vals[i], &t) != 0)
            return -1;
        t = ptl_trim(t);
        if (!ptl_is_token(t.data, t.len)) {
            api->compile_error(c, "vary-by-header", "'%.*s' is not a header name", (int)t.len, t.data);
            return -1;
        }
        l->headers[l->nheaders++] = t;
    }
    return 0;
}

int cache_lookup_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct lookup *l = api->compile_alloc(c, sizeof(*l));
    if (!l)
        return -1;
    l->by_developer = api->attr_bool(c, "vary-by-developer", 0);
    l->by_groups = api->attr_bool(c, "vary-by-developer-groups", 0);
    l->caching_type = api->attr_enum(c, "caching-type", PT_CACHE_PREFER_EXTERNAL);
    l->downstream = api->attr_enum(c, "downstream-caching-type", CACHE_DOWN_NONE);
    l->must_revalidate = api->attr_bool(c, "must-revalidate", 1);
    l->allow_private = api->attr_value(c, "allow-private-response-caching");
    if (compile_params(api, c, l) || compile_headers(api, c, l))
        return -1;
    *instance = l;
    return 0;
}

/* ----------------------------------------------------------------- key */

static void key_field(struct ptl_buf *b, pt_bytes s)
{
    unsigned char n[4] = {(unsigned char)s.len, (unsigned char)(s.len >> 8), (unsigned char)(s.len >> 16),
                          (unsigned char)(s.len >> 24)};
    ptl_buf_add(b, n, 4);
    ptl_buf_add(b, s.data, s.len);
}

static void key_count(struct ptl_buf *b, int n)
{
    char t[16];
    int k = snprintf(t, sizeof(t), "%d", n);
    key_field(b, (pt_bytes){t, (size_t)k});
}

/* Every value of query parameter `name` in the backend query, %-decoded, in order. */
static void key_param(const struct pt_api *api, pt_call *call, struct ptl_buf *b, const struct ptl_qseg *segs,
                      int nsegs, pt_bytes name)
{
    pt_bytes vals[MAX_VALUES];
    int n = 0;
    for (int i = 0; i < nsegs && n < MAX_VALUES; i++) {
        if (!ptl_qkey_is(api, call, segs[i].key, name))
            continue;
        pt_bytes v = {"", 0};
        if (segs[i].raw.len > segs[i].key.len) /* "key=value": the part after '=' */
            v = (pt_bytes){segs[i].raw.data + segs[i].key.len + 1, segs[i].raw.len - segs[i].key.len - 1};
        vals[n++] = ptl_pct_decode(api, call, v);
    }
    key_field(b, PTL_LIT("q"));
    key_field(b, name);
    key_count(b, n);
    for (int i = 0; i < n; i++)
        key_field(b, vals[i]);
}

static void key_header(const struct pt_api *api, pt_call *call, struct ptl_buf *b, pt_bytes name)
{
    pt_bytes vals[MAX_VALUES];
    int n = api->header_get(call, PT_MSG_REQUEST, name, vals, MAX_VALUES);
    if (n > MAX_VALUES)
        n = MAX_VALUES;
    key_field(b, PTL_LIT("h"));
    key_field(b, name);
    key_count(b, n);
    for (int i = 0; i < n; i++)
        key_field(b, vals[i]);
}

/* The store key for this request: "r:" + hex SHA-256 of what it varies by; -1 out of memory. */
static int build_key(const struct pt_api *api, pt_call *call, const struct lookup *l, pt_bytes *out)
{
    struct ptl_buf b;
    ptl_buf_init(&b, api, call, 256);
    key_field(&b, PTL_LIT("cache-lookup/1"));
    key_field(&b, api->fact(call, PT_FACT_API_ID));
    key_field(&b, api->fact(call, PT_FACT_OPERATION_ID));
    key_field(&b, api->path(call));
    if (l->nparams) {
        struct ptl_qseg *segs = NULL;
        int nsegs = ptl_query_split(api, call, api->query(call), &segs);
        if (nsegs < 0)
            return -1;
        for (int i = 0; i < l->nparams; i++)
            key_param(api, call, &b, segs, nsegs, l->params[i]);
    }
    for (int i = 0; i < l->nheaders; i++)
        key_header(api, call, &b, l->headers[i]);
    if (l->by_developer) {
        key_field(&b, PTL_LIT("developer"));
        key_field(&b, api->fact(call, PT_FACT_USER_ID));
    }
    if (l->by_groups) {
        key_field(&b, PTL_LIT("groups"));
        key_field(&b, api->fact(call, PT_FACT_USER_GROUPS));
    }
    if (b.oom)
        return -1;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(b.p, b.n, md, &mdlen, EVP_sha256(), NULL))
        return -1;
    size_t plen = sizeof(CACHE_RESPONSE_PREFIX) - 1;
    char *k = api->alloc(call, plen + 2 * mdlen + 1);
    if (!k)
        return -1;
    memcpy(k, CACHE_RESPONSE_PREFIX, plen);
    ptl_hex_encode(md, mdlen, k + plen);
    for (size_t i = plen; k[i]; i++)
        k[i] = ptl_lower(k[i]);
    *out = (pt_bytes){k, plen + 2 * mdlen};
    return 0;
}

/* ------------------------------------------------------------- tickets */

static int leave_ticket(const struct pt_api *api, pt_call *call, const struct cache_ticket *t)
{
    char head[64];
    int n = snprintf(head, sizeof(head), "1;%d;%d;%d;%d;", t->caching_type, t->downstream, t->must_revalidate,
                     t->allow_private);
    struct ptl_buf b;
    ptl_buf_init(&b, api, call, (size_t)n + t->key.len);
    ptl_buf_add(&b, head, (size_t)n);
    ptl_buf_add(&b, t->key.data, t->key.len);
    if (b.oom)
        return -1;
    return api->var_set(call, PTL_LIT(TICKET_VAR), ptl_buf_bytes(&b));
}

int cache_ticket_get(const struct pt_api *api, pt_call *call, struct cache_ticket *t)
{
    pt_bytes v;
    if (api->var_get(call, PTL_LIT(TICKET_VAR), &v) != 0)
        return 0;
    int f[5], k = 0;
    size_t i = 0;
    for (; k < 5 && i < v.len; k++) { /* five one-digit fields, each followed by ';' */
        if (i + 1 >= v.len || v.data[i] < '0' || v.data[i] > '9' || v.data[i + 1] != ';')
            return 0;
        f[k] = v.data[i] - '0';
        i += 2;
    }
    if (k != 5 || f[0] != 1 || f[1] > PT_CACHE_INTERNAL || f[2] > CACHE_DOWN_PUBLIC || f[3] > 1 || f[4] > 1)
        return 0;
    pt_bytes key = {v.data + i, v.len - i};
    if (key.len < sizeof(CACHE_RESPONSE_PREFIX) ||
        memcmp(key.data, CACHE_RESPONSE_PREFIX, sizeof(CACHE_RESPONSE_PREFIX) - 1))
        return 0;
    *t = (struct cache_ticket){f[1], f[2], f[3], f[4], key};
    return 1;
}

const char *cache_control_value(const struct pt_api *api, pt_call *call, int downstream, int must_revalidate,
                                int64_t max_age)
{
    if (downstream == CACHE_DOWN_NONE)
        return "no-store";
    char t[96];
    int n = snprintf(t, sizeof(t), "%s, max-age=%" PRId64 "%s",
                     downstream == CACHE_DOWN_PUBLIC ? "public" : "private",
                     max_age < 0 ? (int64_t)0 : max_age, must_revalidate ? ", must-revalidate" : "");
    char *s = ptl_dup_bytes(api, call, (pt_bytes){t, (size_t)n});
    return s ? s : "no-store";
}

/* ----------------------------------------------------------------- run */

/* One lookup in flight (request memory): what done() needs. */
struct pending {
    const struct lookup *l;
    struct cache_ticket t;
};

/* A hit: the cached response becomes the response, with Age and the downstream Cache-Control.
   PT_DONE, or PT_OK when the entry is unusable (damaged, expired: then it is a miss). */
static pt_status serve(const struct pt_api *api, pt_call *call, const struct pending *p, pt_bytes value)
{
    struct cache_entry e;
    if (cache_entry_decode(api, call, value, &e)) {
        api->log(PT_LOG_LEVEL_DEBUG, "cache-lookup: the entry under %.*s is not a response; a miss",
                 (int)p->t.key.len, p->t.key.data);
        return PT_OK;
    }
    int64_t age = cache_now() - e.stored_at;
    if (age < 0)
        age = 0; /* a clock that stepped back: as fresh as it can be */
    if (age >= e.ttl)
        return PT_OK; /* expired but not yet evicted: a miss */
    if (api->set_status(call, e.status, e.reason) != 0)
        return PT_OK;
    for (int i = 0; i < e.nheaders; i++)
        if (api->header_set(call, PT_MSG_RESPONSE, e.names[i], &e.values[i], 1, PT_HEADER_APPEND) != 0)
            return PT_ERROR; /* refused by the core (an entry someone else wrote): the error is set */
    char agebuf[24];
    int an = snprintf(agebuf, sizeof(agebuf), "%" PRId64, age);
    pt_bytes agev = {agebuf, (size_t)an};
    const char *cc = cache_control_value(api, call, p->l->downstream, p->l->must_revalidate, e.ttl - age);
    pt_bytes ccv = {cc, strlen(cc)};
    if (api->header_set(call, PT_MSG_RESPONSE, PTL_LIT("Age"), &agev, 1, PT_HEADER_OVERRIDE) ||
        api->header_set(call, PT_MSG_RESPONSE, PTL_LIT("Cache-Control"), &ccv, 1, PT_HEADER_OVERRIDE) ||
        api->body_set(call, PT_MSG_RESPONSE, e.body))
        return PT_ERROR;
    api->cache_mark(call, PT_CACHE_HIT);
    return api->respond(call);
}

/* The store answered: a hit is served, a miss leaves the ticket for cache-store. */
static pt_status answered(const struct pt_api *api, pt_call *call, const struct pending *p, int found,
                          pt_bytes value)
{
    if (found) {
        pt_status st = serve(api, call, p, value);
        if (st != PT_OK)
            return st;
    }
    api->cache_mark(call, PT_CACHE_MISS);
    if (leave_ticket(api, call, &p->t))
        return ptl_out_of_memory(api, call);
    return PT_OK;
}

static void lookup_done(pt_call *call, void *arg, int found, pt_bytes value)
{
    const struct pt_api *api = cache_api;
    api->resume(call, answered(api, call, arg, found, value));
}

pt_status cache_lookup_run(const struct pt_api *api, pt_call *call, void *instance)
{
    const struct lookup *l = instance;
    if (!ptl_bytes_is(api->method(call), "GET"))
        return PT_OK; /* APIM looks up GET requests only */
    int allow_private = 0;
    if (l->allow_private) {
        int rc = api->eval_bool(call, l->allow_private, &allow_private);
        if (rc == PT_AGAIN)
            return PT_AGAIN;
        if (rc)
            return PT_ERROR;
    }
    pt_bytes auth;
    if (!allow_private && api->header_get(call, PT_MSG_REQUEST, PTL_LIT("Authorization"), &auth, 1) > 0)
        return PT_OK; /* a private request: neither looked up nor stored */
    struct pending *p = api->alloc(call, sizeof(*p));
    if (!p)
        return ptl_out_of_memory(api, call);
    p->l = l;
    p->t = (struct cache_ticket){l->caching_type, l->downstream, l->must_revalidate, allow_private, {0}};
    if (build_key(api, call, l, &p->t.key))
        return ptl_out_of_memory(api, call);
    pt_bytes value = {"", 0};
    int rc = api->cache_get(call, l->caching_type, p->t.key, &value, lookup_done, p);
    if (rc == PT_AGAIN)
        return PT_AGAIN; /* lookup_done resumes */
    return answered(api, call, p, rc == 1, value);
}
