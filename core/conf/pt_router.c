/*
 * pt_router -- API suffix table and per-API operation tries.
 */
#include "conf/pt_router.h"

#include "base/pt_pool.h"

#include <stdio.h>
#include <stdlib.h>

/* A template segment made of literal runs and parameters, "{name}.{ext}". */
struct part {
    pt_str text; /* literal text, or the parameter name */
    bool param;
};

struct rnode;

struct lit_edge {
    pt_str seg;
    struct rnode *child;
};

struct pat_edge {
    struct part *parts;
    int nparts;
    pt_str key; /* the segment as written, to share identical patterns */
    struct rnode *child;
};

struct qcons {
    pt_str name;
    pt_str value; /* literal to match, unless param */
    bool param;
};

struct entry {
    const char *method; /* NULL = any */
    struct qcons *q;
    int nq;
    pt_str *pnames; /* names of the captured values, in capture order */
    int npnames;
    void *data;
};

struct term {
    struct entry *e;
    int n, cap;
};

struct rnode {
    struct lit_edge *lits;
    int nlits, caplits;
    struct pat_edge *pats;
    int npats, cappats;
    struct rnode *param;
    struct term term; /* operations ending here */
    struct term wild; /* operations whose template ends in a wildcard segment here */
};

struct api_slot {
    pt_str path;
    const char *host; /* NULL = any host */
    void *data;
    struct rnode root;
    int next; /* next API with the same path (other host), -1 */
};

struct pt_router {
    struct pt_pool *pool;
    struct api_slot *apis;
    int napis, capapis;
    int *table; /* open addressing on path: index of the first api_slot, -1 */
    size_t tsize;
    int max_depth; /* most segments in an API suffix */
};

struct pt_router *pt_router_new(void)
{
    struct pt_router *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->pool = pt_pool_new(64 * 1024);
    if (!r->pool) {
        free(r);
        return NULL;
    }
    return r;
}

void pt_router_free(struct pt_router *r)
{
    if (!r)
        return;
    pt_pool_free(r->pool);
    free(r);
}

static int count_segments(pt_str p)
{
    if (p.len == 0)
        return 0;
    int n = 1;
    for (size_t i = 0; i < p.len; i++)
        n += p.data[i] == '/';
    return n;
}

int pt_router_add_api(struct pt_router *r, const char *path, const char *host, void *data)
{
    r->apis = pt_pool_grow(r->pool, r->apis, sizeof(*r->apis), &r->capapis, r->napis + 1);
    struct api_slot *a = &r->apis[r->napis];
    memset(a, 0, sizeof(*a));
    a->path = pt_str_c(pt_pool_strdup(r->pool, path));
    a->host = host ? pt_pool_strdup(r->pool, host) : NULL;
    a->data = data;
    a->next = -1;
    int d = count_segments(a->path);
    if (d > r->max_depth)
        r->max_depth = d;
    return r->napis++;
}

/* ------------------------------------------------------- template parsing */

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

static bool seg_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '?' && c != '#' && c != '/' && c != '{' && c != '}';
}

/* Splits one template segment into parts; returns a message on error. */
static const char *parse_segment(struct pt_pool *pool, pt_str seg, struct part **out, int *nout)
{
    struct part *parts = NULL;
    int n = 0, cap = 0;
    size_t i = 0;
    while (i < seg.len) {
        parts = pt_pool_grow(pool, parts, sizeof(*parts), &cap, n + 1);
        if (seg.data[i] == '{') {
            size_t j = i + 1;
            while (j < seg.len && seg.data[j] != '}')
                j++;
            if (j >= seg.len)
                return "has an unclosed '{'";
            if (j == i + 1)
                return "has an empty parameter name '{}'";
            for (size_t k = i + 1; k < j; k++)
                if (!name_char(seg.data[k]))
                    return "has an invalid character in a parameter name";
            if (n && parts[n - 1].param)
                return "has two parameters with nothing between them";
            parts[n].text = (pt_str){seg.data + i + 1, j - i - 1};
            parts[n].param = true;
            n++;
            i = j + 1;
        } else {
            size_t j = i;
            while (j < seg.len && seg.data[j] != '{') {
                if (seg.data[j] == '}')
                    return "has a '}' without '{'";
                if (!seg_char((unsigned char)seg.data[j]) && seg.data[j] != '%')
                    return "has a character that must be percent-encoded";
                j++;
            }
            parts[n].text = (pt_str){seg.data + i, j - i};
            parts[n].param = false;
            n++;
            i = j;
        }
    }
    *out = parts;
    *nout = n;
    return NULL;
}

/* Most of a router's arrays hold one element (one literal child per path segment, one operation per
   node): the first allocation is exactly one, where pt_pool_grow would give four (a configuration of
   50,000 operations left megabytes of unused slots per generation). */
static void *grow_from_one(struct pt_pool *pool, void *arr, size_t size, int *cap, int need)
{
    if (*cap == 0 && need == 1) {
        arr = pt_pool_alloc(pool, size);
        if (arr)
            *cap = 1;
        return arr;
    }
    return pt_pool_grow(pool, arr, size, cap, need);
}

static struct rnode *lit_child(struct pt_router *r, struct rnode *node, pt_str seg)
{
    for (int i = 0; i < node->nlits; i++)
        if (pt_str_eq(node->lits[i].seg, seg))
            return node->lits[i].child;
    node->lits = grow_from_one(r->pool, node->lits, sizeof(*node->lits), &node->caplits, node->nlits + 1);
    struct rnode *c = pt_pool_calloc(r->pool, sizeof(*c));
    node->lits[node->nlits].seg = seg;
    node->lits[node->nlits].child = c;
    node->nlits++;
    return c;
}

static bool names_clash(pt_str *names, int n, pt_str name)
{
    for (int i = 0; i < n; i++)
        if (pt_str_eq(names[i], name))
            return true;
    return false;
}

const char *pt_router_add_op(struct pt_router *r, int api, const char *method, const char *tmpl_c, void *data,
                             void **clash)
{
    struct api_slot *a = &r->apis[api];
    char *tmpl = pt_pool_strdup(r->pool, tmpl_c);
    if (tmpl[0] != '/')
        return "urlTemplate must start with '/'";
    char *q = strchr(tmpl, '?');
    pt_str path = {tmpl, q ? (size_t)(q - tmpl) : strlen(tmpl)};
    pt_str *pnames = NULL;
    int npn = 0, cappn = 0;
    struct rnode *node = &a->root;
    bool wildcard = false;

    /* walk the template's segments; "/" alone is the API root, and a
       trailing slash is a segment of its own ("/items" != "/items/") */
    size_t i = 1;
    int depth = 0;
    while (path.len > 1) {
        size_t j = i;
        while (j < path.len && path.data[j] != '/')
            j++;
        pt_str seg = {path.data + i, j - i};
        if (++depth > PT_MAX_SEGMENTS)
            return "has too many segments";
        if (seg.len == 1 && seg.data[0] == '*') {
            if (j != path.len)
                return "may use '*' only as its last segment";
            wildcard = true;
            break;
        }
        if (seg.len == 0 && j != path.len)
            return "has an empty segment ('//')";
        if (seg.len == 0) /* trailing slash: a literal empty segment */
            node = lit_child(r, node, seg);
        else {
            struct part *parts;
            int nparts;
            const char *why = parse_segment(r->pool, seg, &parts, &nparts);
            if (why)
                return why;
            if (nparts == 1 && !parts[0].param) {
                if ((seg.len == 1 && seg.data[0] == '.') ||
                    (seg.len == 2 && seg.data[0] == '.' && seg.data[1] == '.'))
                    return "has a '.' or '..' segment";
                node = lit_child(r, node, seg);
            } else {
                for (int k = 0; k < nparts; k++)
                    if (parts[k].param) {
                        if (names_clash(pnames, npn, parts[k].text))
                            return "uses the same parameter name twice";
                        pnames = pt_pool_grow(r->pool, pnames, sizeof(*pnames), &cappn, npn + 1);
                        pnames[npn++] = parts[k].text;
                        if (npn > PT_MAX_PARAMS)
                            return "has more than 16 parameters";
                    }
                if (nparts == 1) {
                    if (!node->param)
                        node->param = pt_pool_calloc(r->pool, sizeof(*node->param));
                    node = node->param;
                } else {
                    struct rnode *c = NULL;
                    for (int k = 0; k < node->npats; k++) {
                        struct pat_edge *pe = &node->pats[k];
                        bool same = pe->nparts == nparts;
                        for (int m = 0; same && m < nparts; m++)
                            same = pe->parts[m].param == parts[m].param &&
                                   (parts[m].param || pt_str_eq(pe->parts[m].text, parts[m].text));
                        if (same) {
                            c = pe->child;
                            break;
                        }
                    }
                    if (!c) {
                        node->pats = grow_from_one(r->pool, node->pats, sizeof(*node->pats), &node->cappats,
                                                   node->npats + 1);
                        struct pat_edge *pe = &node->pats[node->npats++];
                        pe->parts = parts;
                        pe->nparts = nparts;
                        pe->key = seg;
                        pe->child = c = pt_pool_calloc(r->pool, sizeof(*c));
                    }
                    node = c;
                }
            }
        }
        if (j >= path.len)
            break;
        i = j + 1;
        if (i == path.len) {
            /* the template ends with '/': one more segment, empty, counted (a path with it must fit) */
            if (++depth > PT_MAX_SEGMENTS)
                return "has too many segments";
            node = lit_child(r, node, (pt_str){path.data + i, 0});
            break;
        }
    }

    /* query constraints: name=value, name={param} or a bare name */
    struct qcons *qc = NULL;
    int nq = 0, capq = 0;
    if (q) {
        char *s = q + 1;
        while (*s) {
            char *e = strchr(s, '&');
            size_t len = e ? (size_t)(e - s) : strlen(s);
            if (len == 0)
                return "has an empty query parameter";
            char *eq = memchr(s, '=', len);
            qc = pt_pool_grow(r->pool, qc, sizeof(*qc), &capq, nq + 1);
            struct qcons *c = &qc[nq++];
            memset(c, 0, sizeof(*c));
            c->name = (pt_str){s, eq ? (size_t)(eq - s) : len};
            if (c->name.len == 0)
                return "has a query parameter without a name";
            for (size_t k = 0; k < c->name.len; k++)
                if (!seg_char((unsigned char)c->name.data[k]) || c->name.data[k] == '=' ||
                    c->name.data[k] == '&')
                    return "has an invalid query parameter name";
            if (eq) {
                pt_str v = {eq + 1, len - (size_t)(eq + 1 - s)};
                if (v.len >= 2 && v.data[0] == '{' && v.data[v.len - 1] == '}') {
                    pt_str nm = {v.data + 1, v.len - 2};
                    if (nm.len == 0)
                        return "has an empty parameter name '{}'";
                    for (size_t k = 0; k < nm.len; k++)
                        if (!name_char(nm.data[k]))
                            return "has an invalid character in a parameter name";
                    if (names_clash(pnames, npn, nm))
                        return "uses the same parameter name twice";
                    c->param = true;
                    c->value = nm;
                } else {
                    if (memchr(v.data, '{', v.len) || memchr(v.data, '}', v.len))
                        return "has a query value mixing text and a parameter";
                    c->value = v;
                }
            } else
                c->value = PT_NULL_STR;
            for (int k = 0; k < nq - 1; k++)
                if (pt_str_eq(qc[k].name, c->name))
                    return "names the same query parameter twice";
            s += len + (e ? 1 : 0);
        }
    }

    struct term *t = wildcard ? &node->wild : &node->term;
    const char *m = strcmp(method, "*") ? pt_pool_strdup(r->pool, method) : NULL;
    for (int k = 0; k < t->n; k++) {
        struct entry *e = &t->e[k];
        bool same_m = (!m && !e->method) || (m && e->method && !strcmp(m, e->method));
        if (!same_m || e->nq != nq)
            continue;
        bool same_q = true;
        for (int x = 0; same_q && x < nq; x++) {
            bool found = false;
            for (int y = 0; y < nq; y++)
                if (pt_str_eq(e->q[y].name, qc[x].name) && e->q[y].param == qc[x].param &&
                    (qc[x].param || pt_str_eq(e->q[y].value, qc[x].value)))
                    found = true;
            same_q = found;
        }
        if (same_q) {
            if (clash)
                *clash = e->data;
            return "has the same method and URL template as another operation";
        }
    }
    t->e = grow_from_one(r->pool, t->e, sizeof(*t->e), &t->cap, t->n + 1);
    struct entry *e = &t->e[t->n++];
    e->method = m;
    e->q = qc;
    e->nq = nq;
    e->pnames = pnames;
    e->npnames = npn;
    e->data = data;
    return NULL;
}

/* ---------------------------------------------------------------- finish */

static int lit_cmp(const void *a, const void *b)
{
    const struct lit_edge *x = a, *y = b;
    size_t n = PT_MIN(x->seg.len, y->seg.len);
    int c = n ? memcmp(x->seg.data, y->seg.data, n) : 0;
    if (c)
        return c;
    return x->seg.len < y->seg.len ? -1 : x->seg.len > y->seg.len;
}

static int entry_cmp(const void *a, const void *b)
{
    /* more query constraints first: the most specific template wins */
    const struct entry *x = a, *y = b;
    return y->nq - x->nq;
}

static void finish_node(struct rnode *n)
{
    if (n->nlits > 1)
        qsort(n->lits, (size_t)n->nlits, sizeof(*n->lits), lit_cmp);
    if (n->term.n > 1)
        qsort(n->term.e, (size_t)n->term.n, sizeof(*n->term.e), entry_cmp);
    if (n->wild.n > 1)
        qsort(n->wild.e, (size_t)n->wild.n, sizeof(*n->wild.e), entry_cmp);
    for (int i = 0; i < n->nlits; i++)
        finish_node(n->lits[i].child);
    for (int i = 0; i < n->npats; i++)
        finish_node(n->pats[i].child);
    if (n->param)
        finish_node(n->param);
}

void pt_router_finish(struct pt_router *r)
{
    r->tsize = 16;
    while (r->tsize < (size_t)r->napis * 2)
        r->tsize *= 2;
    r->table = pt_pool_alloc(r->pool, sizeof(int) * r->tsize);
    for (size_t i = 0; i < r->tsize; i++)
        r->table[i] = -1;
    for (int i = 0; i < r->napis; i++) {
        struct api_slot *a = &r->apis[i];
        size_t h = pt_hash(a->path.data, a->path.len, false) & (r->tsize - 1);
        while (r->table[h] >= 0 && !pt_str_eq(r->apis[r->table[h]].path, a->path))
            h = (h + 1) & (r->tsize - 1);
        if (r->table[h] < 0)
            r->table[h] = i;
        else {
            /* same path, other host: host-bound APIs go first in the chain */
            int *pp = &r->table[h];
            if (!a->host)
                while (*pp >= 0)
                    pp = &r->apis[*pp].next;
            a->next = *pp;
            *pp = i;
        }
        finish_node(&a->root);
    }
}

/* ----------------------------------------------------------------- match */

struct mstate {
    pt_str segs[PT_MAX_SEGMENTS];
    int nsegs;
    pt_str caps[PT_MAX_PARAMS];
    int ncaps;
    pt_str method;
    pt_str query;
    struct pt_match *m;
};

/* Finds a query parameter's raw value; false when absent. */
static bool query_get(pt_str query, pt_str name, pt_str *value)
{
    size_t i = 0;
    while (i <= query.len && query.len) {
        size_t j = i;
        while (j < query.len && query.data[j] != '&')
            j++;
        pt_str item = {query.data + i, j - i};
        const char *eq = memchr(item.data, '=', item.len);
        pt_str k = {item.data, eq ? (size_t)(eq - item.data) : item.len};
        if (pt_str_eq(k, name)) {
            *value = eq ? (pt_str){eq + 1, item.len - k.len - 1} : (pt_str){item.data + item.len, 0};
            return true;
        }
        if (j >= query.len)
            break;
        i = j + 1;
    }
    return false;
}

static bool pick(struct mstate *s, const struct term *t)
{
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < t->n; k++) {
            const struct entry *e = &t->e[k];
            if (pass == 0 ? !e->method || !pt_str_eq(pt_str_c(e->method), s->method) : e->method != NULL)
                continue;
            pt_str qv[PT_MAX_PARAMS];
            int nqv = 0;
            bool ok = true;
            for (int x = 0; ok && x < e->nq; x++) {
                pt_str v;
                if (!query_get(s->query, e->q[x].name, &v))
                    ok = false;
                else if (e->q[x].param) {
                    if (s->ncaps + nqv < PT_MAX_PARAMS)
                        qv[nqv++] = v;
                } else if (e->q[x].value.data && !pt_str_eq(v, e->q[x].value))
                    ok = false;
            }
            if (!ok)
                continue;
            struct pt_match *m = s->m;
            m->op = e->data;
            m->nparams = 0;
            for (int x = 0; x < s->ncaps && x < e->npnames; x++) {
                m->params[m->nparams].name = e->pnames[x];
                m->params[m->nparams].value = s->caps[x];
                m->nparams++;
            }
            int qi = 0;
            for (int x = 0; x < e->nq && m->nparams < PT_MAX_PARAMS; x++)
                if (e->q[x].param) {
                    m->params[m->nparams].name = e->q[x].value;
                    m->params[m->nparams].value = qv[qi++];
                    m->nparams++;
                }
            return true;
        }
    }
    return false;
}

/* Matches parts[i..] against seg from pos, pushing captures.  A parameter
   followed by a literal tries each place the literal occurs, shortest first,
   and backtracks; the last parameter takes the rest.  Parameters are never
   empty. */
static bool match_parts(struct mstate *s, const struct part *parts, int nparts, int i, pt_str seg, size_t pos)
{
    if (i == nparts)
        return pos == seg.len;
    const struct part *p = &parts[i];
    if (!p->param) {
        if (seg.len - pos < p->text.len || memcmp(seg.data + pos, p->text.data, p->text.len))
            return false;
        return match_parts(s, parts, nparts, i + 1, seg, pos + p->text.len);
    }
    if (s->ncaps >= PT_MAX_PARAMS)
        return false;
    int slot = s->ncaps++;
    if (i + 1 == nparts) {
        s->caps[slot] = (pt_str){seg.data + pos, seg.len - pos};
        if (seg.len > pos)
            return true;
    } else {
        const pt_str lit = parts[i + 1].text; /* a parameter is always followed by a literal */
        for (size_t end = pos + 1; end + lit.len <= seg.len; end++) {
            if (memcmp(seg.data + end, lit.data, lit.len))
                continue;
            s->caps[slot] = (pt_str){seg.data + pos, end - pos};
            if (match_parts(s, parts, nparts, i + 1, seg, end))
                return true;
            s->ncaps = slot + 1;
        }
    }
    s->ncaps = slot;
    return false;
}

static bool match_pattern(struct mstate *s, const struct pat_edge *pe, pt_str seg)
{
    int start = s->ncaps;
    if (match_parts(s, pe->parts, pe->nparts, 0, seg, 0))
        return true;
    s->ncaps = start;
    return false;
}

static bool match_node(struct mstate *s, const struct rnode *n, int i)
{
    if (i == s->nsegs)
        return (n->term.n && pick(s, &n->term)) || (n->wild.n && pick(s, &n->wild));
    pt_str seg = s->segs[i];
    /* literal: binary search */
    int lo = 0, hi = n->nlits - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        struct lit_edge key = {seg, NULL};
        int c = lit_cmp(&key, &n->lits[mid]);
        if (c == 0) {
            if (match_node(s, n->lits[mid].child, i + 1))
                return true;
            break;
        }
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    for (int k = 0; k < n->npats; k++) {
        int save = s->ncaps;
        if (match_pattern(s, &n->pats[k], seg)) {
            if (match_node(s, n->pats[k].child, i + 1))
                return true;
            s->ncaps = save;
        }
    }
    if (n->param && seg.len > 0 && s->ncaps < PT_MAX_PARAMS) {
        s->caps[s->ncaps++] = seg;
        if (match_node(s, n->param, i + 1))
            return true;
        s->ncaps--;
    }
    return n->wild.n && pick(s, &n->wild);
}

static const struct api_slot *find_api(const struct pt_router *r, pt_str host, pt_str path, pt_str *rest)
{
    /* candidate suffixes: path without its leading '/', cut at '/' boundaries,
       longest first, never deeper than the deepest API suffix */
    pt_str p = {path.data + 1, path.len - 1};
    size_t ends[PT_MAX_SEGMENTS + 1];
    int nends = 0;
    int depth = 0;
    for (size_t i = 0; i <= p.len && depth <= r->max_depth; i++)
        if (i == p.len || p.data[i] == '/') {
            if (nends < PT_MAX_SEGMENTS)
                ends[nends++] = i;
            depth++;
        }
    for (int k = nends; k >= 0; k--) {
        size_t len = k == 0 ? 0 : ends[k - 1];
        if (k > 0 && len == 0)
            continue; /* "//x": an empty first segment is never a suffix */
        pt_str cand = {p.data, len};
        size_t h = pt_hash(cand.data, cand.len, false) & (r->tsize - 1);
        while (r->table[h] >= 0) {
            const struct api_slot *a = &r->apis[r->table[h]];
            if (pt_str_eq(a->path, cand)) {
                for (int idx = r->table[h]; idx >= 0; idx = r->apis[idx].next) {
                    a = &r->apis[idx];
                    if (!a->host || pt_str_ieq(pt_str_c(a->host), host)) {
                        size_t off = len ? 1 + len : 0; /* the root API keeps the whole path */
                        *rest = (pt_str){path.data + off, path.len - off};
                        return a;
                    }
                }
                break;
            }
            h = (h + 1) & (r->tsize - 1);
        }
    }
    return NULL;
}

static enum pt_route_result match_ops(const struct api_slot *a, pt_str method, pt_str rest, pt_str query,
                                      struct pt_match *m);

enum pt_route_result pt_router_match(const struct pt_router *r, pt_str host, pt_str method, pt_str path,
                                     pt_str query, struct pt_match *m)
{
    m->api = m->op = NULL;
    m->nparams = 0;
    if (path.len == 0 || path.data[0] != '/' || !r->table)
        return PT_ROUTE_NO_API;
    pt_str rest;
    const struct api_slot *a = find_api(r, host, path, &rest);
    if (!a)
        return PT_ROUTE_NO_API;
    m->api = a->data;
    return match_ops(a, method, rest, query, m);
}

enum pt_route_result pt_router_match_in(const struct pt_router *r, int api, pt_str method, pt_str rest,
                                        pt_str query, struct pt_match *m)
{
    m->op = NULL;
    m->nparams = 0;
    if (api < 0 || api >= r->napis)
        return PT_ROUTE_NO_API;
    m->api = r->apis[api].data;
    return match_ops(&r->apis[api], method, rest, query, m);
}

static enum pt_route_result match_ops(const struct api_slot *a, pt_str method, pt_str rest, pt_str query,
                                      struct pt_match *m)
{
    m->rest = rest;
    struct mstate s;
    s.nsegs = 0;
    s.ncaps = 0;
    s.method = method;
    s.query = query;
    s.m = m;
    /* rest is "" or "/..."; "" and "/" are both the API root */
    if (rest.len > 1) {
        size_t i = 1;
        for (;;) {
            size_t j = i;
            while (j < rest.len && rest.data[j] != '/')
                j++;
            if (s.nsegs == PT_MAX_SEGMENTS)
                return PT_ROUTE_NO_OPERATION;
            s.segs[s.nsegs++] = (pt_str){rest.data + i, j - i};
            if (j >= rest.len)
                break;
            i = j + 1;
        }
    }
    if (match_node(&s, &a->root, 0))
        return PT_ROUTE_OK;
    m->op = NULL;
    return PT_ROUTE_NO_OPERATION;
}
