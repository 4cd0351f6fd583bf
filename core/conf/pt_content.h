/*
 * pt_content -- the developer portal's content in the store: the site's
 * settings, the provider's pages, media (logo, favicon, images), published
 * revisions and mail templates.  The management API (/management/portal/...),
 * the portal's administrator pages and the configuration file
 * (portal.site, portal.pages, portal.templates) all write through here, so
 * they share one set of checks.
 *
 * The draft is what administrators edit: the entity "portal-site" (id
 * "site": the keys set, without defaults) and one "portal-page" per page.
 * Publishing copies the draft into a new revision ("portal-revision", ids
 * counting up); guests see the newest revision.  Restoring revision n
 * publishes a copy of it as a new revision and makes it the draft.  Media
 * ("portal-media") and templates ("portal-template", read by
 * http/pt_mail.c) are not revisioned.
 *
 * What the configuration file declares is owned by it (source "config", as
 * for other entities): the API may not change it, and applying the file
 * publishes the file's parts at once (a new revision only when they
 * changed), leaving what administrators edited elsewhere as it was.
 */
#ifndef PT_CONTENT_H
#define PT_CONTENT_H

#include "conf/pt_conf.h"
#include "conf/pt_node.h"
#include "conf/pt_store.h"

#include <jansson.h>

#define PT_CONTENT_SITE_KIND "portal-site"
#define PT_CONTENT_PAGE_KIND "portal-page"
#define PT_CONTENT_MEDIA_KIND "portal-media"
#define PT_CONTENT_REVISION_KIND "portal-revision"
#define PT_CONTENT_TEMPLATE_KIND "portal-template" /* = PT_MAIL_TEMPLATE_KIND */

/* Bounds of what one request or file may hold. */
#define PT_CONTENT_TEXT_MAX (256 * 1024) /* home, terms, a page's markdown or html */
#define PT_CONTENT_CSS_MAX (64 * 1024)   /* customCss */
#define PT_CONTENT_PAGES_MAX 500
#define PT_CONTENT_MEDIA_COUNT_MAX 1000
#define PT_CONTENT_REVISIONS_KEPT 200 /* older revisions are deleted when publishing */

/* ---- shapes and checks ---- */

/* The built-in site: every key with its default (a new object). */
json_t *pt_content_default_site(void);
/* site (a stored or sent site object, partial) over the defaults, colors
   and fonts merged key by key (a new object). */
json_t *pt_content_site_full(const json_t *site);
/* Checks a site (partial allowed: keys absent keep their value), a page
   (id: the id it is stored under, or NULL to take the page's own), a mail
   template, each as a node (the file's, with file:line:column, or one made
   from a JSON body, with paths).  Every problem goes to errs. */
bool pt_content_check_site(const struct pt_node *n, struct pt_errors *errs);
bool pt_content_check_page(const struct pt_node *n, const char *id, struct pt_errors *errs);
bool pt_content_check_template(const struct pt_node *n, const char *id, struct pt_errors *errs);
/* The file's portal.site, portal.pages and portal.templates (pt_conf calls
   it while loading, so `portico -t` and a reload see the errors). */
bool pt_content_check_file(const struct pt_portal_cf *p, struct pt_errors *errs);
/* An id for pages and media: 1-80 of letters, digits, '.', '_', '-', not
   starting with '.'. */
bool pt_content_id_ok(const char *id);
/* The stored form of a checked site or page: the JSON of n with the text
   fields as strings (YAML may have read a title as a number). */
json_t *pt_content_site_json(const struct pt_node *n);
json_t *pt_content_page_json(const struct pt_node *n, const char *id);

/* ---- the draft ---- */

/* {"site": stored site (partial), "pages": [... by menuOrder, then id]}
   (new reference). */
json_t *pt_content_draft(struct pt_store *st);
/* Writes the site (partial, checked) / a page; source "api" or "config".
   No transaction of their own: the caller's. */
bool pt_content_put_site(struct pt_store *st, const json_t *site, const char *source);
bool pt_content_put_page(struct pt_store *st, const json_t *page, const char *source);
/* Is this draft entity declared by the configuration file? */
bool pt_content_from_file(struct pt_store *st, const char *kind, const char *id);

/* ---- revisions ---- */

/* Publishes the draft as a new revision; its number (>= 1), or 0 on a
   store error.  author: who (a user id, "management", "config"). */
int64_t pt_content_publish(struct pt_store *st, const char *comment, const char *author);
/* The newest revision's number (0 when nothing was published). */
int64_t pt_content_latest(struct pt_store *st);
/* Revision n ({id, comment, author, created, site, pages}), or NULL. */
json_t *pt_content_revision(struct pt_store *st, int64_t n);
/* The revisions, newest first, without their content. */
json_t *pt_content_revisions(struct pt_store *st);
/* Publishes a copy of revision n and sets the draft to it; the new
   revision's number, 0 when n does not exist or the store failed. */
int64_t pt_content_restore(struct pt_store *st, int64_t n, const char *author);

/* ---- media ---- */

/* The content type the bytes are (png, jpeg, gif, webp, ico by their magic
   bytes), or NULL: anything else, SVG included, is not accepted. */
const char *pt_content_media_type(const unsigned char *b, size_t n);
/* Stores bytes (already checked) as media id. */
bool pt_content_media_put(struct pt_store *st, const char *id, const char *type, const unsigned char *b,
                          size_t n, char etag[24]);
/* The bytes of media id (malloc'd) and its type; false when absent. */
bool pt_content_media_get(struct pt_store *st, const char *id, char type[64], unsigned char **b, size_t *n,
                          char etag[24]);
/* [{id, contentType, size, created}]. */
json_t *pt_content_media_list(struct pt_store *st);

/* ---- the file and the export ---- */

/* Applies a document's portal.site, portal.pages and portal.templates
   (inside pt_model_apply's transaction, before its sweep): source "config"
   for the file, whose parts are then published when they changed. */
bool pt_content_apply(struct pt_store *st, const struct pt_conf *f, const char *source,
                      struct pt_errors *errs);
/* {"site", "pages", "templates"} of the draft for `export`, NULL when there
   is no content; `only` ("api") leaves out what the file declares. */
json_t *pt_content_export(struct pt_store *st, const char *only);

#endif
