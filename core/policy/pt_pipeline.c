/*
 * pt_pipeline -- the policy pipeline driver and the gateway API table.
 *
 * The driver runs a request's effective pipeline (pt_pipeline: four flat
 * blocks) with an explicit stack of frames, so that any statement can
 * suspend it: a policy returns PT_AGAIN and later calls api->resume(); the
 * driver continues exactly where it stopped.  forward-request is such a
 * statement (it resumes when the backend's response head has arrived), as
 * is any statement that needs a body that has not been read yet (it runs
 * again once the body is in memory).
 *
 *   inbound -> backend -> outbound -> response
 *        \________\__________\_____ on error: on-error -> response
 *
 * return-response (and anything returning PT_DONE) skips straight to the
 * response.  An error in on-error sends the gateway's own error response.
 */
#include "policy/pt_corepol.h"
#include "event/pt_counters.h"
#include "http/pt_fetch.h"
#include "base/pt_log.h"
#include "lua/pt_lua.h"
#include "proxy/pt_req.h"

#include <event2/buffer.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

struct pt_timer {
    struct event *ev;
    struct pt_req *req;
    void (*fn)(pt_call *call, void *arg);
    void *arg;
    struct pt_timer *next;
    bool retry; /* the driver's own retry wait */
};

static void run(struct pt_req *req);
static void drive(struct pt_req *req);

/* A control statement pushed a frame: the stack already says what is next. */
#define ST_MOVED ((pt_status)100)

/* --------------------------------------------------------------- errors */

static const char *scope_name(int scope)
{
    switch (scope) {
    case PT_SCOPE_GLOBAL: return "global";
    case PT_SCOPE_WORKSPACE: return "workspace";
    case PT_SCOPE_PRODUCT: return "product";
    case PT_SCOPE_API: return "api";
    case PT_SCOPE_OPERATION: return "operation";
    }
    return "";
}

/* "choose[1]/when[2]/set-header[1]": the path of the running statement. */
static const char *current_path(struct pt_req *req)
{
    struct pt_exec *ex = &req->ex;
    struct pt_buf b;
    pt_buf_init(&b, req->pool, 96);
    for (int d = 0; d < ex->depth; d++) {
        const struct pt_frame *f = &ex->st[d];
        if (f->i >= f->b->n)
            continue;
        const struct pt_stmt *s = f->b->s[f->i];
        if (b.n)
            pt_buf_lit(&b, "/");
        if (f->owner && f->owner->kind == PT_ST_CHOOSE) {
            /* the branch: when[k] or otherwise */
            if (f->owner->whens[f->aux].cond) {
                char w[24];
                int k = snprintf(w, sizeof(w), "when[%d]/", f->aux + 1);
                pt_buf_add(&b, w, (size_t)k);
            } else
                pt_buf_lit(&b, "otherwise/");
        }
        pt_buf_add(&b, s->name, strlen(s->name));
        char idx[16];
        int k = snprintf(idx, sizeof(idx), "[%d]", f->i + 1);
        pt_buf_add(&b, idx, (size_t)k);
    }
    pt_buf_add(&b, "", 1);
    return b.p;
}

void pt_exec_set_error(struct pt_req *req, int status, const char *source, const char *reason,
                       const char *message)
{
    struct pt_exec *ex = &req->ex;
    ex->has_error = true;
    ex->err.status = status;
    ex->err.source = source;
    ex->err.reason = reason;
    ex->err.message = message ? pt_pool_strdup(req->pool, message) : "";
    ex->err.section = ex->pl ? pt_section_names[ex->section] : "";
    ex->err.path = ex->pl ? current_path(req) : "";
    const struct pt_stmt *s = ex->call.stmt;
    ex->err.policy_id = s && s->id ? s->id : "";
    ex->err.scope = s ? s->scope : 0;
    req->reason = reason;
}

const char *pt_exec_scope_name(const struct pt_lasterror *e);
const char *pt_exec_scope_name(const struct pt_lasterror *e)
{
    return scope_name(e->scope);
}

/* --------------------------------------------------------- stack helpers */

static bool push(struct pt_req *req, const struct pt_block *b, const struct pt_stmt *owner, int aux)
{
    struct pt_exec *ex = &req->ex;
    if (ex->depth == PT_EXEC_DEPTH) {
        pt_exec_set_error(req, 500, "gateway", "PolicyNestingTooDeep", "policies nested too deeply");
        return false;
    }
    PT_DCHECK(ex->depth >= 0 && b);
    ex->st[ex->depth++] = (struct pt_frame){b, 0, owner, aux};
    return true;
}

static void enter_section(struct pt_req *req, int sec)
{
    struct pt_exec *ex = &req->ex;
    ex->section = sec;
    ex->depth = 0;
    ex->call.section = sec;
    ex->call.current = sec == PT_SEC_INBOUND || sec == PT_SEC_BACKEND ? PT_MSG_REQUEST : PT_MSG_RESPONSE;
    push(req, &ex->pl->sec[sec], NULL, 0);
}

/* The pipeline is over.  The response is sent by drive() once the driver
   has unwound: sending it may end the request and recycle its memory for
   the connection's next request, so nothing may touch req afterwards. */
static void finish(struct pt_req *req)
{
    struct pt_exec *ex = &req->ex;
    ex->done = true;
    ex->respond = true;
    ex->depth = 0;
}

/* Moves to on-error (or, from on-error, to the gateway's error response). */
static void go_error(struct pt_req *req)
{
    struct pt_exec *ex = &req->ex;
    if (!ex->has_error)
        pt_exec_set_error(req, 500, "gateway", "InternalError", "a policy failed");
    pt_proxy_error_response(req, ex->err.status ? ex->err.status : 500,
                            ex->err.status == 500 || !ex->err.status ? "Internal server error" : ex->err.message);
    if (ex->in_error || !ex->pl->sec[PT_SEC_ON_ERROR].n) {
        finish(req);
        return;
    }
    ex->in_error = true;
    enter_section(req, PT_SEC_ON_ERROR);
}

/* A section ended normally. */
static void next_section(struct pt_req *req)
{
    struct pt_exec *ex = &req->ex;
    switch (ex->section) {
    case PT_SEC_INBOUND:
        if (req->preflight) { /* no cors statement answered: an empty 200, the backend is not asked */
            pt_req_new_response(req, 200, PT_NULL_STR);
            finish(req);
            return;
        }
        enter_section(req, PT_SEC_BACKEND);
        return;
    case PT_SEC_BACKEND:
        if (!req->rh_done)
            pt_req_new_response(req, 200, PT_NULL_STR); /* no backend call: an empty 200 */
        enter_section(req, PT_SEC_OUTBOUND);
        return;
    default:
        finish(req);
        return;
    }
}

/* ---------------------------------------------------------------- timers */

static void timer_fire(evutil_socket_t fd, short what, void *arg)
{
    struct pt_timer *t = arg;
    struct pt_req *req = t->req;
    struct pt_timer **pp = &req->ex.timers;
    while (*pp && *pp != t)
        pp = &(*pp)->next;
    if (*pp)
        *pp = t->next;
    event_free(t->ev);
    void (*fn)(pt_call *, void *) = t->fn;
    void *a = t->arg;
    free(t);
    fn(&req->ex.call, a);
}

static pt_timer *timer_start(pt_call *call, uint32_t ms, void (*fn)(pt_call *call, void *arg), void *arg)
{
    struct pt_req *req = call->req;
    struct pt_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->req = req;
    t->fn = fn;
    t->arg = arg;
    t->ev = evtimer_new(req->c->w->base, timer_fire, t);
    /* libevent counts from its cached loop time: refresh it so the wait is never short */
    event_base_update_cache_time(req->c->w->base);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(t->ev, &tv);
    t->next = req->ex.timers;
    req->ex.timers = t;
    return t;
}

static void timer_cancel(pt_timer *t)
{
    if (!t)
        return;
    struct pt_req *req = t->req;
    struct pt_timer **pp = &req->ex.timers;
    while (*pp && *pp != t)
        pp = &(*pp)->next;
    if (*pp)
        *pp = t->next;
    event_free(t->ev);
    free(t);
}

void pt_exec_cleanup(struct pt_req *req)
{
    while (req->ex.timers)
        timer_cancel(req->ex.timers);
    pt_lua_release(req);
}

/* --------------------------------------------------------------- driver */

static bool eval_true(struct pt_req *req, const struct pt_value *v, pt_status *st)
{
    struct pt_luaval out;
    int rc = pt_value_eval(req, v, &out);
    if (rc == PT_AGAIN) {
        *st = PT_AGAIN;
        return false;
    }
    if (rc != 0) {
        *st = PT_ERROR;
        return false;
    }
    *st = PT_OK;
    switch (out.type) {
    case PT_VAR_BOOL: return out.b;
    case PT_VAR_NIL: return false;
    case PT_VAR_NUMBER: return true;
    default: return !(out.s.n == 5 && !strncasecmp(out.s.p, "false", 5)) && out.s.n != 0;
    }
}

static void retry_wake(pt_call *call, void *arg)
{
    struct pt_req *req = call->req;
    const struct pt_stmt *s = arg;
    req->ex.waiting = false;
    struct pt_frame *f = &req->ex.st[req->ex.depth - 1];
    /* the retry frame is on top: run its body once more */
    if (push(req, &s->body, s, f->aux))
        req->ex.st[req->ex.depth - 1].aux = f->aux;
    drive(req);
}

/*
 * The body of a retry ended (normally, or with an error): decide whether to
 * run it again.  Returns the status for the retry statement itself.
 */
static pt_status retry_after(struct pt_req *req, struct pt_frame *f, bool failed)
{
    const struct pt_stmt *s = f->b->s[f->i];
    const struct pt_retry *r = s->data;
    pt_status st;
    bool again = eval_true(req, r->cond, &st);
    if (st == PT_AGAIN)
        return PT_AGAIN;
    if (st == PT_ERROR)
        return PT_ERROR;
    if (!again || f->aux >= r->count)
        return failed ? PT_ERROR : PT_OK;
    f->aux++;
    req->ex.has_error = false;
    uint32_t wait = pt_corepol_retry_wait(r, f->aux, (uint64_t)req->c->w->rng[0] ^ req->t0);
    if (wait == 0) {
        if (!push(req, &s->body, s, f->aux))
            return PT_ERROR;
        return ST_MOVED; /* continue inside the new frame */
    }
    req->ex.waiting = true;
    if (!timer_start(&req->ex.call, wait, retry_wake, (void *)s)) {
        req->ex.waiting = false;
        return PT_ERROR;
    }
    return PT_AGAIN;
}

/* Runs one statement; returns its status.  Control statements push frames. */
static pt_status step(struct pt_req *req, struct pt_frame *f, const struct pt_stmt *s)
{
    struct pt_exec *ex = &req->ex;
    if (req->preflight && !(s->kind == PT_ST_POLICY && s->name && !strcmp(s->name, "cors")))
        return PT_OK;
    ex->call.stmt = s;
    switch (s->kind) {
    case PT_ST_POLICY: {
        pt_status st = s->def->run ? s->def->run(&pt_api_table, &ex->call, s->instance) : PT_OK;
        return st == PT_DECLINED ? PT_OK : st;
    }
    case PT_ST_CHOOSE:
        for (int i = 0; i < s->nwhens; i++) {
            const struct pt_when *w = &s->whens[i];
            pt_status st = PT_OK;
            if (w->cond && !eval_true(req, w->cond, &st)) {
                if (st != PT_OK)
                    return st;
                continue;
            }
            if (!w->body.n)
                return PT_OK;
            /* the choose stays current (for lastError.path) until its branch ends */
            if (!push(req, &w->body, s, i))
                return PT_ERROR;
            return ST_MOVED;
        }
        return PT_OK;
    case PT_ST_RETRY:
        if (!push(req, &s->body, s, 0))
            return PT_ERROR;
        return ST_MOVED;
    case PT_ST_FORWARD: {
        const struct pt_forward *fw = s->data;
        req->fwd_timeout = fw->timeout_ms;
        req->fwd_fail_on_status = fw->fail_on_error_status;
        if (fw->buffer_request_body && req->req_body_state == RB_STREAM && req->h.body != PT_BODY_NONE) {
            ex->need_body = PT_MSG_REQUEST;
            return PT_AGAIN;
        }
        return pt_proxy_forward(req);
    }
    case PT_ST_RETURN_RESPONSE:
        return pt_corepol_return_response(req, &ex->call, s);
    case PT_ST_WRAP: {
        /* a plugin policy with nested statements: its run() decides, then they run */
        pt_status st = s->def->run ? s->def->run(&pt_api_table, &ex->call, s->instance) : PT_OK;
        if (st != PT_OK && st != PT_DECLINED)
            return st;
        if (!push(req, &s->body, s, 0))
            return PT_ERROR;
        return ST_MOVED;
    }
    case PT_ST_BASE:
        return PT_OK;
    }
    return PT_OK;
}

/* Applies a statement's final status; false when the loop must stop. */
static bool apply(struct pt_req *req, pt_status st)
{
    struct pt_exec *ex = &req->ex;
    switch ((int)st) {
    case PT_OK:
    case PT_DECLINED:
        ex->st[ex->depth - 1].i++;
        return true;
    case ST_MOVED:
        return true; /* the statement already moved the stack */
    case PT_DONE:
        finish(req);
        return false;
    case PT_AGAIN:
        if (ex->need_body) {
            pt_msg which = (pt_msg)ex->need_body;
            ex->waiting = true;
            pt_proxy_read_body(req, which);
            return false;
        }
        ex->waiting = true;
        return false;
    case PT_ERROR:
    default:
        /* inside a retry, the attempt ends and the retry decides */
        for (int d = ex->depth - 1; d > 0; d--) {
            struct pt_frame *pf = &ex->st[d - 1];
            const struct pt_stmt *owner = ex->st[d].owner;
            if (owner && owner->kind == PT_ST_RETRY && pf->i < pf->b->n && pf->b->s[pf->i] == owner) {
                ex->depth = d;
                pt_status rs = retry_after(req, pf, true);
                if (rs == PT_ERROR)
                    break;
                return apply(req, rs);
            }
        }
        go_error(req);
        return !ex->done;
    }
}

static void run(struct pt_req *req)
{
    struct pt_exec *ex = &req->ex;
    if (ex->running || ex->done)
        return;
    ex->running = true;
    for (int guard = 0; guard < 100000 && !ex->done; guard++) {
        if (ex->waiting) {
            if (!ex->resume_pending)
                break;
            /* resumed from inside the statement's own run() */
            ex->waiting = false;
            ex->resume_pending = false;
            if (!apply(req, ex->resume_status))
                continue;
            continue;
        }
        if (ex->depth == 0) {
            next_section(req);
            continue;
        }
        struct pt_frame *f = &ex->st[ex->depth - 1];
        if (f->i >= f->b->n) {
            const struct pt_stmt *owner = f->owner;
            ex->depth--;
            if (owner && owner->kind == PT_ST_RETRY) {
                struct pt_frame *pf = &ex->st[ex->depth - 1];
                if (!apply(req, retry_after(req, pf, false)))
                    continue;
            } else if (owner)
                ex->st[ex->depth - 1].i++; /* choose or a wrapping policy: done with its statements */
            continue;
        }
        pt_status st = step(req, f, f->b->s[f->i]);
        apply(req, st);
    }
    ex->running = false;
}

/* Every entry into the pipeline ends here: runs it, then (as the very last
   action) sends the response if the pipeline finished. */
static void drive(struct pt_req *req)
{
    struct pt_exec *ex = &req->ex;
    run(req);
    if (ex->respond && !ex->running) {
        ex->respond = false;
        pt_proxy_respond(req); /* req may be gone after this */
    }
}

/* Does the inbound section hold a cors statement (at its top level)? */
bool pt_pipeline_has_cors(const struct pt_pipeline *pl)
{
    const struct pt_block *b = &pl->sec[PT_SEC_INBOUND];
    for (int i = 0; i < b->n; i++)
        if (b->s[i]->kind == PT_ST_POLICY && b->s[i]->name && !strcmp(b->s[i]->name, "cors"))
            return true;
    return false;
}

void pt_exec_start(struct pt_req *req, const struct pt_pipeline *pl)
{
    struct pt_exec *ex = &req->ex;
    /* a CORS preflight runs the cors statements only (APIM), then gets an empty 200 */
    req->preflight = req->preflight_candidate && pt_pipeline_has_cors(pl);
    ex->pl = pl;
    ex->call.req = req;
    enter_section(req, PT_SEC_INBOUND);
    drive(req);
}

void pt_exec_resume(struct pt_req *req, pt_status st)
{
    struct pt_exec *ex = &req->ex;
    if (ex->done)
        return;
    if (ex->running) {
        ex->resume_pending = true;
        ex->resume_status = st;
        return;
    }
    ex->waiting = false;
    apply(req, st);
    drive(req); /* runs on unless apply finished or suspended the pipeline */
}

void pt_exec_body_ready(struct pt_req *req, bool ok)
{
    struct pt_exec *ex = &req->ex;
    ex->need_body = 0;
    ex->waiting = false;
    if (!ok && !ex->running)
        go_error(req);
    else if (!ok) {
        ex->resume_pending = true; /* inside the driver: it applies the error */
        ex->resume_status = PT_ERROR;
        ex->waiting = true;
        return;
    }
    drive(req); /* the statement that asked runs again from its start */
}

/* -------------------------------------------------------------- messages */

static const char *const separate_lines[] = {
    "user-agent", "www-authenticate", "proxy-authenticate", "cookie", "set-cookie", "warning", "date",
    "expires", "if-modified-since", "if-unmodified-since", "last-modified", "retry-after", NULL};

static const char *const protected_headers[] = {"connection", "content-length", "keep-alive",
                                                "transfer-encoding", NULL};

static bool in_list(const char *const *list, pt_bytes name)
{
    for (int i = 0; list[i]; i++)
        if (pt_str_ieq((pt_str){name.data, name.len}, pt_str_c(list[i])))
            return true;
    return false;
}

static struct pt_head *msg_head(struct pt_req *req, pt_msg m)
{
    if (m == PT_MSG_CURRENT)
        m = req->ex.call.current;
    if (m == PT_MSG_RESPONSE) {
        if (!req->rh_done)
            pt_req_new_response(req, 200, PT_NULL_STR);
        return &req->rh;
    }
    return &req->h;
}

static pt_str pool_str(struct pt_req *req, pt_bytes b)
{
    return (pt_str){pt_pool_strndup(req->pool, b.data ? b.data : "", b.len), b.len};
}

/* The name errors are reported under: the running statement, else the operation. */
static const char *source_name(struct pt_req *req, const char *fallback)
{
    const struct pt_stmt *s = req->ex.call.stmt;
    return s && s->name ? s->name : fallback;
}

int pt_msg_header_set(struct pt_req *req, pt_msg m, pt_bytes name, const pt_bytes *values, int n,
                      pt_header_mode mode)
{
    pt_str nm = {name.data, name.len};
    if (!pt_str_is_token(nm)) {
        pt_exec_set_error(req, 500, source_name(req, "set-header"), "InvalidHeaderName", "invalid header name");
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (!pt_http_value_ok((pt_str){values[i].data, values[i].len})) {
            pt_exec_set_error(req, 500, source_name(req, "set-header"), "InvalidHeaderValue",
                              "header value contains CR, LF, NUL or another control character");
            return -1;
        }
    if (in_list(protected_headers, name)) {
        pt_exec_set_error(req, 500, source_name(req, "set-header"), "ProtectedHeader", "this header is managed by the gateway");
        return -1;
    }
    struct pt_head *h = msg_head(req, m);
    bool is_server = pt_str_ieq(nm, PT_STR("server"));
    struct pt_hdr *existing = NULL;
    for (int i = 0; i < h->nh; i++)
        if (!h->h[i].deleted && !h->h[i].hop && pt_str_ieq(h->h[i].name, nm))
            existing = &h->h[i];
    if (mode == PT_HEADER_DELETE) {
        if (is_server)
            return 0; /* Server stays */
        for (int i = 0; i < h->nh; i++)
            if (pt_str_ieq(h->h[i].name, nm) && (!h->h[i].hop || h->h[i].kind == PT_H_HOST))
                h->h[i].deleted = true;
        return 0;
    }
    if (mode == PT_HEADER_SKIP && existing)
        return 0;
    bool separate = in_list(separate_lines, name);
    if (mode == PT_HEADER_OVERRIDE)
        for (int i = 0; i < h->nh; i++)
            if (pt_str_ieq(h->h[i].name, nm) && (!h->h[i].hop || h->h[i].kind == PT_H_HOST))
                h->h[i].deleted = true;
    pt_str pname = pool_str(req, name);
    if (separate) {
        for (int i = 0; i < n; i++)
            if (!pt_head_add(h, req->pool, pname, pool_str(req, values[i])))
                return -1;
        return 0;
    }
    struct pt_buf b;
    pt_buf_init(&b, req->pool, 64);
    if (mode == PT_HEADER_APPEND && existing) {
        pt_buf_str(&b, existing->value);
        existing->deleted = true;
    }
    for (int i = 0; i < n; i++) {
        if (b.n)
            pt_buf_lit(&b, ", ");
        pt_buf_add(&b, values[i].data, values[i].len);
    }
    struct pt_hdr *x = pt_head_add(h, req->pool, pname, (pt_str){b.p, b.n});
    return x ? 0 : -1;
}

/* Variables live in the request arena; later sets win. */
void pt_req_var_set(struct pt_req *req, pt_str name, const struct pt_luaval *v)
{
    for (int i = 0; i < req->nvars; i++)
        if (pt_str_eq(req->vars[i].name, name)) {
            req->vars[i].value = (pt_str){pt_pool_strndup(req->pool, v->s.p ? v->s.p : "", v->s.n), v->s.n};
            req->vars[i].type = v->type;
            return;
        }
    req->vars = pt_pool_grow(req->pool, req->vars, sizeof(*req->vars), &req->capvars, req->nvars + 1);
    struct pt_var *x = &req->vars[req->nvars++];
    x->name = (pt_str){pt_pool_strndup(req->pool, name.p, name.n), name.n};
    x->value = (pt_str){pt_pool_strndup(req->pool, v->s.p ? v->s.p : "", v->s.n), v->s.n};
    x->type = v->type;
}

const struct pt_var *pt_req_var_get(struct pt_req *req, pt_str name)
{
    for (int i = 0; i < req->nvars; i++)
        if (pt_str_eq(req->vars[i].name, name))
            return &req->vars[i];
    return NULL;
}

/* --------------------------------------------------------------- the API */

static int api_eval(pt_call *call, const pt_value *v, pt_bytes *out)
{
    if (!call) { /* compile time: a literal's text */
        if (v->expr)
            return -1;
        *out = (pt_bytes){v->text ? v->text : "", v->len};
        return 0;
    }
    struct pt_luaval r;
    int rc = pt_value_eval(call->req, v, &r);
    if (rc == PT_AGAIN)
        return PT_AGAIN;
    if (rc != 0)
        return -1;
    *out = (pt_bytes){r.s.p ? r.s.p : "", r.s.n};
    return 0;
}

static int api_eval_bool(pt_call *call, const pt_value *v, int *out)
{
    pt_status st;
    bool b = eval_true(call->req, v, &st);
    if (st == PT_AGAIN)
        return PT_AGAIN;
    if (st != PT_OK)
        return -1;
    *out = b;
    return 0;
}

static int api_value_is_literal(const pt_value *v)
{
    return v->expr == 0;
}

static int api_header_get(pt_call *call, pt_msg m, pt_bytes name, pt_bytes *values, int max)
{
    struct pt_req *req = call->req;
    if ((m == PT_MSG_RESPONSE || (m == PT_MSG_CURRENT && call->current == PT_MSG_RESPONSE)) && !req->rh_done)
        return 0;
    struct pt_head *h = msg_head(req, m);
    int n = 0;
    for (int i = 0; i < h->nh; i++) {
        struct pt_hdr *x = &h->h[i];
        if (x->deleted || !pt_str_ieq(x->name, (pt_str){name.data, name.len}))
            continue;
        if (x->hop && x->kind != PT_H_HOST && h == &req->h)
            continue;
        if (n < max)
            values[n] = (pt_bytes){x->value.p, x->value.n};
        n++;
    }
    return n;
}

static int api_header_set(pt_call *call, pt_msg m, pt_bytes name, const pt_bytes *values, int n,
                          pt_header_mode mode)
{
    return pt_msg_header_set(call->req, m, name, values, n, mode);
}

static int api_header_at(pt_call *call, pt_msg m, int index, pt_bytes *name, pt_bytes *value)
{
    struct pt_req *req = call->req;
    if ((m == PT_MSG_RESPONSE || (m == PT_MSG_CURRENT && call->current == PT_MSG_RESPONSE)) && !req->rh_done)
        return -1;
    struct pt_head *h = msg_head(req, m);
    int k = 0;
    for (int i = 0; i < h->nh; i++) {
        struct pt_hdr *x = &h->h[i];
        if (x->deleted || (x->hop && x->kind != PT_H_HOST))
            continue;
        if (k++ == index) {
            *name = (pt_bytes){x->name.p, x->name.n};
            *value = (pt_bytes){x->value.p, x->value.n};
            return 0;
        }
    }
    return -1;
}

static pt_bytes api_method(pt_call *call)
{
    return (pt_bytes){call->req->h.method.p, call->req->h.method.n};
}

static int api_set_method(pt_call *call, pt_bytes m)
{
    if (!pt_str_is_token((pt_str){m.data, m.len})) {
        pt_exec_set_error(call->req, 500, source_name(call->req, "set-method"), "InvalidMethod", "invalid method");
        return -1;
    }
    call->req->h.method = pool_str(call->req, m);
    return 0;
}

static pt_bytes api_path(pt_call *call)
{
    return (pt_bytes){call->req->bpath.p, call->req->bpath.n};
}

static bool url_part_ok(pt_bytes b, bool query)
{
    for (size_t i = 0; i < b.len; i++) {
        unsigned char c = (unsigned char)b.data[i];
        if (c <= 0x20 || c >= 0x7f || c == '#' || (!query && c == '?'))
            return false;
    }
    return true;
}

static int api_set_path(pt_call *call, pt_bytes p)
{
    if ((p.len && p.data[0] != '/') || !url_part_ok(p, false)) {
        pt_exec_set_error(call->req, 500, source_name(call->req, "rewrite-uri"), "InvalidUrl", "invalid path");
        return -1;
    }
    call->req->bpath = pool_str(call->req, p);
    return 0;
}

static pt_bytes api_query(pt_call *call)
{
    return (pt_bytes){call->req->bquery.p, call->req->bquery.n};
}

static int api_set_query(pt_call *call, pt_bytes q)
{
    if (!url_part_ok(q, true)) {
        pt_exec_set_error(call->req, 500, source_name(call->req, "set-query-parameter"), "InvalidUrl", "invalid query");
        return -1;
    }
    call->req->bquery = pool_str(call->req, q);
    return 0;
}

/* A parameter of a query string (the raw, still encoded value); 0 or -1. */
static int find_param(pt_str q, pt_bytes name, pt_bytes *value)
{
    while (q.n) {
        const char *amp = memchr(q.p, '&', q.n);
        size_t len = amp ? (size_t)(amp - q.p) : q.n;
        const char *eq = memchr(q.p, '=', len);
        pt_str k = {q.p, eq ? (size_t)(eq - q.p) : len};
        if (pt_str_eq(k, (pt_str){name.data, name.len})) {
            *value = eq ? (pt_bytes){eq + 1, len - k.n - 1} : (pt_bytes){"", 0};
            return 0;
        }
        if (!amp)
            break;
        q.p += len + 1;
        q.n -= len + 1;
    }
    return -1;
}

static int api_query_param(pt_call *call, pt_bytes name, pt_bytes *value)
{
    return find_param(call->req->bquery, name, value);
}

static int api_http_get(const char *url, const struct pt_http_get_opts *o, char **body, size_t *len, char *err,
                        size_t errlen)
{
    struct pt_fetch_opts fo = {0, 0, NULL, -1};
    if (o) {
        fo.timeout_ms = o->timeout_ms;
        fo.max_body = o->max_body;
        fo.accept = o->accept;
        fo.cancel_fd = o->cancel_fd;
    }
    struct pt_fetch_result r;
    int rc = pt_fetch_get(url, &fo, &r, err, errlen);
    if (rc != PT_FETCH_OK)
        return rc;
    *body = r.body;
    *len = r.len;
    return r.status;
}

bool pt_checking_only;

static int api_checking_only(void)
{
    return pt_checking_only;
}

static int api_original_query_param(pt_call *call, pt_bytes name, pt_bytes *value)
{
    return find_param(call->req->h.query, name, value);
}

static int api_matched_param(pt_call *call, pt_bytes name, pt_bytes *value)
{
    struct pt_req *req = call->req;
    for (int i = 0; i < req->m.nparams; i++)
        if (pt_str_eq(req->m.params[i].name, (pt_str){name.data, name.len})) {
            pt_str raw = req->m.params[i].value;
            char *d = pt_pool_alloc(req->pool, raw.n + 1);
            ssize_t n = pt_pct_decode(raw, d, false);
            *value = n < 0 ? (pt_bytes){raw.p, raw.n} : (pt_bytes){d, (size_t)n};
            return 0;
        }
    return -1;
}

static int api_status(pt_call *call)
{
    return call->req->rh_done ? call->req->rh.status : 0;
}

static int api_set_status(pt_call *call, int code, pt_bytes reason)
{
    struct pt_req *req = call->req;
    if (code < 100 || code > 999 || !pt_http_value_ok((pt_str){reason.data, reason.len})) {
        pt_exec_set_error(req, 500, source_name(req, "set-status"), "InvalidStatus", "invalid status code or reason");
        return -1;
    }
    if (!req->rh_done)
        pt_req_new_response(req, code, PT_NULL_STR);
    req->rh.status = code;
    req->rh.reason = pool_str(req, reason);
    return 0;
}

static int api_body_get(pt_call *call, pt_msg m, pt_bytes *out)
{
    struct pt_req *req = call->req;
    if (m == PT_MSG_CURRENT)
        m = call->current;
    struct evbuffer *b;
    if (m == PT_MSG_REQUEST) {
        if (req->req_body_state == RB_STREAM && req->h.body != PT_BODY_NONE) {
            req->ex.need_body = PT_MSG_REQUEST;
            return PT_AGAIN;
        }
        b = req->req_body;
    } else {
        if (!req->rh_done) {
            *out = (pt_bytes){"", 0};
            return 0;
        }
        if (req->rh_backend && !req->resp_body && req->resp_in != PT_BODY_NONE) {
            req->ex.need_body = PT_MSG_RESPONSE;
            return PT_AGAIN;
        }
        b = req->resp_body;
    }
    if (!b || !evbuffer_get_length(b)) {
        *out = (pt_bytes){"", 0};
        return 0;
    }
    size_t n = evbuffer_get_length(b);
    *out = (pt_bytes){(const char *)evbuffer_pullup(b, -1), n};
    return 0;
}

static int api_body_set(pt_call *call, pt_msg m, pt_bytes data)
{
    struct pt_req *req = call->req;
    if (m == PT_MSG_CURRENT)
        m = call->current;
    pt_req_set_body(req, m, (pt_str){data.data, data.len});
    return 0;
}

static int api_var_get(pt_call *call, pt_bytes name, pt_bytes *out)
{
    const struct pt_var *v = pt_req_var_get(call->req, (pt_str){name.data, name.len});
    if (!v)
        return -1;
    *out = (pt_bytes){v->value.p, v->value.n};
    return 0;
}

static int api_var_set(pt_call *call, pt_bytes name, pt_bytes value)
{
    struct pt_luaval v = {PT_VAR_STRING, {value.data, value.len}, 0, false};
    pt_req_var_set(call->req, (pt_str){name.data, name.len}, &v);
    return 0;
}

static pt_status api_fail(pt_call *call, int status, const char *reason, const char *message)
{
    pt_exec_set_error(call->req, status, call->stmt ? call->stmt->name : "gateway", reason, message);
    return PT_ERROR;
}

static pt_status api_respond(pt_call *call)
{
    if (!call->req->rh_done)
        pt_req_new_response(call->req, 200, PT_NULL_STR);
    return PT_DONE;
}

static void api_resume(pt_call *call, pt_status st)
{
    pt_exec_resume(call->req, st);
}

static void *api_alloc(pt_call *call, size_t n)
{
    return pt_pool_calloc(call->req->pool, n);
}

static void api_log(int level, const char *fmt, ...)
{
    if (level > pt_log_level)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    pt_log_write(level < 0 ? 0 : level > 3 ? 3 : level, "%s", buf);
}

static void **api_call_state(pt_call *call)
{
    struct pt_req *req = call->req;
    for (struct pt_statestash *s = req->ex.stash; s; s = s->next)
        if (s->stmt == call->stmt)
            return &s->state;
    struct pt_statestash *s = pt_pool_calloc(req->pool, sizeof(*s));
    s->stmt = call->stmt;
    s->next = req->ex.stash;
    req->ex.stash = s;
    return &s->state;
}

static pt_bytes api_operation_template(pt_call *call)
{
    struct pt_req *req = call->req;
    const char *t = req->op ? req->op->cf->url_template : "";
    return (pt_bytes){t, strlen(t)};
}

static pt_bytes api_url_base(pt_call *call, int which)
{
    struct pt_req *req = call->req;
    if (which == PT_URL_BACKEND) {
        const char *u = req->api && req->api->cf->service_url ? req->api->cf->service_url : "";
        size_t n = strlen(u);
        while (n && u[n - 1] == '/')
            n--;
        return (pt_bytes){u, n};
    }
    struct pt_buf b;
    pt_buf_init(&b, req->pool, 128);
    if (req->c->tls)
        pt_buf_lit(&b, "https://");
    else
        pt_buf_lit(&b, "http://");
    pt_buf_str(&b, req->h.host);
    if (req->api && req->api->cf->path[0]) {
        pt_buf_lit(&b, "/");
        pt_buf_add(&b, req->api->cf->path, strlen(req->api->cf->path));
    }
    return (pt_bytes){b.p, b.n};
}

/*
 * The client's address: the peer's, or -- when the peer is a trusted proxy
 * (trustedProxies) -- the right-most X-Forwarded-For entry that is not a
 * trusted proxy itself.
 */
static pt_bytes client_ip(struct pt_req *req)
{
    const struct pt_conf *cf = req_gen(req)->conf;
    const char *peer = req->c->ip;
    bool trusted = false;
    for (int i = 0; i < cf->ntrusted && !trusted; i++)
        trusted = pt_cidr_has(&cf->trusted[i], peer);
    if (!trusted)
        return (pt_bytes){peer, strlen(peer)};
    /* every X-Forwarded-For field, joined, read from the right */
    struct pt_buf b;
    pt_buf_init(&b, req->pool, 128);
    for (int i = 0; i < req->h.nh; i++) {
        const struct pt_hdr *x = &req->h.h[i];
        if (!x->deleted && pt_str_ieq(x->name, pt_str_c("X-Forwarded-For"))) {
            if (b.n)
                pt_buf_lit(&b, ",");
            pt_buf_str(&b, x->value);
        }
    }
    const char *best = peer;
    size_t end = b.n;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && b.p[start - 1] != ',')
            start--;
        size_t a = start, z = end;
        while (a < z && (b.p[a] == ' ' || b.p[a] == '\t'))
            a++;
        while (z > a && (b.p[z - 1] == ' ' || b.p[z - 1] == '\t'))
            z--;
        char *ip = pt_pool_strndup(req->pool, b.p + a, z - a);
        struct pt_cidr probe;
        if (!pt_parse_cidr(ip, &probe) || strchr(ip, '/'))
            break; /* not an address: stop believing the list */
        best = ip;
        bool hop_trusted = false;
        for (int i = 0; i < cf->ntrusted && !hop_trusted; i++)
            hop_trusted = pt_cidr_has(&cf->trusted[i], ip);
        if (!hop_trusted)
            break;
        end = start ? start - 1 : 0;
    }
    return (pt_bytes){best, strlen(best)};
}

static pt_bytes api_fact(pt_call *call, int which)
{
    struct pt_req *req = call->req;
    const char *s = NULL;
    switch (which) {
    case PT_FACT_CLIENT_IP:
        return client_ip(req);
    case PT_FACT_SUBSCRIPTION_ID:
        s = req->sub ? req->sub->cf->id : NULL;
        break;
    case PT_FACT_SUBSCRIPTION_KEY:
        return (pt_bytes){req->key.p ? req->key.p : "", req->key.n};
    case PT_FACT_SUBSCRIPTION_START:
        s = req->sub ? req->sub->cf->created_date : NULL;
        break;
    case PT_FACT_PRODUCT_ID:
        s = req->product ? req->product->cf->id : NULL;
        break;
    case PT_FACT_API_ID:
        s = req->api ? req->api->cf->id : NULL;
        break;
    case PT_FACT_OPERATION_ID:
        s = req->op ? req->op->cf->id : NULL;
        break;
    case PT_FACT_USER_ID:
        s = req->sub && req->sub->owner ? req->sub->owner->cf->id : NULL;
        break;
    case PT_FACT_REQUEST_ID:
        return (pt_bytes){req->id, req->idn};
    case PT_FACT_CLIENT_CERT:
    case PT_FACT_CLIENT_CERT_VERIFY: {
        SSL *ssl = req->c->tls ? pt_io_ssl(req->c->io) : NULL;
        X509 *x = ssl ? SSL_get1_peer_certificate(ssl) : NULL;
        if (!x)
            return (pt_bytes){"", 0};
        if (which == PT_FACT_CLIENT_CERT_VERIFY) {
            X509_free(x);
            long v = SSL_get_verify_result(ssl);
            s = v == X509_V_OK ? "ok" : X509_verify_cert_error_string(v);
            break;
        }
        BIO *b = BIO_new(BIO_s_mem());
        PEM_write_bio_X509(b, x);
        X509_free(x);
        char *data;
        long n = BIO_get_mem_data(b, &data);
        char *copy = pt_pool_strndup(req->pool, data, (size_t)n);
        BIO_free(b);
        return (pt_bytes){copy, (size_t)n};
    }
    }
    return s ? (pt_bytes){s, strlen(s)} : (pt_bytes){"", 0};
}

static int api_use_client_cert(pt_call *call, void *cert)
{
    call->req->client_cert = cert;
    return 0;
}

static int api_at_end(pt_call *call, void (*fn)(void *, int, uint64_t, uint64_t), void *arg)
{
    struct pt_hook *h = pt_pool_calloc(call->req->pool, sizeof(*h));
    h->end = fn;
    h->arg = arg;
    h->stmt = call->stmt;
    h->next = call->req->end_hooks;
    call->req->end_hooks = h;
    return 0;
}

static int api_at_response(pt_call *call, void (*fn)(pt_call *, void *), void *arg)
{
    struct pt_hook *h = pt_pool_calloc(call->req->pool, sizeof(*h));
    h->resp = fn;
    h->arg = arg;
    h->stmt = call->stmt;
    /* in registration order */
    struct pt_hook **pp = &call->req->resp_hooks;
    while (*pp)
        pp = &(*pp)->next;
    *pp = h;
    return 0;
}

void pt_policy_fill_api(struct pt_api *a);

static struct pt_api build_api(void)
{
    struct pt_api a = {0};
    a.size = sizeof(struct pt_api);
    a.abi_major = PT_ABI_MAJOR;
    a.abi_minor = PT_ABI_MINOR;
    pt_policy_fill_api(&a);
    a.eval = api_eval;
    a.eval_bool = api_eval_bool;
    a.value_is_literal = api_value_is_literal;
    a.header_get = api_header_get;
    a.header_set = api_header_set;
    a.header_at = api_header_at;
    a.method = api_method;
    a.set_method = api_set_method;
    a.path = api_path;
    a.set_path = api_set_path;
    a.query = api_query;
    a.set_query = api_set_query;
    a.query_param = api_query_param;
    a.matched_param = api_matched_param;
    a.status = api_status;
    a.set_status = api_set_status;
    a.body_get = api_body_get;
    a.body_set = api_body_set;
    a.var_get = api_var_get;
    a.var_set = api_var_set;
    a.fail = api_fail;
    a.respond = api_respond;
    a.resume = api_resume;
    a.timer_start = timer_start;
    a.timer_cancel = timer_cancel;
    a.alloc = api_alloc;
    a.log = api_log;
    a.call_state = api_call_state;
    a.operation_template = api_operation_template;
    a.url_base = api_url_base;
    a.fact = api_fact;
    a.counter = pt_counter;
    a.at_end = api_at_end;
    a.at_response = api_at_response;
    a.use_client_cert = api_use_client_cert;
    a.original_query_param = api_original_query_param;
    a.http_get = api_http_get;
    a.checking_only = api_checking_only;
    return a;
}

/* Filled once at start; plugins receive a const pointer to it. */
struct pt_api pt_api_table;

void pt_api_init(void)
{
    pt_api_table = build_api();
}
