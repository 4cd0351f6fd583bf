/*
 * observe.c -- the observability family's descriptor, named and shaped
 * after Azure API Management's logging policies.
 */
#include "observe.h"

static const struct pt_policy_def policies[] = {
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
