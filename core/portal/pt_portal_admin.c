/*
 * pt_portal_admin -- the administrator's pages: site settings (title, logo,
 * favicon, colors, fonts, custom CSS, home page, terms, sign-up and
 * sign-in switches), media uploads, pages (list, editor with a live
 * preview, delete), publishing with a comment, revisions and restoring one.
 *
 * Only users in the group administrators see these pages: for everyone
 * else they do not exist (404, the same page as for an unknown path).
 * Every POST checks the session's CSRF token first.  Edits change the
 * draft (conf/pt_content.c); visitors see them once they are published;
 * an administrator looks at the draft with ?preview=1 on any page.
 */
#include "base/pt_html.h"
#include "base/pt_log.h"
#include "conf/pt_content.h"
#include "portal/pt_portal_int.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OUT(...) evbuffer_add_printf(r->out, __VA_ARGS__)

static void esc(struct pt_portal_req *r, const char *s)
{
    pt_portal_render_esc(r->out, s ? s : "");
}

/* Administrators only; false after answering 404 (a page, or JSON for /api/...). */
static bool admin_only(struct pt_portal_req *r, bool json)
{
    if (r->user && r->user->admin)
        return true;
    if (json)
        pt_portal_req_json_error(r, 404, "NotFound", "no such resource");
    else
        pt_portal_render_not_found(r);
    return false;
}

/* A POST by an administrator with a good CSRF token. */
static bool admin_post(struct pt_portal_req *r)
{
    return admin_only(r, false) && pt_portal_req_check_csrf(r);
}

static struct pt_store *store(void)
{
    return pt_portal_req_srv.store;
}

/* Runs the writes done since begin() to their end; false (rolled back) on a store error. */
static bool finish(bool ok)
{
    if (ok && pt_store_commit(store()))
        return true;
    if (ok)
        pt_err("portal: store commit failed: %s", pt_store_error(store()));
    else
        pt_store_rollback(store());
    return false;
}

/* A form field.  libevent decodes the values of a form but not the names, and
   browsers send "colors[primary]" as "colors%5Bprimary%5D": both are asked. */
static const char *field_or_null(struct pt_portal_req *r, const char *name)
{
    const char *v = pt_portal_req_form(r, name);
    if (v || !strpbrk(name, "[]"))
        return v;
    char enc[128];
    size_t k = 0;
    for (const char *p = name; *p && k + 4 < sizeof(enc); p++) {
        if (*p == '[' || *p == ']')
            k += (size_t)snprintf(enc + k, sizeof(enc) - k, "%%5%c", *p == '[' ? 'B' : 'D');
        else
            enc[k++] = *p;
    }
    enc[k] = 0;
    return pt_portal_req_form(r, enc);
}

static const char *field(struct pt_portal_req *r, const char *name)
{
    const char *v = field_or_null(r, name);
    return v ? v : "";
}

static void begin_admin(struct pt_portal_req *r, const char *title)
{
    pt_portal_render_begin(r, title);
    OUT("<link rel=\"stylesheet\" href=\"");
    esc(r, pt_portal_assets_url("admin.css"));
    OUT("\"><nav class=\"admin-nav\" aria-label=\"Administration\"><ul><li><a "
        "href=\"/admin\">Administration</a>"
        "</li><li><a href=\"/admin/site\">Site</a></li><li><a href=\"/admin/pages\">Pages</a></li><li><a "
        "href=\"/admin/revisions\">Revisions</a></li><li><a href=\"/admin/invite\">Invite</a></li><li><a "
        "href=\"/admin/subscriptions\">Subscriptions</a></li><li><a href=\"/?preview=1\">Preview the "
        "draft</a></li></ul></nav>\n");
}

static void errors(struct pt_portal_req *r, const struct pt_errors *errs)
{
    for (int i = 0; i < errs->n; i++) {
        OUT("<p class=\"error\" role=\"alert\">");
        esc(r, errs->msgs[i]);
        OUT("</p>\n");
    }
}

static void error_text(struct pt_portal_req *r, const char *msg)
{
    OUT("<p class=\"error\" role=\"alert\">");
    esc(r, msg);
    OUT("</p>\n");
}

/* The publish form (on every editing page). */
static void publish_form(struct pt_portal_req *r)
{
    OUT("<form id=\"publish-form\" class=\"stacked\" method=\"post\" action=\"/admin/publish\">");
    pt_portal_render_csrf(r);
    OUT("<label for=\"publish-comment\">Comment</label><input type=\"text\" id=\"publish-comment\" "
        "name=\"comment\" maxlength=\"500\" placeholder=\"What changed\"><p><button type=\"submit\">Publish "
        "the "
        "draft</button></p></form>\n");
}

/* ------------------------------------------------------------ /admin */

void pt_portal_admin_home(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1;
    (void)a2;
    if (!admin_only(r, false))
        return;
    begin_admin(r, "Administration");
    int64_t latest = pt_content_latest(store());
    OUT("<h1>Administration</h1><ul class=\"admin-links\">"
        "<li><a href=\"/admin/site\">Site settings</a>: title, logo, favicon, colors, fonts, custom CSS, "
        "home "
        "page, terms, sign-up</li>"
        "<li><a href=\"/admin/pages\">Pages</a>: Markdown pages, the menu, who sees each page</li>"
        "<li><a href=\"/admin/revisions\">Revisions</a>: what was published, and going back to it</li>"
        "<li><a href=\"/admin/invite\">Invite a user</a></li>"
        "<li><a href=\"/admin/subscriptions\">Subscriptions waiting for approval</a></li>"
        "<li><a href=\"/?preview=1\">Preview the draft</a></li></ul>");
    if (latest)
        OUT("<p>Visitors see revision %lld.</p>", (long long)latest);
    else
        OUT("<p>Nothing was published yet: visitors see the built-in content.</p>");
    publish_form(r);
    pt_portal_render_end(r);
}

/* ------------------------------------------------------------ site */

static bool collect_media(void *arg, const struct pt_entity *e)
{
    json_array_append_new(arg, json_string(e->id));
    return json_array_size(arg) < PT_CONTENT_MEDIA_COUNT_MAX;
}

static void media_select(struct pt_portal_req *r, const char *name, const char *label, const char *current,
                         const json_t *ids)
{
    OUT("<label for=\"site-%s\">%s</label><select id=\"site-%s\" name=\"%s\"><option "
        "value=\"\">(none)</option>",
        name, label, name, name);
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        const char *id = json_string_value(v);
        OUT("<option value=\"");
        esc(r, id);
        OUT("\"%s>", current && !strcmp(current, id) ? " selected" : "");
        esc(r, id);
        OUT("</option>");
    }
    OUT("</select>\n");
}

static void text_input(struct pt_portal_req *r, const char *id, const char *name, const char *label,
                       const char *value, int max)
{
    OUT("<label for=\"%s\">%s</label><input type=\"text\" id=\"%s\" name=\"%s\" maxlength=\"%d\" value=\"",
        id, label, id, name, max);
    esc(r, value);
    OUT("\">\n");
}

static void textarea(struct pt_portal_req *r, const char *id, const char *name, const char *label,
                     const char *value, int rows)
{
    OUT("<label for=\"%s\">%s</label><textarea id=\"%s\" name=\"%s\" rows=\"%d\">", id, label, id, name,
        rows);
    esc(r, value);
    OUT("</textarea>\n");
}

static const char *sget(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

static void site_form(struct pt_portal_req *r, const json_t *site, const struct pt_errors *errs,
                      bool from_file)
{
    begin_admin(r, "Site settings");
    OUT("<h1>Site settings</h1>");
    if (errs)
        errors(r, errs);
    if (from_file)
        OUT("<p class=\"error\" role=\"alert\">The site is declared in the configuration file: change it "
            "there.</p>");
    json_t *ids = json_array();
    pt_store_each(store(), PT_CONTENT_MEDIA_KIND, "", collect_media, ids);
    const json_t *c = json_object_get(site, "colors"), *f = json_object_get(site, "fonts");
    OUT("<form id=\"site-form\" class=\"stacked\" method=\"post\" action=\"/admin/site\">");
    pt_portal_render_csrf(r);
    text_input(r, "site-title", "title", "Title", sget(site, "title"), 200);
    media_select(r, "logo", "Logo", json_string_value(json_object_get(site, "logo")), ids);
    media_select(r, "favicon", "Favicon", json_string_value(json_object_get(site, "favicon")), ids);
    OUT("<fieldset><legend>Colors</legend>");
    static const char *const colors[] = {"primary", "background", "text", "link"};
    for (size_t i = 0; i < PT_ARRAY_LEN(colors); i++) {
        char id[40], name[40];
        snprintf(id, sizeof(id), "site-color-%s", colors[i]);
        snprintf(name, sizeof(name), "colors[%s]", colors[i]);
        text_input(r, id, name, colors[i], sget(c, colors[i]), 60);
    }
    OUT("</fieldset><fieldset><legend>Fonts</legend>");
    text_input(r, "site-font-body", "fonts[body]", "Body", sget(f, "body"), 200);
    text_input(r, "site-font-heading", "fonts[heading]", "Headings", sget(f, "heading"), 200);
    OUT("</fieldset>");
    textarea(r, "site-css", "customCss", "Custom CSS", sget(site, "customCss"), 6);
    textarea(r, "site-home", "home", "Home page (Markdown)", sget(site, "home"), 10);
    textarea(r, "site-terms", "terms",
             "Terms of use (Markdown; empty: none, and sign-up asks for no acceptance)", sget(site, "terms"),
             6);
    OUT("<p><input type=\"checkbox\" id=\"site-signup\" name=\"signupEnabled\"%s> <label for=\"site-signup\">"
        "Sign-up is open</label></p>",
        json_is_true(json_object_get(site, "signupEnabled")) ? " checked" : "");
    OUT("<p><input type=\"checkbox\" id=\"site-require\" name=\"requireSignin\"%s> <label "
        "for=\"site-require\">"
        "Visitors must sign in to see anything</label></p>",
        json_is_true(json_object_get(site, "requireSignin")) ? " checked" : "");
    OUT("<p><button type=\"submit\"%s>Save the draft</button></p></form>\n", from_file ? " disabled" : "");
    json_decref(ids);
    OUT("<h2>Upload a logo, favicon or image</h2><form id=\"media-form\" class=\"stacked\" method=\"post\" "
        "action=\"/admin/media\" enctype=\"multipart/form-data\">");
    pt_portal_render_csrf(r);
    OUT("<label for=\"media-file\">File (PNG, JPEG, GIF, WebP or ICO; at most %llu bytes)</label><input "
        "type=\"file\" id=\"media-file\" name=\"file\" accept=\"image/png,image/jpeg,image/gif,image/webp,"
        "image/x-icon\" required>"
        "<label for=\"media-use\">Use it as</label><select id=\"media-use\" name=\"use\"><option "
        "value=\"\">an "
        "image for pages</option><option value=\"logo\">the logo</option><option value=\"favicon\">the "
        "favicon</option></select><p><button type=\"submit\">Upload</button></p></form>\n",
        (unsigned long long)pt_portal_req_srv.file->portal.max_media);
    publish_form(r);
    pt_portal_render_end(r);
}

/* The site the form sent (a new object). */
static json_t *site_from_form(struct pt_portal_req *r)
{
    json_t *s =
        json_pack("{s:s, s:{s:s, s:s, s:s, s:s}, s:{s:s, s:s}, s:s, s:s, s:s, s:b, s:b}", "title",
                  field(r, "title"), "colors", "primary", field(r, "colors[primary]"), "background",
                  field(r, "colors[background]"), "text", field(r, "colors[text]"), "link",
                  field(r, "colors[link]"), "fonts", "body", field(r, "fonts[body]"), "heading",
                  field(r, "fonts[heading]"), "customCss", field(r, "customCss"), "home", field(r, "home"),
                  "terms", field(r, "terms"), "signupEnabled", pt_portal_req_form(r, "signupEnabled") != NULL,
                  "requireSignin", pt_portal_req_form(r, "requireSignin") != NULL);
    const char *logo = field(r, "logo"), *fav = field(r, "favicon");
    json_object_set_new(s, "logo", *logo ? json_string(logo) : json_null());
    json_object_set_new(s, "favicon", *fav ? json_string(fav) : json_null());
    return s;
}

void pt_portal_admin_site(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1;
    (void)a2;
    if (r->method == EVHTTP_REQ_POST ? !admin_post(r) : !admin_only(r, false))
        return;
    bool from_file = pt_content_from_file(store(), PT_CONTENT_SITE_KIND, "site");
    if (r->method != EVHTTP_REQ_POST) {
        json_t *d = pt_content_draft(store());
        json_t *full = pt_content_site_full(json_object_get(d, "site"));
        site_form(r, full, NULL, from_file);
        json_decref(full);
        json_decref(d);
        return;
    }
    json_t *site = site_from_form(r);
    struct pt_errors errs = {0};
    struct pt_pool *pool = pt_pool_new(8192);
    struct pt_node *n = site ? pt_node_from_json(pool, site, NULL, 0) : NULL;
    if (from_file)
        pt_node_errors_add(&errs, "The site is declared in the configuration file: change it there.");
    else if (!n || !pt_content_check_site(n, &errs)) {
        /* the errors are shown above the form as sent */
    } else {
        json_t *clean = pt_content_site_json(n);
        bool ok = pt_store_begin(store()) && finish(clean && pt_content_put_site(store(), clean, "api"));
        json_decref(clean);
        if (ok) {
            pt_info("portal: administrator %s saved the site settings (draft)", r->user->id);
            pt_portal_req_redirect(r, "/admin/site", "Saved to the draft. Publish to show it to visitors.");
        } else {
            pt_node_errors_add(&errs, "The store could not save the settings.");
        }
    }
    if (errs.n) {
        r->status = 400;
        site_form(r, site, &errs, from_file);
    }
    pt_node_errors_clear(&errs);
    pt_pool_free(pool);
    json_decref(site);
}

/* ------------------------------------------------------------ media */

static const unsigned char *memfind(const unsigned char *h, size_t hn, const char *n, size_t nn)
{
    if (nn == 0 || hn < nn)
        return NULL;
    for (size_t i = 0; i + nn <= hn; i++)
        if (h[i] == (unsigned char)n[0] && !memcmp(h + i, n, nn))
            return h + i;
    return NULL;
}

/* A parameter of a header value: name="value" (or name=value) into out. */
static bool header_param(const char *h, size_t hl, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + nl + 1 < hl; i++) {
        if ((i == 0 || h[i - 1] == ' ' || h[i - 1] == ';') && !strncasecmp(h + i, name, nl) &&
            h[i + nl] == '=') {
            const char *v = h + i + nl + 1, *end = h + hl;
            bool q = v < end && *v == '"';
            if (q)
                v++;
            size_t k = 0;
            while (v < end && (q ? *v != '"' : (*v != ';' && *v != ' ' && *v != '\r')) && k + 1 < outlen)
                out[k++] = *v++;
            out[k] = 0;
            return true;
        }
    }
    return false;
}

int pt_portal_admin_multipart(const unsigned char *body, size_t len, const char *boundary,
                              struct pt_portal_part *parts, int max)
{
    char delim[90];
    int dl = snprintf(delim, sizeof(delim), "--%s", boundary);
    if (dl < 3 || (size_t)dl >= sizeof(delim))
        return -1;
    const unsigned char *p = memfind(body, len, delim, (size_t)dl), *end = body + len;
    int n = 0;
    while (p) {
        p += dl;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            return n; /* the closing delimiter */
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n' || n == max)
            return -1;
        p += 2;
        const unsigned char *hend = memfind(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!hend || hend - p > 2048)
            return -1;
        struct pt_portal_part *pt = &parts[n];
        memset(pt, 0, sizeof(*pt));
        /* the headers: only Content-Disposition matters */
        for (const unsigned char *line = p; line < hend;) {
            const unsigned char *le = memfind(line, (size_t)(hend - line) + 2, "\r\n", 2);
            size_t ll = (size_t)(le - line);
            if (ll > 20 && !strncasecmp((const char *)line, "Content-Disposition:", 20)) {
                header_param((const char *)line + 20, ll - 20, "name", pt->name, sizeof(pt->name));
                header_param((const char *)line + 20, ll - 20, "filename", pt->filename,
                             sizeof(pt->filename));
            }
            line = le + 2;
        }
        const unsigned char *data = hend + 4;
        char next[96];
        int nl = snprintf(next, sizeof(next), "\r\n%s", delim);
        const unsigned char *q = memfind(data, (size_t)(end - data), next, (size_t)nl);
        if (!q)
            return -1;
        pt->data = data;
        pt->len = (size_t)(q - data);
        n++;
        p = q + 2;
    }
    return -1;
}

/* A media id from an uploaded file's name: its letters, digits, '.', '_', '-'; else a random one. */
static void media_id(const char *filename, char out[81])
{
    size_t k = 0;
    const char *base = strrchr(filename, '/');
    base = base ? base + 1 : filename;
    if (strrchr(base, '\\'))
        base = strrchr(base, '\\') + 1;
    for (const char *s = base; *s && k < 60; s++) {
        char c = (char)tolower((unsigned char)*s);
        if (isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-')
            out[k++] = c;
        else if (k && out[k - 1] != '-')
            out[k++] = '-';
    }
    out[k] = 0;
    while (out[0] == '.')
        memmove(out, out + 1, strlen(out));
    if (!pt_content_id_ok(out)) {
        unsigned char rnd[6];
        if (RAND_bytes(rnd, sizeof(rnd)) != 1)
            memset(rnd, 0, sizeof(rnd));
        snprintf(out, 81, "media-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    }
}

static void upload_refused(struct pt_portal_req *r, int status, const char *msg)
{
    r->status = status;
    begin_admin(r, "Upload refused");
    OUT("<h1>Upload refused</h1>");
    error_text(r, msg);
    OUT("<p><a href=\"/admin/site\">Back to the site settings</a></p>");
    pt_portal_render_end(r);
}

void pt_portal_admin_media(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1;
    (void)a2;
    if (!admin_only(r, false))
        return;
    const char *ct = pt_portal_req_in_header(r, "Content-Type");
    char boundary[80] = "";
    if (!ct || strncasecmp(ct, "multipart/form-data", 19) ||
        !header_param(ct + 19, strlen(ct + 19), "boundary", boundary, sizeof(boundary)) || !*boundary) {
        /* an urlencoded form here has the CSRF field parsed: check it first so that a forged request gets 403
         */
        if (pt_portal_req_check_csrf(r))
            upload_refused(r, 400, "Send the file as multipart/form-data (the upload form does).");
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(r->r);
    size_t len = evbuffer_get_length(in);
    const unsigned char *body = evbuffer_pullup(in, -1);
    struct pt_portal_part parts[8];
    int n = body ? pt_portal_admin_multipart(body, len, boundary, parts, (int)PT_ARRAY_LEN(parts)) : -1;
    /* the text fields become the form, so the CSRF check reads them as usual */
    json_decref(r->form);
    r->form = json_object();
    const struct pt_portal_part *file = NULL;
    for (int i = 0; i < n; i++) {
        if (!strcmp(parts[i].name, "file"))
            file = &parts[i];
        else if (parts[i].len < 512 && !json_object_get(r->form, parts[i].name)) {
            json_t *v = json_stringn((const char *)parts[i].data, parts[i].len);
            if (v)
                json_object_set_new(r->form, parts[i].name, v);
        }
    }
    if (!pt_portal_req_check_csrf(r))
        return;
    uint64_t max = pt_portal_req_srv.file->portal.max_media;
    if (n < 0 || !file || file->len == 0) {
        upload_refused(r, 400, "No file was sent (field \"file\").");
        return;
    }
    if (file->len > max) {
        char msg[160];
        snprintf(msg, sizeof(msg), "The file is %zu bytes; the most this portal accepts is %llu.", file->len,
                 (unsigned long long)max);
        upload_refused(r, 413, msg);
        return;
    }
    const char *type = pt_content_media_type(file->data, file->len);
    if (!type) {
        upload_refused(r, 415,
                       "This file is not a PNG, JPEG, GIF, WebP or ICO image (checked by its content; SVG is "
                       "refused because it can carry scripts).");
        return;
    }
    char id[81];
    const char *want = field(r, "id");
    if (*want && pt_content_id_ok(want))
        snprintf(id, sizeof(id), "%s", want);
    else
        media_id(file->filename, id);
    const char *use = field(r, "use");
    bool set_site = !strcmp(use, "logo") || !strcmp(use, "favicon");
    if (set_site && pt_content_from_file(store(), PT_CONTENT_SITE_KIND, "site")) {
        upload_refused(r, 409,
                       "The site is declared in the configuration file: set its logo and favicon there.");
        return;
    }
    if (pt_store_count(store(), PT_CONTENT_MEDIA_KIND, NULL) >= PT_CONTENT_MEDIA_COUNT_MAX &&
        !pt_store_get(store(), PT_CONTENT_MEDIA_KIND, "", id, NULL, NULL)) {
        upload_refused(r, 409, "The portal keeps no more media: delete some through the management API.");
        return;
    }
    bool ok = pt_store_begin(store());
    ok = ok && pt_content_media_put(store(), id, type, file->data, file->len, NULL);
    if (ok && set_site) {
        json_t *site = NULL;
        if (!pt_store_get(store(), PT_CONTENT_SITE_KIND, "", "site", &site, NULL))
            site = json_object();
        json_object_set_new(site, use, json_string(id));
        ok = pt_content_put_site(store(), site, "api");
        json_decref(site);
    }
    if (!finish(ok)) {
        upload_refused(r, 500, "The store could not save the file.");
        return;
    }
    pt_info("portal: administrator %s uploaded media %s (%s, %zu bytes)", r->user->id, id, type, file->len);
    char flash[200];
    snprintf(flash, sizeof(flash), "Uploaded %s as /media/%s%s%s.", type, id,
             set_site ? ", now the draft's " : "", set_site ? use : "");
    pt_portal_req_redirect(r, "/admin/site", flash);
}

/* ------------------------------------------------------------ pages */

static const char *groups_text(const json_t *groups, char *buf, size_t len)
{
    buf[0] = 0;
    size_t i, k = 0;
    json_t *g;
    json_array_foreach(groups, i, g)
    {
        int w = snprintf(buf + k, len - k, "%s%s", i ? ", " : "",
                         json_string_value(g) ? json_string_value(g) : "");
        if (w < 0 || (size_t)w >= len - k)
            break;
        k += (size_t)w;
    }
    return buf;
}

void pt_portal_admin_pages(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1;
    (void)a2;
    if (!admin_only(r, false))
        return;
    const char *newid = pt_portal_req_query(r, "id");
    if (newid) { /* the "new page" form: its editor */
        char path[128];
        if (!pt_content_id_ok(newid)) {
            pt_portal_req_redirect(
                r, "/admin/pages",
                "A page id is 1 to 80 letters, digits, '.', '_' or '-' (not starting with '.').");
            return;
        }
        snprintf(path, sizeof(path), "/admin/pages/%s", newid);
        pt_portal_req_redirect(r, path, NULL);
        return;
    }
    json_t *d = pt_content_draft(store());
    begin_admin(r, "Pages");
    OUT("<h1>Pages</h1><div class=\"table-wrap\"><table id=\"pages\"><thead><tr><th "
        "scope=\"col\">Page</th><th "
        "scope=\"col\">Title</th><th scope=\"col\">Menu</th><th scope=\"col\">Seen by</th><th "
        "scope=\"col\">Owner</th></tr></thead><tbody>");
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(d, "pages"), i, p)
    {
        const char *id = sget(p, "id");
        char groups[512];
        json_t *mo = json_object_get(p, "menuOrder");
        OUT("<tr data-page=\"");
        esc(r, id);
        OUT("\"><td><a href=\"/admin/pages/");
        esc(r, id);
        OUT("\">");
        esc(r, id);
        OUT("</a></td><td>");
        esc(r, sget(p, "title"));
        if (json_is_integer(mo))
            OUT("</td><td>%lld</td><td>", (long long)json_integer_value(mo));
        else
            OUT("</td><td>not in the menu</td><td>");
        groups_text(json_object_get(p, "groups"), groups, sizeof(groups));
        esc(r, *groups ? groups : "everyone");
        OUT("</td><td>%s</td></tr>", pt_content_from_file(store(), PT_CONTENT_PAGE_KIND, id)
                                         ? "configuration file"
                                         : "administrators");
    }
    OUT("</tbody></table></div>");
    if (!json_array_size(json_object_get(d, "pages")))
        OUT("<p>No pages yet.</p>");
    OUT("<h2>New page</h2><form id=\"new-page-form\" class=\"stacked\" method=\"get\" "
        "action=\"/admin/pages\">"
        "<label for=\"new-page-id\">Id (its address: /pages/ID)</label><input type=\"text\" "
        "id=\"new-page-id\" "
        "name=\"id\" required maxlength=\"80\" pattern=\"[A-Za-z0-9_\\-][A-Za-z0-9._\\-]*\"><p><button "
        "type=\"submit\">Write it</button></p></form>");
    publish_form(r);
    pt_portal_render_end(r);
    json_decref(d);
}

static void page_form(struct pt_portal_req *r, const char *id, const json_t *page,
                      const struct pt_errors *errs, bool exists, bool from_file)
{
    char title[160];
    snprintf(title, sizeof(title), "Page %s", id);
    begin_admin(r, title);
    OUT("<h1>Page <code>");
    esc(r, id);
    OUT("</code></h1>");
    if (errs)
        errors(r, errs);
    if (from_file)
        OUT("<p class=\"error\" role=\"alert\">This page is declared in the configuration file: change it "
            "there.</p>");
    if (exists) {
        OUT("<p><a href=\"/pages/");
        esc(r, id);
        OUT("?preview=1\">Preview the draft of this page</a></p>");
    }
    char groups[512];
    json_t *mo = json_object_get(page, "menuOrder");
    char order[32] = "";
    if (json_is_integer(mo))
        snprintf(order, sizeof(order), "%lld", (long long)json_integer_value(mo));
    else if (json_is_string(mo))
        snprintf(order, sizeof(order), "%s", json_string_value(mo));
    const char *md = json_string_value(json_object_get(page, "markdown"));
    if (!md)
        md = sget(page, "html"); /* Markdown keeps HTML: it goes through the same allow-list */
    OUT("<div class=\"editor\"><form id=\"page-form\" class=\"stacked\" method=\"post\" "
        "action=\"/admin/pages/");
    esc(r, id);
    OUT("\">");
    pt_portal_render_csrf(r);
    text_input(r, "page-title", "title", "Title", sget(page, "title"), 200);
    OUT("<label for=\"page-markdown\">Text (Markdown)</label><textarea id=\"page-markdown\" "
        "name=\"markdown\" "
        "rows=\"18\" data-preview=\"page-preview\">");
    esc(r, md);
    OUT("</textarea>\n");
    text_input(r, "page-groups", "groups", "Seen by (group ids, comma separated; empty: everyone)",
               groups_text(json_object_get(page, "groups"), groups, sizeof(groups)), 500);
    text_input(r, "page-menu-order", "menuOrder", "Place in the menu (a number; empty: not in the menu)",
               order, 8);
    OUT("<p><button type=\"submit\"%s>Save the draft</button></p></form>", from_file ? " disabled" : "");
    OUT("<section class=\"preview-pane\" aria-labelledby=\"preview-title\"><h2 "
        "id=\"preview-title\">Preview</h2>"
        "<div id=\"page-preview\" class=\"markdown page\" aria-live=\"polite\">");
    char *html = pt_portal_content_markdown(md);
    if (html)
        evbuffer_add(r->out, html, strlen(html));
    free(html);
    OUT("</div></section></div>");
    if (exists && !from_file) {
        OUT("<form id=\"page-delete-form\" method=\"post\" action=\"/admin/pages/");
        esc(r, id);
        OUT("/delete\">");
        pt_portal_render_csrf(r);
        OUT("<p><button type=\"submit\" class=\"danger\">Delete this page from the "
            "draft</button></p></form>");
    }
    publish_form(r);
    OUT("<script src=\"");
    esc(r, pt_portal_assets_url("editor.js"));
    OUT("\" defer></script>");
    pt_portal_render_end(r);
}

/* The page the form sent (a new object). */
static json_t *page_from_form(struct pt_portal_req *r, const char *id)
{
    json_t *groups = json_array();
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", field(r, "groups"));
    for (char *save = NULL, *g = strtok_r(buf, ",", &save); g; g = strtok_r(NULL, ",", &save)) {
        while (*g == ' ')
            g++;
        size_t n = strlen(g);
        while (n && g[n - 1] == ' ')
            g[--n] = 0;
        if (n && json_array_size(groups) < 100)
            json_array_append_new(groups, json_string(g));
    }
    json_t *p = json_pack("{s:s, s:s, s:s, s:o}", "id", id, "title", field(r, "title"), "markdown",
                          field(r, "markdown"), "groups", groups);
    const char *mo = field(r, "menuOrder");
    char *end;
    long long v = strtoll(mo, &end, 10);
    if (!*mo)
        json_object_set_new(p, "menuOrder", json_null());
    else if (!*end)
        json_object_set_new(p, "menuOrder", json_integer(v));
    else
        json_object_set_new(p, "menuOrder", json_string(mo)); /* refused by the check, shown again */
    return p;
}

void pt_portal_admin_page(struct pt_portal_req *r, const char *id, const char *a2)
{
    (void)a2;
    if (r->method == EVHTTP_REQ_POST ? !admin_post(r) : !admin_only(r, false))
        return;
    if (!pt_content_id_ok(id)) {
        pt_portal_render_not_found(r);
        return;
    }
    json_t *old = NULL;
    bool exists = pt_store_get(store(), PT_CONTENT_PAGE_KIND, "", id, &old, NULL);
    bool from_file = exists && pt_content_from_file(store(), PT_CONTENT_PAGE_KIND, id);
    if (r->method != EVHTTP_REQ_POST) {
        if (!old)
            old = json_pack("{s:s, s:s, s:[], s:n}", "id", id, "title", id, "groups", "menuOrder");
        page_form(r, id, old, NULL, exists, from_file);
        json_decref(old);
        return;
    }
    json_t *page = page_from_form(r, id);
    struct pt_errors errs = {0};
    struct pt_pool *pool = pt_pool_new(8192);
    struct pt_node *n = page ? pt_node_from_json(pool, page, NULL, 0) : NULL;
    if (from_file)
        pt_node_errors_add(&errs, "This page is declared in the configuration file: change it there.");
    else if (!exists && pt_store_count(store(), PT_CONTENT_PAGE_KIND, NULL) >= PT_CONTENT_PAGES_MAX)
        pt_node_errors_add(&errs, "The portal has as many pages as it keeps (%d).", PT_CONTENT_PAGES_MAX);
    else if (n && pt_content_check_page(n, id, &errs)) {
        json_t *clean = pt_content_page_json(n, id);
        bool ok = pt_store_begin(store()) && finish(clean && pt_content_put_page(store(), clean, "api"));
        json_decref(clean);
        if (ok) {
            char path[128];
            snprintf(path, sizeof(path), "/admin/pages/%s", id);
            pt_info("portal: administrator %s saved page %s (draft)", r->user->id, id);
            pt_portal_req_redirect(r, path, "Saved to the draft. Publish to show it to visitors.");
        } else {
            pt_node_errors_add(&errs, "The store could not save the page.");
        }
    }
    if (errs.n) {
        r->status = 400;
        page_form(r, id, page, &errs, exists, from_file);
    }
    pt_node_errors_clear(&errs);
    pt_pool_free(pool);
    json_decref(page);
    json_decref(old);
}

void pt_portal_admin_page_delete(struct pt_portal_req *r, const char *id, const char *a2)
{
    (void)a2;
    if (!admin_post(r))
        return;
    if (!pt_content_id_ok(id) || !pt_store_get(store(), PT_CONTENT_PAGE_KIND, "", id, NULL, NULL)) {
        pt_portal_render_not_found(r);
        return;
    }
    if (pt_content_from_file(store(), PT_CONTENT_PAGE_KIND, id)) {
        pt_portal_req_redirect(r, "/admin/pages",
                               "This page is declared in the configuration file: change it there.");
        return;
    }
    if (!(pt_store_begin(store()) && finish(pt_store_delete(store(), PT_CONTENT_PAGE_KIND, "", id)))) {
        pt_portal_req_redirect(r, "/admin/pages", "The store could not delete the page.");
        return;
    }
    pt_info("portal: administrator %s deleted page %s (draft)", r->user->id, id);
    pt_portal_req_redirect(r, "/admin/pages", "Deleted from the draft. Publish to take it off the portal.");
}

/* POST /api/preview {markdown} -> {html}: the editor's live preview. */
void pt_portal_admin_preview(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1;
    (void)a2;
    if (!admin_only(r, true) || !pt_portal_req_check_csrf(r))
        return;
    struct evbuffer *in = evhttp_request_get_input_buffer(r->r);
    size_t len = evbuffer_get_length(in);
    json_error_t je;
    json_t *body = len ? json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &je) : NULL;
    const char *md = json_string_value(json_object_get(body, "markdown"));
    if (!md) {
        pt_portal_req_json_error(r, 400, "InvalidRequestBody", "send {\"markdown\": \"...\"}");
    } else if (strlen(md) > PT_CONTENT_TEXT_MAX) {
        pt_portal_req_json_error(r, 413, "PayloadTooLarge", "the text is longer than %d bytes",
                                 PT_CONTENT_TEXT_MAX);
    } else {
        char *html = pt_portal_content_markdown(md);
        pt_portal_req_json(r, 200, json_pack("{s:s}", "html", html ? html : ""));
        free(html);
    }
    json_decref(body);
}

/* ------------------------------------------------------------ publishing */

void pt_portal_admin_publish(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1;
    (void)a2;
    if (!admin_post(r))
        return;
    char comment[501];
    snprintf(comment, sizeof(comment), "%s", field(r, "comment"));
    int64_t n = 0;
    bool ok = pt_store_begin(store()) && finish((n = pt_content_publish(store(), comment, r->user->id)) > 0);
    if (!ok) {
        pt_portal_req_redirect(r, "/admin/revisions", "The store could not publish the draft.");
        return;
    }
    pt_info("portal: administrator %s published revision %lld", r->user->id, (long long)n);
    char flash[80];
    snprintf(flash, sizeof(flash), "Published revision %lld: visitors see it now.", (long long)n);
    pt_portal_req_redirect(r, "/admin/revisions", flash);
}

void pt_portal_admin_revisions(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1;
    (void)a2;
    if (!admin_only(r, false))
        return;
    json_t *revs = pt_content_revisions(store());
    int64_t latest = pt_content_latest(store());
    begin_admin(r, "Revisions");
    OUT("<h1>Revisions</h1>");
    publish_form(r);
    OUT("<div class=\"table-wrap\"><table id=\"revisions\"><thead><tr><th scope=\"col\">Revision</th><th "
        "scope=\"col\">Published</th><th scope=\"col\">By</th><th scope=\"col\">Comment</th><th "
        "scope=\"col\"></th></tr></thead><tbody>");
    size_t i;
    json_t *v;
    json_array_foreach(revs, i, v)
    {
        long long n = (long long)json_integer_value(json_object_get(v, "id"));
        OUT("<tr data-revision=\"%lld\"><td>%lld%s</td><td>", n, n, n == latest ? " (live)" : "");
        esc(r, sget(v, "created"));
        OUT("</td><td>");
        esc(r, sget(v, "author"));
        OUT("</td><td>");
        esc(r, sget(v, "comment"));
        OUT("</td><td><form class=\"restore-form\" method=\"post\" action=\"/admin/revisions/%lld/restore\">",
            n);
        pt_portal_render_csrf(r);
        OUT("<button type=\"submit\">Restore</button></form></td></tr>");
    }
    OUT("</tbody></table></div>");
    if (!json_array_size(revs))
        OUT("<p>Nothing was published yet.</p>");
    pt_portal_render_end(r);
    json_decref(revs);
}

void pt_portal_admin_restore(struct pt_portal_req *r, const char *n_text, const char *a2)
{
    (void)a2;
    if (!admin_post(r))
        return;
    char *end;
    long long n = strtoll(n_text ? n_text : "", &end, 10);
    json_t *rev = n > 0 && !*end ? pt_content_revision(store(), n) : NULL;
    if (!rev) {
        pt_portal_render_not_found(r);
        return;
    }
    json_decref(rev);
    int64_t k = 0;
    bool ok = pt_store_begin(store()) && finish((k = pt_content_restore(store(), n, r->user->id)) > 0);
    if (!ok) {
        pt_portal_req_redirect(r, "/admin/revisions", "The store could not restore the revision.");
        return;
    }
    pt_info("portal: administrator %s restored revision %lld as %lld", r->user->id, n, (long long)k);
    char flash[120];
    snprintf(flash, sizeof(flash), "Revision %lld is published again (as revision %lld) and is the draft.", n,
             (long long)k);
    pt_portal_req_redirect(r, "/admin/revisions", flash);
}
