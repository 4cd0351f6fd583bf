/*
 * pt_import_graphql -- GraphQL definitions in (placeholder: the converter is not
 * built in yet, so the format answers that it cannot be imported).
 */
#include "conf/pt_import.h"

#include <stdio.h>

bool pt_import_graphql_convert(const char *text, size_t len, struct pt_import_doc *out, char *err,
                               size_t errlen)
{
    (void)text, (void)len, (void)out;
    snprintf(err, errlen, "importing GraphQL is not available in this build");
    return false;
}

const char pt_import_graphql_introspection_query[] =
    "query IntrospectionQuery { __schema { queryType { name } mutationType { name } subscriptionType { name "
    "} "
    "types { kind name fields(includeDeprecated: true) { name args { name type { kind name ofType { kind "
    "name "
    "ofType { kind name ofType { kind name } } } } } type { kind name ofType { kind name ofType { kind name "
    "ofType { kind name } } } } } } } }";
