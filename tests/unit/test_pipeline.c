/*
 * test_pipeline -- the policy pipeline driver (policy/pt_pipeline.c) run
 * over hand-built pipelines: section order, PT_DONE, errors and on-error,
 * suspending and resuming, bodies, forward-request, nesting limits,
 * wrapping policies, choose paths, CORS preflights, timers and retry.
 *
 * The connection layer is replaced by fakes in pt_pipeline_ops; statements are
 * PT_ST_POLICY statements of a scripted test policy whose run() writes to a
 * trace, so each test compares the exact sequence of what ran.
 */
#include "lua/pt_lua.h"
#include "policy/pt_api.h"
#include "policy/pt_corepol.h"
#include "policy/pt_pipeline.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

/* ------------------------------------------------------------------ trace */

static char trace[4096];

static void tr(const char *fmt, ...) PT_PRINTF(1, 2);
static void tr(const char *fmt, ...)
{
    size_t n = strlen(trace);
    if (n && n < sizeof(trace) - 1)
        trace[n++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(trace + n, sizeof(trace) - n, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------ the test policy */

enum act {
    ACT_OK,          /* PT_OK */
    ACT_DECLINED,    /* PT_DECLINED */
    ACT_AGAIN,       /* PT_AGAIN; the test resumes */
    ACT_DONE,        /* sets the response status, then api->respond (PT_DONE) */
    ACT_FAIL,        /* api->fail(status, reason, message) for the first fail_runs runs (all when 0) */
    ACT_ERROR,       /* PT_ERROR without recording an error */
    ACT_RESUME_SYNC, /* api->resume(resume_with) from inside run(), then PT_AGAIN */
    ACT_BODY,        /* reads the request body through api->body_get */
    ACT_TIMER,       /* api->timer_start(ms); the timer resumes with PT_OK */
    ACT_WHERE,       /* traces name@section/message=status */
    ACT_WORK,        /* registers work with the driver (its cancel traces cancel(name)), then PT_AGAIN */
};

struct script {
    enum act act;
    int status;
    const char *reason, *message;
    pt_status resume_with;
    uint32_t ms;
    int fail_runs;
    int runs;
    pt_call *call; /* the call of the last run (a lane's, inside wait) */
    struct pt_work work;
    const char *name;
    pt_timer *timer; /* ACT_TIMER: the handle of the last run's timer */
};

static void work_cancel(void *handle)
{
    struct script *sc = handle;
    tr("cancel(%s)", sc->name);
}

static void timer_resume(pt_call *call, void *arg)
{
    (void)arg;
    tr("timer");
    pt_policy_api_table.resume(call, PT_OK);
}

static pt_status t_run(const struct pt_api *api, pt_call *call, void *inst)
{
    struct script *sc = inst;
    const char *name = call->name;
    sc->runs++;
    sc->call = call;
    switch (sc->act) {
    case ACT_OK:
        tr("%s", name);
        return PT_OK;
    case ACT_DECLINED:
        tr("%s", name);
        return PT_DECLINED;
    case ACT_AGAIN:
        tr("%s", name);
        return PT_AGAIN;
    case ACT_DONE:
        tr("%s", name);
        assert_int_equal(api->set_status(call, sc->status, (pt_bytes){"", 0}), 0);
        return api->respond(call);
    case ACT_FAIL:
        tr("%s", name);
        if (sc->fail_runs && sc->runs > sc->fail_runs)
            return PT_OK;
        return (*api->fail)(call, sc->status, sc->reason, sc->message); /* cmocka defines a fail() macro */
    case ACT_ERROR:
        tr("%s", name);
        return PT_ERROR;
    case ACT_RESUME_SYNC:
        tr("%s", name);
        api->resume(call, sc->resume_with);
        return PT_AGAIN;
    case ACT_BODY: {
        pt_bytes b;
        int rc = api->body_get(call, PT_MSG_REQUEST, &b);
        if (rc == PT_AGAIN) {
            tr("%s(wait)", name);
            return PT_AGAIN;
        }
        assert_int_equal(rc, 0);
        tr("%s(%.*s)", name, (int)b.len, b.data);
        return PT_OK;
    }
    case ACT_TIMER:
        tr("%s", name);
        sc->timer = api->timer_start(call, sc->ms, timer_resume, sc);
        assert_non_null(sc->timer);
        return PT_AGAIN;
    case ACT_WORK:
        tr("%s", name);
        sc->name = name;
        pt_pipeline_work_start(call, &sc->work, work_cancel, sc);
        return PT_AGAIN;
    case ACT_WHERE: {
        const struct pt_req *req = call->req;
        tr("%s@%s/%s=%d", name, pt_msg_section_names[req->ex.section],
           req->ex.call.current == PT_MSG_REQUEST ? "request" : "response", api->status(call));
        return PT_OK;
    }
    }
    return PT_ERROR;
}

static const struct pt_policy_def t_def = {"t",   PT_SECTION_ALL, PT_SCOPE_ALL,          0, NULL, NULL,
                                           t_run, NULL,           "scripted test policy"};
static const struct pt_policy_def t_preflight_def = {"t-cors",
                                                     PT_SECTION_INBOUND,
                                                     PT_SCOPE_ALL,
                                                     PT_POLICY_PREFLIGHT,
                                                     NULL,
                                                     NULL,
                                                     t_run,
                                                     NULL,
                                                     "scripted test policy answering preflights"};

/* --------------------------------------------------------------- fixture */

enum fwd_mode { FWD_AGAIN, FWD_OK, FWD_FAIL };
enum read_mode { READ_ASYNC, READ_SYNC_OK, READ_SYNC_FAIL };

static struct {
    struct event_base *base;
    uint64_t rng[2];
    struct pt_peer peer;
    struct pt_req req;
    struct pt_pool *spool; /* statements and scripts */
    struct pt_pipeline pl;
    enum fwd_mode fwd_mode;
    enum read_mode read_mode;
    int forwards, reads, responds;
    int read_which;
    int respond_status; /* the response status when respond() was called (0: none) */
} T;

/* What the connection layer does once it has read a request body. */
static void body_is_in(struct pt_req *req, const char *text)
{
    if (!req->req_body)
        req->req_body = evbuffer_new();
    evbuffer_add(req->req_body, text, strlen(text));
    req->req_body_state = RB_BUFFERED;
}

static pt_status fake_forward(struct pt_req *req)
{
    tr("forward");
    T.forwards++;
    switch (T.fwd_mode) {
    case FWD_OK:
        pt_msg_new_response(req, 201, PT_NULL_STR);
        return PT_OK;
    case FWD_FAIL:
        pt_msg_set_error(req, 502, "forward-request", "BackendConnectionFailure", "connection refused");
        return PT_ERROR;
    case FWD_AGAIN:
        break;
    }
    return PT_AGAIN;
}

static void fake_read_body(struct pt_req *req, pt_msg which)
{
    tr("read_body(%d)", (int)which);
    T.reads++;
    T.read_which = (int)which;
    if (T.read_mode == READ_SYNC_OK) {
        body_is_in(req, "sync");
        pt_pipeline_body_ready(req, true);
    } else if (T.read_mode == READ_SYNC_FAIL) {
        pt_msg_set_error(req, 413, "gateway", "BodyTooLarge", "request body too large");
        pt_pipeline_body_ready(req, false);
    }
}

static void fake_respond(struct pt_req *req)
{
    tr("respond");
    T.responds++;
    T.respond_status = req->rh_done ? req->rh.status : 0;
}

static int setup_bare(void **state)
{
    (void)state;
    memset(&T, 0, sizeof(T));
    trace[0] = '\0';
    /* precise timers, as the workers' bases have (pt_worker.c): the coarse clock can fire a few ms early */
    struct event_config *ec = event_config_new();
    assert_non_null(ec);
    event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
    T.base = event_base_new_with_config(ec);
    event_config_free(ec);
    assert_non_null(T.base);
    T.rng[0] = 5000; /* retry waits: rnd = rng[0] ^ t0 = 5000, a random factor of exactly 1.0 */
    T.peer.base = T.base;
    T.peer.rng = T.rng;
    T.req.pool = pt_pool_new(4096);
    T.req.peer = &T.peer;
    T.req.h.body = PT_BODY_NONE;
    T.req.req_body_state = RB_STREAM;
    T.spool = pt_pool_new(4096);
    T.fwd_mode = FWD_OK;
    T.read_mode = READ_ASYNC;
    pt_pipeline_ops = (struct pt_pipeline_ops){fake_forward, fake_read_body, fake_respond};
    return 0;
}

static struct pt_stmt *FWD(uint32_t timeout_ms, bool buffer_request_body, bool fail_on_status);
static struct pt_block blk(int n, ...);

/* Every test starts with a backend section of one forward-request. */
static int setup(void **state)
{
    setup_bare(state);
    T.pl.sec[PT_SEC_BACKEND] = blk(1, FWD(0, false, false));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pt_pipeline_cleanup(&T.req);
    if (T.req.resp_body)
        evbuffer_free(T.req.resp_body);
    if (T.req.req_body)
        evbuffer_free(T.req.req_body);
    pt_pool_free(T.req.pool);
    pt_pool_free(T.spool);
    event_base_free(T.base);
    return 0;
}

/* ------------------------------------------------------------- builders */

static struct script *script(enum act a)
{
    struct script *sc = pt_pool_calloc(T.spool, sizeof(*sc));
    sc->act = a;
    return sc;
}

static struct pt_stmt *stmt(enum pt_stmt_kind kind, const char *name, const struct pt_policy_def *def,
                            void *inst)
{
    struct pt_stmt *s = pt_pool_calloc(T.spool, sizeof(*s));
    s->kind = kind;
    s->def = def;
    s->name = name;
    s->instance = inst;
    s->scope = PT_SCOPE_API;
    return s;
}

/* A test policy statement; its script is s->instance. */
static struct pt_stmt *P(const char *name, enum act a)
{
    return stmt(PT_ST_POLICY, name, &t_def, script(a));
}

static struct pt_stmt *FAIL(const char *name, int status, const char *reason, const char *message)
{
    struct pt_stmt *s = P(name, ACT_FAIL);
    struct script *sc = s->instance;
    sc->status = status;
    sc->reason = reason;
    sc->message = message;
    return s;
}

static struct script *SC(const struct pt_stmt *s)
{
    return s->instance;
}

static struct pt_block blk(int n, ...)
{
    struct pt_block b = {pt_pool_calloc(T.spool, sizeof(struct pt_stmt *) * (size_t)(n ? n : 1)), n};
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        b.s[i] = va_arg(ap, struct pt_stmt *);
    va_end(ap);
    return b;
}

static struct pt_stmt *WRAP(const char *name, enum act a, struct pt_block body)
{
    struct pt_stmt *s = stmt(PT_ST_WRAP, name, &t_def, script(a));
    s->body = body;
    return s;
}

static struct pt_value *lit(const char *text)
{
    struct pt_value *v = pt_pool_calloc(T.spool, sizeof(*v));
    v->text = text;
    v->len = strlen(text);
    v->expr = 0;
    return v;
}

static struct pt_retry *retry_cf(const char *cond, int count, uint32_t interval_ms)
{
    struct pt_retry *r = pt_pool_calloc(T.spool, sizeof(*r));
    r->cond = lit(cond);
    r->count = count;
    r->interval_ms = interval_ms;
    return r;
}

static struct pt_stmt *RETRY(struct pt_retry *r, struct pt_block body)
{
    struct pt_stmt *s = stmt(PT_ST_RETRY, "retry", NULL, NULL);
    s->data = r;
    s->body = body;
    return s;
}

static struct pt_stmt *FWD(uint32_t timeout_ms, bool buffer_request_body, bool fail_on_status)
{
    struct pt_forward *f = pt_pool_calloc(T.spool, sizeof(*f));
    f->timeout_ms = timeout_ms;
    f->buffer_request_body = buffer_request_body;
    f->fail_on_error_status = fail_on_status;
    struct pt_stmt *s = stmt(PT_ST_FORWARD, "forward-request", NULL, NULL);
    s->data = f;
    return s;
}

/* choose with n branches: (const char *cond or NULL for otherwise, struct pt_block body) pairs */
static struct pt_stmt *CHOOSE(int n, ...)
{
    struct pt_stmt *s = stmt(PT_ST_CHOOSE, "choose", NULL, NULL);
    s->whens = pt_pool_calloc(T.spool, sizeof(*s->whens) * (size_t)n);
    s->nwhens = n;
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *cond = va_arg(ap, const char *);
        s->whens[i].cond = cond ? lit(cond) : NULL;
        s->whens[i].body = va_arg(ap, struct pt_block);
    }
    va_end(ap);
    return s;
}

static struct pt_stmt *WAIT(bool any, struct pt_block body)
{
    struct pt_wait *w = pt_pool_calloc(T.spool, sizeof(*w));
    w->any = any;
    struct pt_stmt *s = stmt(PT_ST_WAIT, "wait", NULL, NULL);
    s->data = w;
    s->body = body;
    return s;
}

/* api->resume on the call a statement last ran with (a lane's call inside wait). */
static void resume_stmt(const struct pt_stmt *s, pt_status st)
{
    assert_non_null(SC(s)->call);
    pt_policy_api_table.resume(SC(s)->call, st);
}

static void start(void)
{
    pt_pipeline_start(&T.req, &T.pl);
}

static const char *resp_body(void)
{
    static char b[512];
    b[0] = '\0';
    if (T.req.resp_body) {
        size_t n = evbuffer_get_length(T.req.resp_body);
        if (n >= sizeof(b))
            n = sizeof(b) - 1;
        evbuffer_copyout(T.req.resp_body, b, n);
        b[n] = '\0';
    }
    return b;
}

static const char *resp_header(const char *name)
{
    static char b[256];
    struct pt_hdr *h = pt_http_head_get(&T.req.rh, pt_str_c(name));
    if (!h)
        return NULL;
    snprintf(b, sizeof(b), "%.*s", (int)h->value.len, h->value.data);
    return b;
}

/* Runs the event loop until the response went out (bounded). */
static void loop_until_responded(void)
{
    for (int i = 0; i < 100 && !T.responds; i++)
        event_base_loop(T.base, EVLOOP_ONCE);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ tests */

static void test_sections_run_in_order(void **state)
{
    (void)state;
    T.pl.sec[PT_SEC_INBOUND] = blk(2, P("a", ACT_OK), P("b", ACT_DECLINED));
    T.pl.sec[PT_SEC_BACKEND] = blk(2, P("c", ACT_OK), FWD(0, false, false));
    T.pl.sec[PT_SEC_OUTBOUND] = blk(1, P("d", ACT_OK));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(1, P("e", ACT_OK));
    start();
    assert_string_equal(trace, "a b c forward d respond");
    assert_int_equal(T.responds, 1);
    assert_int_equal(T.forwards, 1);
    assert_int_equal(T.respond_status, 201); /* the backend's response, not replaced */
    assert_true(T.req.ex.done);
    assert_false(T.req.ex.in_error);
    assert_false(T.req.ex.has_error);
    assert_int_equal(T.req.ex.section, PT_SEC_OUTBOUND);
}

static void test_sections_see_their_message(void **state)
{
    (void)state;
    T.pl.sec[PT_SEC_INBOUND] = blk(1, P("i", ACT_WHERE));
    T.pl.sec[PT_SEC_BACKEND] = blk(2, P("b", ACT_WHERE), FWD(0, false, false));
    T.pl.sec[PT_SEC_OUTBOUND] = blk(2, P("o", ACT_WHERE), FAIL("f", 418, "Teapot", "short and stout"));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(1, P("e", ACT_WHERE));
    start();
    assert_string_equal(trace, "i@inbound/request=0 b@backend/request=0 forward o@outbound/response=201 f "
                               "e@on-error/response=418 respond");
    assert_int_equal(T.responds, 1);
}

static void test_backend_without_forward_gets_empty_200(void **state)
{
    (void)state;
    T.pl.sec[PT_SEC_BACKEND] = blk(1, P("b", ACT_OK));
    T.pl.sec[PT_SEC_OUTBOUND] = blk(1, P("o", ACT_WHERE));
    start();
    assert_string_equal(trace, "b o@outbound/response=200 respond");
    assert_int_equal(T.forwards, 0);
    assert_int_equal(T.respond_status, 200);
    assert_true(T.req.rh_done);
    assert_false(T.req.rh_backend);
    assert_int_equal(T.req.rh.nh, 0);
    assert_non_null(T.req.resp_body);
    assert_int_equal(evbuffer_get_length(T.req.resp_body), 0);
}

static void test_empty_pipeline(void **state)
{
    (void)state;
    T.pl.sec[PT_SEC_BACKEND] = blk(0);
    start();
    assert_string_equal(trace, "respond");
    assert_int_equal(T.respond_status, 200);
    assert_int_equal(T.forwards, 0);
}

static void test_done_skips_to_response(void **state)
{
    (void)state;
    struct pt_stmt *done = P("stop", ACT_DONE);
    SC(done)->status = 403;
    T.pl.sec[PT_SEC_INBOUND] = blk(3, P("a", ACT_OK), done, P("c", ACT_OK));
    T.pl.sec[PT_SEC_BACKEND] = blk(1, FWD(0, false, false));
    T.pl.sec[PT_SEC_OUTBOUND] = blk(1, P("o", ACT_OK));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(1, P("e", ACT_OK));
    start();
    assert_string_equal(trace, "a stop respond");
    assert_int_equal(T.responds, 1);
    assert_int_equal(T.forwards, 0);
    assert_int_equal(T.respond_status, 403);
    assert_true(T.req.ex.done);
    /* nothing happens once the pipeline is over */
    pt_pipeline_resume(&T.req, PT_OK);
    assert_string_equal(trace, "a stop respond");
    assert_int_equal(T.responds, 1);
}

static void test_done_in_outbound_and_on_error(void **state)
{
    (void)state;
    struct pt_stmt *done = P("stop", ACT_DONE);
    SC(done)->status = 299;
    T.pl.sec[PT_SEC_OUTBOUND] = blk(3, P("o1", ACT_OK), done, P("o3", ACT_OK));
    start();
    assert_string_equal(trace, "forward o1 stop respond");
    assert_int_equal(T.respond_status, 299);
    teardown(NULL);
    setup(NULL);

    done = P("stop", ACT_DONE);
    SC(done)->status = 503;
    T.pl.sec[PT_SEC_INBOUND] = blk(1, P("x", ACT_ERROR));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(2, done, P("e2", ACT_OK));
    start();
    assert_string_equal(trace, "x stop respond");
    assert_int_equal(T.respond_status, 503);
    assert_int_equal(T.responds, 1);
}

static void test_error_runs_on_error(void **state)
{
    (void)state;
    struct pt_stmt *f = FAIL("check", 404, "NotFound", "no such \"thing\"");
    f->id = "pid-7";
    f->scope = PT_SCOPE_PRODUCT;
    T.pl.sec[PT_SEC_INBOUND] = blk(3, P("a", ACT_OK), f, P("c", ACT_OK));
    T.pl.sec[PT_SEC_BACKEND] = blk(1, FWD(0, false, false));
    T.pl.sec[PT_SEC_OUTBOUND] = blk(1, P("o", ACT_OK));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(2, P("e1", ACT_WHERE), P("e2", ACT_OK));
    start();
    assert_string_equal(trace, "a check e1@on-error/response=404 e2 respond");
    assert_int_equal(T.forwards, 0);
    assert_int_equal(T.responds, 1);
    assert_true(T.req.ex.in_error);
    const struct pt_lasterror *e = &T.req.ex.err;
    assert_int_equal(e->status, 404);
    assert_string_equal(e->source, "check");
    assert_string_equal(e->reason, "NotFound");
    assert_string_equal(e->message, "no such \"thing\"");
    assert_string_equal(e->section, "inbound");
    assert_string_equal(e->path, "check[2]");
    assert_string_equal(e->policy_id, "pid-7");
    assert_int_equal(e->scope, PT_SCOPE_PRODUCT);
    assert_string_equal(T.req.reason, "NotFound");
    /* the gateway's error response, which on-error may still change */
    assert_int_equal(T.respond_status, 404);
    assert_string_equal(resp_body(), "{\"statusCode\": 404, \"message\": \"no such \\\"thing\\\"\"}");
    assert_string_equal(resp_header("Content-Type"), "application/json");
}

static void test_error_500_hides_the_message(void **state)
{
    (void)state;
    T.pl.sec[PT_SEC_BACKEND] = blk(1, FAIL("b", 500, "Boom", "secret detail"));
    start();
    assert_string_equal(trace, "b respond");
    assert_int_equal(T.respond_status, 500);
    assert_string_equal(resp_body(), "{\"statusCode\": 500, \"message\": \"Internal server error\"}");
    assert_string_equal(T.req.ex.err.message, "secret detail");
    assert_string_equal(T.req.ex.err.section, "backend");
    assert_string_equal(T.req.ex.err.policy_id, "");
}

static void test_error_without_reason_is_internal(void **state)
{
    (void)state;
    T.pl.sec[PT_SEC_OUTBOUND] = blk(2, P("o1", ACT_OK), P("o2", ACT_ERROR));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(1, P("e", ACT_OK));
    start();
    assert_string_equal(trace, "forward o1 o2 e respond");
    const struct pt_lasterror *e = &T.req.ex.err;
    assert_int_equal(e->status, 500);
    assert_string_equal(e->source, "gateway");
    assert_string_equal(e->reason, "InternalError");
    assert_string_equal(e->message, "a policy failed");
    assert_string_equal(e->section, "outbound");
    assert_string_equal(e->path, "o2[2]");
    assert_int_equal(e->scope, PT_SCOPE_API);
    assert_int_equal(T.respond_status, 500);
    assert_string_equal(resp_body(), "{\"statusCode\": 500, \"message\": \"Internal server error\"}");
}

static void test_error_path_through_choose(void **state)
{
    (void)state;
    /* choose[2] -> its second branch -> the second statement of that branch */
    T.pl.sec[PT_SEC_INBOUND] =
        blk(2, P("a", ACT_OK),
            CHOOSE(3, "false", blk(1, P("never", ACT_OK)), "true",
                   blk(2, P("x", ACT_OK), FAIL("y", 401, "Unauthorized", "who are you")), (const char *)NULL,
                   blk(1, P("other", ACT_OK))));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(1, P("e", ACT_OK));
    start();
    assert_string_equal(trace, "a x y e respond");
    assert_string_equal(T.req.ex.err.path, "choose[2]/when[2]/y[2]");
    assert_string_equal(T.req.ex.err.section, "inbound");
    assert_int_equal(T.respond_status, 401);
    assert_string_equal(resp_body(), "{\"statusCode\": 401, \"message\": \"who are you\"}");
}

static void test_error_path_nested_choose_otherwise(void **state)
{
    (void)state;
    struct pt_stmt *inner =
        CHOOSE(2, "FALSE", blk(1, P("no", ACT_OK)), (const char *)NULL, blk(1, FAIL("q", 400, "Bad", "bad")));
    T.pl.sec[PT_SEC_BACKEND] = blk(1, CHOOSE(1, "yes", blk(2, P("p", ACT_OK), inner)));
    start();
    assert_string_equal(trace, "p q respond");
    assert_string_equal(T.req.ex.err.path, "choose[1]/when[1]/choose[2]/otherwise/q[1]");
    assert_string_equal(T.req.ex.err.section, "backend");
    assert_int_equal(T.respond_status, 400);
}

static void test_choose_branches(void **state)
{
    (void)state;
    /* the first true branch only; an empty true branch ends the choose; nothing true: nothing runs */
    T.pl.sec[PT_SEC_INBOUND] =
        blk(4,
            CHOOSE(3, "", blk(1, P("empty-cond", ACT_OK)), "true", blk(1, P("first", ACT_OK)), "true",
                   blk(1, P("second", ACT_OK))),
            CHOOSE(2, "true", blk(0), (const char *)NULL, blk(1, P("not-otherwise", ACT_OK))),
            CHOOSE(1, "false", blk(1, P("nothing", ACT_OK))), P("z", ACT_OK));
    start();
    assert_string_equal(trace, "first z forward respond");
}

static void test_error_in_on_error_ends_with_gateway_error(void **state)
{
    (void)state;
    T.pl.sec[PT_SEC_INBOUND] = blk(1, FAIL("f", 429, "TooMany", "slow down"));
    T.pl.sec[PT_SEC_ON_ERROR] =
        blk(3, P("e1", ACT_OK), FAIL("g", 503, "Broken", "on-error broke"), P("h", ACT_OK));
    start();
    assert_string_equal(trace, "f e1 g respond");
    assert_int_equal(T.responds, 1);
    const struct pt_lasterror *e = &T.req.ex.err;
    assert_int_equal(e->status, 503);
    assert_string_equal(e->reason, "Broken");
    assert_string_equal(e->source, "g");
    assert_string_equal(e->section, "on-error");
    assert_string_equal(e->path, "g[2]");
    assert_int_equal(T.respond_status, 503);
    assert_string_equal(resp_body(), "{\"statusCode\": 503, \"message\": \"on-error broke\"}");
    assert_string_equal(resp_header("Content-Type"), "application/json");
    assert_int_equal(SC(T.pl.sec[PT_SEC_ON_ERROR].s[2])->runs, 0);
}

static void test_plain_error_in_on_error_keeps_first_error(void **state)
{
    (void)state;
    /* an on-error statement failing without api->fail leaves the record of
       the first error in place (has_error is still set): the response is
       the first error's */
    T.pl.sec[PT_SEC_INBOUND] = blk(1, FAIL("f", 429, "TooMany", "slow down"));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(2, P("g", ACT_ERROR), P("h", ACT_OK));
    start();
    assert_string_equal(trace, "f g respond");
    assert_string_equal(T.req.ex.err.reason, "TooMany");
    assert_string_equal(T.req.ex.err.section, "inbound");
    assert_string_equal(T.req.ex.err.path, "f[1]");
    assert_int_equal(T.respond_status, 429);
    assert_string_equal(resp_body(), "{\"statusCode\": 429, \"message\": \"slow down\"}");
}

static void test_error_without_on_error_section(void **state)
{
    (void)state;
    T.pl.sec[PT_SEC_INBOUND] = blk(2, FAIL("f", 451, "Legal", "unavailable"), P("never", ACT_OK));
    T.pl.sec[PT_SEC_OUTBOUND] = blk(1, P("o", ACT_OK));
    start();
    assert_string_equal(trace, "f respond");
    assert_false(T.req.ex.in_error);
    assert_int_equal(T.respond_status, 451);
    assert_string_equal(resp_body(), "{\"statusCode\": 451, \"message\": \"unavailable\"}");
}

static void test_suspend_and_resume(void **state)
{
    (void)state;
    T.pl.sec[PT_SEC_INBOUND] = blk(3, P("a", ACT_OK), P("s", ACT_AGAIN), P("b", ACT_OK));
    T.pl.sec[PT_SEC_OUTBOUND] = blk(1, P("o", ACT_OK));
    start();
    assert_string_equal(trace, "a s");
    assert_int_equal(T.responds, 0);
    assert_true(T.req.ex.waiting);
    assert_false(T.req.ex.running);
    assert_false(T.req.ex.done);
    assert_int_equal(SC(T.pl.sec[PT_SEC_INBOUND].s[1])->runs, 1);
    pt_pipeline_resume(&T.req, PT_OK);
    assert_string_equal(trace, "a s b forward o respond");
    assert_int_equal(SC(T.pl.sec[PT_SEC_INBOUND].s[1])->runs, 1); /* not run again */
    assert_int_equal(T.responds, 1);
    assert_int_equal(T.respond_status, 201);
}

static void test_resume_from_inside_run(void **state)
{
    (void)state;
    struct pt_stmt *s = P("s", ACT_RESUME_SYNC);
    SC(s)->resume_with = PT_OK;
    T.pl.sec[PT_SEC_INBOUND] = blk(3, P("a", ACT_OK), s, P("b", ACT_OK));
    start();
    assert_string_equal(trace, "a s b forward respond");
    assert_int_equal(SC(s)->runs, 1);
    assert_int_equal(T.responds, 1);
    assert_false(T.req.ex.waiting);
    assert_false(T.req.ex.resume_pending);
}

static void test_resume_error_from_inside_run(void **state)
{
    (void)state;
    struct pt_stmt *s = P("s", ACT_RESUME_SYNC);
    SC(s)->resume_with = PT_ERROR;
    T.pl.sec[PT_SEC_INBOUND] = blk(2, s, P("b", ACT_OK));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(1, P("e", ACT_OK));
    start();
    assert_string_equal(trace, "s e respond");
    assert_string_equal(T.req.ex.err.reason, "InternalError");
    assert_string_equal(T.req.ex.err.path, "s[1]");
    assert_int_equal(T.respond_status, 500);
}

static void test_resume_with_error(void **state)
{
    (void)state;
    T.pl.sec[PT_SEC_INBOUND] = blk(3, P("a", ACT_OK), P("s", ACT_AGAIN), P("b", ACT_OK));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(1, P("e", ACT_WHERE));
    start();
    assert_string_equal(trace, "a s");
    /* a policy's callback records why, then resumes with PT_ERROR */
    assert_int_equal((*pt_policy_api_table.fail)(&T.req.ex.call, 504, "Timeout", "took too long"), PT_ERROR);
    pt_pipeline_resume(&T.req, PT_ERROR);
    assert_string_equal(trace, "a s e@on-error/response=504 respond");
    assert_int_equal(T.forwards, 0);
    assert_string_equal(T.req.ex.err.source, "s");
    assert_string_equal(T.req.ex.err.path, "s[2]");
    assert_int_equal(T.respond_status, 504);
    assert_string_equal(resp_body(), "{\"statusCode\": 504, \"message\": \"took too long\"}");
}

static void test_timer_resumes(void **state)
{
    (void)state;
    struct pt_stmt *s = P("sleep", ACT_TIMER);
    SC(s)->ms = 5;
    T.pl.sec[PT_SEC_INBOUND] = blk(2, s, P("b", ACT_OK));
    start();
    assert_string_equal(trace, "sleep");
    assert_non_null(T.req.ex.timers);
    loop_until_responded();
    assert_string_equal(trace, "sleep timer b forward respond");
    assert_null(T.req.ex.timers);
    assert_int_equal(SC(s)->runs, 1);
}

static void test_cleanup_cancels_timers(void **state)
{
    (void)state;
    struct pt_stmt *s = P("sleep", ACT_TIMER);
    SC(s)->ms = 60000;
    T.pl.sec[PT_SEC_INBOUND] = blk(1, s);
    start();
    assert_non_null(T.req.ex.timers);
    pt_pipeline_cleanup(&T.req);
    assert_null(T.req.ex.timers);
    /* nothing is left for the loop to fire */
    assert_int_equal(event_base_loop(T.base, EVLOOP_NONBLOCK), 1);
    assert_string_equal(trace, "sleep");
}

static void test_body_read_then_statement_reruns(void **state)
{
    (void)state;
    T.req.h.body = PT_BODY_LENGTH;
    struct pt_stmt *b = P("b", ACT_BODY);
    T.pl.sec[PT_SEC_INBOUND] = blk(3, P("a", ACT_OK), b, P("c", ACT_OK));
    start();
    assert_string_equal(trace, "a b(wait) read_body(1)");
    assert_int_equal(T.reads, 1);
    assert_int_equal(T.read_which, PT_MSG_REQUEST);
    assert_int_equal(T.req.ex.need_body, PT_MSG_REQUEST);
    assert_true(T.req.ex.waiting);
    body_is_in(&T.req, "hello");
    pt_pipeline_body_ready(&T.req, true);
    assert_string_equal(trace, "a b(wait) read_body(1) b(hello) c forward respond");
    assert_int_equal(SC(b)->runs, 2);
    assert_int_equal(T.req.ex.need_body, 0);
    assert_int_equal(T.reads, 1);
}

static void test_body_read_synchronously(void **state)
{
    (void)state;
    T.req.h.body = PT_BODY_CHUNKED;
    T.read_mode = READ_SYNC_OK;
    struct pt_stmt *b = P("b", ACT_BODY);
    T.pl.sec[PT_SEC_INBOUND] = blk(2, b, P("c", ACT_OK));
    start();
    assert_string_equal(trace, "b(wait) read_body(1) b(sync) c forward respond");
    assert_int_equal(SC(b)->runs, 2);
    assert_int_equal(T.responds, 1);
}

static void test_body_read_failure_runs_on_error(void **state)
{
    (void)state;
    T.req.h.body = PT_BODY_LENGTH;
    struct pt_stmt *b = P("b", ACT_BODY);
    T.pl.sec[PT_SEC_INBOUND] = blk(3, P("a", ACT_OK), b, P("c", ACT_OK));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(1, P("e", ACT_WHERE));
    start();
    assert_string_equal(trace, "a b(wait) read_body(1)");
    pt_msg_set_error(&T.req, 413, "gateway", "BodyTooLarge", "request body too large");
    pt_pipeline_body_ready(&T.req, false);
    assert_string_equal(trace, "a b(wait) read_body(1) e@on-error/response=413 respond");
    assert_int_equal(SC(b)->runs, 1);
    assert_string_equal(T.req.ex.err.reason, "BodyTooLarge");
    assert_string_equal(T.req.ex.err.path, "b[2]");
    assert_string_equal(resp_body(), "{\"statusCode\": 413, \"message\": \"request body too large\"}");
}

static void test_body_read_failure_synchronously(void **state)
{
    (void)state;
    T.req.h.body = PT_BODY_LENGTH;
    T.read_mode = READ_SYNC_FAIL;
    T.pl.sec[PT_SEC_INBOUND] = blk(2, P("b", ACT_BODY), P("c", ACT_OK));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(1, P("e", ACT_OK));
    start();
    assert_string_equal(trace, "b(wait) read_body(1) e respond");
    assert_string_equal(T.req.ex.err.reason, "BodyTooLarge");
    assert_int_equal(T.respond_status, 413);
}

static void test_forward_request(void **state)
{
    (void)state;
    T.fwd_mode = FWD_AGAIN;
    T.pl.sec[PT_SEC_BACKEND] = blk(2, P("b", ACT_OK), FWD(1500, false, true));
    T.pl.sec[PT_SEC_OUTBOUND] = blk(1, P("o", ACT_WHERE));
    start();
    assert_string_equal(trace, "b forward");
    assert_int_equal(T.forwards, 1);
    assert_int_equal(T.req.fwd_timeout, 1500);
    assert_true(T.req.fwd_fail_on_status);
    assert_true(T.req.ex.waiting);
    /* the connection layer has the backend's head */
    pt_msg_new_response(&T.req, 202, PT_NULL_STR);
    pt_pipeline_resume(&T.req, PT_OK);
    assert_string_equal(trace, "b forward o@outbound/response=202 respond");
    assert_int_equal(T.respond_status, 202);
    assert_int_equal(T.forwards, 1);
}

static void test_forward_failure_runs_on_error(void **state)
{
    (void)state;
    T.fwd_mode = FWD_FAIL;
    T.pl.sec[PT_SEC_BACKEND] = blk(2, P("b", ACT_OK), FWD(0, false, false));
    T.pl.sec[PT_SEC_OUTBOUND] = blk(1, P("o", ACT_OK));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(1, P("e", ACT_OK));
    start();
    assert_string_equal(trace, "b forward e respond");
    assert_int_equal(T.req.fwd_timeout, 0);
    assert_false(T.req.fwd_fail_on_status);
    assert_string_equal(T.req.ex.err.source, "forward-request");
    assert_string_equal(T.req.ex.err.section, "backend");
    assert_string_equal(T.req.ex.err.path, "forward-request[2]");
    assert_int_equal(T.respond_status, 502);
    assert_string_equal(resp_body(), "{\"statusCode\": 502, \"message\": \"connection refused\"}");
}

static void test_forward_buffers_request_body_first(void **state)
{
    (void)state;
    T.req.h.body = PT_BODY_LENGTH;
    T.pl.sec[PT_SEC_BACKEND] = blk(1, FWD(0, true, false));
    start();
    assert_string_equal(trace, "read_body(1)");
    assert_int_equal(T.forwards, 0);
    body_is_in(&T.req, "payload");
    pt_pipeline_body_ready(&T.req, true);
    assert_string_equal(trace, "read_body(1) forward respond");
    assert_int_equal(T.forwards, 1);
    teardown(NULL);
    setup(NULL);

    /* a request without a body is forwarded at once */
    T.pl.sec[PT_SEC_BACKEND] = blk(1, FWD(0, true, false));
    start();
    assert_string_equal(trace, "forward respond");
    assert_int_equal(T.reads, 0);
}

static struct pt_stmt *nest(int wraps, struct pt_stmt *leaf)
{
    struct pt_stmt *cur = leaf;
    for (int i = 0; i < wraps; i++)
        cur = WRAP("w", ACT_DECLINED, blk(1, cur));
    return cur;
}

static void test_nesting_limit(void **state)
{
    (void)state;
    /* the section is one frame: 31 nested statements still fit */
    struct pt_stmt *leaf = P("leaf", ACT_OK);
    T.pl.sec[PT_SEC_INBOUND] = blk(1, nest(PT_EXEC_DEPTH - 1, leaf));
    start();
    assert_int_equal(SC(leaf)->runs, 1);
    assert_false(T.req.ex.has_error);
    assert_int_equal(T.respond_status, 201);
    teardown(NULL);
    setup(NULL);

    leaf = P("leaf", ACT_OK);
    T.pl.sec[PT_SEC_INBOUND] = blk(1, nest(PT_EXEC_DEPTH, leaf));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(1, P("e", ACT_OK));
    start();
    assert_int_equal(SC(leaf)->runs, 0);
    assert_int_equal(T.forwards, 0);
    const struct pt_lasterror *e = &T.req.ex.err;
    assert_int_equal(e->status, 500);
    assert_string_equal(e->source, "gateway");
    assert_string_equal(e->reason, "PolicyNestingTooDeep");
    assert_string_equal(e->message, "policies nested too deeply");
    char path[PT_EXEC_DEPTH * 5 + 1] = "";
    for (int i = 0; i < PT_EXEC_DEPTH; i++)
        strcat(path, i ? "/w[1]" : "w[1]");
    assert_string_equal(e->path, path);
    assert_true(T.req.ex.in_error);
    assert_int_equal(T.responds, 1);
    assert_int_equal(T.respond_status, 500);
    assert_string_equal(trace + strlen(trace) - strlen("e respond"), "e respond");
}

static void test_wrap_runs_then_children(void **state)
{
    (void)state;
    struct pt_stmt *w = WRAP("w", ACT_OK, blk(2, P("x", ACT_OK), P("y", ACT_OK)));
    T.pl.sec[PT_SEC_INBOUND] = blk(2, w, P("z", ACT_OK));
    start();
    assert_string_equal(trace, "w x y z forward respond");
    teardown(NULL);
    setup(NULL);

    /* its run() refusing: the children never run */
    struct pt_stmt *f = stmt(PT_ST_WRAP, "w", &t_def, script(ACT_FAIL));
    SC(f)->status = 429;
    SC(f)->reason = "ConcurrencyLimitExceeded";
    SC(f)->message = "too many";
    f->body = blk(1, P("x", ACT_OK));
    T.pl.sec[PT_SEC_INBOUND] = blk(2, f, P("z", ACT_OK));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(1, P("e", ACT_OK));
    start();
    assert_string_equal(trace, "w e respond");
    assert_string_equal(T.req.ex.err.path, "w[1]");
    assert_int_equal(T.respond_status, 429);
    teardown(NULL);
    setup(NULL);

    /* an error among the children: the path goes through the wrapping statement */
    T.pl.sec[PT_SEC_OUTBOUND] =
        blk(1, WRAP("w", ACT_OK, blk(2, P("x", ACT_OK), FAIL("y", 409, "Conflict", "c"))));
    start();
    assert_string_equal(trace, "forward w x y respond");
    assert_string_equal(T.req.ex.err.path, "w[1]/y[2]");
    assert_int_equal(T.respond_status, 409);
}

static void test_preflight_runs_only_preflight_statements(void **state)
{
    (void)state;
    T.req.preflight_candidate = true;
    struct pt_stmt *cors = stmt(PT_ST_POLICY, "cors", &t_preflight_def, script(ACT_OK));
    T.pl.sec[PT_SEC_INBOUND] = blk(3, P("a", ACT_OK), cors, WRAP("w", ACT_OK, blk(1, P("x", ACT_OK))));
    T.pl.sec[PT_SEC_BACKEND] = blk(1, FWD(0, false, false));
    T.pl.sec[PT_SEC_OUTBOUND] = blk(1, P("o", ACT_OK));
    assert_true(pt_pipeline_answers_preflight(&T.pl));
    start();
    assert_true(T.req.preflight);
    assert_string_equal(trace, "cors respond");
    assert_int_equal(T.forwards, 0);
    assert_int_equal(T.respond_status, 200);
    teardown(NULL);
    setup(NULL);

    /* a preflight statement that answers */
    T.req.preflight_candidate = true;
    cors = stmt(PT_ST_POLICY, "cors", &t_preflight_def, script(ACT_DONE));
    SC(cors)->status = 204;
    T.pl.sec[PT_SEC_INBOUND] = blk(2, cors, P("a", ACT_OK));
    start();
    assert_string_equal(trace, "cors respond");
    assert_int_equal(T.respond_status, 204);
    teardown(NULL);
    setup(NULL);

    /* only the inbound section's top level counts: otherwise it is an ordinary request */
    T.req.preflight_candidate = true;
    cors = stmt(PT_ST_POLICY, "cors", &t_preflight_def, script(ACT_OK));
    T.pl.sec[PT_SEC_INBOUND] = blk(2, P("a", ACT_OK), WRAP("w", ACT_OK, blk(1, cors)));
    assert_false(pt_pipeline_answers_preflight(&T.pl));
    start();
    assert_false(T.req.preflight);
    assert_string_equal(trace, "a w cors forward respond");
}

static void test_literal_conditions(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        bool val;
    } cases[] = {{"true", true}, {"false", false}, {"FALSE", false}, {"False", false}, {"", false},
                 {"0", true},    {"no", true},     {"falsey", true}, {"1", true}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pt_status st = PT_AGAIN;
        bool v = pt_lua_value_true(&T.req, lit(cases[i].text), &st);
        print_message("# '%s'\n", cases[i].text);
        assert_int_equal(st, PT_OK);
        assert_int_equal(v, cases[i].val);
    }
}

/* ---------------------------------------------------- retry in the driver */

static void test_retry_reruns_failed_body(void **state)
{
    (void)state;
    struct pt_stmt *x = FAIL("x", 502, "BadGateway", "backend down");
    T.pl.sec[PT_SEC_INBOUND] = blk(2, RETRY(retry_cf("true", 2, 0), blk(1, x)), P("after", ACT_OK));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(1, P("e", ACT_OK));
    start();
    assert_string_equal(trace, "x x x e respond");
    assert_int_equal(SC(x)->runs, 3); /* the attempt and `count` retries */
    const struct pt_lasterror *e = &T.req.ex.err;
    assert_int_equal(e->status, 502);
    assert_string_equal(e->reason, "BadGateway");
    assert_string_equal(e->path, "retry[1]/x[1]");
    assert_int_equal(T.respond_status, 502);
    assert_string_equal(resp_body(), "{\"statusCode\": 502, \"message\": \"backend down\"}");
}

static void test_retry_recovers(void **state)
{
    (void)state;
    /* fails once, succeeds on the retry: the error is forgotten, on-error does not run */
    struct pt_stmt *x = FAIL("x", 502, "BadGateway", "backend down");
    SC(x)->fail_runs = 1;
    T.pl.sec[PT_SEC_INBOUND] = blk(2, RETRY(retry_cf("true", 1, 0), blk(1, x)), P("after", ACT_OK));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(1, P("e", ACT_OK));
    start();
    assert_string_equal(trace, "x x after forward respond");
    assert_false(T.req.ex.has_error);
    assert_false(T.req.ex.in_error);
    assert_int_equal(T.respond_status, 201);
}

static void test_retry_condition_true_repeats_success(void **state)
{
    (void)state;
    /* the condition, not the outcome, decides: a true literal repeats `count` times */
    struct pt_stmt *x = P("x", ACT_OK);
    T.pl.sec[PT_SEC_INBOUND] =
        blk(2, RETRY(retry_cf("true", 3, 0), blk(2, x, P("y", ACT_OK))), P("after", ACT_OK));
    start();
    assert_string_equal(trace, "x y x y x y x y after forward respond");
    assert_int_equal(SC(x)->runs, 4);
}

static void test_retry_condition_false(void **state)
{
    (void)state;
    struct pt_stmt *x = FAIL("x", 502, "BadGateway", "backend down");
    T.pl.sec[PT_SEC_INBOUND] = blk(2, RETRY(retry_cf("false", 5, 0), blk(1, x)), P("after", ACT_OK));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(1, P("e", ACT_OK));
    start();
    assert_string_equal(trace, "x e respond");
    assert_int_equal(SC(x)->runs, 1);
    teardown(NULL);
    setup(NULL);

    x = P("x", ACT_OK);
    T.pl.sec[PT_SEC_INBOUND] = blk(2, RETRY(retry_cf("false", 5, 0), blk(1, x)), P("after", ACT_OK));
    start();
    assert_string_equal(trace, "x after forward respond");
}

static void test_retry_waits_on_a_timer(void **state)
{
    (void)state;
    struct pt_stmt *x = P("x", ACT_OK);
    T.pl.sec[PT_SEC_INBOUND] = blk(2, RETRY(retry_cf("true", 1, 30), blk(1, x)), P("after", ACT_OK));
    uint64_t t0 = mono_ms();
    start();
    assert_string_equal(trace, "x");
    assert_int_equal(T.responds, 0);
    assert_true(T.req.ex.waiting);
    assert_non_null(T.req.ex.timers);
    loop_until_responded();
    uint64_t took = mono_ms() - t0;
    assert_string_equal(trace, "x x after forward respond");
    assert_int_equal(SC(x)->runs, 2);
    assert_null(T.req.ex.timers);
    assert_true(took >= 29); /* libevent may round to the millisecond, never much shorter */
    assert_true(took < 5000);
}

static void test_retry_pending_wait_is_cleaned_up(void **state)
{
    (void)state;
    T.pl.sec[PT_SEC_INBOUND] = blk(1, RETRY(retry_cf("true", 1, 60000), blk(1, P("x", ACT_OK))));
    start();
    assert_string_equal(trace, "x");
    assert_non_null(T.req.ex.timers);
    pt_pipeline_cleanup(&T.req);
    assert_null(T.req.ex.timers);
}

static void test_retry_with_suspended_body(void **state)
{
    (void)state;
    struct pt_stmt *s = P("s", ACT_AGAIN);
    T.pl.sec[PT_SEC_INBOUND] = blk(2, RETRY(retry_cf("true", 1, 0), blk(1, s)), P("after", ACT_OK));
    start();
    assert_string_equal(trace, "s");
    pt_pipeline_resume(&T.req, PT_OK);
    assert_string_equal(trace, "s s");
    pt_pipeline_resume(&T.req, PT_OK);
    assert_string_equal(trace, "s s after forward respond");
}

/* ------------------- retries side by side or in a branch, suspended wrappers */

static void test_sequential_retries_count_apart(void **state)
{
    (void)state;
    /* each retry has its own count; today the attempts are counted in the
       enclosing frame (pt_frame.aux of the block holding the retry), so the
       second retry of a block starts where the first stopped */
    struct pt_stmt *x = P("x", ACT_OK), *y = P("y", ACT_OK);
    T.pl.sec[PT_SEC_INBOUND] =
        blk(2, RETRY(retry_cf("true", 2, 0), blk(1, x)), RETRY(retry_cf("true", 2, 0), blk(1, y)));
    start();
    assert_int_equal(SC(x)->runs, 3);
    assert_int_equal(SC(y)->runs, 3);
}

static void test_retry_in_choose_branch_counts_its_own(void **state)
{
    (void)state;
    /* a retry in when[2] with count 2: its attempts are counted in the
       branch's frame, whose aux is the branch index (1), so the body runs
       twice instead of three times, and the index lastError.path reports
       becomes when[3] */
    struct pt_stmt *x = P("x", ACT_OK);
    T.pl.sec[PT_SEC_INBOUND] =
        blk(1, CHOOSE(3, "false", blk(0), "true",
                      blk(2, RETRY(retry_cf("true", 2, 0), blk(1, x)), FAIL("z", 400, "Bad", "bad")), "false",
                      blk(0)));
    start();
    print_message("# x ran %d times; lastError.path %s\n", SC(x)->runs, T.req.ex.err.path);
    assert_int_equal(SC(x)->runs, 3);
    assert_string_equal(T.req.ex.err.path, "choose[1]/when[2]/z[2]");
}

static void test_suspended_wrap_runs_its_children(void **state)
{
    (void)state;
    /* the SDK: nested statements run after the policy's run() returns PT_OK,
       also when it suspended and resumed with PT_OK */
    struct pt_stmt *w = WRAP("w", ACT_AGAIN, blk(1, P("x", ACT_OK)));
    T.pl.sec[PT_SEC_INBOUND] = blk(2, w, P("z", ACT_OK));
    start();
    assert_string_equal(trace, "w");
    pt_pipeline_resume(&T.req, PT_OK);
    assert_string_equal(trace, "w x z forward respond");
}

static void test_a_second_resume_moves_nothing(void **state)
{
    (void)state;
    /* a resume when nothing waits (a policy that resumes twice, the second
       time after the pipeline moved on and ended) moves nothing */
    T.pl.sec[PT_SEC_INBOUND] = blk(3, P("a", ACT_AGAIN), P("b", ACT_AGAIN), P("c", ACT_OK));
    start();
    assert_string_equal(trace, "a");
    pt_pipeline_resume(&T.req, PT_OK);
    assert_string_equal(trace, "a b");
    pt_pipeline_resume(&T.req, PT_OK); /* b's resume */
    assert_string_equal(trace, "a b c forward respond");
    pt_pipeline_resume(&T.req, PT_OK); /* nothing waits any more */
    assert_string_equal(trace, "a b c forward respond");
}

static void test_a_suspended_wrap_does_not_leak_into_on_error(void **state)
{
    (void)state;
    /* a wrapping policy waits; the request fails outside the driver (a body
       that could not be read): on-error's statements run as themselves, the
       wrapper's nested ones never */
    struct pt_stmt *w = WRAP("w", ACT_AGAIN, blk(1, P("x", ACT_OK)));
    T.pl.sec[PT_SEC_INBOUND] = blk(2, w, P("z", ACT_OK));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(2, P("e1", ACT_OK), P("e2", ACT_OK));
    start();
    assert_string_equal(trace, "w");
    pt_msg_set_error(&T.req, 413, "gateway", "BodyTooLarge", "request body too large");
    pt_pipeline_body_ready(&T.req, false);
    assert_string_equal(trace, "w e1 e2 respond");
}

/* ------------------------------------------------------------------ wait */

static void test_wait_all_waits_for_every_lane(void **state)
{
    (void)state;
    struct pt_stmt *a = P("a", ACT_AGAIN), *b = P("b", ACT_AGAIN);
    T.pl.sec[PT_SEC_INBOUND] = blk(2, WAIT(false, blk(3, a, b, P("c", ACT_OK))), P("after", ACT_OK));
    start();
    assert_string_equal(trace, "a b c"); /* every lane started at once */
    assert_ptr_not_equal(SC(a)->call, SC(b)->call);
    assert_ptr_not_equal(SC(a)->call, &T.req.ex.call); /* each lane has its own call */
    resume_stmt(b, PT_OK);
    assert_string_equal(trace, "a b c"); /* a still runs */
    resume_stmt(a, PT_OK);
    assert_string_equal(trace, "a b c after forward respond");
    resume_stmt(a, PT_OK); /* a second resume moves nothing */
    assert_int_equal(T.responds, 1);
}

static void test_wait_any_takes_the_first_and_abandons_the_rest(void **state)
{
    (void)state;
    struct pt_stmt *a = P("a", ACT_WORK), *b = P("b", ACT_AGAIN), *c = P("c", ACT_WORK);
    T.pl.sec[PT_SEC_INBOUND] = blk(2, WAIT(true, blk(3, a, b, c)), P("after", ACT_OK));
    start();
    assert_string_equal(trace, "a b c");
    resume_stmt(b, PT_OK);
    /* the losers' work is cancelled before the pipeline goes on */
    assert_string_equal(trace, "a b c cancel(a) cancel(c) after forward respond");
    assert_null(T.req.ex.works);
    resume_stmt(a, PT_OK); /* abandoned: ignored */
    assert_int_equal(T.responds, 1);
    assert_true(pt_pipeline_call_abandoned(SC(a)->call));
    assert_false(pt_pipeline_call_abandoned(SC(b)->call));
}

static void test_wait_lane_error_runs_on_error(void **state)
{
    (void)state;
    struct pt_stmt *a = P("a", ACT_WORK);
    T.pl.sec[PT_SEC_INBOUND] = blk(1, WAIT(false, blk(2, a, CHOOSE(1, "true", blk(1, P("b", ACT_AGAIN))))));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(1, P("e", ACT_OK));
    start();
    assert_string_equal(trace, "a b");
    /* b's callback records the error outside the lane's run, then resumes it */
    struct script *sb = SC(T.pl.sec[PT_SEC_INBOUND].s[0]->body.s[1]->whens[0].body.s[0]);
    (*pt_policy_api_table.fail)(sb->call, 504, "Timeout", "too slow"); /* cmocka defines fail() */
    pt_policy_api_table.resume(sb->call, PT_ERROR);
    assert_string_equal(trace, "a b cancel(a) e respond");
    assert_string_equal(T.req.ex.err.reason, "Timeout");
    assert_string_equal(T.req.ex.err.path, "wait[1]/choose[2]/when[1]/b[1]");
    assert_string_equal(T.req.ex.err.section, "inbound");
    assert_int_equal(T.respond_status, 504);
}

static void test_wait_lane_fails_at_once(void **state)
{
    (void)state;
    T.pl.sec[PT_SEC_INBOUND] =
        blk(1, WAIT(false, blk(2, P("a", ACT_WORK), FAIL("b", 502, "BackendConnectionFailure", "refused"))));
    start();
    assert_string_equal(trace, "a b cancel(a) respond");
    assert_string_equal(T.req.ex.err.path, "wait[1]/b[2]");
    assert_int_equal(T.respond_status, 502);
}

static void test_wait_lane_resumes_from_inside_run(void **state)
{
    (void)state;
    struct pt_stmt *a = P("a", ACT_RESUME_SYNC);
    SC(a)->resume_with = PT_OK;
    T.pl.sec[PT_SEC_INBOUND] = blk(1, WAIT(false, blk(2, a, P("b", ACT_OK))));
    start();
    assert_string_equal(trace, "a b forward respond");
}

static void test_wait_done_in_a_lane_answers(void **state)
{
    (void)state;
    struct pt_stmt *d = P("d", ACT_DONE);
    SC(d)->status = 203;
    T.pl.sec[PT_SEC_INBOUND] =
        blk(2, WAIT(false, blk(2, P("a", ACT_WORK), CHOOSE(1, "true", blk(2, P("b", ACT_OK), d)))),
            P("after", ACT_OK));
    start();
    assert_string_equal(trace, "a b d cancel(a) respond");
    assert_int_equal(T.respond_status, 203);
}

static void test_wait_lane_reads_a_body(void **state)
{
    (void)state;
    T.req.h.body = PT_BODY_LENGTH;
    struct pt_stmt *b = P("b", ACT_AGAIN);
    T.pl.sec[PT_SEC_INBOUND] = blk(2, WAIT(false, blk(2, P("a", ACT_BODY), b)), P("after", ACT_OK));
    start();
    assert_string_equal(trace, "a(wait) b read_body(1)");
    body_is_in(&T.req, "xyz");
    pt_pipeline_body_ready(&T.req, true);
    /* only the lane that asked runs again */
    assert_string_equal(trace, "a(wait) b read_body(1) a(xyz)");
    resume_stmt(b, PT_OK);
    assert_string_equal(trace, "a(wait) b read_body(1) a(xyz) after forward respond");
}

static void test_wait_lane_needs_a_body_after_a_resume(void **state)
{
    (void)state;
    T.req.h.body = PT_BODY_LENGTH;
    struct pt_stmt *a = P("a", ACT_AGAIN);
    T.pl.sec[PT_SEC_INBOUND] =
        blk(2, WAIT(false, blk(2, CHOOSE(1, "true", blk(2, a, P("body", ACT_BODY))), P("b", ACT_WORK))),
            P("after", ACT_OK));
    start();
    assert_string_equal(trace, "a b");
    resume_stmt(a, PT_OK); /* from the loop: the next statement of a's lane needs the body */
    assert_string_equal(trace, "a b body(wait) body(wait) read_body(1)");
    body_is_in(&T.req, "q");
    pt_pipeline_body_ready(&T.req, true);
    assert_string_equal(trace, "a b body(wait) body(wait) read_body(1) body(q)");
    resume_stmt(T.pl.sec[PT_SEC_INBOUND].s[0]->body.s[1], PT_OK);
    assert_string_equal(trace, "a b body(wait) body(wait) read_body(1) body(q) after forward respond");
}

static void test_wait_decided_while_a_body_is_read(void **state)
{
    (void)state;
    T.req.h.body = PT_BODY_LENGTH;
    struct pt_stmt *b = P("b", ACT_AGAIN);
    T.pl.sec[PT_SEC_INBOUND] = blk(2, WAIT(true, blk(2, P("a", ACT_BODY), b)), P("after", ACT_OK));
    start();
    assert_string_equal(trace, "a(wait) b read_body(1)");
    resume_stmt(b, PT_OK); /* any: b wins while the body is being read; the driver waits for it */
    assert_string_equal(trace, "a(wait) b read_body(1)");
    body_is_in(&T.req, "xyz");
    pt_pipeline_body_ready(&T.req, true);
    assert_string_equal(trace, "a(wait) b read_body(1) after forward respond"); /* a is not run again */
}

static void test_wait_body_failure_abandons_the_lanes(void **state)
{
    (void)state;
    T.req.h.body = PT_BODY_LENGTH;
    T.pl.sec[PT_SEC_INBOUND] = blk(1, WAIT(false, blk(2, P("a", ACT_BODY), P("b", ACT_WORK))));
    T.pl.sec[PT_SEC_ON_ERROR] = blk(1, P("e", ACT_OK));
    start();
    pt_msg_set_error(&T.req, 413, "gateway", "BodyTooLarge", "request body too large");
    pt_pipeline_body_ready(&T.req, false);
    assert_string_equal(trace, "a(wait) b read_body(1) cancel(b) e respond");
}

static void test_wait_timers_of_losers_are_freed(void **state)
{
    (void)state;
    struct pt_stmt *a = P("a", ACT_TIMER), *b = P("b", ACT_TIMER);
    SC(a)->ms = 5;
    SC(b)->ms = 3000;
    T.pl.sec[PT_SEC_INBOUND] = blk(2, WAIT(true, blk(2, a, b)), P("after", ACT_OK));
    start();
    assert_string_equal(trace, "a b");
    loop_until_responded();
    assert_string_equal(trace, "a b timer after forward respond");
    /* b's timer stopped with its lane, but its handle stays valid until the request ends */
    assert_non_null(T.req.ex.timers);
    assert_ptr_equal(T.req.ex.timers, SC(b)->timer);
}

/* M1: the plugin cancels the timer of a lane that lost (from at_end, say): safe, and it never fires. */
static void test_wait_timer_of_a_lost_lane_can_be_cancelled(void **state)
{
    (void)state;
    struct pt_stmt *a = P("a", ACT_TIMER), *b = P("b", ACT_TIMER);
    SC(a)->ms = 5;
    SC(b)->ms = 40;
    T.pl.sec[PT_SEC_INBOUND] = blk(2, WAIT(true, blk(2, a, b)), P("after", ACT_OK));
    start();
    loop_until_responded();
    assert_string_equal(trace, "a b timer after forward respond");
    /* past b's due time: its stopped timer does not fire */
    struct timespec past_due = {0, 90 * 1000000};
    nanosleep(&past_due, NULL);
    for (int i = 0; i < 5; i++)
        event_base_loop(T.base, EVLOOP_NONBLOCK);
    assert_string_equal(trace, "a b timer after forward respond");
    pt_policy_api_table.timer_cancel(SC(b)->timer); /* freed here, once */
    assert_null(T.req.ex.timers);
    /* an abandoned call starts no timer */
    assert_null(pt_policy_api_table.timer_start(SC(b)->call, 1, timer_resume, NULL));
}

/* H1: a lane resumed while the driver reads a body for another lane runs only once the body is in. */
static void test_wait_lane_resumed_during_a_body_read_waits_for_it(void **state)
{
    (void)state;
    T.req.h.body = PT_BODY_LENGTH;
    struct pt_stmt *b = P("b", ACT_AGAIN);
    T.pl.sec[PT_SEC_INBOUND] =
        blk(2, WAIT(false, blk(2, P("a", ACT_BODY), CHOOSE(1, "true", blk(2, b, P("c", ACT_BODY))))),
            P("after", ACT_OK));
    start();
    assert_string_equal(trace, "a(wait) b read_body(1)");
    resume_stmt(b, PT_OK); /* during the read: c (which reads the body) must not run yet */
    assert_string_equal(trace, "a(wait) b read_body(1)");
    assert_int_equal(T.req.ex.need_body, PT_MSG_REQUEST); /* the read in progress is still known */
    body_is_in(&T.req, "xyz");
    pt_pipeline_body_ready(&T.req, true);
    /* one read; the lane resumed during it first, then the lane that asked */
    assert_string_equal(trace, "a(wait) b read_body(1) c(xyz) a(xyz) after forward respond");
    assert_int_equal(T.reads, 1);
}

/* M2: an abandoned lane's call changes nothing (a plugin's own thread answering late). */
static void test_wait_abandoned_call_writes_nothing(void **state)
{
    (void)state;
    struct pt_stmt *a = P("a", ACT_AGAIN), *b = P("b", ACT_AGAIN);
    T.pl.sec[PT_SEC_INBOUND] = blk(2, WAIT(true, blk(2, a, b)), P("after", ACT_AGAIN));
    start();
    resume_stmt(a, PT_OK);
    assert_string_equal(trace, "a b after");
    pt_call *lost = SC(b)->call;
    assert_true(pt_pipeline_call_abandoned(lost));
    const struct pt_api *api = &pt_policy_api_table;
    assert_int_equal((*api->fail)(lost, 502, "Late", "too late"), PT_ERROR);
    assert_false(T.req.ex.has_error);
    assert_null(T.req.ex.lane_cur);
    assert_int_equal(api->var_set(lost, (pt_bytes){"v", 1}, (pt_bytes){"x", 1}), -1);
    assert_null(pt_msg_var_get(&T.req, (pt_bytes){"v", 1}));
    struct pt_http_resp r = {200, {"OK", 2}, NULL, NULL, 0, {"b", 1}};
    assert_int_equal(api->var_set_response(lost, (pt_bytes){"r", 1}, &r), -1);
    assert_null(pt_msg_var_get(&T.req, (pt_bytes){"r", 1}));
    pt_bytes hv = {"1", 1};
    assert_int_equal(
        api->header_set(lost, PT_MSG_REQUEST, (pt_bytes){"X-Late", 6}, &hv, 1, PT_HEADER_OVERRIDE), -1);
    assert_null(pt_http_head_get(&T.req.h, pt_str_c("X-Late")));
    assert_int_equal(api->body_set(lost, PT_MSG_REQUEST, (pt_bytes){"late", 4}), -1);
    assert_null(T.req.req_body);
    assert_int_equal(api->respond(lost), PT_ERROR);
    assert_int_equal(api->at_response(lost, NULL, NULL), -1);
    assert_null(T.req.resp_hooks);
    /* the pipeline's own call still writes */
    assert_int_equal(api->var_set(&T.req.ex.call, (pt_bytes){"v", 1}, (pt_bytes){"y", 1}), 0);
    assert_non_null(pt_msg_var_get(&T.req, (pt_bytes){"v", 1}));
    resume_stmt(T.pl.sec[PT_SEC_INBOUND].s[1], PT_OK);
    assert_string_equal(trace, "a b after forward respond");
}

/* L1: a stray resume of the pipeline's call while it waits on lanes moves nothing. */
static void test_wait_ignores_a_stray_pipeline_resume(void **state)
{
    (void)state;
    struct pt_stmt *a = P("a", ACT_AGAIN);
    T.pl.sec[PT_SEC_INBOUND] = blk(2, WAIT(false, blk(1, a)), P("after", ACT_OK));
    T.fwd_mode = FWD_AGAIN;
    start();
    pt_policy_api_table.resume(&T.req.ex.call, PT_OK); /* a plugin bug: the pipeline's own call */
    assert_string_equal(trace, "a");
    resume_stmt(a, PT_OK);
    assert_string_equal(trace, "a after forward"); /* the forward waits for its backend */
    assert_int_equal(T.responds, 0);
}

/* L2: a wait whose body read fails at once, inside a retry: the new attempt starts fresh lanes. */
static void test_wait_retried_after_a_body_failure_starts_fresh_lanes(void **state)
{
    (void)state;
    T.req.h.body = PT_BODY_LENGTH;
    T.read_mode = READ_SYNC_FAIL;
    T.pl.sec[PT_SEC_INBOUND] = blk(
        1, RETRY(retry_cf("true", 1, 0), blk(1, WAIT(false, blk(2, P("a", ACT_BODY), P("b", ACT_WORK))))));
    start();
    assert_string_equal(trace, "a(wait) b read_body(1) cancel(b) a(wait) b read_body(1) cancel(b) respond");
    assert_int_equal(T.respond_status, 413);
}

static void test_wait_all_with_timers(void **state)
{
    (void)state;
    struct pt_stmt *a = P("a", ACT_TIMER), *b = P("b", ACT_TIMER);
    SC(a)->ms = 30;
    SC(b)->ms = 10;
    T.pl.sec[PT_SEC_INBOUND] = blk(1, WAIT(false, blk(2, a, b)));
    uint64_t t0 = mono_ms();
    start();
    loop_until_responded();
    uint64_t took = mono_ms() - t0;
    assert_string_equal(trace, "a b timer timer forward respond");
    assert_true(took >= 29 && took < 1000);
}

static void test_wait_empty_and_nested_choose(void **state)
{
    (void)state;
    T.pl.sec[PT_SEC_INBOUND] = blk(
        2, WAIT(false, blk(0)),
        WAIT(false, blk(1, CHOOSE(2, "false", blk(1, P("no", ACT_OK)), NULL,
                                  blk(2, CHOOSE(1, "true", blk(1, P("deep", ACT_OK))), P("x", ACT_OK))))));
    start();
    assert_string_equal(trace, "deep x forward respond");
}

static void test_wait_cleanup_cancels_lanes(void **state)
{
    (void)state;
    struct pt_stmt *a = P("a", ACT_WORK), *b = P("b", ACT_TIMER);
    SC(b)->ms = 3000;
    T.pl.sec[PT_SEC_INBOUND] = blk(1, WAIT(false, blk(2, a, b)));
    start();
    pt_pipeline_cleanup(&T.req); /* the client went away */
    assert_string_equal(trace, "a b cancel(a)");
    assert_null(T.req.ex.timers);
    assert_null(T.req.ex.works);
    resume_stmt(a, PT_OK); /* a late resume of an abandoned lane moves nothing */
    assert_int_equal(T.responds, 0);
}

static void test_wait_inside_retry(void **state)
{
    (void)state;
    struct pt_stmt *f = FAIL("f", 500, "Boom", "boom");
    SC(f)->fail_runs = 1;
    T.pl.sec[PT_SEC_INBOUND] =
        blk(1, RETRY(retry_cf("true", 2, 0), blk(1, WAIT(false, blk(2, P("a", ACT_OK), f)))));
    start();
    /* the first attempt fails in a lane; the second starts new lanes; the condition stays true: a third */
    assert_string_equal(trace, "a f a f a f forward respond");
}

#define T_(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    pt_api_init();
    const struct CMUnitTest tests[] = {
        T_(test_sections_run_in_order),
        T_(test_sections_see_their_message),
        T_(test_backend_without_forward_gets_empty_200),
        T_(test_empty_pipeline),
        T_(test_done_skips_to_response),
        T_(test_done_in_outbound_and_on_error),
        T_(test_error_runs_on_error),
        T_(test_error_500_hides_the_message),
        T_(test_error_without_reason_is_internal),
        T_(test_error_path_through_choose),
        T_(test_error_path_nested_choose_otherwise),
        T_(test_choose_branches),
        T_(test_error_in_on_error_ends_with_gateway_error),
        T_(test_plain_error_in_on_error_keeps_first_error),
        T_(test_error_without_on_error_section),
        T_(test_suspend_and_resume),
        T_(test_resume_from_inside_run),
        T_(test_resume_error_from_inside_run),
        T_(test_resume_with_error),
        T_(test_timer_resumes),
        T_(test_cleanup_cancels_timers),
        T_(test_body_read_then_statement_reruns),
        T_(test_body_read_synchronously),
        T_(test_body_read_failure_runs_on_error),
        T_(test_body_read_failure_synchronously),
        T_(test_forward_request),
        T_(test_forward_failure_runs_on_error),
        T_(test_forward_buffers_request_body_first),
        T_(test_nesting_limit),
        T_(test_wrap_runs_then_children),
        T_(test_preflight_runs_only_preflight_statements),
        T_(test_literal_conditions),
        T_(test_retry_reruns_failed_body),
        T_(test_retry_recovers),
        T_(test_retry_condition_true_repeats_success),
        T_(test_retry_condition_false),
        T_(test_retry_waits_on_a_timer),
        T_(test_retry_pending_wait_is_cleaned_up),
        T_(test_retry_with_suspended_body),
        T_(test_sequential_retries_count_apart),
        T_(test_retry_in_choose_branch_counts_its_own),
        T_(test_suspended_wrap_runs_its_children),
        T_(test_a_second_resume_moves_nothing),
        T_(test_a_suspended_wrap_does_not_leak_into_on_error),
        T_(test_wait_all_waits_for_every_lane),
        T_(test_wait_any_takes_the_first_and_abandons_the_rest),
        T_(test_wait_lane_error_runs_on_error),
        T_(test_wait_lane_fails_at_once),
        T_(test_wait_lane_resumes_from_inside_run),
        T_(test_wait_done_in_a_lane_answers),
        T_(test_wait_lane_reads_a_body),
        T_(test_wait_lane_needs_a_body_after_a_resume),
        T_(test_wait_decided_while_a_body_is_read),
        T_(test_wait_body_failure_abandons_the_lanes),
        T_(test_wait_timers_of_losers_are_freed),
        T_(test_wait_timer_of_a_lost_lane_can_be_cancelled),
        T_(test_wait_lane_resumed_during_a_body_read_waits_for_it),
        T_(test_wait_abandoned_call_writes_nothing),
        T_(test_wait_ignores_a_stray_pipeline_resume),
        T_(test_wait_retried_after_a_body_failure_starts_fresh_lanes),
        T_(test_wait_all_with_timers),
        T_(test_wait_empty_and_nested_choose),
        T_(test_wait_cleanup_cancels_lanes),
        T_(test_wait_inside_retry),
    };
    return cmocka_run_group_tests_name("pipeline", tests, NULL, NULL);
}
