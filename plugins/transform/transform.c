/*
 * transform -- the transformation policy family (being written).
 */
#include <portico/plugin.h>

static const struct pt_policy_def policies[] = {{0}};

PT_PLUGIN("transform", "0.1.0", policies, NULL, NULL);
