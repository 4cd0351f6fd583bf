/*
 * pt_import_graphql.c -- GraphQL APIs from SDL or from an introspection
 * result.
 *
 * An introspection result becomes SDL: every type but the built-in scalars
 * and the introspection types (__*), the custom directives, and a schema
 * { } block when the root types are not named Query, Mutation,
 * Subscription.  Names are checked to be GraphQL names and default values
 * to be one constant value each, so a hostile answer cannot smuggle
 * definitions into the SDL; the SDL is then parsed like an uploaded one
 * (pt_graphql_schema_parse), so whatever is stored is a schema the
 * validate-graphql-request policy can read.
 *
 * The API: apiType graphql, the schema as {id: "graphql", contentType:
 * application/vnd.ms-azure-apim.graphql.schema, value: SDL}, and two
 * operations, POST / and GET / (graphql-post, graphql-get): GraphQL over
 * HTTP's two ways to send a request, as an APIM pass-through GraphQL API
 * accepts them.
 */
#include "conf/pt_import.h"

#include "base/pt_buf.h"
#include "base/pt_graphql.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONTENT_TYPE "application/vnd.ms-azure-apim.graphql.schema"

/* graphql-js's getIntrospectionQuery() with its defaults (descriptions; no schema description,
   specifiedByURL or isRepeatable, which older servers refuse). */
const char pt_import_graphql_introspection_query[] = "query IntrospectionQuery {\n"
                                                     "  __schema {\n"
                                                     "    queryType { name }\n"
                                                     "    mutationType { name }\n"
                                                     "    subscriptionType { name }\n"
                                                     "    types { ...FullType }\n"
                                                     "    directives {\n"
                                                     "      name\n"
                                                     "      description\n"
                                                     "      locations\n"
                                                     "      args { ...InputValue }\n"
                                                     "    }\n"
                                                     "  }\n"
                                                     "}\n"
                                                     "\n"
                                                     "fragment FullType on __Type {\n"
                                                     "  kind\n"
                                                     "  name\n"
                                                     "  description\n"
                                                     "  fields(includeDeprecated: true) {\n"
                                                     "    name\n"
                                                     "    description\n"
                                                     "    args { ...InputValue }\n"
                                                     "    type { ...TypeRef }\n"
                                                     "    isDeprecated\n"
                                                     "    deprecationReason\n"
                                                     "  }\n"
                                                     "  inputFields { ...InputValue }\n"
                                                     "  interfaces { ...TypeRef }\n"
                                                     "  enumValues(includeDeprecated: true) {\n"
                                                     "    name\n"
                                                     "    description\n"
                                                     "    isDeprecated\n"
                                                     "    deprecationReason\n"
                                                     "  }\n"
                                                     "  possibleTypes { ...TypeRef }\n"
                                                     "}\n"
                                                     "\n"
                                                     "fragment InputValue on __InputValue {\n"
                                                     "  name\n"
                                                     "  description\n"
                                                     "  type { ...TypeRef }\n"
                                                     "  defaultValue\n"
                                                     "}\n"
                                                     "\n"
                                                     "fragment TypeRef on __Type {\n"
                                                     "  kind\n"
                                                     "  name\n"
                                                     "  ofType {\n"
                                                     "    kind\n"
                                                     "    name\n"
                                                     "    ofType {\n"
                                                     "      kind\n"
                                                     "      name\n"
                                                     "      ofType {\n"
                                                     "        kind\n"
                                                     "        name\n"
                                                     "        ofType {\n"
                                                     "          kind\n"
                                                     "          name\n"
                                                     "          ofType {\n"
                                                     "            kind\n"
                                                     "            name\n"
                                                     "            ofType {\n"
                                                     "              kind\n"
                                                     "              name\n"
                                                     "              ofType {\n"
                                                     "                kind\n"
                                                     "                name\n"
                                                     "              }\n"
                                                     "            }\n"
                                                     "          }\n"
                                                     "        }\n"
                                                     "      }\n"
                                                     "    }\n"
                                                     "  }\n"
                                                     "}\n";

#define MAX_TYPE_REF_DEPTH 32

/* ------------------------------------------------------------ output */

static void sb_str(struct pt_buf *b, const char *s)
{
    pt_buf_add(b, s, strlen(s));
}

/* A description as a block string (\""" for """ inside). */
static void sb_description(struct pt_buf *b, const char *desc, const char *indent)
{
    if (!desc || !*desc)
        return;
    sb_str(b, indent);
    sb_str(b, "\"\"\"\n");
    sb_str(b, indent);
    for (const char *p = desc; *p; p++) {
        if (!strncmp(p, "\"\"\"", 3)) {
            sb_str(b, "\\\"\"\"");
            p += 2;
        } else if (*p == '\n') {
            sb_str(b, "\n");
            sb_str(b, indent);
        } else if (*p == '\r')
            continue;
        else
            pt_buf_add(b, p, 1);
    }
    sb_str(b, "\n");
    sb_str(b, indent);
    sb_str(b, "\"\"\"\n");
}

/* A GraphQL string literal (for deprecation reasons). */
static void sb_string(struct pt_buf *b, const char *s)
{
    sb_str(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            pt_buf_add(b, e, 2);
        } else if (*p < 0x20) {
            char e[8];
            snprintf(e, sizeof(e), "\\u%04X", *p);
            sb_str(b, e);
        } else
            pt_buf_add(b, (const char *)p, 1);
    }
    sb_str(b, "\"");
}

/* ------------------------------------------------------------ reading */

struct conv {
    struct pt_buf out;
    char *err;
    size_t errlen;
    bool failed;
};

static bool fail(struct conv *c, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool fail(struct conv *c, const char *where, const char *fmt, ...)
{
    if (c->failed)
        return false;
    c->failed = true;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s: %s", where, msg);
    return false;
}

static bool is_name(const char *s)
{
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++) {
        char ch = *p;
        bool ok = ch == '_' || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                  (p != s && ch >= '0' && ch <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static const char *get_name(struct conv *c, const json_t *o, const char *where)
{
    const char *n = json_string_value(json_object_get(o, "name"));
    if (!is_name(n)) {
        char w[400];
        snprintf(w, sizeof(w), "%.300s/name", where);
        fail(c, w, "%s", n ? "not a GraphQL name" : "a name is required");
        return NULL;
    }
    return n;
}

static const char *opt_string(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static bool type_ref(struct conv *c, const json_t *t, const char *where, int depth)
{
    char w[400];
    if (depth > MAX_TYPE_REF_DEPTH)
        return fail(c, where, "type reference nested deeper than %d levels", MAX_TYPE_REF_DEPTH);
    const char *kind = opt_string(t, "kind");
    if (!json_is_object(t) || !kind)
        return fail(c, where, "a type reference {kind, name, ofType} is required");
    if (!strcmp(kind, "NON_NULL") || !strcmp(kind, "LIST")) {
        const json_t *of = json_object_get(t, "ofType");
        snprintf(w, sizeof(w), "%.300s/ofType", where);
        bool list = kind[0] == 'L';
        if (list)
            sb_str(&c->out, "[");
        if (!type_ref(c, of, w, depth + 1))
            return false;
        sb_str(&c->out, list ? "]" : "!");
        return true;
    }
    const char *n = get_name(c, t, where);
    if (!n)
        return false;
    sb_str(&c->out, n);
    return true;
}

/* A default value must be exactly one constant GraphQL value. */
static bool default_value(struct conv *c, const char *dv, const char *where)
{
    size_t n = strlen(dv);
    char *probe = malloc(n + 32);
    if (!probe)
        return fail(c, where, "out of memory");
    int m = snprintf(probe, n + 32, "input X{a:Int=%s\n}", dv);
    struct pt_graphql_error e;
    struct pt_graphql_doc *d = pt_graphql_parse(probe, (size_t)m, PT_GRAPHQL_SDL, NULL, &e);
    bool ok = d && d->defs && !d->defs->next && d->defs->list && !d->defs->list->next &&
              d->defs->list->value && !d->defs->list->directives;
    pt_graphql_doc_free(d);
    free(probe);
    if (!ok)
        return fail(c, where, "not a GraphQL constant value");
    sb_str(&c->out, " = ");
    sb_str(&c->out, dv);
    return true;
}

static void deprecated(struct conv *c, const json_t *o)
{
    if (!json_is_true(json_object_get(o, "isDeprecated")))
        return;
    const char *r = opt_string(o, "deprecationReason");
    sb_str(&c->out, " @deprecated");
    if (r && strcmp(r, "No longer supported")) {
        sb_str(&c->out, "(reason: ");
        sb_string(&c->out, r);
        sb_str(&c->out, ")");
    }
}

static bool input_values(struct conv *c, const json_t *arr, const char *where, const char *indent,
                         bool inline_)
{
    if (!arr || json_is_null(arr))
        return true;
    if (!json_is_array(arr))
        return fail(c, where, "an array is required");
    size_t i;
    const json_t *v;
    char w[400];
    json_array_foreach(arr, i, v)
    {
        snprintf(w, sizeof(w), "%.300s/%zu", where, i);
        const char *n = get_name(c, v, w);
        if (!n)
            return false;
        if (inline_) {
            if (i)
                sb_str(&c->out, ", ");
        } else
            sb_description(&c->out, opt_string(v, "description"), indent);
        if (!inline_)
            sb_str(&c->out, indent);
        sb_str(&c->out, n);
        sb_str(&c->out, ": ");
        char wt[400];
        snprintf(wt, sizeof(wt), "%.300s/type", w);
        if (!type_ref(c, json_object_get(v, "type"), wt, 0))
            return false;
        const char *dv = opt_string(v, "defaultValue");
        snprintf(wt, sizeof(wt), "%.300s/defaultValue", w);
        if (dv && !default_value(c, dv, wt))
            return false;
        deprecated(c, v);
        if (!inline_)
            sb_str(&c->out, "\n");
    }
    return true;
}

static bool implements(struct conv *c, const json_t *t, const char *where)
{
    const json_t *ifs = json_object_get(t, "interfaces");
    if (!json_is_array(ifs) || !json_array_size(ifs))
        return true;
    sb_str(&c->out, " implements ");
    size_t i;
    const json_t *v;
    char w[400];
    json_array_foreach(ifs, i, v)
    {
        snprintf(w, sizeof(w), "%.300s/interfaces/%zu", where, i);
        const char *n = get_name(c, v, w);
        if (!n)
            return false;
        if (i)
            sb_str(&c->out, " & ");
        sb_str(&c->out, n);
    }
    return true;
}

static bool fields(struct conv *c, const json_t *t, const char *where)
{
    const json_t *fs = json_object_get(t, "fields");
    char w[400];
    snprintf(w, sizeof(w), "%.300s/fields", where);
    if (!json_is_array(fs) || !json_array_size(fs))
        return fail(c, w, "an object or interface type needs fields");
    sb_str(&c->out, " {\n");
    size_t i;
    const json_t *f;
    json_array_foreach(fs, i, f)
    {
        char wf[400];
        snprintf(wf, sizeof(wf), "%.300s/%zu", w, i);
        const char *n = get_name(c, f, wf);
        if (!n)
            return false;
        sb_description(&c->out, opt_string(f, "description"), "  ");
        sb_str(&c->out, "  ");
        sb_str(&c->out, n);
        const json_t *args = json_object_get(f, "args");
        if (json_is_array(args) && json_array_size(args)) {
            char wa[400];
            snprintf(wa, sizeof(wa), "%.300s/args", wf);
            sb_str(&c->out, "(");
            if (!input_values(c, args, wa, "", true))
                return false;
            sb_str(&c->out, ")");
        }
        sb_str(&c->out, ": ");
        char wt[400];
        snprintf(wt, sizeof(wt), "%.300s/type", wf);
        if (!type_ref(c, json_object_get(f, "type"), wt, 0))
            return false;
        deprecated(c, f);
        sb_str(&c->out, "\n");
    }
    sb_str(&c->out, "}\n");
    return true;
}

static bool is_builtin_scalar(const char *n)
{
    return !strcmp(n, "String") || !strcmp(n, "Int") || !strcmp(n, "Float") || !strcmp(n, "Boolean") ||
           !strcmp(n, "ID");
}

static bool one_type(struct conv *c, const json_t *t, const char *where)
{
    const char *kind = opt_string(t, "kind");
    const char *n = get_name(c, t, where);
    if (!n)
        return false;
    if (!strncmp(n, "__", 2) || (kind && !strcmp(kind, "SCALAR") && is_builtin_scalar(n)))
        return true;
    char w[400];
    snprintf(w, sizeof(w), "%.300s/kind", where);
    if (!kind)
        return fail(c, w, "a kind is required");
    sb_str(&c->out, "\n");
    sb_description(&c->out, opt_string(t, "description"), "");
    if (!strcmp(kind, "SCALAR")) {
        sb_str(&c->out, "scalar ");
        sb_str(&c->out, n);
        const char *url = opt_string(t, "specifiedByURL");
        if (!url)
            url = opt_string(t, "specifiedByUrl");
        if (url) {
            sb_str(&c->out, " @specifiedBy(url: ");
            sb_string(&c->out, url);
            sb_str(&c->out, ")");
        }
        sb_str(&c->out, "\n");
    } else if (!strcmp(kind, "OBJECT") || !strcmp(kind, "INTERFACE")) {
        sb_str(&c->out, kind[0] == 'O' ? "type " : "interface ");
        sb_str(&c->out, n);
        if (!implements(c, t, where) || !fields(c, t, where))
            return false;
    } else if (!strcmp(kind, "UNION")) {
        const json_t *pt = json_object_get(t, "possibleTypes");
        snprintf(w, sizeof(w), "%.300s/possibleTypes", where);
        if (!json_is_array(pt) || !json_array_size(pt))
            return fail(c, w, "a union needs possible types");
        sb_str(&c->out, "union ");
        sb_str(&c->out, n);
        sb_str(&c->out, " =");
        size_t i;
        const json_t *m;
        json_array_foreach(pt, i, m)
        {
            char wm[400];
            snprintf(wm, sizeof(wm), "%.300s/%zu", w, i);
            const char *mn = get_name(c, m, wm);
            if (!mn)
                return false;
            sb_str(&c->out, i ? " | " : " ");
            sb_str(&c->out, mn);
        }
        sb_str(&c->out, "\n");
    } else if (!strcmp(kind, "ENUM")) {
        const json_t *vs = json_object_get(t, "enumValues");
        snprintf(w, sizeof(w), "%.300s/enumValues", where);
        if (!json_is_array(vs) || !json_array_size(vs))
            return fail(c, w, "an enum needs values");
        sb_str(&c->out, "enum ");
        sb_str(&c->out, n);
        sb_str(&c->out, " {\n");
        size_t i;
        const json_t *v;
        json_array_foreach(vs, i, v)
        {
            char wv[400];
            snprintf(wv, sizeof(wv), "%.300s/%zu", w, i);
            const char *vn = get_name(c, v, wv);
            if (!vn)
                return false;
            if (!strcmp(vn, "true") || !strcmp(vn, "false") || !strcmp(vn, "null"))
                return fail(c, wv, "%s cannot be an enum value", vn);
            sb_description(&c->out, opt_string(v, "description"), "  ");
            sb_str(&c->out, "  ");
            sb_str(&c->out, vn);
            deprecated(c, v);
            sb_str(&c->out, "\n");
        }
        sb_str(&c->out, "}\n");
    } else if (!strcmp(kind, "INPUT_OBJECT")) {
        const json_t *fs = json_object_get(t, "inputFields");
        snprintf(w, sizeof(w), "%.300s/inputFields", where);
        if (!json_is_array(fs) || !json_array_size(fs))
            return fail(c, w, "an input type needs fields");
        sb_str(&c->out, "input ");
        sb_str(&c->out, n);
        sb_str(&c->out, " {\n");
        if (!input_values(c, fs, w, "  ", false))
            return false;
        sb_str(&c->out, "}\n");
    } else
        return fail(c, w, "unknown kind %.40s", kind);
    return true;
}

static bool is_builtin_directive(const char *n)
{
    return !strcmp(n, "skip") || !strcmp(n, "include") || !strcmp(n, "deprecated") ||
           !strcmp(n, "specifiedBy") || !strcmp(n, "oneOf");
}

static bool directive(struct conv *c, const json_t *d, const char *where)
{
    const char *n = get_name(c, d, where);
    if (!n)
        return false;
    if (is_builtin_directive(n))
        return true;
    sb_str(&c->out, "\n");
    sb_description(&c->out, opt_string(d, "description"), "");
    sb_str(&c->out, "directive @");
    sb_str(&c->out, n);
    const json_t *args = json_object_get(d, "args");
    char w[400];
    if (json_is_array(args) && json_array_size(args)) {
        snprintf(w, sizeof(w), "%.300s/args", where);
        sb_str(&c->out, "(");
        if (!input_values(c, args, w, "", true))
            return false;
        sb_str(&c->out, ")");
    }
    if (json_is_true(json_object_get(d, "isRepeatable")))
        sb_str(&c->out, " repeatable");
    const json_t *locs = json_object_get(d, "locations");
    snprintf(w, sizeof(w), "%.300s/locations", where);
    if (!json_is_array(locs) || !json_array_size(locs))
        return fail(c, w, "a directive needs locations");
    sb_str(&c->out, " on");
    size_t i;
    const json_t *l;
    json_array_foreach(locs, i, l)
    {
        const char *ln = json_string_value(l);
        if (!is_name(ln)) {
            char wl[400];
            snprintf(wl, sizeof(wl), "%.300s/%zu", w, i);
            return fail(c, wl, "not a directive location");
        }
        sb_str(&c->out, i ? " | " : " ");
        sb_str(&c->out, ln);
    }
    sb_str(&c->out, "\n");
    return true;
}

static const char *root_name(const json_t *schema, const char *key)
{
    const json_t *r = json_object_get(schema, key);
    return json_is_object(r) ? json_string_value(json_object_get(r, "name")) : NULL;
}

/* SDL text (malloc'd) from an introspection result's __schema object; NULL with err
   ("/types/3/kind: ...", relative to __schema). */
static char *introspection_sdl(const json_t *schema, char *err, size_t errlen)
{
    struct conv c = {.err = err, .errlen = errlen};
    if (!json_is_object(schema)) {
        fail(&c, "", "the introspection result's __schema must be an object");
        return NULL;
    }
    struct pt_pool *pool = pt_pool_new(64 * 1024);
    if (!pool) {
        fail(&c, "", "out of memory");
        return NULL;
    }
    pt_buf_init(&c.out, pool, 4096);
    sb_description(&c.out, opt_string(schema, "description"), "");
    static const char *const keys[3] = {"queryType", "mutationType", "subscriptionType"};
    static const char *const defaults[3] = {"Query", "Mutation", "Subscription"};
    static const char *const ops[3] = {"query", "mutation", "subscription"};
    const char *roots[3];
    bool custom = false;
    for (int i = 0; i < 3; i++) {
        roots[i] = root_name(schema, keys[i]);
        if (roots[i] && !is_name(roots[i])) {
            char w[64];
            snprintf(w, sizeof(w), "/%s/name", keys[i]);
            fail(&c, w, "not a GraphQL name");
            pt_pool_free(pool);
            return NULL;
        }
        if (roots[i] && strcmp(roots[i], defaults[i]))
            custom = true;
    }
    if (!roots[0]) {
        fail(&c, "/queryType", "the schema has no query type");
        pt_pool_free(pool);
        return NULL;
    }
    if (custom || opt_string(schema, "description")) {
        sb_str(&c.out, "schema {\n");
        for (int i = 0; i < 3; i++)
            if (roots[i]) {
                sb_str(&c.out, "  ");
                sb_str(&c.out, ops[i]);
                sb_str(&c.out, ": ");
                sb_str(&c.out, roots[i]);
                sb_str(&c.out, "\n");
            }
        sb_str(&c.out, "}\n");
    }
    const json_t *types = json_object_get(schema, "types");
    if (!json_is_array(types)) {
        fail(&c, "/types", "an array of types is required");
        pt_pool_free(pool);
        return NULL;
    }
    size_t i;
    const json_t *t;
    char w[64];
    json_array_foreach(types, i, t)
    {
        snprintf(w, sizeof(w), "/types/%zu", i);
        if (!json_is_object(t)) {
            fail(&c, w, "a type must be an object");
            break;
        }
        if (!one_type(&c, t, w))
            break;
    }
    const json_t *dirs = json_object_get(schema, "directives");
    if (!c.failed && json_is_array(dirs))
        json_array_foreach(dirs, i, t)
        {
            snprintf(w, sizeof(w), "/directives/%zu", i);
            if (!json_is_object(t)) {
                fail(&c, w, "a directive must be an object");
                break;
            }
            if (!directive(&c, t, w))
                break;
        }
    if (!c.failed && pt_pool_failed(pool))
        fail(&c, "", "out of memory");
    char *sdl = c.failed ? NULL : strndup(c.out.p ? c.out.p : "", c.out.n);
    if (!c.failed && !sdl)
        fail(&c, "", "out of memory");
    pt_pool_free(pool);
    return sdl;
}

/* ------------------------------------------------------------ the API */

static json_t *operation(const char *id, const char *method, const char *display, const char *desc)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", id, "method", method, "urlTemplate", "/",
                     "displayName", display, "description", desc);
}

bool pt_import_graphql_convert(const char *text, size_t len, struct pt_import_doc *out, char *err,
                               size_t errlen)
{
    out->api = NULL;
    out->warnings = NULL;
    size_t k = 0;
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3))
        k = 3;
    while (k < len && (text[k] == ' ' || text[k] == '\t' || text[k] == '\n' || text[k] == '\r'))
        k++;
    char *sdl = NULL;
    const char *description = NULL;
    json_t *root = NULL;
    if (k < len && text[k] == '{') {
        /* an introspection result; "{" cannot start SDL */
        json_error_t je;
        root = json_loadb(text + k, len - k, JSON_REJECT_DUPLICATES, &je);
        if (!root) {
            snprintf(err, errlen, "line %d, column %d: %s", je.line, je.column, je.text);
            return false;
        }
        const json_t *schema = json_object_get(root, "__schema");
        const char *prefix = "";
        if (!schema) {
            const json_t *data = json_object_get(root, "data");
            schema = json_object_get(data, "__schema");
            prefix = "/data/__schema";
            if (!schema) {
                const json_t *errs = json_object_get(root, "errors");
                const char *m = json_string_value(json_object_get(json_array_get(errs, 0), "message"));
                if (m)
                    snprintf(err, errlen, "/errors/0/message: the introspection query failed: %.200s", m);
                else
                    snprintf(err, errlen, "/data/__schema: an introspection result is required");
                json_decref(root);
                return false;
            }
        }
        char e2[300];
        sdl = introspection_sdl(schema, e2, sizeof(e2));
        if (!sdl) {
            snprintf(err, errlen, "%s%s", prefix, e2);
            json_decref(root);
            return false;
        }
        description = json_string_value(json_object_get(schema, "description"));
    } else {
        sdl = malloc(len + 1);
        if (!sdl) {
            snprintf(err, errlen, "out of memory");
            return false;
        }
        memcpy(sdl, text, len);
        sdl[len] = '\0';
    }
    struct pt_graphql_error ge;
    struct pt_graphql_schema *s = pt_graphql_schema_parse(sdl, strlen(sdl), NULL, &ge);
    if (!s) {
        if (ge.line)
            snprintf(err, errlen, "line %d, column %d: %s", ge.line, ge.column, ge.message);
        else
            snprintf(err, errlen, "schema: %s", ge.message);
        if (root) /* our SDL was refused: still say so in terms of the document */
            snprintf(err + strlen(err), errlen - strlen(err),
                     " (in the SDL made from the introspection result)");
        free(sdl);
        json_decref(root);
        return false;
    }
    json_t *api = json_object();
    json_object_set_new(api, "apiType", json_string("graphql"));
    if (description)
        json_object_set_new(api, "description", json_string(description));
    json_t *schemas = json_array();
    json_array_append_new(
        schemas, json_pack("{s:s, s:s, s:s}", "id", "graphql", "contentType", CONTENT_TYPE, "value", sdl));
    json_object_set_new(api, "schemas", schemas);
    json_t *ops = json_array();
    json_array_append_new(ops, operation("graphql-post", "POST", "GraphQL (POST)",
                                         "A GraphQL request as {query, operationName, variables} in "
                                         "application/json, or the query alone in application/graphql."));
    json_array_append_new(ops, operation("graphql-get", "GET", "GraphQL (GET)",
                                         "A GraphQL query in the query string: ?query=...&operationName=..."
                                         "&variables=..."));
    json_object_set_new(api, "operations", ops);
    pt_graphql_schema_free(s);
    free(sdl);
    json_decref(root);
    if (!json_is_object(api) || json_array_size(ops) != 2 || json_array_size(schemas) != 1) {
        json_decref(api);
        snprintf(err, errlen, "out of memory");
        return false;
    }
    out->api = api;
    out->warnings = json_array();
    return true;
}
