/*
 * pt_pool -- arenas.
 *
 * A pool hands out memory that lives until the pool is reset or freed: one
 * per request, one per configuration generation.  Nothing allocated from a
 * pool is freed individually.  pt_pool_reset() keeps the first chunk, so a
 * pooled request arena reused by the next request costs no malloc at all.
 */
#ifndef PT_POOL_H
#define PT_POOL_H

#include "base/pt.h"

struct pt_pool;

/* A new pool whose chunks are `chunk` bytes (large requests get their own). */
struct pt_pool *pt_pool_new(size_t chunk);
void pt_pool_free(struct pt_pool *pool);
/* Frees everything but the first chunk. */
void pt_pool_reset(struct pt_pool *pool);
/* A soft cap on the bytes the pool hands out (0: none); reset keeps it.
   Allocations past it are still served, and mark the pool failed. */
void pt_pool_set_limit(struct pt_pool *pool, size_t bytes);
/* Has the pool passed its cap, or had malloc refuse it, since it was
   created or reset?  Its owner ends the work at its next check. */
bool pt_pool_failed(const struct pt_pool *pool);
/* 16-byte aligned memory; NULL only when malloc failed and the pool's small
   reserve cannot hold the block either (see pt_pool_failed). */
void *pt_pool_alloc(struct pt_pool *pool, size_t n);
void *pt_pool_calloc(struct pt_pool *pool, size_t n);
char *pt_pool_strndup(struct pt_pool *pool, const char *s, size_t n);
char *pt_pool_strdup(struct pt_pool *pool, const char *s);
/* A copy of s as a pt_str; an empty one (never NULL with a length) when
   malloc refused the pool. */
pt_str pt_pool_str(struct pt_pool *pool, const char *s, size_t n);
char *pt_pool_printf(struct pt_pool *pool, const char *fmt, ...) PT_PRINTF(2, 3);
/* Bytes handed out so far (for tests and limits). */
size_t pt_pool_used(const struct pt_pool *pool);

/* Grows a pool-owned array by doubling: *arr has *cap elements of `size`. */
void *pt_pool_grow(struct pt_pool *pool, void *arr, size_t size, int *cap, int need);

#endif
