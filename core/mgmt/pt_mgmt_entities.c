/*
 * pt_mgmt_entities -- what the management API reads and writes: entities
 * (lists, get, create or replace, update, delete), the links between them
 * (product-api, product-group, group-user), policy documents at each scope,
 * subscription keys, named values' values, and apply (a document of entity
 * lists in one transaction).
 *
 * Entities are written through pt_model_apply, the same code that applies
 * the configuration file; each write runs in one store transaction, and the
 * next generation is built from the store before it commits.
 */
#include "base/pt_log.h"
#include "conf/pt_cert.h"
#include "conf/pt_model.h"
#include "http/pt_logsink.h"
#include "mgmt/pt_mgmt_int.h"
#include "mgmt/pt_mgmt_polxml.h"

#include <event2/http.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ kinds */

/* Entity kinds and their collection names (pt_model_kinds plus tokens). */
static const char *list_of(const char *kind)
{
    for (int i = 0; pt_model_kinds[i].kind; i++)
        if (!strcmp(pt_model_kinds[i].kind, kind))
            return pt_model_kinds[i].list;
    return !strcmp(kind, "token") ? "tokens" : NULL;
}

/* ---------------------------------------------------------------- helpers */

/* A logger's HTTP header value as reads show it: values that use a named value ({{name}}) as they
   are, others (a literal token) as REDACTED_HEADER.  A write giving REDACTED_HEADER keeps the
   stored value. */
#define REDACTED_HEADER "***"

static bool uses_named_value(const char *v)
{
    const char *o = strstr(v, "{{");
    return o && strstr(o + 2, "}}");
}

/* Adds the logger's delivery counters (since the start) as `stats`: read-only, left out of writes. */
static void logger_stats(json_t *o, const char *id)
{
    struct pt_logsink_stats st[256];
    int n = pt_logsink_stats(st, (int)PT_ARRAY_LEN(st));
    json_t *j = json_pack("{s:I,s:I,s:I,s:I}", "sent", (json_int_t)0, "dropped", (json_int_t)0, "failed",
                          (json_int_t)0, "queued", (json_int_t)0);
    for (int i = 0; i < n && i < (int)PT_ARRAY_LEN(st); i++)
        if (!strcmp(st[i].id, id)) {
            json_decref(j);
            j = json_pack("{s:I,s:I,s:I,s:I}", "sent", (json_int_t)st[i].sent, "dropped",
                          (json_int_t)st[i].dropped, "failed", (json_int_t)st[i].failed, "queued",
                          (json_int_t)st[i].queued);
        }
    json_object_set_new(o, "stats", j);
}

/* Whether data, read with password, is the certificate cur holds (same thumbprint) without a key:
   what an export gives back. */
static bool same_cert_without_key(const char *data, const char *password, const json_t *cur)
{
    const char *tp = json_string_value(json_object_get(cur, "thumbprint"));
    struct pt_cert_info ci;
    char err[160];
    if (!data || !tp || !json_object_get(cur, "sealedKey") ||
        !pt_cert_read(data, strlen(data), password, &ci, err, sizeof(err)))
        return false;
    bool same = !ci.key_pem && !strcmp(ci.thumbprint, tp);
    pt_cert_info_free(&ci);
    return same;
}

/* An update of a certificate that gives no new data keeps the stored key (PATCH of ca, crl or
   description), and so does one whose data is the stored certificate without a key (an export
   applied back); other new data replaces it.  false (answered) when the key cannot be unsealed. */
static bool keep_cert_key(struct mreq *m, const json_t *body, json_t *obj, const json_t *cur)
{
    char err[160];
    const char *data = json_string_value(json_object_get(body, "data"));
    if (json_object_get(body, "data") &&
        !same_cert_without_key(data, json_string_value(json_object_get(body, "password")), cur)) {
        json_object_del(obj, "sealedKey");
        return true;
    }
    if (data) /* the stored key goes with the data given */
        json_object_set(obj, "sealedKey", json_object_get(cur, "sealedKey"));
    if (!pt_model_cert_unseal(pt_model_secret_key(pt_mgmt_req_hooks->file()), obj, err, sizeof(err))) {
        pt_mgmt_req_send_error(m, 500, "SecretKeyMismatch", "%s", err);
        json_decref(obj);
        return false;
    }
    return true;
}

static void redact_logger(json_t *o)
{
    json_t *h = json_object_get(json_object_get(o, "http"), "headers");
    const char *k;
    json_t *v;
    json_object_foreach(h, k, v)
    {
        if (json_is_string(v) && !uses_named_value(json_string_value(v)))
            json_object_set_new(h, k, json_string(REDACTED_HEADER));
    }
}

/* A write of a logger: headers given as REDACTED_HEADER take the stored value; false (answered) when
   there is none. */
static bool unredact_logger(struct mreq *m, json_t *obj, const json_t *cur)
{
    json_object_del(obj, "stats"); /* what reads add */
    json_t *h = json_object_get(json_object_get(obj, "http"), "headers");
    json_t *old = json_object_get(json_object_get(cur, "http"), "headers");
    const char *k;
    json_t *v;
    json_object_foreach(h, k, v)
    {
        if (!json_is_string(v) || strcmp(json_string_value(v), REDACTED_HEADER))
            continue;
        json_t *was = json_object_get(old, k);
        if (!json_is_string(was)) {
            pt_mgmt_req_send_error(m, 400, "ValidationError",
                                   "http.headers.%s: '" REDACTED_HEADER
                                   "' keeps the stored value, and the logger has none for this header",
                                   k);
            return false;
        }
        json_object_set(h, k, was);
    }
    return true;
}

/* A certificate as reads show it: what it is and when it expires, never its key (nor its PEM:
   APIM's reads leave the data out too). */
static void cert_view(json_t *o)
{
    json_object_del(o, "data");
    json_object_del(o, "sealedKey");
    json_object_del(o, "password");
    int64_t t;
    const char *exp = json_string_value(json_object_get(o, "expirationDate"));
    if (exp && pt_conf_entities_parse_iso8601(exp, &t)) {
        int64_t left = t - (int64_t)pt_clock_wall_ms();
        json_object_set_new(o, "expiresInDays", json_integer(left / 86400000));
        json_object_set_new(o, "nearExpiry", json_boolean(left < (int64_t)PT_CERT_NEAR_EXPIRY_S * 1000));
        json_object_set_new(o, "expired", json_boolean(left <= 0));
    }
}

/* The public view of a stored entity: id first, secrets out. */
json_t *pt_mgmt_entities_view(const char *kind, const char *id, const json_t *body)
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
        /* declared without a state (the file, apply): active, as the gateway reads it */
        if (!json_object_get(o, "state"))
            json_object_set_new(o, "state", json_string("active"));
        const char *state = json_string_value(json_object_get(o, "state"));
        /* allowTracing lapses 1 h after it was turned on (APIM): shown as off from then on */
        const char *since = json_string_value(json_object_get(o, "allowTracingSince"));
        int64_t t0;
        if (json_is_true(json_object_get(o, "allowTracing")) &&
            (!since || !pt_conf_entities_parse_iso8601(since, &t0) ||
             (int64_t)pt_clock_wall_ms() >= t0 + PT_CONF_TRACING_WINDOW_MS))
            json_object_set_new(o, "allowTracing", json_false());
        for (int i = 0; i < 2 && state && !strcmp(state, "active"); i++) {
            int64_t t;
            if (dates[i] && pt_conf_entities_parse_iso8601(dates[i], &t) &&
                (int64_t)pt_clock_wall_ms() >= t) {
                json_object_set_new(o, "state", json_string("expired"));
                break;
            }
        }
    } else if (!strcmp(kind, "namedValue") && json_is_true(json_object_get(o, "secret")))
        json_object_del(o, "value");
    else if (!strcmp(kind, "gateway")) { /* listKeys shows them, to administrators */
        json_object_del(o, "primaryKey");
        json_object_del(o, "secondaryKey");
    } else if (!strcmp(kind, "logger")) {
        redact_logger(o);
        logger_stats(o, id);
    } else if (!strcmp(kind, "certificate"))
        cert_view(o);
    return o;
}

static bool in_scope(struct mreq *m, const json_t *body)
{
    if (!m->ws)
        return true;
    const char *w = json_string_value(json_object_get(body, "workspace"));
    return w && !strcmp(w, m->ws);
}

bool pt_mgmt_entities_get(struct mreq *m, const char *kind, const char *parent, const char *id, json_t **body,
                          char etag[24])
{
    json_t *b = NULL;
    if (!pt_store_get(pt_mgmt_req_store, kind, parent, id, &b, etag))
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
    return pt_store_info(pt_mgmt_req_store, kind, parent, id, src, NULL) && !strcmp(src, "config");
}

static void refuse_file_owned(struct mreq *m, const char *kind, const char *id)
{
    pt_mgmt_req_send_error(m, 409, "Conflict",
                           "%s '%s' is declared in the configuration file %s; change it there", kind, id,
                           pt_mgmt_req_hooks->file()->file);
}

/* Index of id among the entities of kind (store order), for error paths: counted by the store's
   index, not by reading every entity (tens of thousands of subscriptions unsealed per write). */
static int index_of(const char *kind, const char *parent, const char *id)
{
    int n = pt_store_count_before(pt_mgmt_req_store, kind, parent, id);
    return n < 0 ? 0 : n;
}

/* Where an entity sits in the generation's tree: "apis[3]", "apis[3].operations[0]". */
static void tree_path(const char *kind, const char *parent, const char *id, char *out, size_t size)
{
    if (!strcmp(kind, "operation"))
        snprintf(out, size, "apis[%d].operations[%d]", index_of("api", "", parent),
                 index_of("operation", parent, id));
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
bool pt_mgmt_entities_change(struct mreq *m, pt_mgmt_change_fn fn, void *arg, int fail_status,
                             const char *const *strip)
{
    struct pt_errors errs = {0};
    if (!pt_store_begin(pt_mgmt_req_store)) {
        pt_mgmt_req_send_error(m, 500, "StoreError", "the store cannot start a transaction: %s",
                               pt_store_error(pt_mgmt_req_store));
        return false;
    }
    if (!fn(m, arg, &errs)) {
        pt_store_rollback(pt_mgmt_req_store);
        bool conflict = false;
        for (int i = 0; i < errs.n; i++)
            conflict |= strstr(errs.msgs[i], "declared in the configuration file") != NULL;
        if (errs.n == 0)
            pt_node_errors_add(&errs, "store: %s", pt_store_error(pt_mgmt_req_store));
        pt_mgmt_req_send_errors(m, conflict ? 409 : 400, conflict ? "Conflict" : "ValidationError",
                                conflict ? "the change touches what the configuration file declares"
                                         : "the request is not valid",
                                &errs, strip);
        pt_node_errors_clear(&errs);
        return false;
    }
    if (!pt_mgmt_req_hooks->publish(&errs)) {
        bool claim = false; /* a path another scope's API holds */
        for (int i = 0; i < errs.n; i++)
            claim |= strstr(errs.msgs[i], "claims requests of API") != NULL;
        if (claim)
            fail_status = 409;
        pt_mgmt_req_send_errors(
            m, fail_status, fail_status == 409 ? "Conflict" : "ValidationError",
            claim ? "the API's path and host would take requests from another workspace's API; "
                    "nothing was changed"
            : fail_status == 409 ? "the entity is still in use; nothing was changed"
                                 : "the change would make the configuration invalid; nothing was changed",
            &errs, strip);
        pt_node_errors_clear(&errs);
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
    const struct pt_conf *file = pt_mgmt_req_hooks->file();
    struct pt_conf *cf = pt_model_parse_doc(file, a->doc, a->positions, a->name, errs);
    if (!cf)
        return false;
    bool ok = pt_model_apply(pt_mgmt_req_store, cf, pt_model_secret_key(file), "api", errs);
    pt_conf_free(cf);
    return ok;
}

bool pt_mgmt_entities_apply_json(struct mreq *m, json_t *doc, struct pt_errors *errs)
{
    struct apply_arg a = {doc, NULL, "body"};
    return apply_doc(m, &a, errs);
}

/* ------------------------------------------------------------------ lists */

struct collect {
    struct mreq *m;
    json_t *items;
    const char *kind;
};

static bool collect_one(void *arg, const struct pt_entity *e)
{
    struct collect *c = arg;
    if (in_scope(c->m, e->body))
        json_array_append_new(c->items, pt_mgmt_entities_view(c->kind, e->id, e->body));
    return true;
}

void pt_mgmt_entities_list(struct mreq *m, const char *kind, const char *parent)
{
    json_t *items = json_array();
    if (!strcmp(kind, "group") && !m->ws)
        for (int i = 0; pt_conf_entities_builtin_groups[i]; i++) {
            const char *g = pt_conf_entities_builtin_groups[i];
            if (!pt_store_get(pt_mgmt_req_store, "group", "", g, NULL, NULL))
                json_array_append_new(items, json_pack("{s:s,s:s,s:b,s:s}", "id", g, "displayName", g,
                                                       "builtIn", 1, "type", "system"));
        }
    struct collect c = {m, items, kind};
    pt_store_each(pt_mgmt_req_store, kind, parent, collect_one, &c);
    pt_mgmt_filter_send_page(m, items);
}

/* --------------------------------------------------------------- entities */

/* Fields that are relations or sub-resources: not part of an entity body. */
static const char *nested_field(const char *kind, const json_t *body)
{
    static const struct {
        const char *kind, *field, *where;
    } nested[] = {
        {"api", "operations", "operations"},   {"api", "policies", "policies"},
        {"operation", "policies", "policies"}, {"product", "apis", "apis"},
        {"product", "groups", "groups"},       {"product", "policies", "policies"},
        {"user", "groups", "groups"},          {"gateway", "apis", "apis"},
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
        pt_store_get(pt_mgmt_req_store, "api", "", p->parent, &api, NULL);
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
    bool ok = pt_store_put(pt_mgmt_req_store, "token", "", p->id,
                           json_string_value(json_object_get(b, "workspace")) ?: "", b, "api", NULL);
    json_decref(b);
    return ok;
}

struct del_arg {
    const char *kind, *parent, *id;
};

/* The entity and what goes with it: the same removal as the file's when it stops declaring one. */
static bool delete_entity(struct mreq *m, void *arg, struct pt_errors *errs)
{
    struct del_arg *d = arg;
    (void)m;
    (void)errs;
    return pt_model_remove(pt_mgmt_req_store, d->kind, d->parent, d->id);
}

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

/* The checks a PUT or PATCH of an entity passes before its body is read: the role, an id free
   across the service and well formed, an owner that is not the configuration file, the ETag.
   false when it has answered. */
bool pt_mgmt_entities_may_write(struct mreq *m, const char *kind, const char *parent, const char *id,
                                bool exists, const char *etag)
{
    if (!pt_mgmt_auth_authorize(m, true))
        return false;
    /* ids are unique per kind across the service: an id that exists outside
       this workspace is not free, and no write moves an entity between
       scopes (a PUT that did would hand it, its links and its keys over) */
    if (!exists && m->method == EVHTTP_REQ_PUT && strcmp(kind, "token") &&
        pt_store_get(pt_mgmt_req_store, kind, parent, id, NULL, NULL)) {
        pt_mgmt_req_send_error(
            m, 409, "IdInUse",
            "%s id '%s' is taken outside this workspace; ids are unique across the service", kind, id);
        return false;
    }
    if (!exists && m->method == EVHTTP_REQ_PATCH) {
        pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "%s '%s' not found", kind, id);
        return false;
    }
    if (!exists && !valid_id(id)) {
        pt_mgmt_req_send_error(m, 400, "InvalidId",
                               "'%s' is not a valid id (letters, digits, '-', '_', '.', '~'; at most 256)",
                               id);
        return false;
    }
    if (exists && from_file(kind, parent, id)) {
        refuse_file_owned(m, kind, id);
        return false;
    }
    return pt_mgmt_req_check_etag(m, exists ? etag : NULL);
}

void pt_mgmt_entities_entity(struct mreq *m, const char *kind, const char *parent, const char *id)
{
    json_t *cur = NULL;
    char etag[24] = "";
    bool exists = pt_mgmt_entities_get(m, kind, parent, id, &cur, etag);
    if (!exists && !strcmp(kind, "group") && pt_conf_entities_builtin_group(id) &&
        m->method == EVHTTP_REQ_GET) {
        pt_mgmt_req_send_json(
            m, 200,
            json_pack("{s:s,s:s,s:b,s:s}", "id", id, "displayName", id, "builtIn", 1, "type", "system"),
            "builtin");
        return;
    }
    if (m->method == EVHTTP_REQ_GET) {
        if (!exists) {
            pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "%s '%s' not found", kind, id);
            return;
        }
        pt_mgmt_req_send_json(m, 200, pt_mgmt_entities_view(kind, id, cur), etag);
        json_decref(cur);
        return;
    }
    if (m->method == EVHTTP_REQ_DELETE && !pt_mgmt_auth_authorize(m, true)) {
        json_decref(cur);
        return;
    }
    if (m->method == EVHTTP_REQ_DELETE) {
        if (!exists) {
            pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "%s '%s' not found", kind, id);
            return;
        }
        json_decref(cur);
        if (from_file(kind, parent, id)) {
            refuse_file_owned(m, kind, id);
            return;
        }
        if (!pt_mgmt_req_check_etag(m, etag))
            return;
        struct del_arg d = {kind, parent, id};
        pt_mgmt_change_fn fn = delete_entity;
        if (!strcmp(kind, "token")) {
            pt_store_delete(pt_mgmt_req_store, "token", "", id);
            pt_mgmt_req_send_json(m, 204, NULL, NULL);
            return;
        }
        if (pt_mgmt_entities_change(m, fn, &d, 409, NULL))
            pt_mgmt_req_send_json(m, 204, NULL, NULL);
        return;
    }
    /* PUT and PATCH */
    if (!pt_mgmt_entities_may_write(m, kind, parent, id, exists, etag)) {
        json_decref(cur);
        return;
    }
    json_t *body = pt_mgmt_req_body(m, false);
    if (!body) {
        json_decref(cur);
        return;
    }
    if (!json_is_object(body)) {
        pt_mgmt_req_send_error(m, 400, "InvalidRequestBody", "the body must be a JSON object");
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
        pt_mgmt_req_send_error(m, 400, "InvalidRequestBody",
                               "the body's id must be '%s' (the path's) or absent", id);
        goto out;
    }
    if (!strcmp(kind, "policyFragment") && !pt_mgmt_auth_files_allowed(m, body))
        goto out;
    const char *nf = nested_field(kind, body);
    if (nf) {
        pt_mgmt_req_send_error(m, 400, "ValidationError", "%s: not part of the %s body; use /%s/%s/%s", nf,
                               kind, list_of(kind) ? list_of(kind) : "apis", id, nf);
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
    if (!strcmp(kind, "gateway")) { /* its keys are the store's (regenerateKey changes them) */
        json_object_del(obj, "primaryKey");
        json_object_del(obj, "secondaryKey");
    }
    if (!strcmp(kind, "subscription"))
        pt_model_trace_since(obj, exists ? cur : NULL); /* allowTracing lapses 1 h after it was turned on */
    if (!strcmp(kind, "namedValue") && json_is_string(json_object_get(obj, "sealed"))) {
        /* an update that does not give the secret keeps it */
        if (!json_is_string(json_object_get(obj, "value")) || json_object_get(body, "value") == NULL) {
            char *plain = pt_model_unseal(pt_model_secret_key(pt_mgmt_req_hooks->file()),
                                          json_string_value(json_object_get(obj, "sealed")));
            if (plain) {
                json_object_set_new(obj, "value", json_string(plain));
                free(plain);
            }
        }
        json_object_del(obj, "sealed");
    }
    if (!strcmp(kind, "certificate") && !keep_cert_key(m, body, obj, cur))
        goto out;
    if (!strcmp(kind, "logger") && !pt_mgmt_auth_logger_allowed(m, obj)) {
        json_decref(obj);
        goto out;
    }
    if (!strcmp(kind, "logger") && !unredact_logger(m, obj, cur)) {
        json_decref(obj);
        goto out;
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
            pt_mgmt_req_send_error(m, 409, "WorkspaceChange",
                                   "%s '%s' belongs to %s%s%s; an entity does not move between scopes", kind,
                                   id, cw && *cw ? "workspace '" : "the service level", cw && *cw ? cw : "",
                                   cw && *cw ? "'" : "");
            json_decref(obj);
            goto out;
        }
    }
    json_object_set_new(obj, "id", json_string(id));
    char where[600];
    snprintf(where, sizeof(where), "%s[0]",
             !strcmp(kind, "operation") ? "apis[0].operations" : list_of(kind));
    char tree[600]; /* where it sorts among the store's entities (new or not) */
    tree_path(kind, parent, id, tree, sizeof(tree));
    const char *strip[] = {where, tree, NULL};
    struct put_arg p = {kind, parent, id, obj};
    bool ok;
    if (!strcmp(kind, "token")) {
        const char *r = json_string_value(json_object_get(obj, "role"));
        bool known = pt_mgmt_auth_role_known(r);
        const char *w = json_string_value(json_object_get(obj, "workspace"));
        if (!known) {
            pt_mgmt_req_send_error(
                m, 400, "ValidationError",
                "role: expected one of administrator, reader, workspaceContributor, workspaceReader, "
                "apiDeveloper, apiProductManager");
            json_decref(obj);
            goto out;
        }
        if (pt_mgmt_auth_role_needs_workspace(r) &&
            (!w || !pt_store_get(pt_mgmt_req_store, "workspace", "", w, NULL, NULL))) {
            pt_mgmt_req_send_error(m, 400, "ValidationError",
                                   "workspace: the %s role needs an existing workspace", r);
            json_decref(obj);
            goto out;
        }
        /* the secret is made here and shown once */
        char secret[80], hash[65];
        pt_mgmt_auth_new_token(secret, hash);
        json_object_del(obj, "token");
        json_object_set_new(obj, "hash", json_string(hash));
        ok = pt_mgmt_entities_change(m, put_token, &p, 400, NULL);
        if (ok) {
            pt_store_get(pt_mgmt_req_store, "token", "", id, NULL, etag);
            json_t *v = pt_mgmt_entities_view(kind, id, obj);
            json_object_set_new(v, "token", json_string(secret));
            pt_mgmt_req_send_json(m, exists ? 200 : 201, v, etag);
        }
        json_decref(obj);
        goto out;
    }
    ok = pt_mgmt_entities_change(m, put_entity, &p, 400, strip);
    json_decref(obj);
    if (ok) {
        json_t *nb = NULL;
        pt_store_get(pt_mgmt_req_store, kind, parent, id, &nb, etag);
        if (exists && !strcmp(kind, "subscription")) /* approved or rejected: the owner is told */
            pt_mgmt_notify_sub_state(pt_mgmt_req_store, pt_mgmt_req_hooks->file(), id, nb,
                                     json_string_value(json_object_get(cur, "state")));
        pt_mgmt_req_send_json(m, exists ? 200 : 201, pt_mgmt_entities_view(kind, id, nb), etag);
        json_decref(nb);
    }
out:
    json_decref(body);
    json_decref(cur);
}

/* --------------------------------------------------------------- policies */

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
        if (!pt_mgmt_entities_get(m, "api", "", m->id, NULL, NULL)) {
            pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "api '%s' not found", m->id);
            return false;
        }
        if (!pt_store_get(pt_mgmt_req_store, "operation", m->id, m->sub, NULL, NULL)) {
            pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "operation '%s' not found in api '%s'", m->sub,
                                   m->id);
            return false;
        }
        return true;
    }
    if (!pt_mgmt_entities_get(m, owner, "", m->id, NULL, NULL)) {
        pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "%s '%s' not found", owner, m->id);
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
        return pt_store_delete(pt_mgmt_req_store, "policy", "", p->pid);
    /* the same shape checks as a file's document: through a one-entity document */
    json_t *doc = json_pack("{s:O}", "policies", p->doc);
    struct pt_conf *cf = pt_model_parse_doc(pt_mgmt_req_hooks->file(), doc, NULL, "body", errs);
    json_decref(doc);
    if (!cf)
        return false;
    pt_conf_free(cf);
    return pt_store_put(pt_mgmt_req_store, "policy", "", p->pid, m->ws ? m->ws : "", p->doc, "api", NULL);
}

/* The formats of a policy document in APIM's envelope that Portico reads. */
#define POLICY_FORMATS "rawxml, xml (APIM's XML), yaml or json (Portico's document)"

/*
 * {"properties": {"format": F, "value": V}}: V is APIM's XML (format
 * rawxml or xml), or Portico's document, as JSON or as a YAML text (format
 * yaml, json or none).  The document, or NULL with a 400 sent.
 */
static json_t *policy_from_envelope(struct mreq *m, json_t *props)
{
    json_t *value = json_object_get(props, "value"), *format = json_object_get(props, "format");
    const char *f = json_string_value(format);
    if (format && !json_is_null(format) && !f) {
        pt_mgmt_req_send_error(m, 400, "ValidationError", "properties.format: expected a string: %s",
                               POLICY_FORMATS);
        return NULL;
    }
    if (f && (!strcmp(f, "xml-link") || !strcmp(f, "rawxml-link"))) {
        pt_mgmt_req_send_error(
            m, 400, "ValidationError",
            "properties.format '%s': the gateway does not fetch policy documents; send the "
            "document itself as properties.value with format %s",
            f, POLICY_FORMATS);
        return NULL;
    }
    bool xml = f && (!strcmp(f, "rawxml") || !strcmp(f, "xml"));
    if (f && !xml && strcmp(f, "yaml") && strcmp(f, "json")) {
        pt_mgmt_req_send_error(m, 400, "ValidationError", "properties.format '%s' is not supported: %s", f,
                               POLICY_FORMATS);
        return NULL;
    }
    if (!value || json_is_null(value) || (json_is_string(value) && !json_string_length(value)) ||
        (json_is_object(value) && !json_object_size(value) && xml)) {
        pt_mgmt_req_send_error(m, 400, "ValidationError", "properties.value: the policy document is empty");
        return NULL;
    }
    if (xml) {
        if (!json_is_string(value)) {
            pt_mgmt_req_send_error(m, 400, "ValidationError",
                                   "properties.value: format %s takes the XML document as a string", f);
            return NULL;
        }
        char err[300];
        json_t *doc = pt_mgmt_polxml_read(json_string_value(value), json_string_length(value),
                                          !strcmp(f, "rawxml"), err, sizeof(err));
        if (!doc)
            pt_mgmt_req_send_error(m, 400, "ValidationError", "properties.value (%s): %s", f, err);
        return doc;
    }
    if (!json_is_string(value)) /* the document itself, as JSON */
        return json_incref(value);
    /* a YAML text inside JSON (JSON is YAML too) */
    struct pt_errors errs = {0};
    struct pt_pool *pool = pt_pool_new(8192);
    struct pt_node *n =
        pt_node_parse_yaml(pool, "value", json_string_value(value), json_string_length(value), &errs);
    json_t *doc = n ? pt_node_to_json(n) : NULL;
    pt_pool_free(pool);
    if (!doc)
        pt_mgmt_req_send_errors(m, 400, "InvalidRequestBody", "the policy text cannot be read", &errs, NULL);
    pt_node_errors_clear(&errs);
    return doc;
}

void pt_mgmt_entities_policy(struct mreq *m, const char *owner, bool as_list)
{
    if (!policy_owner_exists(m, owner))
        return;
    char pid[600];
    policy_id(owner, m->id, m->sub, pid, sizeof(pid));
    json_t *doc = NULL;
    char etag[24] = "";
    bool exists = pt_store_get(pt_mgmt_req_store, "policy", "", pid, &doc, etag);
    if (m->method == EVHTTP_REQ_GET) {
        if (as_list) {
            json_t *items = json_array();
            if (exists)
                json_array_append_new(items, json_pack("{s:s,s:o}", "id", "policy", "value", doc));
            pt_mgmt_filter_send_page(m, items);
            return;
        }
        const char *f = pt_mgmt_req_param(m, "format");
        if (f && strcmp(f, "json") && strcmp(f, "yaml")) {
            /* kept in Portico's form: APIM's XML is read, not written back */
            pt_mgmt_req_send_error(m, 400, "ValidationError",
                                   "format '%s': a policy document is read as json (the default) or yaml", f);
            json_decref(doc);
            return;
        }
        if (!exists) {
            pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "no policy document at this scope");
            return;
        }
        if (pt_mgmt_export_wants_yaml(m)) {
            pt_mgmt_export_send_yaml(m, doc, NULL, etag);
            json_decref(doc);
        } else
            pt_mgmt_req_send_json(m, 200, doc, etag);
        return;
    }
    if (!pt_mgmt_auth_authorize(m, true)) {
        json_decref(doc);
        return;
    }
    char src[16];
    if (exists && pt_store_info(pt_mgmt_req_store, "policy", "", pid, src, NULL) && !strcmp(src, "config")) {
        json_decref(doc);
        refuse_file_owned(m, "policy", pid);
        return;
    }
    json_decref(doc);
    if (!pt_mgmt_req_check_etag(m, exists ? etag : NULL))
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
            pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "no policy document at this scope");
            return;
        }
        struct pol_arg p = {pid, NULL};
        if (pt_mgmt_entities_change(m, put_policy_doc, &p, 409, strip))
            pt_mgmt_req_send_json(m, 204, NULL, NULL);
        return;
    }
    json_t *body = pt_mgmt_req_body(m, false);
    if (!body)
        return;
    json_t *props = json_object_get(body, "properties");
    if (json_is_object(props) && (json_object_get(props, "value") || json_object_get(props, "format"))) {
        json_t *v = policy_from_envelope(m, props);
        json_decref(body);
        if (!v)
            return;
        body = v;
    }
    if (!json_is_object(body)) {
        pt_mgmt_req_send_error(
            m, 400, "ValidationError",
            "a policy document is a map of sections (inbound, backend, outbound, on-error)");
        json_decref(body);
        return;
    }
    if (!pt_mgmt_auth_files_allowed(m, body)) {
        json_decref(body);
        return;
    }
    struct pol_arg p = {pid, body};
    if (pt_mgmt_entities_change(m, put_policy_doc, &p, 400, strip)) {
        json_t *nb = NULL;
        pt_store_get(pt_mgmt_req_store, "policy", "", pid, &nb, etag);
        pt_mgmt_req_send_json(m, exists ? 200 : 201, nb, etag);
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
    if (pt_mgmt_entities_get(m, kind, "", id, body, NULL))
        return true;
    if (!strcmp(kind, "group") && pt_conf_entities_builtin_group(id)) {
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
        json_array_append_new(c->items, pt_mgmt_entities_view(c->lk->b_kind, b, body));
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
    return l->on ? pt_store_link(pt_mgmt_req_store, l->kind, l->a, l->b, "api")
                 : pt_store_unlink(pt_mgmt_req_store, l->kind, l->a, l->b);
}

void pt_mgmt_entities_links(struct mreq *m, const char *kind, bool one)
{
    const struct link_kind *lk = link_kind(kind);
    if (!exists_or_builtin(m, lk->a_kind, m->id, NULL)) {
        pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "%s '%s' not found", lk->a_kind, m->id);
        return;
    }
    if (!one) {
        struct links_collect c = {m, lk, json_array()};
        pt_store_links(pt_mgmt_req_store, kind, m->id, link_item, &c);
        pt_mgmt_filter_send_page(m, c.items);
        return;
    }
    if (m->method != EVHTTP_REQ_GET && !pt_mgmt_auth_authorize(m, true))
        return; /* a refused write learns nothing about what exists */
    json_t *body = NULL;
    if (!exists_or_builtin(m, lk->b_kind, m->sub, &body)) {
        pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "%s '%s' not found", lk->b_kind, m->sub);
        return;
    }
    bool linked = pt_store_linked(pt_mgmt_req_store, kind, m->id, m->sub);
    char etag[24] = "builtin"; /* the linked entity's */
    pt_store_get(pt_mgmt_req_store, lk->b_kind, "", m->sub, NULL, etag);
    if (m->method == EVHTTP_REQ_GET) {
        if (!linked)
            pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "%s '%s' is not linked to %s '%s'", lk->b_kind,
                                   m->sub, lk->a_kind, m->id);
        else
            pt_mgmt_req_send_json(m, 200, pt_mgmt_entities_view(lk->b_kind, m->sub, body), etag);
        json_decref(body);
        return;
    }
    char src[16];
    if (linked && pt_store_link_source(pt_mgmt_req_store, kind, m->id, m->sub, src) &&
        !strcmp(src, "config")) {
        json_decref(body);
        pt_mgmt_req_send_error(m, 409, "Conflict",
                               "this %s link is declared in the configuration file; change it there", kind);
        return;
    }
    if (m->method == EVHTTP_REQ_DELETE && !linked) {
        json_decref(body);
        pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "%s '%s' is not linked to %s '%s'", lk->b_kind,
                               m->sub, lk->a_kind, m->id);
        return;
    }
    struct link_arg l = {kind, m->id, m->sub, m->method == EVHTTP_REQ_PUT};
    if ((l.on && linked) || pt_mgmt_entities_change(m, set_link, &l, l.on ? 400 : 409, NULL)) {
        if (l.on)
            pt_mgmt_req_send_json(m, linked ? 200 : 201, pt_mgmt_entities_view(lk->b_kind, m->sub, body),
                                  etag);
        else
            pt_mgmt_req_send_json(m, 204, NULL, NULL);
    }
    json_decref(body);
}

/* ------------------------------------------------------ subscription keys */

struct regen_arg {
    const char *id;
    const char *field;
};

static bool regen_key(struct mreq *m, void *arg, struct pt_errors *errs)
{
    struct regen_arg *r = arg;
    json_t *b = NULL;
    char ws[128] = "";
    if (!pt_store_get(pt_mgmt_req_store, "subscription", "", r->id, &b, NULL))
        return false;
    pt_store_info(pt_mgmt_req_store, "subscription", "", r->id, NULL, ws);
    char key[33];
    pt_model_new_key(key);
    json_object_set_new(b, r->field, json_string(key));
    bool ok = pt_store_put(pt_mgmt_req_store, "subscription", "", r->id, ws, b, "api", NULL);
    json_decref(b);
    (void)m;
    (void)errs;
    return ok;
}

void pt_mgmt_entities_sub_action(struct mreq *m, enum handler h)
{
    json_t *b = NULL;
    if (!pt_mgmt_entities_get(m, "subscription", "", m->id, &b, NULL)) {
        pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "subscription '%s' not found", m->id);
        return;
    }
    if (h == H_SECRETS) {
        json_t *o = json_pack("{s:O?,s:O?}", "primaryKey", json_object_get(b, "primaryKey"), "secondaryKey",
                              json_object_get(b, "secondaryKey"));
        pt_mgmt_req_send_json(m, 200, o, NULL);
        json_decref(b);
        return;
    }
    json_decref(b);
    if (from_file("subscription", "", m->id)) {
        refuse_file_owned(m, "subscription", m->id);
        return;
    }
    struct regen_arg r = {m->id, h == H_REGEN1 ? "primaryKey" : "secondaryKey"};
    if (pt_mgmt_entities_change(m, regen_key, &r, 400, NULL))
        pt_mgmt_req_send_json(m, 204, NULL, NULL);
}

void pt_mgmt_entities_nv_value(struct mreq *m)
{
    json_t *b = NULL;
    if (!pt_mgmt_entities_get(m, "namedValue", "", m->id, &b, NULL)) {
        pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "namedValue '%s' not found", m->id);
        return;
    }
    json_t *out;
    if (json_is_string(json_object_get(b, "sealed"))) {
        char *plain = pt_model_unseal(pt_model_secret_key(pt_mgmt_req_hooks->file()),
                                      json_string_value(json_object_get(b, "sealed")));
        if (!plain) {
            json_decref(b);
            pt_mgmt_req_send_error(m, 500, "SecretUnavailable",
                                   "the value cannot be decrypted with the configured secret key");
            return;
        }
        out = json_pack("{s:s}", "value", plain);
        free(plain);
    } else
        out = json_pack("{s:O?}", "value", json_object_get(b, "value"));
    json_decref(b);
    pt_mgmt_req_send_json(m, 200, out, NULL);
}

/* ------------------------------------------------------------------ apply */

void pt_mgmt_entities_apply(struct mreq *m)
{
    size_t len;
    char *text = pt_mgmt_req_body_text(m, &len);
    if (!text) {
        pt_mgmt_req_send_error(m, 400, "InvalidRequestBody", "a document (YAML or JSON) is required");
        return;
    }
    /* YAML reads JSON too, and keeps positions for the errors */
    struct pt_errors errs = {0};
    struct pt_pool *pool = pt_pool_new(16384);
    struct pt_node *n = pt_node_parse_yaml(pool, "request", text, len, &errs);
    free(text);
    if (!n) {
        pt_mgmt_req_send_errors(m, 400, "InvalidRequestBody", "the document cannot be read", &errs, NULL);
        pt_node_errors_clear(&errs);
        pt_pool_free(pool);
        pt_mgmt_req_give_back_memory(len);
        return;
    }
    json_t *doc = pt_node_to_json(n);
    struct apply_arg a = {doc, n, "request"};
    bool hosts_ok = pt_mgmt_auth_files_allowed(m, doc);
    json_t *lg;
    size_t li;
    json_array_foreach(json_object_get(doc, "loggers"), li, lg)
    {
        if (hosts_ok && !pt_mgmt_auth_logger_allowed(m, lg))
            hosts_ok = false;
    }
    if (hosts_ok && pt_mgmt_entities_change(m, apply_doc, &a, 400, NULL)) {
        json_t *counts = json_object();
        const char *k;
        json_t *v;
        json_object_foreach(doc, k, v)
        {
            json_object_set_new(counts, k,
                                json_integer(json_is_array(v) ? (json_int_t)json_array_size(v) : 1));
        }
        pt_mgmt_req_send_json(m, 200, json_pack("{s:o}", "applied", counts), NULL);
    }
    json_decref(doc);
    pt_pool_free(pool);
}
