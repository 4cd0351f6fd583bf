/*
 * json.c -- the plugins' JSON reader (RFC 8259; a UTF-8 BOM tolerated).
 *
 * Why not jansson, which the gateway links anyway: json-to-xml writes what
 * the document says, and jansson keeps less of it.  Here a number keeps its
 * source text (jansson turns 0.1 into 0.10000000000000001, 1e5 into
 * 100000.0 and -0 into 0, and refuses an integer past 64 bits as "too big
 * integer"); a member named twice stays twice, in document order (jansson
 * keeps the last value only); a lone surrogate escape becomes U+FFFD and
 * \u0000 is an ordinary character (jansson refuses both); nesting stops at
 * PTL_JSON_MAX_DEPTH levels with the message clients and the log see
 * ("nested deeper than 256 levels"), and every other refusal has its own
 * short message.  So the reader stays, here, as the plugins' one
 * hand-written JSON parser; validate-jwt reads tokens and key sets with
 * jansson, whose refusal of duplicate members it relies on.
 *
 * Everything lives in the request arena: strings are decoded into it,
 * numbers and literals point into the source text.
 */
#include "ptlib.h"

#include <string.h>

#define PTL_JSON_STR2(x) #x
#define PTL_JSON_STR(x) PTL_JSON_STR2(x)

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
    struct ptl_buf b;
    ptl_buf_init(&b, j->api, j->call, (size_t)(q - p) + 1);
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
            case '"':
                ptl_buf_ch(&b, '"');
                break;
            case '\\':
                ptl_buf_ch(&b, '\\');
                break;
            case '/':
                ptl_buf_ch(&b, '/');
                break;
            case 'b':
                ptl_buf_ch(&b, '\b');
                break;
            case 'f':
                ptl_buf_ch(&b, '\f');
                break;
            case 'n':
                ptl_buf_ch(&b, '\n');
                break;
            case 'r':
                ptl_buf_ch(&b, '\r');
                break;
            case 't':
                ptl_buf_ch(&b, '\t');
                break;
            case 'u': {
                int u = q - p >= 4 ? ptl_hex4(p) : -1;
                if (u < 0) {
                    j->err = "invalid \\u escape";
                    return false;
                }
                p += 4;
                uint32_t cp = (uint32_t)u;
                if (cp >= 0xD800 && cp <= 0xDBFF && q - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                    int lo = ptl_hex4(p + 2);
                    if (lo >= 0xDC00 && lo <= 0xDFFF) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
                        p += 6;
                    }
                }
                if (cp >= 0xD800 && cp <= 0xDFFF)
                    cp = 0xFFFD; /* a lone surrogate cannot be represented in UTF-8 */
                ptl_utf8_put(&b, cp);
                break;
            }
            default:
                j->err = "invalid escape in a string";
                return false;
            }
            continue;
        }
        uint32_t cp;
        size_t k = ptl_utf8_next((const unsigned char *)p, (size_t)(q - p), &cp);
        if (!k) {
            j->err = "invalid UTF-8 in a string";
            return false;
        }
        ptl_buf_add(&b, p, k);
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

static struct ptl_jv *j_value(struct jparse *j, int depth)
{
    j_ws(j);
    if (j->p >= j->end) {
        j->err = "unexpected end of input";
        return NULL;
    }
    if (depth > PTL_JSON_MAX_DEPTH) {
        j->err = "nested deeper than " PTL_JSON_STR(PTL_JSON_MAX_DEPTH) " levels";
        return NULL;
    }
    struct ptl_jv *v = j->api->alloc(j->call, sizeof(*v));
    if (!v) {
        j->err = "out of memory";
        return NULL;
    }
    char c = *j->p;
    if (c == '{' || c == '[') {
        v->t = c == '{' ? PTL_J_OBJ : PTL_J_ARR;
        char close = c == '{' ? '}' : ']';
        j->p++;
        j_ws(j);
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return v;
        }
        struct ptl_jv *last = NULL;
        for (;;) {
            const char *key = NULL;
            size_t klen = 0;
            if (v->t == PTL_J_OBJ) {
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
            struct ptl_jv *item = j_value(j, depth + 1);
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
            j->err = v->t == PTL_J_OBJ ? "expected ',' or '}'" : "expected ',' or ']'";
            return NULL;
        }
    }
    if (c == '"') {
        v->t = PTL_J_STR;
        return j_string(j, &v->s, &v->n) ? v : NULL;
    }
    static const struct {
        const char *w;
        int t;
    } words[] = {{"true", PTL_J_TRUE}, {"false", PTL_J_FALSE}, {"null", PTL_J_NULL}};
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
    v->t = PTL_J_NUM;
    v->s = s;
    v->n = (size_t)(j->p - s);
    return v;
}

/* Parses a whole document (RFC 8259, a UTF-8 BOM tolerated); NULL with *err. */
struct ptl_jv *ptl_json_parse(const struct pt_api *api, pt_call *call, pt_bytes text, const char **err)
{
    struct jparse j = {api, call, text.data, text.data + text.len, NULL};
    if (text.len >= 3 && !memcmp(text.data, "\xEF\xBB\xBF", 3))
        j.p += 3;
    struct ptl_jv *v = j_value(&j, 0);
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
