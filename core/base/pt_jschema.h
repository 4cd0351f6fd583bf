/*
 * pt_jschema -- JSON Schema (draft 4 and draft 2020-12, OpenAPI 3.0 Schema
 * Objects): compile once into an immutable structure, validate from many
 * threads at once, and make sample instances for mock responses.
 *
 * Depends only on libc and jansson, so plugins/lib compiles the same source.
 * docs/jsonschema.md lists the keywords, the flags and what is not supported.
 */
#ifndef PT_JSCHEMA_H
#define PT_JSCHEMA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct pt_jschema; /* compiled; immutable; safe to use from many threads */

struct pt_jschema_error {
    char path[256]; /* JSON pointer into the instance ("" = the instance itself) */
    char keyword[32];
    char message[512];
};

enum {
    PT_JSCHEMA_DRAFT4 = 1,           /* draft-04 semantics (exclusiveMaximum as bool, id, ...) */
    PT_JSCHEMA_OPENAPI = 2,          /* OpenAPI 3.0 Schema Object: nullable, x- keywords ignored */
    PT_JSCHEMA_NO_ADDITIONAL = 4,    /* objects without additionalProperties refuse unknown properties */
    PT_JSCHEMA_ALLOW_ADDITIONAL = 8, /* additionalProperties: false is ignored */
    PT_JSCHEMA_FORMATS = 16          /* format asserts (date-time, email, ipv4, uuid, ...) */
};

/* The deepest instance nesting validated; deeper is an error (keyword "maxDepth"). */
#define PT_JSCHEMA_MAX_DEPTH 128

/*
 * Compiles `schema`; `$ref`s resolve against `root` (the document the schema
 * came from; NULL: the schema itself).  schema may be a value inside root or
 * a separate inline schema whose "#/..." references mean root.  Both must stay
 * alive and unchanged while the compiled schema lives (it holds a reference).
 * NULL on failure with err = what is wrong.
 */
struct pt_jschema *pt_jschema_compile(const json_t *schema, const json_t *root, unsigned flags, char *err,
                                      size_t errlen);

/*
 * A loader for documents that `$ref`s name by URI (without fragment): a new
 * reference or NULL.  Called only while compiling.
 */
typedef json_t *(*pt_jschema_loader)(const char *uri, void *ud);
struct pt_jschema *pt_jschema_compile_ex(const json_t *schema, const json_t *root, unsigned flags,
                                         pt_jschema_loader loader, void *ud, char *err, size_t errlen);

/* true when instance is valid; else false and, when e != NULL, the first error. */
bool pt_jschema_validate(const struct pt_jschema *s, const json_t *instance, struct pt_jschema_error *e);

void pt_jschema_free(struct pt_jschema *s);

/*
 * A sample instance (new reference): example/examples/default/const/enum
 * first, else built from the type (objects with their properties, required
 * first; arrays with one item; strings by format); bounded depth.  `$ref`s
 * "#/..." resolve against root (NULL: the schema itself).
 */
json_t *pt_jschema_sample(const json_t *schema, const json_t *root);

/*
 * The ECMA-262 regular expression subset that `pattern` uses, exported for
 * the tests: 1 match, 0 no match, -1 the pattern is not supported (err says
 * why) or the match ran out of steps.
 */
int pt_jschema_regex_test(const char *pattern, const char *subject, size_t len, char *err, size_t errlen);

#endif
