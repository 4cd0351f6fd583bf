/*
 * limit_concurrency.c -- limit-concurrency: at most max-count requests at
 * once per key run its statements (a gauge counter, released when the
 * request is over).
 */
#include "access.h"

const struct pt_attr_def limit_concurrency_attrs[] = {
    {"key", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0, "what to count by"},
    {"max-count", PT_ATTR_INT, PT_ATTR_REQUIRED, NULL, NULL, NULL, 1, 1000000, "requests at once per key"},
    {"policies", PT_ATTR_POLICIES, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0,
     "the statements whose concurrency is limited"},
    {0},
};

struct concurrency {
    pt_value *key;
    int64_t max;
};

int limit_concurrency_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct concurrency *x = api->compile_alloc(c, sizeof(*x));
    x->key = api->attr_value(c, "key");
    x->max = api->attr_int(c, "max-count", 1);
    *instance = x;
    return 0;
}

static void release_slot(void *arg, int status, uint64_t in, uint64_t out)
{
    (void)status;
    (void)in;
    (void)out;
    struct pt_counter_op *op = arg;
    op->add = -1;
    op->limit = 0;
    access_api->counter(op);
}

pt_status limit_concurrency_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct concurrency *x = inst;
    pt_bytes key;
    int st = ptl_eval(api, call, x->key, &key);
    if (st)
        return (pt_status)st;
    struct pt_counter_op *op = api->alloc(call, sizeof(*op));
    *op = (struct pt_counter_op){.key = limits_counter_key(api, call, "lc", key, NULL, x->max, 0, 0),
                                 .kind = PT_COUNTER_GAUGE,
                                 .window_ms = 1,
                                 .limit = x->max,
                                 .add = 1};
    if (!api->counter(op))
        return api->fail(call, 429, "ConcurrencyLimitExceeded",
                         "Too many concurrent requests. Try again later.");
    /* the slot is held until the request is over (its statements run after this) */
    api->at_end(call, release_slot, op);
    return PT_OK;
}
