/*
 * pt_api -- the SDK table (struct pt_api) every policy runs against: the
 * plugins' and the core's own.
 *
 * Each entry is a thin adapter from the SDK's types (pt_call, pt_bytes) to
 * the message layer (http/pt_msg.c) and the pipeline driver.
 */
#include "policy/pt_api.h"

#include "base/pt_log.h"
#include "base/pt_url.h"
#include "conf/pt_conf.h"
#include "event/pt_cache.h"
#include "event/pt_counters.h"
#include "event/pt_io.h"
#include "event/pt_metrics.h"
#include "event/pt_redis.h"
#include "event/pt_tls.h"
#include "http/pt_fetch.h"
#include "http/pt_hclient.h"
#include "http/pt_logsink.h"
#include "http/pt_otel.h"
#include "http/pt_trace.h"
#include "lua/pt_lua.h"
#include "policy/pt_gen.h"
#include "policy/pt_pipeline.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* --------------------------------------------------------------- the API */

static int api_eval(pt_call *call, const pt_value *v, pt_bytes *out)
{
    if (!call) { /* compile time: a literal's text */
        if (v->expr)
            return -1;
        *out = (pt_bytes){v->text ? v->text : "", v->len};
        return 0;
    }
    struct pt_luaval r;
    int rc = pt_lua_value_eval(call->req, v, &r);
    if (rc == PT_AGAIN)
        return PT_AGAIN;
    if (rc != 0)
        return -1;
    *out = (pt_bytes){r.s.data ? r.s.data : "", r.s.len};
    return 0;
}

static int api_eval_bool(pt_call *call, const pt_value *v, int *out)
{
    pt_status st;
    bool b = pt_lua_value_true(call->req, v, &st);
    if (st == PT_AGAIN)
        return PT_AGAIN;
    if (st != PT_OK)
        return -1;
    *out = b;
    return 0;
}

static int api_value_is_literal(const pt_value *v)
{
    return v->expr == 0;
}

/* The request's framing headers belong to the gateway (the backend request
   is re-framed), so header_get does not show them -- except Content-Length,
   read-only, as the body's current length: the in-memory body's once it was
   read or replaced, else the length the client announced; none for a body
   that is not in memory and has no announced length (chunked, or no body).
   validate-content checks max-size with it before reading a body. */
static int request_length(struct pt_req *req, pt_bytes *values, int max)
{
    int64_t n = req->req_body_state != RB_STREAM
                    ? (int64_t)(req->req_body ? evbuffer_get_length(req->req_body) : 0)
                : req->h.body == PT_BODY_LENGTH ? req->h.content_length
                                                : -1;
    if (n < 0)
        return 0;
    if (max > 0) {
        char tmp[24];
        int len = snprintf(tmp, sizeof(tmp), "%lld", (long long)n);
        char *s = pt_pool_alloc(req->pool, (size_t)len + 1);
        if (!s)
            return 0;
        memcpy(s, tmp, (size_t)len + 1);
        values[0] = (pt_bytes){s, (size_t)len};
    }
    return 1;
}

/* A call of a lane of wait that was abandoned (it lost, or the wait ended without it): the
   plugin may still hold it (its own thread, a socket), but what it writes must not change the
   request any more -- the wait promises the losers' variables and messages are left alone. */
static bool gone(const pt_call *call)
{
    return call->lane && pt_pipeline_call_abandoned(call);
}

static int api_header_get(pt_call *call, pt_msg m, pt_bytes name, pt_bytes *values, int max)
{
    struct pt_req *req = call->req;
    if ((m == PT_MSG_RESPONSE || (m == PT_MSG_CURRENT && call->current == PT_MSG_RESPONSE)) && !req->rh_done)
        return 0;
    struct pt_head *h = pt_msg_head(req, m);
    if (h == &req->h && pt_str_ieq(name, PT_STR("content-length")))
        return request_length(req, values, max);
    int n = 0;
    for (int i = 0; i < h->nh; i++) {
        struct pt_hdr *x = &h->h[i];
        if (x->deleted || !pt_str_ieq(x->name, name))
            continue;
        if (x->hop && x->kind != PT_H_HOST && h == &req->h)
            continue;
        if (n < max)
            values[n] = x->value;
        n++;
    }
    return n;
}

static int api_header_set(pt_call *call, pt_msg m, pt_bytes name, const pt_bytes *values, int n,
                          pt_header_mode mode)
{
    if (gone(call))
        return -1;
    return pt_msg_header_set(call->req, m, name, values, n, mode);
}

static int api_header_at(pt_call *call, pt_msg m, int index, pt_bytes *name, pt_bytes *value)
{
    struct pt_req *req = call->req;
    if ((m == PT_MSG_RESPONSE || (m == PT_MSG_CURRENT && call->current == PT_MSG_RESPONSE)) && !req->rh_done)
        return -1;
    struct pt_head *h = pt_msg_head(req, m);
    int k = 0;
    for (int i = 0; i < h->nh; i++) {
        struct pt_hdr *x = &h->h[i];
        if (x->deleted || (x->hop && x->kind != PT_H_HOST))
            continue;
        if (k++ == index) {
            *name = x->name;
            *value = x->value;
            return 0;
        }
    }
    return -1;
}

static pt_bytes api_method(pt_call *call)
{
    return call->req->h.method;
}

static int api_set_method(pt_call *call, pt_bytes m)
{
    if (gone(call))
        return -1;
    if (!pt_str_is_token(m)) {
        pt_msg_set_error(call->req, 500, pt_msg_source(call->req, "set-method"), "InvalidMethod",
                         "invalid method");
        return -1;
    }
    call->req->h.method = pt_pool_str(call->req->pool, m.data, m.len);
    return 0;
}

static pt_bytes api_path(pt_call *call)
{
    return call->req->bpath;
}

static bool url_part_ok(pt_bytes b, bool query)
{
    for (size_t i = 0; i < b.len; i++) {
        unsigned char c = (unsigned char)b.data[i];
        if (c <= 0x20 || c >= 0x7f || c == '#' || (!query && c == '?'))
            return false;
    }
    return true;
}

static int api_set_path(pt_call *call, pt_bytes p)
{
    if (gone(call))
        return -1;
    if ((p.len && p.data[0] != '/') || !url_part_ok(p, false)) {
        pt_msg_set_error(call->req, 500, pt_msg_source(call->req, "rewrite-uri"), "InvalidUrl",
                         "invalid path");
        return -1;
    }
    call->req->bpath = pt_pool_str(call->req->pool, p.data, p.len);
    return 0;
}

static pt_bytes api_query(pt_call *call)
{
    return call->req->bquery;
}

static int api_set_query(pt_call *call, pt_bytes q)
{
    if (gone(call))
        return -1;
    if (!url_part_ok(q, true)) {
        pt_msg_set_error(call->req, 500, pt_msg_source(call->req, "set-query-parameter"), "InvalidUrl",
                         "invalid query");
        return -1;
    }
    call->req->bquery = pt_pool_str(call->req->pool, q.data, q.len);
    return 0;
}

/* A parameter of a query string (the raw, still encoded value); 0 or -1. */
static int find_param(pt_str q, pt_bytes name, pt_bytes *value)
{
    pt_str v;
    if (!pt_url_query_param(q, name, &v))
        return -1;
    *value = v.data ? v : (pt_bytes){"", 0};
    return 0;
}

static int api_query_param(pt_call *call, pt_bytes name, pt_bytes *value)
{
    return find_param(call->req->bquery, name, value);
}

static int api_http_get(const char *url, const struct pt_http_get_opts *o, char **body, size_t *len,
                        char *err, size_t errlen)
{
    struct pt_fetch_opts fo = {0, 0, NULL, -1};
    if (o) {
        fo.timeout_ms = o->timeout_ms;
        fo.max_body = o->max_body;
        fo.accept = o->accept;
        fo.cancel_fd = o->cancel_fd;
    }
    struct pt_fetch_result r;
    int rc = pt_fetch_get(url, &fo, &r, err, errlen);
    if (rc != PT_FETCH_OK)
        return rc;
    *body = r.body;
    *len = r.len;
    return r.status;
}

bool pt_api_checking_only;

static int api_checking_only(void)
{
    return pt_api_checking_only;
}

static int api_original_query_param(pt_call *call, pt_bytes name, pt_bytes *value)
{
    return find_param(call->req->h.query, name, value);
}

static int api_matched_param(pt_call *call, pt_bytes name, pt_bytes *value)
{
    struct pt_req *req = call->req;
    for (int i = 0; i < req->m.nparams; i++)
        if (pt_str_eq(req->m.params[i].name, name)) {
            pt_str raw = req->m.params[i].value;
            char *d = pt_pool_alloc(req->pool, raw.len + 1);
            ssize_t n = pt_url_pct_decode(raw, d, false);
            *value = n < 0 ? raw : (pt_bytes){d, (size_t)n};
            return 0;
        }
    return -1;
}

static int api_status(pt_call *call)
{
    return call->req->rh_done ? call->req->rh.status : 0;
}

static int api_set_status(pt_call *call, int code, pt_bytes reason)
{
    if (gone(call))
        return -1;
    return pt_msg_set_status(call->req, code, reason, "set-status");
}

static int api_body_get(pt_call *call, pt_msg m, pt_bytes *out)
{
    struct pt_req *req = call->req;
    if (m == PT_MSG_CURRENT)
        m = call->current;
    struct evbuffer *b;
    if (m == PT_MSG_REQUEST) {
        if (pt_msg_body_unread(req, PT_MSG_REQUEST)) {
            req->ex.need_body = PT_MSG_REQUEST;
            return PT_AGAIN;
        }
        b = req->req_body;
    } else {
        if (!req->rh_done) {
            *out = (pt_bytes){"", 0};
            return 0;
        }
        if (pt_msg_body_unread(req, PT_MSG_RESPONSE)) {
            req->ex.need_body = PT_MSG_RESPONSE;
            return PT_AGAIN;
        }
        b = req->resp_body;
    }
    if (!b || !evbuffer_get_length(b)) {
        *out = (pt_bytes){"", 0};
        return 0;
    }
    size_t n = evbuffer_get_length(b);
    *out = (pt_bytes){(const char *)evbuffer_pullup(b, -1), n};
    return 0;
}

static int api_body_set(pt_call *call, pt_msg m, pt_bytes data)
{
    struct pt_req *req = call->req;
    if (gone(call))
        return -1;
    if (m == PT_MSG_CURRENT)
        m = call->current;
    pt_msg_set_body(req, m, data);
    return 0;
}

static int api_var_get(pt_call *call, pt_bytes name, pt_bytes *out)
{
    const struct pt_var *v = pt_msg_var_get(call->req, name);
    if (!v)
        return -1;
    *out = v->value;
    return 0;
}

static int api_var_set(pt_call *call, pt_bytes name, pt_bytes value)
{
    if (gone(call))
        return -1;
    pt_msg_var_set(call->req, name, PT_VAR_STRING, value);
    return 0;
}

static pt_status api_fail(pt_call *call, int status, const char *reason, const char *message)
{
    /* a lane of wait failing from a callback: the error is located in that lane (and traced there) */
    struct pt_exec *ex = &call->req->ex;
    if (gone(call))
        return PT_ERROR; /* the request's error, lastError and the lane path are not an abandoned lane's to
                            set */
    struct pt_lane *was_lane = ex->lane_cur;
    struct pt_call *was_call = ex->lane_call;
    if (call->lane) {
        ex->lane_cur = call->lane;
        ex->lane_call = call;
    }
    pt_msg_set_error(call->req, status, call->name ? call->name : "gateway", reason, message);
    ex->lane_cur = was_lane;
    ex->lane_call = was_call;
    return PT_ERROR;
}

static pt_status api_respond(pt_call *call)
{
    if (gone(call))
        return PT_ERROR; /* the response is not an abandoned lane's to build */
    pt_msg_response(call->req);
    return PT_DONE;
}

static void api_resume(pt_call *call, pt_status st)
{
    pt_pipeline_call_resume(call, st); /* the pipeline, or the lane of wait the call belongs to */
}

static void *api_alloc(pt_call *call, size_t n)
{
    return pt_pool_calloc(call->req->pool, n);
}

static void api_log(int level, const char *fmt, ...)
{
    if (level > pt_log_level)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    pt_log_write(level < 0 ? 0 : level > 3 ? 3 : level, "%s", buf);
}

static void **api_call_state(pt_call *call)
{
    struct pt_req *req = call->req;
    for (struct pt_statestash *s = req->ex.stash; s; s = s->next)
        if (s->stmt == call->stmt)
            return &s->state;
    struct pt_statestash *s = pt_pool_calloc(req->pool, sizeof(*s));
    s->stmt = call->stmt;
    s->next = req->ex.stash;
    req->ex.stash = s;
    return &s->state;
}

static pt_bytes api_operation_template(pt_call *call)
{
    struct pt_req *req = call->req;
    const char *t = req->op ? req->op->cf->url_template : "";
    return (pt_bytes){t, strlen(t)};
}

static pt_bytes api_operation_definition(pt_call *call)
{
    const struct pt_operation *op = call->req->op;
    pt_str d = op ? pt_gen_op_definition(op) : (pt_str){"", 0};
    return (pt_bytes){d.data, d.len};
}

static pt_bytes api_schema_definition(pt_call *call, int scope, pt_bytes id)
{
    const struct pt_req *req = call->req;
    const struct pt_deftext *t = NULL;
    int n = 0;
    if (scope == PT_SCHEMA_API && req->api) {
        t = req->api->schemas;
        n = req->api->nschemas;
        if (id.len == 0 && n > 0)
            return (pt_bytes){t[0].json.data, t[0].json.len};
    } else if (scope == PT_SCHEMA_SERVICE) {
        t = req_gen(req)->schemas;
        n = req_gen(req)->nschemas;
    }
    for (int i = 0; i < n; i++)
        if (strlen(t[i].id) == id.len && !memcmp(t[i].id, id.data, id.len))
            return (pt_bytes){t[i].json.data, t[i].json.len};
    return (pt_bytes){"", 0};
}

static pt_bytes api_url_base(pt_call *call, int which)
{
    struct pt_req *req = call->req;
    if (which == PT_URL_BACKEND) {
        const char *u = req->api && req->api->cf->service_url ? req->api->cf->service_url : "";
        if (req->api && req->api->bdef && req->api->bdef->cf->url) /* backendId wins over serviceUrl */
            u = req->api->bdef->cf->url;
        size_t n = strlen(u);
        while (n && u[n - 1] == '/')
            n--;
        return (pt_bytes){u, n};
    }
    struct pt_buf b;
    pt_buf_init(&b, req->pool, 128);
    if (req->peer->tls)
        pt_buf_lit(&b, "https://");
    else
        pt_buf_lit(&b, "http://");
    pt_buf_str(&b, req->h.host);
    if (req->api && req->api->cf->path[0]) {
        pt_buf_lit(&b, "/");
        pt_buf_add(&b, req->api->cf->path, strlen(req->api->cf->path));
    }
    return (pt_bytes){b.p, b.n};
}

/*
 * The client's address: the peer's, or -- when the peer is a trusted proxy
 * (trustedProxies) -- the right-most X-Forwarded-For entry that is not a
 * trusted proxy itself.
 */
static pt_bytes client_ip(struct pt_req *req)
{
    const struct pt_conf *cf = req_gen(req)->conf;
    const char *peer = req->peer->ip;
    bool trusted = false;
    for (int i = 0; i < cf->ntrusted && !trusted; i++)
        trusted = pt_conf_cidr_has(&cf->trusted[i], peer);
    if (!trusted)
        return (pt_bytes){peer, strlen(peer)};
    /* every X-Forwarded-For field, joined, read from the right */
    struct pt_buf b;
    pt_buf_init(&b, req->pool, 128);
    for (int i = 0; i < req->h.nh; i++) {
        const struct pt_hdr *x = &req->h.h[i];
        if (!x->deleted && pt_str_ieq(x->name, pt_str_c("X-Forwarded-For"))) {
            if (b.n)
                pt_buf_lit(&b, ",");
            pt_buf_str(&b, x->value);
        }
    }
    const char *best = peer;
    size_t end = b.n;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && b.p[start - 1] != ',')
            start--;
        size_t a = start, z = end;
        while (a < z && (b.p[a] == ' ' || b.p[a] == '\t'))
            a++;
        while (z > a && (b.p[z - 1] == ' ' || b.p[z - 1] == '\t'))
            z--;
        char *ip = pt_pool_strndup(req->pool, b.p + a, z - a);
        struct pt_cidr probe;
        if (!pt_conf_parse_cidr(ip, &probe) || strchr(ip, '/'))
            break; /* not an address: stop believing the list */
        best = ip;
        bool hop_trusted = false;
        for (int i = 0; i < cf->ntrusted && !hop_trusted; i++)
            hop_trusted = pt_conf_cidr_has(&cf->trusted[i], ip);
        if (!hop_trusted)
            break;
        end = start ? start - 1 : 0;
    }
    return (pt_bytes){best, strlen(best)};
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* PT_FACT_USER_GROUPS: the subscription owner's groups, sorted and without
   repeats, comma-separated -- a stable text (vary-by-developer-groups keys a
   cache by it).  Every user is in the system group `developers`, as
   context.user.groups says; an anonymous call has no groups. */
static pt_bytes user_groups(struct pt_req *req)
{
    const struct pt_user *u = req->sub ? req->sub->owner : NULL;
    if (!u)
        return (pt_bytes){"", 0};
    const struct pt_strlist *g = &u->cf->groups;
    const char **v = pt_pool_alloc(req->pool, sizeof(*v) * ((size_t)g->n + 1));
    if (!v)
        return (pt_bytes){"", 0};
    int n = 0;
    v[n++] = "developers";
    for (int i = 0; i < g->n; i++)
        v[n++] = g->v[i];
    qsort(v, (size_t)n, sizeof(*v), cmp_cstr);
    struct pt_buf b;
    pt_buf_init(&b, req->pool, 64);
    for (int i = 0; i < n; i++) {
        if (i && !strcmp(v[i], v[i - 1]))
            continue;
        if (b.n)
            pt_buf_lit(&b, ",");
        pt_buf_str(&b, pt_str_c(v[i]));
    }
    return (pt_bytes){b.p ? b.p : "", b.n};
}

static pt_bytes api_fact(pt_call *call, int which)
{
    struct pt_req *req = call->req;
    const char *s = NULL;
    switch (which) {
    case PT_FACT_CLIENT_IP:
        return client_ip(req);
    case PT_FACT_SUBSCRIPTION_ID:
        s = req->sub ? req->sub->cf->id : NULL;
        break;
    case PT_FACT_SUBSCRIPTION_KEY:
        return (pt_bytes){req->key.data ? req->key.data : "", req->key.len};
    case PT_FACT_SUBSCRIPTION_START:
        s = req->sub ? req->sub->cf->created_date : NULL;
        break;
    case PT_FACT_PRODUCT_ID:
        s = req->product ? req->product->cf->id : NULL;
        break;
    case PT_FACT_API_ID:
        s = req->api ? req->api->cf->id : NULL;
        break;
    case PT_FACT_OPERATION_ID:
        s = req->op ? req->op->cf->id : NULL;
        break;
    case PT_FACT_USER_ID:
        s = req->sub && req->sub->owner ? req->sub->owner->cf->id : NULL;
        break;
    case PT_FACT_REQUEST_ID:
        return (pt_bytes){req->id, req->idn};
    case PT_FACT_USER_GROUPS:
        return user_groups(req);
    case PT_FACT_BUFFER_SIZE: {
        char t[24];
        int n = snprintf(t, sizeof(t), "%llu", (unsigned long long)req_gen(req)->conf->limits.buffer_size);
        return (pt_bytes){pt_pool_strndup(req->pool, t, (size_t)n), (size_t)n};
    }
    case PT_FACT_WORKSPACE_ID:
        s = req->api && req->api->cf->workspace ? req->api->cf->workspace : NULL;
        break;
    case PT_FACT_CLIENT_CERT:
    case PT_FACT_CLIENT_CERT_VERIFY: {
        SSL *ssl = req->peer->tls ? pt_io_ssl(req->peer->io) : NULL;
        X509 *x = ssl ? SSL_get1_peer_certificate(ssl) : NULL;
        if (!x)
            return (pt_bytes){"", 0};
        if (which == PT_FACT_CLIENT_CERT_VERIFY) {
            X509_free(x);
            long v = SSL_get_verify_result(ssl);
            s = v == X509_V_OK ? "ok" : X509_verify_cert_error_string(v);
            break;
        }
        BIO *b = BIO_new(BIO_s_mem());
        PEM_write_bio_X509(b, x);
        /* then the intermediates the client sent, for a chain to a stored CA */
        STACK_OF(X509) *sent = SSL_get_peer_cert_chain(ssl);
        for (int i = 0; sent && i < sk_X509_num(sent); i++)
            if (X509_cmp(sk_X509_value(sent, i), x))
                PEM_write_bio_X509(b, sk_X509_value(sent, i));
        X509_free(x);
        char *data;
        long n = BIO_get_mem_data(b, &data);
        char *copy = pt_pool_strndup(req->pool, data, (size_t)n);
        BIO_free(b);
        return (pt_bytes){copy, (size_t)n};
    }
    }
    return s ? (pt_bytes){s, strlen(s)} : (pt_bytes){"", 0};
}

static int api_use_client_cert(pt_call *call, void *cert)
{
    call->req->client_cert = cert;
    return 0;
}

static int api_at_end(pt_call *call, void (*fn)(void *, int, uint64_t, uint64_t), void *arg)
{
    struct pt_hook *h = pt_pool_calloc(call->req->pool, sizeof(*h));
    h->end = fn;
    h->arg = arg;
    h->stmt = call->stmt;
    h->next = call->req->end_hooks;
    call->req->end_hooks = h;
    return 0;
}

static int api_at_response(pt_call *call, void (*fn)(pt_call *, void *), void *arg)
{
    if (gone(call))
        return -1;
    struct pt_hook *h = pt_pool_calloc(call->req->pool, sizeof(*h));
    h->resp = fn;
    h->arg = arg;
    h->stmt = call->stmt;
    /* a hook of a lane that is abandoned by the time of the response does not run; a lane's call
       lives in the request's arena, other calls (a hook's own, on the stack) are never abandoned */
    h->call = call->lane ? call : NULL;
    /* in registration order */
    struct pt_hook **pp = &call->req->resp_hooks;
    while (*pp)
        pp = &(*pp)->next;
    *pp = h;
    return 0;
}

/* ---------------------------------------------------------- emit-metric */

static char host_name[256] = "portico"; /* "Gateway ID" unless metrics.gatewayId says otherwise */

static const char *const builtin_dims[] = {"API ID",          "Operation ID", "Product ID", "User ID",
                                           "Subscription ID", "Location",     "Gateway ID", NULL};

/* The request's value of a built-in dimension; false when the name is not one. */
static bool builtin_dim(pt_call *call, pt_bytes name, pt_str *out)
{
    static const int facts[] = {PT_FACT_API_ID, PT_FACT_OPERATION_ID, PT_FACT_PRODUCT_ID, PT_FACT_USER_ID,
                                PT_FACT_SUBSCRIPTION_ID};
    for (int i = 0; builtin_dims[i]; i++) {
        if (!pt_str_ieq_c(name, builtin_dims[i]))
            continue;
        if (!call)
            *out = PT_STR("");
        else if (i < (int)PT_ARRAY_LEN(facts))
            *out = api_fact(call, facts[i]);
        else {
            const struct pt_metrics_cf *m = &req_gen(call->req)->conf->metrics;
            *out = pt_str_c(i == 5 ? m->location : m->gateway_id ? m->gateway_id : host_name);
        }
        return true;
    }
    return false;
}

static int api_metric_emit(pt_call *call, const char *ns, const char *name, double value, const pt_bytes *dn,
                           const pt_bytes *dv, int n)
{
    if (!isfinite(value) || value < 0 || n < 0 || n > PT_METRICS_MAX_LABELS || !name)
        return -1;
    char full[256];
    size_t k = pt_metrics_sanitize(pt_str_c(ns ? ns : ""), full, 128);
    if (k)
        full[k++] = '_';
    size_t m = pt_metrics_sanitize(pt_str_c(name), full + k, sizeof(full) - k);
    if (!m || k + m > PT_METRICS_NAME_MAX || !strncmp(full, "portico_", 8) || !strncmp(full, "process_", 8))
        return -1;
    struct pt_req *req = call ? call->req : NULL;
    char lbuf[PT_METRICS_MAX_LABELS][65];
    pt_str names[PT_METRICS_MAX_LABELS], values[PT_METRICS_MAX_LABELS];
    for (int i = 0; i < n; i++) {
        size_t l = pt_metrics_sanitize(dn[i], lbuf[i], sizeof(lbuf[i]));
        if (!l)
            return -1;
        pt_str nm = {lbuf[i], l}, v = dv ? dv[i] : PT_NULL_STR;
        if (!v.data && !builtin_dim(call, dn[i], &v))
            return -1;
        /* sorted by name, so that the order the dimensions are written in makes no other series */
        int at = i;
        while (at > 0 && strcmp(names[at - 1].data, nm.data) > 0) {
            names[at] = names[at - 1];
            values[at] = values[at - 1];
            at--;
        }
        if (at > 0 && !strcmp(names[at - 1].data, nm.data))
            return -1;
        names[at] = nm;
        values[at] = v;
    }
    if (!req || !atomic_load_explicit(&pt_metrics_enabled, memory_order_relaxed) || !pt_metrics_core[0])
        return 0;
    struct pt_metrics_family *f = pt_metrics_custom((pt_str){full, k + m});
    if (!f)
        return -1;
    int id = pt_metrics_series(f, names, values, n);
    pt_metrics_add_double(f, pt_metrics_worker_shard(req->peer->worker), id, value);
    return 0;
}

static int api_trace_emit(pt_call *call, pt_bytes source, int severity, pt_bytes message,
                          const pt_bytes *meta_names, const pt_bytes *meta_values, int nmeta)
{
    pt_trace_emit(call->req, source, severity, message, meta_names, meta_values, nmeta < 0 ? 0 : nmeta);
    pt_otel_event(call->req, source, severity, message); /* OpenTelemetry: an event on its section's span */
    return 0;
}

/* ---------------------------------------------------------------- loggers */

static const void *api_logger_find(pt_compile *c, const char *attr, const char *id)
{
    struct pt_polctx *pc = c->pc;
    for (int i = 0; id && i < pc->nloggers; i++)
        if (!strcmp(pc->loggers[i].id, id))
            return &pc->loggers[i];
    if (pc->loggers_open)
        return pc; /* checking the file alone: the logger may be in the store; never run */
    struct pt_node *where = pt_policy_compile_attr(c, attr);
    pt_node_error(pc->errs, where ? where : c->attrs, "there is no logger '%s' (%d logger%s declared)",
                  id ? id : "", pc->nloggers, pc->nloggers == 1 ? "" : "s");
    return NULL;
}

_Static_assert(PT_LOG_MESSAGE_MAX == PT_LOGSINK_MESSAGE_MAX, "the SDK's message limit is the sinks'");

static int api_log_emit(pt_call *call, const void *logger, pt_bytes message, pt_bytes partition_id,
                        pt_bytes partition_key)
{
    const struct pt_gen *g = req_gen(call->req);
    const struct pt_conf *cf = g->conf;
    const struct pt_logger_cf *l = logger;
    if (!l || l < cf->loggers || l >= cf->loggers + cf->nloggers || !g->sinks)
        return -1;
    struct pt_logsink *s = g->sinks[l - cf->loggers];
    size_t len = pt_logsink_cut(message.data, message.len, PT_LOGSINK_MESSAGE_MAX);
    return pt_logsink_emit(s, PT_LOGSINK_MESSAGE, message.data, len, partition_id, partition_key) ? 0 : -1;
}

void pt_policy_fill_api(struct pt_api *a);

/* -- ABI 1.7: backends, side calls, responses in variables, the caches -- */

/*
 * A base URL given at request time becomes a target without resolving a
 * name on the worker: a URL written literally in a policy was resolved with
 * the generation; otherwise the host must be an IP address, or a host some
 * target of the generation already resolved (an API's serviceUrl, a
 * backend, a literal base-url).  Anything else is refused (500).
 */
static bool known_host(const struct pt_gen *g, const char *host, struct sockaddr_storage *sa, socklen_t *len)
{
    const struct pt_backend *found = NULL;
    for (int i = 0; !found && i < g->nbackends; i++)
        if (g->backends[i].target && !strcasecmp(g->backends[i].target->url.host, host))
            found = g->backends[i].target;
    for (int i = 0; !found && i < g->napis; i++)
        if (g->apis[i].backend && !strcasecmp(g->apis[i].backend->url.host, host))
            found = g->apis[i].backend;
    for (size_t i = 0; !found && i < g->nurls; i++)
        if (g->urls[i].be && !strcasecmp(g->urls[i].be->url.host, host))
            found = g->urls[i].be;
    if (!found)
        return false;
    memcpy(sa, &found->sa, sizeof(*sa));
    *len = found->salen;
    return true;
}

static struct pt_backend *runtime_target(pt_call *call, pt_bytes url, const char *what)
{
    struct pt_req *req = call->req;
    const struct pt_gen *g = req_gen(req);
    while (url.len && (url.data[url.len - 1] == ' ' || url.data[url.len - 1] == '\t'))
        url.len--;
    while (url.len && (url.data[0] == ' ' || url.data[0] == '\t'))
        url.data++, url.len--;
    struct pt_backend *known = pt_gen_find_url(g, (pt_str){url.data, url.len});
    if (known)
        return known;
    char *text = pt_pool_strndup(req->pool, url.data, url.len);
    struct pt_backend *b = pt_pool_calloc(req->pool, sizeof(*b));
    if (!text || !b || url.len > 2048 || memchr(url.data, 0, url.len)) {
        pt_msg_set_error(req, 500, call->name, "ExpressionValueEvaluationFailure", "the URL is not valid");
        return NULL;
    }
    const char *why = pt_url_parse(req->pool, text, &b->url);
    if (why) {
        char msg[160];
        snprintf(msg, sizeof(msg), "%s is not an http(s) base URL: %s", what, why);
        pt_msg_set_error(req, 500, call->name, "ExpressionValueEvaluationFailure", msg);
        return NULL;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)&b->sa;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&b->sa;
    if (inet_pton(AF_INET, b->url.host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)b->url.port);
        b->salen = sizeof(*s4);
    } else if (inet_pton(AF_INET6, b->url.host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)b->url.port);
        b->salen = sizeof(*s6);
    } else if (known_host(g, b->url.host, &b->sa, &b->salen)) {
        if (b->sa.ss_family == AF_INET)
            s4->sin_port = htons((uint16_t)b->url.port);
        else
            s6->sin6_port = htons((uint16_t)b->url.port);
    } else {
        char msg[512];
        snprintf(msg, sizeof(msg),
                 "%s: host '%.200s' was not resolved with the configuration (use an IP address, a host of a "
                 "backend or serviceUrl, or write the URL literally)",
                 what, b->url.host);
        pt_msg_set_error(req, 500, call->name, "BackendConnectionFailure", msg);
        return NULL;
    }
    char addr[INET6_ADDRSTRLEN] = "";
    inet_ntop(b->sa.ss_family, b->sa.ss_family == AF_INET ? (void *)&s4->sin_addr : (void *)&s6->sin6_addr,
              addr, sizeof(addr));
    b->pool_key = pt_pool_printf(req->pool, "%s://%s:%d/%s", b->url.https ? "https" : "http", addr,
                                 b->url.port, b->url.https ? b->url.host : "");
    b->pool_hash = pt_hash(b->pool_key, strlen(b->pool_key), false);
    return b;
}

static int api_backend_set(pt_call *call, pt_bytes base_url, pt_bytes backend_id)
{
    struct pt_req *req = call->req;
    if (backend_id.len) {
        const struct pt_backdef *d =
            pt_gen_find_backend(req_gen(req), (pt_str){backend_id.data, backend_id.len});
        /* an id computed per request: another scope's backend (and its credentials) is as unknown as
           a missing one (a literal one was refused with the configuration) */
        if (d && !pt_gen_backend_usable(d, call->stmt ? call->stmt->workspace : NULL))
            d = NULL;
        if (!d) {
            char msg[300];
            snprintf(msg, sizeof(msg), "backend '%.*s' is not configured in the policy's scope",
                     (int)(backend_id.len > 200 ? 200 : backend_id.len), backend_id.data);
            pt_msg_set_error(req, 500, call->name, "BackendNotFound", msg);
            return -1;
        }
        req->bdef = d;
        req->be = d->target; /* NULL for a pool: pt_upstream_pick chooses at forward */
        return 0;
    }
    struct pt_backend *b = runtime_target(call, base_url, "base-url");
    if (!b)
        return -1;
    req->bdef = NULL;
    req->be = b;
    return 0;
}

static int api_forward_proxy_set(pt_call *call, pt_bytes url, pt_bytes username, pt_bytes password)
{
    struct pt_req *req = call->req;
    if (url.len < 7 || strncasecmp(url.data, "http://", 7)) {
        pt_msg_set_error(req, 500, call->name, "ExpressionValueEvaluationFailure",
                         "the proxy's url must be http://host[:port]");
        return -1;
    }
    struct pt_backend *b = runtime_target(call, url, "proxy url");
    if (!b)
        return -1;
    struct pt_fwdproxy *p = pt_pool_calloc(req->pool, sizeof(*p));
    if (!p)
        return -1;
    p->be = b;
    if (username.len) {
        if (username.len + password.len > 4096 || memchr(username.data, ':', username.len)) {
            pt_msg_set_error(
                req, 500, call->name, "ExpressionValueEvaluationFailure",
                "the proxy's username may not hold ':' (and the credentials are at most 4096 bytes)");
            return -1;
        }
        size_t n = username.len + 1 + password.len;
        char *plain = pt_pool_alloc(req->pool, n + 1);
        char *enc = pt_pool_alloc(req->pool, 6 + 4 * ((n + 2) / 3) + 1);
        if (!plain || !enc)
            return -1;
        memcpy(plain, username.data, username.len);
        plain[username.len] = ':';
        memcpy(plain + username.len + 1, password.data, password.len);
        memcpy(enc, "Basic ", 6);
        int len = EVP_EncodeBlock((unsigned char *)enc + 6, (const unsigned char *)plain, (int)n);
        p->auth = (pt_str){enc, 6 + (size_t)len};
    }
    req->fproxy = p;
    return 0;
}

/* The context https side calls use: a client certificate's, else the generation's (caFile, verify,
   upstream.tls), built on the control thread because a policy with PT_POLICY_HTTP_SEND is configured.
   Nothing is built here: loading the CA store on a worker would stall all its connections. */
static struct pt_hclient_tls send_tls_of(pt_call *call, const struct pt_http_req *r)
{
    const struct pt_gen *g = req_gen(call->req);
    struct pt_hclient_tls t = {NULL, g->conf->upstream.verify, !g->conf->upstream.side_private};
    if (r->url.len < 8 || strncasecmp(r->url.data, "https://", 8))
        return t; /* plain http: no context */
    if (r->client_cert)
        t.ctx = ((const struct pt_clientcert *)r->client_cert)->ctx;
    else
        t.ctx = g->client_tls; /* NULL: the call fails as BackendConnectionFailure */
    return t;
}

/* The side call's HTTP version: the policy's, when its plugin knows the field (ABI 1.10). */
static int http_version_of(const pt_call *call, const struct pt_http_req *r)
{
    bool known = call->stmt && call->stmt->def && (call->stmt->def->flags & PT_POLICY_HTTP_VERSION);
    return known ? r->http_version : PT_HTTP_VERSION_1;
}

/* One send-request call: registered with the pipeline driver as work, so that a lane of wait that
   loses, or the request's end, cancels it (docs/routing.md). */
struct send_call {
    struct pt_hclient *h; /* NULL once done or cancelled */
    pt_call *call;
    void (*done)(pt_call *, void *, int, const struct pt_http_resp *);
    void *arg;
    struct pt_work work;
};

static void send_done(void *arg, int err, const char *msg, const struct pt_http_resp *resp)
{
    struct send_call *sc = arg;
    sc->h = NULL;
    pt_pipeline_work_end(sc->call, &sc->work);
    (void)msg;                              /* the client logs failures (rate-limited) */
    sc->done(sc->call, sc->arg, err, resp); /* may end the request: sc is not touched after */
}

/* The driver abandons the call (its lane lost, the request ended). */
static void send_abandon(void *handle)
{
    struct send_call *sc = handle;
    if (sc->h) {
        pt_hclient_cancel(sc->h);
        sc->h = NULL;
    }
}

static void *api_http_send(pt_call *call, const struct pt_http_req *r,
                           void (*done)(pt_call *, void *, int, const struct pt_http_resp *), void *arg)
{
    struct pt_req *req = call->req;
    struct send_call *sc = pt_pool_calloc(req->pool, sizeof(*sc));
    if (!sc || !done) {
        pt_msg_set_error(req, 500, call->name, "OutOfMemory", "no memory for the call");
        return NULL;
    }
    struct pt_http_req copy = *r;
    if (!copy.max_body)
        copy.max_body = (size_t)req_gen(req)->conf->limits.buffer_size;
    copy.http_version = http_version_of(call, r);
    struct pt_hclient_tls tls = send_tls_of(call, r);
    sc->call = call;
    sc->done = done;
    sc->arg = arg;
    sc->h = pt_hclient_send(req->peer->base, &copy, &tls, send_done, sc);
    if (!sc->h) {
        pt_msg_set_error(req, 500, call->name, "OutOfMemory", "no memory for the call");
        return NULL;
    }
    pt_pipeline_work_start(call, &sc->work, send_abandon, sc);
    return sc;
}

static void api_http_cancel(void *handle)
{
    struct send_call *sc = handle;
    if (sc && sc->h) {
        pt_pipeline_work_end(sc->call, &sc->work);
        pt_hclient_cancel(sc->h);
        sc->h = NULL;
    }
}

static int api_http_send_detached(pt_call *call, const struct pt_http_req *r)
{
    struct pt_req *req = call->req;
    struct pt_http_req copy = *r;
    if (!copy.max_body)
        copy.max_body = (size_t)req_gen(req)->conf->limits.buffer_size;
    copy.http_version = http_version_of(call, r);
    struct pt_hclient_tls tls = send_tls_of(call, r);
    return pt_hclient_send_detached(req->peer->base, &copy, &tls);
}

static int api_var_set_response(pt_call *call, pt_bytes name, const struct pt_http_resp *resp)
{
    if (!name.len || gone(call))
        return -1;
    return pt_msg_var_set_response(call->req, name, resp);
}

static int api_var_get_response(pt_call *call, pt_bytes name, struct pt_http_resp *out)
{
    const struct pt_http_resp *r = pt_msg_var_response(call->req, name);
    if (!r)
        return 0;
    *out = *r;
    return 1;
}

/* ------------------------------------------------------------ the caches */

/* Which store a caching-type means for this generation: prefer-external is Redis when cache.redis
   is set, else the internal store; external without Redis is no store at all (a miss, a store
   skipped: docs/caching.md). */
enum { STORE_NONE, STORE_INTERNAL, STORE_REDIS };

static int cache_store_for(struct pt_req *req, int type)
{
    const struct pt_cache_cf *cc = &req_gen(req)->conf->cache;
    if (type == PT_CACHE_INTERNAL)
        return STORE_INTERNAL;
    if (cc->redis)
        return STORE_REDIS;
    return type == PT_CACHE_EXTERNAL ? STORE_NONE : STORE_INTERNAL;
}

/* caching-type external without cache.redis: nothing is stored, every lookup misses; said in the
   log at most once a minute, so that a configuration mistake is seen without flooding the log. */
static void cache_external_missing(struct pt_req *req)
{
    static _Atomic uint64_t last_ms;
    uint64_t now = pt_clock_now_ms(), last = atomic_load_explicit(&last_ms, memory_order_relaxed);
    if ((last && now - last < 60000) ||
        !atomic_compare_exchange_strong_explicit(&last_ms, &last, now ? now : 1, memory_order_relaxed,
                                                 memory_order_relaxed))
        return;
    pt_warn("request %.*s: caching-type external, but cache.redis is not set: a miss, nothing stored "
            "(said once a minute)",
            (int)req->idn, req->id);
}

static void *cache_alloc(void *actx, size_t n)
{
    return pt_pool_alloc(actx, n);
}

/* A lookup Redis answers later: who to tell, and the driver's record of the work, through which
   a lane of wait that lost or the request's end cancels it (request memory). */
struct cache_wait {
    pt_call *call;
    void (*done)(pt_call *, void *, int, pt_bytes);
    void *arg;
    void *handle;
    struct pt_work work;
};

static void cache_answer(void *arg, int found, pt_bytes value)
{
    struct cache_wait *w = arg;
    pt_pipeline_work_end(w->call, &w->work);
    pt_bytes v = {"", 0};
    if (found && value.len) {
        char *m = pt_pool_alloc(w->call->req->pool, value.len);
        if (m) {
            memcpy(m, value.data, value.len);
            v = (pt_bytes){m, value.len};
        } else
            found = 0;
    }
    w->done(w->call, w->arg, found, v);
}

static int api_cache_get(pt_call *call, int type, pt_bytes key, pt_bytes *value,
                         void (*done)(pt_call *, void *, int, pt_bytes), void *arg)
{
    struct pt_req *req = call->req;
    pt_bytes ignored;
    if (!value)
        value = &ignored; /* a plugin that only asks whether the key is there */
    switch (cache_store_for(req, type)) {
    case STORE_INTERNAL: {
        struct pt_cache *c = pt_cache_node();
        return c && pt_cache_get(c, key.data, key.len, cache_alloc, req->pool, value) == 1;
    }
    case STORE_REDIS: {
        if (!done) {
            /* no way to take a later answer: Redis is not asked, a miss now, counted as its miss
               (plugin.h) */
            pt_redis_get(req->peer->base, req->peer->worker, key, NULL, NULL, NULL);
            return 0;
        }
        struct cache_wait *w = pt_pool_calloc(req->pool, sizeof(*w));
        if (!w)
            return 0;
        *w = (struct cache_wait){.call = call, .done = done, .arg = arg};
        if (pt_redis_get(req->peer->base, req->peer->worker, key, cache_answer, w, &w->handle) != 1)
            return 0; /* down, or not asked: a miss now */
        pt_pipeline_work_start(call, &w->work, pt_redis_cancel, w->handle);
        return PT_AGAIN;
    }
    default:
        cache_external_missing(req);
        return 0;
    }
}

static int api_cache_put(pt_call *call, int type, pt_bytes key, pt_bytes value, uint32_t ttl_s)
{
    struct pt_req *req = call->req;
    switch (cache_store_for(req, type)) {
    case STORE_INTERNAL: {
        struct pt_cache *c = pt_cache_node();
        return c ? pt_cache_put(c, key.data, key.len, value.data, value.len, (uint64_t)ttl_s * 1000) : -1;
    }
    case STORE_REDIS:
        return pt_redis_set(req->peer->base, req->peer->worker, key, value, ttl_s);
    default:
        cache_external_missing(req);
        return -1;
    }
}

static int api_cache_del(pt_call *call, int type, pt_bytes key)
{
    struct pt_req *req = call->req;
    switch (cache_store_for(req, type)) {
    case STORE_INTERNAL: {
        struct pt_cache *c = pt_cache_node();
        if (c)
            pt_cache_del(c, key.data, key.len);
        return c ? 0 : -1;
    }
    case STORE_REDIS:
        return pt_redis_del(req->peer->base, req->peer->worker, key);
    default:
        cache_external_missing(req);
        return -1;
    }
}

static void api_cache_mark(pt_call *call, int status)
{
    call->req->cache_status = (uint8_t)(status == PT_CACHE_HIT ? 1 : status == PT_CACHE_MISS ? 2 : 0);
}

static struct pt_api build_api(void)
{
    struct pt_api a = {0};
    a.size = sizeof(struct pt_api);
    a.abi_major = PT_ABI_MAJOR;
    a.abi_minor = PT_ABI_MINOR;
    pt_policy_fill_api(&a);
    a.eval = api_eval;
    a.eval_bool = api_eval_bool;
    a.value_is_literal = api_value_is_literal;
    a.header_get = api_header_get;
    a.header_set = api_header_set;
    a.header_at = api_header_at;
    a.method = api_method;
    a.set_method = api_set_method;
    a.path = api_path;
    a.set_path = api_set_path;
    a.query = api_query;
    a.set_query = api_set_query;
    a.query_param = api_query_param;
    a.matched_param = api_matched_param;
    a.status = api_status;
    a.set_status = api_set_status;
    a.body_get = api_body_get;
    a.body_set = api_body_set;
    a.var_get = api_var_get;
    a.var_set = api_var_set;
    a.fail = api_fail;
    a.respond = api_respond;
    a.resume = api_resume;
    a.timer_start = pt_pipeline_timer_start;
    a.timer_cancel = pt_pipeline_timer_cancel;
    a.alloc = api_alloc;
    a.log = api_log;
    a.call_state = api_call_state;
    a.operation_template = api_operation_template;
    a.url_base = api_url_base;
    a.fact = api_fact;
    a.counter = pt_counters_apply;
    a.at_end = api_at_end;
    a.at_response = api_at_response;
    a.use_client_cert = api_use_client_cert;
    a.original_query_param = api_original_query_param;
    a.http_get = api_http_get;
    a.checking_only = api_checking_only;
    a.operation_definition = api_operation_definition;
    a.schema_definition = api_schema_definition;
    a.metric_emit = api_metric_emit;
    a.trace_emit = api_trace_emit;
    a.logger_find = api_logger_find;
    a.log_emit = api_log_emit;
    a.backend_set = api_backend_set;
    a.forward_proxy_set = api_forward_proxy_set;
    a.http_send = api_http_send;
    a.http_cancel = api_http_cancel;
    a.http_send_detached = api_http_send_detached;
    a.var_set_response = api_var_set_response;
    a.var_get_response = api_var_get_response;
    a.cache_get = api_cache_get;
    a.cache_put = api_cache_put;
    a.cache_del = api_cache_del;
    a.cache_mark = api_cache_mark;
    return a;
}

/* Filled once at start; plugins receive a const pointer to it. */
void pt_api_init(void)
{
    pt_pipeline_init();
    pt_policy_api_table = build_api();
    char h[256] = "";
    if (gethostname(h, sizeof(h) - 1) == 0 && h[0])
        memcpy(host_name, h, sizeof(h));
}
