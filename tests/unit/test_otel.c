/*
 * test_otel -- OpenTelemetry's pure parts: traceparent parsing (the W3C
 * Trace Context cases, valid and invalid), tracestate checks and bounds,
 * traceparent formatting, ratio sampling from the trace id, span records
 * and their OTLP encodings: JSON read back with jansson, protobuf read back
 * with a small reader of its own; bytes that are not UTF-8 come out as
 * U+FFFD in both.
 */
#include "base/pt_pool.h"
#include "http/pt_otel.h"
#include "http/pt_otel_encode.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#define TRACE "4bf92f3577b34da6a3ce929d0e0e4736"
#define SPAN "00f067aa0ba902b7"

static bool tp(const char *s, struct pt_otel_parent *out)
{
    return pt_otel_parse_traceparent(pt_str_c(s), out);
}

static void test_traceparent_valid(void **state)
{
    (void)state;
    struct pt_otel_parent p;
    assert_true(tp("00-" TRACE "-" SPAN "-01", &p));
    assert_int_equal(p.trace[0], 0x4b);
    assert_int_equal(p.trace[15], 0x36);
    assert_int_equal(p.span[0], 0x00);
    assert_int_equal(p.span[7], 0xb7);
    assert_int_equal(p.flags, 1);
    assert_true(tp("00-" TRACE "-" SPAN "-00", &p));
    assert_int_equal(p.flags, 0);
    /* flags other than sampled are read (and not sent on) */
    assert_true(tp("00-" TRACE "-" SPAN "-ff", &p));
    assert_int_equal(p.flags, 0xff);
    /* OWS around the value */
    assert_true(tp(" 00-" TRACE "-" SPAN "-01\t", &p));
    /* a later version: its first four fields, then the end or a dash */
    assert_true(tp("01-" TRACE "-" SPAN "-01", &p));
    assert_true(tp("cc-" TRACE "-" SPAN "-01-anything", &p));
    assert_int_equal(p.flags, 1);
}

static void test_traceparent_invalid(void **state)
{
    (void)state;
    struct pt_otel_parent p;
    static const char *const bad[] = {
        "",
        "00",
        "00-" TRACE "-" SPAN,                                 /* no flags */
        "00-" TRACE "-" SPAN "-1",                            /* short flags */
        "00-" TRACE "-" SPAN "-011",                          /* long flags */
        "00-" TRACE "-" SPAN "-01-",                          /* version 00 ends there */
        "00-" TRACE "-" SPAN "-01-xyz",                       /* ... */
        "ff-" TRACE "-" SPAN "-01",                           /* version ff is invalid */
        "0-" TRACE "-" SPAN "-01",                            /* short version */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-" SPAN "-01",    /* upper case */
        "00-" TRACE "-00F067AA0BA902B7-01",                   /* upper case */
        "00-" TRACE "-" SPAN "-0A",                           /* upper case */
        "0A-" TRACE "-" SPAN "-01",                           /* upper case */
        "00-00000000000000000000000000000000-" SPAN "-01",    /* zero trace id */
        "00-" TRACE "-0000000000000000-01",                   /* zero parent id */
        "00-" TRACE "0-" SPAN "-01",                          /* long trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e473-" SPAN "-01",     /* short trace id */
        "00_" TRACE "-" SPAN "-01",                           /* separator */
        "00-" TRACE "_" SPAN "-01",                           /* separator */
        "00-" TRACE "-" SPAN "_01",                           /* separator */
        "00-4bf92f3577b34da6a3ce929d0e0e473g-" SPAN "-01",    /* not hex */
        "00-" TRACE "-00f067aa0ba902bz-01",                   /* not hex */
        "cc-" TRACE "-" SPAN "-01.more",                      /* later version: not a dash */
        "00 -" TRACE "-" SPAN "-01",                          /* space inside */
        "00-" TRACE "-" SPAN "-01, 00-" TRACE "-" SPAN "-01", /* two values */
    };
    for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++) {
        if (tp(bad[i], &p))
            fail_msg("accepted '%s'", bad[i]);
    }
    /* an embedded NUL is not a character the parser skips */
    char nul[] = "00-" TRACE "-" SPAN "-01";
    nul[10] = '\0';
    assert_false(pt_otel_parse_traceparent((pt_str){nul, sizeof(nul) - 1}, &p));
}

static bool ts1(const char *s)
{
    pt_str v = pt_str_c(s);
    return pt_otel_tracestate_ok(&v, 1);
}

static void test_tracestate(void **state)
{
    (void)state;
    assert_true(ts1("congo=t61rcWkgMzE"));
    assert_true(ts1("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
    assert_true(ts1("rojo=1 , congo=2"));      /* OWS */
    assert_true(ts1("a=1,,b=2"));              /* empty members */
    assert_true(ts1(""));                      /* nothing at all */
    assert_true(ts1("tenant@vendor=x"));       /* multi-tenant key */
    assert_true(ts1("0tenant@v=x"));           /* a tenant may start with a digit */
    assert_true(ts1("k_-*/9=v a!\"#$%&'()+")); /* value characters, an inner space */
    assert_false(ts1("Upper=v"));              /* keys are lower case */
    assert_false(ts1("9key=v"));               /* a simple key starts with a letter */
    assert_false(ts1("k=v,k=w"));              /* a key once */
    assert_false(ts1("novalue"));
    assert_false(ts1("k="));         /* empty value */
    assert_false(ts1("k=a,b"));      /* "b" has no value */
    assert_false(ts1("k=a=b"));      /* '=' in a value */
    assert_false(ts1("k=\x01"));     /* control character */
    assert_false(ts1("k=\xc3\xa9")); /* not ASCII */
    assert_false(ts1("t@=x"));       /* empty system id */
    assert_false(ts1("t@Sys=x"));
    assert_false(ts1("t@s0123456789abcd=x")); /* system id of 15 characters */
    assert_true(ts1("t@s0123456789abc=x"));   /* ... 14 is the most */
    /* 32 members pass, 33 do not */
    char buf[1024];
    size_t o = 0;
    for (int i = 0; i < 32; i++)
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%sk%d=v", i ? "," : "", i);
    assert_true(ts1(buf));
    snprintf(buf + o, sizeof(buf) - o, ",k32=v");
    assert_false(ts1(buf));
    /* several fields are one list: members and keys are counted across them */
    pt_str two[2] = {pt_str_c("a=1"), pt_str_c("a=2")};
    assert_false(pt_otel_tracestate_ok(two, 2));
    pt_str ok2[2] = {pt_str_c("a=1"), pt_str_c("b=2")};
    assert_true(pt_otel_tracestate_ok(ok2, 2));
}

static void test_tracestate_bytes(void **state)
{
    (void)state;
    /* "a=" + 250 + ",b=" + 250 + ",c=" + 5 = 2 + 250 + 3 + 250 + 3 + 5 = 513 */
    char buf[600];
    size_t o = 0;
    memcpy(buf + o, "a=", 2), o += 2;
    memset(buf + o, 'x', 250), o += 250;
    memcpy(buf + o, ",b=", 3), o += 3;
    memset(buf + o, 'y', 250), o += 250;
    memcpy(buf + o, ",c=", 3), o += 3;
    memset(buf + o, 'z', 4), o += 4;
    buf[o] = '\0';
    assert_int_equal(o, 512);
    assert_true(ts1(buf));
    buf[o++] = 'z';
    buf[o] = '\0';
    assert_false(ts1(buf));
    /* a value of 256 characters is the longest */
    memcpy(buf, "k=", 2);
    memset(buf + 2, 'v', 256);
    buf[258] = '\0';
    assert_true(ts1(buf));
    buf[258] = 'v';
    buf[259] = '\0';
    assert_false(ts1(buf));
}

static void test_format_and_sampling(void **state)
{
    (void)state;
    struct pt_otel_parent p;
    assert_true(tp("00-" TRACE "-" SPAN "-01", &p));
    char out[PT_OTEL_TRACEPARENT_LEN + 1] = {0};
    pt_otel_format_traceparent(out, p.trace, p.span, 1);
    assert_string_equal(out, "00-" TRACE "-" SPAN "-01");
    pt_otel_format_traceparent(out, p.trace, p.span, 0);
    assert_string_equal(out, "00-" TRACE "-" SPAN "-00");

    uint8_t t[16] = {0};
    assert_true(pt_otel_ratio_sampled(t, 1.0));
    assert_false(pt_otel_ratio_sampled(t, 0.0));
    assert_true(pt_otel_ratio_sampled(t, 0.0001)); /* the lowest id is sampled at any ratio above 0 */
    memset(t + 9, 0xff, 7);
    assert_false(pt_otel_ratio_sampled(t, 0.9999));
    assert_true(pt_otel_ratio_sampled(t, 1.0));
    /* the first bytes play no part */
    memset(t, 0xff, 9);
    t[9] = 0x7f;
    memset(t + 10, 0xff, 6);
    assert_true(pt_otel_ratio_sampled(t, 0.5));
    t[9] = 0x80;
    memset(t + 10, 0, 6);
    assert_false(pt_otel_ratio_sampled(t, 0.5));
    /* about the ratio over many random ids */
    uint64_t rng[2] = {0x9e3779b97f4a7c15ull, 0xbf58476d1ce4e5b9ull};
    int hit = 0;
    for (int i = 0; i < 20000; i++) {
        pt_otel_random(rng, t, 16);
        hit += pt_otel_ratio_sampled(t, 0.25);
    }
    assert_in_range(hit, 4500, 5500);
    uint8_t id[8];
    pt_otel_random(rng, id, 8);
    static const uint8_t zero[8];
    assert_memory_not_equal(id, zero, 8);
}

/* ---- a span and its encodings ---- */

static void make_span(struct pt_otel_span *s, const char *path)
{
    memset(s, 0, sizeof(*s));
    struct pt_otel_parent p;
    assert_true(tp("00-" TRACE "-" SPAN "-01", &p));
    memcpy(s->trace, p.trace, 16);
    memcpy(s->parent, p.span, 8);
    for (int i = 0; i < 8; i++)
        s->span[i] = (uint8_t)(0x10 + i);
    s->kind = PT_OTEL_SERVER;
    s->status = 2;
    s->flags = 1;
    s->start_ns = 1700000000123456789ull;
    s->end_ns = 1700000000223456789ull;
    pt_otel_span_name(s, PT_STR("GET "));
    pt_otel_span_name(s, PT_STR("echo/get"));
    pt_otel_span_str(s, PT_OTEL_A_METHOD, PT_STR("GET"));
    pt_otel_span_int(s, PT_OTEL_A_STATUS, 503);
    pt_otel_span_int(s, PT_OTEL_A_SERVER_PORT, -7);
    pt_otel_span_str(s, PT_OTEL_A_URL_PATH, pt_str_c(path));
}

static const struct pt_otel_resource RES = {"svc \"q\"", "1.2.3", "host-1"};

static json_t *attr(json_t *attrs, const char *key)
{
    size_t i;
    json_t *a;
    json_array_foreach(attrs, i, a)
    {
        if (!strcmp(json_string_value(json_object_get(a, "key")), key))
            return json_object_get(a, "value");
    }
    return NULL;
}

static void test_json(void **state)
{
    (void)state;
    struct pt_otel_span s[2];
    make_span(&s[0], "/items/\xff\xc3(\xe2\x82 \"x\"\n");
    make_span(&s[1], "/b");
    memset(s[1].parent, 0, 8);
    s[1].kind = PT_OTEL_CLIENT;
    s[1].status = 0;
    struct pt_pool *pool = pt_pool_new(4096);
    struct pt_buf b;
    pt_buf_init(&b, pool, 64);
    pt_otel_encode_json(&b, &RES, s, 2);
    json_error_t err;
    json_t *doc = json_loadb(b.p, b.n, 0, &err); /* jansson refuses invalid UTF-8 */
    if (!doc)
        fail_msg("not JSON: %s: %.*s", err.text, (int)b.n, b.p);
    json_t *rs = json_array_get(json_object_get(doc, "resourceSpans"), 0);
    json_t *rattrs = json_object_get(json_object_get(rs, "resource"), "attributes");
    assert_string_equal(json_string_value(json_object_get(attr(rattrs, "service.name"), "stringValue")),
                        "svc \"q\"");
    assert_string_equal(json_string_value(json_object_get(attr(rattrs, "host.name"), "stringValue")),
                        "host-1");
    json_t *ss = json_array_get(json_object_get(rs, "scopeSpans"), 0);
    json_t *spans = json_object_get(ss, "spans");
    assert_int_equal(json_array_size(spans), 2);
    json_t *a = json_array_get(spans, 0);
    assert_string_equal(json_string_value(json_object_get(a, "traceId")), TRACE);
    assert_string_equal(json_string_value(json_object_get(a, "parentSpanId")), SPAN);
    assert_string_equal(json_string_value(json_object_get(a, "spanId")), "1011121314151617");
    assert_string_equal(json_string_value(json_object_get(a, "name")), "GET echo/get");
    assert_int_equal(json_integer_value(json_object_get(a, "kind")), 2);
    assert_int_equal(json_integer_value(json_object_get(a, "flags")), 0x301);
    assert_string_equal(json_string_value(json_object_get(a, "startTimeUnixNano")), "1700000000123456789");
    assert_string_equal(json_string_value(json_object_get(a, "endTimeUnixNano")), "1700000000223456789");
    json_t *attrs = json_object_get(a, "attributes");
    assert_string_equal(
        json_string_value(json_object_get(attr(attrs, "http.response.status_code"), "intValue")), "503");
    assert_string_equal(json_string_value(json_object_get(attr(attrs, "server.port"), "intValue")), "-7");
    assert_string_equal(json_string_value(json_object_get(attr(attrs, "url.path"), "stringValue")),
                        "/items/\xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd \"x\"\n");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(a, "status"), "code")), 2);
    json_t *c = json_array_get(spans, 1);
    assert_null(json_object_get(c, "parentSpanId"));
    assert_null(json_object_get(c, "status"));
    assert_int_equal(json_integer_value(json_object_get(c, "flags")), 0x101);
    json_decref(doc);
    pt_pool_free(pool);
}

/* ---- a protobuf reader for the test ---- */

struct pbf {
    unsigned field, wt;
    uint64_t v;
    const uint8_t *p;
    size_t n;
};

static size_t pb_next(const uint8_t *d, size_t n, size_t *i, struct pbf *f)
{
    uint64_t key = 0;
    int shift = 0;
    while (*i < n) {
        uint8_t b = d[(*i)++];
        key |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80))
            break;
    }
    f->field = (unsigned)(key >> 3);
    f->wt = (unsigned)(key & 7);
    f->v = 0;
    f->p = NULL;
    f->n = 0;
    if (f->wt == 0 || f->wt == 2) {
        uint64_t v = 0;
        shift = 0;
        while (*i < n) {
            uint8_t b = d[(*i)++];
            v |= (uint64_t)(b & 0x7f) << shift;
            shift += 7;
            if (!(b & 0x80))
                break;
        }
        if (f->wt == 0)
            f->v = v;
        else {
            assert_true(*i + v <= n);
            f->p = d + *i;
            f->n = (size_t)v;
            *i += (size_t)v;
        }
    } else if (f->wt == 1 || f->wt == 5) {
        size_t k = f->wt == 1 ? 8 : 4;
        assert_true(*i + k <= n);
        for (size_t j = 0; j < k; j++)
            f->v |= (uint64_t)d[*i + j] << (8 * j);
        *i += k;
    } else
        fail_msg("wire type %u", f->wt);
    return *i;
}

/* The first field `field` of a message (its bytes or value). */
static bool pb_get(const uint8_t *d, size_t n, unsigned field, int nth, struct pbf *out)
{
    size_t i = 0;
    while (i < n) {
        pb_next(d, n, &i, out);
        if (out->field == field && nth-- == 0)
            return true;
    }
    return false;
}

static void test_proto(void **state)
{
    (void)state;
    struct pt_otel_span s[3];
    make_span(&s[0], "/items/\xff");
    make_span(&s[1], "/b");
    make_span(&s[2], "/c");
    /* a long text makes lengths of two varint bytes */
    char longp[300];
    memset(longp, 'p', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = '\0';
    make_span(&s[2], longp);
    struct pt_pool *pool = pt_pool_new(4096);
    struct pt_buf b;
    pt_buf_init(&b, pool, 64);
    pt_otel_encode_proto(&b, &RES, s, 3);
    const uint8_t *d = (const uint8_t *)b.p;
    struct pbf rs, res, kv, ss, sp, f, scope;
    assert_true(pb_get(d, b.n, 1, 0, &rs));
    assert_false(pb_get(d, b.n, 1, 1, &f)); /* one ResourceSpans */
    assert_true(pb_get(rs.p, rs.n, 1, 0, &res));
    assert_true(pb_get(res.p, res.n, 1, 0, &kv));
    assert_true(pb_get(kv.p, kv.n, 1, 0, &f));
    assert_int_equal(f.n, 12);
    assert_memory_equal(f.p, "service.name", 12);
    assert_true(pb_get(kv.p, kv.n, 2, 0, &f));
    struct pbf sv;
    assert_true(pb_get(f.p, f.n, 1, 0, &sv));
    assert_int_equal(sv.n, 7);
    assert_memory_equal(sv.p, "svc \"q\"", 7);
    assert_true(pb_get(rs.p, rs.n, 2, 0, &ss));
    assert_true(pb_get(ss.p, ss.n, 1, 0, &scope));
    assert_true(pb_get(scope.p, scope.n, 1, 0, &f));
    assert_memory_equal(f.p, "portico", 7);
    for (int k = 0; k < 3; k++)
        assert_true(pb_get(ss.p, ss.n, 2, k, &sp));
    assert_false(pb_get(ss.p, ss.n, 2, 3, &sp));
    assert_true(pb_get(ss.p, ss.n, 2, 0, &sp));
    assert_true(pb_get(sp.p, sp.n, 1, 0, &f));
    assert_int_equal(f.n, 16);
    assert_memory_equal(f.p, s[0].trace, 16);
    assert_true(pb_get(sp.p, sp.n, 2, 0, &f));
    assert_memory_equal(f.p, s[0].span, 8);
    assert_true(pb_get(sp.p, sp.n, 4, 0, &f));
    assert_memory_equal(f.p, s[0].parent, 8);
    assert_true(pb_get(sp.p, sp.n, 5, 0, &f));
    assert_int_equal(f.n, 12);
    assert_memory_equal(f.p, "GET echo/get", 12);
    assert_true(pb_get(sp.p, sp.n, 6, 0, &f));
    assert_int_equal(f.v, 2);
    assert_true(pb_get(sp.p, sp.n, 7, 0, &f));
    assert_int_equal(f.wt, 1);
    assert_true(f.v == 1700000000123456789ull);
    assert_true(pb_get(sp.p, sp.n, 8, 0, &f));
    assert_true(f.v == 1700000000223456789ull);
    assert_true(pb_get(sp.p, sp.n, 16, 0, &f));
    assert_int_equal(f.wt, 5);
    assert_int_equal(f.v, 0x301);
    assert_true(pb_get(sp.p, sp.n, 15, 0, &f));
    struct pbf code;
    assert_true(pb_get(f.p, f.n, 3, 0, &code));
    assert_int_equal(code.v, 2);
    /* attributes in order: method, status, port (negative: ten-byte varint), path */
    assert_true(pb_get(sp.p, sp.n, 9, 1, &kv));
    struct pbf av, iv;
    assert_true(pb_get(kv.p, kv.n, 2, 0, &av));
    assert_true(pb_get(av.p, av.n, 3, 0, &iv));
    assert_int_equal(iv.v, 503);
    assert_true(pb_get(sp.p, sp.n, 9, 2, &kv));
    assert_true(pb_get(kv.p, kv.n, 2, 0, &av));
    assert_true(pb_get(av.p, av.n, 3, 0, &iv));
    assert_int_equal((int64_t)iv.v, -7);
    assert_true(pb_get(sp.p, sp.n, 9, 3, &kv));
    assert_true(pb_get(kv.p, kv.n, 2, 0, &av));
    assert_true(pb_get(av.p, av.n, 1, 0, &f));
    assert_int_equal(f.n, 10);
    assert_memory_equal(f.p, "/items/\xef\xbf\xbd", 10);
    /* the long path of the third span */
    assert_true(pb_get(ss.p, ss.n, 2, 2, &sp));
    assert_true(pb_get(sp.p, sp.n, 9, 3, &kv));
    assert_true(pb_get(kv.p, kv.n, 2, 0, &av));
    assert_true(pb_get(av.p, av.n, 1, 0, &f));
    assert_true(f.n > 128 && f.n <= PT_OTEL_TEXT);
    pt_pool_free(pool);
}

static void test_record_bounds(void **state)
{
    (void)state;
    struct pt_otel_span s;
    memset(&s, 0, sizeof(s));
    char big[2 * PT_OTEL_TEXT];
    memset(big, 'x', sizeof(big));
    pt_otel_span_name(&s, (pt_str){big, 100});
    for (int i = 0; i < 40; i++)
        pt_otel_span_str(&s, PT_OTEL_A_URL_PATH, (pt_str){big, sizeof(big)});
    assert_int_equal(s.nattrs, 1); /* the text is full after the first */
    assert_int_equal(s.text_len, PT_OTEL_TEXT);
    assert_int_equal(s.attrs[0].len, PT_OTEL_TEXT - 100);
    for (int i = 0; i < 40; i++)
        pt_otel_span_int(&s, PT_OTEL_A_STATUS, i);
    assert_int_equal(s.nattrs, PT_OTEL_MAX_ATTRS);
    pt_otel_span_name(&s, PT_STR("late")); /* after attributes: ignored */
    assert_int_equal(s.name_len, 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traceparent_valid),
        cmocka_unit_test(test_traceparent_invalid),
        cmocka_unit_test(test_tracestate),
        cmocka_unit_test(test_tracestate_bytes),
        cmocka_unit_test(test_format_and_sampling),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_proto),
        cmocka_unit_test(test_record_bounds),
    };
    return cmocka_run_group_tests_name("otel", tests, NULL, NULL);
}
