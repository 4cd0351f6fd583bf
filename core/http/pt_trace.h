/*
 * pt_trace -- debug traces of single requests (APIM's request tracing;
 * docs/tracing.md).
 *
 * A request is traced when it carries a valid `Apim-Debug-Authorization`
 * token for the API it reaches (pt_tracetoken), or `Ocp-Apim-Trace: true`
 * with the key of a subscription whose allowTracing is on.  Its recording
 * (struct pt_trace, behind req->trace) lives in an arena of its own, so a
 * trace can never push the request past its memory limit, and is bounded
 * by tracing.maxTraceSize.  The pipeline driver opens an entry before each
 * statement and closes it after: the entry gets the statement's status,
 * the headers it set or removed (a diff of the two heads), the variables it
 * set, the expressions it evaluated with their values, the backend request
 * and response heads (forward-request), the error it raised.  A request
 * that is not traced costs one pointer test per statement (req->trace) and,
 * at its start, one pass over its header names' lengths.
 *
 * When the request ends, pt_trace_finish() writes the trace as JSON --
 *   {"traceId", ..., "traceEntries": {"inbound": [{"source", "path",
 *    "timestamp", "elapsed", "startMicros", "durationMicros", "data"}],
 *    "backend": [...], "outbound": [...], "on-error": [...]}}
 * -- into the node's store of recent traces (tracing.maxTraces, kept
 * tracing.ttl), where listTrace and the signed trace locations read it.
 * The store has a mutex: only traced requests and the management API reach it.
 */
#ifndef PT_TRACE_H
#define PT_TRACE_H

#include "base/pt_buf.h"
#include "http/pt_msg.h"

struct pt_conf;

/* req->trace_flags: what the response says about tracing. */
#define PT_TRACE_F_ID 0x1       /* Apim-Trace-Id: the trace's id */
#define PT_TRACE_F_EXPIRED 0x2  /* Apim-Debug-Authorization-Expired: true */
#define PT_TRACE_F_WRONGAPI 0x4 /* Apim-Debug-Authorization-WrongAPI: true */
#define PT_TRACE_F_LOCATION 0x8 /* Ocp-Apim-Trace-Location: the signed URL of the trace */

/* Applies the configuration's tracing settings to the store (control thread; start and reload). */
void pt_trace_configure(const struct pt_conf *cf);
/* Drops every stored trace (at stop). */
void pt_trace_store_clear(void);

/* ---- the request (worker) ---- */

/* At the start of the pipeline (after the access decision): reads and removes the
   debug headers, and starts the trace when one of them holds. */
void pt_trace_request(struct pt_req *req);
/* A statement starts (stmt: its identity; name: its policy; path: as lastError.path
   gives it).  A statement that runs again (after a body was read) keeps its entry. */
void pt_trace_stmt_begin(struct pt_req *req, const void *stmt, const char *name, const char *path);
/* The statement that began last ended with st (not PT_AGAIN). */
void pt_trace_stmt_end(struct pt_req *req, pt_status st);
/* retry decided after a run of its body: attempts made, whether it runs again, the wait. */
void pt_trace_retry(struct pt_req *req, int attempts, bool again, uint32_t wait_ms);
/* A fact about the running statement: "key": "value" in its data. */
void pt_trace_note(struct pt_req *req, const char *key, const char *value);
/* An expression was evaluated (type PT_VAR_*). */
void pt_trace_expr(struct pt_req *req, pt_str source, int type, pt_str value);
/* The request's error was recorded (pt_msg_set_error). */
void pt_trace_error(struct pt_req *req);
/* The pipeline moves to on-error: an entry there with the error. */
void pt_trace_on_error(struct pt_req *req);
/* The backend request head as sent (text, "METHOD target HTTP/1.1\r\n..."). */
void pt_trace_backend_request(struct pt_req *req, const char *head, size_t n);
/* The backend's response head is in (req->rh). */
void pt_trace_backend_response(struct pt_req *req);
/* Appends the tracing response headers (req->trace_flags) to a response head being written. */
void pt_trace_response_headers(struct pt_buf *b, struct pt_req *req);
/* The request ended: the trace goes to the store and the recording is freed. */
void pt_trace_finish(struct pt_req *req);
/* pt_trace_finish for a traced request; nothing (one test) for the others. */
static inline void pt_trace_end(struct pt_req *req)
{
    if (PT_UNLIKELY(req->trace != NULL))
        pt_trace_finish(req);
}
/* The request is dropped without ending normally: the recording is freed. */
void pt_trace_discard(struct pt_req *req);

/*
 * The `trace` policy (api->trace_emit): adds an entry to the request's trace
 * when it is traced, and writes the message to the error log (info) when
 * severity (PT_TRACE_SEV_*) is at least tracing.verbosity.  This is the one
 * sink of trace messages: span events (OpenTelemetry) belong here too.
 */
void pt_trace_emit(struct pt_req *req, pt_str source, int severity, pt_str message, const pt_str *names,
                   const pt_str *values, int n);

/* ---- the store (management API) ---- */

/* A stored trace: its JSON (malloc'd, NUL-terminated; free() it) with its API's id
   and workspace ("" = service level), or NULL when unknown or expired. */
char *pt_trace_store_get(const char *id, char api[256], char workspace[128]);

/* Counters since start (for /metrics). */
struct pt_trace_stats {
    uint64_t traced;        /* requests traced */
    uint64_t stored;        /* traces written to the store */
    uint64_t evicted;       /* traces pushed out by newer ones before their ttl */
    uint64_t truncated;     /* traces cut at tracing.maxTraceSize */
    uint64_t tokens_bad;    /* Apim-Debug-Authorization values that did not verify */
    uint64_t tokens_denied; /* genuine tokens refused: expired or for another API */
};
void pt_trace_stats(struct pt_trace_stats *out);

#endif
