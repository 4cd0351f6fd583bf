/*
 * validate.h -- what the files of the content-validation family share.
 *
 * validate-content, validate-parameters, validate-headers and
 * validate-status-code check requests and responses against the matched
 * operation's definition (api->operation_definition, ABI 1.5) and the API's
 * or the service's schemas (api->schema_definition).  Each policy lives in
 * its own file; helper files serve them all:
 *
 *   defs.c    the definitions: a per-statement cache of parsed operation
 *             definitions and schema documents and of compiled schemas
 *             (JSON Schema through pt_jschema, XSD through ptl_xsd), keyed by
 *             the generation-stable text pointers the SDK hands out, so that
 *             nothing is parsed or compiled twice in a generation; resolving
 *             a representation's or a parameter's schema; converting a
 *             parameter's text to the JSON value its type says.
 *   body.c    a JSON body read straight into jansson values (jansson's own
 *             reader would cost as much as proxying the request).
 *   report.c  the outcome: actions, APIM's error records {Name, Type,
 *             ValidationRule, Details, Action}, the errors variable (a JSON
 *             array text), and the refusal (400 inbound, 502 outbound).
 *
 * Names.  A policy's file offers its attributes, compile(), run() and
 * free() named after the policy; the helper files prefix theirs after the
 * file (defs_, report_).
 */
#ifndef PORTICO_PLUGINS_VALIDATE_H
#define PORTICO_PLUGINS_VALIDATE_H

#include "ptlib.h"

#include "pt_jschema.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* The gateway's table, set by the family's init. */
extern const struct pt_api *validate_api;

/* ---- report.c: actions, records, the errors variable, refusals ---- */

enum { ACT_IGNORE = 0, ACT_DETECT = 1, ACT_PREVENT = 2 };

/* "ignore", "detect", "prevent", NULL: the enum of every action attribute */
extern const char *const report_actions[];

/* The neutral message a client gets for a response-side (or schema) problem. */
#define REPORT_NEUTRAL "The request could not be processed due to an internal error. Contact the API owner."

/* One run's records (in the request arena). */
struct report {
    const struct pt_api *api;
    pt_call *call;
    const char *policy;   /* the policy's name, for the log */
    const char *variable; /* errors-variable-name, or NULL */
    bool response;        /* response side: 502 and the neutral message */
    struct ptl_buf recs;  /* the records, comma separated */
    int n;
    bool prevented;
    const char *public_msg; /* what the client gets when prevented */
};

void report_init(struct report *r, const struct pt_api *api, pt_call *call, const char *policy,
                 const char *variable, bool response);
/* Records a problem under `action` (ignore: nothing).  `public_msg` is what a
   client is told on the request side (NULL: the details); the response side
   always tells the neutral message.  Returns true when the action is prevent:
   stop checking and return report_finish(). */
bool report_add(struct report *r, int action, const char *name, const char *type, const char *rule,
                const char *details, const char *public_msg);
/* Appends the records to the errors variable (a JSON array text; records of
   an earlier statement using the same variable are kept) and, when a record
   prevented, fails the call: 400 "Bad request" on the request side, 502
   "Response not allowed" on the response side.  PT_OK or PT_ERROR. */
pt_status report_finish(struct report *r);
/* printf into the request arena ("" when it cannot grow) */
const char *report_fmt(const struct pt_api *api, pt_call *call, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- defs.c: definitions, schemas and their caches ---- */

struct defs; /* one statement's cache; thread-safe */

struct defs *defs_new(void);
void defs_free(struct defs *d);

/* The matched operation's definition, parsed once per generation; NULL when
   no operation matched (or the text does not parse, which the gateway never
   produces). */
const json_t *defs_operation(struct defs *d, const struct pt_api *api, pt_call *call);

/* Schema kinds, from an API schema's contentType or a service schema's schemaType. */
enum {
    DEFS_K_NONE = 0,
    DEFS_K_OPENAPI,    /* application/vnd.oai.openapi.components+json */
    DEFS_K_SWAGGER,    /* application/vnd.ms-azure-apim.swagger.definitions+json */
    DEFS_K_JSONSCHEMA, /* application/schema+json, application/json, schemaType json */
    DEFS_K_XSD,        /* xsd+xml, schemaType xml */
    DEFS_K_WSDL,       /* wsdl+xml */
    DEFS_K_OTHER,
};

/* A schema document, parsed once per generation. */
struct defs_doc {
    int kind;          /* DEFS_K_* */
    const char *id;    /* its id */
    json_t *obj;       /* the whole {id, contentType, document | value} */
    const json_t *doc; /* document (JSON kinds), else NULL */
    const char *value; /* value (text kinds), else NULL */
    size_t vlen;
};

/* A schema of the call's API (PT_SCHEMA_API) or of the service (PT_SCHEMA_SERVICE); NULL when absent. */
const struct defs_doc *defs_doc(struct defs *d, const struct pt_api *api, pt_call *call, int scope,
                                pt_bytes id);

/* The JSON Schema to check a value against, as resolved from a definition. */
struct defs_target {
    const json_t *schema; /* NULL: nothing to check against */
    const json_t *root;   /* what `$ref`s resolve against (NULL: the schema) */
    unsigned flags;       /* PT_JSCHEMA_* the schema's kind asks for */
    const char *name;     /* the definition's name for messages (typeName, schema id, "schema") */
    /* when resolution failed: the record (Type ApiSchema or rule MissingDefinition) */
    const char *missing; /* NULL when resolved */
    bool api_schema;     /* the failure is about the API's schema itself (Type ApiSchema) */
};

/* Resolves a representation's or a parameter's schema (`schema`, else
   `typeName` in `schemaId`, else nothing) against the API's schemas. */
void defs_resolve(struct defs *d, const struct pt_api *api, pt_call *call, const json_t *holder,
                  struct defs_target *t);

/* A service-level schema (`schema-id`) as a target: its document, or the
   value `ref` ("#/a/b", a JSON pointer) points to in it. */
void defs_resolve_service(struct defs *d, const struct pt_api *api, pt_call *call, const char *id,
                          const char *ref, struct defs_target *t);

/* A compiled JSON Schema for (schema, root, flags), compiled once per
   generation; NULL with *err (cached too) when it does not compile. */
const struct pt_jschema *defs_compile(struct defs *d, const json_t *schema, const json_t *root,
                                      unsigned flags, const char **err);

/* What a body is checked against, resolved and compiled once per holder (a
   representation, or a content element with schema-id) and added flags. */
struct defs_plan {
    const struct pt_jschema *js; /* NULL: see missing, none, err */
    const char *name;            /* the definition's name for messages */
    const char *missing;         /* as defs_target's */
    bool api_schema;
    bool none;       /* nothing declared: nothing to check */
    const char *err; /* why js did not compile */
};
/* NULL only when out of memory.  service_id: a service-level schema (with
   service_ref, a pointer in it) instead of the representation `holder`. */
const struct defs_plan *defs_plan(struct defs *d, const struct pt_api *api, pt_call *call, const void *holder,
                                  const char *service_id, const char *service_ref, unsigned add_flags);

/* A compiled XSD for one text, or several compiled as one schema (an API's
   schemas imported from a WSDL); cached by the first text's pointer.  NULL
   with *err. */
#define DEFS_XSD_MAX_SET 32
const void *defs_xsd(struct defs *d, const char *const *texts, const size_t *lens, int n, const char **err);
/* true when XML/SOAP validation is available in this build */
bool defs_have_xsd(void);
/* ptl_xsd_validate: true when valid, else false with msg. */
bool defs_xsd_validate(const void *xsd, const char *xml, size_t len, bool soap, char *msg, size_t msglen);

/* The response entry of a definition for a status: the exact code, else `default`; NULL when none. */
const json_t *defs_response(const json_t *op, int status);

/* A parameter's value as the JSON its declared type says (string, integer,
   number, boolean, array of those); NULL with *why when it does not parse.
   A new reference. */
json_t *defs_param_value(const json_t *param, const json_t *schema, pt_bytes text, const char **why);

/* What defs_check_param found. */
enum {
    DEFS_P_OK = 0,
    DEFS_P_PARSE,   /* the text is not of the declared type */
    DEFS_P_INVALID, /* it does not conform to the schema */
    DEFS_P_MISSING, /* the definition does not resolve (t->missing, t->api_schema) */
    DEFS_P_ERROR,   /* the schema cannot be used (does not compile) */
};

/* Checks one parameter value against its definition; DEFS_P_* with *msg
   the problem's text (arena). */
int defs_check_param(struct defs *d, const struct pt_api *api, pt_call *call, const json_t *param,
                     pt_bytes value, const char **msg, struct defs_target *t);

/* A string member of an object ("" when absent or not a string). */
const char *defs_str(const json_t *o, const char *key);

/* ---- body.c ---- */

/* A JSON body parsed into a new jansson value (one pass, strict RFC 8259,
   nesting bounded by BODY_MAX_DEPTH); NULL with err = "The body is not
   valid JSON: what. Line: L, Position: C". */
#define BODY_MAX_DEPTH 200
json_t *body_parse_json(const char *text, size_t len, char *err, size_t errlen);

/* ---- validate_content.c ---- */

extern const struct pt_attr_def validate_content_attrs[];
int validate_content_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status validate_content_run(const struct pt_api *api, pt_call *call, void *inst);
void validate_content_free(void *inst);

/* ---- validate_parameters.c ---- */

extern const struct pt_attr_def validate_parameters_attrs[];
int validate_parameters_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status validate_parameters_run(const struct pt_api *api, pt_call *call, void *inst);
void validate_parameters_free(void *inst);

/* ---- validate_headers.c ---- */

extern const struct pt_attr_def validate_headers_attrs[];
int validate_headers_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status validate_headers_run(const struct pt_api *api, pt_call *call, void *inst);
void validate_headers_free(void *inst);

/* ---- validate_status_code.c ---- */

extern const struct pt_attr_def validate_status_code_attrs[];
int validate_status_code_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status validate_status_code_run(const struct pt_api *api, pt_call *call, void *inst);
void validate_status_code_free(void *inst);

/* Overrides by name ("parameter", "header", "status-code" elements). */
struct override {
    const char *name;
    int action;
};

/* Reads the overrides of element list `elems` (attribute `key` names the
   entry); -1 after a compile error. */
int report_overrides(const struct pt_api *api, pt_compile *c, pt_element **elems, int n, const char *key,
                     struct override **out, int *nout);
/* The override for a name (case-insensitive when icase), else def. */
int report_override_action(const struct override *o, int n, pt_bytes name, bool icase, int def);
/* What a parameter is called in records and messages. */
struct report_kind {
    const char *type; /* QueryParameter, PathParameter, RequestHeader, ResponseHeader */
    const char *kind; /* "query parameter", "path parameter", "header" */
    const char *Kind; /* "Query parameter", ... */
};

/* Checks one value of a declared parameter (type, enum, schema) and records
   what is wrong; true when a record prevented. */
bool report_param(struct report *r, struct defs *d, const json_t *param, const struct report_kind *k,
                  pt_bytes name, pt_bytes value, int action);
/* Records an undeclared parameter, several values of one, a missing required one; true when prevented. */
bool report_unspecified(struct report *r, const struct report_kind *k, pt_bytes name, int action);
bool report_multiple(struct report *r, const struct report_kind *k, pt_bytes name, int action);
bool report_required(struct report *r, const struct report_kind *k, pt_bytes name, int action);

/* The parameter named `name` in a list of parameters; NULL when absent. */
const json_t *report_find_param(const json_t *list, pt_bytes name, bool icase);
/* A header every message may carry (not checked as unspecified; docs/validation.md lists them). */
bool report_standard_header(pt_bytes name, bool response);

/* The index of an action's name, or -1. */
int report_action_index(const char *s);

#endif
