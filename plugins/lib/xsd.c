/*
 * xsd.c -- XML Schema validation with libxml2's xmlSchema* (ptl_xsd.h).
 */
#include "ptl_xsd.h"

#include "pt_xml.h"

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlschemas.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SOAP11_ENV "http://schemas.xmlsoap.org/soap/envelope/"
#define SOAP12_ENV "http://www.w3.org/2003/05/soap-envelope"

struct ptl_xsd {
    xmlSchemaPtr schema;
    xmlDocPtr doc; /* the schema document: the compiled schema may point into it, so it lives as long */
};

/* The texts ptl_xsd_compile_set is compiling on this thread, served as "portico-xsd:N". */
struct mem_set {
    char **texts; /* NUL-terminated copies */
    int n;
};
static _Thread_local const struct mem_set *compiling;

#define MEM_SCHEME "portico-xsd:"

/* The loader while ptl_xsd_compile_set compiles: the set's texts, and nothing else (pt_xml_init installs
   the deny-all one for the rest of the time). */
static xmlParserInputPtr set_loader(const char *url, const char *id, xmlParserCtxtPtr ctxt)
{
    (void)id;
    if (compiling && url && ctxt && !strncmp(url, MEM_SCHEME, sizeof(MEM_SCHEME) - 1)) {
        char *end;
        long i = strtol(url + sizeof(MEM_SCHEME) - 1, &end, 10);
        if (!*end && i >= 0 && i < compiling->n)
            return xmlNewStringInputStream(ctxt, (const xmlChar *)compiling->texts[i]);
    }
    return NULL; /* nothing else is ever loaded: no file, no network */
}

void ptl_xsd_init(void)
{
    pt_xml_init();
}

static void put(char *msg, size_t msglen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put(char *msg, size_t msglen, const char *fmt, ...)
{
    if (!msglen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
    size_t l = strlen(msg);
    while (l && (msg[l - 1] == '\n' || msg[l - 1] == ' '))
        msg[--l] = '\0';
}

/* Parses safely (base/pt_xml.h); NULL with msg. */
static xmlDocPtr parse(const char *text, size_t len, char *msg, size_t msglen)
{
    struct pt_xml_error e;
    xmlDocPtr doc = pt_xml_read(text, len, PTL_XSD_MAX_SIZE, &e);
    if (doc)
        return doc;
    if (e.fail == PT_XML_TOO_LARGE)
        put(msg, msglen, "the document is larger than %u bytes", PTL_XSD_MAX_SIZE);
    else if (e.fail == PT_XML_NOMEM)
        put(msg, msglen, "out of memory");
    else if (e.fail == PT_XML_DOCTYPE)
        put(msg, msglen, "line %d: documents with a DOCTYPE (DTD, entities) are refused", e.line);
    else
        put(msg, msglen, "line %d: %s", e.line, e.what[0] ? e.what : "not a well-formed XML document");
    return NULL;
}

static bool is(const xmlNode *n, const char *ns, const char *local)
{
    return n && n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, local) && n->ns &&
           n->ns->href && !strcmp((const char *)n->ns->href, ns);
}

/* The first error a schema parser or validator reports. */
struct first_error {
    char *msg;
    size_t msglen;
    bool set;
};

#if LIBXML_VERSION >= 21200
static void keep_first(void *ctx, const xmlError *e)
#else
static void keep_first(void *ctx, xmlErrorPtr e)
#endif
{
    struct first_error *f = ctx;
    if (f->set || !e || e->level < XML_ERR_ERROR)
        return;
    f->set = true;
    put(f->msg, f->msglen, "line %d: %s", e->line, e->message ? e->message : "invalid");
}

struct ptl_xsd *ptl_xsd_compile(const char *text, size_t len, char *err, size_t errlen)
{
    ptl_xsd_init();
    xmlDocPtr doc = parse(text, len, err, errlen);
    if (!doc)
        return NULL;
    /* parsing from our own tree: libxml2's text path would parse the schema with NOENT */
    xmlSchemaParserCtxtPtr pc = xmlSchemaNewDocParserCtxt(doc);
    if (!pc) {
        xmlFreeDoc(doc);
        put(err, errlen, "out of memory");
        return NULL;
    }
    struct first_error f = {err, errlen, false};
    xmlSchemaSetParserStructuredErrors(pc, keep_first, &f);
    xmlGenericErrorFunc old_generic = xmlGenericError;
    void *old_generic_ctx = xmlGenericErrorContext;
    xmlSetGenericErrorFunc(NULL, pt_xml_quiet);
    xmlSchemaPtr schema = xmlSchemaParse(pc);
    xmlSetGenericErrorFunc(old_generic_ctx, old_generic);
    xmlSchemaFreeParserCtxt(pc);
    if (!schema) {
        xmlFreeDoc(doc);
        if (!f.set)
            put(err, errlen, "line 1: not a usable XML schema");
        return NULL;
    }
    struct ptl_xsd *s = calloc(1, sizeof(*s));
    if (!s) {
        xmlSchemaFree(schema);
        xmlFreeDoc(doc);
        put(err, errlen, "out of memory");
        return NULL;
    }
    s->schema = schema;
    s->doc = doc;
    return s;
}

/* Appends s, as attribute text when escape (in double quotes), else as it is. */
static bool append(char **buf, size_t *n, size_t *cap, const char *s, bool escape)
{
    for (; *s; s++) {
        char tmp[8];
        const char *piece = tmp;
        if (!escape) {
            tmp[0] = *s;
            tmp[1] = '\0';
        } else if (*s == '&')
            piece = "&amp;";
        else if (*s == '<')
            piece = "&lt;";
        else if (*s == '"')
            piece = "&quot;";
        else {
            tmp[0] = *s;
            tmp[1] = '\0';
        }
        size_t l = strlen(piece);
        if (*n + l + 1 > *cap) {
            size_t nc = (*cap + l + 1) * 2;
            char *nb = realloc(*buf, nc);
            if (!nb)
                return false;
            *buf = nb;
            *cap = nc;
        }
        memcpy(*buf + *n, piece, l);
        *n += l;
        (*buf)[*n] = '\0';
    }
    return true;
}

struct ptl_xsd *ptl_xsd_compile_set(const char *const *texts, const size_t *lens, int n, char *err,
                                    size_t errlen)
{
    ptl_xsd_init();
    if (n == 1)
        return ptl_xsd_compile(texts[0], lens[0], err, errlen);
    if (n < 1 || n > PTL_XSD_MAX_SET) {
        put(err, errlen, "between 1 and %d schemas can be compiled together", PTL_XSD_MAX_SET);
        return NULL;
    }
    struct mem_set set = {calloc((size_t)n, sizeof(char *)), n};
    char *wrapper = NULL, **tns = calloc((size_t)n, sizeof(char *));
    size_t wn = 0, wcap = 0;
    struct ptl_xsd *out = NULL;
    bool ok =
        set.texts && tns &&
        append(&wrapper, &wn, &wcap, "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\">", false);
    for (int i = 0; ok && i < n; i++) {
        /* each text is checked here with the safe parser (no DOCTYPE): libxml2 reads imported documents
           with its own options, which substitute entities */
        char msg[400];
        xmlDocPtr d = parse(texts[i], lens[i], msg, sizeof(msg));
        if (!d) {
            put(err, errlen, "schema %d: %s", i + 1, msg);
            ok = false;
            break;
        }
        xmlNodePtr root = xmlDocGetRootElement(d);
        xmlChar *t = is(root, "http://www.w3.org/2001/XMLSchema", "schema")
                         ? xmlGetNoNsProp(root, (const xmlChar *)"targetNamespace")
                         : NULL;
        if (!is(root, "http://www.w3.org/2001/XMLSchema", "schema")) {
            put(err, errlen, "schema %d: line %ld: the root element is not xs:schema", i + 1,
                xmlGetLineNo(root));
            ok = false;
        }
        xmlFreeDoc(d);
        if (!ok)
            break;
        tns[i] = t ? strdup((const char *)t) : NULL;
        if (t)
            xmlFree(t);
        for (int k = 0; k < i && ok; k++)
            if ((tns[k] == NULL) == (tns[i] == NULL) && (!tns[i] || !strcmp(tns[k], tns[i]))) {
                put(err, errlen, "schemas %d and %d have the same target namespace '%s'", k + 1, i + 1,
                    tns[i] ? tns[i] : "");
                ok = false;
            }
        set.texts[i] = malloc(lens[i] + 1);
        if (!set.texts[i]) {
            put(err, errlen, "out of memory");
            ok = false;
            break;
        }
        memcpy(set.texts[i], texts[i], lens[i]);
        set.texts[i][lens[i]] = '\0';
        char loc[48];
        snprintf(loc, sizeof(loc), "schemaLocation=\"" MEM_SCHEME "%d\"/>", i);
        if (ok && tns[i])
            ok = append(&wrapper, &wn, &wcap, "<xs:import namespace=\"", false) &&
                 append(&wrapper, &wn, &wcap, tns[i], true) && append(&wrapper, &wn, &wcap, "\" ", false) &&
                 append(&wrapper, &wn, &wcap, loc, false);
        else if (ok)
            ok = append(&wrapper, &wn, &wcap, "<xs:include ", false) &&
                 append(&wrapper, &wn, &wcap, loc, false);
    }
    if (ok)
        ok = append(&wrapper, &wn, &wcap, "</xs:schema>", false);
    if (ok) {
        compiling = &set;
        xmlExternalEntityLoader previous = xmlGetExternalEntityLoader();
        xmlSetExternalEntityLoader(set_loader);
        out = ptl_xsd_compile(wrapper, wn, err, errlen);
        xmlSetExternalEntityLoader(previous);
        compiling = NULL;
    }
    for (int i = 0; i < n; i++) {
        if (set.texts)
            free(set.texts[i]);
        if (tns)
            free(tns[i]);
    }
    free(set.texts);
    free(tns);
    free(wrapper);
    if (!out && !ok && errlen && !err[0])
        put(err, errlen, "out of memory");
    return out;
}

void ptl_xsd_free(struct ptl_xsd *s)
{
    if (!s)
        return;
    xmlSchemaFree(s->schema);
    xmlFreeDoc(s->doc);
    free(s);
}

bool ptl_xsd_validate(const struct ptl_xsd *s, const char *xml, size_t len, int mode, char *msg,
                      size_t msglen)
{
    ptl_xsd_init();
    if (msglen)
        msg[0] = '\0';
    xmlDocPtr doc = parse(xml, len, msg, msglen);
    if (!doc)
        return false;
    xmlSchemaValidCtxtPtr vc = xmlSchemaNewValidCtxt(s->schema);
    if (!vc) {
        xmlFreeDoc(doc);
        put(msg, msglen, "out of memory");
        return false;
    }
    struct first_error f = {msg, msglen, false};
    xmlSchemaSetValidStructuredErrors(vc, keep_first, &f);
    bool ok = true;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (mode == PTL_XSD_SOAP_BODY) {
        const char *env = is(root, SOAP11_ENV, "Envelope")   ? SOAP11_ENV
                          : is(root, SOAP12_ENV, "Envelope") ? SOAP12_ENV
                                                             : NULL;
        xmlNodePtr body = NULL;
        if (!env) {
            put(msg, msglen, "line %ld: the root element is not a SOAP 1.1 or 1.2 Envelope",
                xmlGetLineNo(root));
            ok = false;
        } else {
            for (xmlNodePtr c = root->children; c && !body; c = c->next)
                if (is(c, env, "Body"))
                    body = c;
            if (!body) {
                put(msg, msglen, "line %ld: the SOAP Envelope has no Body", xmlGetLineNo(root));
                ok = false;
            }
        }
        int nchildren = 0;
        for (xmlNodePtr c = body ? body->children : NULL; ok && c; c = c->next) {
            if (c->type != XML_ELEMENT_NODE)
                continue;
            nchildren++;
            if (is(c, env, "Fault"))
                continue; /* a fault is the envelope's, not the schema's */
            if (xmlSchemaValidateOneElement(vc, c) != 0) {
                if (!f.set)
                    put(msg, msglen, "line %ld: the element '%s' is not valid", xmlGetLineNo(c),
                        (const char *)c->name);
                ok = false;
            }
        }
        if (ok && body && nchildren == 0) {
            put(msg, msglen, "line %ld: the SOAP Body is empty", xmlGetLineNo(body));
            ok = false;
        }
    } else if (xmlSchemaValidateDoc(vc, doc) != 0) {
        if (!f.set)
            put(msg, msglen, "line %ld: the document is not valid", xmlGetLineNo(root));
        ok = false;
    }
    xmlSchemaFreeValidCtxt(vc);
    xmlFreeDoc(doc);
    return ok;
}
