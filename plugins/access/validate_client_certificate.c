/*
 * validate_client_certificate.c -- validate-client-certificate: checks the
 * TLS client certificate's trust, dates and identity.
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
    {0},
};
static const struct pt_attr_def identities_attrs[] = {
    {"identity", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, identity_attrs, 0, 0,
     "every attribute given must match"},
    {0},
};
const struct pt_attr_def validate_client_certificate_attrs[] = {
    {"validate-revocation", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0,
     "revocation lists are not consulted: true is refused"},
    {"validate-trust", PT_ATTR_BOOL, 0, "true", NULL, NULL, 0, 0,
     "the certificate chains to the listener's clientCa"},
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
};

struct client_cert {
    bool trust, not_before, not_after, ignore;
    struct identity *ids;
    int nids;
};

static const char *const identity_names[6] = {"thumbprint", "serial-number", "common-name",
                                              "subject",    "dns-name",      "issuer-subject"};

int validate_client_certificate_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct client_cert *x = api->compile_alloc(c, sizeof(*x));
    if (api->attr_bool(c, "validate-revocation", 0)) {
        api->compile_error(c, "validate-revocation",
                           "revocation is not checked by this gateway: set it to false");
        return -1;
    }
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
            if (!any) {
                api->compile_error(c, "identities", "an identity needs at least one attribute");
                return -1;
            }
            x->nids++;
        }
    }
    *instance = x;
    return 0;
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

pt_status validate_client_certificate_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct client_cert *x = inst;
    pt_bytes pem = api->fact(call, PT_FACT_CLIENT_CERT);
    if (!pem.len)
        return cert_fail(api, call, x, "ClientCertificateMissing", "A client certificate is required.");
    BIO *b = BIO_new_mem_buf(pem.data, (int)pem.len);
    X509 *cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!cert)
        return cert_fail(api, call, x, "ClientCertificateInvalid", "The client certificate cannot be read.");
    pt_status r = PT_OK;
    pt_bytes verify = api->fact(call, PT_FACT_CLIENT_CERT_VERIFY);
    if (x->not_before && X509_cmp_current_time(X509_get0_notBefore(cert)) > 0)
        r = cert_fail(api, call, x, "ClientCertificateNotYetValid",
                      "The client certificate is not valid yet.");
    else if (x->not_after && X509_cmp_current_time(X509_get0_notAfter(cert)) < 0)
        r = cert_fail(api, call, x, "ClientCertificateExpired", "The client certificate has expired.");
    else if (x->trust && !ptl_bytes_is(verify, "ok") &&
             !(verify.len &&
               (strstr(ptl_dup_bytes(api, call, verify), "not yet valid") ||
                strstr(ptl_dup_bytes(api, call, verify), "has expired")) &&
               (!x->not_before || !x->not_after)))
        r = cert_fail(api, call, x, "ClientCertificateNotTrusted", "The client certificate is not trusted.");
    else if (x->nids) {
        bool any = false;
        for (int i = 0; i < x->nids && !any; i++)
            any = identity_matches(&x->ids[i], cert);
        if (!any)
            r = cert_fail(api, call, x, "ClientCertificateIdentityNotAllowed",
                          "The client certificate matches no allowed identity.");
    }
    X509_free(cert);
    ERR_clear_error();
    return r;
}
