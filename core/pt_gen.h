/*
 * pt_gen -- configuration generations.
 *
 * A generation is everything a worker needs to serve requests, built from
 * one validated configuration: the router, each API's resolved backend,
 * TLS contexts.  It is immutable and reference-counted.  The control thread
 * builds a new one off the hot path, and only when the whole build succeeds
 * hands it to the workers (pt_worker_publish); a request keeps the
 * generation it started with until it ends.
 */
#ifndef PT_GEN_H
#define PT_GEN_H

#include "pt.h"
#include "pt_conf.h"
#include "pt_policy.h"
#include "pt_url.h"

#include <stdatomic.h>
#include <sys/socket.h>

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

struct pt_operation {
    const struct pt_operation_cf *cf;
    struct pt_apidef *api;
    struct pt_pipeline pipeline; /* the effective policies (no product) */
};

struct pt_apidef {
    const struct pt_api_cf *cf;
    struct pt_backend *backend; /* NULL when the API has no serviceUrl */
    struct pt_operation *ops;
    int nops;
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
    struct pt_registry *reg;        /* policies known to this generation */
    struct pt_expr_table *exprs;    /* its expressions */
    struct pt_polctx *pc;           /* compiled statements, freed with the generation */
};

/*
 * Checks the policy documents of a configuration file whose other parts
 * have errors (so that every error is reported at once).  Reads the file's
 * raw tree again; adds errors to errs.
 */
void pt_gen_check_policies(const char *path, struct pt_errors *errs);

/* Builds a generation; takes ownership of conf on success. NULL + errs on failure. */
struct pt_gen *pt_gen_build(struct pt_conf *conf, struct pt_errors *errs);
void pt_gen_ref(struct pt_gen *g);
void pt_gen_unref(struct pt_gen *g);

#endif
