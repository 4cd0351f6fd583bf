/*
 * rewrite_uri.c -- rewrite-uri: a new backend path and query from a
 * template filled with the operation's matched parameters.
 */
#include "transform.h"

#include <stdio.h>
#include <string.h>

const struct pt_attr_def rewrite_uri_attrs[] = {
    {"template", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "new backend path (after the service URL), starting with '/', optionally with ?query; {name} is "
     "replaced by the operation's matched parameter; an expression must be the whole value"},
    {"copy-unmatched-params", PT_ATTR_BOOL, 0, "true", NULL, NULL, 0, 0,
     "append the request's query parameters that the operation's URL template does not name"},
    {0},
};

struct rewrite {
    pt_value *tmpl;
    bool copy;
};

/* A template's shape: starts with '/', no fragment, balanced non-empty {names}. */
static const char *template_problem(const char *t, size_t n)
{
    if (!n || t[0] != '/')
        return "the template must start with '/' (a path after the API's service URL)";
    for (size_t i = 0; i < n; i++) {
        if (t[i] == '#')
            return "the template cannot contain a fragment ('#')";
        if (t[i] == '}')
            return "unbalanced '}' in the template";
        if (t[i] == '{') {
            const char *close = memchr(t + i, '}', n - i);
            const char *open = memchr(t + i + 1, '{', n - i - 1);
            if (!close || (open && open < close))
                return "unbalanced '{' in the template";
            if (close == t + i + 1)
                return "empty parameter name '{}' in the template";
            i = (size_t)(close - t);
        }
    }
    return NULL;
}

int rewrite_uri_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct rewrite *x = api->compile_alloc(c, sizeof(*x));
    if (!x)
        return -1;
    const char *lit = api->attr_literal(c, "template");
    const char *why = lit ? template_problem(lit, strlen(lit)) : NULL;
    if (why) {
        api->compile_error(c, "template", "%s", why);
        return -1;
    }
    x->tmpl = api->attr_value(c, "template");
    x->copy = api->attr_bool(c, "copy-unmatched-params", 1) != 0;
    if (!x->tmpl)
        return -1;
    *instance = x;
    return 0;
}

/*
 * Expands one part of the template: {name} becomes the matched parameter,
 * encoded for a path (keep = PTL_PATH_KEEP) or a query (keep = NULL); bytes
 * that cannot appear in a URL are %-encoded; existing %XX stay.
 */
static pt_status expand_part(const struct pt_api *api, pt_call *call, pt_bytes part, const char *keep,
                             struct ptl_buf *out)
{
    for (size_t i = 0; i < part.len; i++) {
        unsigned char c = (unsigned char)part.data[i];
        if (c == '{') {
            const char *close = memchr(part.data + i, '}', part.len - i);
            pt_bytes name = {part.data + i + 1, (size_t)(close - part.data - i - 1)};
            pt_bytes value;
            if (api->matched_param(call, name, &value) != 0) {
                char msg[300];
                snprintf(msg, sizeof(msg), "rewrite-uri: the operation has no parameter '%.*s'",
                         (int)(name.len > 200 ? 200 : name.len), name.data);
                return api->fail(call, 500, "TemplateParameterNotFound", msg);
            }
            ptl_pct_encode(out, value, keep);
            i = (size_t)(close - part.data);
        } else if (c <= 0x20 || c >= 0x7f)
            ptl_pct_encode(out, (pt_bytes){part.data + i, 1}, NULL);
        else
            ptl_buf_ch(out, (char)c);
    }
    return PT_OK;
}

/* Names of the query parameters the operation's URL template binds ("/get?a={b}&c" -> a, c). */
static int template_query_names(const struct pt_api *api, pt_call *call, struct ptl_qseg **out)
{
    pt_bytes t = api->operation_template(call);
    const char *qm = memchr(t.data ? t.data : "", '?', t.len);
    pt_bytes q = qm ? (pt_bytes){qm + 1, t.len - (size_t)(qm + 1 - t.data)} : (pt_bytes){"", 0};
    return ptl_query_split(api, call, q, out);
}

static bool seg_named(const struct pt_api *api, pt_call *call, const struct ptl_qseg *segs, int n,
                      pt_bytes key)
{
    pt_bytes k = ptl_pct_decode(api, call, key);
    for (int i = 0; i < n; i++)
        if (ptl_bytes_eq(ptl_pct_decode(api, call, segs[i].key), k))
            return true;
    return false;
}

/*
 * Sets the backend path and query.  With copy-unmatched-params, the current
 * backend query's parameters are appended unless the operation's template
 * binds them or the rewrite template sets them itself (the template wins).
 */
pt_status rewrite_uri_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct rewrite *x = inst;
    pt_bytes t;
    int st;
    if ((st = ptl_eval(api, call, x->tmpl, &t)))
        return (pt_status)st;
    const char *why = template_problem(t.data, t.len);
    if (why) {
        char msg[200];
        snprintf(msg, sizeof(msg), "rewrite-uri: %s", why);
        return api->fail(call, 500, "InvalidTemplate", msg);
    }
    const char *qm = memchr(t.data, '?', t.len);
    pt_bytes path = {t.data, qm ? (size_t)(qm - t.data) : t.len};
    pt_bytes tq = qm ? (pt_bytes){qm + 1, t.len - path.len - 1} : (pt_bytes){"", 0};

    struct ptl_buf p, q;
    ptl_buf_init(&p, api, call, t.len + 32);
    ptl_buf_init(&q, api, call, t.len + api->query(call).len + 16);
    if ((st = expand_part(api, call, path, PTL_PATH_KEEP, &p)) != PT_OK)
        return (pt_status)st;
    struct ptl_buf tqx;
    ptl_buf_init(&tqx, api, call, tq.len + 16);
    if ((st = expand_part(api, call, tq, NULL, &tqx)) != PT_OK)
        return (pt_status)st;
    struct ptl_qseg *own;
    int nown = ptl_query_split(api, call, ptl_buf_bytes(&tqx), &own);
    if (nown < 0)
        return ptl_out_of_memory(api, call);
    for (int i = 0; i < nown; i++)
        ptl_query_join(&q, own[i].raw);
    if (x->copy) {
        struct ptl_qseg *bound, *cur;
        int nb = template_query_names(api, call, &bound);
        int nc = ptl_query_split(api, call, api->query(call), &cur);
        if (nb < 0 || nc < 0)
            return ptl_out_of_memory(api, call);
        for (int i = 0; i < nc; i++)
            if (!seg_named(api, call, bound, nb, cur[i].key) && !seg_named(api, call, own, nown, cur[i].key))
                ptl_query_join(&q, cur[i].raw);
    }
    if (p.oom || q.oom || tqx.oom)
        return ptl_out_of_memory(api, call);
    if (api->set_path(call, ptl_buf_bytes(&p)) != 0 || api->set_query(call, ptl_buf_bytes(&q)) != 0)
        return PT_ERROR;
    return PT_OK;
}
