/*
 * graphql.c -- the GraphQL family's descriptor: validate-graphql-request.
 *
 * The policy lives in validate_graphql_request.c; the GraphQL parser,
 * schemas and validation are the core's own core/base/pt_graphql.c,
 * compiled into plugins/lib (libptl).
 */
#include "graphql.h"

const struct pt_api *graphql_api;

static const struct pt_policy_def policies[] = {
    {"validate-graphql-request", PT_SECTION_INBOUND,
     PT_SCOPE_GLOBAL | PT_SCOPE_WORKSPACE | PT_SCOPE_PRODUCT | PT_SCOPE_API | PT_SCOPE_OPERATION,
     PT_POLICY_ONCE_PER_SECTION, validate_graphql_request_attrs, validate_graphql_request_compile,
     validate_graphql_request_run, validate_graphql_request_free,
     "Validates a GraphQL request (POST application/json {query, operationName, variables}, POST "
     "application/graphql, GET ?query=) against the API's GraphQL schema: syntax, size (max-size), depth "
     "(max-depth), at most 250 fields, fields, arguments, fragments, variables; then authorizes each field "
     "by the most specific <rule path=\"/Type/field\"> (allow, remove, reject, ignore; /__* is "
     "introspection). "
     "A request error answers 200 with a GraphQL {\"errors\": [...]} body and no data, and the backend is "
     "not called; removed fields leave the query sent to the backend. Errors go to the GraphQLErrors "
     "variable and to error-variable-name."},
    {0},
};

static int graphql_init(const struct pt_api *api, const char **err)
{
    if (api->abi_minor < 5 || !api->schema_definition) {
        *err = "needs a gateway with the 1.5 plugin interface (schema_definition)";
        return -1;
    }
    graphql_api = api;
    return 0;
}

PT_PLUGIN("graphql", "1.0.0", policies, graphql_init, NULL);
