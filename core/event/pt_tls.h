/*
 * pt_tls -- OpenSSL contexts for TLS listeners and https backends.
 *
 * A listener may carry several certificates: the one whose names (subject
 * alternative names, else the common name; "*.example.com" wildcards) match
 * the client's SNI is chosen, the first one otherwise.
 */
#ifndef PT_TLS_H
#define PT_TLS_H

#include "base/pt.h"
#include "conf/pt_conf.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

struct pt_tls_server;

/* Loads every certificate/key pair; errors name the config node. */
struct pt_tls_server *pt_tls_server_new(const struct pt_listen_cf *l, struct pt_errors *errs);
void pt_tls_server_free(struct pt_tls_server *s);
/* A new server-side SSL for one accepted connection. */
SSL *pt_tls_server_ssl(struct pt_tls_server *s);

/* Client context: system CAs or ca_file; verify = check certificate and name. */
SSL_CTX *pt_tls_client_ctx(const char *ca_file, bool verify, const struct pt_tls_cf *opts,
                           struct pt_errors *errs);
/* Versions and suites: opts, or the defaults (TLS 1.2+, forward-secret AEAD) when NULL. */
bool pt_tls_apply_opts(SSL_CTX *ctx, const struct pt_tls_cf *opts, struct pt_errors *errs);
/* A client SSL that sends SNI `host` and, when verifying, checks the name. */
SSL *pt_tls_client_ssl(SSL_CTX *ctx, const char *host, bool verify);

/* Matches a host name against a certificate name ("*.a.b" matches one label). */
bool pt_tls_name_match(const char *pattern, const char *host);

#endif
