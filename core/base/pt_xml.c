/*
 * pt_xml -- reading untrusted XML safely (pt_xml.h).
 */
#include "pt_xml.h"

#include <libxml/xmlerror.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

xmlParserInputPtr pt_xml_deny(const char *url, const char *id, xmlParserCtxtPtr ctxt)
{
    (void)url;
    (void)id;
    (void)ctxt;
    return NULL;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void setup(void)
{
    xmlInitParser();
    xmlSetExternalEntityLoader(pt_xml_deny);
}

void pt_xml_init(void)
{
    pthread_once(&once, setup);
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

void pt_xml_quiet(void *ctx, const char *msg, ...)
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

xmlDocPtr pt_xml_read(const char *text, size_t len, size_t max, struct pt_xml_error *e)
{
    memset(e, 0, sizeof(*e));
    pt_xml_init();
    if (len > max || len > (size_t)INT_MAX) {
        e->fail = PT_XML_TOO_LARGE;
        return NULL;
    }
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt) {
        e->fail = PT_XML_NOMEM;
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
    xmlSetGenericErrorFunc(NULL, pt_xml_quiet);
    xmlSetStructuredErrorFunc(NULL, quiet_structured);
    doctype_seen = false;
    xmlDocPtr doc = xmlCtxtReadMemory(ctxt, len ? text : "", (int)len, NULL, NULL,
                                      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    xmlSetGenericErrorFunc(old_generic_ctx, old_generic);
    xmlSetStructuredErrorFunc(old_structured_ctx, old_structured);
    if (doctype_seen || (doc && (doc->intSubset || doc->extSubset))) {
        e->fail = PT_XML_DOCTYPE;
        e->line = ctxt->input ? ctxt->input->line : 1;
    } else if (!doc || !xmlDocGetRootElement(doc) || !ctxt->wellFormed) {
        e->fail = PT_XML_MALFORMED;
        e->line = 1;
        e->column = 1;
        if (ctxt->lastError.message) {
            e->line = ctxt->lastError.line;
            e->column = ctxt->lastError.int2;
            snprintf(e->what, sizeof(e->what), "%s", ctxt->lastError.message);
            size_t l = strlen(e->what);
            while (l && (e->what[l - 1] == '\n' || e->what[l - 1] == ' '))
                e->what[--l] = '\0';
        }
    }
    xmlFreeParserCtxt(ctxt);
    if (e->fail) {
        if (doc)
            xmlFreeDoc(doc);
        return NULL;
    }
    return doc;
}
