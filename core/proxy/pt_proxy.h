/*
 * pt_proxy -- what the files of the connection layer (core/proxy/) offer
 * each other.  Nothing outside core/proxy/ includes it; the worker sees the
 * layer through proxy/pt_worker.h.
 */
#ifndef PT_PROXY_H
#define PT_PROXY_H

#include "proxy/pt_req.h"

#include <stdatomic.h>

#define HIGH_WATER (256 * 1024)
/* The same for the response output of one HTTP/2 stream: a connection carries up to
   limits.http2.maxConcurrentStreams of them, each of which a client can leave with its window shut. */
#define H2_STREAM_HIGH_WATER (64 * 1024)
#define RESPONSE_HEAD_MAX (64 * 1024)
#define RESPONSE_HEADERS_MAX 256
#define FREE_REQS_MAX 256
#define INTERIM_MAX 16 /* 1xx responses before the final one */

/* ---- pt_conn.c: client connections and requests ---- */

void pt_conn_send_continue(struct pt_req *req);
void pt_conn_req_body(struct pt_req *req);
void pt_conn_req_finish(struct pt_req *req);
void pt_conn_req_error(struct pt_req *req, int status, const char *reason, const char *message);
void pt_conn_init(void);
void pt_conn_accept(struct pt_worker *w, int fd, const struct sockaddr *sa, int socklen, int li);
void pt_conn_drain(struct pt_worker *w);
void pt_conn_stop(struct pt_worker *w);
/* HTTP/2 (pt_h2.c): a stream's connection over stream io (NULL when out of memory); a stream's
   connection ended at once, as when its client leaves; the session of c is over (c is freed). */
struct pt_conn *pt_conn_stream_open(struct pt_conn *parent, struct pt_io *io);
void pt_conn_stream_abort(struct pt_conn *sc);
void pt_conn_h2_closed(struct pt_conn *c);

/* ---- pt_access.c: the access decision ---- */

/* Why a request is refused. */
struct pt_access_refusal {
    int status;
    const char *reason, *message;
};
const struct pt_access_refusal *pt_access_check_key(struct pt_req *req);
enum pt_route_result pt_access_match_version(struct pt_req *req);
enum pt_route_result pt_access_match_soap(struct pt_req *req);
bool pt_access_protocol_allowed(const struct pt_api_cf *ac, bool tls);
const struct pt_pipeline *pt_access_pipeline(const struct pt_req *req);
uint64_t pt_access_body_limit(struct pt_req *req);
/* Whether a request is for a status path: /status-0123456789abcdef (the
   process serves: 200) or /internal-status-0123456789abcdef (ready: 200,
   else 503); only GET and HEAD are. */
enum pt_access_status { PT_ACCESS_STATUS_NONE, PT_ACCESS_STATUS_LIVE, PT_ACCESS_STATUS_READY };
enum pt_access_status pt_access_status_path(pt_str method, pt_str path);
#define PT_ACCESS_STATUS_LIVE_LEN 24  /* strlen("/status-0123456789abcdef") */
#define PT_ACCESS_STATUS_READY_LEN 33 /* strlen("/internal-status-0123456789abcdef") */

/* ---- pt_worker.c ---- */

/* pt_workers_ready()'s flag, for the request path's relaxed load. */
extern atomic_bool pt_worker_ready_flag;

/* ---- pt_upstream.c: the backend side ---- */

void pt_upstream_free_pools(struct pt_worker *w);
/* One connection of the pool ended (an HTTP/2 session's). */
void pt_upstream_pool_unref(struct pt_upool *p);
void pt_upstream_close(struct pt_upconn *u);
void pt_upstream_release(struct pt_upconn *u, bool reusable);
void pt_upstream_timer_stop(struct pt_req *req);
void pt_upstream_close_for(struct pt_req *req);
/* The target of req->bdef into req->be (a pool's member: pt_balance); false with the request's error set
   (503 BackendUnavailable when the backend is tripped or down). */
bool pt_upstream_pick(struct pt_req *req);
pt_status pt_upstream_forward(struct pt_req *req);
void pt_upstream_read(struct pt_req *req);

/* ---- pt_balance.c: pools and circuit breakers on the request path ---- */

/* Before a backend call to the entity d (NULL: none): a pool's member is
   chosen (req->be set), or an unavailable backend is refused (PT_ERROR,
   503 BackendUnavailable, Retry-After). */
pt_status pt_balance_choose(struct pt_req *req, const struct pt_backdef *d);
/* After it: the response's status, or the reason of a call without one. */
void pt_balance_outcome(struct pt_req *req, int status, const char *reason);

/* ---- pt_redirect.c: forward-request's follow-redirects ---- */

#define PT_REDIRECT_MAX 10 /* redirects followed per forward-request */
/* When the backend's response is a redirect to follow: req->be, bpath, bquery
   (and the method, the body) are set for the next call and true is
   returned; false when the client gets the response (*why says why, when
   a redirect was not followed). */
bool pt_redirect_follow(struct pt_req *req, const char **why);
/* A new forward-request (or a retry of it) after redirects were followed:
   the target, path and query go back to where the first call went. */
void pt_redirect_restore(struct pt_req *req);
/* The hop's overlay on the client's request (which stays as it came): its method, whether it goes
   without a body, whether header x is not sent on it, whether the origin changed (no client
   certificate), and what is left of forward-request's timeout *ms (false: nothing). */
pt_str pt_redirect_method(const struct pt_req *req);
bool pt_redirect_no_body(const struct pt_req *req);
bool pt_redirect_hides(const struct pt_req *req, const struct pt_hdr *x);
bool pt_redirect_crossed(const struct pt_req *req);
bool pt_redirect_time_left(const struct pt_req *req, unsigned *ms);

/* ---- pt_respond.c: the response to the client ---- */

const char *pt_respond_reason_code(int status);
size_t pt_respond_error(struct evbuffer *out, struct pt_pool *pool, int status, const char *message,
                        bool head_only, bool close, pt_str idname, pt_str reqid, pt_str extra);
/* A complete response of the gateway's own: the status, a body (none when
   body.len is 0) of type ctype, the request id, `extra` header lines (CRLF
   between them, none after; validated by the caller: constants only);
   returns the bytes written. */
size_t pt_respond_plain(struct evbuffer *out, struct pt_pool *pool, int status, const char *ctype,
                        pt_str body, bool head_only, bool close, pt_str idname, pt_str reqid, pt_str extra);
void pt_respond_request_id(struct pt_buf *b, struct pt_req *req, struct pt_head *rh);
void pt_respond_body_done(struct pt_req *req);
void pt_respond_backend_failed(struct pt_req *req, int status, const char *reason, const char *msg);
void pt_respond_body(struct pt_req *req);
void pt_respond(struct pt_req *req);

/* ---- pt_tunnel.c: WebSocket tunnels ---- */

void pt_tunnel_pump(struct pt_req *req, bool from_client);
void pt_tunnel_start(struct pt_req *req);
void pt_tunnel_shut_when_sent(struct pt_io *io);
bool pt_tunnel_client_done(struct pt_req *req);
void pt_tunnel_end(struct pt_req *req);

/* ---- pt_accesslog.c: the access log ---- */

/* The request's access-log line (JSON, secrets redacted) into out, from the
   request arena; `second` is "YYYY-MM-DDTHH:MM:SS." for the wall time. */
void pt_accesslog_line(struct pt_req *req, const char *second, uint64_t wall, struct pt_buf *out);
/* The request's query with the values of secret parameters (the subscription
   key's, the API's secretQueryParameters) written as REDACTED; the query
   itself when there is none, else a copy in the request arena. */
pt_str pt_accesslog_redact_query(struct pt_req *req);

#endif
