/*
 * rate_limit.c -- rate-limit and rate-limit-by-key, in one file because
 * they share their instance (struct limit), their header attributes and
 * how a refusal and the remaining calls are reported.  Sliding windows;
 * the counting itself is in limits.c.
 */
#include "access.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* a table of attributes reads best one attribute to a line */
/* clang-format off */
#define HEADER_ATTRS                                                                                         \
    {"retry-after-header-name", PT_ATTR_STRING, 0, "Retry-After", NULL, NULL, 0, 0,                        \
     "response header carrying the seconds to wait, when refused"},                                        \
    {"retry-after-variable-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,                               \
     "variable receiving the seconds to wait, when refused"},                                               \
    {"remaining-calls-header-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,                             \
     "response header carrying the calls left in the window"},                                             \
    {"remaining-calls-variable-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,                           \
     "variable receiving the calls left in the window"},                                                    \
    {"total-calls-header-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,                                 \
     "response header carrying the limit"}
/* clang-format on */

const struct pt_attr_def rate_limit_attrs[] = {
    {"calls", PT_ATTR_INT, PT_ATTR_REQUIRED, NULL, NULL, NULL, 1, 1000000000, "calls allowed per window"},
    {"renewal-period", PT_ATTR_INT, PT_ATTR_REQUIRED, NULL, NULL, NULL, 1, 300,
     "the sliding window, seconds"},
    HEADER_ATTRS,
    {"api", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, limits_api_level_attrs, 0, 0,
     "a further limit for one API (with nested operation limits)"},
    {0},
};

const struct pt_attr_def rate_limit_by_key_attrs[] = {
    {"calls", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "calls allowed per window (an integer or an expression)"},
    {"renewal-period", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "the sliding window, seconds (at most 300)"},
    {"counter-key", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "the key to count by; one counter per value, shared by every policy using it"},
    {"increment-condition", PT_ATTR_STRING, PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "count the call only if this holds, decided once the response is known"},
    {"increment-count", PT_ATTR_STRING, PT_ATTR_EXPR, "1", NULL, NULL, 0, 0, "how much the call counts"},
    HEADER_ATTRS,
    {0},
};

static void set_var(const struct pt_api *api, pt_call *call, const char *name, long long n)
{
    if (!name)
        return;
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", n);
    api->var_set(call, (pt_bytes){name, strlen(name)}, (pt_bytes){buf, strlen(buf)});
}

/* An integer attribute that may be an expression (evaluated per call). */
static int eval_int(const struct pt_api *api, pt_call *call, const pt_value *v, int64_t def, int64_t *out)
{
    if (!v) {
        *out = def;
        return 0;
    }
    pt_bytes b;
    int st = ptl_eval(api, call, v, &b);
    if (st)
        return st;
    char tmp[32];
    if (b.len == 0 || b.len >= sizeof(tmp)) {
        api->fail(call, 500, "ExpressionValueEvaluationFailure", "a limit is not an integer");
        return PT_ERROR;
    }
    memcpy(tmp, b.data, b.len);
    tmp[b.len] = '\0';
    char *end;
    long long n = strtoll(tmp, &end, 10);
    if (*end || n < 0) {
        api->fail(call, 500, "ExpressionValueEvaluationFailure", "a limit is not a non-negative integer");
        return PT_ERROR;
    }
    *out = n;
    return 0;
}

static void compile_headers(const struct pt_api *api, pt_compile *c, struct limit *l)
{
    l->retry_hdr = api->attr_literal(c, "retry-after-header-name");
    l->retry_var = api->attr_literal(c, "retry-after-variable-name");
    l->remain_hdr = api->attr_literal(c, "remaining-calls-header-name");
    l->remain_var = api->attr_literal(c, "remaining-calls-variable-name");
    l->total_hdr = api->attr_literal(c, "total-calls-header-name");
    if (!l->retry_hdr || !*l->retry_hdr)
        l->retry_hdr = "Retry-After";
}

int rate_limit_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct limit *l = api->compile_alloc(c, sizeof(*l));
    compile_headers(api, c, l);
    if (limits_compile_levels(api, c, l, api->attr_int(c, "calls", 1), api->attr_int(c, "renewal-period", 1),
                              0))
        return -1;
    for (int i = 1; i < l->nlevels; i++)
        if (l->levels[i].period_s < 1 || l->levels[i].period_s > 300) {
            api->compile_error(
                c, "api", "a nested limit's renewal-period must be from 1 to 300 seconds (%s%s%s)",
                l->levels[i].api, l->levels[i].op ? "/" : "", l->levels[i].op ? l->levels[i].op : "");
            return -1;
        }
    *instance = l;
    return 0;
}

int rate_limit_by_key_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct limit *l = api->compile_alloc(c, sizeof(*l));
    l->by_key = true;
    compile_headers(api, c, l);
    l->calls_v = api->attr_value(c, "calls");
    l->period_v = api->attr_value(c, "renewal-period");
    l->key = api->attr_value(c, "counter-key");
    l->cond = api->attr_value(c, "increment-condition");
    l->count_v = api->attr_value(c, "increment-count");
    const char *p = api->attr_literal(c, "renewal-period");
    if (p && (atoll(p) < 1 || atoll(p) > 300)) {
        api->compile_error(c, "renewal-period", "must be from 1 to 300 seconds");
        return -1;
    }
    *instance = l;
    return 0;
}

static pt_status refuse_rate(const struct pt_api *api, pt_call *call, const struct limit *l, int64_t retry_ms)
{
    long long secs = (retry_ms + 999) / 1000;
    if (secs < 1)
        secs = 1;
    set_var(api, call, l->retry_var, secs);
    struct resp_headers *h = api->alloc(call, sizeof(*h));
    h->names[0] = l->retry_hdr;
    h->values[0] = secs;
    api->at_response(call, limits_add_headers, h);
    char msg[96];
    snprintf(msg, sizeof(msg), "Rate limit is exceeded. Try again in %lld seconds.", secs);
    return api->fail(call, 429, "RateLimitExceeded", msg);
}

/* Success: remaining and total on the response and in variables. */
static void report_remaining(const struct pt_api *api, pt_call *call, const struct limit *l,
                             long long remaining, long long total)
{
    set_var(api, call, l->remain_var, remaining);
    if ((l->remain_hdr && *l->remain_hdr) || (l->total_hdr && *l->total_hdr)) {
        struct resp_headers *h = api->alloc(call, sizeof(*h));
        h->names[0] = l->remain_hdr;
        h->values[0] = remaining;
        h->names[1] = l->total_hdr;
        h->values[1] = total;
        api->at_response(call, limits_add_headers, h);
    }
}

pt_status rate_limit_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct limit *l = inst;
    pt_bytes sub = api->fact(call, PT_FACT_SUBSCRIPTION_ID);
    if (!sub.len)
        return PT_OK; /* APIM: only calls that carried a subscription key are limited */
    pt_bytes api_id = api->fact(call, PT_FACT_API_ID), op_id = api->fact(call, PT_FACT_OPERATION_ID);
    long long remaining = -1;
    int64_t retry = 0;
    for (int i = 0; i < l->nlevels; i++) {
        const struct level *v = &l->levels[i];
        if (!v->calls || !limits_level_applies(v, api_id, op_id))
            continue;
        struct pt_counter_op op = {.key =
                                       limits_counter_key(api, call, "rl", sub, v, v->calls, v->period_s, 0),
                                   .kind = PT_COUNTER_SLIDING,
                                   .window_ms = v->period_s * 1000};
        int64_t wait = 0;
        int64_t count = limits_count_call(api, &op, 1, v->calls, &wait);
        if (count > v->calls) {
            if (wait > retry)
                retry = wait;
            continue; /* the other levels count the call too */
        }
        if (remaining < 0 || v->calls - count < remaining)
            remaining = v->calls - count;
    }
    if (retry)
        return refuse_rate(api, call, l, retry);
    if (remaining >= 0)
        report_remaining(api, call, l, remaining, (long long)l->levels[0].calls);
    return PT_OK;
}

pt_status rate_limit_by_key_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct limit *l = inst;
    pt_bytes key;
    int64_t calls, period, count;
    int st;
    if ((st = ptl_eval(api, call, l->key, &key)) || (st = eval_int(api, call, l->calls_v, 1, &calls)) ||
        (st = eval_int(api, call, l->period_v, 1, &period)) ||
        (st = eval_int(api, call, l->count_v, 1, &count)))
        return (pt_status)st;
    if (period < 1 || period > 300)
        return api->fail(call, 500, "ExpressionValueEvaluationFailure",
                         "renewal-period must be from 1 to 300");
    if (count < 0)
        count = 0;
    struct pt_counter_op op = {.key = limits_counter_key(api, call, "rlk", key, NULL, 0, period, 0),
                               .kind = PT_COUNTER_SLIDING,
                               .window_ms = period * 1000};
    /* Retry-After: when the next call, counting as much as this one, fits --
       `count` more fit when one more fits under calls - count + 1 */
    int64_t room = calls - count + 1 > 0 ? calls - count + 1 : 1, now;
    if (l->cond) {
        /* the call counts once its response is known, if the condition holds then (refused or not) */
        now = limits_count_call(api, &op, 0, calls, NULL);
        limits_count_on_response(api, call, l, &op, count);
        if (now + count > calls)
            return refuse_rate(api, call, l, limits_wait_for_room(api, &op, room));
        report_remaining(api, call, l, (long long)(calls - now - count), (long long)calls);
        return PT_OK;
    }
    now = limits_count_call(api, &op, count, calls, NULL);
    if (now > calls)
        return refuse_rate(api, call, l, limits_wait_for_room(api, &op, room));
    report_remaining(api, call, l, (long long)(calls - now), (long long)calls);
    return PT_OK;
}
