/*
 * pt_plugin -- loading policy plugins (shared objects) at start.
 *
 * Every file ending in ".so" in the plugin directory (and one level of
 * subdirectories, which is how a build tree lays them out) is opened with
 * dlopen(RTLD_NOW | RTLD_LOCAL).  Its descriptor symbol is checked before
 * anything in it runs: ABI major equal to ours and minor not newer, the
 * struct size, a name and a policy list; a duplicate policy name or a
 * failing init() refuses the plugin.  Every refusal names the file.
 * Plugins stay loaded for the life of the process.
 */
#ifndef PT_PLUGIN_H
#define PT_PLUGIN_H

#include "base/pt.h"
#include "conf/pt_node.h"
#include "policy/pt_policy.h"

/* Loads the plugins of dir into reg (core policies must be there already).
   Returns the number loaded; refusals are added to errs. */
int pt_plugin_load(const char *dir, struct pt_registry *reg, struct pt_errors *errs);
/* Registers every policy of the plugins loaded so far into reg. */
void pt_plugin_register(struct pt_registry *reg);
/* Calls fn for every plugin file found at start: its plugin's name (the
   file's base name when refused before its descriptor could be read) and
   whether it loaded. */
void pt_plugin_each(void (*fn)(void *arg, const char *name, bool loaded), void *arg);
/* Calls the plugins' fini() and closes them. */
void pt_plugin_unload(void);

#endif
