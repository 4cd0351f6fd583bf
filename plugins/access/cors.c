/*
 * cors.c -- cors: answers preflight requests and adds the
 * Access-Control headers to the responses of allowed origins.
 */
#include "access.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct pt_attr_def origins_attrs[] = {
    {"origin", PT_ATTR_STRING, PT_ATTR_MULTI | PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0,
     "an origin (scheme://host[:port]) or *"},
    {0},
};
static const struct pt_attr_def methods_attrs[] = {
    {"method", PT_ATTR_STRING, PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0, "a method or *"},
    {"preflight-result-max-age", PT_ATTR_INT, 0, "0", NULL, NULL, 0, 86400,
     "seconds a browser may cache the preflight"},
    {0},
};
static const struct pt_attr_def headers_attrs[] = {
    {"header", PT_ATTR_STRING, PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0, "a header name or *"},
    {0},
};

const struct pt_attr_def cors_attrs[] = {
    {"allow-credentials", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0,
     "Access-Control-Allow-Credentials: true (the origin is then echoed, never *)"},
    {"terminate-unmatched-request", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0,
     "answer a request from an origin that does not match with an empty 200 instead of serving it"},
    {"allowed-origins", PT_ATTR_ELEMENT, PT_ATTR_REQUIRED, NULL, NULL, origins_attrs, 0, 0, "who may call"},
    {"allowed-methods", PT_ATTR_ELEMENT, 0, NULL, NULL, methods_attrs, 0, 0, "methods (default GET, POST)"},
    {"allowed-headers", PT_ATTR_ELEMENT, 0, NULL, NULL, headers_attrs, 0, 0,
     "request headers a caller may send"},
    {"expose-headers", PT_ATTR_ELEMENT, 0, NULL, NULL, headers_attrs, 0, 0,
     "response headers a browser may read"},
    {0},
};

struct strs {
    const char **v;
    int n;
    bool any;
};

struct cors {
    bool credentials, terminate;
    struct strs origins, methods, headers, expose;
    int64_t max_age;
};

static void read_strs(const struct pt_api *api, pt_compile *c, pt_element *e, const char *name,
                      struct strs *out)
{
    pt_value **vals;
    int n = e ? api->elem_values(e, name, &vals) : 0;
    out->v = api->compile_alloc(c, sizeof(char *) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        pt_bytes b;
        if (!api->value_is_literal(vals[i]) || api->eval(NULL, vals[i], &b) != 0)
            continue;
        char *s = api->compile_alloc(c, b.len + 1);
        memcpy(s, b.data, b.len);
        out->v[out->n++] = s;
        if (!strcmp(s, "*"))
            out->any = true;
    }
}

int cors_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct cors *x = api->compile_alloc(c, sizeof(*x));
    x->credentials = api->attr_bool(c, "allow-credentials", 0);
    x->terminate = api->attr_bool(c, "terminate-unmatched-request", 0);
    pt_element **e;
    if (api->attr_elements(c, "allowed-origins", &e) > 0)
        read_strs(api, c, e[0], "origin", &x->origins);
    if (api->attr_elements(c, "allowed-methods", &e) > 0) {
        read_strs(api, c, e[0], "method", &x->methods);
        const char *ma = api->elem_literal(e[0], "preflight-result-max-age");
        x->max_age = ma ? atoll(ma) : 0;
    }
    if (!x->methods.n) {
        static const char *defaults[] = {"GET", "POST"};
        x->methods.v = defaults;
        x->methods.n = 2;
    }
    if (api->attr_elements(c, "allowed-headers", &e) > 0)
        read_strs(api, c, e[0], "header", &x->headers);
    if (api->attr_elements(c, "expose-headers", &e) > 0)
        read_strs(api, c, e[0], "header", &x->expose);
    if (x->credentials && x->origins.any) {
        api->compile_error(c, "allowed-origins", "allow-credentials cannot be used with the origin *");
        return -1;
    }
    if (!x->origins.n) {
        api->compile_error(c, "allowed-origins", "at least one origin is required");
        return -1;
    }
    *instance = x;
    return 0;
}

/* scheme://host[:port] with the default port made explicit, lower-cased */
static void norm_origin(const char *in, size_t n, char *out, size_t size)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < size; i++)
        out[k++] = (char)(in[i] >= 'A' && in[i] <= 'Z' ? in[i] + 32 : in[i]);
    out[k] = '\0';
    while (k && out[k - 1] == '/')
        out[--k] = '\0';
    const char *host = strstr(out, "://");
    if (!host)
        return;
    host += 3;
    const char *colon = strrchr(host, ':'), *rb = strrchr(host, ']');
    if (colon && (!rb || colon > rb))
        return; /* has a port */
    const char *port = !strncmp(out, "https://", 8) ? ":443" : !strncmp(out, "http://", 7) ? ":80" : "";
    snprintf(out + k, size - k, "%s", port);
}

static bool origin_allowed(const struct cors *x, pt_bytes origin)
{
    if (x->origins.any)
        return true;
    char o[512], w[512];
    norm_origin(origin.data, origin.len, o, sizeof(o));
    for (int i = 0; i < x->origins.n; i++) {
        norm_origin(x->origins.v[i], strlen(x->origins.v[i]), w, sizeof(w));
        if (!strcmp(o, w))
            return true;
    }
    return false;
}

static bool in_list(const struct strs *s, pt_bytes v, bool icase)
{
    if (s->any)
        return true;
    for (int i = 0; i < s->n; i++)
        if (v.len == strlen(s->v[i]) &&
            (icase ? !strncasecmp(v.data, s->v[i], v.len) : !memcmp(v.data, s->v[i], v.len)))
            return true;
    return false;
}

static char *join(const struct pt_api *api, pt_call *call, const struct strs *s)
{
    size_t n = 1;
    for (int i = 0; i < s->n; i++)
        n += strlen(s->v[i]) + 2;
    char *b = api->alloc(call, n);
    size_t k = 0;
    for (int i = 0; i < s->n; i++)
        k += (size_t)snprintf(b + k, n - k, "%s%s", i ? ", " : "", s->v[i]);
    return b;
}

struct cors_resp {
    const struct cors *x;
    char *origin;
};

static void cors_headers(pt_call *call, void *arg)
{
    struct cors_resp *r = arg;
    ptl_header_put(access_api, call, PT_MSG_RESPONSE, "Access-Control-Allow-Origin",
                   r->x->origins.any && !r->x->credentials ? "*" : r->origin);
    if (r->x->credentials)
        ptl_header_put(access_api, call, PT_MSG_RESPONSE, "Access-Control-Allow-Credentials", "true");
    if (r->x->expose.n)
        ptl_header_put(access_api, call, PT_MSG_RESPONSE, "Access-Control-Expose-Headers",
                       join(access_api, call, &r->x->expose));
    if (!r->x->origins.any || r->x->credentials) {
        pt_bytes v = PTL_LIT("Origin");
        access_api->header_set(call, PT_MSG_RESPONSE, PTL_LIT("Vary"), &v, 1, PT_HEADER_APPEND);
    }
}

static pt_status empty_200(const struct pt_api *api, pt_call *call)
{
    api->set_status(call, 200, PTL_LIT("OK"));
    api->body_set(call, PT_MSG_RESPONSE, (pt_bytes){"", 0});
    return api->respond(call);
}

/*
 * Preflight (OPTIONS with Access-Control-Request-Method) is answered here: a
 * matching one gets 200 with the Allow headers, an unmatched one 200
 * without them when terminate-unmatched-request is true, else the next
 * cors statement is asked; on a preflight the core runs only the cors
 * statements and answers an empty 200 itself when none answered (see
 * pt_pipeline.c), so the backend never sees one.  A simple request that
 * does not match goes on without CORS headers, or gets an empty 200 when
 * terminate-unmatched-request is true.  The attribute's default is false,
 * as APIM's policy reference table says.
 */
pt_status cors_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct cors *x = inst;
    pt_bytes origin;
    if (api->header_get(call, PT_MSG_REQUEST, PTL_LIT("Origin"), &origin, 1) <= 0)
        return PT_OK; /* not a cross-origin call */
    pt_bytes want_method;
    bool preflight =
        ptl_bytes_is(api->method(call), "OPTIONS") &&
        api->header_get(call, PT_MSG_REQUEST, PTL_LIT("Access-Control-Request-Method"), &want_method, 1) > 0;
    bool ok = origin_allowed(x, origin);
    struct cors_resp *r = api->alloc(call, sizeof(*r));
    r->x = x;
    r->origin = ptl_dup_bytes(api, call, origin);
    if (preflight) {
        if (ok && !in_list(&x->methods, want_method, false))
            ok = false;
        pt_bytes want_headers = {"", 0};
        api->header_get(call, PT_MSG_REQUEST, PTL_LIT("Access-Control-Request-Headers"), &want_headers, 1);
        /* every requested header must be allowed */
        for (size_t i = 0; ok && i < want_headers.len;) {
            size_t j = i;
            while (j < want_headers.len && want_headers.data[j] != ',')
                j++;
            pt_bytes h = {want_headers.data + i, j - i};
            while (h.len && (h.data[0] == ' ' || h.data[0] == '\t')) {
                h.data++;
                h.len--;
            }
            while (h.len && (h.data[h.len - 1] == ' ' || h.data[h.len - 1] == '\t'))
                h.len--;
            if (h.len && !in_list(&x->headers, h, true))
                ok = false;
            i = j + 1;
        }
        if (!ok)
            return x->terminate ? empty_200(api, call) : PT_OK;
        api->set_status(call, 200, PTL_LIT("OK"));
        api->body_set(call, PT_MSG_RESPONSE, (pt_bytes){"", 0});
        cors_headers(call, r);
        ptl_header_put(api, call, PT_MSG_RESPONSE, "Access-Control-Allow-Methods",
                       x->methods.any ? ptl_dup_bytes(api, call, want_method) : join(api, call, &x->methods));
        if (want_headers.len)
            ptl_header_put(api, call, PT_MSG_RESPONSE, "Access-Control-Allow-Headers",
                           ptl_dup_bytes(api, call, want_headers));
        if (x->max_age > 0) {
            char age[24];
            snprintf(age, sizeof(age), "%lld", (long long)x->max_age);
            ptl_header_put(api, call, PT_MSG_RESPONSE, "Access-Control-Max-Age", age);
        }
        return api->respond(call);
    }
    if (!ok) {
        pt_bytes m = api->method(call);
        if (x->terminate && (ptl_bytes_is(m, "GET") || ptl_bytes_is(m, "HEAD")))
            return empty_200(api, call);
        return PT_OK;
    }
    api->at_response(call, cors_headers, r);
    return PT_OK;
}
