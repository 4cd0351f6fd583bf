/*
 * pt_utf8 -- the one check of a UTF-8 sequence, for every file that repairs,
 * escapes or validates text: RFC 3629's well-formed sequences only (shortest
 * form, no surrogates, nothing above U+10FFFF).  libc only, so the base
 * files the plugins compile too (pt_graphql.c) include it as well.
 */
#ifndef PT_UTF8_H
#define PT_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The length (1 to 4) of the well-formed sequence at p, which has n > 0
   bytes left, with its code point in *out; 0 when there is none. */
static inline size_t pt_utf8_next(const unsigned char *p, size_t n, uint32_t *out)
{
    unsigned char c = p[0];
    if (c < 0x80) {
        *out = c;
        return 1;
    }
    size_t len;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000, cp = c & 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    *out = cp;
    return len;
}

/* The length (1 to 4) of the well-formed sequence at p, which has n > 0
   bytes left, or 0 when there is none. */
static inline size_t pt_utf8_seq(const unsigned char *p, size_t n)
{
    uint32_t cp;
    return pt_utf8_next(p, n, &cp);
}

#endif
