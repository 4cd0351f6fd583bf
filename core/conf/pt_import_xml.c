/*
 * pt_import_xml -- safe reading of untrusted XML for the converters.
 */
#include "conf/pt_import_xml.h"

#include <libxml/parser.h>
#include <libxml/xmlerror.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* No external entity, DTD or XInclude is ever loaded, whatever asks. */
static xmlParserInputPtr no_external_entities(const char *url, const char *id, xmlParserCtxtPtr ctxt)
{
    (void)url;
    (void)id;
    (void)ctxt;
    return NULL;
}

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void xml_setup(void)
{
    xmlInitParser();
    xmlSetExternalEntityLoader(no_external_entities);
}

/* Set while the document being parsed turned out to have a DOCTYPE. */
static _Thread_local bool doctype_seen;

static void refuse_dtd(void *ctx, const xmlChar *name, const xmlChar *ext_id, const xmlChar *sys_id)
{
    (void)name;
    (void)ext_id;
    (void)sys_id;
    doctype_seen = true;
    xmlStopParser((xmlParserCtxtPtr)ctx);
}

static void refuse_entity(void *ctx, const xmlChar *name, int type, const xmlChar *public_id,
                          const xmlChar *system_id, xmlChar *content)
{
    (void)name;
    (void)type;
    (void)public_id;
    (void)system_id;
    (void)content;
    doctype_seen = true;
    xmlStopParser((xmlParserCtxtPtr)ctx);
}

static void quiet_generic(void *ctx, const char *msg, ...)
{
    (void)ctx;
    (void)msg;
}

#if LIBXML_VERSION >= 21200
static void quiet_structured(void *ctx, const xmlError *e)
#else
static void quiet_structured(void *ctx, xmlErrorPtr e)
#endif
{
    (void)ctx;
    (void)e;
}

xmlDocPtr pt_import_xml_read(const char *text, size_t len, char *err, size_t errlen)
{
    pthread_once(&xml_once, xml_setup);
    if (len > PT_IMPORT_XML_MAX_SIZE) {
        snprintf(err, errlen, "the document is larger than %u bytes (4 MB)", PT_IMPORT_XML_MAX_SIZE);
        return NULL;
    }
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ctxt->sax->internalSubset = refuse_dtd;
    ctxt->sax->externalSubset = refuse_dtd;
    ctxt->sax->entityDecl = refuse_entity;
    ctxt->sax->serror = quiet_structured;
    xmlGenericErrorFunc old_generic = xmlGenericError;
    void *old_generic_ctx = xmlGenericErrorContext;
    xmlStructuredErrorFunc old_structured = xmlStructuredError;
    void *old_structured_ctx = xmlStructuredErrorContext;
    xmlSetGenericErrorFunc(NULL, quiet_generic);
    xmlSetStructuredErrorFunc(NULL, quiet_structured);
    doctype_seen = false;
    xmlDocPtr doc = xmlCtxtReadMemory(ctxt, len ? text : "", (int)len, NULL, NULL,
                                      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    xmlSetGenericErrorFunc(old_generic_ctx, old_generic);
    xmlSetStructuredErrorFunc(old_structured_ctx, old_structured);
    bool refused = doctype_seen || (doc && (doc->intSubset || doc->extSubset));
    if (refused) {
        snprintf(err, errlen, "line %d: documents with a DOCTYPE (DTD, entities) are refused",
                 ctxt->input ? ctxt->input->line : 1);
    } else if (!doc || !xmlDocGetRootElement(doc) || !ctxt->wellFormed) {
        if (ctxt->lastError.message) {
            snprintf(err, errlen, "line %d, column %d: %s", ctxt->lastError.line, ctxt->lastError.int2,
                     ctxt->lastError.message);
            size_t l = strlen(err);
            while (l && (err[l - 1] == '\n' || err[l - 1] == ' '))
                err[--l] = '\0';
        } else
            snprintf(err, errlen, "line 1, column 1: not a well-formed XML document");
        refused = true;
    }
    xmlFreeParserCtxt(ctxt);
    if (refused) {
        if (doc)
            xmlFreeDoc(doc);
        return NULL;
    }
    return doc;
}

bool pt_import_xml_is(const xmlNode *n, const char *ns, const char *local)
{
    if (!n || n->type != XML_ELEMENT_NODE || strcmp((const char *)n->name, local))
        return false;
    if (!ns)
        return !n->ns || !n->ns->href;
    return n->ns && n->ns->href && !strcmp((const char *)n->ns->href, ns);
}

xmlNodePtr pt_import_xml_elem(xmlNodePtr n)
{
    while (n && n->type != XML_ELEMENT_NODE)
        n = n->next;
    return n;
}

const char *pt_import_xml_attr(const xmlNode *n, const char *name)
{
    for (const xmlAttr *a = n->properties; a; a = a->next)
        if (!a->ns && !strcmp((const char *)a->name, name))
            return a->children && a->children->content ? (const char *)a->children->content : "";
    return NULL;
}

char *pt_import_xml_child_text(xmlNodePtr n, const char *ns, const char *local)
{
    for (xmlNodePtr c = pt_import_xml_elem(n->children); c; c = pt_import_xml_elem(c->next))
        if (pt_import_xml_is(c, ns, local)) {
            xmlChar *t = xmlNodeGetContent(c);
            if (!t)
                return NULL;
            /* trim */
            char *s = (char *)t;
            size_t b = 0, e = strlen(s);
            while (b < e && strchr(" \t\r\n", s[b]))
                b++;
            while (e > b && strchr(" \t\r\n", s[e - 1]))
                e--;
            char *out = NULL;
            if (e > b) {
                out = malloc(e - b + 1);
                if (out) {
                    memcpy(out, s + b, e - b);
                    out[e - b] = '\0';
                }
            }
            xmlFree(t);
            return out;
        }
    return NULL;
}

const char *pt_import_xml_nsattr(const xmlNode *n, const char *ns, const char *name)
{
    xmlAttrPtr a = xmlHasNsProp(n, (const xmlChar *)name, (const xmlChar *)ns);
    if (!a || a->type != XML_ATTRIBUTE_NODE)
        return NULL;
    return a->children && a->children->content ? (const char *)a->children->content : "";
}

bool pt_import_xml_qname(xmlNodePtr n, const char *qname, const char **ns, const char **local)
{
    const char *colon = strchr(qname, ':');
    char prefix[128];
    const xmlChar *p = NULL;
    if (colon) {
        size_t pl = (size_t)(colon - qname);
        if (pl == 0 || pl >= sizeof(prefix))
            return false;
        memcpy(prefix, qname, pl);
        prefix[pl] = '\0';
        p = (const xmlChar *)prefix;
        *local = colon + 1;
    } else
        *local = qname;
    xmlNsPtr x = xmlSearchNs(n->doc, n, p);
    if (!x) {
        *ns = NULL;
        return !colon;
    }
    *ns = (const char *)x->href;
    return true;
}

void pt_import_xml_normalize(const char *name, char *out, size_t outlen)
{
    size_t n = 0, max = outlen > 77 ? 76 : outlen - 1;
    bool dash = false;
    for (const unsigned char *s = (const unsigned char *)name; *s && n < max; s++) {
        unsigned char c = *s;
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            if (dash && n)
                out[n++] = '-';
            dash = false;
            if (n < max)
                out[n++] = (char)c;
        } else if (c >= 'A' && c <= 'Z') {
            if (dash && n)
                out[n++] = '-';
            dash = false;
            if (n < max)
                out[n++] = (char)(c - 'A' + 'a');
        } else
            dash = true;
    }
    while (n && out[n - 1] == '-')
        n--;
    out[n] = '\0';
}
