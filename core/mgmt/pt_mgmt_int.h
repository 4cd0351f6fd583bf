/*
 * pt_mgmt_int -- what the files of the management API share; not for the
 * rest of the core (which sees pt_mgmt.h only).
 *
 *   pt_mgmt.c           the server: route table, dispatch, start and stop
 *   pt_mgmt_gateways.c  self-hosted gateways: entities, keys, tokens, nodes, and
 *                       the nodes' sync endpoints (configuration, heartbeat)
 *   pt_mgmt_portal.c    the developer portal's content (/management/portal/...)
 *   pt_mgmt_users.c     a user's portal password: invitation mail, setting it
 *   pt_mgmt_trace.c     request tracing: debug credentials, traces
 *   pt_mgmt_entities.c  entity reads and writes, links, policy documents,
 *                       subscription keys, named values' values, apply
 *   pt_mgmt_export.c    YAML output and the export
 *   pt_mgmt_openapi.c   the OpenAPI description of the routes
 *   pt_mgmt_reports.c   the usage reports (analytics)
 *   pt_mgmt_filter.c    $filter, $top and $skip: parsing, matching, pages
 *   pt_mgmt_metrics.c   the Prometheus endpoint, on this listener or its own
 *   pt_mgmt_auth.c      tokens, roles and workspaces: who may do what
 *   pt_mgmt_req.c       the store and hooks being served, a request's query
 *                       and body, replies, ETag preconditions
 *
 * A file calls only into the files listed after it (pt_mgmt_openapi.c
 * into none), so there is no circle among them.
 */
#ifndef PT_MGMT_INT_H
#define PT_MGMT_INT_H

#include "base/pt.h"
#include "conf/pt_conf.h"
#include "conf/pt_store.h"
#include "mgmt/pt_mgmt.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* ------------------------------------------------------------ the request */

enum role { R_NONE, R_ADMIN, R_READER, R_WS_CONTRIBUTOR, R_WS_READER, R_API_DEVELOPER, R_PRODUCT_MANAGER };

/* What a route touches, for authorization. */
/* A_SECRETS: subscription keys and the export; A_NV_SECRETS: named values' values. */
enum area { A_API, A_PRODUCT, A_SECRETS, A_NV_SECRETS, A_SERVICE, A_OPEN };

enum handler {
    H_LIST,
    H_ENTITY,
    H_OPS,
    H_OP,
    H_POLICIES,
    H_POLICY,
    H_LINKS,
    H_LINK,
    H_SECRETS,
    H_REGEN1,
    H_REGEN2,
    H_NV_VALUE,
    H_APPLY,
    H_EXPORT,
    H_OPENAPI,
    H_API_SCHEMAS,
    H_API_SCHEMA,
    H_TRACE_CREDENTIALS,
    H_TRACE_LIST,
    H_TRACE_GET,
    H_REPORTS,
    H_PORTAL,   /* /management/portal/...: route.kind says which collection */
    H_USERS,    /* users/{id}/invitation and users/{id}/password: route.kind says which */
    H_GATEWAYS, /* /gateways[...]: route.kind says which (list, entity, apis, api, nodes, generateToken...) */
    H_GW_SYNC,  /* gateways/{id}/configuration and /heartbeat: GatewayKey tokens, not bearer tokens */
};

struct route {
    const char *pattern; /* after /management/; {id} and {sub} are captured */
    const char *methods;
    enum handler h;
    const char *kind; /* entity kind, link kind or policy owner */
    enum area area;
    bool ws; /* also under /workspaces/{workspaceId}/ */
    const char *summary;
};

struct mreq {
    struct evhttp_request *r;
    enum evhttp_cmd_type method;
    const char *method_name;
    const struct route *route;
    char *segs[24];
    int nseg;
    const char *ws; /* /workspaces/{ws}/... */
    const char *id, *sub;
    struct evkeyvalq query;
    bool has_query;
    enum role role;
    char role_ws[128];
    char base[64];  /* "/management" or "/management/workspaces/x" (for nextLink) */
    json_t *parsed; /* the JSON body once read (pt_mgmt_req_body hands it out again) */
};

/* ------------------------------------------------------------ pt_mgmt_req */

/* What pt_mgmt_start was given: the store served and the hooks into the
   rest of the gateway. */
extern struct pt_store *pt_mgmt_req_store;
extern const struct pt_mgmt_hooks *pt_mgmt_req_hooks;

/* Replies with j (taken; NULL for no body) and, when given, an ETag. */
void pt_mgmt_req_send_json(struct mreq *m, int code, json_t *j, const char *etag);
/* Replies {"error": {"code", "message"}} (a 401 also says how to authenticate). */
void pt_mgmt_req_send_error(struct mreq *m, int status, const char *code, const char *fmt, ...)
    PT_PRINTF(4, 5);
/* Replies with each "LOCATION: message" of errs as a detail; a location
   under one of `strip` (NULL-terminated, or NULL) loses that prefix. */
void pt_mgmt_req_send_errors(struct mreq *m, int status, const char *code, const char *summary,
                             const struct pt_errors *errs, const char *const *strip);
/* A query parameter, or NULL. */
const char *pt_mgmt_req_param(struct mreq *m, const char *name);
/* The body as a NUL-terminated copy (to free), or NULL when empty. */
char *pt_mgmt_req_body_text(struct mreq *m, size_t *len);
/* The JSON body (YAML when Content-Type says so); on a bad body the error is
   sent and NULL returned.  `empty_ok` turns an empty body into {}. */
json_t *pt_mgmt_req_body(struct mreq *m, bool empty_ok);
/* After a large refused document, gives the parse memory back to the system. */
void pt_mgmt_req_give_back_memory(size_t body_len);
/* If-Match and If-None-Match against the entity's ETag (NULL: there is
   none); false after answering 412. */
bool pt_mgmt_req_check_etag(struct mreq *m, const char *etag);

/* -------------------------------------------------------- pt_mgmt_metrics */

/* Answers r when it asks for the metrics on the management listener
   (metrics.path, metrics served there); false when it is not for them. */
bool pt_mgmt_metrics_serve(struct evhttp_request *r);

/* ----------------------------------------------------------- pt_mgmt_auth */

/* The administrator token (PORTICO_ADMIN_TOKEN, else the file's), or NULL. */
const char *pt_mgmt_auth_admin_token(void);
/* Sets m->role (and m->role_ws) from the bearer token; false after answering 401. */
bool pt_mgmt_auth_authenticate(struct mreq *m);
/* May m's role read (or change) what m's route touches?  false after answering 403. */
bool pt_mgmt_auth_authorize(struct mreq *m, bool write);
/* Is r the name of a role an access token can have? */
bool pt_mgmt_auth_role_known(const char *r);
/* Does a token with role r need a workspace? */
bool pt_mgmt_auth_role_needs_workspace(const char *r);
/* A new access token's secret ("pt_" and 64 hex digits) and the hash the store keeps. */
void pt_mgmt_auth_new_token(char secret[80], char hash[65]);
/* Do the file names in a policy document (or a fragment) pass?  Only an
   administrator may name files, and only under the configuration's folder;
   false after answering 403 or 400. */
bool pt_mgmt_auth_files_allowed(struct mreq *m, json_t *doc);
/* A logger's host paths (file.path, a unix syslog socket) under the configuration's folder; false
   after answering 400. */
bool pt_mgmt_auth_logger_allowed(struct mreq *m, json_t *logger);

/* --------------------------------------------------------- pt_mgmt_filter */

/* The most conditions a $filter may join with "and". */
#define PT_MGMT_FILTER_MAX 8

/* One condition: `field eq 'value'` (or ne, ge, gt, le, lt) or
   `contains|startswith|endswith(field,'value')` (op is the lower-case name). */
struct pt_mgmt_filter_cond {
    char field[64];
    char op[16];
    char value[256];
};

/* Parses a $filter into at most max conditions; their number, or -1 when
   the text is not understood or has more than max. */
int pt_mgmt_filter_parse(const char *text, struct pt_mgmt_filter_cond *c, int max);
/* Does object o satisfy c?  Strings compare without case (ge, gt, le, lt in
   that order); booleans read as
   true/false, integers in decimal, a missing or null field as ''; any other
   value satisfies no condition. */
bool pt_mgmt_filter_holds(const struct pt_mgmt_filter_cond *c, const json_t *o);
/* The items that satisfy all n conditions, from the skip-th, at most top of
   them (a new array); *count is how many satisfy them in all. */
json_t *pt_mgmt_filter_page(const json_t *items, const struct pt_mgmt_filter_cond *c, int n, long top,
                            long skip, long *count);
/* Replies {"value": [...page...], "count": N, "nextLink": ...} for the
   request's $filter, $top and $skip, or 400; items is taken. */
/* A list's answer: {"value": page, "count", "nextLink"}, the link repeating the request's `keep`
   parameters (NULL-terminated) with the next $top/$skip; null when this page is the last. */
json_t *pt_mgmt_filter_envelope(struct mreq *m, json_t *page, long count, long top, long skip,
                                const char *const *keep);
void pt_mgmt_filter_send_page(struct mreq *m, json_t *items);

/* -------------------------------------------------------- pt_mgmt_reports */

/* GET /reports/{name}: the usage reports (docs/analytics.md). */
void pt_mgmt_reports_serve(struct mreq *m, const char *name);
/* An ISO 8601 duration (PT15M, PT1H, P1D, P1W, P1DT12H...) in seconds; -1 when
   it is not one, has years or months, or is not a positive multiple of a minute. */
int64_t pt_mgmt_reports_interval(const char *text);
/* An ISO 8601 date-time (2026-01-02T03:04:05Z, fractions, an offset, or a date
   alone) into Unix ms; false when it is not one. */
bool pt_mgmt_reports_datetime(const char *text, int64_t *ms);

/* --------------------------------------------------------- pt_mgmt_export */

/* ?format=yaml, or an Accept header naming YAML (the query wins). */
bool pt_mgmt_export_wants_yaml(struct mreq *m);
/* A 200 with doc as a YAML document, after an optional comment line. */
void pt_mgmt_export_send_yaml(struct mreq *m, const json_t *doc, const char *comment, const char *etag);
/* GET /export. */
void pt_mgmt_export_serve(struct mreq *m);

/* -------------------------------------------------------- pt_mgmt_openapi */

/* The OpenAPI document describing the n routes. */
json_t *pt_mgmt_openapi_doc(const struct route *routes, size_t n);

/* ------------------------------------------------------- pt_mgmt_entities */

/* Reads an entity visible from this request (workspace paths see their own). */
bool pt_mgmt_entities_get(struct mreq *m, const char *kind, const char *parent, const char *id, json_t **body,
                          char etag[24]);
/* The handlers: each answers the request. */
void pt_mgmt_entities_list(struct mreq *m, const char *kind, const char *parent);
void pt_mgmt_entities_entity(struct mreq *m, const char *kind, const char *parent, const char *id);
/* The checks a PUT or PATCH passes before its body is read; false when it has answered. */
bool pt_mgmt_entities_may_write(struct mreq *m, const char *kind, const char *parent, const char *id,
                                bool exists, const char *etag);
/* An entity as the API shows it (a new reference). */
json_t *pt_mgmt_entities_view(const char *kind, const char *id, const json_t *body);
/* Runs a change: fn writes inside a transaction, then the generation is built and published; on
   failure nothing is kept and the error is sent with fail_status.  true when the change is live. */
typedef bool (*pt_mgmt_change_fn)(struct mreq *m, void *arg, struct pt_errors *errs);
bool pt_mgmt_entities_change(struct mreq *m, pt_mgmt_change_fn fn, void *arg, int fail_status,
                             const char *const *strip);
/* Applies a document of entity lists ({"apis": [...]}) through the configuration file's code path. */
bool pt_mgmt_entities_apply_json(struct mreq *m, json_t *doc, struct pt_errors *errs);

/* --------------------------------------------------------- pt_mgmt_import */

/* Does this PUT of an API carry a definition (`format` and `value`)? */
bool pt_mgmt_import_wanted(struct mreq *m);
/* PUT /apis/{id} with a definition: import or re-import. */
void pt_mgmt_import_put(struct mreq *m, const char *id);
/* GET /apis/{id}?export=true&format=F. */
void pt_mgmt_import_export(struct mreq *m, const char *id);
/* /apis/{id}/schemas and /apis/{id}/schemas/{sub}: the API's schemas one by one (sub NULL: the list). */
void pt_mgmt_import_schema(struct mreq *m, const char *api, const char *sub);
void pt_mgmt_entities_policy(struct mreq *m, const char *owner, bool as_list);
void pt_mgmt_entities_links(struct mreq *m, const char *kind, bool one);
void pt_mgmt_entities_sub_action(struct mreq *m, enum handler h);
void pt_mgmt_entities_nv_value(struct mreq *m);
void pt_mgmt_entities_apply(struct mreq *m);

/* --------------------------------------------------------- pt_mgmt_portal */

/* /management/portal/{site,pages,media,revisions,templates}[...]: answers the request (the route's kind
   names the collection: site, pages, media, revisions, restore, templates). */
void pt_mgmt_portal_serve(struct mreq *m);

/* ------------------------------------------------------- pt_mgmt_gateways */

/* The REST routes of self-hosted gateways (H_GATEWAYS): answers the request. */
void pt_mgmt_gateways_serve(struct mreq *m);
/* The nodes' sync routes (H_GW_SYNC), authenticated by their GatewayKey token: answers now or, for a
   configuration long-poll, later. */
void pt_mgmt_gateways_sync(struct mreq *m);
/* With the listener's event base (the long-polls' timers); stop drops every waiter and node. */
void pt_mgmt_gateways_start(struct event_base *base);
void pt_mgmt_gateways_stop(void);

/* ---------------------------------------------------------- pt_mgmt_users */

/* POST users/{id}/invitation and PUT users/{id}/password (the route's kind:
   invitation, password): answers the request. */
void pt_mgmt_users_serve(struct mreq *m);

/* ---------------------------------------------------------- pt_mgmt_trace */

/* POST gateways/managed/listDebugCredentials: a debug token for an API the caller may read. */
void pt_mgmt_trace_credentials(struct mreq *m);
/* POST gateways/managed/listTrace: a trace of an API the caller may read. */
void pt_mgmt_trace_list(struct mreq *m);
/* GET gateways/managed/traces/{id} with ?expires=&sig= (a trace location): answers
   (the trace, or 403) and returns true; false without `sig` (a bearer token decides). */
bool pt_mgmt_trace_signed(struct mreq *m);
/* GET gateways/managed/traces/{id} with a bearer token: as listTrace. */
void pt_mgmt_trace_get(struct mreq *m);

#endif
