/*
 * limits.c -- what rate-limit, rate-limit-by-key, quota and quota-by-key
 * share: their instance's nested api/operation levels, counter names (which
 * limit-concurrency uses too), counting a call now or once the response is
 * known, and the headers added to the response.
 *
 * Counting.  Limits use the gateway's node-wide counters (api->counter):
 * shared by every worker, sharded, bounded in memory (see
 * docs/access-policies.md).  Rate limits are sliding windows; quotas are
 * fixed windows kept in the store across restarts.  As in APIM, every call
 * counts, the ones a limit refuses too: a client that keeps calling past
 * its limit stays refused until it slows down.  The per-subscription limits
 * keep a count per policy definition (the counter's name carries the
 * numbers, so changing a limit starts a fresh count); the by-key ones share
 * one count per key value and window across every policy using the key.
 */
#include "access.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Nested <api> and <operation> limits (rate-limit, quota) are extra counters
   for the calls they name; an element's `id` wins over its `name` (both are
   compared with the API's and operation's ids). */
static const struct pt_attr_def op_level_attrs[] = {
    {"name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "the operation (its id)"},
    {"id", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "the operation's id (wins over name)"},
    {"calls", PT_ATTR_INT, 0, NULL, NULL, NULL, 1, 1000000000, "calls allowed"},
    {"renewal-period", PT_ATTR_INT, 0, NULL, NULL, NULL, 0, 1000000000, "seconds"},
    {"bandwidth", PT_ATTR_INT, 0, NULL, NULL, NULL, 1, 1000000000, "kilobytes (quota)"},
    {0},
};

const struct pt_attr_def limits_api_level_attrs[] = {
    {"name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "the API (its id)"},
    {"id", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "the API's id (wins over name)"},
    {"calls", PT_ATTR_INT, 0, NULL, NULL, NULL, 1, 1000000000, "calls allowed"},
    {"renewal-period", PT_ATTR_INT, 0, NULL, NULL, NULL, 0, 1000000000, "seconds"},
    {"bandwidth", PT_ATTR_INT, 0, NULL, NULL, NULL, 1, 1000000000, "kilobytes (quota)"},
    {"operation", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, op_level_attrs, 0, 0,
     "limits for one operation"},
    {0},
};

static int64_t elem_int(const struct pt_api *api, pt_element *e, const char *name, int64_t def)
{
    const char *s = api->elem_literal(e, name);
    return s && *s ? strtoll(s, NULL, 10) : def;
}

void limits_add_level(struct limit *l, const char *api_id, const char *op_id, int64_t calls, int64_t period,
                      int64_t kb)
{
    struct level *v = &l->levels[l->nlevels++];
    v->api = api_id;
    v->op = op_id;
    v->calls = calls;
    v->period_s = period;
    v->kb = kb;
}

int limits_compile_levels(const struct pt_api *api, pt_compile *c, struct limit *l, int64_t top_calls,
                          int64_t top_period, int64_t top_kb)
{
    pt_element **apis;
    int na = api->attr_elements(c, "api", &apis);
    int total = 1 + na;
    for (int i = 0; i < na; i++) {
        pt_element **ops;
        total += api->elem_elements(apis[i], "operation", &ops);
    }
    l->levels = api->compile_alloc(c, sizeof(*l->levels) * (size_t)total);
    limits_add_level(l, NULL, NULL, top_calls, top_period, top_kb);
    for (int i = 0; i < na; i++) {
        const char *id = api->elem_literal(apis[i], "id");
        if (!id || !*id)
            id = api->elem_literal(apis[i], "name");
        if (!id || !*id) {
            api->compile_error(c, "api", "an api limit needs an id or a name");
            return -1;
        }
        int64_t calls = elem_int(api, apis[i], "calls", 0), kb = elem_int(api, apis[i], "bandwidth", 0);
        if (calls || kb)
            limits_add_level(l, id, NULL, calls, elem_int(api, apis[i], "renewal-period", top_period), kb);
        pt_element **ops;
        int no = api->elem_elements(apis[i], "operation", &ops);
        for (int k = 0; k < no; k++) {
            const char *oid = api->elem_literal(ops[k], "id");
            if (!oid || !*oid)
                oid = api->elem_literal(ops[k], "name");
            if (!oid || !*oid) {
                api->compile_error(c, "api", "an operation limit needs an id or a name");
                return -1;
            }
            limits_add_level(l, id, oid, elem_int(api, ops[k], "calls", 0),
                             elem_int(api, ops[k], "renewal-period", top_period),
                             elem_int(api, ops[k], "bandwidth", 0));
        }
    }
    return 0;
}

/* at_response: the headers of a struct resp_headers whose names are set */
void limits_add_headers(pt_call *call, void *arg)
{
    struct resp_headers *h = arg;
    for (int i = 0; i < 3; i++)
        if (h->names[i] && *h->names[i]) {
            char v[32];
            snprintf(v, sizeof(v), "%lld", h->values[i]);
            ptl_header_put(access_api, call, PT_MSG_RESPONSE, h->names[i], v);
        }
}

bool limits_level_applies(const struct level *v, pt_bytes api_id, pt_bytes op_id)
{
    if (v->api && !ptl_bytes_is(api_id, v->api))
        return false;
    return !v->op || ptl_bytes_is(op_id, v->op);
}

/*
 * A counter's name: what counts, over which window, for which nested level,
 * and the key.  `calls` is part of it for the per-subscription limits (each
 * policy definition keeps its own count, and changing the number starts a
 * fresh one) and 0 for the by-key ones, whose count is shared by every
 * policy using the same key over the same window, each checking it against
 * its own number (APIM: one counter per key value).
 */
pt_bytes limits_counter_key(const struct pt_api *api, pt_call *call, const char *kind, pt_bytes key,
                            const struct level *v, int64_t calls, int64_t period, int64_t origin)
{
    size_t n = key.len + 160 + (v && v->api ? strlen(v->api) : 0) + (v && v->op ? strlen(v->op) : 0);
    char *b = api->alloc(call, n);
    int k = snprintf(b, n, "%s|%lld|%lld|%lld|%s|%s|", kind, (long long)calls, (long long)period,
                     (long long)origin, v && v->api ? v->api : "", v && v->op ? v->op : "");
    memcpy(b + k, key.data, key.len);
    return (pt_bytes){b, (size_t)k + key.len};
}

/* A look at a counter with a limit: the ms until one more call fits under it. */
int64_t limits_wait_for_room(const struct pt_api *api, struct pt_counter_op *op, int64_t limit)
{
    op->add = 0;
    op->limit = limit;
    api->counter(op);
    return op->retry_ms > 0 ? op->retry_ms : 1000;
}

/* Adds `n` to a counter whatever its limit (a refused call counts too, as in
   APIM) and returns the count, past `limit` when the call is refused; with
   `limit`, *retry_ms says when the next call would fit again.  One operation
   decides and counts (PT_COUNTER_COUNT_REFUSED): with counters.redis the
   decision is this node's tokens, not a count another node may be adding to. */
int64_t limits_count_call(const struct pt_api *api, struct pt_counter_op *op, int64_t n, int64_t limit,
                          int64_t *retry_ms)
{
    int kind = op->kind & PT_COUNTER_KIND_MASK;
    bool decide = n > 0 && limit > 0;
    op->add = n;
    op->limit = decide ? limit : 0;
    op->kind = kind | (decide ? PT_COUNTER_COUNT_REFUSED : 0);
    int admitted = api->counter(op);
    op->kind = kind;
    int64_t count = op->count;
    if (decide && !admitted && count <= limit)
        count = limit + 1; /* refused by the node's tokens while the count it knows has room */
    if (retry_ms && count > limit)
        *retry_ms = decide && op->retry_ms > 0 ? op->retry_ms : limits_wait_for_room(api, op, limit);
    return count;
}

/* rate-limit-by-key's and quota-by-key's increment decided on the response */
struct deferred {
    const struct limit *l;
    struct pt_counter_op op;
};

static void count_if(pt_call *call, void *arg)
{
    struct deferred *d = arg;
    int yes = 1;
    if (d->l->cond && access_api->eval_bool(call, d->l->cond, &yes) != 0)
        yes = 0;
    if (yes && d->op.add)
        access_api->counter(&d->op);
}

/* Adds `n` to the counter once the response is known, if l's increment
   condition holds then (for a refused call too). */
void limits_count_on_response(const struct pt_api *api, pt_call *call, const struct limit *l,
                              const struct pt_counter_op *op, int64_t n)
{
    struct deferred *d = api->alloc(call, sizeof(*d));
    d->l = l;
    d->op = *op;
    d->op.add = n;
    d->op.limit = 0;
    api->at_response(call, count_if, d);
}
