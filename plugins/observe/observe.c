/*
 * observe.c -- the observability family's descriptor, named and shaped
 * after Azure API Management's logging policies.
 */
#include "observe.h"

static const struct pt_policy_def policies[] = {
    {"trace", PT_SECTION_INBOUND | PT_SECTION_BACKEND | PT_SECTION_OUTBOUND, PT_SCOPE_ALL, 0, trace_attrs,
     trace_compile, trace_run, NULL,
     "Adds an entry {source, severity, message, metadata} to the request's debug trace when the request is "
     "traced (Apim-Debug-Authorization or Ocp-Apim-Trace: see tracing.md), and writes the message to the "
     "gateway's log (at info) when its severity is at least tracing.verbosity (information by default), and "
     "becomes an event on its section's OpenTelemetry span when the request is sampled. "
     "Nothing is written to the response; the request goes on. As in APIM, the message may be an expression; "
     "the source is a literal."},
    {"log-to-eventhub", PT_SECTION_ALL, PT_SCOPE_ALL, 0, log_to_attrs, log_to_compile, log_to_run, NULL,
     "Sends a message (a literal or an expression) to one of the configuration's loggers -- a file, a syslog "
     "server or an HTTP collector (docs/logging.md) -- without waiting: the message is queued for the "
     "logger's own thread, and dropped (counted) when its queue is full. Messages over 200 KB are cut to "
     "200 KB. `logger-id` is checked when the configuration loads."},
    {"log-to", PT_SECTION_ALL, PT_SCOPE_ALL, 0, log_to_attrs, log_to_compile, log_to_run, NULL,
     "Portico's name for `log-to-eventhub`, with the same attributes."},
    {"emit-metric", PT_SECTION_ALL, PT_SCOPE_ALL, 0, emit_metric_attrs, emit_metric_compile, emit_metric_run,
     NULL,
     "Adds `value` (default 1) to the custom counter `namespace`_`name` in the series of its dimensions (one "
     "to "
     "ten); the built-in dimensions API ID, Operation ID, Product ID, User ID, Subscription ID, Location and "
     "Gateway ID may leave out their value and take the request's. The counters are on the Prometheus "
     "endpoint "
     "(see metrics.md); a value that is not a number >= 0 fails with ExpressionValueEvaluationFailure."},
    {0},
};

static int observe_init(const struct pt_api *api, const char **err)
{
    if (api->size < offsetof(struct pt_api, url_base) + sizeof(void *)) {
        *err = "the gateway's API table is too small";
        return -1;
    }
    return 0;
}

PT_PLUGIN("observe", "1.0.0", policies, observe_init, NULL);
