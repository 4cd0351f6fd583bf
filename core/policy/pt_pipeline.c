/*
 * pt_pipeline -- the policy pipeline driver.
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
#include "policy/pt_pipeline.h"

#include "base/pt_log.h"
#include "conf/pt_genmodel.h"
#include "http/pt_otel.h"
#include "http/pt_trace.h"
#include "lua/pt_lua.h"
#include "policy/pt_corepol.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

struct pt_pipeline_ops pt_pipeline_ops;

struct pt_timer {
    struct event *ev;
    struct pt_req *req;
    pt_call *call; /* whose timer: the pipeline's call or a lane's */
    void (*fn)(pt_call *call, void *arg);
    void *arg;
    struct pt_timer *next;
    bool retry; /* the driver's own retry wait */
};

static void run(struct pt_req *req);
static void drive(struct pt_req *req);
static bool apply(struct pt_req *req, pt_status st);
static void wait_abandon(struct pt_req *req);
static void cancel_works(struct pt_req *req, const pt_call *call);
static pt_status wait_step(struct pt_req *req, const struct pt_stmt *s);

/* ---------------------------------------------------------- wait's lanes */

/* A lane's state. */
enum { L_READY, L_RUNNING, L_WAIT, L_BODY, L_DONE, L_GONE };

#define PT_LANE_DEPTH PT_COREPOL_LANE_DEPTH /* compile_wait refuses deeper children */

/* One child of a running wait: its own call (api->resume and timers with it
   come back here) and a small frame stack (a choose child's branches). */
struct pt_lane {
    struct pt_call call;
    struct pt_waitrun *w;
    struct pt_block top; /* the child alone */
    struct pt_frame st[PT_LANE_DEPTH];
    int depth;
    int state;        /* L_* */
    bool has_pending; /* resumed: `pending` is the suspended statement's final status */
    pt_status pending;
    int need_body; /* L_BODY: the body its statement asked for */
    pt_status result;
};

struct pt_waitrun {
    const struct pt_stmt *s;
    struct pt_lane *lanes;
    int n;
    int left; /* lanes still to finish (for="all") */
    bool any;
    bool pumping; /* lanes are being run: a resume only marks its lane */
    bool decided;
    pt_status result;
};

/* A control statement pushed a frame: the stack already says what is next,
   so the PT_OK it returns does not move past it. */
static pt_status moved(struct pt_req *req)
{
    req->ex.moved = true;
    return PT_OK;
}

/* --------------------------------------------------------------- errors */

/* Appends the statements of a frame stack to a path. */
static void path_frames(struct pt_buf *bp, const struct pt_frame *st, int depth)
{
    struct pt_buf b = *bp;
    for (int d = 0; d < depth; d++) {
        const struct pt_frame *f = &st[d];
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
        /* a lane's own frame holds its child alone: the child's place in the wait is in aux */
        int at = f->owner && f->owner->kind == PT_ST_WAIT ? f->aux : f->i;
        char idx[16];
        int k = snprintf(idx, sizeof(idx), "[%d]", at + 1);
        pt_buf_add(&b, idx, (size_t)k);
    }
    *bp = b;
}

/* "choose[1]/when[2]/set-header[1]": the path of the running statement (in a
   lane of wait: "wait[1]/send-request[1]"). */
static const char *current_path(struct pt_req *req)
{
    struct pt_exec *ex = &req->ex;
    struct pt_buf b;
    pt_buf_init(&b, req->pool, 96);
    path_frames(&b, ex->st, ex->depth);
    if (ex->lane_cur)
        path_frames(&b, ex->lane_cur->st, ex->lane_cur->depth);
    pt_buf_add(&b, "", 1);
    return b.p;
}

/* pt_msg_hooks.error_where: where the running statement is. */
static void error_where(struct pt_req *req, struct pt_lasterror *e)
{
    struct pt_exec *ex = &req->ex;
    if (!ex->pl)
        return;
    e->section = pt_msg_section_names[ex->section];
    e->path = current_path(req);
    const struct pt_stmt *s = ex->lane_cur ? ex->lane_cur->call.stmt : ex->call.stmt;
    e->policy_id = s && s->id ? s->id : "";
    e->scope = s ? s->scope : 0;
}

/* --------------------------------------------------------- stack helpers */

static bool push(struct pt_req *req, const struct pt_block *b, const struct pt_stmt *owner, int aux)
{
    struct pt_exec *ex = &req->ex;
    if (ex->depth == PT_EXEC_DEPTH) {
        pt_msg_set_error(req, 500, "gateway", "PolicyNestingTooDeep", "policies nested too deeply");
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
    ex->wrap_waiting = NULL; /* what a statement of the last section left waiting is over */
    ex->moved = false;
    ex->call.section = sec;
    ex->call.current = sec == PT_SEC_INBOUND || sec == PT_SEC_BACKEND ? PT_MSG_REQUEST : PT_MSG_RESPONSE;
    pt_otel_section(req, sec); /* OpenTelemetry (O): a section span starts */
    push(req, &ex->pl->sec[sec], NULL, 0);
}

/* The pipeline is over.  The response is sent by drive() once the driver
   has unwound: sending it may end the request and recycle its memory for
   the connection's next request, so nothing may touch req afterwards. */
static void finish(struct pt_req *req)
{
    struct pt_exec *ex = &req->ex;
    wait_abandon(req);        /* a lane ended the pipeline (return-response), or the arena failed */
    pt_otel_section(req, -1); /* OpenTelemetry (O): the last section span ends */
    ex->done = true;
    ex->respond = true;
    ex->depth = 0;
}

/* Moves to on-error (or, from on-error, to the gateway's error response). */
static void go_error(struct pt_req *req)
{
    struct pt_exec *ex = &req->ex;
    wait_abandon(req); /* a body a lane needed could not be read */
    if (!ex->has_error)
        pt_msg_set_error(req, 500, "gateway", "InternalError", "a policy failed");
    pt_msg_error_response(req, ex->err.status ? ex->err.status : 500,
                          ex->err.status == 500 || !ex->err.status ? "Internal server error"
                                                                   : ex->err.message);
    if (ex->in_error || !ex->pl->sec[PT_SEC_ON_ERROR].n) {
        finish(req);
        return;
    }
    ex->in_error = true;
    enter_section(req, PT_SEC_ON_ERROR);
    if (PT_UNLIKELY(req->trace != NULL))
        pt_trace_on_error(req);
}

/* A section ended normally. */
static void next_section(struct pt_req *req)
{
    struct pt_exec *ex = &req->ex;
    switch (ex->section) {
    case PT_SEC_INBOUND:
        if (req->preflight) { /* no cors statement answered: an empty 200, the backend is not asked */
            pt_msg_new_response(req, 200, PT_NULL_STR);
            finish(req);
            return;
        }
        enter_section(req, PT_SEC_BACKEND);
        return;
    case PT_SEC_BACKEND:
        if (!req->rh_done)
            pt_msg_new_response(req, 200, PT_NULL_STR); /* no backend call: an empty 200 */
        enter_section(req, PT_SEC_OUTBOUND);
        return;
    default:
        finish(req);
        return;
    }
}

/* ---------------------------------------------------------------- timers */

/* Takes a timer off its request's list and frees it. */
static void timer_drop(struct pt_timer *t)
{
    struct pt_timer **pp = &t->req->ex.timers;
    while (*pp && *pp != t)
        pp = &(*pp)->next;
    if (*pp)
        *pp = t->next;
    event_free(t->ev);
    free(t);
}

static void timer_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pt_timer *t = arg;
    void (*fn)(pt_call *, void *) = t->fn;
    if (!fn)
        return; /* a dead timer of an abandoned lane (its event is deleted: never expected here) */
    void *a = t->arg;
    pt_call *call = t->call; /* the lane's call for a lane's timer */
    timer_drop(t);
    fn(call, a);
}

pt_timer *pt_pipeline_timer_start(pt_call *call, uint32_t ms, void (*fn)(pt_call *call, void *arg), void *arg)
{
    struct pt_req *req = call->req;
    if (pt_pipeline_call_abandoned(call))
        return NULL; /* its callback would be dropped anyway */
    struct pt_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->req = req;
    t->call = call;
    t->fn = fn;
    t->arg = arg;
    t->ev = evtimer_new(req->peer->base, timer_fire, t);
    if (!t->ev) {
        free(t);
        return NULL;
    }
    /* libevent counts from its cached loop time: refresh it so the wait is never short */
    event_base_update_cache_time(req->peer->base);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(t->ev, &tv);
    t->next = req->ex.timers;
    req->ex.timers = t;
    return t;
}

void pt_pipeline_timer_cancel(pt_timer *t)
{
    if (t)
        timer_drop(t);
}

void pt_pipeline_cleanup(struct pt_req *req)
{
    wait_abandon(req);
    cancel_works(req, NULL);
    while (req->ex.timers)
        pt_pipeline_timer_cancel(req->ex.timers);
    pt_lua_release(req);
    if (PT_UNLIKELY(req->trace != NULL))
        pt_trace_discard(req); /* a request that ended without its end hook */
}

/* ------------------------------------------------------------ async work */

void pt_pipeline_work_start(pt_call *call, struct pt_work *w, void (*cancel)(void *handle), void *handle)
{
    struct pt_req *req = call->req;
    w->cancel = cancel;
    w->handle = handle;
    w->call = call;
    w->next = req->ex.works;
    req->ex.works = w;
}

void pt_pipeline_work_end(pt_call *call, struct pt_work *w)
{
    for (struct pt_work **pp = &call->req->ex.works; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            return;
        }
}

/* Cancels the registered work of one call (NULL: of every call).  Each is
   unlinked before its cancel runs, so nothing is cancelled twice. */
static void cancel_works(struct pt_req *req, const pt_call *call)
{
    struct pt_work **pp = &req->ex.works;
    for (int guard = 0; *pp && guard < 100000; guard++) {
        struct pt_work *w = *pp;
        if (call && w->call != call) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        if (w->cancel)
            w->cancel(w->handle);
    }
}

bool pt_pipeline_call_abandoned(const pt_call *call)
{
    return call->lane && call->lane->state == L_GONE;
}

/* ------------------------------------------------------------------ wait */

/*
 * wait runs each child in a lane: a call and a frame stack of its own.  The
 * driver starts every lane in turn; a lane runs until its statement suspends
 * (PT_AGAIN: a backend, a cache, a timer), needs a body, or its child is
 * done.  A lane's resume runs that lane on from the worker's loop while the
 * pipeline itself stays suspended on the wait statement.  The wait is
 * decided when every lane finished (all), the first finished (any), or one
 * failed or answered (return-response): the lanes still out are abandoned
 * -- their timers stopped, their registered work cancelled, their resumes
 * ignored -- and the pipeline resumes with the outcome.  A body a lane needs
 * is read by the driver, as for any statement: the wait statement runs again
 * when it is in, and the lanes that asked run their statement again.
 */

static void lane_abandon(struct pt_req *req, struct pt_lane *l)
{
    if (l->state == L_DONE || l->state == L_GONE)
        return;
    l->state = L_GONE;
    cancel_works(req, &l->call);
    /* Its timers stop but stay listed, dead, until the request ends: the plugin
       still holds their handles and may api->timer_cancel them (from at_end, say). */
    struct pt_timer *t = req->ex.timers;
    for (int guard = 0; t && guard < 100000; guard++, t = t->next)
        if (t->call == &l->call && t->fn) {
            event_del(t->ev);
            t->fn = NULL;
        }
}

static void wait_decide(struct pt_req *req, struct pt_waitrun *w, pt_status st)
{
    w->decided = true;
    w->result = st;
    for (int i = 0; i < w->n; i++)
        lane_abandon(req, &w->lanes[i]);
}

/* A lane's child is over with st (PT_OK, PT_ERROR or PT_DONE). */
static void lane_finish(struct pt_req *req, struct pt_lane *l, pt_status st)
{
    struct pt_exec *ex = &req->ex;
    struct pt_waitrun *w = l->w;
    l->state = L_DONE;
    l->result = st;
    if (st == PT_ERROR) {
        /* located in the lane, also when a callback recorded it outside the lane's run */
        ex->lane_cur = l;
        if (!ex->has_error)
            pt_msg_set_error(req, 500, "gateway", "InternalError", "a policy failed");
        else if (pt_msg_hooks.error_where)
            pt_msg_hooks.error_where(req, &ex->err);
        ex->lane_cur = NULL;
    }
    if (w->decided)
        return;
    if (st != PT_OK)
        wait_decide(req, w, st);
    else if (w->any || --w->left == 0)
        wait_decide(req, w, PT_OK);
}

/* One statement of a lane; a choose pushes its branch onto the lane's stack (*pushed). */
static pt_status lane_step(struct pt_req *req, struct pt_lane *l, const struct pt_stmt *s, bool *pushed)
{
    l->call.stmt = s;
    l->call.name = s->name;
    switch (s->kind) {
    case PT_ST_POLICY: {
        pt_status st = s->def->run ? s->def->run(&pt_policy_api_table, &l->call, s->instance) : PT_OK;
        return st == PT_DECLINED ? PT_OK : st;
    }
    case PT_ST_CHOOSE:
        for (int i = 0; i < s->nwhens; i++) {
            const struct pt_when *wh = &s->whens[i];
            pt_status st = PT_OK;
            if (wh->cond && !pt_lua_value_true(req, wh->cond, &st)) {
                if (st != PT_OK)
                    return st;
                continue;
            }
            if (!wh->body.n)
                return PT_OK;
            if (l->depth == PT_LANE_DEPTH) {
                pt_msg_set_error(req, 500, "gateway", "PolicyNestingTooDeep", "policies nested too deeply");
                return PT_ERROR;
            }
            l->st[l->depth++] = (struct pt_frame){&wh->body, 0, s, i};
            *pushed = true;
            return PT_OK;
        }
        return PT_OK;
    default: /* compile_wait refuses the rest */
        pt_msg_set_error(req, 500, "wait", "InternalError", "this statement cannot run inside wait");
        return PT_ERROR;
    }
}

/* Runs a lane until it suspends, needs a body or is over. */
static void run_lane(struct pt_req *req, struct pt_lane *l)
{
    struct pt_exec *ex = &req->ex;
    for (int guard = 0; guard < 100000; guard++) {
        if (l->w->decided || l->state == L_GONE || l->state == L_DONE)
            return;
        pt_status st;
        bool pushed = false;
        int mine = 0; /* the body this lane's statement asked for */
        if (l->has_pending) {
            l->has_pending = false;
            st = l->pending;
        } else {
            if (l->depth == 0) {
                lane_finish(req, l, PT_OK);
                return;
            }
            struct pt_frame *f = &l->st[l->depth - 1];
            if (f->i >= f->b->n) {
                if (--l->depth > 0)
                    l->st[l->depth - 1].i++; /* a choose's branch is over: so is the choose */
                continue;
            }
            l->state = L_RUNNING;
            ex->lane_cur = l;
            ex->lane_call = &l->call;
            int outer = ex->need_body; /* a read in progress for another lane: its flag stays */
            ex->need_body = 0;
            st = lane_step(req, l, f->b->s[f->i], &pushed);
            mine = ex->need_body;
            ex->need_body = outer;
            ex->lane_cur = NULL;
            ex->lane_call = NULL;
            if (st != PT_AGAIN)
                l->has_pending = false; /* a resume from inside a run() that did not suspend */
            if (PT_UNLIKELY(pt_msg_out_of_memory(req)))
                st = PT_DONE; /* the 500 OutOfMemory is the response */
        }
        switch (st) {
        case PT_OK:
        case PT_DECLINED:
            l->state = L_READY;
            if (!pushed)
                l->st[l->depth - 1].i++;
            continue;
        case PT_AGAIN:
            if (mine) {
                l->need_body = mine;
                l->state = L_BODY;
                return;
            }
            l->state = l->has_pending ? L_READY : L_WAIT;
            if (l->has_pending)
                continue; /* resumed from inside its own run() */
            return;
        default:
            lane_finish(req, l, st);
            return;
        }
    }
    pt_msg_set_error(req, 500, "gateway", "InternalError", "a lane of wait did not settle");
    lane_finish(req, l, PT_ERROR);
}

/* Runs every lane that can run, until none can or the wait is decided. */
static void wait_pump(struct pt_req *req, struct pt_waitrun *w)
{
    if (w->pumping)
        return;
    w->pumping = true;
    for (int guard = 0; guard < 10000 && !w->decided; guard++) {
        bool ran = false;
        for (int i = 0; i < w->n && !w->decided; i++)
            if (w->lanes[i].state == L_READY) {
                run_lane(req, &w->lanes[i]);
                ran = true;
            }
        if (!ran)
            break;
    }
    w->pumping = false;
}

static struct pt_waitrun *wait_new(struct pt_req *req, const struct pt_stmt *s)
{
    const struct pt_wait *cf = s->data;
    struct pt_waitrun *w = pt_pool_calloc(req->pool, sizeof(*w));
    struct pt_lane *lanes = pt_pool_calloc(req->pool, sizeof(*lanes) * (size_t)(s->body.n ? s->body.n : 1));
    if (!w || !lanes)
        return NULL;
    w->s = s;
    w->lanes = lanes;
    w->n = s->body.n;
    w->left = s->body.n;
    w->any = cf && cf->any;
    for (int i = 0; i < w->n; i++) {
        struct pt_lane *l = &lanes[i];
        l->call = req->ex.call; /* same request, section and current message */
        l->call.lane = l;
        l->w = w;
        l->top = (struct pt_block){&s->body.s[i], 1};
        l->st[0] = (struct pt_frame){&l->top, 0, s, i};
        l->depth = 1;
        l->state = L_READY;
    }
    return w;
}

/* The wait statement's step: starts the lanes (or, after a body was read, runs
   the lanes that asked for it again) and says how things stand. */
static pt_status wait_step(struct pt_req *req, const struct pt_stmt *s)
{
    struct pt_exec *ex = &req->ex;
    struct pt_waitrun *w = ex->wait;
    if (!w || w->s != s) {
        wait_abandon(req);
        if (!(w = wait_new(req, s)))
            return PT_ERROR; /* the arena failed: the driver answers 500 OutOfMemory */
        ex->wait = w;
        if (w->n == 0)
            wait_decide(req, w, PT_OK);
    } else {
        /* the body is in: first the lanes resumed while it was read (in turn), then those that asked */
        wait_pump(req, w);
        for (int i = 0; i < w->n; i++)
            if (w->lanes[i].state == L_BODY)
                w->lanes[i].state = L_READY;
    }
    wait_pump(req, w);
    if (w->decided) {
        ex->wait = NULL;
        return w->result;
    }
    for (int i = 0; i < w->n; i++)
        if (w->lanes[i].state == L_BODY) {
            ex->need_body = w->lanes[i].need_body; /* the driver reads it, then runs this step again */
            return PT_AGAIN;
        }
    return PT_AGAIN;
}

/* A lane moved from the worker's loop: settle the wait if it is decided. */
static void wait_wake(struct pt_req *req, struct pt_waitrun *w)
{
    struct pt_exec *ex = &req->ex;
    wait_pump(req, w);
    if (ex->running || !ex->waiting)
        return; /* the driver is inside the wait's step: it sees the outcome itself */
    if (w->decided) {
        if (ex->need_body)
            return; /* a body is being read for another lane: the wait's step ends it when it is in */
        ex->wait = NULL;
        pt_pipeline_resume(req, w->result);
        return;
    }
    if (ex->need_body)
        return;
    for (int i = 0; i < w->n; i++)
        if (w->lanes[i].state == L_BODY) {
            /* a lane needs a body: the wait's step runs again inside the driver (it runs the lanes
               that asked again), which reads it */
            ex->waiting = false;
            drive(req);
            return;
        }
}

/* The pipeline leaves a wait that is not decided (an error, the request's end): every lane is abandoned. */
static void wait_abandon(struct pt_req *req)
{
    struct pt_waitrun *w = req->ex.wait;
    if (!w)
        return;
    req->ex.wait = NULL;
    if (!w->decided)
        wait_decide(req, w, PT_ERROR);
}

void pt_pipeline_call_resume(pt_call *call, pt_status st)
{
    struct pt_lane *l = call->lane;
    if (!l) {
        pt_pipeline_resume(call->req, st);
        return;
    }
    struct pt_req *req = call->req;
    if (l->state == L_RUNNING) { /* from inside the lane's own run() */
        l->has_pending = true;
        l->pending = st;
        return;
    }
    if (l->state != L_WAIT || l->w->decided || req->ex.wait != l->w)
        return; /* abandoned, over, or not suspended: a resume moves nothing */
    l->has_pending = true;
    l->pending = st;
    l->state = L_READY;
    if (l->w->pumping)
        return; /* the lanes are being run: this one's turn comes */
    if (req->ex.need_body && !req->ex.running)
        return; /* a body is being read for another lane: the wait's step runs this one when it is in */
    wait_wake(req, l->w);
}

/* --------------------------------------------------------------- driver */

static void retry_wake(pt_call *call, void *arg)
{
    struct pt_req *req = call->req;
    const struct pt_stmt *s = arg;
    req->ex.waiting = false;
    /* the frame holding the retry statement is on top: run its body once more */
    if (!push(req, &s->body, s, req->ex.retry_attempts))
        apply(req, PT_ERROR); /* the error is recorded: the retry statement failed */
    drive(req);
}

/*
 * The body of a retry ended (normally, or with an error) after `attempts`
 * retries (0: the first run): decide whether to run it again.  f is the
 * frame holding the retry statement; the count travels on the body's own
 * frame, so retries side by side or inside a choose branch count apart.
 * Returns the status for the retry statement itself.
 */
static pt_status retry_after(struct pt_req *req, struct pt_frame *f, int attempts, bool failed)
{
    const struct pt_stmt *s = f->b->s[f->i];
    const struct pt_retry *r = s->data;
    pt_status st;
    bool traced = PT_UNLIKELY(req->trace != NULL);
    if (traced) /* the decision is a step of its own: its condition, attempts, wait */
        pt_trace_stmt_begin(req, r, s->name, current_path(req));
    bool again = pt_lua_value_true(req, r->cond, &st);
    if (st == PT_AGAIN)
        return PT_AGAIN;
    if (st == PT_ERROR) {
        if (traced)
            pt_trace_stmt_end(req, PT_ERROR);
        return PT_ERROR;
    }
    if (!again || attempts >= r->count) {
        if (traced)
            pt_trace_retry(req, attempts, false, 0);
        return failed ? PT_ERROR : PT_OK;
    }
    attempts++;
    req->ex.has_error = false;
    req->backend_status =
        0; /* a new attempt: the last one's backend answer is not this one's (analytics, A) */
    uint32_t wait = pt_corepol_retry_wait(r, attempts, req->peer->rng[0] ^ req->t0);
    if (traced)
        pt_trace_retry(req, attempts - 1, true, wait);
    if (wait == 0) {
        if (!push(req, &s->body, s, attempts))
            return PT_ERROR;
        return moved(req); /* continue inside the new frame */
    }
    req->ex.waiting = true;
    req->ex.retry_attempts = attempts;
    if (!pt_pipeline_timer_start(&req->ex.call, wait, retry_wake, (void *)s)) {
        req->ex.waiting = false;
        return PT_ERROR;
    }
    return PT_AGAIN;
}

/* Runs one statement; returns its status.  Control statements push frames. */
static pt_status step(struct pt_req *req, struct pt_frame *f, const struct pt_stmt *s)
{
    struct pt_exec *ex = &req->ex;
    if (req->preflight && !(s->kind == PT_ST_POLICY && (s->def->flags & PT_POLICY_PREFLIGHT)))
        return PT_OK;
    ex->call.stmt = s;
    ex->call.name = s->name;
    switch (s->kind) {
    case PT_ST_POLICY: {
        pt_status st = s->def->run ? s->def->run(&pt_policy_api_table, &ex->call, s->instance) : PT_OK;
        return st == PT_DECLINED ? PT_OK : st;
    }
    case PT_ST_CHOOSE:
        for (int i = 0; i < s->nwhens; i++) {
            const struct pt_when *w = &s->whens[i];
            pt_status st = PT_OK;
            if (w->cond && !pt_lua_value_true(req, w->cond, &st)) {
                if (st != PT_OK)
                    return st;
                continue;
            }
            if (!w->body.n)
                return PT_OK;
            /* the choose stays current (for lastError.path) until its branch ends */
            if (!push(req, &w->body, s, i))
                return PT_ERROR;
            return moved(req);
        }
        return PT_OK;
    case PT_ST_RETRY:
        if (!push(req, &s->body, s, 0))
            return PT_ERROR;
        return moved(req);
    case PT_ST_FORWARD: {
        const struct pt_forward *fw = s->data;
        req->fwd_timeout = fw->timeout_ms;
        req->fwd_fail_on_status = fw->fail_on_error_status;
        req->fwd_follow = fw->follow_redirects;
        req->fwd_http2 = fw->http_version;
        if (fw->http_version == PT_FWD_API) /* gRPC needs HTTP/2 end to end: its backends get it unasked */
            req->fwd_http2 = req->api && req->api->cf->api_type == PT_APITYPE_GRPC ? PT_FWD_H2 : PT_FWD_H1;
        req->redirects = 0;
        if (fw->buffer_request_body && req->req_body_state == RB_STREAM && req->h.body != PT_BODY_NONE) {
            ex->need_body = PT_MSG_REQUEST;
            return PT_AGAIN;
        }
        return pt_pipeline_ops.forward(req);
    }
    case PT_ST_WRAP: {
        /* a plugin policy with nested statements: its run() decides, then they run */
        pt_status st = s->def->run ? s->def->run(&pt_policy_api_table, &ex->call, s->instance) : PT_OK;
        if (st == PT_AGAIN)
            ex->wrap_waiting = s; /* its statements run when it resumes with PT_OK */
        if (st != PT_OK && st != PT_DECLINED)
            return st;
        if (!push(req, &s->body, s, 0))
            return PT_ERROR;
        return moved(req);
    }
    case PT_ST_WAIT:
        return wait_step(req, s);
    case PT_ST_BASE:
        return PT_OK;
    }
    return PT_OK;
}

/* step() of a traced request: the statement's entry opens before and closes
   after (a suspended statement's closes when it resumes). */
static pt_status traced_step(struct pt_req *req, struct pt_frame *f, const struct pt_stmt *s)
{
    if (req->preflight && !(s->kind == PT_ST_POLICY && (s->def->flags & PT_POLICY_PREFLIGHT)))
        return PT_OK;
    if (s->kind == PT_ST_BASE)
        return PT_OK;
    pt_trace_stmt_begin(req, s, s->name, current_path(req));
    pt_status st = step(req, f, s);
    if (s->kind == PT_ST_CHOOSE && st == PT_OK) {
        const struct pt_frame *top = &req->ex.st[req->ex.depth - 1];
        char w[24] = "none";
        if (req->ex.moved && top->owner == s)
            snprintf(w, sizeof(w), s->whens[top->aux].cond ? "when[%d]" : "otherwise", top->aux + 1);
        pt_trace_note(req, "branch", w);
    }
    if (st != PT_AGAIN && req->trace)
        pt_trace_stmt_end(req, st);
    return st;
}

/* Applies a statement's final status; false when the loop must stop. */
static bool apply(struct pt_req *req, pt_status st)
{
    struct pt_exec *ex = &req->ex;
    const struct pt_stmt *wrap = ex->wrap_waiting;
    bool pushed = ex->moved;
    ex->wrap_waiting = NULL;
    ex->moved = false;
    switch (st) {
    case PT_OK:
    case PT_DECLINED:
        if (pushed)
            return true; /* the statement already moved the stack */
        if (wrap) {      /* a suspended wrapping policy said yes: now its statements */
            if (!push(req, &wrap->body, wrap, 0))
                return apply(req, PT_ERROR);
            return true;
        }
        ex->st[ex->depth - 1].i++;
        return true;
    case PT_DONE:
        finish(req);
        return false;
    case PT_AGAIN:
        ex->wrap_waiting = wrap; /* still waiting for the same statement */
        if (ex->need_body) {
            pt_msg which = (pt_msg)ex->need_body;
            ex->waiting = true;
            pt_pipeline_ops.read_body(req, which);
            return false;
        }
        ex->waiting = true;
        return false;
    case PT_ERROR:
    default:
        wait_abandon(req); /* a wait that failed (its body unread): a retry starts fresh lanes */
        /* inside a retry, the attempt ends and the retry decides */
        for (int d = ex->depth - 1; d > 0; d--) {
            struct pt_frame *pf = &ex->st[d - 1];
            const struct pt_stmt *owner = ex->st[d].owner;
            if (owner && owner->kind == PT_ST_RETRY && pf->i < pf->b->n && pf->b->s[pf->i] == owner) {
                int attempts = ex->st[d].aux;
                ex->depth = d;
                pt_status rs = retry_after(req, pf, attempts, true);
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
            if (PT_UNLIKELY(req->trace != NULL) && ex->resume_status != PT_AGAIN)
                pt_trace_stmt_end(req, ex->resume_status);
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
            int attempts = f->aux;
            ex->depth--;
            if (owner && owner->kind == PT_ST_RETRY) {
                struct pt_frame *pf = &ex->st[ex->depth - 1];
                if (!apply(req, retry_after(req, pf, attempts, false)))
                    continue;
            } else if (owner)
                ex->st[ex->depth - 1].i++; /* choose or a wrapping policy: done with its statements */
            continue;
        }
        pt_status st;
        if (PT_LIKELY(req->trace == NULL)) /* the one test an untraced request pays per statement */
            st = step(req, f, f->b->s[f->i]);
        else
            st = traced_step(req, f, f->b->s[f->i]);
        if (PT_UNLIKELY(pt_msg_out_of_memory(req))) {
            finish(req); /* on-error would need memory too: the 500 goes out as it is */
            continue;
        }
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
        pt_pipeline_ops.respond(req); /* req may be gone after this */
    }
}

/* Does the inbound section hold a statement answering preflights (at its top level)? */
bool pt_pipeline_answers_preflight(const struct pt_pipeline *pl)
{
    const struct pt_block *b = &pl->sec[PT_SEC_INBOUND];
    for (int i = 0; i < b->n; i++)
        if (b->s[i]->kind == PT_ST_POLICY && (b->s[i]->def->flags & PT_POLICY_PREFLIGHT))
            return true;
    return false;
}

void pt_pipeline_init(void)
{
    pt_msg_hooks.error_where = error_where;
}

void pt_pipeline_start(struct pt_req *req, const struct pt_pipeline *pl)
{
    struct pt_exec *ex = &req->ex;
    /* a CORS preflight runs the statements that answer it only (APIM: cors), then gets an empty 200 */
    req->preflight = req->preflight_candidate && pt_pipeline_answers_preflight(pl);
    ex->pl = pl;
    ex->call.req = req;
    enter_section(req, PT_SEC_INBOUND);
    drive(req);
}

void pt_pipeline_resume(struct pt_req *req, pt_status st)
{
    struct pt_exec *ex = &req->ex;
    if (ex->done || (!ex->running && !ex->waiting))
        return; /* over, or nothing waits: a resume twice moves nothing */
    if (ex->wait)
        return; /* suspended on wait's lanes: only wait_wake resumes it (it clears ex->wait first) */
    if (ex->running) {
        ex->resume_pending = true;
        ex->resume_status = st;
        return;
    }
    ex->waiting = false;
    if (PT_UNLIKELY(req->trace != NULL) && st != PT_AGAIN)
        pt_trace_stmt_end(req, st);
    apply(req, st);
    drive(req); /* runs on unless apply finished or suspended the pipeline */
}

void pt_pipeline_body_ready(struct pt_req *req, bool ok)
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
