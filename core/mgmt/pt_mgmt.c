/*
 * pt_mgmt -- the management REST API (see pt_mgmt.h and docs/management-api.md):
 * the server, its route table, the dispatch of a request to its handler,
 * start and stop.  The handlers and what they share are in the other
 * pt_mgmt_*.c files (see pt_mgmt_int.h).
 *
 * One route table drives both the dispatcher and the OpenAPI description
 * served at /management/openapi.json, so the two cannot disagree.
 */
#include "mgmt/pt_mgmt.h"
#include "base/pt_log.h"
#include "event/pt_io.h"
#include "event/pt_tls.h"
#include "mgmt/pt_mgmt_int.h"

#include <errno.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct evhttp *http;

/* ----------------------------------------------------------------- routes */

#define ENTITY_ROUTES(coll, kind, area, ws, what)                                                            \
    {coll, "GET", H_LIST, kind, area, ws, "List " what "s"},                                                 \
    {                                                                                                        \
        coll "/{id}", "GET PUT PATCH DELETE", H_ENTITY, kind, area, ws,                                      \
            "Get, create or replace, update or delete a " what                                               \
    }

static const struct route routes[] = {
    ENTITY_ROUTES("apis", "api", A_API, true, "API"),
    {"apis/{id}/operations", "GET", H_OPS, "operation", A_API, true, "List the operations of an API"},
    {"apis/{id}/operations/{sub}", "GET PUT PATCH DELETE", H_OP, "operation", A_API, true, "An operation"},
    {"apis/{id}/schemas", "GET", H_API_SCHEMAS, "api", A_API, true, "List the schemas of an API"},
    {"apis/{id}/schemas/{sub}", "GET PUT DELETE", H_API_SCHEMA, "api", A_API, true,
     "One of an API's schemas (OpenAPI components, JSON Schema, XSD, WSDL, GraphQL SDL)"},
    {"apis/{id}/policies", "GET", H_POLICIES, "api", A_API, true, "The API's policy document as a list"},
    {"apis/{id}/policies/policy", "GET PUT DELETE", H_POLICY, "api", A_API, true,
     "The API's policy document"},
    {"apis/{id}/operations/{sub}/policies", "GET", H_POLICIES, "operation", A_API, true,
     "The operation's policy document as a list"},
    {"apis/{id}/operations/{sub}/policies/policy", "GET PUT DELETE", H_POLICY, "operation", A_API, true,
     "The operation's policy document"},
    ENTITY_ROUTES("products", "product", A_PRODUCT, true, "product"),
    {"products/{id}/apis", "GET", H_LINKS, "product-api", A_PRODUCT, true, "The APIs of a product"},
    {"products/{id}/apis/{sub}", "GET PUT DELETE", H_LINK, "product-api", A_PRODUCT, true,
     "Add an API to a product or remove it"},
    {"products/{id}/groups", "GET", H_LINKS, "product-group", A_PRODUCT, true,
     "The groups that see a product"},
    {"products/{id}/groups/{sub}", "GET PUT DELETE", H_LINK, "product-group", A_PRODUCT, true,
     "Let a group see a product, or stop"},
    {"products/{id}/policies", "GET", H_POLICIES, "product", A_PRODUCT, true,
     "The product's policy document as a list"},
    {"products/{id}/policies/policy", "GET PUT DELETE", H_POLICY, "product", A_PRODUCT, true,
     "The product's policy document"},
    ENTITY_ROUTES("groups", "group", A_PRODUCT, true, "group"),
    {"groups/{id}/users", "GET", H_LINKS, "group-user", A_PRODUCT, true, "The users of a group"},
    {"groups/{id}/users/{sub}", "GET PUT DELETE", H_LINK, "group-user", A_PRODUCT, true,
     "Add a user to a group or remove them"},
    ENTITY_ROUTES("users", "user", A_SERVICE, false, "user"),
    {"users/{id}/invitation", "POST", H_USERS, "invitation", A_SERVICE, false,
     "Send the user the portal's invitation mail (a link to set a password)"},
    {"users/{id}/password", "PUT", H_USERS, "password", A_SERVICE, false,
     "Set the user's portal password (write-only; ends their sessions)"},
    ENTITY_ROUTES("subscriptions", "subscription", A_PRODUCT, true, "subscription"),
    {"subscriptions/{id}/listSecrets", "POST", H_SECRETS, "subscription", A_SECRETS, true,
     "The subscription's primary and secondary keys"},
    {"subscriptions/{id}/regeneratePrimaryKey", "POST", H_REGEN1, "subscription", A_PRODUCT, true,
     "A new primary key (the old one stops working at once)"},
    {"subscriptions/{id}/regenerateSecondaryKey", "POST", H_REGEN2, "subscription", A_PRODUCT, true,
     "A new secondary key (the old one stops working at once)"},
    ENTITY_ROUTES("namedValues", "namedValue", A_API, true, "named value"),
    {"namedValues/{id}/listValue", "POST", H_NV_VALUE, "namedValue", A_NV_SECRETS, true,
     "The value of a named value, secret or not"},
    ENTITY_ROUTES("policyFragments", "policyFragment", A_API, true, "policy fragment"),
    ENTITY_ROUTES("backends", "backend", A_API, true, "backend"),
    ENTITY_ROUTES("apiVersionSets", "apiVersionSet", A_API, true, "API version set"),
    ENTITY_ROUTES("schemas", "schema", A_API, true, "schema"),
    ENTITY_ROUTES("loggers", "logger", A_SERVICE, false, "logger"),
    ENTITY_ROUTES("certificates", "certificate", A_SERVICE, false, "certificate"),
    {"policies", "GET", H_POLICIES, "global", A_SERVICE, false, "The global policy document as a list"},
    {"policies/policy", "GET PUT DELETE", H_POLICY, "global", A_SERVICE, false, "The global policy document"},
    ENTITY_ROUTES("workspaces", "workspace", A_SERVICE, false, "workspace"),
    {"workspaces/{id}/policies", "GET", H_POLICIES, "workspace", A_API, false,
     "The workspace's policy document as a list"},
    {"workspaces/{id}/policies/policy", "GET PUT DELETE", H_POLICY, "workspace", A_API, false,
     "The workspace's policy document (between the global and the product scope)"},
    ENTITY_ROUTES("tokens", "token", A_SERVICE, false, "access token"),
    {"apply", "POST", H_APPLY, NULL, A_SERVICE, false,
     "Create or update every entity of a document (the configuration file's lists) in one transaction"},
    {"export", "GET", H_EXPORT, NULL, A_SECRETS, false, "Every entity, as a document `apply` accepts"},
    {"gateways/managed/listDebugCredentials", "POST", H_TRACE_CREDENTIALS, "api", A_API, true,
     "A debug token for tracing calls to one API (Apim-Debug-Authorization)"},
    {"gateways/managed/listTrace", "POST", H_TRACE_LIST, "api", A_API, true, "A request's trace by its id"},
    {"gateways/managed/traces/{id}", "GET", H_TRACE_GET, "api", A_API, true,
     "A request's trace: Ocp-Apim-Trace-Location's signed URL, or with a bearer token"},
    {"reports/{id}", "GET", H_REPORTS, NULL, A_API, true,
     "Usage reports: byApi, byOperation, byProduct, bySubscription, byUser, byTime, byRequest"},
    {"portal/site", "GET PUT PATCH", H_PORTAL, "site", A_SERVICE, false,
     "The developer portal's site settings (the draft: publish to show them)"},
    {"portal/pages", "GET", H_PORTAL, "pages", A_SERVICE, false, "List the developer portal's pages (draft)"},
    {"portal/pages/{id}", "GET PUT PATCH DELETE", H_PORTAL, "pages", A_SERVICE, false,
     "Get, create or replace, update or delete a portal page (draft)"},
    {"portal/media", "GET", H_PORTAL, "media", A_SERVICE, false,
     "List the portal's media (logo, favicon, images)"},
    {"portal/media/{id}", "GET PUT DELETE", H_PORTAL, "media", A_SERVICE, false,
     "A portal media file: PUT the bytes with their Content-Type (PNG, JPEG, GIF, WebP, ICO)"},
    {"portal/revisions", "GET POST", H_PORTAL, "revisions", A_SERVICE, false,
     "List the published revisions of the portal's content, or publish the draft ({comment})"},
    {"portal/revisions/{id}", "GET", H_PORTAL, "revisions", A_SERVICE, false, "A published revision"},
    {"portal/revisions/{id}/restore", "POST", H_PORTAL, "restore", A_SERVICE, false,
     "Publish a copy of an earlier revision and make it the draft"},
    {"portal/templates", "GET", H_PORTAL, "templates", A_SERVICE, false, "List the portal's mail templates"},
    {"portal/templates/{id}", "GET PUT PATCH DELETE", H_PORTAL, "templates", A_SERVICE, false,
     "A mail template (DELETE goes back to the built-in text)"},
    {"portal/identityProviders", "GET", H_PORTAL, "identityProviders", A_SERVICE, false,
     "List the portal's OpenID Connect identity providers (client secrets are never shown)"},
    {"portal/identityProviders/{id}", "GET PUT DELETE", H_PORTAL, "identityProviders", A_SERVICE, false,
     "An OpenID Connect identity provider to sign in to the portal with (clientSecret is write-only)"},
    {"gateways", "GET", H_GATEWAYS, "list", A_SERVICE, false,
     "List the gateways: the built-in `managed` first, then the self-hosted ones"},
    {"gateways/{id}", "GET PUT PATCH DELETE", H_GATEWAYS, "entity", A_SERVICE, false,
     "Get, create or replace, update or delete a self-hosted gateway ({description, locationData})"},
    {"gateways/{id}/apis", "GET", H_GATEWAYS, "apis", A_SERVICE, false, "The APIs a gateway's nodes serve"},
    {"gateways/{id}/apis/{sub}", "GET PUT DELETE", H_GATEWAYS, "api", A_SERVICE, false,
     "Assign an API to a gateway or take it away"},
    {"gateways/{id}/generateToken", "POST", H_GATEWAYS, "generateToken", A_SERVICE, false,
     "A GatewayKey token for the gateway's nodes ({keyType, expiry}: at most 30 days ahead)"},
    {"gateways/{id}/listKeys", "POST", H_GATEWAYS, "listKeys", A_SERVICE, false,
     "The gateway's primary and secondary keys"},
    {"gateways/{id}/regenerateKey", "POST", H_GATEWAYS, "regenerateKey", A_SERVICE, false,
     "A new primary or secondary key ({keyType}); tokens made with the old one stop working at once"},
    {"gateways/{id}/nodes", "GET", H_GATEWAYS, "nodes", A_SERVICE, false,
     "The gateway's nodes seen by their heartbeats: address, version, generation, status"},
    {"gateways/{id}/configuration", "GET", H_GW_SYNC, "configuration", A_OPEN, false,
     "For nodes (GatewayKey token): the gateway's configuration, long-polled (?wait=S, If-None-Match)"},
    {"gateways/{id}/heartbeat", "POST", H_GW_SYNC, "heartbeat", A_OPEN, false,
     "For nodes (GatewayKey token): a node's heartbeat (its generation, errors, analytics)"},
    {"openapi.json", "GET", H_OPENAPI, NULL, A_OPEN, false, "This description"},
};

/* --------------------------------------------------------------- dispatch */

static bool method_allowed(const struct route *r, const char *name)
{
    char methods[64];
    snprintf(methods, sizeof(methods), " %s ", r->methods);
    char want[16];
    snprintf(want, sizeof(want), " %s ", name);
    return strstr(methods, want) != NULL;
}

/* Matches segs against a route pattern, capturing {id} and {sub}. */
static bool match(const char *pattern, char **segs, int n, const char **id, const char **sub)
{
    char pat[256];
    snprintf(pat, sizeof(pat), "%s", pattern);
    int k = 0;
    for (char *save = NULL, *p = strtok_r(pat, "/", &save); p; p = strtok_r(NULL, "/", &save), k++) {
        if (k >= n)
            return false;
        if (!strcmp(p, "{id}"))
            *id = segs[k];
        else if (!strcmp(p, "{sub}"))
            *sub = segs[k];
        else if (strcmp(p, segs[k]))
            return false;
    }
    return k == n;
}

static const char *method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    default:
        return "OTHER";
    }
}

static void on_request(struct evhttp_request *r, void *arg)
{
    (void)arg;
    struct mreq m = {.r = r, .method = evhttp_request_get_command(r)};
    m.method_name = method_name(m.method);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(r);
    const char *path = evhttp_uri_get_path(uri);
    const char *q = evhttp_uri_get_query(uri);
    if (q && evhttp_parse_query_str(q, &m.query) == 0)
        m.has_query = true;
    char *copy = NULL;
    if (pt_mgmt_metrics_serve(r))
        goto done;
    if (!path || strncmp(path, "/management/", 12)) {
        pt_mgmt_req_send_error(&m, 404, "RouteNotFound", "no such route: everything is under /management/");
        goto done;
    }
    copy = strdup(path + 12);
    for (char *save = NULL, *s = strtok_r(copy, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
        if (m.nseg == (int)PT_ARRAY_LEN(m.segs)) {
            pt_mgmt_req_send_error(&m, 404, "RouteNotFound", "no such route");
            goto done;
        }
        size_t dl = 0;
        char *dec = evhttp_uridecode(s, 0, &dl);
        m.segs[m.nseg++] = dec;
        if (!dec || !*dec || dl != strlen(dec)) {
            pt_mgmt_req_send_error(&m, 400, "InvalidPath", "bad path segment");
            goto done;
        }
    }
    char **segs = m.segs;
    int n = m.nseg;
    bool ws_path = false;
    if (n >= 3 && !strcmp(segs[0], "workspaces")) {
        /* /workspaces/{ws}/<collection>... addresses the workspace's own entities */
        for (size_t i = 0; i < PT_ARRAY_LEN(routes); i++)
            if (routes[i].ws && !strncmp(routes[i].pattern, segs[2], strlen(segs[2])) &&
                (routes[i].pattern[strlen(segs[2])] == '/' || !routes[i].pattern[strlen(segs[2])]))
                ws_path = true;
    }
    if (ws_path) {
        m.ws = segs[1];
        segs += 2;
        n -= 2;
    }
    bool path_known = false;
    for (size_t i = 0; i < PT_ARRAY_LEN(routes) && !m.route; i++) {
        const char *id = NULL, *sub = NULL;
        if ((ws_path && !routes[i].ws) || !match(routes[i].pattern, segs, n, &id, &sub))
            continue;
        path_known = true;
        if (method_allowed(&routes[i], m.method_name)) {
            m.route = &routes[i];
            m.id = id;
            m.sub = sub;
        }
    }
    if (!m.route) {
        if (path_known)
            pt_mgmt_req_send_error(&m, 405, "MethodNotAllowed", "%s is not allowed here", m.method_name);
        else
            pt_mgmt_req_send_error(&m, 404, "RouteNotFound", "no such route: %s", path);
        goto done;
    }
    if (m.route->h == H_OPENAPI) {
        pt_mgmt_req_send_json(&m, 200, pt_mgmt_openapi_doc(routes, PT_ARRAY_LEN(routes)), NULL);
        goto done;
    }
    if (m.route->h == H_GW_SYNC) {
        pt_mgmt_gateways_sync(&m); /* a node's GatewayKey token instead of a bearer token */
        goto done;
    }
    if (m.route->h == H_TRACE_GET && pt_mgmt_trace_signed(&m))
        goto done; /* a trace location: its signature instead of a bearer token */
    if (!pt_mgmt_auth_authenticate(&m))
        goto done;
    bool write = m.method != EVHTTP_REQ_GET && m.route->h != H_SECRETS && m.route->h != H_NV_VALUE;
    /* writes are checked by the handlers once they know what exists (404 before 403 is not leaked: reads
       first) */
    if (!pt_mgmt_auth_authorize(
            &m, write && (m.route->h == H_REGEN1 || m.route->h == H_REGEN2 || m.route->h == H_APPLY)))
        goto done;
    if (m.ws && !pt_store_get(pt_mgmt_req_store, "workspace", "", m.ws, NULL, NULL)) {
        pt_mgmt_req_send_error(&m, 404, "ResourceNotFound", "workspace '%s' not found", m.ws);
        goto done;
    }
    const struct route *rt = m.route;
    switch (rt->h) {
    case H_LIST:
        pt_mgmt_entities_list(&m, rt->kind, "");
        break;
    case H_ENTITY:
        if (!strcmp(rt->kind, "api") && m.method == EVHTTP_REQ_GET && pt_mgmt_req_param(&m, "export") &&
            !strcmp(pt_mgmt_req_param(&m, "export"), "true"))
            pt_mgmt_import_export(&m, m.id);
        else if (!strcmp(rt->kind, "api") && m.method == EVHTTP_REQ_PUT && pt_mgmt_import_wanted(&m))
            pt_mgmt_import_put(&m, m.id);
        else
            pt_mgmt_entities_entity(&m, rt->kind, "", m.id);
        break;
    case H_OPS:
        if (!pt_mgmt_entities_get(&m, "api", "", m.id, NULL, NULL))
            pt_mgmt_req_send_error(&m, 404, "ResourceNotFound", "api '%s' not found", m.id);
        else
            pt_mgmt_entities_list(&m, "operation", m.id);
        break;
    case H_OP:
        if (!pt_mgmt_entities_get(&m, "api", "", m.id, NULL, NULL))
            pt_mgmt_req_send_error(&m, 404, "ResourceNotFound", "api '%s' not found", m.id);
        else {
            const char *op = m.sub;
            m.id = op; /* the entity itself is the operation; its parent is the API */
            const char *api = segs[1];
            pt_mgmt_entities_entity(&m, "operation", api, op);
        }
        break;
    case H_API_SCHEMAS:
    case H_API_SCHEMA:
        pt_mgmt_import_schema(&m, m.id, rt->h == H_API_SCHEMA ? m.sub : NULL);
        break;
    case H_POLICIES:
    case H_POLICY:
        pt_mgmt_entities_policy(&m, rt->kind, rt->h == H_POLICIES);
        break;
    case H_LINKS:
    case H_LINK:
        pt_mgmt_entities_links(&m, rt->kind, rt->h == H_LINK);
        break;
    case H_SECRETS:
    case H_REGEN1:
    case H_REGEN2:
        pt_mgmt_entities_sub_action(&m, rt->h);
        break;
    case H_NV_VALUE:
        pt_mgmt_entities_nv_value(&m);
        break;
    case H_APPLY:
        pt_mgmt_entities_apply(&m);
        break;
    case H_EXPORT:
        pt_mgmt_export_serve(&m);
        break;
    case H_PORTAL:
        pt_mgmt_portal_serve(&m);
        break;
    case H_USERS:
        pt_mgmt_users_serve(&m);
        break;
    case H_TRACE_CREDENTIALS:
        pt_mgmt_trace_credentials(&m);
        break;
    case H_TRACE_LIST:
        pt_mgmt_trace_list(&m);
        break;
    case H_TRACE_GET:
        pt_mgmt_trace_get(&m);
        break;
    case H_REPORTS:
        pt_mgmt_reports_serve(&m, m.id);
        break;
    case H_GATEWAYS:
        pt_mgmt_gateways_serve(&m);
        break;
    case H_GW_SYNC:
    case H_OPENAPI:
        break;
    }
done:
    json_decref(m.parsed);
    for (int i = 0; i < m.nseg; i++)
        free(m.segs[i]);
    free(copy);
    if (m.has_query)
        evhttp_clear_headers(&m.query);
}

/* ------------------------------------------------------------------ start */

static struct pt_tls_server *tls; /* HTTPS when the configuration gives a certificate */

bool pt_mgmt_start(struct event_base *base, const struct pt_conf *file, struct pt_store *st,
                   const struct pt_mgmt_hooks *h, struct pt_errors *errs)
{
    if (!file->mgmt.listen)
        return true;
    pt_mgmt_req_store = st;
    pt_mgmt_req_hooks = h;
    int fd = socket(file->mgmt.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, (const struct sockaddr *)&file->mgmt.sa, file->mgmt.salen) < 0 ||
        listen(fd, pt_conf_listen_backlog(0)) < 0) {
        pt_node_errors_add(errs, "management: cannot listen on %s: %s", file->mgmt.listen, strerror(errno));
        if (fd >= 0)
            close(fd);
        return false;
    }
    if (file->mgmt.tls.ncerts && !(tls = pt_tls_server_new(&file->mgmt.tls, errs))) {
        close(fd);
        return false;
    }
    http = evhttp_new(base);
    if (tls)
        evhttp_set_bevcb(http, pt_io_tls_evhttp_bev, tls);
    evhttp_set_max_body_size(http, (ev_ssize_t)file->mgmt.max_body);
    evhttp_set_max_headers_size(http, 64 * 1024);
    evhttp_set_timeout(http, PT_MGMT_IDLE_TIMEOUT);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_PUT | EVHTTP_REQ_POST | EVHTTP_REQ_PATCH |
                                         EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(http, on_request, NULL);
    if (!evhttp_accept_socket_with_handle(http, fd)) {
        pt_node_errors_add(errs, "management: cannot serve on %s", file->mgmt.listen);
        evhttp_free(http);
        http = NULL;
        pt_tls_server_free(tls);
        tls = NULL;
        close(fd);
        return false;
    }
    pt_mgmt_gateways_start(base);
    if (!pt_mgmt_auth_admin_token())
        pt_warn("management API on %s: no administrator token (set PORTICO_ADMIN_TOKEN or "
                "management.adminToken); only access tokens in the store are accepted",
                file->mgmt.listen);
    pt_info("management API listening on %s%s", file->mgmt.listen, tls ? " (HTTPS)" : "");
    return true;
}

void pt_mgmt_stop(void)
{
    if (http)
        evhttp_free(http); /* waiting long-polls' close callbacks drop their waiters */
    http = NULL;
    pt_mgmt_gateways_stop();
    pt_tls_server_free(tls);
    tls = NULL;
}
