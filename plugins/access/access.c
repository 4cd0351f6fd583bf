/*
 * access -- the access-restriction family.
 *
 * rate-limit, rate-limit-by-key, quota, quota-by-key, limit-concurrency,
 * ip-filter, check-header, cors, validate-jwt and authentication-basic,
 * named and shaped after Azure API Management's.
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
 *
 * Decisions where APIM leaves room are documented at each policy.
 */
#define _GNU_SOURCE /* strcasestr */
#include <portico/plugin.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/ssl.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define LIT(s) ((pt_bytes){(s), sizeof(s) - 1})

/* ================================================================ helpers */

static int eval(const struct pt_api *api, pt_call *call, const pt_value *v, pt_bytes *out)
{
    if (!v) {
        *out = (pt_bytes){"", 0};
        return 0;
    }
    int rc = api->eval(call, v, out);
    if (rc == 0)
        return 0;
    return rc == PT_AGAIN ? PT_AGAIN : PT_ERROR;
}

static char *dup_bytes(const struct pt_api *api, pt_call *call, pt_bytes b)
{
    char *s = api->alloc(call, b.len + 1);
    if (s) {
        memcpy(s, b.data, b.len);
        s[b.len] = '\0';
    }
    return s;
}

static bool bytes_is(pt_bytes a, const char *b)
{
    return a.len == strlen(b) && !memcmp(a.data, b, a.len);
}

static bool bytes_ieq(pt_bytes a, pt_bytes b)
{
    return a.len == b.len && (!a.len || !strncasecmp(a.data, b.data, a.len));
}

static void set_response_header(const struct pt_api *api, pt_call *call, const char *name, const char *value)
{
    pt_bytes v = {value, strlen(value)};
    api->header_set(call, PT_MSG_RESPONSE, (pt_bytes){name, strlen(name)}, &v, 1, PT_HEADER_OVERRIDE);
}

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
    int st = eval(api, call, v, &b);
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

/* Days since 1970-01-01 of a civil date (any year, proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

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
    *out = (days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off) * 1000 + frac_ms;
    return true;
}

/* ============================================================ rate limits */

/*
 * rate-limit and rate-limit-by-key share their instance.  Nested <api> and
 * <operation> limits (rate-limit, quota) are extra counters for the calls
 * they name; an element's `id` wins over its `name` (both are compared
 * with the API's and operation's ids).
 */
struct level {
    const char *api, *op; /* NULL = every API / operation */
    int64_t calls, period_s, kb;
};

struct limit {
    bool by_key, quota;
    struct level *levels; /* [0] is the policy's own */
    int nlevels;
    pt_value *calls_v, *period_v; /* by-key: expressions allowed */
    pt_value *key, *cond, *count_v;
    const char *first_start; /* quota-by-key */
    int64_t origin_ms;
    const char *retry_hdr, *retry_var, *remain_hdr, *remain_var, *total_hdr;
};

static const struct pt_attr_def op_level_attrs[] = {
    {"name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "the operation (its id)"},
    {"id", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "the operation's id (wins over name)"},
    {"calls", PT_ATTR_INT, 0, NULL, NULL, NULL, 1, 1000000000, "calls allowed"},
    {"renewal-period", PT_ATTR_INT, 0, NULL, NULL, NULL, 0, 1000000000, "seconds"},
    {"bandwidth", PT_ATTR_INT, 0, NULL, NULL, NULL, 1, 1000000000, "kilobytes (quota)"},
    {0},
};

static const struct pt_attr_def api_level_attrs[] = {
    {"name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "the API (its id)"},
    {"id", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "the API's id (wins over name)"},
    {"calls", PT_ATTR_INT, 0, NULL, NULL, NULL, 1, 1000000000, "calls allowed"},
    {"renewal-period", PT_ATTR_INT, 0, NULL, NULL, NULL, 0, 1000000000, "seconds"},
    {"bandwidth", PT_ATTR_INT, 0, NULL, NULL, NULL, 1, 1000000000, "kilobytes (quota)"},
    {"operation", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, op_level_attrs, 0, 0, "limits for one operation"},
    {0},
};

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

static const struct pt_attr_def rate_limit_attrs[] = {
    {"calls", PT_ATTR_INT, PT_ATTR_REQUIRED, NULL, NULL, NULL, 1, 1000000000, "calls allowed per window"},
    {"renewal-period", PT_ATTR_INT, PT_ATTR_REQUIRED, NULL, NULL, NULL, 1, 300, "the sliding window, seconds"},
    HEADER_ATTRS,
    {"api", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, api_level_attrs, 0, 0,
     "a further limit for one API (with nested operation limits)"},
    {0},
};

static const struct pt_attr_def rate_limit_key_attrs[] = {
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

static const struct pt_attr_def quota_attrs[] = {
    {"calls", PT_ATTR_INT, 0, NULL, NULL, NULL, 1, 2000000000, "calls per period"},
    {"bandwidth", PT_ATTR_INT, 0, NULL, NULL, NULL, 1, 2000000000, "kilobytes (received + sent) per period"},
    {"renewal-period", PT_ATTR_INT, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 2000000000,
     "the period in seconds, counted from the subscription's creation; 0 = never renewed"},
    {"api", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, api_level_attrs, 0, 0,
     "a further quota for one API (with nested operation quotas)"},
    {0},
};

static const struct pt_attr_def quota_key_attrs[] = {
    {"calls", PT_ATTR_INT, 0, NULL, NULL, NULL, 1, 2000000000, "calls per period"},
    {"bandwidth", PT_ATTR_INT, 0, NULL, NULL, NULL, 1, 2000000000, "kilobytes (received + sent) per period"},
    {"renewal-period", PT_ATTR_INT, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 2000000000,
     "the period in seconds; 0 = never renewed"},
    {"counter-key", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0, "the key to count by"},
    {"increment-condition", PT_ATTR_STRING, PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "count the call only if this holds, decided once the response is known"},
    {"first-period-start", PT_ATTR_STRING, 0, "0001-01-01T00:00:00Z", NULL, NULL, 0, 0,
     "where periods are counted from (ISO 8601)"},
    {0},
};

static int64_t elem_int(const struct pt_api *api, pt_element *e, const char *name, int64_t def)
{
    const char *s = api->elem_literal(e, name);
    return s && *s ? strtoll(s, NULL, 10) : def;
}

static void add_level(struct limit *l, const char *api_id, const char *op_id, int64_t calls, int64_t period,
                      int64_t kb)
{
    struct level *v = &l->levels[l->nlevels++];
    v->api = api_id;
    v->op = op_id;
    v->calls = calls;
    v->period_s = period;
    v->kb = kb;
}

static int compile_levels(const struct pt_api *api, pt_compile *c, struct limit *l, int64_t top_calls,
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
    add_level(l, NULL, NULL, top_calls, top_period, top_kb);
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
            add_level(l, id, NULL, calls, elem_int(api, apis[i], "renewal-period", top_period), kb);
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
            add_level(l, id, oid, elem_int(api, ops[k], "calls", 0),
                      elem_int(api, ops[k], "renewal-period", top_period), elem_int(api, ops[k], "bandwidth", 0));
        }
    }
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

static int rate_limit_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct limit *l = api->compile_alloc(c, sizeof(*l));
    compile_headers(api, c, l);
    if (compile_levels(api, c, l, api->attr_int(c, "calls", 1), api->attr_int(c, "renewal-period", 1), 0))
        return -1;
    for (int i = 1; i < l->nlevels; i++)
        if (l->levels[i].period_s < 1 || l->levels[i].period_s > 300) {
            api->compile_error(c, "api", "a nested limit's renewal-period must be from 1 to 300 seconds (%s%s%s)",
                               l->levels[i].api, l->levels[i].op ? "/" : "", l->levels[i].op ? l->levels[i].op : "");
            return -1;
        }
    *instance = l;
    return 0;
}

static int rate_limit_key_compile(const struct pt_api *api, pt_compile *c, void **instance)
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

/* Headers added to the response once it is known (success or refusal). */
struct resp_headers {
    const char *names[3];
    long long values[3];
};

static void add_headers(pt_call *call, void *arg);
static const struct pt_api *A; /* the gateway's table (set at init) */

static void add_headers(pt_call *call, void *arg)
{
    struct resp_headers *h = arg;
    for (int i = 0; i < 3; i++)
        if (h->names[i] && *h->names[i]) {
            char v[32];
            snprintf(v, sizeof(v), "%lld", h->values[i]);
            set_response_header(A, call, h->names[i], v);
        }
}

static bool level_applies(const struct level *v, pt_bytes api_id, pt_bytes op_id)
{
    if (v->api && !bytes_is(api_id, v->api))
        return false;
    return !v->op || bytes_is(op_id, v->op);
}

/*
 * A counter's name: what counts, over which window, for which nested level,
 * and the key.  `calls` is part of it for the per-subscription limits (each
 * policy definition keeps its own count, and changing the number starts a
 * fresh one) and 0 for the by-key ones, whose count is shared by every
 * policy using the same key over the same window, each checking it against
 * its own number (APIM: one counter per key value).
 */
static pt_bytes counter_key(const struct pt_api *api, pt_call *call, const char *kind, pt_bytes key,
                            const struct level *v, int64_t calls, int64_t period, int64_t origin)
{
    size_t n = key.len + 160 + (v && v->api ? strlen(v->api) : 0) + (v && v->op ? strlen(v->op) : 0);
    char *b = api->alloc(call, n);
    int k = snprintf(b, n, "%s|%lld|%lld|%lld|%s|%s|", kind, (long long)calls, (long long)period, (long long)origin,
                     v && v->api ? v->api : "", v && v->op ? v->op : "");
    memcpy(b + k, key.data, key.len);
    return (pt_bytes){b, (size_t)k + key.len};
}

/* A look at a counter with a limit: the ms until one more call fits under it. */
static int64_t wait_for_room(const struct pt_api *api, struct pt_counter_op *op, int64_t limit)
{
    op->add = 0;
    op->limit = limit;
    api->counter(op);
    return op->retry_ms > 0 ? op->retry_ms : 1000;
}

/* Adds `n` to a counter whatever its limit (a refused call counts too, as in
   APIM) and returns the count; with `limit`, *retry_ms says when the next
   call would fit again. */
static int64_t count_call(const struct pt_api *api, struct pt_counter_op *op, int64_t n, int64_t limit,
                          int64_t *retry_ms)
{
    op->add = n;
    op->limit = 0;
    api->counter(op);
    int64_t count = op->count;
    if (retry_ms && count > limit)
        *retry_ms = wait_for_room(api, op, limit);
    return count;
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
    api->at_response(call, add_headers, h);
    char msg[96];
    snprintf(msg, sizeof(msg), "Rate limit is exceeded. Try again in %lld seconds.", secs);
    return api->fail(call, 429, "RateLimitExceeded", msg);
}

/* Success: remaining and total on the response and in variables. */
static void report_remaining(const struct pt_api *api, pt_call *call, const struct limit *l, long long remaining,
                             long long total)
{
    set_var(api, call, l->remain_var, remaining);
    if ((l->remain_hdr && *l->remain_hdr) || (l->total_hdr && *l->total_hdr)) {
        struct resp_headers *h = api->alloc(call, sizeof(*h));
        h->names[0] = l->remain_hdr;
        h->values[0] = remaining;
        h->names[1] = l->total_hdr;
        h->values[1] = total;
        api->at_response(call, add_headers, h);
    }
}

static pt_status rate_limit_run(const struct pt_api *api, pt_call *call, void *inst)
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
        if (!v->calls || !level_applies(v, api_id, op_id))
            continue;
        struct pt_counter_op op = {.key = counter_key(api, call, "rl", sub, v, v->calls, v->period_s, 0),
                                   .kind = PT_COUNTER_SLIDING,
                                   .window_ms = v->period_s * 1000};
        int64_t wait = 0;
        int64_t count = count_call(api, &op, 1, v->calls, &wait);
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

/* rate-limit-by-key's and quota-by-key's increment decided on the response */
struct deferred {
    const struct limit *l;
    struct pt_counter_op op;
};

static void count_if(pt_call *call, void *arg)
{
    struct deferred *d = arg;
    int yes = 1;
    if (d->l->cond && A->eval_bool(call, d->l->cond, &yes) != 0)
        yes = 0;
    if (yes && d->op.add)
        A->counter(&d->op);
}

/* Adds `n` to the counter once the response is known, if l's increment
   condition holds then (for a refused call too). */
static void count_on_response(const struct pt_api *api, pt_call *call, const struct limit *l,
                              const struct pt_counter_op *op, int64_t n)
{
    struct deferred *d = api->alloc(call, sizeof(*d));
    d->l = l;
    d->op = *op;
    d->op.add = n;
    d->op.limit = 0;
    api->at_response(call, count_if, d);
}

static pt_status rate_limit_key_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct limit *l = inst;
    pt_bytes key;
    int64_t calls, period, count;
    int st;
    if ((st = eval(api, call, l->key, &key)) || (st = eval_int(api, call, l->calls_v, 1, &calls)) ||
        (st = eval_int(api, call, l->period_v, 1, &period)) || (st = eval_int(api, call, l->count_v, 1, &count)))
        return (pt_status)st;
    if (period < 1 || period > 300)
        return api->fail(call, 500, "ExpressionValueEvaluationFailure", "renewal-period must be from 1 to 300");
    if (count < 0)
        count = 0;
    struct pt_counter_op op = {.key = counter_key(api, call, "rlk", key, NULL, 0, period, 0),
                               .kind = PT_COUNTER_SLIDING,
                               .window_ms = period * 1000};
    int64_t retry = 0, now;
    if (l->cond) {
        /* the call counts once its response is known, if the condition holds then (refused or not) */
        now = count_call(api, &op, 0, calls, NULL);
        count_on_response(api, call, l, &op, count);
        if (now + count > calls) { /* `count` more fit when one more fits under calls - count + 1 */
            int64_t room = calls - count + 1 > 0 ? calls - count + 1 : 1;
            return refuse_rate(api, call, l, wait_for_room(api, &op, room));
        }
        report_remaining(api, call, l, (long long)(calls - now - count), (long long)calls);
        return PT_OK;
    }
    now = count_call(api, &op, count, calls, &retry);
    if (now > calls)
        return refuse_rate(api, call, l, retry);
    report_remaining(api, call, l, (long long)(calls - now), (long long)calls);
    return PT_OK;
}

/* ================================================================ quotas */

static int quota_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct limit *l = api->compile_alloc(c, sizeof(*l));
    l->quota = true;
    int64_t calls = api->attr_int(c, "calls", 0), kb = api->attr_int(c, "bandwidth", 0);
    if (!calls && !kb) {
        api->compile_error(c, NULL, "needs calls, bandwidth or both");
        return -1;
    }
    if (compile_levels(api, c, l, calls, api->attr_int(c, "renewal-period", 0), kb))
        return -1;
    *instance = l;
    return 0;
}

static int quota_key_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct limit *l = api->compile_alloc(c, sizeof(*l));
    l->quota = l->by_key = true;
    int64_t calls = api->attr_int(c, "calls", 0), kb = api->attr_int(c, "bandwidth", 0);
    if (!calls && !kb) {
        api->compile_error(c, NULL, "needs calls, bandwidth or both");
        return -1;
    }
    l->levels = api->compile_alloc(c, sizeof(*l->levels));
    add_level(l, NULL, NULL, calls, api->attr_int(c, "renewal-period", 0), kb);
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

static pt_status refuse_quota(const struct pt_api *api, pt_call *call, int64_t retry_ms, bool bandwidth)
{
    long long s = (retry_ms + 999) / 1000;
    if (s < 1)
        s = 1;
    struct resp_headers *h = api->alloc(call, sizeof(*h));
    h->names[0] = "Retry-After";
    h->values[0] = s;
    api->at_response(call, add_headers, h);
    char msg[128];
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
        A->counter(op);
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
    api->var_set(call, m, LIT("1"));
    return false;
}

/*
 * One quota level.  The call is counted (a refused one too, as in APIM)
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
        *b = (struct pt_counter_op){.key = counter_key(api, call, k, key, v, by_key ? 0 : v->kb, v->period_s, origin),
                                    .kind = PT_COUNTER_FIXED, .persist = 1, .window_ms = window,
                                    .origin_ms = origin, .limit = v->kb};
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
        struct pt_counter_op op = {.key = counter_key(api, call, k, key, v, by_key ? 0 : v->calls, v->period_s, origin),
                                   .kind = PT_COUNTER_FIXED, .persist = 1, .window_ms = window, .origin_ms = origin};
        int64_t count, wait = 0;
        if (by_key && counted_once(api, call, op.key))
            count = count_call(api, &op, 0, v->calls, &wait); /* in the count already */
        else if (defer) {
            count = count_call(api, &op, 0, v->calls, NULL) + 1;
            count_on_response(api, call, defer, &op, 1);
            if (count > v->calls)
                wait = wait_for_room(api, &op, v->calls);
        } else
            count = count_call(api, &op, 1, v->calls, &wait);
        if (count > v->calls) {
            over = 1;
            *retry_ms = wait;
        }
    }
    return over;
}

static pt_status quota_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct limit *l = inst;
    pt_bytes sub = api->fact(call, PT_FACT_SUBSCRIPTION_ID);
    if (!sub.len)
        return PT_OK; /* quotas count per subscription */
    /* periods start at the subscription's creation */
    int64_t origin = 0;
    pt_bytes start = api->fact(call, PT_FACT_SUBSCRIPTION_START);
    if (start.len) {
        char *s = dup_bytes(api, call, start);
        if (s && !iso_ms(s, &origin))
            origin = 0;
    }
    pt_bytes api_id = api->fact(call, PT_FACT_API_ID), op_id = api->fact(call, PT_FACT_OPERATION_ID);
    int over = 0;
    int64_t retry = 0;
    for (int i = 0; i < l->nlevels; i++) {
        const struct level *v = &l->levels[i];
        if (!level_applies(v, api_id, op_id))
            continue;
        int64_t wait = 0;
        int o = quota_level(api, call, "q", sub, v, origin, false, NULL, &wait); /* every level counts the call */
        if (o && (!over || wait > retry)) {
            over = o;
            retry = wait;
        }
    }
    return over ? refuse_quota(api, call, retry, over == 2) : PT_OK;
}

static pt_status quota_key_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct limit *l = inst;
    pt_bytes key;
    int st = eval(api, call, l->key, &key);
    if (st)
        return (pt_status)st;
    int64_t retry = 0;
    int over = quota_level(api, call, "qk", key, &l->levels[0], l->origin_ms, true, l->cond ? l : NULL, &retry);
    return over ? refuse_quota(api, call, retry, over == 2) : PT_OK;
}

/* ===================================================== limit-concurrency */

static const struct pt_attr_def concurrency_attrs[] = {
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

static int concurrency_compile(const struct pt_api *api, pt_compile *c, void **instance)
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
    A->counter(op);
}

static pt_status concurrency_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct concurrency *x = inst;
    pt_bytes key;
    int st = eval(api, call, x->key, &key);
    if (st)
        return (pt_status)st;
    struct pt_counter_op *op = api->alloc(call, sizeof(*op));
    *op = (struct pt_counter_op){.key = counter_key(api, call, "lc", key, NULL, x->max, 0, 0),
                                 .kind = PT_COUNTER_GAUGE, .window_ms = 1, .limit = x->max, .add = 1};
    if (!api->counter(op))
        return api->fail(call, 429, "ConcurrencyLimitExceeded", "Too many concurrent requests. Try again later.");
    /* the slot is held until the request is over (its statements run after this) */
    api->at_end(call, release_slot, op);
    return PT_OK;
}

/* ============================================================= ip-filter */


static const struct pt_attr_def range_attrs[] = {
    {"from", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "first address"},
    {"to", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "last address"},
    {0},
};

static const struct pt_attr_def ip_filter_attrs[] = {
    {"action", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "allow: only these callers; forbid: everyone but these (an expression may choose per request)"},
    {"address", PT_ATTR_STRING, PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0, "an IPv4 or IPv6 address"},
    {"address-range", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, range_attrs, 0, 0, "from and to, inclusive"},
    {0},
};

struct ip16 {
    unsigned char b[16];
};

struct ip_filter {
    bool allow;
    pt_value *action; /* an expression choosing allow or forbid; NULL when literal */
    struct ip16 *lo, *hi;
    int n;
};

/* Any address as 16 bytes (IPv4 mapped into ::ffff:0:0/96). */
static bool parse_ip(const char *s, struct ip16 *out)
{
    unsigned char v4[4];
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, s, v4) == 1) {
        out->b[10] = out->b[11] = 0xff;
        memcpy(out->b + 12, v4, 4);
        return true;
    }
    return inet_pton(AF_INET6, s, out->b) == 1;
}

static int ip_filter_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct ip_filter *f = api->compile_alloc(c, sizeof(*f));
    const char *action = api->attr_literal(c, "action");
    if (action) {
        if (strcmp(action, "allow") && strcmp(action, "forbid")) {
            api->compile_error(c, "action", "'%s' is neither allow nor forbid", action);
            return -1;
        }
        f->allow = !strcmp(action, "allow");
    } else
        f->action = api->attr_value(c, "action");
    pt_value **addrs;
    pt_element **ranges;
    int na = api->attr_values(c, "address", &addrs), nr = api->attr_elements(c, "address-range", &ranges);
    if (na + nr == 0) {
        api->compile_error(c, NULL, "needs at least one address or address-range");
        return -1;
    }
    f->lo = api->compile_alloc(c, sizeof(*f->lo) * (size_t)(na + nr));
    f->hi = api->compile_alloc(c, sizeof(*f->hi) * (size_t)(na + nr));
    for (int i = 0; i < na; i++) {
        pt_bytes b;
        char s[64];
        if (api->eval(NULL, addrs[i], &b) != 0 || b.len >= sizeof(s)) {
            api->compile_error(c, "address", "addresses are written out, not expressions");
            return -1;
        }
        memcpy(s, b.data, b.len);
        s[b.len] = '\0';
        if (!parse_ip(s, &f->lo[f->n])) {
            api->compile_error(c, "address", "'%s' is not an IPv4 or IPv6 address", s);
            return -1;
        }
        f->hi[f->n] = f->lo[f->n];
        f->n++;
    }
    for (int i = 0; i < nr; i++) {
        const char *from = api->elem_literal(ranges[i], "from"), *to = api->elem_literal(ranges[i], "to");
        if (!from || !parse_ip(from, &f->lo[f->n]) || !to || !parse_ip(to, &f->hi[f->n]) ||
            memcmp(f->lo[f->n].b, f->hi[f->n].b, 16) > 0) {
            api->compile_error(c, "address-range", "'%s'..'%s' is not a range of addresses (from <= to)",
                               from ? from : "", to ? to : "");
            return -1;
        }
        f->n++;
    }
    *instance = f;
    return 0;
}

static pt_status ip_filter_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct ip_filter *f = inst;
    bool allow = f->allow;
    if (f->action) {
        pt_bytes a;
        int st = eval(api, call, f->action, &a);
        if (st)
            return (pt_status)st;
        if (!bytes_is(a, "allow") && !bytes_is(a, "forbid"))
            return api->fail(call, 500, "ExpressionValueEvaluationFailure",
                             "ip-filter: action must be allow or forbid");
        allow = bytes_is(a, "allow");
    }
    pt_bytes ipb = api->fact(call, PT_FACT_CLIENT_IP);
    char *ip = dup_bytes(api, call, ipb);
    struct ip16 a;
    if (!ip || !parse_ip(ip, &a))
        return api->fail(call, 403, "FailedToParseCallerIP", "Failed to parse the caller IP address. Access denied.");
    bool hit = false;
    for (int i = 0; i < f->n && !hit; i++)
        hit = memcmp(a.b, f->lo[i].b, 16) >= 0 && memcmp(a.b, f->hi[i].b, 16) <= 0;
    if (allow && !hit)
        return api->fail(call, 403, "CallerIpNotAllowed", "Caller IP address is not allowed. Access denied.");
    if (!allow && hit)
        return api->fail(call, 403, "CallerIpBlocked", "Caller IP address is blocked. Access denied.");
    return PT_OK;
}

/* ========================================================== check-header */

static const struct pt_attr_def check_header_attrs[] = {
    {"name", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "the request header to check"},
    {"failed-check-httpcode", PT_ATTR_INT, PT_ATTR_REQUIRED, NULL, NULL, NULL, 200, 599, "status when the check fails"},
    {"failed-check-error-message", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0,
     "message of the error body"},
    {"ignore-case", PT_ATTR_BOOL, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "compare values case-insensitively"},
    {"value", PT_ATTR_STRING, PT_ATTR_MULTI | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "allowed values (any one passes); none = the header must only be present"},
    {0},
};

struct check_header {
    const char *name;
    int code;
    const char *msg;
    bool icase;
    pt_value **values;
    int nvalues;
};

static int check_header_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct check_header *x = api->compile_alloc(c, sizeof(*x));
    x->name = api->attr_literal(c, "name");
    x->code = (int)api->attr_int(c, "failed-check-httpcode", 401);
    x->msg = api->attr_literal(c, "failed-check-error-message");
    x->icase = api->attr_bool(c, "ignore-case", 0);
    x->nvalues = api->attr_values(c, "value", &x->values);
    if (!x->name || !*x->name) {
        api->compile_error(c, "name", "a header name is required (not an expression)");
        return -1;
    }
    *instance = x;
    return 0;
}

static pt_status check_header_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct check_header *x = inst;
    pt_bytes got[16];
    int n = api->header_get(call, PT_MSG_REQUEST, (pt_bytes){x->name, strlen(x->name)}, got, 16);
    if (n <= 0)
        return api->fail(call, x->code, "HeaderNotFound", x->msg ? x->msg : "");
    if (!x->nvalues)
        return PT_OK;
    for (int i = 0; i < x->nvalues; i++) {
        pt_bytes want;
        int st = eval(api, call, x->values[i], &want);
        if (st)
            return (pt_status)st;
        for (int k = 0; k < n && k < 16; k++)
            if (x->icase ? bytes_ieq(got[k], want) : (got[k].len == want.len && !memcmp(got[k].data, want.data, want.len)))
                return PT_OK;
    }
    return api->fail(call, x->code, "HeaderValueNotAllowed", x->msg ? x->msg : "");
}

/* ================================================================== cors */

static const struct pt_attr_def origins_attrs[] = {
    {"origin", PT_ATTR_STRING, PT_ATTR_MULTI | PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0,
     "an origin (scheme://host[:port]) or *"},
    {0},
};
static const struct pt_attr_def methods_attrs[] = {
    {"method", PT_ATTR_STRING, PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0, "a method or *"},
    {"preflight-result-max-age", PT_ATTR_INT, 0, "0", NULL, NULL, 0, 86400, "seconds a browser may cache the preflight"},
    {0},
};
static const struct pt_attr_def headers_attrs[] = {
    {"header", PT_ATTR_STRING, PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0, "a header name or *"},
    {0},
};

static const struct pt_attr_def cors_attrs[] = {
    {"allow-credentials", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0,
     "Access-Control-Allow-Credentials: true (the origin is then echoed, never *)"},
    {"terminate-unmatched-request", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0,
     "answer a request from an origin that does not match with an empty 200 instead of serving it"},
    {"allowed-origins", PT_ATTR_ELEMENT, PT_ATTR_REQUIRED, NULL, NULL, origins_attrs, 0, 0, "who may call"},
    {"allowed-methods", PT_ATTR_ELEMENT, 0, NULL, NULL, methods_attrs, 0, 0, "methods (default GET, POST)"},
    {"allowed-headers", PT_ATTR_ELEMENT, 0, NULL, NULL, headers_attrs, 0, 0, "request headers a caller may send"},
    {"expose-headers", PT_ATTR_ELEMENT, 0, NULL, NULL, headers_attrs, 0, 0, "response headers a browser may read"},
    {0},
};

struct strs {
    const char **v;
    int n;
    bool any;
};

struct cors {
    bool credentials, terminate;
    struct strs origins, methods, headers, expose;
    int64_t max_age;
};

static void read_strs(const struct pt_api *api, pt_compile *c, pt_element *e, const char *name, struct strs *out)
{
    pt_value **vals;
    int n = e ? api->elem_values(e, name, &vals) : 0;
    out->v = api->compile_alloc(c, sizeof(char *) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        pt_bytes b;
        if (!api->value_is_literal(vals[i]) || api->eval(NULL, vals[i], &b) != 0)
            continue;
        char *s = api->compile_alloc(c, b.len + 1);
        memcpy(s, b.data, b.len);
        out->v[out->n++] = s;
        if (!strcmp(s, "*"))
            out->any = true;
    }
}

static int cors_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct cors *x = api->compile_alloc(c, sizeof(*x));
    x->credentials = api->attr_bool(c, "allow-credentials", 0);
    x->terminate = api->attr_bool(c, "terminate-unmatched-request", 0);
    pt_element **e;
    if (api->attr_elements(c, "allowed-origins", &e) > 0)
        read_strs(api, c, e[0], "origin", &x->origins);
    if (api->attr_elements(c, "allowed-methods", &e) > 0) {
        read_strs(api, c, e[0], "method", &x->methods);
        const char *ma = api->elem_literal(e[0], "preflight-result-max-age");
        x->max_age = ma ? atoll(ma) : 0;
    }
    if (!x->methods.n) {
        static const char *defaults[] = {"GET", "POST"};
        x->methods.v = defaults;
        x->methods.n = 2;
    }
    if (api->attr_elements(c, "allowed-headers", &e) > 0)
        read_strs(api, c, e[0], "header", &x->headers);
    if (api->attr_elements(c, "expose-headers", &e) > 0)
        read_strs(api, c, e[0], "header", &x->expose);
    if (x->credentials && x->origins.any) {
        api->compile_error(c, "allowed-origins", "allow-credentials cannot be used with the origin *");
        return -1;
    }
    if (!x->origins.n) {
        api->compile_error(c, "allowed-origins", "at least one origin is required");
        return -1;
    }
    *instance = x;
    return 0;
}

/* scheme://host[:port] with the default port made explicit, lower-cased */
static void norm_origin(const char *in, size_t n, char *out, size_t size)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < size; i++)
        out[k++] = (char)(in[i] >= 'A' && in[i] <= 'Z' ? in[i] + 32 : in[i]);
    out[k] = '\0';
    while (k && out[k - 1] == '/')
        out[--k] = '\0';
    const char *host = strstr(out, "://");
    if (!host)
        return;
    host += 3;
    const char *colon = strrchr(host, ':'), *rb = strrchr(host, ']');
    if (colon && (!rb || colon > rb))
        return; /* has a port */
    const char *port = !strncmp(out, "https://", 8) ? ":443" : !strncmp(out, "http://", 7) ? ":80" : "";
    snprintf(out + k, size - k, "%s", port);
}

static bool origin_allowed(const struct cors *x, pt_bytes origin)
{
    if (x->origins.any)
        return true;
    char o[512], w[512];
    norm_origin(origin.data, origin.len, o, sizeof(o));
    for (int i = 0; i < x->origins.n; i++) {
        norm_origin(x->origins.v[i], strlen(x->origins.v[i]), w, sizeof(w));
        if (!strcmp(o, w))
            return true;
    }
    return false;
}

static bool in_list(const struct strs *s, pt_bytes v, bool icase)
{
    if (s->any)
        return true;
    for (int i = 0; i < s->n; i++)
        if (v.len == strlen(s->v[i]) && (icase ? !strncasecmp(v.data, s->v[i], v.len) : !memcmp(v.data, s->v[i], v.len)))
            return true;
    return false;
}

static char *join(const struct pt_api *api, pt_call *call, const struct strs *s)
{
    size_t n = 1;
    for (int i = 0; i < s->n; i++)
        n += strlen(s->v[i]) + 2;
    char *b = api->alloc(call, n);
    size_t k = 0;
    for (int i = 0; i < s->n; i++)
        k += (size_t)snprintf(b + k, n - k, "%s%s", i ? ", " : "", s->v[i]);
    return b;
}

struct cors_resp {
    const struct cors *x;
    char *origin;
};

static void cors_headers(pt_call *call, void *arg)
{
    struct cors_resp *r = arg;
    set_response_header(A, call, "Access-Control-Allow-Origin",
                        r->x->origins.any && !r->x->credentials ? "*" : r->origin);
    if (r->x->credentials)
        set_response_header(A, call, "Access-Control-Allow-Credentials", "true");
    if (r->x->expose.n)
        set_response_header(A, call, "Access-Control-Expose-Headers", join(A, call, &r->x->expose));
    if (!r->x->origins.any || r->x->credentials) {
        pt_bytes v = LIT("Origin");
        A->header_set(call, PT_MSG_RESPONSE, LIT("Vary"), &v, 1, PT_HEADER_APPEND);
    }
}

static pt_status empty_200(const struct pt_api *api, pt_call *call)
{
    api->set_status(call, 200, LIT("OK"));
    api->body_set(call, PT_MSG_RESPONSE, (pt_bytes){"", 0});
    return api->respond(call);
}

/*
 * Preflight (OPTIONS with Access-Control-Request-Method) is answered here: a
 * matching one gets 200 with the Allow headers, an unmatched one 200
 * without them when terminate-unmatched-request is true, else the next
 * cors statement is asked; on a preflight the core runs only the cors
 * statements and answers an empty 200 itself when none answered (see
 * pt_pipeline.c), so the backend never sees one.  A simple request that
 * does not match goes on without CORS headers, or gets an empty 200 when
 * terminate-unmatched-request is true.  The attribute's default is false,
 * as APIM's policy reference table says.
 */
static pt_status cors_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct cors *x = inst;
    pt_bytes origin;
    if (api->header_get(call, PT_MSG_REQUEST, LIT("Origin"), &origin, 1) <= 0)
        return PT_OK; /* not a cross-origin call */
    pt_bytes want_method;
    bool preflight = bytes_is(api->method(call), "OPTIONS") &&
                     api->header_get(call, PT_MSG_REQUEST, LIT("Access-Control-Request-Method"), &want_method, 1) > 0;
    bool ok = origin_allowed(x, origin);
    struct cors_resp *r = api->alloc(call, sizeof(*r));
    r->x = x;
    r->origin = dup_bytes(api, call, origin);
    if (preflight) {
        if (ok && !in_list(&x->methods, want_method, false))
            ok = false;
        pt_bytes want_headers = {"", 0};
        api->header_get(call, PT_MSG_REQUEST, LIT("Access-Control-Request-Headers"), &want_headers, 1);
        /* every requested header must be allowed */
        for (size_t i = 0; ok && i < want_headers.len;) {
            size_t j = i;
            while (j < want_headers.len && want_headers.data[j] != ',')
                j++;
            pt_bytes h = {want_headers.data + i, j - i};
            while (h.len && (h.data[0] == ' ' || h.data[0] == '\t')) {
                h.data++;
                h.len--;
            }
            while (h.len && (h.data[h.len - 1] == ' ' || h.data[h.len - 1] == '\t'))
                h.len--;
            if (h.len && !in_list(&x->headers, h, true))
                ok = false;
            i = j + 1;
        }
        if (!ok)
            return x->terminate ? empty_200(api, call) : PT_OK;
        api->set_status(call, 200, LIT("OK"));
        api->body_set(call, PT_MSG_RESPONSE, (pt_bytes){"", 0});
        cors_headers(call, r);
        set_response_header(api, call, "Access-Control-Allow-Methods",
                            x->methods.any ? dup_bytes(api, call, want_method) : join(api, call, &x->methods));
        if (want_headers.len)
            set_response_header(api, call, "Access-Control-Allow-Headers", dup_bytes(api, call, want_headers));
        if (x->max_age > 0) {
            char age[24];
            snprintf(age, sizeof(age), "%lld", (long long)x->max_age);
            set_response_header(api, call, "Access-Control-Max-Age", age);
        }
        return api->respond(call);
    }
    if (!ok) {
        pt_bytes m = api->method(call);
        if (x->terminate && (bytes_is(m, "GET") || bytes_is(m, "HEAD")))
            return empty_200(api, call);
        return PT_OK;
    }
    api->at_response(call, cors_headers, r);
    return PT_OK;
}

/* =========================================== validate-client-certificate */

static const struct pt_attr_def identity_attrs[] = {
    {"thumbprint", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "SHA-1 of the certificate, hex"},
    {"serial-number", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "serial number, hex"},
    {"common-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "the subject's CN"},
    {"subject", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "the whole subject (CN=x, O=y)"},
    {"dns-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "a DNS subjectAltName"},
    {"issuer-subject", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "the issuer's subject"},
    {0},
};
static const struct pt_attr_def identities_attrs[] = {
    {"identity", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, identity_attrs, 0, 0,
     "every attribute given must match"},
    {0},
};
static const struct pt_attr_def client_cert_attrs[] = {
    {"validate-revocation", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0,
     "revocation lists are not consulted: true is refused"},
    {"validate-trust", PT_ATTR_BOOL, 0, "true", NULL, NULL, 0, 0, "the certificate chains to the listener's clientCa"},
    {"validate-not-before", PT_ATTR_BOOL, 0, "true", NULL, NULL, 0, 0, "refuse a certificate not valid yet"},
    {"validate-not-after", PT_ATTR_BOOL, 0, "true", NULL, NULL, 0, 0, "refuse an expired certificate"},
    {"ignore-error", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0,
     "on failure go on (the reason is in the variable clientCertificateError)"},
    {"identities", PT_ATTR_ELEMENT, 0, NULL, NULL, identities_attrs, 0, 0,
     "the certificate must match one of these"},
    {0},
};

struct identity {
    const char *v[6];
};

struct client_cert {
    bool trust, not_before, not_after, ignore;
    struct identity *ids;
    int nids;
};

static const char *const identity_names[6] = {"thumbprint", "serial-number", "common-name", "subject",
                                              "dns-name",   "issuer-subject"};

static int client_cert_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct client_cert *x = api->compile_alloc(c, sizeof(*x));
    if (api->attr_bool(c, "validate-revocation", 0)) {
        api->compile_error(c, "validate-revocation", "revocation is not checked by this gateway: set it to false");
        return -1;
    }
    x->trust = api->attr_bool(c, "validate-trust", 1);
    x->not_before = api->attr_bool(c, "validate-not-before", 1);
    x->not_after = api->attr_bool(c, "validate-not-after", 1);
    x->ignore = api->attr_bool(c, "ignore-error", 0);
    pt_element **e, **ids;
    if (api->attr_elements(c, "identities", &e) > 0) {
        int n = api->elem_elements(e[0], "identity", &ids);
        x->ids = api->compile_alloc(c, sizeof(*x->ids) * (size_t)(n ? n : 1));
        for (int i = 0; i < n; i++) {
            bool any = false;
            for (int k = 0; k < 6; k++) {
                x->ids[x->nids].v[k] = api->elem_literal(ids[i], identity_names[k]);
                any |= x->ids[x->nids].v[k] != NULL;
            }
            if (!any) {
                api->compile_error(c, "identities", "an identity needs at least one attribute");
                return -1;
            }
            x->nids++;
        }
    }
    *instance = x;
    return 0;
}

static void hex_of(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02X", d[i]);
}

static bool hex_eq(const char *a, const char *b)
{
    /* case-insensitive, colons and spaces ignored */
    for (;;) {
        while (*a == ':' || *a == ' ')
            a++;
        while (*b == ':' || *b == ' ')
            b++;
        if (!*a || !*b)
            return !*a && !*b;
        char x = (char)(*a >= 'a' && *a <= 'z' ? *a - 32 : *a), y = (char)(*b >= 'a' && *b <= 'z' ? *b - 32 : *b);
        if (x != y)
            return false;
        a++;
        b++;
    }
}

static bool identity_matches(const struct identity *id, X509 *x)
{
    char buf[1024];
    if (id->v[0]) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        X509_digest(x, EVP_sha1(), md, &n);
        hex_of(md, n, buf);
        if (!hex_eq(id->v[0], buf))
            return false;
    }
    if (id->v[1]) {
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(x), NULL);
        char *h = bn ? BN_bn2hex(bn) : NULL;
        bool ok = h && hex_eq(id->v[1], h);
        OPENSSL_free(h);
        BN_free(bn);
        if (!ok)
            return false;
    }
    if (id->v[2]) {
        if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, sizeof(buf)) < 0 ||
            strcmp(buf, id->v[2]))
            return false;
    }
    for (int k = 3; k <= 5; k += 2) { /* subject, issuer-subject */
        if (!id->v[k])
            continue;
        BIO *b = BIO_new(BIO_s_mem());
        X509_NAME_print_ex(b, k == 3 ? X509_get_subject_name(x) : X509_get_issuer_name(x), 0,
                           XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
        char *t;
        long n = BIO_get_mem_data(b, &t);
        snprintf(buf, sizeof(buf), "%.*s", (int)n, t);
        BIO_free(b);
        /* compare as "CN=a, O=b" or "CN=a,O=b", whatever spacing */
        char want[1024], got[1024];
        size_t wi = 0, gi = 0;
        for (const char *p = id->v[k]; *p && wi + 1 < sizeof(want); p++)
            if (*p != ' ')
                want[wi++] = *p;
        for (const char *p = buf; *p && gi + 1 < sizeof(got); p++)
            if (*p != ' ')
                got[gi++] = *p;
        want[wi] = got[gi] = '\0';
        if (strcasecmp(want, got))
            return false;
    }
    if (id->v[4]) {
        bool found = false;
        GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
        for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans) && !found; i++) {
            GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
            if (g->type == GEN_DNS) {
                const char *d = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
                found = d && !strcasecmp(d, id->v[4]);
            }
        }
        GENERAL_NAMES_free(sans);
        if (!found)
            return false;
    }
    return true;
}

static pt_status cert_fail(const struct pt_api *api, pt_call *call, const struct client_cert *x, const char *reason,
                           const char *msg)
{
    if (x->ignore) {
        api->var_set(call, LIT("clientCertificateError"), (pt_bytes){reason, strlen(reason)});
        return PT_OK;
    }
    return api->fail(call, 401, reason, msg);
}

static pt_status client_cert_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct client_cert *x = inst;
    pt_bytes pem = api->fact(call, PT_FACT_CLIENT_CERT);
    if (!pem.len)
        return cert_fail(api, call, x, "ClientCertificateMissing", "A client certificate is required.");
    BIO *b = BIO_new_mem_buf(pem.data, (int)pem.len);
    X509 *cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!cert)
        return cert_fail(api, call, x, "ClientCertificateInvalid", "The client certificate cannot be read.");
    pt_status r = PT_OK;
    pt_bytes verify = api->fact(call, PT_FACT_CLIENT_CERT_VERIFY);
    if (x->not_before && X509_cmp_current_time(X509_get0_notBefore(cert)) > 0)
        r = cert_fail(api, call, x, "ClientCertificateNotYetValid", "The client certificate is not valid yet.");
    else if (x->not_after && X509_cmp_current_time(X509_get0_notAfter(cert)) < 0)
        r = cert_fail(api, call, x, "ClientCertificateExpired", "The client certificate has expired.");
    else if (x->trust && !bytes_is(verify, "ok") &&
             !(verify.len && (strstr(dup_bytes(api, call, verify), "not yet valid") ||
                              strstr(dup_bytes(api, call, verify), "has expired")) &&
               (!x->not_before || !x->not_after)))
        r = cert_fail(api, call, x, "ClientCertificateNotTrusted", "The client certificate is not trusted.");
    else if (x->nids) {
        bool any = false;
        for (int i = 0; i < x->nids && !any; i++)
            any = identity_matches(&x->ids[i], cert);
        if (!any)
            r = cert_fail(api, call, x, "ClientCertificateIdentityNotAllowed",
                          "The client certificate matches no allowed identity.");
    }
    X509_free(cert);
    ERR_clear_error();
    return r;
}

/* ============================================ authentication-certificate */

static const struct pt_attr_def auth_cert_attrs[] = {
    {"certificate", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0,
     "PEM file with the client certificate (and its chain), relative to the configuration's folder"},
    {"key", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "PEM file with its private key"},
    {0},
};

static int auth_cert_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    const char *cert = api->attr_literal(c, "certificate"), *key = api->attr_literal(c, "key");
    if (!cert || !key) {
        api->compile_error(c, NULL, "certificate and key are file names, not expressions");
        return -1;
    }
    void *h = api->tls_client_cert(c, cert, key);
    if (!h)
        return -1;
    *instance = h;
    return 0;
}

static pt_status auth_cert_run(const struct pt_api *api, pt_call *call, void *inst)
{
    api->use_client_cert(call, inst);
    return PT_OK;
}

/* ================================================= authentication-basic */

static const struct pt_attr_def basic_attrs[] = {
    {"username", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0, "user name"},
    {"password", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0, "password"},
    {0},
};

struct basic {
    pt_value *user, *pass;
};

static int basic_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct basic *x = api->compile_alloc(c, sizeof(*x));
    x->user = api->attr_value(c, "username");
    x->pass = api->attr_value(c, "password");
    *instance = x;
    return 0;
}

static pt_status basic_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct basic *x = inst;
    pt_bytes u, p;
    int st;
    if ((st = eval(api, call, x->user, &u)) || (st = eval(api, call, x->pass, &p)))
        return (pt_status)st;
    size_t n = u.len + 1 + p.len;
    unsigned char *raw = api->alloc(call, n + 1);
    memcpy(raw, u.data, u.len);
    raw[u.len] = ':';
    memcpy(raw + u.len + 1, p.data, p.len);
    char *out = api->alloc(call, 6 + 4 * ((n + 2) / 3) + 1);
    memcpy(out, "Basic ", 6);
    size_t k = 6 + (size_t)EVP_EncodeBlock((unsigned char *)out + 6, raw, (int)n);
    pt_bytes v = {out, k};
    if (api->header_set(call, PT_MSG_REQUEST, LIT("Authorization"), &v, 1, PT_HEADER_OVERRIDE) != 0)
        return PT_ERROR;
    return PT_OK;
}

/* ========================================================== validate-jwt */

/*
 * A small verifier on OpenSSL EVP: compact JWS only (an encrypted token is
 * refused), HS256/384/512 with symmetric keys, RS256/384/512 and PS256
 * with RSA keys (n/e or a PEM certificate or public key), ES256/384 with
 * EC keys (PEM).  "alg: none" is always refused, and a key is only ever
 * used with its own family: an HS token is never checked with the bytes of
 * an RSA public key (key-type confusion).
 */

static const char *const claim_match[] = {"all", "any", NULL};

static const struct pt_attr_def jwt_key_attrs[] = {
    {"value", PT_ATTR_STRING, PT_ATTR_SCALAR, NULL, NULL, NULL, 0, 0, "a symmetric key, base64"},
    {"id", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "matched with the token's kid"},
    {"n", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "RSA modulus, base64url"},
    {"e", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "RSA exponent, base64url"},
    {"certificate", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "a PEM certificate or public key (RSA or EC)"},
    {0},
};
static const struct pt_attr_def jwt_keys_attrs[] = {
    {"key", PT_ATTR_ELEMENT, PT_ATTR_MULTI | PT_ATTR_SCALAR, NULL, NULL, jwt_key_attrs, 0, 0, "a signing key"},
    {0},
};
static const struct pt_attr_def jwt_oidc_attrs[] = {
    {"url", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_SCALAR, NULL, NULL, NULL, 0, 0,
     "the OpenID Connect metadata (.../.well-known/openid-configuration)"},
    {0},
};
static const struct pt_attr_def jwt_aud_attrs[] = {
    {"audience", PT_ATTR_STRING, PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0, "an accepted aud"},
    {0},
};
static const struct pt_attr_def jwt_iss_attrs[] = {
    {"issuer", PT_ATTR_STRING, PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0, "an accepted iss"},
    {0},
};
static const struct pt_attr_def jwt_claim_attrs[] = {
    {"name", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "the claim"},
    {"match", PT_ATTR_ENUM, 0, "all", claim_match, NULL, 0, 0, "all values must be there, or any one"},
    {"separator", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "splits a string claim into values (\" \" for scope)"},
    {"value", PT_ATTR_STRING, PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0, "accepted values; none = present"},
    {0},
};
static const struct pt_attr_def jwt_claims_attrs[] = {
    {"claim", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, jwt_claim_attrs, 0, 0, "a required claim"},
    {0},
};

static const struct pt_attr_def jwt_attrs[] = {
    {"header-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "the header carrying the token (default Authorization)"},
    {"query-parameter-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "the query parameter carrying the token"},
    {"token-value", PT_ATTR_STRING, PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0, "the token itself (an expression)"},
    {"require-scheme", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "the scheme before the token (Bearer)"},
    {"failed-validation-httpcode", PT_ATTR_INT, 0, "401", NULL, NULL, 200, 599, "status of a refusal"},
    {"failed-validation-error-message", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "message of every refusal (default: one per failure)"},
    {"require-expiration-time", PT_ATTR_BOOL, 0, "true", NULL, NULL, 0, 0, "refuse a token without exp"},
    {"require-signed-tokens", PT_ATTR_BOOL, 0, "true", NULL, NULL, 0, 0,
     "refuse unsigned tokens (alg none is refused regardless)"},
    {"clock-skew", PT_ATTR_STRING, 0, "0", NULL, NULL, 0, 0,
     "tolerance on exp and nbf: seconds, or a timespan such as 00:05:00 (at most a day)"},
    {"output-token-variable-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "variable receiving the token's claims (JSON) once valid"},
    {"openid-config", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, jwt_oidc_attrs, 0, 0,
     "an identity provider whose published keys (jwks_uri) sign tokens"},
    {"issuer-signing-keys", PT_ATTR_ELEMENT, 0, NULL, NULL, jwt_keys_attrs, 0, 0, "the keys tokens may be signed with"},
    {"audiences", PT_ATTR_ELEMENT, 0, NULL, NULL, jwt_aud_attrs, 0, 0, "accepted audiences (any one)"},
    {"issuers", PT_ATTR_ELEMENT, 0, NULL, NULL, jwt_iss_attrs, 0, 0, "accepted issuers (any one)"},
    {"required-claims", PT_ATTR_ELEMENT, 0, NULL, NULL, jwt_claims_attrs, 0, 0, "claims the token must have"},
    {0},
};

struct jwt_key {
    const char *id;
    unsigned char *secret; /* HS */
    size_t secret_len;
    EVP_PKEY *pkey;        /* RS/PS/ES */
};

struct jwt_claim {
    const char *name, *sep;
    bool any;
    const char **values;
    int nvalues;
};

struct oidc;

struct jwt {
    const char *header, *query, *scheme, *msg, *out_var;
    pt_value *token;
    int code;
    bool require_exp, require_signed;
    int64_t skew;
    struct jwt_key *keys;
    int nkeys;
    const char **auds, **isss;
    int naud, niss;
    struct jwt_claim *claims;
    int nclaims;
    struct oidc **oidc;
    int noidc;
};

/* base64 or base64url, padding optional (OpenSSL's decoder after mapping
   to the standard alphabet); NULL when malformed. */
static unsigned char *b64_decode(const char *s, size_t n, bool url, size_t *outlen)
{
    (void)url; /* both alphabets are accepted */
    while (n && s[n - 1] == '=')
        n--;
    size_t padded = (n + 3) / 4 * 4;
    char *std = malloc(padded + 1);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        std[i] = c == '-' ? '+' : c == '_' ? '/' : c;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("+/-_", c))) {
            free(std);
            return NULL;
        }
    }
    for (size_t i = n; i < padded; i++)
        std[i] = '=';
    std[padded] = '\0';
    if (n % 4 == 1) {
        free(std);
        return NULL;
    }
    unsigned char *out = malloc(padded / 4 * 3 + 1);
    int len = padded ? EVP_DecodeBlock(out, (const unsigned char *)std, (int)padded) : 0;
    free(std);
    if (len < 0) {
        free(out);
        return NULL;
    }
    *outlen = (size_t)len - (padded - n); /* EVP_DecodeBlock counts the padding as zero bytes */
    return out;
}

static EVP_PKEY *rsa_from_ne(const char *n64, const char *e64)
{
    size_t nl, el;
    unsigned char *n = b64_decode(n64, strlen(n64), true, &nl), *e = b64_decode(e64, strlen(e64), true, &el);
    EVP_PKEY *pkey = NULL;
    if (n && e) {
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
        OSSL_PARAM_BLD_push_BN(bld, "n", bn);
        OSSL_PARAM_BLD_push_BN(bld, "e", be);
        OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
        if (ctx && params && EVP_PKEY_fromdata_init(ctx) == 1)
            EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
        EVP_PKEY_CTX_free(ctx);
        OSSL_PARAM_free(params);
        OSSL_PARAM_BLD_free(bld);
        BN_free(bn);
        BN_free(be);
    }
    free(n);
    free(e);
    return pkey;
}

static EVP_PKEY *key_from_pem(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
    if (!k) {
        BIO_free(b);
        b = BIO_new_mem_buf(pem, -1);
        X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (x) {
            k = X509_get_pubkey(x);
            X509_free(x);
        }
    }
    BIO_free(b);
    ERR_clear_error();
    return k;
}

/* ----------------------------------------------------------- openid-config */

/*
 * Identity providers' signing keys, fetched by a background thread per
 * provider (a slow one delays nobody else): the metadata (openid-config
 * url) gives jwks_uri, whose keys are kept for an hour; a token with an
 * unknown kid asks for a refetch, at most once per five minutes; a provider
 * that fails is retried every 10 s until it answers.  Requests never wait
 * on the network except those arriving before the provider's first fetch
 * has finished, which poll (without blocking their worker) for up to 5 s;
 * once a fetch has failed, requests are refused at once until one works.
 * Fetches go through the gateway's outbound client (api->http_get): the
 * system's CA store (or SSL_CERT_FILE), the provider's name checked, 10 s
 * for a whole fetch, documents of at most 1 MiB, no redirects.  Shutting
 * down cancels a fetch at once (a byte on oidc_cancel).  A set keeps at most
 * OIDC_MAX_KEYS signing keys, each of a sensible size, and a token is checked
 * against at most JWT_KEYS_TRIED of them, so neither a provider nor a token
 * can make one request expensive.  `portico -t` fetches nothing.
 */

#define OIDC_FETCH_MS 10000
#define OIDC_MAX_DOC (1024 * 1024)
#define OIDC_MAX_KEYS 64
#define JWT_KEYS_TRIED 16

struct keyset {
    int refs; /* under oidc_mu */
    int n;
    struct jwt_key *keys;
};

struct oidc {
    char *url;
    struct keyset *ks;
    int64_t fetched_ms, attempt_ms, refetch_ms;
    bool want;
    bool tried;    /* a fetch has finished (worked or not) */
    bool running;  /* its thread */
    pthread_t thread;
    struct oidc *next;
};

static pthread_mutex_t oidc_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t oidc_cv = PTHREAD_COND_INITIALIZER;
static struct oidc *oidcs;
static bool oidc_stop;
static int oidc_cancel[2] = {-1, -1}; /* a byte in [1]: fetches stop (shutdown) */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void keyset_unref(struct keyset *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&oidc_mu);
    bool last = --k->refs == 0;
    pthread_mutex_unlock(&oidc_mu);
    if (!last)
        return;
    for (int i = 0; i < k->n; i++) {
        free(k->keys[i].secret);
        free((char *)k->keys[i].id);
        EVP_PKEY_free(k->keys[i].pkey);
    }
    free(k->keys);
    free(k);
}

/* GET url through the gateway's outbound client: a malloc'd body, or NULL
   with err.  `what` names the document in messages. */
static char *fetch_doc(const char *url, const char *what, char *err, size_t errlen)
{
    struct pt_http_get_opts o = {OIDC_FETCH_MS, OIDC_MAX_DOC, "application/json", oidc_cancel[0]};
    char *body = NULL;
    size_t len = 0;
    char why[400] = "";
    int st = A->http_get(url, &o, &body, &len, why, sizeof(why));
    if (st == PT_HTTP_GET_TOO_LARGE) {
        snprintf(err, errlen, "the %s at %s is larger than %d bytes", what, url, OIDC_MAX_DOC);
        return NULL;
    }
    if (st < 0) {
        snprintf(err, errlen, "%s: %s", url, why);
        return NULL;
    }
    if (st != 200) {
        snprintf(err, errlen, "%s answered %d for the %s", url, st, what);
        free(body);
        return NULL;
    }
    if (memchr(body, '\0', len)) {
        snprintf(err, errlen, "the %s at %s holds a NUL byte", what, url);
        free(body);
        return NULL;
    }
    return body;
}

/* Keys nobody would sign with are refused when loaded, so that checking a
   token stays cheap: RSA moduli of 2048 to 8192 bits with a public exponent
   of at most 32 bits, EC on P-256 / P-384 / P-521. */
static const char *key_unreasonable(EVP_PKEY *k)
{
    if (EVP_PKEY_is_a(k, "RSA")) {
        int bits = EVP_PKEY_get_bits(k);
        if (bits < 2048 || bits > 8192)
            return "an RSA key must have 2048 to 8192 bits";
        BIGNUM *e = NULL;
        if (!EVP_PKEY_get_bn_param(k, "e", &e))
            return "an RSA key without a public exponent";
        int ebits = BN_num_bits(e);
        bool odd = BN_is_odd(e);
        BN_free(e);
        if (ebits > 32 || ebits < 2 || !odd)
            return "an RSA public exponent must be odd and at most 32 bits";
        return NULL;
    }
    if (EVP_PKEY_is_a(k, "EC")) {
        int bits = EVP_PKEY_get_bits(k);
        if (bits != 256 && bits != 384 && bits != 521)
            return "an EC key must be on P-256, P-384 or P-521";
        return NULL;
    }
    return "only RSA and EC keys are used";
}

static EVP_PKEY *ec_from_xy(const char *crv, const char *x64, const char *y64)
{
    size_t xl, yl;
    unsigned char *x = b64_decode(x64, strlen(x64), true, &xl), *y = b64_decode(y64, strlen(y64), true, &yl);
    const char *group = !strcmp(crv, "P-256") ? "prime256v1" : !strcmp(crv, "P-384") ? "secp384r1" : NULL;
    EVP_PKEY *pkey = NULL;
    if (x && y && group && xl == yl && xl <= 66) {
        unsigned char pub[1 + 2 * 66];
        pub[0] = 4;
        memcpy(pub + 1, x, xl);
        memcpy(pub + 1 + xl, y, yl);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        OSSL_PARAM_BLD_push_utf8_string(bld, "group", group, 0);
        OSSL_PARAM_BLD_push_octet_string(bld, "pub", pub, 1 + 2 * xl);
        OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        if (ctx && params && EVP_PKEY_fromdata_init(ctx) == 1)
            EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
        EVP_PKEY_CTX_free(ctx);
        OSSL_PARAM_free(params);
        OSSL_PARAM_BLD_free(bld);
    }
    free(x);
    free(y);
    return pkey;
}

/* metadata -> jwks_uri -> keys */
static struct keyset *oidc_fetch(const char *url, char *err, size_t errlen)
{
    char *meta = fetch_doc(url, "metadata", err, errlen);
    if (!meta)
        return NULL;
    json_t *m = json_loads(meta, JSON_REJECT_DUPLICATES, NULL);
    free(meta);
    const char *jwks_uri = json_string_value(json_object_get(m, "jwks_uri"));
    char *jw = jwks_uri ? fetch_doc(jwks_uri, "key set", err, errlen) : NULL;
    if (!jwks_uri)
        snprintf(err, errlen, "the metadata at %s %s", url, m ? "has no jwks_uri" : "is not JSON");
    json_decref(m);
    if (!jw)
        return NULL;
    json_t *set = json_loads(jw, 0, NULL);
    free(jw);
    json_t *arr = json_object_get(set, "keys");
    if (!json_is_array(arr)) {
        snprintf(err, errlen, "the key set %s", set ? "has no \"keys\" array" : "is not JSON");
        json_decref(set);
        return NULL;
    }
    struct keyset *ks = calloc(1, sizeof(*ks));
    ks->refs = 1;
    ks->keys = calloc(OIDC_MAX_KEYS + 1, sizeof(*ks->keys));
    size_t i;
    json_t *k;
    int skipped = 0;
    const char *why = NULL;
    json_array_foreach(arr, i, k)
    {
        const char *kty = json_string_value(json_object_get(k, "kty"));
        const char *use = json_string_value(json_object_get(k, "use"));
        if (!kty || (use && strcmp(use, "sig")))
            continue;
        if (ks->n == OIDC_MAX_KEYS) {
            skipped++;
            why = "only the first 64 signing keys are kept";
            continue;
        }
        struct jwt_key *key = &ks->keys[ks->n];
        memset(key, 0, sizeof(*key));
        const char *kid = json_string_value(json_object_get(k, "kid"));
        if (!strcmp(kty, "RSA") && json_is_string(json_object_get(k, "n")) && json_is_string(json_object_get(k, "e")))
            key->pkey = rsa_from_ne(json_string_value(json_object_get(k, "n")), json_string_value(json_object_get(k, "e")));
        else if (!strcmp(kty, "EC") && json_is_string(json_object_get(k, "x")) && json_is_string(json_object_get(k, "y")))
            key->pkey = ec_from_xy(json_string_value(json_object_get(k, "crv")) ?: "",
                                   json_string_value(json_object_get(k, "x")),
                                   json_string_value(json_object_get(k, "y")));
        if (!key->pkey)
            continue;
        const char *bad = key_unreasonable(key->pkey);
        if (bad) {
            EVP_PKEY_free(key->pkey);
            key->pkey = NULL;
            skipped++;
            why = bad;
            continue;
        }
        key->id = kid ? strdup(kid) : NULL;
        ks->n++;
    }
    json_decref(set);
    if (skipped && A)
        A->log(PT_LOG_LEVEL_WARN, "validate-jwt: the key set of %s: %d key%s left out (%s)", url, skipped,
               skipped == 1 ? "" : "s", why);
    return ks;
}

/* One provider's thread: fetches when its keys are missing, stale or asked for. */
static void *oidc_main(void *arg)
{
    struct oidc *o = arg; /* its url never changes: read without the lock */
    pthread_mutex_lock(&oidc_mu);
    while (!oidc_stop) {
        int64_t now = now_ms();
        bool stale = o->ks && now - o->fetched_ms > 3600 * 1000;
        bool missing = !o->ks && (!o->attempt_ms || now - o->attempt_ms > 10 * 1000);
        bool asked = o->want && (!o->refetch_ms || now - o->refetch_ms > 300 * 1000);
        if (!stale && !missing && !asked) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&oidc_cv, &oidc_mu, &ts);
            continue;
        }
        o->attempt_ms = now;
        if (o->want) {
            o->refetch_ms = now;
            o->want = false;
        }
        pthread_mutex_unlock(&oidc_mu);
        char err[600] = "";
        struct keyset *ks = oidc_fetch(o->url, err, sizeof(err));
        if (!ks && A)
            A->log(PT_LOG_LEVEL_WARN, "validate-jwt: openid-config %s: %s", o->url, err);
        pthread_mutex_lock(&oidc_mu);
        o->tried = true;
        if (ks) {
            struct keyset *old = o->ks;
            o->ks = ks;
            o->fetched_ms = now_ms();
            if (old) {
                pthread_mutex_unlock(&oidc_mu);
                keyset_unref(old);
                pthread_mutex_lock(&oidc_mu);
            }
        }
    }
    pthread_mutex_unlock(&oidc_mu);
    return NULL;
}

/* The provider entry for url (one per URL for the plugin's life). */
static struct oidc *oidc_get(const char *url)
{
    pthread_mutex_lock(&oidc_mu);
    struct oidc *o = oidcs;
    while (o && strcmp(o->url, url))
        o = o->next;
    if (!o) {
        o = calloc(1, sizeof(*o));
        o->url = strdup(url);
        o->next = oidcs;
        oidcs = o;
        oidc_stop = false;
        if (oidc_cancel[0] < 0 && pipe2(oidc_cancel, O_CLOEXEC | O_NONBLOCK) != 0)
            oidc_cancel[0] = oidc_cancel[1] = -1;
        /* checking a configuration contacts nobody */
        o->running = !A->checking_only() && pthread_create(&o->thread, NULL, oidc_main, o) == 0;
        if (!o->running)
            o->tried = true; /* no thread: nobody will fetch, so nobody waits */
    }
    pthread_mutex_unlock(&oidc_mu);
    return o;
}

static struct keyset *oidc_keys(struct oidc *o, bool *never)
{
    pthread_mutex_lock(&oidc_mu);
    struct keyset *ks = o->ks;
    if (ks)
        ks->refs++;
    *never = !ks && !o->tried; /* before the first fetch has finished: worth waiting for */
    pthread_mutex_unlock(&oidc_mu);
    return ks;
}

static void oidc_want(struct oidc *o)
{
    pthread_mutex_lock(&oidc_mu);
    o->want = true;
    pthread_cond_broadcast(&oidc_cv);
    pthread_mutex_unlock(&oidc_mu);
}

static void oidc_fini(void)
{
    pthread_mutex_lock(&oidc_mu);
    oidc_stop = true;
    pthread_cond_broadcast(&oidc_cv);
    pthread_mutex_unlock(&oidc_mu);
    if (oidc_cancel[1] >= 0 && write(oidc_cancel[1], "x", 1) < 0) {
        /* the pipe is non-blocking and holds a byte already */
    }
    for (struct oidc *o = oidcs; o; o = o->next)
        if (o->running)
            pthread_join(o->thread, NULL);
    for (int i = 0; i < 2; i++)
        if (oidc_cancel[i] >= 0) {
            close(oidc_cancel[i]);
            oidc_cancel[i] = -1;
        }
    while (oidcs) {
        struct oidc *o = oidcs;
        oidcs = o->next;
        keyset_unref(o->ks);
        free(o->url);
        free(o);
    }
}


static const char **literal_list(const struct pt_api *api, pt_compile *c, pt_element *e, const char *name, int *n)
{
    pt_value **vals;
    int cnt = e ? api->elem_values(e, name, &vals) : 0;
    const char **out = api->compile_alloc(c, sizeof(char *) * (size_t)(cnt ? cnt : 1));
    *n = 0;
    for (int i = 0; i < cnt; i++) {
        pt_bytes b;
        if (api->eval(NULL, vals[i], &b) != 0)
            continue;
        char *s = api->compile_alloc(c, b.len + 1);
        memcpy(s, b.data, b.len);
        out[(*n)++] = s;
    }
    return out;
}

static void jwt_free(void *inst)
{
    struct jwt *j = inst;
    for (int i = 0; j && i < j->nkeys; i++) {
        free(j->keys[i].secret);
        EVP_PKEY_free(j->keys[i].pkey);
    }
}

/* "90" (seconds) or APIM's timespan "[d.]hh:mm:ss"; at most a day. */
static bool parse_timespan(const char *s, int64_t *out)
{
    long long d = 0, h, m, sec;
    int n = 0;
    if (!strchr(s, ':')) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || *end || v < 0 || v > 86400)
            return false;
        *out = v;
        return true;
    }
    if (strchr(s, '.') && strchr(s, '.') < strchr(s, ':')) {
        if (sscanf(s, "%lld.%lld:%lld:%lld%n", &d, &h, &m, &sec, &n) != 4)
            return false;
    } else if (sscanf(s, "%lld:%lld:%lld%n", &h, &m, &sec, &n) != 3)
        return false;
    if (s[n] || d < 0 || h < 0 || h > 23 || m < 0 || m > 59 || sec < 0 || sec > 59)
        return false;
    *out = d * 86400 + h * 3600 + m * 60 + sec;
    return *out <= 86400;
}

static int jwt_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct jwt *j = api->compile_alloc(c, sizeof(*j));
    j->header = api->attr_literal(c, "header-name");
    j->query = api->attr_literal(c, "query-parameter-name");
    j->token = api->attr_value(c, "token-value");
    j->scheme = api->attr_literal(c, "require-scheme");
    j->msg = api->attr_literal(c, "failed-validation-error-message");
    j->out_var = api->attr_literal(c, "output-token-variable-name");
    j->code = (int)api->attr_int(c, "failed-validation-httpcode", 401);
    j->require_exp = api->attr_bool(c, "require-expiration-time", 1);
    j->require_signed = api->attr_bool(c, "require-signed-tokens", 1);
    const char *skew = api->attr_literal(c, "clock-skew");
    if (skew && !parse_timespan(skew, &j->skew)) {
        api->compile_error(c, "clock-skew", "'%s' is neither seconds nor a timespan [d.]hh:mm:ss of at most a day",
                           skew);
        return -1;
    }
    if ((j->header != NULL) + (j->query != NULL) + (j->token != NULL) > 1) {
        api->compile_error(c, NULL, "give one of header-name, query-parameter-name and token-value");
        return -1;
    }
    if (!j->header && !j->query && !j->token)
        j->header = "Authorization";
    *instance = j;
    pt_element **e, **keys;
    int nk = 0;
    if (api->attr_elements(c, "issuer-signing-keys", &e) > 0)
        nk = api->elem_elements(e[0], "key", &keys);
    j->keys = api->compile_alloc(c, sizeof(*j->keys) * (size_t)(nk ? nk : 1));
    for (int i = 0; i < nk; i++) {
        struct jwt_key *k = &j->keys[j->nkeys++];
        k->id = api->elem_literal(keys[i], "id");
        const char *v = api->elem_literal(keys[i], "value"), *n = api->elem_literal(keys[i], "n"),
                   *ex = api->elem_literal(keys[i], "e"), *pem = api->elem_literal(keys[i], "certificate");
        if (v && *v) {
            k->secret = b64_decode(v, strlen(v), false, &k->secret_len);
            if (!k->secret || k->secret_len < 16) {
                api->compile_error(c, "issuer-signing-keys", "a symmetric key must be base64 of at least 16 bytes");
                return -1;
            }
        } else if (n && ex) {
            if (!(k->pkey = rsa_from_ne(n, ex))) {
                api->compile_error(c, "issuer-signing-keys", "the RSA key (n, e) cannot be read");
                return -1;
            }
        } else if (pem) {
            if (!(k->pkey = key_from_pem(pem))) {
                api->compile_error(c, "issuer-signing-keys", "the certificate or public key cannot be read (PEM)");
                return -1;
            }
        } else {
            api->compile_error(c, "issuer-signing-keys", "a key needs value, n and e, or certificate");
            return -1;
        }
        const char *bad = k->pkey ? key_unreasonable(k->pkey) : NULL;
        if (bad) {
            api->compile_error(c, "issuer-signing-keys", bad);
            return -1;
        }
    }
    pt_element **oc;
    int noc = api->attr_elements(c, "openid-config", &oc);
    j->oidc = api->compile_alloc(c, sizeof(*j->oidc) * (size_t)(noc ? noc : 1));
    for (int i = 0; i < noc; i++) {
        const char *url = api->elem_literal(oc[i], "url");
        if (!url || (strncmp(url, "https://", 8) && strncmp(url, "http://", 7))) {
            api->compile_error(c, "openid-config", "url must be an http(s) URL");
            return -1;
        }
        j->oidc[j->noidc++] = oidc_get(url);
    }
    if (api->attr_elements(c, "audiences", &e) > 0)
        j->auds = literal_list(api, c, e[0], "audience", &j->naud);
    if (api->attr_elements(c, "issuers", &e) > 0)
        j->isss = literal_list(api, c, e[0], "issuer", &j->niss);
    if (api->attr_elements(c, "required-claims", &e) > 0) {
        pt_element **cl;
        int ncl = api->elem_elements(e[0], "claim", &cl);
        j->claims = api->compile_alloc(c, sizeof(*j->claims) * (size_t)(ncl ? ncl : 1));
        for (int i = 0; i < ncl; i++) {
            struct jwt_claim *x = &j->claims[j->nclaims++];
            x->name = api->elem_literal(cl[i], "name");
            const char *m = api->elem_literal(cl[i], "match");
            x->any = m && !strcmp(m, "any");
            x->sep = api->elem_literal(cl[i], "separator");
            x->values = literal_list(api, c, cl[i], "value", &x->nvalues);
        }
    }
    return 0;
}

static pt_status jwt_refuse(const struct pt_api *api, pt_call *call, const struct jwt *j, const char *reason,
                            const char *msg)
{
    return api->fail(call, j->code, reason, j->msg && *j->msg ? j->msg : msg);
}

/* Does the signature verify with this key?  -1: the key is not of the alg's family. */
static int jwt_verify(const char *alg, const struct jwt_key *k, const unsigned char *data, size_t dlen,
                      const unsigned char *sig, size_t slen)
{
    const EVP_MD *md = NULL;
    int bits = atoi(alg + 2);
    md = bits == 256 ? EVP_sha256() : bits == 384 ? EVP_sha384() : bits == 512 ? EVP_sha512() : NULL;
    if (!md)
        return -1;
    if (!strncmp(alg, "HS", 2)) {
        if (!k->secret)
            return -1;
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int ml = 0;
        if (!HMAC(md, k->secret, (int)k->secret_len, data, dlen, mac, &ml))
            return 0;
        return ml == slen && CRYPTO_memcmp(mac, sig, ml) == 0;
    }
    if (!k->pkey)
        return -1;
    int type = EVP_PKEY_get_base_id(k->pkey);
    bool rsa = !strncmp(alg, "RS", 2) || !strncmp(alg, "PS", 2), ec = !strncmp(alg, "ES", 2);
    if ((rsa && type != EVP_PKEY_RSA) || (ec && type != EVP_PKEY_EC) || (!rsa && !ec))
        return -1;
    unsigned char *der = NULL;
    size_t derlen = 0;
    if (ec) {
        /* JWS carries r || s; EVP wants DER */
        size_t half = bits == 256 ? 32 : bits == 384 ? 48 : 66;
        if (slen != 2 * half)
            return 0;
        ECDSA_SIG *es = ECDSA_SIG_new();
        ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)half, NULL), BN_bin2bn(sig + half, (int)half, NULL));
        int l = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
        if (l <= 0)
            return 0;
        derlen = (size_t)l;
        sig = der;
        slen = derlen;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    int ok = EVP_DigestVerifyInit(ctx, &pctx, md, NULL, k->pkey) == 1;
    if (ok && !strncmp(alg, "PS", 2))
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
    ok = ok && EVP_DigestVerify(ctx, sig, slen, data, dlen) == 1;
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    ERR_clear_error();
    return ok;
}

static bool json_has_value(json_t *v, const char *want, const char *sep)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!sep || !*sep)
            return !strcmp(s, want);
        size_t wl = strlen(want), sl = strlen(sep);
        for (const char *p = s;;) {
            const char *q = strstr(p, sep);
            size_t len = q ? (size_t)(q - p) : strlen(p);
            if (len == wl && !memcmp(p, want, wl))
                return true;
            if (!q)
                return false;
            p = q + sl;
        }
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            if (json_has_value(x, want, sep))
                return true;
        }
        return false;
    }
    if (json_is_boolean(v))
        return !strcmp(want, json_is_true(v) ? "true" : "false");
    if (json_is_integer(v)) {
        char b[32];
        snprintf(b, sizeof(b), "%lld", (long long)json_integer_value(v));
        return !strcmp(b, want);
    }
    return false;
}

struct jwt_wait {
    int64_t deadline;
    const struct jwt *j;
};

static pt_status jwt_run(const struct pt_api *api, pt_call *call, void *inst);

/* The poll timer: run the validation again, and resume unless it waits on. */
static void jwt_poll(pt_call *call, void *arg)
{
    struct jwt_wait *w = arg;
    pt_status st = jwt_run(A, call, (void *)w->j);
    if (st != PT_AGAIN)
        A->resume(call, st);
}

static pt_status jwt_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct jwt *j = inst;
    pt_bytes tok = {"", 0};
    int st;
    if (j->token) {
        if ((st = eval(api, call, j->token, &tok)))
            return (pt_status)st;
    } else if (j->query) {
        if (api->query_param(call, (pt_bytes){j->query, strlen(j->query)}, &tok) != 0)
            tok = (pt_bytes){"", 0};
    } else if (api->header_get(call, PT_MSG_REQUEST, (pt_bytes){j->header, strlen(j->header)}, &tok, 1) <= 0)
        tok = (pt_bytes){"", 0};
    if (j->header && tok.len) {
        const char *scheme = j->scheme ? j->scheme : "Bearer";
        size_t sl = strlen(scheme);
        if (tok.len > sl + 1 && !strncasecmp(tok.data, scheme, sl) && tok.data[sl] == ' ') {
            tok.data += sl + 1;
            tok.len -= sl + 1;
        } else if (j->scheme && !strcasecmp(j->header, "Authorization"))
            tok.len = 0; /* the scheme is required (APIM: of the Authorization header only) */
    }
    while (tok.len && tok.data[0] == ' ') {
        tok.data++;
        tok.len--;
    }
    if (!tok.len)
        return jwt_refuse(api, call, j, "TokenNotPresent", "JWT not present.");
    const char *d1 = memchr(tok.data, '.', tok.len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', tok.len - (size_t)(d1 + 1 - tok.data)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', tok.len - (size_t)(d2 + 1 - tok.data)))
        return jwt_refuse(api, call, j, "JwtInvalid", "JWT is not a signed compact token.");
    size_t hl, pl, sl;
    unsigned char *h = b64_decode(tok.data, (size_t)(d1 - tok.data), true, &hl);
    unsigned char *pb = b64_decode(d1 + 1, (size_t)(d2 - d1 - 1), true, &pl);
    unsigned char *sig = b64_decode(d2 + 1, tok.len - (size_t)(d2 + 1 - tok.data), true, &sl);
    /* a member named twice is refused (RFC 7519 section 4: parsers must not pick one) */
    json_t *hdr = h ? json_loadb((const char *)h, hl, JSON_REJECT_DUPLICATES, NULL) : NULL;
    json_t *claims = pb ? json_loadb((const char *)pb, pl, JSON_REJECT_DUPLICATES, NULL) : NULL;
    pt_status result = PT_OK;
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    if (!json_is_object(hdr) || !json_is_object(claims) || !sig || !alg) {
        result = jwt_refuse(api, call, j, "JwtInvalid", "JWT is malformed.");
        goto out;
    }
    if (json_object_get(hdr, "crit")) {
        /* RFC 7515 section 4.1.11: extensions marked critical must be understood; none are */
        result = jwt_refuse(api, call, j, "JwtInvalid", "JWT header lists critical extensions that are not supported.");
        goto out;
    }
    if (!strcmp(alg, "none") || !sl) {
        result = jwt_refuse(api, call, j, "TokenSignatureInvalid", "JWT is not signed.");
        goto out;
    }
    /* the signature: keys with the token's kid first, then keys without an id;
       inline keys, then the providers' */
    const char *kid = json_string_value(json_object_get(hdr, "kid"));
    int tried = 0, valid = 0;
    struct keyset *sets[9] = {0};
    int nsets = 0;
    bool waiting = false;
    for (int i = 0; i < j->noidc && nsets < 8; i++) {
        bool never;
        struct keyset *ks = oidc_keys(j->oidc[i], &never);
        if (ks)
            sets[nsets++] = ks;
        else if (never)
            waiting = true;
    }
    for (int pass = 0; pass < 2 && !valid; pass++)
        for (int si = -1; si < nsets && !valid; si++) {
            const struct jwt_key *keys = si < 0 ? j->keys : sets[si]->keys;
            int nk = si < 0 ? j->nkeys : sets[si]->n;
            for (int i = 0; i < nk && !valid; i++) {
                const struct jwt_key *k = &keys[i];
                bool match = kid && k->id && !strcmp(kid, k->id);
                if (pass == 0 ? !match : (k->id && kid))
                    continue;
                if (tried == JWT_KEYS_TRIED)
                    break; /* a token is checked against a bounded number of keys */
                int r = jwt_verify(alg, k, (const unsigned char *)tok.data, (size_t)(d2 - tok.data), sig, sl);
                if (r >= 0) {
                    tried++;
                    valid = r;
                }
            }
        }
    for (int i = 0; i < nsets; i++)
        keyset_unref(sets[i]);
    if (!valid && waiting) {
        /* a provider not fetched yet: poll for its keys without holding the worker */
        void **slot = api->call_state(call);
        struct jwt_wait *w = *slot;
        if (!w) {
            w = api->alloc(call, sizeof(*w));
            w->deadline = now_ms() + 5000;
            w->j = j;
            *slot = w;
        }
        if (now_ms() < w->deadline) {
            result = PT_AGAIN;
            api->timer_start(call, 50, jwt_poll, w);
            goto out;
        }
    }
    if (!valid && kid && tried == 0)
        for (int i = 0; i < j->noidc; i++)
            oidc_want(j->oidc[i]); /* an unknown kid: the provider may have rotated its keys */
    if (!valid) {
        result = tried ? jwt_refuse(api, call, j, "TokenSignatureInvalid", "JWT signature is invalid.")
                       : jwt_refuse(api, call, j, "TokenSignatureKeyNotFound", "JWT signature key not found.");
        goto out;
    }
    time_t now = time(NULL);
    json_t *exp = json_object_get(claims, "exp"), *nbf = json_object_get(claims, "nbf");
    if (!json_is_number(exp) && j->require_exp) {
        result = jwt_refuse(api, call, j, "JwtInvalid", "JWT is missing expiration time.");
        goto out;
    }
    if (json_is_number(exp) && (double)now > json_number_value(exp) + (double)j->skew) {
        result = jwt_refuse(api, call, j, "TokenExpired", "JWT has expired.");
        goto out;
    }
    if (json_is_number(nbf) && (double)now + (double)j->skew < json_number_value(nbf)) {
        result = jwt_refuse(api, call, j, "JwtInvalid", "JWT is not valid yet.");
        goto out;
    }
    if (j->naud) {
        bool ok = false;
        for (int i = 0; i < j->naud && !ok; i++)
            ok = json_has_value(json_object_get(claims, "aud"), j->auds[i], NULL);
        if (!ok) {
            result = jwt_refuse(api, call, j, "TokenAudienceNotAllowed", "JWT audience is not allowed.");
            goto out;
        }
    }
    if (j->niss) {
        bool ok = false;
        for (int i = 0; i < j->niss && !ok; i++)
            ok = json_has_value(json_object_get(claims, "iss"), j->isss[i], NULL);
        if (!ok) {
            result = jwt_refuse(api, call, j, "TokenIssuerNotAllowed", "JWT issuer is not allowed.");
            goto out;
        }
    }
    for (int i = 0; i < j->nclaims; i++) {
        const struct jwt_claim *x = &j->claims[i];
        json_t *v = json_object_get(claims, x->name);
        if (!v) {
            char m[300];
            snprintf(m, sizeof(m), "JWT claim '%s' is missing.", x->name);
            result = jwt_refuse(api, call, j, "TokenClaimNotFound", m);
            goto out;
        }
        int hits = 0;
        for (int k = 0; k < x->nvalues; k++)
            hits += json_has_value(v, x->values[k], x->sep);
        if (x->nvalues && (x->any ? hits == 0 : hits < x->nvalues)) {
            char m[300];
            snprintf(m, sizeof(m), "JWT claim '%s' has a value that is not allowed.", x->name);
            result = jwt_refuse(api, call, j, "TokenClaimValueNotAllowed", m);
            goto out;
        }
    }
    if (j->out_var && *j->out_var) {
        char *txt = json_dumps(claims, JSON_COMPACT);
        if (txt) {
            api->var_set(call, (pt_bytes){j->out_var, strlen(j->out_var)}, (pt_bytes){txt, strlen(txt)});
            free(txt);
        }
    }
out:
    json_decref(hdr);
    json_decref(claims);
    free(h);
    free(pb);
    free(sig);
    return result;
}

/* ============================================================ the family */

static const struct pt_policy_def policies[] = {
    {"rate-limit", PT_SECTION_INBOUND, PT_SCOPE_PRODUCT | PT_SCOPE_API | PT_SCOPE_OPERATION, PT_POLICY_ONCE_PER_SECTION, rate_limit_attrs,
     rate_limit_compile, rate_limit_run, NULL,
     "Limits calls per subscription in a sliding window (429 RateLimitExceeded with Retry-After); nested api and "
     "operation elements add limits of their own. Calls without a subscription are not limited."},
    {"rate-limit-by-key", PT_SECTION_INBOUND, PT_SCOPE_ALL, 0, rate_limit_key_attrs, rate_limit_key_compile,
     rate_limit_key_run, NULL,
     "Limits calls per key value in a sliding window; one counter per value shared by every policy that uses it. "
     "With increment-condition the call is counted once its response is known."},
    {"quota", PT_SECTION_INBOUND, PT_SCOPE_PRODUCT, PT_POLICY_ONCE_PER_SECTION, quota_attrs, quota_compile, quota_run,
     NULL,
     "Limits calls and/or kilobytes per subscription in fixed periods counted from the subscription's creation "
     "(403 QuotaExceeded with Retry-After). Counts survive restarts."},
    {"quota-by-key", PT_SECTION_INBOUND, PT_SCOPE_ALL, 0, quota_key_attrs, quota_key_compile, quota_key_run, NULL,
     "Limits calls and/or kilobytes per key value in fixed periods counted from first-period-start; a request "
     "counts once per key even if several policies use it."},
    {"limit-concurrency", PT_SECTION_ALL, PT_SCOPE_ALL, 0, concurrency_attrs, concurrency_compile, concurrency_run,
     NULL,
     "Runs its statements for at most max-count requests at once per key; the others get 429 at once. A request "
     "holds its slot until it is over."},
    {"ip-filter", PT_SECTION_INBOUND, PT_SCOPE_ALL, 0, ip_filter_attrs, ip_filter_compile, ip_filter_run, NULL,
     "Allows only, or forbids, callers by address and range, IPv4 and IPv6 (403 CallerIpNotAllowed / "
     "CallerIpBlocked). The caller is the peer, or the X-Forwarded-For client when the peer is in trustedProxies."},
    {"check-header", PT_SECTION_INBOUND, PT_SCOPE_ALL, 0, check_header_attrs, check_header_compile,
     check_header_run, NULL,
     "Requires a request header, optionally with one of the listed values (HeaderNotFound, "
     "HeaderValueNotAllowed with the configured status and message)."},
    {"cors", PT_SECTION_INBOUND, PT_SCOPE_ALL, PT_POLICY_ONCE_PER_SECTION | PT_POLICY_PREFLIGHT, cors_attrs, cors_compile, cors_run, NULL,
     "Cross-origin resource sharing: answers preflight requests itself (put it first in inbound) and adds the "
     "Access-Control headers to the responses of allowed origins."},
    {"validate-jwt", PT_SECTION_INBOUND, PT_SCOPE_ALL, 0, jwt_attrs, jwt_compile, jwt_run, jwt_free,
     "Validates a JSON Web Token from a header (Authorization by default), a query parameter or an expression: "
     "signature (HS256/384/512, RS256/384/512, PS256, ES256/384 with inline keys), exp, nbf, audiences, issuers, "
     "required claims. Refusals are 401 by default with reasons TokenNotPresent, JwtInvalid, TokenExpired, "
     "TokenSignatureInvalid, TokenSignatureKeyNotFound, TokenAudienceNotAllowed, TokenIssuerNotAllowed, "
     "TokenClaimNotFound, TokenClaimValueNotAllowed."},
    {"validate-client-certificate", PT_SECTION_INBOUND, PT_SCOPE_ALL, PT_POLICY_CLIENT_CERT, client_cert_attrs, client_cert_compile,
     client_cert_run, NULL,
     "Checks the TLS client certificate (listeners with clientCertificate: optional or required): trust against "
     "the listener's clientCa, dates, and identities (thumbprint, serial-number, common-name, subject, dns-name, "
     "issuer-subject). Refusals are 401: ClientCertificateMissing, ClientCertificateNotTrusted, "
     "ClientCertificateExpired, ClientCertificateNotYetValid, ClientCertificateIdentityNotAllowed."},
    {"authentication-certificate", PT_SECTION_INBOUND, PT_SCOPE_ALL, 0, auth_cert_attrs, auth_cert_compile,
     auth_cert_run, NULL,
     "Presents a client certificate (PEM files) to an https backend; connections made with it are pooled apart."},
    {"authentication-basic", PT_SECTION_INBOUND, PT_SCOPE_ALL, 0, basic_attrs, basic_compile, basic_run, NULL,
     "Sends the backend an Authorization: Basic header made of username and password."},
    {0},
};

static int access_init(const struct pt_api *api, const char **err)
{
    if (api->abi_minor < 3 || !api->counter || !api->tls_client_cert || !api->http_get) {
        *err = "needs a gateway with the 1.3 plugin interface";
        return -1;
    }
    A = api;
    return 0;
}

static void access_fini(void)
{
    oidc_fini();
}

PT_PLUGIN("access", "1.0.0", policies, access_init, access_fini);
