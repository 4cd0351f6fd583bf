/*
 * pt_mgmt_auth -- who may use the management API, and for what: the
 * administrator token and the access tokens of the store (their roles and
 * workspaces), the check of a route against the caller's role, the making
 * of new access tokens, and the rule for policy attributes that name files
 * on the gateway's host.
 */
#include "conf/pt_model.h"
#include "mgmt/pt_mgmt_int.h"

#include <errno.h>
#include <event2/http.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ roles */

/* Indexed by enum role. */
static const char *const role_names[] = {"",
                                         "administrator",
                                         "reader",
                                         "workspaceContributor",
                                         "workspaceReader",
                                         "apiDeveloper",
                                         "apiProductManager",
                                         NULL};

/* --------------------------------------------------------- authentication */

static void sha256_hex(const char *s, char out[65])
{
    unsigned char d[32];
    SHA256((const unsigned char *)s, strlen(s), d);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

struct token_find {
    const char hash[65];
    enum role role;
    char ws[128];
    char id[128]; /* the access token's id (never its value): who, in log lines */
};

static bool token_match(void *arg, const struct pt_entity *e)
{
    struct token_find *f = arg;
    const char *h = json_string_value(json_object_get(e->body, "hash"));
    if (!h || strlen(h) != 64 || CRYPTO_memcmp(h, f->hash, 64) != 0)
        return true;
    const char *r = json_string_value(json_object_get(e->body, "role"));
    for (int i = 1; r && role_names[i]; i++)
        if (!strcmp(role_names[i], r))
            f->role = (enum role)i;
    snprintf(f->ws, sizeof(f->ws), "%s", json_string_value(json_object_get(e->body, "workspace")) ?: "");
    snprintf(f->id, sizeof(f->id), "%s", e->id);
    return false;
}

const char *pt_mgmt_auth_admin_token(void)
{
    const char *e = getenv("PORTICO_ADMIN_TOKEN");
    if (e && *e)
        return e;
    const struct pt_conf *f = pt_mgmt_req_hooks->file();
    return f->mgmt.admin_token;
}

bool pt_mgmt_auth_authenticate(struct mreq *m)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(m->r), "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) || !h[7]) {
        pt_mgmt_req_send_error(m, 401, "Unauthorized", "an Authorization: Bearer token is required");
        return false;
    }
    const char *tok = h + 7;
    const char *admin = pt_mgmt_auth_admin_token();
    char hash[65];
    sha256_hex(tok, hash);
    if (admin) {
        char ah[65];
        sha256_hex(admin, ah);
        if (CRYPTO_memcmp(ah, hash, 64) == 0) {
            m->role = R_ADMIN;
            snprintf(m->who, sizeof(m->who), "the administrator token");
            return true;
        }
    }
    struct token_find f = {.role = R_NONE};
    memcpy((char *)f.hash, hash, 65);
    pt_store_each(pt_mgmt_req_store, "token", "", token_match, &f);
    if (f.role == R_NONE) {
        pt_mgmt_req_send_error(m, 401, "Unauthorized", "the token is not valid");
        return false;
    }
    m->role = f.role;
    snprintf(m->role_ws, sizeof(m->role_ws), "%s", f.ws);
    snprintf(m->who, sizeof(m->who), "access token '%.100s' (%s)", f.id, role_names[f.role]);
    return true;
}

/* ---------------------------------------------------------- authorization */

bool pt_mgmt_auth_authorize(struct mreq *m, bool write)
{
    enum area a = m->route->area;
    bool ok = false;
    switch (m->role) {
    case R_ADMIN:
        ok = true;
        break;
    case R_READER:
        ok = !write && a != A_SECRETS && a != A_NV_SECRETS;
        break;
    default: {
        /* workspace roles: inside their workspace only */
        bool ws_policy = (m->route->h == H_POLICY || m->route->h == H_POLICIES) && m->route->kind &&
                         !strcmp(m->route->kind, "workspace");
        bool own = m->ws ? !strcmp(m->ws, m->role_ws) : ws_policy && m->id && !strcmp(m->id, m->role_ws);
        bool self = !m->ws && m->route->kind && !strcmp(m->route->kind, "workspace") && m->id &&
                    !strcmp(m->id, m->role_ws) && !write;
        if (self)
            ok = true;
        else if (!own)
            ok = false;
        else if (m->role == R_WS_CONTRIBUTOR)
            ok = true;
        else if (m->role == R_WS_READER)
            ok = !write && a != A_SECRETS && a != A_NV_SECRETS;
        else if (m->role == R_API_DEVELOPER) /* APIs and what they use: named values too */
            ok = a == A_API || a == A_NV_SECRETS || (!write && a != A_SECRETS);
        else if (m->role == R_PRODUCT_MANAGER) /* products and subscriptions, their keys */
            ok = a == A_PRODUCT || a == A_SECRETS || (!write && a != A_NV_SECRETS);
    }
    }
    if (!ok)
        pt_mgmt_req_send_error(m, 403, "Forbidden", "the %s role may not %s %s", role_names[m->role],
                               write ? "change" : "read",
                               m->ws && strcmp(m->ws, m->role_ws) ? "another workspace" : "this resource");
    return ok;
}

/* ----------------------------------------------------------------- tokens */

bool pt_mgmt_auth_role_known(const char *r)
{
    bool known = false;
    for (int i = 1; r && role_names[i]; i++)
        known |= !strcmp(role_names[i], r);
    return known;
}

bool pt_mgmt_auth_role_needs_workspace(const char *r)
{
    for (int i = R_WS_CONTRIBUTOR; role_names[i]; i++)
        if (!strcmp(role_names[i], r))
            return true;
    return false;
}

/* The secret is made here and shown once: the store keeps its hash. */
void pt_mgmt_auth_new_token(char secret[80], char hash[65])
{
    char a[33], b[33];
    pt_model_new_key(a);
    pt_model_new_key(b);
    snprintf(secret, 80, "pt_%s%s", a, b);
    sha256_hex(secret, hash);
}

/* ------------------------------------------------------ files in policies */

/*
 * Policy attributes that name files on the gateway's host (today
 * authentication-certificate's certificate and key) are the configuration
 * file's business.  Through this API only an administrator may name one,
 * and only under the configuration's folder; a workspace role may name
 * none, or it could make the gateway read any file it can (a private key
 * of the service, for one).
 */
static const struct {
    const char *policy, *attr;
} file_attrs[] = {{"authentication-certificate", "certificate"}, {"authentication-certificate", "key"}};

/* Is path (relative ones from the configuration's folder) under that folder, symbolic links
   resolved?  With may_be_new, a file that does not exist yet qualifies by its folder. */
static bool path_under_conf(const char *path, bool may_be_new)
{
    const struct pt_conf *f = pt_mgmt_req_hooks->file();
    char dir[4096] = ".", full[8192], real[PATH_MAX], realdir[PATH_MAX];
    const char *slash = f && f->file ? strrchr(f->file, '/') : NULL;
    if (slash)
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - f->file), f->file);
    if (path[0] == '/')
        snprintf(full, sizeof(full), "%s", path);
    else
        snprintf(full, sizeof(full), "%s/%s", dir, path);
    if (!realpath(dir, realdir))
        return false;
    if (!realpath(full, real)) {
        char *last = strrchr(full, '/');
        if (!may_be_new || errno != ENOENT || !last || !last[1] || !strcmp(last, "/..") ||
            !strcmp(last, "/."))
            return false;
        *last = '\0'; /* the folder it would be created in */
        if (!realpath(full[0] ? full : "/", real))
            return false;
        size_t k = strlen(real);
        if (k + 1 + strlen(last + 1) >= sizeof(real))
            return false;
        real[k] = '/';
        strcpy(real + k + 1, last + 1);
    }
    size_t n = strlen(realdir);
    return !strncmp(real, realdir, n) && real[n] == '/';
}

static bool file_under_conf(const char *path)
{
    return path_under_conf(path, false);
}

/* Walks a policy document (or a fragment's statements); false after answering 403/400. */
static bool files_ok(struct mreq *m, json_t *j, int depth)
{
    if (depth > 64)
        return true; /* deeper than any valid document: the validator refuses it */
    if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            if (!files_ok(m, v, depth + 1))
                return false;
        }
        return true;
    }
    if (!json_is_object(j))
        return true;
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
    {
        for (size_t i = 0; i < PT_ARRAY_LEN(file_attrs); i++) {
            const char *path = json_string_value(json_object_get(v, file_attrs[i].attr));
            if (strcmp(k, file_attrs[i].policy) || !path)
                continue;
            if (m->role != R_ADMIN) {
                pt_mgmt_req_send_error(m, 403, "Forbidden",
                                       "%s: '%s' names a file on the gateway's host; only an "
                                       "administrator may, and only under the configuration's folder",
                                       k, file_attrs[i].attr);
                return false;
            }
            if (!file_under_conf(path)) {
                pt_mgmt_req_send_error(m, 400, "ValidationError",
                                       "%s: %s '%s' is not a file under the configuration's folder", k,
                                       file_attrs[i].attr, path);
                return false;
            }
        }
        if (!files_ok(m, v, depth + 1))
            return false;
    }
    return true;
}

bool pt_mgmt_auth_files_allowed(struct mreq *m, json_t *doc)
{
    return files_ok(m, doc, 0);
}

/*
 * A logger written through this API writes to the host: a file logger's
 * path, and a syslog logger's unix socket (other than /dev/log), must lie
 * under the configuration's folder, as for policies' files -- else an
 * administrator's token would let it append to any file the gateway may
 * write (~/.ssh/authorized_keys) or talk to any local socket.
 */
bool pt_mgmt_auth_logger_allowed(struct mreq *m, json_t *logger)
{
    const char *path = json_string_value(json_object_get(json_object_get(logger, "file"), "path"));
    if (path && !path_under_conf(path, true)) {
        pt_mgmt_req_send_error(
            m, 400, "ValidationError",
            "file.path '%s' is not under the configuration's folder (files written through "
            "the management API must be)",
            path);
        return false;
    }
    const char *addr = json_string_value(json_object_get(json_object_get(logger, "syslog"), "address"));
    if (addr && !strncmp(addr, "unix://", 7) && strcmp(addr + 7, "/dev/log") &&
        !path_under_conf(addr + 7, false)) {
        pt_mgmt_req_send_error(m, 400, "ValidationError",
                               "syslog.address '%s': through the management API a unix socket is /dev/log or "
                               "one under the configuration's folder",
                               addr);
        return false;
    }
    return true;
}
