/*
 * pt_mgmt_polxml -- a policy document written as APIM writes it (XML:
 * <policies><inbound><base/><set-header name="X">...</inbound>...) read
 * into Portico's document ({"inbound": ["base", {"set-header": {...}}]}),
 * for the management API's envelope {"properties": {"format": "rawxml" or
 * "xml", "value": "<policies>..."}}.
 *
 * The mapping is by shape, since Portico's statements mirror APIM's
 * elements: an element is a statement named after it; its attributes and
 * child elements are its attributes (a child with text only is a string,
 * repeated children a list); <base/> is "base"; choose/when/otherwise and
 * the statements nesting statements (retry, wait, limit-concurrency) get
 * Portico's shapes.  The result is validated afterwards like any document.
 *
 * "xml" is well-formed XML; "rawxml" may hold expressions (@(...), @{...})
 * with unescaped < > & and quotes, which are escaped before parsing.
 */
#ifndef PT_MGMT_POLXML_H
#define PT_MGMT_POLXML_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * How deep policies may nest in policies (choose/when, retry, wait,
 * limit-concurrency), and elements in a statement's elements: deeper
 * documents are refused ("nested too deeply"), as the policy compiler
 * would refuse them.
 */
#define PT_MGMT_POLXML_MAX_DEPTH 32

/*
 * The document, or NULL with err set ("line L, column C: what" or "what";
 * valid UTF-8, since it names elements of the document and goes into a
 * JSON answer).
 */
json_t *pt_mgmt_polxml_read(const char *text, size_t len, bool raw, char *err, size_t errlen);

#endif
