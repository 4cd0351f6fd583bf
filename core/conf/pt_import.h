/*
 * pt_import -- API definitions in, as APIM reads them: OpenAPI (2.0, 3.0,
 * 3.1; JSON or YAML), WSDL, OData $metadata, GraphQL and .proto files become the stored
 * API shape (an API with `schemas` and `operations`, docs/api-definitions.md).
 *
 * The converters (pt_import_openapi.c, pt_import_wsdl.c, pt_import_odata.c,
 * pt_import_graphql.c, pt_import_proto.c) are pure: text in, JSON out, no network and no
 * store.  This file names the formats, guesses one from the content,
 * dispatches, lays the caller's fields over the result, and expands
 * `import:` in the configuration file's APIs.
 */
#ifndef PT_IMPORT_H
#define PT_IMPORT_H

#include "base/pt.h"
#include "conf/pt_schema.h"

#include <jansson.h>

/* What a converter produces. */
struct pt_import_doc {
    json_t *api;      /* new reference: {displayName, description, apiType, path?, serviceUrl?,
                         schemas: [...], operations: [...]}; no id; fields the document does not give
                         are absent */
    json_t *warnings; /* new reference: array of strings, each "WHERE: what" */
};

/* The largest definition read inline (APIM's limit) and through a link or a file. */
#define PT_IMPORT_MAX_INLINE (4u * 1024 * 1024)
#define PT_IMPORT_MAX_FETCH (32u * 1024 * 1024)

struct pt_import_req {
    const char *format; /* APIM's name ("openapi+json", "wsdl", ...); NULL or "" = guess from the text */
    const char *text;
    size_t len;
    const char *base_dir;      /* OpenAPI from disk: `$ref`s to files under it; NULL = local refs only */
    const char *wsdl_service;  /* wsdlSelector.wsdlServiceName (NULL = the only/first one) */
    const char *wsdl_endpoint; /* wsdlSelector.wsdlEndpointName */
};

/* Is `format` one of APIM's names that we read? */
bool pt_import_known(const char *format);
/* Is it a "-link" format (value is a URL to fetch)? */
bool pt_import_is_link(const char *format);
/* The format a text looks like ("openapi", "openapi+json", "swagger-json", "wsdl", "odata",
   "graphql", "grpc"), or NULL. */
const char *pt_import_guess(const char *text, size_t len);
/* Converts; false with err = "WHERE: what" (a JSON pointer or "line L, column C"). */
bool pt_import_convert(const struct pt_import_req *r, struct pt_import_doc *out, char *err, size_t errlen);
void pt_import_doc_clear(struct pt_import_doc *d);
/* Lays `fields` (the caller's API fields) over the converted API `api`: scalars and maps replace;
   `operations` merge by id (the caller's keys win; operations only the caller names are added). */
void pt_import_overlay(json_t *api, const json_t *fields);

/* The configuration file: expands `import: {format, value | file, wsdlSelector}` of the API at
   seq->items[i] into its schemas and operations, the keys written beside it winning.  Errors name
   the import's position. */
bool pt_import_expand(struct pt_cfctx *cx, struct pt_node *seq, int i);

/* The converters (one file each). */
bool pt_import_openapi_convert(const char *text, size_t len, const char *base_dir, struct pt_import_doc *out,
                               char *err, size_t errlen);
bool pt_import_wsdl_convert(const char *text, size_t len, const char *service, const char *endpoint,
                            struct pt_import_doc *out, char *err, size_t errlen);
bool pt_import_odata_convert(const char *text, size_t len, struct pt_import_doc *out, char *err,
                             size_t errlen);
bool pt_import_graphql_convert(const char *text, size_t len, struct pt_import_doc *out, char *err,
                               size_t errlen);
/* A gRPC API from a .proto file (pt_import_proto.c); errors read "line:column: message". */
bool pt_import_proto_convert(const char *text, size_t len, struct pt_import_doc *out, char *err,
                             size_t errlen);
/* The parser alone: the file as {syntax | edition, package?, imports: [...], messages: [{name,
   fullName, description?, fields: [{name, number, type, label?, map?: {key, value}, oneof?}],
   messages, enums}], enums: [{name, fullName, values: [{name, number}]}], services: [{name,
   fullName, description?, methods: [{name, description?, requestType, responseType (full names when
   defined in the file), clientStreaming, serverStreaming}]}]}; warnings (if not NULL) get strings.
   NULL with err on an error. */
json_t *pt_import_proto_parse(const char *text, size_t len, json_t *warnings, char *err, size_t errlen);
/* "unary", "server-streaming", "client-streaming" or "bidi-streaming". */
const char *pt_import_proto_kind(bool client_streaming, bool server_streaming);
/* The content type the .proto is kept under as the API's schema. */
#define PT_IMPORT_PROTO_CONTENT_TYPE "text/x-protobuf"

/* The definitions kept as text among an API's schemas (WSDL, GraphQL SDL, .proto): what the
   management API exports and the portal offers for download. */
struct pt_import_text {
    const char *format;      /* the import and export format ("wsdl", "graphql", "grpc") */
    const char *download;    /* the portal's ?format= for it ("proto" for grpc) */
    const char *schema_type; /* the contentType of the schema holding it */
    const char *media_type;  /* the Content-Type it is served with */
    const char *ext;         /* the file name's extension */
    const char *label;       /* for people */
};
extern const struct pt_import_text pt_import_texts[]; /* ends with a NULL format */
/* The entry whose format or download name is `name`, or NULL. */
const struct pt_import_text *pt_import_text_find(const char *name);
/* The API's text of that kind (its first schema of that contentType holding a `value`), or NULL. */
const char *pt_import_text_of(const json_t *api, const struct pt_import_text *t);

/* The introspection query graphql-link POSTs to the backend. */
extern const char pt_import_graphql_introspection_query[];

#endif
