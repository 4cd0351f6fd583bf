/*
 * pt_mgmt_import -- API definitions through the management API.
 *
 * PUT /management/apis/{id} whose body carries `format` and `value`
 * (directly or in `properties`, as APIM's REST API has them) imports a
 * definition: `-link` formats fetch the URL first, the converter builds the
 * API, the body's other fields win over the document's, and the result
 * replaces the API's schemas and operations in one transaction.  A
 * re-import matches operations by id: changed ones are updated in place
 * (their policies stay), new ones created, missing ones deleted; the
 * response says which.
 *
 * GET /management/apis/{id}?export=true&format=F answers with the document.
 */
#include "conf/pt_export_openapi.h"
#include "conf/pt_import.h"
#include "conf/pt_model.h"
#include "conf/pt_store.h"
#include "http/pt_fetch.h"
#include "mgmt/pt_mgmt_int.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The definition fields of a body (APIM's envelope unwrapped), or NULL. */
static const json_t *import_fields(const json_t *body)
{
    const json_t *props = json_object_get(body, "properties");
    if (json_is_object(props) && json_object_get(props, "format"))
        return props;
    return json_object_get(body, "format") ? body : NULL;
}

bool pt_mgmt_import_wanted(struct mreq *m)
{
    size_t len;
    char *text = pt_mgmt_req_body_text(m, &len);
    if (!text)
        return false;
    /* a cheap look first: only bodies that name a format are parsed twice */
    bool maybe = strstr(text, "\"format\"") || strstr(text, "format:");
    bool wanted = false;
    if (maybe) { /* parsed once: pt_mgmt_req_body hands this out again */
        json_error_t je;
        json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        wanted = json_is_object(j) && import_fields(j) != NULL;
        if (wanted)
            m->parsed = j;
        else
            json_decref(j);
    }
    free(text);
    return wanted;
}

/* ----------------------------------------------------------------- fetch */

static char *fetch(struct mreq *m, const char *format, const char *url, size_t *len)
{
    struct pt_fetch_opts o = {.timeout_ms = 30000,
                              .max_body = PT_IMPORT_MAX_FETCH,
                              .accept = "*/*",
                              .cancel_fd = -1,
                              .public_only = !pt_mgmt_req_hooks->file()->mgmt.import_private};
    char *query = NULL;
    if (!strcmp(format, "graphql-link")) {
        json_t *q = json_pack("{s:s}", "query", pt_import_graphql_introspection_query);
        query = json_dumps(q, JSON_COMPACT);
        json_decref(q);
        o.method = "POST";
        o.body = query;
        o.body_len = strlen(query);
        o.content_type = "application/json";
        o.accept = "application/json";
    }
    struct pt_fetch_result r = {0};
    char err[512] = "";
    int rc = pt_fetch_get(url, &o, &r, err, sizeof(err));
    free(query);
    if (rc == PT_FETCH_TOO_LARGE) {
        pt_mgmt_req_send_error(m, 400, "ImportFetchFailed", "%s: the definition is larger than %u bytes", url,
                               PT_IMPORT_MAX_FETCH);
        return NULL;
    }
    if (rc != PT_FETCH_OK) {
        pt_mgmt_req_send_error(m, 400, "ImportFetchFailed", "%s: %s%s", url,
                               rc == PT_FETCH_TIMEOUT ? "no answer within 30 s" : err,
                               strstr(err, "refused") && strstr(err, "private")
                                   ? " (management.importPrivateLinks: true allows it)"
                                   : "");
        return NULL;
    }
    if (r.status < 200 || r.status > 299) {
        pt_mgmt_req_send_error(m, 400, "ImportFetchFailed", "%s answered %d", url, r.status);
        free(r.body);
        return NULL;
    }
    *len = r.len;
    return r.body;
}

/* ---------------------------------------------------------------- import */

struct import_arg {
    const char *id;
    json_t *api;     /* the new API with operations */
    json_t *deleted; /* operation ids to delete */
};

static bool import_change(struct mreq *m, void *arg, struct pt_errors *errs)
{
    struct import_arg *a = arg;
    bool ok = true;
    size_t i;
    json_t *v;
    json_array_foreach(a->deleted, i, v)
    {
        char pid[600];
        ok &= pt_store_delete(pt_mgmt_req_store, "operation", a->id, json_string_value(v));
        snprintf(pid, sizeof(pid), "op:%s/%s", a->id, json_string_value(v));
        pt_store_delete(pt_mgmt_req_store, "policy", "", pid);
    }
    json_t *doc = json_pack("{s:[O]}", "apis", a->api);
    ok = ok && pt_mgmt_entities_apply_json(m, doc, errs);
    json_decref(doc);
    return ok;
}

struct old_ops {
    json_t *byid; /* id -> stored body */
};

static bool collect_op(void *arg, const struct pt_entity *e)
{
    json_object_set(((struct old_ops *)arg)->byid, e->id, e->body);
    return true;
}

/* What a re-import does to each operation: {created, updated, deleted, unchanged}. */
static json_t *diff_ops(const char *api_id, const json_t *ops, json_t **deleted)
{
    struct old_ops old = {json_object()};
    pt_store_each(pt_mgmt_req_store, "operation", api_id, collect_op, &old);
    json_t *created = json_array(), *updated = json_array(), *unchanged = json_array();
    *deleted = json_array();
    size_t i;
    json_t *op;
    json_array_foreach(ops, i, op)
    {
        const char *oid = json_string_value(json_object_get(op, "id"));
        if (!oid)
            continue;
        json_t *was = json_object_get(old.byid, oid);
        if (!was) {
            json_array_append_new(created, json_string(oid));
            continue;
        }
        json_t *cmp = json_deep_copy(op);
        json_object_del(cmp, "id");
        json_object_del(cmp, "policies");
        json_t *wcmp = json_deep_copy(was);
        json_object_del(wcmp, "workspace");
        json_object_del(wcmp, "id");
        json_object_del(cmp, "workspace");
        json_array_append_new(json_equal(cmp, wcmp) ? unchanged : updated, json_string(oid));
        json_decref(cmp);
        json_decref(wcmp);
        json_object_del(old.byid, oid);
    }
    const char *k;
    json_t *v;
    json_object_foreach(old.byid, k, v) json_array_append_new(*deleted, json_string(k));
    json_decref(old.byid);
    return json_pack("{s:o,s:o,s:O,s:o}", "created", created, "updated", updated, "deleted", *deleted,
                     "unchanged", unchanged);
}

void pt_mgmt_import_put(struct mreq *m, const char *id)
{
    json_t *cur = NULL, *body = NULL, *api = NULL, *deleted = NULL, *changes = NULL;
    struct pt_import_doc d = {0};
    char *fetched = NULL;
    char etag[24] = "";
    bool exists = pt_mgmt_entities_get(m, "api", "", id, &cur, etag);
    if (!pt_mgmt_entities_may_write(m, "api", "", id, exists, etag))
        goto out;
    body = pt_mgmt_req_body(m, false);
    if (!body)
        goto out;
    const json_t *f = import_fields(body);
    const char *format = json_string_value(json_object_get(f, "format"));
    const char *value = json_string_value(json_object_get(f, "value"));
    if (!format || !pt_import_known(format)) {
        pt_mgmt_req_send_error(
            m, 400, "ValidationError",
            "format: expected one of openapi, openapi+json, openapi-link, openapi+json-link, "
            "swagger-json, swagger-link-json, wsdl, wsdl-link, odata, odata-link, graphql, "
            "graphql-link, grpc");
        goto out;
    }
    if (!value || !*value) {
        pt_mgmt_req_send_error(m, 400, "ValidationError",
                               "value: the definition (or its URL, for a -link format) as a string");
        goto out;
    }
    size_t len = strlen(value);
    if (pt_import_is_link(format)) {
        fetched = fetch(m, format, value, &len);
        if (!fetched)
            goto out;
    } else if (len > PT_IMPORT_MAX_INLINE) {
        pt_mgmt_req_send_error(
            m, 400, "ValidationError",
            "value: the definition is %zu bytes; at most %u are imported inline (use a -link "
            "format for larger ones)",
            len, PT_IMPORT_MAX_INLINE);
        goto out;
    }
    const json_t *sel = json_object_get(f, "wsdlSelector");
    struct pt_import_req r = {format,
                              fetched ? fetched : value,
                              len,
                              NULL,
                              json_string_value(json_object_get(sel, "wsdlServiceName")),
                              json_string_value(json_object_get(sel, "wsdlEndpointName"))};
    char err[1024] = "";
    if (!pt_import_convert(&r, &d, err, sizeof(err))) {
        pt_mgmt_req_send_error(m, 400, "InvalidDefinition", "%s", err);
        goto out;
    }
    /* the stored API's fields, under the document's, under the body's */
    api = exists ? json_deep_copy(cur) : json_object();
    json_object_del(api, "schemas");
    json_object_update(api, d.api);
    json_t *mine = json_deep_copy(f);
    static const char *const not_fields[] = {"format", "value", "wsdlSelector", "properties", "id", NULL};
    for (int i = 0; not_fields[i]; i++)
        json_object_del(mine, not_fields[i]);
    pt_import_overlay(api, mine);
    json_decref(mine);
    if (!strcmp(format, "graphql-link") && !json_object_get(api, "serviceUrl"))
        json_object_set_new(api, "serviceUrl", json_string(value));
    size_t vl = strlen(value);
    if (!strcmp(format, "odata-link") && !json_object_get(api, "serviceUrl") && vl > 10 &&
        !strcmp(value + vl - 10, "/$metadata")) /* the service is where its metadata is */
        json_object_set_new(api, "serviceUrl", json_stringn(value, vl - 10));
    if (!json_is_string(json_object_get(api, "path"))) {
        pt_mgmt_req_send_error(m, 400, "ValidationError", "path: the API URL suffix is required");
        goto out;
    }
    if (m->ws)
        json_object_set_new(api, "workspace", json_string(m->ws));
    json_object_set_new(api, "id", json_string(id));
    json_t *ops = json_object_get(api, "operations");
    changes = diff_ops(id, ops, &deleted);
    struct import_arg a = {id, api, deleted};
    char strip0[600];
    snprintf(strip0, sizeof(strip0), "apis[0]");
    const char *strip[] = {strip0, NULL};
    if (!pt_mgmt_entities_change(m, import_change, &a, 400, strip))
        goto out;
    json_t *nb = NULL;
    pt_store_get(pt_mgmt_req_store, "api", "", id, &nb, etag);
    json_t *v = pt_mgmt_entities_view("api", id, nb);
    json_decref(nb);
    json_object_set(changes, "warnings", d.warnings);
    json_object_set_new(changes, "format", json_string(format));
    json_object_set(v, "import", changes);
    pt_mgmt_req_send_json(m, exists ? 200 : 201, v, etag);
out:
    free(fetched);
    pt_import_doc_clear(&d);
    json_decref(changes);
    json_decref(deleted);
    json_decref(api);
    json_decref(body);
    json_decref(cur);
}

/* --------------------------------------------------------------- schemas */

struct schema_arg {
    json_t *api; /* the API with its new schemas, without operations */
};

static bool schema_change(struct mreq *m, void *arg, struct pt_errors *errs)
{
    json_t *doc = json_pack("{s:[O]}", "apis", ((struct schema_arg *)arg)->api);
    bool ok = pt_mgmt_entities_apply_json(m, doc, errs);
    json_decref(doc);
    return ok;
}

static int schema_index(const json_t *list, const char *id)
{
    size_t i;
    json_t *s;
    json_array_foreach(list, i, s)
    {
        const char *sid = json_string_value(json_object_get(s, "id"));
        if (sid && !strcmp(sid, id))
            return (int)i;
    }
    return -1;
}

void pt_mgmt_import_schema(struct mreq *m, const char *api_id, const char *sub)
{
    json_t *api = NULL, *body = NULL;
    char etag[24] = "";
    if (!pt_mgmt_entities_get(m, "api", "", api_id, &api, etag)) {
        pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "api '%s' not found", api_id);
        return;
    }
    json_t *list = json_object_get(api, "schemas");
    if (!json_is_array(list)) {
        list = json_array();
        json_object_set_new(api, "schemas", list);
    }
    int at = sub ? schema_index(list, sub) : -1;
    if (m->method == EVHTTP_REQ_GET) {
        if (!sub)
            pt_mgmt_filter_send_page(m, json_incref(list));
        else if (at < 0)
            pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "schema '%s' of api '%s' not found", sub,
                                   api_id);
        else
            pt_mgmt_req_send_json(m, 200, json_incref(json_array_get(list, (size_t)at)), NULL);
        goto out;
    }
    /* a write of a schema is a write of its API (role, owner, ETag of the API) */
    if (!pt_mgmt_entities_may_write(m, "api", "", api_id, true, etag))
        goto out;
    if (m->method == EVHTTP_REQ_DELETE) {
        if (at < 0) {
            pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "schema '%s' of api '%s' not found", sub,
                                   api_id);
            goto out;
        }
        json_array_remove(list, (size_t)at);
    } else {
        body = pt_mgmt_req_body(m, false);
        if (!body)
            goto out;
        json_t *props = json_object_get(body, "properties");
        json_t *s = json_deep_copy(json_is_object(props) ? props : body);
        if (!json_is_object(s)) {
            json_decref(s);
            pt_mgmt_req_send_error(m, 400, "InvalidRequestBody", "the body must be a JSON object");
            goto out;
        }
        json_object_set_new(s, "id", json_string(sub));
        if (at < 0)
            json_array_append_new(list, s);
        else
            json_array_set_new(list, (size_t)at, s);
    }
    json_object_set_new(api, "id", json_string(api_id));
    struct schema_arg a = {api};
    const char *strip[] = {"apis[0]", NULL};
    if (!pt_mgmt_entities_change(m, schema_change, &a, 400, strip))
        goto out;
    if (m->method == EVHTTP_REQ_DELETE)
        pt_mgmt_req_send_json(m, 204, NULL, NULL);
    else
        pt_mgmt_req_send_json(m, at < 0 ? 201 : 200,
                              json_incref(json_array_get(list, (size_t)schema_index(list, sub))), NULL);
out:
    json_decref(body);
    json_decref(api);
}

/* ---------------------------------------------------------------- export */

static bool collect_full_op(void *arg, const struct pt_entity *e)
{
    json_t *o = json_deep_copy(e->body);
    json_object_set_new(o, "id", json_string(e->id));
    json_array_append_new(arg, o);
    return true;
}

static void send_text(struct mreq *m, const char *type, const char *text, size_t len)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(m->r);
    evhttp_add_header(h, "Content-Type", type);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, text, len);
    evhttp_send_reply(m->r, 200, "OK", b);
    evbuffer_free(b);
}

void pt_mgmt_import_export(struct mreq *m, const char *id)
{
    json_t *api = NULL;
    if (!pt_mgmt_entities_get(m, "api", "", id, &api, NULL)) {
        pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "api '%s' not found", id);
        return;
    }
    const char *format = pt_mgmt_req_param(m, "format");
    if (!format)
        format = "openapi+json";
    else if (!strcmp(format, "openapi json")) /* an unencoded '+' in the query reads as a space */
        format = "openapi+json";
    json_object_set_new(api, "id", json_string(id));
    json_t *ops = json_array();
    pt_store_each(pt_mgmt_req_store, "operation", id, collect_full_op, ops);
    json_object_set_new(api, "operations", ops);
    const struct pt_import_text *tf = pt_import_text_find(format);
    if (tf) {
        const char *text = pt_import_text_of(api, tf);
        if (!text)
            pt_mgmt_req_send_error(m, 400, "ExportFormatNotAvailable",
                                   "api '%s' holds no %s document (only APIs imported from one do)", id,
                                   tf->label);
        else
            send_text(m, tf->media_type, text, strlen(text));
        json_decref(api);
        return;
    }
    int version = !strcmp(format, "swagger-json") ? 2 : 3;
    if (strcmp(format, "openapi") && strcmp(format, "openapi+json") && strcmp(format, "swagger-json")) {
        pt_mgmt_req_send_error(
            m, 400, "ValidationError",
            "format: expected one of openapi, openapi+json, swagger-json, wsdl, graphql, grpc");
        json_decref(api);
        return;
    }
    char server[600];
    snprintf(server, sizeof(server), "/%s", json_string_value(json_object_get(api, "path")) ?: "");
    json_t *doc = pt_export_openapi_build(api, version, server);
    json_decref(api);
    if (!doc) {
        pt_mgmt_req_send_error(m, 500, "ExportFailed", "the definition could not be built");
        return;
    }
    if (!strcmp(format, "openapi"))
        pt_mgmt_export_send_yaml(m, doc, NULL, NULL);
    else
        pt_mgmt_req_send_json(m, 200, doc, NULL);
    if (!strcmp(format, "openapi"))
        json_decref(doc);
}
