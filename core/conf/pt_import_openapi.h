/*
 * pt_import_openapi -- OpenAPI 2.0 (Swagger), 3.0.x and 3.1 documents into
 * a stored API definition (APIM's import rules; docs/import.md "OpenAPI").
 */
#ifndef PT_IMPORT_OPENAPI_H
#define PT_IMPORT_OPENAPI_H

#include "base/pt.h"
#include "conf/pt_import.h"

/* The id of the one schema an import writes (its named schemas). */
#define PT_IMPORT_OPENAPI_SCHEMA_ID "openapi"
/* Limits: the document's size (APIM's inline limit), its nesting, the
   nodes copied while expanding $refs, the files $refs may read. */
#define PT_IMPORT_OPENAPI_MAX_SIZE (4u << 20)
#define PT_IMPORT_OPENAPI_MAX_DEPTH 64
#define PT_IMPORT_OPENAPI_MAX_WORK 2000000L
#define PT_IMPORT_OPENAPI_MAX_FILES 64

/*
 * Converts the JSON or YAML text of an OpenAPI document into out->api and
 * out->warnings (new references).  base_dir != NULL allows $refs to files
 * under it (relative paths only).  On failure returns false, sets both to
 * NULL and writes "JSON-POINTER: what" or "line L, column C: what" to err.
 */
bool pt_import_openapi_convert(const char *text, size_t len, const char *base_dir, struct pt_import_doc *out,
                               char *err, size_t errlen);

#endif
