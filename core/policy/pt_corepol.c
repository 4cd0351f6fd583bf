/*
 * pt_corepol -- the core's own policies.
 *
 * choose, retry and forward-request are steps of the pipeline driver
 * (pt_pipeline.c); here are their schemas and compile functions, and the
 * complete set-variable, return-response and mock-response.  Every one is
 * an ordinary pt_policy_def: compile() and run() get the SDK table.
 */
#include "policy/pt_corepol.h"

#include "base/pt_log.h"
#include "http/pt_msg.h"
#include "lua/pt_lua.h"
#include "policy/pt_gen.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>

/* ----------------------------------------------------------------- schemas */

static const char *const exists_actions[] = {"override", "skip", "append", "delete", NULL};

static const struct pt_attr_def status_attrs[] = {
    {"code", PT_ATTR_INT, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 100, 999, "status code"},
    {"reason", PT_ATTR_STRING, PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0, "reason phrase"},
    {0},
};

static const struct pt_attr_def header_attrs[] = {
    {"name", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0, "header name"},
    {"exists-action", PT_ATTR_ENUM, 0, "override", exists_actions, NULL, 0, 0,
     "override, skip, append or delete"},
    {"value", PT_ATTR_STRING, PT_ATTR_EXPR | PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0, "one or more values"},
    {0},
};

static const struct pt_attr_def body_attrs[] = {
    {"value", PT_ATTR_STRING, PT_ATTR_EXPR | PT_ATTR_SCALAR, NULL, NULL, NULL, 0, 0, "the body"},
    {"template", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "not supported (Liquid); use expressions"},
    {0},
};

static const struct pt_attr_def return_response_attrs[] = {
    {"response-variable-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "a variable holding a response (send-request's response-variable-name) to start from: its status, "
     "headers and body, which the other elements then change; a variable that holds no response fails "
     "the request (500, ResponseVariableNotFound)"},
    {"set-status", PT_ATTR_ELEMENT, 0, NULL, NULL, status_attrs, 0, 0, "status of the response"},
    {"set-header", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, header_attrs, 0, 0, "headers of the response"},
    {"set-body", PT_ATTR_ELEMENT, PT_ATTR_SCALAR, NULL, NULL, body_attrs, 0, 0, "body of the response"},
    {0},
};

static const struct pt_attr_def set_variable_attrs[] = {
    {"name", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "variable name"},
    {"value", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "literal (a string) or expression (its value)"},
    {0},
};

static const struct pt_attr_def mock_attrs[] = {
    {"status-code", PT_ATTR_INT, 0, "200", NULL, NULL, 100, 999, "status of the mocked response"},
    {"content-type", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "representation to use"},
    {0},
};

static const struct pt_attr_def retry_attrs[] = {
    {"condition", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "retry while this is true"},
    {"count", PT_ATTR_INT, PT_ATTR_REQUIRED, NULL, NULL, NULL, 1, 50, "most retries"},
    {"interval", PT_ATTR_INT, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 3600, "seconds between attempts"},
    {"max-interval", PT_ATTR_INT, 0, NULL, NULL, NULL, 0, 3600, "cap for exponential waits (seconds)"},
    {"delta", PT_ATTR_INT, 0, NULL, NULL, NULL, 0, 3600, "linear/exponential increment (seconds)"},
    {"first-fast-retry", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0, "retry once at once"},
    {"policies", PT_ATTR_POLICIES, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "statements to run and retry"},
    {0},
};

static const char *const wait_for[] = {"all", "any", NULL};

static const struct pt_attr_def wait_attrs[] = {
    {"for", PT_ATTR_ENUM, 0, "all", wait_for, NULL, 0, 0,
     "all: the wait ends when every child has finished; any: when the first one has (the others are "
     "abandoned)"},
    {"policies", PT_ATTR_POLICIES, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0,
     "the children, run side by side: send-request, cache-lookup-value or choose"},
    {0},
};

static const char *const http_versions[] = {"1", "2or1", "2", NULL};

static const struct pt_attr_def forward_attrs[] = {
    {"timeout", PT_ATTR_INT, 0, "300", NULL, NULL, 0, 86400, "seconds until the backend must answer"},
    {"timeout-ms", PT_ATTR_INT, 0, NULL, NULL, NULL, 0, 86400000, "the same in milliseconds"},
    {"continue-timeout", PT_ATTR_INT, 0, NULL, NULL, NULL, 0, 86400,
     "accepted; the gateway answers 100-continue"},
    {"http-version", PT_ATTR_ENUM, 0, "1", http_versions, NULL, 0, 0,
     "not written: 2 for an API of apiType grpc, else 1. 1: HTTP/1.1; 2: HTTP/2 only (h2c with prior "
     "knowledge to http://, ALPN h2 to https://: a backend that "
     "does not agree is a 502); 2or1: to https:// ALPN offers h2 then http/1.1 and the backend chooses, to "
     "http:// HTTP/1.1. WebSocket upgrades and calls through a proxy use HTTP/1.1"},
    {"follow-redirects", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0,
     "true: the gateway follows the backend's 301/302/303/307/308 (up to 10; 303, and 301/302 after a POST, "
     "become a GET without body; 307/308 only with the body in memory; the same backend or a literal IP "
     "address only, never https to http) and the client gets the final response"},
    {"buffer-request-body", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0,
     "read the whole request body first (so retry can resend it)"},
    {"buffer-response", PT_ATTR_BOOL, 0, "true", NULL, NULL, 0, 0,
     "accepted; bodies always stream: each read from the backend is passed on at once, so true and false "
     "(server-sent events) behave alike"},
    {"fail-on-error-status-code", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0,
     "a 400-599 backend status runs on-error"},
    {0},
};

static const struct pt_attr_def include_fragment_attrs[] = {
    {"fragment-id", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "the fragment to insert"},
    {0},
};

/* The core's policies go through the same table as plugins': compile() and run(). */
static int compile_choose(const struct pt_api *api, pt_compile *c, void **inst);
static int compile_retry(const struct pt_api *api, pt_compile *c, void **inst);
static int compile_forward(const struct pt_api *api, pt_compile *c, void **inst);
static int compile_wait(const struct pt_api *api, pt_compile *c, void **inst);
static int compile_return_response(const struct pt_api *api, pt_compile *c, void **inst);
static int compile_set_variable(const struct pt_api *api, pt_compile *c, void **inst);
static int compile_mock(const struct pt_api *api, pt_compile *c, void **inst);
/* Headers of a held response that the gateway frames itself (the body is re-framed) or that
   belong to one connection: they are not copied into the client's response. */
static bool framing_header(pt_str name)
{
    static const char *const names[] = {"connection",        "content-length",   "keep-alive",
                                        "transfer-encoding", "proxy-connection", "te",
                                        "trailer",           "upgrade",          NULL};
    for (int i = 0; names[i]; i++)
        if (pt_str_ieq(name, pt_str_c(names[i])))
            return true;
    return false;
}

/* The response becomes a copy of a response held in a variable. */
static int start_from(struct pt_req *req, const struct pt_http_resp *r)
{
    pt_msg_new_response(req, r->status, pt_pool_str(req->pool, r->reason.data, r->reason.len));
    for (int i = 0; i < r->nheaders; i++) {
        if (framing_header(r->header_names[i]))
            continue;
        if (pt_msg_header_set(req, PT_MSG_RESPONSE, r->header_names[i], &r->header_values[i], 1,
                              PT_HEADER_APPEND) < 0)
            return -1;
    }
    pt_msg_set_body(req, PT_MSG_RESPONSE, r->body);
    return 0;
}

static pt_status run_return_response(const struct pt_api *api, pt_call *call, void *inst);
static pt_status run_set_variable(const struct pt_api *api, pt_call *call, void *inst);
static pt_status run_mock(const struct pt_api *api, pt_call *call, void *inst);

static const struct pt_policy_def core_defs[] = {
    {"choose", PT_SECTION_ALL, PT_SCOPE_ALL, PT_POLICY_CORE_SYNTAX, NULL, compile_choose, NULL, NULL,
     "Conditions evaluated in order; the first true `when` runs its `then` statements, else `otherwise`."},
    {"retry", PT_SECTION_ALL, PT_SCOPE_ALL, 0, retry_attrs, compile_retry, NULL, NULL,
     "Runs its statements, then again while `condition` holds and `count` allows, waiting between attempts: "
     "`interval` alone waits the same each time; with `delta`, linearly longer (interval + (n-1) * delta); "
     "with "
     "`delta` and `max-interval`, exponentially (interval + (2^(n-1) - 1) * delta, each delta varied at "
     "random "
     "by up to 20 % either way so that clients do not retry in step, capped at `max-interval`); "
     "`first-fast-retry` makes the first retry at once."},
    {"wait", PT_SECTION_INBOUND | PT_SECTION_BACKEND | PT_SECTION_OUTBOUND, PT_SCOPE_ALL, 0, wait_attrs,
     compile_wait, NULL, NULL,
     "Runs its children side by side (send-request, cache-lookup-value, choose): while one waits for a "
     "backend or a cache, the others go on.  `for: all` ends when every child has finished, `for: any` when "
     "the first has, and the others are abandoned (their calls cancelled, their timers released, their "
     "variables left as they were).  An error in a child ends the wait with that error, the others "
     "abandoned, and on-error runs as if the child had run alone.  Inside a choose child, any statement "
     "but forward-request, retry, wait and policies with children may run."},
    {"forward-request", PT_SECTION_BACKEND, PT_SCOPE_ALL, PT_POLICY_ONCE_PER_SECTION, forward_attrs,
     compile_forward, NULL, NULL, "Sends the request to the backend and waits for its response head."},
    {"return-response", PT_SECTION_ALL, PT_SCOPE_ALL, 0, return_response_attrs, compile_return_response,
     run_return_response, NULL,
     "Stops the pipeline and answers with the response it builds (200 with an empty body by default)."},
    {"set-variable", PT_SECTION_ALL, PT_SCOPE_ALL, 0, set_variable_attrs, compile_set_variable,
     run_set_variable, NULL, "Stores a value in context.variables."},
    {"mock-response", PT_SECTION_INBOUND | PT_SECTION_OUTBOUND | PT_SECTION_ON_ERROR, PT_SCOPE_ALL, 0,
     mock_attrs, compile_mock, run_mock, NULL,
     "Stops the pipeline and answers with the operation's example response for the status (and "
     "content type), else a sample built from the response's schema, else an empty body."},
    {"include-fragment", PT_SECTION_ALL, PT_SCOPE_ALL, 0, include_fragment_attrs, NULL, NULL, NULL,
     "Inserts the statements of a policy fragment."},
    {0},
};

void pt_corepol_register(struct pt_registry *r)
{
    for (const struct pt_policy_def *d = core_defs; d->name; d++)
        pt_registry_add(r, d, "core", NULL);
}

/* ----------------------------------------------------------------- compile */

static struct pt_node *get(struct pt_node *attrs, const char *k)
{
    return attrs && attrs->kind == PT_N_MAP ? pt_node_get(attrs, k) : NULL;
}

static struct pt_polctx *cur_pc; /* set while a core statement compiles */

static int64_t int_attr(struct pt_node *attrs, const char *k, int64_t def)
{
    const char *t = pt_policy_text(cur_pc, get(attrs, k));
    return t && *t ? strtoll(t, NULL, 10) : def;
}

static bool bool_attr(struct pt_node *attrs, const char *k, bool def)
{
    const char *t = pt_policy_text(cur_pc, get(attrs, k));
    return t && *t ? (t[0] == 't' || t[0] == 'T') : def;
}

static bool compile_header(struct pt_polctx *pc, struct pt_node *h, struct pt_rr_header *out)
{
    out->name = pt_policy_value_compile(pc, pt_node_get(h, "name"));
    if (!out->name)
        return false;
    struct pt_node *ea = pt_node_get(h, "exists-action");
    out->mode = PT_HEADER_OVERRIDE;
    if (ea)
        for (int i = 0; exists_actions[i]; i++)
            if (!strcmp(ea->str, exists_actions[i]))
                out->mode = (pt_header_mode)i;
    struct pt_node *v = pt_node_get(h, "value");
    if (v) {
        out->nvalues = v->kind == PT_N_SEQ ? v->n : 1;
        out->values = pt_pool_calloc(pc->pool, sizeof(*out->values) * (size_t)out->nvalues);
        for (int i = 0; i < out->nvalues; i++)
            if (!(out->values[i] = pt_policy_value_compile(pc, v->kind == PT_N_SEQ ? v->items[i] : v)))
                return false;
    }
    if (!out->nvalues && out->mode != PT_HEADER_DELETE) {
        pt_node_error(pc->errs, h, "set-header needs a value unless exists-action is delete");
        return false;
    }
    return true;
}

/* choose: [ {when: cond, then: [...]}, ..., {otherwise: [...]} ] */
static int compile_choose(const struct pt_api *api, pt_compile *c, void **inst)
{
    (void)api;
    (void)inst;
    struct pt_polctx *pc = c->pc;
    struct pt_stmt *s = c->stmt;
    struct pt_node *list = c->attrs;
    s->kind = PT_ST_CHOOSE;
    if (list->kind != PT_N_SEQ || list->n == 0) {
        pt_node_error(pc->errs, list, "choose expects a list of {when, then} and an optional {otherwise}");
        return -1;
    }
    s->whens = pt_pool_calloc(pc->pool, sizeof(*s->whens) * (size_t)list->n);
    bool ok = true;
    for (int i = 0; i < list->n; i++) {
        struct pt_node *w = list->items[i];
        struct pt_node *cond = pt_node_get(w, "when"), *then = pt_node_get(w, "then");
        struct pt_node *other = pt_node_get(w, "otherwise");
        if (w->kind != PT_N_MAP || (!cond && !other) || (cond && other) || (cond && w->n != (then ? 2 : 1)) ||
            (other && w->n != 1)) {
            pt_node_error(pc->errs, w,
                          "expected {when: CONDITION, then: [statements]} or {otherwise: [statements]}");
            ok = false;
            continue;
        }
        if (other && i != list->n - 1) {
            pt_node_error(pc->errs, w, "'otherwise' must be the last branch");
            ok = false;
            continue;
        }
        struct pt_when *wh = &s->whens[s->nwhens++];
        if (cond) {
            wh->cond = pt_policy_value_compile(pc, cond);
            if (!wh->cond)
                ok = false;
        }
        struct pt_node *body = cond ? then : other;
        if (body) {
            struct pt_block *b = pt_policy_parse_block(c, body);
            if (!b)
                ok = false;
            else
                wh->body = *b;
        }
    }
    return ok ? 0 : -1;
}

/* retry: its `policies` were compiled as the statement's body (PT_ATTR_POLICIES) */
static int compile_retry(const struct pt_api *api, pt_compile *c, void **inst)
{
    (void)api;
    (void)inst;
    struct pt_polctx *pc = c->pc;
    struct pt_node *attrs = c->attrs;
    cur_pc = pc;
    struct pt_retry *r = pt_pool_calloc(pc->pool, sizeof(*r));
    r->cond = pt_policy_value_compile(pc, get(attrs, "condition"));
    r->count = (int)int_attr(attrs, "count", 1);
    r->interval_ms = (uint32_t)int_attr(attrs, "interval", 0) * 1000;
    r->max_interval_ms = (uint32_t)int_attr(attrs, "max-interval", 0) * 1000;
    r->delta_ms = (uint32_t)int_attr(attrs, "delta", 0) * 1000;
    r->first_fast = bool_attr(attrs, "first-fast-retry", false);
    if (!r->cond || c->stmt->kind != PT_ST_WRAP)
        return -1;
    c->stmt->kind = PT_ST_RETRY;
    c->stmt->data = r;
    return 0;
}

static int compile_forward(const struct pt_api *api, pt_compile *c, void **inst)
{
    (void)api;
    (void)inst;
    struct pt_polctx *pc = c->pc;
    struct pt_node *attrs = c->attrs;
    cur_pc = pc;
    struct pt_forward *f = pt_pool_calloc(pc->pool, sizeof(*f));
    if (get(attrs, "timeout-ms"))
        f->timeout_ms = (uint32_t)int_attr(attrs, "timeout-ms", 300000);
    else if (get(attrs, "timeout"))
        f->timeout_ms = (uint32_t)int_attr(attrs, "timeout", 300) * 1000;
    f->buffer_request_body = bool_attr(attrs, "buffer-request-body", false);
    f->buffer_response = bool_attr(attrs, "buffer-response", true);
    f->fail_on_error_status = bool_attr(attrs, "fail-on-error-status-code", false);
    f->follow_redirects = bool_attr(attrs, "follow-redirects", false);
    struct pt_node *hv = get(attrs, "http-version");
    f->http_version = !hv                     ? PT_FWD_API
                      : !strcmp(hv->str, "1") ? PT_FWD_H1
                      : !strcmp(hv->str, "2") ? PT_FWD_H2
                                              : PT_FWD_H2_OR1;
    c->stmt->kind = PT_ST_FORWARD;
    c->stmt->data = f;
    return 0;
}

/* What may run in a lane of wait: its direct children are send-request,
   cache-lookup-value or choose (APIM); inside a choose, statements that
   do not take over the pipeline (no forward-request, retry, wait or
   policy with children, which need the pipeline's own frames). */
static bool lane_ok(struct pt_polctx *pc, const struct pt_block *b, int depth)
{
    bool ok = true;
    bool top = depth == 0;
    for (int i = 0; i < b->n; i++) {
        const struct pt_stmt *s = b->s[i];
        if (depth >= PT_COREPOL_LANE_DEPTH) {
            pt_node_error(pc->errs, s->node, "wait: choose nested more than %d deep inside wait",
                          PT_COREPOL_LANE_DEPTH - 1);
            return false;
        }
        if (top && strcmp(s->name, "send-request") && strcmp(s->name, "cache-lookup-value") &&
            strcmp(s->name, "choose")) {
            pt_node_error(pc->errs, s->node,
                          "wait: '%s' cannot be a child of wait (only send-request, cache-lookup-value and "
                          "choose)",
                          s->name);
            ok = false;
            continue;
        }
        if (s->kind != PT_ST_POLICY && s->kind != PT_ST_CHOOSE) {
            pt_node_error(pc->errs, s->node, "wait: '%s' cannot run inside wait (in a choose child)",
                          s->name);
            ok = false;
            continue;
        }
        for (int w = 0; s->kind == PT_ST_CHOOSE && w < s->nwhens; w++)
            ok = lane_ok(pc, &s->whens[w].body, depth + 1) && ok;
    }
    return ok;
}

/* wait: its `policies` were compiled as the statement's body; they become lanes */
static int compile_wait(const struct pt_api *api, pt_compile *c, void **inst)
{
    (void)api;
    (void)inst;
    struct pt_polctx *pc = c->pc;
    struct pt_wait *w = pt_pool_calloc(pc->pool, sizeof(*w));
    struct pt_node *f = get(c->attrs, "for");
    const char *t = f ? pt_policy_text(pc, f) : "all";
    w->any = t && !strcmp(t, "any");
    if (c->stmt->kind != PT_ST_WRAP)
        return -1;
    if (!lane_ok(pc, &c->stmt->body, 0))
        return -1;
    c->stmt->kind = PT_ST_WAIT;
    c->stmt->data = w;
    return 0;
}

static int compile_return_response(const struct pt_api *api, pt_compile *c, void **inst)
{
    (void)api;
    struct pt_polctx *pc = c->pc;
    struct pt_node *attrs = c->attrs;
    struct pt_return_response *rr = pt_pool_calloc(pc->pool, sizeof(*rr));
    struct pt_node *n;
    if ((n = get(attrs, "response-variable-name"))) {
        const char *t = pt_policy_text(pc, n);
        if (!t)
            return -1;
        if (!*t) {
            pt_node_error(pc->errs, n, "response-variable-name must not be empty");
            return -1;
        }
        rr->var = t;
    }
    if ((n = get(attrs, "set-status"))) {
        rr->code = pt_policy_value_compile(pc, pt_node_get(n, "code"));
        if (!rr->code)
            return -1;
        struct pt_node *rs = pt_node_get(n, "reason");
        if (rs && !(rr->reason = pt_policy_value_compile(pc, rs)))
            return -1;
    }
    if ((n = get(attrs, "set-header"))) {
        rr->nheaders = n->kind == PT_N_SEQ ? n->n : 1;
        rr->headers = pt_pool_calloc(pc->pool, sizeof(*rr->headers) * (size_t)rr->nheaders);
        for (int i = 0; i < rr->nheaders; i++)
            if (!compile_header(pc, n->kind == PT_N_SEQ ? n->items[i] : n, &rr->headers[i]))
                return -1;
    }
    if ((n = get(attrs, "set-body"))) {
        struct pt_node *v = n->kind == PT_N_MAP ? pt_node_get(n, "value") : n;
        if (n->kind == PT_N_MAP && pt_node_get(n, "template")) {
            pt_node_error(pc->errs, pt_node_get(n, "template"),
                          "Liquid templates are not supported: build the body with an expression");
            return -1;
        }
        if (v && !(rr->body = pt_policy_value_compile(pc, v)))
            return -1;
    }
    *inst = rr;
    return 0;
}

static int compile_set_variable(const struct pt_api *api, pt_compile *c, void **inst)
{
    (void)api;
    struct pt_polctx *pc = c->pc;
    struct pt_node *nm = get(c->attrs, "name");
    if (nm->kind != PT_N_SCALAR || nm->null || !*nm->str) {
        pt_node_error(pc->errs, nm, "set-variable: name must not be empty");
        return -1;
    }
    struct pt_value *v = pt_policy_value_compile(pc, get(c->attrs, "value"));
    if (!v)
        return -1;
    struct pt_value **vals = pt_pool_calloc(pc->pool, 2 * sizeof(*vals));
    vals[0] = pt_pool_calloc(pc->pool, sizeof(struct pt_value));
    vals[0]->text = nm->str;
    vals[0]->len = strlen(nm->str);
    vals[1] = v;
    *inst = vals;
    return 0;
}

static int compile_mock(const struct pt_api *api, pt_compile *c, void **inst)
{
    (void)api;
    cur_pc = c->pc;
    int *m = pt_pool_calloc(c->pc->pool, sizeof(int) + sizeof(char *));
    m[0] = (int)int_attr(c->attrs, "status-code", 200);
    const char *ct = pt_policy_text(c->pc, get(c->attrs, "content-type"));
    memcpy(m + 1, &ct, sizeof(char *));
    *inst = m;
    return 0;
}

/* --------------------------------------------------------------------- run */

uint32_t pt_corepol_retry_wait(const struct pt_retry *r, int n, uint64_t rnd)
{
    if (n == 1 && r->first_fast)
        return 0;
    if (r->first_fast)
        n--;
    if (!r->delta_ms)
        return r->interval_ms; /* fixed */
    uint64_t w;
    if (!r->max_interval_ms)
        w = r->interval_ms + (uint64_t)(n - 1) * r->delta_ms; /* linear */
    else {
        /* exponential: interval + (2^(n-1) - 1) * random(0.8 delta .. 1.2 delta), capped
           (the first retry waits the interval: 10, 20, 40, 80, 100 for 10/10/100) */
        double f = 0.8 + 0.4 * (double)(rnd % 10001) / 10000.0;
        double grow = (n - 1 >= 31 ? 2147483647.0 : (double)((1u << (n - 1)) - 1)) * f * r->delta_ms;
        w = r->interval_ms + (uint64_t)grow;
        if (w > r->max_interval_ms)
            w = r->max_interval_ms;
    }
    return (uint32_t)PT_MIN(w, (uint64_t)3600000);
}

static pt_status run_set_variable(const struct pt_api *api, pt_call *call, void *inst)
{
    struct pt_value **v = inst;
    struct pt_req *req = call->req;
    struct pt_luaval out;
    int rc = pt_lua_value_eval(req, v[1], &out);
    if (rc == PT_AGAIN)
        return PT_AGAIN;
    if (rc != 0)
        return PT_ERROR;
    pt_msg_var_set(req, (pt_str){v[0]->text, v[0]->len}, out.type, out.s);
    return PT_OK;
}

/* The operation's example for a status and content type, as text. */
static bool operation_example(struct pt_req *req, int status, const char *ctype, pt_str *body, pt_str *type)
{
    if (!req->op)
        return false;
    struct pt_node *resps = pt_node_get(req->op->cf->node, "responses");
    if (!resps || resps->kind != PT_N_SEQ)
        return false;
    for (int i = 0; i < resps->n; i++) {
        struct pt_node *r = resps->items[i];
        struct pt_node *sc = pt_node_get(r, "statusCode");
        if (!sc || sc->kind != PT_N_SCALAR || atoi(sc->str) != status)
            continue;
        struct pt_node *reps = pt_node_get(r, "representations");
        for (int k = 0; reps && reps->kind == PT_N_SEQ && k < reps->n; k++) {
            struct pt_node *rep = reps->items[k];
            struct pt_node *ct = pt_node_get(rep, "contentType");
            if (ctype && (!ct || ct->kind != PT_N_SCALAR || strcasecmp(ct->str, ctype)))
                continue;
            struct pt_node *ex = pt_node_get(rep, "examples");
            struct pt_node *val = NULL;
            if (ex && ex->kind == PT_N_MAP && ex->n) {
                struct pt_node *def = pt_node_get(ex, "default");
                struct pt_node *one = def ? def : pt_node_val(ex, 0);
                val = one->kind == PT_N_MAP ? pt_node_get(one, "value") : one;
            }
            if (!val)
                val = pt_node_get(rep, "sample");
            if (!val)
                continue;
            *body = pt_node_to_text(req->pool, val);
            *type = ct && ct->kind == PT_N_SCALAR ? pt_str_c(ct->str) : PT_NULL_STR;
            return true;
        }
    }
    /* no example: a sample of the response's schema (built with the generation) */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < req->op->nsamples; i++) {
            const struct pt_sample *s = &req->op->samples[i];
            if (s->status != (pass ? 0 : status) || (ctype && strcasecmp(s->content_type, ctype)))
                continue;
            *body = s->body;
            *type = pt_str_c(s->content_type);
            return true;
        }
    return false;
}

static pt_status run_mock(const struct pt_api *api, pt_call *call, void *inst)
{
    struct pt_req *req = call->req;
    int status = ((int *)inst)[0];
    const char *ctype;
    memcpy(&ctype, (int *)inst + 1, sizeof(ctype));
    pt_str body = PT_NULL_STR, type = PT_NULL_STR;
    operation_example(req, status, ctype, &body, &type);
    if (!type.len && ctype)
        type = pt_str_c(ctype);
    pt_msg_new_response(req, status, PT_NULL_STR);
    if (type.len) {
        pt_msg_header_set(req, PT_MSG_RESPONSE, (pt_bytes){"Content-Type", 12}, &type, 1, PT_HEADER_OVERRIDE);
    }
    pt_msg_set_body(req, PT_MSG_RESPONSE, body);
    return PT_DONE;
}

static pt_status run_return_response(const struct pt_api *api, pt_call *call, void *inst)
{
    (void)api;
    struct pt_req *req = call->req;
    const struct pt_return_response *rr = inst;
    int rc;
    /* everything is evaluated first: expressions see the response as it was
       (the backend's, in outbound), not the empty one being built */
    long code = 200;
    pt_str reason = PT_NULL_STR;
    if (rr->code) {
        struct pt_luaval v;
        if ((rc = pt_lua_value_eval(req, rr->code, &v)) != 0)
            return rc == PT_AGAIN ? PT_AGAIN : PT_ERROR;
        code = v.type == PT_VAR_NUMBER ? (long)v.num : strtol(v.s.data ? v.s.data : "", NULL, 10);
        if (rr->reason) {
            struct pt_luaval rv;
            if ((rc = pt_lua_value_eval(req, rr->reason, &rv)) != 0)
                return rc == PT_AGAIN ? PT_AGAIN : PT_ERROR;
            reason = rv.s;
        }
        if (code < 100 || code > 999 || !pt_http_value_ok(reason)) {
            pt_msg_set_error(req, 500, "return-response", "ExpressionValueEvaluationFailure",
                             "set-status: invalid status code or reason");
            return PT_ERROR;
        }
    }
    struct pt_luaval *names = pt_pool_calloc(req->pool, sizeof(*names) * (size_t)(rr->nheaders + 1));
    pt_bytes **vals = pt_pool_calloc(req->pool, sizeof(*vals) * (size_t)(rr->nheaders + 1));
    for (int i = 0; i < rr->nheaders; i++) {
        const struct pt_rr_header *h = &rr->headers[i];
        if ((rc = pt_lua_value_eval(req, h->name, &names[i])) != 0)
            return rc == PT_AGAIN ? PT_AGAIN : PT_ERROR;
        vals[i] = pt_pool_alloc(req->pool, sizeof(pt_bytes) * (size_t)(h->nvalues ? h->nvalues : 1));
        for (int k = 0; k < h->nvalues; k++) {
            struct pt_luaval hv;
            if ((rc = pt_lua_value_eval(req, h->values[k], &hv)) != 0)
                return rc == PT_AGAIN ? PT_AGAIN : PT_ERROR;
            vals[i][k] = hv.s;
        }
    }
    struct pt_luaval body = {0};
    if (rr->body && (rc = pt_lua_value_eval(req, rr->body, &body)) != 0)
        return rc == PT_AGAIN ? PT_AGAIN : PT_ERROR;
    /* now build it: from the variable's response (APIM), or from an empty 200 */
    if (rr->var) {
        const struct pt_http_resp *base = pt_msg_var_response(req, pt_str_c(rr->var));
        if (!base) {
            pt_msg_set_error(req, 500, "return-response", "ResponseVariableNotFound",
                             pt_pool_printf(req->pool, "variable '%s' holds no response", rr->var));
            return PT_ERROR;
        }
        if (start_from(req, base) < 0)
            return PT_ERROR;
        if (rr->code && pt_msg_set_status(req, (int)code, reason, "return-response") < 0)
            return PT_ERROR;
    } else
        pt_msg_new_response(req, (int)code, reason);
    for (int i = 0; i < rr->nheaders; i++)
        if (pt_msg_header_set(req, PT_MSG_RESPONSE, names[i].s, vals[i], rr->headers[i].nvalues,
                              rr->headers[i].mode) < 0)
            return PT_ERROR;
    if (rr->body)
        pt_msg_set_body(req, PT_MSG_RESPONSE, body.s);
    return PT_DONE;
}

const char *pt_corepol_example(const char *name)
{
    if (!strcmp(name, "choose"))
        return "- choose:\n"
               "    - when: \"@(context.request.method == 'POST')\"\n"
               "      then:\n"
               "        - set-header: {name: X-Kind, value: write}\n"
               "    - when: \"@(context.request.headers:has('X-Preview'))\"\n"
               "      then:\n"
               "        - set-header: {name: X-Kind, value: preview}\n"
               "    - otherwise:\n"
               "        - set-header: {name: X-Kind, value: read}\n";
    return NULL;
}
