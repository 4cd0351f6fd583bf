/*
 * pt_req -- a request's state, shared by the proxy (pt_proxy.c), the
 * pipeline driver (pt_pipeline.c) and the Lua runtime (pt_lua.c).
 * Nothing outside these files includes it.
 */
#ifndef PT_REQ_H
#define PT_REQ_H

#include "policy/pt_gen.h"
#include "http/pt_http.h"
#include "event/pt_io.h"
#include "policy/pt_policy.h"
#include "conf/pt_router.h"
#include "proxy/pt_worker.h"

#include <portico/plugin.h>

#include <netinet/in.h>

enum cstate { C_HEAD, C_BODY, C_WAIT, C_TUNNEL, C_CLOSING, C_LINGER };
enum out_mode { OUT_NONE, OUT_LENGTH, OUT_CHUNKED, OUT_EOF };

struct pt_conn {
    struct pt_list link; /* in w->conns */
    struct pt_tnode timer;
    struct pt_worker *w;
    struct pt_io *io;
    bool tls;
    char ip[INET6_ADDRSTRLEN];
    enum cstate state;
    struct pt_scan scan;
    unsigned nreqs;
    struct pt_req *req;
    bool in_heads; /* inside conn_heads() */
    bool again;    /* a request finished inside conn_heads(): look for the next */
    bool peer_done; /* the client ended its side (a half-closed tunnel): no lingering read */
};

struct pt_upool {
    struct pt_upool *next; /* hash chain */
    char *key;
    uint64_t hash;
    struct pt_list idle; /* most recently used at the tail */
    int nidle;
    /* the backend sent bytes nobody asked for (after a response ended, or
       to an idle connection): its connections are not reused before this
       (pt_now_us) -- one connection per request until then */
    uint64_t distrust_until;
};

struct pt_upconn {
    struct pt_list link; /* in pool->idle while idle */
    struct pt_tnode timer;
    struct pt_worker *w;
    struct pt_upool *pool;
    struct pt_io *io;
    struct pt_req *req;
    struct pt_scan scan;
    bool reused, connected;
    bool broken;  /* the exchange left its framing in doubt: never reuse */
    int interim;  /* 1xx responses dropped for the current request */
};

/* ---- the policy pipeline's state for one request (pt_pipeline.c) ---- */

#define PT_EXEC_DEPTH 32

struct pt_frame {
    const struct pt_block *b;
    int i;
    const struct pt_stmt *owner; /* choose / retry / wrapping statement, NULL for a section */
    int aux;                     /* retry: attempts made */
};

struct pt_call {
    struct pt_req *req;
    const struct pt_stmt *stmt;
    int section;      /* PT_SEC_* */
    pt_msg current;   /* what PT_MSG_CURRENT means now */
};

/* A plugin's callback for the end of the request or its response. */
struct pt_hook {
    struct pt_hook *next;
    void (*end)(void *arg, int status, uint64_t bytes_in, uint64_t bytes_out);
    void (*resp)(pt_call *call, void *arg);
    void *arg;
    const struct pt_stmt *stmt;
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
    pt_str value;
    int type; /* PT_VAR_* */
};

enum { PT_VAR_STRING, PT_VAR_NUMBER, PT_VAR_BOOL, PT_VAR_NIL };

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
    bool running;       /* inside the driver loop */
    bool waiting;       /* a statement returned PT_AGAIN */
    bool resume_pending;
    pt_status resume_status;
    int need_body;      /* PT_MSG_REQUEST / PT_MSG_RESPONSE while a body is read */
    bool in_error;      /* running on-error */
    bool has_error;
    bool done;
    bool respond;       /* done: the response goes out when the driver returns */
    struct pt_lasterror err;
    struct pt_call call;
    struct pt_statestash *stash;
    struct pt_timer *timers; /* live timers of this request */
};

/* Request body state */
enum { RB_STREAM, RB_BUFFERED, RB_REPLACED };

struct pt_req {
    struct pt_req *next_free;
    struct pt_pool *pool;
    struct pt_conn *c;
    struct pt_wgen *wg;
    struct pt_head h;
    struct pt_match m;
    struct pt_apidef *api;
    struct pt_operation *op;
    const struct pt_product *product;     /* the product context, if any */
    const struct pt_subscription *sub;    /* the subscription of the key, if any */
    pt_str key;                           /* the key the call carried (in the head) */
    const struct pt_clientcert *client_cert; /* presented to the backend (authentication-certificate) */
    bool preflight_candidate; /* OPTIONS + Origin + Access-Control-Request-Method, no OPTIONS operation */
    bool preflight;           /* ... and the pipeline has cors in inbound: only cors runs */
    struct pt_hook *end_hooks;            /* api->at_end, run when the request is logged */
    struct pt_hook *resp_hooks;           /* api->at_response, run before the response head */
    struct pt_upconn *up;
    struct pt_head rh;
    bool rh_done;     /* rh holds a response (from the backend or built by policies) */
    bool rh_backend;  /* ... and it came from the backend, whose body may still stream */
    /* what goes to the backend */
    pt_str bpath;     /* path after the service URL (starts with '/' or is empty) */
    pt_str bquery;
    struct pt_backend *be;
    /* request body */
    int64_t req_left;
    uint64_t req_payload;
    struct pt_chunked req_ch;
    bool req_done;
    int req_body_state;           /* RB_* */
    struct evbuffer *req_body;    /* buffered or replaced body */
    bool req_buffering;           /* reading the body into req_body */
    /* response body */
    enum pt_body resp_in;
    int64_t resp_left;
    struct pt_chunked resp_ch;
    enum out_mode resp_out;
    bool resp_head_sent;
    struct evbuffer *resp_body;   /* buffered or replaced response body */
    bool resp_buffering;          /* reading the backend body into resp_body */
    bool resp_replaced;
    bool keep; /* the client connection stays open after this response */
    /* retry */
    char *uphead;
    size_t uphead_n;
    bool retried;
    uint32_t fwd_timeout; /* forward-request timeout, ms (0 = upstream.readTimeout) */
    struct pt_timer *fwd_timer; /* ... its deadline for the response head */
    bool fwd_fail_on_status;
    /* policies */
    struct pt_exec ex;
    struct pt_var *vars;
    int nvars, capvars;
    int lua_thread;  /* registry reference of this request's coroutine (0 = none) */
    uint64_t lua_epoch;
    /* accounting */
    uint64_t t0, tb0, tb1;
    uint64_t wall0;
    uint64_t bytes_in, bytes_out;
    int status;
    int backend_status; /* the status line the backend sent (0: none): the access log's backendStatus */
    const char *reason;
    char id[129];
    size_t idn;
};

static inline struct pt_gen *req_gen(const struct pt_req *req)
{
    return req->wg->gen;
}

/* ---- pt_proxy.c, used by the pipeline ---- */

/* Starts the backend call for the forward-request statement; returns
   PT_AGAIN (pt_exec_resume follows) or PT_ERROR. */
pt_status pt_proxy_forward(struct pt_req *req);
/* The pipeline is finished: send the response (rh and body). */
void pt_proxy_respond(struct pt_req *req);
/* Reads a whole body into memory (limits.bufferSize); pt_exec_body_ready follows. */
void pt_proxy_read_body(struct pt_req *req, pt_msg which);
/* A response the gateway makes itself: rh becomes `status` with a JSON body. */
void pt_proxy_error_response(struct pt_req *req, int status, const char *message);

/* ---- pt_pipeline.c ---- */

void pt_exec_start(struct pt_req *req, const struct pt_pipeline *pl);
/* Does the pipeline's inbound section start CORS handling (a cors statement)? */
bool pt_pipeline_has_cors(const struct pt_pipeline *pl);
void pt_exec_resume(struct pt_req *req, pt_status st);
void pt_exec_body_ready(struct pt_req *req, bool ok);
/* Records the request's error (context.lastError) from the gateway itself. */
void pt_exec_set_error(struct pt_req *req, int status, const char *source, const char *reason,
                       const char *message);
/* Frees what the pipeline holds for a finished request (timers, states). */
void pt_exec_cleanup(struct pt_req *req);
/* The gateway's own header rules, shared by policies and return-response. */
int pt_msg_header_set(struct pt_req *req, pt_msg m, pt_bytes name, const pt_bytes *values, int n,
                      pt_header_mode mode);



/* ---- message helpers (pt_pipeline.c / pt_proxy.c) ---- */
struct pt_luaval;
/* context.variables */
void pt_req_var_set(struct pt_req *req, pt_str name, const struct pt_luaval *v);
const struct pt_var *pt_req_var_get(struct pt_req *req, pt_str name);
/* Starts a response built by policies: status, no headers, empty body.  A
   backend response still streaming is dropped. */
void pt_req_new_response(struct pt_req *req, int status, pt_str reason);
/* Replaces a message's body. */
void pt_req_set_body(struct pt_req *req, pt_msg which, pt_str body);
const char *pt_exec_scope_name(const struct pt_lasterror *e);
#endif
