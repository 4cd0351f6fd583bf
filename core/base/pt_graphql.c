/*
 * pt_graphql.c -- GraphQL lexer and parser (executable documents and SDL),
 * schemas, request validation, depth and field counts, printing.
 *
 * The grammar is the October 2021 specification's (with the September 2025
 * draft's \u{...} escapes).  The parser is recursive descent; every
 * recursion (selection sets, values, list types) goes through enter(),
 * which refuses nesting past the limit, and fragment spreads are followed
 * at most FRAG_CHAIN fragments deep, so no walk recurses further than
 * (FRAG_CHAIN + 1) * max_depth frames.  Errors unwind with longjmp to the
 * entry point, which frees the document's arena: the only resource held.
 */
#include "pt_graphql.h"
#include "pt_utf8.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FRAG_CHAIN 16    /* fragments spread inside fragments, at most */
#define SATURATE 1000000 /* depth and field counts stop growing here */

/* ================================================================ arena */

struct pt_graphql_arena {
    struct achunk *head;
    void *(*alloc)(void *ctx, size_t n); /* NULL: malloc'd chunks, freed with the arena */
    void *ctx;
};

struct achunk {
    struct achunk *next;
    size_t cap, used;
    _Alignas(16) char data[];
};

static void *ar_alloc(struct pt_graphql_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct achunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 16384 ? n : 16384;
        c = a->alloc ? a->alloc(a->ctx, sizeof(*c) + cap) : malloc(sizeof(*c) + cap);
        if (!c)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

static void ar_free(struct pt_graphql_arena *a)
{
    if (!a || a->alloc) /* the caller's memory: released with whatever it belongs to */
        return;
    for (struct achunk *c = a->head, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    free(a);
}

/* ================================================================ lexer */

enum { T_EOF, T_PUNCT, T_SPREAD, T_NAME, T_INT, T_FLOAT, T_STRING, T_BLOCK };

struct parser {
    struct pt_graphql_arena *ar;
    const char *src, *p, *end;
    int line;
    const char *col_pos; /* column known up to here */
    int col;
    size_t tokens, max_tokens;
    int depth, max_depth;
    unsigned what;
    /* the current token */
    int t;
    char punct;
    const char *ts;
    size_t tlen;
    int tline, tcol;
    char *sval; /* STRING, BLOCK: decoded; NAME, numbers: a NUL-terminated copy */
    size_t slen;
    struct pt_graphql_error *err;
    jmp_buf jb;
};

static void fail_at(struct parser *ps, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), noreturn));

static void fail_at(struct parser *ps, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err->message, sizeof(ps->err->message), fmt, ap);
    va_end(ap);
    ps->err->line = line;
    ps->err->column = col;
    longjmp(ps->jb, 1);
}

static void *palloc(struct parser *ps, size_t n)
{
    void *p = ar_alloc(ps->ar, n);
    if (!p)
        fail_at(ps, 0, 0, "out of memory");
    return p;
}

/* The column of position q on the current line (q never goes backwards). */
static int column_of(struct parser *ps, const char *q)
{
    while (ps->col_pos < q) {
        if (((unsigned char)*ps->col_pos & 0xC0) != 0x80)
            ps->col++;
        ps->col_pos++;
    }
    return ps->col;
}

static void new_line(struct parser *ps, const char *start)
{
    ps->line++;
    ps->col_pos = start;
    ps->col = 1;
}

static void fail_here(struct parser *ps, const char *q, const char *fmt, const char *arg)
    __attribute__((noreturn));
static void fail_here(struct parser *ps, const char *q, const char *fmt, const char *arg)
{
    int col = column_of(ps, q);
    fail_at(ps, ps->line, col, fmt, arg);
}

static bool name_start(unsigned char c)
{
    return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool name_cont(unsigned char c)
{
    return name_start(c) || (c >= '0' && c <= '9');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static void put_utf8(char *out, size_t *o, uint32_t cp)
{
    if (cp < 0x80)
        out[(*o)++] = (char)cp;
    else if (cp < 0x800) {
        out[(*o)++] = (char)(0xC0 | (cp >> 6));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[(*o)++] = (char)(0xE0 | (cp >> 12));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*o)++] = (char)(0xF0 | (cp >> 18));
        out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
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

/* \u at q (q points at 'u'); the code point or -1; *adv = bytes after the backslash. */
static long read_unicode_escape(const char *q, const char *end, size_t *adv)
{
    q++;
    if (q < end && *q == '{') {
        long v = 0;
        size_t i = 1;
        while (q + i < end && q[i] != '}') {
            int h = hexval(q[i]);
            if (h < 0 || v > 0x10FFFF)
                return -1;
            v = v * 16 + h;
            i++;
        }
        if (q + i >= end || i == 1 || v > 0x10FFFF)
            return -1;
        *adv = 1 + i + 1;
        return v;
    }
    if (end - q < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(q[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    *adv = 5;
    return v;
}

static void lex_string(struct parser *ps)
{
    const char *q = ps->p + 1;
    const char *end = ps->end;
    /* decoded is never longer than the raw text */
    const char *r = q;
    while (r < end && *r != '"' && *r != '\n' && *r != '\r') {
        if (*r == '\\' && r + 1 < end)
            r++;
        r++;
    }
    if (r >= end || *r != '"')
        fail_here(ps, ps->p, "unterminated string%s", "");
    char *out = palloc(ps, (size_t)(r - q) + 1);
    size_t o = 0;
    while (q < r) {
        unsigned char c = (unsigned char)*q;
        if (c < 0x20 && c != '\t')
            fail_here(ps, q, "invalid character in a string%s", "");
        if (c == '\\') {
            char e = q[1];
            size_t adv = 2;
            switch (e) {
            case '"':
                out[o++] = '"';
                break;
            case '\\':
                out[o++] = '\\';
                break;
            case '/':
                out[o++] = '/';
                break;
            case 'b':
                out[o++] = '\b';
                break;
            case 'f':
                out[o++] = '\f';
                break;
            case 'n':
                out[o++] = '\n';
                break;
            case 'r':
                out[o++] = '\r';
                break;
            case 't':
                out[o++] = '\t';
                break;
            case 'u': {
                size_t a;
                long cp = read_unicode_escape(q + 1, r, &a);
                if (cp < 0)
                    fail_here(ps, q, "invalid Unicode escape in a string%s", "");
                adv = 1 + a;
                if (cp >= 0xD800 && cp <= 0xDBFF) { /* a surrogate pair in two \u escapes */
                    size_t a2;
                    long lo = (q + adv + 1 < r && q[adv] == '\\' && q[adv + 1] == 'u')
                                  ? read_unicode_escape(q + adv + 1, r, &a2)
                                  : -1;
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        fail_here(ps, q, "invalid Unicode escape in a string (a lone surrogate)%s", "");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    adv += 1 + a2;
                } else if (cp >= 0xDC00 && cp <= 0xDFFF)
                    fail_here(ps, q, "invalid Unicode escape in a string (a lone surrogate)%s", "");
                /* a 4-byte sequence from 6 or 12 escape bytes: never longer than the source */
                put_utf8(out, &o, (uint32_t)cp);
                break;
            }
            default:
                fail_here(ps, q, "invalid escape sequence in a string%s", "");
            }
            q += adv;
            continue;
        }
        size_t n = pt_utf8_seq((const unsigned char *)q, (size_t)(r - q));
        if (!n)
            fail_here(ps, q, "invalid UTF-8 in a string%s", "");
        memcpy(out + o, q, n);
        o += n;
        q += n;
    }
    out[o] = '\0';
    ps->sval = out;
    ps->slen = o;
    ps->t = T_STRING;
    ps->p = r + 1;
}

static bool ws_only(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t')
            return false;
    return true;
}

/* The spec's BlockStringValue: common indentation and blank first/last lines removed. */
static void block_value(struct parser *ps, const char *raw, size_t n)
{
    /* split into lines */
    size_t nlines = 1;
    for (size_t i = 0; i < n; i++)
        if (raw[i] == '\n' || (raw[i] == '\r' && !(i + 1 < n && raw[i + 1] == '\n')))
            nlines++;
    const char **ls = palloc(ps, nlines * sizeof(*ls));
    size_t *ll = palloc(ps, nlines * sizeof(*ll));
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || raw[i] == '\n' || raw[i] == '\r') {
            ls[k] = raw + start;
            ll[k] = i - start;
            k++;
            if (i < n && raw[i] == '\r' && i + 1 < n && raw[i + 1] == '\n')
                i++;
            start = i + 1;
        }
    }
    size_t common = SIZE_MAX;
    for (size_t i = 1; i < k; i++) {
        size_t ind = 0;
        while (ind < ll[i] && (ls[i][ind] == ' ' || ls[i][ind] == '\t'))
            ind++;
        if (ind < ll[i] && ind < common)
            common = ind;
    }
    if (common != SIZE_MAX)
        for (size_t i = 1; i < k; i++) {
            size_t c = common < ll[i] ? common : ll[i];
            ls[i] += c;
            ll[i] -= c;
        }
    size_t first = 0, last = k;
    while (first < last && ws_only(ls[first], ll[first]))
        first++;
    while (last > first && ws_only(ls[last - 1], ll[last - 1]))
        last--;
    char *out = palloc(ps, n + 1);
    size_t o = 0;
    for (size_t i = first; i < last; i++) {
        if (i > first)
            out[o++] = '\n';
        /* \""" becomes """ */
        for (size_t j = 0; j < ll[i]; j++) {
            if (ls[i][j] == '\\' && j + 4 <= ll[i] && !memcmp(ls[i] + j + 1, "\"\"\"", 3)) {
                memcpy(out + o, "\"\"\"", 3);
                o += 3;
                j += 3;
                continue;
            }
            out[o++] = ls[i][j];
        }
    }
    out[o] = '\0';
    ps->sval = out;
    ps->slen = o;
}

static void lex_block(struct parser *ps)
{
    const char *q = ps->p + 3, *end = ps->end;
    const char *start = q;
    for (;;) {
        if (q >= end)
            fail_at(ps, ps->tline, ps->tcol, "unterminated block string");
        unsigned char c = (unsigned char)*q;
        if (c == '"' && end - q >= 3 && q[1] == '"' && q[2] == '"')
            break;
        if (c == '\\' && end - q >= 4 && !memcmp(q + 1, "\"\"\"", 3)) {
            q += 4;
            continue;
        }
        if (c == '\n' || c == '\r') {
            if (c == '\r' && q + 1 < end && q[1] == '\n')
                q++;
            q++;
            new_line(ps, q);
            continue;
        }
        if (c < 0x20 && c != '\t')
            fail_here(ps, q, "invalid character in a block string%s", "");
        size_t n = pt_utf8_seq((const unsigned char *)q, (size_t)(end - q));
        if (!n)
            fail_here(ps, q, "invalid UTF-8 in a block string%s", "");
        q += n;
    }
    block_value(ps, start, (size_t)(q - start));
    ps->t = T_BLOCK;
    ps->p = q + 3;
}

static void lex_number(struct parser *ps)
{
    const char *q = ps->p, *end = ps->end;
    bool is_float = false;
    if (*q == '-')
        q++;
    if (q >= end || !is_digit((unsigned char)*q))
        fail_here(ps, q, "invalid number: a digit expected%s", "");
    if (*q == '0' && q + 1 < end && is_digit((unsigned char)q[1]))
        fail_here(ps, q + 1, "invalid number: unexpected digit after 0%s", "");
    while (q < end && is_digit((unsigned char)*q))
        q++;
    if (q < end && *q == '.') {
        is_float = true;
        q++;
        if (q >= end || !is_digit((unsigned char)*q))
            fail_here(ps, q, "invalid number: a digit expected after '.'%s", "");
        while (q < end && is_digit((unsigned char)*q))
            q++;
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        is_float = true;
        q++;
        if (q < end && (*q == '+' || *q == '-'))
            q++;
        if (q >= end || !is_digit((unsigned char)*q))
            fail_here(ps, q, "invalid number: a digit expected in the exponent%s", "");
        while (q < end && is_digit((unsigned char)*q))
            q++;
    }
    if (q < end && (*q == '.' || name_start((unsigned char)*q)))
        fail_here(ps, q, "invalid number: unexpected character after it%s", "");
    ps->t = is_float ? T_FLOAT : T_INT;
    ps->p = q;
}

/* Reads the next token into ps->t... */
static void next(struct parser *ps)
{
    const char *p = ps->p, *end = ps->end;
    for (;;) {
        if (p >= end)
            break;
        unsigned char c = (unsigned char)*p;
        if (c == ' ' || c == '\t' || c == ',')
            p++;
        else if (c == '\n' || c == '\r') {
            if (c == '\r' && p + 1 < end && p[1] == '\n')
                p++;
            p++;
            new_line(ps, p);
        } else if (c == 0xEF && end - p >= 3 && (unsigned char)p[1] == 0xBB && (unsigned char)p[2] == 0xBF)
            p += 3; /* BOM */
        else if (c == '#') {
            while (p < end && *p != '\n' && *p != '\r')
                p++;
        } else
            break;
    }
    ps->p = p;
    ps->ts = p;
    ps->tline = ps->line;
    ps->tcol = column_of(ps, p);
    ps->sval = NULL;
    ps->slen = 0;
    if (p >= end) {
        ps->t = T_EOF;
        ps->tlen = 0;
        return;
    }
    if (++ps->tokens > ps->max_tokens)
        fail_at(ps, ps->tline, ps->tcol, "the document has more than %zu tokens", ps->max_tokens);
    unsigned char c = (unsigned char)*p;
    if (c && strchr("!$&()=:@[]{}|", c)) {
        ps->t = T_PUNCT;
        ps->punct = (char)c;
        ps->p = p + 1;
    } else if (c == '.') {
        if (end - p < 3 || p[1] != '.' || p[2] != '.')
            fail_at(ps, ps->tline, ps->tcol, "unexpected character '.' (did you mean '...'?)");
        ps->t = T_SPREAD;
        ps->p = p + 3;
    } else if (name_start(c)) {
        const char *q = p;
        while (q < end && name_cont((unsigned char)*q))
            q++;
        ps->t = T_NAME;
        ps->p = q;
    } else if (c == '-' || is_digit(c))
        lex_number(ps);
    else if (c == '"') {
        if (end - p >= 3 && p[1] == '"' && p[2] == '"')
            lex_block(ps);
        else
            lex_string(ps);
    } else if (c < 0x20 || c == 0x7F)
        fail_at(ps, ps->tline, ps->tcol, "unexpected control character 0x%02X", c);
    else if (c >= 0x80)
        fail_at(ps, ps->tline, ps->tcol, "unexpected character (non-ASCII outside a string or comment)");
    else
        fail_at(ps, ps->tline, ps->tcol, "unexpected character '%c'", c);
    ps->tlen = (size_t)(ps->p - ps->ts);
    if (ps->t == T_NAME || ps->t == T_INT || ps->t == T_FLOAT) {
        char *s = palloc(ps, ps->tlen + 1);
        memcpy(s, ps->ts, ps->tlen);
        ps->sval = s;
        ps->slen = ps->tlen;
    }
}

/* ================================================================ parser */

static const char *tok_desc(struct parser *ps, char *buf, size_t n)
{
    switch (ps->t) {
    case T_EOF:
        return "end of document";
    case T_PUNCT:
        snprintf(buf, n, "'%c'", ps->punct);
        return buf;
    case T_SPREAD:
        return "'...'";
    case T_NAME:
        snprintf(buf, n, "name '%.40s'", ps->sval);
        return buf;
    case T_INT:
    case T_FLOAT:
        snprintf(buf, n, "number %.40s", ps->sval);
        return buf;
    default:
        return "a string";
    }
}

static void unexpected(struct parser *ps, const char *want) __attribute__((noreturn));
static void unexpected(struct parser *ps, const char *want)
{
    char b[80];
    fail_at(ps, ps->tline, ps->tcol, "expected %s, found %s", want, tok_desc(ps, b, sizeof(b)));
}

static bool is_punct(struct parser *ps, char c)
{
    return ps->t == T_PUNCT && ps->punct == c;
}

static bool is_kw(struct parser *ps, const char *kw)
{
    return ps->t == T_NAME && !strcmp(ps->sval, kw);
}

static void expect(struct parser *ps, char c)
{
    if (!is_punct(ps, c)) {
        char w[8];
        snprintf(w, sizeof(w), "'%c'", c);
        unexpected(ps, w);
    }
    next(ps);
}

static const char *name(struct parser *ps)
{
    if (ps->t != T_NAME)
        unexpected(ps, "a name");
    const char *s = ps->sval;
    next(ps);
    return s;
}

static void expect_kw(struct parser *ps, const char *kw)
{
    if (!is_kw(ps, kw)) {
        char w[40];
        snprintf(w, sizeof(w), "'%s'", kw);
        unexpected(ps, w);
    }
    next(ps);
}

static void enter(struct parser *ps)
{
    if (++ps->depth > ps->max_depth)
        fail_at(ps, ps->tline, ps->tcol, "nested deeper than %d levels", ps->max_depth);
}

static void leave(struct parser *ps)
{
    ps->depth--;
}

static struct pt_graphql_node *node(struct parser *ps, int kind)
{
    struct pt_graphql_node *n = palloc(ps, sizeof(*n));
    n->kind = kind;
    n->line = ps->tline;
    n->column = ps->tcol;
    n->memo_depth = n->memo_fields = -1;
    return n;
}

/* Appends to a list kept as (first, *tail). */
#define APPEND(first, tail, n)                                                                               \
    do {                                                                                                     \
        if (tail)                                                                                            \
            (tail)->next = (n);                                                                              \
        else                                                                                                 \
            (first) = (n);                                                                                   \
        (tail) = (n);                                                                                        \
    } while (0)

static struct pt_graphql_node *value(struct parser *ps, bool is_const);

static struct pt_graphql_node *value(struct parser *ps, bool is_const)
{
    struct pt_graphql_node *v;
    switch (ps->t) {
    case T_PUNCT:
        if (ps->punct == '$') {
            if (is_const)
                fail_at(ps, ps->tline, ps->tcol, "a variable is not allowed in a constant value");
            v = node(ps, PT_GQL_VARIABLE);
            next(ps);
            v->name = name(ps);
            return v;
        }
        if (ps->punct == '[') {
            v = node(ps, PT_GQL_LIST);
            enter(ps);
            next(ps);
            struct pt_graphql_node *tail = NULL;
            while (!is_punct(ps, ']')) {
                if (ps->t == T_EOF)
                    unexpected(ps, "']'");
                struct pt_graphql_node *e = value(ps, is_const);
                APPEND(v->list, tail, e);
            }
            next(ps);
            leave(ps);
            return v;
        }
        if (ps->punct == '{') {
            v = node(ps, PT_GQL_OBJECT);
            enter(ps);
            next(ps);
            struct pt_graphql_node *tail = NULL;
            while (!is_punct(ps, '}')) {
                struct pt_graphql_node *f = node(ps, PT_GQL_OBJECT_FIELD);
                f->name = name(ps);
                expect(ps, ':');
                f->value = value(ps, is_const);
                APPEND(v->list, tail, f);
            }
            next(ps);
            leave(ps);
            return v;
        }
        break;
    case T_INT:
    case T_FLOAT:
        v = node(ps, ps->t == T_INT ? PT_GQL_INT : PT_GQL_FLOAT);
        v->text = ps->sval;
        v->len = ps->slen;
        next(ps);
        return v;
    case T_STRING:
    case T_BLOCK:
        v = node(ps, PT_GQL_STRING);
        v->text = ps->sval;
        v->len = ps->slen;
        next(ps);
        return v;
    case T_NAME:
        if (!strcmp(ps->sval, "true") || !strcmp(ps->sval, "false")) {
            v = node(ps, PT_GQL_BOOLEAN);
            v->text = ps->sval;
            v->len = ps->slen;
        } else if (!strcmp(ps->sval, "null"))
            v = node(ps, PT_GQL_NULL);
        else {
            v = node(ps, PT_GQL_ENUM);
            v->name = ps->sval;
        }
        next(ps);
        return v;
    }
    unexpected(ps, "a value");
}

static struct pt_graphql_node *arguments(struct parser *ps, bool is_const)
{
    struct pt_graphql_node *first = NULL, *tail = NULL;
    if (!is_punct(ps, '('))
        return NULL;
    next(ps);
    do {
        struct pt_graphql_node *a = node(ps, PT_GQL_ARGUMENT);
        a->name = name(ps);
        expect(ps, ':');
        a->value = value(ps, is_const);
        APPEND(first, tail, a);
    } while (!is_punct(ps, ')'));
    next(ps);
    return first;
}

static struct pt_graphql_node *directives(struct parser *ps, bool is_const)
{
    struct pt_graphql_node *first = NULL, *tail = NULL;
    while (is_punct(ps, '@')) {
        struct pt_graphql_node *d = node(ps, PT_GQL_DIRECTIVE);
        next(ps);
        d->name = name(ps);
        d->args = arguments(ps, is_const);
        APPEND(first, tail, d);
    }
    return first;
}

static struct pt_graphql_node *type_ref(struct parser *ps)
{
    struct pt_graphql_node *t;
    if (is_punct(ps, '[')) {
        t = node(ps, PT_GQL_LIST_TYPE);
        enter(ps);
        next(ps);
        t->type = type_ref(ps);
        expect(ps, ']');
        leave(ps);
    } else {
        t = node(ps, PT_GQL_NAMED_TYPE);
        t->name = name(ps);
    }
    if (is_punct(ps, '!')) {
        struct pt_graphql_node *nn = node(ps, PT_GQL_NON_NULL);
        nn->line = t->line;
        nn->column = t->column;
        nn->type = t;
        next(ps);
        t = nn;
    }
    return t;
}

static struct pt_graphql_node *selection_set(struct parser *ps);

static struct pt_graphql_node *selection(struct parser *ps)
{
    struct pt_graphql_node *s;
    if (ps->t == T_SPREAD) {
        int line = ps->tline, col = ps->tcol;
        next(ps);
        if (ps->t == T_NAME && strcmp(ps->sval, "on")) {
            s = node(ps, PT_GQL_SPREAD);
            s->name = name(ps);
            s->directives = directives(ps, false);
        } else {
            s = node(ps, PT_GQL_INLINE);
            if (is_kw(ps, "on")) {
                next(ps);
                s->type_cond = name(ps);
            }
            s->directives = directives(ps, false);
            s->sel = selection_set(ps);
        }
        s->line = line;
        s->column = col;
        return s;
    }
    s = node(ps, PT_GQL_FIELD);
    s->name = name(ps);
    if (is_punct(ps, ':')) {
        next(ps);
        s->alias = s->name;
        s->name = name(ps);
    }
    s->args = arguments(ps, false);
    s->directives = directives(ps, false);
    if (is_punct(ps, '{'))
        s->sel = selection_set(ps);
    return s;
}

static struct pt_graphql_node *selection_set(struct parser *ps)
{
    struct pt_graphql_node *first = NULL, *tail = NULL;
    if (!is_punct(ps, '{'))
        unexpected(ps, "'{'");
    enter(ps);
    next(ps);
    do {
        struct pt_graphql_node *s = selection(ps);
        APPEND(first, tail, s);
    } while (!is_punct(ps, '}'));
    next(ps);
    leave(ps);
    return first;
}

static struct pt_graphql_node *operation(struct parser *ps)
{
    struct pt_graphql_node *op = node(ps, PT_GQL_OPERATION);
    if (is_punct(ps, '{')) {
        op->op = PT_GRAPHQL_QUERY;
        op->sel = selection_set(ps);
        return op;
    }
    op->op = is_kw(ps, "query")      ? PT_GRAPHQL_QUERY
             : is_kw(ps, "mutation") ? PT_GRAPHQL_MUTATION
                                     : PT_GRAPHQL_SUBSCRIPTION;
    next(ps);
    if (ps->t == T_NAME)
        op->name = name(ps);
    if (is_punct(ps, '(')) {
        next(ps);
        struct pt_graphql_node *tail = NULL;
        do {
            struct pt_graphql_node *v = node(ps, PT_GQL_VARIABLE_DEF);
            expect(ps, '$');
            v->name = name(ps);
            expect(ps, ':');
            v->type = type_ref(ps);
            if (is_punct(ps, '=')) {
                next(ps);
                v->value = value(ps, true);
            }
            v->directives = directives(ps, true);
            APPEND(op->vars, tail, v);
        } while (!is_punct(ps, ')'));
        next(ps);
    }
    op->directives = directives(ps, false);
    op->sel = selection_set(ps);
    return op;
}

static struct pt_graphql_node *fragment(struct parser *ps)
{
    struct pt_graphql_node *f = node(ps, PT_GQL_FRAGMENT);
    next(ps);
    if (is_kw(ps, "on"))
        unexpected(ps, "a fragment name (not 'on')");
    f->name = name(ps);
    expect_kw(ps, "on");
    f->type_cond = name(ps);
    f->directives = directives(ps, false);
    f->sel = selection_set(ps);
    return f;
}

/* ---- SDL ---- */

static const char *description(struct parser *ps)
{
    if (ps->t == T_STRING || ps->t == T_BLOCK) {
        const char *d = ps->sval;
        next(ps);
        return d;
    }
    return NULL;
}

static struct pt_graphql_node *input_value_def(struct parser *ps)
{
    const char *d = description(ps);
    struct pt_graphql_node *v = node(ps, PT_GQL_INPUT_VALUE_DEF);
    v->description = d;
    v->name = name(ps);
    expect(ps, ':');
    v->type = type_ref(ps);
    if (is_punct(ps, '=')) {
        next(ps);
        v->value = value(ps, true);
    }
    v->directives = directives(ps, true);
    return v;
}

static struct pt_graphql_node *input_values(struct parser *ps, char open, char close)
{
    struct pt_graphql_node *first = NULL, *tail = NULL;
    expect(ps, open);
    do {
        struct pt_graphql_node *v = input_value_def(ps);
        APPEND(first, tail, v);
    } while (!is_punct(ps, close));
    next(ps);
    return first;
}

static struct pt_graphql_node *field_defs(struct parser *ps)
{
    struct pt_graphql_node *first = NULL, *tail = NULL;
    if (!is_punct(ps, '{'))
        return NULL;
    next(ps);
    do {
        const char *d = description(ps);
        struct pt_graphql_node *f = node(ps, PT_GQL_FIELD_DEF);
        f->description = d;
        f->name = name(ps);
        if (is_punct(ps, '('))
            f->args = input_values(ps, '(', ')');
        expect(ps, ':');
        f->type = type_ref(ps);
        f->directives = directives(ps, true);
        APPEND(first, tail, f);
    } while (!is_punct(ps, '}'));
    next(ps);
    return first;
}

static struct pt_graphql_node *named_types(struct parser *ps, char sep)
{
    struct pt_graphql_node *first = NULL, *tail = NULL;
    if (is_punct(ps, sep))
        next(ps);
    for (;;) {
        struct pt_graphql_node *t = node(ps, PT_GQL_NAMED_TYPE);
        t->name = name(ps);
        APPEND(first, tail, t);
        if (!is_punct(ps, sep))
            break;
        next(ps);
    }
    return first;
}

static int op_kind(struct parser *ps)
{
    if (is_kw(ps, "query"))
        return PT_GRAPHQL_QUERY;
    if (is_kw(ps, "mutation"))
        return PT_GRAPHQL_MUTATION;
    if (is_kw(ps, "subscription"))
        return PT_GRAPHQL_SUBSCRIPTION;
    unexpected(ps, "query, mutation or subscription");
}

static const char *const locations[] = {
    "QUERY",
    "MUTATION",
    "SUBSCRIPTION",
    "FIELD",
    "FRAGMENT_DEFINITION",
    "FRAGMENT_SPREAD",
    "INLINE_FRAGMENT",
    "VARIABLE_DEFINITION",
    "SCHEMA",
    "SCALAR",
    "OBJECT",
    "FIELD_DEFINITION",
    "ARGUMENT_DEFINITION",
    "INTERFACE",
    "UNION",
    "ENUM",
    "ENUM_VALUE",
    "INPUT_OBJECT",
    "INPUT_FIELD_DEFINITION",
    NULL,
};

static struct pt_graphql_node *type_system(struct parser *ps, const char *desc, bool extend)
{
    struct pt_graphql_node *d;
    int line = ps->tline, col = ps->tcol;
    if (is_kw(ps, "schema")) {
        d = node(ps, PT_GQL_SCHEMA_DEF);
        next(ps);
        d->directives = directives(ps, true);
        if (is_punct(ps, '{') || !extend) {
            expect(ps, '{');
            struct pt_graphql_node *tail = NULL;
            do {
                struct pt_graphql_node *r = node(ps, PT_GQL_ROOT_TYPE);
                r->op = op_kind(ps);
                next(ps);
                expect(ps, ':');
                r->name = name(ps);
                APPEND(d->list, tail, r);
            } while (!is_punct(ps, '}'));
            next(ps);
        }
    } else if (is_kw(ps, "scalar")) {
        d = node(ps, PT_GQL_SCALAR_DEF);
        next(ps);
        d->name = name(ps);
        d->directives = directives(ps, true);
    } else if (is_kw(ps, "type") || is_kw(ps, "interface")) {
        d = node(ps, is_kw(ps, "type") ? PT_GQL_OBJECT_DEF : PT_GQL_INTERFACE_DEF);
        next(ps);
        d->name = name(ps);
        if (is_kw(ps, "implements")) {
            next(ps);
            d->interfaces = named_types(ps, '&');
        }
        d->directives = directives(ps, true);
        d->list = field_defs(ps);
    } else if (is_kw(ps, "union")) {
        d = node(ps, PT_GQL_UNION_DEF);
        next(ps);
        d->name = name(ps);
        d->directives = directives(ps, true);
        if (is_punct(ps, '=')) {
            next(ps);
            d->list = named_types(ps, '|');
        }
    } else if (is_kw(ps, "enum")) {
        d = node(ps, PT_GQL_ENUM_DEF);
        next(ps);
        d->name = name(ps);
        d->directives = directives(ps, true);
        if (is_punct(ps, '{')) {
            next(ps);
            struct pt_graphql_node *tail = NULL;
            do {
                const char *vd = description(ps);
                struct pt_graphql_node *v = node(ps, PT_GQL_ENUM_VALUE_DEF);
                v->description = vd;
                if (is_kw(ps, "true") || is_kw(ps, "false") || is_kw(ps, "null"))
                    unexpected(ps, "an enum value (not true, false or null)");
                v->name = name(ps);
                v->directives = directives(ps, true);
                APPEND(d->list, tail, v);
            } while (!is_punct(ps, '}'));
            next(ps);
        }
    } else if (is_kw(ps, "input")) {
        d = node(ps, PT_GQL_INPUT_DEF);
        next(ps);
        d->name = name(ps);
        d->directives = directives(ps, true);
        if (is_punct(ps, '{'))
            d->list = input_values(ps, '{', '}');
    } else if (is_kw(ps, "directive") && !extend) {
        d = node(ps, PT_GQL_DIRECTIVE_DEF);
        next(ps);
        expect(ps, '@');
        d->name = name(ps);
        if (is_punct(ps, '('))
            d->args = input_values(ps, '(', ')');
        if (is_kw(ps, "repeatable")) {
            d->repeatable = true;
            next(ps);
        }
        expect_kw(ps, "on");
        if (is_punct(ps, '|'))
            next(ps);
        struct pt_graphql_node *tail = NULL;
        for (;;) {
            struct pt_graphql_node *l = node(ps, PT_GQL_NAMED_TYPE);
            const char *s = ps->t == T_NAME ? ps->sval : "";
            int i = 0;
            while (locations[i] && strcmp(locations[i], s))
                i++;
            if (!locations[i])
                unexpected(ps, "a directive location");
            l->name = name(ps);
            APPEND(d->list, tail, l);
            if (!is_punct(ps, '|'))
                break;
            next(ps);
        }
    } else
        unexpected(ps, extend ? "schema, scalar, type, interface, union, enum or input after 'extend'"
                              : "a definition");
    d->line = line;
    d->column = col;
    d->description = desc;
    d->extend = extend;
    return d;
}

static struct pt_graphql_node *definition(struct parser *ps)
{
    int line = ps->tline, col = ps->tcol;
    bool exe = is_punct(ps, '{') || is_kw(ps, "query") || is_kw(ps, "mutation") ||
               is_kw(ps, "subscription") || is_kw(ps, "fragment");
    if (exe) {
        if (!(ps->what & PT_GRAPHQL_EXECUTABLE))
            fail_at(ps, line, col, "an operation or fragment is not allowed in a schema");
        return is_kw(ps, "fragment") ? fragment(ps) : operation(ps);
    }
    if (ps->t != T_NAME && ps->t != T_STRING && ps->t != T_BLOCK)
        unexpected(ps, (ps->what & PT_GRAPHQL_SDL) ? "a definition" : "an operation or a fragment");
    if (!(ps->what & PT_GRAPHQL_SDL)) {
        if (is_kw(ps, "schema") || is_kw(ps, "scalar") || is_kw(ps, "type") || is_kw(ps, "interface") ||
            is_kw(ps, "union") || is_kw(ps, "enum") || is_kw(ps, "input") || is_kw(ps, "directive") ||
            is_kw(ps, "extend") || ps->t != T_NAME)
            fail_at(ps, line, col, "a type system definition is not allowed in an executable document");
        unexpected(ps, "an operation or a fragment");
    }
    const char *desc = description(ps);
    if (is_kw(ps, "extend")) {
        if (desc)
            fail_at(ps, ps->tline, ps->tcol, "an extension cannot have a description");
        next(ps);
        struct pt_graphql_node *d = type_system(ps, NULL, true);
        d->line = line; /* at `extend` */
        d->column = col;
        return d;
    }
    return type_system(ps, desc, false);
}

struct pt_graphql_doc *pt_graphql_parse(const char *text, size_t len, unsigned what,
                                        const struct pt_graphql_limits *lim, struct pt_graphql_error *err)
{
    struct pt_graphql_error dummy;
    if (!err)
        err = &dummy;
    memset(err, 0, sizeof(*err));
    size_t max_bytes = lim && lim->max_bytes ? lim->max_bytes : PT_GRAPHQL_MAX_BYTES;
    if (len > max_bytes) {
        snprintf(err->message, sizeof(err->message), "the document is longer than %zu bytes", max_bytes);
        return NULL;
    }
    /* the caller's allocator (zeroed memory that outlives the document), else the heap */
    void *(*alloc)(void *, size_t) = lim ? lim->alloc : NULL;
    void *ctx = lim ? lim->alloc_ctx : NULL;
    struct parser *ps = alloc ? alloc(ctx, sizeof(*ps)) : calloc(1, sizeof(*ps)); /* the jmp_buf is large */
    struct pt_graphql_arena *ar = alloc ? alloc(ctx, sizeof(*ar)) : calloc(1, sizeof(*ar));
    if (!ps || !ar) {
        if (!alloc) {
            free(ps);
            free(ar);
        }
        snprintf(err->message, sizeof(err->message), "out of memory");
        return NULL;
    }
    ar->alloc = alloc;
    ar->ctx = ctx;
    ps->ar = ar;
    ps->src = ps->p = text ? text : "";
    ps->end = ps->src + (text ? len : 0);
    ps->line = 1;
    ps->col = 1;
    ps->col_pos = ps->src;
    ps->max_tokens = lim && lim->max_tokens ? lim->max_tokens : PT_GRAPHQL_MAX_TOKENS;
    ps->max_depth = lim && lim->max_depth > 0 ? lim->max_depth : PT_GRAPHQL_MAX_DEPTH;
    ps->what = what ? what : (PT_GRAPHQL_EXECUTABLE | PT_GRAPHQL_SDL);
    ps->err = err;
    struct pt_graphql_doc *volatile doc = NULL;
    if (setjmp(ps->jb)) {
        ar_free(ar);
        if (!alloc)
            free(ps);
        return NULL;
    }
    doc = palloc(ps, sizeof(*doc));
    doc->arena = ar;
    next(ps);
    if (ps->t == T_EOF)
        fail_at(ps, ps->tline, ps->tcol, "the document is empty");
    struct pt_graphql_node *tail = NULL;
    while (ps->t != T_EOF) {
        struct pt_graphql_node *d = definition(ps);
        APPEND(doc->defs, tail, d);
    }
    doc->tokens = ps->tokens;
    if (!alloc)
        free(ps);
    return doc;
}

void pt_graphql_doc_free(struct pt_graphql_doc *doc)
{
    if (doc)
        ar_free(doc->arena);
}

/* ================================================================ errors */

static bool set_err(struct pt_graphql_error *err, const struct pt_graphql_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool set_err(struct pt_graphql_error *err, const struct pt_graphql_node *n, const char *fmt, ...)
{
    if (!err)
        return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    err->line = n ? n->line : 0;
    err->column = n ? n->column : 0;
    return false;
}

/* ================================================================ schemas */

static const char builtin_sdl[] =
    "scalar Int scalar Float scalar String scalar Boolean scalar ID\n"
    "directive @skip(if: Boolean!) on FIELD | FRAGMENT_SPREAD | INLINE_FRAGMENT\n"
    "directive @include(if: Boolean!) on FIELD | FRAGMENT_SPREAD | INLINE_FRAGMENT\n"
    "directive @deprecated(reason: String = \"No longer supported\") on FIELD_DEFINITION | "
    "ARGUMENT_DEFINITION "
    "| INPUT_FIELD_DEFINITION | ENUM_VALUE\n"
    "directive @specifiedBy(url: String!) on SCALAR\n"
    "directive @oneOf on INPUT_OBJECT\n"
    "type __Schema { description: String types: [__Type!]! queryType: __Type! mutationType: __Type "
    "subscriptionType: __Type directives: [__Directive!]! }\n"
    "type __Type { kind: __TypeKind! name: String description: String specifiedByURL: String "
    "fields(includeDeprecated: Boolean = false): [__Field!] interfaces: [__Type!] possibleTypes: [__Type!] "
    "enumValues(includeDeprecated: Boolean = false): [__EnumValue!] inputFields(includeDeprecated: Boolean = "
    "false): [__InputValue!] ofType: __Type isOneOf: Boolean }\n"
    "enum __TypeKind { SCALAR OBJECT INTERFACE UNION ENUM INPUT_OBJECT LIST NON_NULL }\n"
    "type __Field { name: String! description: String args(includeDeprecated: Boolean = false): "
    "[__InputValue!]! type: __Type! isDeprecated: Boolean! deprecationReason: String }\n"
    "type __InputValue { name: String! description: String type: __Type! defaultValue: String isDeprecated: "
    "Boolean! deprecationReason: String }\n"
    "type __EnumValue { name: String! description: String isDeprecated: Boolean! deprecationReason: String "
    "}\n"
    "type __Directive { name: String! description: String isRepeatable: Boolean! locations: "
    "[__DirectiveLocation!]! args(includeDeprecated: Boolean = false): [__InputValue!]! }\n"
    "enum __DirectiveLocation { QUERY MUTATION SUBSCRIPTION FIELD FRAGMENT_DEFINITION FRAGMENT_SPREAD "
    "INLINE_FRAGMENT VARIABLE_DEFINITION SCHEMA SCALAR OBJECT FIELD_DEFINITION ARGUMENT_DEFINITION INTERFACE "
    "UNION ENUM ENUM_VALUE INPUT_OBJECT INPUT_FIELD_DEFINITION }\n";

struct stype {
    const char *name;
    int kind;
    struct pt_graphql_node *defs[32]; /* the definition and its extensions */
    int ndefs;
    bool builtin;
};

struct pt_graphql_schema {
    struct pt_graphql_doc *builtins, *doc;
    struct stype **types; /* open addressing, power-of-two size */
    size_t cap, ntypes;
    struct pt_graphql_node *directives[256];
    int ndirectives;
    const char *roots[3];
};

static uint32_t hash_name(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static struct stype *find_type(const struct pt_graphql_schema *s, const char *name)
{
    if (!s || !name || !s->cap)
        return NULL;
    for (size_t i = hash_name(name) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (!s->types[i])
            return NULL;
        if (!strcmp(s->types[i]->name, name))
            return s->types[i];
    }
}

static void insert_type(struct pt_graphql_schema *s, struct stype *t)
{
    size_t i = hash_name(t->name) & (s->cap - 1);
    while (s->types[i])
        i = (i + 1) & (s->cap - 1);
    s->types[i] = t;
    s->ntypes++;
}

static const struct pt_graphql_node *find_directive(const struct pt_graphql_schema *s, const char *name)
{
    for (int i = s->ndirectives - 1; i >= 0; i--)
        if (!strcmp(s->directives[i]->name, name))
            return s->directives[i];
    return NULL;
}

static bool is_type_def(int k)
{
    return k >= PT_GQL_SCALAR_DEF && k <= PT_GQL_INPUT_DEF;
}

static bool add_defs(struct pt_graphql_schema *s, struct pt_graphql_doc *doc, bool builtin, bool extensions,
                     struct pt_graphql_error *err)
{
    for (struct pt_graphql_node *d = doc->defs; d; d = d->next) {
        if (d->extend != extensions)
            continue;
        if (d->kind == PT_GQL_DIRECTIVE_DEF) {
            const struct pt_graphql_node *old = find_directive(s, d->name);
            if (old && !builtin) {
                /* a user directive named like a built-in one replaces it; twice is an error */
                bool old_is_builtin = false;
                for (struct pt_graphql_node *b = s->builtins->defs; b; b = b->next)
                    if (b == old)
                        old_is_builtin = true;
                if (!old_is_builtin)
                    return set_err(err, d, "directive @%s is defined twice", d->name);
            }
            if (s->ndirectives >= (int)(sizeof(s->directives) / sizeof(s->directives[0])))
                return set_err(err, d, "more than %d directives",
                               (int)(sizeof(s->directives) / sizeof(s->directives[0])));
            s->directives[s->ndirectives++] = d;
            continue;
        }
        if (d->kind == PT_GQL_SCHEMA_DEF) {
            for (struct pt_graphql_node *r = d->list; r; r = r->next) {
                if (s->roots[r->op] && !extensions)
                    return set_err(err, r, "the schema names its %s type twice",
                                   r->op == 0   ? "query"
                                   : r->op == 1 ? "mutation"
                                                : "subscription");
                s->roots[r->op] = r->name;
            }
            continue;
        }
        if (!is_type_def(d->kind))
            continue;
        struct stype *t = find_type(s, d->name);
        if (!extensions) {
            if (t && !(t->builtin && d->kind == PT_GQL_SCALAR_DEF && t->kind == PT_GQL_SCALAR_DEF))
                return set_err(err, d, "type %s is defined twice", d->name);
            if (!builtin && !strncmp(d->name, "__", 2))
                return set_err(err, d, "type %s: names starting with __ are reserved", d->name);
            if (t) { /* a built-in scalar redefined */
                t->builtin = false;
                t->defs[0] = d;
                continue;
            }
            if (s->ntypes * 2 >= s->cap)
                return set_err(err, d, "too many types");
            t = ar_alloc(s->doc ? s->doc->arena : s->builtins->arena, sizeof(*t));
            if (!t)
                return set_err(err, d, "out of memory");
            t->name = d->name;
            t->kind = d->kind;
            t->builtin = builtin;
            t->defs[t->ndefs++] = d;
            insert_type(s, t);
        } else {
            if (!t)
                return set_err(err, d, "cannot extend type %s: it is not defined", d->name);
            if (t->kind != d->kind)
                return set_err(err, d, "cannot extend type %s with a different kind of definition", d->name);
            if (t->ndefs >= (int)(sizeof(t->defs) / sizeof(t->defs[0])))
                return set_err(err, d, "type %s has too many extensions", d->name);
            t->defs[t->ndefs++] = d;
        }
    }
    return true;
}

static bool check_ref(struct pt_graphql_schema *s, const struct pt_graphql_node *ref, bool input, bool output,
                      struct pt_graphql_error *err)
{
    const char *n = pt_graphql_type_name(ref);
    struct stype *t = find_type(s, n);
    if (!t)
        return set_err(err, ref, "unknown type %s", n);
    bool is_input = t->kind == PT_GQL_SCALAR_DEF || t->kind == PT_GQL_ENUM_DEF || t->kind == PT_GQL_INPUT_DEF;
    if (input && !is_input)
        return set_err(err, ref, "type %s is not an input type", n);
    if (output && t->kind == PT_GQL_INPUT_DEF)
        return set_err(err, ref, "type %s is an input type, not an output type", n);
    return true;
}

static bool check_args(struct pt_graphql_schema *s, const struct pt_graphql_node *args,
                       struct pt_graphql_error *err)
{
    for (const struct pt_graphql_node *a = args; a; a = a->next)
        if (!check_ref(s, a->type, true, false, err))
            return false;
    return true;
}

static bool resolve(struct pt_graphql_schema *s, struct pt_graphql_error *err)
{
    for (size_t i = 0; i < s->cap; i++) {
        struct stype *t = s->types[i];
        if (!t)
            continue;
        for (int k = 0; k < t->ndefs; k++) {
            const struct pt_graphql_node *d = t->defs[k];
            for (const struct pt_graphql_node *f = d->list; f; f = f->next) {
                if (f->kind == PT_GQL_FIELD_DEF) {
                    if (!check_ref(s, f->type, false, true, err) || !check_args(s, f->args, err))
                        return false;
                } else if (f->kind == PT_GQL_INPUT_VALUE_DEF) {
                    if (!check_ref(s, f->type, true, false, err))
                        return false;
                } else if (f->kind == PT_GQL_NAMED_TYPE) { /* union member */
                    struct stype *m = find_type(s, f->name);
                    if (!m || m->kind != PT_GQL_OBJECT_DEF)
                        return set_err(err, f, "union %s: member %s is not an object type", t->name, f->name);
                }
            }
            for (const struct pt_graphql_node *f = d->interfaces; f; f = f->next) {
                struct stype *m = find_type(s, f->name);
                if (!m || m->kind != PT_GQL_INTERFACE_DEF)
                    return set_err(err, f, "type %s: %s is not an interface", t->name, f->name);
            }
        }
    }
    for (int i = 0; i < s->ndirectives; i++)
        if (!check_args(s, s->directives[i]->args, err))
            return false;
    return true;
}

struct pt_graphql_schema *pt_graphql_schema_parse(const char *sdl, size_t len,
                                                  const struct pt_graphql_limits *lim,
                                                  struct pt_graphql_error *err)
{
    struct pt_graphql_error dummy;
    if (!err)
        err = &dummy;
    struct pt_graphql_schema *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err->message, sizeof(err->message), "out of memory");
        return NULL;
    }
    s->builtins = pt_graphql_parse(builtin_sdl, sizeof(builtin_sdl) - 1, PT_GRAPHQL_SDL, NULL, err);
    struct pt_graphql_limits heap = lim ? *lim : (struct pt_graphql_limits){0};
    heap.alloc = NULL; /* a schema owns its memory */
    heap.alloc_ctx = NULL;
    s->doc = pt_graphql_parse(sdl, len, PT_GRAPHQL_SDL, &heap, err);
    if (!s->builtins || !s->doc)
        goto fail;
    size_t n = 32;
    for (struct pt_graphql_node *d = s->doc->defs; d; d = d->next)
        n++;
    s->cap = 64;
    while (s->cap < n * 2 + 2)
        s->cap *= 2;
    s->types = calloc(s->cap, sizeof(*s->types));
    if (!s->types) {
        snprintf(err->message, sizeof(err->message), "out of memory");
        goto fail;
    }
    memset(err, 0, sizeof(*err));
    if (!add_defs(s, s->builtins, true, false, err) || !add_defs(s, s->doc, false, false, err) ||
        !add_defs(s, s->doc, false, true, err) || !resolve(s, err))
        goto fail;
    static const char *const defaults[3] = {"Query", "Mutation", "Subscription"};
    bool explicit_roots = s->roots[0] || s->roots[1] || s->roots[2];
    for (int i = 0; i < 3; i++) {
        if (!s->roots[i] && !explicit_roots && find_type(s, defaults[i]))
            s->roots[i] = defaults[i];
        if (s->roots[i]) {
            struct stype *t = find_type(s, s->roots[i]);
            if (!t || t->kind != PT_GQL_OBJECT_DEF) {
                snprintf(err->message, sizeof(err->message), "the %s root type %s is not an object type",
                         i == 0   ? "query"
                         : i == 1 ? "mutation"
                                  : "subscription",
                         s->roots[i]);
                goto fail;
            }
        }
    }
    if (!s->roots[0]) {
        snprintf(err->message, sizeof(err->message), "the schema has no query type");
        goto fail;
    }
    return s;
fail:
    pt_graphql_schema_free(s);
    return NULL;
}

void pt_graphql_schema_free(struct pt_graphql_schema *s)
{
    if (!s)
        return;
    pt_graphql_doc_free(s->builtins);
    pt_graphql_doc_free(s->doc);
    free(s->types);
    free(s);
}

const char *pt_graphql_schema_root(const struct pt_graphql_schema *s, int op)
{
    return s && op >= 0 && op <= 2 ? s->roots[op] : NULL;
}

int pt_graphql_schema_type_kind(const struct pt_graphql_schema *s, const char *name)
{
    struct stype *t = find_type(s, name);
    return t ? t->kind : 0;
}

const struct pt_graphql_node *pt_graphql_schema_field(const struct pt_graphql_schema *s, const char *type,
                                                      const char *field)
{
    struct stype *t = find_type(s, type);
    if (!t || (t->kind != PT_GQL_OBJECT_DEF && t->kind != PT_GQL_INTERFACE_DEF))
        return NULL;
    for (int k = 0; k < t->ndefs; k++)
        for (const struct pt_graphql_node *f = t->defs[k]->list; f; f = f->next)
            if (!strcmp(f->name, field))
                return f;
    return NULL;
}

const char *pt_graphql_type_name(const struct pt_graphql_node *type)
{
    while (type && type->kind != PT_GQL_NAMED_TYPE)
        type = type->type;
    return type ? type->name : NULL;
}

/* ================================================================ requests */

static int frag_cmp(const void *a, const void *b)
{
    return strcmp((*(struct pt_graphql_node *const *)a)->name, (*(struct pt_graphql_node *const *)b)->name);
}

static struct pt_graphql_node *find_fragment(struct pt_graphql_doc *doc, const char *name)
{
    size_t lo = 0, hi = doc->nfrags;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(doc->frags[mid]->name, name);
        if (!c)
            return doc->frags[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Checks spreads in a selection set: defined fragments, no cycles, chains bounded.
   mark: 0 unvisited, 1 in progress, 2 done; memo_fields holds a done fragment's chain length,
   memo_depth marks a fragment as used.  `level` counts the fragments on the current path, so the
   recursion stops at FRAG_CHAIN before going deeper, whatever the document. */
static bool check_spreads(struct pt_graphql_doc *doc, struct pt_graphql_node *sel, int level, int *chain,
                          struct pt_graphql_error *err);

static bool chain_too_long(struct pt_graphql_error *err, const struct pt_graphql_node *at)
{
    return set_err(err, at, "fragments are spread inside fragments more than %d deep", FRAG_CHAIN);
}

static bool check_fragment(struct pt_graphql_doc *doc, struct pt_graphql_node *f,
                           const struct pt_graphql_node *at, int level, int *chain,
                           struct pt_graphql_error *err)
{
    if (f->mark == 1)
        return set_err(err, at, "fragment %s spreads itself", f->name);
    if (f->mark == 2) {
        if (level + f->memo_fields - 1 > FRAG_CHAIN)
            return chain_too_long(err, at);
        *chain = f->memo_fields;
        return true;
    }
    if (level > FRAG_CHAIN)
        return chain_too_long(err, at);
    f->mark = 1;
    int c = 0;
    if (!check_spreads(doc, f->sel, level + 1, &c, err))
        return false;
    f->mark = 2;
    f->memo_fields = c + 1; /* reset before the counting walks */
    *chain = c + 1;
    return true;
}

static bool check_spreads(struct pt_graphql_doc *doc, struct pt_graphql_node *sel, int level, int *chain,
                          struct pt_graphql_error *err)
{
    for (struct pt_graphql_node *s = sel; s; s = s->next) {
        if (s->kind == PT_GQL_SPREAD) {
            struct pt_graphql_node *f = find_fragment(doc, s->name);
            if (!f)
                return set_err(err, s, "unknown fragment %s", s->name);
            f->memo_depth = 1; /* used */
            int c = 0;
            if (!check_fragment(doc, f, s, level, &c, err))
                return false;
            if (c > *chain)
                *chain = c;
        } else if (s->sel && !check_spreads(doc, s->sel, level, chain, err))
            return false;
    }
    return true;
}

struct pt_graphql_node *pt_graphql_operation(struct pt_graphql_doc *doc, const char *name,
                                             struct pt_graphql_error *err)
{
    if (err)
        memset(err, 0, sizeof(*err));
    size_t nops = 0, nfr = 0;
    struct pt_graphql_node *anon = NULL, *chosen = NULL, *only = NULL;
    for (struct pt_graphql_node *d = doc->defs; d; d = d->next) {
        if (d->kind == PT_GQL_OPERATION) {
            nops++;
            only = d;
            if (!d->name)
                anon = d;
            for (struct pt_graphql_node *e = doc->defs; e != d; e = e->next)
                if (e->kind == PT_GQL_OPERATION && e->name && d->name && !strcmp(e->name, d->name)) {
                    set_err(err, d, "there can be only one operation named %s", d->name);
                    return NULL;
                }
            if (name && *name && d->name && !strcmp(d->name, name))
                chosen = d;
        } else if (d->kind == PT_GQL_FRAGMENT)
            nfr++;
        else {
            set_err(err, d, "a type system definition is not allowed in a request");
            return NULL;
        }
    }
    if (!nops) {
        set_err(err, NULL, "the document holds no operation");
        return NULL;
    }
    if (anon && nops > 1) {
        set_err(err, anon, "an anonymous operation must be the only operation of the document");
        return NULL;
    }
    if (!doc->frags && nfr) {
        doc->frags = ar_alloc(doc->arena, nfr * sizeof(*doc->frags));
        if (!doc->frags) {
            set_err(err, NULL, "out of memory");
            return NULL;
        }
        for (struct pt_graphql_node *d = doc->defs; d; d = d->next)
            if (d->kind == PT_GQL_FRAGMENT)
                doc->frags[doc->nfrags++] = d;
        qsort(doc->frags, doc->nfrags, sizeof(*doc->frags), frag_cmp);
        for (size_t i = 1; i < doc->nfrags; i++)
            if (!strcmp(doc->frags[i]->name, doc->frags[i - 1]->name)) {
                const struct pt_graphql_node *later =
                    doc->frags[i]->line > doc->frags[i - 1]->line ||
                            (doc->frags[i]->line == doc->frags[i - 1]->line &&
                             doc->frags[i]->column > doc->frags[i - 1]->column)
                        ? doc->frags[i]
                        : doc->frags[i - 1];
                set_err(err, later, "there can be only one fragment named %s", later->name);
                return NULL;
            }
    }
    for (size_t i = 0; i < doc->nfrags; i++)
        doc->frags[i]->mark = 0, doc->frags[i]->memo_depth = 0;
    for (struct pt_graphql_node *d = doc->defs; d; d = d->next) {
        int chain = 0;
        if (d->kind == PT_GQL_OPERATION && !check_spreads(doc, d->sel, 1, &chain, err))
            return NULL;
    }
    for (size_t i = 0; i < doc->nfrags; i++) {
        int chain = 0;
        if (!check_fragment(doc, doc->frags[i], doc->frags[i], 1, &chain, err))
            return NULL;
    }
    for (struct pt_graphql_node *d = doc->defs; d; d = d->next)
        if (d->kind == PT_GQL_FRAGMENT && !d->memo_depth) {
            set_err(err, d, "fragment %s is never used", d->name);
            return NULL;
        }
    for (size_t i = 0; i < doc->nfrags; i++)
        doc->frags[i]->memo_depth = doc->frags[i]->memo_fields = -1, doc->frags[i]->mark = 0;
    if (name && *name) {
        if (!chosen)
            set_err(err, NULL, "unknown operation named %s", name);
        return chosen;
    }
    if (nops > 1) {
        set_err(err, NULL, "the document holds several operations: an operation name is required");
        return NULL;
    }
    return only;
}

/* ---- depth and counts ---- */

static int sat_add(int a, int b)
{
    long long s = (long long)a + b;
    return s > SATURATE ? SATURATE : (int)s;
}

static int depth_of(struct pt_graphql_doc *doc, const struct pt_graphql_node *sel)
{
    int d = 0;
    for (const struct pt_graphql_node *s = sel; s; s = s->next) {
        int x = 0;
        if (s->removed)
            continue;
        if (s->kind == PT_GQL_FIELD)
            x = sat_add(1, depth_of(doc, s->sel));
        else if (s->kind == PT_GQL_INLINE)
            x = depth_of(doc, s->sel);
        else {
            struct pt_graphql_node *f = find_fragment(doc, s->name);
            if (!f)
                continue;
            if (f->memo_depth < 0)
                f->memo_depth = depth_of(doc, f->sel);
            x = f->memo_depth;
        }
        if (x > d)
            d = x;
    }
    return d;
}

static int count_of(struct pt_graphql_doc *doc, const struct pt_graphql_node *sel)
{
    int n = 0;
    for (const struct pt_graphql_node *s = sel; s; s = s->next) {
        if (s->removed)
            continue;
        if (s->kind == PT_GQL_FIELD)
            n = sat_add(n, sat_add(1, count_of(doc, s->sel)));
        else if (s->kind == PT_GQL_INLINE)
            n = sat_add(n, count_of(doc, s->sel));
        else {
            struct pt_graphql_node *f = find_fragment(doc, s->name);
            if (!f)
                continue;
            if (f->memo_fields < 0)
                f->memo_fields = count_of(doc, f->sel);
            n = sat_add(n, f->memo_fields);
        }
    }
    return n;
}

static void reset_memo(struct pt_graphql_doc *doc)
{
    for (size_t i = 0; i < doc->nfrags; i++)
        doc->frags[i]->memo_depth = doc->frags[i]->memo_fields = -1;
}

int pt_graphql_depth(struct pt_graphql_doc *doc, const struct pt_graphql_node *op)
{
    reset_memo(doc);
    return op ? depth_of(doc, op->sel) : 0;
}

int pt_graphql_field_count(struct pt_graphql_doc *doc, const struct pt_graphql_node *op)
{
    reset_memo(doc);
    return op ? count_of(doc, op->sel) : 0;
}

/* ---- validation ---- */

struct vctx {
    const struct pt_graphql_schema *s;
    struct pt_graphql_doc *doc;
    const struct pt_graphql_node *op;
    struct pt_graphql_error *err;
};

static bool is_composite(int kind)
{
    return kind == PT_GQL_OBJECT_DEF || kind == PT_GQL_INTERFACE_DEF || kind == PT_GQL_UNION_DEF;
}

static bool check_var_uses(struct vctx *v, const struct pt_graphql_node *val)
{
    if (!val)
        return true;
    if (val->kind == PT_GQL_VARIABLE) {
        struct pt_graphql_node *d = v->op->vars;
        while (d && strcmp(d->name, val->name))
            d = d->next;
        if (!d)
            return set_err(v->err, val, "variable $%s is not defined%s%s", val->name,
                           v->op->name ? " by operation " : "", v->op->name ? v->op->name : "");
        d->mark = 1;
        return true;
    }
    for (const struct pt_graphql_node *e = val->list; e; e = e->next)
        if (!check_var_uses(v, e->kind == PT_GQL_OBJECT_FIELD ? e->value : e))
            return false;
    return true;
}

/* Arguments given against the definitions (INPUT_VALUE_DEFs); what = "field X" / "directive @X". */
static bool check_arguments(struct vctx *v, const struct pt_graphql_node *at,
                            const struct pt_graphql_node *given, const struct pt_graphql_node *defs,
                            const char *what, const char *wname)
{
    for (const struct pt_graphql_node *a = given; a; a = a->next) {
        const struct pt_graphql_node *d = defs;
        while (d && strcmp(d->name, a->name))
            d = d->next;
        if (!d)
            return set_err(v->err, a, "unknown argument %s on %s %s", a->name, what, wname);
        for (const struct pt_graphql_node *b = given; b != a; b = b->next)
            if (!strcmp(b->name, a->name))
                return set_err(v->err, a, "argument %s is given twice", a->name);
        if (!check_var_uses(v, a->value))
            return false;
    }
    for (const struct pt_graphql_node *d = defs; d; d = d->next) {
        if (d->type->kind != PT_GQL_NON_NULL || d->value)
            continue;
        const struct pt_graphql_node *a = given;
        while (a && strcmp(d->name, a->name))
            a = a->next;
        if (!a || a->value->kind == PT_GQL_NULL)
            return set_err(v->err, at, "%s %s: the required argument %s is missing", what, wname, d->name);
    }
    return true;
}

static bool check_directives(struct vctx *v, const struct pt_graphql_node *dirs)
{
    for (const struct pt_graphql_node *d = dirs; d; d = d->next) {
        if (!v->s) {
            for (const struct pt_graphql_node *a = d->args; a; a = a->next)
                if (!check_var_uses(v, a->value))
                    return false;
            continue;
        }
        const struct pt_graphql_node *def = find_directive(v->s, d->name);
        if (!def)
            return set_err(v->err, d, "unknown directive @%s", d->name);
        if (!check_arguments(v, d, d->args, def->args, "directive", d->name))
            return false;
    }
    return true;
}

static bool check_sel(struct vctx *v, const struct pt_graphql_node *sel, const char *type);

static bool check_field(struct vctx *v, const struct pt_graphql_node *f, const char *type)
{
    if (!check_directives(v, f->directives))
        return false;
    if (!v->s) { /* no schema: variables only */
        for (const struct pt_graphql_node *a = f->args; a; a = a->next)
            if (!check_var_uses(v, a->value))
                return false;
        return check_sel(v, f->sel, NULL);
    }
    struct stype *t = find_type(v->s, type);
    const char *ftype;
    if (!strcmp(f->name, "__typename")) {
        if (f->args)
            return set_err(v->err, f->args, "unknown argument %s on field __typename", f->args->name);
        ftype = "String";
    } else if (!strcmp(f->name, "__schema") && v->s->roots[0] && !strcmp(type, v->s->roots[0])) {
        if (f->args)
            return set_err(v->err, f->args, "unknown argument %s on field __schema", f->args->name);
        ftype = "__Schema";
    } else if (!strcmp(f->name, "__type") && v->s->roots[0] && !strcmp(type, v->s->roots[0])) {
        static struct pt_graphql_node name_type = {.kind = PT_GQL_NAMED_TYPE, .name = "String"};
        static struct pt_graphql_node nn = {.kind = PT_GQL_NON_NULL, .type = &name_type};
        static struct pt_graphql_node arg = {.kind = PT_GQL_INPUT_VALUE_DEF, .name = "name", .type = &nn};
        if (!check_arguments(v, f, f->args, &arg, "field", "__type"))
            return false;
        ftype = "__Type";
    } else {
        const struct pt_graphql_node *def = pt_graphql_schema_field(v->s, type, f->name);
        if (!def) {
            if (t && t->kind == PT_GQL_UNION_DEF)
                return set_err(v->err, f,
                               "cannot query field %s on union type %s: use a fragment on one of its types",
                               f->name, type);
            return set_err(v->err, f, "cannot query field %s on type %s", f->name, type ? type : "?");
        }
        if (!check_arguments(v, f, f->args, def->args, "field", f->name))
            return false;
        ftype = pt_graphql_type_name(def->type);
    }
    struct stype *ft = find_type(v->s, ftype);
    if (ft && is_composite(ft->kind)) {
        if (!f->sel)
            return set_err(v->err, f, "field %s of type %s must have a selection of subfields", f->name,
                           ftype);
    } else if (f->sel)
        return set_err(v->err, f, "field %s must not have a selection: type %s has no subfields", f->name,
                       ftype);
    return check_sel(v, f->sel, ftype);
}

static bool check_type_cond(struct vctx *v, const struct pt_graphql_node *at, const char *cond)
{
    if (!v->s)
        return true;
    struct stype *t = find_type(v->s, cond);
    if (!t)
        return set_err(v->err, at, "unknown type %s in a fragment's type condition", cond);
    if (!is_composite(t->kind))
        return set_err(v->err, at, "fragment cannot condition on non composite type %s", cond);
    return true;
}

static bool check_sel(struct vctx *v, const struct pt_graphql_node *sel, const char *type)
{
    for (const struct pt_graphql_node *s = sel; s; s = s->next) {
        if (s->kind == PT_GQL_FIELD) {
            if (!check_field(v, s, type))
                return false;
        } else if (s->kind == PT_GQL_INLINE) {
            if (s->type_cond && !check_type_cond(v, s, s->type_cond))
                return false;
            if (!check_directives(v, s->directives) ||
                !check_sel(v, s->sel, s->type_cond ? s->type_cond : type))
                return false;
        } else {
            if (!check_directives(v, s->directives))
                return false;
            struct pt_graphql_node *f = find_fragment(v->doc, s->name);
            if (!f)
                return set_err(v->err, s, "unknown fragment %s", s->name);
            if (f->mark)
                continue; /* checked once */
            f->mark = 1;
            if (!check_type_cond(v, f, f->type_cond) || !check_directives(v, f->directives) ||
                !check_sel(v, f->sel, f->type_cond))
                return false;
        }
    }
    return true;
}

bool pt_graphql_validate(const struct pt_graphql_schema *s, struct pt_graphql_doc *doc,
                         const struct pt_graphql_node *op, struct pt_graphql_error *err)
{
    if (err)
        memset(err, 0, sizeof(*err));
    if (!op)
        return set_err(err, NULL, "no operation");
    struct vctx v = {s, doc, op, err};
    for (size_t i = 0; i < doc->nfrags; i++)
        doc->frags[i]->mark = 0;
    const char *root = NULL;
    if (s) {
        root = s->roots[op->op];
        if (!root)
            return set_err(err, op, "the schema does not support %s operations",
                           op->op == PT_GRAPHQL_MUTATION ? "mutation" : "subscription");
    }
    for (struct pt_graphql_node *d = op->vars; d; d = d->next) {
        d->mark = 0;
        for (struct pt_graphql_node *e = op->vars; e != d; e = e->next)
            if (!strcmp(e->name, d->name))
                return set_err(err, d, "there can be only one variable named $%s", d->name);
        if (s) {
            struct stype *t = find_type(s, pt_graphql_type_name(d->type));
            if (!t)
                return set_err(err, d->type, "unknown type %s of variable $%s", pt_graphql_type_name(d->type),
                               d->name);
            if (t->kind != PT_GQL_SCALAR_DEF && t->kind != PT_GQL_ENUM_DEF && t->kind != PT_GQL_INPUT_DEF)
                return set_err(err, d->type, "variable $%s cannot be of non-input type %s", d->name, t->name);
        }
    }
    if (!check_directives(&v, op->directives) || !check_sel(&v, op->sel, root))
        return false;
    for (struct pt_graphql_node *d = op->vars; d; d = d->next)
        if (!d->mark)
            return set_err(err, d, "variable $%s is never used%s%s", d->name,
                           op->name ? " in operation " : "", op->name ? op->name : "");
    /* a subscription selects one top-level field */
    if (op->op == PT_GRAPHQL_SUBSCRIPTION && op->sel && op->sel->next && op->sel->kind == PT_GQL_FIELD &&
        op->sel->next->kind == PT_GQL_FIELD)
        return set_err(err, op->sel->next, "a subscription must select only one top-level field");
    for (size_t i = 0; i < doc->nfrags; i++)
        doc->frags[i]->mark = 0;
    return true;
}

/* ---- walking ---- */

struct wctx {
    const struct pt_graphql_schema *s;
    struct pt_graphql_doc *doc;
    pt_graphql_visit_fn fn;
    void *arg;
};

static int walk_sel(struct wctx *w, struct pt_graphql_node *sel, const char *type, int level);

static int walk_sel(struct wctx *w, struct pt_graphql_node *sel, const char *type, int level)
{
    for (struct pt_graphql_node *s = sel; s; s = s->next) {
        if (s->kind == PT_GQL_FIELD) {
            int r = w->fn(w->arg, s, type, level == 1);
            if (r < 0)
                return -1;
            if (r > 0 || !s->sel || s->removed)
                continue;
            const char *sub = NULL;
            if (w->s && type) {
                if (!strcmp(s->name, "__schema"))
                    sub = "__Schema";
                else if (!strcmp(s->name, "__type"))
                    sub = "__Type";
                else {
                    const struct pt_graphql_node *def = pt_graphql_schema_field(w->s, type, s->name);
                    sub = def ? pt_graphql_type_name(def->type) : NULL;
                }
            } else if (!strcmp(s->name, "__schema"))
                sub = "__Schema";
            else if (!strcmp(s->name, "__type"))
                sub = "__Type";
            if (walk_sel(w, s->sel, sub, level + 1) < 0)
                return -1;
        } else if (s->kind == PT_GQL_INLINE) {
            if (walk_sel(w, s->sel, s->type_cond ? s->type_cond : type, level) < 0)
                return -1;
        } else {
            struct pt_graphql_node *f = find_fragment(w->doc, s->name);
            if (!f || f->mark)
                continue;
            f->mark = 1;
            if (walk_sel(w, f->sel, f->type_cond, level) < 0)
                return -1;
        }
    }
    return 0;
}

int pt_graphql_walk(const struct pt_graphql_schema *s, struct pt_graphql_doc *doc, struct pt_graphql_node *op,
                    pt_graphql_visit_fn fn, void *arg)
{
    static const char *const defaults[3] = {"Query", "Mutation", "Subscription"};
    for (size_t i = 0; i < doc->nfrags; i++)
        doc->frags[i]->mark = 0;
    const char *root = s && s->roots[op->op] ? s->roots[op->op] : defaults[op->op];
    struct wctx w = {s, doc, fn, arg};
    int r = walk_sel(&w, op->sel, root, 1);
    for (size_t i = 0; i < doc->nfrags; i++)
        doc->frags[i]->mark = 0;
    return r;
}

/* ---- pruning ---- */

/* mark: 0 not computed, 1 live, 2 removed (fragments) */
static int prune_sel(struct pt_graphql_doc *doc, struct pt_graphql_node *sel)
{
    int live = 0;
    for (struct pt_graphql_node *s = sel; s; s = s->next) {
        if (s->removed)
            continue;
        if (s->kind == PT_GQL_FIELD) {
            if (s->sel && !prune_sel(doc, s->sel))
                s->removed = true;
        } else if (s->kind == PT_GQL_INLINE) {
            if (!prune_sel(doc, s->sel))
                s->removed = true;
        } else {
            struct pt_graphql_node *f = find_fragment(doc, s->name);
            if (f && !f->mark)
                f->mark = prune_sel(doc, f->sel) ? 1 : 2;
            if (!f || f->mark == 2)
                s->removed = true;
        }
        if (!s->removed)
            live++;
    }
    return live;
}

bool pt_graphql_prune(struct pt_graphql_doc *doc, struct pt_graphql_node *op)
{
    for (size_t i = 0; i < doc->nfrags; i++)
        doc->frags[i]->mark = 0;
    bool ok = op && prune_sel(doc, op->sel) > 0;
    for (size_t i = 0; i < doc->nfrags; i++)
        doc->frags[i]->mark = 0;
    return ok;
}

/* ---- printing ---- */

struct pbuf {
    char *p;
    size_t n, cap;
    bool oom;
};

static void pb_add(struct pbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

/* A word (name, number, keyword), with a space when it would run into the previous one. */
static void pb_word(struct pbuf *b, const char *s)
{
    if (b->n && name_cont((unsigned char)b->p[b->n - 1]) && (name_cont((unsigned char)*s) || *s == '-'))
        pb_add(b, " ", 1);
    pb_add(b, s, strlen(s));
}

static void pb_ch(struct pbuf *b, char c)
{
    pb_add(b, &c, 1);
}

static void print_string(struct pbuf *b, const char *s, size_t n)
{
    pb_ch(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            pb_ch(b, '\\');
            pb_ch(b, (char)c);
        } else if (c == '\n')
            pb_add(b, "\\n", 2);
        else if (c == '\r')
            pb_add(b, "\\r", 2);
        else if (c == '\t')
            pb_add(b, "\\t", 2);
        else if (c < 0x20 || c == 0x7F) {
            char e[8];
            snprintf(e, sizeof(e), "\\u%04X", c);
            pb_add(b, e, 6);
        } else
            pb_ch(b, (char)c);
    }
    pb_ch(b, '"');
}

static void print_value(struct pbuf *b, const struct pt_graphql_node *v)
{
    switch (v->kind) {
    case PT_GQL_VARIABLE:
        pb_ch(b, '$');
        pb_add(b, v->name, strlen(v->name));
        break;
    case PT_GQL_INT:
    case PT_GQL_FLOAT:
    case PT_GQL_BOOLEAN:
        pb_word(b, v->text);
        break;
    case PT_GQL_NULL:
        pb_word(b, "null");
        break;
    case PT_GQL_ENUM:
        pb_word(b, v->name);
        break;
    case PT_GQL_STRING:
        print_string(b, v->text, v->len);
        break;
    case PT_GQL_LIST:
        pb_ch(b, '[');
        for (const struct pt_graphql_node *e = v->list; e; e = e->next) {
            if (e != v->list)
                pb_ch(b, ',');
            print_value(b, e);
        }
        pb_ch(b, ']');
        break;
    case PT_GQL_OBJECT:
        pb_ch(b, '{');
        for (const struct pt_graphql_node *e = v->list; e; e = e->next) {
            if (e != v->list)
                pb_ch(b, ',');
            pb_word(b, e->name);
            pb_ch(b, ':');
            print_value(b, e->value);
        }
        pb_ch(b, '}');
        break;
    }
}

static void print_args(struct pbuf *b, const struct pt_graphql_node *args)
{
    if (!args)
        return;
    pb_ch(b, '(');
    for (const struct pt_graphql_node *a = args; a; a = a->next) {
        if (a != args)
            pb_ch(b, ',');
        pb_word(b, a->name);
        pb_ch(b, ':');
        print_value(b, a->value);
    }
    pb_ch(b, ')');
}

static void print_directives(struct pbuf *b, const struct pt_graphql_node *d)
{
    for (; d; d = d->next) {
        pb_ch(b, '@');
        pb_add(b, d->name, strlen(d->name));
        print_args(b, d->args);
    }
}

static void print_type(struct pbuf *b, const struct pt_graphql_node *t)
{
    if (t->kind == PT_GQL_NAMED_TYPE)
        pb_word(b, t->name);
    else if (t->kind == PT_GQL_LIST_TYPE) {
        pb_ch(b, '[');
        print_type(b, t->type);
        pb_ch(b, ']');
    } else {
        print_type(b, t->type);
        pb_ch(b, '!');
    }
}

static void print_sel(struct pbuf *b, struct pt_graphql_doc *doc, const struct pt_graphql_node *sel)
{
    pb_ch(b, '{');
    bool first = true;
    for (const struct pt_graphql_node *s = sel; s; s = s->next) {
        if (s->removed)
            continue;
        if (!first && b->n && name_cont((unsigned char)b->p[b->n - 1]))
            pb_ch(b, ' ');
        first = false;
        if (s->kind == PT_GQL_FIELD) {
            if (s->alias) {
                pb_word(b, s->alias);
                pb_ch(b, ':');
            }
            pb_word(b, s->name);
            print_args(b, s->args);
            print_directives(b, s->directives);
            if (s->sel)
                print_sel(b, doc, s->sel);
        } else if (s->kind == PT_GQL_INLINE) {
            pb_add(b, "...", 3);
            if (s->type_cond) {
                pb_word(b, "on");
                pb_word(b, s->type_cond);
            }
            print_directives(b, s->directives);
            print_sel(b, doc, s->sel);
        } else {
            pb_add(b, "...", 3);
            pb_word(b, s->name);
            print_directives(b, s->directives);
            struct pt_graphql_node *f = find_fragment(doc, s->name);
            if (f)
                f->mark = 1; /* printed after the operation */
        }
    }
    pb_ch(b, '}');
}

char *pt_graphql_print(struct pt_graphql_doc *doc, const struct pt_graphql_node *op, size_t *len)
{
    struct pbuf b = {0};
    static const char *const kw[3] = {"query", "mutation", "subscription"};
    for (size_t i = 0; i < doc->nfrags; i++)
        doc->frags[i]->mark = 0;
    if (op->name || op->vars || op->directives || op->op != PT_GRAPHQL_QUERY) {
        pb_word(&b, kw[op->op]);
        if (op->name)
            pb_word(&b, op->name);
        if (op->vars) {
            pb_ch(&b, '(');
            for (const struct pt_graphql_node *v = op->vars; v; v = v->next) {
                if (v != op->vars)
                    pb_ch(&b, ',');
                pb_ch(&b, '$');
                pb_add(&b, v->name, strlen(v->name));
                pb_ch(&b, ':');
                print_type(&b, v->type);
                if (v->value) {
                    pb_ch(&b, '=');
                    print_value(&b, v->value);
                }
                print_directives(&b, v->directives);
            }
            pb_ch(&b, ')');
        }
        print_directives(&b, op->directives);
    }
    print_sel(&b, doc, op->sel);
    /* the fragments the printed selections spread, until no new one appears */
    for (bool more = true; more;) {
        more = false;
        for (struct pt_graphql_node *d = doc->defs; d; d = d->next) {
            if (d->kind != PT_GQL_FRAGMENT || d->mark != 1)
                continue;
            d->mark = 2;
            more = true;
            pb_word(&b, "fragment");
            pb_word(&b, d->name);
            pb_word(&b, "on");
            pb_word(&b, d->type_cond);
            print_directives(&b, d->directives);
            print_sel(&b, doc, d->sel);
        }
    }
    for (size_t i = 0; i < doc->nfrags; i++)
        doc->frags[i]->mark = 0;
    if (b.oom || !b.p) {
        free(b.p);
        return NULL;
    }
    if (len)
        *len = b.n;
    return b.p;
}
