/*
 * pt_gen -- building and releasing generations.
 */
#include "policy/pt_gen.h"

#include "base/pt_buf.h"
#include "base/pt_jschema.h"
#include "base/pt_log.h"
#include "base/pt_paths.h"
#include "conf/pt_model.h"
#include "conf/pt_router.h"
#include "event/pt_breaker.h"
#include "event/pt_tls.h"
#include "http/pt_logsink.h"
#include "lua/pt_expr.h"
#include "policy/pt_corepol.h"
#include "policy/pt_luapol.h"
#include "policy/pt_plugin.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>

static atomic_ulong serial_counter;
static atomic_bool released; /* a generation was freed since pt_gen_take_released */

/*
 * Backend names are resolved once per build: every API of a generation
 * often names the same few hosts, and a lookup costs a system call or more
 * (AI_ADDRCONFIG asks the kernel for the configured families each time, and
 * a name may go to DNS).  Addresses written as numbers need no lookup at all.
 * Only the control thread builds generations; the memo lives for one build.
 */
#define RESOLVED_MAX 64
static struct resolved {
    char host[256];
    int port;
    struct sockaddr_storage sa;
    socklen_t salen;
} resolved[RESOLVED_MAX];
static int nresolved, resolved_next;

static bool resolve_numeric(struct pt_backend *b)
{
    memset(&b->sa, 0, sizeof(b->sa));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&b->sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&b->sa;
    if (inet_pton(AF_INET, b->url.host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)b->url.port);
        b->salen = sizeof(*v4);
        return true;
    }
    if (inet_pton(AF_INET6, b->url.host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)b->url.port);
        b->salen = sizeof(*v6);
        return true;
    }
    return false;
}

static bool resolve(struct pt_backend *b, struct pt_node *where, struct pt_errors *errs)
{
    if (resolve_numeric(b))
        return true;
    for (int i = 0; i < nresolved; i++)
        if (resolved[i].port == b->url.port && !strcmp(resolved[i].host, b->url.host)) {
            memcpy(&b->sa, &resolved[i].sa, resolved[i].salen);
            b->salen = resolved[i].salen;
            return true;
        }
    struct addrinfo hints = {0}, *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%d", b->url.port);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    int rc = getaddrinfo(b->url.host, port, &hints, &res);
    if (rc == EAI_BADFLAGS || (rc != 0 && hints.ai_flags)) {
        hints.ai_flags = 0; /* loopback-only hosts have no "configured" address family */
        rc = getaddrinfo(b->url.host, port, &hints, &res);
    }
    if (rc != 0 || !res) {
        pt_node_error(errs, where, "cannot resolve backend host '%s': %s", b->url.host, gai_strerror(rc));
        return false;
    }
    memcpy(&b->sa, res->ai_addr, res->ai_addrlen);
    b->salen = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
    if (strlen(b->url.host) < sizeof(resolved[0].host)) {
        struct resolved *r = &resolved[resolved_next];
        resolved_next = (resolved_next + 1) % RESOLVED_MAX;
        if (nresolved < RESOLVED_MAX)
            nresolved++;
        snprintf(r->host, sizeof(r->host), "%s", b->url.host);
        r->port = b->url.port;
        memcpy(&r->sa, &b->sa, b->salen);
        r->salen = b->salen;
    }
    return true;
}

/* ------------------------------------------------- versions and revisions */

struct route_key {
    const char *path; /* the suffix the router knows the API by */
    const char *host;
    struct pt_apidef *api;
    /* where the group at this path is kept and what the router holds: the API
       itself, or for the ;rev=N alias of a current Query/Header version a
       stand-in (the API's own group is that of its path without ;rev) */
    struct pt_apidef *handle;
};

static bool header_or_query_scheme(const struct pt_apidef *a)
{
    return a->vset && a->vset->scheme != 0;
}

/* Does the API also answer at its path with ";rev=N" (the current revision, numbered in its definition)? */
static bool revision_alias(const struct pt_apidef *a)
{
    return a->cf->is_current && a->cf->revision && pt_node_get(a->cf->node, "apiRevision");
}

/*
 * The suffix an API answers at: its path, plus "/{version}" for a Segment
 * version, plus ";rev={n}" for a revision that is not the current one.
 */
static const char *route_path(struct pt_pool *pool, const struct pt_apidef *a)
{
    const struct pt_api_cf *ac = a->cf;
    const char *p = ac->path;
    if (a->vset && a->vset->scheme == 0 && ac->api_version && *ac->api_version)
        p = *p ? pt_pool_printf(pool, "%s/%s", p, ac->api_version) : ac->api_version;
    if (!ac->is_current)
        p = pt_pool_printf(pool, "%s;rev=%s", p, ac->revision ? ac->revision : "1");
    return p;
}

/* keys[i] is the key of the generation's i-th API (filled in that order) */
static const char *keys_path(const struct route_key *keys, const struct pt_gen *g, const struct pt_apidef *a)
{
    return keys[a - g->apis].path;
}

static int key_cmp(const void *x, const void *y)
{
    const struct route_key *a = x, *b = y;
    int c = strcmp(a->path, b->path);
    if (!c)
        c = strcasecmp(a->host, b->host);
    if (!c) /* Query/Header versions after the others, then declaration order */
        c = (int)header_or_query_scheme(a->api) - (int)header_or_query_scheme(b->api);
    if (!c) /* an API's own path before another's alias */
        c = (int)(a->handle != a->api) - (int)(b->handle != b->api);
    if (!c)
        c = a->api < b->api ? -1 : a->api > b->api;
    return c;
}

/*
 * APIs that answer at the same suffix: versions of one set with the Query
 * or Header scheme form a group (the version is chosen per request); any
 * other sharing is an error, since one API would hide the other.  A lone
 * Query or Header version is a group of one, so that the request's version
 * is checked the same way with one version as with several (APIM answers
 * 404 to a missing or unknown version either way).  False when out of
 * memory.
 */
static bool group_versions(struct pt_gen *g, struct route_key *keys, int n, struct pt_errors *errs)
{
    struct route_key *sorted = malloc(sizeof(*sorted) * (size_t)(n ? n : 1));
    if (!sorted)
        return false;
    memcpy(sorted, keys, sizeof(*sorted) * (size_t)n);
    qsort(sorted, (size_t)n, sizeof(*sorted), key_cmp);
    struct pt_pool *pool = g->conf->pool;
    for (int i = 0; i < n;) {
        int j = i + 1;
        while (j < n && !strcmp(sorted[j].path, sorted[i].path) &&
               !strcasecmp(sorted[j].host, sorted[i].host))
            j++;
        if (j - i > 1 || header_or_query_scheme(sorted[i].api)) {
            bool group = true;
            for (int k = i; k < j; k++)
                group &= header_or_query_scheme(sorted[k].api) &&
                         !strcmp(sorted[k].api->cf->version_set, sorted[i].api->cf->version_set);
            if (group) {
                struct pt_apidef **members = pt_pool_calloc(pool, sizeof(*members) * (size_t)(j - i));
                if (!members) {
                    free(sorted);
                    return false;
                }
                for (int k = i; k < j; k++) {
                    members[k - i] = sorted[k].api;
                    for (int q = i; q < k; q++) {
                        const char *v1 = sorted[q].api->cf->api_version, *v2 = sorted[k].api->cf->api_version;
                        if (!strcmp(v1 ? v1 : "", v2 ? v2 : ""))
                            pt_node_error(errs, sorted[k].api->cf->node,
                                          "API '%s' has the same version '%s' of set '%s' as API '%s'",
                                          sorted[k].api->cf->id, v2 ? v2 : "", sorted[k].api->cf->version_set,
                                          sorted[q].api->cf->id);
                    }
                }
                for (int k = i; k < j; k++) {
                    sorted[k].handle->vgroup = members;
                    sorted[k].handle->nvgroup = j - i;
                }
            } else
                for (int k = i + 1; k < j; k++)
                    pt_node_error(errs,
                                  pt_node_get(sorted[k].api->cf->node, "path") ?: sorted[k].api->cf->node,
                                  "API '%s' answers at '/%s', as API '%s' does (give one a version or a "
                                  "revision, or another path)",
                                  sorted[k].api->cf->id, sorted[k].path, sorted[i].api->cf->id);
        }
        i = j;
    }
    free(sorted);
    return true;
}

static struct pt_gen *build(struct pt_conf *cf, bool refs, bool check_only, struct pt_errors *errs);

/* ---------------------------------------------------------------- backends */

/* A target for url (already checked as an http(s) base URL): resolved now, pooled by key.  `own`
   names a backend entity whose connections are pooled apart (its own TLS settings); NULL: none. */
static struct pt_backend *target_new(struct pt_pool *pool, const char *url, const char *own,
                                     struct pt_node *where, struct pt_errors *errs)
{
    struct pt_backend *b = pt_pool_calloc(pool, sizeof(*b));
    const char *why = pt_url_parse(pool, url, &b->url);
    if (why) {
        pt_node_error(errs, where, "url '%s' %s", url, why);
        return NULL;
    }
    if (!resolve(b, where, errs))
        return NULL;
    char addr[INET6_ADDRSTRLEN + 8] = "";
    getnameinfo((struct sockaddr *)&b->sa, b->salen, addr, sizeof(addr), NULL, 0, NI_NUMERICHOST);
    b->pool_key =
        pt_pool_printf(pool, "%s://%s:%d/%s%s%s", b->url.https ? "https" : "http", addr, b->url.port,
                       b->url.https ? b->url.host : "", own ? "|be=" : "", own ? own : "");
    b->pool_hash = pt_hash(b->pool_key, strlen(b->pool_key), false);
    return b;
}

static int backdef_cmp(const void *x, const void *y)
{
    return strcmp(((const struct pt_backdef *)x)->id, ((const struct pt_backdef *)y)->id);
}

struct pt_backdef *pt_gen_find_backend(const struct pt_gen *g, pt_str id)
{
    int lo = 0, hi = g->nbackends - 1;
    while (lo <= hi) { /* bounded: log2(nbackends) steps */
        int mid = (lo + hi) / 2;
        const char *m = g->backends[mid].id;
        size_t ml = strlen(m);
        int c = memcmp(m, id.data, ml < id.len ? ml : id.len);
        if (!c)
            c = ml < id.len ? -1 : ml > id.len;
        if (!c)
            return &g->backends[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

/* Backend entities: sorted by id, Single ones resolved, pools' members linked (ids were checked by
   pt_conf_check_refs; with refs off an unknown member is left out). */
static void backends_build(struct pt_gen *g, struct pt_errors *errs)
{
    struct pt_conf *cf = g->conf;
    struct pt_pool *pool = cf->pool;
    g->nbackends = cf->nbackends;
    g->backends = pt_pool_calloc(pool, sizeof(*g->backends) * (size_t)(cf->nbackends ? cf->nbackends : 1));
    for (int i = 0; i < cf->nbackends; i++) {
        struct pt_backdef *d = &g->backends[i];
        d->cf = &cf->backends[i];
        d->id = d->cf->id ? d->cf->id : "";
    }
    qsort(g->backends, (size_t)g->nbackends, sizeof(*g->backends), backdef_cmp);
    for (int i = 0; i < g->nbackends; i++) {
        struct pt_backdef *d = &g->backends[i];
        const struct pt_backend_cf *bc = d->cf;
        d->index = i;
        d->type = bc->type;
        d->rules = bc->rules;
        d->nrules = bc->nrules;
        d->verify_chain = bc->tls_chain && cf->upstream.verify;
        d->verify_name = bc->tls_name && d->verify_chain;
        d->health = (struct pt_behealth){bc->hc_on,           bc->hc_path ? bc->hc_path : "/",
                                         bc->hc_interval,     bc->hc_timeout,
                                         (int)bc->hc_healthy, (int)bc->hc_unhealthy};
        if (d->type == PT_BE_SINGLE && bc->url) {
            /* its own connections when its TLS differs from the generation's */
            struct pt_node *creds = bc->credentials;
            bool own = !d->verify_chain || !d->verify_name || (creds && pt_node_get(creds, "certificate"));
            d->target = target_new(pool, bc->url, own ? d->id : NULL, pt_node_get(bc->node, "url"), errs);
            if (d->target)
                d->target->def = d;
        }
    }
    for (int i = 0; i < g->nbackends; i++) {
        struct pt_backdef *d = &g->backends[i];
        if (d->type != PT_BE_POOL)
            continue;
        d->members = pt_pool_calloc(pool, sizeof(*d->members) * (size_t)(d->cf->nmembers + 1));
        for (int k = 0; k < d->cf->nmembers; k++) {
            const struct pt_cfmember *m = &d->cf->members[k];
            struct pt_backdef *mb = pt_gen_find_backend(g, pt_str_c(m->id));
            if (mb && mb->type == PT_BE_SINGLE)
                d->members[d->nmembers++] = (struct pt_bemember){mb, m->weight, m->priority};
        }
        /* stable by priority: the file's order within a priority (insertion sort, bounded by 256) */
        for (int a = 1; a < d->nmembers; a++)
            for (int b = a; b > 0 && d->members[b - 1].priority > d->members[b].priority; b--) {
                struct pt_bemember t = d->members[b];
                d->members[b] = d->members[b - 1];
                d->members[b - 1] = t;
            }
    }
}

static void hex_pct(struct pt_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (isalnum(*c) || strchr("-._~", *c))
            pt_buf_add(b, (const char *)c, 1);
        else {
            char e[3] = {'%', hex[*c >> 4], hex[*c & 15]};
            pt_buf_add(b, e, 3);
        }
    }
}

/* A credential's values with named values substituted; NULL after an error (reported). */
static const char *const *cred_values(struct pt_gen *g, struct pt_node *v, int *n, struct pt_errors *errs)
{
    *n = v->kind == PT_N_SEQ ? v->n : 1;
    const char **out = pt_pool_calloc(g->conf->pool, sizeof(*out) * (size_t)(*n ? *n : 1));
    for (int i = 0; i < *n; i++) {
        struct pt_node *x = v->kind == PT_N_SEQ ? v->items[i] : v;
        out[i] = pt_policy_text(g->pc, x);
        if (!out[i])
            return NULL;
        if (strpbrk(out[i], "\r\n")) {
            pt_node_error(errs, x, "this value holds CR or LF once named values are substituted");
            return NULL;
        }
    }
    return out;
}

static SSL_CTX *backend_ctx(struct pt_gen *g, struct pt_backdef *d, struct pt_errors *errs)
{
    const struct pt_conf *cf = g->conf;
    struct pt_node *cn = pt_node_get(d->cf->credentials, "certificate");
    SSL_CTX *ctx = pt_tls_client_ctx(cf->upstream.ca_file, d->verify_chain, &cf->upstream.tls, errs);
    if (!ctx || !cn)
        return ctx;
    const char *files[2] = {pt_node_get(cn, "certificate")->str, pt_node_get(cn, "key")->str};
    char path[2][4096];
    for (int k = 0; k < 2; k++)
        snprintf(path[k], sizeof(path[k]), "%s%s%s",
                 files[k][0] == '/' || !g->pc->base_dir ? "" : g->pc->base_dir,
                 files[k][0] == '/' || !g->pc->base_dir ? "" : "/", files[k]);
    const char *why = NULL;
    if (SSL_CTX_use_certificate_chain_file(ctx, path[0]) != 1)
        why = "the certificate cannot be loaded";
    else if (SSL_CTX_use_PrivateKey_file(ctx, path[1], SSL_FILETYPE_PEM) != 1)
        why = "the key cannot be loaded";
    else if (SSL_CTX_check_private_key(ctx) != 1)
        why = "the key does not match the certificate";
    if (why) {
        pt_node_error(errs, cn, "backend '%s': %s (%s, %s)", d->id, why, path[0], path[1]);
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    d->client_cert = true;
    return ctx;
}

/* Credentials (named values of the backend's scope substituted) and TLS contexts. */
static void backends_credentials(struct pt_gen *g, struct pt_errors *errs)
{
    struct pt_pool *pool = g->conf->pool;
    for (int i = 0; i < g->nbackends; i++) {
        struct pt_backdef *d = &g->backends[i];
        struct pt_node *cr = d->cf->credentials;
        g->pc->workspace = d->cf->workspace;
        struct pt_node *h = pt_node_get(cr, "header"), *q = pt_node_get(cr, "query");
        struct pt_node *a = pt_node_get(cr, "authorization");
        struct pt_buf hb, qb;
        pt_buf_init(&hb, pool, 64);
        pt_buf_init(&qb, pool, 64);
        if (h && h->kind == PT_N_MAP) {
            d->headers = pt_pool_calloc(pool, sizeof(*d->headers) * (size_t)(h->n + 1));
            for (int k = 0; k < h->n; k++) {
                struct pt_becred *c = &d->headers[d->nheaders];
                c->name = pt_node_key(h, k)->str;
                if (!(c->values = cred_values(g, pt_node_val(h, k), &c->nvalues, errs)))
                    continue;
                d->nheaders++;
                pt_buf_add(&hb, c->name, strlen(c->name));
                pt_buf_lit(&hb, ": ");
                for (int v = 0; v < c->nvalues; v++) {
                    if (v)
                        pt_buf_lit(&hb, ", ");
                    pt_buf_add(&hb, c->values[v], strlen(c->values[v]));
                }
                pt_buf_lit(&hb, "\r\n");
            }
        }
        if (a && a->kind == PT_N_MAP) {
            struct pt_node *sc = pt_node_get(a, "scheme"), *pa = pt_node_get(a, "parameter");
            d->auth_scheme = sc ? sc->str : NULL;
            d->auth_param = pa ? pt_policy_text(g->pc, pa) : "";
            if (d->auth_param && strpbrk(d->auth_param, "\r\n")) {
                pt_node_error(errs, pa, "parameter holds CR or LF once named values are substituted");
                d->auth_param = NULL;
            }
            if (d->auth_scheme && d->auth_param) {
                pt_buf_lit(&hb, "Authorization: ");
                pt_buf_add(&hb, d->auth_scheme, strlen(d->auth_scheme));
                if (*d->auth_param) {
                    pt_buf_lit(&hb, " ");
                    pt_buf_add(&hb, d->auth_param, strlen(d->auth_param));
                }
                pt_buf_lit(&hb, "\r\n");
            } else
                d->auth_scheme = NULL;
        }
        if (q && q->kind == PT_N_MAP) {
            d->query = pt_pool_calloc(pool, sizeof(*d->query) * (size_t)(q->n + 1));
            for (int k = 0; k < q->n; k++) {
                struct pt_becred *c = &d->query[d->nquery];
                c->name = pt_node_key(q, k)->str;
                if (!(c->values = cred_values(g, pt_node_val(q, k), &c->nvalues, errs)))
                    continue;
                d->nquery++;
                for (int v = 0; v < c->nvalues; v++) {
                    if (qb.n)
                        pt_buf_lit(&qb, "&");
                    hex_pct(&qb, c->name);
                    pt_buf_lit(&qb, "=");
                    hex_pct(&qb, c->values[v]);
                }
            }
        }
        d->head_text = hb.n ? pt_pool_strndup(pool, hb.p, hb.n) : NULL;
        d->query_text = qb.n ? pt_pool_strndup(pool, qb.p, qb.n) : NULL;
        if (d->target && d->target->url.https && (!d->verify_chain || pt_node_get(cr, "certificate")))
            d->tls = backend_ctx(g, d, errs);
    }
    g->pc->workspace = NULL;
}

/* ------------------------------------------------- the inherited backend-id rule */

/* A set-backend-service statement's attribute node (NULL: absent). */
static struct pt_node *sbs_attr(const struct pt_stmt *st, const char *name)
{
    if (st->kind != PT_ST_POLICY || !st->name || strcmp(st->name, "set-backend-service") || !st->node ||
        st->node->kind != PT_N_MAP || !st->node->n)
        return NULL;
    struct pt_node *a = pt_node_val(st->node, 0);
    return a && a->kind == PT_N_MAP ? pt_node_get(a, name) : NULL;
}

struct sbs_walk {
    const struct pt_stmt *by_id;        /* a set-backend-service backend-id met so far */
    const struct pt_stmt *reported[64]; /* each offending statement is said once */
    int nreported;
    struct pt_errors *errs;
};

/*
 * APIM: once a scope sets the backend with backend-id, a narrower scope that
 * inherits it (through base) may override it only with backend-id, not with
 * base-url.  Checked on the composed pipelines: a base-url statement that
 * comes after a backend-id one of a wider scope is refused.  Statements
 * inside choose, retry and wrapping policies count where they stand.
 */
static void sbs_check(struct sbs_walk *w, const struct pt_block *b, int depth)
{
    for (int i = 0; depth < 32 && i < b->n; i++) {
        const struct pt_stmt *st = b->s[i];
        for (int k = 0; st->kind == PT_ST_CHOOSE && k < st->nwhens; k++)
            sbs_check(w, &st->whens[k].body, depth + 1);
        if (st->kind == PT_ST_RETRY || st->kind == PT_ST_WRAP)
            sbs_check(w, &st->body, depth + 1);
        if (sbs_attr(st, "backend-id") && !w->by_id)
            w->by_id = st;
        struct pt_node *url = sbs_attr(st, "base-url");
        if (!url || !w->by_id || st->scope <= w->by_id->scope)
            continue;
        bool said = false;
        for (int r = 0; r < w->nreported && !said; r++)
            said = w->reported[r] == st;
        if (said)
            continue;
        if (w->nreported < (int)PT_ARRAY_LEN(w->reported))
            w->reported[w->nreported++] = st;
        struct pt_node *id = sbs_attr(w->by_id, "backend-id");
        char where[300] = "";
        if (id && id->file)
            snprintf(where, sizeof(where), " (%s:%d)", id->file, id->line);
        pt_node_error(
            w->errs, url,
            "set-backend-service: base-url cannot override the backend-id set in a wider scope%s; use "
            "backend-id here too (APIM's rule)",
            where);
    }
}

static void sbs_pipeline(struct sbs_walk *w, const struct pt_pipeline *p)
{
    if (!p)
        return;
    w->by_id = NULL;
    sbs_check(w, &p->sec[PT_SEC_INBOUND], 0);
    sbs_check(w, &p->sec[PT_SEC_BACKEND], 0);
}

/* ------------------------------------------- literal URLs in the routing policies */

static bool literal_url(const char *t)
{
    return t && *t && t[0] != '@';
}

static void urls_add(struct pt_gen *g, struct pt_backend *b, const char *text)
{
    struct pt_pool *pool = g->conf->pool;
    if (pt_gen_find_url(g, pt_str_c(text)))
        return;
    if (!g->urls || g->nurls_used * 2 >= g->nurls) { /* grow: rehash into twice the room */
        size_t n = g->nurls ? g->nurls * 2 : 16;
        struct pt_urlslot *t = pt_pool_calloc(pool, sizeof(*t) * n);
        for (size_t i = 0; i < g->nurls; i++)
            if (g->urls[i].text) {
                size_t s = g->urls[i].hash & (n - 1);
                while (t[s].text)
                    s = (s + 1) & (n - 1);
                t[s] = g->urls[i];
            }
        g->urls = t;
        g->nurls = n;
    }
    uint64_t h = pt_hash(text, strlen(text), false);
    size_t s = h & (g->nurls - 1);
    while (g->urls[s].text)
        s = (s + 1) & (g->nurls - 1);
    g->urls[s] = (struct pt_urlslot){text, h, b};
    g->nurls_used++;
}

struct pt_backend *pt_gen_find_url(const struct pt_gen *g, pt_str url)
{
    if (!g->nurls)
        return NULL;
    uint64_t h = pt_hash(url.data, url.len, false);
    size_t s = h & (g->nurls - 1);
    for (size_t probe = 0; probe < g->nurls && g->urls[s].text; probe++, s = (s + 1) & (g->nurls - 1))
        if (g->urls[s].hash == h && strlen(g->urls[s].text) == url.len &&
            !memcmp(g->urls[s].text, url.data, url.len))
            return g->urls[s].be;
    return NULL;
}

/* An attribute's text with the named values of the statement's scope substituted (the policy's own
   compilation already reported a name that is not there); NULL when one is missing. */
static const char *scoped_text(struct pt_gen *g, const struct pt_stmt *st, struct pt_node *n)
{
    struct pt_errors scratch = {0}, *real = g->pc->errs;
    const char *saved = g->pc->workspace, *t = NULL;
    g->pc->errs = &scratch;
    g->pc->workspace = st->workspace;
    t = pt_policy_text(g->pc, n);
    pt_node_errors_clear(&scratch);
    g->pc->errs = real;
    g->pc->workspace = saved;
    return t;
}

bool pt_gen_backend_usable(const struct pt_backdef *d, const char *workspace)
{
    const char *bw = d->cf && d->cf->workspace ? d->cf->workspace : "";
    return !strcmp(bw, workspace ? workspace : "");
}

/* One statement of the routing family: literal base-url / proxy url resolved now, a literal backend-id
   checked now (file:line:column), so that request time never resolves a name. */
static void routing_stmt(struct pt_gen *g, struct pt_stmt *st, bool refs, struct pt_errors *errs)
{
    if (!st || !st->name || !st->node || st->node->kind != PT_N_MAP || !st->node->n)
        return;
    bool sbs = !strcmp(st->name, "set-backend-service"), prx = !strcmp(st->name, "proxy");
    if (!sbs && !prx)
        return;
    struct pt_node *attrs = pt_node_val(st->node, 0);
    if (!attrs || attrs->kind != PT_N_MAP)
        return;
    struct pt_node *un = pt_node_get(attrs, sbs ? "base-url" : "url");
    const char *u = un ? scoped_text(g, st, un) : NULL;
    if (literal_url(u) && !pt_gen_find_url(g, pt_str_c(u))) {
        if (strncasecmp(u, "http://", 7) && strncasecmp(u, "https://", 8))
            pt_node_error(errs, un, "%s: '%s' is not an http:// or https:// URL", st->name, u);
        else {
            struct pt_backend *b = target_new(g->conf->pool, u, NULL, un, errs);
            if (b)
                urls_add(g, b, u);
        }
    }
    struct pt_node *bn = sbs ? pt_node_get(attrs, "backend-id") : NULL;
    const char *id = bn ? scoped_text(g, st, bn) : NULL;
    const struct pt_backdef *d = refs && literal_url(id) ? pt_gen_find_backend(g, pt_str_c(id)) : NULL;
    if (refs && literal_url(id) && !d)
        pt_node_error(errs, bn, "set-backend-service: backend-id '%s' is not a backend", id);
    else if (d && !pt_gen_backend_usable(d, st->workspace)) {
        /* APIM: a workspace's policies name only its own backends, the service's only the service's */
        const char *bw = d->cf && d->cf->workspace && *d->cf->workspace ? d->cf->workspace : NULL;
        pt_node_error(errs, bn, "set-backend-service %s%s%s cannot use backend '%s' %s%s%s",
                      st->workspace ? "(workspace '" : "(service level", st->workspace ? st->workspace : "",
                      st->workspace ? "')" : ")", id, bw ? "(workspace '" : "(service level", bw ? bw : "",
                      bw ? "')" : ")");
    }
}

/* ----------------------------------------------------------- definitions */

static pt_str json_text(struct pt_pool *pool, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    if (!s)
        return (pt_str){"", 0};
    size_t n = strlen(s);
    char *p = pt_pool_strndup(pool, s, n);
    free(s);
    return (pt_str){p, n};
}

/* The texts of a list of schemas (an API's or the service's), from their JSON. */
static struct pt_deftext *schema_texts(struct pt_pool *pool, const json_t *list, int *n)
{
    *n = (int)json_array_size(list);
    struct pt_deftext *t = pt_pool_calloc(pool, sizeof(*t) * (size_t)(*n ? *n : 1));
    for (int i = 0; i < *n; i++) {
        json_t *j = json_deep_copy(json_array_get(list, (size_t)i));
        t[i].id = pt_pool_strdup(pool, json_string_value(json_object_get(j, "id")) ?: "");
        json_object_del(j, "workspace");
        t[i].json = json_text(pool, j);
    }
    return t;
}

/* A representation's schema and the document its $refs resolve in (docs/api-definitions.md). */
static const json_t *rep_schema(const json_t *schemas, const json_t *rep, const json_t **root)
{
    const char *sid = json_string_value(json_object_get(rep, "schemaId"));
    const char *tn = json_string_value(json_object_get(rep, "typeName"));
    const json_t *entry = NULL, *s;
    size_t i;
    json_array_foreach(schemas, i, s)
    {
        const char *id = json_string_value(json_object_get(s, "id"));
        if (json_is_object(json_object_get(s, "document")) && (!sid || (id && !strcmp(id, sid)))) {
            entry = s;
            break;
        }
    }
    const json_t *doc = json_object_get(entry, "document");
    *root = doc;
    if (json_object_get(rep, "schema"))
        return json_object_get(rep, "schema");
    if (!doc)
        return NULL;
    const char *ct = json_string_value(json_object_get(entry, "contentType")) ?: "";
    if (!tn)
        return strstr(ct, "components") || strstr(ct, "definitions") ? NULL : doc;
    if (strstr(ct, "openapi.components"))
        return json_object_get(json_object_get(json_object_get(doc, "components"), "schemas"), tn);
    if (strstr(ct, "swagger.definitions"))
        return json_object_get(json_object_get(doc, "definitions"), tn);
    const json_t *t = json_object_get(json_object_get(doc, "$defs"), tn);
    return t ? t : json_object_get(json_object_get(doc, "definitions"), tn);
}

/* Samples for mock-response: JSON representations of the responses that have a schema and no example. */
static void op_samples(struct pt_pool *pool, struct pt_operation *op, const json_t *schemas,
                       const json_t *resps)
{
    size_t i, k;
    json_t *r, *rep;
    size_t cap = 0;
    json_array_foreach(resps, i, r) cap += json_array_size(json_object_get(r, "representations"));
    if (!cap)
        return;
    op->samples = pt_pool_calloc(pool, sizeof(*op->samples) * cap);
    json_array_foreach(resps, i, r)
    {
        json_t *sc = json_object_get(r, "statusCode");
        int status = json_is_integer(sc) ? (int)json_integer_value(sc) : 0;
        json_array_foreach(json_object_get(r, "representations"), k, rep)
        {
            const char *ct = json_string_value(json_object_get(rep, "contentType"));
            if (!ct || !strstr(ct, "json") || json_object_size(json_object_get(rep, "examples")) ||
                json_object_get(rep, "sample"))
                continue;
            const json_t *root, *schema = rep_schema(schemas, rep, &root);
            json_t *sample = schema ? pt_jschema_sample(schema, root ? root : schema) : NULL;
            if (!sample)
                continue;
            struct pt_sample *smp = &op->samples[op->nsamples++];
            smp->status = status;
            smp->content_type = pt_pool_strdup(pool, ct);
            smp->body = json_text(pool, sample);
        }
    }
}

struct pt_optext {
    size_t len;
    char data[];
};

pt_str pt_gen_op_definition(const struct pt_operation *op)
{
    struct pt_operation *o = (struct pt_operation *)op; /* only the made-once text is written */
    struct pt_optext *t = atomic_load_explicit(&o->def, memory_order_acquire);
    if (t)
        return (pt_str){t->data, t->len};
    const struct pt_operation_cf *oc = op->cf;
    const struct pt_api_cf *ac = op->api->cf;
    json_t *j =
        json_pack("{s:s,s:s,s:s,s:s,s:s}", "api", ac->id, "apiType", pt_conf_entities_api_types[ac->api_type],
                  "id", oc->id, "method", oc->method, "urlTemplate", oc->url_template);
    static const char *const keys[] = {"templateParameters", "request", "responses"};
    for (size_t x = 0; j && x < PT_ARRAY_LEN(keys); x++) {
        struct pt_node *n = pt_node_get(oc->node, keys[x]);
        if (n)
            json_object_set_new(j, keys[x], pt_node_to_json(n));
    }
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    size_t n = text ? strlen(text) : 0;
    t = text ? malloc(sizeof(*t) + n + 1) : NULL;
    if (!t) {
        free(text);
        return (pt_str){"", 0}; /* out of memory: asked again next time */
    }
    t->len = n;
    memcpy(t->data, text, n + 1);
    free(text);
    struct pt_optext *was = NULL;
    if (!atomic_compare_exchange_strong_explicit(&o->def, &was, t, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        free(t); /* another worker made it first */
        t = was;
    }
    return (pt_str){t->data, t->len};
}

/* What plugins read of the schemas (each one's JSON text) and the samples mock-response answers
   with (the operations' texts are made when first read: pt_gen_op_definition). */
static void definitions(struct pt_gen *g)
{
    struct pt_pool *pool = g->conf->pool;
    for (int i = 0; i < g->napis; i++) {
        struct pt_apidef *api = &g->apis[i];
        json_t *schemas = api->cf->schemas ? pt_node_to_json(api->cf->schemas) : json_array();
        api->schemas = schema_texts(pool, schemas, &api->nschemas);
        for (int k = 0; k < api->nops; k++) {
            struct pt_node *rn = pt_node_get(api->ops[k].cf->node, "responses");
            if (!rn)
                continue;
            json_t *resps = pt_node_to_json(rn);
            op_samples(pool, &api->ops[k], schemas, resps);
            json_decref(resps);
        }
        json_decref(schemas);
    }
    json_t *service = g->conf->schemas ? pt_node_to_json(g->conf->schemas) : json_array();
    g->schemas = schema_texts(pool, service, &g->nschemas);
    json_decref(service);
}

/* The loggers' settings that need more than the file: the named values of HTTP headers and the
   access log's logger (both once every entity is known). */
static void loggers(struct pt_gen *g, bool refs, struct pt_errors *errs)
{
    struct pt_conf *cf = g->conf;
    cf->log.access_logger = -1;
    if (!refs)
        return;
    if (cf->log.access && !strncmp(cf->log.access, "logger:", 7)) {
        for (int i = 0; i < cf->nloggers; i++)
            if (!strcmp(cf->loggers[i].id, cf->log.access + 7))
                cf->log.access_logger = i;
        if (cf->log.access_logger < 0)
            pt_node_error(errs, pt_node_get(pt_node_get(cf->root, "log"), "access"),
                          "access: there is no logger '%s' (loggers: %d declared)", cf->log.access + 7,
                          cf->nloggers);
        else if (cf->loggers[cf->log.access_logger].max_queue_bytes < cf->log.access_buffer)
            /* a worker hands its whole buffer over as one message: it must fit the queue */
            pt_node_error(errs, pt_node_get(pt_node_get(cf->root, "log"), "access"),
                          "access: logger '%s' holds %llu bytes at most (maxQueueSize), less than "
                          "log.accessBuffer (%llu): every flush would be dropped",
                          cf->log.access + 7,
                          (unsigned long long)cf->loggers[cf->log.access_logger].max_queue_bytes,
                          (unsigned long long)cf->log.access_buffer);
    }
    g->pc->workspace = NULL; /* service-level named values */
    for (int i = 0; i < cf->nloggers; i++) {
        struct pt_logger_cf *l = &cf->loggers[i];
        struct pt_node *h = l->http_headers;
        if (l->type != PT_LOGGER_HTTP || !h)
            continue;
        struct pt_buf b;
        pt_buf_init(&b, cf->pool, 256);
        for (int k = 0; k < h->n; k++) {
            const char *v = pt_policy_text(g->pc, pt_node_val(h, k));
            if (!v)
                continue;
            if (strpbrk(v, "\r\n")) {
                pt_node_error(errs, pt_node_val(h, k), "the value of header %s may not hold CR or LF",
                              pt_node_key(h, k)->str);
                continue;
            }
            const char *name = pt_node_key(h, k)->str;
            pt_buf_add(&b, name, strlen(name));
            pt_buf_lit(&b, ": ");
            pt_buf_add(&b, v, strlen(v));
            pt_buf_lit(&b, "\r\n");
        }
        l->http_header_text = pt_pool_strndup(cf->pool, b.p ? b.p : "", b.n);
    }
}

/* Entities by id for the build's lookups (lists of tens of thousands): the
   ids sorted once, then a binary search, instead of a scan per reference. */
struct idpos {
    const char *id;
    int pos;
};

static int idpos_cmp(const void *a, const void *b)
{
    return strcmp(((const struct idpos *)a)->id, ((const struct idpos *)b)->id);
}

static const char *api_id_at(const void *base, int i)
{
    return ((const struct pt_apidef *)base)[i].cf->id;
}

static const char *product_id_at(const void *base, int i)
{
    return ((const struct pt_product *)base)[i].cf->id;
}

static const char *user_id_at(const void *base, int i)
{
    return ((const struct pt_user *)base)[i].cf->id;
}

/* The ids of n entities (id_at reads one), sorted, *m of them (those with an id); NULL when out of
   memory (the build then fails). */
static struct idpos *ids_of(const void *base, int n, const char *(*id_at)(const void *, int), int *count)
{
    struct idpos *v = malloc(sizeof(*v) * (size_t)(n ? n : 1));
    if (!v)
        return NULL;
    int m = 0;
    for (int i = 0; i < n; i++)
        if (id_at(base, i))
            v[m++] = (struct idpos){id_at(base, i), i};
    pt_str_sort(v, (size_t)m, sizeof(*v), idpos_cmp); /* the store's lists come in id order */
    *count = m;
    return v;
}

static int id_find(const struct idpos *v, int n, const char *id)
{
    struct idpos key = {id, 0};
    const struct idpos *f = id ? bsearch(&key, v, (size_t)n, sizeof(*v), idpos_cmp) : NULL;
    return f ? f->pos : -1;
}

static int int_cmp(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The indexes of the APIs product p holds, ascending and each once (the order of g->apis, as a
   scan of every API would give), in *n; NULL when out of memory. */
static int *product_api_indexes(const struct pt_product_cf *p, const struct idpos *api_ids, int napi_ids,
                                int *n)
{
    int *v = malloc(sizeof(*v) * (size_t)(p->apis.n ? p->apis.n : 1));
    if (!v)
        return NULL;
    int m = 0;
    for (int k = 0; k < p->apis.n; k++) {
        int a = id_find(api_ids, napi_ids, p->apis.v[k]);
        if (a >= 0)
            v[m++] = a;
    }
    qsort(v, (size_t)m, sizeof(*v), int_cmp);
    int u = 0;
    for (int k = 0; k < m; k++)
        if (u == 0 || v[u - 1] != v[k])
            v[u++] = v[k];
    *n = u;
    return v;
}

/*
 * The subscriptions and the key table of g->conf, pointing at g's products, APIs and users (found
 * by id), in `pool`: what a write of subscriptions alone builds again.  False: out of memory.
 */
static bool link_subs(struct pt_gen *g, struct pt_pool *pool)
{
    const struct pt_conf *cf = g->conf;
    g->nsubs = cf->nsubs;
    g->subs = pt_pool_calloc(pool, sizeof(*g->subs) * (size_t)(cf->nsubs + 1));
    g->nkeys = 16;
    while (g->nkeys < (size_t)cf->nsubs * 4)
        g->nkeys *= 2;
    g->keys = pt_pool_calloc(pool, sizeof(*g->keys) * g->nkeys);
    int napi_ids = 0, nproduct_ids = 0, nuser_ids = 0;
    struct idpos *api_ids = ids_of(g->apis, g->napis, api_id_at, &napi_ids);
    struct idpos *product_ids = ids_of(g->products, g->nproducts, product_id_at, &nproduct_ids);
    struct idpos *user_ids = ids_of(g->users, g->nusers, user_id_at, &nuser_ids);
    bool ok = g->subs && g->keys && api_ids && product_ids && user_ids;
    for (int i = 0; ok && i < cf->nsubs; i++) {
        struct pt_subscription *s = &g->subs[i];
        s->cf = &cf->subs[i];
        int at =
            s->cf->scope_kind == PT_SUB_PRODUCT ? id_find(product_ids, nproduct_ids, s->cf->scope_id) : -1;
        if (at >= 0)
            s->product = &g->products[at];
        at = s->cf->scope_kind == PT_SUB_API ? id_find(api_ids, napi_ids, s->cf->scope_id) : -1;
        if (at >= 0)
            s->api = &g->apis[at];
        at = s->cf->owner_user ? id_find(user_ids, nuser_ids, s->cf->owner_user) : -1;
        if (at >= 0)
            s->owner = &g->users[at];
        const char *skeys[2] = {s->cf->primary_key, s->cf->secondary_key};
        for (int k = 0; k < 2; k++) {
            if (!skeys[k])
                continue;
            size_t len = strlen(skeys[k]);
            uint64_t h = pt_hash(skeys[k], len, false);
            size_t slot = h & (g->nkeys - 1);
            while (g->keys[slot].key)
                slot = (slot + 1) & (g->nkeys - 1);
            g->keys[slot] = (struct pt_keyslot){skeys[k], len, h, s};
        }
    }
    free(api_ids);
    free(product_ids);
    free(user_ids);
    return ok;
}

static struct pt_doc *workspace_doc(const struct pt_conf *cf, struct pt_doc **wdocs, const char *ws)
{
    for (int i = 0; ws && *ws && i < cf->nworkspaces; i++)
        if (!strcmp(cf->workspaces[i].id, ws))
            return wdocs[i];
    return NULL;
}

struct pt_gen *pt_gen_build(struct pt_conf *cf, struct pt_errors *errs)
{
    nresolved = resolved_next = 0; /* a reload resolves names again */
    return build(cf, true, false, errs);
}

/* The generation a check builds lives in a pool of its own, freed with it: built in the conf's pool
   it stayed for as long as the conf (the file's conf is kept while the process runs: tens of MB at
   10,000 APIs).  What the build writes into the conf itself is forgotten with it. */
bool pt_gen_validate(struct pt_conf *cf, bool refs, struct pt_errors *errs)
{
    nresolved = resolved_next = 0;
    struct pt_pool *keep = cf->pool;
    struct pt_pool *scratch = pt_pool_new(64 * 1024);
    if (scratch)
        cf->pool = scratch; /* else the conf's own, as a build */
    struct pt_gen *g = build(cf, refs, true, errs);
    if (g) {
        g->conf = NULL; /* the caller keeps it */
        pt_gen_unref(g);
    }
    cf->pool = keep;
    for (int i = 0; scratch && i < cf->nloggers; i++)
        cf->loggers[i].http_header_text = NULL; /* in scratch: a build of this conf sets it again */
    pt_pool_free(scratch);
    return g != NULL;
}

/* check_only: a generation that only checks and is let go (pt_gen_validate): what only requests read
   and no check needs (the definitions' texts and samples) is not made. */
static struct pt_gen *build(struct pt_conf *cf, bool refs, bool check_only, struct pt_errors *errs)
{
    struct pt_gen *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    atomic_init(&g->refs, 1);
    g->conf = cf;
    g->serial = atomic_fetch_add(&serial_counter, 1) + 1;
    int before = errs->n;
    /* Out of memory: the generation is given up even when the message could not be kept either
       (pt_node_errors_add drops it silently then, so errs->n alone would pass it as built) */
    bool oom = false;
    struct pt_pool *pool = cf->pool;

    g->router = pt_router_new();
    g->napis = cf->napis;
    g->apis = pt_pool_calloc(pool, sizeof(*g->apis) * (size_t)(cf->napis ? cf->napis : 1));
    /* each API's path, then the ;rev=N aliases of current Query/Header versions */
    struct route_key *keys = calloc((size_t)(cf->napis ? cf->napis * 2 : 1), sizeof(*keys));
    int nkeys = cf->napis;
    for (int i = 0; i < cf->napis; i++) {
        g->apis[i].cf = &cf->apis[i];
        for (int k = 0; cf->apis[i].version_set && k < cf->nversion_sets; k++)
            if (!strcmp(cf->version_sets[k].id, cf->apis[i].version_set))
                g->apis[i].vset = &cf->version_sets[k];
        if (!keys)
            continue;
        keys[i].path = route_path(pool, &g->apis[i]);
        keys[i].host = cf->apis[i].host ? cf->apis[i].host : "";
        keys[i].api = keys[i].handle = &g->apis[i];
    }
    for (int i = 0; keys && i < cf->napis; i++)
        if (revision_alias(&g->apis[i]) && header_or_query_scheme(&g->apis[i])) {
            struct route_key k = {pt_pool_printf(pool, "%s;rev=%s", keys[i].path, cf->apis[i].revision),
                                  keys[i].host, &g->apis[i], pt_pool_calloc(pool, sizeof(struct pt_apidef))};
            if (!k.path || !k.handle) { /* group_versions writes through the handle */
                free(keys);
                keys = NULL;
                break;
            }
            keys[nkeys++] = k;
        }
    /*
     * Nothing of the generation but its router (empty) and pool memory is
     * made yet: pt_gen_unref at `out` frees the router and finds every other
     * member NULL or 0 (calloc), and `out` clears g->conf first so that the
     * caller's configuration is not freed with it.
     */
    if (!keys || !group_versions(g, keys, nkeys, errs)) {
        free(keys);
        oom = true;
        pt_node_errors_add(errs, "out of memory building the configuration");
        goto out;
    }
    backends_build(g, errs);
    for (int i = 0; i < cf->napis; i++) {
        const struct pt_api_cf *ac = &cf->apis[i];
        struct pt_apidef *api = &g->apis[i];
        if (ac->backend_id && (api->bdef = pt_gen_find_backend(g, pt_str_c(ac->backend_id))))
            api->backend = api->bdef->target; /* NULL for a pool: a member is picked per request */
        else if (ac->service_url) {
            struct pt_backend *b = pt_pool_calloc(pool, sizeof(*b));
            pt_url_parse(pool, ac->service_url, &b->url); /* validated while loading */
            if (resolve(b, pt_node_get(ac->node, "serviceUrl"), errs)) {
                char addr[INET6_ADDRSTRLEN + 8] = "";
                getnameinfo((struct sockaddr *)&b->sa, b->salen, addr, sizeof(addr), NULL, 0, NI_NUMERICHOST);
                b->pool_key = pt_pool_printf(pool, "%s://%s:%d/%s", b->url.https ? "https" : "http", addr,
                                             b->url.port, b->url.https ? b->url.host : "");
                b->pool_hash = pt_hash(b->pool_key, strlen(b->pool_key), false);
                api->backend = b;
            }
        }
        /* a version that shares its path with others is reached through the group */
        bool hidden = api->vgroup && api->vgroup[0] != api;
        int idx = pt_router_add_api(g->router,
                                    hidden ? pt_pool_printf(pool, "\x01%s", ac->id) : keys_path(keys, g, api),
                                    ac->host, api);
        api->ridx = idx;
        /* the current revision also answers with its number: /echo;rev=3/...
           (a Query/Header version's alias is a group of its own, below) */
        int alias = -1;
        if (revision_alias(api) && !header_or_query_scheme(api) && !hidden)
            alias = pt_router_add_api(
                g->router, pt_pool_printf(pool, "%s;rev=%s", keys_path(keys, g, api), ac->revision), ac->host,
                api);
        api->nops = ac->nops;
        api->ops = pt_pool_calloc(pool, sizeof(*api->ops) * (size_t)(ac->nops ? ac->nops : 1));
        for (int k = 0; k < ac->nops; k++) {
            struct pt_operation *op = &api->ops[k];
            op->cf = &ac->ops[k];
            op->api = api;
            /* templates were checked with the configuration (pt_conf) */
            const char *why =
                pt_router_add_op(g->router, idx, op->cf->method, op->cf->url_template, op, NULL);
            if (alias >= 0 && !why)
                pt_router_add_op(g->router, alias, op->cf->method, op->cf->url_template, op, NULL);
            if (why)
                pt_node_error(errs, pt_node_get(op->cf->node, "urlTemplate"), "urlTemplate '%s' %s",
                              op->cf->url_template, why);
        }
    }
    /* a group of versions at a ;rev=N alias that no API's own path leads:
       routed through a stand-in, the versions matched as at their own path */
    for (int k = cf->napis; k < nkeys; k++) {
        struct pt_apidef *h = keys[k].handle, *api = keys[k].api;
        if (!h->vgroup || h->vgroup[0] != api)
            continue; /* reached through the group's first, or through the path of another API */
        struct pt_apidef **vg = h->vgroup;
        int nvg = h->nvgroup;
        *h = *api;
        h->vgroup = vg;
        h->nvgroup = nvg;
        h->ridx = pt_router_add_api(g->router, keys[k].path, api->cf->host, h);
    }
    free(keys);
    pt_router_finish(g->router);
    if (!check_only)
        definitions(g);
    if (refs && !pt_conf_check_refs(cf, errs))
        goto out;

    /* products, users, subscriptions and the key table */
    g->nproducts = cf->nproducts;
    g->products = pt_pool_calloc(pool, sizeof(*g->products) * (size_t)(cf->nproducts + 1));
    int napi_ids = 0;
    struct idpos *api_ids = ids_of(g->apis, g->napis, api_id_at, &napi_ids);
    if (!api_ids) {
        oom = true;
        pt_node_errors_add(errs, "out of memory building the configuration");
        goto out;
    }
    for (int i = 0; i < cf->nproducts; i++) {
        g->products[i].cf = &cf->products[i];
        g->products[i].index = i;
        const struct pt_product_cf *p = &cf->products[i];
        if (p->subscription_required || p->state != 1)
            continue;
        for (int k = 0; k < p->apis.n; k++) {
            int a = id_find(api_ids, napi_ids, p->apis.v[k]);
            if (a < 0)
                continue;
            if (g->apis[a].open_product)
                pt_node_error(
                    errs, p->node,
                    "API '%s' is already in the open product '%s': an API may be in one open product "
                    "only",
                    p->apis.v[k], g->apis[a].open_product->cf->id);
            g->apis[a].open_product = &g->products[i];
        }
    }
    g->nusers = cf->nusers;
    g->users = pt_pool_calloc(pool, sizeof(*g->users) * (size_t)(cf->nusers + 1));
    for (int i = 0; i < cf->nusers; i++)
        g->users[i].cf = &cf->users[i];
    if (!link_subs(g, pool)) {
        free(api_ids);
        oom = true;
        pt_node_errors_add(errs, "out of memory building the configuration");
        goto out;
    }

    /* policies: each scope's document is compiled once; every operation
       gets its flattened pipeline */
    g->reg = pt_registry_new();
    pt_corepol_register(g->reg);
    pt_plugin_register(g->reg);
    g->exprs = pt_expr_table_new(pool);
    g->pc = pt_pool_calloc(pool, sizeof(*g->pc));
    g->pc->pool = pool;
    g->pc->errs = errs;
    g->pc->reg = g->reg;
    g->pc->fragments = cf->fragments;
    g->pc->named_values = cf->named_values;
    g->pc->ca_file = cf->upstream.ca_file;
    g->pc->verify = cf->upstream.verify;
    g->pc->tls = &cf->upstream.tls;
    if (cf->file) {
        const char *slash = strrchr(cf->file, '/');
        g->pc->base_dir = slash ? pt_pool_strndup(pool, cf->file, (size_t)(slash - cf->file)) : ".";
    }
    g->pc->exprs = g->exprs;
    g->pc->loggers = cf->loggers;
    g->pc->nloggers = cf->nloggers;
    g->pc->loggers_open = !refs;
    g->pc->store_certs = cf->certs;
    g->pc->nstore_certs = cf->ncerts;
    g->pc->certs_open = !refs;
    loggers(g, refs, errs);
    backends_credentials(g, errs);
    if (cf->lua.npolicy_path)
        pt_luapol_load(g->pc, g->reg, cf->lua.policy_path, cf->lua.npolicy_path);
    else {
        char *dir = (char *)pt_paths_policies();
        pt_luapol_load(g->pc, g->reg, &dir, 1);
    }
    int perr = errs->n;
    for (int i = 0; cf->fragments && i < cf->fragments->n; i++)
        pt_policy_check_fragment(g->pc, cf->fragments->items[i]);
    /* each document is compiled in its own scope (g->pc->workspace): it sees
       the named values and fragments of that scope only */
    g->pc->workspace = NULL;
    struct pt_doc *gdoc = pt_policy_doc(g->pc, cf->policies, PT_SCOPE_GLOBAL);
    struct pt_doc **wdocs = pt_pool_calloc(pool, sizeof(*wdocs) * (size_t)(cf->nworkspaces + 1));
    for (int i = 0; i < cf->nworkspaces; i++) {
        g->pc->workspace = cf->workspaces[i].id;
        wdocs[i] = pt_policy_doc(g->pc, cf->workspaces[i].policies, PT_SCOPE_WORKSPACE);
    }
    for (int i = 0; i < g->napis; i++) {
        struct pt_apidef *api = &g->apis[i];
        g->pc->workspace = api->cf->workspace;
        struct pt_doc *adoc = pt_policy_doc(g->pc, api->cf->policies, PT_SCOPE_API);
        struct pt_doc *wdoc = workspace_doc(cf, wdocs, api->cf->workspace);
        for (int k = 0; k < api->nops; k++) {
            struct pt_operation *op = &api->ops[k];
            struct pt_doc *odoc = pt_policy_doc(g->pc, op->cf->policies, PT_SCOPE_OPERATION);
            if (errs->n > perr)
                continue;
            struct pt_doc *docs[4] = {odoc, adoc, wdoc, gdoc};
            op->pipeline = pt_pool_calloc(pool, sizeof(*op->pipeline));
            pt_policy_flatten(g->pc, docs, 4, op->pipeline);
        }
    }
    /* product scope: operation -> API -> product -> workspace -> global, for each product holding the API */
    for (int p = 0; p < g->nproducts && errs->n == perr; p++) {
        struct pt_product *prod = &g->products[p];
        g->pc->workspace = prod->cf->workspace;
        struct pt_doc *pdoc = pt_policy_doc(g->pc, prod->cf->policies, PT_SCOPE_PRODUCT);
        int nheld = 0, *held = product_api_indexes(prod->cf, api_ids, napi_ids, &nheld);
        if (!held) {
            oom = true;
            pt_node_errors_add(errs, "out of memory building the configuration");
            break;
        }
        for (int h = 0; h < nheld && errs->n == perr; h++) {
            struct pt_apidef *api = &g->apis[held[h]];
            g->pc->workspace = api->cf->workspace;
            struct pt_doc *adoc = pt_policy_doc(g->pc, api->cf->policies, PT_SCOPE_API);
            struct pt_doc *wdoc = workspace_doc(cf, wdocs, api->cf->workspace);
            for (int k = 0; k < api->nops && errs->n == perr; k++) {
                struct pt_operation *op = &api->ops[k];
                struct pt_doc *odoc = pt_policy_doc(g->pc, op->cf->policies, PT_SCOPE_OPERATION);
                op->prod = pt_pool_grow(pool, op->prod, sizeof(*op->prod), &(int){op->nprod}, op->nprod + 1);
                struct pt_prodpipe *pp = &op->prod[op->nprod++];
                pp->product = prod;
                struct pt_doc *docs[5] = {odoc, adoc, pdoc, wdoc, gdoc};
                pp->pipeline = pt_pool_calloc(pool, sizeof(*pp->pipeline));
                pt_policy_flatten(g->pc, docs, 5, pp->pipeline);
            }
        }
        free(held);
    }
    free(api_ids);

    /* the routing policies' literal URLs and backend ids, and the inherited backend-id rule */
    for (int i = 0; i < g->pc->nall; i++)
        routing_stmt(g, g->pc->all[i], refs, errs);
    struct sbs_walk *sw = calloc(1, sizeof(*sw));
    for (int i = 0; sw && i < g->napis; i++)
        for (int k = 0; k < g->apis[i].nops; k++) {
            sw->errs = errs;
            sbs_pipeline(sw, g->apis[i].ops[k].pipeline);
            for (int q = 0; q < g->apis[i].ops[k].nprod; q++)
                sbs_pipeline(sw, g->apis[i].ops[k].prod[q].pipeline);
        }
    free(sw);

    /* clientCertificate: required lets any certificate through the handshake
       (a policy such as validate-client-certificate decides): without one, nothing does */
    bool validates = false;
    for (int i = 0; i < g->pc->nall && !validates; i++)
        validates = g->pc->all[i]->def && (g->pc->all[i]->def->flags & PT_POLICY_CLIENT_CERT);
    for (int i = 0; i < cf->nlisten && !validates && errs->n == perr; i++)
        if (cf->listen[i].client_cert == 2)
            pt_warn(
                "listen %s: clientCertificate: required accepts any certificate at the handshake (expired, "
                "untrusted) and no policy uses validate-client-certificate, so nothing checks them; add the "
                "policy, or use clientCertificate: verified (with clientCa)",
                cf->listen[i].address);
    g->tls = calloc((size_t)(cf->nlisten ? cf->nlisten : 1), sizeof(*g->tls));
    g->ntls = cf->nlisten;
    for (int i = 0; i < cf->nlisten; i++)
        if (cf->listen[i].ncerts)
            g->tls[i] = pt_tls_server_new(&cf->listen[i], errs);
    if (cf->mgmt.tls.ncerts) { /* loaded by the management API at start; checked here for -t and reloads */
        struct pt_tls_server *t = pt_tls_server_new(&cf->mgmt.tls, errs);
        if (t)
            pt_tls_server_free(t);
    }
    bool need_client = false;
    for (int i = 0; i < g->napis; i++)
        if (g->apis[i].backend && g->apis[i].backend->url.https)
            need_client = true;
    for (int i = 0; i < g->nbackends; i++)
        need_client |= g->backends[i].target && g->backends[i].target->url.https;
    for (size_t i = 0; i < g->nurls; i++)
        need_client |= g->urls[i].be && g->urls[i].be->url.https;
    /* set-backend-service may name https at run time, and side calls may go to https anywhere (their
       URLs are expressions): the context is built here, on the control thread, never by a worker at
       its first call (loading the CA store takes ~20 ms) */
    for (int i = 0; i < g->pc->nall && !need_client; i++)
        need_client = (g->pc->all[i]->name && !strcmp(g->pc->all[i]->name, "set-backend-service")) ||
                      (g->pc->all[i]->def && (g->pc->all[i]->def->flags & PT_POLICY_HTTP_SEND));
    if (need_client || cf->upstream.ca_file) {
        g->client_tls = pt_tls_client_ctx(cf->upstream.ca_file, cf->upstream.verify, &cf->upstream.tls, errs);
        if (!g->client_tls && cf->upstream.ca_file) {
            /* point the message at the key */
            struct pt_node *u = pt_node_get(cf->root, "upstream");
            if (u && errs->n)
                pt_node_error(errs, pt_node_get(u, "caFile"), "see above");
        }
    }
out:
    pt_breaker_attach(g->backends, g->nbackends); /* node-wide state, kept across reloads */
    if (oom || errs->n > before) {
        g->conf = NULL; /* the caller keeps its config on failure */
        pt_gen_unref(g);
        return NULL;
    }
    return g;
}

struct pt_gen *pt_gen_with_subs(struct pt_gen *prev, struct pt_conf *cf, struct pt_errors *errs)
{
    struct pt_gen *body = prev->body ? prev->body : prev;
    PT_ASSERT(cf->shares == body->conf);
    if (!pt_conf_check_subs(cf, errs)) /* what pt_conf_check_refs says of them in a full build */
        return NULL;
    struct pt_gen *g = malloc(sizeof(*g));
    if (!g) {
        pt_node_errors_add(errs, "out of memory building the configuration");
        return NULL;
    }
    memcpy(g, body, sizeof(*g)); /* the body's compiled parts, shared */
    atomic_init(&g->refs, 1);
    g->serial = atomic_fetch_add(&serial_counter, 1) + 1;
    g->conf = cf;
    g->body = body;
    pt_gen_ref(body);
    g->listen_fds = NULL; /* its own, as every published generation's */
    g->sinks = NULL;
    g->nsinks = 0;
    if (!link_subs(g, cf->pool)) {
        g->conf = NULL; /* the caller keeps its config on failure */
        pt_gen_unref(g);
        pt_node_errors_add(errs, "out of memory building the configuration");
        return NULL;
    }
    return g;
}

bool pt_gen_product_has_api(const struct pt_product *p, const struct pt_apidef *api)
{
    for (int i = 0; i < p->cf->apis.n; i++)
        if (!strcmp(p->cf->apis.v[i], api->cf->id))
            return true;
    return false;
}

const struct pt_subscription *pt_gen_find_key(const struct pt_gen *g, pt_str key)
{
    if (!g->nkeys || key.len == 0 || key.len > 256)
        return NULL;
    uint64_t h = pt_hash(key.data, key.len, false);
    size_t slot = h & (g->nkeys - 1);
    for (size_t probe = 0; probe < g->nkeys && g->keys[slot].key; probe++) {
        const struct pt_keyslot *k = &g->keys[slot];
        /* the hash only picks the slot; the key itself is compared in constant time */
        if (k->len == key.len && CRYPTO_memcmp(k->key, key.data, key.len) == 0)
            return k->sub;
        slot = (slot + 1) & (g->nkeys - 1);
    }
    return NULL;
}

static const char *scalar_of(const struct pt_node *n)
{
    return n && n->kind == PT_N_SCALAR && !n->null ? n->str : NULL;
}

void pt_gen_check_policies(const char *path, struct pt_errors *errs)
{
    struct pt_pool *pool = pt_pool_new(64 * 1024);
    struct pt_errors scratch = {0};
    struct pt_node *root = pt_node_load_file(pool, path, &scratch); /* its errors are known already */
    pt_node_errors_clear(&scratch);
    if (!root || root->kind != PT_N_MAP) {
        pt_pool_free(pool);
        return;
    }
    struct pt_registry *reg = pt_registry_new();
    pt_corepol_register(reg);
    pt_plugin_register(reg);
    struct pt_polctx pc = {0};
    pc.pool = pool;
    pc.errs = errs;
    pc.reg = reg;
    pc.exprs = pt_expr_table_new(pool);
    struct pt_node *f = pt_node_get(root, "policyFragments"), *nv = pt_node_get(root, "namedValues");
    pc.fragments = f && f->kind == PT_N_SEQ ? f : NULL;
    pc.named_values = nv && nv->kind == PT_N_SEQ ? nv : NULL;
    pc.certs_open = true; /* the statements' shapes only */
    char *dir = (char *)pt_paths_policies();
    pt_luapol_load(&pc, reg, &dir, 1);
    for (int i = 0; pc.fragments && i < pc.fragments->n; i++)
        if (pc.fragments->items[i]->kind == PT_N_MAP)
            pt_policy_check_fragment(&pc, pc.fragments->items[i]);
    pt_policy_doc(&pc, pt_node_get(root, "policies"), PT_SCOPE_GLOBAL);
    struct pt_node *wss = pt_node_get(root, "workspaces");
    for (int i = 0; wss && wss->kind == PT_N_SEQ && i < wss->n; i++)
        if (wss->items[i]->kind == PT_N_MAP) {
            pc.workspace = scalar_of(pt_node_get(wss->items[i], "id"));
            pt_policy_doc(&pc, pt_node_get(wss->items[i], "policies"), PT_SCOPE_WORKSPACE);
        }
    struct pt_node *apis = pt_node_get(root, "apis");
    for (int i = 0; apis && apis->kind == PT_N_SEQ && i < apis->n; i++) {
        struct pt_node *a = apis->items[i];
        if (a->kind != PT_N_MAP)
            continue;
        pc.workspace = scalar_of(pt_node_get(a, "workspace"));
        pt_policy_doc(&pc, pt_node_get(a, "policies"), PT_SCOPE_API);
        struct pt_node *ops = pt_node_get(a, "operations");
        for (int k = 0; ops && ops->kind == PT_N_SEQ && k < ops->n; k++)
            if (ops->items[k]->kind == PT_N_MAP)
                pt_policy_doc(&pc, pt_node_get(ops->items[k], "policies"), PT_SCOPE_OPERATION);
    }
    pt_policy_release(&pc);
    pt_expr_table_free(pc.exprs);
    pt_registry_free(reg);
    pt_pool_free(pool);
}

void pt_gen_start_loggers(struct pt_gen *g)
{
    if (g->sinks || !g->conf || !g->conf->nloggers)
        return;
    g->sinks = calloc((size_t)g->conf->nloggers, sizeof(*g->sinks));
    if (!g->sinks)
        return;
    g->nsinks = g->conf->nloggers;
    for (int i = 0; i < g->nsinks; i++)
        g->sinks[i] = pt_logsink_get(&g->conf->loggers[i]);
}

static void release_loggers(struct pt_gen *g)
{
    for (int i = 0; i < g->nsinks; i++)
        pt_logsink_put(g->sinks[i]);
    free(g->sinks);
}

void pt_gen_ref(struct pt_gen *g)
{
    atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
}

void pt_gen_unref(struct pt_gen *g)
{
    if (!g)
        return;
    long prev = atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel);
    PT_ASSERT(prev >= 1);
    if (prev != 1)
        return;
    if (g->body) { /* what it owns; the rest is the body's */
        struct pt_gen *body = g->body;
        release_loggers(g);
        free(g->listen_fds);
        pt_conf_free(g->conf);
        free(g);
        atomic_store(&released, true);
        pt_gen_unref(body);
        return;
    }
    pt_breaker_detach(g->backends, g->nbackends); /* */
    for (int i = 0; g->apis && i < g->napis; i++)
        for (int k = 0; g->apis[i].ops && k < g->apis[i].nops; k++)
            free(atomic_load(&g->apis[i].ops[k].def));
    if (g->pc)
        pt_policy_release(g->pc);
    release_loggers(g);
    pt_expr_table_free(g->exprs);
    pt_registry_free(g->reg);
    pt_router_free(g->router);
    for (int i = 0; g->tls && i < g->ntls; i++)
        pt_tls_server_free(g->tls[i]);
    free(g->tls);
    if (g->client_tls)
        SSL_CTX_free(g->client_tls);
    for (int i = 0; i < g->nbackends; i++)
        if (g->backends[i].tls)
            SSL_CTX_free(g->backends[i].tls);
    free(g->listen_fds);
    pt_conf_free(g->conf);
    free(g);
    atomic_store(&released, true);
}

bool pt_gen_take_released(void)
{
    return atomic_exchange(&released, false);
}
