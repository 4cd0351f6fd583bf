/*
 * find_and_replace.c -- find-and-replace: every occurrence of a text in the
 * body of the current message.
 *
 * Its substring replacement, find_and_replace_all(), also serves
 * redirect-content-urls (which only counts occurrences that end a URL).
 */
#define _GNU_SOURCE /* memmem */
#include "transform.h"

#include <string.h>

/* A URL ends here: nothing that could continue a host, port or path segment follows. */
static bool url_boundary(const char *p, const char *end)
{
    if (p >= end)
        return true;
    unsigned char c = (unsigned char)*p;
    return !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
             c == '.' || c == '_' || c == '~' || c == '%');
}

/*
 * Replaces every non-overlapping occurrence of `from`, left to right.
 * With `boundary`, only occurrences that end a URL prefix (see url_boundary)
 * count.  Returns false when nothing matched (out is then untouched).
 */
bool find_and_replace_all(const struct pt_api *api, pt_call *call, pt_bytes body, pt_bytes from, pt_bytes to,
                          bool boundary, struct ptl_buf *out)
{
    if (!from.len || body.len < from.len)
        return false;
    const char *p = body.data, *end = body.data + body.len;
    bool any = false;
    while (p < end) {
        const char *hit = memmem(p, (size_t)(end - p), from.data, from.len);
        while (hit && boundary && !url_boundary(hit + from.len, end))
            hit = memmem(hit + 1, (size_t)(end - hit - 1), from.data, from.len);
        if (!hit)
            break;
        if (!any) {
            ptl_buf_init(out, api, call, body.len + (to.len > from.len ? (to.len - from.len) * 4 : 0) + 16);
            any = true;
        }
        ptl_buf_add(out, p, (size_t)(hit - p));
        ptl_buf_add(out, to.data, to.len);
        p = hit + from.len;
    }
    if (any)
        ptl_buf_add(out, p, (size_t)(end - p));
    return any;
}

const struct pt_attr_def find_and_replace_attrs[] = {
    {"from", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "the text to look for (plain text, not a pattern)"},
    {"to", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "the replacement; empty deletes every occurrence"},
    {0},
};

struct find_replace {
    pt_value *from, *to;
};

int find_and_replace_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct find_replace *x = api->compile_alloc(c, sizeof(*x));
    if (!x)
        return -1;
    const char *from = api->attr_literal(c, "from");
    if (from && !*from) {
        api->compile_error(c, "from", "the text to find must not be empty");
        return -1;
    }
    x->from = api->attr_value(c, "from");
    x->to = api->attr_value(c, "to");
    if (!x->from || !x->to)
        return -1;
    *instance = x;
    return 0;
}

/* Every occurrence, left to right, non-overlapping; an empty `from` changes nothing. */
pt_status find_and_replace_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct find_replace *x = inst;
    pt_bytes from, to, body;
    int st;
    if ((st = ptl_eval(api, call, x->from, &from)) || (st = ptl_eval(api, call, x->to, &to)) ||
        (st = ptl_body_get(api, call, PT_MSG_CURRENT, &body)))
        return (pt_status)st;
    struct ptl_buf out;
    if (!find_and_replace_all(api, call, body, from, to, false, &out))
        return PT_OK;
    if (out.oom)
        return ptl_out_of_memory(api, call);
    return api->body_set(call, PT_MSG_CURRENT, ptl_buf_bytes(&out)) == 0 ? PT_OK : PT_ERROR;
}
