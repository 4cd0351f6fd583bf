/*
 * pt_import -- what every API-definition converter produces.
 *
 * Minimal placeholder holding only struct pt_import_doc exactly as the
 * shared contract gives it; the dispatcher's own header replaces this file.
 */
#ifndef PT_IMPORT_H
#define PT_IMPORT_H

#include <jansson.h>

struct pt_import_doc {
    json_t *api;      /* new reference: {displayName, description, apiType, path?, serviceUrl?,
                         schemas: [...], operations: [...]} -- no id; fields the document does not
                         give are absent */
    json_t *warnings; /* new reference: array of strings ("/paths/~1x/get/parameters/0: cookie parameter
                         'sid' is not supported; kept out of the operation") */
};

#endif
