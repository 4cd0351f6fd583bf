/*
 * pt_h2up -- HTTP/2 backend connections: an nghttp2 client session per
 * connection, a stream pt_io per exchange (see pt_h2up.h).
 *
 * As in pt_h2, nghttp2 is never re-entered: its callbacks only record and
 * kick stream users (whose events come from the event loop); feeding
 * input, submitting requests, resuming bodies and sending run in run_once,
 * from the connection's events or from the session's deferred event.
 *
 * Lifetimes: a stream record lives until its user (pt_upstream) has let go
 * of the stream's io and nghttp2 is done with the stream (or the session is
 * dead).  A session lives until it is dead and has no record left; its
 * connection goes with it, so every stream io's parent outlives it.
 */
#include "proxy/pt_h2up.h"
#include "base/pt_log.h"
#include "event/pt_io.h"
#include "event/pt_metrics.h"
#include "http/pt_http.h"
#include "proxy/pt_h2.h"
#include "proxy/pt_proxy.h"
#include "proxy/pt_req.h"
#include "proxy/pt_worker.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <llhttp.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the cap on the streams of one backend connection (upstream.http2MaxStreams) before a configuration is in */
#define MAX_STREAMS 100
/* what a stream may receive before the gateway passed it on (its window) */
#define STREAM_WINDOW (256 * 1024)
#define CONN_WINDOW (16 * 1024 * 1024)

struct pt_h2up {
    struct pt_list link; /* in pool->h2s */
    struct pt_upool *pool;
    struct pt_worker *w;
    struct pt_io *io;
    nghttp2_session *s;
    struct event run_ev;
    struct pt_tnode timer;
    struct pt_list streams;
    int nstreams; /* records */
    uint64_t sent;
    uint64_t block;  /* the header block being received: its frames' bytes so far (a flood guard) */
    const char *why; /* why it died */
    bool tls, or1, settings_seen, proto_error, connected, agreed, fallback, handed, goaway, dead, timed_out,
        freeing;
};

struct pt_h2up_stream {
    struct pt_list link;
    struct pt_h2up *h;
    struct pt_io *io;
    int32_t id; /* 0 until submitted */
    struct evbuffer_cb_entry *in_cb;
    uint64_t unconsumed; /* DATA given to io->in whose window is not returned yet */
    /* the request, read from io->out */
    struct pt_scan scan;
    enum pt_body body;
    uint64_t left;
    struct pt_chunked ck;
    struct evbuffer *trailers; /* the end of a chunked request body: its trailer section */
    /* the response, written to io->in */
    struct pt_h2_reqhead rh;
    const char *why;
    bool submitted, deferred, out_ready, user_gone, closed, head_req, head_done, chunked, ended, refused,
        failed;
};

static const struct pt_io_stream_ops stream_ops;
static void session_io(struct pt_io *io, int what, void *arg);
static void session_timer(struct pt_tnode *t, int kind);
static bool idle_room(const struct pt_h2up *h);
static void close_idle(struct pt_h2up *h);

static _Atomic uint64_t m_conns, m_streams;

static void collect(struct pt_metrics_sink *sink, void *arg)
{
    pt_metrics_sink_value(sink, "portico_backend_http2_connections_total",
                          "HTTP/2 connections opened to backends.", PT_METRICS_COUNTER,
                          (double)atomic_load(&m_conns));
    pt_metrics_sink_value(sink, "portico_backend_http2_streams_total",
                          "Requests sent to backends as HTTP/2 streams.", PT_METRICS_COUNTER,
                          (double)atomic_load(&m_streams));
}

void pt_h2up_init(void)
{
    static bool done;
    if (!done) {
        done = true;
        pt_metrics_collector(collect, NULL);
    }
}

bool pt_h2up_alpn(SSL *ssl, bool or1)
{
    static const unsigned char h2[] = "\x02h2", both[] = "\x02h2\x08http/1.1";
    /* SSL_set_alpn_protos returns 0 on success */
    return or1 ? SSL_set_alpn_protos(ssl, both, sizeof(both) - 1) == 0
               : SSL_set_alpn_protos(ssl, h2, sizeof(h2) - 1) == 0;
}

/* upstream.http2MaxStreams: the most streams opened at once on one connection */
static uint32_t stream_cap(const struct pt_worker *w)
{
    return w->cur ? (uint32_t)w->cur->gen->conf->upstream.h2_max_streams : MAX_STREAMS;
}

static void schedule(struct pt_h2up *h)
{
    if (!h->freeing)
        event_active(&h->run_ev, EV_READ, 0);
}

/* ------------------------------------------------------------------ streams */

static struct pt_h2up_stream *stream_of(struct pt_h2up *h, int32_t id)
{
    return nghttp2_session_get_stream_user_data(h->s, id);
}

/* The stream's user is told it failed (unless its response is complete: it reads that to its end). */
static void stream_fail(struct pt_h2up_stream *st, const char *why)
{
    if (st->failed || st->ended || st->user_gone)
        return;
    st->failed = true;
    st->why = why;
    pt_io_stream_kick(st->io, PT_IO_ERROR);
}

/* The backend's stream is closed (a reset, the session's end).  A stream whose response is complete is
   not failed, but its user hears of it (PT_IO_EOF): the backend takes no more of an upload still going
   (RFC 9113 8.1), which then ends at once instead of waiting for the read timeout. */
static void stream_closed(struct pt_h2up_stream *st, const char *why)
{
    st->closed = true;
    if (st->ended && !st->user_gone)
        pt_io_stream_kick(st->io, PT_IO_EOF);
    else
        stream_fail(st, why);
}

static void stream_free(struct pt_h2up_stream *st)
{
    pt_list_del(&st->link);
    st->h->nstreams--;
    if (st->in_cb)
        evbuffer_remove_cb_entry(st->io->in, st->in_cb);
    pt_io_stream_release(st->io);
    pt_h2head_free(&st->rh);
    if (st->trailers)
        evbuffer_free(st->trailers);
    free(st);
}

/* The user took bytes from the stream's input: the body bytes that cannot still be in it go back to the
   backend's window (the input holds our HTTP/1.1 framing besides). */
static void on_in_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct pt_h2up_stream *st = arg;
    if (!info->n_deleted || !st->unconsumed)
        return;
    uint64_t still = PT_MIN(st->unconsumed, (uint64_t)evbuffer_get_length(buf));
    size_t k = (size_t)(st->unconsumed - still);
    if (!k)
        return;
    st->unconsumed = still;
    if (!st->closed && st->id)
        nghttp2_session_consume_stream(st->h->s, st->id, k);
    schedule(st->h);
}

struct pt_h2up_stream *pt_h2up_stream(struct pt_h2up *h, pt_io_cb cb, void *arg, struct pt_io **io)
{
    struct pt_h2up_stream *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->h = h;
    st->io = pt_io_stream(h->w->base, h->io, &stream_ops, st, cb, arg);
    if (!st->io) {
        free(st);
        return NULL;
    }
    pt_h2head_init(&st->rh, RESPONSE_HEAD_MAX);
    st->in_cb = evbuffer_add_cb(st->io->in, on_in_drained, st);
    pt_list_add_tail(&h->streams, &st->link);
    h->nstreams++;
    if (h->connected)
        pt_timer_clear(&h->timer); /* not the connect timer */
    *io = st->io;
    return st;
}

/* The request body in io->out, its HTTP/1.1 framing taken off, as the backend's window allows. */
static ssize_t read_req_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                             nghttp2_data_source *src, void *arg)
{
    struct pt_h2up_stream *st = src->ptr;
    struct evbuffer *out = st->io->out;
    size_t n = 0;
    bool eof = false;
    if (st->body == PT_BODY_LENGTH) {
        size_t k = (size_t)PT_MIN((uint64_t)length, PT_MIN(st->left, (uint64_t)evbuffer_get_length(out)));
        n = (size_t)evbuffer_remove(out, buf, k);
        st->left -= n;
        eof = st->left == 0;
    } else {
        if (!st->trailers && !(st->trailers = evbuffer_new()))
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        st->ck.end_to = st->trailers;
        while (n < length) {
            struct pt_http_err err = {0};
            ssize_t r = pt_http_chunked_next(&st->ck, out, &err);
            if (r == PT_CHUNKED_ERROR)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            if (r == PT_CHUNKED_DONE) {
                eof = true;
                break;
            }
            if (r == PT_CHUNKED_MORE)
                break;
            size_t k = PT_MIN((size_t)r, length - n);
            evbuffer_remove(out, buf + n, k);
            pt_http_chunked_took(&st->ck, k);
            n += k;
        }
    }
    if (evbuffer_get_length(out) == 0 && !st->user_gone)
        pt_io_stream_kick(st->io, 0); /* an upload waiting for the output to drain goes on */
    if (eof) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->trailers && pt_h2_submit_trailers(st->h->s, st->id, st->trailers))
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM; /* the client's trailers end the stream */
        return (ssize_t)n;
    }
    if (n)
        return (ssize_t)n;
    if (st->user_gone)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the upload was cut short: the stream is reset */
    st->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
}

/* The request head at the front of io->out as HEADERS; false when it cannot be sent (the stream failed). */
static bool submit_head(struct pt_h2up_stream *st)
{
    struct pt_h2up *h = st->h;
    struct evbuffer *out = st->io->out;
    size_t len = 0;
    struct pt_http_err err = {0};
    int r = pt_http_scan(&st->scan, out, RESPONSE_HEAD_MAX * 4, RESPONSE_HEAD_MAX * 4, true, &len, &err);
    if (r == 0)
        return true;
    struct pt_pool *pool = r > 0 ? pt_pool_new(4096) : NULL;
    char *copy = pool ? pt_pool_alloc(pool, len) : NULL;
    struct pt_head rq = {0};
    nghttp2_nv *nv = NULL;
    int nnv = -1;
    if (copy) {
        evbuffer_remove(out, copy, len);
        if (pt_http_parse_request(&rq, copy, len, pool, 4096, UINT64_MAX, &err))
            nnv = pt_h2head_nv(&rq, h->tls ? "https" : "http", pool, &nv);
    }
    int32_t id = -1;
    if (nnv > 0) {
        st->body = rq.body;
        st->left = rq.content_length > 0 ? (uint64_t)rq.content_length : 0;
        st->head_req = rq.method_id == HTTP_HEAD;
        bool none = rq.body == PT_BODY_NONE || (rq.body == PT_BODY_LENGTH && st->left == 0);
        nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_req_body};
        id = nghttp2_submit_request(h->s, NULL, nv, (size_t)nnv, none ? NULL : &prd, st);
    }
    if (pool)
        pt_pool_free(pool);
    st->submitted = true;
    if (id < 0) {
        pt_warn("backend %s: a request could not be sent over HTTP/2%s%s", h->pool->key, err.msg ? ": " : "",
                err.msg ? err.msg : "");
        st->refused = id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE;
        st->closed = true;
        stream_fail(st, "the request could not be sent over HTTP/2");
        return false;
    }
    st->id = id;
    atomic_fetch_add_explicit(&m_streams, 1, memory_order_relaxed);
    return true;
}

static void stream_output(struct pt_h2up_stream *st)
{
    st->out_ready = false;
    if (st->closed || st->failed)
        return;
    if (!st->submitted) {
        if (st->user_gone || !submit_head(st) || !st->submitted)
            return;
    }
    if (st->deferred) {
        st->deferred = false;
        nghttp2_session_resume_data(st->h->s, st->id);
    }
}

static void op_flush(void *arg)
{
    struct pt_h2up_stream *st = arg;
    st->out_ready = true;
    schedule(st->h);
}

static void op_freed(void *arg)
{
    struct pt_h2up_stream *st = arg;
    st->user_gone = true;
    st->out_ready = true;
    schedule(st->h);
}

static const struct pt_io_stream_ops stream_ops = {.flush = op_flush, .freed = op_freed};

/* ------------------------------------------------------------------ nghttp2 callbacks */

static ssize_t on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *arg)
{
    struct pt_h2up *h = arg;
    if (evbuffer_get_length(h->io->out) > HIGH_WATER)
        return NGHTTP2_ERR_WOULDBLOCK; /* the backend does not read: resumed when it does */
    if (evbuffer_add(h->io->out, data, len) < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    h->sent += len;
    return (ssize_t)len;
}

/* As pt_h2 does for clients, a header block far past the response head limit cuts the session
   (pt_h2head_flood): resetting the stream alone would leave nghttp2 decoding the rest of the block. */
static int cut_block(struct pt_h2up *h)
{
    pt_info("backend %s: HTTP/2 header block far over the limit: connection closed", h->pool->key);
    nghttp2_session_terminate_session(h->s, NGHTTP2_ENHANCE_YOUR_CALM);
    return NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int on_begin_frame(nghttp2_session *s, const nghttp2_frame_hd *hd, void *arg)
{
    struct pt_h2up *h = arg;
    return pt_h2head_block_frame(&h->block, hd, RESPONSE_HEAD_MAX) ? cut_block(h) : 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *arg)
{
    struct pt_h2up_stream *st = stream_of(arg, f->hd.stream_id);
    if (f->hd.type != NGHTTP2_HEADERS || !st || st->user_gone)
        return 0;
    if (!pt_h2head_field(&st->rh, name, nlen, value, vlen))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset */
    /* over the limit nothing more is kept, but the block is counted to its end (headers_in resets the
       stream) */
    return pt_h2head_flood(st->rh.size, RESPONSE_HEAD_MAX) ? cut_block(arg) : 0;
}

/* A header block is complete: the response head (1xx ones are passed too: pt_upstream drops them),
   or the trailers, into the stream's input. */
static void headers_in(struct pt_h2up_stream *st, bool end_stream)
{
    struct evbuffer *in = st->io->in;
    if (st->rh.too_big) {
        /* a head or trailers over the limit: the call fails, as with an HTTP/1.1 backend's */
        nghttp2_submit_rst_stream(st->h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        stream_fail(st, st->head_done ? "the backend's trailers are too large"
                                      : "the backend's header list is too large");
        return;
    }
    if (!st->head_done) {
        bool chunked = false;
        int status = pt_h2head_resp_write(&st->rh, end_stream, st->head_req, in, &chunked);
        pt_h2head_free(&st->rh);
        /* the next block: a final head after 1xx ones, or the trailers, which go on as a chunked trailer
           section: bounded as the chunked decoder bounds one (one limit, whatever the backend's protocol) */
        pt_h2head_init(&st->rh, status >= 200 ? PT_HTTP_TRAILERS_MAX : RESPONSE_HEAD_MAX);
        if (status < 0) {
            nghttp2_submit_rst_stream(st->h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_PROTOCOL_ERROR);
            stream_fail(st, "the backend sent no valid :status");
            return;
        }
        if (status >= 200) {
            st->head_done = true;
            st->chunked = chunked;
        }
    } else if (st->chunked) {
        /* trailers: the chunked body's trailer section */
        evbuffer_add(in, "0\r\n", 3);
        pt_h2head_lines(&st->rh, in);
        evbuffer_add(in, "\r\n", 2);
        st->chunked = false;
    }
    if (end_stream && st->head_done) {
        if (st->chunked)
            evbuffer_add(in, "0\r\n\r\n", 5);
        st->ended = true;
    }
    pt_io_stream_kick(st->io, 0);
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct pt_h2up *h = arg;
    struct pt_h2up_stream *st = f->hd.stream_id ? stream_of(h, f->hd.stream_id) : NULL;
    bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        if (st && !st->user_gone && !st->failed)
            headers_in(st, end);
        return 0;
    case NGHTTP2_DATA:
        /* as the client side (pt_h2.c): the padding is nghttp2's to count, the data ours */
        nghttp2_session_consume_connection(s, f->hd.length - f->data.padlen);
        if (st && end && !st->user_gone && !st->failed && st->head_done) {
            if (st->chunked)
                evbuffer_add(st->io->in, "0\r\n\r\n", 5);
            st->ended = true;
            pt_io_stream_kick(st->io, 0);
        }
        return 0;
    case NGHTTP2_SETTINGS:
        /* a new connection to this backend assumes the same until its own SETTINGS come */
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK)) {
            h->settings_seen = true;
            h->pool->h2_streams =
                nghttp2_session_get_remote_settings(s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        }
        return 0;
    case NGHTTP2_GOAWAY:
        /* no new stream here; the ones past last-stream-id are closed as refused (retried or failed) */
        h->goaway = true;
        return 0;
    default:
        return 0;
    }
}

/* nghttp2 ends a session with a GOAWAY of its own when the backend breaks the protocol (a bad frame, a
   flood): said so in the log and to the client. */
static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct pt_h2up *h = arg;
    if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR && !h->proto_error) {
        h->proto_error = true;
        pt_info("backend %s: HTTP/2 session ended: %s", h->pool->key,
                nghttp2_http2_strerror(f->goaway.error_code));
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                         void *arg)
{
    struct pt_h2up_stream *st = stream_of(arg, id);
    if (!st || st->user_gone || st->failed || !st->head_done) {
        nghttp2_session_consume_stream(s, id, len); /* nobody reads it: dropped */
        return 0;
    }
    struct evbuffer *in = st->io->in;
    if (st->chunked)
        evbuffer_add_printf(in, "%zx\r\n", len);
    evbuffer_add(in, data, len);
    if (st->chunked)
        evbuffer_add(in, "\r\n", 2);
    st->unconsumed += len;
    pt_io_stream_kick(st->io, 0);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *arg)
{
    struct pt_h2up_stream *st = stream_of(arg, id);
    if (!st)
        return 0;
    nghttp2_session_set_stream_user_data(s, id, NULL);
    st->refused = !st->ended && code == NGHTTP2_REFUSED_STREAM;
    stream_closed(st, st->why                    ? st->why
                      : st->refused              ? "the backend refused the stream"
                      : code != NGHTTP2_NO_ERROR ? "the backend reset the stream"
                                                 : "the backend ended the stream without a response");
    schedule(st->h);
    return 0;
}

static nghttp2_session_callbacks *callbacks(void)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return NULL;
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    return cb;
}

static nghttp2_session *session_new(struct pt_h2up *h)
{
    nghttp2_session_callbacks *cb = callbacks();
    nghttp2_option *opt = NULL;
    nghttp2_session *s = NULL;
    if (!cb || nghttp2_option_new(&opt) != 0) {
        if (cb)
            nghttp2_session_callbacks_del(cb);
        return NULL;
    }
    /* windows are returned as the response is passed on, not as frames arrive */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* a backend is bounded as a client is: SETTINGS entries, queued ACKs, the HPACK table */
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    nghttp2_option_set_peer_max_concurrent_streams(opt, stream_cap(h->w));
    int rv = nghttp2_session_client_new2(&s, cb, h, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0)
        return NULL;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, RESPONSE_HEAD_MAX},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, 4096},
    };
    if (nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0 ||
        nghttp2_session_set_local_window_size(s, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW) != 0) {
        nghttp2_session_del(s);
        return NULL;
    }
    return s;
}

/* ------------------------------------------------------------------ the session */

static void session_free(struct pt_h2up *h)
{
    h->freeing = true;
    pt_list_del(&h->link);
    event_del(&h->run_ev);
    pt_timer_clear(&h->timer);
    while (!pt_list_empty(&h->streams))
        stream_free(pt_container_of(h->streams.next, struct pt_h2up_stream, link));
    nghttp2_session_del(h->s);
    if (!h->handed) {
        pt_io_free(h->io);
        pt_upstream_pool_unref(h->pool);
    }
    free(h);
}

/* The connection is over: every stream without its whole response fails. */
static void die(struct pt_h2up *h, const char *why)
{
    if (h->dead)
        return;
    h->dead = true;
    h->why = why;
    pt_io_read(h->io, false);
    pt_timer_clear(&h->timer); /* a connect timer firing now would call a failure a timeout */
    for (struct pt_list *it = h->streams.next; it != &h->streams; it = it->next) {
        struct pt_h2up_stream *st = pt_container_of(it, struct pt_h2up_stream, link);
        if (!st->closed)
            stream_closed(st, why);
    }
    schedule(h);
}

/* Records whose user let go and which nghttp2 is done with (or never had). */
static void reap(struct pt_h2up *h)
{
    struct pt_list *it = h->streams.next;
    while (it != &h->streams) {
        struct pt_h2up_stream *st = pt_container_of(it, struct pt_h2up_stream, link);
        it = it->next;
        if (st->user_gone && (st->closed || !st->submitted))
            stream_free(st);
    }
}

static bool feed(struct pt_h2up *h)
{
    struct evbuffer *in = h->io->in;
    while (evbuffer_get_length(in)) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        ssize_t n = nghttp2_session_mem_recv(h->s, v.iov_base, v.iov_len);
        if (n < 0) {
            pt_info("backend %s: HTTP/2: %s", h->pool->key, nghttp2_strerror((int)n));
            evbuffer_drain(in, evbuffer_get_length(in));
            return false;
        }
        evbuffer_drain(in, (size_t)n);
    }
    return true;
}

static int send_some(struct pt_h2up *h)
{
    for (int round = 0; round < 16; round++) {
        uint64_t before = h->sent;
        int rv = nghttp2_session_send(h->s);
        pt_io_flush(h->io);
        if (rv != 0)
            return rv;
        if (evbuffer_get_length(h->io->out) || !nghttp2_session_want_write(h->s) || h->sent == before)
            return 0;
    }
    schedule(h);
    return 0;
}

static void run_once(struct pt_h2up *h)
{
    reap(h);
    if (!h->dead && h->agreed) {
        for (struct pt_list *it = h->streams.next; it != &h->streams; it = it->next) {
            struct pt_h2up_stream *st = pt_container_of(it, struct pt_h2up_stream, link);
            if (st->user_gone && st->id && !st->closed && !st->ended) {
                /* let go before the response ended (a failure, a client that left): the backend stops
                   too */
                nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
                st->closed = true;
                nghttp2_session_set_stream_user_data(h->s, st->id, NULL);
            } else if (st->user_gone && st->deferred && !st->closed) {
                /* the response is complete: what is left of the upload goes, or, cut short, the
                   data source fails and nghttp2 resets the stream */
                st->deferred = false;
                nghttp2_session_resume_data(h->s, st->id);
            } else if (st->user_gone && st->unconsumed && !st->closed) {
                nghttp2_session_consume_stream(h->s, st->id, st->unconsumed);
                st->unconsumed = 0;
            }
            if (st->out_ready && !st->user_gone)
                stream_output(st);
        }
        if (!feed(h)) {
            nghttp2_session_terminate_session(h->s, NGHTTP2_PROTOCOL_ERROR);
            send_some(h);
            die(h, "the backend broke the HTTP/2 protocol");
        } else if (send_some(h) != 0)
            die(h, "the HTTP/2 session to the backend failed");
        else if (!nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s))
            die(h, h->proto_error ? "the backend broke the HTTP/2 protocol"
                                  : "the backend closed the HTTP/2 session");
        else if (evbuffer_get_length(h->io->out))
            pt_io_want_drain(h->io, true);
        reap(h);
    }
    if (h->dead && h->nstreams == 0) {
        session_free(h);
        return;
    }
    if (!h->dead && h->connected && h->nstreams == 0 && !idle_room(h)) {
        close_idle(h);
        if (h->nstreams == 0) {
            session_free(h);
            return;
        }
    } else if (!h->dead && h->connected && h->nstreams == 0)
        pt_timer_set(h->w, &h->timer, PT_T_IDLE);
    else if (h->connected)
        pt_timer_clear(&h->timer);
}

/* Whether an idle session may stay: upstream.maxIdleConnections counts idle sessions with the pool's idle
   HTTP/1.1 connections; a draining worker keeps none, nor does a pool outside the table. */
static bool idle_room(const struct pt_h2up *h)
{
    /* a pool outside the table is never found again: its sessions cannot be reused */
    if (h->w->draining || h->pool->transient)
        return false;
    if (!h->w->cur)
        return true;
    int64_t idle = h->pool->nidle;
    for (const struct pt_list *it = h->pool->h2s.next; it != &h->pool->h2s; it = it->next) {
        const struct pt_h2up *o = pt_container_of(it, const struct pt_h2up, link);
        idle += o != h && !o->dead && o->connected && o->nstreams == 0;
    }
    return idle < h->w->cur->gen->conf->upstream.max_idle;
}

/* Closed politely: GOAWAY, then the connection. */
static void close_idle(struct pt_h2up *h)
{
    nghttp2_session_terminate_session(h->s, NGHTTP2_NO_ERROR);
    send_some(h);
    die(h, "idle");
}

static void run_ev(evutil_socket_t fd, short what, void *arg)
{
    run_once(arg);
}

/* The connection (and its TLS handshake) is up: the protocol the backend chose. */
static void connected(struct pt_h2up *h)
{
    h->connected = true;
    pt_timer_clear(&h->timer);
    SSL *ssl = h->tls ? pt_io_ssl(h->io) : NULL;
    const unsigned char *p = NULL;
    unsigned n = 0;
    if (ssl)
        SSL_get0_alpn_selected(ssl, &p, &n);
    if (!ssl || (n == 2 && !memcmp(p, "h2", 2))) {
        h->agreed = true;
        h->pool->proto = PT_UPROTO_H2;
        atomic_fetch_add_explicit(&m_conns, 1, memory_order_relaxed);
        schedule(h);
        return;
    }
    if (h->or1) {
        /* the backend speaks HTTP/1.1: the stream's user takes the connection over (pt_h2up_fallback) */
        h->pool->proto = PT_UPROTO_H1;
        h->fallback = true;
        die(h, "the backend chose HTTP/1.1");
        return;
    }
    pt_warn("backend %s: no HTTP/2 by ALPN (%s)", h->pool->key,
            n ? "it chose another protocol" : "it chose none");
    die(h, "the backend does not speak HTTP/2 (no ALPN agreement on h2)");
}

static void session_io(struct pt_io *io, int what, void *arg)
{
    struct pt_h2up *h = arg;
    if (h->dead) {
        schedule(h);
        return;
    }
    if (what & PT_IO_CONNECTED) {
        connected(h);
        return;
    }
    if (what & (PT_IO_READ | PT_IO_DRAINED)) {
        run_once(h);
        return;
    }
    if (what & PT_IO_ERROR) {
        /* the system's or TLS's words go to the log only: what the client is told is fixed text */
        pt_info("backend %s: HTTP/2 connection failed: %s", h->pool->key, pt_io_errmsg(io));
        die(h, "the backend connection failed");
        return;
    }
    die(h, "the backend closed the connection");
}

static void session_timer(struct pt_tnode *t, int kind)
{
    struct pt_h2up *h = pt_container_of(t, struct pt_h2up, timer);
    if (kind == PT_T_CONNECT) {
        pt_warn("backend %s: connect timed out", h->pool->key);
        h->timed_out = true;
        die(h, "the backend did not accept the connection in time");
        return;
    }
    close_idle(h);
}

struct pt_h2up *pt_h2up_new(struct pt_worker *w, struct pt_upool *pool, struct pt_io *io, bool or1)
{
    struct pt_h2up *h = calloc(1, sizeof(*h));
    if (!h) {
        pt_io_free(io);
        return NULL;
    }
    h->w = w;
    h->pool = pool;
    h->io = io;
    h->tls = pt_io_is_tls(io);
    h->or1 = or1 && h->tls;
    pt_list_init(&h->streams);
    pt_timer_init(&h->timer, session_timer);
    h->s = session_new(h);
    if (!h->s || event_assign(&h->run_ev, w->base, -1, 0, run_ev, h) < 0) {
        if (h->s)
            nghttp2_session_del(h->s);
        pt_io_free(io);
        free(h);
        return NULL;
    }
    pool->nconns++;
    pt_io_set_cb(io, session_io, h);
    pt_io_read(io, true);
    pt_timer_set(w, &h->timer, PT_T_CONNECT);
    pt_list_add_tail(&pool->h2s, &h->link);
    return h;
}

static int open_streams(const struct pt_h2up *h)
{
    int n = 0;
    for (const struct pt_list *it = h->streams.next; it != &h->streams; it = it->next) {
        const struct pt_h2up_stream *st = pt_container_of(it, const struct pt_h2up_stream, link);
        n += !st->closed && !st->user_gone;
    }
    return n;
}

struct pt_h2up *pt_h2up_find(struct pt_upool *pool)
{
    for (struct pt_list *it = pool->h2s.next; it != &pool->h2s; it = it->next) {
        struct pt_h2up *h = pt_container_of(it, struct pt_h2up, link);
        uint32_t peer =
            h->settings_seen || !pool->h2_streams
                ? nghttp2_session_get_remote_settings(h->s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
                : pool->h2_streams;
        /* one stream until a backend that may speak HTTP/1.1 chose (it takes the connection then) */
        int limit = h->or1 && !h->agreed ? 1 : (int)PT_MIN(peer, stream_cap(h->w));
        if (!h->dead && !h->goaway && open_streams(h) < limit)
            return h;
    }
    return NULL;
}

struct pt_io *pt_h2up_fallback(struct pt_h2up_stream *st, struct pt_io *io)
{
    struct pt_h2up *h = st->h;
    if (!h->fallback || h->handed)
        return NULL;
    h->handed = true; /* the connection and its place in the pool's count are the caller's now */
    evbuffer_add_buffer(h->io->out, io->out);
    return h->io;
}

const char *pt_h2up_error(const struct pt_h2up_stream *st, bool *timeout, bool *refused)
{
    *timeout = st->h->timed_out;
    *refused = st->refused;
    return st->why ? st->why : st->h->why ? st->h->why : "the backend connection failed";
}

bool pt_h2up_closed(const struct pt_h2up_stream *st)
{
    return st->closed;
}

void pt_h2up_free_pool(struct pt_upool *pool)
{
    /* the worker stops: the client connections, and so the streams' users, are gone already */
    while (!pt_list_empty(&pool->h2s))
        session_free(pt_container_of(pool->h2s.next, struct pt_h2up, link));
}
