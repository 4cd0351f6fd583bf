/*
 * pt_upstream -- the backend side: connection pools (per worker, per
 * backend address), the request head sent to the backend, forward-request,
 * and reading the response head.
 *
 * A backend connection belongs to a request while in use and to its pool
 * while idle.  Only a connection whose last exchange ended exactly where
 * its framing said may carry another.
 */
#include "base/pt_log.h"
#include "base/pt_url.h"
#include "conf/pt_router.h"
#include "event/pt_io.h"
#include "event/pt_tls.h"
#include "http/pt_http.h"
#include "http/pt_msg.h"
#include "http/pt_otel.h"
#include "http/pt_trace.h"
#include "lua/pt_lua.h"
#include "policy/pt_corepol.h"
#include "policy/pt_gen.h"
#include "policy/pt_pipeline.h"
#include "proxy/pt_grpc.h"
#include "proxy/pt_h2up.h"
#include "proxy/pt_proxy.h"
#include "proxy/pt_worker.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static void up_cb(struct pt_io *io, int what, void *arg);
static void up_timer(struct pt_tnode *t, int kind);

#define POOL_BUCKETS_MAX 65536 /* the table grows up to this many chains */

/* Drops the pools no connection uses (idle or busy) and no distrust holds: they come back when a
   target is called again.  Bounded by the table (at most upstream.maxPools pools). */
static size_t pools_reap(struct pt_worker *w)
{
    size_t freed = 0;
    uint64_t now = pt_clock_now_us();
    for (size_t i = 0; i < w->npools; i++) {
        struct pt_upool **pp = &w->pools[i];
        while (*pp) {
            struct pt_upool *p = *pp;
            if (p->nconns || now < p->distrust_until) {
                pp = &p->next;
                continue;
            }
            *pp = p->next;
            free(p->key);
            free(p);
            freed++;
        }
    }
    w->npools_used -= freed;
    return freed;
}

/* Twice the chains once they average more than two pools (bounded by POOL_BUCKETS_MAX). */
static void pools_grow(struct pt_worker *w)
{
    if (w->npools_used <= 2 * w->npools || w->npools >= POOL_BUCKETS_MAX)
        return;
    size_t n = w->npools * 2;
    struct pt_upool **t = calloc(n, sizeof(*t));
    if (!t)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < w->npools; i++)
        while (w->pools[i]) {
            struct pt_upool *p = w->pools[i];
            w->pools[i] = p->next;
            p->next = t[p->hash & (n - 1)];
            t[p->hash & (n - 1)] = p;
        }
    free(w->pools);
    w->pools = t;
    w->npools = n;
}

/* A pool that is in the table only while it is used: past upstream.maxPools, once dropping unused
   pools found no room (tried at most once a second), a new target's connections are not kept
   (pt_upstream_release closes them; the last close frees the pool). */
static struct pt_upool *pool_new(const char *key, uint64_t hash)
{
    struct pt_upool *p = calloc(1, sizeof(*p));
    if (!p || !(p->key = strdup(key))) {
        free(p);
        return NULL;
    }
    p->hash = hash;
    pt_list_init(&p->idle);
    pt_list_init(&p->h2s);
    return p;
}

/* One connection of the pool ended; a pool outside the table goes with its last one. */
void pt_upstream_pool_unref(struct pt_upool *p)
{
    if (--p->nconns == 0 && p->transient) {
        pt_list_del(&p->tlink);
        free(p->key);
        free(p);
    }
}

static struct pt_upool *pool_get(struct pt_worker *w, const struct pt_backend *be,
                                 const struct pt_clientcert *cc)
{
    if (!w->pools) {
        w->pools = calloc(64, sizeof(*w->pools));
        if (!w->pools)
            return NULL;
        w->npools = 64;
    }
    /* connections presenting a client certificate are pooled apart; the key is never cut short
       (two targets sharing a pool would share connections) */
    const char *k = be->pool_key;
    uint64_t hash = be->pool_hash;
    char *owned = NULL;
    if (cc) {
        size_t n = strlen(be->pool_key) + 40;
        if (!(owned = malloc(n)))
            return NULL;
        snprintf(owned, n, "%s|client-cert-%llu", be->pool_key, (unsigned long long)cc->serial);
        k = owned;
        hash = pt_hash(k, strlen(k), false);
    }
    struct pt_upool *p = NULL;
    for (p = w->pools[hash & (w->npools - 1)]; p; p = p->next)
        if (p->hash == hash && !strcmp(p->key, k))
            break;
    if (!p) {
        int64_t max = w->cur ? w->cur->gen->conf->upstream.max_pools : 4096;
        if ((int64_t)w->npools_used >= max && pt_clock_now_ms() >= w->pools_reap_at) {
            size_t freed = pools_reap(w);
            if (!freed)
                w->pools_reap_at = pt_clock_now_ms() + 1000;
            pt_debug("worker %d: %zu unused backend connection pools dropped (upstream.maxPools %lld)", w->id,
                     freed, (long long)max);
        }
        p = pool_new(k, hash);
        if (p && (int64_t)w->npools_used < max) {
            size_t slot = hash & (w->npools - 1);
            p->next = w->pools[slot];
            w->pools[slot] = p;
            w->npools_used++;
            pools_grow(w);
        } else if (p) {
            p->transient = true;
            pt_list_add_tail(&w->upools_transient, &p->tlink); /* for pt_upstream_free_pools */
        }
    }
    free(owned);
    return p;
}

/* The client certificate the call presents: an https target's, and none once a followed redirect
   changed the origin (it is the first backend's credential). */
static const struct pt_clientcert *call_cert(const struct pt_req *req)
{
    return req->be->url.https && !pt_redirect_crossed(req) ? req->client_cert : NULL;
}

/* Connections through a proxy are pooled per proxy, target and credentials: the target's own key
   (its address, and a backend entity's TLS identity: a lax or mutual-TLS tunnel is never reused for
   another target's calls), and a proxy may tie a connection to whoever authenticated on it. */
static struct pt_upool *proxy_pool_get(struct pt_req *req, struct pt_worker *w)
{
    const struct pt_fwdproxy *px = req->fproxy;
    struct pt_backend tmp = *px->be;
    tmp.pool_key =
        pt_pool_printf(req->pool, "proxy %s > %s | %016llx", px->be->pool_key, req->be->pool_key,
                       (unsigned long long)pt_hash(px->auth.data ? px->auth.data : "", px->auth.len, false));
    tmp.pool_hash = pt_hash(tmp.pool_key, strlen(tmp.pool_key), false);
    return pool_get(w, &tmp, call_cert(req));
}

/*
 * The backend entity's target for this call: a pool's member (the best
 * priority group with a member neither tripped nor down, smooth weighted
 * round robin within it), or the Single's own target; false with the
 * request's error set (503 BackendUnavailable) when it may not be called.
 */
bool pt_upstream_pick(struct pt_req *req)
{
    /* pt_balance: a pool's member by priority and weight, or 503 BackendUnavailable for a
       backend (or a pool without a member) that is tripped or down */
    return pt_balance_choose(req, req->bdef) == PT_OK && req->be != NULL;
}

void pt_upstream_free_pools(struct pt_worker *w)
{
    for (size_t i = 0; w->pools && i < w->npools; i++) {
        struct pt_upool *p = w->pools[i];
        while (p) {
            while (!pt_list_empty(&p->idle))
                pt_upstream_close(pt_container_of(p->idle.next, struct pt_upconn, link));
            pt_h2up_free_pool(p);
            struct pt_upool *next = p->next;
            free(p->key);
            free(p);
            p = next;
        }
    }
    free(w->pools);
    w->pools = NULL;
    w->npools = w->npools_used = 0;
    /* pools outside the table live while a connection does: an HTTP/2 session may be one (its streams'
       users, the client connections, are gone by now) */
    while (!pt_list_empty(&w->upools_transient)) {
        struct pt_upool *p = pt_container_of(w->upools_transient.next, struct pt_upool, tlink);
        pt_list_del(&p->tlink);
        pt_list_init(&p->tlink);
        p->nconns++; /* held while its sessions go */
        pt_h2up_free_pool(p);
        pt_upstream_pool_unref(p);
    }
}

#define DISTRUST_US (60 * 1000000ull)

/* The backend sent n bytes that no request asked for: this connection is
   done, and the backend's connections are not reused for a while, so a
   backend that gets its framing wrong costs connections, never a response
   handed to the wrong client. */
static void up_distrust(struct pt_upconn *u, size_t n, const char *when)
{
    u->broken = true;
    if (pt_clock_now_us() >= u->pool->distrust_until)
        pt_warn("backend %s sent %zu unrequested byte%s %s; its connections are not reused for %llu s",
                u->pool->key, n, n == 1 ? "" : "s", when, (unsigned long long)(DISTRUST_US / 1000000));
    u->pool->distrust_until = pt_clock_now_us() + DISTRUST_US;
}

/* true when nothing is waiting on a pooled connection: no byte and no close
   that the event loop has not delivered yet (a peek at the socket, and at
   the TLS layer's buffer). */
static bool up_quiet(struct pt_upconn *u)
{
    if (u->broken || evbuffer_get_length(u->io->in))
        return false;
    SSL *ssl = pt_io_ssl(u->io);
    if (ssl && SSL_pending(ssl) > 0)
        return false;
    int fd = pt_io_fd(u->io);
    if (fd < 0)
        return false;
    char b;
    ssize_t r = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r == 0)
        return false; /* closed by the backend */
    if (r > 0) {
        if (!ssl) /* TLS may carry records of its own (tickets, alerts) */
            up_distrust(u, 1, "to an idle connection");
        return false;
    }
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

/* The TLS session towards an https target: a backend entity's own context (its certificate, or no
   chain check) unless a policy's certificate is presented; the name is checked only on a checked chain. */
static SSL *backend_ssl(struct pt_req *req, const struct pt_backend *be, const struct pt_clientcert *cc)
{
    struct pt_gen *g = req_gen(req);
    const struct pt_backdef *d = be->def;
    SSL_CTX *ctx = cc ? cc->ctx : d && d->tls ? d->tls : g->client_tls;
    bool verify_name = g->conf->upstream.verify && (!d || d->verify_name);
    return ctx ? pt_tls_client_ssl(ctx, be->url.host, verify_name) : NULL;
}

/* Whether this call goes over HTTP/2: forward-request http-version 2, or 2or1 to an https backend that
   did not choose HTTP/1.1 before.  A WebSocket upgrade and a call through a proxy use HTTP/1.1. */
static bool use_h2(const struct pt_req *req, const struct pt_upool *pool)
{
    if (req->fwd_http2 == PT_FWD_H1 || req->fproxy || req->h.upgrade_ws)
        return false;
    if (req->fwd_http2 == PT_FWD_H2_OR1)
        return req->be->url.https && pool->proto != PT_UPROTO_H1;
    return true;
}

/* A stream on a session of the pool with room, else on a new connection. */
static struct pt_upconn *up_get_h2(struct pt_req *req, struct pt_upool *pool, bool fresh)
{
    struct pt_worker *w = req->c->w;
    const struct pt_backend *be = req->be;
    bool or1 = req->fwd_http2 == PT_FWD_H2_OR1;
    struct pt_h2up *h = fresh ? NULL : pt_h2up_find(pool);
    if (!h) {
        struct pt_io *io = NULL;
        if (be->url.https) {
            SSL *ssl = backend_ssl(req, be, call_cert(req));
            if (ssl && !pt_h2up_alpn(ssl, or1)) {
                SSL_free(ssl);
                ssl = NULL;
            }
            io = ssl ? pt_io_tls_connect(w->base, (struct sockaddr *)&be->sa, be->salen, ssl, NULL, NULL)
                     : NULL;
        } else
            io = pt_io_connect(w->base, (struct sockaddr *)&be->sa, be->salen, NULL, NULL);
        if (io)
            h = pt_h2up_new(w, pool, io, or1);
        if (!h) {
            pool->nconns++;
            pt_upstream_pool_unref(pool); /* a pool outside the table goes */
            return NULL;
        }
    }
    struct pt_upconn *u = calloc(1, sizeof(*u));
    if (u && !(u->h2 = pt_h2up_stream(h, up_cb, u, &u->io))) {
        free(u);
        u = NULL;
    }
    if (!u)
        return NULL; /* an idle session closes after its idle timeout */
    pt_list_init(&u->link);
    pt_timer_init(&u->timer, up_timer);
    u->w = w;
    u->pool = pool;
    u->req = req;
    u->connected = true; /* the session sends when its connection is up */
    pt_io_read(u->io, true);
    return u;
}

static struct pt_upconn *up_get(struct pt_req *req, bool fresh)
{
    struct pt_worker *w = req->c->w;
    struct pt_backend *be = req->be; /* the API's, or one a policy or a redirect chose */
    const struct pt_fwdproxy *px = req->fproxy;
    const struct pt_clientcert *cc = call_cert(req);
    struct pt_upool *pool = px ? proxy_pool_get(req, w) : pool_get(w, be, cc);
    if (!pool)
        return NULL;
    if (use_h2(req, pool))
        return up_get_h2(req, pool, fresh);
    struct pt_upconn *u;
    while (!fresh && pool->nidle) {
        u = pt_container_of(pool->idle.prev, struct pt_upconn, link);
        pt_list_del(&u->link);
        pool->nidle--;
        if (!up_quiet(u)) {
            pt_upstream_close(u);
            continue;
        }
        pt_timer_clear(&u->timer);
        u->reused = true;
        u->interim = 0;
        u->req = req;
        return u;
    }
    u = calloc(1, sizeof(*u));
    if (!u) {
        pool->nconns++;
        pt_upstream_pool_unref(pool);
        return NULL;
    }
    pt_list_init(&u->link);
    pt_timer_init(&u->timer, up_timer);
    u->w = w;
    u->pool = pool;
    u->req = req;
    pool->nconns++;
    if (px) { /* through the proxy: http in absolute form, https through a CONNECT tunnel */
        u->io = pt_io_connect(w->base, (struct sockaddr *)&px->be->sa, px->be->salen, up_cb, u);
        u->tunnel = be->url.https;
    } else if (be->url.https) {
        SSL *ssl = backend_ssl(req, be, cc);
        u->io = ssl ? pt_io_tls_connect(w->base, (struct sockaddr *)&be->sa, be->salen, ssl, up_cb, u) : NULL;
    } else
        u->io = pt_io_connect(w->base, (struct sockaddr *)&be->sa, be->salen, up_cb, u);
    if (!u->io) {
        pt_upstream_pool_unref(pool);
        free(u);
        return NULL;
    }
    pt_io_read(u->io, true);
    pt_timer_set(w, &u->timer, PT_T_CONNECT);
    return u;
}

void pt_upstream_close(struct pt_upconn *u)
{
    if (!pt_list_empty(&u->link)) {
        pt_list_del(&u->link);
        u->pool->nidle--;
    }
    pt_timer_clear(&u->timer);
    pt_io_free(u->io);
    if (u->req && u->req->up == u)
        u->req->up = NULL;
    if (!u->h2) /* a stream: the session counts as the pool's connection */
        pt_upstream_pool_unref(u->pool);
    free(u);
}

/* Gives a backend connection back to its pool, or closes it.  Only a
   connection whose last exchange ended exactly where its framing said, with
   nothing more received, may carry another: any byte beyond would be read
   as the next client's response. */
void pt_upstream_release(struct pt_upconn *u, bool reusable)
{
    struct pt_req *req = u->req;
    if (req)
        req->up = NULL;
    u->req = NULL;
    struct pt_worker *w = u->w;
    int64_t max_idle = req ? req_gen(req)->conf->upstream.max_idle : 0;
    if (u->h2) {
        pt_upstream_close(u); /* the stream ends; its session stays for others */
        return;
    }
    if (reusable && evbuffer_get_length(u->io->in))
        up_distrust(u, evbuffer_get_length(u->io->in), "after its response ended");
    if (!reusable || u->broken || w->draining || u->pool->transient || u->pool->nidle >= max_idle ||
        pt_clock_now_us() < u->pool->distrust_until || evbuffer_get_length(u->io->in) ||
        evbuffer_get_length(u->io->out)) {
        pt_upstream_close(u);
        return;
    }
    memset(&u->scan, 0, sizeof(u->scan));
    pt_list_add_tail(&u->pool->idle, &u->link);
    u->pool->nidle++;
    pt_timer_set(w, &u->timer, PT_T_IDLE);
    pt_io_read(u->io, true); /* an idle connection that speaks or closes is dropped */
}

static bool is_idempotent(int method)
{
    return method == HTTP_GET || method == HTTP_HEAD || method == HTTP_OPTIONS || method == HTTP_PUT ||
           method == HTTP_DELETE;
}

/* The client's values of a forwarding header, in order, each followed by ", "
   (the list our own hop is then appended to). */
static void append_values(struct pt_buf *b, const struct pt_head *h, int kind)
{
    for (int i = 0; i < h->nh; i++) {
        const struct pt_hdr *x = &h->h[i];
        if (x->kind == kind && !x->hop && !x->deleted) {
            pt_buf_str(b, x->value);
            pt_buf_lit(b, ", ");
        }
    }
}

/* true when a backend entity's credentials set header `name` (so the client's is not sent). */
static bool cred_replaces(const struct pt_backdef *d, pt_str name)
{
    if (d->auth_scheme && pt_str_ieq(name, pt_str_c("Authorization")))
        return true;
    for (int i = 0; i < d->nheaders; i++)
        if (pt_str_ieq(name, pt_str_c(d->headers[i].name)))
            return true;
    return false;
}

static int hex_val(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* true when a query parameter's name as sent (percent-encoded; '+' a space when plus_space) is
   `name`, ignoring case (some backends read names so). */
static bool query_name_is(pt_str enc, const char *name, bool plus_space)
{
    size_t i = 0, k = 0, n = strlen(name);
    while (i < enc.len) {
        char c = enc.data[i++];
        if (c == '%' && i + 1 < enc.len && hex_val(enc.data[i]) >= 0 && hex_val(enc.data[i + 1]) >= 0) {
            c = (char)(hex_val(enc.data[i]) * 16 + hex_val(enc.data[i + 1]));
            i += 2;
        } else if (c == '+' && plus_space)
            c = ' ';
        if (k >= n || tolower((unsigned char)c) != tolower((unsigned char)name[k]))
            return false;
        k++;
    }
    return k == n;
}

/* Copies the client's query without the parameters a backend's query credential sets (the
   credential replaces them, as header credentials replace headers: a backend reading the first
   value must not read the client's); true when something was copied. */
static bool client_query_without(struct pt_buf *b, pt_str q, const struct pt_backdef *cred)
{
    bool any = false;
    size_t start = 0;
    while (start < q.len) { /* bounded: each turn moves past one '&' or the end */
        const char *amp = memchr(q.data + start, '&', q.len - start);
        size_t end = amp ? (size_t)(amp - q.data) : q.len;
        pt_str param = {q.data + start, end - start};
        const char *eq = memchr(param.data, '=', param.len);
        pt_str name = {param.data, eq ? (size_t)(eq - param.data) : param.len};
        bool drop = false;
        for (int i = 0; !drop && i < cred->nquery; i++)
            drop = query_name_is(name, cred->query[i].name, false) ||
                   query_name_is(name, cred->query[i].name, true);
        if (!drop && param.len) {
            if (any)
                pt_buf_lit(b, "&");
            pt_buf_str(b, param);
            any = true;
        }
        start = end + 1;
    }
    return any;
}

/* Whether the client said it takes trailers (TE: trailers, RFC 9110 10.1.4). */
static bool client_takes_trailers(const struct pt_head *h)
{
    for (int i = 0; i < h->nh; i++) {
        const struct pt_hdr *x = &h->h[i];
        if (x->kind == PT_H_TE && !x->deleted && pt_str_ieq(x->value, pt_str_c("trailers")))
            return true;
    }
    return false;
}

/* Serialises the request head for the backend. */
static void build_backend_head(struct pt_req *req, struct pt_buf *b)
{
    const struct pt_backend *be = req->be;
    struct pt_conn *c = req->c;
    pt_buf_init(b, req->pool, 512 + req->h.path.len + req->h.nh * 48);
    const struct pt_backdef *cred = be->def; /* its credentials (a pool's member: the member's) */
    /* plain http through a proxy: the head goes to the proxy (absolute form, its credentials); an
       https backend gets it inside the CONNECT tunnel, as any origin server (the proxy's
       credentials went with CONNECT only) */
    bool via_proxy_plain = req->fproxy && !be->url.https;
    pt_buf_str(b, pt_redirect_method(req)); /* a followed redirect's hop may be a GET */
    pt_buf_lit(b, " ");
    if (via_proxy_plain) {
        pt_buf_lit(b, "http://");
        pt_buf_add(b, be->url.authority, strlen(be->url.authority));
    }
    size_t plen = strlen(be->url.path);
    pt_buf_add(b, be->url.path, plen);
    pt_buf_str(b, req->bpath);
    if (plen + req->bpath.len == 0)
        pt_buf_lit(b, "/");
    bool cq = cred && cred->query_text;
    if (req->bquery.len || cq) {
        pt_buf_lit(b, "?");
        bool any = cq ? client_query_without(b, req->bquery, cred) : (pt_buf_str(b, req->bquery), true);
        if (cq) {
            if (any)
                pt_buf_lit(b, "&");
            pt_buf_add(b, cred->query_text, strlen(cred->query_text));
        }
    }
    pt_buf_lit(b, " HTTP/1.1\r\nHost: ");
    /* the backend's authority, unless a policy set Host */
    pt_str host = pt_str_c(be->url.authority);
    for (int i = 0; i < req->h.nh; i++)
        if (req->h.h[i].kind == PT_H_HOST && !req->h.h[i].hop && !req->h.h[i].deleted &&
            !pt_redirect_hides(req, &req->h.h[i]))
            host = req->h.h[i].value;
    pt_buf_str(b, host);
    pt_buf_lit(b, "\r\n");
    const struct pt_upstream_cf *ucf = &req_gen(req)->conf->upstream;
    unsigned fwd = ucf->forwarded;
    pt_str rid = pt_str_c(ucf->request_id_header);
    int nxff = 0, nfwd = 0;
    for (int i = 0; i < req->h.nh; i++) {
        const struct pt_hdr *x = &req->h.h[i];
        if (x->hop || x->deleted || x->kind == PT_H_HOST)
            continue;
        /* headers we set replace the client's (the lists are extended) */
        switch (x->kind) {
        case PT_H_X_FORWARDED_FOR:
            if (fwd & PT_FWD_XFF) {
                nxff++; /* written below, extended */
                continue;
            }
            break;
        case PT_H_FORWARDED:
            if (fwd & PT_FWD_FORWARDED) {
                nfwd++;
                continue;
            }
            break;
        case PT_H_X_FORWARDED_PROTO:
            if (fwd & PT_FWD_XFP)
                continue;
            break;
        case PT_H_X_FORWARDED_HOST:
            if (fwd & PT_FWD_XFH)
                continue;
            break;
        default:
            break;
        }
        if (rid.len && pt_str_ieq(x->name, rid))
            continue;
        /* the client's proxy credentials are for its own hop (the gateway): never passed on, so a
           client cannot speak to the gateway's proxy, or a backend, under an identity it chose */
        if (pt_str_ieq(x->name, pt_str_c("Proxy-Authorization")))
            continue;
        if (PT_UNLIKELY(req->redir != NULL) && pt_redirect_hides(req, x))
            continue; /* a followed redirect's hop: content or credentials it does not carry */
        if (cred && cred->head_text && cred_replaces(cred, x->name))
            continue; /* the backend's credential replaces the client's header */
        if (PT_UNLIKELY(req->otel.on) && pt_otel_header_skip(req, x))
            continue; /* OpenTelemetry (O): ours replaces it */
        pt_buf_str(b, x->name);
        pt_buf_lit(b, ": ");
        pt_buf_str(b, x->value);
        pt_buf_lit(b, "\r\n");
    }
    pt_str ip = pt_str_c(c->peer.ip);
    if (fwd & PT_FWD_XFF) {
        pt_buf_lit(b, "X-Forwarded-For: ");
        if (nxff)
            append_values(b, &req->h, PT_H_X_FORWARDED_FOR);
        pt_buf_str(b, ip);
        pt_buf_lit(b, "\r\n");
    }
    if (fwd & PT_FWD_XFP) {
        if (c->peer.tls)
            pt_buf_lit(b, "X-Forwarded-Proto: https\r\n");
        else
            pt_buf_lit(b, "X-Forwarded-Proto: http\r\n");
    }
    if ((fwd & PT_FWD_XFH) && req->h.host.len) {
        pt_buf_lit(b, "X-Forwarded-Host: ");
        pt_buf_str(b, req->h.host);
        pt_buf_lit(b, "\r\n");
    }
    if (fwd & PT_FWD_FORWARDED) {
        pt_buf_lit(b, "Forwarded: ");
        if (nfwd)
            append_values(b, &req->h, PT_H_FORWARDED);
        pt_buf_lit(b, "for=");
        if (memchr(ip.data, ':', ip.len)) {
            pt_buf_lit(b, "\"[");
            pt_buf_str(b, ip);
            pt_buf_lit(b, "]\"");
        } else
            pt_buf_str(b, ip);
        if (req->h.host.len) {
            pt_buf_lit(b, ";host=\"");
            pt_buf_str(b, req->h.host);
            pt_buf_lit(b, "\"");
        }
        if (c->peer.tls)
            pt_buf_lit(b, ";proto=https\r\n");
        else
            pt_buf_lit(b, ";proto=http\r\n");
    }
    if (rid.len) {
        pt_buf_str(b, rid);
        pt_buf_lit(b, ": ");
        pt_buf_add(b, req->id, req->idn);
        pt_buf_lit(b, "\r\n");
    }
    if (cred && cred->head_text)
        pt_buf_add(b, cred->head_text, strlen(cred->head_text));
    if (via_proxy_plain && req->fproxy->auth.len) {
        pt_buf_lit(b, "Proxy-Authorization: ");
        pt_buf_str(b, req->fproxy->auth);
        pt_buf_lit(b, "\r\n");
    }
    pt_otel_backend_header(req, b); /* OpenTelemetry (O): traceparent */
    /* TE is hop-by-hop, but over HTTP/2 "trailers" is the one value it may have, and says what gRPC
       backends require: that trailers reach the client (they do).  The head may still go over HTTP/1.1
       (2or1, or http://), which wants TE named in Connection (RFC 9110 10.1.4); HTTP/2 drops that field.
       A WebSocket upgrade always goes over HTTP/1.1 and gets no TE. */
    if (req->fwd_http2 != PT_FWD_H1 && !req->h.upgrade_ws && client_takes_trailers(&req->h))
        pt_buf_lit(b, "TE: trailers\r\nConnection: TE\r\n");
    if (req->h.upgrade_ws)
        pt_buf_lit(b, "Connection: upgrade\r\nUpgrade: websocket\r\n");
    if (pt_redirect_no_body(req)) {
        /* a redirect's hop that became a GET: no body, the client's stays for a retry */
    } else if (req->req_body_state != RB_STREAM) {
        /* a body in memory (read for a policy, or replaced by one) */
        size_t n = req->req_body ? evbuffer_get_length(req->req_body) : 0;
        if (n || req->h.body != PT_BODY_NONE || req->h.content_length == 0) {
            pt_buf_lit(b, "Content-Length: ");
            pt_buf_u64(b, n);
            pt_buf_lit(b, "\r\n");
        }
    } else if (req->h.body == PT_BODY_LENGTH || req->h.content_length == 0) {
        pt_buf_lit(b, "Content-Length: ");
        pt_buf_u64(b, (uint64_t)req->h.content_length);
        pt_buf_lit(b, "\r\n");
    } else if (req->h.body == PT_BODY_CHUNKED)
        pt_buf_lit(b, "Transfer-Encoding: chunked\r\n");
    pt_buf_lit(b, "\r\n");
}

/* The request head and a body in memory. */
static void put_request(struct pt_req *req, struct evbuffer *out)
{
    evbuffer_add(out, req->uphead, req->uphead_n);
    if (req->req_body_state != RB_STREAM && req->req_body && evbuffer_get_length(req->req_body) &&
        !pt_redirect_no_body(req)) {
        /* a copy: the body stays for a retry */
        size_t n = evbuffer_get_length(req->req_body);
        evbuffer_add(out, evbuffer_pullup(req->req_body, -1), n);
    }
}

/* CONNECT host:port to the proxy, with its credentials. */
static void connect_head(struct pt_req *req, struct evbuffer *out)
{
    const struct pt_url *t = &req->be->url;
    bool v6 = strchr(t->host, ':') != NULL;
    char hp[300];
    snprintf(hp, sizeof(hp), "%s%s%s:%d", v6 ? "[" : "", t->host, v6 ? "]" : "", t->port);
    evbuffer_add_printf(out, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", hp, hp);
    if (req->fproxy->auth.len)
        evbuffer_add_printf(out, "Proxy-Authorization: %.*s\r\n", (int)req->fproxy->auth.len,
                            req->fproxy->auth.data);
    evbuffer_add(out, "\r\n", 2);
}

/* The proxy's answer to CONNECT: 2xx starts TLS with the backend over the tunnel, then the request
   goes; anything else fails the call (502).  A body or extra bytes before the handshake are refused. */
static void tunnel_read(struct pt_req *req)
{
    struct pt_upconn *u = req->up;
    size_t len;
    struct pt_http_err err = {0};
    int r = pt_http_scan(&u->scan, u->io->in, RESPONSE_HEAD_MAX, RESPONSE_HEAD_MAX, false, &len, &err);
    if (r == 0)
        return;
    struct pt_head h = {0};
    char *head = r > 0 ? pt_pool_alloc(req->pool, len) : NULL;
    if (head) {
        evbuffer_remove(u->io->in, head, len);
        memset(&u->scan, 0, sizeof(u->scan));
        if (!pt_http_parse_response(&h, head, len, req->pool, RESPONSE_HEADERS_MAX, true, &err))
            h.status = 0;
    }
    if (h.status < 200 || h.status > 299 || evbuffer_get_length(u->io->in)) {
        pt_warn("request %.*s: proxy %s refused the tunnel to %s (%d%s)", (int)req->idn, req->id,
                u->pool->key, req->be->url.authority, h.status, h.status ? "" : ": a broken answer");
        u->broken = true;
        pt_respond_backend_failed(req, 502, "BackendConnectionFailure",
                                  "Bad gateway: the proxy did not open a tunnel to the backend");
        return;
    }
    SSL *ssl = backend_ssl(req, req->be, call_cert(req));
    struct pt_io *tls = ssl ? pt_io_tls_over(u->io, ssl, up_cb, u) : NULL;
    if (!tls) {
        if (!ssl)
            pt_io_free(u->io);
        u->io = NULL;
        u->broken = true;
        pt_respond_backend_failed(req, 502, "BackendConnectionFailure",
                                  "Bad gateway: cannot start TLS through the proxy");
        return;
    }
    u->io = tls;
    u->tunnel = false;
    u->connected = false;
    put_request(req, tls->out); /* sent once the handshake is done (PT_IO_CONNECTED) */
    pt_io_read(tls, true);
    pt_timer_set(req->c->w, &u->timer, PT_T_CONNECT);
}

/* Sends the request head (and from then on the body) to a backend connection. */
static bool req_send(struct pt_req *req, bool fresh)
{
    struct pt_upconn *u = up_get(req, fresh);
    if (!u) {
        pt_msg_set_error(req, 502, "forward-request", "BackendConnectionFailure",
                         "Bad gateway: cannot open a backend connection");
        return false;
    }
    req->up = u;
    if (u->tunnel)
        connect_head(req, u->io->out); /* the request waits for the tunnel (tunnel_read) */
    else
        put_request(req, u->io->out);
    if (u->reused || u->connected) {
        pt_io_flush(u->io);
        /* the read timeout runs from the end of the request; a slow upload
           is the client body timer's business */
        if (req->req_done)
            pt_timer_set(req->c->w, &u->timer, PT_T_READ);
    }
    return true;
}

/* forward-request's own timeout: the response head did not come in time. */
static void forward_timeout(pt_call *call, void *arg)
{
    struct pt_req *req = call->req;
    req->fwd_timer = NULL;
    if (req->rh_done || !req->up)
        return;
    pt_warn("request %.*s: backend %s: no response within forward-request's timeout (%u ms)", (int)req->idn,
            req->id, req->up->pool->key, req->fwd_timeout);
    pt_respond_backend_failed(req, 504, "Timeout", "Gateway timeout: the backend did not answer in time");
}

void pt_upstream_timer_stop(struct pt_req *req)
{
    if (req->fwd_timer) {
        pt_pipeline_timer_cancel(req->fwd_timer);
        req->fwd_timer = NULL;
    }
}

/* pt_msg_hooks.backend_close: a policy replaced the backend's response, or a
   retry repeats the call. */
void pt_upstream_close_for(struct pt_req *req)
{
    if (req->up)
        pt_upstream_close(req->up);
    req->up = NULL;
}

pt_status pt_upstream_forward(struct pt_req *req)
{
    struct pt_conn *c = req->c;
    if (req->rh_backend || req->up)
        pt_msg_drop_backend(req); /* a retry: this attempt replaces the last */
    if (req->redirects == 0)
        pt_redirect_restore(req); /* a retry after followed redirects starts where the first call went */
    /* a pool's member, or no call to a backend whose circuit is open (a
       redirect's call goes where the Location said) */
    if (req->bdef && req->redirects == 0 && !pt_upstream_pick(req))
        return PT_ERROR;
    if (req->fproxy && req->be && req->be->url.https && req->req_body_state == RB_STREAM &&
        req->h.body != PT_BODY_NONE) {
        /* the body would reach the proxy before the tunnel and its TLS are up */
        pt_msg_set_error(req, 500, "forward-request", "BackendConnectionFailure",
                         "a request body to an https backend through a proxy must be buffered "
                         "(forward-request buffer-request-body)");
        return PT_ERROR;
    }
    if (!req->be) {
        pt_msg_set_error(req, 500, "forward-request", "BackendConnectionFailure",
                         "No backend is configured for this API");
        return PT_ERROR;
    }
    bool body = req->h.body != PT_BODY_NONE && !pt_redirect_no_body(req);
    if (req->req_body_state == RB_STREAM && body && req->tb0) {
        pt_msg_set_error(req, 500, "forward-request", "BackendConnectionFailure",
                         "the request body was streamed and cannot be sent again (use buffer-request-body)");
        return PT_ERROR;
    }
    unsigned tmo = pt_grpc_deadline_ms(req, req->fwd_timeout); /* followed redirects: what is left of it */
    if (req->redirects && !pt_redirect_time_left(req, &tmo)) {
        pt_msg_set_error(req, 504, "forward-request", "Timeout",
                         "Gateway timeout: the backend did not answer in time");
        return PT_ERROR;
    }
    struct pt_buf b;
    pt_otel_backend_start(req); /* OpenTelemetry (O): the backend call's span */
    build_backend_head(req, &b);
    req->uphead = b.p;
    req->uphead_n = b.n;
    if (PT_UNLIKELY(req->trace != NULL))
        pt_trace_backend_request(req, b.p, b.n);
    req->tb0 = pt_clock_now_us();
    req->tb1 = 0;
    req->backend_status = 0; /* this attempt's answer, if any (not an earlier one's) */
    req->retried = false;
    memset(&req->resp_ch, 0, sizeof(req->resp_ch));
    if (!req_send(req, false)) {
        req->brk_def = NULL; /* a local failure (memory, TLS setup): not the backend's, not counted */
        return PT_ERROR;
    }
    pt_upstream_timer_stop(req);
    if (tmo)
        req->fwd_timer = pt_pipeline_timer_start(&req->ex.call, tmo, forward_timeout, NULL);
    if (req->req_body_state == RB_STREAM && body) {
        c->state = C_BODY;
        pt_conn_send_continue(req);
        pt_conn_req_body(req);
    } else {
        req->req_done = true;
        if (req->up && !pt_io_connecting(req->up->io))
            pt_timer_set(c->w, &req->up->timer, PT_T_READ);
    }
    return PT_AGAIN; /* resumed when the response head is in */
}

void pt_upstream_read(struct pt_req *req)
{
    struct pt_upconn *u = req->up;
    struct pt_conn *c = req->c;
    if (u->tunnel) {
        tunnel_read(req);
        return;
    }
    if (c->state == C_TUNNEL) {
        pt_tunnel_pump(req, false);
        return;
    }
    if (!req->rh_done) {
        pt_timer_set(c->w, &u->timer, PT_T_READ);
        for (;;) {
            size_t len;
            struct pt_http_err err = {0};
            int r =
                pt_http_scan(&u->scan, u->io->in, RESPONSE_HEAD_MAX, RESPONSE_HEAD_MAX, false, &len, &err);
            if (r == 0)
                return;
            if (r > 0) {
                char *head = pt_pool_alloc(req->pool, len);
                if (!head) {             /* malloc refused the arena: the request ends here */
                    req->brk_def = NULL; /* ours, not the backend's: not counted */
                    pt_respond_backend_failed(req, 500, "OutOfMemory", "Internal server error");
                    return;
                }
                evbuffer_remove(u->io->in, head, len);
                memset(&u->scan, 0, sizeof(u->scan));
                if (pt_http_parse_response(&req->rh, head, len, req->pool, RESPONSE_HEADERS_MAX,
                                           req->h.method_id == HTTP_HEAD, &err)) {
                    if (req->rh.body_announced)
                        u->broken = true; /* a body may follow anyway: not for the next exchange */
                    if (req->rh.status >= 100 && req->rh.status < 200 && req->rh.status != 101) {
                        if (++u->interim <= INTERIM_MAX)
                            continue; /* interim response: ours to drop */
                        err.msg = "too many interim (1xx) responses";
                    } else
                        break;
                }
            }
            pt_warn("request %.*s: backend %s sent an invalid response: %s", (int)req->idn, req->id,
                    u->pool->key, err.msg);
            memset(&req->rh, 0, sizeof(req->rh));
            pt_respond_backend_failed(req, 502, "BackendConnectionFailure",
                                      "Bad gateway: invalid response from the backend");
            return;
        }
        pt_upstream_timer_stop(req);
        req->rh_done = true;
        req->rh_backend = true;
        req->backend_status = req->rh.status;
        pt_balance_outcome(req, req->rh.status, NULL); /* the circuit breaker counts it */
        pt_otel_backend_head(req);                     /* OpenTelemetry (O) */
        if (PT_UNLIKELY(req->trace != NULL))
            pt_trace_backend_response(req);
        req->resp_replaced = false;
        req->resp_in = req->rh.body;
        req->resp_left = req->rh.content_length;
        if (req->rh.status == 101) {
            if (!req->h.upgrade_ws) {
                pt_respond_backend_failed(req, 502, "BackendConnectionFailure",
                                          "Bad gateway: unexpected protocol switch");
                return;
            }
            req->ex.done = true; /* a tunnel: policies have nothing more to do */
            pt_tunnel_start(req);
            return;
        }
        if (PT_UNLIKELY(req->fwd_follow)) {
            const char *why;
            if (pt_redirect_follow(req, &why)) {
                /* the redirect's body is not read: its connection goes */
                pt_debug("request %.*s: backend %s: following a %d redirect", (int)req->idn, req->id,
                         u->pool->key, req->rh.status);
                pt_status st = pt_upstream_forward(req);
                if (st != PT_AGAIN)
                    pt_pipeline_resume(req, st);
                return;
            }
            if (why) {
                /* the backend decides how often: a warning a minute per worker, the rest at debug */
                static _Thread_local uint64_t warned_us;
                uint64_t now = pt_clock_now_us();
                if (!warned_us || now - warned_us >= 60 * 1000000ull) {
                    warned_us = now;
                    pt_warn("request %.*s: backend %s: a %d redirect is not followed: %s (more are logged at "
                            "debug level for a minute)",
                            (int)req->idn, req->id, u->pool->key, req->rh.status, why);
                } else
                    pt_debug("request %.*s: backend %s: a %d redirect is not followed: %s", (int)req->idn,
                             req->id, u->pool->key, req->rh.status, why);
            }
        }
        /* the outbound policies run before anything reaches the client */
        pt_io_read(u->io, false);
        pt_timer_clear(&u->timer);
        if (req->fwd_fail_on_status && req->rh.status >= 400) {
            pt_msg_set_error(req, 500, "forward-request", "BackendStatusError",
                             "the backend answered with an error status");
            pt_pipeline_resume(req, PT_ERROR);
            return;
        }
        pt_pipeline_resume(req, PT_OK);
        return;
    }
    if (!req->resp_head_sent && !req->resp_buffering)
        return; /* body bytes wait until the pipeline is done with the head */
    if (req->resp_in != PT_BODY_NONE)
        pt_timer_set(c->w, &u->timer, PT_T_READ);
    pt_respond_body(req);
}

/* The backend connection failed or closed while serving req. */
static void up_failed(struct pt_req *req, int what, const char *msg)
{
    struct pt_upconn *u = req->up;
    struct pt_conn *c = req->c;
    if (c->state == C_TUNNEL) {
        pt_tunnel_end(req);
        return;
    }
    if (req->rh_done && req->resp_in == PT_BODY_EOF && (what & PT_IO_EOF) &&
        (req->resp_head_sent || req->resp_buffering)) {
        if (req->resp_out == OUT_CHUNKED && !req->resp_buffering)
            evbuffer_add(c->io->out, "0\r\n\r\n", 5);
        pt_upstream_close(u);
        pt_respond_body_done(req);
        return;
    }
    if (req->rh_done && !req->resp_head_sent && !req->resp_buffering) {
        /* closed while the outbound policies run: a complete body is kept */
        size_t have = evbuffer_get_length(u->io->in);
        bool complete = (req->resp_in == PT_BODY_EOF && (what & PT_IO_EOF)) || req->resp_in == PT_BODY_NONE ||
                        (req->resp_in == PT_BODY_LENGTH && (int64_t)have >= req->resp_left);
        if (complete) {
            struct evbuffer *rest = evbuffer_new();
            if (req->resp_in == PT_BODY_LENGTH)
                evbuffer_remove_buffer(u->io->in, rest, (size_t)req->resp_left);
            else if (req->resp_in == PT_BODY_EOF)
                evbuffer_add_buffer(rest, u->io->in);
            pt_upstream_close(u);
            req->resp_body = rest;
            req->resp_in = PT_BODY_NONE;
        } else {
            pt_upstream_close(u);
            pt_msg_error_response(req, 502, "Bad gateway: the backend connection failed");
            req->reason = "BackendConnectionFailure";
        }
        return;
    }
    if (!req->rh_done && u->reused && !req->retried && is_idempotent(req->h.method_id) &&
        req->h.body == PT_BODY_NONE && u->scan.off == 0 && evbuffer_get_length(u->io->in) == 0) {
        /* a stale pooled connection: try once more on a fresh one */
        pt_debug("request %.*s: pooled connection to %s failed (%s), retrying", (int)req->idn, req->id,
                 u->pool->key, msg);
        req->retried = true;
        pt_upstream_close(u);
        if (req_send(req, true)) {
            if (!pt_io_connecting(req->up->io))
                pt_timer_set(req->c->w, &req->up->timer, PT_T_READ);
            return;
        }
        pt_respond_backend_failed(req, 502, "BackendConnectionFailure",
                                  "Bad gateway: cannot open a backend connection");
        return;
    }
    pt_warn("request %.*s: backend %s: %s", (int)req->idn, req->id, u->pool->key, msg);
    if (u->io && pt_io_local_error(u->io))
        req->brk_def = NULL; /* out of descriptors or memory here: not the backend's failure */
    pt_respond_backend_failed(req, 502, "BackendConnectionFailure",
                              u->h2 ? pt_pool_printf(req->pool, "Bad gateway: %s", msg)
                                    : "Bad gateway: the backend connection failed");
}

/* The backend chose HTTP/1.1 by ALPN (2or1): the connection carries this exchange as HTTP/1.1. */
static void up_h2_fall_back(struct pt_req *req, struct pt_upconn *u, struct pt_io *conn)
{
    struct pt_io *stream = u->io;
    u->io = conn;
    u->h2 = NULL;
    pt_io_set_cb(conn, up_cb, u);
    pt_io_free(stream);
    pt_io_read(conn, true);
    pt_io_flush(conn);
    if (req->c->state == C_BODY)
        pt_io_want_drain(conn, true); /* an upload waiting for room goes on */
    if (req->req_done)
        pt_timer_set(u->w, &u->timer, PT_T_READ);
}

/* A stream failed: its session's connection, the backend's reset, a timeout. */
static void up_h2_failed(struct pt_req *req, struct pt_upconn *u)
{
    struct pt_io *conn = pt_h2up_fallback(u->h2, u->io);
    if (conn) {
        up_h2_fall_back(req, u, conn);
        return;
    }
    bool timeout = false, refused = false;
    const char *why = pt_h2up_error(u->h2, &timeout, &refused);
    if (timeout && !req->rh_done) {
        pt_warn("request %.*s: backend %s: %s", (int)req->idn, req->id, u->pool->key, why);
        pt_respond_backend_failed(req, 504, "Timeout",
                                  "Gateway timeout: the backend did not accept the connection in time");
        return;
    }
    /* a stream the backend did not process may go again by the rules of a stale pooled connection */
    u->reused = refused;
    up_failed(req, PT_IO_ERROR, why);
}

/* The backend closed a stream whose response was complete (RST_STREAM NO_ERROR, or its connection went):
   an upload still going has nowhere to go.  When the response is passed on already, the exchange ends now
   (the client's stream is reset with NO_ERROR, RFC 9113 8.1); else pt_respond_body_done ends it.  The
   backend answered: no failure of its. */
static void up_h2_closed(struct pt_req *req)
{
    if (!req->upload_on)
        return;
    req->upload_on = false;
    pt_respond_body_done(req);
}

static void up_cb(struct pt_io *io, int what, void *arg)
{
    struct pt_upconn *u = arg;
    struct pt_req *req = u->req;
    if (what & PT_IO_HUP) {
        /* the backend's close is read in order, when reading resumes */
        if (!req)
            pt_upstream_close(u);
        return;
    }
    if (!req) {
        /* idle in the pool: bytes or a close mean it cannot be reused */
        size_t n = evbuffer_get_length(io->in);
        if ((what & PT_IO_READ) && n && !pt_io_is_tls(io))
            up_distrust(u, n, "to an idle connection");
        pt_upstream_close(u);
        return;
    }
    if (u->h2 && (what & PT_IO_ERROR)) {
        up_h2_failed(req, u);
        return;
    }
    if (u->h2 && (what & PT_IO_EOF)) {
        up_h2_closed(req);
        return;
    }
    if (what & PT_IO_CONNECTED) {
        u->connected = true;
        if (req->req_done || evbuffer_get_length(io->out) > HIGH_WATER)
            pt_timer_set(u->w, &u->timer, PT_T_READ);
        else
            pt_timer_clear(&u->timer);
        pt_io_flush(io);
        return;
    }
    if (what & PT_IO_READ) {
        pt_upstream_read(req);
        return;
    }
    if (what & PT_IO_DRAINED) {
        struct pt_conn *c = req->c;
        if (c->state == C_BODY) {
            pt_timer_clear(&u->timer);
            pt_io_read(c->io, true);
            pt_timer_set(c->w, &c->timer, PT_T_BODY);
            pt_conn_req_body(req);
        } else if (c->state == C_TUNNEL) {
            if (c->peer_done) /* the client ended: pass it on now that its bytes are out */
                pt_tunnel_shut_when_sent(io);
            else
                pt_io_read(c->io, true);
        }
        return;
    }
    up_failed(req, what, pt_io_errmsg(io));
}

static void up_timer(struct pt_tnode *t, int kind)
{
    struct pt_upconn *u = pt_container_of(t, struct pt_upconn, timer);
    struct pt_req *req = u->req;
    if (!req) {
        pt_upstream_close(u);
        return;
    }
    pt_warn("request %.*s: backend %s: %s timed out", (int)req->idn, req->id, u->pool->key,
            kind == PT_T_CONNECT ? "connect" : "read");
    pt_respond_backend_failed(req, 504, "Timeout",
                              kind == PT_T_CONNECT
                                  ? "Gateway timeout: the backend did not accept the connection in time"
                                  : "Gateway timeout: the backend did not answer in time");
}
