/*
 * pt_otel -- OpenTelemetry tracing on the request path: the W3C trace
 * context (traceparent, tracestate), sampling, the spans of a request and
 * the per-worker queues that carry them to the exporter thread
 * (http/pt_otel_export.c).
 *
 * A request of a configuration with `telemetry` gets a trace context when
 * its head is read (pt_otel_req_start): the caller's, when its traceparent
 * is valid, else a new trace.  Every backend call names a new span of the
 * gateway's in the traceparent it carries.  A sampled request whose spans
 * are exported (telemetry.endpoint) also records the times of its policy
 * sections and backend attempts in its arena; when it ends
 * (pt_otel_req_end) its spans are copied as fixed-size records into the
 * worker's queue, a single-producer single-consumer ring: when it is full
 * the spans are dropped and counted, the worker never waits.  A request that
 * is not recorded costs a flag test at each hook and allocates nothing.
 */
#ifndef PT_OTEL_H
#define PT_OTEL_H

#include "base/pt.h"
#include "base/pt_buf.h"
#include "http/pt_msg.h"

#include <stdatomic.h>

/* ---- W3C Trace Context ---- */

#define PT_OTEL_TRACEPARENT_LEN 55   /* "00-" 32 "-" 16 "-" 2 */
#define PT_OTEL_STATE_MAX_MEMBERS 32 /* tracestate list members passed on at most */
#define PT_OTEL_STATE_MAX_BYTES 512  /* ... and bytes, all values together */

struct pt_otel_parent {
    uint8_t trace[16];
    uint8_t span[8];
    uint8_t flags; /* bit 0: sampled */
};

/* Parses a traceparent value (version 00 exactly; a later version by its
   first four fields, as the specification asks; never ff).  false when it
   is not valid: lower-case hex only, trace and parent ids not all zeros. */
bool pt_otel_parse_traceparent(pt_str v, struct pt_otel_parent *out);
/* Checks tracestate (the values of every tracestate field, in order, as one
   list): keys and values as the specification writes them, no key twice, at
   most PT_OTEL_STATE_MAX_MEMBERS members and PT_OTEL_STATE_MAX_BYTES bytes.
   false: it is not passed on. */
bool pt_otel_tracestate_ok(const pt_str *values, int n);
/* Writes "00-<trace>-<span>-<flags>" (PT_OTEL_TRACEPARENT_LEN bytes, no NUL). */
void pt_otel_format_traceparent(char *out, const uint8_t trace[16], const uint8_t span[8], uint8_t flags);
/* Is a trace of this id sampled at `ratio` (0..1)?  Decided from the id's
   last 7 bytes (its random part in W3C Trace Context level 2), so every node
   with the same ratio decides the same. */
bool pt_otel_ratio_sampled(const uint8_t trace[16], double ratio);
/* Random bytes from a worker's xorshift128+ state (never all zeros). */
void pt_otel_random(uint64_t *rng, uint8_t *out, size_t n);

/* ---- span records ---- */

enum pt_otel_kind { PT_OTEL_INTERNAL = 1, PT_OTEL_SERVER = 2, PT_OTEL_CLIENT = 3 };

/* Attribute keys, by number (pt_otel_attr_names). */
enum pt_otel_akey {
    PT_OTEL_A_METHOD,       /* http.request.method */
    PT_OTEL_A_URL_PATH,     /* url.path */
    PT_OTEL_A_URL_SCHEME,   /* url.scheme */
    PT_OTEL_A_ROUTE,        /* http.route */
    PT_OTEL_A_STATUS,       /* http.response.status_code */
    PT_OTEL_A_SERVER_ADDR,  /* server.address */
    PT_OTEL_A_SERVER_PORT,  /* server.port */
    PT_OTEL_A_CLIENT_ADDR,  /* client.address */
    PT_OTEL_A_API,          /* portico.api.id */
    PT_OTEL_A_OPERATION,    /* portico.operation.id */
    PT_OTEL_A_PRODUCT,      /* portico.product.id */
    PT_OTEL_A_SUBSCRIPTION, /* portico.subscription.id */
    PT_OTEL_A_REASON,       /* portico.error.reason */
    PT_OTEL_A_REQUEST_ID,   /* portico.request.id */
    PT_OTEL_A_SECTION,      /* portico.policy.section */
    PT_OTEL_A_RESEND,       /* http.request.resend_count */
    PT_OTEL_A_ERROR_TYPE,   /* error.type */
    PT_OTEL_A_COUNT
};
extern const char *const pt_otel_attr_names[PT_OTEL_A_COUNT];

#define PT_OTEL_MAX_ATTRS 14
#define PT_OTEL_TEXT 400
#define PT_OTEL_EVENTS 4 /* span events (the trace policy's) per span at most */

struct pt_otel_attr {
    uint8_t key; /* enum pt_otel_akey */
    bool num;    /* an integer (value), else text[off, off + len) */
    uint16_t off, len;
    int64_t value;
};

/* A span event: the trace policy's message (the event's name), source and severity. */
struct pt_otel_event {
    uint64_t t_ns; /* Unix epoch */
    uint16_t msg_off, msg_len, src_off, src_len;
    uint8_t severity; /* PT_TRACE_SEV_* */
};

/* One finished span, as the queue carries it (fixed size: no allocation). */
struct pt_otel_span {
    uint8_t trace[16];
    uint8_t span[8];
    uint8_t parent[8];         /* all zeros: a root span */
    uint64_t start_ns, end_ns; /* Unix epoch */
    uint8_t kind;              /* enum pt_otel_kind */
    uint8_t status;            /* 0 unset, 2 error */
    uint8_t flags;             /* W3C trace flags */
    uint8_t nattrs;
    uint16_t name_len; /* the name is text[0, name_len) */
    uint16_t text_len;
    uint8_t nevents;
    struct pt_otel_event events[PT_OTEL_EVENTS]; /* their texts after the attributes' */
    struct pt_otel_attr attrs[PT_OTEL_MAX_ATTRS];
    char text[PT_OTEL_TEXT];
};

/* Appends a text attribute (cut to what the record has room for; dropped when full). */
void pt_otel_span_str(struct pt_otel_span *s, int key, pt_str v);
void pt_otel_span_int(struct pt_otel_span *s, int key, int64_t v);
/* Appends to the span's name (before any attribute). */
void pt_otel_span_name(struct pt_otel_span *s, pt_str part);

/* ---- what a sampled request records (in its arena) ---- */

#define PT_OTEL_ATTEMPTS 8

struct pt_otel_rec {
    int open; /* the section running (PT_SEC_*), -1: none */
    struct {
        uint8_t id[8];
        uint64_t t0, t1; /* monotonic µs; t0 0: the section did not run */
        bool error;
    } sec[PT_SEC_COUNT];
    struct {
        uint8_t id[8];
        uint64_t t0, t1;
        int status; /* the backend's status (0: none) */
    } att[PT_OTEL_ATTEMPTS];
    int natt; /* attempts recorded */
    struct {
        uint64_t t; /* monotonic µs */
        int8_t sec; /* the section it ran in (PT_SEC_*), -1: none */
        uint8_t severity;
        pt_str source, message; /* copies in the request's arena */
    } ev[PT_OTEL_EVENTS];
    int nev;
};

/* ---- hooks (the connection layer and the pipeline driver call these) ---- */

/* The request's head is read and its id set: its trace context, when the
   generation has telemetry on. */
void pt_otel_req_start(struct pt_req *req);
/* The request is over: its spans go to the worker's queue (when recorded). */
void pt_otel_req_end(struct pt_req *req);
/* A pipeline section starts (PT_SEC_*), or the pipeline ends (-1). */
void pt_otel_section_mark(struct pt_req *req, int sec);
static inline void pt_otel_section(struct pt_req *req, int sec)
{
    if (PT_UNLIKELY(req->otel.rec != NULL))
        pt_otel_section_mark(req, sec);
}
/* The trace policy ran (severity PT_TRACE_SEV_*): an event on the span of the
   section it ran in, when the request is recorded (at most PT_OTEL_EVENTS). */
void pt_otel_event(struct pt_req *req, pt_str source, int severity, pt_str message);
/* A backend call starts: a new span id for the traceparent it carries. */
void pt_otel_backend_start(struct pt_req *req);
/* The backend's response head is in. */
void pt_otel_backend_head(struct pt_req *req);
/* The traceparent line for the backend ("traceparent: ...\r\n"), when propagating. */
void pt_otel_backend_header(const struct pt_req *req, struct pt_buf *b);
/* Is this client header replaced (traceparent) or dropped (an invalid tracestate)? */
bool pt_otel_header_skip(const struct pt_req *req, const struct pt_hdr *x);

/* ---- the per-worker queues ---- */

struct pt_otel_queue;

/* Creates the queues of n workers of `size` spans each (rounded up to a power
   of two), once; false when memory is short.  Later calls keep the first size. */
bool pt_otel_queues_init(int n, uint32_t size);
void pt_otel_queues_free(void);
/* Takes up to max spans from the queues into out (the exporter thread only). */
int pt_otel_queues_take(struct pt_otel_span *out, int max);
/* Spans waiting in the queues. */
uint64_t pt_otel_queues_pending(void);

/* ---- counters (/metrics) ---- */

struct pt_otel_stats {
    uint64_t started;        /* spans recorded by workers */
    uint64_t exported;       /* spans the collector accepted */
    uint64_t dropped;        /* spans dropped because a worker's queue was full */
    uint64_t failed_batches; /* batches given up after their retries (their spans are lost) */
    uint64_t failed_spans;   /* spans in those batches */
    uint64_t queued;         /* spans waiting in the queues now */
};
/* The counters since start: plain atomic reads, from any thread. */
void pt_otel_stats(struct pt_otel_stats *out);
/* The exporter thread's share. */
void pt_otel_count_export(uint64_t exported, uint64_t failed_batches, uint64_t failed_spans);

#endif
