/*
 * pt_mgmt_filter -- the OData query options of the management API's lists:
 * $filter (conditions joined by "and"), $top and $skip, and the page a
 * list answers with.  The parser and the matching work on text and JSON
 * objects only; pt_mgmt_filter_send_page puts them to a request.
 *
 *   filter    = condition *( "and " condition )     at most PT_MGMT_FILTER_MAX
 *   condition = field " " op " " value     op: eq ne ge gt le lt
 *             | ( "contains(" | "startswith(" | "endswith(" ) field "," value ")"
 *   value     = "'" text "'"  ('' in text for a quote) | a bare word (true, 3)
 *             | "datetime'" text "'"  (OData v3's literal, as APIM's reports take it)
 *
 * Spaces may come before and after a condition and after the comma and
 * before ")" of a function; elsewhere only the single spaces shown.  A field
 * is the name of a top-level member, as written (up to 63 characters); a
 * quoted value keeps its first 255.  Function names and "and" are read
 * without case, eq and ne in lower case only.  An empty filter has no
 * conditions.
 */
#include "mgmt/pt_mgmt_int.h"

#include <errno.h>
#include <event2/http.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- $filter */

int pt_mgmt_filter_parse(const char *text, struct pt_mgmt_filter_cond *c, int max)
{
    int n = 0;
    const char *p = text;
    while (*p) {
        while (*p == ' ')
            p++;
        if (n == max)
            return -1;
        struct pt_mgmt_filter_cond *x = &c[n];
        memset(x, 0, sizeof(*x));
        const char *fn = NULL;
        static const char *const fns[] = {"contains(", "startswith(", "endswith(", NULL};
        for (int i = 0; fns[i]; i++)
            if (!strncasecmp(p, fns[i], strlen(fns[i])))
                fn = fns[i];
        if (fn) {
            snprintf(x->op, sizeof(x->op), "%.*s", (int)strlen(fn) - 1, fn);
            p += strlen(fn);
            size_t k = strcspn(p, ",");
            if (!p[k] || k >= sizeof(x->field))
                return -1;
            snprintf(x->field, sizeof(x->field), "%.*s", (int)k, p);
            p += k + 1;
            while (*p == ' ')
                p++;
        } else {
            size_t k = strcspn(p, " ");
            if (!p[k] || k >= sizeof(x->field))
                return -1;
            snprintf(x->field, sizeof(x->field), "%.*s", (int)k, p);
            p += k + 1;
            k = strcspn(p, " ");
            static const char *const ops[] = {"eq", "ne", "ge", "gt", "le", "lt", NULL};
            bool known = false;
            for (int i = 0; ops[i] && k == 2; i++)
                known |= !strncmp(p, ops[i], 2);
            if (!p[k] || !known)
                return -1;
            snprintf(x->op, sizeof(x->op), "%.*s", (int)k, p);
            p += k + 1;
        }
        /* the value: 'text' ('' for a quote), or a bare word (true, 3) */
        size_t vn = 0;
        if (!strncasecmp(p, "datetime'", 9))
            p += 8;
        if (*p == '\'') {
            p++;
            for (;;) {
                if (!*p)
                    return -1;
                if (*p == '\'' && p[1] == '\'') {
                    p += 2;
                    if (vn + 1 < sizeof(x->value))
                        x->value[vn++] = '\'';
                    continue;
                }
                if (*p == '\'') {
                    p++;
                    break;
                }
                if (vn + 1 < sizeof(x->value))
                    x->value[vn++] = *p;
                p++;
            }
        } else {
            while (*p && *p != ' ' && *p != ')' && vn + 1 < sizeof(x->value))
                x->value[vn++] = *p++;
            if (!vn)
                return -1;
        }
        if (fn) {
            while (*p == ' ')
                p++;
            if (*p++ != ')')
                return -1;
        }
        n++;
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        if (strncasecmp(p, "and ", 4))
            return -1;
        p += 4;
    }
    return n;
}

/* ------------------------------------------------------------- conditions */

bool pt_mgmt_filter_holds(const struct pt_mgmt_filter_cond *c, const json_t *o)
{
    const json_t *v = json_object_get(o, c->field);
    char buf[64];
    const char *s = NULL;
    if (json_is_string(v))
        s = json_string_value(v);
    else if (json_is_boolean(v))
        s = json_is_true(v) ? "true" : "false";
    else if (json_is_integer(v)) {
        snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
        s = buf;
    } else if (json_is_null(v) || !v)
        s = "";
    if (!s)
        return false;
    if (!strcmp(c->op, "eq"))
        return !strcasecmp(s, c->value);
    if (!strcmp(c->op, "ne"))
        return strcasecmp(s, c->value) != 0;
    if (c->op[0] == 'g' || c->op[0] == 'l') { /* ge gt le lt: text order, without case */
        int d = strcasecmp(s, c->value);
        return c->op[0] == 'g' ? (c->op[1] == 'e' ? d >= 0 : d > 0) : (c->op[1] == 'e' ? d <= 0 : d < 0);
    }
    if (!strcmp(c->op, "contains"))
        return strcasestr(s, c->value) != NULL;
    size_t sl = strlen(s), vl = strlen(c->value);
    if (!strcmp(c->op, "startswith"))
        return sl >= vl && !strncasecmp(s, c->value, vl);
    return sl >= vl && !strcasecmp(s + sl - vl, c->value);
}

/* ------------------------------------------------------------------ pages */

json_t *pt_mgmt_filter_page(const json_t *items, const struct pt_mgmt_filter_cond *c, int n, long top,
                            long skip, long *count)
{
    json_t *matched = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        bool ok = true;
        for (int k = 0; k < n && ok; k++)
            ok = pt_mgmt_filter_holds(&c[k], it);
        if (ok)
            json_array_append(matched, it);
    }
    *count = (long)json_array_size(matched);
    json_t *page = json_array();
    for (long k = skip; k < *count && k < skip + top; k++)
        json_array_append(page, json_array_get(matched, (size_t)k));
    json_decref(matched);
    return page;
}

json_t *pt_mgmt_filter_envelope(struct mreq *m, json_t *page, long count, long top, long skip,
                                const char *const *keep)
{
    json_t *out = json_object();
    json_object_set_new(out, "value", page);
    json_object_set_new(out, "count", json_integer(count));
    if (skip + top >= count) {
        json_object_set_new(out, "nextLink", json_null());
        return out;
    }
    const char *uri = evhttp_request_get_uri(m->r);
    const char *q = strchr(uri, '?');
    char link[4096];
    int k = snprintf(link, sizeof(link), "%.*s?", (int)(q ? q - uri : (long)strlen(uri)), uri);
    for (int i = 0; keep[i]; i++) {
        const char *v = pt_mgmt_req_param(m, keep[i]);
        if (!v)
            continue;
        char *enc = evhttp_encode_uri(v);
        if (k < (int)sizeof(link))
            k += snprintf(link + k, sizeof(link) - (size_t)k, "%s=%s&", keep[i], enc);
        free(enc);
    }
    if (k < (int)sizeof(link))
        snprintf(link + k, sizeof(link) - (size_t)k, "$top=%ld&$skip=%ld", top, skip + top);
    json_object_set_new(out, "nextLink", json_string(link));
    return out;
}

void pt_mgmt_filter_send_page(struct mreq *m, json_t *items)
{
    const char *ftxt = pt_mgmt_req_param(m, "$filter"), *ttxt = pt_mgmt_req_param(m, "$top"),
               *stxt = pt_mgmt_req_param(m, "$skip");
    struct pt_mgmt_filter_cond conds[PT_MGMT_FILTER_MAX];
    int nc = 0;
    bool order = false; /* ge, gt, le, lt: the reports' timestamps, not entity lists */
    if (ftxt && (nc = pt_mgmt_filter_parse(ftxt, conds, PT_MGMT_FILTER_MAX)) >= 0)
        for (int i = 0; i < nc; i++)
            order |= strcmp(conds[i].op, "eq") && strcmp(conds[i].op, "ne") && strchr("gl", conds[i].op[0]);
    if (ftxt && (nc < 0 || order)) {
        json_decref(items);
        pt_mgmt_req_send_error(m, 400, "InvalidFilter",
                               "$filter '%s' is not understood (use field eq 'value', ne, "
                               "contains(field,'x'), startswith(field,'x'), endswith(field,'x'), "
                               "joined by and)",
                               ftxt);
        return;
    }
    long top = 100, skip = 0;
    char *end;
    if (ttxt) {
        top = strtol(ttxt, &end, 10);
        if (*end || top < 1 || top > 1000) {
            json_decref(items);
            pt_mgmt_req_send_error(m, 400, "InvalidParameter", "$top must be an integer from 1 to 1000");
            return;
        }
    }
    if (stxt) {
        errno = 0;
        skip = strtol(stxt, &end, 10);
        if (*end || skip < 0 || errno == ERANGE || skip > 1000000000L) {
            json_decref(items);
            pt_mgmt_req_send_error(m, 400, "InvalidParameter",
                                   "$skip must be an integer from 0 to 1000000000");
            return;
        }
    }
    long count;
    json_t *page = pt_mgmt_filter_page(items, conds, nc, top, skip, &count);
    json_decref(items);
    static const char *const keep[] = {"$filter", NULL};
    json_t *out = pt_mgmt_filter_envelope(m, page, count, top, skip, keep);
    char tag[32];
    snprintf(tag, sizeof(tag), "v%llu", (unsigned long long)pt_store_version(pt_mgmt_req_store));
    pt_mgmt_req_send_json(m, 200, out, tag);
}
