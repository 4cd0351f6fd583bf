/*
 * pt_model -- file and store, joined into the configuration a generation runs.
 */
#include "conf/pt_model.h"
#include "conf/pt_cert.h"
#include "conf/pt_content.h"
#include "conf/pt_idp.h"

#include "base/pt_log.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

const struct pt_kind pt_model_kinds[] = {
    {"api", "apis", "apis"},
    {"product", "products", "products"},
    {"group", "groups", "groups"},
    {"user", "users", "users"},
    {"subscription", "subscriptions", "subscriptions"},
    {"namedValue", "namedValues", "namedValues"},
    {"policyFragment", "policyFragments", "policyFragments"},
    {"backend", "backends", "backends"},
    {"workspace", "workspaces", "workspaces"},
    {"apiVersionSet", "apiVersionSets", "apiVersionSets"},
    {"schema", "schemas", "schemas"},
    {"logger", "loggers", "loggers"},
    {"gateway", "gateways", "gateways"},
    {"certificate", "certificates", "certificates"},
    {NULL, NULL, NULL},
};

/* Keys of the file that are entities, not settings. */
static bool is_entity_key(const char *k)
{
    for (int i = 0; pt_model_kinds[i].kind; i++)
        if (!strcmp(k, pt_model_kinds[i].list))
            return true;
    return !strcmp(k, "policies");
}

/* The portal's content keys: entities too, in the file's portal: map. */
static const char *const portal_content_keys[] = {"site", "pages", "templates", "identityProviders"};

/* A document's "portal" holding nothing but content (what `export` writes). */
static bool portal_content_only(const char *k, const json_t *v)
{
    if (strcmp(k, "portal") || !json_is_object(v))
        return false;
    const char *pk;
    json_t *pv;
    json_object_foreach((json_t *)v, pk, pv)
    {
        (void)pv;
        bool content = false;
        for (size_t i = 0; i < PT_ARRAY_LEN(portal_content_keys); i++)
            content |= !strcmp(pk, portal_content_keys[i]);
        if (!content)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------ conversions */

void pt_model_trace_since(json_t *sub, const json_t *old)
{
    if (!json_is_true(json_object_get(sub, "allowTracing"))) {
        json_object_del(sub, "allowTracingSince");
        return;
    }
    const char *prev = old && json_is_true(json_object_get(old, "allowTracing"))
                           ? json_string_value(json_object_get(old, "allowTracingSince"))
                           : NULL;
    char ts[48];
    if (!prev) {
        pt_log_format_time(ts, pt_clock_wall_ms());
        prev = ts;
    }
    json_object_set_new(sub, "allowTracingSince", json_string(prev));
}

/* ----------------------------------------------------------------- secrets */

static char keyfile_key[65]; /* from <data>/secret.key when nothing else gives one */

const char *pt_model_secret_key(const struct pt_conf *cf)
{
    if (cf && cf->secret_key)
        return cf->secret_key;
    const char *e = getenv("PORTICO_SECRET_KEY");
    if (e && *e)
        return e;
    return keyfile_key[0] ? keyfile_key : NULL;
}

bool pt_model_load_keyfile(const char *dir, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/secret.key", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, keyfile_key, 64);
        close(fd);
        if (n < 32) {
            snprintf(err, errlen, "%s: expected 64 hexadecimal characters", path);
            keyfile_key[0] = '\0';
            return false;
        }
        keyfile_key[n] = '\0';
        return true;
    }
    if (errno != ENOENT) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return false;
    }
    char a[33], b[33];
    pt_model_new_key(a);
    pt_model_new_key(b);
    snprintf(keyfile_key, sizeof(keyfile_key), "%s%s", a, b);
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write(fd, keyfile_key, 64) == 64 && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    if (!ok || rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        unlink(tmp);
        keyfile_key[0] = '\0';
        return false;
    }
    pt_info(
        "generated %s to encrypt secret named values (set secretKey or $PORTICO_SECRET_KEY to use your own)",
        path);
    return true;
}

static void derive_key(const char *secret, unsigned char key[32])
{
    SHA256((const unsigned char *)secret, strlen(secret), key);
}

/* "v1:" + base64(iv[12] | ciphertext | tag[16]) */
char *pt_model_seal(const char *secret_key, const char *plain)
{
    if (!secret_key)
        return NULL;
    unsigned char key[32], iv[12], tag[16];
    derive_key(secret_key, key);
    if (RAND_bytes(iv, sizeof(iv)) != 1)
        return NULL;
    size_t pl = strlen(plain);
    unsigned char *buf = malloc(12 + pl + 16);
    int len = 0, fin = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    bool ok = ctx && EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv) == 1 &&
              EVP_EncryptUpdate(ctx, buf + 12, &len, (const unsigned char *)plain, (int)pl) == 1 &&
              EVP_EncryptFinal_ex(ctx, buf + 12 + len, &fin) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) {
        free(buf);
        return NULL;
    }
    memcpy(buf, iv, 12);
    memcpy(buf + 12 + len + fin, tag, 16);
    size_t total = 12 + (size_t)(len + fin) + 16;
    char *out = malloc(4 * ((total + 2) / 3) + 8);
    memcpy(out, "v1:", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, buf, (int)total);
    free(buf);
    return out;
}

char *pt_model_unseal(const char *secret_key, const char *sealed)
{
    if (!secret_key || strncmp(sealed, "v1:", 3))
        return NULL;
    const char *b64 = sealed + 3;
    size_t bl = strlen(b64);
    unsigned char *buf = malloc(bl + 4);
    int n = EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)bl);
    if (n < 0) {
        free(buf);
        return NULL;
    }
    while (bl && b64[bl - 1] == '=') {
        n--;
        bl--;
    }
    if (n < 28) {
        free(buf);
        return NULL;
    }
    unsigned char key[32];
    derive_key(secret_key, key);
    int clen = n - 28, len = 0, fin = 0;
    char *out = malloc((size_t)clen + 1);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    bool ok = ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, buf) == 1 &&
              EVP_DecryptUpdate(ctx, (unsigned char *)out, &len, buf + 12, clen) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, buf + 12 + clen) == 1 &&
              EVP_DecryptFinal_ex(ctx, (unsigned char *)out + len, &fin) == 1;
    EVP_CIPHER_CTX_free(ctx);
    free(buf);
    if (!ok) {
        free(out);
        return NULL;
    }
    out[len + fin] = '\0';
    return out;
}

/* The sealed text of `plain` for an entity field: the one stored in `field` of kind/id when it
   unseals to the same text (sealing is randomized: applying the file again then writes nothing
   new), else a new sealing.  NULL without a secret key. */
static char *seal_again(struct pt_store *st, const char *kind, const char *id, const char *field,
                        const char *secret_key, const char *plain)
{
    json_t *old = NULL;
    char *out = NULL;
    if (pt_store_get(st, kind, "", id, &old, NULL) && old) {
        const char *was = json_string_value(json_object_get(old, field));
        char *open = was ? pt_model_unseal(secret_key, was) : NULL;
        if (open && !strcmp(open, plain))
            out = strdup(was);
        if (open) {
            OPENSSL_cleanse(open, strlen(open));
            free(open);
        }
    }
    json_decref(old);
    return out ? out : pt_model_seal(secret_key, plain);
}

void pt_model_new_key(char out[33])
{
    unsigned char r[16];
    if (RAND_bytes(r, sizeof(r)) != 1)
        abort(); /* no randomness: no keys */
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hx[r[i] >> 4];
        out[2 * i + 1] = hx[r[i] & 15];
    }
    out[32] = '\0';
}

/* ------------------------------------------------- remove, with what goes */

struct unlink_arg {
    struct pt_store *st;
    const char *kind, *id; /* id NULL: every link listed */
};

static bool unlink_listed(void *arg, const char *a, const char *b)
{
    struct unlink_arg *u = arg;
    if (!u->id || !strcmp(b, u->id))
        pt_store_unlink(u->st, u->kind, a, b);
    return true;
}

/* Drops the links of `kind` to `b` (from any a), or, with a set, every link from a. */
static void unlink_all(struct pt_store *st, const char *kind, const char *a, const char *b)
{
    struct unlink_arg u = {st, kind, b};
    pt_store_links(st, kind, a, unlink_listed, &u);
}

static bool collect_ids(void *arg, const struct pt_entity *e)
{
    json_array_append_new(arg, json_string(e->id));
    return true;
}

static void delete_policy(struct pt_store *st, const char *fmt, const char *a, const char *b)
{
    char pid[600];
    snprintf(pid, sizeof(pid), fmt, a, b);
    pt_store_delete(st, "policy", "", pid);
}

bool pt_model_remove(struct pt_store *st, const char *kind, const char *parent, const char *id)
{
    bool ok = pt_store_delete(st, kind, parent, id);
    if (!strcmp(kind, "api")) {
        json_t *ops = json_array();
        pt_store_each(st, "operation", id, collect_ids, ops);
        size_t i;
        json_t *o;
        json_array_foreach(ops, i, o)
        {
            ok &= pt_store_delete(st, "operation", id, json_string_value(o));
            delete_policy(st, "op:%s/%s", id, json_string_value(o));
        }
        json_decref(ops);
        delete_policy(st, "api:%s%s", id, "");
        unlink_all(st, "product-api", NULL, id);
        unlink_all(st, "gateway-api", NULL, id);
    } else if (!strcmp(kind, "operation"))
        delete_policy(st, "op:%s/%s", parent, id);
    else if (!strcmp(kind, "product") || !strcmp(kind, "workspace")) {
        delete_policy(st, "%s:%s", kind, id);
        if (!strcmp(kind, "product")) {
            unlink_all(st, "product-api", id, NULL);
            unlink_all(st, "product-group", id, NULL);
        }
    } else if (!strcmp(kind, "user"))
        unlink_all(st, "group-user", NULL, id);
    else if (!strcmp(kind, "group")) {
        unlink_all(st, "product-group", NULL, id);
        unlink_all(st, "group-user", id, NULL);
    } else if (!strcmp(kind, "gateway"))
        unlink_all(st, "gateway-api", id, NULL);
    return ok;
}

/* ------------------------------------------------------------ apply a file */

static json_t *without(json_t *o, const char *const *keys)
{
    for (int i = 0; keys[i]; i++)
        json_object_del(o, keys[i]);
    return o;
}

static const char *str_of(const json_t *o, const char *k, const char *def)
{
    const json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : def;
}

static void replace_foreign(struct pt_store *st, const char *kind, const char *id);

/*
 * An application of the file passes over what it gave the last time unchanged: the digest of what
 * a row is made from (its node without the keys stored apart, its workspace, and `extra`: what
 * else the row depends on) is compared with the last one's (pt_store_given_same).  Not the file's
 * application (file false): nothing compared, d zeroed.
 */
static bool given_same(struct pt_store *st, bool file, const char *kind, const char *parent, const char *id,
                       const char *workspace, const struct pt_node *node, const char *const *skip,
                       const char *extra, struct pt_node_digest *d)
{
    memset(d, 0, sizeof(*d));
    if (!file)
        return false;
    pt_node_digest_text(d, workspace);
    pt_node_digest_text(d, extra);
    pt_node_digest(node, skip, d);
    return pt_store_given_same(st, kind, parent, id, d);
}

/* A put of a node as the row's body (but its keys in skip, stored apart), unless the file gives it
   unchanged.  replace: an entity the file takes over from the management API (replace_foreign). */
static bool put_node(struct pt_store *st, bool file, const char *kind, const char *parent, const char *id,
                     const char *workspace, const struct pt_node *node, const char *const *skip, bool replace,
                     const char *source)
{
    struct pt_node_digest d;
    if (given_same(st, file, kind, parent, id, workspace, node, skip, NULL, &d))
        return true; /* the file's already: nothing to take over */
    if (file && replace)
        replace_foreign(st, kind, id);
    json_t *j = pt_node_to_json(node);
    if (skip)
        without(j, skip);
    bool ok = pt_store_put(st, kind, parent, id, workspace, j, source, NULL);
    json_decref(j);
    if (ok)
        pt_store_given(st, kind, parent, id, &d); /* outside an application of the file: nothing */
    return ok;
}

static bool put_policy(struct pt_store *st, bool file, const char *id, struct pt_node *policies,
                       const char *source)
{
    if (!policies)
        return true;
    return put_node(st, file, "policy", "", id, "", policies, NULL, false, source);
}

/* Through the API, what the file declares cannot be changed. */
static bool writable(struct pt_store *st, const char *source, const char *kind, const char *parent,
                     const char *id, const struct pt_node *where, struct pt_errors *errs)
{
    char src[16];
    if (strcmp(source, "config") && pt_store_info(st, kind, parent, id, src, NULL) &&
        !strcmp(src, "config")) {
        pt_node_error(errs, where, "%s '%s' is declared in the configuration file; change it there", kind,
                      id);
        return false;
    }
    return true;
}

bool pt_model_same_path(const char *a, const char *b)
{
    size_t na, nb;
    while (*a == '/')
        a++;
    while (*b == '/')
        b++;
    for (na = strlen(a); na && a[na - 1] == '/'; na--)
        ;
    for (nb = strlen(b); nb && b[nb - 1] == '/'; nb--)
        ;
    return na == nb && !memcmp(a, b, na);
}

static bool same_text(const char *a, const char *b, bool nocase)
{
    a = a ? a : "";
    b = b ? b : "";
    return nocase ? !strcasecmp(a, b) : !strcmp(a, b);
}

/* The routes a file API must not take: the store's own current APIs (made through the management
   API, or samples), read once per apply as [id, body] pairs -- checking every file API against a
   scan of the store would read the whole API table once per API. */
static bool add_foreign_route(void *arg, const struct pt_entity *e)
{
    if (strcmp(e->source, "config") && !json_is_false(json_object_get(e->body, "isCurrent")))
        json_array_append_new(arg, json_pack("[sO]", e->id, e->body));
    return true;
}

static json_t *foreign_routes(struct pt_store *st)
{
    json_t *routes = json_array();
    pt_store_each_not_from(st, "api", "config", add_foreign_route, routes);
    return routes;
}

/* The file's API `id` replaced a stored one: its route is free again. */
static void forget_foreign_route(json_t *routes, const char *id)
{
    for (size_t i = 0; i < json_array_size(routes); i++)
        if (!strcmp(json_string_value(json_array_get(json_array_get(routes, i), 0)), id)) {
            json_array_remove(routes, i);
            return;
        }
}

/* A file API whose route an API of the store's own (made through the management API, or a sample)
   already has: refused at the file's line, naming the other and how to remove it. */
static bool route_free(const json_t *routes, const struct pt_api_cf *a, struct pt_errors *errs)
{
    if (!a->path || !a->is_current)
        return true;
    size_t i;
    const json_t *r;
    json_array_foreach(routes, i, r)
    {
        const char *id = json_string_value(json_array_get(r, 0));
        const json_t *body = json_array_get(r, 1);
        if (strcmp(id, a->id) && pt_model_same_path(str_of(body, "path", ""), a->path) &&
            same_text(str_of(body, "host", NULL), a->host, true) &&
            same_text(str_of(body, "apiVersion", NULL), a->api_version, false)) {
            pt_node_error(errs, pt_node_get(a->node, "path"),
                          "path '%s' is already used by API '%s', which was made through the management API "
                          "or came with the samples; remove it (portico api delete %s) or give this API "
                          "another path",
                          a->path, id, id);
            return false;
        }
    }
    return true;
}

static bool has_links(const char *kind)
{
    static const char *const linked[] = {"api", "product", "group", "user", "gateway"};
    for (size_t i = 0; i < PT_ARRAY_LEN(linked); i++)
        if (!strcmp(kind, linked[i]))
            return true;
    return false;
}

/* An id the file declares that was written otherwise (through the management API, or a sample) is
   replaced wholly, not merged: what went with it (operations, policies, links) goes first, so the
   stored entity is exactly the file's.  A gateway keeps its keys (its nodes hold them) and loses
   only its API assignments. */
static void replace_foreign(struct pt_store *st, const char *kind, const char *id)
{
    char src[16];
    if (!pt_store_info(st, kind, "", id, src, NULL) || !strcmp(src, "config"))
        return;
    pt_info("store: the file's %s '%s' replaces the one made through the management API or as a sample", kind,
            id);
    if (!strcmp(kind, "gateway"))
        unlink_all(st, "gateway-api", id, NULL);
    else
        pt_model_remove(st, kind, "", id);
}

/* What the file declared before and no longer does goes as a management DELETE takes it, links of
   any source to it included (a link left pointing at nothing would stop every later start); then
   the sweep takes the file's own rows left over (links it no longer lists). */
static bool remove_undeclared(struct pt_store *st)
{
    json_t *stale = pt_store_stale(st, "config");
    if (!stale)
        return false;
    size_t i;
    json_t *e;
    json_array_foreach(stale, i, e)
    {
        const char *kind = json_string_value(json_array_get(e, 0));
        const char *parent = json_string_value(json_array_get(e, 1));
        const char *id = json_string_value(json_array_get(e, 2));
        if (!strcmp(kind, "operation") || !strcmp(kind, "policy"))
            pt_store_delete(st, kind, parent, id); /* their parents' removal takes what goes with them */
        else if (!strcmp(kind, "group") && pt_conf_entities_builtin_group(id))
            pt_store_delete(st, kind, parent, id); /* it exists undeclared: the links the file still
                                                      declares stay (the sweep takes the others) */
        else {
            if (has_links(kind))
                pt_info("store: the file no longer declares %s '%s': removed with its links", kind, id);
            pt_model_remove(st, kind, parent, id);
        }
    }
    json_decref(stale);
    return pt_store_sweep(st, "config") >= 0;
}

bool pt_model_apply_file(struct pt_store *st, const struct pt_conf *f, const char *secret_key,
                         struct pt_errors *errs)
{
    return pt_model_apply(st, f, secret_key, "config", errs);
}

/* The same certificate given again without its key (an export applied back) keeps the stored
   key: an export never holds keys, and losing one without a word would break what presents it. */
static void keep_stored_key(struct pt_store *st, const struct pt_storecert_cf *c, json_t *j)
{
    json_t *old = NULL;
    if (!pt_store_get(st, "certificate", "", c->id, &old, NULL) || !old)
        return;
    const char *tp = json_string_value(json_object_get(old, "thumbprint"));
    json_t *sealed = json_object_get(old, "sealedKey");
    if (tp && json_is_string(sealed) && !strcmp(tp, c->thumbprint)) {
        json_object_set(j, "sealedKey", sealed);
        json_object_set_new(j, "hasPrivateKey", json_true());
    }
    json_decref(old);
}

/* A certificate as the store keeps it: the PEM chain, the private key sealed
   (like a secret named value), what reads show; never the password. */
static bool put_certificate(struct pt_store *st, const struct pt_storecert_cf *c, const char *secret_key,
                            const char *source, struct pt_errors *errs)
{
    json_t *j = json_pack("{s:s,s:b,s:s,s:s,s:s,s:s,s:b}", "data", c->chain_pem, "ca", c->ca, "thumbprint",
                          c->thumbprint, "subject", c->subject, "issuer", c->issuer, "expirationDate",
                          c->expiration, "hasPrivateKey", c->key_pem != NULL);
    if (!j) { /* a field that is not UTF-8 */
        pt_node_error(errs, c->node, "certificate '%s' cannot be stored: a field is not valid UTF-8", c->id);
        return false;
    }
    if (c->crl && *c->crl)
        json_object_set_new(j, "crl", json_string(c->crl));
    if (c->description)
        json_object_set_new(j, "description", json_string(c->description));
    bool ok = true;
    if (c->key_pem) {
        char *sealed = seal_again(st, "certificate", c->id, "sealedKey", secret_key, c->key_pem);
        if (!sealed) {
            pt_node_error(
                errs, c->node,
                "a certificate's private key needs secretKey (or $PORTICO_SECRET_KEY) to be stored");
            ok = false;
        } else {
            json_object_set_new(j, "sealedKey", json_string(sealed));
            free(sealed);
        }
    }
    if (ok && !c->key_pem)
        keep_stored_key(st, c, j);
    if (ok)
        ok = pt_store_put(st, "certificate", "", c->id, "", j, source, NULL);
    json_decref(j);
    return ok;
}

bool pt_model_apply(struct pt_store *st, const struct pt_conf *f, const char *secret_key, const char *source,
                    struct pt_errors *errs)
{
    bool file = !strcmp(source, "config");
    static const char *const api_x[] = {"operations", "policies", NULL};
    static const char *const op_x[] = {"policies", NULL};
    static const char *const product_x[] = {"apis", "groups", "policies", NULL};
    static const char *const user_x[] = {"groups", NULL};
    static const char *const none[] = {NULL};
    if (!pt_store_begin(st)) {
        pt_node_errors_add(errs, "store: %s", pt_store_error(st));
        return false;
    }
    if (file) {
        pt_store_mark(st, source);
        /* the file again: only what changed in it is written (an empty store: all of it, unasked) */
        if (pt_store_has_entities(st))
            pt_store_keep_unchanged(st, true);
    }
    bool ok = true;
    json_t *routes = file ? foreign_routes(st) : NULL;
    for (int i = 0; ok && i < f->napis; i++) {
        const struct pt_api_cf *a = &f->apis[i];
        if (!writable(st, source, "api", "", a->id, a->node, errs)) {
            ok = false;
            break;
        }
        if (file) {
            forget_foreign_route(routes, a->id); /* the file's now */
            if (!route_free(routes, a, errs)) {
                ok = false;
                break;
            }
        }
        ok &= put_node(st, file, "api", "", a->id, a->workspace, a->node, api_x, true, source);
        ok &= put_policy(st, file, pt_pool_printf(f->pool, "api:%s", a->id), a->policies, source);
        for (int k = 0; ok && k < a->nops; k++) {
            const struct pt_operation_cf *op = &a->ops[k];
            ok &= put_node(st, file, "operation", a->id, op->id, a->workspace, op->node, op_x, false, source);
            ok &= put_policy(st, file, pt_pool_printf(f->pool, "op:%s/%s", a->id, op->id), op->policies,
                             source);
        }
    }
    json_decref(routes);
    /* groups before the products: a group taken over from the management API loses its links
       (replace_foreign), and the products' links to it are written after that */
    for (int i = 0; ok && i < f->ngroups; i++) {
        const struct pt_group_cf *g = &f->groups[i];
        ok &= put_node(st, file, "group", "", g->id, g->workspace, g->node, NULL, true, source);
    }
    for (int i = 0; ok && i < f->nproducts; i++) {
        const struct pt_product_cf *p = &f->products[i];
        if (!writable(st, source, "product", "", p->id, p->node, errs)) {
            ok = false;
            break;
        }
        ok &= put_node(st, file, "product", "", p->id, p->workspace, p->node, product_x, true, source);
        for (int k = 0; ok && k < p->apis.n; k++)
            ok &= pt_store_link(st, "product-api", p->id, p->apis.v[k], source);
        for (int k = 0; ok && k < p->groups.n; k++)
            ok &= pt_store_link(st, "product-group", p->id, p->groups.v[k], source);
        ok &= put_policy(st, file, pt_pool_printf(f->pool, "product:%s", p->id), p->policies, source);
    }
    for (int i = 0; ok && i < f->nusers; i++) {
        const struct pt_user_cf *u = &f->users[i];
        if (!writable(st, source, "user", "", u->id, u->node, errs)) {
            ok = false;
            break;
        }
        ok &= put_node(st, file, "user", "", u->id, "", u->node, user_x, true, source);
        for (int k = 0; ok && k < u->groups.n; k++)
            ok &= pt_store_link(st, "group-user", u->groups.v[k], u->id, source);
    }
    for (int i = 0; ok && i < f->nsubs; i++) {
        const struct pt_subscription_cf *s = &f->subs[i];
        if (!writable(st, source, "subscription", "", s->id, s->node, errs)) {
            ok = false;
            break;
        }
        /* given unchanged: what it was made from the last time (its keys, its dates) is stored as it
           was, and would make it again */
        struct pt_node_digest d;
        if (given_same(st, file, "subscription", "", s->id, s->workspace, s->node, NULL, NULL, &d))
            continue;
        json_t *j = pt_node_to_json(s->node);
        /* keys the file does not give: kept from before, else made once */
        json_t *old = NULL;
        pt_store_get(st, "subscription", "", s->id, &old, NULL);
        const char *names[2] = {"primaryKey", "secondaryKey"};
        for (int k = 0; k < 2; k++)
            if (!json_object_get(j, names[k])) {
                const char *prev = old ? str_of(old, names[k], NULL) : NULL;
                char fresh[33];
                if (!prev)
                    pt_model_new_key(fresh);
                json_object_set_new(j, names[k], json_string(prev ? prev : fresh));
            }
        if (!json_object_get(j, "createdDate")) {
            const char *prev = old ? str_of(old, "createdDate", NULL) : NULL;
            char ts[48];
            pt_log_format_time(ts, pt_clock_wall_ms());
            json_object_set_new(j, "createdDate", json_string(prev ? prev : ts));
        }
        pt_model_trace_since(j, old);
        ok &= pt_store_put_read(st, "subscription", "", s->id, s->workspace, j, source, NULL, old);
        if (ok)
            pt_store_given(st, "subscription", "", s->id, &d);
        json_decref(old);
        json_decref(j);
    }
    for (int i = 0; ok && i < f->ngateways; i++) {
        const struct pt_gateway_cf *g = &f->gateways[i];
        if (!writable(st, source, "gateway", "", g->id, g->node, errs)) {
            ok = false;
            break;
        }
        static const char *const gateway_x[] = {"apis", "primaryKey", "secondaryKey", NULL};
        if (file)
            replace_foreign(st, "gateway", g->id);
        json_t *j = without(pt_node_to_json(g->node), gateway_x);
        /* keys: made once, kept across writes (never in the file, never exported) */
        json_t *old = NULL;
        pt_store_get(st, "gateway", "", g->id, &old, NULL);
        const char *names[2] = {"primaryKey", "secondaryKey"};
        for (int k = 0; k < 2; k++) {
            const char *prev = old ? str_of(old, names[k], NULL) : NULL;
            char fresh[65], b[33];
            if (!prev) {
                pt_model_new_key(fresh);
                pt_model_new_key(b);
                strcat(fresh, b); /* 256 bits */
            }
            json_object_set_new(j, names[k], json_string(prev ? prev : fresh));
        }
        ok &= pt_store_put_read(st, "gateway", "", g->id, "", j, source, NULL, old);
        json_decref(old);
        json_decref(j);
        /* like a product's APIs: the file's list is the list (the sweep takes the rest); a document sent
           to the management API adds to it */
        for (int k = 0; ok && k < g->apis.n; k++)
            ok &= pt_store_link(st, "gateway-api", g->id, g->apis.v[k], source);
    }
    for (int i = 0; ok && f->named_values && i < f->named_values->n; i++) {
        struct pt_node *nv = f->named_values->items[i];
        /* a secret one is sealed with the key: the same value under another key is stored anew;
           the row is the one its id names as JSON (a plain `id: 123` is no string: stored as "") */
        struct pt_node_digest d;
        json_t *j = pt_node_to_json(nv);
        if (given_same(st, file, "namedValue", "", str_of(j, "id", ""), str_of(j, "workspace", ""), nv, NULL,
                       secret_key, &d)) {
            json_decref(j);
            continue;
        }
        if (json_is_true(json_object_get(j, "secret"))) {
            const char *plain = str_of(j, "value", "");
            char *sealed = seal_again(st, "namedValue", str_of(j, "id", ""), "sealed", secret_key, plain);
            if (!sealed) {
                pt_node_error(errs, nv,
                              "a secret named value needs secretKey (or $PORTICO_SECRET_KEY) to be stored");
                ok = false;
            } else {
                json_object_set_new(j, "value", json_null());
                json_object_set_new(j, "sealed", json_string(sealed));
                free(sealed);
            }
        }
        if (ok)
            ok &= pt_store_put(st, "namedValue", "", str_of(j, "id", ""), str_of(j, "workspace", ""), j,
                               source, NULL);
        if (ok)
            pt_store_given(st, "namedValue", "", str_of(j, "id", ""), &d);
        json_decref(j);
    }
    struct {
        struct pt_node *list;
        const char *kind;
    } plain[] = {{f->fragments, "policyFragment"}, {f->schemas, "schema"}};
    for (size_t t = 0; t < PT_ARRAY_LEN(plain); t++)
        for (int i = 0; ok && plain[t].list && i < plain[t].list->n; i++) {
            json_t *j = pt_node_to_json(plain[t].list->items[i]);
            ok &= pt_store_put(st, plain[t].kind, "", str_of(j, "id", ""), str_of(j, "workspace", ""), j,
                               source, NULL);
            json_decref(j);
        }
    for (int i = 0; ok && i < f->ncerts; i++)
        ok &= put_certificate(st, &f->certs[i], secret_key, source, errs);
    for (int i = 0; ok && i < f->nbackends; i++)
        ok &= put_node(st, file, "backend", "", f->backends[i].id, f->backends[i].workspace,
                       f->backends[i].node, NULL, false, source);
    for (int i = 0; ok && i < f->nloggers; i++) {
        if (!writable(st, source, "logger", "", f->loggers[i].id, f->loggers[i].node, errs)) {
            ok = false;
            break;
        }
        ok &= put_node(st, file, "logger", "", f->loggers[i].id, "", f->loggers[i].node, NULL, false, source);
    }
    for (int i = 0; ok && i < f->nworkspaces; i++) {
        const struct pt_workspace_cf *w = &f->workspaces[i];
        ok &= put_node(st, file, "workspace", "", w->id, "", w->node, op_x, false, source);
        ok &= put_policy(st, file, pt_pool_printf(f->pool, "workspace:%s", w->id), w->policies, source);
    }
    for (int i = 0; ok && i < f->nversion_sets; i++)
        ok &= put_node(st, file, "apiVersionSet", "", f->version_sets[i].id,
                       f->version_sets[i].workspace ? f->version_sets[i].workspace : "",
                       f->version_sets[i].node, NULL, false, source);
    ok &= put_policy(st, file, "global", f->policies, source);
    /* the portal's content: before the sweep, which would take the file's away */
    ok = ok && pt_content_apply(st, f, source, errs);
    ok = ok && pt_idp_apply(st, f, source, errs); /* its identity providers, likewise */
    (void)none;
    if (ok && file && !remove_undeclared(st))
        ok = false;
    pt_store_keep_unchanged(st, false);
    if (!ok) {
        if (errs->n == 0 || strlen(pt_store_error(st)))
            pt_node_errors_add(errs, "store: %s", pt_store_error(st));
        pt_store_rollback(st);
        return false;
    }
    if (!pt_store_commit(st)) {
        pt_node_errors_add(errs, "store: commit failed: %s", pt_store_error(st));
        return false;
    }
    return true;
}

/* ----------------------------------------------------------- materialize */

struct mat {
    struct pt_store *st;
    json_t *list;
    const char *secret_key;
    struct pt_errors *errs;
    bool ok;
    const char *only; /* a source ("api"): other entities are left out */
    /* read ahead in one query each (NULL: one query per entity): policy documents by id, and
       operations (with their policies) by API */
    json_t *policies, *ops;
};

/* The stored policy document of a scope, or NULL when it has none.  One
   that is stored but does not load (a store written before NULs were
   refused) is an error, not an absence: running without it would open
   the scope's APIs. */
static json_t *policy_of(struct pt_store *st, const char *id, struct pt_errors *errs)
{
    json_t *p = NULL;
    if (!pt_store_get(st, "policy", "", id, &p, NULL))
        return NULL;
    if (!p)
        pt_node_errors_add(
            errs, "store: the policy document of '%s' cannot be read; refusing to run without it", id);
    return p;
}

/* A scope's policy document from what was read ahead, else from the store. */
static json_t *policy_in(struct mat *m, const char *id)
{
    if (!m->policies)
        return policy_of(m->st, id, m->errs);
    json_t *p = json_object_get(m->policies, id);
    return p ? json_incref(p) : NULL;
}

static bool add_link_b(void *arg, const char *a, const char *b)
{
    json_array_append_new(arg, json_string(b));
    return true;
}

/* An entity as the file writes it: its id first. */
static json_t *with_id(const struct pt_entity *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(e->id));
    json_object_update(o, e->body);
    return o;
}

static bool mat_op(void *arg, const struct pt_entity *e)
{
    struct mat *m = arg;
    if (m->only && strcmp(e->source, m->only))
        return true;
    json_t *o = with_id(e);
    char pid[600];
    snprintf(pid, sizeof(pid), "op:%s/%s", e->parent, e->id);
    json_t *p = policy_in(m, pid);
    if (p)
        json_object_set_new(o, "policies", p);
    json_array_append_new(m->list, o);
    return true;
}

/* A stored certificate back to what the configuration reads: its data with the key unsealed. */
bool pt_model_cert_unseal(const char *secret_key, json_t *o, char *err, size_t errlen)
{
    const char *sealed = json_string_value(json_object_get(o, "sealedKey"));
    if (!sealed)
        return true;
    char *key = pt_model_unseal(secret_key, sealed);
    if (!key) {
        snprintf(err, errlen, "the private key cannot be decrypted (wrong or missing secretKey)");
        return false;
    }
    const char *pem = json_string_value(json_object_get(o, "data"));
    size_t n = (pem ? strlen(pem) : 0) + strlen(key) + 1;
    char *both = malloc(n);
    snprintf(both, n, "%s%s", pem ? pem : "", key);
    json_object_set_new(o, "data", json_string(both));
    OPENSSL_cleanse(both, n);
    OPENSSL_cleanse(key, strlen(key));
    free(both);
    free(key);
    json_object_del(o, "sealedKey");
    return true;
}

static bool unseal_cert_key(struct mat *m, const char *id, json_t *o)
{
    char err[160];
    if (pt_model_cert_unseal(m->secret_key, o, err, sizeof(err)))
        return true;
    pt_node_errors_add(m->errs, "certificates.%s: %s", id, err);
    return false;
}

static bool mat_entity(void *arg, const struct pt_entity *e)
{
    struct mat *m = arg;
    if (m->only && strcmp(e->source, m->only))
        return true;
    json_t *o = with_id(e);
    if (!strcmp(e->kind, "api")) {
        json_t *ops = m->ops ? json_object_get(m->ops, e->id) : NULL;
        if (ops)
            json_incref(ops);
        else {
            ops = json_array();
            if (!m->ops) {
                struct mat sub = {m->st, ops, m->secret_key, m->errs, true, m->only, m->policies, NULL};
                pt_store_each(m->st, "operation", e->id, mat_op, &sub);
            }
        }
        json_object_set_new(o, "operations", ops);
        char pid[300];
        snprintf(pid, sizeof(pid), "api:%s", e->id);
        json_t *p = policy_in(m, pid);
        if (p)
            json_object_set_new(o, "policies", p);
    } else if (!strcmp(e->kind, "product")) {
        json_t *apis = json_array(), *groups = json_array();
        pt_store_links(m->st, "product-api", e->id, add_link_b, apis);
        pt_store_links(m->st, "product-group", e->id, add_link_b, groups);
        json_object_set_new(o, "apis", apis);
        json_object_set_new(o, "groups", groups);
        char pid[300];
        snprintf(pid, sizeof(pid), "product:%s", e->id);
        json_t *p = policy_in(m, pid);
        if (p)
            json_object_set_new(o, "policies", p);
    } else if (!strcmp(e->kind, "workspace")) {
        char pid[300];
        snprintf(pid, sizeof(pid), "workspace:%s", e->id);
        json_t *p = policy_in(m, pid);
        if (p)
            json_object_set_new(o, "policies", p);
    } else if (!strcmp(e->kind, "user")) {
        json_object_set_new(o, "groups", json_array()); /* filled from group-user links below */
    } else if (!strcmp(e->kind, "gateway")) {
        /* the keys stay in the store: never in a generation, an export or a node's document */
        json_object_del(o, "primaryKey");
        json_object_del(o, "secondaryKey");
        json_t *apis = json_array();
        pt_store_links(m->st, "gateway-api", e->id, add_link_b, apis);
        json_object_set_new(o, "apis", apis);
    } else if (!strcmp(e->kind, "certificate")) {
        m->ok &= unseal_cert_key(m, e->id, o);
    } else if (!strcmp(e->kind, "namedValue") && json_is_string(json_object_get(o, "sealed"))) {
        char *plain = pt_model_unseal(m->secret_key, json_string_value(json_object_get(o, "sealed")));
        if (!plain) {
            pt_node_errors_add(
                m->errs, "namedValues.%s: the secret value cannot be decrypted (wrong or missing secretKey)",
                e->id);
            m->ok = false;
        } else {
            json_object_set_new(o, "value", json_string(plain));
            free(plain);
        }
        json_object_del(o, "sealed");
    }
    json_array_append_new(m->list, o);
    return true;
}

/* group-user pairs, to fill each user's groups: arg is the users by id (an object of id -> the
   user in the list), one lookup per pair rather than a scan of every user (a portal's users are
   all in "developers") */
static bool user_groups(void *arg, const char *group, const char *user)
{
    json_t *u = json_object_get(arg, user);
    if (u)
        json_array_append_new(json_object_get(u, "groups"), json_string(group));
    return true;
}

static void fill_user_groups(struct pt_store *st, json_t *users)
{
    json_t *by_id = json_object();
    size_t i;
    json_t *u;
    json_array_foreach(users, i, u)
    {
        json_object_set(by_id, str_of(u, "id", ""), u);
    }
    pt_store_links(st, "group-user", NULL, user_groups, by_id);
    json_decref(by_id);
}

struct pt_conf *pt_conf_from_tree(struct pt_pool *pool, const char *name, struct pt_node *root,
                                  struct pt_errors *errs);

static const char *id_of(const struct pt_node *n)
{
    const struct pt_node *id = n && n->kind == PT_N_MAP ? pt_node_get(n, "id") : NULL;
    return id && id->kind == PT_N_SCALAR ? id->str : NULL;
}

/* A list's entities by id, for overlay's lookups (lists of tens of thousands). */
struct idnode {
    const char *id;
    const struct pt_node *node;
};

static int idnode_cmp(const void *a, const void *b)
{
    return strcmp(((const struct idnode *)a)->id, ((const struct idnode *)b)->id);
}

/* Fills v (room for seq->n) with seq's entities by id, sorted; their number. */
static int ids_sort(const struct pt_node *seq, struct idnode *v)
{
    int n = 0;
    for (int k = 0; k < seq->n; k++)
        if (id_of(seq->items[k]))
            v[n++] = (struct idnode){id_of(seq->items[k]), seq->items[k]};
    qsort(v, (size_t)n, sizeof(*v), idnode_cmp); /* equal ids: the file has refused them already */
    return n;
}

/* The file configuration's entity lists by id, sorted once and kept in its pool (freed with it):
   every build from the file overlays the same lists, tens of thousands of entities each. */
struct pt_model_idlist {
    const struct pt_node *seq;
    struct idnode *byid;
    int nbyid;
};

struct pt_model_ids {
    int n;
    struct pt_model_idlist lists[PT_ARRAY_LEN(pt_model_kinds) + 1];
};

/* What overlay matches a list's entities by: `src`'s sorted by id, kept in `file` when src is one
   of its top-level lists (*kept true), else made for this call (malloc'd, *kept false). */
static struct idnode *ids_of(const struct pt_node *src, struct pt_conf *file, int *n, bool *kept)
{
    struct pt_model_ids *memo = file ? file->model_ids : NULL;
    *kept = file && src->parent && src->parent == file->root;
    for (int i = 0; *kept && memo && i < memo->n; i++)
        if (memo->lists[i].seq == src) {
            *n = memo->lists[i].nbyid;
            return memo->lists[i].byid;
        }
    if (*kept && !memo && (memo = pt_pool_calloc(file->pool, sizeof(*memo))))
        file->model_ids = memo;
    *kept = *kept && memo && memo->n < (int)PT_ARRAY_LEN(memo->lists);
    size_t size = sizeof(struct idnode) * (size_t)(src->n ? src->n : 1);
    struct idnode *v = *kept ? pt_pool_alloc(file->pool, size) : malloc(size);
    *kept = *kept && v;
    if (!v && !(v = malloc(size)))
        return NULL;
    *n = ids_sort(src, v);
    if (*kept)
        memo->lists[memo->n++] = (struct pt_model_idlist){src, v, *n};
    return v;
}

/*
 * Gives the nodes of `dst` (built from the store) the file positions of the
 * matching nodes of `src` (the file), so errors about what the file
 * declared -- at build time and at run time -- point into the file.  Maps
 * match by key, lists of entities by id, other lists by index.  `memo`: the
 * file configuration src is the tree of, whose top-level lists' ids are kept
 * sorted in it between builds (NULL: a document sorted for this call only).
 */
static void overlay(struct pt_node *dst, const struct pt_node *src, const char *file, struct pt_conf *memo)
{
    if (!src || dst->kind != src->kind)
        return;
    dst->file = file;
    dst->line = src->line;
    dst->col = src->col;
    if (dst->kind == PT_N_MAP) {
        for (int i = 0; i < dst->n; i++) {
            /* the first pair of src with that key, as pt_node_get finds it: one pass for both */
            int k = 0;
            while (k < src->n && !pt_node_same_key(pt_node_key(src, k)->str, pt_node_key(dst, i)->str))
                k++;
            if (k == src->n)
                continue;
            overlay(pt_node_key(dst, i), pt_node_key(src, k), file, memo);
            overlay(pt_node_val(dst, i), pt_node_val(src, k), file, memo);
        }
    } else if (dst->kind == PT_N_SEQ) {
        struct idnode *byid = NULL; /* src's entities by id, sorted when first needed */
        int nbyid = 0;
        bool kept = false;
        for (int i = 0; i < dst->n; i++) {
            const char *id = id_of(dst->items[i]);
            const struct pt_node *match = NULL;
            if (!id)
                match = i < src->n ? src->items[i] : NULL;
            else if (i < src->n && id_of(src->items[i]) && !strcmp(id_of(src->items[i]), id))
                match = src->items[i]; /* the usual case: the same place in both lists */
            else {
                if (!byid && !(byid = ids_of(src, memo, &nbyid, &kept)))
                    return;
                struct idnode key = {id, NULL};
                const struct idnode *f = bsearch(&key, byid, (size_t)nbyid, sizeof(*byid), idnode_cmp);
                match = f ? f->node : NULL;
            }
            if (match)
                overlay(dst->items[i], match, file, memo);
        }
        if (!kept)
            free(byid);
    }
}

static bool collect_policy(void *arg, const struct pt_entity *e)
{
    json_object_set(arg, e->id, e->body);
    return true;
}

/* An operation read ahead: into its API's list (the store gives them by API, then id). */
static bool group_op(void *arg, const struct pt_entity *e)
{
    struct mat *m = arg;
    json_t *list = json_object_get(m->ops, e->parent);
    if (!list)
        json_object_set_new(m->ops, e->parent, list = json_array());
    struct mat one = *m;
    one.list = list;
    return mat_op(&one, e);
}

/*
 * Reads every policy document and every operation in one query each, not
 * one query per API and per operation (tens of thousands with a large
 * service).  When a policy document is stored but does not load, the
 * reading ahead is given up: the per-entity path reports it as an error.
 */
static void read_ahead(struct mat *m)
{
    m->policies = json_object();
    pt_store_each(m->st, "policy", "", collect_policy, m->policies);
    if ((int)json_object_size(m->policies) != pt_store_count(m->st, "policy", "")) {
        json_decref(m->policies);
        m->policies = NULL;
        return;
    }
    m->ops = json_object();
    pt_store_each(m->st, "operation", NULL, group_op, m);
}

/* The store's kinds a list is read from (the policies go into APIs, operations, products and
   workspaces; the links into products, users and gateways); NULL: its own kind only. */
static const char *const *list_inputs(const char *kind)
{
    static const char *const api[] = {"api", "operation", "policy", NULL};
    static const char *const product[] = {"product", "product-api", "product-group", "policy", NULL};
    static const char *const workspace[] = {"workspace", "policy", NULL};
    static const char *const user[] = {"user", "group-user", NULL};
    static const char *const gateway[] = {"gateway", "gateway-api", NULL};
    static const char *const policy[] = {"policy", NULL};
    static const struct {
        const char *kind;
        const char *const *inputs;
    } map[] = {{"api", api},   {"product", product}, {"workspace", workspace},
               {"user", user}, {"gateway", gateway}, {"policy", policy}};
    for (size_t i = 0; i < PT_ARRAY_LEN(map); i++)
        if (!strcmp(map[i].kind, kind))
            return map[i].inputs;
    return NULL;
}

/* The sum of the write counters of what a list is read from: the list is still what the store
   holds while this has not moved (each counter only grows). */
static uint64_t list_version(struct pt_store *st, const char *kind)
{
    const char *const *in = list_inputs(kind);
    if (!in)
        return pt_store_kind_writes(st, kind);
    uint64_t v = 0;
    for (int i = 0; in[i]; i++)
        v += pt_store_kind_writes(st, in[i]);
    return v;
}

#define MODEL_LISTS (PT_ARRAY_LEN(pt_model_kinds)) /* the kinds' lists, then the global policy */

/* The ids of one kind written since a list was read, for patching it. */
struct written {
    char **ids;
    int n, cap;
};

static bool add_written(void *arg, const char *parent, const char *id)
{
    struct written *w = arg;
    if (*parent) /* not in the list, which holds the kind's entities without a parent */
        return true;
    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 8;
        char **v = realloc(w->ids, sizeof(*v) * (size_t)cap);
        if (!v)
            return false;
        w->ids = v;
        w->cap = cap;
    }
    return (w->ids[w->n] = strdup(id)) && ++w->n;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts the ids as the store lists entities (byte order) and keeps each once. */
static void written_sort(struct written *w)
{
    qsort(w->ids, (size_t)w->n, sizeof(*w->ids), str_cmp);
    int k = 0;
    for (int i = 0; i < w->n; i++) {
        if (k && !strcmp(w->ids[k - 1], w->ids[i]))
            free(w->ids[i]);
        else
            w->ids[k++] = w->ids[i];
    }
    w->n = k;
}

static void written_free(struct written *w)
{
    for (int i = 0; i < w->n; i++)
        free(w->ids[i]);
    free(w->ids);
}

static const char *list_id(const json_t *list, size_t i)
{
    return json_string_value(json_object_get(json_array_get(list, i), "id"));
}

/*
 * A list of one kind (read from that kind alone) brought up to date by id: the entities written
 * since `prev` was read (at the kind's counter prev_v and the store's any-kind counter prev_any) are
 * read again, the others are taken from prev as they are (shared, never changed).  Both the store
 * and prev list entities in id order, so the two merge in one pass.  NULL when the store cannot tell
 * what was written (then the list is read in full), or prev is not in id order.
 */
static json_t *merge_written(struct mat *m, const char *kind, const json_t *prev, struct written w);

static json_t *patch_list(struct mat *m, const char *kind, const json_t *prev, uint64_t prev_v,
                          uint64_t prev_any)
{
    struct written w = {0};
    if (!pt_store_written_ids(m->st, kind, prev_v, prev_any, add_written, &w)) {
        written_free(&w);
        return NULL;
    }
    return merge_written(m, kind, prev, w);
}

/* The kinds the lists patched by owner are read from (list_inputs of api, product, workspace): a
   reading keeps each one's counter, to ask the journal later what was written since. */
static const char *const owner_inputs[] = {"api",         "operation",     "policy",   "product",
                                           "product-api", "product-group", "workspace"};
#define OWNER_INPUTS PT_ARRAY_LEN(owner_inputs)

static int owner_input(const char *kind)
{
    for (size_t i = 0; i < OWNER_INPUTS; i++)
        if (!strcmp(owner_inputs[i], kind))
            return (int)i;
    return -1;
}

/* Whether a list is patched by owner: read from several kinds, each entity whole (not users and
   gateways: their links are filled into the list as a whole). */
static bool by_owner(const char *kind)
{
    return !strcmp(kind, "api") || !strcmp(kind, "product") || !strcmp(kind, "workspace");
}

struct owner_arg {
    const char *list;  /* the list's kind */
    const char *input; /* the kind written */
    struct written *w;
};

/* A row written of an input kind: the id of the list's entity it belongs to goes to the ids read
   again (a policy "api:ID" or "op:ID/OP" to API ID, an operation to its parent...); a row of no
   entity of the list (another scope's policy) to none. */
static bool add_owner(void *arg, const char *parent, const char *id)
{
    struct owner_arg *a = arg;
    char owner[512];
    const char *o = NULL;
    if (!strcmp(a->input, a->list))
        o = *parent ? NULL : id;
    else if (!strcmp(a->input, "operation"))
        o = parent;
    else if (!strcmp(a->input, "policy") && !*parent) {
        size_t n = strlen(a->list);
        if (!strncmp(id, a->list, n) && id[n] == ':')
            o = id + n + 1;
        else if (!strcmp(a->list, "api") && !strncmp(id, "op:", 3)) {
            const char *slash = strchr(id + 3, '/');
            if (!slash || (size_t)(slash - id - 3) >= sizeof(owner))
                return false; /* not a policy id the store writes: read the list in full */
            snprintf(owner, sizeof(owner), "%.*s", (int)(slash - id - 3), id + 3);
            o = owner;
        }
    } else
        return false; /* a link (never journaled), or a kind not known here */
    return !o || add_written(a->w, "", o);
}

/* A list read from several kinds brought up to date by the ids of its entities that any of them
   wrote since prev was read (each kind's counter then in prev_in); NULL when the store cannot tell. */
static json_t *patch_by_owner(struct mat *m, const char *kind, const json_t *prev, const uint64_t *prev_in,
                              uint64_t prev_any)
{
    struct written w = {0};
    const char *const *in = list_inputs(kind);
    for (int i = 0; in[i]; i++) {
        int k = owner_input(in[i]);
        struct owner_arg a = {kind, in[i], &w};
        if (k < 0 || !pt_store_written_ids(m->st, in[i], prev_in[k], prev_any, add_owner, &a)) {
            written_free(&w);
            return NULL;
        }
    }
    return merge_written(m, kind, prev, w);
}

/* prev with the entities named in w read again from the store (w's ids taken). */
static json_t *merge_written(struct mat *m, const char *kind, const json_t *prev, struct written w)
{
    if (!w.n) { /* written only where none of its entities is (another scope's policy): as it was */
        written_free(&w);
        return json_incref((json_t *)prev);
    }
    json_t *fresh = json_array(), *out = NULL;
    written_sort(&w);
    m->list = fresh; /* the written entities that are still there, in id order */
    for (int j = 0; j < w.n; j++)
        if (!pt_store_each_id(m->st, kind, "", w.ids[j], mat_entity, m))
            goto done;
    out = json_array();
    size_t i = 0, u = 0, nprev = json_array_size(prev);
    const char *old = nprev ? list_id(prev, 0) : NULL; /* the id of prev[i] */
    int j = 0;
    while (i < nprev || j < w.n) {
        if (i < nprev && !old) {
            json_decref(out); /* an entry without an id: not as the store lists it, not patched */
            out = NULL;
            goto done;
        }
        int c = i == nprev ? 1 : j == w.n ? -1 : strcmp(old, w.ids[j]);
        if (c <= 0) { /* prev[i] kept (c < 0), or replaced by what the store holds now (c == 0) */
            if (c < 0)
                json_array_append(out, json_array_get(prev, i));
            const char *next = ++i < nprev ? list_id(prev, i) : NULL;
            if (next && strcmp(old, next) >= 0) {
                json_decref(out); /* not in id order: not patched */
                out = NULL;
                goto done;
            }
            old = next;
            if (c < 0)
                continue;
        }
        if (u < json_array_size(fresh) && !strcmp(list_id(fresh, u), w.ids[j]))
            json_array_append(out, json_array_get(fresh, u++));
        j++;
    }
done:
    written_free(&w);
    json_decref(fresh);
    return out;
}

/*
 * The entity lists.  With `prev` (lists read before, at the versions in prev_v and the store's
 * any-kind counter prev_any), a list whose inputs have not been written since is taken from it as
 * it is (shared, never changed), a list read from its own kind alone is patched by id when the
 * store can tell which of its entities were written, the APIs, products and workspaces by the ids
 * their written rows belong to (prev_in: the counters of owner_inputs then), and only the others
 * are read again in full; versions (MODEL_LISTS of them) gets each list's version, versions_in
 * (OWNER_INPUTS) the input kinds' counters.
 */
static json_t *materialize(struct pt_store *st, const char *secret_key, const char *only, const json_t *prev,
                           const uint64_t *prev_v, const uint64_t *prev_in, uint64_t prev_any,
                           uint64_t *versions, uint64_t *versions_in, struct pt_errors *errs)
{
    json_t *root = json_object();
    int before = errs->n;
    bool fresh[MODEL_LISTS];
    json_t *patched[MODEL_LISTS] = {NULL};
    bool ahead_needed = false;
    for (size_t k = 0; versions_in && k < OWNER_INPUTS; k++)
        versions_in[k] = pt_store_kind_writes(st, owner_inputs[k]);
    for (int i = 0; pt_model_kinds[i].kind; i++) {
        const char *kind = pt_model_kinds[i].kind;
        uint64_t v = list_version(st, kind);
        fresh[i] = !prev || prev_v[i] != v;
        if (versions)
            versions[i] = v;
        if (!fresh[i] || !prev || only)
            continue;
        /* only what was written since is read again, where the store can tell what that was */
        struct mat m = {st, NULL, secret_key, errs, true, only, NULL, NULL};
        json_t *none = json_array(), *was = json_object_get(prev, pt_model_kinds[i].list); /* absent: empty */
        if (!list_inputs(kind))
            patched[i] = patch_list(&m, kind, was ? was : none, prev_v[i], prev_any);
        else if (by_owner(kind) && prev_in)
            patched[i] = patch_by_owner(&m, kind, was ? was : none, prev_in, prev_any);
        json_decref(none);
    }
    for (int i = 0; pt_model_kinds[i].kind; i++)
        ahead_needed |= fresh[i] && !patched[i] && list_inputs(pt_model_kinds[i].kind) &&
                        strcmp(pt_model_kinds[i].kind, "user") && strcmp(pt_model_kinds[i].kind, "gateway");
    struct mat ahead = {st, NULL, secret_key, errs, true, only, NULL, NULL};
    if (ahead_needed)
        read_ahead(&ahead);
    for (int i = 0; pt_model_kinds[i].kind; i++) {
        const char *name = pt_model_kinds[i].list;
        if (!fresh[i]) {
            json_t *kept = json_object_get(prev, name);
            if (kept)
                json_object_set(root, name, kept);
            continue;
        }
        struct mat m = {st, NULL, secret_key, errs, true, only, ahead.policies, ahead.ops};
        json_t *list = patched[i];
        if (!list) {
            m.list = list = json_array();
            pt_store_each(st, pt_model_kinds[i].kind, "", mat_entity, &m);
        }
        if (!strcmp(pt_model_kinds[i].kind, "user"))
            fill_user_groups(st, list); /* users are never patched: kept ones are not filled twice */
        if (json_array_size(list))
            json_object_set_new(root, name, list);
        else
            json_decref(list);
    }
    json_decref(ahead.policies);
    json_decref(ahead.ops);
    int gi = (int)MODEL_LISTS - 1;
    uint64_t gv = list_version(st, "policy");
    if (versions)
        versions[gi] = gv;
    if (prev && prev_v[gi] == gv) {
        json_t *kept = json_object_get(prev, "policies");
        if (kept)
            json_object_set(root, "policies", kept);
    } else {
        char src[16];
        json_t *g = !only || (pt_store_info(st, "policy", "", "global", src, NULL) && !strcmp(src, only))
                        ? policy_of(st, "global", errs)
                        : NULL;
        if (g)
            json_object_set_new(root, "policies", g);
    }
    if (errs->n > before) {
        json_decref(root);
        return NULL;
    }
    return root;
}

json_t *pt_model_entities(struct pt_store *st, const char *secret_key, const char *only,
                          struct pt_errors *errs)
{
    return materialize(st, secret_key, only, NULL, NULL, NULL, 0, NULL, NULL, errs);
}

/* The last materialized entity lists, while the store's entities have not been written since: a
   management write builds the generation from them and the self-hosted gateways' documents are cut
   from the same ones (tens of thousands of entities read, unsealed and parsed once, not twice).
   After a write, only the lists read from the kinds it wrote are read again (a key regenerated
   reads the subscriptions, not the APIs).  The control thread's alone; shared read-only. */
static struct {
    uint64_t store; /* pt_store_serial: a store opened at a closed one's address starts its counters at 0 */
    uint64_t writes;
    uint64_t versions[MODEL_LISTS];
    uint64_t inputs[OWNER_INPUTS]; /* the counters of the kinds the lists patched by owner read */
    uint64_t any; /* pt_store_any_writes: the lists of one kind are patched by id while it stays */
    char *key;
    json_t *ents;
} shared;

json_t *pt_model_entities_shared(struct pt_store *st, const char *secret_key, struct pt_errors *errs)
{
    uint64_t w = pt_store_entity_writes(st);
    bool same = shared.ents && shared.store == pt_store_serial(st) &&
                !strcmp(shared.key ? shared.key : "", secret_key ? secret_key : "");
    if (same && shared.writes == w)
        return json_incref(shared.ents);
    uint64_t versions[MODEL_LISTS], inputs[OWNER_INPUTS], any = pt_store_any_writes(st);
    json_t *ents = materialize(st, secret_key, NULL, same ? shared.ents : NULL, shared.versions,
                               shared.inputs, shared.any, versions, inputs, errs);
    if (!ents)
        return NULL;
    pt_model_entities_forget();
    char *k = strdup(secret_key ? secret_key : "");
    if (k) {
        shared.store = pt_store_serial(st);
        shared.writes = w;
        memcpy(shared.versions, versions, sizeof(versions));
        memcpy(shared.inputs, inputs, sizeof(inputs));
        shared.any = any;
        shared.key = k;
        shared.ents = json_incref(ents);
    }
    return ents;
}

void pt_model_entities_forget(void)
{
    json_decref(shared.ents);
    if (shared.key)
        OPENSSL_cleanse(shared.key, strlen(shared.key));
    free(shared.key);
    memset(&shared, 0, sizeof(shared));
}

/* Certificates that expire within PT_CERT_NEAR_EXPIRY_S (or have), logged once each (by id and
   thumbprint) from a start or reload on: management changes log only what is new. */
void pt_model_log_expiry(const struct pt_conf *cf, bool fresh)
{
    /* logged: "id/thumbprint/state" of the certificates already reported in their state (near
       expiry, expired), rebuilt at each call from the certificates there are: a deleted one is
       forgotten, one that crosses into the next state is reported again */
    static json_t *seen;
    json_t *now_seen = json_object();
    int64_t now = (int64_t)(pt_clock_wall_ms() / 1000);
    for (int i = 0; cf && i < cf->ncerts; i++) {
        const struct pt_storecert_cf *c = &cf->certs[i];
        if (!c->chain_pem || c->not_after - now >= PT_CERT_NEAR_EXPIRY_S)
            continue;
        bool expired = c->not_after <= now;
        char key[400];
        snprintf(key, sizeof(key), "%s/%s/%s", c->id, c->thumbprint, expired ? "expired" : "near");
        bool known = !fresh && seen && json_object_get(seen, key);
        json_object_set_new(now_seen, key, json_true());
        if (known)
            continue;
        if (expired)
            pt_warn("certificate '%s' expired on %s (thumbprint %s)", c->id, c->expiration, c->thumbprint);
        else
            pt_warn("certificate '%s' expires on %s, in %lld days (thumbprint %s)", c->id, c->expiration,
                    (long long)((c->not_after - now) / 86400), c->thumbprint);
    }
    json_decref(seen);
    seen = now_seen;
}

/* The arena a configuration tree is built in; NULL when memory is short (root is let go, the error said). */
static struct pt_pool *tree_pool(size_t size, json_t *root, struct pt_errors *errs)
{
    struct pt_pool *pool = pt_pool_new(size);
    if (!pool) {
        json_decref(root);
        pt_node_errors_add(errs, "out of memory while building the configuration");
    }
    return pool;
}

/* The file's settings as JSON, without its entity lists: only the settings are turned into JSON, not
   the whole file (tens of thousands of entities at every build and every management write). */
static json_t *file_settings(const struct pt_conf *file)
{
    json_t *root = json_object();
    const struct pt_node *r = file->root;
    for (int i = 0; r->kind == PT_N_MAP && i < r->n; i++)
        if (!is_entity_key(pt_node_key(r, i)->str))
            json_object_set_new(root, pt_node_key(r, i)->str, pt_node_to_json(pt_node_val(r, i)));
    return root;
}

struct pt_conf *pt_model_build(struct pt_store *st, const struct pt_conf *file, const char *secret_key,
                               struct pt_errors *errs)
{
    json_t *root = file_settings(file);
    json_t *ents = pt_model_entities_shared(st, secret_key, errs);
    if (!ents) {
        json_decref(root);
        return NULL;
    }
    json_object_update(root, ents); /* the lists are shared, never changed: root only holds them */
    json_decref(ents);
    struct pt_pool *pool = tree_pool(64 * 1024, root, errs);
    if (!pool)
        return NULL;
    struct pt_node *tree = pt_node_from_json(pool, root, NULL, 0);
    json_decref(root);
    overlay(tree, file->root, pt_pool_strdup(pool, file->root->file ? file->root->file : file->file),
            (struct pt_conf *)file); /* only its memo of sorted ids is written */
    struct pt_conf *cf = pt_conf_from_tree(pool, file->file, tree, errs);
    if (!cf)
        pt_pool_free(pool);
    return cf;
}

void pt_model_mark_take(struct pt_store *st, struct pt_model_mark *m)
{
    m->store = pt_store_serial(st);
    m->any = pt_store_any_writes(st);
    m->entity = pt_store_entity_writes(st);
    m->subs = pt_store_kind_writes(st, "subscription");
    m->taken = true;
}

bool pt_model_subs_only(struct pt_store *st, const struct pt_model_mark *m)
{
    if (!m->taken || m->store != pt_store_serial(st) || m->any != pt_store_any_writes(st))
        return false;
    /* with no write of every kind since, the subscription counter moves by its own writes only:
       every write counted since is one of them */
    return pt_store_entity_writes(st) - m->entity == pt_store_kind_writes(st, "subscription") - m->subs;
}

struct pt_conf *pt_model_build_subs(struct pt_store *st, const struct pt_conf *file,
                                    const struct pt_conf *base, const char *secret_key,
                                    struct pt_errors *errs)
{
    json_t *ents = pt_model_entities_shared(st, secret_key, errs); /* reads the subscriptions alone */
    if (!ents)
        return NULL;
    /* a root of the one list, so that messages name the subscriptions as the whole tree's do and
       point into the file as pt_model_build's */
    json_t *root = json_object();
    json_t *list = json_object_get(ents, "subscriptions");
    if (list)
        json_object_set(root, "subscriptions", list);
    json_decref(ents);
    struct pt_pool *pool = tree_pool(16 * 1024, root, errs);
    if (!pool)
        return NULL;
    struct pt_node *tree = pt_node_from_json(pool, root, NULL, 0);
    json_decref(root);
    overlay(tree, file->root, pt_pool_strdup(pool, file->root->file ? file->root->file : file->file),
            (struct pt_conf *)file);
    struct pt_conf *cf = pt_conf_with_subs(base, pool, pt_node_get(tree, "subscriptions"), errs);
    if (!cf)
        pt_pool_free(pool);
    return cf;
}

struct pt_conf *pt_model_parse_doc(const struct pt_conf *file, const json_t *doc,
                                   const struct pt_node *positions, const char *name, struct pt_errors *errs)
{
    if (!json_is_object(doc)) {
        pt_node_errors_add(errs, "%s: expected an object of entity lists", positions ? name : "(document)");
        return NULL;
    }
    int before = errs->n;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)doc, k, v)
    {
        if (!is_entity_key(k) && !portal_content_only(k, v)) {
            const struct pt_node *where = NULL;
            for (int i = 0; positions && i < positions->n; i++)
                if (!strcmp(pt_node_key(positions, i)->str, k))
                    where = pt_node_key(positions, i);
            if (where)
                pt_node_error(errs, where, "'%s' is a setting of the configuration file, not an entity list",
                              k);
            else
                pt_node_errors_add(errs, "%s: a setting of the configuration file, not an entity list", k);
        }
    }
    if (errs->n > before)
        return NULL;
    json_t *root = file_settings(file);
    /* the portal's content is the document's (or none), its settings the file's */
    json_t *portal = json_object_get(root, "portal");
    for (size_t i = 0; i < PT_ARRAY_LEN(portal_content_keys); i++)
        json_object_del(portal, portal_content_keys[i]);
    json_t *dp = json_object_get(doc, "portal");
    if (dp && !portal)
        json_object_set_new(root, "portal", portal = json_object());
    json_object_update(portal, dp);
    json_t *rest = json_deep_copy(doc);
    json_object_del(rest, "portal");
    json_object_update(root, rest);
    json_decref(rest);
    struct pt_pool *pool = tree_pool(16 * 1024, root, errs);
    if (!pool)
        return NULL;
    struct pt_node *tree = pt_node_from_json(pool, root, NULL, 0);
    json_decref(root);
    if (positions)
        overlay(tree, positions, pt_pool_strdup(pool, name), NULL);
    struct pt_conf *cf = pt_conf_from_tree(pool, name, tree, errs);
    if (!cf)
        pt_pool_free(pool);
    return cf;
}
