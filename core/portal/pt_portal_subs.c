/*
 * pt_portal_subs -- a developer's subscriptions on the portal: subscribing
 * to a product, the keys (masked until shown, only ever to their owner),
 * regenerating them, renaming and cancelling; the administrators' approvals;
 * the console relay; the usage charts.
 *
 * Ownership: every route that names a subscription loads it through
 * own_sub(), which answers "not found" unless the signed-in user is its
 * owner, so another user's id is indistinguishable from an unknown one.
 *
 * Writes: a new subscription goes through pt_model_apply (the file's and the
 * management API's validators: scope, owner, the product's
 * subscriptionsLimit); changes to one (keys, name, state) rewrite its stored
 * body as the management API does.  Either way the write runs in one store
 * transaction and the next generation is published before it commits, so
 * the gateway knows a new key (or forgets a cancelled one) when the page
 * says it does.
 *
 * The console relay (POST /api/console): the browser sends the call it
 * wants; the relay fills in the subscription's key, sends the call to
 * portal.gatewayUrl + the path, and answers the gateway's response as JSON.
 * It runs on the control thread's event base with libevent's HTTP client
 * (never blocking), with a deadline and caps on what it sends and reads.
 * The target is fixed: only the path is the caller's, and it is checked to
 * be a path (no scheme, no authority, no "//", no control characters), so
 * the relay cannot be pointed anywhere but the gateway.
 */
#include "base/pt_log.h"
#include "conf/pt_model.h"
#include "conf/pt_node.h"
#include "conf/pt_store_analytics.h"
#include "event/pt_tls.h"
#include "http/pt_mail.h"
#include "portal/pt_portal_int.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <math.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define NAME_MAX_LEN 100    /* a subscription's name */
#define COMMENT_MAX_LEN 500 /* an administrator's comment */

/* ---------------------------------------------------------------- helpers */

static struct pt_store *store(void)
{
    return pt_portal_req_srv.store;
}

static const struct pt_conf *file(void)
{
    return pt_portal_req_srv.hooks->file();
}

static const char *str(const json_t *o, const char *k, const char *def)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : def;
}

/* The part after "/users/" of an ownerId, or NULL. */
static const char *owner_user(const json_t *sub)
{
    const char *o = str(sub, "ownerId", NULL);
    const char *u = o ? strstr(o, "/users/") : NULL;
    return u && u[7] ? u + 7 : NULL;
}

/* The product id of a subscription's scope, or NULL (API scopes). */
static const char *scope_product(const json_t *sub)
{
    enum pt_sub_scope kind;
    const char *id = NULL;
    const char *scope = str(sub, "scope", NULL);
    if (!scope || !pt_conf_entities_parse_sub_scope(scope, &kind, &id) || kind != PT_SUB_PRODUCT)
        return NULL;
    return id;
}

/* The state people see: an active subscription past its expirationDate or
   endDate is expired (as the gateway treats it). */
static const char *state_of(const json_t *sub)
{
    const char *s = str(sub, "state", "active");
    if (strcmp(s, "active"))
        return s;
    const char *dates[2] = {str(sub, "expirationDate", NULL), str(sub, "endDate", NULL)};
    for (int i = 0; i < 2; i++) {
        int64_t t;
        if (dates[i] && pt_conf_entities_parse_iso8601(dates[i], &t) && (int64_t)pt_clock_wall_ms() >= t)
            return "expired";
    }
    return s;
}

/* The subscription `id` when r's user owns it: its stored body (json_decref
   it); NULL for a guest, an unknown id and another user's subscription
   alike. */
static json_t *own_sub(struct pt_portal_req *r, const char *id)
{
    json_t *b = NULL;
    if (!r->user || !id || !*id || !pt_store_get(store(), "subscription", "", id, &b, NULL))
        return NULL;
    const char *u = owner_user(b);
    if (!u || strcmp(u, r->user->id)) {
        json_decref(b);
        return NULL;
    }
    return b;
}

static bool from_file(const char *id)
{
    char src[16] = "";
    return pt_store_info(store(), "subscription", "", id, src, NULL) && !strcmp(src, "config");
}

/* An entity's display name (a new string), else its id. */
static char *display_name(const char *kind, const char *id)
{
    json_t *b = NULL;
    char *out;
    if (id && pt_store_get(store(), kind, "", id, &b, NULL))
        out = strdup(str(b, "displayName", id));
    else
        out = strdup(id ? id : "");
    json_decref(b);
    return out;
}

static bool collect_link(void *arg, const char *a, const char *b)
{
    (void)a;
    json_array_append_new(arg, json_string(b));
    return json_array_size(arg) < 10000;
}

/* A product as the configuration tree holds it (what visibility reads):
   its stored body with id, groups and apis; NULL when there is none. */
static json_t *product_tree(const char *id)
{
    json_t *b = NULL;
    if (!id || !pt_store_get(store(), "product", "", id, &b, NULL))
        return NULL;
    json_object_set_new(b, "id", json_string(id));
    json_t *groups = json_array(), *apis = json_array();
    pt_store_links(store(), "product-group", id, collect_link, groups);
    pt_store_links(store(), "product-api", id, collect_link, apis);
    json_object_set_new(b, "groups", groups);
    json_object_set_new(b, "apis", apis);
    return b;
}

/* Runs fn inside a store transaction, then builds and publishes the next
   generation (which commits).  false with the first error in err. */
typedef bool (*change_fn)(void *arg, struct pt_errors *errs);

static bool change(change_fn fn, void *arg, char *err, size_t errlen)
{
    struct pt_errors errs = {0};
    struct pt_store *st = store();
    if (!pt_store_begin(st)) {
        snprintf(err, errlen, "the store is busy (%s); try again", pt_store_error(st));
        return false;
    }
    if (!fn(arg, &errs)) {
        pt_store_rollback(st);
        snprintf(err, errlen, "%s", errs.n ? errs.msgs[0] : pt_store_error(st));
        pt_node_errors_clear(&errs);
        return false;
    }
    if (!pt_portal_req_srv.hooks->publish(&errs)) {
        snprintf(err, errlen, "%s", errs.n ? errs.msgs[0] : "the change was refused");
        pt_node_errors_clear(&errs);
        return false;
    }
    return true;
}

/* Rewrites a stored subscription with some fields set (keys, name, state). */
struct edit {
    const char *id;
    json_t *set; /* fields to set (a null value removes one) */
};

static bool edit_sub(void *arg, struct pt_errors *errs)
{
    struct edit *e = arg;
    json_t *b = NULL;
    char ws[128] = "";
    if (!pt_store_get(store(), "subscription", "", e->id, &b, NULL)) {
        pt_node_errors_add(errs, "the subscription is gone");
        return false;
    }
    pt_store_info(store(), "subscription", "", e->id, NULL, ws);
    const char *k;
    json_t *v;
    json_object_foreach(e->set, k, v)
    {
        if (json_is_null(v))
            json_object_del(b, k);
        else
            json_object_set(b, k, v);
    }
    bool ok = pt_store_put(store(), "subscription", "", e->id, ws, b, "api", NULL);
    json_decref(b);
    return ok;
}

static bool edit(const char *id, json_t *set, char *err, size_t errlen)
{
    struct edit e = {id, set};
    bool ok = change(edit_sub, &e, err, errlen);
    json_decref(set);
    return ok;
}

static void now_iso(char out[48])
{
    pt_log_format_time(out, pt_clock_wall_ms());
}

/* Trims spaces at both ends into out (at most max characters kept). */
static void trimmed(const char *in, char *out, size_t size)
{
    while (in && isspace((unsigned char)*in))
        in++;
    snprintf(out, size, "%s", in ? in : "");
    size_t n = strlen(out);
    while (n && isspace((unsigned char)out[n - 1]))
        out[--n] = '\0';
}

/* A name people give: 1 to NAME_MAX_LEN bytes, no control characters. */
static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (!n || n > NAME_MAX_LEN)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

static void link_attr(struct evbuffer *out, const char *prefix, const char *id)
{
    char *enc = evhttp_encode_uri(id);
    evbuffer_add_printf(out, "%s%s", prefix, enc ? enc : "");
    free(enc);
}

static void stylesheet(struct pt_portal_req *r)
{
    const char *css = pt_portal_assets_url("subs.css");
    if (css) {
        evbuffer_add_printf(r->out, "<link rel=\"stylesheet\" href=\"");
        pt_portal_render_esc(r->out, css);
        evbuffer_add_printf(r->out, "\">");
    }
}

/*
 * Subscriptions whose stored field `field` (ownerId or state) matches
 * `pattern` (SQL LIKE, a backslash escapes): SQLite reads the one field, so the
 * others are never parsed; each match is then read whole (keys unsealed) by
 * pt_store_get.  An array of bodies with "id" (at most `max`).
 */
static json_t *subs_where(const char *field, const char *pattern, size_t max)
{
    json_t *out = json_array();
    sqlite3 *db = pt_store_sqlite(store());
    sqlite3_stmt *st = NULL;
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT id FROM entities WHERE kind = 'subscription' AND parent = '' AND "
             "json_extract(body, '$.%s') LIKE ?1 ESCAPE '\\' ORDER BY id",
             field);
    if (!db || sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        pt_warn("portal: cannot list subscriptions: %s", db ? sqlite3_errmsg(db) : "no store");
        return out;
    }
    sqlite3_bind_text(st, 1, pattern, -1, SQLITE_TRANSIENT);
    json_t *ids = json_array();
    while (sqlite3_step(st) == SQLITE_ROW && json_array_size(ids) < max)
        json_array_append_new(ids, json_string((const char *)sqlite3_column_text(st, 0)));
    sqlite3_finalize(st);
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id)
    {
        json_t *b = NULL;
        if (pt_store_get(store(), "subscription", "", json_string_value(id), &b, NULL)) {
            json_object_set_new(b, "id", json_incref(id));
            json_array_append_new(out, b);
        }
    }
    json_decref(ids);
    return out;
}

/* The user's subscriptions (newest first by createdDate). */
static int by_created_desc(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    return strcmp(str(y, "createdDate", ""), str(x, "createdDate", ""));
}

static json_t *own_subs(const char *user_id)
{
    /* ownerId is "/users/ID", perhaps after a service path: LIKE '%/users/ID'
       with LIKE's wildcards in the id escaped, then checked exactly */
    char pattern[300], *o = pattern;
    o += snprintf(pattern, sizeof(pattern), "%%/users/");
    for (const char *c = user_id; *c && o < pattern + sizeof(pattern) - 3; c++) {
        if (*c == '%' || *c == '_' || *c == '\\')
            *o++ = '\\';
        *o++ = *c;
    }
    *o = '\0';
    json_t *all = subs_where("ownerId", pattern, 10000);
    struct {
        json_t *subs;
    } x = {json_array()};
    size_t k;
    json_t *b;
    json_array_foreach(all, k, b)
    {
        const char *u = owner_user(b);
        if (u && !strcmp(u, user_id))
            json_array_append(x.subs, b);
    }
    json_decref(all);
    size_t n = json_array_size(x.subs);
    if (n > 1) {
        json_t **v = calloc(n, sizeof(*v));
        for (size_t i = 0; v && i < n; i++)
            v[i] = json_incref(json_array_get(x.subs, i));
        if (v) {
            qsort(v, n, sizeof(*v), by_created_desc);
            json_t *sorted = json_array();
            for (size_t i = 0; i < n; i++)
                json_array_append_new(sorted, v[i]);
            free(v);
            json_decref(x.subs);
            x.subs = sorted;
        }
    }
    return x.subs;
}

/* ------------------------------------------------------------------- mail */

static const struct pt_mail_cf *mail_cf(void)
{
    return &file()->portal.mail;
}

static json_t *mail_vars(struct pt_portal_req *r, const char *first, const char *last, const char *email,
                         const char *product, const char *sub, const char *comment, const char *link)
{
    const json_t *content = pt_portal_content_get(r);
    const char *site = str(json_object_get(content, "site"), "title", "Portico developer portal");
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "firstName", first ? first : "", "lastName",
                     last ? last : "", "email", email ? email : "", "product", product ? product : "",
                     "subscription", sub ? sub : "", "comment", comment ? comment : "", "link",
                     link ? link : "", "siteTitle", site);
}

struct admins {
    json_t *emails;
};

static bool add_admin(void *arg, const char *group, const char *user)
{
    (void)group;
    json_t *u = NULL;
    if (pt_store_get(store(), "user", "", user, &u, NULL) && !strcmp(str(u, "state", "active"), "active") &&
        str(u, "email", NULL))
        json_array_append_new(arg, json_string(str(u, "email", "")));
    json_decref(u);
    return json_array_size(arg) < 1000;
}

/* subscription-submitted to every active administrator. */
static void mail_submitted(struct pt_portal_req *r, const char *product, const char *name)
{
    json_t *emails = json_array();
    pt_store_links(store(), "group-user", "administrators", add_admin, emails);
    char link[1024];
    snprintf(link, sizeof(link), "%s/admin/subscriptions", pt_portal_req_base_url());
    json_t *vars =
        mail_vars(r, r->user->first_name, r->user->last_name, r->user->email, product, name, "", link);
    size_t i;
    json_t *e;
    json_array_foreach(emails, i, e)
    {
        char err[256];
        if (!pt_mail_send_template(store(), mail_cf(), "subscription-submitted", json_string_value(e), vars,
                                   err, sizeof(err)))
            pt_warn("portal: mail to administrator %s: %s", json_string_value(e), err);
    }
    json_decref(vars);
    json_decref(emails);
}

/* -------------------------------------------------------------- subscribe */

/* The user's live subscriptions (submitted, active, suspended) to a product. */
static int count_live(const json_t *subs, const char *product)
{
    int n = 0;
    size_t i;
    json_t *b;
    json_array_foreach(subs, i, b)
    {
        const char *p = scope_product(b), *st = str(b, "state", "active");
        n += p && !strcmp(p, product) &&
             (!strcmp(st, "submitted") || !strcmp(st, "active") || !strcmp(st, "suspended"));
    }
    return n;
}

struct create_arg {
    json_t *doc;
};

static bool create_sub(void *arg, struct pt_errors *errs)
{
    struct create_arg *c = arg;
    const struct pt_conf *f = file();
    struct pt_conf *cf = pt_model_parse_doc(f, c->doc, NULL, "subscription", errs);
    if (!cf)
        return false;
    bool ok = pt_model_apply(store(), cf, pt_model_secret_key(f), "api", errs);
    pt_conf_free(cf);
    return ok;
}

void pt_portal_subs_subscribe(struct pt_portal_req *r, const char *product_id, const char *unused)
{
    (void)unused;
    char back[600];
    snprintf(back, sizeof(back), "/products/%s", product_id);
    if (!r->user) {
        pt_portal_req_redirect(r, "/signin", "Sign in to subscribe.");
        return;
    }
    if (!pt_portal_req_check_csrf(r))
        return;
    json_t *p = product_tree(product_id);
    if (!p || strcmp(str(p, "state", "notPublished"), "published") ||
        !pt_portal_browse_product_visible(r, p)) {
        json_decref(p);
        pt_portal_render_not_found(r);
        return;
    }
    if (json_is_false(json_object_get(p, "subscriptionRequired"))) {
        json_decref(p);
        pt_portal_req_redirect(r, back, "This product is open: its APIs answer without a key.");
        return;
    }
    const char *terms = str(p, "terms", "");
    const char *accepted = pt_portal_req_form(r, "terms");
    if (*terms && (!accepted || strcmp(accepted, "on"))) {
        json_decref(p);
        pt_portal_req_redirect(r, back, "Accept the product's terms of use to subscribe.");
        return;
    }
    const char *pname = str(p, "displayName", product_id);
    char name[NAME_MAX_LEN * 4 + 1];
    trimmed(pt_portal_req_form(r, "name"), name, sizeof(name));
    if (!*name)
        snprintf(name, sizeof(name), "%.*s", NAME_MAX_LEN, pname);
    if (!valid_name(name)) {
        json_decref(p);
        pt_portal_req_redirect(r, back, "A subscription's name has 1 to 100 characters.");
        return;
    }
    json_int_t limit = json_integer_value(json_object_get(p, "subscriptionsLimit"));
    json_t *mine = own_subs(r->user->id);
    struct {
        int n;
    } c = {count_live(mine, product_id)};
    json_decref(mine);
    if (limit > 0 && c.n >= limit) {
        char msg[300];
        snprintf(msg, sizeof(msg), "You already have %d subscription%s to %.100s, the most it allows.", c.n,
                 c.n == 1 ? "" : "s", pname);
        json_decref(p);
        pt_portal_req_redirect(r, back, msg);
        return;
    }
    bool approval = json_is_true(json_object_get(p, "approvalRequired"));
    char key[33], id[40], scope[600], owner[300], now[48];
    pt_model_new_key(key);
    snprintf(id, sizeof(id), "sub-%.16s", key);
    snprintf(scope, sizeof(scope), "/products/%s", product_id);
    snprintf(owner, sizeof(owner), "/users/%s", r->user->id);
    now_iso(now);
    json_t *s = json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", id, "displayName", name, "scope", scope, "ownerId",
                          owner, "state", approval ? "submitted" : "active");
    if (!approval)
        json_object_set_new(s, "startDate", json_string(now));
    const char *ws = str(p, "workspace", "");
    if (*ws)
        json_object_set_new(s, "workspace", json_string(ws));
    struct create_arg ca = {json_pack("{s:[o]}", "subscriptions", s)};
    char err[512];
    bool ok = change(create_sub, &ca, err, sizeof(err));
    json_decref(ca.doc);
    if (!ok) {
        pt_warn("portal: user %s subscribing to %s: %s", r->user->id, product_id, err);
        char msg[700];
        snprintf(msg, sizeof(msg), "The subscription could not be made: %s", err);
        json_decref(p);
        pt_portal_req_redirect(r, back, msg);
        return;
    }
    if (approval) {
        mail_submitted(r, pname, name);
        pt_portal_req_redirect(r, "/subscriptions",
                               "Your subscription is waiting for an administrator's approval; you will get a "
                               "mail when it is decided.");
    } else
        pt_portal_req_redirect(r, "/subscriptions", "Subscribed: your keys are below.");
    json_decref(p);
}

/* -------------------------------------------------- the subscriptions page */

static bool keys_allowed(const json_t *sub)
{
    const char *s = state_of(sub);
    return !strcmp(s, "active") || !strcmp(s, "suspended");
}

static void post_form_open(struct pt_portal_req *r, const char *id, const char *action, const char *cls)
{
    evbuffer_add_printf(r->out, "<form method=\"post\" class=\"%s\" action=\"", cls);
    link_attr(r->out, "/subscriptions/", id);
    evbuffer_add_printf(r->out, "/%s\">", action);
    pt_portal_render_csrf(r);
}

static void key_cell(struct pt_portal_req *r, const json_t *sub, const char *which, bool reveal)
{
    const char *field = !strcmp(which, "primary") ? "primaryKey" : "secondaryKey";
    const char *id = str(sub, "id", "");
    evbuffer_add_printf(r->out, "<td data-label=\"%s key\">",
                        !strcmp(which, "primary") ? "Primary" : "Secondary");
    if (!keys_allowed(sub)) {
        evbuffer_add_printf(r->out, "<span class=\"no-key\">none while %s</span></td>", state_of(sub));
        return;
    }
    evbuffer_add_printf(r->out, "<code class=\"key%s\" data-key=\"%s\">", reveal ? " shown" : "", which);
    if (reveal)
        pt_portal_render_esc(r->out, str(sub, field, ""));
    else
        evbuffer_add_printf(r->out, "••••••••••••");
    evbuffer_add_printf(r->out,
                        "</code> <button type=\"button\" class=\"show-key\" data-key=\"%s\" "
                        "aria-label=\"Show the %s key\" hidden>Show</button>",
                        which, which);
    evbuffer_add_printf(r->out,
                        " <button type=\"button\" class=\"copy-key\" data-key=\"%s\" aria-label=\"Copy the "
                        "%s key\" hidden>Copy</button>",
                        which, which);
    post_form_open(r, id, "regenerate", "regenerate-form");
    evbuffer_add_printf(
        r->out,
        "<input type=\"hidden\" name=\"key\" value=\"%s\"><button type=\"submit\" "
        "class=\"regenerate\" aria-label=\"Regenerate the %s key\">Regenerate</button></form></td>",
        which, which);
}

/* The page; `reveal` is the id of the subscription whose keys are shown
   (the no-JavaScript "show" form), or NULL. */
static void subscriptions_page(struct pt_portal_req *r, const char *reveal)
{
    json_t *subs = own_subs(r->user->id);
    pt_portal_render_begin(r, "Your subscriptions");
    stylesheet(r);
    const char *js = pt_portal_assets_url("keys.js");
    if (js) {
        evbuffer_add_printf(r->out, "<script src=\"");
        pt_portal_render_esc(r->out, js);
        evbuffer_add_printf(r->out, "\" defer></script>");
    }
    evbuffer_add_printf(r->out, "<h1>Your subscriptions</h1>");
    if (!json_array_size(subs))
        evbuffer_add_printf(r->out,
                            "<p id=\"no-subscriptions\">You have no subscriptions yet: pick one of the "
                            "<a href=\"/products\">products</a>.</p>");
    /* a region that may scroll sideways: focusable, so keyboards can scroll it */
    evbuffer_add_printf(r->out, "<div class=\"table-wrap\" tabindex=\"0\" role=\"region\" aria-label=\"Your "
                                "subscriptions\"><table id=\"subscriptions\" data-csrf=\"");
    pt_portal_render_esc(r->out, r->csrf);
    evbuffer_add_printf(
        r->out, "\"><caption>Subscriptions and their keys</caption><thead><tr><th scope=\"col\">Name</th>"
                "<th scope=\"col\">Product</th><th scope=\"col\">State</th><th scope=\"col\">Created</th>"
                "<th scope=\"col\">Primary key</th><th scope=\"col\">Secondary key</th>"
                "<th scope=\"col\">Actions</th></tr></thead><tbody>");
    size_t i;
    json_t *s;
    json_array_foreach(subs, i, s)
    {
        const char *id = str(s, "id", "");
        const char *state = state_of(s);
        const char *prod = scope_product(s);
        evbuffer_add_printf(r->out, "<tr data-subscription=\"");
        pt_portal_render_esc(r->out, id);
        evbuffer_add_printf(r->out, "\" data-state=\"%s\"><th scope=\"row\" class=\"name\">", state);
        pt_portal_render_esc(r->out, str(s, "displayName", id));
        evbuffer_add_printf(r->out, "</th><td data-label=\"Product\">");
        if (prod) {
            char *pn = display_name("product", prod);
            evbuffer_add_printf(r->out, "<a href=\"");
            link_attr(r->out, "/products/", prod);
            evbuffer_add_printf(r->out, "\">");
            pt_portal_render_esc(r->out, pn);
            evbuffer_add_printf(r->out, "</a>");
            free(pn);
        } else
            pt_portal_render_esc(r->out, str(s, "scope", ""));
        evbuffer_add_printf(r->out, "</td><td data-label=\"State\"><span class=\"state state-%s\">%s</span>",
                            state, state);
        const char *comment = str(s, "stateComment", "");
        if (*comment) {
            evbuffer_add_printf(r->out, "<br><small class=\"state-comment\">");
            pt_portal_render_esc(r->out, comment);
            evbuffer_add_printf(r->out, "</small>");
        }
        /* the date for people, the whole time for machines */
        const char *created = str(s, "createdDate", "");
        evbuffer_add_printf(r->out, "</td><td data-label=\"Created\"><time datetime=\"");
        pt_portal_render_esc(r->out, created);
        evbuffer_add_printf(r->out, "\">%.10s</time></td>", created);
        bool shown = reveal && !strcmp(reveal, id);
        key_cell(r, s, "primary", shown);
        key_cell(r, s, "secondary", shown);
        evbuffer_add_printf(r->out, "<td class=\"actions\" data-label=\"Actions\">");
        if (keys_allowed(s) && !shown) {
            post_form_open(r, id, "show", "show-form");
            evbuffer_add_printf(r->out, "<button type=\"submit\">Show keys</button></form>");
        }
        post_form_open(r, id, "rename", "rename-form");
        evbuffer_add_printf(r->out, "<label>New name <input name=\"name\" maxlength=\"%d\" required value=\"",
                            NAME_MAX_LEN);
        pt_portal_render_esc(r->out, str(s, "displayName", id));
        evbuffer_add_printf(r->out, "\"></label> <button type=\"submit\">Rename</button></form>");
        if (!strcmp(state, "active") || !strcmp(state, "submitted") || !strcmp(state, "suspended")) {
            post_form_open(r, id, "cancel", "cancel-form");
            evbuffer_add_printf(r->out,
                                "<button type=\"submit\" class=\"danger\">Cancel subscription</button>"
                                "</form>");
        }
        evbuffer_add_printf(r->out, "</td></tr>");
    }
    evbuffer_add_printf(r->out, "</tbody></table></div>");
    if (reveal)
        evhttp_add_header(evhttp_request_get_output_headers(r->r), "Cache-Control", "no-store");
    pt_portal_render_end(r);
    json_decref(subs);
}

void pt_portal_subs_list(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1;
    (void)a2;
    if (!r->user) {
        pt_portal_req_redirect(r, "/signin", "Sign in to see your subscriptions.");
        return;
    }
    subscriptions_page(r, NULL);
}

/* The owner's subscription for a POST route, after the CSRF check; NULL when
   it has answered (sign-in redirect, 403, 404). */
static json_t *post_target(struct pt_portal_req *r, const char *id)
{
    if (!r->user) {
        pt_portal_req_redirect(r, "/signin", "Sign in first.");
        return NULL;
    }
    if (!pt_portal_req_check_csrf(r))
        return NULL;
    json_t *s = own_sub(r, id);
    if (!s)
        pt_portal_render_not_found(r);
    return s;
}

void pt_portal_subs_show(struct pt_portal_req *r, const char *id, const char *unused)
{
    (void)unused;
    json_t *s = post_target(r, id);
    if (!s)
        return;
    bool ok = keys_allowed(s);
    json_decref(s);
    if (!ok) {
        pt_portal_req_redirect(r, "/subscriptions", "This subscription's keys cannot be shown in its state.");
        return;
    }
    subscriptions_page(r, id);
}

void pt_portal_subs_keys(struct pt_portal_req *r, const char *id, const char *unused)
{
    (void)unused;
    if (!r->user) {
        pt_portal_req_json_error(r, 401, "SignInRequired", "sign in to see keys");
        return;
    }
    /* a GET that reveals secrets: the CSRF header proves the page asked,
       not a page of another site (which cannot read the token) */
    if (!pt_portal_req_check_csrf(r))
        return;
    json_t *s = own_sub(r, id);
    if (!s) {
        pt_portal_req_json_error(r, 404, "NotFound", "you have no subscription '%s'", id);
        return;
    }
    if (!keys_allowed(s)) {
        pt_portal_req_json_error(r, 409, "NoKeys", "the subscription is %s: its keys open nothing",
                                 state_of(s));
        json_decref(s);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(r->r), "Cache-Control", "no-store");
    pt_portal_req_json(r, 200,
                       json_pack("{s:s,s:s}", "primaryKey", str(s, "primaryKey", ""), "secondaryKey",
                                 str(s, "secondaryKey", "")));
    json_decref(s);
}

static bool refuse_file_owned(struct pt_portal_req *r, const char *id)
{
    if (!from_file(id))
        return false;
    pt_portal_req_redirect(
        r, "/subscriptions",
        "This subscription is kept in the provider's configuration; ask them to change it.");
    return true;
}

void pt_portal_subs_regenerate(struct pt_portal_req *r, const char *id, const char *unused)
{
    (void)unused;
    json_t *s = post_target(r, id);
    if (!s)
        return;
    const char *which = pt_portal_req_form(r, "key");
    bool allowed = keys_allowed(s);
    json_decref(s);
    if (!which || (strcmp(which, "primary") && strcmp(which, "secondary"))) {
        pt_portal_req_redirect(r, "/subscriptions", "Say which key to regenerate: primary or secondary.");
        return;
    }
    if (!allowed) {
        pt_portal_req_redirect(r, "/subscriptions", "Only an active subscription's keys can be regenerated.");
        return;
    }
    if (refuse_file_owned(r, id))
        return;
    char key[33], err[512], msg[700];
    pt_model_new_key(key);
    bool primary = !strcmp(which, "primary");
    if (!edit(id, json_pack("{s:s}", primary ? "primaryKey" : "secondaryKey", key), err, sizeof(err))) {
        snprintf(msg, sizeof(msg), "The key could not be regenerated: %s", err);
        pt_portal_req_redirect(r, "/subscriptions", msg);
        return;
    }
    snprintf(msg, sizeof(msg), "A new %s key was made; the old one no longer works.", which);
    pt_portal_req_redirect(r, "/subscriptions", msg);
}

void pt_portal_subs_rename(struct pt_portal_req *r, const char *id, const char *unused)
{
    (void)unused;
    json_t *s = post_target(r, id);
    if (!s)
        return;
    json_decref(s);
    char name[NAME_MAX_LEN * 4 + 1], err[512], msg[700];
    trimmed(pt_portal_req_form(r, "name"), name, sizeof(name));
    if (!valid_name(name)) {
        pt_portal_req_redirect(r, "/subscriptions", "A subscription's name has 1 to 100 characters.");
        return;
    }
    if (refuse_file_owned(r, id))
        return;
    if (!edit(id, json_pack("{s:s}", "displayName", name), err, sizeof(err))) {
        snprintf(msg, sizeof(msg), "The subscription could not be renamed: %s", err);
        pt_portal_req_redirect(r, "/subscriptions", msg);
        return;
    }
    pt_portal_req_redirect(r, "/subscriptions", "Renamed.");
}

void pt_portal_subs_cancel(struct pt_portal_req *r, const char *id, const char *unused)
{
    (void)unused;
    json_t *s = post_target(r, id);
    if (!s)
        return;
    const char *state = state_of(s);
    bool live = !strcmp(state, "active") || !strcmp(state, "submitted") || !strcmp(state, "suspended");
    json_decref(s);
    if (!live) {
        pt_portal_req_redirect(r, "/subscriptions",
                               "The subscription is not live; there is nothing to cancel.");
        return;
    }
    if (refuse_file_owned(r, id))
        return;
    char now[48], err[512], msg[700];
    now_iso(now);
    if (!edit(id, json_pack("{s:s,s:s}", "state", "cancelled", "endDate", now), err, sizeof(err))) {
        snprintf(msg, sizeof(msg), "The subscription could not be cancelled: %s", err);
        pt_portal_req_redirect(r, "/subscriptions", msg);
        return;
    }
    pt_portal_req_redirect(r, "/subscriptions", "Cancelled: its keys no longer work.");
}

/* ------------------------------------------------------------- approvals */

void pt_portal_subs_admin_list(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1;
    (void)a2;
    if (!r->user || !r->user->admin) {
        pt_portal_render_not_found(r);
        return;
    }
    json_t *pending = subs_where("state", "submitted", 1000);
    pt_portal_render_begin(r, "Subscriptions to approve");
    stylesheet(r);
    evbuffer_add_printf(r->out, "<h1>Subscriptions to approve</h1>");
    if (!json_array_size(pending))
        evbuffer_add_printf(r->out, "<p id=\"no-pending\">No subscription is waiting for approval.</p>");
    evbuffer_add_printf(r->out,
                        "<div class=\"table-wrap\" tabindex=\"0\" role=\"region\" aria-label=\"Waiting for "
                        "approval\"><table id=\"pending\"><caption>Waiting for "
                        "approval</caption><thead><tr><th scope=\"col\">Subscription</th><th "
                        "scope=\"col\">Product</th><th scope=\"col\">Developer</th><th "
                        "scope=\"col\">Requested</th><th scope=\"col\">Decision</th></tr></thead><tbody>");
    size_t i;
    json_t *s;
    json_array_foreach(pending, i, s)
    {
        const char *id = str(s, "id", "");
        char *pn = display_name("product", scope_product(s) ? scope_product(s) : str(s, "scope", ""));
        json_t *u = NULL;
        const char *uid = owner_user(s);
        if (uid)
            pt_store_get(store(), "user", "", uid, &u, NULL);
        evbuffer_add_printf(r->out, "<tr data-subscription=\"");
        pt_portal_render_esc(r->out, id);
        evbuffer_add_printf(r->out, "\"><th scope=\"row\">");
        pt_portal_render_esc(r->out, str(s, "displayName", id));
        evbuffer_add_printf(r->out, "</th><td>");
        pt_portal_render_esc(r->out, pn);
        evbuffer_add_printf(r->out, "</td><td>");
        pt_portal_render_esc(r->out, str(u, "firstName", ""));
        evbuffer_add_printf(r->out, " ");
        pt_portal_render_esc(r->out, str(u, "lastName", ""));
        evbuffer_add_printf(r->out, " &lt;");
        pt_portal_render_esc(r->out, str(u, "email", uid ? uid : ""));
        evbuffer_add_printf(r->out, "&gt;</td><td>");
        pt_portal_render_esc(r->out, str(s, "createdDate", ""));
        evbuffer_add_printf(r->out, "</td><td>");
        for (int k = 0; k < 2; k++) {
            const char *action = k ? "reject" : "approve";
            evbuffer_add_printf(r->out, "<form method=\"post\" class=\"%s-form\" action=\"", action);
            link_attr(r->out, "/admin/subscriptions/", id);
            evbuffer_add_printf(r->out, "/%s\">", action);
            pt_portal_render_csrf(r);
            evbuffer_add_printf(r->out,
                                "<label>Comment <input name=\"comment\" maxlength=\"%d\"></label> <button "
                                "type=\"submit\"%s>%s</button></form>",
                                COMMENT_MAX_LEN, k ? " class=\"danger\"" : "", k ? "Reject" : "Approve");
        }
        evbuffer_add_printf(r->out, "</td></tr>");
        json_decref(u);
        free(pn);
    }
    evbuffer_add_printf(r->out, "</tbody></table></div>");
    pt_portal_render_end(r);
    json_decref(pending);
}

void pt_portal_subs_admin_decide(struct pt_portal_req *r, const char *id, const char *action)
{
    if (!r->user || !r->user->admin) {
        pt_portal_render_not_found(r);
        return;
    }
    if (!pt_portal_req_check_csrf(r))
        return;
    bool approve = action && !strcmp(action, "approve");
    if (!approve && (!action || strcmp(action, "reject"))) {
        pt_portal_render_not_found(r);
        return;
    }
    json_t *s = NULL;
    if (!pt_store_get(store(), "subscription", "", id, &s, NULL)) {
        pt_portal_render_not_found(r);
        return;
    }
    bool pending = !strcmp(str(s, "state", ""), "submitted");
    json_decref(s);
    if (!pending) {
        pt_portal_req_redirect(r, "/admin/subscriptions",
                               "That subscription is no longer waiting for approval.");
        return;
    }
    char comment[COMMENT_MAX_LEN * 4 + 1], now[48], err[512], msg[700];
    trimmed(pt_portal_req_form(r, "comment"), comment, sizeof(comment));
    if (strlen(comment) > COMMENT_MAX_LEN) {
        pt_portal_req_redirect(r, "/admin/subscriptions", "A comment has at most 500 characters.");
        return;
    }
    if (from_file(id)) {
        pt_portal_req_redirect(r, "/admin/subscriptions",
                               "That subscription is declared in the configuration file; change it there.");
        return;
    }
    now_iso(now);
    json_t *set = json_pack("{s:s,s:s}", "state", approve ? "active" : "rejected", "stateComment", comment);
    if (approve)
        json_object_set_new(set, "startDate", json_string(now));
    if (!edit(id, set, err, sizeof(err))) {
        snprintf(msg, sizeof(msg), "The decision could not be saved: %s", err);
        pt_portal_req_redirect(r, "/admin/subscriptions", msg);
        return;
    }
    json_t *after = NULL;
    if (pt_store_get(store(), "subscription", "", id, &after, NULL))
        pt_mgmt_notify_sub_state(store(), file(), id, after, "submitted");
    json_decref(after);
    pt_portal_req_redirect(r, "/admin/subscriptions",
                           approve ? "Approved; the developer was told by mail."
                                   : "Rejected; the developer was told by mail.");
}

/* ------------------------------------------------------- the console relay */

#define RELAY_MAX_REQ_BODY (256 * 1024)   /* what the browser may send through */
#define RELAY_MAX_RESP_BODY (1024 * 1024) /* what the relay reads back */
#define RELAY_MAX_HEADERS 50
#define RELAY_MAX_HEADER_LEN 8192
#define RELAY_MAX_PATH 8192
#define RELAY_TIMEOUT_S 15
#define RELAY_MAX_INFLIGHT 64 /* relayed calls at once, all users */
#define RELAY_MAX_PER_USER 4  /* ... and per user */

struct relay {
    struct evhttp_request *client; /* the browser's request, answered when the gateway has */
    struct evhttp_connection *conn;
    char user[128];
    uint64_t start_us;
    int error; /* enum evhttp_request_error + 1, 0: none */
    bool tls;
    struct relay *next;
};

static struct relay *inflight;
static int ninflight;

static int user_inflight(const char *user)
{
    int n = 0;
    for (struct relay *x = inflight; x; x = x->next)
        n += !strcmp(x->user, user);
    return n;
}

static void relay_unlink(struct relay *rl)
{
    for (struct relay **p = &inflight; *p; p = &(*p)->next)
        if (*p == rl) {
            *p = rl->next;
            ninflight--;
            return;
        }
}

/* Answers the browser (the relay's own JSON, never the gateway's headers as
   ours), with the portal's security headers. */
static void relay_answer(struct evhttp_request *client, int status, json_t *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(client);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Referrer-Policy", "same-origin");
    evhttp_add_header(h, "Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'");
    struct evbuffer *out = evbuffer_new();
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (out && text)
        evbuffer_add(out, text, strlen(text));
    free(text);
    evhttp_send_reply(client, status, status == 200 ? "OK" : "Error", out);
    if (out)
        evbuffer_free(out);
}

static json_t *error_body(const char *code, const char *msg)
{
    return json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
}

static void free_conn(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    evhttp_connection_free(arg);
}

/* A JSON string of bytes that may not be UTF-8: invalid sequences become
   U+FFFD. */
static json_t *text_of(const unsigned char *p, size_t n)
{
    json_t *j = json_stringn((const char *)p, n);
    if (j)
        return j;
    struct evbuffer *b = evbuffer_new();
    for (size_t i = 0; i < n;) {
        size_t len = p[i] < 0x80             ? 1
                     : (p[i] & 0xe0) == 0xc0 ? 2
                     : (p[i] & 0xf0) == 0xe0 ? 3
                     : (p[i] & 0xf8) == 0xf0 ? 4
                                             : 0;
        json_t *one = len && i + len <= n ? json_stringn((const char *)p + i, len) : NULL;
        if (one && p[i]) {
            evbuffer_add(b, p + i, len);
            i += len;
        } else {
            evbuffer_add(b, "\xef\xbf\xbd", 3);
            i++;
        }
        json_decref(one);
    }
    size_t bl = evbuffer_get_length(b);
    j = json_stringn((const char *)evbuffer_pullup(b, -1), bl);
    evbuffer_free(b);
    return j ? j : json_string("");
}

static void relay_done(struct evhttp_request *resp, void *arg)
{
    struct relay *rl = arg;
    relay_unlink(rl);
    double ms = (double)(pt_clock_now_us() - rl->start_us) / 1000.0;
    int status = resp ? evhttp_request_get_response_code(resp) : 0;
    if (!resp || status == 0) {
        const char *why = rl->error == EVREQ_HTTP_TIMEOUT + 1         ? "the gateway did not answer in time"
                          : rl->error == EVREQ_HTTP_DATA_TOO_LONG + 1 ? "the gateway's response is over the "
                                                                        "console's 1 MiB limit"
                          : rl->tls
                              ? "the gateway could not be reached, or its TLS certificate is not trusted "
                                "(see portal.gatewayUrl)"
                              : "the gateway could not be reached";
        json_t *b = error_body("GatewayUnavailable", why);
        json_object_set_new(b, "timeMs", json_real(ms));
        relay_answer(rl->client, 502, b);
    } else {
        json_t *headers = json_array();
        struct evkeyvalq *h = evhttp_request_get_input_headers(resp);
        int n = 0;
        for (struct evkeyval *kv = h ? h->tqh_first : NULL; kv && n < 200; kv = kv->next.tqe_next, n++)
            json_array_append_new(headers,
                                  json_pack("[o,o]", text_of((const unsigned char *)kv->key, strlen(kv->key)),
                                            text_of((const unsigned char *)kv->value, strlen(kv->value))));
        struct evbuffer *in = evhttp_request_get_input_buffer(resp);
        size_t len = in ? evbuffer_get_length(in) : 0;
        if (len > RELAY_MAX_RESP_BODY)
            len = RELAY_MAX_RESP_BODY;
        json_t *body = text_of(len ? evbuffer_pullup(in, (ssize_t)len) : (const unsigned char *)"", len);
        relay_answer(
            rl->client, 200,
            json_pack("{s:i,s:o,s:o,s:f}", "status", status, "headers", headers, "body", body, "timeMs", ms));
    }
    /* the connection cannot be freed inside its own callback */
    event_base_once(pt_portal_req_srv.base, -1, EV_TIMEOUT, free_conn, rl->conn, NULL);
    free(rl);
}

static void relay_error(enum evhttp_request_error e, void *arg)
{
    ((struct relay *)arg)->error = (int)e + 1;
}

/* RFC 9110 token characters (header names, methods). */
static bool is_token(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (!n || n > max)
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || strchr("!#$%&'*+-.^_`|~", *s)))
            return false;
    return true;
}

static bool header_value_ok(const char *s)
{
    if (strlen(s) > RELAY_MAX_HEADER_LEN)
        return false;
    for (; *s; s++)
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
            return false;
    return true;
}

/* Headers the relay sets itself or that only make sense hop by hop. */
static bool reserved_header(const char *n, const char *key_header)
{
    static const char *const names[] = {"host",
                                        "content-length",
                                        "transfer-encoding",
                                        "connection",
                                        "keep-alive",
                                        "upgrade",
                                        "te",
                                        "trailer",
                                        "x-forwarded-for",
                                        "forwarded",
                                        "x-forwarded-host",
                                        "x-forwarded-proto",
                                        "x-real-ip",
                                        "cookie",
                                        "expect",
                                        "proxy-connection",
                                        "proxy-authorization",
                                        "ocp-apim-subscription-key",
                                        NULL};
    for (int i = 0; names[i]; i++)
        if (!strcasecmp(n, names[i]))
            return true;
    return !strcasecmp(n, key_header);
}

/*
 * A path on the gateway: starts with one "/", then the URL's path and
 * query; no "//" at the start (a network-path reference), no scheme, no
 * backslash, no spaces or control characters, no fragment.  Appended to
 * gatewayUrl as text, so the host is always the gateway's.
 */
bool pt_portal_subs_path_ok(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > RELAY_MAX_PATH || p[0] != '/' || p[1] == '/' || p[1] == '\\')
        return false;
    for (const char *c = p; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f || *c == '\\' || *c == '#' || (unsigned char)*c >= 0x80)
            return false;
    return true;
}

static const struct {
    const char *name;
    enum evhttp_cmd_type cmd;
} methods[] = {
    {"GET", EVHTTP_REQ_GET},         {"POST", EVHTTP_REQ_POST},     {"PUT", EVHTTP_REQ_PUT},
    {"PATCH", EVHTTP_REQ_PATCH},     {"DELETE", EVHTTP_REQ_DELETE}, {"HEAD", EVHTTP_REQ_HEAD},
    {"OPTIONS", EVHTTP_REQ_OPTIONS},
};

/* The API a path on the gateway reaches among those `ids` holds (the
   longest path prefix); a new reference or NULL. */
static json_t *api_for_path(const json_t *ids, const char *path)
{
    json_t *best = NULL;
    size_t best_len = 0;
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id)
    {
        json_t *a = NULL;
        if (!pt_store_get(store(), "api", "", json_string_value(id), &a, NULL))
            continue;
        const char *ap = str(a, "path", "");
        while (*ap == '/')
            ap++;
        size_t n = strlen(ap);
        bool match = n == 0 || (!strncmp(path + 1, ap, n) && strchr("/?", path[1 + n]));
        if (match && (!best || n >= best_len)) {
            json_decref(best);
            json_object_set_new(a, "id", json_incref(id));
            best = a;
            best_len = n;
        } else
            json_decref(a);
    }
    return best;
}

static bool collect_api_id(void *arg, const struct pt_entity *e)
{
    json_array_append_new(arg, json_string(e->id));
    return json_array_size(arg) < 10000;
}

/* The APIs a subscription's keys open (ids). */
static json_t *sub_apis(const json_t *sub)
{
    json_t *ids = json_array();
    enum pt_sub_scope kind;
    const char *id = NULL;
    if (!pt_conf_entities_parse_sub_scope(str(sub, "scope", ""), &kind, &id))
        return ids;
    if (kind == PT_SUB_PRODUCT)
        pt_store_links(store(), "product-api", id, collect_link, ids);
    else if (kind == PT_SUB_API)
        json_array_append_new(ids, json_string(id));
    else
        pt_store_each(store(), "api", "", collect_api_id, ids);
    return ids;
}

static bool relay_checks(struct pt_portal_req *r, json_t *in, json_t **sub_out, json_t **api_out,
                         enum evhttp_cmd_type *cmd, char *full, size_t fullsize)
{
    const char *sid = str(in, "subscription", NULL), *which = str(in, "key", "primary");
    const char *method = str(in, "method", "GET"), *path = str(in, "path", NULL);
    json_t *sub = sid ? own_sub(r, sid) : NULL;
    if (!sub) {
        pt_portal_req_json_error(r, 404, "NotFound", "you have no subscription '%s'", sid ? sid : "");
        return false;
    }
    /* a subscription that is not active is relayed all the same: the gateway
       refuses its key (401), as it would anyone's */
    *sub_out = sub;
    if (strcmp(which, "primary") && strcmp(which, "secondary")) {
        pt_portal_req_json_error(r, 400, "InvalidKey", "key must be primary or secondary");
        return false;
    }
    size_t k = 0;
    for (; k < PT_ARRAY_LEN(methods) && strcmp(methods[k].name, method); k++)
        ;
    if (k == PT_ARRAY_LEN(methods)) {
        pt_portal_req_json_error(r, 400, "InvalidMethod",
                                 "method must be one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS");
        return false;
    }
    *cmd = methods[k].cmd;
    if (!path || !pt_portal_subs_path_ok(path)) {
        pt_portal_req_json_error(r, 400, "InvalidPath",
                                 "path must be a path on the gateway: one leading '/', no scheme or host, no "
                                 "spaces, control characters or '#', at most %d bytes",
                                 RELAY_MAX_PATH);
        return false;
    }
    json_t *ids = sub_apis(sub);
    const char *api_id = str(in, "api", NULL);
    if (api_id) {
        /* the operation page's form: the path is after that API's URL suffix */
        bool opens = false;
        size_t i;
        json_t *v;
        json_array_foreach(ids, i, v) opens |= !strcmp(json_string_value(v), api_id);
        if (opens && pt_store_get(store(), "api", "", api_id, api_out, NULL)) {
            const char *ap = str(*api_out, "path", "");
            while (*ap == '/')
                ap++;
            size_t n = strlen(ap);
            while (n && ap[n - 1] == '/')
                n--;
            snprintf(full, fullsize, "%s%.*s%s", n ? "/" : "", (int)n, ap, path);
        }
    } else { /* a path on the gateway: the API whose suffix it starts with */
        *api_out = api_for_path(ids, path);
        snprintf(full, fullsize, "%s", path);
    }
    json_decref(ids);
    if (!*api_out) {
        pt_portal_req_json_error(r, 400, "PathNotInSubscription",
                                 "the path is not under an API this subscription opens");
        return false;
    }
    json_t *h = json_object_get(in, "headers");
    if (h && (!json_is_array(h) || json_array_size(h) > RELAY_MAX_HEADERS)) {
        pt_portal_req_json_error(r, 400, "InvalidHeaders",
                                 "headers must be a list of at most %d [name, value]", RELAY_MAX_HEADERS);
        return false;
    }
    size_t i;
    json_t *pair;
    json_array_foreach(h, i, pair)
    {
        const char *n = json_string_value(json_array_get(pair, 0)),
                   *v = json_string_value(json_array_get(pair, 1));
        if (!json_is_array(pair) || json_array_size(pair) != 2 || !n || !v || !is_token(n, 256) ||
            !header_value_ok(v)) {
            pt_portal_req_json_error(r, 400, "InvalidHeader",
                                     "header %zu: a name of token characters and a value without control "
                                     "characters (at most %d bytes)",
                                     i + 1, RELAY_MAX_HEADER_LEN);
            return false;
        }
    }
    json_t *body = json_object_get(in, "body");
    if (body && !json_is_null(body) &&
        (!json_is_string(body) || json_string_length(body) > RELAY_MAX_REQ_BODY)) {
        pt_portal_req_json_error(r, 413, "BodyTooLarge", "body must be text of at most %d bytes",
                                 RELAY_MAX_REQ_BODY);
        return false;
    }
    return true;
}

/* Where the gateway is: its scheme, host, port and base path from
   portal.gatewayUrl.  false when it is not an http(s) URL. */
struct gateway {
    bool tls;
    char host[256];
    int port;
    char base[512]; /* path prefix without the trailing '/' ("" for none) */
    char host_header[300];
};

static bool gateway_of(struct gateway *g)
{
    const char *url = file()->portal.gateway_url;
    struct evhttp_uri *u = url ? evhttp_uri_parse(url) : NULL;
    const char *scheme = u ? evhttp_uri_get_scheme(u) : NULL;
    bool ok = scheme && (!strcasecmp(scheme, "http") || !strcasecmp(scheme, "https")) &&
              evhttp_uri_get_host(u) && strlen(evhttp_uri_get_host(u)) < sizeof(g->host);
    if (ok) {
        g->tls = !strcasecmp(scheme, "https");
        const char *h = evhttp_uri_get_host(u);
        snprintf(g->host, sizeof(g->host), "%s", h);
        g->port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : g->tls ? 443 : 80;
        const char *p = evhttp_uri_get_path(u);
        snprintf(g->base, sizeof(g->base), "%s", p ? p : "");
        size_t n = strlen(g->base);
        while (n && g->base[n - 1] == '/')
            g->base[--n] = '\0';
        bool v6 = strchr(h, ':') != NULL;
        snprintf(g->host_header, sizeof(g->host_header), "%s%s%s:%d", v6 ? "[" : "", h, v6 ? "]" : "",
                 g->port);
    }
    if (u)
        evhttp_uri_free(u);
    return ok;
}

/*
 * The TLS client context for an https gateway: the system's CAs (or
 * upstream.caFile) plus the gateway's own listener certificates, so that a
 * gateway with a private or self-signed certificate is trusted out of the
 * box (and nothing else is).  The name in gatewayUrl is checked against the
 * certificate.  Made once per configuration file (a reload makes a new one).
 */
static SSL_CTX *tls_ctx;
static const struct pt_conf *tls_ctx_file;

static SSL_CTX *gateway_tls(void)
{
    const struct pt_conf *f = file();
    if (tls_ctx && tls_ctx_file == f)
        return tls_ctx;
    if (tls_ctx)
        SSL_CTX_free(tls_ctx);
    struct pt_errors errs = {0};
    tls_ctx = pt_tls_client_ctx(f->upstream.ca_file, true, NULL, &errs);
    tls_ctx_file = f;
    if (!tls_ctx) {
        pt_warn("portal: the console's TLS client: %s", errs.n ? errs.msgs[0] : "cannot be made");
        pt_node_errors_clear(&errs);
        return NULL;
    }
    for (int i = 0; i < f->nlisten; i++)
        for (int k = 0; k < f->listen[i].ncerts; k++)
            if (f->listen[i].certs[k].certificate &&
                SSL_CTX_load_verify_locations(tls_ctx, f->listen[i].certs[k].certificate, NULL) != 1)
                pt_warn("portal: the console cannot trust %s", f->listen[i].certs[k].certificate);
    /* the gateway's own leaf certificate is a trust anchor of its own */
    X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(tls_ctx), X509_V_FLAG_PARTIAL_CHAIN);
    return tls_ctx;
}

/* A connection to the gateway (TLS when it is https); NULL on failure. */
static struct evhttp_connection *gateway_conn(const struct gateway *g)
{
    struct event_base *base = pt_portal_req_srv.base;
    if (!g->tls)
        return evhttp_connection_base_new(base, NULL, g->host, (unsigned short)g->port);
    SSL_CTX *ctx = gateway_tls();
    SSL *ssl = ctx ? pt_tls_client_ssl(ctx, g->host, true) : NULL;
    if (!ssl)
        return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                             BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    struct evhttp_connection *c =
        evhttp_connection_base_bufferevent_new(base, NULL, bev, g->host, (unsigned short)g->port);
    if (!c)
        bufferevent_free(bev);
    return c;
}

void pt_portal_subs_console(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1;
    (void)a2;
    if (!r->user) {
        pt_portal_req_json_error(r, 401, "SignInRequired", "sign in to call APIs from the console");
        return;
    }
    if (!pt_portal_req_check_csrf(r))
        return;
    struct evbuffer *raw = evhttp_request_get_input_buffer(r->r);
    size_t rawlen = raw ? evbuffer_get_length(raw) : 0;
    if (rawlen > RELAY_MAX_REQ_BODY * 2 + 64 * 1024) {
        pt_portal_req_json_error(r, 413, "BodyTooLarge", "the console request is too large");
        return;
    }
    json_error_t jerr;
    json_t *in = rawlen ? json_loadb((const char *)evbuffer_pullup(raw, -1), rawlen, 0, &jerr) : NULL;
    if (!json_is_object(in)) {
        json_decref(in);
        pt_portal_req_json_error(
            r, 400, "InvalidRequestBody",
            "the body must be a JSON object {subscription, key, method, path, headers, body}");
        return;
    }
    json_t *sub = NULL, *api = NULL;
    enum evhttp_cmd_type cmd = EVHTTP_REQ_GET;
    struct gateway g;
    char full[RELAY_MAX_PATH + 600];
    if (!relay_checks(r, in, &sub, &api, &cmd, full, sizeof(full)))
        goto out;
    if (!gateway_of(&g)) {
        pt_portal_req_json_error(r, 503, "NoGateway",
                                 "portal.gatewayUrl is not an http:// URL the relay can use");
        goto out;
    }
    if (ninflight >= RELAY_MAX_INFLIGHT || user_inflight(r->user->id) >= RELAY_MAX_PER_USER) {
        pt_portal_req_json_error(r, 429, "TooManyCalls",
                                 "too many console calls at once; wait for one to finish");
        goto out;
    }
    const char *key_header =
        str(json_object_get(api, "subscriptionKeyParameterNames"), "header", "Ocp-Apim-Subscription-Key");
    const char *key =
        str(sub, !strcmp(str(in, "key", "primary"), "primary") ? "primaryKey" : "secondaryKey", "");

    struct relay *rl = calloc(1, sizeof(*rl));
    struct evhttp_connection *conn = rl ? gateway_conn(&g) : NULL;
    struct evhttp_request *req = conn ? evhttp_request_new(relay_done, rl) : NULL;
    if (!req) {
        if (conn)
            evhttp_connection_free(conn);
        free(rl);
        pt_portal_req_json_error(r, 500, "OutOfMemory", "the relay could not start the call");
        goto out;
    }
    evhttp_connection_set_timeout(conn, RELAY_TIMEOUT_S);
    evhttp_connection_set_retries(conn, 0);
    evhttp_connection_set_max_body_size(conn, RELAY_MAX_RESP_BODY);
    evhttp_connection_set_max_headers_size(conn, 64 * 1024);
    evhttp_request_set_error_cb(req, relay_error);
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    evhttp_add_header(oh, "Host", g.host_header);
    size_t i;
    json_t *pair;
    json_array_foreach(json_object_get(in, "headers"), i, pair)
    {
        const char *n = json_string_value(json_array_get(pair, 0));
        if (!reserved_header(n, key_header))
            evhttp_add_header(oh, n, json_string_value(json_array_get(pair, 1)));
    }
    evhttp_add_header(oh, key_header, key);
    evhttp_add_header(oh, "X-Forwarded-For", r->peer);
    evhttp_add_header(oh, "Connection", "close");
    const char *body = str(in, "body", "");
    if (*body || cmd == EVHTTP_REQ_POST || cmd == EVHTTP_REQ_PUT || cmd == EVHTTP_REQ_PATCH) {
        char cl[32];
        snprintf(cl, sizeof(cl), "%zu", strlen(body));
        evhttp_add_header(oh, "Content-Length", cl);
        evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    }
    char *target = malloc(strlen(g.base) + strlen(full) + 1);
    if (target)
        sprintf(target, "%s%s", g.base, full);
    rl->client = r->r;
    rl->conn = conn;
    rl->tls = g.tls;
    snprintf(rl->user, sizeof(rl->user), "%s", r->user->id);
    rl->start_us = pt_clock_now_us();
    if (!target || evhttp_make_request(conn, req, cmd, target) != 0) {
        /* evhttp_make_request frees req on failure */
        free(target);
        evhttp_connection_free(conn);
        free(rl);
        pt_portal_req_json_error(r, 502, "GatewayUnavailable", "the gateway could not be reached");
        goto out;
    }
    free(target);
    rl->next = inflight;
    inflight = rl;
    ninflight++;
    r->deferred = true; /* relay_done answers */
out:
    json_decref(api);
    json_decref(sub);
    json_decref(in);
}

/* GET /api/subscriptions?api=ID: the user's subscriptions whose keys open
   that API (all of theirs without api), for the console's select:
   {"value": [{id, name, state, product}]}, active ones first. */
void pt_portal_subs_api_list(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1;
    (void)a2;
    if (!r->user) {
        pt_portal_req_json_error(r, 401, "SignInRequired", "sign in to list your subscriptions");
        return;
    }
    const char *api = pt_portal_req_query(r, "api");
    json_t *subs = own_subs(r->user->id), *active = json_array(), *rest = json_array();
    size_t i;
    json_t *s;
    json_array_foreach(subs, i, s)
    {
        bool opens = !api;
        json_t *ids = api ? sub_apis(s) : NULL;
        size_t k;
        json_t *id;
        json_array_foreach(ids, k, id) opens |= !strcmp(json_string_value(id), api);
        json_decref(ids);
        if (!opens)
            continue;
        const char *state = state_of(s);
        json_array_append_new(!strcmp(state, "active") ? active : rest,
                              json_pack("{s:s,s:s,s:s,s:s?}", "id", str(s, "id", ""), "name",
                                        str(s, "displayName", str(s, "id", "")), "state", state, "product",
                                        scope_product(s)));
    }
    json_array_extend(active, rest);
    json_decref(rest);
    json_decref(subs);
    pt_portal_req_json(r, 200, json_pack("{s:o}", "value", active));
}

void pt_portal_subs_stop(void)
{
    /* the portal's listener is going: calls in flight are dropped (their
       browsers' connections close with the listener) */
    while (inflight) {
        struct relay *rl = inflight;
        inflight = rl->next;
        evhttp_connection_free(rl->conn);
        free(rl);
    }
    ninflight = 0;
    if (tls_ctx)
        SSL_CTX_free(tls_ctx);
    tls_ctx = NULL;
    tls_ctx_file = NULL;
}

/* ------------------------------------------------------------------ usage */

#define USAGE_MAX_ROWS 2000000 /* stored rows a usage query may read (as the reports) */
#define USAGE_MAX_GROUPS 500   /* rows in each breakdown table */

struct period {
    const char *name, *label;
    int points;
    int64_t step; /* seconds */
    const char *fmt;
};

static const struct period periods[] = {
    {"24h", "the last 24 hours", 24, 3600, "%H:00"},
    {"7d", "the last 7 days", 28, 6 * 3600, "%m-%d %H:00"},
    {"30d", "the last 30 days", 30, 86400, "%m-%d"},
    {"90d", "the last 90 days", 90, 86400, "%m-%d"},
};

struct series_acc {
    int64_t t0, step;
    int n;
    double *success, *blocked, *failed, *other, *bytes, *avg, *max, *calls;
};

static void add_time_row(void *arg, const struct pt_store_an_row *row)
{
    struct series_acc *a = arg;
    int64_t i = (row->ts - a->t0) / a->step;
    if (row->ts < a->t0 || i < 0 || i >= a->n)
        return;
    const struct pt_store_an_counts *c = &row->c;
    double calls = (double)(c->success + c->blocked + c->failed + c->other);
    a->success[i] += (double)c->success;
    a->blocked[i] += (double)c->blocked;
    a->failed[i] += (double)c->failed;
    a->other[i] += (double)c->other;
    a->bytes[i] += (double)c->bandwidth;
    a->avg[i] += (double)c->api_sum / 1000.0; /* a sum of ms until divided below */
    a->calls[i] += calls;
    if (calls > 0)
        a->max[i] = fmax(a->max[i], (double)c->api_max / 1000.0);
}

struct group_acc {
    json_t *rows; /* [{key, counts...}] */
    enum pt_store_an_by by;
};

static void add_group_row(void *arg, const struct pt_store_an_row *row)
{
    struct group_acc *g = arg;
    if (json_array_size(g->rows) >= USAGE_MAX_GROUPS)
        return;
    const char *key = g->by == PT_AN_BY_SUBSCRIPTION ? row->sub
                      : g->by == PT_AN_BY_PRODUCT    ? row->product
                                                     : row->api;
    const struct pt_store_an_counts *c = &row->c;
    json_int_t calls = c->success + c->blocked + c->failed + c->other;
    json_array_append_new(g->rows,
                          json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f}", "key", key ? key : "", "calls",
                                    calls, "success", (json_int_t)c->success, "blocked",
                                    (json_int_t)c->blocked, "failed", (json_int_t)c->failed, "other",
                                    (json_int_t)c->other, "bandwidth", (json_int_t)c->bandwidth, "avgMs",
                                    calls ? (double)c->api_sum / 1000.0 / (double)calls : 0.0, "maxMs",
                                    calls ? (double)c->api_max / 1000.0 : 0.0));
}

static void option(struct evbuffer *out, const char *value, const char *label, const char *selected)
{
    evbuffer_add_printf(out, "<option value=\"");
    pt_portal_render_esc(out, value);
    evbuffer_add_printf(out, "\"%s>", selected && !strcmp(selected, value) ? " selected" : "");
    pt_portal_render_esc(out, label);
    evbuffer_add_printf(out, "</option>");
}

static void usage_filter_form(struct pt_portal_req *r, const struct period *p, const json_t *subs,
                              const char *sub, const char *product, const char *api)
{
    evbuffer_add_printf(r->out, "<form method=\"get\" action=\"/usage\" id=\"usage-filter\"><label>Period "
                                "<select name=\"period\">");
    for (size_t i = 0; i < PT_ARRAY_LEN(periods); i++)
        option(r->out, periods[i].name, periods[i].label, p->name);
    evbuffer_add_printf(r->out, "</select></label> <label>Subscription <select name=\"subscription\">");
    option(r->out, "", "All", sub);
    json_t *products = json_object(), *apis = json_object();
    size_t i;
    json_t *s;
    json_array_foreach(subs, i, s)
    {
        option(r->out, str(s, "id", ""), str(s, "displayName", str(s, "id", "")), sub);
        const char *pid = scope_product(s);
        if (pid && !json_object_get(products, pid)) {
            char *pn = display_name("product", pid);
            json_object_set_new(products, pid, json_string(pn));
            free(pn);
        }
        json_t *ids = sub_apis(s);
        size_t k;
        json_t *id;
        json_array_foreach(ids, k, id)
        {
            if (json_object_size(apis) >= 500)
                break;
            if (!json_object_get(apis, json_string_value(id))) {
                char *an = display_name("api", json_string_value(id));
                json_object_set_new(apis, json_string_value(id), json_string(an));
                free(an);
            }
        }
        json_decref(ids);
    }
    evbuffer_add_printf(r->out, "</select></label> <label>Product <select name=\"product\">");
    option(r->out, "", "All", product);
    const char *k;
    json_t *v;
    json_object_foreach(products, k, v) option(r->out, k, json_string_value(v), product);
    evbuffer_add_printf(r->out, "</select></label> <label>API <select name=\"api\">");
    option(r->out, "", "All", api);
    json_object_foreach(apis, k, v) option(r->out, k, json_string_value(v), api);
    evbuffer_add_printf(r->out, "</select></label> <button type=\"submit\">Show</button></form>");
    json_decref(products);
    json_decref(apis);
}

static void fmt_bytes(char *buf, size_t size, double b)
{
    if (b >= 1048576)
        snprintf(buf, size, "%.1f MiB", b / 1048576);
    else if (b >= 1024)
        snprintf(buf, size, "%.1f KiB", b / 1024);
    else
        snprintf(buf, size, "%.0f B", b);
}

static void breakdown(struct pt_portal_req *r, const struct pt_store_an_query *base, enum pt_store_an_by by,
                      const char *table_id, const char *caption, const char *kind)
{
    struct pt_store_an_query q = *base;
    q.by = by;
    struct group_acc g = {json_array(), by};
    int n = pt_store_analytics_report(store(), &q, add_group_row, &g);
    evbuffer_add_printf(
        r->out,
        "<div class=\"table-wrap\" tabindex=\"0\" role=\"region\" aria-label=\"%s\"><table id=\"%s\" "
        "class=\"usage-table\"><caption>%s"
        "</caption><thead><tr><th scope=\"col\">%s</th><th scope=\"col\">Calls</th>"
        "<th scope=\"col\">Successful</th><th scope=\"col\">Blocked</th><th "
        "scope=\"col\">Failed</th><th scope=\"col\">Other</th><th "
        "scope=\"col\">Bandwidth</th><th scope=\"col\">Average time (ms)</th><th "
        "scope=\"col\">Longest time (ms)</th></tr></thead><tbody>",
        caption, table_id, caption,
        !strcmp(kind, "subscription") ? "Subscription"
        : !strcmp(kind, "product")    ? "Product"
                                      : "API");
    size_t i;
    json_t *row;
    json_array_foreach(g.rows, i, row)
    {
        const char *key = str(row, "key", "");
        char *name = display_name(kind, key);
        char bw[32];
        fmt_bytes(bw, sizeof(bw), (double)json_integer_value(json_object_get(row, "bandwidth")));
        evbuffer_add_printf(r->out, "<tr data-key=\"");
        pt_portal_render_esc(r->out, key);
        evbuffer_add_printf(r->out, "\"><th scope=\"row\">");
        pt_portal_render_esc(r->out, name);
        evbuffer_add_printf(
            r->out,
            "</th><td class=\"calls\">%lld</td><td class=\"success\">%lld</td><td "
            "class=\"blocked\">%lld</td><td class=\"failed\">%lld</td><td class=\"other\">%lld</td>"
            "<td class=\"bandwidth\" data-bytes=\"%lld\">%s</td><td class=\"avg\">%.1f</td><td "
            "class=\"max\">%.1f</td></tr>",
            (long long)json_integer_value(json_object_get(row, "calls")),
            (long long)json_integer_value(json_object_get(row, "success")),
            (long long)json_integer_value(json_object_get(row, "blocked")),
            (long long)json_integer_value(json_object_get(row, "failed")),
            (long long)json_integer_value(json_object_get(row, "other")),
            (long long)json_integer_value(json_object_get(row, "bandwidth")), bw,
            json_real_value(json_object_get(row, "avgMs")), json_real_value(json_object_get(row, "maxMs")));
        free(name);
    }
    if (n == 0)
        evbuffer_add_printf(r->out, "<tr><td colspan=\"9\">No calls in this period.</td></tr>");
    evbuffer_add_printf(r->out, "</tbody></table></div>");
    json_decref(g.rows);
}

/* A filter value from the query: short, id characters only; else NULL. */
static const char *id_param(struct pt_portal_req *r, const char *name)
{
    const char *v = pt_portal_req_query(r, name);
    if (!v || !*v || strlen(v) > 256)
        return NULL;
    for (const char *c = v; *c; c++)
        if (!(isalnum((unsigned char)*c) || strchr("-_.~", *c)))
            return NULL;
    return v;
}

void pt_portal_subs_usage(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1;
    (void)a2;
    if (!r->user) {
        pt_portal_req_redirect(r, "/signin", "Sign in to see your usage.");
        return;
    }
    const char *pname = pt_portal_req_query(r, "period");
    const struct period *p = &periods[0];
    for (size_t i = 0; pname && i < PT_ARRAY_LEN(periods); i++)
        if (!strcmp(periods[i].name, pname))
            p = &periods[i];
    const char *sub = id_param(r, "subscription"), *product = id_param(r, "product"),
               *api = id_param(r, "api");
    json_t *mine = sub ? own_sub(r, sub) : NULL;
    if (sub && !mine)
        sub = NULL; /* someone else's (or unknown): the filter is ignored, never widened */
    json_decref(mine);
    json_t *subs = own_subs(r->user->id);

    int64_t now = (int64_t)(pt_clock_wall_ms() / 1000);
    int64_t t0 = now - now % p->step - (int64_t)(p->points - 1) * p->step;
    struct pt_store_an_query q = {
        .by = PT_AN_BY_TIME,
        .from = t0 * 1000,
        .to = (now + 1) * 1000,
        .api = api,
        .product = product,
        .sub = sub,
        .user = r->user->id, /* only ever the signed-in user's calls */
        .interval = p->step,
        .max_rows = USAGE_MAX_ROWS,
    };
    int n = p->points;
    double *buf = calloc((size_t)n * 8, sizeof(double));
    const char **labels = calloc((size_t)n, sizeof(char *));
    char(*text)[32] = calloc((size_t)n, 32);
    if (!buf || !labels || !text) {
        free(buf);
        free(labels);
        free(text);
        json_decref(subs);
        pt_portal_render_not_found(r);
        return;
    }
    struct series_acc a = {t0,          p->step,     n,           buf,         buf + n,    buf + 2 * n,
                           buf + 3 * n, buf + 4 * n, buf + 5 * n, buf + 6 * n, buf + 7 * n};
    int rc = pt_store_analytics_report(store(), &q, add_time_row, &a);
    double total[5] = {0};
    for (int i = 0; i < n; i++) {
        a.avg[i] = a.calls[i] > 0 ? a.avg[i] / a.calls[i] : 0;
        total[0] += a.success[i];
        total[1] += a.blocked[i];
        total[2] += a.failed[i];
        total[3] += a.other[i];
        total[4] += a.bytes[i];
        time_t t = (time_t)(t0 + (int64_t)i * p->step);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(text[i], 32, p->fmt, &tm);
        labels[i] = text[i];
    }

    pt_portal_render_begin(r, "Your usage");
    stylesheet(r);
    evbuffer_add_printf(r->out, "<h1>Your usage</h1>");
    usage_filter_form(r, p, subs, sub, product, api);
    if (!file()->analytics.enabled)
        evbuffer_add_printf(r->out, "<p class=\"error\" role=\"alert\">The provider keeps no usage records "
                                    "(analytics is off): calls are not counted.</p>");
    if (rc == -2)
        evbuffer_add_printf(r->out, "<p class=\"error\" role=\"alert\">There are too many records to chart; "
                                    "pick a shorter period or a filter.</p>");
    else if (rc < 0)
        evbuffer_add_printf(r->out, "<p class=\"error\" role=\"alert\">The usage records cannot be read "
                                    "now.</p>");
    char bw[32];
    fmt_bytes(bw, sizeof(bw), total[4]);
    evbuffer_add_printf(
        r->out,
        "<p class=\"usage-period\">Period: %s (times in UTC); your own subscriptions only.</p><dl "
        "id=\"usage-totals\">"
        "<div><dt>Calls</dt><dd data-total=\"calls\">%.0f</dd></div>"
        "<div><dt>Successful</dt><dd data-total=\"success\">%.0f</dd></div>"
        "<div><dt>Blocked</dt><dd data-total=\"blocked\">%.0f</dd></div>"
        "<div><dt>Failed</dt><dd data-total=\"failed\">%.0f</dd></div>"
        "<div><dt>Other</dt><dd data-total=\"other\">%.0f</dd></div>"
        "<div><dt>Bandwidth</dt><dd data-total=\"bandwidth\" data-bytes=\"%.0f\">%s</dd></div></dl>",
        p->label, total[0] + total[1] + total[2] + total[3], total[0], total[1], total[2], total[3], total[4],
        bw);
    struct pt_portal_series outcome[] = {
        {"Successful", "var(--chart-success)", a.success},
        {"Blocked", "var(--chart-blocked)", a.blocked},
        {"Failed", "var(--chart-failed)", a.failed},
        {"Other", "var(--chart-other)", a.other},
    };
    struct pt_portal_series bytes[] = {{"Bandwidth", "var(--chart-bandwidth)", a.bytes}};
    struct pt_portal_series times[] = {{"Average", "var(--chart-average)", a.avg},
                                       {"Longest", "var(--chart-longest)", a.max}};
    evbuffer_add_printf(r->out, "<section id=\"usage-calls\"><h2>Calls by outcome</h2>");
    pt_portal_chart_svg(r->out, "Calls by outcome", labels, n, outcome, 4, true, "calls");
    evbuffer_add_printf(r->out, "</section><section id=\"usage-bandwidth\"><h2>Bandwidth</h2>");
    pt_portal_chart_svg(r->out, "Bandwidth", labels, n, bytes, 1, true, "bytes");
    evbuffer_add_printf(r->out, "</section><section id=\"usage-time\"><h2>Response time</h2>");
    pt_portal_chart_svg(r->out, "Response time", labels, n, times, 2, false, "ms");
    evbuffer_add_printf(r->out, "</section><section id=\"usage-breakdown\"><h2>By subscription, product and "
                                "API</h2>");
    breakdown(r, &q, PT_AN_BY_SUBSCRIPTION, "usage-by-subscription", "By subscription", "subscription");
    breakdown(r, &q, PT_AN_BY_PRODUCT, "usage-by-product", "By product", "product");
    breakdown(r, &q, PT_AN_BY_API, "usage-by-api", "By API", "api");
    evbuffer_add_printf(r->out, "</section>");
    pt_portal_render_end(r);
    free(buf);
    free(labels);
    free(text);
    json_decref(subs);
}
