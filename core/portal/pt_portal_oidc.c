/*
 * pt_portal_oidc -- signing in to the portal with an OpenID Connect
 * provider (conf/pt_idp.h; docs/portal.md#identity-providers): the
 * authorization code flow with PKCE (S256).
 *
 *   GET /signin/oidc/{id}           makes state, nonce and a PKCE verifier,
 *                                   keeps them here bound to the visitor's
 *                                   (guest) session for 10 minutes, and
 *                                   sends the browser (303) to the
 *                                   provider's authorization endpoint
 *   GET /signin/oidc/{id}/callback  takes the state back (once, same
 *                                   session), exchanges the code at the
 *                                   token endpoint with the verifier, checks
 *                                   the id_token (signature by the
 *                                   provider's JWKS, iss, aud, exp, iat,
 *                                   nonce) and signs the user in
 *   POST /signin/oidc/{id}/signup   a new user accepting the site's terms
 *                                   (when it has some) before the account
 *                                   is made
 *
 * The provider's discovery document, token endpoint and key set are
 * fetched by http/pt_fetch, which blocks: each fetch runs on a thread of
 * its own (at most JOBS_MAX at once), the request waits (r->deferred) and
 * is answered when the thread hands its result back to the control
 * thread's event loop through a pipe.  Discovery documents are kept for an
 * hour, key sets for an hour or until a token names a kid they lack (one
 * refetch a minute at most).  Each fetch: 5 s, 512 KiB.
 *
 * Who signs in: the user linked to the provider's subject (sub), else the
 * user whose address is the token's email (email_verified must not be
 * false), else a new active user in developers when sign-up is allowed
 * (the provider's allowSignup, else site.signupEnabled).  Blocked and
 * closed users cannot.  A pending user (an unconfirmed sign-up) is made
 * active and their password is dropped: whoever typed it did not prove the
 * address, the provider did.
 */
#include "config.h" /* _GNU_SOURCE: pipe2 */

#include "base/pt_jwt.h"
#include "base/pt_log.h"
#include "conf/pt_idp.h"
#include "conf/pt_store_accounts.h"
#include "http/pt_fetch.h"
#include "portal/pt_portal_int.h"
#include <sys/queue.h> /* before libevent's headers: TAILQ_* */

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PENDING_MAX 1024            /* sign-ins begun and not finished */
#define PENDING_TTL_MS (10 * 60000) /* a sign-in must come back within this */
#define PENDING_PER_PEER 32         /* begun and not finished, from one address */
#define JOBS_MAX 16                 /* fetches running at once */
#define FETCH_MS 5000
#define FETCH_MAX (512 * 1024)
#define CACHE_MS (3600 * 1000)
#define JWKS_REFETCH_MS 60000 /* an unknown kid refetches the key set at most this often */
#define SKEW_S 120            /* clock skew allowed on exp, iat, nbf */
#define IAT_MAX_AGE_S 600     /* an id_token issued longer ago than this is stale */
#define KEYS_TRIED 16
#define CACHE_MAX 64

static int64_t now_ms(void)
{
    return (int64_t)pt_clock_wall_ms();
}

/* ------------------------------------------------------- begun sign-ins */

struct pending {
    char state[48], nonce[48], verifier[48];
    char session[65]; /* SHA-256 of the session id it is bound to */
    char provider[96];
    char peer[64];
    int64_t created; /* 0: free */
};
static struct pending pending[PENDING_MAX];

/* A free slot for a sign-in from peer; NULL when that address has too many under way already. */
static struct pending *pending_new(const char *peer)
{
    int64_t now = now_ms();
    struct pending *oldest = &pending[0], *free_slot = NULL;
    int mine = 0;
    for (int i = 0; i < PENDING_MAX; i++) {
        struct pending *p = &pending[i];
        if (p->created && now - p->created > PENDING_TTL_MS)
            p->created = 0;
        if (!p->created) {
            if (!free_slot)
                free_slot = p;
            continue;
        }
        mine += !strcmp(p->peer, peer);
        if (p->created < oldest->created)
            oldest = p;
    }
    if (mine >= PENDING_PER_PEER)
        return NULL; /* one address cannot push everyone else's sign-ins out */
    if (free_slot)
        return free_slot;
    /* full: the oldest gives way (a flood delays others' sign-ins, it cannot grow memory) */
    pt_warn("portal: %d OpenID Connect sign-ins waiting; the oldest is dropped", PENDING_MAX);
    return oldest;
}

/* Takes (once) the sign-in begun with this state; false when unknown or expired. */
static bool pending_take(const char *state, struct pending *out)
{
    int64_t now = now_ms();
    for (int i = 0; i < PENDING_MAX; i++) {
        struct pending *p = &pending[i];
        if (!p->created || !pt_portal_session_equal(p->state, state))
            continue;
        bool fresh = now - p->created <= PENDING_TTL_MS;
        *out = *p;
        OPENSSL_cleanse(p, sizeof(*p));
        return fresh;
    }
    return false;
}

/* ------------------------------------------------------------- caches */

struct cached {
    char key[700]; /* provider id + issuer (discovery) or the jwks_uri */
    json_t *doc;
    int64_t fetched, refetched;
};
static struct cached discovery[CACHE_MAX], jwks[CACHE_MAX];

static struct cached *cache_find(struct cached *c, const char *key, bool make)
{
    struct cached *free_slot = NULL, *oldest = &c[0];
    for (int i = 0; i < CACHE_MAX; i++) {
        if (c[i].doc && !strcmp(c[i].key, key))
            return &c[i];
        if (!c[i].doc && !free_slot)
            free_slot = &c[i];
        if (c[i].fetched < oldest->fetched)
            oldest = &c[i];
    }
    if (!make)
        return NULL;
    struct cached *s = free_slot ? free_slot : oldest;
    json_decref(s->doc);
    memset(s, 0, sizeof(*s));
    snprintf(s->key, sizeof(s->key), "%s", key);
    return s;
}

static void cache_put(struct cached *c, const char *key, json_t *doc)
{
    if (!doc)
        return;
    struct cached *s = cache_find(c, key, true);
    json_decref(s->doc);
    s->doc = json_incref(doc);
    s->fetched = now_ms();
}

/* A fresh cached document (a deep copy, for a thread) or NULL. */
static json_t *cache_copy(struct cached *c, const char *key)
{
    struct cached *s = cache_find(c, key, false);
    if (!s || now_ms() - s->fetched > CACHE_MS)
        return NULL;
    return json_deep_copy(s->doc);
}

static void discovery_key(const json_t *idp, char out[700])
{
    snprintf(out, 700, "%s %s", json_string_value(json_object_get(idp, "id")) ?: "",
             json_string_value(json_object_get(idp, "issuer")) ?: "");
}

/* --------------------------------------------------------------- jobs */

enum job_kind { JOB_START, JOB_CALLBACK };

struct job {
    enum job_kind kind;
    struct evhttp_request *req; /* NULL when the client went away */
    struct evhttp_connection *conn;
    char path[256];
    char peer[64];
    json_t *idp; /* the provider (a copy, clientSecret in clear) */
    bool insecure;
    char disc_key[700];
    /* the thread's input (owned by the thread while it runs) */
    json_t *disc; /* cached discovery, or NULL: fetch it */
    json_t *keys; /* cached key set, or NULL */
    bool may_refetch_keys;
    char *code, *redirect_uri;
    struct pending p;
    /* the thread's output */
    json_t *got_disc, *got_keys, *token;
    char err[400];
    pthread_t thread;
    bool running;
    struct job *next;      /* in jobs (the control thread's) */
    struct job *done_next; /* in done (under jobs_mu) */
};

static pthread_mutex_t jobs_mu = PTHREAD_MUTEX_INITIALIZER;
static struct job *jobs;         /* running or done, not yet finished (control thread's list) */
static struct job *done;         /* handed back (under jobs_mu) */
static int wake[2] = {-1, -1};   /* a byte: a job is done */
static int cancel[2] = {-1, -1}; /* a byte: fetches stop (shutdown) */
static struct event *wake_ev;
static int njobs;

static void job_free(struct job *j)
{
    json_decref(j->idp);
    json_decref(j->disc);
    json_decref(j->keys);
    json_decref(j->got_disc);
    json_decref(j->got_keys);
    json_decref(j->token);
    free(j->code);
    free(j->redirect_uri);
    OPENSSL_cleanse(&j->p, sizeof(j->p));
    free(j);
}

/* GET or POST url; the parsed JSON object, or NULL with err. */
static json_t *fetch_json(const char *url, const char *what, const char *form, const char *auth, char *err,
                          size_t errlen)
{
    struct pt_fetch_opts o = {
        .timeout_ms = FETCH_MS, .max_body = FETCH_MAX, .accept = "application/json", .cancel_fd = cancel[0]};
    if (form) {
        o.method = "POST";
        o.body = form;
        o.body_len = strlen(form);
        o.content_type = "application/x-www-form-urlencoded";
        o.authorization = auth;
    }
    struct pt_fetch_result r = {0};
    char why[300] = "";
    int st = pt_fetch_get(url, &o, &r, why, sizeof(why));
    if (st != PT_FETCH_OK) {
        snprintf(err, errlen, "the %s at %s: %s", what, url, why);
        return NULL;
    }
    json_t *j = r.status == 200 ? json_loadb(r.body, r.len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (r.status != 200) {
        /* an OAuth error names itself: {"error": "invalid_grant"} */
        json_t *e = json_loadb(r.body, r.len, 0, NULL);
        const char *code = json_string_value(json_object_get(e, "error"));
        snprintf(err, errlen, "the %s at %s answered %d%s%.60s", what, url, r.status, code ? ": " : "",
                 code ? code : "");
        json_decref(e);
    } else if (!json_is_object(j)) {
        snprintf(err, errlen, "the %s at %s is not a JSON object", what, url);
        json_decref(j);
        j = NULL;
    }
    free(r.body);
    return j;
}

/* An endpoint the discovery names: https (or http on loopback when insecure is allowed); a query is fine. */
static bool endpoint_ok(const char *url, bool insecure)
{
    if (!url || strlen(url) > 2000)
        return false;
    char base[2001];
    snprintf(base, sizeof(base), "%.*s", (int)strcspn(url, "?#"), url);
    const char *why;
    return !strchr(url, '#') && pt_idp_url_ok(base, insecure, &why);
}

static json_t *fetch_discovery(struct job *j)
{
    const char *iss = json_string_value(json_object_get(j->idp, "issuer"));
    char url[700];
    size_t n = strlen(iss);
    while (n && iss[n - 1] == '/')
        n--;
    snprintf(url, sizeof(url), "%.*s/.well-known/openid-configuration", (int)n, iss);
    json_t *d = fetch_json(url, "discovery document", NULL, NULL, j->err, sizeof(j->err));
    if (!d)
        return NULL;
    const char *got = json_string_value(json_object_get(d, "issuer"));
    static const char *const eps[] = {"authorization_endpoint", "token_endpoint", "jwks_uri"};
    if (!got || strcmp(got, iss)) {
        /* OpenID Connect Discovery 1.0 section 4.3: it must be exactly the issuer asked about */
        snprintf(j->err, sizeof(j->err), "the discovery document at %.200s names issuer '%.60s', not '%.60s'",
                 url, got ? got : "", iss);
        json_decref(d);
        return NULL;
    }
    for (size_t i = 0; i < PT_ARRAY_LEN(eps); i++)
        if (!endpoint_ok(json_string_value(json_object_get(d, eps[i])), j->insecure)) {
            snprintf(j->err, sizeof(j->err), "the discovery document at %.200s has no acceptable %s", url,
                     eps[i]);
            json_decref(d);
            return NULL;
        }
    return d;
}

static char *form_enc(const char *s)
{
    return evhttp_uriencode(s, -1, 0);
}

/* Does the key set hold a key with this kid (or any key when kid is NULL)? */
static bool keys_have(const json_t *set, const char *kid)
{
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(set, "keys"), i, k)
    {
        const char *id = json_string_value(json_object_get(k, "kid"));
        if (!kid || (id && !strcmp(id, kid)))
            return true;
    }
    return false;
}

/* The token request: the code with the verifier; the client authenticates with its secret (basic,
   unless the provider lists only client_secret_post), or not at all (a public client). */
static json_t *exchange(struct job *j, const json_t *disc)
{
    const char *ep = json_string_value(json_object_get(disc, "token_endpoint"));
    const char *id = json_string_value(json_object_get(j->idp, "clientId"));
    const char *secret = json_string_value(json_object_get(j->idp, "clientSecret"));
    bool post = false;
    json_t *methods = json_object_get(disc, "token_endpoint_auth_methods_supported");
    if (secret && *secret && json_is_array(methods)) {
        bool basic = false, p = false;
        size_t i;
        json_t *m;
        json_array_foreach(methods, i, m)
        {
            basic |= json_is_string(m) && !strcmp(json_string_value(m), "client_secret_basic");
            p |= json_is_string(m) && !strcmp(json_string_value(m), "client_secret_post");
        }
        post = p && !basic;
    }
    char *c = form_enc(j->code), *ru = form_enc(j->redirect_uri), *v = form_enc(j->p.verifier),
         *ci = form_enc(id), *cs = secret ? form_enc(secret) : NULL;
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b,
                        "grant_type=authorization_code&code=%s&redirect_uri=%s&code_verifier=%s&client_id=%s",
                        c, ru, v, ci);
    if (post && cs)
        evbuffer_add_printf(b, "&client_secret=%s", cs);
    evbuffer_add(b, "", 1);
    char auth[2400] = "", *authp = NULL;
    if (secret && *secret && !post) {
        /* RFC 6749 section 2.3.1: both form-encoded, then base64 */
        char pair[1400];
        int pl = snprintf(pair, sizeof(pair), "%s:%s", ci, cs);
        if (pl > 0 && (size_t)pl < sizeof(pair)) {
            memcpy(auth, "Basic ", 6);
            EVP_EncodeBlock((unsigned char *)auth + 6, (const unsigned char *)pair, pl);
            authp = auth;
        }
    }
    json_t *t =
        fetch_json(ep, "token endpoint", (const char *)evbuffer_pullup(b, -1), authp, j->err, sizeof(j->err));
    OPENSSL_cleanse(auth, sizeof(auth));
    evbuffer_free(b);
    free(c), free(ru), free(v), free(ci);
    if (cs) {
        OPENSSL_cleanse(cs, strlen(cs));
        free(cs);
    }
    if (t && !json_is_string(json_object_get(t, "id_token"))) {
        snprintf(j->err, sizeof(j->err), "the token endpoint's answer has no id_token");
        json_decref(t);
        t = NULL;
    }
    return t;
}

static void *job_main(void *arg)
{
    struct job *j = arg;
    json_t *disc = j->disc;
    if (!disc)
        disc = j->got_disc = fetch_discovery(j);
    if (disc && j->kind == JOB_CALLBACK && (j->token = exchange(j, disc))) {
        /* the key set: fetched when not cached, or when it lacks the token's kid */
        const char *tok = json_string_value(json_object_get(j->token, "id_token"));
        struct pt_jwt_parts parts;
        const char *kid = NULL;
        bool split = pt_jwt_split(tok, strlen(tok), &parts);
        if (split)
            kid = json_string_value(json_object_get(parts.header, "kid"));
        if (!j->keys || (split && kid && !keys_have(j->keys, kid) && j->may_refetch_keys)) {
            j->got_keys = fetch_json(json_string_value(json_object_get(disc, "jwks_uri")), "key set", NULL,
                                     NULL, j->err, sizeof(j->err));
            if (j->got_keys && !json_is_array(json_object_get(j->got_keys, "keys"))) {
                snprintf(j->err, sizeof(j->err), "the key set has no \"keys\" array");
                json_decref(j->got_keys);
                j->got_keys = NULL;
            }
        }
        if (split)
            pt_jwt_parts_free(&parts);
    }
    pthread_mutex_lock(&jobs_mu);
    j->done_next = done;
    done = j;
    pthread_mutex_unlock(&jobs_mu);
    if (write(wake[1], "x", 1) < 0) {
        /* non-blocking: a full pipe wakes the loop all the same */
    }
    return NULL;
}

static void finish(struct job *j);

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)what, (void)arg;
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    pthread_mutex_lock(&jobs_mu);
    struct job *list = done;
    done = NULL;
    pthread_mutex_unlock(&jobs_mu);
    while (list) {
        struct job *j = list;
        list = j->done_next;
        pthread_join(j->thread, NULL);
        j->running = false;
        for (struct job **pp = &jobs; *pp; pp = &(*pp)->next) /* out of the control thread's list */
            if (*pp == j) {
                *pp = j->next;
                break;
            }
        njobs--;
        finish(j);
        job_free(j);
    }
}

static bool pipes_ready(void)
{
    if (wake_ev)
        return true;
    if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) || pipe2(cancel, O_CLOEXEC | O_NONBLOCK)) {
        pt_warn("portal: cannot make a pipe: %s", strerror(errno));
        return false;
    }
    wake_ev = event_new(pt_portal_req_srv.base, wake[0], EV_READ | EV_PERSIST, on_wake, NULL);
    if (!wake_ev || event_add(wake_ev, NULL)) {
        pt_warn("portal: cannot watch the sign-in pipe");
        return false;
    }
    return true;
}

static void on_conn_close(struct evhttp_connection *c, void *arg)
{
    (void)c;
    for (struct job *j = jobs; j; j = j->next)
        if (j == arg) {
            j->req = NULL; /* libevent frees the request: answer nobody */
            j->conn = NULL;
        }
}

/* Runs j on a thread of its own; the request r waits for it.  false (j freed) when it cannot. */
static bool job_start(struct pt_portal_req *r, struct job *j)
{
    if (njobs >= JOBS_MAX || !pipes_ready()) {
        job_free(j);
        return false;
    }
    j->req = r->r;
    j->conn = evhttp_request_get_connection(r->r);
    snprintf(j->path, sizeof(j->path), "%s", r->path);
    snprintf(j->peer, sizeof(j->peer), "%s", r->peer);
    if (pthread_create(&j->thread, NULL, job_main, j)) {
        job_free(j);
        return false;
    }
    j->running = true;
    j->next = jobs;
    jobs = j;
    njobs++;
    if (j->conn)
        evhttp_connection_set_closecb(j->conn, on_conn_close, j);
    r->deferred = true;
    return true;
}

/* ------------------------------------------------------------- pages */

static void page(struct pt_portal_req *r, int status, const char *title, const char *text)
{
    r->status = status;
    pt_portal_render_begin(r, title);
    evbuffer_add_printf(r->out, "<h1>");
    pt_portal_render_esc(r->out, title);
    evbuffer_add_printf(r->out, "</h1>\n<p class=\"error\" role=\"alert\">");
    pt_portal_render_esc(r->out, text);
    evbuffer_add_printf(r->out, "</p>\n<p><a href=\"/signin\">Back to sign-in</a></p>\n");
    pt_portal_render_end(r);
}

static void busy(struct pt_portal_req *r)
{
    pt_portal_req_header(r, "Retry-After", "5");
    page(r, 503, "Sign-in unavailable", "Too many sign-ins are under way; try again in a moment.");
}

static void failed(struct pt_portal_req *r, const char *provider, const char *why)
{
    pt_warn("portal: OpenID Connect sign-in with %s from %s failed: %s", provider, r->peer, why);
    page(r, 502, "Sign-in failed",
         "The identity provider's answer could not be used, so you are not signed in. Try again, or sign in "
         "with your password.");
}

/* The provider id'd, enabled and well-formed (a copy, clientSecret in clear), or NULL. */
static json_t *provider(const char *id)
{
    return id ? pt_idp_get(pt_portal_req_srv.store, id) : NULL;
}

void pt_portal_oidc_buttons(struct pt_portal_req *r)
{
    json_t *list = pt_idp_list(pt_portal_req_srv.store);
    if (json_array_size(list)) {
        evbuffer_add_printf(r->out, "<section id=\"idp-signin\" aria-label=\"Sign in with\"><ul>\n");
        size_t i;
        json_t *p;
        json_array_foreach(list, i, p)
        {
            const char *id = json_string_value(json_object_get(p, "id"));
            const char *name = json_string_value(json_object_get(p, "displayName"));
            evbuffer_add_printf(r->out, "<li><a class=\"idp-signin button\" href=\"/signin/oidc/");
            pt_portal_render_esc(r->out, id);
            evbuffer_add_printf(r->out, "\">Sign in with ");
            pt_portal_render_esc(r->out, name ? name : id);
            evbuffer_add_printf(r->out, "</a></li>\n");
        }
        evbuffer_add_printf(r->out, "</ul></section>\n");
    }
    json_decref(list);
}

static void redirect_uri(const char *id, char out[600])
{
    char *e = evhttp_uriencode(id, -1, 0);
    snprintf(out, 600, "%s/signin/oidc/%s/callback", pt_portal_req_base_url(), e ? e : "");
    free(e);
}

/* ------------------------------------------------------------- start */

/* 303 to the authorization endpoint with the pending sign-in's parameters. */
static void to_provider(struct pt_portal_req *r, const json_t *idp, const json_t *disc,
                        const struct pending *p)
{
    const char *ep = json_string_value(json_object_get(disc, "authorization_endpoint"));
    const char *scopes = json_string_value(json_object_get(idp, "scopes"));
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)p->verifier, strlen(p->verifier), d);
    char challenge[64];
    pt_jwt_b64url_encode(d, sizeof(d), challenge);
    char ru[600];
    redirect_uri(p->provider, ru);
    char *ci = form_enc(json_string_value(json_object_get(idp, "clientId"))), *rue = form_enc(ru),
         *sc = form_enc(scopes ? scopes : PT_IDP_DEFAULT_SCOPES);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b,
                        "%s%cresponse_type=code&client_id=%s&redirect_uri=%s&scope=%s&state=%s&nonce=%s"
                        "&code_challenge=%s&code_challenge_method=S256",
                        ep, strchr(ep, '?') ? '&' : '?', ci, rue, sc, p->state, p->nonce, challenge);
    evbuffer_add(b, "", 1);
    pt_portal_req_header(r, "Location", (const char *)evbuffer_pullup(b, -1));
    evbuffer_free(b);
    free(ci), free(rue), free(sc);
    r->status = 303;
    evbuffer_add_printf(r->out, "<p>On to the identity provider.</p>\n");
}

void pt_portal_oidc_start(struct pt_portal_req *r, const char *id, const char *a2)
{
    (void)a2;
    json_t *idp = provider(id);
    if (!idp) {
        pt_portal_render_not_found(r);
        return;
    }
    if (!pt_portal_session_guest(r)) {
        page(r, 500, "Sign-in unavailable", "No session could be made; try again later.");
        json_decref(idp);
        return;
    }
    struct pending *p = pending_new(r->peer);
    if (!p) {
        pt_info("portal: OpenID Connect sign-ins from %s refused: %d under way", r->peer, PENDING_PER_PEER);
        pt_portal_req_header(r, "Retry-After", "60");
        page(r, 429, "Too many sign-ins", "Too many sign-ins were begun from your address; try again later.");
        json_decref(idp);
        return;
    }
    memset(p, 0, sizeof(*p));
    snprintf(p->peer, sizeof(p->peer), "%s", r->peer);
    if (!pt_portal_session_random(p->state, sizeof(p->state)) ||
        !pt_portal_session_random(p->nonce, sizeof(p->nonce)) ||
        !pt_portal_session_random(p->verifier, sizeof(p->verifier))) {
        page(r, 500, "Sign-in unavailable", "No random bytes; try again later.");
        json_decref(idp);
        return;
    }
    pt_portal_session_hash(r->session_id, p->session);
    snprintf(p->provider, sizeof(p->provider), "%s", id);
    p->created = now_ms();
    char key[700];
    discovery_key(idp, key);
    json_t *disc = cache_copy(discovery, key);
    if (disc) {
        to_provider(r, idp, disc, p);
        json_decref(disc);
        json_decref(idp);
        return;
    }
    struct job *j = calloc(1, sizeof(*j));
    if (!j) {
        busy(r);
        json_decref(idp);
        return;
    }
    j->kind = JOB_START;
    j->idp = idp;
    j->insecure = json_is_true(json_object_get(idp, "allowInsecure"));
    snprintf(j->disc_key, sizeof(j->disc_key), "%s", key);
    j->p = *p;
    if (!job_start(r, j))
        busy(r);
}

/* ---------------------------------------------------------- callback */

/* Is this claim's audience ours?  A string equal to clientId, or a list holding it (then azp, when
   several, must be clientId: OpenID Connect Core 3.1.3.7). */
static bool aud_ok(const json_t *claims, const char *client)
{
    const json_t *aud = json_object_get(claims, "aud");
    if (json_is_string(aud))
        return !strcmp(json_string_value(aud), client);
    if (!json_is_array(aud) || !json_array_size(aud))
        return false;
    bool in = false;
    size_t i;
    json_t *a;
    json_array_foreach(aud, i, a) in |= json_is_string(a) && !strcmp(json_string_value(a), client);
    const char *azp = json_string_value(json_object_get(claims, "azp"));
    return in && (json_array_size(aud) == 1 || (azp && !strcmp(azp, client)));
}

bool pt_portal_oidc_verify(const char *tok, const json_t *keyset, const char *issuer, const char *client,
                           const char *nonce, int64_t now, json_t **claims_out, const char **why)
{
    struct pt_jwt_parts p;
    *claims_out = NULL;
    if (!tok || !pt_jwt_split(tok, strlen(tok), &p)) {
        *why = "the id_token is not a signed compact JWT";
        return false;
    }
    bool ok = false;
    static const char *const algs[] = {"RS256", "RS384", "RS512", "PS256",
                                       "PS384", "PS512", "ES256", "ES384"};
    bool alg_ok = false;
    for (size_t i = 0; i < PT_ARRAY_LEN(algs); i++)
        alg_ok |= !strcmp(p.alg, algs[i]);
    const char *kid = json_string_value(json_object_get(p.header, "kid"));
    const json_t *c = p.claims;
    if (!alg_ok) {
        *why = "the id_token's alg is not an asymmetric one we accept (none and HS* are refused)";
        goto out;
    }
    if (json_object_get(p.header, "crit")) {
        *why = "the id_token's header lists critical extensions";
        goto out;
    }
    int tried = 0, valid = 0;
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(keyset, "keys"), i, k)
    {
        const char *id = json_string_value(json_object_get(k, "kid"));
        const char *use = json_string_value(json_object_get(k, "use"));
        if ((use && strcmp(use, "sig")) || (kid && (!id || strcmp(id, kid))) || tried == KEYS_TRIED)
            continue;
        EVP_PKEY *key = pt_jwt_key_from_jwk(k);
        if (key && !pt_jwt_key_unreasonable(key)) {
            int v = pt_jwt_verify(p.alg, NULL, 0, key, (const unsigned char *)tok, p.signed_len, p.sig,
                                  p.sig_len);
            if (v >= 0)
                tried++;
            valid |= v == 1;
        }
        EVP_PKEY_free(key);
        if (valid)
            break;
    }
    if (!valid) {
        *why = tried ? "the id_token's signature is not valid"
                     : "no key of the provider's key set fits the id_token";
        goto out;
    }
    const char *iss = json_string_value(json_object_get(c, "iss"));
    json_t *exp = json_object_get(c, "exp"), *iat = json_object_get(c, "iat"),
           *nbf = json_object_get(c, "nbf");
    const char *sub = json_string_value(json_object_get(c, "sub"));
    const char *tn = json_string_value(json_object_get(c, "nonce"));
    if (!iss || strcmp(iss, issuer))
        *why = "the id_token's issuer (iss) is not the provider's";
    else if (!aud_ok(c, client))
        *why = "the id_token's audience (aud) is not this portal's clientId";
    else if (!json_is_number(exp) || (double)now > json_number_value(exp) + SKEW_S)
        *why = "the id_token has expired (or has no exp)";
    else if (!json_is_number(iat) || json_number_value(iat) > (double)(now + SKEW_S) ||
             json_number_value(iat) < (double)(now - IAT_MAX_AGE_S - SKEW_S))
        *why = "the id_token's issue time (iat) is missing, in the future or too old";
    else if (nbf && (!json_is_number(nbf) || json_number_value(nbf) > (double)(now + SKEW_S)))
        *why = "the id_token is not valid yet (nbf)";
    else if (!tn || !nonce || !pt_portal_session_equal(tn, nonce))
        *why = "the id_token's nonce is not the one this sign-in sent";
    else if (!sub || !*sub || strlen(sub) > 255)
        *why = "the id_token has no usable subject (sub)";
    else {
        ok = true;
        *claims_out = json_incref(p.claims);
    }
out:
    pt_jwt_parts_free(&p);
    return ok;
}

/* ------------------------------------------------ sign-ups waiting for the terms */

/* A new user whose id_token was verified while the site has terms: they accept them on a form
   (POST /signin/oidc/{id}/signup) before the account is made.  Bound to the session, 10 minutes. */
#define SIGNUPS_MAX 128
struct signup {
    char session[65];
    char provider[96];
    char sub[256], email[256], given[128], family[128];
    int64_t created; /* 0: free */
};
static struct signup signups[SIGNUPS_MAX];

static void signup_save(const struct pt_portal_req *r, const char *prov, const json_t *c)
{
    int64_t now = now_ms();
    struct signup *slot = &signups[0];
    for (int i = 0; i < SIGNUPS_MAX; i++) {
        if (!signups[i].created || now - signups[i].created > PENDING_TTL_MS) {
            slot = &signups[i];
            break;
        }
        if (signups[i].created < slot->created)
            slot = &signups[i]; /* full: the oldest gives way */
    }
    memset(slot, 0, sizeof(*slot));
    pt_portal_session_hash(r->session_id, slot->session);
    snprintf(slot->provider, sizeof(slot->provider), "%s", prov);
    snprintf(slot->sub, sizeof(slot->sub), "%s", json_string_value(json_object_get(c, "sub")) ?: "");
    snprintf(slot->email, sizeof(slot->email), "%s", json_string_value(json_object_get(c, "email")) ?: "");
    const char *g = json_string_value(json_object_get(c, "given_name")),
               *f = json_string_value(json_object_get(c, "family_name"));
    snprintf(slot->given, sizeof(slot->given), "%s",
             g && strlen(g) < 128 && pt_conf_entities_text_ok(g) ? g : "");
    snprintf(slot->family, sizeof(slot->family), "%s",
             f && strlen(f) < 128 && pt_conf_entities_text_ok(f) ? f : "");
    slot->created = now;
}

/* The session's waiting sign-up with this provider (not taken), or NULL. */
static struct signup *signup_find(const struct pt_portal_req *r, const char *prov)
{
    if (!r->session_id[0])
        return NULL;
    char h[65];
    pt_portal_session_hash(r->session_id, h);
    int64_t now = now_ms();
    for (int i = 0; i < SIGNUPS_MAX; i++)
        if (signups[i].created && now - signups[i].created <= PENDING_TTL_MS &&
            pt_portal_session_equal(signups[i].session, h) && !strcmp(signups[i].provider, prov))
            return &signups[i];
    return NULL;
}

static void terms_page(struct pt_portal_req *r, int status, const char *prov, const char *err)
{
    r->status = status;
    pt_portal_render_begin(r, "Accept the terms");
    evbuffer_add_printf(r->out, "<h1>Accept the terms of use</h1>\n");
    if (err) {
        evbuffer_add_printf(r->out, "<p class=\"error\" role=\"alert\">");
        pt_portal_render_esc(r->out, err);
        evbuffer_add_printf(r->out, "</p>\n");
    }
    evbuffer_add_printf(r->out, "<section id=\"terms\">");
    const json_t *site = json_object_get(pt_portal_content_get(r), "site");
    pt_portal_render_markdown(r->out, json_string_value(json_object_get(site, "terms")) ?: "");
    evbuffer_add_printf(r->out,
                        "</section>\n<form id=\"oidc-terms-form\" method=\"post\" action=\"/signin/oidc/");
    pt_portal_render_esc(r->out, prov);
    evbuffer_add_printf(r->out, "/signup\">");
    pt_portal_render_csrf(r);
    evbuffer_add_printf(r->out,
                        "<p><input id=\"oidc-terms\" name=\"terms\" type=\"checkbox\" required> <label "
                        "for=\"oidc-terms\">I accept the <a href=\"/terms\">terms of use</a></label></p>\n"
                        "<button type=\"submit\">Create my account</button></form>\n");
    pt_portal_render_end(r);
}

/* Opens a transaction for a sign-in's writes; commits (with the gateway's publish when users changed). */
static bool write_begin(void)
{
    return pt_store_begin(pt_portal_req_srv.store);
}

static bool write_end(bool ok, bool users_changed)
{
    struct pt_store *st = pt_portal_req_srv.store;
    if (!ok) {
        pt_store_rollback(st);
        return false;
    }
    if (!users_changed)
        return pt_store_commit(st);
    struct pt_errors errs = {0};
    ok = pt_portal_req_srv.hooks->publish(&errs);
    for (int i = 0; i < errs.n; i++)
        pt_warn("portal: OpenID Connect sign-in: %s", errs.msgs[i]);
    pt_node_errors_clear(&errs);
    return ok;
}

/* A user id for URLs and the management API (as sign-up makes them). */
static bool new_user_id(char id[40])
{
    char rnd[PT_PORTAL_SESSION_CHARS + 1];
    if (!pt_portal_session_random(rnd, sizeof(rnd)))
        return false;
    int o = snprintf(id, 40, "u-");
    for (const char *p = rnd; *p && o < 18; p++)
        if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))
            id[o++] = *p;
        else if (*p >= 'A' && *p <= 'Z')
            id[o++] = (char)(*p - 'A' + 'a');
    id[o] = '\0';
    return true;
}

/* An address's rough shape: one '@', something on each side, a dot in the domain, no spaces. */
static bool email_ok(const char *e)
{
    const char *at = strchr(e, '@');
    if (!at || at == e || strchr(at + 1, '@') || !strchr(at + 1, '.') || !at[1] || strlen(e) > 254)
        return false;
    for (const char *p = e; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '<' || *p == '>' || *p == '"')
            return false;
    return true;
}

static const char *claim(const json_t *c, const char *name, const char *def)
{
    const char *s = json_string_value(json_object_get(c, name));
    return s && strlen(s) < 128 && pt_conf_entities_text_ok(s)
               ? s
               : def; /* a name with a line break is dropped */
}

/* The user the verified claims sign in (id into uid), making or activating one when allowed.  false
   after writing the page that says why not. */
static bool user_for(struct pt_portal_req *r, const json_t *idp, const json_t *c, bool terms_ok,
                     char uid[128])
{
    struct pt_store *st = pt_portal_req_srv.store;
    const char *prov = json_string_value(json_object_get(idp, "id"));
    const char *sub = json_string_value(json_object_get(c, "sub"));
    const char *email = json_string_value(json_object_get(c, "email"));
    json_t *ev = json_object_get(c, "email_verified");
    bool linked = pt_idp_link_get(st, prov, sub, uid);
    json_t *body = NULL;
    if (linked && !pt_store_get(st, "user", "", uid, &body, NULL)) {
        /* the user was deleted: the link leads nowhere */
        if (write_begin())
            write_end(pt_idp_link_delete(st, prov, sub), false);
        linked = false;
    }
    if (!linked) {
        bool verified =
            !ev || json_is_true(ev) || (json_is_string(ev) && !strcmp(json_string_value(ev), "true"));
        if (!email || !email_ok(email)) {
            page(r, 403, "Sign-in refused", "The identity provider did not give an email address.");
            return false;
        }
        if (!verified) {
            page(r, 403, "Sign-in refused", "The identity provider has not verified your email address.");
            return false;
        }
        if (pt_store_accounts_user_by_email(st, email, uid))
            pt_store_get(st, "user", "", uid, &body, NULL);
    }
    bool users_changed = false, ok = true;
    if (!body) {
        const json_t *signup = json_object_get(idp, "allowSignup");
        const json_t *site = json_object_get(pt_portal_content_get(r), "site");
        bool allowed = json_is_boolean(signup) ? json_is_true(signup)
                                               : !json_is_false(json_object_get(site, "signupEnabled"));
        if (!allowed) {
            page(r, 403, "No account",
                 "There is no account for this address, and signing up is closed. Ask the portal's "
                 "administrators for an invitation.");
            return false;
        }
        const char *terms = json_string_value(json_object_get(site, "terms"));
        if (terms && *terms && !terms_ok) {
            /* the site has terms: the new user accepts them before the account is made */
            signup_save(r, prov, c);
            terms_page(r, 200, prov, NULL);
            return false;
        }
        char id[40];
        if (!new_user_id(id) || !write_begin()) {
            page(r, 500, "Sign-in failed", "Your account could not be made; try again later.");
            return false;
        }
        body =
            json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", id, "email", email, "firstName",
                      claim(c, "given_name", ""), "lastName", claim(c, "family_name", ""), "state", "active");
        ok = pt_store_put(st, "user", "", id, "", body, "api", NULL) &&
             pt_store_link(st, "group-user", "developers", id, "api");
        snprintf(uid, 128, "%s", id);
        users_changed = true;
        pt_info("portal: user %s signed up through identity provider %s", id, prov);
    } else {
        const char *state = json_string_value(json_object_get(body, "state"));
        if (state && strcmp(state, "active") && strcmp(state, "pending")) {
            pt_info("portal: user %s (%s) may not sign in through %s", uid, state, prov);
            page(r, 403, "Sign-in refused", "This account cannot sign in. Ask the portal's administrators.");
            json_decref(body);
            return false;
        }
        if (!write_begin()) {
            page(r, 500, "Sign-in failed", "You could not be signed in; try again later.");
            json_decref(body);
            return false;
        }
        if (state && !strcmp(state, "pending")) {
            /* the provider proved the address; a password someone set without proving it goes */
            char src[16] = "api";
            pt_store_info(st, "user", "", uid, src, NULL);
            json_object_set_new(body, "state", json_string("active"));
            ok = pt_store_put(st, "user", "", uid, "", body, src, NULL) &&
                 pt_store_accounts_cred_delete(st, uid) && pt_store_accounts_token_drop_user(st, uid, NULL);
            users_changed = true;
        }
    }
    /* sessions need a credential row (its stamp); one that no password matches */
    const char *uemail = json_string_value(json_object_get(body, "email"));
    if (ok && uemail && !pt_store_accounts_cred_get(st, uid, uemail, NULL, 0, NULL))
        ok = pt_store_accounts_cred_set(st, uid, uemail, "!oidc", NULL);
    if (ok)
        ok = pt_idp_link_put(st, prov, sub, uid);
    json_decref(body);
    if (!write_end(ok, users_changed)) {
        page(r, 500, "Sign-in failed", "You could not be signed in; try again later.");
        return false;
    }
    return true;
}

/* The control thread's half of a callback: caches, id_token, user, session. */
static void callback_done(struct pt_portal_req *r, struct job *j)
{
    const char *prov = json_string_value(json_object_get(j->idp, "id"));
    if (j->got_keys) {
        struct cached *s = cache_find(
            jwks, json_string_value(json_object_get(j->disc ? j->disc : j->got_disc, "jwks_uri")) ?: "",
            true);
        json_decref(s->doc);
        s->doc = json_incref(j->got_keys);
        s->fetched = now_ms();
        if (j->keys)
            s->refetched = s->fetched; /* a refetch for an unknown kid: the next one waits a while */
    }
    if (!j->token) {
        failed(r, prov, j->err[0] ? j->err : "no token");
        return;
    }
    const json_t *keys = j->got_keys ? j->got_keys : j->keys;
    json_t *claims = NULL;
    const char *why = "no key set";
    if (!keys || !pt_portal_oidc_verify(json_string_value(json_object_get(j->token, "id_token")), keys,
                                        json_string_value(json_object_get(j->idp, "issuer")),
                                        json_string_value(json_object_get(j->idp, "clientId")), j->p.nonce,
                                        (int64_t)time(NULL), &claims, &why)) {
        failed(r, prov, why);
        return;
    }
    char uid[128] = "";
    if (user_for(r, j->idp, claims, false, uid)) {
        if (pt_portal_session_start(r, uid))
            pt_portal_req_redirect(r, "/", "You are signed in.");
        else
            page(r, 500, "Sign-in failed", "You could not be signed in; try again later.");
    }
    json_decref(claims);
}

void pt_portal_oidc_callback(struct pt_portal_req *r, const char *id, const char *a2)
{
    (void)a2;
    json_t *idp = provider(id);
    if (!idp) {
        pt_portal_render_not_found(r);
        return;
    }
    const char *state = pt_portal_req_query(r, "state"), *code = pt_portal_req_query(r, "code");
    struct pending p;
    char sh[65] = "";
    if (r->session_id[0])
        pt_portal_session_hash(r->session_id, sh);
    bool known = state && strlen(state) < sizeof(p.state) && pending_take(state, &p);
    if (!known || !sh[0] || !pt_portal_session_equal(p.session, sh) || strcmp(p.provider, id)) {
        pt_info("portal: an OpenID Connect callback from %s with an unknown, used, expired or foreign state",
                r->peer);
        page(r, 400, "Sign-in expired",
             "This sign-in is not valid any more (it was used, took too long, or began in another browser). "
             "Start again.");
        json_decref(idp);
        return;
    }
    const char *err = pt_portal_req_query(r, "error");
    if (err || !code || !*code || strlen(code) > 4096) {
        pt_info("portal: identity provider %s answered %.60s", id, err ? err : "without a code");
        page(r, 403, "Not signed in",
             err && !strcmp(err, "access_denied") ? "The sign-in was cancelled at the identity provider."
                                                  : "The identity provider did not sign you in.");
        json_decref(idp);
        OPENSSL_cleanse(&p, sizeof(p));
        return;
    }
    struct job *j = calloc(1, sizeof(*j));
    char ru[600];
    redirect_uri(id, ru);
    if (!j || !(j->code = strdup(code)) || !(j->redirect_uri = strdup(ru))) {
        if (j)
            job_free(j);
        json_decref(idp);
        busy(r);
        return;
    }
    j->kind = JOB_CALLBACK;
    j->idp = idp;
    j->insecure = json_is_true(json_object_get(idp, "allowInsecure"));
    discovery_key(idp, j->disc_key);
    j->disc = cache_copy(discovery, j->disc_key);
    const char *ju = json_string_value(json_object_get(j->disc, "jwks_uri"));
    struct cached *ks = ju ? cache_find(jwks, ju, false) : NULL;
    if (ks && now_ms() - ks->fetched <= CACHE_MS)
        j->keys = json_deep_copy(ks->doc);
    j->may_refetch_keys = !ks || now_ms() - ks->refetched > JWKS_REFETCH_MS;
    j->p = p;
    OPENSSL_cleanse(&p, sizeof(p));
    if (!job_start(r, j))
        busy(r);
}

void pt_portal_oidc_signup(struct pt_portal_req *r, const char *id, const char *a2)
{
    (void)a2;
    json_t *idp = provider(id);
    struct signup *su = idp ? signup_find(r, id) : NULL;
    if (!su) {
        page(r, 400, "Sign-up expired",
             "This sign-up is not valid any more (it took too long, or began in "
             "another browser). Start again.");
        json_decref(idp);
        return;
    }
    if (!pt_portal_req_check_csrf(r)) {
        json_decref(idp);
        return;
    }
    const char *terms = pt_portal_req_form(r, "terms");
    if (!terms || strcmp(terms, "on")) {
        terms_page(r, 400, id, "Accept the terms of use to sign up.");
        json_decref(idp);
        return;
    }
    /* taken: whatever follows, this sign-up is used */
    json_t *c = json_pack("{s:s, s:s, s:b, s:s, s:s}", "sub", su->sub, "email", su->email, "email_verified",
                          1, "given_name", su->given, "family_name", su->family);
    OPENSSL_cleanse(su, sizeof(*su));
    char uid[128] = "";
    if (c && user_for(r, idp, c, true, uid)) {
        if (pt_portal_session_start(r, uid))
            pt_portal_req_redirect(r, "/", "You are signed in.");
        else
            page(r, 500, "Sign-in failed", "You could not be signed in; try again later.");
    }
    json_decref(c);
    json_decref(idp);
}

/* A job's request answered on the control thread, as the dispatcher would have. */
static void finish(struct job *j)
{
    if (j->got_disc)
        cache_put(discovery, j->disc_key, j->got_disc);
    if (!j->req) {
        pt_info("portal: an OpenID Connect sign-in ended after its visitor left");
        return;
    }
    if (j->conn)
        evhttp_connection_set_closecb(j->conn, NULL, NULL);
    struct pt_portal *srv = &pt_portal_req_srv;
    srv->file = srv->hooks->file();
    struct pt_portal_req r = {.r = j->req, .method = EVHTTP_REQ_GET, .out = evbuffer_new()};
    TAILQ_INIT(&r.query);
    snprintf(r.peer, sizeof(r.peer), "%s", j->peer);
    r.path = strdup(j->path);
    if (!r.out || !r.path) {
        evhttp_send_error(j->req, 500, NULL);
        free(r.path);
        if (r.out)
            evbuffer_free(r.out);
        return;
    }
    pt_portal_session_load(&r);
    const json_t *disc = j->disc ? j->disc : j->got_disc;
    if (!disc)
        failed(&r, json_string_value(json_object_get(j->idp, "id")), j->err);
    else if (j->kind == JOB_START)
        to_provider(&r, j->idp, disc, &j->p);
    else
        callback_done(&r, j);
    pt_portal_req_send(&r);
    evbuffer_free(r.out);
    free(r.path);
    if (r.user) {
        json_decref(r.user->groups);
        free(r.user);
    }
}

void pt_portal_oidc_stop(void)
{
    if (cancel[1] >= 0 && write(cancel[1], "x", 1) < 0) {
        /* non-blocking, and a byte is there already */
    }
    /* every thread ends within its fetch's deadline, at once when cancelled */
    for (struct job *j = jobs; j; j = j->next)
        if (j->running)
            pthread_join(j->thread, NULL);
    while (jobs) {
        struct job *j = jobs;
        jobs = j->next;
        if (j->req) {
            if (j->conn)
                evhttp_connection_set_closecb(j->conn, NULL, NULL);
            evhttp_send_error(j->req, 503, "Shutting down");
        }
        job_free(j);
    }
    done = NULL; /* those were in jobs too */
    njobs = 0;
    if (wake_ev)
        event_free(wake_ev);
    wake_ev = NULL;
    for (int i = 0; i < 2; i++) {
        if (wake[i] >= 0)
            close(wake[i]);
        if (cancel[i] >= 0)
            close(cancel[i]);
        wake[i] = cancel[i] = -1;
    }
    for (int i = 0; i < CACHE_MAX; i++) {
        json_decref(discovery[i].doc);
        json_decref(jwks[i].doc);
    }
    memset(discovery, 0, sizeof(discovery));
    memset(jwks, 0, sizeof(jwks));
    OPENSSL_cleanse(pending, sizeof(pending));
    OPENSSL_cleanse(signups, sizeof(signups));
}
