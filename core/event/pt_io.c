/*
 * pt_io -- plain edge-triggered socket driver, the TLS bufferevent bridge and
 * the streams of multiplexed connections.
 */
#include "event/pt_io.h"
#include "event/pt_tls.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

#define READ_CHUNK 16384
#define READ_BUDGET (256 * 1024) /* per event, so one busy socket cannot starve others */

struct io {
    struct pt_io pub;
    pt_io_cb cb;
    void *arg;
    int fd;
    int err;
    char errbuf[160];
    struct event ev;         /* plain */
    struct bufferevent *bev; /* tls */
    unsigned readable : 1, writable : 1, reading : 1, connecting : 1, eof_seen : 1, want_drain : 1, dead : 1,
        tls : 1, rdhup : 1, hup_told : 1, stream : 1, held : 1;
    int busy; /* callbacks in progress */
    /* stream: ev is a deferred-callback trigger; `told` what the owner asked to deliver */
    struct pt_io *parent;
    const struct pt_io_stream_ops *ops; /* NULL once the owner released it */
    void *owner;
    int told;
};

static void release(struct io *io)
{
    if (io->stream) {
        if (io->held)
            return; /* the owner frees it (pt_io_stream_release) */
        event_del(&io->ev);
        evbuffer_free(io->pub.in);
        evbuffer_free(io->pub.out);
        free(io);
        return;
    }
    if (io->tls) {
        if (io->bev)
            bufferevent_free(io->bev); /* closes fd and frees SSL */
    } else {
        evbuffer_free(io->pub.in);
        evbuffer_free(io->pub.out);
    }
    free(io);
}

/* Runs the user callback; false when the io was freed inside it. */
static bool deliver(struct io *io, int what)
{
    io->busy++;
    io->cb(&io->pub, what, io->arg);
    io->busy--;
    if (io->dead) {
        if (io->busy == 0)
            release(io);
        return false;
    }
    return true;
}

/* One PT_IO_DRAINED when it was asked for and the output is empty; false
   when the io was freed inside the callback. */
static bool deliver_drained(struct io *io)
{
    if (!io->want_drain || evbuffer_get_length(io->pub.out) != 0)
        return true;
    io->want_drain = 0;
    return deliver(io, PT_IO_DRAINED);
}

static void set_err(struct io *io, int e)
{
    io->err = e ? e : EIO;
    snprintf(io->errbuf, sizeof(io->errbuf), "%s", strerror(io->err));
}

/* ----------------------------------------------------------------- plain */

static void do_write(struct io *io)
{
    struct evbuffer *out = io->pub.out;
    while (io->writable && evbuffer_get_length(out)) {
        size_t want = evbuffer_get_length(out);
        int n = evbuffer_write_atmost(out, io->fd, -1);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                io->writable = 0;
            else if (errno != EINTR) {
                set_err(io, errno);
                return;
            }
        } else if ((size_t)n < want)
            io->writable = 0; /* the socket buffer is full: wait for the next edge */
    }
}

/* Reads until the socket is drained or the budget is spent; returns bytes read. */
static size_t do_read(struct io *io)
{
    size_t total = 0;
    while (io->readable && total < READ_BUDGET) {
        struct evbuffer_iovec v[2];
        int nv = evbuffer_reserve_space(io->pub.in, READ_CHUNK, v, 2);
        if (nv <= 0) {
            set_err(io, ENOMEM);
            return total;
        }
        struct iovec iov[2];
        size_t cap = 0;
        for (int i = 0; i < nv; i++) {
            iov[i].iov_base = v[i].iov_base;
            iov[i].iov_len = v[i].iov_len;
            cap += v[i].iov_len;
        }
        ssize_t n = readv(io->fd, iov, nv);
        if (n < 0) {
            evbuffer_commit_space(io->pub.in, v, 0);
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                io->readable = 0;
            else if (errno != EINTR) {
                set_err(io, errno);
                return total;
            }
            continue;
        }
        if (n == 0) {
            evbuffer_commit_space(io->pub.in, v, 0);
            io->eof_seen = 1;
            io->readable = 0;
            break;
        }
        size_t left = (size_t)n;
        for (int i = 0; i < nv; i++) {
            size_t k = PT_MIN(left, v[i].iov_len);
            v[i].iov_len = k;
            left -= k;
        }
        evbuffer_commit_space(io->pub.in, v, nv);
        total += (size_t)n;
        /* a short read means drained -- unless the peer's FIN came with the
           data (EPOLLRDHUP): then read on to see the end of the stream,
           since no further edge will announce it */
        if ((size_t)n < cap && !io->rdhup)
            io->readable = 0;
    }
    return total;
}

static void plain_event(evutil_socket_t fd, short what, void *arg)
{
    struct io *io = arg;
    if (io->err) {
        deliver(io, PT_IO_ERROR);
        return;
    }
    if (what & EV_WRITE) {
        io->writable = 1;
        if (io->connecting) {
            int e = 0;
            socklen_t len = sizeof(e);
            if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
                e = errno;
            if (e) {
                set_err(io, e);
                deliver(io, PT_IO_ERROR);
                return;
            }
            io->connecting = 0;
            if (!deliver(io, PT_IO_CONNECTED))
                return;
        }
        do_write(io);
        if (io->err) {
            deliver(io, PT_IO_ERROR);
            return;
        }
        if (!deliver_drained(io))
            return;
    }
    if (what & EV_CLOSED)
        io->rdhup = 1;
    if ((what & (EV_READ | EV_CLOSED)) && !io->connecting) {
        io->readable = 1;
        if (!io->reading) {
            /* not reading (backpressure, a response being waited for): a
               reset or a close is still worth knowing about.  A reset comes
               as EPOLLERR/EPOLLHUP, which libevent reports as plain
               READ|WRITE: the socket's error tells it from data. */
            int e = 0;
            socklen_t len = sizeof(e);
            if (!(what & EV_CLOSED) && getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &e, &len) == 0 && e) {
                set_err(io, e);
                deliver(io, PT_IO_ERROR);
                return;
            }
            if ((what & EV_CLOSED) && !io->hup_told) {
                io->hup_told = 1;
                deliver(io, PT_IO_HUP);
            }
            return;
        }
        size_t n = do_read(io);
        if (n && !deliver(io, PT_IO_READ))
            return;
        if (io->err) {
            deliver(io, PT_IO_ERROR);
            return;
        }
        if (io->eof_seen && io->reading) {
            io->eof_seen = 0;
            io->reading = 0;
            if (!deliver(io, PT_IO_EOF))
                return;
        }
        if (io->readable && io->reading)
            event_active(&io->ev, EV_READ, 0); /* budget spent: come back later */
    }
}

static struct io *plain_new(struct event_base *base, int fd, pt_io_cb cb, void *arg)
{
    struct io *io = calloc(1, sizeof(*io));
    if (!io)
        return NULL;
    io->fd = fd;
    io->cb = cb;
    io->arg = arg;
    io->pub.in = evbuffer_new();
    io->pub.out = evbuffer_new();
    if (!io->pub.in || !io->pub.out ||
        event_assign(&io->ev, base, fd, EV_READ | EV_WRITE | EV_CLOSED | EV_PERSIST | EV_ET, plain_event,
                     io) < 0 ||
        event_add(&io->ev, NULL) < 0) {
        if (io->pub.in)
            evbuffer_free(io->pub.in);
        if (io->pub.out)
            evbuffer_free(io->pub.out);
        free(io);
        return NULL;
    }
    return io;
}

struct pt_io *pt_io_plain(struct event_base *base, int fd, pt_io_cb cb, void *arg)
{
    struct io *io = plain_new(base, fd, cb, arg);
    return io ? &io->pub : NULL;
}

static int connect_socket(const struct sockaddr *sa, socklen_t salen, int *err)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = errno;
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, sa, salen) < 0 && errno != EINPROGRESS) {
        *err = errno;
        close(fd);
        return -1;
    }
    return fd;
}

struct pt_io *pt_io_connect(struct event_base *base, const struct sockaddr *sa, socklen_t salen, pt_io_cb cb,
                            void *arg)
{
    int err = 0;
    int fd = connect_socket(sa, salen, &err);
    if (fd < 0) {
        /* report through the normal path so the caller has one error route */
        struct io *io = calloc(1, sizeof(*io));
        if (!io)
            return NULL;
        io->fd = -1;
        io->cb = cb;
        io->arg = arg;
        io->pub.in = evbuffer_new();
        io->pub.out = evbuffer_new();
        set_err(io, err);
        event_assign(&io->ev, base, -1, 0, plain_event, io);
        event_active(&io->ev, EV_WRITE, 0);
        return &io->pub;
    }
    struct io *io = plain_new(base, fd, cb, arg);
    if (!io) {
        close(fd);
        return NULL;
    }
    io->connecting = 1;
    return &io->pub;
}

/* ------------------------------------------------------------------- tls */

static void tls_read(struct bufferevent *bev, void *arg)
{
    deliver(arg, PT_IO_READ);
}

static void tls_write(struct bufferevent *bev, void *arg)
{
    struct io *io = arg;
    deliver_drained(io);
}

static void tls_event(struct bufferevent *bev, short what, void *arg)
{
    struct io *io = arg;
    if (what & BEV_EVENT_CONNECTED) {
        io->connecting = 0;
        deliver(io, PT_IO_CONNECTED);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        unsigned long e = bufferevent_get_openssl_error(bev);
        if (e) {
            char b[120];
            ERR_error_string_n(e, b, sizeof(b));
            io->err = EPROTO;
            snprintf(io->errbuf, sizeof(io->errbuf), "TLS: %s", b);
        } else
            set_err(io, EVUTIL_SOCKET_ERROR());
        deliver(io, PT_IO_ERROR);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        if (io->connecting) {
            io->err = ECONNRESET;
            snprintf(io->errbuf, sizeof(io->errbuf), "connection closed during the TLS handshake");
            deliver(io, PT_IO_ERROR);
        } else
            deliver(io, PT_IO_EOF);
    }
}

/*
 * bev_failed: when bufferevent_openssl_socket_new fails (out of memory) with
 * BEV_OPT_CLOSE_ON_FREE, libevent has freed the SSL it was given already
 * (2.1 and 2.2 alike); freeing it again here was a double free.  The socket
 * is not closed by it: the SSL's socket BIO does not own the descriptor.
 * (The one failure that keeps the SSL, an SSL whose BIO names another
 * descriptor, cannot happen: ours are fresh, without a BIO.)
 */
static struct io *tls_wrap(struct bufferevent *bev, pt_io_cb cb, void *arg)
{
    struct io *io = calloc(1, sizeof(*io));
    if (!io) {
        bufferevent_free(bev);
        return NULL;
    }
    io->tls = 1;
    io->bev = bev;
    io->cb = cb;
    io->arg = arg;
    io->fd = -1;
    io->pub.in = bufferevent_get_input(bev);
    io->pub.out = bufferevent_get_output(bev);
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    bufferevent_setcb(bev, tls_read, tls_write, tls_event, io);
    bufferevent_enable(bev, EV_WRITE);
    return io;
}

struct pt_io *pt_io_tls_accept(struct event_base *base, int fd, SSL *ssl, pt_io_cb cb, void *arg)
{
    struct bufferevent *bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                             BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!bev) {
        close(fd); /* the SSL went with the failure (BEV_OPT_CLOSE_ON_FREE: see bev_failed) */
        return NULL;
    }
    struct io *io = tls_wrap(bev, cb, arg);
    return io ? &io->pub : NULL;
}

struct bufferevent *pt_io_tls_evhttp_bev(struct event_base *base, void *tls_server)
{
    SSL *ssl = pt_tls_server_ssl(tls_server);
    if (!ssl)
        return NULL;
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) /* the SSL went with the failure (see bev_failed) */
        return NULL;
    /* clients that close without close_notify are common; their requests were complete */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

struct pt_io *pt_io_tls_connect(struct event_base *base, const struct sockaddr *sa, socklen_t salen, SSL *ssl,
                                pt_io_cb cb, void *arg)
{
    struct bufferevent *bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                             BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!bev) /* the SSL went with the failure (see bev_failed) */
        return NULL;
    struct io *io = tls_wrap(bev, cb, arg);
    if (!io)
        return NULL;
    io->connecting = 1;
    if (bufferevent_socket_connect(bev, sa, (int)salen) < 0) {
        /* the error event arrives through tls_event */
    } else {
        int fd = bufferevent_getfd(bev);
        int one = 1;
        if (fd >= 0)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return &io->pub;
}

struct pt_io *pt_io_tls_over(struct pt_io *p, SSL *ssl, pt_io_cb cb, void *arg)
{
    struct io *old = (struct io *)p;
    if (old->tls || old->dead || old->fd < 0 || evbuffer_get_length(p->in) || evbuffer_get_length(p->out)) {
        SSL_free(ssl);
        pt_io_free(p);
        return NULL;
    }
    struct event_base *base = event_get_base(&old->ev);
    int fd = old->fd;
    event_del(&old->ev);
    old->fd = -1; /* the socket goes on under TLS: freeing the plain stream must not close it */
    pt_io_free(p);
    struct bufferevent *bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                             BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!bev) {
        close(fd); /* the SSL went with the failure (BEV_OPT_CLOSE_ON_FREE: see bev_failed) */
        return NULL;
    }
    struct io *io = tls_wrap(bev, cb, arg);
    if (!io)
        return NULL;
    io->connecting = 1;
    return &io->pub;
}

/* ---------------------------------------------------------------- stream */

static void stream_event(evutil_socket_t fd, short what, void *arg)
{
    struct io *io = arg;
    if (io->dead)
        return;
    int told = io->told;
    io->told = 0;
    if (told & PT_IO_ERROR) {
        deliver(io, PT_IO_ERROR);
        return;
    }
    if (io->reading && evbuffer_get_length(io->pub.in) && !deliver(io, PT_IO_READ))
        return;
    if (!deliver_drained(io))
        return;
    if (told & PT_IO_EOF)
        deliver(io, PT_IO_EOF);
}

struct pt_io *pt_io_stream(struct event_base *base, struct pt_io *parent, const struct pt_io_stream_ops *ops,
                           void *owner, pt_io_cb cb, void *arg)
{
    struct io *io = calloc(1, sizeof(*io));
    if (!io)
        return NULL;
    io->stream = 1;
    io->held = 1;
    io->fd = -1;
    io->parent = parent;
    io->ops = ops;
    io->owner = owner;
    io->cb = cb;
    io->arg = arg;
    io->pub.in = evbuffer_new();
    io->pub.out = evbuffer_new();
    if (!io->pub.in || !io->pub.out || event_assign(&io->ev, base, -1, 0, stream_event, io) < 0) {
        if (io->pub.in)
            evbuffer_free(io->pub.in);
        if (io->pub.out)
            evbuffer_free(io->pub.out);
        free(io);
        return NULL;
    }
    return &io->pub;
}

void pt_io_stream_kick(struct pt_io *p, int what)
{
    struct io *io = (struct io *)p;
    if (io->dead)
        return;
    io->told |= what & (PT_IO_EOF | PT_IO_ERROR);
    event_active(&io->ev, EV_READ, 0);
}

void pt_io_stream_release(struct pt_io *p)
{
    struct io *io = (struct io *)p;
    io->held = 0;
    io->ops = NULL;
    if (io->dead && io->busy == 0)
        release(io);
}

/* ---------------------------------------------------------------- common */

void pt_io_set_cb(struct pt_io *p, pt_io_cb cb, void *arg)
{
    struct io *io = (struct io *)p;
    io->cb = cb;
    io->arg = arg;
}

void pt_io_read(struct pt_io *p, bool on)
{
    struct io *io = (struct io *)p;
    if (io->stream) {
        io->reading = on;
        if (on && evbuffer_get_length(p->in))
            pt_io_stream_kick(p, 0);
        return;
    }
    if (io->tls) {
        if (on)
            bufferevent_enable(io->bev, EV_READ);
        else
            bufferevent_disable(io->bev, EV_READ);
        return;
    }
    if (on && !io->reading && (io->readable || io->eof_seen) && io->fd >= 0)
        event_active(&io->ev, EV_READ, 0);
    io->reading = on;
}

void pt_io_flush(struct pt_io *p)
{
    struct io *io = (struct io *)p;
    if (io->stream) {
        if (io->ops && evbuffer_get_length(p->out))
            io->ops->flush(io->owner);
        return;
    }
    if (io->tls || io->connecting || io->fd < 0 || io->err)
        return;
    do_write(io);
    if (io->err)
        event_active(&io->ev, EV_WRITE, 0); /* reported from the event loop */
}

void pt_io_want_drain(struct pt_io *p, bool on)
{
    struct io *io = (struct io *)p;
    io->want_drain = on;
    if (io->stream) {
        if (on && evbuffer_get_length(p->out) == 0)
            pt_io_stream_kick(p, 0);
        return;
    }
    if (on && !io->tls && io->writable && evbuffer_get_length(io->pub.out) == 0 && io->fd >= 0)
        event_active(&io->ev, EV_WRITE, 0);
    if (on && io->tls && evbuffer_get_length(io->pub.out) == 0)
        bufferevent_trigger(io->bev, EV_WRITE, BEV_TRIG_DEFER_CALLBACKS);
}

void pt_io_free(struct pt_io *p)
{
    if (!p)
        return;
    struct io *io = (struct io *)p;
    if (io->dead)
        return;
    io->dead = 1;
    if (io->stream) {
        event_del(&io->ev);
        if (io->ops)
            io->ops->freed(io->owner);
    } else if (!io->tls) {
        event_del(&io->ev);
        if (io->fd >= 0)
            close(io->fd);
        io->fd = -1;
    } else {
        bufferevent_disable(io->bev, EV_READ | EV_WRITE);
        bufferevent_setcb(io->bev, NULL, NULL, NULL, NULL);
    }
    if (io->busy == 0)
        release(io);
}

bool pt_io_is_tls(const struct pt_io *p)
{
    const struct io *io = (const struct io *)p;
    return io->stream ? pt_io_is_tls(io->parent) : io->tls;
}

SSL *pt_io_ssl(const struct pt_io *p)
{
    const struct io *io = (const struct io *)p;
    if (io->stream)
        return pt_io_ssl(io->parent);
    return io->tls ? bufferevent_openssl_get_ssl(io->bev) : NULL;
}

int pt_io_fd(const struct pt_io *p)
{
    const struct io *io = (const struct io *)p;
    return io->tls ? (int)bufferevent_getfd(io->bev) : io->fd;
}

const char *pt_io_errmsg(const struct pt_io *p)
{
    const struct io *io = (const struct io *)p;
    return io->err ? io->errbuf : "connection closed";
}

bool pt_io_local_error(const struct pt_io *p)
{
    int e = ((const struct io *)p)->err;
    return e == EMFILE || e == ENFILE || e == ENOMEM || e == ENOBUFS;
}

bool pt_io_connecting(const struct pt_io *p)
{
    return ((const struct io *)p)->connecting;
}
