/*
 * transform.h -- what the files of the transformation family share.
 *
 * How a policy works here.  Each one is a row of `policies[]` in
 * transform.c: its attribute schema is data (the gateway validates
 * configurations against it and generates the reference from the `doc`
 * strings), compile() turns the validated attributes into a small instance
 * allocated with compile_alloc (it lives as long as the configuration
 * generation, so nothing is freed here), and run() does the work for one
 * request through the gateway's API table.  "The current message" is the
 * request in inbound/backend and the response in outbound/on-error
 * (PT_MSG_CURRENT).
 *
 * Restartable runs.  A run() that needs a body the gateway has not read yet
 * (body_get, or an expression that reads a body, answers PT_AGAIN) returns
 * PT_AGAIN at once and is called again from its start once the body is in
 * memory.  Every run() therefore evaluates and reads everything first and
 * changes the message only at the end: a restart never repeats a change.
 *
 * Memory.  Everything a run() builds lives in the request arena
 * (api->alloc), including the growable output buffers (struct ptl_buf,
 * which doubles, so at most twice the final size is held).
 *
 * Names.  A policy's file offers its attributes, compile() and run() named
 * after the policy (json-to-xml: json_to_xml_attrs, json_to_xml_compile,
 * json_to_xml_run); anything else a file offers the family is prefixed
 * after the file (set_header_, find_and_replace_, json_xml_); the rest is
 * static.
 *
 * Decisions where APIM leaves room are documented at each policy.
 */
#ifndef PORTICO_PLUGINS_TRANSFORM_H
#define PORTICO_PLUGINS_TRANSFORM_H

#include "ptlib.h"

/* ---- set_header.c: set-header, and what set-query-parameter shares with it ---- */

extern const struct pt_attr_def set_header_attrs[];
int set_header_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status set_header_run(const struct pt_api *api, pt_call *call, void *inst);

/* exists-action's values, in pt_header_mode order */
extern const char *const set_header_exists_actions[];

/* The instance set-header and set-query-parameter share. */
struct named_values {
    pt_value *name;
    pt_header_mode mode;
    int nvalues;
    pt_value **values;
};

/* Compiles name, exists-action and values into a struct named_values; `what` names the policy in errors. */
int set_header_compile_named(const struct pt_api *api, pt_compile *c, void **instance, const char *what);
/* Evaluates the name and the values (none for exists-action delete) of a named_values
   instance: PT_OK, or the status to return (PT_AGAIN, PT_ERROR). */
pt_status set_header_eval_named(const struct pt_api *api, pt_call *call, const struct named_values *x,
                                pt_bytes *name, pt_bytes **vals, int *n);

/* ---- set_query_parameter.c ---- */

extern const struct pt_attr_def set_query_parameter_attrs[];
int set_query_parameter_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status set_query_parameter_run(const struct pt_api *api, pt_call *call, void *inst);

/* ---- rewrite_uri.c ---- */

extern const struct pt_attr_def rewrite_uri_attrs[];
int rewrite_uri_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status rewrite_uri_run(const struct pt_api *api, pt_call *call, void *inst);

/* ---- set_method.c ---- */

extern const struct pt_attr_def set_method_attrs[];
int set_method_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status set_method_run(const struct pt_api *api, pt_call *call, void *inst);

/* ---- set_status.c ---- */

extern const struct pt_attr_def set_status_attrs[];
int set_status_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status set_status_run(const struct pt_api *api, pt_call *call, void *inst);

/* ---- set_body.c ---- */

extern const struct pt_attr_def set_body_attrs[];
int set_body_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status set_body_run(const struct pt_api *api, pt_call *call, void *inst);

/* ---- find_and_replace.c: find-and-replace, and the replacement redirect-content-urls uses ---- */

extern const struct pt_attr_def find_and_replace_attrs[];
int find_and_replace_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status find_and_replace_run(const struct pt_api *api, pt_call *call, void *inst);

/*
 * Replaces every non-overlapping occurrence of `from`, left to right.
 * With `boundary`, only occurrences that end a URL prefix count.  Returns
 * false when nothing matched (out is then untouched).
 */
bool find_and_replace_all(const struct pt_api *api, pt_call *call, pt_bytes body, pt_bytes from, pt_bytes to,
                          bool boundary, struct ptl_buf *out);

/* ---- redirect_content_urls.c (no attributes) ---- */

int redirect_content_urls_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status redirect_content_urls_run(const struct pt_api *api, pt_call *call, void *inst);

/* ---- json_xml.c: json-to-xml and xml-to-json ---- */

extern const struct pt_attr_def json_to_xml_attrs[];
int json_to_xml_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status json_to_xml_run(const struct pt_api *api, pt_call *call, void *inst);

extern const struct pt_attr_def xml_to_json_attrs[];
int xml_to_json_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status xml_to_json_run(const struct pt_api *api, pt_call *call, void *inst);

/* libxml2 made ready for the worker threads, external entities disabled process-wide (the family's init) */
void json_xml_init(void);
/* the previous external entity loader back (the family's fini) */
void json_xml_fini(void);

/* ---- jsonp.c ---- */

extern const struct pt_attr_def jsonp_attrs[];
int jsonp_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status jsonp_run(const struct pt_api *api, pt_call *call, void *inst);

/* ---- xsl_transform.c: xsl-transform (XSLT 1.0 through xslt.c) ---- */

extern const struct pt_attr_def xsl_transform_attrs[];
int xsl_transform_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status xsl_transform_run(const struct pt_api *api, pt_call *call, void *inst);
void xsl_transform_free(void *instance);

#endif
