/*
 * proxy.c -- proxy: forward-request goes through an HTTP proxy (the request
 * line in absolute form), with Basic credentials in Proxy-Authorization
 * when a username is given (docs/backends.md#proxy).
 */
#include "routing.h"

#include <string.h>
#include <strings.h>

const struct pt_attr_def proxy_attrs[] = {
    {"url", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "the proxy, http://host:port (an IP address or a host known to the configuration)"},
    {"username", PT_ATTR_STRING, PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0, "Basic credentials for the proxy"},
    {"password", PT_ATTR_STRING, PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0, "... and their password"},
    {0},
};

struct proxy {
    pt_value *url, *user, *pass;
};

int proxy_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct proxy *p = api->compile_alloc(c, sizeof(*p));
    p->url = api->attr_value(c, "url");
    p->user = api->attr_value(c, "username");
    p->pass = api->attr_value(c, "password");
    const char *lit = api->attr_literal(c, "url");
    if (lit && strncasecmp(lit, "http://", 7)) {
        api->compile_error(c, "url", "'%s' is not an http:// proxy URL", lit);
        return -1;
    }
    if (p->pass && !p->user) {
        api->compile_error(c, "password", "a password needs a username");
        return -1;
    }
    *instance = p;
    return 0;
}

pt_status proxy_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct proxy *p = inst;
    pt_bytes url, user = {"", 0}, pass = {"", 0};
    int st = ptl_eval(api, call, p->url, &url);
    if (!st && p->user)
        st = ptl_eval(api, call, p->user, &user);
    if (!st && p->pass)
        st = ptl_eval(api, call, p->pass, &pass);
    if (st)
        return (pt_status)st;
    return api->forward_proxy_set(call, ptl_trim(url), user, pass) == 0 ? PT_OK : PT_ERROR;
}
