/*
 * pt_import -- formats, guessing, dispatch, overlay and the configuration
 * file's `import:` (see pt_import.h).
 */
#include "conf/pt_import.h"

#include "base/pt_log.h"

#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* APIM's format names, and the converter each one goes to. */
enum conv { C_OPENAPI, C_WSDL, C_ODATA, C_GRAPHQL, C_PROTO };
static const struct {
    const char *name;
    enum conv conv;
    bool link;
} formats[] = {
    {"openapi", C_OPENAPI, false},
    {"openapi+json", C_OPENAPI, false},
    {"openapi-link", C_OPENAPI, true},
    {"openapi+json-link", C_OPENAPI, true},
    {"swagger-json", C_OPENAPI, false},
    {"swagger-link-json", C_OPENAPI, true},
    {"wsdl", C_WSDL, false},
    {"wsdl-link", C_WSDL, true},
    {"odata", C_ODATA, false},
    {"odata-link", C_ODATA, true},
    {"graphql", C_GRAPHQL, false},
    {"graphql-link", C_GRAPHQL, true},
    {"grpc", C_PROTO, false},
};

static int format_index(const char *f)
{
    for (size_t i = 0; f && i < PT_ARRAY_LEN(formats); i++)
        if (!strcmp(formats[i].name, f))
            return (int)i;
    return -1;
}

bool pt_import_known(const char *format)
{
    return format_index(format) >= 0;
}

bool pt_import_is_link(const char *format)
{
    int i = format_index(format);
    return i >= 0 && formats[i].link;
}

/* Does the text hold `word` followed (after blanks) by ':' at the start of a line? */
static bool yaml_key(const char *t, size_t len, const char *word)
{
    size_t wl = strlen(word);
    for (size_t i = 0; i + wl < len; i++) {
        if ((i == 0 || t[i - 1] == '\n') && !memcmp(t + i, word, wl)) {
            size_t k = i + wl;
            if (k < len && (t[k] == '"' || t[k] == '\''))
                k++;
            while (k < len && t[k] == ' ')
                k++;
            if (k < len && t[k] == ':')
                return true;
        }
    }
    return false;
}

static bool contains(const char *t, size_t len, const char *needle)
{
    return memmem(t, len, needle, strlen(needle)) != NULL;
}

/* Does a line of the text start with `word` followed by a blank or '=' (a .proto statement)? */
static bool proto_statement(const char *t, size_t len, const char *word)
{
    size_t wl = strlen(word);
    for (size_t i = 0; i + wl < len; i++)
        if ((i == 0 || t[i - 1] == '\n') && !memcmp(t + i, word, wl) &&
            (t[i + wl] == ' ' || t[i + wl] == '\t' || t[i + wl] == '='))
            return true;
    return false;
}

const char *pt_import_guess(const char *text, size_t len)
{
    size_t i = 0;
    if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3))
        i = 3;
    while (i < len && isspace((unsigned char)text[i]))
        i++;
    const char *t = text + i;
    size_t n = len - i;
    if (n && t[0] == '<') {
        if (contains(t, n, "schemas.microsoft.com/ado/") || contains(t, n, "docs.oasis-open.org/odata/") ||
            contains(t, n, "Edmx"))
            return "odata";
        if (contains(t, n, "schemas.xmlsoap.org/wsdl") || contains(t, n, "www.w3.org/ns/wsdl"))
            return "wsdl";
        return NULL;
    }
    if (n && t[0] == '{') {
        json_error_t je;
        json_t *j = json_loadb(t, n, JSON_DECODE_ANY, &je);
        const char *f = NULL;
        if (json_is_object(j)) {
            if (json_object_get(j, "swagger"))
                f = "swagger-json";
            else if (json_object_get(j, "openapi"))
                f = "openapi+json";
            else if (json_object_get(json_object_get(j, "data"), "__schema") ||
                     json_object_get(j, "__schema"))
                f = "graphql";
        }
        json_decref(j);
        return f;
    }
    if (yaml_key(t, n, "openapi") || yaml_key(t, n, "swagger"))
        return "openapi";
    if (proto_statement(t, n, "syntax") || proto_statement(t, n, "edition") ||
        (proto_statement(t, n, "service") && contains(t, n, "rpc ")))
        return "grpc";
    if (contains(t, n, "type Query") || contains(t, n, "schema {") || contains(t, n, "schema{") ||
        contains(t, n, "type Mutation") || contains(t, n, "type Subscription"))
        return "graphql";
    return NULL;
}

bool pt_import_convert(const struct pt_import_req *r, struct pt_import_doc *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const char *format = r->format && *r->format ? r->format : pt_import_guess(r->text, r->len);
    if (!format) {
        snprintf(err, errlen,
                 "the definition's format cannot be told from its content; name it with `format` "
                 "(openapi, openapi+json, swagger-json, wsdl, odata, graphql, grpc)");
        return false;
    }
    int fi = format_index(format);
    if (fi < 0) {
        snprintf(err, errlen,
                 "format '%s' is not one we import (openapi, openapi+json, openapi-link, openapi+json-link, "
                 "swagger-json, swagger-link-json, wsdl, wsdl-link, odata, odata-link, graphql, "
                 "graphql-link, grpc)",
                 format);
        return false;
    }
    if (r->len == 0) {
        snprintf(err, errlen, "the definition is empty");
        return false;
    }
    bool ok = false;
    switch (formats[fi].conv) {
    case C_OPENAPI:
        ok = pt_import_openapi_convert(r->text, r->len, r->base_dir, out, err, errlen);
        break;
    case C_WSDL:
        ok = pt_import_wsdl_convert(r->text, r->len, r->wsdl_service, r->wsdl_endpoint, out, err, errlen);
        break;
    case C_ODATA:
        ok = pt_import_odata_convert(r->text, r->len, out, err, errlen);
        break;
    case C_GRAPHQL:
        ok = pt_import_graphql_convert(r->text, r->len, out, err, errlen);
        break;
    case C_PROTO:
        ok = pt_import_proto_convert(r->text, r->len, out, err, errlen);
        break;
    }
    if (!ok) {
        pt_import_doc_clear(out);
        return false;
    }
    if (!out->warnings)
        out->warnings = json_array();
    return true;
}

void pt_import_doc_clear(struct pt_import_doc *d)
{
    json_decref(d->api);
    json_decref(d->warnings);
    d->api = d->warnings = NULL;
}

static json_t *find_by_id(json_t *list, const char *id)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        const char *vid = json_string_value(json_object_get(v, "id"));
        if (vid && !strcmp(vid, id))
            return v;
    }
    return NULL;
}

void pt_import_overlay(json_t *api, const json_t *fields)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)fields, k, v)
    {
        if (!strcmp(k, "operations") && json_is_array(v)) {
            json_t *ops = json_object_get(api, "operations");
            if (!json_is_array(ops)) {
                ops = json_array();
                json_object_set_new(api, "operations", ops);
            }
            size_t i;
            json_t *op;
            json_array_foreach(v, i, op)
            {
                const char *id = json_string_value(json_object_get(op, "id"));
                json_t *mine = id ? find_by_id(ops, id) : NULL;
                if (mine && json_is_object(op))
                    json_object_update(mine, op);
                else
                    json_array_append(ops, op);
            }
        } else
            json_object_set(api, k, v);
    }
}

/* ------------------------------------------------- definitions as text */

const struct pt_import_text pt_import_texts[] = {
    {"wsdl", "wsdl", "application/vnd.ms-azure-apim.wsdl+xml", "text/xml; charset=utf-8", ".wsdl", "WSDL"},
    {"graphql", "graphql", "application/vnd.ms-azure-apim.graphql.schema",
     "application/graphql; charset=utf-8", ".graphql", "GraphQL SDL"},
    {"grpc", "proto", PT_IMPORT_PROTO_CONTENT_TYPE, "text/plain; charset=utf-8", ".proto",
     "Protocol Buffers (.proto)"},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};

const struct pt_import_text *pt_import_text_find(const char *name)
{
    for (const struct pt_import_text *t = pt_import_texts; name && t->format; t++)
        if (!strcmp(t->format, name) || !strcmp(t->download, name))
            return t;
    return NULL;
}

const char *pt_import_text_of(const json_t *api, const struct pt_import_text *t)
{
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(api, "schemas"), i, s)
    {
        const char *ct = json_string_value(json_object_get(s, "contentType"));
        const char *text = json_string_value(json_object_get(s, "value"));
        if (ct && text && !strcmp(ct, t->schema_type))
            return text;
    }
    return NULL;
}

/* ------------------------------------------------ the configuration file */

static char *read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "'%s' is not a regular file", path);
        fclose(f);
        return NULL;
    }
    if ((uint64_t)st.st_size > max) {
        snprintf(err, errlen, "'%s' is %lld bytes; definitions are read up to %zu", path,
                 (long long)st.st_size, max);
        fclose(f);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (!buf || n != (size_t)st.st_size) {
        free(buf);
        snprintf(err, errlen, "cannot read '%s'", path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static const char *scalar(const struct pt_node *map, const char *key)
{
    const struct pt_node *v = map ? pt_node_get(map, key) : NULL;
    return v && v->kind == PT_N_SCALAR && !v->null ? v->str : NULL;
}

bool pt_import_expand(struct pt_cfctx *cx, struct pt_node *seq, int i)
{
    struct pt_node *api = seq->items[i], *imp = pt_node_get(api, "import");
    if (imp->kind != PT_N_MAP) {
        pt_node_error(cx->errs, imp, "import is a map {format, value | file, wsdlSelector}");
        return false;
    }
    for (int k = 0; k < imp->n; k++) {
        const char *key = pt_node_key(imp, k)->str;
        if (strcmp(key, "format") && strcmp(key, "value") && strcmp(key, "file") &&
            strcmp(key, "wsdlSelector")) {
            pt_node_error(cx->errs, pt_node_key(imp, k),
                          "unknown key '%s' in import (expected one of: format, value, file, wsdlSelector)",
                          key);
            return false;
        }
    }
    const char *format = scalar(imp, "format"), *value = scalar(imp, "value"), *file = scalar(imp, "file");
    if (!!value == !!file) {
        pt_node_error(cx->errs, imp,
                      "import needs exactly one of `value` (the definition) or `file` (a path)");
        return false;
    }
    if (format && !pt_import_known(format)) {
        pt_node_error(cx->errs, pt_node_get(imp, "format"),
                      "format '%s' is not one we import (openapi, openapi+json, swagger-json, wsdl, odata, "
                      "graphql, grpc)",
                      format);
        return false;
    }
    if (format && pt_import_is_link(format)) {
        pt_node_error(cx->errs, pt_node_get(imp, "format"),
                      "format '%s' fetches a URL, which the configuration file does not do; save the "
                      "definition next to the file and name it with `file`",
                      format);
        return false;
    }
    char err[1024] = "";
    char *owned = NULL, *dir = NULL;
    size_t len = value ? strlen(value) : 0;
    if (file) {
        char *path = file[0] == '/' || !cx->dir ? pt_pool_strdup(cx->pool, file)
                                                : pt_pool_printf(cx->pool, "%s/%s", cx->dir, file);
        owned = read_file(path, PT_IMPORT_MAX_FETCH, &len, err, sizeof(err));
        if (!owned) {
            pt_node_error(cx->errs, pt_node_get(imp, "file"), "import: %s", err);
            return false;
        }
        value = owned;
        char *tmp = strdup(path);
        dir = tmp ? pt_pool_strdup(cx->pool, dirname(tmp)) : NULL;
        free(tmp);
    }
    struct pt_node *sel = pt_node_get(imp, "wsdlSelector");
    struct pt_import_req r = {
        format, value, len, dir, scalar(sel, "wsdlServiceName"), scalar(sel, "wsdlEndpointName")};
    struct pt_import_doc d;
    bool ok = pt_import_convert(&r, &d, err, sizeof(err));
    free(owned);
    if (!ok) {
        pt_node_error(cx->errs, file ? pt_node_get(imp, "file") : imp, "import: %s", err);
        return false;
    }
    char where[512];
    pt_node_where(imp, where, sizeof(where));
    size_t w;
    json_t *msg;
    json_array_foreach(d.warnings, w, msg) pt_warn("%s: import: %s", where, json_string_value(msg));
    /* the keys written beside `import` win */
    json_t *mine = pt_node_to_json(api);
    json_object_del(mine, "import");
    pt_import_overlay(d.api, mine);
    json_decref(mine);
    struct pt_node *built = pt_node_from_json(cx->pool, d.api, seq, i);
    pt_import_doc_clear(&d);
    /* written keys keep their positions in the file */
    for (int k = 0; k < built->n; k++) {
        struct pt_node *orig = pt_node_get(api, pt_node_key(built, k)->str);
        if (orig && strcmp(pt_node_key(built, k)->str, "operations")) {
            built->items[2 * k] = pt_node_key(api, orig->index);
            built->items[2 * k + 1] = orig;
        }
    }
    built->file = api->file;
    built->line = api->line;
    built->col = api->col;
    seq->items[i] = built;
    return true;
}
