/*
 * pt_conf_check -- checks that span the whole configuration, run once every
 * entity has been read: references between entities resolve (product APIs
 * and groups, subscription scopes and owners, user groups, version sets,
 * workspaces), products' subscription limits hold, and no API of a
 * workspace takes requests that an API outside it would serve.
 */
#include "conf/pt_conf.h"
#include "conf/pt_genmodel.h"
#include "conf/pt_samples.h"

#include <stdio.h>
#include <stdlib.h>

/*
 * The ids of one kind of entity, for the reference checks: open addressing
 * over the entities' own strings, so a file with many users and
 * subscriptions is checked in linear time.
 */
struct idset {
    const char **v;
    int *ix; /* the item's index in its array */
    size_t mask;
};

#define IDSET(s, arr, n, type) idset_init(s, arr, n, sizeof(type), offsetof(type, id))

static void idset_init(struct idset *s, const void *items, int n, size_t stride, size_t off)
{
    size_t cap = 8;
    while (cap < (size_t)n * 2)
        cap <<= 1;
    s->v = calloc(cap, sizeof(*s->v));
    s->ix = calloc(cap, sizeof(*s->ix));
    s->mask = cap - 1;
    if (!s->ix) {
        free(s->v);
        s->v = NULL;
    }
    for (int i = 0; s->v && i < n; i++) {
        const char *id = *(const char *const *)((const char *)items + (size_t)i * stride + off);
        if (!id)
            continue;
        size_t h = pt_hash(id, strlen(id), false) & s->mask;
        while (s->v[h] && strcmp(s->v[h], id))
            h = (h + 1) & s->mask;
        if (!s->v[h])
            s->ix[h] = i;
        s->v[h] = id;
    }
}

/* The index of the first item with this id, -1 when none (or out of memory). */
static int idset_find(const struct idset *s, const char *id)
{
    if (!s->v)
        return -1;
    size_t h = pt_hash(id, strlen(id), false) & s->mask;
    for (; s->v[h]; h = (h + 1) & s->mask)
        if (!strcmp(s->v[h], id))
            return s->ix[h];
    return -1;
}

static bool idset_has(const struct idset *s, const char *id)
{
    if (!s->v)
        return true; /* out of memory: no false alarms */
    return idset_find(s, id) >= 0;
}

static void idset_free(struct idset *s)
{
    free(s->v);
    free(s->ix);
}

static bool has_group(const struct idset *groups, const char *id)
{
    return pt_conf_entities_builtin_group(id) || idset_has(groups, id);
}

struct owned {
    const char *product, *owner;
    const struct pt_subscription_cf *sub;
};

static int owned_cmp(const void *x, const void *y)
{
    const struct owned *a = x, *b = y;
    int c = strcmp(a->product, b->product);
    return c ? c : strcmp(a->owner, b->owner);
}

/* A product's subscriptionsLimit: live subscriptions (submitted, active,
   suspended) per user. */
static void check_subscription_limits(const struct pt_conf *cf, const struct idset *products,
                                      struct pt_errors *errs)
{
    bool any = false;
    for (int i = 0; i < cf->nproducts; i++)
        any |= cf->products[i].subscriptions_limit > 0;
    if (!any || cf->nsubs == 0)
        return;
    struct owned *v = calloc((size_t)cf->nsubs, sizeof(*v));
    if (!v || !products->v) {
        /* no product could be found: the limits would pass unchecked */
        free(v);
        pt_node_errors_add(errs, "out of memory checking the products' subscriptionsLimit");
        return;
    }
    int n = 0;
    for (int i = 0; i < cf->nsubs; i++) {
        const struct pt_subscription_cf *s = &cf->subs[i];
        if (s->scope_kind == PT_SUB_PRODUCT && s->owner_user &&
            (s->state == PT_SUB_SUBMITTED || s->state == PT_SUB_ACTIVE || s->state == PT_SUB_SUSPENDED))
            v[n++] = (struct owned){s->scope_id, s->owner_user, s};
    }
    qsort(v, (size_t)n, sizeof(*v), owned_cmp);
    for (int i = 0; i < n;) {
        int j = i + 1;
        while (j < n && !owned_cmp(&v[i], &v[j]))
            j++;
        /* the product by its id (ids are unique), not by a scan of every product per owner */
        int k = idset_find(products, v[i].product);
        const struct pt_product_cf *p = k >= 0 ? &cf->products[k] : NULL;
        if (p && p->subscriptions_limit > 0 && j - i > p->subscriptions_limit)
            pt_node_error(
                errs, v[j - 1].sub->node,
                "user '%s' would have %d subscriptions to product '%s', whose subscriptionsLimit is %lld",
                v[i].owner, j - i, p->id, (long long)p->subscriptions_limit);
        i = j;
    }
    free(v);
}

static bool same_ws(const char *a, const char *b)
{
    return !strcmp(a ? a : "", b ? b : "");
}

static const char *ws_phrase(const char *w)
{
    static __thread char buf[2][300];
    static __thread int k;
    k ^= 1;
    if (!w || !*w)
        return "(service level)";
    snprintf(buf[k], sizeof(buf[k]), "(workspace '%s')", w);
    return buf[k];
}

/* a is b's path or b's path continues a's at a segment boundary ("" is the
   root, which every path continues) */
static bool path_within(const char *a, const char *b)
{
    size_t n = strlen(a);
    return n == 0 || (!strncmp(a, b, n) && (b[n] == '\0' || b[n] == '/'));
}

/*
 * A workspace's API must never take requests that an API outside the
 * workspace would otherwise serve: routing picks the longest path suffix,
 * then a host-bound API before a host-less one, so API w (of a workspace)
 * takes requests from API o (outside it) when o's path is a proper prefix of
 * w's and their hosts can meet, or when both have the same path and only w
 * is bound to a host.  Only current revisions route.
 */
static void check_workspace_claims(const struct pt_conf *cf, struct pt_errors *errs)
{
    bool any = false;
    for (int i = 0; i < cf->napis && !any; i++)
        any = cf->apis[i].workspace && *cf->apis[i].workspace;
    if (!any)
        return;
    for (int i = 0; i < cf->napis; i++) {
        const struct pt_api_cf *w = &cf->apis[i];
        if (!w->workspace || !*w->workspace || !w->path || !w->is_current)
            continue;
        for (int j = 0; j < cf->napis; j++) {
            const struct pt_api_cf *o = &cf->apis[j];
            if (i == j || same_ws(w->workspace, o->workspace) || !o->path || !o->is_current)
                continue;
            bool hosts_meet = !w->host || !o->host || !strcmp(w->host, o->host);
            bool same_path = !strcmp(w->path, o->path);
            bool takes = (!same_path && hosts_meet && path_within(o->path, w->path)) ||
                         (same_path && w->host && !o->host);
            if (takes)
                pt_node_error(
                    errs, pt_node_get(w->node, "path"),
                    "API '%s' %s: path '%s'%s%s claims requests of API '%s' %s (path '%s'%s%s); an API "
                    "may not take requests from outside its workspace",
                    w->id, ws_phrase(w->workspace), w->path, w->host ? " on host " : "",
                    w->host ? w->host : "", o->id, ws_phrase(o->workspace), o->path,
                    o->host ? " on host " : "", o->host ? o->host : "");
        }
    }
}

/* A backend another entity of workspace `ws` may use: its own scope's or a service-level one. */
static bool backend_visible(const struct pt_backend_cf *b, const char *ws)
{
    return !b->workspace || !*b->workspace || same_ws(b->workspace, ws);
}

/*
 * Backends: a pool's services are known Single backends of a scope the pool
 * sees (pools do not nest, which also rules out loops); an API's backendId is
 * a known backend of its scope or the service level, and an API names a
 * backend or a serviceUrl.
 */
static void check_backends(const struct pt_conf *cf, const struct idset *bes, struct pt_errors *errs)
{
    for (int i = 0; i < cf->nbackends; i++) {
        const struct pt_backend_cf *b = &cf->backends[i];
        struct pt_node *sv = pt_node_get(pt_node_get(b->node, "pool"), "services");
        for (int k = 0; k < b->nmembers; k++) {
            const struct pt_cfmember *m = &b->members[k];
            struct pt_node *at = pt_node_get(m->node, "id") ?: (sv ? sv : b->node);
            int mi = idset_find(bes, m->id);
            if (mi < 0)
                pt_node_error(errs, at, "backend '%s': pool service '%s' is not a backend", b->id, m->id);
            else if (cf->backends[mi].type == PT_BE_POOL)
                pt_node_error(errs, at,
                              "backend '%s': pool service '%s' is itself a pool (pools cannot be nested)",
                              b->id, m->id);
            else if (!backend_visible(&cf->backends[mi], b->workspace))
                pt_node_error(errs, at, "backend '%s' %s cannot use backend '%s' %s", b->id,
                              ws_phrase(b->workspace), m->id, ws_phrase(cf->backends[mi].workspace));
        }
    }
    for (int i = 0; i < cf->napis; i++) {
        const struct pt_api_cf *a = &cf->apis[i];
        if (!a->backend_id)
            continue;
        int bi = idset_find(bes, a->backend_id);
        struct pt_node *at = pt_node_get(a->node, "backendId") ?: a->node;
        if (bi < 0)
            pt_node_error(errs, at, "API '%s': backendId '%s' is not a backend", a->id, a->backend_id);
        else if (!backend_visible(&cf->backends[bi], a->workspace))
            pt_node_error(errs, at, "API '%s' %s cannot use backend '%s' %s", a->id, ws_phrase(a->workspace),
                          a->backend_id, ws_phrase(cf->backends[bi].workspace));
    }
}

/* An entity's workspace must exist ("" is the service level). */
static void check_workspace(const struct idset *ws, const char *kind, const char *id, const char *w,
                            const struct pt_node *node, struct pt_errors *errs)
{
    if (w && *w && !idset_has(ws, w))
        pt_node_error(errs, pt_node_get(node, "workspace"), "%s '%s': unknown workspace '%s'", kind, id, w);
}

/* Subscriptions: the scope names an entity there is (an API or product of the subscription's own
   workspace), the owner a user, the workspace one there is; then the products' subscriptionsLimit. */
static void check_subs(const struct pt_conf *cf, const struct idset *apis, const struct idset *products,
                       const struct idset *users, const struct idset *wss, struct pt_errors *errs)
{
    for (int i = 0; i < cf->nsubs; i++) {
        const struct pt_subscription_cf *s = &cf->subs[i];
        bool found = s->scope_kind == PT_SUB_ALL_APIS ||
                     (s->scope_kind == PT_SUB_API && idset_has(apis, s->scope_id)) ||
                     (s->scope_kind == PT_SUB_PRODUCT && idset_has(products, s->scope_id)) ||
                     pt_samples_known(cf, s->scope_kind == PT_SUB_API ? "api" : "product", s->scope_id);
        if (!found)
            pt_node_error(errs, pt_node_get(s->node, "scope"),
                          "subscription '%s': scope '%s': there is no %s '%s'", s->id, s->scope,
                          s->scope_kind == PT_SUB_API ? "API" : "product", s->scope_id);
        else if (s->workspace && *s->workspace) {
            /* a workspace's subscription opens only that workspace's APIs */
            const char *tw = NULL;
            int ti = s->scope_kind == PT_SUB_API       ? idset_find(apis, s->scope_id)
                     : s->scope_kind == PT_SUB_PRODUCT ? idset_find(products, s->scope_id)
                                                       : -1;
            if (ti >= 0)
                tw = s->scope_kind == PT_SUB_API ? cf->apis[ti].workspace : cf->products[ti].workspace;
            if (s->scope_kind == PT_SUB_ALL_APIS)
                pt_node_error(
                    errs, pt_node_get(s->node, "scope"),
                    "subscription '%s' of workspace '%s': scope /apis (every API of the service) is for "
                    "service-level subscriptions",
                    s->id, s->workspace);
            else if (ti >= 0 && !same_ws(s->workspace, tw))
                pt_node_error(errs, pt_node_get(s->node, "scope"),
                              "subscription '%s' of workspace '%s': scope '%s' is outside the workspace",
                              s->id, s->workspace, s->scope);
        }
        if (s->owner_user && !idset_has(users, s->owner_user))
            pt_node_error(errs, pt_node_get(s->node, "ownerId"), "subscription '%s': unknown owner '%s'",
                          s->id, s->owner_id);
        check_workspace(wss, "subscription", s->id, s->workspace, s->node, errs);
    }
    check_subscription_limits(cf, products, errs);
}

bool pt_conf_check_subs(const struct pt_conf *cf, struct pt_errors *errs)
{
    int before = errs->n;
    struct idset apis, products, users, wss;
    IDSET(&apis, cf->apis, cf->napis, struct pt_api_cf);
    IDSET(&products, cf->products, cf->nproducts, struct pt_product_cf);
    IDSET(&users, cf->users, cf->nusers, struct pt_user_cf);
    IDSET(&wss, cf->workspaces, cf->nworkspaces, struct pt_workspace_cf);
    check_subs(cf, &apis, &products, &users, &wss, errs);
    struct idset *all[] = {&apis, &products, &users, &wss};
    for (size_t i = 0; i < PT_ARRAY_LEN(all); i++)
        idset_free(all[i]);
    return errs->n == before;
}

bool pt_conf_check_refs(const struct pt_conf *cf, struct pt_errors *errs)
{
    int before = errs->n;
    struct idset apis, groups, products, users, vsets, wss;
    IDSET(&apis, cf->apis, cf->napis, struct pt_api_cf);
    IDSET(&groups, cf->groups, cf->ngroups, struct pt_group_cf);
    IDSET(&products, cf->products, cf->nproducts, struct pt_product_cf);
    IDSET(&users, cf->users, cf->nusers, struct pt_user_cf);
    IDSET(&vsets, cf->version_sets, cf->nversion_sets, struct pt_versionset_cf);
    IDSET(&wss, cf->workspaces, cf->nworkspaces, struct pt_workspace_cf);
    struct idset bes;
    IDSET(&bes, cf->backends, cf->nbackends, struct pt_backend_cf);
    for (int i = 0; i < cf->nproducts; i++) {
        const struct pt_product_cf *p = &cf->products[i];
        struct pt_node *an = pt_node_get(p->node, "apis"), *gn = pt_node_get(p->node, "groups");
        for (int k = 0; k < p->apis.n; k++) {
            int ai = idset_find(&apis, p->apis.v[k]);
            if (!idset_has(&apis, p->apis.v[k]) && !pt_samples_known(cf, "api", p->apis.v[k]))
                pt_node_error(errs, an && an->kind == PT_N_SEQ ? an->items[k] : p->node,
                              "product '%s' lists unknown API '%s'", p->id, p->apis.v[k]);
            else if (ai >= 0 && !same_ws(p->workspace, cf->apis[ai].workspace))
                pt_node_error(
                    errs, an && an->kind == PT_N_SEQ ? an->items[k] : p->node,
                    "product '%s' %s cannot hold API '%s' %s: a workspace's products hold its own APIs",
                    p->id, ws_phrase(p->workspace), p->apis.v[k], ws_phrase(cf->apis[ai].workspace));
        }
        for (int k = 0; k < p->groups.n; k++)
            if (!has_group(&groups, p->groups.v[k]))
                pt_node_error(errs, gn && gn->kind == PT_N_SEQ ? gn->items[k] : p->node,
                              "product '%s' lists unknown group '%s'", p->id, p->groups.v[k]);
        check_workspace(&wss, "product", p->id, p->workspace, p->node, errs);
    }
    for (int i = 0; i < cf->ngroups; i++)
        check_workspace(&wss, "group", cf->groups[i].id, cf->groups[i].workspace, cf->groups[i].node, errs);
    struct pt_node *lists[2] = {cf->named_values, cf->fragments};
    for (int l = 0; l < 2; l++)
        for (int i = 0; lists[l] && lists[l]->kind == PT_N_SEQ && i < lists[l]->n; i++) {
            struct pt_node *e = lists[l]->items[i], *id = pt_node_get(e, "id"),
                           *w = pt_node_get(e, "workspace");
            if (w && (w->kind != PT_N_SCALAR || w->null))
                pt_node_error(errs, w, "workspace must be a workspace id");
            else if (id && id->kind == PT_N_SCALAR)
                check_workspace(&wss, l ? "policy fragment" : "named value", id->str, w ? w->str : NULL, e,
                                errs);
        }
    for (int i = 0; i < cf->nbackends; i++)
        check_workspace(&wss, "backend", cf->backends[i].id, cf->backends[i].workspace, cf->backends[i].node,
                        errs);
    check_backends(cf, &bes, errs);
    for (int i = 0; i < cf->nversion_sets; i++)
        check_workspace(&wss, "version set", cf->version_sets[i].id, cf->version_sets[i].workspace,
                        cf->version_sets[i].node, errs);
    for (int i = 0; i < cf->nusers; i++) {
        const struct pt_user_cf *u = &cf->users[i];
        struct pt_node *gn = pt_node_get(u->node, "groups");
        for (int k = 0; k < u->groups.n; k++)
            if (!has_group(&groups, u->groups.v[k]))
                pt_node_error(errs, gn && gn->kind == PT_N_SEQ ? gn->items[k] : u->node,
                              "user '%s' is in unknown group '%s'", u->id, u->groups.v[k]);
    }
    check_subs(cf, &apis, &products, &users, &wss, errs);
    for (int i = 0; i < cf->napis; i++) {
        const struct pt_api_cf *a = &cf->apis[i];
        int vi = a->version_set ? idset_find(&vsets, a->version_set) : -1;
        if (a->version_set && !idset_has(&vsets, a->version_set))
            pt_node_error(errs, pt_node_get(a->node, "apiVersionSetId"), "API '%s': unknown version set '%s'",
                          a->id, a->version_set);
        else if (vi >= 0 && !same_ws(a->workspace, cf->version_sets[vi].workspace))
            pt_node_error(
                errs, pt_node_get(a->node, "apiVersionSetId"),
                "API '%s' %s cannot use version set '%s' %s: an API's version set is of its own scope", a->id,
                ws_phrase(a->workspace), a->version_set, ws_phrase(cf->version_sets[vi].workspace));
        check_workspace(&wss, "API", a->id, a->workspace, a->node, errs);
    }
    check_workspace_claims(cf, errs);
    /* a gateway serves APIs that exist (any workspace's: a gateway is service level) */
    for (int i = 0; i < cf->ngateways; i++) {
        const struct pt_gateway_cf *g = &cf->gateways[i];
        struct pt_node *an = pt_node_get(g->node, "apis");
        for (int k = 0; k < g->apis.n; k++)
            if (!idset_has(&apis, g->apis.v[k]))
                pt_node_error(errs, an && an->kind == PT_N_SEQ ? an->items[k] : g->node,
                              "gateway '%s' lists unknown API '%s'", g->id, g->apis.v[k]);
    }
    struct idset *all[] = {&apis, &groups, &products, &users, &vsets, &wss, &bes};
    for (size_t i = 0; i < PT_ARRAY_LEN(all); i++)
        idset_free(all[i]);
    return errs->n == before;
}
