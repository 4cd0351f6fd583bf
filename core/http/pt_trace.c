/*
 * pt_trace -- debug traces of single requests (see pt_trace.h and docs/tracing.md).
 *
 *   pt_trace_request ── a debug header holds? ── no: nothing more, ever
 *        │ yes: struct pt_trace in its own arena, "api-inspector" entry
 *        ▼
 *   per statement: begin (snapshot heads, variables) ... expressions,
 *        backend heads, errors ... end (diff, status, duration)
 *        ▼
 *   pt_trace_finish: JSON ── store (mutex, ring of tracing.maxTraces, ttl)
 */
#include "http/pt_trace.h"
#include "base/pt_utf8.h"

#include "base/pt_log.h"
#include "conf/pt_conf.h"
#include "conf/pt_genmodel.h"
#include "http/pt_tracetoken.h"

#include <math.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* The longest text kept of one value (a header, a variable, an expression's result). */
#define VALUE_MAX 4096

/* ------------------------------------------------------------ recording */

struct entry {
    struct entry *next;
    const char *source;
    const char *path;
    uint64_t wall_ms, start_us, end_us;
    int status;          /* pt_status, -1 while running */
    struct pt_buf data;  /* members of "data", each starting with ',' */
    struct pt_buf exprs; /* items of "expressions", each starting with ',' */
};

/* What a statement is compared against when it ends. */
struct snap {
    struct pt_hdr *req_h;
    int req_nh, req_cap;
    struct pt_hdr *resp_h;
    int resp_nh, resp_cap;
    bool had_resp;
    int resp_status;
    struct pt_var *vars;
    int nvars, vars_cap;
    pt_str bpath, bquery, method;
    const void *be;
};

struct pt_trace {
    struct pt_pool *pool;
    char id[33];
    size_t max;
    bool truncated;
    struct entry *head[PT_SEC_COUNT], *tail[PT_SEC_COUNT];
    struct entry *open;
    const void *open_stmt;
    struct snap snap;
};

static atomic_ullong n_traced, n_stored, n_evicted, n_truncated, n_bad, n_denied;

static const pt_str debug_header = PT_STR("Apim-Debug-Authorization");
static const pt_str legacy_header = PT_STR("Ocp-Apim-Trace");

/* Appends s as a JSON string (quotes included): valid UTF-8 as it is, other
   bytes as the Latin-1 characters they would be, at most VALUE_MAX bytes. */
static void jstr(struct pt_buf *b, pt_str s)
{
    static const char hx[] = "0123456789abcdef";
    bool cut = s.len > VALUE_MAX;
    size_t n = cut ? VALUE_MAX : s.len;
    const unsigned char *p = (const unsigned char *)s.data;
    pt_buf_lit(b, "\"");
    size_t start = 0, i = 0;
    while (i < n) {
        unsigned char c = p[i];
        /* printable ASCII other than the two JSON escapes, or a valid UTF-8 sequence */
        size_t k = c < 0x80 ? (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') : pt_utf8_seq(p + i, n - i);
        if (k) {
            i += k;
            continue;
        }
        pt_buf_add(b, s.data + start, i - start);
        if (c == '"')
            pt_buf_lit(b, "\\\"");
        else if (c == '\\')
            pt_buf_lit(b, "\\\\");
        else if (c == '\n')
            pt_buf_lit(b, "\\n");
        else if (c == '\r')
            pt_buf_lit(b, "\\r");
        else if (c == '\t')
            pt_buf_lit(b, "\\t");
        else {
            char esc[6] = {'\\', 'u', '0', '0', hx[c >> 4], hx[c & 15]};
            pt_buf_add(b, esc, 6);
        }
        start = ++i;
    }
    pt_buf_add(b, s.data + start, i - start);
    if (cut)
        pt_buf_lit(b, "...");
    pt_buf_lit(b, "\"");
}

static void jcstr(struct pt_buf *b, const char *s)
{
    jstr(b, pt_str_c(s ? s : ""));
}

static void jkey(struct pt_buf *b, const char *k)
{
    pt_buf_lit(b, ",\"");
    pt_buf_add(b, k, strlen(k));
    pt_buf_lit(b, "\":");
}

static void jint(struct pt_buf *b, int64_t v)
{
    if (v < 0) {
        pt_buf_lit(b, "-");
        v = -v;
    }
    pt_buf_u64(b, (uint64_t)v);
}

/* A value of type PT_VAR_* as JSON (a number that is not finite becomes its text). */
static void jvalue(struct pt_buf *b, int type, pt_str v)
{
    if (type == PT_VAR_NIL) {
        pt_buf_lit(b, "null");
        return;
    }
    if (type == PT_VAR_BOOL) {
        if (pt_str_eq(v, PT_STR("true")))
            pt_buf_lit(b, "true");
        else
            pt_buf_lit(b, "false");
        return;
    }
    if (type == PT_VAR_NUMBER && v.len && v.len < 64) {
        char num[64], *end;
        memcpy(num, v.data, v.len);
        num[v.len] = '\0';
        double d = strtod(num, &end);
        if (*end == '\0' && isfinite(d)) {
            int k = snprintf(num, sizeof(num), "%.15g", d);
            pt_buf_add(b, num, (size_t)k);
            return;
        }
    }
    jstr(b, v);
}

/* "[{"name": N, "value": V}, ...]" of a head's live headers. */
static void jheaders(struct pt_buf *b, const struct pt_hdr *h, int nh)
{
    pt_buf_lit(b, "[");
    bool first = true;
    for (int i = 0; i < nh; i++) {
        if (h[i].deleted || h[i].hop)
            continue;
        if (first)
            pt_buf_lit(b, "{\"name\":");
        else
            pt_buf_lit(b, ",{\"name\":");
        first = false;
        jstr(b, h[i].name);
        pt_buf_lit(b, ",\"value\":");
        jstr(b, h[i].value);
        pt_buf_lit(b, "}");
    }
    pt_buf_lit(b, "]");
}

static bool full(struct pt_trace *t)
{
    if (!t->truncated && pt_pool_used(t->pool) > t->max) {
        t->truncated = true;
        atomic_fetch_add_explicit(&n_truncated, 1, memory_order_relaxed);
    }
    return t->truncated;
}

static struct entry *entry_make(struct pt_req *req, int section, const char *source, const char *path,
                                bool force)
{
    struct pt_trace *t = req->trace;
    if (!force && full(t))
        return NULL;
    struct entry *e = pt_pool_calloc(t->pool, sizeof(*e));
    if (!e)
        return NULL;
    e->source = pt_pool_strdup(t->pool, source ? source : "");
    e->path = path ? pt_pool_strdup(t->pool, path) : NULL;
    e->wall_ms = pt_clock_wall_ms();
    e->start_us = e->end_us = pt_clock_now_us();
    e->status = -1;
    pt_buf_init(&e->data, t->pool, 128);
    pt_buf_init(&e->exprs, t->pool, 64);
    if (section < 0 || section >= PT_SEC_COUNT)
        section = PT_SEC_INBOUND;
    if (t->tail[section])
        t->tail[section]->next = e;
    else
        t->head[section] = e;
    t->tail[section] = e;
    return e;
}

static struct entry *entry_new(struct pt_req *req, int section, const char *source, const char *path)
{
    return entry_make(req, section, source, path, false);
}

/* The entry data goes to: the running statement's, else a new one of its own. */
static struct entry *target(struct pt_req *req, const char *source)
{
    struct pt_trace *t = req->trace;
    if (t->open)
        return t->open;
    return entry_new(req, req->ex.section, source, NULL);
}

/* ----------------------------------------------------------- the start */

static void inspector(struct pt_req *req)
{
    struct entry *e = entry_new(req, PT_SEC_INBOUND, "api-inspector", NULL);
    if (!e)
        return;
    struct pt_buf *b = &e->data;
    jkey(b, "request");
    pt_buf_lit(b, "{\"method\":");
    jstr(b, req->h.method);
    bool tls = req->peer && req->peer->tls;
    struct pt_buf u;
    pt_buf_init(&u, req->trace->pool, req->h.host.len + req->h.target.len + 16);
    pt_buf_add(&u, tls ? "https://" : "http://", tls ? 8 : 7);
    pt_buf_str(&u, req->h.host);
    pt_buf_str(&u, req->h.target);
    pt_buf_lit(b, ",\"url\":");
    jstr(b, (pt_str){u.p, u.n});
    pt_buf_lit(b, ",\"headers\":");
    jheaders(b, req->h.h, req->h.nh);
    pt_buf_lit(b, "}");
    jkey(b, "configuration");
    pt_buf_lit(b, "{\"api\":{\"id\":");
    jcstr(b, req->api ? req->api->cf->id : "");
    pt_buf_lit(b, ",\"name\":");
    jcstr(b, req->api ? req->api->cf->display_name : "");
    pt_buf_lit(b, ",\"path\":");
    jcstr(b, req->api ? req->api->cf->path : "");
    pt_buf_lit(b, ",\"revision\":");
    jcstr(b, req->api ? req->api->cf->revision : "");
    pt_buf_lit(b, "},\"operation\":{\"id\":");
    jcstr(b, req->op ? req->op->cf->id : "");
    pt_buf_lit(b, ",\"method\":");
    jcstr(b, req->op ? req->op->cf->method : "");
    pt_buf_lit(b, ",\"uriTemplate\":");
    jcstr(b, req->op ? req->op->cf->url_template : "");
    pt_buf_lit(b, "},\"product\":");
    if (req->product)
        jcstr(b, req->product->cf->id);
    else
        pt_buf_lit(b, "null");
    pt_buf_lit(b, ",\"subscription\":");
    if (req->sub)
        jcstr(b, req->sub->cf->id);
    else
        pt_buf_lit(b, "null");
    pt_buf_lit(b, ",\"user\":");
    if (req->sub && req->sub->owner)
        jcstr(b, req->sub->owner->cf->id);
    else
        pt_buf_lit(b, "null");
    pt_buf_lit(b, ",\"backend\":");
    if (req->be)
        jcstr(b, req->api->cf->service_url);
    else
        pt_buf_lit(b, "null");
    pt_buf_lit(b, "}");
}

static bool start(struct pt_req *req, const struct pt_tracing_cf *tc)
{
    struct pt_pool *pool = pt_pool_new(16384);
    if (!pool)
        return false;
    struct pt_trace *t = pt_pool_calloc(pool, sizeof(*t));
    unsigned char rnd[16];
    if (!t || RAND_bytes(rnd, sizeof(rnd)) != 1) {
        pt_pool_free(pool);
        return false;
    }
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        t->id[2 * i] = hx[rnd[i] >> 4];
        t->id[2 * i + 1] = hx[rnd[i] & 15];
    }
    t->pool = pool;
    t->max = (size_t)tc->max_trace_size;
    req->trace = t;
    atomic_fetch_add_explicit(&n_traced, 1, memory_order_relaxed);
    inspector(req);
    return true;
}

static bool is_true(pt_str v)
{
    v = pt_str_trim(v);
    return pt_str_ieq(v, PT_STR("true"));
}

void pt_trace_request(struct pt_req *req)
{
    struct pt_hdr *dbg = NULL, *legacy = NULL;
    for (int i = 0; i < req->h.nh; i++) {
        struct pt_hdr *x = &req->h.h[i];
        if (PT_LIKELY(x->name.len != debug_header.len && x->name.len != legacy_header.len))
            continue;
        if (pt_str_ieq(x->name, debug_header) && !x->deleted)
            dbg = x;
        else if (pt_str_ieq(x->name, legacy_header) && !x->deleted)
            legacy = x;
    }
    if (PT_LIKELY(!dbg && !legacy))
        return;
    /* neither header ever reaches the backend, whatever becomes of it */
    for (int i = 0; i < req->h.nh; i++)
        if (pt_str_ieq(req->h.h[i].name, debug_header) || pt_str_ieq(req->h.h[i].name, legacy_header))
            req->h.h[i].deleted = true;
    const struct pt_tracing_cf *tc = &req_gen(req)->conf->tracing;
    if (!tc->enabled || !req->api)
        return;
    bool by_token = false, by_sub = false;
    if (dbg) {
        switch (pt_tracetoken_verify(&pt_tracetoken_debug_key, pt_str_trim(dbg->value),
                                     pt_str_c(req->api->cf->id), pt_clock_wall_ms())) {
        case PT_TRACETOKEN_OK:
            by_token = true;
            break;
        case PT_TRACETOKEN_EXPIRED:
            req->trace_flags |= PT_TRACE_F_EXPIRED;
            atomic_fetch_add_explicit(&n_denied, 1, memory_order_relaxed);
            break;
        case PT_TRACETOKEN_WRONG_API:
            req->trace_flags |= PT_TRACE_F_WRONGAPI;
            atomic_fetch_add_explicit(&n_denied, 1, memory_order_relaxed);
            break;
        case PT_TRACETOKEN_INVALID:
            /* as if absent: APIM names no other verdict, and a forger learns nothing */
            atomic_fetch_add_explicit(&n_bad, 1, memory_order_relaxed);
            break;
        }
    }
    if (legacy && is_true(legacy->value) && req->sub && req->sub->cf->allow_tracing &&
        (int64_t)pt_clock_wall_ms() < req->sub->cf->trace_until_ms)
        by_sub = true;
    if ((by_token || by_sub) && start(req, tc)) {
        if (by_token)
            req->trace_flags |= PT_TRACE_F_ID;
        if (by_sub)
            req->trace_flags |= PT_TRACE_F_LOCATION;
    }
}

/* ------------------------------------------------------- the statements */

static void *grow_copy(struct pt_pool *pool, void *old, int *cap, const void *src, int n, size_t size)
{
    if (n > *cap) {
        int c = n < 16 ? 16 : n * 2;
        old = pt_pool_alloc(pool, (size_t)c * size);
        if (!old) {
            *cap = 0;
            return NULL;
        }
        *cap = c;
    }
    if (n)
        memcpy(old, src, (size_t)n * size);
    return old;
}

static void snapshot(struct pt_req *req)
{
    struct pt_trace *t = req->trace;
    struct snap *s = &t->snap;
    s->req_h = grow_copy(t->pool, s->req_h, &s->req_cap, req->h.h, req->h.nh, sizeof(struct pt_hdr));
    s->req_nh = s->req_h ? req->h.nh : 0;
    s->had_resp = req->rh_done;
    s->resp_status = req->rh.status;
    s->resp_nh = 0;
    if (req->rh_done) {
        s->resp_h = grow_copy(t->pool, s->resp_h, &s->resp_cap, req->rh.h, req->rh.nh, sizeof(struct pt_hdr));
        s->resp_nh = s->resp_h ? req->rh.nh : 0;
    }
    s->vars = grow_copy(t->pool, s->vars, &s->vars_cap, req->vars, req->nvars, sizeof(struct pt_var));
    s->nvars = s->vars ? req->nvars : 0;
    s->bpath = req->bpath;
    s->bquery = req->bquery;
    s->method = req->h.method;
    s->be = req->be;
}

static void header_item(struct pt_buf *b, bool *first, const char *msg, const struct pt_hdr *x)
{
    pt_buf_add(b, *first ? "{" : ",{", *first ? 1 : 2);
    *first = false;
    pt_buf_lit(b, "\"message\":\"");
    pt_buf_add(b, msg, strlen(msg));
    pt_buf_lit(b, "\",\"name\":");
    jstr(b, x->name);
    pt_buf_lit(b, ",\"value\":");
    jstr(b, x->value);
    pt_buf_lit(b, "}");
}

/* Headers added (set) and removed between the snapshot and now, of one message. */
static void diff_heads(const struct pt_hdr *old, int oldn, const struct pt_hdr *now, int nown,
                       const char *msg, struct pt_buf *set, bool *set_first, struct pt_buf *del,
                       bool *del_first)
{
    for (int i = 0; i < nown; i++) {
        const struct pt_hdr *x = &now[i];
        if (x->hop && x->kind != PT_H_HOST)
            continue;
        if (i >= oldn) {
            if (!x->deleted)
                header_item(set, set_first, msg, x);
        } else if (x->deleted && !old[i].deleted)
            header_item(del, del_first, msg, &old[i]);
    }
}

static void diff(struct pt_req *req, struct entry *e)
{
    struct pt_trace *t = req->trace;
    struct snap *s = &t->snap;
    struct pt_buf set, del;
    pt_buf_init(&set, t->pool, 64);
    pt_buf_init(&del, t->pool, 64);
    bool sf = true, df = true;
    diff_heads(s->req_h, s->req_nh, req->h.h, req->h.nh, "request", &set, &sf, &del, &df);
    bool new_resp = req->rh_done && !s->had_resp;
    if (req->rh_done && s->had_resp) {
        /* the same response, or one built anew (return-response, a retried call)? */
        new_resp = req->rh.nh < s->resp_nh;
        for (int i = 0; !new_resp && i < s->resp_nh; i++)
            new_resp = req->rh.h[i].name.data != s->resp_h[i].name.data;
        if (!new_resp)
            diff_heads(s->resp_h, s->resp_nh, req->rh.h, req->rh.nh, "response", &set, &sf, &del, &df);
    }
    if (set.n) {
        jkey(&e->data, "headersSet");
        pt_buf_lit(&e->data, "[");
        pt_buf_add(&e->data, set.p, set.n);
        pt_buf_lit(&e->data, "]");
    }
    if (del.n) {
        jkey(&e->data, "headersRemoved");
        pt_buf_lit(&e->data, "[");
        pt_buf_add(&e->data, del.p, del.n);
        pt_buf_lit(&e->data, "]");
    }
    if (new_resp && !req->rh_backend) {
        jkey(&e->data, "response");
        pt_buf_lit(&e->data, "{\"status\":");
        jint(&e->data, req->rh.status);
        pt_buf_lit(&e->data, ",\"headers\":");
        jheaders(&e->data, req->rh.h, req->rh.nh);
        pt_buf_lit(&e->data, "}");
    } else if (req->rh_done && s->had_resp && req->rh.status != s->resp_status) {
        jkey(&e->data, "statusSet");
        jint(&e->data, req->rh.status);
    }
    /* variables */
    bool vf = true;
    for (int i = 0; i < req->nvars; i++) {
        const struct pt_var *v = &req->vars[i];
        if (i < s->nvars && v->value.data == s->vars[i].value.data && v->type == s->vars[i].type &&
            v->resp == s->vars[i].resp)
            continue;
        if (vf) {
            jkey(&e->data, "variablesSet");
            pt_buf_lit(&e->data, "[");
        }
        if (vf)
            pt_buf_lit(&e->data, "{\"name\":");
        else
            pt_buf_lit(&e->data, ",{\"name\":");
        vf = false;
        jstr(&e->data, v->name);
        pt_buf_lit(&e->data, ",\"value\":");
        if (v->type == PT_VAR_RESPONSE && v->resp) { /* a response object: its status only */
            pt_buf_lit(&e->data, "{\"statusCode\":");
            jint(&e->data, v->resp->status);
            pt_buf_lit(&e->data, "}");
        } else
            jvalue(&e->data, v->type, v->value);
        pt_buf_lit(&e->data, "}");
    }
    if (!vf)
        pt_buf_lit(&e->data, "]");
    /* where the request goes */
    if (req->h.method.data != s->method.data) {
        jkey(&e->data, "methodSet");
        jstr(&e->data, req->h.method);
    }
    if (req->bpath.data != s->bpath.data || req->bpath.len != s->bpath.len ||
        req->bquery.data != s->bquery.data || req->bquery.len != s->bquery.len || req->be != s->be) {
        struct pt_buf u;
        pt_buf_init(&u, t->pool, 128);
        if (req->be)
            pt_buf_add(&u, req->be->url.https ? "https://" : "http://", req->be->url.https ? 8 : 7);
        if (req->be) {
            pt_buf_add(&u, req->be->url.authority, strlen(req->be->url.authority));
            pt_buf_add(&u, req->be->url.path, strlen(req->be->url.path));
        }
        pt_buf_str(&u, req->bpath);
        if (req->bquery.len) {
            pt_buf_lit(&u, "?");
            pt_buf_str(&u, req->bquery);
        }
        jkey(&e->data, "backendUrl");
        jstr(&e->data, (pt_str){u.p, u.n});
    }
}

void pt_trace_stmt_begin(struct pt_req *req, const void *stmt, const char *name, const char *path)
{
    struct pt_trace *t = req->trace;
    if (t->open) {
        if (t->open_stmt == stmt)
            return; /* the same statement again, now that its body is in */
        pt_trace_stmt_end(req, PT_OK);
    }
    struct entry *e = entry_new(req, req->ex.section, name, path);
    if (!e)
        return;
    snapshot(req);
    t->open = e;
    t->open_stmt = stmt;
}

void pt_trace_stmt_end(struct pt_req *req, pt_status st)
{
    struct pt_trace *t = req->trace;
    struct entry *e = t->open;
    if (!e)
        return;
    t->open = NULL;
    t->open_stmt = NULL;
    e->end_us = pt_clock_now_us();
    e->status = (int)st;
    diff(req, e);
}

void pt_trace_retry(struct pt_req *req, int attempts, bool again, uint32_t wait_ms)
{
    struct pt_trace *t = req->trace;
    struct entry *e = t->open;
    if (!e)
        return;
    jkey(&e->data, "retry");
    pt_buf_lit(&e->data, "{\"attempts\":");
    jint(&e->data, attempts);
    if (again)
        pt_buf_lit(&e->data, ",\"again\":true,\"waitMs\":");
    else
        pt_buf_lit(&e->data, ",\"again\":false,\"waitMs\":");
    jint(&e->data, again ? (int64_t)wait_ms : 0);
    pt_buf_lit(&e->data, "}");
    pt_trace_stmt_end(req, PT_OK);
}

void pt_trace_note(struct pt_req *req, const char *key, const char *value)
{
    struct entry *e = target(req, "note");
    if (!e)
        return;
    jkey(&e->data, key);
    jcstr(&e->data, value);
}

void pt_trace_expr(struct pt_req *req, pt_str source, int type, pt_str value)
{
    struct entry *e = target(req, "expression");
    if (!e)
        return;
    pt_buf_lit(&e->exprs, ",{\"expression\":");
    jstr(&e->exprs, source);
    pt_buf_lit(&e->exprs, ",\"value\":");
    jvalue(&e->exprs, type, value);
    pt_buf_lit(&e->exprs, "}");
}

static void jerror(struct pt_buf *b, const struct pt_lasterror *er)
{
    pt_buf_lit(b, "{\"source\":");
    jcstr(b, er->source);
    pt_buf_lit(b, ",\"reason\":");
    jcstr(b, er->reason);
    pt_buf_lit(b, ",\"message\":");
    jcstr(b, er->message);
    pt_buf_lit(b, ",\"section\":");
    jcstr(b, er->section);
    pt_buf_lit(b, ",\"path\":");
    jcstr(b, er->path);
    pt_buf_lit(b, ",\"policyId\":");
    jcstr(b, er->policy_id);
    pt_buf_lit(b, ",\"statusCode\":");
    jint(b, er->status);
    pt_buf_lit(b, "}");
}

void pt_trace_error(struct pt_req *req)
{
    struct entry *e = target(req, req->ex.err.source ? req->ex.err.source : "error");
    if (!e)
        return;
    jkey(&e->data, "error");
    jerror(&e->data, &req->ex.err);
}

void pt_trace_on_error(struct pt_req *req)
{
    struct pt_trace *t = req->trace;
    if (t->open)
        pt_trace_stmt_end(req, PT_ERROR);
    const struct pt_lasterror *er = &req->ex.err;
    struct entry *e = entry_new(req, PT_SEC_ON_ERROR, er->source ? er->source : "error",
                                er->path && *er->path ? er->path : NULL);
    if (!e)
        return;
    jkey(&e->data, "lastError");
    jerror(&e->data, er);
    e->status = PT_ERROR;
}

/* --------------------------------------------------------- the backend */

void pt_trace_backend_request(struct pt_req *req, const char *head, size_t n)
{
    struct entry *e = target(req, "forward-request");
    if (!e)
        return;
    struct pt_buf *b = &e->data;
    /* our own head: "METHOD target HTTP/1.1\r\n" then "Name: value\r\n" lines */
    const char *end = head + n, *eol = memchr(head, '\r', n);
    if (!eol)
        return;
    const char *sp = memchr(head, ' ', (size_t)(eol - head));
    const char *sp2 = sp ? memchr(sp + 1, ' ', (size_t)(eol - sp - 1)) : NULL;
    if (!sp || !sp2)
        return;
    jkey(b, "request");
    pt_buf_lit(b, "{\"method\":");
    jstr(b, (pt_str){head, (size_t)(sp - head)});
    struct pt_buf u;
    pt_buf_init(&u, req->trace->pool, 128);
    if (req->be) {
        pt_buf_add(&u, req->be->url.https ? "https://" : "http://", req->be->url.https ? 8 : 7);
        pt_buf_add(&u, req->be->url.authority, strlen(req->be->url.authority));
    }
    pt_buf_add(&u, sp + 1, (size_t)(sp2 - sp - 1));
    pt_buf_lit(b, ",\"url\":");
    jstr(b, (pt_str){u.p, u.n});
    pt_buf_lit(b, ",\"headers\":[");
    bool first = true;
    for (const char *p = eol + 2; p < end;) {
        const char *le = memchr(p, '\r', (size_t)(end - p));
        if (!le || le == p)
            break;
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon) {
            const char *v = colon + 1;
            while (v < le && *v == ' ')
                v++;
            pt_buf_add(b, first ? "{\"name\":" : ",{\"name\":", first ? 8 : 9);
            first = false;
            jstr(b, (pt_str){p, (size_t)(colon - p)});
            pt_buf_lit(b, ",\"value\":");
            jstr(b, (pt_str){v, (size_t)(le - v)});
            pt_buf_lit(b, "}");
        }
        p = le + 2;
    }
    pt_buf_lit(b, "]}");
}

void pt_trace_backend_response(struct pt_req *req)
{
    struct entry *e = target(req, "forward-request");
    if (!e)
        return;
    struct pt_buf *b = &e->data;
    jkey(b, "response");
    pt_buf_lit(b, "{\"status\":");
    jint(b, req->rh.status);
    pt_buf_lit(b, ",\"reason\":");
    jstr(b, req->rh.reason);
    pt_buf_lit(b, ",\"headers\":");
    jheaders(b, req->rh.h, req->rh.nh);
    pt_buf_lit(b, "}");
    /* what the statement does next is relative to this response */
    struct snap *s = &req->trace->snap;
    s->had_resp = true;
    s->resp_status = req->rh.status;
    s->resp_h =
        grow_copy(req->trace->pool, s->resp_h, &s->resp_cap, req->rh.h, req->rh.nh, sizeof(struct pt_hdr));
    s->resp_nh = s->resp_h ? req->rh.nh : 0;
}

/* ------------------------------------------------------ the trace policy */

void pt_trace_emit(struct pt_req *req, pt_str source, int severity, pt_str message, const pt_str *names,
                   const pt_str *values, int n)
{
    if (severity < PT_TRACE_SEV_VERBOSE || severity > PT_TRACE_SEV_ERROR)
        severity = PT_TRACE_SEV_VERBOSE;
    if (req->trace) {
        struct entry *e = target(req, "trace");
        if (e) {
            e->source = pt_pool_strndup(req->trace->pool, source.data ? source.data : "", source.len);
            struct pt_buf *b = &e->data;
            jkey(b, "severity");
            jcstr(b, pt_conf_trace_severities[severity]);
            jkey(b, "message");
            jstr(b, message);
            if (n > 0) {
                jkey(b, "metadata");
                pt_buf_lit(b, "{");
                for (int i = 0; i < n; i++) {
                    if (i)
                        pt_buf_lit(b, ",");
                    jstr(b, names[i]);
                    pt_buf_lit(b, ":");
                    jstr(b, values[i]);
                }
                pt_buf_lit(b, "}");
            }
        }
    }
    if (severity < req_gen(req)->conf->tracing.verbosity || pt_log_level < PT_LOG_INFO)
        return;
    struct pt_buf line;
    pt_buf_init(&line, req->pool, 128 + message.len);
    for (int i = 0; i < n; i++) {
        pt_buf_lit(&line, " ");
        pt_buf_str(&line, names[i]);
        pt_buf_lit(&line, "=");
        pt_buf_str(&line, values[i]);
    }
    pt_info("trace [%s] %.*s: %.*s (request %.*s%s%.*s)", pt_conf_trace_severities[severity], (int)source.len,
            source.data ? source.data : "", (int)message.len, message.data ? message.data : "", (int)req->idn,
            req->id, line.n ? ";" : "", (int)line.n, line.p ? line.p : "");
}

/* -------------------------------------------------------- the response */

/* The base of Ocp-Apim-Trace-Location: tracing.locationUrl, else the management listener. */
static bool location_base(const struct pt_conf *cf, struct pt_buf *b)
{
    const char *u = cf->tracing.location_url;
    if (u && *u) {
        size_t n = strlen(u);
        while (n && u[n - 1] == '/')
            n--;
        pt_buf_add(b, u, n);
        return true;
    }
    if (!cf->mgmt.listen)
        return false;
    if (cf->mgmt.tls.ncerts)
        pt_buf_lit(b, "https://");
    else
        pt_buf_lit(b, "http://");
    pt_buf_add(b, cf->mgmt.listen, strlen(cf->mgmt.listen));
    return true;
}

void pt_trace_response_headers(struct pt_buf *b, struct pt_req *req)
{
    uint8_t f = req->trace_flags;
    if (f & PT_TRACE_F_EXPIRED)
        pt_buf_lit(b, "Apim-Debug-Authorization-Expired: true\r\n");
    if (f & PT_TRACE_F_WRONGAPI)
        pt_buf_lit(b, "Apim-Debug-Authorization-WrongAPI: true\r\n");
    if (!req->trace)
        return;
    if (f & PT_TRACE_F_ID) {
        pt_buf_lit(b, "Apim-Trace-Id: ");
        pt_buf_add(b, req->trace->id, 32);
        pt_buf_lit(b, "\r\n");
    }
    if (f & PT_TRACE_F_LOCATION) {
        const struct pt_conf *cf = req_gen(req)->conf;
        struct pt_buf u;
        pt_buf_init(&u, req->pool, 256);
        if (location_base(cf, &u)) {
            uint64_t exp = pt_clock_wall_ms() / 1000 + cf->tracing.ttl / 1000;
            char sig[65];
            pt_tracetoken_location_sig(&pt_tracetoken_location_key, req->trace->id, exp, sig);
            char tail[256];
            int k = snprintf(tail, sizeof(tail), "/management/gateways/managed/traces/%s?expires=%llu&sig=%s",
                             req->trace->id, (unsigned long long)exp, sig);
            pt_buf_lit(b, "Ocp-Apim-Trace-Location: ");
            pt_buf_add(b, u.p, u.n);
            pt_buf_add(b, tail, k < 0 ? 0 : PT_MIN((size_t)k, sizeof(tail) - 1));
            pt_buf_lit(b, "\r\n");
        }
    }
}

/* ------------------------------------------------------------ the store */

struct stored {
    char id[33];
    char api[256];
    char ws[128];
    uint64_t expires_ms;
    char *json;
};

static pthread_mutex_t store_mu = PTHREAD_MUTEX_INITIALIZER;
static struct stored *ring;
static int ring_cap, ring_n, ring_next; /* ring_next: where the next one goes */
static uint64_t store_ttl_ms = 3600000;

static void stored_free(struct stored *s)
{
    free(s->json);
    s->json = NULL;
}

void pt_trace_configure(const struct pt_conf *cf)
{
    int cap = (int)cf->tracing.max_traces;
    pthread_mutex_lock(&store_mu);
    store_ttl_ms = cf->tracing.ttl;
    if (cap != ring_cap) {
        struct stored *nr = calloc((size_t)cap, sizeof(*nr));
        if (nr) {
            /* keep the newest that fit */
            int keep = PT_MIN(ring_n, cap);
            for (int i = 0; i < ring_n; i++) {
                struct stored *s = &ring[(ring_next - ring_n + i + ring_cap) % ring_cap];
                if (i >= ring_n - keep)
                    nr[i - (ring_n - keep)] = *s;
                else
                    stored_free(s);
            }
            free(ring);
            ring = nr;
            ring_cap = cap;
            ring_n = keep;
            ring_next = keep % cap;
        }
    }
    pthread_mutex_unlock(&store_mu);
}

void pt_trace_store_clear(void)
{
    pthread_mutex_lock(&store_mu);
    for (int i = 0; i < ring_cap; i++)
        stored_free(&ring[i]);
    free(ring);
    ring = NULL;
    ring_cap = ring_n = ring_next = 0;
    pthread_mutex_unlock(&store_mu);
}

static void store_put(const char *id, const char *api, const char *ws, char *json)
{
    pthread_mutex_lock(&store_mu);
    if (!ring_cap) {
        pthread_mutex_unlock(&store_mu);
        free(json);
        return;
    }
    uint64_t now = pt_clock_wall_ms();
    struct stored *s = &ring[ring_next];
    if (s->json) {
        if (s->expires_ms > now)
            atomic_fetch_add_explicit(&n_evicted, 1, memory_order_relaxed);
        stored_free(s);
    }
    snprintf(s->id, sizeof(s->id), "%s", id);
    snprintf(s->api, sizeof(s->api), "%s", api);
    snprintf(s->ws, sizeof(s->ws), "%s", ws);
    s->expires_ms = now + store_ttl_ms;
    s->json = json;
    ring_next = (ring_next + 1) % ring_cap;
    if (ring_n < ring_cap)
        ring_n++;
    pthread_mutex_unlock(&store_mu);
    atomic_fetch_add_explicit(&n_stored, 1, memory_order_relaxed);
}

char *pt_trace_store_get(const char *id, char api[256], char workspace[128])
{
    char *out = NULL;
    uint64_t now = pt_clock_wall_ms();
    pthread_mutex_lock(&store_mu);
    for (int i = 0; i < ring_cap && !out; i++) {
        struct stored *s = &ring[i];
        if (!s->json || strcmp(s->id, id))
            continue;
        if (s->expires_ms <= now) {
            stored_free(s);
            break;
        }
        out = strdup(s->json);
        snprintf(api, 256, "%s", s->api);
        snprintf(workspace, 128, "%s", s->ws);
    }
    pthread_mutex_unlock(&store_mu);
    return out;
}

void pt_trace_stats(struct pt_trace_stats *out)
{
    out->traced = atomic_load_explicit(&n_traced, memory_order_relaxed);
    out->stored = atomic_load_explicit(&n_stored, memory_order_relaxed);
    out->evicted = atomic_load_explicit(&n_evicted, memory_order_relaxed);
    out->truncated = atomic_load_explicit(&n_truncated, memory_order_relaxed);
    out->tokens_bad = atomic_load_explicit(&n_bad, memory_order_relaxed);
    out->tokens_denied = atomic_load_explicit(&n_denied, memory_order_relaxed);
}

/* ------------------------------------------------------------ the end */

/* "00:00:00.0001234": APIM's elapsed time (a .NET TimeSpan) from microseconds. */
static void timespan(struct pt_buf *b, uint64_t us)
{
    char s[48];
    uint64_t secs = us / 1000000;
    int k = snprintf(s, sizeof(s), "\"%02llu:%02llu:%02llu.%07llu\"", (unsigned long long)(secs / 3600),
                     (unsigned long long)(secs / 60 % 60), (unsigned long long)(secs % 60),
                     (unsigned long long)(us % 1000000 * 10));
    pt_buf_add(b, s, (size_t)k);
}

/* pt_msg_section_names, repeated: the message layer calls into this file, not the other way */
static const char *const section_names[PT_SEC_COUNT] = {"inbound", "backend", "outbound", "on-error"};
static const char *const status_names[] = {"ok", "error", "suspended", "declined", "done"};

static void write_entry(struct pt_buf *b, const struct pt_req *req, const struct entry *e)
{
    pt_buf_lit(b, "{\"source\":");
    jcstr(b, e->source);
    if (e->path) {
        pt_buf_lit(b, ",\"path\":");
        jcstr(b, e->path);
    }
    char ts[48];
    pt_log_format_time(ts, e->wall_ms);
    pt_buf_lit(b, ",\"timestamp\":");
    jcstr(b, ts);
    uint64_t start = e->start_us > req->t0 ? e->start_us - req->t0 : 0;
    pt_buf_lit(b, ",\"elapsed\":");
    timespan(b, start);
    pt_buf_lit(b, ",\"startMicros\":");
    pt_buf_u64(b, start);
    pt_buf_lit(b, ",\"durationMicros\":");
    pt_buf_u64(b, e->end_us > e->start_us ? e->end_us - e->start_us : 0);
    pt_buf_lit(b, ",\"data\":{");
    size_t mark = b->n;
    if (e->status >= 0 && e->status < (int)PT_ARRAY_LEN(status_names)) {
        pt_buf_lit(b, ",\"status\":\"");
        pt_buf_add(b, status_names[e->status], strlen(status_names[e->status]));
        pt_buf_lit(b, "\"");
    }
    pt_buf_add(b, e->data.p, e->data.n);
    if (e->exprs.n) {
        pt_buf_lit(b, ",\"expressions\":[");
        pt_buf_add(b, e->exprs.p + 1, e->exprs.n - 1);
        pt_buf_lit(b, "]");
    }
    if (b->n > mark && b->p[mark] == ',') /* the first member's comma goes */
        memmove(b->p + mark, b->p + mark + 1, --b->n - mark);
    pt_buf_lit(b, "}}");
}

static void free_trace(struct pt_req *req)
{
    struct pt_pool *pool = req->trace->pool;
    req->trace = NULL;
    pt_pool_free(pool);
}

void pt_trace_discard(struct pt_req *req)
{
    if (req->trace)
        free_trace(req);
}

void pt_trace_finish(struct pt_req *req)
{
    struct pt_trace *t = req->trace;
    if (!t)
        return;
    if (t->open)
        pt_trace_stmt_end(req, req->ex.has_error ? PT_ERROR : PT_OK);
    /* what went to the client */
    struct entry *e = entry_make(req, PT_SEC_OUTBOUND, "transfer-response", NULL, true); /* always */
    if (e) {
        jkey(&e->data, "response");
        pt_buf_lit(&e->data, "{\"status\":");
        jint(&e->data, req->status);
        if (req->rh_done) {
            pt_buf_lit(&e->data, ",\"headers\":");
            jheaders(&e->data, req->rh.h, req->rh.nh);
        }
        pt_buf_lit(&e->data, ",\"bytes\":");
        pt_buf_u64(&e->data, req->bytes_out);
        pt_buf_lit(&e->data, "}");
    }
    bool truncated = t->truncated;
    struct pt_buf b;
    pt_buf_init(&b, t->pool, 4096);
    pt_buf_lit(&b, "{\"traceId\":\"");
    pt_buf_add(&b, t->id, 32);
    pt_buf_lit(&b, "\",\"requestId\":");
    jstr(&b, (pt_str){req->id, req->idn});
    pt_buf_lit(&b, ",\"apiId\":");
    jcstr(&b, req->api ? req->api->cf->id : "");
    pt_buf_lit(&b, ",\"operationId\":");
    jcstr(&b, req->op ? req->op->cf->id : "");
    char ts[48];
    pt_log_format_time(ts, req->wall0);
    pt_buf_lit(&b, ",\"timestamp\":");
    jcstr(&b, ts);
    pt_buf_lit(&b, ",\"statusCode\":");
    jint(&b, req->status);
    pt_buf_lit(&b, ",\"durationMicros\":");
    uint64_t now = pt_clock_now_us();
    pt_buf_u64(&b, now > req->t0 ? now - req->t0 : 0);
    if (truncated)
        pt_buf_lit(&b, ",\"truncated\":true");
    else
        pt_buf_lit(&b, ",\"truncated\":false");
    pt_buf_lit(&b, ",\"traceEntries\":{");
    for (int s = 0; s < PT_SEC_COUNT; s++) {
        if (s)
            pt_buf_lit(&b, ",");
        pt_buf_lit(&b, "\"");
        pt_buf_add(&b, section_names[s], strlen(section_names[s]));
        pt_buf_lit(&b, "\":[");
        for (const struct entry *x = t->head[s]; x; x = x->next) {
            if (x != t->head[s])
                pt_buf_lit(&b, ",");
            write_entry(&b, req, x);
        }
        pt_buf_lit(&b, "]");
    }
    pt_buf_lit(&b, "}}");
    char *json = pt_pool_failed(t->pool) && !b.p ? NULL : malloc(b.n + 1);
    if (json) {
        memcpy(json, b.p, b.n);
        json[b.n] = '\0';
        store_put(t->id, req->api ? req->api->cf->id : "",
                  req->api && req->api->cf->workspace ? req->api->cf->workspace : "", json);
    }
    free_trace(req);
}
