/*
 * pt_xml -- reading untrusted XML safely with libxml2: the one reader the
 * WSDL and OData importers (conf/pt_import_xml), the XML Schema validator
 * (plugins/lib/xsd.c) and the xml-to-json policy use.
 *
 * Safety: at most the caller's cap (and never more than INT_MAX bytes);
 * XML_PARSE_NONET, never NOENT, DTDLOAD or HUGE (so libxml2's own depth limit
 * of 256 holds); a deny-all external entity loader; and a document with a
 * DOCTYPE is refused outright (the parser stops at the DOCTYPE, before any
 * entity is declared), so neither XXE nor entity expansion can happen.
 * libxml2's messages never reach stderr: they are returned.
 *
 * Depends only on libc and libxml2, so plugins/lib compiles the same source
 * (each copy installs its own loader; see pt_xml_init).
 */
#ifndef PT_XML_H
#define PT_XML_H

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stddef.h>

enum pt_xml_fail {
    PT_XML_OK,
    PT_XML_TOO_LARGE, /* over the cap: nothing was parsed */
    PT_XML_NOMEM,
    PT_XML_DOCTYPE,  /* a DOCTYPE (DTD, entities): line is where the parser stopped */
    PT_XML_MALFORMED /* not well-formed, or no root element: line, column and what from libxml2 */
};

struct pt_xml_error {
    enum pt_xml_fail fail;
    int line, column; /* 1-based */
    char what[512];   /* libxml2's message without its trailing newline; "" when it gave none */
};

/* Makes libxml2 ready for threads and installs the deny-all external entity loader process-wide
   (once per copy of this file; pt_xml_read does it too).  A plugin calls it from its init(), after
   keeping xmlGetExternalEntityLoader() to put back at fini() when the loader is still pt_xml_deny. */
void pt_xml_init(void);

/* The deny-all external entity loader: nothing is ever loaded, whatever asks. */
xmlParserInputPtr pt_xml_deny(const char *url, const char *id, xmlParserCtxtPtr ctxt);

/* A generic error handler that drops libxml2's messages (xmlSetGenericErrorFunc(NULL, pt_xml_quiet)
   around a call that would print them, such as xmlSchemaParse). */
void pt_xml_quiet(void *ctx, const char *msg, ...);

/* Parses text (len bytes, at most max) safely.  The document (free with xmlFreeDoc), or NULL with
 *e filled. */
xmlDocPtr pt_xml_read(const char *text, size_t len, size_t max, struct pt_xml_error *e);

#endif
