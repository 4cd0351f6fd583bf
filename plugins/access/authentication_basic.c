/*
 * authentication_basic.c -- authentication-basic: sends the backend an
 * Authorization: Basic header.
 */
#include "access.h"

#include <openssl/evp.h>
#include <string.h>

const struct pt_attr_def authentication_basic_attrs[] = {
    {"username", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0, "user name"},
    {"password", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0, "password"},
    {0},
};

struct basic {
    pt_value *user, *pass;
};

int authentication_basic_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct basic *x = api->compile_alloc(c, sizeof(*x));
    x->user = api->attr_value(c, "username");
    x->pass = api->attr_value(c, "password");
    *instance = x;
    return 0;
}

pt_status authentication_basic_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct basic *x = inst;
    pt_bytes u, p;
    int st;
    if ((st = ptl_eval(api, call, x->user, &u)) || (st = ptl_eval(api, call, x->pass, &p)))
        return (pt_status)st;
    size_t n = u.len + 1 + p.len;
    unsigned char *raw = api->alloc(call, n + 1);
    memcpy(raw, u.data, u.len);
    raw[u.len] = ':';
    memcpy(raw + u.len + 1, p.data, p.len);
    char *out = api->alloc(call, 6 + 4 * ((n + 2) / 3) + 1);
    memcpy(out, "Basic ", 6);
    size_t k = 6 + (size_t)EVP_EncodeBlock((unsigned char *)out + 6, raw, (int)n);
    pt_bytes v = {out, k};
    if (api->header_set(call, PT_MSG_REQUEST, PTL_LIT("Authorization"), &v, 1, PT_HEADER_OVERRIDE) != 0)
        return PT_ERROR;
    return PT_OK;
}
