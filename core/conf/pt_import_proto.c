/*
 * pt_import_proto.c -- gRPC APIs from a Protocol Buffers (.proto) file.
 *
 * A parser of the language as far as services need (proto2 and proto3):
 * syntax/edition, package, import, option, message and enum (nested,
 * fields with labels, maps, oneofs, groups, reserved, extensions), extend,
 * and service with its rpcs.  It reads one file: an import names a file
 * that was not uploaded with it, so its types stay unresolved and the
 * import is reported as a warning.  The comment block right before a
 * message, enum, service or rpc becomes its description.
 *
 * Bounded by the input's size, the nesting depth (messages in messages,
 * option aggregates) and the number of definitions; every error reads
 * "line:column: message".
 *
 * The API: apiType grpc, the file kept as its schema (id "proto"), one
 * operation per rpc (POST /package.Service/Method) whose `grpc` map records
 * the service, the message types and the streaming kind.
 */
#include "conf/pt_import.h"

#include "base/pt_buf.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64
#define MAX_ITEMS 100000 /* definitions, fields, values and rpcs of one file */
#define MAX_NAME 512

enum tok { T_EOF, T_IDENT, T_INT, T_FLOAT, T_STRING, T_SYM };

struct lex {
    const char *p, *end;
    int line, col;
    /* the current token */
    enum tok t;
    const char *s; /* its text (for T_STRING: between the quotes, escapes left in) */
    size_t n;
    int tline, tcol;
    struct pt_buf doc; /* the comment block right before the token */
    bool doc_ok;       /* no blank line or token between that block and the token */
};

struct parser {
    struct lex lx;
    json_t *out;      /* the file's description (see pt_import_proto_parse) */
    json_t *warnings; /* array of strings */
    char *err;
    size_t errlen;
    struct pt_pool *pool; /* the parser's buffers */
    bool failed;
    int depth;
    long items;
    /* names seen, as JSON objects used as hash sets: every check is a lookup, never a scan (a file of
       100,000 rpcs must not cost quadratic time on the control thread) */
    json_t *service_names; /* the file's services */
    json_t *rpc_names;     /* the current service's rpcs */
};

/* A place in the text, to look one token ahead and come back. */
struct mark {
    const char *p, *s;
    int line, col, tline, tcol;
    enum tok t;
    size_t n;
};

static struct mark mark(const struct lex *lx)
{
    return (struct mark){lx->p, lx->s, lx->line, lx->col, lx->tline, lx->tcol, lx->t, lx->n};
}

static void back_to(struct lex *lx, struct mark m)
{
    lx->p = m.p, lx->s = m.s, lx->line = m.line, lx->col = m.col;
    lx->tline = m.tline, lx->tcol = m.tcol, lx->t = m.t, lx->n = m.n;
    lx->doc.n = 0;
}

static bool fail(struct parser *ps, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool fail(struct parser *ps, int line, int col, const char *fmt, ...)
{
    if (ps->failed)
        return false;
    ps->failed = true;
    int k = snprintf(ps->err, ps->errlen, "%d:%d: ", line, col);
    if (k < 0 || (size_t)k >= ps->errlen)
        return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err + k, ps->errlen - (size_t)k, fmt, ap);
    va_end(ap);
    return false;
}

/* ------------------------------------------------------------------ lexer */

static void advance(struct lex *lx, size_t n)
{
    while (n-- && lx->p < lx->end) {
        if (*lx->p == '\n') {
            lx->line++;
            lx->col = 1;
        } else
            lx->col++;
        lx->p++;
    }
}

/* One comment's text without its markers, a line at a time, into the pending block. */
static void add_comment_line(struct lex *lx, const char *s, size_t n)
{
    while (n && (*s == ' ' || *s == '\t' || *s == '*')) {
        s++;
        n--;
    }
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    if (lx->doc.n)
        pt_buf_lit(&lx->doc, "\n");
    pt_buf_add(&lx->doc, s, n);
}

/* Skips blanks and comments, collecting the comment block before the next token. */
static bool skip_space(struct parser *ps)
{
    struct lex *lx = &ps->lx;
    int newlines = 0;
    while (lx->p < lx->end) {
        char c = *lx->p;
        if (c == '\n') {
            if (++newlines >= 2)
                lx->doc_ok = false; /* a blank line parts the block from what follows */
            advance(lx, 1);
        } else if (isspace((unsigned char)c))
            advance(lx, 1);
        else if (c == '/' && lx->p + 1 < lx->end && lx->p[1] == '/') {
            if (!lx->doc_ok)
                lx->doc.n = 0;
            lx->doc_ok = true;
            newlines = 0;
            const char *s = lx->p + 2, *e = memchr(s, '\n', (size_t)(lx->end - s));
            if (!e)
                e = lx->end;
            add_comment_line(lx, s, (size_t)(e - s));
            advance(lx, (size_t)(e - lx->p));
        } else if (c == '/' && lx->p + 1 < lx->end && lx->p[1] == '*') {
            int l = lx->line, col = lx->col;
            const char *s = lx->p + 2, *e = NULL;
            for (const char *q = s; q + 1 < lx->end; q++)
                if (q[0] == '*' && q[1] == '/') {
                    e = q;
                    break;
                }
            if (!e)
                return fail(ps, l, col, "a comment that does not end");
            if (!lx->doc_ok)
                lx->doc.n = 0;
            lx->doc_ok = true;
            newlines = 0;
            for (const char *a = s; a < e;) {
                const char *nl = memchr(a, '\n', (size_t)(e - a));
                const char *b = nl ? nl : e;
                if (b > a || nl)
                    add_comment_line(lx, a, (size_t)(b - a));
                a = nl ? nl + 1 : e;
            }
            advance(lx, (size_t)(e + 2 - lx->p));
        } else
            break;
    }
    return true;
}

static bool next(struct parser *ps)
{
    struct lex *lx = &ps->lx;
    lx->doc.n = 0;
    lx->doc_ok = false;
    if (!skip_space(ps))
        return false;
    lx->tline = lx->line;
    lx->tcol = lx->col;
    lx->s = lx->p;
    if (lx->p >= lx->end) {
        lx->t = T_EOF;
        lx->n = 0;
        return true;
    }
    unsigned char c = (unsigned char)*lx->p;
    size_t n = 0, left = (size_t)(lx->end - lx->p);
    if (isalpha(c) || c == '_') {
        while (n < left && (isalnum((unsigned char)lx->p[n]) || lx->p[n] == '_'))
            n++;
        lx->t = T_IDENT;
    } else if (isdigit(c) || (c == '.' && left > 1 && isdigit((unsigned char)lx->p[1]))) {
        bool hex = left > 1 && c == '0' && (lx->p[1] | 32) == 'x', flt = false;
        while (n < left) {
            char d = lx->p[n];
            bool exp_sign = (d == '+' || d == '-') && !hex && n && (lx->p[n - 1] | 32) == 'e';
            if (!isalnum((unsigned char)d) && d != '.' && !exp_sign)
                break;
            flt = flt || d == '.' || (!hex && (d | 32) == 'e');
            n++;
        }
        lx->t = flt ? T_FLOAT : T_INT;
    } else if (c == '"' || c == '\'') {
        n = 1;
        while (n < left && lx->p[n] != (char)c && lx->p[n] != '\n') {
            if (lx->p[n] == '\\' && n + 1 < left && lx->p[n + 1] != '\n')
                n++;
            n++;
        }
        if (n >= left || lx->p[n] != (char)c)
            return fail(ps, lx->tline, lx->tcol, "a string that does not end on its line");
        lx->t = T_STRING;
        lx->s = lx->p + 1;
        lx->n = n - 1;
        advance(lx, n + 1);
        return true;
    } else if (c < 0x20 || c >= 0x7f) {
        return fail(ps, lx->tline, lx->tcol, "unexpected character 0x%02x", c);
    } else {
        n = 1;
        lx->t = T_SYM;
    }
    lx->n = n;
    advance(lx, n);
    return true;
}

static bool is_sym(const struct parser *ps, char c)
{
    return ps->lx.t == T_SYM && ps->lx.s[0] == c;
}

static bool is_word(const struct parser *ps, const char *w)
{
    return ps->lx.t == T_IDENT && ps->lx.n == strlen(w) && !memcmp(ps->lx.s, w, ps->lx.n);
}

/* How much of s[0..n) to quote in a message: at most max bytes, not cutting a UTF-8 character
   (messages end up in JSON strings). */
static int quoted_len(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return (int)n;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    return (int)max;
}

/* What the current token is, for messages. */
static const char *shown(struct parser *ps, char *buf, size_t len)
{
    if (ps->lx.t == T_EOF)
        return "the end of the file";
    snprintf(buf, len, "'%.*s'", quoted_len(ps->lx.s, ps->lx.n, 40), ps->lx.s);
    return buf;
}

static bool expected(struct parser *ps, const char *what)
{
    char b[64];
    return fail(ps, ps->lx.tline, ps->lx.tcol, "expected %s, found %s", what, shown(ps, b, sizeof(b)));
}

static bool expect_sym(struct parser *ps, char c)
{
    if (!is_sym(ps, c)) {
        char w[8] = {'\'', c, '\'', 0};
        return expected(ps, w);
    }
    return next(ps);
}

static bool count(struct parser *ps)
{
    if (++ps->items > MAX_ITEMS)
        return fail(ps, ps->lx.tline, ps->lx.tcol, "more than %d definitions", MAX_ITEMS);
    return true;
}

static bool enter(struct parser *ps)
{
    if (++ps->depth > MAX_DEPTH)
        return fail(ps, ps->lx.tline, ps->lx.tcol, "nested more than %d deep", MAX_DEPTH);
    return true;
}

/* An identifier into buf; false (with the error) when the token is not one. */
static bool ident(struct parser *ps, char *buf, size_t len, const char *what)
{
    if (ps->lx.t != T_IDENT)
        return expected(ps, what);
    if (ps->lx.n >= len)
        return fail(ps, ps->lx.tline, ps->lx.tcol, "a name longer than %zu characters", len - 1);
    memcpy(buf, ps->lx.s, ps->lx.n);
    buf[ps->lx.n] = '\0';
    return next(ps);
}

/* A dotted name ("a.b.C", ".a.B") into buf. */
static bool full_ident(struct parser *ps, char *buf, size_t len, const char *what)
{
    size_t k = 0;
    if (is_sym(ps, '.')) {
        buf[k++] = '.';
        if (!next(ps))
            return false;
    }
    for (;;) {
        if (ps->lx.t != T_IDENT)
            return expected(ps, what);
        if (k + ps->lx.n + 2 > len)
            return fail(ps, ps->lx.tline, ps->lx.tcol, "a name longer than %zu characters", len - 2);
        memcpy(buf + k, ps->lx.s, ps->lx.n);
        k += ps->lx.n;
        buf[k] = '\0';
        if (!next(ps))
            return false;
        if (!is_sym(ps, '.'))
            return true;
        buf[k++] = '.';
        if (!next(ps))
            return false;
    }
}

/* A string constant (adjacent strings join); its text as written, escapes kept. */
static bool string(struct parser *ps, struct pt_buf *b)
{
    if (ps->lx.t != T_STRING)
        return expected(ps, "a string");
    while (ps->lx.t == T_STRING) {
        pt_buf_add(b, ps->lx.s, ps->lx.n);
        if (!next(ps))
            return false;
    }
    return true;
}

/* The doc comment of the current token, or NULL. */
static json_t *take_doc(struct parser *ps)
{
    struct lex *lx = &ps->lx;
    if (!lx->doc_ok || !lx->doc.n)
        return NULL;
    return json_stringn(lx->doc.p, lx->doc.n);
}

/* ------------------------------------------------------------ statements */

/* A constant: a number (signed), an identifier, strings, or a { text format } aggregate. */
static bool constant(struct parser *ps)
{
    if (is_sym(ps, '-') || is_sym(ps, '+')) {
        if (!next(ps))
            return false;
        if (ps->lx.t != T_INT && ps->lx.t != T_FLOAT && !is_word(ps, "inf") && !is_word(ps, "nan"))
            return expected(ps, "a number");
        return next(ps);
    }
    if (ps->lx.t == T_STRING) {
        struct pt_buf b;
        pt_buf_init(&b, ps->pool, 64);
        bool ok = string(ps, &b);
        return ok;
    }
    if (ps->lx.t == T_INT || ps->lx.t == T_FLOAT || ps->lx.t == T_IDENT)
        return next(ps);
    if (!is_sym(ps, '{'))
        return expected(ps, "a constant");
    /* an aggregate: balanced braces, read through */
    int opened = 0;
    do {
        if (ps->lx.t == T_EOF)
            return fail(ps, ps->lx.tline, ps->lx.tcol, "an option value's '{' is not closed");
        if (is_sym(ps, '{') || is_sym(ps, '[') || is_sym(ps, '<')) {
            if (!enter(ps))
                return false;
            opened++;
        } else if (is_sym(ps, '}') || is_sym(ps, ']') || is_sym(ps, '>')) {
            ps->depth--;
            opened--;
        }
        if (!next(ps))
            return false;
    } while (opened > 0);
    return true;
}

/* An option's name: `name`, `a.b`, `(ext.name).field`. */
static bool option_name(struct parser *ps)
{
    char buf[MAX_NAME];
    for (;;) {
        if (is_sym(ps, '(')) {
            if (!next(ps) || !full_ident(ps, buf, sizeof(buf), "an option name") || !expect_sym(ps, ')'))
                return false;
        } else if (!ident(ps, buf, sizeof(buf), "an option name"))
            return false;
        if (!is_sym(ps, '.'))
            return true;
        if (!next(ps))
            return false;
    }
}

/* `option name = constant;` (the word `option` is the current token). */
static bool option_stmt(struct parser *ps)
{
    return next(ps) && option_name(ps) && expect_sym(ps, '=') && constant(ps) && expect_sym(ps, ';');
}

/* `[name = constant, ...]` after a field or an enum value, if present. */
static bool field_options(struct parser *ps)
{
    if (!is_sym(ps, '['))
        return true;
    do {
        if (!next(ps) || !option_name(ps) || !expect_sym(ps, '=') || !constant(ps))
            return false;
    } while (is_sym(ps, ','));
    return expect_sym(ps, ']');
}

/* A field number (or a reserved range's end): 1 .. 2^29-1. */
static bool field_number(struct parser *ps, long *out)
{
    if (ps->lx.t != T_INT)
        return expected(ps, "a field number");
    char buf[32];
    size_t n = ps->lx.n < sizeof(buf) - 1 ? ps->lx.n : sizeof(buf) - 1;
    memcpy(buf, ps->lx.s, n);
    buf[n] = '\0';
    char *end;
    long long v = strtoll(buf, &end, 0);
    if (*end || v < 1 || v > 536870911)
        return fail(ps, ps->lx.tline, ps->lx.tcol, "field number %s is not between 1 and 536870911", buf);
    *out = (long)v;
    return next(ps);
}

/* `reserved 2, 15, 9 to 11;` or `reserved "foo", "bar";`, also `extensions 100 to max;`. */
static bool ranges(struct parser *ps)
{
    if (!next(ps))
        return false;
    do {
        if (is_sym(ps, ',') && !next(ps))
            return false;
        if (ps->lx.t == T_STRING || ps->lx.t == T_IDENT) { /* names (editions write them bare) */
            if (!next(ps))
                return false;
            continue;
        }
        long a;
        if (!field_number(ps, &a))
            return false;
        if (is_word(ps, "to")) {
            if (!next(ps))
                return false;
            if (is_word(ps, "max")) {
                if (!next(ps))
                    return false;
            } else {
                long b;
                int l = ps->lx.tline, c = ps->lx.tcol;
                if (!field_number(ps, &b))
                    return false;
                if (b < a)
                    return fail(ps, l, c, "a range that ends before it starts");
            }
        }
    } while (is_sym(ps, ','));
    if (!field_options(ps))
        return false;
    return expect_sym(ps, ';');
}

static bool message(struct parser *ps, json_t *list, const char *scope);
static bool enum_def(struct parser *ps, json_t *list, const char *scope);
static bool message_body(struct parser *ps, json_t *msg, const char *full);

static char *scoped(const char *scope, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s%s", scope, *scope ? "." : "", name);
    return buf;
}

/* A field: `[label] type name = N [opts];`, `map<K, V> name = N;`, or a proto2 group. */
static bool field(struct parser *ps, json_t *msg, const char *oneof)
{
    char label[16] = "", type[MAX_NAME], name[MAX_NAME], key[MAX_NAME] = "";
    int line = ps->lx.tline, col = ps->lx.tcol;
    if (!count(ps))
        return false;
    if (is_word(ps, "repeated") || is_word(ps, "optional") || is_word(ps, "required")) {
        if (oneof)
            return fail(ps, ps->lx.tline, ps->lx.tcol, "a field of a oneof takes no label");
        if (!ident(ps, label, sizeof(label), "a label"))
            return false;
    }
    if (is_word(ps, "map")) {
        if (!next(ps))
            return false;
        if (is_sym(ps, '<')) {
            if (*label || oneof)
                return fail(ps, line, col, "a map field takes no label and is not part of a oneof");
            if (!next(ps) || !ident(ps, key, sizeof(key), "a map's key type") || !expect_sym(ps, ',') ||
                !full_ident(ps, type, sizeof(type), "a map's value type") || !expect_sym(ps, '>'))
                return false;
        } else
            snprintf(type, sizeof(type), "map"); /* a message named map */
    } else if (!full_ident(ps, type, sizeof(type), "a field's type"))
        return false;
    if (!ident(ps, name, sizeof(name), "a field name") || !expect_sym(ps, '='))
        return false;
    long number;
    if (!field_number(ps, &number) || !field_options(ps))
        return false;
    json_t *f = json_pack("{s:s, s:I, s:s}", "name", name, "number", (json_int_t)number, "type", type);
    if (*label)
        json_object_set_new(f, "label", json_string(label));
    if (*key)
        json_object_set_new(f, "map", json_pack("{s:s, s:s}", "key", key, "value", type));
    if (oneof)
        json_object_set_new(f, "oneof", json_string(oneof));
    json_array_append_new(json_object_get(msg, "fields"), f);
    return expect_sym(ps, ';');
}

/* proto2: `[label] group Name = N { ... }` -- a nested message and a field of its type. */
static bool group(struct parser *ps, json_t *msg, const char *full, const char *label)
{
    char name[MAX_NAME], fn[MAX_NAME * 2];
    if (!next(ps) || !ident(ps, name, sizeof(name), "a group name") || !expect_sym(ps, '='))
        return false;
    long number;
    if (!field_number(ps, &number) || !field_options(ps))
        return false;
    scoped(full, name, fn, sizeof(fn));
    json_t *g = json_pack("{s:s, s:s, s:[], s:[], s:[]}", "name", name, "fullName", fn, "fields", "messages",
                          "enums");
    json_array_append_new(json_object_get(msg, "messages"), g);
    json_t *f = json_pack("{s:s, s:I, s:s}", "name", name, "number", (json_int_t)number, "type", name);
    if (*label)
        json_object_set_new(f, "label", json_string(label));
    json_array_append_new(json_object_get(msg, "fields"), f);
    if (!is_sym(ps, '{'))
        return expected(ps, "'{'");
    if (!enter(ps) || !next(ps) || !message_body(ps, g, fn))
        return false;
    ps->depth--;
    return true;
}

static bool oneof(struct parser *ps, json_t *msg, const char *full)
{
    char name[MAX_NAME];
    if (!next(ps) || !ident(ps, name, sizeof(name), "a oneof name") || !expect_sym(ps, '{'))
        return false;
    while (!is_sym(ps, '}')) {
        if (ps->lx.t == T_EOF)
            return expected(ps, "'}'");
        if (is_word(ps, "option")) {
            if (!option_stmt(ps))
                return false;
        } else if (is_sym(ps, ';')) {
            if (!next(ps))
                return false;
        } else if (is_word(ps, "group")) {
            if (!group(ps, msg, full, ""))
                return false;
        } else if (!field(ps, msg, name))
            return false;
    }
    return next(ps);
}

/* `extend Type { fields }`: read and left out (extensions do not make operations). */
static bool extend(struct parser *ps)
{
    char type[MAX_NAME];
    json_t *scratch = json_pack("{s:[], s:[], s:[]}", "fields", "messages", "enums");
    bool ok = next(ps) && full_ident(ps, type, sizeof(type), "the extended type") && expect_sym(ps, '{');
    while (ok && !is_sym(ps, '}')) {
        if (ps->lx.t == T_EOF)
            ok = expected(ps, "'}'");
        else if (is_sym(ps, ';'))
            ok = next(ps);
        else if (is_word(ps, "group"))
            ok = group(ps, scratch, type, "");
        else
            ok = field(ps, scratch, NULL);
    }
    json_decref(scratch);
    return ok && next(ps);
}

/* The statements between a message's braces, and its '}'. */
static bool message_body(struct parser *ps, json_t *msg, const char *full)
{
    while (!is_sym(ps, '}')) {
        if (ps->failed)
            return false;
        if (ps->lx.t == T_EOF)
            return expected(ps, "'}'");
        bool ok;
        if (is_sym(ps, ';'))
            ok = next(ps);
        else if (is_word(ps, "message"))
            ok = message(ps, json_object_get(msg, "messages"), full);
        else if (is_word(ps, "enum"))
            ok = enum_def(ps, json_object_get(msg, "enums"), full);
        else if (is_word(ps, "option"))
            ok = option_stmt(ps);
        else if (is_word(ps, "oneof"))
            ok = oneof(ps, msg, full);
        else if (is_word(ps, "reserved") || is_word(ps, "extensions"))
            ok = ranges(ps);
        else if (is_word(ps, "extend"))
            ok = extend(ps);
        else if (is_word(ps, "group"))
            ok = group(ps, msg, full, "");
        else if (is_word(ps, "repeated") || is_word(ps, "optional") || is_word(ps, "required")) {
            /* a label before `group` makes a group; before anything else, a field */
            struct mark at = mark(&ps->lx);
            char label[16];
            snprintf(label, sizeof(label), "%.*s", (int)ps->lx.n, ps->lx.s);
            ok = next(ps);
            if (ok && is_word(ps, "group"))
                ok = group(ps, msg, full, label);
            else if (ok) {
                back_to(&ps->lx, at);
                ok = field(ps, msg, NULL);
            }
        } else
            ok = field(ps, msg, NULL);
        if (!ok)
            return false;
    }
    return next(ps);
}

static bool message(struct parser *ps, json_t *list, const char *scope)
{
    json_t *doc = take_doc(ps);
    char name[MAX_NAME], full[MAX_NAME * 2];
    if (!count(ps) || !enter(ps) || !next(ps) || !ident(ps, name, sizeof(name), "a message name")) {
        json_decref(doc);
        return false;
    }
    scoped(scope, name, full, sizeof(full));
    json_t *m = json_pack("{s:s, s:s, s:[], s:[], s:[]}", "name", name, "fullName", full, "fields",
                          "messages", "enums");
    if (doc)
        json_object_set_new(m, "description", doc);
    json_array_append_new(list, m);
    if (!expect_sym(ps, '{') || !message_body(ps, m, full))
        return false;
    ps->depth--;
    return true;
}

static bool enum_def(struct parser *ps, json_t *list, const char *scope)
{
    json_t *doc = take_doc(ps);
    char name[MAX_NAME], full[MAX_NAME * 2];
    if (!count(ps) || !next(ps) || !ident(ps, name, sizeof(name), "an enum name") || !expect_sym(ps, '{')) {
        json_decref(doc);
        return false;
    }
    scoped(scope, name, full, sizeof(full));
    json_t *e = json_pack("{s:s, s:s, s:[]}", "name", name, "fullName", full, "values");
    if (doc)
        json_object_set_new(e, "description", doc);
    json_array_append_new(list, e);
    while (!is_sym(ps, '}')) {
        if (ps->lx.t == T_EOF)
            return expected(ps, "'}'");
        bool ok;
        if (is_sym(ps, ';'))
            ok = next(ps);
        else if (is_word(ps, "option"))
            ok = option_stmt(ps);
        else if (is_word(ps, "reserved"))
            ok = ranges(ps);
        else {
            char vname[MAX_NAME], num[32];
            bool neg = false;
            ok = count(ps) && ident(ps, vname, sizeof(vname), "an enum value") && expect_sym(ps, '=');
            if (ok && is_sym(ps, '-')) {
                neg = true;
                ok = next(ps);
            }
            if (ok && ps->lx.t != T_INT)
                ok = expected(ps, "an enum value's number");
            if (ok) {
                snprintf(num, sizeof(num), "%s%.*s", neg ? "-" : "", (int)(ps->lx.n > 24 ? 24 : ps->lx.n),
                         ps->lx.s);
                char *end;
                long long v = strtoll(num, &end, 0);
                if (*end || v < -2147483648LL || v > 2147483647LL)
                    ok = fail(ps, ps->lx.tline, ps->lx.tcol, "enum value %s is not a 32-bit integer", num);
                else
                    json_array_append_new(json_object_get(e, "values"),
                                          json_pack("{s:s, s:I}", "name", vname, "number", (json_int_t)v));
            }
            ok = ok && next(ps) && field_options(ps) && expect_sym(ps, ';');
        }
        if (!ok)
            return false;
    }
    return next(ps);
}

/* `( [stream] Type )` of an rpc. */
static bool rpc_type(struct parser *ps, json_t *m, const char *type_key, const char *stream_key)
{
    char type[MAX_NAME];
    if (!expect_sym(ps, '('))
        return false;
    bool stream = false;
    if (is_word(ps, "stream")) {
        /* `stream` is also a legal message name: it is the keyword when a type follows */
        struct mark at = mark(&ps->lx);
        if (!next(ps))
            return false;
        if (is_sym(ps, ')'))
            back_to(&ps->lx, at);
        else
            stream = true;
    }
    json_object_set_new(m, "line", json_integer(ps->lx.tline));
    json_object_set_new(m, "column", json_integer(ps->lx.tcol));
    if (!full_ident(ps, type, sizeof(type), "a message type") || !expect_sym(ps, ')'))
        return false;
    json_object_set_new(m, type_key, json_string(type));
    json_object_set_new(m, stream_key, json_boolean(stream));
    return true;
}

static bool rpc(struct parser *ps, json_t *methods)
{
    json_t *doc = take_doc(ps);
    char name[MAX_NAME];
    int line, col;
    if (!count(ps) || !next(ps)) {
        json_decref(doc);
        return false;
    }
    line = ps->lx.tline;
    col = ps->lx.tcol;
    if (!ident(ps, name, sizeof(name), "an rpc name")) {
        json_decref(doc);
        return false;
    }
    if (json_object_get(ps->rpc_names, name)) {
        json_decref(doc);
        return fail(ps, line, col, "rpc '%s' is defined twice in this service", name);
    }
    if (json_object_set_new(ps->rpc_names, name, json_true())) {
        json_decref(doc);
        return fail(ps, line, col, "out of memory");
    }
    json_t *m = json_pack("{s:s}", "name", name);
    if (doc)
        json_object_set_new(m, "description", doc);
    json_array_append_new(methods, m);
    if (!rpc_type(ps, m, "requestType", "clientStreaming"))
        return false;
    json_object_del(m, "line");
    json_object_del(m, "column");
    if (!is_word(ps, "returns"))
        return expected(ps, "'returns'");
    if (!next(ps) || !rpc_type(ps, m, "responseType", "serverStreaming"))
        return false;
    json_object_del(m, "line");
    json_object_del(m, "column");
    if (is_sym(ps, ';'))
        return next(ps);
    if (!expect_sym(ps, '{'))
        return false;
    while (!is_sym(ps, '}')) {
        if (ps->lx.t == T_EOF)
            return expected(ps, "'}'");
        if (is_sym(ps, ';')) {
            if (!next(ps))
                return false;
        } else if (!is_word(ps, "option"))
            return expected(ps, "'option' or '}'");
        else if (!option_stmt(ps))
            return false;
    }
    return next(ps);
}

static bool service(struct parser *ps, const char *package)
{
    json_t *doc = take_doc(ps);
    char name[MAX_NAME], full[MAX_NAME * 2];
    int line, col;
    if (!count(ps) || !next(ps)) {
        json_decref(doc);
        return false;
    }
    line = ps->lx.tline;
    col = ps->lx.tcol;
    if (!ident(ps, name, sizeof(name), "a service name") || !expect_sym(ps, '{')) {
        json_decref(doc);
        return false;
    }
    scoped(package, name, full, sizeof(full));
    json_t *services = json_object_get(ps->out, "services");
    if (json_object_get(ps->service_names, name)) {
        json_decref(doc);
        return fail(ps, line, col, "service '%s' is defined twice", name);
    }
    if (json_object_set_new(ps->service_names, name, json_true()) || json_object_clear(ps->rpc_names)) {
        json_decref(doc);
        return fail(ps, line, col, "out of memory");
    }
    json_t *s = json_pack("{s:s, s:s, s:[]}", "name", name, "fullName", full, "methods");
    if (doc)
        json_object_set_new(s, "description", doc);
    json_array_append_new(services, s);
    while (!is_sym(ps, '}')) {
        if (ps->lx.t == T_EOF)
            return expected(ps, "'}'");
        bool ok;
        if (is_sym(ps, ';'))
            ok = next(ps);
        else if (is_word(ps, "option"))
            ok = option_stmt(ps);
        else if (is_word(ps, "rpc"))
            ok = rpc(ps, json_object_get(s, "methods"));
        else
            ok = expected(ps, "'rpc', 'option' or '}'");
        if (!ok)
            return false;
    }
    return next(ps);
}

static bool top_level(struct parser *ps)
{
    json_t *out = ps->out;
    bool first = true;
    while (ps->lx.t != T_EOF) {
        bool ok;
        int line = ps->lx.tline, col = ps->lx.tcol;
        const char *package = json_string_value(json_object_get(out, "package"));
        if (is_sym(ps, ';'))
            ok = next(ps);
        else if (is_word(ps, "syntax") || is_word(ps, "edition")) {
            bool syntax = is_word(ps, "syntax");
            struct pt_buf b;
            pt_buf_init(&b, ps->pool, 16);
            ok = next(ps) && expect_sym(ps, '=');
            int vl = ps->lx.tline, vc = ps->lx.tcol;
            ok = ok && string(ps, &b);
            if (ok && !first)
                ok = fail(ps, line, col, "'%s' must be the first statement", syntax ? "syntax" : "edition");
            if (ok && syntax && !(b.n == 6 && (!memcmp(b.p, "proto2", 6) || !memcmp(b.p, "proto3", 6))))
                ok = fail(ps, vl, vc, "syntax must be \"proto2\" or \"proto3\"");
            if (ok)
                json_object_set_new(out, syntax ? "syntax" : "edition", json_stringn(b.p, b.n));
            ok = ok && expect_sym(ps, ';');
        } else if (is_word(ps, "package")) {
            char name[MAX_NAME];
            if (package)
                return fail(ps, line, col, "a second package statement");
            ok = next(ps) && full_ident(ps, name, sizeof(name), "a package name") && expect_sym(ps, ';');
            if (ok && name[0] == '.')
                ok = fail(ps, line, col, "a package name cannot start with '.'");
            if (ok)
                json_object_set_new(out, "package", json_string(name));
        } else if (is_word(ps, "import")) {
            struct pt_buf b;
            pt_buf_init(&b, ps->pool, 64);
            ok = next(ps);
            if (ok && (is_word(ps, "public") || is_word(ps, "weak")))
                ok = next(ps);
            ok = ok && count(ps) && string(ps, &b) && expect_sym(ps, ';');
            if (ok) {
                json_array_append_new(json_object_get(out, "imports"), json_stringn(b.p, b.n));
                json_array_append_new(ps->warnings,
                                      json_sprintf("%d:%d: import \"%.*s\" is not part of the uploaded "
                                                   "file; its types stay unresolved",
                                                   line, col, quoted_len(b.p, b.n, 200), b.p));
            }
        } else if (is_word(ps, "option"))
            ok = option_stmt(ps);
        else if (is_word(ps, "message"))
            ok = message(ps, json_object_get(out, "messages"), package ? package : "");
        else if (is_word(ps, "enum"))
            ok = enum_def(ps, json_object_get(out, "enums"), package ? package : "");
        else if (is_word(ps, "service"))
            ok = service(ps, package ? package : "");
        else if (is_word(ps, "extend"))
            ok = extend(ps);
        else
            ok = expected(ps, "'syntax', 'package', 'import', 'option', 'message', 'enum', 'service' or "
                              "'extend'");
        if (!ok)
            return false;
        first = false;
    }
    return true;
}

/* ------------------------------------------------------- type resolution */

/* Adds the full name of every message of `list`, nested ones too, to the set `names`; false when out of
   memory.  Nesting is bounded by the parser's depth. */
static bool message_names(const json_t *list, json_t *names)
{
    size_t i;
    json_t *m;
    json_array_foreach(list, i, m)
    {
        if (json_object_set_new(names, json_string_value(json_object_get(m, "fullName")), json_true()) ||
            !message_names(json_object_get(m, "messages"), names))
            return false;
    }
    return true;
}

static bool has_message(const json_t *names, const char *full)
{
    return json_object_get(names, full) != NULL;
}

/* The full name `type` (as written in a service of `package`) stands for, or NULL: protobuf's
   scoping, innermost scope first (".a.B" is absolute). */
static const char *resolve(const json_t *messages, const char *package, const char *type, char *buf,
                           size_t len)
{
    if (type[0] == '.')
        return has_message(messages, type + 1) ? type + 1 : NULL;
    char scope[MAX_NAME];
    snprintf(scope, sizeof(scope), "%s", package);
    for (;;) {
        scoped(scope, type, buf, len);
        if (has_message(messages, buf))
            return buf;
        if (!*scope)
            return NULL;
        char *dot = strrchr(scope, '.');
        if (dot)
            *dot = '\0';
        else
            scope[0] = '\0';
    }
}

/* Every rpc's types get their full names; an unknown one is an error, or a warning when the file
   imports others (it may be one of theirs). */
static bool resolve_types(struct parser *ps)
{
    json_t *messages = json_object(); /* every message's full name, looked up once per scope tried */
    if (!messages || !message_names(json_object_get(ps->out, "messages"), messages)) {
        json_decref(messages);
        return fail(ps, 1, 1, "out of memory");
    }
    const char *package = json_string_value(json_object_get(ps->out, "package"));
    bool imports = json_array_size(json_object_get(ps->out, "imports")) > 0;
    static const char *const keys[] = {"requestType", "responseType"};
    size_t i, j;
    json_t *s, *m;
    json_array_foreach(json_object_get(ps->out, "services"), i, s)
        json_array_foreach(json_object_get(s, "methods"), j, m) for (int k = 0; k < 2; k++)
    {
        const char *t = json_string_value(json_object_get(m, keys[k]));
        char buf[MAX_NAME * 3];
        const char *full = resolve(messages, package ? package : "", t, buf, sizeof(buf));
        if (full) {
            json_object_set_new(m, keys[k], json_string(full));
            continue;
        }
        if (!imports) {
            fail(ps, 1, 1, "rpc %s.%s: message type '%s' is not defined in this file",
                 json_string_value(json_object_get(s, "name")), json_string_value(json_object_get(m, "name")),
                 t);
            json_decref(messages);
            return false;
        }
        json_array_append_new(ps->warnings, json_sprintf("rpc %s.%s: message type '%s' is not in this file "
                                                         "(left unresolved)",
                                                         json_string_value(json_object_get(s, "name")),
                                                         json_string_value(json_object_get(m, "name")), t));
    }
    json_decref(messages);
    return true;
}

json_t *pt_import_proto_parse(const char *text, size_t len, json_t *warnings, char *err, size_t errlen)
{
    if (len > PT_IMPORT_MAX_INLINE) {
        snprintf(err, errlen, "1:1: the file is %zu bytes; at most %u are read", len, PT_IMPORT_MAX_INLINE);
        return NULL;
    }
    /* the text is kept as a JSON string (UTF-8), and read back as a C string by downloads and
       descriptions: a NUL would cut it there (JSON strings may hold one; a .proto file may not) */
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        unsigned line = 1, col = 1;
        for (const char *q = text; q < nul; q++, col++)
            if (*q == '\n') {
                line++;
                col = 0;
            }
        snprintf(err, errlen, "%u:%u: the file holds a NUL byte: not .proto text", line, col);
        return NULL;
    }
    json_t *probe = json_stringn(text, len);
    if (!probe) {
        snprintf(err, errlen, "1:1: the file is not UTF-8 text");
        return NULL;
    }
    json_decref(probe);
    struct parser ps = {.err = err, .errlen = errlen, .warnings = warnings};
    ps.lx.p = text;
    ps.lx.end = text + len;
    ps.lx.line = ps.lx.col = 1;
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3))
        ps.lx.p += 3;
    ps.pool = pt_pool_new(16384);
    if (!ps.pool) {
        snprintf(err, errlen, "1:1: out of memory");
        return NULL;
    }
    pt_buf_init(&ps.lx.doc, ps.pool, 128);
    ps.out = json_pack("{s:[], s:[], s:[], s:[]}", "imports", "messages", "enums", "services");
    ps.service_names = json_object();
    ps.rpc_names = json_object();
    bool ok = ps.out && ps.service_names && ps.rpc_names && next(&ps) && top_level(&ps) && resolve_types(&ps);
    json_decref(ps.service_names);
    json_decref(ps.rpc_names);
    if (ok && !json_array_size(json_object_get(ps.out, "services")))
        ok = fail(&ps, ps.lx.line, ps.lx.col, "the file defines no service");
    if (ok && pt_pool_failed(ps.pool))
        ok = fail(&ps, 1, 1, "out of memory");
    pt_pool_free(ps.pool);
    if (!ok || ps.failed) {
        if (!ps.failed)
            snprintf(err, errlen, "1:1: out of memory");
        json_decref(ps.out);
        return NULL;
    }
    if (!json_object_get(ps.out, "syntax") && !json_object_get(ps.out, "edition"))
        json_object_set_new(ps.out, "syntax", json_string("proto2")); /* protoc's default */
    return ps.out;
}

/* ---------------------------------------------------------------- the API */

const char *pt_import_proto_kind(bool client_streaming, bool server_streaming)
{
    if (client_streaming && server_streaming)
        return "bidi-streaming";
    if (client_streaming)
        return "client-streaming";
    return server_streaming ? "server-streaming" : "unary";
}

/* An operation id from the service and the rpc: `Service-Method`, with characters an id may not
   hold made '_' and a number added when two come out the same. */
/* The ids given so far (`used`, a set) and, per base, the next number to try (`next`): a file whose rpc
   names all cut to one base costs one lookup per id, not a scan of every operation per number tried. */
struct op_ids {
    json_t *used, *next;
};

static void op_id(struct op_ids *ids, const char *service, const char *method, char *buf, size_t len)
{
    char base[256]; /* ids stay short: names are cut (the number below keeps them apart) */
    snprintf(base, sizeof(base), "%.120s-%.120s", service, method);
    for (char *c = base; *c; c++)
        if (!(isalnum((unsigned char)*c) || strchr("-_.~", *c)))
            *c = '_';
    snprintf(buf, len, "%s", base);
    json_int_t n = json_integer_value(json_object_get(ids->next, base));
    if (n < 2)
        n = 2;
    while (json_object_get(ids->used, buf)) /* bounded: each number is tried once per base over the file */
        snprintf(buf, len, "%s-%lld", base, (long long)n++);
    json_object_set_new(ids->next, base, json_integer(n));
    json_object_set_new(ids->used, buf, json_true());
}

static json_t *operation(struct op_ids *ids, const json_t *service, const json_t *m)
{
    const char *sname = json_string_value(json_object_get(service, "name"));
    const char *sfull = json_string_value(json_object_get(service, "fullName"));
    const char *name = json_string_value(json_object_get(m, "name"));
    bool cs = json_is_true(json_object_get(m, "clientStreaming"));
    bool ss = json_is_true(json_object_get(m, "serverStreaming"));
    char id[600], url[MAX_NAME * 4];
    op_id(ids, sname, name, id, sizeof(id));
    snprintf(url, sizeof(url), "/%s/%s", sfull, name);
    json_t *op =
        json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:b, s:b, s:s}}", "id", id, "method", "POST",
                  "urlTemplate", url, "displayName", name, "grpc", "service", sfull, "method", name,
                  "requestType", json_string_value(json_object_get(m, "requestType")), "responseType",
                  json_string_value(json_object_get(m, "responseType")), "clientStreaming", cs,
                  "serverStreaming", ss, "kind", pt_import_proto_kind(cs, ss));
    const json_t *d = json_object_get(m, "description");
    json_object_set_new(op, "description", json_string(d ? json_string_value(d) : ""));
    return op;
}

bool pt_import_proto_convert(const char *text, size_t len, struct pt_import_doc *out, char *err,
                             size_t errlen)
{
    out->api = NULL;
    out->warnings = json_array();
    json_t *file = pt_import_proto_parse(text, len, out->warnings, err, errlen);
    if (!file) {
        json_decref(out->warnings);
        out->warnings = NULL;
        return false;
    }
    json_t *api = json_object(), *ops = json_array();
    const char *package = json_string_value(json_object_get(file, "package"));
    json_t *services = json_object_get(file, "services");
    const json_t *first = json_array_get(services, 0);
    json_object_set_new(api, "apiType", json_string("grpc"));
    json_object_set_new(api, "displayName",
                        json_string(package ? package : json_string_value(json_object_get(first, "name"))));
    if (json_array_size(services) == 1 && json_object_get(first, "description"))
        json_object_set(api, "description", json_object_get(first, "description"));
    size_t i, j;
    json_t *s, *m;
    struct op_ids ids = {json_object(), json_object()};
    json_array_foreach(services, i, s) json_array_foreach(json_object_get(s, "methods"), j, m)
        json_array_append_new(ops, operation(&ids, s, m));
    bool ids_made = ids.used && ids.next; /* else ids may have come out twice */
    json_decref(ids.used);
    json_decref(ids.next);
    json_object_set_new(api, "operations", ops);
    json_object_set_new(api, "schemas",
                        json_pack("[{s:s, s:s, s:s%}]", "id", "proto", "contentType",
                                  PT_IMPORT_PROTO_CONTENT_TYPE, "value", text, len));
    json_decref(file);
    if (!json_object_get(api, "schemas") || json_array_size(ops) == 0 || !ids_made) {
        json_decref(api);
        json_decref(out->warnings);
        out->warnings = NULL;
        snprintf(err, errlen, "1:1: out of memory");
        return false;
    }
    out->api = api;
    return true;
}
