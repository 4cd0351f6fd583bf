/*
 * pt_registry -- the policies a generation knows, by name.
 */
#ifndef PT_REGISTRY_H
#define PT_REGISTRY_H

#include "base/pt.h"

#include <portico/plugin.h>

/* Registers a policy definition (plugins, core policies, Lua policies).
   Returns false when the name is taken (*taken set to its owner's name). */
struct pt_registry;
struct pt_registry *pt_registry_new(void);
void pt_registry_free(struct pt_registry *r);
bool pt_registry_add(struct pt_registry *r, const struct pt_policy_def *def, const char *owner,
                     const char **taken);
const struct pt_policy_def *pt_registry_find(const struct pt_registry *r, const char *name);
/* Iterates definitions (for documentation and validation). */
int pt_registry_count(const struct pt_registry *r);
const struct pt_policy_def *pt_registry_at(const struct pt_registry *r, int i, const char **owner);

#endif
