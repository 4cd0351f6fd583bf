/*
 * pt_pipeline -- the policy pipeline driver.
 *
 * Runs a request's effective pipeline (four flat blocks) with an explicit
 * stack of frames, so that any statement can suspend it.  The driver does
 * not know the connection layer: it asks for a backend call, a body or the
 * response through pt_pipeline_ops, which the connection layer fills in.
 */
#ifndef PT_PIPELINE_H
#define PT_PIPELINE_H

#include "http/pt_msg.h"
#include "policy/pt_policy.h"

/* What the driver asks of the connection layer. */
struct pt_pipeline_ops {
    /* starts the backend call of forward-request: PT_AGAIN (pt_pipeline_resume
       follows when the response head is in) or PT_ERROR */
    pt_status (*forward)(struct pt_req *req);
    /* reads a whole body into memory; pt_pipeline_body_ready follows */
    void (*read_body)(struct pt_req *req, pt_msg which);
    /* the pipeline is finished: send the response (req may be gone after) */
    void (*respond)(struct pt_req *req);
};
extern struct pt_pipeline_ops pt_pipeline_ops;

/* Registers the driver with the message layer (once, at start). */
void pt_pipeline_init(void);
/* Runs the pipeline from its inbound section. */
void pt_pipeline_start(struct pt_req *req, const struct pt_pipeline *pl);
/* A suspended statement (PT_AGAIN) finished with st. */
void pt_pipeline_resume(struct pt_req *req, pt_status st);
/* The body a statement asked for is in memory (ok), or could not be read. */
void pt_pipeline_body_ready(struct pt_req *req, bool ok);
/* A timer of the request's (api->timer_start): fn runs in the worker's loop
   unless cancelled or the request ends first. */
pt_timer *pt_pipeline_timer_start(pt_call *call, uint32_t ms, void (*fn)(pt_call *call, void *arg),
                                  void *arg);
void pt_pipeline_timer_cancel(pt_timer *t);
/* A suspended statement of call (the pipeline's, or a lane of wait) finished with st: api->resume. */
void pt_pipeline_call_resume(pt_call *call, pt_status st);

/*
 * Asynchronous work a statement started for a call (an outbound HTTP call, a
 * cache read through Redis): the driver calls cancel(handle) once when the
 * call is abandoned -- a lane of wait that lost (for="any") or whose sibling
 * failed -- or when the request ends first.  The SDK's wrappers register
 * their work here (plugins need not cooperate): start after the work began,
 * end when it finished by itself, before the plugin's callback runs.  w lives
 * in the request arena.  An abandoned call's resumes are ignored.
 */
struct pt_work {
    void (*cancel)(void *handle);
    void *handle;
    pt_call *call;
    struct pt_work *next;
};
void pt_pipeline_work_start(pt_call *call, struct pt_work *w, void (*cancel)(void *handle), void *handle);
void pt_pipeline_work_end(pt_call *call, struct pt_work *w);
/* true when call was abandoned (its lane lost, or the request is over): drop its callbacks. */
bool pt_pipeline_call_abandoned(const pt_call *call);

/* Does the inbound section hold a statement that answers CORS preflights
   (PT_POLICY_PREFLIGHT, at its top level)? */
bool pt_pipeline_answers_preflight(const struct pt_pipeline *pl);
/* Frees what the pipeline holds for a finished request (timers, states). */
void pt_pipeline_cleanup(struct pt_req *req);

#endif
