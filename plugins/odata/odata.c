/*
 * odata.c -- the OData family's descriptor: validate-odata-request, named
 * and shaped after Azure API Management's.  An API imported from an OData
 * $metadata document (docs/import.md, "OData") is its usual home.
 */
#include "odata.h"

static const struct pt_policy_def policies[] = {
    {"validate-odata-request", PT_SECTION_INBOUND,
     PT_SCOPE_GLOBAL | PT_SCOPE_WORKSPACE | PT_SCOPE_PRODUCT | PT_SCOPE_API, PT_POLICY_ONCE_PER_SECTION,
     validate_odata_request_attrs, validate_odata_request_compile, validate_odata_request_run, NULL,
     "Checks that a request to an OData API follows the protocol: the OData-Version (DataServiceVersion) "
     "and OData-MaxVersion (MaxDataServiceVersion) headers against the supported range, the system query "
     "options ($filter, $top, $skip, $count, $format...: known to the version, once each, $top and $skip "
     "non-negative integers) and the body's size (with max-size the body is read, within "
     "limits.bufferSize, and measured). A request that fails gets 400 with an OData error body "
     "{\"error\": {\"code\", \"message\"}} at once (the backend is not called, on-error does not run); the "
     "same body goes to error-variable-name."},
    {0},
};

static int odata_init(const struct pt_api *api, const char **err)
{
    if (api->size < offsetof(struct pt_api, url_base) + sizeof(void *)) {
        *err = "the gateway's API table is too small";
        return -1;
    }
    return 0;
}

PT_PLUGIN("odata", "1.0.0", policies, odata_init, NULL);
