/*
 * report.c -- what the validation policies do with a problem: APIM's error
 * record {Name, Type, ValidationRule, Details, Action}, the errors variable
 * and the refusal.
 *
 * An action is ignore (nothing), detect (the record goes to the errors
 * variable and the debug log; the request goes on) or prevent (the record
 * goes there too, checking stops and the call fails).  A refusal on the
 * request side (inbound) is 400 with reason "Bad request" and the record's
 * public message, which echoes the problem; on the response side (outbound,
 * on-error) it is 502 with reason "Response not allowed" and a neutral
 * message that tells the client nothing of the backend.  context.lastError
 * carries what the client is told; the details are in the errors variable.
 *
 * The errors variable holds a JSON array text of the records, in the order
 * they were found; a statement that finds records appends them to what an
 * earlier statement left in the same variable.
 */
#include "validate.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const report_actions[] = {"ignore", "detect", "prevent", NULL};

int report_action_index(const char *s)
{
    for (int i = 0; s && report_actions[i]; i++)
        if (!strcmp(s, report_actions[i]))
            return i;
    return -1;
}

const char *report_fmt(const struct pt_api *api, pt_call *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return "";
    char *s = api->alloc(call, (size_t)n + 1);
    if (!s)
        return "";
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

void report_init(struct report *r, const struct pt_api *api, pt_call *call, const char *policy,
                 const char *variable, bool response)
{
    memset(r, 0, sizeof(*r));
    r->api = api;
    r->call = call;
    r->policy = policy;
    r->variable = variable && *variable ? variable : NULL;
    r->response = response; /* r->recs is made by the first record */
}

/* Appends s as a JSON string (quotes included); bytes below 0x20 escaped, the rest as is. */
static void json_str(struct ptl_buf *b, const char *s)
{
    ptl_buf_ch(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            ptl_buf_ch(b, '\\');
            ptl_buf_ch(b, (char)c);
        } else if (c == '\n') {
            ptl_buf_lit(b, "\\n");
        } else if (c == '\r') {
            ptl_buf_lit(b, "\\r");
        } else if (c == '\t') {
            ptl_buf_lit(b, "\\t");
        } else if (c < 0x20 || c == 0x7f) {
            char e[8];
            snprintf(e, sizeof(e), "\\u%04x", c);
            ptl_buf_str(b, e);
        } else {
            ptl_buf_ch(b, (char)c);
        }
    }
    ptl_buf_ch(b, '"');
}

/* Texts taken from requests may hold invalid UTF-8: those bytes become '?'
   so that the variable is valid JSON. */
static const char *clean_utf8(const struct pt_api *api, pt_call *call, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = ptl_utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (!k) {
            char *c = api->alloc(call, n + 1);
            if (!c)
                return "";
            memcpy(c, s, n + 1);
            for (size_t j = i; j < n;) {
                size_t m = ptl_utf8_next((const unsigned char *)c + j, n - j, &cp);
                if (!m) {
                    c[j++] = '?';
                } else {
                    j += m;
                }
            }
            return c;
        }
        i += k;
    }
    return s;
}

bool report_add(struct report *r, int action, const char *name, const char *type, const char *rule,
                const char *details, const char *public_msg)
{
    if (action == ACT_IGNORE || r->prevented)
        return r->prevented;
    const struct pt_api *api = r->api;
    name = clean_utf8(api, r->call, name ? name : "");
    details = clean_utf8(api, r->call, details ? details : "");
    if (!r->n)
        ptl_buf_init(&r->recs, api, r->call, 256);
    if (r->n++)
        ptl_buf_ch(&r->recs, ',');
    ptl_buf_lit(&r->recs, "{\"Name\":");
    json_str(&r->recs, name);
    ptl_buf_lit(&r->recs, ",\"Type\":");
    json_str(&r->recs, type ? type : "");
    ptl_buf_lit(&r->recs, ",\"ValidationRule\":");
    json_str(&r->recs, rule ? rule : "");
    ptl_buf_lit(&r->recs, ",\"Details\":");
    json_str(&r->recs, details);
    ptl_buf_lit(&r->recs, ",\"Action\":");
    json_str(&r->recs, report_actions[action]);
    ptl_buf_ch(&r->recs, '}');
    api->log(PT_LOG_LEVEL_DEBUG, "%s: %s %s %s: %s (%s)", r->policy, type ? type : "", rule ? rule : "", name,
             details, report_actions[action]);
    if (action == ACT_PREVENT) {
        r->prevented = true;
        r->public_msg = r->response  ? REPORT_NEUTRAL
                        : public_msg ? clean_utf8(api, r->call, public_msg)
                                     : details;
    }
    return r->prevented;
}

pt_status report_finish(struct report *r)
{
    const struct pt_api *api = r->api;
    if (r->recs.oom)
        return ptl_out_of_memory(api, r->call);
    if (r->n && r->variable) {
        pt_bytes name = {r->variable, strlen(r->variable)}, old;
        struct ptl_buf v;
        ptl_buf_init(&v, api, r->call, r->recs.n + 2);
        if (api->var_get(r->call, name, &old) == 0 && old.len >= 2 && old.data[0] == '[' &&
            old.data[old.len - 1] == ']') {
            pt_bytes inner = ptl_trim((pt_bytes){old.data + 1, old.len - 2});
            ptl_buf_add(&v, old.data, old.len - 1);
            if (inner.len)
                ptl_buf_ch(&v, ',');
        } else {
            ptl_buf_ch(&v, '[');
        }
        ptl_buf_add(&v, r->recs.p, r->recs.n);
        ptl_buf_ch(&v, ']');
        if (v.oom)
            return ptl_out_of_memory(api, r->call);
        api->var_set(r->call, name, ptl_buf_bytes(&v));
    }
    if (!r->prevented)
        return PT_OK;
    return api->fail(r->call, r->response ? 502 : 400, r->response ? "Response not allowed" : "Bad request",
                     r->public_msg);
}

int report_overrides(const struct pt_api *api, pt_compile *c, pt_element **elems, int n, const char *key,
                     struct override **out, int *nout)
{
    *out = NULL;
    *nout = 0;
    if (n <= 0)
        return 0;
    struct override *o = api->compile_alloc(c, sizeof(*o) * (size_t)n);
    for (int i = 0; i < n; i++) {
        const char *name = api->elem_literal(elems[i], key);
        const char *act = api->elem_literal(elems[i], "action");
        int a = report_action_index(act);
        if (!name || !*name) {
            api->compile_error(c, NULL, "every %s override needs a %s", key, key);
            return -1;
        }
        if (a < 0) {
            api->compile_error(c, NULL, "%s '%s': action must be ignore, detect or prevent", key, name);
            return -1;
        }
        o[i] = (struct override){name, a};
    }
    *out = o;
    *nout = n;
    return 0;
}

int report_override_action(const struct override *o, int n, pt_bytes name, bool icase, int def)
{
    for (int i = 0; i < n; i++) {
        size_t l = strlen(o[i].name);
        if (l == name.len &&
            (icase ? !strncasecmp(o[i].name, name.data, l) : !memcmp(o[i].name, name.data, l)))
            return o[i].action;
    }
    return def;
}

bool report_param(struct report *r, struct defs *d, const json_t *param, const struct report_kind *k,
                  pt_bytes name, pt_bytes value, int action)
{
    if (action == ACT_IGNORE)
        return false;
    const struct pt_api *api = r->api;
    pt_call *call = r->call;
    const char *nm = ptl_dup_bytes(api, call, name);
    if (!nm)
        nm = "";
    const char *msg;
    struct defs_target t;
    switch (defs_check_param(d, api, call, param, value, &msg, &t)) {
    case DEFS_P_OK:
        return false;
    case DEFS_P_PARSE:
        return report_add(
            r, action, nm, k->type, "IncorrectMessage",
            report_fmt(api, call, "Value of the %s %s cannot be parsed according to the definition. %s",
                       k->kind, nm, msg),
            report_fmt(api, call, "Value of the %s %s couldn't be parsed according to the definition. %s",
                       k->kind, nm, msg));
    case DEFS_P_INVALID:
        return report_add(r, action, nm, k->type, "IncorrectMessage",
                          report_fmt(api, call, "Value of the %s %s does not conform to the definition. %s",
                                     k->kind, nm, msg),
                          report_fmt(api, call,
                                     "The value of the %s %s does not conform to the definition. %s", k->kind,
                                     nm, msg));
    case DEFS_P_MISSING:
        if (t.api_schema)
            return report_add(r, action, "", "ApiSchema", "", msg, REPORT_NEUTRAL);
        return report_add(
            r, action, nm, k->type, "MissingDefinition",
            report_fmt(api, call,
                       "API's schema does not contain definition %s, which is associated with the %s "
                       "%s.",
                       t.name, k->kind, nm),
            REPORT_NEUTRAL);
    default:
        return report_add(r, action, nm, k->type, "ValidationError",
                          report_fmt(api, call, "%s %s cannot be validated. %s", k->Kind, nm, msg),
                          REPORT_NEUTRAL);
    }
}

bool report_unspecified(struct report *r, const struct report_kind *k, pt_bytes name, int action)
{
    if (action == ACT_IGNORE)
        return false;
    const char *nm = ptl_dup_bytes(r->api, r->call, name);
    const char *msg = report_fmt(r->api, r->call, "Unspecified %s %s is not allowed.", k->kind, nm ? nm : "");
    return report_add(r, action, nm, k->type, "Unspecified", msg, msg);
}

bool report_multiple(struct report *r, const struct report_kind *k, pt_bytes name, int action)
{
    if (action == ACT_IGNORE)
        return false;
    const char *nm = ptl_dup_bytes(r->api, r->call, name);
    const char *msg = report_fmt(r->api, r->call, "%s cannot contain multiple values for the %s %s.",
                                 r->response ? "Response" : "Request", k->kind, nm ? nm : "");
    return report_add(r, action, nm, k->type, "IncorrectMessage", msg, msg);
}

bool report_required(struct report *r, const struct report_kind *k, pt_bytes name, int action)
{
    if (action == ACT_IGNORE)
        return false;
    const char *nm = ptl_dup_bytes(r->api, r->call, name);
    const char *msg = report_fmt(r->api, r->call, "%s must contain the required %s %s.",
                                 r->response ? "Response" : "Request", k->kind, nm ? nm : "");
    return report_add(r, action, nm, k->type, "IncorrectMessage", msg, msg);
}

const json_t *report_find_param(const json_t *list, pt_bytes name, bool icase)
{
    size_t i;
    const json_t *p;
    json_array_foreach(list, i, p)
    {
        const json_t *n = json_object_get(p, "name");
        size_t l = json_string_length(n);
        const char *s = json_string_value(n);
        if (s && l == name.len && (icase ? !strncasecmp(s, name.data, l) : !memcmp(s, name.data, l)))
            return p;
    }
    return NULL;
}

/* Headers every message may carry whatever its definition says: the
   protocol's (connection management, framing, routing), the entity's
   (content negotiation, caching, validators) and the gateway's own (request
   ids, the subscription key headers, forwarding).  Sorted for bsearch. */
static const char *const standard_request[] = {
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "authorization",
    "cache-control",
    "connection",
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "cookie",
    "date",
    "expect",
    "forwarded",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "keep-alive",
    "max-forwards",
    "ocp-apim-subscription-key",
    "ocp-apim-trace",
    "origin",
    "pragma",
    "proxy-authorization",
    "proxy-connection",
    "range",
    "referer",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "via",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-proto",
    "x-request-id",
};

static const char *const standard_response[] = {
    "accept-ranges",
    "access-control-allow-credentials",
    "access-control-allow-headers",
    "access-control-allow-methods",
    "access-control-allow-origin",
    "access-control-expose-headers",
    "access-control-max-age",
    "age",
    "cache-control",
    "connection",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expires",
    "keep-alive",
    "last-modified",
    "pragma",
    "proxy-authenticate",
    "server",
    "strict-transport-security",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "vary",
    "via",
    "x-request-id",
};

static int cmp_name(const void *key, const void *elem)
{
    return strcmp(key, *(const char *const *)elem);
}

bool report_standard_header(pt_bytes name, bool response)
{
    char low[64];
    if (name.len >= sizeof(low))
        return false;
    for (size_t i = 0; i < name.len; i++)
        low[i] = ptl_lower(name.data[i]);
    low[name.len] = '\0';
    if (response)
        return bsearch(low, standard_response, sizeof(standard_response) / sizeof(*standard_response),
                       sizeof(char *), cmp_name) != NULL;
    return bsearch(low, standard_request, sizeof(standard_request) / sizeof(*standard_request),
                   sizeof(char *), cmp_name) != NULL;
}
