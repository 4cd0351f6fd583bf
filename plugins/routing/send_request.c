/*
 * send_request.c -- send-request and send-one-way-request (docs/routing.md).
 *
 * Both build one HTTP request from their attributes and children -- a new
 * one, or a copy of the current request (mode="copy") -- and hand it to
 * the worker's own non-blocking client (api->http_send).  send-request
 * suspends the request (PT_AGAIN) until the answer is in and keeps it in
 * a variable as a response object; send-one-way-request queues it and goes
 * on at once.  Every attribute is evaluated before the call starts, so a
 * run() that asks for a body (PT_AGAIN from an expression) starts nothing.
 */
#include "routing.h"

#include <openssl/evp.h>
#include <string.h>
#include <strings.h>

static const char *const modes[] = {"new", "copy", NULL};
static const char *const exists_actions[] = {"override", "skip", "append", "delete", NULL};

static const struct pt_attr_def url_attrs[] = {
    {"value", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR | PT_ATTR_SCALAR, NULL, NULL, NULL, 0, 0,
     "an absolute http:// or https:// URL"},
    {0},
};
static const struct pt_attr_def method_attrs[] = {
    {"value", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR | PT_ATTR_SCALAR, NULL, NULL, NULL, 0, 0,
     "the method (GET, POST, ...)"},
    {0},
};
static const struct pt_attr_def header_attrs[] = {
    {"name", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0, "header name"},
    {"exists-action", PT_ATTR_ENUM, 0, "override", exists_actions, NULL, 0, 0,
     "override, skip, append or delete"},
    {"value", PT_ATTR_STRING, PT_ATTR_EXPR | PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0, "one or more values"},
    {0},
};
static const struct pt_attr_def body_attrs[] = {
    {"value", PT_ATTR_STRING, PT_ATTR_EXPR | PT_ATTR_SCALAR, NULL, NULL, NULL, 0, 0, "the body"},
    {0},
};
static const struct pt_attr_def basic_attrs[] = {
    {"username", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0, "user name"},
    {"password", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0, "password"},
    {0},
};
static const struct pt_attr_def cert_attrs[] = {
    {"certificate", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0,
     "PEM file with the client certificate (and chain), relative to the configuration's folder"},
    {"key", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "PEM file with its private key"},
    {0},
};
static const struct pt_attr_def proxy_child_attrs[] = {
    {"url", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "the HTTP proxy, http://host:port"},
    {"username", PT_ATTR_STRING, PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0, "Basic credentials for the proxy"},
    {"password", PT_ATTR_STRING, PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0, "with username"},
    {0},
};

static const char *const http_versions[] = {"1", "2or1", "2", NULL}; /* PT_HTTP_VERSION_* in order */

#define COMMON_ATTRS                                                                                         \
    {"mode",                                                                                                 \
     PT_ATTR_ENUM,                                                                                           \
     0,                                                                                                      \
     "new",                                                                                                  \
     modes,                                                                                                  \
     NULL,                                                                                                   \
     0,                                                                                                      \
     0,                                                                                                      \
     "new: an empty GET to set-url; copy: the current request (method, URL as sent to the backend, "         \
     "headers, and in inbound and backend its body), then the children change it"},                          \
        {"http-version",                                                                                     \
         PT_ATTR_ENUM,                                                                                       \
         0,                                                                                                  \
         "1",                                                                                                \
         http_versions,                                                                                      \
         NULL,                                                                                               \
         0,                                                                                                  \
         0,                                                                                                  \
         "1: HTTP/1.1; 2: HTTP/2 only (h2c with prior knowledge to http://, ALPN h2 to https://: a server "  \
         "that does not agree fails the call as BackendConnectionFailure); 2or1: to https:// HTTP/2 when "   \
         "the server agrees by ALPN, else HTTP/1.1; to http:// HTTP/1.1. Through a proxy always HTTP/1.1"},  \
        {"timeout", PT_ATTR_INT, 0,                                                                          \
         "60",      NULL,        NULL,                                                                       \
         1,         3600,        "seconds for the whole call (connect, TLS, request, response)"},            \
        {"set-url",                                                                                          \
         PT_ATTR_ELEMENT,                                                                                    \
         PT_ATTR_SCALAR,                                                                                     \
         NULL,                                                                                               \
         NULL,                                                                                               \
         url_attrs,                                                                                          \
         0,                                                                                                  \
         0,                                                                                                  \
         "the URL (required with mode new)"},                                                                \
        {"set-method", PT_ATTR_ELEMENT, PT_ATTR_SCALAR, NULL, NULL, method_attrs, 0, 0, "the method (GET)"}, \
        {"set-header",                                                                                       \
         PT_ATTR_ELEMENT,                                                                                    \
         PT_ATTR_MULTI,                                                                                      \
         NULL,                                                                                               \
         NULL,                                                                                               \
         header_attrs,                                                                                       \
         0,                                                                                                  \
         0,                                                                                                  \
         "a header, as the set-header policy"},                                                              \
        {"set-body", PT_ATTR_ELEMENT, PT_ATTR_SCALAR, NULL, NULL, body_attrs, 0, 0, "the body"},             \
        {"authentication-basic",          PT_ATTR_ELEMENT, 0, NULL, NULL, basic_attrs, 0, 0,                 \
         "an Authorization: Basic header"},                                                                  \
        {"authentication-certificate",    PT_ATTR_ELEMENT, 0, NULL, NULL, cert_attrs, 0, 0,                  \
         "a client certificate for https"},                                                                  \
    {                                                                                                        \
        "proxy", PT_ATTR_ELEMENT, 0, NULL, NULL, proxy_child_attrs, 0, 0,                                    \
            "send through an HTTP proxy (CONNECT for https), Basic credentials"                              \
    }

const struct pt_attr_def send_request_attrs[] = {
    {"response-variable-name", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0,
     "the variable that receives the response (a response object in expressions, return-response's "
     "response-variable-name)"},
    {"ignore-error", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0,
     "a failed call (timeout, connection, broken or too large answer) sets the variable to nil instead of "
     "running on-error"},
    COMMON_ATTRS,
    {0},
};

const struct pt_attr_def send_one_way_request_attrs[] = {
    COMMON_ATTRS,
    {0},
};

#define MAX_HEADERS 100 /* headers of one side call (the client's own bound) */

struct hdr_op {
    pt_value *name;
    int action; /* PT_HEADER_* */
    pt_value **values;
    int nvalues;
};

struct send {
    bool copy, ignore_error, copy_body;
    pt_bytes var;
    uint32_t timeout_ms;
    int http_version; /* PT_HTTP_VERSION_* */
    pt_value *url, *method, *body;
    struct hdr_op *hdrs;
    int nhdrs;
    pt_value *basic_user, *basic_pass;
    void *cert;
    pt_value *proxy_url, *proxy_user, *proxy_pass;
};

/* CONNECT asks a proxy for a tunnel: never a side call's method */
static bool is_connect(pt_bytes m)
{
    return ptl_bytes_ieq(m, "CONNECT");
}

/* ------------------------------------------------------------- compile */

static int compile_common(const struct pt_api *api, pt_compile *c, struct send *s, const char *policy)
{
    pt_element **e;
    s->copy = api->attr_enum(c, "mode", 0) == 1;
    s->timeout_ms = (uint32_t)api->attr_int(c, "timeout", 60) * 1000u;
    s->http_version = api->attr_enum(c, "http-version", PT_HTTP_VERSION_1);
    int sec = api->compile_section(c);
    /* APIM: a copy in outbound (or on-error) does not carry the request's body */
    s->copy_body = s->copy && (sec == PT_SECTION_INBOUND || sec == PT_SECTION_BACKEND);
    if (api->attr_elements(c, "set-url", &e) > 0)
        s->url = api->elem_value(e[0], "value");
    if (!s->url && !s->copy) {
        api->compile_error(c, NULL, "%s with mode new needs set-url (the URL to call)", policy);
        return -1;
    }
    if (api->attr_elements(c, "set-method", &e) > 0)
        s->method = api->elem_value(e[0], "value");
    if (s->method) {
        pt_bytes m;
        if (api->eval(NULL, s->method, &m) == 0 && is_connect(m)) {
            api->compile_error(c, "set-method", "CONNECT cannot be sent (it asks a proxy for a tunnel)");
            return -1;
        }
    }
    if (api->attr_elements(c, "set-body", &e) > 0)
        s->body = api->elem_value(e[0], "value");
    s->nhdrs = api->attr_elements(c, "set-header", &e);
    if (s->nhdrs > MAX_HEADERS) {
        api->compile_error(c, "set-header", "at most %d set-header children", MAX_HEADERS);
        return -1;
    }
    s->hdrs = s->nhdrs ? api->compile_alloc(c, sizeof(*s->hdrs) * (size_t)s->nhdrs) : NULL;
    for (int i = 0; i < s->nhdrs; i++) {
        s->hdrs[i].name = api->elem_value(e[i], "name");
        const char *act = api->elem_literal(e[i], "exists-action");
        int a = PT_HEADER_OVERRIDE;
        for (int k = 0; act && exists_actions[k]; k++)
            if (!strcmp(act, exists_actions[k]))
                a = k; /* the enum's order is PT_HEADER_*'s */
        s->hdrs[i].action = a;
        s->hdrs[i].nvalues = api->elem_values(e[i], "value", &s->hdrs[i].values);
        const char *lit = api->elem_literal(e[i], "name");
        if (lit && !ptl_is_token(lit, strlen(lit))) {
            api->compile_error(c, "set-header", "'%s' is not a header name", lit);
            return -1;
        }
    }
    if (api->attr_elements(c, "authentication-basic", &e) > 0) {
        s->basic_user = api->elem_value(e[0], "username");
        s->basic_pass = api->elem_value(e[0], "password");
    }
    if (api->attr_elements(c, "authentication-certificate", &e) > 0) {
        const char *cert = api->elem_literal(e[0], "certificate"), *key = api->elem_literal(e[0], "key");
        if (!cert || !key) {
            api->compile_error(c, "authentication-certificate",
                               "certificate and key are file names, not expressions");
            return -1;
        }
        if (!(s->cert = api->tls_client_cert(c, cert, key)))
            return -1;
    }
    if (api->attr_elements(c, "proxy", &e) > 0) {
        s->proxy_url = api->elem_value(e[0], "url");
        s->proxy_user = api->elem_value(e[0], "username");
        s->proxy_pass = api->elem_value(e[0], "password");
        const char *lit = api->elem_literal(e[0], "url");
        if (lit && strncmp(lit, "http://", 7)) {
            api->compile_error(c, "proxy", "the proxy's url must be http://host:port (got '%s')", lit);
            return -1;
        }
    }
    if (s->url) {
        pt_bytes u;
        if (api->eval(NULL, s->url, &u) == 0 && !(u.len > 7 && !strncmp(u.data, "http://", 7)) &&
            !(u.len > 8 && !strncmp(u.data, "https://", 8))) {
            api->compile_error(c, "set-url", "'%.*s' is not an absolute http:// or https:// URL", (int)u.len,
                               u.data);
            return -1;
        }
    }
    return 0;
}

static int compile_any(const struct pt_api *api, pt_compile *c, void **instance, const char *policy)
{
    if (api->size < offsetof(struct pt_api, http_send_detached) + sizeof(void *)) {
        api->compile_error(c, NULL, "%s needs a gateway with plugin ABI 1.7", policy);
        return -1;
    }
    struct send *s = api->compile_alloc(c, sizeof(*s));
    if (!s) {
        api->compile_error(c, NULL, "out of memory");
        return -1;
    }
    memset(s, 0, sizeof(*s));
    if (compile_common(api, c, s, policy) != 0)
        return -1;
    *instance = s;
    return 0;
}

int send_request_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    if (compile_any(api, c, instance, "send-request") != 0)
        return -1;
    struct send *s = *instance;
    const char *v = api->attr_literal(c, "response-variable-name");
    if (!v || !*v) {
        api->compile_error(c, "response-variable-name", "response-variable-name names a variable");
        return -1;
    }
    s->var = (pt_bytes){v, strlen(v)};
    s->ignore_error = api->attr_bool(c, "ignore-error", 0);
    return 0;
}

int send_one_way_request_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    return compile_any(api, c, instance, "send-one-way-request");
}

/* ------------------------------------------------------------- the request */

/* The side call's headers while they are built. */
struct hlist {
    pt_bytes names[MAX_HEADERS], values[MAX_HEADERS];
    int n;
};

static int hfind(const struct hlist *l, pt_bytes name, int from)
{
    for (int i = from; i < l->n; i++)
        if (l->names[i].len == name.len && !strncasecmp(l->names[i].data, name.data, name.len))
            return i;
    return -1;
}

static void hdel(struct hlist *l, pt_bytes name)
{
    int w = 0;
    for (int i = 0; i < l->n; i++)
        if (!(l->names[i].len == name.len && !strncasecmp(l->names[i].data, name.data, name.len))) {
            l->names[w] = l->names[i];
            l->values[w] = l->values[i];
            w++;
        }
    l->n = w;
}

static bool hadd(struct hlist *l, pt_bytes name, pt_bytes value)
{
    if (l->n >= MAX_HEADERS)
        return false;
    l->names[l->n] = name;
    l->values[l->n] = value;
    l->n++;
    return true;
}

static pt_status refuse(const struct pt_api *api, pt_call *call, const char *msg)
{
    return api->fail(call, 500, "ExpressionValueEvaluationFailure", msg);
}

/* A field value may hold visible characters, spaces and tabs (RFC 9110 5.5): no CR, LF, NUL, other
   control characters or DEL. */
static bool bad_value(pt_bytes v)
{
    for (size_t i = 0; i < v.len; i++) {
        unsigned char ch = (unsigned char)v.data[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return true;
    }
    return false;
}

/* true when name is one of the comma-separated tokens of list (a Connection header's value) */
static bool listed(pt_bytes list, pt_bytes name)
{
    size_t i = 0;
    while (i < list.len) {
        while (i < list.len && (list.data[i] == ' ' || list.data[i] == '\t' || list.data[i] == ','))
            i++;
        size_t b = i;
        while (i < list.len && list.data[i] != ',' && list.data[i] != ' ' && list.data[i] != '\t')
            i++;
        if (i > b && i - b == name.len && !strncasecmp(list.data + b, name.data, name.len))
            return true;
        while (i < list.len && list.data[i] != ',')
            i++;
    }
    return false;
}

/* A copied header that stays behind: the framing (ours), the client's credentials for its own proxy,
   and the hop-by-hop headers the client's Connection header names (RFC 9110 7.6.1). */
static bool not_copied(const struct pt_api *api, pt_call *call, pt_bytes n)
{
    if (ptl_bytes_ieq(n, "Host") || ptl_bytes_ieq(n, "Content-Length") ||
        ptl_bytes_ieq(n, "Transfer-Encoding") || ptl_bytes_ieq(n, "Connection") ||
        ptl_bytes_ieq(n, "Proxy-Authorization"))
        return true;
    pt_bytes cn, cv;
    for (int i = 0; i < 10000 && api->header_at(call, PT_MSG_REQUEST, i, &cn, &cv) == 0; i++)
        if (ptl_bytes_ieq(cn, "Connection") && listed(cv, n))
            return true;
    return false;
}

/* The URL the current request goes to: the backend base, its path and query. */
static pt_bytes current_url(const struct pt_api *api, pt_call *call)
{
    pt_bytes base = api->url_base(call, PT_URL_BACKEND), path = api->path(call), q = api->query(call);
    struct ptl_buf b;
    ptl_buf_init(&b, api, call, base.len + path.len + q.len + 2);
    ptl_buf_add(&b, base.data, base.len);
    ptl_buf_add(&b, path.data, path.len);
    if (q.len) {
        ptl_buf_ch(&b, '?');
        ptl_buf_add(&b, q.data, q.len);
    }
    return b.oom ? (pt_bytes){"", 0} : ptl_buf_bytes(&b);
}

/* Fills r from the statement; PT_OK, or the status run() returns (PT_AGAIN for a body). */
static int build(const struct pt_api *api, pt_call *call, const struct send *s, struct pt_http_req *r,
                 struct hlist *hl)
{
    int st;
    memset(r, 0, sizeof(*r));
    hl->n = 0;
    if (s->copy) {
        r->method = api->method(call);
        r->url = current_url(api, call);
        pt_bytes n, v;
        for (int i = 0; i < 10000 && api->header_at(call, PT_MSG_REQUEST, i, &n, &v) == 0; i++) {
            if (not_copied(api, call, n))
                continue;
            if (!hadd(hl, n, v))
                return refuse(api, call, "the copied request has more than 100 headers");
        }
        if (s->copy_body && (st = ptl_body_get(api, call, PT_MSG_REQUEST, &r->body)))
            return st;
    } else
        r->method = PTL_LIT("GET");
    if (s->url && (st = ptl_eval(api, call, s->url, &r->url)))
        return st;
    if (s->method) {
        if ((st = ptl_eval(api, call, s->method, &r->method)))
            return st;
        if (!ptl_is_token(r->method.data, r->method.len))
            return refuse(api, call, "set-method: the method is not a token");
        if (is_connect(r->method))
            return refuse(api, call, "set-method: CONNECT cannot be sent (it asks for a tunnel)");
    }
    if (s->body && (st = ptl_eval(api, call, s->body, &r->body)))
        return st;
    for (int i = 0; i < s->nhdrs; i++) {
        const struct hdr_op *h = &s->hdrs[i];
        pt_bytes name;
        if ((st = ptl_eval(api, call, h->name, &name)))
            return st;
        if (!ptl_is_token(name.data, name.len))
            return refuse(api, call, "set-header: the name is not a header name");
        if (h->action == PT_HEADER_DELETE) {
            hdel(hl, name);
            continue;
        }
        if (h->action == PT_HEADER_SKIP && hfind(hl, name, 0) >= 0)
            continue;
        /* several values make one field, joined with ", " (as set-header does); append adds to it */
        struct ptl_buf b;
        ptl_buf_init(&b, api, call, 64);
        int at = h->action == PT_HEADER_APPEND ? hfind(hl, name, 0) : -1;
        if (at >= 0)
            ptl_buf_add(&b, hl->values[at].data, hl->values[at].len);
        for (int k = 0; k < h->nvalues; k++) {
            pt_bytes v;
            if ((st = ptl_eval(api, call, h->values[k], &v)))
                return st;
            if (bad_value(v))
                return refuse(api, call, "set-header: a value holds a control character (CR, LF, NUL, ...)");
            if (b.n)
                ptl_buf_lit(&b, ", ");
            ptl_buf_add(&b, v.data, v.len);
        }
        if (b.oom)
            return ptl_out_of_memory(api, call);
        if (at >= 0) {
            hl->values[at] = ptl_buf_bytes(&b);
            continue;
        }
        if (h->action == PT_HEADER_OVERRIDE)
            hdel(hl, name);
        if (!hadd(hl, name, ptl_buf_bytes(&b)))
            return refuse(api, call, "set-header: more than 100 headers");
    }
    if (s->basic_user) {
        pt_bytes u, p;
        if ((st = ptl_eval(api, call, s->basic_user, &u)) || (st = ptl_eval(api, call, s->basic_pass, &p)))
            return st;
        if (memchr(u.data, ':', u.len) || bad_value(u) || bad_value(p))
            return refuse(api, call, "authentication-basic: the user name holds ':' or a control character");
        size_t n = u.len + 1 + p.len;
        unsigned char *raw = api->alloc(call, n + 1);
        char *out = api->alloc(call, 6 + 4 * ((n + 2) / 3) + 1);
        if (!raw || !out)
            return ptl_out_of_memory(api, call);
        memcpy(raw, u.data, u.len);
        raw[u.len] = ':';
        memcpy(raw + u.len + 1, p.data, p.len);
        memcpy(out, "Basic ", 6);
        size_t k = 6 + (size_t)EVP_EncodeBlock((unsigned char *)out + 6, raw, (int)n);
        hdel(hl, PTL_LIT("Authorization"));
        if (!hadd(hl, PTL_LIT("Authorization"), (pt_bytes){out, k}))
            return refuse(api, call, "more than 100 headers");
    }
    if (s->proxy_url) {
        if ((st = ptl_eval(api, call, s->proxy_url, &r->proxy_url)) ||
            (st = ptl_eval(api, call, s->proxy_user, &r->proxy_username)) ||
            (st = ptl_eval(api, call, s->proxy_pass, &r->proxy_password)))
            return st;
    }
    r->header_names = hl->names;
    r->header_values = hl->values;
    r->nheaders = hl->n;
    r->timeout_ms = s->timeout_ms;
    r->client_cert = s->cert;
    r->http_version = s->http_version;
    return PT_OK;
}

/* ------------------------------------------------------------- run */

struct pending {
    const struct pt_api *api;
    const struct send *s;
};

static const char *reason_of(int err)
{
    return err == PT_HTTP_ERR_TIMEOUT ? "Timeout" : "BackendConnectionFailure";
}

static void on_done(pt_call *call, void *arg, int err, const struct pt_http_resp *resp)
{
    struct pending *p = arg;
    const struct pt_api *api = p->api;
    const struct send *s = p->s;
    if (err) {
        if (s->ignore_error) {
            api->var_set_response(call, s->var, NULL);
            api->resume(call, PT_OK);
            return;
        }
        const char *msg = err == PT_HTTP_ERR_TIMEOUT     ? "send-request: the service did not answer in time"
                          : err == PT_HTTP_ERR_TOO_LARGE ? "send-request: the response is larger than allowed"
                          : err == PT_HTTP_ERR_URL       ? "send-request: the URL cannot be used"
                          : err == PT_HTTP_ERR_PROTOCOL  ? "send-request: the service sent a broken response"
                                                         : "send-request: cannot connect to the service";
        api->fail(call, 500, reason_of(err), msg);
        api->resume(call, PT_ERROR);
        return;
    }
    if (api->var_set_response(call, s->var, resp) != 0) {
        if (s->ignore_error) { /* the response cannot be kept (memory, a header it refuses): as a failure */
            api->var_set_response(call, s->var, NULL);
            api->resume(call, PT_OK);
            return;
        }
        api->fail(call, 500, "BackendConnectionFailure", "send-request: the response cannot be kept");
        api->resume(call, PT_ERROR);
        return;
    }
    api->resume(call, PT_OK);
}

pt_status send_request_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct send *s = inst;
    struct pt_http_req r;
    struct hlist *hl = api->alloc(call, sizeof(*hl));
    struct pending *p = api->alloc(call, sizeof(*p));
    if (!hl || !p)
        return ptl_out_of_memory(api, call);
    int st = build(api, call, s, &r, hl);
    if (st != PT_OK)
        return (pt_status)st;
    p->api = api;
    p->s = s;
    if (!api->http_send(call, &r, on_done, p))
        return PT_ERROR;
    return PT_AGAIN;
}

pt_status send_one_way_request_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct send *s = inst;
    struct pt_http_req r;
    struct hlist *hl = api->alloc(call, sizeof(*hl));
    if (!hl)
        return ptl_out_of_memory(api, call);
    int st = build(api, call, s, &r, hl);
    if (st != PT_OK)
        return (pt_status)st;
    api->http_send_detached(call, &r); /* a drop is counted on /metrics; the request goes on */
    return PT_OK;
}
