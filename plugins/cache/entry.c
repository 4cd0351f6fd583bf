/*
 * entry.c -- a cached response as bytes, the same in the internal cache and
 * in Redis:
 *
 *   "PTC1"  magic and version
 *   u32     status
 *   u64     stored at (wall clock, s)     u64  time to live (s)
 *   u32 n + bytes                          the reason phrase
 *   u32     header count, then per header  u32 n + name, u32 n + value
 *   u32 n + bytes                          the body (exactly to the end)
 *
 * Integers are little-endian whatever the machine, so a Redis shared by
 * several nodes reads the same.  The decoder trusts nothing: a value that
 * someone else wrote under our key, or that was cut, or whose header names
 * and values the core would refuse, is a miss.
 */
#include "cache.h"

#include <string.h>

#define MAGIC "PTC1"
/* More headers than a head of limits.headerSize (1 MiB at most) can hold: a damaged entry. */
#define MAX_HEADERS 4096

static void put_u32(struct ptl_buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    ptl_buf_add(b, x, 4);
}

static void put_u64(struct ptl_buf *b, uint64_t v)
{
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static void put_bytes(struct ptl_buf *b, pt_bytes s)
{
    put_u32(b, (uint32_t)s.len);
    ptl_buf_add(b, s.data, s.len);
}

int cache_entry_encode(const struct pt_api *api, pt_call *call, const struct cache_entry *e, pt_bytes *out)
{
    size_t need = 4 + 4 + 16 + 4 + e->reason.len + 4 + 4 + e->body.len;
    for (int i = 0; i < e->nheaders; i++)
        need += 8 + e->names[i].len + e->values[i].len;
    struct ptl_buf b;
    ptl_buf_init(&b, api, call, need);
    ptl_buf_lit(&b, MAGIC);
    put_u32(&b, (uint32_t)e->status);
    put_u64(&b, (uint64_t)e->stored_at);
    put_u64(&b, (uint64_t)e->ttl);
    put_bytes(&b, e->reason);
    put_u32(&b, (uint32_t)e->nheaders);
    for (int i = 0; i < e->nheaders; i++) {
        put_bytes(&b, e->names[i]);
        put_bytes(&b, e->values[i]);
    }
    put_bytes(&b, e->body);
    if (b.oom)
        return -1;
    *out = ptl_buf_bytes(&b);
    return 0;
}

/* A reader over the entry's bytes; `bad` once anything did not fit. */
struct rd {
    const unsigned char *p;
    size_t n;
    int bad;
};

static uint32_t get_u32(struct rd *r)
{
    if (r->bad || r->n < 4) {
        r->bad = 1;
        return 0;
    }
    uint32_t v =
        (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
    r->p += 4;
    r->n -= 4;
    return v;
}

static uint64_t get_u64(struct rd *r)
{
    uint64_t lo = get_u32(r);
    return lo | (uint64_t)get_u32(r) << 32;
}

static pt_bytes get_bytes(struct rd *r)
{
    uint32_t len = get_u32(r);
    if (r->bad || len > r->n) {
        r->bad = 1;
        return (pt_bytes){"", 0};
    }
    pt_bytes s = {(const char *)r->p, len};
    r->p += len;
    r->n -= len;
    return s;
}

/* A field value the core would accept: no control bytes but horizontal tab. */
static int value_ok(pt_bytes v)
{
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.data[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

int cache_entry_decode(const struct pt_api *api, pt_call *call, pt_bytes in, struct cache_entry *e)
{
    memset(e, 0, sizeof(*e));
    if (in.len < 4 || memcmp(in.data, MAGIC, 4))
        return -1;
    struct rd r = {(const unsigned char *)in.data + 4, in.len - 4, 0};
    uint32_t status = get_u32(&r);
    uint64_t at = get_u64(&r), ttl = get_u64(&r);
    e->reason = get_bytes(&r);
    uint32_t nh = get_u32(&r);
    /* 200..599 but 206 and 304: what cache-store can write (a 1xx would leave the client waiting) */
    if (r.bad || status < 200 || status > 599 || status == 206 || status == 304 || at > (uint64_t)INT64_MAX ||
        ttl > (uint64_t)CACHE_DURATION_MAX || nh > MAX_HEADERS || (size_t)nh * 8 > r.n)
        return -1;
    e->status = (int)status;
    e->stored_at = (int64_t)at;
    e->ttl = (int64_t)ttl;
    if (nh) {
        e->names = api->alloc(call, sizeof(*e->names) * nh);
        e->values = api->alloc(call, sizeof(*e->values) * nh);
        if (!e->names || !e->values)
            return -1;
    }
    for (uint32_t i = 0; i < nh && !r.bad; i++) {
        e->names[i] = get_bytes(&r);
        e->values[i] = get_bytes(&r);
        if (!ptl_is_token(e->names[i].data, e->names[i].len) || !value_ok(e->values[i]))
            r.bad = 1; /* not what cache-store writes: someone else's bytes */
    }
    if (!value_ok(e->reason))
        return -1;
    e->nheaders = (int)nh;
    e->body = get_bytes(&r);
    if (r.bad || r.n != 0)
        return -1;
    return 0;
}
