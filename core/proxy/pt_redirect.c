/*
 * pt_redirect -- forward-request's follow-redirects: where a backend's
 * 301/302/303/307/308 leads, under the rules a careful client follows.
 *
 *   - at most PT_REDIRECT_MAX redirects per forward-request; the one after
 *     that reaches the client as it is;
 *   - 303 turns the call into a GET without a body (HEAD stays HEAD), and so
 *     do 301 and 302 after a POST (what browsers and curl do); 307 and 308
 *     repeat the method and the body, so they are followed only when the
 *     body is in memory (buffer-request-body, or none at all);
 *   - the Location may be a path (on the same backend), an absolute http(s)
 *     URL of the same origin (scheme, host and port of the backend called),
 *     or of the origin of another backend entity of the configuration (its
 *     name, or the literal address it resolved to: no name lookup on a
 *     worker).  Anything else -- another host, a loopback, link-local,
 *     private or unspecified address that no backend entity names, an
 *     https -> http downgrade, a Location that is not a valid request
 *     target -- is not followed (the client gets the redirect): a client
 *     must not be able to make the gateway fetch an address of its choice;
 *   - a hop to a backend entity goes through its circuit breaker and health
 *     verdict (not followed while it is unavailable; its outcome counts),
 *     with its credentials and TLS;
 *   - once the origin changed, nothing credential-like of the first call is
 *     sent: Authorization, Cookie, Proxy-Authorization, the subscription key
 *     header, a Host a policy set, the header names of the first backend's
 *     credentials, and no client certificate;
 *   - the hop's method, body and dropped headers lie over the request: the
 *     client's request (req->h, the buffered body) is never changed, so a
 *     retry sends it again as it was, and policies see it as it came;
 *   - the hops share forward-request's timeout (one deadline).
 */
#include "base/pt_log.h"
#include "base/pt_url.h"
#include "event/pt_breaker.h"
#include "http/pt_http.h"
#include "http/pt_msg.h"
#include "policy/pt_gen.h"
#include "proxy/pt_proxy.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static bool is_redirect(int status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* The one Location of the response (none, or two, is not followed). */
static bool location_of(const struct pt_head *rh, pt_str *out)
{
    int n = 0;
    for (int i = 0; i < rh->nh; i++)
        if (!rh->h[i].deleted && pt_str_ieq_c(rh->h[i].name, "location")) {
            *out = rh->h[i].value;
            n++;
        }
    return n == 1 && out->len > 0;
}

/* Every byte may stand in a request line's target. */
static bool target_ok(pt_str s)
{
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.data[i];
        if (c <= 0x20 || c >= 0x7f)
            return false;
    }
    return true;
}

/* Whether `host` is a literal address equal to the one `sa` holds. */
static bool same_address(const char *host, const struct sockaddr_storage *sa)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (sa->ss_family == AF_INET && inet_pton(AF_INET, host, &a4) == 1)
        return !memcmp(&a4, &((const struct sockaddr_in *)sa)->sin_addr, sizeof(a4));
    if (sa->ss_family == AF_INET6 && inet_pton(AF_INET6, host, &a6) == 1)
        return !memcmp(&a6, &((const struct sockaddr_in6 *)sa)->sin6_addr, sizeof(a6));
    return false;
}

/* The backend entity of the generation whose origin the URL names (a copy of its target, path
   dropped, in the request arena); NULL when none does: no other place is called. */
static struct pt_backend *configured_backend(struct pt_req *req, const struct pt_url *u)
{
    const struct pt_gen *g = req_gen(req);
    for (int i = 0; i < g->nbackends; i++) {
        const struct pt_backend *t = g->backends[i].target;
        if (!t || t->url.https != u->https || t->url.port != u->port)
            continue;
        if (strcasecmp(t->url.host, u->host) && !same_address(u->host, &t->sa))
            continue;
        struct pt_backend *b = pt_pool_alloc(req->pool, sizeof(*b));
        if (!b)
            return NULL;
        *b = *t;
        b->url.path = "";
        return b;
    }
    return NULL;
}

/* The current backend, its path dropped (a Location's path is the whole path). */
static struct pt_backend *same_backend(struct pt_req *req)
{
    struct pt_backend *b = pt_pool_alloc(req->pool, sizeof(*b));
    if (!b)
        return NULL;
    *b = *req->be;
    b->url.path = "";
    return b;
}

struct pt_redirect_from {
    struct pt_backend *be;
    pt_str bpath, bquery;
    struct pt_backend *last; /* the last redirect's target, path and query */
    pt_str last_path, last_query;
    /* the hop's request, laid over the client's */
    bool to_get;                    /* GET (HEAD stays HEAD), without a body */
    bool cross;                     /* the origin changed: no credential of the first call goes */
    const struct pt_backdef *first; /* the first call's backend entity */
    uint64_t t0_us;                 /* when the first call started (one deadline for all hops) */
};

void pt_redirect_restore(struct pt_req *req)
{
    if (!req->redir)
        return;
    /* what a policy changed since (set-backend-service, rewrite-uri) stands */
    const struct pt_redirect_from *r = req->redir;
    if (req->be == r->last)
        req->be = r->be;
    if (req->bpath.data == r->last_path.data && req->bpath.len == r->last_path.len)
        req->bpath = r->bpath;
    if (req->bquery.data == r->last_query.data && req->bquery.len == r->last_query.len)
        req->bquery = r->bquery;
    req->redir = NULL;
}

pt_str pt_redirect_method(const struct pt_req *req)
{
    return req->redir && req->redir->to_get ? PT_STR("GET") : req->h.method;
}

static int method_id(const struct pt_req *req)
{
    return req->redir && req->redir->to_get ? HTTP_GET : req->h.method_id;
}

bool pt_redirect_no_body(const struct pt_req *req)
{
    return req->redir && req->redir->to_get;
}

bool pt_redirect_crossed(const struct pt_req *req)
{
    return req->redir && req->redir->cross;
}

bool pt_redirect_hides(const struct pt_req *req, const struct pt_hdr *x)
{
    const struct pt_redirect_from *r = req->redir;
    if (!r)
        return false;
    static const char *const content[] = {"content-type", "content-encoding", "content-language",
                                          "content-location"};
    for (size_t i = 0; r->to_get && i < sizeof(content) / sizeof(content[0]); i++)
        if (pt_str_ieq_c(x->name, content[i]))
            return true;
    if (!r->cross)
        return false;
    static const char *const creds[] = {"authorization", "cookie", "proxy-authorization"};
    for (size_t i = 0; i < sizeof(creds) / sizeof(creds[0]); i++)
        if (pt_str_ieq_c(x->name, creds[i]))
            return true;
    if (x->kind == PT_H_HOST) /* a Host a policy set named the old host */
        return true;
    if (req->api && req->api->cf->key_header && pt_str_ieq_c(x->name, req->api->cf->key_header))
        return true;
    for (int i = 0; r->first && i < r->first->nheaders; i++)
        if (pt_str_ieq_c(x->name, r->first->headers[i].name))
            return true;
    return false;
}

bool pt_redirect_time_left(const struct pt_req *req, unsigned *ms)
{
    if (!req->redir || !*ms)
        return true;
    uint64_t spent = (pt_clock_now_us() - req->redir->t0_us) / 1000;
    if (spent >= *ms)
        return false;
    *ms -= (unsigned)spent;
    return true;
}

bool pt_redirect_follow(struct pt_req *req, const char **why)
{
    *why = NULL;
    int status = req->rh.status;
    pt_str loc = PT_NULL_STR;
    if (!req->fwd_follow || !is_redirect(status) || !location_of(&req->rh, &loc))
        return false;
    if (req->redirects >= PT_REDIRECT_MAX) {
        *why = "too many redirects";
        return false;
    }
    int mid = method_id(req);
    bool to_get = status == 303 || ((status == 301 || status == 302) && mid == HTTP_POST);
    if (mid == HTTP_HEAD)
        to_get = false;
    to_get = to_get || pt_redirect_no_body(req); /* once turned into a GET, it stays one */
    bool has_body = req->h.body != PT_BODY_NONE || req->req_body_state == RB_REPLACED;
    if (!req->req_done || (!to_get && has_body && req->req_body_state == RB_STREAM)) {
        *why = "the request body was streamed and cannot be sent again";
        return false;
    }
    /* the fragment stays with the client */
    const char *hash = memchr(loc.data, '#', loc.len);
    if (hash)
        loc.len = (size_t)(hash - loc.data);
    if (!loc.len || !target_ok(loc) || loc.len > 8192) {
        *why = "the Location is not a valid target";
        return false;
    }
    struct pt_backend *nb = NULL;
    pt_str path = loc, query = PT_NULL_STR;
    bool cross = false;
    if (loc.data[0] == '/' && !(loc.len > 1 && loc.data[1] == '/')) {
        nb = same_backend(req); /* a path on the same backend */
    } else {
        /* an absolute URL (or a scheme-relative one, with the current scheme) */
        char *text;
        if (loc.data[0] == '/')
            text = pt_pool_printf(req->pool, "%s:%.*s", req->be->url.https ? "https" : "http", (int)loc.len,
                                  loc.data);
        else
            text = pt_pool_strndup(req->pool, loc.data, loc.len);
        if (!text)
            return false;
        char *q = strchr(text, '?');
        if (q) {
            query = pt_str_c(q + 1);
            *q = 0;
        }
        /* path: after "scheme://authority" */
        char *sl = strstr(text, "://");
        char *p = sl ? strchr(sl + 3, '/') : NULL;
        char *pathcopy = p ? pt_pool_strndup(req->pool, p, strlen(p)) : NULL;
        if (p)
            *p = 0;
        struct pt_url u;
        if (!sl || pt_url_parse(req->pool, text, &u)) {
            *why = "the Location is not an http(s) URL";
            return false;
        }
        if (req->be->url.https && !u.https) {
            *why = "an https backend redirected to http";
            return false;
        }
        path = pathcopy ? pt_str_c(pathcopy) : PT_STR("/");
        if (u.https == req->be->url.https && u.port == req->be->url.port &&
            !strcasecmp(u.host, req->be->url.host))
            nb = same_backend(req);
        else {
            nb = configured_backend(req, &u);
            cross = true;
            if (!nb) {
                *why = "the Location names an origin that is neither the backend's nor a configured "
                       "backend's";
                return false;
            }
        }
        goto have;
    }
    {
        const char *qm = memchr(path.data, '?', path.len);
        if (qm) {
            query = (pt_str){qm + 1, path.len - (size_t)(qm + 1 - path.data)};
            path.len = (size_t)(qm - path.data);
        }
    }
have:
    if (!nb)
        return false;
    {
        /* the target's circuit breaker and health verdict (a backend entity's) */
        const struct pt_backdef *td = nb->def;
        if (td && td->state && !pt_breaker_available(td->state, (int64_t)pt_clock_now_ms())) {
            *why = "the Location's backend is unavailable (circuit breaker open or marked down)";
            return false;
        }
        req->brk_def = td && td->nrules ? td : NULL; /* its outcome counts */
    }
    if (!req->redir) {
        req->redir = pt_pool_calloc(req->pool, sizeof(*req->redir));
        if (!req->redir)
            return false;
        *req->redir = (struct pt_redirect_from){.be = req->be,
                                                .bpath = req->bpath,
                                                .bquery = req->bquery,
                                                .first = req->be->def,
                                                .t0_us = req->tb0 ? req->tb0 : pt_clock_now_us()};
    }
    req->redirects++;
    req->be = nb;
    req->redir->last = nb;
    req->redir->last_path = path;
    req->redir->last_query = query;
    req->bpath = path;
    req->bquery = query;
    /* the hop's method, body and headers lie over the client's request (see pt_redirect_hides) */
    req->redir->to_get = to_get;
    req->redir->cross = req->redir->cross || cross;
    return true;
}
