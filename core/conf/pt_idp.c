/*
 * pt_idp -- the portal's identity providers in the store (see pt_idp.h).
 */
#include "conf/pt_idp.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TEXT_MAX 1024

static bool scalar(const struct pt_node *n)
{
    return n && n->kind == PT_N_SCALAR && !n->null;
}

static bool is_bool(const struct pt_node *n)
{
    return scalar(n) && !n->quoted && (!strcmp(n->str, "true") || !strcmp(n->str, "false"));
}

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
    for (const char *p = n->str; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            pt_node_error(errs, n, "may not hold control characters");
            return false;
        }
    return true;
}

/* An id: 1-80 of letters, digits, '.', '_', '-', not starting with '.' (it is a URL segment). */
static bool id_ok(const char *id)
{
    size_t n = strlen(id);
    if (!n || n > 80 || id[0] == '.')
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("._-", *p)))
            return false;
    return true;
}

bool pt_idp_url_ok(const char *url, bool allow_insecure, const char **why)
{
    bool https = !strncmp(url, "https://", 8), http = !strncmp(url, "http://", 7);
    const char *host = url + (https ? 8 : 7);
    if (!https && !http) {
        *why = "must be an https:// URL";
        return false;
    }
    size_t hl = strcspn(host, "/?#");
    if (!hl || memchr(host, '@', hl) || strpbrk(url, " \"<>\\")) {
        *why = "must be an https:// URL with a host (no user, spaces or quotes)";
        return false;
    }
    if (strpbrk(url, "?#")) {
        *why = "may not have a query or a fragment";
        return false;
    }
    if (http) {
        /* plain http only to this machine, and only when the provider says so (tests, closed networks) */
        size_t n = host[0] == '[' ? strcspn(host, "]") + 1 : strcspn(host, ":/");
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)(n < sizeof(name) ? n : sizeof(name) - 1), host);
        bool loop = n < sizeof(name) &&
                    (!strcmp(name, "127.0.0.1") || !strcasecmp(name, "localhost") || !strcmp(name, "[::1]"));
        if (!allow_insecure || !loop) {
            *why = allow_insecure ? "http:// is allowed for a loopback host only (127.0.0.1, ::1, localhost)"
                                  : "must be an https:// URL (allowInsecure permits http:// on loopback)";
            return false;
        }
    }
    return true;
}

bool pt_idp_check(const struct pt_node *n, const char *id, struct pt_errors *errs)
{
    if (!n || n->kind != PT_N_MAP) {
        pt_node_error(errs, n, "identity provider: expected a map, found %s",
                      n ? pt_node_kind_name(n) : "nothing");
        return false;
    }
    int before = errs->n;
    const struct pt_node *idn = pt_node_get(n, "id");
    if (idn && (!scalar(idn) || !id_ok(idn->str)))
        pt_node_error(errs, idn, "1 to 80 letters, digits, '.', '_' or '-' (not starting with '.')");
    else if (!idn && !id)
        pt_node_error(errs, n, "identity provider: id is required");
    else if (idn && id && strcmp(idn->str, id))
        pt_node_error(errs, idn, "'%s' is not the provider's id '%s'", idn->str, id);
    const struct pt_node *ins = pt_node_get(n, "allowInsecure");
    bool insecure = ins && is_bool(ins) && !strcmp(ins->str, "true");
    if (!pt_node_get(n, "issuer"))
        pt_node_error(errs, n, "identity provider: issuer is required");
    if (!pt_node_get(n, "clientId"))
        pt_node_error(errs, n, "identity provider: clientId is required");
    for (int i = 0; i < n->n; i++) {
        const char *k = pt_node_key(n, i)->str;
        const struct pt_node *v = pt_node_val(n, i);
        const char *why;
        if (!strcmp(k, "id")) {
        } else if (!strcmp(k, "displayName")) {
            if (text_ok(v, 100, errs) && !*v->str)
                pt_node_error(errs, v, "may not be empty");
        } else if (!strcmp(k, "issuer")) {
            if (text_ok(v, 512, errs) && !pt_idp_url_ok(v->str, insecure, &why))
                pt_node_error(errs, v, "issuer %s", why);
        } else if (!strcmp(k, "clientId")) {
            if (text_ok(v, 256, errs) && !*v->str)
                pt_node_error(errs, v, "may not be empty");
        } else if (!strcmp(k, "clientSecret")) {
            text_ok(v, TEXT_MAX, errs);
        } else if (!strcmp(k, "scopes")) {
            if (!text_ok(v, 256, errs))
                continue;
            bool openid = false;
            for (const char *p = v->str; *p;) {
                size_t len = strcspn(p, " ");
                openid |= len == 6 && !strncmp(p, "openid", 6);
                p += len;
                p += strspn(p, " ");
            }
            if (!openid)
                pt_node_error(errs, v, "scopes must hold \"openid\" (space-separated scopes)");
            for (const char *p = v->str; *p; p++)
                if (*p == '"' || *p == '\\')
                    pt_node_error(errs, v, "a scope may not hold '\"' or '\\'");
        } else if (!strcmp(k, "allowSignup") || !strcmp(k, "allowInsecure")) {
            if (!is_bool(v))
                pt_node_error(errs, v, "expected true or false");
        } else if (!strcmp(k, "hasClientSecret")) {
            /* what GET shows: a body read back and sent again is accepted; it changes nothing */
        } else {
            pt_node_error(
                errs, pt_node_key(n, i),
                "identity provider: unknown key '%s' (id, displayName, issuer, clientId, clientSecret, "
                "scopes, allowSignup, allowInsecure)",
                k);
        }
    }
    return errs->n == before;
}

bool pt_idp_check_file(const struct pt_portal_cf *p, struct pt_errors *errs)
{
    const struct pt_node *l = p->identity_providers_node;
    if (!l || l->kind != PT_N_SEQ)
        return true;
    int before = errs->n;
    if (l->n > PT_IDP_MAX)
        pt_node_error(errs, l, "identityProviders: at most %d", PT_IDP_MAX);
    for (int i = 0; i < l->n; i++) {
        const struct pt_node *a = l->items[i];
        if (!pt_idp_check(a, NULL, errs))
            continue;
        const char *id = pt_node_get(a, "id")->str;
        for (int j = 0; j < i; j++) {
            const struct pt_node *b = pt_node_get(l->items[j], "id");
            if (scalar(b) && !strcmp(b->str, id))
                pt_node_error(errs, pt_node_get(a, "id"), "identity provider '%s' is declared twice", id);
        }
    }
    return errs->n == before;
}

json_t *pt_idp_json(const struct pt_node *n, const char *id)
{
    json_t *j = json_object();
    const struct pt_node *idn = pt_node_get(n, "id");
    json_object_set_new(j, "id", json_string(idn && scalar(idn) ? idn->str : id ? id : ""));
    static const char *const texts[] = {"displayName", "issuer", "clientId", "clientSecret", "scopes"};
    for (size_t i = 0; i < PT_ARRAY_LEN(texts); i++) {
        const struct pt_node *v = pt_node_get(n, texts[i]);
        if (scalar(v))
            json_object_set_new(j, texts[i], json_string(v->str));
    }
    static const char *const flags[] = {"allowSignup", "allowInsecure"};
    for (size_t i = 0; i < PT_ARRAY_LEN(flags); i++) {
        const struct pt_node *v = pt_node_get(n, flags[i]);
        if (is_bool(v))
            json_object_set_new(j, flags[i], json_boolean(!strcmp(v->str, "true")));
    }
    return j;
}

json_t *pt_idp_public(const json_t *stored)
{
    json_t *j = json_deep_copy(stored);
    const char *secret = json_string_value(json_object_get(j, "clientSecret"));
    json_object_set_new(j, "hasClientSecret", json_boolean(secret && *secret));
    json_object_del(j, "clientSecret");
    if (!json_object_get(j, "displayName"))
        json_object_set(j, "displayName", json_object_get(j, "id"));
    if (!json_object_get(j, "scopes"))
        json_object_set_new(j, "scopes", json_string(PT_IDP_DEFAULT_SCOPES));
    if (!json_object_get(j, "allowSignup"))
        json_object_set_new(j, "allowSignup", json_null()); /* null: follows site.signupEnabled */
    if (!json_object_get(j, "allowInsecure"))
        json_object_set_new(j, "allowInsecure", json_false());
    return j;
}

static bool collect(void *arg, const struct pt_entity *e)
{
    json_array_append(arg, e->body);
    return true;
}

json_t *pt_idp_list(struct pt_store *st)
{
    json_t *list = json_array();
    pt_store_each(st, PT_IDP_KIND, "", collect, list); /* in id order */
    return list;
}

json_t *pt_idp_get(struct pt_store *st, const char *id)
{
    json_t *b = NULL;
    if (!id_ok(id) || !pt_store_get(st, PT_IDP_KIND, "", id, &b, NULL))
        return NULL;
    return b;
}

bool pt_idp_put(struct pt_store *st, json_t *idp, const char *source)
{
    const char *id = json_string_value(json_object_get(idp, "id"));
    if (!id)
        return false;
    json_object_del(idp, "hasClientSecret");
    if (!json_object_get(idp, "clientSecret")) {
        json_t *old = pt_idp_get(st, id);
        json_t *s = json_object_get(old, "clientSecret");
        if (json_is_string(s))
            json_object_set(idp, "clientSecret", s);
        json_decref(old);
    }
    return pt_store_put(st, PT_IDP_KIND, "", id, "", idp, source, NULL);
}

bool pt_idp_apply(struct pt_store *st, const struct pt_conf *f, const char *source, struct pt_errors *errs)
{
    const struct pt_node *l = f->portal.identity_providers_node;
    if (!l || l->kind != PT_N_SEQ)
        return true;
    if (!pt_idp_check_file(&f->portal, errs))
        return false;
    bool ok = true;
    for (int i = 0; ok && i < l->n; i++) {
        json_t *j = pt_idp_json(l->items[i], NULL);
        const char *id = json_string_value(json_object_get(j, "id"));
        char src[16];
        if (strcmp(source, "config") && pt_store_info(st, PT_IDP_KIND, "", id, src, NULL) &&
            !strcmp(src, "config")) {
            pt_node_error(errs, l->items[i],
                          "identity provider '%s' is declared in the configuration file; change it there",
                          id);
            ok = false;
        } else {
            ok = pt_idp_put(st, j, source);
        }
        json_decref(j);
    }
    return ok;
}

struct export_ctx {
    json_t *list;
    const char *only;
};

static bool export_one(void *arg, const struct pt_entity *e)
{
    struct export_ctx *x = arg;
    if (x->only && strcmp(e->source, x->only))
        return true;
    json_t *j = json_deep_copy(e->body);
    json_object_del(j, "clientSecret"); /* never written out: applying the export keeps the stored one */
    json_array_append_new(x->list, j);
    return true;
}

json_t *pt_idp_export(struct pt_store *st, const char *only)
{
    struct export_ctx x = {json_array(), only};
    pt_store_each(st, PT_IDP_KIND, "", export_one, &x);
    if (!json_array_size(x.list)) {
        json_decref(x.list);
        return NULL;
    }
    return x.list;
}

/* ----------------------------------------------------------------- links */

static void link_id(const char *provider, const char *sub, char out[65])
{
    size_t pl = strlen(provider), sl = strlen(sub);
    unsigned char *buf = malloc(pl + 1 + sl + 1), d[SHA256_DIGEST_LENGTH];
    if (!buf) {
        memset(out, '0', 64);
        out[64] = '\0';
        return;
    }
    memcpy(buf, provider, pl + 1); /* the NUL separates: no two pairs give one input */
    memcpy(buf + pl + 1, sub, sl);
    SHA256(buf, pl + 1 + sl, d);
    free(buf);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

bool pt_idp_link_get(struct pt_store *st, const char *provider, const char *sub, char user[128])
{
    char id[65];
    link_id(provider, sub, id);
    json_t *b = NULL;
    if (!pt_store_get(st, PT_IDP_LINK_KIND, "", id, &b, NULL))
        return false;
    const char *u = json_string_value(json_object_get(b, "user"));
    /* the stored pair must be this one (a hash is an index, not a proof) */
    bool ok = u && !strcmp(json_string_value(json_object_get(b, "provider")) ?: "", provider) &&
              !strcmp(json_string_value(json_object_get(b, "sub")) ?: "", sub);
    if (ok)
        snprintf(user, 128, "%s", u);
    json_decref(b);
    return ok;
}

bool pt_idp_link_put(struct pt_store *st, const char *provider, const char *sub, const char *user)
{
    char id[65];
    link_id(provider, sub, id);
    json_t *b = json_pack("{s:s, s:s, s:s}", "provider", provider, "sub", sub, "user", user);
    /* source "portal": neither the file's sweep nor export touch it */
    bool ok = pt_store_put(st, PT_IDP_LINK_KIND, "", id, "", b, "portal", NULL);
    json_decref(b);
    return ok;
}

bool pt_idp_link_delete(struct pt_store *st, const char *provider, const char *sub)
{
    char id[65];
    link_id(provider, sub, id);
    return pt_store_delete(st, PT_IDP_LINK_KIND, "", id);
}
