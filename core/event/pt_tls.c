/*
 * pt_tls -- server contexts with SNI, client contexts with verification.
 */
#include "event/pt_tls.h"

#include "base/pt_log.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

struct cert_entry {
    SSL_CTX *ctx;
    char **names;
    int nnames;
};

struct pt_tls_server {
    struct cert_entry *e;
    int n;
    /* ALPN: what the listener serves, in wire format ("\x02h2\x08http/1.1"), our preference first */
    unsigned char alpn[16];
    unsigned alpn_len;
};

static const char *ssl_errstr(void)
{
    static __thread char buf[256];
    unsigned long e = ERR_get_error();
    if (!e)
        return "unknown error";
    ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    return buf;
}

bool pt_tls_name_match(const char *pat, const char *host)
{
    if (!strcasecmp(pat, host))
        return true;
    if (pat[0] == '*' && pat[1] == '.') {
        const char *dot = strchr(host, '.');
        return dot && dot != host && !strcasecmp(pat + 1, dot);
    }
    return false;
}

static int on_servername(SSL *ssl, int *ad, void *arg)
{
    struct pt_tls_server *s = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name)
        return SSL_TLSEXT_ERR_OK;
    for (int i = 0; i < s->n; i++)
        for (int k = 0; k < s->e[i].nnames; k++)
            if (pt_tls_name_match(s->e[i].names[k], name)) {
                if (i)
                    SSL_set_SSL_CTX(ssl, s->e[i].ctx);
                return SSL_TLSEXT_ERR_OK;
            }
    return SSL_TLSEXT_ERR_OK; /* unknown name: the first certificate answers */
}

/* ALPN: the first of our protocols the client offers; none in common goes on without ALPN (HTTP/1.1, which
   an h2-only listener then refuses) rather than failing the handshake. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned inlen, void *arg)
{
    struct pt_tls_server *s = arg;
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, s->alpn, s->alpn_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static void alpn_list(struct pt_tls_server *s, const struct pt_listen_cf *l)
{
    static const unsigned char h2[] = "\x02h2", h1[] = "\x08http/1.1";
    if (l->h2) {
        memcpy(s->alpn + s->alpn_len, h2, sizeof(h2) - 1);
        s->alpn_len += sizeof(h2) - 1;
    }
    if (l->http1) {
        memcpy(s->alpn + s->alpn_len, h1, sizeof(h1) - 1);
        s->alpn_len += sizeof(h1) - 1;
    }
}

static void collect_names(struct cert_entry *ce, X509 *x)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int cap = 0;
    if (sans) {
        for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
            GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
            if (g->type != GEN_DNS)
                continue;
            const unsigned char *d = ASN1_STRING_get0_data(g->d.dNSName);
            int len = ASN1_STRING_length(g->d.dNSName);
            if (ce->nnames == cap) {
                cap = cap ? cap * 2 : 4;
                ce->names = realloc(ce->names, sizeof(char *) * (size_t)cap);
            }
            ce->names[ce->nnames++] = strndup((const char *)d, (size_t)len);
        }
        GENERAL_NAMES_free(sans);
    }
    if (ce->nnames == 0) {
        char cn[256];
        if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn)) > 0) {
            ce->names = malloc(sizeof(char *));
            ce->names[ce->nnames++] = strdup(cn);
        }
    }
}

/*
 * The default suites for TLS 1.2: forward secrecy (ECDHE) and AEAD ciphers
 * only -- no static-RSA key exchange, no CBC, no SHA-1 MACs.  TLS 1.3 keeps
 * OpenSSL's own list (all of its suites are both).  Older versions are
 * never offered.
 */
#define DEFAULT_CIPHERS                                                                                      \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"               \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

bool pt_tls_apply_opts(SSL_CTX *ctx, const struct pt_tls_cf *t, struct pt_errors *errs)
{
    SSL_CTX_set_min_proto_version(ctx, t && t->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    const char *ciphers = t && t->ciphers ? t->ciphers : DEFAULT_CIPHERS;
    if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
        pt_node_error(errs, t ? t->node : NULL, "tls: ciphers '%s': no cipher OpenSSL knows", ciphers);
        ERR_clear_error();
        return false;
    }
    if (t && t->ciphersuites && SSL_CTX_set_ciphersuites(ctx, t->ciphersuites) != 1) {
        pt_node_error(errs, t->node, "tls: ciphersuites '%s': no TLS 1.3 suite OpenSSL knows",
                      t->ciphersuites);
        ERR_clear_error();
        return false;
    }
    return true;
}

static SSL_CTX *server_ctx(const struct pt_tls_cf *t, struct pt_errors *errs)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return NULL;
    if (!pt_tls_apply_opts(ctx, t, errs)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx,
                        SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    return ctx;
}

/* Client certificates are asked for, and checked against clientCa, but a
   certificate that does not verify still completes the handshake: the
   validate-client-certificate policy decides, with the verify result. */
static int accept_any_cert(int preverify_ok, X509_STORE_CTX *x)
{
    (void)preverify_ok;
    (void)x;
    return 1;
}

static bool ask_client_cert(SSL_CTX *ctx, const struct pt_listen_cf *l, struct pt_errors *errs)
{
    if (l->client_ca) {
        if (SSL_CTX_load_verify_locations(ctx, l->client_ca, NULL) != 1) {
            pt_node_error(errs, l->node, "cannot load clientCa '%s': %s", l->client_ca, ssl_errstr());
            return false;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(l->client_ca);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
    }
    if (l->client_cert == 3 && !l->client_ca) {
        pt_node_error(errs, l->node,
                      "clientCertificate: verified needs clientCa (the CAs that sign client certificates)");
        return false;
    }
    /* verified: the handshake itself refuses a missing, expired or untrusted certificate */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (l->client_cert >= 2 ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                       l->client_cert == 3 ? NULL : accept_any_cert);
    /* sessions would skip the certificate on resumption: keep it simple */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    return true;
}

struct pt_tls_server *pt_tls_server_new(const struct pt_listen_cf *l, struct pt_errors *errs)
{
    struct pt_tls_server *s = calloc(1, sizeof(*s));
    s->e = calloc((size_t)l->ncerts, sizeof(*s->e));
    s->n = l->ncerts;
    bool ok = true;
    for (int i = 0; i < l->ncerts; i++) {
        const struct pt_cert_cf *c = &l->certs[i];
        SSL_CTX *ctx = server_ctx(&l->tls, errs);
        s->e[i].ctx = ctx;
        if (!ctx) {
            pt_node_error(errs, c->node, "cannot create a TLS context: %s", ssl_errstr());
            ok = false;
            continue;
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, c->certificate) != 1) {
            pt_node_error(errs, c->node, "cannot load certificate '%s': %s", c->certificate, ssl_errstr());
            ok = false;
            continue;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1) {
            pt_node_error(errs, c->node, "cannot load key '%s': %s", c->key, ssl_errstr());
            ok = false;
            continue;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            pt_node_error(errs, c->node, "key '%s' does not match certificate '%s'", c->key, c->certificate);
            ok = false;
            continue;
        }
        collect_names(&s->e[i], SSL_CTX_get0_certificate(ctx));
    }
    if (!ok) {
        pt_tls_server_free(s);
        return NULL;
    }
    alpn_list(s, l);
    for (int i = 0; i < s->n; i++) {
        SSL_CTX_set_tlsext_servername_callback(s->e[i].ctx, on_servername);
        SSL_CTX_set_tlsext_servername_arg(s->e[i].ctx, s);
        if (s->alpn_len)
            SSL_CTX_set_alpn_select_cb(s->e[i].ctx, on_alpn, s);
        if (l->client_cert && !ask_client_cert(s->e[i].ctx, l, errs)) {
            pt_tls_server_free(s);
            return NULL;
        }
    }
    return s;
}

void pt_tls_server_free(struct pt_tls_server *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++) {
        if (s->e[i].ctx)
            SSL_CTX_free(s->e[i].ctx);
        for (int k = 0; k < s->e[i].nnames; k++)
            free(s->e[i].names[k]);
        free(s->e[i].names);
    }
    free(s->e);
    free(s);
}

SSL *pt_tls_server_ssl(struct pt_tls_server *s)
{
    return SSL_new(s->e[0].ctx);
}

SSL_CTX *pt_tls_client_ctx(const char *ca_file, bool verify, const struct pt_tls_cf *opts,
                           struct pt_errors *errs)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        pt_node_errors_add(errs, "cannot create a TLS client context: %s", ssl_errstr());
        return NULL;
    }
    if (!pt_tls_apply_opts(ctx, opts, errs)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
            pt_node_errors_add(errs, "cannot load CA file '%s': %s", ca_file, ssl_errstr());
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        pt_node_errors_add(errs, "cannot load the system CA store: %s", ssl_errstr());
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    return ctx;
}

SSL *pt_tls_client_ssl(SSL_CTX *ctx, const char *host, bool verify)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    unsigned char tmp[16];
    bool is_ip = inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
    if (!is_ip)
        SSL_set_tlsext_host_name(ssl, host);
    if (verify) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (is_ip)
            X509_VERIFY_PARAM_set1_ip_asc(vp, host);
        else
            X509_VERIFY_PARAM_set1_host(vp, host, 0);
    }
    return ssl;
}
