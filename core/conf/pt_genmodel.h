/*
 * pt_genmodel -- the data of a configuration generation: APIs with their
 * resolved backends and operations, products, users, subscriptions and the
 * key table, and struct pt_gen that holds them.  Built by policy/pt_gen.c
 * (which compiles the pipelines the operations point to); read by every
 * layer that serves a request, the Lua `context` among them.
 */
#ifndef PT_GENMODEL_H
#define PT_GENMODEL_H

#include "base/pt.h"
#include "base/pt_url.h"
#include "conf/pt_conf.h"

struct pt_logsink; /* http/pt_logsink.h */

#include <stdatomic.h>
#include <sys/socket.h>

struct pt_expr_table;
struct pt_pipeline;
struct pt_polctx;
struct pt_registry;
struct pt_router;
struct pt_tls_server;
typedef struct ssl_ctx_st SSL_CTX;

struct pt_backdef;

/* A resolved target: where forward-request connects.  An API's serviceUrl, a Single backend entity
   (def points back to it), or a base-url of set-backend-service (def NULL). */
struct pt_backend {
    struct pt_url url;
    struct sockaddr_storage sa;
    socklen_t salen;
    char *pool_key; /* connections are pooled per key: scheme, address, TLS name (+ the entity's TLS
                       settings when it has its own context) */
    uint64_t pool_hash;
    const struct pt_backdef *def; /* the Backend entity this is the target of; NULL: none */
};

/* ------------------------------------------------- backend entities (13) */

struct pt_bestate; /* node-wide state of a backend (breaker windows, trip-until, health, a pool's
                      round-robin position): filled by the breaker, kept across reloads */

enum { PT_BE_SINGLE = 0, PT_BE_POOL = 1 };

/* A failure condition's status range: min..max inclusive, 100 <= min <= max <= 599. */
struct pt_cbrange {
    int min, max;
};

/* A compiled circuit-breaker rule (backends[].circuitBreaker.rules[]).  A call is a failure when its
   status is in one of the ranges or its error reason (lastError.reason words: Timeout,
   BackendConnectionFailure, ...) is one of reasons; exactly one of count and percentage is set. */
struct pt_cbrule {
    const char *name;
    int64_t count;           /* failures within interval that trip; 0: percentage is used */
    int percentage;          /* 1..100: failures per call within interval that trip; 0: count is used */
    uint32_t interval_ms;    /* the window (ISO 8601 duration in the file) */
    uint32_t trip_ms;        /* tripDuration */
    bool accept_retry_after; /* a backend's Retry-After (seconds or HTTP date) is the trip's length */
    const struct pt_cbrange *ranges;
    int nranges;
    const char *const *reasons;
    int nreasons;
};

/* A pool's member: always a Single backend (pools do not nest). */
struct pt_bemember {
    struct pt_backdef *be;
    int weight;   /* >= 1 */
    int priority; /* >= 0; lower is better */
};

/* A credential header or query parameter: its name and values, named values already substituted. */
struct pt_becred {
    const char *name;
    const char *const *values;
    int nvalues;
};

/* Active health checks (our addition); on = false when the backend has no healthCheck. */
struct pt_behealth {
    bool on;
    const char *path;        /* appended to the backend's url path; "/" by default */
    uint32_t interval_ms;    /* between two probes */
    uint32_t timeout_ms;     /* one probe */
    int healthy_threshold;   /* consecutive successes that mark a down backend up */
    int unhealthy_threshold; /* consecutive failures that mark an up backend down */
};

/* A backend entity as the generation runs it.  g->backends is sorted by id (pt_gen_find_backend). */
struct pt_backdef {
    const struct pt_backend_cf *cf;
    const char *id;
    int index;                   /* in g->backends */
    int type;                    /* PT_BE_SINGLE | PT_BE_POOL */
    struct pt_backend *target;   /* Single: its resolved url (target->def == this); Pool: NULL */
    struct pt_bemember *members; /* Pool: its members, sorted by priority (stable); Single: NULL */
    int nmembers;
    struct pt_cbrule *rules; /* circuitBreaker.rules */
    int nrules;
    struct pt_becred *headers; /* credentials.header: set on every forwarded request (replacing) */
    int nheaders;
    struct pt_becred *query; /* credentials.query: added to the backend's query string */
    int nquery;
    const char *auth_scheme, *auth_param; /* credentials.authorization; NULL scheme: none */
    const char *head_text;          /* the credential headers and Authorization as head lines ("N: v\r\n") */
    const char *query_text;         /* credentials.query percent-encoded ("a=1&b=2"); NULL: none */
    bool client_cert;               /* credentials.certificate: presented through tls */
    bool verify_chain, verify_name; /* tls (and upstream.verify): both true by default */
    SSL_CTX *tls; /* this backend's own client context (a certificate or no chain check); NULL: the
                     generation's client_tls */
    struct pt_behealth health;
    struct pt_bestate *state; /* event/pt_breaker's; NULL until filled */
};

struct pt_product;

/* The pipeline of an operation in one product's context. */
struct pt_prodpipe {
    const struct pt_product *product;
    struct pt_pipeline *pipeline;
};

/* A definition handed to plugins as compact JSON text (SDK 1.5): the text lives, at one address, as
   long as the generation. */
struct pt_deftext {
    const char *id;
    pt_str json;
};

/* A response body mock-response can answer with when the definition gives a schema but no example. */
struct pt_sample {
    int status; /* 0: the `default` response */
    const char *content_type;
    pt_str body;
};

struct pt_optext;

struct pt_operation {
    const struct pt_operation_cf *cf;
    struct pt_sample *samples; /* generated from the response schemas, per generation */
    int nsamples;
    /* {"api", "apiType", "id", "method", "urlTemplate", "templateParameters", "request", "responses"}:
       made at its first read (pt_gen_op_definition), by whichever worker asks first, freed with the
       generation -- most operations are never asked, and a build of 50,000 paid for every one */
    _Atomic(struct pt_optext *) def;
    struct pt_apidef *api;
    struct pt_pipeline *pipeline; /* the effective policies without a product */
    struct pt_prodpipe *prod;     /* ... and in each product that holds the API */
    int nprod;
};

struct pt_apidef {
    const struct pt_api_cf *cf;
    struct pt_backend *backend; /* NULL when the API has no serviceUrl (or its backendId is a pool) */
    struct pt_backdef *bdef;    /* backendId's backend (it wins over serviceUrl); NULL: none */
    struct pt_operation *ops;
    int nops;
    const struct pt_product *open_product; /* a published product without subscriptions holding it */
    const struct pt_versionset_cf *vset;
    int ridx;                  /* the router's index of this API */
    struct pt_apidef **vgroup; /* the Query/Header versions at this path (even one); NULL: none */
    int nvgroup;
    struct pt_deftext *schemas; /* the API's schemas: {"id", "contentType", "document" | "value"} */
    int nschemas;
};

struct pt_user;

struct pt_product {
    const struct pt_product_cf *cf;
    int index;
};

struct pt_user {
    const struct pt_user_cf *cf;
};

struct pt_subscription {
    const struct pt_subscription_cf *cf;
    const struct pt_product *product; /* scope /products/x */
    const struct pt_apidef *api;      /* scope /apis/x */
    const struct pt_user *owner;
};

/* Key table entry: both keys of a subscription are in the table. */
struct pt_keyslot {
    const char *key;
    size_t len;
    uint64_t hash;
    const struct pt_subscription *sub;
};

/* A base URL as written in a policy and its resolved target. */
struct pt_urlslot {
    const char *text;
    uint64_t hash;
    struct pt_backend *be;
};

/*
 * A generation.  One built in full (pt_gen_build) owns everything below.  One built for a write of
 * subscriptions alone (pt_gen_with_subs) owns only its conf (a copy sharing the body's), its
 * subscriptions, key table, listener descriptors and logger references; every other member is
 * the body's, copied by value, and stays valid because the generation holds a reference on the
 * body (always a full generation: never a chain).
 */
struct pt_gen {
    atomic_long refs;
    uint64_t serial;
    struct pt_gen *body; /* the full generation shared; NULL: this one is full */
    struct pt_conf *conf;
    struct pt_router *router;
    struct pt_apidef *apis;
    int napis;
    struct pt_tls_server **tls; /* per listener; NULL for plain ones */
    int ntls;
    SSL_CTX *client_tls;
    int *listen_fds; /* [listener * workers + worker], filled by the control thread */
    struct pt_product *products;
    int nproducts;
    struct pt_user *users;
    int nusers;
    struct pt_subscription *subs;
    int nsubs;
    struct pt_keyslot *keys; /* open addressing, nkeys a power of two */
    size_t nkeys;
    struct pt_deftext *schemas; /* service-level schemas: {"id", "schemaType", "document" | "value"} */
    int nschemas;
    struct pt_registry *reg;     /* policies known to this generation */
    struct pt_expr_table *exprs; /* its expressions */
    struct pt_polctx *pc;        /* compiled statements, freed with the generation */
    /* loggers (L): one sink per conf->loggers[i], in that order; NULL until pt_gen_start_loggers
       (a generation that only checks has none) */
    struct pt_logsink **sinks;
    int nsinks;
    /* backend entities (13), sorted by id */
    struct pt_backdef *backends;
    int nbackends;
    /* base URLs written literally in set-backend-service and proxy, resolved when the generation was
       built: request time finds them here (open addressing by hash, nurls a power of two or 0) */
    struct pt_urlslot *urls;
    size_t nurls, nurls_used;
};

#endif
