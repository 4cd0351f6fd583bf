/*
 * pt_import_openapi -- OpenAPI 2.0 / 3.0.x / 3.1 into a stored API definition.
 *
 * The document (JSON or YAML, at most 4 MB, nesting at most 64 levels) is
 * read into jansson and walked once.  Every place that can fail or warn has
 * a location: the file ("" for the document itself, else a path under
 * base_dir) and a JSON pointer, kept in a `struct loc` that follows $refs,
 * so an error inside a referenced parameter names where that parameter is.
 *
 * Named schemas (components.schemas / definitions) become the document of
 * one schema entry; any other schema a $ref points to (another file, or a
 * place outside the named schemas) is copied in under a generated name and
 * the $ref rewritten to it.  Pulled-in schemas go through a work list with
 * a memo keyed by file and pointer, so recursive schemas stay $refs and
 * nothing recurses deeper than the documents themselves.  Every node
 * copied counts against a work budget (PT_IMPORT_OPENAPI_MAX_WORK).
 */
#include "conf/pt_import_openapi.h"

#include "base/pt_pool.h"
#include "conf/pt_node.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#define MAX_HOPS 32
#define MAX_WARNINGS 1000
#define ID_MAX 76
#define DISPLAY_MAX 300
#define LOC_MAX 1024
#define MAX_PARAMS 1000

struct loc {
    const char *file; /* "" for the document itself */
    size_t len;
    char p[LOC_MAX]; /* JSON pointer, NUL-terminated */
};

struct extfile {
    char *rel;
    json_t *doc;
};

struct pending {
    const char *file;
    json_t *node;
    char *ptr;
    char *name;
};

struct ctx {
    json_t *root;
    const char *base_dir;
    int ver;                /* 20, 30, 31 */
    const char *prefix;     /* "#/components/schemas/" or "#/definitions/" */
    const char *named_root; /* the same as a JSON pointer with trailing '/' */
    json_t *named;          /* output: name -> schema */
    json_t *memo;           /* "file#pointer" -> generated name */
    struct pending *pend;
    size_t npend, cappend;
    struct extfile files[PT_IMPORT_OPENAPI_MAX_FILES];
    int nfiles;
    json_t *warnings;
    int nwarn;
    long work;
    struct loc *loc;
    char *err;
    size_t errlen;
    bool failed;
    json_t *ids;                 /* operation ids taken */
    json_t *id_next, *name_next; /* base -> next suffix to try */
    json_t *routes;              /* "METHOD template" -> where */
    json_t *ops;
    json_t *consumes, *produces; /* 2.0 global */
};

static const char *const methods[] = {"get", "put", "post", "delete", "options", "head", "patch", "trace"};

/* ------------------------------------------------------------ locations */

static size_t loc_push(struct ctx *c, const char *key)
{
    struct loc *l = c->loc;
    size_t old = l->len;
    if (l->len + 2 >= LOC_MAX)
        return old;
    l->p[l->len++] = '/';
    for (const char *k = key; *k && l->len + 3 < LOC_MAX; k++) {
        if (*k == '~' || *k == '/') {
            l->p[l->len++] = '~';
            l->p[l->len++] = *k == '~' ? '0' : '1';
        } else
            l->p[l->len++] = *k;
    }
    l->p[l->len] = '\0';
    return old;
}

static size_t loc_pushi(struct ctx *c, size_t i)
{
    char b[24];
    snprintf(b, sizeof(b), "%zu", i);
    return loc_push(c, b);
}

static void loc_pop(struct ctx *c, size_t len)
{
    c->loc->len = len;
    c->loc->p[len] = '\0';
}

static void loc_set(struct loc *l, const char *file, const char *ptr)
{
    l->file = file;
    snprintf(l->p, sizeof(l->p), "%s", ptr);
    l->len = strlen(l->p);
}

static void loc_where(const struct loc *l, char *buf, size_t n)
{
    if (*l->file)
        snprintf(buf, n, "%s#%s", l->file, l->p);
    else
        snprintf(buf, n, "%s", l->len ? l->p : "/");
}

static bool fail(struct ctx *c, const char *fmt, ...) PT_PRINTF(2, 3);
static bool fail(struct ctx *c, const char *fmt, ...)
{
    if (c->failed)
        return false;
    c->failed = true;
    char where[LOC_MAX + 300], msg[1024];
    loc_where(c->loc, where, sizeof(where));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s: %s", where, msg);
    return false;
}

static void warn(struct ctx *c, const char *fmt, ...) PT_PRINTF(2, 3);
static void warn(struct ctx *c, const char *fmt, ...)
{
    if (c->nwarn > MAX_WARNINGS)
        return;
    if (c->nwarn++ == MAX_WARNINGS) {
        json_array_append_new(c->warnings, json_string("more warnings left out"));
        return;
    }
    char where[LOC_MAX + 300], msg[1024];
    loc_where(c->loc, where, sizeof(where));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_array_append_new(c->warnings, json_sprintf("%s: %s", where, msg));
}

static bool budget(struct ctx *c, long n)
{
    c->work += n;
    if (c->work > PT_IMPORT_OPENAPI_MAX_WORK)
        return fail(c, "expanding $refs copies more than %ld nodes (text counts a node per 64 bytes)",
                    PT_IMPORT_OPENAPI_MAX_WORK);
    return true;
}

/* Text from the document into the result.  Shared, not copied, but what is
   shared is written out once per use, so it is charged by its length: a long
   description behind a $ref used by every operation cannot blow up the
   result.  A failure is sticky (c->failed). */
static void put_text(struct ctx *c, json_t *o, const char *k, json_t *v)
{
    if (json_is_string(v) && budget(c, 1 + (long)(json_string_length(v) / 64)))
        json_object_set(o, k, v);
}

/* ------------------------------------------------------------- parsing */

/* JSON nesting, checked before jansson (which allows 2048 levels). */
static bool json_depth_ok(const char *s, size_t n, char *err, size_t errlen)
{
    int depth = 0;
    unsigned long line = 1, col = 1;
    bool str = false, esc = false;
    for (size_t i = 0; i < n; i++, col++) {
        char ch = s[i];
        if (ch == '\n') {
            line++;
            col = 0;
        }
        if (str) {
            if (esc)
                esc = false;
            else if (ch == '\\')
                esc = true;
            else if (ch == '"')
                str = false;
            continue;
        }
        if (ch == '"')
            str = true;
        else if (ch == '{' || ch == '[') {
            if (++depth > PT_IMPORT_OPENAPI_MAX_DEPTH) {
                snprintf(err, errlen, "line %lu, column %lu: nested deeper than %d levels", line, col,
                         PT_IMPORT_OPENAPI_MAX_DEPTH);
                return false;
            }
        } else if (ch == '}' || ch == ']')
            depth--;
    }
    return true;
}

/* YAML text into jansson; "line L, column C: what" on syntax errors. */
static json_t *parse_yaml(const char *text, size_t len, const char *name, char *err, size_t errlen)
{
    struct pt_pool *pool = pt_pool_new(65536);
    if (!pool) {
        snprintf(err, errlen, "%s%sline 1, column 1: out of memory", name, *name ? ": " : "");
        return NULL;
    }
    struct pt_errors errs = {0};
    struct pt_node *root = pt_node_parse_yaml(pool, "-", text, len, &errs);
    json_t *j = NULL;
    if (root)
        j = pt_node_to_json(root);
    else {
        /* "-:L:C: what" from the loader, or "-:L:C: duplicate key" */
        const char *m = errs.n ? errs.msgs[0] : "-:1:1: YAML syntax error";
        unsigned long l = 1, col = 1;
        int off = 0;
        if (sscanf(m, "-:%lu:%lu: %n", &l, &col, &off) >= 2 && off > 0)
            m += off;
        snprintf(err, errlen, "%s%sline %lu, column %lu: %s", name, *name ? ": " : "", l, col, m);
    }
    pt_node_errors_clear(&errs);
    pt_pool_free(pool);
    return j;
}

/* JSON or YAML text into jansson; "line L, column C: what" on syntax errors.
   `name` prefixes messages about another file. */
static json_t *parse_text(const char *text, size_t len, const char *name, char *err, size_t errlen)
{
    char e[1024];
    if (len > PT_IMPORT_OPENAPI_MAX_SIZE) {
        snprintf(err, errlen, "%s%s/: the document is %zu bytes, more than the limit of %u (4 MB)", name,
                 *name ? "#" : "", len, PT_IMPORT_OPENAPI_MAX_SIZE);
        return NULL;
    }
    size_t i = 0;
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3))
        i = 3;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n'))
        i++;
    /* JSON when it starts like JSON: `[`, or `{` followed by a quoted key or `}`;
       YAML's flow style ({openapi: 3.0.0, ...}) goes to the YAML reader */
    size_t k = i + 1;
    while (k < len && (text[k] == ' ' || text[k] == '\t' || text[k] == '\r' || text[k] == '\n'))
        k++;
    if (i < len && (text[i] == '[' || (text[i] == '{' && (k >= len || text[k] == '"' || text[k] == '}')))) {
        if (!json_depth_ok(text, len, e, sizeof(e))) {
            snprintf(err, errlen, "%s%s%s", name, *name ? ": " : "", e);
            return NULL;
        }
        json_error_t je;
        json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        if (!j)
            snprintf(err, errlen, "%s%sline %d, column %d: %s", name, *name ? ": " : "",
                     je.line < 1 ? 1 : je.line, je.column < 1 ? 1 : je.column, je.text);
        return j;
    }
    return parse_yaml(text, len, name, err, errlen);
}

/* -------------------------------------------------------------- $refs */

static bool starts(const char *s, const char *p)
{
    return !strncmp(s, p, strlen(p));
}

static json_t *doc_of(struct ctx *c, const char *file)
{
    if (!*file)
        return c->root;
    for (int i = 0; i < c->nfiles; i++)
        if (c->files[i].rel == file || !strcmp(c->files[i].rel, file))
            return c->files[i].doc;
    return NULL;
}

/* dir of `from` joined with rel, normalized; NULL when it leaves the base. */
static char *join_rel(const char *from, const char *rel)
{
    size_t cap = strlen(from) + strlen(rel) + 2;
    char *buf = malloc(cap), *out = malloc(cap);
    if (!buf || !out) {
        free(buf);
        free(out);
        return NULL;
    }
    const char *slash = strrchr(from, '/');
    size_t dl = slash ? (size_t)(slash - from) : 0;
    snprintf(buf, cap, "%.*s%s%s", (int)dl, from, dl ? "/" : "", rel);
    size_t ol = 0;
    char *save = NULL;
    for (char *seg = strtok_r(buf, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
        if (!strcmp(seg, "."))
            continue;
        if (!strcmp(seg, "..")) {
            if (ol == 0) {
                free(buf);
                free(out);
                return NULL;
            }
            while (ol > 0 && out[ol - 1] != '/')
                ol--;
            if (ol > 0)
                ol--;
            continue;
        }
        if (ol)
            out[ol++] = '/';
        size_t sl = strlen(seg);
        memcpy(out + ol, seg, sl);
        ol += sl;
    }
    out[ol] = '\0';
    free(buf);
    if (!ol) {
        free(out);
        return NULL;
    }
    return out;
}

static const char *load_file(struct ctx *c, const char *ref_file)
{
    if (strstr(ref_file, "://") || starts(ref_file, "//")) {
        fail(c, "$ref '%s': references by URL are not supported", ref_file);
        return NULL;
    }
    if (!c->base_dir) {
        fail(c, "$ref '%s': references to other files are not allowed here (no base directory)", ref_file);
        return NULL;
    }
    if (ref_file[0] == '/' || ref_file[0] == '\\') {
        fail(c, "$ref '%s': absolute paths are not allowed", ref_file);
        return NULL;
    }
    char *rel = join_rel(c->loc->file, ref_file);
    if (!rel) {
        fail(c, "$ref '%s' leaves the base directory", ref_file);
        return NULL;
    }
    for (int i = 0; i < c->nfiles; i++)
        if (!strcmp(c->files[i].rel, rel)) {
            free(rel);
            return c->files[i].rel;
        }
    if (c->nfiles >= PT_IMPORT_OPENAPI_MAX_FILES) {
        free(rel);
        fail(c, "$ref '%s': more than %d files referenced", ref_file, PT_IMPORT_OPENAPI_MAX_FILES);
        return NULL;
    }
    /* symbolic links may not lead out of the base either */
    char full[PATH_MAX], rbase[PATH_MAX], rfull[PATH_MAX];
    snprintf(full, sizeof(full), "%s/%s", c->base_dir, rel);
    if (!realpath(c->base_dir, rbase) || !realpath(full, rfull)) {
        fail(c, "$ref '%s': cannot open '%s': %s", ref_file, rel, strerror(errno));
        free(rel);
        return NULL;
    }
    size_t bl = strlen(rbase);
    if (strncmp(rfull, rbase, bl) || (rfull[bl] != '/' && bl > 1)) {
        fail(c, "$ref '%s' leaves the base directory", ref_file);
        free(rel);
        return NULL;
    }
    FILE *f = fopen(rfull, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        fail(c, "$ref '%s': cannot read '%s'", ref_file, rel);
        if (f)
            fclose(f);
        free(rel);
        return NULL;
    }
    if ((unsigned long long)st.st_size > PT_IMPORT_OPENAPI_MAX_SIZE) {
        fclose(f);
        fail(c, "$ref '%s': '%s' is larger than 4 MB", ref_file, rel);
        free(rel);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    size_t got = buf ? fread(buf, 1, n, f) : 0;
    fclose(f);
    if (!buf || got != n) {
        free(buf);
        fail(c, "$ref '%s': cannot read '%s'", ref_file, rel);
        free(rel);
        return NULL;
    }
    char e[1200];
    json_t *doc = parse_text(buf, n, rel, e, sizeof(e));
    free(buf);
    if (!doc) {
        fail(c, "$ref '%s': %s", ref_file, e);
        free(rel);
        return NULL;
    }
    if (!budget(c, (long)(n / 16))) {
        json_decref(doc);
        free(rel);
        return NULL;
    }
    c->files[c->nfiles].rel = rel;
    c->files[c->nfiles].doc = doc;
    return c->files[c->nfiles++].rel;
}

static int hexv(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* The fragment percent-decoded (a JSON pointer, still ~-escaped). */
static char *decode_fragment(const char *f)
{
    size_t n = strlen(f);
    char *o = malloc(n + 1), *p = o;
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (f[i] == '%' && i + 2 < n && hexv(f[i + 1]) >= 0 && hexv(f[i + 2]) >= 0) {
            *p++ = (char)(hexv(f[i + 1]) * 16 + hexv(f[i + 2]));
            i += 2;
        } else
            *p++ = f[i];
    }
    *p = '\0';
    return o;
}

static json_t *ptr_get(json_t *doc, const char *ptr)
{
    if (!*ptr)
        return doc;
    if (*ptr != '/')
        return NULL;
    json_t *cur = doc;
    const char *p = ptr + 1;
    char tok[1024];
    for (;;) {
        size_t tl = 0;
        while (*p && *p != '/') {
            char ch = *p++;
            if (ch == '~' && (*p == '0' || *p == '1'))
                ch = *p++ == '0' ? '~' : '/';
            if (tl + 1 >= sizeof(tok))
                return NULL;
            tok[tl++] = ch;
        }
        tok[tl] = '\0';
        if (json_is_object(cur))
            cur = json_object_get(cur, tok);
        else if (json_is_array(cur)) {
            char *end;
            if (!tl || tl > 9 || (tl > 1 && tok[0] == '0'))
                return NULL;
            long ix = strtol(tok, &end, 10);
            if (*end || ix < 0)
                return NULL;
            cur = json_array_get(cur, (size_t)ix);
        } else
            return NULL;
        if (!cur)
            return NULL;
        if (!*p)
            return cur;
        p++;
    }
}

/* Resolves ref (relative to c->loc->file); the target's file, decoded
   pointer (malloc'd) and node.  Errors at c->loc. */
static bool resolve_ref(struct ctx *c, const char *ref, const char **tfile, char **tptr, json_t **tnode)
{
    if (!budget(c, 1 + (long)(strlen(ref) / 64)))
        return false;
    const char *hash = strchr(ref, '#');
    size_t fl = hash ? (size_t)(hash - ref) : strlen(ref);
    const char *file = c->loc->file;
    if (fl) {
        char *fn = strndup(ref, fl);
        if (!fn)
            return fail(c, "out of memory");
        file = load_file(c, fn);
        free(fn);
        if (!file)
            return false;
    }
    char *ptr = decode_fragment(hash ? hash + 1 : "");
    if (!ptr)
        return fail(c, "out of memory");
    json_t *doc = doc_of(c, file);
    json_t *t = doc ? ptr_get(doc, ptr) : NULL;
    if (!t) {
        free(ptr);
        return fail(c, "$ref '%s' does not resolve", ref);
    }
    *tfile = file;
    *tptr = ptr;
    *tnode = t;
    return true;
}

/* Follows $refs from n (at c->loc); *out is where the result is. */
static json_t *deref(struct ctx *c, json_t *n, struct loc *out)
{
    *out = *c->loc;
    for (int hop = 0; json_is_object(n) && json_is_string(json_object_get(n, "$ref")); hop++) {
        struct loc *saved = c->loc;
        c->loc = out;
        size_t m = loc_push(c, "$ref");
        if (hop >= MAX_HOPS) {
            fail(c, "$ref chain longer than %d", MAX_HOPS);
            c->loc = saved;
            return NULL;
        }
        const char *tf;
        char *tp;
        json_t *t;
        bool ok = resolve_ref(c, json_string_value(json_object_get(n, "$ref")), &tf, &tp, &t);
        loc_pop(c, m);
        c->loc = saved;
        if (!ok || !budget(c, 1)) {
            if (ok)
                free(tp);
            return NULL;
        }
        loc_set(out, tf, tp);
        free(tp);
        n = t;
    }
    return n;
}

/* ------------------------------------------------------------- schemas */

static json_t *copy_value(struct ctx *c, const json_t *v)
{
    if (!budget(c, 1))
        return NULL;
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            json_t *cx = copy_value(c, x);
            if (!cx) {
                json_decref(o);
                return NULL;
            }
            json_object_set_new(o, k, cx);
        }
        return o;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *cx = copy_value(c, json_array_get(v, i));
            if (!cx) {
                json_decref(a);
                return NULL;
            }
            json_array_append_new(a, cx);
        }
        return a;
    }
    if (json_is_string(v) && !budget(c, (long)(json_string_length(v) / 64)))
        return NULL;
    return json_copy((json_t *)v);
}

/* A name not in `taken` (base, base-2, base-3...); `next` remembers each
   base's next suffix so that many equal bases cost no more than a few. */
static void unique_name(json_t *taken, json_t *next, const char *base, char *out, size_t size)
{
    snprintf(out, size, "%s", base);
    if (!json_object_get(taken, out))
        return;
    json_t *nx = json_object_get(next, base);
    long long i = nx ? json_integer_value(nx) : 2;
    do
        snprintf(out, size, "%s-%lld", base, i++);
    while (json_object_get(taken, out));
    json_object_set_new(next, base, json_integer(i));
}

static void gen_name(struct ctx *c, const char *tfile, const char *tptr, char *name, size_t size)
{
    const char *last = strrchr(tptr, '/'), *src;
    size_t sl;
    if (last && last[1]) {
        src = last + 1;
        sl = strlen(src);
    } else {
        /* a whole file: its name without the extension */
        src = strrchr(tfile, '/');
        src = src ? src + 1 : tfile;
        const char *dot = strrchr(src, '.');
        sl = dot && dot > src ? (size_t)(dot - src) : strlen(src);
    }
    char base[80];
    size_t bl = 0;
    for (size_t i = 0; i < sl && bl < 64; i++) {
        unsigned char ch = (unsigned char)src[i];
        base[bl++] = (ch < 128 && (isalnum(ch) || ch == '.' || ch == '-' || ch == '_')) ? (char)ch : '_';
    }
    if (!bl)
        bl = (size_t)snprintf(base, sizeof(base), "schema");
    base[bl] = '\0';
    unique_name(c->named, c->name_next, base, name, size);
}

static json_t *rewrite_ref(struct ctx *c, const char *ref)
{
    const char *tf;
    char *tp;
    json_t *t;
    if (!resolve_ref(c, ref, &tf, &tp, &t))
        return NULL;
    if (!*tf && starts(tp, c->named_root) && tp[strlen(c->named_root)]) {
        free(tp);
        return json_string(ref);
    }
    size_t kl = strlen(tf) + strlen(tp) + 2;
    char *key = malloc(kl);
    if (!key) {
        free(tp);
        fail(c, "out of memory");
        return NULL;
    }
    snprintf(key, kl, "%s#%s", tf, tp);
    json_t *known = json_object_get(c->memo, key);
    char name[96];
    if (known) {
        snprintf(name, sizeof(name), "%s", json_string_value(known));
        free(tp);
    } else {
        gen_name(c, tf, tp, name, sizeof(name));
        json_object_set_new(c->memo, key, json_string(name));
        json_object_set_new(c->named, name, json_null()); /* reserved until copied */
        if (c->npend == c->cappend) {
            size_t nc = c->cappend ? 2 * c->cappend : 16;
            struct pending *np = realloc(c->pend, nc * sizeof(*np));
            if (!np) {
                free(tp);
                free(key);
                fail(c, "out of memory");
                return NULL;
            }
            c->pend = np;
            c->cappend = nc;
        }
        c->pend[c->npend++] = (struct pending){tf, t, tp, strdup(name)};
    }
    free(key);
    return json_sprintf("%s%s", c->prefix, name);
}

static bool data_key(const char *k)
{
    return !strcmp(k, "example") || !strcmp(k, "examples") || !strcmp(k, "enum") || !strcmp(k, "const") ||
           !strcmp(k, "default") || starts(k, "x-");
}

static bool names_key(const char *k)
{
    return !strcmp(k, "properties") || !strcmp(k, "patternProperties") || !strcmp(k, "definitions") ||
           !strcmp(k, "$defs") || !strcmp(k, "dependentSchemas");
}

/* A schema copied with its $refs rewritten; `names`: the keys of this
   object are names whose values are schemas. */
static json_t *copy_schema(struct ctx *c, json_t *s, bool names)
{
    if (!budget(c, 1))
        return NULL;
    if (json_is_object(s)) {
        json_t *o = json_object();
        const char *k;
        json_t *v;
        json_object_foreach(s, k, v)
        {
            size_t m = loc_push(c, k);
            json_t *cv;
            if (!names && !strcmp(k, "$ref") && json_is_string(v))
                cv = rewrite_ref(c, json_string_value(v));
            else if (!names && data_key(k))
                cv = copy_value(c, v);
            else
                cv = copy_schema(c, v, !names && names_key(k));
            loc_pop(c, m);
            if (!cv) {
                json_decref(o);
                return NULL;
            }
            json_object_set_new(o, k, cv);
        }
        return o;
    }
    if (json_is_array(s)) {
        json_t *a = json_array();
        for (size_t i = 0; i < json_array_size(s); i++) {
            size_t m = loc_pushi(c, i);
            json_t *cv = copy_schema(c, json_array_get(s, i), false);
            loc_pop(c, m);
            if (!cv) {
                json_decref(a);
                return NULL;
            }
            json_array_append_new(a, cv);
        }
        return a;
    }
    if (json_is_string(s) && !budget(c, (long)(json_string_length(s) / 64)))
        return NULL;
    return json_copy(s);
}

static bool drain_pending(struct ctx *c)
{
    for (size_t i = 0; i < c->npend && !c->failed; i++) {
        struct loc l, *saved = c->loc;
        loc_set(&l, c->pend[i].file, c->pend[i].ptr);
        c->loc = &l;
        json_t *s = copy_schema(c, c->pend[i].node, false);
        c->loc = saved;
        if (!s)
            return false;
        json_object_set_new(c->named, c->pend[i].name, s);
    }
    return !c->failed;
}

static char *unescape_token(const char *t)
{
    char *o = malloc(strlen(t) + 1), *p = o;
    if (!o)
        return NULL;
    for (; *t; t++) {
        if (*t == '~' && (t[1] == '0' || t[1] == '1')) {
            *p++ = t[1] == '0' ? '~' : '/';
            t++;
        } else
            *p++ = *t;
    }
    *p = '\0';
    return o;
}

/* Puts schemaId + typeName (a $ref to a named schema) or `schema` into dst. */
static bool put_schema(struct ctx *c, json_t *dst, json_t *schema)
{
    if (json_is_object(schema) && json_is_string(json_object_get(schema, "$ref"))) {
        bool only = true;
        const char *k;
        json_t *v;
        json_object_foreach(schema, k, v)
        {
            if (strcmp(k, "$ref") && strcmp(k, "description") && strcmp(k, "summary"))
                only = false;
        }
        if (only) {
            size_t m = loc_push(c, "$ref");
            json_t *r = rewrite_ref(c, json_string_value(json_object_get(schema, "$ref")));
            loc_pop(c, m);
            if (!r)
                return false;
            const char *rs = json_string_value(r);
            size_t pl = strlen(c->prefix);
            if (starts(rs, c->prefix) && rs[pl] && !strchr(rs + pl, '/')) {
                char *dec = decode_fragment(rs + pl);
                char *tn = dec ? unescape_token(dec) : NULL;
                free(dec);
                json_object_set_new(dst, "schemaId", json_string(PT_IMPORT_OPENAPI_SCHEMA_ID));
                json_object_set_new(dst, "typeName", json_string(tn ? tn : rs + pl));
                free(tn);
                json_decref(r);
            } else
                json_object_set_new(dst, "schema", json_pack("{s:o}", "$ref", r));
            return true;
        }
    }
    json_t *s = copy_schema(c, schema, false);
    if (!s)
        return false;
    json_object_set_new(dst, "schema", s);
    return true;
}

/* The schema an output `schema`/`typeName` stands for, through named refs. */
static const json_t *out_schema(struct ctx *c, const json_t *o)
{
    const json_t *s = json_object_get(o, "schema");
    if (!s && json_is_string(json_object_get(o, "typeName")))
        s = json_object_get(c->named, json_string_value(json_object_get(o, "typeName")));
    for (int i = 0; i < 8 && json_is_object(s) && json_is_string(json_object_get(s, "$ref")); i++) {
        const char *r = json_string_value(json_object_get(s, "$ref"));
        if (!starts(r, c->prefix) || strchr(r + strlen(c->prefix), '/'))
            break;
        s = json_object_get(c->named, r + strlen(c->prefix));
    }
    return s;
}

static const char *schema_type(const json_t *s)
{
    const json_t *t = json_object_get(s, "type");
    if (json_is_string(t))
        return json_string_value(t);
    for (size_t i = 0; i < json_array_size(t); i++)
        if (json_is_string(json_array_get(t, i)) && strcmp(json_string_value(json_array_get(t, i)), "null"))
            return json_string_value(json_array_get(t, i));
    if (json_object_get(s, "properties"))
        return "object";
    return NULL;
}

/* ------------------------------------------------------------- parameters */

static json_t *scalar_text(const json_t *v)
{
    if (json_is_string(v))
        return json_copy((json_t *)v);
    if (json_is_null(v) || !v)
        return NULL;
    char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    json_t *s = t ? json_string(t) : NULL;
    free(t);
    return s;
}

/* 3.x examples: `example` and `examples` of a parameter/header/media type. */
static bool put_examples(struct ctx *c, json_t *dst, json_t *src)
{
    json_t *ex = json_object_get(src, "example"), *exs = json_object_get(src, "examples");
    json_t *out = json_object();
    if (ex) {
        json_t *v = copy_value(c, ex);
        if (!v)
            goto bad;
        json_object_set_new(out, "default", json_pack("{s:o}", "value", v));
    }
    if (json_is_object(exs)) {
        size_t m = loc_push(c, "examples");
        const char *k;
        json_t *e;
        json_object_foreach(exs, k, e)
        {
            size_t m2 = loc_push(c, k);
            struct loc l, *saved = c->loc;
            json_t *r = deref(c, e, &l);
            if (!r) {
                loc_pop(c, m);
                goto bad;
            }
            c->loc = &l;
            json_t *o = json_object();
            if (!json_is_object(r)) {
                json_decref(o);
                c->loc = saved;
                loc_pop(c, m);
                fail(c, "an example must be an object");
                goto bad;
            }
            json_t *x;
            if ((x = json_object_get(r, "summary")) && json_is_string(x))
                put_text(c, o, "summary", x);
            if ((x = json_object_get(r, "description")) && json_is_string(x))
                put_text(c, o, "description", x);
            if ((x = json_object_get(r, "value"))) {
                json_t *v = copy_value(c, x);
                if (!v) {
                    json_decref(o);
                    c->loc = saved;
                    loc_pop(c, m);
                    goto bad;
                }
                json_object_set_new(o, "value", v);
            }
            if (json_object_get(r, "externalValue"))
                warn(c, "externalValue of example '%s' is not fetched; left out", k);
            c->loc = saved;
            loc_pop(c, m2);
            json_object_set_new(out, k, o);
        }
        loc_pop(c, m);
    } else if (exs && c->ver != 20)
        warn(c, "'examples' is not a map; ignored");
    if (json_object_size(out))
        json_object_set_new(dst, "examples", out);
    else
        json_decref(out);
    return true;
bad:
    json_decref(out);
    return false;
}

static const char *const v2_schema_keys[] = {"type",      "format",           "items",   "default",
                                             "maximum",   "exclusiveMaximum", "minimum", "exclusiveMinimum",
                                             "maxLength", "minLength",        "pattern", "maxItems",
                                             "minItems",  "uniqueItems",      "enum",    "multipleOf"};

/* A parameter/header object (resolved, at c->loc) into APIM's shape. */
static json_t *convert_param(struct ctx *c, json_t *p, const char *name, bool required)
{
    json_t *o = json_object();
    budget(c, 1 + (long)(strlen(name) / 64));
    json_object_set_new(o, "name", json_string(name));
    json_t *d = json_object_get(p, "description");
    if (json_is_string(d))
        put_text(c, o, "description", d);
    json_t *schema = NULL, *built = NULL;
    size_t m = c->loc->len;
    if (c->ver == 20) {
        built = json_object();
        for (size_t i = 0; i < PT_ARRAY_LEN(v2_schema_keys); i++) {
            json_t *v = json_object_get(p, v2_schema_keys[i]);
            if (v)
                json_object_set(built, v2_schema_keys[i], v);
        }
        schema = json_object_size(built) ? built : NULL;
    } else {
        schema = json_object_get(p, "schema");
        if (schema)
            m = loc_push(c, "schema");
        else if (json_is_object(json_object_get(p, "content"))) {
            json_t *content = json_object_get(p, "content");
            void *it = json_object_iter(content);
            if (it && json_is_object(json_object_iter_value(it))) {
                m = loc_push(c, "content");
                loc_push(c, json_object_iter_key(it));
                schema = json_object_get(json_object_iter_value(it), "schema");
                if (schema)
                    loc_push(c, "schema");
            }
        }
    }
    json_t *tmp = json_object();
    bool ok = !schema || put_schema(c, tmp, schema);
    loc_pop(c, m);
    if (!ok) {
        json_decref(built);
        json_decref(tmp);
        json_decref(o);
        return NULL;
    }
    /* type, enum and default from the schema itself (a pulled-in one is not copied yet) */
    const json_t *rs = NULL;
    if (schema) {
        struct loc l;
        rs = deref(c, schema, &l);
    }
    if (!rs)
        rs = out_schema(c, tmp);
    const char *type = rs ? schema_type(rs) : NULL;
    if (type)
        json_object_set_new(o, "type", json_string(type));
    json_object_set_new(o, "required", json_boolean(required));
    if (json_is_array(json_object_get(rs, "enum")))
        json_object_set_new(o, "values", copy_value(c, json_object_get(rs, "enum")));
    json_t *dv = scalar_text(json_object_get(rs, "default"));
    if (dv && budget(c, 1 + (long)(json_string_length(dv) / 64)))
        json_object_set_new(o, "defaultValue", dv);
    else
        json_decref(dv);
    json_object_update(o, tmp);
    json_decref(tmp);
    json_decref(built);
    if (c->ver != 20 && !put_examples(c, o, p)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ----------------------------------------------------------- operations */

static void normalize_id(const char *s, char *out, size_t size)
{
    size_t n = 0;
    bool dash = false;
    for (; *s && n + 1 < size && n < ID_MAX; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 128 && isalnum(ch)) {
            if (dash && n)
                out[n++] = '-';
            dash = false;
            if (n < ID_MAX)
                out[n++] = (char)tolower(ch);
        } else
            dash = true;
    }
    while (n && out[n - 1] == '-')
        n--;
    out[n] = '\0';
}

static void take_id(struct ctx *c, const char *base, char *out, size_t size)
{
    unique_name(c->ids, c->id_next, base, out, size);
    json_object_set_new(c->ids, out, json_true());
}

static json_t *truncated(const char *s, size_t max_chars)
{
    size_t chars = 0, i = 0;
    for (; s[i]; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (chars == max_chars)
                break;
            chars++;
        }
    }
    return json_stringn(s, i);
}

struct tparam {
    char name[128];
    size_t at; /* offset of the '{' */
};

/* The {names} of a template; false when braces do not pair. */
static bool template_names(const char *t, struct tparam **names, int *n)
{
    *names = NULL;
    *n = 0;
    for (const char *p = t; *p; p++) {
        if (*p == '}')
            return false;
        if (*p != '{')
            continue;
        const char *e = strchr(p + 1, '}');
        const char *o = strchr(p + 1, '{');
        if (!e || (o && o < e) || e == p + 1 || (size_t)(e - p - 1) >= sizeof((*names)->name))
            return false;
        struct tparam *np = realloc(*names, (size_t)(*n + 1) * sizeof(**names));
        if (!np)
            return false;
        *names = np;
        snprintf(np[*n].name, sizeof(np[*n].name), "%.*s", (int)(e - p - 1), p + 1);
        np[*n].at = (size_t)(p - t);
        (*n)++;
        p = e;
    }
    return true;
}

struct pref {
    json_t *node; /* resolved */
    struct loc loc;
    const char *name, *in;
};

struct plist {
    struct pref *v;
    int n, cap;
    json_t *index; /* "in:name" -> position */
};

static bool collect_params(struct ctx *c, json_t *arr, struct plist *l)
{
    if (!arr)
        return true;
    size_t m = loc_push(c, "parameters");
    if (!json_is_array(arr)) {
        fail(c, "must be a list");
        return false;
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        size_t m2 = loc_pushi(c, i);
        struct pref pr;
        pr.node = deref(c, json_array_get(arr, i), &pr.loc);
        if (!pr.node)
            return false;
        pr.name = json_string_value(json_object_get(pr.node, "name"));
        pr.in = json_string_value(json_object_get(pr.node, "in"));
        if (!pr.name || !pr.in) {
            struct loc *saved = c->loc;
            c->loc = &pr.loc;
            fail(c, "a parameter needs a string 'name' and 'in'");
            c->loc = saved;
            return false;
        }
        json_t *key = json_sprintf("%s:%s", pr.in, pr.name);
        json_t *known = key ? json_object_get(l->index, json_string_value(key)) : NULL;
        int at = known ? (int)json_integer_value(known) : l->n;
        if (!known) {
            if (l->n >= MAX_PARAMS) {
                json_decref(key);
                return fail(c, "more than %d parameters for one operation", MAX_PARAMS);
            }
            if (l->n == l->cap) {
                int nc = l->cap ? 2 * l->cap : 8;
                struct pref *nl = realloc(l->v, (size_t)nc * sizeof(*nl));
                if (!nl) {
                    json_decref(key);
                    return fail(c, "out of memory");
                }
                l->v = nl;
                l->cap = nc;
            }
            if (key)
                json_object_set_new(l->index, json_string_value(key), json_integer(l->n));
            l->n++;
        }
        json_decref(key);
        l->v[at] = pr;
        loc_pop(c, m2);
    }
    loc_pop(c, m);
    return true;
}

static json_t *array_of(json_t *o, const char *k)
{
    json_t *a = json_object_get(o, k);
    if (!a) {
        a = json_array();
        json_object_set_new(o, k, a);
    }
    return a;
}

/* 3.x content map -> representations appended to reps. */
static bool content_reps(struct ctx *c, json_t *content, json_t *reps)
{
    if (!json_is_object(content))
        return fail(c, "must be a map of media types");
    const char *ct;
    json_t *media;
    json_object_foreach(content, ct, media)
    {
        size_t m = loc_push(c, ct);
        if (!json_is_object(media))
            return fail(c, "a media type must be an object");
        json_t *r = json_pack("{s:s}", "contentType", ct);
        json_t *s = json_object_get(media, "schema");
        size_t m2 = loc_push(c, "schema");
        bool ok = !s || put_schema(c, r, s);
        loc_pop(c, m2);
        if (!ok || !put_examples(c, r, media)) {
            json_decref(r);
            return false;
        }
        json_array_append_new(reps, r);
        loc_pop(c, m);
    }
    return true;
}

static json_t *media_list(json_t *op, json_t *global, const char *key, const char *fallback)
{
    json_t *l = json_object_get(op, key);
    if (!json_is_array(l))
        l = global;
    if (json_is_array(l) && json_array_size(l))
        return json_incref(l);
    return json_pack("[s]", fallback);
}

/* 2.0 response headers / 3.x response headers. */
static bool response_headers(struct ctx *c, json_t *hs, json_t *out)
{
    size_t m = loc_push(c, "headers");
    if (!json_is_object(hs))
        return fail(c, "must be a map");
    const char *k;
    json_t *h;
    json_object_foreach(hs, k, h)
    {
        size_t m2 = loc_push(c, k);
        struct loc l, *saved = c->loc;
        json_t *r = deref(c, h, &l);
        if (!r)
            return false;
        c->loc = &l;
        if (!json_is_object(r)) {
            fail(c, "a header must be an object");
            c->loc = saved;
            return false;
        }
        json_t *p = convert_param(c, r, k, json_is_true(json_object_get(r, "required")));
        c->loc = saved;
        if (!p)
            return false;
        json_array_append_new(array_of(out, "headers"), p);
        loc_pop(c, m2);
    }
    loc_pop(c, m);
    return true;
}

static bool convert_response(struct ctx *c, json_t *r, json_t *op, json_t *out)
{
    json_t *d = json_object_get(r, "description");
    if (json_is_string(d))
        put_text(c, out, "description", d);
    json_t *hs = json_object_get(r, "headers");
    if (hs && !response_headers(c, hs, out))
        return false;
    json_t *reps = json_array();
    json_object_set_new(out, "representations", reps);
    if (c->ver != 20) {
        json_t *content = json_object_get(r, "content");
        if (content) {
            size_t m = loc_push(c, "content");
            if (!content_reps(c, content, reps))
                return false;
            loc_pop(c, m);
        }
    } else {
        json_t *s = json_object_get(r, "schema");
        json_t *ex = json_object_get(r, "examples");
        if (s || ex) {
            json_t *prod = media_list(op, c->produces, "produces", "application/json");
            for (size_t i = 0; i < json_array_size(prod); i++) {
                const char *ct = json_string_value(json_array_get(prod, i));
                if (!ct)
                    continue;
                json_t *rep = json_pack("{s:s}", "contentType", ct);
                size_t m = loc_push(c, "schema");
                bool ok = !s || put_schema(c, rep, s);
                loc_pop(c, m);
                if (!ok) {
                    json_decref(rep);
                    json_decref(prod);
                    return false;
                }
                json_array_append_new(reps, rep);
            }
            json_decref(prod);
            const char *ct;
            json_t *v;
            json_object_foreach(ex, ct, v)
            {
                json_t *rep = NULL;
                for (size_t i = 0; i < json_array_size(reps) && !rep; i++)
                    if (!strcmp(json_string_value(json_object_get(json_array_get(reps, i), "contentType")),
                                ct))
                        rep = json_array_get(reps, i);
                if (!rep) {
                    rep = json_pack("{s:s}", "contentType", ct);
                    json_array_append_new(reps, rep);
                }
                json_t *cv = copy_value(c, v);
                if (!cv)
                    return false;
                json_object_set_new(rep, "examples", json_pack("{s:{s:o}}", "default", "value", cv));
            }
        }
    }
    if (!json_array_size(reps))
        json_object_del(out, "representations");
    return true;
}

static bool convert_responses(struct ctx *c, json_t *rs, json_t *op, json_t *opout)
{
    size_t m = loc_push(c, "responses");
    if (!json_is_object(rs))
        return fail(c, "must be a map of status codes");
    json_t *list = json_array();
    json_object_set_new(opout, "responses", list);
    const char *code;
    json_t *r;
    json_object_foreach(rs, code, r)
    {
        if (starts(code, "x-"))
            continue;
        size_t m2 = loc_push(c, code);
        json_t *sc;
        if (!strcmp(code, "default"))
            sc = json_string("default");
        else if (strlen(code) == 3 && code[0] >= '1' && code[0] <= '5' && isdigit((unsigned char)code[1]) &&
                 isdigit((unsigned char)code[2]))
            sc = json_integer(atoi(code));
        else if (strlen(code) == 3 && code[0] >= '1' && code[0] <= '5' &&
                 toupper((unsigned char)code[1]) == 'X' && toupper((unsigned char)code[2]) == 'X') {
            warn(c, "status code range '%s' is not supported by APIM; kept out", code);
            loc_pop(c, m2);
            continue;
        } else
            return fail(c, "'%s' is not a status code", code);
        struct loc l, *saved = c->loc;
        json_t *rr = deref(c, r, &l);
        if (!rr) {
            json_decref(sc);
            return false;
        }
        c->loc = &l;
        if (!json_is_object(rr)) {
            json_decref(sc);
            fail(c, "a response must be an object");
            c->loc = saved;
            return false;
        }
        json_t *o = json_object();
        json_object_set_new(o, "statusCode", sc);
        json_array_append_new(list, o);
        bool ok = convert_response(c, rr, op, o);
        c->loc = saved;
        if (!ok)
            return false;
        loc_pop(c, m2);
    }
    loc_pop(c, m);
    if (!json_array_size(list))
        json_object_del(opout, "responses");
    return true;
}

static bool security_warning(struct ctx *c, json_t *sec)
{
    if (json_is_array(sec) && json_array_size(sec)) {
        size_t m = loc_push(c, "security");
        warn(c, "security requirements are not supported by APIM's import; kept out (use validate-jwt or "
                "subscription keys)");
        loc_pop(c, m);
    }
    return true;
}

static bool do_operation(struct ctx *c, const char *path, const char *method, json_t *op, json_t *item)
{
    if (!json_is_object(op))
        return fail(c, "an operation must be an object");
    char upper[16];
    size_t ml = strlen(method);
    for (size_t i = 0; i <= ml && i < sizeof(upper); i++)
        upper[i] = (char)toupper((unsigned char)method[i]);
    upper[sizeof(upper) - 1] = '\0';

    /* the template: path params from the path, required query params appended */
    const char *q = strchr(path, '?');
    struct tparam *names = NULL;
    int nnames = 0;
    if (!template_names(path, &names, &nnames)) {
        free(names);
        return fail(c, "the path template's braces do not pair");
    }
    json_t *seen = json_object(); /* the template's names */
    for (int i = 0; i < nnames; i++) {
        if (json_object_get(seen, names[i].name)) {
            fail(c, "the path template names '%s' twice", names[i].name);
            json_decref(seen);
            free(names);
            return false;
        }
        json_object_set_new(seen, names[i].name, json_true());
    }
    struct plist pl = {.index = json_object()};
    bool ok = true;
    json_t *out = json_object(), *tps = json_array(), *qps = json_array(), *hds = json_array();
    json_t *reps = json_array(), *forms = json_array();
    json_t *req = json_object();
    char *tmpl = NULL;
    size_t tl = 0;
    bool hasq = q != NULL;
    {
        /* path-level parameters are at ../parameters */
        char *slash = strrchr(c->loc->p, '/');
        size_t cut = slash ? (size_t)(slash - c->loc->p) : 0;
        loc_pop(c, cut);
        ok = collect_params(c, json_object_get(item, "parameters"), &pl);
        /* restore ".../METHOD" */
        loc_push(c, method);
        ok = ok && collect_params(c, json_object_get(op, "parameters"), &pl);
    }
    if (!ok)
        goto done;
    tmpl = strdup(path);
    tl = strlen(path);
    if (!tmpl) {
        ok = fail(c, "out of memory");
        goto done;
    }
    /* path parameters in template order */
    for (int t = 0; t < nnames && ok; t++) {
        bool in_query = q && names[t].at > (size_t)(q - path);
        json_t *key = json_sprintf("%s:%s", in_query ? "query" : "path", names[t].name);
        json_t *at = key ? json_object_get(pl.index, json_string_value(key)) : NULL;
        int found = at ? (int)json_integer_value(at) : -1;
        json_decref(key);
        json_t *p;
        if (found < 0) {
            warn(c, "template parameter '%s' is not declared; added as a required string", names[t].name);
            p = json_pack("{s:s,s:s,s:b,s:{s:s}}", "name", names[t].name, "type", "string", "required", 1,
                          "schema", "type", "string");
        } else {
            struct loc *saved = c->loc;
            c->loc = &pl.v[found].loc;
            p = convert_param(c, pl.v[found].node, names[t].name, true);
            c->loc = saved;
            pl.v[found].in = "";
            if (!p) {
                ok = false;
                break;
            }
        }
        json_array_append_new(tps, p);
    }
    for (int j = 0; j < pl.n && ok; j++) {
        struct pref *pr = &pl.v[j];
        struct loc *saved = c->loc;
        c->loc = &pr->loc;
        bool req_flag = json_is_true(json_object_get(pr->node, "required"));
        if (!*pr->in) {
            /* a template parameter, done */
        } else if (!strcmp(pr->in, "path")) {
            warn(c, "path parameter '%s' is not in the path template; ignored", pr->name);
        } else if (!strcmp(pr->in, "query")) {
            json_t *p = convert_param(c, pr->node, pr->name, req_flag);
            if (!p)
                ok = false;
            else if (req_flag && (strpbrk(pr->name, "{}&=#?") || json_object_get(seen, pr->name))) {
                json_decref(p);
                ok =
                    fail(c, "required query parameter '%s' cannot become a template parameter (%s)", pr->name,
                         strpbrk(pr->name, "{}&=#?") ? "its name has one of {}&=#?"
                                                     : "the template has that name");
            } else if (req_flag) {
                size_t need = tl + 2 * strlen(pr->name) + 5;
                char *nt = realloc(tmpl, need);
                if (!nt) {
                    json_decref(p);
                    ok = fail(c, "out of memory");
                } else {
                    tmpl = nt;
                    tl += (size_t)snprintf(tmpl + tl, need - tl, "%c%s={%s}", hasq ? '&' : '?', pr->name,
                                           pr->name);
                    hasq = true;
                    json_object_set_new(seen, pr->name, json_true());
                    json_array_append_new(tps, p);
                }
            } else
                json_array_append_new(qps, p);
        } else if (!strcmp(pr->in, "header")) {
            json_t *p = convert_param(c, pr->node, pr->name, req_flag);
            if (!p)
                ok = false;
            else
                json_array_append_new(hds, p);
        } else if (!strcmp(pr->in, "cookie")) {
            warn(c, "cookie parameter '%s' is not supported by APIM; kept out of the operation", pr->name);
        } else if (c->ver == 20 && !strcmp(pr->in, "body")) {
            json_t *s = json_object_get(pr->node, "schema");
            json_t *cons = media_list(op, c->consumes, "consumes", "application/json");
            json_t *d = json_object_get(pr->node, "description");
            if (json_is_string(d))
                put_text(c, req, "description", d);
            for (size_t i = 0; i < json_array_size(cons) && ok; i++) {
                const char *ct = json_string_value(json_array_get(cons, i));
                if (!ct)
                    continue;
                json_t *rep = json_pack("{s:s}", "contentType", ct);
                size_t m = loc_push(c, "schema");
                ok = !s || put_schema(c, rep, s);
                loc_pop(c, m);
                json_array_append_new(reps, rep);
            }
            json_decref(cons);
        } else if (c->ver == 20 && !strcmp(pr->in, "formData")) {
            warn(c,
                 "form parameter '%s' is not supported by APIM's import; kept as a form parameter of the "
                 "request representation",
                 pr->name);
            json_t *p = convert_param(c, pr->node, pr->name, req_flag);
            if (!p)
                ok = false;
            else
                json_array_append_new(forms, p);
        } else
            ok = fail(c, "parameter '%s': unknown location 'in: %s'", pr->name, pr->in);
        c->loc = saved;
    }
    if (!ok)
        goto done;
    if (json_array_size(forms)) {
        json_t *cons = media_list(op, c->consumes, "consumes", "application/x-www-form-urlencoded");
        bool any = false;
        for (size_t i = 0; i < json_array_size(cons); i++) {
            const char *ct = json_string_value(json_array_get(cons, i));
            if (ct &&
                (starts(ct, "application/x-www-form-urlencoded") || starts(ct, "multipart/form-data"))) {
                json_array_append_new(
                    reps, json_pack("{s:s,s:o}", "contentType", ct, "formParameters", json_deep_copy(forms)));
                any = true;
            }
        }
        if (!any)
            json_array_append_new(reps,
                                  json_pack("{s:s,s:O}", "contentType", "application/x-www-form-urlencoded",
                                            "formParameters", forms));
        json_decref(cons);
    }
    /* 3.x request body */
    json_t *rb = json_object_get(op, "requestBody");
    if (rb && c->ver != 20) {
        size_t m = loc_push(c, "requestBody");
        struct loc l, *saved = c->loc;
        json_t *r = deref(c, rb, &l);
        if (!r) {
            ok = false;
            goto done;
        }
        c->loc = &l;
        if (!json_is_object(r))
            ok = fail(c, "requestBody must be an object");
        else {
            json_t *d = json_object_get(r, "description");
            if (json_is_string(d))
                put_text(c, req, "description", d);
            json_t *content = json_object_get(r, "content");
            if (content) {
                size_t m2 = loc_push(c, "content");
                ok = content_reps(c, content, reps);
                loc_pop(c, m2);
            }
        }
        c->loc = saved;
        loc_pop(c, m);
        if (!ok)
            goto done;
    }
    if ((json_array_size(reps) || json_object_get(req, "description")) &&
        (!strcmp(upper, "GET") || !strcmp(upper, "HEAD") || !strcmp(upper, "OPTIONS"))) {
        warn(c, "a request body is not allowed for %s; dropped", upper);
        json_array_clear(reps);
        json_object_del(req, "description");
    }
    if (json_object_get(op, "callbacks"))
        warn(c, "callbacks are not supported by APIM; ignored");
    security_warning(c, json_object_get(op, "security"));
    json_t *rs = json_object_get(op, "responses");
    if (rs && !convert_responses(c, rs, op, out)) {
        ok = false;
        goto done;
    }

    /* the same method and template twice */
    {
        size_t kl = strlen(upper) + tl + 2;
        char *key = malloc(kl), *k = key;
        if (!key) {
            ok = fail(c, "out of memory");
            goto done;
        }
        k += snprintf(key, kl, "%s ", upper);
        for (const char *s = tmpl; *s; s++) {
            *k++ = *s;
            if (*s == '{') {
                while (*s && *s != '}')
                    s++;
                if (!*s)
                    break;
                *k++ = '}';
            }
        }
        *k = '\0';
        json_t *prev = json_object_get(c->routes, key);
        if (prev) {
            ok = fail(c, "%s %s is the same operation as %s", upper, tmpl, json_string_value(prev));
            free(key);
            goto done;
        }
        char where[LOC_MAX + 300];
        loc_where(c->loc, where, sizeof(where));
        json_object_set_new(c->routes, key, json_string(where));
        free(key);
    }

    /* names */
    {
        const char *oid = json_string_value(json_object_get(op, "operationId"));
        char base[ID_MAX + 1] = "", id[ID_MAX + 16];
        if (oid)
            normalize_id(oid, base, sizeof(base));
        if (!*base) {
            size_t bl = strlen(method) + strlen(tmpl) + 2;
            char *mp = malloc(bl);
            if (mp) {
                snprintf(mp, bl, "%s %s", method, path);
                normalize_id(mp, base, sizeof(base));
                free(mp);
            }
        }
        take_id(c, base, id, sizeof(id));
        json_t *o2 = json_object();
        json_object_set_new(o2, "id", json_string(id));
        json_object_set_new(o2, "method", json_string(upper));
        json_object_set_new(o2, "urlTemplate", json_string(tmpl));
        const char *summary = json_string_value(json_object_get(op, "summary"));
        if (summary && *summary)
            json_object_set_new(o2, "displayName", truncated(summary, DISPLAY_MAX));
        else if (oid && *oid)
            json_object_set_new(o2, "displayName", truncated(oid, DISPLAY_MAX));
        else
            json_object_set_new(o2, "displayName", json_sprintf("%s %s", upper, path));
        json_t *d = json_object_get(op, "description");
        if (json_is_string(d))
            put_text(c, o2, "description", d);
        if (json_array_size(tps))
            json_object_set(o2, "templateParameters", tps);
        if (json_array_size(qps))
            json_object_set(req, "queryParameters", qps);
        if (json_array_size(hds))
            json_object_set(req, "headers", hds);
        if (json_array_size(reps))
            json_object_set(req, "representations", reps);
        if (json_object_size(req))
            json_object_set(o2, "request", req);
        json_object_update(o2, out); /* responses */
        json_array_append_new(c->ops, o2);
    }
done:
    free(names);
    json_decref(seen);
    free(pl.v);
    json_decref(pl.index);
    free(tmpl);
    json_decref(out);
    json_decref(tps);
    json_decref(qps);
    json_decref(hds);
    json_decref(reps);
    json_decref(forms);
    json_decref(req);
    return ok && !c->failed;
}

static bool do_paths(struct ctx *c, const char *key)
{
    json_t *paths = json_object_get(c->root, key);
    if (!paths)
        return true;
    size_t m = loc_push(c, key);
    if (!json_is_object(paths))
        return fail(c, "must be a map of paths");
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item)
    {
        if (starts(path, "x-"))
            continue;
        size_t m2 = loc_push(c, path);
        if (path[0] != '/')
            return fail(c, "the path '%s' does not start with '/'", path);
        struct loc l, *saved = c->loc;
        json_t *it = deref(c, item, &l);
        if (!it)
            return false;
        if (!json_is_object(it))
            return fail(c, "a path item must be an object");
        /* a path item from elsewhere: its operations are reported there, but
           named (and deduplicated) by this path */
        c->loc = &l;
        const char *k;
        json_t *op;
        json_object_foreach(it, k, op)
        {
            bool is_method = false;
            for (size_t i = 0; i < PT_ARRAY_LEN(methods); i++)
                if (!strcmp(k, methods[i]))
                    is_method = true;
            if (!is_method)
                continue;
            size_t m3 = loc_push(c, k);
            if (!do_operation(c, path, k, op, it)) {
                c->loc = saved;
                return false;
            }
            loc_pop(c, m3);
        }
        c->loc = saved;
        loc_pop(c, m2);
    }
    loc_pop(c, m);
    return true;
}

/* ------------------------------------------------------------ service URL */

static json_t *server_url(struct ctx *c, json_t *servers, const char *key)
{
    if (!json_is_array(servers) || !json_array_size(servers))
        return NULL;
    size_t pick = 0;
    for (size_t i = 0; i < json_array_size(servers); i++) {
        const char *u = json_string_value(json_object_get(json_array_get(servers, i), "url"));
        if (u && !strncasecmp(u, "https://", 8)) {
            pick = i;
            break;
        }
    }
    size_t m = loc_push(c, key);
    loc_pushi(c, pick);
    json_t *srv = json_array_get(servers, pick);
    const char *u = json_string_value(json_object_get(srv, "url"));
    json_t *vars = json_object_get(srv, "variables");
    json_t *res = NULL;
    if (!u) {
        warn(c, "a server without a 'url'; no service URL");
        goto out;
    }
    char buf[4096];
    size_t bl = 0;
    for (const char *p = u; *p; p++) {
        if (*p == '{') {
            const char *e = strchr(p, '}');
            char name[256];
            if (!e || (size_t)(e - p) >= sizeof(name)) {
                warn(c, "server URL '%s' has an unpaired '{'; no service URL", u);
                goto out;
            }
            snprintf(name, sizeof(name), "%.*s", (int)(e - p - 1), p + 1);
            const char *dv = json_string_value(json_object_get(json_object_get(vars, name), "default"));
            if (!dv) {
                warn(c, "server variable '%s' has no default; no service URL", name);
                goto out;
            }
            bl += (size_t)snprintf(buf + bl, sizeof(buf) - bl, "%s", dv);
            p = e;
        } else if (bl + 1 < sizeof(buf))
            buf[bl++] = *p;
        if (bl >= sizeof(buf) - 1) {
            warn(c, "server URL too long; no service URL");
            goto out;
        }
        buf[bl] = '\0';
    }
    buf[bl] = '\0';
    while (bl > 0 && buf[bl - 1] == '/' && strstr(buf, "://") && strstr(buf, "://") + 3 < buf + bl - 1)
        buf[--bl] = '\0';
    if (!strstr(buf, "://")) {
        warn(c, "server URL '%s' is not absolute; no service URL", buf);
        goto out;
    }
    res = json_string(buf);
out:
    loc_pop(c, m);
    return res;
}

static json_t *v2_service_url(struct ctx *c)
{
    json_t *xs = json_object_get(c->root, "x-servers");
    if (xs)
        return server_url(c, xs, "x-servers");
    const char *host = json_string_value(json_object_get(c->root, "host"));
    if (!host || !*host)
        return NULL;
    const char *base = json_string_value(json_object_get(c->root, "basePath"));
    json_t *schemes = json_object_get(c->root, "schemes");
    const char *scheme = "https";
    if (json_is_array(schemes) && json_array_size(schemes)) {
        scheme = NULL;
        for (size_t i = 0; i < json_array_size(schemes); i++) {
            const char *s = json_string_value(json_array_get(schemes, i));
            if (s && !strcasecmp(s, "https"))
                scheme = "https";
        }
        if (!scheme)
            scheme = json_string_value(json_array_get(schemes, 0));
        if (!scheme || (strcasecmp(scheme, "http") && strcasecmp(scheme, "https")))
            scheme = "https";
    }
    if (!base || !strcmp(base, "/"))
        base = "";
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        bl--;
    return json_sprintf("%s://%s%s%.*s", scheme, host, bl && base[0] != '/' ? "/" : "", (int)bl, base);
}

/* ------------------------------------------------------------------ main */

static void security_defs(struct ctx *c, json_t *defs, const char *k1, const char *k2)
{
    if (!json_is_object(defs))
        return;
    size_t m = loc_push(c, k1);
    if (k2)
        loc_push(c, k2);
    const char *k;
    json_t *v;
    json_object_foreach(defs, k, v)
    {
        size_t m2 = loc_push(c, k);
        warn(c, "security scheme '%s' is not supported by APIM's import; kept out", k);
        loc_pop(c, m2);
    }
    loc_pop(c, m);
    (void)v;
}

static bool convert(struct ctx *c, json_t *api)
{
    json_t *root = c->root;
    if (!json_is_object(root))
        return fail(c, "the document is not an object");
    json_t *ov = json_object_get(root, "openapi"), *sv = json_object_get(root, "swagger");
    if (ov) {
        const char *v = json_string_value(ov);
        size_t m = loc_push(c, "openapi");
        if (v && starts(v, "3.0") && (!v[3] || v[3] == '.'))
            c->ver = 30;
        else if (v && starts(v, "3.1") && (!v[3] || v[3] == '.'))
            c->ver = 31;
        else {
            char *t = json_dumps(ov, JSON_ENCODE_ANY);
            fail(c, "unsupported OpenAPI version %s (2.0, 3.0.x and 3.1.x are)", t ? t : "?");
            free(t);
            return false;
        }
        loc_pop(c, m);
    } else if (sv) {
        if ((json_is_string(sv) && !strcmp(json_string_value(sv), "2.0")) ||
            (json_is_number(sv) && json_number_value(sv) == 2.0))
            c->ver = 20;
        else {
            size_t m = loc_push(c, "swagger");
            char *t = json_dumps(sv, JSON_ENCODE_ANY);
            fail(c, "unsupported Swagger version %s (2.0 is)", t ? t : "?");
            free(t);
            loc_pop(c, m);
            return false;
        }
    } else
        return fail(c, "not an OpenAPI document: neither 'openapi' nor 'swagger' is given");
    c->prefix = c->ver == 20 ? "#/definitions/" : "#/components/schemas/";
    c->named_root = c->ver == 20 ? "/definitions/" : "/components/schemas/";

    json_t *info = json_object_get(root, "info");
    if (info && !json_is_object(info)) {
        size_t m = loc_push(c, "info");
        fail(c, "must be an object");
        loc_pop(c, m);
        return false;
    }
    json_t *t = json_object_get(info, "title");
    if (json_is_string(t) && *json_string_value(t))
        json_object_set_new(api, "displayName", truncated(json_string_value(t), DISPLAY_MAX));
    t = json_object_get(info, "description");
    if (json_is_string(t))
        put_text(c, api, "description", t);
    json_object_set_new(api, "apiType", json_string("http"));
    json_t *su =
        c->ver == 20 ? v2_service_url(c) : server_url(c, json_object_get(root, "servers"), "servers");
    if (su)
        json_object_set_new(api, "serviceUrl", su);

    if (c->ver == 20) {
        c->consumes = json_object_get(root, "consumes");
        c->produces = json_object_get(root, "produces");
        security_defs(c, json_object_get(root, "securityDefinitions"), "securityDefinitions", NULL);
    } else {
        json_t *comp = json_object_get(root, "components");
        if (comp && !json_is_object(comp)) {
            loc_push(c, "components");
            return fail(c, "must be an object");
        }
        security_defs(c, json_object_get(comp, "securitySchemes"), "components", "securitySchemes");
        if (json_object_get(root, "webhooks")) {
            size_t m = loc_push(c, "webhooks");
            warn(c, "webhooks are not supported by APIM; ignored");
            loc_pop(c, m);
        }
    }
    security_warning(c, json_object_get(root, "security"));

    /* the named schemas first: their names are taken before any pulled in */
    json_t *named = c->ver == 20 ? json_object_get(root, "definitions")
                                 : json_object_get(json_object_get(root, "components"), "schemas");
    if (named) {
        size_t m = loc_push(c, c->ver == 20 ? "definitions" : "components");
        if (c->ver != 20)
            loc_push(c, "schemas");
        if (!json_is_object(named))
            return fail(c, "must be a map of schemas");
        const char *k;
        json_t *v;
        json_object_foreach(named, k, v)
        {
            json_object_set_new(c->named, k, json_null());
        }
        json_object_foreach(named, k, v)
        {
            size_t m2 = loc_push(c, k);
            json_t *s = copy_schema(c, v, false);
            if (!s)
                return false;
            json_object_set_new(c->named, k, s);
            loc_pop(c, m2);
        }
        loc_pop(c, m);
    }
    if (!do_paths(c, "paths") || !do_paths(c, "x-ms-paths") || !drain_pending(c))
        return false;
    if (json_object_size(c->named)) {
        json_t *doc = c->ver == 20 ? json_pack("{s:O}", "definitions", c->named)
                                   : json_pack("{s:{s:O}}", "components", "schemas", c->named);
        json_object_set_new(api, "schemas",
                            json_pack("[{s:s,s:s,s:o}]", "id", PT_IMPORT_OPENAPI_SCHEMA_ID, "contentType",
                                      c->ver == 20 ? "application/vnd.ms-azure-apim.swagger.definitions+json"
                                                   : "application/vnd.oai.openapi.components+json",
                                      "document", doc));
    }
    json_object_set(api, "operations", c->ops);
    return true;
}

bool pt_import_openapi_convert(const char *text, size_t len, const char *base_dir, struct pt_import_doc *out,
                               char *err, size_t errlen)
{
    char dummy[8];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    out->api = out->warnings = NULL;
    json_t *root = parse_text(text ? text : "", text ? len : 0, "", err, errlen);
    if (!root)
        return false;
    struct loc top = {.file = "", .len = 0, .p = ""};
    struct ctx c = {.root = root,
                    .base_dir = base_dir,
                    .named = json_object(),
                    .memo = json_object(),
                    .warnings = json_array(),
                    .loc = &top,
                    .err = err,
                    .errlen = errlen,
                    .ids = json_object(),
                    .id_next = json_object(),
                    .name_next = json_object(),
                    .routes = json_object(),
                    .ops = json_array()};
    json_t *api = json_object();
    bool ok = convert(&c, api) && !c.failed;
    for (size_t i = 0; i < c.npend; i++) {
        free(c.pend[i].ptr);
        free(c.pend[i].name);
    }
    free(c.pend);
    for (int i = 0; i < c.nfiles; i++) {
        free(c.files[i].rel);
        json_decref(c.files[i].doc);
    }
    json_decref(c.named);
    json_decref(c.memo);
    json_decref(c.ids);
    json_decref(c.id_next);
    json_decref(c.name_next);
    json_decref(c.routes);
    json_decref(c.ops);
    json_decref(root);
    if (!ok) {
        if (!err[0])
            snprintf(err, errlen, "/: conversion failed");
        json_decref(api);
        json_decref(c.warnings);
        return false;
    }
    out->api = api;
    out->warnings = c.warnings;
    return true;
}
