/*
 * oidc.c -- validate-jwt's OpenID Connect providers, whose published key
 * sets (openid-config, jwks_uri) are fetched in the background.  Reading
 * keys (base64, RSA n/e, EC x/y, PEM, JWKs; the sizes accepted) is
 * core/base/pt_jwt.c, which the portal's sign-in shares.  validate_jwt.c verifies tokens with what this file
 * gives it.
 */
#define _GNU_SOURCE /* pipe2 */
#include "access.h"

#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ----------------------------------------------------------- openid-config */

/*
 * Identity providers' signing keys, fetched by a background thread per
 * provider (a slow one delays nobody else): the metadata (openid-config
 * url) gives jwks_uri, whose keys are kept for an hour; a token with an
 * unknown kid asks for a refetch, at most once per five minutes; a provider
 * that fails is retried every 10 s until it answers.  Requests never wait
 * on the network except those arriving before the provider's first fetch
 * has finished, which poll (without blocking their worker) for up to 5 s;
 * once a fetch has failed, requests are refused at once until one works.
 * Fetches go through the gateway's outbound client (api->http_get): the
 * system's CA store (or SSL_CERT_FILE), the provider's name checked, 10 s
 * for a whole fetch, documents of at most 1 MiB, no redirects.  Shutting
 * down cancels a fetch at once (a byte on oidc_cancel).  A set keeps at most
 * OIDC_MAX_KEYS signing keys, each of a sensible size, and a token is checked
 * against at most JWT_KEYS_TRIED of them, so neither a provider nor a token
 * can make one request expensive.  `portico -t` fetches nothing.
 */

#define OIDC_FETCH_MS 10000
#define OIDC_MAX_DOC (1024 * 1024)
#define OIDC_MAX_KEYS 64

struct oidc {
    char *url;
    struct keyset *ks;
    int64_t fetched_ms, attempt_ms, refetch_ms;
    bool want;
    bool tried;   /* a fetch has finished (worked or not) */
    bool running; /* its thread */
    pthread_t thread;
    struct oidc *next;
};

static pthread_mutex_t oidc_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t oidc_cv = PTHREAD_COND_INITIALIZER;
static struct oidc *oidcs;
static bool oidc_stop;
static int oidc_cancel[2] = {-1, -1}; /* a byte in [1]: fetches stop (shutdown) */

int64_t oidc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void oidc_keyset_unref(struct keyset *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&oidc_mu);
    bool last = --k->refs == 0;
    pthread_mutex_unlock(&oidc_mu);
    if (!last)
        return;
    for (int i = 0; i < k->n; i++) {
        free(k->keys[i].secret);
        free((char *)k->keys[i].id);
        EVP_PKEY_free(k->keys[i].pkey);
    }
    free(k->keys);
    free(k);
}

/* GET url through the gateway's outbound client: a malloc'd body, or NULL
   with err.  `what` names the document in messages. */
static char *fetch_doc(const char *url, const char *what, char *err, size_t errlen)
{
    struct pt_http_get_opts o = {OIDC_FETCH_MS, OIDC_MAX_DOC, "application/json", oidc_cancel[0]};
    char *body = NULL;
    size_t len = 0;
    char why[400] = "";
    int st = access_api->http_get(url, &o, &body, &len, why, sizeof(why));
    if (st == PT_HTTP_GET_TOO_LARGE) {
        snprintf(err, errlen, "the %s at %s is larger than %d bytes", what, url, OIDC_MAX_DOC);
        return NULL;
    }
    if (st < 0) {
        snprintf(err, errlen, "%s: %s", url, why);
        return NULL;
    }
    if (st != 200) {
        snprintf(err, errlen, "%s answered %d for the %s", url, st, what);
        free(body);
        return NULL;
    }
    if (memchr(body, '\0', len)) {
        snprintf(err, errlen, "the %s at %s holds a NUL byte", what, url);
        free(body);
        return NULL;
    }
    return body;
}

/* metadata -> jwks_uri -> keys */
static struct keyset *oidc_fetch(const char *url, char *err, size_t errlen)
{
    char *meta = fetch_doc(url, "metadata", err, errlen);
    if (!meta)
        return NULL;
    json_t *m = json_loads(meta, JSON_REJECT_DUPLICATES, NULL);
    free(meta);
    const char *jwks_uri = json_string_value(json_object_get(m, "jwks_uri"));
    char *jw = jwks_uri ? fetch_doc(jwks_uri, "key set", err, errlen) : NULL;
    if (!jwks_uri)
        snprintf(err, errlen, "the metadata at %s %s", url, m ? "has no jwks_uri" : "is not JSON");
    json_decref(m);
    if (!jw)
        return NULL;
    json_t *set = json_loads(jw, 0, NULL);
    free(jw);
    json_t *arr = json_object_get(set, "keys");
    if (!json_is_array(arr)) {
        snprintf(err, errlen, "the key set %s", set ? "has no \"keys\" array" : "is not JSON");
        json_decref(set);
        return NULL;
    }
    struct keyset *ks = calloc(1, sizeof(*ks));
    ks->refs = 1;
    ks->keys = calloc(OIDC_MAX_KEYS + 1, sizeof(*ks->keys));
    size_t i;
    json_t *k;
    int skipped = 0;
    const char *why = NULL;
    json_array_foreach(arr, i, k)
    {
        const char *kty = json_string_value(json_object_get(k, "kty"));
        const char *use = json_string_value(json_object_get(k, "use"));
        if (!kty || (use && strcmp(use, "sig")))
            continue;
        if (ks->n == OIDC_MAX_KEYS) {
            skipped++;
            why = "only the first 64 signing keys are kept";
            continue;
        }
        struct jwt_key *key = &ks->keys[ks->n];
        memset(key, 0, sizeof(*key));
        const char *kid = json_string_value(json_object_get(k, "kid"));
        key->pkey = pt_jwt_key_from_jwk(k);
        if (!key->pkey)
            continue;
        const char *bad = pt_jwt_key_unreasonable(key->pkey);
        if (bad) {
            EVP_PKEY_free(key->pkey);
            key->pkey = NULL;
            skipped++;
            why = bad;
            continue;
        }
        key->id = kid ? strdup(kid) : NULL;
        ks->n++;
    }
    json_decref(set);
    if (skipped && access_api)
        access_api->log(PT_LOG_LEVEL_WARN, "validate-jwt: the key set of %s: %d key%s left out (%s)", url,
                        skipped, skipped == 1 ? "" : "s", why);
    return ks;
}

/* One provider's thread: fetches when its keys are missing, stale or asked for. */
static void *oidc_main(void *arg)
{
    struct oidc *o = arg; /* its url never changes: read without the lock */
    pthread_mutex_lock(&oidc_mu);
    while (!oidc_stop) {
        int64_t now = oidc_now_ms();
        bool stale = o->ks && now - o->fetched_ms > 3600 * 1000;
        bool missing = !o->ks && (!o->attempt_ms || now - o->attempt_ms > 10 * 1000);
        bool asked = o->want && (!o->refetch_ms || now - o->refetch_ms > 300 * 1000);
        if (!stale && !missing && !asked) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&oidc_cv, &oidc_mu, &ts);
            continue;
        }
        o->attempt_ms = now;
        if (o->want) {
            o->refetch_ms = now;
            o->want = false;
        }
        pthread_mutex_unlock(&oidc_mu);
        char err[600] = "";
        struct keyset *ks = oidc_fetch(o->url, err, sizeof(err));
        if (!ks && access_api)
            access_api->log(PT_LOG_LEVEL_WARN, "validate-jwt: openid-config %s: %s", o->url, err);
        pthread_mutex_lock(&oidc_mu);
        o->tried = true;
        if (ks) {
            struct keyset *old = o->ks;
            o->ks = ks;
            o->fetched_ms = oidc_now_ms();
            if (old) {
                pthread_mutex_unlock(&oidc_mu);
                oidc_keyset_unref(old);
                pthread_mutex_lock(&oidc_mu);
            }
        }
    }
    pthread_mutex_unlock(&oidc_mu);
    return NULL;
}

/* The provider entry for url (one per URL for the plugin's life). */
struct oidc *oidc_get(const char *url)
{
    pthread_mutex_lock(&oidc_mu);
    struct oidc *o = oidcs;
    while (o && strcmp(o->url, url))
        o = o->next;
    if (!o) {
        o = calloc(1, sizeof(*o));
        o->url = strdup(url);
        o->next = oidcs;
        oidcs = o;
        oidc_stop = false;
        if (oidc_cancel[0] < 0 && pipe2(oidc_cancel, O_CLOEXEC | O_NONBLOCK) != 0)
            oidc_cancel[0] = oidc_cancel[1] = -1;
        /* checking a configuration contacts nobody */
        o->running = !access_api->checking_only() && pthread_create(&o->thread, NULL, oidc_main, o) == 0;
        if (!o->running)
            o->tried = true; /* no thread: nobody will fetch, so nobody waits */
    }
    pthread_mutex_unlock(&oidc_mu);
    return o;
}

struct keyset *oidc_keys(struct oidc *o, bool *never)
{
    pthread_mutex_lock(&oidc_mu);
    struct keyset *ks = o->ks;
    if (ks)
        ks->refs++;
    *never = !ks && !o->tried; /* before the first fetch has finished: worth waiting for */
    pthread_mutex_unlock(&oidc_mu);
    return ks;
}

void oidc_want(struct oidc *o)
{
    pthread_mutex_lock(&oidc_mu);
    o->want = true;
    pthread_cond_broadcast(&oidc_cv);
    pthread_mutex_unlock(&oidc_mu);
}

void oidc_fini(void)
{
    pthread_mutex_lock(&oidc_mu);
    oidc_stop = true;
    pthread_cond_broadcast(&oidc_cv);
    pthread_mutex_unlock(&oidc_mu);
    if (oidc_cancel[1] >= 0 && write(oidc_cancel[1], "x", 1) < 0) {
        /* the pipe is non-blocking and holds a byte already */
    }
    for (struct oidc *o = oidcs; o; o = o->next)
        if (o->running)
            pthread_join(o->thread, NULL);
    for (int i = 0; i < 2; i++)
        if (oidc_cancel[i] >= 0) {
            close(oidc_cancel[i]);
            oidc_cancel[i] = -1;
        }
    while (oidcs) {
        struct oidc *o = oidcs;
        oidcs = o->next;
        oidc_keyset_unref(o->ks);
        free(o->url);
        free(o);
    }
}
