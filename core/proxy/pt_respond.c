/*
 * pt_respond -- the response to the client: the head, the body streamed from
 * the backend or held in memory, and the gateway's own error responses.
 */
#include "base/pt_log.h"
#include "base/pt_url.h"
#include "conf/pt_router.h"
#include "event/pt_io.h"
#include "event/pt_tls.h"
#include "http/pt_http.h"
#include "http/pt_msg.h"
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

/* Reason codes recorded for errors of the HTTP layer itself. */
const char *pt_respond_reason_code(int status)
{
    switch (status) {
    case 400:
        return "BadRequest";
    case 405:
        return "MethodNotAllowed";
    case 408:
        return "RequestTimeout";
    case 413:
        return "RequestEntityTooLarge";
    case 414:
        return "UriTooLong";
    case 417:
        return "ExpectationFailed";
    case 431:
        return "RequestHeaderFieldsTooLarge";
    case 501:
        return "NotImplemented";
    case 505:
        return "HttpVersionNotSupported";
    }
    return "Error";
}

/* Writes a complete JSON error response {"statusCode": N, "message": "..."}. */
size_t pt_respond_error(struct evbuffer *out, struct pt_pool *pool, int status, const char *message,
                        bool head_only, bool close, pt_str idname, pt_str reqid, pt_str extra)
{
    struct pt_buf body;
    pt_buf_init(&body, pool, 128);
    pt_msg_error_body(&body, status, message);
    return pt_respond_plain(out, pool, status, "application/json", (pt_str){body.p, body.n}, head_only, close,
                            idname, reqid, extra);
}

size_t pt_respond_plain(struct evbuffer *out, struct pt_pool *pool, int status, const char *ctype,
                        pt_str body, bool head_only, bool close, pt_str idname, pt_str reqid, pt_str extra)
{
    struct pt_buf b;
    pt_buf_init(&b, pool, 256 + body.len + extra.len);
    pt_buf_lit(&b, "HTTP/1.1 ");
    pt_buf_u64(&b, (uint64_t)status);
    pt_buf_lit(&b, " ");
    pt_buf_add(&b, pt_http_reason(status), strlen(pt_http_reason(status)));
    if (body.len) {
        pt_buf_lit(&b, "\r\nContent-Type: ");
        pt_buf_add(&b, ctype, strlen(ctype));
    }
    pt_buf_lit(&b, "\r\nContent-Length: ");
    pt_buf_u64(&b, body.len);
    if (reqid.len && idname.len) {
        pt_buf_lit(&b, "\r\n");
        pt_buf_str(&b, idname);
        pt_buf_lit(&b, ": ");
        pt_buf_str(&b, reqid);
    }
    if (extra.len) {
        pt_buf_lit(&b, "\r\n");
        pt_buf_str(&b, extra);
    }
    if (close)
        pt_buf_lit(&b, "\r\nConnection: close");
    pt_buf_lit(&b, "\r\n\r\n");
    if (!head_only)
        pt_buf_add(&b, body.data, body.len);
    evbuffer_add(out, b.p, b.n);
    return b.n;
}

/* The request id goes back to the client in upstream.requestIdHeader
   (unless the response carries that header already): what the client
   quotes is what the access log and the backend saw. */
void pt_respond_request_id(struct pt_buf *b, struct pt_req *req, struct pt_head *rh)
{
    if (PT_UNLIKELY(req->trace_flags != 0))
        pt_trace_response_headers(b, req); /* Apim-Trace-Id and the like */
    pt_str name = pt_str_c(req_gen(req)->conf->upstream.request_id_header);
    if (!name.len || !req->idn)
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
    if (rh->reason.len && pt_http_value_ok(rh->reason))
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
    pt_respond_request_id(b, req, rh);
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
void pt_respond_body_done(struct pt_req *req)
{
    struct pt_upconn *u = req->up;
    if (req->upload_on)
        return; /* the exchange ends with the upload */
    req->tb1 = pt_clock_now_us();
    if (!req->req_done && u && u->h2 && req->c->stream && !req->resp_buffering && !pt_h2up_closed(u->h2)) {
        /* both legs are HTTP/2 and the client still sends (a gRPC stream): its body goes on to the
           backend, and the exchange ends when it has (pt_conn_req_body), or when the backend closes its
           stream (up_h2_closed) */
        req->upload_on = true;
        pt_io_flush(req->c->io);
        return;
    }
    if (!req->req_done)
        req->keep = false; /* the backend answered before the whole body came */
    if (u)
        pt_upstream_release(u, req->rh.keepalive && req->req_done && req->resp_in != PT_BODY_EOF);
    if (req->resp_buffering) {
        /* read for a policy: the pipeline goes on */
        req->resp_buffering = false;
        req->resp_in = PT_BODY_NONE;
        pt_pipeline_body_ready(req, true);
        return;
    }
    pt_io_flush(req->c->io);
    pt_conn_req_finish(req);
}

/* The backend connection failed while the pipeline waited for it. */
void pt_respond_backend_failed(struct pt_req *req, int status, const char *reason, const char *msg)
{
    struct pt_conn *c = req->c;
    pt_balance_outcome(req, 0, reason); /* a call without a response: its reason counts */
    pt_upstream_timer_stop(req);
    if (req->up)
        pt_upstream_close(req->up);
    if (req->resp_head_sent) {
        req->reason = reason;
        req->keep = false;
        pt_conn_req_finish(req); /* the head is out: an incomplete body is the only signal left */
        return;
    }
    if (!req->req_done) {
        req->keep = false; /* the rest of the request body stays unread */
        c->state = C_WAIT;
        pt_io_read(c->io, false);
        pt_timer_clear(&c->timer);
    }
    if (req->tb0 && !req->tb1)
        req->tb1 = pt_clock_now_us();
    pt_msg_set_error(req, status, "forward-request", reason, msg);
    if (req->resp_buffering) {
        req->resp_buffering = false;
        pt_pipeline_body_ready(req, false);
        return;
    }
    pt_pipeline_resume(req, PT_ERROR);
}

/*
 * Moves response body bytes from the backend: to the client (re-framed),
 * or into req->resp_body when a policy asked to read it (resp_buffering).
 */
void pt_respond_body(struct pt_req *req)
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
        /* re-chunked: the backend's trailer fields go to the client with the last chunk (a body a policy
           reads, or an HTTP/1.0 client's, goes without them) */
        req->resp_ch.end_to = rechunk ? out : NULL;
        for (;;) {
            struct pt_http_err err = {502, NULL};
            ssize_t r = pt_http_chunked_next(&req->resp_ch, in, &err);
            if (r > 0) {
                if (rechunk) {
                    char hdr[24];
                    int hn = snprintf(hdr, sizeof(hdr), "%zx\r\n", (size_t)r);
                    evbuffer_add(out, hdr, (size_t)hn);
                    evbuffer_remove_buffer(in, out, (size_t)r);
                    evbuffer_add(out, "\r\n", 2);
                } else
                    evbuffer_remove_buffer(in, out, (size_t)r);
                pt_http_chunked_took(&req->resp_ch, (size_t)r);
            } else if (r == PT_CHUNKED_DONE) {
                done = true; /* the last chunk and the trailers went out through end_to */
                break;
            } else if (r == PT_CHUNKED_MORE)
                break;
            else {
                pt_warn("backend %s sent a malformed chunked body: %s", u->pool->key, err.msg);
                if (!buffering)
                    req->bytes_out += evbuffer_get_length(out) - out_before;
                pt_io_flush(c->io);
                pt_respond_backend_failed(req, 502, "BackendConnectionFailure",
                                          "Bad gateway: invalid response from the backend");
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
            pt_respond_backend_failed(
                req, 502, "BackendConnectionFailure",
                "the backend's response is too large to be read by a policy (limits.bufferSize)");
            return;
        }
        if (done)
            pt_respond_body_done(req);
        return;
    }
    req->bytes_out += evbuffer_get_length(out) - out_before;
    if (done) {
        pt_respond_body_done(req);
        return;
    }
    pt_io_flush(c->io);
    if (evbuffer_get_length(out) > (c->stream ? H2_STREAM_HIGH_WATER : HIGH_WATER)) {
        pt_io_read(u->io, false);
        pt_io_want_drain(c->io, true);
        pt_timer_set(c->w, &c->timer, PT_T_SEND);
    }
}

/* Writes a complete response held in memory (rh + pt_respond_body) and ends the request. */
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
    pt_conn_req_finish(req);
}

void pt_respond(struct pt_req *req)
{
    if (!req->rh_done)
        pt_msg_new_response(req, 200, PT_NULL_STR);
    for (struct pt_hook *h = req->resp_hooks; h; h = h->next) {
        if (h->call && pt_pipeline_call_abandoned(h->call))
            continue; /* registered in a lane of wait that lost: its hooks went with it */
        struct pt_call call = {.req = req,
                               .stmt = h->stmt,
                               .name = h->stmt ? h->stmt->name : NULL,
                               .section = PT_SEC_OUTBOUND,
                               .current = PT_MSG_RESPONSE};
        h->resp(&call, h->arg);
    }
    req->resp_hooks = NULL;
    pt_msg_out_of_memory(req); /* a request whose arena failed answers 500, whatever was built */
    if (req->ex.has_error && !req->reason)
        req->reason = req->ex.err.reason;
    if (req->rh_backend && !req->resp_body && !req->resp_replaced && req->up) {
        /* the backend's body streams to the client */
        struct pt_upconn *u = req->up;
        write_response_head(req);
        pt_io_read(u->io, true);
        if (req->resp_in != PT_BODY_NONE)
            pt_timer_set(req->c->w, &u->timer, PT_T_READ);
        pt_respond_body(req);
        return;
    }
    const char *grpc_message = pt_grpc_own_answer(req);
    if (grpc_message) { /* the gateway's own answer, to a gRPC client: a gRPC error */
        pt_conn_req_error(req, req->rh.status, req->reason, grpc_message);
        return;
    }
    if (req->up) {
        /* a backend body nobody read: the connection cannot be reused */
        bool whole = req->rh_backend && req->resp_in == PT_BODY_NONE;
        pt_upstream_release(req->up, whole && req->rh.keepalive && req->req_done);
    }
    write_full_response(req);
}
