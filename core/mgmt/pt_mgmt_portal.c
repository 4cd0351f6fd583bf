/*
 * pt_mgmt_portal -- /management/portal/...: the developer portal's content
 * (docs/management-api.md, docs/portal.md#customization).
 *
 *   portal/site                      GET, PUT, PATCH    the draft's site settings
 *   portal/pages[/{id}]              GET [PUT PATCH DELETE]
 *   portal/media[/{id}]              GET [PUT DELETE]   bytes with their Content-Type
 *   portal/revisions                 GET, POST {comment} publishes the draft
 *   portal/revisions/{n}             GET
 *   portal/revisions/{n}/restore     POST
 *   portal/templates[/{id}]          GET [PUT PATCH DELETE]  mail templates
 *
 * Service-level entities: administrators write, readers read, workspace
 * roles see nothing.  Content is not part of the gateway's generation, so
 * a write is one store transaction and needs no rebuild; the portal sees it
 * through the store's version.
 */
#include "conf/pt_content.h"
#include "http/pt_mail.h"
#include "mgmt/pt_mgmt_int.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Runs a write in a transaction; false after answering 500. */
static bool begin(struct mreq *m)
{
    if (pt_store_begin(pt_mgmt_req_store))
        return true;
    pt_mgmt_req_send_error(m, 500, "StoreError", "store: %s", pt_store_error(pt_mgmt_req_store));
    return false;
}

static bool commit(struct mreq *m, bool ok)
{
    if (ok && pt_store_commit(pt_mgmt_req_store))
        return true;
    if (ok) {
        pt_mgmt_req_send_error(m, 500, "StoreError", "store: commit failed: %s",
                               pt_store_error(pt_mgmt_req_store));
        return false;
    }
    pt_store_rollback(pt_mgmt_req_store);
    pt_mgmt_req_send_error(m, 500, "StoreError", "store: %s", pt_store_error(pt_mgmt_req_store));
    return false;
}

static bool may_write(struct mreq *m)
{
    return pt_mgmt_auth_authorize(m, true);
}

static void refuse_file(struct mreq *m, const char *what, const char *id)
{
    pt_mgmt_req_send_error(m, 409, "Conflict",
                           "portal %s '%s' is declared in the configuration file %s; change it there", what,
                           id, pt_mgmt_req_hooks->file()->file);
}

/* Checks body with fn (a node made from it gives errors their paths); false after answering 400. */
typedef bool (*check_fn)(const struct pt_node *n, const char *id, struct pt_errors *errs);

static bool check_site_fn(const struct pt_node *n, const char *id, struct pt_errors *errs)
{
    (void)id;
    return pt_content_check_site(n, errs);
}

static bool checked(struct mreq *m, const json_t *body, check_fn fn, const char *id, const char *what)
{
    struct pt_errors errs = {0};
    struct pt_pool *pool = pt_pool_new(8192);
    struct pt_node *n = pt_node_from_json(pool, body, NULL, 0);
    bool ok = fn(n, id, &errs);
    if (!ok) {
        char summary[96];
        snprintf(summary, sizeof(summary), "the %s is not valid", what);
        pt_mgmt_req_send_errors(m, 400, "ValidationError", summary, &errs, NULL);
    }
    pt_node_errors_clear(&errs);
    pt_pool_free(pool);
    return ok;
}

/* A PATCH: b's keys over a's; objects (colors, fonts) merged key by key. */
static json_t *merged(const json_t *a, const json_t *b)
{
    json_t *out = json_deep_copy(a);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)b, k, v)
    {
        json_t *old = json_object_get(out, k);
        if (json_is_object(old) && json_is_object(v))
            json_object_update(old, v);
        else
            json_object_set(out, k, v);
    }
    return out;
}

static void send_etagged(struct mreq *m, int code, json_t *body, const char *kind, const char *id)
{
    char etag[24];
    json_t *tmp = NULL;
    bool have = pt_store_get(pt_mgmt_req_store, kind, "", id, &tmp, etag);
    json_decref(tmp);
    pt_mgmt_req_send_json(m, code, body, have ? etag : NULL);
}

/* ------------------------------------------------------------ site */

static void site(struct mreq *m)
{
    struct pt_store *st = pt_mgmt_req_store;
    json_t *stored = NULL;
    char etag[24];
    bool exists = pt_store_get(st, PT_CONTENT_SITE_KIND, "", "site", &stored, etag);
    if (!stored)
        stored = json_object();
    if (m->method == EVHTTP_REQ_GET) {
        if (pt_mgmt_req_check_etag(m, exists ? etag : NULL))
            pt_mgmt_req_send_json(m, 200, pt_content_site_full(stored), exists ? etag : NULL);
        json_decref(stored);
        return;
    }
    json_t *body = NULL;
    if (!pt_mgmt_req_check_etag(m, exists ? etag : NULL))
        goto out;
    if (pt_content_from_file(st, PT_CONTENT_SITE_KIND, "site")) {
        refuse_file(m, "site", "site");
        goto out;
    }
    if (!(body = pt_mgmt_req_body(m, false)))
        goto out;
    json_t *next = m->method == EVHTTP_REQ_PATCH ? merged(stored, body) : json_incref(body);
    if (checked(m, next, check_site_fn, NULL, "site") && begin(m)) {
        struct pt_pool *pool = pt_pool_new(8192);
        json_t *clean = pt_content_site_json(pt_node_from_json(pool, next, NULL, 0));
        pt_pool_free(pool);
        if (commit(m, clean && pt_content_put_site(st, clean, "api")))
            send_etagged(m, 200, pt_content_site_full(clean), PT_CONTENT_SITE_KIND, "site");
        json_decref(clean);
    }
    json_decref(next);
out:
    json_decref(body);
    json_decref(stored);
}

/* ------------------------------------------------------------ pages */

static bool check_page_fn(const struct pt_node *n, const char *id, struct pt_errors *errs)
{
    return pt_content_check_page(n, id, errs);
}

static void pages(struct mreq *m)
{
    struct pt_store *st = pt_mgmt_req_store;
    if (!m->id) {
        json_t *d = pt_content_draft(st);
        pt_mgmt_filter_send_page(m, json_incref(json_object_get(d, "pages")));
        json_decref(d);
        return;
    }
    if (!pt_content_id_ok(m->id)) {
        pt_mgmt_req_send_error(
            m, 400, "InvalidId",
            "a page id is 1 to 80 letters, digits, '.', '_' or '-' (not starting with '.')");
        return;
    }
    json_t *old = NULL, *body = NULL;
    char etag[24];
    bool exists = pt_store_get(st, PT_CONTENT_PAGE_KIND, "", m->id, &old, etag);
    if (m->method == EVHTTP_REQ_GET) {
        if (!exists)
            pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "portal page '%s' not found", m->id);
        else if (pt_mgmt_req_check_etag(m, etag))
            pt_mgmt_req_send_json(m, 200, json_incref(old), etag);
        goto out;
    }
    if (!pt_mgmt_req_check_etag(m, exists ? etag : NULL))
        goto out;
    if ((m->method == EVHTTP_REQ_PATCH || m->method == EVHTTP_REQ_DELETE) && !exists) {
        pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "portal page '%s' not found", m->id);
        goto out;
    }
    if (exists && pt_content_from_file(st, PT_CONTENT_PAGE_KIND, m->id)) {
        refuse_file(m, "page", m->id);
        goto out;
    }
    if (m->method == EVHTTP_REQ_DELETE) {
        if (begin(m) && commit(m, pt_store_delete(st, PT_CONTENT_PAGE_KIND, "", m->id)))
            pt_mgmt_req_send_json(m, 204, NULL, NULL);
        goto out;
    }
    if (!exists && pt_store_count(st, PT_CONTENT_PAGE_KIND, NULL) >= PT_CONTENT_PAGES_MAX) {
        pt_mgmt_req_send_error(m, 409, "LimitReached", "the portal has %d pages, the most it keeps",
                               PT_CONTENT_PAGES_MAX);
        goto out;
    }
    if (!(body = pt_mgmt_req_body(m, false)))
        goto out;
    json_t *next = m->method == EVHTTP_REQ_PATCH ? merged(old, body) : json_incref(body);
    if (m->method == EVHTTP_REQ_PATCH) {
        /* a PATCH giving html (markdown) replaces the other one */
        bool h = json_object_get(body, "html") != NULL, md = json_object_get(body, "markdown") != NULL;
        if (h != md)
            json_object_del(next, h ? "markdown" : "html");
    }
    if (checked(m, next, check_page_fn, m->id, "page") && begin(m)) {
        struct pt_pool *pool = pt_pool_new(8192);
        json_t *clean = pt_content_page_json(pt_node_from_json(pool, next, NULL, 0), m->id);
        pt_pool_free(pool);
        if (commit(m, clean && pt_content_put_page(st, clean, "api")))
            send_etagged(m, exists ? 200 : 201, json_incref(clean), PT_CONTENT_PAGE_KIND, m->id);
        json_decref(clean);
    }
    json_decref(next);
out:
    json_decref(old);
    json_decref(body);
}

/* ------------------------------------------------------------ media */

static const char *const media_types[] = {"image/png",  "image/jpeg",   "image/gif",
                                          "image/webp", "image/x-icon", NULL};

/* The declared type, lower-case, without parameters; "image/vnd.microsoft.icon" is image/x-icon. */
static void declared_type(struct mreq *m, char out[64])
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(m->r), "Content-Type");
    size_t i = 0;
    for (; ct && ct[i] && ct[i] != ';' && i < 63; i++)
        out[i] = (char)(ct[i] >= 'A' && ct[i] <= 'Z' ? ct[i] + 32 : ct[i]);
    while (i && out[i - 1] == ' ')
        i--;
    out[i] = 0;
    if (!strcmp(out, "image/vnd.microsoft.icon"))
        snprintf(out, 64, "image/x-icon");
    if (!strcmp(out, "image/jpg"))
        snprintf(out, 64, "image/jpeg");
}

static void media_put(struct mreq *m)
{
    struct pt_store *st = pt_mgmt_req_store;
    uint64_t max = pt_mgmt_req_hooks->file()->portal.max_media;
    struct evbuffer *in = evhttp_request_get_input_buffer(m->r);
    size_t len = evbuffer_get_length(in);
    char type[64];
    declared_type(m, type);
    if (len > max) {
        pt_mgmt_req_send_error(m, 413, "PayloadTooLarge",
                               "the media is %zu bytes; portal.media.maxSize is %llu", len,
                               (unsigned long long)max);
        return;
    }
    if (len == 0) {
        pt_mgmt_req_send_error(m, 400, "InvalidRequestBody", "the body is the media's bytes; it is empty");
        return;
    }
    if (strncmp(type, "image/", 6)) {
        pt_mgmt_req_send_error(
            m, 400, "InvalidRequestBody",
            "the body is the image's bytes, sent with its Content-Type (image/png, image/jpeg, "
            "image/gif, image/webp, image/x-icon)");
        return;
    }
    if (!strcmp(type, "image/svg+xml")) {
        pt_mgmt_req_send_error(m, 415, "UnsupportedMediaType",
                               "SVG is refused: it can carry scripts (use PNG, JPEG, GIF, WebP or ICO)");
        return;
    }
    bool known = false;
    for (const char *const *t = media_types; *t; t++)
        known |= !strcmp(*t, type);
    if (!known) {
        pt_mgmt_req_send_error(
            m, 415, "UnsupportedMediaType",
            "Content-Type '%s' is not one of image/png, image/jpeg, image/gif, image/webp, "
            "image/x-icon",
            type);
        return;
    }
    const unsigned char *bytes = evbuffer_pullup(in, -1);
    const char *actual = pt_content_media_type(bytes, len);
    if (!actual || strcmp(actual, type)) {
        pt_mgmt_req_send_error(m, 415, "UnsupportedMediaType", "the bytes are not %s (%s)", type,
                               actual ? actual : "not an image this portal accepts");
        return;
    }
    json_t *old = NULL;
    char etag[24];
    bool exists = pt_store_get(st, PT_CONTENT_MEDIA_KIND, "", m->id, &old, etag);
    json_decref(old);
    if (!pt_mgmt_req_check_etag(m, exists ? etag : NULL))
        return;
    if (!exists && pt_store_count(st, PT_CONTENT_MEDIA_KIND, NULL) >= PT_CONTENT_MEDIA_COUNT_MAX) {
        pt_mgmt_req_send_error(m, 409, "LimitReached", "the portal keeps at most %d media",
                               PT_CONTENT_MEDIA_COUNT_MAX);
        return;
    }
    if (begin(m) && commit(m, pt_content_media_put(st, m->id, type, bytes, len, etag)))
        pt_mgmt_req_send_json(
            m, exists ? 200 : 201,
            json_pack("{s:s, s:s, s:I}", "id", m->id, "contentType", type, "size", (json_int_t)len), etag);
}

static void media(struct mreq *m)
{
    struct pt_store *st = pt_mgmt_req_store;
    if (!m->id) {
        pt_mgmt_filter_send_page(m, pt_content_media_list(st));
        return;
    }
    if (!pt_content_id_ok(m->id)) {
        pt_mgmt_req_send_error(
            m, 400, "InvalidId",
            "a media id is 1 to 80 letters, digits, '.', '_' or '-' (not starting with '.')");
        return;
    }
    if (m->method == EVHTTP_REQ_PUT) {
        media_put(m);
        return;
    }
    char type[64], etag[24];
    unsigned char *b = NULL;
    size_t n = 0;
    bool exists = pt_content_media_get(st, m->id, type, &b, &n, etag);
    if (!exists) {
        pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "portal media '%s' not found", m->id);
    } else if (m->method == EVHTTP_REQ_DELETE) {
        if (pt_mgmt_req_check_etag(m, etag) && begin(m) &&
            commit(m, pt_store_delete(st, PT_CONTENT_MEDIA_KIND, "", m->id)))
            pt_mgmt_req_send_json(m, 204, NULL, NULL);
    } else if (pt_mgmt_req_check_etag(m, etag)) {
        struct evbuffer *out = evbuffer_new();
        evbuffer_add(out, b, n);
        struct evkeyvalq *oh = evhttp_request_get_output_headers(m->r);
        char q[40];
        snprintf(q, sizeof(q), "\"%s\"", etag);
        evhttp_add_header(oh, "Content-Type", type);
        evhttp_add_header(oh, "ETag", q);
        evhttp_add_header(oh, "X-Content-Type-Options", "nosniff");
        evhttp_add_header(oh, "Cache-Control", "no-store");
        evhttp_send_reply(m->r, 200, "OK", out);
        evbuffer_free(out);
    }
    free(b);
}

/* ------------------------------------------------------------ revisions */

/* "12" -> 12; 0 when it is not a positive number. */
static int64_t rev_number(const char *s)
{
    char *end;
    long long n = s ? strtoll(s, &end, 10) : 0;
    return s && *s && !*end && n > 0 ? n : 0;
}

static void revisions(struct mreq *m, bool restore)
{
    struct pt_store *st = pt_mgmt_req_store;
    if (!m->id && m->method == EVHTTP_REQ_GET) {
        pt_mgmt_filter_send_page(m, pt_content_revisions(st));
        return;
    }
    if (!m->id) { /* POST: publish the draft */
        json_t *body = pt_mgmt_req_body(m, true);
        if (!body)
            return;
        json_t *c = json_object_get(body, "comment");
        if (c && (!json_is_string(c) || json_string_length(c) > 500)) {
            pt_mgmt_req_send_error(m, 400, "ValidationError", "comment: text of at most 500 bytes");
            json_decref(body);
            return;
        }
        int64_t n = 0;
        if (begin(m) && commit(m, (n = pt_content_publish(st, json_string_value(c), "management")) > 0))
            pt_mgmt_req_send_json(m, 201, json_pack("{s:I}", "id", (json_int_t)n), NULL);
        json_decref(body);
        return;
    }
    int64_t n = rev_number(m->id);
    json_t *rev = n ? pt_content_revision(st, n) : NULL;
    if (!rev) {
        pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "portal revision '%s' not found", m->id);
        return;
    }
    json_decref(rev);
    if (!restore) {
        pt_mgmt_req_send_json(m, 200, pt_content_revision(st, n), NULL);
        return;
    }
    int64_t k = 0;
    if (begin(m) && commit(m, (k = pt_content_restore(st, n, "management")) > 0))
        pt_mgmt_req_send_json(m, 201, json_pack("{s:I, s:I}", "id", (json_int_t)k, "restored", (json_int_t)n),
                              NULL);
}

/* ------------------------------------------------------------ templates */

static bool check_template_fn(const struct pt_node *n, const char *id, struct pt_errors *errs)
{
    return pt_content_check_template(n, id, errs);
}

static void templates(struct mreq *m)
{
    struct pt_store *st = pt_mgmt_req_store;
    if (!m->id) {
        json_t *list = json_array();
        for (const char *const *id = pt_mail_template_ids; *id; id++)
            json_array_append_new(list, pt_mail_template_get(st, *id));
        pt_mgmt_filter_send_page(m, list);
        return;
    }
    json_t *cur = pt_mail_template_get(st, m->id);
    if (!cur) {
        pt_mgmt_req_send_error(m, 404, "ResourceNotFound",
                               "no mail template '%s' (confirm-signup, reset-password, invite, "
                               "subscription-submitted, subscription-approved, subscription-rejected)",
                               m->id);
        return;
    }
    json_t *stored = NULL, *body = NULL;
    char etag[24];
    bool exists = pt_store_get(st, PT_CONTENT_TEMPLATE_KIND, "", m->id, &stored, etag);
    if (m->method == EVHTTP_REQ_GET) {
        if (pt_mgmt_req_check_etag(m, exists ? etag : NULL))
            pt_mgmt_req_send_json(m, 200, json_incref(cur), exists ? etag : NULL);
        goto out;
    }
    if (!pt_mgmt_req_check_etag(m, exists ? etag : NULL))
        goto out;
    if (exists && pt_content_from_file(st, PT_CONTENT_TEMPLATE_KIND, m->id)) {
        refuse_file(m, "template", m->id);
        goto out;
    }
    if (m->method == EVHTTP_REQ_DELETE) {
        /* back to the built-in text */
        if (!exists)
            pt_mgmt_req_send_json(m, 204, NULL, NULL);
        else if (begin(m) && commit(m, pt_store_delete(st, PT_CONTENT_TEMPLATE_KIND, "", m->id)))
            pt_mgmt_req_send_json(m, 204, NULL, NULL);
        goto out;
    }
    if (!(body = pt_mgmt_req_body(m, false)))
        goto out;
    json_t *next = m->method == EVHTTP_REQ_PATCH && stored ? merged(stored, body) : json_incref(body);
    if (checked(m, next, check_template_fn, m->id, "template") && begin(m)) {
        json_t *clean = json_pack("{s:s}", "id", m->id);
        json_t *s = json_object_get(next, "subject"), *b = json_object_get(next, "body");
        if (json_is_string(s))
            json_object_set(clean, "subject", s);
        if (json_is_string(b))
            json_object_set(clean, "body", b);
        if (commit(m, pt_store_put(st, PT_CONTENT_TEMPLATE_KIND, "", m->id, "", clean, "api", NULL)))
            send_etagged(m, exists ? 200 : 201, pt_mail_template_get(st, m->id), PT_CONTENT_TEMPLATE_KIND,
                         m->id);
        json_decref(clean);
    }
    json_decref(next);
out:
    json_decref(cur);
    json_decref(stored);
    json_decref(body);
}

void pt_mgmt_portal_serve(struct mreq *m)
{
    const char *what = m->route->kind;
    /* every method but GET changes something: who may is decided before anything is looked up */
    if (m->method != EVHTTP_REQ_GET && m->method != EVHTTP_REQ_HEAD && !may_write(m))
        return;
    if (!strcmp(what, "site"))
        site(m);
    else if (!strcmp(what, "pages"))
        pages(m);
    else if (!strcmp(what, "media"))
        media(m);
    else if (!strcmp(what, "revisions"))
        revisions(m, false);
    else if (!strcmp(what, "restore"))
        revisions(m, true);
    else
        templates(m);
}
