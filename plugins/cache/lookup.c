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
 * fixed in size and holds nothing a client sent: the API, its workspace
 * and the operation, the backend path at this point (the operation's
 * template parameters are in it), each named query parameter (every
 * parameter whose name matches it ASCII-case-insensitively, with the name
 * as sent and the value, in order, %-escapes of unreserved characters
 * decoded and nothing else: `+`, `%2B` and a broken escape stay apart) and
 * each named header (all lines), the developer (the subscription's owner;
 * the subscription when it has none) and the developer's groups.  Query
 * parameters that are not named do not vary the key, as in APIM.  The same
 * configuration gives the same keys, so cached responses survive a reload.
 *
 * Not looked up (and so not stored): requests other than GET, requests
 * with Authorization unless allowed, range and conditional requests (a
 * 206 or 304 is one client's answer), anonymous requests when the lookup
 * varies by developer (nothing tells two of them apart), and requests with
 * more than MAX_VALUES values of a varied parameter or header.
 *
 * The hand-over.  On a miss the lookup leaves a ticket in the request --
 * the request variable `portico.cache-lookup`, text -- with the key and
 * the settings cache-store needs (caching-type, downstream-caching-type,
 * must-revalidate, the evaluated allow-private-response-caching, the
 * vary-by-header names), sealed with an HMAC over the ticket, the request id
 * and the API id under a secret drawn when the plugin starts.  A variable
 * because it is the one per-request place two statements share in the SDK;
 * policies can write variables, so cache-store believes a ticket only when
 * its HMAC checks: a ticket typed by a policy, or copied from another
 * request, is ignored.
 */
#include "cache.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#define TICKET_VAR "portico.cache-lookup"
/* A request with more values of one varied header or query parameter than this is not cached. */
#define MAX_VALUES 64

const struct pt_attr_def cache_lookup_attrs[] = {
    {"vary-by-developer", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0,
     "cache responses per developer (the owner of the request's subscription; the subscription when it has "
     "no owner; anonymous calls are then not cached)"},
    {"vary-by-developer-groups", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0,
     "cache responses per set of groups the developer is in"},
    {"caching-type", PT_ATTR_ENUM, 0, "prefer-external", cache_types, NULL, 0, 0,
     "internal (the node's cache), external (Redis: cache.redis) or prefer-external (Redis when configured, "
     "else internal); an API of a workspace always uses internal"},
    {"downstream-caching-type", PT_ATTR_ENUM, 0, "none", cache_downstream_types, NULL, 0, 0,
     "what cached responses tell clients: none (Cache-Control: no-store), private or public (with "
     "max-age = the entry's remaining lifetime; public is told as private when the lookup varies by "
     "developer, groups or Authorization, or allow-private-response-caching is not false)"},
    {"must-revalidate", PT_ATTR_BOOL, 0, "true", NULL, NULL, 0, 0,
     "adds must-revalidate to Cache-Control when downstream caching is private or public"},
    {"allow-private-response-caching", PT_ATTR_BOOL, PT_ATTR_EXPR, "false", NULL, NULL, 0, 0,
     "look up (and store) requests that carry an Authorization header, and responses marked Cache-Control: "
     "private; an expression allowed"},
    {"vary-by-header", PT_ATTR_STRING, PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0,
     "a request header whose values vary the key (a list for several); also the headers a backend's Vary "
     "may name for its response to be stored"},
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
    pt_bytes vary; /* the header names, lower-case, comma-separated: for the ticket */
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
    size_t n = 0;
    int by_auth = 0;
    for (int i = 0; i < l->nheaders; i++) {
        n += l->headers[i].len + 1;
        by_auth |= ptl_bytes_ieq(l->headers[i], "Authorization");
    }
    char *v = api->compile_alloc(c, n + 1);
    if (!v)
        return -1;
    size_t k = 0;
    for (int i = 0; i < l->nheaders; i++) {
        if (k)
            v[k++] = ',';
        for (size_t j = 0; j < l->headers[i].len; j++)
            v[k++] = ptl_lower(l->headers[i].data[j]);
    }
    l->vary = (pt_bytes){v, k};
    /* A response kept per caller (per developer, per groups, per Authorization, or a private one the
       lookup may let in) must not be offered to shared caches downstream, which know nothing of the
       key: public is told as private then. */
    const char *lit = api->attr_literal(c, "allow-private-response-caching");
    int maybe_private = l->allow_private && !(lit && !strcmp(lit, "false"));
    if (l->downstream == CACHE_DOWN_PUBLIC && (l->by_developer || l->by_groups || by_auth || maybe_private))
        l->downstream = CACHE_DOWN_PRIVATE;
    *instance = l;
    return 0;
}

/* ----------------------------------------------------------------- key */

#define key_field cache_field

static void key_count(struct ptl_buf *b, int n)
{
    char t[16];
    int k = snprintf(t, sizeof(t), "%d", n);
    key_field(b, (pt_bytes){t, (size_t)k});
}

/* a and b equal, ASCII letters in any case. */
static int ieq(pt_bytes a, pt_bytes b)
{
    if (a.len != b.len)
        return 0;
    for (size_t i = 0; i < a.len; i++)
        if (ptl_lower(a.data[i]) != ptl_lower(b.data[i]))
            return 0;
    return 1;
}

static int unreserved(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* A query name or value as the key holds it: %-escapes of unreserved characters decoded, other escapes
   with upper-case digits, everything else (`+`, a broken escape) as sent.  Two texts that give the same
   bytes mean the same to every backend; NULL data when the arena is full. */
static pt_bytes key_norm(const struct pt_api *api, pt_call *call, pt_bytes s)
{
    if (!memchr(s.data ? s.data : "", '%', s.len))
        return s;
    char *d = api->alloc(call, s.len + 1);
    if (!d)
        return (pt_bytes){NULL, 0};
    size_t k = 0;
    for (size_t i = 0; i < s.len; i++) {
        int h, lo;
        if (s.data[i] == '%' && i + 2 < s.len && (h = ptl_hexval(s.data[i + 1])) >= 0 &&
            (lo = ptl_hexval(s.data[i + 2])) >= 0) {
            int c = h * 16 + lo;
            if (unreserved(c))
                d[k++] = (char)c;
            else {
                d[k++] = '%';
                d[k++] = ptl_hex_upper[h];
                d[k++] = ptl_hex_upper[lo];
            }
            i += 2;
        } else
            d[k++] = s.data[i];
    }
    return (pt_bytes){d, k};
}

/* Every parameter of the backend query whose %-decoded name is `name` ASCII-case-insensitively: its
   name as sent and its value, in order (normalised by key_norm).  1 when there are more than
   MAX_VALUES of them (not cached), -1 out of memory. */
static int key_param(const struct pt_api *api, pt_call *call, struct ptl_buf *b, const struct ptl_qseg *segs,
                     int nsegs, pt_bytes name)
{
    int n = 0;
    for (int i = 0; i < nsegs; i++)
        if (ieq(ptl_pct_decode(api, call, segs[i].key), name))
            n++;
    if (n > MAX_VALUES)
        return 1;
    key_field(b, PTL_LIT("q"));
    key_field(b, name);
    key_count(b, n);
    for (int i = 0; i < nsegs; i++) {
        if (!ieq(ptl_pct_decode(api, call, segs[i].key), name))
            continue;
        pt_bytes v = {"", 0};
        if (segs[i].raw.len > segs[i].key.len) /* "key=value": the part after '=' */
            v = (pt_bytes){segs[i].raw.data + segs[i].key.len + 1, segs[i].raw.len - segs[i].key.len - 1};
        pt_bytes nk = key_norm(api, call, segs[i].key), nv = key_norm(api, call, v);
        if (!nk.data || !nv.data)
            return -1;
        key_field(b, nk);
        key_field(b, nv);
    }
    return 0;
}

/* Every line of request header `name`; 1 when there are more than MAX_VALUES (not cached). */
static int key_header(const struct pt_api *api, pt_call *call, struct ptl_buf *b, pt_bytes name)
{
    pt_bytes vals[MAX_VALUES];
    int n = api->header_get(call, PT_MSG_REQUEST, name, vals, MAX_VALUES);
    if (n > MAX_VALUES)
        return 1;
    key_field(b, PTL_LIT("h"));
    key_field(b, name);
    key_count(b, n);
    for (int i = 0; i < n; i++)
        key_field(b, vals[i]);
    return 0;
}

/* The store key for this request: "r:" + hex SHA-256 of what it varies by.  0; 1 when this request is
   not cached (see the top of the file); -1 out of memory. */
static int build_key(const struct pt_api *api, pt_call *call, const struct lookup *l, pt_bytes *out)
{
    struct ptl_buf b;
    ptl_buf_init(&b, api, call, 256);
    key_field(&b, PTL_LIT("cache-lookup/2"));
    key_field(&b, api->fact(call, PT_FACT_API_ID));
    key_field(&b, api->fact(call, PT_FACT_WORKSPACE_ID));
    key_field(&b, api->fact(call, PT_FACT_OPERATION_ID));
    key_field(&b, api->path(call));
    if (l->nparams) {
        struct ptl_qseg *segs = NULL;
        int nsegs = ptl_query_split(api, call, api->query(call), &segs);
        if (nsegs < 0)
            return -1;
        for (int i = 0; i < l->nparams; i++) {
            int rc = key_param(api, call, &b, segs, nsegs, l->params[i]);
            if (rc)
                return rc;
        }
    }
    for (int i = 0; i < l->nheaders; i++)
        if (key_header(api, call, &b, l->headers[i]))
            return 1;
    if (l->by_developer) {
        /* the owner; a subscription without one is a caller of its own; anonymous callers cannot be told
           apart, so they are not cached (distinct tags: a user id never equals a subscription id) */
        pt_bytes user = api->fact(call, PT_FACT_USER_ID), sub = api->fact(call, PT_FACT_SUBSCRIPTION_ID);
        if (user.len) {
            key_field(&b, PTL_LIT("user"));
            key_field(&b, user);
        } else if (sub.len) {
            key_field(&b, PTL_LIT("subscription"));
            key_field(&b, sub);
        } else
            return 1;
    }
    if (l->by_groups) {
        key_field(&b, PTL_LIT("groups"));
        key_field(&b, api->fact(call, PT_FACT_USER_GROUPS));
    }
    if (b.oom)
        return -1;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(b.p, b.n, md, &mdlen, cache_sha256 ? cache_sha256 : EVP_sha256(), NULL))
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

/* What the ticket's HMAC covers: its text, the request id and the API id. */
static void ticket_mac_input(const struct pt_api *api, pt_call *call, struct ptl_buf *m, pt_bytes text)
{
    ptl_buf_init(m, api, call, text.len + 128);
    cache_field(m, PTL_LIT("cache-lookup ticket/2"));
    cache_field(m, text);
    cache_field(m, api->fact(call, PT_FACT_REQUEST_ID));
    cache_field(m, api->fact(call, PT_FACT_API_ID));
}

/* The ticket: "2;ct;down;mr;ap;" + key + ";" + vary names + ";" + 64 hex digits of HMAC. */
static int leave_ticket(const struct pt_api *api, pt_call *call, const struct cache_ticket *t)
{
    char head[64];
    int n = snprintf(head, sizeof(head), "2;%d;%d;%d;%d;", t->caching_type, t->downstream, t->must_revalidate,
                     t->allow_private);
    struct ptl_buf b, m;
    ptl_buf_init(&b, api, call, (size_t)n + t->key.len + t->vary.len + 68);
    ptl_buf_add(&b, head, (size_t)n);
    ptl_buf_add(&b, t->key.data, t->key.len);
    ptl_buf_lit(&b, ";");
    ptl_buf_add(&b, t->vary.data, t->vary.len);
    if (b.oom)
        return -1;
    ticket_mac_input(api, call, &m, ptl_buf_bytes(&b));
    char mac[65];
    if (cache_mac_hex(&m, mac))
        return -1;
    ptl_buf_lit(&b, ";");
    ptl_buf_add(&b, mac, 64);
    if (b.oom)
        return -1;
    return api->var_set(call, PTL_LIT(TICKET_VAR), ptl_buf_bytes(&b));
}

int cache_ticket_get(const struct pt_api *api, pt_call *call, struct cache_ticket *t)
{
    pt_bytes v;
    if (api->var_get(call, PTL_LIT(TICKET_VAR), &v) != 0 || v.len < 65 || v.data[v.len - 65] != ';')
        return 0;
    pt_bytes text = {v.data, v.len - 65};
    struct ptl_buf m;
    ticket_mac_input(api, call, &m, text);
    char mac[65];
    if (cache_mac_hex(&m, mac) || CRYPTO_memcmp(mac, v.data + v.len - 64, 64) != 0)
        return 0; /* not made by a lookup of this request: written or copied by a policy */
    int f[5], k = 0;
    size_t i = 0;
    for (; k < 5 && i < text.len; k++) { /* five one-digit fields, each followed by ';' */
        if (i + 1 >= text.len || text.data[i] < '0' || text.data[i] > '9' || text.data[i + 1] != ';')
            return 0;
        f[k] = text.data[i] - '0';
        i += 2;
    }
    size_t klen = sizeof(CACHE_RESPONSE_PREFIX) - 1 + 64;
    if (k != 5 || f[0] != 2 || f[1] > PT_CACHE_INTERNAL || f[2] > CACHE_DOWN_PUBLIC || f[3] > 1 || f[4] > 1 ||
        text.len - i < klen + 1 || text.data[i + klen] != ';')
        return 0;
    pt_bytes key = {text.data + i, klen};
    pt_bytes vary = {text.data + i + klen + 1, text.len - i - klen - 1};
    *t = (struct cache_ticket){f[1], f[2], f[3], f[4], key, vary};
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
        if (!cache_header_unkept(e.names[i]) &&
            api->header_set(call, PT_MSG_RESPONSE, e.names[i], &e.values[i], 1, PT_HEADER_APPEND) != 0)
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

/* Request headers that make the backend's answer one client's (a part, or "not modified"): such
   requests are neither looked up nor stored. */
static const char *const conditional[] = {
    "Range", "If-Range", "If-None-Match", "If-Match", "If-Modified-Since", "If-Unmodified-Since", NULL};

pt_status cache_lookup_run(const struct pt_api *api, pt_call *call, void *instance)
{
    const struct lookup *l = instance;
    if (!ptl_bytes_is(api->method(call), "GET"))
        return PT_OK; /* APIM looks up GET requests only */
    pt_bytes hv;
    for (int i = 0; conditional[i]; i++)
        if (api->header_get(call, PT_MSG_REQUEST, (pt_bytes){conditional[i], strlen(conditional[i])}, &hv,
                            1) > 0)
            return PT_OK; /* a range or conditional request: the backend answers it, nothing is kept */
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
    p->t = (struct cache_ticket){cache_type_for(api, call, l->caching_type),
                                 l->downstream,
                                 l->must_revalidate,
                                 allow_private,
                                 {0},
                                 l->vary};
    int rc = build_key(api, call, l, &p->t.key);
    if (rc > 0)
        return PT_OK; /* this request is not cached (see build_key) */
    if (rc)
        return ptl_out_of_memory(api, call);
    pt_bytes value = {"", 0};
    rc = api->cache_get(call, p->t.caching_type, p->t.key, &value, lookup_done, p);
    if (rc == PT_AGAIN)
        return PT_AGAIN; /* lookup_done resumes */
    return answered(api, call, p, rc == 1, value);
}
