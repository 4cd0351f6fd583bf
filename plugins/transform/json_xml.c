/*
 * json_xml.c -- json-to-xml and xml-to-json, in one file because they share
 * most of what surrounds the conversion: when to convert (Content-Type,
 * the client's Accept), how a body that cannot be converted is refused,
 * the JSON string writer and the arena string set.  JSON is read with the
 * plugins' reader (plugins/lib/json.c), XML with libxml2.
 *
 * XML safety.  xml-to-json reads with core/base/pt_xml's reader: it parses
 * with XML_PARSE_NONET and never with NOENT, DTDLOAD or HUGE;
 * json_xml_init() installs its external entity loader, which loads
 * nothing; and any document with a DOCTYPE is refused outright (the parser
 * is stopped from the SAX internal-subset callback, before a single entity
 * is declared), so neither entity expansion ("billion laughs") nor external
 * entities (XXE) can happen.  libxml2
 * allocates with malloc; its document is freed before run() returns.
 */
#define _GNU_SOURCE /* memmem */
#include "transform.h"

#include "pt_xml.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#include <stdio.h>
#include <string.h>

/* ---- media types ---- */

/*
 * Does a media type (a Content-Type value, or one Accept range without its
 * parameters) name `kind` ("json" or "xml")?  application/K, text/K, a
 * "+K" structured-syntax suffix, and in Accept also "* /K" are recognised.
 */
static bool media_is(pt_bytes v, const char *kind)
{
    const char *semi = memchr(v.data ? v.data : "", ';', v.len);
    pt_bytes m = ptl_trim((pt_bytes){v.data, semi ? (size_t)(semi - v.data) : v.len});
    const char *slash = memchr(m.data ? m.data : "", '/', m.len);
    if (!slash)
        return false;
    pt_bytes type = {m.data, (size_t)(slash - m.data)};
    pt_bytes sub = {slash + 1, m.len - type.len - 1};
    size_t kl = strlen(kind);
    if (ptl_bytes_ieq(sub, kind))
        return ptl_bytes_ieq(type, "application") || ptl_bytes_ieq(type, "text") || ptl_bytes_ieq(type, "*");
    if (sub.len > kl && sub.data[sub.len - kl - 1] == '+') {
        pt_bytes suffix = {sub.data + sub.len - kl, kl};
        return ptl_bytes_ieq(suffix, kind);
    }
    return false;
}

/* true when the current message's Content-Type is of `kind`. */
static bool content_type_is(const struct pt_api *api, pt_call *call, const char *kind)
{
    pt_bytes v;
    return api->header_get(call, PT_MSG_CURRENT, PTL_LIT("Content-Type"), &v, 1) >= 1 && media_is(v, kind);
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
        prm = ptl_trim(prm);
        if (prm.len >= 2 && ptl_lower(prm.data[0]) == 'q' && prm.data[1] == '=') {
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
    int n = api->header_get(call, PT_MSG_REQUEST, PTL_LIT("Accept"), vals, 16);
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
        if (ptl_bytes_eq(s->key[i], k)) {
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

/* Writes a JSON string literal (UTF-8 kept; U+2028/2029 escaped for JavaScript). */
static void json_str(struct ptl_buf *b, const char *s, size_t n)
{
    ptl_buf_ch(b, '"');
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
            u[4] = ptl_hex_lower[c >> 4];
            u[5] = ptl_hex_lower[c & 15];
        } else if (c == 0xE2 && i + 2 < n && (unsigned char)s[i + 1] == 0x80 &&
                   ((unsigned char)s[i + 2] == 0xA8 || (unsigned char)s[i + 2] == 0xA9)) {
            esc = (unsigned char)s[i + 2] == 0xA8 ? "\\u2028" : "\\u2029";
        } else {
            run++;
            continue;
        }
        ptl_buf_add(b, s + i - run, run);
        run = 0;
        if (esc) {
            ptl_buf_str(b, esc);
            if (esc[1] == 'u')
                i += 2;
        } else
            ptl_buf_add(b, u, 6);
    }
    ptl_buf_add(b, s + n - run, run);
    ptl_buf_ch(b, '"');
}

/* ============================================================= json-to-xml */

static const char *const json_apply[] = {"always", "content-type-json", NULL};

const struct pt_attr_def json_to_xml_attrs[] = {
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

int json_to_xml_compile(const struct pt_api *api, pt_compile *c, void **instance)
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
static void xml_ncname(struct ptl_buf *b, const char *s, size_t n)
{
    if (!n) {
        ptl_buf_ch(b, '_');
        return;
    }
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = ptl_utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (!k) {
            cp = (unsigned char)s[i];
            k = 1;
        } else if ((i == 0 ? xml_name_start(cp) : xml_name_char(cp)) &&
                   !(cp == '_' && n - i >= 7 && s[i + 1] == 'x' && ptl_hexval(s[i + 2]) >= 0 &&
                     ptl_hexval(s[i + 3]) >= 0 && ptl_hexval(s[i + 4]) >= 0 && ptl_hexval(s[i + 5]) >= 0 &&
                     s[i + 6] == '_')) {
            ptl_buf_add(b, s + i, k);
            i += k;
            continue;
        }
        char e[16];
        int l = snprintf(e, sizeof(e), "_x%04X_", (unsigned)cp);
        ptl_buf_add(b, e, (size_t)l);
        i += k;
    }
}

/* Escapes character data (attr: attribute value in double quotes); characters XML cannot hold
   become U+FFFD. */
static void xml_text(struct ptl_buf *b, const char *s, size_t n, bool attr)
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
            ptl_buf_add(b, s + i - run, run);
            run = 0;
            ptl_buf_str(b, esc);
            i += 2;
            continue;
        } else {
            run++;
            continue;
        }
        ptl_buf_add(b, s + i - run, run);
        run = 0;
        ptl_buf_str(b, esc);
    }
    ptl_buf_add(b, s + n - run, run);
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
    struct ptl_buf *out;
    bool long_name; /* a name came out longer than XML_NAME_MAX */
};

/* XML readers refuse longer names (libxml2's limit without its "huge"
   option); a member name that long is refused rather than written as XML
   no reader takes. */
#define XML_NAME_MAX 50000 /* the message below says it too */

static bool prefix_bound(const struct nscope *sc, pt_bytes p)
{
    if (ptl_bytes_eq(p, PTL_LIT("xml")))
        return true;
    for (; sc; sc = sc->up)
        if (ptl_bytes_eq(sc->prefix, p))
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
    struct ptl_buf b;
    ptl_buf_init(&b, x->api, x->call, klen + 8);
    pt_bytes sep = x->cf->sep;
    const char *hit = sep.len && klen > sep.len ? memmem(key, klen, sep.data, sep.len) : NULL;
    if (hit && hit > key && (size_t)(hit - key) + sep.len < klen &&
        prefix_bound(sc, (pt_bytes){key, (size_t)(hit - key)})) {
        xml_ncname(&b, key, (size_t)(hit - key));
        ptl_buf_ch(&b, ':');
        const char *local = hit + sep.len;
        xml_ncname(&b, local, klen - (size_t)(local - key));
    } else
        xml_ncname(&b, key, klen);
    pt_bytes q = ptl_buf_bytes(&b);
    if (q.len > XML_NAME_MAX)
        x->long_name = true;
    return q;
}

/* 1: `m` declares the default namespace; 2: a prefix (*pfx); 0: an ordinary member. */
static int ns_decl(const struct jx *x, const struct ptl_jv *m, pt_bytes *pfx)
{
    pt_bytes np = x->cf->nsprefix, sep = x->cf->sep;
    if (!np.len || m->t != PTL_J_STR)
        return 0;
    if (m->klen == np.len && !memcmp(m->key, np.data, np.len))
        return 1;
    if (m->klen > np.len + sep.len && !memcmp(m->key, np.data, np.len) &&
        !memcmp(m->key + np.len, sep.data, sep.len)) {
        *pfx = (pt_bytes){m->key + np.len + sep.len, m->klen - np.len - sep.len};
        /* "xml"/"xmlns" cannot be declared, and a prefix cannot be undeclared (NS 1.0) */
        if (ptl_bytes_eq(*pfx, PTL_LIT("xml")) || ptl_bytes_eq(*pfx, PTL_LIT("xmlns")) || !m->n)
            return 0;
        return 2;
    }
    return 0;
}

static bool is_attr_block(const struct jx *x, const struct ptl_jv *m)
{
    pt_bytes ab = x->cf->attrblock;
    return ab.len && m->t == PTL_J_OBJ && m->klen == ab.len && !memcmp(m->key, ab.data, ab.len);
}

static void x_node(struct jx *x, const char *name, size_t nlen, const struct ptl_jv *v,
                   const struct nscope *sc);

/* A member: an array repeats the element, anything else is one element. */
static void x_member(struct jx *x, const char *name, size_t nlen, const struct ptl_jv *v,
                     const struct nscope *sc)
{
    if (v->t == PTL_J_ARR) {
        for (const struct ptl_jv *i = v->first; i; i = i->next)
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
    struct ptl_buf *b = x->out;
    ptl_buf_ch(b, ' ');
    ptl_buf_add(b, name.data, name.len);
    ptl_buf_lit(b, "=\"");
    xml_text(b, val, vlen, true);
    ptl_buf_ch(b, '"');
}

/*
 * One element.  Objects: namespace declarations and the attribute block
 * go into the start tag, other members become child elements.  Arrays
 * (inside arrays) become an element of <item>s.  Strings are text, numbers
 * and booleans their JSON text, null an empty element.
 */
static void x_node(struct jx *x, const char *name, size_t nlen, const struct ptl_jv *v,
                   const struct nscope *sc)
{
    struct ptl_buf *b = x->out;
    if (b->oom)
        return;
    if (v->t != PTL_J_OBJ) {
        pt_bytes q = qname(x, name, nlen, sc);
        ptl_buf_ch(b, '<');
        ptl_buf_add(b, q.data, q.len);
        if (v->t == PTL_J_NULL || (v->t == PTL_J_ARR && !v->first)) {
            ptl_buf_lit(b, " />");
            return;
        }
        ptl_buf_ch(b, '>');
        if (v->t == PTL_J_ARR)
            x_member(x, "item", 4, v, sc);
        else if (v->t == PTL_J_STR)
            xml_text(b, v->s, v->n, false);
        else
            ptl_buf_add(b, v->s, v->n);
        ptl_buf_lit(b, "</");
        ptl_buf_add(b, q.data, q.len);
        ptl_buf_ch(b, '>');
        return;
    }
    /* declarations first: they can bind this element's own prefix */
    size_t nattrs = 0, nchildren = 0;
    for (const struct ptl_jv *m = v->first; m; m = m->next) {
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
    ptl_buf_ch(b, '<');
    ptl_buf_add(b, q.data, q.len);
    struct strset seen;
    if (!strset_init(x->api, x->call, &seen, nattrs)) {
        b->oom = true;
        return;
    }
    for (const struct ptl_jv *m = v->first; m; m = m->next) {
        pt_bytes pfx;
        int d = ns_decl(x, m, &pfx);
        if (d == 1)
            x_attr(x, &seen, PTL_LIT("xmlns"), m->s, m->n);
        else if (d == 2) {
            struct ptl_buf an;
            ptl_buf_init(&an, x->api, x->call, pfx.len + 8);
            ptl_buf_lit(&an, "xmlns:");
            xml_ncname(&an, pfx.data, pfx.len);
            x_attr(x, &seen, ptl_buf_bytes(&an), m->s, m->n);
        } else if (is_attr_block(x, m)) {
            for (const struct ptl_jv *a = m->first; a; a = a->next) {
                if (a->t == PTL_J_OBJ || a->t == PTL_J_ARR)
                    continue; /* attributes hold text only */
                pt_bytes an = qname(x, a->key, a->klen, sc);
                if (ptl_bytes_eq(an, PTL_LIT("xmlns")) || (an.len > 6 && !memcmp(an.data, "xmlns:", 6)))
                    continue; /* declarations come from namespace-prefix members only */
                x_attr(x, &seen, an, a->t == PTL_J_NULL ? "" : a->s, a->t == PTL_J_NULL ? 0 : a->n);
            }
        }
    }
    if (!nchildren) {
        ptl_buf_lit(b, " />");
        return;
    }
    ptl_buf_ch(b, '>');
    for (const struct ptl_jv *m = v->first; m; m = m->next) {
        pt_bytes pfx;
        if (!ns_decl(x, m, &pfx) && !is_attr_block(x, m))
            x_member(x, m->key, m->klen, m, sc);
    }
    ptl_buf_lit(b, "</");
    ptl_buf_add(b, q.data, q.len);
    ptl_buf_ch(b, '>');
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
    api->log(request ? PT_LOG_LEVEL_INFO : PT_LOG_LEVEL_WARN, "request %.*s: %s (%s)", (int)id.len, id.data,
             msg, reason);
    return api->fail(call, request ? 400 : 500, reason, msg);
}

/*
 * Root: an object with exactly one member that is not an array becomes
 * that element (as in APIM's SOAP example: {"soap:Envelope": {...}}), like
 * Json.NET without a root name; anything else is wrapped in <Document>.
 * An empty body is left alone.  A body that is not JSON, or with a member
 * name too long to be an XML name, fails the request (400 InvalidJson when
 * it is the client's request, 500 for a response).
 */
pt_status json_to_xml_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct json_to_xml *cf = inst;
    if (cf->content_type_only && !content_type_is(api, call, "json"))
        return PT_OK;
    if (cf->consider_accept && !accept_asks(api, call, "xml"))
        return PT_OK;
    pt_bytes body;
    int st;
    if ((st = ptl_body_get(api, call, PT_MSG_CURRENT, &body)))
        return (pt_status)st;
    if (!ptl_trim(body).len)
        return PT_OK;
    const char *err = NULL;
    struct ptl_jv *doc = ptl_json_parse(api, call, body, &err);
    if (!doc)
        return convert_fail(api, call, cf->request, "InvalidJson", "json-to-xml: the body is not valid JSON",
                            err);
    struct ptl_buf out;
    ptl_buf_init(&out, api, call, body.len * 2 + 64);
    struct jx x = {api, call, cf, &out};
    ptl_buf_lit(&out, "<?xml version=\"1.0\" encoding=\"utf-8\"?>");
    if (doc->t == PTL_J_OBJ && doc->count == 1 && doc->first->t != PTL_J_ARR &&
        !is_attr_block(&x, doc->first) && !ns_decl(&x, doc->first, &(pt_bytes){0}))
        x_node(&x, doc->first->key, doc->first->klen, doc->first, NULL);
    else
        x_node(&x, "Document", 8, doc, NULL);
    if (out.oom)
        return ptl_out_of_memory(api, call);
    if (x.long_name)
        return convert_fail(api, call, cf->request, "InvalidJson",
                            "json-to-xml: a member name is too long for an XML name",
                            "over 50000 bytes once encoded");
    if (api->body_set(call, PT_MSG_CURRENT, ptl_buf_bytes(&out)) != 0 ||
        ptl_header_put(api, call, PT_MSG_CURRENT, "Content-Type", "application/xml") != 0)
        return PT_ERROR;
    return PT_OK;
}

/* ============================================================= xml-to-json */

static const char *const xml_kinds[] = {"javascript-friendly", "direct", NULL};
static const char *const xml_apply[] = {"always", "content-type-xml", NULL};

const struct pt_attr_def xml_to_json_attrs[] = {
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

int xml_to_json_compile(const struct pt_api *api, pt_compile *c, void **instance)
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

static xmlExternalEntityLoader previous_loader;

/* Parses with base/pt_xml's reader (no DOCTYPE, NONET only).  The document (free with xmlFreeDoc) or
   NULL with *why. */
static xmlDocPtr xml_parse_safely(pt_bytes body, const char **why)
{
    struct pt_xml_error e;
    xmlDocPtr doc = pt_xml_read(body.data, body.len, (size_t)INT32_MAX, &e);
    if (doc)
        return doc;
    static _Thread_local char msg[160];
    if (e.fail == PT_XML_TOO_LARGE)
        *why = "the document is too large";
    else if (e.fail == PT_XML_NOMEM)
        *why = "out of memory";
    else if (e.fail == PT_XML_DOCTYPE)
        *why = "documents with a DOCTYPE (DTD, entities) are refused";
    else if (!e.what[0])
        *why = "not well-formed";
    else {
        int n = snprintf(msg, sizeof(msg), "line %d: %s", e.line, e.what); /* cut when longer */
        *why = n > 0 ? msg : "not well-formed";
    }
    return NULL;
}

/* ---- conversion ---- */

struct xj {
    const struct pt_api *api;
    pt_call *call;
    const struct xml_to_json *cf;
    struct ptl_buf *out;
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
    struct ptl_buf b;
    ptl_buf_init(&b, x->api, x->call, 32);
    if (at)
        ptl_buf_str(&b, at);
    if (prefix) {
        ptl_buf_str(&b, (const char *)ns->prefix);
        ptl_buf_ch(&b, ':');
    }
    ptl_buf_str(&b, (const char *)local);
    return ptl_buf_bytes(&b);
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
    struct ptl_buf t;
    ptl_buf_init(&t, x->api, x->call, 32);
    for (xmlNodePtr c = a->children; c; c = c->next)
        if (c->content)
            ptl_buf_str(&t, (const char *)c->content);
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
    struct ptl_buf *b = x->out;
    bool arr = x->cf->direct && ntext > 1, first = true;
    struct ptl_buf t;
    ptl_buf_init(&t, x->api, x->call, 64);
    if (comma)
        ptl_buf_ch(b, ',');
    ptl_buf_lit(b, "\"#text\":");
    if (arr)
        ptl_buf_ch(b, '[');
    for (xmlNodePtr c = el->children; c; c = c->next) {
        if (!is_text(c) || blank((const char *)c->content))
            continue;
        if (arr) {
            if (!first)
                ptl_buf_ch(b, ',');
            json_str(b, (const char *)c->content, strlen((const char *)c->content));
            first = false;
        } else
            ptl_buf_str(&t, (const char *)c->content);
    }
    if (arr)
        ptl_buf_ch(b, ']');
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
    struct ptl_buf *b = x->out;
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
            ptl_buf_lit(b, "null");
            return;
        }
        struct ptl_buf t;
        ptl_buf_init(&t, x->api, x->call, 64);
        for (xmlNodePtr c = el->children; c; c = c->next)
            if (is_text(c))
                ptl_buf_str(&t, (const char *)c->content);
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
            struct ptl_buf nb;
            ptl_buf_init(&nb, x->api, x->call, 16);
            ptl_buf_lit(&nb, "@xmlns");
            if (ns->prefix) {
                ptl_buf_ch(&nb, ':');
                ptl_buf_str(&nb, (const char *)ns->prefix);
            }
            items[k++] = (struct xitem){ptl_buf_bytes(&nb), XI_NS, ns, -1};
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
    ptl_buf_ch(b, '{');
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
            ptl_buf_ch(b, ',');
        comma = true;
        json_str(b, items[g->first].key.data, items[g->first].key.len);
        ptl_buf_ch(b, ':');
        bool arr = g->count > 1 || (g->elems && x->cf->always_array);
        if (arr)
            ptl_buf_ch(b, '[');
        for (int i = g->first; i >= 0; i = items[i].next) {
            if (i != g->first)
                ptl_buf_ch(b, ',');
            xj_item(x, &items[i]);
        }
        if (arr)
            ptl_buf_ch(b, ']');
    }
    if (!text_done)
        xj_text_member(x, el, ntext, comma);
    ptl_buf_ch(b, '}');
}

/*
 * The result is {"root": value}.  The XML declaration is not carried over.
 * A body that is not well-formed XML, or has a DOCTYPE, fails the request
 * (400 InvalidXml for the client's request, 500 for a response); an empty
 * body is left alone.
 */
pt_status xml_to_json_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct xml_to_json *cf = inst;
    if (cf->content_type_only && !content_type_is(api, call, "xml"))
        return PT_OK;
    if (cf->consider_accept && !accept_asks(api, call, "json"))
        return PT_OK;
    pt_bytes body;
    int st;
    if ((st = ptl_body_get(api, call, PT_MSG_CURRENT, &body)))
        return (pt_status)st;
    if (!ptl_trim(body).len)
        return PT_OK;
    const char *why = NULL;
    xmlDocPtr doc = xml_parse_safely(body, &why);
    if (!doc)
        return convert_fail(api, call, cf->request, "InvalidXml", "xml-to-json: the body cannot be converted",
                            why);
    struct ptl_buf out;
    ptl_buf_init(&out, api, call, body.len + 64);
    struct xj x = {api, call, cf, &out};
    xmlNodePtr root = xmlDocGetRootElement(doc);
    ptl_buf_ch(&out, '{');
    pt_bytes rn = member_name(&x, NULL, root->ns, root->name);
    json_str(&out, rn.data, rn.len);
    ptl_buf_ch(&out, ':');
    xj_value(&x, root);
    ptl_buf_ch(&out, '}');
    xmlFreeDoc(doc);
    if (out.oom)
        return ptl_out_of_memory(api, call);
    if (api->body_set(call, PT_MSG_CURRENT, ptl_buf_bytes(&out)) != 0 ||
        ptl_header_put(api, call, PT_MSG_CURRENT, "Content-Type", "application/json") != 0)
        return PT_ERROR;
    return PT_OK;
}

/* ================================================================= libxml2 */

/* Makes libxml2 ready for the worker threads and disables external entities process-wide. */
void json_xml_init(void)
{
    previous_loader = xmlGetExternalEntityLoader();
    pt_xml_init();
}

void json_xml_fini(void)
{
    if (xmlGetExternalEntityLoader() == pt_xml_deny && previous_loader)
        xmlSetExternalEntityLoader(previous_loader);
}
