/*
 * pt_export_openapi -- a stored API definition as OpenAPI 3.0.1 or Swagger 2.0.
 *
 * The inverse of pt_import_openapi as far as the stored shape allows:
 * templates give paths (a template's `name={name}` query parts become
 * required query parameters again), the API's JSON schemas give
 * components.schemas / definitions with every `#/definitions/X` or
 * `#/components/schemas/X` rewritten to the exported kind.  A template with
 * literal query parts, or a second operation on the same method and path,
 * goes into `x-ms-paths` (which the importer reads back).
 */
#include "conf/pt_export_openapi.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

struct ex {
    int version;
    const char *prefix;
    const json_t *api;
    json_t *named;
};

static bool starts(const char *s, const char *p)
{
    return !strncmp(s, p, strlen(p));
}

/* A copy of a schema with its local refs pointing to the exported kind. */
static json_t *rewrite(struct ex *x, const json_t *s, int depth)
{
    if (depth > 200)
        return json_null();
    if (json_is_object(s)) {
        json_t *o = json_object();
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)s, k, v)
        {
            if (!strcmp(k, "$ref") && json_is_string(v)) {
                const char *r = json_string_value(v);
                const char *rest = NULL;
                if (starts(r, "#/components/schemas/"))
                    rest = r + strlen("#/components/schemas/");
                else if (starts(r, "#/definitions/"))
                    rest = r + strlen("#/definitions/");
                else if (starts(r, "#/$defs/"))
                    rest = r + strlen("#/$defs/");
                if (rest) {
                    json_object_set_new(o, k, json_sprintf("%s%s", x->prefix, rest));
                    continue;
                }
            }
            json_object_set_new(o, k, rewrite(x, v, depth + 1));
        }
        return o;
    }
    if (json_is_array(s)) {
        json_t *a = json_array();
        for (size_t i = 0; i < json_array_size(s); i++)
            json_array_append_new(a, rewrite(x, json_array_get(s, i), depth + 1));
        return a;
    }
    return json_deep_copy(s);
}

static void add_named(struct ex *x, const json_t *map)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)map, k, v)
    {
        json_object_set_new(x->named, k, rewrite(x, v, 0));
    }
}

static const json_t *schema_entry(struct ex *x, const char *id)
{
    const json_t *schemas = json_object_get(x->api, "schemas");
    for (size_t i = 0; i < json_array_size(schemas); i++) {
        const json_t *s = json_array_get(schemas, i);
        if (!id || !*id ||
            !strcmp(json_string_value(json_object_get(s, "id")) ? json_string_value(json_object_get(s, "id"))
                                                                : "",
                    id))
            return s;
    }
    return NULL;
}

static void collect_schemas(struct ex *x)
{
    const json_t *schemas = json_object_get(x->api, "schemas");
    for (size_t i = 0; i < json_array_size(schemas); i++) {
        const json_t *s = json_array_get(schemas, i);
        const char *ct = json_string_value(json_object_get(s, "contentType"));
        const json_t *doc = json_object_get(s, "document");
        if (!ct || !json_is_object(doc))
            continue;
        if (!strcmp(ct, "application/vnd.oai.openapi.components+json"))
            add_named(x, json_object_get(json_object_get(doc, "components"), "schemas"));
        else if (!strcmp(ct, "application/vnd.ms-azure-apim.swagger.definitions+json"))
            add_named(x, json_object_get(doc, "definitions"));
        else if (!strcmp(ct, "application/schema+json")) {
            add_named(x, json_object_get(doc, "definitions"));
            add_named(x, json_object_get(doc, "$defs"));
            const char *id = json_string_value(json_object_get(s, "id"));
            if (id) {
                json_t *top = rewrite(x, doc, 0);
                json_object_del(top, "definitions");
                json_object_del(top, "$defs");
                json_object_del(top, "$schema");
                json_object_del(top, "$id");
                json_object_set_new(x->named, id, top);
            }
        }
    }
}

/* The schema of a parameter or representation, or NULL. */
static json_t *item_schema(struct ex *x, const json_t *o)
{
    const json_t *s = json_object_get(o, "schema");
    if (s)
        return rewrite(x, s, 0);
    const char *tn = json_string_value(json_object_get(o, "typeName"));
    const char *sid = json_string_value(json_object_get(o, "schemaId"));
    if (tn)
        return json_pack("{s:s+}", "$ref", x->prefix, tn);
    if (sid) {
        const json_t *e = schema_entry(x, sid);
        const char *ct = json_string_value(json_object_get(e, "contentType"));
        if (ct && !strcmp(ct, "application/schema+json"))
            return json_pack("{s:s+}", "$ref", x->prefix, sid);
    }
    return NULL;
}

/* The schema behind a $ref to a named schema (a few hops), for 2.0's inline parameters. */
static const json_t *follow(struct ex *x, const json_t *s)
{
    for (int i = 0; i < 8 && json_is_object(s); i++) {
        const char *r = json_string_value(json_object_get(s, "$ref"));
        if (!r || !starts(r, x->prefix))
            break;
        s = json_object_get(x->named, r + strlen(x->prefix));
    }
    return s;
}

static json_t *typed_default(const char *type, const char *v)
{
    if (type && (!strcmp(type, "integer") || !strcmp(type, "number"))) {
        char *end;
        double d = strtod(v, &end);
        if (*v && !*end && d == d && d > -9e15 && d < 9e15) /* finite, and exact as an integer */
            return !strcmp(type, "integer") && d == (double)(long long)d ? json_integer((long long)d)
                                                                         : json_real(d);
    }
    if (type && !strcmp(type, "boolean") && (!strcmp(v, "true") || !strcmp(v, "false")))
        return json_boolean(!strcmp(v, "true"));
    return json_string(v);
}

static json_t *param_schema(struct ex *x, const json_t *p)
{
    json_t *s = item_schema(x, p);
    if (s)
        return s;
    const char *type = json_string_value(json_object_get(p, "type"));
    s = json_pack("{s:s}", "type", type ? type : "string");
    if (type && !strcmp(type, "array"))
        json_object_set_new(s, "items", json_pack("{s:s}", "type", "string"));
    const json_t *vals = json_object_get(p, "values");
    if (json_is_array(vals) && json_array_size(vals))
        json_object_set_new(s, "enum", json_deep_copy(vals));
    const char *dv = json_string_value(json_object_get(p, "defaultValue"));
    if (dv)
        json_object_set_new(s, "default", typed_default(type, dv));
    return s;
}

static const char *const v2_keys[] = {"type",      "format",           "items",   "default",
                                      "maximum",   "exclusiveMaximum", "minimum", "exclusiveMinimum",
                                      "maxLength", "minLength",        "pattern", "maxItems",
                                      "minItems",  "uniqueItems",      "enum",    "multipleOf"};

static json_t *examples_out(const json_t *ex)
{
    json_t *o = json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)ex, k, v)
    {
        if (!json_is_object(v))
            continue;
        json_t *e = json_object();
        json_t *f;
        if ((f = json_object_get(v, "summary")))
            json_object_set(e, "summary", f);
        if ((f = json_object_get(v, "description")))
            json_object_set(e, "description", f);
        if ((f = json_object_get(v, "value")))
            json_object_set_new(e, "value", json_deep_copy(f));
        json_object_set_new(o, k, e);
    }
    return o;
}

static json_t *param_out(struct ex *x, const json_t *p, const char *in, bool required)
{
    const char *name = json_string_value(json_object_get(p, "name"));
    json_t *o = json_pack("{s:s,s:s}", "name", name ? name : "", "in", in);
    const json_t *d = json_object_get(p, "description");
    if (json_is_string(d))
        json_object_set(o, "description", (json_t *)d);
    if (required || !strcmp(in, "path"))
        json_object_set_new(o, "required", json_true());
    else
        json_object_set_new(o, "required", json_false());
    json_t *s = param_schema(x, p);
    if (x->version == 3) {
        json_object_set_new(o, "schema", s);
        const json_t *ex = json_object_get(p, "examples");
        if (json_is_object(ex) && json_object_size(ex))
            json_object_set_new(o, "examples", examples_out(ex));
    } else {
        const json_t *r = follow(x, s);
        for (size_t i = 0; i < PT_ARRAY_LEN(v2_keys); i++) {
            json_t *v = json_object_get(r, v2_keys[i]);
            if (v)
                json_object_set_new(o, v2_keys[i], json_deep_copy(v));
        }
        const char *t = json_string_value(json_object_get(o, "type"));
        if (!t || !strcmp(t, "object") || !strcmp(t, "null"))
            json_object_set_new(o, "type", json_string("string"));
        if (!strcmp(json_string_value(json_object_get(o, "type")), "array") && !json_object_get(o, "items"))
            json_object_set_new(o, "items", json_pack("{s:s}", "type", "string"));
        json_decref(s);
    }
    return o;
}

static const json_t *find_param(const json_t *list, const char *name)
{
    for (size_t i = 0; i < json_array_size(list); i++) {
        const char *n = json_string_value(json_object_get(json_array_get(list, i), "name"));
        if (n && !strcmp(n, name))
            return json_array_get(list, i);
    }
    return NULL;
}

static json_t *form_schema(struct ex *x, const json_t *forms)
{
    json_t *props = json_object(), *req = json_array();
    for (size_t i = 0; i < json_array_size(forms); i++) {
        const json_t *p = json_array_get(forms, i);
        const char *n = json_string_value(json_object_get(p, "name"));
        if (!n)
            continue;
        json_object_set_new(props, n, param_schema(x, p));
        if (json_is_true(json_object_get(p, "required")))
            json_array_append_new(req, json_string(n));
    }
    json_t *s = json_pack("{s:s,s:o}", "type", "object", "properties", props);
    if (json_array_size(req))
        json_object_set_new(s, "required", req);
    else
        json_decref(req);
    return s;
}

/* 3.0 content map from representations. */
static json_t *content_out(struct ex *x, const json_t *reps)
{
    json_t *content = json_object();
    for (size_t i = 0; i < json_array_size(reps); i++) {
        const json_t *r = json_array_get(reps, i);
        const char *ct = json_string_value(json_object_get(r, "contentType"));
        if (!ct)
            continue;
        json_t *m = json_object();
        json_t *s = item_schema(x, r);
        const json_t *forms = json_object_get(r, "formParameters");
        if (!s && json_array_size(forms))
            s = form_schema(x, forms);
        if (s)
            json_object_set_new(m, "schema", s);
        const json_t *ex = json_object_get(r, "examples");
        if (json_is_object(ex) && json_object_size(ex))
            json_object_set_new(m, "examples", examples_out(ex));
        json_object_set_new(content, ct, m);
    }
    return content;
}

static void add_unique(json_t *arr, const char *s)
{
    for (size_t i = 0; i < json_array_size(arr); i++)
        if (!strcmp(json_string_value(json_array_get(arr, i)), s))
            return;
    json_array_append_new(arr, json_string(s));
}

static json_t *responses_out(struct ex *x, const json_t *list, json_t *produces)
{
    json_t *rs = json_object();
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *r = json_array_get(list, i);
        const json_t *sc = json_object_get(r, "statusCode");
        char code[32];
        if (json_is_integer(sc))
            snprintf(code, sizeof(code), "%lld", (long long)json_integer_value(sc));
        else if (json_is_string(sc))
            snprintf(code, sizeof(code), "%s", json_string_value(sc));
        else
            continue;
        const char *d = json_string_value(json_object_get(r, "description"));
        json_t *o = json_pack("{s:s}", "description", d ? d : "");
        const json_t *hs = json_object_get(r, "headers");
        if (json_array_size(hs)) {
            json_t *ho = json_object();
            for (size_t j = 0; j < json_array_size(hs); j++) {
                const json_t *h = json_array_get(hs, j);
                const char *n = json_string_value(json_object_get(h, "name"));
                if (!n)
                    continue;
                json_t *p = param_out(x, h, "header", json_is_true(json_object_get(h, "required")));
                json_object_del(p, "name");
                json_object_del(p, "in");
                if (x->version == 2)
                    json_object_del(p, "required");
                json_object_set_new(ho, n, p);
            }
            json_object_set_new(o, "headers", ho);
        }
        const json_t *reps = json_object_get(r, "representations");
        if (json_array_size(reps)) {
            if (x->version == 3)
                json_object_set_new(o, "content", content_out(x, reps));
            else {
                json_t *exs = json_object();
                for (size_t j = 0; j < json_array_size(reps); j++) {
                    const json_t *rep = json_array_get(reps, j);
                    const char *ct = json_string_value(json_object_get(rep, "contentType"));
                    if (!ct)
                        continue;
                    add_unique(produces, ct);
                    json_t *s = item_schema(x, rep);
                    if (s && !json_object_get(o, "schema"))
                        json_object_set_new(o, "schema", s);
                    else
                        json_decref(s);
                    void *it = json_object_iter(json_object_get(rep, "examples"));
                    const json_t *v = it ? json_object_get(json_object_iter_value(it), "value") : NULL;
                    if (v)
                        json_object_set_new(exs, ct, json_deep_copy(v));
                }
                if (json_object_size(exs))
                    json_object_set_new(o, "examples", exs);
                else
                    json_decref(exs);
            }
        }
        json_object_set_new(rs, code, o);
    }
    if (!json_object_size(rs))
        json_object_set_new(rs, "default", json_pack("{s:s}", "description", "Default response"));
    return rs;
}

static json_t *operation_out(struct ex *x, const json_t *op, const char *path, const char *query, size_t qlen)
{
    json_t *o = json_object();
    const char *id = json_string_value(json_object_get(op, "id"));
    if (id)
        json_object_set_new(o, "operationId", json_string(id));
    const json_t *v = json_object_get(op, "displayName");
    if (json_is_string(v))
        json_object_set(o, "summary", (json_t *)v);
    v = json_object_get(op, "description");
    if (json_is_string(v))
        json_object_set(o, "description", (json_t *)v);
    const json_t *tps = json_object_get(op, "templateParameters");
    const json_t *req = json_object_get(op, "request");
    json_t *params = json_array();
    /* path parameters, in template order */
    for (const char *p = path; (p = strchr(p, '{'));) {
        const char *e = strchr(p, '}');
        if (!e)
            break;
        char name[256];
        snprintf(name, sizeof(name), "%.*s", (int)(e - p - 1), p + 1);
        const json_t *def = find_param(tps, name);
        json_t *stub = def ? NULL : json_pack("{s:s,s:s}", "name", name, "type", "string");
        json_array_append_new(params, param_out(x, def ? def : stub, "path", true));
        json_decref(stub);
        p = e + 1;
    }
    /* template query parameters: required query parameters */
    for (size_t i = 0; i < qlen;) {
        size_t j = i;
        while (j < qlen && query[j] != '&')
            j++;
        const char *eq = memchr(query + i, '=', j - i);
        if (eq && eq + 2 < query + j && eq[1] == '{' && query[j - 1] == '}') {
            char qname[256], pname[256];
            snprintf(qname, sizeof(qname), "%.*s", (int)(eq - query - i), query + i);
            snprintf(pname, sizeof(pname), "%.*s", (int)(query + j - 1 - eq - 2), eq + 2);
            const json_t *def = find_param(tps, pname);
            json_t *stub = json_pack("{s:s,s:s}", "name", qname, "type", "string");
            json_t *copy = def ? json_deep_copy(def) : NULL;
            if (copy)
                json_object_set_new(copy, "name", json_string(qname));
            json_array_append_new(params, param_out(x, copy ? copy : stub, "query", true));
            json_decref(stub);
            json_decref(copy);
        }
        i = j + 1;
    }
    const json_t *qps = json_object_get(req, "queryParameters");
    for (size_t i = 0; i < json_array_size(qps); i++) {
        const json_t *p = json_array_get(qps, i);
        json_array_append_new(params, param_out(x, p, "query", json_is_true(json_object_get(p, "required"))));
    }
    const json_t *hs = json_object_get(req, "headers");
    for (size_t i = 0; i < json_array_size(hs); i++) {
        const json_t *p = json_array_get(hs, i);
        json_array_append_new(params,
                              param_out(x, p, "header", json_is_true(json_object_get(p, "required"))));
    }
    const json_t *reps = json_object_get(req, "representations");
    const json_t *rd = json_object_get(req, "description");
    if (x->version == 3) {
        if (json_array_size(reps)) {
            json_t *rb = json_object();
            if (json_is_string(rd))
                json_object_set(rb, "description", (json_t *)rd);
            json_object_set_new(rb, "content", content_out(x, reps));
            json_object_set_new(o, "requestBody", rb);
        }
    } else if (json_array_size(reps)) {
        json_t *consumes = json_array();
        bool body = false, forms = false;
        for (size_t i = 0; i < json_array_size(reps); i++) {
            const json_t *r = json_array_get(reps, i);
            const char *ct = json_string_value(json_object_get(r, "contentType"));
            if (ct)
                add_unique(consumes, ct);
            const json_t *fp = json_object_get(r, "formParameters");
            if (json_array_size(fp) && !forms) {
                forms = true;
                for (size_t j = 0; j < json_array_size(fp); j++) {
                    const json_t *p = json_array_get(fp, j);
                    json_array_append_new(
                        params, param_out(x, p, "formData", json_is_true(json_object_get(p, "required"))));
                }
                continue;
            }
            json_t *s = item_schema(x, r);
            if (s && !body && !forms) {
                json_t *bp = json_pack("{s:s,s:s,s:o}", "name", "body", "in", "body", "schema", s);
                if (json_is_string(rd))
                    json_object_set(bp, "description", (json_t *)rd);
                json_array_append_new(params, bp);
                body = true;
            } else
                json_decref(s);
        }
        json_object_set_new(o, "consumes", consumes);
    }
    if (json_array_size(params))
        json_object_set_new(o, "parameters", params);
    else
        json_decref(params);
    json_t *produces = json_array();
    json_object_set_new(o, "responses", responses_out(x, json_object_get(op, "responses"), produces));
    if (x->version == 2 && json_array_size(produces))
        json_object_set_new(o, "produces", produces);
    else
        json_decref(produces);
    return o;
}

static void server_v2(json_t *doc, const char *url)
{
    const char *p = strstr(url, "://");
    if (!p) {
        /* a path only: the base path on whatever host the document is read from */
        size_t bl = strlen(url);
        while (bl > 1 && url[bl - 1] == '/')
            bl--;
        if (url[0] == '/' && bl > 1)
            json_object_set_new(doc, "basePath", json_stringn(url, bl));
        return;
    }
    json_object_set_new(doc, "schemes", json_pack("[s#]", url, (int)(p - url)));
    const char *h = p + 3, *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    json_object_set_new(doc, "host", json_stringn(h, hl));
    if (slash && slash[1]) {
        size_t bl = strlen(slash);
        while (bl > 1 && slash[bl - 1] == '/')
            bl--;
        json_object_set_new(doc, "basePath", json_stringn(slash, bl));
    }
}

json_t *pt_export_openapi_build(const json_t *api, int version, const char *server_url)
{
    if (!json_is_object(api) || (version != 2 && version != 3))
        return NULL;
    struct ex x = {version, version == 3 ? "#/components/schemas/" : "#/definitions/", api, json_object()};
    collect_schemas(&x);
    json_t *doc = json_object();
    if (version == 3)
        json_object_set_new(doc, "openapi", json_string("3.0.1"));
    else
        json_object_set_new(doc, "swagger", json_string("2.0"));
    const char *title = json_string_value(json_object_get(api, "displayName"));
    if (!title)
        title = json_string_value(json_object_get(api, "id"));
    json_t *info = json_pack("{s:s}", "title", title ? title : "API");
    const json_t *d = json_object_get(api, "description");
    if (json_is_string(d))
        json_object_set(info, "description", (json_t *)d);
    json_object_set_new(info, "version", json_string("1.0"));
    json_object_set_new(doc, "info", info);
    if (server_url && *server_url) {
        if (version == 3)
            json_object_set_new(doc, "servers", json_pack("[{s:s}]", "url", server_url));
        else
            server_v2(doc, server_url);
    }
    json_t *paths = json_object(), *xpaths = json_object();
    const json_t *ops = json_object_get(api, "operations");
    for (size_t i = 0; i < json_array_size(ops); i++) {
        const json_t *op = json_array_get(ops, i);
        const char *tmpl = json_string_value(json_object_get(op, "urlTemplate"));
        const char *method = json_string_value(json_object_get(op, "method"));
        if (!tmpl || !method)
            continue;
        char m[16];
        size_t ml = strlen(method);
        if (ml >= sizeof(m))
            continue;
        for (size_t k = 0; k <= ml; k++)
            m[k] = (char)tolower((unsigned char)method[k]);
        const char *q = strchr(tmpl, '?');
        size_t pl = q ? (size_t)(q - tmpl) : strlen(tmpl);
        const char *query = q ? q + 1 : "";
        size_t qlen = strlen(query);
        /* literal query parts (not name={param}) keep the template in x-ms-paths */
        char *key = malloc(strlen(tmpl) + 2);
        if (!key)
            break;
        memcpy(key, tmpl, pl);
        size_t kl = pl;
        bool literal = false;
        for (size_t a = 0; a < qlen;) {
            size_t b = a;
            while (b < qlen && query[b] != '&')
                b++;
            const char *eq = memchr(query + a, '=', b - a);
            if (!(eq && eq + 2 < query + b && eq[1] == '{' && query[b - 1] == '}')) {
                key[kl++] = literal ? '&' : '?';
                memcpy(key + kl, query + a, b - a);
                kl += b - a;
                literal = true;
            }
            a = b + 1;
        }
        key[kl] = '\0';
        if (!pl || tmpl[0] != '/') {
            memmove(key + 1, key, kl + 1);
            key[0] = '/';
        }
        json_t *target = literal ? xpaths : paths;
        json_t *item = json_object_get(target, key);
        if (item && json_object_get(item, m) && target == paths) {
            target = xpaths;
            item = json_object_get(target, key);
        }
        if (item && json_object_get(item, m)) {
            free(key);
            continue; /* the same method and path three times: cannot be written */
        }
        if (!item) {
            item = json_object();
            json_object_set_new(target, key, item);
        }
        char *path = strndup(key, strcspn(key, "?"));
        json_object_set_new(item, m, operation_out(&x, op, path ? path : "/", query, qlen));
        free(path);
        free(key);
    }
    json_object_set_new(doc, "paths", paths);
    if (json_object_size(xpaths))
        json_object_set_new(doc, "x-ms-paths", xpaths);
    else
        json_decref(xpaths);
    if (json_object_size(x.named)) {
        if (version == 3)
            json_object_set_new(doc, "components", json_pack("{s:O}", "schemas", x.named));
        else
            json_object_set_new(doc, "definitions", json_incref(x.named));
    }
    json_decref(x.named);
    return doc;
}
