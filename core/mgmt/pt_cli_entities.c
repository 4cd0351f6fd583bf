/*
 * pt_cli_entities -- one table of entities (noun, REST collection, columns,
 * flags) and the links between them drive the create/update/show/list/delete
 * and add/remove/list verbs of every entity; the same tables give the help
 * and the completion (pt_cli_help.c).
 */
#include "conf/pt_conf.h"
#include "mgmt/pt_cli_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DISPLAY_NAME                                                                                         \
    {                                                                                                        \
        "--display-name", "displayName", T_STR, NULL                                                         \
    }
#define DESCRIPTION                                                                                          \
    {                                                                                                        \
        "--description", "description", T_STR, NULL                                                          \
    }

/* Every entity, in the order help and the completion list them. */
const struct entity pt_cli_entities[] = {
    {"api",
     "apis",
     NULL,
     true,
     false,
     "operation import export",
     {"id", "displayName", "path", "serviceUrl", "subscriptionRequired", NULL},
     {DISPLAY_NAME,
      DESCRIPTION,
      {"--path", "path", T_STR, NULL},
      {"--service-url", "serviceUrl", T_STR, NULL},
      {"--subscription-required", "subscriptionRequired", T_BOOL, NULL},
      {"--protocols", "protocols", T_JSON, NULL},
      {"--version-set", "apiVersionSetId", T_STR, NULL},
      {"--api-version", "apiVersion", T_STR, NULL}}},
    {"operation",
     "operations",
     "api",
     true,
     false,
     NULL,
     {"id", "displayName", "method", "urlTemplate", NULL},
     {DISPLAY_NAME,
      DESCRIPTION,
      {"--method", "method", T_STR, NULL},
      {"--url-template", "urlTemplate", T_STR, NULL}}},
    {"product",
     "products",
     NULL,
     true,
     false,
     "add-api remove-api apis add-group remove-group groups",
     {"id", "displayName", "state", "subscriptionRequired", "approvalRequired", NULL},
     {DISPLAY_NAME,
      DESCRIPTION,
      {"--state", "state", T_STR, NULL},
      {"--subscription-required", "subscriptionRequired", T_BOOL, NULL},
      {"--approval-required", "approvalRequired", T_BOOL, NULL},
      {"--subscriptions-limit", "subscriptionsLimit", T_INT, NULL},
      {"--terms", "terms", T_STR, NULL}}},
    {"subscription",
     "subscriptions",
     NULL,
     true,
     false,
     "keys regenerate approve reject suspend activate cancel",
     {"id", "displayName", "scope", "ownerId", "state", NULL},
     {DISPLAY_NAME,
      {"--name", "displayName", T_STR, NULL},
      {"--scope", "scope", T_STR, NULL},
      {"--owner", "ownerId", T_STR, "/users/"},
      {"--state", "state", T_STR, NULL},
      {"--state-comment", "stateComment", T_STR, NULL},
      {"--allow-tracing", "allowTracing", T_BOOL, NULL},
      {"--primary-key", "primaryKey", T_STR, NULL},
      {"--secondary-key", "secondaryKey", T_STR, NULL}}},
    {"user",
     "users",
     NULL,
     false,
     false,
     NULL,
     {"id", "email", "firstName", "lastName", "state", NULL},
     {{"--email", "email", T_STR, NULL},
      {"--first-name", "firstName", T_STR, NULL},
      {"--last-name", "lastName", T_STR, NULL},
      {"--state", "state", T_STR, NULL},
      {"--note", "note", T_STR, NULL}}},
    {"group",
     "groups",
     NULL,
     true,
     false,
     "add-member remove-member members",
     {"id", "displayName", "type", NULL},
     {DISPLAY_NAME, DESCRIPTION, {"--type", "type", T_STR, NULL}}},
    {"named-value",
     "namedValues",
     NULL,
     true,
     false,
     NULL,
     {"id", "displayName", "secret", NULL},
     {DISPLAY_NAME,
      {"--value", "value", T_STR, NULL},
      {"--secret", "secret", T_BOOL, NULL},
      {"--tags", "tags", T_JSON, NULL}}},
    {"backend",
     "backends",
     NULL,
     true,
     false,
     NULL,
     {"id", "url", "protocol", "description", NULL},
     {DESCRIPTION,
      {"--backend-url", "url", T_STR, NULL},
      {"--protocol", "protocol", T_STR, NULL},
      {"--title", "title", T_STR, NULL}}},
    {"policy-fragment",
     "policyFragments",
     NULL,
     true,
     false,
     NULL,
     {"id", "description", NULL},
     {DESCRIPTION, {"--value", "value", T_JSON, NULL}}},
    {"version-set",
     "apiVersionSets",
     NULL,
     true,
     false,
     NULL,
     {"id", "displayName", "versioningScheme", NULL},
     {DISPLAY_NAME,
      DESCRIPTION,
      {"--versioning-scheme", "versioningScheme", T_STR, NULL},
      {"--version-query-name", "versionQueryName", T_STR, NULL},
      {"--version-header-name", "versionHeaderName", T_STR, NULL}}},
    {"workspace",
     "workspaces",
     NULL,
     false,
     false,
     NULL,
     {"id", "displayName", "description", NULL},
     {DISPLAY_NAME, DESCRIPTION}},
    {"logger",
     "loggers",
     NULL,
     false,
     false,
     NULL,
     {"id", "loggerType", "description", NULL},
     {DESCRIPTION, {"--logger-type", "loggerType", T_STR, NULL}}},
    {"gateway",
     "gateways",
     NULL,
     false,
     false,
     "add-api remove-api apis",
     {"id", "description", NULL},
     {DESCRIPTION, {"--location", "locationData.name", T_STR, NULL}}},
    {"portal", "portal/site", NULL, false, true, "publish", {NULL}, {{"--title", "title", T_STR, NULL}}},
    {"token",
     "tokens",
     NULL,
     false,
     false,
     NULL,
     {"id", "role", "workspace", NULL},
     {{"--role", "role", T_STR, NULL}, {"--workspace", "workspace", T_STR, NULL}}},
    {"schema",
     "schemas",
     NULL,
     true,
     false,
     NULL,
     {"id", "schemaType", NULL},
     {{"--schema-type", "schemaType", T_STR, NULL},
      {"--value", "value", T_STR, NULL},
      {"--document", "document", T_JSON, NULL}}},
    {"portal-page",
     "portal/pages",
     NULL,
     false,
     false,
     NULL,
     {"id", "title", "menuOrder", NULL},
     {{"--title", "title", T_STR, NULL},
      {"--markdown", "markdown", T_STR, NULL},
      {"--html", "html", T_STR, NULL},
      {"--menu-order", "menuOrder", T_INT, NULL},
      {"--groups", "groups", T_JSON, NULL}}},
    {"portal-template",
     "portal/templates",
     NULL,
     false,
     false,
     NULL,
     {"id", "subject", "builtIn", NULL},
     {{"--subject", "subject", T_STR, NULL}, {"--body", "body", T_STR, NULL}}},
    {"identity-provider",
     "portal/identityProviders",
     NULL,
     false,
     false,
     NULL,
     {"id", "displayName", "issuer", "clientId", NULL},
     {DISPLAY_NAME,
      {"--issuer", "issuer", T_STR, NULL},
      {"--client-id", "clientId", T_STR, NULL},
      {"--client-secret", "clientSecret", T_STR, NULL},
      {"--scopes", "scopes", T_JSON, NULL},
      {"--allow-signup", "allowSignup", T_BOOL, NULL}}},
};
const size_t pt_cli_entities_n = PT_ARRAY_LEN(pt_cli_entities);

/* The links between entities: PUT/DELETE {coll}/{id}/{sub}/{other}, GET the list. */
const struct link pt_cli_entities_links[] = {
    {"product", "add-api", "remove-api", "apis", "apis", "API"},
    {"product", "add-group", "remove-group", "groups", "groups", "GROUP"},
    {"group", "add-member", "remove-member", "members", "users", "USER"},
    {"gateway", "add-api", "remove-api", "apis", "apis", "API"},
};
const size_t pt_cli_entities_nlinks = PT_ARRAY_LEN(pt_cli_entities_links);

const char *const pt_cli_entities_verbs[] = {"list", "show", "create", "update", "delete", NULL};
const char *const pt_cli_entities_flags[] = {"-f", "--file", "--set", "--set-string", "--workspace", NULL};

const struct entity *pt_cli_entities_find(const char *noun, const char *parent)
{
    for (size_t i = 0; i < pt_cli_entities_n; i++)
        if (!strcmp(pt_cli_entities[i].noun, noun) &&
            (parent ? pt_cli_entities[i].parent && !strcmp(pt_cli_entities[i].parent, parent)
                    : !pt_cli_entities[i].parent))
            return &pt_cli_entities[i];
    return NULL;
}

static const struct field *find_field(const struct entity *e, const char *flag)
{
    for (int i = 0; i < (int)PT_ARRAY_LEN(e->fields) && e->fields[i].flag; i++)
        if (!strcmp(e->fields[i].flag, flag))
            return &e->fields[i];
    return NULL;
}

/* Every option given must be one this command takes (usage error 2 otherwise). */
void pt_cli_entities_check_opts(const struct opts *o, const char *what, const struct entity *e,
                                const char *const *more)
{
    for (int i = 0; i < o->n; i++) {
        const char *n = o->v[i].name;
        if (pt_cli_opts_global(n) || (more && pt_cli_opts_in_list(more, n)) ||
            (e && (find_field(e, n) || pt_cli_opts_in_list(pt_cli_entities_flags, n))))
            continue;
        pt_cli_out_usage_error("%s does not take %s (see `portico help %s`)", what, n, what);
    }
}

/* --workspace given to a command that has no workspace form: a usage error,
   never a call to the service-wide entity. */
void pt_cli_entities_refuse_workspace(const struct cli *c, const char *what)
{
    if (c->workspace)
        pt_cli_out_usage_error("%s has no workspace form; --workspace does not apply", what);
}

/* /management[/workspaces/W]/COLL[/ID][/CHILD/SUB], ids encoded (malloc'd). */
char *pt_cli_entities_path(const struct cli *c, const struct entity *e, const char *const *ids)
{
    char *p = strdup("/management");
    if (!p)
        exit(1);
    if (!e->ws)
        pt_cli_entities_refuse_workspace(c, e->parent ? e->parent : e->noun);
    if (c->workspace) {
        pt_cli_http_path_add(&p, "workspaces", true);
        pt_cli_http_path_add(&p, c->workspace, false);
    }
    const struct entity *parent = e->parent ? pt_cli_entities_find(e->parent, NULL) : NULL;
    const struct entity *chain[2] = {parent ? parent : e, parent ? e : NULL};
    for (int k = 0, id = 0; k < 2 && chain[k]; k++) {
        pt_cli_http_path_add(&p, chain[k]->coll, true);
        if (ids[id])
            pt_cli_http_path_add(&p, ids[id++], false);
    }
    return p;
}

/* Sets a dotted key ("locationData.name") in body. */
void pt_cli_entities_set_key(json_t *body, const char *key, json_t *v)
{
    const char *dot = strchr(key, '.');
    if (!dot) {
        json_object_set_new(body, key, v);
        return;
    }
    char head[256];
    snprintf(head, sizeof(head), "%.*s", (int)PT_MIN((size_t)(dot - key), sizeof(head) - 1), key);
    json_t *inner = json_object_get(body, head);
    if (!json_is_object(inner)) {
        inner = json_object();
        json_object_set_new(body, head, inner);
    }
    pt_cli_entities_set_key(inner, dot + 1, v);
}

/* v as a JSON string; a usage error when it is not UTF-8 (never a field dropped). */
json_t *pt_cli_entities_text(const char *flag, const char *v)
{
    json_t *j = json_string(v);
    if (!j)
        pt_cli_out_usage_error("%s is not UTF-8 text", flag);
    return j;
}

static json_t *field_value(const struct field *f, const char *v)
{
    switch (f->type) {
    case T_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "yes"))
            return json_true();
        if (!strcmp(v, "false") || !strcmp(v, "no"))
            return json_false();
        pt_cli_out_usage_error("%s takes true or false (got '%s')", f->flag, v);
    case T_INT: {
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (!*v || *end || errno == ERANGE)
            pt_cli_out_usage_error("%s takes a whole number (got '%s')", f->flag, v);
        return json_integer(n);
    }
    case T_JSON: {
        json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
        if (!j)
            pt_cli_out_usage_error("%s takes JSON (got '%s')", f->flag, v);
        return j;
    }
    case T_STR:
        break;
    }
    if (f->prefix && strncmp(v, f->prefix, strlen(f->prefix))) {
        char *t = NULL;
        if (asprintf(&t, "%s%s", f->prefix, v) < 0)
            exit(1);
        json_t *j = pt_cli_entities_text(f->flag, t);
        free(t);
        return j;
    }
    return pt_cli_entities_text(f->flag, v);
}

/* The value of --set KEY=VALUE (JSON when it parses as JSON, else the
   text) or of --set-string KEY=TEXT (always the text: `=123` stays "123").
   NULL when the option is neither. */
#define SET_KEY_MAX 255

static json_t *set_value(const struct opt *o)
{
    bool text = !strcmp(o->name, "--set-string");
    if (!text && strcmp(o->name, "--set"))
        return NULL;
    const char *eq = strchr(o->value, '=');
    if (!eq || eq == o->value || (size_t)(eq - o->value) > SET_KEY_MAX)
        pt_cli_out_usage_error("%s takes KEY=VALUE, a KEY of at most %d bytes (got '%.300s')", o->name,
                               SET_KEY_MAX, o->value);
    json_t *j = text ? NULL : json_loads(eq + 1, JSON_DECODE_ANY, NULL);
    return j ? j : pt_cli_entities_text(o->name, eq + 1);
}

/* The body of create/update: -f FILE's document, then the flags, then
   --set and --set-string, in the order given. */
static json_t *entity_body(const struct entity *e, const struct opts *o)
{
    /* the flags are checked first: a usage error leaves nothing behind */
    for (int i = 0; i < o->n; i++) {
        const struct field *f = find_field(e, o->v[i].name);
        json_decref(f ? field_value(f, o->v[i].value) : set_value(&o->v[i]));
    }
    const char *file = pt_cli_opts_file(o);
    json_t *body = file ? pt_cli_file_doc(file) : json_object();
    if (!json_is_object(body)) {
        fprintf(stderr, "portico: %s is not a map of properties\n", file);
        json_decref(body);
        exit(1);
    }
    /* APIM's envelope {"properties": {...}}: the server reads only what is
       inside, so the flags and defaults go there too */
    json_t *inner = json_object_get(body, "properties");
    if (json_is_object(inner)) {
        json_incref(inner);
        json_decref(body);
        body = inner;
    }
    for (int i = 0; i < o->n; i++) {
        const struct field *f = find_field(e, o->v[i].name);
        json_t *v;
        if (f)
            pt_cli_entities_set_key(body, f->key, field_value(f, o->v[i].value));
        else if ((v = set_value(&o->v[i]))) {
            char key[SET_KEY_MAX + 1]; /* set_value checked its length */
            snprintf(key, sizeof(key), "%.*s", (int)strcspn(o->v[i].value, "="), o->v[i].value);
            pt_cli_entities_set_key(body, key, v);
        }
    }
    return body;
}

/* A subscription created without a state: `submitted` when its scope is a
   product that requires approval, else `active` (docs/cli.md).  0, or the
   exit status after the product could not be read. */
static int subscription_default_state(struct cli *c, json_t *body)
{
    if (json_object_get(body, "state"))
        return 0;
    const char *scope = json_string_value(json_object_get(body, "scope"));
    bool approval = false;
    /* the scope read as the server reads it (APIM's long form names a
       product too); one it refuses is left to it */
    enum pt_sub_scope kind;
    const char *pid = NULL;
    bool product = scope && pt_conf_entities_parse_sub_scope(scope, &kind, &pid) && kind == PT_SUB_PRODUCT;
    /* a scope too long for an id is left for the server to refuse */
    if (product && strlen(pid) < 512) {
        char *path =
            pt_cli_entities_path(c, pt_cli_entities_find("product", NULL), (const char *const[]){pid, NULL});
        int rc = 0;
        json_t *p = pt_cli_http_json(c, "GET", path, NULL, &rc);
        free(path);
        if (!p)
            return rc;
        approval = json_is_true(json_object_get(p, "approvalRequired"));
        json_decref(p);
    }
    json_object_set_new(body, "state", json_string(approval ? "submitted" : "active"));
    return 0;
}

static int show_result(const struct cli *c, json_t *j)
{
    if (!json_is_object(j)) {
        fprintf(stderr, "portico: the server's answer is not an entity\n");
        json_decref(j);
        return 1;
    }
    if (c->json)
        pt_cli_out_doc(c, j);
    else
        pt_cli_out_fields(j);
    json_decref(j);
    return 0;
}

/* The JSON body of a call, NULL for none. */
int pt_cli_entities_show(struct cli *c, const char *method, const char *path, json_t *body)
{
    char *txt = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    int rc = 0;
    json_t *j = pt_cli_http_json(c, method, path, txt, &rc);
    free(txt);
    if (!j)
        return rc;
    if (!c->len) { /* pt_cli_http_json reads an empty answer as {}: no entity to show */
        json_decref(j);
        j = json_array();
    }
    return show_result(c, j);
}

/* Every page of a list, as one array, within bounds a hostile server cannot
   stretch: LIST_PAGES_MAX pages, LIST_ITEMS_MAX items, LIST_BYTES_MAX bytes
   of answers; past one, exit 1.  A nextLink is followed only within the
   listed collection, and never to a page already read (any cycle ends). */
#define LIST_PAGES_MAX 1000
#define LIST_ITEMS_MAX 100000
#define LIST_BYTES_MAX (256u << 20)

/* The path and query of nextLink when it is a page of base, else NULL. */
static const char *next_page(const char *next, const char *base)
{
    const char *np = next ? strstr(next, "/management/") : NULL;
    size_t bl = strlen(base);
    return np && !strncmp(np, base, bl) && (!np[bl] || np[bl] == '?') ? np : NULL;
}

static int list_path(struct cli *c, const char *base, const char *const *cols)
{
    json_t *all = json_array();
    char *seen[LIST_PAGES_MAX];
    int pages = 0, rc = 0;
    size_t bytes = 0;
    if (asprintf(&seen[0], "%s?$top=1000", base) < 0)
        exit(1);
    for (;;) {
        json_t *j = pt_cli_http_json(c, "GET", seen[pages++], NULL, &rc);
        bytes += c->len;
        if (j && !json_is_array(json_object_get(j, "value"))) {
            fprintf(stderr, "portico: the server's answer is not a list\n");
            rc = 1;
        }
        if (rc) {
            json_decref(j);
            break;
        }
        json_array_extend(all, json_object_get(j, "value"));
        const char *np = next_page(json_string_value(json_object_get(j, "nextLink")), base);
        bool again = false;
        for (int i = 0; np && i < pages; i++)
            again |= !strcmp(np, seen[i]);
        if (np && !again &&
            (pages == LIST_PAGES_MAX || json_array_size(all) > LIST_ITEMS_MAX || bytes > LIST_BYTES_MAX)) {
            fprintf(stderr,
                    "portico: the list goes on past %d pages, %d items or %u MiB; refused (list fewer)\n",
                    LIST_PAGES_MAX, LIST_ITEMS_MAX, LIST_BYTES_MAX >> 20);
            rc = 1;
        } else if (np && !again && !(seen[pages] = strdup(np)))
            rc = 1;
        json_decref(j);
        if (rc || !np || again)
            break;
    }
    for (int i = 0; i < pages; i++)
        free(seen[i]);
    if (!rc && c->json)
        pt_cli_out_doc(c, all);
    else if (!rc)
        pt_cli_out_table(all, cols);
    json_decref(all);
    return rc;
}

/* create (a PUT that never replaces: If-None-Match: *) or update (a PATCH). */
static int entity_write(struct cli *c, const struct entity *e, bool create, const char *id, const char *path,
                        const struct opts *o)
{
    json_t *body = entity_body(e, o);
    if (create && !strcmp(e->noun, "subscription")) {
        if (!json_object_get(body, "displayName"))
            json_object_set_new(body, "displayName", json_string(id));
        int rc = subscription_default_state(c, body);
        if (rc) {
            json_decref(body);
            return rc;
        }
    }
    c->headers = create ? "If-None-Match: *\r\n" : NULL;
    int rc = pt_cli_entities_show(c, create ? "PUT" : "PATCH", path, body);
    c->headers = NULL;
    if (rc && create && c->status == 412)
        fprintf(stderr, "portico: %s %s already exists; `portico %s%s%s update` changes it\n", e->noun, id,
                e->parent ? e->parent : "", e->parent ? " " : "", e->noun);
    return rc;
}

/* portico NOUN [CHILD] VERB [ID [SUBID]]: the five verbs of every entity. */
int pt_cli_entities_verb(struct cli *c, const struct entity *e, const char *verb, const char *const *ids,
                         int nids, const struct opts *o)
{
    char what[64];
    snprintf(what, sizeof(what), "%s%s%s", e->parent ? e->parent : "", e->parent ? " " : "", e->noun);
    bool writes = !strcmp(verb, "create") || !strcmp(verb, "update");
    /* the flags of a body only where there is one */
    pt_cli_entities_check_opts(o, e->parent ? e->parent : e->noun, writes ? e : NULL,
                               (const char *const[]){"--workspace", NULL});
    if (!pt_cli_opts_in_list(pt_cli_entities_verbs, verb) ||
        (e->singleton && (!strcmp(verb, "create") || !strcmp(verb, "delete"))))
        pt_cli_out_usage_error("unknown %s command '%s'", what, verb);
    int need = (e->parent ? 1 : 0) + (e->singleton ? 0 : 1);
    bool list = !strcmp(verb, "list");
    if (list ? nids != need - 1 : nids != need)
        pt_cli_out_usage_error("%s %s takes %s", what, verb,
                               e->singleton ? "no id"
                               : e->parent  ? (list ? "the API's id" : "the API's id and the operation's")
                                            : (list ? "no id" : "one id"));
    if (writes && find_field(e, "--workspace"))
        c->workspace = NULL; /* a token's --workspace is the token's field, not where it lives */
    const char *pid[3] = {ids[0], nids > 1 ? ids[1] : NULL, NULL};
    char *path = pt_cli_entities_path(c, e, pid);
    int rc = 0;
    if (list && !e->singleton)
        rc = list_path(c, path, e->cols);
    else if (!strcmp(verb, "show") || (list && e->singleton))
        rc = pt_cli_entities_show(c, "GET", path, NULL);
    else if (writes)
        rc = entity_write(c, e, !strcmp(verb, "create") && !e->singleton, ids[nids - 1], path, o);
    else { /* delete */
        json_t *j = pt_cli_http_json(c, "DELETE", path, NULL, &rc);
        json_decref(j);
        if (j && !c->json)
            printf("deleted %s %s\n", what, ids[nids - 1]);
    }
    free(path);
    return rc;
}

/* portico product add-api P A | remove-api P A | apis P, and the other links. */
int pt_cli_entities_link(struct cli *c, const struct entity *e, const struct link *l, const char *verb,
                         const char *const *ids, int nids, const struct opts *o)
{
    pt_cli_entities_check_opts(o, e->noun, NULL, (const char *const[]){"--workspace", NULL});
    bool list = !strcmp(verb, l->list);
    if (nids != (list ? 1 : 2))
        pt_cli_out_usage_error("%s %s takes %s", e->noun, verb, list ? "one id" : "two ids");
    char *path = pt_cli_entities_path(c, e, (const char *const[]){ids[0], NULL});
    pt_cli_http_path_add(&path, l->sub, true);
    if (!list)
        pt_cli_http_path_add(&path, ids[1], false);
    static const char *const cols[] = {"id", "displayName", NULL};
    static const char *const user_cols[] = {"id", "email", "firstName", "lastName", NULL};
    int rc = 0;
    if (list)
        rc = list_path(c, path, strcmp(l->sub, "users") ? cols : user_cols);
    else {
        bool add = !strcmp(verb, l->add);
        char done[160];
        snprintf(done, sizeof(done), "%s %s", add ? "added" : "removed", l->sub);
        rc = pt_cli_http_done(c, add ? "PUT" : "DELETE", path, NULL, done);
        if (!rc && !c->json)
            printf(" %s %s %s\n", ids[1], add ? "to" : "from", ids[0]);
    }
    free(path);
    return rc;
}
