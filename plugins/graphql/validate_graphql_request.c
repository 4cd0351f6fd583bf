/*
 * validate_graphql_request.c -- validate-graphql-request: APIM's GraphQL
 * request validation and field authorization.
 *
 * The request.  POST with Content-Type application/json carries
 * {query, operationName?, variables?, extensions?}; POST application/graphql
 * carries the query alone; GET carries ?query=&operationName=&variables=.
 * A POST without a Content-Type is read as JSON when it starts with '{'.
 * A request is refused when the backend could read another query than the
 * one checked: query or operationName given twice (JSON members or query
 * parameters), or a POST with a query parameter named query.
 *
 * The order of the checks: size (the body, or the GET query string, against
 * max-size; a Content-Length above it is refused before the body is read),
 * the request's shape, syntax (pt_graphql_parse), the operation
 * (operationName), validation against the API's schema, depth (max-depth),
 * the number of fields (at most 250, as APIM), then authorization.
 *
 * The schema is the API's schema "graphql" (SDK 1.5 schema_definition,
 * else the API's first schema when it is a GraphQL one).  It is parsed once
 * per generation and kept in the instance, keyed by the definition's
 * pointer, which the gateway keeps stable for a generation; a mutex guards
 * the small table (workers share the instance), the schemas themselves are
 * read-only once built.  Without a schema (or with one that does not
 * parse, logged once) the request is still checked for syntax, the
 * document's own rules, variables, size, depth and field count, and rules
 * apply with the parent types the document itself names: top-level fields
 * have their root type (Query, Mutation, Subscription), fields under a
 * fragment or inline fragment its type condition, deeper fields an unknown
 * type that only a "*" segment matches.
 *
 * Authorization.  A rule's path is "/Type/field" or "/name", each segment a
 * name in which '*' matches any run of characters.  "/Type/field" matches a
 * field of that parent type; "/name" matches every field of type `name`, a
 * top-level field `name` (APIM's "/listUsers"), and the introspection
 * fields (__schema, __type) by name, so "/__*" is the introspection system.
 * __typename is never introspection: only a rule naming it literally
 * matches it.  For each field the matching rules are tried from the most
 * specific (two segments before one, then the most literal characters,
 * then document order): allow lets the field through, remove takes it out
 * of the query sent to the backend (a field error), reject fails the whole
 * request, ignore goes on to the next rule; no rule is allow.  An action
 * may be an expression; "deny" (APIM's sample) is read as reject.
 *
 * WebSocket.  An upgrade request (graphql-ws or graphql-transport-ws
 * subscriptions) passes untouched: the tunnel carries its messages
 * without looking into them, so the subscriptions, queries and mutations
 * sent over it are not validated.  Keep the policy from being the only
 * guard of a WebSocket operation.
 *
 * Answers.  A request error (invalid body, syntax, validation, size, depth,
 * fields, reject) is answered at once with 200 and Content-Type
 * application/json: {"errors": [{"message", "locations"?, "extensions":
 * {"code"}}]} and no "data" (GraphQL over HTTP's application/json answer;
 * APIM answers request errors with an errors block and no data block).
 * The backend is not called and outbound does not run.  Removed fields:
 * the rewritten query goes to the backend (the JSON body re-serialized
 * with the same members, the query parameter re-encoded), the field errors
 * go to the variables only (the backend's answer is not rewritten); when
 * nothing of the operation is left the gateway answers {"errors": [...],
 * "data": null} itself.  Every error list is also put as JSON text into
 * the variable GraphQLErrors and into error-variable-name.
 */
#include "graphql.h"

#include "../../core/base/pt_graphql.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define APIM_MAX_SIZE 102400
#define APIM_MAX_FIELDS 250
#define PARSE_MAX_DEPTH 64
#define CACHE_SLOTS 64

static const struct pt_attr_def rule_attrs[] = {
    {"path", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0,
     "the fields the rule applies to: /Type/field, /Type, /field (top level) or /__* (introspection); '*' "
     "matches any run of characters"},
    {"action", PT_ATTR_STRING, PT_ATTR_EXPR, "allow", NULL, NULL, 0, 0,
     "allow, remove (the field is taken out of the request), reject (the request fails) or ignore (the next "
     "rule decides); may be an expression"},
    {0},
};

static const struct pt_attr_def authorize_attrs[] = {
    {"rule", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, rule_attrs, 0, 0, "one authorization rule"},
    {0},
};

const struct pt_attr_def validate_graphql_request_attrs[] = {
    {"error-variable-name", PT_ATTR_STRING, PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "a variable that receives the errors (a JSON array), besides GraphQLErrors"},
    {"max-size", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "the largest request payload in bytes, at most 102400 (an integer or an expression)"},
    {"max-depth", PT_ATTR_STRING, PT_ATTR_EXPR, "6", NULL, NULL, 0, 0,
     "the deepest nesting of fields (a top-level field is depth 1; an integer or an expression)"},
    {"authorize", PT_ATTR_ELEMENT, 0, NULL, NULL, authorize_attrs, 0, 0, "field authorization rules"},
    {0},
};

enum { ACT_ALLOW, ACT_REMOVE, ACT_REJECT, ACT_IGNORE, ACT_EXPR };

struct rule {
    const char *seg[2];
    int nseg;
    int score; /* specificity */
    int order;
    int action; /* ACT_*, ACT_EXPR: evaluate `value` */
    pt_value *value;
    const char *path;
};

struct cached {
    const char *key; /* the schema definition's pointer */
    size_t len;
    struct pt_graphql_schema *schema; /* NULL: it does not parse (logged once) */
};

struct vgr {
    pt_value *errvar, *max_size_v, *max_depth_v;
    int64_t max_size, max_depth; /* literals, or -1 */
    struct rule *rules;          /* sorted by specificity */
    int nrules;
    pthread_mutex_t lock;
    struct cached cache[CACHE_SLOTS];
    int ncache;
};

/* ============================================================ compile */

static int parse_action(const char *s, size_t n)
{
    static const char *const names[] = {"allow", "remove", "reject", "ignore", "deny"};
    static const int acts[] = {ACT_ALLOW, ACT_REMOVE, ACT_REJECT, ACT_IGNORE, ACT_REJECT};
    for (int i = 0; i < 5; i++)
        if (strlen(names[i]) == n && !strncmp(names[i], s, n))
            return acts[i];
    return -1;
}

static bool valid_segment(const char *s, size_t n)
{
    if (!n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(c == '_' || c == '*' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9')))
            return false;
    }
    return true;
}

static int rule_cmp(const void *a, const void *b)
{
    const struct rule *x = a, *y = b;
    if (x->nseg != y->nseg)
        return y->nseg - x->nseg;
    if (x->score != y->score)
        return y->score - x->score;
    return x->order - y->order;
}

static int literal_int(const struct pt_api *api, pt_compile *c, const char *attr, pt_value *v, int64_t lo,
                       int64_t hi, int64_t *out)
{
    *out = -1;
    if (!v || !api->value_is_literal(v))
        return 0;
    pt_bytes b;
    if (api->eval(NULL, v, &b) != 0)
        return 0;
    char tmp[32];
    char *end;
    if (b.len == 0 || b.len >= sizeof(tmp))
        goto bad;
    memcpy(tmp, b.data, b.len);
    tmp[b.len] = '\0';
    long long n = strtoll(tmp, &end, 10);
    if (*end || n < lo || n > hi)
        goto bad;
    *out = n;
    return 0;
bad:
    api->compile_error(c, attr, "must be an integer from %lld to %lld", (long long)lo, (long long)hi);
    return -1;
}

int validate_graphql_request_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct vgr *x = calloc(1, sizeof(*x));
    if (!x) {
        api->compile_error(c, NULL, "out of memory");
        return -1;
    }
    pthread_mutex_init(&x->lock, NULL);
    *instance = x;
    x->errvar = api->attr_value(c, "error-variable-name");
    x->max_size_v = api->attr_value(c, "max-size");
    x->max_depth_v = api->attr_value(c, "max-depth");
    if (literal_int(api, c, "max-size", x->max_size_v, 1, APIM_MAX_SIZE, &x->max_size) ||
        literal_int(api, c, "max-depth", x->max_depth_v, 1, 1000000, &x->max_depth))
        return -1;
    if (!x->max_depth_v)
        x->max_depth = 6;
    pt_element **auth;
    if (api->attr_elements(c, "authorize", &auth) > 0) {
        pt_element **rules;
        int n = api->elem_elements(auth[0], "rule", &rules);
        x->rules = api->compile_alloc(c, sizeof(*x->rules) * (size_t)(n > 0 ? n : 1));
        for (int i = 0; i < n; i++) {
            struct rule *r = &x->rules[x->nrules];
            const char *path = api->elem_literal(rules[i], "path");
            if (!path || path[0] != '/') {
                api->compile_error(c, "authorize", "rule %d: path must be /Type/field, /Type or /field",
                                   i + 1);
                return -1;
            }
            r->path = path;
            const char *p = path + 1;
            const char *slash = strchr(p, '/');
            size_t l1 = slash ? (size_t)(slash - p) : strlen(p);
            if (!valid_segment(p, l1) ||
                (slash && (!valid_segment(slash + 1, strlen(slash + 1)) || strchr(slash + 1, '/')))) {
                api->compile_error(c, "authorize",
                                   "rule %d: path %s must be /Type/field, /Type or /field (names, "
                                   "'*' as a wildcard)",
                                   i + 1, path);
                return -1;
            }
            char *s1 = api->compile_alloc(c, l1 + 1);
            memcpy(s1, p, l1);
            r->seg[0] = s1;
            r->nseg = 1;
            if (slash) {
                r->seg[1] = slash + 1;
                r->nseg = 2;
            }
            for (const char *q = path; *q; q++)
                if (*q != '*' && *q != '/')
                    r->score++;
            r->order = i;
            r->value = api->elem_value(rules[i], "action");
            r->action = ACT_ALLOW;
            if (r->value) {
                if (api->value_is_literal(r->value)) {
                    pt_bytes b;
                    api->eval(NULL, r->value, &b);
                    r->action = parse_action(b.data, b.len);
                    if (r->action < 0) {
                        api->compile_error(c, "authorize",
                                           "rule %d: action must be allow, remove, reject or ignore", i + 1);
                        return -1;
                    }
                } else
                    r->action = ACT_EXPR;
            }
            x->nrules++;
        }
        qsort(x->rules, (size_t)x->nrules, sizeof(*x->rules), rule_cmp);
    }
    return 0;
}

void validate_graphql_request_free(void *inst)
{
    struct vgr *x = inst;
    if (!x)
        return;
    for (int i = 0; i < x->ncache; i++)
        pt_graphql_schema_free(x->cache[i].schema);
    pthread_mutex_destroy(&x->lock);
    free(x);
}

/* ============================================================ JSON out */

static void json_str(struct ptl_buf *b, const char *s, size_t n)
{
    ptl_buf_ch(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            ptl_buf_ch(b, '\\');
            ptl_buf_ch(b, (char)c);
        } else if (c == '\n')
            ptl_buf_lit(b, "\\n");
        else if (c == '\r')
            ptl_buf_lit(b, "\\r");
        else if (c == '\t')
            ptl_buf_lit(b, "\\t");
        else if (c < 0x20 || c == 0x7F) {
            char e[8];
            snprintf(e, sizeof(e), "\\u%04x", c);
            ptl_buf_add(b, e, 6);
        } else if (c >= 0x80) {
            uint32_t cp;
            size_t k = ptl_utf8_next((const unsigned char *)s + i, n - i, &cp);
            if (!k) {
                ptl_buf_lit(b, "\\ufffd");
                continue;
            }
            ptl_buf_add(b, s + i, k);
            i += k - 1;
        } else
            ptl_buf_ch(b, (char)c);
    }
    ptl_buf_ch(b, '"');
}

static void json_cstr(struct ptl_buf *b, const char *s)
{
    json_str(b, s, strlen(s));
}

/* A parsed JSON value back to text (numbers keep their source text). */
static void json_write(struct ptl_buf *b, const struct ptl_jv *v)
{
    switch (v->t) {
    case PTL_J_STR:
        json_str(b, v->s, v->n);
        break;
    case PTL_J_ARR:
    case PTL_J_OBJ:
        ptl_buf_ch(b, v->t == PTL_J_ARR ? '[' : '{');
        for (const struct ptl_jv *e = v->first; e; e = e->next) {
            if (e != v->first)
                ptl_buf_ch(b, ',');
            if (v->t == PTL_J_OBJ) {
                json_str(b, e->key, e->klen);
                ptl_buf_ch(b, ':');
            }
            json_write(b, e);
        }
        ptl_buf_ch(b, v->t == PTL_J_ARR ? ']' : '}');
        break;
    default:
        ptl_buf_add(b, v->s, v->n);
    }
}

/* ============================================================ the request */

struct gqerr {
    const char *message, *code;
    int line, column;
    struct gqerr *next;
};

struct req {
    const struct pt_api *api;
    pt_call *call;
    const struct vgr *x;
    struct gqerr *errors, **tail;
    int nerrors;
    /* authorization */
    int *decided; /* per rule: -1 not evaluated yet, else ACT_* */
    bool rejected, removed, failed;
    pt_status fail_status;
};

static void add_error(struct req *r, int line, int column, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void add_error(struct req *r, int line, int column, const char *code, const char *fmt, ...)
{
    struct gqerr *e = r->api->alloc(r->call, sizeof(*e));
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!e)
        return;
    e->message = ptl_dup_bytes(r->api, r->call, (pt_bytes){msg, strlen(msg)});
    e->code = code;
    e->line = line;
    e->column = column;
    if (!e->message)
        return;
    *r->tail = e;
    r->tail = &e->next;
    r->nerrors++;
}

static void errors_json(struct req *r, struct ptl_buf *b)
{
    ptl_buf_ch(b, '[');
    for (struct gqerr *e = r->errors; e; e = e->next) {
        if (e != r->errors)
            ptl_buf_ch(b, ',');
        ptl_buf_lit(b, "{\"message\":");
        json_cstr(b, e->message);
        if (e->line > 0) {
            char loc[64];
            snprintf(loc, sizeof(loc), ",\"locations\":[{\"line\":%d,\"column\":%d}]", e->line, e->column);
            ptl_buf_str(b, loc);
        }
        ptl_buf_lit(b, ",\"extensions\":{\"code\":");
        json_cstr(b, e->code);
        ptl_buf_lit(b, "}}");
    }
    ptl_buf_ch(b, ']');
}

/* The errors into GraphQLErrors and error-variable-name; 0, or the status run() must return. */
static int set_error_vars(struct req *r)
{
    struct ptl_buf b;
    ptl_buf_init(&b, r->api, r->call, 256);
    errors_json(r, &b);
    if (b.oom)
        return ptl_out_of_memory(r->api, r->call);
    pt_bytes v = ptl_buf_bytes(&b);
    r->api->var_set(r->call, PTL_LIT("GraphQLErrors"), v);
    if (r->x->errvar) {
        pt_bytes name;
        int st = ptl_eval(r->api, r->call, r->x->errvar, &name);
        if (st)
            return st;
        if (name.len)
            r->api->var_set(r->call, name, v);
    }
    return 0;
}

/* Answers the request with the errors (and "data": null when with_data). */
static pt_status answer(struct req *r, bool with_data)
{
    int st = set_error_vars(r);
    if (st)
        return (pt_status)st;
    struct ptl_buf b;
    ptl_buf_init(&b, r->api, r->call, 256);
    ptl_buf_lit(&b, "{\"errors\":");
    errors_json(r, &b);
    if (with_data)
        ptl_buf_lit(&b, ",\"data\":null");
    ptl_buf_ch(&b, '}');
    if (b.oom)
        return ptl_out_of_memory(r->api, r->call);
    const struct pt_api *api = r->api;
    api->set_status(r->call, 200, PTL_LIT("OK"));
    ptl_header_put(api, r->call, PT_MSG_RESPONSE, "Content-Type", "application/json; charset=utf-8");
    api->body_set(r->call, PT_MSG_RESPONSE, ptl_buf_bytes(&b));
    return api->respond(r->call);
}

static pt_status request_error(struct req *r, int line, int column, const char *code, const char *msg)
{
    add_error(r, line, column, code, "%s", msg);
    return answer(r, false);
}

/* ---- the schema ---- */

static const struct pt_graphql_schema *schema_for(struct req *r, struct pt_graphql_schema **own)
{
    const struct pt_api *api = r->api;
    struct vgr *x = (struct vgr *)r->x;
    *own = NULL;
    pt_bytes def = api->schema_definition(r->call, PT_SCHEMA_API, PTL_LIT("graphql"));
    if (!def.len)
        def = api->schema_definition(r->call, PT_SCHEMA_API, (pt_bytes){"", 0});
    if (!def.len)
        return NULL;
    pthread_mutex_lock(&x->lock);
    for (int i = 0; i < x->ncache; i++)
        if (x->cache[i].key == def.data && x->cache[i].len == def.len) {
            const struct pt_graphql_schema *s = x->cache[i].schema;
            pthread_mutex_unlock(&x->lock);
            return s;
        }
    pthread_mutex_unlock(&x->lock);
    /* {"id", "contentType", "value": SDL} */
    const char *jerr = NULL;
    struct ptl_jv *j = ptl_json_parse(api, r->call, def, &jerr);
    const struct ptl_jv *value = NULL, *ctype = NULL;
    for (const struct ptl_jv *m = j && j->t == PTL_J_OBJ ? j->first : NULL; m; m = m->next) {
        if (m->klen == 5 && !memcmp(m->key, "value", 5) && m->t == PTL_J_STR)
            value = m;
        if (m->klen == 11 && !memcmp(m->key, "contentType", 11) && m->t == PTL_J_STR)
            ctype = m;
    }
    struct pt_graphql_schema *s = NULL;
    if (value && (!ctype || strstr(ctype->s, "graphql"))) {
        struct pt_graphql_error e;
        s = pt_graphql_schema_parse(value->s, value->n, NULL, &e);
        if (!s)
            api->log(
                PT_LOG_LEVEL_WARN,
                "validate-graphql-request: the API's GraphQL schema does not parse (line %d, column %d: %s); "
                "requests are checked without it",
                e.line, e.column, e.message);
    } else if (!ctype || strstr(ctype->s, "graphql"))
        api->log(PT_LOG_LEVEL_WARN,
                 "validate-graphql-request: the API's schema has no SDL value; requests are "
                 "checked without a schema");
    else
        return NULL; /* not a GraphQL schema (the API's first schema is of another kind) */
    pthread_mutex_lock(&x->lock);
    for (int i = 0; i < x->ncache; i++)
        if (x->cache[i].key == def.data && x->cache[i].len == def.len) { /* another worker was faster */
            const struct pt_graphql_schema *c = x->cache[i].schema;
            pthread_mutex_unlock(&x->lock);
            pt_graphql_schema_free(s);
            return c;
        }
    if (x->ncache < CACHE_SLOTS) {
        x->cache[x->ncache++] = (struct cached){def.data, def.len, s};
        pthread_mutex_unlock(&x->lock);
        return s;
    }
    pthread_mutex_unlock(&x->lock);
    *own = s; /* the table is full: this request's own copy */
    return s;
}

/* ---- authorization ---- */

static bool glob(const char *p, const char *s)
{
    if (!s)
        return false;
    const char *star = NULL, *back = NULL;
    while (*s) {
        if (*p == '*') {
            star = p++;
            back = s;
        } else if (*p == *s) {
            p++;
            s++;
        } else if (star) {
            p = star + 1;
            s = ++back;
        } else
            return false;
    }
    while (*p == '*')
        p++;
    return !*p;
}

static bool all_stars(const char *p)
{
    for (; *p; p++)
        if (*p != '*')
            return false;
    return true;
}

static bool seg_matches_type(const char *seg, const char *type)
{
    return type ? glob(seg, type) : all_stars(seg);
}

static bool rule_matches(const struct rule *ru, const char *type, const char *field, bool top)
{
    bool typename_ = !strcmp(field, "__typename");
    if (ru->nseg == 2) {
        if (!seg_matches_type(ru->seg[0], type))
            return false;
        return typename_ ? !strcmp(ru->seg[1], field) : glob(ru->seg[1], field);
    }
    if (typename_)
        return !strcmp(ru->seg[0], field);
    if (seg_matches_type(ru->seg[0], type))
        return true;
    if (top && glob(ru->seg[0], field))
        return true;
    return !strncmp(field, "__", 2) && glob(ru->seg[0], field);
}

static int rule_action(struct req *r, int i)
{
    const struct rule *ru = &r->x->rules[i];
    if (ru->action != ACT_EXPR)
        return ru->action;
    if (r->decided[i] >= 0)
        return r->decided[i];
    pt_bytes b;
    int st = ptl_eval(r->api, r->call, ru->value, &b);
    if (st) {
        r->failed = true;
        r->fail_status = (pt_status)st;
        return -1;
    }
    int a = parse_action(ptl_trim(b).data, ptl_trim(b).len);
    if (a < 0) {
        r->failed = true;
        r->fail_status =
            r->api->fail(r->call, 500, "ExpressionValueEvaluationFailure",
                         "validate-graphql-request: a rule's action is not allow, remove, reject or ignore");
        return -1;
    }
    r->decided[i] = a;
    return a;
}

static int authorize_field(void *arg, struct pt_graphql_node *f, const char *type, bool top)
{
    struct req *r = arg;
    for (int i = 0; i < r->x->nrules; i++) {
        if (!rule_matches(&r->x->rules[i], type, f->name, top))
            continue;
        int a = rule_action(r, i);
        if (a < 0)
            return -1;
        if (a == ACT_IGNORE)
            continue;
        if (a == ACT_REJECT) {
            r->errors = NULL;
            r->tail = &r->errors;
            r->nerrors = 0;
            add_error(r, f->line, f->column, "FORBIDDEN", "access to the field %s%s%s is not allowed",
                      type ? type : "", type ? "." : "", f->name);
            r->rejected = true;
            return -1;
        }
        if (a == ACT_REMOVE) {
            f->removed = true;
            r->removed = true;
            add_error(r, f->line, f->column, "FIELD_REMOVED",
                      "the field %s%s%s was removed from the request: access is not allowed",
                      type ? type : "", type ? "." : "", f->name);
            return 1;
        }
        return 0; /* allow */
    }
    return 0;
}

/* ---- reading the request ---- */

struct gqreq {
    pt_bytes query, opname;
    bool get, json, has_opname;
    struct ptl_jv *body; /* JSON body */
    struct ptl_qseg *segs;
    int nsegs, query_seg;
};

static bool ctype_is(pt_bytes ct, const char *want)
{
    size_t n = strlen(want);
    if (ct.len < n || strncasecmp(ct.data, want, n))
        return false;
    return ct.len == n || ct.data[n] == ';' || ct.data[n] == ' ' || ct.data[n] == '\t';
}

static pt_bytes form_decode(struct req *r, pt_bytes v)
{
    char *d = r->api->alloc(r->call, v.len + 1);
    if (!d)
        return v;
    for (size_t i = 0; i < v.len; i++)
        d[i] = v.data[i] == '+' ? ' ' : v.data[i];
    return ptl_pct_decode(r->api, r->call, (pt_bytes){d, v.len});
}

/* The parser's memory: the request's arena (no malloc per request; released with the request). */
static void *request_alloc(void *ctx, size_t n)
{
    return graphql_api->alloc((pt_call *)ctx, n);
}

static int64_t eval_limit(struct req *r, pt_value *v, int64_t literal, int64_t def, int64_t lo, int64_t hi,
                          const char *what, int *st)
{
    *st = 0;
    if (literal >= 0)
        return literal;
    if (!v)
        return def;
    pt_bytes b;
    if ((*st = ptl_eval(r->api, r->call, v, &b)))
        return 0;
    char tmp[32];
    char *end;
    b = ptl_trim(b);
    if (b.len && b.len < sizeof(tmp)) {
        memcpy(tmp, b.data, b.len);
        tmp[b.len] = '\0';
        long long n = strtoll(tmp, &end, 10);
        if (!*end && n >= lo && n <= hi)
            return n;
    }
    char msg[120];
    snprintf(msg, sizeof(msg), "validate-graphql-request: %s is not an integer from %lld to %lld", what,
             (long long)lo, (long long)hi);
    *st = r->api->fail(r->call, 500, "ExpressionValueEvaluationFailure", msg);
    return 0;
}

pt_status validate_graphql_request_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct vgr *x = inst;
    struct req r = {.api = api, .call = call, .x = x};
    r.tail = &r.errors;
    int st;
    int64_t max_size =
        eval_limit(&r, x->max_size_v, x->max_size, APIM_MAX_SIZE, 1, APIM_MAX_SIZE, "max-size", &st);
    if (st)
        return (pt_status)st;
    int64_t max_depth = eval_limit(&r, x->max_depth_v, x->max_depth, 6, 1, 1000000, "max-depth", &st);
    if (st)
        return (pt_status)st;
    char msg[400];

    /* a WebSocket upgrade (graphql-ws, graphql-transport-ws) is not a GraphQL request: it passes, and the
       messages inside the tunnel are not inspected */
    pt_bytes upgrade;
    if (api->header_get(call, PT_MSG_REQUEST, PTL_LIT("Sec-WebSocket-Key"), &upgrade, 1) > 0 &&
        ptl_bytes_is(api->method(call), "GET"))
        return PT_OK; /* (Upgrade and Connection are hop-by-hop: policies do not see them) */

    /* the request: size first, before anything is read */
    struct gqreq q = {.query_seg = -1};
    pt_bytes method = api->method(call);
    if (ptl_bytes_is(method, "GET")) {
        q.get = true;
        pt_bytes qs = api->query(call);
        if ((int64_t)qs.len > max_size) {
            snprintf(msg, sizeof(msg), "the request is %zu bytes long, more than the limit of %lld bytes",
                     qs.len, (long long)max_size);
            return request_error(&r, 0, 0, "REQUEST_TOO_LARGE", msg);
        }
        q.nsegs = ptl_query_split(api, call, qs, &q.segs);
        if (q.nsegs < 0)
            return ptl_out_of_memory(api, call);
        for (int i = 0; i < q.nsegs; i++) {
            pt_bytes raw = q.segs[i].raw;
            const char *eq = memchr(raw.data, '=', raw.len);
            pt_bytes val = eq ? (pt_bytes){eq + 1, raw.len - (size_t)(eq + 1 - raw.data)} : (pt_bytes){"", 0};
            /* a parameter given twice is refused: the backend might read the other one */
            if (ptl_qkey_is(api, call, q.segs[i].key, PTL_LIT("query"))) {
                if (q.query_seg >= 0)
                    return request_error(&r, 0, 0, "BAD_REQUEST", "the query parameter query is given twice");
                q.query = form_decode(&r, val);
                q.query_seg = i;
            } else if (ptl_qkey_is(api, call, q.segs[i].key, PTL_LIT("operationName"))) {
                if (q.has_opname)
                    return request_error(&r, 0, 0, "BAD_REQUEST",
                                         "the query parameter operationName is given twice");
                q.opname = form_decode(&r, val);
                q.has_opname = true;
            }
        }
        if (q.query_seg < 0)
            return request_error(&r, 0, 0, "BAD_REQUEST", "the query string has no query parameter");
    } else if (ptl_bytes_is(method, "POST")) {
        /* a query in the URL too: some servers read it before the body's */
        struct ptl_qseg *segs;
        int nsegs = ptl_query_split(api, call, api->query(call), &segs);
        for (int i = 0; i < nsegs; i++)
            if (ptl_qkey_is(api, call, segs[i].key, PTL_LIT("query")))
                return request_error(&r, 0, 0, "BAD_REQUEST",
                                     "a POST request carries its query in the body, not in the query string");
        pt_bytes cl;
        if (api->header_get(call, PT_MSG_REQUEST, PTL_LIT("Content-Length"), &cl, 1) > 0) {
            char tmp[24];
            cl = ptl_trim(cl);
            if (cl.len && cl.len < sizeof(tmp)) {
                memcpy(tmp, cl.data, cl.len);
                tmp[cl.len] = '\0';
                long long n = strtoll(tmp, NULL, 10);
                if (n > max_size) {
                    snprintf(msg, sizeof(msg),
                             "the request is %lld bytes long, more than the limit of %lld bytes", n,
                             (long long)max_size);
                    return request_error(&r, 0, 0, "REQUEST_TOO_LARGE", msg);
                }
            }
        }
        pt_bytes body;
        if ((st = ptl_body_get(api, call, PT_MSG_REQUEST, &body)))
            return (pt_status)st;
        if ((int64_t)body.len > max_size) {
            snprintf(msg, sizeof(msg), "the request is %zu bytes long, more than the limit of %lld bytes",
                     body.len, (long long)max_size);
            return request_error(&r, 0, 0, "REQUEST_TOO_LARGE", msg);
        }
        pt_bytes ct = {"", 0};
        api->header_get(call, PT_MSG_REQUEST, PTL_LIT("Content-Type"), &ct, 1);
        ct = ptl_trim(ct);
        pt_bytes lead = ptl_trim(body);
        if (ctype_is(ct, "application/graphql"))
            q.query = body;
        else if (ctype_is(ct, "application/json") || ctype_is(ct, "application/graphql-response+json") ||
                 (!ct.len && lead.len && lead.data[0] == '{')) {
            q.json = true;
            const char *jerr = NULL;
            q.body = ptl_json_parse(api, call, body, &jerr);
            if (!q.body) {
                snprintf(msg, sizeof(msg), "the request body is not JSON: %s", jerr ? jerr : "unreadable");
                return request_error(&r, 0, 0, "BAD_REQUEST", msg);
            }
            if (q.body->t == PTL_J_ARR)
                return request_error(&r, 0, 0, "BAD_REQUEST",
                                     "batched requests (a JSON array) are not supported");
            if (q.body->t != PTL_J_OBJ)
                return request_error(&r, 0, 0, "BAD_REQUEST", "the request body must be a JSON object");
            bool has_query = false;
            for (const struct ptl_jv *m = q.body->first; m; m = m->next) {
                /* a member given twice is refused: the backend might read the other one */
                for (const struct ptl_jv *o = q.body->first; o != m; o = o->next)
                    if (o->klen == m->klen && !memcmp(o->key, m->key, m->klen) &&
                        ((m->klen == 5 && !memcmp(m->key, "query", 5)) ||
                         (m->klen == 13 && !memcmp(m->key, "operationName", 13)) ||
                         (m->klen == 9 && !memcmp(m->key, "variables", 9)))) {
                        snprintf(msg, sizeof(msg), "the member %s is given twice",
                                 ptl_dup_bytes(api, call, (pt_bytes){m->key, m->klen}));
                        return request_error(&r, 0, 0, "BAD_REQUEST", msg);
                    }
                if (m->klen == 5 && !memcmp(m->key, "query", 5)) {
                    if (m->t != PTL_J_STR)
                        return request_error(&r, 0, 0, "BAD_REQUEST", "query must be a string");
                    q.query = (pt_bytes){m->s, m->n};
                    has_query = true;
                } else if (m->klen == 13 && !memcmp(m->key, "operationName", 13)) {
                    if (m->t == PTL_J_STR) {
                        q.opname = (pt_bytes){m->s, m->n};
                        q.has_opname = true;
                    } else if (m->t != PTL_J_NULL)
                        return request_error(&r, 0, 0, "BAD_REQUEST",
                                             "operationName must be a string or null");
                } else if (m->klen == 9 && !memcmp(m->key, "variables", 9)) {
                    if (m->t != PTL_J_OBJ && m->t != PTL_J_NULL)
                        return request_error(&r, 0, 0, "BAD_REQUEST", "variables must be an object or null");
                }
            }
            if (!has_query)
                return request_error(&r, 0, 0, "BAD_REQUEST", "the request has no query");
        } else {
            snprintf(msg, sizeof(msg),
                     "unsupported Content-Type %.60s: use application/json or application/graphql",
                     ct.len ? ptl_dup_bytes(api, call, ct) : "(none)");
            return request_error(&r, 0, 0, "BAD_REQUEST", msg);
        }
    } else {
        snprintf(msg, sizeof(msg), "a GraphQL request is a GET or a POST, not %.20s",
                 ptl_dup_bytes(api, call, method));
        return request_error(&r, 0, 0, "BAD_REQUEST", msg);
    }

    /* syntax, the operation, the schema */
    struct pt_graphql_limits lim = {.alloc = request_alloc,
                                    .alloc_ctx = call,
                                    .max_bytes = (size_t)max_size,
                                    .max_tokens = (size_t)max_size,
                                    .max_depth = max_depth + 1 > PARSE_MAX_DEPTH ? (int)max_depth + 1
                                                                                 : PARSE_MAX_DEPTH};
    if (lim.max_depth > 256)
        lim.max_depth = 256;
    struct pt_graphql_error e;
    struct pt_graphql_doc *doc = pt_graphql_parse(q.query.data, q.query.len, PT_GRAPHQL_EXECUTABLE, &lim, &e);
    if (!doc) {
        snprintf(msg, sizeof(msg), "syntax error: %s", e.message);
        return request_error(&r, e.line, e.column, "GRAPHQL_PARSE_FAILED", msg);
    }
    pt_status result = PT_OK;
    struct pt_graphql_schema *own = NULL;
    char *printed = NULL;
    char *opname = q.has_opname ? ptl_dup_bytes(api, call, q.opname) : NULL;
    struct pt_graphql_node *op = pt_graphql_operation(doc, opname, &e);
    if (!op) {
        result = request_error(&r, e.line, e.column, "GRAPHQL_VALIDATION_FAILED", e.message);
        goto out;
    }
    const struct pt_graphql_schema *schema = schema_for(&r, &own);
    if (!pt_graphql_validate(schema, doc, op, &e)) {
        result = request_error(&r, e.line, e.column, "GRAPHQL_VALIDATION_FAILED", e.message);
        goto out;
    }
    int depth = pt_graphql_depth(doc, op);
    if (depth > max_depth) {
        snprintf(msg, sizeof(msg), "the query is %d levels deep, more than the limit of %lld", depth,
                 (long long)max_depth);
        result = request_error(&r, op->line, op->column, "QUERY_TOO_DEEP", msg);
        goto out;
    }
    int fields = pt_graphql_field_count(doc, op);
    if (fields > APIM_MAX_FIELDS) {
        snprintf(msg, sizeof(msg), "the query selects %d fields, more than the limit of %d", fields,
                 APIM_MAX_FIELDS);
        result = request_error(&r, op->line, op->column, "TOO_MANY_FIELDS", msg);
        goto out;
    }

    /* authorization */
    if (x->nrules) {
        r.decided = api->alloc(call, sizeof(int) * (size_t)x->nrules);
        if (!r.decided) {
            result = ptl_out_of_memory(api, call);
            goto out;
        }
        for (int i = 0; i < x->nrules; i++)
            r.decided[i] = -1;
        pt_graphql_walk(schema, doc, op, authorize_field, &r);
        if (r.failed) {
            result = r.fail_status;
            goto out;
        }
        if (r.rejected) {
            result = answer(&r, false);
            goto out;
        }
    }
    if (!r.removed)
        goto out;
    if ((st = set_error_vars(&r))) {
        result = (pt_status)st;
        goto out;
    }
    if (!pt_graphql_prune(doc, op)) {
        result = answer(&r, true);
        goto out;
    }
    size_t plen;
    printed = pt_graphql_print(doc, op, &plen);
    if (!printed) {
        result = ptl_out_of_memory(api, call);
        goto out;
    }
    struct ptl_buf b;
    ptl_buf_init(&b, api, call, plen + 64);
    if (q.get) {
        for (int i = 0; i < q.nsegs; i++) {
            if (i == q.query_seg) {
                struct ptl_buf s;
                ptl_buf_init(&s, api, call, plen * 3 + 8);
                ptl_buf_lit(&s, "query=");
                ptl_pct_encode(&s, (pt_bytes){printed, plen}, NULL);
                ptl_query_join(&b, ptl_buf_bytes(&s));
            } else
                ptl_query_join(&b, q.segs[i].raw);
        }
        if (b.oom || api->set_query(call, ptl_buf_bytes(&b)))
            result = b.oom ? ptl_out_of_memory(api, call) : PT_ERROR;
    } else if (q.json) {
        ptl_buf_ch(&b, '{');
        for (const struct ptl_jv *m = q.body->first; m; m = m->next) {
            if (m != q.body->first)
                ptl_buf_ch(&b, ',');
            json_str(&b, m->key, m->klen);
            ptl_buf_ch(&b, ':');
            if (m->klen == 5 && !memcmp(m->key, "query", 5))
                json_str(&b, printed, plen);
            else
                json_write(&b, m);
        }
        ptl_buf_ch(&b, '}');
        if (b.oom || api->body_set(call, PT_MSG_REQUEST, ptl_buf_bytes(&b)))
            result = b.oom ? ptl_out_of_memory(api, call) : PT_ERROR;
    } else {
        ptl_buf_add(&b, printed, plen);
        if (b.oom || api->body_set(call, PT_MSG_REQUEST, ptl_buf_bytes(&b)))
            result = b.oom ? ptl_out_of_memory(api, call) : PT_ERROR;
    }
out:
    free(printed);
    pt_graphql_doc_free(doc);
    pt_graphql_schema_free(own);
    return result;
}
