/*
 * bytes.c -- comparing and trimming pt_bytes (which are not NUL-terminated),
 * and the RFC 9110 token check used for header names and methods.
 */
#include "ptlib.h"

#include <string.h>

bool ptl_bytes_eq(pt_bytes a, pt_bytes b)
{
    return a.len == b.len && (!a.len || !memcmp(a.data, b.data, a.len));
}

bool ptl_bytes_is(pt_bytes a, const char *b)
{
    return a.len == strlen(b) && !memcmp(a.data, b, a.len);
}

char ptl_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

bool ptl_bytes_ieq(pt_bytes a, const char *b)
{
    size_t n = strlen(b);
    if (a.len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (ptl_lower(a.data[i]) != ptl_lower(b[i]))
            return false;
    return true;
}

pt_bytes ptl_trim(pt_bytes b)
{
    while (b.len && (b.data[0] == ' ' || b.data[0] == '\t')) {
        b.data++;
        b.len--;
    }
    while (b.len && (b.data[b.len - 1] == ' ' || b.data[b.len - 1] == '\t'))
        b.len--;
    return b;
}

bool ptl_is_token(const char *s, size_t n)
{
    if (!n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c && strchr("!#$%&'*+-.^_`|~", c))))
            return false;
    }
    return true;
}
