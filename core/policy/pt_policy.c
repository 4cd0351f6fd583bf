/*
 * pt_policy -- registry, document parsing and validation, composition.
 *
 * Validation is driven by each policy's attribute schema (struct
 * pt_attr_def): the same tables check the configuration file, the
 * management API's bodies and generate the policy reference.  A plugin's
 * compile() only sees statements that passed.
 */
#include "policy/pt_policy.h"

#include "base/pt_buf.h"
#include "base/pt_log.h"
#include "event/pt_tls.h"
#include "lua/pt_expr.h"
#include "lua/pt_exprlint.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

struct pt_api pt_policy_api_table;
static const unsigned section_bits[PT_SEC_COUNT] = {PT_SECTION_INBOUND, PT_SECTION_BACKEND,
                                                    PT_SECTION_OUTBOUND, PT_SECTION_ON_ERROR};

/* ------------------------------------------------------------------ values */

bool pt_policy_same_scope(const struct pt_polctx *pc, const struct pt_node *entry)
{
    struct pt_node *w = pt_node_get(entry, "workspace");
    const char *ew = w && w->kind == PT_N_SCALAR && !w->null ? w->str : "";
    return !strcmp(ew, pc->workspace ? pc->workspace : "");
}

/* The named value called `name` in the document's own scope, or NULL: an
   id wins over a displayName wherever the two are listed. */
static const struct pt_node *named_value(struct pt_polctx *pc, const char *name, size_t nl)
{
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; pc->named_values && i < pc->named_values->n; i++) {
            struct pt_node *nv = pc->named_values->items[i];
            struct pt_node *k = pt_node_get(nv, pass ? "displayName" : "id"), *v = pt_node_get(nv, "value");
            if (pt_policy_same_scope(pc, nv) && v && v->kind == PT_N_SCALAR && k && k->kind == PT_N_SCALAR &&
                k->len == nl && !memcmp(k->str, name, nl))
                return nv;
        }
    return NULL;
}

static bool is_secret(const struct pt_node *nv)
{
    const struct pt_node *s = pt_node_get(nv, "secret");
    return s && s->kind == PT_N_SCALAR && !s->null && !strcasecmp(s->str, "true");
}

/* True when the text between {{ and }} could be a named value's id: what
   cannot (spaces, quotes, Mustache's #/>, JSON) is text, left as written. */
static bool could_be_name(const char *s, size_t n)
{
    if (n == 0 || n > 256)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("-_.~", s[i]))
            return false;
    return true;
}

/* A Liquid template (set-body template="liquid") writes {{ value }} itself. */
static bool in_liquid_template(const struct pt_node *n)
{
    const struct pt_node *t = n->parent ? pt_node_get(n->parent, "template") : NULL;
    return t && t->kind == PT_N_SCALAR && !strcasecmp(t->str, "liquid");
}

struct near_name {
    const char *id;
    int d;
};

static int by_distance(const void *a, const void *b)
{
    const struct near_name *x = a, *y = b;
    return x->d != y->d ? x->d - y->d : strcmp(x->id, y->id);
}

/* "unknown named value 'x'", with the named values of the scope that exist,
   the closest first (only the document's own scope: a workspace learns no
   other scope's names). */
static void unknown_named_value(struct pt_polctx *pc, struct pt_node *n, const char *name, size_t nl)
{
    int count = pc->named_values ? pc->named_values->n : 0, k = 0;
    struct near_name *all = calloc((size_t)(count ? count : 1), sizeof(*all));
    for (int i = 0; all && i < count; i++) {
        struct pt_node *nv = pc->named_values->items[i];
        struct pt_node *id = pt_node_get(nv, "id");
        if (!pt_policy_same_scope(pc, nv) || !id || id->kind != PT_N_SCALAR)
            continue;
        all[k].id = id->str;
        all[k++].d = pt_str_distance((pt_str){name, nl}, (pt_str){id->str, id->len});
    }
    if (all)
        qsort(all, (size_t)k, sizeof(*all), by_distance);
    char list[600];
    size_t ll = 0;
    list[0] = '\0';
    enum { SHOWN = 8 };
    for (int i = 0; i < k && i < SHOWN && ll + 1 < sizeof(list); i++) {
        int w = snprintf(list + ll, sizeof(list) - ll, "%s'%s'", i ? ", " : "", all[i].id);
        if (w > 0)
            ll = PT_MIN(ll + (size_t)w, sizeof(list) - 1);
    }
    if (k > SHOWN && ll + 1 < sizeof(list))
        snprintf(list + ll, sizeof(list) - ll, " and %d more", k - SHOWN);
    if (k)
        pt_node_error(pc->errs, n, "unknown named value '%.*s' (named values: %s)", (int)nl, name, list);
    else
        pt_node_error(pc->errs, n, "unknown named value '%.*s' (no named values are defined%s)", (int)nl,
                      name, pc->workspace && *pc->workspace ? " in this workspace" : "");
    free(all);
}

/* Replaces {{name}} with named values of the document's own scope (a
   workspace's documents never see the service's named values, secret or
   not, nor another workspace's); NULL (error reported) when one is unknown.
   Text that only looks like a reference is kept: braces around what cannot
   be an id, an unclosed {{, and unknown names in a Liquid template. */
static char *substitute(struct pt_polctx *pc, struct pt_node *n, const char *text, bool *secret)
{
    if (!strstr(text, "{{"))
        return (char *)text;
    struct pt_buf out; /* in the document's pool, as the result */
    pt_buf_init(&out, pc->pool, strlen(text) + 64);
    const char *p = text;
    int count = 0;
    bool liquid = in_liquid_template(n);
    while (*p) {
        const char *open = strstr(p, "{{");
        if (!open) {
            pt_buf_add(&out, p, strlen(p));
            break;
        }
        const char *close = strstr(open + 2, "}}");
        size_t nl = close ? (size_t)(close - open - 2) : 0;
        const struct pt_node *nv = close ? named_value(pc, open + 2, nl) : NULL;
        const char *val = nv ? pt_node_get(nv, "value")->str : NULL;
        if (!val && (!close || liquid || !could_be_name(open + 2, nl))) {
            pt_buf_add(&out, p, (size_t)(open + 2 - p)); /* text: keep the braces, look on */
            p = open + 2;
            continue;
        }
        if (!val) {
            unknown_named_value(pc, n, open + 2, nl);
            return NULL;
        }
        if (++count > 1000) {
            pt_node_error(pc->errs, n, "more than 1000 named value references in one value");
            return NULL;
        }
        if (secret && is_secret(nv))
            *secret = true;
        pt_buf_add(&out, p, (size_t)(open - p));
        pt_buf_add(&out, val, strlen(val));
        p = close + 2;
    }
    return pt_pool_strndup(pc->pool, out.p ? out.p : "", out.n);
}

static char *substitute_named(struct pt_polctx *pc, struct pt_node *n, const char *text)
{
    return substitute(pc, n, text, NULL);
}

const char *pt_policy_text(struct pt_polctx *pc, struct pt_node *n)
{
    if (!n || n->kind != PT_N_SCALAR)
        return NULL;
    return substitute_named(pc, n, n->null ? "" : n->str);
}

/* The text between "@(" and ")" (or "@{" and "}"), NULL with an error
   when the closing bracket is missing. */
static const char *expr_body(struct pt_polctx *pc, struct pt_node *n, const char *text, size_t *len)
{
    size_t l = strlen(text);
    char close = text[1] == '(' ? ')' : '}';
    if (text[l - 1] != close) {
        pt_node_error(pc->errs, n, "expression starting with '@%c' must end with '%c'", text[1], close);
        return NULL;
    }
    *len = l - 3;
    return text + 2;
}

struct pt_value *pt_policy_value_compile(struct pt_polctx *pc, struct pt_node *n)
{
    if (n->kind != PT_N_SCALAR) {
        pt_node_error(pc->errs, n, "expected a value, found %s", pt_node_kind_name(n));
        return NULL;
    }
    const char *raw = n->null ? "" : n->str;
    bool expr = strlen(raw) >= 3 && raw[0] == '@' && (raw[1] == '(' || raw[1] == '{');
    char err[1024];
    size_t rl = 0;
    /* the expression as written is checked: its messages echo {{name}}, never
       what a named value (a secret among them) inserts */
    if (expr) {
        const char *body = expr_body(pc, n, raw, &rl);
        if (!body)
            return NULL;
        if (!pt_exprlint_check(body, rl, raw[1] == '{', err, sizeof(err))) {
            pt_node_error(pc->errs, n, "expression: %s", err);
            return NULL;
        }
    }
    bool secret = false;
    const char *text = substitute(pc, n, raw, &secret);
    if (!text)
        return NULL;
    if (!expr && strlen(text) >= 3 && text[0] == '@' && (text[1] == '(' || text[1] == '{')) {
        /* a named value holds the whole expression (as in APIM, named values come first): checked as
           inserted, its text not echoed when it is a secret's */
        expr = true;
        const char *body = expr_body(pc, n, text, &rl);
        if (!body)
            return NULL;
        if (!pt_exprlint_check(body, rl, text[1] == '{', err, sizeof(err))) {
            if (secret)
                pt_node_error(pc->errs, n,
                              "expression: the expression the named values of '%s' insert is not Lua (a "
                              "secret named value's text is not shown)",
                              raw);
            else
                pt_node_error(pc->errs, n, "expression (as the named values of '%s' insert it): %s", raw,
                              err);
            return NULL;
        }
    }
    struct pt_value *v = pt_pool_calloc(pc->pool, sizeof(*v));
    v->node = n;
    v->text = text;
    v->len = strlen(text);
    if (expr) {
        size_t len = 0;
        const char *body = expr_body(pc, n, text, &len);
        if (!body)
            return NULL;
        v->is_block = text[1] == '{';
        v->text = pt_pool_strndup(pc->pool, body, len);
        v->len = len;
        char chunk[512];
        pt_node_where(n, chunk, sizeof(chunk));
        int id = pt_expr_add(pc->exprs, v->text, v->len, v->is_block, chunk, err, sizeof(err));
        if (id < 0) {
            /* Lua quotes the text near a syntax error: not a secret's */
            if (secret)
                pt_node_error(pc->errs, n,
                              "expression: '%s' does not compile once its named values are inserted "
                              "(a secret named value's text is not shown)",
                              raw);
            else
                pt_node_error(pc->errs, n, "expression: %s", err);
            return NULL;
        }
        v->expr = id;
    }
    return v;
}

/* ------------------------------------------------------------- validation */

static bool scalar_is_bool(const struct pt_node *n)
{
    static const char *const words[] = {"true", "false", "True", "False", "TRUE", "FALSE"};
    for (size_t i = 0; i < PT_ARRAY_LEN(words); i++)
        if (!strcmp(n->str, words[i]))
            return true;
    return false;
}

static bool is_expr_text(const char *s)
{
    return s[0] == '@' && (s[1] == '(' || s[1] == '{');
}

static bool validate_attrs(struct pt_polctx *pc, struct pt_node *map, const struct pt_attr_def *attrs,
                           const char *what);

static bool validate_value_at(struct pt_polctx *pc, struct pt_node *v, const struct pt_attr_def *a,
                              bool substituted);

/* Checks one attribute value against its definition. */
static bool validate_value(struct pt_polctx *pc, struct pt_node *v, const struct pt_attr_def *a)
{
    return validate_value_at(pc, v, a, false);
}

/* ... substituted: v holds the text after named values (not replaced again). */
static bool validate_value_at(struct pt_polctx *pc, struct pt_node *v, const struct pt_attr_def *a,
                              bool substituted)
{
    if (a->type == PT_ATTR_POLICIES)
        return true; /* statement lists are checked when they are parsed */
    if (a->type == PT_ATTR_ELEMENT) {
        if (a->flags & PT_ATTR_MULTI && v->kind == PT_N_SEQ) {
            bool ok = true;
            for (int i = 0; i < v->n; i++) {
                struct pt_attr_def one = *a;
                one.flags &= ~(unsigned)PT_ATTR_MULTI;
                ok &= validate_value(pc, v->items[i], &one);
            }
            return ok;
        }
        if (v->kind == PT_N_SCALAR) {
            for (const struct pt_attr_def *c = a->children; c && c->name; c++)
                if (c->flags & PT_ATTR_SCALAR)
                    return validate_value(pc, v, c);
            if (v->null) /* an element without attributes: `forward-request:` */
                return validate_attrs(pc, v, a->children, a->name);
            pt_node_error(pc->errs, v, "'%s' expects a map of attributes", a->name);
            return false;
        }
        return validate_attrs(pc, v, a->children, a->name);
    }
    if (v->kind == PT_N_SEQ) {
        if (!(a->flags & PT_ATTR_MULTI)) {
            pt_node_error(pc->errs, v, "'%s' takes one value, not a list", a->name);
            return false;
        }
        bool ok = true;
        for (int i = 0; i < v->n; i++) {
            struct pt_attr_def one = *a;
            one.flags &= ~(unsigned)PT_ATTR_MULTI;
            ok &= validate_value(pc, v->items[i], &one);
        }
        return ok;
    }
    if (v->kind != PT_N_SCALAR) {
        pt_node_error(pc->errs, v, "'%s' expects a value, found %s", a->name, pt_node_kind_name(v));
        return false;
    }
    /* the copy below holds the value as it will be used: not substituted again */
    bool secret = false;
    const char *t =
        !substituted && !v->null && strstr(v->str, "{{") ? substitute(pc, v, v->str, &secret) : v->str;
    if (!t)
        return false;
    if (strcmp(t, v->str)) {
        /* named values first: what they expand to is what must be valid
           (text that only looks like a reference stays as it is) */
        struct pt_node copy = *v;
        copy.str = (char *)t;
        copy.len = strlen(t);
        copy.quoted = true; /* a named value is a string: only its text counts */
        if (a->type == PT_ATTR_BOOL)
            copy.quoted = false;
        struct pt_errors *outer = pc->errs, local = {0};
        pc->errs = &local;
        bool ok = validate_value_at(pc, &copy, a, true);
        pc->errs = outer;
        /* the messages quote the inserted text: not when a secret is in it */
        for (int i = 0; i < local.n; i++)
            if (secret)
                pt_node_errors_copy(outer, &local, i,
                                    "'%s' is not valid once the named values of '%s' are inserted (a secret "
                                    "named value's text is not shown)",
                                    a->name, v->str);
            else
                pt_node_errors_copy(outer, &local, i, "%s (after named values: '%s')", local.msgs[i], t);
        pt_node_errors_clear(&local);
        return ok;
    }
    bool expr = !v->null && is_expr_text(v->str);
    if (expr && !(a->flags & PT_ATTR_EXPR)) {
        pt_node_error(pc->errs, v, "'%s' does not accept an expression", a->name);
        return false;
    }
    if (expr)
        return true; /* checked when compiled */
    switch (a->type) {
    case PT_ATTR_INT: {
        char *end;
        errno = 0;
        long long x = strtoll(v->str, &end, 10);
        if (v->null || errno || *end || end == v->str) {
            pt_node_error(pc->errs, v, "'%s' expects an integer, found '%s'", a->name, v->str);
            return false;
        }
        if ((a->min || a->max) && (x < a->min || x > a->max)) {
            pt_node_error(pc->errs, v, "'%s' must be between %lld and %lld", a->name, (long long)a->min,
                          (long long)a->max);
            return false;
        }
        return true;
    }
    case PT_ATTR_BOOL:
        if (v->null || v->quoted || !scalar_is_bool(v)) {
            pt_node_error(pc->errs, v, "'%s' expects true or false, found '%s'", a->name, v->str);
            return false;
        }
        return true;
    case PT_ATTR_ENUM:
        for (int i = 0; a->enums[i]; i++)
            if (!strcmp(a->enums[i], v->str))
                return true;
        {
            char all[256] = "";
            size_t k = 0;
            for (int i = 0; a->enums[i] && k < sizeof(all) - 2; i++)
                k += (size_t)snprintf(all + k, sizeof(all) - k, "%s%s", i ? ", " : "", a->enums[i]);
            pt_node_error(pc->errs, v, "'%s' must be one of: %s (found '%s')", a->name, all, v->str);
        }
        return false;
    default:
        return true;
    }
}

/* Checks a statement's (or element's) attribute map against attrs. */
static bool validate_attrs(struct pt_polctx *pc, struct pt_node *map, const struct pt_attr_def *attrs,
                           const char *what)
{
    bool ok = true;
    const struct pt_attr_def *shorthand = NULL;
    for (const struct pt_attr_def *d = attrs; d && d->name; d++)
        if (d->flags & PT_ATTR_SCALAR)
            shorthand = d;
    if (map->kind == PT_N_SCALAR && map->null) {
        /* no attributes given */
    } else if (map->kind == PT_N_SCALAR && shorthand) {
        /* `set-method: POST`: the bare value is the attribute marked SCALAR */
        ok = validate_value(pc, map, shorthand);
    } else if (map->kind != PT_N_MAP) {
        pt_node_error(pc->errs, map, "'%s' expects a map of attributes, found %s", what,
                      pt_node_kind_name(map));
        return false;
    } else {
        for (int i = 0; i < map->n; i++) {
            struct pt_node *k = pt_node_key(map, i), *v = pt_node_val(map, i);
            if (!strcmp(k->str, "id") && v->kind == PT_N_SCALAR)
                continue; /* every policy takes an id (context.lastError.policyId) */
            const struct pt_attr_def *a = NULL;
            for (const struct pt_attr_def *d = attrs; d && d->name; d++)
                if (!strcmp(d->name, k->str))
                    a = d;
            if (!a) {
                char all[512] = "";
                size_t n = 0;
                for (const struct pt_attr_def *d = attrs; d && d->name && n < sizeof(all) - 2; d++)
                    n += (size_t)snprintf(all + n, sizeof(all) - n, "%s%s", n ? ", " : "", d->name);
                if (n)
                    pt_node_error(pc->errs, k, "'%s' has no attribute '%s' (allowed: %s)", what, k->str, all);
                else
                    pt_node_error(pc->errs, k, "'%s' takes no attributes (found '%s')", what, k->str);
                ok = false;
                continue;
            }
            ok &= validate_value(pc, v, a);
        }
    }
    for (const struct pt_attr_def *d = attrs; d && d->name; d++)
        if ((d->flags & PT_ATTR_REQUIRED) && !(map->kind == PT_N_MAP && pt_node_get(map, d->name)) &&
            !(d == shorthand && map->kind == PT_N_SCALAR && !map->null)) {
            pt_node_error(pc->errs, map, "'%s' needs the attribute '%s'", what, d->name);
            ok = false;
        }
    return ok;
}

/* -------------------------------------------------------------- compiling */

struct pt_element {
    struct pt_compile *c;
    struct pt_node *node;
    const struct pt_attr_def *def;
};

/* The attribute node named `name`, honouring the scalar shorthand. */
static struct pt_node *attr_node(struct pt_node *attrs, const struct pt_attr_def *defs, const char *name)
{
    if (!attrs)
        return NULL;
    if (attrs->kind == PT_N_MAP)
        return pt_node_get(attrs, name);
    if (attrs->kind == PT_N_SCALAR && !attrs->null)
        for (const struct pt_attr_def *d = defs; d && d->name; d++)
            if ((d->flags & PT_ATTR_SCALAR) && !strcmp(d->name, name))
                return attrs;
    return NULL;
}

static const struct pt_attr_def *find_def(const struct pt_attr_def *defs, const char *name)
{
    for (const struct pt_attr_def *d = defs; d && d->name; d++)
        if (!strcmp(d->name, name))
            return d;
    return NULL;
}

const struct pt_policy_def *pt_policy_compile_def(pt_compile *c)
{
    return c->def;
}

struct pt_node *pt_policy_compile_attr(pt_compile *c, const char *name)
{
    return attr_node(c->attrs, c->def->attrs, name);
}

struct pt_polctx *pt_policy_compile_ctx(pt_compile *c)
{
    return c->pc;
}

static const char *c_attr_literal(pt_compile *c, const char *name)
{
    struct pt_node *n = attr_node(c->attrs, c->def->attrs, name);
    if (!n) {
        const struct pt_attr_def *d = find_def(c->def->attrs, name);
        return d ? d->def : NULL; /* the schema's default */
    }
    if (n->kind != PT_N_SCALAR)
        return NULL;
    if (is_expr_text(n->str))
        return NULL;
    const char *s = substitute_named(c->pc, n, n->null ? "" : n->str);
    return s;
}

static pt_value *c_attr_value(pt_compile *c, const char *name)
{
    struct pt_node *n = attr_node(c->attrs, c->def->attrs, name);
    if (!n) {
        const struct pt_attr_def *d = find_def(c->def->attrs, name);
        if (!d || !d->def)
            return NULL;
        struct pt_value *v = pt_pool_calloc(c->pc->pool, sizeof(*v)); /* the default, a literal */
        v->text = d->def;
        v->len = strlen(d->def);
        return v;
    }
    if (n->kind != PT_N_SCALAR)
        return NULL;
    return pt_policy_value_compile(c->pc, n);
}

static int values_of(struct pt_polctx *pc, struct pt_node *n, pt_value ***out)
{
    if (!n) {
        *out = NULL;
        return 0;
    }
    int cnt = n->kind == PT_N_SEQ ? n->n : 1;
    pt_value **arr = pt_pool_calloc(pc->pool, sizeof(*arr) * (size_t)(cnt ? cnt : 1));
    for (int i = 0; i < cnt; i++) {
        arr[i] = pt_policy_value_compile(pc, n->kind == PT_N_SEQ ? n->items[i] : n);
        if (!arr[i])
            return -1;
    }
    *out = arr;
    return cnt;
}

static int c_attr_values(pt_compile *c, const char *name, pt_value ***out)
{
    return values_of(c->pc, attr_node(c->attrs, c->def->attrs, name), out);
}

static int64_t c_attr_int(pt_compile *c, const char *name, int64_t def)
{
    const char *s = c_attr_literal(c, name);
    if (!s || !*s)
        return def;
    return strtoll(s, NULL, 10);
}

static int c_attr_bool(pt_compile *c, const char *name, int def)
{
    const char *s = c_attr_literal(c, name);
    if (!s || !*s)
        return def;
    return tolower((unsigned char)s[0]) == 't';
}

static int c_attr_enum(pt_compile *c, const char *name, int def)
{
    const struct pt_attr_def *d = find_def(c->def->attrs, name);
    const char *s = c_attr_literal(c, name);
    if (!d || !s || !d->enums)
        return def;
    for (int i = 0; d->enums[i]; i++)
        if (!strcmp(d->enums[i], s))
            return i;
    return def;
}

static int c_attr_elements(pt_compile *c, const char *name, pt_element ***out)
{
    const struct pt_attr_def *d = find_def(c->def->attrs, name);
    struct pt_node *n = attr_node(c->attrs, c->def->attrs, name);
    *out = NULL;
    if (!n || !d)
        return 0;
    int cnt = n->kind == PT_N_SEQ ? n->n : 1;
    pt_element **arr = pt_pool_calloc(c->pc->pool, sizeof(*arr) * (size_t)cnt);
    for (int i = 0; i < cnt; i++) {
        arr[i] = pt_pool_calloc(c->pc->pool, sizeof(**arr));
        arr[i]->c = c;
        arr[i]->node = n->kind == PT_N_SEQ ? n->items[i] : n;
        arr[i]->def = d;
    }
    *out = arr;
    return cnt;
}

static const char *e_literal(pt_element *e, const char *name)
{
    struct pt_node *n = attr_node(e->node, e->def->children, name);
    if (!n || n->kind != PT_N_SCALAR || is_expr_text(n->str))
        return NULL;
    return substitute_named(e->c->pc, n, n->null ? "" : n->str);
}

static pt_value *e_value(pt_element *e, const char *name)
{
    struct pt_node *n = attr_node(e->node, e->def->children, name);
    if (!n || n->kind != PT_N_SCALAR)
        return NULL;
    return pt_policy_value_compile(e->c->pc, n);
}

static int e_values(pt_element *e, const char *name, pt_value ***out)
{
    return values_of(e->c->pc, attr_node(e->node, e->def->children, name), out);
}

static int e_elements(pt_element *e, const char *name, pt_element ***out)
{
    const struct pt_attr_def *d = find_def(e->def->children, name);
    struct pt_node *n = attr_node(e->node, e->def->children, name);
    *out = NULL;
    if (!n || !d)
        return 0;
    int cnt = n->kind == PT_N_SEQ ? n->n : 1;
    pt_element **arr = pt_pool_calloc(e->c->pc->pool, sizeof(*arr) * (size_t)cnt);
    for (int i = 0; i < cnt; i++) {
        arr[i] = pt_pool_calloc(e->c->pc->pool, sizeof(**arr));
        arr[i]->c = e->c;
        arr[i]->node = n->kind == PT_N_SEQ ? n->items[i] : n;
        arr[i]->def = d;
    }
    *out = arr;
    return cnt;
}

static void c_error(pt_compile *c, const char *attr, const char *fmt, ...) PT_PRINTF(3, 4);

/* The client certificate of ctx once its certificate and key are in (why NULL), or NULL after
   the compile error "why (where)". */
static void *client_cert_of(pt_compile *c, SSL_CTX *ctx, const char *why, const char *where)
{
    struct pt_polctx *pc = c->pc;
    if (ctx && !why && SSL_CTX_check_private_key(ctx) != 1)
        why = "the key does not match the certificate";
    if (!ctx || why) {
        c_error(c, NULL, "%s (%s)", why ? why : "no TLS context", where);
        if (ctx)
            SSL_CTX_free(ctx);
        ERR_clear_error();
        return NULL;
    }
    static _Atomic uint64_t serials;
    struct pt_clientcert *cc = pt_pool_calloc(pc->pool, sizeof(*cc));
    cc->ctx = ctx;
    cc->serial = atomic_fetch_add(&serials, 1) + 1;
    cc->next = pc->certs;
    pc->certs = cc;
    return cc;
}

/* A TLS client context for backends, or NULL with *why set. */
static SSL_CTX *backend_ctx(struct pt_polctx *pc, const char **why, char *buf, size_t size)
{
    struct pt_errors errs = {0};
    SSL_CTX *ctx = pt_tls_client_ctx(pc->ca_file, pc->verify, pc->tls, &errs);
    if (!ctx) {
        snprintf(buf, size, "%s", errs.n ? errs.msgs[0] : "no TLS context");
        *why = buf;
    }
    pt_node_errors_clear(&errs);
    return ctx;
}

static void *c_tls_client_cert(pt_compile *c, const char *cert, const char *key)
{
    struct pt_polctx *pc = c->pc;
    char cp[4096], kp[4096], where[8300], buf[512];
    snprintf(cp, sizeof(cp), "%s%s%s", cert[0] == '/' || !pc->base_dir ? "" : pc->base_dir,
             cert[0] == '/' || !pc->base_dir ? "" : "/", cert);
    snprintf(kp, sizeof(kp), "%s%s%s", key[0] == '/' || !pc->base_dir ? "" : pc->base_dir,
             key[0] == '/' || !pc->base_dir ? "" : "/", key);
    snprintf(where, sizeof(where), "%s, %s", cp, kp);
    const char *why = NULL;
    SSL_CTX *ctx = backend_ctx(pc, &why, buf, sizeof(buf));
    if (ctx && SSL_CTX_use_certificate_chain_file(ctx, cp) != 1)
        why = "the certificate cannot be loaded";
    else if (ctx && SSL_CTX_use_PrivateKey_file(ctx, kp, SSL_FILETYPE_PEM) != 1)
        why = "the key cannot be loaded";
    return client_cert_of(c, ctx, why, where);
}

/* Puts the PEM chain (leaf first) and key into ctx; NULL or why not. */
static const char *use_pem(SSL_CTX *ctx, const char *chain_pem, const char *key_pem)
{
    BIO *b = BIO_new_mem_buf(chain_pem, -1);
    X509 *leaf = PEM_read_bio_X509(b, NULL, NULL, NULL);
    const char *why =
        leaf && SSL_CTX_use_certificate(ctx, leaf) == 1 ? NULL : "the certificate cannot be loaded";
    X509_free(leaf);
    X509 *x;
    while (!why && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
        if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
            X509_free(x);
            why = "the certificate's chain cannot be loaded";
        }
    BIO_free(b);
    if (why)
        return why;
    b = BIO_new_mem_buf(key_pem, -1);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    why = k && SSL_CTX_use_PrivateKey(ctx, k) == 1 ? NULL : "the key cannot be loaded";
    EVP_PKEY_free(k);
    return why;
}

static void *c_tls_client_cert_pem(pt_compile *c, const char *chain_pem, const char *key_pem)
{
    char buf[512];
    const char *why = NULL;
    SSL_CTX *ctx = backend_ctx(c->pc, &why, buf, sizeof(buf));
    if (ctx && (!chain_pem || !key_pem))
        why = "a certificate with its private key is needed";
    else if (ctx)
        why = use_pem(ctx, chain_pem, key_pem);
    /* chain_pem is a stored certificate's own text (cert_find's answer): name it in errors */
    char where[300] = "stored certificate";
    for (int i = 0; c->pc->stored && i < c->pc->nstore_certs; i++)
        if (c->pc->stored[i].pem == chain_pem)
            snprintf(where, sizeof(where), "certificate '%s'", c->pc->stored[i].id);
    return client_cert_of(c, ctx, why, where);
}

/* Hex strings equal whatever their case, colons and spaces. */
static bool thumbprint_eq(const char *a, const char *b)
{
    for (;;) {
        while (*a == ':' || *a == ' ')
            a++;
        while (*b == ':' || *b == ' ')
            b++;
        if (!*a || !*b)
            return !*a && !*b;
        if (toupper((unsigned char)*a++) != toupper((unsigned char)*b++))
            return false;
    }
}

static const struct pt_stored_cert *c_cert_find(pt_compile *c, const char *attr, const char *id,
                                                const char *thumbprint, int index)
{
    struct pt_polctx *pc = c->pc;
    if (!pc->stored && pc->nstore_certs) {
        pc->stored = pt_pool_calloc(pc->pool, sizeof(*pc->stored) * (size_t)pc->nstore_certs);
        for (int i = 0; i < pc->nstore_certs; i++) {
            const struct pt_storecert_cf *s = &pc->store_certs[i];
            pc->stored[i] = (struct pt_stored_cert){
                s->id, s->thumbprint, s->chain_pem, s->key_pem, s->crl && *s->crl ? s->crl : NULL, s->ca};
        }
    }
    if (!id && !thumbprint)
        return index >= 0 && index < pc->nstore_certs ? &pc->stored[index] : NULL;
    /* Certificates are service-level, like the service's backends and named
       values: a workspace must not act under the service's TLS identity. */
    if (pc->workspace && *pc->workspace) {
        c_error(c, attr,
                "certificates are service-level: a workspace's policies cannot name certificate '%s'",
                id ? id : thumbprint);
        return NULL;
    }
    /* by thumbprint, a copy that has the key wins over one stored without it */
    const struct pt_stored_cert *found = NULL;
    for (int i = 0; i < pc->nstore_certs && !(found && found->key_pem); i++)
        if (id ? !strcmp(pc->stored[i].id, id) : thumbprint_eq(pc->stored[i].thumbprint, thumbprint))
            found = !found || pc->stored[i].key_pem ? &pc->stored[i] : found;
    if (found)
        return found;
    if (pc->certs_open) { /* checking the file alone: the certificate may be in the store; never run */
        struct pt_stored_cert *unseen = pt_pool_calloc(pc->pool, sizeof(*unseen));
        unseen->id = id ? id : "";
        unseen->thumbprint = thumbprint ? thumbprint : "";
        return unseen;
    }
    c_error(c, attr, "there is no certificate %s '%s' in the store (%d certificate%s)",
            id ? "with id" : "with thumbprint", id ? id : thumbprint, pc->nstore_certs,
            pc->nstore_certs == 1 ? "" : "s");
    return NULL;
}

static void c_error(pt_compile *c, const char *attr, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct pt_node *at = attr ? attr_node(c->attrs, c->def->attrs, attr) : NULL;
    if (attr)
        pt_node_error(c->pc->errs, at ? at : c->stmt->node, "%s: '%s': %s", c->def->name, attr, msg);
    else
        pt_node_error(c->pc->errs, c->stmt->node, "%s: %s", c->def->name, msg);
}

static void *c_alloc(pt_compile *c, size_t n)
{
    return pt_pool_calloc(c->pc->pool, n);
}

static int c_section(pt_compile *c)
{
    return c->section;
}

/* The compile-time half of the API table; pt_pipeline.c fills the rest. */
void pt_policy_fill_api(struct pt_api *a);
void pt_policy_fill_api(struct pt_api *a)
{
    a->attr_literal = c_attr_literal;
    a->attr_value = c_attr_value;
    a->attr_values = c_attr_values;
    a->attr_int = c_attr_int;
    a->attr_bool = c_attr_bool;
    a->attr_enum = c_attr_enum;
    a->attr_elements = c_attr_elements;
    a->elem_literal = e_literal;
    a->elem_value = e_value;
    a->elem_values = e_values;
    a->elem_elements = e_elements;
    a->tls_client_cert = c_tls_client_cert;
    a->tls_client_cert_pem = c_tls_client_cert_pem;
    a->cert_find = c_cert_find;
    a->compile_error = c_error;
    a->compile_alloc = c_alloc;
    a->compile_section = c_section;
}

/* ----------------------------------------------------------- statements */

static struct pt_block *parse_block(struct pt_polctx *pc, struct pt_node *list, int section, int depth,
                                    bool top, bool in_fragment);

struct pt_block *pt_policy_parse_block(pt_compile *c, struct pt_node *list)
{
    return parse_block(c->pc, list, c->section_index, c->depth + 1, false, c->in_fragment);
}

static void track(struct pt_polctx *pc, struct pt_stmt *s)
{
    pc->all = pt_pool_grow(pc->pool, pc->all, sizeof(*pc->all), &pc->capall, pc->nall + 1);
    pc->all[pc->nall++] = s;
}

/* Runs the definition's compile(): the plugins', Lua policies' and the core's
   own alike.  false when it refused (errors added). */
static bool compile_stmt(struct pt_polctx *pc, struct pt_stmt *s, struct pt_node *attrs, int section,
                         int depth, bool in_fragment)
{
    const struct pt_policy_def *def = s->def;
    if (!def->compile)
        return true;
    int before = pc->errs->n;
    struct pt_compile c = {pc, attrs, def, s, (int)section_bits[section], section, depth, in_fragment};
    if (def->compile(&pt_policy_api_table, &c, &s->instance) == 0 && pc->errs->n == before)
        return true;
    if (pc->errs->n == before)
        pt_node_error(pc->errs, s->node, "policy '%s' refused this configuration", def->name);
    if (def->free && s->instance) /* what a failed compile had built so far */
        def->free(s->instance);
    s->instance = NULL;
    return false;
}

static struct pt_stmt *parse_stmt(struct pt_polctx *pc, struct pt_node *n, int section, int depth, bool top,
                                  bool in_fragment, struct pt_block *into)
{
    if (depth > 32) {
        pt_node_error(pc->errs, n, "policies nested too deeply");
        return NULL;
    }
    if (n->kind == PT_N_SCALAR && !n->null && !strcmp(n->str, "base")) {
        if (in_fragment) {
            pt_node_error(pc->errs, n, "a policy fragment cannot contain 'base'");
            return NULL;
        }
        if (!top) {
            pt_node_error(pc->errs, n, "'base' may only appear directly in a section");
            return NULL;
        }
        struct pt_stmt *s = pt_pool_calloc(pc->pool, sizeof(*s));
        s->kind = PT_ST_BASE;
        s->name = "base";
        s->node = n;
        return s;
    }
    if (n->kind != PT_N_MAP || n->n != 1) {
        pt_node_error(pc->errs, n, "a statement is a one-key map {policy-name: {attributes}} or 'base'");
        return NULL;
    }
    const char *name = pt_node_key(n, 0)->str;
    struct pt_node *attrs = pt_node_val(n, 0);
    if (!strcmp(name, "include-fragment")) {
        /* inlined here: the fragment's statements join the enclosing list */
        if (in_fragment) {
            pt_node_error(pc->errs, n, "a policy fragment cannot include another fragment");
            return NULL;
        }
        struct pt_node *fid = attrs->kind == PT_N_MAP ? pt_node_get(attrs, "fragment-id") : NULL;
        if (!fid || fid->kind != PT_N_SCALAR || fid->null) {
            pt_node_error(pc->errs, attrs, "include-fragment needs the attribute 'fragment-id'");
            return NULL;
        }
        for (int i = 0; attrs->kind == PT_N_MAP && i < attrs->n; i++) {
            const char *k = pt_node_key(attrs, i)->str;
            if (strcmp(k, "fragment-id") && strcmp(k, "id")) {
                pt_node_error(pc->errs, pt_node_key(attrs, i), "'include-fragment' has no attribute '%s'", k);
                return NULL;
            }
        }
        struct pt_node *frag = NULL;
        for (int i = 0; pc->fragments && i < pc->fragments->n; i++) {
            struct pt_node *f = pc->fragments->items[i];
            struct pt_node *id = pt_node_get(f, "id");
            if (id && id->kind == PT_N_SCALAR && !strcmp(id->str, fid->str) && pt_policy_same_scope(pc, f))
                frag = f;
        }
        if (!frag) {
            pt_node_error(pc->errs, fid, "unknown policy fragment '%s'", fid->str);
            return NULL;
        }
        struct pt_node *list = pt_node_get(frag, "value");
        if (!list)
            list = pt_node_get(frag, "policies");
        if (!list)
            return NULL; /* reported when fragments are validated */
        struct pt_block *b = parse_block(pc, list, section, depth + 1, false, true);
        if (!b)
            return NULL;
        for (int i = 0; i < b->n; i++) {
            into->s = pt_pool_grow(pc->pool, into->s, sizeof(*into->s), &(int){into->n}, into->n + 1);
            into->s[into->n++] = b->s[i];
        }
        return NULL; /* nothing more to add */
    }
    const struct pt_policy_def *def = pt_registry_find(pc->reg, name);
    if (!def) {
        pt_node_error(pc->errs, pt_node_key(n, 0), "unknown policy '%s'", name);
        return NULL;
    }
    if (!(def->sections & section_bits[section])) {
        pt_node_error(pc->errs, pt_node_key(n, 0), "policy '%s' is not allowed in the %s section", name,
                      pt_msg_section_names[section]);
        return NULL;
    }
    if (!(def->scopes & pc->scope)) {
        char allowed[96] = "";
        const char *here = "this";
        for (int i = 0; i < PT_SCOPE_COUNT; i++) {
            if (pc->scope == 1 << i)
                here = pt_msg_scope_names[i].label;
            if (def->scopes & (1u << i))
                snprintf(allowed + strlen(allowed), sizeof(allowed) - strlen(allowed), "%s%s",
                         *allowed ? ", " : "", pt_msg_scope_names[i].label);
        }
        pt_node_error(pc->errs, pt_node_key(n, 0), "policy '%s' is not allowed at %s scope (only: %s)", name,
                      here, allowed);
        return NULL;
    }
    if (!(def->flags & PT_POLICY_CORE_SYNTAX) && !validate_attrs(pc, attrs, def->attrs, name))
        return NULL;
    struct pt_stmt *s = pt_pool_calloc(pc->pool, sizeof(*s));
    s->kind = PT_ST_POLICY;
    s->def = def;
    s->name = def->name;
    s->scope = pc->scope;
    s->workspace = pc->workspace && *pc->workspace ? pt_pool_strdup(pc->pool, pc->workspace) : NULL;
    s->node = n;
    struct pt_node *idn =
        attrs->kind == PT_N_MAP && !(def->flags & PT_POLICY_CORE_SYNTAX) ? pt_node_get(attrs, "id") : NULL;
    s->id = idn && idn->kind == PT_N_SCALAR ? idn->str : NULL;
    if (!(def->flags & PT_POLICY_CORE_SYNTAX))
        for (const struct pt_attr_def *a = def->attrs; a && a->name; a++)
            if (a->type == PT_ATTR_POLICIES) {
                struct pt_node *list = attrs->kind == PT_N_MAP ? pt_node_get(attrs, a->name) : NULL;
                if (!list)
                    continue;
                struct pt_block *b = parse_block(pc, list, section, depth + 1, false, in_fragment);
                if (!b)
                    return NULL;
                s->kind = PT_ST_WRAP;
                s->body = *b;
            }
    if (!compile_stmt(pc, s, attrs, section, depth, in_fragment))
        return NULL;
    if (s->kind == PT_ST_POLICY || s->kind == PT_ST_WRAP)
        track(pc, s);
    return s;
}

static struct pt_block *parse_block(struct pt_polctx *pc, struct pt_node *list, int section, int depth,
                                    bool top, bool in_fragment)
{
    struct pt_block *b = pt_pool_calloc(pc->pool, sizeof(*b));
    if (list->kind == PT_N_SCALAR && list->null)
        return b; /* `inbound:` with nothing: an empty section */
    if (list->kind != PT_N_SEQ) {
        pt_node_error(pc->errs, list, "expected a list of statements, found %s", pt_node_kind_name(list));
        return NULL;
    }
    bool ok = true;
    int cap = 0;
    for (int i = 0; i < list->n; i++) {
        struct pt_node *item = list->items[i];
        int before = pc->errs->n, had = b->n;
        struct pt_stmt *s = parse_stmt(pc, item, section, depth, top, in_fragment, b);
        if (pc->errs->n > before) {
            ok = false;
            continue;
        }
        cap = b->n;                      /* parse_stmt may have appended a fragment's statements */
        for (int j = had; j < b->n; j++) /* ... which count as written here */
            for (int k = 0; k < j && b->s[j]->def && (b->s[j]->def->flags & PT_POLICY_ONCE_PER_SECTION); k++)
                if (b->s[k]->def == b->s[j]->def) {
                    pt_node_error(pc->errs, item,
                                  "policy '%s' may appear only once per section (one comes from "
                                  "the fragment included here)",
                                  b->s[j]->name);
                    ok = false;
                    break;
                }
        if (!s)
            continue;
        if (s->def && (s->def->flags & PT_POLICY_ONCE_PER_SECTION))
            for (int k = 0; k < b->n; k++)
                if (b->s[k]->def == s->def) {
                    pt_node_error(pc->errs, item, "policy '%s' may appear only once per section", s->name);
                    ok = false;
                }
        b->s = pt_pool_grow(pc->pool, b->s, sizeof(*b->s), &cap, b->n + 1);
        b->s[b->n++] = s;
    }
    return ok ? b : NULL;
}

struct pt_doc *pt_policy_doc(struct pt_polctx *pc, struct pt_node *policies, int scope)
{
    struct pt_doc *d = pt_pool_calloc(pc->pool, sizeof(*d));
    d->scope = scope;
    if (!policies)
        return d;
    if (policies->kind == PT_N_SCALAR && policies->null)
        return d;
    if (policies->kind != PT_N_MAP) {
        pt_node_error(pc->errs, policies,
                      "policies: expected a map with inbound, backend, outbound, on-error");
        return NULL;
    }
    pc->scope = scope;
    bool ok = true;
    for (int i = 0; i < policies->n; i++) {
        const char *k = pt_node_key(policies, i)->str;
        int sec = -1;
        for (int j = 0; j < PT_SEC_COUNT; j++)
            if (!strcmp(k, pt_msg_section_names[j]))
                sec = j;
        if (sec < 0) {
            pt_node_error(pc->errs, pt_node_key(policies, i),
                          "unknown section '%s' (expected inbound, backend, outbound, on-error)", k);
            ok = false;
            continue;
        }
        d->sec[sec] = parse_block(pc, pt_node_val(policies, i), sec, 0, true, false);
        if (!d->sec[sec])
            ok = false;
    }
    return ok ? d : NULL;
}

/* Checks a fragment that may be unused: names, attributes, no base, no nesting. */
static void check_fragment(struct pt_polctx *pc, struct pt_node *frag);

void pt_policy_check_fragment(struct pt_polctx *pc, struct pt_node *frag)
{
    /* a fragment's statements are read in its own scope */
    const char *saved = pc->workspace;
    struct pt_node *w = pt_node_get(frag, "workspace");
    pc->workspace = w && w->kind == PT_N_SCALAR && !w->null ? w->str : NULL;
    check_fragment(pc, frag);
    pc->workspace = saved;
}

static void check_fragment(struct pt_polctx *pc, struct pt_node *frag)
{
    struct pt_node *list = pt_node_get(frag, "value");
    if (!list)
        list = pt_node_get(frag, "policies");
    if (!list)
        return;
    if (list->kind != PT_N_SEQ) {
        pt_node_error(pc->errs, list, "a fragment's value is a list of statements");
        return;
    }
    for (int i = 0; i < list->n; i++) {
        struct pt_node *n = list->items[i];
        if (n->kind == PT_N_SCALAR && !n->null && !strcmp(n->str, "base")) {
            pt_node_error(pc->errs, n, "a policy fragment cannot contain 'base'");
            continue;
        }
        if (n->kind != PT_N_MAP || n->n != 1) {
            pt_node_error(pc->errs, n, "a statement is a one-key map {policy-name: {attributes}}");
            continue;
        }
        const char *name = pt_node_key(n, 0)->str;
        if (!strcmp(name, "include-fragment")) {
            pt_node_error(pc->errs, n, "a policy fragment cannot include another fragment");
            continue;
        }
        const struct pt_policy_def *def = pt_registry_find(pc->reg, name);
        if (!def) {
            pt_node_error(pc->errs, pt_node_key(n, 0), "unknown policy '%s'", name);
            continue;
        }
        if (!(def->flags & PT_POLICY_CORE_SYNTAX))
            validate_attrs(pc, pt_node_val(n, 0), def->attrs, name);
    }
}

/* ------------------------------------------------------------- flattening */

/* The forward-request a backend section gets when no scope has one: compiled
   once per generation, shared by every operation. */
static struct pt_stmt *default_forward(struct pt_polctx *pc)
{
    if (pc->default_forward)
        return pc->default_forward;
    const struct pt_policy_def *def = pt_registry_find(pc->reg, "forward-request");
    struct pt_stmt *s = pt_pool_calloc(pc->pool, sizeof(*s));
    s->kind = PT_ST_POLICY;
    s->def = def;
    s->name = "forward-request";
    s->scope = PT_SCOPE_GLOBAL;
    struct pt_node empty = {0};
    empty.kind = PT_N_SCALAR;
    empty.null = true;
    empty.str = "";
    s->node = &empty;
    compile_stmt(pc, s, &empty, PT_SEC_BACKEND, 0, false);
    s->node = NULL;
    pc->default_forward = s;
    return s;
}

static void append(struct pt_polctx *pc, struct pt_block *out, int *cap, struct pt_stmt *s)
{
    out->s = pt_pool_grow(pc->pool, out->s, sizeof(*out->s), cap, out->n + 1);
    out->s[out->n++] = s;
}

static void expand(struct pt_polctx *pc, struct pt_doc *const *docs, int ndocs, int level, int sec,
                   struct pt_block *out, int *cap, struct pt_stmt **fwd)
{
    if (level >= ndocs)
        return; /* base at global scope: nothing */
    const struct pt_doc *d = docs[level];
    const struct pt_block *b = d ? d->sec[sec] : NULL;
    if (!b) {
        if (level == ndocs - 1) {
            /* the global document without this section: its default */
            if (sec == PT_SEC_BACKEND) {
                if (!*fwd)
                    *fwd = default_forward(pc);
                append(pc, out, cap, *fwd);
            }
            return;
        }
        expand(pc, docs, ndocs, level + 1, sec, out, cap, fwd);
        return;
    }
    for (int i = 0; i < b->n; i++) {
        if (b->s[i]->kind == PT_ST_BASE)
            expand(pc, docs, ndocs, level + 1, sec, out, cap, fwd);
        else
            append(pc, out, cap, b->s[i]);
    }
}

/* A policy allowed once per section must also be there once after `base`
   has spliced the scopes together (an API's [base, forward-request] under
   a global default forward-request would call the backend twice). */
static bool check_once(struct pt_polctx *pc, const struct pt_block *b, int sec)
{
    bool ok = true;
    for (int i = 0; i < b->n; i++) {
        struct pt_stmt *s = b->s[i];
        if (!s->def || !(s->def->flags & PT_POLICY_ONCE_PER_SECTION))
            continue;
        for (int k = 0; k < i; k++) {
            struct pt_stmt *first = b->s[k];
            if (first->def != s->def)
                continue;
            ok = false;
            struct pt_stmt *at = s->node ? s : first;
            if (!at->dup_reported && at->node) {
                at->dup_reported = true;
                const struct pt_stmt *other = at == s ? first : s;
                PT_ASSERT(other->scope); /* every statement comes from a scope's document */
                pt_node_error(
                    pc->errs, pt_node_key(at->node, 0),
                    "'%s' may appear once per section, but base makes the %s section hold two (%s%s%s)",
                    s->name, pt_msg_section_names[sec],
                    other->node ? "the other comes from the " : "the other is the default of the ",
                    pt_msg_scope_of(other->scope)->label,
                    other->node ? " scope" : " scope, whose document has no backend section");
            }
            break;
        }
    }
    return ok;
}

bool pt_policy_flatten(struct pt_polctx *pc, struct pt_doc *const *docs, int ndocs, struct pt_pipeline *out)
{
    memset(out, 0, sizeof(*out));
    struct pt_stmt *fwd = NULL;
    bool ok = true;
    for (int sec = 0; sec < PT_SEC_COUNT; sec++) {
        int cap = 0;
        expand(pc, docs, ndocs, 0, sec, &out->sec[sec], &cap, &fwd);
        ok &= check_once(pc, &out->sec[sec], sec);
    }
    return ok;
}

void pt_policy_release(struct pt_polctx *pc)
{
    for (int i = 0; i < pc->nall; i++) {
        struct pt_stmt *s = pc->all[i];
        if (s->def && s->def->free && s->instance)
            s->def->free(s->instance);
        s->instance = NULL;
    }
    pc->nall = 0;
    for (struct pt_clientcert *cc = pc->certs; cc; cc = cc->next)
        SSL_CTX_free(cc->ctx);
    pc->certs = NULL;
}
