/*
 * fuzz_h2c -- the HTTP/2 backend glue (core/proxy/pt_h2up.c) on arbitrary
 * backend bytes: a client session of a stand-in worker and pool, over a
 * real connection (a Unix socket pair made by pt_io_connect), carrying three
 * exchanges (a GET, a POST with a length, a chunked POST with trailers), fed
 * the input in pieces the first byte sizes while the event loop turns.
 *
 * What the session writes into each stream's input must be HTTP/1.1 for the
 * gateway's own readers: response heads the response scanner takes whole,
 * bodies framed as their heads say.  A stream the session fails is let go,
 * as pt_upstream does; at the end every stream still held is let go and the
 * pool's sessions are freed.  Never a read or write out of bounds, a leak
 * or a use after free (ASan).
 *
 * The same bytes then answer the side-call client (core/http/pt_hclient.c)
 * over HTTP/2: a send-request POST with http-version 2 to a loopback TCP
 * listener of the driver (its stream is 1, as the first exchange's above).
 * Whatever the bytes, the call ends with a response within the body cap or
 * with an error, or is cancelled at the end; the worker's kept sessions are
 * released after each input.
 *
 * Input: byte 0 the size of the pieces, byte 1 flags (its high bit: the
 * rest is written with "~hh" escapes, see fuzz_seeds), then the backend's
 * bytes.
 */
#include "base/pt_log.h"
#include "conf/pt_conf.h"
#include "event/pt_io.h"
#include "http/pt_hclient.h"
#include "http/pt_http.h"
#include "proxy/pt_h2up.h"
#include "proxy/pt_proxy.h"
#include "proxy/pt_req.h"
#include "proxy/pt_worker.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct pt_worker w;
static int lfd = -1;
static struct sockaddr_un addr;
static int tfd = -1; /* the side call's server: a loopback TCP listener */
static int tport;

static void setup(void)
{
    if (w.base)
        return;
    w.base = event_base_new();
    if (!w.base)
        abort();
    signal(SIGPIPE, SIG_IGN);    /* the session may close before the backend's bytes are all written */
    pt_log_level = PT_LOG_ERROR; /* what a broken backend earns is logged: not this run's output */
    for (int k = 0; k < PT_T_COUNT; k++) {
        pt_list_init(&w.timers[k]);
        w.tdur[k] = 60000;
    }
    pt_list_init(&w.conns);
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    addr.sun_family = AF_UNIX;
    /* abstract name: nothing left on disk */
    snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1, "portico-fuzz-h2c-%d", (int)getpid());
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 8) < 0)
        abort();
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t inlen = sizeof(in);
    tfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (tfd < 0 || bind(tfd, (struct sockaddr *)&in, sizeof(in)) < 0 || listen(tfd, 8) < 0 ||
        getsockname(tfd, (struct sockaddr *)&in, &inlen) < 0)
        abort();
    tport = ntohs(in.sin_port);
}

struct exchange {
    struct pt_io *io;
    struct pt_h2up_stream *st;
    struct pt_scan scan;
    bool head_seen;
};

/* pt_upstream's part: read the response head with the gateway's scanner, let go on failure. */
static void on_stream(struct pt_io *io, int what, void *arg)
{
    struct exchange *x = arg;
    if (what & (PT_IO_ERROR | PT_IO_EOF)) {
        bool timeout, refused;
        if (!pt_h2up_error(x->st, &timeout, &refused))
            abort();
        pt_io_free(io);
        x->io = NULL;
        return;
    }
    while (!x->head_seen && evbuffer_get_length(io->in)) {
        size_t len = 0;
        struct pt_http_err err = {0};
        int r = pt_http_scan(&x->scan, io->in, 1 << 20, 1 << 20, false, &len, &err);
        if (r < 0)
            abort(); /* the session writes only heads the gateway reads */
        if (r == 0)
            return;
        char *head = malloc(len);
        evbuffer_remove(io->in, head, len);
        memset(&x->scan, 0, sizeof(x->scan));
        bool interim = len > 12 && head[9] == '1';
        free(head);
        x->head_seen = !interim;
    }
    evbuffer_drain(io->in, evbuffer_get_length(io->in));
}

static void turn(void)
{
    for (int i = 0; i < 8; i++)
        event_base_loop(w.base, EVLOOP_NONBLOCK);
}

static const char *const requests[] = {
    "GET /a HTTP/1.1\r\nHost: backend.example\r\nX-Id: 1\r\n\r\n",
    "POST /b HTTP/1.1\r\nHost: backend.example\r\nContent-Length: 5\r\n\r\nhello",
    "POST /c HTTP/1.1\r\nHost: backend.example\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\n\r\n"
    "3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
};

static int hexval(uint8_t c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

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

static void run(const uint8_t *data, size_t size)
{
    struct pt_upool pool = {.key = "fuzz"};
    pt_list_init(&pool.idle);
    pt_list_init(&pool.h2s);
    struct pt_io *io = pt_io_connect(w.base, (struct sockaddr *)&addr, sizeof(addr), NULL, NULL);
    struct pt_h2up *h = io ? pt_h2up_new(&w, &pool, io, false) : NULL;
    int peer = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (!h || peer < 0)
        abort();
    struct exchange x[3] = {0};
    for (int i = 0; i < 3; i++) {
        x[i].st = pt_h2up_stream(h, on_stream, &x[i], &x[i].io);
        if (!x[i].st)
            abort();
        pt_io_read(x[i].io, true);
        evbuffer_add(x[i].io->out, requests[i], strlen(requests[i]));
        pt_io_flush(x[i].io);
    }
    turn();
    size_t step = (size_t)(data[0] % 64) + 1;
    char sink[65536];
    for (size_t off = 2; off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        if (write(peer, data + off, n) < 0)
            break;
        turn();
        while (read(peer, sink, sizeof(sink)) > 0)
            ;
    }
    for (int i = 0; i < 3; i++)
        if (x[i].io)
            pt_io_free(x[i].io);
    turn();
    close(peer);
    turn();
    pt_h2up_free_pool(&pool);
    turn();
}

#define SIDE_MAX_BODY 4096

static bool side_done;

static void on_side(void *arg, int err, const char *msg, const struct pt_http_resp *resp)
{
    (void)arg;
    side_done = true;
    if (err ? !msg : !resp || resp->body.len > SIDE_MAX_BODY || resp->status < 200 || resp->status > 999)
        abort(); /* an error without its reason, or a response past the cap or with an interim status */
}

/* The side-call client over HTTP/2 on the same backend bytes. */
static void run_side_call(const uint8_t *data, size_t size)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/side", tport);
    struct pt_http_req r = {0};
    r.method = (pt_bytes){"POST", 4};
    r.url = (pt_bytes){url, strlen(url)};
    r.body = (pt_bytes){"hello", 5};
    r.timeout_ms = 60000;
    r.max_body = SIDE_MAX_BODY;
    r.http_version = PT_HTTP_VERSION_2;
    side_done = false;
    struct pt_hclient *h = pt_hclient_send(w.base, &r, NULL, on_side, NULL);
    if (!h)
        abort();
    turn(); /* it connects from the loop */
    int peer = accept4(tfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (peer < 0)
        abort();
    size_t step = (size_t)(data[0] % 64) + 1;
    char sink[65536];
    for (size_t off = 2; off < size && !side_done; off += step) {
        size_t n = size - off < step ? size - off : step;
        turn();
        while (read(peer, sink, sizeof(sink)) > 0)
            ;
        if (write(peer, data + off, n) < 0)
            break;
        turn();
    }
    /* the server's end: the call must end too (a response, or an error) once the bytes are delivered,
       which loopback may defer on a busy machine; a call still running after a second is cancelled */
    shutdown(peer, SHUT_WR);
    for (int k = 0; k < 1000 && !side_done; k++) {
        turn();
        while (read(peer, sink, sizeof(sink)) > 0)
            ;
        if (!side_done)
            usleep(1000);
    }
    if (!side_done)
        pt_hclient_cancel(h);
    close(peer);
    turn();
    pt_hclient_worker_end(); /* a session kept idle goes with it */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    if (size < 2)
        return 0;
    if (!(data[1] & 0x80)) {
        run(data, size);
        run_side_call(data, size);
        return 0;
    }
    uint8_t *raw = malloc(size);
    if (!raw)
        abort();
    raw[0] = data[0];
    raw[1] = data[1] & 0x7f;
    size_t n = 2 + unescape(data + 2, size - 2, raw + 2);
    run(raw, n);
    run_side_call(raw, n);
    free(raw);
    return 0;
}

const char *fuzz_name = "fuzz_h2c";
/* Seeds are C strings (the runner puts the first byte, the piece size, before them).  A backend's
   side, made with python3-h2 and written with "~hh" escapes: its SETTINGS, then answers to
   streams 1, 3 and 5 (a JSON body with a length, a body with trailers, a reset); or a 103 then a 204, a
   404, a PING and a GOAWAY. */
const char *const fuzz_seeds[] = {
    "\x80"
    "~00~00*~04~00~00~00~00~00~00~01~00~00~10~00~00~02~00~00~00~00~00~04~00~00~ff~ff~00~05~00~00@~00~00~0"
    "8~00~00~00~00~00~03~00~00~00d~00~06~00~01~00~00~00~00~00~04~01~00~00~00~00~00~00~11~01~04~00~00~00~0"
    "1~88_~8b~1du~d0b~0d&=LtA~ea~5c~81w~00~00~07~00~01~00~00~00~01{~22a~22:1}~00~00~0e~01~04~00~00~00~03~"
    "88_~8b~1du~d0b~0d&=LMed~00~00~08~00~00~00~00~00~03~00~00~00~00~03abc~00~00~1a~01~05~00~00~00~03@~88~"
    "9a~ca~c8~b2~124~da~8f~81~07@~89~9a~ca~c8~b5%B~071~7f~82~3f_~00~00~04~03~00~00~00~00~05~00~00~00~02",
    "\x80"
    "~00~00*~04~00~00~00~00~00~00~01~00~00~10~00~00~02~00~00~00~00~00~04~00~00~ff~ff~00~05~00~00@~00~00~0"
    "8~00~00~00~00~00~03~00~00~00d~00~06~00~01~00~00~00~00~00~04~01~00~00~00~00~00~00~0b~01~04~00~00~00~0"
    "1H~82~08~19m~85~ff~f8~c7~9f~fb~00~00~01~01~05~00~00~00~01~89~00~00~01~01~05~00~00~00~03~8d~00~00~08~"
    "06~00~00~00~00~0012345678~00~00~08~07~00~00~00~00~00~00~00~00~03~00~00~00~00",
    "\x00not a frame at all",
    NULL,
};
