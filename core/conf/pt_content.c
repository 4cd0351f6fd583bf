/*
 * pt_content -- the portal's content in the store (see pt_content.h).
 *
 * Checks work on nodes, so one function reports file:line:column for the
 * configuration file and a path ("pages[1].title") for a management body.
 * Values that end up in CSS (colors, fonts) are held to short patterns that
 * cannot close a declaration; Markdown and HTML are kept as written and
 * sanitized when they are shown (pt_portal_content.c).
 */
#include "conf/pt_content.h"

#include "base/pt_log.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The mail templates one may store (http/pt_mail.c has their built-in
   text; this layer only needs the names). */
static const char *const template_ids[] = {
    "confirm-signup",        "reset-password",        "invite", "subscription-submitted",
    "subscription-approved", "subscription-rejected", NULL};

/* ------------------------------------------------------------ defaults */

json_t *pt_content_default_site(void)
{
    return json_pack("{s:s, s:n, s:n, s:{s:s, s:s, s:s, s:s}, s:{s:s, s:s}, s:s, s:s, s:s, s:b, s:b}",
                     "title", "Portico developer portal", "logo", "favicon", "colors", "primary", "#1f5fbf",
                     "background", "#ffffff", "text", "#1b1f24", "link", "#1f5fbf", "fonts", "body",
                     "system-ui, sans-serif", "heading", "system-ui, sans-serif", "customCss", "", "home",
                     "# Welcome\n\nBrowse the [APIs](/apis) and [products](/products).", "terms", "",
                     "signupEnabled", 1, "requireSignin", 0);
}

json_t *pt_content_site_full(const json_t *site)
{
    json_t *full = pt_content_default_site();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)site, k, v)
    {
        json_t *d = json_object_get(full, k);
        if (json_is_object(d) && json_is_object(v))
            json_object_update(d, v);
        else if (d)
            json_object_set(full, k, v);
    }
    return full;
}

/* ------------------------------------------------------------ checks */

static bool scalar(const struct pt_node *n)
{
    return n && n->kind == PT_N_SCALAR && !n->null;
}

static bool is_bool(const struct pt_node *n)
{
    return scalar(n) && !n->quoted && (!strcmp(n->str, "true") || !strcmp(n->str, "false"));
}

static bool is_int(const struct pt_node *n, long long lo, long long hi, long long *out)
{
    if (!scalar(n) || n->quoted || !*n->str)
        return false;
    char *end;
    long long v = strtoll(n->str, &end, 10);
    if (*end || v < lo || v > hi)
        return false;
    if (out)
        *out = v;
    return true;
}

/* A text field: any scalar (a YAML number is read as its text), at most max
   bytes, valid UTF-8 without NUL. */
static bool text_ok(const struct pt_node *n, size_t max, struct pt_errors *errs)
{
    if (!scalar(n)) {
        pt_node_error(errs, n, "expected text, found %s", n ? pt_node_kind_name(n) : "nothing");
        return false;
    }
    if (n->len > max || strlen(n->str) != n->len) {
        pt_node_error(errs, n, "at most %zu bytes of text (without NUL)", max);
        return false;
    }
    return true;
}

bool pt_content_id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > 80 || id[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)id[i]) && !strchr("._-", id[i]))
            return false;
    return true;
}

/* A CSS color: #rgb, #rgba, #rrggbb, #rrggbbaa, a name, or rgb()/hsl() of
   numbers: nothing that could end the declaration it is written in. */
static bool color_ok(const char *s)
{
    size_t n = strlen(s);
    if (s[0] == '#') {
        if (n != 4 && n != 5 && n != 7 && n != 9)
            return false;
        for (size_t i = 1; i < n; i++)
            if (!isxdigit((unsigned char)s[i]))
                return false;
        return true;
    }
    if (n == 0 || n > 60)
        return false;
    const char *paren = strchr(s, '(');
    if (!paren) {
        for (size_t i = 0; i < n; i++)
            if (!isalpha((unsigned char)s[i]))
                return false;
        return true;
    }
    size_t fn = (size_t)(paren - s);
    if (!((fn == 3 && (!strncmp(s, "rgb", 3) || !strncmp(s, "hsl", 3))) ||
          (fn == 4 && (!strncmp(s, "rgba", 4) || !strncmp(s, "hsla", 4)))) ||
        s[n - 1] != ')')
        return false;
    for (const char *p = paren + 1; p < s + n - 1; p++)
        if (!isdigit((unsigned char)*p) && !strchr(" ,.%/", *p) && strncmp(p, "deg", 3))
            return false;
        else if (!strncmp(p, "deg", 3))
            p += 2;
    return true;
}

/* A font-family list: names of letters, digits, spaces and '-', quoted in
   single quotes or not, separated by commas. */
static bool font_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 200)
        return false;
    int quotes = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\'')
            quotes++;
        else if (!isalnum((unsigned char)s[i]) && !strchr(" ,-_", s[i]))
            return false;
    }
    return quotes % 2 == 0;
}

static bool group_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
            return false;
    return true;
}

static bool check_map(const struct pt_node *n, const char *what, struct pt_errors *errs)
{
    if (!n || n->kind != PT_N_MAP) {
        pt_node_error(errs, n, "%s: expected a map, found %s", what, n ? pt_node_kind_name(n) : "nothing");
        return false;
    }
    return true;
}

static bool check_media_ref(const struct pt_node *v, struct pt_errors *errs)
{
    if (v->kind == PT_N_SCALAR && v->null)
        return true;
    if (!scalar(v) || !pt_content_id_ok(v->str)) {
        pt_node_error(errs, v, "expected a media id (letters, digits, '.', '_', '-') or null");
        return false;
    }
    return true;
}

bool pt_content_check_site(const struct pt_node *n, struct pt_errors *errs)
{
    if (!check_map(n, "site", errs))
        return false;
    int before = errs->n;
    for (int i = 0; i < n->n; i++) {
        const char *k = pt_node_key(n, i)->str;
        const struct pt_node *v = pt_node_val(n, i);
        if (!strcmp(k, "title")) {
            if (text_ok(v, 200, errs) && !*v->str)
                pt_node_error(errs, v, "may not be empty");
        } else if (!strcmp(k, "logo") || !strcmp(k, "favicon")) {
            check_media_ref(v, errs);
        } else if (!strcmp(k, "colors") || !strcmp(k, "fonts")) {
            bool colors = k[0] == 'c';
            if (!check_map(v, k, errs))
                continue;
            for (int j = 0; j < v->n; j++) {
                const char *ck = pt_node_key(v, j)->str;
                const struct pt_node *cv = pt_node_val(v, j);
                static const char *const ckeys[] = {"primary", "background", "text", "link", NULL};
                static const char *const fkeys[] = {"body", "heading", NULL};
                bool known = false;
                for (const char *const *q = colors ? ckeys : fkeys; *q; q++)
                    known |= !strcmp(*q, ck);
                if (!known) {
                    pt_node_error(errs, pt_node_key(v, j), "%s: unknown key '%s' (%s)", k, ck,
                                  colors ? "primary, background, text, link" : "body, heading");
                } else if (!text_ok(cv, 200, errs)) {
                } else if (colors ? !color_ok(cv->str) : !font_ok(cv->str)) {
                    pt_node_error(
                        errs, cv, "%s",
                        colors ? "not a color (#rgb, #rrggbb, a name, rgb(...) or hsl(...))"
                               : "not a font list (names of letters, digits, spaces and '-', in single "
                                 "quotes or not, separated by commas)");
                }
            }
        } else if (!strcmp(k, "customCss")) {
            text_ok(v, PT_CONTENT_CSS_MAX, errs); /* served alone as text/css, never inside HTML */
        } else if (!strcmp(k, "home") || !strcmp(k, "terms")) {
            if (!(v->kind == PT_N_SCALAR && v->null && !strcmp(k, "terms")))
                text_ok(v, PT_CONTENT_TEXT_MAX, errs);
        } else if (!strcmp(k, "signupEnabled") || !strcmp(k, "requireSignin")) {
            if (!is_bool(v))
                pt_node_error(errs, v, "expected true or false");
        } else {
            pt_node_error(
                errs, pt_node_key(n, i),
                "site: unknown key '%s' (title, logo, favicon, colors, fonts, customCss, home, terms, "
                "signupEnabled, requireSignin)",
                k);
        }
    }
    return errs->n == before;
}

bool pt_content_check_page(const struct pt_node *n, const char *id, struct pt_errors *errs)
{
    if (!check_map(n, "page", errs))
        return false;
    int before = errs->n;
    const struct pt_node *idn = pt_node_get(n, "id");
    if (idn && (!scalar(idn) || !pt_content_id_ok(idn->str)))
        pt_node_error(errs, idn, "1 to 80 letters, digits, '.', '_' or '-' (not starting with '.')");
    else if (!idn && !id)
        pt_node_error(errs, n, "page: id is required");
    else if (idn && id && strcmp(idn->str, id))
        pt_node_error(errs, idn, "'%s' is not the page's id '%s'", idn->str, id);
    const struct pt_node *title = pt_node_get(n, "title");
    if (!title)
        pt_node_error(errs, n, "page: title is required");
    bool md = false, html = false;
    for (int i = 0; i < n->n; i++) {
        const char *k = pt_node_key(n, i)->str;
        const struct pt_node *v = pt_node_val(n, i);
        if (!strcmp(k, "id")) {
        } else if (!strcmp(k, "title")) {
            if (text_ok(v, 200, errs) && !*v->str)
                pt_node_error(errs, v, "may not be empty");
        } else if (!strcmp(k, "markdown") || !strcmp(k, "html")) {
            *(k[0] == 'm' ? &md : &html) = true;
            text_ok(v, PT_CONTENT_TEXT_MAX, errs);
        } else if (!strcmp(k, "groups")) {
            if (v->kind != PT_N_SEQ || v->n > 64) {
                pt_node_error(errs, v, "expected a list of at most 64 group ids");
                continue;
            }
            for (int j = 0; j < v->n; j++)
                if (!scalar(v->items[j]) || !group_id_ok(v->items[j]->str))
                    pt_node_error(errs, v->items[j], "not a group id");
        } else if (!strcmp(k, "menuOrder")) {
            if (!(v->kind == PT_N_SCALAR && v->null) && !is_int(v, -100000, 100000, NULL))
                pt_node_error(errs, v, "expected a whole number (-100000 to 100000) or null");
        } else {
            pt_node_error(errs, pt_node_key(n, i),
                          "page: unknown key '%s' (id, title, markdown, html, groups, menuOrder)", k);
        }
    }
    if (md && html)
        pt_node_error(errs, n, "page: give markdown or html, not both");
    return errs->n == before;
}

bool pt_content_check_template(const struct pt_node *n, const char *id, struct pt_errors *errs)
{
    if (!check_map(n, "template", errs))
        return false;
    int before = errs->n;
    const struct pt_node *idn = pt_node_get(n, "id");
    const char *tid = idn && scalar(idn) ? idn->str : id;
    bool known = false;
    for (const char *const *t = template_ids; tid && *t; t++)
        known |= !strcmp(*t, tid);
    if (!known)
        pt_node_error(errs, idn ? idn : n,
                      "template: id must be one of confirm-signup, reset-password, invite, "
                      "subscription-submitted, subscription-approved, subscription-rejected");
    else if (idn && id && strcmp(idn->str, id))
        pt_node_error(errs, idn, "'%s' is not the template's id '%s'", idn->str, id);
    for (int i = 0; i < n->n; i++) {
        const char *k = pt_node_key(n, i)->str;
        const struct pt_node *v = pt_node_val(n, i);
        if (!strcmp(k, "subject"))
            text_ok(v, 900, errs);
        else if (!strcmp(k, "body"))
            text_ok(v, 64 * 1024, errs);
        else if (strcmp(k, "id"))
            pt_node_error(errs, pt_node_key(n, i), "template: unknown key '%s' (id, subject, body)", k);
    }
    return errs->n == before;
}

bool pt_content_check_file(const struct pt_portal_cf *p, struct pt_errors *errs)
{
    int before = errs->n;
    if (p->site_node)
        pt_content_check_site(p->site_node, errs);
    if (p->pages_node && p->pages_node->kind == PT_N_SEQ) {
        if (p->pages_node->n > PT_CONTENT_PAGES_MAX)
            pt_node_error(errs, p->pages_node, "pages: at most %d", PT_CONTENT_PAGES_MAX);
        for (int i = 0; i < p->pages_node->n; i++) {
            const struct pt_node *pg = p->pages_node->items[i];
            pt_content_check_page(pg, NULL, errs);
            const struct pt_node *id = pg->kind == PT_N_MAP ? pt_node_get(pg, "id") : NULL;
            for (int j = 0; id && scalar(id) && j < i; j++) {
                const struct pt_node *other = p->pages_node->items[j];
                const struct pt_node *oid = other->kind == PT_N_MAP ? pt_node_get(other, "id") : NULL;
                if (oid && scalar(oid) && !strcmp(oid->str, id->str))
                    pt_node_error(errs, id, "the page id '%s' is used twice", id->str);
            }
        }
    }
    if (p->templates_node && p->templates_node->kind == PT_N_SEQ)
        for (int i = 0; i < p->templates_node->n; i++)
            pt_content_check_template(p->templates_node->items[i], NULL, errs);
    return errs->n == before;
}

/* Text fields as JSON strings whatever YAML made of them. */
static void stringify(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        json_object_set_new(o, key, json_sprintf("%lld", (long long)json_integer_value(v)));
    else if (json_is_real(v))
        json_object_set_new(o, key, json_sprintf("%g", json_real_value(v)));
    else if (json_is_boolean(v))
        json_object_set_new(o, key, json_string(json_is_true(v) ? "true" : "false"));
}

json_t *pt_content_site_json(const struct pt_node *n)
{
    json_t *j = pt_node_to_json(n);
    static const char *const keys[] = {"title", "customCss", "home", "terms", "logo", "favicon"};
    for (size_t i = 0; j && i < PT_ARRAY_LEN(keys); i++)
        stringify(j, keys[i]);
    json_t *c = json_object_get(j, "colors"), *f = json_object_get(j, "fonts");
    const char *k;
    json_t *v;
    json_object_foreach(c, k, v) stringify(c, k);
    json_object_foreach(f, k, v) stringify(f, k);
    return j;
}

json_t *pt_content_page_json(const struct pt_node *n, const char *id)
{
    json_t *j = pt_node_to_json(n);
    if (!j)
        return NULL;
    static const char *const keys[] = {"id", "title", "markdown", "html"};
    for (size_t i = 0; i < PT_ARRAY_LEN(keys); i++)
        stringify(j, keys[i]);
    if (id)
        json_object_set_new(j, "id", json_string(id));
    if (!json_object_get(j, "groups"))
        json_object_set_new(j, "groups", json_array());
    if (!json_object_get(j, "menuOrder"))
        json_object_set_new(j, "menuOrder", json_null());
    json_t *g = json_object_get(j, "groups");
    size_t i;
    json_t *x;
    json_array_foreach(g, i, x) if (!json_is_string(x))
    {
        char buf[64];
        snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(x));
        json_array_set_new(g, i, json_string(buf));
    }
    return j;
}

/* ------------------------------------------------------------ the draft */

static bool collect(void *arg, const struct pt_entity *e)
{
    json_array_append(arg, e->body);
    return true;
}

/* menuOrder (null last), then id. */
static int page_cmp(const void *a, const void *b)
{
    const json_t *x = *(const json_t *const *)a, *y = *(const json_t *const *)b;
    const json_t *mx = json_object_get(x, "menuOrder"), *my = json_object_get(y, "menuOrder");
    if (json_is_integer(mx) != json_is_integer(my))
        return json_is_integer(mx) ? -1 : 1;
    if (json_is_integer(mx) && json_integer_value(mx) != json_integer_value(my))
        return json_integer_value(mx) < json_integer_value(my) ? -1 : 1;
    return strcmp(
        json_string_value(json_object_get(x, "id")) ? json_string_value(json_object_get(x, "id")) : "",
        json_string_value(json_object_get(y, "id")) ? json_string_value(json_object_get(y, "id")) : "");
}

static json_t *sorted_pages(json_t *pages)
{
    size_t n = json_array_size(pages);
    if (n < 2)
        return pages;
    json_t **v = malloc(n * sizeof(*v));
    if (!v)
        return pages;
    for (size_t i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(pages, i));
    qsort(v, n, sizeof(*v), page_cmp);
    json_array_clear(pages);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(pages, v[i]);
    free(v);
    return pages;
}

json_t *pt_content_draft(struct pt_store *st)
{
    json_t *site = NULL;
    if (!pt_store_get(st, PT_CONTENT_SITE_KIND, "", "site", &site, NULL))
        site = json_object();
    json_t *pages = json_array();
    pt_store_each(st, PT_CONTENT_PAGE_KIND, "", collect, pages);
    return json_pack("{s:o, s:o}", "site", site, "pages", sorted_pages(pages));
}

bool pt_content_put_site(struct pt_store *st, const json_t *site, const char *source)
{
    return pt_store_put(st, PT_CONTENT_SITE_KIND, "", "site", "", site, source, NULL);
}

bool pt_content_put_page(struct pt_store *st, const json_t *page, const char *source)
{
    const char *id = json_string_value(json_object_get(page, "id"));
    return id && pt_store_put(st, PT_CONTENT_PAGE_KIND, "", id, "", page, source, NULL);
}

bool pt_content_from_file(struct pt_store *st, const char *kind, const char *id)
{
    char src[16];
    return pt_store_info(st, kind, "", id, src, NULL) && !strcmp(src, "config");
}

/* ------------------------------------------------------------ revisions */

/* Revision ids are zero-padded so that the store's id order is their order. */
static void rev_id(int64_t n, char out[24])
{
    snprintf(out, 24, "%012lld", (long long)n);
}

static bool newest(void *arg, const struct pt_entity *e)
{
    int64_t *n = arg;
    int64_t v = strtoll(e->id, NULL, 10);
    if (v > *n)
        *n = v;
    return true;
}

/* The newest revision's number is also kept in one small entity, so that
   the portal learns it without reading every revision. */
#define STATE_KIND "portal-state"

int64_t pt_content_latest(struct pt_store *st)
{
    json_t *j = NULL;
    int64_t n = 0;
    if (pt_store_get(st, STATE_KIND, "", "published", &j, NULL)) {
        n = json_integer_value(json_object_get(j, "revision"));
        json_decref(j);
        return n;
    }
    pt_store_each(st, PT_CONTENT_REVISION_KIND, "", newest, &n);
    return n;
}

json_t *pt_content_revision(struct pt_store *st, int64_t n)
{
    char id[24];
    json_t *b = NULL;
    if (n <= 0)
        return NULL;
    rev_id(n, id);
    return pt_store_get(st, PT_CONTENT_REVISION_KIND, "", id, &b, NULL) ? b : NULL;
}

static bool summary(void *arg, const struct pt_entity *e)
{
    json_t *s = json_deep_copy(e->body);
    json_object_del(s, "site");
    json_object_del(s, "pages");
    json_array_insert_new(arg, 0, s); /* newest first */
    return true;
}

json_t *pt_content_revisions(struct pt_store *st)
{
    json_t *list = json_array();
    pt_store_each(st, PT_CONTENT_REVISION_KIND, "", summary, list);
    return list;
}

struct old_revs {
    int64_t below;
    char ids[64][24];
    int n;
};

static bool old_rev(void *arg, const struct pt_entity *e)
{
    struct old_revs *o = arg;
    if (strtoll(e->id, NULL, 10) < o->below && o->n < 64)
        snprintf(o->ids[o->n++], 24, "%s", e->id);
    return o->n < 64;
}

/* Writes {site, pages} as revision latest+1. */
static int64_t add_revision(struct pt_store *st, json_t *site, json_t *pages, const char *comment,
                            const char *author)
{
    int64_t n = pt_content_latest(st) + 1;
    char id[24], ts[48];
    rev_id(n, id);
    pt_log_format_time(ts, pt_clock_wall_ms());
    json_t *rev =
        json_pack("{s:I, s:s, s:s, s:s, s:O, s:O}", "id", (json_int_t)n, "comment", comment ? comment : "",
                  "author", author ? author : "", "created", ts, "site", site, "pages", pages);
    bool ok = rev && pt_store_put(st, PT_CONTENT_REVISION_KIND, "", id, "", rev, "api", NULL);
    json_decref(rev);
    json_t *state = json_pack("{s:I}", "revision", (json_int_t)n);
    ok = ok && state && pt_store_put(st, STATE_KIND, "", "published", "", state, "api", NULL);
    json_decref(state);
    if (!ok)
        return 0;
    /* a bounded history: the oldest ones go (a few per publish) */
    struct old_revs o = {.below = n - PT_CONTENT_REVISIONS_KEPT + 1};
    if (o.below > 1) {
        pt_store_each(st, PT_CONTENT_REVISION_KIND, "", old_rev, &o);
        for (int i = 0; i < o.n; i++)
            pt_store_delete(st, PT_CONTENT_REVISION_KIND, "", o.ids[i]);
    }
    return n;
}

int64_t pt_content_publish(struct pt_store *st, const char *comment, const char *author)
{
    json_t *d = pt_content_draft(st);
    int64_t n = add_revision(st, json_object_get(d, "site"), json_object_get(d, "pages"), comment, author);
    json_decref(d);
    return n;
}

struct del_list {
    char ids[PT_CONTENT_PAGES_MAX + 16][96];
    int n;
};

static bool page_ids(void *arg, const struct pt_entity *e)
{
    struct del_list *d = arg;
    if (d->n < (int)PT_ARRAY_LEN(d->ids))
        snprintf(d->ids[d->n++], sizeof(d->ids[0]), "%s", e->id);
    return true;
}

int64_t pt_content_restore(struct pt_store *st, int64_t n, const char *author)
{
    json_t *rev = pt_content_revision(st, n);
    if (!rev)
        return 0;
    /* the draft becomes the revision: its site, and exactly its pages (those
       the file declares stay as the file says) */
    bool ok = true;
    if (!pt_content_from_file(st, PT_CONTENT_SITE_KIND, "site"))
        ok &= pt_content_put_site(st, json_object_get(rev, "site"), "api");
    struct del_list *d = calloc(1, sizeof(*d));
    ok &= d != NULL;
    if (d) {
        pt_store_each(st, PT_CONTENT_PAGE_KIND, "", page_ids, d);
        for (int i = 0; ok && i < d->n; i++)
            if (!pt_content_from_file(st, PT_CONTENT_PAGE_KIND, d->ids[i]))
                ok &= pt_store_delete(st, PT_CONTENT_PAGE_KIND, "", d->ids[i]);
        free(d);
    }
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(rev, "pages"), i, p)
    {
        const char *id = json_string_value(json_object_get(p, "id"));
        if (ok && id && !pt_content_from_file(st, PT_CONTENT_PAGE_KIND, id))
            ok &= pt_content_put_page(st, p, "api");
    }
    json_decref(rev);
    if (!ok)
        return 0;
    char comment[64];
    snprintf(comment, sizeof(comment), "restored revision %lld", (long long)n);
    return pt_content_publish(st, comment, author);
}

/* ------------------------------------------------------------ media */

const char *pt_content_media_type(const unsigned char *b, size_t n)
{
    if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8))
        return "image/png";
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return "image/jpeg";
    if (n >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6)))
        return "image/gif";
    if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4))
        return "image/webp";
    if (n >= 6 && b[0] == 0 && b[1] == 0 && b[2] == 1 && b[3] == 0 && (b[4] || b[5]))
        return "image/x-icon";
    return NULL;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64(const unsigned char *s, size_t n)
{
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v =
            (unsigned)s[i] << 16 | (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0) | (i + 2 < n ? s[i + 2] : 0);
        *o++ = b64[(v >> 18) & 63];
        *o++ = b64[(v >> 12) & 63];
        *o++ = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? b64[v & 63] : '=';
    }
    *o = 0;
    return out;
}

static unsigned char *unbase64(const char *s, size_t *n)
{
    size_t len = strlen(s);
    unsigned char *out = malloc(len / 4 * 3 + 3), *o = out;
    if (!out)
        return NULL;
    unsigned v = 0;
    int bits = 0;
    for (; *s && *s != '='; s++) {
        const char *p = strchr(b64, *s);
        if (!p) {
            free(out);
            return NULL;
        }
        v = v << 6 | (unsigned)(p - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = (unsigned char)(v >> bits);
        }
    }
    *n = (size_t)(o - out);
    return out;
}

bool pt_content_media_put(struct pt_store *st, const char *id, const char *type, const unsigned char *b,
                          size_t n, char etag[24])
{
    char *data = base64(b, n);
    char ts[48];
    pt_log_format_time(ts, pt_clock_wall_ms());
    json_t *j = data ? json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", id, "contentType", type, "size",
                                 (json_int_t)n, "created", ts, "data", data)
                     : NULL;
    free(data);
    bool ok = j && pt_store_put(st, PT_CONTENT_MEDIA_KIND, "", id, "", j, "api", etag);
    json_decref(j);
    return ok;
}

bool pt_content_media_get(struct pt_store *st, const char *id, char type[64], unsigned char **b, size_t *n,
                          char etag[24])
{
    json_t *j = NULL;
    char tag[24];
    if (!pt_store_get(st, PT_CONTENT_MEDIA_KIND, "", id, &j, tag))
        return false;
    const char *t = json_string_value(json_object_get(j, "contentType"));
    const char *d = json_string_value(json_object_get(j, "data"));
    *b = d ? unbase64(d, n) : NULL;
    snprintf(type, 64, "%s", t ? t : "application/octet-stream");
    if (etag)
        memcpy(etag, tag, 24);
    json_decref(j);
    return *b != NULL;
}

static bool media_meta(void *arg, const struct pt_entity *e)
{
    json_t *m = json_deep_copy(e->body);
    json_object_del(m, "data");
    json_array_append_new(arg, m);
    return true;
}

json_t *pt_content_media_list(struct pt_store *st)
{
    json_t *list = json_array();
    pt_store_each(st, PT_CONTENT_MEDIA_KIND, "", media_meta, list);
    return list;
}

/* ------------------------------------------------------------ apply and export */

static bool owned_page(void *arg, const struct pt_entity *e)
{
    if (!strcmp(e->source, "config"))
        json_array_append_new(arg, json_string(e->id));
    return true;
}

static bool in_array(const json_t *a, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) if (!strcmp(json_string_value(v) ? json_string_value(v) : "", s)) return true;
    return false;
}

static bool writable(struct pt_store *st, const char *source, const char *kind, const char *id,
                     const struct pt_node *where, struct pt_errors *errs)
{
    if (strcmp(source, "config") && pt_content_from_file(st, kind, id)) {
        pt_node_error(errs, where, "portal %s '%s' is declared in the configuration file; change it there",
                      kind + strlen("portal-"), id);
        return false;
    }
    return true;
}

bool pt_content_apply(struct pt_store *st, const struct pt_conf *f, const char *source,
                      struct pt_errors *errs)
{
    const struct pt_portal_cf *p = &f->portal;
    bool file = !strcmp(source, "config");
    if (!p->site_node && !p->pages_node && !p->templates_node && !file)
        return true;
    if (!pt_content_check_file(p, errs))
        return false;
    bool ok = true;
    json_t *before = json_array(); /* pages the file owned before */
    pt_store_each(st, PT_CONTENT_PAGE_KIND, "", owned_page, before);
    json_t *file_pages = json_array();
    json_t *site = NULL;
    if (p->site_node && writable(st, source, PT_CONTENT_SITE_KIND, "site", p->site_node, errs)) {
        site = pt_content_site_json(p->site_node);
        ok &= site && pt_content_put_site(st, site, source);
    } else if (p->site_node) {
        ok = false;
    }
    for (int i = 0; ok && p->pages_node && i < p->pages_node->n; i++) {
        const struct pt_node *pg = p->pages_node->items[i];
        json_t *j = pt_content_page_json(pg, NULL);
        const char *id = json_string_value(json_object_get(j, "id"));
        if (!id || !writable(st, source, PT_CONTENT_PAGE_KIND, id, pg, errs))
            ok = false;
        else
            ok &= pt_content_put_page(st, j, source);
        json_array_append_new(file_pages, j);
    }
    for (int i = 0; ok && p->templates_node && i < p->templates_node->n; i++) {
        const struct pt_node *tn = p->templates_node->items[i];
        json_t *j = pt_node_to_json(tn);
        stringify(j, "subject");
        stringify(j, "body");
        const char *id = json_string_value(json_object_get(j, "id"));
        if (!id || !writable(st, source, PT_CONTENT_TEMPLATE_KIND, id, tn, errs))
            ok = false;
        else
            ok &= pt_store_put(st, PT_CONTENT_TEMPLATE_KIND, "", id, "", j, source, NULL);
        json_decref(j);
    }
    /* what is published: the newest revision with the document's parts put
       in (pages the file dropped taken out); a new revision only when that
       differs */
    if (ok) {
        int64_t latest = pt_content_latest(st);
        json_t *rev = pt_content_revision(st, latest);
        json_t *pub_site = rev ? json_incref(json_object_get(rev, "site")) : json_object();
        json_t *pub_pages = rev ? json_deep_copy(json_object_get(rev, "pages")) : json_array();
        if (site)
            json_decref(pub_site), pub_site = json_incref(site);
        json_t *out = json_array();
        size_t i;
        json_t *pg;
        json_array_foreach(pub_pages, i, pg)
        {
            const char *id = json_string_value(json_object_get(pg, "id"));
            bool replaced = false, dropped = file && id && in_array(before, id);
            size_t k;
            json_t *fp;
            json_array_foreach(file_pages, k,
                               fp) if (id && !strcmp(id, json_string_value(json_object_get(fp, "id"))))
                replaced = true;
            if (!replaced && !dropped)
                json_array_append(out, pg);
        }
        json_array_extend(out, file_pages);
        sorted_pages(out);
        json_t *was = rev ? sorted_pages(json_deep_copy(json_object_get(rev, "pages"))) : NULL;
        bool same = rev && json_equal(json_object_get(rev, "site"), pub_site) && json_equal(was, out);
        json_decref(was);
        if (!same && (site || json_array_size(file_pages) || json_array_size(before) || rev))
            ok = add_revision(st, pub_site, out, file ? "configuration file" : "applied document",
                              file ? "config" : "management") > 0;
        json_decref(pub_site);
        json_decref(pub_pages);
        json_decref(out);
        json_decref(rev);
    }
    json_decref(site);
    json_decref(before);
    json_decref(file_pages);
    return ok;
}

struct export_ctx {
    json_t *list;
    const char *only;
};

static bool export_one(void *arg, const struct pt_entity *e)
{
    struct export_ctx *x = arg;
    if (!x->only || !strcmp(e->source, x->only))
        json_array_append(x->list, e->body);
    return true;
}

json_t *pt_content_export(struct pt_store *st, const char *only)
{
    json_t *out = json_object();
    json_t *site = NULL;
    char src[16];
    if (pt_store_info(st, PT_CONTENT_SITE_KIND, "", "site", src, NULL) && (!only || !strcmp(src, only)) &&
        pt_store_get(st, PT_CONTENT_SITE_KIND, "", "site", &site, NULL))
        json_object_set_new(out, "site", site);
    struct export_ctx pages = {json_array(), only}, templates = {json_array(), only};
    pt_store_each(st, PT_CONTENT_PAGE_KIND, "", export_one, &pages);
    pt_store_each(st, PT_CONTENT_TEMPLATE_KIND, "", export_one, &templates);
    if (json_array_size(pages.list))
        json_object_set(out, "pages", sorted_pages(pages.list));
    if (json_array_size(templates.list))
        json_object_set(out, "templates", templates.list);
    json_decref(pages.list);
    json_decref(templates.list);
    if (json_object_size(out) == 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}
