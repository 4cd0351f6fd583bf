/*
 * validate_client_certificate.c -- validate-client-certificate: checks the
 * TLS client certificate's trust, dates, revocation and identity.  Trust is
 * the listener's clientCa or the store's CA certificates (`ca: true`);
 * revocation is what the store's certificates' CRLs list.
 */
#include "access.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct pt_attr_def identity_attrs[] = {
    {"thumbprint", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "SHA-1 of the certificate, hex"},
    {"serial-number", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "serial number, hex"},
    {"common-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "the subject's CN"},
    {"subject", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "the whole subject (CN=x, O=y)"},
    {"dns-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "a DNS subjectAltName"},
    {"issuer-subject", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "the issuer's subject"},
    {"issuer-thumbprint", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "the thumbprint of a stored certificate that issued (signed) the client certificate"},
    {"issuer-certificate-id", PT_ATTR_STRING, PT_ATTR_OR, NULL, NULL, NULL, 0, 0,
     "the id of a stored certificate that issued (signed) the client certificate"},
    {0},
};
static const struct pt_attr_def identities_attrs[] = {
    {"identity", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, identity_attrs, 0, 0,
     "every attribute given must match"},
    {0},
};
const struct pt_attr_def validate_client_certificate_attrs[] = {
    {"validate-revocation", PT_ATTR_BOOL, 0, "true", NULL, NULL, 0, 0,
     "refuse a certificate that a CRL of the certificate store (`crl` of a certificate) revokes"},
    {"validate-trust", PT_ATTR_BOOL, 0, "true", NULL, NULL, 0, 0,
     "the certificate chains to the listener's clientCa or to a CA certificate of the store (`ca: true`)"},
    {"validate-not-before", PT_ATTR_BOOL, 0, "true", NULL, NULL, 0, 0, "refuse a certificate not valid yet"},
    {"validate-not-after", PT_ATTR_BOOL, 0, "true", NULL, NULL, 0, 0, "refuse an expired certificate"},
    {"ignore-error", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0,
     "on failure go on (the reason is in the variable clientCertificateError)"},
    {"identities", PT_ATTR_ELEMENT, 0, NULL, NULL, identities_attrs, 0, 0,
     "the certificate must match one of these"},
    {0},
};

struct identity {
    const char *v[6];
    X509 *issuer; /* issuer-thumbprint / issuer-certificate-id: the stored certificate */
};

struct client_cert {
    bool trust, not_before, not_after, ignore, revocation;
    struct identity *ids;
    int nids;
    X509_STORE *cas;  /* the store's CA certificates (NULL: none) */
    struct crl *crls; /* the store's revocation lists, each with the CA that signed it */
    int ncrls;
};

/* A stored revocation list and the certificate it is stored with, which
   signed it (checked when it is saved, and again when it is loaded). */
struct crl {
    X509_CRL *crl;
    X509 *ca;
    const char *id;    /* the stored certificate's id, for the log */
    int expiry_logged; /* an expired list is logged once per generation */
};

static const char *const identity_names[6] = {"thumbprint", "serial-number", "common-name",
                                              "subject",    "dns-name",      "issuer-subject"};

/* The first certificate of a stored certificate's PEM. */
static X509 *first_cert(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    return x;
}

/* The stored certificate an identity's issuer-thumbprint or issuer-certificate-id names; -1 after an
   error, 0 when the identity names none (or the configuration is only checked). */
static int identity_issuer(const struct pt_api *api, pt_compile *c, pt_element *e, struct identity *id)
{
    const char *by_id = api->elem_literal(e, "issuer-certificate-id"),
               *by_tp = api->elem_literal(e, "issuer-thumbprint");
    if (!by_id && !by_tp)
        return 0;
    if (by_id && by_tp) {
        api->compile_error(c, "identities", "give issuer-certificate-id or issuer-thumbprint, not both");
        return -1;
    }
    const struct pt_stored_cert *s = api->cert_find(c, "identities", by_id, by_id ? NULL : by_tp, 0);
    if (!s)
        return -1;
    if (s->pem && !(id->issuer = first_cert(s->pem))) {
        api->compile_error(c, "identities", "certificate '%s' cannot be read", s->id);
        return -1;
    }
    return 1;
}

static int count_blocks(const char *pem)
{
    int n = 0;
    for (const char *p = pem; (p = strstr(p, "-----BEGIN ")) != NULL; p++)
        n++;
    return n;
}

/* s's revocation lists, kept only when s's key signed them: a list of
   another CA with the same name must not revoke s's clients. */
static void load_crls(const struct pt_api *api, pt_compile *c, struct client_cert *x,
                      const struct pt_stored_cert *s)
{
    X509 *ca = first_cert(s->pem);
    int room = count_blocks(s->crl);
    if (!ca || !room) {
        X509_free(ca);
        return;
    }
    struct crl *grown = api->compile_alloc(c, sizeof(*grown) * (size_t)(x->ncrls + room));
    if (x->ncrls)
        memcpy(grown, x->crls, sizeof(*grown) * (size_t)x->ncrls);
    x->crls = grown;
    BIO *b = BIO_new_mem_buf(s->crl, -1);
    X509_CRL *crl;
    while (room-- > 0 && (crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL)) != NULL) {
        if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)) ||
            X509_CRL_verify(crl, X509_get0_pubkey(ca)) != 1) {
            api->log(PT_LOG_LEVEL_WARN, "certificate '%s': a CRL not signed by it is ignored", s->id);
            X509_CRL_free(crl);
            continue;
        }
        X509_up_ref(ca);
        x->crls[x->ncrls++] = (struct crl){crl, ca, s->id, 0};
    }
    BIO_free(b);
    X509_free(ca);
}

/* The store's CA certificates and revocation lists, for trust and revocation. */
static void load_store(const struct pt_api *api, pt_compile *c, struct client_cert *x)
{
    const struct pt_stored_cert *s;
    for (int i = 0; (s = api->cert_find(c, NULL, NULL, NULL, i)) != NULL; i++) {
        if (s->ca && s->pem) {
            X509 *ca = first_cert(s->pem);
            if (ca) {
                if (!x->cas)
                    x->cas = X509_STORE_new();
                X509_STORE_add_cert(x->cas, ca);
                X509_free(ca);
            }
        }
        if (s->crl && s->pem)
            load_crls(api, c, x, s);
    }
    ERR_clear_error();
}

int validate_client_certificate_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct client_cert *x = api->compile_alloc(c, sizeof(*x));
    *instance = x; /* validate_client_certificate_free releases what is loaded, even on failure */
    x->revocation = api->attr_bool(c, "validate-revocation", 1);
    x->trust = api->attr_bool(c, "validate-trust", 1);
    x->not_before = api->attr_bool(c, "validate-not-before", 1);
    x->not_after = api->attr_bool(c, "validate-not-after", 1);
    x->ignore = api->attr_bool(c, "ignore-error", 0);
    pt_element **e, **ids;
    if (api->attr_elements(c, "identities", &e) > 0) {
        int n = api->elem_elements(e[0], "identity", &ids);
        x->ids = api->compile_alloc(c, sizeof(*x->ids) * (size_t)(n ? n : 1));
        for (int i = 0; i < n; i++) {
            bool any = false;
            for (int k = 0; k < 6; k++) {
                x->ids[x->nids].v[k] = api->elem_literal(ids[i], identity_names[k]);
                any |= x->ids[x->nids].v[k] != NULL;
            }
            int is = identity_issuer(api, c, ids[i], &x->ids[x->nids]);
            if (is < 0)
                return -1;
            x->nids++; /* counted now: its issuer is freed with the instance */
            if (!any && !is) {
                api->compile_error(c, "identities", "an identity needs at least one attribute");
                return -1;
            }
        }
    }
    load_store(api, c, x);
    return 0;
}

void validate_client_certificate_free(void *inst)
{
    struct client_cert *x = inst;
    if (!x)
        return;
    for (int i = 0; i < x->nids; i++)
        X509_free(x->ids[i].issuer);
    X509_STORE_free(x->cas);
    for (int i = 0; i < x->ncrls; i++) {
        X509_CRL_free(x->crls[i].crl);
        X509_free(x->crls[i].ca);
    }
}

static bool hex_eq(const char *a, const char *b)
{
    /* case-insensitive, colons and spaces ignored */
    for (;;) {
        while (*a == ':' || *a == ' ')
            a++;
        while (*b == ':' || *b == ' ')
            b++;
        if (!*a || !*b)
            return !*a && !*b;
        char x = (char)(*a >= 'a' && *a <= 'z' ? *a - 32 : *a),
             y = (char)(*b >= 'a' && *b <= 'z' ? *b - 32 : *b);
        if (x != y)
            return false;
        a++;
        b++;
    }
}

static bool identity_matches(const struct identity *id, X509 *x)
{
    char buf[1024];
    /* issued by the stored certificate: its name and its signature */
    if (id->issuer &&
        (X509_check_issued(id->issuer, x) != X509_V_OK || X509_verify(x, X509_get0_pubkey(id->issuer)) != 1))
        return false;
    if (id->v[0]) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        X509_digest(x, EVP_sha1(), md, &n);
        ptl_hex_encode(md, n, buf);
        if (!hex_eq(id->v[0], buf))
            return false;
    }
    if (id->v[1]) {
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(x), NULL);
        char *h = bn ? BN_bn2hex(bn) : NULL;
        bool ok = h && hex_eq(id->v[1], h);
        OPENSSL_free(h);
        BN_free(bn);
        if (!ok)
            return false;
    }
    if (id->v[2]) {
        if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, sizeof(buf)) < 0 ||
            strcmp(buf, id->v[2]))
            return false;
    }
    for (int k = 3; k <= 5; k += 2) { /* subject, issuer-subject */
        if (!id->v[k])
            continue;
        BIO *b = BIO_new(BIO_s_mem());
        X509_NAME_print_ex(b, k == 3 ? X509_get_subject_name(x) : X509_get_issuer_name(x), 0,
                           XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
        char *t;
        long n = BIO_get_mem_data(b, &t);
        snprintf(buf, sizeof(buf), "%.*s", (int)n, t);
        BIO_free(b);
        /* compare as "CN=a, O=b" or "CN=a,O=b", whatever spacing */
        char want[1024], got[1024];
        size_t wi = 0, gi = 0;
        for (const char *p = id->v[k]; *p && wi + 1 < sizeof(want); p++)
            if (*p != ' ')
                want[wi++] = *p;
        for (const char *p = buf; *p && gi + 1 < sizeof(got); p++)
            if (*p != ' ')
                got[gi++] = *p;
        want[wi] = got[gi] = '\0';
        if (strcasecmp(want, got))
            return false;
    }
    if (id->v[4]) {
        bool found = false;
        GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
        for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans) && !found; i++) {
            GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
            if (g->type == GEN_DNS) {
                const char *d = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
                found = d && !strcasecmp(d, id->v[4]);
            }
        }
        GENERAL_NAMES_free(sans);
        if (!found)
            return false;
    }
    return true;
}

static pt_status cert_fail(const struct pt_api *api, pt_call *call, const struct client_cert *x,
                           const char *reason, const char *msg)
{
    if (x->ignore) {
        api->var_set(call, PTL_LIT("clientCertificateError"), (pt_bytes){reason, strlen(reason)});
        return PT_OK;
    }
    return api->fail(call, 401, reason, msg);
}

/* The leaf's own dates are the policy's (validate-not-before/-after); the
   CAs' dates are not, as for the listener's clientCa. */
static int leaf_dates_apart(int ok, X509_STORE_CTX *ctx)
{
    int e = X509_STORE_CTX_get_error(ctx);
    if (!ok && X509_STORE_CTX_get_error_depth(ctx) == 0 &&
        (e == X509_V_ERR_CERT_HAS_EXPIRED || e == X509_V_ERR_CERT_NOT_YET_VALID))
        return 1;
    return ok;
}

/* Whether the store's CA certificates vouch for cert, through the
   intermediates the client sent, as the listener's own verification would:
   for a TLS client, with the CAs' dates checked. */
static bool trusted_by_store(const struct client_cert *x, X509 *cert, STACK_OF(X509) * sent)
{
    if (!x->cas)
        return false;
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    bool ok = ctx && X509_STORE_CTX_init(ctx, x->cas, cert, sent) == 1;
    if (ok) {
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
        X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_PARTIAL_CHAIN);
        X509_STORE_CTX_set_verify_cb(ctx, leaf_dates_apart);
        ok = X509_verify_cert(ctx) == 1;
    }
    X509_STORE_CTX_free(ctx);
    return ok;
}

enum revocation { NOT_REVOKED, REVOKED, CRL_EXPIRED };

/* Whether a CRL of the CA that signed cert lists it.  A list counts only
   for the certificates its CA issued (name and signature).  An expired list
   (nextUpdate past) proves nothing either way: the certificate is refused
   until the list is renewed, and that is logged. */
static enum revocation revoked(const struct pt_api *api, struct client_cert *x, X509 *cert)
{
    for (int i = 0; i < x->ncrls; i++) {
        struct crl *r = &x->crls[i];
        if (X509_check_issued(r->ca, cert) != X509_V_OK || X509_verify(cert, X509_get0_pubkey(r->ca)) != 1)
            continue;
        const ASN1_TIME *next = X509_CRL_get0_nextUpdate(r->crl);
        if (next && X509_cmp_current_time(next) < 0) {
            if (!__atomic_exchange_n(&r->expiry_logged, 1, __ATOMIC_RELAXED))
                api->log(PT_LOG_LEVEL_WARN,
                         "certificate '%s': its CRL expired (nextUpdate passed): client certificates it "
                         "issued are refused until the CRL is renewed",
                         r->id);
            return CRL_EXPIRED;
        }
        X509_REVOKED *entry = NULL;
        if (X509_CRL_get0_by_cert(r->crl, &entry, cert) == 1)
            return REVOKED;
    }
    return NOT_REVOKED;
}

/* Why cert is refused (its reason, and *msg the message), or NULL when it passes. */
static const char *refusal(const struct pt_api *api, struct client_cert *x, X509 *cert, STACK_OF(X509) * sent,
                           const char *verify, const char **msg)
{
    bool date_only = verify && (strstr(verify, "not yet valid") || strstr(verify, "has expired"));
    if (x->not_before && X509_cmp_current_time(X509_get0_notBefore(cert)) > 0)
        return *msg = "The client certificate is not valid yet.", "ClientCertificateNotYetValid";
    if (x->not_after && X509_cmp_current_time(X509_get0_notAfter(cert)) < 0)
        return *msg = "The client certificate has expired.", "ClientCertificateExpired";
    /* the listener's verdict (a date the policy does not check aside), else the store's CAs */
    if (x->trust && !(verify && !strcmp(verify, "ok")) && !(date_only && (!x->not_before || !x->not_after)) &&
        !trusted_by_store(x, cert, sent))
        return *msg = "The client certificate is not trusted.", "ClientCertificateNotTrusted";
    enum revocation rv = x->revocation ? revoked(api, x, cert) : NOT_REVOKED;
    if (rv == REVOKED)
        return *msg = "The client certificate has been revoked.", "ClientCertificateRevoked";
    if (rv == CRL_EXPIRED)
        return *msg = "The revocation list of the client certificate's issuer has expired.",
               "ClientCertificateRevocationUnknown";
    bool any = x->nids == 0;
    for (int i = 0; i < x->nids && !any; i++)
        any = identity_matches(&x->ids[i], cert);
    if (!any)
        return *msg = "The client certificate matches no allowed identity.",
               "ClientCertificateIdentityNotAllowed";
    return NULL;
}

pt_status validate_client_certificate_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct client_cert *x = inst;
    pt_bytes pem = api->fact(call, PT_FACT_CLIENT_CERT);
    if (!pem.len)
        return cert_fail(api, call, x, "ClientCertificateMissing", "A client certificate is required.");
    BIO *b = BIO_new_mem_buf(pem.data, (int)pem.len);
    X509 *cert = PEM_read_bio_X509(b, NULL, NULL, NULL), *more;
    STACK_OF(X509) *sent = sk_X509_new_null(); /* the intermediates the client sent after it */
    while (cert && sent && (more = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
        if (!sk_X509_push(sent, more))
            X509_free(more);
    BIO_free(b);
    if (!cert || !sent) {
        X509_free(cert);
        sk_X509_free(sent);
        return cert_fail(api, call, x, "ClientCertificateInvalid", "The client certificate cannot be read.");
    }
    pt_bytes verify = api->fact(call, PT_FACT_CLIENT_CERT_VERIFY);
    const char *msg = NULL;
    const char *reason = refusal(api, (struct client_cert *)x, cert, sent,
                                 verify.len ? ptl_dup_bytes(api, call, verify) : NULL, &msg);
    X509_free(cert);
    sk_X509_pop_free(sent, X509_free);
    ERR_clear_error();
    return reason ? cert_fail(api, call, x, reason, msg) : PT_OK;
}
