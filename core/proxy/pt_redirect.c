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
 *   - the Location may be a path (on the same backend), or an absolute
 *     http(s) URL on the same backend, or on a literal IP address (v4 or
 *     [v6]: no name lookup on a worker); any other host, an https -> http
 *     downgrade, or a Location that is not a valid request target is not
 *     followed (the client gets the redirect);
 *   - on a different host, Authorization and Cookie are not sent.
 */
#include "base/pt_log.h"
#include "base/pt_url.h"
#include "http/pt_http.h"
#include "http/pt_msg.h"
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

/* A backend for a literal address, in the request arena; NULL for a name. */
static struct pt_backend *literal_backend(struct pt_req *req, const struct pt_url *u)
{
    struct pt_backend *b = pt_pool_calloc(req->pool, sizeof(*b));
    if (!b)
        return NULL;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&b->sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&b->sa;
    if (inet_pton(AF_INET, u->host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)u->port);
        b->salen = sizeof(*v4);
    } else if (inet_pton(AF_INET6, u->host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)u->port);
        b->salen = sizeof(*v6);
    } else
        return NULL;
    b->url = *u;
    b->url.path = "";
    /* the same key as a configured backend on that address: pooled alike */
    b->pool_key = pt_pool_printf(req->pool, "%s://%s:%d/%s", u->https ? "https" : "http", u->host, u->port,
                                 u->https ? u->host : "");
    if (!b->pool_key)
        return NULL;
    b->pool_hash = pt_hash(b->pool_key, strlen(b->pool_key), false);
    return b;
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

static void drop_header(struct pt_head *h, const char *name)
{
    for (int i = 0; i < h->nh; i++)
        if (pt_str_ieq_c(h->h[i].name, name))
            h->h[i].deleted = true;
}

struct pt_redirect_from {
    struct pt_backend *be;
    pt_str bpath, bquery;
    struct pt_backend *last; /* the last redirect's target, path and query */
    pt_str last_path, last_query;
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
    bool to_get = status == 303 || ((status == 301 || status == 302) && req->h.method_id == HTTP_POST);
    if (req->h.method_id == HTTP_HEAD)
        to_get = false;
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
            nb = literal_backend(req, &u);
            cross = true;
            if (!nb) {
                *why = "the Location names another host (only literal addresses are followed)";
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
    if (!req->redir) {
        req->redir = pt_pool_alloc(req->pool, sizeof(*req->redir));
        if (!req->redir)
            return false;
        *req->redir =
            (struct pt_redirect_from){req->be, req->bpath, req->bquery, NULL, PT_NULL_STR, PT_NULL_STR};
    }
    req->redirects++;
    req->be = nb;
    req->redir->last = nb;
    req->redir->last_path = path;
    req->redir->last_query = query;
    req->bpath = path;
    req->bquery = query;
    if (to_get && req->h.method_id != HTTP_GET) {
        req->h.method = PT_STR("GET");
        req->h.method_id = HTTP_GET;
    }
    if (to_get) {
        /* no body, and none of the headers that described it */
        if (!req->req_body)
            req->req_body = evbuffer_new();
        else
            evbuffer_drain(req->req_body, evbuffer_get_length(req->req_body));
        req->req_body_state = RB_REPLACED;
        req->h.body = PT_BODY_NONE;
        req->h.content_length = -1;
        drop_header(&req->h, "content-type");
        drop_header(&req->h, "content-encoding");
        drop_header(&req->h, "content-language");
        drop_header(&req->h, "content-location");
    }
    if (cross) {
        drop_header(&req->h, "authorization");
        drop_header(&req->h, "cookie");
        for (int i = 0; i < req->h.nh; i++) /* a Host a policy set named the old host */
            if (req->h.h[i].kind == PT_H_HOST)
                req->h.h[i].deleted = true;
    }
    return true;
}
