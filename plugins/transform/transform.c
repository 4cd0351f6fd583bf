/*
 * transform -- the transformation policy family.
 *
 * Eleven policies that change the message a request is working on, named
 * and shaped after Azure API Management's: set-header, set-query-parameter,
 * rewrite-uri, set-method, set-status, set-body, find-and-replace,
 * json-to-xml, xml-to-json, jsonp and redirect-content-urls.
 *
 * How a policy works here.  Each one is a row of `policies[]` below: its
 * attribute schema is data (the gateway validates configurations against it
 * and generates the reference from the `doc` strings), compile() turns the
 * validated attributes into a small instance allocated with compile_alloc
 * (it lives as long as the configuration generation, so nothing is freed
 * here), and run() does the work for one request through the gateway's API
 * table.  "The current message" is the request in inbound/backend and the
 * response in outbound/on-error (PT_MSG_CURRENT).
 *
 * Restartable runs.  A run() that needs a body the gateway has not read yet
 * (body_get, or an expression that reads a body, answers PT_AGAIN) returns
 * PT_AGAIN at once and is called again from its start once the body is in
 * memory.  Every run() therefore evaluates and reads everything first and
 * changes the message only at the end: a restart never repeats a change.
 *
 * Memory.  Everything a run() builds lives in the request arena
 * (api->alloc), including the growable output buffers (`struct buf`, which
 * doubles, so at most twice the final size is held).  libxml2 allocates
 * with malloc; its document is freed before run() returns.
 *
 * XML safety.  xml-to-json parses with XML_PARSE_NONET and never with
 * NOENT, DTDLOAD or HUGE; init() installs an external entity loader that
 * loads nothing; and any document with a DOCTYPE is refused outright (the
 * parser is stopped from the SAX internal-subset callback, before a single
 * entity is declared), so neither entity expansion ("billion laughs") nor
 * external entities (XXE) can happen.
 *
 * Decisions where APIM leaves room are documented at each policy.
 */
#define _GNU_SOURCE /* memmem */
#include <portico/plugin.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIT(s) ((pt_bytes){(s), sizeof(s) - 1})

/* ================================================================ helpers */

/* Evaluates a value; 0 on success, else the status run() must return. */
static int eval(const struct pt_api *api, pt_call *call, const pt_value *v, pt_bytes *out)
{
    int rc = api->eval(call, v, out);
    if (rc == 0)
        return 0;
    return rc == PT_AGAIN ? PT_AGAIN : PT_ERROR;
}

/* The current message's body; 0, or the status run() must return. */
static int current_body(const struct pt_api *api, pt_call *call, pt_bytes *out)
{
    int rc = api->body_get(call, PT_MSG_CURRENT, out);
    if (rc == 0)
        return 0;
    return rc == PT_AGAIN ? PT_AGAIN : PT_ERROR;
}

static bool bytes_eq(pt_bytes a, pt_bytes b)
{
    return a.len == b.len && (!a.len || !memcmp(a.data, b.data, a.len));
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool bytes_ieq(pt_bytes a, const char *b)
{
    size_t n = strlen(b);
    if (a.len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(a.data[i]) != lower(b[i]))
            return false;
    return true;
}

static pt_bytes trim(pt_bytes b)
{
    while (b.len && (b.data[0] == ' ' || b.data[0] == '\t')) {
        b.data++;
        b.len--;
    }
    while (b.len && (b.data[b.len - 1] == ' ' || b.data[b.len - 1] == '\t'))
        b.len--;
    return b;
}

/* An RFC 9110 token (header names, methods). */
static bool is_token(const char *s, size_t n)
{
    if (!n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c && strchr("!#$%&'*+-.^_`|~", c))))
            return false;
    }
    return true;
}

/* ---- a growable byte buffer in the request arena ---- */

struct buf {
    const struct pt_api *api;
    pt_call *call;
    char *p;
    size_t n, cap;
    bool oom;
};

static void buf_init(struct buf *b, const struct pt_api *api, pt_call *call, size_t hint)
{
    *b = (struct buf){api, call, NULL, 0, 0, false};
    b->cap = hint < 64 ? 64 : hint;
    b->p = api->alloc(call, b->cap);
    if (!b->p) {
        b->cap = 0;
        b->oom = true;
    }
}

static bool buf_reserve(struct buf *b, size_t extra)
{
    if (b->oom)
        return false;
    if (extra <= b->cap - b->n)
        return true;
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap - b->n < extra) {
        if (ncap > SIZE_MAX / 2) {
            b->oom = true;
            return false;
        }
        ncap *= 2;
    }
    char *np = b->api->alloc(b->call, ncap);
    if (!np) {
        b->oom = true;
        return false;
    }
    if (b->n)
        memcpy(np, b->p, b->n);
    b->p = np;
    b->cap = ncap;
    return true;
}

static void buf_add(struct buf *b, const void *p, size_t n)
{
    if (n && buf_reserve(b, n)) {
        memcpy(b->p + b->n, p, n);
        b->n += n;
    }
}

static void buf_ch(struct buf *b, char c)
{
    if (buf_reserve(b, 1))
        b->p[b->n++] = c;
}

#define buf_lit(b, s) buf_add((b), (s), sizeof(s) - 1)

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static pt_bytes buf_bytes(const struct buf *b)
{
    return (pt_bytes){b->p ? b->p : "", b->n};
}

static pt_status out_of_memory(const struct pt_api *api, pt_call *call)
{
    return api->fail(call, 500, "OutOfMemory", "the request arena could not grow");
}

/* ---- percent-encoding ---- */

static bool unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Path segments may also keep RFC 3986 sub-delims, ':' and '@' ('/' is encoded). */
#define PATH_KEEP "!$&'()*+,;=:@"

static void pct_encode(struct buf *b, pt_bytes s, const char *keep)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.data[i];
        if (unreserved(c) || (keep && c && strchr(keep, c)))
            buf_ch(b, (char)c);
        else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_add(b, e, 3);
        }
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes %XX (only; '+' stays) into arena memory; malformed escapes stay literal. */
static pt_bytes pct_decode(const struct pt_api *api, pt_call *call, pt_bytes s)
{
    if (!memchr(s.data ? s.data : "", '%', s.len))
        return s;
    char *d = api->alloc(call, s.len + 1);
    if (!d)
        return s;
    size_t k = 0;
    for (size_t i = 0; i < s.len; i++) {
        int h, l;
        if (s.data[i] == '%' && i + 2 < s.len && (h = hexval(s.data[i + 1])) >= 0 &&
            (l = hexval(s.data[i + 2])) >= 0) {
            d[k++] = (char)(h * 16 + l);
            i += 2;
        } else
            d[k++] = s.data[i];
    }
    return (pt_bytes){d, k};
}

/* ---- query strings: '&'-separated segments, raw bytes kept ---- */

struct qseg {
    pt_bytes raw; /* the whole "key=value" */
    pt_bytes key; /* raw key */
};

/* Splits a raw query into its non-empty segments (arena array); returns the count. */
static int query_split(const struct pt_api *api, pt_call *call, pt_bytes q, struct qseg **out)
{
    int n = 0;
    for (size_t i = 0; i < q.len; i++)
        if (q.data[i] == '&')
            n++;
    struct qseg *v = api->alloc(call, sizeof(*v) * (size_t)(n + 1));
    *out = v;
    if (!v)
        return -1;
    int k = 0;
    size_t start = 0;
    for (size_t i = 0; i <= q.len; i++) {
        if (i < q.len && q.data[i] != '&')
            continue;
        if (i > start) {
            pt_bytes raw = {q.data + start, i - start};
            const char *eq = memchr(raw.data, '=', raw.len);
            v[k].raw = raw;
            v[k].key = (pt_bytes){raw.data, eq ? (size_t)(eq - raw.data) : raw.len};
            k++;
        }
        start = i + 1;
    }
    return k;
}

/* Does a raw query key name `name` (compared after %-decoding)? */
static bool qkey_is(const struct pt_api *api, pt_call *call, pt_bytes rawkey, pt_bytes name)
{
    return bytes_eq(pct_decode(api, call, rawkey), name);
}

static void query_join(struct buf *b, pt_bytes seg)
{
    if (b->n)
        buf_ch(b, '&');
    buf_add(b, seg.data, seg.len);
}

/* ---- media types ---- */

/*
 * Does a media type (a Content-Type value, or one Accept range without its
 * parameters) name `kind` ("json" or "xml")?  application/K, text/K, a
 * "+K" structured-syntax suffix, and in Accept also "* /K" are recognised.
 */
static bool media_is(pt_bytes v, const char *kind)
{
    const char *semi = memchr(v.data ? v.data : "", ';', v.len);
    pt_bytes m = trim((pt_bytes){v.data, semi ? (size_t)(semi - v.data) : v.len});
    const char *slash = memchr(m.data ? m.data : "", '/', m.len);
    if (!slash)
        return false;
    pt_bytes type = {m.data, (size_t)(slash - m.data)};
    pt_bytes sub = {slash + 1, m.len - type.len - 1};
    size_t kl = strlen(kind);
    if (bytes_ieq(sub, kind))
        return bytes_ieq(type, "application") || bytes_ieq(type, "text") || bytes_ieq(type, "*");
    if (sub.len > kl && sub.data[sub.len - kl - 1] == '+') {
        pt_bytes suffix = {sub.data + sub.len - kl, kl};
        return bytes_ieq(suffix, kind);
    }
    return false;
}

/* true when the current message's Content-Type is of `kind`. */
static bool content_type_is(const struct pt_api *api, pt_call *call, const char *kind)
{
    pt_bytes v;
    return api->header_get(call, PT_MSG_CURRENT, LIT("Content-Type"), &v, 1) >= 1 && media_is(v, kind);
}

/* true when a range's parameters include q=0 (not acceptable). */
static bool q_zero(pt_bytes range)
{
    const char *p = range.data, *end = range.data + range.len;
    while ((p = memchr(p, ';', (size_t)(end - p)))) {
        p++;
        pt_bytes prm = {p, 0};
        const char *semi = memchr(p, ';', (size_t)(end - p));
        prm.len = (size_t)((semi ? semi : end) - p);
        prm = trim(prm);
        if (prm.len >= 2 && lower(prm.data[0]) == 'q' && prm.data[1] == '=') {
            for (size_t i = 2; i < prm.len; i++)
                if (prm.data[i] != '0' && prm.data[i] != '.')
                    return false;
            return true;
        }
    }
    return false;
}

/*
 * consider-accept-header: convert only when the client's Accept asks for
 * `kind` explicitly.  No Accept header at all converts; "* / *" alone does
 * not (the client takes anything, so the original is fine).
 */
static bool accept_asks(const struct pt_api *api, pt_call *call, const char *kind)
{
    pt_bytes vals[16];
    int n = api->header_get(call, PT_MSG_REQUEST, LIT("Accept"), vals, 16);
    if (n <= 0)
        return true;
    for (int i = 0; i < n && i < 16; i++) {
        pt_bytes v = vals[i];
        size_t start = 0;
        for (size_t k = 0; k <= v.len; k++) {
            if (k < v.len && v.data[k] != ',')
                continue;
            pt_bytes range = {v.data + start, k - start};
            if (media_is(range, kind) && !q_zero(range))
                return true;
            start = k + 1;
        }
    }
    return false;
}

static int set_content_type(const struct pt_api *api, pt_call *call, const char *type)
{
    pt_bytes v = {type, strlen(type)};
    return api->header_set(call, PT_MSG_CURRENT, LIT("Content-Type"), &v, 1, PT_HEADER_OVERRIDE);
}

/* ---- substring replacement ---- */

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
static bool replace_all(const struct pt_api *api, pt_call *call, pt_bytes body, pt_bytes from, pt_bytes to,
                        bool boundary, struct buf *out)
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
            buf_init(out, api, call, body.len + (to.len > from.len ? (to.len - from.len) * 4 : 0) + 16);
            any = true;
        }
        buf_add(out, p, (size_t)(hit - p));
        buf_add(out, to.data, to.len);
        p = hit + from.len;
    }
    if (any)
        buf_add(out, p, (size_t)(end - p));
    return any;
}

/* ---- UTF-8 ---- */

/* Decodes one code point; returns its length, 0 when invalid (overlong, surrogate, > U+10FFFF). */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (!n)
        return 0;
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if ((c & 0xE0) == 0xC0) {
        len = 2;
        v = c & 0x1F;
        min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3;
        v = c & 0x0F;
        min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4;
        v = c & 0x07;
        min = 0x10000;
    } else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

static void utf8_put(struct buf *b, uint32_t cp)
{
    char e[4];
    size_t n;
    if (cp < 0x80) {
        e[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        e[0] = (char)(0xC0 | (cp >> 6));
        e[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        e[0] = (char)(0xE0 | (cp >> 12));
        e[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        e[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        e[0] = (char)(0xF0 | (cp >> 18));
        e[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        e[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        e[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_add(b, e, n);
}

/* ---- a string-keyed set in the arena (duplicate detection, grouping) ---- */

struct strset {
    pt_bytes *key; /* slots; key.data NULL = empty */
    int *val;
    size_t mask;
};

static uint64_t hash_bytes(pt_bytes k)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < k.len; i++) {
        h ^= (unsigned char)k.data[i];
        h *= 1099511628211ull;
    }
    return h;
}

static bool strset_init(const struct pt_api *api, pt_call *call, struct strset *s, size_t n)
{
    size_t m = 8;
    while (m < n * 2)
        m *= 2;
    s->key = api->alloc(call, sizeof(*s->key) * m);
    s->val = api->alloc(call, sizeof(*s->val) * m);
    s->mask = m - 1;
    return s->key && s->val;
}

/* Finds `k`; when absent inserts it with value `v`.  Returns the slot. */
static size_t strset_find(struct strset *s, pt_bytes k, int v, bool *found)
{
    size_t i = (size_t)hash_bytes(k) & s->mask;
    while (s->key[i].data) {
        if (bytes_eq(s->key[i], k)) {
            *found = true;
            return i;
        }
        i = (i + 1) & s->mask;
    }
    s->key[i] = k.data ? k : (pt_bytes){"", 0};
    s->val[i] = v;
    *found = false;
    return i;
}

/* ============================================================= set-header */

static const char *const exists_actions[] = {"override", "skip", "append", "delete", NULL};
static const char *const protected_headers[] = {"Connection", "Content-Length", "Keep-Alive",
                                                "Transfer-Encoding", NULL};

static const struct pt_attr_def set_header_attrs[] = {
    {"name", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "name of the header to set (a token)"},
    {"exists-action", PT_ATTR_ENUM, 0, "override", exists_actions, NULL, 0, 0,
     "override replaces it, skip keeps an existing one, append adds values, delete removes it"},
    {"value", PT_ATTR_STRING, PT_ATTR_EXPR | PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0,
     "one or more values (required unless exists-action is delete); several are joined with ', ' "
     "except for headers that must stay separate lines such as Set-Cookie"},
    {0},
};

/* set-header and set-query-parameter share their instance. */
struct named_values {
    pt_value *name;
    pt_header_mode mode;
    int nvalues;
    pt_value **values;
};

static int compile_named_values(const struct pt_api *api, pt_compile *c, void **instance, const char *what)
{
    struct named_values *x = api->compile_alloc(c, sizeof(*x));
    if (!x)
        return -1;
    x->name = api->attr_value(c, "name");
    x->mode = (pt_header_mode)api->attr_enum(c, "exists-action", PT_HEADER_OVERRIDE);
    x->nvalues = api->attr_values(c, "value", &x->values);
    if (!x->name || x->nvalues < 0)
        return -1;
    if (x->mode != PT_HEADER_DELETE && x->nvalues == 0) {
        api->compile_error(c, NULL, "%s needs at least one value unless exists-action is delete", what);
        return -1;
    }
    *instance = x;
    return 0;
}

/* Literal names are checked now; names from expressions when they are set. */
static int set_header_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    const char *name = api->attr_literal(c, "name");
    if (name) {
        if (!is_token(name, strlen(name))) {
            api->compile_error(c, "name", "'%s' is not a valid header name", name);
            return -1;
        }
        for (int i = 0; protected_headers[i]; i++)
            if (bytes_ieq((pt_bytes){name, strlen(name)}, protected_headers[i])) {
                api->compile_error(c, "name", "the %s header is managed by the gateway and cannot be set",
                                   protected_headers[i]);
                return -1;
            }
    }
    return compile_named_values(api, c, instance, "set-header");
}

/* Evaluates the name and every value, then sets them in one call (the core joins). */
static pt_status set_header_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct named_values *x = inst;
    pt_bytes name;
    int st;
    if ((st = eval(api, call, x->name, &name)))
        return (pt_status)st;
    int n = x->mode == PT_HEADER_DELETE ? 0 : x->nvalues;
    pt_bytes *vals = api->alloc(call, sizeof(*vals) * (size_t)(n ? n : 1));
    if (!vals)
        return out_of_memory(api, call);
    for (int i = 0; i < n; i++)
        if ((st = eval(api, call, x->values[i], &vals[i])))
            return (pt_status)st;
    if (api->header_set(call, PT_MSG_CURRENT, name, vals, n, x->mode) != 0)
        return PT_ERROR;
    return PT_OK;
}

/* ==================================================== set-query-parameter */

static const struct pt_attr_def set_query_attrs[] = {
    {"name", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "name of the query parameter (percent-encoded when written)"},
    {"exists-action", PT_ATTR_ENUM, 0, "override", exists_actions, NULL, 0, 0,
     "override replaces every occurrence, skip keeps existing ones, append adds, delete removes all"},
    {"value", PT_ATTR_STRING, PT_ATTR_EXPR | PT_ATTR_MULTI, NULL, NULL, NULL, 0, 0,
     "one or more values (required unless exists-action is delete); each becomes one name=value pair"},
    {0},
};

static int set_query_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    const char *name = api->attr_literal(c, "name");
    if (name && !*name) {
        api->compile_error(c, "name", "the name must not be empty");
        return -1;
    }
    return compile_named_values(api, c, instance, "set-query-parameter");
}

/*
 * Works on the backend query as raw segments: other parameters keep their
 * order and bytes.  A parameter matches when its %-decoded name equals the
 * (evaluated) name.  override puts the new pairs where the first
 * occurrence was (or at the end), append adds them at the end.
 */
static pt_status set_query_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct named_values *x = inst;
    pt_bytes name;
    int st;
    if ((st = eval(api, call, x->name, &name)))
        return (pt_status)st;
    int n = x->mode == PT_HEADER_DELETE ? 0 : x->nvalues;
    pt_bytes *vals = api->alloc(call, sizeof(*vals) * (size_t)(n ? n : 1));
    if (!vals)
        return out_of_memory(api, call);
    for (int i = 0; i < n; i++)
        if ((st = eval(api, call, x->values[i], &vals[i])))
            return (pt_status)st;
    if (!name.len)
        return api->fail(call, 500, "InvalidQueryParameter", "set-query-parameter: the name is empty");

    struct qseg *segs;
    int ns = query_split(api, call, api->query(call), &segs);
    if (ns < 0)
        return out_of_memory(api, call);
    bool exists = false;
    for (int i = 0; i < ns; i++)
        if (qkey_is(api, call, segs[i].key, name))
            exists = true;
    if (x->mode == PT_HEADER_SKIP && exists)
        return PT_OK;
    if (x->mode == PT_HEADER_DELETE && !exists)
        return PT_OK;

    /* the new pairs, encoded once */
    struct buf pairs;
    buf_init(&pairs, api, call, 64);
    for (int i = 0; i < n; i++) {
        if (i)
            buf_ch(&pairs, '&');
        pct_encode(&pairs, name, NULL);
        buf_ch(&pairs, '=');
        pct_encode(&pairs, vals[i], NULL);
    }
    struct buf q;
    buf_init(&q, api, call, api->query(call).len + pairs.n + 8);
    bool placed = false;
    for (int i = 0; i < ns; i++) {
        bool match = qkey_is(api, call, segs[i].key, name);
        if (match && x->mode == PT_HEADER_OVERRIDE && !placed) {
            query_join(&q, buf_bytes(&pairs));
            placed = true;
        }
        if (match && (x->mode == PT_HEADER_OVERRIDE || x->mode == PT_HEADER_DELETE))
            continue;
        query_join(&q, segs[i].raw);
    }
    if (n && !placed)
        query_join(&q, buf_bytes(&pairs));
    if (pairs.oom || q.oom)
        return out_of_memory(api, call);
    return api->set_query(call, buf_bytes(&q)) == 0 ? PT_OK : PT_ERROR;
}

/* ============================================================= rewrite-uri */

static const struct pt_attr_def rewrite_attrs[] = {
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

static int rewrite_compile(const struct pt_api *api, pt_compile *c, void **instance)
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
 * encoded for a path (keep = PATH_KEEP) or a query (keep = NULL); bytes
 * that cannot appear in a URL are %-encoded; existing %XX stay.
 */
static pt_status expand_part(const struct pt_api *api, pt_call *call, pt_bytes part, const char *keep,
                             struct buf *out)
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
            pct_encode(out, value, keep);
            i = (size_t)(close - part.data);
        } else if (c <= 0x20 || c >= 0x7f)
            pct_encode(out, (pt_bytes){part.data + i, 1}, NULL);
        else
            buf_ch(out, (char)c);
    }
    return PT_OK;
}

/* Names of the query parameters the operation's URL template binds ("/get?a={b}&c" -> a, c). */
static int template_query_names(const struct pt_api *api, pt_call *call, struct qseg **out)
{
    pt_bytes t = api->operation_template(call);
    const char *qm = memchr(t.data ? t.data : "", '?', t.len);
    pt_bytes q = qm ? (pt_bytes){qm + 1, t.len - (size_t)(qm + 1 - t.data)} : (pt_bytes){"", 0};
    return query_split(api, call, q, out);
}

static bool seg_named(const struct pt_api *api, pt_call *call, const struct qseg *segs, int n, pt_bytes key)
{
    pt_bytes k = pct_decode(api, call, key);
    for (int i = 0; i < n; i++)
        if (bytes_eq(pct_decode(api, call, segs[i].key), k))
            return true;
    return false;
}

/*
 * Sets the backend path and query.  With copy-unmatched-params, the current
 * backend query's parameters are appended unless the operation's template
 * binds them or the rewrite template sets them itself (the template wins).
 */
static pt_status rewrite_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct rewrite *x = inst;
    pt_bytes t;
    int st;
    if ((st = eval(api, call, x->tmpl, &t)))
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

    struct buf p, q;
    buf_init(&p, api, call, t.len + 32);
    buf_init(&q, api, call, t.len + api->query(call).len + 16);
    if ((st = expand_part(api, call, path, PATH_KEEP, &p)) != PT_OK)
        return (pt_status)st;
    struct buf tqx;
    buf_init(&tqx, api, call, tq.len + 16);
    if ((st = expand_part(api, call, tq, NULL, &tqx)) != PT_OK)
        return (pt_status)st;
    struct qseg *own;
    int nown = query_split(api, call, buf_bytes(&tqx), &own);
    if (nown < 0)
        return out_of_memory(api, call);
    for (int i = 0; i < nown; i++)
        query_join(&q, own[i].raw);
    if (x->copy) {
        struct qseg *bound, *cur;
        int nb = template_query_names(api, call, &bound);
        int nc = query_split(api, call, api->query(call), &cur);
        if (nb < 0 || nc < 0)
            return out_of_memory(api, call);
        for (int i = 0; i < nc; i++)
            if (!seg_named(api, call, bound, nb, cur[i].key) && !seg_named(api, call, own, nown, cur[i].key))
                query_join(&q, cur[i].raw);
    }
    if (p.oom || q.oom || tqx.oom)
        return out_of_memory(api, call);
    if (api->set_path(call, buf_bytes(&p)) != 0 || api->set_query(call, buf_bytes(&q)) != 0)
        return PT_ERROR;
    return PT_OK;
}

/* ============================================================== set-method */

static const struct pt_attr_def set_method_attrs[] = {
    {"value", PT_ATTR_STRING, PT_ATTR_EXPR | PT_ATTR_SCALAR, NULL, NULL, NULL, 0, 0,
     "the new method (a token such as POST); may be written as the policy's bare value"},
    {0},
};

static int set_method_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    pt_value *v = api->attr_value(c, "value");
    const char *lit = api->attr_literal(c, "value");
    if (!v) {
        api->compile_error(c, NULL, "the method is missing (write e.g. `set-method: POST`)");
        return -1;
    }
    if (lit && !is_token(lit, strlen(lit))) {
        api->compile_error(c, "value", "'%s' is not a valid method", lit);
        return -1;
    }
    *instance = v;
    return 0;
}

static pt_status set_method_run(const struct pt_api *api, pt_call *call, void *inst)
{
    pt_bytes m;
    int st;
    if ((st = eval(api, call, inst, &m)))
        return (pt_status)st;
    return api->set_method(call, trim(m)) == 0 ? PT_OK : PT_ERROR;
}

/* ============================================================== set-status */

static const struct pt_attr_def set_status_attrs[] = {
    {"code", PT_ATTR_INT, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 100, 999,
     "the status code (100-999)"},
    {"reason", PT_ATTR_STRING, PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "the reason phrase (the standard one when absent)"},
    {0},
};

struct set_status {
    int code; /* literal, or 0 */
    pt_value *code_expr;
    pt_value *reason;
};

static int set_status_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct set_status *x = api->compile_alloc(c, sizeof(*x));
    if (!x)
        return -1;
    if (api->attr_literal(c, "code"))
        x->code = (int)api->attr_int(c, "code", 200);
    else if (!(x->code_expr = api->attr_value(c, "code")))
        return -1;
    x->reason = api->attr_value(c, "reason");
    *instance = x;
    return 0;
}

static pt_status set_status_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct set_status *x = inst;
    int code = x->code, st;
    if (x->code_expr) {
        pt_bytes v;
        if ((st = eval(api, call, x->code_expr, &v)))
            return (pt_status)st;
        v = trim(v);
        long k = 0;
        size_t i = 0;
        for (; i < v.len && i < 4 && v.data[i] >= '0' && v.data[i] <= '9'; i++)
            k = k * 10 + (v.data[i] - '0');
        /* "404" or a number rendered by Lua as "404.0" */
        if (i < v.len && !(v.len - i == 2 && v.data[i] == '.' && v.data[i + 1] == '0'))
            i = 0;
        if (!i || k < 100 || k > 999)
            return api->fail(call, 500, "ExpressionValueEvaluationFailure",
                             "set-status: the code must be an integer between 100 and 999");
        code = (int)k;
    }
    pt_bytes reason = {"", 0};
    if (x->reason && (st = eval(api, call, x->reason, &reason)))
        return (pt_status)st;
    return api->set_status(call, code, reason) == 0 ? PT_OK : PT_ERROR;
}

/* ================================================================ set-body */

static const char *const xsi_nil_values[] = {"blank", "null", NULL};

static const struct pt_attr_def set_body_attrs[] = {
    {"value", PT_ATTR_STRING, PT_ATTR_EXPR | PT_ATTR_SCALAR, NULL, NULL, NULL, 0, 0,
     "the new body: a literal or an expression; may be written as the policy's bare value"},
    {"template", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "not supported (Liquid templates); build the body with an expression"},
    {"xsi-nil", PT_ATTR_ENUM, 0, "blank", xsi_nil_values, NULL, 0, 0,
     "accepted for compatibility: a missing or nil value always gives an empty body"},
    {0},
};

static int set_body_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    if (api->attr_value(c, "template") || api->attr_literal(c, "template")) {
        api->compile_error(c, "template", "Liquid templates are not supported; build the body with an expression");
        return -1;
    }
    /* *instance stays NULL without a value: the body becomes empty */
    *instance = api->attr_value(c, "value");
    return 0;
}

/* The new body replaces the current message's; the core keeps Content-Length right. */
static pt_status set_body_run(const struct pt_api *api, pt_call *call, void *inst)
{
    pt_bytes body = {"", 0};
    int st;
    if (inst && (st = eval(api, call, inst, &body)))
        return (pt_status)st;
    return api->body_set(call, PT_MSG_CURRENT, body) == 0 ? PT_OK : PT_ERROR;
}

/* ======================================================== find-and-replace */

static const struct pt_attr_def find_replace_attrs[] = {
    {"from", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "the text to look for (plain text, not a pattern)"},
    {"to", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "the replacement; empty deletes every occurrence"},
    {0},
};

struct find_replace {
    pt_value *from, *to;
};

static int find_replace_compile(const struct pt_api *api, pt_compile *c, void **instance)
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
static pt_status find_replace_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct find_replace *x = inst;
    pt_bytes from, to, body;
    int st;
    if ((st = eval(api, call, x->from, &from)) || (st = eval(api, call, x->to, &to)) ||
        (st = current_body(api, call, &body)))
        return (pt_status)st;
    struct buf out;
    if (!replace_all(api, call, body, from, to, false, &out))
        return PT_OK;
    if (out.oom)
        return out_of_memory(api, call);
    return api->body_set(call, PT_MSG_CURRENT, buf_bytes(&out)) == 0 ? PT_OK : PT_ERROR;
}

/* =================================================== redirect-content-urls */

/*
 * Outbound: the backend's base URL (the API's service URL) becomes the
 * gateway's (scheme://host/apiSuffix as the client called it); inbound the
 * reverse.  Only occurrences that end where a URL prefix can end are
 * rewritten ("http://b/base" matches in "http://b/base/x" but not in
 * "http://b/baseball").  Headers, such as Location, are left alone.
 */
static const char inbound_direction; /* its address marks an inbound instance */

static int redirect_urls_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    *instance = api->compile_section(c) == PT_SECTION_INBOUND ? (void *)&inbound_direction : NULL;
    return 0;
}

static pt_status redirect_urls_run(const struct pt_api *api, pt_call *call, void *inst)
{
    pt_bytes body;
    int st;
    if ((st = current_body(api, call, &body)))
        return (pt_status)st;
    pt_bytes gw = api->url_base(call, PT_URL_GATEWAY), be = api->url_base(call, PT_URL_BACKEND);
    pt_bytes from = inst ? gw : be, to = inst ? be : gw;
    struct buf out;
    if (!replace_all(api, call, body, from, to, true, &out))
        return PT_OK;
    if (out.oom)
        return out_of_memory(api, call);
    return api->body_set(call, PT_MSG_CURRENT, buf_bytes(&out)) == 0 ? PT_OK : PT_ERROR;
}

/* ===================================================================== JSON */

enum { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ };

/* A parsed JSON value; containers keep their children as a list. */
struct jv {
    int t;
    const char *s; /* J_STR: decoded UTF-8; J_NUM/J_TRUE/J_FALSE: source text */
    size_t n;
    const char *key; /* as a member: its decoded name */
    size_t klen;
    struct jv *first, *next;
    size_t count;
};

#define JSON_MAX_DEPTH 256
#define PT_TRANSFORM_STR2(x) #x
#define PT_TRANSFORM_STR(x) PT_TRANSFORM_STR2(x)

struct jparse {
    const struct pt_api *api;
    pt_call *call;
    const char *p, *end;
    const char *err;
};

static void j_ws(struct jparse *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* A string at j->p (the opening quote); decoded into arena memory. */
static bool j_string(struct jparse *j, const char **s, size_t *n)
{
    const char *p = ++j->p, *end = j->end;
    /* the raw extent first: the decoded string is never longer */
    const char *q = p;
    while (q < end && *q != '"') {
        if (*q == '\\')
            q++;
        q++;
    }
    if (q >= end) {
        j->err = "unterminated string";
        return false;
    }
    struct buf b;
    buf_init(&b, j->api, j->call, (size_t)(q - p) + 1);
    while (p < q) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20) {
            j->err = "control character in a string";
            return false;
        }
        if (c == '\\') {
            char e = p[1];
            p += 2;
            switch (e) {
            case '"': buf_ch(&b, '"'); break;
            case '\\': buf_ch(&b, '\\'); break;
            case '/': buf_ch(&b, '/'); break;
            case 'b': buf_ch(&b, '\b'); break;
            case 'f': buf_ch(&b, '\f'); break;
            case 'n': buf_ch(&b, '\n'); break;
            case 'r': buf_ch(&b, '\r'); break;
            case 't': buf_ch(&b, '\t'); break;
            case 'u': {
                int u = q - p >= 4 ? hex4(p) : -1;
                if (u < 0) {
                    j->err = "invalid \\u escape";
                    return false;
                }
                p += 4;
                uint32_t cp = (uint32_t)u;
                if (cp >= 0xD800 && cp <= 0xDBFF && q - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                    int lo = hex4(p + 2);
                    if (lo >= 0xDC00 && lo <= 0xDFFF) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
                        p += 6;
                    }
                }
                if (cp >= 0xD800 && cp <= 0xDFFF)
                    cp = 0xFFFD; /* a lone surrogate cannot be represented in UTF-8 */
                utf8_put(&b, cp);
                break;
            }
            default:
                j->err = "invalid escape in a string";
                return false;
            }
            continue;
        }
        uint32_t cp;
        size_t k = utf8_next((const unsigned char *)p, (size_t)(q - p), &cp);
        if (!k) {
            j->err = "invalid UTF-8 in a string";
            return false;
        }
        buf_add(&b, p, k);
        p += k;
    }
    if (b.oom) {
        j->err = "out of memory";
        return false;
    }
    j->p = q + 1;
    *s = b.p;
    *n = b.n;
    return true;
}

static bool j_digits(struct jparse *j)
{
    const char *s = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
        j->p++;
    return j->p > s;
}

static struct jv *j_value(struct jparse *j, int depth)
{
    j_ws(j);
    if (j->p >= j->end) {
        j->err = "unexpected end of input";
        return NULL;
    }
    if (depth > JSON_MAX_DEPTH) {
        j->err = "nested deeper than " PT_TRANSFORM_STR(JSON_MAX_DEPTH) " levels";
        return NULL;
    }
    struct jv *v = j->api->alloc(j->call, sizeof(*v));
    if (!v) {
        j->err = "out of memory";
        return NULL;
    }
    char c = *j->p;
    if (c == '{' || c == '[') {
        v->t = c == '{' ? J_OBJ : J_ARR;
        char close = c == '{' ? '}' : ']';
        j->p++;
        j_ws(j);
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return v;
        }
        struct jv *last = NULL;
        for (;;) {
            const char *key = NULL;
            size_t klen = 0;
            if (v->t == J_OBJ) {
                j_ws(j);
                if (j->p >= j->end || *j->p != '"') {
                    j->err = "expected a member name";
                    return NULL;
                }
                if (!j_string(j, &key, &klen))
                    return NULL;
                j_ws(j);
                if (j->p >= j->end || *j->p != ':') {
                    j->err = "expected ':'";
                    return NULL;
                }
                j->p++;
            }
            struct jv *item = j_value(j, depth + 1);
            if (!item)
                return NULL;
            item->key = key;
            item->klen = klen;
            if (last)
                last->next = item;
            else
                v->first = item;
            last = item;
            v->count++;
            j_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (j->p < j->end && *j->p == close) {
                j->p++;
                return v;
            }
            j->err = v->t == J_OBJ ? "expected ',' or '}'" : "expected ',' or ']'";
            return NULL;
        }
    }
    if (c == '"') {
        v->t = J_STR;
        return j_string(j, &v->s, &v->n) ? v : NULL;
    }
    static const struct {
        const char *w;
        int t;
    } words[] = {{"true", J_TRUE}, {"false", J_FALSE}, {"null", J_NULL}};
    for (size_t i = 0; i < 3; i++) {
        size_t l = strlen(words[i].w);
        if ((size_t)(j->end - j->p) >= l && !memcmp(j->p, words[i].w, l)) {
            v->t = words[i].t;
            v->s = j->p;
            v->n = l;
            j->p += l;
            return v;
        }
    }
    /* number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
    const char *s = j->p;
    if (*j->p == '-')
        j->p++;
    if (j->p < j->end && *j->p == '0')
        j->p++;
    else if (!(j->p < j->end && *j->p >= '1' && *j->p <= '9' && j_digits(j))) {
        j->err = "unexpected character";
        return NULL;
    }
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (!j_digits(j)) {
            j->err = "invalid number";
            return NULL;
        }
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (!j_digits(j)) {
            j->err = "invalid number";
            return NULL;
        }
    }
    v->t = J_NUM;
    v->s = s;
    v->n = (size_t)(j->p - s);
    return v;
}

/* Parses a whole document (RFC 8259, a UTF-8 BOM tolerated); NULL with *err. */
static struct jv *json_parse(const struct pt_api *api, pt_call *call, pt_bytes text, const char **err)
{
    struct jparse j = {api, call, text.data, text.data + text.len, NULL};
    if (text.len >= 3 && !memcmp(text.data, "\xEF\xBB\xBF", 3))
        j.p += 3;
    struct jv *v = j_value(&j, 0);
    if (v) {
        j_ws(&j);
        if (j.p != j.end) {
            j.err = "unexpected data after the JSON value";
            v = NULL;
        }
    }
    *err = j.err;
    return v;
}

/* Writes a JSON string literal (UTF-8 kept; U+2028/2029 escaped for JavaScript). */
static void json_str(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    buf_ch(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[6];
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        else if (c < 0x20) {
            memcpy(u, "\\u00", 4);
            u[4] = hex[c >> 4];
            u[5] = hex[c & 15];
        } else if (c == 0xE2 && i + 2 < n && (unsigned char)s[i + 1] == 0x80 &&
                   ((unsigned char)s[i + 2] == 0xA8 || (unsigned char)s[i + 2] == 0xA9)) {
            esc = (unsigned char)s[i + 2] == 0xA8 ? "\\u2028" : "\\u2029";
        } else {
            run++;
            continue;
        }
        buf_add(b, s + i - run, run);
        run = 0;
        if (esc) {
            buf_str(b, esc);
            if (esc[1] == 'u')
                i += 2;
        } else
            buf_add(b, u, 6);
    }
    buf_add(b, s + n - run, run);
    buf_ch(b, '"');
}

/* ============================================================= json-to-xml */

static const char *const json_apply[] = {"always", "content-type-json", NULL};

static const struct pt_attr_def json_to_xml_attrs[] = {
    {"apply", PT_ATTR_ENUM, PT_ATTR_REQUIRED, NULL, json_apply, NULL, 0, 0,
     "always, or content-type-json: only when the Content-Type is application/json, text/json or +json"},
    {"consider-accept-header", PT_ATTR_BOOL, 0, "true", NULL, NULL, 0, 0,
     "convert only when the client's Accept asks for XML (no Accept header converts)"},
    {"parse-date", PT_ATTR_BOOL, 0, "true", NULL, NULL, 0, 0,
     "accepted for compatibility: dates are JSON strings and stay as written"},
    {"namespace-separator", PT_ATTR_STRING, 0, "_", NULL, NULL, 0, 0,
     "separates a namespace prefix from a local name in JSON names (e.g. ':' for \"soap:Body\")"},
    {"namespace-prefix", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "members named PREFIX or PREFIX<separator>p (usually xmlns) become namespace declarations"},
    {"attribute-block-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "an object member of this name holds the element's XML attributes"},
    {0},
};

struct json_to_xml {
    bool request; /* compiled for inbound: the client's body */
    bool content_type_only, consider_accept;
    pt_bytes sep, nsprefix, attrblock;
};

static pt_bytes lit_bytes(const struct pt_api *api, pt_compile *c, const char *name, const char *def)
{
    const char *s = api->attr_literal(c, name);
    if (!s)
        s = def;
    return s ? (pt_bytes){s, strlen(s)} : (pt_bytes){NULL, 0};
}

static int json_to_xml_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct json_to_xml *x = api->compile_alloc(c, sizeof(*x));
    if (!x)
        return -1;
    x->request = api->compile_section(c) == PT_SECTION_INBOUND;
    x->content_type_only = api->attr_enum(c, "apply", 0) == 1;
    x->consider_accept = api->attr_bool(c, "consider-accept-header", 1) != 0;
    x->sep = lit_bytes(api, c, "namespace-separator", "_");
    x->nsprefix = lit_bytes(api, c, "namespace-prefix", NULL);
    x->attrblock = lit_bytes(api, c, "attribute-block-name", NULL);
    *instance = x;
    return 0;
}

/* XML 1.0 (5th edition) NameStartChar / NameChar, without ':' (names are built as NCNames). */
static bool xml_name_start(uint32_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (c >= 0xC0 && c <= 0xD6) ||
           (c >= 0xD8 && c <= 0xF6) || (c >= 0xF8 && c <= 0x2FF) || (c >= 0x370 && c <= 0x37D) ||
           (c >= 0x37F && c <= 0x1FFF) || (c >= 0x200C && c <= 0x200D) || (c >= 0x2070 && c <= 0x218F) ||
           (c >= 0x2C00 && c <= 0x2FEF) || (c >= 0x3001 && c <= 0xD7FF) || (c >= 0xF900 && c <= 0xFDCF) ||
           (c >= 0xFDF0 && c <= 0xFFFD) || (c >= 0x10000 && c <= 0xEFFFF);
}

static bool xml_name_char(uint32_t c)
{
    return xml_name_start(c) || c == '-' || c == '.' || (c >= '0' && c <= '9') || c == 0xB7 ||
           (c >= 0x300 && c <= 0x36F) || (c >= 0x203F && c <= 0x2040);
}

/*
 * Writes `s` as an XML NCName, escaping what a name cannot hold the way
 * .NET's XmlConvert.EncodeName does: "first name" -> first_x0020_name,
 * "1st" -> _x0031_st; a literal "_xHHHH_" gets its '_' escaped; "" -> "_".
 */
static void xml_ncname(struct buf *b, const char *s, size_t n)
{
    if (!n) {
        buf_ch(b, '_');
        return;
    }
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (!k) {
            cp = (unsigned char)s[i];
            k = 1;
        } else if ((i == 0 ? xml_name_start(cp) : xml_name_char(cp)) &&
                   !(cp == '_' && n - i >= 7 && s[i + 1] == 'x' && hexval(s[i + 2]) >= 0 &&
                     hexval(s[i + 3]) >= 0 && hexval(s[i + 4]) >= 0 && hexval(s[i + 5]) >= 0 && s[i + 6] == '_')) {
            buf_add(b, s + i, k);
            i += k;
            continue;
        }
        char e[16];
        int l = snprintf(e, sizeof(e), "_x%04X_", (unsigned)cp);
        buf_add(b, e, (size_t)l);
        i += k;
    }
}

/* Escapes character data (attr: attribute value in double quotes).  Characters XML cannot hold become U+FFFD. */
static void xml_text(struct buf *b, const char *s, size_t n, bool attr)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        if (c == '&')
            esc = "&amp;";
        else if (c == '<')
            esc = "&lt;";
        else if (c == '>')
            esc = "&gt;";
        else if (c == '\r')
            esc = "&#xD;";
        else if (attr && c == '"')
            esc = "&quot;";
        else if (attr && c == '\n')
            esc = "&#xA;";
        else if (attr && c == '\t')
            esc = "&#x9;";
        else if (c < 0x20 && c != '\n' && c != '\t')
            esc = "\xEF\xBF\xBD";
        else if (c == 0xEF && i + 2 < n && (unsigned char)s[i + 1] == 0xBF &&
                 ((unsigned char)s[i + 2] == 0xBE || (unsigned char)s[i + 2] == 0xBF)) {
            esc = "\xEF\xBF\xBD"; /* U+FFFE, U+FFFF */
            buf_add(b, s + i - run, run);
            run = 0;
            buf_str(b, esc);
            i += 2;
            continue;
        } else {
            run++;
            continue;
        }
        buf_add(b, s + i - run, run);
        run = 0;
        buf_str(b, esc);
    }
    buf_add(b, s + n - run, run);
}

/* Namespace prefixes declared on the way down (xmlns:p members). */
struct nscope {
    pt_bytes prefix; /* as written in JSON */
    const struct nscope *up;
};

struct jx {
    const struct pt_api *api;
    pt_call *call;
    const struct json_to_xml *cf;
    struct buf *out;
};

static bool prefix_bound(const struct nscope *sc, pt_bytes p)
{
    if (bytes_eq(p, LIT("xml")))
        return true;
    for (; sc; sc = sc->up)
        if (bytes_eq(sc->prefix, p))
            return true;
    return false;
}

/*
 * The XML name for a JSON name.  With namespace-separator S, "p<S>local"
 * becomes p:local when p is a prefix declared on this element or an
 * ancestor (or "xml"); otherwise the whole name is kept as one name (so
 * "first_name" stays first_name with the default "_").  Arena memory.
 */
static pt_bytes qname(struct jx *x, const char *key, size_t klen, const struct nscope *sc)
{
    struct buf b;
    buf_init(&b, x->api, x->call, klen + 8);
    pt_bytes sep = x->cf->sep;
    const char *hit = sep.len && klen > sep.len ? memmem(key, klen, sep.data, sep.len) : NULL;
    if (hit && hit > key && (size_t)(hit - key) + sep.len < klen &&
        prefix_bound(sc, (pt_bytes){key, (size_t)(hit - key)})) {
        xml_ncname(&b, key, (size_t)(hit - key));
        buf_ch(&b, ':');
        const char *local = hit + sep.len;
        xml_ncname(&b, local, klen - (size_t)(local - key));
    } else
        xml_ncname(&b, key, klen);
    return buf_bytes(&b);
}

/* 1: `m` declares the default namespace; 2: a prefix (*pfx); 0: an ordinary member. */
static int ns_decl(const struct jx *x, const struct jv *m, pt_bytes *pfx)
{
    pt_bytes np = x->cf->nsprefix, sep = x->cf->sep;
    if (!np.len || m->t != J_STR)
        return 0;
    if (m->klen == np.len && !memcmp(m->key, np.data, np.len))
        return 1;
    if (m->klen > np.len + sep.len && !memcmp(m->key, np.data, np.len) &&
        !memcmp(m->key + np.len, sep.data, sep.len)) {
        *pfx = (pt_bytes){m->key + np.len + sep.len, m->klen - np.len - sep.len};
        /* "xml"/"xmlns" cannot be declared, and a prefix cannot be undeclared (NS 1.0) */
        if (bytes_eq(*pfx, LIT("xml")) || bytes_eq(*pfx, LIT("xmlns")) || !m->n)
            return 0;
        return 2;
    }
    return 0;
}

static bool is_attr_block(const struct jx *x, const struct jv *m)
{
    pt_bytes ab = x->cf->attrblock;
    return ab.len && m->t == J_OBJ && m->klen == ab.len && !memcmp(m->key, ab.data, ab.len);
}

static void x_node(struct jx *x, const char *name, size_t nlen, const struct jv *v, const struct nscope *sc);

/* A member: an array repeats the element, anything else is one element. */
static void x_member(struct jx *x, const char *name, size_t nlen, const struct jv *v, const struct nscope *sc)
{
    if (v->t == J_ARR) {
        for (const struct jv *i = v->first; i; i = i->next)
            x_node(x, name, nlen, i, sc);
    } else
        x_node(x, name, nlen, v, sc);
}

/* Writes ` name="value"` unless an attribute of that name was written already. */
static void x_attr(struct jx *x, struct strset *seen, pt_bytes name, const char *val, size_t vlen)
{
    bool found;
    strset_find(seen, name, 0, &found);
    if (found)
        return;
    struct buf *b = x->out;
    buf_ch(b, ' ');
    buf_add(b, name.data, name.len);
    buf_lit(b, "=\"");
    xml_text(b, val, vlen, true);
    buf_ch(b, '"');
}

/*
 * One element.  Objects: namespace declarations and the attribute block
 * go into the start tag, other members become child elements.  Arrays
 * (inside arrays) become an element of <item>s.  Strings are text, numbers
 * and booleans their JSON text, null an empty element.
 */
static void x_node(struct jx *x, const char *name, size_t nlen, const struct jv *v, const struct nscope *sc)
{
    struct buf *b = x->out;
    if (b->oom)
        return;
    if (v->t != J_OBJ) {
        pt_bytes q = qname(x, name, nlen, sc);
        buf_ch(b, '<');
        buf_add(b, q.data, q.len);
        if (v->t == J_NULL || (v->t == J_ARR && !v->first)) {
            buf_lit(b, " />");
            return;
        }
        buf_ch(b, '>');
        if (v->t == J_ARR)
            x_member(x, "item", 4, v, sc);
        else if (v->t == J_STR)
            xml_text(b, v->s, v->n, false);
        else
            buf_add(b, v->s, v->n);
        buf_lit(b, "</");
        buf_add(b, q.data, q.len);
        buf_ch(b, '>');
        return;
    }
    /* declarations first: they can bind this element's own prefix */
    size_t nattrs = 0, nchildren = 0;
    for (const struct jv *m = v->first; m; m = m->next) {
        pt_bytes pfx;
        int d = ns_decl(x, m, &pfx);
        if (d == 2) {
            struct nscope *s = x->api->alloc(x->call, sizeof(*s));
            if (!s) {
                b->oom = true;
                return;
            }
            s->prefix = pfx;
            s->up = sc;
            sc = s;
        }
        if (d)
            nattrs++;
        else if (is_attr_block(x, m))
            nattrs += m->count;
        else
            nchildren++;
    }
    pt_bytes q = qname(x, name, nlen, sc);
    buf_ch(b, '<');
    buf_add(b, q.data, q.len);
    struct strset seen;
    if (!strset_init(x->api, x->call, &seen, nattrs)) {
        b->oom = true;
        return;
    }
    for (const struct jv *m = v->first; m; m = m->next) {
        pt_bytes pfx;
        int d = ns_decl(x, m, &pfx);
        if (d == 1)
            x_attr(x, &seen, LIT("xmlns"), m->s, m->n);
        else if (d == 2) {
            struct buf an;
            buf_init(&an, x->api, x->call, pfx.len + 8);
            buf_lit(&an, "xmlns:");
            xml_ncname(&an, pfx.data, pfx.len);
            x_attr(x, &seen, buf_bytes(&an), m->s, m->n);
        } else if (is_attr_block(x, m)) {
            for (const struct jv *a = m->first; a; a = a->next) {
                if (a->t == J_OBJ || a->t == J_ARR)
                    continue; /* attributes hold text only */
                pt_bytes an = qname(x, a->key, a->klen, sc);
                if (bytes_eq(an, LIT("xmlns")) || (an.len > 6 && !memcmp(an.data, "xmlns:", 6)))
                    continue; /* declarations come from namespace-prefix members only */
                x_attr(x, &seen, an, a->t == J_NULL ? "" : a->s, a->t == J_NULL ? 0 : a->n);
            }
        }
    }
    if (!nchildren) {
        buf_lit(b, " />");
        return;
    }
    buf_ch(b, '>');
    for (const struct jv *m = v->first; m; m = m->next) {
        pt_bytes pfx;
        if (!ns_decl(x, m, &pfx) && !is_attr_block(x, m))
            x_member(x, m->key, m->klen, m, sc);
    }
    buf_lit(b, "</");
    buf_add(b, q.data, q.len);
    buf_ch(b, '>');
}

/* The status for a body that cannot be converted: the client's request, or a response. */
static pt_status convert_fail(const struct pt_api *api, pt_call *call, bool request, const char *reason,
                              const char *what, const char *detail)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
    /* a response that cannot be converted is the backend's doing: the client
       gets a plain 500, the log says why */
    pt_bytes id = api->fact(call, PT_FACT_REQUEST_ID);
    api->log(request ? PT_LOG_LEVEL_INFO : PT_LOG_LEVEL_WARN, "request %.*s: %s (%s)", (int)id.len, id.data, msg,
             reason);
    return api->fail(call, request ? 400 : 500, reason, msg);
}

/*
 * Root: an object with exactly one member that is not an array becomes
 * that element (as in APIM's SOAP example: {"soap:Envelope": {...}}), like
 * Json.NET without a root name; anything else is wrapped in <Document>.
 * An empty body is left alone.  A body that is not JSON fails the request
 * (400 InvalidJson when it is the client's request, 500 for a response).
 */
static pt_status json_to_xml_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct json_to_xml *cf = inst;
    if (cf->content_type_only && !content_type_is(api, call, "json"))
        return PT_OK;
    if (cf->consider_accept && !accept_asks(api, call, "xml"))
        return PT_OK;
    pt_bytes body;
    int st;
    if ((st = current_body(api, call, &body)))
        return (pt_status)st;
    if (!trim(body).len)
        return PT_OK;
    const char *err = NULL;
    struct jv *doc = json_parse(api, call, body, &err);
    if (!doc)
        return convert_fail(api, call, cf->request, "InvalidJson", "json-to-xml: the body is not valid JSON", err);
    struct buf out;
    buf_init(&out, api, call, body.len * 2 + 64);
    struct jx x = {api, call, cf, &out};
    buf_lit(&out, "<?xml version=\"1.0\" encoding=\"utf-8\"?>");
    if (doc->t == J_OBJ && doc->count == 1 && doc->first->t != J_ARR && !is_attr_block(&x, doc->first) &&
        !ns_decl(&x, doc->first, &(pt_bytes){0}))
        x_node(&x, doc->first->key, doc->first->klen, doc->first, NULL);
    else
        x_node(&x, "Document", 8, doc, NULL);
    if (out.oom)
        return out_of_memory(api, call);
    if (api->body_set(call, PT_MSG_CURRENT, buf_bytes(&out)) != 0 ||
        set_content_type(api, call, "application/xml") != 0)
        return PT_ERROR;
    return PT_OK;
}

/* ============================================================= xml-to-json */

static const char *const xml_kinds[] = {"javascript-friendly", "direct", NULL};
static const char *const xml_apply[] = {"always", "content-type-xml", NULL};

static const struct pt_attr_def xml_to_json_attrs[] = {
    {"kind", PT_ATTR_ENUM, PT_ATTR_REQUIRED, NULL, xml_kinds, NULL, 0, 0,
     "javascript-friendly (attributes as plain members, local names, no namespace declarations) or "
     "direct (\"@attribute\" members, prefixed names and xmlns declarations kept)"},
    {"apply", PT_ATTR_ENUM, PT_ATTR_REQUIRED, NULL, xml_apply, NULL, 0, 0,
     "always, or content-type-xml: only when the Content-Type is application/xml, text/xml or +xml"},
    {"consider-accept-header", PT_ATTR_BOOL, 0, "true", NULL, NULL, 0, 0,
     "convert only when the client's Accept asks for JSON (no Accept header converts)"},
    {"always-array-child-elements", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0,
     "child elements always become arrays, even when they occur once"},
    {0},
};

struct xml_to_json {
    bool request; /* compiled for inbound: the client's body */
    bool direct, content_type_only, consider_accept, always_array;
};

static int xml_to_json_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct xml_to_json *x = api->compile_alloc(c, sizeof(*x));
    if (!x)
        return -1;
    x->request = api->compile_section(c) == PT_SECTION_INBOUND;
    x->direct = api->attr_enum(c, "kind", 0) == 1;
    x->content_type_only = api->attr_enum(c, "apply", 0) == 1;
    x->consider_accept = api->attr_bool(c, "consider-accept-header", 1) != 0;
    x->always_array = api->attr_bool(c, "always-array-child-elements", 0) != 0;
    *instance = x;
    return 0;
}

/* ---- safe parsing ---- */

static _Thread_local bool xml_refused; /* the document being parsed has a DOCTYPE */

static void refuse_dtd(void *ctx, const xmlChar *name, const xmlChar *ext_id, const xmlChar *sys_id)
{
    (void)name;
    (void)ext_id;
    (void)sys_id;
    xml_refused = true;
    xmlStopParser((xmlParserCtxtPtr)ctx);
}

static void refuse_entity(void *ctx, const xmlChar *name, int type, const xmlChar *public_id,
                          const xmlChar *system_id, xmlChar *content)
{
    (void)name;
    (void)type;
    (void)public_id;
    (void)system_id;
    (void)content;
    xml_refused = true;
    xmlStopParser((xmlParserCtxtPtr)ctx);
}

static void quiet_generic(void *ctx, const char *msg, ...)
{
    (void)ctx;
    (void)msg;
}

#if LIBXML_VERSION >= 21200
static void quiet_structured(void *ctx, const xmlError *e)
#else
static void quiet_structured(void *ctx, xmlErrorPtr e)
#endif
{
    (void)ctx;
    (void)e;
}

/* No external entity, DTD or XInclude is ever loaded, whatever asks. */
static xmlParserInputPtr no_external_entities(const char *url, const char *id, xmlParserCtxtPtr ctxt)
{
    (void)url;
    (void)id;
    (void)ctxt;
    return NULL;
}

static xmlExternalEntityLoader previous_loader;

/*
 * Parses with a context whose SAX handler stops at a DOCTYPE (so no entity
 * is ever declared) and with NONET only: no NOENT, DTDLOAD or HUGE.
 * Returns the document (free with xmlFreeDoc) or NULL with *why.
 */
static xmlDocPtr xml_parse_safely(pt_bytes body, const char **why)
{
    if (body.len > (size_t)INT32_MAX) {
        *why = "the document is too large";
        return NULL;
    }
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt) {
        *why = "out of memory";
        return NULL;
    }
    ctxt->sax->internalSubset = refuse_dtd;
    ctxt->sax->externalSubset = refuse_dtd;
    ctxt->sax->entityDecl = refuse_entity;
    ctxt->sax->serror = quiet_structured;
    xmlGenericErrorFunc old_generic = xmlGenericError;
    void *old_generic_ctx = xmlGenericErrorContext;
    xmlStructuredErrorFunc old_structured = xmlStructuredError;
    void *old_structured_ctx = xmlStructuredErrorContext;
    xmlSetGenericErrorFunc(NULL, quiet_generic);
    xmlSetStructuredErrorFunc(NULL, quiet_structured);
    xml_refused = false;
    xmlDocPtr doc = xmlCtxtReadMemory(ctxt, body.data, (int)body.len, NULL, NULL,
                                      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    xmlSetGenericErrorFunc(old_generic_ctx, old_generic);
    xmlSetStructuredErrorFunc(old_structured_ctx, old_structured);
    const char *detail = ctxt->lastError.message ? NULL : "not well-formed";
    static _Thread_local char msg[160];
    if (ctxt->lastError.message) {
        snprintf(msg, sizeof(msg), "line %d: %s", ctxt->lastError.line, ctxt->lastError.message);
        size_t l = strlen(msg);
        while (l && (msg[l - 1] == '\n' || msg[l - 1] == ' '))
            msg[--l] = '\0';
        detail = msg;
    }
    bool refused = xml_refused || (doc && (doc->intSubset || doc->extSubset));
    xmlFreeParserCtxt(ctxt);
    if (refused) {
        if (doc)
            xmlFreeDoc(doc);
        *why = "documents with a DOCTYPE (DTD, entities) are refused";
        return NULL;
    }
    if (!doc || !xmlDocGetRootElement(doc)) {
        if (doc)
            xmlFreeDoc(doc);
        *why = detail;
        return NULL;
    }
    return doc;
}

/* ---- conversion ---- */

struct xj {
    const struct pt_api *api;
    pt_call *call;
    const struct xml_to_json *cf;
    struct buf *out;
};

enum { XI_ATTR, XI_NS, XI_ELEM };

struct xitem {
    pt_bytes key;
    int kind;
    void *node; /* xmlAttrPtr, xmlNsPtr or xmlNodePtr */
    int next;   /* next item of the same group, -1 */
};

struct xgroup {
    int first, last, count;
    bool elems; /* the group holds an element (always-array applies) */
};

static pt_bytes xname(const xmlChar *s)
{
    return (pt_bytes){(const char *)s, s ? strlen((const char *)s) : 0};
}

/* "p:local" (direct) or "local" (javascript-friendly), optionally after "@"; arena memory. */
static pt_bytes member_name(struct xj *x, const char *at, const xmlNs *ns, const xmlChar *local)
{
    bool prefix = x->cf->direct && ns && ns->prefix;
    if (!at && !prefix)
        return xname(local);
    struct buf b;
    buf_init(&b, x->api, x->call, 32);
    if (at)
        buf_str(&b, at);
    if (prefix) {
        buf_str(&b, (const char *)ns->prefix);
        buf_ch(&b, ':');
    }
    buf_str(&b, (const char *)local);
    return buf_bytes(&b);
}

static bool blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
            return false;
    return true;
}

static void xj_value(struct xj *x, xmlNodePtr el);

/* An attribute's value (its text children). */
static void xj_attr_value(struct xj *x, xmlAttrPtr a)
{
    struct buf t;
    buf_init(&t, x->api, x->call, 32);
    for (xmlNodePtr c = a->children; c; c = c->next)
        if (c->content)
            buf_str(&t, (const char *)c->content);
    json_str(x->out, t.p, t.n);
}

static void xj_item(struct xj *x, const struct xitem *it)
{
    if (it->kind == XI_ELEM)
        xj_value(x, it->node);
    else if (it->kind == XI_ATTR)
        xj_attr_value(x, it->node);
    else {
        const xmlNs *ns = it->node;
        pt_bytes h = xname(ns->href);
        json_str(x->out, h.data, h.len);
    }
}

static bool is_text(const xmlNode *c)
{
    return (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content;
}

/*
 * "#text" next to attributes or child elements: the non-blank text nodes,
 * concatenated (javascript-friendly), or an array when there are several
 * (direct, as Json.NET does for mixed content).
 */
static void xj_text_member(struct xj *x, xmlNodePtr el, size_t ntext, bool comma)
{
    struct buf *b = x->out;
    bool arr = x->cf->direct && ntext > 1, first = true;
    struct buf t;
    buf_init(&t, x->api, x->call, 64);
    if (comma)
        buf_ch(b, ',');
    buf_lit(b, "\"#text\":");
    if (arr)
        buf_ch(b, '[');
    for (xmlNodePtr c = el->children; c; c = c->next) {
        if (!is_text(c) || blank((const char *)c->content))
            continue;
        if (arr) {
            if (!first)
                buf_ch(b, ',');
            json_str(b, (const char *)c->content, strlen((const char *)c->content));
            first = false;
        } else
            buf_str(&t, (const char *)c->content);
    }
    if (arr)
        buf_ch(b, ']');
    else
        json_str(b, t.p, t.n);
}

/*
 * An element's value.  Without attributes and child elements: its text as
 * a string, or null when it has no text at all.  Otherwise an object:
 * attributes (and in direct mode namespace declarations as "@xmlns:p"),
 * then "#text" when there is non-blank text, then child elements; members
 * of the same name (in javascript-friendly mode an attribute and a child
 * can share one) are grouped into an array in first-occurrence order.
 * Comments and processing instructions are dropped; CDATA is text.
 */
static void xj_value(struct xj *x, xmlNodePtr el)
{
    struct buf *b = x->out;
    if (b->oom)
        return;
    size_t n = 0, ntext = 0;
    bool has_text = false;
    for (xmlAttrPtr a = el->properties; a; a = a->next)
        n++;
    if (x->cf->direct)
        for (xmlNsPtr ns = el->nsDef; ns; ns = ns->next)
            n++;
    for (xmlNodePtr c = el->children; c; c = c->next) {
        if (c->type == XML_ELEMENT_NODE)
            n++;
        else if (is_text(c)) {
            has_text = true;
            if (!blank((const char *)c->content))
                ntext++;
        }
    }
    if (!n) {
        if (!has_text) {
            buf_lit(b, "null");
            return;
        }
        struct buf t;
        buf_init(&t, x->api, x->call, 64);
        for (xmlNodePtr c = el->children; c; c = c->next)
            if (is_text(c))
                buf_str(&t, (const char *)c->content);
        json_str(b, t.p, t.n);
        return;
    }
    /* collect the members, then group them by name with a hash */
    struct xitem *items = x->api->alloc(x->call, sizeof(*items) * n);
    struct xgroup *groups = x->api->alloc(x->call, sizeof(*groups) * n);
    struct strset set;
    if (!items || !groups || !strset_init(x->api, x->call, &set, n)) {
        b->oom = true;
        return;
    }
    size_t k = 0;
    const char *at = x->cf->direct ? "@" : NULL;
    for (xmlAttrPtr a = el->properties; a; a = a->next)
        items[k++] = (struct xitem){member_name(x, at, a->ns, a->name), XI_ATTR, a, -1};
    if (x->cf->direct)
        for (xmlNsPtr ns = el->nsDef; ns; ns = ns->next) {
            struct buf nb;
            buf_init(&nb, x->api, x->call, 16);
            buf_lit(&nb, "@xmlns");
            if (ns->prefix) {
                buf_ch(&nb, ':');
                buf_str(&nb, (const char *)ns->prefix);
            }
            items[k++] = (struct xitem){buf_bytes(&nb), XI_NS, ns, -1};
        }
    size_t first_elem = k;
    for (xmlNodePtr c = el->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE)
            items[k++] = (struct xitem){member_name(x, NULL, c->ns, c->name), XI_ELEM, c, -1};
    int ng = 0;
    for (size_t i = 0; i < k; i++) {
        bool found;
        size_t slot = strset_find(&set, items[i].key, ng, &found);
        struct xgroup *g;
        if (!found) {
            g = &groups[ng++];
            *g = (struct xgroup){(int)i, (int)i, 0, false};
        } else {
            g = &groups[set.val[slot]];
            items[g->last].next = (int)i;
            g->last = (int)i;
        }
        g->count++;
        g->elems |= items[i].kind == XI_ELEM;
    }
    buf_ch(b, '{');
    bool comma = false;
    bool text_done = ntext == 0;
    for (int gi = 0; gi < ng; gi++) {
        const struct xgroup *g = &groups[gi];
        /* "#text" goes between the attributes and the first child element */
        if (!text_done && (size_t)g->first >= first_elem) {
            xj_text_member(x, el, ntext, comma);
            text_done = comma = true;
        }
        if (comma)
            buf_ch(b, ',');
        comma = true;
        json_str(b, items[g->first].key.data, items[g->first].key.len);
        buf_ch(b, ':');
        bool arr = g->count > 1 || (g->elems && x->cf->always_array);
        if (arr)
            buf_ch(b, '[');
        for (int i = g->first; i >= 0; i = items[i].next) {
            if (i != g->first)
                buf_ch(b, ',');
            xj_item(x, &items[i]);
        }
        if (arr)
            buf_ch(b, ']');
    }
    if (!text_done)
        xj_text_member(x, el, ntext, comma);
    buf_ch(b, '}');
}

/*
 * The result is {"root": value}.  The XML declaration is not carried over.
 * A body that is not well-formed XML, or has a DOCTYPE, fails the request
 * (400 InvalidXml for the client's request, 500 for a response); an empty
 * body is left alone.
 */
static pt_status xml_to_json_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct xml_to_json *cf = inst;
    if (cf->content_type_only && !content_type_is(api, call, "xml"))
        return PT_OK;
    if (cf->consider_accept && !accept_asks(api, call, "json"))
        return PT_OK;
    pt_bytes body;
    int st;
    if ((st = current_body(api, call, &body)))
        return (pt_status)st;
    if (!trim(body).len)
        return PT_OK;
    const char *why = NULL;
    xmlDocPtr doc = xml_parse_safely(body, &why);
    if (!doc)
        return convert_fail(api, call, cf->request, "InvalidXml", "xml-to-json: the body cannot be converted", why);
    struct buf out;
    buf_init(&out, api, call, body.len + 64);
    struct xj x = {api, call, cf, &out};
    xmlNodePtr root = xmlDocGetRootElement(doc);
    buf_ch(&out, '{');
    pt_bytes rn = member_name(&x, NULL, root->ns, root->name);
    json_str(&out, rn.data, rn.len);
    buf_ch(&out, ':');
    xj_value(&x, root);
    buf_ch(&out, '}');
    xmlFreeDoc(doc);
    if (out.oom)
        return out_of_memory(api, call);
    if (api->body_set(call, PT_MSG_CURRENT, buf_bytes(&out)) != 0 ||
        set_content_type(api, call, "application/json") != 0)
        return PT_ERROR;
    return PT_OK;
}

/* =================================================================== jsonp */

static const struct pt_attr_def jsonp_attrs[] = {
    {"callback-parameter-name", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "the query parameter holding the JavaScript function name (e.g. cb)"},
    {0},
};

static int jsonp_compile(const struct pt_api *api, pt_compile *c, void **instance)
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
static pt_status jsonp_run(const struct pt_api *api, pt_call *call, void *inst)
{
    pt_bytes pname, raw, body;
    int st;
    if ((st = eval(api, call, inst, &pname)))
        return (pt_status)st;
    /* the callback the client asked for, whatever inbound did to the backend's query */
    if (api->original_query_param(call, pname, &raw) != 0)
        return PT_OK;
    pt_bytes cb = pct_decode(api, call, raw);
    if (!js_callback_ok(cb))
        return api->fail(call, 400, "CallbackParameterInvalid",
                         "jsonp: the callback parameter is not a valid JavaScript function name");
    if ((st = current_body(api, call, &body)))
        return (pt_status)st;
    struct buf out;
    buf_init(&out, api, call, body.len + cb.len + 4);
    buf_add(&out, cb.data, cb.len);
    buf_ch(&out, '(');
    buf_add(&out, body.data, body.len);
    buf_lit(&out, ");");
    if (out.oom)
        return out_of_memory(api, call);
    if (api->body_set(call, PT_MSG_CURRENT, buf_bytes(&out)) != 0 ||
        set_content_type(api, call, "application/javascript") != 0)
        return PT_ERROR;
    return PT_OK;
}

/* ============================================================== descriptor */

#define IBOE (PT_SECTION_INBOUND | PT_SECTION_BACKEND | PT_SECTION_OUTBOUND | PT_SECTION_ON_ERROR)

static const struct pt_policy_def policies[] = {
    {"set-header", IBOE, PT_SCOPE_ALL, 0, set_header_attrs, set_header_compile, set_header_run, NULL,
     "Sets, appends, keeps or deletes a header of the current message: the request to the backend in "
     "inbound/backend, the response to the client in outbound/on-error."},
    {"set-query-parameter", PT_SECTION_INBOUND | PT_SECTION_BACKEND, PT_SCOPE_ALL, 0, set_query_attrs,
     set_query_compile, set_query_run, NULL,
     "Sets, appends, keeps or deletes a query parameter of the request to the backend; values are "
     "percent-encoded and the other parameters are left as they were."},
    {"rewrite-uri", PT_SECTION_INBOUND, PT_SCOPE_ALL, 0, rewrite_attrs, rewrite_compile, rewrite_run, NULL,
     "Replaces the backend path and query with a template filled from the operation's matched parameters; "
     "unmatched query parameters of the request are kept unless copy-unmatched-params is false."},
    {"set-method", PT_SECTION_INBOUND | PT_SECTION_ON_ERROR, PT_SCOPE_ALL, 0, set_method_attrs,
     set_method_compile, set_method_run, NULL, "Changes the method of the request to the backend."},
    {"set-status", IBOE, PT_SCOPE_ALL, 0, set_status_attrs, set_status_compile, set_status_run, NULL,
     "Sets the response's status code and reason phrase."},
    {"set-body", PT_SECTION_INBOUND | PT_SECTION_BACKEND | PT_SECTION_OUTBOUND, PT_SCOPE_ALL, 0, set_body_attrs,
     set_body_compile, set_body_run, NULL,
     "Replaces the body of the current message with a literal or the value of an expression "
     "(Content-Length follows)."},
    {"find-and-replace", IBOE, PT_SCOPE_ALL, 0, find_replace_attrs, find_replace_compile, find_replace_run,
     NULL, "Replaces every occurrence of a text in the body of the current message."},
    {"json-to-xml", PT_SECTION_INBOUND | PT_SECTION_OUTBOUND | PT_SECTION_ON_ERROR, PT_SCOPE_ALL, 0,
     json_to_xml_attrs, json_to_xml_compile, json_to_xml_run, NULL,
     "Converts a JSON body to XML (a single-member object gives the root element, anything else is wrapped "
     "in <Document>) and sets Content-Type: application/xml."},
    {"xml-to-json", PT_SECTION_INBOUND | PT_SECTION_OUTBOUND | PT_SECTION_ON_ERROR, PT_SCOPE_ALL, 0,
     xml_to_json_attrs, xml_to_json_compile, xml_to_json_run, NULL,
     "Converts an XML body to JSON ({\"root\": ...}; repeated elements become arrays) and sets Content-Type: "
     "application/json.  Documents with a DOCTYPE are refused; no entity is ever expanded or loaded."},
    {"jsonp", PT_SECTION_OUTBOUND, PT_SCOPE_ALL, PT_POLICY_ONCE_PER_SECTION, jsonp_attrs, jsonp_compile,
     jsonp_run, NULL,
     "When the request names a callback in the configured query parameter, wraps the body as cb(body); "
     "with Content-Type: application/javascript."},
    {"redirect-content-urls", PT_SECTION_INBOUND | PT_SECTION_OUTBOUND, PT_SCOPE_ALL, PT_POLICY_ONCE_PER_SECTION,
     NULL, redirect_urls_compile, redirect_urls_run, NULL,
     "Rewrites the backend's base URL in the response body into the gateway's (outbound), or the "
     "gateway's into the backend's in the request body (inbound); headers are left alone."},
    {0},
};

/* Makes libxml2 ready for the worker threads and disables external entities process-wide. */
static int transform_init(const struct pt_api *api, const char **err)
{
    (void)api;
    (void)err;
    xmlInitParser();
    previous_loader = xmlGetExternalEntityLoader();
    xmlSetExternalEntityLoader(no_external_entities);
    return 0;
}

static void transform_fini(void)
{
    if (xmlGetExternalEntityLoader() == no_external_entities && previous_loader)
        xmlSetExternalEntityLoader(previous_loader);
}

PT_PLUGIN("transform", "1.0.0", policies, transform_init, transform_fini);
