/*
 * pt_portal_browse -- what guests and developers browse: the home page, the
 * APIs and their reference, products, downloads of definitions, the
 * provider's pages, terms and media; and who may see what (visibility).
 *
 * Visibility follows APIM: a product is visible when it is published and
 * one of its groups is one of the visitor's (a guest is in "guests", a
 * signed-in user in "developers" and their own groups); administrators see
 * everything; an API is visible when a visible product holds it.  What the
 * visitor may not see is a 404, never a 403, so ids cannot be probed.
 *
 * The reference is rendered here, on the server, from the stored
 * definition (docs/portal.md says why): no JavaScript is needed to read it.
 * To stay fast with thousands of APIs, what is derived from the store (the
 * products, which APIs each holds, the API list) is kept per store version,
 * and the rendered reference of the most recently read APIs too.
 */
#include "base/pt_log.h"
#include "conf/pt_export_openapi.h"
#include "conf/pt_import.h"
#include "portal/pt_portal_int.h"

#include <event2/buffer.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define SCHEMA_DEPTH 10         /* nesting rendered at most */
#define SCHEMA_NODES 600        /* properties rendered at most per schema */
#define REF_CACHE 32            /* APIs whose rendered reference is kept */
#define LIST_MAX 5000           /* APIs listed on one page at most */
#define EXAMPLE_MAX (64 * 1024) /* bytes of one example shown */

/* ------------------------------------------------------------------ index */

/* What is derived from the store, for one store version. */
static struct {
    bool built;
    uint64_t version;
    const struct pt_conf *file;
    json_t *products;  /* [{id, displayName, description, state, groups, apis, terms, ...}] by name */
    json_t *apis;      /* {id: {id, displayName, description, path, apiType, products: [index...]}} */
    json_t *api_order; /* [id] by display name */
} idx;

static bool add_link(void *arg, const char *a, const char *b)
{
    (void)a;
    json_array_append_new(arg, json_string(b));
    return true;
}

static bool collect_product(void *arg, const struct pt_entity *e)
{
    json_t *p = json_deep_copy(e->body);
    if (!p)
        return true;
    json_object_set_new(p, "id", json_string(e->id));
    json_t *apis = json_array(), *groups = json_array();
    pt_store_links(pt_portal_req_srv.store, "product-api", e->id, add_link, apis);
    pt_store_links(pt_portal_req_srv.store, "product-group", e->id, add_link, groups);
    json_object_set_new(p, "apis", apis);
    json_object_set_new(p, "groups", groups);
    json_array_append_new(arg, p);
    return true;
}

static const char *str_or(const json_t *o, const char *key, const char *def)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : def;
}

/* The API list's fields straight from SQLite: parsing every API's whole body (operations' policies,
   schemas of megabytes) would cost far more than the list needs. */
static void collect_apis(json_t *apis)
{
    sqlite3 *db = pt_store_sqlite(pt_portal_req_srv.store);
    sqlite3_stmt *st = NULL;
    if (!db || sqlite3_prepare_v2(db,
                                  "SELECT id, json_extract(body, '$.displayName'), "
                                  "substr(json_extract(body, '$.description'), 1, 400), "
                                  "json_extract(body, '$.path'), json_extract(body, '$.apiType'), "
                                  "json_extract(body, '$.isCurrent') FROM entities WHERE kind = 'api' AND "
                                  "parent = '' ORDER BY id",
                                  -1, &st, NULL) != SQLITE_OK) {
        pt_warn("portal: cannot list the APIs: %s", db ? sqlite3_errmsg(db) : "no store");
        return;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        if (!id || (sqlite3_column_type(st, 5) != SQLITE_NULL && sqlite3_column_int(st, 5) == 0))
            continue; /* a non-current revision is reached through its current one, not listed */
        const char *name = (const char *)sqlite3_column_text(st, 1);
        const char *desc = (const char *)sqlite3_column_text(st, 2);
        const char *path = (const char *)sqlite3_column_text(st, 3);
        const char *type = (const char *)sqlite3_column_text(st, 4);
        json_t *a = json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:[]}", "id", id, "displayName",
                              name ? name : id, "description", desc ? desc : "", "path", path ? path : "",
                              "apiType", type ? type : "http", "products");
        if (a)
            json_object_set_new(apis, id, a);
    }
    sqlite3_finalize(st);
}

static int by_display_name(const void *x, const void *y)
{
    const json_t *a = *(json_t *const *)x, *b = *(json_t *const *)y;
    int c = strcasecmp(str_or(a, "displayName", ""), str_or(b, "displayName", ""));
    return c ? c : strcmp(str_or(a, "id", ""), str_or(b, "id", ""));
}

static json_t *sorted(json_t *list)
{
    size_t n = json_array_size(list);
    json_t **v = malloc(sizeof(*v) * (n ? n : 1));
    if (!v)
        return list;
    for (size_t i = 0; i < n; i++)
        v[i] = json_array_get(list, i);
    qsort(v, n, sizeof(*v), by_display_name);
    json_t *out = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append(out, v[i]);
    free(v);
    json_decref(list);
    return out;
}

static void index_free(void)
{
    json_decref(idx.products);
    json_decref(idx.apis);
    json_decref(idx.api_order);
    idx.products = idx.apis = idx.api_order = NULL;
    idx.built = false;
}

/* Rebuilds the index when the store or the file changed. */
static void index_refresh(void)
{
    struct pt_store *st = pt_portal_req_srv.store;
    uint64_t v = pt_store_version(st);
    if (idx.built && idx.version == v && idx.file == pt_portal_req_srv.file)
        return;
    index_free();
    json_t *products = json_array(), *apis = json_object();
    pt_store_each(st, "product", "", collect_product, products);
    collect_apis(apis);
    idx.products = sorted(products);
    size_t i, j;
    json_t *p, *a;
    json_array_foreach(idx.products, i, p)
    {
        json_array_foreach(json_object_get(p, "apis"), j, a)
        {
            json_t *api = json_object_get(apis, json_string_value(a));
            if (api)
                json_array_append_new(json_object_get(api, "products"), json_integer((json_int_t)i));
        }
    }
    json_t *order = json_array();
    const char *k;
    json_object_foreach(apis, k, a)
    {
        json_array_append(order, a);
    }
    order = sorted(order);
    idx.api_order = json_array();
    json_array_foreach(order, i, a)
    {
        json_array_append_new(idx.api_order, json_string(str_or(a, "id", "")));
    }
    json_decref(order);
    idx.apis = apis;
    idx.version = v;
    idx.file = pt_portal_req_srv.file;
    idx.built = true;
}

/* ------------------------------------------------------------- visibility */

static bool visitor_in(const struct pt_portal_req *r, const char *group)
{
    if (!r->user)
        return !strcmp(group, "guests");
    if (!strcmp(group, "developers"))
        return true;
    size_t i;
    json_t *g;
    json_array_foreach(r->user->groups, i, g)
    {
        if (json_string_value(g) && !strcmp(json_string_value(g), group))
            return true;
    }
    return false;
}

bool pt_portal_browse_product_visible(struct pt_portal_req *r, const json_t *product)
{
    if (!product)
        return false;
    if (r->user && r->user->admin)
        return true;
    if (strcmp(str_or(product, "state", "notPublished"), "published"))
        return false;
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(product, "groups"), i, g)
    {
        if (json_string_value(g) && visitor_in(r, json_string_value(g)))
            return true;
    }
    return false; /* no group: nobody but administrators */
}

/* The visible product flags, one per index product (malloc'd). */
static bool *visible_products(struct pt_portal_req *r)
{
    size_t n = json_array_size(idx.products);
    bool *v = calloc(n ? n : 1, sizeof(*v));
    for (size_t i = 0; v && i < n; i++)
        v[i] = pt_portal_browse_product_visible(r, json_array_get(idx.products, i));
    return v;
}

static bool api_visible_in(const json_t *api, const bool *vis)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(api, "products"), i, p)
    {
        if (vis[json_integer_value(p)])
            return true;
    }
    return false;
}

bool pt_portal_browse_api_visible(struct pt_portal_req *r, const char *api_id)
{
    index_refresh();
    const json_t *api = api_id ? json_object_get(idx.apis, api_id) : NULL;
    if (!api)
        return false;
    if (r->user && r->user->admin)
        return true;
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(api, "products"), i, p)
    {
        if (pt_portal_browse_product_visible(r, json_array_get(idx.products, (size_t)json_integer_value(p))))
            return true;
    }
    return false;
}

static const json_t *visible_product(struct pt_portal_req *r, const char *id)
{
    index_refresh();
    size_t i;
    json_t *p;
    json_array_foreach(idx.products, i, p)
    {
        if (!strcmp(str_or(p, "id", ""), id))
            return pt_portal_browse_product_visible(r, p) ? p : NULL;
    }
    return NULL;
}

/* ------------------------------------------------------------- small bits */

#define OUT(...) evbuffer_add_printf(out, __VA_ARGS__)

static void esc(struct evbuffer *out, const char *s)
{
    pt_portal_render_esc(out, s);
}

/* A URL path segment (ids are letters, digits and -_.~, but be safe). */
static void esc_seg(struct evbuffer *out, const char *s)
{
    char *e = evhttp_encode_uri(s ? s : "");
    esc(out, e ? e : "");
    free(e);
}

static void markdown(struct evbuffer *out, const char *md)
{
    if (md && *md)
        pt_portal_render_markdown(out, md);
}

static const char *gateway_base(void)
{
    const struct pt_conf *f = pt_portal_req_srv.file;
    return f && f->portal.gateway_url ? f->portal.gateway_url : "http://127.0.0.1:8080";
}

/* The API's base URL on the gateway: gatewayUrl + "/" + path. */
static void api_base(char *buf, size_t len, const json_t *api)
{
    const char *path = str_or(api, "path", "");
    snprintf(buf, len, "%s%s%s", gateway_base(), *path ? "/" : "", path);
}

static const char *key_header(const json_t *api)
{
    return str_or(json_object_get(api, "subscriptionKeyParameterNames"), "header",
                  "Ocp-Apim-Subscription-Key");
}

static bool subscription_required(const json_t *api)
{
    return !json_is_false(json_object_get(api, "subscriptionRequired"));
}

/* The stored API with its operations ({..., "operations": [...]}), or NULL. */
static bool collect_op(void *arg, const struct pt_entity *e)
{
    json_t *o = json_deep_copy(e->body);
    if (o) {
        json_object_set_new(o, "id", json_string(e->id));
        json_array_append_new(arg, o);
    }
    return true;
}

static json_t *load_api(const char *id)
{
    json_t *api = NULL;
    if (!pt_store_get(pt_portal_req_srv.store, "api", "", id, &api, NULL))
        return NULL;
    json_object_set_new(api, "id", json_string(id));
    json_t *ops = json_array();
    pt_store_each(pt_portal_req_srv.store, "operation", id, collect_op, ops);
    json_object_set_new(api, "operations", ops);
    return api;
}

/* ---------------------------------------------------------------- schemas */

/* The API schema with this id, or NULL. */
static const json_t *api_schema(const json_t *api, const char *id)
{
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(api, "schemas"), i, s)
    {
        if (id ? !strcmp(str_or(s, "id", ""), id) : json_is_object(json_object_get(s, "document")))
            return s;
    }
    return NULL;
}

/* A type of a schema document by name: components.schemas, definitions, $defs, or the document. */
static const json_t *named_type(const json_t *doc, const char *name)
{
    if (!name || !*name)
        return doc;
    const json_t *t = json_object_get(json_object_get(json_object_get(doc, "components"), "schemas"), name);
    if (!t)
        t = json_object_get(json_object_get(doc, "definitions"), name);
    if (!t)
        t = json_object_get(json_object_get(doc, "$defs"), name);
    return t;
}

/* Resolves a local "#/a/b" JSON pointer inside doc. */
static const json_t *resolve_ref(const json_t *doc, const char *ref)
{
    if (!doc || !ref || strncmp(ref, "#/", 2))
        return NULL;
    const json_t *cur = doc;
    char part[256];
    const char *p = ref + 2;
    for (int depth = 0; cur && *p && depth < 32; depth++) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n >= sizeof(part))
            return NULL;
        /* ~1 is '/', ~0 is '~' */
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (p[i] == '~' && i + 1 < n && (p[i + 1] == '0' || p[i + 1] == '1')) {
                part[k++] = p[i + 1] == '0' ? '~' : '/';
                i++;
            } else
                part[k++] = p[i];
        }
        part[k] = '\0';
        cur = json_is_array(cur) ? json_array_get(cur, (size_t)strtoul(part, NULL, 10))
                                 : json_object_get(cur, part);
        p += n + (e ? 1 : 0);
    }
    return cur;
}

struct schema_walk {
    struct evbuffer *out;
    const json_t *doc; /* where $refs resolve */
    const json_t *stack[SCHEMA_DEPTH + 2];
    int depth;
    int nodes;
};

/* Follows $ref (bounded), returning the target or s; *name gets the referenced type's name. */
static const json_t *deref(struct schema_walk *w, const json_t *s, const char **name)
{
    for (int i = 0; i < 8 && json_is_object(s); i++) {
        const char *ref = json_string_value(json_object_get(s, "$ref"));
        if (!ref)
            break;
        const char *slash = strrchr(ref, '/');
        if (name)
            *name = slash ? slash + 1 : ref;
        const json_t *t = resolve_ref(w->doc, ref);
        if (!t)
            break;
        s = t;
    }
    return s;
}

/* "string (date-time)", "array of Pet", "map of string to integer", "one of A | B". */
static void type_text_at(struct schema_walk *w, const json_t *s, char *buf, size_t len, int depth)
{
    if (depth > 4) { /* "array of array of ..." of a type that holds itself */
        snprintf(buf, len, "…");
        return;
    }
    const char *name = NULL;
    s = deref(w, s, &name);
    const json_t *t = json_object_get(s, "type");
    const char *type = json_string_value(t);
    if (json_is_array(t)) /* ["string", "null"] */
        type = json_string_value(json_array_get(t, 0));
    if (!type && json_object_get(s, "properties"))
        type = "object";
    if (!type && json_object_get(s, "items"))
        type = "array";
    if (type && !strcmp(type, "array")) {
        char inner[160];
        type_text_at(w, json_object_get(s, "items"), inner, sizeof(inner), depth + 1);
        snprintf(buf, len, "array of %s", inner);
        return;
    }
    const json_t *addl = json_object_get(s, "additionalProperties");
    if ((!type || !strcmp(type, "object")) && json_is_object(addl) && !json_object_get(s, "properties")) {
        char inner[160];
        type_text_at(w, addl, inner, sizeof(inner), depth + 1);
        snprintf(buf, len, "map of string to %s", inner);
        return;
    }
    if (!type && (json_object_get(s, "oneOf") || json_object_get(s, "anyOf")))
        type = json_object_get(s, "oneOf") ? "one of" : "any of";
    if (!type && json_object_get(s, "allOf"))
        type = "object";
    const char *fmt = json_string_value(json_object_get(s, "format"));
    if (name && type && !strcmp(type, "object"))
        snprintf(buf, len, "%s", name);
    else if (fmt)
        snprintf(buf, len, "%s (%s)", type ? type : "any", fmt);
    else
        snprintf(buf, len, "%s", type ? type : (name ? name : "any"));
}

static void type_text(struct schema_walk *w, const json_t *s, char *buf, size_t len)
{
    type_text_at(w, s, buf, len, 0);
}

static void schema_children(struct schema_walk *w, const json_t *s);

/* Constraints worth a reader's eye: enum, pattern, bounds, default. */
static void constraints(struct schema_walk *w, const json_t *s)
{
    struct evbuffer *out = w->out;
    const json_t *en = json_object_get(s, "enum");
    if (json_is_array(en) && json_array_size(en)) {
        OUT(" <span class=\"type\">one of:");
        size_t i;
        json_t *v;
        json_array_foreach(en, i, v)
        {
            if (i >= 30) {
                OUT(" …");
                break;
            }
            char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            OUT(" <code>");
            esc(out, t);
            OUT("</code>");
            free(t);
        }
        OUT("</span>");
    }
    static const char *const keys[] = {"pattern",   "minimum",  "maximum",  "minLength",
                                       "maxLength", "minItems", "maxItems", "default"};
    for (size_t i = 0; i < PT_ARRAY_LEN(keys); i++) {
        const json_t *v = json_object_get(s, keys[i]);
        if (!v)
            continue;
        char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        OUT(" <span class=\"type\">%s: <code>", keys[i]);
        esc(out, t);
        OUT("</code></span>");
        free(t);
    }
}

/* One line of the tree: name, type, required, description, then its own children. */
static void schema_node(struct schema_walk *w, const char *name, const json_t *s, bool required)
{
    struct evbuffer *out = w->out;
    if (++w->nodes > SCHEMA_NODES) {
        if (w->nodes == SCHEMA_NODES + 1)
            OUT("<li class=\"muted\">… (more properties not shown)</li>");
        return;
    }
    char type[200];
    type_text(w, s, type, sizeof(type));
    const json_t *d = deref(w, s, NULL);
    OUT("<li>");
    if (name) {
        OUT("<span class=\"prop\">");
        esc(out, name);
        OUT("</span> ");
    }
    OUT("<span class=\"type\">");
    esc(out, type);
    OUT("</span>");
    if (required)
        OUT("<span class=\"req\">required</span>");
    constraints(w, d);
    const char *desc = str_or(s, "description", str_or(d, "description", NULL));
    if (desc) {
        OUT("<span class=\"desc\">");
        esc(out, desc);
        OUT("</span>");
    }
    schema_children(w, s);
    OUT("</li>");
}

static bool in_list(const json_t *list, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (json_string_value(v) && !strcmp(json_string_value(v), name))
            return true;
    }
    return false;
}

static bool on_stack(const struct schema_walk *w, const json_t *d)
{
    for (int i = 0; i < w->depth; i++)
        if (w->stack[i] == d)
            return true;
    return false;
}

/* The properties of an object schema (allOf parts merged), as items of the current list. Every call
   counts against the walk's node cap (allOf fans out: 20 parts over 8 levels would be 20^8 calls), and
   each dereferenced part goes on the $ref stack so a part that holds itself is cut like a recursive
   property. */
static void properties(struct schema_walk *w, const json_t *s, int guard)
{
    if (guard > 8)
        return;
    if (++w->nodes > SCHEMA_NODES) {
        if (w->nodes == SCHEMA_NODES + 1)
            evbuffer_add_printf(w->out, "<li class=\"muted\">… (more properties not shown)</li>");
        return;
    }
    s = deref(w, s, NULL);
    const json_t *req = json_object_get(s, "required");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)json_object_get(s, "properties"), k, v)
    {
        schema_node(w, k, v, in_list(req, k));
    }
    size_t i;
    json_t *part;
    json_array_foreach(json_object_get(s, "allOf"), i, part)
    {
        const json_t *d = deref(w, part, NULL);
        if (on_stack(w, d) || w->depth >= (int)PT_ARRAY_LEN(w->stack))
            continue; /* a part that holds itself (or too deep): already shown above */
        if (w->nodes > SCHEMA_NODES)
            break;
        w->stack[w->depth++] = d;
        properties(w, d, guard + 1);
        w->depth--;
    }
}

/* What lies under a node: an object's properties, an array's items, a map's values, the alternatives. */
static void schema_children(struct schema_walk *w, const json_t *s)
{
    struct evbuffer *out = w->out;
    const json_t *d = deref(w, s, NULL);
    if (on_stack(w, d))
        return; /* a recursive type: its name was shown, the tree stops */
    if (w->depth >= SCHEMA_DEPTH || !json_is_object(d))
        return;
    w->stack[w->depth++] = d;
    const json_t *items = json_object_get(d, "items");
    const json_t *addl = json_object_get(d, "additionalProperties");
    const json_t *alts =
        json_object_get(d, "oneOf") ? json_object_get(d, "oneOf") : json_object_get(d, "anyOf");
    if (json_object_get(d, "properties") || json_object_get(d, "allOf")) {
        OUT("<ul>");
        properties(w, d, 0);
        OUT("</ul>");
    } else if (json_is_object(items)) {
        const json_t *it = deref(w, items, NULL);
        if (json_object_get(it, "properties") || json_object_get(it, "items") ||
            json_object_get(it, "allOf")) {
            OUT("<ul>");
            schema_node(w, "[item]", items, false);
            OUT("</ul>");
        }
    } else if (json_is_object(addl)) {
        const json_t *it = deref(w, addl, NULL);
        if (json_object_get(it, "properties") || json_object_get(it, "items")) {
            OUT("<ul>");
            schema_node(w, "{key}", addl, false);
            OUT("</ul>");
        }
    }
    if (json_is_array(alts)) {
        OUT("<ul>");
        size_t i;
        json_t *a;
        json_array_foreach(alts, i, a)
        {
            char label[32];
            snprintf(label, sizeof(label), "option %zu", i + 1);
            schema_node(w, label, a, false);
        }
        OUT("</ul>");
    }
    w->depth--;
}

/* The schema of a representation or parameter: inline `schema`, or `typeName` of API schema `schemaId`.
 *doc gets the document its $refs resolve in. */
static const json_t *schema_of(const json_t *api, const json_t *holder, const json_t **doc)
{
    const char *sid = str_or(holder, "schemaId", NULL);
    const json_t *sch = api_schema(api, sid);
    *doc = json_object_get(sch, "document");
    const json_t *inline_schema = json_object_get(holder, "schema");
    if (json_is_object(inline_schema))
        return inline_schema;
    if (sid && *doc)
        return named_type(*doc, str_or(holder, "typeName", NULL));
    return NULL;
}

static void render_schema(struct evbuffer *out, const json_t *doc, const json_t *s, const char *type_name)
{
    struct schema_walk w = {.out = out, .doc = doc};
    OUT("<div class=\"schema\"><ul>");
    schema_node(&w, type_name, s, false);
    OUT("</ul></div>");
}

/* A sample value built from a schema (for code samples without an example), bounded. */
static json_t *sample_of(struct schema_walk *w, const json_t *s, int depth)
{
    s = deref(w, s, NULL);
    /* bounded in depth and in values: 30 properties a level to the 6th power would be millions */
    if (!json_is_object(s) || depth > 6 || ++w->nodes > 300)
        return json_null();
    const json_t *ex = json_object_get(s, "example");
    if (ex)
        return json_deep_copy(ex);
    const json_t *en = json_object_get(s, "enum");
    if (json_array_size(en))
        return json_deep_copy(json_array_get(en, 0));
    const json_t *def = json_object_get(s, "default");
    if (def)
        return json_deep_copy(def);
    const char *type = json_string_value(json_object_get(s, "type"));
    if (!type && (json_object_get(s, "properties") || json_object_get(s, "allOf")))
        type = "object";
    if (!type && json_object_get(s, "items"))
        type = "array";
    if (!type)
        return json_null();
    if (!strcmp(type, "object")) {
        json_t *o = json_object();
        const char *k;
        json_t *v;
        int n = 0;
        json_object_foreach((json_t *)json_object_get(s, "properties"), k, v)
        {
            if (++n > 30)
                break;
            json_object_set_new(o, k, sample_of(w, v, depth + 1));
        }
        size_t i;
        json_t *part;
        json_array_foreach(json_object_get(s, "allOf"), i, part)
        {
            json_t *p = sample_of(w, part, depth + 1);
            if (json_is_object(p))
                json_object_update(o, p);
            json_decref(p);
        }
        return o;
    }
    if (!strcmp(type, "array")) {
        json_t *a = json_array();
        json_array_append_new(a, sample_of(w, json_object_get(s, "items"), depth + 1));
        return a;
    }
    if (!strcmp(type, "integer"))
        return json_integer(0);
    if (!strcmp(type, "number"))
        return json_real(0.0);
    if (!strcmp(type, "boolean"))
        return json_true();
    const char *fmt = str_or(s, "format", "");
    if (!strcmp(fmt, "date-time"))
        return json_string("2026-01-01T00:00:00Z");
    if (!strcmp(fmt, "date"))
        return json_string("2026-01-01");
    if (!strcmp(fmt, "email"))
        return json_string("user@example.com");
    if (!strcmp(fmt, "uuid"))
        return json_string("3fa85f64-5717-4562-b3fc-2c963f66afa6");
    return json_string("string");
}

/* The first example of a representation as text (JSON pretty-printed, strings as they are); malloc'd. */
static char *example_text(const json_t *value)
{
    if (json_is_string(value))
        return strdup(json_string_value(value));
    return json_dumps(value, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
}

static void pre_text(struct evbuffer *out, const char *text)
{
    size_t n = strlen(text);
    /* focusable: a keyboard can scroll a wide example (axe: scrollable-region-focusable) */
    OUT("<pre tabindex=\"0\"><code>");
    if (n > EXAMPLE_MAX) {
        char *cut = strndup(text, EXAMPLE_MAX);
        esc(out, cut);
        free(cut);
        OUT("\n…");
    } else
        esc(out, text);
    OUT("</code></pre>");
}

/* ------------------------------------------------------------- reference */

static void render_params(struct evbuffer *out, const json_t *api, const char *where, const json_t *list)
{
    size_t i;
    json_t *p;
    json_array_foreach(list, i, p)
    {
        const json_t *doc = NULL;
        const json_t *s = schema_of(api, p, &doc);
        struct schema_walk w = {.out = out, .doc = doc};
        char type[200];
        if (s)
            type_text(&w, s, type, sizeof(type));
        else
            snprintf(type, sizeof(type), "%s", str_or(p, "type", "string"));
        OUT("<tr><td><code>");
        esc(out, str_or(p, "name", ""));
        OUT("</code></td><td>%s</td><td>", where);
        esc(out, type);
        OUT("</td><td>%s</td><td>", json_is_true(json_object_get(p, "required")) ? "yes" : "no");
        esc(out, str_or(p, "description", ""));
        const json_t *vals = json_object_get(p, "values");
        if (json_array_size(vals)) {
            OUT(" <span class=\"muted\">Values:");
            size_t j;
            json_t *v;
            json_array_foreach(vals, j, v)
            {
                if (j >= 30)
                    break;
                OUT(" <code>");
                esc(out, json_string_value(v) ? json_string_value(v) : "");
                OUT("</code>");
            }
            OUT("</span>");
        }
        if (json_string_value(json_object_get(p, "defaultValue"))) {
            OUT(" <span class=\"muted\">Default: <code>");
            esc(out, json_string_value(json_object_get(p, "defaultValue")));
            OUT("</code></span>");
        }
        OUT("</td></tr>");
    }
}

static void render_representations(struct evbuffer *out, const json_t *api, const json_t *reps)
{
    size_t i;
    json_t *rep;
    json_array_foreach(reps, i, rep)
    {
        OUT("<div class=\"representation\"><h5><code>");
        esc(out, str_or(rep, "contentType", "(any)"));
        OUT("</code></h5>");
        const json_t *doc = NULL;
        const json_t *s = schema_of(api, rep, &doc);
        if (s) {
            OUT("<p class=\"muted\">Schema</p>");
            render_schema(out, doc, s, str_or(rep, "typeName", NULL));
        }
        const json_t *fp = json_object_get(rep, "formParameters");
        if (json_array_size(fp)) {
            OUT("<div class=\"table-wrap\"><table><caption>Form fields</caption><thead><tr><th>Name</th>"
                "<th>In</th><th>Type</th><th>Required</th><th>Description</th></tr></thead><tbody>");
            render_params(out, api, "form", fp);
            OUT("</tbody></table></div>");
        }
        const char *k;
        json_t *ex;
        int n = 0;
        json_object_foreach((json_t *)json_object_get(rep, "examples"), k, ex)
        {
            if (++n > 5)
                break;
            OUT("<p class=\"muted\">Example <q>");
            esc(out, k);
            OUT("</q>");
            if (json_string_value(json_object_get(ex, "summary"))) {
                OUT(": ");
                esc(out, json_string_value(json_object_get(ex, "summary")));
            }
            OUT("</p>");
            const json_t *value = json_object_get(ex, "value");
            char *t = value ? example_text(value) : NULL;
            if (t)
                pre_text(out, t);
            free(t);
        }
        OUT("</div>");
    }
}

/* The URL template with parameters filled by their default, first value, or a placeholder. */
static void sample_path(const json_t *op, char *buf, size_t len)
{
    const char *t = str_or(op, "urlTemplate", "/");
    size_t o = 0;
    for (const char *p = t; *p && o + 1 < len; p++) {
        if (*p == '*' && p[1] == '\0' && p > t && p[-1] == '/') {
            o += (size_t)snprintf(buf + o, len - o, "%s", "resource");
            break;
        }
        if (*p != '{') {
            buf[o++] = *p;
            continue;
        }
        const char *e = strchr(p, '}');
        if (!e)
            break;
        char name[128];
        snprintf(name, sizeof(name), "%.*s", (int)(e - p - 1), p + 1);
        const char *val = NULL;
        size_t i;
        json_t *tp;
        json_array_foreach(json_object_get(op, "templateParameters"), i, tp)
        {
            if (!strcmp(str_or(tp, "name", ""), name)) {
                val = str_or(tp, "defaultValue",
                             json_string_value(json_array_get(json_object_get(tp, "values"), 0)));
                if (!val &&
                    (!strcmp(str_or(tp, "type", ""), "integer") || !strcmp(str_or(tp, "type", ""), "number")))
                    val = "1";
            }
        }
        if (!val)
            val = name;
        char *enc = evhttp_encode_uri(val);
        o += (size_t)snprintf(buf + o, len - o, "%s", enc ? enc : "");
        free(enc);
        if (o >= len)
            o = len - 1;
        p = e;
    }
    buf[o < len ? o : len - 1] = '\0';
}

/* The request body of the samples: the first example of the first representation, else one built from its
   schema; NULL without a representation.  *ctype gets its content type.  malloc'd. */
static char *sample_body_full(const json_t *api, const json_t *op, const char **ctype)
{
    const json_t *rep = json_array_get(json_object_get(json_object_get(op, "request"), "representations"), 0);
    if (!rep)
        return NULL;
    *ctype = str_or(rep, "contentType", "application/json");
    const char *k;
    json_t *ex;
    json_object_foreach((json_t *)json_object_get(rep, "examples"), k, ex)
    {
        const json_t *v = json_object_get(ex, "value");
        if (v) {
            if (json_is_string(v))
                return strdup(json_string_value(v));
            return json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
        }
    }
    const json_t *doc = NULL;
    const json_t *s = schema_of(api, rep, &doc);
    if (!s || !strstr(*ctype, "json"))
        return NULL;
    struct schema_walk w = {.doc = doc};
    json_t *v = sample_of(&w, s, 0);
    char *t = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    json_decref(v);
    return t;
}

/* The samples carry the body up to 16 KiB; a bigger one is named, not copied three times into the page. */
static char *sample_body(const json_t *api, const json_t *op, const char **ctype)
{
    char *b = sample_body_full(api, op, ctype);
    if (b && strlen(b) > 16 * 1024) {
        free(b);
        b = strdup("(the request body: see the example above)");
    }
    return b;
}

/* s as a single-quoted shell word. */
static void shell_quote(struct evbuffer *b, const char *s)
{
    evbuffer_add(b, "'", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '\'')
            evbuffer_add_printf(b, "'\\''");
        else
            evbuffer_add(b, p, 1);
    }
    evbuffer_add(b, "'", 1);
}

/* s as a double-quoted Python / JavaScript string literal (JSON's escaping suits both). */
static void code_string(struct evbuffer *b, const char *s)
{
    json_t *j = json_string(s);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;
    evbuffer_add_printf(b, "%s", t ? t : "\"\"");
    free(t);
    json_decref(j);
}

static void flush_sample(struct evbuffer *out, const char *lang, const char *label, struct evbuffer *code)
{
    OUT("<h5 class=\"sample-label\">%s</h5><pre class=\"sample\" tabindex=\"0\" data-lang=\"%s\" "
        "data-label=\"%s\"><code>",
        label, lang, label);
    size_t n = evbuffer_get_length(code);
    char *t = malloc(n + 1);
    if (t) {
        evbuffer_remove(code, t, n);
        t[n] = '\0';
        esc(out, t);
        free(t);
    }
    OUT("</code></pre>");
}

/* curl, Python (standard library) and JavaScript (fetch) calling the operation through the gateway. */
static void render_samples(struct evbuffer *out, const json_t *api, const json_t *op)
{
    char base[1200], path[1200], url[2600];
    api_base(base, sizeof(base), api);
    sample_path(op, path, sizeof(path));
    snprintf(url, sizeof(url), "%s%s", base, path);
    const char *method = str_or(op, "method", "GET");
    if (!strcmp(method, "*"))
        method = "GET";
    const char *ctype = NULL;
    char *body = sample_body(api, op, &ctype);
    bool key = subscription_required(api);
    const char *kh = key_header(api);
    const char *placeholder = "<your-subscription-key>";
    struct evbuffer *c = evbuffer_new();
    if (!c) {
        free(body);
        return;
    }
    OUT("<details class=\"samples\" open><summary>Code samples</summary><div class=\"samples-body\">");
    /* curl */
    evbuffer_add_printf(c, "curl -X %s ", method);
    shell_quote(c, url);
    if (key) {
        char h[512];
        snprintf(h, sizeof(h), "%s: %s", kh, placeholder);
        evbuffer_add_printf(c, " \\\n  -H ");
        shell_quote(c, h);
    }
    if (body) {
        char h[300];
        snprintf(h, sizeof(h), "Content-Type: %s", ctype);
        evbuffer_add_printf(c, " \\\n  -H ");
        shell_quote(c, h);
        evbuffer_add_printf(c, " \\\n  --data-binary ");
        shell_quote(c, body);
    }
    evbuffer_add_printf(c, "\n");
    flush_sample(out, "curl", "curl", c);
    /* Python */
    evbuffer_add_printf(c, "import urllib.request\n\nreq = urllib.request.Request(\n    ");
    code_string(c, url);
    evbuffer_add_printf(c, ",\n    method=\"%s\",\n    headers={", method);
    bool first = true;
    if (key) {
        code_string(c, kh);
        evbuffer_add_printf(c, ": ");
        code_string(c, placeholder);
        first = false;
    }
    if (body) {
        evbuffer_add_printf(c, "%s\"Content-Type\": ", first ? "" : ", ");
        code_string(c, ctype);
    }
    evbuffer_add_printf(c, "},\n");
    if (body) {
        /* a raw triple-quoted string keeps a multi-line body readable; else an escaped one */
        size_t bl = strlen(body);
        if (!strstr(body, "'''") && (!bl || (body[bl - 1] != '\\' && body[bl - 1] != '\'')))
            evbuffer_add_printf(c, "    data=r'''%s'''.encode(),\n", body);
        else {
            evbuffer_add_printf(c, "    data=");
            code_string(c, body);
            evbuffer_add_printf(c, ".encode(),\n");
        }
    }
    evbuffer_add_printf(
        c, ")\nwith urllib.request.urlopen(req) as resp:\n    print(resp.status, resp.read().decode())\n");
    flush_sample(out, "python", "Python", c);
    /* JavaScript */
    evbuffer_add_printf(c, "const response = await fetch(");
    code_string(c, url);
    evbuffer_add_printf(c, ", {\n  method: \"%s\",\n  headers: {", method);
    first = true;
    if (key) {
        evbuffer_add_printf(c, "\n    ");
        code_string(c, kh);
        evbuffer_add_printf(c, ": ");
        code_string(c, placeholder);
        first = false;
    }
    if (body) {
        evbuffer_add_printf(c, "%s\n    \"Content-Type\": ", first ? "" : ",");
        code_string(c, ctype);
        first = false;
    }
    evbuffer_add_printf(c, "%s},\n", first ? "" : "\n  ");
    if (body) {
        /* JSON is a JavaScript literal: shown as the object it is */
        json_t *parsed = strstr(ctype, "json") ? json_loads(body, JSON_DECODE_ANY, NULL) : NULL;
        if (parsed) {
            char *t = json_dumps(parsed, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
            evbuffer_add_printf(c, "  body: JSON.stringify(");
            for (const char *p = t ? t : "null"; *p; p++) /* indented one level more */
                evbuffer_add_printf(c, *p == '\n' ? "\n  " : "%c", *p);
            evbuffer_add_printf(c, "),\n");
            free(t);
            json_decref(parsed);
        } else {
            evbuffer_add_printf(c, "  body: ");
            code_string(c, body);
            evbuffer_add_printf(c, ",\n");
        }
    }
    evbuffer_add_printf(c, "});\nconsole.log(response.status, await response.text());\n");
    flush_sample(out, "javascript", "JavaScript", c);
    OUT("</div></details>");
    evbuffer_free(c);
    free(body);
}

static void method_badge(struct evbuffer *out, const char *m)
{
    char lower[16];
    size_t i = 0;
    for (; m[i] && i + 1 < sizeof(lower); i++)
        lower[i] = (char)((m[i] >= 'A' && m[i] <= 'Z') ? m[i] + 32 : m[i]);
    lower[i] = '\0';
    OUT("<span class=\"method method-%s\">", strcmp(m, "*") ? lower : "any");
    esc(out, strcmp(m, "*") ? m : "ANY");
    OUT("</span>");
}

/* One operation of the reference; `heading` is h2 on the API page and h1 on the operation's own. */
static bool is_grpc(const json_t *api)
{
    return !strcmp(str_or(api, "apiType", "http"), "grpc");
}

/* A gRPC message type as the .proto writes it in an rpc: `stream T` when it streams. */
static void grpc_type(struct evbuffer *out, const json_t *g, const char *type_key, const char *stream_key)
{
    OUT("<code>");
    if (json_is_true(json_object_get(g, stream_key)))
        OUT("stream ");
    esc(out, str_or(g, type_key, "?"));
    OUT("</code>");
}

/* What a gRPC operation stands for: service, rpc, call kind, message types. */
static void render_grpc_method(struct evbuffer *out, const json_t *op)
{
    const json_t *g = json_object_get(op, "grpc");
    if (!json_is_object(g))
        return;
    OUT("<dl class=\"grpc-method\"><dt>Service</dt><dd><code>");
    esc(out, str_or(g, "service", "?"));
    OUT("</code></dd><dt>Method</dt><dd><code>");
    esc(out, str_or(g, "method", "?"));
    OUT("</code></dd><dt>Call kind</dt><dd class=\"grpc-kind\">");
    esc(out, str_or(g, "kind", "unary"));
    OUT("</dd><dt>Request</dt><dd>");
    grpc_type(out, g, "requestType", "clientStreaming");
    OUT("</dd><dt>Response</dt><dd>");
    grpc_type(out, g, "responseType", "serverStreaming");
    OUT("</dd></dl>");
}

/* A gRPC API's services, each with its methods (the operations carry them). */
static void render_grpc_services(struct evbuffer *out, const json_t *ops)
{
    OUT("<section class=\"grpc-services\"><h2>Services</h2><p>Call these methods with a gRPC client over "
        "HTTP/2 (the <code>.proto</code> below describes the messages).</p>");
    size_t i, j;
    json_t *op, *prev;
    json_array_foreach(ops, i, op)
    {
        const char *svc = str_or(json_object_get(op, "grpc"), "service", NULL);
        bool seen = !svc;
        json_array_foreach(ops, j, prev)
        {
            if (j >= i)
                break;
            seen = seen || !strcmp(str_or(json_object_get(prev, "grpc"), "service", ""), svc);
        }
        if (seen)
            continue;
        OUT("<h3 class=\"grpc-service\"><code>");
        esc(out, svc);
        OUT("</code></h3><div class=\"table-wrap\"><table class=\"grpc-methods\"><thead><tr><th "
            "scope=\"col\">Method</th><th scope=\"col\">Call kind</th><th scope=\"col\">Request</th><th "
            "scope=\"col\">Response</th></tr></thead><tbody>");
        json_array_foreach(ops, j, prev)
        {
            const json_t *g = json_object_get(prev, "grpc");
            if (strcmp(str_or(g, "service", ""), svc))
                continue;
            OUT("<tr><td><a href=\"#op-");
            esc(out, str_or(prev, "id", ""));
            OUT("\">");
            esc(out, str_or(g, "method", "?"));
            OUT("</a></td><td>");
            esc(out, str_or(g, "kind", "unary"));
            OUT("</td><td>");
            grpc_type(out, g, "requestType", "clientStreaming");
            OUT("</td><td>");
            grpc_type(out, g, "responseType", "serverStreaming");
            OUT("</td></tr>");
        }
        OUT("</tbody></table></div>");
    }
    OUT("</section>");
}

static void render_operation(struct evbuffer *out, const json_t *api, const json_t *op, int heading)
{
    const char *api_id = str_or(api, "id", "");
    const char *op_id = str_or(op, "id", "");
    char base[1200];
    api_base(base, sizeof(base), api);
    OUT("<section class=\"operation\" id=\"op-");
    esc(out, op_id);
    OUT("\"><h%d>", heading);
    esc(out, str_or(op, "displayName", op_id));
    OUT("</h%d><p class=\"op-line\">", heading);
    method_badge(out, str_or(op, "method", "GET"));
    OUT(" <code class=\"url-template\">");
    esc(out, base);
    esc(out, str_or(op, "urlTemplate", "/"));
    OUT("</code>");
    if (heading == 2) {
        OUT(" <a href=\"/apis/");
        esc_seg(out, api_id);
        OUT("/operations/");
        esc_seg(out, op_id);
        OUT("\">%s<span class=\"visually-hidden\"> (", is_grpc(api) ? "Open" : "Open and try it");
        esc(out, str_or(op, "displayName", op_id));
        OUT(")</span></a>");
    }
    OUT("</p>");
    if (*str_or(op, "description", "")) {
        OUT("<div class=\"markdown\">");
        markdown(out, str_or(op, "description", ""));
        OUT("</div>");
    }
    render_grpc_method(out, op);
    const json_t *req = json_object_get(op, "request");
    const json_t *tp = json_object_get(op, "templateParameters");
    const json_t *qp = json_object_get(req, "queryParameters");
    const json_t *hp = json_object_get(req, "headers");
    if (json_array_size(tp) + json_array_size(qp) + json_array_size(hp)) {
        OUT("<h%d>Parameters</h%d><div class=\"table-wrap\"><table class=\"parameters\"><thead><tr><th "
            "scope=\"col\">"
            "Name</th><th scope=\"col\">In</th><th scope=\"col\">Type</th><th scope=\"col\">Required</th><th "
            "scope=\"col\">Description</th></tr></thead><tbody>",
            heading + 1, heading + 1);
        render_params(out, api, "path", tp);
        render_params(out, api, "query", qp);
        render_params(out, api, "header", hp);
        OUT("</tbody></table></div>");
    }
    if (req &&
        (*str_or(req, "description", "") || json_array_size(json_object_get(req, "representations")))) {
        OUT("<h%d>Request body</h%d>", heading + 1, heading + 1);
        if (*str_or(req, "description", "")) {
            OUT("<div class=\"markdown\">");
            markdown(out, str_or(req, "description", ""));
            OUT("</div>");
        }
        render_representations(out, api, json_object_get(req, "representations"));
    }
    const json_t *resps = json_object_get(op, "responses");
    if (json_array_size(resps)) {
        OUT("<h%d>Responses</h%d>", heading + 1, heading + 1);
        size_t i;
        json_t *rs;
        json_array_foreach(resps, i, rs)
        {
            const json_t *sc = json_object_get(rs, "statusCode");
            char code[32];
            if (json_is_integer(sc))
                snprintf(code, sizeof(code), "%lld", (long long)json_integer_value(sc));
            else
                snprintf(code, sizeof(code), "%s", json_string_value(sc) ? json_string_value(sc) : "default");
            OUT("<div class=\"response\"><h%d class=\"status\">", heading + 2);
            esc(out, code);
            OUT("</h%d>", heading + 2);
            if (*str_or(rs, "description", "")) {
                OUT("<div class=\"markdown\">");
                markdown(out, str_or(rs, "description", ""));
                OUT("</div>");
            }
            if (json_array_size(json_object_get(rs, "headers"))) {
                OUT("<div "
                    "class=\"table-wrap\"><table><caption>Headers</caption><thead><tr><th>Name</th><th>In</"
                    "th>"
                    "<th>Type</th><th>Required</th><th>Description</th></tr></thead><tbody>");
                render_params(out, api, "header", json_object_get(rs, "headers"));
                OUT("</tbody></table></div>");
            }
            render_representations(out, api, json_object_get(rs, "representations"));
            OUT("</div>");
        }
    }
    if (!is_grpc(api)) /* HTTP samples would not make a gRPC call */
        render_samples(out, api, op);
    OUT("</section>");
}

static void download_link(struct evbuffer *out, const char *id, const char *format, const char *label)
{
    OUT("<li><a class=\"download\" href=\"/apis/");
    esc_seg(out, id);
    OUT("/definition?format=%s\" download>%s</a></li>", format, label);
}

/* The OpenAPI and Swagger documents (made from any API), then the texts the API was imported from. */
static void render_downloads(struct evbuffer *out, const json_t *api)
{
    const char *id = str_or(api, "id", "");
    OUT("<h2>Download the definition</h2><ul class=\"downloads\">");
    download_link(out, id, "openapi", "OpenAPI 3 (YAML)");
    download_link(out, id, "openapi%2Bjson", "OpenAPI 3 (JSON)");
    download_link(out, id, "swagger", "Swagger 2 (JSON)");
    for (const struct pt_import_text *t = pt_import_texts; t->format; t++)
        if (pt_import_text_of(api, t))
            download_link(out, id, t->download, t->label);
    OUT("</ul>");
}

/* The API page's body (everything but the layout): the same for every visitor, so it is cached. */
static char *render_reference(const json_t *api, size_t *len)
{
    struct evbuffer *out = evbuffer_new();
    if (!out)
        return NULL;
    const char *id = str_or(api, "id", "");
    char base[1200];
    api_base(base, sizeof(base), api);
    const json_t *ops = json_object_get(api, "operations");
    OUT("<div class=\"api-layout\"><nav class=\"api-toc\" aria-label=\"Operations\"><h2>Operations</h2><ul>");
    size_t i;
    json_t *op;
    json_array_foreach(ops, i, op)
    {
        OUT("<li><a href=\"#op-");
        esc(out, str_or(op, "id", ""));
        OUT("\">");
        method_badge(out, str_or(op, "method", "GET"));
        OUT(" ");
        esc(out, str_or(op, "displayName", str_or(op, "id", "")));
        OUT("</a></li>");
    }
    OUT("</ul></nav><div class=\"api-body\"><h1>");
    esc(out, str_or(api, "displayName", id));
    OUT("</h1>");
    if (*str_or(api, "description", "")) {
        OUT("<div class=\"markdown\">");
        markdown(out, str_or(api, "description", ""));
        OUT("</div>");
    }
    OUT("<dl class=\"api-facts\"><dt>Base URL</dt><dd><code>");
    esc(out, base);
    OUT("</code></dd>");
    if (subscription_required(api)) {
        OUT("<dt>Subscription key</dt><dd>Send it in the <code>");
        esc(out, key_header(api));
        OUT("</code> header");
        const char *q =
            str_or(json_object_get(api, "subscriptionKeyParameterNames"), "query", "subscription-key");
        OUT(" (or the <code>");
        esc(out, q);
        OUT("</code> query parameter).</dd>");
    } else
        OUT("<dt>Subscription key</dt><dd>Not required.</dd>");
    const char *type = str_or(api, "apiType", "http");
    if (strcmp(type, "http")) {
        OUT("<dt>Type</dt><dd>");
        esc(out, type);
        OUT("</dd>");
    }
    OUT("</dl>");
    if (is_grpc(api) && json_array_size(ops))
        render_grpc_services(out, ops);
    render_downloads(out, api);
    if (!json_array_size(ops))
        OUT("<p>This API describes no operations.</p>");
    json_array_foreach(ops, i, op)
    {
        render_operation(out, api, op, 2);
    }
    OUT("</div></div>");
    *len = evbuffer_get_length(out);
    char *t = malloc(*len + 1);
    if (t) {
        evbuffer_remove(out, t, *len);
        t[*len] = '\0';
    }
    evbuffer_free(out);
    return t;
}

/* Rendered references, by API id, for one store version and file. */
static struct {
    char id[256];
    uint64_t version;
    const struct pt_conf *file;
    char *html;
    size_t len;
    uint64_t used;
} refs[REF_CACHE];
static uint64_t ref_clock;

static void refs_free(void)
{
    for (int i = 0; i < REF_CACHE; i++) {
        free(refs[i].html);
        memset(&refs[i], 0, sizeof(refs[i]));
    }
}

static bool cached_reference(struct evbuffer *out, const char *id)
{
    uint64_t v = pt_store_version(pt_portal_req_srv.store);
    int slot = 0;
    for (int i = 0; i < REF_CACHE; i++) {
        if (refs[i].html && refs[i].version == v && refs[i].file == pt_portal_req_srv.file &&
            !strcmp(refs[i].id, id)) {
            refs[i].used = ++ref_clock;
            evbuffer_add(out, refs[i].html, refs[i].len);
            return true;
        }
        if (refs[i].used < refs[slot].used)
            slot = i;
    }
    json_t *api = load_api(id);
    if (!api)
        return false;
    size_t len = 0;
    char *html = render_reference(api, &len);
    json_decref(api);
    if (!html)
        return false;
    evbuffer_add(out, html, len);
    if (strlen(id) < sizeof(refs[slot].id)) {
        free(refs[slot].html);
        refs[slot].html = html;
        refs[slot].len = len;
        refs[slot].version = v;
        refs[slot].file = pt_portal_req_srv.file;
        refs[slot].used = ++ref_clock;
        snprintf(refs[slot].id, sizeof(refs[slot].id), "%s", id);
    } else
        free(html);
    return true;
}

/* --------------------------------------------------------------- handlers */

void pt_portal_browse_home(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1;
    (void)a2;
    const json_t *site = json_object_get(pt_portal_content_get(r), "site");
    pt_portal_render_begin(r, "Home");
    evbuffer_add_printf(r->out, "<div class=\"markdown home\">");
    pt_portal_render_markdown(r->out, str_or(site, "home", ""));
    evbuffer_add_printf(r->out, "</div>");
    pt_portal_render_end(r);
}

void pt_portal_browse_apis(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1;
    (void)a2;
    struct evbuffer *out = r->out;
    index_refresh();
    bool *vis = visible_products(r);
    if (!vis) {
        pt_portal_req_text(r, 500, "Internal Server Error");
        return;
    }
    const char *q = pt_portal_req_query(r, "q");
    bool admin = r->user && r->user->admin;
    pt_portal_render_begin(r, "APIs");
    OUT("<h1>APIs</h1><form class=\"search\" method=\"get\" action=\"/apis\" role=\"search\"><label "
        "for=\"api-q\">"
        "Search APIs</label> <input type=\"text\" id=\"api-q\" name=\"q\" value=\"");
    esc(out, q ? q : "");
    OUT("\"> <button type=\"submit\">Search</button></form><ul id=\"api-list\" class=\"cards\">");
    size_t i, shown = 0;
    json_t *id;
    json_array_foreach(idx.api_order, i, id)
    {
        const json_t *a = json_object_get(idx.apis, json_string_value(id));
        if (!a || (!admin && !api_visible_in(a, vis)))
            continue;
        if (q && *q && !strcasestr(str_or(a, "displayName", ""), q) &&
            !strcasestr(str_or(a, "description", ""), q) && !strcasestr(str_or(a, "id", ""), q))
            continue;
        if (++shown > LIST_MAX)
            break;
        OUT("<li><a href=\"/apis/");
        esc_seg(out, json_string_value(id));
        OUT("\">");
        esc(out, str_or(a, "displayName", ""));
        OUT("</a>");
        const char *d = str_or(a, "description", "");
        if (*d) {
            char cut[241];
            snprintf(cut, sizeof(cut), "%s", d);
            OUT("<p>");
            esc(out, cut);
            OUT("%s</p>", strlen(d) > 240 ? "…" : "");
        }
        OUT("</li>");
    }
    OUT("</ul>");
    if (!shown)
        OUT("<p>%s</p>", q && *q ? "No API matches." : "There is no API to show yet.");
    free(vis);
    pt_portal_render_end(r);
}

void pt_portal_browse_api(struct pt_portal_req *r, const char *api, const char *a2)
{
    (void)a2;
    if (!pt_portal_browse_api_visible(r, api)) {
        pt_portal_render_not_found(r);
        return;
    }
    const json_t *a = json_object_get(idx.apis, api);
    pt_portal_render_begin(r, str_or(a, "displayName", api));
    if (!cached_reference(r->out, api)) {
        pt_portal_render_not_found(r);
        return;
    }
    pt_portal_render_end(r);
}

/* Does an active subscription's scope ("/apis", "/apis/a", "/products/p") open the API? */
static bool scope_opens(const char *scope, const char *api_id)
{
    if (!strcmp(scope, "/apis"))
        return true;
    if (!strncmp(scope, "/apis/", 6))
        return !strcmp(scope + 6, api_id);
    if (strncmp(scope, "/products/", 10))
        return false;
    const json_t *api = json_object_get(idx.apis, api_id);
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(api, "products"), i, p)
    {
        const json_t *prod = json_array_get(idx.products, (size_t)json_integer_value(p));
        if (!strcmp(str_or(prod, "id", ""), scope + 10))
            return true;
    }
    return false;
}

/* <option>s of the user's active subscriptions that open the API (one indexed query, not a scan in C). */
static int subscription_options(struct pt_portal_req *r, const char *api_id)
{
    struct evbuffer *out = r->out;
    sqlite3 *db = pt_store_sqlite(pt_portal_req_srv.store);
    sqlite3_stmt *st = NULL;
    int n = 0;
    if (!db ||
        sqlite3_prepare_v2(db,
                           "SELECT id, json_extract(body, '$.displayName'), json_extract(body, '$.scope'), "
                           "json_extract(body, '$.ownerId') "
                           "FROM entities WHERE kind = 'subscription' AND "
                           "json_extract(body, '$.ownerId') LIKE ?1 ESCAPE '\\' AND "
                           "json_extract(body, '$.state') = 'active' ORDER BY id LIMIT 200",
                           -1, &st, NULL) != SQLITE_OK)
        return 0;
    /* ownerId is "/users/ID", perhaps after a service path: LIKE '%/users/ID' (LIKE's wildcards in the
       id escaped), then the model's rule decides exactly, as on the subscriptions pages */
    char owner[300], *o = owner;
    o += snprintf(owner, sizeof(owner), "%%/users/");
    for (const char *c = r->user->id; *c && o < owner + sizeof(owner) - 3; c++) {
        if (*c == '%' || *c == '_' || *c == '\\')
            *o++ = '\\';
        *o++ = *c;
    }
    *o = '\0';
    sqlite3_bind_text(st, 1, owner, -1, SQLITE_TRANSIENT);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        const char *name = (const char *)sqlite3_column_text(st, 1);
        const char *scope = (const char *)sqlite3_column_text(st, 2);
        const char *u = pt_conf_entities_owner_user((const char *)sqlite3_column_text(st, 3));
        if (!id || !scope || !u || strcmp(u, r->user->id) || !scope_opens(scope, api_id))
            continue;
        OUT("<option value=\"");
        esc(out, id);
        OUT("\">");
        esc(out, name ? name : id);
        OUT("</option>");
        n++;
    }
    sqlite3_finalize(st);
    return n;
}

/* The console: a form console.js (H-D) drives; it calls the portal's relay, never the gateway directly. */
static void render_console(struct pt_portal_req *r, const json_t *api, const json_t *op)
{
    struct evbuffer *out = r->out;
    if (is_grpc(api)) {
        OUT("<section class=\"try\"><h2>Try it</h2><p class=\"grpc-no-console\">The console does not make "
            "gRPC calls: use a gRPC client (such as <code>grpcurl</code>) with this API's "
            "<code>.proto</code> "
            "file, over HTTP/2, with your subscription key in the <code>");
        esc(out, key_header(api));
        OUT("</code> metadata.</p></section>");
        return;
    }
    if (!r->user) {
        OUT("<section class=\"try\"><h2>Try it</h2><p>Please <a href=\"/signin\">sign in to try it</a>: "
            "calls from the "
            "console use one of your subscription keys.</p></section>");
        return;
    }
    char path[1200];
    sample_path(op, path, sizeof(path));
    const char *method = str_or(op, "method", "GET");
    OUT("<section class=\"try\"><h2>Try it</h2><form id=\"console\" class=\"stacked\" method=\"post\" "
        "action=\"/api/console\" data-api=\"");
    esc(out, str_or(api, "id", ""));
    OUT("\" data-operation=\"");
    esc(out, str_or(op, "id", ""));
    OUT("\" data-api-path=\"/");
    esc(out, str_or(api, "path", ""));
    OUT("\">");
    pt_portal_render_csrf(r);
    OUT("<label for=\"console-subscription\">Subscription</label><select id=\"console-subscription\" "
        "name=\"subscription\">");
    index_refresh();
    int nsubs = subscription_options(r, str_or(api, "id", ""));
    OUT("</select>");
    if (!nsubs)
        OUT("<p class=\"muted\">You have no active subscription to this API yet: <a "
            "href=\"/products\">subscribe to a "
            "product</a> that holds it.</p>");
    OUT("<label for=\"console-key\">Key</label><select id=\"console-key\" "
        "name=\"key\"><option value=\"primary\">Primary</option><option "
        "value=\"secondary\">Secondary</option>"
        "</select><label for=\"console-method\">Method</label><input type=\"text\" id=\"console-method\" "
        "name=\"method\" value=\"");
    esc(out, strcmp(method, "*") ? method : "GET");
    OUT("\"><label for=\"console-path\">Path</label><input type=\"text\" id=\"console-path\" name=\"path\" "
        "value=\"");
    esc(out, path);
    OUT("\"><label for=\"console-headers\">Headers (one <code>Name: value</code> a line)</label><textarea "
        "id=\"console-headers\" name=\"headers\"></textarea><label "
        "for=\"console-body\">Body</label><textarea "
        "id=\"console-body\" name=\"body\">");
    const char *ctype = NULL;
    char *body = sample_body(api, op, &ctype);
    if (body)
        esc(out, body);
    free(body);
    OUT("</textarea><p><button type=\"submit\">Send</button></p></form><div id=\"console-response\" "
        "aria-live=\"polite\"></div></section>");
    /* the console's script and styles (pt_portal_subs.c serves the relay) */
    OUT("<script src=\"");
    esc(out, pt_portal_assets_url("console.js"));
    OUT("\" defer></script><link rel=\"stylesheet\" href=\"");
    esc(out, pt_portal_assets_url("subs.css"));
    OUT("\">");
}

void pt_portal_browse_operation(struct pt_portal_req *r, const char *api_id, const char *op_id)
{
    if (!pt_portal_browse_api_visible(r, api_id)) {
        pt_portal_render_not_found(r);
        return;
    }
    json_t *api = load_api(api_id);
    const json_t *op = NULL;
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(api, "operations"), i, o)
    {
        if (!strcmp(str_or(o, "id", ""), op_id))
            op = o;
    }
    if (!op) {
        json_decref(api);
        pt_portal_render_not_found(r);
        return;
    }
    struct evbuffer *out = r->out;
    pt_portal_render_begin(r, str_or(op, "displayName", op_id));
    OUT("<nav class=\"breadcrumbs\" aria-label=\"Breadcrumbs\"><a href=\"/apis\">APIs</a> › <a "
        "href=\"/apis/");
    esc_seg(out, api_id);
    OUT("\">");
    esc(out, str_or(api, "displayName", api_id));
    OUT("</a></nav>");
    render_operation(out, api, op, 1);
    render_console(r, api, op);
    pt_portal_render_end(r);
    json_decref(api);
}

/* -------------------------------------------------------------- downloads */

static int yaml_out(void *data, unsigned char *buf, size_t size)
{
    evbuffer_add(data, buf, size);
    return 1;
}

/* Strings a YAML reader takes back as the same string when written plain. */
static bool yaml_plain(const char *s, size_t n)
{
    static const char *const typed[] = {"true", "false", "yes", "no", "on", "off",
                                        "null", "y",     "n",   "~",  NULL};
    if (!n || !(((s[0] | 32) >= 'a' && (s[0] | 32) <= 'z') || s[0] == '/') || s[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++) {
        bool word = ((s[i] | 32) >= 'a' && (s[i] | 32) <= 'z') || (s[i] >= '0' && s[i] <= '9');
        if (!word && !strchr("_./- ", s[i]))
            return false;
    }
    for (int i = 0; typed[i]; i++)
        if (strlen(typed[i]) == n && !strncasecmp(typed[i], s, n))
            return false;
    return true;
}

static bool yaml_emit(yaml_emitter_t *e, const json_t *j, int depth)
{
    yaml_event_t ev;
    if (depth > 200)
        return false;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) ||
            !yaml_emitter_emit(e, &ev))
            return false;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            bool plain = yaml_plain(k, strlen(k));
            if (!yaml_scalar_event_initialize(
                    &ev, NULL, NULL, (yaml_char_t *)k, (int)strlen(k), plain, !plain,
                    plain ? YAML_PLAIN_SCALAR_STYLE : YAML_DOUBLE_QUOTED_SCALAR_STYLE) ||
                !yaml_emitter_emit(e, &ev) || !yaml_emit(e, v, depth + 1))
                return false;
        }
        yaml_mapping_end_event_initialize(&ev);
        return yaml_emitter_emit(e, &ev);
    }
    case JSON_ARRAY: {
        if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE) ||
            !yaml_emitter_emit(e, &ev))
            return false;
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            if (!yaml_emit(e, v, depth + 1))
                return false;
        }
        yaml_sequence_end_event_initialize(&ev);
        return yaml_emitter_emit(e, &ev);
    }
    case JSON_STRING: {
        bool plain = yaml_plain(json_string_value(j), json_string_length(j));
        return yaml_scalar_event_initialize(
                   &ev, NULL, NULL, (yaml_char_t *)json_string_value(j), (int)json_string_length(j), plain,
                   !plain, plain ? YAML_PLAIN_SCALAR_STYLE : YAML_DOUBLE_QUOTED_SCALAR_STYLE) &&
               yaml_emitter_emit(e, &ev);
    }
    default: {
        char *t = json_dumps(j, JSON_ENCODE_ANY);
        bool ok = t &&
                  yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)t, (int)strlen(t), 1, 0,
                                               YAML_PLAIN_SCALAR_STYLE) &&
                  yaml_emitter_emit(e, &ev);
        free(t);
        return ok;
    }
    }
}

static bool to_yaml(struct evbuffer *b, const json_t *doc)
{
    yaml_emitter_t e;
    yaml_event_t ev;
    if (!yaml_emitter_initialize(&e))
        return false;
    yaml_emitter_set_output(&e, yaml_out, b);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, -1);
    bool ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) && yaml_emitter_emit(&e, &ev) &&
              yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) && yaml_emitter_emit(&e, &ev) &&
              yaml_emit(&e, doc, 0) && yaml_document_end_event_initialize(&ev, 1) &&
              yaml_emitter_emit(&e, &ev) && yaml_stream_end_event_initialize(&ev) &&
              yaml_emitter_emit(&e, &ev);
    yaml_emitter_delete(&e);
    return ok;
}

static void attachment(struct pt_portal_req *r, const char *id, const char *suffix, const char *type)
{
    char cd[400];
    /* the id is letters, digits and -_.~ (checked by the configuration): safe in a quoted filename */
    snprintf(cd, sizeof(cd), "attachment; filename=\"%s%s\"", id, suffix);
    pt_portal_req_header(r, "Content-Disposition", cd);
    r->content_type = type;
    r->status = 200;
}

void pt_portal_browse_definition(struct pt_portal_req *r, const char *api_id, const char *a2)
{
    (void)a2;
    if (!pt_portal_browse_api_visible(r, api_id)) {
        pt_portal_render_not_found(r);
        return;
    }
    const char *format = pt_portal_req_query(r, "format");
    if (!format || !strcmp(format, "openapi json"))
        format = format ? "openapi+json" : "openapi";
    json_t *api = load_api(api_id);
    if (!api) {
        pt_portal_render_not_found(r);
        return;
    }
    const struct pt_import_text *tf = pt_import_text_find(format);
    if (tf) {
        const char *text = pt_import_text_of(api, tf);
        if (!text)
            pt_portal_render_not_found(r); /* this API has no such definition */
        else {
            evbuffer_add(r->out, text, strlen(text));
            attachment(r, api_id, tf->ext, tf->media_type);
        }
        json_decref(api);
        return;
    }
    int version = !strcmp(format, "swagger") || !strcmp(format, "swagger-json") ? 2 : 3;
    if (version == 3 && strcmp(format, "openapi") && strcmp(format, "openapi+json")) {
        json_decref(api);
        pt_portal_render_not_found(r);
        return;
    }
    char base[1200];
    api_base(base, sizeof(base), api);
    json_t *doc = pt_export_openapi_build(api, version, base);
    json_decref(api);
    if (!doc) {
        pt_portal_req_text(r, 500, "Internal Server Error: the definition could not be built.");
        return;
    }
    if (!strcmp(format, "openapi")) {
        if (!to_yaml(r->out, doc)) {
            json_decref(doc);
            pt_portal_req_text(r, 500, "Internal Server Error: the definition could not be written.");
            return;
        }
        attachment(r, api_id, ".openapi.yaml", "application/yaml; charset=utf-8");
    } else {
        char *t = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (t)
            evbuffer_add(r->out, t, strlen(t));
        free(t);
        attachment(r, api_id, version == 2 ? ".swagger.json" : ".openapi.json",
                   "application/json; charset=utf-8");
    }
    json_decref(doc);
}

/* --------------------------------------------------------------- products */

void pt_portal_browse_products(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1;
    (void)a2;
    struct evbuffer *out = r->out;
    index_refresh();
    pt_portal_render_begin(r, "Products");
    OUT("<h1>Products</h1><ul id=\"product-list\" class=\"cards\">");
    size_t i, shown = 0;
    json_t *p;
    json_array_foreach(idx.products, i, p)
    {
        if (!pt_portal_browse_product_visible(r, p))
            continue;
        shown++;
        OUT("<li><a href=\"/products/");
        esc_seg(out, str_or(p, "id", ""));
        OUT("\">");
        esc(out, str_or(p, "displayName", str_or(p, "id", "")));
        OUT("</a>");
        if (strcmp(str_or(p, "state", "notPublished"), "published"))
            OUT(" <span class=\"muted\">(not published)</span>");
        const char *d = str_or(p, "description", "");
        if (*d) {
            OUT("<p>");
            esc(out, d);
            OUT("</p>");
        }
        OUT("</li>");
    }
    OUT("</ul>");
    if (!shown)
        OUT("<p>There is no product to show yet.</p>");
    pt_portal_render_end(r);
}

void pt_portal_browse_product(struct pt_portal_req *r, const char *id, const char *a2)
{
    (void)a2;
    const json_t *p = visible_product(r, id);
    if (!p) {
        pt_portal_render_not_found(r);
        return;
    }
    struct evbuffer *out = r->out;
    const char *name = str_or(p, "displayName", id);
    pt_portal_render_begin(r, name);
    OUT("<h1>");
    esc(out, name);
    OUT("</h1>");
    if (*str_or(p, "description", "")) {
        OUT("<div class=\"markdown\">");
        markdown(out, str_or(p, "description", ""));
        OUT("</div>");
    }
    OUT("<dl class=\"product-facts\"><dt>Subscription</dt><dd>%s</dd></dl>",
        json_is_false(json_object_get(p, "subscriptionRequired"))
            ? "Not needed: the APIs of this product answer without a key."
        : json_is_true(json_object_get(p, "approvalRequired")) ? "Needs an administrator's approval."
                                                               : "Active at once.");
    OUT("<h2>APIs</h2><ul class=\"product-apis\">");
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(p, "apis"), i, a)
    {
        const json_t *api = json_object_get(idx.apis, json_string_value(a));
        if (!api)
            continue;
        OUT("<li><a href=\"/apis/");
        esc_seg(out, json_string_value(a));
        OUT("\">");
        esc(out, str_or(api, "displayName", json_string_value(a)));
        OUT("</a></li>");
    }
    OUT("</ul>");
    const char *terms = str_or(p, "terms", "");
    if (*terms) {
        OUT("<h2>Terms of use</h2><div class=\"markdown terms\">");
        markdown(out, terms);
        OUT("</div>");
    }
    if (!json_is_false(json_object_get(p, "subscriptionRequired"))) {
        OUT("<h2>Subscribe</h2>");
        if (!r->user)
            OUT("<p><a href=\"/signin\">Sign in</a> or <a href=\"/signup\">sign up</a> to subscribe.</p>");
        else {
            OUT("<form id=\"subscribe-form\" class=\"stacked\" method=\"post\" action=\"/products/");
            esc_seg(out, id);
            OUT("/subscribe\">");
            pt_portal_render_csrf(r);
            OUT("<label for=\"subscribe-name\">Name of the subscription</label><input type=\"text\" "
                "id=\"subscribe-name\" name=\"name\" required maxlength=\"100\" value=\"");
            esc(out, name);
            OUT("\">");
            if (*terms)
                OUT("<p><input type=\"checkbox\" id=\"subscribe-terms\" name=\"terms\" required> <label "
                    "for=\"subscribe-terms\">I accept the terms of use above</label></p>");
            OUT("<p><button type=\"submit\">Subscribe</button></p></form>");
        }
    }
    pt_portal_render_end(r);
}

/* ------------------------------------------------------------------ pages */

void pt_portal_browse_page(struct pt_portal_req *r, const char *id, const char *a2)
{
    (void)a2;
    const json_t *pages = json_object_get(pt_portal_content_get(r), "pages");
    const json_t *page = NULL;
    size_t i;
    json_t *p;
    json_array_foreach(pages, i, p)
    {
        if (!strcmp(str_or(p, "id", ""), id))
            page = p;
    }
    if (!page || !pt_portal_render_sees(r, json_object_get(page, "groups"))) {
        pt_portal_render_not_found(r);
        return;
    }
    struct evbuffer *out = r->out;
    const char *title = str_or(page, "title", id);
    pt_portal_render_begin(r, title);
    OUT("<h1>");
    esc(out, title);
    OUT("</h1><div class=\"markdown page\">");
    /* Markdown, or the provider's HTML: both go through the content's sanitizer */
    char *body = pt_portal_content_page_html(page);
    if (body)
        evbuffer_add(out, body, strlen(body));
    free(body);
    OUT("</div>");
    pt_portal_render_end(r);
}

void pt_portal_browse_terms(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1;
    (void)a2;
    const json_t *site = json_object_get(pt_portal_content_get(r), "site");
    const char *terms = str_or(site, "terms", "");
    if (!*terms) {
        pt_portal_render_not_found(r);
        return;
    }
    pt_portal_render_begin(r, "Terms of use");
    evbuffer_add_printf(r->out, "<h1>Terms of use</h1><div class=\"markdown terms\">");
    pt_portal_render_markdown(r->out, terms);
    evbuffer_add_printf(r->out, "</div>");
    pt_portal_render_end(r);
}

void pt_portal_browse_media(struct pt_portal_req *r, const char *id, const char *a2)
{
    (void)a2;
    pt_portal_content_serve_media(r, id); /* the bytes live in the content (pt_portal_content.c) */
}

void pt_portal_browse_free(void)
{
    index_free();
    refs_free();
}
