/*
 * pt_import_openapi -- OpenAPI definitions in (placeholder: the converter is not
 * built in yet, so the format answers that it cannot be imported).
 */
#include "conf/pt_import.h"

#include <stdio.h>

bool pt_import_openapi_convert(const char *text, size_t len, const char *base_dir, struct pt_import_doc *out,
                               char *err, size_t errlen)
{
    (void)text, (void)len, (void)base_dir, (void)out;
    snprintf(err, errlen, "importing OpenAPI is not available in this build");
    return false;
}
