/*
 * test_openapi -- the OpenAPI import (pt_import_openapi_convert) and export
 * (pt_export_openapi_build): the shared sample documents, small documents
 * written here for 2.0 / 3.0 / 3.1, the naming rules, warnings, every kind
 * of error with its pointer, $refs to files (and the ones refused),
 * recursion, the bounds, the export's round trip and a 1,000-operation
 * document's time.
 */
#include "conf/pt_export_openapi.h"
#include "conf/pt_import_openapi.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static json_t *warnings;

static json_t *import_base(const char *text, const char *base)
{
    struct pt_import_doc d;
    char err[1024];
    bool ok = pt_import_openapi_convert(text, strlen(text), base, &d, err, sizeof(err));
    if (!ok)
        print_message("# unexpected error: %s\n", err);
    assert_true(ok);
    assert_non_null(d.api);
    assert_non_null(d.warnings);
    json_decref(warnings);
    warnings = d.warnings;
    return d.api;
}

static json_t *import(const char *text)
{
    return import_base(text, NULL);
}

/* Conversion fails with an error starting with `want`. */
static void refused_base(const char *text, size_t len, const char *base, const char *want)
{
    struct pt_import_doc d = {(json_t *)1, (json_t *)1};
    char err[1024];
    bool ok = pt_import_openapi_convert(text, len, base, &d, err, sizeof(err));
    print_message("# error: %s\n", ok ? "(none)" : err);
    assert_false(ok);
    assert_null(d.api);
    assert_null(d.warnings);
    if (strncmp(err, want, strlen(want)))
        fail_msg("error '%s' does not start with '%s'", err, want);
}

static void refused(const char *text, const char *want)
{
    refused_base(text, strlen(text), NULL, want);
}

static bool has_warning(const char *part)
{
    for (size_t i = 0; i < json_array_size(warnings); i++)
        if (strstr(json_string_value(json_array_get(warnings, i)), part))
            return true;
    return false;
}

static void expect_warning(const char *part)
{
    if (!has_warning(part)) {
        char *w = json_dumps(warnings, JSON_INDENT(1));
        fail_msg("no warning with '%s' in %s", part, w);
    }
}

static json_t *op(json_t *api, const char *id)
{
    json_t *ops = json_object_get(api, "operations");
    for (size_t i = 0; i < json_array_size(ops); i++)
        if (!strcmp(json_string_value(json_object_get(json_array_get(ops, i), "id")), id))
            return json_array_get(ops, i);
    fail_msg("no operation '%s'", id);
    return NULL;
}

static const char *str(json_t *o, const char *path)
{
    /* "a.b.0.c" */
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    json_t *cur = o;
    for (char *save = NULL, *t = strtok_r(buf, ".", &save); t; t = strtok_r(NULL, ".", &save)) {
        if (json_is_array(cur))
            cur = json_array_get(cur, (size_t)atoi(t));
        else
            cur = json_object_get(cur, t);
    }
    return json_is_string(cur) ? json_string_value(cur) : NULL;
}

static json_t *get(json_t *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    json_t *cur = o;
    for (char *save = NULL, *t = strtok_r(buf, ".", &save); t; t = strtok_r(NULL, ".", &save)) {
        if (json_is_array(cur))
            cur = json_array_get(cur, (size_t)atoi(t));
        else
            cur = json_object_get(cur, t);
    }
    return cur;
}

static void expect_str(json_t *o, const char *path, const char *want)
{
    const char *s = str(o, path);
    if (!s || strcmp(s, want))
        fail_msg("%s: '%s', expected '%s'", path, s ? s : "(absent)", want);
}

/* ------------------------------------------------------------- samples */

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    b[*len] = '\0';
    fclose(f);
    return b;
}

static void testdata_dir(char *buf, size_t size)
{
    const char *env = getenv("PORTICO_TESTDATA");
    if (env && *env)
        snprintf(buf, size, "%s/openapi", env);
    else
        snprintf(buf, size, "%s/../shared/testdata/openapi", PT_SRCDIR);
}

/* Operations of an import of the export must be the same operations. */
static void roundtrip(json_t *api, int version, bool exact)
{
    json_t *doc = pt_export_openapi_build(api, version, "https://gw.example/api");
    assert_non_null(doc);
    char *text = json_dumps(doc, JSON_INDENT(1));
    json_decref(doc);
    json_t *back = import(text);
    free(text);
    json_t *a = json_object_get(api, "operations"), *b = json_object_get(back, "operations");
    assert_int_equal(json_array_size(a), json_array_size(b));
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *x = json_array_get(a, i), *y = NULL;
        for (size_t j = 0; j < json_array_size(b) && !y; j++)
            if (!strcmp(str(json_array_get(b, j), "id"), str(x, "id")))
                y = json_array_get(b, j);
        if (!y)
            fail_msg("operation %s lost in the round trip", str(x, "id"));
        expect_str(y, "method", str(x, "method"));
        expect_str(y, "urlTemplate", str(x, "urlTemplate"));
        if (exact) {
            const char *keys[] = {"templateParameters", "request", "responses", "displayName", "description"};
            for (size_t k = 0; k < PT_ARRAY_LEN(keys); k++) {
                json_t *xv = json_object_get(x, keys[k]), *yv = json_object_get(y, keys[k]);
                if (xv != yv && !json_equal(xv, yv) && !(xv == NULL && !strcmp(keys[k], "responses"))) {
                    char *s1 = json_dumps(xv, JSON_INDENT(1) | JSON_ENCODE_ANY),
                         *s2 = json_dumps(yv, JSON_INDENT(1) | JSON_ENCODE_ANY);
                    fail_msg("%s of %s differs after the round trip:\n%s\n%s", keys[k], str(x, "id"), s1, s2);
                }
            }
        } else {
            json_t *xt = json_object_get(x, "templateParameters"),
                   *yt = json_object_get(y, "templateParameters");
            if (xt) /* a hand-written API may leave them out; the export declares them */
                assert_int_equal(json_array_size(xt), json_array_size(yt));
            for (size_t k = 0; k < json_array_size(xt); k++)
                assert_string_equal(str(json_array_get(yt, k), "name"), str(json_array_get(xt, k), "name"));
            assert_int_equal(json_array_size(get(x, "request.representations")),
                             json_array_size(get(y, "request.representations")));
        }
    }
    if (exact && json_object_get(api, "schemas"))
        assert_true(json_equal(get(api, "schemas.0.document"), get(back, "schemas.0.document")));
    json_decref(back);
}

static void test_samples(void **state)
{
    (void)state;
    char dir[1024];
    testdata_dir(dir, sizeof(dir));
    DIR *d = opendir(dir);
    if (!d) {
        print_message("# SKIP: no OpenAPI samples at %s (set PORTICO_TESTDATA)\n", dir);
        skip();
        return;
    }
    struct {
        const char *file;
        int ops;
        const char *first;
        const char *url;
        int warnings;
    } want[] = {
        {"v2.0-petstore.json", 3, "listpets", "http://petstore.swagger.io/v1", 0},
        {"v2.0-petstore-expanded.json", 4, "findpets", "http://petstore.swagger.io/api", 0},
        {"v2.0-uber.json", 5, "get-products", "https://api.uber.com/v1", 0},
        {"v3.0-petstore.yaml", 3, "listpets", "http://petstore.swagger.io/v1", 0},
        {"v3.0-petstore-expanded.json", 4, "findpets", "https://petstore.swagger.io/v2", 0},
        {"v3.1-non-oauth-scopes.yaml", 1, "get-users", NULL, 2},
    };
    int seen = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".json") && !strstr(e->d_name, ".yaml"))
            continue;
        char path[2048];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        size_t len = 0;
        char *text = read_all(path, &len);
        assert_non_null(text);
        struct pt_import_doc doc;
        char err[1024];
        bool ok = pt_import_openapi_convert(text, len, dir, &doc, err, sizeof(err));
        free(text);
        if (!ok)
            fail_msg("%s: %s", e->d_name, err);
        json_decref(warnings);
        warnings = doc.warnings;
        print_message("# %s: %zu operations, %zu warnings\n", e->d_name,
                      json_array_size(json_object_get(doc.api, "operations")), json_array_size(doc.warnings));
        for (size_t i = 0; i < PT_ARRAY_LEN(want); i++) {
            if (strcmp(want[i].file, e->d_name))
                continue;
            seen++;
            assert_int_equal(json_array_size(json_object_get(doc.api, "operations")), want[i].ops);
            expect_str(doc.api, "operations.0.id", want[i].first);
            if (want[i].url)
                expect_str(doc.api, "serviceUrl", want[i].url);
            else
                assert_null(json_object_get(doc.api, "serviceUrl"));
            assert_int_equal(json_array_size(doc.warnings), want[i].warnings);
        }
        roundtrip(doc.api, 3, strstr(e->d_name, "v3.0") != NULL);
        roundtrip(doc.api, 2, strstr(e->d_name, "v2.0") != NULL);
        json_decref(doc.api);
    }
    closedir(d);
    assert_int_equal(seen, (int)PT_ARRAY_LEN(want));
}

/* ------------------------------------------------------------- 3.0 */

static const char *doc30 =
    "openapi: 3.0.3\n"
    "info:\n"
    "  title: Pet Store\n"
    "  description: Pets\n"
    "servers:\n"
    "  - url: http://plain.example/v1\n"
    "  - url: https://{region}.example/{base}/\n"
    "    variables:\n"
    "      region: {default: eu}\n"
    "      base: {default: v2}\n"
    "paths:\n"
    "  /pets/{petId}:\n"
    "    parameters:\n"
    "      - {name: petId, in: path, required: true, schema: {type: integer}}\n"
    "      - {name: trace, in: header, schema: {type: string}}\n"
    "    get:\n"
    "      operationId: getPet\n"
    "      summary: One pet\n"
    "      description: Returns one pet\n"
    "      parameters:\n"
    "        - name: petId\n"
    "          in: path\n"
    "          required: true\n"
    "          description: the id\n"
    "          schema: {type: string, pattern: '^[0-9]+$', minLength: 1, maxLength: 9}\n"
    "        - name: fields\n"
    "          in: query\n"
    "          required: true\n"
    "          schema: {type: string, enum: [all, some], default: all}\n"
    "          example: all\n"
    "        - $ref: '#/components/parameters/limit'\n"
    "        - {name: sid, in: cookie, schema: {type: string}}\n"
    "      requestBody:\n"
    "        content:\n"
    "          application/json: {schema: {type: object}}\n"
    "      security: [{key: []}]\n"
    "      responses:\n"
    "        '200':\n"
    "          description: the pet\n"
    "          headers:\n"
    "            X-Rate: {description: rate, required: true, schema: {type: integer, "
    "minimum: 0}}\n"
    "            X-Ref: {$ref: '#/components/headers/Ref'}\n"
    "          content:\n"
    "            application/json:\n"
    "              schema: {$ref: '#/components/schemas/Pet'}\n"
    "              examples:\n"
    "                rex: {summary: a dog, value: {id: 1, name: Rex}}\n"
    "                ref: {$ref: '#/components/examples/cat'}\n"
    "            application/xml:\n"
    "              schema: {type: array, items: {$ref: '#/components/schemas/Pet'}}\n"
    "              example: '<pets/>'\n"
    "        2XX: {description: any success}\n"
    "        default: {$ref: '#/components/responses/Problem'}\n"
    "    put:\n"
    "      operationId: putPet\n"
    "      requestBody: {$ref: '#/components/requestBodies/PetBody'}\n"
    "      responses:\n"
    "        '204': {description: done}\n"
    "components:\n"
    "  schemas:\n"
    "    Pet:\n"
    "      type: object\n"
    "      properties:\n"
    "        id: {type: integer}\n"
    "        name: {type: string}\n"
    "        parent: {$ref: '#/components/schemas/Pet'}\n"
    "  parameters:\n"
    "    limit: {name: limit, in: query, schema: {type: integer, maximum: 50, default: 20}}\n"
    "  headers:\n"
    "    Ref: {schema: {type: string}}\n"
    "  examples:\n"
    "    cat: {description: a cat, value: {id: 2, name: Tom}}\n"
    "  responses:\n"
    "    Problem:\n"
    "      description: problem\n"
    "      content:\n"
    "        application/problem+json: {schema: {type: object}}\n"
    "  requestBodies:\n"
    "    PetBody:\n"
    "      description: a pet\n"
    "      content:\n"
    "        application/json: {schema: {$ref: '#/components/schemas/Pet'}}\n"
    "  securitySchemes:\n"
    "    key: {type: apiKey, in: header, name: k}\n"
    "security: [{key: []}]\n";

static void test_v30(void **state)
{
    (void)state;
    json_t *api = import(doc30);
    expect_str(api, "displayName", "Pet Store");
    expect_str(api, "description", "Pets");
    expect_str(api, "apiType", "http");
    expect_str(api, "serviceUrl", "https://eu.example/v2");
    assert_null(json_object_get(api, "path"));
    assert_null(json_object_get(api, "id"));
    expect_str(api, "schemas.0.id", "openapi");
    expect_str(api, "schemas.0.contentType", "application/vnd.oai.openapi.components+json");
    expect_str(api, "schemas.0.document.components.schemas.Pet.properties.parent.$ref",
               "#/components/schemas/Pet");
    assert_int_equal(json_array_size(json_object_get(api, "operations")), 2);

    json_t *g = op(api, "getpet");
    expect_str(g, "method", "GET");
    expect_str(g, "urlTemplate", "/pets/{petId}?fields={fields}");
    expect_str(g, "displayName", "One pet");
    expect_str(g, "description", "Returns one pet");
    /* the operation's petId wins over the path item's */
    expect_str(g, "templateParameters.0.name", "petId");
    expect_str(g, "templateParameters.0.type", "string");
    expect_str(g, "templateParameters.0.description", "the id");
    assert_true(json_is_true(get(g, "templateParameters.0.required")));
    expect_str(g, "templateParameters.0.schema.pattern", "^[0-9]+$");
    assert_int_equal(json_integer_value(get(g, "templateParameters.0.schema.maxLength")), 9);
    /* a required query parameter is a template parameter */
    expect_str(g, "templateParameters.1.name", "fields");
    expect_str(g, "templateParameters.1.values.1", "some");
    expect_str(g, "templateParameters.1.defaultValue", "all");
    expect_str(g, "templateParameters.1.examples.default.value", "all");
    /* the optional one from components, with its default as text */
    expect_str(g, "request.queryParameters.0.name", "limit");
    expect_str(g, "request.queryParameters.0.type", "integer");
    assert_false(json_is_true(get(g, "request.queryParameters.0.required")));
    expect_str(g, "request.queryParameters.0.defaultValue", "20");
    assert_int_equal(json_integer_value(get(g, "request.queryParameters.0.schema.maximum")), 50);
    /* the path item's header */
    expect_str(g, "request.headers.0.name", "trace");
    /* GET drops its body */
    assert_null(get(g, "request.representations"));
    expect_warning("/paths/~1pets~1{petId}/get: a request body is not allowed for GET; dropped");
    expect_warning(
        "/paths/~1pets~1{petId}/get/parameters/3: cookie parameter 'sid' is not supported by APIM");
    expect_warning("/paths/~1pets~1{petId}/get/security: security requirements are not supported");
    expect_warning("/components/securitySchemes/key: security scheme 'key' is not supported");
    expect_warning("/security: security requirements");
    expect_warning("/paths/~1pets~1{petId}/get/responses/2XX: status code range '2XX' is not supported");
    /* responses */
    json_t *r = get(g, "responses");
    assert_int_equal(json_array_size(r), 2);
    assert_int_equal(json_integer_value(get(r, "0.statusCode")), 200);
    expect_str(r, "0.description", "the pet");
    expect_str(r, "0.headers.0.name", "X-Rate");
    expect_str(r, "0.headers.0.type", "integer");
    assert_true(json_is_true(get(r, "0.headers.0.required")));
    expect_str(r, "0.headers.1.name", "X-Ref");
    expect_str(r, "0.headers.1.type", "string");
    expect_str(r, "0.representations.0.contentType", "application/json");
    expect_str(r, "0.representations.0.schemaId", "openapi");
    expect_str(r, "0.representations.0.typeName", "Pet");
    assert_null(get(r, "0.representations.0.schema"));
    expect_str(r, "0.representations.0.examples.rex.summary", "a dog");
    expect_str(r, "0.representations.0.examples.rex.value.name", "Rex");
    expect_str(r, "0.representations.0.examples.ref.description", "a cat");
    expect_str(r, "0.representations.0.examples.ref.value.name", "Tom");
    expect_str(r, "0.representations.1.schema.items.$ref", "#/components/schemas/Pet");
    expect_str(r, "0.representations.1.examples.default.value", "<pets/>");
    expect_str(r, "1.statusCode", "default");
    expect_str(r, "1.description", "problem");
    expect_str(r, "1.representations.0.contentType", "application/problem+json");

    json_t *p = op(api, "putpet");
    expect_str(p, "displayName", "putPet");
    expect_str(p, "request.description", "a pet");
    expect_str(p, "request.representations.0.typeName", "Pet");
    /* the path item's parameters apply to every operation */
    expect_str(p, "templateParameters.0.type", "integer");
    expect_str(p, "request.headers.0.name", "trace");
    roundtrip(api, 3, true);
    roundtrip(api, 2, false);
    json_decref(api);
}

/* ------------------------------------------------------------- 2.0 */

static const char *doc20 =
    "{\"swagger\": \"2.0\", \"info\": {\"title\": \"Old\", \"version\": \"1\"},\n"
    " \"host\": \"old.example:8443\", \"basePath\": \"/base/\", \"schemes\": [\"http\", "
    "\"https\"],\n"
    " \"consumes\": [\"application/json\", \"text/xml\"], \"produces\": "
    "[\"application/json\"],\n"
    " \"securityDefinitions\": {\"basic\": {\"type\": \"basic\"}},\n"
    " \"paths\": {\"/items\": {\n"
    "   \"post\": {\"operationId\": \"add_item\", \"parameters\": [\n"
    "     {\"name\": \"body\", \"in\": \"body\", \"description\": \"the item\", \"schema\": "
    "{\"$ref\": \"#/definitions/Item\"}},\n"
    "     {\"name\": \"n\", \"in\": \"query\", \"required\": true, \"type\": \"integer\", "
    "\"minimum\": 1, \"maximum\": 9, \"default\": 2},\n"
    "     {\"name\": \"tags\", \"in\": \"query\", \"type\": \"array\", \"items\": {\"type\": "
    "\"string\"}, \"enum\": [\"a\", \"b\"]}],\n"
    "     \"responses\": {\"201\": {\"description\": \"made\", \"schema\": {\"$ref\": "
    "\"#/definitions/Item\"},\n"
    "        \"headers\": {\"Location\": {\"type\": \"string\", \"format\": \"uri\"}},\n"
    "        \"examples\": {\"application/json\": {\"id\": 7}}}}},\n"
    "   \"put\": {\"consumes\": [\"multipart/form-data\"], \"produces\": [\"text/plain\"],\n"
    "     \"parameters\": [{\"name\": \"file\", \"in\": \"formData\", \"type\": \"file\", "
    "\"required\": true}],\n"
    "     \"responses\": {\"200\": {\"description\": \"ok\", \"schema\": {\"type\": "
    "\"string\"}}}}}},\n"
    " \"definitions\": {\"Item\": {\"type\": \"object\", \"properties\": {\"id\": {\"type\": "
    "\"integer\"}, \"sub\": {\"$ref\": \"#/definitions/Item\"}}}}}\n";

static void test_v20(void **state)
{
    (void)state;
    json_t *api = import(doc20);
    expect_str(api, "serviceUrl", "https://old.example:8443/base");
    expect_str(api, "schemas.0.contentType", "application/vnd.ms-azure-apim.swagger.definitions+json");
    expect_str(api, "schemas.0.document.definitions.Item.properties.sub.$ref", "#/definitions/Item");
    json_t *a = op(api, "add-item");
    expect_str(a, "urlTemplate", "/items?n={n}");
    expect_str(a, "templateParameters.0.type", "integer");
    expect_str(a, "templateParameters.0.defaultValue", "2");
    assert_int_equal(json_integer_value(get(a, "templateParameters.0.schema.minimum")), 1);
    expect_str(a, "request.queryParameters.0.type", "array");
    expect_str(a, "request.queryParameters.0.values.0", "a");
    expect_str(a, "request.description", "the item");
    /* the body, once per `consumes` */
    expect_str(a, "request.representations.0.contentType", "application/json");
    expect_str(a, "request.representations.0.typeName", "Item");
    expect_str(a, "request.representations.1.contentType", "text/xml");
    expect_str(a, "responses.0.representations.0.contentType", "application/json");
    expect_str(a, "responses.0.representations.0.typeName", "Item");
    assert_int_equal(json_integer_value(get(a, "responses.0.representations.0.examples.default.value.id")),
                     7);
    expect_str(a, "responses.0.headers.0.name", "Location");
    expect_str(a, "responses.0.headers.0.schema.format", "uri");
    json_t *p = op(api, "put-items");
    expect_str(p, "displayName", "PUT /items");
    expect_str(p, "request.representations.0.contentType", "multipart/form-data");
    expect_str(p, "request.representations.0.formParameters.0.name", "file");
    expect_str(p, "request.representations.0.formParameters.0.type", "file");
    expect_str(p, "responses.0.representations.0.contentType", "text/plain");
    expect_warning("/paths/~1items/put/parameters/0: form parameter 'file' is not supported");
    expect_warning("/securityDefinitions/basic: security scheme 'basic'");
    /* 3.0 export rewrites the definitions' refs */
    json_t *doc = pt_export_openapi_build(api, 3, NULL);
    expect_str(doc, "components.schemas.Item.properties.sub.$ref", "#/components/schemas/Item");
    expect_str(doc, "paths./items.post.requestBody.content.application/json.schema.$ref",
               "#/components/schemas/Item");
    assert_null(json_object_get(doc, "servers"));
    json_decref(doc);
    roundtrip(api, 2, false);
    roundtrip(api, 3, false);
    json_decref(api);

    /* YAML's unquoted 2.0 is a number; no host: no service URL; no schemes: https */
    api =
        import("swagger: 2.0\ninfo: {title: t}\npaths: {/a: {get: {responses: {200: {description: ok}}}}}\n");
    assert_null(json_object_get(api, "serviceUrl"));
    assert_null(json_object_get(api, "schemas"));
    expect_str(api, "operations.0.id", "get-a");
    json_decref(api);
    api = import("swagger: '2.0'\nhost: h.example\npaths: {}\n");
    expect_str(api, "serviceUrl", "https://h.example");
    json_decref(api);
    /* x-servers instead of host */
    api = import("swagger: '2.0'\nhost: h.example\nx-servers: [{url: 'http://x.example/api/'}]\npaths: {}\n");
    expect_str(api, "serviceUrl", "http://x.example/api");
    json_decref(api);
}

/* ------------------------------------------------------------- 3.1 */

static void test_v31(void **state)
{
    (void)state;
    json_t *api =
        import("openapi: 3.1.0\n"
               "info: {title: New}\n"
               "webhooks: {ping: {post: {responses: {'200': {description: ok}}}}}\n"
               "paths:\n"
               "  /things/{id}:\n"
               "    get:\n"
               "      parameters:\n"
               "        - {name: id, in: path, required: true, schema: {type: [string, 'null']}}\n"
               "        - {name: q, in: query, content: {application/json: {schema: {type: object}}}}\n"
               "      responses:\n"
               "        '200':\n"
               "          description: ok\n"
               "          content:\n"
               "            application/json:\n"
               "              schema: {$ref: '#/components/schemas/Thing', description: a thing}\n"
               "  /shared: {$ref: '#/components/pathItems/Shared'}\n"
               "components:\n"
               "  schemas:\n"
               "    Thing: {type: object, properties: {n: {type: [integer, 'null']}}}\n"
               "  pathItems:\n"
               "    Shared:\n"
               "      parameters: [{name: v, in: header, required: true, schema: {type: string}}]\n"
               "      delete: {operationId: dropShared, parameters: [{name: c, in: cookie}]}\n");
    json_t *g = op(api, "get-things-id");
    expect_str(g, "templateParameters.0.type", "string");
    expect_str(g, "request.queryParameters.0.type", "object");
    expect_str(g, "responses.0.representations.0.typeName", "Thing");
    expect_warning("/webhooks: webhooks are not supported");
    /* a path item from components: named by its path, reported where it is */
    json_t *del = op(api, "dropshared");
    expect_str(del, "urlTemplate", "/shared");
    expect_str(del, "request.headers.0.name", "v");
    expect_warning("/components/pathItems/Shared/delete/parameters/0: cookie parameter 'c'");
    roundtrip(api, 3, true);
    json_decref(api);

    /* schema names that need escaping in a pointer, and percent-encoding */
    api = import("openapi: 3.1.0\n"
                 "paths:\n"
                 "  /e:\n"
                 "    post:\n"
                 "      requestBody: {content: {a/b: {schema: {$ref: '#/components/schemas/a~1b%7E0c'}}}}\n"
                 "components: {schemas: {'a/b~c': {type: string}}}\n");
    expect_str(api, "operations.0.request.representations.0.typeName", "a/b~c");
    expect_str(api, "operations.0.request.representations.0.contentType", "a/b");
    json_decref(api);
}

/* ------------------------------------------------------------- names */

static void test_naming(void **state)
{
    (void)state;
    char long_id[200];
    memset(long_id, 'A', 100);
    long_id[100] = '\0';
    char summary[701];
    for (int i = 0; i < 350; i++)
        memcpy(summary + 2 * i, "\xc3\xa9", 2); /* 350 e-acute */
    summary[700] = '\0';
    char text[4096];
    snprintf(text, sizeof(text),
             "openapi: 3.0.0\n"
             "paths:\n"
             "  /a:\n"
             "    get: {operationId: '  Get Pets!!By--ID__ ', responses: {}}\n"
             "    put: {operationId: 'get pets by id', responses: {}}\n"
             "    post: {operationId: 'GET_PETS_BY_ID', responses: {}}\n"
             "    delete: {operationId: '%s', summary: \"%s\", responses: {}}\n"
             "    patch: {operationId: '!!!', responses: {}}\n"
             "  /pets/{petId}/Owner.Name:\n"
             "    get: {responses: {}}\n"
             "    head: {summary: '', responses: {}}\n"
             "  /a/{b}:\n"
             "    options: {operationId: get-pets-by-id, responses: {}}\n",
             long_id, summary);
    json_t *api = import(text);
    json_t *ops = json_object_get(api, "operations");
    assert_int_equal(json_array_size(ops), 8);
    expect_str(ops, "0.id", "get-pets-by-id");
    expect_str(ops, "0.displayName", "  Get Pets!!By--ID__ ");
    expect_str(ops, "1.id", "get-pets-by-id-2");
    expect_str(ops, "2.id", "get-pets-by-id-3");
    assert_int_equal(strlen(str(ops, "3.id")), 76);
    /* 300 characters, not bytes */
    assert_int_equal(strlen(str(ops, "3.displayName")), 600);
    expect_str(ops, "4.id", "patch-a");
    expect_str(ops, "4.displayName", "!!!");
    expect_str(ops, "5.id", "get-pets-petid-owner-name");
    expect_str(ops, "5.displayName", "GET /pets/{petId}/Owner.Name");
    expect_str(ops, "6.id", "head-pets-petid-owner-name");
    expect_str(ops, "7.id", "get-pets-by-id-4");
    assert_null(json_object_get(api, "displayName"));
    json_decref(api);
}

/* ---------------------------------------------------- paths and servers */

static void test_paths(void **state)
{
    (void)state;
    /* YAML in flow style starts like JSON */
    json_t *flow = import("{openapi: 3.0.0, info: {title: Flow}, paths: {/f: {get: {operationId: f}}}}");
    expect_str(flow, "displayName", "Flow");
    expect_str(flow, "operations.0.id", "f");
    json_decref(flow);
    json_t *api = import("openapi: 3.0.1\n"
                         "servers: [{url: /relative}]\n"
                         "x-custom: ignored\n"
                         "paths:\n"
                         "  x-note: {}\n"
                         "  /r/{id}:\n"
                         "    get:\n"
                         "      parameters:\n"
                         "        - {name: other, in: path, required: true, schema: {type: string}}\n"
                         "        - {name: must, in: query, required: true, schema: {type: string}}\n"
                         "      responses: {}\n"
                         "    post: {$ref: '#/nothing', responses: {}}\n"
                         "x-ms-paths:\n"
                         "  /r?op=list:\n"
                         "    get:\n"
                         "      operationId: list\n"
                         "      parameters:\n"
                         "        - {name: must, in: query, required: true, schema: {type: string}}\n"
                         "      responses: {}\n"
                         "  /r?op=one&id={id}:\n"
                         "    get:\n"
                         "      operationId: one\n"
                         "      parameters:\n"
                         "        - {name: id, in: query, required: true, schema: {type: integer}}\n"
                         "      responses: {}\n");
    assert_null(json_object_get(api, "serviceUrl"));
    expect_warning("/servers/0: server URL '/relative' is not absolute");
    json_t *g = op(api, "get-r-id");
    expect_str(g, "urlTemplate", "/r/{id}?must={must}");
    expect_str(g, "templateParameters.0.name", "id");
    expect_warning("/paths/~1r~1{id}/get: template parameter 'id' is not declared");
    expect_warning("/paths/~1r~1{id}/get/parameters/0: path parameter 'other' is not in the path template");
    expect_str(op(api, "list"), "urlTemplate", "/r?op=list&must={must}");
    /* a template query parameter already in the path is not added twice */
    json_t *one = op(api, "one");
    expect_str(one, "urlTemplate", "/r?op=one&id={id}");
    expect_str(one, "templateParameters.0.type", "integer");
    roundtrip(api, 3, true);
    json_decref(api);
}

/* ------------------------------------------------------------- errors */

static void test_errors(void **state)
{
    (void)state;
    refused("openapi: 3.0.0\n"
            "paths:\n"
            "  /pets:\n"
            "    get:\n"
            "      responses:\n"
            "        '200':\n"
            "          description: ok\n"
            "          content:\n"
            "            application/json:\n"
            "              schema: {$ref: '#/components/schemas/Nope'}\n",
            "/paths/~1pets/get/responses/200/content/application~1json/schema/$ref: $ref "
            "'#/components/schemas/Nope' does not resolve");
    refused(
        "openapi: 3.0.0\npaths:\n  /p:\n    get:\n      parameters: [{$ref: '#/components/parameters/x'}]\n",
        "/paths/~1p/get/parameters/0/$ref: $ref '#/components/parameters/x' does not resolve");
    refused("openapi: 3.0.0\npaths: {pets: {}}\n", "/paths/pets: the path 'pets' does not start with '/'");
    refused("openapi: 3.0.0\n"
            "paths:\n"
            "  /a/{x}: {get: {parameters: [{name: x, in: path, required: true}], responses: {}}}\n"
            "  /a/{y}: {get: {parameters: [{name: y, in: path, required: true}], responses: {}}}\n",
            "/paths/~1a~1{y}/get: GET /a/{y} is the same operation as /paths/~1a~1{x}/get");
    refused("openapi: 4.0.0\npaths: {}\n", "/openapi: unsupported OpenAPI version \"4.0.0\"");
    refused("{\"openapi\": 3, \"paths\": {}}", "/openapi: unsupported OpenAPI version 3");
    refused("swagger: '1.2'\n", "/swagger: unsupported Swagger version \"1.2\"");
    refused("[1, 2]", "/: the document is not an object");
    refused("just text\n", "/: the document is not an object");
    refused("{\"info\": {}}", "/: not an OpenAPI document");
    refused("openapi: 3.0.0\ninfo: 5\n", "/info: must be an object");
    refused("openapi: 3.0.0\npaths: {/a: {get: 5}}\n", "/paths/~1a/get: an operation must be an object");
    refused("openapi: 3.0.0\npaths: {/a: {get: {parameters: [{in: query}]}}}\n",
            "/paths/~1a/get/parameters/0: a parameter needs a string 'name' and 'in'");
    refused("openapi: 3.0.0\npaths: {/a: {get: {responses: {'abc': {}}}}}\n",
            "/paths/~1a/get/responses/abc: 'abc' is not a status code");
    refused("openapi: 3.0.0\npaths:\n  /a/{b:\n    get: {}\n",
            "/paths/~1a~1{b/get: the path template's braces");
    refused(
        "openapi: 3.0.0\npaths:\n  /a/{b}:\n    get: {parameters: [{name: b, in: query, required: true}]}\n",
        "/paths/~1a~1{b}/get/parameters/0: required query parameter 'b' cannot become a template parameter "
        "(the template has that name)");
    refused(
        "openapi: 3.0.0\npaths:\n  /a:\n    get: {parameters: [{name: 'x=1', in: query, required: true}]}\n",
        "/paths/~1a/get/parameters/0: required query parameter 'x=1' cannot become a template parameter");
    refused("openapi: 3.0.0\npaths:\n  /a/{b}/{b}:\n    get: {}\n",
            "/paths/~1a~1{b}~1{b}/get: the path template names 'b' twice");
    refused("openapi: 3.0.0\npaths: {/a: {get: {parameters: [{name: q, in: body}]}}}\n",
            "/paths/~1a/get/parameters/0: parameter 'q': unknown location 'in: body'");
    /* a loop of $refs */
    refused("openapi: 3.0.0\n"
            "paths: {/a: {get: {parameters: [{$ref: '#/components/parameters/a'}]}}}\n"
            "components: {parameters: {a: {$ref: '#/components/parameters/b'}, b: {$ref: "
            "'#/components/parameters/a'}}}\n",
            "/components/parameters/");
    /* syntax */
    refused("{\"openapi\": \"3.0.0\",\n \"info\": }", "line 2, column 10:");
    refused("openapi: 3.0.0\ninfo: [a,\n", "line 3, column 1:");
    refused("openapi: 3.0.0\nopenapi: 3.0.1\n", "line 2, column 1: duplicate key 'openapi'");
    refused("{\"openapi\": \"3.0.0\", \"openapi\": \"3.0.0\"}", "line 1, column ");
    /* an external $ref without a base directory */
    refused("openapi: 3.0.0\npaths: {/a: {get: {parameters: [{$ref: 'p.yaml#/x'}]}}}\n",
            "/paths/~1a/get/parameters/0/$ref: $ref 'p.yaml': references to other files are not allowed");
    refused("openapi: 3.0.0\npaths: {/a: {get: {parameters: [{$ref: 'https://evil.example/p.yaml'}]}}}\n",
            "/paths/~1a/get/parameters/0/$ref: $ref 'https://evil.example/p.yaml': references by URL");
}

/* ------------------------------------------------------------- bounds */

static void test_bounds(void **state)
{
    (void)state;
    /* size */
    size_t big = PT_IMPORT_OPENAPI_MAX_SIZE + 1;
    char *text = malloc(big + 1);
    memset(text, ' ', big);
    memcpy(text, "{}", 2);
    refused_base(text, big, NULL, "/: the document is 4194305 bytes, more than the limit");
    free(text);
    /* nesting, JSON and YAML */
    char deep[1024];
    size_t n = (size_t)snprintf(deep, sizeof(deep), "{\"openapi\": \"3.0.0\", \"x\": ");
    for (int i = 0; i < 70; i++)
        deep[n++] = '[';
    for (int i = 0; i < 70; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    refused(deep, "line 1, column 90: nested deeper than 64 levels");
    n = (size_t)snprintf(deep, sizeof(deep), "openapi: 3.0.0\nx: ");
    for (int i = 0; i < 70; i++)
        deep[n++] = '[';
    for (int i = 0; i < 70; i++)
        deep[n++] = ']';
    deep[n++] = '\n';
    deep[n] = '\0';
    refused(deep, "line 2, column ");
    /* $ref expansion work: a big inline schema referenced by many operations */
    json_t *props = json_object();
    for (int i = 0; i < 3000; i++) {
        char k[16];
        snprintf(k, sizeof(k), "p%d", i);
        json_object_set_new(props, k, json_pack("{s:s}", "type", "string"));
    }
    json_t *paths = json_object();
    for (int i = 0; i < 400; i++) {
        char p[32];
        snprintf(p, sizeof(p), "/r%d", i);
        json_object_set_new(
            paths, p,
            json_pack("{s:{s:{s:{s:s}}}}", "get", "responses", "200", "$ref", "#/components/responses/Big"));
    }
    json_t *doc = json_pack("{s:s,s:o,s:{s:{s:{s:s,s:{s:{s:{s:s,s:o}}}}}}}", "openapi", "3.0.0", "paths",
                            paths, "components", "responses", "Big", "description", "big", "content",
                            "application/json", "schema", "type", "object", "properties", props);
    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    refused(text, "/components/responses/Big");
    struct pt_import_doc d;
    char err[512];
    assert_false(pt_import_openapi_convert(text, strlen(text), NULL, &d, err, sizeof(err)));
    assert_non_null(strstr(err, "expanding $refs copies more than 2000000 nodes"));
    free(text);
    /* a long description behind a $ref is charged each time it is used */
    char *desc = malloc(600001);
    memset(desc, 'd', 600000);
    desc[600000] = '\0';
    paths = json_object();
    for (int i = 0; i < 300; i++) {
        char p[32];
        snprintf(p, sizeof(p), "/d%d", i);
        json_object_set_new(
            paths, p, json_pack("{s:{s:[{s:s}]}}", "get", "parameters", "$ref", "#/components/parameters/P"));
    }
    doc = json_pack("{s:s,s:o,s:{s:{s:{s:s,s:s,s:s}}}}", "openapi", "3.0.0", "paths", paths, "components",
                    "parameters", "P", "name", "p", "in", "query", "description", desc);
    free(desc);
    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    refused(text, "/components/parameters/P: expanding $refs copies more than 2000000 nodes");
    free(text);
    /* many warnings stay bounded; so do the parameters of one operation */
    json_t *params = json_array();
    for (int i = 0; i < 800; i++) {
        char k[16];
        snprintf(k, sizeof(k), "c%d", i);
        json_array_append_new(params, json_pack("{s:s,s:s}", "name", k, "in", "cookie"));
    }
    doc = json_pack("{s:s,s:{s:{s:O,s:{},s:{}}}}", "openapi", "3.0.0", "paths", "/a", "parameters", params,
                    "get", "post");
    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    json_t *api = import(text);
    free(text);
    assert_int_equal(json_array_size(warnings), 1001);
    json_decref(api);
    for (int i = 800; i < 1001; i++) {
        char k[16];
        snprintf(k, sizeof(k), "c%d", i);
        json_array_append_new(params, json_pack("{s:s,s:s}", "name", k, "in", "cookie"));
    }
    doc = json_pack("{s:s,s:{s:{s:{s:o}}}}", "openapi", "3.0.0", "paths", "/a", "get", "parameters", params);
    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    refused(text, "/paths/~1a/get/parameters/1000: more than 1000 parameters for one operation");
    free(text);
}

/* ------------------------------------------------------------- files */

static char tmpdir[256];

static void write_file(const char *rel, const char *content)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", tmpdir, rel);
    for (char *s = p + strlen(tmpdir) + 1; (s = strchr(s, '/')); s++) {
        *s = '\0';
        mkdir(p, 0700);
        *s = '/';
    }
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static void test_file_refs(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/pt_openapi_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    char base[300];
    snprintf(base, sizeof(base), "%s/api", tmpdir);
    write_file("api/common/pet.yaml", "Pet:\n"
                                      "  type: object\n"
                                      "  properties:\n"
                                      "    tag: {$ref: '#/Tag'}\n"
                                      "    owner: {$ref: '../owner.json'}\n"
                                      "    kids: {type: array, items: {$ref: '#/Pet'}}\n"
                                      "Tag: {type: string, maxLength: 8}\n"
                                      "limit: {name: limit, in: query, schema: {$ref: '#/Tag'}}\n");
    write_file("api/owner.json", "{\"type\": \"object\", \"properties\": {\"pets\": {\"type\": \"array\", "
                                 "\"items\": {\"$ref\": \"common/pet.yaml#/Pet\"}}}}");
    write_file("api/paths.yaml",
               "get:\n"
               "  operationId: fromFile\n"
               "  parameters: [{$ref: 'common/pet.yaml#/limit'}]\n"
               "  responses:\n"
               "    '200':\n"
               "      description: ok\n"
               "      content: {application/json: {schema: {$ref: 'common/pet.yaml#/Pet'}}}\n");
    write_file("secret.yaml", "x: {type: string}\n");
    const char *main_doc = "openapi: 3.0.0\n"
                           "paths:\n"
                           "  /pets: {$ref: 'paths.yaml'}\n"
                           "  /local:\n"
                           "    post:\n"
                           "      requestBody:\n"
                           "        content:\n"
                           "          application/json: {schema: {$ref: '#/components/schemas/Pet'}}\n"
                           "      responses: {}\n"
                           "components:\n"
                           "  schemas:\n"
                           "    Pet: {$ref: './common/pet.yaml#/Pet'}\n";
    json_t *api = import_base(main_doc, base);
    json_t *named = get(api, "schemas.0.document.components.schemas");
    /* the local Pet is a $ref to the file's Pet, pulled in as Pet-2 */
    expect_str(named, "Pet.$ref", "#/components/schemas/Pet-2");
    expect_str(named, "Pet-2.properties.tag.$ref", "#/components/schemas/Tag");
    expect_str(named, "Pet-2.properties.owner.$ref", "#/components/schemas/owner");
    expect_str(named, "Pet-2.properties.kids.items.$ref", "#/components/schemas/Pet-2");
    expect_str(named, "owner.properties.pets.items.$ref", "#/components/schemas/Pet-2");
    assert_int_equal(json_integer_value(get(named, "Tag.maxLength")), 8);
    assert_int_equal(json_object_size(named), 4);
    json_t *f = op(api, "fromfile");
    expect_str(f, "urlTemplate", "/pets");
    expect_str(f, "request.queryParameters.0.typeName", "Tag");
    expect_str(f, "request.queryParameters.0.type", "string");
    expect_str(f, "responses.0.representations.0.typeName", "Pet-2");
    expect_str(op(api, "post-local"), "request.representations.0.typeName", "Pet");
    roundtrip(api, 3, true);
    json_decref(api);

    /* refused: leaving the base, absolute paths, a missing file, broken pointers inside a file */
    const char *bad[][2] = {
        {"openapi: 3.0.0\ncomponents: {schemas: {X: {$ref: '../secret.yaml#/x'}}}\n",
         "/components/schemas/X/$ref: $ref '../secret.yaml' leaves the base directory"},
        {"openapi: 3.0.0\ncomponents: {schemas: {X: {$ref: 'common/../../secret.yaml#/x'}}}\n",
         "/components/schemas/X/$ref: $ref 'common/../../secret.yaml' leaves the base directory"},
        {"openapi: 3.0.0\ncomponents: {schemas: {X: {$ref: '/etc/passwd'}}}\n",
         "/components/schemas/X/$ref: $ref '/etc/passwd': absolute paths are not allowed"},
        {"openapi: 3.0.0\ncomponents: {schemas: {X: {$ref: 'missing.yaml#/x'}}}\n",
         "/components/schemas/X/$ref: $ref 'missing.yaml': cannot open"},
        {"openapi: 3.0.0\ncomponents: {schemas: {X: {$ref: 'common/pet.yaml#/Nope'}}}\n",
         "/components/schemas/X/$ref: $ref 'common/pet.yaml#/Nope' does not resolve"},
        {"openapi: 3.0.0\ncomponents: {schemas: {X: {$ref: 'bad.yaml#/x'}}}\n",
         "/components/schemas/X/$ref: $ref 'bad.yaml': bad.yaml: line "},
        {"openapi: 3.0.0\ncomponents: {schemas: {X: {$ref: 'brokenref.yaml#/x'}}}\n",
         "brokenref.yaml#/x/items/$ref: $ref '#/y' does not resolve"},
        {"openapi: 3.0.0\ncomponents: {schemas: {X: {$ref: 'link.yaml#/x'}}}\n",
         "/components/schemas/X/$ref: $ref 'link.yaml' leaves the base directory"},
    };
    write_file("api/bad.yaml", "x: [\n");
    write_file("api/brokenref.yaml", "x: {type: array, items: {$ref: '#/y'}}\n");
    char target[512], link[512];
    snprintf(target, sizeof(target), "%s/secret.yaml", tmpdir);
    snprintf(link, sizeof(link), "%s/api/link.yaml", tmpdir);
    assert_int_equal(symlink(target, link), 0);
    for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++)
        refused_base(bad[i][0], strlen(bad[i][0]), base, bad[i][1]);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    assert_int_equal(system(cmd), 0);
}

/* ------------------------------------------------------------- recursion */

static void test_recursion(void **state)
{
    (void)state;
    json_t *api = import("openapi: 3.0.0\n"
                         "paths:\n"
                         "  /tree:\n"
                         "    get:\n"
                         "      responses:\n"
                         "        '200':\n"
                         "          description: ok\n"
                         "          content:\n"
                         "            application/json:\n"
                         "              schema:\n"
                         "                type: object\n"
                         "                properties:\n"
                         "                  root: {$ref: '#/components/schemas/Node'}\n"
                         "                  odd: {$ref: '#/paths/~1tree/get/responses/200/content/"
                         "application~1json/schema'}\n"
                         "components:\n"
                         "  schemas:\n"
                         "    Node:\n"
                         "      type: object\n"
                         "      properties:\n"
                         "        children: {type: array, items: {$ref: '#/components/schemas/Node'}}\n"
                         "        a: {$ref: '#/components/schemas/A'}\n"
                         "    A: {properties: {b: {$ref: '#/components/schemas/B'}}}\n"
                         "    B: {properties: {a: {$ref: '#/components/schemas/A'}}}\n");
    json_t *named = get(api, "schemas.0.document.components.schemas");
    expect_str(named, "Node.properties.children.items.$ref", "#/components/schemas/Node");
    expect_str(named, "A.properties.b.$ref", "#/components/schemas/B");
    /* a schema referring to itself from outside the named schemas is pulled in once */
    json_t *s = get(api, "operations.0.responses.0.representations.0.schema");
    expect_str(s, "properties.root.$ref", "#/components/schemas/Node");
    expect_str(s, "properties.odd.$ref", "#/components/schemas/schema");
    expect_str(named, "schema.properties.odd.$ref", "#/components/schemas/schema");
    json_decref(api);
}

/* ------------------------------------------------------------- export */

static void test_export(void **state)
{
    (void)state;
    /* a stored API written by hand, without any schema fields */
    json_t *api = json_pack(
        "{s:s,s:s,s:[{s:s,s:s,s:s,s:s,s:[{s:s,s:s},{s:s,s:s}],s:{s:[{s:s,s:s,s:[s,s],s:s}],"
        "s:[{s:s,s:b}]}}]}",
        "id", "hand", "displayName", "Hand", "operations", "id", "get-x", "method", "GET", "urlTemplate",
        "/x/{id}?q={q}", "displayName", "Get x", "templateParameters", "name", "id", "type", "integer",
        "name", "q", "type", "string", "request", "queryParameters", "name", "opt", "type", "string",
        "values", "a", "b", "defaultValue", "a", "headers", "name", "X-Key", "required", 1);
    json_t *doc = pt_export_openapi_build(api, 3, "https://gw.example/hand");
    expect_str(doc, "openapi", "3.0.1");
    expect_str(doc, "info.title", "Hand");
    expect_str(doc, "servers.0.url", "https://gw.example/hand");
    json_t *g = get(doc, "paths./x/{id}.get");
    assert_non_null(g);
    expect_str(g, "operationId", "get-x");
    expect_str(g, "summary", "Get x");
    expect_str(g, "parameters.0.in", "path");
    expect_str(g, "parameters.0.schema.type", "integer");
    expect_str(g, "parameters.1.name", "q");
    expect_str(g, "parameters.1.in", "query");
    assert_true(json_is_true(get(g, "parameters.1.required")));
    expect_str(g, "parameters.2.schema.enum.1", "b");
    expect_str(g, "parameters.2.schema.default", "a");
    expect_str(g, "parameters.3.in", "header");
    expect_str(g, "responses.default.description", "Default response");
    char *text = json_dumps(doc, 0);
    json_t *back = import(text);
    free(text);
    expect_str(back, "operations.0.urlTemplate", "/x/{id}?q={q}");
    expect_str(back, "operations.0.templateParameters.0.type", "integer");
    expect_str(back, "operations.0.request.queryParameters.0.values.0", "a");
    json_decref(back);
    json_decref(doc);

    doc = pt_export_openapi_build(api, 2, "/hand/");
    expect_str(doc, "basePath", "/hand");
    assert_null(json_object_get(doc, "host"));
    json_decref(doc);
    doc = pt_export_openapi_build(api, 2, "http://gw.example:8080/hand/");
    expect_str(doc, "swagger", "2.0");
    expect_str(doc, "host", "gw.example:8080");
    expect_str(doc, "basePath", "/hand");
    expect_str(doc, "schemes.0", "http");
    expect_str(doc, "paths./x/{id}.get.parameters.0.type", "integer");
    text = json_dumps(doc, 0);
    back = import(text);
    free(text);
    expect_str(back, "serviceUrl", "http://gw.example:8080/hand");
    expect_str(back, "operations.0.urlTemplate", "/x/{id}?q={q}");
    json_decref(back);
    json_decref(doc);
    json_decref(api);

    /* literal query parts and a second GET on one path go to x-ms-paths */
    api = json_pack("{s:[{s:s,s:s,s:s},{s:s,s:s,s:s},{s:s,s:s,s:s}],s:[{s:s,s:s,s:{s:{s:{s:s},s:{s:s}}}}]}",
                    "operations", "id", "a", "method", "GET", "urlTemplate", "/r?op=list", "id", "b",
                    "method", "GET", "urlTemplate", "/r", "id", "c", "method", "GET", "urlTemplate",
                    "/r?x={x}", "schemas", "id", "s", "contentType",
                    "application/vnd.ms-azure-apim.swagger.definitions+json", "document", "definitions", "T",
                    "$ref", "#/definitions/U", "U", "type", "string");
    doc = pt_export_openapi_build(api, 3, NULL);
    assert_non_null(get(doc, "x-ms-paths./r?op=list.get"));
    assert_non_null(get(doc, "paths./r.get"));
    assert_non_null(get(doc, "x-ms-paths./r.get"));
    expect_str(doc, "components.schemas.T.$ref", "#/components/schemas/U");
    json_decref(doc);
    doc = pt_export_openapi_build(api, 2, NULL);
    expect_str(doc, "definitions.T.$ref", "#/definitions/U");
    json_decref(doc);
    roundtrip(api, 3, false);
    json_decref(api);
    /* a JSON Schema: the document itself by its id, its definitions by name */
    api =
        json_pack("{s:[{s:s,s:s,s:s,s:[{s:i,s:[{s:s,s:s},{s:s,s:s,s:s}]}]}],s:[{s:s,s:s,s:{s:s,s:{s:{s:s}},"
                  "s:{s:s}}}]}",
                  "operations", "id", "j", "method", "GET", "urlTemplate", "/j", "responses", "statusCode",
                  200, "representations", "contentType", "application/json", "schemaId", "js", "contentType",
                  "text/plain", "schemaId", "js", "typeName", "Name", "schemas", "id", "js", "contentType",
                  "application/schema+json", "document", "$schema", "http://json-schema.org/draft-07/schema#",
                  "definitions", "Name", "type", "string", "properties", "$ref", "#/definitions/Name");
    doc = pt_export_openapi_build(api, 3, NULL);
    expect_str(doc, "paths./j.get.responses.200.content.application/json.schema.$ref",
               "#/components/schemas/js");
    expect_str(doc, "paths./j.get.responses.200.content.text/plain.schema.$ref", "#/components/schemas/Name");
    expect_str(doc, "components.schemas.js.properties.$ref", "#/components/schemas/Name");
    expect_str(doc, "components.schemas.Name.type", "string");
    assert_null(get(doc, "components.schemas.js.$schema"));
    json_decref(doc);
    json_decref(api);
    assert_null(pt_export_openapi_build(NULL, 3, NULL));
    json_t *empty = json_object();
    assert_null(pt_export_openapi_build(empty, 4, NULL));
    doc = pt_export_openapi_build(empty, 3, NULL);
    expect_str(doc, "info.title", "API");
    json_decref(doc);
    json_decref(empty);
}

/* ------------------------------------------------------------- size */

static void test_large(void **state)
{
    (void)state;
    size_t cap = PT_IMPORT_OPENAPI_MAX_SIZE, n = 0;
    char *text = malloc(cap);
    char pad[3501];
    memset(pad, 'x', 3500);
    pad[3500] = '\0';
    n += (size_t)snprintf(text + n, cap - n,
                          "{\"openapi\": \"3.0.3\", \"info\": {\"title\": \"Big\"}, \"servers\": [{\"url\": "
                          "\"https://big.example\"}], \"paths\": {");
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(
            text + n, cap - n,
            "%s\"/res%d/{id}\": {\"get\": {\"operationId\": \"getRes%d\", \"summary\": \"Get %d\", "
            "\"description\": \"%s\", \"parameters\": [{\"name\": \"id\", \"in\": \"path\", \"required\": "
            "true, "
            "\"schema\": {\"type\": \"integer\"}}, {\"name\": \"q\", \"in\": \"query\", \"required\": true, "
            "\"schema\": {\"type\": \"string\"}}], \"responses\": {\"200\": {\"description\": \"ok\", "
            "\"content\": {\"application/json\": {\"schema\": {\"$ref\": "
            "\"#/components/schemas/Item\"}}}}}}}",
            i ? ", " : "", i, i, i, pad);
    n += (size_t)snprintf(text + n, cap - n,
                          "}, \"components\": {\"schemas\": {\"Item\": {\"type\": \"object\"}}}}");
    assert_true(n < cap - 1);
    print_message("# synthetic document: %zu bytes\n", n);
    assert_true(n > 3500000);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct pt_import_doc d;
    char err[512];
    bool ok = pt_import_openapi_convert(text, n, NULL, &d, err, sizeof(err));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    print_message("# 1,000 operations (%zu bytes) converted in %.1f ms\n", n, ms);
    assert_true(ok);
    assert_int_equal(json_array_size(json_object_get(d.api, "operations")), 1000);
    expect_str(d.api, "operations.999.urlTemplate", "/res999/{id}?q={q}");
    expect_str(d.api, "operations.999.id", "getres999");
    /* far under 1 s in a plain build (the bound leaves room for a loaded machine); sanitizers are slower */
    assert_true(ms < (SANITIZED ? 20000 : 2000));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    json_t *doc = pt_export_openapi_build(d.api, 3, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    print_message("# exported in %.1f ms\n", ms);
    assert_int_equal(json_object_size(json_object_get(doc, "paths")), 1000);
    json_decref(doc);
    json_decref(d.api);
    json_decref(d.warnings);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v30),    cmocka_unit_test(test_v20),       cmocka_unit_test(test_v31),
        cmocka_unit_test(test_naming), cmocka_unit_test(test_paths),     cmocka_unit_test(test_errors),
        cmocka_unit_test(test_bounds), cmocka_unit_test(test_file_refs), cmocka_unit_test(test_recursion),
        cmocka_unit_test(test_export), cmocka_unit_test(test_large),     cmocka_unit_test(test_samples),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    json_decref(warnings);
    return r;
}
