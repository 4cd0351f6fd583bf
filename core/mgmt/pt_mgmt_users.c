/*
 * pt_mgmt_users -- a user's portal password through the management API
 * (docs/management-api.md#portal-passwords):
 *
 *   users/{id}/invitation   POST   sends the `invite` mail: a link to the
 *                                  portal's /invitation with a new
 *                                  single-use token; 202 {"sent": true}
 *   users/{id}/password     PUT    {"password": "..."}: sets it; 204
 *
 * This is how an administrator (a user in the group administrators) gets a
 * first password when there is no other administrator to invite them on
 * the portal.  The password is hashed with Argon2id and bound to the user's
 * address exactly as the portal does it (pt_store_accounts); it is never
 * kept in the entity, so no GET, export or YAML file carries it.  Setting
 * it moves the user's security stamp on, which ends their sessions; a
 * pending user becomes active.  Blocked and deleted users are refused
 * (409): unblocking is a change of state, said on its own.
 *
 * Only roles that may change service-level entities (the administrator)
 * reach these; readers and workspace roles get 403.
 */
#include "base/pt_log.h"
#include "conf/pt_content.h"
#include "conf/pt_store_accounts.h"
#include "http/pt_mail.h"
#include "mgmt/pt_mgmt_int.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The user's stored body (a new reference) and state; NULL after answering
   404, or 409 for a blocked or deleted user or one without an address. */
static json_t *live_user(struct mreq *m, const char **state, const char **email)
{
    json_t *body = NULL;
    if (!pt_store_get(pt_mgmt_req_store, "user", "", m->id, &body, NULL)) {
        pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "user '%s' not found", m->id);
        return NULL;
    }
    const char *s = json_string_value(json_object_get(body, "state"));
    *state = s ? s : "active";
    *email = json_string_value(json_object_get(body, "email"));
    if (strcmp(*state, "active") && strcmp(*state, "pending")) {
        pt_mgmt_req_send_error(m, 409, "Conflict",
                               "user '%s' is %s: only pending and active users get a password "
                               "(PATCH its state to active first)",
                               m->id, *state);
        json_decref(body);
        return NULL;
    }
    if (!*email || !**email) {
        pt_mgmt_req_send_error(m, 409, "Conflict", "user '%s' has no email address to sign in with", m->id);
        json_decref(body);
        return NULL;
    }
    return body;
}

/* The published site's title, for the mail's {{siteTitle}} (the default
   when nothing is published yet). */
static char *site_title(void)
{
    json_t *rev = pt_content_revision(pt_mgmt_req_store, pt_content_latest(pt_mgmt_req_store));
    json_t *site = pt_content_site_full(json_object_get(rev, "site"));
    const char *t = json_string_value(json_object_get(site, "title"));
    char *out = strdup(t ? t : "");
    json_decref(site);
    json_decref(rev);
    return out;
}

/* ------------------------------------------------------------- invitation */

static void invite(struct mreq *m)
{
    const struct pt_conf *f = pt_mgmt_req_hooks->file();
    const char *state, *email;
    json_t *body = live_user(m, &state, &email);
    if (!body)
        return;
    if (!f->portal.listen || !f->portal.public_url) {
        pt_mgmt_req_send_error(m, 409, "Conflict",
                               "there is no developer portal (portal.listen is not set): the invitation "
                               "link would lead nowhere");
        json_decref(body);
        return;
    }
    /* a new link replaces the earlier ones */
    char token[PT_STORE_ACCOUNTS_SECRET_CHARS + 1];
    int64_t expires = (int64_t)pt_clock_wall_ms() + (int64_t)f->portal.confirm_ttl_ms;
    if (!pt_store_accounts_token_drop_user(pt_mgmt_req_store, m->id, "invite") ||
        !pt_store_accounts_token_new(pt_mgmt_req_store, "invite", m->id, expires, token)) {
        pt_mgmt_req_send_error(m, 500, "StoreError", "the invitation could not be stored: %s",
                               pt_store_error(pt_mgmt_req_store));
        json_decref(body);
        return;
    }
    size_t ul = strlen(f->portal.public_url);
    while (ul && f->portal.public_url[ul - 1] == '/')
        ul--;
    char link[1200];
    snprintf(link, sizeof(link), "%.*s/invitation?token=%s", (int)ul, f->portal.public_url, token);
    OPENSSL_cleanse(token, sizeof(token));
    char *title = site_title();
    const char *first = json_string_value(json_object_get(body, "firstName"));
    const char *last = json_string_value(json_object_get(body, "lastName"));
    json_t *vars = json_pack("{s:s,s:s,s:s,s:s,s:s}", "firstName", first ? first : "", "lastName",
                             last ? last : "", "email", email, "link", link, "siteTitle", title);
    char err[256] = "";
    bool sent =
        pt_mail_send_template(pt_mgmt_req_store, &f->portal.mail, "invite", email, vars, err, sizeof(err));
    OPENSSL_cleanse(link, sizeof(link));
    json_decref(vars);
    free(title);
    if (!sent) {
        /* the token would only wait unused: drop it */
        pt_store_accounts_token_drop_user(pt_mgmt_req_store, m->id, "invite");
        pt_mgmt_req_send_error(m, 502, "MailNotSent", "the invitation mail to %s was not sent: %s", email,
                               err);
        json_decref(body);
        return;
    }
    pt_info("management: invitation mail sent to user %s", m->id);
    json_decref(body);
    pt_mgmt_req_send_json(m, 202, json_pack("{s:b}", "sent", 1), NULL);
}

/* --------------------------------------------------------------- password */

struct activate {
    json_t *body;
    const char *email;
    const char *pw;
};

/* Inside the change's transaction: the pending user becomes active and gets
   the password together (both or neither). */
static bool activate_fn(struct mreq *m, void *arg, struct pt_errors *errs)
{
    struct activate *a = arg;
    char source[16] = "api";
    pt_store_info(pt_mgmt_req_store, "user", "", m->id, source, NULL);
    json_object_set_new(a->body, "state", json_string("active"));
    if (!pt_store_put(pt_mgmt_req_store, "user", "", m->id, "", a->body, source, NULL) ||
        !pt_store_accounts_password_set(pt_mgmt_req_store, m->id, a->email, a->pw)) {
        pt_node_errors_add(errs, "store: %s", pt_store_error(pt_mgmt_req_store));
        return false;
    }
    return true;
}

/* Wipes the plaintext a password request carried: the parsed string, and the
   request's body buffer (evbuffer_copyout copies; the buffer itself is freed
   by libevent without clearing). */
static void forget_password_body(struct mreq *m, json_t *req)
{
    json_t *pwj = json_object_get(req, "password");
    if (json_is_string(pwj))
        OPENSSL_cleanse((char *)json_string_value(pwj), json_string_length(pwj));
    struct evbuffer *in = evhttp_request_get_input_buffer(m->r);
    size_t n = evbuffer_get_length(in);
    for (size_t i = 0; i < 64 && n > 0; i++) { /* a body is a handful of chains */
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || !v.iov_len)
            break;
        OPENSSL_cleanse(v.iov_base, v.iov_len);
        evbuffer_drain(in, v.iov_len);
        n -= v.iov_len < n ? v.iov_len : n;
    }
}

static void set_password(struct mreq *m)
{
    const char *state, *email;
    json_t *body = live_user(m, &state, &email);
    if (!body)
        return;
    json_t *req = pt_mgmt_req_body(m, false);
    if (!req) {
        json_decref(body);
        return;
    }
    json_t *pwj = json_object_get(req, "password");
    const char *why = NULL;
    bool ok = false;
    if (!json_is_object(req) || !json_is_string(pwj) || json_object_size(req) != 1) {
        pt_mgmt_req_send_error(m, 400, "ValidationError",
                               "the body must be {\"password\": \"...\"} and nothing else");
        goto done;
    }
    const char *pw = json_string_value(pwj);
    if (strlen(pw) != json_string_length(pwj)) {
        pt_mgmt_req_send_error(m, 400, "ValidationError", "password: it must not contain NUL characters");
        goto done;
    }
    if (!pt_store_accounts_password_ok(pw, &why)) {
        pt_mgmt_req_send_error(m, 400, "ValidationError", "password: %s", why);
        goto done;
    }
    /* activate_fn rewrites body's state: its string is gone after the change */
    bool was_pending = !strcmp(state, "pending");
    if (was_pending) {
        struct activate a = {body, email, pw};
        if (!pt_mgmt_entities_change(m, activate_fn, &a, 500, NULL))
            goto done; /* answered */
    } else if (!pt_store_accounts_password_set(pt_mgmt_req_store, m->id, email, pw)) {
        pt_mgmt_req_send_error(m, 500, "StoreError", "the password could not be set: %s",
                               pt_store_error(pt_mgmt_req_store));
        goto done;
    }
    ok = true;
    /* the stamp moved on, so no older session loads; drop their rows too,
       and the links of earlier reset or invitation mails */
    pt_store_accounts_session_delete_user(pt_mgmt_req_store, m->id);
    pt_store_accounts_token_drop_user(pt_mgmt_req_store, m->id, "reset");
    pt_store_accounts_token_drop_user(pt_mgmt_req_store, m->id, "invite");
    pt_info("management: the portal password of user %s was set%s", m->id,
            was_pending ? " (now active)" : "");
done:
    /* every path: the plaintext wiped, the parsed body (a new reference) released */
    forget_password_body(m, req);
    json_decref(req);
    json_decref(body);
    if (ok)
        pt_mgmt_req_send_json(m, 204, NULL, NULL);
}

void pt_mgmt_users_serve(struct mreq *m)
{
    /* administrators only: these change a user's access to the portal */
    if (!pt_mgmt_auth_authorize(m, true))
        return;
    if (!strcmp(m->route->kind, "invitation"))
        invite(m);
    else
        set_password(m);
}
