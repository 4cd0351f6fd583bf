/*
 * pt_schema -- the schema engine of the configuration file: the value readers
 * (strings, booleans, integers, sizes, durations, paths), pt_schema_map() that
 * validates a map against its key table, and the printer of the key
 * reference.  The tables themselves, and what the keys mean, are pt_conf's.
 */
#include "conf/pt_schema.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* ---------------------------------------------------------------- scalars */

static bool want_scalar(struct pt_cfctx *cx, struct pt_node *n, const char *what)
{
    if (n->kind != PT_N_SCALAR || n->null) {
        pt_node_error(cx->errs, n, "expected %s, found %s", what, pt_node_kind_name(n));
        return false;
    }
    return true;
}

bool pt_schema_str(struct pt_cfctx *cx, struct pt_node *n, char **out, bool empty_ok)
{
    if (n->kind == PT_N_SCALAR && n->null && empty_ok && n->len == 0) {
        *out = "";
        return true;
    }
    if (!want_scalar(cx, n, "a string"))
        return false;
    if (!empty_ok && n->len == 0) {
        pt_node_error(cx->errs, n, "must not be empty");
        return false;
    }
    if (memchr(n->str, '\0', n->len)) {
        pt_node_error(cx->errs, n, "must not contain NUL");
        return false;
    }
    *out = n->str;
    return true;
}

bool pt_schema_bool(struct pt_cfctx *cx, struct pt_node *n, bool *out)
{
    if (!want_scalar(cx, n, "true or false"))
        return false;
    if (!n->quoted) {
        if (!strcmp(n->str, "true") || !strcmp(n->str, "True") || !strcmp(n->str, "TRUE")) {
            *out = true;
            return true;
        }
        if (!strcmp(n->str, "false") || !strcmp(n->str, "False") || !strcmp(n->str, "FALSE")) {
            *out = false;
            return true;
        }
    }
    pt_node_error(cx->errs, n, "expected true or false, found '%s'", n->str);
    return false;
}

bool pt_schema_int(struct pt_cfctx *cx, struct pt_node *n, int64_t min, int64_t max, int64_t *out)
{
    if (!want_scalar(cx, n, "an integer"))
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(n->str, &end, 10);
    if (n->quoted || errno || end == n->str || *end ||
        !(isdigit((unsigned char)n->str[0]) || n->str[0] == '-')) {
        pt_node_error(cx->errs, n, "expected an integer, found '%s'", n->str);
        return false;
    }
    if (v < min || v > max) {
        pt_node_error(cx->errs, n, "%lld is out of range (%lld..%lld)", v, (long long)min, (long long)max);
        return false;
    }
    *out = v;
    return true;
}

bool pt_schema_parse_duration_ms(const char *s, uint64_t *ms)
{
    uint64_t total = 0;
    const char *p = s;
    if (!*p)
        return false;
    /* a plain number is seconds */
    while (*p) {
        if (!isdigit((unsigned char)*p))
            return false;
        uint64_t v = 0;
        while (isdigit((unsigned char)*p)) {
            v = v * 10 + (uint64_t)(*p++ - '0');
            if (v > 1000000000ULL)
                return false;
        }
        uint64_t mul;
        if (!*p)
            mul = p == s || total == 0 ? 1000 : 0;
        else if (!strncmp(p, "ms", 2)) {
            mul = 1;
            p += 2;
        } else if (*p == 's') {
            mul = 1000;
            p++;
        } else if (*p == 'm') {
            mul = 60000;
            p++;
        } else if (*p == 'h') {
            mul = 3600000;
            p++;
        } else if (*p == 'd') {
            mul = 86400000;
            p++;
        } else
            return false;
        if (mul == 0)
            return false;
        total += v * mul;
    }
    *ms = total;
    return true;
}

bool pt_schema_parse_size(const char *s, uint64_t *bytes)
{
    char *end;
    if (!isdigit((unsigned char)*s))
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return false;
    uint64_t mul = 1;
    if (*end) {
        switch (tolower((unsigned char)*end)) {
        case 'k':
            mul = 1024ULL;
            break;
        case 'm':
            mul = 1024ULL * 1024;
            break;
        case 'g':
            mul = 1024ULL * 1024 * 1024;
            break;
        default:
            return false;
        }
        end++;
        if (*end == 'b' || *end == 'B' || ((*end == 'i') && (end[1] == 'b' || end[1] == 'B')))
            end += *end == 'i' ? 2 : 1;
        if (*end)
            return false;
    }
    if (v > UINT64_MAX / mul)
        return false;
    *bytes = v * mul;
    return true;
}

bool pt_schema_size(struct pt_cfctx *cx, struct pt_node *n, uint64_t *out)
{
    if (!want_scalar(cx, n, "a size"))
        return false;
    if (!pt_schema_parse_size(n->str, out)) {
        pt_node_error(cx->errs, n, "expected a size such as 8192, 16k, 1m or 1g, found '%s'", n->str);
        return false;
    }
    return true;
}

bool pt_schema_ms(struct pt_cfctx *cx, struct pt_node *n, uint32_t *out)
{
    uint64_t ms;
    if (!want_scalar(cx, n, "a duration"))
        return false;
    if (!pt_schema_parse_duration_ms(n->str, &ms) || ms > 30ULL * 86400000) {
        pt_node_error(
            cx->errs, n,
            "expected a duration such as 30 (seconds), 250ms, 10s, 5m or 1h (at most 30d), found '%s'",
            n->str);
        return false;
    }
    *out = (uint32_t)ms;
    return true;
}

char *pt_schema_path(struct pt_cfctx *cx, const char *path)
{
    if (path[0] == '/' || !cx->dir || !cx->dir[0] || !strcmp(cx->dir, "."))
        return pt_pool_strdup(cx->pool, path);
    return pt_pool_printf(cx->pool, "%s/%s", cx->dir, path);
}

/* ------------------------------------------------------------------- maps */

static void list_keys(const struct pt_cfkey *keys, char *buf, size_t size)
{
    size_t k = 0;
    buf[0] = '\0';
    for (const struct pt_cfkey *c = keys; c->name && k + 2 < size; c++) {
        int w = snprintf(buf + k, size - k, "%s%s", k ? ", " : "", c->name);
        if (w < 0)
            break;
        k += (size_t)w;
    }
}

static bool set_value(struct pt_cfctx *cx, struct pt_node *v, const struct pt_cfkey *key, void *base)
{
    void *field = (char *)base + key->off;
    switch (key->type) {
    case PT_CT_STR: {
        char *s;
        if (!pt_schema_str(cx, v, &s, key->flags & PT_CF_EMPTY_OK))
            return false;
        *(char **)field = (key->flags & PT_CF_PATH) ? pt_schema_path(cx, s) : s;
        return true;
    }
    case PT_CT_BOOL:
        return pt_schema_bool(cx, v, (bool *)field);
    case PT_CT_INT:
        return pt_schema_int(cx, v, key->min, key->max, (int64_t *)field);
    case PT_CT_SIZE: {
        uint64_t b;
        if (!pt_schema_size(cx, v, &b))
            return false;
        if ((key->min && b < (uint64_t)key->min) || (key->max && b > (uint64_t)key->max)) {
            if (key->max)
                pt_node_error(cx->errs, v, "size out of range (%lld..%lld bytes)", (long long)key->min,
                              (long long)key->max);
            else
                pt_node_error(cx->errs, v, "size must be at least %lld bytes", (long long)key->min);
            return false;
        }
        *(uint64_t *)field = b;
        return true;
    }
    case PT_CT_MS: {
        uint32_t ms;
        if (!pt_schema_ms(cx, v, &ms))
            return false;
        if ((key->min && ms < key->min) || (key->max && ms > key->max)) {
            if (key->max)
                pt_node_error(cx->errs, v, "duration out of range (%lldms..%lldms)", (long long)key->min,
                              (long long)key->max);
            else
                pt_node_error(cx->errs, v, "duration must be at least %lldms", (long long)key->min);
            return false;
        }
        *(uint32_t *)field = ms;
        return true;
    }
    case PT_CT_ENUM: {
        if (!want_scalar(cx, v, "a name"))
            return false;
        for (int i = 0; key->enums[i]; i++)
            if (!strcmp(key->enums[i], v->str)) {
                *(int *)field = i;
                return true;
            }
        char all[256] = "";
        size_t k = 0;
        for (int i = 0; key->enums[i] && k < sizeof(all) - 2; i++)
            k += (size_t)snprintf(all + k, sizeof(all) - k, "%s%s", i ? ", " : "", key->enums[i]);
        pt_node_error(cx->errs, v, "'%s' is not one of: %s", v->str, all);
        return false;
    }
    case PT_CT_MAP:
        return pt_schema_map(cx, v, key->sub, base);
    case PT_CT_CUSTOM:
        return key->fn(cx, v, field);
    }
    return false;
}

bool pt_schema_map(struct pt_cfctx *cx, struct pt_node *node, const struct pt_cfkey *keys, void *base)
{
    if (node->kind != PT_N_MAP) {
        pt_node_error(cx->errs, node, "expected a map, found %s", pt_node_kind_name(node));
        return false;
    }
    bool ok = true;
    for (int i = 0; i < node->n; i++) {
        struct pt_node *k = pt_node_key(node, i), *v = pt_node_val(node, i);
        const struct pt_cfkey *key = NULL;
        for (const struct pt_cfkey *c = keys; c->name; c++)
            if (pt_node_same_key(c->name, k->str)) {
                key = c;
                break;
            }
        if (!key) {
            char all[1024];
            list_keys(keys, all, sizeof(all));
            pt_node_error(cx->errs, k, "unknown key '%s' (expected one of: %s)", k->str, all);
            ok = false;
            continue;
        }
        if (!set_value(cx, v, key, base))
            ok = false;
    }
    for (const struct pt_cfkey *c = keys; c->name; c++)
        if ((c->flags & PT_CF_REQUIRED) && !pt_node_get(node, c->name)) {
            pt_node_error(cx->errs, node, "missing required key '%s'", c->name);
            ok = false;
        }
    return ok;
}

/* -------------------------------------------------------------- reference */

/* 2097152 -> "2m", 1000 -> "1000": the largest unit that divides the value */
static void fmt_size(uint64_t v, char *buf, size_t size)
{
    static const struct {
        uint64_t mul;
        const char *unit;
    } units[] = {{1ULL << 30, "g"}, {1ULL << 20, "m"}, {1ULL << 10, "k"}};
    for (size_t i = 0; i < PT_ARRAY_LEN(units); i++)
        if (v && v % units[i].mul == 0) {
            snprintf(buf, size, "%llu%s", (unsigned long long)(v / units[i].mul), units[i].unit);
            return;
        }
    snprintf(buf, size, "%llu", (unsigned long long)v);
}

/* 60000 -> "1m", 250 -> "250ms" */
static void fmt_ms(uint64_t v, char *buf, size_t size)
{
    static const struct {
        uint64_t mul;
        const char *unit;
    } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
    for (size_t i = 0; i < PT_ARRAY_LEN(units); i++)
        if (v && v % units[i].mul == 0) {
            snprintf(buf, size, "%llu%s", (unsigned long long)(v / units[i].mul), units[i].unit);
            return;
        }
    snprintf(buf, size, "%llums", (unsigned long long)v);
}

/* "size, 1k–1m", "duration, at least 1ms": a typed key's kind and bounds */
static void bounds_text(const char *kind, int64_t min, int64_t max, bool size, char *buf, size_t bsize)
{
    char lo[32], hi[32];
    (size ? fmt_size : fmt_ms)((uint64_t)min, lo, sizeof(lo));
    (size ? fmt_size : fmt_ms)((uint64_t)max, hi, sizeof(hi));
    if (min && max && max != INT64_MAX)
        snprintf(buf, bsize, "%s, %s–%s", kind, lo, hi);
    else if (min)
        snprintf(buf, bsize, "%s, at least %s", kind, lo);
    else if (max && max != INT64_MAX)
        snprintf(buf, bsize, "%s, at most %s", kind, hi);
    else
        snprintf(buf, bsize, "%s", kind);
}

static void type_text(const struct pt_cfkey *k, char *buf, size_t size)
{
    switch (k->type) {
    case PT_CT_STR:
        snprintf(buf, size, "%s", k->flags & PT_CF_PATH ? "path" : "string");
        return;
    case PT_CT_BOOL:
        snprintf(buf, size, "boolean");
        return;
    case PT_CT_INT:
        snprintf(buf, size, "integer, %lld–%lld", (long long)k->min, (long long)k->max);
        return;
    case PT_CT_SIZE:
        bounds_text("size", k->min, k->max, true, buf, size);
        return;
    case PT_CT_MS:
        bounds_text("duration", k->min, k->max ? k->max : 30LL * 86400000, false, buf, size);
        return;
    case PT_CT_ENUM: {
        size_t n = (size_t)snprintf(buf, size, "one of");
        for (int i = 0; k->enums[i] && n < size; i++)
            n += (size_t)snprintf(buf + n, size - n, "%s`%s`", i ? ", " : " ", k->enums[i]);
        return;
    }
    case PT_CT_MAP:
        snprintf(buf, size, "map");
        return;
    case PT_CT_CUSTOM:
        snprintf(buf, size, "%s", k->form ? k->form : "");
        return;
    }
    buf[0] = '\0';
}

/* A table cell: '|' would end it. */
static void put_cell(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputc('\\', out);
        fputc(*s, out);
    }
}

struct refctx {
    FILE *out, *err;
    bool ok;
};

static void PT_PRINTF(3, 4) ref_problem(struct refctx *rc, const char *path, const char *fmt, ...)
{
    va_list ap;
    fprintf(rc->err, "portico: configuration reference: %s: ", path);
    va_start(ap, fmt);
    vfprintf(rc->err, fmt, ap);
    va_end(ap);
    fputc('\n', rc->err);
    rc->ok = false;
}

/* The default a typed key has in the code, as it would be written in the file; "" when it is zero. */
static void code_default(const struct pt_cfkey *k, const void *base, char *buf, size_t size)
{
    const void *field = (const char *)base + k->off;
    buf[0] = '\0';
    switch (k->type) {
    case PT_CT_STR: {
        const char *s = *(const char *const *)field;
        snprintf(buf, size, "%s", s ? s : "");
        break;
    }
    case PT_CT_BOOL:
        if (*(const bool *)field)
            snprintf(buf, size, "true");
        break;
    case PT_CT_INT:
        if (*(const int64_t *)field)
            snprintf(buf, size, "%lld", (long long)*(const int64_t *)field);
        break;
    case PT_CT_SIZE:
        if (*(const uint64_t *)field)
            fmt_size(*(const uint64_t *)field, buf, size);
        break;
    case PT_CT_MS:
        if (*(const uint32_t *)field)
            fmt_ms(*(const uint32_t *)field, buf, size);
        break;
    case PT_CT_ENUM:
        snprintf(buf, size, "%s", k->enums[*(const int *)field]);
        break;
    case PT_CT_MAP:
    case PT_CT_CUSTOM:
        break;
    }
}

/* Does the literal `lit` mean the same value as the code default `code` for this key's type? */
static bool same_value(const struct pt_cfkey *k, const char *lit, const char *code)
{
    uint64_t a, b;
    switch (k->type) {
    case PT_CT_SIZE:
        return pt_schema_parse_size(lit, &a) && (*code ? pt_schema_parse_size(code, &b) : (b = 0, true)) &&
               a == b;
    case PT_CT_MS:
        return pt_schema_parse_duration_ms(lit, &a) &&
               (*code ? pt_schema_parse_duration_ms(code, &b) : (b = 0, true)) && a == b;
    case PT_CT_INT:
        return strtoll(lit, NULL, 10) == strtoll(code, NULL, 10) &&
               (isdigit((unsigned char)lit[0]) || lit[0] == '-');
    case PT_CT_BOOL:
        return !strcmp(lit, *code ? "true" : "false");
    default:
        return !strcmp(lit, code);
    }
}

static void check_key(struct refctx *rc, const char *path, const struct pt_cfkey *k, const void *base)
{
    if (!k->doc || !*k->doc)
        ref_problem(rc, path, "no documentation (doc)");
    else if (strchr(k->doc, '\n'))
        ref_problem(rc, path, "the documentation must be one line");
    if (k->type == PT_CT_CUSTOM && (!k->form || !*k->form))
        ref_problem(rc, path, "a custom key needs a form (what its value looks like)");
    if (k->type == PT_CT_MAP && !k->sub)
        ref_problem(rc, path, "a map needs its keys (sub)");
    if (!base || k->type == PT_CT_MAP || k->type == PT_CT_CUSTOM)
        return;
    char code[64], lit[64] = "";
    code_default(k, base, code, sizeof(code));
    size_t n = k->def ? strlen(k->def) : 0;
    bool literal = n >= 2 && k->def[0] == '`' && k->def[n - 1] == '`' && !memchr(k->def + 1, '`', n - 2);
    if (literal)
        snprintf(lit, sizeof(lit), "%.*s", (int)(n - 2), k->def + 1);
    if (literal && !same_value(k, lit, code))
        ref_problem(rc, path, "the documented default %s is not the code's ('%s')", k->def, code);
    else if (!literal && (*code || k->type == PT_CT_ENUM))
        ref_problem(rc, path, "the default is '%s' in the code: state it as `%s`", code, code);
}

static void print_rows(struct refctx *rc, const char *prefix, const struct pt_cfkey *keys, const void *base,
                       bool deep)
{
    for (const struct pt_cfkey *k = keys; k->name; k++) {
        char path[256], type[512];
        snprintf(path, sizeof(path), "%s%s%s", prefix, k->name, k->flags & PT_CF_LIST ? "[]" : "");
        check_key(rc, path, k, base);
        type_text(k, type, sizeof(type));
        fprintf(rc->out, "| `%s` | ", path);
        put_cell(rc->out, type);
        fprintf(rc->out, " | ");
        put_cell(rc->out, k->flags & PT_CF_REQUIRED ? "required" : k->def ? k->def : "");
        fprintf(rc->out, " | ");
        put_cell(rc->out, k->doc ? k->doc : "");
        fprintf(rc->out, " |\n");
        if (deep && k->sub) {
            char p2[260];
            snprintf(p2, sizeof(p2), "%s.", path);
            print_rows(rc, p2, k->sub, k->type == PT_CT_MAP ? base : NULL, true);
        }
    }
}

static const char table_head[] = "| key | type | default | meaning |\n|---|---|---|---|\n";

bool pt_schema_reference(FILE *out, FILE *err, const struct pt_cfkey *keys, const void *base)
{
    struct refctx rc = {out, err, true};
    fputs(table_head, out);
    print_rows(&rc, "", keys, base, false);
    for (const struct pt_cfkey *k = keys; k->name; k++) {
        if (!k->sub)
            continue;
        char path[260];
        snprintf(path, sizeof(path), "%s%s.", k->name, k->flags & PT_CF_LIST ? "[]" : "");
        fprintf(out, "\n### `%.*s`\n\n%s", (int)strlen(path) - 1, path, table_head);
        print_rows(&rc, path, k->sub, k->type == PT_CT_MAP ? base : NULL, true);
    }
    return rc.ok;
}
