/*
 * pt_sbuf -- a growable NUL-terminated string on the heap.
 */
#include "base/pt_sbuf.h"

#include <stdlib.h>
#include <string.h>

void pt_sbuf_add(struct pt_sbuf *b, const void *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : b->first ? b->first : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n) /* s may be NULL for an empty slice */
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void pt_sbuf_str(struct pt_sbuf *b, const char *s)
{
    pt_sbuf_add(b, s, strlen(s));
}
