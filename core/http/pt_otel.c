/*
 * pt_otel -- OpenTelemetry on the request path: W3C trace context, sampling,
 * a request's spans and the per-worker span queues (see pt_otel.h).
 *
 * The spans of one request: a SERVER span for the whole request (its parent
 * is the caller's span when the request carried a valid traceparent), an
 * INTERNAL span for each policy section that ran (children of the request's
 * span) and a CLIENT span for each backend call (children of the backend
 * section's span); the traceparent sent to the backend names that CLIENT
 * span.  Times are taken from the monotonic clock and placed on the wall
 * clock by the request's start.
 */
#include "http/pt_otel.h"

#include "base/pt_url.h"
#include "conf/pt_genmodel.h"

#include <stdlib.h>

const char *const pt_otel_attr_names[PT_OTEL_A_COUNT] = {
    [PT_OTEL_A_METHOD] = "http.request.method",
    [PT_OTEL_A_URL_PATH] = "url.path",
    [PT_OTEL_A_URL_SCHEME] = "url.scheme",
    [PT_OTEL_A_ROUTE] = "http.route",
    [PT_OTEL_A_STATUS] = "http.response.status_code",
    [PT_OTEL_A_SERVER_ADDR] = "server.address",
    [PT_OTEL_A_SERVER_PORT] = "server.port",
    [PT_OTEL_A_CLIENT_ADDR] = "client.address",
    [PT_OTEL_A_API] = "portico.api.id",
    [PT_OTEL_A_OPERATION] = "portico.operation.id",
    [PT_OTEL_A_PRODUCT] = "portico.product.id",
    [PT_OTEL_A_SUBSCRIPTION] = "portico.subscription.id",
    [PT_OTEL_A_REASON] = "portico.error.reason",
    [PT_OTEL_A_REQUEST_ID] = "portico.request.id",
    [PT_OTEL_A_SECTION] = "portico.policy.section",
    [PT_OTEL_A_RESEND] = "http.request.resend_count",
    [PT_OTEL_A_ERROR_TYPE] = "error.type",
};

/* ------------------------------------------------------ W3C trace context */

/* Lower-case hex only: the specification refuses upper case. */
static int lhex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static bool hex_bytes(const char *p, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int h = lhex((unsigned char)p[2 * i]), l = lhex((unsigned char)p[2 * i + 1]);
        if (h < 0 || l < 0)
            return false;
        out[i] = (uint8_t)(h << 4 | l);
    }
    return true;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

bool pt_otel_parse_traceparent(pt_str v, struct pt_otel_parent *out)
{
    v = pt_str_trim(v);
    if (v.len < PT_OTEL_TRACEPARENT_LEN)
        return false;
    const char *p = v.data;
    uint8_t version;
    if (!hex_bytes(p, &version, 1) || version == 0xff)
        return false;
    if (p[2] != '-' || p[35] != '-' || p[52] != '-')
        return false;
    struct pt_otel_parent r;
    if (!hex_bytes(p + 3, r.trace, 16) || !hex_bytes(p + 36, r.span, 8) || !hex_bytes(p + 53, &r.flags, 1))
        return false;
    if (all_zero(r.trace, 16) || all_zero(r.span, 8))
        return false;
    /* version 00 is exactly 55 characters; a later version may add fields after a dash */
    if (v.len != PT_OTEL_TRACEPARENT_LEN && (version == 0 || p[55] != '-'))
        return false;
    *out = r;
    return true;
}

static bool key_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' || c == '/';
}

/* key = simple-key / tenant-id "@" system-id */
static bool state_key_ok(pt_str k)
{
    if (!k.len)
        return false;
    const char *at = memchr(k.data, '@', k.len);
    if (!at) {
        if (k.len > 256 || !(k.data[0] >= 'a' && k.data[0] <= 'z'))
            return false;
        for (size_t i = 1; i < k.len; i++)
            if (!key_char((unsigned char)k.data[i]))
                return false;
        return true;
    }
    size_t tn = (size_t)(at - k.data), sn = k.len - tn - 1;
    if (tn < 1 || tn > 241 || sn < 1 || sn > 14)
        return false;
    unsigned char t0 = (unsigned char)k.data[0], s0 = (unsigned char)at[1];
    if (!((t0 >= 'a' && t0 <= 'z') || (t0 >= '0' && t0 <= '9')) || !(s0 >= 'a' && s0 <= 'z'))
        return false;
    for (size_t i = 1; i < tn; i++)
        if (!key_char((unsigned char)k.data[i]))
            return false;
    for (size_t i = 1; i < sn; i++)
        if (!key_char((unsigned char)at[1 + i]))
            return false;
    return true;
}

/* value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E */
static bool state_value_ok(pt_str v)
{
    if (v.len < 1 || v.len > 256 || v.data[v.len - 1] == ' ')
        return false;
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.data[i];
        if (c < 0x20 || c > 0x7e || c == ',' || c == '=')
            return false;
    }
    return true;
}

bool pt_otel_tracestate_ok(const pt_str *values, int n)
{
    pt_str keys[PT_OTEL_STATE_MAX_MEMBERS];
    int nk = 0;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        pt_str rest = values[i];
        total += rest.len + (i ? 1 : 0); /* as one list: joined with commas */
        if (total > PT_OTEL_STATE_MAX_BYTES)
            return false;
        while (rest.len) {
            const char *comma = memchr(rest.data, ',', rest.len);
            size_t mlen = comma ? (size_t)(comma - rest.data) : rest.len;
            /* OWS around members */
            pt_str m = {rest.data, mlen};
            while (m.len && (m.data[0] == ' ' || m.data[0] == '\t')) {
                m.data++;
                m.len--;
            }
            while (m.len && (m.data[m.len - 1] == ' ' || m.data[m.len - 1] == '\t'))
                m.len--;
            rest.data += mlen + (comma ? 1 : 0);
            rest.len -= mlen + (comma ? 1 : 0);
            if (!m.len)
                continue; /* empty members are allowed and skipped */
            const char *eq = memchr(m.data, '=', m.len);
            if (!eq)
                return false;
            pt_str k = {m.data, (size_t)(eq - m.data)}, v = {eq + 1, m.len - k.len - 1};
            if (!state_key_ok(k) || !state_value_ok(v))
                return false;
            if (nk == PT_OTEL_STATE_MAX_MEMBERS)
                return false;
            for (int j = 0; j < nk; j++)
                if (pt_str_eq(keys[j], k))
                    return false; /* a key may appear once */
            keys[nk++] = k;
        }
    }
    return true;
}

static const char hexd[] = "0123456789abcdef";

static char *put_hex(char *o, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        *o++ = hexd[p[i] >> 4];
        *o++ = hexd[p[i] & 15];
    }
    return o;
}

void pt_otel_format_traceparent(char *out, const uint8_t trace[16], const uint8_t span[8], uint8_t flags)
{
    char *o = out;
    *o++ = '0';
    *o++ = '0';
    *o++ = '-';
    o = put_hex(o, trace, 16);
    *o++ = '-';
    o = put_hex(o, span, 8);
    *o++ = '-';
    put_hex(o, &flags, 1);
}

bool pt_otel_ratio_sampled(const uint8_t trace[16], double ratio)
{
    if (ratio >= 1.0)
        return true;
    if (!(ratio > 0.0))
        return false;
    uint64_t r = 0;
    for (int i = 9; i < 16; i++)
        r = r << 8 | trace[i];
    return r < (uint64_t)(ratio * 72057594037927936.0); /* 2^56: compared as integers, exactly */
}

void pt_otel_random(uint64_t *s, uint8_t *out, size_t n)
{
    do {
        for (size_t o = 0; o < n; o += 8) {
            /* xorshift128+ */
            uint64_t x = s[0], y = s[1];
            s[0] = y;
            x ^= x << 23;
            s[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
            uint64_t r = s[1] + y;
            memcpy(out + o, &r, PT_MIN(8, n - o));
        }
    } while (all_zero(out, n));
}

/* ------------------------------------------------------------ span records */

static size_t span_put(struct pt_otel_span *s, pt_str v)
{
    size_t room = PT_OTEL_TEXT - s->text_len, n = PT_MIN(room, v.len);
    if (n)
        memcpy(s->text + s->text_len, v.data, n);
    s->text_len = (uint16_t)(s->text_len + n);
    return n;
}

void pt_otel_span_name(struct pt_otel_span *s, pt_str part)
{
    if (s->nattrs)
        return;
    s->name_len = (uint16_t)(s->name_len + span_put(s, part));
}

void pt_otel_span_str(struct pt_otel_span *s, int key, pt_str v)
{
    if (s->nattrs == PT_OTEL_MAX_ATTRS || (s->text_len == PT_OTEL_TEXT && v.len))
        return;
    struct pt_otel_attr *a = &s->attrs[s->nattrs++];
    a->key = (uint8_t)key;
    a->num = false;
    a->off = s->text_len;
    a->len = (uint16_t)span_put(s, v);
}

void pt_otel_span_int(struct pt_otel_span *s, int key, int64_t v)
{
    if (s->nattrs == PT_OTEL_MAX_ATTRS)
        return;
    struct pt_otel_attr *a = &s->attrs[s->nattrs++];
    a->key = (uint8_t)key;
    a->num = true;
    a->value = v;
}

/* ------------------------------------------------------------------ queues */

/* A single-producer (the worker) single-consumer (the exporter) ring. */
struct pt_otel_queue {
    _Atomic uint64_t head; /* written by the worker */
    char pad1[56];
    _Atomic uint64_t tail; /* written by the exporter */
    char pad2[56];
    _Atomic uint64_t pushed, dropped; /* written by the worker only */
    uint64_t mask;
    struct pt_otel_span *slots;
    char pad3[32];
};

static _Atomic(struct pt_otel_queue *) queues;
static int nqueues;
static _Atomic uint64_t dropped_noqueue, exported, failed_batches, failed_spans;
static int take_from; /* the exporter's round-robin start */

bool pt_otel_queues_init(int n, uint32_t size)
{
    if (atomic_load(&queues))
        return true;
    uint64_t cap = 16;
    while (cap < size)
        cap <<= 1;
    struct pt_otel_queue *q = calloc((size_t)n, sizeof(*q));
    if (!q)
        return false;
    for (int i = 0; i < n; i++) {
        q[i].mask = cap - 1;
        q[i].slots = calloc(cap, sizeof(struct pt_otel_span));
        if (!q[i].slots) {
            while (i--)
                free(q[i].slots);
            free(q);
            return false;
        }
    }
    nqueues = n;
    atomic_store_explicit(&queues, q, memory_order_release);
    return true;
}

void pt_otel_queues_free(void)
{
    struct pt_otel_queue *q = atomic_exchange(&queues, NULL);
    for (int i = 0; q && i < nqueues; i++)
        free(q[i].slots);
    free(q);
    nqueues = 0;
}

int pt_otel_queues_take(struct pt_otel_span *out, int max)
{
    struct pt_otel_queue *qs = atomic_load_explicit(&queues, memory_order_acquire);
    int got = 0;
    for (int k = 0; qs && k < nqueues && got < max; k++) {
        struct pt_otel_queue *q = &qs[(take_from + k) % nqueues];
        uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
        uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
        while (t != h && got < max)
            out[got++] = q->slots[t++ & q->mask];
        atomic_store_explicit(&q->tail, t, memory_order_release);
    }
    if (nqueues)
        take_from = (take_from + 1) % nqueues;
    return got;
}

uint64_t pt_otel_queues_pending(void)
{
    struct pt_otel_queue *qs = atomic_load_explicit(&queues, memory_order_acquire);
    uint64_t n = 0;
    for (int k = 0; qs && k < nqueues; k++)
        n += atomic_load_explicit(&qs[k].head, memory_order_acquire) -
             atomic_load_explicit(&qs[k].tail, memory_order_acquire);
    return n;
}

void pt_otel_stats(struct pt_otel_stats *out)
{
    memset(out, 0, sizeof(*out));
    struct pt_otel_queue *qs = atomic_load_explicit(&queues, memory_order_acquire);
    for (int k = 0; qs && k < nqueues; k++) {
        out->started += atomic_load_explicit(&qs[k].pushed, memory_order_relaxed);
        out->dropped += atomic_load_explicit(&qs[k].dropped, memory_order_relaxed);
    }
    out->dropped += atomic_load_explicit(&dropped_noqueue, memory_order_relaxed);
    out->started += atomic_load_explicit(&dropped_noqueue, memory_order_relaxed);
    out->exported = atomic_load_explicit(&exported, memory_order_relaxed);
    out->failed_batches = atomic_load_explicit(&failed_batches, memory_order_relaxed);
    out->failed_spans = atomic_load_explicit(&failed_spans, memory_order_relaxed);
    out->queued = pt_otel_queues_pending();
}

void pt_otel_count_export(uint64_t ok, uint64_t fb, uint64_t fs)
{
    atomic_fetch_add_explicit(&exported, ok, memory_order_relaxed);
    atomic_fetch_add_explicit(&failed_batches, fb, memory_order_relaxed);
    atomic_fetch_add_explicit(&failed_spans, fs, memory_order_relaxed);
}

/* Adds one to a counter only its worker writes (no read-modify-write). */
static inline void bump(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

/* ------------------------------------------------------------------- hooks */

void pt_otel_req_start(struct pt_req *req)
{
    const struct pt_telemetry_cf *t = &req_gen(req)->conf->telemetry;
    if (PT_LIKELY(!t->on))
        return;
    struct pt_otel_ctx *o = &req->otel;
    pt_str tp = PT_NULL_STR, ts[8];
    int ntp = 0, nts = 0;
    bool ts_many = false;
    for (int i = 0; i < req->h.nh; i++) {
        const struct pt_hdr *x = &req->h.h[i];
        if (x->deleted)
            continue;
        if (x->name.len == 11 && pt_str_ieq_c(x->name, "traceparent")) {
            tp = x->value;
            ntp++;
        } else if (x->name.len == 10 && pt_str_ieq_c(x->name, "tracestate")) {
            if (nts < (int)PT_ARRAY_LEN(ts))
                ts[nts++] = x->value;
            else
                ts_many = true;
        }
    }
    struct pt_otel_parent par;
    bool sampled;
    /* several traceparent fields are one invalid one */
    if (ntp == 1 && pt_otel_parse_traceparent(tp, &par)) {
        memcpy(o->trace, par.trace, 16);
        memcpy(o->parent, par.span, 8);
        sampled = t->parent_based ? (par.flags & 1) : pt_otel_ratio_sampled(o->trace, t->ratio);
        o->drop_state = nts && (ts_many || !pt_otel_tracestate_ok(ts, nts));
    } else {
        pt_otel_random(req->peer->rng, o->trace, 16);
        sampled = pt_otel_ratio_sampled(o->trace, t->ratio);
        o->drop_state = nts > 0; /* a tracestate belongs to the traceparent it came with */
    }
    o->flags = sampled ? 1 : 0;
    o->on = t->propagate;
    if (sampled && t->endpoint) {
        struct pt_otel_rec *rec = pt_pool_calloc(req->pool, sizeof(*rec));
        if (rec) {
            rec->open = -1;
            pt_otel_random(req->peer->rng, o->span, 8);
            o->rec = rec;
        }
    }
}

void pt_otel_section_mark(struct pt_req *req, int sec)
{
    struct pt_otel_rec *rec = req->otel.rec;
    uint64_t now = pt_clock_now_us();
    if (rec->open >= 0) {
        rec->sec[rec->open].t1 = now;
        if (sec == PT_SEC_ON_ERROR)
            rec->sec[rec->open].error = true; /* it failed: on-error runs */
    }
    rec->open = sec;
    if (sec >= 0 && sec < PT_SEC_COUNT) {
        rec->sec[sec].t0 = now;
        rec->sec[sec].t1 = 0;
        pt_otel_random(req->peer->rng, rec->sec[sec].id, 8);
    } else
        rec->open = -1;
}

void pt_otel_backend_start(struct pt_req *req)
{
    struct pt_otel_ctx *o = &req->otel;
    if (!o->on && !o->rec)
        return;
    pt_otel_random(req->peer->rng, o->backend, 8);
    struct pt_otel_rec *rec = o->rec;
    if (!rec)
        return;
    uint64_t now = pt_clock_now_us();
    if (rec->natt && !rec->att[rec->natt - 1].t1)
        rec->att[rec->natt - 1].t1 = now;
    if (rec->natt == PT_OTEL_ATTEMPTS)
        return; /* later attempts are not recorded */
    rec->natt++;
    memcpy(rec->att[rec->natt - 1].id, o->backend, 8);
    rec->att[rec->natt - 1].t0 = now;
    rec->att[rec->natt - 1].t1 = 0;
    rec->att[rec->natt - 1].status = 0;
}

void pt_otel_backend_head(struct pt_req *req)
{
    struct pt_otel_rec *rec = req->otel.rec;
    if (!rec || !rec->natt || memcmp(rec->att[rec->natt - 1].id, req->otel.backend, 8))
        return;
    rec->att[rec->natt - 1].t1 = pt_clock_now_us();
    rec->att[rec->natt - 1].status = req->rh.status;
}

void pt_otel_backend_header(const struct pt_req *req, struct pt_buf *b)
{
    if (!req->otel.on)
        return;
    char line[13 + PT_OTEL_TRACEPARENT_LEN + 2];
    memcpy(line, "traceparent: ", 13);
    pt_otel_format_traceparent(line + 13, req->otel.trace, req->otel.backend, req->otel.flags);
    memcpy(line + 13 + PT_OTEL_TRACEPARENT_LEN, "\r\n", 2);
    pt_buf_add(b, line, sizeof(line));
}

bool pt_otel_header_skip(const struct pt_req *req, const struct pt_hdr *x)
{
    if (!req->otel.on)
        return false;
    if (x->name.len == 11 && pt_str_ieq_c(x->name, "traceparent"))
        return true;
    return req->otel.drop_state && x->name.len == 10 && pt_str_ieq_c(x->name, "tracestate");
}

/* Unix epoch ns of a monotonic µs time of the request. */
static uint64_t epoch_ns(const struct pt_req *req, uint64_t t)
{
    return (req->wall0 * 1000 + (t >= req->t0 ? t - req->t0 : 0)) * 1000;
}

static void span_init(struct pt_otel_span *s, const struct pt_req *req, const uint8_t *id,
                      const uint8_t *parent, int kind, uint64_t t0, uint64_t t1)
{
    memset(s, 0, offsetof(struct pt_otel_span, attrs));
    memcpy(s->trace, req->otel.trace, 16);
    memcpy(s->span, id, 8);
    memcpy(s->parent, parent, 8);
    s->kind = (uint8_t)kind;
    s->flags = req->otel.flags;
    s->start_ns = epoch_ns(req, t0);
    s->end_ns = epoch_ns(req, t1 >= t0 ? t1 : t0);
}

static void server_span(struct pt_otel_span *s, const struct pt_req *req, uint64_t now)
{
    span_init(s, req, req->otel.span, req->otel.parent, PT_OTEL_SERVER, req->t0, now);
    pt_otel_span_name(s, req->h.method);
    if (req->api) {
        pt_otel_span_name(s, PT_STR(" "));
        pt_otel_span_name(s, pt_str_c(req->api->cf->id));
        if (req->op) {
            pt_otel_span_name(s, PT_STR("/"));
            pt_otel_span_name(s, pt_str_c(req->op->cf->id));
        }
    }
    pt_otel_span_str(s, PT_OTEL_A_METHOD, req->h.method);
    pt_otel_span_int(s, PT_OTEL_A_STATUS, req->status);
    pt_otel_span_str(s, PT_OTEL_A_URL_SCHEME, req->peer->tls ? PT_STR("https") : PT_STR("http"));
    pt_otel_span_str(s, PT_OTEL_A_CLIENT_ADDR, pt_str_c(req->peer->ip));
    if (req->api)
        pt_otel_span_str(s, PT_OTEL_A_API, pt_str_c(req->api->cf->id));
    if (req->op)
        pt_otel_span_str(s, PT_OTEL_A_OPERATION, pt_str_c(req->op->cf->id));
    if (req->product)
        pt_otel_span_str(s, PT_OTEL_A_PRODUCT, pt_str_c(req->product->cf->id));
    if (req->sub)
        pt_otel_span_str(s, PT_OTEL_A_SUBSCRIPTION, pt_str_c(req->sub->cf->id));
    if (req->reason)
        pt_otel_span_str(s, PT_OTEL_A_REASON, pt_str_c(req->reason));
    pt_otel_span_str(s, PT_OTEL_A_REQUEST_ID, (pt_str){req->id, req->idn});
    pt_otel_span_str(s, PT_OTEL_A_SERVER_ADDR, pt_url_host_strip_port(req->h.host));
    pt_otel_span_str(s, PT_OTEL_A_URL_PATH, req->h.path); /* last: the longest, cut first */
    if (req->status >= 500 || req->status == 0)
        s->status = 2;
}

void pt_otel_event(struct pt_req *req, pt_str source, int severity, pt_str message)
{
    struct pt_otel_rec *rec = req->otel.rec;
    if (PT_LIKELY(!rec) || rec->nev == PT_OTEL_EVENTS)
        return;
    size_t sn = PT_MIN(source.len, (size_t)PT_OTEL_TEXT), mn = PT_MIN(message.len, (size_t)PT_OTEL_TEXT);
    char *copy = pt_pool_alloc(req->pool, sn + mn + 1);
    if (!copy)
        return;
    if (sn)
        memcpy(copy, source.data, sn);
    if (mn)
        memcpy(copy + sn, message.data, mn);
    rec->ev[rec->nev].t = pt_clock_now_us();
    rec->ev[rec->nev].sec = (int8_t)rec->open;
    rec->ev[rec->nev].severity = (uint8_t)severity;
    rec->ev[rec->nev].source = (pt_str){copy, sn};
    rec->ev[rec->nev].message = (pt_str){copy + sn, mn};
    rec->nev++;
}

/* The events recorded in section `sec` (-1: outside any) onto span s. */
static void span_events(struct pt_otel_span *s, const struct pt_req *req, const struct pt_otel_rec *rec,
                        int sec)
{
    for (int i = 0; i < rec->nev && s->nevents < PT_OTEL_EVENTS; i++) {
        if (rec->ev[i].sec != sec)
            continue;
        struct pt_otel_event *e = &s->events[s->nevents++];
        e->t_ns = epoch_ns(req, rec->ev[i].t);
        e->severity = rec->ev[i].severity;
        e->msg_off = s->text_len;
        e->msg_len = (uint16_t)span_put(s, rec->ev[i].message);
        e->src_off = s->text_len;
        e->src_len = (uint16_t)span_put(s, rec->ev[i].source);
    }
}

void pt_otel_req_end(struct pt_req *req)
{
    struct pt_otel_rec *rec = req->otel.rec;
    if (!rec)
        return;
    req->otel.rec = NULL;
    uint64_t now = pt_clock_now_us();
    if (rec->open >= 0)
        rec->sec[rec->open].t1 = now;
    int n = 1 + rec->natt;
    for (int i = 0; i < PT_SEC_COUNT; i++)
        n += rec->sec[i].t0 != 0;
    struct pt_otel_queue *qs = atomic_load_explicit(&queues, memory_order_acquire);
    int w = req->peer->worker;
    if (!qs || w < 0 || w >= nqueues) {
        atomic_fetch_add_explicit(&dropped_noqueue, (uint64_t)n, memory_order_relaxed);
        return;
    }
    struct pt_otel_queue *q = &qs[w];
    uint64_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
    uint64_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
    bump(&q->pushed, (uint64_t)n);
    if (h - t + (uint64_t)n > q->mask + 1) {
        bump(&q->dropped, (uint64_t)n); /* the whole request's spans, never part of a trace */
        return;
    }
    struct pt_otel_span *srv = &q->slots[h++ & q->mask];
    server_span(srv, req, now);
    span_events(srv, req, rec, -1);
    for (int i = 0; i < PT_SEC_COUNT; i++) {
        if (!rec->sec[i].t0)
            continue;
        struct pt_otel_span *s = &q->slots[h++ & q->mask];
        span_init(s, req, rec->sec[i].id, req->otel.span, PT_OTEL_INTERNAL, rec->sec[i].t0,
                  rec->sec[i].t1 ? rec->sec[i].t1 : now);
        pt_str name = pt_str_c(pt_msg_section_names[i]);
        pt_otel_span_name(s, name);
        pt_otel_span_str(s, PT_OTEL_A_SECTION, name);
        span_events(s, req, rec, i);
        if (rec->sec[i].error)
            s->status = 2;
    }
    const uint8_t *bparent = rec->sec[PT_SEC_BACKEND].t0 ? rec->sec[PT_SEC_BACKEND].id : req->otel.span;
    for (int i = 0; i < rec->natt; i++) {
        struct pt_otel_span *s = &q->slots[h++ & q->mask];
        bool last = i == rec->natt - 1;
        uint64_t t1 = rec->att[i].t1;
        if (last && req->tb1 > t1)
            t1 = req->tb1; /* the last call ends with its body */
        span_init(s, req, rec->att[i].id, bparent, PT_OTEL_CLIENT, rec->att[i].t0, t1 ? t1 : now);
        pt_otel_span_name(s, req->h.method);
        pt_otel_span_str(s, PT_OTEL_A_METHOD, req->h.method);
        int st = rec->att[i].status;
        if (st)
            pt_otel_span_int(s, PT_OTEL_A_STATUS, st);
        if (i)
            pt_otel_span_int(s, PT_OTEL_A_RESEND, i);
        if (req->be) {
            pt_otel_span_str(s, PT_OTEL_A_SERVER_ADDR, pt_str_c(req->be->url.host));
            pt_otel_span_int(s, PT_OTEL_A_SERVER_PORT, req->be->url.port);
        }
        if (!st) {
            pt_otel_span_str(s, PT_OTEL_A_ERROR_TYPE,
                             last && req->reason ? pt_str_c(req->reason)
                                                 : PT_STR("BackendConnectionFailure"));
            s->status = 2;
        } else if (st >= 400)
            s->status = 2;
    }
    atomic_store_explicit(&q->head, h, memory_order_release);
}
