/*
 * pt_portal_content -- the content the portal serves: the newest published
 * revision (the draft for an administrator's ?preview=1), with the site's
 * defaults filled in, pages in menu order and a page's provider HTML
 * already through the allow-list; Markdown rendered safely; media bytes.
 * The content itself lives in the store (conf/pt_content.c).
 *
 * Both views are cached: the published one until another revision is
 * published (the store keeps its number in one small entity), the draft
 * until the store changes at all.
 */
#include "base/pt_html.h"
#include "conf/pt_content.h"
#include "portal/pt_portal_int.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct {
    json_t *content;
    int64_t revision;
    uint64_t version; /* the store's version it was checked at */
} published = {.revision = -1};

static struct {
    json_t *content;
    uint64_t version;
} draft;

/* {"site": full, "pages": [...]} from a stored {site, pages}: defaults in,
   provider HTML sanitized. */
static json_t *servable(const json_t *site, const json_t *pages)
{
    json_t *out_pages = json_array();
    size_t i;
    json_t *p;
    json_array_foreach(pages, i, p)
    {
        json_t *c = json_deep_copy(p);
        const char *html = json_string_value(json_object_get(c, "html"));
        if (html) {
            char *safe = pt_html_sanitize(html, strlen(html));
            json_object_set_new(c, "html", json_string(safe ? safe : ""));
            free(safe);
        }
        if (!json_is_array(json_object_get(c, "groups")))
            json_object_set_new(c, "groups", json_array());
        if (!json_object_get(c, "menuOrder"))
            json_object_set_new(c, "menuOrder", json_null());
        json_array_append_new(out_pages, c);
    }
    return json_pack("{s:o, s:o}", "site", pt_content_site_full(site), "pages", out_pages);
}

const json_t *pt_portal_content_get(const struct pt_portal_req *r)
{
    struct pt_store *st = pt_portal_req_srv.store;
    uint64_t v = st ? pt_store_version(st) : 0;
    if (r && r->preview) {
        if (!draft.content || draft.version != v || !st) {
            json_t *d = st ? pt_content_draft(st) : json_pack("{s:{}, s:[]}", "site", "pages");
            json_decref(draft.content);
            draft.content = servable(json_object_get(d, "site"), json_object_get(d, "pages"));
            draft.version = v;
            json_decref(d);
        }
        return draft.content;
    }
    if (published.content && published.version == v && st)
        return published.content;
    int64_t n = st ? pt_content_latest(st) : 0;
    published.version = v;
    if (published.content && n == published.revision)
        return published.content;
    json_t *rev = n ? pt_content_revision(st, n) : NULL;
    json_decref(published.content);
    published.content = servable(json_object_get(rev, "site"), json_object_get(rev, "pages"));
    published.revision = n;
    json_decref(rev);
    return published.content;
}

int64_t pt_portal_content_revision(const struct pt_portal_req *r)
{
    pt_portal_content_get(r);
    return r && r->preview ? -1 : published.revision;
}

char *pt_portal_content_markdown(const char *md)
{
    char *html = pt_html_markdown(md ? md : "", md ? strlen(md) : 0);
    return html ? html : strdup("<p>(This text is too long to show.)</p>");
}

char *pt_portal_content_page_html(const json_t *page)
{
    const char *html = json_string_value(json_object_get(page, "html"));
    if (html)
        return pt_html_sanitize(html, strlen(html)); /* sanitized again: cheap, and safe whoever built page */
    return pt_portal_content_markdown(json_string_value(json_object_get(page, "markdown")));
}

void pt_portal_content_serve_media(struct pt_portal_req *r, const char *id)
{
    char type[64], etag[24];
    unsigned char *b = NULL;
    size_t n = 0;
    if (!pt_content_id_ok(id) || !pt_content_media_get(pt_portal_req_srv.store, id, type, &b, &n, etag)) {
        pt_portal_req_text(r, 404, "Not Found: no such media.");
        return;
    }
    char q[40];
    snprintf(q, sizeof(q), "\"%s\"", etag);
    const char *inm = pt_portal_req_in_header(r, "If-None-Match");
    pt_portal_req_header(r, "ETag", q);
    /* a media id may get new bytes: browsers ask again, cheaply (304) */
    pt_portal_req_header(r, "Cache-Control", "public, max-age=300, must-revalidate");
    pt_portal_req_header(r, "Content-Disposition", "inline");
    if (inm && strstr(inm, q)) {
        r->status = 304;
        free(b);
        return;
    }
    /* one of the types a media is stored with (pt_content_media_type) */
    static const char *const known[] = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/x-icon"};
    r->content_type = "application/octet-stream";
    for (size_t i = 0; i < PT_ARRAY_LEN(known); i++)
        if (!strcmp(known[i], type))
            r->content_type = known[i];
    if (r->method != EVHTTP_REQ_HEAD)
        evbuffer_add(r->out, b, n);
    free(b);
}

void pt_portal_content_free(void)
{
    json_decref(published.content);
    json_decref(draft.content);
    published.content = draft.content = NULL;
    published.revision = -1;
}
