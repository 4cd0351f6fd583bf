/*
 * url.c -- percent-encoding and decoding, and raw query strings split into
 * their '&'-separated segments (each kept byte for byte).
 */
#include "ptlib.h"

#include <string.h>

static bool unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

void ptl_pct_encode(struct ptl_buf *b, pt_bytes s, const char *keep)
{
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.data[i];
        if (unreserved(c) || (keep && c && strchr(keep, c)))
            ptl_buf_ch(b, (char)c);
        else {
            char e[3] = {'%', ptl_hex_upper[c >> 4], ptl_hex_upper[c & 15]};
            ptl_buf_add(b, e, 3);
        }
    }
}

pt_bytes ptl_pct_decode(const struct pt_api *api, pt_call *call, pt_bytes s)
{
    if (!memchr(s.data ? s.data : "", '%', s.len))
        return s;
    char *d = api->alloc(call, s.len + 1);
    if (!d)
        return s;
    size_t k = 0;
    for (size_t i = 0; i < s.len; i++) {
        int h, l;
        if (s.data[i] == '%' && i + 2 < s.len && (h = ptl_hexval(s.data[i + 1])) >= 0 &&
            (l = ptl_hexval(s.data[i + 2])) >= 0) {
            d[k++] = (char)(h * 16 + l);
            i += 2;
        } else
            d[k++] = s.data[i];
    }
    return (pt_bytes){d, k};
}

int ptl_query_split(const struct pt_api *api, pt_call *call, pt_bytes q, struct ptl_qseg **out)
{
    int n = 0;
    for (size_t i = 0; i < q.len; i++)
        if (q.data[i] == '&')
            n++;
    struct ptl_qseg *v = api->alloc(call, sizeof(*v) * (size_t)(n + 1));
    *out = v;
    if (!v)
        return -1;
    int k = 0;
    size_t start = 0;
    for (size_t i = 0; i <= q.len; i++) {
        if (i < q.len && q.data[i] != '&')
            continue;
        if (i > start) {
            pt_bytes raw = {q.data + start, i - start};
            const char *eq = memchr(raw.data, '=', raw.len);
            v[k].raw = raw;
            v[k].key = (pt_bytes){raw.data, eq ? (size_t)(eq - raw.data) : raw.len};
            k++;
        }
        start = i + 1;
    }
    return k;
}

bool ptl_qkey_is(const struct pt_api *api, pt_call *call, pt_bytes rawkey, pt_bytes name)
{
    return ptl_bytes_eq(ptl_pct_decode(api, call, rawkey), name);
}

void ptl_query_join(struct ptl_buf *b, pt_bytes seg)
{
    if (b->n)
        ptl_buf_ch(b, '&');
    ptl_buf_add(b, seg.data, seg.len);
}
