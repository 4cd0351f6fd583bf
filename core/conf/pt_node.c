/*
 * pt_node -- YAML to tree, with positions; shared error reporting.
 */
#include "conf/pt_node.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <yaml.h>

_Static_assert(sizeof(struct pt_node) <= 64, "a node grew past 64 bytes: see its declaration");

#define MAX_NODES 2000000
#define MAX_DEPTH 64
#define MAX_FILE (64u << 20)

/* Appends m (taken) with a copy of target (may be NULL). */
static void errors_push(struct pt_errors *e, char *m, const char *target)
{
    if (!m)
        return;
    if (e->n == e->cap) {
        int ncap = e->cap ? e->cap * 2 : 8;
        char **nm = realloc(e->msgs, sizeof(char *) * (size_t)ncap);
        if (nm)
            e->msgs = nm;
        char **nt = nm ? realloc(e->targets, sizeof(char *) * (size_t)ncap) : NULL;
        if (nt)
            e->targets = nt;
        if (!nm || !nt) {
            free(m);
            return;
        }
        e->cap = ncap;
    }
    e->targets[e->n] = target && *target ? strdup(target) : NULL;
    e->msgs[e->n++] = m;
}

void pt_node_errors_add(struct pt_errors *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *m = NULL;
    if (vasprintf(&m, fmt, ap) < 0)
        m = NULL;
    va_end(ap);
    errors_push(e, m, NULL);
}

void pt_node_errors_copy(struct pt_errors *e, const struct pt_errors *from, int i, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *m = NULL;
    if (vasprintf(&m, fmt, ap) < 0)
        m = NULL;
    va_end(ap);
    errors_push(e, m, from->targets ? from->targets[i] : NULL);
}

void pt_node_errors_clear(struct pt_errors *e)
{
    for (int i = 0; i < e->n; i++) {
        free(e->msgs[i]);
        free(e->targets[i]);
    }
    free(e->msgs);
    free(e->targets);
    e->msgs = e->targets = NULL;
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

void pt_node_path(const struct pt_node *n, char *buf, size_t size)
{
    if (size == 0)
        return;
    buf[0] = '\0';
    node_path(n, buf, size);
}

/*
 * The words of a location. A location is a list of steps from the root:
 * the container, the position in it (a pair's index in a map) and, for a
 * list item, the item (to read an entity's id from; NULL while the parser
 * has not finished it). Entities in the lists below are named by their id
 * ("api 'orders'"); a policy document's statements by section, position
 * and name ("inbound[1] set-header value"); anything else keeps its key
 * path ("management.listen").
 */
struct step {
    const struct pt_node *in;
    int index;
    const struct pt_node *item;
};

static const char *const entity_lists[][2] = {
    {"apis", "api"},
    {"operations", "operation"},
    {"products", "product"},
    {"groups", "group"},
    {"users", "user"},
    {"subscriptions", "subscription"},
    {"namedValues", "named value"},
    {"schemas", "schema"},
    {"policyFragments", "policy fragment"},
    {"backends", "backend"},
    {"workspaces", "workspace"},
    {"loggers", "logger"},
    {"apiVersionSets", "version set"},
    {"gateways", "gateway"},
    {"certificates", "certificate"},
};

struct words {
    char *buf;
    size_t size, k;
    bool part; /* the current part has text */
    bool sep;  /* a " › " is owed before the next text */
};

static void say(struct words *w, const char *fmt, ...) PT_PRINTF(2, 3);

static void say(struct words *w, const char *fmt, ...)
{
    if (w->k + 1 >= w->size)
        return;
    if (w->sep) {
        w->sep = false;
        say(w, " \u203a ");
    }
    va_list ap;
    va_start(ap, fmt);
    w->k += pt_str_vfmt(w->buf + w->k, w->size - w->k, fmt, ap);
    va_end(ap);
    w->part = true;
}

/* " › " before the next part, if one comes. */
static void next_part(struct words *w)
{
    if (w->part)
        w->sep = true;
    w->part = false;
}

static const char *entity_name(const char *list)
{
    for (size_t i = 0; i < PT_ARRAY_LEN(entity_lists); i++)
        if (!strcmp(list, entity_lists[i][0]))
            return entity_lists[i][1];
    return NULL;
}

/* U+202A-202E and U+2066-2069 turn the direction of the text that follows:
   an echoed name could make a message read otherwise than it is. */
static bool is_bidi_control(const unsigned char *p, size_t n)
{
    return n >= 3 && p[0] == 0xe2 &&
           ((p[1] == 0x80 && p[2] >= 0xaa && p[2] <= 0xae) || (p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9));
}

/* A map key as shown in a place: control and direction characters written
   as \xNN and \u{NNNN}, and cut at a character after 64 bytes. */
static const char *shown_key(const char *key, char *out, size_t size)
{
    enum { LONGEST = 64 };
    size_t k = 0;
    const unsigned char *p = (const unsigned char *)key;
    size_t n = strlen(key);
    for (size_t i = 0; i < n && k + 16 < size;) {
        if (i >= LONGEST && (p[i] & 0xc0) != 0x80) {
            memcpy(out + k, "\u2026", 3); /* "…" */
            k += 3;
            break;
        }
        if (p[i] < 0x20 || p[i] == 0x7f)
            k += (size_t)snprintf(out + k, size - k, "\\x%02x", p[i++]);
        else if (is_bidi_control(p + i, n - i)) {
            unsigned cp = ((p[i] & 0x0fu) << 12) | ((p[i + 1] & 0x3fu) << 6) | (p[i + 2] & 0x3fu);
            k += (size_t)snprintf(out + k, size - k, "\\u{%04x}", cp);
            i += 3;
        } else
            out[k++] = (char)p[i++];
    }
    out[k] = '\0';
    return out;
}

/* The id an entity item declares (printable, short), or NULL. */
static const char *entity_id(const struct pt_node *item)
{
    const struct pt_node *id = item && item->kind == PT_N_MAP ? pt_node_get(item, "id") : NULL;
    if (!id)
        id = item && item->kind == PT_N_MAP ? pt_node_get(item, "name") : NULL;
    if (!id || id->kind != PT_N_SCALAR || id->null || id->len == 0 || id->len > 80)
        return NULL;
    for (size_t i = 0; i < id->len; i++)
        if ((unsigned char)id->str[i] < 0x20 || id->str[i] == '\'' ||
            is_bidi_control((const unsigned char *)id->str + i, id->len - i))
            return NULL;
    return id->str;
}

static bool is_section(const char *key)
{
    return !strcmp(key, "inbound") || !strcmp(key, "backend") || !strcmp(key, "outbound") ||
           !strcmp(key, "on-error");
}

/* Returns true when an entity or a statement was named. */
static bool describe(const struct step *s, int k, struct words *w)
{
    bool statements = false; /* inside a policy document (or a fragment's statements) */
    const char *entity = NULL;
    for (int i = 0; i < k; i++) {
        const struct pt_node *c = s[i].in;
        if (c->kind == PT_N_SEQ) {
            say(w, "[%d]", s[i].index);
            continue;
        }
        const char *key = c->items[2 * s[i].index]->str;
        const char *what = statements ? NULL : entity_name(key);
        const char *id = what && i + 1 < k && s[i + 1].in->kind == PT_N_SEQ ? entity_id(s[i + 1].item) : NULL;
        if (id) {
            next_part(w);
            say(w, "%s '%s'", what, id);
            next_part(w);
            entity = what;
            i++;
            continue;
        }
        if (!statements && i == 0 && is_section(key)) { /* a policy document by itself */
            statements = true;
            say(w, "%s", key);
            continue;
        }
        if (!statements && i + 1 < k &&
            (!strcmp(key, "policies") ||
             (entity && !strcmp(entity, "policy fragment") && !strcmp(key, "value")))) {
            statements = true;
            if (!entity)
                say(w, "global policy");
            next_part(w);
            if (strcmp(key, "policies")) /* a fragment's list of statements */
                say(w, "%s", key);
            continue;
        }
        char shown[256];
        say(w, "%s%s", !w->part ? "" : statements ? " " : ".", shown_key(key, shown, sizeof(shown)));
    }
    return statements || entity;
}

/* The steps from the root to n (at most max; the deepest ones kept). */
static int tree_steps(const struct pt_node *n, struct step *s, int max)
{
    int k = 0;
    for (const struct pt_node *c = n; c && c->parent; c = c->parent)
        k++;
    int skip = k > max ? k - max : 0, i = PT_MIN(k, max);
    for (const struct pt_node *c = n; c && c->parent; c = c->parent) {
        if (skip) {
            skip--;
            continue;
        }
        s[--i] = (struct step){c->parent, c->index, c};
    }
    return PT_MIN(k, max);
}

void pt_node_where(const struct pt_node *n, char *buf, size_t size)
{
    if (size == 0)
        return;
    buf[0] = '\0';
    if (!n)
        return;
    struct step s[MAX_DEPTH + 2];
    int k = tree_steps(n, s, (int)PT_ARRAY_LEN(s));
    struct words w = {buf, size, 0, false, false};
    if (n->file && n->line > 0) {
        /* the position says where; the words are added when they name
           an entity or a statement (a setting's key is on that line) */
        char words[400];
        struct words d = {words, sizeof(words), 0, false, false};
        words[0] = '\0';
        bool named = describe(s, k, &d);
        say(&w, "%s:%d:%d%s%s", n->file, n->line, n->col, named ? ": " : "", named ? words : "");
        return;
    }
    describe(s, k, &w);
    if (w.k == 0)
        say(&w, "(document)");
}

void pt_node_error(struct pt_errors *e, const struct pt_node *node, const char *fmt, ...)
{
    char where[512], path[512];
    pt_node_where(node, where, sizeof(where));
    /* the target: the position in a document that has a name (a file, an
       applied request), else the machine path */
    if (node && node->file && node->line > 0)
        snprintf(path, sizeof(path), "%s:%d:%d", node->file, node->line, node->col);
    else
        pt_node_path(node, path, sizeof(path));
    va_list ap;
    va_start(ap, fmt);
    char *m = NULL;
    if (vasprintf(&m, fmt, ap) < 0)
        m = NULL;
    va_end(ap);
    char *full = NULL;
    if (asprintf(&full, "%s: %s", where, m ? m : "(out of memory)") < 0)
        full = NULL;
    free(m);
    errors_push(e, full, path);
}

struct pt_node *pt_node_get(const struct pt_node *map, const char *key)
{
    if (!map || map->kind != PT_N_MAP)
        return NULL;
    for (int i = 0; i < map->n; i++)
        if (pt_node_same_key(pt_node_key(map, i)->str, key))
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

/*
 * The loader reads libyaml's events one at a time and builds the tree as
 * they come, so limits hold while reading, not after: a document nested
 * deeper than MAX_DEPTH is refused at the level that passes it (loading the
 * whole document first cost quadratic time on 100,000 '[' -- 22 s for
 * 200 KB), and one with more than MAX_NODES nodes, aliases counted as the
 * copies they stand for, at the node that passes it.  Duplicate keys are
 * found by sorting, so a large flat map stays O(n log n).
 */

struct frame {
    struct pt_node *n;
    int start;  /* where its items begin on the builder's stack of children */
    int raw;    /* items added (maps: keys and values) */
    long first; /* node count when the frame opened (its anchor's size) */
    int height; /* deepest child subtree below it */
    const char *anchor;
};

struct anchor {
    const char *name;
    struct pt_node *node;
    long size;
    int height;
};

/* The keys of a tree repeat in every entity ("id", "method", "urlTemplate"...): each distinct key is
   copied into the pool once per tree (a file parsed, a tree made from JSON) and its nodes share the
   copy (node strings are never written).  Open addressing; once the table is three quarters full,
   keys are copied as before.  A key holding a NUL is never matched (its copy keeps every byte). */
#define KEY_SLOTS 4096

struct keys {
    const char *slot[KEY_SLOTS];
    int n;
};

static char *key_copy(struct pt_pool *pool, struct keys *keys, const char *k, size_t len)
{
    if (!keys)
        return pt_pool_strndup(pool, k, len);
    size_t i = (size_t)pt_hash(k, len, false) & (KEY_SLOTS - 1);
    for (; keys->slot[i]; i = (i + 1) & (KEY_SLOTS - 1))
        if (strlen(keys->slot[i]) == len && !memcmp(keys->slot[i], k, len))
            return (char *)keys->slot[i];
    char *c = pt_pool_strndup(pool, k, len);
    if (c && keys->n < KEY_SLOTS / 4 * 3) {
        keys->slot[i] = c;
        keys->n++;
    }
    return c;
}

struct builder {
    struct pt_pool *pool;
    const char *file;
    struct pt_errors *errs;
    struct frame st[MAX_DEPTH + 2];
    int depth;
    long count;
    struct anchor *anchors;
    int nanchors, capanchors;
    struct pt_node *root;
    /* The children of the open maps and lists, each frame's after its parent's: a node's items are
       copied into the pool at its end, exactly as many (grown by doubling in the pool, the arrays
       left behind took about as much again as the ones kept). */
    struct pt_node **kids;
    int nkids, capkids;
    struct keys *keys; /* NULL: every key copied */
    bool failed;
};

static void fail_at(struct builder *b, yaml_mark_t m, const char *what)
{
    if (!b->failed)
        pt_node_errors_add(b->errs, "%s:%lu:%lu: %s", b->file, (unsigned long)m.line + 1,
                           (unsigned long)m.column + 1, what);
    b->failed = true;
}

static struct pt_node *new_node(struct builder *b, yaml_mark_t m, enum pt_node_kind kind)
{
    if (++b->count > MAX_NODES) {
        fail_at(b, m, "document too large or too deeply nested");
        return NULL;
    }
    struct pt_node *n = pt_pool_calloc(b->pool, sizeof(*n));
    if (!n) {
        fail_at(b, m, "out of memory");
        return NULL;
    }
    n->kind = kind;
    n->file = b->file;
    n->line = (int)m.line + 1;
    n->col = (int)m.column + 1;
    return n;
}

static void remember(struct builder *b, const char *name, struct pt_node *n, long size, int height)
{
    if (!name)
        return;
    if (b->nanchors == b->capanchors) {
        int cap = b->capanchors ? b->capanchors * 2 : 8;
        struct anchor *na = realloc(b->anchors, sizeof(*na) * (size_t)cap);
        if (!na) {
            b->failed = true;
            return;
        }
        b->anchors = na;
        b->capanchors = cap;
    }
    b->anchors[b->nanchors++] = (struct anchor){name, n, size, height};
}

/* Attaches a finished child to the open frame (or makes it the root). */
/* Pushes c on the stack of children; when the stack moves, the open nodes' items follow it. */
static bool push_kid(struct builder *b, struct pt_node *c)
{
    if (b->nkids == b->capkids) {
        int cap = b->capkids ? b->capkids * 2 : 256;
        struct pt_node **nk = realloc(b->kids, sizeof(*nk) * (size_t)cap);
        if (!nk)
            return false;
        b->kids = nk;
        b->capkids = cap;
        for (int d = 0; d < b->depth; d++)
            if (b->st[d].raw)
                b->st[d].n->items = b->kids + b->st[d].start;
    }
    b->kids[b->nkids++] = c;
    return true;
}

/* The node of a frame that ends gets its own copy of its items, taken off the stack. */
static bool settle_items(struct builder *b, const struct frame *f)
{
    struct pt_node **items = pt_pool_alloc(b->pool, sizeof(*items) * (size_t)(f->raw ? f->raw : 1));
    if (!items)
        return false;
    if (f->raw)
        memcpy(items, b->kids + f->start, sizeof(*items) * (size_t)f->raw);
    else
        items[0] = NULL;
    f->n->items = items;
    b->nkids = f->start;
    return true;
}

static void attach(struct builder *b, struct pt_node *c, yaml_mark_t m, int height)
{
    if (b->depth == 0) {
        b->root = c;
        return;
    }
    struct frame *f = &b->st[b->depth - 1];
    struct pt_node *p = f->n;
    if (p->kind == PT_N_MAP && f->raw % 2 == 0 && c->kind != PT_N_SCALAR) {
        fail_at(b, m, "map keys must be plain strings");
        return;
    }
    if (!push_kid(b, c)) {
        fail_at(b, m, "out of memory");
        return;
    }
    p->items = b->kids + f->start; /* until the node ends (see push_kid) */
    p->items[f->raw++] = c;
    c->parent = p;
    c->index = p->kind == PT_N_MAP ? (f->raw - 1) / 2 : f->raw - 1;
    p->n = p->kind == PT_N_MAP ? f->raw / 2 : f->raw;
    if (height + 1 > f->height)
        f->height = height + 1;
}

/* Writes where the next child of the open frames will sit, in the words of
   pt_node_where ("api 'orders' › inbound[1] ip-filter address"), from the
   builder's stack: the open maps and lists are not linked to their parents
   yet. */
static void open_path(const struct builder *b, char *buf, size_t size)
{
    struct step s[MAX_DEPTH + 2];
    int k = 0;
    for (int i = 0; i < b->depth && k < (int)PT_ARRAY_LEN(s); i++) {
        const struct frame *f = &b->st[i];
        if (f->n->kind == PT_N_MAP) {
            if (f->raw % 2 == 0) /* a key: its own text is the name */
                break;
            s[k++] = (struct step){f->n, (f->raw - 1) / 2, NULL};
        } else
            s[k++] = (struct step){f->n, f->raw, i + 1 < b->depth ? b->st[i + 1].n : NULL};
    }
    struct words w = {buf, size, 0, false, false};
    buf[0] = '\0';
    describe(s, k, &w);
}

/*
 * A scalar with an embedded NUL ("\0" or "\u0000" in a double-quoted
 * scalar) is refused here, once for every YAML reader (configuration file,
 * management bodies, imports): the rest of the program reads strings up
 * to their first NUL, and the stored JSON copy of such a string does not
 * load again, so what was validated is not what would run.
 */
static bool refuse_nul(struct builder *b, yaml_mark_t m, const struct pt_node *n)
{
    if (!memchr(n->str, '\0', n->len))
        return false;
    char path[256];
    open_path(b, path, sizeof(path));
    bool is_key = b->depth > 0 && b->st[b->depth - 1].n->kind == PT_N_MAP && b->st[b->depth - 1].raw % 2 == 0;
    char what[400];
    if (is_key)
        snprintf(what, sizeof(what), "%s%sa map key must not contain a NUL character", path,
                 *path ? ": " : "");
    else
        snprintf(what, sizeof(what), "%s%smust not contain a NUL character", *path ? path : "",
                 *path ? ": " : "");
    fail_at(b, m, what);
    return true;
}

/* A copy of an anchored subtree for an alias (each alias counts in full). */
static struct pt_node *copy_tree(struct builder *b, const struct pt_node *src, yaml_mark_t m)
{
    struct pt_node *n = new_node(b, m, src->kind);
    if (!n)
        return NULL;
    *n = *src;
    n->parent = NULL;
    if (src->kind == PT_N_SCALAR)
        return n;
    int cnt = src->kind == PT_N_MAP ? 2 * src->n : src->n;
    n->items = pt_pool_calloc(b->pool, sizeof(*n->items) * (size_t)(cnt ? cnt : 1));
    if (!n->items) {
        fail_at(b, m, "out of memory");
        return NULL;
    }
    for (int i = 0; i < cnt; i++) {
        n->items[i] = copy_tree(b, src->items[i], m);
        if (!n->items[i])
            return NULL;
        n->items[i]->parent = n;
    }
    return n;
}

static int key_order(const void *x, const void *y)
{
    const struct pt_node *a = *(const struct pt_node *const *)x, *c = *(const struct pt_node *const *)y;
    int r = strcmp(a->str, c->str);
    return r ? r : (a->index > c->index) - (a->index < c->index);
}

/* The first key (in document order) that repeats an earlier one, or NULL. */
static const struct pt_node *duplicate_key(struct builder *b, const struct pt_node *map)
{
    if (map->n < 2)
        return NULL;
    if (map->n <= 8) {
        for (int i = 1; i < map->n; i++)
            for (int j = 0; j < i; j++)
                if (!strcmp(pt_node_key(map, i)->str, pt_node_key(map, j)->str))
                    return pt_node_key(map, i);
        return NULL;
    }
    struct pt_node **keys = malloc(sizeof(*keys) * (size_t)map->n);
    if (!keys)
        return NULL;
    for (int i = 0; i < map->n; i++)
        keys[i] = map->items[2 * i];
    qsort(keys, (size_t)map->n, sizeof(*keys), key_order);
    const struct pt_node *dup = NULL;
    for (int i = 1; i < map->n; i++)
        if (!strcmp(keys[i]->str, keys[i - 1]->str) && (!dup || keys[i]->index < dup->index))
            dup = keys[i];
    free(keys);
    (void)b;
    return dup;
}

static void on_event(struct builder *b, yaml_event_t *ev)
{
    yaml_mark_t m = ev->start_mark;
    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        struct pt_node *n = new_node(b, m, PT_N_SCALAR);
        if (!n)
            return;
        n->len = ev->data.scalar.length;
        bool is_key =
            b->depth > 0 && b->st[b->depth - 1].n->kind == PT_N_MAP && b->st[b->depth - 1].raw % 2 == 0;
        n->str = is_key ? key_copy(b->pool, b->keys, (const char *)ev->data.scalar.value, n->len)
                        : pt_pool_strndup(b->pool, (const char *)ev->data.scalar.value, n->len);
        n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        if (refuse_nul(b, m, n))
            return;
        if (!n->quoted && (n->len == 0 || strcmp(n->str, "~") == 0 || strcmp(n->str, "null") == 0 ||
                           strcmp(n->str, "Null") == 0 || strcmp(n->str, "NULL") == 0))
            n->null = true;
        if (b->depth > MAX_DEPTH) {
            fail_at(b, m, "document too large or too deeply nested");
            return;
        }
        attach(b, n, m, 0);
        if (ev->data.scalar.anchor)
            remember(b, pt_pool_strdup(b->pool, (const char *)ev->data.scalar.anchor), n, 1, 0);
        return;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        if (b->depth >= MAX_DEPTH + 1) {
            fail_at(b, m, "document too large or too deeply nested");
            return;
        }
        bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
        struct pt_node *n = new_node(b, m, seq ? PT_N_SEQ : PT_N_MAP);
        if (!n)
            return;
        const yaml_char_t *anc = seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
        b->st[b->depth++] = (struct frame){
            n, b->nkids, 0, b->count, 0, anc ? pt_pool_strdup(b->pool, (const char *)anc) : NULL};
        return;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT: {
        struct frame f = b->st[--b->depth];
        if (f.n->kind == PT_N_MAP) {
            const struct pt_node *dup = duplicate_key(b, f.n);
            if (dup) {
                pt_node_error(b->errs, dup, "duplicate key '%s'", dup->str);
                b->failed = true;
                return;
            }
        }
        if (!settle_items(b, &f)) {
            fail_at(b, m, "out of memory");
            return;
        }
        attach(b, f.n, f.n->line ? (yaml_mark_t){0, (size_t)f.n->line - 1, (size_t)f.n->col - 1} : m,
               f.height);
        remember(b, f.anchor, f.n, b->count - f.first + 1, f.height);
        return;
    }
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        const struct anchor *a = NULL;
        for (int i = b->nanchors - 1; i >= 0 && !a; i--)
            if (!strcmp(b->anchors[i].name, name))
                a = &b->anchors[i];
        if (!a) {
            fail_at(b, m, "unknown or unfinished anchor");
            return;
        }
        if (b->count + a->size > MAX_NODES || b->depth + a->height > MAX_DEPTH) {
            fail_at(b, m, "document too large or too deeply nested");
            return;
        }
        struct pt_node *c = copy_tree(b, a->node, m);
        if (c)
            attach(b, c, m, a->height);
        return;
    }
    default:
        return;
    }
}

struct pt_node *pt_node_parse_yaml(struct pt_pool *pool, const char *file, const char *text, size_t len,
                                   struct pt_errors *errs)
{
    yaml_parser_t parser;
    const char *fname = pt_pool_strdup(pool, file);
    if (!yaml_parser_initialize(&parser)) {
        pt_node_errors_add(errs, "%s: out of memory", file);
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    struct builder b = {.pool = pool, .file = fname, .errs = errs, .keys = calloc(1, sizeof(struct keys))};
    int docs = 0;
    bool done = false, second = false;
    while (!done && !b.failed) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            pt_node_errors_add(errs, "%s:%lu:%lu: %s%s%s", file, (unsigned long)parser.problem_mark.line + 1,
                               (unsigned long)parser.problem_mark.column + 1,
                               parser.problem ? parser.problem : "YAML syntax error",
                               parser.context ? " " : "", parser.context ? parser.context : "");
            b.failed = true;
            break;
        }
        if (ev.type == YAML_STREAM_END_EVENT)
            done = true;
        else if (ev.type == YAML_DOCUMENT_START_EVENT)
            second = ++docs > 1;
        else if (second && ev.type != YAML_DOCUMENT_END_EVENT) {
            /* a second document in the same stream is almost always a mistake */
            fail_at(&b, ev.start_mark, "only one YAML document is allowed");
        } else
            on_event(&b, &ev);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    free(b.anchors);
    free(b.kids);
    free(b.keys);
    if (b.failed)
        return NULL;
    if (!b.root) {
        /* an empty file is an empty map */
        struct pt_node *root = pt_pool_calloc(pool, sizeof(*root));
        root->kind = PT_N_MAP;
        root->file = fname;
        root->line = root->col = 1;
        return root;
    }
    return b.root;
}

struct pt_node *pt_node_load_file(struct pt_pool *pool, const char *path, struct pt_errors *errs)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        pt_node_errors_add(errs, "%s:1:1: cannot open: %s", path, strerror(errno));
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
                pt_node_errors_add(errs, "%s:1:1: file larger than %u MiB", path, MAX_FILE >> 20);
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
        pt_node_errors_add(errs, "%s:1:1: cannot read file", path);
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
#define PUT(s)                                                                                               \
    do {                                                                                                     \
        size_t k_ = strlen(s);                                                                               \
        if (*len + k_ + 1 > *cap) {                                                                          \
            *cap = (*len + k_ + 1) * 2;                                                                      \
            *buf = realloc(*buf, *cap);                                                                      \
        }                                                                                                    \
        memcpy(*buf + *len, s, k_);                                                                          \
        *len += k_;                                                                                          \
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

/* ------------------------------------------------------------------- JSON */

static bool looks_integer(const char *s)
{
    const char *p = s + (*s == '-');
    if (!*p || strlen(p) > 18)
        return false;
    for (; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return !(s[0] == '0' && s[1]) && !(s[0] == '-' && s[1] == '0');
}

static bool looks_real(const char *s)
{
    char *end;
    if (!*s || strchr(s, 'x') || strchr(s, 'X') || strpbrk(s, "nN"))
        return false;
    strtod(s, &end);
    return *end == '\0' && strpbrk(s, ".eE");
}

json_t *pt_node_to_json(const struct pt_node *n)
{
    switch (n->kind) {
    case PT_N_MAP: {
        json_t *o = json_object();
        for (int i = 0; i < n->n; i++)
            json_object_set_new(o, pt_node_key(n, i)->str, pt_node_to_json(pt_node_val(n, i)));
        return o;
    }
    case PT_N_SEQ: {
        json_t *a = json_array();
        for (int i = 0; i < n->n; i++)
            json_array_append_new(a, pt_node_to_json(n->items[i]));
        return a;
    }
    default:
        if (n->null)
            return json_null();
        if (!n->quoted) {
            if (!strcmp(n->str, "true") || !strcmp(n->str, "True") || !strcmp(n->str, "TRUE"))
                return json_true();
            if (!strcmp(n->str, "false") || !strcmp(n->str, "False") || !strcmp(n->str, "FALSE"))
                return json_false();
            if (looks_integer(n->str))
                return json_integer(strtoll(n->str, NULL, 10));
            if (looks_real(n->str))
                return json_real(strtod(n->str, NULL));
        }
        return json_stringn(n->str, n->len);
    }
}

/* Two 64-bit lanes over 8-byte words, each with its own multiplier and rotation, finished by a
   mixing step each: not a cryptographic hash (the file is its operator's), a checksum whose
   collisions for different entities are as unlikely as chance makes them. */
static inline uint64_t digest_fin(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

static inline void digest_word(struct pt_node_digest *d, uint64_t w)
{
    d->a = ((d->a ^ w) * 0x9e3779b97f4a7c15ULL);
    d->a = (d->a << 31) | (d->a >> 33);
    d->b = ((d->b + w) * 0xc2b2ae3d27d4eb4fULL);
    d->b ^= d->b >> 29;
}

static void digest_bytes(struct pt_node_digest *d, const char *p, size_t n)
{
    digest_word(d, n); /* the length first: "ab"+"c" is not "a"+"bc" */
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        digest_word(d, w);
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, p, n);
        digest_word(d, w);
    }
}

static bool skipped(const char *key, const char *const *skip)
{
    for (int i = 0; skip && skip[i]; i++)
        if (!strcmp(key, skip[i]))
            return true;
    return false;
}

static void digest_node(struct pt_node_digest *d, const struct pt_node *n, const char *const *skip)
{
    /* a tag per node: its kind, and for a scalar the two flags that change its JSON type */
    digest_word(d, (uint64_t)n->kind | (uint64_t)n->quoted << 8 | (uint64_t)n->null << 9 | 0xd1ULL << 56);
    switch (n->kind) {
    case PT_N_MAP: {
        uint64_t kept = 0;
        for (int i = 0; i < n->n; i++) {
            const struct pt_node *k = pt_node_key(n, i);
            if (skipped(k->str, skip))
                continue;
            kept++;
            digest_bytes(d, k->str, strlen(k->str)); /* as pt_node_to_json reads a key */
            digest_node(d, pt_node_val(n, i), NULL);
        }
        digest_word(d, kept);
        break;
    }
    case PT_N_SEQ:
        for (int i = 0; i < n->n; i++)
            digest_node(d, n->items[i], NULL);
        digest_word(d, (uint64_t)n->n);
        break;
    default:
        digest_bytes(d, n->str, n->len);
    }
}

void pt_node_digest_end(struct pt_node_digest *d)
{
    d->a = digest_fin(d->a ^ d->b);
    d->b = digest_fin(d->b + d->a);
}

void pt_node_digest(const struct pt_node *n, const char *const *skip, struct pt_node_digest *d)
{
    digest_node(d, n, skip);
    pt_node_digest_end(d);
}

void pt_node_digest_text(struct pt_node_digest *d, const char *s)
{
    digest_bytes(d, s ? s : "", s ? strlen(s) : 0);
}

static struct pt_node *from_json(struct pt_pool *pool, struct keys *keys, const json_t *j,
                                 struct pt_node *parent, int index)
{
    struct pt_node *n = pt_pool_calloc(pool, sizeof(*n));
    n->parent = parent;
    n->index = index;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        n->kind = PT_N_MAP;
        size_t cnt = json_object_size(j);
        n->items = pt_pool_calloc(pool, sizeof(*n->items) * (cnt ? 2 * cnt : 1));
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            struct pt_node *kn = pt_pool_calloc(pool, sizeof(*kn));
            kn->kind = PT_N_SCALAR;
            kn->quoted = true;
            kn->len = strlen(k);
            kn->str = key_copy(pool, keys, k, kn->len);
            kn->parent = n;
            kn->index = n->n;
            n->items[2 * n->n] = kn;
            n->items[2 * n->n + 1] = from_json(pool, keys, v, n, n->n);
            n->n++;
        }
        return n;
    }
    case JSON_ARRAY: {
        n->kind = PT_N_SEQ;
        size_t cnt = json_array_size(j);
        n->items = pt_pool_calloc(pool, sizeof(*n->items) * (cnt ? cnt : 1));
        for (size_t i = 0; i < cnt; i++)
            n->items[n->n++] = from_json(pool, keys, json_array_get(j, i), n, (int)i);
        return n;
    }
    case JSON_STRING:
        n->kind = PT_N_SCALAR;
        n->quoted = true;
        n->len = json_string_length(j);
        n->str = pt_pool_strndup(pool, json_string_value(j), n->len);
        return n;
    case JSON_INTEGER:
        n->kind = PT_N_SCALAR;
        n->str = pt_pool_printf(pool, "%lld", (long long)json_integer_value(j));
        n->len = strlen(n->str);
        return n;
    case JSON_REAL:
        n->kind = PT_N_SCALAR;
        n->str = pt_pool_printf(pool, "%.17g", json_real_value(j));
        n->len = strlen(n->str);
        return n;
    case JSON_TRUE:
    case JSON_FALSE:
        n->kind = PT_N_SCALAR;
        n->str = json_is_true(j) ? "true" : "false";
        n->len = strlen(n->str);
        return n;
    default:
        n->kind = PT_N_SCALAR;
        n->null = true;
        n->str = "";
        return n;
    }
}

struct pt_node *pt_node_from_json(struct pt_pool *pool, const json_t *j, struct pt_node *parent, int index)
{
    struct keys *keys = calloc(1, sizeof(*keys)); /* NULL: every key copied */
    struct pt_node *n = from_json(pool, keys, j, parent, index);
    free(keys);
    return n;
}

/* ---------------------------------------------------- NUL in JSON bodies */

/* Appends ".key" or "[i]" to buf at *k (truncated paths stay terminated). */
static void path_push(char *buf, size_t size, size_t *k, const char *key, size_t index)
{
    if (*k + 1 >= size)
        return;
    int w = key ? snprintf(buf + *k, size - *k, "%s%s", *k ? "." : "", key)
                : snprintf(buf + *k, size - *k, "[%zu]", index);
    if (w > 0)
        *k = *k + (size_t)w < size ? *k + (size_t)w : size - 1;
}

/* Depth is bounded by jansson's own nesting limit on what it decodes. */
static bool nul_walk(const json_t *j, char *buf, size_t size, size_t k)
{
    buf[k < size ? k : size - 1] = '\0';
    if (json_is_string(j))
        return memchr(json_string_value(j), '\0', json_string_length(j)) != NULL;
    if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++) {
            size_t k2 = k;
            path_push(buf, size, &k2, NULL, i);
            if (nul_walk(json_array_get(j, i), buf, size, k2))
                return true;
        }
        return false;
    }
    if (json_is_object(j)) {
        const char *key;
        size_t klen;
        json_t *v;
        json_object_keylen_foreach((json_t *)j, key, klen, v)
        {
            size_t k2 = k;
            path_push(buf, size, &k2, key, 0);
            if (memchr(key, '\0', klen) || nul_walk(v, buf, size, k2))
                return true;
        }
    }
    return false;
}

bool pt_node_json_nul_path(const json_t *j, char *buf, size_t size)
{
    char one[1];
    if (size == 0) {
        buf = one;
        size = 1;
    }
    if (!j || !nul_walk(j, buf, size, 0)) {
        buf[0] = '\0'; /* the walk leaves the last path it tried */
        return false;
    }
    if (!buf[0])
        snprintf(buf, size, "(document)");
    return true;
}
