/*
 * pt_proxy -- one client connection, its requests, and the backend side.
 *
 * A client connection moves through these states:
 *
 *   HEAD    reading a request head (pt_http_scan, then parse and checks)
 *   BODY    streaming the request body to the backend, re-framed
 *   WAIT    request sent; the response streams back; reading is paused so
 *           pipelined requests wait in the input buffer, in order
 *   TUNNEL  after a WebSocket 101: bytes both ways, nothing parsed
 *   CLOSING the last response is being written out
 *   LINGER  written; our side is shut, we read and drop what the client
 *           still sends so that closing does not reset the connection
 *
 * A request goes: route -> subscription key -> backend head -> body ->
 * response head -> response body -> access-log line.  Bodies are moved
 * between evbuffers (no copies for Content-Length bodies) and never held
 * whole: when the receiving side has more than HIGH_WATER bytes waiting,
 * the sending side stops being read until the receiver drains.
 *
 * Lifetimes: a connection is freed only from an I/O callback or a timer,
 * never from inside the parsing loop, so code that finishes a request can
 * always return to its caller.  A backend connection belongs to a request
 * while in use and to its pool (per worker, per backend address) while idle.
 */
#include "proxy/pt_req.h"
#include "base/pt_log.h"
#include "base/pt_url.h"
#include "conf/pt_router.h"
#include "event/pt_io.h"
#include "event/pt_tls.h"
#include "http/pt_http.h"
#include "http/pt_msg.h"
#include "lua/pt_lua.h"
#include "policy/pt_corepol.h"
#include "policy/pt_gen.h"
#include "policy/pt_pipeline.h"
#include "proxy/pt_worker.h"

#include <arpa/inet.h>
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

#define HIGH_WATER (256 * 1024)
#define RESPONSE_HEAD_MAX (64 * 1024)
#define RESPONSE_HEADERS_MAX 256
#define FREE_REQS_MAX 256
#define INTERIM_MAX 16 /* 1xx responses before the final one */

static void conn_cb(struct pt_io *io, int what, void *arg);
static void conn_timer(struct pt_tnode *t, int kind);
static void conn_heads(struct pt_conn *c);
static void conn_free(struct pt_conn *c);
static void conn_close_soon(struct pt_conn *c);
static void up_cb(struct pt_io *io, int what, void *arg);
static void up_timer(struct pt_tnode *t, int kind);
static void up_close(struct pt_upconn *u);
static void req_body(struct pt_req *req);
static void req_error(struct pt_req *req, int status, const char *reason, const char *message);
static void req_finish(struct pt_req *req);
static void resp_read(struct pt_req *req);

/* -------------------------------------------------------------- requests */

static struct pt_req *req_new(struct pt_conn *c)
{
    struct pt_worker *w = c->w;
    struct pt_req *req = w->free_reqs;
    if (req) {
        w->free_reqs = req->next_free;
        w->nfree_reqs--;
    } else {
        req = malloc(sizeof(*req));
        if (!req)
            return NULL;
        req->pool = pt_pool_new(8192);
        if (!req->pool) {
            free(req);
            return NULL;
        }
    }
    struct pt_pool *pool = req->pool;
    memset(req, 0, sizeof(*req));
    req->pool = pool;
    req->c = c;
    req->peer = &c->peer;
    req->wg = pt_worker_gen_acquire(w);
    req->t0 = pt_now_us();
    req->wall0 = pt_wall_ms();
    req->status = 0;
    return req;
}

static void req_free(struct pt_req *req)
{
    struct pt_worker *w = req->c->w;
    pt_exec_cleanup(req);
    if (req->req_body)
        evbuffer_free(req->req_body);
    if (req->resp_body)
        evbuffer_free(req->resp_body);
    if (req->c->req == req)
        req->c->req = NULL;
    pt_worker_gen_release(w, req->wg);
    if (w->nfree_reqs < FREE_REQS_MAX) {
        pt_pool_reset(req->pool);
        req->next_free = w->free_reqs;
        w->free_reqs = req;
        w->nfree_reqs++;
    } else {
        pt_pool_free(req->pool);
        free(req);
    }
}

/* A request id: the client's one (upstream.requestIdHeader) when it is
   sane, else a random UUID. */
static void req_set_id(struct pt_req *req)
{
    pt_str name = pt_str_c(req_gen(req)->conf->upstream.request_id_header);
    for (int i = 0; i < req->h.nh && name.n; i++) {
        struct pt_hdr *x = &req->h.h[i];
        if (!pt_str_ieq(x->name, name))
            continue;
        pt_str v = x->value;
        bool ok = v.n > 0 && v.n < sizeof(req->id);
        for (size_t k = 0; ok && k < v.n; k++) {
            char ch = v.p[k];
            ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '-' || ch == '_' || ch == '.' || ch == ':';
        }
        if (ok) {
            memcpy(req->id, v.p, v.n);
            req->idn = v.n;
            return;
        }
        break;
    }
    uint64_t *s = req->c->w->rng;
    uint64_t a = s[0], b = s[1];
    /* xorshift128+ twice: 128 random bits */
    uint64_t r[2];
    for (int k = 0; k < 2; k++) {
        uint64_t x = a, y = b;
        a = y;
        x ^= x << 23;
        b = x ^ y ^ (x >> 17) ^ (y >> 26);
        r[k] = b + y;
    }
    s[0] = a;
    s[1] = b;
    unsigned char u[16];
    memcpy(u, r, 16);
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x40);
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);
    static const char hx[] = "0123456789abcdef";
    size_t o = 0;
    for (int k = 0; k < 16; k++) {
        if (k == 4 || k == 6 || k == 8 || k == 10)
            req->id[o++] = '-';
        req->id[o++] = hx[u[k] >> 4];
        req->id[o++] = hx[u[k] & 15];
    }
    req->idn = o;
}

/* ------------------------------------------------------------ access log */

static void log_num_ms(struct pt_buf *b, uint64_t us)
{
    pt_buf_u64(b, us / 1000);
    char frac[4] = {'.', (char)('0' + (us / 100) % 10), (char)('0' + (us / 10) % 10), (char)('0' + us % 10)};
    pt_buf_add(b, frac, 4);
}

static void log_str_field(struct pt_buf *b, const char *name, pt_str v)
{
    pt_buf_add(b, ",\"", 2);
    pt_buf_add(b, name, strlen(name));
    pt_buf_add(b, "\":\"", 3);
    pt_buf_json(b, v);
    pt_buf_add(b, "\"", 1);
}

/* "clientCertificate": {"subject", "issuer", "verify"} when the client
   presented one ("verify": "ok" or why it does not verify against clientCa). */
static void log_client_cert(struct pt_buf *b, struct pt_conn *c)
{
    SSL *ssl = pt_io_ssl(c->io);
    X509 *x = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    if (!x)
        return;
    char subject[512], issuer[512];
    X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
    X509_NAME_oneline(X509_get_issuer_name(x), issuer, sizeof(issuer));
    long v = SSL_get_verify_result(ssl);
    pt_buf_lit(b, ",\"clientCertificate\":{\"subject\":\"");
    pt_buf_json(b, pt_str_c(subject));
    pt_buf_lit(b, "\",\"issuer\":\"");
    pt_buf_json(b, pt_str_c(issuer));
    pt_buf_lit(b, "\",\"verify\":\"");
    pt_buf_json(b, pt_str_c(v == X509_V_OK ? "ok" : X509_verify_cert_error_string(v)));
    pt_buf_lit(b, "\"}");
}

/* One key[=value] item of a query string. */
struct qitem {
    pt_str item, key, value;
    bool has_value;
};

/* Takes the next item off the front of q; false when none is left. */
static bool query_next(pt_str *q, struct qitem *it)
{
    if (!q->n)
        return false;
    const char *amp = memchr(q->p, '&', q->n);
    size_t len = amp ? (size_t)(amp - q->p) : q->n;
    const char *eq = memchr(q->p, '=', len);
    it->item = (pt_str){q->p, len};
    it->key = (pt_str){q->p, eq ? (size_t)(eq - q->p) : len};
    it->has_value = eq != NULL;
    it->value = eq ? (pt_str){eq + 1, len - it->key.n - 1} : PT_NULL_STR;
    q->p += amp ? len + 1 : len;
    q->n -= amp ? len + 1 : len;
    return true;
}

/* Is this query parameter one whose value the access log must not hold:
   the subscription key (the API's subscriptionKeyParameterNames.query,
   "subscription-key" before an API is known) or one the API lists in
   secretQueryParameters? */
static bool secret_param(const struct pt_req *req, pt_str k)
{
    if (pt_str_eq(k, pt_str_c(req->api ? req->api->cf->key_query : "subscription-key")))
        return true;
    for (int i = 0; req->api && i < req->api->cf->secret_query.n; i++)
        if (pt_str_eq(k, pt_str_c(req->api->cf->secret_query.v[i])))
            return true;
    return false;
}

/* The query for the access log, secret values written as REDACTED: logs
   travel further than keys may. */
static pt_str redact_query(struct pt_req *req)
{
    pt_str q = req->h.query;
    struct pt_buf b;
    pt_buf_init(&b, req->pool, q.n + 16);
    bool changed = false, first = true;
    struct qitem it;
    while (query_next(&q, &it)) {
        if (!first)
            pt_buf_lit(&b, "&");
        first = false;
        if (it.has_value && secret_param(req, it.key)) {
            pt_buf_str(&b, it.key);
            pt_buf_lit(&b, "=REDACTED");
            changed = true;
        } else
            pt_buf_str(&b, it.item);
    }
    return changed ? (pt_str){b.p, b.n} : req->h.query;
}

static void req_log(struct pt_req *req)
{
    /* plugins' end-of-request work (counters, concurrency slots) first */
    for (struct pt_hook *h = req->end_hooks; h; h = h->next)
        h->end(h->arg, req->status, req->bytes_in, req->bytes_out);
    req->end_hooks = NULL;
    struct pt_worker *w = req->c->w;
    if (pt_access_fd < 0)
        return;
    uint64_t now = pt_now_us();
    uint64_t wall = pt_wall_ms();
    if (wall / 1000 != w->tsec) {
        w->tsec = wall / 1000;
        pt_format_time(w->tstr, wall);
    }
    struct pt_buf b;
    pt_buf_init(&b, req->pool, 512);
    pt_buf_lit(&b, "{\"time\":\"");
    pt_buf_add(&b, w->tstr, 20); /* "YYYY-MM-DDTHH:MM:SS." */
    char ms[4] = {(char)('0' + (wall / 100) % 10), (char)('0' + (wall / 10) % 10), (char)('0' + wall % 10), 'Z'};
    pt_buf_add(&b, ms, 4);
    pt_buf_lit(&b, "\"");
    log_str_field(&b, "requestId", (pt_str){req->id, req->idn});
    log_str_field(&b, "clientIp", pt_str_c(req->c->peer.ip));
    log_str_field(&b, "method", req->h.method);
    log_str_field(&b, "path", req->h.path);
    if (req->h.query.n)
        log_str_field(&b, "query", redact_query(req));
    if (req->api)
        log_str_field(&b, "api", pt_str_c(req->api->cf->id));
    if (req->op)
        log_str_field(&b, "operation", pt_str_c(req->op->cf->id));
    if (req->product)
        log_str_field(&b, "product", pt_str_c(req->product->cf->id));
    if (req->sub) {
        log_str_field(&b, "subscription", pt_str_c(req->sub->cf->id));
        if (req->sub->owner)
            log_str_field(&b, "user", pt_str_c(req->sub->owner->cf->id));
    }
    if (req->c->peer.tls)
        log_client_cert(&b, req->c);
    pt_buf_lit(&b, ",\"status\":");
    pt_buf_u64(&b, (uint64_t)req->status);
    if (req->backend_status) {
        pt_buf_lit(&b, ",\"backendStatus\":");
        pt_buf_u64(&b, (uint64_t)req->backend_status);
    }
    pt_buf_lit(&b, ",\"bytesIn\":");
    pt_buf_u64(&b, req->bytes_in);
    pt_buf_lit(&b, ",\"bytesOut\":");
    pt_buf_u64(&b, req->bytes_out);
    if (req->tb0) {
        pt_buf_lit(&b, ",\"backendTime\":");
        log_num_ms(&b, (req->tb1 ? req->tb1 : now) - req->tb0);
    }
    pt_buf_lit(&b, ",\"totalTime\":");
    log_num_ms(&b, now - req->t0);
    if (req->reason)
        log_str_field(&b, "reason", pt_str_c(req->reason));
    pt_buf_lit(&b, "}");
    pt_worker_access(w, b.p, b.n);
}

/* --------------------------------------------------------- client output */

/* Reason codes recorded for errors of the HTTP layer itself. */
static const char *reason_for(int status)
{
    switch (status) {
    case 400: return "BadRequest";
    case 405: return "MethodNotAllowed";
    case 408: return "RequestTimeout";
    case 413: return "RequestEntityTooLarge";
    case 414: return "UriTooLong";
    case 417: return "ExpectationFailed";
    case 431: return "RequestHeaderFieldsTooLarge";
    case 501: return "NotImplemented";
    case 505: return "HttpVersionNotSupported";
    }
    return "Error";
}

/* Writes a complete JSON error response {"statusCode": N, "message": "..."}. */
static size_t write_error(struct evbuffer *out, struct pt_pool *pool, int status, const char *message,
                          bool head_only, bool close, pt_str idname, pt_str reqid)
{
    struct pt_buf body;
    pt_buf_init(&body, pool, 128);
    pt_msg_error_body(&body, status, message);
    struct pt_buf b;
    pt_buf_init(&b, pool, 256 + body.n);
    pt_buf_lit(&b, "HTTP/1.1 ");
    pt_buf_u64(&b, (uint64_t)status);
    pt_buf_lit(&b, " ");
    pt_buf_add(&b, pt_http_reason(status), strlen(pt_http_reason(status)));
    pt_buf_lit(&b, "\r\nContent-Type: application/json\r\nContent-Length: ");
    pt_buf_u64(&b, body.n);
    if (reqid.n && idname.n) {
        pt_buf_lit(&b, "\r\n");
        pt_buf_str(&b, idname);
        pt_buf_lit(&b, ": ");
        pt_buf_str(&b, reqid);
    }
    if (close)
        pt_buf_lit(&b, "\r\nConnection: close");
    pt_buf_lit(&b, "\r\n\r\n");
    if (!head_only)
        pt_buf_add(&b, body.p, body.n);
    evbuffer_add(out, b.p, b.n);
    return b.n;
}

/* An error before any request object exists (bad head): answer and close. */
static void conn_fail(struct pt_conn *c, int status, const char *msg)
{
    struct pt_req *req = req_new(c);
    if (!req) {
        conn_close_soon(c);
        return;
    }
    c->req = req;
    req->h.method = PT_STR("-");
    req->h.path = PT_STR("-");
    req_set_id(req);
    req->keep = false;
    req_error(req, status, reason_for(status), msg);
}

/* ---------------------------------------------------------- backend pool */

static struct pt_upool *pool_get(struct pt_worker *w, const struct pt_backend *be, const struct pt_clientcert *cc)
{
    if (!w->pools) {
        w->npools = 64;
        w->pools = calloc(w->npools, sizeof(*w->pools));
    }
    /* connections presenting a client certificate are pooled apart */
    char key[600];
    const char *k = be->pool_key;
    uint64_t hash = be->pool_hash;
    if (cc) {
        snprintf(key, sizeof(key), "%s|client-cert-%llu", be->pool_key, (unsigned long long)cc->serial);
        k = key;
        hash = pt_hash(key, strlen(key), false);
    }
    size_t slot = hash & (w->npools - 1);
    for (struct pt_upool *p = w->pools[slot]; p; p = p->next)
        if (p->hash == hash && !strcmp(p->key, k))
            return p;
    struct pt_upool *p = calloc(1, sizeof(*p));
    p->key = strdup(k);
    p->hash = hash;
    pt_list_init(&p->idle);
    p->next = w->pools[slot];
    w->pools[slot] = p;
    return p;
}

void pt_proxy_free_pools(struct pt_worker *w)
{
    for (size_t i = 0; w->pools && i < w->npools; i++) {
        struct pt_upool *p = w->pools[i];
        while (p) {
            while (!pt_list_empty(&p->idle))
                up_close(pt_container_of(p->idle.next, struct pt_upconn, link));
            struct pt_upool *next = p->next;
            free(p->key);
            free(p);
            p = next;
        }
    }
    free(w->pools);
    w->pools = NULL;
}

#define DISTRUST_US (60 * 1000000ull)

/* The backend sent n bytes that no request asked for: this connection is
   done, and the backend's connections are not reused for a while, so a
   backend that gets its framing wrong costs connections, never a response
   handed to the wrong client. */
static void up_distrust(struct pt_upconn *u, size_t n, const char *when)
{
    u->broken = true;
    if (pt_now_us() >= u->pool->distrust_until)
        pt_warn("backend %s sent %zu unrequested byte%s %s; its connections are not reused for %llu s", u->pool->key,
                n, n == 1 ? "" : "s", when, (unsigned long long)(DISTRUST_US / 1000000));
    u->pool->distrust_until = pt_now_us() + DISTRUST_US;
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

static struct pt_upconn *up_get(struct pt_req *req, bool fresh)
{
    struct pt_worker *w = req->c->w;
    struct pt_backend *be = req->api->backend;
    const struct pt_clientcert *cc = be->url.https ? req->client_cert : NULL;
    struct pt_upool *pool = pool_get(w, be, cc);
    struct pt_upconn *u;
    while (!fresh && pool->nidle) {
        u = pt_container_of(pool->idle.prev, struct pt_upconn, link);
        pt_list_del(&u->link);
        pool->nidle--;
        if (!up_quiet(u)) {
            up_close(u);
            continue;
        }
        pt_timer_clear(&u->timer);
        u->reused = true;
        u->interim = 0;
        u->req = req;
        return u;
    }
    u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    pt_list_init(&u->link);
    pt_timer_init(&u->timer, up_timer);
    u->w = w;
    u->pool = pool;
    u->req = req;
    if (be->url.https) {
        struct pt_gen *g = req_gen(req);
        SSL *ssl = pt_tls_client_ssl(cc ? cc->ctx : g->client_tls, be->url.host, g->conf->upstream.verify);
        u->io = ssl ? pt_io_tls_connect(w->base, (struct sockaddr *)&be->sa, be->salen, ssl, up_cb, u) : NULL;
    } else
        u->io = pt_io_connect(w->base, (struct sockaddr *)&be->sa, be->salen, up_cb, u);
    if (!u->io) {
        free(u);
        return NULL;
    }
    pt_io_read(u->io, true);
    pt_timer_set(w, &u->timer, PT_T_CONNECT);
    return u;
}

static void up_close(struct pt_upconn *u)
{
    if (!pt_list_empty(&u->link)) {
        pt_list_del(&u->link);
        u->pool->nidle--;
    }
    pt_timer_clear(&u->timer);
    pt_io_free(u->io);
    if (u->req && u->req->up == u)
        u->req->up = NULL;
    free(u);
}

/* Gives a backend connection back to its pool, or closes it.  Only a
   connection whose last exchange ended exactly where its framing said, with
   nothing more received, may carry another: any byte beyond would be read
   as the next client's response. */
static void up_release(struct pt_upconn *u, bool reusable)
{
    struct pt_req *req = u->req;
    if (req)
        req->up = NULL;
    u->req = NULL;
    struct pt_worker *w = u->w;
    int64_t max_idle = req ? req_gen(req)->conf->upstream.max_idle : 0;
    if (reusable && evbuffer_get_length(u->io->in))
        up_distrust(u, evbuffer_get_length(u->io->in), "after its response ended");
    if (!reusable || u->broken || w->draining || u->pool->nidle >= max_idle ||
        pt_now_us() < u->pool->distrust_until || evbuffer_get_length(u->io->in) ||
        evbuffer_get_length(u->io->out)) {
        up_close(u);
        return;
    }
    memset(&u->scan, 0, sizeof(u->scan));
    pt_list_add_tail(&u->pool->idle, &u->link);
    u->pool->nidle++;
    pt_timer_set(w, &u->timer, PT_T_IDLE);
    pt_io_read(u->io, true); /* an idle connection that speaks or closes is dropped */
}

/* -------------------------------------------------------- request: start */

static bool is_idempotent(int method)
{
    return method == HTTP_GET || method == HTTP_HEAD || method == HTTP_OPTIONS || method == HTTP_PUT ||
           method == HTTP_DELETE;
}

/* Finds a query parameter's raw value. */
static bool query_param(pt_str q, pt_str name, pt_str *value)
{
    struct qitem it;
    while (query_next(&q, &it))
        if (pt_str_eq(it.key, name)) {
            *value = it.value;
            return true;
        }
    return false;
}

/*
 * The access decision, as APIM makes it.  A key (the API's header, else its
 * query parameter) must belong to an active subscription whose scope is all
 * APIs, this API, or a product holding this API (that product is then the
 * request's context); anything else is SubscriptionKeyInvalid.  Without a
 * key, an API in an open product runs in that product's context, an API
 * that does not require a subscription runs without one, and otherwise the
 * answer is SubscriptionKeyNotFound.  Returns false after answering.
 */
static bool check_subscription(struct pt_req *req)
{
    const struct pt_apidef *api = req->api;
    const struct pt_api_cf *ac = api->cf;
    struct pt_hdr *hk = pt_head_get(&req->h, pt_str_c(ac->key_header));
    pt_str key = PT_NULL_STR;
    bool present = false;
    if (hk) {
        key = hk->value;
        present = true;
    } else
        present = query_param(req->h.query, pt_str_c(ac->key_query), &key);
    if (present) {
        const struct pt_subscription *s = pt_gen_find_key(req_gen(req), key);
        /* a blocked or deleted owner cannot call APIs */
        bool ok = s && s->cf->state == PT_SUB_ACTIVE && (!s->owner || s->owner->cf->state == 0) &&
                  (!s->cf->ends_ms || (int64_t)pt_wall_ms() < s->cf->ends_ms); /* expired as APIM */
        if (ok) {
            switch (s->cf->scope_kind) {
            case PT_SUB_ALL_APIS:
                break;
            case PT_SUB_API:
                ok = s->api == api;
                break;
            case PT_SUB_PRODUCT:
                ok = s->product && pt_product_has_api(s->product, api);
                if (ok)
                    req->product = s->product;
                break;
            }
        }
        if (!ok) {
            req->product = NULL;
            req_error(req, 401, "SubscriptionKeyInvalid",
                      "Access denied due to invalid subscription key. Make sure to provide a valid key for an "
                      "active subscription.");
            return false;
        }
        req->sub = s;
        req->key = key;
        return true;
    }
    if (api->open_product) {
        req->product = api->open_product;
        return true;
    }
    if (!ac->subscription_required)
        return true;
    req_error(req, 401, "SubscriptionKeyNotFound",
              "Access denied due to missing subscription key. Make sure to include subscription key when making "
              "requests to an API.");
    return false;
}

/*
 * The API answering at this suffix is one of several versions told apart
 * by a query parameter or a header (the version set's names): picks the
 * one asked for (no version: the one without a version, the "original")
 * and matches the operation within it.
 */
static enum pt_route_result match_version(struct pt_req *req)
{
    const struct pt_apidef *first = req->m.api;
    const struct pt_versionset_cf *vs = first->vset;
    pt_str want = PT_NULL_STR;
    bool given;
    if (vs->scheme == 1)
        given = query_param(req->h.query, pt_str_c(vs->query_name), &want);
    else {
        struct pt_hdr *h = pt_head_get(&req->h, pt_str_c(vs->header_name));
        given = h != NULL;
        if (h)
            want = h->value;
    }
    for (int i = 0; i < first->nvgroup; i++) {
        const struct pt_apidef *a = first->vgroup[i];
        const char *v = a->cf->api_version ? a->cf->api_version : "";
        if (given ? pt_str_eq(want, pt_str_c(v)) && *v : !*v)
            return pt_router_match_in(req_gen(req)->router, a->ridx, req->h.method, req->m.rest, req->h.query,
                                      &req->m);
    }
    req->m.op = NULL;
    return PT_ROUTE_NO_API;
}

static bool protocol_allowed(const struct pt_api_cf *ac, bool tls)
{
    if (ac->protocols.n == 0)
        return true;
    for (int i = 0; i < ac->protocols.n; i++)
        if (!strcmp(ac->protocols.v[i], tls ? "https" : "http"))
            return true;
    return false;
}

/* The pipeline for the request's operation in its product context. */
static const struct pt_pipeline *pipeline_of(const struct pt_req *req)
{
    if (req->product)
        for (int i = 0; i < req->op->nprod; i++)
            if (req->op->prod[i].product == req->product)
                return &req->op->prod[i].pipeline;
    return &req->op->pipeline;
}

/* The request-body limit: the API's bodySize when it has one, else limits.bodySize. */
static uint64_t body_limit(struct pt_req *req)
{
    uint64_t global = req_gen(req)->conf->limits.body_size;
    uint64_t own = req->api ? req->api->cf->body_size : 0;
    return own && own < global ? own : global;
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

/* Serialises the request head for the backend. */
static void build_backend_head(struct pt_req *req, struct pt_buf *b)
{
    const struct pt_backend *be = req->be;
    struct pt_conn *c = req->c;
    pt_buf_init(b, req->pool, 512 + req->h.path.n + req->h.nh * 48);
    pt_buf_str(b, req->h.method);
    pt_buf_lit(b, " ");
    size_t plen = strlen(be->url.path);
    pt_buf_add(b, be->url.path, plen);
    pt_buf_str(b, req->bpath);
    if (plen + req->bpath.n == 0)
        pt_buf_lit(b, "/");
    if (req->bquery.n) {
        pt_buf_lit(b, "?");
        pt_buf_str(b, req->bquery);
    }
    pt_buf_lit(b, " HTTP/1.1\r\nHost: ");
    /* the backend's authority, unless a policy set Host */
    pt_str host = pt_str_c(be->url.authority);
    for (int i = 0; i < req->h.nh; i++)
        if (req->h.h[i].kind == PT_H_HOST && !req->h.h[i].hop && !req->h.h[i].deleted)
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
        if (rid.n && pt_str_ieq(x->name, rid))
            continue;
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
    if ((fwd & PT_FWD_XFH) && req->h.host.n) {
        pt_buf_lit(b, "X-Forwarded-Host: ");
        pt_buf_str(b, req->h.host);
        pt_buf_lit(b, "\r\n");
    }
    if (fwd & PT_FWD_FORWARDED) {
        pt_buf_lit(b, "Forwarded: ");
        if (nfwd)
            append_values(b, &req->h, PT_H_FORWARDED);
        pt_buf_lit(b, "for=");
        if (memchr(ip.p, ':', ip.n)) {
            pt_buf_lit(b, "\"[");
            pt_buf_str(b, ip);
            pt_buf_lit(b, "]\"");
        } else
            pt_buf_str(b, ip);
        if (req->h.host.n) {
            pt_buf_lit(b, ";host=\"");
            pt_buf_str(b, req->h.host);
            pt_buf_lit(b, "\"");
        }
        if (c->peer.tls)
            pt_buf_lit(b, ";proto=https\r\n");
        else
            pt_buf_lit(b, ";proto=http\r\n");
    }
    if (rid.n) {
        pt_buf_str(b, rid);
        pt_buf_lit(b, ": ");
        pt_buf_add(b, req->id, req->idn);
        pt_buf_lit(b, "\r\n");
    }
    if (req->h.upgrade_ws)
        pt_buf_lit(b, "Connection: upgrade\r\nUpgrade: websocket\r\n");
    if (req->req_body_state != RB_STREAM) {
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
    evbuffer_add(u->io->out, req->uphead, req->uphead_n);
    if (req->req_body_state != RB_STREAM && req->req_body && evbuffer_get_length(req->req_body)) {
        /* a copy: the body stays for a retry */
        size_t n = evbuffer_get_length(req->req_body);
        evbuffer_add(u->io->out, evbuffer_pullup(req->req_body, -1), n);
    }
    if (u->reused || u->connected) {
        pt_io_flush(u->io);
        /* the read timeout runs from the end of the request; a slow upload
           is the client body timer's business */
        if (req->req_done)
            pt_timer_set(req->c->w, &u->timer, PT_T_READ);
    }
    return true;
}

static void req_start(struct pt_conn *c, size_t head_len)
{
    struct pt_worker *w = c->w;
    struct pt_req *req = req_new(c);
    if (!req) {
        pt_err("out of memory for a request");
        conn_close_soon(c);
        return;
    }
    c->req = req;
    c->nreqs++;
    c->state = C_WAIT;
    pt_timer_clear(&c->timer);
    const struct pt_conf *cf = req_gen(req)->conf;
    char *head = pt_pool_alloc(req->pool, head_len);
    evbuffer_remove(c->io->in, head, head_len);
    req->bytes_in = head_len;
    struct pt_http_err err = {0};
    if (!pt_http_parse_request(&req->h, head, head_len, req->pool, (int)cf->limits.header_count,
                               cf->limits.body_size, &err)) {
        if (!req->h.method.n)
            req->h.method = PT_STR("-");
        if (!req->h.path.n)
            req->h.path = req->h.target.n ? req->h.target : PT_STR("-");
        req_set_id(req);
        req->keep = false;
        req_error(req, err.status, reason_for(err.status), err.msg);
        return;
    }
    /* "X_Foo" may reach a backend that reads it as "X-Foo": refused, or dropped, unless allowed */
    for (int i = 0; cf->limits.header_underscores != PT_UNDERSCORES_ALLOW && i < req->h.nh; i++) {
        struct pt_hdr *x = &req->h.h[i];
        if (!memchr(x->name.p, '_', x->name.n))
            continue;
        if (cf->limits.header_underscores == PT_UNDERSCORES_DROP) {
            x->deleted = true;
            continue;
        }
        req_set_id(req);
        req->keep = false;
        req_error(req, 400, "BadRequest", "underscore in a header name (see limits.headerUnderscores)");
        return;
    }
    req_set_id(req);
    req->keep = req->h.keepalive && c->nreqs < (unsigned)cf->limits.requests_per_connection && !w->draining;
    if (req->h.body != PT_BODY_NONE)
        req->req_left = req->h.content_length;
    else
        req->req_done = true;

    pt_str host = pt_host_strip_port(req->h.host);
    enum pt_route_result rr =
        pt_router_match(req_gen(req)->router, host, req->h.method, req->h.path, req->h.query, &req->m);
    if (rr != PT_ROUTE_NO_API && ((const struct pt_apidef *)req->m.api)->vgroup)
        rr = match_version(req);
    if (rr == PT_ROUTE_NO_OPERATION && pt_str_eq(req->h.method, pt_str_c("OPTIONS"))) {
        /* a CORS preflight runs the policies of the operation it asks about */
        struct pt_hdr *acrm = pt_head_get(&req->h, pt_str_c("Access-Control-Request-Method"));
        if (acrm && pt_head_get(&req->h, pt_str_c("Origin")))
            rr = pt_router_match_in(req_gen(req)->router, ((const struct pt_apidef *)req->m.api)->ridx, acrm->value,
                                    req->m.rest, req->h.query, &req->m);
    }
    if (rr != PT_ROUTE_OK) {
        req->api = req->m.api; /* recorded when only the operation was missing */
        req_error(req, 404, "OperationNotFound", "Resource not found");
        return;
    }
    req->op = req->m.op;
    req->api = req->op->api;
    req->preflight_candidate = pt_str_eq(req->h.method, pt_str_c("OPTIONS")) &&
                               strcmp(req->op->cf->method, "OPTIONS") &&
                               pt_head_get(&req->h, pt_str_c("Access-Control-Request-Method")) &&
                               pt_head_get(&req->h, pt_str_c("Origin"));
    if (!protocol_allowed(req->api->cf, c->peer.tls)) {
        /* an API limited to https (or http) does not exist on the other scheme */
        req_error(req, 404, "OperationNotFound", "Resource not found");
        return;
    }
    /* a preflight carries no key: an API answering preflights itself answers it without one */
    if (!(req->preflight_candidate && pt_pipeline_answers_preflight(&req->op->pipeline)) && !check_subscription(req))
        return;
    if (req->h.body == PT_BODY_LENGTH && (uint64_t)req->h.content_length > body_limit(req)) {
        /* the API's own limit, before a byte of the body is read */
        req->keep = false;
        req_error(req, 413, "RequestEntityTooLarge", "request body larger than this API accepts (bodySize)");
        return;
    }
    req->be = req->api->backend;
    req->bpath = req->m.rest;
    req->bquery = req->h.query;
    pt_io_read(c->io, false); /* the body (and pipelined requests) wait their turn */
    pt_exec_start(req, pipeline_of(req));
}

/* Sends 100 Continue once the gateway is about to read a body it announced. */
static void send_continue(struct pt_req *req)
{
    if (req->h.expect_continue) {
        req->h.expect_continue = false;
        evbuffer_add(req->c->io->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        pt_io_flush(req->c->io);
    }
}

static void backend_failed(struct pt_req *req, int status, const char *reason, const char *msg);

/* forward-request's own timeout: the response head did not come in time. */
static void forward_timeout(pt_call *call, void *arg)
{
    struct pt_req *req = call->req;
    req->fwd_timer = NULL;
    if (req->rh_done || !req->up)
        return;
    pt_warn("request %.*s: backend %s: no response within forward-request's timeout (%u ms)", (int)req->idn,
            req->id, req->up->pool->key, req->fwd_timeout);
    backend_failed(req, 504, "Timeout", "Gateway timeout: the backend did not answer in time");
}

static void forward_timer_stop(struct pt_req *req)
{
    if (req->fwd_timer) {
        pt_exec_timer_cancel(req->fwd_timer);
        req->fwd_timer = NULL;
    }
}

/* pt_msg_hooks.backend_close: a policy replaced the backend's response, or a
   retry repeats the call. */
static void backend_close(struct pt_req *req)
{
    if (req->up)
        up_close(req->up);
    req->up = NULL;
}

static pt_status proxy_forward(struct pt_req *req)
{
    struct pt_conn *c = req->c;
    if (req->rh_backend || req->up)
        pt_msg_drop_backend(req); /* a retry: this attempt replaces the last */
    if (!req->be) {
        pt_msg_set_error(req, 500, "forward-request", "BackendConnectionFailure",
                          "No backend is configured for this API");
        return PT_ERROR;
    }
    if (req->req_body_state == RB_STREAM && req->h.body != PT_BODY_NONE && req->tb0) {
        pt_msg_set_error(req, 500, "forward-request", "BackendConnectionFailure",
                          "the request body was streamed and cannot be sent again (use buffer-request-body)");
        return PT_ERROR;
    }
    struct pt_buf b;
    build_backend_head(req, &b);
    req->uphead = b.p;
    req->uphead_n = b.n;
    req->tb0 = pt_now_us();
    req->tb1 = 0;
    req->retried = false;
    memset(&req->resp_ch, 0, sizeof(req->resp_ch));
    if (!req_send(req, false))
        return PT_ERROR;
    forward_timer_stop(req);
    if (req->fwd_timeout)
        req->fwd_timer = pt_exec_timer_start(&req->ex.call, req->fwd_timeout, forward_timeout, NULL);
    if (req->req_body_state == RB_STREAM && req->h.body != PT_BODY_NONE) {
        c->state = C_BODY;
        send_continue(req);
        req_body(req);
    } else {
        req->req_done = true;
        if (req->up && !pt_io_connecting(req->up->io))
            pt_timer_set(c->w, &req->up->timer, PT_T_READ);
    }
    return PT_AGAIN; /* resumed when the response head is in */
}

/* ------------------------------------------------------ request: the body */

/* A body that cannot be read into memory for a policy: the pipeline's error. */
static void buffering_failed(struct pt_req *req, int status, const char *reason, const char *msg)
{
    struct pt_conn *c = req->c;
    req->req_buffering = false;
    req->keep = false;
    c->state = C_WAIT;
    pt_io_read(c->io, false);
    pt_timer_clear(&c->timer);
    pt_msg_set_error(req, status, "gateway", reason, msg);
    pt_exec_body_ready(req, false);
}

/*
 * Moves request body bytes from the client: to the backend (re-framed), or
 * into req->req_body when a policy asked to read it (req_buffering).
 */
static void req_body(struct pt_req *req)
{
    struct pt_conn *c = req->c;
    struct pt_upconn *u = req->up;
    bool buffering = req->req_buffering;
    if (c->state != C_BODY || (!buffering && !u))
        return;
    struct evbuffer *in = c->io->in, *out = buffering ? req->req_body : u->io->out;
    uint64_t limit = buffering ? req_gen(req)->conf->limits.buffer_size : body_limit(req);
    /* timeouts.body: the whole body, however it trickles (bodyIdle bounds each pause) */
    uint32_t whole = req_gen(req)->conf->timeouts.body;
    if (whole && !req->resp_head_sent && pt_now_us() - req->t0 > (uint64_t)whole * 1000) {
        req_error(req, 408, "RequestTimeout", "request body not received in time (timeouts.body)");
        return;
    }
    size_t before = evbuffer_get_length(in);
    bool done = false;
    if (req->h.body == PT_BODY_LENGTH) {
        if (buffering && (uint64_t)req->h.content_length > limit) {
            buffering_failed(req, 413, "RequestEntityTooLarge", "request body too large to be read by a policy");
            return;
        }
        size_t n = (size_t)PT_MIN((int64_t)before, req->req_left);
        if (n) {
            evbuffer_remove_buffer(in, out, n);
            req->req_left -= (int64_t)n;
        }
        done = req->req_left == 0;
    } else {
        for (;;) {
            struct pt_http_err err = {400, NULL};
            ssize_t r = pt_chunked_next(&req->req_ch, in, &err);
            if (r > 0) {
                if (req->req_payload + (uint64_t)r > limit) {
                    req->keep = false;
                    if (buffering)
                        buffering_failed(req, 413, "RequestEntityTooLarge",
                                         "request body too large to be read by a policy");
                    else
                        req_error(req, 413, "RequestEntityTooLarge", "request body larger than the limit");
                    return;
                }
                if (!buffering) {
                    char hdr[24];
                    int hn = snprintf(hdr, sizeof(hdr), "%zx\r\n", (size_t)r);
                    evbuffer_add(out, hdr, (size_t)hn);
                }
                evbuffer_remove_buffer(in, out, (size_t)r);
                if (!buffering)
                    evbuffer_add(out, "\r\n", 2);
                pt_chunked_took(&req->req_ch, (size_t)r);
                req->req_payload += (uint64_t)r;
            } else if (r == PT_CHUNKED_DONE) {
                if (!buffering)
                    evbuffer_add(out, "0\r\n\r\n", 5);
                done = true;
                break;
            } else if (r == PT_CHUNKED_MORE)
                break;
            else {
                req->keep = false;
                if (buffering)
                    buffering_failed(req, 400, "BadRequest", err.msg);
                else
                    req_error(req, 400, "BadRequest", err.msg);
                return;
            }
        }
    }
    req->bytes_in += before - evbuffer_get_length(in);
    if (buffering) {
        if (done) {
            req->req_buffering = false;
            req->req_done = true;
            req->req_body_state = RB_BUFFERED;
            c->state = C_WAIT;
            pt_io_read(c->io, false);
            pt_timer_clear(&c->timer);
            pt_exec_body_ready(req, true);
        } else {
            pt_io_read(c->io, true);
            pt_timer_set(c->w, &c->timer, PT_T_BODY);
        }
        return;
    }
    if (!pt_io_connecting(u->io))
        pt_io_flush(u->io);
    if (done) {
        req->req_done = true;
        c->state = C_WAIT;
        pt_io_read(c->io, false);
        pt_timer_clear(&c->timer);
        if (!pt_io_connecting(u->io))
            pt_timer_set(c->w, &u->timer, PT_T_READ);
        return;
    }
    if (evbuffer_get_length(out) > HIGH_WATER) {
        /* the backend is not taking the body: wait, bounded by its read timeout */
        pt_io_read(c->io, false);
        pt_io_want_drain(u->io, true);
        pt_timer_clear(&c->timer);
        if (!pt_io_connecting(u->io))
            pt_timer_set(c->w, &u->timer, PT_T_READ);
    } else {
        pt_io_read(c->io, true);
        pt_timer_set(c->w, &c->timer, PT_T_BODY);
    }
}

/* -------------------------------------------------- response to the client */

/* The request id goes back to the client in upstream.requestIdHeader
   (unless the response carries that header already): what the client
   quotes is what the access log and the backend saw. */
static void add_request_id(struct pt_buf *b, struct pt_req *req, struct pt_head *rh)
{
    pt_str name = pt_str_c(req_gen(req)->conf->upstream.request_id_header);
    if (!name.n || !req->idn)
        return;
    for (int i = 0; i < rh->nh; i++)
        if (!rh->h[i].deleted && pt_str_ieq(rh->h[i].name, name))
            return;
    pt_buf_str(b, name);
    pt_buf_lit(b, ": ");
    pt_buf_add(b, req->id, req->idn);
    pt_buf_lit(b, "\r\n");
}

/* The status line and the message's own headers (hop-by-hop and deleted ones left out). */
static void head_start(struct pt_buf *b, struct pt_req *req, const struct pt_head *rh)
{
    pt_buf_init(b, req->pool, 256 + (size_t)rh->nh * 48);
    pt_buf_lit(b, "HTTP/1.1 ");
    pt_buf_u64(b, (uint64_t)rh->status);
    pt_buf_lit(b, " ");
    if (rh->reason.n && pt_http_value_ok(rh->reason))
        pt_buf_str(b, rh->reason);
    else {
        const char *r = pt_http_reason(rh->status);
        pt_buf_add(b, r, strlen(r));
    }
    pt_buf_lit(b, "\r\n");
    for (int i = 0; i < rh->nh; i++) {
        const struct pt_hdr *x = &rh->h[i];
        if (x->hop || x->deleted)
            continue;
        pt_buf_str(b, x->name);
        pt_buf_lit(b, ": ");
        pt_buf_str(b, x->value);
        pt_buf_lit(b, "\r\n");
    }
}

/* The request id, the connection's fate, and the blank line. */
static void head_end(struct pt_buf *b, struct pt_req *req, struct pt_head *rh)
{
    add_request_id(b, req, rh);
    if (!req->keep || req->c->w->draining)
        pt_buf_lit(b, "Connection: close\r\n");
    else if (req->h.minor == 0)
        pt_buf_lit(b, "Connection: keep-alive\r\n");
    pt_buf_lit(b, "\r\n");
}

static void write_response_head(struct pt_req *req)
{
    struct pt_conn *c = req->c;
    struct pt_head *rh = &req->rh;
    bool client10 = req->h.minor == 0;
    if (!req->req_done)
        req->keep = false; /* an early answer: the rest of the body will not be read */
    if (rh->body == PT_BODY_NONE)
        req->resp_out = OUT_NONE;
    else if (rh->body == PT_BODY_LENGTH)
        req->resp_out = OUT_LENGTH;
    else if (client10) {
        req->resp_out = OUT_EOF;
        req->keep = false;
    } else
        req->resp_out = OUT_CHUNKED;
    req->resp_in = rh->body;
    req->resp_left = rh->content_length;

    struct pt_buf b;
    head_start(&b, req, rh);
    switch (req->resp_out) {
    case OUT_LENGTH:
        pt_buf_lit(&b, "Content-Length: ");
        pt_buf_u64(&b, (uint64_t)rh->content_length);
        pt_buf_lit(&b, "\r\n");
        break;
    case OUT_CHUNKED:
        pt_buf_lit(&b, "Transfer-Encoding: chunked\r\n");
        break;
    case OUT_NONE:
        /* HEAD and 304 keep the length the backend announced */
        if (rh->content_length >= 0 && rh->status != 204 && rh->status >= 200) {
            pt_buf_lit(&b, "Content-Length: ");
            pt_buf_u64(&b, (uint64_t)rh->content_length);
            pt_buf_lit(&b, "\r\n");
        }
        break;
    case OUT_EOF:
        break;
    }
    head_end(&b, req, rh);
    evbuffer_add(c->io->out, b.p, b.n);
    req->bytes_out += b.n;
    req->resp_head_sent = true;
    req->status = rh->status;
}

/* The backend's body has been read to its end. */
static void resp_done(struct pt_req *req)
{
    struct pt_upconn *u = req->up;
    req->tb1 = pt_now_us();
    if (!req->req_done)
        req->keep = false; /* the backend answered before the whole body came */
    if (u)
        up_release(u, req->rh.keepalive && req->req_done && req->resp_in != PT_BODY_EOF);
    if (req->resp_buffering) {
        /* read for a policy: the pipeline goes on */
        req->resp_buffering = false;
        req->resp_in = PT_BODY_NONE;
        pt_exec_body_ready(req, true);
        return;
    }
    pt_io_flush(req->c->io);
    req_finish(req);
}

/* The backend connection failed while the pipeline waited for it. */
static void backend_failed(struct pt_req *req, int status, const char *reason, const char *msg)
{
    struct pt_conn *c = req->c;
    forward_timer_stop(req);
    if (req->up)
        up_close(req->up);
    if (req->resp_head_sent) {
        req->reason = reason;
        req->keep = false;
        req_finish(req); /* the head is out: an incomplete body is the only signal left */
        return;
    }
    if (!req->req_done) {
        req->keep = false; /* the rest of the request body stays unread */
        c->state = C_WAIT;
        pt_io_read(c->io, false);
        pt_timer_clear(&c->timer);
    }
    if (req->tb0 && !req->tb1)
        req->tb1 = pt_now_us();
    pt_msg_set_error(req, status, "forward-request", reason, msg);
    if (req->resp_buffering) {
        req->resp_buffering = false;
        pt_exec_body_ready(req, false);
        return;
    }
    pt_exec_resume(req, PT_ERROR);
}

/*
 * Moves response body bytes from the backend: to the client (re-framed),
 * or into req->resp_body when a policy asked to read it (resp_buffering).
 */
static void resp_body(struct pt_req *req)
{
    struct pt_conn *c = req->c;
    struct pt_upconn *u = req->up;
    bool buffering = req->resp_buffering;
    struct evbuffer *in = u->io->in, *out = buffering ? req->resp_body : c->io->out;
    bool rechunk = !buffering && req->resp_out == OUT_CHUNKED;
    size_t out_before = evbuffer_get_length(out);
    bool done = false;
    switch (req->resp_in) {
    case PT_BODY_NONE:
        done = true;
        break;
    case PT_BODY_LENGTH: {
        size_t n = (size_t)PT_MIN((int64_t)evbuffer_get_length(in), req->resp_left);
        if (n) {
            evbuffer_remove_buffer(in, out, n);
            req->resp_left -= (int64_t)n;
        }
        done = req->resp_left == 0;
        break;
    }
    case PT_BODY_CHUNKED:
        for (;;) {
            struct pt_http_err err = {502, NULL};
            ssize_t r = pt_chunked_next(&req->resp_ch, in, &err);
            if (r > 0) {
                if (rechunk) {
                    char hdr[24];
                    int hn = snprintf(hdr, sizeof(hdr), "%zx\r\n", (size_t)r);
                    evbuffer_add(out, hdr, (size_t)hn);
                    evbuffer_remove_buffer(in, out, (size_t)r);
                    evbuffer_add(out, "\r\n", 2);
                } else
                    evbuffer_remove_buffer(in, out, (size_t)r);
                pt_chunked_took(&req->resp_ch, (size_t)r);
            } else if (r == PT_CHUNKED_DONE) {
                if (rechunk)
                    evbuffer_add(out, "0\r\n\r\n", 5);
                done = true;
                break;
            } else if (r == PT_CHUNKED_MORE)
                break;
            else {
                pt_warn("backend %s sent a malformed chunked body: %s", u->pool->key, err.msg);
                if (!buffering)
                    req->bytes_out += evbuffer_get_length(out) - out_before;
                pt_io_flush(c->io);
                backend_failed(req, 502, "BackendConnectionFailure", "Bad gateway: invalid response from the backend");
                return;
            }
        }
        break;
    case PT_BODY_EOF: {
        size_t n = evbuffer_get_length(in);
        if (n) {
            if (rechunk) {
                char hdr[24];
                int hn = snprintf(hdr, sizeof(hdr), "%zx\r\n", n);
                evbuffer_add(out, hdr, (size_t)hn);
                evbuffer_remove_buffer(in, out, n);
                evbuffer_add(out, "\r\n", 2);
            } else
                evbuffer_remove_buffer(in, out, n);
        }
        break;
    }
    }
    if (buffering) {
        if (evbuffer_get_length(out) > req_gen(req)->conf->limits.buffer_size) {
            backend_failed(req, 502, "BackendConnectionFailure",
                           "the backend's response is too large to be read by a policy (limits.bufferSize)");
            return;
        }
        if (done)
            resp_done(req);
        return;
    }
    req->bytes_out += evbuffer_get_length(out) - out_before;
    if (done) {
        resp_done(req);
        return;
    }
    pt_io_flush(c->io);
    if (evbuffer_get_length(out) > HIGH_WATER) {
        pt_io_read(u->io, false);
        pt_io_want_drain(c->io, true);
        pt_timer_set(c->w, &c->timer, PT_T_SEND);
    }
}

/* Writes a complete response held in memory (rh + resp_body) and ends the request. */
static void write_full_response(struct pt_req *req)
{
    struct pt_conn *c = req->c;
    struct pt_head *rh = &req->rh;
    if (!req->req_done)
        req->keep = false;
    size_t n = req->resp_body ? evbuffer_get_length(req->resp_body) : 0;
    bool no_body = rh->status < 200 || rh->status == 204 || rh->status == 304;
    struct pt_buf b;
    head_start(&b, req, rh);
    if (!no_body) {
        pt_buf_lit(&b, "Content-Length: ");
        pt_buf_u64(&b, n);
        pt_buf_lit(&b, "\r\n");
    }
    head_end(&b, req, rh);
    evbuffer_add(c->io->out, b.p, b.n);
    req->bytes_out += b.n;
    if (n && !no_body && !pt_str_eq(req->h.method, PT_STR("HEAD"))) {
        evbuffer_add_buffer(c->io->out, req->resp_body);
        req->bytes_out += n;
    }
    req->resp_head_sent = true;
    req->status = rh->status;
    pt_io_flush(c->io);
    req_finish(req);
}

static void proxy_respond(struct pt_req *req)
{
    if (!req->rh_done)
        pt_msg_new_response(req, 200, PT_NULL_STR);
    for (struct pt_hook *h = req->resp_hooks; h; h = h->next) {
        struct pt_call call = {.req = req, .stmt = h->stmt, .name = h->stmt ? h->stmt->name : NULL,
                                .section = PT_SEC_OUTBOUND, .current = PT_MSG_RESPONSE};
        h->resp(&call, h->arg);
    }
    req->resp_hooks = NULL;
    if (req->ex.has_error && !req->reason)
        req->reason = req->ex.err.reason;
    if (req->rh_backend && !req->resp_body && !req->resp_replaced && req->up) {
        /* the backend's body streams to the client */
        struct pt_upconn *u = req->up;
        write_response_head(req);
        pt_io_read(u->io, true);
        if (req->resp_in != PT_BODY_NONE)
            pt_timer_set(req->c->w, &u->timer, PT_T_READ);
        resp_body(req);
        return;
    }
    if (req->up) {
        /* a backend body nobody read: the connection cannot be reused */
        bool whole = req->rh_backend && req->resp_in == PT_BODY_NONE;
        up_release(req->up, whole && req->rh.keepalive && req->req_done);
    }
    write_full_response(req);
}

static void proxy_read_body(struct pt_req *req, pt_msg which)
{
    struct pt_conn *c = req->c;
    if (which == PT_MSG_REQUEST) {
        if (req->req_body_state != RB_STREAM || req->h.body == PT_BODY_NONE) {
            pt_exec_body_ready(req, true);
            return;
        }
        if (!req->req_body)
            req->req_body = evbuffer_new();
        req->req_buffering = true;
        c->state = C_BODY;
        send_continue(req);
        req_body(req);
        return;
    }
    if (!req->rh_backend || req->resp_body || !req->up || req->resp_in == PT_BODY_NONE) {
        pt_exec_body_ready(req, true);
        return;
    }
    req->resp_body = evbuffer_new();
    req->resp_buffering = true;
    pt_io_read(req->up->io, true);
    pt_timer_set(c->w, &req->up->timer, PT_T_READ);
    resp_body(req);
}

static void tunnel_pump(struct pt_req *req, bool from_client)
{
    struct pt_conn *c = req->c;
    struct pt_upconn *u = req->up;
    if (!u)
        return;
    struct pt_io *src = from_client ? c->io : u->io, *dst = from_client ? u->io : c->io;
    size_t n = evbuffer_get_length(src->in);
    if (n) {
        evbuffer_add_buffer(dst->out, src->in);
        if (from_client)
            req->bytes_in += n;
        else
            req->bytes_out += n;
        pt_io_flush(dst);
    }
    if (evbuffer_get_length(dst->out) > HIGH_WATER) {
        pt_io_read(src, false);
        pt_io_want_drain(dst, true);
    }
    pt_timer_set(c->w, &c->timer, PT_T_TUNNEL);
}

static void tunnel_start(struct pt_req *req)
{
    struct pt_conn *c = req->c;
    struct pt_upconn *u = req->up;
    req->keep = false;
    struct pt_buf b;
    pt_buf_init(&b, req->pool, 256);
    pt_buf_lit(&b, "HTTP/1.1 101 Switching Protocols\r\n");
    for (int i = 0; i < req->rh.nh; i++) {
        const struct pt_hdr *x = &req->rh.h[i];
        if (x->hop || x->deleted)
            continue;
        pt_buf_str(&b, x->name);
        pt_buf_lit(&b, ": ");
        pt_buf_str(&b, x->value);
        pt_buf_lit(&b, "\r\n");
    }
    add_request_id(&b, req, &req->rh);
    pt_buf_lit(&b, "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n");
    evbuffer_add(c->io->out, b.p, b.n);
    req->bytes_out += b.n;
    req->resp_head_sent = true;
    req->status = 101;
    req->tb1 = pt_now_us();
    pt_timer_clear(&u->timer);
    c->state = C_TUNNEL;
    pt_io_read(c->io, true);
    pt_io_read(u->io, true);
    tunnel_pump(req, false);
    tunnel_pump(req, true);
    pt_io_flush(c->io); /* the 101 itself: clients wait for it before they speak */
}

/*
 * Half-close in a tunnel (plain TCP on both sides): when the client ends
 * its input (shutdown of its write side), what it sent is delivered, the
 * backend's write half is shut in turn, and the backend's answer goes on
 * reaching the client until the backend ends, or the tunnel is idle too
 * long.  The backend ending ends the tunnel, as in WebSocket a server's
 * close does.  TLS has no half-close of its own: there the client's end
 * ends the tunnel too.
 */
static bool tunnel_can_half_close(const struct pt_req *req)
{
    return req->up && !pt_io_is_tls(req->c->io) && !pt_io_is_tls(req->up->io);
}

static void shut_when_sent(struct pt_io *io)
{
    if (evbuffer_get_length(io->out) == 0) {
        if (shutdown(pt_io_fd(io), SHUT_WR) < 0 && errno != ENOTCONN)
            pt_debug("tunnel: shutdown: %s", strerror(errno));
    } else
        pt_io_want_drain(io, true);
}

/* The client ended its side; true when the tunnel goes on half-closed. */
static bool tunnel_client_done(struct pt_req *req)
{
    struct pt_conn *c = req->c;
    c->peer_done = true;
    if (!tunnel_can_half_close(req))
        return false;
    pt_debug("tunnel: the client ended its side; the backend's goes on");
    tunnel_pump(req, true);
    shut_when_sent(req->up->io);
    pt_io_read(req->up->io, true);
    return true;
}

static void tunnel_end(struct pt_req *req)
{
    struct pt_conn *c = req->c;
    if (req->up) {
        /* whatever the backend still had goes to the client first */
        evbuffer_add_buffer(c->io->out, req->up->io->in);
        up_close(req->up);
    }
    req_finish(req);
}

static void resp_read(struct pt_req *req)
{
    struct pt_upconn *u = req->up;
    struct pt_conn *c = req->c;
    if (c->state == C_TUNNEL) {
        tunnel_pump(req, false);
        return;
    }
    if (!req->rh_done) {
        pt_timer_set(c->w, &u->timer, PT_T_READ);
        for (;;) {
            size_t len;
            struct pt_http_err err = {0};
            int r = pt_http_scan(&u->scan, u->io->in, RESPONSE_HEAD_MAX, RESPONSE_HEAD_MAX, false, &len, &err);
            if (r == 0)
                return;
            if (r > 0) {
                char *head = pt_pool_alloc(req->pool, len);
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
            backend_failed(req, 502, "BackendConnectionFailure", "Bad gateway: invalid response from the backend");
            return;
        }
        forward_timer_stop(req);
        req->rh_done = true;
        req->rh_backend = true;
        req->backend_status = req->rh.status;
        req->resp_replaced = false;
        req->resp_in = req->rh.body;
        req->resp_left = req->rh.content_length;
        if (req->rh.status == 101) {
            if (!req->h.upgrade_ws) {
                backend_failed(req, 502, "BackendConnectionFailure", "Bad gateway: unexpected protocol switch");
                return;
            }
            req->ex.done = true; /* a tunnel: policies have nothing more to do */
            tunnel_start(req);
            return;
        }
        /* the outbound policies run before anything reaches the client */
        pt_io_read(u->io, false);
        pt_timer_clear(&u->timer);
        if (req->fwd_fail_on_status && req->rh.status >= 400) {
            pt_msg_set_error(req, 500, "forward-request", "BackendStatusError",
                              "the backend answered with an error status");
            pt_exec_resume(req, PT_ERROR);
            return;
        }
        pt_exec_resume(req, PT_OK);
        return;
    }
    if (!req->resp_head_sent && !req->resp_buffering)
        return; /* body bytes wait until the pipeline is done with the head */
    if (req->resp_in != PT_BODY_NONE)
        pt_timer_set(c->w, &u->timer, PT_T_READ);
    resp_body(req);
}

/* -------------------------------------------------------- request: finish */

static void req_finish(struct pt_req *req)
{
    struct pt_conn *c = req->c;
    struct pt_worker *w = c->w;
    if (req->up)
        up_close(req->up);
    req_log(req);
    bool keep = req->keep && !w->draining;
    req_free(req);
    if (!keep) {
        conn_close_soon(c);
        return;
    }
    c->state = C_HEAD;
    if (evbuffer_get_length(c->io->out) > HIGH_WATER) {
        /* a client that does not read its responses gets no new ones */
        pt_io_read(c->io, false);
        pt_io_want_drain(c->io, true);
        pt_timer_set(w, &c->timer, PT_T_SEND);
        return;
    }
    pt_io_read(c->io, true);
    pt_timer_set(w, &c->timer, PT_T_KEEPALIVE);
    if (evbuffer_get_length(c->io->in))
        conn_heads(c);
}

/* Answers with an error.  After the response head went out nothing can be
   said any more: the client connection is cut instead. */
static void req_error(struct pt_req *req, int status, const char *reason, const char *message)
{
    struct pt_conn *c = req->c;
    if (req->up) {
        up_close(req->up);
        req->up = NULL;
    }
    req->reason = reason;
    if (req->resp_head_sent) {
        req->keep = false;
        req_finish(req);
        return;
    }
    if (!req->req_done)
        req->keep = false; /* an unread request body makes the connection unusable */
    if (req->tb0 && !req->tb1)
        req->tb1 = pt_now_us();
    req->status = status;
    bool head_only = pt_str_eq(req->h.method, PT_STR("HEAD"));
    req->bytes_out += write_error(c->io->out, req->pool, status, message, head_only,
                                  !req->keep || c->w->draining, pt_str_c(req_gen(req)->conf->upstream.request_id_header),
                                  (pt_str){req->id, req->idn});
    req->resp_head_sent = true;
    pt_io_flush(c->io);
    req_finish(req);
}

/* ------------------------------------------------------ client connection */

void pt_proxy_init(void)
{
    pt_exec_ops = (struct pt_exec_ops){.forward = proxy_forward, .read_body = proxy_read_body, .respond = proxy_respond};
    pt_msg_hooks.backend_close = backend_close;
}

void pt_proxy_accept(struct pt_worker *w, int fd, const struct sockaddr *sa, int socklen, int li)
{
    struct pt_gen *g = w->cur->gen;
    struct pt_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->peer.ip, sizeof(c->peer.ip));
    else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
            inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], c->peer.ip, sizeof(c->peer.ip));
        else
            inet_ntop(AF_INET6, &s6->sin6_addr, c->peer.ip, sizeof(c->peer.ip));
    } else
        strcpy(c->peer.ip, "-");
    c->w = w;
    c->peer.base = w->base;
    c->peer.lua = w->lua;
    c->peer.rng = w->rng;
    c->peer.worker = w->id;
    pt_timer_init(&c->timer, conn_timer);
    if (li < g->ntls && g->tls[li]) {
        SSL *ssl = pt_tls_server_ssl(g->tls[li]);
        c->io = ssl ? pt_io_tls_accept(w->base, fd, ssl, conn_cb, c) : NULL;
        c->peer.tls = true;
    } else
        c->io = pt_io_plain(w->base, fd, conn_cb, c);
    if (!c->io) {
        if (!c->peer.tls)
            close(fd);
        free(c);
        return;
    }
    c->peer.io = c->io;
    pt_list_add_tail(&w->conns, &c->link);
    w->nconns++;
    c->state = C_HEAD;
    pt_io_read(c->io, true);
    pt_timer_set(w, &c->timer, PT_T_HEADER);
}

static void conn_heads(struct pt_conn *c)
{
    if (c->in_heads) {
        c->again = true;
        return;
    }
    c->in_heads = true;
    do {
        c->again = false;
        if (c->state != C_HEAD)
            break;
        struct evbuffer *in = c->io->in;
        if (c->scan.off == 0) {
            pt_http_skip_empty_lines(in);
            if (evbuffer_get_length(in) == 0)
                break;
            if (c->timer.kind != PT_T_HEADER)
                pt_timer_set(c->w, &c->timer, PT_T_HEADER);
        }
        const struct pt_conf *cf = c->w->cur->gen->conf;
        size_t head_len;
        struct pt_http_err err = {0};
        /* the request line holds the URI plus method and version */
        c->scan.max_hline = cf->limits.header_line;
        int r = pt_http_scan(&c->scan, in, cf->limits.header_size, cf->limits.uri_length + 32, true,
                             &head_len, &err);
        if (r == 0)
            break;
        memset(&c->scan, 0, sizeof(c->scan));
        if (r < 0) {
            conn_fail(c, err.status, err.msg);
            break;
        }
        req_start(c, head_len);
    } while (c->again);
    c->in_heads = false;
}

static void conn_read(struct pt_conn *c)
{
    switch (c->state) {
    case C_HEAD:
        conn_heads(c);
        break;
    case C_BODY:
        req_body(c->req);
        break;
    case C_TUNNEL:
        tunnel_pump(c->req, true);
        break;
    case C_LINGER:
        evbuffer_drain(c->io->in, evbuffer_get_length(c->io->in));
        break;
    default:
        break;
    }
}

/* Closes the client connection once everything queued for it is sent. */
static void conn_close_soon(struct pt_conn *c)
{
    c->state = C_CLOSING;
    pt_io_read(c->io, false);
    pt_io_flush(c->io);
    pt_io_want_drain(c->io, true);
    pt_timer_set(c->w, &c->timer, PT_T_SEND);
}

static void conn_free(struct pt_conn *c)
{
    struct pt_worker *w = c->w;
    if (c->req) {
        struct pt_req *req = c->req;
        if (req->up)
            up_close(req->up);
        if (!req->resp_head_sent || req->status == 0) {
            req->status = 499;
            req->reason = req->reason ? req->reason : "ClientConnectionFailure";
        } else if (!req->reason)
            req->reason = "ClientConnectionFailure";
        req_log(req);
        req_free(req);
    }
    pt_timer_clear(&c->timer);
    pt_list_del(&c->link);
    pt_io_free(c->io);
    free(c);
    pt_worker_conn_closed(w);
}

static void conn_drained(struct pt_conn *c)
{
    switch (c->state) {
    case C_CLOSING: {
        int fd = pt_io_fd(c->io);
        if (c->peer.tls || fd < 0 || c->peer_done || shutdown(fd, SHUT_WR) < 0) {
            conn_free(c);
            return;
        }
        /* lingering close: read and drop until the client closes or time runs out */
        c->state = C_LINGER;
        evbuffer_drain(c->io->in, evbuffer_get_length(c->io->in));
        pt_io_read(c->io, true);
        pt_timer_set(c->w, &c->timer, PT_T_LINGER);
        return;
    }
    case C_WAIT:
        /* the client caught up with the response body */
        if (c->req && c->req->up) {
            pt_timer_clear(&c->timer);
            pt_io_read(c->req->up->io, true);
            if (evbuffer_get_length(c->req->up->io->in))
                resp_read(c->req);
        }
        return;
    case C_BODY:
        if (c->req && c->req->up) {
            /* an early response streaming while the body still comes */
            pt_io_read(c->req->up->io, true);
            if (evbuffer_get_length(c->req->up->io->in))
                resp_read(c->req);
        }
        return;
    case C_TUNNEL:
        if (c->req && c->req->up)
            pt_io_read(c->req->up->io, true);
        return;
    case C_HEAD:
        pt_io_read(c->io, true);
        pt_timer_set(c->w, &c->timer, PT_T_KEEPALIVE);
        if (evbuffer_get_length(c->io->in))
            conn_heads(c);
        return;
    default:
        return;
    }
}

/*
 * The client shut its side (or reset) while its request waits (for the
 * backend, for the pipeline, or for the backend to take more of its body):
 * unless bytes are pending (a next request, the rest of a body), it is gone -- the backend exchange
 * is dropped now and the request logged 499 ClientConnectionFailure,
 * instead of holding both connections until the backend's timeout.  Once
 * the response head is out the response goes on (a half-closed client may
 * still read it; one that left makes the writes fail).
 */
static void conn_hup(struct pt_conn *c)
{
    struct pt_req *req = c->req;
    /* C_BODY: reading paused by backpressure mid-upload; an end (or a reset)
       there means the body can never complete */
    if (!req || (c->state != C_WAIT && c->state != C_BODY) || req->resp_head_sent ||
        (c->state == C_WAIT && evbuffer_get_length(c->io->in)))
        return;
    char b;
    ssize_t r = recv(pt_io_fd(c->io), &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r > 0 || (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)))
        return;
    pt_info("request %.*s: the client %s left before the response (%s)", (int)req->idn, req->id, c->peer.ip,
            r == 0 ? "closed" : strerror(errno));
    req->reason = "ClientConnectionFailure";
    conn_free(c);
}

static void conn_cb(struct pt_io *io, int what, void *arg)
{
    struct pt_conn *c = arg;
    if (what & PT_IO_HUP) {
        conn_hup(c);
        return;
    }
    if (what & PT_IO_READ)
        conn_read(c);
    else if (what & PT_IO_DRAINED)
        conn_drained(c);
    else if (what & (PT_IO_EOF | PT_IO_ERROR)) {
        if (c->state == C_TUNNEL && c->req) {
            if (!(what & PT_IO_ERROR) && tunnel_client_done(c->req))
                return;
            tunnel_end(c->req);
            if (c->state == C_CLOSING)
                conn_free(c);
            return;
        }
        if (c->req && what & PT_IO_ERROR)
            pt_info("client %s: %s", c->peer.ip, pt_io_errmsg(io));
        conn_free(c);
    }
}

static void conn_timer(struct pt_tnode *t, int kind)
{
    struct pt_conn *c = pt_container_of(t, struct pt_conn, timer);
    switch (kind) {
    case PT_T_HEADER:
        if (c->state == C_HEAD && (c->scan.off || evbuffer_get_length(c->io->in))) {
            conn_fail(c, 408, "request head not received in time");
            return;
        }
        conn_free(c);
        return;
    case PT_T_BODY:
        if (c->req && c->state == C_BODY && !c->req->resp_head_sent) {
            req_error(c->req, 408, "RequestTimeout", "request body not received in time");
            return;
        }
        conn_free(c);
        return;
    case PT_T_TUNNEL:
        if (c->req)
            c->req->reason = "Timeout";
        conn_free(c);
        return;
    default: /* keep-alive, send, linger */
        conn_free(c);
        return;
    }
}

void pt_proxy_drain(struct pt_worker *w)
{
    struct pt_list *it = w->conns.next;
    while (it != &w->conns) {
        struct pt_conn *c = pt_container_of(it, struct pt_conn, link);
        it = it->next;
        if (c->state == C_HEAD && !c->req && c->scan.off == 0 && evbuffer_get_length(c->io->in) == 0)
            conn_free(c);
    }
}

void pt_proxy_stop(struct pt_worker *w)
{
    while (!pt_list_empty(&w->conns))
        conn_free(pt_container_of(w->conns.next, struct pt_conn, link));
    pt_proxy_free_pools(w);
    while (w->free_reqs) {
        struct pt_req *r = w->free_reqs;
        w->free_reqs = r->next_free;
        pt_pool_free(r->pool);
        free(r);
    }
    w->nfree_reqs = 0;
}

/* ----------------------------------------------------- backend connection */

/* The backend connection failed or closed while serving req. */
static void up_failed(struct pt_req *req, int what, const char *msg)
{
    struct pt_upconn *u = req->up;
    struct pt_conn *c = req->c;
    if (c->state == C_TUNNEL) {
        tunnel_end(req);
        return;
    }
    if (req->rh_done && req->resp_in == PT_BODY_EOF && (what & PT_IO_EOF) &&
        (req->resp_head_sent || req->resp_buffering)) {
        if (req->resp_out == OUT_CHUNKED && !req->resp_buffering)
            evbuffer_add(c->io->out, "0\r\n\r\n", 5);
        up_close(u);
        resp_done(req);
        return;
    }
    if (req->rh_done && !req->resp_head_sent && !req->resp_buffering) {
        /* closed while the outbound policies run: a complete body is kept */
        size_t have = evbuffer_get_length(u->io->in);
        bool complete = (req->resp_in == PT_BODY_EOF && (what & PT_IO_EOF)) ||
                        req->resp_in == PT_BODY_NONE ||
                        (req->resp_in == PT_BODY_LENGTH && (int64_t)have >= req->resp_left);
        if (complete) {
            struct evbuffer *rest = evbuffer_new();
            if (req->resp_in == PT_BODY_LENGTH)
                evbuffer_remove_buffer(u->io->in, rest, (size_t)req->resp_left);
            else if (req->resp_in == PT_BODY_EOF)
                evbuffer_add_buffer(rest, u->io->in);
            up_close(u);
            req->resp_body = rest;
            req->resp_in = PT_BODY_NONE;
        } else {
            up_close(u);
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
        up_close(u);
        if (req_send(req, true)) {
            if (!pt_io_connecting(req->up->io))
                pt_timer_set(req->c->w, &req->up->timer, PT_T_READ);
            return;
        }
        backend_failed(req, 502, "BackendConnectionFailure", "Bad gateway: cannot open a backend connection");
        return;
    }
    pt_warn("request %.*s: backend %s: %s", (int)req->idn, req->id, u->pool->key, msg);
    backend_failed(req, 502, "BackendConnectionFailure", "Bad gateway: the backend connection failed");
}

static void up_cb(struct pt_io *io, int what, void *arg)
{
    struct pt_upconn *u = arg;
    struct pt_req *req = u->req;
    if (what & PT_IO_HUP) {
        /* the backend's close is read in order, when reading resumes */
        if (!req)
            up_close(u);
        return;
    }
    if (!req) {
        /* idle in the pool: bytes or a close mean it cannot be reused */
        size_t n = evbuffer_get_length(io->in);
        if ((what & PT_IO_READ) && n && !pt_io_is_tls(io))
            up_distrust(u, n, "to an idle connection");
        up_close(u);
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
        resp_read(req);
        return;
    }
    if (what & PT_IO_DRAINED) {
        struct pt_conn *c = req->c;
        if (c->state == C_BODY) {
            pt_timer_clear(&u->timer);
            pt_io_read(c->io, true);
            pt_timer_set(c->w, &c->timer, PT_T_BODY);
            req_body(req);
        } else if (c->state == C_TUNNEL) {
            if (c->peer_done) /* the client ended: pass it on now that its bytes are out */
                shut_when_sent(io);
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
        up_close(u);
        return;
    }
    pt_warn("request %.*s: backend %s: %s timed out", (int)req->idn, req->id, u->pool->key,
            kind == PT_T_CONNECT ? "connect" : "read");
    backend_failed(req, 504, "Timeout",
                   kind == PT_T_CONNECT ? "Gateway timeout: the backend did not accept the connection in time"
                                        : "Gateway timeout: the backend did not answer in time");
}
