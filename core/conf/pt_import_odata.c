/*
 * pt_import_odata -- an OData service's $metadata (EDMX, OData v2/v3 and
 * v4) into an HTTP API (docs/import.md, "OData").
 *
 * For each entity set of the entity container: GET and POST on the
 * collection, GET, PATCH, PUT and DELETE by key ("/Set({key})", or
 * "/Set(A={A},B={B})" for a composite key); v4 function imports as GET
 * "/F(p={p})", action imports as POST "/A", bound functions and actions on
 * their entity sets; v2/v3 function imports with their m:HttpMethod and
 * their parameters as query parameters; and GET /$metadata.  The metadata
 * text is kept as the schema "odata".
 */
#include "conf/pt_import_odata.h"

#include "conf/pt_import_xml.h"

#include <libxml/tree.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_EDMX4 "http://docs.oasis-open.org/odata/ns/edmx"
#define NS_EDM4 "http://docs.oasis-open.org/odata/ns/edm"
#define NS_EDMX1 "http://schemas.microsoft.com/ado/2007/06/edmx"
#define NS_META "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"

#define MAX_OPERATIONS 5000
#define MAX_SCHEMAS 64
#define MAX_BASE_DEPTH 32

struct od {
    json_t *api, *ops, *warnings;
    char *err;
    size_t errlen;
    bool v4;
    xmlNodePtr schemas[MAX_SCHEMAS];
    int nschemas;
};

static bool fail(struct od *o, const xmlNode *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(struct od *o, const xmlNode *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pt_import_xml_vmessage(o->err, o->errlen, at, fmt, ap);
    va_end(ap);
    return false;
}

static void warn(struct od *o, const xmlNode *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void warn(struct od *o, const xmlNode *at, const char *fmt, ...)
{
    char buf[600];
    va_list ap;
    va_start(ap, fmt);
    pt_import_xml_vmessage(buf, sizeof(buf), at, fmt, ap);
    va_end(ap);
    json_array_append_new(o->warnings, json_string(buf));
}

/* An element named `local` in the EDM namespace of the document (any version's for v1-v3). */
static bool is_edm(const struct od *o, const xmlNode *n, const char *local)
{
    if (!n || n->type != XML_ELEMENT_NODE || strcmp((const char *)n->name, local) || !n->ns || !n->ns->href)
        return false;
    const char *ns = (const char *)n->ns->href;
    if (o->v4)
        return !strcmp(ns, NS_EDM4);
    return !strncmp(ns, "http://schemas.microsoft.com/ado/", 33) && strstr(ns, "/edm") != NULL;
}

static const char *attr(const xmlNode *n, const char *name)
{
    return pt_import_xml_attr(n, name);
}

/* An OData SimpleIdentifier that a URL template can hold as it is: ASCII letters, digits, '_' (names
   with other letters would need percent-encoding in the template: left out, with a warning). */
static bool simple_ident(const char *name)
{
    if (!name || !*name)
        return false;
    for (const unsigned char *s = (const unsigned char *)name; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

/* Finds the schema child `kind` named by a qualified name "Namespace.Name" or "Alias.Name". */
static xmlNodePtr lookup(const struct od *o, const char *kind, const char *qname, xmlNodePtr after)
{
    if (!qname)
        return NULL;
    const char *dot = strrchr(qname, '.');
    if (!dot)
        return NULL;
    size_t nsl = (size_t)(dot - qname);
    bool past = after == NULL;
    for (int i = 0; i < o->nschemas; i++) {
        const char *ns = attr(o->schemas[i], "Namespace"), *alias = attr(o->schemas[i], "Alias");
        bool hit = (ns && strlen(ns) == nsl && !strncmp(ns, qname, nsl)) ||
                   (alias && strlen(alias) == nsl && !strncmp(alias, qname, nsl));
        if (!hit)
            continue;
        for (xmlNodePtr c = pt_import_xml_elem(o->schemas[i]->children); c; c = pt_import_xml_elem(c->next)) {
            if (!past) {
                past = c == after;
                continue;
            }
            const char *name = attr(c, "Name");
            if (is_edm(o, c, kind) && name && !strcmp(name, dot + 1))
                return c;
        }
    }
    return NULL;
}

/* The schema namespace (not alias) a type belongs to, for URLs "Namespace.Function". */
static const char *namespace_of(xmlNodePtr n)
{
    for (xmlNodePtr p = n->parent; p; p = p->parent)
        if (p->type == XML_ELEMENT_NODE && !strcmp((const char *)p->name, "Schema"))
            return pt_import_xml_attr(p, "Namespace");
    return NULL;
}

/* Same type: compare "Q.Name" against an entity type node (by namespace or alias). */
static bool names_type(const char *qname, xmlNodePtr type)
{
    const char *dot = qname ? strrchr(qname, '.') : NULL;
    const char *name = attr(type, "Name");
    if (!dot || !name || strcmp(dot + 1, name))
        return false;
    size_t nsl = (size_t)(dot - qname);
    xmlNodePtr schema = type->parent;
    const char *ns = schema ? attr(schema, "Namespace") : NULL,
               *alias = schema ? attr(schema, "Alias") : NULL;
    return (ns && strlen(ns) == nsl && !strncmp(ns, qname, nsl)) ||
           (alias && strlen(alias) == nsl && !strncmp(alias, qname, nsl));
}

static const char *edm_type(const char *t)
{
    if (!t)
        return "string";
    if (!strcmp(t, "Edm.Int16") || !strcmp(t, "Edm.Int32") || !strcmp(t, "Edm.Int64") ||
        !strcmp(t, "Edm.Byte") || !strcmp(t, "Edm.SByte"))
        return "integer";
    if (!strcmp(t, "Edm.Decimal") || !strcmp(t, "Edm.Double") || !strcmp(t, "Edm.Single"))
        return "number";
    if (!strcmp(t, "Edm.Boolean"))
        return "boolean";
    return "string";
}

/* The property's type in an entity type or its bases. */
static const char *property_type(const struct od *o, xmlNodePtr type, const char *prop)
{
    for (int d = 0; type && d < MAX_BASE_DEPTH; d++) {
        for (xmlNodePtr c = pt_import_xml_elem(type->children); c; c = pt_import_xml_elem(c->next))
            if (is_edm(o, c, "Property") && attr(c, "Name") && !strcmp(attr(c, "Name"), prop))
                return attr(c, "Type");
        type = lookup(o, "EntityType", attr(type, "BaseType"), NULL);
    }
    return NULL;
}

/* Does a list of template parameters name `name` already? */
static bool has_param(const json_t *params, const char *name)
{
    size_t i;
    json_t *p;
    json_array_foreach(params, i, p)
    {
        if (!strcmp(json_string_value(json_object_get(p, "name")), name))
            return true;
    }
    return false;
}

/* The key properties of an entity type (or of its nearest base that has one): a template
   "(Id={Id},...)" or "({Id})" and template parameters; false when there is no key. */
static bool key_of(struct od *o, xmlNodePtr type, char *tmpl, size_t tlen, json_t *params)
{
    xmlNodePtr t = type;
    xmlNodePtr key = NULL;
    for (int d = 0; t && d < MAX_BASE_DEPTH && !key; d++) {
        for (xmlNodePtr c = pt_import_xml_elem(t->children); c && !key; c = pt_import_xml_elem(c->next))
            if (is_edm(o, c, "Key"))
                key = c;
        if (!key)
            t = lookup(o, "EntityType", attr(t, "BaseType"), NULL);
    }
    if (!key)
        return false;
    int n = 0;
    for (xmlNodePtr r = pt_import_xml_elem(key->children); r; r = pt_import_xml_elem(r->next))
        if (is_edm(o, r, "PropertyRef") && attr(r, "Name"))
            n++;
    if (n == 0 || n > 8)
        return false;
    size_t off = (size_t)snprintf(tmpl, tlen, "(");
    int i = 0;
    for (xmlNodePtr r = pt_import_xml_elem(key->children); r; r = pt_import_xml_elem(r->next)) {
        const char *name = is_edm(o, r, "PropertyRef") ? attr(r, "Name") : NULL;
        if (!name)
            continue;
        if (!simple_ident(name))
            return false; /* key aliases with paths ("Addr/Zip") are not routable */
        if (has_param(params, name))
            return false; /* the same property twice */
        if (n == 1)
            off += (size_t)snprintf(tmpl + off, off < tlen ? tlen - off : 0, "{%s}", name);
        else
            off += (size_t)snprintf(tmpl + off, off < tlen ? tlen - off : 0, "%s%s={%s}", i ? "," : "", name,
                                    name);
        i++;
        const char *pt = property_type(o, type, name);
        json_t *p = json_pack("{s:s, s:s, s:b}", "name", name, "type", edm_type(pt), "required", 1);
        if (pt)
            json_object_set_new(p, "description", json_sprintf("the key property %s (%s)", name, pt));
        json_array_append_new(params, p);
    }
    snprintf(tmpl + off, off < tlen ? tlen - off : 0, ")");
    return off + 1 < tlen;
}

static bool add_op(struct od *o, xmlNodePtr at, const char *method, const char *tmpl, const char *display,
                   json_t *tparams, json_t *qparams, int status, const char *rdesc, bool body)
{
    if (json_array_size(o->ops) >= MAX_OPERATIONS) {
        json_decref(tparams);
        json_decref(qparams);
        return fail(o, at, "more than %d operations", MAX_OPERATIONS);
    }
    size_t j;
    json_t *y;
    json_array_foreach(o->ops, j, y)
    {
        if (!strcmp(json_string_value(json_object_get(y, "method")), method) &&
            !strcmp(json_string_value(json_object_get(y, "urlTemplate")), tmpl)) {
            warn(o, at, "'%s' would be %s %s like '%s'; not imported", display, method, tmpl,
                 json_string_value(json_object_get(y, "displayName")));
            json_decref(tparams);
            json_decref(qparams);
            return true;
        }
    }
    char base[80], id[96];
    pt_import_xml_normalize(display, base, sizeof(base));
    if (!base[0])
        snprintf(base, sizeof(base), "operation");
    snprintf(id, sizeof(id), "%s", base);
    for (int k = 2; k < MAX_OPERATIONS + 2; k++) {
        bool taken = false;
        size_t i;
        json_t *x;
        json_array_foreach(o->ops, i, x)
        {
            if (!strcmp(json_string_value(json_object_get(x, "id")), id))
                taken = true;
        }
        if (!taken)
            break;
        snprintf(id, sizeof(id), "%.76s-%d", base, k);
    }
    json_t *op = json_pack("{s:s, s:s, s:s, s:s}", "id", id, "method", method, "urlTemplate", tmpl,
                           "displayName", display);
    if (!op) {
        json_decref(tparams);
        json_decref(qparams);
        return fail(o, at, "'%s' is not valid UTF-8", display);
    }
    if (tparams && json_array_size(tparams))
        json_object_set_new(op, "templateParameters", tparams);
    else
        json_decref(tparams);
    json_t *req = json_object();
    if (qparams && json_array_size(qparams))
        json_object_set_new(req, "queryParameters", qparams);
    else
        json_decref(qparams);
    if (body)
        json_object_set_new(req, "representations", json_pack("[{s:s}]", "contentType", "application/json"));
    if (json_object_size(req))
        json_object_set_new(op, "request", req);
    else
        json_decref(req);
    json_t *resp = json_pack("{s:i, s:s}", "statusCode", status, "description", rdesc);
    if (status != 204)
        json_object_set_new(resp, "representations",
                            json_pack("[{s:s}]", "contentType",
                                      !strcmp(tmpl, "/$metadata") ? "application/xml" : "application/json"));
    json_object_set_new(op, "responses", json_pack("[o]", resp));
    json_array_append_new(o->ops, op);
    return true;
}

static json_t *qparam(const char *name, const char *type, const char *desc)
{
    return json_pack("{s:s, s:s, s:b, s:s}", "name", name, "type", type, "required", 0, "description", desc);
}

static json_t *collection_query(const struct od *o)
{
    json_t *a = json_array();
    json_array_append_new(a, qparam("$filter", "string", "filter the items by a Boolean expression"));
    json_array_append_new(a, qparam("$select", "string", "the properties to return"));
    json_array_append_new(a, qparam("$expand", "string", "the related entities to include"));
    json_array_append_new(a, qparam("$orderby", "string", "the order of the items"));
    json_array_append_new(a, qparam("$top", "integer", "at most this many items"));
    json_array_append_new(a, qparam("$skip", "integer", "skip this many items"));
    if (o->v4) {
        json_array_append_new(a, qparam("$count", "boolean", "include the count of the items"));
        json_array_append_new(a, qparam("$search", "string", "items matching a free-text search"));
    } else
        json_array_append_new(a,
                              qparam("$inlinecount", "string", "allpages: include the count of the items"));
    return a;
}

static json_t *item_query(void)
{
    json_t *a = json_array();
    json_array_append_new(a, qparam("$select", "string", "the properties to return"));
    json_array_append_new(a, qparam("$expand", "string", "the related entities to include"));
    return a;
}

static bool entity_set(struct od *o, xmlNodePtr es)
{
    const char *name = attr(es, "Name");
    if (!name)
        return fail(o, es, "an EntitySet has no Name");
    if (!simple_ident(name)) {
        warn(o, es, "entity set '%s' has a name that is not an OData identifier; not imported", name);
        return true;
    }
    xmlNodePtr type = lookup(o, "EntityType", attr(es, "EntityType"), NULL);
    if (!type)
        warn(o, es, "entity set '%s': its entity type '%s' is not defined here; no operation by key", name,
             attr(es, "EntityType") ? attr(es, "EntityType") : "");
    char tmpl[600], disp[400];
    snprintf(tmpl, sizeof(tmpl), "/%s", name);
    snprintf(disp, sizeof(disp), "Get %s", name);
    if (!add_op(o, es, "GET", tmpl, disp, NULL, collection_query(o), 200, "the entities", false))
        return false;
    snprintf(disp, sizeof(disp), "Create %s", name);
    if (!add_op(o, es, "POST", tmpl, disp, NULL, NULL, 201, "the created entity", true))
        return false;
    char key[300];
    json_t *params = json_array();
    if (!type || !key_of(o, type, key, sizeof(key), params)) {
        if (type)
            warn(o, es, "entity set '%s' has no usable key; no operation by key", name);
        json_decref(params);
        return true;
    }
    snprintf(tmpl, sizeof(tmpl), "/%s%s", name, key);
    static const struct {
        const char *method, *verb, *desc;
        int status;
        bool body;
    } by_key[] = {
        {"GET", "Get %s by key", "the entity", 200, false},
        {"PATCH", "Update %s", "updated", 204, true},
        {"PUT", "Replace %s", "replaced", 204, true},
        {"DELETE", "Delete %s", "deleted", 204, false},
    };
    for (size_t i = 0; i < sizeof(by_key) / sizeof(by_key[0]); i++) {
        snprintf(disp, sizeof(disp), by_key[i].verb, name);
        if (!add_op(o, es, by_key[i].method, tmpl, disp, json_deep_copy(params), i == 0 ? item_query() : NULL,
                    by_key[i].status, by_key[i].desc, by_key[i].body)) {
            json_decref(params);
            return false;
        }
    }
    json_decref(params);
    return true;
}

static bool ident(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '.'))
            return false;
    return true;
}

/* "(a={a},b={b})" for a v4 function's parameters (skipping the first when bound), with template parameters.
 */
static bool fn_params(struct od *o, xmlNodePtr fn, bool bound, char *out, size_t outlen, json_t *tparams)
{
    size_t off = (size_t)snprintf(out, outlen, "(");
    int n = 0, skip = bound ? 1 : 0;
    for (xmlNodePtr p = pt_import_xml_elem(fn->children); p; p = pt_import_xml_elem(p->next)) {
        if (!is_edm(o, p, "Parameter"))
            continue;
        if (skip) {
            skip--;
            continue;
        }
        const char *name = attr(p, "Name");
        if (!ident(name) || strchr(name, '.') || ++n > 12 || has_param(tparams, name))
            return false; /* not a name a template can hold, too many, or one used already */
        off += (size_t)snprintf(out + off, off < outlen ? outlen - off : 0, "%s%s={%s}", n > 1 ? "," : "",
                                name, name);
        json_array_append_new(tparams, json_pack("{s:s, s:s, s:b}", "name", name, "type",
                                                 edm_type(attr(p, "Type")), "required", 1));
    }
    off += (size_t)snprintf(out + off, off < outlen ? outlen - off : 0, ")");
    return off < outlen;
}

/* A v4 function or action import (kind "Function"/"Action"). */
static bool import_v4(struct od *o, xmlNodePtr imp, bool action)
{
    const char *name = attr(imp, "Name");
    const char *target = attr(imp, action ? "Action" : "Function");
    if (!ident(name) || strchr(name, '.')) {
        warn(o, imp, "an %s import without a usable Name; not imported", action ? "action" : "function");
        return true;
    }
    char tmpl[800], disp[300];
    if (action) {
        snprintf(tmpl, sizeof(tmpl), "/%s", name);
        snprintf(disp, sizeof(disp), "%s", name);
        return add_op(o, imp, "POST", tmpl, disp, NULL, NULL, 200, "the action's result", true);
    }
    /* the first unbound overload */
    xmlNodePtr fn = NULL;
    for (xmlNodePtr f = lookup(o, "Function", target, NULL); f; f = lookup(o, "Function", target, f)) {
        const char *b = attr(f, "IsBound");
        if (!b || strcmp(b, "true")) {
            fn = f;
            break;
        }
    }
    json_t *tp = json_array();
    char params[600] = "()";
    if (!fn)
        warn(o, imp, "function import '%s': function '%s' is not defined here; imported without parameters",
             name, target ? target : "");
    else if (!fn_params(o, fn, false, params, sizeof(params), tp)) {
        warn(o, imp, "function import '%s' has parameters that cannot be a URL template; not imported", name);
        json_decref(tp);
        return true;
    }
    snprintf(tmpl, sizeof(tmpl), "/%s%s", name, params);
    snprintf(disp, sizeof(disp), "%s", name);
    return add_op(o, imp, "GET", tmpl, disp, tp, NULL, 200, "the function's result", false);
}

/* Bound v4 functions and actions, on each entity set of their binding type. */
static bool bound_ops(struct od *o, xmlNodePtr container)
{
    for (int i = 0; i < o->nschemas; i++)
        for (xmlNodePtr f = pt_import_xml_elem(o->schemas[i]->children); f; f = pt_import_xml_elem(f->next)) {
            bool action = is_edm(o, f, "Action");
            if (!action && !is_edm(o, f, "Function"))
                continue;
            const char *b = attr(f, "IsBound");
            if (!b || strcmp(b, "true"))
                continue;
            const char *name = attr(f, "Name");
            const char *ns = namespace_of(f);
            xmlNodePtr first = NULL;
            for (xmlNodePtr p = pt_import_xml_elem(f->children); p && !first; p = pt_import_xml_elem(p->next))
                if (is_edm(o, p, "Parameter"))
                    first = p;
            const char *bt = first ? attr(first, "Type") : NULL;
            if (!simple_ident(name) || !ident(ns) || !bt)
                continue;
            bool coll = !strncmp(bt, "Collection(", 11);
            char tname[300];
            snprintf(tname, sizeof(tname), "%s", coll ? bt + 11 : bt);
            if (coll && strlen(tname) && tname[strlen(tname) - 1] == ')')
                tname[strlen(tname) - 1] = '\0';
            for (xmlNodePtr es = pt_import_xml_elem(container->children); es;
                 es = pt_import_xml_elem(es->next)) {
                if (!is_edm(o, es, "EntitySet"))
                    continue;
                const char *sname = attr(es, "Name");
                xmlNodePtr et = lookup(o, "EntityType", attr(es, "EntityType"), NULL);
                if (!simple_ident(sname) || !et || !names_type(tname, et))
                    continue;
                char key[300] = "", params[600] = "", tmpl[1400], disp[600];
                json_t *tp = json_array();
                if (!coll && !key_of(o, et, key, sizeof(key), tp)) {
                    json_decref(tp);
                    continue;
                }
                if (!action && !fn_params(o, f, true, params, sizeof(params), tp)) {
                    warn(o, f, "function '%s' has parameters that cannot be a URL template; not imported",
                         name);
                    json_decref(tp);
                    continue;
                }
                snprintf(tmpl, sizeof(tmpl), "/%s%s/%s.%s%s", sname, key, ns, name, params);
                snprintf(disp, sizeof(disp), "%s %s", sname, name);
                if (!add_op(o, f, action ? "POST" : "GET", tmpl, disp, tp, NULL, 200,
                            action ? "the action's result" : "the function's result", action))
                    return false;
            }
        }
    return true;
}

/* A v2/v3 function import: its m:HttpMethod (GET by default), parameters in the query. */
static bool import_v2(struct od *o, xmlNodePtr imp)
{
    const char *name = attr(imp, "Name");
    if (!ident(name) || strchr(name, '.')) {
        warn(o, imp, "a function import without a usable Name; not imported");
        return true;
    }
    const char *method = pt_import_xml_nsattr(imp, NS_META, "HttpMethod");
    if (!method || !method[0])
        method = "GET";
    if (strcmp(method, "GET") && strcmp(method, "POST") && strcmp(method, "PUT") &&
        strcmp(method, "DELETE") && strcmp(method, "MERGE") && strcmp(method, "PATCH")) {
        warn(o, imp, "function import '%s' has the HTTP method '%s'; imported as GET", name, method);
        method = "GET";
    }
    json_t *qp = json_array();
    for (xmlNodePtr p = pt_import_xml_elem(imp->children); p; p = pt_import_xml_elem(p->next))
        if (is_edm(o, p, "Parameter") && attr(p, "Name")) {
            const char *nullable = attr(p, "Nullable");
            json_array_append_new(qp, json_pack("{s:s, s:s, s:b}", "name", attr(p, "Name"), "type",
                                                edm_type(attr(p, "Type")), "required",
                                                !(nullable && !strcmp(nullable, "true"))));
        }
    char tmpl[400];
    snprintf(tmpl, sizeof(tmpl), "/%s", name);
    return add_op(o, imp, method, tmpl, name, NULL, qp, 200, "the function's result", false);
}

bool pt_import_odata_convert(const char *text, size_t len, struct pt_import_doc *out, char *err,
                             size_t errlen)
{
    out->api = NULL;
    out->warnings = NULL;
    if (!errlen)
        return false;
    err[0] = '\0';
    xmlDocPtr doc = pt_import_xml_read(text, len, err, errlen);
    if (!doc)
        return false;
    struct od o = {.err = err, .errlen = errlen};
    o.api = json_pack("{s:s, s:[], s:[]}", "apiType", "http", "schemas", "operations");
    o.warnings = json_array();
    o.ops = json_object_get(o.api, "operations");
    xmlNodePtr root = xmlDocGetRootElement(doc);
    bool ok = false;
    xmlNodePtr ds = NULL, container = NULL;
    if (!o.api || !o.warnings) {
        fail(&o, NULL, "out of memory");
        goto done;
    }
    o.v4 = pt_import_xml_is(root, NS_EDMX4, "Edmx");
    if (!o.v4 && !pt_import_xml_is(root, NS_EDMX1, "Edmx")) {
        fail(&o, root, "the root element is '%s', not edmx:Edmx (an OData $metadata document)",
             (const char *)root->name);
        goto done;
    }
    for (xmlNodePtr c = pt_import_xml_elem(root->children); c && !ds; c = pt_import_xml_elem(c->next))
        if (pt_import_xml_is(c, o.v4 ? NS_EDMX4 : NS_EDMX1, "DataServices"))
            ds = c;
        else if (pt_import_xml_is(c, o.v4 ? NS_EDMX4 : NS_EDMX1, "Reference"))
            warn(&o, c, "edmx:Reference to '%s' is not followed: types defined there are unknown",
                 pt_import_xml_attr(c, "Uri") ? pt_import_xml_attr(c, "Uri") : "");
    if (!ds) {
        fail(&o, root, "edmx:Edmx has no edmx:DataServices");
        goto done;
    }
    for (xmlNodePtr s = pt_import_xml_elem(ds->children); s; s = pt_import_xml_elem(s->next))
        if (is_edm(&o, s, "Schema")) {
            if (o.nschemas >= MAX_SCHEMAS) {
                fail(&o, s, "more than %d schemas", MAX_SCHEMAS);
                goto done;
            }
            o.schemas[o.nschemas++] = s;
        }
    /* the entity container: the default one (v2 m:IsDefaultEntityContainer), else the first */
    int ncontainers = 0;
    for (int i = 0; i < o.nschemas; i++)
        for (xmlNodePtr c = pt_import_xml_elem(o.schemas[i]->children); c; c = pt_import_xml_elem(c->next))
            if (is_edm(&o, c, "EntityContainer")) {
                ncontainers++;
                const char *def = pt_import_xml_nsattr(c, NS_META, "IsDefaultEntityContainer");
                if (!container || (def && !strcmp(def, "true")))
                    container = c;
            }
    if (!container) {
        fail(&o, ds, "the metadata has no EntityContainer");
        goto done;
    }
    if (ncontainers > 1)
        warn(&o, container, "the metadata has %d entity containers; '%s' is imported", ncontainers,
             attr(container, "Name") ? attr(container, "Name") : "");
    if (attr(container, "Name"))
        json_object_set_new(o.api, "displayName", json_string(attr(container, "Name")));
    json_t *schema =
        json_pack("{s:s, s:s}", "id", "odata", "contentType", "application/vnd.ms-azure-apim.odata.schema");
    json_t *value = json_stringn(text, len);
    if (!value) {
        xmlChar *buf = NULL;
        int n = 0;
        xmlDocDumpMemoryEnc(doc, &buf, &n, "UTF-8");
        if (buf) {
            value = json_stringn((const char *)buf, (size_t)n);
            xmlFree(buf);
        }
    }
    if (!value) {
        json_decref(schema);
        fail(&o, NULL, "the document cannot be stored as UTF-8 text");
        goto done;
    }
    json_object_set_new(schema, "value", value);
    json_array_append_new(json_object_get(o.api, "schemas"), schema);

    if (!add_op(&o, root, "GET", "/$metadata", "Get $metadata", NULL, NULL, 200, "the service's metadata",
                false))
        goto done;
    for (xmlNodePtr c = pt_import_xml_elem(container->children); c; c = pt_import_xml_elem(c->next)) {
        bool step = true;
        if (is_edm(&o, c, "EntitySet"))
            step = entity_set(&o, c);
        else if (is_edm(&o, c, "FunctionImport"))
            step = o.v4 ? import_v4(&o, c, false) : import_v2(&o, c);
        else if (o.v4 && is_edm(&o, c, "ActionImport"))
            step = import_v4(&o, c, true);
        else if (is_edm(&o, c, "Singleton") && attr(c, "Name")) {
            char tmpl[300], disp[300];
            snprintf(tmpl, sizeof(tmpl), "/%s", attr(c, "Name"));
            snprintf(disp, sizeof(disp), "Get %s", attr(c, "Name"));
            step = simple_ident(attr(c, "Name"))
                       ? add_op(&o, c, "GET", tmpl, disp, NULL, item_query(), 200, "the singleton", false)
                       : true;
        }
        if (!step)
            goto done;
    }
    if (o.v4 && !bound_ops(&o, container))
        goto done;
    ok = true;
done:
    xmlFreeDoc(doc);
    if (!ok) {
        if (!err[0])
            snprintf(err, errlen, "out of memory");
        json_decref(o.api);
        json_decref(o.warnings);
        return false;
    }
    out->api = o.api;
    out->warnings = o.warnings;
    return true;
}
