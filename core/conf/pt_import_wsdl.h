/*
 * pt_import_wsdl -- WSDL 1.1 / 2.0 into a SOAP pass-through API (docs/import.md).
 */
#ifndef PT_IMPORT_WSDL_H
#define PT_IMPORT_WSDL_H

#include "conf/pt_import.h"

/*
 * Converts a WSDL document.  `service` picks a service by name (NULL: the
 * only one, or the first with a SOAP port, with a warning when there are
 * several); `endpoint` a port (1.1) or endpoint (2.0) of it likewise.
 * Operations are POST "/?soapAction=ACTION" (APIM's template), the action
 * encoded by pt_import_wsdl_action_query; "/" for an operation without one.
 * On failure: false and err = "line L: what".
 */
bool pt_import_wsdl_convert(const char *text, size_t len, const char *service, const char *endpoint,
                            struct pt_import_doc *out, char *err, size_t errlen);

/*
 * The query value a SOAP action stands for in an operation's template:
 * printable ASCII kept except '%', '&', '#', '+', '{' and '}', which (and
 * every other byte) become %XX.  The gateway routes a request to an API of
 * apiType soap with the query "soapAction=" + this encoding of its action
 * (the SOAPAction header without its quotes, or the action parameter of a
 * SOAP 1.2 Content-Type).  Writes at most outlen bytes with a NUL (out may
 * be NULL) and returns the encoded length.
 */
size_t pt_import_wsdl_action_query(const char *action, size_t len, char *out, size_t outlen);

#endif
