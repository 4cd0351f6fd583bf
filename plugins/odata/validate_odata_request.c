/*
 * validate_odata_request.c -- validate-odata-request: a request to an OData
 * API must follow the protocol.
 *
 * Checked, in this order (the first failure answers):
 *   - the version: OData-Version (v4) or DataServiceVersion (v1-v3), else
 *     default-odata-version, must be a version "N.M" within
 *     [min-odata-version, max-odata-version]; OData-MaxVersion
 *     (MaxDataServiceVersion) must not be below min-odata-version;
 *   - the system query options (query keys starting with '$', compared after
 *     percent-decoding; case-insensitively from 4.01 on, as 4.01 allows): each
 *     must be one the version defines, at most once; $top and $skip are
 *     non-negative integers, $count true/false (v4), $inlinecount
 *     allpages/none (v2/v3), $format json, xml, atom or a media type, and
 *     none is empty;
 *   - max-size: the body (read into memory, so within limits.bufferSize) is
 *     at most max-size bytes long.
 *
 * A failure is final at once, like return-response: 400 with OData's error
 * body -- {"error": {"code", "message"}} when the service speaks v4
 * (max-odata-version, else default-odata-version, is 4.0 or above),
 * {"error": {"code", "message": {"lang", "value"}}} for v1-v3 -- and the backend is not called
 * (on-error does not run: the response is already the OData error).  The
 * same JSON is put in error-variable-name.
 */
#include "odata.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct pt_attr_def validate_odata_request_attrs[] = {
    {"error-variable-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "context variable that receives the OData error body of a refused request"},
    {"default-odata-version", PT_ATTR_STRING, 0, "4.0", NULL, NULL, 0, 0,
     "the version of a request without OData-Version (DataServiceVersion)"},
    {"min-odata-version", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "the lowest version accepted"},
    {"max-odata-version", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "the highest version accepted"},
    {"max-size", PT_ATTR_INT, 0, NULL, NULL, NULL, 0, INT64_MAX, "largest request body accepted, in bytes"},
    {0},
};

struct vor {
    const char *var;   /* NULL: none */
    int def, min, max; /* versions as major * 100 + minor; min/max -1 when absent */
    int64_t max_size;  /* -1: unbounded */
};

/* "4.0", "4.01", "2.0;NetFx": major * 100 + minor, or -1. */
static int parse_version(pt_bytes v)
{
    v = ptl_trim(v);
    const char *semi = memchr(v.data ? v.data : "", ';', v.len);
    if (semi)
        v.len = (size_t)(semi - v.data);
    v = ptl_trim(v);
    size_t i = 0;
    int major = 0, minor = 0, nd = 0;
    while (i < v.len && v.data[i] >= '0' && v.data[i] <= '9' && nd < 3)
        major = major * 10 + (v.data[i++] - '0'), nd++;
    if (!nd || i >= v.len || v.data[i] != '.')
        return -1;
    i++;
    nd = 0;
    while (i < v.len && v.data[i] >= '0' && v.data[i] <= '9' && nd < 2)
        minor = minor * 10 + (v.data[i++] - '0'), nd++;
    if (!nd || i != v.len)
        return -1;
    return major * 100 + minor;
}

static const char *version_text(int v, char *buf, size_t n)
{
    snprintf(buf, n, v % 100 < 10 && v % 100 ? "%d.0%d" : "%d.%d", v / 100, v % 100);
    return buf;
}

static int attr_version(const struct pt_api *api, pt_compile *c, const char *name, int def)
{
    const char *s = api->attr_literal(c, name);
    if (!s)
        return def;
    int v = parse_version((pt_bytes){s, strlen(s)});
    if (v < 0 || v < 100) {
        api->compile_error(c, name, "'%s' is not an OData version (1.0, 2.0, 3.0, 4.0, 4.01)", s);
        return -2;
    }
    return v;
}

int validate_odata_request_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct vor *x = api->compile_alloc(c, sizeof(*x));
    if (!x) {
        api->compile_error(c, NULL, "out of memory");
        return -1;
    }
    x->var = api->attr_literal(c, "error-variable-name");
    if (x->var && !x->var[0])
        x->var = NULL;
    x->def = attr_version(api, c, "default-odata-version", 400);
    x->min = attr_version(api, c, "min-odata-version", -1);
    x->max = attr_version(api, c, "max-odata-version", -1);
    if (x->def == -2 || x->min == -2 || x->max == -2)
        return -1;
    if (x->min >= 0 && x->max >= 0 && x->min > x->max) {
        api->compile_error(c, "min-odata-version", "min-odata-version is above max-odata-version");
        return -1;
    }
    x->max_size = api->attr_int(c, "max-size", -1);
    *instance = x;
    return 0;
}

/* ---------------------------------------------------------------- errors */

/* Appends s as the inside of a JSON string: quotes, backslashes and controls escaped, invalid UTF-8 as '?'.
 */
static void json_text(struct ptl_buf *b, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            ptl_buf_ch(b, '\\');
            ptl_buf_ch(b, (char)c);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            ptl_buf_str(b, esc);
            i++;
        } else if (c < 0x80) {
            ptl_buf_ch(b, (char)c);
            i++;
        } else {
            uint32_t cp;
            size_t l = ptl_utf8_next((const unsigned char *)s + i, n - i, &cp);
            if (l) {
                ptl_buf_add(b, s + i, l);
                i += l;
            } else {
                ptl_buf_ch(b, '?');
                i++;
            }
        }
    }
}

/* Answers 400 with the OData error body (and fills the variable).  The body has the shape of the
   service's protocol (max-odata-version, else default-odata-version), whatever the client claimed. */
static pt_status refuse(const struct pt_api *api, pt_call *call, const struct vor *x, const char *code,
                        const char *msg)
{
    int version = x->max >= 0 ? x->max : x->def;
    struct ptl_buf b;
    ptl_buf_init(&b, api, call, 256);
    ptl_buf_lit(&b, "{\"error\":{\"code\":\"");
    json_text(&b, code, strlen(code));
    if (version >= 400) {
        ptl_buf_lit(&b, "\",\"message\":\"");
        json_text(&b, msg, strlen(msg));
        ptl_buf_lit(&b, "\"}}");
    } else {
        ptl_buf_lit(&b, "\",\"message\":{\"lang\":\"en-US\",\"value\":\"");
        json_text(&b, msg, strlen(msg));
        ptl_buf_lit(&b, "\"}}}");
    }
    if (b.oom)
        return ptl_out_of_memory(api, call);
    pt_bytes body = ptl_buf_bytes(&b);
    if (x->var && api->var_set(call, (pt_bytes){x->var, strlen(x->var)}, body) != 0)
        return PT_ERROR;
    if (api->set_status(call, 400, PTL_LIT("Bad Request")) != 0)
        return PT_ERROR;
    ptl_header_put(api, call, PT_MSG_RESPONSE, "Content-Type", "application/json");
    char vt[16];
    if (version >= 400)
        ptl_header_put(api, call, PT_MSG_RESPONSE, "OData-Version", version_text(version, vt, sizeof(vt)));
    else
        ptl_header_put(api, call, PT_MSG_RESPONSE, "DataServiceVersion", "1.0");
    if (api->body_set(call, PT_MSG_RESPONSE, body) != 0)
        return PT_ERROR;
    return api->respond(call);
}

/* --------------------------------------------------------- query options */

static const char *const options_v4[] = {"$filter",        "$select", "$expand",  "$orderby", "$top",
                                         "$skip",          "$count",  "$search",  "$format",  "$skiptoken",
                                         "$deltatoken",    "$apply",  "$compute", "$index",   "$levels",
                                         "$schemaversion", "$id",     NULL};
static const char *const options_v2[] = {"$filter",      "$select",   "$expand", "$orderby",
                                         "$top",         "$skip",     "$format", "$skiptoken",
                                         "$inlinecount", "$callback", NULL};

/* The option's index in the version's list, or -1. */
static int known_option(pt_bytes key, int version)
{
    const char *const *list = version >= 400 ? options_v4 : options_v2;
    for (int i = 0; list[i]; i++)
        if (version >= 401 ? ptl_bytes_ieq(key, list[i]) : ptl_bytes_is(key, list[i]))
            return i;
    return -1;
}

static bool all_digits(pt_bytes v)
{
    if (!v.len || v.len > 18)
        return false;
    for (size_t i = 0; i < v.len; i++)
        if (v.data[i] < '0' || v.data[i] > '9')
            return false;
    return true;
}

static bool format_ok(pt_bytes v)
{
    if (ptl_bytes_ieq(v, "json") || ptl_bytes_ieq(v, "xml") || ptl_bytes_ieq(v, "atom"))
        return true;
    /* a media type: token "/" token, then parameters */
    const char *semi = memchr(v.data, ';', v.len);
    pt_bytes m = {v.data, semi ? (size_t)(semi - v.data) : v.len};
    const char *slash = memchr(m.data, '/', m.len);
    if (!slash)
        return false;
    size_t tl = (size_t)(slash - m.data);
    return tl && ptl_is_token(m.data, tl) && m.len - tl - 1 > 0 && ptl_is_token(slash + 1, m.len - tl - 1);
}

/* Checks the option's value; NULL when fine, else what is wrong. */
static const char *value_problem(const char *name, pt_bytes v)
{
    if (!v.len)
        return "must not be empty";
    if (!strcmp(name, "$top") || !strcmp(name, "$skip"))
        return all_digits(v) ? NULL : "must be a non-negative integer";
    if (!strcmp(name, "$count"))
        return ptl_bytes_ieq(v, "true") || ptl_bytes_ieq(v, "false") ? NULL : "must be true or false";
    if (!strcmp(name, "$inlinecount"))
        return ptl_bytes_is(v, "allpages") || ptl_bytes_is(v, "none") ? NULL : "must be allpages or none";
    if (!strcmp(name, "$format"))
        return format_ok(v) ? NULL : "must be json, xml, atom or a media type";
    return NULL;
}

/* A short printable copy of a client's bytes for a message. */
static void shown(char *out, size_t n, pt_bytes s)
{
    size_t k = 0;
    for (size_t i = 0; i < s.len && k + 4 < n; i++)
        out[k++] = (unsigned char)s.data[i] >= 0x20 && (unsigned char)s.data[i] < 0x7f ? s.data[i] : '?';
    if (s.len > k && k + 4 <= n) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
}

/* ------------------------------------------------------------------- run */

pt_status validate_odata_request_run(const struct pt_api *api, pt_call *call, void *instance)
{
    const struct vor *x = instance;
    char msg[400], a[80], b[16], c[16];

    /* the version */
    pt_bytes hv;
    const char *hname = "OData-Version";
    int have = api->header_get(call, PT_MSG_REQUEST, PTL_LIT("OData-Version"), &hv, 1);
    if (have < 1) {
        hname = "DataServiceVersion";
        have = api->header_get(call, PT_MSG_REQUEST, PTL_LIT("DataServiceVersion"), &hv, 1);
    }
    int version = x->def;
    if (have >= 1) {
        version = parse_version(hv);
        if (version < 100) {
            shown(a, sizeof(a), hv);
            snprintf(msg, sizeof(msg), "The %s header '%s' is not a valid OData version.", hname, a);
            return refuse(api, call, x, "InvalidODataVersion", msg);
        }
    }
    if (x->min >= 0 && version < x->min) {
        snprintf(msg, sizeof(msg),
                 "The request's OData version %s is lower than the lowest supported version %s.",
                 version_text(version, b, sizeof(b)), version_text(x->min, c, sizeof(c)));
        return refuse(api, call, x, "UnsupportedODataVersion", msg);
    }
    if (x->max >= 0 && version > x->max) {
        snprintf(msg, sizeof(msg),
                 "The request's OData version %s is higher than the highest supported version %s.",
                 version_text(version, b, sizeof(b)), version_text(x->max, c, sizeof(c)));
        return refuse(api, call, x, "UnsupportedODataVersion", msg);
    }
    hname = "OData-MaxVersion";
    have = api->header_get(call, PT_MSG_REQUEST, PTL_LIT("OData-MaxVersion"), &hv, 1);
    if (have < 1) {
        hname = "MaxDataServiceVersion";
        have = api->header_get(call, PT_MSG_REQUEST, PTL_LIT("MaxDataServiceVersion"), &hv, 1);
    }
    if (have >= 1) {
        int maxv = parse_version(hv);
        if (maxv < 100) {
            shown(a, sizeof(a), hv);
            snprintf(msg, sizeof(msg), "The %s header '%s' is not a valid OData version.", hname, a);
            return refuse(api, call, x, "InvalidODataVersion", msg);
        }
        if (x->min >= 0 && maxv < x->min) {
            snprintf(msg, sizeof(msg),
                     "The %s %s of the request is lower than the lowest supported version %s.", hname,
                     version_text(maxv, b, sizeof(b)), version_text(x->min, c, sizeof(c)));
            return refuse(api, call, x, "UnsupportedODataVersion", msg);
        }
    }

    /* the system query options */
    struct ptl_qseg *segs;
    int n = ptl_query_split(api, call, api->query(call), &segs);
    if (n < 0)
        return ptl_out_of_memory(api, call);
    unsigned seen = 0;
    for (int i = 0; i < n; i++) {
        pt_bytes key = ptl_pct_decode(api, call, segs[i].key);
        if (!key.len || key.data[0] != '$')
            continue;
        int k = known_option(key, version);
        if (k < 0) {
            shown(a, sizeof(a), key);
            snprintf(msg, sizeof(msg), "The query option '%s' is not a system query option of OData %s.", a,
                     version_text(version, b, sizeof(b)));
            return refuse(api, call, x, "UnknownSystemQueryOption", msg);
        }
        const char *name = (version >= 400 ? options_v4 : options_v2)[k];
        if (seen & (1u << k)) {
            snprintf(msg, sizeof(msg), "The query option '%s' is given more than once.", name);
            return refuse(api, call, x, "DuplicateSystemQueryOption", msg);
        }
        seen |= 1u << k;
        pt_bytes raw = segs[i].raw.len > segs[i].key.len ? (pt_bytes){segs[i].raw.data + segs[i].key.len + 1,
                                                                      segs[i].raw.len - segs[i].key.len - 1}
                                                         : (pt_bytes){"", 0};
        pt_bytes v = ptl_pct_decode(api, call, raw);
        const char *why = value_problem(name, v);
        if (why) {
            snprintf(msg, sizeof(msg), "The value of the query option '%s' %s.", name, why);
            return refuse(api, call, x, "InvalidSystemQueryOptionValue", msg);
        }
    }

    /* the body's size: the framing headers are the gateway's (plugins do not see Content-Length), so
       the body is read (bounded by limits.bufferSize) and measured */
    if (x->max_size >= 0) {
        pt_bytes body;
        int rc = ptl_body_get(api, call, PT_MSG_REQUEST, &body);
        if (rc != 0)
            return rc;
        if ((int64_t)body.len > x->max_size) {
            snprintf(msg, sizeof(msg),
                     "The request's body is %zu bytes long and it exceeds the limit of %lld bytes.", body.len,
                     (long long)x->max_size);
            return refuse(api, call, x, "RequestBodyTooLarge", msg);
        }
    }
    return PT_OK;
}
