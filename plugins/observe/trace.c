/*
 * trace.c -- trace: an entry in the request's debug trace (when the request
 * is traced: docs/tracing.md) and, from tracing.verbosity up, a line in the
 * gateway's log.  APIM's attributes: source (required), severity
 * (verbose | information | error, verbose by default), message (required,
 * an expression allowed), metadata {name, value}*.
 */
#include "observe.h"

#include <string.h>

static const char *const severities[] = {"verbose", "information", "error", NULL};

static const struct pt_attr_def metadata_attrs[] = {
    {"name", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "the property's name"},
    {"value", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0, "its value"},
    {0},
};

const struct pt_attr_def trace_attrs[] = {
    {"source", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0,
     "what the entry is about: its source in the trace and the log"},
    {"severity", PT_ATTR_ENUM, 0, "verbose", severities, NULL, 0, 0,
     "verbose, information or error: entries at tracing.verbosity or above also go to the log"},
    {"message", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "the text (an expression allowed)"},
    {"metadata", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, metadata_attrs, 0, 0,
     "name and value pairs added to the entry"},
    {0},
};

struct trace {
    pt_bytes source;
    int severity;
    pt_value *message;
    int nmeta;
    pt_bytes *names;
    pt_value **values;
};

int trace_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct trace *t = api->compile_alloc(c, sizeof(*t));
    if (!t)
        return -1;
    const char *src = api->attr_literal(c, "source");
    t->source = (pt_bytes){src ? src : "", src ? strlen(src) : 0};
    t->severity = api->attr_enum(c, "severity", PT_TRACE_SEVERITY_VERBOSE);
    t->message = api->attr_value(c, "message");
    pt_element **meta = NULL;
    t->nmeta = api->attr_elements(c, "metadata", &meta);
    if (!t->message || t->nmeta < 0)
        return -1;
    if (t->nmeta) {
        t->names = api->compile_alloc(c, sizeof(*t->names) * (size_t)t->nmeta);
        t->values = api->compile_alloc(c, sizeof(*t->values) * (size_t)t->nmeta);
        if (!t->names || !t->values)
            return -1;
    }
    for (int i = 0; i < t->nmeta; i++) {
        const char *n = api->elem_literal(meta[i], "name");
        t->names[i] = (pt_bytes){n ? n : "", n ? strlen(n) : 0};
        t->values[i] = api->elem_value(meta[i], "value");
        if (!t->values[i])
            return -1;
    }
    *instance = t;
    return 0;
}

pt_status trace_run(const struct pt_api *api, pt_call *call, void *instance)
{
    const struct trace *t = instance;
    if (api->size < offsetof(struct pt_api, trace_emit) + sizeof(api->trace_emit) || !api->trace_emit)
        return PT_OK; /* a gateway older than ABI 1.6: nothing to write to */
    pt_bytes msg;
    int st = ptl_eval(api, call, t->message, &msg);
    if (st)
        return (pt_status)st;
    pt_bytes *vals = NULL;
    if (t->nmeta) {
        vals = api->alloc(call, sizeof(*vals) * (size_t)t->nmeta);
        if (!vals)
            return ptl_out_of_memory(api, call);
        for (int i = 0; i < t->nmeta; i++)
            if ((st = ptl_eval(api, call, t->values[i], &vals[i])))
                return (pt_status)st;
    }
    api->trace_emit(call, t->source, t->severity, msg, t->names, vals, t->nmeta);
    return PT_OK;
}
