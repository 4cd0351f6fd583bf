/*
 * pt_h2head -- see pt_h2head.h.
 */
#include "http/pt_h2head.h"
#include "base/pt_pool.h"
#include "http/pt_http.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ request head */

void pt_h2head_init(struct pt_h2_reqhead *r, size_t limit)
{
    memset(r, 0, sizeof(*r));
    r->limit = limit;
}

void pt_h2head_free(struct pt_h2_reqhead *r)
{
    if (r->fields)
        evbuffer_free(r->fields);
    if (r->cookie)
        evbuffer_free(r->cookie);
    free(r->method);
    free(r->path);
    free(r->authority);
    free(r->host);
    free(r->status);
    memset(r, 0, sizeof(*r));
}

static bool name_is(const uint8_t *name, size_t nlen, const char *lit)
{
    return nlen == strlen(lit) && !memcmp(name, lit, nlen);
}

static bool keep_pseudo(char **slot, const uint8_t *value, size_t vlen)
{
    if (*slot)
        return true; /* nghttp2 refuses repeated pseudo-fields; the first stands */
    *slot = strndup((const char *)value, vlen);
    return *slot != NULL;
}

/* What an HTTP/1.1 head can carry: a name of lower-case token characters (a leading ':' for
   pseudo-fields), a value without CR, LF or NUL. */
static bool field_fits_http1(const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen)
{
    static const char token[] = "!#$%&'*+-.^_`|~";
    if (!nlen)
        return false;
    for (size_t i = name[0] == ':'; i < nlen; i++) {
        uint8_t ch = name[i];
        if (!(islower(ch) || isdigit(ch) || (ch && strchr(token, ch))))
            return false;
    }
    for (size_t i = 0; i < vlen; i++)
        if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
            return false;
    return true;
}

bool pt_h2head_field(struct pt_h2_reqhead *r, const uint8_t *name, size_t nlen, const uint8_t *value,
                     size_t vlen)
{
    if (!field_fits_http1(name, nlen, value, vlen))
        return false;
    r->size += nlen + vlen + 32;
    if (r->size > r->limit)
        r->too_big = true;
    if (r->too_big)
        return true; /* the stream is answered 431; nothing more is kept */
    if (nlen && name[0] == ':') {
        if (name_is(name, nlen, ":method"))
            return keep_pseudo(&r->method, value, vlen);
        if (name_is(name, nlen, ":path"))
            return keep_pseudo(&r->path, value, vlen);
        if (name_is(name, nlen, ":authority"))
            return keep_pseudo(&r->authority, value, vlen);
        if (name_is(name, nlen, ":status"))
            return keep_pseudo(&r->status, value, vlen);
        return true; /* :scheme (the listener says it), :protocol (not enabled) */
    }
    if (name_is(name, nlen, "host"))
        return keep_pseudo(&r->host, value, vlen);
    if (name_is(name, nlen, "cookie")) {
        /* HTTP/2 may split cookies into fields; HTTP/1.1 wants one line (RFC 9113 8.2.3) */
        if (!r->cookie && !(r->cookie = evbuffer_new()))
            return false;
        if (evbuffer_get_length(r->cookie))
            evbuffer_add(r->cookie, "; ", 2);
        return evbuffer_add(r->cookie, value, vlen) == 0;
    }
    if (name_is(name, nlen, "content-length"))
        r->has_length = true;
    if (!r->fields && !(r->fields = evbuffer_new()))
        return false;
    return evbuffer_add(r->fields, name, nlen) == 0 && evbuffer_add(r->fields, ": ", 2) == 0 &&
           evbuffer_add(r->fields, value, vlen) == 0 && evbuffer_add(r->fields, "\r\n", 2) == 0;
}

bool pt_h2head_req_write(struct pt_h2_reqhead *r, bool end_stream, struct evbuffer *out, bool *chunked)
{
    if (!r->method || !r->path)
        return false;
    evbuffer_add_printf(out, "%s %s HTTP/1.1\r\n", r->method, r->path);
    /* :authority wins over a Host field (RFC 9113 8.3.1); neither: the pipeline answers 400 */
    const char *host = r->authority ? r->authority : r->host;
    if (host)
        evbuffer_add_printf(out, "Host: %s\r\n", host);
    pt_h2head_lines(r, out);
    *chunked = !end_stream && !r->has_length;
    if (*chunked)
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    evbuffer_add(out, "\r\n", 2);
    return true;
}

void pt_h2head_lines(struct pt_h2_reqhead *r, struct evbuffer *out)
{
    if (r->fields)
        evbuffer_add_buffer(out, r->fields);
    if (r->cookie) {
        evbuffer_add(out, "Cookie: ", 8);
        evbuffer_add_buffer(out, r->cookie);
        evbuffer_add(out, "\r\n", 2);
    }
}

/* A status of three digits, as an HTTP/1.1 status line needs. */
static bool status_ok(const char *s)
{
    return s && strlen(s) == 3 && isdigit((unsigned char)s[0]) && isdigit((unsigned char)s[1]) &&
           isdigit((unsigned char)s[2]) && s[0] != '0';
}

int pt_h2head_resp_write(struct pt_h2_reqhead *r, bool end_stream, bool head_req, struct evbuffer *out,
                         bool *chunked)
{
    if (!status_ok(r->status))
        return -1;
    int status = atoi(r->status);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status, pt_http_reason(status));
    pt_h2head_lines(r, out);
    /* a body of unknown length is chunked, so that trailers can follow it; none at all says so */
    bool bodiless = head_req || status < 200 || status == 204 || status == 304;
    *chunked = !bodiless && !r->has_length && !end_stream;
    if (*chunked)
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    else if (!bodiless && !r->has_length)
        evbuffer_add(out, "Content-Length: 0\r\n", 19);
    evbuffer_add(out, "\r\n", 2);
    return status;
}

/* ------------------------------------------------------------------ response head */

/* Fields HTTP/2 does not carry (RFC 9113 8.2.2): TE only as "trailers" (gRPC asks for it), and Host,
   which a request's :authority replaces. */
static bool connection_specific(const struct pt_hdr *x, bool request)
{
    switch (x->kind) {
    case PT_H_CONNECTION:
    case PT_H_KEEP_ALIVE:
    case PT_H_PROXY_CONNECTION:
    case PT_H_TRANSFER_ENCODING:
    case PT_H_UPGRADE:
        return true;
    case PT_H_TE:
        return !request || !pt_str_ieq(x->value, pt_str_c("trailers"));
    case PT_H_HOST:
        return request;
    default:
        return false;
    }
}

static nghttp2_nv nv_of(const char *name, pt_str value)
{
    return (nghttp2_nv){(uint8_t *)name, (uint8_t *)value.data, strlen(name), value.len,
                        NGHTTP2_NV_FLAG_NONE};
}

int pt_h2head_nv(const struct pt_head *h, const char *scheme, struct pt_pool *pool, nghttp2_nv **out)
{
    nghttp2_nv *nv = pt_pool_alloc(pool, sizeof(*nv) * (size_t)(h->nh + 4));
    char *status = pt_pool_alloc(pool, 4);
    if (!nv || !status)
        return -1;
    int n = 0;
    if (scheme) {
        nv[n++] = nv_of(":method", h->method);
        nv[n++] = nv_of(":scheme", pt_str_c(scheme));
        nv[n++] = nv_of(":authority", h->host);
        nv[n++] = nv_of(":path", h->target);
    } else {
        snprintf(status, 4, "%03u", (unsigned)h->status % 1000u);
        nv[n++] = nv_of(":status", (pt_str){status, 3});
    }
    for (int i = 0; i < h->nh; i++) {
        const struct pt_hdr *x = &h->h[i];
        if (x->deleted || connection_specific(x, scheme != NULL))
            continue;
        uint8_t *name = pt_pool_alloc(pool, x->name.len ? x->name.len : 1);
        if (!name)
            return -1;
        for (size_t k = 0; k < x->name.len; k++)
            name[k] = (uint8_t)tolower((unsigned char)x->name.data[k]);
        nv[n++] =
            (nghttp2_nv){name, (uint8_t *)x->value.data, x->name.len, x->value.len, NGHTTP2_NV_FLAG_NONE};
    }
    *out = nv;
    return n;
}

bool pt_h2head_flood(uint64_t size, uint64_t limit)
{
    return size > 2 * limit + 16384;
}

bool pt_h2head_block_frame(uint64_t *block, const nghttp2_frame_hd *hd, uint64_t limit)
{
    if (hd->type == NGHTTP2_HEADERS)
        *block = hd->length;
    else if (hd->type == NGHTTP2_CONTINUATION)
        *block += hd->length;
    else
        return false;
    return pt_h2head_flood(*block, limit);
}
