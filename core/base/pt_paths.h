/*
 * pt_paths -- the default places of what the gateway ships.
 */
#ifndef PT_PATHS_H
#define PT_PATHS_H

#include "base/pt.h"

/* The default plugin directory: the build tree's when running uninstalled. */
const char *pt_paths_plugins(void);
/* Same for the shipped Lua policies (the source tree's policies/ or $datadir). */
const char *pt_paths_policies(void);
/* Portico's own Lua prelude (lua/prelude.lua, installed to $datadir/portico/lua). */
const char *pt_paths_prelude(void);

/* The developer portal's shipped assets (the source tree's portal/ or $datadir/portico/portal). */
const char *pt_paths_portal(void);

#endif
