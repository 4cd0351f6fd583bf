/*
 * pt_hclient -- see pt_hclient.h.
 *
 * A call is a small state machine driven by one libevent event on its
 * socket (re-armed for reading or writing as the step needs) and one timer
 * for the whole exchange:
 *
 *   START -> RESOLVE -> CONNECT -> [PROXY_WRITE -> PROXY_READ] -> [TLS] -> WRITE -> READ
 *                                                                        \-> H2
 *
 * H2 is a call over HTTP/2 (http-version 2, or 2or1 when the server chose
 * h2 by ALPN): an nghttp2 client session on the call's socket, one stream
 * for the call.  The request head is the HTTP/1.1 head the call built,
 * parsed and turned into HEADERS (pt_h2head); the response's HEADERS and
 * DATA are turned back into HTTP/1.1 bytes for the same parser (pt_fetch)
 * the HTTP/1.1 path uses, so the status, the headers, the body cap and the
 * errors are the same whatever the protocol.  Trailers are dropped (the
 * response a policy sees has none).  A session whose stream ended cleanly
 * is kept idle like a keep-alive connection, for any method: a request is
 * sent twice only when it was idempotent or the server refused its stream.
 *
 * Every step is non-blocking; a step that would block arms the event and
 * returns to the loop.  A connection is kept for the next call to the same
 * place only after an idempotent request without a body whose answer was
 * framed exactly (see pool_eligible and pool_put); every other call asks
 * for Connection: close.
 */
#include "http/pt_hclient.h"

#include "base/pt_log.h"
#include "base/pt_pool.h"
#include "base/pt_url.h"
#include "event/pt_metrics.h"
#include "event/pt_tls.h"
#include "http/pt_fetch.h"
#include "http/pt_h2head.h"
#include "http/pt_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

enum { S_START, S_RESOLVE, S_CONNECT, S_PROXY_WRITE, S_PROXY_READ, S_TLS, S_WRITE, S_READ, S_H2, S_DONE };

/* What a step asks for next (STEP_RW: either, HTTP/2 reads and writes at once). */
enum { STEP_AGAIN, STEP_READ, STEP_WRITE, STEP_RW, STEP_END };

#define READS_PER_WAKE 16       /* a fast server cannot keep the loop in one call */
#define HC_ALT_MAX 3            /* addresses of a name tried after the first */
#define REAP_MS 2000            /* how often idle kept connections are checked */
#define DNS_RETRY_MS 10000      /* a worker whose resolver could not be made tries again after this */
#define H2_HEAD_MAX (64 * 1024) /* a response's header list over HTTP/2 (the proxy's head limit) */
#define H2_WINDOW (256 * 1024)  /* what the server may send ahead of the parser, per stream */
#define H2_OUT_MAX (256 * 1024) /* frames waiting for the socket */

struct pt_hclient {
    struct event_base *base;
    struct pt_pool *pool; /* the request's copy, the response head */
    pt_hclient_cb cb;
    void *arg;
    bool detached;
    struct pt_hclient *next, *prev; /* the worker's detached calls (running or queued) */
    int state;
    /* where to */
    struct pt_url u;  /* the target */
    const char *host; /* what is resolved and connected to: the target's host or the proxy's */
    int port;
    bool proxied;           /* through an HTTP proxy */
    const char *proxy_auth; /* "Basic ..." or NULL */
    bool head_method;
    /* bytes */
    struct evbuffer *out, *in;
    struct evbuffer *parked; /* the request, while a CONNECT goes first */
    struct pt_fetch_parser p;
    bool parser_on;
    size_t max_body;
    uint32_t timeout_ms;
    /* the connection */
    int fd;
    SSL_CTX *ctx;
    bool verify;
    bool public_only; /* upstream.sideCallsToPrivateAddresses: false */
    SSL *ssl;
    struct sockaddr_storage sa;
    socklen_t salen;
    /* the resolver's other addresses, tried in turn when one refuses (same deadline) */
    struct sockaddr_storage alt[HC_ALT_MAX];
    socklen_t altlen[HC_ALT_MAX];
    int nalt, ialt;
    struct event ev, timer;
    bool ev_on, timer_on;
    struct evdns_getaddrinfo_request *dns;
    bool resolving;         /* inside evdns_getaddrinfo or waiting for its answer */
    bool pooled;            /* may take and leave a keep-alive connection (pool_eligible) */
    bool reused;            /* the connection came from the pool */
    bool got_bytes;         /* something of the answer arrived */
    bool write_failed;      /* the server stopped reading the request: only its early answer counts */
    char key[320];          /* the pool's key: version asked, scheme, host, port, TLS context */
    struct evbuffer *saved; /* the request, to resend on a fresh connection when a reused one was stale */
    bool cancelled;         /* cancelled while the resolver still holds us */
    bool timed_out;         /* the deadline passed while resolving */
    int dns_err;            /* the resolver failed: PT_HTTP_ERR_* */
    /* HTTP/2 */
    int version;        /* PT_HTTP_VERSION_* asked for */
    bool want_h2;       /* HTTP/2 is offered: not through a proxy, 2or1 only to https */
    bool h2_pooled;     /* may take and leave an idle HTTP/2 session (any method) */
    bool idempotent;    /* pool_eligible: may be sent again when a reused connection failed */
    nghttp2_session *s; /* once HTTP/2 speaks on the connection */
    int32_t sid;        /* the call's stream, 0 until submitted */
    nghttp2_nv *nv;     /* the request head as HTTP/2 fields (h->pool) */
    int nnv;
    pt_bytes body;           /* the request body (h->pool) */
    size_t body_off;         /* how much of it nghttp2 took */
    struct evbuffer *h1req;  /* the HTTP/1.1 request, aside while out carries frames */
    struct evbuffer *resp;   /* the response as HTTP/1.1 bytes, for the parser */
    struct pt_h2_reqhead rh; /* the header block being received */
    bool rh_on, h2_head_done, h2_chunked, h2_ended, h2_closed, h2_refused, h2_goaway;
    const char *h2_why; /* why the stream failed */
    char err[256];
};

/* ------------------------------------------------------ per-worker state */

/* A worker's detached calls and resolver; the worker's thread alone uses it. */
struct hc_worker {
    struct event_base *base;
    struct evdns_base *dns;
    uint64_t dns_failed_ms;     /* the resolver could not be made: tried again only after a while */
    int dns_cancelled;          /* calls released while resolving: the resolver's callback frees each */
    struct pt_hclient *running; /* doubly linked */
    int nrunning;
    struct pt_hclient *qhead, *qtail; /* waiting, oldest first */
    int nqueued;
    /* idle keep-alive connections of finished calls, newest last */
    struct hc_idle {
        char key[320];
        int fd;
        SSL *ssl;
        nghttp2_session *s; /* an HTTP/2 session without a stream, or NULL (HTTP/1.1) */
        uint64_t since_ms;
    } idle[PT_HCLIENT_IDLE_MAX];
    int nidle;
    struct event reap; /* while connections are idle: closes those the peer closed, or too old */
    bool reap_on;
};

static __thread struct hc_worker *tw;

/* node-wide counts for /metrics (side calls are rare: one relaxed add each) */
static _Atomic uint64_t n_sent, n_failed, n_oneway_sent, n_oneway_failed, n_oneway_dropped;
static _Atomic uint64_t n_h2_conns, n_h2_streams;

static struct hc_worker *worker_of(struct event_base *base)
{
    if (!tw) {
        tw = calloc(1, sizeof(*tw));
        if (tw)
            tw->base = base;
    }
    return tw;
}

static void collect(struct pt_metrics_sink *s, void *arg)
{
    (void)arg;
    static const char *const names[] = {"result"};
    const char *h1 = "send-request calls made by the workers' outbound client, by outcome";
    pt_str v[1];
    v[0] = pt_str_c("ok");
    pt_metrics_sink_sample(s, "portico_send_requests_total", h1, PT_METRICS_COUNTER, names, v, 1,
                           (double)atomic_load_explicit(&n_sent, memory_order_relaxed));
    v[0] = pt_str_c("failed");
    pt_metrics_sink_sample(s, "portico_send_requests_total", h1, PT_METRICS_COUNTER, names, v, 1,
                           (double)atomic_load_explicit(&n_failed, memory_order_relaxed));
    const char *h2 =
        "send-one-way-request calls: sent (answered), failed, dropped (the worker's queue was full)";
    v[0] = pt_str_c("sent");
    pt_metrics_sink_sample(s, "portico_send_one_way_requests_total", h2, PT_METRICS_COUNTER, names, v, 1,
                           (double)atomic_load_explicit(&n_oneway_sent, memory_order_relaxed));
    v[0] = pt_str_c("failed");
    pt_metrics_sink_sample(s, "portico_send_one_way_requests_total", h2, PT_METRICS_COUNTER, names, v, 1,
                           (double)atomic_load_explicit(&n_oneway_failed, memory_order_relaxed));
    v[0] = pt_str_c("dropped");
    pt_metrics_sink_sample(s, "portico_send_one_way_requests_total", h2, PT_METRICS_COUNTER, names, v, 1,
                           (double)atomic_load_explicit(&n_oneway_dropped, memory_order_relaxed));
    pt_metrics_sink_value(s, "portico_send_request_http2_connections_total",
                          "HTTP/2 connections opened by send-request and send-one-way-request.",
                          PT_METRICS_COUNTER,
                          (double)atomic_load_explicit(&n_h2_conns, memory_order_relaxed));
    pt_metrics_sink_value(s, "portico_send_request_http2_streams_total",
                          "send-request and send-one-way-request calls sent as HTTP/2 streams.",
                          PT_METRICS_COUNTER,
                          (double)atomic_load_explicit(&n_h2_streams, memory_order_relaxed));
}

void pt_hclient_init(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    pt_metrics_collector(collect, NULL);
}

/* ------------------------------------------------------------ lifetime */

static void hc_free(struct pt_hclient *h)
{
    if (h->ev_on)
        event_del(&h->ev);
    if (h->timer_on)
        event_del(&h->timer);
    if (h->ssl)
        SSL_free(h->ssl);
    if (h->fd >= 0)
        close(h->fd);
    if (h->ctx)
        SSL_CTX_free(h->ctx);
    if (h->parser_on)
        pt_fetch_parser_free(&h->p);
    if (h->out)
        evbuffer_free(h->out);
    if (h->in)
        evbuffer_free(h->in);
    if (h->parked)
        evbuffer_free(h->parked);
    if (h->saved)
        evbuffer_free(h->saved);
    if (h->s)
        nghttp2_session_del(h->s);
    if (h->rh_on)
        pt_h2head_free(&h->rh);
    if (h->h1req)
        evbuffer_free(h->h1req);
    if (h->resp)
        evbuffer_free(h->resp);
    pt_pool_free(h->pool);
    ERR_clear_error(); /* this thread's OpenSSL error queue stays clean for the next user */
    free(h);
}

static void detached_start_next(struct hc_worker *w);

/* Takes a detached call off its worker's lists. */
static void detached_unlink(struct pt_hclient *h)
{
    struct hc_worker *w = tw;
    if (!w)
        return;
    if (h->prev)
        h->prev->next = h->next;
    else if (w->running == h)
        w->running = h->next;
    if (h->next)
        h->next->prev = h->prev;
    h->next = h->prev = NULL;
    w->nrunning--;
}

/* Frees the call (whose resolver is done with it) or leaves that to the resolver's callback. */
static void hc_release(struct pt_hclient *h)
{
    if (h->resolving) {
        if (!h->cancelled && tw)
            tw->dns_cancelled++;
        h->cancelled = true;
        if (h->dns) {
            struct evdns_getaddrinfo_request *d = h->dns;
            h->dns = NULL;
            evdns_getaddrinfo_cancel(d); /* its callback (from the loop) frees h */
        }
        return;
    }
    hc_free(h);
}

/* A failed call is logged (at info), at most once a second per worker, with how many were not. */
static void log_failure(const struct pt_hclient *h)
{
    static __thread uint64_t last_ms, quiet;
    uint64_t now = pt_clock_now_ms();
    if (last_ms && now - last_ms < 1000) {
        quiet++;
        return;
    }
    pt_info("%s to %s:%d failed: %s%s", h->detached ? "send-one-way-request" : "send-request",
            h->u.host ? h->u.host : "?", h->u.port, h->err, quiet ? " (and more failures, not logged)" : "");
    last_ms = now ? now : 1;
    quiet = 0;
}

/* The call is over: tell whoever waits, then release it. */
static void finish(struct pt_hclient *h, int err)
{
    h->state = S_DONE;
    if (err)
        log_failure(h);
    if (h->detached) {
        atomic_fetch_add_explicit(err ? &n_oneway_failed : &n_oneway_sent, 1, memory_order_relaxed);
        detached_unlink(h);
        hc_release(h);
        detached_start_next(tw);
        return;
    }
    atomic_fetch_add_explicit(err ? &n_failed : &n_sent, 1, memory_order_relaxed);
    if (err) {
        h->cb(h->arg, err, h->err, NULL);
        hc_release(h);
        return;
    }
    /* the response as the SDK sees it: slices of the head and the whole body */
    struct pt_http_resp r = {0};
    struct pt_head *hd = &h->p.h;
    r.status = hd->status;
    r.reason = (pt_bytes){hd->reason.data, hd->reason.len};
    pt_bytes *names = pt_pool_calloc(h->pool, sizeof(pt_bytes) * (size_t)(hd->nh + 1));
    pt_bytes *values = pt_pool_calloc(h->pool, sizeof(pt_bytes) * (size_t)(hd->nh + 1));
    if (!names || !values) {
        snprintf(h->err, sizeof(h->err), "out of memory");
        h->cb(h->arg, PT_HTTP_ERR_PROTOCOL, h->err, NULL);
        hc_release(h);
        return;
    }
    for (int i = 0; i < hd->nh; i++) {
        if (hd->h[i].deleted)
            continue;
        names[r.nheaders] = (pt_bytes){hd->h[i].name.data, hd->h[i].name.len};
        values[r.nheaders] = (pt_bytes){hd->h[i].value.data, hd->h[i].value.len};
        r.nheaders++;
    }
    r.header_names = names;
    r.header_values = values;
    size_t blen = evbuffer_get_length(h->p.body);
    r.body = (pt_bytes){blen ? (const char *)evbuffer_pullup(h->p.body, -1) : "", blen};
    h->cb(h->arg, 0, NULL, &r);
    hc_release(h);
}

static int fail(struct pt_hclient *h, int err, const char *fmt, ...) PT_PRINTF(3, 4);
static int fail(struct pt_hclient *h, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->err, sizeof(h->err), fmt, ap);
    va_end(ap);
    finish(h, err);
    return STEP_END;
}

/* ------------------------------------------------------------- bytes */

/* Writes what h->out holds: 1 when all is written, 0 when the socket is
   full (*want says for what to wait), -1 on error (h->err set). */
static int io_write(struct pt_hclient *h, int *want)
{
    while (evbuffer_get_length(h->out) > 0) {
        if (!h->ssl) {
            int n = evbuffer_write(h->out, h->fd);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                    *want = STEP_WRITE;
                    return 0;
                }
                snprintf(h->err, sizeof(h->err), "cannot send: %s", strerror(errno));
                return -1;
            }
            continue;
        }
        size_t len = PT_MIN(evbuffer_get_length(h->out), (size_t)16384);
        unsigned char *p = evbuffer_pullup(h->out, (ssize_t)len);
        int n = SSL_write(h->ssl, p, (int)len);
        if (n > 0) {
            evbuffer_drain(h->out, (size_t)n);
            continue;
        }
        int e = SSL_get_error(h->ssl, n);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            *want = e == SSL_ERROR_WANT_READ ? STEP_READ : STEP_WRITE;
            return 0;
        }
        snprintf(h->err, sizeof(h->err), "cannot send over TLS");
        return -1;
    }
    return 1;
}

/* Reads into h->in: the bytes read (> 0), 0 at the peer's close, -1 when
   nothing is there now (*want set), -2 on error (h->err set). */
static int io_read(struct pt_hclient *h, int *want)
{
    if (!h->ssl) {
        int n = evbuffer_read(h->in, h->fd, 16384);
        if (n > 0)
            return n;
        if (n == 0)
            return 0;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            *want = STEP_READ;
            return -1;
        }
        snprintf(h->err, sizeof(h->err), "cannot read: %s", strerror(errno));
        return -2;
    }
    char buf[16384];
    int n = SSL_read(h->ssl, buf, sizeof(buf));
    if (n > 0) {
        evbuffer_add(h->in, buf, (size_t)n);
        return n;
    }
    int e = SSL_get_error(h->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *want = e == SSL_ERROR_WANT_READ ? STEP_READ : STEP_WRITE;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && n == 0))
        return 0; /* an unclean close still ends the bytes; the parser judges the framing */
    snprintf(h->err, sizeof(h->err), "cannot read over TLS");
    return -2;
}

/* ---------------------------------------------------------- keep-alive */

static bool ieq(pt_bytes b, const char *s)
{
    return b.len == strlen(s) && !strncasecmp(b.data, s, b.len);
}

/* Connections are kept only for requests that can be resent without harm:
   an idempotent method without a body, not through a proxy.  A kept
   connection is used again only when nothing is pending on it (a peek
   finds neither bytes nor a close) and it has been idle less than
   PT_HCLIENT_IDLE_MS; a reused one that fails before any byte of the answer
   arrived is replaced once by a fresh connection. */
static bool pool_eligible(const struct pt_http_req *r, pt_bytes method)
{
    return !r->proxy_url.len && !r->body.len &&
           (ieq(method, "GET") || ieq(method, "HEAD") || ieq(method, "OPTIONS") || ieq(method, "DELETE"));
}

static void idle_close(struct hc_idle *e)
{
    if (e->s)
        nghttp2_session_del(e->s);
    e->s = NULL;
    if (e->ssl)
        SSL_free(e->ssl);
    if (e->fd >= 0)
        close(e->fd);
    e->ssl = NULL;
    e->fd = -1;
}

static void idle_remove(struct hc_worker *w, int i)
{
    w->idle[i] = w->idle[w->nidle - 1];
    w->nidle--;
}

/* Has the peer spoken or closed since the connection went idle?  An HTTP/2 server may speak (a PING, a
   SETTINGS, a GOAWAY): its frames are read when the session is taken (step_h2); only a close counts. */
static bool idle_stale(const struct hc_idle *e, uint64_t now)
{
    if (now - e->since_ms > PT_HCLIENT_IDLE_MS)
        return true;
    if (e->ssl && SSL_pending(e->ssl) > 0)
        return !e->s;
    char b;
    ssize_t r = recv(e->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r > 0 && e->s)
        return false;
    return !(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

/* Every REAP_MS while connections are idle: those the peer closed (or spoke on) or kept too long are
   closed, so they do not sit in CLOSE_WAIT until the worker's next side call. */
static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct hc_worker *w = arg;
    w->reap_on = false;
    uint64_t now = pt_clock_now_ms();
    for (int i = 0, guard = 0; i < w->nidle && guard < PT_HCLIENT_IDLE_MAX; guard++)
        if (idle_stale(&w->idle[i], now)) {
            idle_close(&w->idle[i]);
            idle_remove(w, i);
        } else
            i++;
    if (w->nidle) {
        struct timeval tv = {REAP_MS / 1000, (REAP_MS % 1000) * 1000};
        event_add(&w->reap, &tv);
        w->reap_on = true;
    }
}

/* Takes a kept connection for h's key: true with h->fd (and h->ssl, h->s) set.  An HTTP/1.1 one only
   for a call that may be kept (pooled), an HTTP/2 session only for one that may take it (h2_pooled). */
static bool pool_take(struct pt_hclient *h)
{
    struct hc_worker *w = worker_of(h->base);
    if (!w)
        return false;
    uint64_t now = pt_clock_now_ms();
    for (int i = w->nidle - 1, guard = 0; i >= 0 && guard < PT_HCLIENT_IDLE_MAX; i--, guard++) {
        struct hc_idle *e = &w->idle[i];
        if (strcmp(e->key, h->key) || (e->s ? !h->h2_pooled : !h->pooled))
            continue;
        struct hc_idle got = *e;
        idle_remove(w, i);
        if (idle_stale(&got, now)) {
            idle_close(&got);
            continue;
        }
        h->fd = got.fd;
        h->ssl = got.ssl;
        h->s = got.s;
        if (h->s)
            nghttp2_session_set_user_data(h->s, h);
        return true;
    }
    return false;
}

/* Keeps h's connection (and its HTTP/2 session) idle for the next call to the same place. */
static void idle_keep(struct pt_hclient *h)
{
    struct hc_worker *w = worker_of(h->base);
    if (!w)
        return;
    uint64_t now = pt_clock_now_ms();
    for (int i = 0; i < w->nidle;) /* the expired ones go first */
        if (now - w->idle[i].since_ms > PT_HCLIENT_IDLE_MS) {
            idle_close(&w->idle[i]);
            idle_remove(w, i);
        } else
            i++;
    if (w->nidle == PT_HCLIENT_IDLE_MAX) { /* the oldest makes room */
        int old = 0;
        for (int i = 1; i < w->nidle; i++)
            if (w->idle[i].since_ms < w->idle[old].since_ms)
                old = i;
        idle_close(&w->idle[old]);
        idle_remove(w, old);
    }
    if (h->ev_on) { /* the socket's event goes with the call */
        event_del(&h->ev);
        h->ev_on = false;
    }
    if (!w->reap_on) {
        struct timeval tv = {REAP_MS / 1000, (REAP_MS % 1000) * 1000};
        event_assign(&w->reap, w->base, -1, 0, on_reap, w);
        event_add(&w->reap, &tv);
        w->reap_on = true;
    }
    struct hc_idle *e = &w->idle[w->nidle++];
    snprintf(e->key, sizeof(e->key), "%s", h->key);
    e->fd = h->fd;
    e->ssl = h->ssl;
    e->s = h->s;
    if (e->s)
        nghttp2_session_set_user_data(e->s, NULL); /* nothing runs it while idle; the next call takes it */
    e->since_ms = now;
    h->fd = -1;
    h->ssl = NULL;
    h->s = NULL;
}

/* Keeps h's connection after a complete answer when nothing can be left over. */
static void pool_put(struct pt_hclient *h)
{
    const struct pt_head *hd = &h->p.h;
    if (!h->pooled || !hd->keepalive || hd->body_announced || hd->body == PT_BODY_EOF ||
        evbuffer_get_length(h->in) || evbuffer_get_length(h->out) || h->fd < 0)
        return;
    idle_keep(h);
}

/* Keeps h's HTTP/2 session after its stream ended cleanly, when the session can take another. */
static void h2_pool_put(struct pt_hclient *h)
{
    if (!h->h2_pooled || !h->h2_closed || h->h2_goaway || evbuffer_get_length(h->in) ||
        evbuffer_get_length(h->out) || h->fd < 0 || !nghttp2_session_want_read(h->s) ||
        nghttp2_session_get_next_stream_id(h->s) > (1u << 30))
        return;
    idle_keep(h);
}

static void h2_drop(struct pt_hclient *h);

/* A reused connection failed before any answer: once more on a fresh one.
   true when the call goes on that way.  Over HTTP/2 a request already
   submitted goes again only when it was idempotent or its stream was
   refused (the server did not process it). */
static bool retry_fresh(struct pt_hclient *h)
{
    bool h2 = h->s != NULL;
    if (!h->reused || h->got_bytes || (!h2 && !h->saved))
        return false;
    if (h2 && h->sid && !h->idempotent && !h->h2_refused)
        return false;
    h->reused = false;
    h->pooled = false; /* no second reuse for this call */
    h->h2_pooled = false;
    if (h2)
        h2_drop(h);
    if (h->ev_on) {
        event_del(&h->ev);
        h->ev_on = false;
    }
    if (h->ssl)
        SSL_free(h->ssl);
    h->ssl = NULL;
    close(h->fd);
    h->fd = -1;
    if (h->parser_on)
        pt_fetch_parser_free(&h->p);
    h->parser_on = false;
    evbuffer_drain(h->in, evbuffer_get_length(h->in));
    if (!h2) {
        evbuffer_free(h->out);
        h->out = h->saved;
        h->saved = NULL;
    }
    h->salen = 0;
    h->state = S_RESOLVE;
    return true;
}

/* ------------------------------------------------------------- steps */

static void on_event(evutil_socket_t fd, short what, void *arg);

static bool next_address(struct pt_hclient *h, int e);

static int step_connect_start(struct pt_hclient *h)
{
    /* after the resolver, so a name that resolves (or rebinds) to an internal address is caught too; a
       proxy is the operator's own and resolves the target itself, so nothing is checked through one */
    if (h->public_only && !h->proxied && pt_fetch_address_private((const struct sockaddr *)&h->sa))
        return fail(h, PT_HTTP_ERR_CONNECT,
                    "%s is a loopback, private or link-local address (upstream.sideCallsToPrivateAddresses)",
                    h->host);
    h->fd = socket(h->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (h->fd < 0 && next_address(h, errno)) {
        h->state = S_RESOLVE; /* step_resolve connects to the next one */
        return STEP_AGAIN;
    }
    if (h->fd < 0)
        return fail(h, PT_HTTP_ERR_CONNECT, "cannot open a socket: %s", strerror(errno));
    int one = 1;
    setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    h->state = S_CONNECT;
    if (connect(h->fd, (struct sockaddr *)&h->sa, h->salen) == 0)
        return STEP_AGAIN;
    if (errno != EINPROGRESS && next_address(h, errno)) {
        h->state = S_RESOLVE;
        return STEP_AGAIN;
    }
    if (errno != EINPROGRESS)
        return fail(h, PT_HTTP_ERR_CONNECT, "cannot connect to %s:%d: %s", h->host, h->port, strerror(errno));
    return STEP_WRITE;
}

/* Copies a resolved address with the call's port. */
static void set_address(const struct pt_hclient *h, struct sockaddr_storage *sa, socklen_t *len,
                        const struct evutil_addrinfo *a)
{
    memset(sa, 0, sizeof(*sa));
    memcpy(sa, a->ai_addr, PT_MIN((size_t)a->ai_addrlen, sizeof(*sa)));
    *len = (socklen_t)PT_MIN((size_t)a->ai_addrlen, sizeof(*sa));
    if (sa->ss_family == AF_INET)
        ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)h->port);
    else
        ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)h->port);
}

/* The address refused (or cannot be reached): the next one the resolver gave, on a new socket.  true
   when there is one; the call goes on with step_connect_start. */
static bool next_address(struct pt_hclient *h, int e)
{
    if (h->ialt >= h->nalt || !(e == ECONNREFUSED || e == ENETUNREACH || e == EHOSTUNREACH ||
                                e == EADDRNOTAVAIL || e == EAFNOSUPPORT))
        return false;
    if (h->ev_on) {
        event_del(&h->ev);
        h->ev_on = false;
    }
    if (h->fd >= 0)
        close(h->fd);
    h->fd = -1;
    h->sa = h->alt[h->ialt];
    h->salen = h->altlen[h->ialt];
    h->ialt++;
    return true;
}

/* The resolver's answer.  It never ends the call here: evdns may answer
   from inside evdns_getaddrinfo (names in /etc/hosts), so the call goes on
   from the loop. */
static void dns_done(int result, struct evutil_addrinfo *res, void *arg)
{
    struct pt_hclient *h = arg;
    h->dns = NULL;
    h->resolving = false;
    if (h->cancelled) { /* released meanwhile: the resolver held the last reference */
        if (tw && tw->dns_cancelled > 0)
            tw->dns_cancelled--;
        if (res)
            evutil_freeaddrinfo(res);
        hc_free(h);
        return;
    }
    if (result != 0 || !res) {
        if (res)
            evutil_freeaddrinfo(res);
        if (h->timed_out)
            snprintf(h->err, sizeof(h->err), "no address for %s within %u ms", h->host, h->timeout_ms);
        else
            snprintf(h->err, sizeof(h->err), "cannot resolve %s: %s", h->host, evutil_gai_strerror(result));
        h->dns_err = h->timed_out ? PT_HTTP_ERR_TIMEOUT : PT_HTTP_ERR_URL;
    } else {
        set_address(h, &h->sa, &h->salen, res);
        const struct evutil_addrinfo *a = res->ai_next;
        for (int i = 0; a && i < 16 && h->nalt < HC_ALT_MAX; a = a->ai_next, i++)
            if (a->ai_family == AF_INET || a->ai_family == AF_INET6) {
                set_address(h, &h->alt[h->nalt], &h->altlen[h->nalt], a);
                h->nalt++;
            }
        evutil_freeaddrinfo(res);
    }
    if (h->ev_on)
        event_del(&h->ev);
    event_assign(&h->ev, h->base, -1, 0, on_event, h);
    event_active(&h->ev, EV_TIMEOUT, 1);
    h->ev_on = true;
}

/* The worker's resolver: the system's files, or (PORTICO_RESOLV_CONF, for tests) another resolv.conf. */
static struct evdns_base *resolver_new(struct event_base *base)
{
    const char *conf = getenv("PORTICO_RESOLV_CONF");
    if (!conf || !*conf)
        return evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    struct evdns_base *d = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (d && evdns_base_resolv_conf_parse(d, DNS_OPTIONS_ALL, conf) != 0) {
        evdns_base_free(d, 0);
        return NULL;
    }
    return d;
}

static int h2_begin(struct pt_hclient *h);

static int step_resolve(struct pt_hclient *h)
{
    if (h->salen) /* resolved */
        return step_connect_start(h);
    if ((h->pooled || h->h2_pooled) && !h->reused && !h->saved && pool_take(h)) {
        h->reused = true;
        if (h->s)
            return h2_begin(h); /* an idle HTTP/2 session: a new stream on it */
        /* a kept connection: straight to writing, with a copy to resend on a fresh one if it fails */
        h->saved = evbuffer_new();
        if (h->saved)
            evbuffer_add(h->saved, evbuffer_pullup(h->out, -1), evbuffer_get_length(h->out));
        h->state = S_WRITE;
        return STEP_AGAIN;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)&h->sa;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&h->sa;
    if (inet_pton(AF_INET, h->host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)h->port);
        h->salen = sizeof(*s4);
        return step_connect_start(h);
    }
    if (inet_pton(AF_INET6, h->host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)h->port);
        h->salen = sizeof(*s6);
        return step_connect_start(h);
    }
    /* a name: the worker's resolver, on this loop (/etc/hosts, then the name servers) */
    struct hc_worker *w = worker_of(h->base);
    uint64_t now = pt_clock_now_ms();
    if (w && !w->dns && (!w->dns_failed_ms || now - w->dns_failed_ms >= DNS_RETRY_MS)) {
        /* reads /etc/resolv.conf and /etc/hosts once; a failure is not retried at every call */
        w->dns = resolver_new(h->base);
        w->dns_failed_ms = w->dns ? 0 : (now ? now : 1);
    }
    if (!w || !w->dns)
        return fail(h, PT_HTTP_ERR_URL, "cannot resolve %s: no resolver", h->host);
    struct evutil_addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
    h->resolving = true;
    struct evdns_getaddrinfo_request *rq = evdns_getaddrinfo(w->dns, h->host, NULL, &hints, dns_done, h);
    if (h->resolving)
        h->dns = rq; /* the answer comes later */
    return STEP_END; /* dns_done wakes the call (it may already have) */
}

static int step_connected(struct pt_hclient *h)
{
    int e = 0;
    socklen_t el = sizeof(e);
    if (getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
        e = errno;
    if (e == EINPROGRESS || e == EALREADY)
        return STEP_WRITE;
    if (e && next_address(h, e)) {
        h->state = S_RESOLVE; /* step_resolve connects to the next address (salen is set) */
        return STEP_AGAIN;
    }
    if (e)
        return fail(h, PT_HTTP_ERR_CONNECT, "cannot connect to %s:%d: %s", h->host, h->port, strerror(e));
    if (h->proxied && h->u.https) {
        /* a tunnel through the proxy first; the request waits aside until TLS is up */
        struct evbuffer *b = evbuffer_new();
        if (!b)
            return fail(h, PT_HTTP_ERR_CONNECT, "out of memory");
        /* an IPv6 literal keeps its brackets, or host and port would run together */
        bool v6 = strchr(h->u.host, ':') != NULL;
        evbuffer_add_printf(b, "CONNECT %s%s%s:%d HTTP/1.1\r\nHost: %s%s%s:%d\r\n", v6 ? "[" : "", h->u.host,
                            v6 ? "]" : "", h->u.port, v6 ? "[" : "", h->u.host, v6 ? "]" : "", h->u.port);
        if (h->proxy_auth)
            evbuffer_add_printf(b, "Proxy-Authorization: %s\r\n", h->proxy_auth);
        evbuffer_add(b, "\r\n", 2);
        h->parked = h->out;
        h->out = b;
        h->state = S_PROXY_WRITE;
        return STEP_AGAIN;
    }
    if (h->u.https) {
        h->state = S_TLS;
        return STEP_AGAIN;
    }
    if (h->want_h2) /* http-version 2 to http://: h2c with prior knowledge */
        return h2_begin(h);
    h->state = S_WRITE;
    return STEP_AGAIN;
}

static int step_proxy_write(struct pt_hclient *h)
{
    int want = STEP_WRITE;
    int w = io_write(h, &want);
    if (w < 0)
        return fail(h, PT_HTTP_ERR_CONNECT, "proxy: %s", h->err);
    if (w == 0)
        return want;
    pt_fetch_parser_init(&h->p, 1, true); /* a head only: a CONNECT answer has no body */
    h->parser_on = true;
    h->state = S_PROXY_READ;
    return STEP_AGAIN;
}

static int step_proxy_read(struct pt_hclient *h)
{
    int want = STEP_READ;
    for (int i = 0; i < READS_PER_WAKE; i++) {
        int n = io_read(h, &want);
        if (n == -1)
            return want;
        if (n == -2)
            return fail(h, PT_HTTP_ERR_CONNECT, "proxy: %s", h->err);
        char err[160];
        int r = pt_fetch_parse(&h->p, h->in, n == 0, err, sizeof(err));
        if (r < 0)
            return fail(h, PT_HTTP_ERR_CONNECT, "proxy: %s", err);
        if (r == 1) {
            int st = h->p.h.status;
            pt_fetch_parser_free(&h->p);
            h->parser_on = false;
            if (st < 200 || st > 299)
                return fail(h, PT_HTTP_ERR_CONNECT, "the proxy refused the tunnel to %s:%d with %d",
                            h->u.host, h->u.port, st);
            if (evbuffer_get_length(h->in))
                return fail(h, PT_HTTP_ERR_CONNECT, "the proxy sent bytes before the TLS handshake");
            /* the tunnel is up: the request goes through it, inside TLS */
            evbuffer_free(h->out);
            h->out = h->parked;
            h->parked = NULL;
            h->state = S_TLS;
            return STEP_AGAIN;
        }
        if (n == 0)
            return fail(h, PT_HTTP_ERR_CONNECT, "the proxy closed the connection");
    }
    return STEP_READ;
}

/* The handshake is done: HTTP/2 when it was offered and the server chose it. */
static int tls_done(struct pt_hclient *h)
{
    if (h->want_h2) {
        const unsigned char *p = NULL;
        unsigned n = 0;
        SSL_get0_alpn_selected(h->ssl, &p, &n);
        if (n == 2 && !memcmp(p, "h2", 2))
            return h2_begin(h);
        if (h->version == PT_HTTP_VERSION_2)
            return fail(h, PT_HTTP_ERR_CONNECT, "%s:%d does not speak HTTP/2 (no ALPN agreement on h2)",
                        h->u.host, h->u.port);
        h->want_h2 = false; /* 2or1: the server chose HTTP/1.1 */
    }
    h->state = S_WRITE;
    return STEP_AGAIN;
}

static int step_tls(struct pt_hclient *h)
{
    if (!h->ssl) {
        if (!h->ctx)
            return fail(h, PT_HTTP_ERR_CONNECT, "https is not available (no TLS context)");
        h->ssl = pt_tls_client_ssl(h->ctx, h->u.host, h->verify);
        if (!h->ssl || !SSL_set_fd(h->ssl, h->fd))
            return fail(h, PT_HTTP_ERR_CONNECT, "cannot set up TLS");
        SSL_set_mode(h->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        static const unsigned char h2[] = "\x02h2", both[] = "\x02h2\x08http/1.1";
        bool or1 = h->version == PT_HTTP_VERSION_2OR1;
        if (h->want_h2 &&
            SSL_set_alpn_protos(h->ssl, or1 ? both : h2, or1 ? sizeof(both) - 1 : sizeof(h2) - 1))
            return fail(h, PT_HTTP_ERR_CONNECT, "cannot offer h2 by ALPN");
    }
    int r = SSL_connect(h->ssl);
    if (r == 1)
        return tls_done(h);
    int e = SSL_get_error(h->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return STEP_READ;
    if (e == SSL_ERROR_WANT_WRITE)
        return STEP_WRITE;
    long v = SSL_get_verify_result(h->ssl);
    if (v != X509_V_OK)
        return fail(h, PT_HTTP_ERR_CONNECT, "TLS: the certificate of %s does not verify: %s", h->u.host,
                    X509_verify_cert_error_string(v));
    unsigned long le = ERR_peek_last_error();
    char buf[160] = "the handshake failed";
    if (le)
        ERR_error_string_n(le, buf, sizeof(buf));
    return fail(h, PT_HTTP_ERR_CONNECT, "TLS with %s: %s", h->u.host, buf);
}

static int step_write(struct pt_hclient *h)
{
    int want = STEP_WRITE;
    int w = io_write(h, &want);
    if (w < 0 && retry_fresh(h))
        return STEP_AGAIN;
    if (w < 0 && h->ssl)
        return fail(h, PT_HTTP_ERR_CONNECT, "%s", h->err);
    if (w == 0)
        return want;
    if (w < 0) {
        /* the server stopped reading mid-request (a 413 and a close): its answer may be waiting */
        h->write_failed = true;
        evbuffer_drain(h->out, evbuffer_get_length(h->out));
    }
    pt_fetch_parser_init(&h->p, h->max_body, h->head_method);
    h->parser_on = true;
    h->state = S_READ;
    return STEP_AGAIN;
}

static int step_read(struct pt_hclient *h)
{
    int want = STEP_READ;
    for (int i = 0; i < READS_PER_WAKE; i++) {
        int n = io_read(h, &want);
        if (n == -1)
            return want;
        if ((n == -2 || n == 0) && retry_fresh(h)) /* a kept connection the server had closed */
            return STEP_AGAIN;
        if (n == -2 && h->write_failed && h->got_bytes)
            n = 0; /* reset after an early answer: what came is all there is */
        if (n == -2)
            return fail(h, h->write_failed ? PT_HTTP_ERR_CONNECT : PT_HTTP_ERR_PROTOCOL, "%s", h->err);
        if (n > 0)
            h->got_bytes = true;
        char err[160];
        int r = pt_fetch_parse(&h->p, h->in, n == 0, err, sizeof(err));
        if (h->detached && h->p.head_done && (r >= 0 || r == PT_FETCH_TOO_LARGE)) {
            finish(h, 0); /* one-way: delivered and answered; nobody reads the body (the close drops it) */
            return STEP_END;
        }
        if (r == PT_FETCH_TOO_LARGE)
            return fail(h, PT_HTTP_ERR_TOO_LARGE, "%s", err);
        if (r < 0)
            return fail(h, PT_HTTP_ERR_PROTOCOL, "%s", err);
        if (r == 1) {
            if (!h->write_failed)
                pool_put(h);
            finish(h, 0);
            return STEP_END;
        }
        if (n == 0)
            return fail(h, h->write_failed ? PT_HTTP_ERR_CONNECT : PT_HTTP_ERR_PROTOCOL,
                        "the server closed the connection early");
    }
    return STEP_READ;
}

/* ------------------------------------------------------------- HTTP/2 */

/* nghttp2 callbacks only record: the call goes on in step_h2, which runs
   nghttp2 (never re-entered) and ends the call only after nghttp2 returned.
   A session kept idle has no user data: nothing runs it then. */

static ssize_t h2_on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *arg)
{
    (void)s, (void)flags;
    struct pt_hclient *h = arg;
    if (!h || evbuffer_get_length(h->out) > H2_OUT_MAX)
        return NGHTTP2_ERR_WOULDBLOCK; /* the server does not read: the rest after the socket took this */
    if (evbuffer_add(h->out, data, len) < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)len;
}

static ssize_t h2_read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                            nghttp2_data_source *src, void *arg)
{
    (void)s, (void)id, (void)src;
    struct pt_hclient *h = arg;
    size_t n = h ? PT_MIN(length, h->body.len - h->body_off) : 0;
    if (n)
        memcpy(buf, h->body.data + h->body_off, n);
    if (h)
        h->body_off += n;
    if (!h || h->body_off == h->body.len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int h2_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                        const uint8_t *value, size_t vlen, uint8_t flags, void *arg)
{
    (void)s, (void)flags;
    struct pt_hclient *h = arg;
    if (!h || f->hd.type != NGHTTP2_HEADERS || f->hd.stream_id != h->sid)
        return 0;
    if (!pt_h2head_field(&h->rh, name, nlen, value, vlen)) {
        h->h2_why = "the server sent a header field HTTP/1.1 cannot carry";
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset */
    }
    if (h->rh.too_big) {
        h->h2_why = "the server's header list is larger than 64 KiB";
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

/* The body ends: the chunked framing of an unknown length is closed. */
static void h2_body_end(struct pt_hclient *h)
{
    if (h->h2_chunked)
        evbuffer_add(h->resp, "0\r\n\r\n", 5);
    h->h2_chunked = false;
    h->h2_ended = true;
}

/* A header block of the call's stream is complete: the response head (1xx ones are dropped), or
   trailers, which are dropped too (the response a policy sees has none). */
static void h2_headers_in(struct pt_hclient *h, bool end_stream)
{
    if (!h->h2_head_done) {
        bool chunked = false;
        struct evbuffer *head = evbuffer_new();
        int status = head ? pt_h2head_resp_write(&h->rh, end_stream, h->head_method, head, &chunked) : -1;
        pt_h2head_free(&h->rh);
        pt_h2head_init(&h->rh, H2_HEAD_MAX);
        if (status < 0) {
            nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, h->sid, NGHTTP2_PROTOCOL_ERROR);
            h->h2_why = "the server sent no valid :status";
        } else if (status >= 200) {
            evbuffer_add_buffer(h->resp, head);
            h->h2_head_done = true;
            h->h2_chunked = chunked;
            h->got_bytes = true;
        }
        if (head)
            evbuffer_free(head);
    }
    if (end_stream && h->h2_head_done)
        h2_body_end(h);
}

static int h2_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    (void)s;
    struct pt_hclient *h = arg;
    if (!h)
        return 0;
    bool mine = h->sid && f->hd.stream_id == h->sid, end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
    if (f->hd.type == NGHTTP2_HEADERS && mine)
        h2_headers_in(h, end);
    else if (f->hd.type == NGHTTP2_DATA && mine && end && h->h2_head_done)
        h2_body_end(h);
    else if (f->hd.type == NGHTTP2_GOAWAY)
        h->h2_goaway = true; /* no new stream on this session; ours, if past last-stream-id, is refused */
    return 0;
}

static int h2_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                      void *arg)
{
    (void)s, (void)flags;
    struct pt_hclient *h = arg;
    if (!h || id != h->sid || !h->h2_head_done || !len)
        return 0;
    if (h->h2_chunked)
        evbuffer_add_printf(h->resp, "%zx\r\n", len);
    evbuffer_add(h->resp, data, len);
    if (h->h2_chunked)
        evbuffer_add(h->resp, "\r\n", 2);
    return 0;
}

static int h2_on_close(nghttp2_session *s, int32_t id, uint32_t code, void *arg)
{
    (void)s;
    struct pt_hclient *h = arg;
    if (!h || id != h->sid)
        return 0;
    h->h2_closed = true;
    if (!h->h2_ended) {
        h->h2_refused = code == NGHTTP2_REFUSED_STREAM;
        if (!h->h2_why)
            h->h2_why = h->h2_refused ? "the server refused the stream"
                        : code        ? "the server reset the stream"
                                      : "the server ended the stream without a response";
    }
    return 0;
}

static nghttp2_session *h2_session_new(struct pt_hclient *h)
{
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;
    nghttp2_session *s = NULL;
    if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0)
        goto out;
    nghttp2_session_callbacks_set_send_callback(cb, h2_on_send);
    nghttp2_session_callbacks_set_on_header_callback(cb, h2_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2_on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_on_close);
    /* a server is bounded as the gateway's own backends are: SETTINGS entries, queued ACKs, the HPACK
       table; the body is bounded by the call's cap and read as it comes (auto window updates) */
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    if (nghttp2_session_client_new2(&s, cb, h, opt) != 0) {
        s = NULL;
        goto out;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2_HEAD_MAX},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, 4096},
    };
    if (nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0) {
        nghttp2_session_del(s);
        s = NULL;
    }
out:
    if (cb)
        nghttp2_session_callbacks_del(cb);
    if (opt)
        nghttp2_option_del(opt);
    return s;
}

/* HTTP/2 speaks on the connection (a new session, or an idle one taken): the call's stream next. */
static int h2_begin(struct pt_hclient *h)
{
    if (!h->s) {
        if (!(h->s = h2_session_new(h)))
            return fail(h, PT_HTTP_ERR_CONNECT, "out of memory");
        atomic_fetch_add_explicit(&n_h2_conns, 1, memory_order_relaxed);
    }
    if (!h->h1req) { /* out carries frames now; the HTTP/1.1 request waits for a retry on HTTP/1.1 */
        h->h1req = h->out;
        h->out = evbuffer_new();
    }
    if (!h->resp)
        h->resp = evbuffer_new();
    if (!h->out || !h->resp)
        return fail(h, PT_HTTP_ERR_CONNECT, "out of memory");
    pt_h2head_init(&h->rh, H2_HEAD_MAX);
    h->rh_on = true;
    pt_fetch_parser_init(&h->p, h->max_body, h->head_method);
    h->parser_on = true;
    h->state = S_H2;
    return STEP_AGAIN;
}

/* The session goes (a reused one that failed): the call is as before h2_begin. */
static void h2_drop(struct pt_hclient *h)
{
    nghttp2_session_del(h->s);
    h->s = NULL;
    h->sid = 0;
    h->body_off = 0;
    if (h->rh_on)
        pt_h2head_free(&h->rh);
    h->rh_on = false;
    evbuffer_drain(h->resp, evbuffer_get_length(h->resp));
    h->h2_head_done = h->h2_chunked = h->h2_ended = h->h2_closed = h->h2_refused = h->h2_goaway = false;
    h->h2_why = NULL;
    evbuffer_free(h->out);
    h->out = h->h1req;
    h->h1req = NULL;
}

static int h2_submit(struct pt_hclient *h)
{
    nghttp2_data_provider prd = {.read_callback = h2_read_body};
    int32_t id = nghttp2_submit_request(h->s, NULL, h->nv, (size_t)h->nnv, h->body.len ? &prd : NULL, NULL);
    if (id < 0)
        return fail(h, PT_HTTP_ERR_CONNECT, "the request could not be sent over HTTP/2: %s",
                    nghttp2_strerror(id));
    h->sid = id;
    atomic_fetch_add_explicit(&n_h2_streams, 1, memory_order_relaxed);
    return STEP_AGAIN;
}

/* What nghttp2 has to send, to the socket: 0, or -1 (h->err set). */
static int h2_flush(struct pt_hclient *h)
{
    for (int round = 0; round < 4; round++) {
        int rv = nghttp2_session_send(h->s);
        if (rv != 0) {
            snprintf(h->err, sizeof(h->err), "HTTP/2: %s", nghttp2_strerror(rv));
            return -1;
        }
        int want = STEP_WRITE;
        int w = io_write(h, &want);
        if (w < 0)
            return -1;
        if (w == 0 || !nghttp2_session_want_write(h->s))
            return 0;
    }
    return 0;
}

/* The call's stream failed or the session did: a fresh connection when that is safe, else the end. */
static int h2_failed(struct pt_hclient *h, const char *why)
{
    if (retry_fresh(h))
        return STEP_AGAIN;
    return fail(h, PT_HTTP_ERR_PROTOCOL, "%s (HTTP/2, %s:%d)", why, h->u.host, h->u.port);
}

/* The response bytes so far through the parser: STEP_END when the call ended, else STEP_AGAIN. */
static int h2_parse(struct pt_hclient *h)
{
    char err[160];
    int r = pt_fetch_parse(&h->p, h->resp, h->h2_ended, err, sizeof(err));
    if (h->detached && h->p.head_done && (r >= 0 || r == PT_FETCH_TOO_LARGE)) {
        finish(h, 0); /* one-way: answered; the session goes with the call */
        return STEP_END;
    }
    if (r == PT_FETCH_TOO_LARGE)
        return fail(h, PT_HTTP_ERR_TOO_LARGE, "%s", err);
    if (r < 0)
        return fail(h, PT_HTTP_ERR_PROTOCOL, "%s", err);
    if (r == 1) {
        if (h2_flush(h) == 0) /* what the session owes the server (a SETTINGS ACK) goes before it idles */
            h2_pool_put(h);
        finish(h, 0);
        return STEP_END;
    }
    return STEP_AGAIN;
}

/* Reads what the socket has into the session: 1 something was read, 0 nothing now (*want set), -1 the
   connection ended (h->err set), -2 the server broke the protocol (h->err set). */
static int h2_read(struct pt_hclient *h, int *want)
{
    int n = io_read(h, want);
    if (n == -1)
        return 0;
    if (n == 0)
        snprintf(h->err, sizeof(h->err), "the server closed the connection");
    if (n <= 0)
        return -1;
    struct evbuffer_iovec v; /* the first extent each time (peek counts them all) */
    while (evbuffer_get_length(h->in) && evbuffer_peek(h->in, -1, NULL, &v, 1) >= 1) {
        ssize_t k = nghttp2_session_mem_recv(h->s, v.iov_base, v.iov_len);
        if (k < 0) {
            snprintf(h->err, sizeof(h->err), "the server broke the HTTP/2 protocol: %s",
                     nghttp2_strerror((int)k));
            return -2;
        }
        evbuffer_drain(h->in, (size_t)k);
    }
    return 1;
}

/* A session taken from the pool first hears what the server said while it was idle: true when it is
   still good for a new stream. */
static bool h2_still_good(struct pt_hclient *h)
{
    int want = STEP_READ, r = 1;
    for (int i = 0; i < READS_PER_WAKE && r == 1; i++)
        r = h2_read(h, &want);
    return r == 0 && !h->h2_goaway && nghttp2_session_want_read(h->s);
}

static int step_h2(struct pt_hclient *h)
{
    int r;
    if (!h->sid) {
        if (h->reused && !h2_still_good(h) && retry_fresh(h))
            return STEP_AGAIN; /* nothing was sent on it: a fresh connection is always safe */
        if ((r = h2_submit(h)) == STEP_END)
            return r;
    }
    if (h2_flush(h) < 0)
        return h2_failed(h, h->err);
    int want = STEP_READ, i;
    for (i = 0; i < READS_PER_WAKE; i++) {
        int n = h2_read(h, &want);
        if (n == 0)
            break;
        if (n == -2) {
            nghttp2_session_terminate_session(h->s, NGHTTP2_PROTOCOL_ERROR);
            h2_flush(h);
            return fail(h, PT_HTTP_ERR_PROTOCOL, "%s", h->err);
        }
        if (n == -1)
            return h2_failed(h, h->err);
        if ((r = h2_parse(h)) == STEP_END)
            return r;
        if (h->h2_closed && !h->h2_ended)
            return h2_failed(h, h->h2_why);
        if (h->h2_ended)
            return fail(h, PT_HTTP_ERR_PROTOCOL, "the response ended before its body did (HTTP/2)");
    }
    if (h2_flush(h) < 0)
        return h2_failed(h, h->err);
    if (i == READS_PER_WAKE)
        return STEP_AGAIN; /* more may wait (in TLS's buffer too): on from the loop after a while */
    if (!nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s))
        return h2_failed(h,
                         h->h2_goaway ? "the server ended the HTTP/2 session" : "the HTTP/2 session ended");
    if (want == STEP_WRITE) /* TLS wants the socket writable to read */
        return STEP_WRITE;
    return evbuffer_get_length(h->out) ? STEP_RW : STEP_READ;
}

/* Runs steps until one has to wait; arms the event for that. */
static void advance(struct pt_hclient *h)
{
    for (int guard = 0; guard < 32; guard++) {
        int r;
        switch (h->state) {
        case S_START:
            h->state = S_RESOLVE;
            r = step_resolve(h);
            break;
        case S_RESOLVE: /* the resolver answered, or a kept connection failed: a fresh one */
            r = h->dns_err ? fail(h, h->dns_err, "%s", h->err) : step_resolve(h);
            break;
        case S_CONNECT:
            r = step_connected(h);
            break;
        case S_PROXY_WRITE:
            r = step_proxy_write(h);
            break;
        case S_PROXY_READ:
            r = step_proxy_read(h);
            break;
        case S_TLS:
            r = step_tls(h);
            break;
        case S_WRITE:
            r = step_write(h);
            break;
        case S_READ:
            r = step_read(h);
            break;
        case S_H2:
            r = step_h2(h);
            break;
        default:
            return;
        }
        if (r == STEP_END)
            return; /* h may be gone */
        if (r == STEP_AGAIN)
            continue;
        if (h->ev_on)
            event_del(&h->ev);
        short what = r == STEP_READ ? EV_READ : r == STEP_WRITE ? EV_WRITE : EV_READ | EV_WRITE;
        event_assign(&h->ev, h->base, h->fd, what, on_event, h);
        event_add(&h->ev, NULL);
        h->ev_on = true;
        return;
    }
    /* too many steps in one wake (never expected): continue from the loop */
    if (h->ev_on)
        event_del(&h->ev);
    event_assign(&h->ev, h->base, -1, 0, on_event, h);
    event_active(&h->ev, EV_TIMEOUT, 1);
    h->ev_on = true;
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct pt_hclient *h = arg;
    h->ev_on = false;
    advance(h);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct pt_hclient *h = arg;
    h->timer_on = false;
    if (h->resolving) {
        /* the resolver holds the call: its callback (EAI_CANCEL, from the loop) reports the timeout */
        h->timed_out = true;
        if (h->dns) {
            struct evdns_getaddrinfo_request *d = h->dns;
            h->dns = NULL;
            evdns_getaddrinfo_cancel(d);
        }
        return;
    }
    fail(h, PT_HTTP_ERR_TIMEOUT, "no complete answer from %s:%d within %u ms", h->u.host, h->u.port,
         h->timeout_ms);
}

/* --------------------------------------------------------------- setup */

/* A field value: no control character but HTAB, no DEL (RFC 9110 5.5), as the proxy checks them. */
static bool bad_text(pt_bytes b)
{
    return !pt_http_value_ok((pt_str){b.data, b.len});
}

static bool is_token(pt_bytes b)
{
    if (!b.len)
        return false;
    for (size_t i = 0; i < b.len; i++) {
        unsigned char c = (unsigned char)b.data[i];
        if (c <= 0x20 || c >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", c))
            return false;
    }
    return true;
}

/* "Basic base64(user:password)" in the call's pool. */
static const char *basic(struct pt_pool *pool, pt_bytes user, pt_bytes pass)
{
    size_t n = user.len + 1 + pass.len;
    unsigned char *raw = pt_pool_alloc(pool, n + 1);
    char *out = pt_pool_alloc(pool, 6 + 4 * ((n + 2) / 3) + 1);
    if (!raw || !out)
        return NULL;
    memcpy(raw, user.data, user.len);
    raw[user.len] = ':';
    memcpy(raw + user.len + 1, pass.data, pass.len);
    memcpy(out, "Basic ", 6);
    EVP_EncodeBlock((unsigned char *)out + 6, raw, (int)n);
    return out;
}

/* Splits an absolute URL into the target (scheme, host, port) and the
   request target (path and query); NULL or what is wrong. */
static const char *parse_url(struct pt_pool *pool, pt_bytes url, struct pt_url *u, const char **target)
{
    if (url.len > 16384)
        return "the URL is longer than 16 KiB";
    for (size_t i = 0; i < url.len; i++)
        if ((unsigned char)url.data[i] <= 0x20 || (unsigned char)url.data[i] >= 0x7f)
            return "the URL holds a space, a control character or a non-ASCII byte";
    char *s = pt_pool_strndup(pool, url.data, url.len);
    if (!s)
        return "out of memory";
    char *sep = strstr(s, "://");
    if (!sep)
        return "not an absolute http:// or https:// URL";
    size_t alen = strcspn(sep + 3, "/?#");
    char *rest = sep + 3 + alen;
    char *t = pt_pool_alloc(pool, strlen(rest) + 2);
    if (!t)
        return "out of memory";
    size_t tl = strcspn(rest, "#");
    if (rest[0] == '/')
        memcpy(t, rest, tl), t[tl] = '\0';
    else
        t[0] = '/', memcpy(t + 1, rest, tl), t[tl + 1] = '\0';
    *rest = '\0';
    if (memchr(sep + 3, '@', alen))
        return "user information in the URL is not supported (use authentication-basic)";
    const char *msg = pt_url_parse(pool, s, u);
    if (msg)
        return msg;
    *target = t;
    return NULL;
}

/* Copies r into a new call; NULL when out of memory.  Refusals of r end
   the call through cb later, like any failure. */
static struct pt_hclient *hc_new(struct event_base *base, const struct pt_http_req *r,
                                 const struct pt_hclient_tls *tls)
{
    struct pt_hclient *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->base = base;
    h->fd = -1;
    h->pool = pt_pool_new(4096);
    h->out = evbuffer_new();
    h->in = evbuffer_new();
    if (!h->pool || !h->out || !h->in) {
        hc_free(h);
        return NULL;
    }
    if (tls && tls->ctx) {
        SSL_CTX_up_ref(tls->ctx); /* a detached call may outlive the generation that owns it */
        h->ctx = tls->ctx;
        h->verify = tls->verify;
    }
    h->public_only = tls && tls->public_only;
    h->timeout_ms = r->timeout_ms ? r->timeout_ms : PT_HCLIENT_DEFAULT_TIMEOUT_MS;
    h->max_body = r->max_body ? r->max_body : PT_HCLIENT_DEFAULT_MAX_BODY;
    event_assign(&h->timer, base, -1, 0, on_timeout, h);
    event_assign(&h->ev, base, -1, 0, on_event, h);
    return h;
}

/* The HTTP/1.1 head in h->out (nothing else yet) as HTTP/2 fields, and the body kept beside them: the
   same fields whatever the protocol the server picks.  NULL, or what is wrong. */
static const char *h2_prepare(struct pt_hclient *h, const struct pt_http_req *r)
{
    size_t len = evbuffer_get_length(h->out);
    char *copy = pt_pool_alloc(h->pool, len + 1);
    if (!copy)
        return "out of memory";
    evbuffer_copyout(h->out, copy, len);
    struct pt_head rq = {0};
    struct pt_http_err err = {0};
    if (!pt_http_parse_request(&rq, copy, len, h->pool, PT_HCLIENT_MAX_HEADERS + 8, UINT64_MAX, &err))
        return err.msg ? err.msg : "the request head cannot be sent";
    h->nnv = pt_h2head_nv(&rq, h->u.https ? "https" : "http", h->pool, &h->nv);
    if (h->nnv < 0)
        return "out of memory";
    if (r->body.len) {
        char *b = pt_pool_alloc(h->pool, r->body.len);
        if (!b)
            return "out of memory";
        memcpy(b, r->body.data, r->body.len);
        h->body = (pt_bytes){b, r->body.len};
    }
    return NULL;
}

/* Builds the request bytes; NULL, or what is wrong. */
static const char *hc_prepare(struct pt_hclient *h, const struct pt_http_req *r)
{
    const char *target = NULL;
    const char *msg = parse_url(h->pool, r->url, &h->u, &target);
    if (msg)
        return msg;
    pt_bytes method = r->method.len ? r->method : (pt_bytes){"GET", 3};
    if (!is_token(method))
        return "the method is not a token";
    if (ieq(method, "CONNECT"))
        return "CONNECT cannot be sent (it asks a proxy for a tunnel)";
    h->head_method = ieq(method, "HEAD");
    h->host = h->u.host;
    h->port = h->u.port;
    if (r->proxy_url.len) {
        struct pt_url pu;
        const char *pt = NULL;
        msg = parse_url(h->pool, r->proxy_url, &pu, &pt);
        if (msg)
            return "the proxy URL is not an http:// URL";
        if (pu.https)
            return "the proxy URL must be http:// (TLS to the proxy is not supported)";
        h->proxied = true;
        h->host = pu.host;
        h->port = pu.port;
        if (r->proxy_username.len) {
            if (bad_text(r->proxy_username) || bad_text(r->proxy_password) ||
                memchr(r->proxy_username.data, ':', r->proxy_username.len))
                return "the proxy user name or password holds a forbidden character";
            h->proxy_auth = basic(h->pool, r->proxy_username, r->proxy_password);
            if (!h->proxy_auth)
                return "out of memory";
        }
    }
    if (r->nheaders < 0 || r->nheaders > PT_HCLIENT_MAX_HEADERS)
        return "too many request headers";
    struct evbuffer *o = h->out;
    if (h->proxied && !h->u.https) /* absolute form to the proxy */
        evbuffer_add_printf(o, "%.*s http://%s%s HTTP/1.1\r\n", (int)method.len, method.data, h->u.authority,
                            target);
    else
        evbuffer_add_printf(o, "%.*s %s HTTP/1.1\r\n", (int)method.len, method.data, target);
    bool host_set = false, ua_set = false;
    for (int i = 0; i < r->nheaders; i++) {
        pt_bytes n = r->header_names[i], v = r->header_values[i];
        if (!is_token(n) || bad_text(v))
            return "a header name is not a token or a value holds a control character";
        /* framing is ours */
        if (ieq(n, "Content-Length") || ieq(n, "Transfer-Encoding") || ieq(n, "Connection") ||
            ieq(n, "Keep-Alive") || ieq(n, "TE") || ieq(n, "Upgrade") || ieq(n, "Proxy-Connection") ||
            ieq(n, "Trailer") || ieq(n, "Expect"))
            continue;
        if (ieq(n, "Proxy-Authorization") && h->proxy_auth && !h->u.https)
            continue; /* the proxy policy's credentials win */
        host_set |= ieq(n, "Host");
        ua_set |= ieq(n, "User-Agent");
        evbuffer_add(o, n.data, n.len);
        evbuffer_add(o, ": ", 2);
        evbuffer_add(o, v.data, v.len);
        evbuffer_add(o, "\r\n", 2);
    }
    if (!host_set)
        evbuffer_add_printf(o, "Host: %s\r\n", h->u.authority);
    if (!ua_set)
        evbuffer_add_printf(o, "User-Agent: portico/" PACKAGE_VERSION "\r\n");
    if (h->proxied && !h->u.https && h->proxy_auth)
        evbuffer_add_printf(o, "Proxy-Authorization: %s\r\n", h->proxy_auth);
    if (r->body.len || !(ieq(method, "GET") || ieq(method, "HEAD") || ieq(method, "DELETE") ||
                         ieq(method, "OPTIONS") || ieq(method, "TRACE")))
        evbuffer_add_printf(o, "Content-Length: %zu\r\n", r->body.len);
    h->version = r->http_version == PT_HTTP_VERSION_2OR1 || r->http_version == PT_HTTP_VERSION_2
                     ? r->http_version
                     : PT_HTTP_VERSION_1;
    /* through a proxy always HTTP/1.1, as forward-request; 2or1 to http:// is HTTP/1.1 (no ALPN to ask) */
    h->want_h2 = !h->proxied &&
                 (h->version == PT_HTTP_VERSION_2 || (h->version == PT_HTTP_VERSION_2OR1 && h->u.https));
    h->idempotent = pool_eligible(r, method);
    h->pooled = !h->detached && h->idempotent; /* one-way calls close at the answer's head */
    h->h2_pooled = !h->detached && h->want_h2;
    if (h->pooled || h->h2_pooled) {
        /* the version asked, and the host last: a key that does not fit is not pooled (never truncated) */
        int kn =
            snprintf(h->key, sizeof(h->key), "%d|%s|%d|%p|%d|%s", h->version, h->u.https ? "https" : "http",
                     h->u.port, h->u.https ? (void *)h->ctx : NULL, h->verify, h->u.host);
        h->pooled = h->pooled && kn > 0 && (size_t)kn < sizeof(h->key);
        h->h2_pooled = h->h2_pooled && kn > 0 && (size_t)kn < sizeof(h->key);
    }
    if (h->pooled)
        evbuffer_add(o, "\r\n", 2);
    else
        evbuffer_add(o, "Connection: close\r\n\r\n", 21);
    if (evbuffer_get_length(o) > PT_HCLIENT_MAX_HEAD)
        return "the request head is larger than 64 KiB";
    if (h->want_h2 && (msg = h2_prepare(h, r)))
        return msg;
    if (r->body.len)
        evbuffer_add(o, r->body.data, r->body.len);
    return NULL;
}

/* Starts a prepared call from the loop (never inside the caller). */
static void hc_kick(struct pt_hclient *h)
{
    struct timeval tv = {h->timeout_ms / 1000, (h->timeout_ms % 1000) * 1000};
    event_add(&h->timer, &tv);
    h->timer_on = true;
    event_active(&h->ev, EV_TIMEOUT, 1);
    h->ev_on = true;
}

static void on_refused(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct pt_hclient *h = arg;
    h->ev_on = false;
    finish(h, PT_HTTP_ERR_URL);
}

struct pt_hclient *pt_hclient_send(struct event_base *base, const struct pt_http_req *r,
                                   const struct pt_hclient_tls *tls, pt_hclient_cb cb, void *arg)
{
    struct pt_hclient *h = hc_new(base, r, tls);
    if (!h)
        return NULL;
    h->cb = cb;
    h->arg = arg;
    const char *msg = hc_prepare(h, r);
    if (msg) {
        /* refused: reported from the loop like any failure */
        snprintf(h->err, sizeof(h->err), "%s", msg);
        h->state = S_DONE;
        event_assign(&h->ev, base, -1, 0, on_refused, h);
        event_active(&h->ev, EV_TIMEOUT, 1);
        h->ev_on = true;
        return h;
    }
    hc_kick(h);
    return h;
}

void pt_hclient_cancel(struct pt_hclient *h)
{
    if (h)
        hc_release(h);
}

/* ------------------------------------------------------------ detached */

static void detached_start_next(struct hc_worker *w)
{
    for (int guard = 0;
         w && guard < PT_HCLIENT_DETACHED_QUEUE && w->nrunning < PT_HCLIENT_DETACHED_RUNNING && w->qhead;
         guard++) {
        struct pt_hclient *h = w->qhead;
        w->qhead = h->next;
        if (!w->qhead)
            w->qtail = NULL;
        w->nqueued--;
        h->prev = NULL;
        h->next = w->running;
        if (w->running)
            w->running->prev = h;
        w->running = h;
        w->nrunning++;
        hc_kick(h);
    }
}

int pt_hclient_send_detached(struct event_base *base, const struct pt_http_req *r,
                             const struct pt_hclient_tls *tls)
{
    struct hc_worker *w = worker_of(base);
    if (!w || (w->nrunning >= PT_HCLIENT_DETACHED_RUNNING && w->nqueued >= PT_HCLIENT_DETACHED_QUEUE)) {
        atomic_fetch_add_explicit(&n_oneway_dropped, 1, memory_order_relaxed);
        return -1;
    }
    if (r->body.len > PT_HCLIENT_DETACHED_BODY) {
        pt_info("send-one-way-request: a body of %zu bytes is over the %u bytes a detached call keeps",
                r->body.len, PT_HCLIENT_DETACHED_BODY);
        atomic_fetch_add_explicit(&n_oneway_failed, 1, memory_order_relaxed);
        return 0;
    }
    struct pt_hclient *h = hc_new(base, r, tls);
    if (!h) {
        atomic_fetch_add_explicit(&n_oneway_dropped, 1, memory_order_relaxed);
        return -1;
    }
    h->detached = true;
    h->max_body = 0; /* the call ends at the answer's head: no body is ever buffered */
    const char *msg = hc_prepare(h, r);
    if (msg) {
        snprintf(h->err, sizeof(h->err), "%s", msg);
        log_failure(h);
        atomic_fetch_add_explicit(&n_oneway_failed, 1, memory_order_relaxed);
        hc_free(h);
        return 0;
    }
    /* queued last, then started as room allows (at once when there is room) */
    h->next = NULL;
    h->prev = w->qtail;
    if (w->qtail)
        w->qtail->next = h;
    else
        w->qhead = h;
    w->qtail = h;
    w->nqueued++;
    detached_start_next(w);
    return 0;
}

void pt_hclient_worker_end(void)
{
    struct hc_worker *w = tw;
    if (!w)
        return;
    for (int guard = 0; w->qhead && guard < PT_HCLIENT_DETACHED_QUEUE + 1; guard++) {
        struct pt_hclient *h = w->qhead;
        w->qhead = h->next;
        hc_free(h);
    }
    for (int guard = 0; w->running && guard < PT_HCLIENT_DETACHED_RUNNING + 1; guard++) {
        struct pt_hclient *h = w->running;
        w->running = h->next;
        hc_release(h);
    }
    for (int i = 0; i < w->nidle; i++)
        idle_close(&w->idle[i]);
    w->nidle = 0;
    if (w->reap_on)
        event_del(&w->reap);
    w->reap_on = false;
    /* calls cancelled while resolving are freed by the resolver's callbacks, which run from the loop:
       it runs only while such a call is left (a cancel is one deferred callback in libevent 2.1) */
    for (int i = 0; i < 8 && w->dns && w->dns_cancelled > 0; i++)
        event_base_loop(w->base, EVLOOP_NONBLOCK);
    if (w->dns_cancelled > 0)
        pt_warn("send-request: %d call(s) cancelled while resolving were not released at worker end",
                w->dns_cancelled);
    if (w->dns)
        evdns_base_free(w->dns, 0);
    free(w);
    tw = NULL;
}
