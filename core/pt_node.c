/*
 * pt_node -- YAML to tree, with positions; shared error reporting.
 */
#include "pt_node.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <yaml.h>

#define MAX_NODES 2000000
#define MAX_DEPTH 64
#define MAX_FILE (64u << 20)

void pt_errors_add(struct pt_errors *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *m = NULL;
    if (vasprintf(&m, fmt, ap) < 0)
        m = NULL;
    va_end(ap);
    if (!m)
        return;
    if (e->n == e->cap) {
        int ncap = e->cap ? e->cap * 2 : 8;
        char **nm = realloc(e->msgs, sizeof(char *) * (size_t)ncap);
        if (!nm) {
            free(m);
            return;
        }
        e->msgs = nm;
        e->cap = ncap;
    }
    e->msgs[e->n++] = m;
}

void pt_errors_clear(struct pt_errors *e)
{
    for (int i = 0; i < e->n; i++)
        free(e->msgs[i]);
    free(e->msgs);
    e->msgs = NULL;
    e->n = e->cap = 0;
}

static size_t node_path(const struct pt_node *n, char *buf, size_t size)
{
    if (!n || !n->parent)
        return 0;
    size_t k = node_path(n->parent, buf, size);
    const struct pt_node *p = n->parent;
    int w;
    if (p->kind == PT_N_SEQ)
        w = snprintf(buf + k, size > k ? size - k : 0, "[%d]", n->index);
    else {
        const struct pt_node *key = p->items[2 * n->index];
        w = snprintf(buf + k, size > k ? size - k : 0, "%s%s", k ? "." : "", key->str);
    }
    if (w < 0)
        return k;
    k += (size_t)w;
    return k < size ? k : size - 1;
}

void pt_node_where(const struct pt_node *n, char *buf, size_t size)
{
    if (size == 0)
        return;
    buf[0] = '\0';
    if (!n)
        return;
    if (n->file && n->line > 0) {
        snprintf(buf, size, "%s:%d:%d", n->file, n->line, n->col);
        return;
    }
    if (node_path(n, buf, size) == 0)
        snprintf(buf, size, "(document)");
}

void pt_node_error(struct pt_errors *e, const struct pt_node *node, const char *fmt, ...)
{
    char where[512];
    pt_node_where(node, where, sizeof(where));
    va_list ap;
    va_start(ap, fmt);
    char *m = NULL;
    if (vasprintf(&m, fmt, ap) < 0)
        m = NULL;
    va_end(ap);
    pt_errors_add(e, "%s: %s", where, m ? m : "(out of memory)");
    free(m);
}

struct pt_node *pt_node_get(const struct pt_node *map, const char *key)
{
    if (!map || map->kind != PT_N_MAP)
        return NULL;
    for (int i = 0; i < map->n; i++)
        if (strcmp(pt_node_key(map, i)->str, key) == 0)
            return pt_node_val(map, i);
    return NULL;
}

const char *pt_node_kind_name(const struct pt_node *n)
{
    if (n->kind == PT_N_MAP)
        return "a map";
    if (n->kind == PT_N_SEQ)
        return "a list";
    return n->null ? "null" : "a scalar";
}

struct conv {
    struct pt_pool *pool;
    yaml_document_t *doc;
    const char *file;
    struct pt_errors *errs;
    long count;
    bool failed;
};

static struct pt_node *convert(struct conv *cv, yaml_node_t *yn, struct pt_node *parent, int index,
                               int depth)
{
    if (cv->failed)
        return NULL;
    if (++cv->count > MAX_NODES || depth > MAX_DEPTH) {
        pt_errors_add(cv->errs, "%s:%lu:%lu: document too large or too deeply nested", cv->file,
                      (unsigned long)yn->start_mark.line + 1, (unsigned long)yn->start_mark.column + 1);
        cv->failed = true;
        return NULL;
    }
    struct pt_node *n = pt_pool_calloc(cv->pool, sizeof(*n));
    if (!n) {
        cv->failed = true;
        return NULL;
    }
    n->file = cv->file;
    n->line = (int)yn->start_mark.line + 1;
    n->col = (int)yn->start_mark.column + 1;
    n->parent = parent;
    n->index = index;
    switch (yn->type) {
    case YAML_SCALAR_NODE: {
        n->kind = PT_N_SCALAR;
        n->len = yn->data.scalar.length;
        n->str = pt_pool_strndup(cv->pool, (const char *)yn->data.scalar.value, n->len);
        n->quoted = yn->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        if (!n->quoted && (n->len == 0 || strcmp(n->str, "~") == 0 || strcmp(n->str, "null") == 0 ||
                           strcmp(n->str, "Null") == 0 || strcmp(n->str, "NULL") == 0))
            n->null = true;
        break;
    }
    case YAML_SEQUENCE_NODE: {
        n->kind = PT_N_SEQ;
        yaml_node_item_t *it = yn->data.sequence.items.start;
        int cnt = (int)(yn->data.sequence.items.top - it);
        n->items = pt_pool_calloc(cv->pool, sizeof(*n->items) * (size_t)(cnt ? cnt : 1));
        for (int i = 0; i < cnt && !cv->failed; i++) {
            yaml_node_t *c = yaml_document_get_node(cv->doc, it[i]);
            n->items[n->n++] = convert(cv, c, n, i, depth + 1);
        }
        break;
    }
    case YAML_MAPPING_NODE: {
        n->kind = PT_N_MAP;
        yaml_node_pair_t *pr = yn->data.mapping.pairs.start;
        int cnt = (int)(yn->data.mapping.pairs.top - pr);
        n->items = pt_pool_calloc(cv->pool, sizeof(*n->items) * (size_t)(cnt ? 2 * cnt : 1));
        for (int i = 0; i < cnt && !cv->failed; i++) {
            yaml_node_t *k = yaml_document_get_node(cv->doc, pr[i].key);
            yaml_node_t *v = yaml_document_get_node(cv->doc, pr[i].value);
            struct pt_node *kn = convert(cv, k, n, i, depth + 1);
            struct pt_node *vn = convert(cv, v, n, i, depth + 1);
            if (cv->failed)
                break;
            if (kn->kind != PT_N_SCALAR) {
                pt_node_error(cv->errs, kn, "map keys must be plain strings");
                cv->failed = true;
                break;
            }
            for (int j = 0; j < n->n; j++)
                if (strcmp(pt_node_key(n, j)->str, kn->str) == 0) {
                    pt_node_error(cv->errs, kn, "duplicate key '%s'", kn->str);
                    cv->failed = true;
                    break;
                }
            n->items[2 * n->n] = kn;
            n->items[2 * n->n + 1] = vn;
            n->n++;
        }
        break;
    }
    default:
        n->kind = PT_N_SCALAR;
        n->null = true;
        n->str = "";
        break;
    }
    return cv->failed ? NULL : n;
}

struct pt_node *pt_node_parse_yaml(struct pt_pool *pool, const char *file, const char *text,
                                   size_t len, struct pt_errors *errs)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    struct pt_node *root = NULL;
    const char *fname = pt_pool_strdup(pool, file);

    if (!yaml_parser_initialize(&parser)) {
        pt_errors_add(errs, "%s: out of memory", file);
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        pt_errors_add(errs, "%s:%lu:%lu: %s%s%s", file, (unsigned long)parser.problem_mark.line + 1,
                      (unsigned long)parser.problem_mark.column + 1,
                      parser.problem ? parser.problem : "YAML syntax error",
                      parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return NULL;
    }
    yaml_node_t *top = yaml_document_get_root_node(&doc);
    if (!top) {
        /* an empty file is an empty map */
        root = pt_pool_calloc(pool, sizeof(*root));
        root->kind = PT_N_MAP;
        root->file = fname;
        root->line = root->col = 1;
    } else {
        struct conv cv = {pool, &doc, fname, errs, 0, false};
        root = convert(&cv, top, NULL, 0, 0);
    }
    yaml_document_delete(&doc);
    if (root) {
        /* a second document in the same stream is almost always a mistake */
        yaml_document_t doc2;
        if (yaml_parser_load(&parser, &doc2)) {
            yaml_node_t *t2 = yaml_document_get_root_node(&doc2);
            if (t2) {
                pt_errors_add(errs, "%s:%lu:%lu: only one YAML document is allowed", file,
                              (unsigned long)t2->start_mark.line + 1,
                              (unsigned long)t2->start_mark.column + 1);
                root = NULL;
            }
            yaml_document_delete(&doc2);
        } else {
            pt_errors_add(errs, "%s:%lu:%lu: %s", file, (unsigned long)parser.problem_mark.line + 1,
                          (unsigned long)parser.problem_mark.column + 1,
                          parser.problem ? parser.problem : "YAML syntax error");
            root = NULL;
        }
    }
    yaml_parser_delete(&parser);
    return root;
}

struct pt_node *pt_node_load_file(struct pt_pool *pool, const char *path, struct pt_errors *errs)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        pt_errors_add(errs, "%s:1:1: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
        if (len == cap) {
            if (cap >= MAX_FILE) {
                pt_errors_add(errs, "%s:1:1: file larger than %u MiB", path, MAX_FILE >> 20);
                free(buf);
                fclose(f);
                return NULL;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    bool rerr = ferror(f);
    fclose(f);
    if (!buf || rerr) {
        free(buf);
        pt_errors_add(errs, "%s:1:1: cannot read file", path);
        return NULL;
    }
    struct pt_node *root = pt_node_parse_yaml(pool, path, buf, len, errs);
    free(buf);
    return root;
}

/* ------------------------------------------------------------- to JSON */

static bool plain_json_literal(const struct pt_node *n)
{
    if (n->quoted)
        return false;
    if (n->null || !strcmp(n->str, "true") || !strcmp(n->str, "false"))
        return true;
    const char *p = n->str;
    if (*p == '-')
        p++;
    if (!*p || !(*p >= '0' && *p <= '9'))
        return false;
    char *end;
    strtod(n->str, &end);
    return *end == '\0';
}

static void json_str(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    for (size_t i = 0; i < n + 2; i++) {
        if (*len + 8 > *cap) {
            *cap = (*cap + 8) * 2;
            *buf = realloc(*buf, *cap);
        }
        unsigned char c = i == 0 || i == n + 1 ? '"' : (unsigned char)s[i - 1];
        if (i > 0 && i <= n && (c == '"' || c == '\\')) {
            (*buf)[(*len)++] = '\\';
            (*buf)[(*len)++] = (char)c;
        } else if (i > 0 && i <= n && c < 0x20)
            *len += (size_t)snprintf(*buf + *len, 8, "\\u%04x", c);
        else
            (*buf)[(*len)++] = (char)c;
    }
}

static void to_json(char **buf, size_t *len, size_t *cap, const struct pt_node *n, int depth)
{
#define PUT(s)                                                                                                \
    do {                                                                                                      \
        size_t k_ = strlen(s);                                                                                \
        if (*len + k_ + 1 > *cap) {                                                                           \
            *cap = (*len + k_ + 1) * 2;                                                                       \
            *buf = realloc(*buf, *cap);                                                                       \
        }                                                                                                     \
        memcpy(*buf + *len, s, k_);                                                                           \
        *len += k_;                                                                                           \
    } while (0)
    if (depth > MAX_DEPTH) {
        PUT("null");
        return;
    }
    if (n->kind == PT_N_SCALAR) {
        if (plain_json_literal(n))
            PUT(n->null ? "null" : n->str);
        else
            json_str(buf, len, cap, n->str, n->len);
        return;
    }
    bool map = n->kind == PT_N_MAP;
    PUT(map ? "{" : "[");
    for (int i = 0; i < n->n; i++) {
        if (i)
            PUT(",");
        if (map) {
            json_str(buf, len, cap, pt_node_key(n, i)->str, pt_node_key(n, i)->len);
            PUT(":");
            to_json(buf, len, cap, pt_node_val(n, i), depth + 1);
        } else
            to_json(buf, len, cap, n->items[i], depth + 1);
    }
    PUT(map ? "}" : "]");
#undef PUT
}

pt_str pt_node_to_text(struct pt_pool *pool, const struct pt_node *n)
{
    if (n->kind == PT_N_SCALAR)
        return (pt_str){n->null ? "" : n->str, n->null ? 0 : n->len};
    size_t len = 0, cap = 256;
    char *buf = malloc(cap);
    to_json(&buf, &len, &cap, n, 0);
    char *out = pt_pool_strndup(pool, buf, len);
    free(buf);
    return (pt_str){out, len};
}
