/*
 * pt_mgmt_reports -- the usage reports, APIM's shape (docs/analytics.md):
 *
 *   GET /management/reports/{byApi|byOperation|byProduct|bySubscription|
 *                            byUser|byTime|byRequest}
 *       ?$filter=timestamp ge 2026-01-01T00:00:00Z and timestamp le ...
 *                [and apiId eq 'x' and operationId eq 'y' and productId eq
 *                'p' and subscriptionId eq 's' and userId eq 'u']
 *       &interval=PT15M (byTime) &$orderby=callCountTotal desc &$top &$skip
 *
 * The lower timestamp bound is required (as in APIM); the upper defaults to
 * now.  Under /workspaces/{ws}/reports/ only the workspace's APIs count.
 * Ids come back as APIM writes them ("/apis/echo", "/apis/echo/operations/
 * get", "/products/p", "/subscriptions/s", "/users/u"); filters take either
 * form.  Names are the entities' current display names.  The work is
 * bounded: a range at most the retention plus a day, at most 10,000 byTime
 * intervals, at most 2,000,000 stored rows read.
 */
#include "conf/pt_store_analytics.h"
#include "mgmt/pt_mgmt_int.h"

#include <ctype.h>
#include <errno.h>
#include <event2/http.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_ROWS 2000000
#define MAX_INTERVALS 10000

/* ------------------------------------------------------------ pure pieces */

int64_t pt_mgmt_reports_interval(const char *text)
{
    const char *p = text;
    if (!p || *p++ != 'P' || !*p)
        return -1;
    int64_t total = 0;
    bool in_time = false, any = false;
    while (*p) {
        if (*p == 'T') {
            if (in_time || !p[1])
                return -1;
            in_time = true;
            p++;
            continue;
        }
        if (!isdigit((unsigned char)*p))
            return -1;
        int64_t v = 0;
        while (isdigit((unsigned char)*p)) {
            v = v * 10 + (*p++ - '0');
            if (v > 100000000)
                return -1;
        }
        int64_t unit;
        switch (*p++) {
        case 'W':
            unit = in_time ? -1 : 7 * 86400;
            break;
        case 'D':
            unit = in_time ? -1 : 86400;
            break;
        case 'H':
            unit = in_time ? 3600 : -1;
            break;
        case 'M': /* months before T: their length varies */
            unit = in_time ? 60 : -1;
            break;
        case 'S':
            unit = in_time ? 1 : -1;
            break;
        default:
            unit = -1;
        }
        if (unit < 0)
            return -1;
        total += v * unit;
        any = true;
    }
    if (!any || total <= 0 || total % 60 || total > 366LL * 86400)
        return -1;
    return total;
}

bool pt_mgmt_reports_datetime(const char *text, int64_t *ms)
{
    struct tm tm = {0};
    const char *p = text;
    int n = 0;
    if (sscanf(p, "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &n) != 3 || n != 10)
        return false;
    p += n;
    int64_t frac = 0, off = 0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (sscanf(p, "%2d:%2d%n", &tm.tm_hour, &tm.tm_min, &n) != 2 || n != 5)
            return false;
        p += n;
        if (*p == ':') {
            if (sscanf(p + 1, "%2d%n", &tm.tm_sec, &n) != 1 || n != 2)
                return false;
            p += 3;
            if (*p == '.') {
                p++;
                int digits = 0;
                while (isdigit((unsigned char)*p)) {
                    if (digits < 3)
                        frac = frac * 10 + (*p - '0');
                    digits++;
                    p++;
                }
                if (!digits)
                    return false;
                for (; digits < 3; digits++)
                    frac *= 10;
            }
        }
        if (*p == 'Z' || *p == 'z')
            p++;
        else if (*p == '+' || *p == '-') {
            int hh, mm;
            if (sscanf(p + 1, "%2d:%2d%n", &hh, &mm, &n) != 2 || n != 5 || hh > 23 || mm > 59)
                return false;
            off = (hh * 3600 + mm * 60) * (*p == '+' ? 1 : -1);
            p += 6;
        }
    }
    if (*p || tm.tm_year < 1970 || tm.tm_year > 9999 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
        tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return false;
    int mday = tm.tm_mday;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1 || tm.tm_mday != mday) /* 2026-02-30 normalizes into March */
        return false;
    *ms = ((int64_t)t - off) * 1000 + frac;
    return *ms >= 0;
}

/* ----------------------------------------------------------------- reports */

static const struct {
    const char *name;
    enum pt_store_an_by by;
} reports[] = {
    {"byApi", PT_AN_BY_API},
    {"byOperation", PT_AN_BY_OPERATION},
    {"byProduct", PT_AN_BY_PRODUCT},
    {"bySubscription", PT_AN_BY_SUBSCRIPTION},
    {"byUser", PT_AN_BY_USER},
    {"byTime", PT_AN_BY_TIME},
    {"byRequest", (enum pt_store_an_by) - 1},
};

/* The filters' fields: the request record's names, and the prefix of APIM's form of the id. */
static const struct {
    const char *field, *prefix;
} id_fields[] = {
    {"apiId", "/apis/"},         {"operationId", NULL}, /* "/apis/a/operations/o" or "o" */
    {"productId", "/products/"}, {"subscriptionId", "/subscriptions/"},
    {"userId", "/users/"},
};

struct report {
    struct mreq *m;
    enum pt_store_an_by by;
    bool by_request;
    struct pt_store_an_query q;
    char ids[5][256]; /* filter values, bare ids */
    char api_of_op[256];
    json_t *rows;
    json_t *names; /* "kind/parent/id" -> name, looked up once */
};

/* The id without APIM's prefix ("/apis/x" -> "x"). */
static const char *bare(const char *v, const char *prefix)
{
    size_t n = prefix ? strlen(prefix) : 0;
    return n && !strncasecmp(v, prefix, n) ? v + n : v;
}

/* Reads $filter into r->q; false after answering 400. */
static bool read_filter(struct report *r)
{
    struct mreq *m = r->m;
    const char *text = pt_mgmt_req_param(m, "$filter");
    struct pt_mgmt_filter_cond c[PT_MGMT_FILTER_MAX];
    int n = text ? pt_mgmt_filter_parse(text, c, PT_MGMT_FILTER_MAX) : 0;
    if (n < 0) {
        pt_mgmt_req_send_error(m, 400, "InvalidFilter",
                               "$filter '%s' is not understood (use timestamp ge 2026-01-01T00:00:00Z and "
                               "timestamp le ..., apiId eq 'x', productId eq 'p'..., joined by and)",
                               text);
        return false;
    }
    bool has_from = false, has_to = false;
    for (int i = 0; i < n; i++) {
        if (!strcmp(c[i].field, "timestamp")) {
            int64_t ms;
            bool lower = c[i].op[0] == 'g', upper = c[i].op[0] == 'l';
            if ((!lower && !upper) || !pt_mgmt_reports_datetime(c[i].value, &ms)) {
                pt_mgmt_req_send_error(m, 400, "InvalidFilter",
                                       "timestamp takes ge, gt, le or lt and an ISO 8601 date-time "
                                       "(2026-01-02T03:04:05Z), not %s '%s'",
                                       c[i].op, c[i].value);
                return false;
            }
            if (lower) {
                ms += c[i].op[1] == 't';
                r->q.from = has_from ? PT_MAX(r->q.from, ms) : ms;
                has_from = true;
            } else {
                ms -= c[i].op[1] == 't';
                r->q.to = has_to ? PT_MIN(r->q.to, ms) : ms;
                has_to = true;
            }
            continue;
        }
        int k = -1;
        for (int j = 0; j < (int)PT_ARRAY_LEN(id_fields); j++)
            if (!strcmp(c[i].field, id_fields[j].field))
                k = j;
        if (k < 0 || strcmp(c[i].op, "eq")) {
            pt_mgmt_req_send_error(m, 400, "InvalidFilter",
                                   "$filter: '%s %s' is not a condition reports take (timestamp ge/le, "
                                   "apiId, operationId, productId, subscriptionId, userId eq)",
                                   c[i].field, c[i].op);
            return false;
        }
        const char *v = c[i].value;
        if (k == 1) { /* an operation: "/apis/a/operations/o" also fixes the API */
            const char *ops = strstr(v, "/operations/");
            if (!strncasecmp(v, "/apis/", 6) && ops) {
                snprintf(r->api_of_op, sizeof(r->api_of_op), "%.*s", (int)(ops - v - 6), v + 6);
                r->q.api = r->api_of_op;
                v = ops + 12;
            }
        } else
            v = bare(v, id_fields[k].prefix);
        snprintf(r->ids[k], sizeof(r->ids[k]), "%s", v);
    }
    if (!has_from) {
        pt_mgmt_req_send_error(m, 400, "InvalidFilter",
                               "reports need a lower time bound: $filter=timestamp ge 2026-01-01T00:00:00Z "
                               "(and optionally timestamp le ...)");
        return false;
    }
    if (!has_to)
        r->q.to = (int64_t)pt_clock_wall_ms();
    const char **dst[] = {&r->q.api, &r->q.op, &r->q.product, &r->q.sub, &r->q.user};
    for (int k = 0; k < 5; k++)
        if (r->ids[k][0]) {
            if (k == 0 && r->q.api && strcmp(r->q.api, r->ids[0])) {
                r->q.to = r->q.from - 1; /* two different APIs: nothing matches */
            }
            *dst[k] = r->ids[k];
        }
    if (r->q.to < r->q.from) {
        r->q.to = r->q.from - 1; /* an empty range: an empty report */
        return true;
    }
    const struct pt_conf *f = pt_mgmt_req_hooks->file();
    int64_t max_ms = ((int64_t)(f ? f->analytics.retention : 90 * 86400) + 86400) * 1000;
    if (r->q.to - r->q.from > max_ms) {
        pt_mgmt_req_send_error(m, 400, "InvalidFilter",
                               "the time range is longer than the retention of the reports plus a day (%lld "
                               "days): narrow it",
                               (long long)(max_ms / 86400000));
        return false;
    }
    return true;
}

static void set_ms(json_t *o, const char *name, double us)
{
    json_object_set_new(o, name, json_real(us / 1000.0));
}

static void iso_time(char out[32], int64_t ms, bool frac)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    if (frac)
        snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
    else
        snprintf(out + n, 32 - n, "Z");
}

/* An entity's current name (its display name; a user's first and last
   names), or its id when it is gone. */
static const char *name_of(struct report *r, const char *kind, const char *parent, const char *id)
{
    char key[800];
    snprintf(key, sizeof(key), "%s/%s/%s", kind, parent, id);
    const char *have = json_string_value(json_object_get(r->names, key));
    if (have)
        return have;
    json_t *body = NULL;
    char name[600];
    snprintf(name, sizeof(name), "%s", id);
    /* at a workspace path, names only of that workspace's own entities: a workspace role may not read
       service-level users or another workspace's subscriptions (their ids are what the figures are) */
    const char *ws = r->m->ws;
    if (pt_store_get(pt_mgmt_req_store, kind, parent, id, &body, NULL) && body &&
        (!ws || !strcmp(json_string_value(json_object_get(body, "workspace")) ?: "", ws) ||
         !strcmp(kind, "operation"))) {
        const char *dn = json_string_value(json_object_get(body, "displayName"));
        const char *fn = json_string_value(json_object_get(body, "firstName"));
        const char *ln = json_string_value(json_object_get(body, "lastName"));
        if (dn && *dn)
            snprintf(name, sizeof(name), "%s", dn);
        else if ((fn && *fn) || (ln && *ln))
            snprintf(name, sizeof(name), "%s%s%s", fn ? fn : "", fn && *fn && ln && *ln ? " " : "",
                     ln ? ln : "");
    }
    json_decref(body);
    json_object_set_new(r->names, key, json_string(name));
    return json_string_value(json_object_get(r->names, key));
}

static void set_id(json_t *o, const char *field, const char *prefix, const char *id)
{
    if (!id || !*id)
        return;
    char v[600];
    snprintf(v, sizeof(v), "%s%s", prefix, id);
    json_object_set_new(o, field, json_string(v));
}

static void set_op_id(json_t *o, const char *api, const char *op)
{
    if (!op || !*op)
        return;
    char v[800];
    snprintf(v, sizeof(v), "/apis/%s/operations/%s", api, op);
    json_object_set_new(o, "operationId", json_string(v));
}

static void add_row(void *arg, const struct pt_store_an_row *row)
{
    struct report *r = arg;
    json_t *o = json_object();
    const struct pt_store_an_counts *c = &row->c;
    switch (r->by) {
    case PT_AN_BY_API:
        json_object_set_new(o, "name", json_string(name_of(r, "api", "", row->api)));
        set_id(o, "apiId", "/apis/", row->api);
        break;
    case PT_AN_BY_OPERATION:
        json_object_set_new(o, "name", json_string(name_of(r, "operation", row->api, row->op)));
        set_id(o, "apiId", "/apis/", row->api);
        set_op_id(o, row->api, row->op);
        break;
    case PT_AN_BY_PRODUCT:
        json_object_set_new(o, "name", json_string(name_of(r, "product", "", row->product)));
        set_id(o, "productId", "/products/", row->product);
        break;
    case PT_AN_BY_SUBSCRIPTION:
        json_object_set_new(o, "name", json_string(name_of(r, "subscription", "", row->sub)));
        set_id(o, "subscriptionId", "/subscriptions/", row->sub);
        set_id(o, "productId", "/products/", row->product);
        set_id(o, "userId", "/users/", row->user);
        break;
    case PT_AN_BY_USER:
        json_object_set_new(o, "name", json_string(name_of(r, "user", "", row->user)));
        set_id(o, "userId", "/users/", row->user);
        break;
    case PT_AN_BY_TIME: {
        char ts[32];
        iso_time(ts, row->ts * 1000, false);
        json_object_set_new(o, "timestamp", json_string(ts));
        json_object_set_new(o, "interval", json_string(pt_mgmt_req_param(r->m, "interval")));
        break;
    }
    }
    int64_t total = c->success + c->blocked + c->failed + c->other;
    json_object_set_new(o, "callCountSuccess", json_integer(c->success));
    json_object_set_new(o, "callCountBlocked", json_integer(c->blocked));
    json_object_set_new(o, "callCountFailed", json_integer(c->failed));
    json_object_set_new(o, "callCountOther", json_integer(c->other));
    json_object_set_new(o, "callCountTotal", json_integer(total));
    json_object_set_new(o, "bandwidth", json_integer(c->bandwidth));
    json_object_set_new(o, "cacheHitCount", json_integer(c->cache_hit));
    json_object_set_new(o, "cacheMissCount", json_integer(c->cache_miss));
    set_ms(o, "apiTimeAvg", total ? (double)c->api_sum / (double)total : 0);
    set_ms(o, "apiTimeMin", total ? (double)c->api_min : 0);
    set_ms(o, "apiTimeMax", total ? (double)c->api_max : 0);
    set_ms(o, "serviceTimeAvg", c->svc_n ? (double)c->svc_sum / (double)c->svc_n : 0);
    set_ms(o, "serviceTimeMin", c->svc_n ? (double)c->svc_min : 0);
    set_ms(o, "serviceTimeMax", c->svc_n ? (double)c->svc_max : 0);
    json_array_append_new(r->rows, o);
}

static void add_request(void *arg, const struct pt_store_an_request *q)
{
    struct report *r = arg;
    static const char *const cache[] = {"none", "hit", "miss"};
    json_t *o = json_object();
    set_id(o, "apiId", "/apis/", q->api);
    set_op_id(o, q->api, q->op);
    set_id(o, "productId", "/products/", q->product);
    set_id(o, "subscriptionId", "/subscriptions/", q->sub);
    set_id(o, "userId", "/users/", q->user);
    json_object_set_new(o, "method", json_string(q->method));
    json_object_set_new(o, "url", json_string(q->url));
    json_object_set_new(o, "ipAddress", json_string(q->ip));
    json_object_set_new(o, "responseCode", json_integer(q->status));
    if (q->backend_status)
        json_object_set_new(o, "backendResponseCode", json_integer(q->backend_status));
    json_object_set_new(o, "requestSize", json_integer(q->request_size));
    json_object_set_new(o, "responseSize", json_integer(q->response_size));
    json_object_set_new(o, "cache", json_string(cache[q->cache >= 0 && q->cache < 3 ? q->cache : 0]));
    set_ms(o, "apiTime", (double)q->api_time);
    set_ms(o, "serviceTime", q->service_time >= 0 ? (double)q->service_time : 0);
    json_object_set_new(o, "requestId", json_string(q->request_id));
    char ts[32];
    iso_time(ts, q->ts_ms, true);
    json_object_set_new(o, "timestamp", json_string(ts));
    if (*q->reason)
        json_object_set_new(o, "lastErrorReason", json_string(q->reason));
    json_array_append_new(r->rows, o);
}

/* $orderby: "field" or "field asc|desc" */
static char order_field[64];
static bool order_desc;

static int cmp_rows(const void *a, const void *b)
{
    json_t *x = json_object_get(*(json_t *const *)a, order_field);
    json_t *y = json_object_get(*(json_t *const *)b, order_field);
    int d;
    if (json_is_number(x) && json_is_number(y)) {
        double u = json_number_value(x), v = json_number_value(y);
        d = u < v ? -1 : u > v;
    } else
        d = strcmp(json_string_value(x) ? json_string_value(x) : "",
                   json_string_value(y) ? json_string_value(y) : "");
    return order_desc ? -d : d;
}

/* Reads $orderby; false after answering 400.  *field is "" when absent. */
static bool read_orderby(struct mreq *m, bool by_request)
{
    const char *o = pt_mgmt_req_param(m, "$orderby");
    order_field[0] = '\0';
    order_desc = false;
    if (!o || !*o)
        return true;
    char dir[16] = "";
    int n = 0;
    if (sscanf(o, "%63[A-Za-z]%n", order_field, &n) != 1) {
        order_field[0] = '\0';
        goto bad;
    }
    if (o[n] == ' ' && sscanf(o + n + 1, "%15s", dir) == 1 && strcasecmp(dir, "asc") &&
        strcasecmp(dir, "desc"))
        goto bad;
    if (o[n] && (o[n] != ' ' || !dir[0] || o[n + 1 + strlen(dir)]))
        goto bad;
    order_desc = !strcasecmp(dir, "desc");
    static const char *const known[] = {"name",
                                        "apiId",
                                        "operationId",
                                        "productId",
                                        "subscriptionId",
                                        "userId",
                                        "timestamp",
                                        "callCountSuccess",
                                        "callCountBlocked",
                                        "callCountFailed",
                                        "callCountOther",
                                        "callCountTotal",
                                        "bandwidth",
                                        "cacheHitCount",
                                        "cacheMissCount",
                                        "apiTimeAvg",
                                        "apiTimeMin",
                                        "apiTimeMax",
                                        "serviceTimeAvg",
                                        "serviceTimeMin",
                                        "serviceTimeMax",
                                        NULL};
    bool ok = false;
    if (by_request)
        ok = !strcmp(order_field, "timestamp");
    else
        for (int i = 0; known[i]; i++)
            ok |= !strcmp(known[i], order_field);
    if (ok)
        return true;
bad:
    pt_mgmt_req_send_error(
        m, 400, "InvalidParameter",
        "$orderby '%s' is not understood: a field of the report's records%s, then asc or desc", o,
        by_request ? " (timestamp for byRequest)" : "");
    order_field[0] = '\0';
    return false;
}

static bool read_paging(struct mreq *m, long *top, long *skip)
{
    const char *t = pt_mgmt_req_param(m, "$top"), *s = pt_mgmt_req_param(m, "$skip");
    char *end;
    *top = 100;
    *skip = 0;
    if (t) {
        errno = 0;
        *top = strtol(t, &end, 10);
        if (*end || !*t || *top < 1 || *top > 1000) {
            pt_mgmt_req_send_error(m, 400, "InvalidParameter", "$top must be an integer from 1 to 1000");
            return false;
        }
    }
    if (s) {
        errno = 0;
        *skip = strtol(s, &end, 10);
        if (*end || !*s || *skip < 0 || errno == ERANGE || *skip > 1000000000L) {
            pt_mgmt_req_send_error(m, 400, "InvalidParameter",
                                   "$skip must be an integer from 0 to 1000000000");
            return false;
        }
    }
    return true;
}

/* The ids of the workspace's APIs, as a JSON array text (to free). */
struct ws_apis {
    const char *ws;
    json_t *ids;
};

static bool ws_api(void *arg, const struct pt_entity *e)
{
    struct ws_apis *w = arg;
    if (!strcmp(e->workspace ? e->workspace : "", w->ws))
        json_array_append_new(w->ids, json_string(e->id));
    return true;
}

static char *workspace_apis(const char *ws)
{
    struct ws_apis w = {ws, json_array()};
    pt_store_each(pt_mgmt_req_store, "api", "", ws_api, &w);
    char *txt = json_dumps(w.ids, JSON_COMPACT);
    json_decref(w.ids);
    return txt;
}

static void send_page(struct report *r, long top, long skip, long count)
{
    struct mreq *m = r->m;
    json_t *page = json_array();
    if (r->by_request)
        json_array_extend(page, r->rows);
    else
        for (long k = skip; k < (long)json_array_size(r->rows) && k < skip + top; k++)
            json_array_append(page, json_array_get(r->rows, (size_t)k));
    static const char *const keep[] = {"$filter", "interval", "$orderby", NULL};
    json_t *out = pt_mgmt_filter_envelope(m, page, count, top, skip, keep);
    pt_mgmt_req_send_json(m, 200, out, NULL);
}

void pt_mgmt_reports_serve(struct mreq *m, const char *name)
{
    struct report r = {.m = m};
    int which = -1;
    for (int i = 0; i < (int)PT_ARRAY_LEN(reports); i++)
        if (name && !strcmp(name, reports[i].name))
            which = i;
    if (which < 0) {
        pt_mgmt_req_send_error(
            m, 400, "UnknownReport",
            "no report '%s': byApi, byOperation, byProduct, bySubscription, byUser, byTime or "
            "byRequest",
            name ? name : "");
        return;
    }
    r.by_request = reports[which].by == (enum pt_store_an_by) - 1;
    r.by = r.by_request ? PT_AN_BY_API : reports[which].by;
    r.q.by = r.by;
    r.q.max_rows = MAX_ROWS;
    if (!read_filter(&r))
        return;
    if (r.by == PT_AN_BY_TIME && !r.by_request) {
        const char *iv = pt_mgmt_req_param(m, "interval");
        r.q.interval = iv ? pt_mgmt_reports_interval(iv) : -1;
        if (r.q.interval <= 0) {
            pt_mgmt_req_send_error(m, 400, "InvalidParameter",
                                   "byTime needs interval: an ISO 8601 duration that is a whole number of "
                                   "minutes (PT15M, PT1H, P1D), not '%s'",
                                   iv ? iv : "");
            return;
        }
        if ((r.q.to - r.q.from) / 1000 / r.q.interval > MAX_INTERVALS) {
            pt_mgmt_req_send_error(m, 400, "InvalidParameter",
                                   "the range holds more than %d intervals of %s: narrow it or take a longer "
                                   "interval",
                                   MAX_INTERVALS, iv);
            return;
        }
    }
    long top, skip;
    if (!read_paging(m, &top, &skip) || !read_orderby(m, r.by_request))
        return;
    char *apis = NULL;
    if (m->ws) {
        apis = workspace_apis(m->ws);
        r.q.apis_json = apis;
    }
    r.rows = json_array();
    r.names = json_object();
    long count = 0;
    if (r.by_request) {
        int64_t n = 0;
        if (!pt_store_analytics_requests(pt_mgmt_req_store, &r.q, order_field[0] && !order_desc, top, skip,
                                         add_request, &r, &n)) {
            pt_mgmt_req_send_error(m, 500, "StoreError", "the request records cannot be read");
            goto out;
        }
        count = (long)n;
    } else {
        int n = r.q.to < r.q.from ? 0 : pt_store_analytics_report(pt_mgmt_req_store, &r.q, add_row, &r);
        if (n == -2) {
            pt_mgmt_req_send_error(
                m, 400, "InvalidFilter",
                "the report would read more than %d stored buckets: narrow the time range or "
                "filter by API",
                MAX_ROWS);
            goto out;
        }
        if (n < 0) {
            pt_mgmt_req_send_error(m, 500, "StoreError", "the reports cannot be read");
            goto out;
        }
        count = n;
        if (order_field[0]) {
            size_t k = json_array_size(r.rows);
            json_t **v = malloc(sizeof(*v) * (k ? k : 1));
            if (!v) {
                pt_mgmt_req_send_error(m, 503, "OutOfMemory", "the report cannot be sorted now");
                goto out;
            }
            for (size_t i = 0; i < k; i++)
                v[i] = json_incref(json_array_get(r.rows, i));
            qsort(v, k, sizeof(*v), cmp_rows);
            json_array_clear(r.rows);
            for (size_t i = 0; i < k; i++)
                json_array_append_new(r.rows, v[i]);
            free(v);
        }
    }
    send_page(&r, top, skip, count);
out:
    json_decref(r.rows);
    json_decref(r.names);
    free(apis);
}
