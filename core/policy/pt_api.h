/*
 * pt_api -- the SDK table (struct pt_api, <portico/plugin.h>) every policy
 * runs against, the plugins' and the core's own.  The table itself is
 * pt_policy_api_table (policy/pt_policy.h); this file fills it in.
 */
#ifndef PT_API_H
#define PT_API_H

#include "policy/pt_pipeline.h"

/* Fills pt_policy_api_table and registers the driver with the message layer (once, at start). */
void pt_api_init(void);

#endif
