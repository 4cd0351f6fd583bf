/*
 * observe.c -- the observability family's descriptor, named and shaped
 * after Azure API Management's logging policies.
 */
#include "observe.h"

static const struct pt_policy_def policies[] = {
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
