/*
 * quota.c -- quota and quota-by-key, in one file because they share how a
 * level is counted (calls and kilobytes in fixed periods kept across
 * restarts) and refused.  The nested levels and counters are in limits.c.
 */
#include "access.h"
#include "pt_civil.h"

#include <stdio.h>
#include <string.h>

/* "2024-05-01T10:00:00Z" (fraction and offset allowed) -> ms since 1970; false when malformed. */
static bool iso_ms(const char *s, int64_t *out)
{
    int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
    if (sscanf(s, "%d-%d-%d%n", &y, &mo, &d, &n) != 3 || mo < 1 || mo > 12 || d < 1 || d > 31)
        return false;
    const char *p = s + n;
    int64_t frac_ms = 0, off = 0;
    if (*p == 'T' || *p == ' ') {
        int k = 0;
        if (sscanf(p + 1, "%d:%d:%d%n", &h, &mi, &sec, &k) != 3)
            return false;
        p += 1 + k;
        if (*p == '.') {
            int scale = 100;
            for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
                frac_ms += (*p - '0') * scale;
        }
        if (*p == '+' || *p == '-') {
            int oh, om;
            if (sscanf(p + 1, "%d:%d", &oh, &om) != 2)
                return false;
            off = (*p == '+' ? 1 : -1) * (oh * 3600 + om * 60);
        }
    }
    *out = (pt_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off) * 1000 + frac_ms;
    return true;
}

const struct pt_attr_def quota_attrs[] = {
    {"calls", PT_ATTR_INT, 0, NULL, NULL, NULL, 1, 2000000000, "calls per period"},
    {"bandwidth", PT_ATTR_INT, 0, NULL, NULL, NULL, 1, 2000000000, "kilobytes (received + sent) per period"},
    {"renewal-period", PT_ATTR_INT, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 2000000000,
     "the period in seconds, counted from the subscription's creation; 0 = never renewed"},
    {"api", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, limits_api_level_attrs, 0, 0,
     "a further quota for one API (with nested operation quotas)"},
    {0},
};

const struct pt_attr_def quota_by_key_attrs[] = {
    {"calls", PT_ATTR_INT, 0, NULL, NULL, NULL, 1, 2000000000, "calls per period"},
    {"bandwidth", PT_ATTR_INT, 0, NULL, NULL, NULL, 1, 2000000000, "kilobytes (received + sent) per period"},
    {"renewal-period", PT_ATTR_INT, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 2000000000,
     "the period in seconds; 0 = never renewed"},
    {"counter-key", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "the key to count by"},
    {"increment-condition", PT_ATTR_STRING, PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "count the call only if this holds, decided once the response is known"},
    {"first-period-start", PT_ATTR_STRING, 0, "0001-01-01T00:00:00Z", NULL, NULL, 0, 0,
     "where periods are counted from (ISO 8601)"},
    {0},
};

/* ================================================================ quotas */

int quota_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct limit *l = api->compile_alloc(c, sizeof(*l));
    l->quota = true;
    int64_t calls = api->attr_int(c, "calls", 0), kb = api->attr_int(c, "bandwidth", 0);
    if (!calls && !kb) {
        api->compile_error(c, NULL, "needs calls, bandwidth or both");
        return -1;
    }
    if (limits_compile_levels(api, c, l, calls, api->attr_int(c, "renewal-period", 0), kb))
        return -1;
    *instance = l;
    return 0;
}

int quota_by_key_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct limit *l = api->compile_alloc(c, sizeof(*l));
    l->quota = l->by_key = true;
    int64_t calls = api->attr_int(c, "calls", 0), kb = api->attr_int(c, "bandwidth", 0);
    if (!calls && !kb) {
        api->compile_error(c, NULL, "needs calls, bandwidth or both");
        return -1;
    }
    l->levels = api->compile_alloc(c, sizeof(*l->levels));
    limits_add_level(l, NULL, NULL, calls, api->attr_int(c, "renewal-period", 0), kb);
    l->key = api->attr_value(c, "counter-key");
    l->cond = api->attr_value(c, "increment-condition");
    const char *fs = api->attr_literal(c, "first-period-start");
    if (!fs)
        fs = "0001-01-01T00:00:00Z";
    if (!iso_ms(fs, &l->origin_ms)) {
        api->compile_error(c, "first-period-start", "'%s' is not a date such as 2024-01-01T00:00:00Z", fs);
        return -1;
    }
    *instance = l;
    return 0;
}

/* A period longer than the longest renewal-period: renewal-period 0, never renewed. */
#define NEVER_S 2000000000LL

static pt_status refuse_quota(const struct pt_api *api, pt_call *call, int64_t retry_ms, bool bandwidth)
{
    long long s = (retry_ms + 999) / 1000;
    if (s < 1)
        s = 1;
    char msg[128];
    if (s > NEVER_S) { /* nothing to wait for: no Retry-After */
        snprintf(msg, sizeof(msg), "Out of %s quota. Quota will not be replenished.",
                 bandwidth ? "bandwidth" : "call volume");
        return api->fail(call, 403, "QuotaExceeded", msg);
    }
    struct resp_headers *h = api->alloc(call, sizeof(*h));
    h->names[0] = "Retry-After";
    h->values[0] = s;
    api->at_response(call, limits_add_headers, h);
    if (s >= 100LL * 3600)
        snprintf(msg, sizeof(msg), "Out of %s quota. Quota will be replenished in %lld.%02lld:%02lld:%02lld.",
                 bandwidth ? "bandwidth" : "call volume", s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
    else
        snprintf(msg, sizeof(msg), "Out of %s quota. Quota will be replenished in %02lld:%02lld:%02lld.",
                 bandwidth ? "bandwidth" : "call volume", s / 3600, s % 3600 / 60, s % 60);
    return api->fail(call, 403, "QuotaExceeded", msg);
}

/* The bytes of a finished request, added to a bandwidth quota. */
static void add_bytes(void *arg, int status, uint64_t in, uint64_t out)
{
    (void)status;
    struct pt_counter_op *op = arg;
    op->add = (int64_t)((in + out + 1023) / 1024);
    if (op->add)
        access_api->counter(op);
}

/* Whether this request already counted in the named counter (several
   quota-by-key policies with the same key count a request once); marks it. */
static bool counted_once(const struct pt_api *api, pt_call *call, pt_bytes name)
{
    char *mark = api->alloc(call, name.len + 16);
    memcpy(mark, "portico.count:", 14);
    memcpy(mark + 14, name.data, name.len);
    pt_bytes m = {mark, 14 + name.len}, seen;
    if (api->var_get(call, m, &seen) == 0)
        return true;
    api->var_set(call, m, PTL_LIT("1"));
    return false;
}

/*
 * One quota level.  The call is counted (a refused one too, as in APIM; across
 * nodes, a refusal past the limit is kept on its node: core/event/pt_counters.c)
 * unless `once` finds it counted already; with `defer` the call is counted
 * when the response is known, if the increment condition holds.  Bytes are
 * added when the request is over.  Returns 0, or 1 (calls) / 2 (bandwidth)
 * when the quota is exhausted, with *retry_ms.
 */
static int quota_level(const struct pt_api *api, pt_call *call, const char *kind, pt_bytes key,
                       const struct level *v, int64_t origin, bool by_key, const struct limit *defer,
                       int64_t *retry_ms)
{
    int64_t window = v->period_s > 0 ? v->period_s * 1000 : INT64_MAX / 4;
    int over = 0;
    if (v->kb) {
        struct pt_counter_op *b = api->alloc(call, sizeof(*b));
        char k[8];
        snprintf(k, sizeof(k), "%sb", kind);
        *b = (struct pt_counter_op){
            .key = limits_counter_key(api, call, k, key, v, by_key ? 0 : v->kb, v->period_s, origin),
            .kind = PT_COUNTER_FIXED,
            .persist = 1,
            .window_ms = window,
            .origin_ms = origin,
            .limit = v->kb};
        api->counter(b);
        if (b->count >= v->kb) {
            over = 2;
            *retry_ms = b->retry_ms;
        }
        b->limit = 0;
        if (!by_key || !counted_once(api, call, b->key))
            api->at_end(call, add_bytes, b);
    }
    if (v->calls) {
        char k[8];
        snprintf(k, sizeof(k), "%sc", kind);
        struct pt_counter_op op = {
            .key = limits_counter_key(api, call, k, key, v, by_key ? 0 : v->calls, v->period_s, origin),
            .kind = PT_COUNTER_FIXED,
            .persist = 1,
            .window_ms = window,
            .origin_ms = origin};
        int64_t count, wait = 0;
        if (by_key && counted_once(api, call, op.key))
            count = limits_count_call(api, &op, 0, v->calls, &wait); /* in the count already */
        else if (defer) {
            count = limits_count_call(api, &op, 0, v->calls, NULL) + 1;
            limits_count_on_response(api, call, defer, &op, 1);
            if (count > v->calls)
                wait = limits_wait_for_room(api, &op, v->calls);
        } else
            count = limits_count_call(api, &op, 1, v->calls, &wait);
        if (count > v->calls) {
            over = 1;
            *retry_ms = wait;
        }
    }
    return over;
}

pt_status quota_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct limit *l = inst;
    pt_bytes sub = api->fact(call, PT_FACT_SUBSCRIPTION_ID);
    if (!sub.len)
        return PT_OK; /* quotas count per subscription */
    /* periods start at the subscription's creation */
    int64_t origin = 0;
    pt_bytes start = api->fact(call, PT_FACT_SUBSCRIPTION_START);
    if (start.len) {
        char *s = ptl_dup_bytes(api, call, start);
        if (s && !iso_ms(s, &origin))
            origin = 0;
    }
    pt_bytes api_id = api->fact(call, PT_FACT_API_ID), op_id = api->fact(call, PT_FACT_OPERATION_ID);
    int over = 0;
    int64_t retry = 0;
    for (int i = 0; i < l->nlevels; i++) {
        const struct level *v = &l->levels[i];
        if (!limits_level_applies(v, api_id, op_id))
            continue;
        int64_t wait = 0;
        int o =
            quota_level(api, call, "q", sub, v, origin, false, NULL, &wait); /* every level counts the call */
        if (o && (!over || wait > retry)) {
            over = o;
            retry = wait;
        }
    }
    return over ? refuse_quota(api, call, retry, over == 2) : PT_OK;
}

pt_status quota_by_key_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct limit *l = inst;
    pt_bytes key;
    int st = ptl_eval(api, call, l->key, &key);
    if (st)
        return (pt_status)st;
    int64_t retry = 0;
    int over =
        quota_level(api, call, "qk", key, &l->levels[0], l->origin_ms, true, l->cond ? l : NULL, &retry);
    return over ? refuse_quota(api, call, retry, over == 2) : PT_OK;
}
