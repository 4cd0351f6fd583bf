/*
 * pt_msg -- a request's exchange: its two messages and what policies do to
 * them.
 *
 * This layer sits below the Lua runtime, the pipeline driver, the core's
 * policies and the connection layer, and is the one place where a message
 * changes: a new response, a body, a header, the status, variables, the
 * request's error record (context.LastError) and the gateway's JSON error
 * body.  The connection layer registers what it must do when a message
 * changes under it (pt_msg_hooks.backend_close: a backend response still
 * streaming is dropped), and the pipeline driver how an error is located
 * (pt_msg_hooks.error_where: section, statement path, policy id, scope).
 */
#ifndef PT_MSG_H
#define PT_MSG_H

#include "base/pt.h"
#include "base/pt_pool.h"
#include "conf/pt_router.h"
#include "http/pt_http.h"

#include <portico/plugin.h>

#include <netinet/in.h>

struct pt_apidef;
struct pt_backend;
struct pt_backdef;
struct pt_redirect_from;
struct pt_block;
struct pt_clientcert;
struct pt_conn;
struct pt_gen;
struct pt_io;
struct pt_lua;
struct pt_operation;
struct pt_pipeline;
struct pt_product;
struct pt_stmt;
struct pt_subscription;
struct pt_upconn;
struct event_base;
struct evbuffer;

/* A generation as one worker sees it: counted users, and the expressions
   compiled into the worker's Lua state. */
struct pt_wgen {
    struct pt_gen *gen;
    unsigned users;
    struct pt_wgen *next;
    int *lua_refs; /* compiled expressions in this worker's Lua state */
    int nlua;
    uint64_t lua_epoch; /* the state they were compiled in */
};

/* What a request may know of the connection and the worker that carry it
   (filled in by the connection layer when the connection is accepted). */
struct pt_peer {
    struct pt_io *io;        /* the client's connection: its TLS session */
    struct event_base *base; /* the worker's event loop: policy timers */
    struct pt_lua *lua;      /* the worker's Lua runtime */
    uint64_t *rng;           /* the worker's random state */
    int worker;              /* the worker's number */
    bool tls;
    bool h2; /* an HTTP/2 stream */
    char ip[INET6_ADDRSTRLEN];
};

/* How the response body is framed towards the client. */
enum out_mode { OUT_NONE, OUT_LENGTH, OUT_CHUNKED, OUT_EOF };

/* ---- the pipeline driver's state for one request (policy/pt_pipeline.c) ---- */

#define PT_EXEC_DEPTH 32

struct pt_frame {
    const struct pt_block *b;
    int i;
    const struct pt_stmt *owner; /* choose / retry / wrapping statement, NULL for a section */
    int aux;                     /* retry: attempts made */
};

struct pt_lane; /* one child of a running wait (policy/pt_pipeline.c) */
struct pt_waitrun;
struct pt_work;

struct pt_call {
    struct pt_req *req;
    const struct pt_stmt *stmt;
    const char *name;     /* the running statement's policy name (errors are reported under it) */
    int section;          /* PT_SEC_* */
    pt_msg current;       /* what PT_MSG_CURRENT means now */
    struct pt_lane *lane; /* a lane of wait: its own call (NULL: the pipeline's) */
};

/* A plugin's callback for the end of the request or its response. */
struct pt_hook {
    struct pt_hook *next;
    void (*end)(void *arg, int status, uint64_t bytes_in, uint64_t bytes_out);
    void (*resp)(pt_call *call, void *arg);
    void *arg;
    const struct pt_stmt *stmt;
    const pt_call *call; /* at_response: the lane's call that registered it (NULL: not a lane's) */
};

struct pt_lasterror {
    const char *source;
    const char *reason;
    const char *message;
    const char *section;
    const char *path;
    const char *policy_id;
    int scope;
    int status; /* the status the gateway's own error response gets */
};

struct pt_var {
    pt_str name;
    pt_str value;                    /* PT_VAR_RESPONSE: empty */
    int type;                        /* PT_VAR_* */
    const struct pt_http_resp *resp; /* PT_VAR_RESPONSE: the response, in the request arena */
};

/* PT_VAR_RESPONSE: a response object (send-request's response-variable-name), read in
   expressions as context.variables[name] with the shape of context.response. */
enum { PT_VAR_STRING, PT_VAR_NUMBER, PT_VAR_BOOL, PT_VAR_NIL, PT_VAR_RESPONSE };

struct pt_statestash {
    const struct pt_stmt *stmt;
    void *state;
    struct pt_statestash *next;
};

struct pt_exec {
    const struct pt_pipeline *pl;
    int section;
    struct pt_frame st[PT_EXEC_DEPTH];
    int depth;
    bool running; /* inside the driver loop */
    bool waiting; /* a statement returned PT_AGAIN */
    bool resume_pending;
    pt_status resume_status;
    int need_body; /* PT_MSG_REQUEST / PT_MSG_RESPONSE while a body is read */
    bool in_error; /* running on-error */
    bool has_error;
    bool done;
    bool respond;                       /* done: the response goes out when the driver returns */
    bool moved;                         /* the statement that returned pushed a frame (choose, retry, ...) */
    bool oom_answered;                  /* the arena failed: the 500 OutOfMemory is the response */
    int retry_attempts;                 /* a retry waiting between attempts: the attempts made */
    const struct pt_stmt *wrap_waiting; /* a wrapping policy whose run() returned PT_AGAIN */
    struct pt_lasterror err;
    struct pt_call call;
    struct pt_statestash *stash;
    struct pt_timer *timers;   /* live timers of this request */
    struct pt_waitrun *wait;   /* the wait statement running its lanes (NULL: none) */
    struct pt_lane *lane_cur;  /* the lane whose statement runs now (errors are located in it) ... */
    struct pt_call *lane_call; /* ... and its call (errors are reported under its policy's name) */
    struct pt_work *works;     /* asynchronous work of the request's calls, cancelled when abandoned */
};

/* OpenTelemetry (http/pt_otel.c): a request's trace context. */
struct pt_otel_rec;
struct pt_otel_ctx {
    uint8_t trace[16];
    uint8_t parent[8];       /* the caller's span (all zeros: the trace starts here) */
    uint8_t span[8];         /* the request's SERVER span */
    uint8_t backend[8];      /* the backend call's CLIENT span, named in the traceparent sent */
    uint8_t flags;           /* the trace flags sent on (bit 0: sampled) */
    bool on;                 /* a traceparent goes to the backend */
    bool drop_state;         /* the client's tracestate is not passed on */
    struct pt_otel_rec *rec; /* sampled and exported: the spans' times, in the arena */
};

/* The proxy policy's choice for forward-request (13): the proxy's address and its credentials. */
struct pt_fwdproxy {
    struct pt_backend *be; /* the proxy (http://host:port) */
    pt_str auth;           /* "Basic ..." for Proxy-Authorization; empty: none */
};

/* Request body state */
enum { RB_STREAM, RB_BUFFERED, RB_REPLACED };

/* forward-request http-version */
/* forward-request http-version; PT_FWD_API (not written): 2 for an API of apiType grpc, else 1 */
enum { PT_FWD_H1, PT_FWD_H2_OR1, PT_FWD_H2, PT_FWD_API };

struct pt_req {
    struct pt_req *next_free;
    struct pt_pool *pool;
    struct pt_conn *c;          /* the connection layer's own: opaque below it */
    const struct pt_peer *peer; /* what the request may know of its connection */
    struct pt_wgen *wg;
    struct pt_head h;
    struct pt_match m;
    struct pt_apidef *api;
    struct pt_operation *op;
    const struct pt_product *product;        /* the product context, if any */
    const struct pt_subscription *sub;       /* the subscription of the key, if any */
    pt_str key;                              /* the key the call carried (in the head) */
    const struct pt_clientcert *client_cert; /* presented to the backend (authentication-certificate) */
    bool preflight_candidate;   /* OPTIONS + Origin + Access-Control-Request-Method, no OPTIONS operation */
    bool preflight;             /* ... and inbound has a PT_POLICY_PREFLIGHT statement: only those run */
    struct pt_hook *end_hooks;  /* api->at_end, run when the request is logged */
    struct pt_hook *resp_hooks; /* api->at_response, run before the response head */
    struct pt_upconn *up;
    struct pt_head rh;
    bool rh_done;    /* rh holds a response (from the backend or built by policies) */
    bool rh_backend; /* ... and it came from the backend, whose body may still stream */
    /* what goes to the backend */
    pt_str bpath; /* path after the service URL (starts with '/' or is empty) */
    pt_str bquery;
    struct pt_backend *be;
    const struct pt_backdef *bdef;    /* the backend entity it goes to (backendId, set-backend-service);
                                         a pool's member is picked at forward (pt_upstream_pick) */
    const struct pt_fwdproxy *fproxy; /* the proxy policy's HTTP proxy; NULL: direct */
    /* request body */
    int64_t req_left;
    uint64_t req_payload;
    struct pt_chunked req_ch;
    int8_t req_trailers; /* a chunked body to the backend: its end with the trailers (1) or without (-1),
                            decided once (0: not yet), whatever protocol the backend connection turns to */
    bool req_done;
    int req_body_state;        /* RB_* */
    struct evbuffer *req_body; /* buffered or replaced body */
    bool req_buffering;        /* reading the body into req_body */
    /* response body */
    enum pt_body resp_in;
    int64_t resp_left;
    struct pt_chunked resp_ch;
    enum out_mode resp_out;
    bool resp_head_sent;
    struct evbuffer *resp_body; /* buffered or replaced response body */
    bool resp_buffering;        /* reading the backend body into resp_body */
    bool resp_replaced;
    bool keep;      /* the client connection stays open after this response */
    bool upload_on; /* full duplex: the response is complete, the request body still goes to the backend */
    /* retry */
    char *uphead;
    size_t uphead_n;
    bool retried;
    uint32_t fwd_timeout;       /* forward-request timeout, ms (0 = upstream.readTimeout) */
    struct pt_timer *fwd_timer; /* ... its deadline for the response head */
    bool fwd_fail_on_status;
    bool fwd_follow;                  /* forward-request follow-redirects */
    uint8_t fwd_http2;                /* forward-request http-version: PT_FWD_H1, PT_FWD_H2_OR1, PT_FWD_H2 */
    uint8_t redirects;                /* ... followed so far */
    const struct pt_backdef *brk_def; /* the backend whose circuit breaker counts this call's outcome */
    struct pt_redirect_from *redir;   /* where the first followed redirect started (a retry goes back) */
    /* policies */
    struct pt_exec ex;
    struct pt_var *vars;
    int nvars, capvars;
    int lua_thread; /* registry reference of this request's coroutine (0 = none) */
    uint64_t lua_epoch;
    uint64_t lua_serial; /* this request's serial for Lua objects that name it (0: none given yet) */
    /* accounting */
    uint64_t t0, tb0, tb1;
    uint64_t wall0;
    uint64_t bytes_in, bytes_out;
    int status;
    int backend_status; /* the status line the backend sent (0: none): the access log's backendStatus */
    const char *reason;
    char id[129];
    size_t idn;
    /* OpenTelemetry (http/pt_otel.c) */
    struct pt_otel_ctx otel;
    /* tracing (debug traces, http/pt_trace.c): NULL for a request that is not traced, the one
       test the pipeline driver makes per statement */
    struct pt_trace *trace;
    uint8_t trace_flags; /* PT_TRACE_F_*: what the response says about tracing (0: nothing) */
    /* analytics (proxy/pt_analytics.c) */
    uint8_t cache_status; /* 0 none, 1 hit, 2 miss (set by the caching policies) */
};

static inline struct pt_gen *req_gen(const struct pt_req *req)
{
    return req->wg->gen;
}

/* ---- names ---- */

enum pt_section_index { PT_SEC_INBOUND, PT_SEC_BACKEND, PT_SEC_OUTBOUND, PT_SEC_ON_ERROR, PT_SEC_COUNT };
#define PT_SCOPE_COUNT 5

/* Section names, by PT_SEC_*: "inbound", "backend", "outbound", "on-error". */
extern const char *const pt_msg_section_names[PT_SEC_COUNT];
/* Scope names, by bit (PT_SCOPE_GLOBAL = 1 << 0 ...): the name context.LastError.Scope
   reports ("api") and the label configuration messages use ("API"). */
struct pt_scope_name {
    const char *name;
    const char *label;
};
extern const struct pt_scope_name pt_msg_scope_names[PT_SCOPE_COUNT];
/* The entry for a scope given as its bit; an empty one for 0. */
const struct pt_scope_name *pt_msg_scope_of(int scope);

/* ---- what the layers above register ---- */

struct pt_msg_hooks {
    /* the connection layer: close the backend connection of a response that
       policies replace (req->up); sets req->up to NULL */
    void (*backend_close)(struct pt_req *req);
    /* the pipeline driver: where the error happens (section, path, policy id, scope) */
    void (*error_where)(struct pt_req *req, struct pt_lasterror *e);
};
extern struct pt_msg_hooks pt_msg_hooks;

/* ---- messages ---- */

/* Starts a response built by policies: status, no headers, empty body.  A
   backend response still streaming is dropped. */
void pt_msg_new_response(struct pt_req *req, int status, pt_str reason);
/* The response, started (an empty 200) if there is none yet. */
struct pt_head *pt_msg_response(struct pt_req *req);
/* A message's head: the request's, or the response (started if there is none). */
struct pt_head *pt_msg_head(struct pt_req *req, pt_msg m);
/* Drops what came from the backend (a retry repeats the call; a policy
   replaced the response): its connection, head and body. */
void pt_msg_drop_backend(struct pt_req *req);
/* Replaces a message's body. */
void pt_msg_set_body(struct pt_req *req, pt_msg which, pt_str body);
/* Is the message's body still unread (streaming)?  A policy that needs it
   suspends until the connection layer has read it into memory. */
bool pt_msg_body_unread(const struct pt_req *req, pt_msg which);
/* The name errors are reported under: the running statement's policy, else `fallback`. */
const char *pt_msg_source(const struct pt_req *req, const char *fallback);
/* Sets the response status (and reason); -1 with the error recorded under
   `source` for a code outside 100..999 or a reason with control characters. */
int pt_msg_set_status(struct pt_req *req, int code, pt_str reason, const char *source);
/* The gateway's own header rules, shared by policies and return-response:
   token names, values without control characters, framing headers refused.
   -1 with the error recorded when refused. */
int pt_msg_header_set(struct pt_req *req, pt_msg m, pt_bytes name, const pt_bytes *values, int n,
                      pt_header_mode mode);
/* The response becomes the gateway's own error: `status` with a JSON body
   {"statusCode": N, "message": "..."}. */
void pt_msg_error_response(struct pt_req *req, int status, const char *message);
/* The JSON error body alone, into b. */
void pt_msg_error_body(struct pt_buf *b, int status, const char *message);

/* When the request's arena failed an allocation (limits.requestMemory, or
   malloc), the response becomes the gateway's 500 with the reason
   OutOfMemory (once) and true is returned; false otherwise. */
bool pt_msg_out_of_memory(struct pt_req *req);

/* ---- variables (context.Variables) ---- */

/* Sets a variable (type PT_VAR_*); later sets win.  Copied into the request arena. */
void pt_msg_var_set(struct pt_req *req, pt_str name, int type, pt_str value);
const struct pt_var *pt_msg_var_get(const struct pt_req *req, pt_str name);
/* Sets a variable to a response object (PT_VAR_RESPONSE): status, reason, headers and body are
   copied into the request arena (bounded by limits.requestMemory like everything there).  A NULL
   resp sets the variable to nil.  -1 when a header name is not a token or a value or the reason
   holds control characters (nothing is set then), or when the arena failed. */
int pt_msg_var_set_response(struct pt_req *req, pt_str name, const struct pt_http_resp *resp);
/* The response held in variable name; NULL when it holds none (missing, nil, or not a response). */
const struct pt_http_resp *pt_msg_var_response(const struct pt_req *req, pt_str name);

/* ---- the error record (context.LastError) ---- */

/* Records the request's error; where it happened comes from the pipeline driver. */
void pt_msg_set_error(struct pt_req *req, int status, const char *source, const char *reason,
                      const char *message);

#endif
