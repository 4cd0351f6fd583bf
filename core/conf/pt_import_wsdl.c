/*
 * pt_import_wsdl -- WSDL definitions in (placeholder: the converter is not
 * built in yet, so the format answers that it cannot be imported).
 */
#include "conf/pt_import.h"

#include <stdio.h>

bool pt_import_wsdl_convert(const char *text, size_t len, const char *service, const char *endpoint,
                            struct pt_import_doc *out, char *err, size_t errlen)
{
    (void)text, (void)len, (void)service, (void)endpoint, (void)out;
    snprintf(err, errlen, "importing WSDL is not available in this build");
    return false;
}
