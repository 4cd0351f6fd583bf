/*
 * pt_export_openapi -- a stored API definition as an OpenAPI 3.0.1 or
 * Swagger 2.0 document (docs/import.md "Export").
 */
#ifndef PT_EXPORT_OPENAPI_H
#define PT_EXPORT_OPENAPI_H

#include "base/pt.h"

#include <jansson.h>

/* version 3: OpenAPI 3.0.1; 2: Swagger 2.0.  server_url (may be NULL) becomes
   servers[0] (3) or schemes/host/basePath (2).  A new reference; NULL only
   when api is not an object or version is neither 2 nor 3. */
json_t *pt_export_openapi_build(const json_t *api, int version, const char *server_url);

#endif
