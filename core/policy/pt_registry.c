/*
 * pt_registry -- the policies a generation knows: the core's, the plugins'
 * and the Lua policies', each under one name with its owner.
 */
#include "policy/pt_registry.h"

#include <stdlib.h>
#include <string.h>

struct reg_entry {
    const struct pt_policy_def *def;
    const char *owner;
};

struct pt_registry {
    struct reg_entry *e;
    int n, cap;
};

struct pt_registry *pt_registry_new(void)
{
    return calloc(1, sizeof(struct pt_registry));
}

void pt_registry_free(struct pt_registry *r)
{
    if (r) {
        free(r->e);
        free(r);
    }
}

bool pt_registry_add(struct pt_registry *r, const struct pt_policy_def *def, const char *owner,
                     const char **taken)
{
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->e[i].def->name, def->name)) {
            if (taken)
                *taken = r->e[i].owner;
            return false;
        }
    if (r->n == r->cap) {
        int ncap = r->cap ? r->cap * 2 : 32;
        struct reg_entry *ne = realloc(r->e, sizeof(*ne) * (size_t)ncap);
        if (!ne)
            return false;
        r->e = ne;
        r->cap = ncap;
    }
    r->e[r->n].def = def;
    r->e[r->n].owner = owner;
    r->n++;
    return true;
}

const struct pt_policy_def *pt_registry_find(const struct pt_registry *r, const char *name)
{
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->e[i].def->name, name))
            return r->e[i].def;
    return NULL;
}

int pt_registry_count(const struct pt_registry *r)
{
    return r->n;
}

const struct pt_policy_def *pt_registry_at(const struct pt_registry *r, int i, const char **owner)
{
    if (owner)
        *owner = r->e[i].owner;
    return r->e[i].def;
}
