/*
 * pt_msg -- a request's exchange: the messages and what policies do to them.
 *
 * Every change to a message goes through here, whoever asks: the SDK table
 * (plugins), the core's own policies, the Lua `context` and the connection
 * layer itself.  See pt_msg.h for the hooks the layers above register.
 */
#include "http/pt_msg.h"
#include "http/pt_trace.h"

#include <event2/buffer.h>
#include <stdio.h>

struct pt_msg_hooks pt_msg_hooks;

/* ----------------------------------------------------------------- names */

const char *const pt_msg_section_names[PT_SEC_COUNT] = {"inbound", "backend", "outbound", "on-error"};

const struct pt_scope_name pt_msg_scope_names[PT_SCOPE_COUNT] = {
    {"global", "global"}, {"workspace", "workspace"}, {"product", "product"},
    {"api", "API"},       {"operation", "operation"},
};

const struct pt_scope_name *pt_msg_scope_of(int scope)
{
    static const struct pt_scope_name none = {"", ""};
    if (scope <= 0)
        return &none;
    int i = __builtin_ctz((unsigned)scope);
    return i < PT_SCOPE_COUNT ? &pt_msg_scope_names[i] : &none;
}

/* -------------------------------------------------------------- responses */

void pt_msg_drop_backend(struct pt_req *req)
{
    if (req->up && pt_msg_hooks.backend_close)
        pt_msg_hooks.backend_close(req);
    req->rh_done = req->rh_backend = false;
    if (req->resp_body) {
        evbuffer_free(req->resp_body);
        req->resp_body = NULL;
    }
    req->resp_buffering = false;
    req->resp_replaced = false;
    req->resp_in = PT_BODY_NONE;
}

void pt_msg_new_response(struct pt_req *req, int status, pt_str reason)
{
    if (req->rh_backend || req->up)
        pt_msg_drop_backend(req);
    memset(&req->rh, 0, sizeof(req->rh));
    req->rh.status = status;
    req->rh.reason = reason;
    req->rh.major = 1;
    req->rh.minor = 1;
    req->rh.content_length = -1;
    req->rh.keepalive = true;
    req->rh_done = true;
    req->rh_backend = false;
    req->resp_replaced = true;
    if (req->resp_body)
        evbuffer_drain(req->resp_body, evbuffer_get_length(req->resp_body));
    else
        req->resp_body = evbuffer_new();
}

struct pt_head *pt_msg_response(struct pt_req *req)
{
    if (!req->rh_done)
        pt_msg_new_response(req, 200, PT_NULL_STR);
    return &req->rh;
}

bool pt_msg_body_unread(const struct pt_req *req, pt_msg which)
{
    if (which == PT_MSG_REQUEST)
        return req->req_body_state == RB_STREAM && req->h.body != PT_BODY_NONE;
    return req->rh_done && req->rh_backend && !req->resp_body && req->resp_in != PT_BODY_NONE;
}

static void fill(struct evbuffer **b, pt_str body)
{
    if (!*b)
        *b = evbuffer_new();
    else
        evbuffer_drain(*b, evbuffer_get_length(*b));
    if (body.len)
        evbuffer_add(*b, body.data, body.len);
}

void pt_msg_set_body(struct pt_req *req, pt_msg which, pt_str body)
{
    if (which == PT_MSG_REQUEST) {
        if (req->req_body_state == RB_STREAM && req->h.body != PT_BODY_NONE && !req->req_done)
            req->keep = false; /* the client's own body is never read: no reuse */
        fill(&req->req_body, body);
        req->req_body_state = RB_REPLACED;
        return;
    }
    pt_msg_response(req);
    if (req->rh_backend && !req->resp_body && req->up) {
        /* the backend's body is replaced before it was read */
        if (pt_msg_hooks.backend_close)
            pt_msg_hooks.backend_close(req);
        req->resp_in = PT_BODY_NONE;
    }
    fill(&req->resp_body, body);
    req->resp_replaced = true;
}

const char *pt_msg_source(const struct pt_req *req, const char *fallback)
{
    const struct pt_call *c = req->ex.lane_call ? req->ex.lane_call : &req->ex.call;
    return c->name ? c->name : fallback;
}

int pt_msg_set_status(struct pt_req *req, int code, pt_str reason, const char *source)
{
    if (code < 100 || code > 999 || !pt_http_value_ok(reason)) {
        pt_msg_set_error(req, 500, pt_msg_source(req, source), "InvalidStatus",
                         "invalid status code or reason");
        return -1;
    }
    pt_msg_response(req);
    req->rh.status = code;
    req->rh.reason = pt_pool_str(req->pool, reason.data, reason.len);
    return 0;
}

void pt_msg_error_body(struct pt_buf *b, int status, const char *message)
{
    pt_buf_lit(b, "{\"statusCode\": ");
    pt_buf_u64(b, (uint64_t)status);
    pt_buf_lit(b, ", \"message\": \"");
    pt_buf_json(b, pt_str_c(message ? message : ""));
    pt_buf_lit(b, "\"}");
}

void pt_msg_error_response(struct pt_req *req, int status, const char *message)
{
    pt_msg_new_response(req, status, PT_NULL_STR);
    pt_bytes ct = {"application/json", 16};
    pt_msg_header_set(req, PT_MSG_RESPONSE, (pt_bytes){"Content-Type", 12}, &ct, 1, PT_HEADER_OVERRIDE);
    struct pt_buf body;
    pt_buf_init(&body, req->pool, 128);
    pt_msg_error_body(&body, status, message);
    pt_msg_set_body(req, PT_MSG_RESPONSE, (pt_str){body.p, body.n});
}

bool pt_msg_out_of_memory(struct pt_req *req)
{
    if (PT_LIKELY(!pt_pool_failed(req->pool)))
        return false;
    if (req->ex.oom_answered)
        return true;
    req->ex.oom_answered = true;
    pt_msg_set_error(req, 500, "gateway", "OutOfMemory",
                     "the request needed more memory than the gateway may give it (limits.requestMemory)");
    pt_msg_error_response(req, 500, "Internal server error");
    return true;
}

/* ---------------------------------------------------------------- headers */

static const char *const separate_lines[] = {"user-agent",
                                             "www-authenticate",
                                             "proxy-authenticate",
                                             "cookie",
                                             "set-cookie",
                                             "warning",
                                             "date",
                                             "expires",
                                             "if-modified-since",
                                             "if-unmodified-since",
                                             "last-modified",
                                             "retry-after",
                                             NULL};

static const char *const protected_headers[] = {"connection", "content-length", "keep-alive",
                                                "transfer-encoding", NULL};

static bool in_list(const char *const *list, pt_str name)
{
    for (int i = 0; list[i]; i++)
        if (pt_str_ieq(name, pt_str_c(list[i])))
            return true;
    return false;
}

struct pt_head *pt_msg_head(struct pt_req *req, pt_msg m)
{
    if (m == PT_MSG_CURRENT)
        m = req->ex.call.current;
    return m == PT_MSG_RESPONSE ? pt_msg_response(req) : &req->h;
}

int pt_msg_header_set(struct pt_req *req, pt_msg m, pt_bytes name, const pt_bytes *values, int n,
                      pt_header_mode mode)
{
    if (!pt_str_is_token(name)) {
        pt_msg_set_error(req, 500, pt_msg_source(req, "set-header"), "InvalidHeaderName",
                         "invalid header name");
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (!pt_http_value_ok(values[i])) {
            pt_msg_set_error(req, 500, pt_msg_source(req, "set-header"), "InvalidHeaderValue",
                             "header value contains CR, LF, NUL or another control character");
            return -1;
        }
    if (in_list(protected_headers, name)) {
        pt_msg_set_error(req, 500, pt_msg_source(req, "set-header"), "ProtectedHeader",
                         "this header is managed by the gateway");
        return -1;
    }
    struct pt_head *h = pt_msg_head(req, m);
    bool is_server = pt_str_ieq(name, PT_STR("server"));
    struct pt_hdr *existing = NULL;
    for (int i = 0; i < h->nh; i++)
        if (!h->h[i].deleted && !h->h[i].hop && pt_str_ieq(h->h[i].name, name))
            existing = &h->h[i];
    if (mode == PT_HEADER_DELETE) {
        if (is_server)
            return 0; /* Server stays */
        for (int i = 0; i < h->nh; i++)
            if (pt_str_ieq(h->h[i].name, name) && (!h->h[i].hop || h->h[i].kind == PT_H_HOST))
                h->h[i].deleted = true;
        return 0;
    }
    if (mode == PT_HEADER_SKIP && existing)
        return 0;
    bool separate = in_list(separate_lines, name);
    if (mode == PT_HEADER_OVERRIDE)
        for (int i = 0; i < h->nh; i++)
            if (pt_str_ieq(h->h[i].name, name) && (!h->h[i].hop || h->h[i].kind == PT_H_HOST))
                h->h[i].deleted = true;
    pt_str pname = pt_pool_str(req->pool, name.data, name.len);
    if (separate) {
        for (int i = 0; i < n; i++)
            if (!pt_http_head_add(h, req->pool, pname, pt_pool_str(req->pool, values[i].data, values[i].len)))
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
    struct pt_hdr *x = pt_http_head_add(h, req->pool, pname, (pt_str){b.p, b.n});
    return x ? 0 : -1;
}

/* -------------------------------------------------------------- variables */

/* Variables live in the request arena; later sets win. */
void pt_msg_var_set(struct pt_req *req, pt_str name, int type, pt_str value)
{
    pt_str v = pt_pool_str(req->pool, value.data, value.len);
    for (int i = 0; i < req->nvars; i++)
        if (pt_str_eq(req->vars[i].name, name)) {
            req->vars[i].value = v;
            req->vars[i].type = type;
            req->vars[i].resp = NULL;
            return;
        }
    struct pt_var *grown =
        pt_pool_grow(req->pool, req->vars, sizeof(*req->vars), &req->capvars, req->nvars + 1);
    if (!grown)
        return; /* malloc refused the arena (pt_pool_failed): the request ends at the next check */
    req->vars = grown;
    struct pt_var *x = &req->vars[req->nvars++];
    x->name = pt_pool_str(req->pool, name.data, name.len);
    x->value = v;
    x->type = type;
    x->resp = NULL;
}

/* A copy of a response in the request arena, checked as the gateway checks a
   response it would send: token header names, values and reason without
   control characters (a response variable can become the client's response). */
static const struct pt_http_resp *copy_response(struct pt_req *req, const struct pt_http_resp *r)
{
    if (r->nheaders < 0 || (r->nheaders && (!r->header_names || !r->header_values)) ||
        !pt_http_value_ok(r->reason))
        return NULL;
    for (int i = 0; i < r->nheaders; i++)
        if (!pt_str_is_token(r->header_names[i]) || !pt_http_value_ok(r->header_values[i]))
            return NULL;
    struct pt_http_resp *c = pt_pool_calloc(req->pool, sizeof(*c));
    pt_bytes *names = pt_pool_alloc(req->pool, sizeof(pt_bytes) * (size_t)(r->nheaders + 1));
    pt_bytes *values = pt_pool_alloc(req->pool, sizeof(pt_bytes) * (size_t)(r->nheaders + 1));
    if (!c || !names || !values)
        return NULL;
    c->status = r->status;
    c->reason = pt_pool_str(req->pool, r->reason.data, r->reason.len);
    for (int i = 0; i < r->nheaders; i++) {
        names[i] = pt_pool_str(req->pool, r->header_names[i].data, r->header_names[i].len);
        values[i] = pt_pool_str(req->pool, r->header_values[i].data, r->header_values[i].len);
    }
    c->header_names = names;
    c->header_values = values;
    c->nheaders = r->nheaders;
    c->body = pt_pool_str(req->pool, r->body.data, r->body.len);
    return pt_pool_failed(req->pool) ? NULL : c;
}

int pt_msg_var_set_response(struct pt_req *req, pt_str name, const struct pt_http_resp *resp)
{
    if (!resp) {
        pt_msg_var_set(req, name, PT_VAR_NIL, PT_STR(""));
        return 0;
    }
    if (resp->status < 100 || resp->status > 999)
        return -1;
    const struct pt_http_resp *c = copy_response(req, resp);
    if (!c)
        return -1;
    pt_msg_var_set(req, name, PT_VAR_RESPONSE, PT_STR(""));
    for (int i = 0; i < req->nvars; i++)
        if (pt_str_eq(req->vars[i].name, name)) {
            req->vars[i].resp = c;
            return 0;
        }
    return -1; /* the arena failed to hold the variable */
}

const struct pt_http_resp *pt_msg_var_response(const struct pt_req *req, pt_str name)
{
    const struct pt_var *v = pt_msg_var_get(req, name);
    return v && v->type == PT_VAR_RESPONSE ? v->resp : NULL;
}

const struct pt_var *pt_msg_var_get(const struct pt_req *req, pt_str name)
{
    for (int i = 0; i < req->nvars; i++)
        if (pt_str_eq(req->vars[i].name, name))
            return &req->vars[i];
    return NULL;
}

/* ---------------------------------------------------------- error record */

void pt_msg_set_error(struct pt_req *req, int status, const char *source, const char *reason,
                      const char *message)
{
    struct pt_lasterror *e = &req->ex.err;
    req->ex.has_error = true;
    e->status = status;
    e->source = source;
    e->reason = reason;
    e->message = message ? pt_pool_strdup(req->pool, message) : "";
    e->section = e->path = e->policy_id = "";
    e->scope = 0;
    if (pt_msg_hooks.error_where)
        pt_msg_hooks.error_where(req, e);
    req->reason = reason;
    if (PT_UNLIKELY(req->trace != NULL))
        pt_trace_error(req);
}
