/*
 * fuzz_otel_context -- the W3C trace context readers on any bytes a client
 * may send: traceparent (pt_otel_parse_traceparent) and tracestate
 * (pt_otel_tracestate_ok, the input cut into several field values at each
 * newline), and the same bytes as span text through both OTLP encoders.
 *
 * Whatever the bytes: an accepted traceparent has non-zero ids and, written
 * back (pt_otel_format_traceparent), reads back to the same context; an
 * accepted tracestate is within its bounds; the JSON body is JSON in valid
 * UTF-8 (jansson reads it) and the protobuf body's outer length is exact.
 */
#include "base/pt_pool.h"
#include "http/pt_otel.h"
#include "http/pt_otel_encode.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pt_str in = {(const char *)data, size};
    struct pt_otel_parent p;
    if (pt_otel_parse_traceparent(in, &p)) {
        static const uint8_t z[16];
        if (!memcmp(p.trace, z, 16) || !memcmp(p.span, z, 8))
            abort();
        char out[PT_OTEL_TRACEPARENT_LEN];
        pt_otel_format_traceparent(out, p.trace, p.span, p.flags);
        struct pt_otel_parent q;
        if (!pt_otel_parse_traceparent((pt_str){out, sizeof(out)}, &q) || memcmp(&p, &q, sizeof(p)))
            abort();
    }
    pt_str vals[16];
    int n = 0;
    size_t start = 0, total = 0;
    for (size_t i = 0; i <= size && n < 16; i++)
        if (i == size || data[i] == '\n') {
            vals[n++] = (pt_str){(const char *)data + start, i - start};
            total += i - start + (n > 1);
            start = i + 1;
        }
    if (pt_otel_tracestate_ok(vals, n)) {
        size_t eq = 0;
        for (int k = 0; k < n; k++)
            for (size_t j = 0; j < vals[k].len; j++)
                eq += vals[k].data[j] == '=';
        if (total > PT_OTEL_STATE_MAX_BYTES || eq > PT_OTEL_STATE_MAX_MEMBERS)
            abort();
    }
    struct pt_otel_span s;
    memset(&s, 0, sizeof(s));
    s.trace[0] = s.span[0] = 1;
    s.kind = PT_OTEL_SERVER;
    pt_otel_span_name(&s, (pt_str){in.data, PT_MIN(in.len, 40)});
    pt_otel_span_str(&s, PT_OTEL_A_URL_PATH, in);
    pt_otel_span_int(&s, PT_OTEL_A_STATUS, (int64_t)size - 100);
    pt_otel_span_str(&s, PT_OTEL_A_SERVER_ADDR, in);
    struct pt_otel_resource res = {"svc", "1", NULL};
    struct pt_pool *pool = pt_pool_new(4096);
    struct pt_buf b;
    pt_buf_init(&b, pool, 256);
    pt_otel_encode_json(&b, &res, &s, 1);
    json_t *doc = json_loadb(b.p, b.n, JSON_ALLOW_NUL, NULL); /* \u0000 is JSON */
    if (!doc)
        abort(); /* not JSON, or not UTF-8 */
    json_decref(doc);
    pt_buf_init(&b, pool, 256);
    pt_otel_encode_proto(&b, &res, &s, 1);
    /* field 1, length-delimited, then a varint length covering the rest exactly */
    const uint8_t *d = (const uint8_t *)b.p;
    if (b.n < 2 || d[0] != 0x0a)
        abort();
    uint64_t len = 0;
    size_t i = 1;
    for (int shift = 0; i < b.n; shift += 7) {
        len |= (uint64_t)(d[i] & 0x7f) << shift;
        if (!(d[i++] & 0x80))
            break;
    }
    if (len != b.n - i)
        abort();
    pt_pool_free(pool);
    return 0;
}

/* Seeds for the standalone runner (standalone.c). */
const char *fuzz_name = "fuzz_otel_context";
const char *const fuzz_seeds[] = {
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more",
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
    "a=1\nb=2, c=3 ,,\nt@sys=v",
    "k=\xff\xc3(\xe2\x82 \"\\\n=x",
    NULL,
};
