/*
 * buf.c -- a growable byte buffer in the request arena (struct ptl_buf).
 * It doubles when full; an allocation that fails marks it `oom` and drops
 * every later addition, so a writer checks once, at the end.
 */
#include "ptlib.h"

#include <string.h>

void ptl_buf_init(struct ptl_buf *b, const struct pt_api *api, pt_call *call, size_t hint)
{
    *b = (struct ptl_buf){api, call, NULL, 0, 0, false};
    b->cap = hint < 64 ? 64 : hint;
    b->p = api->alloc(call, b->cap);
    if (!b->p) {
        b->cap = 0;
        b->oom = true;
    }
}

bool ptl_buf_reserve(struct ptl_buf *b, size_t extra)
{
    if (b->oom)
        return false;
    if (extra <= b->cap - b->n)
        return true;
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap - b->n < extra) {
        if (ncap > SIZE_MAX / 2) {
            b->oom = true;
            return false;
        }
        ncap *= 2;
    }
    char *np = b->api->alloc(b->call, ncap);
    if (!np) {
        b->oom = true;
        return false;
    }
    if (b->n)
        memcpy(np, b->p, b->n);
    b->p = np;
    b->cap = ncap;
    return true;
}

void ptl_buf_add(struct ptl_buf *b, const void *p, size_t n)
{
    if (n && ptl_buf_reserve(b, n)) {
        memcpy(b->p + b->n, p, n);
        b->n += n;
    }
}

void ptl_buf_ch(struct ptl_buf *b, char c)
{
    if (ptl_buf_reserve(b, 1))
        b->p[b->n++] = c;
}

void ptl_buf_str(struct ptl_buf *b, const char *s)
{
    ptl_buf_add(b, s, strlen(s));
}

pt_bytes ptl_buf_bytes(const struct ptl_buf *b)
{
    return (pt_bytes){b->p ? b->p : "", b->n};
}
