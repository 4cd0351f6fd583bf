/*
 * pt_import_wsdl -- WSDL 1.1 and 2.0 into a SOAP pass-through API
 * (docs/import.md, "WSDL (SOAP pass-through)").
 *
 * One service and one of its SOAP ports (endpoints) are chosen; every
 * operation of the port's binding becomes a POST operation whose URL
 * template is APIM's "/?soapAction=ACTION".  The router matches query
 * constraints, not headers: for an API of apiType soap the gateway routes
 * with the query "soapAction=ACTION" made from the request's SOAPAction
 * header (SOAP 1.1) or the action parameter of its Content-Type (SOAP 1.2),
 * the action percent-encoded as pt_import_wsdl_action_query does here.  An
 * operation without an action gets "/" (it also takes requests whose action
 * names no operation).
 *
 * Like APIM, only document/literal is imported: rpc style, encoded use,
 * wsdl:import/include, xsd:import/include/redefine of another location and
 * messages of several parts are refused with the line they are on.
 */
#include "conf/pt_import_wsdl.h"

#include "conf/pt_import_xml.h"

#include <libxml/tree.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_WSDL11 "http://schemas.xmlsoap.org/wsdl/"
#define NS_SOAP11 "http://schemas.xmlsoap.org/wsdl/soap/"
#define NS_SOAP12 "http://schemas.xmlsoap.org/wsdl/soap12/"
#define NS_WSDL20 "http://www.w3.org/ns/wsdl"
#define NS_WSOAP "http://www.w3.org/ns/wsdl/soap"
#define NS_XSD "http://www.w3.org/2001/XMLSchema"

#define MAX_OPERATIONS 5000
#define MAX_SCHEMAS 64

struct named {
    const char *name;
    xmlNodePtr node;
    size_t seq; /* document order */
};

struct xsd_ref {
    const char *tns; /* "" for no target namespace */
    char id[16];
};

struct wsdl {
    xmlDocPtr doc;
    xmlNodePtr root;
    json_t *api, *warnings;
    char *err;
    size_t errlen;
    struct xsd_ref xsd[MAX_SCHEMAS];
    int nxsd;
    struct named *msgs, *types, *bindings; /* sorted by name: messages/interfaces, portTypes, bindings */
    size_t nmsgs, ntypes, nbindings;
};

static bool fail(struct wsdl *w, const xmlNode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool fail(struct wsdl *w, const xmlNode *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pt_import_xml_vmessage(w->err, w->errlen, at, fmt, ap);
    va_end(ap);
    return false;
}

static void warn(struct wsdl *w, const xmlNode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void warn(struct wsdl *w, const xmlNode *at, const char *fmt, ...)
{
    char buf[600];
    va_list ap;
    va_start(ap, fmt);
    pt_import_xml_vmessage(buf, sizeof(buf), at, fmt, ap);
    va_end(ap);
    json_array_append_new(w->warnings, json_string(buf));
}

static int named_cmp(const void *a, const void *b)
{
    const struct named *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

/* The top-level elements ns:local, sorted by name (duplicates: the first in document order wins). */
static struct named *index_of(struct wsdl *w, const char *ns, const char *local, size_t *n)
{
    size_t cap = 0, k = 0;
    struct named *v = NULL;
    for (xmlNodePtr c = pt_import_xml_elem(w->root->children); c; c = pt_import_xml_elem(c->next)) {
        if (!pt_import_xml_is(c, ns, local))
            continue;
        const char *name = pt_import_xml_attr(c, "name");
        if (!name)
            continue;
        if (k == cap) {
            cap = cap ? cap * 2 : 16;
            struct named *nv = realloc(v, cap * sizeof(*v));
            if (!nv) {
                free(v);
                *n = 0;
                return NULL;
            }
            v = nv;
        }
        v[k].name = name;
        v[k].node = c;
        v[k].seq = k;
        k++;
    }
    if (k)
        qsort(v, k, sizeof(*v), named_cmp); /* by name, then document order: the first one wins */
    for (size_t i = 1; i < k; i++)
        if (!strcmp(v[i].name, v[i - 1].name))
            warn(w, v[i].node, "a second %s named '%s'; the first one is used", local, v[i].name);
    *n = k;
    return v;
}

static xmlNodePtr find(const struct named *v, size_t n, const char *qname_local)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(v[mid].name, qname_local);
        if (c == 0) {
            while (mid > 0 && !strcmp(v[mid - 1].name, qname_local))
                mid--;
            return v[mid].node;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The local part of a QName attribute value. */
static const char *local_of(const char *qname)
{
    const char *c = qname ? strrchr(qname, ':') : NULL;
    return c ? c + 1 : qname;
}

/* ---------------------------------------------------------------- schemas */

static bool set_text(json_t *o, const char *key, const char *s, size_t n)
{
    json_t *v = json_stringn(s, n);
    if (!v)
        return false;
    json_object_set_new(o, key, v);
    return true;
}

/* The document as UTF-8 text: the input when it is UTF-8 already, else re-serialized. */
static json_t *doc_text(xmlDocPtr doc, const char *text, size_t len)
{
    json_t *v = json_stringn(text, len);
    if (v)
        return v;
    xmlChar *buf = NULL;
    int n = 0;
    xmlDocDumpMemoryEnc(doc, &buf, &n, "UTF-8");
    if (buf) {
        v = json_stringn((const char *)buf, (size_t)n);
        xmlFree(buf);
    }
    return v;
}

/* A standalone copy of an embedded xsd:schema: every namespace in scope where it stands is
   declared on the copy's root, since QName values (type="tns:T") use prefixes of the WSDL. */
static char *schema_text(xmlNodePtr schema, size_t *len)
{
    xmlDocPtr d = xmlNewDoc((const xmlChar *)"1.0");
    if (!d)
        return NULL;
    xmlNodePtr copy = xmlDocCopyNode(schema, d, 1);
    if (!copy) {
        xmlFreeDoc(d);
        return NULL;
    }
    xmlDocSetRootElement(d, copy);
    xmlNsPtr *list = xmlGetNsList(schema->doc, schema);
    for (int i = 0; list && list[i]; i++) {
        bool declared = false;
        for (xmlNsPtr x = copy->nsDef; x; x = x->next)
            if ((!x->prefix && !list[i]->prefix) ||
                (x->prefix && list[i]->prefix && xmlStrEqual(x->prefix, list[i]->prefix)))
                declared = true;
        if (!declared)
            xmlNewNs(copy, list[i]->href, list[i]->prefix);
    }
    if (list)
        xmlFree(list);
    xmlBufferPtr b = xmlBufferCreate();
    char *out = NULL;
    if (b && xmlNodeDump(b, d, copy, 0, 0) >= 0) {
        *len = (size_t)xmlBufferLength(b);
        out = malloc(*len + 1);
        if (out) {
            memcpy(out, xmlBufferContent(b), *len);
            out[*len] = '\0';
        }
    }
    if (b)
        xmlBufferFree(b);
    xmlFreeDoc(d);
    return out;
}

/* Refuses what points outside the document; records each embedded schema. */
static bool read_types(struct wsdl *w, const char *wsdl_ns, json_t *schemas)
{
    for (xmlNodePtr c = pt_import_xml_elem(w->root->children); c; c = pt_import_xml_elem(c->next)) {
        if (pt_import_xml_is(c, wsdl_ns, "import") || pt_import_xml_is(c, wsdl_ns, "include"))
            return fail(w, c,
                        "wsdl:%s is not supported (APIM refuses it too): put the %s document's content "
                        "in this one",
                        (const char *)c->name, (const char *)c->name);
        if (!pt_import_xml_is(c, wsdl_ns, "types"))
            continue;
        for (xmlNodePtr s = pt_import_xml_elem(c->children); s; s = pt_import_xml_elem(s->next)) {
            if (!pt_import_xml_is(s, NS_XSD, "schema")) {
                warn(w, s, "types holds a %s that is not an xsd:schema; ignored", (const char *)s->name);
                continue;
            }
            for (xmlNodePtr i = pt_import_xml_elem(s->children); i; i = pt_import_xml_elem(i->next)) {
                if (pt_import_xml_is(i, NS_XSD, "include") || pt_import_xml_is(i, NS_XSD, "redefine") ||
                    (pt_import_xml_is(i, NS_XSD, "import") && pt_import_xml_attr(i, "schemaLocation")))
                    return fail(w, i,
                                "xsd:%s of another document ('%s') is not supported (APIM refuses it too): "
                                "embed that schema in wsdl:types",
                                (const char *)i->name,
                                pt_import_xml_attr(i, "schemaLocation")
                                    ? pt_import_xml_attr(i, "schemaLocation")
                                    : "");
            }
            if (w->nxsd >= MAX_SCHEMAS)
                return fail(w, s, "more than %d embedded schemas", MAX_SCHEMAS);
            size_t len = 0;
            char *text = schema_text(s, &len);
            if (!text)
                return fail(w, s, "out of memory");
            struct xsd_ref *x = &w->xsd[w->nxsd];
            const char *tns = pt_import_xml_attr(s, "targetNamespace");
            x->tns = tns ? tns : "";
            if (w->nxsd == 0)
                snprintf(x->id, sizeof(x->id), "xsd");
            else
                snprintf(x->id, sizeof(x->id), "xsd-%d", w->nxsd + 1);
            w->nxsd++;
            json_t *o =
                json_pack("{s:s, s:s}", "id", x->id, "contentType", "application/vnd.ms-azure-apim.xsd+xml");
            bool ok = set_text(o, "value", text, len);
            free(text);
            if (!ok) {
                json_decref(o);
                return fail(w, s, "the schema is not valid UTF-8 text");
            }
            json_array_append_new(schemas, o);
        }
    }
    return true;
}

static const char *schema_for(const struct wsdl *w, const char *ns)
{
    for (int i = 0; i < w->nxsd; i++)
        if (!strcmp(w->xsd[i].tns, ns ? ns : ""))
            return w->xsd[i].id;
    return NULL;
}

/* ------------------------------------------------------------- operations */

/* Appends an action to a URL template's query, percent-encoding what the router or a query string
   would read otherwise ('%', '&', '#', '+', braces, spaces, controls and non-ASCII bytes). */
size_t pt_import_wsdl_action_query(const char *action, size_t len, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)action[i];
        bool keep = c > 0x20 && c < 0x7f && !strchr("%&#+{}", c);
        if (keep) {
            if (out && n + 1 < outlen)
                out[n] = (char)c;
            n++;
        } else {
            if (out && n + 3 < outlen) {
                out[n] = '%';
                out[n + 1] = hex[c >> 4];
                out[n + 2] = hex[c & 15];
            }
            n += 3;
        }
    }
    if (out && outlen)
        out[n < outlen ? n : outlen - 1] = '\0';
    return n;
}

/* A representation for an element QName (an element="" or part's element), or NULL for none. */
static json_t *representation(struct wsdl *w, xmlNodePtr at, const char *qname, bool soap12)
{
    json_t *r = json_pack("{s:s}", "contentType", soap12 ? "application/soap+xml" : "text/xml");
    if (!qname || qname[0] == '#') /* WSDL 2.0's #any, #none, #other */
        return r;
    const char *ns, *local;
    if (!pt_import_xml_qname(at, qname, &ns, &local)) {
        warn(w, at, "the prefix of '%s' is not declared; the message's element is left out", qname);
        return r;
    }
    const char *sid = schema_for(w, ns);
    if (sid)
        json_object_set_new(r, "schemaId", json_string(sid));
    else
        warn(w, at, "no embedded schema has the target namespace '%s' of element '%s'", ns ? ns : "", local);
    json_object_set_new(r, "typeName", json_string(local));
    return r;
}

/* Ids: normalized names, "-2", "-3"... for repeats. */
static void unique_id(json_t *ops, const char *name, char *id, size_t idlen)
{
    char base[80];
    pt_import_xml_normalize(name, base, sizeof(base));
    if (!base[0])
        snprintf(base, sizeof(base), "operation");
    snprintf(id, idlen, "%s", base);
    for (int k = 2; k < MAX_OPERATIONS + 2; k++) {
        bool taken = false;
        size_t i;
        json_t *o;
        json_array_foreach(ops, i, o)
        {
            if (!strcmp(json_string_value(json_object_get(o, "id")), id))
                taken = true;
        }
        if (!taken)
            return;
        snprintf(id, idlen, "%.76s-%d", base, k);
    }
}

/* Adds an operation; action NULL or "" = none. */
static bool add_operation(struct wsdl *w, xmlNodePtr at, const char *name, const char *doc,
                          const char *action, json_t *request_rep, json_t *response_rep, json_t *fault_rep,
                          const char *faults)
{
    json_t *ops = json_object_get(w->api, "operations");
    if (json_array_size(ops) >= MAX_OPERATIONS) {
        json_decref(request_rep);
        json_decref(response_rep);
        json_decref(fault_rep);
        return fail(w, at, "more than %d operations", MAX_OPERATIONS);
    }
    char tmpl[2100];
    const char *action_c = action ? action : "";
    size_t need = pt_import_wsdl_action_query(action_c, strlen(action_c), NULL, 0);
    if (!action_c[0])
        snprintf(tmpl, sizeof(tmpl), "/");
    else if (need + 13 >= sizeof(tmpl)) {
        warn(w, at, "operation '%s': its soapAction is longer than 2000 characters; not imported", name);
        json_decref(request_rep);
        json_decref(response_rep);
        json_decref(fault_rep);
        return true;
    } else {
        memcpy(tmpl, "/?soapAction=", 13);
        pt_import_wsdl_action_query(action_c, strlen(action_c), tmpl + 13, sizeof(tmpl) - 13);
    }
    size_t i;
    json_t *o;
    json_array_foreach(ops, i, o)
    {
        if (!strcmp(json_string_value(json_object_get(o, "urlTemplate")), tmpl)) {
            if (action_c[0])
                warn(w, at,
                     "operation '%s' has the same soapAction '%s' as operation '%s': requests cannot tell "
                     "them "
                     "apart, so it is not imported",
                     name, action_c, json_string_value(json_object_get(o, "displayName")));
            else
                warn(w, at,
                     "operation '%s' has no soapAction, nor has operation '%s': requests cannot tell them "
                     "apart, "
                     "so it is not imported",
                     name, json_string_value(json_object_get(o, "displayName")));
            json_decref(request_rep);
            json_decref(response_rep);
            json_decref(fault_rep);
            return true;
        }
    }
    char id[96];
    unique_id(ops, name, id, sizeof(id));
    json_t *op = json_pack("{s:s, s:s, s:s, s:s}", "id", id, "method", "POST", "urlTemplate", tmpl,
                           "displayName", name);
    if (!op)
        return fail(w, at, "operation '%s': its name is not valid UTF-8", name);
    if (doc)
        json_object_set_new(op, "description", json_string(doc));
    json_t *req = json_object();
    json_object_set_new(req, "representations", json_pack("[o]", request_rep));
    json_object_set_new(op, "request", req);
    json_t *resps = json_array();
    if (response_rep)
        json_array_append_new(resps,
                              json_pack("{s:i, s:[o]}", "statusCode", 200, "representations", response_rep));
    if (fault_rep) {
        json_t *f = json_pack("{s:i, s:[o]}", "statusCode", 500, "representations", fault_rep);
        if (faults)
            json_object_set_new(f, "description", json_string(faults));
        json_array_append_new(resps, f);
    }
    json_object_set_new(op, "responses", resps);
    json_array_append_new(ops, op);
    return true;
}

/* ------------------------------------------------------------------ 1.1 */

/* The element of a WSDL 1.1 message for a binding's input or output (bio: soap:body's parent).
 *qname NULL when the message has no part; false after an error. */
static bool message_element(struct wsdl *w, xmlNodePtr io, xmlNodePtr bio, const char **qname,
                            xmlNodePtr *where)
{
    *qname = NULL;
    *where = io;
    const char *mq = pt_import_xml_attr(io, "message");
    if (!mq)
        return fail(w, io, "%s has no message attribute", (const char *)io->name);
    xmlNodePtr m = find(w->msgs, w->nmsgs, local_of(mq));
    if (!m)
        return fail(w, io, "message '%s' is not defined in this document", mq);
    const char *only = NULL; /* soap:body parts="..." */
    for (xmlNodePtr b = bio ? pt_import_xml_elem(bio->children) : NULL; b; b = pt_import_xml_elem(b->next))
        if (pt_import_xml_is(b, NS_SOAP11, "body") || pt_import_xml_is(b, NS_SOAP12, "body")) {
            const char *use = pt_import_xml_attr(b, "use");
            if (use && !strcmp(use, "encoded"))
                return fail(w, b, "soap:body use=\"encoded\" is not supported: only document/literal is");
            only = pt_import_xml_attr(b, "parts");
        }
    xmlNodePtr part = NULL;
    int nparts = 0;
    for (xmlNodePtr p = pt_import_xml_elem(m->children); p; p = pt_import_xml_elem(p->next)) {
        if (!pt_import_xml_is(p, NS_WSDL11, "part"))
            continue;
        const char *pn = pt_import_xml_attr(p, "name");
        if (only && only[0]) {
            /* parts is a list of names; keep those listed */
            bool listed = false;
            size_t pl = pn ? strlen(pn) : 0;
            for (const char *s = only; pn && *s;) {
                while (*s == ' ')
                    s++;
                size_t l = strcspn(s, " ");
                if (l == pl && !strncmp(s, pn, l))
                    listed = true;
                s += l;
            }
            if (!listed)
                continue;
        }
        nparts++;
        if (!part)
            part = p;
    }
    if (nparts > 1)
        return fail(w, m, "message '%s' has %d parts: messages of several parts are not supported",
                    local_of(mq), nparts);
    if (!part)
        return true;
    const char *el = pt_import_xml_attr(part, "element");
    if (!el) {
        const char *type = pt_import_xml_attr(part, "type");
        warn(
            w, part,
            "part '%s' of message '%s' names a type ('%s'), not an element: the body cannot be described for "
            "document/literal",
            pt_import_xml_attr(part, "name") ? pt_import_xml_attr(part, "name") : "", local_of(mq),
            type ? type : "");
        return true;
    }
    *qname = el;
    *where = part; /* its prefix resolves where the part stands */
    return true;
}

static xmlNodePtr child(xmlNodePtr n, const char *ns, const char *local)
{
    for (xmlNodePtr c = pt_import_xml_elem(n->children); c; c = pt_import_xml_elem(c->next))
        if (pt_import_xml_is(c, ns, local))
            return c;
    return NULL;
}

static bool is_soap_port11(xmlNodePtr port, bool *soap12)
{
    if (child(port, NS_SOAP11, "address")) {
        *soap12 = false;
        return true;
    }
    if (child(port, NS_SOAP12, "address")) {
        *soap12 = true;
        return true;
    }
    return false;
}

static bool is_soap_endpoint20(struct wsdl *w, xmlNodePtr ep)
{
    const char *b = pt_import_xml_attr(ep, "binding");
    xmlNodePtr bn = b ? find(w->bindings, w->nbindings, local_of(b)) : NULL;
    const char *type = bn ? pt_import_xml_attr(bn, "type") : NULL;
    return type && !strcmp(type, NS_WSOAP);
}

/* Picks the service and the port/endpoint (WSDL 1.1 "port", 2.0 "endpoint"). */
static bool pick(struct wsdl *w, const char *wsdl_ns, const char *port_name, const char *service,
                 const char *endpoint, xmlNodePtr *svc_out, xmlNodePtr *port_out)
{
    xmlNodePtr svc = NULL;
    int nsvc = 0;
    char names[512] = "";
    bool v20 = !strcmp(wsdl_ns, NS_WSDL20);
    for (xmlNodePtr c = pt_import_xml_elem(w->root->children); c; c = pt_import_xml_elem(c->next)) {
        if (!pt_import_xml_is(c, wsdl_ns, "service"))
            continue;
        const char *name = pt_import_xml_attr(c, "name");
        nsvc++;
        size_t l = strlen(names);
        snprintf(names + l, sizeof(names) - l, "%s'%s'", l ? ", " : "", name ? name : "");
        if (service) {
            if (name && !strcmp(name, service) && !svc)
                svc = c;
            continue;
        }
        if (!svc) {
            bool has_soap = false, s12;
            for (xmlNodePtr p = pt_import_xml_elem(c->children); p && !has_soap;
                 p = pt_import_xml_elem(p->next))
                if (pt_import_xml_is(p, wsdl_ns, port_name))
                    has_soap = v20 ? is_soap_endpoint20(w, p) : is_soap_port11(p, &s12);
            if (has_soap)
                svc = c;
        }
    }
    if (nsvc == 0)
        return fail(w, w->root, "the document defines no service");
    if (!svc) {
        if (service)
            return fail(w, w->root, "no service is named '%s'; the document has %s", service, names);
        return fail(w, w->root, "no service has a SOAP %s; the document has %s", port_name, names);
    }
    if (!service && nsvc > 1)
        warn(w, svc, "the document has %d services (%s); '%s' is imported (choose another by its name)", nsvc,
             names, pt_import_xml_attr(svc, "name") ? pt_import_xml_attr(svc, "name") : "");
    xmlNodePtr port = NULL;
    int nports = 0, nsoap = 0;
    names[0] = '\0';
    for (xmlNodePtr p = pt_import_xml_elem(svc->children); p; p = pt_import_xml_elem(p->next)) {
        if (!pt_import_xml_is(p, wsdl_ns, port_name))
            continue;
        bool s12;
        bool soap = v20 ? is_soap_endpoint20(w, p) : is_soap_port11(p, &s12);
        const char *name = pt_import_xml_attr(p, "name");
        nports++;
        size_t l = strlen(names);
        snprintf(names + l, sizeof(names) - l, "%s'%s'", l ? ", " : "", name ? name : "");
        if (endpoint) {
            if (name && !strcmp(name, endpoint) && !port) {
                if (!soap)
                    return fail(w, p, "%s '%s' is not a SOAP %s", port_name, endpoint, port_name);
                port = p;
            }
            continue;
        }
        if (soap) {
            nsoap++;
            if (!port)
                port = p;
        }
    }
    if (!port) {
        if (endpoint)
            return fail(w, svc, "service '%s' has no %s named '%s'; it has %s",
                        pt_import_xml_attr(svc, "name") ? pt_import_xml_attr(svc, "name") : "", port_name,
                        endpoint, names);
        return fail(w, svc, "service '%s' has no SOAP %s",
                    pt_import_xml_attr(svc, "name") ? pt_import_xml_attr(svc, "name") : "", port_name);
    }
    if (!endpoint && nsoap > 1)
        warn(w, port, "service '%s' has %d SOAP %ss (%s); '%s' is imported (choose another by its name)",
             pt_import_xml_attr(svc, "name") ? pt_import_xml_attr(svc, "name") : "", nsoap, port_name, names,
             pt_import_xml_attr(port, "name") ? pt_import_xml_attr(port, "name") : "");
    *svc_out = svc;
    *port_out = port;
    return true;
}

static xmlNodePtr find_child_named(xmlNodePtr n, const char *ns, const char *local, const char *name)
{
    for (xmlNodePtr c = pt_import_xml_elem(n->children); c; c = pt_import_xml_elem(c->next))
        if (pt_import_xml_is(c, ns, local)) {
            const char *nm = pt_import_xml_attr(c, "name");
            if (nm && !strcmp(nm, name))
                return c;
        }
    return NULL;
}

static bool convert11(struct wsdl *w, const char *service, const char *endpoint)
{
    w->msgs = index_of(w, NS_WSDL11, "message", &w->nmsgs);
    w->types = index_of(w, NS_WSDL11, "portType", &w->ntypes);
    w->bindings = index_of(w, NS_WSDL11, "binding", &w->nbindings);
    xmlNodePtr svc, port;
    if (!pick(w, NS_WSDL11, "port", service, endpoint, &svc, &port))
        return false;
    bool soap12 = false;
    is_soap_port11(port, &soap12);
    const char *soap_ns = soap12 ? NS_SOAP12 : NS_SOAP11;
    xmlNodePtr addr = child(port, soap_ns, "address");
    const char *loc = addr ? pt_import_xml_attr(addr, "location") : NULL;
    if (loc && loc[0])
        json_object_set_new(w->api, "serviceUrl", json_string(loc));
    else
        warn(w, addr ? addr : port, "the port has no soap:address location; serviceUrl is left out");
    const char *sname = pt_import_xml_attr(svc, "name");
    if (sname)
        json_object_set_new(w->api, "displayName", json_string(sname));
    char *sdoc = pt_import_xml_child_text(svc, NS_WSDL11, "documentation");
    if (sdoc) {
        json_object_set_new(w->api, "description", json_string(sdoc));
        free(sdoc);
    }

    const char *bq = pt_import_xml_attr(port, "binding");
    xmlNodePtr binding = bq ? find(w->bindings, w->nbindings, local_of(bq)) : NULL;
    if (!binding)
        return fail(w, port, "binding '%s' is not defined in this document", bq ? bq : "");
    xmlNodePtr sb = child(binding, soap_ns, "binding");
    if (!sb)
        return fail(w, binding, "binding '%s' is not a SOAP %s binding", pt_import_xml_attr(binding, "name"),
                    soap12 ? "1.2" : "1.1");
    const char *bstyle = pt_import_xml_attr(sb, "style");
    const char *pq = pt_import_xml_attr(binding, "type");
    xmlNodePtr ptype = pq ? find(w->types, w->ntypes, local_of(pq)) : NULL;
    if (!ptype)
        return fail(w, binding, "portType '%s' is not defined in this document", pq ? pq : "");

    for (xmlNodePtr bo = pt_import_xml_elem(binding->children); bo; bo = pt_import_xml_elem(bo->next)) {
        if (!pt_import_xml_is(bo, NS_WSDL11, "operation"))
            continue;
        const char *name = pt_import_xml_attr(bo, "name");
        if (!name)
            return fail(w, bo, "a binding operation has no name");
        xmlNodePtr so = child(bo, soap_ns, "operation");
        const char *action = so ? pt_import_xml_attr(so, "soapAction") : NULL;
        const char *style = so ? pt_import_xml_attr(so, "style") : NULL;
        if (!style)
            style = bstyle;
        if (style && !strcmp(style, "rpc"))
            return fail(w, so && pt_import_xml_attr(so, "style") ? so : sb,
                        "operation '%s' uses the rpc style: only document/literal is supported", name);
        xmlNodePtr po = find_child_named(ptype, NS_WSDL11, "operation", name);
        if (!po)
            return fail(w, bo, "operation '%s' is not in portType '%s'", name,
                        pt_import_xml_attr(ptype, "name"));
        xmlNodePtr in = child(po, NS_WSDL11, "input"), out = child(po, NS_WSDL11, "output");
        xmlNodePtr bin = child(bo, NS_WSDL11, "input"), bout = child(bo, NS_WSDL11, "output");
        const char *inq = NULL, *outq = NULL;
        xmlNodePtr inw = po, outw = po;
        if (in && !message_element(w, in, bin, &inq, &inw))
            return false;
        if (out && !message_element(w, out, bout, &outq, &outw))
            return false;
        /* faults: one 500 response with the first fault's element */
        json_t *fault_rep = NULL;
        char faults[400] = "";
        for (xmlNodePtr f = pt_import_xml_elem(po->children); f; f = pt_import_xml_elem(f->next)) {
            if (!pt_import_xml_is(f, NS_WSDL11, "fault"))
                continue;
            const char *fq = NULL;
            xmlNodePtr fw;
            if (!message_element(w, f, NULL, &fq, &fw)) {
                json_decref(fault_rep);
                return false;
            }
            size_t l = strlen(faults);
            snprintf(faults + l, sizeof(faults) - l, "%s%s", l ? ", " : "SOAP faults: ",
                     pt_import_xml_attr(f, "name") ? pt_import_xml_attr(f, "name") : local_of(fq ? fq : ""));
            if (!fault_rep)
                fault_rep = representation(w, fw, fq, soap12);
        }
        json_t *rq = representation(w, inw, inq, soap12);
        json_t *rs = out ? representation(w, outw, outq, soap12) : NULL;
        char *doc = pt_import_xml_child_text(po, NS_WSDL11, "documentation");
        bool ok = add_operation(w, bo, name, doc, action, rq, rs, fault_rep, faults[0] ? faults : NULL);
        free(doc);
        if (!ok)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------ 2.0 */

static bool convert20(struct wsdl *w, const char *service, const char *endpoint)
{
    w->types = index_of(w, NS_WSDL20, "interface", &w->ntypes);
    w->bindings = index_of(w, NS_WSDL20, "binding", &w->nbindings);
    xmlNodePtr svc, ep;
    if (!pick(w, NS_WSDL20, "endpoint", service, endpoint, &svc, &ep))
        return false;
    const char *loc = pt_import_xml_attr(ep, "address");
    if (loc && loc[0])
        json_object_set_new(w->api, "serviceUrl", json_string(loc));
    else
        warn(w, ep, "the endpoint has no address; serviceUrl is left out");
    const char *sname = pt_import_xml_attr(svc, "name");
    if (sname)
        json_object_set_new(w->api, "displayName", json_string(sname));
    char *sdoc = pt_import_xml_child_text(svc, NS_WSDL20, "documentation");
    if (sdoc) {
        json_object_set_new(w->api, "description", json_string(sdoc));
        free(sdoc);
    }
    xmlNodePtr binding = find(w->bindings, w->nbindings, local_of(pt_import_xml_attr(ep, "binding")));
    const char *version = pt_import_xml_nsattr(binding, NS_WSOAP, "version");
    bool soap12 = !version || strcmp(version, "1.1");
    const char *iq = pt_import_xml_attr(binding, "interface");
    if (!iq)
        iq = pt_import_xml_attr(svc, "interface");
    xmlNodePtr iface = iq ? find(w->types, w->ntypes, local_of(iq)) : NULL;
    if (!iface)
        return fail(w, binding, "interface '%s' is not defined in this document", iq ? iq : "");
    if (pt_import_xml_attr(iface, "extends"))
        warn(w, iface, "interface '%s' extends others; their operations are not imported",
             pt_import_xml_attr(iface, "name"));
    for (xmlNodePtr io = pt_import_xml_elem(iface->children); io; io = pt_import_xml_elem(io->next)) {
        if (!pt_import_xml_is(io, NS_WSDL20, "operation"))
            continue;
        const char *name = pt_import_xml_attr(io, "name");
        if (!name)
            return fail(w, io, "an interface operation has no name");
        /* the binding operation, if any, gives the action */
        const char *action = NULL;
        for (xmlNodePtr bo = pt_import_xml_elem(binding->children); bo; bo = pt_import_xml_elem(bo->next))
            if (pt_import_xml_is(bo, NS_WSDL20, "operation")) {
                const char *ref = pt_import_xml_attr(bo, "ref");
                if (ref && !strcmp(local_of(ref), name)) {
                    action = pt_import_xml_nsattr(bo, NS_WSOAP, "action");
                    break;
                }
            }
        xmlNodePtr in = child(io, NS_WSDL20, "input"), out = child(io, NS_WSDL20, "output");
        json_t *rq = representation(w, in ? in : io, in ? pt_import_xml_attr(in, "element") : NULL, soap12);
        json_t *rs = out ? representation(w, out, pt_import_xml_attr(out, "element"), soap12) : NULL;
        json_t *fault_rep = NULL;
        char faults[400] = "";
        for (xmlNodePtr f = pt_import_xml_elem(io->children); f; f = pt_import_xml_elem(f->next)) {
            if (!pt_import_xml_is(f, NS_WSDL20, "outfault"))
                continue;
            const char *ref = pt_import_xml_attr(f, "ref");
            xmlNodePtr fd = ref ? find_child_named(iface, NS_WSDL20, "fault", local_of(ref)) : NULL;
            size_t l = strlen(faults);
            snprintf(faults + l, sizeof(faults) - l, "%s%s",
                     l ? ", " : "SOAP faults: ", ref ? local_of(ref) : "");
            if (!fault_rep && fd)
                fault_rep = representation(w, fd, pt_import_xml_attr(fd, "element"), soap12);
        }
        char *doc = pt_import_xml_child_text(io, NS_WSDL20, "documentation");
        bool ok = add_operation(w, io, name, doc, action, rq, rs, fault_rep, faults[0] ? faults : NULL);
        free(doc);
        if (!ok)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------ entry */

bool pt_import_wsdl_convert(const char *text, size_t len, const char *service, const char *endpoint,
                            struct pt_import_doc *out, char *err, size_t errlen)
{
    out->api = NULL;
    out->warnings = NULL;
    if (!errlen)
        return false;
    err[0] = '\0';
    xmlDocPtr doc = pt_import_xml_read(text, len, err, errlen);
    if (!doc)
        return false;
    struct wsdl w = {.doc = doc, .root = xmlDocGetRootElement(doc), .err = err, .errlen = errlen};
    w.api = json_pack("{s:s, s:[], s:[]}", "apiType", "soap", "schemas", "operations");
    w.warnings = json_array();
    bool ok = false;
    bool v11 = pt_import_xml_is(w.root, NS_WSDL11, "definitions");
    bool v20 = pt_import_xml_is(w.root, NS_WSDL20, "description");
    if (!w.api || !w.warnings)
        fail(&w, NULL, "out of memory");
    else if (!v11 && !v20)
        fail(&w, w.root,
             "the root element is '%s', not wsdl:definitions (WSDL 1.1) or wsdl:description (WSDL 2.0)",
             (const char *)w.root->name);
    else {
        json_t *schemas = json_object_get(w.api, "schemas");
        json_t *wsdl =
            json_pack("{s:s, s:s}", "id", "wsdl", "contentType", "application/vnd.ms-azure-apim.wsdl+xml");
        json_t *value = doc_text(doc, text, len);
        if (!value) {
            json_decref(wsdl);
            fail(&w, NULL, "the document cannot be stored as UTF-8 text");
        } else {
            json_object_set_new(wsdl, "value", value);
            json_array_append_new(schemas, wsdl);
            if (read_types(&w, v11 ? NS_WSDL11 : NS_WSDL20, schemas))
                ok = v11 ? convert11(&w, service, endpoint) : convert20(&w, service, endpoint);
            if (ok && json_array_size(json_object_get(w.api, "operations")) == 0)
                warn(&w, NULL, "the binding has no operation");
        }
    }
    free(w.msgs);
    free(w.types);
    free(w.bindings);
    xmlFreeDoc(doc);
    if (!ok) {
        if (!err[0])
            snprintf(err, errlen, "out of memory");
        json_decref(w.api);
        json_decref(w.warnings);
        return false;
    }
    out->api = w.api;
    out->warnings = w.warnings;
    return true;
}
