/*
 * fuzz_import_openapi -- the OpenAPI importer (pt_import_openapi_convert) on
 * arbitrary bytes, as an API definition uploaded to the management API:
 * JSON or YAML, any version, broken $refs, loops, deep nesting.
 *
 * The first byte chooses which exports to try, and whether the bytes are
 * also exported directly as a stored API (JSON); the rest is the document.
 * Whatever the bytes, a conversion either succeeds with both results set or
 * fails with a message and neither; what succeeds is exported (3.0.1 and
 * 2.0) and the export imported again, so the exporter sees every shape the
 * importer can produce.  No file is ever read (no base directory).
 */
#include "conf/pt_export_openapi.h"
#include "conf/pt_import_openapi.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void reimport(json_t *api, int version)
{
    json_t *doc = pt_export_openapi_build(api, version, "https://gw.example/x");
    if (!doc)
        abort(); /* an imported API is always an object */
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!text)
        return;
    struct pt_import_doc d;
    char err[512];
    if (pt_import_openapi_convert(text, strlen(text), NULL, &d, err, sizeof(err))) {
        json_decref(d.api);
        json_decref(d.warnings);
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* the first byte: bit 0 re-import an OpenAPI 3.0.1 export, bit 1 a Swagger 2.0 one,
       bit 2 export the bytes themselves as a stored API, bit 3 without a server URL */
    unsigned pick = data[0];
    data++;
    size--;
    char *text = malloc(size ? size : 1); /* exactly the bytes: no terminator to lean on */
    if (!text)
        return 0;
    memcpy(text, data, size);
    if (pick & 4) {
        /* the bytes as a stored API (as written by hand through the management API), exported */
        json_t *api = json_loadb(text, size, 0, NULL);
        if (json_is_object(api))
            for (int v = 2; v <= 3; v++) {
                json_t *doc = pt_export_openapi_build(api, v, (pick & 8) ? NULL : "http://h:1/b/");
                if (!json_is_object(doc))
                    abort();
                json_decref(doc);
            }
        json_decref(api);
    }
    struct pt_import_doc d = {(json_t *)1, (json_t *)1};
    char err[512];
    memset(err, 'x', sizeof(err));
    bool ok = pt_import_openapi_convert(text, size, NULL, &d, err, sizeof(err));
    if (!memchr(err, '\0', sizeof(err)))
        abort(); /* an unterminated message */
    if (ok) {
        if (!json_is_object(d.api) || !json_is_array(d.warnings) ||
            !json_is_array(json_object_get(d.api, "operations")))
            abort();
        if (pick & 1)
            reimport(d.api, 3);
        if (pick & 2)
            reimport(d.api, 2);
        json_decref(d.api);
        json_decref(d.warnings);
    } else if (d.api || d.warnings || !err[0])
        abort(); /* a failure without its message, or with results */
    free(text);
    return 0;
}

/* Seeds for the standalone runner (standalone.c). */
const char *fuzz_name = "fuzz_import_openapi";
const char *const fuzz_seeds[] = {
    "openapi: 3.0.0\ninfo: {title: T}\nservers: [{url: 'https://{h}.example', variables: {h: {default: "
    "a}}}]\n"
    "paths:\n  /p/{id}:\n    parameters: [{name: id, in: path, required: true, schema: {type: integer}}]\n"
    "    get:\n      operationId: getP\n      parameters:\n        - {name: q, in: query, required: true, "
    "schema: "
    "{$ref: '#/components/schemas/S'}}\n        - {name: c, in: cookie}\n      responses:\n        '200':\n"
    "          description: ok\n          headers: {X: {schema: {type: string}}}\n          content: "
    "{application/json: {schema: {$ref: '#/components/schemas/S'}, example: {a: 1}}}\n        default: "
    "{$ref: "
    "'#/components/responses/E'}\n    post:\n      requestBody: {content: {text/plain: {schema: {type: "
    "string}}}}\n"
    "      responses: {}\ncomponents:\n  schemas:\n    S: {type: object, properties: {s: {$ref: "
    "'#/components/schemas/S'}}}\n  responses:\n    E: {description: e}\n",
    "{\"swagger\": \"2.0\", \"host\": \"h\", \"basePath\": \"/b\", \"consumes\": [\"application/json\"], "
    "\"paths\": {\"/a\": {\"post\": {\"parameters\": [{\"in\": \"body\", \"name\": \"b\", \"schema\": "
    "{\"$ref\": "
    "\"#/definitions/D\"}}, {\"in\": \"formData\", \"name\": \"f\", \"type\": \"string\"}, {\"in\": "
    "\"query\", "
    "\"name\": \"n\", \"required\": true, \"type\": \"integer\", \"enum\": [1, 2]}], \"responses\": "
    "{\"200\": "
    "{\"description\": \"ok\", \"schema\": {\"type\": \"array\", \"items\": {\"$ref\": "
    "\"#/definitions/D\"}}, "
    "\"examples\": {\"application/json\": []}}}}}}, \"definitions\": {\"D\": {\"type\": \"object\"}}}",
    "openapi: 3.1.0\nwebhooks: {}\npaths:\n  /x: {$ref: '#/components/pathItems/X'}\ncomponents:\n  "
    "pathItems:\n"
    "    X: {get: {parameters: [{$ref: '#/components/parameters/a'}]}}\n  parameters:\n    a: {$ref: "
    "'#/components/parameters/a'}\n",
    "openapi: 3.0.0\nx-ms-paths: {'/r?op=1&id={id}': {get: {parameters: [{name: id, in: query, required: "
    "true}]}}}\n"
    "paths: {/r: {get: {}}, /a/{x}: {get: {}}, /a/{y}: {get: {}}}\n",
    "openapi: 3.0.0\npaths: {/a: {get: {responses: {'200': {content: {a/b: {schema: {$ref: "
    "'#/paths/~1a/get/responses/200/content/a~1b/schema'}}}}}}}}\n",
    "a: &a [*a]\n",
    "{\"openapi\": \"3.0.0\", \"paths\": {\"/\\u0000\": {}}}",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    "{\"id\": \"h\", \"operations\": [{\"id\": \"a\", \"method\": \"GET\", \"urlTemplate\": "
    "\"/a/{x}?q={q}&lit=1\", \"templateParameters\": [{\"name\": \"x\", \"type\": \"integer\", "
    "\"defaultValue\": \"1e999\"}], \"request\": {\"representations\": [{\"contentType\": \"a/b\", "
    "\"formParameters\": [{\"name\": \"f\"}]}]}, \"responses\": [{\"statusCode\": 200, "
    "\"representations\": [{\"contentType\": \"x/y\", \"typeName\": \"T\", \"schemaId\": \"s\"}]}]}], "
    "\"schemas\": [{\"id\": \"s\", \"contentType\": \"application/schema+json\", \"document\": "
    "{\"definitions\": {\"T\": {\"$ref\": \"#/definitions/T\"}}}}]}",
    NULL,
};
