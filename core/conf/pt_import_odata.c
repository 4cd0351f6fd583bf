/*
 * pt_import_odata -- OData definitions in (placeholder: the converter is not
 * built in yet, so the format answers that it cannot be imported).
 */
#include "conf/pt_import.h"

#include <stdio.h>

bool pt_import_odata_convert(const char *text, size_t len, struct pt_import_doc *out, char *err,
                             size_t errlen)
{
    (void)text, (void)len, (void)out;
    snprintf(err, errlen, "importing OData is not available in this build");
    return false;
}
