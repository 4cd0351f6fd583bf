/*
 * ptl_xsd.h -- XML Schema validation for the plugin families that link
 * libxml2 (plugins/lib/libptlxsd: a convenience library of its own, so that
 * families without XML do not pull libxml2 in).
 *
 * Safety: schema and instance documents are read with core/base/pt_xml's
 * reader (XML_PARSE_NONET, never NOENT, DTDLOAD or HUGE; a document with a
 * DOCTYPE is refused); the process-wide external entity loader loads nothing
 * (ptl_xsd_init), so an
 * xsd:import/include with a schemaLocation fails to compile instead of
 * reaching the file system or the network.
 *
 * Threads: a compiled schema is read-only and may be shared by any number of
 * threads; each validation makes its own xmlSchemaValidCtxt (libxml2's rule:
 * a validation context belongs to one thread at a time).  Compile on the
 * control thread (compile()), validate on workers (run()).
 */
#ifndef PORTICO_PLUGINS_PTL_XSD_H
#define PORTICO_PLUGINS_PTL_XSD_H

#include <stdbool.h>
#include <stddef.h>

#pragma GCC visibility push(hidden)

struct ptl_xsd;

#define PTL_XSD_MAX_SIZE (4u * 1024 * 1024) /* schema and instance texts, like APIM's schema limit */

/* Makes libxml2 ready for threads and installs the deny-all entity loader; call from the plugin's init(). */
void ptl_xsd_init(void);

/* Compiles an XSD given as text; NULL with err ("line L: what"). */
struct ptl_xsd *ptl_xsd_compile(const char *text, size_t len, char *err, size_t errlen);
/* Compiles several XSD texts as one schema: the embedded schemas of a WSDL (an API's "xsd", "xsd-2"...
   schemas), which import each other's namespaces without a schemaLocation.  Each text with a
   targetNamespace is imported, one without is included; two texts may not share a namespace.  At most
   PTL_XSD_MAX_SET texts.  NULL with err ("schema N: line L: what"). */
#define PTL_XSD_MAX_SET 32
struct ptl_xsd *ptl_xsd_compile_set(const char *const *texts, const size_t *lens, int n, char *err,
                                    size_t errlen);
void ptl_xsd_free(struct ptl_xsd *s);

enum {
    PTL_XSD_DOCUMENT = 0,  /* the whole document is the instance */
    PTL_XSD_SOAP_BODY = 1, /* a SOAP 1.1 or 1.2 envelope: each element child of its Body is validated */
};

/* Validates; true when valid, else false with msg = "line L: what" (the first error). */
bool ptl_xsd_validate(const struct ptl_xsd *s, const char *xml, size_t len, int mode, char *msg,
                      size_t msglen);

#pragma GCC visibility pop

#endif
