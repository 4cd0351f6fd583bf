/*
 * pt_portal_session -- the portal's sessions and CSRF tokens.
 *
 * A session id is 256 random bits (RAND_bytes), written base64url in the
 * cookie `__Host-portico_session` (HTTPS; the prefix makes browsers refuse
 * it without Secure and Path=/ or with a Domain) or `portico_session`
 * (HTTP), HttpOnly and SameSite=Lax.  The store keeps only the SHA-256 of
 * the id, so a copy of the database opens no session.  Each session has a
 * CSRF token of its own (256 bits too) that every state-changing request
 * must send back (pt_portal_req_check_csrf).
 *
 * A session ends after portal.sessions.idleTimeout without a request or
 * absoluteTimeout after it began, when its user signs out, and when the
 * user's security stamp moves on (a password change, reset or closing: the
 * session remembers the stamp it began with) or the user is no longer
 * active (blocked, deleted).  Signing in always starts a new session (the
 * id a visitor had before, perhaps planted by someone else, opens nothing
 * after it).  Guests get a session only when a form needs a CSRF token
 * (sign-in, sign-up, reset); the number of guest sessions is capped.
 */
#include "portal/pt_portal_int.h"

#include "base/pt_log.h"
#include "conf/pt_store_accounts.h"

#include <event2/http.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Guest sessions kept at most (anyone can make one by opening a form). */
#define GUEST_CAP 100000
/* How often expired sessions are swept (ms). */
#define SWEEP_EVERY_MS 60000

/* ------------------------------------------------------- pure pieces */

bool pt_portal_session_random_bytes(unsigned char *out, size_t n)
{
    return RAND_bytes(out, (int)n) == 1;
}

bool pt_portal_session_random(char *out, size_t size)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[PT_PORTAL_SESSION_BYTES];
    if (size < PT_PORTAL_SESSION_CHARS + 1 || RAND_bytes(raw, sizeof(raw)) != 1) {
        if (size)
            out[0] = '\0';
        return false;
    }
    /* base64url without padding: 6 bits per character, 43 for 32 bytes */
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < sizeof(raw); i++) {
        acc = (acc << 8) | raw[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = b64[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = b64[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    return true;
}

bool pt_portal_session_well_formed(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= PT_PORTAL_SESSION_CHARS || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                                              (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return n == PT_PORTAL_SESSION_CHARS;
}

void pt_portal_session_hash(const char *secret, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    static const char hx[] = "0123456789abcdef";
    if (!EVP_Digest(secret, strlen(secret), md, &n, EVP_sha256(), NULL) || n != 32) {
        out[0] = '\0';
        return;
    }
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[md[i] >> 4];
        out[2 * i + 1] = hx[md[i] & 15];
    }
    out[64] = '\0';
}

bool pt_portal_session_equal(const char *a, const char *b)
{
    /* the time depends on the lengths only, never on where they differ */
    size_t an = strlen(a), bn = strlen(b);
    if (an != bn || an == 0)
        return false;
    return CRYPTO_memcmp(a, b, an) == 0;
}

bool pt_portal_session_cookie_value(const char *header, const char *name, char *out, size_t size)
{
    size_t nl = strlen(name);
    const char *p = header;
    /* "a=1; b=2": name=value pairs split by ';' (bounded by the header) */
    while (p && *p) {
        while (*p == ' ' || *p == '\t' || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nl && !strncmp(p, name, nl) && p[nl] == '=') {
            size_t vl = len - nl - 1;
            while (vl > 0 && (p[nl + 1 + vl - 1] == ' ' || p[nl + 1 + vl - 1] == '\t'))
                vl--;
            if (vl >= size)
                return false;
            memcpy(out, p + nl + 1, vl);
            out[vl] = '\0';
            return true;
        }
        p = end;
    }
    return false;
}

/* -------------------------------------------------------------- cookie */

const char *pt_portal_session_cookie_name(void)
{
    return pt_portal_req_https() ? "__Host-portico_session" : "portico_session";
}

/* Set-Cookie for an id, or one that clears the cookie (id NULL). */
static void set_cookie(struct pt_portal_req *r, const char *id)
{
    char v[256];
    snprintf(v, sizeof(v), "%s=%s; Path=/;%s HttpOnly; SameSite=Lax%s", pt_portal_session_cookie_name(),
             id ? id : "", id ? "" : " Max-Age=0;", pt_portal_req_https() ? "; Secure" : "");
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->r);
    evhttp_add_header(h, "Set-Cookie", v);
    /* a page made for one session is never kept by a cache for another */
    evhttp_remove_header(h, "Cache-Control");
    evhttp_add_header(h, "Cache-Control", "no-store");
}

/* ------------------------------------------------------------ the user */

static int64_t now_ms(void)
{
    return (int64_t)pt_clock_wall_ms();
}

static struct pt_portal_user *user_free(struct pt_portal_user *u)
{
    if (u) {
        json_decref(u->groups);
        free(u);
    }
    return NULL;
}

/* Reads an active user with a password for their present address, and their
   groups; NULL when the user is gone, not active, has no such password, or
   when `stamp` >= 0 and their stamp moved on.  *now_stamp gets the stamp. */
static struct pt_portal_user *user_load(const char *id, int64_t stamp, int64_t *now_stamp)
{
    struct pt_store *st = pt_portal_req_srv.store;
    json_t *body = NULL;
    if (!pt_store_get(st, "user", "", id, &body, NULL))
        return NULL;
    const char *state = json_string_value(json_object_get(body, "state"));
    const char *email = json_string_value(json_object_get(body, "email"));
    int64_t cur = 0;
    if ((state && strcmp(state, "active")) || !email ||
        !pt_store_accounts_cred_get(st, id, email, NULL, 0, &cur) || (stamp >= 0 && cur != stamp)) {
        json_decref(body);
        return NULL;
    }
    if (now_stamp)
        *now_stamp = cur;
    struct pt_portal_user *u = calloc(1, sizeof(*u));
    snprintf(u->id, sizeof(u->id), "%s", id);
    snprintf(u->email, sizeof(u->email), "%s", json_string_value(json_object_get(body, "email")) ?: "");
    snprintf(u->first_name, sizeof(u->first_name), "%s",
             json_string_value(json_object_get(body, "firstName")) ?: "");
    snprintf(u->last_name, sizeof(u->last_name), "%s",
             json_string_value(json_object_get(body, "lastName")) ?: "");
    json_decref(body);
    u->groups = json_array();
    pt_store_accounts_user_groups(st, id, u->groups);
    bool dev = false;
    size_t i;
    json_t *g;
    json_array_foreach(u->groups, i, g)
    {
        dev |= !strcmp(json_string_value(g), "developers");
        u->admin |= !strcmp(json_string_value(g), "administrators");
    }
    if (!dev) /* every signed-in user sees what developers see */
        json_array_append_new(u->groups, json_string("developers"));
    return u;
}

/* r->user belongs to the request (the dispatcher frees it at the end). */
static void set_user(struct pt_portal_req *r, struct pt_portal_user *u)
{
    if (r->user && r->user != u)
        user_free(r->user);
    r->user = u;
}

/* ------------------------------------------------------------ sessions */

static void sweep(void)
{
    static int64_t last;
    int64_t now = now_ms();
    if (now - last < SWEEP_EVERY_MS)
        return;
    last = now;
    const struct pt_conf *f = pt_portal_req_srv.file;
    int64_t idle = f->portal.idle_timeout_ms ? (int64_t)f->portal.idle_timeout_ms : now;
    int64_t life = f->portal.absolute_timeout_ms ? (int64_t)f->portal.absolute_timeout_ms : now;
    int n = pt_store_accounts_session_sweep(pt_portal_req_srv.store, now - idle, now - life, GUEST_CAP);
    if (n > 0)
        pt_debug("portal: %d expired sessions removed", n);
}

static void clear(struct pt_portal_req *r)
{
    set_user(r, NULL);
    r->session_id[0] = '\0';
    r->csrf[0] = '\0';
}

void pt_portal_session_load(struct pt_portal_req *r)
{
    clear(r);
    const char *cookie = evhttp_find_header(evhttp_request_get_input_headers(r->r), "Cookie");
    char id[64];
    if (!cookie || !pt_portal_session_cookie_value(cookie, pt_portal_session_cookie_name(), id, sizeof(id)) ||
        !pt_portal_session_well_formed(id))
        return;
    char h[65];
    pt_portal_session_hash(id, h);
    struct pt_store *st = pt_portal_req_srv.store;
    struct pt_store_accounts_session se;
    if (!pt_store_accounts_session_get(st, h, &se)) {
        set_cookie(r, NULL); /* unknown (ended, or never ours): the browser forgets it */
        return;
    }
    const struct pt_conf *f = pt_portal_req_srv.file;
    int64_t now = now_ms();
    bool idle = f->portal.idle_timeout_ms && now - se.seen > (int64_t)f->portal.idle_timeout_ms;
    bool old = f->portal.absolute_timeout_ms && now - se.created > (int64_t)f->portal.absolute_timeout_ms;
    struct pt_portal_user *u = NULL;
    if (!idle && !old && se.user[0] && !(u = user_load(se.user, se.stamp, NULL))) {
        /* the password changed, the account was closed or blocked */
        pt_info("portal: a session of user %s ended: the account changed", se.user);
    }
    if (idle || old || (se.user[0] && !u)) {
        pt_store_accounts_session_delete(st, h);
        set_cookie(r, NULL);
        return;
    }
    set_user(r, u);
    snprintf(r->session_id, sizeof(r->session_id), "%s", id);
    snprintf(r->csrf, sizeof(r->csrf), "%s", se.csrf);
    /* last seen, written at most every tenth of the idle limit (a minute at
       most): a page view is not a database write each time */
    int64_t every = f->portal.idle_timeout_ms ? (int64_t)f->portal.idle_timeout_ms / 10 : 60000;
    if (every > 60000)
        every = 60000;
    if (now - se.seen >= every)
        pt_store_accounts_session_seen(st, h, now);
}

/* A new session (user "" for a guest) replacing r's. */
static bool begin(struct pt_portal_req *r, const char *user_id, int64_t stamp)
{
    struct pt_store *st = pt_portal_req_srv.store;
    sweep();
    if (r->session_id[0]) { /* rotated: the id the visitor had opens nothing from now on */
        char old[65];
        pt_portal_session_hash(r->session_id, old);
        pt_store_accounts_session_delete(st, old);
    }
    char id[PT_PORTAL_SESSION_CHARS + 1], h[65];
    struct pt_store_accounts_session se = {0};
    if (!pt_portal_session_random(id, sizeof(id)) || !pt_portal_session_random(se.csrf, sizeof(se.csrf))) {
        pt_warn("portal: no random bytes for a session");
        return false;
    }
    snprintf(se.user, sizeof(se.user), "%s", user_id);
    se.created = se.seen = now_ms();
    se.stamp = stamp;
    pt_portal_session_hash(id, h);
    if (!pt_store_accounts_session_put(st, h, &se)) {
        clear(r);
        return false;
    }
    set_cookie(r, id);
    snprintf(r->session_id, sizeof(r->session_id), "%s", id);
    snprintf(r->csrf, sizeof(r->csrf), "%s", se.csrf);
    OPENSSL_cleanse(id, sizeof(id));
    return true;
}

bool pt_portal_session_start(struct pt_portal_req *r, const char *user_id)
{
    int64_t stamp = 0;
    struct pt_portal_user *u = NULL;
    /* only a user with a password and active now: the stamp the session
       holds is the one the password has */
    if (!(u = user_load(user_id, -1, &stamp)))
        return false;
    if (!begin(r, user_id, stamp)) {
        user_free(u);
        return false;
    }
    set_user(r, u);
    pt_info("portal: user %s signed in from %s", user_id, r->peer);
    return true;
}

bool pt_portal_session_guest(struct pt_portal_req *r)
{
    if (r->session_id[0])
        return true;
    return begin(r, "", 0);
}

void pt_portal_session_end(struct pt_portal_req *r)
{
    if (r->session_id[0]) {
        char h[65];
        pt_portal_session_hash(r->session_id, h);
        pt_store_accounts_session_delete(pt_portal_req_srv.store, h);
        set_cookie(r, NULL);
    }
    clear(r);
}

void pt_portal_session_end_user(const char *user_id)
{
    int n = pt_store_accounts_session_delete_user(pt_portal_req_srv.store, user_id);
    if (n > 0)
        pt_info("portal: %d session(s) of user %s ended", n, user_id);
}
