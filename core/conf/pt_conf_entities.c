/*
 * pt_conf_entities -- the configuration's entity lists: APIs and their
 * operations, products, groups, users, subscriptions, backends, workspaces
 * and version sets -- each a key table (with its documentation) and a
 * reader that checks what spans the list (unique ids, one API per path,
 * URL templates that cannot both match).  The same readers serve the file
 * and the store (pt_model.c materializes the store into the file's shape).
 */
#include "conf/pt_cert.h"
#include "conf/pt_conf.h"

#include "conf/pt_conf_int.h"
#include "conf/pt_genmodel.h"

#include "base/pt_civil.h"
#include "base/pt_gwtoken.h"
#include "base/pt_log.h"
#include "base/pt_url.h"
#include "conf/pt_import.h"
#include "conf/pt_router.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

static bool read_strlist(struct pt_cfctx *cx, struct pt_node *n, void *field);
static bool read_protocols(struct pt_cfctx *cx, struct pt_node *n, void *field);
static int digits(const char *s, int n);

/* Keeps a node whose contents are validated later (policy documents). */
bool pt_conf_entities_read_node(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    *(struct pt_node **)field = n;
    return true;
}

/* -------------------------------------------------------------------- APIs */

static bool valid_method(const char *m)
{
    if (!strcmp(m, "*"))
        return true;
    if (!*m || strlen(m) > 32)
        return false;
    for (const char *c = m; *c; c++)
        if (!((*c >= 'A' && *c <= 'Z') || *c == '-' || *c == '_'))
            return false;
    return true;
}

bool pt_conf_entities_valid_id(const char *s)
{
    if (!*s || strlen(s) > 256)
        return false;
    for (const char *c = s; *c; c++)
        if (!(isalnum((unsigned char)*c) || strchr("-_.~", *c)))
            return false;
    return true;
}

/* ------------------------------------------------------ API definitions */

const char *const pt_conf_entities_api_types[] = {"http", "soap", "graphql", "websocket", "grpc", NULL};

/* A map whose keys are all in `allowed` (NULL-terminated); reports the first stranger. */
static bool known_keys(struct pt_cfctx *cx, struct pt_node *n, const char *what, const char *const *allowed)
{
    if (n->kind != PT_N_MAP) {
        pt_node_error(cx->errs, n, "%s is a map, found %s", what, pt_node_kind_name(n));
        return false;
    }
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        const char *k = pt_node_key(n, i)->str;
        bool known = false;
        for (int j = 0; allowed[j] && !known; j++)
            known = !strcmp(k, allowed[j]);
        if (!known && strncmp(k, "x-", 2)) {
            char list[512] = "";
            for (int j = 0; allowed[j]; j++)
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", j ? ", " : "", allowed[j]);
            pt_node_error(cx->errs, pt_node_key(n, i), "unknown key '%s' in %s (expected one of: %s)", k,
                          what, list);
            ok = false;
        }
    }
    return ok;
}

static bool want_kind(struct pt_cfctx *cx, struct pt_node *n, enum pt_node_kind kind, const char *what)
{
    if (n && n->kind != kind) {
        pt_node_error(cx->errs, n, "%s must be a %s, found %s", what,
                      kind == PT_N_MAP   ? "map"
                      : kind == PT_N_SEQ ? "list"
                                         : "string",
                      pt_node_kind_name(n));
        return false;
    }
    return true;
}

/* A schema reference: an inline `schema` (a map or true/false) or schemaId + typeName. */
static bool check_schema_ref(struct pt_cfctx *cx, struct pt_node *n)
{
    struct pt_node *sc = pt_node_get(n, "schema");
    bool ok = true;
    if (sc && sc->kind == PT_N_SEQ) {
        pt_node_error(cx->errs, sc, "schema must be a JSON Schema (a map), found a list");
        ok = false;
    }
    static const char *const names[] = {"schemaId", "typeName", NULL};
    for (int i = 0; names[i]; i++)
        ok &= want_kind(cx, pt_node_get(n, names[i]), PT_N_SCALAR, names[i]);
    return ok;
}

static bool check_param(struct pt_cfctx *cx, struct pt_node *p)
{
    static const char *const keys[] = {"name",   "description",  "type",     "required",
                                       "values", "defaultValue", "schemaId", "typeName",
                                       "schema", "examples",     NULL};
    if (!known_keys(cx, p, "a parameter", keys))
        return false;
    struct pt_node *name = pt_node_get(p, "name");
    if (!name || name->kind != PT_N_SCALAR || !*name->str) {
        pt_node_error(cx->errs, name ? name : p, "a parameter needs a name");
        return false;
    }
    bool ok = want_kind(cx, pt_node_get(p, "values"), PT_N_SEQ, "values");
    struct pt_node *t = pt_node_get(p, "type");
    if (t) {
        static const char *const types[] = {"string", "integer", "number", "boolean",
                                            "array",  "object",  NULL};
        bool known = false;
        for (int i = 0; t->kind == PT_N_SCALAR && types[i] && !known; i++)
            known = !strcmp(t->str, types[i]);
        if (!known) {
            pt_node_error(cx->errs, t, "type must be one of string, integer, number, boolean, array, object");
            ok = false;
        }
    }
    return ok & check_schema_ref(cx, p);
}

static bool read_params(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    if (!want_kind(cx, n, PT_N_SEQ, "parameters"))
        return false;
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        ok &= check_param(cx, n->items[i]);
        for (int j = 0; ok && j < i; j++) {
            struct pt_node *a = pt_node_get(n->items[i], "name"), *b = pt_node_get(n->items[j], "name");
            if (!strcasecmp(a->str, b->str)) {
                pt_node_error(cx->errs, a, "parameter '%s' is listed twice", a->str);
                ok = false;
            }
        }
    }
    *(struct pt_node **)field = n;
    return ok;
}

static bool check_representations(struct pt_cfctx *cx, struct pt_node *n)
{
    if (!n)
        return true;
    if (!want_kind(cx, n, PT_N_SEQ, "representations"))
        return false;
    static const char *const keys[] = {"contentType",    "schemaId", "typeName",        "schema", "examples",
                                       "formParameters", "sample",   "generatedSample", NULL};
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        struct pt_node *r = n->items[i];
        if (!known_keys(cx, r, "a representation", keys)) {
            ok = false;
            continue;
        }
        struct pt_node *ct = pt_node_get(r, "contentType");
        if (!ct || ct->kind != PT_N_SCALAR || !*ct->str) {
            pt_node_error(cx->errs, ct ? ct : r, "a representation needs a contentType");
            ok = false;
        }
        ok &= check_schema_ref(cx, r) & want_kind(cx, pt_node_get(r, "examples"), PT_N_MAP, "examples");
        struct pt_node *fp = pt_node_get(r, "formParameters");
        if (fp && want_kind(cx, fp, PT_N_SEQ, "formParameters"))
            for (int k = 0; k < fp->n; k++)
                ok &= check_param(cx, fp->items[k]);
    }
    return ok;
}

static bool read_request(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    static const char *const keys[] = {"description", "queryParameters", "headers", "representations", NULL};
    if (!known_keys(cx, n, "request", keys))
        return false;
    bool ok = true;
    struct pt_node *dummy;
    struct pt_node *q = pt_node_get(n, "queryParameters"), *h = pt_node_get(n, "headers");
    if (q)
        ok &= read_params(cx, q, &dummy);
    if (h)
        ok &= read_params(cx, h, &dummy);
    ok &= check_representations(cx, pt_node_get(n, "representations"));
    *(struct pt_node **)field = n;
    return ok;
}

static bool read_responses(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    if (!want_kind(cx, n, PT_N_SEQ, "responses"))
        return false;
    static const char *const keys[] = {"statusCode", "description", "headers", "representations", NULL};
    bool ok = true;
    struct pt_node *dummy;
    for (int i = 0; i < n->n; i++) {
        struct pt_node *r = n->items[i];
        if (!known_keys(cx, r, "a response", keys)) {
            ok = false;
            continue;
        }
        struct pt_node *sc = pt_node_get(r, "statusCode");
        int64_t code;
        if (!sc || sc->kind != PT_N_SCALAR ||
            (strcmp(sc->str, "default") && (!pt_schema_int(cx, sc, 100, 599, &code)))) {
            if (!sc || sc->kind != PT_N_SCALAR)
                pt_node_error(cx->errs, sc ? sc : r,
                              "a response needs a statusCode (100-599 or \"default\")");
            ok = false;
        }
        struct pt_node *h = pt_node_get(r, "headers");
        if (h)
            ok &= read_params(cx, h, &dummy);
        ok &= check_representations(cx, pt_node_get(r, "representations"));
    }
    *(struct pt_node **)field = n;
    return ok;
}

/* Content types whose schema is a JSON document (`document`); the others carry text (`value`). */
bool pt_conf_entities_json_schema_type(const char *ct)
{
    return !strcmp(ct, "application/vnd.oai.openapi.components+json") ||
           !strcmp(ct, "application/vnd.ms-azure-apim.swagger.definitions+json") ||
           !strcmp(ct, "application/schema+json") || !strcmp(ct, "application/json");
}

/* A list of schemas, each {id, document | value, description, ...}: `type_key` names the key that
   tells a JSON document from a text one (contentType for an API's, schemaType for the service's). */
static bool read_schema_list(struct pt_cfctx *cx, struct pt_node *n, const char *type_key)
{
    if (!want_kind(cx, n, PT_N_SEQ, "schemas"))
        return false;
    static const char *const keys[] = {"id",    "contentType", "schemaType", "document",
                                       "value", "description", "workspace",  NULL};
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        struct pt_node *s = n->items[i];
        if (!known_keys(cx, s, "a schema", keys)) {
            ok = false;
            continue;
        }
        struct pt_node *id = pt_node_get(s, "id"), *ty = pt_node_get(s, type_key);
        struct pt_node *doc = pt_node_get(s, "document"), *val = pt_node_get(s, "value");
        if (!id || id->kind != PT_N_SCALAR || !pt_conf_entities_valid_id(id->str)) {
            pt_node_error(cx->errs, id ? id : s, "a schema needs an id of letters, digits and -_.~");
            ok = false;
            continue;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(pt_node_get(n->items[j], "id")->str, id->str)) {
                pt_node_error(cx->errs, id, "schema id '%s' is used twice", id->str);
                ok = false;
            }
        if (!ty || ty->kind != PT_N_SCALAR || !*ty->str) {
            pt_node_error(cx->errs, ty ? ty : s, "a schema needs a %s", type_key);
            ok = false;
            continue;
        }
        bool json = !strcmp(type_key, "schemaType") ? !strcmp(ty->str, "json")
                                                    : pt_conf_entities_json_schema_type(ty->str);
        if (!strcmp(type_key, "schemaType") && strcmp(ty->str, "json") && strcmp(ty->str, "xml")) {
            pt_node_error(cx->errs, ty, "schemaType must be json or xml");
            ok = false;
        } else if (json && (!doc || doc->kind != PT_N_MAP)) {
            pt_node_error(cx->errs, doc ? doc : s, "a JSON schema (%s) needs a `document` map", ty->str);
            ok = false;
        } else if (!json && (!val || val->kind != PT_N_SCALAR)) {
            pt_node_error(cx->errs, val ? val : s, "a %s schema needs its text in `value`", ty->str);
            ok = false;
        } else if (val && val->kind == PT_N_SCALAR && val->len > 4 * 1024 * 1024) {
            pt_node_error(cx->errs, val, "a schema holds at most 4 MB");
            ok = false;
        }
    }
    return ok;
}

static bool read_api_schemas(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    *(struct pt_node **)field = n;
    return read_schema_list(cx, n, "contentType");
}

bool pt_conf_entities_read_schemas(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    *(struct pt_node **)field = n;
    return read_schema_list(cx, n, "schemaType");
}

/* `import` was expanded before the API's keys were read (pt_import_expand); nothing is left to do. */
static bool read_import(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    (void)cx, (void)n, (void)field;
    return true;
}

/* An operation's `grpc` map: the gRPC method it stands for (the .proto import writes it). */
static bool read_grpc(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    static const char *const keys[] = {"service",         "method",          "requestType", "responseType",
                                       "clientStreaming", "serverStreaming", "kind",        NULL};
    static const char *const kinds[] = {"unary", "server-streaming", "client-streaming", "bidi-streaming",
                                        NULL};
    if (!known_keys(cx, n, "grpc", keys))
        return false;
    for (int i = 0; i < n->n; i++) {
        const char *k = pt_node_key(n, i)->str;
        struct pt_node *v = pt_node_val(n, i);
        bool flag = !strcmp(k, "clientStreaming") || !strcmp(k, "serverStreaming");
        if (v->kind != PT_N_SCALAR || v->null ||
            (flag && strcmp(v->str, "true") && strcmp(v->str, "false"))) {
            pt_node_error(cx->errs, v, "grpc.%s is %s", k, flag ? "true or false" : "a string");
            return false;
        }
        bool known = false;
        for (int j = 0; !strcmp(k, "kind") && kinds[j]; j++)
            known = known || !strcmp(v->str, kinds[j]);
        if (!strcmp(k, "kind") && !known) {
            pt_node_error(cx->errs, v,
                          "grpc.kind is one of unary, server-streaming, client-streaming, "
                          "bidi-streaming");
            return false;
        }
    }
    *(struct pt_node **)field = n;
    return true;
}

static const struct pt_cfkey op_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_operation_cf, id), PT_CF_REQUIRED,
     .doc = "Unique within the API; letters, digits and `-_.~`."},
    {"policies", PT_CT_CUSTOM, offsetof(struct pt_operation_cf, policies), 0,
     .fn = pt_conf_entities_read_node, .form = "policy document",
     .doc = "The operation's policy document ([policies.md](policies.md))."},
    {"responses", PT_CT_CUSTOM, offsetof(struct pt_operation_cf, responses), 0, .fn = read_responses,
     .form = "list of maps",
     .doc =
         "APIM's response descriptions: `[{statusCode, description, headers, representations: [{contentType, "
         "schema | schemaId + typeName, examples: {name: {value}}}]}]`; `mock-response` answers with the "
         "example (or a sample of the schema) for its status and content type; `validate-content`, "
         "`validate-headers` and `validate-status-code` check responses against them."},
    {"templateParameters", PT_CT_CUSTOM, offsetof(struct pt_operation_cf, template_params), 0,
     .fn = read_params, .form = "list of parameters",
     .doc =
         "The URL template's parameters: `[{name, description, type, required, values, defaultValue, schema "
         "| schemaId + typeName}]` ([API definitions](api-definitions.md#parameters)); `validate-parameters` "
         "checks requests against them."},
    {"request", PT_CT_CUSTOM, offsetof(struct pt_operation_cf, request), 0, .fn = read_request, .form = "map",
     .doc = "What the operation accepts: `{description, queryParameters, headers, representations: "
            "[{contentType, schema | schemaId + typeName, examples}]}` ([API "
            "definitions](api-definitions.md#operations))."},
    {"grpc", PT_CT_CUSTOM, offsetof(struct pt_operation_cf, grpc), 0, .fn = read_grpc, .form = "map",
     .doc = "A gRPC API's method: `{service, method, requestType, responseType, clientStreaming, "
            "serverStreaming, kind}` (`kind`: `unary`, `server-streaming`, `client-streaming` or "
            "`bidi-streaming`); written by the `.proto` import ([gRPC APIs](grpc.md))."},
    {"displayName", PT_CT_STR, offsetof(struct pt_operation_cf, display_name), 0, .def = "the id",
     .doc = "The operation's name for people."},
    {"description", PT_CT_STR, offsetof(struct pt_operation_cf, description), PT_CF_EMPTY_OK,
     .doc = "Free text."},
    {"method", PT_CT_STR, offsetof(struct pt_operation_cf, method), PT_CF_REQUIRED,
     .doc = "An HTTP method in upper case, or `*` for any."},
    {"urlTemplate", PT_CT_STR, offsetof(struct pt_operation_cf, url_template), PT_CF_REQUIRED,
     .doc = "The path (after the API suffix) and query the operation answers; starts with `/`. See [URL "
            "templates](#url-templates)."},
    {0},
};

static bool read_ops(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_api_cf *api = (struct pt_api_cf *)((char *)field - offsetof(struct pt_api_cf, ops));
    if (n->kind != PT_N_SEQ) {
        pt_node_error(cx->errs, n, "expected a list of operations");
        return false;
    }
    api->ops = pt_pool_calloc(cx->pool, sizeof(*api->ops) * (size_t)(n->n ? n->n : 1));
    api->nops = n->n;
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        struct pt_operation_cf *op = &api->ops[i];
        op->node = n->items[i];
        if (!pt_schema_map(cx, n->items[i], op_keys, op)) {
            ok = false;
            continue;
        }
        if (!pt_conf_entities_valid_id(op->id)) {
            pt_node_error(cx->errs, pt_node_get(op->node, "id"),
                          "id '%s' may hold only letters, digits and -_.~", op->id);
            ok = false;
        }
        if (!valid_method(op->method)) {
            pt_node_error(cx->errs, pt_node_get(op->node, "method"),
                          "'%s' is not an HTTP method in upper case (GET, POST, ...) or *", op->method);
            ok = false;
        }
        if (op->url_template[0] != '/') {
            pt_node_error(cx->errs, pt_node_get(op->node, "urlTemplate"), "urlTemplate must start with '/'");
            ok = false;
        }
        if (!op->display_name)
            op->display_name = op->id;
        for (int j = 0; j < i; j++)
            if (api->ops[j].id && !strcmp(api->ops[j].id, op->id)) {
                pt_node_error(cx->errs, pt_node_get(op->node, "id"),
                              "operation id '%s' is used twice in this API", op->id);
                ok = false;
            }
    }
    return ok;
}

static bool read_service_url(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    char *s;
    if (!pt_schema_str(cx, n, &s, false))
        return false;
    /* a WebSocket backend: the handshake is an HTTP request to the same place */
    if (!strncasecmp(s, "ws://", 5))
        s = pt_pool_printf(cx->pool, "http://%s", s + 5);
    else if (!strncasecmp(s, "wss://", 6))
        s = pt_pool_printf(cx->pool, "https://%s", s + 6);
    struct pt_url u;
    const char *why = pt_url_parse(cx->pool, s, &u);
    if (why) {
        pt_node_error(cx->errs, n, "serviceUrl '%s' %s", s, why);
        return false;
    }
    *(char **)field = s;
    return true;
}

/*
 * APIs whose requests are not told apart by operation get theirs when none
 * is written: a WebSocket API its `onHandshake` (GET /, the upgrade), a
 * GraphQL API `graphql-post` and `graphql-get` (POST / and GET /).
 */
static void implicit_ops(struct pt_cfctx *cx, struct pt_api_cf *api)
{
    json_t *ops;
    if (api->nops || (api->api_type != PT_APITYPE_WEBSOCKET && api->api_type != PT_APITYPE_GRAPHQL))
        return;
    if (api->api_type == PT_APITYPE_WEBSOCKET)
        ops = json_pack("[{s:s,s:s,s:s,s:s}]", "id", "onHandshake", "displayName", "onHandshake", "method",
                        "GET", "urlTemplate", "/");
    else
        ops = json_pack("[{s:s,s:s,s:s,s:s},{s:s,s:s,s:s,s:s}]", "id", "graphql-post", "displayName",
                        "GraphQL over POST", "method", "POST", "urlTemplate", "/", "id", "graphql-get",
                        "displayName", "GraphQL over GET", "method", "GET", "urlTemplate", "/");
    struct pt_node *list = pt_node_from_json(cx->pool, ops, api->node, 0);
    json_decref(ops);
    api->nops = list->n;
    api->ops = pt_pool_calloc(cx->pool, sizeof(*api->ops) * (size_t)list->n);
    for (int i = 0; i < list->n; i++) {
        struct pt_operation_cf *op = &api->ops[i];
        op->node = list->items[i];
        op->id = pt_node_get(op->node, "id")->str;
        op->display_name = pt_node_get(op->node, "displayName")->str;
        op->method = pt_node_get(op->node, "method")->str;
        op->url_template = pt_node_get(op->node, "urlTemplate")->str;
    }
}

/* What APIM does not run on a WebSocket API's handshake. */
static const char *const ws_refused[] = {"mock-response",
                                         "cache-lookup",
                                         "cache-store",
                                         "cache-lookup-value",
                                         "cache-store-value",
                                         "cache-remove-value",
                                         "cross-domain",
                                         "cors",
                                         "jsonp",
                                         "set-method",
                                         "set-body",
                                         "xml-to-json",
                                         "json-to-xml",
                                         "xsl-transform",
                                         "validate-content",
                                         "validate-parameters",
                                         "validate-headers",
                                         "validate-status-code",
                                         "validate-graphql-request",
                                         "validate-odata-request",
                                         NULL};

static bool ws_check_doc(struct pt_cfctx *cx, const struct pt_node *n)
{
    bool ok = true;
    if (!n)
        return true;
    if (n->kind == PT_N_MAP)
        for (int i = 0; i < n->n; i++) {
            const char *k = pt_node_key(n, i)->str;
            for (int j = 0; ws_refused[j]; j++)
                if (!strcmp(k, ws_refused[j])) {
                    pt_node_error(cx->errs, pt_node_key(n, i),
                                  "%s cannot run on a WebSocket API's handshake (APIM refuses it there too)",
                                  k);
                    ok = false;
                }
            ok &= ws_check_doc(cx, pt_node_val(n, i));
        }
    else if (n->kind == PT_N_SEQ)
        for (int i = 0; i < n->n; i++)
            ok &= ws_check_doc(cx, n->items[i]);
    return ok;
}

static bool read_api_path(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    char *s;
    if (!pt_schema_str(cx, n, &s, true))
        return false;
    /* trim surrounding slashes: "/echo/" and "echo" are the same suffix */
    while (*s == '/')
        s++;
    size_t len = strlen(s);
    while (len && s[len - 1] == '/')
        len--;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || strchr("?#{}*;\\\"<>|^`", c)) {
            pt_node_error(cx->errs, n, "path '%s' has a character not allowed in an API URL suffix", s);
            return false;
        }
    }
    char *p = pt_pool_strndup(cx->pool, s, len);
    for (char *seg = p; *seg;) {
        char *e = strchr(seg, '/');
        size_t sl = e ? (size_t)(e - seg) : strlen(seg);
        if (sl == 0 || (sl == 1 && seg[0] == '.') || (sl == 2 && seg[0] == '.' && seg[1] == '.')) {
            pt_node_error(cx->errs, n, "path '%s' has an empty, '.' or '..' segment", s);
            return false;
        }
        seg += sl + (e ? 1 : 0);
    }
    *(char **)field = p;
    return true;
}

static const struct pt_cfkey keynames_keys[] = {
    {"header", PT_CT_STR, offsetof(struct pt_api_cf, key_header), 0, .def = "`Ocp-Apim-Subscription-Key`",
     .doc = "The request header that carries the subscription key."},
    {"query", PT_CT_STR, offsetof(struct pt_api_cf, key_query), 0, .def = "`subscription-key`",
     .doc = "The query parameter that carries the subscription key when the header is absent."},
    {0},
};

const struct pt_cfkey pt_conf_entities_api_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_api_cf, id), PT_CF_REQUIRED,
     .doc = "Unique; letters, digits and `-_.~`."},
    {"policies", PT_CT_CUSTOM, offsetof(struct pt_api_cf, policies), 0, .fn = pt_conf_entities_read_node,
     .form = "policy document", .doc = "The API's policy document ([policies.md](policies.md))."},
    {"workspace", PT_CT_STR, offsetof(struct pt_api_cf, workspace), 0, .def = "service level",
     .doc = "The workspace (see `workspaces`) the API belongs to."},
    {"protocols", PT_CT_CUSTOM, offsetof(struct pt_api_cf, protocols), 0, .fn = read_protocols,
     .form = "list of `http`, `https`", .def = "both",
     .doc = "The schemes the API answers on; a request on a scheme the API does not list gets 404."},
    {"apiVersion", PT_CT_STR, offsetof(struct pt_api_cf, api_version), 0, .def = "the set's original",
     .doc = "This API's version within its version set (`v1`); without it, the set's original version. "
            "See [Versions](#versions)."},
    {"apiVersionSetId", PT_CT_STR, offsetof(struct pt_api_cf, version_set), 0,
     .doc = "The version set (see `apiVersionSets`, of the API's own scope) this API is a version of."},
    {"apiRevision", PT_CT_STR, offsetof(struct pt_api_cf, revision), 0, .def = "`1`",
     .doc = "Revision number; APIs with the same `path` and different revisions are revisions of one API. "
            "See [Revisions](#revisions)."},
    {"isCurrent", PT_CT_BOOL, offsetof(struct pt_api_cf, is_current), 0, .def = "`true`",
     .doc = "Whether this revision is the current one, which also answers without `;rev=N`."},
    {"displayName", PT_CT_STR, offsetof(struct pt_api_cf, display_name), 0, .def = "the id",
     .doc = "The API's name for people."},
    {"description", PT_CT_STR, offsetof(struct pt_api_cf, description), PT_CF_EMPTY_OK, .doc = "Free text."},
    {"path", PT_CT_CUSTOM, offsetof(struct pt_api_cf, path), PT_CF_REQUIRED, .fn = read_api_path,
     .form = "string",
     .doc = "The API URL suffix: requests whose path starts with `/` + `path` on a segment boundary "
            "belong to it (`echo` takes `/echo` and `/echo/x`, not `/echoes`). Leading and trailing slashes "
            "are ignored; `\"\"` is the root. Several segments are allowed (`v1/orders`)."},
    {"host", PT_CT_STR, offsetof(struct pt_api_cf, host), 0, .def = "any host",
     .doc = "Only requests whose `Host` (without port, case-insensitive) is this name belong to the "
            "API."},
    {"serviceUrl", PT_CT_CUSTOM, offsetof(struct pt_api_cf, service_url), 0, .fn = read_service_url,
     .form = "URL",
     .doc = "The backend base URL, `http://` or `https://`, with an optional path; no query, fragment or "
            "user info."},
    {"backendId", PT_CT_STR, offsetof(struct pt_api_cf, backend_id), 0,
     .doc = "A backend (see `backends`) of the API's own scope or the service level that forward-request "
            "calls; it wins over `serviceUrl`, which may then be left out."},
    {"subscriptionRequired", PT_CT_BOOL, offsetof(struct pt_api_cf, subscription_required), 0,
     .def = "`true`",
     .doc = "Calls must carry a valid subscription key (see [the access "
            "decision](#products-subscriptions-and-access))."},
    {"subscriptionKeyParameterNames", PT_CT_MAP, 0, 0, .sub = keynames_keys,
     .doc = "Where the subscription key is read: `{header, query}`."},
    {"bodySize", PT_CT_SIZE, offsetof(struct pt_api_cf, body_size), 0, 1, INT64_MAX,
     .def = "`limits.bodySize`",
     .doc = "A request-body limit for this API below `limits.bodySize` (`1m`, `64k`): a larger "
            "`Content-Length` gets **413** on the head alone; a chunked body is cut with 413 when it grows "
            "past it."},
    {"secretQueryParameters", PT_CT_CUSTOM, offsetof(struct pt_api_cf, secret_query), 0, .fn = read_strlist,
     .form = "list of strings",
     .doc = "Query parameters whose values the access log writes as `REDACTED` (`[code, token]`); the "
            "subscription key's always is."},
    {"apiType", PT_CT_ENUM, offsetof(struct pt_api_cf, api_type), 0, .enums = pt_conf_entities_api_types,
     .def = "`http`",
     .doc = "`http`, `soap` (SOAP pass-through: operations are told apart by their SOAP action), `graphql` "
            "(GraphQL pass-through), `websocket` or `grpc` (from a `.proto` file: the gateway's own refusals "
            "are gRPC errors, [gRPC APIs](grpc.md)); see [API definitions](api-definitions.md)."},
    {"schemas", PT_CT_CUSTOM, offsetof(struct pt_api_cf, schemas), PT_CF_LIST, .fn = read_api_schemas,
     .form = "list of maps",
     .doc =
         "The API's schemas, as APIM keeps them: `[{id, contentType, document | value}]` (OpenAPI "
         "components, "
         "Swagger definitions, JSON Schema, XSD, WSDL, GraphQL SDL); operations name their types in them."},
    {"import", PT_CT_CUSTOM, 0, 0, .fn = read_import, .form = "map",
     .doc =
         "Builds the API from a definition: `{format, value | file, wsdlSelector}` (OpenAPI, Swagger, WSDL, "
         "OData, GraphQL, `.proto`); the keys written beside it win. See [Importing](import.md)."},
    {"operations", PT_CT_CUSTOM, offsetof(struct pt_api_cf, ops), PT_CF_LIST, .fn = read_ops, .sub = op_keys,
     .form = "list of maps",
     .doc = "The API's operations; an API without operations answers 404 to everything."},
    {0},
};

/* Compiles an API's URL templates into a scratch router: syntax errors and
   operations with the same method and template are reported here, with
   every other error of the file, rather than when the generation is built. */
static bool check_templates(struct pt_cfctx *cx, struct pt_api_cf *api)
{
    struct pt_router *r = pt_router_new();
    if (!r)
        return false;
    int idx = pt_router_add_api(r, "", NULL, NULL);
    bool ok = true;
    for (int i = 0; i < api->nops; i++) {
        struct pt_operation_cf *op = &api->ops[i];
        if (!op->method || !op->url_template || op->url_template[0] != '/')
            continue;
        void *clash = NULL;
        const char *why = pt_router_add_op(r, idx, op->method, op->url_template, op, &clash);
        if (why) {
            struct pt_node *at = pt_node_get(op->node, "urlTemplate");
            if (clash)
                pt_node_error(cx->errs, at, "urlTemplate '%s' %s ('%s')", op->url_template, why,
                              ((struct pt_operation_cf *)clash)->id);
            else
                pt_node_error(cx->errs, at, "urlTemplate '%s' %s", op->url_template, why);
            ok = false;
        }
    }
    pt_router_free(r);
    return ok;
}

/* Two APIs with one id, or two current APIs answering the same path, host
   and version: found by sorting (lists may hold tens of thousands), each
   reported on the later API of the file against the first one.  Ties keep
   the file's order: the APIs are one array, so their addresses are it. */
static int cmp_text(const char *a, const char *b)
{
    return !a ? (b ? -1 : 0) : !b ? 1 : strcmp(a, b);
}

static int cmp_order(const struct pt_api_cf *p, const struct pt_api_cf *q)
{
    return (p > q) - (p < q);
}

static int api_id_cmp(const void *x, const void *y)
{
    const struct pt_api_cf *p = *(const struct pt_api_cf *const *)x, *q = *(const struct pt_api_cf *const *)y;
    int c = cmp_text(p->id, q->id);
    return c ? c : cmp_order(p, q);
}

static int api_route_cmp(const void *x, const void *y)
{
    const struct pt_api_cf *p = *(const struct pt_api_cf *const *)x, *q = *(const struct pt_api_cf *const *)y;
    int c = cmp_text(p->path, q->path);
    if (!c)
        c = cmp_text(p->host, q->host);
    if (!c)
        c = cmp_text(p->api_version, q->api_version);
    return c ? c : cmp_order(p, q);
}

static bool api_duplicates(struct pt_cfctx *cx, struct pt_conf *cf)
{
    const struct pt_api_cf **ix = malloc(sizeof(*ix) * (size_t)(cf->napis ? cf->napis : 1));
    if (!ix)
        return false;
    bool ok = true;
    int n = 0;
    for (int i = 0; i < cf->napis; i++)
        if (cf->apis[i].id)
            ix[n++] = &cf->apis[i];
    qsort(ix, (size_t)n, sizeof(*ix), api_id_cmp);
    for (int k = 1; k < n; k++)
        if (!strcmp(ix[k]->id, ix[k - 1]->id)) {
            pt_node_error(cx->errs, pt_node_get(ix[k]->node, "id"), "API id '%s' is used twice", ix[k]->id);
            ok = false;
        }
    n = 0;
    for (int i = 0; i < cf->napis; i++)
        if (cf->apis[i].path && cf->apis[i].is_current)
            ix[n++] = &cf->apis[i];
    qsort(ix, (size_t)n, sizeof(*ix), api_route_cmp);
    for (int k = 1, first = 0; k < n; k++) {
        const struct pt_api_cf *o = ix[first], *api = ix[k];
        if (cmp_text(o->path, api->path) || cmp_text(o->host, api->host) ||
            cmp_text(o->api_version, api->api_version)) {
            first = k;
            continue;
        }
        if (api->api_version)
            pt_node_error(cx->errs, pt_node_get(api->node, "path"),
                          "path '%s' with version '%s' is already used by API '%s'", api->path,
                          api->api_version, o->id);
        else
            pt_node_error(cx->errs, pt_node_get(api->node, "path"), "path '%s' is already used by API '%s'",
                          api->path, o->id);
        ok = false;
    }
    free(ix);
    return ok;
}

bool pt_conf_entities_read_apis(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, apis));
    if (n->kind != PT_N_SEQ) {
        pt_node_error(cx->errs, n, "expected a list of APIs");
        return false;
    }
    cf->apis = pt_pool_calloc(cx->pool, sizeof(*cf->apis) * (size_t)(n->n ? n->n : 1));
    cf->napis = n->n;
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        struct pt_api_cf *api = &cf->apis[i];
        if (n->items[i]->kind == PT_N_MAP && pt_node_get(n->items[i], "import") &&
            !pt_import_expand(cx, n, i)) {
            ok = false;
            continue;
        }
        api->node = n->items[i];
        api->subscription_required = true; /* APIM's default for a new API */
        api->is_current = true;
        api->workspace = "";
        bool valid = pt_schema_map(cx, n->items[i], pt_conf_entities_api_keys, api);
        valid &= check_templates(cx, api);
        if (!valid) {
            ok = false;
            continue;
        }
        if (!pt_conf_entities_valid_id(api->id)) {
            pt_node_error(cx->errs, pt_node_get(api->node, "id"),
                          "id '%s' may hold only letters, digits and -_.~", api->id);
            ok = false;
        }
        if (!api->display_name)
            api->display_name = api->id;
        implicit_ops(cx, api);
        if (api->api_type == PT_APITYPE_WEBSOCKET) {
            ok &= ws_check_doc(cx, api->policies);
            for (int k = 0; k < api->nops; k++)
                ok &= ws_check_doc(cx, api->ops[k].policies);
        }
        if (!api->revision)
            api->revision = "1";
        if (!api->key_header)
            api->key_header = "Ocp-Apim-Subscription-Key";
        if (!api->key_query)
            api->key_query = "subscription-key";
        if (api->host) {
            for (char *c = api->host; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            if (!pt_url_host_valid(pt_str_c(api->host))) {
                pt_node_error(cx->errs, pt_node_get(api->node, "host"), "'%s' is not a valid host name",
                              api->host);
                ok = false;
            } else if (pt_url_host_strip_port(pt_str_c(api->host)).len != strlen(api->host)) {
                pt_node_error(cx->errs, pt_node_get(api->node, "host"),
                              "host '%s' must not have a port (the Host header's port is not matched)",
                              api->host);
                ok = false;
            }
        }
    }
    return api_duplicates(cx, cf) && ok;
}

/* ---------------------------------------------------------- entity lists */

const char *const pt_conf_entities_product_states[] = {"notPublished", "published", NULL};

const char *const pt_conf_entities_sub_states[] = {"submitted", "active",  "suspended", "cancelled",
                                                   "rejected",  "expired", NULL};

const char *const pt_conf_entities_user_states[] = {"active", "blocked", "pending", "deleted", NULL};

const char *const pt_conf_entities_group_types[] = {"custom", "system", "external", NULL};

const char *const pt_conf_entities_versioning_schemes[] = {"Segment", "Query", "Header", NULL};

struct idref {
    const char *id;
    int index;
};

static int idref_cmp(const void *x, const void *y)
{
    const struct idref *a = x, *b = y;
    int c = strcmp(a->id, b->id);
    return c ? c : a->index - b->index;
}

static bool read_strlist(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_strlist *l = field;
    if (n->kind != PT_N_SEQ) {
        pt_node_error(cx->errs, n, "expected a list of ids");
        return false;
    }
    l->v = pt_pool_calloc(cx->pool, sizeof(char *) * (size_t)(n->n ? n->n : 1));
    l->n = 0;
    bool ok = true;
    struct idref *ids = malloc(sizeof(*ids) * (size_t)(n->n ? n->n : 1));
    if (!ids)
        return false;
    for (int i = 0; i < n->n; i++) {
        char *s;
        if (!pt_schema_str(cx, n->items[i], &s, false)) {
            ok = false;
            continue;
        }
        ids[l->n] = (struct idref){s, i};
        l->v[l->n++] = s;
    }
    /* repeats found by sorting (a product or a gateway may list tens of thousands of APIs), reported
       on each later item in the file's order */
    qsort(ids, (size_t)l->n, sizeof(*ids), idref_cmp);
    bool *twice = calloc((size_t)(n->n ? n->n : 1), sizeof(bool));
    for (int k = 1; twice && k < l->n; k++)
        if (!strcmp(ids[k].id, ids[k - 1].id))
            twice[ids[k].index] = true;
    for (int i = 0; twice && i < n->n; i++)
        if (twice[i]) {
            pt_node_error(cx->errs, n->items[i], "'%s' is listed twice", n->items[i]->str);
            ok = false;
        }
    ok = ok && twice;
    free(twice);
    free(ids);
    return ok;
}

static bool read_protocols(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    if (!read_strlist(cx, n, field))
        return false;
    struct pt_strlist *l = field;
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->v[i], "http") && strcmp(l->v[i], "https")) {
            pt_node_error(cx->errs, n->items[i], "'%s' is not a protocol (http or https)", l->v[i]);
            return false;
        }
    return true;
}

/* Reads a list of entities of `size` bytes each with `keys`; init sets defaults. */
#define NO_FIELD ((size_t)-1)

/*
 * Reads a list of entities of `size` bytes each with `keys`; init sets
 * defaults.  Every entity struct starts with `char *id`; `node_off` is
 * where its `struct pt_node *node` goes, `name_off` its displayName that
 * defaults to the id (NO_FIELD: none).  Ids must be unique in the list.
 */
static bool read_entity_list(struct pt_cfctx *cx, struct pt_node *n, void **arr, int *count, size_t size,
                             const struct pt_cfkey *keys, void (*init)(void *), const char *what,
                             size_t node_off, size_t name_off)
{
    if (n->kind != PT_N_SEQ) {
        pt_node_error(cx->errs, n, "expected a list of %s", what);
        return false;
    }
    char *a = pt_pool_calloc(cx->pool, size * (size_t)(n->n ? n->n : 1));
    struct idref *ids = calloc((size_t)(n->n ? n->n : 1), sizeof(*ids));
    int nids = 0;
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        char *e = a + size * (size_t)i;
        if (init)
            init(e);
        ok &= pt_schema_map(cx, n->items[i], keys, e);
        *(struct pt_node **)(e + node_off) = n->items[i];
        char *id = *(char **)e;
        if (name_off != NO_FIELD && !*(char **)(e + name_off))
            *(char **)(e + name_off) = id;
        if (id && !pt_conf_entities_valid_id(id)) {
            pt_node_error(cx->errs, pt_node_get(n->items[i], "id"),
                          "id '%s' may hold only letters, digits and -_.~", id);
            ok = false;
        }
        if (id)
            ids[nids++] = (struct idref){id, i};
    }
    /* duplicates, in O(n log n), O(n) for a list from the store (in id order): lists may hold tens of
       thousands */
    pt_str_sort(ids, (size_t)nids, sizeof(*ids), idref_cmp);
    for (int k = 1; k < nids; k++)
        if (!strcmp(ids[k].id, ids[k - 1].id)) {
            pt_node_error(cx->errs, pt_node_get(n->items[ids[k].index], "id"), "%s id '%s' is used twice",
                          what, ids[k].id);
            ok = false;
        }
    free(ids);
    *arr = a;
    *count = n->n;
    return ok;
}

static void product_init(void *p)
{
    struct pt_product_cf *x = p;
    x->subscription_required = true;
    x->workspace = "";
}

const struct pt_cfkey pt_conf_entities_product_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_product_cf, id), PT_CF_REQUIRED,
     .doc = "Unique; letters, digits and `-_.~`."},
    {"workspace", PT_CT_STR, offsetof(struct pt_product_cf, workspace), 0, .def = "service level",
     .doc = "The workspace the product belongs to; a workspace's products hold its own APIs."},
    {"displayName", PT_CT_STR, offsetof(struct pt_product_cf, display_name), 0, .def = "the id",
     .doc = "The product's name for people."},
    {"description", PT_CT_STR, offsetof(struct pt_product_cf, description), PT_CF_EMPTY_OK,
     .doc = "Free text."},
    {"state", PT_CT_ENUM, offsetof(struct pt_product_cf, state), 0, .enums = pt_conf_entities_product_states,
     .def = "`notPublished`", .doc = "Only a published product can be open (see `subscriptionRequired`)."},
    {"subscriptionRequired", PT_CT_BOOL, offsetof(struct pt_product_cf, subscription_required), 0,
     .def = "`true`",
     .doc = "`false` makes an open product: calls without a key to its APIs run in its context (at most "
            "one per API)."},
    {"approvalRequired", PT_CT_BOOL, offsetof(struct pt_product_cf, approval_required), 0, .def = "`false`",
     .doc = "APIM's flag that subscriptions need an administrator's approval; kept with the product and "
            "shown to policies (`context.product.approvalRequired`)."},
    {"subscriptionsLimit", PT_CT_INT, offsetof(struct pt_product_cf, subscriptions_limit), 0, 0, 1000000,
     .def = "no limit",
     .doc = "Live subscriptions (submitted, active, suspended) a user may have to the product; `0` is no "
            "limit."},
    {"terms", PT_CT_STR, offsetof(struct pt_product_cf, terms), PT_CF_EMPTY_OK,
     .doc = "The product's terms of use (text)."},
    {"apis", PT_CT_CUSTOM, offsetof(struct pt_product_cf, apis), 0, .fn = read_strlist, .form = "list of ids",
     .doc = "The APIs (ids) the product holds."},
    {"groups", PT_CT_CUSTOM, offsetof(struct pt_product_cf, groups), 0, .fn = read_strlist,
     .form = "list of ids", .doc = "The groups (ids) that see the product."},
    {"policies", PT_CT_CUSTOM, offsetof(struct pt_product_cf, policies), 0, .fn = pt_conf_entities_read_node,
     .form = "policy document",
     .doc = "The product's policy document, run between the global and the API's only for calls in the "
            "product's context."},
    {0},
};

bool pt_conf_entities_read_products(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, products));
    return read_entity_list(cx, n, (void **)&cf->products, &cf->nproducts, sizeof(struct pt_product_cf),
                            pt_conf_entities_product_keys, product_init, "product",
                            offsetof(struct pt_product_cf, node),
                            offsetof(struct pt_product_cf, display_name));
}

static void group_init(void *p)
{
    ((struct pt_group_cf *)p)->workspace = "";
}

const struct pt_cfkey pt_conf_entities_group_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_group_cf, id), PT_CF_REQUIRED,
     .doc = "Unique; letters, digits and `-_.~`. `administrators`, `developers` and `guests` exist "
            "without being declared."},
    {"workspace", PT_CT_STR, offsetof(struct pt_group_cf, workspace), 0, .def = "service level",
     .doc = "The workspace the group belongs to."},
    {"displayName", PT_CT_STR, offsetof(struct pt_group_cf, display_name), 0, .def = "the id",
     .doc = "The group's name for people."},
    {"description", PT_CT_STR, offsetof(struct pt_group_cf, description), PT_CF_EMPTY_OK,
     .doc = "Free text."},
    {"type", PT_CT_ENUM, offsetof(struct pt_group_cf, type), 0, .enums = pt_conf_entities_group_types,
     .def = "`custom`", .doc = "The group's kind, as in APIM."},
    {0},
};

bool pt_conf_entities_read_groups(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, groups));
    return read_entity_list(cx, n, (void **)&cf->groups, &cf->ngroups, sizeof(struct pt_group_cf),
                            pt_conf_entities_group_keys, group_init, "group",
                            offsetof(struct pt_group_cf, node), offsetof(struct pt_group_cf, display_name));
}

const struct pt_cfkey pt_conf_entities_user_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_user_cf, id), PT_CF_REQUIRED,
     .doc = "Unique; letters, digits and `-_.~`."},
    {"email", PT_CT_STR, offsetof(struct pt_user_cf, email), PT_CF_REQUIRED,
     .doc = "An email address, unique among users that are not `deleted` (compared without case)."},
    {"firstName", PT_CT_STR, offsetof(struct pt_user_cf, first_name), PT_CF_EMPTY_OK, .doc = "First name."},
    {"lastName", PT_CT_STR, offsetof(struct pt_user_cf, last_name), PT_CF_EMPTY_OK, .doc = "Last name."},
    {"state", PT_CT_ENUM, offsetof(struct pt_user_cf, state), 0, .enums = pt_conf_entities_user_states,
     .def = "`active`", .doc = "The keys of a blocked user's subscriptions open nothing."},
    {"note", PT_CT_STR, offsetof(struct pt_user_cf, note), PT_CF_EMPTY_OK, .doc = "Free text."},
    {"groups", PT_CT_CUSTOM, offsetof(struct pt_user_cf, groups), 0, .fn = read_strlist,
     .form = "list of ids", .doc = "The groups (ids) the user is in."},
    {0},
};

/* A user's address and position, sorted by address (case-insensitively), then by position. */
struct user_email {
    const char *email;
    int index;
};

static int user_email_cmp(const void *a, const void *b)
{
    const struct user_email *x = a, *y = b;
    int c = strcasecmp(x->email, y->email);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* The users whose address counts for uniqueness (a closed account, deleted, gives its address back)
   in that order; pos[i] is user i's place in it (-1: not in it).  NULL when out of memory. */
static struct user_email *users_by_email(const struct pt_user_cf *users, int n, int *pos)
{
    struct user_email *v = malloc(sizeof(*v) * (size_t)(n ? n : 1));
    if (!v)
        return NULL;
    int m = 0;
    for (int i = 0; i < n; i++) {
        pos[i] = -1;
        if (users[i].email && users[i].state != 3)
            v[m++] = (struct user_email){users[i].email, i};
    }
    qsort(v, (size_t)m, sizeof(*v), user_email_cmp);
    for (int k = 0; k < m; k++)
        pos[v[k].index] = k;
    return v;
}

bool pt_conf_entities_read_users(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, users));
    bool ok = read_entity_list(cx, n, (void **)&cf->users, &cf->nusers, sizeof(struct pt_user_cf),
                               pt_conf_entities_user_keys, NULL, "user", offsetof(struct pt_user_cf, node),
                               NO_FIELD);
    int *pos = malloc(sizeof(*pos) * (size_t)(cf->nusers ? cf->nusers : 1));
    struct user_email *sorted = pos ? users_by_email(cf->users, cf->nusers, pos) : NULL;
    if (!sorted) {
        free(pos);
        pt_node_error(cx->errs, n, "out of memory reading the users");
        return false;
    }
    for (int i = 0; i < cf->nusers; i++) {
        struct pt_user_cf *u = &cf->users[i];
        const char *names[2] = {u->first_name, u->last_name}, *keys[2] = {"firstName", "lastName"};
        for (int k = 0; k < 2; k++)
            if (!pt_conf_entities_text_ok(names[k])) {
                pt_node_error(cx->errs, pt_node_get(u->node, keys[k]), "%s holds a control character",
                              keys[k]);
                ok = false;
            }
        if (u->email && (!strchr(u->email, '@') || strchr(u->email, ' '))) {
            pt_node_error(cx->errs, pt_node_get(u->node, "email"), "'%s' is not an email address", u->email);
            ok = false;
        }
        if (pos[i] < 0)
            continue;
        /* the earlier users with the same address sit just before this one in the sorted list */
        int first = pos[i];
        while (first > 0 && !strcasecmp(sorted[first - 1].email, u->email))
            first--;
        for (int k = first; k < pos[i]; k++) {
            pt_node_error(cx->errs, pt_node_get(u->node, "email"), "email '%s' belongs to user '%s'",
                          u->email, cf->users[sorted[k].index].id);
            ok = false;
        }
    }
    free(sorted);
    free(pos);
    return ok;
}

static void sub_init(void *p)
{
    struct pt_subscription_cf *x = p;
    x->state = PT_SUB_ACTIVE; /* declared in a file: active unless said otherwise */
    x->workspace = "";
}

static bool valid_key(const char *k)
{
    size_t n = strlen(k);
    if (n < 8 || n > 256)
        return false;
    for (const char *c = k; *c; c++)
        if (!(isalnum((unsigned char)*c) || strchr("-_.~", *c)))
            return false;
    return true;
}

const struct pt_cfkey pt_conf_entities_sub_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_subscription_cf, id), PT_CF_REQUIRED,
     .doc = "Unique; letters, digits and `-_.~`."},
    {"workspace", PT_CT_STR, offsetof(struct pt_subscription_cf, workspace), 0, .def = "service level",
     .doc = "The workspace the subscription belongs to; its scope must be inside that workspace (not "
            "`/apis`)."},
    {"displayName", PT_CT_STR, offsetof(struct pt_subscription_cf, display_name), 0, .def = "the id",
     .doc = "The subscription's name for people."},
    {"scope", PT_CT_STR, offsetof(struct pt_subscription_cf, scope), PT_CF_REQUIRED,
     .doc = "What the keys open: `/products/P` (a product's APIs, in its context), `/apis/A` (one API) or "
            "`/apis` (every API)."},
    {"ownerId", PT_CT_STR, offsetof(struct pt_subscription_cf, owner_id), 0,
     .doc = "`/users/U`: the user who owns the subscription."},
    {"state", PT_CT_ENUM, offsetof(struct pt_subscription_cf, state), 0, .enums = pt_conf_entities_sub_states,
     .def = "`active`",
     .doc = "Only an `active` subscription's keys open anything; declared in the file it is `active` "
            "unless said otherwise (`submitted` through the management API)."},
    {"primaryKey", PT_CT_STR, offsetof(struct pt_subscription_cf, primary_key), 0, .def = "generated",
     .doc = "8 to 256 letters, digits or `-_.~`, unique among all keys; generated once and kept when "
            "absent."},
    {"secondaryKey", PT_CT_STR, offsetof(struct pt_subscription_cf, secondary_key), 0, .def = "generated",
     .doc = "The second key, as `primaryKey`; the two keys must differ."},
    {"allowTracing", PT_CT_BOOL, offsetof(struct pt_subscription_cf, allow_tracing), 0, .def = "`false`",
     .doc = "Lets a call with this subscription's key and `Ocp-Apim-Trace: true` be traced (see "
            "[tracing.md](tracing.md)); as in APIM it lapses 1 hour after it was turned on."},
    {"allowTracingSince", PT_CT_STR, offsetof(struct pt_subscription_cf, allow_tracing_since), 0,
     .def = "set by the gateway",
     .doc = "ISO 8601: when `allowTracing` was last turned on; written by the gateway (a value given is "
            "replaced), removed when it is turned off."},
    {"createdDate", PT_CT_STR, offsetof(struct pt_subscription_cf, created_date), 0, .def = "set once",
     .doc = "ISO 8601; where `quota` periods start. Set once when absent."},
    {"stateComment", PT_CT_STR, offsetof(struct pt_subscription_cf, state_comment), PT_CF_EMPTY_OK,
     .doc = "Free text about the state; kept with the subscription."},
    {"startDate", PT_CT_STR, offsetof(struct pt_subscription_cf, start_date), 0,
     .doc = "ISO 8601, as in APIM; kept with the subscription."},
    {"expirationDate", PT_CT_STR, offsetof(struct pt_subscription_cf, expiration_date), 0,
     .doc = "ISO 8601 (`2027-01-31` or `2027-01-31T12:00:00Z`, checked): from then on (or from `endDate`, "
            "whichever comes first) the keys open nothing (**401**, as an expired subscription in APIM)."},
    {"endDate", PT_CT_STR, offsetof(struct pt_subscription_cf, end_date), 0,
     .doc = "ISO 8601, checked: as `expirationDate`, whichever comes first."},
    {"notificationDate", PT_CT_STR, offsetof(struct pt_subscription_cf, notification_date), 0,
     .doc = "ISO 8601, as in APIM; kept with the subscription."},
    {0},
};

bool pt_conf_entities_text_ok(const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s; c && *c; c++) {
        if (*c < 0x20 || *c == 0x7f)
            return false;
        if (c[0] == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f) /* U+0080..U+009F in UTF-8 */
            return false;
        if (c[0] == 0xe2 && c[1] == 0x80 && (c[2] == 0xa8 || c[2] == 0xa9)) /* line/paragraph separators */
            return false;
    }
    return true;
}

const char *const pt_conf_entities_builtin_groups[] = {"administrators", "developers", "guests", NULL};

bool pt_conf_entities_builtin_group(const char *id)
{
    for (int i = 0; pt_conf_entities_builtin_groups[i]; i++)
        if (!strcmp(pt_conf_entities_builtin_groups[i], id))
            return true;
    return false;
}

const char *pt_conf_entities_owner_user(const char *owner_id)
{
    const char *u = owner_id ? strstr(owner_id, "/users/") : NULL;
    if (!u || !u[7] || strchr(u + 7, '/'))
        return NULL;
    return u + 7;
}

/* "/products/p" | "/apis/a" | "/apis" (a leading service path is tolerated). */
bool pt_conf_entities_parse_sub_scope(const char *scope, enum pt_sub_scope *kind, const char **id)
{
    const char *s = strstr(scope, "/products/");
    if (s && s[10] && !strchr(s + 10, '/')) {
        *kind = PT_SUB_PRODUCT;
        *id = s + 10;
        return true;
    }
    s = strstr(scope, "/apis");
    if (s && !s[5]) {
        *kind = PT_SUB_ALL_APIS;
        *id = NULL;
        return true;
    }
    if (s && s[5] == '/' && s[6] && !strchr(s + 6, '/')) {
        *kind = PT_SUB_API;
        *id = s + 6;
        return true;
    }
    return false;
}

static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

bool pt_conf_entities_parse_iso8601(const char *s, int64_t *ms)
{
    size_t n = strlen(s);
    if (n < 10 || s[4] != '-' || s[7] != '-')
        return false;
    int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2), h = 0, mi = 0, sec = 0, frac = 0;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
        (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))))
        return false;
    const char *p = s + 10;
    int64_t offset_min = 0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        if (strlen(p) < 6 || p[3] != ':')
            return false;
        h = digits(p + 1, 2);
        mi = digits(p + 4, 2);
        p += 6;
        if (*p == ':') {
            sec = digits(p + 1, 2);
            p += 3;
            if (sec < 0 || sec > 60)
                return false;
            if (*p == '.') {
                int k = 0;
                p++;
                while (*p >= '0' && *p <= '9') {
                    if (k < 3)
                        frac = frac * 10 + (*p - '0');
                    k++;
                    p++;
                }
                if (!k)
                    return false;
                for (; k < 3; k++)
                    frac *= 10;
            }
        }
        if (h < 0 || h > 23 || mi < 0 || mi > 59)
            return false;
        if (*p == 'Z' || *p == 'z')
            p++;
        else if (*p == '+' || *p == '-') {
            int oh = digits(p + 1, 2), om = p[3] == ':' ? digits(p + 4, 2) : digits(p + 3, 2);
            if (oh < 0 || oh > 23 || om < 0 || om > 59)
                return false;
            offset_min = (*p == '-' ? -1 : 1) * (oh * 60 + om);
            p += p[3] == ':' ? 6 : 5;
        }
    }
    if (*p)
        return false;
    int64_t days = pt_days_from_civil(y, mo, d);
    *ms = ((days * 86400 + h * 3600 + mi * 60 + sec) - offset_min * 60) * 1000 + frac;
    return true;
}

/* A key that is already a key of another subscription: every key put once
   in a hash table (tens of thousands of subscriptions; linear, where sorting
   them was most of the check), each reported on the later subscription
   against the first one holding it (subscriptions in order, the primary key
   first).  Both keys of one subscription being equal is reported apart ("the
   two keys must differ"). */
struct keyref {
    const char *key;
    int sub; /* the first subscription holding the key; -1: an empty slot */
};

/* The first subscription holding `key`, after recording `sub` as holding it when none did. */
static int key_holder(struct keyref *t, size_t mask, const char *key, int sub)
{
    size_t slot = pt_hash(key, strlen(key), false) & mask;
    while (t[slot].sub >= 0 && strcmp(t[slot].key, key))
        slot = (slot + 1) & mask;
    if (t[slot].sub < 0)
        t[slot] = (struct keyref){key, sub};
    return t[slot].sub;
}

static bool sub_key_duplicates(struct pt_cfctx *cx, struct pt_conf *cf)
{
    size_t size = 16;
    while (size < (size_t)cf->nsubs * 4) /* two keys each: at most half full */
        size *= 2;
    struct keyref *t = malloc(sizeof(*t) * size);
    if (!t)
        return false;
    for (size_t i = 0; i < size; i++)
        t[i].sub = -1;
    bool ok = true;
    for (int i = 0; i < cf->nsubs; i++)
        for (int which = 0; which < 2; which++) {
            const char *key = which ? cf->subs[i].secondary_key : cf->subs[i].primary_key;
            int first = key ? key_holder(t, size - 1, key, i) : i;
            if (first != i) {
                pt_node_error(cx->errs, pt_node_get(cf->subs[i].node, which ? "secondaryKey" : "primaryKey"),
                              "this key is already a key of subscription '%s'", cf->subs[first].id);
                ok = false;
            }
        }
    free(t);
    return ok;
}

bool pt_conf_entities_read_subs(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, subs));
    bool ok = read_entity_list(cx, n, (void **)&cf->subs, &cf->nsubs, sizeof(struct pt_subscription_cf),
                               pt_conf_entities_sub_keys, sub_init, "subscription",
                               offsetof(struct pt_subscription_cf, node),
                               offsetof(struct pt_subscription_cf, display_name));
    for (int i = 0; i < cf->nsubs; i++) {
        struct pt_subscription_cf *s = &cf->subs[i];
        const char *sid = NULL;
        if (s->scope && !pt_conf_entities_parse_sub_scope(s->scope, &s->scope_kind, &sid)) {
            pt_node_error(cx->errs, pt_node_get(s->node, "scope"),
                          "scope '%s' must be /products/ID, /apis/ID or /apis", s->scope);
            ok = false;
        } else if (sid)
            s->scope_id = pt_pool_strdup(cx->pool, sid);
        const char *dates[2] = {s->expiration_date, s->end_date}, *dnames[2] = {"expirationDate", "endDate"};
        for (int k = 0; k < 2; k++) {
            int64_t t;
            if (!dates[k] || !*dates[k])
                continue;
            if (!pt_conf_entities_parse_iso8601(dates[k], &t)) {
                pt_node_error(cx->errs, pt_node_get(s->node, dnames[k]),
                              "%s '%s' is not an ISO 8601 date or time (2027-01-31, 2027-01-31T12:00:00Z)",
                              dnames[k], dates[k]);
                ok = false;
            } else if (!s->ends_ms || t < s->ends_ms)
                s->ends_ms = t ? t : 1;
        }
        int64_t since;
        if (s->allow_tracing && s->allow_tracing_since &&
            pt_conf_entities_parse_iso8601(s->allow_tracing_since, &since))
            s->trace_until_ms = since + PT_CONF_TRACING_WINDOW_MS;
        if (s->owner_id) {
            const char *u = pt_conf_entities_owner_user(s->owner_id);
            if (!u) {
                pt_node_error(cx->errs, pt_node_get(s->node, "ownerId"), "ownerId '%s' must be /users/ID",
                              s->owner_id);
                ok = false;
            } else
                s->owner_user = pt_pool_strdup(cx->pool, u);
        }
        const char *keys[2] = {s->primary_key, s->secondary_key};
        const char *names[2] = {"primaryKey", "secondaryKey"};
        for (int k = 0; k < 2; k++)
            if (keys[k] && !valid_key(keys[k])) {
                pt_node_error(cx->errs, pt_node_get(s->node, names[k]),
                              "%s must be 8 to 256 letters, digits or -_.~", names[k]);
                ok = false;
            }
        if (s->primary_key && s->secondary_key && !strcmp(s->primary_key, s->secondary_key)) {
            pt_node_error(cx->errs, pt_node_get(s->node, "secondaryKey"), "the two keys must differ");
            ok = false;
        }
    }
    return sub_key_duplicates(cx, cf) && ok;
}

/* ------------------------------------------------------------ certificates */

/* What the store adds to a certificate for reads (thumbprint, subject...): accepted back, never
   trusted (the reader derives them again from data). */
static bool read_derived(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    (void)cx;
    (void)n;
    (void)field;
    return true;
}

static bool read_cert_keyvault(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    (void)field;
    pt_node_error(cx->errs, n, "Key Vault certificates are not supported: give the certificate as data");
    return false;
}

const struct pt_cfkey pt_conf_entities_cert_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_storecert_cf, id), PT_CF_REQUIRED,
     .doc = "Unique; letters, digits and `-_.~`. `authentication-certificate certificate-id` and "
            "`validate-client-certificate`'s `issuer-certificate-id` name it."},
    {"data", PT_CT_STR, offsetof(struct pt_storecert_cf, data), PT_CF_REQUIRED,
     .doc = "PEM text (the certificate, then its chain, and optionally its private key), or base64 of a "
            "PKCS#12 (`.pfx`) file or of a DER certificate; at most 256 KB. See "
            "[certificates.md](certificates.md)."},
    {"password", PT_CT_STR, offsetof(struct pt_storecert_cf, password), PT_CF_EMPTY_OK,
     .doc = "Opens a PKCS#12 file or an encrypted PEM key; never stored, shown or exported."},
    {"ca", PT_CT_BOOL, offsetof(struct pt_storecert_cf, ca), 0, .def = "`false`",
     .doc = "A CA certificate that client certificates may chain to (`validate-client-certificate`), "
            "besides the listener's `clientCa`."},
    {"crl", PT_CT_STR, offsetof(struct pt_storecert_cf, crl), 0,
     .doc = "PEM certificate revocation list(s) of this CA: `validate-revocation` refuses a client "
            "certificate it lists."},
    {"description", PT_CT_STR, offsetof(struct pt_storecert_cf, description), PT_CF_EMPTY_OK,
     .doc = "Free text."},
    {"keyVault", PT_CT_CUSTOM, 0, 0, .fn = read_cert_keyvault, .form = "map",
     .doc = "APIM's Key Vault reference: refused (give `data`)."},
    {"thumbprint", PT_CT_CUSTOM, 0, 0, .fn = read_derived, .form = "string",
     .doc = "Read-only: SHA-1 of the certificate, upper-case hexadecimal (what reads show)."},
    {"subject", PT_CT_CUSTOM, 0, 0, .fn = read_derived, .form = "string", .doc = "Read-only."},
    {"issuer", PT_CT_CUSTOM, 0, 0, .fn = read_derived, .form = "string", .doc = "Read-only."},
    {"expirationDate", PT_CT_CUSTOM, 0, 0, .fn = read_derived, .form = "string",
     .doc = "Read-only: the certificate's notAfter (ISO 8601)."},
    {"hasPrivateKey", PT_CT_CUSTOM, 0, 0, .fn = read_derived, .form = "boolean", .doc = "Read-only."},
    {"expiresInDays", PT_CT_CUSTOM, 0, 0, .fn = read_derived, .form = "number", .doc = "Read-only."},
    {"nearExpiry", PT_CT_CUSTOM, 0, 0, .fn = read_derived, .form = "boolean", .doc = "Read-only."},
    {0},
};

/* Reads one entry's data into PEM; errors point at data (or password). */
static bool read_cert_data(struct pt_cfctx *cx, struct pt_storecert_cf *c)
{
    struct pt_cert_info ci;
    char err[256];
    if (!pt_cert_read(c->data, strlen(c->data), c->password, &ci, err, sizeof(err))) {
        struct pt_node *at = strstr(err, "password") && pt_node_get(c->node, "password")
                                 ? pt_node_get(c->node, "password")
                                 : pt_node_get(c->node, "data");
        pt_node_error(cx->errs, at ? at : c->node, "certificate '%s': %s", c->id, err);
        return false;
    }
    c->chain_pem = pt_pool_strdup(cx->pool, ci.chain_pem);
    c->key_pem = ci.key_pem ? pt_pool_strdup(cx->pool, ci.key_pem) : NULL;
    memcpy(c->thumbprint, ci.thumbprint, sizeof(c->thumbprint));
    c->subject = pt_pool_strdup(cx->pool, ci.subject);
    c->issuer = pt_pool_strdup(cx->pool, ci.issuer);
    c->expiration = pt_pool_strdup(cx->pool, ci.expiration);
    c->not_after = ci.not_after;
    pt_cert_info_free(&ci);
    if (c->crl && *c->crl && !pt_cert_check_crl(c->crl, c->chain_pem, err, sizeof(err))) {
        pt_node_error(cx->errs, pt_node_get(c->node, "crl"), "certificate '%s': %s", c->id, err);
        return false;
    }
    return true;
}

bool pt_conf_entities_read_certs(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, certs));
    bool ok = read_entity_list(cx, n, (void **)&cf->certs, &cf->ncerts, sizeof(struct pt_storecert_cf),
                               pt_conf_entities_cert_keys, NULL, "certificate",
                               offsetof(struct pt_storecert_cf, node), NO_FIELD);
    for (int i = 0; i < cf->ncerts; i++)
        if (cf->certs[i].data && cf->certs[i].id)
            ok &= read_cert_data(cx, &cf->certs[i]);
    return ok;
}

/* ---------------------------------------------------------------- backends */

const char *const pt_conf_entities_backend_types[] = {"Single", "Pool", NULL};

static void backend_init(void *p)
{
    struct pt_backend_cf *b = p;
    b->workspace = "";
    b->tls_chain = true;
    b->tls_name = true;
    b->hc_path = "/";
    b->hc_interval = 10000;
    b->hc_timeout = 2000;
    b->hc_healthy = 2;
    b->hc_unhealthy = 3;
}

bool pt_conf_entities_parse_duration(const char *s, uint64_t *ms)
{
    if (!s || !*s)
        return false;
    if (s[0] != 'P' && s[0] != 'p')
        return pt_schema_parse_duration_ms(s, ms) && *ms <= 86400000ull;
    /* P[nD][T[nH][nM][n[.f]S]]: weeks, months and years are not lengths of time we take */
    const char *p = s + 1;
    bool in_time = false, any = false;
    double total = 0;
    int last = -1;
    for (int steps = 0; *p && steps < 8; steps++) {
        if (*p == 'T' || *p == 't') {
            if (in_time)
                return false;
            in_time = true;
            p++;
            continue;
        }
        char *end;
        if (!(*p >= '0' && *p <= '9'))
            return false;
        size_t span = strspn(p, "0123456789."); /* digits and one fraction: strtod would take more */
        double v = strtod(p, &end);
        if (end != p + span || v > 1e7)
            return false;
        char u = (char)toupper((unsigned char)*end);
        int k = u == 'D' && !in_time  ? 0
                : u == 'H' && in_time ? 1
                : u == 'M' && in_time ? 2
                : u == 'S' && in_time ? 3
                                      : -1;
        if (k < 0 || k <= last || (k < 3 && v != (double)(int64_t)v))
            return false;
        static const double scale[] = {86400000.0, 3600000.0, 60000.0, 1000.0};
        total += v * scale[k];
        last = k;
        any = true;
        p = end + 1;
    }
    if (*p || !any || total > 86400000.0)
        return false;
    *ms = (uint64_t)(total + 0.5);
    return true;
}

/* A duration written under `key` of map n into *out (ms); errors name the node. */
static bool read_duration_at(struct pt_cfctx *cx, struct pt_node *map, const char *key, bool required,
                             uint32_t *out)
{
    struct pt_node *v = pt_node_get(map, key);
    if (!v) {
        if (required)
            pt_node_error(cx->errs, map, "%s is required (an ISO 8601 duration such as PT1M, or 60s)", key);
        return !required;
    }
    uint64_t ms;
    if (v->kind != PT_N_SCALAR || !pt_conf_entities_parse_duration(v->str, &ms) || ms == 0) {
        pt_node_error(cx->errs, v,
                      "%s '%s' is not a duration (ISO 8601 such as PT30S, PT1M, PT0.5S, or 30s, 250ms; above "
                      "0, at most a day)",
                      key, v->kind == PT_N_SCALAR ? v->str : pt_node_kind_name(v));
        return false;
    }
    *out = (uint32_t)ms;
    return true;
}

static bool header_token(const char *s)
{
    if (!*s || strlen(s) > 256)
        return false;
    for (const char *c = s; *c; c++)
        if (!pt_str_tchar[(unsigned char)*c])
            return false;
    return true;
}

/* credentials.header / credentials.query: {name: [values]} (a single value may be a string). */
static bool check_cred_map(struct pt_cfctx *cx, struct pt_node *n, bool headers)
{
    const char *what = headers ? "credentials.header" : "credentials.query";
    static const char *const reserved[] = {"host",       "content-length", "transfer-encoding",
                                           "connection", "upgrade",        "te",
                                           "trailer",    "keep-alive",     NULL};
    if (n->kind != PT_N_MAP) {
        pt_node_error(cx->errs, n, "%s is a map of names to lists of values, found %s", what,
                      pt_node_kind_name(n));
        return false;
    }
    bool ok = true;
    if (n->n > 64) {
        pt_node_error(cx->errs, n, "%s holds at most 64 names", what);
        return false;
    }
    for (int i = 0; i < n->n; i++) {
        struct pt_node *k = pt_node_key(n, i), *v = pt_node_val(n, i);
        if (headers && !header_token(k->str)) {
            pt_node_error(cx->errs, k, "'%s' is not a header name", k->str);
            ok = false;
        } else if (!headers && (!*k->str || strlen(k->str) > 256 || strpbrk(k->str, "&=#\r\n"))) {
            pt_node_error(cx->errs, k, "'%s' is not a query parameter name (1 to 256 bytes, no & = #)",
                          k->str);
            ok = false;
        }
        for (int r = 0; headers && reserved[r]; r++)
            if (!strcasecmp(k->str, reserved[r])) {
                pt_node_error(cx->errs, k, "%s is set by the gateway; a credential cannot set it", k->str);
                ok = false;
            }
        int nv = v->kind == PT_N_SEQ ? v->n : 1;
        if (v->kind == PT_N_MAP || nv == 0 || nv > 16) {
            pt_node_error(cx->errs, v, "the values of %s are a list of 1 to 16 strings", k->str);
            ok = false;
            continue;
        }
        for (int j = 0; j < nv; j++) {
            struct pt_node *x = v->kind == PT_N_SEQ ? v->items[j] : v;
            if (x->kind != PT_N_SCALAR || x->null || strpbrk(x->str, "\r\n") || strlen(x->str) != x->len) {
                pt_node_error(cx->errs, x, "a value of %s is a string without CR, LF or NUL", k->str);
                ok = false;
            }
        }
    }
    return ok;
}

static bool read_credentials(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    static const char *const keys[] = {"header", "query", "certificate", "authorization", NULL};
    if (!known_keys(cx, n, "credentials", keys))
        return false;
    bool ok = true;
    struct pt_node *h = pt_node_get(n, "header"), *q = pt_node_get(n, "query");
    struct pt_node *c = pt_node_get(n, "certificate"), *a = pt_node_get(n, "authorization");
    if (h)
        ok &= check_cred_map(cx, h, true);
    if (q)
        ok &= check_cred_map(cx, q, false);
    if (c) {
        static const char *const ckeys[] = {"certificate", "key", NULL};
        if (!known_keys(cx, c, "credentials.certificate", ckeys))
            ok = false;
        else
            for (int i = 0; ckeys[i]; i++) {
                struct pt_node *x = pt_node_get(c, ckeys[i]);
                if (!x || x->kind != PT_N_SCALAR || x->null || !*x->str) {
                    pt_node_error(cx->errs, x ? x : c, "credentials.certificate needs %s (a PEM file)",
                                  ckeys[i]);
                    ok = false;
                }
            }
    }
    if (a) {
        static const char *const akeys[] = {"scheme", "parameter", NULL};
        if (!known_keys(cx, a, "credentials.authorization", akeys))
            ok = false;
        else {
            struct pt_node *sc = pt_node_get(a, "scheme"), *pa = pt_node_get(a, "parameter");
            if (!sc || sc->kind != PT_N_SCALAR || !header_token(sc->str)) {
                pt_node_error(cx->errs, sc ? sc : a,
                              "credentials.authorization needs a scheme (a token: Basic, Bearer, ...)");
                ok = false;
            }
            if (pa && (pa->kind != PT_N_SCALAR || strpbrk(pa->str, "\r\n") || strlen(pa->str) != pa->len)) {
                pt_node_error(cx->errs, pa, "parameter is a string without CR, LF or NUL");
                ok = false;
            }
        }
    }
    *(struct pt_node **)field = n;
    return ok;
}

static bool read_int_at(struct pt_cfctx *cx, struct pt_node *map, const char *key, int64_t min, int64_t max,
                        int64_t *out)
{
    struct pt_node *v = pt_node_get(map, key);
    if (!v)
        return true;
    char *end = NULL;
    long long x = v->kind == PT_N_SCALAR && !v->null ? strtoll(v->str, &end, 10) : 0;
    if (!end || end == v->str || *end || x < min || x > max) {
        pt_node_error(cx->errs, v, "%s must be an integer from %lld to %lld", key, (long long)min,
                      (long long)max);
        return false;
    }
    *out = x;
    return true;
}

/* One circuit-breaker rule into r. */
static bool read_rule(struct pt_cfctx *cx, struct pt_node *n, struct pt_cbrule *r)
{
    static const char *const keys[] = {"name", "failureCondition", "tripDuration", "acceptRetryAfter", NULL};
    static const char *const fkeys[] = {"count",        "percentage", "interval", "statusCodeRanges",
                                        "errorReasons", NULL};
    if (!known_keys(cx, n, "a circuit breaker rule", keys))
        return false;
    bool ok = true;
    struct pt_node *name = pt_node_get(n, "name"), *fc = pt_node_get(n, "failureCondition");
    struct pt_node *ara = pt_node_get(n, "acceptRetryAfter");
    if (name && (name->kind != PT_N_SCALAR || !pt_conf_entities_text_ok(name->str))) {
        pt_node_error(cx->errs, name, "name is a string without control characters");
        ok = false;
    }
    r->name = name && name->kind == PT_N_SCALAR ? name->str : "";
    ok &= read_duration_at(cx, n, "tripDuration", true, &r->trip_ms);
    if (ara)
        ok &= pt_schema_bool(cx, ara, &r->accept_retry_after);
    if (!fc) {
        pt_node_error(cx->errs, n, "a circuit breaker rule needs a failureCondition");
        return false;
    }
    if (!known_keys(cx, fc, "failureCondition", fkeys))
        return false;
    struct pt_node *cnt = pt_node_get(fc, "count"), *pct = pt_node_get(fc, "percentage");
    if (!cnt && !pct) {
        pt_node_error(cx->errs, fc, "failureCondition needs count or percentage");
        ok = false;
    } else if (cnt && pct) {
        pt_node_error(cx->errs, pct, "failureCondition takes count or percentage, not both");
        ok = false;
    }
    int64_t v = 0;
    if (cnt && read_int_at(cx, fc, "count", 1, 1000000, &v))
        r->count = v;
    else if (cnt)
        ok = false;
    if (pct && read_int_at(cx, fc, "percentage", 1, 100, &v))
        r->percentage = (int)v;
    else if (pct)
        ok = false;
    ok &= read_duration_at(cx, fc, "interval", true, &r->interval_ms);
    struct pt_node *ranges = pt_node_get(fc, "statusCodeRanges"), *reasons = pt_node_get(fc, "errorReasons");
    if (ranges && want_kind(cx, ranges, PT_N_SEQ, "statusCodeRanges")) {
        struct pt_cbrange *rv = pt_pool_calloc(cx->pool, sizeof(*rv) * (size_t)(ranges->n ? ranges->n : 1));
        for (int i = 0; i < ranges->n && i < 32; i++) {
            static const char *const rkeys[] = {"min", "max", NULL};
            struct pt_node *x = ranges->items[i];
            int64_t lo = 0, hi = 0;
            if (!known_keys(cx, x, "a status code range", rkeys)) {
                ok = false;
                continue;
            }
            struct pt_node *mn = pt_node_get(x, "min"), *mx = pt_node_get(x, "max");
            if (!mn || !mx) {
                pt_node_error(cx->errs, x, "a status code range needs min and max (100 to 599)");
                ok = false;
                continue;
            }
            if (!pt_schema_int(cx, mn, 100, 599, &lo) || !pt_schema_int(cx, mx, 100, 599, &hi)) {
                ok = false;
                continue;
            }
            if (lo > hi) {
                pt_node_error(cx->errs, mn, "min %lld is above max %lld", (long long)lo, (long long)hi);
                ok = false;
                continue;
            }
            rv[r->nranges++] = (struct pt_cbrange){(int)lo, (int)hi};
        }
        if (ranges->n > 32) {
            pt_node_error(cx->errs, ranges, "statusCodeRanges holds at most 32 ranges");
            ok = false;
        }
        r->ranges = rv;
    } else if (ranges)
        ok = false;
    if (reasons && want_kind(cx, reasons, PT_N_SEQ, "errorReasons")) {
        const char **rs = pt_pool_calloc(cx->pool, sizeof(*rs) * (size_t)(reasons->n ? reasons->n : 1));
        for (int i = 0; i < reasons->n && i < 32; i++) {
            struct pt_node *x = reasons->items[i];
            if (x->kind != PT_N_SCALAR || !header_token(x->str)) {
                pt_node_error(cx->errs, x,
                              "an error reason is a word (Timeout, BackendConnectionFailure, ...)");
                ok = false;
                continue;
            }
            rs[r->nreasons++] = x->str;
        }
        if (reasons->n > 32) {
            pt_node_error(cx->errs, reasons, "errorReasons holds at most 32 reasons");
            ok = false;
        }
        r->reasons = rs;
    } else if (reasons)
        ok = false;
    if (ok && !r->nranges && !r->nreasons) {
        pt_node_error(cx->errs, fc,
                      "failureCondition needs statusCodeRanges or errorReasons (what is a failure)");
        ok = false;
    }
    return ok;
}

static bool read_breaker(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_backend_cf *b =
        (struct pt_backend_cf *)((char *)field - offsetof(struct pt_backend_cf, breaker));
    static const char *const keys[] = {"rules", NULL};
    *(struct pt_node **)field = n;
    if (!known_keys(cx, n, "circuitBreaker", keys))
        return false;
    struct pt_node *rules = pt_node_get(n, "rules");
    if (!rules || rules->kind != PT_N_SEQ || rules->n == 0 || rules->n > 16) {
        pt_node_error(cx->errs, rules ? rules : n, "circuitBreaker needs rules: a list of 1 to 16 rules");
        return false;
    }
    b->rules = pt_pool_calloc(cx->pool, sizeof(*b->rules) * (size_t)rules->n);
    bool ok = true;
    for (int i = 0; i < rules->n; i++)
        ok &= read_rule(cx, rules->items[i], &b->rules[b->nrules++]);
    return ok;
}

static bool read_pool(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_backend_cf *b = (struct pt_backend_cf *)((char *)field - offsetof(struct pt_backend_cf, pool));
    static const char *const keys[] = {"services", NULL};
    static const char *const skeys[] = {"id", "weight", "priority", NULL};
    *(struct pt_node **)field = n;
    if (!known_keys(cx, n, "pool", keys))
        return false;
    struct pt_node *sv = pt_node_get(n, "services");
    if (!sv || sv->kind != PT_N_SEQ || sv->n == 0 || sv->n > 256) {
        pt_node_error(cx->errs, sv ? sv : n, "a pool needs services: a list of 1 to 256 backends");
        return false;
    }
    b->members = pt_pool_calloc(cx->pool, sizeof(*b->members) * (size_t)sv->n);
    bool ok = true;
    for (int i = 0; i < sv->n; i++) {
        struct pt_node *x = sv->items[i];
        if (!known_keys(cx, x, "a pool service", skeys)) {
            ok = false;
            continue;
        }
        struct pt_node *id = pt_node_get(x, "id");
        if (!id || id->kind != PT_N_SCALAR || !pt_conf_entities_valid_id(id->str)) {
            pt_node_error(cx->errs, id ? id : x, "a pool service needs the id of a backend");
            ok = false;
            continue;
        }
        int64_t w = 1, p = 0;
        if (!read_int_at(cx, x, "weight", 1, 1000, &w) || !read_int_at(cx, x, "priority", 0, 100, &p)) {
            ok = false;
            continue;
        }
        for (int k = 0; k < b->nmembers; k++)
            if (!strcmp(b->members[k].id, id->str)) {
                pt_node_error(cx->errs, id, "backend '%s' is listed twice in this pool", id->str);
                ok = false;
            }
        b->members[b->nmembers++] = (struct pt_cfmember){id->str, (int)w, (int)p, x};
    }
    return ok;
}

static bool read_backend_url(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    if (n->kind == PT_N_SCALAR && strncasecmp(n->str, "http://", 7) && strncasecmp(n->str, "https://", 8)) {
        pt_node_error(cx->errs, n, "url '%s' must start with http:// or https://", n->str);
        return false;
    }
    return read_service_url(cx, n, field);
}

static bool read_hc_path(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    char *s;
    if (!pt_schema_str(cx, n, &s, false))
        return false;
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == '#') {
            pt_node_error(cx->errs, n, "path '%s' holds a character a request target may not", s);
            return false;
        }
    if (s[0] != '/' || strlen(s) > 2048) {
        pt_node_error(cx->errs, n, "path '%s' must start with '/' (at most 2048 bytes)", s);
        return false;
    }
    *(char **)field = s;
    return true;
}

static const struct pt_cfkey backend_tls_keys[] = {
    {"validateCertificateChain", PT_CT_BOOL, offsetof(struct pt_backend_cf, tls_chain), 0, .def = "`true`",
     .doc = "Check the https backend's certificate chain against `upstream.caFile` (or the system's CAs); "
            "`false` accepts any certificate (also without `upstream.verify: false`)."},
    {"validateCertificateName", PT_CT_BOOL, offsetof(struct pt_backend_cf, tls_name), 0, .def = "`true`",
     .doc = "Check that the certificate names the url's host."},
    {0},
};

static const struct pt_cfkey backend_health_keys[] = {
    {"path", PT_CT_CUSTOM, offsetof(struct pt_backend_cf, hc_path), 0, .fn = read_hc_path, .form = "string",
     .def = "`/`", .doc = "The path probed with GET (after the url's path); 2xx and 3xx are healthy."},
    {"interval", PT_CT_MS, offsetof(struct pt_backend_cf, hc_interval), 0, 100, 3600000, .def = "`10s`",
     .doc = "Between two probes."},
    {"timeout", PT_CT_MS, offsetof(struct pt_backend_cf, hc_timeout), 0, 10, 600000, .def = "`2s`",
     .doc = "One probe, from connecting to the end of the answer."},
    {"healthyThreshold", PT_CT_INT, offsetof(struct pt_backend_cf, hc_healthy), 0, 1, 100, .def = "`2`",
     .doc = "Consecutive healthy probes that bring a backend marked down back."},
    {"unhealthyThreshold", PT_CT_INT, offsetof(struct pt_backend_cf, hc_unhealthy), 0, 1, 100, .def = "`3`",
     .doc = "Consecutive failed probes that mark a backend down."},
    {0},
};

const struct pt_cfkey pt_conf_entities_backend_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_backend_cf, id), PT_CF_REQUIRED,
     .doc = "Unique; letters, digits and `-_.~`. An API's `backendId`, a pool's services and "
            "`set-backend-service backend-id` name it."},
    {"workspace", PT_CT_STR, offsetof(struct pt_backend_cf, workspace), 0, .def = "service level",
     .doc = "The workspace the backend belongs to."},
    {"type", PT_CT_ENUM, offsetof(struct pt_backend_cf, type), 0, .enums = pt_conf_entities_backend_types,
     .def = "`Single`",
     .doc = "`Single` (one url) or `Pool` (requests spread over `pool.services`; see "
            "[backends.md](backends.md))."},
    {"url", PT_CT_CUSTOM, offsetof(struct pt_backend_cf, url), 0, .fn = read_backend_url, .form = "URL",
     .doc =
         "A `Single` backend's base URL (`http://` or `https://`), with the rules of an API's `serviceUrl`; "
         "required for `Single`, refused on a `Pool`."},
    {"protocol", PT_CT_STR, offsetof(struct pt_backend_cf, protocol), 0, .doc = "APIM's protocol (`http`)."},
    {"description", PT_CT_STR, offsetof(struct pt_backend_cf, description), PT_CF_EMPTY_OK,
     .doc = "Free text."},
    {"credentials", PT_CT_CUSTOM, offsetof(struct pt_backend_cf, credentials), 0, .fn = read_credentials,
     .form = "map",
     .doc = "Sent with every forwarded request: `{header: {name: [values]}, query: {name: [values]}, "
            "certificate: {certificate, key} (PEM files), authorization: {scheme, parameter}}`; values may "
            "use `{{named values}}`."},
    {"tls", PT_CT_MAP, 0, 0, .sub = backend_tls_keys, .doc = "Certificate checks towards an https url."},
    {"circuitBreaker", PT_CT_CUSTOM, offsetof(struct pt_backend_cf, breaker), 0, .fn = read_breaker,
     .form = "map",
     .doc = "`{rules: [{name, failureCondition: {count | percentage, interval, statusCodeRanges: [{min, "
            "max}], errorReasons: [...]}, tripDuration, acceptRetryAfter}]}`; durations in ISO 8601 "
            "(`PT1M`) or as `60s`. See [backends.md](backends.md#circuit-breakers)."},
    {"pool", PT_CT_CUSTOM, offsetof(struct pt_backend_cf, pool), 0, .fn = read_pool, .form = "map",
     .doc = "A `Pool`'s members: `{services: [{id, weight (1), priority (0)}]}`, each a `Single` backend."},
    {"healthCheck", PT_CT_MAP, 0, 0, .sub = backend_health_keys,
     .doc = "Active health checks, off the request path (our addition); see "
            "[backends.md](backends.md#health-checks)."},
    {0},
};

bool pt_conf_entities_read_backends(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, backends));
    bool ok = read_entity_list(cx, n, (void **)&cf->backends, &cf->nbackends, sizeof(struct pt_backend_cf),
                               pt_conf_entities_backend_keys, backend_init, "backend",
                               offsetof(struct pt_backend_cf, node), NO_FIELD);
    for (int i = 0; i < cf->nbackends; i++) {
        struct pt_backend_cf *b = &cf->backends[i];
        if (!b->node || b->node->kind != PT_N_MAP)
            continue;
        b->hc_on = pt_node_get(b->node, "healthCheck") != NULL;
        bool pool = b->type == PT_BE_POOL;
        if (!pool && !b->url && !pt_node_get(b->node, "url")) {
            pt_node_error(cx->errs, pt_node_get(b->node, "id") ?: b->node,
                          "backend '%s': a Single backend needs a url", b->id ? b->id : "");
            ok = false;
        }
        if (pool && pt_node_get(b->node, "url")) {
            pt_node_error(cx->errs, pt_node_get(b->node, "url"),
                          "backend '%s': a Pool has no url of its own (its services have)",
                          b->id ? b->id : "");
            ok = false;
        }
        if (pool && !pt_node_get(b->node, "pool")) {
            pt_node_error(cx->errs, pt_node_get(b->node, "type"), "backend '%s': a Pool needs pool.services",
                          b->id ? b->id : "");
            ok = false;
        }
        /* a Pool's calls go to its members: their credentials, TLS, breaker and checks apply (a
           Pool's own would do nothing, while looking like a protection) */
        static const char *const member_only[] = {"credentials", "tls", "circuitBreaker", "healthCheck"};
        for (size_t k = 0; pool && k < PT_ARRAY_LEN(member_only); k++)
            if (pt_node_get(b->node, member_only[k])) {
                pt_node_error(cx->errs, pt_node_get(b->node, member_only[k]),
                              "backend '%s': a Pool's calls carry its members' %s; set them there",
                              b->id ? b->id : "", member_only[k]);
                ok = false;
            }
        if (!pool && pt_node_get(b->node, "pool")) {
            pt_node_error(cx->errs, pt_node_get(b->node, "pool"), "backend '%s': pool is for type: Pool",
                          b->id ? b->id : "");
            ok = false;
        }
        if (b->hc_on && b->hc_timeout > b->hc_interval) {
            pt_node_error(cx->errs, pt_node_get(pt_node_get(b->node, "healthCheck"), "timeout"),
                          "backend '%s': healthCheck.timeout is longer than its interval",
                          b->id ? b->id : "");
            ok = false;
        }
    }
    return ok;
}

const struct pt_cfkey pt_conf_entities_workspace_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_workspace_cf, id), PT_CF_REQUIRED,
     .doc = "Unique; letters, digits and `-_.~`."},
    {"displayName", PT_CT_STR, offsetof(struct pt_workspace_cf, display_name), 0, .def = "the id",
     .doc = "The workspace's name for people."},
    {"description", PT_CT_STR, offsetof(struct pt_workspace_cf, description), PT_CF_EMPTY_OK,
     .doc = "Free text."},
    {"policies", PT_CT_CUSTOM, offsetof(struct pt_workspace_cf, policies), 0,
     .fn = pt_conf_entities_read_node, .form = "policy document",
     .doc = "The workspace-scope document, run (through `base`) for every API of the workspace, between "
            "the global and the product's."},
    {0},
};

bool pt_conf_entities_read_workspaces(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, workspaces));
    return read_entity_list(cx, n, (void **)&cf->workspaces, &cf->nworkspaces, sizeof(struct pt_workspace_cf),
                            pt_conf_entities_workspace_keys, NULL, "workspace",
                            offsetof(struct pt_workspace_cf, node),
                            offsetof(struct pt_workspace_cf, display_name));
}

static void vs_init(void *p)
{
    struct pt_versionset_cf *v = p;
    v->query_name = "api-version";
    v->header_name = "Api-Version";
}

const struct pt_cfkey pt_conf_entities_vs_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_versionset_cf, id), PT_CF_REQUIRED,
     .doc = "Unique; letters, digits and `-_.~`."},
    {"displayName", PT_CT_STR, offsetof(struct pt_versionset_cf, display_name), 0, .def = "the id",
     .doc = "The version set's name for people."},
    {"description", PT_CT_STR, offsetof(struct pt_versionset_cf, description), 0, .doc = "Free text."},
    {"versioningScheme", PT_CT_ENUM, offsetof(struct pt_versionset_cf, scheme), PT_CF_REQUIRED,
     .enums = pt_conf_entities_versioning_schemes,
     .doc = "Where a request names the version: a path segment, a query parameter or a header (see "
            "[Versions](#versions))."},
    {"versionQueryName", PT_CT_STR, offsetof(struct pt_versionset_cf, query_name), 0, .def = "`api-version`",
     .doc = "The query parameter of the `Query` scheme."},
    {"versionHeaderName", PT_CT_STR, offsetof(struct pt_versionset_cf, header_name), 0,
     .def = "`Api-Version`", .doc = "The header of the `Header` scheme."},
    {"workspace", PT_CT_STR, offsetof(struct pt_versionset_cf, workspace), 0, .def = "service level",
     .doc = "The workspace the version set belongs to; an API uses a version set of its own scope."},
    {0},
};

bool pt_conf_entities_read_version_sets(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, version_sets));
    return read_entity_list(cx, n, (void **)&cf->version_sets, &cf->nversion_sets,
                            sizeof(struct pt_versionset_cf), pt_conf_entities_vs_keys, vs_init, "version set",
                            offsetof(struct pt_versionset_cf, node),
                            offsetof(struct pt_versionset_cf, display_name));
}

/* ---------------------------------------------------------------- gateways */

static const struct pt_cfkey gateway_location_keys[] = {
    {"name", PT_CT_STR, offsetof(struct pt_gateway_cf, loc_name), PT_CF_REQUIRED,
     .doc = "Where the gateway's nodes run, for people (`Amsterdam DC 2`)."},
    {"city", PT_CT_STR, offsetof(struct pt_gateway_cf, loc_city), PT_CF_EMPTY_OK, .doc = "Free text."},
    {"district", PT_CT_STR, offsetof(struct pt_gateway_cf, loc_district), PT_CF_EMPTY_OK,
     .doc = "Free text."},
    {"countryOrRegion", PT_CT_STR, offsetof(struct pt_gateway_cf, loc_country), PT_CF_EMPTY_OK,
     .doc = "Free text."},
    {0},
};

const struct pt_cfkey pt_conf_entities_gateway_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_gateway_cf, id), PT_CF_REQUIRED,
     .doc = "Unique; 1 to 80 letters, digits and `-_.`, not only dots; not `managed` (the control plane's "
            "own listener, "
            "built in)."},
    {"description", PT_CT_STR, offsetof(struct pt_gateway_cf, description), PT_CF_EMPTY_OK,
     .doc = "Free text."},
    {"locationData", PT_CT_MAP, 0, PT_CF_REQUIRED, .sub = gateway_location_keys,
     .doc = "Where its nodes run (APIM's `locationData`); `name` is required."},
    {"apis", PT_CT_CUSTOM, offsetof(struct pt_gateway_cf, apis), 0, .fn = read_strlist, .form = "list of ids",
     .doc = "The APIs (ids) the gateway's nodes serve; an API not listed answers 404 there."},
    {0},
};

bool pt_conf_entities_read_gateways(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, gateways));
    bool ok = read_entity_list(cx, n, (void **)&cf->gateways, &cf->ngateways, sizeof(struct pt_gateway_cf),
                               pt_conf_entities_gateway_keys, NULL, "gateway",
                               offsetof(struct pt_gateway_cf, node), NO_FIELD);
    for (int i = 0; i < cf->ngateways; i++) {
        const struct pt_gateway_cf *g = &cf->gateways[i];
        if (!g->id)
            continue;
        /* a gateway id travels in tokens and URLs: the tokens' alphabet, no '~', not only dots */
        if (!pt_gwtoken_id_ok(pt_str_c(g->id))) {
            pt_node_error(cx->errs, pt_node_get(g->node, "id"),
                          "gateway id '%s': 1 to 80 letters, digits and -_. (not only dots)", g->id);
            ok = false;
        } else if (!strcmp(g->id, "managed")) {
            pt_node_error(cx->errs, pt_node_get(g->node, "id"),
                          "gateway id 'managed' is the built-in gateway (the control plane's own listener); "
                          "choose another");
            ok = false;
        }
    }
    return ok;
}

/* ----------------------------------------------------------------- loggers */

const char *const pt_conf_entities_logger_types[] = {"file", "syslog", "http", NULL};
static const char *const syslog_facilities[] = {
    "kern",   "user",     "mail",   "daemon", "auth",   "syslog", "lpr",   "news",   "uucp",
    "cron",   "authpriv", "ftp",    "ntp",    "audit",  "alert",  "clock", "local0", "local1",
    "local2", "local3",   "local4", "local5", "local6", "local7", NULL};
static const char *const syslog_severities[] = {"emergency", "alert",         "critical", "error", "warning",
                                                "notice",    "informational", "debug",    NULL};
static const char *const http_formats[] = {"ndjson", "array", NULL};

static void logger_init(void *p)
{
    struct pt_logger_cf *l = p;
    l->is_buffered = true;
    l->max_queue = 10000;
    l->max_queue_bytes = 16 * 1024 * 1024;
    l->syslog_facility = 16; /* local0 */
    l->syslog_severity = 6;  /* informational */
    l->syslog_app = "portico";
    l->http_batch = 100;
    l->http_flush = 1000;
    l->http_retries = 3;
    l->http_timeout = 5000;
}

/* http.headers: {Name: value}; names are tokens the client may send, values one line each. */
static bool read_logger_headers(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    static const char *const reserved[] = {
        "host",       "content-length",  "content-type", "transfer-encoding",
        "connection", "accept-encoding", "expect",       NULL};
    if (n->kind != PT_N_MAP) {
        pt_node_error(cx->errs, n, "headers is a map of header names to values, found %s",
                      pt_node_kind_name(n));
        return false;
    }
    bool ok = true;
    size_t total = 0;
    for (int i = 0; i < n->n; i++) {
        struct pt_node *k = pt_node_key(n, i), *v = pt_node_val(n, i);
        const char *name = k->str;
        bool token = *name != '\0' && strlen(name) <= 256;
        for (const char *c = name; *c && token; c++)
            token = pt_str_tchar[(unsigned char)*c];
        if (!token) {
            pt_node_error(cx->errs, k, "'%s' is not a header name", name);
            ok = false;
            continue;
        }
        for (int r = 0; reserved[r]; r++)
            if (!strcasecmp(name, reserved[r])) {
                pt_node_error(cx->errs, k, "%s is set by the gateway; it cannot be configured", name);
                ok = false;
            }
        if (v->kind != PT_N_SCALAR) {
            pt_node_error(cx->errs, v, "the value of header %s is a string, found %s", name,
                          pt_node_kind_name(v));
            ok = false;
            continue;
        }
        if (strpbrk(v->str, "\r\n") || strlen(v->str) != v->len) {
            pt_node_error(cx->errs, v, "the value of header %s may not hold CR, LF or NUL", name);
            ok = false;
        }
        total += strlen(name) + v->len + 4;
    }
    if (total > 4096) {
        pt_node_error(cx->errs, n, "the headers take %zu bytes; at most 4096", total);
        ok = false;
    }
    *(struct pt_node **)field = n;
    return ok;
}

static const struct pt_cfkey logger_file_keys[] = {
    {"path", PT_CT_STR, offsetof(struct pt_logger_cf, file_path), PT_CF_REQUIRED | PT_CF_PATH,
     .doc = "The file messages are appended to, one per line (relative paths: to the configuration's "
            "folder); created when missing, reopened on `SIGUSR1`."},
    {0},
};

static const struct pt_cfkey logger_syslog_keys[] = {
    {"address", PT_CT_STR, offsetof(struct pt_logger_cf, syslog_address), PT_CF_REQUIRED,
     .doc = "`udp://HOST:PORT`, `tcp://HOST:PORT` (octet counting, RFC 6587; reconnects) or "
            "`unix:///dev/log` (a datagram or stream socket)."},
    {"facility", PT_CT_ENUM, offsetof(struct pt_logger_cf, syslog_facility), 0, .enums = syslog_facilities,
     .def = "`local0`", .doc = "The facility of the PRI (RFC 5424 names, `kern` to `local7`)."},
    {"severity", PT_CT_ENUM, offsetof(struct pt_logger_cf, syslog_severity), 0, .enums = syslog_severities,
     .def = "`informational`", .doc = "The severity of the PRI."},
    {"appName", PT_CT_STR, offsetof(struct pt_logger_cf, syslog_app), 0, .def = "`portico`",
     .doc = "APP-NAME (at most 48 printable ASCII characters)."},
    {"hostname", PT_CT_STR, offsetof(struct pt_logger_cf, syslog_hostname), 0, .def = "the machine's name",
     .doc = "HOSTNAME (at most 255 printable ASCII characters)."},
    {"maxLength", PT_CT_SIZE, offsetof(struct pt_logger_cf, syslog_max), 0, 480, 1 << 20,
     .def = "8k over UDP and unix sockets, 256k over TCP",
     .doc = "The longest message frame; a longer message is cut (at a UTF-8 character boundary)."},
    {0},
};

static const struct pt_cfkey logger_http_keys[] = {
    {"url", PT_CT_STR, offsetof(struct pt_logger_cf, http_url), PT_CF_REQUIRED,
     .doc = "Where batches are POSTed (`http://` or `https://`, the certificate checked against the system's "
            "CAs)."},
    {"headers", PT_CT_CUSTOM, offsetof(struct pt_logger_cf, http_headers), 0, .fn = read_logger_headers,
     .form = "map of header names to values",
     .doc = "Headers sent with each POST; values may use `{{named values}}` of the service level (keep "
            "secrets there: the management API shows other values as `***`)."},
    {"format", PT_CT_ENUM, offsetof(struct pt_logger_cf, http_format), 0, .enums = http_formats,
     .def = "`ndjson`",
     .doc = "`ndjson`: one JSON object per line (`application/x-ndjson`); `array`: one JSON array "
            "(`application/json`)."},
    {"batchSize", PT_CT_INT, offsetof(struct pt_logger_cf, http_batch), 0, 1, 10000, .def = "`100`",
     .doc = "Messages per POST at most (a POST also stays under 1 MiB unless one message is larger)."},
    {"flushInterval", PT_CT_MS, offsetof(struct pt_logger_cf, http_flush), 0, 1, 3600000, .def = "`1s`",
     .doc = "The longest a message waits for its batch to fill."},
    {"retries", PT_CT_INT, offsetof(struct pt_logger_cf, http_retries), 0, 0, 100, .def = "`3`",
     .doc = "Further attempts of a POST that failed (no connection, a timeout, 429 or 5xx), after 0.2 s, "
            "0.4 s, 0.8 s... (at most 10 s); then its messages count as failed."},
    {"timeout", PT_CT_MS, offsetof(struct pt_logger_cf, http_timeout), 0, 1, 600000, .def = "`5s`",
     .doc = "One POST, from connecting to the end of the answer."},
    {0},
};

const struct pt_cfkey pt_conf_entities_logger_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_logger_cf, id), PT_CF_REQUIRED,
     .doc = "Unique; letters, digits and `-_.~`. `log-to-eventhub {logger-id: ID}` and `log.access: "
            "logger:ID` name it."},
    {"loggerType", PT_CT_ENUM, offsetof(struct pt_logger_cf, type), PT_CF_REQUIRED,
     .enums = pt_conf_entities_logger_types,
     .doc = "`file`, `syslog` or `http`; the map of the same name gives its settings."},
    {"description", PT_CT_STR, offsetof(struct pt_logger_cf, description), PT_CF_EMPTY_OK,
     .doc = "Free text."},
    {"isBuffered", PT_CT_BOOL, offsetof(struct pt_logger_cf, is_buffered), 0, .def = "`true`",
     .doc = "APIM's flag, kept: messages are always queued and delivered off the request path."},
    {"maxQueue", PT_CT_INT, offsetof(struct pt_logger_cf, max_queue), 0, 1, 1000000, .def = "`10000`",
     .doc = "Messages waiting for delivery at most; past it (or `maxQueueSize`) new messages are dropped "
            "and counted."},
    {"maxQueueSize", PT_CT_SIZE, offsetof(struct pt_logger_cf, max_queue_bytes), 0, 65536, 1LL << 32,
     .def = "`16m`", .doc = "Bytes of messages waiting for delivery at most."},
    {"file", PT_CT_MAP, 0, 0, .sub = logger_file_keys, .doc = "A `file` logger's settings."},
    {"syslog", PT_CT_MAP, 0, 0, .sub = logger_syslog_keys,
     .doc = "A `syslog` logger's settings: RFC 5424 messages."},
    {"http", PT_CT_MAP, 0, 0, .sub = logger_http_keys,
     .doc = "An `http` logger's settings: batches of JSON lines POSTed with retries."},
    {0},
};

/* udp://host:port, tcp://host:port, unix:///path */
static bool parse_syslog_address(struct pt_cfctx *cx, struct pt_logger_cf *l)
{
    const char *a = l->syslog_address;
    struct pt_node *where = pt_node_get(pt_node_get(l->node, "syslog"), "address");
    if (!strncmp(a, "unix://", 7)) {
        l->syslog_transport = PT_SYSLOG_UNIX;
        l->syslog_path = (char *)a + 7;
        if (l->syslog_path[0] != '/' || strlen(l->syslog_path) >= 108) {
            pt_node_error(cx->errs, where,
                          "address '%s': a unix socket is unix:///absolute/path (under 108 "
                          "bytes)",
                          a);
            return false;
        }
        return true;
    }
    bool udp = !strncmp(a, "udp://", 6), tcp = !strncmp(a, "tcp://", 6);
    if (!udp && !tcp) {
        pt_node_error(cx->errs, where,
                      "address '%s' must be udp://HOST:PORT, tcp://HOST:PORT or unix:///PATH", a);
        return false;
    }
    l->syslog_transport = udp ? PT_SYSLOG_UDP : PT_SYSLOG_TCP;
    const char *hp = a + 6, *colon = strrchr(hp, ':');
    const char *h0 = hp, *h1 = colon;
    if (*hp == '[') { /* [v6]:port */
        const char *rb = strchr(hp, ']');
        if (!rb || rb[1] != ':') {
            colon = NULL;
        } else {
            h0 = hp + 1;
            h1 = rb;
            colon = rb + 1;
        }
    }
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!colon || h1 == h0 || !colon[1] || *end || port < 1 || port > 65535) {
        pt_node_error(cx->errs, where, "address '%s' needs a host and a port (udp://127.0.0.1:514)", a);
        return false;
    }
    l->syslog_host = pt_pool_strndup(cx->pool, h0, (size_t)(h1 - h0));
    l->syslog_port = (int)port;
    return true;
}

static bool printable_ascii(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if ((unsigned char)s[n] < 33 || (unsigned char)s[n] > 126)
            return false;
    return n >= 1 && n <= max;
}

bool pt_conf_entities_read_loggers(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, loggers));
    bool ok = read_entity_list(cx, n, (void **)&cf->loggers, &cf->nloggers, sizeof(struct pt_logger_cf),
                               pt_conf_entities_logger_keys, logger_init, "logger",
                               offsetof(struct pt_logger_cf, node), NO_FIELD);
    for (int i = 0; i < cf->nloggers; i++) {
        struct pt_logger_cf *l = &cf->loggers[i];
        if (!pt_node_get(l->node, "loggerType"))
            continue; /* reported */
        for (int t = 0; pt_conf_entities_logger_types[t]; t++) {
            const char *tn = pt_conf_entities_logger_types[t];
            struct pt_node *sub = pt_node_get(l->node, tn);
            if (t == l->type && !sub) {
                pt_node_error(cx->errs, pt_node_get(l->node, "loggerType"),
                              "a %s logger needs its settings in '%s: {...}'", tn, tn);
                ok = false;
            } else if (t != l->type && sub) {
                for (int k = 0; k < l->node->n; k++)
                    if (pt_node_val(l->node, k) == sub)
                        pt_node_error(cx->errs, pt_node_key(l->node, k), "'%s' settings on a %s logger", tn,
                                      pt_conf_entities_logger_types[l->type]);
                ok = false;
            }
        }
        if (l->type == PT_LOGGER_SYSLOG && l->syslog_address) {
            ok &= parse_syslog_address(cx, l);
            struct pt_node *sn = pt_node_get(l->node, "syslog");
            if (l->syslog_app && !printable_ascii(l->syslog_app, 48)) {
                pt_node_error(cx->errs, pt_node_get(sn, "appName"),
                              "appName is 1 to 48 printable ASCII characters (no spaces)");
                ok = false;
            }
            if (l->syslog_hostname && !printable_ascii(l->syslog_hostname, 255)) {
                pt_node_error(cx->errs, pt_node_get(sn, "hostname"),
                              "hostname is 1 to 255 printable ASCII characters (no spaces)");
                ok = false;
            }
        }
        if (l->type == PT_LOGGER_HTTP && l->http_url) {
            struct pt_url u;
            struct pt_node *un = pt_node_get(pt_node_get(l->node, "http"), "url");
            if (strncmp(l->http_url, "http://", 7) && strncmp(l->http_url, "https://", 8)) {
                pt_node_error(cx->errs, un, "url '%s' must start with http:// or https://", l->http_url);
                ok = false;
            } else {
                const char *why = pt_url_parse(cx->pool, l->http_url, &u);
                if (why) {
                    pt_node_error(cx->errs, un, "url '%s': %s", l->http_url, why);
                    ok = false;
                }
            }
        }
    }
    return ok;
}
