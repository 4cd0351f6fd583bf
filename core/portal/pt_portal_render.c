/*
 * pt_portal_render -- the HTML around every page: escaping, the layout (head
 * with the shipped stylesheet and the site's theme, the header with the
 * site's title, logo, menu and the visitor's links, the flash message), the
 * CSRF field of forms, and /theme.css built from the site's colors, fonts and
 * custom CSS.  No inline style or script anywhere: the CSP forbids them.
 */
#include "portal/pt_portal_int.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void pt_portal_render_esc(struct evbuffer *out, const char *s)
{
    if (!s)
        return;
    const char *run = s;
    for (const char *p = s;; p++) {
        const char *rep = NULL;
        switch (*p) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        case '\0':
            break;
        default:
            continue;
        }
        if (p > run)
            evbuffer_add(out, run, (size_t)(p - run));
        if (!*p)
            return;
        evbuffer_add(out, rep, strlen(rep));
        run = p + 1;
    }
}

void pt_portal_render_markdown(struct evbuffer *out, const char *md)
{
    char *html = pt_portal_content_markdown(md ? md : "");
    if (html)
        evbuffer_add(out, html, strlen(html));
    free(html);
}

bool pt_portal_render_sees(const struct pt_portal_req *r, const json_t *groups)
{
    if (!json_is_array(groups) || json_array_size(groups) == 0)
        return true;
    if (r->user && r->user->admin)
        return true;
    size_t i;
    json_t *g;
    json_array_foreach(groups, i, g)
    {
        const char *id = json_string_value(g);
        if (!id)
            continue;
        if (!r->user) {
            if (!strcmp(id, "guests"))
                return true;
            continue;
        }
        if (!strcmp(id, "developers"))
            return true;
        size_t j;
        json_t *ug;
        json_array_foreach(r->user->groups, j, ug)
        {
            if (json_string_value(ug) && !strcmp(json_string_value(ug), id))
                return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------ theme */

static const json_t *site_of(const struct pt_portal_req *r)
{
    return json_object_get(pt_portal_content_get(r), "site");
}

static const char *site_str(const json_t *site, const char *key)
{
    const char *s = json_string_value(json_object_get(site, key));
    return s ? s : "";
}

/* A value that stays inside its declaration: colors and font lists need no more than these characters. */
static bool css_value_ok(const char *v)
{
    if (!*v || strlen(v) > 200)
        return false;
    for (const char *p = v; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789#(),.%- '\"", *p))
            return false;
    return true;
}

/* 64-bit FNV-1a: a version for the theme's URL, not a security hash. */
static uint64_t fnv(uint64_t h, const char *s)
{
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (h ^ 0xff) * 1099511628211ULL;
}

const char *pt_portal_render_theme_version(const struct pt_portal_req *r)
{
    static char v[24];
    const json_t *site = site_of(r);
    char *c = json_dumps(json_object_get(site, "colors"), JSON_SORT_KEYS | JSON_COMPACT);
    char *f = json_dumps(json_object_get(site, "fonts"), JSON_SORT_KEYS | JSON_COMPACT);
    uint64_t h = fnv(fnv(fnv(1469598103934665603ULL, c), f), site_str(site, "customCss"));
    free(c);
    free(f);
    snprintf(v, sizeof(v), "%016llx", (unsigned long long)h);
    return v;
}

void pt_portal_render_theme_css(struct pt_portal_req *r)
{
    const json_t *site = site_of(r);
    static const char *const colors[][2] = {{"primary", "--pt-primary"},
                                            {"background", "--pt-background"},
                                            {"text", "--pt-text"},
                                            {"link", "--pt-link"}};
    static const char *const fonts[][2] = {{"body", "--pt-font-body"}, {"heading", "--pt-font-heading"}};
    evbuffer_add_printf(r->out, "/* the site's theme (portal settings) */\n:root {\n");
    for (size_t i = 0; i < PT_ARRAY_LEN(colors); i++) {
        const char *v = json_string_value(json_object_get(json_object_get(site, "colors"), colors[i][0]));
        if (v && css_value_ok(v))
            evbuffer_add_printf(r->out, "  %s: %s;\n", colors[i][1], v);
    }
    for (size_t i = 0; i < PT_ARRAY_LEN(fonts); i++) {
        const char *v = json_string_value(json_object_get(json_object_get(site, "fonts"), fonts[i][0]));
        if (v && css_value_ok(v))
            evbuffer_add_printf(r->out, "  %s: %s;\n", fonts[i][1], v);
    }
    evbuffer_add_printf(r->out, "}\n");
    const char *custom = site_str(site, "customCss");
    if (*custom) {
        /* served as text/css (nosniff) from its own URL: whatever it holds, it is never HTML or script */
        evbuffer_add_printf(r->out, "/* custom CSS */\n");
        evbuffer_add(r->out, custom, strlen(custom));
        evbuffer_add(r->out, "\n", 1);
    }
    r->content_type = "text/css; charset=utf-8";
    const char *want = pt_portal_req_query(r, "v");
    if (r->preview) /* an administrator's draft: nobody else's, and it changes as they edit */
        pt_portal_req_header(r, "Cache-Control", "private, no-store");
    else if (want && !strcmp(want, pt_portal_render_theme_version(r)))
        pt_portal_req_header(r, "Cache-Control", "public, max-age=31536000, immutable");
    else
        pt_portal_req_header(r, "Cache-Control", "no-cache");
}

/* ----------------------------------------------------------------- layout */

static void render_template(struct pt_portal_req *r, const char *t, const json_t *site);

void pt_portal_render_csrf(struct pt_portal_req *r)
{
    evbuffer_add_printf(r->out, "<input type=\"hidden\" name=\"csrf\" value=\"");
    pt_portal_render_esc(r->out, r->csrf);
    evbuffer_add_printf(r->out, "\">");
}

static int by_menu_order(const void *a, const void *b)
{
    const json_t *pa = *(json_t *const *)a, *pb = *(json_t *const *)b;
    json_int_t x = json_integer_value(json_object_get(pa, "menuOrder"));
    json_int_t y = json_integer_value(json_object_get(pb, "menuOrder"));
    return x < y ? -1 : x > y;
}

/* The provider's pages in the menu: those with a menuOrder the visitor may see, in that order. */
static void render_menu_pages(struct pt_portal_req *r, const json_t *pages)
{
    json_t *list[64];
    size_t n = 0, i;
    json_t *p;
    json_array_foreach(pages, i, p)
    {
        if (n == PT_ARRAY_LEN(list))
            break;
        if (json_is_integer(json_object_get(p, "menuOrder")) && json_string_value(json_object_get(p, "id")) &&
            pt_portal_render_sees(r, json_object_get(p, "groups")))
            list[n++] = p;
    }
    qsort(list, n, sizeof(list[0]), by_menu_order);
    for (i = 0; i < n; i++) {
        const char *id = json_string_value(json_object_get(list[i], "id"));
        const char *title = json_string_value(json_object_get(list[i], "title"));
        evbuffer_add_printf(r->out, "<li><a href=\"/pages/");
        pt_portal_render_esc(r->out, id);
        evbuffer_add_printf(r->out, "\">");
        pt_portal_render_esc(r->out, title ? title : id);
        evbuffer_add_printf(r->out, "</a></li>");
    }
}

static void render_user_links(struct pt_portal_req *r, const json_t *site)
{
    struct evbuffer *o = r->out;
    evbuffer_add_printf(o, "<nav id=\"user-links\" aria-label=\"Account\"><ul>");
    if (!r->user) {
        evbuffer_add_printf(o, "<li><a id=\"signin-link\" href=\"/signin\">Sign in</a></li>");
        if (json_is_true(json_object_get(site, "signupEnabled")))
            evbuffer_add_printf(o, "<li><a id=\"signup-link\" href=\"/signup\">Sign up</a></li>");
    } else {
        evbuffer_add_printf(o, "<li><a id=\"profile-link\" href=\"/profile\">");
        pt_portal_render_esc(o, r->user->first_name[0] ? r->user->first_name : "Profile");
        evbuffer_add_printf(
            o, "</a></li><li><a id=\"subscriptions-link\" href=\"/subscriptions\">Subscriptions</a>"
               "</li><li><a id=\"usage-link\" href=\"/usage\">Usage</a></li>");
        if (r->user->admin)
            evbuffer_add_printf(o, "<li><a id=\"admin-link\" href=\"/admin\">Administration</a></li>");
        evbuffer_add_printf(o, "<li><form id=\"signout-form\" method=\"post\" action=\"/signout\">");
        pt_portal_render_csrf(r);
        evbuffer_add_printf(o, "<button type=\"submit\" class=\"link\">Sign out</button></form></li>");
    }
    evbuffer_add_printf(o, "</ul></nav>");
}

void pt_portal_render_begin(struct pt_portal_req *r, const char *title)
{
    const json_t *content = pt_portal_content_get(r);
    const json_t *site = json_object_get(content, "site");
    const char *site_title = site_str(site, "title");
    struct evbuffer *o = r->out;
    evbuffer_add_printf(o, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>");
    if (title && *title) {
        pt_portal_render_esc(o, title);
        evbuffer_add_printf(o, " · ");
    }
    pt_portal_render_esc(o, site_title);
    evbuffer_add_printf(o, "</title><link rel=\"stylesheet\" href=\"");
    pt_portal_render_esc(o, pt_portal_assets_url("portal.css"));
    evbuffer_add_printf(o, "\"><link rel=\"stylesheet\" href=\"/theme.css?v=%s%s\">",
                        pt_portal_render_theme_version(r), r->preview ? "&amp;preview=1" : "");
    const char *favicon = json_string_value(json_object_get(site, "favicon"));
    if (favicon) {
        evbuffer_add_printf(o, "<link rel=\"icon\" href=\"/media/");
        pt_portal_render_esc(o, favicon);
        evbuffer_add_printf(o, "\">");
    }
    evbuffer_add_printf(o, "<script src=\"");
    pt_portal_render_esc(o, pt_portal_assets_url("portal.js"));
    evbuffer_add_printf(o, "\" defer></script></head>\n<body><a class=\"skip-link\" href=\"#main\">Skip to "
                           "content</a><header class=\"site-header\"><a id=\"site-title\" href=\"/\">");
    const char *logo = json_string_value(json_object_get(site, "logo"));
    if (logo) {
        evbuffer_add_printf(o, "<img class=\"logo\" alt=\"\" src=\"/media/");
        pt_portal_render_esc(o, logo);
        evbuffer_add_printf(o, "\">");
    }
    evbuffer_add_printf(o, "<span>");
    pt_portal_render_esc(o, site_title);
    evbuffer_add_printf(o,
                        "</span></a><nav id=\"menu\" aria-label=\"Main\"><ul><li><a href=\"/apis\">APIs</a>"
                        "</li><li><a href=\"/products\">Products</a></li>");
    render_menu_pages(r, json_object_get(content, "pages"));
    evbuffer_add_printf(o, "</ul></nav>");
    render_user_links(r, site);
    evbuffer_add_printf(o, "</header>\n");
    const char *banner = pt_portal_assets_template("banner.html");
    if (banner && *banner)
        render_template(r, banner, site);
    evbuffer_add_printf(o, "<main id=\"main\">");
    if (r->preview)
        evbuffer_add_printf(o,
                            "<p class=\"preview-note\" role=\"note\">Preview of the draft: visitors do not "
                            "see these changes until they are published.</p>");
    char flash[400];
    if (pt_portal_req_take_flash(r, flash, sizeof(flash))) {
        evbuffer_add_printf(o, "<p id=\"flash\" role=\"status\">");
        pt_portal_render_esc(o, flash);
        evbuffer_add_printf(o, "</p>");
    }
}

/* Writes a provider's or the shipped template with its {{variables}}: siteTitle (escaped), terms (a link
   to the terms when the site has some), year.  Templates come from the installation or themeDir, which
   the provider controls like the binary itself: they are written as they are otherwise. */
static void render_template(struct pt_portal_req *r, const char *t, const json_t *site)
{
    const char *run = t;
    for (const char *p = t; (p = strstr(p, "{{"));) {
        const char *e = strstr(p + 2, "}}");
        if (!e || e - p > 40)
            break;
        evbuffer_add(r->out, run, (size_t)(p - run));
        char var[48];
        snprintf(var, sizeof(var), "%.*s", (int)(e - p - 2), p + 2);
        if (!strcmp(var, "siteTitle"))
            pt_portal_render_esc(r->out, site_str(site, "title"));
        else if (!strcmp(var, "terms")) {
            if (*site_str(site, "terms"))
                evbuffer_add_printf(r->out, " · <a href=\"/terms\">Terms of use</a>");
        } else if (!strcmp(var, "year")) {
            time_t now = time(NULL);
            struct tm tm;
            gmtime_r(&now, &tm);
            evbuffer_add_printf(r->out, "%d", tm.tm_year + 1900);
        } else
            evbuffer_add(r->out, p, (size_t)(e + 2 - p)); /* not ours: as written */
        p = run = e + 2;
    }
    evbuffer_add(r->out, run, strlen(run));
}

void pt_portal_render_end(struct pt_portal_req *r)
{
    const json_t *site = site_of(r);
    evbuffer_add_printf(r->out, "</main>\n<footer class=\"site-footer\">");
    const char *t = pt_portal_assets_template("footer.html");
    render_template(r, t ? t : "<p>{{siteTitle}}{{terms}}</p>", site);
    evbuffer_add_printf(r->out, "</footer></body></html>\n");
}

void pt_portal_render_not_found(struct pt_portal_req *r)
{
    evbuffer_drain(r->out, evbuffer_get_length(r->out));
    r->status = 404;
    r->content_type = NULL;
    pt_portal_render_begin(r, "Not found");
    evbuffer_add_printf(r->out, "<h1>Not found</h1><p>There is nothing here, or you may not see it. "
                                "<a href=\"/\">Go to the home page</a>.</p>");
    pt_portal_render_end(r);
}
