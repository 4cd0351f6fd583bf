/*
 * defs.c -- the definitions the validation policies check against, and
 * their cache.
 *
 * The SDK hands out the matched operation's definition and the schemas as
 * JSON texts that live as long as the configuration generation, each at one
 * address (api->operation_definition, api->schema_definition).  A statement
 * instance lives exactly as long too, so each instance keeps a cache keyed
 * by those addresses: a text is parsed once, a schema compiled once
 * (pt_jschema is immutable once compiled, so many workers validate with it
 * at once), and free() releases everything with the instance.  The cache is
 * a small chained hash table behind one mutex, held for a lookup (tens of
 * nanoseconds) and, the first time something is needed, while it is built:
 * a worker that asks for what another is compiling waits for it instead of
 * compiling it twice.  Failures are cached too (a definition that does not
 * resolve is not retried per request).
 *
 * Resolution follows the stored API definition's rules (docs/validation.md):
 * a representation's or parameter's schema is its inline `schema` (whose
 * `#/...` references mean the document of `schemaId`, else of the API's
 * first schema), else `typeName` in the API schema `schemaId` (the first
 * when absent): components.schemas.T for OpenAPI components,
 * definitions.T for Swagger definitions, the document itself or its
 * definitions.T / $defs.T for a JSON Schema document.
 */
#include "validate.h"

#ifdef HAVE_PTL_XSD
#include "ptl_xsd.h"
#endif

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { T_OP = 1, T_DOC, T_JS, T_SYN, T_XSD, T_PLAN };

struct entry {
    int tag;
    const void *k1, *k2;
    unsigned flags;
    void *val;
    char *err; /* malloc'd; why val is NULL */
    struct entry *next;
};

struct defs {
    pthread_mutex_t mu;
    struct entry **b;
    size_t nb, n;
};

struct defs *defs_new(void)
{
    struct defs *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->nb = 16;
    d->b = calloc(d->nb, sizeof(*d->b));
    if (!d->b) {
        free(d);
        return NULL;
    }
    pthread_mutex_init(&d->mu, NULL);
    return d;
}

static void entry_free(struct entry *e)
{
    switch (e->tag) {
    case T_OP:
    case T_SYN:
        json_decref(e->val);
        break;
    case T_DOC: {
        struct defs_doc *doc = e->val;
        if (doc)
            json_decref(doc->obj);
        free(doc);
        break;
    }
    case T_JS:
        pt_jschema_free(e->val);
        break;
    case T_PLAN:
        free(e->val);
        break;
#ifdef HAVE_PTL_XSD
    case T_XSD:
        ptl_xsd_free(e->val);
        break;
#endif
    default:
        break;
    }
    free(e->err);
    free(e);
}

void defs_free(struct defs *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->nb; i++)
        for (struct entry *e = d->b[i], *nx; e; e = nx) {
            nx = e->next;
            entry_free(e);
        }
    free(d->b);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

static size_t hash(int tag, const void *k1, const void *k2, unsigned flags)
{
    uint64_t h = (uint64_t)(uintptr_t)k1 * 0x9E3779B97F4A7C15ull;
    h ^= ((uint64_t)(uintptr_t)k2 + (uint64_t)tag * 131 + flags) * 0xC2B2AE3D27D4EB4Full;
    return (size_t)(h ^ (h >> 29));
}

/* The entry for a key, under d->mu; NULL when absent. */
static struct entry *find(struct defs *d, int tag, const void *k1, const void *k2, unsigned flags)
{
    for (struct entry *e = d->b[hash(tag, k1, k2, flags) & (d->nb - 1)]; e; e = e->next)
        if (e->tag == tag && e->k1 == k1 && e->k2 == k2 && e->flags == flags)
            return e;
    return NULL;
}

/* Adds an entry, under d->mu; NULL when out of memory (val is then released by the caller). */
static struct entry *add(struct defs *d, int tag, const void *k1, const void *k2, unsigned flags, void *val,
                         const char *err)
{
    if (d->n >= d->nb * 2) {
        size_t nb = d->nb * 2;
        struct entry **b = calloc(nb, sizeof(*b));
        if (b) {
            for (size_t i = 0; i < d->nb; i++)
                for (struct entry *e = d->b[i], *nx; e; e = nx) {
                    nx = e->next;
                    size_t h = hash(e->tag, e->k1, e->k2, e->flags) & (nb - 1);
                    e->next = b[h];
                    b[h] = e;
                }
            free(d->b);
            d->b = b;
            d->nb = nb;
        }
    }
    struct entry *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    *e = (struct entry){tag, k1, k2, flags, val, err ? strdup(err) : NULL, NULL};
    size_t h = hash(tag, k1, k2, flags) & (d->nb - 1);
    e->next = d->b[h];
    d->b[h] = e;
    d->n++;
    return e;
}

const char *defs_str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* ------------------------------------------------------------ operations */

const json_t *defs_operation(struct defs *d, const struct pt_api *api, pt_call *call)
{
    pt_bytes t = api->operation_definition(call);
    if (!t.len)
        return NULL;
    pthread_mutex_lock(&d->mu);
    struct entry *e = find(d, T_OP, t.data, NULL, 0);
    if (!e) {
        json_t *j = json_loadb(t.data, t.len, 0, NULL);
        if (!json_is_object(j)) {
            json_decref(j);
            j = NULL;
        }
        e = add(d, T_OP, t.data, NULL, 0, j, NULL);
        if (!e)
            json_decref(j);
    }
    const json_t *r = e ? e->val : NULL;
    pthread_mutex_unlock(&d->mu);
    return r;
}

const json_t *defs_response(const json_t *op, int status)
{
    const json_t *list = json_object_get(op, "responses"), *def = NULL;
    size_t i;
    const json_t *r;
    json_array_foreach(list, i, r)
    {
        const json_t *sc = json_object_get(r, "statusCode");
        if (json_is_integer(sc) && json_integer_value(sc) == status)
            return r;
        if (json_is_string(sc)) {
            const char *s = json_string_value(sc);
            if (!strcmp(s, "default"))
                def = r;
            else if (atoi(s) == status && strlen(s) == 3)
                return r;
        }
    }
    return def;
}

/* --------------------------------------------------------------- schemas */

static int kind_of(const char *type)
{
    if (!strcmp(type, "application/vnd.oai.openapi.components+json"))
        return DEFS_K_OPENAPI;
    if (!strcmp(type, "application/vnd.ms-azure-apim.swagger.definitions+json"))
        return DEFS_K_SWAGGER;
    if (!strcmp(type, "application/schema+json") || !strcmp(type, "application/json") ||
        !strcmp(type, "json"))
        return DEFS_K_JSONSCHEMA;
    if (!strcmp(type, "application/vnd.ms-azure-apim.xsd+xml") || !strcmp(type, "xml"))
        return DEFS_K_XSD;
    if (!strcmp(type, "application/vnd.ms-azure-apim.wsdl+xml"))
        return DEFS_K_WSDL;
    return DEFS_K_OTHER;
}

const struct defs_doc *defs_doc(struct defs *d, const struct pt_api *api, pt_call *call, int scope,
                                pt_bytes id)
{
    pt_bytes t = api->schema_definition(call, scope, id);
    if (!t.len)
        return NULL;
    pthread_mutex_lock(&d->mu);
    struct entry *e = find(d, T_DOC, t.data, NULL, 0);
    if (!e) {
        struct defs_doc *doc = calloc(1, sizeof(*doc));
        json_t *j = doc ? json_loadb(t.data, t.len, 0, NULL) : NULL;
        if (doc && json_is_object(j)) {
            doc->obj = j;
            doc->id = defs_str(j, "id");
            const char *ty = json_string_value(json_object_get(j, "contentType"));
            doc->kind = kind_of(ty ? ty : defs_str(j, "schemaType"));
            const json_t *v = json_object_get(j, "value");
            if (json_is_string(v)) {
                doc->value = json_string_value(v);
                doc->vlen = json_string_length(v);
            }
            doc->doc = json_object_get(j, "document");
            if (doc->doc && !json_is_object(doc->doc) && !json_is_boolean(doc->doc))
                doc->doc = NULL;
        } else {
            json_decref(j);
            free(doc);
            doc = NULL;
        }
        e = add(d, T_DOC, t.data, NULL, 0, doc, NULL);
        if (!e && doc) {
            json_decref(doc->obj);
            free(doc);
        }
    }
    const struct defs_doc *r = e ? e->val : NULL;
    pthread_mutex_unlock(&d->mu);
    return r;
}

/* The flags a schema document's kind asks for. */
static unsigned kind_flags(const struct defs_doc *doc)
{
    unsigned f = PT_JSCHEMA_FORMATS;
    if (!doc)
        return f;
    if (doc->kind == DEFS_K_OPENAPI)
        f |= PT_JSCHEMA_OPENAPI;
    else if (doc->kind == DEFS_K_SWAGGER)
        f |= PT_JSCHEMA_DRAFT4;
    else if (doc->doc && strstr(defs_str(doc->doc, "$schema"), "draft-04"))
        f |= PT_JSCHEMA_DRAFT4;
    return f;
}

static bool is_schema(const json_t *s)
{
    return json_is_object(s) || json_is_boolean(s);
}

void defs_resolve(struct defs *d, const struct pt_api *api, pt_call *call, const json_t *holder,
                  struct defs_target *t)
{
    memset(t, 0, sizeof(*t));
    const json_t *inline_schema = json_object_get(holder, "schema");
    const char *sid = defs_str(holder, "schemaId"), *tn = defs_str(holder, "typeName");
    if (!is_schema(inline_schema))
        inline_schema = NULL;
    if (!inline_schema && !*sid && !*tn)
        return; /* nothing declared: nothing to check */
    const struct defs_doc *doc = defs_doc(d, api, call, PT_SCHEMA_API, (pt_bytes){sid, strlen(sid)});
    if (inline_schema) {
        if (*sid && !doc) {
            t->missing = "API's schema does not exist or it could not be resolved.";
            t->api_schema = true;
            return;
        }
        t->schema = inline_schema;
        t->root = doc && doc->doc ? doc->doc : NULL;
        t->flags = kind_flags(t->root ? doc : NULL);
        t->name = *tn ? tn : "schema";
        return;
    }
    t->name = *tn ? tn : *sid ? sid : "schema";
    if (!doc) {
        t->missing = "API's schema does not exist or it could not be resolved.";
        t->api_schema = true;
        return;
    }
    if (!doc->doc || !json_is_object(doc->doc)) {
        t->missing = "API's schema does not specify definitions.";
        t->api_schema = true;
        return;
    }
    const json_t *s = NULL;
    switch (doc->kind) {
    case DEFS_K_OPENAPI:
        s = *tn ? json_object_get(json_object_get(json_object_get(doc->doc, "components"), "schemas"), tn)
                : NULL;
        break;
    case DEFS_K_SWAGGER:
        s = *tn ? json_object_get(json_object_get(doc->doc, "definitions"), tn) : NULL;
        break;
    case DEFS_K_JSONSCHEMA:
        if (!*tn)
            s = doc->doc;
        else if (!(s = json_object_get(json_object_get(doc->doc, "definitions"), tn)))
            s = json_object_get(json_object_get(doc->doc, "$defs"), tn);
        break;
    default:
        t->missing = "API's schema does not specify definitions.";
        t->api_schema = true;
        return;
    }
    if (!is_schema(s)) {
        t->missing = "definition";
        return;
    }
    t->schema = s;
    t->root = doc->doc;
    t->flags = kind_flags(doc);
}

/* The value a "#/a/b" pointer names in root; NULL when absent. */
static const json_t *pointer(const json_t *root, const char *ref)
{
    if (ref[0] == '#')
        ref++;
    const json_t *cur = root;
    while (cur && *ref == '/') {
        ref++;
        char seg[256];
        size_t n = 0;
        for (; *ref && *ref != '/'; ref++) {
            char ch = *ref;
            if (ch == '~' && (ref[1] == '0' || ref[1] == '1'))
                ch = *++ref == '0' ? '~' : '/';
            if (n + 1 >= sizeof(seg))
                return NULL;
            seg[n++] = ch;
        }
        seg[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, seg);
        } else if (json_is_array(cur)) {
            char *end;
            unsigned long i = strtoul(seg, &end, 10);
            cur = *seg && !*end ? json_array_get(cur, i) : NULL;
        } else {
            cur = NULL;
        }
    }
    return *ref ? NULL : cur;
}

void defs_resolve_service(struct defs *d, const struct pt_api *api, pt_call *call, const char *id,
                          const char *ref, struct defs_target *t)
{
    memset(t, 0, sizeof(*t));
    t->name = ref && *ref ? ref : id;
    const struct defs_doc *doc = defs_doc(d, api, call, PT_SCHEMA_SERVICE, (pt_bytes){id, strlen(id)});
    if (!doc) {
        t->missing = "API's schema does not exist or it could not be resolved.";
        t->api_schema = true;
        return;
    }
    if (!doc->doc) {
        t->missing = "API's schema does not specify definitions.";
        t->api_schema = true;
        return;
    }
    const json_t *s = ref && *ref ? pointer(doc->doc, ref) : doc->doc;
    if (!is_schema(s)) {
        t->missing = "definition";
        return;
    }
    t->schema = s;
    t->root = doc->doc;
    t->flags = kind_flags(doc);
}

const struct pt_jschema *defs_compile(struct defs *d, const json_t *schema, const json_t *root,
                                      unsigned flags, const char **err)
{
    pthread_mutex_lock(&d->mu);
    struct entry *e = find(d, T_JS, schema, root, flags);
    if (!e) {
        char why[512];
        struct pt_jschema *s = pt_jschema_compile(schema, root, flags, why, sizeof(why));
        e = add(d, T_JS, schema, root, flags, s, s ? NULL : why);
        if (!e)
            pt_jschema_free(s);
    }
    const struct pt_jschema *r = e ? e->val : NULL;
    *err = e ? (e->err ? e->err : "") : "out of memory";
    pthread_mutex_unlock(&d->mu);
    return r;
}

const struct defs_plan *defs_plan(struct defs *d, const struct pt_api *api, pt_call *call, const void *holder,
                                  const char *service_id, const char *service_ref, unsigned add_flags)
{
    pthread_mutex_lock(&d->mu);
    struct entry *e = find(d, T_PLAN, holder, NULL, add_flags);
    pthread_mutex_unlock(&d->mu);
    if (e)
        return e->val;
    /* resolved and compiled outside the lock (both take it); a plan two workers made at once is kept once */
    struct defs_plan *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    struct defs_target t;
    if (service_id)
        defs_resolve_service(d, api, call, service_id, service_ref, &t);
    else
        defs_resolve(d, api, call, holder, &t);
    p->name = t.name;
    p->missing = t.missing;
    p->api_schema = t.api_schema;
    p->none = !t.missing && !t.schema;
    if (t.schema && !t.missing)
        p->js = defs_compile(d, t.schema, t.root, t.flags | add_flags, &p->err);
    pthread_mutex_lock(&d->mu);
    e = find(d, T_PLAN, holder, NULL, add_flags);
    if (!e) {
        e = add(d, T_PLAN, holder, NULL, add_flags, p, NULL);
        if (e)
            p = NULL;
    }
    pthread_mutex_unlock(&d->mu);
    free(p);
    return e ? e->val : NULL;
}

/* ------------------------------------------------------------------- XSD */

bool defs_have_xsd(void)
{
#ifdef HAVE_PTL_XSD
    return true;
#else
    return false;
#endif
}

const void *defs_xsd(struct defs *d, const char *const *texts, const size_t *lens, int n, const char **err)
{
#ifdef HAVE_PTL_XSD
    pthread_mutex_lock(&d->mu);
    struct entry *e = find(d, T_XSD, texts[0], NULL, (unsigned)n);
    if (!e) {
        char why[512];
        struct ptl_xsd *s = n == 1 ? ptl_xsd_compile(texts[0], lens[0], why, sizeof(why))
                                   : ptl_xsd_compile_set(texts, lens, n, why, sizeof(why));
        e = add(d, T_XSD, texts[0], NULL, (unsigned)n, s, s ? NULL : why);
        if (!e)
            ptl_xsd_free(s);
    }
    const void *r = e ? e->val : NULL;
    *err = e ? (e->err ? e->err : "") : "out of memory";
    pthread_mutex_unlock(&d->mu);
    return r;
#else
    (void)d, (void)texts, (void)lens, (void)n;
    *err = "XML schema validation is not available in this build";
    return NULL;
#endif
}

bool defs_xsd_validate(const void *xsd, const char *xml, size_t len, bool soap, char *msg, size_t msglen)
{
#ifdef HAVE_PTL_XSD
    return ptl_xsd_validate(xsd, xml, len, soap ? PTL_XSD_SOAP_BODY : PTL_XSD_DOCUMENT, msg, msglen);
#else
    (void)xsd, (void)xml, (void)len, (void)soap;
    snprintf(msg, msglen, "XML schema validation is not available in this build");
    return false;
#endif
}

/* ------------------------------------------------------------ parameters */

/* The declared type: the parameter's `type`, else its schema's. */
static const char *param_type(const json_t *param, const json_t *schema)
{
    const char *t = defs_str(param, "type");
    if (!*t && json_is_object(schema))
        t = defs_str(schema, "type");
    return t;
}

/* One scalar of the given type; NULL with *why. */
static json_t *scalar(const char *type, const char *s, size_t n, const char **why)
{
    char buf[64];
    if (!strcmp(type, "integer") || !strcmp(type, "number")) {
        if (n == 0 || n >= sizeof(buf)) {
            *why = n ? "The value is too long for a number." : "An empty value is not a number.";
            return NULL;
        }
        memcpy(buf, s, n);
        buf[n] = '\0';
        char *end;
        errno = 0;
        if (!strcmp(type, "integer")) {
            bool digits = true;
            for (size_t i = (buf[0] == '-' || buf[0] == '+'); i < n; i++)
                digits &= buf[i] >= '0' && buf[i] <= '9';
            long long v = strtoll(buf, &end, 10);
            if (!digits || n == (size_t)(buf[0] == '-' || buf[0] == '+') || *end || errno) {
                *why = "The value is not an integer.";
                return NULL;
            }
            return json_integer(v);
        }
        double v = strtod(buf, &end);
        if (*end || errno || !isfinite(v) || buf[0] == ' ' || !strncasecmp(buf, "0x", 2) ||
            !strncasecmp(buf + (buf[0] == '-' || buf[0] == '+'), "0x", 2) || strpbrk(buf, "nN")) {
            *why = "The value is not a number.";
            return NULL;
        }
        return json_real(v);
    }
    if (!strcmp(type, "boolean")) {
        if (n == 4 && !strncasecmp(s, "true", 4))
            return json_true();
        if (n == 5 && !strncasecmp(s, "false", 5))
            return json_false();
        *why = "The value is not a boolean (true or false).";
        return NULL;
    }
    json_t *j = json_stringn(s, n);
    if (!j)
        *why = "The value is not valid UTF-8.";
    return j;
}

json_t *defs_param_value(const json_t *param, const json_t *schema, pt_bytes text, const char **why)
{
    const char *type = param_type(param, schema);
    if (strcmp(type, "array"))
        return scalar(type, text.data, text.len, why);
    const char *it = json_is_object(schema) ? defs_str(json_object_get(schema, "items"), "type") : "";
    json_t *a = json_array();
    for (size_t i = 0; a && i <= text.len;) {
        size_t j = i;
        while (j < text.len && text.data[j] != ',')
            j++;
        json_t *v = scalar(it, text.data + i, j - i, why);
        if (!v || json_array_append_new(a, v)) {
            json_decref(a);
            return NULL;
        }
        i = j + 1;
    }
    return a;
}

/* {type, enum: values} for a parameter that declares no schema, built once. */
static const json_t *synthesized(struct defs *d, const json_t *param)
{
    pthread_mutex_lock(&d->mu);
    struct entry *e = find(d, T_SYN, param, NULL, 0);
    if (!e) {
        json_t *s = json_object();
        const char *type = defs_str(param, "type");
        const json_t *values = json_object_get(param, "values");
        if (*type && strcmp(type, "array") && strcmp(type, "object"))
            json_object_set_new(s, "type", json_string(type));
        if (json_is_array(values) && json_array_size(values)) {
            /* enum values are written as text; compare like with like */
            json_t *en = json_array();
            size_t i;
            const json_t *v;
            json_array_foreach(values, i, v)
            {
                const char *why;
                json_t *x = json_is_string(v) && *type
                                ? scalar(type, json_string_value(v), json_string_length(v), &why)
                                : NULL;
                json_array_append_new(en, x ? x : json_deep_copy(v));
            }
            if (!strcmp(type, "array")) {
                json_t *items = json_object();
                json_object_set_new(items, "enum", en);
                json_object_set_new(s, "type", json_string("array"));
                json_object_set_new(s, "items", items);
            } else {
                json_object_set_new(s, "enum", en);
            }
        }
        e = add(d, T_SYN, param, NULL, 0, s, NULL);
        if (!e)
            json_decref(s);
    }
    const json_t *r = e ? e->val : NULL;
    pthread_mutex_unlock(&d->mu);
    return r;
}

int defs_check_param(struct defs *d, const struct pt_api *api, pt_call *call, const json_t *param,
                     pt_bytes value, const char **msg, struct defs_target *t)
{
    *msg = NULL;
    defs_resolve(d, api, call, param, t);
    if (t->missing) {
        *msg = t->missing;
        return DEFS_P_MISSING;
    }
    if (!t->schema) {
        t->schema = synthesized(d, param);
        t->root = NULL;
        t->flags = PT_JSCHEMA_FORMATS;
        t->name = defs_str(param, "name");
        if (!t->schema)
            return DEFS_P_OK;
    }
    const char *why = NULL;
    json_t *v = defs_param_value(param, t->schema, value, &why);
    if (!v) {
        *msg = why ? why : "The value cannot be parsed.";
        return DEFS_P_PARSE;
    }
    const char *err;
    const struct pt_jschema *js = defs_compile(d, t->schema, t->root, t->flags, &err);
    if (!js) {
        json_decref(v);
        *msg = report_fmt(api, call, "The definition cannot be used: %s", err);
        return DEFS_P_ERROR;
    }
    struct pt_jschema_error e;
    bool ok = pt_jschema_validate(js, v, &e);
    json_decref(v);
    if (ok)
        return DEFS_P_OK;
    *msg = e.path[0] ? report_fmt(api, call, "%s Path: '%s'.", e.message, e.path)
                     : report_fmt(api, call, "%s", e.message);
    return DEFS_P_INVALID;
}
