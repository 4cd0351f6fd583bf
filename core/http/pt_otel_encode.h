/*
 * pt_otel_encode -- span records (http/pt_otel.h) as an OTLP
 * ExportTraceServiceRequest: OTLP/JSON or protobuf, written by hand (the
 * few messages needed: resource, scope, span, key-value, status).
 *
 * Text from requests (paths, hosts) goes out as valid UTF-8 whatever the
 * bytes were: a byte that does not start a valid sequence becomes U+FFFD,
 * so one odd request cannot make a collector refuse a whole batch.
 */
#ifndef PT_OTEL_ENCODE_H
#define PT_OTEL_ENCODE_H

#include "base/pt_buf.h"
#include "http/pt_otel.h"

/* The resource every span of a batch belongs to. */
struct pt_otel_resource {
    const char *service_name;
    const char *service_version;
    const char *host_name; /* NULL: left out */
};

/* Appends the batch as OTLP/JSON (ids in hex, 64-bit integers as strings). */
void pt_otel_encode_json(struct pt_buf *b, const struct pt_otel_resource *r, const struct pt_otel_span *s,
                         int n);
/* Appends the batch as an OTLP protobuf ExportTraceServiceRequest. */
void pt_otel_encode_proto(struct pt_buf *b, const struct pt_otel_resource *r, const struct pt_otel_span *s,
                          int n);

#endif
