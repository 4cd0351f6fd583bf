/*
 * pt_str -- byte strings: the characters HTTP allows in a token.
 *
 * The pt_str type and its small helpers are inline in pt.h; this file holds
 * the tables they share with the HTTP parser.
 */
#include "base/pt.h"

#include <stdio.h>
#include <stdlib.h>

/* RFC 9110 tchar: the bytes of a token (method, header name, parameter). */
const uint8_t pt_str_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1, ['-'] = 1,
    ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,  ['0'] = 1, ['1'] = 1, ['2'] = 1,
    ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1,  ['9'] = 1, ['A'] = 1, ['B'] = 1,
    ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,  ['I'] = 1, ['J'] = 1, ['K'] = 1,
    ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1,  ['R'] = 1, ['S'] = 1, ['T'] = 1,
    ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,  ['a'] = 1, ['b'] = 1, ['c'] = 1,
    ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,  ['j'] = 1, ['k'] = 1, ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,  ['s'] = 1, ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

bool pt_str_is_token(pt_str s)
{
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (!pt_str_tchar[(unsigned char)s.data[i]])
            return false;
    return true;
}

int pt_str_distance(pt_str a, pt_str b)
{
    enum { MAXN = 64 };
    size_t an = a.len < MAXN ? a.len : MAXN, bn = b.len < MAXN ? b.len : MAXN;
    int row[MAXN + 1];
    for (size_t j = 0; j <= bn; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= an; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= bn; j++) {
            int up = row[j];
            int cost = !pt_str_ieq((pt_str){a.data + i - 1, 1}, (pt_str){b.data + j - 1, 1});
            int best = diag + cost;
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[bn];
}

size_t pt_str_utf8_cut(char *buf, size_t size)
{
    static const char more[] = "\u2026";
    size_t ml = sizeof(more) - 1;
    if (size == 0)
        return 0;
    size_t k = size - 1 >= ml ? size - 1 - ml : size - 1;
    /* buf[k] is the first byte left out: not the inside of a character */
    while (k > 0 && ((unsigned char)buf[k] & 0xc0) == 0x80)
        k--;
    if (k + ml < size) {
        memcpy(buf + k, more, ml);
        k += ml;
    }
    buf[k] = '\0';
    return k;
}

size_t pt_str_vfmt(char *buf, size_t size, const char *fmt, va_list ap)
{
    if (size == 0)
        return 0;
    int w = vsnprintf(buf, size, fmt, ap);
    if (w < 0) {
        buf[0] = '\0';
        return 0;
    }
    return (size_t)w < size ? (size_t)w : pt_str_utf8_cut(buf, size);
}

size_t pt_str_fmt(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t n = pt_str_vfmt(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

void pt_str_sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    const char *p = base;
    size_t i = 1;
    while (i < n && cmp(p + (i - 1) * size, p + i * size) <= 0)
        i++;
    if (i < n)
        qsort(base, n, size, cmp);
}
