/*
 * pt_portal_account -- the portal's accounts: signing up and confirming,
 * signing in and out, resetting a forgotten password, the profile, changing
 * the password, closing the account, and invitations.
 *
 * Portal users are the `user` entities: a sign-up writes one (state
 * pending, group developers) through the same store transaction and
 * hooks->publish as the management API, so the gateway's generation knows
 * it at once.  Passwords are kept as Argon2id hashes (libargon2, encoded
 * form with its salt and parameters) in the store's portal_credentials,
 * beside a security stamp that every password change, reset or closing
 * moves on (which ends the user's sessions, see pt_portal_session.c).
 *
 * What an attacker could learn or try, and the answer:
 *   - whether an email has an account: sign-in, sign-up and reset give the
 *     same page for known and unknown addresses; an unknown one is checked
 *     against a dummy hash and a known one at sign-up is hashed anyway, so
 *     the time is the same too;
 *   - guessing passwords: failures are counted per account (its email,
 *     also for unknown ones) and per address (four times the account
 *     limit); at portal.signin.maxFailures within portal.signin.lockout the
 *     key is locked for that long, and a locked key gets the same answer
 *     whatever the password;
 *   - mail links (confirm, reset, invite): 256-bit single-use tokens that
 *     expire (portal.tokens), stored as hashes; a link opened by a mail
 *     scanner's GET only shows a form, the POST uses the token;
 *   - forged requests: every POST checks the session's CSRF token.
 */
#include "portal/pt_portal_int.h"

#include "base/pt_log.h"
#include "conf/pt_store_accounts.h"
#include "http/pt_mail.h"

#include <ctype.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASH_MAX PT_STORE_ACCOUNTS_HASH_MAX
#define PASSWORD_MIN PT_STORE_ACCOUNTS_PASSWORD_MIN
#define PASSWORD_MAX PT_STORE_ACCOUNTS_PASSWORD_MAX
#define NAME_MAX_LEN 100
#define EMAIL_MAX 254

/* The per-address limit, in multiples of portal.signin.maxFailures: people
   behind one address (an office) share it. */
#define ADDRESS_FACTOR 4

/* ------------------------------------------------------------ pure pieces */

/* Passwords and their hashes are the store's (pt_store_accounts): the
   management API sets them too, exactly as the portal does. */
bool pt_portal_account_password_ok(const char *pw, const char **why)
{
    return pt_store_accounts_password_ok(pw, why);
}

bool pt_portal_account_email_ok(const char *e)
{
    size_t n = strlen(e);
    const char *at = strchr(e, '@');
    if (n < 3 || n > EMAIL_MAX || !at || at == e || !at[1] || strchr(at + 1, '@') || !strchr(at + 1, '.'))
        return false;
    for (const unsigned char *p = (const unsigned char *)e; *p; p++)
        if (*p <= ' ' || *p == 0x7f || strchr("<>()[]\\,;:\"", *p))
            return false;
    return true;
}

bool pt_portal_account_hash_password(const char *pw, char *out, size_t size)
{
    return pt_store_accounts_hash_password(pw, out, size);
}

bool pt_portal_account_verify_password(const char *hash, const char *pw)
{
    return pt_store_accounts_verify_password(hash, pw);
}

bool pt_portal_account_throttle_locked(const struct pt_store_accounts_throttle *t, int64_t now)
{
    return t->locked_until > now;
}

void pt_portal_account_throttle_fail(struct pt_store_accounts_throttle *t, int64_t now, int64_t max,
                                     int64_t lockout_ms)
{
    /* failures count within one lockout period of each other */
    if (now - t->updated > lockout_ms)
        t->failures = 0;
    t->failures++;
    t->updated = now;
    if (t->failures >= max) {
        t->locked_until = now + lockout_ms;
        t->failures = 0;
    }
}

/* ------------------------------------------------------------- helpers */

static struct pt_store *store(void)
{
    return pt_portal_req_srv.store;
}

static const struct pt_portal_cf *cf(void)
{
    return &pt_portal_req_srv.file->portal;
}

static int64_t now_ms(void)
{
    return (int64_t)pt_clock_wall_ms();
}

static const char *field(struct pt_portal_req *r, const char *name)
{
    const char *v = pt_portal_req_form(r, name);
    return v ? v : "";
}

static const json_t *site(struct pt_portal_req *r)
{
    return json_object_get(pt_portal_content_get(r), "site");
}

static const char *site_str(struct pt_portal_req *r, const char *key)
{
    const char *v = json_string_value(json_object_get(site(r), key));
    return v ? v : "";
}

/* A trimmed copy of a name field, bounded. */
static void name_of(struct pt_portal_req *r, const char *f, char *out, size_t size)
{
    const char *v = field(r, f);
    while (*v == ' ' || *v == '\t')
        v++;
    snprintf(out, size, "%s", v);
    size_t n = strlen(out);
    while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == '\t'))
        out[--n] = '\0';
}

bool pt_portal_account_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (!n || n > NAME_MAX_LEN)
        return false;
    return pt_conf_entities_text_ok(s);
}

/* Both names of a form (trimmed copies in first and last) are acceptable. */
static bool names_ok(struct pt_portal_req *r, const char *first, const char *last)
{
    return pt_portal_account_name_ok(first) && pt_portal_account_name_ok(last) &&
           strlen(field(r, "firstName")) <= NAME_MAX_LEN && strlen(field(r, "lastName")) <= NAME_MAX_LEN;
}

static void esc(struct pt_portal_req *r, const char *s)
{
    pt_portal_render_esc(r->out, s);
}

/* <p><label><input></p> */
static void input(struct pt_portal_req *r, const char *id, const char *name, const char *label,
                  const char *type, const char *value, const char *autocomplete, bool required)
{
    evbuffer_add_printf(r->out, "<p><label for=\"%s\">", id);
    esc(r, label);
    evbuffer_add_printf(r->out, "</label> <input id=\"%s\" name=\"%s\" type=\"%s\"", id, name, type);
    if (value) {
        evbuffer_add_printf(r->out, " value=\"");
        esc(r, value);
        evbuffer_add_printf(r->out, "\"");
    }
    if (autocomplete)
        evbuffer_add_printf(r->out, " autocomplete=\"%s\"", autocomplete);
    if (!strcmp(type, "password") && autocomplete && !strcmp(autocomplete, "new-password"))
        evbuffer_add_printf(r->out, " minlength=\"%d\"", PASSWORD_MIN);
    evbuffer_add_printf(r->out, "%s></p>\n", required ? " required" : "");
}

static void form_open(struct pt_portal_req *r, const char *id, const char *action)
{
    evbuffer_add_printf(r->out, "<form id=\"%s\" method=\"post\" action=\"%s\">\n", id, action);
    pt_portal_render_csrf(r);
}

static void hidden(struct pt_portal_req *r, const char *name, const char *value)
{
    evbuffer_add_printf(r->out, "<input type=\"hidden\" name=\"%s\" value=\"", name);
    esc(r, value);
    evbuffer_add_printf(r->out, "\">\n");
}

static void form_close(struct pt_portal_req *r, const char *button)
{
    evbuffer_add_printf(r->out, "<p><button type=\"submit\">");
    esc(r, button);
    evbuffer_add_printf(r->out, "</button></p>\n</form>\n");
}

static void error(struct pt_portal_req *r, const char *msg)
{
    if (!msg)
        return;
    evbuffer_add_printf(r->out, "<p class=\"error\" role=\"alert\">");
    esc(r, msg);
    evbuffer_add_printf(r->out, "</p>\n");
}

static void para(struct pt_portal_req *r, const char *text)
{
    evbuffer_add_printf(r->out, "<p>");
    esc(r, text);
    evbuffer_add_printf(r->out, "</p>\n");
}

/* A whole page with one message (and status). */
static void message_page(struct pt_portal_req *r, int status, const char *title, const char *text, bool alert)
{
    r->status = status;
    pt_portal_render_begin(r, title);
    evbuffer_add_printf(r->out, "<h1>");
    esc(r, title);
    evbuffer_add_printf(r->out, "</h1>\n");
    if (alert)
        error(r, text);
    else
        para(r, text);
    pt_portal_render_end(r);
}

static void bad_link(struct pt_portal_req *r)
{
    message_page(r, 400, "Link not valid",
                 "This link is not valid: it was used already, it has expired, or it was mistyped. "
                 "Ask for a new one.",
                 true);
}

/* The token of a link as the store keeps it (its hash); false when it does
   not have a token's form. */
static bool token_hash(const char *token, char h[65])
{
    if (!token || !pt_portal_session_well_formed(token))
        return false;
    pt_portal_session_hash(token, h);
    return true;
}

/* A new token for user: `raw` gets what the link carries. */
static bool token_new(const char *purpose, const char *user, uint64_t ttl_ms,
                      char raw[PT_PORTAL_SESSION_CHARS + 1])
{
    return pt_store_accounts_token_new(store(), purpose, user, now_ms() + (int64_t)ttl_ms, raw);
}

/* Sends a template; a failure is logged (the visitor's answer does not
   change: it must not tell whether an address has an account). */
/* Sends template `tmpl` to `to` with a link to path (and ?token= when token is set). */
static void send_mail_titled(const char *title, const char *tmpl, const char *to, const char *first,
                             const char *last, const char *path, const char *token)
{
    char link[1024];
    snprintf(link, sizeof(link), "%s%s%s%s", pt_portal_req_base_url(), path, token ? "?token=" : "",
             token ? token : "");
    json_t *vars = json_pack("{s:s,s:s,s:s,s:s,s:s}", "firstName", first ? first : "", "lastName",
                             last ? last : "", "email", to, "link", link, "siteTitle", title ? title : "");
    char err[256] = "";
    if (!pt_mail_send_template(store(), &cf()->mail, tmpl, to, vars, err, sizeof(err)))
        pt_warn("portal: the %s mail to %s was not sent: %s", tmpl, to, err);
    json_decref(vars);
}

static void send_mail(struct pt_portal_req *r, const char *tmpl, const char *to, const char *first,
                      const char *last, const char *path, const char *token)
{
    send_mail_titled(site_str(r, "title"), tmpl, to, first, last, path, token);
}

/* Publishes the open transaction's writes (commits, or rolls back). */
static bool publish(const char *what)
{
    struct pt_errors errs = {0};
    bool ok = pt_portal_req_srv.hooks->publish(&errs);
    if (!ok)
        for (int i = 0; i < errs.n; i++)
            pt_warn("portal: %s: %s", what, errs.msgs[i]);
    pt_node_errors_clear(&errs);
    return ok;
}

/* A user's stored body (a new reference) and its state; NULL when absent. */
static json_t *user_get(const char *id, const char **state)
{
    json_t *body = NULL;
    if (!pt_store_get(store(), "user", "", id, &body, NULL))
        return NULL;
    const char *s = json_string_value(json_object_get(body, "state"));
    *state = s ? s : "active";
    return body;
}

/* Writes a user's body, keeping who owns it (a user the configuration file
   declares stays the file's). */
static bool user_put(const char *id, json_t *body)
{
    char source[16] = "api";
    pt_store_info(store(), "user", "", id, source, NULL);
    json_object_set_new(body, "id", json_string(id));
    return pt_store_put(store(), "user", "", id, "", body, source, NULL);
}

/* A new pending user in the group developers (inside an open transaction). */
static bool user_create(char id[40], const char *email, const char *first, const char *last)
{
    char rnd[PT_PORTAL_SESSION_CHARS + 1];
    if (!pt_portal_session_random(rnd, sizeof(rnd)))
        return false;
    /* an id for URLs and the management API: letters and digits only */
    int o = snprintf(id, 40, "u-");
    for (const char *p = rnd; *p && o < 18; p++)
        if (isalnum((unsigned char)*p))
            id[o++] = (char)tolower((unsigned char)*p);
    id[o] = '\0';
    json_t *body = json_pack("{s:s,s:s,s:s,s:s}", "email", email, "firstName", first, "lastName", last,
                             "state", "pending");
    bool ok = user_put(id, body) && pt_store_link(store(), "group-user", "developers", id, "api");
    json_decref(body);
    return ok;
}

/* Sets a user's state (inside an open transaction). */
static bool user_set_state(const char *id, const char *state)
{
    const char *old;
    json_t *body = user_get(id, &old);
    if (!body)
        return false;
    json_object_set_new(body, "state", json_string(state));
    bool ok = user_put(id, body);
    json_decref(body);
    return ok;
}

static void lower_copy(const char *in, char *out, size_t size)
{
    size_t i = 0;
    for (; in[i] && i + 1 < size; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    out[i] = '\0';
}

/* --------------------------------------------------------------- throttle */

static void throttle_keys(struct pt_portal_req *r, const char *email, char acct[300], char addr[100])
{
    char low[EMAIL_MAX + 1];
    lower_copy(email, low, sizeof(low));
    snprintf(acct, 300, "account:%s", low);
    snprintf(addr, 100, "address:%s", r->peer);
}

static bool throttled(const char *acct, const char *addr)
{
    if (cf()->max_failures <= 0)
        return false;
    struct pt_store_accounts_throttle a, b;
    int64_t now = now_ms();
    pt_store_accounts_throttle_get(store(), acct, &a);
    pt_store_accounts_throttle_get(store(), addr, &b);
    return pt_portal_account_throttle_locked(&a, now) || pt_portal_account_throttle_locked(&b, now);
}

static void throttle_sweep(void)
{
    static int64_t last;
    int64_t now = now_ms();
    if (now - last < 60000)
        return;
    last = now;
    pt_store_accounts_throttle_sweep(store(), now, now - (int64_t)cf()->lockout_ms, 100000);
    pt_store_accounts_token_sweep(store(), now - 86400000LL); /* kept a day: "used" explains a refusal */
}

static void failed(struct pt_portal_req *r, const char *acct, const char *addr)
{
    if (cf()->max_failures <= 0)
        return;
    throttle_sweep();
    int64_t now = now_ms();
    const char *keys[2] = {acct, addr};
    int64_t max[2] = {cf()->max_failures, (int64_t)cf()->max_failures * ADDRESS_FACTOR};
    for (int i = 0; i < 2; i++) {
        struct pt_store_accounts_throttle t;
        pt_store_accounts_throttle_get(store(), keys[i], &t);
        pt_portal_account_throttle_fail(&t, now, max[i], (int64_t)cf()->lockout_ms);
        pt_store_accounts_throttle_put(store(), keys[i], &t);
        if (t.locked_until > now)
            pt_warn("portal: sign-in locked for %s (%s failures from %s)", keys[i], i ? "address" : "account",
                    r->peer);
    }
}

/* Checks a password for an email: the user's id when it is right.  An
   unknown email (or a user without a password) is checked against a dummy
   hash, so both take the time of one Argon2id. */
static bool check_password(const char *email, const char *pw, char id[128])
{
    static char dummy[HASH_MAX];
    if (!dummy[0]) {
        char rnd[PT_PORTAL_SESSION_CHARS + 1];
        pt_portal_session_random(rnd, sizeof(rnd));
        if (!pt_portal_account_hash_password(rnd, dummy, sizeof(dummy)))
            dummy[0] = '\0';
    }
    char hash[HASH_MAX] = "";
    bool known = pt_store_accounts_user_by_email(store(), email, id) &&
                 pt_store_accounts_cred_get(store(), id, email, hash, sizeof(hash), NULL);
    bool ok = pt_portal_account_verify_password(known ? hash : dummy, pw);
    return known && ok;
}

/* ------------------------------------------------------ after the answer */

/*
 * Sign-up and password reset must not tell, by their timing, whether an
 * address has an account: the expensive part differs (a store transaction,
 * a publish and a mail for a new address; a mail for an existing one; a
 * token and a mail for a known reset address, nothing for an unknown one).
 * So the answer goes first, the same on every path, and that work runs
 * after it, from the portal's event loop. A failure there is logged: the
 * visitor was told only to look at their mail.
 */
enum later_kind { LATER_SIGNUP, LATER_RESET };

struct later {
    enum later_kind kind;
    char email[EMAIL_MAX + 1];
    char first[NAME_MAX_LEN + 1];
    char last[NAME_MAX_LEN + 1];
    char hash[HASH_MAX];
    char peer[100];
    char *title; /* the site's title for the mail */
};

static void later_free(struct later *l)
{
    OPENSSL_cleanse(l->hash, sizeof(l->hash));
    free(l->title);
    free(l);
}

/* A new address: the pending user, the password, the confirmation mail. An
   address with an account: a mail saying so (its owner learns someone tried;
   the visitor learns nothing). */
static void later_signup(struct later *l)
{
    char id[128];
    if (pt_store_accounts_user_by_email(store(), l->email, id)) {
        json_t *body = NULL;
        const char *first = NULL, *last = NULL;
        if (pt_store_get(store(), "user", "", id, &body, NULL)) {
            first = json_string_value(json_object_get(body, "firstName"));
            last = json_string_value(json_object_get(body, "lastName"));
        }
        pt_info("portal: a sign-up for the address of user %s from %s (nothing changed; told by mail)", id,
                l->peer);
        send_mail_titled(l->title, "account-exists", l->email, first, last, "/signin", NULL);
        json_decref(body);
        return;
    }
    char uid[40], token[PT_PORTAL_SESSION_CHARS + 1];
    bool ok = pt_store_begin(store());
    ok = ok && user_create(uid, l->email, l->first, l->last);
    ok = ok && pt_store_accounts_cred_set(store(), uid, l->email, l->hash, NULL);
    ok = ok && token_new("confirm", uid, cf()->confirm_ttl_ms, token);
    if (!ok)
        pt_store_rollback(store());
    if (!ok || !publish("sign-up")) {
        pt_warn("portal: a sign-up from %s could not be saved", l->peer);
        return;
    }
    pt_info("portal: user %s signed up from %s (pending)", uid, l->peer);
    send_mail_titled(l->title, "confirm-signup", l->email, l->first, l->last, "/confirm", token);
}

/* A reset for an active or pending account: a token and the mail; else nothing. */
static void later_reset(struct later *l)
{
    char id[128];
    const char *state = NULL;
    json_t *body = NULL;
    if (pt_store_accounts_user_by_email(store(), l->email, id) && (body = user_get(id, &state)) &&
        (!strcmp(state, "active") || !strcmp(state, "pending"))) {
        char token[PT_PORTAL_SESSION_CHARS + 1];
        if (token_new("reset", id, cf()->reset_ttl_ms, token)) {
            const char *to = json_string_value(json_object_get(body, "email"));
            send_mail_titled(l->title, "reset-password", to ? to : l->email,
                             json_string_value(json_object_get(body, "firstName")),
                             json_string_value(json_object_get(body, "lastName")), "/reset-password/confirm",
                             token);
            pt_info("portal: a password reset link for user %s was sent (asked from %s)", id, l->peer);
        }
    }
    json_decref(body);
}

static void later_run(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct later *l = arg;
    if (l->kind == LATER_SIGNUP)
        later_signup(l);
    else
        later_reset(l);
    later_free(l);
}

/* A job for after the answer (r's strings copied); NULL when out of memory. */
static struct later *later_new(struct pt_portal_req *r, enum later_kind kind, const char *email)
{
    struct later *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->kind = kind;
    snprintf(l->email, sizeof(l->email), "%s", email);
    snprintf(l->peer, sizeof(l->peer), "%s", r->peer);
    l->title = strdup(site_str(r, "title"));
    return l;
}

/* Runs l once the loop turns again: the answer, already queued, is written first. */
static void later_queue(struct later *l)
{
    static const struct timeval now = {0, 0};
    if (!pt_portal_req_srv.base ||
        event_base_once(pt_portal_req_srv.base, -1, EV_TIMEOUT, later_run, l, &now))
        later_run(-1, EV_TIMEOUT, l); /* no loop to wait for: do it now rather than never */
}

/* ---------------------------------------------------------------- sign-up */

static void signup_form(struct pt_portal_req *r, int status, const char *err)
{
    r->status = status;
    pt_portal_render_begin(r, "Sign up");
    evbuffer_add_printf(r->out, "<h1>Sign up</h1>\n");
    error(r, err);
    form_open(r, "signup-form", "/signup");
    input(r, "signup-email", "email", "Email", "email", pt_portal_req_form(r, "email"), "email", true);
    input(r, "signup-password", "password", "Password (at least 10 characters)", "password", NULL,
          "new-password", true);
    input(r, "signup-first-name", "firstName", "First name", "text", pt_portal_req_form(r, "firstName"),
          "given-name", true);
    input(r, "signup-last-name", "lastName", "Last name", "text", pt_portal_req_form(r, "lastName"),
          "family-name", true);
    if (*site_str(r, "terms"))
        evbuffer_add_printf(r->out,
                            "<p><input id=\"signup-terms\" name=\"terms\" type=\"checkbox\" required> "
                            "<label for=\"signup-terms\">I accept the <a href=\"/terms\">terms of "
                            "use</a></label></p>\n");
    form_close(r, "Sign up");
    evbuffer_add_printf(r->out, "<p>Have an account? <a href=\"/signin\">Sign in</a>.</p>\n");
    pt_portal_render_end(r);
}

void pt_portal_account_signup(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1, (void)a2;
    if (r->method == EVHTTP_REQ_POST && !pt_portal_req_check_csrf(r))
        return;
    if (!json_is_true(json_object_get(site(r), "signupEnabled")) &&
        json_object_get(site(r), "signupEnabled")) {
        message_page(r, r->method == EVHTTP_REQ_POST ? 403 : 200, "Sign up",
                     "Sign-up is closed on this portal. Ask its administrators for an invitation.", false);
        return;
    }
    if (r->user) {
        pt_portal_req_redirect(r, "/", "You are signed in already.");
        return;
    }
    if (r->method != EVHTTP_REQ_POST) {
        pt_portal_session_guest(r);
        signup_form(r, 200, NULL);
        return;
    }
    const char *email = field(r, "email"), *pw = field(r, "password"), *why = NULL;
    char first[NAME_MAX_LEN + 1], last[NAME_MAX_LEN + 1];
    name_of(r, "firstName", first, sizeof(first));
    name_of(r, "lastName", last, sizeof(last));
    if (!pt_portal_account_email_ok(email))
        why = "Enter a valid email address.";
    else if (!pt_portal_account_password_ok(pw, &why))
        ;
    else if (!names_ok(r, first, last))
        why = "Enter your first and last names (at most 100 characters each, no line breaks or control "
              "characters).";
    else if (*site_str(r, "terms") && strcmp(field(r, "terms"), "on"))
        why = "Accept the terms of use to sign up.";
    if (why) {
        signup_form(r, 400, why);
        return;
    }
    /* sign-ups per client address: each makes a user and a generation, so
       one address makes at most maxFailures x 4 within the lockout period
       (counted whether the address had an account or not) */
    char key[100];
    snprintf(key, sizeof(key), "signup:%s", r->peer);
    struct pt_store_accounts_throttle t;
    pt_store_accounts_throttle_get(store(), key, &t);
    int64_t now = now_ms();
    if (pt_portal_account_throttle_locked(&t, now)) {
        pt_info("portal: a sign-up from %s refused: too many", r->peer);
        signup_form(r, 429, "Too many sign-ups from your address. Wait a while, then try again.");
        return;
    }
    pt_portal_account_throttle_fail(&t, now, (int64_t)cf()->max_failures * ADDRESS_FACTOR,
                                    (int64_t)cf()->lockout_ms);
    pt_store_accounts_throttle_put(store(), key, &t);
    /* hashed whether or not the address has an account (the same time); the
       rest, which differs, runs after the answer */
    struct later *l = later_new(r, LATER_SIGNUP, email);
    if (!l || !pt_portal_account_hash_password(pw, l->hash, sizeof(l->hash))) {
        if (l)
            later_free(l);
        message_page(r, 500, "Sign up", "The account could not be made; try again later.", true);
        return;
    }
    snprintf(l->first, sizeof(l->first), "%s", first);
    snprintf(l->last, sizeof(l->last), "%s", last);
    later_queue(l);
    message_page(r, 200, "Check your mail",
                 "We sent a message to the address you gave, with a link to confirm it. "
                 "Follow the link, then sign in.",
                 false);
}

/* ---------------------------------------------------------------- confirm */

void pt_portal_account_confirm(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1, (void)a2;
    char h[65], user[128];
    if (r->method != EVHTTP_REQ_POST) {
        /* a GET shows a button: mail scanners that open links use nothing */
        const char *token = pt_portal_req_query(r, "token");
        if (!token_hash(token, h) || !pt_store_accounts_token_peek(store(), h, "confirm", now_ms(), user)) {
            bad_link(r);
            return;
        }
        pt_portal_session_guest(r);
        pt_portal_render_begin(r, "Confirm your address");
        evbuffer_add_printf(r->out, "<h1>Confirm your address</h1>\n");
        form_open(r, "confirm-form", "/confirm");
        hidden(r, "token", token);
        form_close(r, "Confirm my address");
        pt_portal_render_end(r);
        return;
    }
    if (!pt_portal_req_check_csrf(r))
        return;
    const char *state;
    json_t *body = NULL;
    if (!token_hash(field(r, "token"), h) ||
        !pt_store_accounts_token_use(store(), h, "confirm", now_ms(), user) ||
        !(body = user_get(user, &state))) {
        bad_link(r);
        return;
    }
    bool pending = !strcmp(state, "pending"), active = !strcmp(state, "active");
    json_decref(body);
    if (!pending && !active) { /* blocked or closed meanwhile: it stays so */
        bad_link(r);
        return;
    }
    if (pending) {
        bool ok = pt_store_begin(store()) && user_set_state(user, "active");
        if (!ok)
            pt_store_rollback(store());
        if (!ok || !publish("confirm")) {
            message_page(r, 500, "Confirm your address", "The account could not be changed; try again later.",
                         true);
            return;
        }
        pt_info("portal: user %s confirmed their address", user);
    }
    pt_portal_req_redirect(r, "/signin", "Your address is confirmed. Sign in.");
}

/* ---------------------------------------------------------------- sign-in */

static void signin_form(struct pt_portal_req *r, int status, const char *err)
{
    r->status = status;
    pt_portal_render_begin(r, "Sign in");
    evbuffer_add_printf(r->out, "<h1>Sign in</h1>\n");
    error(r, err);
    form_open(r, "signin-form", "/signin");
    input(r, "signin-email", "email", "Email", "email", pt_portal_req_form(r, "email"), "username", true);
    input(r, "signin-password", "password", "Password", "password", NULL, "current-password", true);
    form_close(r, "Sign in");
    pt_portal_oidc_buttons(r); /* identity providers, when there are any */
    evbuffer_add_printf(r->out, "<p><a href=\"/reset-password\">Forgot your password?</a></p>\n");
    if (!json_is_false(json_object_get(site(r), "signupEnabled")))
        evbuffer_add_printf(r->out, "<p>New here? <a href=\"/signup\">Sign up</a>.</p>\n");
    pt_portal_render_end(r);
}

void pt_portal_account_signin(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1, (void)a2;
    if (r->method != EVHTTP_REQ_POST) {
        if (r->user) {
            pt_portal_req_redirect(r, "/", "You are signed in already.");
            return;
        }
        pt_portal_session_guest(r);
        signin_form(r, 200, NULL);
        return;
    }
    if (!pt_portal_req_check_csrf(r))
        return;
    const char *email = field(r, "email"), *pw = field(r, "password");
    char acct[300], addr[100], id[128] = "";
    throttle_keys(r, email, acct, addr);
    if (throttled(acct, addr)) {
        pt_info("portal: a sign-in from %s refused: locked", r->peer);
        signin_form(r, 429, "Too many failed sign-ins. Wait a while, then try again.");
        return;
    }
    if (strlen(pw) > PASSWORD_MAX || !check_password(email, pw, id)) {
        failed(r, acct, addr);
        signin_form(r, 401, "The email or the password is wrong.");
        return;
    }
    const char *state;
    json_t *body = user_get(id, &state);
    bool active = body && !strcmp(state, "active"), pending = body && !strcmp(state, "pending");
    json_decref(body);
    if (!active) {
        /* the right password: saying why reveals nothing to its owner */
        pt_info("portal: user %s (%s) may not sign in", id, pending ? "pending" : "not active");
        signin_form(r, 403,
                    pending ? "Confirm your address first: follow the link in the mail we sent you."
                            : "This account cannot sign in. Ask the portal's administrators.");
        return;
    }
    pt_store_accounts_throttle_clear(store(), acct);
    if (!pt_portal_session_start(r, id)) {
        signin_form(r, 500, "You could not be signed in; try again later.");
        return;
    }
    pt_portal_req_redirect(r, "/", "You are signed in.");
}

void pt_portal_account_signout(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1, (void)a2;
    if (r->method != EVHTTP_REQ_POST) {
        pt_portal_req_redirect(r, "/", NULL);
        return;
    }
    if (!pt_portal_req_check_csrf(r))
        return;
    pt_portal_session_end(r);
    pt_portal_req_redirect(r, "/", "You are signed out.");
}

/* ------------------------------------------------------------------ reset */

/*
 * Whether a reset request is one too many (then no mail; the same answer).
 * Three counts within the lockout period: per target address (maxFailures
 * mails: the form cannot flood a mailbox), per client address (4 x
 * maxFailures requests, to any addresses: one client cannot go through
 * many mailboxes), and per target and client together. A target address
 * over its count still gets the first request of a client that has not
 * asked for it in the period: others' requests cannot silence the
 * victim's own (flooding then takes one client address per mail).
 */
static bool reset_flood(struct pt_portal_req *r, const char *low)
{
    int64_t max = cf()->max_failures, lockout = (int64_t)cf()->lockout_ms, now = now_ms();
    if (max <= 0)
        return false;
    char ekey[300], akey[120], pkey[420];
    snprintf(ekey, sizeof(ekey), "reset:%s", low);
    snprintf(akey, sizeof(akey), "reset-from:%s", r->peer);
    snprintf(pkey, sizeof(pkey), "reset:%s|%s", low, r->peer);
    struct pt_store_accounts_throttle e, a, p;
    pt_store_accounts_throttle_get(store(), ekey, &e);
    pt_store_accounts_throttle_get(store(), akey, &a);
    pt_store_accounts_throttle_get(store(), pkey, &p);
    bool client_locked = pt_portal_account_throttle_locked(&a, now);
    /* the client's address counts every request, refused ones too */
    pt_portal_account_throttle_fail(&a, now, max * ADDRESS_FACTOR, lockout);
    pt_store_accounts_throttle_put(store(), akey, &a);
    bool first_from_here =
        !pt_portal_account_throttle_locked(&p, now) && (p.failures == 0 || now - p.updated > lockout);
    if (client_locked || pt_portal_account_throttle_locked(&p, now) ||
        (pt_portal_account_throttle_locked(&e, now) && !first_from_here))
        return true;
    pt_portal_account_throttle_fail(&e, now, max, lockout);
    pt_store_accounts_throttle_put(store(), ekey, &e);
    pt_portal_account_throttle_fail(&p, now, max, lockout);
    pt_store_accounts_throttle_put(store(), pkey, &p);
    return false;
}

static void reset_form(struct pt_portal_req *r, int status, const char *err)
{
    r->status = status;
    pt_portal_render_begin(r, "Reset your password");
    evbuffer_add_printf(r->out, "<h1>Reset your password</h1>\n");
    error(r, err);
    para(r, "Give the address of your account: we will send a link to set a new password.");
    form_open(r, "reset-form", "/reset-password");
    input(r, "reset-email", "email", "Email", "email", pt_portal_req_form(r, "email"), "username", true);
    form_close(r, "Send the link");
    pt_portal_render_end(r);
}

void pt_portal_account_reset(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1, (void)a2;
    if (r->method != EVHTTP_REQ_POST) {
        pt_portal_session_guest(r);
        reset_form(r, 200, NULL);
        return;
    }
    if (!pt_portal_req_check_csrf(r))
        return;
    const char *email = field(r, "email");
    if (!pt_portal_account_email_ok(email)) {
        reset_form(r, 400, "Enter a valid email address.");
        return;
    }
    char low[EMAIL_MAX + 1];
    lower_copy(email, low, sizeof(low));
    bool flood = reset_flood(r, low);
    /* the lookup, the token and the mail (known address) or nothing (unknown)
       run after the answer: its timing tells nothing */
    struct later *l = flood ? NULL : later_new(r, LATER_RESET, email);
    if (l)
        later_queue(l);
    else if (flood)
        pt_info("portal: a password reset for %s from %s was not sent: too many", low, r->peer);
    /* the same answer whether the address has an account or not */
    message_page(r, 200, "Check your mail",
                 "If an account has this address, we sent it a link to set a new password. The link works "
                 "once and expires soon.",
                 false);
}

static void password_form(struct pt_portal_req *r, int status, const char *err, const char *id,
                          const char *action, const char *title, const char *token)
{
    r->status = status;
    pt_portal_render_begin(r, title);
    evbuffer_add_printf(r->out, "<h1>");
    esc(r, title);
    evbuffer_add_printf(r->out, "</h1>\n");
    error(r, err);
    form_open(r, id, action);
    hidden(r, "token", token);
    input(r, "new-password", "password", "New password (at least 10 characters)", "password", NULL,
          "new-password", true);
    form_close(r, "Set the password");
    pt_portal_render_end(r);
}

/* The token of a link form's GET or POST, checked without using it. */
static const char *link_token(struct pt_portal_req *r, const char *purpose, char h[65], char user[128])
{
    const char *token =
        r->method == EVHTTP_REQ_POST ? pt_portal_req_form(r, "token") : pt_portal_req_query(r, "token");
    if (!token_hash(token, h) || !pt_store_accounts_token_peek(store(), h, purpose, now_ms(), user))
        return NULL;
    return token;
}

void pt_portal_account_reset_confirm(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1, (void)a2;
    char h[65], user[128];
    if (r->method == EVHTTP_REQ_POST && !pt_portal_req_check_csrf(r))
        return;
    const char *token = link_token(r, "reset", h, user);
    if (!token) {
        bad_link(r);
        return;
    }
    if (r->method != EVHTTP_REQ_POST) {
        pt_portal_session_guest(r);
        password_form(r, 200, NULL, "reset-confirm-form", "/reset-password/confirm", "Set a new password",
                      token);
        return;
    }
    const char *pw = field(r, "password"), *why = NULL;
    if (!pt_portal_account_password_ok(pw, &why)) {
        password_form(r, 400, why, "reset-confirm-form", "/reset-password/confirm", "Set a new password",
                      token);
        return;
    }
    char hash[HASH_MAX];
    if (!pt_portal_account_hash_password(pw, hash, sizeof(hash))) {
        message_page(r, 500, "Set a new password", "The password could not be set; try again later.", true);
        return;
    }
    const char *state = NULL;
    json_t *body = NULL;
    bool ok = pt_store_begin(store());
    ok = ok && pt_store_accounts_token_use(store(), h, "reset", now_ms(), user) &&
         (body = user_get(user, &state)) && (!strcmp(state, "active") || !strcmp(state, "pending"));
    /* following the link proves the address: a pending account is confirmed */
    bool was_pending = ok && !strcmp(state, "pending");
    ok = ok && (!was_pending || user_set_state(user, "active"));
    ok = ok && pt_store_accounts_cred_set(store(), user, json_string_value(json_object_get(body, "email")),
                                          hash, NULL);
    ok = ok && pt_store_accounts_token_drop_user(store(), user, "reset");
    json_decref(body);
    OPENSSL_cleanse(hash, sizeof(hash));
    if (!ok)
        pt_store_rollback(store());
    if (!ok || !publish("password reset")) {
        bad_link(r);
        return;
    }
    /* every session of the account ends: whoever knew the old password is out */
    pt_portal_session_end_user(user);
    char acct[300], addr[100], email[EMAIL_MAX + 1] = "";
    json_t *u = user_get(user, &state);
    snprintf(email, sizeof(email), "%s", u ? json_string_value(json_object_get(u, "email")) ?: "" : "");
    json_decref(u);
    throttle_keys(r, email, acct, addr);
    pt_store_accounts_throttle_clear(store(), acct);
    pt_info("portal: user %s set a new password by mail", user);
    pt_portal_req_redirect(r, "/signin", "Your new password is set. Sign in.");
}

/* ---------------------------------------------------------------- profile */

static void profile_page(struct pt_portal_req *r, int status, const char *err)
{
    r->status = status;
    pt_portal_render_begin(r, "Profile");
    evbuffer_add_printf(r->out, "<h1>Profile</h1>\n");
    error(r, err);
    evbuffer_add_printf(r->out,
                        "<section aria-labelledby=\"profile-h\">\n<h2 id=\"profile-h\">Your details</h2>\n");
    evbuffer_add_printf(r->out, "<p>Email: <span id=\"profile-email\">");
    esc(r, r->user->email);
    evbuffer_add_printf(r->out, "</span></p>\n");
    form_open(r, "profile-form", "/profile");
    input(r, "profile-first-name", "firstName", "First name", "text", r->user->first_name, "given-name",
          true);
    input(r, "profile-last-name", "lastName", "Last name", "text", r->user->last_name, "family-name", true);
    form_close(r, "Save");
    evbuffer_add_printf(r->out, "</section>\n<section aria-labelledby=\"password-h\">\n"
                                "<h2 id=\"password-h\">Change your password</h2>\n");
    para(r, "Your other sessions are signed out when the password changes.");
    form_open(r, "password-form", "/profile/password");
    input(r, "current-password", "current", "Current password", "password", NULL, "current-password", true);
    input(r, "new-password", "password", "New password (at least 10 characters)", "password", NULL,
          "new-password", true);
    form_close(r, "Change the password");
    evbuffer_add_printf(r->out, "</section>\n<section aria-labelledby=\"close-h\">\n"
                                "<h2 id=\"close-h\">Close your account</h2>\n");
    para(r, "Your subscriptions are cancelled and their keys stop working. This cannot be undone.");
    form_open(r, "close-form", "/profile/close");
    input(r, "close-password", "password", "Password", "password", NULL, "current-password", true);
    form_close(r, "Close my account");
    evbuffer_add_printf(r->out, "</section>\n");
    pt_portal_render_end(r);
}

/* Profile pages are for signed-in users: a guest is sent to sign in. */
static bool need_user(struct pt_portal_req *r)
{
    if (r->user)
        return true;
    pt_portal_req_redirect(r, "/signin", "Sign in first.");
    return false;
}

void pt_portal_account_profile(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1, (void)a2;
    if (r->method == EVHTTP_REQ_POST && !pt_portal_req_check_csrf(r))
        return;
    if (!need_user(r))
        return;
    if (r->method != EVHTTP_REQ_POST) {
        profile_page(r, 200, NULL);
        return;
    }
    char first[NAME_MAX_LEN + 1], last[NAME_MAX_LEN + 1];
    name_of(r, "firstName", first, sizeof(first));
    name_of(r, "lastName", last, sizeof(last));
    if (!names_ok(r, first, last)) {
        profile_page(r, 400,
                     "Enter your first and last names (at most 100 characters each, no line breaks or "
                     "control characters).");
        return;
    }
    const char *state;
    json_t *body = user_get(r->user->id, &state);
    bool ok = body && pt_store_begin(store());
    if (ok) {
        json_object_set_new(body, "firstName", json_string(first));
        json_object_set_new(body, "lastName", json_string(last));
        ok = user_put(r->user->id, body);
        if (!ok)
            pt_store_rollback(store());
        ok = ok && publish("profile");
    }
    json_decref(body);
    if (!ok) {
        profile_page(r, 500, "The profile could not be saved; try again later.");
        return;
    }
    pt_portal_req_redirect(r, "/profile", "Your profile is saved.");
}

/* The current password of the signed-in user, counted by the throttle like
   a sign-in (a stolen session must not be a way to guess it). */
static bool current_password_ok(struct pt_portal_req *r, const char *pw, const char **why, int *status)
{
    char acct[300], addr[100], id[128];
    throttle_keys(r, r->user->email, acct, addr);
    if (throttled(acct, addr)) {
        *why = "Too many wrong passwords. Wait a while, then try again.";
        *status = 429;
        return false;
    }
    if (strlen(pw) > PASSWORD_MAX || !check_password(r->user->email, pw, id) || strcmp(id, r->user->id)) {
        failed(r, acct, addr);
        *why = "The current password is wrong.";
        *status = 403;
        return false;
    }
    return true;
}

/* The start of a form the profile page posts: a GET goes back to the profile; a POST must carry the
   session's CSRF token and come from a signed-in user (each check answers itself).  True: go on. */
static bool profile_post(struct pt_portal_req *r)
{
    if (r->method != EVHTTP_REQ_POST) {
        pt_portal_req_redirect(r, "/profile", NULL);
        return false;
    }
    return pt_portal_req_check_csrf(r) && need_user(r);
}

void pt_portal_account_password(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1, (void)a2;
    if (!profile_post(r))
        return;
    const char *why = NULL;
    int status = 400;
    const char *pw = field(r, "password");
    if (!current_password_ok(r, field(r, "current"), &why, &status) ||
        !pt_portal_account_password_ok(pw, &why)) {
        profile_page(r, status, why);
        return;
    }
    char hash[HASH_MAX], id[128];
    snprintf(id, sizeof(id), "%s", r->user->id);
    bool ok = pt_portal_account_hash_password(pw, hash, sizeof(hash)) &&
              pt_store_accounts_cred_set(store(), id, r->user->email, hash, NULL);
    OPENSSL_cleanse(hash, sizeof(hash));
    if (!ok) {
        profile_page(r, 500, "The password could not be changed; try again later.");
        return;
    }
    pt_store_accounts_token_drop_user(store(), id, "reset");
    /* every session ends (the stamp moved on); this one goes on as a new one */
    pt_portal_session_end_user(id);
    r->session_id[0] = '\0';
    if (!pt_portal_session_start(r, id)) {
        pt_portal_req_redirect(r, "/signin", "Your password is changed. Sign in again.");
        return;
    }
    pt_info("portal: user %s changed their password", id);
    pt_portal_req_redirect(r, "/profile", "Your password is changed. Your other sessions are signed out.");
}

struct subs_of {
    const char *user;
    json_t *ids;
};

/* The user's live subscriptions, by the same ownerId rule as the subscriptions pages (a service path
   before "/users/ID" included). */
static bool collect_subs(void *arg, const struct pt_entity *e)
{
    struct subs_of *s = arg;
    const char *u = pt_conf_entities_owner_user(json_string_value(json_object_get(e->body, "ownerId")));
    const char *state = json_string_value(json_object_get(e->body, "state"));
    if (u && !strcmp(u, s->user) && (!state || strcmp(state, "cancelled")))
        json_array_append_new(s->ids, json_string(e->id));
    return json_array_size(s->ids) < 100000;
}

static json_t *live_subscriptions(const char *user)
{
    struct subs_of s = {user, json_array()};
    pt_store_each(store(), "subscription", NULL, collect_subs, &s);
    return s.ids;
}

/* Whether closing the account would not last: the user or one of their live subscriptions is declared
   in the configuration file, which the next reload applies again (the account or the subscription,
   with its keys, would come back). Such an account is closed by the provider, in the file. */
static bool kept_in_file(const char *user)
{
    char src[16] = "";
    if (pt_store_info(store(), "user", "", user, src, NULL) && !strcmp(src, "config"))
        return true;
    json_t *ids = live_subscriptions(user);
    bool kept = false;
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        src[0] = '\0';
        if (pt_store_info(store(), "subscription", "", json_string_value(v), src, NULL) &&
            !strcmp(src, "config")) {
            kept = true;
            break;
        }
    }
    json_decref(ids);
    return kept;
}

/* Cancels every live subscription of a user (inside an open transaction). */
static bool cancel_subscriptions(const char *user)
{
    struct subs_of s = {user, live_subscriptions(user)};
    bool ok = true;
    size_t i;
    json_t *v;
    json_array_foreach(s.ids, i, v)
    {
        const char *sid = json_string_value(v);
        json_t *body = NULL;
        char source[16] = "api", ws[128] = "";
        if (!pt_store_get(store(), "subscription", "", sid, &body, NULL))
            continue;
        pt_store_info(store(), "subscription", "", sid, source, ws);
        json_object_set_new(body, "state", json_string("cancelled"));
        ok &= pt_store_put(store(), "subscription", "", sid, ws, body, source, NULL);
        json_decref(body);
    }
    json_decref(s.ids);
    return ok;
}

void pt_portal_account_close(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1, (void)a2;
    if (!profile_post(r))
        return;
    const char *why = NULL;
    int status = 400;
    if (!current_password_ok(r, field(r, "password"), &why, &status)) {
        profile_page(r, status, why);
        return;
    }
    char id[128];
    snprintf(id, sizeof(id), "%s", r->user->id);
    if (kept_in_file(id)) {
        profile_page(r, 409,
                     "Your account or one of your subscriptions is kept in the provider's configuration, so "
                     "it cannot be closed here; ask the provider to close it.");
        return;
    }
    bool ok = pt_store_begin(store());
    ok = ok && cancel_subscriptions(id) && user_set_state(id, "deleted") &&
         pt_store_accounts_cred_delete(store(), id) && pt_store_accounts_token_drop_user(store(), id, NULL);
    if (!ok)
        pt_store_rollback(store());
    if (!ok || !publish("closing an account")) {
        profile_page(r, 500, "The account could not be closed; try again later.");
        return;
    }
    pt_portal_session_end_user(id);
    pt_portal_session_end(r);
    pt_info("portal: user %s closed their account", id);
    pt_portal_req_redirect(r, "/", "Your account is closed.");
}

/* ------------------------------------------------------------ invitations */

static void invite_form(struct pt_portal_req *r, int status, const char *err)
{
    r->status = status;
    pt_portal_render_begin(r, "Invite a user");
    evbuffer_add_printf(r->out, "<h1>Invite a user</h1>\n");
    error(r, err);
    para(r, "The user gets a mail with a link to set a password; their account is active from then on.");
    form_open(r, "invite-form", "/admin/invite");
    input(r, "invite-email", "email", "Email", "email", pt_portal_req_form(r, "email"), "off", true);
    input(r, "invite-first-name", "firstName", "First name", "text", pt_portal_req_form(r, "firstName"),
          "off", true);
    input(r, "invite-last-name", "lastName", "Last name", "text", pt_portal_req_form(r, "lastName"), "off",
          true);
    form_close(r, "Send the invitation");
    pt_portal_render_end(r);
}

void pt_portal_account_invite(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1, (void)a2;
    if (r->method == EVHTTP_REQ_POST && !pt_portal_req_check_csrf(r))
        return;
    if (!r->user) {
        pt_portal_req_redirect(r, "/signin", "Sign in first.");
        return;
    }
    if (!r->user->admin) { /* administrators' pages do not exist for others */
        pt_portal_render_not_found(r);
        return;
    }
    if (r->method != EVHTTP_REQ_POST) {
        invite_form(r, 200, NULL);
        return;
    }
    const char *email = field(r, "email");
    char first[NAME_MAX_LEN + 1], last[NAME_MAX_LEN + 1], id[128], uid[40];
    char token[PT_PORTAL_SESSION_CHARS + 1];
    name_of(r, "firstName", first, sizeof(first));
    name_of(r, "lastName", last, sizeof(last));
    if (!pt_portal_account_email_ok(email)) {
        invite_form(r, 400, "Enter a valid email address.");
        return;
    }
    if (!names_ok(r, first, last)) {
        invite_form(r, 400,
                    "Enter the first and last names (at most 100 characters each, no line breaks or "
                    "control characters).");
        return;
    }
    if (pt_store_accounts_user_by_email(store(), email, id)) {
        /* invited before and never accepted (pending, no password): a new
           link replaces the old ones; anyone else is refused */
        const char *state = NULL;
        json_t *body = user_get(id, &state);
        bool again = body && !strcmp(state, "pending") &&
                     !pt_store_accounts_cred_get(store(), id, email, NULL, 0, NULL) &&
                     pt_store_accounts_token_drop_user(store(), id, "invite") &&
                     token_new("invite", id, cf()->confirm_ttl_ms, token);
        if (again) {
            send_mail(r, "invite", json_string_value(json_object_get(body, "email")) ?: email,
                      json_string_value(json_object_get(body, "firstName")),
                      json_string_value(json_object_get(body, "lastName")), "/invitation", token);
            pt_info("portal: administrator %s invited user %s again", r->user->id, id);
        }
        json_decref(body);
        if (!again) {
            invite_form(r, 409, "A user with this address exists already.");
            return;
        }
        char flash[400];
        snprintf(flash, sizeof(flash), "A new invitation was sent to %s; the earlier link no longer works.",
                 email);
        pt_portal_req_redirect(r, "/admin/invite", flash);
        return;
    }
    bool ok = pt_store_begin(store());
    ok = ok && user_create(uid, email, first, last) && token_new("invite", uid, cf()->confirm_ttl_ms, token);
    if (!ok)
        pt_store_rollback(store());
    if (!ok || !publish("invitation")) {
        invite_form(r, 500, "The user could not be made; try again later.");
        return;
    }
    pt_info("portal: administrator %s invited user %s", r->user->id, uid);
    send_mail(r, "invite", email, first, last, "/invitation", token);
    char flash[400];
    snprintf(flash, sizeof(flash), "An invitation was sent to %s.", email);
    pt_portal_req_redirect(r, "/admin/invite", flash);
}

void pt_portal_account_invitation(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1, (void)a2;
    char h[65], user[128];
    if (r->method == EVHTTP_REQ_POST && !pt_portal_req_check_csrf(r))
        return;
    const char *token = link_token(r, "invite", h, user);
    if (!token) {
        bad_link(r);
        return;
    }
    if (r->method != EVHTTP_REQ_POST) {
        pt_portal_session_guest(r);
        password_form(r, 200, NULL, "invitation-form", "/invitation", "Accept the invitation", token);
        return;
    }
    const char *pw = field(r, "password"), *why = NULL;
    if (!pt_portal_account_password_ok(pw, &why)) {
        password_form(r, 400, why, "invitation-form", "/invitation", "Accept the invitation", token);
        return;
    }
    char hash[HASH_MAX];
    if (!pt_portal_account_hash_password(pw, hash, sizeof(hash))) {
        message_page(r, 500, "Accept the invitation", "The password could not be set; try again later.",
                     true);
        return;
    }
    const char *state = NULL;
    json_t *body = NULL;
    bool ok = pt_store_begin(store());
    /* pending: invited on the portal; active too: the management API invites
       existing users (an administrator's first password); blocked and
       deleted users cannot take an invitation */
    ok = ok && pt_store_accounts_token_use(store(), h, "invite", now_ms(), user) &&
         (body = user_get(user, &state)) && (!strcmp(state, "pending") || !strcmp(state, "active"));
    ok = ok && (!strcmp(state, "active") || user_set_state(user, "active")) &&
         pt_store_accounts_cred_set(store(), user, json_string_value(json_object_get(body, "email")), hash,
                                    NULL);
    json_decref(body);
    OPENSSL_cleanse(hash, sizeof(hash));
    if (!ok)
        pt_store_rollback(store());
    if (!ok || !publish("accepting an invitation")) {
        bad_link(r);
        return;
    }
    pt_info("portal: user %s accepted their invitation", user);
    /* the link came by mail and the password is new: signed in at once */
    if (!pt_portal_session_start(r, user)) {
        pt_portal_req_redirect(r, "/signin", "Your password is set. Sign in.");
        return;
    }
    pt_portal_req_redirect(r, "/", "Welcome: your account is ready.");
}
