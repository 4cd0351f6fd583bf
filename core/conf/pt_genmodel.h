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

struct pt_backend {
    struct pt_url url;
    struct sockaddr_storage sa;
    socklen_t salen;
    char *pool_key; /* connections are pooled per key: scheme, address, TLS name */
    uint64_t pool_hash;
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

struct pt_operation {
    const struct pt_operation_cf *cf;
    struct pt_sample *samples; /* generated from the response schemas, per generation */
    int nsamples;
    pt_str def; /* {"api", "apiType", "id", "method", "urlTemplate", "templateParameters", "request",
                   "responses"} */
    struct pt_apidef *api;
    struct pt_pipeline *pipeline; /* the effective policies without a product */
    struct pt_prodpipe *prod;     /* ... and in each product that holds the API */
    int nprod;
};

struct pt_apidef {
    const struct pt_api_cf *cf;
    struct pt_backend *backend; /* NULL when the API has no serviceUrl */
    struct pt_operation *ops;
    int nops;
    const struct pt_product *open_product; /* a published product without subscriptions holding it */
    const struct pt_versionset_cf *vset;
    int ridx;                  /* the router's index of this API */
    struct pt_apidef **vgroup; /* versions sharing one path (Query/Header scheme); NULL otherwise */
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

struct pt_gen {
    atomic_long refs;
    uint64_t serial;
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
};

#endif
