/*
 * pt_samples -- the entities a new store starts with (see pt_samples.h).
 *
 * The samples are one document in the configuration file's shape, trimmed
 * of what the file already declares and applied through the same code as
 * a management API `apply`, so they are checked like anything else.
 */
#include "conf/pt_samples.h"

#include "base/pt_log.h"
#include "conf/pt_model.h"

#include <stdio.h>
#include <string.h>

#define STATE_NAME "samples"
#define ECHO_API "echo-api"
#define ECHO_PATH "echo"
#define ADMIN_GROUP "administrators"

/* APIM's new-instance entities, on Portico's demo backend.  Starter's limits are APIM's: 5 calls in
   60 s, 100 calls in a week (604800 s). */
static const char samples_json[] =
    "{\"apis\": [{"
    "  \"id\": \"" ECHO_API "\", \"displayName\": \"Echo API\", \"path\": \"" ECHO_PATH "\","
    "  \"serviceUrl\": \"http://127.0.0.1:9001\","
    "  \"description\": \"A sample: the demo backend (conf/demo-backend.py) answers every call with what it "
    "received.\","
    "  \"operations\": ["
    "    {\"id\": \"retrieve-resource\", \"method\": \"GET\", \"urlTemplate\": \"/resource\","
    "     \"displayName\": \"Retrieve resource\", \"description\": \"Reads a resource.\"},"
    "    {\"id\": \"create-resource\", \"method\": \"POST\", \"urlTemplate\": \"/resource\","
    "     \"displayName\": \"Create resource\", \"description\": \"Sends a new resource.\"},"
    "    {\"id\": \"modify-resource\", \"method\": \"PUT\", \"urlTemplate\": \"/resource\","
    "     \"displayName\": \"Modify resource\", \"description\": \"Replaces a resource.\"},"
    "    {\"id\": \"remove-resource\", \"method\": \"DELETE\", \"urlTemplate\": \"/resource\","
    "     \"displayName\": \"Remove resource\", \"description\": \"Deletes a resource.\"},"
    "    {\"id\": \"retrieve-header-only\", \"method\": \"HEAD\", \"urlTemplate\": \"/resource\","
    "     \"displayName\": \"Retrieve header only\", \"description\": \"The headers of a resource.\"},"
    "    {\"id\": \"anything\", \"method\": \"*\", \"urlTemplate\": \"/*\", \"displayName\": \"Anything "
    "else\","
    "     \"description\": \"Every other method and path reaches the backend as it is.\"}]}],"
    " \"products\": ["
    "  {\"id\": \"starter\", \"displayName\": \"Starter\", \"state\": \"published\","
    "   \"description\": \"A sample: up to 5 calls a minute and 100 calls a week per subscription.\","
    "   \"subscriptionRequired\": true, \"approvalRequired\": false, \"subscriptionsLimit\": 1,"
    "   \"apis\": [\"" ECHO_API "\"], \"groups\": [\"administrators\", \"developers\", \"guests\"],"
    "   \"policies\": {\"inbound\": [{\"rate-limit\": {\"calls\": 5, \"renewal-period\": 60}},"
    "                               {\"quota\": {\"calls\": 100, \"renewal-period\": 604800}}, \"base\"]}},"
    "  {\"id\": \"unlimited\", \"displayName\": \"Unlimited\", \"state\": \"published\","
    "   \"description\": \"A sample: no limits; an administrator approves each subscription.\","
    "   \"subscriptionRequired\": true, \"approvalRequired\": true, \"subscriptionsLimit\": 1,"
    "   \"apis\": [\"" ECHO_API "\"], \"groups\": [\"administrators\", \"developers\", \"guests\"]}]}";

/* The administrator's subscriptions: one per sample product, active (an administrator's own). */
static const char *const admin_subs[][3] = {{"admin-starter", "starter", "Administrator's Starter"},
                                            {"admin-unlimited", "unlimited", "Administrator's Unlimited"}};

enum pt_samples_before pt_samples_probe(struct pt_store *st)
{
    int64_t v;
    if (pt_store_state_get(st, STATE_NAME, &v))
        return PT_SAMPLES_SETTLED;
    return pt_store_has_entities(st) ? PT_SAMPLES_OLDER : PT_SAMPLES_EMPTY;
}

/* ------------------------------------------------------- what the file has */

static const char *str_of(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

struct path_seen {
    const char *path;
    bool taken;
};

static bool path_taken(void *arg, const struct pt_entity *e)
{
    struct path_seen *p = arg;
    if (pt_model_same_path(str_of(e->body, "path"), p->path))
        p->taken = true;
    return !p->taken;
}

/* Whether the store (at this point: the file's entities only) has a `kind` with this id. */
static bool declared(struct pt_store *st, const char *kind, const char *id)
{
    char src[16];
    return pt_store_info(st, kind, "", id, src, NULL);
}

/* Drops the items of doc[list] that the file declares (same id; for APIs, same path too). */
static void drop_declared(struct pt_store *st, json_t *doc, const char *list, const char *kind)
{
    json_t *items = json_object_get(doc, list);
    for (size_t i = json_array_size(items); i-- > 0;) {
        json_t *item = json_array_get(items, i);
        bool clash = declared(st, kind, str_of(item, "id"));
        if (!clash && !strcmp(kind, "api")) {
            struct path_seen p = {str_of(item, "path"), false};
            pt_store_each(st, "api", NULL, path_taken, &p);
            clash = p.taken;
        }
        if (clash)
            json_array_remove(items, i);
    }
}

/* Whether doc[list] still has an item with this id. */
static bool in_doc(const json_t *doc, const char *list, const char *id)
{
    size_t i;
    const json_t *item;
    json_array_foreach(json_object_get(doc, list), i, item)
    {
        if (!strcmp(str_of(item, "id"), id))
            return true;
    }
    return false;
}

/* The sample products keep the Echo API only when it exists: the sample's or the file's own. */
static void keep_known_apis(struct pt_store *st, json_t *doc)
{
    if (in_doc(doc, "apis", ECHO_API) || declared(st, "api", ECHO_API))
        return;
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(doc, "products"), i, p)
    {
        json_object_set_new(p, "apis", json_array());
    }
}

/* ------------------------------------------------------ the administrator */

struct first_admin {
    struct pt_store *st;
    char id[256];
};

/* pt_store_links lists by (a, b): the first active user is the first administrator by id (a blocked
   or pending one gets no subscription). */
static bool first_admin(void *arg, const char *group, const char *user)
{
    struct first_admin *f = arg;
    json_t *body = NULL;
    (void)group;
    if (pt_store_get(f->st, "user", "", user, &body, NULL)) {
        const char *state = str_of(body, "state");
        if (!*state || !strcmp(state, "active"))
            snprintf(f->id, sizeof(f->id), "%s", user);
    }
    json_decref(body);
    return !f->id[0];
}

struct owned {
    const char *scope, *owner;
    int n;
};

static bool count_owned(void *arg, const struct pt_entity *e)
{
    struct owned *o = arg;
    if (!strcmp(str_of(e->body, "scope"), o->scope) && !strcmp(str_of(e->body, "ownerId"), o->owner))
        o->n++;
    return true;
}

/* A subscription to each sample product that is seeded, for the first administrator by id, unless
   the file already gives them one to it (a second would also break the limit of 1). */
static void add_admin_subs(struct pt_store *st, json_t *doc)
{
    struct first_admin f = {st, ""};
    pt_store_links(st, "group-user", ADMIN_GROUP, first_admin, &f);
    const char *admin = f.id;
    if (!admin[0])
        return;
    json_t *subs = json_array();
    for (size_t i = 0; i < PT_ARRAY_LEN(admin_subs); i++) {
        const char *id = admin_subs[i][0], *product = admin_subs[i][1], *name = admin_subs[i][2];
        if (!in_doc(doc, "products", product) || declared(st, "subscription", id))
            continue;
        char scope[300], owner[300];
        snprintf(scope, sizeof(scope), "/products/%s", product);
        snprintf(owner, sizeof(owner), "/users/%s", admin);
        struct owned o = {scope, owner, 0};
        pt_store_each(st, "subscription", NULL, count_owned, &o);
        if (o.n > 0) {
            pt_info("samples: no subscription '%s': the file already gives user '%s' one to product '%s'", id,
                    admin, product);
            continue;
        }
        json_array_append_new(subs, json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", id, "displayName", name,
                                              "scope", scope, "ownerId", owner, "state", "active"));
    }
    json_object_set_new(doc, "subscriptions", subs);
}

/* ------------------------------------------------------- the file alone */

bool pt_samples_known(const struct pt_conf *cf, const char *kind, const char *id)
{
    if (!cf->samples_assumed || !cf->samples || !id)
        return false;
    if (!strcmp(kind, "api")) {
        /* left out when the file has an API at its path */
        for (int i = 0; i < cf->napis; i++)
            if (cf->apis[i].path && pt_model_same_path(cf->apis[i].path, ECHO_PATH))
                return false;
        return !strcmp(id, ECHO_API);
    }
    for (size_t i = 0; i < PT_ARRAY_LEN(admin_subs); i++)
        if (!strcmp(kind, "product") && !strcmp(id, admin_subs[i][1]))
            return true;
    return false;
}

/* ------------------------------------------------------------------ seed */

static const char *plural(size_t n)
{
    return n == 1 ? "" : "s";
}

static bool seed(struct pt_store *st, const struct pt_conf *file, const char *secret_key,
                 struct pt_errors *errs)
{
    json_error_t jerr;
    json_t *doc = json_loads(samples_json, 0, &jerr);
    if (!doc) {
        pt_node_errors_add(errs, "samples: %s (line %d)", jerr.text, jerr.line);
        return false;
    }
    drop_declared(st, doc, "apis", "api");
    drop_declared(st, doc, "products", "product");
    keep_known_apis(st, doc);
    add_admin_subs(st, doc);
    struct pt_conf *cf = pt_model_parse_doc(file, doc, NULL, "samples", errs);
    bool ok = cf && pt_model_apply(st, cf, secret_key, "api", errs);
    if (cf)
        pt_conf_free(cf);
    if (ok) {
        size_t apis = json_array_size(json_object_get(doc, "apis")),
               products = json_array_size(json_object_get(doc, "products")),
               subs = json_array_size(json_object_get(doc, "subscriptions"));
        pt_info("store: new, so it starts with the samples: %zu API%s, %zu product%s, %zu subscription%s "
                "(samples: false leaves them out)",
                apis, plural(apis), products, plural(products), subs, plural(subs));
    }
    json_decref(doc);
    return ok;
}

bool pt_samples_settle(struct pt_store *st, const struct pt_conf *file, const char *secret_key,
                       enum pt_samples_before before, struct pt_errors *errs)
{
    if (before == PT_SAMPLES_SETTLED)
        return true;
    bool wanted = before == PT_SAMPLES_EMPTY && file->samples;
    if (wanted && !seed(st, file, secret_key, errs))
        return false;
    if (!pt_store_state_raise(st, STATE_NAME, wanted ? 1 : 0)) {
        pt_node_errors_add(errs, "store: %s", pt_store_error(st));
        return false;
    }
    if (before == PT_SAMPLES_OLDER)
        pt_info("store: made by an earlier version, so no samples are added to it");
    return true;
}
