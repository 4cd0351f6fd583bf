/*
 * pt_import_graphql.h -- GraphQL APIs from a schema: SDL text, or the
 * answer of a GraphQL service to the introspection query (turned into SDL).
 */
#ifndef PT_IMPORT_GRAPHQL_H
#define PT_IMPORT_GRAPHQL_H

#include "conf/pt_import.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The schema's kind of content for an API's schemas[]. */
#define PT_IMPORT_GRAPHQL_CONTENT_TYPE "application/vnd.ms-azure-apim.graphql.schema"

/* The standard introspection query (graphql-js's getIntrospectionQuery, with
   descriptions, specifiedByURL and repeatable directives), for a
   graphql-link import to POST to the backend as {"query": ...}. */
extern const char pt_import_graphql_introspection_query[];

/* text: SDL, or an introspection result ({"data":{"__schema":...}} or
   {"__schema":...}).  out->api = {apiType: "graphql", description?, schemas:
   [{id: "graphql", contentType: PT_IMPORT_GRAPHQL_CONTENT_TYPE, value: SDL}],
   operations: [graphql-post: POST /, graphql-get: GET /]}; the SDL is
   checked (pt_graphql_schema_parse).  false with err "line L, column C: ..."
   for SDL, "/data/__schema/types/3/name: ..." for introspection JSON. */
bool pt_import_graphql_convert(const char *text, size_t len, struct pt_import_doc *out, char *err,
                               size_t errlen);

/* SDL text (malloc'd) from an introspection result's __schema object; NULL
   with err ("/types/3/kind: ...", relative to __schema). */
char *pt_import_graphql_sdl(const json_t *schema, char *err, size_t errlen);

#endif
