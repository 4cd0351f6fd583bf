/*
 * body.c -- a JSON body into jansson values, fast.
 *
 * pt_jschema validates jansson values, and jansson's own reader costs about
 * as much as proxying the request does (it pulls the text through a
 * character callback and copies every token twice).  This reader goes
 * over the bytes once and makes the values directly: strings checked for
 * UTF-8 and unescaped in one pass, integers read in place, objects filled
 * without a second key check.  Strict RFC 8259: one value with optional
 * white space around it; no comments, no trailing commas, no leading zeros,
 * no control characters or invalid UTF-8 in strings, surrogates paired.  A
 * repeated member name keeps the last value (as jansson does).  Nesting is
 * bounded (BODY_MAX_DEPTH); integers beyond 64 bits become reals.
 * Errors say what and where: "... Line: L, Position: C".
 */
#include "validate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rd {
    const unsigned char *p, *end, *start;
    const char *err;
    const unsigned char *err_at;
    char *tmp; /* string scratch (malloc'd, grown) */
    size_t tmpcap;
};

static json_t *value(struct rd *r, int depth);

static json_t *fail(struct rd *r, const char *what)
{
    if (!r->err) {
        r->err = what;
        r->err_at = r->p;
    }
    return NULL;
}

static void ws(struct rd *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
        r->p++;
}

static bool tmp_room(struct rd *r, size_t n)
{
    if (n <= r->tmpcap)
        return true;
    size_t cap = r->tmpcap ? r->tmpcap : 256;
    while (cap < n)
        cap *= 2;
    char *t = realloc(r->tmp, cap);
    if (!t)
        return false;
    r->tmp = t;
    r->tmpcap = cap;
    return true;
}

static int hex4(const unsigned char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int h = ptl_hexval((char)p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* A string's contents (after the opening quote) into out and len; the text is
   used in place when it holds no escape, else unescaped into r->tmp. */
static bool string(struct rd *r, const char **out, size_t *len)
{
    const unsigned char *s = r->p;
    const unsigned char *q = s;
    /* fast path: ASCII without escapes, eight bytes at a time while none of
       them is a quote, a backslash, a control character or non-ASCII */
    while (r->end - q >= 8) {
        uint64_t w;
        memcpy(&w, q, 8);
        const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
        uint64_t quote = w ^ (ones * '"'), bslash = w ^ (ones * '\\');
        uint64_t stop = ((quote - ones) & ~quote) | ((bslash - ones) & ~bslash) | (w - ones * 0x20) | w;
        if (stop & high)
            break;
        q += 8;
    }
    while (q < r->end && *q != '"' && *q != '\\' && *q >= 0x20 && *q < 0x80)
        q++;
    if (q < r->end && *q == '"') {
        *out = (const char *)s;
        *len = (size_t)(q - s);
        r->p = q + 1;
        return true;
    }
    size_t n = 0;
    if (!tmp_room(r, (size_t)(r->end - s) + 4)) {
        fail(r, "out of memory");
        return false;
    }
    memcpy(r->tmp, s, (size_t)(q - s));
    n = (size_t)(q - s);
    r->p = q;
    while (r->p < r->end) {
        unsigned char c = *r->p;
        if (c == '"') {
            r->p++;
            *out = r->tmp;
            *len = n;
            return true;
        }
        if (c < 0x20) {
            fail(r, "control character in a string");
            return false;
        }
        if (c == '\\') {
            if (r->end - r->p < 2) {
                fail(r, "unterminated string");
                return false;
            }
            unsigned char e = r->p[1];
            r->p += 2;
            const char *simple = strchr("\"\\/bfnrt", e);
            if (e && simple) {
                static const char map[] = "\"\\/\b\f\n\r\t";
                r->tmp[n++] = map[simple - "\"\\/bfnrt"];
                continue;
            }
            if (e != 'u' || r->end - r->p < 4 || hex4(r->p) < 0) {
                fail(r, "invalid escape in a string");
                return false;
            }
            uint32_t cp = (uint32_t)hex4(r->p);
            r->p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                int lo = r->end - r->p >= 6 && r->p[0] == '\\' && r->p[1] == 'u' ? hex4(r->p + 2) : -1;
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    fail(r, "unpaired surrogate in a string");
                    return false;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
                r->p += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                fail(r, "unpaired surrogate in a string");
                return false;
            }
            /* encode (never longer than the escape it replaces) */
            if (cp < 0x80) {
                r->tmp[n++] = (char)cp;
            } else if (cp < 0x800) {
                r->tmp[n++] = (char)(0xC0 | (cp >> 6));
                r->tmp[n++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                r->tmp[n++] = (char)(0xE0 | (cp >> 12));
                r->tmp[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                r->tmp[n++] = (char)(0x80 | (cp & 0x3F));
            } else {
                r->tmp[n++] = (char)(0xF0 | (cp >> 18));
                r->tmp[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                r->tmp[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                r->tmp[n++] = (char)(0x80 | (cp & 0x3F));
            }
            continue;
        }
        if (c < 0x80) {
            r->tmp[n++] = (char)c;
            r->p++;
            continue;
        }
        uint32_t cp;
        size_t k = ptl_utf8_next(r->p, (size_t)(r->end - r->p), &cp);
        if (!k) {
            fail(r, "invalid UTF-8 in a string");
            return false;
        }
        memcpy(r->tmp + n, r->p, k);
        n += k;
        r->p += k;
    }
    fail(r, "unterminated string");
    return false;
}

static json_t *number(struct rd *r)
{
    const unsigned char *s = r->p;
    bool neg = false, real = false, big = false;
    if (*r->p == '-') {
        neg = true;
        r->p++;
    }
    if (r->p >= r->end || *r->p < '0' || *r->p > '9')
        return fail(r, "invalid number");
    uint64_t v = 0;
    if (*r->p == '0') {
        r->p++;
    } else {
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
            unsigned d = (unsigned)(*r->p++ - '0');
            if (v > (UINT64_MAX - d) / 10)
                big = true;
            else
                v = v * 10 + d;
        }
    }
    if (r->p < r->end && *r->p == '.') {
        real = true;
        r->p++;
        if (r->p >= r->end || *r->p < '0' || *r->p > '9')
            return fail(r, "invalid number");
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        real = true;
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
            r->p++;
        if (r->p >= r->end || *r->p < '0' || *r->p > '9')
            return fail(r, "invalid number");
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
    }
    if (!real && !big && (neg ? v <= (uint64_t)INT64_MAX + 1 : v <= (uint64_t)INT64_MAX))
        return json_integer(neg ? (json_int_t)(0 - v) : (json_int_t)v);
    size_t n = (size_t)(r->p - s);
    char buf[64], *t = n < sizeof(buf) ? buf : malloc(n + 1);
    if (!t)
        return fail(r, "out of memory");
    memcpy(t, s, n);
    t[n] = '\0';
    double d = strtod(t, NULL);
    if (t != buf)
        free(t);
    if (!isfinite(d))
        return fail(r, "number out of range");
    return json_real(d);
}

static bool lit(struct rd *r, const char *w, size_t n)
{
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, w, n))
        return false;
    r->p += n;
    return true;
}

static json_t *object(struct rd *r, int depth)
{
    json_t *o = json_object();
    if (!o)
        return fail(r, "out of memory");
    r->p++; /* { */
    ws(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        return o;
    }
    for (;;) {
        ws(r);
        if (r->p >= r->end || *r->p != '"') {
            json_decref(o);
            return fail(r, "'\"' expected (a member name)");
        }
        r->p++;
        const char *k;
        size_t kl;
        if (!string(r, &k, &kl)) {
            json_decref(o);
            return NULL;
        }
        /* the key must outlive the value's parse, which may reuse r->tmp */
        char kb[128], *key = kl < sizeof(kb) ? kb : malloc(kl + 1);
        if (!key) {
            json_decref(o);
            return fail(r, "out of memory");
        }
        memcpy(key, k, kl);
        key[kl] = '\0';
        ws(r);
        json_t *v = NULL;
        if (r->p >= r->end || *r->p != ':') {
            fail(r, "':' expected");
        } else {
            r->p++;
            v = value(r, depth + 1);
        }
        /* a NUL in a name is refused, as jansson does: C-string lookups could not see it */
        int rc = -1;
        if (v && memchr(key, 0, kl)) {
            json_decref(v);
            fail(r, "NUL character in a member name");
        } else if (v) {
            rc = json_object_set_new_nocheck(o, key, v);
        }
        if (key != kb)
            free(key);
        if (rc) {
            json_decref(o);
            return fail(r, "invalid member");
        }
        ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            continue;
        }
        if (r->p < r->end && *r->p == '}') {
            r->p++;
            return o;
        }
        json_decref(o);
        return fail(r, "',' or '}' expected");
    }
}

static json_t *array(struct rd *r, int depth)
{
    json_t *a = json_array();
    if (!a)
        return fail(r, "out of memory");
    r->p++; /* [ */
    ws(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        return a;
    }
    for (;;) {
        json_t *v = value(r, depth + 1);
        if (!v || json_array_append_new(a, v)) {
            json_decref(a);
            return fail(r, "invalid array item");
        }
        ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            continue;
        }
        if (r->p < r->end && *r->p == ']') {
            r->p++;
            return a;
        }
        json_decref(a);
        return fail(r, "',' or ']' expected");
    }
}

static json_t *value(struct rd *r, int depth)
{
    ws(r);
    if (depth > BODY_MAX_DEPTH)
        return fail(r, "nested too deeply");
    if (r->p >= r->end)
        return fail(r, "unexpected end of the body");
    switch (*r->p) {
    case '{':
        return object(r, depth);
    case '[':
        return array(r, depth);
    case '"': {
        r->p++;
        const char *s;
        size_t n;
        if (!string(r, &s, &n))
            return NULL;
        json_t *j = json_stringn_nocheck(s, n);
        return j ? j : fail(r, "out of memory");
    }
    case 't':
        return lit(r, "true", 4) ? json_true() : fail(r, "invalid literal");
    case 'f':
        return lit(r, "false", 5) ? json_false() : fail(r, "invalid literal");
    case 'n':
        return lit(r, "null", 4) ? json_null() : fail(r, "invalid literal");
    default:
        return number(r);
    }
}

json_t *body_parse_json(const char *text, size_t len, char *err, size_t errlen)
{
    struct rd r = {(const unsigned char *)text,
                   (const unsigned char *)text + len,
                   (const unsigned char *)text,
                   NULL,
                   NULL,
                   NULL,
                   0};
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3))
        r.p += 3; /* a UTF-8 byte order mark */
    json_t *v = value(&r, 0);
    if (v) {
        ws(&r);
        if (r.p != r.end) {
            json_decref(v);
            v = fail(&r, "end of the body expected after the value");
        }
    }
    free(r.tmp);
    if (v)
        return v;
    int line = 1, col = 1;
    for (const unsigned char *q = r.start; q < r.err_at && q < r.end; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else if ((*q & 0xC0) != 0x80) {
            col++;
        }
    }
    snprintf(err, errlen, "The body is not valid JSON: %s. Line: %d, Position: %d", r.err ? r.err : "?", line,
             col);
    return NULL;
}
