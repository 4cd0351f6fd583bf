/*
 * authentication_certificate.c -- authentication-certificate: presents a
 * client certificate to an https backend.
 */
#include "access.h"

const struct pt_attr_def authentication_certificate_attrs[] = {
    {"certificate", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0,
     "PEM file with the client certificate (and its chain), relative to the configuration's folder"},
    {"key", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "PEM file with its private key"},
    {0},
};

int authentication_certificate_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    const char *cert = api->attr_literal(c, "certificate"), *key = api->attr_literal(c, "key");
    if (!cert || !key) {
        api->compile_error(c, NULL, "certificate and key are file names, not expressions");
        return -1;
    }
    void *h = api->tls_client_cert(c, cert, key);
    if (!h)
        return -1;
    *instance = h;
    return 0;
}

pt_status authentication_certificate_run(const struct pt_api *api, pt_call *call, void *inst)
{
    api->use_client_cert(call, inst);
    return PT_OK;
}
