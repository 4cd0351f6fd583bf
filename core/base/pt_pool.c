/*
 * pt_pool -- bump allocator over a list of chunks.
 *
 * `head` is the chunk allocations come from; every chunk is on one list
 * starting at head.  Blocks larger than a quarter chunk get a chunk of their
 * own, linked behind head so the current chunk keeps filling up.
 *
 * The cap is soft: an allocation past it is still served (from malloc), and
 * the pool is marked failed, so that code in the middle of building
 * something finishes it and the pool's owner ends the work at its next
 * check (a request answers 500 OutOfMemory between two statements).  When
 * malloc itself fails, the pool is marked the same way and small blocks
 * come from a reserve allocated with the pool; only a block larger than
 * what is left of it is NULL.
 */
#include "base/pt_pool.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

struct chunk {
    struct chunk *next;
    size_t size;
    size_t used;
    max_align_t data[];
};

#define RESERVE 4096

struct pt_pool {
    struct chunk *head;
    struct chunk *first; /* kept across resets */
    size_t chunk_size;
    size_t total;
    size_t limit; /* 0: none */
    bool failed;
    size_t reserve_used;
    max_align_t reserve[RESERVE / sizeof(max_align_t)];
};

static struct chunk *chunk_new(size_t size)
{
    struct chunk *c = malloc(sizeof(*c) + size);
    if (!c)
        return NULL;
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

struct pt_pool *pt_pool_new(size_t chunk)
{
    struct pt_pool *p = malloc(sizeof(*p));
    if (!p)
        return NULL;
    if (chunk < 256)
        chunk = 256;
    p->chunk_size = chunk;
    p->first = p->head = chunk_new(chunk);
    p->total = 0;
    p->limit = 0;
    p->failed = false;
    p->reserve_used = 0;
    if (!p->first) {
        free(p);
        return NULL;
    }
    return p;
}

/* Debug builds fill released pool memory with 0xA5, so a pointer kept past
   its request reads garbage at once instead of stale data. */
static void poison(struct chunk *c)
{
#ifdef PT_DEBUG
    memset(c->data, 0xA5, c->used);
#else
    (void)c;
#endif
}

void pt_pool_reset(struct pt_pool *p)
{
    struct chunk *c = p->head;
    while (c) {
        struct chunk *next = c->next;
        poison(c);
        if (c != p->first)
            free(c);
        c = next;
    }
    p->head = p->first;
    p->first->used = 0;
    p->first->next = NULL;
    p->total = 0;
    p->failed = false;
    p->reserve_used = 0;
}

void pt_pool_set_limit(struct pt_pool *p, size_t bytes)
{
    p->limit = bytes;
}

bool pt_pool_failed(const struct pt_pool *p)
{
    return p->failed;
}

/* An allocation the pool cannot serve: marked, and served from the reserve
   while it lasts. */
static void *refuse(struct pt_pool *p, size_t n)
{
    p->failed = true;
    if (n > RESERVE - p->reserve_used)
        return NULL;
    void *r = (char *)p->reserve + p->reserve_used;
    p->reserve_used += n;
    return r;
}

void pt_pool_free(struct pt_pool *p)
{
    if (!p)
        return;
    pt_pool_reset(p);
    free(p->first);
    free(p);
}

void *pt_pool_alloc(struct pt_pool *p, size_t n)
{
    PT_DCHECK(p && p->head && p->head->used <= p->head->size);
    if (PT_UNLIKELY(n > SIZE_MAX / 2))
        return refuse(p, n);
    n = (n + 15) & ~(size_t)15;
    if (PT_UNLIKELY(p->limit && p->total + n > p->limit))
        p->failed = true; /* past the cap: served, and the owner ends the work at its next check */
    struct chunk *c = p->head;
    if (PT_UNLIKELY(c->used + n > c->size)) {
        struct chunk *nc;
        if (n > p->chunk_size / 4) {
            nc = chunk_new(n);
            if (!nc)
                return refuse(p, n);
            nc->used = n;
            nc->next = c->next;
            c->next = nc;
            p->total += n;
            return nc->data;
        }
        nc = chunk_new(p->chunk_size);
        if (!nc)
            return refuse(p, n);
        nc->next = c;
        p->head = c = nc;
    }
    void *r = (char *)c->data + c->used;
    c->used += n;
    p->total += n;
    return r;
}

void *pt_pool_calloc(struct pt_pool *p, size_t n)
{
    void *r = pt_pool_alloc(p, n);
    if (r)
        memset(r, 0, n);
    return r;
}

char *pt_pool_strndup(struct pt_pool *p, const char *s, size_t n)
{
    char *r = pt_pool_alloc(p, n + 1);
    if (!r)
        return NULL;
    if (n)
        memcpy(r, s, n);
    r[n] = '\0';
    return r;
}

pt_str pt_pool_str(struct pt_pool *p, const char *s, size_t n)
{
    char *r = pt_pool_strndup(p, s ? s : "", s ? n : 0);
    return r ? (pt_str){r, s ? n : 0} : (pt_str){"", 0};
}

char *pt_pool_strdup(struct pt_pool *p, const char *s)
{
    return s ? pt_pool_strndup(p, s, strlen(s)) : NULL;
}

char *pt_pool_printf(struct pt_pool *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *r = pt_pool_alloc(p, (size_t)n + 1);
    if (!r)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(r, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return r;
}

size_t pt_pool_used(const struct pt_pool *p)
{
    return p->total;
}

void *pt_pool_grow(struct pt_pool *p, void *arr, size_t size, int *cap, int need)
{
    if (need <= *cap)
        return arr;
    int ncap = *cap ? *cap : 4;
    while (ncap < need)
        ncap *= 2;
    void *n = pt_pool_alloc(p, size * (size_t)ncap);
    if (!n)
        return NULL;
    if (arr && *cap)
        memcpy(n, arr, size * (size_t)*cap);
    *cap = ncap;
    return n;
}
