/*
 * pt_sbuf -- a growable NUL-terminated string on the heap (malloc), for
 * threads that have no arena: the mail thread's messages, the log sinks'
 * batches.  An allocation failure sets `failed` and what follows is
 * dropped; the owner checks it once at the end and frees `p`.
 */
#ifndef PT_SBUF_H
#define PT_SBUF_H

#include <stdbool.h>
#include <stddef.h>

struct pt_sbuf {
    char *p;      /* NUL-terminated once anything was added; NULL before */
    size_t len;   /* bytes in p, not counting the NUL */
    size_t cap;   /* bytes allocated */
    size_t first; /* the first allocation (0: 256), for owners that know they write a lot */
    bool failed;
};

void pt_sbuf_add(struct pt_sbuf *b, const void *s, size_t n);
void pt_sbuf_str(struct pt_sbuf *b, const char *s);

#endif
