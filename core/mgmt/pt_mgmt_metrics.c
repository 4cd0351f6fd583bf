/*
 * pt_mgmt_metrics -- the Prometheus endpoint (metrics.path, /metrics by
 * default): on the management listener, or on a listener of its own
 * (metrics.listen), both served by the control thread with evhttp.
 *
 * With metrics.auth `token` (the default) the caller shows a management
 * bearer token of the administrator or a reader: the figures cover every
 * workspace, so workspace roles are refused.  The settings are read from
 * the running file's configuration at each request, so a reload applies
 * them (the listener itself is opened at start only).
 */
#include "base/pt_log.h"
#include "event/pt_metrics.h"
#include "http/pt_logsink.h"
#include "http/pt_otel.h"
#include "http/pt_otel_export.h"
#include "http/pt_trace.h"
#include "mgmt/pt_mgmt_int.h"
#include "proxy/pt_analytics.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <sys/socket.h>
#include <unistd.h>

static struct evhttp *own; /* metrics.listen */

/* ------------------------------------------------- the other parts' counters */

static void counter(struct pt_metrics_sink *s, const char *name, const char *help, const char *label,
                    const char *value, uint64_t v)
{
    const char *const names[] = {label};
    pt_str val = pt_str_c(value);
    pt_metrics_sink_sample(s, name, help, PT_METRICS_COUNTER, names, &val, 1, (double)v);
}

/* Analytics, OpenTelemetry's exporter, the loggers and request tracing, read at each
   scrape from their own atomic counters (docs/metrics.md). */
static void collect_parts(struct pt_metrics_sink *s, void *arg)
{
    (void)arg;
    struct pt_analytics_stats a;
    pt_analytics_stats(&a);
    static const char *const an_help = "Requests by analytics outcome: recorded by workers, written to the "
                                       "store, or dropped (no free buffer).";
    counter(s, "portico_analytics_requests_total", an_help, "outcome", "recorded", a.records);
    counter(s, "portico_analytics_requests_total", an_help, "outcome", "flushed", a.flushed);
    counter(s, "portico_analytics_requests_total", an_help, "outcome", "dropped", a.dropped);
    pt_metrics_sink_value(s, "portico_analytics_unsampled_total",
                          "Requests counted in the reports without a request record (past "
                          "analytics.requests.maxPerSecond).",
                          PT_METRICS_COUNTER, (double)a.unsampled);
    pt_metrics_sink_value(s, "portico_analytics_flush_errors_total",
                          "Analytics flushes the store refused (retried at the next flush).",
                          PT_METRICS_COUNTER, (double)a.flush_errors);
    struct pt_otel_stats o;
    pt_otel_stats(&o);
    static const char *const span_help =
        "OpenTelemetry spans by outcome: recorded by workers, accepted by the "
        "collector, dropped (a full queue) or lost in failed batches.";
    counter(s, "portico_otel_spans_total", span_help, "outcome", "recorded", o.started);
    counter(s, "portico_otel_spans_total", span_help, "outcome", "exported", o.exported);
    counter(s, "portico_otel_spans_total", span_help, "outcome", "dropped", o.dropped);
    counter(s, "portico_otel_spans_total", span_help, "outcome", "failed", o.failed_spans);
    pt_metrics_sink_value(s, "portico_otel_failed_batches_total",
                          "OTLP export batches given up after their retries.", PT_METRICS_COUNTER,
                          (double)o.failed_batches);
    pt_metrics_sink_value(s, "portico_otel_spans_queued", "Finished spans waiting for the exporter.",
                          PT_METRICS_GAUGE, (double)o.queued);

    struct pt_logsink_stats ls[64];
    int n = pt_logsink_stats(ls, 64);
    if (n > 64)
        n = 64;
    static const char *const lnames[] = {"logger", "outcome"};
    static const char *const outcomes[] = {"sent", "dropped", "failed"};
    for (int i = 0; i < n; i++) {
        const uint64_t v[] = {ls[i].sent, ls[i].dropped, ls[i].failed};
        for (int k = 0; k < 3; k++) {
            pt_str vals[2] = {pt_str_c(ls[i].id), pt_str_c(outcomes[k])};
            pt_metrics_sink_sample(s, "portico_logger_messages_total",
                                   "Messages to each logger by outcome: delivered, dropped (a full queue) or "
                                   "failed after the retries.",
                                   PT_METRICS_COUNTER, lnames, vals, 2, (double)v[k]);
        }
    }
    for (int i = 0; i < n; i++) {
        pt_str id = pt_str_c(ls[i].id);
        pt_metrics_sink_sample(s, "portico_logger_queued", "Messages waiting in each logger's queue.",
                               PT_METRICS_GAUGE, lnames, &id, 1, (double)ls[i].queued);
    }

    struct pt_trace_stats t;
    pt_trace_stats(&t);
    pt_metrics_sink_value(s, "portico_traces_total", "Requests traced (debug tracing).", PT_METRICS_COUNTER,
                          (double)t.traced);
    pt_metrics_sink_value(s, "portico_traces_evicted_total", "Traces pushed out of the store by newer ones.",
                          PT_METRICS_COUNTER, (double)t.evicted);
    pt_metrics_sink_value(s, "portico_traces_truncated_total", "Traces cut at tracing.maxTraceSize.",
                          PT_METRICS_COUNTER, (double)t.truncated);
    static const char *const token_help = "Apim-Debug-Authorization tokens refused: bad (not ours) or denied "
                                          "(expired, another API).";
    counter(s, "portico_trace_tokens_refused_total", token_help, "reason", "bad", t.tokens_bad);
    counter(s, "portico_trace_tokens_refused_total", token_help, "reason", "denied", t.tokens_denied);
}

/* emit-metric's counters as OTLP metrics, for the OpenTelemetry exporter's
   thread (telemetry.metricsEndpoint). */
static char otlp_service[128] = "portico";

static char *otlp_metrics(void *arg, size_t *len)
{
    (void)arg;
    return pt_metrics_has_custom() ? pt_metrics_otlp_json(otlp_service, NULL, 0, len) : NULL;
}

/* Answers a metrics request on either listener. */
static void serve(struct evhttp_request *r, const struct pt_conf *cf)
{
    struct mreq m = {.r = r, .method = evhttp_request_get_command(r)};
    m.method_name = m.method == EVHTTP_REQ_HEAD ? "HEAD" : "GET";
    if (m.method != EVHTTP_REQ_GET && m.method != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(r), "Allow", "GET, HEAD");
        pt_mgmt_req_send_error(&m, 405, "MethodNotAllowed", "the metrics are read with GET");
        return;
    }
    if (cf->metrics.auth == PT_METRICS_AUTH_TOKEN) {
        if (!pt_mgmt_auth_authenticate(&m))
            return;
        if (m.role != R_ADMIN && m.role != R_READER) {
            pt_mgmt_req_send_error(&m, 403, "Forbidden",
                                   "the metrics cover every workspace: an administrator or reader token is "
                                   "required");
            return;
        }
    }
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(r, 500, NULL);
        return;
    }
    pt_metrics_render(b);
    evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_add_header(evhttp_request_get_output_headers(r), "Cache-Control", "no-store");
    evhttp_send_reply(r, 200, "OK", b);
    evbuffer_free(b);
}

static bool is_metrics_path(struct evhttp_request *r, const struct pt_conf *cf)
{
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(r));
    return cf->metrics.enabled && path && !strcmp(path, cf->metrics.path);
}

bool pt_mgmt_metrics_serve(struct evhttp_request *r)
{
    const struct pt_conf *cf = pt_mgmt_req_hooks->file();
    if (cf->metrics.listen || !is_metrics_path(r, cf))
        return false;
    serve(r, cf);
    return true;
}

static void on_own(struct evhttp_request *r, void *arg)
{
    (void)arg;
    const struct pt_conf *cf = pt_mgmt_req_hooks->file();
    if (!is_metrics_path(r, cf)) {
        struct mreq m = {.r = r, .method = evhttp_request_get_command(r), .method_name = "GET"};
        pt_mgmt_req_send_error(&m, 404, "RouteNotFound", "this listener serves %s only", cf->metrics.path);
        return;
    }
    serve(r, cf);
}

bool pt_mgmt_metrics_start(struct event_base *base, const struct pt_conf *file, struct pt_store *st,
                           const struct pt_mgmt_hooks *h, struct pt_errors *errs)
{
    pt_metrics_collector(collect_parts, NULL);
    if (file->telemetry.service_name)
        snprintf(otlp_service, sizeof(otlp_service), "%s", file->telemetry.service_name);
    pt_otel_export_set_metrics(otlp_metrics, NULL);
    if (!file->metrics.listen) {
        if (file->metrics.enabled && !file->mgmt.listen)
            pt_info("metrics: no management listener and no metrics.listen: %s is not served",
                    file->metrics.path);
        return true;
    }
    pt_mgmt_req_store = st;
    pt_mgmt_req_hooks = h;
    int fd = socket(file->metrics.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, (const struct sockaddr *)&file->metrics.sa, file->metrics.salen) < 0 ||
        listen(fd, pt_conf_listen_backlog(0)) < 0) {
        pt_node_errors_add(errs, "metrics: cannot listen on %s: %s", file->metrics.listen, strerror(errno));
        if (fd >= 0)
            close(fd);
        return false;
    }
    own = evhttp_new(base);
    evhttp_set_max_body_size(own, 1024);
    evhttp_set_max_headers_size(own, 16 * 1024);
    evhttp_set_timeout(own, 30);
    evhttp_set_allowed_methods(own, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                        EVHTTP_REQ_DELETE);
    evhttp_set_gencb(own, on_own, NULL);
    if (!evhttp_accept_socket_with_handle(own, fd)) {
        pt_node_errors_add(errs, "metrics: cannot serve on %s", file->metrics.listen);
        evhttp_free(own);
        own = NULL;
        close(fd);
        return false;
    }
    pt_info("metrics listening on %s%s", file->metrics.listen, file->metrics.path);
    return true;
}

void pt_mgmt_metrics_stop(void)
{
    if (own)
        evhttp_free(own);
    own = NULL;
}
