/*
 * pt_export_openapi -- a stored API (with its operations and schemas) as
 * an OpenAPI 3.0 or Swagger 2.0 document.
 */
#ifndef PT_EXPORT_OPENAPI_H
#define PT_EXPORT_OPENAPI_H

#include <jansson.h>

/* version 3: OpenAPI 3.0.1; 2: Swagger 2.0.  server_url: the servers entry (NULL: none).  A new
   reference, or NULL. */
json_t *pt_export_openapi_build(const json_t *api, int version, const char *server_url);

#endif
