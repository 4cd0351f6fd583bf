/*
 * jsonp.c -- jsonp: wraps the response body as cb(body); for the callback
 * the client names in a query parameter.
 */
#include "transform.h"

const struct pt_attr_def jsonp_attrs[] = {
    {"callback-parameter-name", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "the query parameter holding the JavaScript function name (e.g. cb)"},
    {0},
};

int jsonp_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    const char *lit = api->attr_literal(c, "callback-parameter-name");
    if (lit && !*lit) {
        api->compile_error(c, "callback-parameter-name", "the parameter name must not be empty");
        return -1;
    }
    *instance = api->attr_value(c, "callback-parameter-name");
    return *instance ? 0 : -1;
}

/* A dotted JavaScript name: parts of [A-Za-z_$][A-Za-z0-9_$]*, at most 256 bytes. */
static bool js_callback_ok(pt_bytes s)
{
    if (!s.len || s.len > 256)
        return false;
    bool start = true;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.data[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$';
        bool digit = c >= '0' && c <= '9';
        if (c == '.' && !start && i + 1 < s.len) {
            start = true;
            continue;
        }
        if (!(alpha || (digit && !start)))
            return false;
        start = false;
    }
    return true;
}

/*
 * The callback is read from the request's query as it goes to the backend
 * (api->query_param; the API has no accessor for the client's original
 * query).  Absent: the body stays as it is.  Present: the body becomes
 * `cb(<body>);` with Content-Type application/javascript; a value that is
 * not a JavaScript name (including an empty one) fails with 400
 * CallbackParameterInvalid.
 */
pt_status jsonp_run(const struct pt_api *api, pt_call *call, void *inst)
{
    pt_bytes pname, raw, body;
    int st;
    if ((st = ptl_eval(api, call, inst, &pname)))
        return (pt_status)st;
    /* the callback the client asked for, whatever inbound did to the backend's query */
    if (api->original_query_param(call, pname, &raw) != 0)
        return PT_OK;
    pt_bytes cb = ptl_pct_decode(api, call, raw);
    if (!js_callback_ok(cb))
        return api->fail(call, 400, "CallbackParameterInvalid",
                         "jsonp: the callback parameter is not a valid JavaScript function name");
    if ((st = ptl_body_get(api, call, PT_MSG_CURRENT, &body)))
        return (pt_status)st;
    struct ptl_buf out;
    ptl_buf_init(&out, api, call, body.len + cb.len + 4);
    ptl_buf_add(&out, cb.data, cb.len);
    ptl_buf_ch(&out, '(');
    ptl_buf_add(&out, body.data, body.len);
    ptl_buf_lit(&out, ");");
    if (out.oom)
        return ptl_out_of_memory(api, call);
    if (api->body_set(call, PT_MSG_CURRENT, ptl_buf_bytes(&out)) != 0 ||
        ptl_header_put(api, call, PT_MSG_CURRENT, "Content-Type", "application/javascript") != 0)
        return PT_ERROR;
    return PT_OK;
}
