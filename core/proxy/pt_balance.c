/*
 * pt_balance -- the backend side's use of the node-wide backend state
 * (event/pt_breaker.c): before a call, a pool's member is chosen, or a
 * backend whose circuit is open (or that health checks marked down) is
 * not called at all: 503 with reason BackendUnavailable and a Retry-After
 * with the seconds left; after a call, its outcome (the response's status,
 * or the error reason of a call that got none) is counted against the
 * backend's circuit breaker rules.
 */
#include "base/pt_log.h"
#include "event/pt_breaker.h"
#include "http/pt_msg.h"
#include "proxy/pt_proxy.h"

#include <stdio.h>
#include <time.h>

/* at_response: the Retry-After of a 503 the gateway answered for an unavailable backend (the
   response may have been replaced by on-error: only a 503 gets it). */
static void add_retry_after(pt_call *call, void *arg)
{
    struct pt_req *req = call->req;
    if (req->rh.status != 503)
        return;
    char v[24];
    int n = snprintf(v, sizeof(v), "%llu", (unsigned long long)(uintptr_t)arg);
    pt_bytes val = {v, (size_t)n};
    pt_msg_header_set(req, PT_MSG_RESPONSE, (pt_bytes){"Retry-After", 11}, &val, 1, PT_HEADER_OVERRIDE);
}

static pt_status unavailable(struct pt_req *req, const struct pt_backdef *d, int64_t wait_ms)
{
    char msg[160];
    uint64_t secs = wait_ms > 0 ? (uint64_t)(wait_ms + 999) / 1000 : 0;
    if (secs)
        snprintf(msg, sizeof(msg),
                 "Backend %s is unavailable (circuit breaker open). Try again in %llu seconds.", d->id,
                 (unsigned long long)secs);
    else
        snprintf(msg, sizeof(msg), "Backend %s is unavailable (no healthy backend to call).", d->id);
    pt_msg_set_error(req, 503, "forward-request", "BackendUnavailable", msg);
    if (secs) {
        /* one Retry-After however often a retry met the open circuit: the latest */
        for (struct pt_hook *h = req->resp_hooks; h; h = h->next)
            if (h->resp == add_retry_after) {
                h->arg = (void *)(uintptr_t)secs;
                return PT_ERROR;
            }
        struct pt_hook *h = pt_pool_calloc(req->pool, sizeof(*h));
        if (h) {
            h->resp = add_retry_after;
            h->arg = (void *)(uintptr_t)secs;
            h->next = req->resp_hooks;
            req->resp_hooks = h;
        }
    }
    return PT_ERROR;
}

pt_status pt_balance_choose(struct pt_req *req, const struct pt_backdef *d)
{
    req->brk_def = NULL;
    if (!d || !d->state)
        return PT_OK;
    int64_t now = (int64_t)pt_clock_now_ms();
    if (d->type == PT_BE_POOL) {
        int64_t wait;
        int k = pt_breaker_pick(d->state, d->members, d->nmembers, now, &wait);
        if (k < 0)
            return unavailable(req, d, wait);
        d = d->members[k].be;
        req->be = d->target;
    } else if (!pt_breaker_available(d->state, now))
        return unavailable(req, d, pt_breaker_open_ms(d->state, now));
    else if (d->target)
        req->be = d->target;
    if (d->nrules)
        req->brk_def = d; /* its outcome counts */
    return PT_OK;
}

/* The response's Retry-After, in ms (0: none or not usable). */
static int64_t retry_after_of(const struct pt_head *rh)
{
    for (int i = 0; i < rh->nh; i++)
        if (!rh->h[i].deleted && pt_str_ieq_c(rh->h[i].name, "retry-after"))
            return pt_breaker_retry_after(rh->h[i].value, time(NULL));
    return 0;
}

void pt_balance_outcome(struct pt_req *req, int status, const char *reason)
{
    const struct pt_backdef *d = req->brk_def;
    if (!d)
        return;
    req->brk_def = NULL; /* one outcome per call */
    int64_t ra = 0;
    for (int i = 0; status && i < d->nrules; i++)
        if (d->rules[i].accept_retry_after) {
            ra = retry_after_of(&req->rh);
            break;
        }
    int64_t now = (int64_t)pt_clock_now_ms();
    if (pt_breaker_record(d->state, d->rules, d->nrules, status, reason, ra, now)) {
        int64_t left = pt_breaker_open_ms(d->state, now);
        if (status)
            pt_warn("backend %s: circuit breaker tripped (last: status %d); calls refused for %lld ms", d->id,
                    status, (long long)left);
        else
            pt_warn("backend %s: circuit breaker tripped (last: %s); calls refused for %lld ms", d->id,
                    reason, (long long)left);
    }
}
