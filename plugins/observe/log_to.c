/*
 * log_to.c -- log-to-eventhub (APIM's name) and log-to (our alias): sends a
 * message, usually an expression, to one of the configuration's loggers
 * (`loggers:`; docs/logging.md).  The message is queued for the logger's
 * own thread; a full queue drops it (counted) and the request goes on.
 * Messages over 200 KB are cut to 200 KB (204,800 bytes, at a UTF-8
 * character boundary), as APIM truncates them.
 */
#include "observe.h"

#include <stdlib.h>
#include <string.h>

const struct pt_attr_def log_to_attrs[] = {
    {"logger-id", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0,
     "the id of one of the configuration's loggers (no expression)"},
    {"partition-id", PT_ATTR_STRING, PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "a partition index, passed to the logger with the message (syslog structured data, the HTTP record's "
     "partitionId); not with partition-key"},
    {"partition-key", PT_ATTR_STRING, PT_ATTR_EXPR | PT_ATTR_OR, NULL, NULL, NULL, 0, 0,
     "a partition key, passed to the logger with the message; not with partition-id"},
    {"value", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "the message: APIM's element text, a literal or an expression; cut to 200 KB"},
    {0},
};

struct log_to {
    const void *logger;
    pt_value *message, *partition_id, *partition_key;
};

int log_to_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    if (api->size < offsetof(struct pt_api, log_emit) + sizeof(void *)) {
        api->compile_error(c, NULL, "this policy needs a gateway with plugin ABI 1.6");
        return -1;
    }
    const char *id = api->attr_literal(c, "logger-id");
    if (!id) {
        api->compile_error(c, "logger-id", "logger-id names a logger; it cannot be an expression");
        return -1;
    }
    const void *logger = api->logger_find(c, "logger-id", id);
    if (!logger)
        return -1;
    pt_value *pid = api->attr_value(c, "partition-id"), *pkey = api->attr_value(c, "partition-key");
    if (pid && pkey) {
        api->compile_error(c, "partition-key", "give partition-id or partition-key, not both");
        return -1;
    }
    const char *lit = api->attr_literal(c, "partition-id");
    if (lit) {
        char *end;
        long v = strtol(lit, &end, 10);
        if (!*lit || *end || v < 0 || v > 1000000) {
            api->compile_error(c, "partition-id", "partition-id '%s' is not a partition index (0, 1, 2...)",
                               lit);
            return -1;
        }
    }
    struct log_to *x = api->compile_alloc(c, sizeof(*x));
    if (!x) {
        api->compile_error(c, NULL, "out of memory");
        return -1;
    }
    x->logger = logger;
    x->message = api->attr_value(c, "value");
    x->partition_id = pid;
    x->partition_key = pkey;
    *instance = x;
    return 0;
}

pt_status log_to_run(const struct pt_api *api, pt_call *call, void *inst)
{
    struct log_to *x = inst;
    pt_bytes msg, pid, pkey;
    int st;
    if ((st = ptl_eval(api, call, x->message, &msg)) || (st = ptl_eval(api, call, x->partition_id, &pid)) ||
        (st = ptl_eval(api, call, x->partition_key, &pkey)))
        return (pt_status)st;
    api->log_emit(call, x->logger, msg, pid, pkey); /* a dropped message is counted, not an error */
    return PT_OK;
}
