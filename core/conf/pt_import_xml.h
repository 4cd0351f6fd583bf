/*
 * pt_import_xml -- what the XML converters (WSDL, OData $metadata) share:
 * reading an untrusted document safely with libxml2, and small helpers over
 * its tree.
 *
 * Safety: base/pt_xml's reader (XML_PARSE_NONET, never NOENT, DTDLOAD or
 * HUGE; a deny-all external entity loader; a document with a DOCTYPE is
 * refused outright, so neither XXE nor entity expansion can happen), capped
 * at PT_IMPORT_XML_MAX_SIZE bytes.
 */
#ifndef PT_IMPORT_XML_H
#define PT_IMPORT_XML_H

#include <libxml/tree.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#define PT_IMPORT_XML_MAX_SIZE (4u * 1024 * 1024)

/* Parses a document; NULL with err = "line L, column C: what" (or "what"). Free with xmlFreeDoc. */
xmlDocPtr pt_import_xml_read(const char *text, size_t len, char *err, size_t errlen);

/* "line L: " (the line of at, when at is not NULL) then fmt into out: the converters' errors and warnings. */
void pt_import_xml_vmessage(char *out, size_t outlen, const xmlNode *at, const char *fmt, va_list ap);

/* Is n an element named `local` in namespace `ns`? */
bool pt_import_xml_is(const xmlNode *n, const char *ns, const char *local);
/* The next element sibling from n (n itself when it is one), or NULL. */
xmlNodePtr pt_import_xml_elem(xmlNodePtr n);
/* An attribute's value (no namespace) as a borrowed string, or NULL. */
const char *pt_import_xml_attr(const xmlNode *n, const char *name);
/* An attribute in namespace ns (wsoap:action), borrowed, or NULL. */
const char *pt_import_xml_nsattr(const xmlNode *n, const char *ns, const char *name);
/* The text of the first child element named ns:local (e.g. wsdl:documentation), malloc'd, or NULL. */
char *pt_import_xml_child_text(xmlNodePtr n, const char *ns, const char *local);
/* Resolves a QName value "p:local" in the scope of n: *ns (borrowed; NULL when no prefix resolves and
   no default namespace applies) and *local (a pointer into qname).  false when the prefix is unknown. */
bool pt_import_xml_qname(xmlNodePtr n, const char *qname, const char **ns, const char **local);
/* A normalized operation id (APIM's rule: lower case, runs of other characters become '-', trimmed,
   at most 76 characters); out has room for 80. */
void pt_import_xml_normalize(const char *name, char *out, size_t outlen);

#endif
