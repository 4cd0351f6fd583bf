/*
 * pt_buf -- a growable byte buffer in an arena: heads, JSON, log lines.
 * An arena that cannot grow it (pt_pool_failed) leaves it short, never
 * written through NULL.
 */
#ifndef PT_BUF_H
#define PT_BUF_H

#include "base/pt.h"
#include "base/pt_pool.h"

/* A growable byte buffer in a pool. */
struct pt_buf {
    char *p;
    size_t n, cap;
    struct pt_pool *pool;
};

void pt_buf_init(struct pt_buf *b, struct pt_pool *pool, size_t cap);
void pt_buf_add(struct pt_buf *b, const void *data, size_t n);
static inline void pt_buf_str(struct pt_buf *b, pt_str s)
{
    pt_buf_add(b, s.data, s.len);
}
/* Appends a string literal (anything else does not compile). */
#define pt_buf_lit(b, lit) pt_buf_add((b), "" lit, sizeof("" lit) - 1)
void pt_buf_u64(struct pt_buf *b, uint64_t v);
void pt_buf_hex(struct pt_buf *b, uint64_t v);
/* Appends s as the inside of a JSON string (quotes not included). */
void pt_buf_json(struct pt_buf *b, pt_str s);

#endif
