/*
 * pt_export_openapi -- placeholder until the exporter is built in: no
 * document.
 */
#include "conf/pt_export_openapi.h"

json_t *pt_export_openapi_build(const json_t *api, int version, const char *server_url)
{
    (void)api, (void)version, (void)server_url;
    return NULL;
}
