/*
 * pt_tunnel -- after a WebSocket 101: bytes both ways, nothing parsed,
 * half-closes passed on.
 */
#include "base/pt_log.h"
#include "base/pt_url.h"
#include "conf/pt_router.h"
#include "event/pt_io.h"
#include "event/pt_tls.h"
#include "http/pt_http.h"
#include "http/pt_msg.h"
#include "lua/pt_lua.h"
#include "policy/pt_corepol.h"
#include "policy/pt_gen.h"
#include "policy/pt_pipeline.h"
#include "proxy/pt_proxy.h"
#include "proxy/pt_worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

void pt_tunnel_pump(struct pt_req *req, bool from_client)
{
    struct pt_conn *c = req->c;
    struct pt_upconn *u = req->up;
    if (!u)
        return;
    struct pt_io *src = from_client ? c->io : u->io, *dst = from_client ? u->io : c->io;
    size_t n = evbuffer_get_length(src->in);
    if (n) {
        evbuffer_add_buffer(dst->out, src->in);
        if (from_client)
            req->bytes_in += n;
        else
            req->bytes_out += n;
        pt_io_flush(dst);
    }
    if (evbuffer_get_length(dst->out) > HIGH_WATER) {
        pt_io_read(src, false);
        pt_io_want_drain(dst, true);
    }
    pt_timer_set(c->w, &c->timer, PT_T_TUNNEL);
}

void pt_tunnel_start(struct pt_req *req)
{
    struct pt_conn *c = req->c;
    struct pt_upconn *u = req->up;
    req->keep = false;
    struct pt_buf b;
    pt_buf_init(&b, req->pool, 256);
    pt_buf_lit(&b, "HTTP/1.1 101 Switching Protocols\r\n");
    for (int i = 0; i < req->rh.nh; i++) {
        const struct pt_hdr *x = &req->rh.h[i];
        if (x->hop || x->deleted)
            continue;
        pt_buf_str(&b, x->name);
        pt_buf_lit(&b, ": ");
        pt_buf_str(&b, x->value);
        pt_buf_lit(&b, "\r\n");
    }
    pt_respond_request_id(&b, req, &req->rh);
    pt_buf_lit(&b, "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n");
    evbuffer_add(c->io->out, b.p, b.n);
    req->bytes_out += b.n;
    req->resp_head_sent = true;
    req->status = 101;
    req->tb1 = pt_clock_now_us();
    pt_timer_clear(&u->timer);
    c->state = C_TUNNEL;
    pt_io_read(c->io, true);
    pt_io_read(u->io, true);
    pt_tunnel_pump(req, false);
    pt_tunnel_pump(req, true);
    pt_io_flush(c->io); /* the 101 itself: clients wait for it before they speak */
}

/*
 * Half-close in a tunnel (plain TCP on both sides): when the client ends
 * its input (shutdown of its write side), what it sent is delivered, the
 * backend's write half is shut in turn, and the backend's answer goes on
 * reaching the client until the backend ends, or the tunnel is idle too
 * long.  The backend ending ends the tunnel, as in WebSocket a server's
 * close does.  TLS has no half-close of its own: there the client's end
 * ends the tunnel too.
 */
static bool tunnel_can_half_close(const struct pt_req *req)
{
    return req->up && !pt_io_is_tls(req->c->io) && !pt_io_is_tls(req->up->io);
}

void pt_tunnel_shut_when_sent(struct pt_io *io)
{
    if (evbuffer_get_length(io->out) == 0) {
        if (shutdown(pt_io_fd(io), SHUT_WR) < 0 && errno != ENOTCONN)
            pt_debug("tunnel: shutdown: %s", strerror(errno));
    } else
        pt_io_want_drain(io, true);
}

/* The client ended its side; true when the tunnel goes on half-closed. */
bool pt_tunnel_client_done(struct pt_req *req)
{
    struct pt_conn *c = req->c;
    c->peer_done = true;
    if (!tunnel_can_half_close(req))
        return false;
    pt_debug("tunnel: the client ended its side; the backend's goes on");
    pt_tunnel_pump(req, true);
    pt_tunnel_shut_when_sent(req->up->io);
    pt_io_read(req->up->io, true);
    return true;
}

void pt_tunnel_end(struct pt_req *req)
{
    struct pt_conn *c = req->c;
    if (req->up) {
        /* whatever the backend still had goes to the client first */
        evbuffer_add_buffer(c->io->out, req->up->io->in);
        pt_upstream_close(req->up);
    }
    pt_conn_req_finish(req);
}
