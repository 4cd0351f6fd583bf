/*
 * pt_import -- converters from API description documents to the stored API
 * definition (docs/import.md).  Placeholder with only the shared result type,
 * as the contract gives it, until the dispatcher (pt_import.c) lands.
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
    json_t *warnings; /* new reference: array of strings */
};

#endif
