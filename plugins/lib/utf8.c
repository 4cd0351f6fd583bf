/*
 * utf8.c -- one UTF-8 code point at a time: strict decoding (no overlong
 * forms, surrogates or values past U+10FFFF) and encoding.
 */
#include "ptlib.h"

size_t ptl_utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (!n)
        return 0;
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if ((c & 0xE0) == 0xC0) {
        len = 2;
        v = c & 0x1F;
        min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3;
        v = c & 0x0F;
        min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4;
        v = c & 0x07;
        min = 0x10000;
    } else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
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
