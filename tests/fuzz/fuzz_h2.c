/*
 * fuzz_h2 -- the HTTP/2 glue (core/proxy/pt_h2.c) on arbitrary client
 * bytes: an nghttp2 server session set up as the gateway sets it up
 * (windows returned by hand, bounded SETTINGS and queued ACKs), whose
 * request fields go through pt_h2_reqhead_field and whose complete heads
 * become HTTP/1.1 heads through pt_h2_reqhead_write.
 *
 * Each synthesized head must be one HTTP/1.1 head and only one: the
 * gateway's own scanner finds its end exactly at its length (no field
 * could smuggle a line break), and the request parser accepts it or refuses
 * it with a 4xx -- never a crash.  Each stream is answered with a response
 * head turned into HTTP/2 fields by pt_h2_resp_fields, sent through the
 * session.  Never a read or write out of bounds (ASan), never unbounded
 * memory: the header list is bounded as in the gateway.
 */
#include "base/pt_pool.h"
#include "http/pt_http.h"
#include "proxy/pt_h2.h"

#include <event2/buffer.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_STREAMS 16

struct fz {
    nghttp2_session *s;
    struct pt_h2_reqhead rq[MAX_STREAMS];
    int32_t id[MAX_STREAMS];
};

static struct pt_h2_reqhead *head_of(struct fz *f, int32_t id, bool make)
{
    for (int i = 0; i < MAX_STREAMS; i++)
        if (f->id[i] == id)
            return &f->rq[i];
    if (!make)
        return NULL;
    for (int i = 0; i < MAX_STREAMS; i++)
        if (f->id[i] == 0) {
            f->id[i] = id;
            pt_h2_reqhead_init(&f->rq[i], 4096);
            return &f->rq[i];
        }
    return NULL;
}

static void drop(struct fz *f, int32_t id)
{
    for (int i = 0; i < MAX_STREAMS; i++)
        if (f->id[i] == id) {
            pt_h2_reqhead_free(&f->rq[i]);
            f->id[i] = 0;
        }
}

static ssize_t on_send(nghttp2_session *s, const uint8_t *d, size_t len, int flags, void *arg)
{
    return (ssize_t)len;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *fr, void *arg)
{
    if (fr->hd.type == NGHTTP2_HEADERS && fr->headers.cat == NGHTTP2_HCAT_REQUEST &&
        !head_of(arg, fr->hd.stream_id, true))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *fr, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *arg)
{
    struct pt_h2_reqhead *r = head_of(arg, fr->hd.stream_id, false);
    if (r && fr->headers.cat == NGHTTP2_HCAT_REQUEST && !pt_h2_reqhead_field(r, name, nlen, value, vlen))
        abort();
    return 0;
}

/* The synthesized head is exactly one head for the gateway's scanner, and parses or is refused. */
static void check_head(struct evbuffer *head)
{
    size_t len = evbuffer_get_length(head);
    struct pt_scan scan = {.max_hline = 8192};
    size_t got = 0;
    struct pt_http_err err = {0};
    int r = pt_http_scan(&scan, head, 65536, 8192 + 32, true, &got, &err);
    if (r > 0 && got != len)
        abort(); /* a field ended the head early: it would smuggle a second request */
    if (r > 0) {
        struct pt_pool *pool = pt_pool_new(4096);
        char *copy = pt_pool_alloc(pool, len);
        evbuffer_copyout(head, copy, len);
        struct pt_head h = {0};
        if (!pt_http_parse_request(&h, copy, len, pool, 100, 1 << 20, &err) &&
            (err.status < 400 || err.status > 599))
            abort();
        pt_pool_free(pool);
    } else if (r < 0 && (err.status < 400 || err.status > 599)) {
        abort();
    }
}

static void answer(struct fz *f, int32_t id)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\n"
                               "Transfer-Encoding: chunked\r\nX-One: 1\r\n\r\n";
    struct pt_pool *pool = pt_pool_new(4096);
    char *copy = pt_pool_alloc(pool, sizeof(resp) - 1);
    memcpy(copy, resp, sizeof(resp) - 1);
    struct pt_head h = {0};
    struct pt_http_err err = {0};
    nghttp2_nv *nv;
    if (!pt_http_parse_response(&h, copy, sizeof(resp) - 1, pool, 100, false, &err))
        abort();
    int n = pt_h2_resp_fields(&h, pool, &nv);
    if (n != 3) /* :status, content-type, x-one: the connection-specific fields are gone */
        abort();
    nghttp2_submit_response(f->s, id, nv, (size_t)n, NULL);
    pt_pool_free(pool);
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *fr, void *arg)
{
    struct fz *f = arg;
    if (fr->hd.type == NGHTTP2_DATA)
        nghttp2_session_consume(s, fr->hd.stream_id, fr->hd.length);
    if (fr->hd.type != NGHTTP2_HEADERS || fr->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct pt_h2_reqhead *r = head_of(f, fr->hd.stream_id, false);
    if (!r)
        return 0;
    struct evbuffer *head = evbuffer_new();
    bool chunked;
    if (!r->too_big && pt_h2_reqhead_write(r, fr->hd.flags & NGHTTP2_FLAG_END_STREAM, head, &chunked))
        check_head(head);
    evbuffer_free(head);
    drop(f, fr->hd.stream_id);
    answer(f, fr->hd.stream_id);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *arg)
{
    drop(arg, id);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f = {0};
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0)
        abort();
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    if (nghttp2_session_server_new2(&f.s, cb, &f, opt) != 0)
        abort();
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS},
                                   {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 4096}};
    nghttp2_submit_settings(f.s, NGHTTP2_FLAG_NONE, iv, 2);
    /* the bytes arrive in pieces whose size the first byte chooses, as reads of a socket would */
    size_t step = size ? (size_t)(data[0] % 64) + 1 : 1;
    for (size_t off = size ? 1 : 0; off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        if (nghttp2_session_mem_recv(f.s, data + off, n) < 0)
            break;
        if (nghttp2_session_send(f.s) != 0)
            break;
    }
    nghttp2_session_del(f.s);
    for (int i = 0; i < MAX_STREAMS; i++)
        if (f.id[i])
            pt_h2_reqhead_free(&f.rq[i]);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    return 0;
}

const char *fuzz_name = "fuzz_h2";
/* text seeds (the binary ones, real client conversations, are in the corpus) */
const char *const fuzz_seeds[] = {
    "\x10PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "\x01PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    NULL,
};
