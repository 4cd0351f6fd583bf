/*
 * ip_filter.c -- ip-filter: allows only, or forbids, callers by address
 * and range, IPv4 and IPv6.
 */
#include "access.h"

#include <arpa/inet.h>
#include <string.h>

static const struct pt_attr_def range_attrs[] = {
    {"from", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "first address"},
    {"to", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "last address"},
    {0},
};

const struct pt_attr_def ip_filter_attrs[] = {
    {"action", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "allow: only these callers; forbid: everyone but these (an expression may choose per request)"},
    {"address", PT_ATTR_STRING, PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0, "an IPv4 or IPv6 address"},
    {"address-range", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, range_attrs, 0, 0,
     "from and to, inclusive"},
    {0},
};

struct ip16 {
    unsigned char b[16];
};

struct ip_filter {
    bool allow;
    pt_value *action; /* an expression choosing allow or forbid; NULL when literal */
    struct ip16 *lo, *hi;
    int n;
};

/* Any address as 16 bytes (IPv4 mapped into ::ffff:0:0/96). */
static bool parse_ip(const char *s, struct ip16 *out)
{
    unsigned char v4[4];
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, s, v4) == 1) {
        out->b[10] = out->b[11] = 0xff;
        memcpy(out->b + 12, v4, 4);
        return true;
    }
    return inet_pton(AF_INET6, s, out->b) == 1;
}

int ip_filter_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct ip_filter *f = api->compile_alloc(c, sizeof(*f));
    const char *action = api->attr_literal(c, "action");
    if (action) {
        if (strcmp(action, "allow") && strcmp(action, "forbid")) {
            api->compile_error(c, "action", "'%s' is neither allow nor forbid", action);
            return -1;
        }
        f->allow = !strcmp(action, "allow");
    } else
        f->action = api->attr_value(c, "action");
    pt_value **addrs;
    pt_element **ranges;
    int na = api->attr_values(c, "address", &addrs), nr = api->attr_elements(c, "address-range", &ranges);
    if (na + nr == 0) {
        api->compile_error(c, NULL, "needs at least one address or address-range");
        return -1;
    }
    f->lo = api->compile_alloc(c, sizeof(*f->lo) * (size_t)(na + nr));
    f->hi = api->compile_alloc(c, sizeof(*f->hi) * (size_t)(na + nr));
    for (int i = 0; i < na; i++) {
        pt_bytes b;
        char s[64];
        if (api->eval(NULL, addrs[i], &b) != 0 || b.len >= sizeof(s)) {
            api->compile_error(c, "address", "addresses are written out, not expressions");
            return -1;
        }
        memcpy(s, b.data, b.len);
        s[b.len] = '\0';
        if (!parse_ip(s, &f->lo[f->n])) {
            api->compile_error(c, "address", "'%s' is not an IPv4 or IPv6 address", s);
            return -1;
        }
        f->hi[f->n] = f->lo[f->n];
        f->n++;
    }
    for (int i = 0; i < nr; i++) {
        const char *from = api->elem_literal(ranges[i], "from"), *to = api->elem_literal(ranges[i], "to");
        if (!from || !parse_ip(from, &f->lo[f->n]) || !to || !parse_ip(to, &f->hi[f->n]) ||
            memcmp(f->lo[f->n].b, f->hi[f->n].b, 16) > 0) {
            api->compile_error(c, "address-range", "'%s'..'%s' is not a range of addresses (from <= to)",
                               from ? from : "", to ? to : "");
            return -1;
        }
        f->n++;
    }
    *instance = f;
    return 0;
}

pt_status ip_filter_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct ip_filter *f = inst;
    bool allow = f->allow;
    if (f->action) {
        pt_bytes a;
        int st = ptl_eval(api, call, f->action, &a);
        if (st)
            return (pt_status)st;
        if (!ptl_bytes_is(a, "allow") && !ptl_bytes_is(a, "forbid"))
            return api->fail(call, 500, "ExpressionValueEvaluationFailure",
                             "ip-filter: action must be allow or forbid");
        allow = ptl_bytes_is(a, "allow");
    }
    pt_bytes ipb = api->fact(call, PT_FACT_CLIENT_IP);
    char *ip = ptl_dup_bytes(api, call, ipb);
    struct ip16 a;
    if (!ip || !parse_ip(ip, &a))
        return api->fail(call, 403, "FailedToParseCallerIP",
                         "Failed to parse the caller IP address. Access denied.");
    bool hit = false;
    for (int i = 0; i < f->n && !hit; i++)
        hit = memcmp(a.b, f->lo[i].b, 16) >= 0 && memcmp(a.b, f->hi[i].b, 16) <= 0;
    if (allow && !hit)
        return api->fail(call, 403, "CallerIpNotAllowed", "Caller IP address is not allowed. Access denied.");
    if (!allow && hit)
        return api->fail(call, 403, "CallerIpBlocked", "Caller IP address is blocked. Access denied.");
    return PT_OK;
}
