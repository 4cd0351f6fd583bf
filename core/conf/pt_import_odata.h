/*
 * pt_import_odata -- an OData $metadata document (EDMX, v2/v3 and v4) into
 * an HTTP API (docs/import.md, "OData").
 */
#ifndef PT_IMPORT_ODATA_H
#define PT_IMPORT_ODATA_H

#include "conf/pt_import.h"

/* Converts $metadata text; on failure false and err = "line L: what". */
bool pt_import_odata_convert(const char *text, size_t len, struct pt_import_doc *out, char *err,
                             size_t errlen);

#endif
