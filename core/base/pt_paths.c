/*
 * pt_paths -- where the gateway finds what it ships: plugins, Lua policies
 * and the Lua prelude; the build tree's own when the binary runs from it.
 */
#include "base/pt_paths.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PT_PLUGINDIR
#define PT_PLUGINDIR "/usr/local/lib/portico/plugins"
#endif
#ifndef PT_LUADIR
#define PT_LUADIR "/usr/local/share/portico/lua"
#endif
/* true when this binary is the one in the build tree (not installed). */
static bool uninstalled(void)
{
#ifdef PT_BUILDDIR
    char exe[PATH_MAX], real_build[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return false;
    exe[n] = '\0';
    if (!realpath(PT_BUILDDIR, real_build))
        return false;
    size_t bl = strlen(real_build);
    return !strncmp(exe, real_build, bl) && exe[bl] == '/';
#else
    return false;
#endif
}

const char *pt_paths_plugins(void)
{
#ifdef PT_BUILDDIR
    if (uninstalled())
        return PT_BUILDDIR "/plugins";
#endif
    return PT_PLUGINDIR;
}

#ifndef PT_POLICYDIR
#define PT_POLICYDIR "/usr/local/share/portico/policies"
#endif

const char *pt_paths_policies(void)
{
#ifdef PT_SRCDIR
    if (uninstalled())
        return PT_SRCDIR "/policies";
#endif
    return PT_POLICYDIR;
}

const char *pt_paths_prelude(void)
{
#ifdef PT_SRCDIR
    if (uninstalled())
        return PT_SRCDIR "/lua/prelude.lua";
#endif
    return PT_LUADIR "/prelude.lua";
}

#ifndef PT_PORTALDIR
#define PT_PORTALDIR "/usr/local/share/portico/portal"
#endif

const char *pt_paths_portal(void)
{
#ifdef PT_SRCDIR
    if (uninstalled())
        return PT_SRCDIR "/portal";
#endif
    return PT_PORTALDIR;
}
