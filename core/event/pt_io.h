/*
 * pt_io -- one byte stream (a client or a backend connection) with an input
 * and an output evbuffer, whatever carries it.
 *
 * Three drivers sit behind this interface:
 *   - plain TCP: one edge-triggered libevent event per socket, registered
 *     once.  Reads go straight into the input evbuffer (readv into reserved
 *     space, no FIONREAD probe); pt_io_flush() writes immediately and only
 *     waits for writability after a short write.  No epoll_ctl per request.
 *   - TLS: libevent's bufferevent_openssl, its buffers exposed as ours.
 *   - stream: one stream of a multiplexed connection (HTTP/2).  Its bytes
 *     go to and come from an owner (the session) instead of a socket; the
 *     owner is told when the user flushes, switches reading or lets go, and
 *     fills `in` / empties `out` itself.  Its TLS is its parent's.
 * The proxy above sees only evbuffers and the callback events below, so
 * framing, streaming and backpressure are written once for both.
 *
 * Callbacks may free the io (pt_io_free) from inside a callback; the driver
 * defers the release until the callback returns.
 */
#ifndef PT_IO_H
#define PT_IO_H

#include "base/pt.h"

#include <sys/socket.h>

struct event_base;
struct bufferevent;
struct evbuffer;
typedef struct ssl_st SSL;

enum {
    PT_IO_READ = 1,      /* new bytes in io->in */
    PT_IO_DRAINED = 2,   /* io->out became empty (after pt_io_want_drain) */
    PT_IO_CONNECTED = 4, /* outgoing connection (and TLS handshake) done */
    PT_IO_EOF = 8,       /* the peer closed its side */
    PT_IO_ERROR = 16,    /* connection failed; pt_io_errmsg() says why */
    PT_IO_HUP = 32,      /* plain sockets: the peer shut its side (or reset) while reading was off */
};

struct pt_io;
typedef void (*pt_io_cb)(struct pt_io *io, int what, void *arg);

struct pt_io {
    struct evbuffer *in;
    struct evbuffer *out;
};

/* Wraps an accepted (or already connected) plain socket. */
struct pt_io *pt_io_plain(struct event_base *base, int fd, pt_io_cb cb, void *arg);
/* Starts a non-blocking connect; PT_IO_CONNECTED or PT_IO_ERROR follows. */
struct pt_io *pt_io_connect(struct event_base *base, const struct sockaddr *sa, socklen_t salen, pt_io_cb cb,
                            void *arg);
/* TLS server side over an accepted socket; takes ownership of ssl. */
struct pt_io *pt_io_tls_accept(struct event_base *base, int fd, SSL *ssl, pt_io_cb cb, void *arg);
/* evhttp's bufferevent callback (evhttp_set_bevcb) for a TLS listener: `tls_server` is its struct
   pt_tls_server; each accepted connection gets a server-side SSL, NULL when none can be made. */
struct bufferevent *pt_io_tls_evhttp_bev(struct event_base *base, void *tls_server);
/* TLS client: connect and handshake; PT_IO_CONNECTED once both are done. */
struct pt_io *pt_io_tls_connect(struct event_base *base, const struct sockaddr *sa, socklen_t salen, SSL *ssl,
                                pt_io_cb cb, void *arg);

/* TLS client over a connected plain stream (a proxy's CONNECT tunnel): the plain stream is freed in
   every case (its buffers must be empty) and its socket handshakes; PT_IO_CONNECTED once done.  NULL on
   failure (the socket is closed then).  ssl is taken over. */
struct pt_io *pt_io_tls_over(struct pt_io *plain, SSL *ssl, pt_io_cb cb, void *arg);
/* ---- stream driver ---- */

/* What a stream's owner is told.  Neither may call back into the stream's user: they run inside the
   user's calls (pt_io_flush, pt_io_free). */
struct pt_io_stream_ops {
    void (*flush)(void *owner); /* the user added bytes to io->out */
    void (*freed)(void *owner); /* the user let go of the stream (pt_io_free) */
};
/* A stream over `parent` (which must outlive it); events are delivered from the parent's loop. */
struct pt_io *pt_io_stream(struct event_base *base, struct pt_io *parent, const struct pt_io_stream_ops *ops,
                           void *owner, pt_io_cb cb, void *arg);
/* The owner changed io->in or io->out (or wants `what`, PT_IO_EOF or PT_IO_ERROR, told): the user's
   PT_IO_READ / PT_IO_DRAINED / `what` follow from the event loop, never from inside this call. */
void pt_io_stream_kick(struct pt_io *io, int what);
/* The owner is done with the stream: it is freed once the user has let go too (if it has not, the
   owner must have told it PT_IO_ERROR first). */
void pt_io_stream_release(struct pt_io *io);

void pt_io_set_cb(struct pt_io *io, pt_io_cb cb, void *arg);
/* Starts or stops delivering PT_IO_READ (backpressure). */
void pt_io_read(struct pt_io *io, bool on);
/* Sends what io->out holds as far as the socket takes it now. */
void pt_io_flush(struct pt_io *io);
/* Asks for one PT_IO_DRAINED when io->out is empty. */
void pt_io_want_drain(struct pt_io *io, bool on);
/* Closes the connection and frees the io (deferred when inside a callback). */
void pt_io_free(struct pt_io *io);
/* Shuts down writing after the output is sent (used before closing). */
bool pt_io_is_tls(const struct pt_io *io);
SSL *pt_io_ssl(const struct pt_io *io);
int pt_io_fd(const struct pt_io *io);
/* A description of the last error ("connection refused", TLS reason...). */
const char *pt_io_errmsg(const struct pt_io *io);
/* true when the failure was this process's own (out of descriptors or memory), not the peer's. */
bool pt_io_local_error(const struct pt_io *io);
/* true while an outgoing connection is not established yet. */
bool pt_io_connecting(const struct pt_io *io);

#endif
