/*
 * pt_plugin -- the plugin loader.
 */
#include "policy/pt_plugin.h"

#include "base/pt_log.h"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

struct loaded {
    void *handle;
    const struct pt_plugin *desc;
    char *file;
};

static struct loaded *plugins;
static int nplugins;
static char **refused; /* names of the plugins refused (metrics) */
static int nrefused;

/* Remembers a refusal: the descriptor's name when there is one, else the file's base name. */
static void note_refused(const char *file, const struct pt_plugin *p)
{
    char name[256];
    if (p && p->name && *p->name)
        snprintf(name, sizeof(name), "%s", p->name);
    else {
        const char *b = strrchr(file, '/');
        snprintf(name, sizeof(name), "%s", b ? b + 1 : file);
        char *dot = strstr(name, ".so");
        if (dot)
            *dot = '\0';
    }
    char **nr = realloc(refused, sizeof(*refused) * (size_t)(nrefused + 1));
    if (!nr)
        return;
    refused = nr;
    refused[nrefused++] = strdup(name);
}

void pt_plugin_each(void (*fn)(void *arg, const char *name, bool loaded), void *arg)
{
    for (int i = 0; i < nplugins; i++)
        fn(arg, plugins[i].desc->name, true);
    for (int i = 0; i < nrefused; i++)
        if (refused[i])
            fn(arg, refused[i], false);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collects *.so under dir (and one level below, e.g. plugins/x/.libs/). */
static void collect(const char *dir, int depth, char ***files, int *n, int *cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' && strcmp(e->d_name, ".libs"))
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            if (depth < 2)
                collect(path, depth + 1, files, n, cap);
            continue;
        }
        size_t l = strlen(e->d_name);
        if (l < 4 || strcmp(e->d_name + l - 3, ".so"))
            continue;
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 16;
            *files = realloc(*files, sizeof(char *) * (size_t)*cap);
        }
        (*files)[(*n)++] = strdup(path);
    }
    closedir(d);
}

static bool load_one(const char *file, struct pt_registry *reg, struct pt_errors *errs)
{
    void *h = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        pt_node_errors_add(errs, "%s: cannot load plugin: %s", file, dlerror());
        note_refused(file, NULL);
        return false;
    }
    const struct pt_plugin *p = dlsym(h, PT_PLUGIN_SYMBOL_NAME);
    const char *why = NULL;
    if (!p)
        why = "no '" PT_PLUGIN_SYMBOL_NAME "' descriptor symbol";
    else if (p->abi_major != PT_ABI_MAJOR)
        why = "built for another ABI major version";
    else if (p->abi_minor > PT_ABI_MINOR)
        why = "built for a newer ABI minor version";
    else if (p->size < offsetof(struct pt_plugin, fini) + sizeof(p->fini) ||
             p->size > sizeof(struct pt_plugin))
        why = "descriptor has an unexpected size";
    else if (!p->name || !*p->name || !p->policies)
        why = "descriptor has no name or no policy list";
    if (why) {
        if (p && (p->abi_major != PT_ABI_MAJOR || p->abi_minor > PT_ABI_MINOR))
            pt_node_errors_add(errs, "%s: plugin refused: %s (plugin %u.%u, gateway %u.%u)", file, why,
                               p->abi_major, p->abi_minor, PT_ABI_MAJOR, PT_ABI_MINOR);
        else
            pt_node_errors_add(errs, "%s: plugin refused: %s", file, why);
        note_refused(file, NULL);
        dlclose(h);
        return false;
    }
    /* every name must be free before anything registers */
    for (const struct pt_policy_def *d = p->policies; d->name; d++) {
        const struct pt_policy_def *other = pt_registry_find(reg, d->name);
        bool dup_inside = false;
        for (const struct pt_policy_def *e = p->policies; e < d; e++)
            if (!strcmp(e->name, d->name))
                dup_inside = true;
        if (other || dup_inside || !d->run) {
            const char *owner = NULL;
            for (int i = 0; other && i < pt_registry_count(reg); i++)
                if (pt_registry_at(reg, i, &owner) == other)
                    break;
            if (!d->run)
                pt_node_errors_add(errs, "%s: plugin refused: policy '%s' has no run function", file,
                                   d->name);
            else
                pt_node_errors_add(errs, "%s: plugin refused: policy '%s' is already provided by %s", file,
                                   d->name,
                                   dup_inside ? "this plugin"
                                   : owner    ? owner
                                              : "another plugin");
            note_refused(file, p);
            dlclose(h);
            return false;
        }
    }
    if (p->init) {
        const char *err = NULL;
        if (p->init(&pt_policy_api_table, &err) != 0) {
            pt_node_errors_add(errs, "%s: plugin refused: init failed: %s", file,
                               err ? err : "(no reason given)");
            note_refused(file, p);
            dlclose(h);
            return false;
        }
    }
    plugins = realloc(plugins, sizeof(*plugins) * (size_t)(nplugins + 1));
    plugins[nplugins].handle = h;
    plugins[nplugins].desc = p;
    plugins[nplugins].file = strdup(file);
    nplugins++;
    for (const struct pt_policy_def *d = p->policies; d->name; d++)
        pt_registry_add(reg, d, plugins[nplugins - 1].file, NULL);
    pt_info("plugin %s %s loaded from %s", p->name, p->version ? p->version : "", file);
    return true;
}

int pt_plugin_load(const char *dir, struct pt_registry *reg, struct pt_errors *errs)
{
    char **files = NULL;
    int n = 0, cap = 0, loaded = 0;
    collect(dir, 0, &files, &n, &cap);
    if (n > 1)
        qsort(files, (size_t)n, sizeof(char *), cmp_str);
    for (int i = 0; i < n; i++) {
        if (load_one(files[i], reg, errs))
            loaded++;
        free(files[i]);
    }
    free(files);
    return loaded;
}

void pt_plugin_register(struct pt_registry *reg)
{
    for (int i = 0; i < nplugins; i++)
        for (const struct pt_policy_def *d = plugins[i].desc->policies; d->name; d++)
            pt_registry_add(reg, d, plugins[i].file, NULL);
}

void pt_plugin_unload(void)
{
    for (int i = 0; i < nplugins; i++) {
        if (plugins[i].desc->fini)
            plugins[i].desc->fini();
        dlclose(plugins[i].handle);
        free(plugins[i].file);
    }
    free(plugins);
    plugins = NULL;
    nplugins = 0;
    for (int i = 0; i < nrefused; i++)
        free(refused[i]);
    free(refused);
    refused = NULL;
    nrefused = 0;
}
