/*
 * pt_mgmt -- the management REST API (see pt_mgmt.h and docs/management-api.md).
 *
 * One route table drives both the dispatcher and the OpenAPI description
 * served at /management/openapi.json, so the two cannot disagree.
 * Entities are written through pt_model_apply, the same code that applies
 * the configuration file, then the next generation is built from the store
 * before the transaction commits.
 */
#include "mgmt/pt_mgmt.h"
#include "base/pt_log.h"
#include "conf/pt_model.h"
#include "event/pt_tls.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <yaml.h>

static struct evhttp *http;
static struct pt_store *store;
static const struct pt_mgmt_hooks *hooks;

/* ------------------------------------------------------------------ roles */

enum role { R_NONE, R_ADMIN, R_READER, R_WS_CONTRIBUTOR, R_WS_READER, R_API_DEVELOPER, R_PRODUCT_MANAGER };
static const char *const role_names[] = {"", "administrator", "reader", "workspaceContributor", "workspaceReader",
                                         "apiDeveloper", "apiProductManager", NULL};

/* What a route touches, for authorization. */
/* A_SECRETS: subscription keys and the export; A_NV_SECRETS: named values' values. */
enum area { A_API, A_PRODUCT, A_SECRETS, A_NV_SECRETS, A_SERVICE, A_OPEN };

/* ----------------------------------------------------------------- routes */

enum handler {
    H_LIST, H_ENTITY, H_OPS, H_OP, H_POLICIES, H_POLICY, H_LINKS, H_LINK, H_SECRETS, H_REGEN1, H_REGEN2,
    H_NV_VALUE, H_APPLY, H_EXPORT, H_OPENAPI,
};

struct route {
    const char *pattern; /* after /management/; {id} and {sub} are captured */
    const char *methods;
    enum handler h;
    const char *kind; /* entity kind, link kind or policy owner */
    enum area area;
    bool ws;          /* also under /workspaces/{workspaceId}/ */
    const char *summary;
};

#define ENTITY_ROUTES(coll, kind, area, ws, what)                                                              \
    {coll, "GET", H_LIST, kind, area, ws, "List " what "s"},                                                    \
    {coll "/{id}", "GET PUT PATCH DELETE", H_ENTITY, kind, area, ws, "Get, create or replace, update or delete a " what}

static const struct route routes[] = {
    ENTITY_ROUTES("apis", "api", A_API, true, "API"),
    {"apis/{id}/operations", "GET", H_OPS, "operation", A_API, true, "List the operations of an API"},
    {"apis/{id}/operations/{sub}", "GET PUT PATCH DELETE", H_OP, "operation", A_API, true, "An operation"},
    {"apis/{id}/policies", "GET", H_POLICIES, "api", A_API, true, "The API's policy document as a list"},
    {"apis/{id}/policies/policy", "GET PUT DELETE", H_POLICY, "api", A_API, true, "The API's policy document"},
    {"apis/{id}/operations/{sub}/policies", "GET", H_POLICIES, "operation", A_API, true,
     "The operation's policy document as a list"},
    {"apis/{id}/operations/{sub}/policies/policy", "GET PUT DELETE", H_POLICY, "operation", A_API, true,
     "The operation's policy document"},
    ENTITY_ROUTES("products", "product", A_PRODUCT, true, "product"),
    {"products/{id}/apis", "GET", H_LINKS, "product-api", A_PRODUCT, true, "The APIs of a product"},
    {"products/{id}/apis/{sub}", "GET PUT DELETE", H_LINK, "product-api", A_PRODUCT, true,
     "Add an API to a product or remove it"},
    {"products/{id}/groups", "GET", H_LINKS, "product-group", A_PRODUCT, true, "The groups that see a product"},
    {"products/{id}/groups/{sub}", "GET PUT DELETE", H_LINK, "product-group", A_PRODUCT, true,
     "Let a group see a product, or stop"},
    {"products/{id}/policies", "GET", H_POLICIES, "product", A_PRODUCT, true, "The product's policy document as a list"},
    {"products/{id}/policies/policy", "GET PUT DELETE", H_POLICY, "product", A_PRODUCT, true,
     "The product's policy document"},
    ENTITY_ROUTES("groups", "group", A_PRODUCT, true, "group"),
    {"groups/{id}/users", "GET", H_LINKS, "group-user", A_PRODUCT, true, "The users of a group"},
    {"groups/{id}/users/{sub}", "GET PUT DELETE", H_LINK, "group-user", A_PRODUCT, true,
     "Add a user to a group or remove them"},
    ENTITY_ROUTES("users", "user", A_SERVICE, false, "user"),
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
    {"openapi.json", "GET", H_OPENAPI, NULL, A_OPEN, false, "This description"},
};

/* Entity kinds and their collection names (pt_kinds plus tokens). */
static const char *list_of(const char *kind)
{
    for (int i = 0; pt_kinds[i].kind; i++)
        if (!strcmp(pt_kinds[i].kind, kind))
            return pt_kinds[i].list;
    return !strcmp(kind, "token") ? "tokens" : NULL;
}

static const char *const builtin_groups[] = {"administrators", "developers", "guests", NULL};

static bool is_builtin_group(const char *id)
{
    for (int i = 0; builtin_groups[i]; i++)
        if (!strcmp(builtin_groups[i], id))
            return true;
    return false;
}

/* ---------------------------------------------------------------- request */

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
    char base[64]; /* "/management" or "/management/workspaces/x" (for nextLink) */
};

static void send_json(struct mreq *m, int code, json_t *j, const char *etag)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(m->r);
    struct evbuffer *b = evbuffer_new();
    if (j) {
        char *txt = json_dumps(j, JSON_INDENT(2) | JSON_ENSURE_ASCII);
        evbuffer_add(b, txt, strlen(txt));
        evbuffer_add(b, "\n", 1);
        free(txt);
        evhttp_add_header(oh, "Content-Type", "application/json; charset=utf-8");
    }
    if (etag) {
        char q[40];
        snprintf(q, sizeof(q), "\"%s\"", etag);
        evhttp_add_header(oh, "ETag", q);
    }
    evhttp_add_header(oh, "Cache-Control", "no-store");
    static const char *const reasons[][2] = {
        {"200", "OK"}, {"201", "Created"}, {"204", "No Content"}, {"400", "Bad Request"},
        {"401", "Unauthorized"}, {"403", "Forbidden"}, {"404", "Not Found"}, {"405", "Method Not Allowed"},
        {"409", "Conflict"}, {"412", "Precondition Failed"}, {"413", "Payload Too Large"},
        {"415", "Unsupported Media Type"}, {"500", "Internal Server Error"},
    };
    const char *reason = "OK";
    char cs[8];
    snprintf(cs, sizeof(cs), "%d", code);
    for (size_t i = 0; i < PT_ARRAY_LEN(reasons); i++)
        if (!strcmp(reasons[i][0], cs))
            reason = reasons[i][1];
    evhttp_send_reply(m->r, code, reason, b);
    evbuffer_free(b);
    json_decref(j);
}

static json_t *error_body(const char *code, const char *msg)
{
    return json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
}

static void send_error(struct mreq *m, int status, const char *code, const char *fmt, ...) PT_PRINTF(4, 5);
static void send_error(struct mreq *m, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (status == 401)
        evhttp_add_header(evhttp_request_get_output_headers(m->r), "WWW-Authenticate", "Bearer realm=\"portico\"");
    send_json(m, status, error_body(code, msg), NULL);
}

/*
 * Errors as details: each "LOCATION: message" becomes {target, message};
 * a location under `strip` loses that prefix (so a request body's errors
 * name its own fields: "path", "operations[0].method").
 */
static void send_errors(struct mreq *m, int status, const char *code, const char *summary,
                        const struct pt_errors *errs, const char *const *strip)
{
    json_t *details = json_array();
    for (int i = 0; i < errs->n; i++) {
        const char *e = errs->msgs[i];
        const char *sep = strstr(e, ": ");
        json_t *d = json_object();
        json_object_set_new(d, "code", json_string(code));
        if (sep) {
            char where[512];
            snprintf(where, sizeof(where), "%.*s", (int)(sep - e), e);
            const char *t = where;
            for (int k = 0; strip && strip[k]; k++) {
                size_t n = strlen(strip[k]);
                if (n && !strncmp(where, strip[k], n) && (where[n] == '.' || where[n] == '[' || !where[n])) {
                    t = where + n + (where[n] == '.');
                    break;
                }
            }
            json_object_set_new(d, "target", json_string(*t ? t : "(body)"));
            json_object_set_new(d, "message", json_string(sep + 2));
        } else
            json_object_set_new(d, "message", json_string(e));
        json_array_append_new(details, d);
    }
    json_t *j = error_body(code, summary);
    json_object_set_new(json_object_get(j, "error"), "details", details);
    send_json(m, status, j, NULL);
}

static const char *qparam(struct mreq *m, const char *name)
{
    return m->has_query ? evhttp_find_header(&m->query, name) : NULL;
}

/* The request body as text (NUL-terminated copy) or NULL when empty. */
static char *body_text(struct mreq *m, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(m->r);
    size_t n = evbuffer_get_length(in);
    *len = n;
    if (!n)
        return NULL;
    char *t = malloc(n + 1);
    evbuffer_copyout(in, t, n);
    t[n] = '\0';
    return t;
}

/* After a large refused document, the parse memory goes back to the system
   (glibc keeps freed heap otherwise: repeated bad writes would grow the
   process). */
static void give_back_memory(size_t body_len)
{
#ifdef __GLIBC__
    if (body_len > 256 * 1024)
        malloc_trim(0);
#else
    (void)body_len;
#endif
}

static bool is_yaml(struct mreq *m)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(m->r), "Content-Type");
    return ct && (strstr(ct, "yaml") || strstr(ct, "YAML"));
}

/*
 * The JSON body (YAML when Content-Type says so).  On a bad body the error
 * is sent and NULL returned; `empty_ok` turns an empty body into {}.
 */
static json_t *read_body(struct mreq *m, bool empty_ok)
{
    size_t len;
    char *text = body_text(m, &len);
    if (!text) {
        if (empty_ok)
            return json_object();
        send_error(m, 400, "InvalidRequestBody", "a JSON body is required");
        return NULL;
    }
    json_t *j = NULL;
    if (is_yaml(m)) {
        struct pt_errors errs = {0};
        struct pt_pool *pool = pt_pool_new(8192);
        struct pt_node *n = pt_node_parse_yaml(pool, "body", text, len, &errs);
        if (n)
            j = pt_node_to_json(n);
        else
            send_errors(m, 400, "InvalidRequestBody", "the YAML body cannot be read", &errs, NULL);
        pt_pool_free(pool);
        if (!n)
            give_back_memory(len);
        pt_errors_clear(&errs);
    } else {
        json_error_t je;
        j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        if (!j)
            send_error(m, 400, "InvalidRequestBody", "malformed JSON at line %d, column %d: %s", je.line, je.column,
                       je.text);
    }
    free(text);
    return j;
}

/* ------------------------------------------------------------------- auth */

static void sha256_hex(const char *s, char out[65])
{
    unsigned char d[32];
    SHA256((const unsigned char *)s, strlen(s), d);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

struct token_find {
    const char hash[65];
    enum role role;
    char ws[128];
};

static bool token_match(void *arg, const struct pt_entity *e)
{
    struct token_find *f = arg;
    const char *h = json_string_value(json_object_get(e->body, "hash"));
    if (!h || strlen(h) != 64 || CRYPTO_memcmp(h, f->hash, 64) != 0)
        return true;
    const char *r = json_string_value(json_object_get(e->body, "role"));
    for (int i = 1; r && role_names[i]; i++)
        if (!strcmp(role_names[i], r))
            f->role = (enum role)i;
    snprintf(f->ws, sizeof(f->ws), "%s", json_string_value(json_object_get(e->body, "workspace")) ?: "");
    return false;
}

static const char *admin_token(void)
{
    const char *e = getenv("PORTICO_ADMIN_TOKEN");
    if (e && *e)
        return e;
    const struct pt_conf *f = hooks->file();
    return f->mgmt.admin_token;
}

static bool authenticate(struct mreq *m)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(m->r), "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) || !h[7]) {
        send_error(m, 401, "Unauthorized", "an Authorization: Bearer token is required");
        return false;
    }
    const char *tok = h + 7;
    const char *admin = admin_token();
    char hash[65];
    sha256_hex(tok, hash);
    if (admin) {
        char ah[65];
        sha256_hex(admin, ah);
        if (CRYPTO_memcmp(ah, hash, 64) == 0) {
            m->role = R_ADMIN;
            return true;
        }
    }
    struct token_find f = {.role = R_NONE};
    memcpy((char *)f.hash, hash, 65);
    pt_store_each(store, "token", "", token_match, &f);
    if (f.role == R_NONE) {
        send_error(m, 401, "Unauthorized", "the token is not valid");
        return false;
    }
    m->role = f.role;
    snprintf(m->role_ws, sizeof(m->role_ws), "%s", f.ws);
    return true;
}

static bool authorize(struct mreq *m, bool write)
{
    enum area a = m->route->area;
    bool ok = false;
    switch (m->role) {
    case R_ADMIN:
        ok = true;
        break;
    case R_READER:
        ok = !write && a != A_SECRETS && a != A_NV_SECRETS;
        break;
    default: {
        /* workspace roles: inside their workspace only */
        bool ws_policy = (m->route->h == H_POLICY || m->route->h == H_POLICIES) && m->route->kind &&
                         !strcmp(m->route->kind, "workspace");
        bool own = m->ws ? !strcmp(m->ws, m->role_ws) : ws_policy && m->id && !strcmp(m->id, m->role_ws);
        bool self = !m->ws && m->route->kind && !strcmp(m->route->kind, "workspace") && m->id &&
                    !strcmp(m->id, m->role_ws) && !write;
        if (self)
            ok = true;
        else if (!own)
            ok = false;
        else if (m->role == R_WS_CONTRIBUTOR)
            ok = true;
        else if (m->role == R_WS_READER)
            ok = !write && a != A_SECRETS && a != A_NV_SECRETS;
        else if (m->role == R_API_DEVELOPER) /* APIs and what they use: named values too */
            ok = a == A_API || a == A_NV_SECRETS || (!write && a != A_SECRETS);
        else if (m->role == R_PRODUCT_MANAGER) /* products and subscriptions, their keys */
            ok = a == A_PRODUCT || a == A_SECRETS || (!write && a != A_NV_SECRETS);
    }
    }
    if (!ok)
        send_error(m, 403, "Forbidden", "the %s role may not %s %s", role_names[m->role], write ? "change" : "read",
                   m->ws && strcmp(m->ws, m->role_ws) ? "another workspace" : "this resource");
    return ok;
}

/* ---------------------------------------------------------------- helpers */

/* Does the ETag written in a header, a[0..n) ("\"x\"", W/"x", or bare), name etag? */
static bool etag_is(const char *a, size_t n, const char *etag)
{
    if (n >= 2 && !strncmp(a, "W/", 2)) {
        a += 2;
        n -= 2;
    }
    if (n >= 2 && a[0] == '"' && a[n - 1] == '"') {
        a++;
        n -= 2;
    }
    return n == strlen(etag) && !strncmp(a, etag, n);
}

static bool etag_matches(struct mreq *m, const char *etag)
{
    const char *im = evhttp_find_header(evhttp_request_get_input_headers(m->r), "If-Match");
    if (!im)
        return true;
    if (!strcmp(im, "*"))
        return etag != NULL;
    return etag && etag_is(im, strlen(im), etag);
}

/* If-None-Match on a write: "*" means "only if it does not exist yet" (a
   create that never overwrites); a list of ETags means "only if it is none
   of these".  true when the header allows the write. */
static bool none_match_allows(struct mreq *m, const char *etag)
{
    const char *inm = evhttp_find_header(evhttp_request_get_input_headers(m->r), "If-None-Match");
    if (!inm || !etag)
        return true;
    for (const char *p = inm; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *b = end;
        while (b > p && b[-1] == ' ')
            b--;
        if ((b - p == 1 && *p == '*') || (b > p && etag_is(p, (size_t)(b - p), etag)))
            return false;
        p = end;
    }
    return true;
}

static bool check_etag(struct mreq *m, const char *etag)
{
    if (!none_match_allows(m, etag)) {
        send_error(m, 412, "PreconditionFailed", "If-None-Match: the entity exists (or has a listed ETag)");
        return false;
    }
    if (etag_matches(m, etag))
        return true;
    send_error(m, 412, "PreconditionFailed",
               etag ? "the entity changed: If-Match does not match its ETag" : "If-Match given but there is no entity");
    return false;
}

/* The public view of a stored entity: id first, secrets out. */
static json_t *view(const char *kind, const char *id, const json_t *body)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(id));
    json_object_update(o, (json_t *)body);
    json_object_del(o, "sealed");
    json_object_del(o, "hash");
    if (!strcmp(kind, "subscription")) {
        json_object_del(o, "primaryKey");
        json_object_del(o, "secondaryKey");
        /* past its expirationDate or endDate an active subscription is expired (APIM) */
        const char *dates[2] = {json_string_value(json_object_get(o, "expirationDate")),
                                json_string_value(json_object_get(o, "endDate"))};
        const char *state = json_string_value(json_object_get(o, "state"));
        for (int i = 0; i < 2 && state && !strcmp(state, "active"); i++) {
            int64_t t;
            if (dates[i] && pt_parse_iso8601(dates[i], &t) && (int64_t)pt_wall_ms() >= t) {
                json_object_set_new(o, "state", json_string("expired"));
                break;
            }
        }
    } else if (!strcmp(kind, "namedValue") && json_is_true(json_object_get(o, "secret")))
        json_object_del(o, "value");
    return o;
}

static bool in_scope(struct mreq *m, const json_t *body)
{
    if (!m->ws)
        return true;
    const char *w = json_string_value(json_object_get(body, "workspace"));
    return w && !strcmp(w, m->ws);
}

/* Reads an entity visible from this request (workspace paths see their own). */
static bool get_entity(struct mreq *m, const char *kind, const char *parent, const char *id, json_t **body,
                       char etag[24])
{
    json_t *b = NULL;
    if (!pt_store_get(store, kind, parent, id, &b, etag))
        return false;
    if (!in_scope(m, b)) {
        json_decref(b);
        return false;
    }
    if (body)
        *body = b;
    else
        json_decref(b);
    return true;
}

static bool from_file(const char *kind, const char *parent, const char *id)
{
    char src[16];
    return pt_store_info(store, kind, parent, id, src, NULL) && !strcmp(src, "config");
}

static void refuse_file_owned(struct mreq *m, const char *kind, const char *id)
{
    send_error(m, 409, "Conflict", "%s '%s' is declared in the configuration file %s; change it there", kind, id,
               hooks->file()->file);
}

/* Index of id among the entities of kind (store order), for error paths. */
struct idx {
    const char *id;
    int n;
};
static bool count_less(void *arg, const struct pt_entity *e)
{
    struct idx *x = arg;
    if (strcmp(e->id, x->id) < 0)
        x->n++;
    return true;
}
static int index_of(const char *kind, const char *parent, const char *id)
{
    struct idx x = {id, 0};
    pt_store_each(store, kind, parent, count_less, &x);
    return x.n;
}

/* Where an entity sits in the generation's tree: "apis[3]", "apis[3].operations[0]". */
static void tree_path(const char *kind, const char *parent, const char *id, char *out, size_t size)
{
    if (!strcmp(kind, "operation"))
        snprintf(out, size, "apis[%d].operations[%d]", index_of("api", "", parent), index_of("operation", parent, id));
    else if (!strcmp(kind, "global"))
        snprintf(out, size, "policies");
    else
        snprintf(out, size, "%s[%d]", list_of(kind), index_of(kind, "", id));
}

/*
 * Runs a change: `fn` writes inside a transaction, then the generation is
 * built and published.  On failure nothing is kept and the error is sent
 * (status `fail_status`); true when the change is live.
 */
typedef bool (*change_fn)(struct mreq *m, void *arg, struct pt_errors *errs);

static bool run_change(struct mreq *m, change_fn fn, void *arg, int fail_status, const char *const *strip)
{
    struct pt_errors errs = {0};
    if (!pt_store_begin(store)) {
        send_error(m, 500, "StoreError", "the store cannot start a transaction: %s", pt_store_error(store));
        return false;
    }
    if (!fn(m, arg, &errs)) {
        pt_store_rollback(store);
        bool conflict = false;
        for (int i = 0; i < errs.n; i++)
            conflict |= strstr(errs.msgs[i], "declared in the configuration file") != NULL;
        if (errs.n == 0)
            pt_errors_add(&errs, "store: %s", pt_store_error(store));
        send_errors(m, conflict ? 409 : 400, conflict ? "Conflict" : "ValidationError",
                    conflict ? "the change touches what the configuration file declares" : "the request is not valid",
                    &errs, strip);
        pt_errors_clear(&errs);
        return false;
    }
    if (!hooks->publish(&errs)) {
        bool claim = false; /* a path another scope's API holds */
        for (int i = 0; i < errs.n; i++)
            claim |= strstr(errs.msgs[i], "claims requests of API") != NULL;
        if (claim)
            fail_status = 409;
        send_errors(m, fail_status, fail_status == 409 ? "Conflict" : "ValidationError",
                    claim                ? "the API's path and host would take requests from another workspace's API; "
                                           "nothing was changed"
                    : fail_status == 409 ? "the entity is still in use; nothing was changed"
                                         : "the change would make the configuration invalid; nothing was changed",
                    &errs, strip);
        pt_errors_clear(&errs);
        return false;
    }
    return true;
}

/* Applies a document of entity lists through the configuration file's code path. */
struct apply_arg {
    json_t *doc;
    const struct pt_node *positions;
    const char *name;
};

static bool apply_doc(struct mreq *m, void *arg, struct pt_errors *errs)
{
    struct apply_arg *a = arg;
    const struct pt_conf *file = hooks->file();
    struct pt_conf *cf = pt_model_parse_doc(file, a->doc, a->positions, a->name, errs);
    if (!cf)
        return false;
    bool ok = pt_model_apply(store, cf, pt_model_secret_key(file), "api", errs);
    pt_conf_free(cf);
    return ok;
}

/* ---------------------------------------------------------------- $filter */

struct cond {
    char field[64];
    char op[16];
    char value[256];
};

static int parse_filter(const char *f, struct cond *c, int max)
{
    int n = 0;
    const char *p = f;
    while (*p) {
        while (*p == ' ')
            p++;
        if (n == max)
            return -1;
        struct cond *x = &c[n];
        memset(x, 0, sizeof(*x));
        const char *fn = NULL;
        static const char *const fns[] = {"contains(", "startswith(", "endswith(", NULL};
        for (int i = 0; fns[i]; i++)
            if (!strncasecmp(p, fns[i], strlen(fns[i])))
                fn = fns[i];
        if (fn) {
            snprintf(x->op, sizeof(x->op), "%.*s", (int)strlen(fn) - 1, fn);
            p += strlen(fn);
            size_t k = strcspn(p, ",");
            if (!p[k] || k >= sizeof(x->field))
                return -1;
            snprintf(x->field, sizeof(x->field), "%.*s", (int)k, p);
            p += k + 1;
            while (*p == ' ')
                p++;
        } else {
            size_t k = strcspn(p, " ");
            if (!p[k] || k >= sizeof(x->field))
                return -1;
            snprintf(x->field, sizeof(x->field), "%.*s", (int)k, p);
            p += k + 1;
            k = strcspn(p, " ");
            if (!p[k] || k >= sizeof(x->op) || (strncmp(p, "eq", k) && strncmp(p, "ne", k)) || k != 2)
                return -1;
            snprintf(x->op, sizeof(x->op), "%.*s", (int)k, p);
            p += k + 1;
        }
        /* the value: 'text' ('' for a quote), or a bare word (true, 3) */
        size_t vn = 0;
        if (*p == '\'') {
            p++;
            for (;;) {
                if (!*p)
                    return -1;
                if (*p == '\'' && p[1] == '\'') {
                    p += 2;
                    if (vn + 1 < sizeof(x->value))
                        x->value[vn++] = '\'';
                    continue;
                }
                if (*p == '\'') {
                    p++;
                    break;
                }
                if (vn + 1 < sizeof(x->value))
                    x->value[vn++] = *p;
                p++;
            }
        } else {
            while (*p && *p != ' ' && *p != ')' && vn + 1 < sizeof(x->value))
                x->value[vn++] = *p++;
            if (!vn)
                return -1;
        }
        if (fn) {
            while (*p == ' ')
                p++;
            if (*p++ != ')')
                return -1;
        }
        n++;
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        if (strncasecmp(p, "and ", 4))
            return -1;
        p += 4;
    }
    return n;
}

static bool cond_holds(const struct cond *c, const json_t *o)
{
    const json_t *v = json_object_get(o, c->field);
    char buf[64];
    const char *s = NULL;
    if (json_is_string(v))
        s = json_string_value(v);
    else if (json_is_boolean(v))
        s = json_is_true(v) ? "true" : "false";
    else if (json_is_integer(v)) {
        snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
        s = buf;
    } else if (json_is_null(v) || !v)
        s = "";
    if (!s)
        return false;
    if (!strcmp(c->op, "eq"))
        return !strcasecmp(s, c->value);
    if (!strcmp(c->op, "ne"))
        return strcasecmp(s, c->value) != 0;
    if (!strcmp(c->op, "contains"))
        return strcasestr(s, c->value) != NULL;
    size_t sl = strlen(s), vl = strlen(c->value);
    if (!strcmp(c->op, "startswith"))
        return sl >= vl && !strncasecmp(s, c->value, vl);
    return sl >= vl && !strcasecmp(s + sl - vl, c->value);
}

/* Sends {"value": [...page...], "count": N, "nextLink": ...} from all items. */
static void send_page(struct mreq *m, json_t *items)
{
    const char *ftxt = qparam(m, "$filter"), *ttxt = qparam(m, "$top"), *stxt = qparam(m, "$skip");
    struct cond conds[8];
    int nc = 0;
    if (ftxt && (nc = parse_filter(ftxt, conds, 8)) < 0) {
        json_decref(items);
        send_error(m, 400, "InvalidFilter",
                   "$filter '%s' is not understood (use field eq 'value', ne, contains(field,'x'), "
                   "startswith(field,'x'), endswith(field,'x'), joined by and)",
                   ftxt);
        return;
    }
    long top = 100, skip = 0;
    char *end;
    if (ttxt) {
        top = strtol(ttxt, &end, 10);
        if (*end || top < 1 || top > 1000) {
            json_decref(items);
            send_error(m, 400, "InvalidParameter", "$top must be an integer from 1 to 1000");
            return;
        }
    }
    if (stxt) {
        errno = 0;
        skip = strtol(stxt, &end, 10);
        if (*end || skip < 0 || errno == ERANGE || skip > 1000000000L) {
            json_decref(items);
            send_error(m, 400, "InvalidParameter", "$skip must be an integer from 0 to 1000000000");
            return;
        }
    }
    json_t *matched = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        bool ok = true;
        for (int k = 0; k < nc && ok; k++)
            ok = cond_holds(&conds[k], it);
        if (ok)
            json_array_append(matched, it);
    }
    json_decref(items);
    long count = (long)json_array_size(matched);
    json_t *page = json_array();
    for (long k = skip; k < count && k < skip + top; k++)
        json_array_append(page, json_array_get(matched, (size_t)k));
    json_decref(matched);
    json_t *out = json_object();
    json_object_set_new(out, "value", page);
    json_object_set_new(out, "count", json_integer(count));
    if (skip + top < count) {
        const char *uri = evhttp_request_get_uri(m->r);
        const char *q = strchr(uri, '?');
        char link[2048];
        int k = snprintf(link, sizeof(link), "%.*s?", (int)(q ? q - uri : (long)strlen(uri)), uri);
        if (ftxt) {
            char *enc = evhttp_encode_uri(ftxt);
            k += snprintf(link + k, sizeof(link) - (size_t)k, "$filter=%s&", enc);
            free(enc);
        }
        snprintf(link + k, sizeof(link) - (size_t)k, "$top=%ld&$skip=%ld", top, skip + top);
        json_object_set_new(out, "nextLink", json_string(link));
    } else
        json_object_set_new(out, "nextLink", json_null());
    char tag[32];
    snprintf(tag, sizeof(tag), "v%llu", (unsigned long long)pt_store_version(store));
    send_json(m, 200, out, tag);
}

/* ----------------------------------------------------------------- lists */

struct collect {
    struct mreq *m;
    json_t *items;
    const char *kind;
};

static bool collect_one(void *arg, const struct pt_entity *e)
{
    struct collect *c = arg;
    if (in_scope(c->m, e->body))
        json_array_append_new(c->items, view(c->kind, e->id, e->body));
    return true;
}

static void h_list(struct mreq *m, const char *kind, const char *parent)
{
    json_t *items = json_array();
    if (!strcmp(kind, "group") && !m->ws)
        for (int i = 0; builtin_groups[i]; i++)
            if (!pt_store_get(store, "group", "", builtin_groups[i], NULL, NULL))
                json_array_append_new(items, json_pack("{s:s,s:s,s:b,s:s}", "id", builtin_groups[i], "displayName",
                                                       builtin_groups[i], "builtIn", 1, "type", "system"));
    struct collect c = {m, items, kind};
    pt_store_each(store, kind, parent, collect_one, &c);
    send_page(m, items);
}

/* ---------------------------------------------------------------- entities */

/* Fields that are relations or sub-resources: not part of an entity body. */
static const char *nested_field(const char *kind, const json_t *body)
{
    static const struct {
        const char *kind, *field, *where;
    } nested[] = {
        {"api", "operations", "operations"}, {"api", "policies", "policies"}, {"operation", "policies", "policies"},
        {"product", "apis", "apis"},          {"product", "groups", "groups"}, {"product", "policies", "policies"},
        {"user", "groups", "groups"},
    };
    for (size_t i = 0; i < PT_ARRAY_LEN(nested); i++)
        if (!strcmp(nested[i].kind, kind) && json_object_get(body, nested[i].field))
            return nested[i].field;
    return NULL;
}

struct put_arg {
    const char *kind, *parent, *id;
    json_t *obj; /* the full entity with id */
};

static bool put_entity(struct mreq *m, void *arg, struct pt_errors *errs)
{
    struct put_arg *p = arg;
    json_t *doc = json_object();
    if (!strcmp(p->kind, "operation")) {
        json_t *api = NULL;
        pt_store_get(store, "api", "", p->parent, &api, NULL);
        json_object_set_new(api, "id", json_string(p->parent));
        json_object_set_new(api, "operations", json_pack("[O]", p->obj));
        json_object_set_new(doc, "apis", json_pack("[o]", api));
    } else
        json_object_set_new(doc, list_of(p->kind), json_pack("[O]", p->obj));
    struct apply_arg a = {doc, NULL, "body"};
    bool ok = apply_doc(m, &a, errs);
    json_decref(doc);
    return ok;
}

static bool put_token(struct mreq *m, void *arg, struct pt_errors *errs)
{
    struct put_arg *p = arg;
    json_t *b = json_deep_copy(p->obj);
    json_object_del(b, "id");
    bool ok = pt_store_put(store, "token", "", p->id, json_string_value(json_object_get(b, "workspace")) ?: "", b,
                           "api", NULL);
    json_decref(b);
    return ok;
}

struct del_arg {
    const char *kind, *parent, *id;
};

static bool unlink_b(void *arg, const char *a, const char *b)
{
    const char **x = arg; /* {kind, id} */
    if (!strcmp(b, x[1]))
        pt_store_unlink(store, x[0], a, b);
    return true;
}

static bool collect_ids(void *arg, const struct pt_entity *e)
{
    json_array_append_new(arg, json_string(e->id));
    return true;
}

static bool delete_entity(struct mreq *m, void *arg, struct pt_errors *errs)
{
    struct del_arg *d = arg;
    char pid[600];
    bool ok = pt_store_delete(store, d->kind, d->parent, d->id);
    if (!strcmp(d->kind, "api")) {
        /* its operations, policies and product memberships go with it */
        json_t *ops = json_array();
        pt_store_each(store, "operation", d->id, collect_ids, ops);
        size_t i;
        json_t *o;
        json_array_foreach(ops, i, o)
        {
            ok &= pt_store_delete(store, "operation", d->id, json_string_value(o));
            snprintf(pid, sizeof(pid), "op:%s/%s", d->id, json_string_value(o));
            pt_store_delete(store, "policy", "", pid);
        }
        json_decref(ops);
        snprintf(pid, sizeof(pid), "api:%s", d->id);
        pt_store_delete(store, "policy", "", pid);
        const char *x[2] = {"product-api", d->id};
        pt_store_links(store, "product-api", NULL, unlink_b, x);
    } else if (!strcmp(d->kind, "operation")) {
        snprintf(pid, sizeof(pid), "op:%s/%s", d->parent, d->id);
        pt_store_delete(store, "policy", "", pid);
    } else if (!strcmp(d->kind, "product") || !strcmp(d->kind, "workspace")) {
        snprintf(pid, sizeof(pid), "%s:%s", d->kind, d->id);
        pt_store_delete(store, "policy", "", pid);
    } else if (!strcmp(d->kind, "user")) {
        const char *x[2] = {"group-user", d->id};
        pt_store_links(store, "group-user", NULL, unlink_b, x);
    } else if (!strcmp(d->kind, "group")) {
        const char *x[2] = {"product-group", d->id};
        pt_store_links(store, "product-group", NULL, unlink_b, x);
    }
    (void)m;
    (void)errs;
    return ok;
}

static bool unlink_a(void *arg, const char *a, const char *b)
{
    pt_store_unlink(store, arg, a, b);
    return true;
}

static bool delete_product_links(struct mreq *m, void *arg, struct pt_errors *errs)
{
    struct del_arg *d = arg;
    if (!delete_entity(m, arg, errs))
        return false;
    pt_store_links(store, "product-api", d->id, unlink_a, "product-api");
    pt_store_links(store, "product-group", d->id, unlink_a, "product-group");
    return true;
}

static bool delete_group_links(struct mreq *m, void *arg, struct pt_errors *errs)
{
    struct del_arg *d = arg;
    if (!delete_entity(m, arg, errs))
        return false;
    pt_store_links(store, "group-user", d->id, unlink_a, "group-user");
    return true;
}

static bool files_allowed(struct mreq *m, json_t *doc);

static bool valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 256 || !strcmp(id, ".") || !strcmp(id, "..")) /* path segments of their own */
        return false;
    for (const char *p = id; *p; p++)
        if (!(((*p | 32) >= 'a' && (*p | 32) <= 'z') || (*p >= '0' && *p <= '9') || strchr("-_.~", *p)))
            return false;
    return true;
}

static const char *role_ws_needed(const char *r)
{
    for (int i = R_WS_CONTRIBUTOR; role_names[i]; i++)
        if (!strcmp(role_names[i], r))
            return "workspace";
    return NULL;
}

static void h_entity(struct mreq *m, const char *kind, const char *parent, const char *id)
{
    json_t *cur = NULL;
    char etag[24] = "";
    bool exists = get_entity(m, kind, parent, id, &cur, etag);
    if (!exists && !strcmp(kind, "group") && is_builtin_group(id) && m->method == EVHTTP_REQ_GET) {
        send_json(m, 200, json_pack("{s:s,s:s,s:b,s:s}", "id", id, "displayName", id, "builtIn", 1, "type", "system"),
                  "builtin");
        return;
    }
    if (m->method == EVHTTP_REQ_GET) {
        if (!exists) {
            send_error(m, 404, "ResourceNotFound", "%s '%s' not found", kind, id);
            return;
        }
        send_json(m, 200, view(kind, id, cur), etag);
        json_decref(cur);
        return;
    }
    if (!authorize(m, true)) {
        json_decref(cur);
        return;
    }
    /* ids are unique per kind across the service: an id that exists outside
       this workspace is not free, and no write moves an entity between
       scopes (a PUT that did would hand it, its links and its keys over) */
    if (!exists && m->method == EVHTTP_REQ_PUT && strcmp(kind, "token") &&
        pt_store_get(store, kind, parent, id, NULL, NULL)) {
        send_error(m, 409, "IdInUse", "%s id '%s' is taken outside this workspace; ids are unique across the service",
                   kind, id);
        return;
    }

    if (m->method == EVHTTP_REQ_DELETE) {
        if (!exists) {
            send_error(m, 404, "ResourceNotFound", "%s '%s' not found", kind, id);
            return;
        }
        json_decref(cur);
        if (from_file(kind, parent, id)) {
            refuse_file_owned(m, kind, id);
            return;
        }
        if (!check_etag(m, etag))
            return;
        struct del_arg d = {kind, parent, id};
        change_fn fn = !strcmp(kind, "product") ? delete_product_links
                       : !strcmp(kind, "group") ? delete_group_links
                                                : delete_entity;
        if (!strcmp(kind, "token")) {
            pt_store_delete(store, "token", "", id);
            send_json(m, 204, NULL, NULL);
            return;
        }
        if (run_change(m, fn, &d, 409, NULL))
            send_json(m, 204, NULL, NULL);
        return;
    }
    /* PUT and PATCH */
    if (!exists && m->method == EVHTTP_REQ_PATCH) {
        send_error(m, 404, "ResourceNotFound", "%s '%s' not found", kind, id);
        return;
    }
    if (!exists && !valid_id(id)) {
        send_error(m, 400, "InvalidId", "'%s' is not a valid id (letters, digits, '-', '_', '.', '~'; at most 256)",
                   id);
        return;
    }
    if (exists && from_file(kind, parent, id)) {
        json_decref(cur);
        refuse_file_owned(m, kind, id);
        return;
    }
    if (!check_etag(m, exists ? etag : NULL)) {
        json_decref(cur);
        return;
    }
    json_t *body = read_body(m, false);
    if (!body) {
        json_decref(cur);
        return;
    }
    if (!json_is_object(body)) {
        send_error(m, 400, "InvalidRequestBody", "the body must be a JSON object");
        goto out;
    }
    json_t *props = json_object_get(body, "properties");
    if (json_is_object(props)) { /* APIM's envelope: {"properties": {...}} */
        json_incref(props);
        json_decref(body);
        body = props;
    }
    const char *bid = json_string_value(json_object_get(body, "id"));
    if (json_object_get(body, "id") && (!bid || strcmp(bid, id))) {
        send_error(m, 400, "InvalidRequestBody", "the body's id must be '%s' (the path's) or absent", id);
        goto out;
    }
    if (!strcmp(kind, "policyFragment") && !files_allowed(m, body))
        goto out;
    const char *nf = nested_field(kind, body);
    if (nf) {
        send_error(m, 400, "ValidationError", "%s: not part of the %s body; use /%s/%s/%s", nf, kind,
                   list_of(kind) ? list_of(kind) : "apis", id, nf);
        goto out;
    }
    json_t *obj;
    if (m->method == EVHTTP_REQ_PATCH) {
        obj = json_deep_copy(cur);
        const char *k;
        json_t *v;
        json_object_foreach(body, k, v)
        {
            if (json_is_null(v))
                json_object_del(obj, k);
            else
                json_object_set(obj, k, v);
        }
    } else {
        obj = json_deep_copy(body);
        if (exists && !strcmp(kind, "subscription")) /* keys are kept unless given */
            for (int i = 0; i < 2; i++) {
                const char *kn = i ? "secondaryKey" : "primaryKey";
                if (!json_object_get(obj, kn) && json_object_get(cur, kn))
                    json_object_set(obj, kn, json_object_get(cur, kn));
            }
        if (exists && json_object_get(cur, "createdDate") && !json_object_get(obj, "createdDate"))
            json_object_set(obj, "createdDate", json_object_get(cur, "createdDate"));
    }
    if (!strcmp(kind, "namedValue") && json_is_string(json_object_get(obj, "sealed"))) {
        /* an update that does not give the secret keeps it */
        if (!json_is_string(json_object_get(obj, "value")) || json_object_get(body, "value") == NULL) {
            char *plain = pt_model_unseal(pt_model_secret_key(hooks->file()),
                                          json_string_value(json_object_get(obj, "sealed")));
            if (plain) {
                json_object_set_new(obj, "value", json_string(plain));
                free(plain);
            }
        }
        json_object_del(obj, "sealed");
    }
    if (!exists && !strcmp(kind, "subscription") && !json_object_get(obj, "state"))
        json_object_set_new(obj, "state", json_string("submitted")); /* APIM's REST default */
    if (m->ws && strcmp(kind, "operation")) /* an operation lives in its API's workspace */
        json_object_set_new(obj, "workspace", json_string(m->ws));
    else if (exists && strcmp(kind, "operation")) {
        /* at the service level an existing entity keeps its workspace; a
           body naming another one is refused */
        const char *cw = json_string_value(json_object_get(cur, "workspace"));
        json_t *given = json_object_get(body, "workspace");
        const char *nw = json_string_value(given);
        if (!given && cw)
            json_object_set_new(obj, "workspace", json_string(cw));
        else if (given && strcmp(cw ? cw : "", nw ? nw : "")) {
            send_error(m, 409, "WorkspaceChange", "%s '%s' belongs to %s%s%s; an entity does not move between scopes",
                       kind, id, cw && *cw ? "workspace '" : "the service level", cw && *cw ? cw : "",
                       cw && *cw ? "'" : "");
            json_decref(obj);
            goto out;
        }
    }
    json_object_set_new(obj, "id", json_string(id));
    char where[600];
    snprintf(where, sizeof(where), "%s[0]", !strcmp(kind, "operation") ? "apis[0].operations" : list_of(kind));
    char tree[600]; /* where it sorts among the store's entities (new or not) */
    tree_path(kind, parent, id, tree, sizeof(tree));
    const char *strip[] = {where, tree, NULL};
    struct put_arg p = {kind, parent, id, obj};
    bool ok;
    if (!strcmp(kind, "token")) {
        const char *r = json_string_value(json_object_get(obj, "role"));
        bool known = false;
        for (int i = 1; r && role_names[i]; i++)
            known |= !strcmp(role_names[i], r);
        const char *w = json_string_value(json_object_get(obj, "workspace"));
        if (!known) {
            send_error(m, 400, "ValidationError",
                       "role: expected one of administrator, reader, workspaceContributor, workspaceReader, "
                       "apiDeveloper, apiProductManager");
            json_decref(obj);
            goto out;
        }
        if (role_ws_needed(r) && (!w || !pt_store_get(store, "workspace", "", w, NULL, NULL))) {
            send_error(m, 400, "ValidationError", "workspace: the %s role needs an existing workspace", r);
            json_decref(obj);
            goto out;
        }
        /* the secret is made here and shown once */
        char a[33], b[33], secret[80], hash[65];
        pt_model_new_key(a);
        pt_model_new_key(b);
        snprintf(secret, sizeof(secret), "pt_%s%s", a, b);
        sha256_hex(secret, hash);
        json_object_del(obj, "token");
        json_object_set_new(obj, "hash", json_string(hash));
        ok = run_change(m, put_token, &p, 400, NULL);
        if (ok) {
            pt_store_get(store, "token", "", id, NULL, etag);
            json_t *v = view(kind, id, obj);
            json_object_set_new(v, "token", json_string(secret));
            send_json(m, exists ? 200 : 201, v, etag);
        }
        json_decref(obj);
        goto out;
    }
    ok = run_change(m, put_entity, &p, 400, strip);
    json_decref(obj);
    if (ok) {
        json_t *nb = NULL;
        pt_store_get(store, kind, parent, id, &nb, etag);
        send_json(m, exists ? 200 : 201, view(kind, id, nb), etag);
        json_decref(nb);
    }
out:
    json_decref(body);
    json_decref(cur);
}

/* ------------------------------------------------------- files in policies */

/*
 * Policy attributes that name files on the gateway's host (today
 * authentication-certificate's certificate and key) are the configuration
 * file's business.  Through this API only an administrator may name one,
 * and only under the configuration's folder; a workspace role may name
 * none, or it could make the gateway read any file it can (a private key
 * of the service, for one).
 */
static const struct {
    const char *policy, *attr;
} file_attrs[] = {{"authentication-certificate", "certificate"}, {"authentication-certificate", "key"}};

static bool file_under_conf(const char *path)
{
    const struct pt_conf *f = hooks->file();
    char dir[4096] = ".", full[8192], real[PATH_MAX], realdir[PATH_MAX];
    const char *slash = f && f->file ? strrchr(f->file, '/') : NULL;
    if (slash)
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - f->file), f->file);
    if (path[0] == '/')
        snprintf(full, sizeof(full), "%s", path);
    else
        snprintf(full, sizeof(full), "%s/%s", dir, path);
    if (!realpath(full, real) || !realpath(dir, realdir))
        return false;
    size_t n = strlen(realdir);
    return !strncmp(real, realdir, n) && real[n] == '/';
}

/* Walks a policy document (or a fragment's statements); false after answering 403/400. */
static bool files_ok(struct mreq *m, json_t *j, int depth)
{
    if (depth > 64)
        return true; /* deeper than any valid document: the validator refuses it */
    if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            if (!files_ok(m, v, depth + 1))
                return false;
        }
        return true;
    }
    if (!json_is_object(j))
        return true;
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
    {
        for (size_t i = 0; i < PT_ARRAY_LEN(file_attrs); i++) {
            const char *path = json_string_value(json_object_get(v, file_attrs[i].attr));
            if (strcmp(k, file_attrs[i].policy) || !path)
                continue;
            if (m->role != R_ADMIN) {
                send_error(m, 403, "Forbidden",
                           "%s: '%s' names a file on the gateway's host; only an administrator may, and only under "
                           "the configuration's folder", k, file_attrs[i].attr);
                return false;
            }
            if (!file_under_conf(path)) {
                send_error(m, 400, "ValidationError",
                           "%s: %s '%s' is not a file under the configuration's folder", k, file_attrs[i].attr, path);
                return false;
            }
        }
        if (!files_ok(m, v, depth + 1))
            return false;
    }
    return true;
}

static bool files_allowed(struct mreq *m, json_t *doc)
{
    return files_ok(m, doc, 0);
}

/* ---------------------------------------------------------------- policies */

static bool wants_yaml(struct mreq *m);
static void send_yaml(struct mreq *m, const json_t *doc, const char *comment, const char *etag);

static void policy_id(const char *owner, const char *id, const char *sub, char *out, size_t size)
{
    if (!strcmp(owner, "global"))
        snprintf(out, size, "global");
    else if (!strcmp(owner, "operation"))
        snprintf(out, size, "op:%s/%s", id, sub);
    else
        snprintf(out, size, "%s:%s", owner, id);
}

/* The owner of a policy must exist (and be visible); sends 404 otherwise. */
static bool policy_owner_exists(struct mreq *m, const char *owner)
{
    if (!strcmp(owner, "global"))
        return true;
    if (!strcmp(owner, "operation")) {
        if (!get_entity(m, "api", "", m->id, NULL, NULL)) {
            send_error(m, 404, "ResourceNotFound", "api '%s' not found", m->id);
            return false;
        }
        if (!pt_store_get(store, "operation", m->id, m->sub, NULL, NULL)) {
            send_error(m, 404, "ResourceNotFound", "operation '%s' not found in api '%s'", m->sub, m->id);
            return false;
        }
        return true;
    }
    if (!get_entity(m, owner, "", m->id, NULL, NULL)) {
        send_error(m, 404, "ResourceNotFound", "%s '%s' not found", owner, m->id);
        return false;
    }
    return true;
}

struct pol_arg {
    const char *pid;
    json_t *doc; /* NULL = delete */
};

static bool put_policy_doc(struct mreq *m, void *arg, struct pt_errors *errs)
{
    struct pol_arg *p = arg;
    if (!p->doc)
        return pt_store_delete(store, "policy", "", p->pid);
    /* the same shape checks as a file's document: through a one-entity document */
    json_t *doc = json_pack("{s:O}", "policies", p->doc);
    struct pt_conf *cf = pt_model_parse_doc(hooks->file(), doc, NULL, "body", errs);
    json_decref(doc);
    if (!cf)
        return false;
    pt_conf_free(cf);
    return pt_store_put(store, "policy", "", p->pid, m->ws ? m->ws : "", p->doc, "api", NULL);
}

static void h_policy(struct mreq *m, const char *owner, bool as_list)
{
    if (!policy_owner_exists(m, owner))
        return;
    char pid[600];
    policy_id(owner, m->id, m->sub, pid, sizeof(pid));
    json_t *doc = NULL;
    char etag[24] = "";
    bool exists = pt_store_get(store, "policy", "", pid, &doc, etag);
    if (m->method == EVHTTP_REQ_GET) {
        if (as_list) {
            json_t *items = json_array();
            if (exists)
                json_array_append_new(items, json_pack("{s:s,s:o}", "id", "policy", "value", doc));
            send_page(m, items);
            return;
        }
        if (!exists) {
            send_error(m, 404, "ResourceNotFound", "no policy document at this scope");
            return;
        }
        if (wants_yaml(m)) {
            send_yaml(m, doc, NULL, etag);
            json_decref(doc);
        } else
            send_json(m, 200, doc, etag);
        return;
    }
    if (!authorize(m, true)) {
        json_decref(doc);
        return;
    }
    char src[16];
    if (exists && pt_store_info(store, "policy", "", pid, src, NULL) && !strcmp(src, "config")) {
        json_decref(doc);
        refuse_file_owned(m, "policy", pid);
        return;
    }
    json_decref(doc);
    if (!check_etag(m, exists ? etag : NULL))
        return;
    char tree[600];
    if (!strcmp(owner, "operation"))
        snprintf(tree, sizeof(tree), "apis[%d].operations[%d].policies", index_of("api", "", m->id),
                 index_of("operation", m->id, m->sub));
    else if (!strcmp(owner, "global"))
        snprintf(tree, sizeof(tree), "policies");
    else
        snprintf(tree, sizeof(tree), "%s[%d].policies", list_of(owner), index_of(owner, "", m->id));
    const char *strip[] = {tree, "policies", NULL};
    if (m->method == EVHTTP_REQ_DELETE) {
        if (!exists) {
            send_error(m, 404, "ResourceNotFound", "no policy document at this scope");
            return;
        }
        struct pol_arg p = {pid, NULL};
        if (run_change(m, put_policy_doc, &p, 409, strip))
            send_json(m, 204, NULL, NULL);
        return;
    }
    json_t *body = read_body(m, false);
    if (!body)
        return;
    json_t *props = json_object_get(body, "properties");
    if (json_is_object(props) && json_object_get(props, "value")) { /* {"properties": {"value": ...}} */
        json_t *v = json_incref(json_object_get(props, "value"));
        json_decref(body);
        body = v;
        if (json_is_string(body)) { /* a YAML text inside JSON */
            struct pt_errors errs = {0};
            struct pt_pool *pool = pt_pool_new(8192);
            struct pt_node *n = pt_node_parse_yaml(pool, "value", json_string_value(body), json_string_length(body),
                                                   &errs);
            json_decref(body);
            body = n ? pt_node_to_json(n) : NULL;
            pt_pool_free(pool);
            if (!body) {
                send_errors(m, 400, "InvalidRequestBody", "the policy text cannot be read", &errs, NULL);
                pt_errors_clear(&errs);
                return;
            }
        }
    }
    if (!files_allowed(m, body)) {
        json_decref(body);
        return;
    }
    struct pol_arg p = {pid, body};
    if (run_change(m, put_policy_doc, &p, 400, strip)) {
        json_t *nb = NULL;
        pt_store_get(store, "policy", "", pid, &nb, etag);
        send_json(m, exists ? 200 : 201, nb, etag);
    }
    json_decref(body);
}

/* ------------------------------------------------------------------ links */

struct link_kind {
    const char *kind, *a_kind, *b_kind;
};
static const struct link_kind link_kinds[] = {
    {"product-api", "product", "api"},
    {"product-group", "product", "group"},
    {"group-user", "group", "user"},
};

static const struct link_kind *link_kind(const char *k)
{
    for (size_t i = 0; i < PT_ARRAY_LEN(link_kinds); i++)
        if (!strcmp(link_kinds[i].kind, k))
            return &link_kinds[i];
    return NULL;
}

static bool exists_or_builtin(struct mreq *m, const char *kind, const char *id, json_t **body)
{
    if (get_entity(m, kind, "", id, body, NULL))
        return true;
    if (!strcmp(kind, "group") && is_builtin_group(id)) {
        if (body)
            *body = json_pack("{s:s,s:b,s:s}", "displayName", id, "builtIn", 1, "type", "system");
        return true;
    }
    return false;
}

struct links_collect {
    struct mreq *m;
    const struct link_kind *lk;
    json_t *items;
};

static bool link_item(void *arg, const char *a, const char *b)
{
    struct links_collect *c = arg;
    json_t *body = NULL;
    if (exists_or_builtin(c->m, c->lk->b_kind, b, &body)) {
        json_array_append_new(c->items, view(c->lk->b_kind, b, body));
        json_decref(body);
    }
    return true;
}

struct link_arg {
    const char *kind, *a, *b;
    bool on;
};

static bool set_link(struct mreq *m, void *arg, struct pt_errors *errs)
{
    struct link_arg *l = arg;
    (void)m;
    (void)errs;
    return l->on ? pt_store_link(store, l->kind, l->a, l->b, "api") : pt_store_unlink(store, l->kind, l->a, l->b);
}

static void h_links(struct mreq *m, const char *kind, bool one)
{
    const struct link_kind *lk = link_kind(kind);
    if (!exists_or_builtin(m, lk->a_kind, m->id, NULL)) {
        send_error(m, 404, "ResourceNotFound", "%s '%s' not found", lk->a_kind, m->id);
        return;
    }
    if (!one) {
        struct links_collect c = {m, lk, json_array()};
        pt_store_links(store, kind, m->id, link_item, &c);
        send_page(m, c.items);
        return;
    }
    if (m->method != EVHTTP_REQ_GET && !authorize(m, true))
        return; /* a refused write learns nothing about what exists */
    json_t *body = NULL;
    if (!exists_or_builtin(m, lk->b_kind, m->sub, &body)) {
        send_error(m, 404, "ResourceNotFound", "%s '%s' not found", lk->b_kind, m->sub);
        return;
    }
    bool linked = pt_store_linked(store, kind, m->id, m->sub);
    char etag[24] = "builtin"; /* the linked entity's */
    pt_store_get(store, lk->b_kind, "", m->sub, NULL, etag);
    if (m->method == EVHTTP_REQ_GET) {
        if (!linked)
            send_error(m, 404, "ResourceNotFound", "%s '%s' is not linked to %s '%s'", lk->b_kind, m->sub, lk->a_kind,
                       m->id);
        else
            send_json(m, 200, view(lk->b_kind, m->sub, body), etag);
        json_decref(body);
        return;
    }
    char src[16];
    if (linked && pt_store_link_source(store, kind, m->id, m->sub, src) && !strcmp(src, "config")) {
        json_decref(body);
        send_error(m, 409, "Conflict", "this %s link is declared in the configuration file; change it there", kind);
        return;
    }
    if (m->method == EVHTTP_REQ_DELETE && !linked) {
        json_decref(body);
        send_error(m, 404, "ResourceNotFound", "%s '%s' is not linked to %s '%s'", lk->b_kind, m->sub, lk->a_kind,
                   m->id);
        return;
    }
    struct link_arg l = {kind, m->id, m->sub, m->method == EVHTTP_REQ_PUT};
    if ((l.on && linked) || run_change(m, set_link, &l, l.on ? 400 : 409, NULL)) {
        if (l.on)
            send_json(m, linked ? 200 : 201, view(lk->b_kind, m->sub, body), etag);
        else
            send_json(m, 204, NULL, NULL);
    }
    json_decref(body);
}

/* ------------------------------------------------------- subscription keys */

struct regen_arg {
    const char *id;
    const char *field;
};

static bool regen_key(struct mreq *m, void *arg, struct pt_errors *errs)
{
    struct regen_arg *r = arg;
    json_t *b = NULL;
    char ws[128] = "";
    if (!pt_store_get(store, "subscription", "", r->id, &b, NULL))
        return false;
    pt_store_info(store, "subscription", "", r->id, NULL, ws);
    char key[33];
    pt_model_new_key(key);
    json_object_set_new(b, r->field, json_string(key));
    bool ok = pt_store_put(store, "subscription", "", r->id, ws, b, "api", NULL);
    json_decref(b);
    (void)m;
    (void)errs;
    return ok;
}

static void h_sub_action(struct mreq *m, enum handler h)
{
    json_t *b = NULL;
    if (!get_entity(m, "subscription", "", m->id, &b, NULL)) {
        send_error(m, 404, "ResourceNotFound", "subscription '%s' not found", m->id);
        return;
    }
    if (h == H_SECRETS) {
        json_t *o = json_pack("{s:O?,s:O?}", "primaryKey", json_object_get(b, "primaryKey"), "secondaryKey",
                              json_object_get(b, "secondaryKey"));
        send_json(m, 200, o, NULL);
        json_decref(b);
        return;
    }
    json_decref(b);
    if (from_file("subscription", "", m->id)) {
        refuse_file_owned(m, "subscription", m->id);
        return;
    }
    struct regen_arg r = {m->id, h == H_REGEN1 ? "primaryKey" : "secondaryKey"};
    if (run_change(m, regen_key, &r, 400, NULL))
        send_json(m, 204, NULL, NULL);
}

static void h_nv_value(struct mreq *m)
{
    json_t *b = NULL;
    if (!get_entity(m, "namedValue", "", m->id, &b, NULL)) {
        send_error(m, 404, "ResourceNotFound", "namedValue '%s' not found", m->id);
        return;
    }
    json_t *out;
    if (json_is_string(json_object_get(b, "sealed"))) {
        char *plain = pt_model_unseal(pt_model_secret_key(hooks->file()), json_string_value(json_object_get(b, "sealed")));
        if (!plain) {
            json_decref(b);
            send_error(m, 500, "SecretUnavailable", "the value cannot be decrypted with the configured secret key");
            return;
        }
        out = json_pack("{s:s}", "value", plain);
        free(plain);
    } else
        out = json_pack("{s:O?}", "value", json_object_get(b, "value"));
    json_decref(b);
    send_json(m, 200, out, NULL);
}

/* ---------------------------------------------------------- apply / export */

static void h_apply(struct mreq *m)
{
    size_t len;
    char *text = body_text(m, &len);
    if (!text) {
        send_error(m, 400, "InvalidRequestBody", "a document (YAML or JSON) is required");
        return;
    }
    /* YAML reads JSON too, and keeps positions for the errors */
    struct pt_errors errs = {0};
    struct pt_pool *pool = pt_pool_new(16384);
    struct pt_node *n = pt_node_parse_yaml(pool, "request", text, len, &errs);
    free(text);
    if (!n) {
        send_errors(m, 400, "InvalidRequestBody", "the document cannot be read", &errs, NULL);
        pt_errors_clear(&errs);
        pt_pool_free(pool);
        give_back_memory(len);
        return;
    }
    json_t *doc = pt_node_to_json(n);
    struct apply_arg a = {doc, n, "request"};
    if (run_change(m, apply_doc, &a, 400, NULL)) {
        json_t *counts = json_object();
        const char *k;
        json_t *v;
        json_object_foreach(doc, k, v)
        {
            json_object_set_new(counts, k, json_integer(json_is_array(v) ? (json_int_t)json_array_size(v) : 1));
        }
        send_json(m, 200, json_pack("{s:o}", "applied", counts), NULL);
    }
    json_decref(doc);
    pt_pool_free(pool);
}

/* Whether a string reads back as the same string when written plain:
   simple words and paths that no YAML reader takes for a number, a
   boolean or null.  Anything else is double-quoted. */
static bool plain_safe(const char *s, size_t n)
{
    static const char *const typed[] = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", NULL};
    if (!n || !(((s[0] | 32) >= 'a' && (s[0] | 32) <= 'z') || s[0] == '/' || s[0] == '_') || s[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++) {
        bool word = ((s[i] | 32) >= 'a' && (s[i] | 32) <= 'z') || (s[i] >= '0' && s[i] <= '9');
        if (!word && !(s[i] && strchr("_./- ", s[i])))
            return false;
    }
    for (int i = 0; typed[i]; i++)
        if (strlen(typed[i]) == n && !strncasecmp(typed[i], s, n))
            return false;
    return true;
}

/* YAML out: block style; strings plain when that is unambiguous, else double-quoted. */
static bool emit(yaml_emitter_t *e, const json_t *j)
{
    yaml_event_t ev;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
        if (!yaml_emitter_emit(e, &ev))
            return false;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)k, (int)strlen(k), 1, 1,
                                         YAML_ANY_SCALAR_STYLE);
            if (!yaml_emitter_emit(e, &ev) || !emit(e, v))
                return false;
        }
        yaml_mapping_end_event_initialize(&ev);
        return yaml_emitter_emit(e, &ev);
    }
    case JSON_ARRAY: {
        yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
        if (!yaml_emitter_emit(e, &ev))
            return false;
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            if (!emit(e, v))
                return false;
        }
        yaml_sequence_end_event_initialize(&ev);
        return yaml_emitter_emit(e, &ev);
    }
    case JSON_STRING: {
        bool plain = plain_safe(json_string_value(j), json_string_length(j));
        yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)json_string_value(j),
                                     (int)json_string_length(j), plain, 1,
                                     plain ? YAML_PLAIN_SCALAR_STYLE : YAML_DOUBLE_QUOTED_SCALAR_STYLE);
        return yaml_emitter_emit(e, &ev);
    }
    default: {
        char *t = json_dumps(j, JSON_ENCODE_ANY);
        yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)t, (int)strlen(t), 1, 0, YAML_PLAIN_SCALAR_STYLE);
        bool ok = yaml_emitter_emit(e, &ev);
        free(t);
        return ok;
    }
    }
}

static int yaml_out(void *data, unsigned char *buf, size_t size)
{
    evbuffer_add(data, buf, size);
    return 1;
}

/* ?format=yaml, or an Accept header naming YAML (the query wins). */
static bool wants_yaml(struct mreq *m)
{
    const char *fmt = qparam(m, "format");
    const char *accept = evhttp_find_header(evhttp_request_get_input_headers(m->r), "Accept");
    return fmt ? !strcmp(fmt, "yaml") : accept && strstr(accept, "yaml");
}

/* A 200 with doc as a YAML document, after an optional comment line. */
static void send_yaml(struct mreq *m, const json_t *doc, const char *comment, const char *etag)
{
    struct evbuffer *b = evbuffer_new();
    if (comment)
        evbuffer_add(b, comment, strlen(comment));
    yaml_emitter_t e;
    yaml_event_t ev;
    yaml_emitter_initialize(&e);
    yaml_emitter_set_output(&e, yaml_out, b);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, -1);
    bool ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) && yaml_emitter_emit(&e, &ev) &&
              yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) && yaml_emitter_emit(&e, &ev) &&
              emit(&e, doc) && yaml_document_end_event_initialize(&ev, 1) && yaml_emitter_emit(&e, &ev) &&
              yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(&e, &ev);
    yaml_emitter_delete(&e);
    if (!ok) {
        evbuffer_free(b);
        send_error(m, 500, "YamlFailed", "YAML output failed");
        return;
    }
    struct evkeyvalq *oh = evhttp_request_get_output_headers(m->r);
    evhttp_add_header(oh, "Content-Type", "application/yaml; charset=utf-8");
    evhttp_add_header(oh, "Cache-Control", "no-store");
    if (etag) {
        char q[40];
        snprintf(q, sizeof(q), "\"%s\"", etag);
        evhttp_add_header(oh, "ETag", q);
    }
    evhttp_send_reply(m->r, 200, "OK", b);
    evbuffer_free(b);
}

static void h_export(struct mreq *m)
{
    struct pt_errors errs = {0};
    /* what the file declares is in the file: left out unless asked for */
    const char *all = qparam(m, "includeFile");
    json_t *doc = pt_model_entities(store, pt_model_secret_key(hooks->file()),
                                    all && !strcmp(all, "true") ? NULL : "api", &errs);
    if (!doc) {
        send_errors(m, 500, "ExportFailed", "the store cannot be exported", &errs, NULL);
        pt_errors_clear(&errs);
        return;
    }
    if (wants_yaml(m)) {
        send_yaml(m, doc, "# Portico entities, exported by the management API\n", NULL);
        json_decref(doc);
        return;
    }
    send_json(m, 200, doc, NULL);
}

/* ---------------------------------------------------------------- openapi */

static json_t *openapi_doc(void)
{
    json_t *paths = json_object();
    for (int w = 0; w < 2; w++)
        for (size_t i = 0; i < PT_ARRAY_LEN(routes); i++) {
            const struct route *r = &routes[i];
            if (w && !r->ws)
                continue;
            char path[512];
            snprintf(path, sizeof(path), "/management/%s%s", w ? "workspaces/{workspaceId}/" : "", r->pattern);
            /* OpenAPI names parameters: {id} -> {entityId}-like names stay generic */
            json_t *item = json_object();
            json_t *params = json_array();
            if (w)
                json_array_append_new(params, json_pack("{s:s,s:s,s:b,s:{s:s}}", "name", "workspaceId", "in", "path",
                                                        "required", 1, "schema", "type", "string"));
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
            for (char *save = NULL, *mt = strtok_r(methods, " ", &save); mt; mt = strtok_r(NULL, " ", &save)) {
                char lower[16];
                size_t k = 0;
                for (; mt[k] && k < sizeof(lower) - 1; k++)
                    lower[k] = (char)(mt[k] | 32);
                lower[k] = '\0';
                json_t *op = json_object();
                json_object_set_new(op, "summary", json_string(r->summary));
                json_t *resp = json_object();
                const char *ok = !strcmp(mt, "DELETE") ? "204" : !strcmp(mt, "PUT") ? "200" : "200";
                json_object_set_new(resp, ok, json_pack("{s:s}", "description", "success"));
                if (!strcmp(mt, "PUT"))
                    json_object_set_new(resp, "201", json_pack("{s:s}", "description", "created"));
                json_object_set_new(resp, "default",
                                    json_pack("{s:s,s:{s:{s:{s:s}}}}", "description", "an error", "content",
                                              "application/json", "schema", "$ref", "#/components/schemas/Error"));
                json_object_set_new(op, "responses", resp);
                if (!strcmp(mt, "GET") && r->h == H_LIST)
                    json_object_set_new(
                        op, "parameters",
                        json_pack("[{s:s,s:s,s:{s:s}},{s:s,s:s,s:{s:s}},{s:s,s:s,s:{s:s}}]", "name", "$top", "in",
                                  "query", "schema", "type", "integer", "name", "$skip", "in", "query", "schema",
                                  "type", "integer", "name", "$filter", "in", "query", "schema", "type", "string"));
                if (r->area == A_OPEN)
                    json_object_set_new(op, "security", json_array());
                json_object_set_new(item, lower, op);
            }
            json_object_set_new(paths, path, item);
        }
    return json_pack(
        "{s:s,s:{s:s,s:s,s:s},s:o,s:{s:{s:{s:s,s:s}},s:{s:{s:s,s:{s:{s:s,s:{s:{s:s},s:{s:s},s:{s:s}}}}}}},"
        "s:[{s:[]}]}",
        "openapi", "3.0.3", "info", "title", "Portico management API", "version", PACKAGE_VERSION, "description",
        "Entities of the Portico gateway: APIs, operations, products, groups, users, subscriptions, named values, "
        "policy fragments, backends, workspaces, policies.",
        "paths", paths, "components", "securitySchemes", "bearer", "type", "http", "scheme", "bearer", "schemas",
        "Error", "type", "object", "properties", "error", "type", "object", "properties", "code", "type", "string",
        "message", "type", "string", "details", "type", "array", "security", "bearer");
}

/* ---------------------------------------------------------------- dispatch */

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
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_HEAD: return "HEAD";
    default: return "OTHER";
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
    if (!path || strncmp(path, "/management/", 12)) {
        send_error(&m, 404, "RouteNotFound", "no such route: everything is under /management/");
        goto done;
    }
    copy = strdup(path + 12);
    for (char *save = NULL, *s = strtok_r(copy, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
        if (m.nseg == (int)PT_ARRAY_LEN(m.segs)) {
            send_error(&m, 404, "RouteNotFound", "no such route");
            goto done;
        }
        size_t dl = 0;
        char *dec = evhttp_uridecode(s, 0, &dl);
        m.segs[m.nseg++] = dec;
        if (!dec || !*dec || dl != strlen(dec)) {
            send_error(&m, 400, "InvalidPath", "bad path segment");
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
            send_error(&m, 405, "MethodNotAllowed", "%s is not allowed here", m.method_name);
        else
            send_error(&m, 404, "RouteNotFound", "no such route: %s", path);
        goto done;
    }
    if (m.route->h == H_OPENAPI) {
        send_json(&m, 200, openapi_doc(), NULL);
        goto done;
    }
    if (!authenticate(&m))
        goto done;
    bool write = m.method != EVHTTP_REQ_GET && m.route->h != H_SECRETS && m.route->h != H_NV_VALUE;
    /* writes are checked by the handlers once they know what exists (404 before 403 is not leaked: reads first) */
    if (!authorize(&m, write && (m.route->h == H_REGEN1 || m.route->h == H_REGEN2 || m.route->h == H_APPLY)))
        goto done;
    if (m.ws && !pt_store_get(store, "workspace", "", m.ws, NULL, NULL)) {
        send_error(&m, 404, "ResourceNotFound", "workspace '%s' not found", m.ws);
        goto done;
    }
    const struct route *rt = m.route;
    switch (rt->h) {
    case H_LIST:
        h_list(&m, rt->kind, "");
        break;
    case H_ENTITY:
        h_entity(&m, rt->kind, "", m.id);
        break;
    case H_OPS:
        if (!get_entity(&m, "api", "", m.id, NULL, NULL))
            send_error(&m, 404, "ResourceNotFound", "api '%s' not found", m.id);
        else
            h_list(&m, "operation", m.id);
        break;
    case H_OP:
        if (!get_entity(&m, "api", "", m.id, NULL, NULL))
            send_error(&m, 404, "ResourceNotFound", "api '%s' not found", m.id);
        else {
            const char *op = m.sub;
            m.id = op; /* the entity itself is the operation; its parent is the API */
            const char *api = segs[1];
            h_entity(&m, "operation", api, op);
        }
        break;
    case H_POLICIES:
    case H_POLICY:
        h_policy(&m, rt->kind, rt->h == H_POLICIES);
        break;
    case H_LINKS:
    case H_LINK:
        h_links(&m, rt->kind, rt->h == H_LINK);
        break;
    case H_SECRETS:
    case H_REGEN1:
    case H_REGEN2:
        h_sub_action(&m, rt->h);
        break;
    case H_NV_VALUE:
        h_nv_value(&m);
        break;
    case H_APPLY:
        h_apply(&m);
        break;
    case H_EXPORT:
        h_export(&m);
        break;
    case H_OPENAPI:
        break;
    }
done:
    for (int i = 0; i < m.nseg; i++)
        free(m.segs[i]);
    free(copy);
    if (m.has_query)
        evhttp_clear_headers(&m.query);
}

/* ----------------------------------------------------------------- start */

static struct pt_tls_server *tls; /* HTTPS when the configuration gives a certificate */

/* evhttp asks for each accepted connection's bufferevent: TLS over the socket. */
static struct bufferevent *tls_bev(struct event_base *base, void *arg)
{
    SSL *ssl = pt_tls_server_ssl(arg);
    if (!ssl)
        return NULL;
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    /* clients that close without close_notify are common; their requests were complete */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

bool pt_mgmt_start(struct event_base *base, const struct pt_conf *file, struct pt_store *st,
                   const struct pt_mgmt_hooks *h, struct pt_errors *errs)
{
    if (!file->mgmt.listen)
        return true;
    store = st;
    hooks = h;
    int fd = socket(file->mgmt.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, (const struct sockaddr *)&file->mgmt.sa, file->mgmt.salen) < 0 || listen(fd, pt_listen_backlog(0)) < 0) {
        pt_errors_add(errs, "management: cannot listen on %s: %s", file->mgmt.listen, strerror(errno));
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
        evhttp_set_bevcb(http, tls_bev, tls);
    evhttp_set_max_body_size(http, (ev_ssize_t)file->mgmt.max_body);
    evhttp_set_max_headers_size(http, 64 * 1024);
    evhttp_set_timeout(http, 30);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_PUT | EVHTTP_REQ_POST | EVHTTP_REQ_PATCH |
                                         EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(http, on_request, NULL);
    if (!evhttp_accept_socket_with_handle(http, fd)) {
        pt_errors_add(errs, "management: cannot serve on %s", file->mgmt.listen);
        evhttp_free(http);
        http = NULL;
        pt_tls_server_free(tls);
        tls = NULL;
        close(fd);
        return false;
    }
    if (!admin_token())
        pt_warn("management API on %s: no administrator token (set PORTICO_ADMIN_TOKEN or management.adminToken); "
                "only access tokens in the store are accepted",
                file->mgmt.listen);
    pt_info("management API listening on %s%s", file->mgmt.listen, tls ? " (HTTPS)" : "");
    return true;
}

void pt_mgmt_stop(void)
{
    if (http)
        evhttp_free(http);
    http = NULL;
    pt_tls_server_free(tls);
    tls = NULL;
}
