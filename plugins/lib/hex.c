/*
 * hex.c -- hex digits: the two alphabets, reading one or four digits,
 * writing bytes as upper-case hex.
 */
#include "ptlib.h"

const char ptl_hex_upper[17] = "0123456789ABCDEF";
const char ptl_hex_lower[17] = "0123456789abcdef";

int ptl_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ptl_hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int h = ptl_hexval(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

void ptl_hex_encode(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = ptl_hex_upper[d[i] >> 4];
        out[2 * i + 1] = ptl_hex_upper[d[i] & 15];
    }
    out[2 * n] = '\0';
}
