/*
 * pt_portal_int -- what the portal's files share; the rest of the core sees
 * pt_portal.h only.
 *
 *   pt_portal.c          the server: listener (HTTP or HTTPS), route table,
 *                        dispatch (calls into every file below)
 *   pt_portal_req.c      a request: form and query fields, CSRF check,
 *                        redirects, JSON answers, security headers
 *   pt_portal_browse.c   home, APIs, an API's reference, products, downloads,
 *                        provider pages; visibility
 *   pt_portal_account.c  sign-up, confirmation, sign-in and out, password
 *                        reset and change, profile, closing the account,
 *                        invitations; Argon2id; throttling
 *   pt_portal_session.c  sessions and CSRF tokens
 *   pt_portal_subs.c     subscribing, keys, renaming, cancelling; the
 *                        console relay; usage charts
 *   pt_portal_chart.c    server-rendered SVG charts
 *   pt_portal_admin.c    the administrator's pages: site settings, pages,
 *                        media, preview, publish and roll back, approvals,
 *                        invitations
 *   pt_portal_content.c  the portal's content: site, pages, media,
 *                        revisions, mail templates (store access), the
 *                        published revision
 *   pt_portal_render.c   HTML: escaping, the layout (head, theme, menu,
 *                        footer), forms, messages
 *   pt_portal_assets.c   static assets: content hashes, gzip, caching
 *                        headers, the provider's theme folder
 */
#ifndef PT_PORTAL_INT_H
#define PT_PORTAL_INT_H

#include "base/pt.h"
#include "conf/pt_conf.h"
#include "conf/pt_store.h"
#include "mgmt/pt_mgmt.h"
#include "portal/pt_portal.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* ------------------------------------------------------------- the server */

/* What is being served (pt_portal.c). */
struct pt_portal {
    struct event_base *base;
    const struct pt_conf *file; /* the file's settings: file->portal */
    struct pt_store *store;
    const struct pt_mgmt_hooks *hooks; /* hooks->publish after a store write */
};
extern struct pt_portal pt_portal_req_srv;

/* The signed-in user, as the session found it. */
struct pt_portal_user {
    char id[128];
    char email[256];
    char first_name[128];
    char last_name[128];
    bool admin;     /* in the group administrators */
    json_t *groups; /* array of group ids (always holds "developers") */
};

/* One request. */
struct pt_portal_req {
    struct evhttp_request *r;
    enum evhttp_cmd_type method;
    char *path;                  /* decoded path, no query ("/apis/echo") */
    struct evkeyvalq query;      /* the query's fields */
    json_t *form;                /* a POST's urlencoded fields (object of strings), else NULL */
    struct pt_portal_user *user; /* NULL for a guest */
    char session_id[80];         /* "" when there is no session */
    char csrf[80];               /* the session's CSRF token ("" without a session) */
    bool preview;                /* an administrator previewing the draft content */
    char peer[64];               /* the client's address (text) */
    struct evbuffer *out;        /* the body being written */
    int status;                  /* 200 unless set */
    const char *content_type;    /* "text/html; charset=utf-8" unless set */
    bool deferred;               /* the handler answers later itself: the dispatcher sends nothing */
};

/* A route: method(s) and path pattern ("/apis/{}" matches one segment,
   a trailing "/..." matches the rest); handlers write r->out. */
typedef void (*pt_portal_handler)(struct pt_portal_req *r, const char *arg1, const char *arg2);

/* Form field (POST) or NULL. */
const char *pt_portal_req_form(struct pt_portal_req *r, const char *name);
/* Query field or NULL. */
const char *pt_portal_req_query(struct pt_portal_req *r, const char *name);
/* A POST's CSRF check: the form's "csrf" field (or the X-CSRF-Token header)
   against the session's token.  false after answering 403. */
bool pt_portal_req_check_csrf(struct pt_portal_req *r);
/* Redirects (303) to a path on the portal, with an optional flash message
   shown on the next page. */
void pt_portal_req_redirect(struct pt_portal_req *r, const char *path, const char *flash);
/* Answers a JSON body (taken) with a status. */
void pt_portal_req_json(struct pt_portal_req *r, int status, json_t *body);
/* Answers {"error": {"code", "message"}}. */
void pt_portal_req_json_error(struct pt_portal_req *r, int status, const char *code, const char *fmt, ...)
    PT_PRINTF(4, 5);
/* The 404 page (also for what the visitor may not see). */
void pt_portal_render_not_found(struct pt_portal_req *r);
/* The portal's own absolute URL (portal.publicUrl, else from listen), no
   trailing slash: for links in mails. */
const char *pt_portal_req_base_url(void);

/* --------------------------------------------------------------- render */

/* Escapes s for HTML text and attribute values. */
void pt_portal_render_esc(struct evbuffer *out, const char *s);
/* The layout around a page: <head> with the theme, the header with the
   site's title, logo and menu (pages the visitor may see), the user's links;
   then the flash message.  `title` is the page's own title. */
void pt_portal_render_begin(struct pt_portal_req *r, const char *title);
void pt_portal_render_end(struct pt_portal_req *r);
/* <input type="hidden" name="csrf" value="..."> for the session. */
void pt_portal_render_csrf(struct pt_portal_req *r);

/* ---------------------------------------------------------- content */

/* The content being served: the published revision, or the draft when
   r->preview.  {"site": {...}, "pages": [...]} with defaults filled in;
   borrowed, valid for the request. */
const json_t *pt_portal_content_get(const struct pt_portal_req *r);
/* Sanitized HTML for a Markdown text (cmark, then the allow-list). */
char *pt_portal_content_markdown(const char *md);

/* H-C: the published revision's number being served (-1 for the draft). */
int64_t pt_portal_content_revision(const struct pt_portal_req *r);
/* A page's body as safe HTML: its html through the allow-list, or its
   markdown rendered.  malloc'd (NULL when out of memory). */
char *pt_portal_content_page_html(const json_t *page);
/* Answers GET /media/{id}: the bytes with their type, ETag (304), caching;
   404 when there is no such media. */
void pt_portal_content_serve_media(struct pt_portal_req *r, const char *id);
/* Drops the cached content (at stop). */
void pt_portal_content_free(void);

/* H-C: the administrator's pages (pt_portal_admin.c): /admin, /admin/site,
   /admin/media, /admin/pages[/{id}[/delete]], /api/preview, /admin/publish,
   /admin/revisions[/{n}/restore]. */
void pt_portal_admin_home(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_admin_site(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_admin_media(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_admin_pages(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_admin_page(struct pt_portal_req *r, const char *id, const char *a2);
void pt_portal_admin_page_delete(struct pt_portal_req *r, const char *id, const char *a2);
void pt_portal_admin_preview(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_admin_publish(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_admin_revisions(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_admin_restore(struct pt_portal_req *r, const char *n, const char *a2);
/* One part of a multipart/form-data body (its name and file name, cut to
   fit; its bytes point into the body). */
struct pt_portal_part {
    char name[64];
    char filename[128];
    const unsigned char *data;
    size_t len;
};
/* Splits a multipart/form-data body (RFC 7578) into at most max parts; their
   number, or -1 when it is not well-formed (or has more parts). */
int pt_portal_admin_multipart(const unsigned char *body, size_t len, const char *boundary,
                              struct pt_portal_part *parts, int max);

/* ------------------------------------------------------------ sessions */

/* Reads the session cookie: sets r->user, r->session_id, r->csrf (expired,
   unknown or stale sessions are dropped). */
void pt_portal_session_load(struct pt_portal_req *r);
/* A new session for user_id (rotated: the old one, if any, ends); sets the
   cookie. */
bool pt_portal_session_start(struct pt_portal_req *r, const char *user_id);
/* Ends r's session and clears the cookie. */
void pt_portal_session_end(struct pt_portal_req *r);
/* Ends every session of a user (password change or reset, closing). */
void pt_portal_session_end_user(const char *user_id);
/* A guest's session (for the CSRF token of the sign-in and sign-up forms). */
bool pt_portal_session_guest(struct pt_portal_req *r);
/* The session cookie's name: "__Host-portico_session" on HTTPS, else
   "portico_session". */
const char *pt_portal_session_cookie_name(void);
/* Pure pieces (unit tests): 256 random bits as 43 base64url characters
   (ids, CSRF tokens, mail tokens; size >= 44); whether s has that form; the
   SHA-256 of a secret as 64 hex digits (what the store keeps); a comparison
   whose time does not depend on where the strings differ (false for "");
   a cookie's value in a Cookie header. */
#define PT_PORTAL_SESSION_BYTES 32
#define PT_PORTAL_SESSION_CHARS 43
bool pt_portal_session_random(char *out, size_t size);
bool pt_portal_session_random_bytes(unsigned char *out, size_t n);
bool pt_portal_session_well_formed(const char *s);
void pt_portal_session_hash(const char *secret, char out[65]);
bool pt_portal_session_equal(const char *a, const char *b);
bool pt_portal_session_cookie_value(const char *header, const char *name, char *out, size_t size);

/* ------------------------------------------------------------ visibility */

/* May the visitor (r->user or a guest) see product p / API a (from the
   generation's configuration tree as pt_model_entities writes it)? */
bool pt_portal_browse_product_visible(struct pt_portal_req *r, const json_t *product);
bool pt_portal_browse_api_visible(struct pt_portal_req *r, const char *api_id);

/* ------------------------------------------------------------ charts */

struct pt_portal_series {
    const char *name;
    const char *color; /* CSS colour or var(...) */
    const double *y;   /* n values */
};
/* An SVG chart (bars when stacked, else lines) with axes, labels, a <title>
   and <desc> for screen readers, and the same data as a <table> after it. */
void pt_portal_chart_svg(struct evbuffer *out, const char *title, const char *const *x_labels, int n,
                         const struct pt_portal_series *series, int nseries, bool stacked, const char *unit);

/* -------------------------------------- subscriptions (pt_portal_subs.c) */

/* POST /products/{id}/subscribe (name, terms). */
void pt_portal_subs_subscribe(struct pt_portal_req *r, const char *product_id, const char *unused);
/* GET /subscriptions: the user's subscriptions, keys masked. */
void pt_portal_subs_list(struct pt_portal_req *r, const char *a1, const char *a2);
/* POST /subscriptions/{id}/show: the same page with that one's keys shown. */
void pt_portal_subs_show(struct pt_portal_req *r, const char *id, const char *unused);
/* GET /api/subscriptions/{id}/keys (X-CSRF-Token): {primaryKey, secondaryKey}. */
void pt_portal_subs_keys(struct pt_portal_req *r, const char *id, const char *unused);
/* POST /subscriptions/{id}/regenerate (key = primary|secondary), /rename
   (name), /cancel. */
void pt_portal_subs_regenerate(struct pt_portal_req *r, const char *id, const char *unused);
void pt_portal_subs_rename(struct pt_portal_req *r, const char *id, const char *unused);
void pt_portal_subs_cancel(struct pt_portal_req *r, const char *id, const char *unused);
/* GET /admin/subscriptions; POST /admin/subscriptions/{id}/{approve|reject}
   (comment).  Administrators only (others: 404). */
void pt_portal_subs_admin_list(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_subs_admin_decide(struct pt_portal_req *r, const char *id, const char *action);
/* POST /api/console: the relay to the gateway (sets r->deferred and
   answers later, from the event loop). */
void pt_portal_subs_console(struct pt_portal_req *r, const char *a1, const char *a2);
/* GET /api/subscriptions?api=ID: the user's subscriptions that open the API
   (the console's select). */
void pt_portal_subs_api_list(struct pt_portal_req *r, const char *a1, const char *a2);
/* GET /usage?period=&subscription=&product=&api= */
void pt_portal_subs_usage(struct pt_portal_req *r, const char *a1, const char *a2);
/* Is p a path the console may append to the gateway's URL? */
bool pt_portal_subs_path_ok(const char *p);
/* Drops the console calls in flight (pt_portal_stop). */
void pt_portal_subs_stop(void);
/* ------------------------------------------------------------ accounts */

/* Route handlers (pt_portal_account.c); each takes the GET and the POST of
   its path: /signup, /confirm, /signin, /signout (POST), /reset-password,
   /reset-password/confirm, /profile, /profile/password (POST),
   /profile/close (POST), /admin/invite, /invitation. */
void pt_portal_account_signup(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_account_confirm(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_account_signin(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_account_signout(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_account_reset(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_account_reset_confirm(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_account_profile(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_account_password(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_account_close(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_account_invite(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_account_invitation(struct pt_portal_req *r, const char *a1, const char *a2);
/* Pure pieces (unit tests): the password rule (at least 10 characters,
   at most 1024 bytes; *why says what is wrong); an email's rough shape;
   Argon2id hashing (encoded form, size >= 160) and verifying; the sign-in
   throttle: whether a row is locked at `now`, and a failure counted into
   it (failures within `lockout_ms` of each other; at `max` the row locks
   for lockout_ms and its count starts again). */
struct pt_store_accounts_throttle;
bool pt_portal_account_password_ok(const char *pw, const char **why);
bool pt_portal_account_email_ok(const char *email);
bool pt_portal_account_hash_password(const char *pw, char *out, size_t size);
bool pt_portal_account_verify_password(const char *hash, const char *pw);
bool pt_portal_account_throttle_locked(const struct pt_store_accounts_throttle *t, int64_t now);
void pt_portal_account_throttle_fail(struct pt_store_accounts_throttle *t, int64_t now, int64_t max,
                                     int64_t lockout_ms);

/* ----------------------------------------------- per-file entry points */

bool pt_portal_assets_init(const char *theme_dir, char *err, size_t errlen);
void pt_portal_assets_free(void);
/* Serves /assets/... (true when it was one). */
bool pt_portal_assets_serve(struct pt_portal_req *r);
/* The URL of an asset with its content hash ("/assets/portal.3f2a1b.css"). */
const char *pt_portal_assets_url(const char *name);

/* ------------------------------------------------ server pieces (H-A) */

/* r->user belongs to the request: the dispatcher frees it (and its groups)
   when the handler returns; a handler that answers later (r->deferred)
   copies what it needs of r first. */

/* Largest urlencoded form body read into r->form (bigger: 413). */
#define PT_PORTAL_FORM_MAX (64 * 1024)

/* Parses the query and, for a POST with an urlencoded body of at most
   max_body bytes, the form.  false after answering (400 or 413). */
bool pt_portal_req_parse(struct pt_portal_req *r, size_t max_body);
/* Sends r->out with r->status, r->content_type and the security headers
   (CSP, nosniff, Referrer-Policy, frame options); once per request. */
void pt_portal_req_send(struct pt_portal_req *r);
/* Sets a response header (replacing one of the same name). */
void pt_portal_req_header(struct pt_portal_req *r, const char *name, const char *value);
/* A request header or NULL. */
const char *pt_portal_req_in_header(struct pt_portal_req *r, const char *name);
/* A cookie's value (copied into buf, at most len-1 bytes); false when absent. */
bool pt_portal_req_cookie(struct pt_portal_req *r, const char *name, char *buf, size_t len);
/* Sets a cookie for the whole portal: HttpOnly, SameSite=Lax, Secure on
   HTTPS; max_age_s < 0 = a session cookie, 0 = delete it. */
void pt_portal_req_set_cookie(struct pt_portal_req *r, const char *name, const char *value, long max_age_s);
/* The flash message a redirect left (decoded, into buf; cleared); false when none. */
bool pt_portal_req_take_flash(struct pt_portal_req *r, char *buf, size_t len);
/* Is the portal served over HTTPS? */
bool pt_portal_req_https(void);
/* Answers a plain error page body with a status (text/plain). */
void pt_portal_req_text(struct pt_portal_req *r, int status, const char *text);
/* Does the client accept gzip (Accept-Encoding)? */
bool pt_portal_req_accepts_gzip(struct pt_portal_req *r);

/* May the visitor see something shown to `groups` (a JSON array of group
   ids; NULL or empty = everyone)?  Guests are in "guests"; signed-in users in
   "developers" and their own groups; administrators see everything. */
bool pt_portal_render_sees(const struct pt_portal_req *r, const json_t *groups);
/* GET /theme.css: the site's colors and fonts as CSS variables, then its
   customCss (served as text/css only). */
void pt_portal_render_theme_css(struct pt_portal_req *r);
/* The theme's version for /theme.css?v=... (changes with its content). */
const char *pt_portal_render_theme_version(const struct pt_portal_req *r);
/* Writes a Markdown text as sanitized HTML. */
void pt_portal_render_markdown(struct evbuffer *out, const char *md);

/* A template of the shipped or the provider's assets ("footer.html"): its
   text (valid until the assets are next reloaded), or NULL. */
const char *pt_portal_assets_template(const char *name);

/* Browsing handlers (pt_portal_browse.c). */
void pt_portal_browse_home(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_browse_apis(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_browse_api(struct pt_portal_req *r, const char *api, const char *a2);
void pt_portal_browse_operation(struct pt_portal_req *r, const char *api, const char *op);
void pt_portal_browse_definition(struct pt_portal_req *r, const char *api, const char *a2);
void pt_portal_browse_products(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_browse_product(struct pt_portal_req *r, const char *product, const char *a2);
void pt_portal_browse_page(struct pt_portal_req *r, const char *page, const char *a2);
void pt_portal_browse_terms(struct pt_portal_req *r, const char *a1, const char *a2);
void pt_portal_browse_media(struct pt_portal_req *r, const char *media, const char *a2);
/* Drops what browsing derived from the store (at stop). */
void pt_portal_browse_free(void);

#endif
