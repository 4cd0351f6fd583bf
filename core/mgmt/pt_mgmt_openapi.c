/*
 * pt_mgmt_openapi -- the OpenAPI 3 description of the management API,
 * served at /management/openapi.json and made from the route table that
 * the dispatcher uses, so the two cannot disagree.
 */
#include "mgmt/pt_mgmt_int.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* A user's portal password routes: their own bodies and answers (the
   password is write-only: no GET). */
static void users_op(const struct route *r, json_t *op, json_t *resp)
{
    if (!strcmp(r->kind, "invitation")) {
        json_object_set_new(resp, "202",
                            json_pack("{s:s,s:{s:{s:{s:s,s:{s:{s:s}}}}}}", "description",
                                      "the invite mail was sent", "content", "application/json", "schema",
                                      "type", "object", "properties", "sent", "type", "boolean"));
        json_object_set_new(
            resp, "409",
            json_pack("{s:s}", "description", "the user is blocked or deleted, or there is no portal"));
        return;
    }
    json_object_set_new(op, "requestBody",
                        json_pack("{s:b,s:{s:{s:{s:s,s:[s],s:{s:{s:s,s:i,s:b}}}}}}", "required", 1, "content",
                                  "application/json", "schema", "type", "object", "required", "password",
                                  "properties", "password", "type", "string", "minLength", 10, "writeOnly",
                                  1));
    json_object_set_new(resp, "204",
                        json_pack("{s:s}", "description",
                                  "the password is set; the user's "
                                  "sessions ended"));
    json_object_set_new(resp, "400", json_pack("{s:s}", "description", "shorter than 10 characters"));
    json_object_set_new(resp, "409", json_pack("{s:s}", "description", "the user is blocked or deleted"));
}

json_t *pt_mgmt_openapi_doc(const struct route *routes, size_t n)
{
    json_t *paths = json_object();
    for (int w = 0; w < 2; w++)
        for (size_t i = 0; i < n; i++) {
            const struct route *r = &routes[i];
            if (w && !r->ws)
                continue;
            char path[512];
            snprintf(path, sizeof(path), "/management/%s%s", w ? "workspaces/{workspaceId}/" : "",
                     r->pattern);
            /* OpenAPI names parameters: {id} -> {entityId}-like names stay generic */
            json_t *item = json_object();
            json_t *params = json_array();
            if (w)
                json_array_append_new(params, json_pack("{s:s,s:s,s:b,s:{s:s}}", "name", "workspaceId", "in",
                                                        "path", "required", 1, "schema", "type", "string"));
            if (strstr(r->pattern, "{id}"))
                json_array_append_new(params, json_pack("{s:s,s:s,s:b,s:{s:s}}", "name", "id", "in", "path",
                                                        "required", 1, "schema", "type", "string"));
            if (strstr(r->pattern, "{sub}"))
                json_array_append_new(params, json_pack("{s:s,s:s,s:b,s:{s:s}}", "name", "sub", "in", "path",
                                                        "required", 1, "schema", "type", "string"));
            if (json_array_size(params))
                json_object_set_new(item, "parameters", params);
            else
                json_decref(params);
            char methods[64];
            snprintf(methods, sizeof(methods), "%s", r->methods);
            for (char *save = NULL, *mt = strtok_r(methods, " ", &save); mt;
                 mt = strtok_r(NULL, " ", &save)) {
                char lower[16];
                size_t k = 0;
                for (; mt[k] && k < sizeof(lower) - 1; k++)
                    lower[k] = (char)(mt[k] | 32);
                lower[k] = '\0';
                json_t *op = json_object();
                json_object_set_new(op, "summary", json_string(r->summary));
                json_t *resp = json_object();
                const char *ok = !strcmp(mt, "DELETE") ? "204" : !strcmp(mt, "PUT") ? "200" : "200";
                if (r->h == H_USERS)
                    users_op(r, op, resp);
                else
                    json_object_set_new(resp, ok, json_pack("{s:s}", "description", "success"));
                if ((!strcmp(mt, "PUT") && r->h != H_USERS) || (!strcmp(mt, "POST") && r->h == H_PORTAL))
                    json_object_set_new(resp, "201", json_pack("{s:s}", "description", "created"));
                json_object_set_new(resp, "default",
                                    json_pack("{s:s,s:{s:{s:{s:s}}}}", "description", "an error", "content",
                                              "application/json", "schema", "$ref",
                                              "#/components/schemas/Error"));
                json_object_set_new(op, "responses", resp);
                if (!strcmp(mt, "GET") &&
                    (r->h == H_LIST || (r->h == H_GATEWAYS && !strcmp(r->kind, "list"))))
                    json_object_set_new(op, "parameters",
                                        json_pack("[{s:s,s:s,s:{s:s}},{s:s,s:s,s:{s:s}},{s:s,s:s,s:{s:s}}]",
                                                  "name", "$top", "in", "query", "schema", "type", "integer",
                                                  "name", "$skip", "in", "query", "schema", "type", "integer",
                                                  "name", "$filter", "in", "query", "schema", "type",
                                                  "string"));
                if (r->h == H_GW_SYNC) /* a gateway node's token, not a user's */
                    json_object_set_new(op, "security", json_pack("[{s:[]}]", "gatewayKey"));
                else if (r->area == A_OPEN)
                    json_object_set_new(op, "security", json_array());
                json_object_set_new(item, lower, op);
            }
            json_object_set_new(paths, path, item);
        }
    return json_pack(
        "{s:s,s:{s:s,s:s,s:s},s:o,s:{s:{s:{s:s,s:s},s:{s:s,s:s,s:s,s:s}},s:{s:{s:s,s:{s:{s:s,s:{s:{s:s},s:{s:"
        "s},"
        "s:{s:s}}}}}}},s:[{s:[]}]}",
        "openapi", "3.0.3", "info", "title", "Portico management API", "version", PACKAGE_VERSION,
        "description",
        "Entities of the Portico gateway: APIs, operations, products, groups, users, subscriptions, "
        "named values, policy fragments, backends, workspaces, policies.",
        "paths", paths, "components", "securitySchemes", "bearer", "type", "http", "scheme", "bearer",
        "gatewayKey", "type", "apiKey", "in", "header", "name", "Authorization", "description",
        "GatewayKey <gatewayId>&<yyyyMMddHHmm>&<signature> (generateToken): the sync endpoints only",
        "schemas", "Error", "type", "object", "properties", "error", "type", "object", "properties", "code",
        "type", "string", "message", "type", "string", "details", "type", "array", "security", "bearer");
}
