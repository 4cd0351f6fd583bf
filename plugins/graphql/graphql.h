/*
 * graphql.h -- what the files of the GraphQL family share.
 */
#ifndef PORTICO_PLUGINS_GRAPHQL_H
#define PORTICO_PLUGINS_GRAPHQL_H

#include "ptlib.h"

/* The gateway's table, set by the family's init. */
extern const struct pt_api *graphql_api;

/* ---- validate_graphql_request.c ---- */

extern const struct pt_attr_def validate_graphql_request_attrs[];
int validate_graphql_request_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status validate_graphql_request_run(const struct pt_api *api, pt_call *call, void *inst);
void validate_graphql_request_free(void *inst);

#endif
