/*
 * pt_mgmt_gateways -- self-hosted gateways on the control plane
 * (docs/management-api.md, docs/gateways.md).
 *
 * The REST side (bearer tokens, service level): the gateway entities (the
 * built-in `managed` first, read-only), the APIs assigned to each, tokens
 * (generateToken), keys (listKeys, regenerateKey) and the nodes seen.
 *
 * The sync side (GatewayKey tokens only): a node long-polls
 * `configuration` and posts `heartbeat`.  The document a node gets is the
 * store's entity lists filtered for its gateway; it is built once per
 * (gateway, sync generation) and shared by every node that asks or waits.
 * The sync generation is one number for the control plane, raised by every
 * publish and kept in the store (so it only grows, across restarts too); a
 * gateway's document carries the generation at which its content last
 * changed, so a change elsewhere does not wake its nodes.
 *
 * A waiting request is an evhttp request left unanswered: its connection's
 * timeout is raised past the wait, a timer answers 304 when the wait runs
 * out, a publish answers 200, and a node that goes away mid-wait takes its
 * waiter with it (the connection's close callback).  Everything is bounded:
 * waiters and nodes per gateway, the refusal log, the document's size.
 */
#include "base/pt_gwtoken.h"
#include "base/pt_log.h"
#include "conf/pt_cert.h"
#include "conf/pt_model.h"
#include "http/pt_http.h"
#include "mgmt/pt_mgmt_int.h"
#include "proxy/pt_analytics.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <zlib.h>

/* The most nodes remembered per gateway, waiting requests per gateway, and
   the largest document served (a sanity bound: far above 10,000 APIs). */
#define NODES_MAX 1000
#define WAITERS_MAX 2000
#define DOC_MAX ((size_t)512 << 20)
/* The longest wait a node may ask for, and the default. */
#define WAIT_MAX 60
#define WAIT_DEFAULT 25
/* A token may be made for at most this far ahead (APIM: 30 days). */
#define TOKEN_AHEAD_MAX (30 * 86400)
/* Heartbeat interval assumed until two heartbeats have been seen (s), and the most a measured one
   (a node that does not declare its own) counts for: one long gap (a node away for an hour, then back)
   must not keep it "connected" for hours after it dies -- within 3 x 20 s it shows disconnected. */
#define HEARTBEAT_DEFAULT 5
#define HEARTBEAT_MEASURED_MAX 20
/* Refusals logged once per (peer address, gateway, reason) and minute, this many keys remembered, and
   at most this many refusal lines a minute in all (one more then tells how many were not logged). */
#define REFUSALS_MAX 256
#define REFUSAL_LINES_MAX 20
/* The largest heartbeat (an analytics batch included) taken. */
#define HEARTBEAT_BODY_MAX ((size_t)8 << 20)

/* The store's name of the sync generation (pt_store_state_*). */
#define GEN_STATE "gateways.generation"

struct node_rec {
    char id[257];
    char address[64];
    char version[65];
    char hostname[257];
    int64_t generation;
    int64_t last_ms;     /* wall clock of the last heartbeat */
    int64_t interval_ms; /* measured between heartbeats (or the node's own "heartbeat") */
    char *config_error;  /* malloc'd, or NULL */
};

struct gw;

struct waiter {
    struct evhttp_request *r;
    struct evhttp_connection *c;
    struct gw *g;
    int64_t known; /* the generation the node holds */
    bool gzip;
    char token[256]; /* the Authorization value, checked again when the wait ends (a valid one is shorter) */
    struct event *timer;
    struct event *gone; /* the peer closed its side (EV_CLOSED): evhttp does not read while we answer */
    struct waiter *next;
};

/* What the control plane holds for one gateway: its document, waiters, nodes. */
struct gw {
    char id[PT_GWTOKEN_ID_MAX + 1];
    int64_t built_for;  /* the sync generation the document was checked against (0: none) */
    int64_t generation; /* the document's: when its content last changed */
    unsigned char hash[32];
    char *body; /* the JSON document */
    size_t len;
    unsigned char *gz; /* gzip of body */
    size_t gzlen;
    struct waiter *waiters;
    int nwaiters;
    struct node_rec *nodes;
    int nnodes;
    struct gw *next;
};

static struct gw *gws;
static int64_t sync_gen;         /* the control plane's sync generation */
static struct event_base *base;  /* the management listener's */
static struct event *wake_event; /* runs after a publish, outside the write that caused it */

/* ------------------------------------------------------------- generation */

/* Raises the sync generation and keeps it in the store (only ever higher). */
static void bump_generation(void)
{
    if (!pt_mgmt_req_store)
        return;
    if (sync_gen == 0) {
        int64_t stored = 0;
        pt_store_state_get(pt_mgmt_req_store, GEN_STATE, &stored);
        sync_gen = stored;
    }
    sync_gen++;
    if (!pt_store_state_raise(pt_mgmt_req_store, GEN_STATE, sync_gen))
        pt_warn("gateways: the sync generation %lld is not saved: %s", (long long)sync_gen,
                pt_store_error(pt_mgmt_req_store));
}

static struct gw *gw_find(const char *id, bool create)
{
    for (struct gw *g = gws; g; g = g->next)
        if (!strcmp(g->id, id))
            return g;
    if (!create)
        return NULL;
    struct gw *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    snprintf(g->id, sizeof(g->id), "%s", id);
    g->next = gws;
    gws = g;
    return g;
}

static void gw_drop_doc(struct gw *g)
{
    free(g->body);
    free(g->gz);
    g->body = NULL;
    g->gz = NULL;
    g->len = g->gzlen = 0;
    g->built_for = 0;
}

/* ---------------------------------------------------------------- the doc */

static bool add_assigned(void *arg, const char *a, const char *b)
{
    (void)a;
    json_object_set_new(arg, b, json_true());
    return true;
}

/* The products that keep at least one API on this gateway (their ids as keys): a subscription to any
   other product opens nothing there, so it is not shipped (nor are its keys). */
static json_t *products_served(json_t *ents, const json_t *assigned)
{
    json_t *open = json_object();
    size_t i, k;
    json_t *p, *a;
    json_array_foreach(json_object_get(ents, "products"), i, p)
    {
        const char *id = json_string_value(json_object_get(p, "id"));
        json_array_foreach(json_object_get(p, "apis"), k, a)
        {
            if (id && json_is_string(a) && json_object_get(assigned, json_string_value(a))) {
                json_object_set_new(open, id, json_true());
                break;
            }
        }
    }
    return open;
}

/* Is a subscription (its scope) of use on a gateway serving `assigned`?  All-APIs ones are. */
static bool sub_served(json_t *sub, const json_t *assigned, const json_t *products)
{
    const char *scope = json_string_value(json_object_get(sub, "scope"));
    enum pt_sub_scope kind = PT_SUB_ALL_APIS;
    const char *sid = NULL;
    if (!scope || !pt_conf_entities_parse_sub_scope(scope, &kind, &sid) || kind == PT_SUB_ALL_APIS)
        return true;
    return sid && json_object_get(kind == PT_SUB_API ? assigned : products, sid);
}

/* Adds to set every string of v ("s:" and the text), and those that read as a SHA-1 thumbprint
   once colons and spaces are dropped ("t:" and upper-case hex). */
static void strings_of(const json_t *v, json_t *set, int depth)
{
    if (json_is_string(v)) {
        const char *t = json_string_value(v);
        char key[128];
        if (strlen(t) + 3 > sizeof(key))
            return; /* longer than any id or thumbprint */
        snprintf(key, sizeof(key), "s:%s", t);
        json_object_set_new(set, key, json_true());
        size_t n = 2;
        key[0] = 't';
        for (; *t && n + 1 < sizeof(key); t++)
            if (*t != ':' && *t != ' ')
                key[n++] = (char)toupper((unsigned char)*t);
        key[n] = '\0';
        if (n == 42)
            json_object_set_new(set, key, json_true());
        return;
    }
    if (depth > 64) /* deeper than any policy document the store accepts */
        return;
    const char *k;
    json_t *e;
    size_t i;
    if (json_is_object(v))
        json_object_foreach((json_t *)v, k, e) strings_of(e, set, depth + 1);
    else if (json_is_array(v))
        json_array_foreach(v, i, e) strings_of(e, set, depth + 1);
}

/* A certificate without its private key: its chain only. */
static json_t *without_key(const json_t *cert)
{
    char *chain = pt_cert_chain_only(json_string_value(json_object_get(cert, "data")));
    if (!chain)
        return NULL;
    json_t *c = json_copy((json_t *)cert);
    json_object_set_new(c, "data", json_string(chain));
    json_object_set_new(c, "hasPrivateKey", json_false());
    free(chain);
    return c;
}

/* The certificates a gateway's nodes get: with its private key, one that the gateway's documents
   name (by id or thumbprint: authentication-certificate, an identity's issuer); without it, a CA
   certificate (`ca: true`), for validate-client-certificate's trust and revocation; no other.
   A node thus never holds the key of a certificate it does not present. */
static json_t *certificates_for(const json_t *certs, const json_t *doc)
{
    json_t *named = json_object(), *kept = json_array(), *c;
    strings_of(doc, named, 0);
    size_t i;
    json_array_foreach(certs, i, c)
    {
        char id[128], tp[128];
        snprintf(id, sizeof(id), "s:%s", json_string_value(json_object_get(c, "id")) ?: "");
        snprintf(tp, sizeof(tp), "t:%s", json_string_value(json_object_get(c, "thumbprint")) ?: "");
        if (json_object_get(named, id) || json_object_get(named, tp))
            json_array_append(kept, c);
        else if (json_is_true(json_object_get(c, "ca"))) {
            json_t *public = without_key(c);
            if (public)
                json_array_append_new(kept, public);
        }
    }
    json_decref(named);
    return kept;
}

/* The entity lists a gateway's nodes run: only its APIs, products' lists
   cut to them, subscriptions to other APIs and to products left with no
   API here left out, no gateways, and only the certificates they use
   (certificates_for).  A new object: what it shares with ents
   (the unchanged entities) is not changed. */
static json_t *filter_for(json_t *ents, const json_t *assigned)
{
    json_t *out = json_object();
    json_t *open_products = products_served(ents, assigned);
    const char *key;
    json_t *list;
    json_object_foreach(ents, key, list)
    {
        if (!strcmp(key, "gateways") || !strcmp(key, "certificates"))
            continue;
        bool apis = !strcmp(key, "apis"), products = !strcmp(key, "products"),
             subs = !strcmp(key, "subscriptions");
        if (!apis && !products && !subs) {
            json_object_set(out, key, list);
            continue;
        }
        /* new lists rather than removals in place: linear in the entities, tens of thousands of them */
        json_t *kept = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(list, i, v)
        {
            if (apis) {
                const char *id = json_string_value(json_object_get(v, "id"));
                if (id && json_object_get(assigned, id))
                    json_array_append(kept, v);
            } else if (products) {
                json_t *p = json_copy(v), *pa = json_array(), *a; /* shallow: only its apis change */
                size_t k;
                json_array_foreach(json_object_get(v, "apis"), k, a)
                {
                    if (json_is_string(a) && json_object_get(assigned, json_string_value(a)))
                        json_array_append(pa, a);
                }
                json_object_set_new(p, "apis", pa);
                json_array_append_new(kept, p);
            } else if (sub_served(v, assigned, open_products))
                json_array_append(kept, v);
        }
        if (json_array_size(kept))
            json_object_set_new(out, key, kept);
        else
            json_decref(kept);
    }
    json_decref(open_products);
    json_t *certs = json_object_get(ents, "certificates");
    if (json_array_size(certs)) {
        json_t *kept = certificates_for(certs, out);
        if (json_array_size(kept))
            json_object_set_new(out, "certificates", kept);
        else
            json_decref(kept);
    }
    return out;
}

/* The store's entity lists, read once per store version and shared by every gateway's document. */
static json_t *ents_cache;

static json_t *entities_now(char *why, size_t whylen)
{
    json_decref(ents_cache); /* the last one, released once the next is asked for */
    struct pt_errors errs = {0};
    /* the lists the management write that woke us built its generation from, when nothing was
       written since (pt_model_entities_shared) */
    ents_cache =
        pt_model_entities_shared(pt_mgmt_req_store, pt_model_secret_key(pt_mgmt_req_hooks->file()), &errs);
    if (!ents_cache) {
        snprintf(why, whylen, "%s", errs.n ? errs.msgs[0] : "the store cannot be read");
        pt_node_errors_clear(&errs);
    }
    return ents_cache;
}

static bool gzip_of(const char *in, size_t n, unsigned char **out, size_t *outlen)
{
    z_stream z = {0};
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return false;
    uLong cap = deflateBound(&z, (uLong)n);
    unsigned char *buf = malloc(cap);
    if (!buf) {
        deflateEnd(&z);
        return false;
    }
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = buf;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(buf);
        return false;
    }
    *out = buf;
    *outlen = z.total_out;
    return true;
}

/* Makes g's document current for the sync generation; false (with why) when it cannot be built. */
static bool gw_doc(struct gw *g, char *why, size_t whylen)
{
    if (g->body && g->built_for == sync_gen)
        return true;
    json_t *ents = entities_now(why, whylen);
    if (!ents)
        return false;
    json_t *assigned = json_object();
    pt_store_links(pt_mgmt_req_store, "gateway-api", g->id, add_assigned, assigned);
    json_t *mine = filter_for(ents, assigned);
    json_decref(assigned);
    /* insertion order (the store's): the same content gives the same text, hence the same hash */
    char *text = json_dumps(mine, JSON_COMPACT);
    json_decref(mine);
    if (!text || strlen(text) > DOC_MAX) {
        snprintf(why, whylen, "the gateway's document is larger than %zu MiB", DOC_MAX >> 20);
        free(text);
        return false;
    }
    unsigned char h[32];
    SHA256((const unsigned char *)text, strlen(text), h);
    if (g->body && !memcmp(h, g->hash, 32)) { /* nothing of this gateway's changed */
        g->built_for = sync_gen;
        free(text);
        return true;
    }
    /* {"gateway", "generation", "entities"}: written around the entities' text, not parsed again */
    size_t tl = strlen(text);
    size_t cap = tl + strlen(g->id) + 96;
    char *body = malloc(cap);
    if (!body) {
        free(text);
        snprintf(why, whylen, "out of memory");
        return false;
    }
    json_t *idj = json_string(g->id);
    char *idtext = json_dumps(idj, JSON_ENCODE_ANY);
    json_decref(idj);
    int n = snprintf(body, cap, "{\"gateway\":%s,\"generation\":%lld,\"entities\":%s}\n",
                     idtext ? idtext : "\"\"", (long long)sync_gen, text);
    free(idtext);
    free(text);
    if (n < 0 || (size_t)n >= cap) {
        free(body);
        snprintf(why, whylen, "the document cannot be encoded");
        return false;
    }
    gw_drop_doc(g);
    g->body = body;
    g->len = (size_t)n; /* its gzip is made when a node first asks for it (send_doc) */
    memcpy(g->hash, h, 32);
    g->generation = sync_gen;
    g->built_for = sync_gen;
    return true;
}

/* ----------------------------------------------------------------- replies */

/* A JSON answer (j taken; NULL: no body) on a sync endpoint. */
static void sync_send(struct evhttp_request *r, int code, json_t *j)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(r);
    struct evbuffer *b = evbuffer_new();
    if (j) {
        char *txt = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (txt) {
            evbuffer_add(b, txt, strlen(txt));
            evbuffer_add(b, "\n", 1);
        }
        free(txt);
        evhttp_add_header(oh, "Content-Type", "application/json; charset=utf-8");
    }
    if (code == 401)
        evhttp_add_header(oh, "WWW-Authenticate", "GatewayKey realm=\"portico\"");
    evhttp_add_header(oh, "Cache-Control", "no-store");
    evhttp_send_reply(r, code, pt_http_reason(code), b);
    evbuffer_free(b);
    json_decref(j);
}

static void sync_error(struct evhttp_request *r, int code, const char *ecode, const char *msg)
{
    sync_send(r, code, json_pack("{s:{s:s,s:s}}", "error", "code", ecode, "message", msg));
}

/* The gateway's document: 200 with its ETag, gzip when the node takes it. */
static void send_doc(struct evhttp_request *r, struct gw *g, bool gzip)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(r);
    char etag[32];
    snprintf(etag, sizeof(etag), "\"%lld\"", (long long)g->generation);
    evhttp_add_header(oh, "Content-Type", "application/json; charset=utf-8");
    evhttp_add_header(oh, "ETag", etag);
    evhttp_add_header(oh, "Cache-Control", "no-store");
    evhttp_add_header(oh, "Vary", "Accept-Encoding");
    if (gzip && !g->gz && !gzip_of(g->body, g->len, &g->gz, &g->gzlen))
        gzip = false; /* out of memory: the plain document will do */
    struct evbuffer *b = evbuffer_new();
    if (gzip) {
        evhttp_add_header(oh, "Content-Encoding", "gzip");
        evbuffer_add(b, g->gz, g->gzlen);
    } else
        evbuffer_add(b, g->body, g->len);
    evhttp_send_reply(r, 200, "OK", b);
    evbuffer_free(b);
}

static void send_not_modified(struct evhttp_request *r, struct gw *g)
{
    char etag[32];
    snprintf(etag, sizeof(etag), "\"%lld\"", (long long)g->generation);
    evhttp_add_header(evhttp_request_get_output_headers(r), "ETag", etag);
    evhttp_send_reply(r, 304, "Not Modified", NULL);
}

/* ------------------------------------------------------------- refusals */

static struct {
    char key[PT_GWTOKEN_ID_MAX + 1 + 64 + 16];
    int64_t at_ms;
} refusals[REFUSALS_MAX];

/* The global budget: at most REFUSAL_LINES_MAX refusal lines per minute, whatever the keys; the rest
   are counted and their number logged in one line when the minute ends (a timer). */
static int64_t refusal_window_ms; /* the start of the current minute of lines */
static int refusal_lines;         /* logged in it */
static long long refusals_unlogged;
static struct event *refusal_summary;

static void on_refusal_summary(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (refusals_unlogged)
        pt_warn(
            "gateways: %lld refused sync requests not logged in the last minute (at most %d lines a minute)",
            refusals_unlogged, REFUSAL_LINES_MAX);
    refusals_unlogged = 0;
}

/* May one more refusal line be written this minute?  Counts it when not. */
static bool refusal_budget(int64_t now)
{
    if (now - refusal_window_ms >= 60000) {
        refusal_window_ms = now;
        refusal_lines = 0;
    }
    if (refusal_lines < REFUSAL_LINES_MAX) {
        refusal_lines++;
        return true;
    }
    if (refusals_unlogged++ == 0 &&
        base) { /* the first one held back: its count is told at the minute's end */
        if (!refusal_summary)
            refusal_summary = evtimer_new(base, on_refusal_summary, NULL);
        struct timeval tv = {(time_t)((refusal_window_ms + 60000 - now) / 1000) + 1, 0};
        if (refusal_summary)
            evtimer_add(refusal_summary, &tv);
    }
    return false;
}

/* Logs a refusal once per (peer address, gateway, reason) and minute, within the global budget.  The
   node (?node=) and the path's gateway are the client's choice: the node is only told, never part of
   the key, and a gateway id that is not a valid one is logged as such, not echoed. */
static void log_refusal(struct evhttp_request *r, const char *gateway, const char *why)
{
    char *peer = NULL;
    ev_uint16_t port = 0;
    struct evhttp_connection *c = evhttp_request_get_connection(r);
    if (c)
        evhttp_connection_get_peer(c, &peer, &port);
    const char *gw = pt_gwtoken_id_ok(pt_str_c(gateway)) ? gateway : "(not a gateway id)";
    char key[sizeof(refusals[0].key)];
    snprintf(key, sizeof(key), "%.63s|%.80s|%.15s", peer ? peer : "", gw, why);
    int64_t now = (int64_t)pt_clock_now_ms();
    int slot = -1, oldest = 0;
    for (int i = 0; i < REFUSALS_MAX; i++) {
        if (!strcmp(refusals[i].key, key)) {
            slot = i;
            break;
        }
        if (refusals[i].at_ms < refusals[oldest].at_ms)
            oldest = i;
    }
    if (slot >= 0 && now - refusals[slot].at_ms < 60000)
        return; /* told less than a minute ago */
    if (!refusal_budget(now))
        return;
    if (slot < 0) {
        slot = oldest;
        snprintf(refusals[slot].key, sizeof(refusals[slot].key), "%s", key);
    }
    refusals[slot].at_ms = now;
    const char *node = NULL;
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(r);
    struct evkeyvalq q;
    bool hq = evhttp_uri_get_query(u) && evhttp_parse_query_str(evhttp_uri_get_query(u), &q) == 0;
    if (hq)
        node = evhttp_find_header(&q, "node");
    pt_warn("gateway '%s': refused a sync request from %s (node %.256s): %s (logged once a minute)", gw,
            peer ? peer : "?", node ? node : "?", why);
    if (hq)
        evhttp_clear_headers(&q);
}

/* ------------------------------------------------------------ the tokens */

/* The gateway's two keys (malloc'd) from the store; false when it does not exist. */
static bool gw_keys(const char *id, char **primary, char **secondary)
{
    json_t *b = NULL;
    if (!pt_store_get(pt_mgmt_req_store, "gateway", "", id, &b, NULL))
        return false;
    const char *p = json_string_value(json_object_get(b, "primaryKey"));
    const char *s = json_string_value(json_object_get(b, "secondaryKey"));
    *primary = p ? strdup(p) : NULL;
    *secondary = s ? strdup(s) : NULL;
    json_decref(b);
    return true;
}

enum verdict { V_OK, V_UNAUTHORIZED, V_EXPIRED, V_UNKNOWN };

/* Checks an Authorization value's form and gateway (no store read); why says what is wrong. */
static enum verdict check_form(const char *auth, const char *gateway, struct pt_gwtoken *t, char *why,
                               size_t whylen)
{
    if (!auth) {
        snprintf(why, whylen, "an Authorization: GatewayKey token is required");
        return V_UNAUTHORIZED;
    }
    if (!strncasecmp(auth, "Bearer ", 7)) {
        snprintf(why, whylen, "the sync endpoints take a GatewayKey token, not a user's bearer token");
        return V_UNAUTHORIZED;
    }
    if (strncasecmp(auth, "GatewayKey ", 11) || !pt_gwtoken_parse(pt_str_c(auth), t)) {
        snprintf(why, whylen,
                 "the token is malformed (expected GatewayKey <gatewayId>&<yyyyMMddHHmm>&<signature>)");
        return V_UNAUTHORIZED;
    }
    if (strcmp(t->id, gateway)) {
        snprintf(why, whylen, "the token is for another gateway");
        return V_UNAUTHORIZED;
    }
    return V_OK;
}

/* Checks a well-formed token against the gateway's keys (either), then its expiry. */
static enum verdict check_signed(const struct pt_gwtoken *t, const char *p, const char *s, char *why,
                                 size_t whylen)
{
    bool signed_ok = (p && pt_gwtoken_signed_by(t, p)) | (s && pt_gwtoken_signed_by(t, s));
    if (!signed_ok) {
        snprintf(why, whylen, "the token's signature does not match the gateway's keys (a regenerated key?)");
        return V_UNAUTHORIZED;
    }
    if (pt_gwtoken_expired(t, (int64_t)time(NULL))) {
        snprintf(why, whylen, "the token expired at %.4s-%.2s-%.2sT%.2s:%.2sZ", t->stamp, t->stamp + 4,
                 t->stamp + 6, t->stamp + 8, t->stamp + 10);
        return V_EXPIRED;
    }
    return V_OK;
}

/* Checks an Authorization value for the gateway of the path; why says what is wrong (never a key). */
static enum verdict check_token(const char *auth, const char *gateway, char *why, size_t whylen)
{
    struct pt_gwtoken t;
    enum verdict v = check_form(auth, gateway, &t, why, whylen);
    if (v != V_OK)
        return v;
    char *p = NULL, *s = NULL;
    if (!gw_keys(gateway, &p, &s)) {
        snprintf(why, whylen, "gateway '%s' not found", gateway);
        return V_UNKNOWN;
    }
    v = check_signed(&t, p, s, why, whylen);
    free(p);
    free(s);
    return v;
}

/* Answers a refused sync request (401, 401 TokenExpired, 404) and logs it. */
static void refuse(struct evhttp_request *r, const char *gateway, enum verdict v, const char *why)
{
    log_refusal(r, gateway, v == V_EXPIRED ? "expired" : v == V_UNKNOWN ? "unknown" : why);
    if (v == V_UNKNOWN)
        sync_error(r, 404, "ResourceNotFound", why);
    else
        sync_error(r, 401, v == V_EXPIRED ? "TokenExpired" : "Unauthorized", why);
}

/* -------------------------------------------------------------- waiting */

static void waiter_free(struct waiter *w)
{
    if (w->timer)
        event_free(w->timer);
    if (w->gone)
        event_free(w->gone);
    if (w->c) {
        evhttp_connection_set_closecb(w->c, NULL, NULL);
        /* the wait is over: a kept-alive connection idles no longer than any other of the listener's */
        evhttp_connection_set_timeout(w->c, PT_MGMT_IDLE_TIMEOUT);
    }
    free(w);
}

static void waiter_unlink(struct waiter *w)
{
    struct gw *g = w->g;
    for (struct waiter **p = &g->waiters; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            g->nwaiters--;
            return;
        }
}

/* The wait ran out: 304. */
static void on_wait_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct waiter *w = arg;
    struct evhttp_request *r = w->r;
    struct gw *g = w->g;
    waiter_unlink(w);
    waiter_free(w); /* first: its close callback must not outlive it */
    send_not_modified(r, g);
}

/* The node went away mid-wait: the waiter goes, and a request libevent left to us is freed. */
static void on_waiter_closed(struct evhttp_connection *c, void *arg)
{
    (void)c;
    struct waiter *w = arg;
    pt_debug("gateway '%s': a node left during its long-poll", w->g->id);
    waiter_unlink(w);
    w->c = NULL; /* the connection is going: no callback to clear */
    if (!evhttp_request_get_connection(w->r))
        evhttp_request_free(w->r); /* detached from its connection, unanswered: ours to free */
    waiter_free(w);
}

/* The node closed its connection mid-wait: evhttp would notice only when the answer is written, so the
   connection goes now (its close callback, on_waiter_closed, takes the waiter; the request goes with it). */
static void on_peer_closed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct waiter *w = arg;
    struct evhttp_connection *c = w->c;
    pt_debug("gateway '%s': a node left during its long-poll", w->g->id);
    waiter_unlink(w);
    waiter_free(w);            /* its close callback first, so nothing calls back into it */
    evhttp_connection_free(c); /* the unanswered request goes with its connection */
}

/* Answers the waiters of g: 200 to those whose generation differs, 401 to those whose token no
   longer holds (a regenerated key, an expiry), 404 to all when the gateway is gone. */
static void wake_gateway(struct gw *g)
{
    char why[256];
    char *kp = NULL, *ks = NULL; /* the keys, read once for every waiter */
    bool gone = !gw_keys(g->id, &kp, &ks);
    bool have = !gone && gw_doc(g, why, sizeof(why));
    if (!gone && !have)
        pt_err("gateway '%s': its document cannot be built: %s", g->id, why);
    struct waiter **p = &g->waiters;
    for (int guard = 0; *p && guard < WAITERS_MAX + 1; guard++) {
        struct waiter *w = *p;
        char tw[256];
        struct pt_gwtoken t;
        enum verdict v = gone ? V_UNKNOWN : check_form(w->token, g->id, &t, tw, sizeof(tw));
        if (v == V_OK)
            v = check_signed(&t, kp, ks, tw, sizeof(tw));
        bool answer = v != V_OK || (have && w->known != g->generation);
        if (!answer) {
            p = &w->next;
            continue;
        }
        *p = w->next;
        g->nwaiters--;
        struct evhttp_request *r = w->r;
        bool gzip = w->gzip;
        waiter_free(w); /* first: its close callback must not outlive it */
        if (v != V_OK)
            refuse(r, g->id, v, gone ? "the gateway was deleted" : tw);
        else
            send_doc(r, g, gzip);
    }
    free(kp);
    free(ks);
    if (gone && !g->waiters)
        gw_drop_doc(g);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    for (struct gw **p = &gws; *p;) {
        struct gw *g = *p;
        if (g->waiters)
            wake_gateway(g);
        if (g->waiters || pt_store_get(pt_mgmt_req_store, "gateway", "", g->id, NULL, NULL)) {
            p = &g->next;
            continue;
        }
        *p = g->next; /* a deleted gateway: its document and nodes go */
        for (int i = 0; i < g->nnodes; i++)
            free(g->nodes[i].config_error);
        free(g->nodes);
        gw_drop_doc(g);
        free(g);
    }
}

void pt_mgmt_gateways_published(void)
{
    bump_generation();
    if (wake_event)
        event_active(wake_event, EV_TIMEOUT, 0); /* after the write that published has answered */
}

void pt_mgmt_gateways_start(struct event_base *b)
{
    base = b;
    if (!wake_event)
        wake_event = event_new(b, -1, 0, on_wake, NULL);
    if (sync_gen == 0)
        bump_generation(); /* a start is a change: every node fetches once after a restart */
}

void pt_mgmt_gateways_stop(void)
{
    for (int guard = 0; gws && guard < 1000000; guard++) {
        struct gw *g = gws;
        gws = g->next;
        for (int k = 0; g->waiters && k < WAITERS_MAX + 1; k++) {
            struct waiter *w = g->waiters;
            g->waiters = w->next;
            waiter_free(w); /* evhttp_free frees the requests */
        }
        for (int i = 0; i < g->nnodes; i++)
            free(g->nodes[i].config_error);
        free(g->nodes);
        gw_drop_doc(g);
        free(g);
    }
    if (wake_event)
        event_free(wake_event);
    wake_event = NULL;
    if (refusal_summary)
        event_free(refusal_summary);
    refusal_summary = NULL;
    base = NULL;
    json_decref(ents_cache);
    ents_cache = NULL;
}

/* ------------------------------------------------------- the sync routes */

static bool accepts_gzip(struct evhttp_request *r)
{
    const char *ae = evhttp_find_header(evhttp_request_get_input_headers(r), "Accept-Encoding");
    if (!ae)
        return false;
    const char *g = strcasestr(ae, "gzip");
    if (!g)
        return false;
    const char *q = g + 4;
    while (*q == ' ')
        q++;
    return !(*q == ';' && strstr(q, "q=0") && !strstr(q, "q=0.")); /* gzip;q=0 refuses it */
}

/* If-None-Match: "<generation>" (W/ allowed); -1 when absent or not one. */
static int64_t known_generation(struct evhttp_request *r)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(r), "If-None-Match");
    if (!h)
        return -1;
    if (!strncmp(h, "W/", 2))
        h += 2;
    if (*h != '"')
        return -1;
    char *end = NULL;
    long long v = strtoll(h + 1, &end, 10);
    if (end == h + 1 || *end != '"' || end[1] || v < 0)
        return -1;
    return v;
}

static void serve_configuration(struct mreq *m, struct gw *g)
{
    const char *ws = pt_mgmt_req_param(m, "wait");
    long wait = WAIT_DEFAULT;
    if (ws) {
        char *end = NULL;
        wait = strtol(ws, &end, 10);
        if (!*ws || *end || wait < 0 || wait > WAIT_MAX) {
            sync_error(m->r, 400, "InvalidParameter", "wait: seconds from 0 to 60");
            return;
        }
    }
    const char *node = pt_mgmt_req_param(m, "node");
    if (node && strlen(node) > 256) {
        sync_error(m->r, 400, "InvalidParameter", "node: at most 256 characters");
        return;
    }
    char why[256];
    if (!gw_doc(g, why, sizeof(why))) {
        pt_err("gateway '%s': its document cannot be built: %s", g->id, why);
        sync_error(m->r, 500, "DocumentError", why);
        return;
    }
    int64_t known = known_generation(m->r);
    bool gzip = accepts_gzip(m->r);
    if (known != g->generation) {
        send_doc(m->r, g, gzip);
        return;
    }
    if (wait == 0) {
        send_not_modified(m->r, g);
        return;
    }
    if (g->nwaiters >= WAITERS_MAX) {
        evhttp_add_header(evhttp_request_get_output_headers(m->r), "Retry-After", "1");
        sync_error(m->r, 503, "TooManyWaiters", "too many nodes are waiting on this gateway; try again");
        return;
    }
    struct waiter *w = calloc(1, sizeof(*w));
    if (!w) {
        sync_error(m->r, 503, "OutOfMemory", "try again");
        return;
    }
    w->r = m->r;
    w->g = g;
    w->known = known;
    w->gzip = gzip;
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(m->r), "Authorization");
    snprintf(w->token, sizeof(w->token), "%s", auth ? auth : "");
    w->timer = evtimer_new(base, on_wait_timeout, w);
    w->c = evhttp_request_get_connection(m->r);
    if (!w->timer || !w->c) {
        waiter_free(w);
        sync_error(m->r, 503, "OutOfMemory", "try again");
        return;
    }
    /* the listener's idle timeout (30 s) must not cut the wait; a node that leaves frees its waiter */
    evhttp_connection_set_timeout(w->c, (int)wait + 30);
    evhttp_connection_set_closecb(w->c, on_waiter_closed, w);
    struct bufferevent *bev = evhttp_connection_get_bufferevent(w->c);
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd >= 0 && (w->gone = event_new(base, fd, EV_CLOSED, on_peer_closed, w)) &&
        event_add(w->gone, NULL) < 0) {
        event_free(w->gone); /* a backend without EV_CLOSED: the answer at the end of the wait finds out */
        w->gone = NULL;
    }
    struct timeval tv = {wait, 0};
    evtimer_add(w->timer, &tv);
    w->next = g->waiters;
    g->waiters = w;
    g->nwaiters++;
}

static const char *str_field(json_t *o, const char *k, size_t max, bool *bad)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_string(v) || strlen(json_string_value(v)) > max) {
        *bad = true;
        return NULL;
    }
    return json_string_value(v);
}

/* Three intervals without a heartbeat: disconnected. */
static bool node_disconnected(const struct node_rec *n, int64_t now)
{
    int64_t interval = n->interval_ms > 0 ? n->interval_ms : HEARTBEAT_DEFAULT * 1000;
    return now - n->last_ms > 3 * interval;
}

static struct node_rec *node_slot(struct gw *g, const char *id)
{
    for (int i = 0; i < g->nnodes; i++)
        if (!strcmp(g->nodes[i].id, id))
            return &g->nodes[i];
    if (!g->nodes && !(g->nodes = calloc(NODES_MAX, sizeof(*g->nodes))))
        return NULL;
    if (g->nnodes < NODES_MAX) {
        struct node_rec *n = &g->nodes[g->nnodes++];
        memset(n, 0, sizeof(*n));
        snprintf(n->id, sizeof(n->id), "%s", id);
        return n;
    }
    /* full: the disconnected node silent for the longest goes; only when every node is connected, the
       one silent for the longest (a node with a long declared interval is not dropped for a dead one) */
    int64_t now = (int64_t)pt_clock_wall_ms();
    int oldest = -1, oldest_any = 0;
    for (int i = 0; i < g->nnodes; i++) {
        if (g->nodes[i].last_ms < g->nodes[oldest_any].last_ms)
            oldest_any = i;
        if (node_disconnected(&g->nodes[i], now) &&
            (oldest < 0 || g->nodes[i].last_ms < g->nodes[oldest].last_ms))
            oldest = i;
    }
    if (oldest < 0)
        oldest = oldest_any;
    struct node_rec *n = &g->nodes[oldest];
    free(n->config_error);
    memset(n, 0, sizeof(*n));
    snprintf(n->id, sizeof(n->id), "%s", id);
    return n;
}

static void serve_heartbeat(struct mreq *m, struct gw *g)
{
    if (evbuffer_get_length(evhttp_request_get_input_buffer(m->r)) > HEARTBEAT_BODY_MAX) {
        sync_error(m->r, 413, "PayloadTooLarge", "a heartbeat is at most 8 MiB");
        return;
    }
    json_t *b = pt_mgmt_req_body(m, false);
    if (!b)
        return; /* answered */
    bool bad = false;
    const char *node = json_is_object(b) ? str_field(b, "nodeId", 256, &bad) : NULL;
    const char *version = json_is_object(b) ? str_field(b, "version", 64, &bad) : NULL;
    const char *host = json_is_object(b) ? str_field(b, "hostname", 256, &bad) : NULL;
    const char *cerr = json_is_object(b) ? str_field(b, "configError", 4096, &bad) : NULL;
    json_t *gen = json_object_get(b, "generation");
    json_t *listen = json_object_get(b, "listen");
    json_t *hb = json_object_get(b, "heartbeat");
    json_t *analytics = json_object_get(b, "analytics");
    if (!json_is_object(b) || bad || !node || !*node ||
        (gen && (!json_is_integer(gen) || json_integer_value(gen) < 0)) ||
        (listen && (!json_is_array(listen) || json_array_size(listen) > 64)) ||
        (hb && (!json_is_integer(hb) || json_integer_value(hb) < 1 || json_integer_value(hb) > 3600))) {
        json_decref(b);
        sync_error(
            m->r, 400, "InvalidRequestBody",
            "expected {\"nodeId\" (1-256 characters), \"version\" (at most 64), \"generation\" (an "
            "integer >= 0), \"hostname\", \"listen\" (a list), \"configError\" (null or at most 4096), "
            "\"analytics\"}");
        return;
    }
    struct node_rec *n = node_slot(g, node);
    if (n) {
        int64_t now = (int64_t)pt_clock_wall_ms();
        if (hb)
            n->interval_ms = json_integer_value(hb) * 1000;
        else if (n->last_ms && now > n->last_ms)
            n->interval_ms = PT_MIN(now - n->last_ms, (int64_t)HEARTBEAT_MEASURED_MAX * 1000);
        n->last_ms = now;
        n->generation = gen ? json_integer_value(gen) : 0;
        snprintf(n->version, sizeof(n->version), "%s", version ? version : "");
        snprintf(n->hostname, sizeof(n->hostname), "%s", host ? host : "");
        free(n->config_error);
        n->config_error = cerr ? strdup(cerr) : NULL;
        char *peer = NULL;
        ev_uint16_t port = 0;
        struct evhttp_connection *c = evhttp_request_get_connection(m->r);
        if (c)
            evhttp_connection_get_peer(c, &peer, &port);
        snprintf(n->address, sizeof(n->address), "%s", peer ? peer : "");
    }
    /* the node is alive whatever becomes of its figures: recorded above, before they are judged */
    if (analytics && !json_is_null(analytics)) {
        char err[512] = "";
        if (!pt_analytics_shipment_ingest(pt_mgmt_req_store, analytics, g->id, err, sizeof(err))) {
            json_decref(b);
            /* "store: ..." is ours (the node sends the batch again); anything else is the batch's fault */
            bool ours = !strncmp(err, "store:", 6);
            if (ours)
                evhttp_add_header(evhttp_request_get_output_headers(m->r), "Retry-After", "5");
            sync_error(m->r, ours ? 503 : 400, ours ? "StoreError" : "InvalidAnalytics",
                       err[0] ? err : "the analytics batch is not valid");
            return;
        }
    }
    json_decref(b);
    char why[256];
    if (!gw_doc(g, why, sizeof(why))) {
        pt_err("gateway '%s': its document cannot be built: %s", g->id, why);
        sync_error(m->r, 500, "DocumentError", why);
        return;
    }
    sync_send(m->r, 200, json_pack("{s:I}", "generation", (json_int_t)g->generation));
}

/* Is the management listener bound to a loopback address only (127/8, ::1, ::ffff:127/104)? */
static bool listen_loopback(const struct sockaddr_storage *sa)
{
    if (sa->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->ss_family != AF_INET6)
        return false;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

/* A node's document carries the service's secrets and the keys of the certificates it uses: over plain HTTP
   off loopback it travels in clear.  Told once per process, at the first sync request a valid token makes. */
static void warn_plain_http(void)
{
    static bool told;
    const struct pt_conf *f = pt_mgmt_req_hooks->file();
    if (told || !f)
        return;
    told = true;
    if (!f->mgmt.tls.ncerts && !listen_loopback(&f->mgmt.sa))
        pt_warn(
            "gateways: nodes sync over plain HTTP on %s, not loopback: every node's document (secret named "
            "values, backends' credentials, subscription keys, certificates' private keys) travels in clear; "
            "give management.listen a "
            "certificate (HTTPS) or put a TLS proxy in front",
            f->mgmt.listen ? f->mgmt.listen : "?");
}

void pt_mgmt_gateways_sync(struct mreq *m)
{
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(m->r), "Authorization");
    char why[256];
    enum verdict v = check_token(auth, m->id, why, sizeof(why));
    if (v != V_OK) {
        refuse(m->r, m->id, v, why);
        return;
    }
    warn_plain_http();
    struct gw *g = gw_find(m->id, true);
    if (!g) {
        sync_error(m->r, 503, "OutOfMemory", "try again");
        return;
    }
    if (!strcmp(m->route->kind, "configuration"))
        serve_configuration(m, g);
    else
        serve_heartbeat(m, g);
}

/* -------------------------------------------------------- the REST routes */

static const char *const managed_description =
    "The control plane's own listener: serves every API (built in, read-only)";

static json_t *managed_view(void)
{
    return json_pack("{s:s,s:s,s:{s:s},s:b}", "id", "managed", "description", managed_description,
                     "locationData", "name", "managed", "builtIn", 1);
}

static bool collect_gateway(void *arg, const struct pt_entity *e)
{
    json_array_append_new(arg, pt_mgmt_entities_view("gateway", e->id, e->body));
    return true;
}

static bool collect_api(void *arg, const struct pt_entity *e)
{
    json_array_append_new(arg, pt_mgmt_entities_view("api", e->id, e->body));
    return true;
}

struct assigned {
    json_t *items;
};

static bool collect_assigned(void *arg, const char *a, const char *b)
{
    (void)a;
    json_t *body = NULL;
    if (pt_store_get(pt_mgmt_req_store, "api", "", b, &body, NULL))
        json_array_append_new(arg, pt_mgmt_entities_view("api", b, body));
    json_decref(body);
    return true;
}

/* Does the gateway of the path exist (or is it `managed`)?  false after answering 404. */
static bool gateway_exists(struct mreq *m)
{
    if (!strcmp(m->id, "managed") || pt_store_get(pt_mgmt_req_store, "gateway", "", m->id, NULL, NULL))
        return true;
    pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "gateway '%s' not found", m->id);
    return false;
}

static bool refuse_managed(struct mreq *m)
{
    if (strcmp(m->id, "managed"))
        return false;
    pt_mgmt_req_send_error(m, 400, "BuiltInGateway",
                           "'managed' is the built-in gateway (the control plane's own listener): it serves "
                           "every API and cannot be changed");
    return true;
}

static bool refuse_file_owned(struct mreq *m)
{
    char src[16];
    if (!pt_store_info(pt_mgmt_req_store, "gateway", "", m->id, src, NULL) || strcmp(src, "config"))
        return false;
    pt_mgmt_req_send_error(m, 409, "Conflict",
                           "gateway '%s' is declared in the configuration file %s; change it there", m->id,
                           pt_mgmt_req_hooks->file()->file);
    return true;
}

static bool assign_api(struct mreq *m, void *arg, struct pt_errors *errs)
{
    (void)errs;
    return pt_store_link(pt_mgmt_req_store, "gateway-api", m->id, arg, "api");
}

static bool unassign_api(struct mreq *m, void *arg, struct pt_errors *errs)
{
    (void)errs;
    return pt_store_unlink(pt_mgmt_req_store, "gateway-api", m->id, arg);
}

static void serve_api_link(struct mreq *m)
{
    const char *api = m->sub;
    json_t *body = NULL;
    bool exists = pt_store_get(pt_mgmt_req_store, "api", "", api, &body, NULL);
    bool managed = !strcmp(m->id, "managed");
    bool linked = managed ? exists : pt_store_linked(pt_mgmt_req_store, "gateway-api", m->id, api);
    if (m->method == EVHTTP_REQ_GET) {
        if (!exists || !linked)
            pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "API '%s' is not served by gateway '%s'", api,
                                   m->id);
        else
            pt_mgmt_req_send_json(m, 200, pt_mgmt_entities_view("api", api, body), NULL);
        json_decref(body);
        return;
    }
    if (refuse_managed(m) || refuse_file_owned(m)) {
        json_decref(body);
        return;
    }
    if (!exists) {
        pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "api '%s' not found", api);
        return;
    }
    if (m->method == EVHTTP_REQ_PUT) {
        if (linked || pt_mgmt_entities_change(m, assign_api, (void *)api, 400, NULL))
            pt_mgmt_req_send_json(m, linked ? 200 : 201, pt_mgmt_entities_view("api", api, body), NULL);
    } else if (!linked || pt_mgmt_entities_change(m, unassign_api, (void *)api, 400, NULL))
        pt_mgmt_req_send_json(m, 204, NULL, NULL);
    json_decref(body);
}

/* "primary" or "secondary" from a body's keyType; NULL after answering 400. */
static const char *key_type(struct mreq *m, json_t *b)
{
    const char *k = json_string_value(json_object_get(b, "keyType"));
    if (k && (!strcmp(k, "primary") || !strcmp(k, "secondary")))
        return k;
    pt_mgmt_req_send_error(m, 400, "ValidationError", "keyType: expected \"primary\" or \"secondary\"");
    return NULL;
}

static void serve_generate_token(struct mreq *m)
{
    json_t *b = pt_mgmt_req_body(m, false);
    if (!b)
        return;
    const char *kt = json_is_object(b) ? key_type(m, b) : NULL;
    if (!json_is_object(b) && !kt)
        pt_mgmt_req_send_error(m, 400, "InvalidRequestBody", "expected {\"keyType\", \"expiry\"}");
    if (!kt) {
        json_decref(b);
        return;
    }
    const char *exp = json_string_value(json_object_get(b, "expiry"));
    int64_t ms = 0;
    int64_t now = (int64_t)time(NULL);
    if (!exp || !pt_mgmt_reports_datetime(exp, &ms)) {
        pt_mgmt_req_send_error(m, 400, "ValidationError",
                               "expiry: an ISO 8601 date-time (2027-01-05T00:00:00Z)");
        json_decref(b);
        return;
    }
    /* the token names a minute: rounded down first, so what is checked is what the token will say
       (an expiry within the current minute would give a token expired when made) */
    int64_t at = ms / 1000;
    at -= ((at % 60) + 60) % 60;
    if (at <= now || at - now > TOKEN_AHEAD_MAX) {
        pt_mgmt_req_send_error(m, 400, "ValidationError",
                               "expiry: must be a later minute than the current one (seconds are dropped: a "
                               "token expires on the minute) and at most 30 days ahead");
        json_decref(b);
        return;
    }
    char *p = NULL, *s = NULL;
    char tok[PT_GWTOKEN_MAX];
    bool primary = !strcmp(kt, "primary"); /* kt lives in the body, freed below */
    bool ok = gw_keys(m->id, &p, &s) && pt_gwtoken_make(m->id, primary ? p : s, at, tok);
    free(p);
    free(s);
    json_decref(b);
    if (!ok) {
        pt_mgmt_req_send_error(m, 500, "StoreError", "the gateway's keys cannot be read");
        return;
    }
    char stamp[13] = "";
    pt_gwtoken_stamp(at, stamp);
    pt_info("gateway '%s': a %s-key token expiring %.4s-%.2s-%.2sT%.2s:%.2sZ made by %s", m->id,
            primary ? "primary" : "secondary", stamp, stamp + 4, stamp + 6, stamp + 8, stamp + 10,
            m->who[0] ? m->who : "?");
    pt_mgmt_req_send_json(m, 200, json_pack("{s:s}", "value", tok), NULL);
}

static void serve_list_keys(struct mreq *m)
{
    char *p = NULL, *s = NULL;
    if (!gw_keys(m->id, &p, &s) || !p || !s) {
        pt_mgmt_req_send_error(m, 500, "StoreError", "the gateway's keys cannot be read");
    } else {
        pt_info("gateway '%s': keys listed by %s", m->id, m->who[0] ? m->who : "?");
        pt_mgmt_req_send_json(m, 200, json_pack("{s:s,s:s}", "primary", p, "secondary", s), NULL);
    }
    free(p);
    free(s);
}

static void serve_regenerate_key(struct mreq *m)
{
    json_t *b = pt_mgmt_req_body(m, false);
    if (!b)
        return;
    const char *given = json_is_object(b) ? key_type(m, b) : NULL;
    if (!json_is_object(b) && !given)
        pt_mgmt_req_send_error(m, 400, "InvalidRequestBody", "expected {\"keyType\"}");
    if (!given) {
        json_decref(b);
        return;
    }
    const char *kt = !strcmp(given, "primary") ? "primary" : "secondary"; /* outlives the body */
    json_t *cur = NULL;
    char src[16] = "api", ws[128] = "";
    pt_store_info(pt_mgmt_req_store, "gateway", "", m->id, src, ws);
    bool ok = pt_store_get(pt_mgmt_req_store, "gateway", "", m->id, &cur, NULL);
    char k1[33], k2[33], fresh[65];
    pt_model_new_key(k1);
    pt_model_new_key(k2);
    snprintf(fresh, sizeof(fresh), "%s%s", k1, k2);
    if (ok) {
        json_object_set_new(cur, !strcmp(kt, "primary") ? "primaryKey" : "secondaryKey", json_string(fresh));
        bool began = ok = pt_store_begin(pt_mgmt_req_store);
        ok = ok && pt_store_put(pt_mgmt_req_store, "gateway", "", m->id, ws, cur, src, NULL);
        if (ok)
            ok = pt_store_commit(pt_mgmt_req_store);
        else if (began) /* a begin that failed opened nothing to roll back (and must not end an outer one) */
            pt_store_rollback(pt_mgmt_req_store);
    }
    json_decref(cur);
    json_decref(b);
    if (!ok) {
        pt_mgmt_req_send_error(m, 500, "StoreError", "the key cannot be saved: %s",
                               pt_store_error(pt_mgmt_req_store));
        return;
    }
    /* tokens of the old key stop at once: waiting nodes with one are answered 401 now */
    struct gw *g = gw_find(m->id, false);
    if (g && g->waiters)
        wake_gateway(g);
    pt_info("gateway '%s': %s key regenerated by %s", m->id, kt, m->who[0] ? m->who : "?");
    pt_mgmt_req_send_json(m, 204, NULL, NULL);
}

static void serve_nodes(struct mreq *m)
{
    json_t *items = json_array();
    struct gw *g = gw_find(m->id, false);
    int64_t now = (int64_t)pt_clock_wall_ms();
    for (int i = 0; g && i < g->nnodes; i++) {
        const struct node_rec *n = &g->nodes[i];
        char ts[48];
        pt_log_format_time(ts, (uint64_t)n->last_ms);
        json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:s}", "id", n->id, "address", n->address,
                              "version", n->version, "generation", (json_int_t)n->generation, "lastHeartbeat",
                              ts, "status", node_disconnected(n, now) ? "disconnected" : "connected",
                              "hostname", n->hostname, "configError", "");
        json_object_set_new(o, "configError", n->config_error ? json_string(n->config_error) : json_null());
        json_array_append_new(items, o);
    }
    pt_mgmt_filter_send_page(m, items); /* $top (default 100), $skip, $filter like the other lists */
}

void pt_mgmt_gateways_serve(struct mreq *m)
{
    const char *what = m->route->kind;
    /* every write (generateToken and listKeys too: keys) is the administrators': decided before
       anything about the gateway is told */
    if (m->method != EVHTTP_REQ_GET && !pt_mgmt_auth_authorize(m, true))
        return;
    if (!strcmp(what, "list")) {
        json_t *items = json_array();
        json_array_append_new(items, managed_view());
        pt_store_each(pt_mgmt_req_store, "gateway", "", collect_gateway, items);
        pt_mgmt_filter_send_page(m, items);
        return;
    }
    if (!strcmp(what, "entity")) {
        if (!strcmp(m->id, "managed")) {
            if (m->method == EVHTTP_REQ_GET)
                pt_mgmt_req_send_json(m, 200, managed_view(), "builtin");
            else
                refuse_managed(m);
            return;
        }
        if (m->method != EVHTTP_REQ_GET && !pt_gwtoken_id_ok(pt_str_c(m->id))) {
            pt_mgmt_req_send_error(
                m, 400, "InvalidId",
                "'%s' is not a valid gateway id (1 to 80 letters, digits, '-', '_', '.'; not only dots)",
                m->id);
            return;
        }
        pt_mgmt_entities_entity(m, "gateway", "", m->id);
        return;
    }
    if (!gateway_exists(m))
        return;
    if (!strcmp(what, "api")) {
        serve_api_link(m);
        return;
    }
    if (!strcmp(what, "apis")) {
        json_t *items = json_array();
        if (!strcmp(m->id, "managed"))
            pt_store_each(pt_mgmt_req_store, "api", "", collect_api, items);
        else
            pt_store_links(pt_mgmt_req_store, "gateway-api", m->id, collect_assigned, items);
        pt_mgmt_filter_send_page(m, items);
        return;
    }
    if (!strcmp(what, "nodes")) {
        serve_nodes(m);
        return;
    }
    /* generateToken, listKeys, regenerateKey (authorized above) */
    if (refuse_managed(m))
        return;
    if (!strcmp(what, "generateToken"))
        serve_generate_token(m);
    else if (!strcmp(what, "listKeys"))
        serve_list_keys(m);
    else
        serve_regenerate_key(m);
}
