/*
 * authentication_certificate.c -- authentication-certificate: presents a
 * client certificate to an https backend: one of the certificate store
 * (certificate-id or thumbprint) or a pair of PEM files.
 */
#include "access.h"

const struct pt_attr_def authentication_certificate_attrs[] = {
    {"certificate-id", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "the id of a certificate of the store (`certificates:`) that has its private key"},
    {"thumbprint", PT_ATTR_STRING, PT_ATTR_OR, NULL, NULL, NULL, 0, 0,
     "or the thumbprint (SHA-1, hex) of such a certificate"},
    {"certificate", PT_ATTR_STRING, PT_ATTR_OR, NULL, NULL, NULL, 0, 0,
     "or a PEM file with the client certificate (and its chain), relative to the configuration's folder"},
    {"key", PT_ATTR_STRING, PT_ATTR_OR, NULL, NULL, NULL, 0, 0,
     "with `certificate`: the PEM file of its private key"},
    {0},
};

static const char *const sources[] = {"certificate-id", "thumbprint", "certificate"};

/* The one way the statement names its certificate (index in sources), or -1 after an error. */
static int source_of(const struct pt_api *api, pt_compile *c)
{
    int found = -1, n = 0;
    for (int i = 0; i < 3; i++)
        if (api->attr_value(c, sources[i])) {
            found = i;
            n++;
        }
    if (n != 1) {
        api->compile_error(c, NULL, "give one of certificate-id, thumbprint, or certificate with key");
        return -1;
    }
    if (!api->attr_literal(c, sources[found])) {
        api->compile_error(c, sources[found], "a literal is needed, not an expression");
        return -1;
    }
    return found;
}

int authentication_certificate_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    int src = source_of(api, c);
    if (src < 0)
        return -1;
    if (src == 2) {
        const char *cert = api->attr_literal(c, "certificate"), *key = api->attr_literal(c, "key");
        if (!key) {
            api->compile_error(c, "key", "certificate needs key (the PEM file of its private key)");
            return -1;
        }
        void *h = api->tls_client_cert(c, cert, key);
        if (!h)
            return -1;
        *instance = h;
        return 0;
    }
    const char *v = api->attr_literal(c, sources[src]);
    const struct pt_stored_cert *s =
        api->cert_find(c, sources[src], src == 0 ? v : NULL, src == 1 ? v : NULL, 0);
    if (!s)
        return -1;
    if (!s->pem) { /* only checking: the certificate is in the store */
        *instance = NULL;
        return 0;
    }
    if (!s->key_pem) {
        api->compile_error(c, sources[src],
                           "certificate '%s' has no private key: a backend cannot be shown it", s->id);
        return -1;
    }
    void *h = api->tls_client_cert_pem(c, s->pem, s->key_pem);
    if (!h)
        return -1;
    *instance = h;
    return 0;
}

pt_status authentication_certificate_run(const struct pt_api *api, pt_call *call, void *inst)
{
    if (inst)
        api->use_client_cert(call, inst);
    return PT_OK;
}
