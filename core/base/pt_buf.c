/*
 * pt_buf -- a growable byte buffer in an arena.
 */
#include "base/pt_buf.h"

void pt_buf_init(struct pt_buf *b, struct pt_pool *pool, size_t cap)
{
    b->pool = pool;
    b->cap = cap ? cap : 256;
    b->p = pt_pool_alloc(pool, b->cap);
    b->n = 0;
    if (PT_UNLIKELY(!b->p)) /* the pool is out of memory (pt_pool_failed): the buffer stays empty */
        b->cap = 0;
}

void pt_buf_add(struct pt_buf *b, const void *data, size_t n)
{
    if (n == 0)
        return; /* data may be NULL for an empty slice */
    if (PT_UNLIKELY(b->n + n > b->cap)) {
        size_t ncap = b->cap ? b->cap * 2 : 256;
        while (ncap < b->n + n)
            ncap *= 2;
        char *np = pt_pool_alloc(b->pool, ncap);
        if (PT_UNLIKELY(!np))
            return; /* the pool is out of memory (pt_pool_failed): what follows is dropped */
        if (b->n)
            memcpy(np, b->p, b->n);
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

void pt_buf_u64(struct pt_buf *b, uint64_t v)
{
    char tmp[24];
    int i = 24;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    pt_buf_add(b, tmp + i, (size_t)(24 - i));
}

void pt_buf_hex(struct pt_buf *b, uint64_t v)
{
    static const char hx[] = "0123456789abcdef";
    char tmp[20];
    int i = 20;
    do {
        tmp[--i] = hx[v & 15];
        v >>= 4;
    } while (v);
    pt_buf_add(b, tmp + i, (size_t)(20 - i));
}

void pt_buf_json(struct pt_buf *b, pt_str s)
{
    static const char hx[] = "0123456789abcdef";
    size_t start = 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.data[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f)
            continue;
        pt_buf_add(b, s.data + start, i - start);
        start = i + 1;
        char esc[6] = {'\\', 'u', '0', '0', hx[c >> 4], hx[c & 15]};
        if (c == '"' || c == '\\') {
            char e2[2] = {'\\', (char)c};
            pt_buf_add(b, e2, 2);
        } else if (c == '\n')
            pt_buf_lit(b, "\\n");
        else if (c == '\r')
            pt_buf_lit(b, "\\r");
        else if (c == '\t')
            pt_buf_lit(b, "\\t");
        else
            pt_buf_add(b, esc, 6);
    }
    pt_buf_add(b, s.data + start, s.len - start);
}
