/*
 * set_backend_service.c -- set-backend-service: where forward-request sends
 * the request, a base URL or a configured backend (docs/backends.md).
 *
 * A literal base-url is checked here and was resolved with the generation;
 * an expression's URL is resolved at request time without a name lookup
 * (an IP address or a host the generation knows: see api->backend_set).
 */
#include "routing.h"

#include <string.h>
#include <strings.h>

const struct pt_attr_def set_backend_service_attrs[] = {
    {"base-url", PT_ATTR_STRING, PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "the backend's base URL (http:// or https://); the operation's path is appended to it"},
    {"backend-id", PT_ATTR_STRING, PT_ATTR_EXPR | PT_ATTR_OR, NULL, NULL, NULL, 0, 0,
     "a configured backend (`backends[]`), a single one or a pool; its credentials and TLS settings apply"},
    {0},
};

struct sbs {
    pt_value *url, *id;
};

int set_backend_service_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct sbs *s = api->compile_alloc(c, sizeof(*s));
    s->url = api->attr_value(c, "base-url");
    s->id = api->attr_value(c, "backend-id");
    if (!s->url == !s->id) {
        api->compile_error(c, NULL, "give base-url or backend-id (one of them)");
        return -1;
    }
    const char *lit = api->attr_literal(c, "base-url");
    if (lit && strncasecmp(lit, "http://", 7) && strncasecmp(lit, "https://", 8)) {
        api->compile_error(c, "base-url", "'%s' is not an http:// or https:// URL", lit);
        return -1;
    }
    *instance = s;
    return 0;
}

pt_status set_backend_service_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct sbs *s = inst;
    pt_bytes v = {"", 0};
    int st = ptl_eval(api, call, s->url ? s->url : s->id, &v);
    if (st)
        return (pt_status)st;
    v = ptl_trim(v);
    if (!v.len)
        return api->fail(call, 500, "ExpressionValueEvaluationFailure",
                         s->url ? "base-url is empty" : "backend-id is empty");
    int r =
        s->url ? api->backend_set(call, v, (pt_bytes){"", 0}) : api->backend_set(call, (pt_bytes){"", 0}, v);
    return r == 0 ? PT_OK : PT_ERROR;
}
