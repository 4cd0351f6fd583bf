/*
 * pt_otel_encode -- OTLP trace export bodies, JSON and protobuf (see
 * pt_otel_encode.h).
 *
 * The protobuf messages used (opentelemetry/proto, field numbers):
 *   ExportTraceServiceRequest { ResourceSpans resource_spans = 1; }
 *   ResourceSpans { Resource resource = 1; ScopeSpans scope_spans = 2; }
 *   Resource { KeyValue attributes = 1; }
 *   ScopeSpans { InstrumentationScope scope = 1; Span spans = 2; }
 *   InstrumentationScope { string name = 1; string version = 2; }
 *   Span { bytes trace_id = 1; bytes span_id = 2; bytes parent_span_id = 4;
 *          string name = 5; SpanKind kind = 6; fixed64 start_time_unix_nano = 7;
 *          fixed64 end_time_unix_nano = 8; KeyValue attributes = 9;
 *          Status status = 15; fixed32 flags = 16; }
 *   KeyValue { string key = 1; AnyValue value = 2; }
 *   AnyValue { string string_value = 1; int64 int_value = 3; }
 *   Status { StatusCode code = 3; }
 * A nested message is written after a 5-byte room for its length, which is
 * then written in as few bytes as it needs and the body moved back.
 */
#include "http/pt_otel_encode.h"
#include "base/pt_utf8.h"

#include <stdio.h>

/* Span.flags: the W3C flags, and whether the parent is known to be remote. */
#define FLAG_HAS_IS_REMOTE 0x100u
#define FLAG_IS_REMOTE 0x200u

/* s as valid UTF-8 into out (room for 3 * s.len bytes); returns the length. */
static size_t utf8_clean(pt_str s, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < s.len;) {
        size_t k = pt_utf8_seq((const unsigned char *)s.data + i, s.len - i);
        if (k) {
            memcpy(out + o, s.data + i, k);
            o += k;
            i += k;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    return o;
}

/* The text of a record (at most PT_OTEL_TEXT bytes), cleaned. */
struct clean {
    char p[3 * PT_OTEL_TEXT + 8];
    size_t n;
};

static pt_str cleaned(struct clean *c, pt_str s)
{
    if (s.len > PT_OTEL_TEXT)
        s.len = PT_OTEL_TEXT;
    c->n = utf8_clean(s, c->p);
    return (pt_str){c->p, c->n};
}

static void hex(struct pt_buf *b, const uint8_t *p, size_t n)
{
    static const char hx[] = "0123456789abcdef";
    char out[32];
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[p[i] >> 4];
        out[2 * i + 1] = hx[p[i] & 15];
    }
    pt_buf_add(b, out, 2 * n);
}

static bool zero8(const uint8_t *p)
{
    static const uint8_t z[8];
    return !memcmp(p, z, 8);
}

static uint32_t span_flags(const struct pt_otel_span *s)
{
    /* only a SERVER span has a parent in another process */
    uint32_t f = s->flags | FLAG_HAS_IS_REMOTE;
    if (s->kind == PT_OTEL_SERVER && !zero8(s->parent))
        f |= FLAG_IS_REMOTE;
    return f;
}

/* ------------------------------------------------------------------ JSON */

static void json_str(struct pt_buf *b, pt_str s)
{
    struct clean c;
    pt_buf_lit(b, "\"");
    pt_buf_json(b, cleaned(&c, s));
    pt_buf_lit(b, "\"");
}

static void json_kv_str(struct pt_buf *b, const char *key, pt_str v)
{
    pt_buf_lit(b, "{\"key\":\"");
    pt_buf_add(b, key, strlen(key));
    pt_buf_lit(b, "\",\"value\":{\"stringValue\":");
    json_str(b, v);
    pt_buf_lit(b, "}}");
}

static void json_u64(struct pt_buf *b, uint64_t v)
{
    pt_buf_lit(b, "\"");
    pt_buf_u64(b, v);
    pt_buf_lit(b, "\"");
}

/* Text of a span record, clamped to its buffer. */
static pt_str span_text(const struct pt_otel_span *s, uint16_t off, uint16_t len)
{
    size_t o = PT_MIN(off, PT_OTEL_TEXT);
    return (pt_str){s->text + o, PT_MIN(len, PT_OTEL_TEXT - o)};
}

/* The trace policy's severities, as APIM names them. */
static const char *severity_name(uint8_t sev)
{
    static const char *const names[] = {"verbose", "information", "error"};
    return names[sev < 3 ? sev : 0];
}

static void json_span(struct pt_buf *b, const struct pt_otel_span *s)
{
    pt_buf_lit(b, "{\"traceId\":\"");
    hex(b, s->trace, 16);
    pt_buf_lit(b, "\",\"spanId\":\"");
    hex(b, s->span, 8);
    pt_buf_lit(b, "\"");
    if (!zero8(s->parent)) {
        pt_buf_lit(b, ",\"parentSpanId\":\"");
        hex(b, s->parent, 8);
        pt_buf_lit(b, "\"");
    }
    pt_buf_lit(b, ",\"flags\":");
    pt_buf_u64(b, span_flags(s));
    pt_buf_lit(b, ",\"name\":");
    json_str(b, (pt_str){s->text, s->name_len});
    pt_buf_lit(b, ",\"kind\":");
    pt_buf_u64(b, s->kind);
    pt_buf_lit(b, ",\"startTimeUnixNano\":");
    json_u64(b, s->start_ns);
    pt_buf_lit(b, ",\"endTimeUnixNano\":");
    json_u64(b, s->end_ns);
    pt_buf_lit(b, ",\"attributes\":[");
    for (int i = 0, put = 0; i < s->nattrs && i < PT_OTEL_MAX_ATTRS; i++) {
        const struct pt_otel_attr *a = &s->attrs[i];
        if (a->key >= PT_OTEL_A_COUNT)
            continue;
        if (put++)
            pt_buf_lit(b, ",");
        const char *k = pt_otel_attr_names[a->key];
        if (a->num) {
            pt_buf_lit(b, "{\"key\":\"");
            pt_buf_add(b, k, strlen(k));
            pt_buf_lit(b, "\",\"value\":{\"intValue\":\"");
            char num[24];
            int m = snprintf(num, sizeof(num), "%lld", (long long)a->value);
            pt_buf_add(b, num, (size_t)m);
            pt_buf_lit(b, "\"}}");
        } else {
            size_t off = PT_MIN(a->off, PT_OTEL_TEXT), len = PT_MIN(a->len, PT_OTEL_TEXT - off);
            json_kv_str(b, k, (pt_str){s->text + off, len});
        }
    }
    pt_buf_lit(b, "]");
    if (s->nevents) {
        pt_buf_lit(b, ",\"events\":[");
        for (int i = 0; i < s->nevents && i < PT_OTEL_EVENTS; i++) {
            const struct pt_otel_event *ev = &s->events[i];
            if (i)
                pt_buf_lit(b, ",");
            pt_buf_lit(b, "{\"timeUnixNano\":");
            json_u64(b, ev->t_ns);
            pt_buf_lit(b, ",\"name\":");
            json_str(b, span_text(s, ev->msg_off, ev->msg_len));
            pt_buf_lit(b, ",\"attributes\":[");
            json_kv_str(b, "portico.trace.source", span_text(s, ev->src_off, ev->src_len));
            pt_buf_lit(b, ",");
            json_kv_str(b, "portico.trace.severity", pt_str_c(severity_name(ev->severity)));
            pt_buf_lit(b, "]}");
        }
        pt_buf_lit(b, "]");
    }
    if (s->status) {
        pt_buf_lit(b, ",\"status\":{\"code\":");
        pt_buf_u64(b, s->status);
        pt_buf_lit(b, "}");
    }
    pt_buf_lit(b, "}");
}

static void json_resource(struct pt_buf *b, const struct pt_otel_resource *r)
{
    pt_buf_lit(b, "{\"resource\":{\"attributes\":[");
    json_kv_str(b, "service.name", pt_str_c(r->service_name));
    pt_buf_lit(b, ",");
    json_kv_str(b, "service.version", pt_str_c(r->service_version));
    if (r->host_name) {
        pt_buf_lit(b, ",");
        json_kv_str(b, "host.name", pt_str_c(r->host_name));
    }
    pt_buf_lit(b, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"portico\",\"version\":");
    json_str(b, pt_str_c(r->service_version));
    pt_buf_lit(b, "},\"spans\":[");
}

void pt_otel_encode_json(struct pt_buf *b, const struct pt_otel_resource *r, const struct pt_otel_span *s,
                         int n)
{
    pt_buf_lit(b, "{\"resourceSpans\":[");
    json_resource(b, r);
    for (int i = 0; i < n; i++) {
        if (i)
            pt_buf_lit(b, ",");
        json_span(b, &s[i]);
    }
    pt_buf_lit(b, "]}]}]}");
}

/* -------------------------------------------------------------- protobuf */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

static size_t varint_put(uint8_t *o, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        o[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    o[n++] = (uint8_t)v;
    return n;
}

static void pb_varint(struct pt_buf *b, uint64_t v)
{
    uint8_t o[10];
    pt_buf_add(b, o, varint_put(o, v));
}

static void pb_tag(struct pt_buf *b, unsigned field, unsigned wt)
{
    pb_varint(b, (uint64_t)field << 3 | wt);
}

static void pb_bytes(struct pt_buf *b, unsigned field, const void *p, size_t n)
{
    pb_tag(b, field, WT_LEN);
    pb_varint(b, n);
    pt_buf_add(b, p, n);
}

static void pb_str(struct pt_buf *b, unsigned field, pt_str s)
{
    struct clean c;
    pt_str t = cleaned(&c, s);
    pb_bytes(b, field, t.data, t.len);
}

static void pb_fixed64(struct pt_buf *b, unsigned field, uint64_t v)
{
    uint8_t o[8];
    for (int i = 0; i < 8; i++)
        o[i] = (uint8_t)(v >> (8 * i));
    pb_tag(b, field, WT_I64);
    pt_buf_add(b, o, 8);
}

static void pb_fixed32(struct pt_buf *b, unsigned field, uint32_t v)
{
    uint8_t o[4];
    for (int i = 0; i < 4; i++)
        o[i] = (uint8_t)(v >> (8 * i));
    pb_tag(b, field, WT_I32);
    pt_buf_add(b, o, 4);
}

#define LEN_ROOM 5

/* Starts a nested message; returns where its body starts. */
static size_t pb_open(struct pt_buf *b, unsigned field)
{
    static const uint8_t room[LEN_ROOM];
    pb_tag(b, field, WT_LEN);
    pt_buf_add(b, room, LEN_ROOM);
    return b->n;
}

/* Ends the nested message whose body started at `at`: its length goes in. */
static void pb_close(struct pt_buf *b, size_t at)
{
    if (b->n < at || at < LEN_ROOM)
        return; /* the arena failed: the caller sees it */
    size_t len = b->n - at;
    uint8_t o[10];
    size_t k = varint_put(o, len);
    char *start = b->p + at - LEN_ROOM;
    memmove(start + k, b->p + at, len);
    memcpy(start, o, k);
    b->n -= LEN_ROOM - k;
}

static void pb_kv_str(struct pt_buf *b, unsigned field, const char *key, pt_str v)
{
    size_t kv = pb_open(b, field);
    pb_bytes(b, 1, key, strlen(key));
    size_t av = pb_open(b, 2);
    pb_str(b, 1, v);
    pb_close(b, av);
    pb_close(b, kv);
}

static void pb_kv_int(struct pt_buf *b, unsigned field, const char *key, int64_t v)
{
    size_t kv = pb_open(b, field);
    pb_bytes(b, 1, key, strlen(key));
    size_t av = pb_open(b, 2);
    pb_tag(b, 3, WT_VARINT);
    pb_varint(b, (uint64_t)v);
    pb_close(b, av);
    pb_close(b, kv);
}

static void pb_span(struct pt_buf *b, const struct pt_otel_span *s)
{
    size_t sp = pb_open(b, 2); /* ScopeSpans.spans */
    pb_bytes(b, 1, s->trace, 16);
    pb_bytes(b, 2, s->span, 8);
    if (!zero8(s->parent))
        pb_bytes(b, 4, s->parent, 8);
    pb_str(b, 5, (pt_str){s->text, PT_MIN(s->name_len, PT_OTEL_TEXT)});
    pb_tag(b, 6, WT_VARINT);
    pb_varint(b, s->kind);
    pb_fixed64(b, 7, s->start_ns);
    pb_fixed64(b, 8, s->end_ns);
    for (int i = 0; i < s->nattrs && i < PT_OTEL_MAX_ATTRS; i++) {
        const struct pt_otel_attr *a = &s->attrs[i];
        if (a->key >= PT_OTEL_A_COUNT)
            continue;
        if (a->num)
            pb_kv_int(b, 9, pt_otel_attr_names[a->key], a->value);
        else {
            size_t off = PT_MIN(a->off, PT_OTEL_TEXT), len = PT_MIN(a->len, PT_OTEL_TEXT - off);
            pb_kv_str(b, 9, pt_otel_attr_names[a->key], (pt_str){s->text + off, len});
        }
    }
    for (int i = 0; i < s->nevents && i < PT_OTEL_EVENTS; i++) {
        const struct pt_otel_event *ev = &s->events[i];
        size_t eo = pb_open(b, 11); /* Span.events */
        pb_fixed64(b, 1, ev->t_ns);
        pb_str(b, 2, span_text(s, ev->msg_off, ev->msg_len));
        pb_kv_str(b, 3, "portico.trace.source", span_text(s, ev->src_off, ev->src_len));
        pb_kv_str(b, 3, "portico.trace.severity", pt_str_c(severity_name(ev->severity)));
        pb_close(b, eo);
    }
    if (s->status) {
        size_t st = pb_open(b, 15);
        pb_tag(b, 3, WT_VARINT);
        pb_varint(b, s->status);
        pb_close(b, st);
    }
    pb_fixed32(b, 16, span_flags(s));
    pb_close(b, sp);
}

void pt_otel_encode_proto(struct pt_buf *b, const struct pt_otel_resource *r, const struct pt_otel_span *s,
                          int n)
{
    size_t rs = pb_open(b, 1); /* ExportTraceServiceRequest.resource_spans */
    size_t res = pb_open(b, 1);
    pb_kv_str(b, 1, "service.name", pt_str_c(r->service_name));
    pb_kv_str(b, 1, "service.version", pt_str_c(r->service_version));
    if (r->host_name)
        pb_kv_str(b, 1, "host.name", pt_str_c(r->host_name));
    pb_close(b, res);
    size_t ss = pb_open(b, 2);
    size_t scope = pb_open(b, 1);
    pb_bytes(b, 1, "portico", 7);
    pb_str(b, 2, pt_str_c(r->service_version));
    pb_close(b, scope);
    for (int i = 0; i < n; i++)
        pb_span(b, &s[i]);
    pb_close(b, ss);
    pb_close(b, rs);
}
