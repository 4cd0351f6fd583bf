/*
 * policies_setup.h -- for the drivers that compile policies: checking-only
 * mode (nothing is contacted), errors only in the log, and the policy
 * plugins loaded from where the gateway finds them (the build's plugins/
 * when run from the build tree), so that the plugins' own attribute checks
 * are reached too.
 */
#ifndef FUZZ_POLICIES_SETUP_H
#define FUZZ_POLICIES_SETUP_H

#include "base/pt_log.h"
#include "base/pt_paths.h"
#include "conf/pt_node.h"
#include "policy/pt_api.h"
#include "policy/pt_corepol.h"
#include "policy/pt_plugin.h"
#include "policy/pt_policy.h"
#include "policy/pt_registry.h"

#include <stdio.h>

static void fuzz_policies_setup(void)
{
    pt_api_checking_only = true;
    pt_log_level = PT_LOG_ERROR; /* the inputs' warnings would bury the fuzzer's own output */
    pt_api_init();
    struct pt_errors errs = {0};
    struct pt_registry *tmp = pt_registry_new();
    pt_corepol_register(tmp); /* as the gateway loads them: plugins may not take the core's names */
    pt_plugin_load(pt_paths_plugins(), tmp, &errs);
    for (int i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    pt_node_errors_clear(&errs);
    pt_registry_free(tmp);
}

#endif
