/*
 * pt_h2 -- HTTP/2 client connections: an nghttp2 server session per
 * connection, a stream pt_io and a pt_conn per stream (see pt_h2.h).
 *
 * nghttp2 is never re-entered: its callbacks only record, queue frames and
 * return window, and the streams' users are told through
 * pt_io_stream_kick, from the event loop, never from inside nghttp2.
 * Feeding input, sending and resuming deferred bodies run in h2_run_once:
 * from the connection's own events, or from the session's deferred event
 * when a stream asks (its pipeline wrote, or let go).
 *
 * Lifetimes: a stream record lives until both nghttp2 has closed the stream
 * and the stream's pt_conn has let go of its io; h2_run frees such records
 * ("reaps" them).  The session is freed with its connection (pt_h2_free);
 * streams still running then end as if their client had left.
 */
#include "proxy/pt_h2.h"
#include "base/pt_log.h"
#include "event/pt_io.h"
#include "event/pt_metrics.h"
#include "http/pt_http.h"
#include "http/pt_msg.h"
#include "policy/pt_gen.h"
#include "proxy/pt_proxy.h"
#include "proxy/pt_worker.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct h2s;

struct pt_h2 {
    struct pt_conn *c; /* the client connection */
    struct pt_io *io;  /* its io */
    nghttp2_session *s;
    struct event run_ev; /* deferred h2_run */
    struct pt_list streams;
    int nstreams;   /* records in streams */
    uint64_t block; /* bytes of the header block being received (HEADERS and its CONTINUATIONs) */
    uint64_t reset_sec;
    int64_t resets; /* in reset_sec */
    uint64_t sent;  /* bytes of frames produced */
    bool draining, fatal, freeing;
};

struct h2s {
    struct pt_list link;
    struct pt_h2 *h;
    int32_t id;
    struct pt_io *io;     /* NULL until the request head is complete */
    struct pt_conn *conn; /* the stream's connection, while !user_gone */
    struct evbuffer_cb_entry *in_cb;
    struct pt_h2_reqhead rq;
    uint64_t unconsumed; /* DATA bytes given to io->in whose window is not returned yet */
    /* response */
    struct pt_scan scan;
    enum pt_body body;
    uint64_t left;
    struct pt_chunked ck;
    struct evbuffer *own;      /* the body of an answer of the session's own (431) */
    struct evbuffer *trailers; /* the end of a chunked response body: its trailer section */
    bool head_req, chunked_in, req_ended, closed, user_gone, out_ready, deferred, submitted, resp_done;
    bool
        rst_when_gone; /* the response is complete, the client still sends: reset once the pipeline lets go */
};

static const struct pt_io_stream_ops stream_ops;

/* /metrics: node-wide counts */
static _Atomic uint64_t m_conns, m_opened, m_refused, m_reset, m_cut;

static void collect(struct pt_metrics_sink *sink, void *arg)
{
    pt_metrics_sink_value(sink, "portico_http2_connections_total", "Client connections that spoke HTTP/2.",
                          PT_METRICS_COUNTER, (double)atomic_load(&m_conns));
    pt_metrics_sink_value(sink, "portico_http2_streams_total", "HTTP/2 streams (requests) clients opened.",
                          PT_METRICS_COUNTER, (double)atomic_load(&m_opened));
    pt_metrics_sink_value(sink, "portico_http2_streams_refused_total",
                          "HTTP/2 streams refused (over maxConcurrentStreams).", PT_METRICS_COUNTER,
                          (double)atomic_load(&m_refused));
    pt_metrics_sink_value(sink, "portico_http2_streams_reset_total", "HTTP/2 streams the client reset.",
                          PT_METRICS_COUNTER, (double)atomic_load(&m_reset));
    pt_metrics_sink_value(sink, "portico_http2_connections_cut_total",
                          "HTTP/2 connections closed for resetting streams too fast (rapid reset).",
                          PT_METRICS_COUNTER, (double)atomic_load(&m_cut));
}

void pt_h2_init(void)
{
    static bool done;
    if (!done) {
        done = true;
        pt_metrics_collector(collect, NULL);
    }
}

static void h2_schedule(struct pt_h2 *h)
{
    if (!h->freeing)
        event_active(&h->run_ev, EV_READ, 0);
}

/* ------------------------------------------------------------------ streams */

static struct h2s *stream_of(struct pt_h2 *h, int32_t id)
{
    return nghttp2_session_get_stream_user_data(h->s, id);
}

/* The pipeline took bytes from the stream's input.  The input holds the synthesized head and chunk
   framing besides the body, so only body bytes that can no longer be in it go back to the client's window:
   never more than what left the buffer, all of it once the buffer is empty. */
static void on_in_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct h2s *st = arg;
    if (!info->n_deleted || !st->unconsumed)
        return;
    uint64_t still = PT_MIN(st->unconsumed, (uint64_t)evbuffer_get_length(buf));
    size_t k = (size_t)(st->unconsumed - still);
    if (!k)
        return;
    st->unconsumed = still;
    if (!st->closed)
        nghttp2_session_consume_stream(st->h->s, st->id, k);
    h2_schedule(st->h);
}

static void give_back_window(struct h2s *st)
{
    if (st->unconsumed && !st->closed)
        nghttp2_session_consume_stream(st->h->s, st->id, st->unconsumed);
    st->unconsumed = 0;
}

static void stream_free(struct h2s *st)
{
    pt_list_del(&st->link);
    st->h->nstreams--;
    if (st->io) {
        if (st->in_cb)
            evbuffer_remove_cb_entry(st->io->in, st->in_cb);
        pt_io_stream_release(st->io);
    }
    if (st->own)
        evbuffer_free(st->own);
    if (st->trailers)
        evbuffer_free(st->trailers);
    pt_h2head_free(&st->rq);
    free(st);
}

/* Records whose stream is closed and whose pt_conn has let go. */
static void reap(struct pt_h2 *h)
{
    struct pt_list *it = h->streams.next;
    while (it != &h->streams) {
        struct h2s *st = pt_container_of(it, struct h2s, link);
        it = it->next;
        if (st->closed && (!st->io || st->user_gone))
            stream_free(st);
    }
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                         nghttp2_data_source *src, void *arg);

/* An answer of the session's own, without the pipeline (a header list over the limit). */
static void answer_self(struct h2s *st, int status, const char *json)
{
    char code[4];
    snprintf(code, sizeof(code), "%03d", status);
    nghttp2_nv nv[] = {
        {(uint8_t *)":status", (uint8_t *)code, 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/json", 12, 16, NGHTTP2_NV_FLAG_NONE},
    };
    st->own = evbuffer_new();
    if (!st->own) {
        nghttp2_submit_rst_stream(st->h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    evbuffer_add_printf(st->own, "{\"statusCode\":%d,\"message\":\"%s\"}", status, json);
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_body};
    st->submitted = true;
    nghttp2_submit_response(st->h->s, st->id, nv, 2, &prd);
}

static int count_reset(struct pt_h2 *h);

/* The request's HEADERS are complete: its HTTP/1.1 head goes to a new stream connection.  Returns an
   nghttp2 error when the connection is to be cut. */
static int request_ready(struct h2s *st, bool end_stream)
{
    struct pt_h2 *h = st->h;
    st->req_ended = end_stream;
    if (st->rq.too_big) {
        answer_self(st, 431, "Request header fields too large");
        return 0;
    }
    if (!st->rq.method || !st->rq.path) {
        /* CONNECT (RFC 9113 8.5) has no :path: an HTTP/1.1 request line cannot carry it. A refused
           stream costs the client one frame, so it counts like a reset toward the rapid-reset limit. */
        answer_self(st, 405, "Method not allowed");
        return count_reset(h);
    }
    st->io = pt_io_stream(h->c->w->base, h->io, &stream_ops, st, NULL, NULL);
    bool chunked = false;
    if (!st->io || !pt_h2head_req_write(&st->rq, end_stream, st->io->in, &chunked) ||
        !(st->conn = pt_conn_stream_open(h->c, st->io))) {
        if (st->io) {
            /* never given to a user: nobody else will free it */
            pt_io_stream_release(st->io);
            pt_io_free(st->io);
            st->io = NULL;
        }
        nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        return 0;
    }
    st->chunked_in = chunked;
    st->head_req = !strcmp(st->rq.method, "HEAD");
    pt_h2head_free(&st->rq);
    st->in_cb = evbuffer_add_cb(st->io->in, on_in_drained, st);
    pt_io_stream_kick(st->io, 0);
    return 0;
}

static void request_ended(struct h2s *st)
{
    if (st->req_ended)
        return;
    st->req_ended = true;
    if (st->io && st->chunked_in && !st->user_gone) {
        if (st->rq.too_big) {
            /* as for an HTTP/1.1 client's chunked trailers over the limit (a 400) and a backend's (the call
               fails): the upload fails, the backend is not given a body that ends as if complete */
            pt_info("client %s: HTTP/2 stream %d: request trailers over the limit: stream reset",
                    st->h->c->peer.ip, st->id);
            pt_h2head_free(&st->rq);
            nghttp2_submit_rst_stream(st->h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_PROTOCOL_ERROR);
            h2_schedule(st->h);
            return;
        }
        /* the client's trailers, if any */
        evbuffer_add(st->io->in, "0\r\n", 3);
        pt_h2head_lines(&st->rq, st->io->in);
        evbuffer_add(st->io->in, "\r\n", 2);
        pt_h2head_free(&st->rq);
        pt_io_stream_kick(st->io, 0);
    }
}

/* Rapid reset (CVE-2023-44487): a client resetting more streams a second than allowed is cut off; streams
   the gateway refuses as malformed or unsupported count the same. */
static int count_reset(struct pt_h2 *h)
{
    uint64_t sec = pt_clock_now_ms() / 1000;
    if (sec != h->reset_sec) {
        h->reset_sec = sec;
        h->resets = 0;
    }
    if (++h->resets <= h->c->w->cur->gen->conf->limits.h2.resets_per_second)
        return 0;
    atomic_fetch_add_explicit(&m_cut, 1, memory_order_relaxed);
    pt_info("client %s: too many streams reset (more than %lld a second): connection closed", h->c->peer.ip,
            (long long)h->c->w->cur->gen->conf->limits.h2.resets_per_second);
    h->fatal = true;
    return nghttp2_session_terminate_session(h->s, NGHTTP2_ENHANCE_YOUR_CALM);
}

/* ------------------------------------------------------------------ nghttp2 callbacks */

static ssize_t on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *arg)
{
    struct pt_h2 *h = arg;
    if (evbuffer_get_length(h->io->out) > HIGH_WATER)
        return NGHTTP2_ERR_WOULDBLOCK; /* the client does not read: sending resumes when it does */
    if (evbuffer_add(h->io->out, data, len) < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    h->sent += len;
    return (ssize_t)len;
}

static uint64_t header_list_limit(const struct pt_h2 *h)
{
    const struct pt_conf *cf = h->c->w->cur->gen->conf;
    return cf->limits.h2.header_list ? cf->limits.h2.header_list : cf->limits.header_size;
}

/* A header block far past the header list size is not answered 431 but cut off with the connection
   (pt_h2head_flood). */
static int cut_block(struct pt_h2 *h)
{
    pt_info("client %s: HTTP/2 header block far over the limit: connection closed", h->c->peer.ip);
    atomic_fetch_add_explicit(&m_cut, 1, memory_order_relaxed);
    h->fatal = true;
    nghttp2_session_terminate_session(h->s, NGHTTP2_ENHANCE_YOUR_CALM);
    return NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int on_begin_frame(nghttp2_session *s, const nghttp2_frame_hd *hd, void *arg)
{
    struct pt_h2 *h = arg;
    return pt_h2head_block_frame(&h->block, hd, header_list_limit(h)) ? cut_block(h) : 0;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct pt_h2 *h = arg;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2s *st = calloc(1, sizeof(*st));
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    st->h = h;
    st->id = f->hd.stream_id;
    pt_h2head_init(&st->rq, header_list_limit(h));
    pt_list_add_tail(&h->streams, &st->link);
    h->nstreams++;
    atomic_fetch_add_explicit(&m_opened, 1, memory_order_relaxed);
    nghttp2_session_set_stream_user_data(s, st->id, st);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *arg)
{
    struct pt_h2 *h = arg;
    struct h2s *st = f->hd.type == NGHTTP2_HEADERS ? stream_of(h, f->hd.stream_id) : NULL;
    if (!st)
        return 0;
    if (f->headers.cat != NGHTTP2_HCAT_REQUEST) {
        /* trailers: kept for a body passed on chunked (the fields of the head are gone by now) */
        if (!st->chunked_in || !st->io || st->user_gone)
            return 0;
        if (!st->rq.limit) /* they go on as a chunked trailer section: its bound too */
            pt_h2head_init(&st->rq, PT_MIN(header_list_limit(h), (uint64_t)PT_HTTP_TRAILERS_MAX));
    }
    if (!pt_h2head_field(&st->rq, name, nlen, value, vlen))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return pt_h2head_flood(st->rq.size, header_list_limit(h)) ? cut_block(h) : 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct pt_h2 *h = arg;
    struct h2s *st = f->hd.stream_id ? stream_of(h, f->hd.stream_id) : NULL;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        if (!st)
            return 0;
        if (f->headers.cat == NGHTTP2_HCAT_REQUEST)
            return request_ready(st, f->hd.flags & NGHTTP2_FLAG_END_STREAM);
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
            request_ended(st);
        return 0;
    case NGHTTP2_DATA:
        /* the connection's window is returned at once: each stream's own bounds what is buffered.
           nghttp2 counts a frame's padding as consumed itself (connection and stream): counting it
           again would give a padding peer window for bytes still held, and no bound at all */
        nghttp2_session_consume_connection(s, f->hd.length - f->data.padlen);
        if (st && (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
            request_ended(st);
        return 0;
    case NGHTTP2_RST_STREAM:
        atomic_fetch_add_explicit(&m_reset, 1, memory_order_relaxed);
        return count_reset(h);
    default:
        return 0;
    }
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                         void *arg)
{
    struct pt_h2 *h = arg;
    struct h2s *st = stream_of(h, id);
    if (!st || !st->io || st->user_gone) {
        nghttp2_session_consume_stream(s, id, len); /* nobody reads it: dropped */
        return 0;
    }
    struct evbuffer *in = st->io->in;
    if (st->chunked_in)
        evbuffer_add_printf(in, "%zx\r\n", len);
    evbuffer_add(in, data, len);
    if (st->chunked_in)
        evbuffer_add(in, "\r\n", 2);
    st->unconsumed += len;
    pt_io_stream_kick(st->io, 0);
    return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct pt_h2 *h = arg;
    if (f->hd.type == NGHTTP2_RST_STREAM && f->rst_stream.error_code == NGHTTP2_REFUSED_STREAM)
        atomic_fetch_add_explicit(&m_refused, 1, memory_order_relaxed);
    if (f->hd.type == NGHTTP2_RST_STREAM && f->rst_stream.error_code == NGHTTP2_PROTOCOL_ERROR)
        return count_reset(h); /* a malformed request: as cheap to send as a reset */
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct h2s *st = stream_of(h, f->hd.stream_id);
    /* the response is complete while the client still sends: the pipeline may still be passing the body
       on (as over HTTP/1.1); once it lets go, the rest is not wanted (RFC 9113 8.1) */
    if (st && !st->req_ended) {
        st->rst_when_gone = true;
        h2_schedule(h);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *arg)
{
    struct h2s *st = stream_of(arg, id);
    if (!st)
        return 0;
    st->closed = true;
    nghttp2_session_set_stream_user_data(s, id, NULL);
    /* a reset or the session's end: like a client that left.  Not a clean end of both sides: the pipeline
       may still be passing the end of the body on (full duplex, pt_respond_body_done) */
    bool clean = code == NGHTTP2_NO_ERROR && st->req_ended && st->resp_done;
    if (st->io && !st->user_gone && !clean)
        pt_io_stream_kick(st->io, PT_IO_ERROR);
    h2_schedule(st->h);
    return 0;
}

/* A trailer field that may go on: framing fields (Content-Length, Transfer-Encoding) are never valid in
   trailers (RFC 9110 6.5.1), and only they can conflict with each other in the parser. */
static bool trailer_field_kept(const struct pt_head *h)
{
    int kind = h->nh > 0 ? h->h[0].kind : PT_H_CONTENT_LENGTH;
    return kind != PT_H_CONTENT_LENGTH && kind != PT_H_TRANSFER_ENCODING;
}

/* The trailer section's lines that an HTTP/1.1 parser takes one by one, into buf after its status line (at
   `at`); returns the new end.  A field it refuses (a malformed one), a framing field and every field past
   RESPONSE_HEADERS_MAX are dropped alone: the rest then parse together. */
static size_t fields_that_parse(char *buf, size_t at, const char *sec, size_t n, struct pt_pool *pool)
{
    static const char line[] = "HTTP/1.1 200 OK\r\n";
    char *one = pt_pool_alloc(pool, sizeof(line) + n + 2);
    size_t i = 0;
    int kept = 0;
    while (one && i < n && kept < RESPONSE_HEADERS_MAX) {
        const char *lf = memchr(sec + i, '\n', n - i);
        size_t len = lf ? (size_t)(lf - (sec + i)) + 1 : n - i;
        struct pt_head h = {0};
        struct pt_http_err err = {0};
        memcpy(one, line, sizeof(line) - 1);
        memcpy(one + sizeof(line) - 1, sec + i, len);
        memcpy(one + sizeof(line) - 1 + len, "\r\n", 2);
        if (len > 2 && pt_http_parse_response(&h, one, sizeof(line) - 1 + len + 2, pool, 1, false, &err) &&
            trailer_field_kept(&h)) {
            memcpy(buf + at, sec + i, len);
            at += len;
            kept++;
        }
        i += len;
    }
    memcpy(buf + at, "\r\n", 2);
    return at + 2;
}

int pt_h2_trailer_fields(struct evbuffer *sec, struct pt_pool *pool, nghttp2_nv **out)
{
    static const char line[] = "HTTP/1.1 200 OK\r\n";
    size_t n = evbuffer_get_length(sec);
    if (n <= 5) /* "0\r\n\r\n": none */
        return 0;
    char *buf = pt_pool_alloc(pool, n - 3 + sizeof(line));
    char *fields = pt_pool_alloc(pool, n);
    if (!buf || !fields)
        return -1;
    memcpy(buf, line, sizeof(line) - 1);
    evbuffer_drain(sec, 3);
    evbuffer_remove(sec, fields, n - 3);
    memcpy(buf + sizeof(line) - 1, fields, n - 3);
    size_t len = sizeof(line) - 1 + n - 3;
    struct pt_head h = {0};
    struct pt_http_err err = {0};
    nghttp2_nv *nv = NULL;
    if (!pt_http_parse_response(&h, buf, len, pool, RESPONSE_HEADERS_MAX, false, &err)) {
        /* one bad field does not take the others with it: the section again, with only the good ones */
        len = fields_that_parse(buf, sizeof(line) - 1, fields, n - 5, pool);
        memset(&h, 0, sizeof(h));
        if (!pt_http_parse_response(&h, buf, len, pool, RESPONSE_HEADERS_MAX, false, &err))
            return -1;
    }
    int k = pt_h2head_nv(&h, NULL, pool, &nv);
    if (k < 1)
        return -1;
    *out = nv + 1; /* without :status */
    return k - 1;
}

bool pt_h2_submit_trailers(nghttp2_session *s, int32_t id, struct evbuffer *sec)
{
    struct pt_pool *pool = pt_pool_new(4096);
    nghttp2_nv *nv = NULL;
    int n = pool ? pt_h2_trailer_fields(sec, pool, &nv) : -1;
    bool ok = n > 0 && nghttp2_submit_trailer(s, id, nv, (size_t)n) == 0;
    if (pool)
        pt_pool_free(pool);
    return ok;
}

/* The response body: the pipeline's HTTP/1.1 framing taken off, as the client's window allows. */
static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                         nghttp2_data_source *src, void *arg)
{
    struct h2s *st = src->ptr;
    if (st->own) {
        int n = evbuffer_remove(st->own, buf, length);
        if (evbuffer_get_length(st->own) == 0) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            st->resp_done = true;
        }
        return n < 0 ? 0 : n;
    }
    struct evbuffer *out = st->io->out;
    size_t n = 0;
    bool eof = false;
    switch (st->body) {
    case PT_BODY_LENGTH: {
        size_t k = (size_t)PT_MIN((uint64_t)length, PT_MIN(st->left, (uint64_t)evbuffer_get_length(out)));
        n = (size_t)evbuffer_remove(out, buf, k);
        st->left -= n;
        eof = st->left == 0;
        break;
    }
    case PT_BODY_CHUNKED:
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
        break;
    default: /* PT_BODY_EOF: until the pipeline lets go */
        n = (size_t)evbuffer_remove(out, buf, PT_MIN(length, evbuffer_get_length(out)));
        eof = st->user_gone && evbuffer_get_length(out) == 0;
        break;
    }
    if (evbuffer_get_length(out) == 0 && !st->user_gone)
        pt_io_stream_kick(st->io, 0); /* a pipeline waiting for the output to drain goes on */
    if (eof) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->trailers && pt_h2_submit_trailers(st->h->s, st->id, st->trailers))
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM; /* the trailers end the stream */
        st->resp_done = true;
        return (ssize_t)n;
    }
    if (n)
        return (ssize_t)n;
    if (st->user_gone)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the response was cut short: the stream is reset */
    st->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
}

/* ------------------------------------------------------------------ responses */

/* Takes the response heads at the front of the stream's output (1xx ones, then the final one) and
   submits them; false when the stream was reset instead. */
static bool take_heads(struct h2s *st)
{
    struct evbuffer *out = st->io->out;
    while (!st->submitted) {
        size_t len = 0;
        struct pt_http_err err = {0};
        int r = pt_http_scan(&st->scan, out, RESPONSE_HEAD_MAX, RESPONSE_HEAD_MAX, false, &len, &err);
        if (r == 0)
            return true;
        memset(&st->scan, 0, sizeof(st->scan));
        struct pt_pool *pool = r > 0 ? pt_pool_new(4096) : NULL;
        char *copy = pool ? pt_pool_alloc(pool, len) : NULL;
        struct pt_head rh = {0};
        nghttp2_nv *nv = NULL;
        int nnv = -1;
        if (copy) {
            evbuffer_remove(out, copy, len);
            if (pt_http_parse_response(&rh, copy, len, pool, RESPONSE_HEADERS_MAX, st->head_req, &err))
                nnv = pt_h2head_nv(&rh, NULL, pool, &nv);
        }
        int rv = -1;
        if (nnv > 0 && rh.status < 200) {
            rv = nghttp2_submit_headers(st->h->s, NGHTTP2_FLAG_NONE, st->id, NULL, nv, (size_t)nnv, NULL);
        } else if (nnv > 0) {
            st->submitted = true;
            st->body = rh.body;
            st->left = rh.content_length > 0 ? (uint64_t)rh.content_length : 0;
            bool none = rh.body == PT_BODY_NONE || (rh.body == PT_BODY_LENGTH && st->left == 0);
            st->resp_done = none;
            nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_body};
            rv = nghttp2_submit_response(st->h->s, st->id, nv, (size_t)nnv, none ? NULL : &prd);
        }
        if (pool)
            pt_pool_free(pool);
        if (rv != 0) {
            pt_warn("HTTP/2 stream %d: its response could not be sent%s%s", st->id, err.msg ? ": " : "",
                    err.msg ? err.msg : "");
            nghttp2_submit_rst_stream(st->h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
            st->submitted = st->resp_done = true;
            return false;
        }
    }
    return true;
}

/* The stream's pipeline wrote, or let go: new heads are submitted, a waiting body goes on. */
static void stream_output(struct h2s *st)
{
    st->out_ready = false;
    if (st->closed || st->resp_done)
        return;
    /* the pipeline let go with its response unfinished (a send timeout, a failure): the rest will never
       come.  Only a body framed by the end of the connection ends that way (resuming sends its end). */
    if (st->user_gone && st->submitted &&
        !(st->body == PT_BODY_EOF && evbuffer_get_length(st->io->out) == 0)) {
        nghttp2_submit_rst_stream(st->h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        st->resp_done = true;
        return;
    }
    if (!st->submitted) {
        if (!take_heads(st))
            return;
        if (!st->submitted) {
            if (st->user_gone) /* it ended without a (whole) response */
                nghttp2_submit_rst_stream(st->h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
            return;
        }
    }
    if (st->deferred) {
        st->deferred = false;
        nghttp2_session_resume_data(st->h->s, st->id);
    }
}

static void op_flush(void *arg)
{
    struct h2s *st = arg;
    st->out_ready = true;
    h2_schedule(st->h);
}

static void op_freed(void *arg)
{
    struct h2s *st = arg;
    st->user_gone = true;
    st->out_ready = true;
    h2_schedule(st->h);
}

static const struct pt_io_stream_ops stream_ops = {.flush = op_flush, .freed = op_freed};

/* ------------------------------------------------------------------ the session */

/* Feeds what the client sent; false on a fatal error (GOAWAY queued by nghttp2). */
static bool feed(struct pt_h2 *h)
{
    struct evbuffer *in = h->io->in;
    while (evbuffer_get_length(in) && !h->fatal) {
        /* a client that does not read our answers gets no more of them: its frames wait */
        if (evbuffer_get_length(h->io->out) > HIGH_WATER)
            return true;
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        ssize_t n = nghttp2_session_mem_recv(h->s, v.iov_base, v.iov_len);
        if (n < 0) {
            pt_info("client %s: HTTP/2: %s", h->c->peer.ip, nghttp2_strerror((int)n));
            h->fatal = true;
            if (n != NGHTTP2_ERR_BAD_CLIENT_MAGIC && n != NGHTTP2_ERR_FLOODED)
                nghttp2_session_terminate_session(h->s, NGHTTP2_PROTOCOL_ERROR);
            evbuffer_drain(in, evbuffer_get_length(in));
            return false;
        }
        evbuffer_drain(in, (size_t)n);
    }
    return !h->fatal;
}

/* A stream whose header block has begun but is not complete has no connection (and no timer) of its own. */
static bool head_pending(const struct pt_h2 *h)
{
    for (const struct pt_list *it = h->streams.next; it != &h->streams; it = it->next) {
        const struct h2s *st = pt_container_of(it, const struct h2s, link);
        if (!st->io && !st->closed && !st->submitted)
            return true;
    }
    return false;
}

/* Arms `kind` unless it already runs: its deadline counts from when the state began, not from the last
   frame (PINGs or SETTINGS do not keep an idle connection, nor an unfinished header block, alive). */
static void keep_timer(struct pt_conn *c, enum pt_tkind kind)
{
    if (c->timer.kind != (int)kind)
        pt_timer_set(c->w, &c->timer, kind);
}

/* No stream: the keep-alive timeout, from when the last stream ended.  A header block begun: the header
   timeout.  Frames waiting for the socket: the send timeout runs from when they started to wait (a client
   that reads nothing is closed after it, however busy its streams are).  Otherwise each stream's
   connection has its own timers. */
static void set_timer(struct pt_h2 *h)
{
    struct pt_conn *c = h->c;
    bool waiting = evbuffer_get_length(h->io->out) > 0;
    if (h->nstreams == 0 && (!waiting || c->timer.kind == PT_T_KEEPALIVE))
        keep_timer(c, PT_T_KEEPALIVE); /* an idle connection's PING answers do not make it busy */
    else if (head_pending(h))
        keep_timer(c, PT_T_HEADER);
    else if (waiting)
        keep_timer(c, PT_T_SEND);
    else
        pt_timer_clear(&c->timer);
}

/* Frames into the connection's output, as far as the socket takes them now; what the socket cannot take
   yet waits for it to drain (the connection's PT_IO_DRAINED brings us back). */
static int send_some(struct pt_h2 *h)
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
    h2_schedule(h); /* more to send: later, so that other connections get their turn */
    return 0;
}

/* Everything that calls nghttp2 outside its callbacks; false when the connection is to be freed. */
static bool h2_run_once(struct pt_h2 *h)
{
    reap(h);
    for (struct pt_list *it = h->streams.next; it != &h->streams; it = it->next) {
        struct h2s *st = pt_container_of(it, struct h2s, link);
        if (st->user_gone)
            give_back_window(st);
        if (st->user_gone && st->rst_when_gone && !st->closed && !st->req_ended) {
            st->rst_when_gone = false;
            nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
        }
        if (st->out_ready && st->io)
            stream_output(st);
    }
    bool ok = feed(h);
    int rv = send_some(h);
    reap(h);
    if (rv != 0)
        return false;
    bool out = evbuffer_get_length(h->io->out) > 0;
    if (out)
        pt_io_want_drain(h->io, true);
    if (!nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s)) {
        if (!out)
            return false;
        pt_io_read(h->io, false); /* the GOAWAY goes out, then the connection closes */
        h->fatal = true;
    } else if (!ok && !out)
        return false;
    pt_io_read(h->io, !h->fatal && evbuffer_get_length(h->io->out) <= HIGH_WATER);
    set_timer(h);
    return true;
}

static void h2_run_ev(evutil_socket_t fd, short what, void *arg)
{
    struct pt_h2 *h = arg;
    if (!h2_run_once(h))
        pt_conn_h2_closed(h->c); /* frees h */
}

int pt_h2_preface(struct evbuffer *buf)
{
    size_t have = evbuffer_get_length(buf);
    size_t n = PT_MIN(have, (size_t)PT_H2_PREFACE_LEN);
    unsigned char *p = evbuffer_pullup(buf, (ssize_t)n);
    if (n && memcmp(p, PT_H2_PREFACE, n))
        return 0;
    return n == PT_H2_PREFACE_LEN ? 1 : -1;
}

static nghttp2_session_callbacks *callbacks(void)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return NULL;
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    return cb;
}

static nghttp2_session *session_new(struct pt_h2 *h, const struct pt_h2_cf *lim, size_t header_list)
{
    nghttp2_session_callbacks *cb = callbacks();
    nghttp2_option *opt = NULL;
    nghttp2_session *s = NULL;
    if (!cb || nghttp2_option_new(&opt) != 0) {
        if (cb)
            nghttp2_session_callbacks_del(cb);
        return NULL;
    }
    /* windows are returned as the pipeline takes bodies, not as frames arrive */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* floods: SETTINGS entries and queued ACKs (PING, SETTINGS) are bounded; past them nghttp2 fails the
       connection */
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    int rv = nghttp2_session_server_new2(&s, cb, h, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0)
        return NULL;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)lim->max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)lim->initial_window},
        {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, (uint32_t)lim->max_frame},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, (uint32_t)lim->hpack_table},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)header_list},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    if (nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0) {
        nghttp2_session_del(s);
        return NULL;
    }
    return s;
}

struct pt_h2 *pt_h2_start(struct pt_conn *c)
{
    struct pt_h2 *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    const struct pt_conf *cf = c->w->cur->gen->conf;
    h->c = c;
    h->io = c->io;
    pt_list_init(&h->streams);
    h->s = session_new(h, &cf->limits.h2,
                       cf->limits.h2.header_list ? cf->limits.h2.header_list : cf->limits.header_size);
    if (!h->s || event_assign(&h->run_ev, c->w->base, -1, 0, h2_run_ev, h) < 0) {
        if (h->s)
            nghttp2_session_del(h->s);
        free(h);
        return NULL;
    }
    h2_schedule(h);
    atomic_fetch_add_explicit(&m_conns, 1, memory_order_relaxed);
    return h;
}

bool pt_h2_io(struct pt_h2 *h, int what)
{
    if (what & (PT_IO_EOF | PT_IO_ERROR | PT_IO_HUP))
        return false;
    return h2_run_once(h);
}

void pt_h2_drain(struct pt_h2 *h)
{
    if (h->draining)
        return;
    h->draining = true;
    nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->s),
                          NGHTTP2_NO_ERROR, NULL, 0);
    h2_schedule(h);
}

bool pt_h2_idle(const struct pt_h2 *h)
{
    return h->nstreams == 0;
}

void pt_h2_free(struct pt_h2 *h)
{
    if (!h)
        return;
    h->freeing = true;
    event_del(&h->run_ev);
    /* streams still running end now, as if their client had left (their users are told at once: the
       connection they borrow their TLS from goes away) */
    while (!pt_list_empty(&h->streams)) {
        struct h2s *st = pt_container_of(h->streams.next, struct h2s, link);
        st->closed = true;
        if (st->io && !st->user_gone)
            pt_conn_stream_abort(st->conn);
        stream_free(st);
    }
    nghttp2_session_del(h->s);
    free(h);
}
