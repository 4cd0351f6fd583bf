/*
 * utf8.c -- one UTF-8 code point at a time: strict decoding (no overlong
 * forms, surrogates or values past U+10FFFF: the core's base/pt_utf8.h) and
 * encoding.
 */
#include "ptlib.h"

#include "pt_utf8.h"

size_t ptl_utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    return n ? pt_utf8_next(s, n, cp) : 0; /* the core's one decoder (base/pt_utf8.h) */
}

void ptl_utf8_put(struct ptl_buf *b, uint32_t cp)
{
    char e[4];
    size_t n;
    if (cp < 0x80) {
        e[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        e[0] = (char)(0xC0 | (cp >> 6));
        e[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        e[0] = (char)(0xE0 | (cp >> 12));
        e[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        e[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        e[0] = (char)(0xF0 | (cp >> 18));
        e[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        e[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        e[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    ptl_buf_add(b, e, n);
}
