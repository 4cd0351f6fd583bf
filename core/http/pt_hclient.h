/*
 * pt_hclient -- the workers' own non-blocking HTTP/1.1 client, HTTP/2 when
 * a call asks (send-request, send-one-way-request; docs/routing.md,
 * docs/http2.md).
 *
 * One call runs on the caller's event loop: resolve (a literal address at
 * once, a name through evdns on the same loop), connect (or take a kept
 * connection: idempotent calls without a body, see pt_hclient.c),
 * optionally CONNECT through an HTTP proxy, TLS, write the request, read
 * the response through pt_fetch's parser (the proxy's head scanner, llhttp
 * and chunked decoder).  Nothing in it blocks; one deadline covers the
 * whole exchange and the body is capped.  The result is delivered through
 * a callback from the event loop, never from inside pt_hclient_send.
 *
 * Detached calls (send-one-way-request) belong to the worker, not to a
 * request: at most PT_HCLIENT_DETACHED_RUNNING run at once per worker and
 * PT_HCLIENT_DETACHED_QUEUE more wait; past that a call is dropped and
 * counted (portico_send_one_way_requests_total{result="dropped"}).
 */
#ifndef PT_HCLIENT_H
#define PT_HCLIENT_H

#include "base/pt.h"

#include <portico/plugin.h>

struct event_base;
typedef struct ssl_ctx_st SSL_CTX;

#define PT_HCLIENT_DEFAULT_TIMEOUT_MS 60000
#define PT_HCLIENT_DEFAULT_MAX_BODY (4u << 20)
#define PT_HCLIENT_MAX_HEADERS 100          /* request headers of one call */
#define PT_HCLIENT_MAX_HEAD (64 * 1024)     /* the request head we write */
#define PT_HCLIENT_DETACHED_RUNNING 16      /* detached calls running at once, per worker */
#define PT_HCLIENT_DETACHED_QUEUE 64        /* detached calls waiting, per worker */
#define PT_HCLIENT_DETACHED_BODY (1u << 20) /* the request body of a detached call */
#define PT_HCLIENT_IDLE_MAX 32              /* kept keep-alive connections, per worker */
#define PT_HCLIENT_IDLE_MS 15000            /* ... each for at most this long */

/* Where https goes: the trust (and client certificate) of the context, and
   whether the certificate and name are checked.  The context is referenced
   for as long as the call lives. */
struct pt_hclient_tls {
    SSL_CTX *ctx;
    bool verify;
    bool public_only; /* refuse loopback, private and link-local addresses (not through a proxy) */
};

/* err is 0 with resp, or a PT_HTTP_ERR_* code with msg (resp NULL).  resp
   and msg live until the callback returns. */
typedef void (*pt_hclient_cb)(void *arg, int err, const char *msg, const struct pt_http_resp *resp);

struct pt_hclient;

/* Starts a call on base (the caller's thread's loop); r is copied.  NULL
   only when memory runs out; every other failure (a bad URL too) comes
   through cb. */
struct pt_hclient *pt_hclient_send(struct event_base *base, const struct pt_http_req *r,
                                   const struct pt_hclient_tls *tls, pt_hclient_cb cb, void *arg);
/* Stops a call: cb is not called, everything is released. */
void pt_hclient_cancel(struct pt_hclient *h);
/* A call nobody waits for, queued on the worker of this thread; 0 when
   started or queued, -1 when dropped (counted). */
int pt_hclient_send_detached(struct event_base *base, const struct pt_http_req *r,
                             const struct pt_hclient_tls *tls);
/* The worker of this thread stops: its detached calls and its resolver go. */
void pt_hclient_worker_end(void);
/* Registers the /metrics collector (control thread, once, at start). */
void pt_hclient_init(void);

#endif
