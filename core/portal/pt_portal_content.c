/*
 * pt_portal_content -- the portal's content (site settings, pages).
 *
 * PLACEHOLDER (H-A) so that the server builds: the content is the file's
 * portal.site and portal.pages with the defaults filled in; there are no
 * revisions, no media and no Markdown renderer yet (text is escaped into
 * paragraphs).  H-C's version (content in the store, cmark and the HTML
 * allow-list) replaces this file.
 */
#include "portal/pt_portal_int.h"

#include <stdlib.h>
#include <string.h>

static json_t *cached;                  /* {"site", "pages"} */
static const struct pt_conf *cached_of; /* the file it was built from */

static json_t *default_site(void)
{
    return json_pack("{s:s, s:n, s:n, s:{s:s, s:s, s:s, s:s}, s:{s:s, s:s}, s:s, s:s, s:s, s:b, s:b}",
                     "title", "Portico developer portal", "logo", "favicon", "colors", "primary", "#1f5fbf",
                     "background", "#ffffff", "text", "#1b1f24", "link", "#1f5fbf", "fonts", "body",
                     "system-ui, sans-serif", "heading", "system-ui, sans-serif", "customCss", "", "home",
                     "# Welcome\n\nBrowse the [APIs](/apis) and [products](/products).", "terms", "",
                     "signupEnabled", 1, "requireSignin", 0);
}

const json_t *pt_portal_content_get(const struct pt_portal_req *r)
{
    (void)r;
    const struct pt_conf *f = pt_portal_req_srv.file;
    if (cached && cached_of == f)
        return cached;
    json_decref(cached);
    json_t *site = default_site();
    const json_t *fs = f ? f->portal.site : NULL;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)fs, k, v)
    {
        json_t *d = json_object_get(site, k);
        if (json_is_object(d) && json_is_object(v))
            json_object_update(d, v);
        else
            json_object_set(site, k, v);
    }
    json_t *pages = f && json_is_array(f->portal.pages) ? json_deep_copy(f->portal.pages) : json_array();
    cached = json_pack("{s:o, s:o}", "site", site, "pages", pages);
    cached_of = f;
    return cached;
}

char *pt_portal_content_markdown(const char *md)
{
    /* escaped text, one <p> per blank-line separated block */
    size_t n = md ? strlen(md) : 0;
    char *out = malloc(n * 6 + 16), *o = out;
    if (!out)
        return NULL;
    o += sprintf(o, "<p>");
    for (size_t i = 0; i < n; i++) {
        char c = md[i];
        if (c == '\n' && i + 1 < n && md[i + 1] == '\n') {
            while (i + 1 < n && md[i + 1] == '\n')
                i++;
            o += sprintf(o, "</p><p>");
        } else if (c == '<')
            o += sprintf(o, "&lt;");
        else if (c == '>')
            o += sprintf(o, "&gt;");
        else if (c == '&')
            o += sprintf(o, "&amp;");
        else if (c == '"')
            o += sprintf(o, "&quot;");
        else
            *o++ = c;
    }
    sprintf(o, "</p>");
    return out;
}
