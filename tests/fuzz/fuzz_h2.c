/*
 * fuzz_h2 -- the HTTP/2 glue (core/proxy/pt_h2.c) on arbitrary client
 * bytes: the gateway's own session (pt_h2_start, its nghttp2 callbacks,
 * its request heads, stream connections and flow control) on a connection
 * of a stand-in worker, fed the input in pieces the first byte sizes.
 *
 * The streams' pipelines never run (the event loop is not turned); instead
 * every stream whose request head was made gets a response written to its
 * output, framed as the second byte says (length, chunked, until the end,
 * none), and the session takes it as it would from the pipeline.  Each
 * request head made must be exactly one HTTP/1.1 head for the gateway's
 * scanner (no field can end it early).  At the end the connection is freed
 * with its streams in whatever state they are.  Never a read or write out
 * of bounds, a leak or a use after free (ASan).
 *
 * Input: byte 0 the size of the pieces, byte 1 the first response framing
 * (its high bit: the rest is written with "~hh" escapes, see fuzz_seeds),
 * then the client's bytes.
 */
#include "conf/pt_conf.h"
#include "conf/pt_genmodel.h"
#include "event/pt_io.h"
#include "http/pt_http.h"
#include "http/pt_msg.h"
#include "proxy/pt_h2.h"
#include "proxy/pt_proxy.h"
#include "proxy/pt_req.h"
#include "proxy/pt_worker.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct pt_worker w;
static struct pt_conf cf;
static struct pt_gen gen;
static struct pt_wgen wgen;

static void setup(void)
{
    if (w.base)
        return;
    w.base = event_base_new();
    if (!w.base)
        abort();
    for (int k = 0; k < PT_T_COUNT; k++)
        pt_list_init(&w.timers[k]);
    pt_list_init(&w.conns);
    cf.limits.header_size = 4096;
    cf.limits.h2 = (struct pt_h2_cf){.max_streams = 8,
                                     .hpack_table = 4096,
                                     .initial_window = 65535,
                                     .max_frame = 16384,
                                     .resets_per_second = 50};
    gen.conf = &cf;
    wgen.gen = &gen;
    w.cur = &wgen;
}

/* The connection's own events are not waited for: the driver calls pt_h2_io itself. */
static void on_io(struct pt_io *io, int what, void *arg)
{
}

/* A stream's request head is one head for the gateway's scanner, ending where the session ended it. */
static void check_head(struct evbuffer *in)
{
    size_t got = 0;
    struct pt_scan scan = {.max_hline = 1 << 20};
    struct pt_http_err err = {0};
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (end.pos < 0)
        abort(); /* the session writes whole heads */
    int r = pt_http_scan(&scan, in, 1 << 20, 1 << 20, true, &got, &err);
    if (r > 0 && got != (size_t)end.pos + 4)
        abort(); /* a field ended the head early: it would smuggle a second request */
}

static const char *const responses[] = {
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n"
    "3\r\nabc\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
    "HTTP/1.1 204 No Content\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\ncut short",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
};

/* Each stream connection with a head gets a response; some let go of their stream (as a finished
   pipeline does). */
static void answer_streams(struct pt_h2 *h, unsigned kind)
{
    struct pt_list *it = w.conns.next;
    while (it != &w.conns) {
        struct pt_conn *sc = pt_container_of(it, struct pt_conn, link);
        it = it->next;
        if (!sc->stream || sc->nreqs)
            continue;
        sc->nreqs = 1; /* answered once */
        check_head(sc->io->in);
        const char *r = responses[kind++ % (sizeof(responses) / sizeof(responses[0]))];
        evbuffer_add(sc->io->out, r, strlen(r));
        pt_io_flush(sc->io);
        if (kind & 1)
            pt_conn_stream_abort(sc);
    }
    pt_h2_io(h, PT_IO_DRAINED);
}

static int hexval(uint8_t c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The bytes of a "~hh"-written input (see fuzz_seeds) into out; returns their count. */
static size_t unescape(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '~' && i + 2 < n && hexval(in[i + 1]) >= 0 && hexval(in[i + 2]) >= 0) {
            out[k++] = (uint8_t)(hexval(in[i + 1]) * 16 + hexval(in[i + 2]));
            i += 2;
        } else
            out[k++] = in[i];
    }
    return k;
}

static void run(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    if (size < 2)
        return 0;
    if (!(data[1] & 0x80)) {
        run(data, size);
        return 0;
    }
    uint8_t *raw = malloc(size);
    if (!raw)
        abort();
    raw[0] = data[0];
    raw[1] = data[1] & 0x7f;
    size_t n = 2 + unescape(data + 2, size - 2, raw + 2);
    run(raw, n);
    free(raw);
    return 0;
}

static void run(const uint8_t *data, size_t size)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    int bufsize = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof(bufsize));
    struct pt_conn *c = calloc(1, sizeof(*c));
    c->w = &w;
    strcpy(c->peer.ip, "fuzz");
    pt_list_init(&c->link);
    pt_timer_init(&c->timer, NULL);
    c->io = pt_io_plain(w.base, sv[0], on_io, c);
    c->state = C_H2;
    c->h2 = pt_h2_start(c);
    if (!c->io || !c->h2)
        abort();
    size_t step = (size_t)(data[0] % 64) + 1;
    unsigned kind = data[1];
    bool open = true;
    for (size_t off = 2; off < size && open; off += step) {
        size_t n = size - off < step ? size - off : step;
        evbuffer_add(c->io->in, data + off, n);
        open = pt_h2_io(c->h2, PT_IO_READ);
        if (open)
            answer_streams(c->h2, kind++);
        char sink[65536];
        while (read(sv[1], sink, sizeof(sink)) > 0)
            ;
    }
    pt_h2_free(c->h2);
    pt_timer_clear(&c->timer);
    pt_io_free(c->io);
    close(sv[1]);
    free(c);
}

const char *fuzz_name = "fuzz_h2";
/* Seeds are C strings (the runner puts the first byte before them): an input whose second byte has its
   high bit set is written with "~hh" for each byte that is not printable (the real conversations of
   the corpus are raw). */
const char *const fuzz_seeds[] = {
    "\x80"
    "PRI * "
    "HTTP/"
    "2.0~0d~0a~0d~0aSM~0d~0a~0d~0a~00~00*~04~00~00~00~00~00~00~01~00~00~10~00~00~02~00~00~00~01~00~04~00~00~"
    "ff~ff~00~05~00~00@~00~00~08~00~00~00~00~00~03~00~00~00d~00~06~00~01~00~00~00~00~18~01~05~00~00~00~01~"
    "82D~85`~7f~e7h~05~86A~82~9b~c7~1f~11~82~1c~01~1f~11~83~8e~01~7f",
    "\x81"
    "PRI * "
    "HTTP/"
    "2.0~0d~0a~0d~0aSM~0d~0a~0d~0a~00~00*~04~00~00~00~00~00~00~01~00~00~10~00~00~02~00~00~00~01~00~04~00~00~"
    "ff~ff~00~05~00~00@~00~00~08~00~00~00~00~00~03~00~00~00d~00~06~00~01~00~00~00~00~0d~01~04~00~00~00~01~"
    "83D~82b~bf~86A~82~9b~c7~5c~81o~00~00~05~00~01~00~00~00~01hello~00~00~0d~01~04~00~00~00~03B~83~d7~c3~7fD~"
    "82c~cf~86f~81~9f~00~00~05~00~00~00~00~00~03chunk~00~00~07~01~05~00~00~00~03@~83~f2~b2~7f~81O",
    "\x82"
    "PRI * "
    "HTTP/"
    "2.0~0d~0a~0d~0aSM~0d~0a~0d~0a~00~00*~04~00~00~00~00~00~00~01~00~00~10~00~00~02~00~00~00~01~00~04~00~00~"
    "ff~ff~00~05~00~00@~00~00~08~00~00~00~00~00~03~00~00~00d~00~06~00~01~00~00~00~00~06~01~04~00~00~00~01~82~"
    "84~86A~81~1f~00~00~04~03~00~00~00~00~01~00~00~00~00~00~00~04~01~04~00~00~00~03~82~84~86~be~00~00~04~03~"
    "00~00~00~00~03~00~00~00~00~00~00~04~01~04~00~00~00~05~82~84~86~be~00~00~04~03~00~00~00~00~05~00~00~00~"
    "00~00~00~04~01~04~00~00~00~07~82~84~86~be~00~00~04~03~00~00~00~00~07~00~00~00~00~00~00~08~06~00~00~00~"
    "00~0012345678",
    "\x01PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    NULL,
};
