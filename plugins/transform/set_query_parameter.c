/*
 * set_query_parameter.c -- set-query-parameter: sets, appends, keeps or
 * deletes a query parameter of the request to the backend (its instance and
 * compile step are set-header's, see set_header.c).
 */
#include "transform.h"

const struct pt_attr_def set_query_parameter_attrs[] = {
    {"name", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "name of the query parameter (percent-encoded when written)"},
    {"exists-action", PT_ATTR_ENUM, 0, "override", set_header_exists_actions, NULL, 0, 0,
     "override replaces every occurrence, skip keeps existing ones, append adds, delete removes all"},
    {"value", PT_ATTR_STRING, PT_ATTR_EXPR | PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0,
     "one or more values (required unless exists-action is delete); each becomes one name=value pair"},
    {0},
};

int set_query_parameter_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    const char *name = api->attr_literal(c, "name");
    if (name && !*name) {
        api->compile_error(c, "name", "the name must not be empty");
        return -1;
    }
    return set_header_compile_named(api, c, instance, "set-query-parameter");
}

/*
 * Works on the backend query as raw segments: other parameters keep their
 * order and bytes.  A parameter matches when its %-decoded name equals the
 * (evaluated) name.  override puts the new pairs where the first
 * occurrence was (or at the end), append adds them at the end.
 */
pt_status set_query_parameter_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct named_values *x = inst;
    pt_bytes name, *vals;
    int n;
    pt_status st = set_header_eval_named(api, call, x, &name, &vals, &n);
    if (st != PT_OK)
        return st;
    if (!name.len)
        return api->fail(call, 500, "InvalidQueryParameter", "set-query-parameter: the name is empty");

    struct ptl_qseg *segs;
    int ns = ptl_query_split(api, call, api->query(call), &segs);
    if (ns < 0)
        return ptl_out_of_memory(api, call);
    bool exists = false;
    for (int i = 0; i < ns; i++)
        if (ptl_qkey_is(api, call, segs[i].key, name))
            exists = true;
    if (x->mode == PT_HEADER_SKIP && exists)
        return PT_OK;
    if (x->mode == PT_HEADER_DELETE && !exists)
        return PT_OK;

    /* the new pairs, encoded once */
    struct ptl_buf pairs;
    ptl_buf_init(&pairs, api, call, 64);
    for (int i = 0; i < n; i++) {
        if (i)
            ptl_buf_ch(&pairs, '&');
        ptl_pct_encode(&pairs, name, NULL);
        ptl_buf_ch(&pairs, '=');
        ptl_pct_encode(&pairs, vals[i], NULL);
    }
    struct ptl_buf q;
    ptl_buf_init(&q, api, call, api->query(call).len + pairs.n + 8);
    bool placed = false;
    for (int i = 0; i < ns; i++) {
        bool match = ptl_qkey_is(api, call, segs[i].key, name);
        if (match && x->mode == PT_HEADER_OVERRIDE && !placed) {
            ptl_query_join(&q, ptl_buf_bytes(&pairs));
            placed = true;
        }
        if (match && (x->mode == PT_HEADER_OVERRIDE || x->mode == PT_HEADER_DELETE))
            continue;
        ptl_query_join(&q, segs[i].raw);
    }
    if (n && !placed)
        ptl_query_join(&q, ptl_buf_bytes(&pairs));
    if (pairs.oom || q.oom)
        return ptl_out_of_memory(api, call);
    return api->set_query(call, ptl_buf_bytes(&q)) == 0 ? PT_OK : PT_ERROR;
}
