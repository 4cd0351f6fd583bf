/*
 * pt_conn -- one client connection and its requests.
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
 * A request goes: route -> subscription key (pt_access.c) -> pipeline
 * (policy/pt_pipeline.c) -> backend (pt_upstream.c) -> response
 * (pt_respond.c) -> access-log line (pt_accesslog.c).  Bodies are moved
 * between evbuffers (no copies for Content-Length bodies) and never held
 * whole: when the receiving side has more than HIGH_WATER bytes waiting,
 * the sending side stops being read until the receiver drains.
 *
 * Lifetimes: a connection is freed only from an I/O callback or a timer,
 * never from inside the parsing loop, so code that finishes a request can
 * always return to its caller.
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
#include "proxy/pt_analytics.h"
#include "proxy/pt_grpc.h"
#include "proxy/pt_h2.h"
#include "proxy/pt_overload.h"
#include "proxy/pt_proxy.h"
#include "proxy/pt_reqmetrics.h"
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

static void conn_heads(struct pt_conn *c);
static void conn_close_soon(struct pt_conn *c);
static void conn_free(struct pt_conn *c);
static void conn_cb(struct pt_io *io, int what, void *arg);
static void conn_timer(struct pt_tnode *t, int kind);
static void req_error_with(struct pt_req *req, int status, const char *reason, const char *message,
                           pt_str extra);

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
    const struct pt_limits_cf *lim = &req->wg->gen->conf->limits;
    pt_pool_set_limit(req->pool, (size_t)pt_conf_request_memory(lim));
    req->t0 = pt_clock_now_us();
    req->wall0 = pt_clock_wall_ms();
    req->status = 0;
    return req;
}

static void req_free(struct pt_req *req)
{
    struct pt_worker *w = req->c->w;
    pt_pipeline_cleanup(req);
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
    for (int i = 0; i < req->h.nh && name.len; i++) {
        struct pt_hdr *x = &req->h.h[i];
        if (!pt_str_ieq(x->name, name))
            continue;
        pt_str v = x->value;
        bool ok = v.len > 0 && v.len < sizeof(req->id);
        for (size_t k = 0; ok && k < v.len; k++) {
            char ch = v.data[k];
            ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '-' || ch == '_' || ch == '.' || ch == ':';
        }
        if (ok) {
            memcpy(req->id, v.data, v.len);
            req->idn = v.len;
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
    pt_conn_req_error(req, status, pt_respond_reason_code(status), msg);
}

/*
 * The status paths (pt_access_status_path) and the not-ready gate: a node
 * waiting for its first configuration answers 503 GatewayNotReady to every
 * request but the liveness path.  Probes stay out of analytics (a
 * Kubernetes probe every few seconds is not API traffic); the access log
 * and the metrics see them like any request.
 */
static void status_answer(struct pt_req *req, enum pt_access_status sp)
{
    static const char not_ready[] = "The gateway has no configuration yet";
    if (sp == PT_ACCESS_STATUS_NONE || (sp == PT_ACCESS_STATUS_READY && !pt_workers_ready())) {
        req->c->probe = sp != PT_ACCESS_STATUS_NONE;
        pt_conn_req_error(req, 503, "GatewayNotReady", not_ready);
        return;
    }
    if (sp == PT_ACCESS_STATUS_READY && atomic_load_explicit(&pt_overload_active, memory_order_relaxed)) {
        /* load balancers steer away from an overloaded node; liveness holds */
        req->c->probe = true;
        req_error_with(req, 503, "Overloaded", "The gateway is overloaded. Try again later.",
                       PT_STR("Retry-After: " PT_OVERLOAD_RETRY_AFTER));
        return;
    }
    struct pt_conn *c = req->c;
    pt_str body = sp == PT_ACCESS_STATUS_READY ? PT_STR("{\"status\":\"ready\"}") : PT_NULL_STR;
    if (!req->req_done)
        req->keep = false; /* a body sent with the probe is not read */
    req->status = 200;
    c->probe = true;
    req->bytes_out += pt_respond_plain(c->io->out, req->pool, 200, "application/json", body,
                                       pt_str_eq(req->h.method, PT_STR("HEAD")), !req->keep || c->w->draining,
                                       pt_str_c(req_gen(req)->conf->upstream.request_id_header),
                                       (pt_str){req->id, req->idn}, PT_NULL_STR);
    req->resp_head_sent = true;
    pt_io_flush(c->io);
    pt_conn_req_finish(req);
}

/* Past the memory mark (limits.memory): the request is refused before it
   takes more, and the connection closed; requests already admitted go on. */
static void overload_answer(struct pt_req *req)
{
    pt_overload_refused();
    req->keep = false;
    req_error_with(req, 503, "Overloaded", "The gateway is overloaded. Try again later.",
                   PT_STR("Retry-After: " PT_OVERLOAD_RETRY_AFTER));
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
    req->bytes_in = head_len;
    struct pt_http_err err = {0};
    if (PT_UNLIKELY(!head)) {
        evbuffer_drain(c->io->in, head_len);
        req->h.method = PT_STR("-");
        req->h.path = PT_STR("-");
        req_set_id(req);
        req->keep = false;
        pt_conn_req_error(req, 500, "OutOfMemory", "Internal server error");
        return;
    }
    evbuffer_remove(c->io->in, head, head_len);
    if (!pt_http_parse_request(&req->h, head, head_len, req->pool, (int)cf->limits.header_count,
                               cf->limits.body_size, &err)) {
        if (!req->h.method.len)
            req->h.method = PT_STR("-");
        if (!req->h.path.len)
            req->h.path = req->h.target.len ? req->h.target : PT_STR("-");
        req_set_id(req);
        req->keep = false;
        pt_conn_req_error(req, err.status, pt_respond_reason_code(err.status), err.msg);
        return;
    }
    /* "X_Foo" may reach a backend that reads it as "X-Foo": refused, or dropped, unless allowed */
    for (int i = 0; cf->limits.header_underscores != PT_UNDERSCORES_ALLOW && i < req->h.nh; i++) {
        struct pt_hdr *x = &req->h.h[i];
        if (!memchr(x->name.data, '_', x->name.len))
            continue;
        if (cf->limits.header_underscores == PT_UNDERSCORES_DROP) {
            x->deleted = true;
            continue;
        }
        req_set_id(req);
        req->keep = false;
        pt_conn_req_error(req, 400, "BadRequest",
                          "underscore in a header name (see limits.headerUnderscores)");
        return;
    }
    req_set_id(req);
    pt_otel_req_start(req); /* OpenTelemetry (O): the trace context */
    req->keep = req->h.keepalive && c->nreqs < (unsigned)cf->limits.requests_per_connection && !w->draining &&
                !c->stream;
    if (req->h.body != PT_BODY_NONE)
        req->req_left = req->h.content_length;
    else
        req->req_done = true;
    /* the status paths and the not-ready gate cost every other request two
       length comparisons and a relaxed load */
    if (PT_UNLIKELY(req->h.path.len == PT_ACCESS_STATUS_LIVE_LEN ||
                    req->h.path.len == PT_ACCESS_STATUS_READY_LEN ||
                    !atomic_load_explicit(&pt_worker_ready_flag, memory_order_relaxed))) {
        enum pt_access_status sp = pt_access_status_path(req->h.method, req->h.path);
        if (sp != PT_ACCESS_STATUS_NONE || !pt_workers_ready()) {
            status_answer(req, sp);
            return;
        }
    }

    if (PT_UNLIKELY(atomic_load_explicit(&pt_overload_active, memory_order_relaxed))) {
        overload_answer(req);
        return;
    }

    pt_str host = pt_url_host_strip_port(req->h.host);
    enum pt_route_result rr =
        pt_router_match(req_gen(req)->router, host, req->h.method, req->h.path, req->h.query, &req->m);
    if (rr != PT_ROUTE_NO_API && ((const struct pt_apidef *)req->m.api)->vgroup)
        rr = pt_access_match_version(req);
    if (rr != PT_ROUTE_NO_API && ((const struct pt_apidef *)req->m.api)->cf->api_type == PT_APITYPE_SOAP &&
        pt_str_eq(req->h.method, pt_str_c("POST")))
        rr = pt_access_match_soap(req); /* SOAP pass-through: the operation is the SOAP action's */
    if (rr == PT_ROUTE_NO_OPERATION && pt_str_eq(req->h.method, pt_str_c("OPTIONS"))) {
        /* a CORS preflight runs the policies of the operation it asks about */
        struct pt_hdr *acrm = pt_http_head_get(&req->h, pt_str_c("Access-Control-Request-Method"));
        if (acrm && pt_http_head_get(&req->h, pt_str_c("Origin")))
            rr = pt_router_match_in(req_gen(req)->router, ((const struct pt_apidef *)req->m.api)->ridx,
                                    acrm->value, req->m.rest, req->h.query, &req->m);
    }
    if (rr != PT_ROUTE_OK) {
        req->api = req->m.api; /* recorded when only the operation was missing */
        pt_conn_req_error(req, 404, "OperationNotFound", "Resource not found");
        return;
    }
    req->op = req->m.op;
    req->api = req->op->api;
    req->preflight_candidate = pt_str_eq(req->h.method, pt_str_c("OPTIONS")) &&
                               strcmp(req->op->cf->method, "OPTIONS") &&
                               pt_http_head_get(&req->h, pt_str_c("Access-Control-Request-Method")) &&
                               pt_http_head_get(&req->h, pt_str_c("Origin"));
    if (!pt_access_protocol_allowed(req->api->cf, c->peer.tls)) {
        /* an API limited to https (or http) does not exist on the other scheme */
        pt_conn_req_error(req, 404, "OperationNotFound", "Resource not found");
        return;
    }
    /* a preflight carries no key: an API answering preflights itself answers it without one */
    if (!(req->preflight_candidate && pt_pipeline_answers_preflight(req->op->pipeline))) {
        const struct pt_access_refusal *no = pt_access_check_key(req);
        if (no) {
            pt_conn_req_error(req, no->status, no->reason, no->message);
            return;
        }
    }
    if (req->h.body == PT_BODY_LENGTH && (uint64_t)req->h.content_length > pt_access_body_limit(req)) {
        /* the API's own limit, before a byte of the body is read */
        req->keep = false;
        pt_conn_req_error(req, 413, "RequestEntityTooLarge",
                          "request body larger than this API accepts (bodySize)");
        return;
    }
    req->be = req->api->backend;
    req->bdef = req->api->bdef;
    req->fproxy = NULL;
    req->bpath = req->m.rest;
    req->bquery = req->h.query;
    pt_io_read(c->io, false); /* the body (and pipelined requests) wait their turn */
    pt_trace_request(req);    /* tracing: the debug headers (removed whatever they say) */
    pt_pipeline_start(req, pt_access_pipeline(req));
}

/* Sends 100 Continue once the gateway is about to read a body it announced. */
void pt_conn_send_continue(struct pt_req *req)
{
    if (req->h.expect_continue) {
        req->h.expect_continue = false;
        evbuffer_add(req->c->io->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        pt_io_flush(req->c->io);
    }
}

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
    pt_pipeline_body_ready(req, false);
}

/*
 * Moves request body bytes from the client: to the backend (re-framed), or
 * into req->req_body when a policy asked to read it (req_buffering).
 */
void pt_conn_req_body(struct pt_req *req)
{
    struct pt_conn *c = req->c;
    struct pt_upconn *u = req->up;
    bool buffering = req->req_buffering;
    if (c->state != C_BODY || (!buffering && !u))
        return;
    struct evbuffer *in = c->io->in, *out = buffering ? req->req_body : u->io->out;
    uint64_t limit = buffering ? req_gen(req)->conf->limits.buffer_size : pt_access_body_limit(req);
    /* timeouts.body: the whole body, however it trickles (bodyIdle bounds each pause) */
    uint32_t whole = req_gen(req)->conf->timeouts.body;
    if (whole && !req->resp_head_sent && pt_clock_now_us() - req->t0 > (uint64_t)whole * 1000) {
        pt_conn_req_error(req, 408, "RequestTimeout", "request body not received in time (timeouts.body)");
        return;
    }
    size_t before = evbuffer_get_length(in);
    bool done = false;
    if (req->h.body == PT_BODY_LENGTH) {
        if (buffering && (uint64_t)req->h.content_length > limit) {
            buffering_failed(req, 413, "RequestEntityTooLarge",
                             "request body too large to be read by a policy");
            return;
        }
        size_t n = (size_t)PT_MIN((int64_t)before, req->req_left);
        if (n) {
            evbuffer_remove_buffer(in, out, n);
            req->req_left -= (int64_t)n;
        }
        done = req->req_left == 0;
    } else {
        /* the client's trailer fields go only to an HTTP/2 backend (gRPC); an HTTP/1.1 one gets the body
           without them, as always.  Decided once: a 2or1 connection that turns to HTTP/1.1 in the middle
           of the body's end must not get that end twice (its trailers then go to HTTP/1.1, valid there) */
        if (!buffering && !req->req_trailers)
            req->req_trailers = u->h2 ? 1 : -1;
        bool trailers = !buffering && req->req_trailers > 0;
        req->req_ch.end_to = trailers ? out : NULL;
        for (;;) {
            struct pt_http_err err = {400, NULL};
            ssize_t r = pt_http_chunked_next(&req->req_ch, in, &err);
            if (r > 0) {
                if (req->req_payload + (uint64_t)r > limit) {
                    req->keep = false;
                    if (buffering)
                        buffering_failed(req, 413, "RequestEntityTooLarge",
                                         "request body too large to be read by a policy");
                    else
                        pt_conn_req_error(req, 413, "RequestEntityTooLarge",
                                          "request body larger than the limit");
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
                pt_http_chunked_took(&req->req_ch, (size_t)r);
                req->req_payload += (uint64_t)r;
            } else if (r == PT_CHUNKED_DONE) {
                if (!buffering && !trailers) /* else the end went out through end_to */
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
                    pt_conn_req_error(req, 400, "BadRequest", err.msg);
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
            pt_pipeline_body_ready(req, true);
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
        if (req->upload_on) { /* the response went before: the exchange is over */
            req->upload_on = false;
            pt_respond_body_done(req);
            return;
        }
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

static void proxy_read_body(struct pt_req *req, pt_msg which)
{
    struct pt_conn *c = req->c;
    if (which == PT_MSG_REQUEST) {
        if (req->req_body_state != RB_STREAM || req->h.body == PT_BODY_NONE) {
            pt_pipeline_body_ready(req, true);
            return;
        }
        if (!req->req_body)
            req->req_body = evbuffer_new();
        req->req_buffering = true;
        c->state = C_BODY;
        pt_conn_send_continue(req);
        pt_conn_req_body(req);
        return;
    }
    if (!req->rh_backend || req->resp_body || !req->up || req->resp_in == PT_BODY_NONE) {
        pt_pipeline_body_ready(req, true);
        return;
    }
    req->resp_body = evbuffer_new();
    req->resp_buffering = true;
    pt_io_read(req->up->io, true);
    pt_timer_set(c->w, &req->up->timer, PT_T_READ);
    pt_respond_body(req);
}

/* The request is over: plugins' end-of-request work (counters, concurrency
   slots) first, then its access-log line into the worker's buffer. */
static void log_request(struct pt_req *req)
{
    pt_otel_req_end(req); /* OpenTelemetry (O): the request's spans to the exporter */
    for (struct pt_hook *h = req->end_hooks; h; h = h->next)
        h->end(h->arg, req->status, req->bytes_in, req->bytes_out);
    req->end_hooks = NULL;
    pt_reqmetrics_record(req); /* metrics (M) */
    pt_trace_end(req);         /* tracing: a traced request's trace goes to the store */
    if (PT_LIKELY(!req->c->probe))
        pt_analytics_record(req->c->w->an, req); /* analytics (A) */
    req->c->probe = false;
    if (pt_worker_access_fd == PT_WORKER_ACCESS_OFF)
        return;
    struct pt_worker *w = req->c->w;
    uint64_t wall = pt_clock_wall_ms();
    if (wall / 1000 != w->tsec) {
        w->tsec = wall / 1000;
        pt_log_format_time(w->tstr, wall);
    }
    struct pt_buf line;
    pt_accesslog_line(req, w->tstr, wall, &line);
    pt_worker_access(w, line.p, line.n);
}

void pt_conn_req_finish(struct pt_req *req)
{
    struct pt_conn *c = req->c;
    struct pt_worker *w = c->w;
    if (req->up)
        pt_upstream_close(req->up);
    log_request(req);
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

/* Answers with an error (and `extra` header lines).  After the response
   head went out nothing can be said any more: the client connection is cut
   instead. */
static void req_error_with(struct pt_req *req, int status, const char *reason, const char *message,
                           pt_str extra)
{
    struct pt_conn *c = req->c;
    if (req->up) {
        pt_upstream_close(req->up);
        req->up = NULL;
    }
    req->reason = reason;
    if (req->resp_head_sent) {
        req->keep = false;
        pt_conn_req_finish(req);
        return;
    }
    if (!req->req_done)
        req->keep = false; /* an unread request body makes the connection unusable */
    if (req->tb0 && !req->tb1)
        req->tb1 = pt_clock_now_us();
    req->status = status;
    bool head_only = pt_str_eq(req->h.method, PT_STR("HEAD")), close = !req->keep || c->w->draining;
    pt_str idname = pt_str_c(req_gen(req)->conf->upstream.request_id_header), reqid = {req->id, req->idn};
    if (pt_grpc_wanted(req)) /* a gRPC client reads grpc-status (the log keeps `status`) */
        req->bytes_out += pt_respond_plain(c->io->out, req->pool, 200, "", PT_NULL_STR, false, close, idname,
                                           reqid, pt_grpc_error_fields(req, status, message, extra));
    else
        req->bytes_out +=
            pt_respond_error(c->io->out, req->pool, status, message, head_only, close, idname, reqid, extra);
    req->resp_head_sent = true;
    pt_io_flush(c->io);
    pt_conn_req_finish(req);
}

void pt_conn_req_error(struct pt_req *req, int status, const char *reason, const char *message)
{
    req_error_with(req, status, reason, message, PT_NULL_STR);
}

void pt_conn_init(void)
{
    pt_pipeline_ops = (struct pt_pipeline_ops){
        .forward = pt_upstream_forward, .read_body = proxy_read_body, .respond = pt_respond};
    pt_msg_hooks.backend_close = pt_upstream_close_for;
}

void pt_conn_accept(struct pt_worker *w, int fd, const struct sockaddr *sa, int socklen, int li)
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
    if (li < g->conf->nlisten) {
        c->http1 = g->conf->listen[li].http1;
        c->h2ok = g->conf->listen[li].h2;
    } else
        c->http1 = true;
    pt_list_add_tail(&w->conns, &c->link);
    pt_worker_conn_opened(w);
    c->state = C_HEAD;
    pt_io_read(c->io, true);
    pt_timer_set(w, &c->timer, PT_T_HEADER);
}

struct pt_conn *pt_conn_stream_open(struct pt_conn *parent, struct pt_io *io)
{
    struct pt_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->w = parent->w;
    c->peer = parent->peer;
    c->peer.io = io;
    c->peer.h2 = true;
    c->io = io;
    c->stream = c->chosen = c->http1 = true;
    c->state = C_HEAD;
    pt_timer_init(&c->timer, conn_timer);
    pt_list_add_tail(&c->w->conns, &c->link); /* for the memory figure; not a client connection */
    pt_io_set_cb(io, conn_cb, c);
    pt_io_read(io, true);
    pt_timer_set(c->w, &c->timer, PT_T_HEADER);
    return c;
}

/* The first bytes of a connection (or its ALPN) choose HTTP/2 or HTTP/1.1: 1 when it went to HTTP/2 (or
   was refused), 0 for HTTP/1.1, -1 when more bytes are needed to tell. */
static int conn_choose(struct pt_conn *c)
{
    bool h2 = false;
    if (c->peer.tls) {
        const unsigned char *alpn = NULL;
        unsigned alen = 0;
        SSL *ssl = pt_io_ssl(c->io);
        if (ssl)
            SSL_get0_alpn_selected(ssl, &alpn, &alen);
        h2 = alen == 2 && !memcmp(alpn, "h2", 2);
    } else if (c->h2ok) {
        int p = pt_h2_preface(c->io->in);
        if (p < 0)
            return -1;
        h2 = p == 1;
    }
    c->chosen = true;
    if (!h2) {
        if (c->http1)
            return 0;
        conn_fail(c, 505, "HTTP/1.1 is not served on this listener");
        return 1;
    }
    c->h2 = pt_h2_start(c);
    if (!c->h2) {
        pt_err("out of memory for an HTTP/2 session");
        conn_close_soon(c);
        return 1;
    }
    c->state = C_H2;
    return 1;
}

void pt_conn_stream_abort(struct pt_conn *sc)
{
    if (sc->req && !sc->req->reason)
        sc->req->reason = "ClientConnectionFailure";
    conn_free(sc);
}

void pt_conn_h2_closed(struct pt_conn *c)
{
    conn_free(c);
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
            if (!c->chosen && conn_choose(c) != 0)
                break;
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
        pt_conn_req_body(c->req);
        break;
    case C_TUNNEL:
        pt_tunnel_pump(c->req, true);
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
            pt_upstream_close(req->up);
        if (!req->resp_head_sent || req->status == 0) {
            req->status = 499;
            req->reason = req->reason ? req->reason : "ClientConnectionFailure";
        } else if (!req->reason)
            req->reason = "ClientConnectionFailure";
        log_request(req);
        req_free(req);
    }
    pt_timer_clear(&c->timer);
    pt_list_del(&c->link);
    if (c->h2) {
        pt_h2_free(c->h2); /* its streams end first: they borrow this connection's TLS */
        c->h2 = NULL;
    }
    pt_io_free(c->io);
    bool stream = c->stream;
    free(c);
    if (!stream)
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
                pt_upstream_read(c->req);
        }
        return;
    case C_BODY:
        if (c->req && c->req->up) {
            /* an early response streaming while the body still comes */
            pt_io_read(c->req->up->io, true);
            if (evbuffer_get_length(c->req->up->io->in))
                pt_upstream_read(c->req);
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
    if (c->state == C_H2) {
        if (!pt_h2_io(c->h2, what))
            conn_free(c);
        return;
    }
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
            if (!(what & PT_IO_ERROR) && pt_tunnel_client_done(c->req))
                return;
            pt_tunnel_end(c->req);
            if (c->state == C_CLOSING)
                conn_free(c);
            return;
        }
        /* a stream's error is a reset by the client: its session counts and limits those, a line each
           would let a client fill the log */
        if (c->req && what & PT_IO_ERROR && !c->stream)
            pt_info("client %s: %s", c->peer.ip, pt_io_errmsg(io));
        conn_free(c);
    }
}

static void conn_timer(struct pt_tnode *t, int kind)
{
    struct pt_conn *c = pt_container_of(t, struct pt_conn, timer);
    switch (kind) {
    case PT_T_HEADER:
        if (!c->h2 && c->state == C_HEAD && (c->scan.off || evbuffer_get_length(c->io->in))) {
            conn_fail(c, 408, "request head not received in time");
            return;
        }
        conn_free(c);
        return;
    case PT_T_BODY:
        if (c->req && c->state == C_BODY && !c->req->resp_head_sent) {
            pt_conn_req_error(c->req, 408, "RequestTimeout", "request body not received in time");
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

void pt_conn_drain(struct pt_worker *w)
{
    struct pt_list *it = w->conns.next;
    while (it != &w->conns) {
        struct pt_conn *c = pt_container_of(it, struct pt_conn, link);
        it = it->next;
        if (c->state == C_H2)
            pt_h2_drain(c->h2);
        else if (c->state == C_HEAD && !c->stream && !c->req && c->scan.off == 0 &&
                 evbuffer_get_length(c->io->in) == 0)
            conn_free(c);
    }
}

void pt_conn_stop(struct pt_worker *w)
{
    while (!pt_list_empty(&w->conns))
        conn_free(pt_container_of(w->conns.next, struct pt_conn, link));
    pt_upstream_free_pools(w);
    while (w->free_reqs) {
        struct pt_req *r = w->free_reqs;
        w->free_reqs = r->next_free;
        pt_pool_free(r->pool);
        free(r);
    }
    w->nfree_reqs = 0;
}
