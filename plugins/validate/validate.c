/*
 * validate.c -- the content-validation family's descriptor: the policy
 * table, PT_PLUGIN and init.
 *
 * validate-content, validate-parameters, validate-headers and
 * validate-status-code, named and shaped after Azure API Management's
 * validation policies: they check requests and responses against the API
 * definition (operations with templateParameters, request, responses, and
 * the API's and the service's schemas; ABI 1.5).  Each lives in its own
 * file; validate.h says what they share.  docs/validation.md describes
 * what is checked, the error records and the statuses.
 */
#include "validate.h"

#ifdef HAVE_PTL_XSD
#include "ptl_xsd.h"
#endif

const struct pt_api *validate_api;

#define CONTENT_SCOPES (PT_SCOPE_GLOBAL | PT_SCOPE_PRODUCT | PT_SCOPE_API | PT_SCOPE_OPERATION)
#define RESPONSE_SECTIONS (PT_SECTION_OUTBOUND | PT_SECTION_ON_ERROR)

static const struct pt_policy_def policies[] = {
    {"validate-content", PT_SECTION_INBOUND | RESPONSE_SECTIONS, CONTENT_SCOPES, 0, validate_content_attrs,
     validate_content_compile, validate_content_run, validate_content_free,
     "Validates the size, the content type and the body (JSON against JSON Schema, XML and SOAP against XSD) "
     "of "
     "the request (inbound) or the response (outbound, on-error) against the operation's definition or a "
     "service-level schema. Problems are recorded in errors-variable-name; prevent refuses with 400 "
     "(request) or "
     "502 (response)."},
    {"validate-parameters", PT_SECTION_INBOUND, PT_SCOPE_ALL, PT_POLICY_ONCE_PER_SECTION,
     validate_parameters_attrs, validate_parameters_compile, validate_parameters_run,
     validate_parameters_free,
     "Validates the request's path, query and header parameters against the operation's definition: "
     "required, "
     "type, enum, pattern, format and bounds; undeclared ones are unspecified. prevent refuses with 400."},
    {"validate-headers", RESPONSE_SECTIONS, PT_SCOPE_ALL, 0, validate_headers_attrs, validate_headers_compile,
     validate_headers_run, validate_headers_free,
     "Validates the response's headers against the headers the definition declares for its status; prevent "
     "refuses with 502."},
    {"validate-status-code", RESPONSE_SECTIONS, CONTENT_SCOPES, 0, validate_status_code_attrs,
     validate_status_code_compile, validate_status_code_run, validate_status_code_free,
     "Refuses (502, prevent) or records (detect) a response status the operation's definition does not "
     "declare; "
     "a default response declares every status."},
    {0},
};

static int validate_init(const struct pt_api *api, const char **err)
{
    if (api->abi_minor < 5 || !api->operation_definition || !api->schema_definition) {
        *err = "needs a gateway with the 1.5 plugin interface";
        return -1;
    }
    validate_api = api;
#ifdef HAVE_PTL_XSD
    ptl_xsd_init();
#endif
    return 0;
}

PT_PLUGIN("validate", "1.0.0", policies, validate_init, NULL);
