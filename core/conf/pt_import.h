/*
 * pt_import.h -- importing API definitions (OpenAPI, WSDL, OData, GraphQL).
 *
 * Placeholder holding only the converters' shared result, exactly as the
 * shared contract gives it; the lead's pt_import.h (with the dispatcher)
 * replaces this file at merge.
 */
#ifndef PT_IMPORT_H
#define PT_IMPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct pt_import_doc {
    json_t *api;      /* new reference: {displayName, description, apiType, path?, serviceUrl?,
                         schemas: [...], operations: [...]} -- no id; fields the document does not
                         give are absent */
    json_t *warnings; /* new reference: array of strings ("/paths/~1x/get/parameters/0: cookie parameter
                         'sid' is not supported; kept out of the operation") */
};
/* On failure: false and err = "WHERE: WHAT" with WHERE a JSON pointer into the document
   ("/paths/~1pets/get/responses/200/content/application~1json/schema/$ref") or "line L, column C"
   for syntax errors. */

#endif
