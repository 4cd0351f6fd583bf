/*
 * pt_h2up -- HTTP/2 backend connections (nghttp2 client sessions).
 *
 * The mirror of pt_h2: each backend exchange is a stream pt_io
 * (event/pt_io.h) on a session, so pt_upstream writes an HTTP/1.1 request
 * head and body into the stream's output and reads an HTTP/1.1 response
 * from its input, as over a connection of its own.  The session turns the
 * head into HEADERS (:method, :scheme, :authority from Host, :path), the
 * body (its HTTP/1.1 framing taken off) into DATA, the response HEADERS
 * into an HTTP/1.1 head (chunked unless a length is given), DATA into the
 * body and response trailers into the chunked trailer section.
 *
 * Sessions belong to their backend's pool (struct pt_upool, list h2s) while
 * they take new streams; a session without streams closes after the pool's
 * idle timeout.
 */
#ifndef PT_H2UP_H
#define PT_H2UP_H

#include "base/pt.h"
#include "event/pt_io.h"

typedef struct ssl_st SSL;
struct pt_io;
struct pt_upool;
struct pt_worker;
struct pt_h2up;
struct pt_h2up_stream;

/* Registers the figures of /metrics (once, at start). */
void pt_h2up_init(void);

/* ALPN for a TLS backend connection: "h2" alone, or "h2" then "http/1.1" (or1); false on failure. */
bool pt_h2up_alpn(SSL *ssl, bool or1);

/* A session of `pool` that takes another stream, NULL when none does. */
struct pt_h2up *pt_h2up_find(struct pt_upool *pool);
/* A session over `io`, a backend connection being made (plain: h2c with prior knowledge; TLS: ALPN was
   set with pt_h2up_alpn): its callback becomes the session's.  or1: the backend may choose HTTP/1.1,
   and the session then carries one stream only, until the backend chose.  NULL when out of memory (io
   is freed then). */
struct pt_h2up *pt_h2up_new(struct pt_worker *w, struct pt_upool *pool, struct pt_io *io, bool or1);
/* A new stream on session h; its io (*io) is the caller's, with callback cb.  NULL when out of memory. */
struct pt_h2up_stream *pt_h2up_stream(struct pt_h2up *h, pt_io_cb cb, void *arg, struct pt_io **io);

/* After PT_IO_ERROR on a stream of a session whose backend chose HTTP/1.1 by ALPN (2or1): the backend
   connection, handed over to the caller with the stream's unsent output moved into it (the caller sets
   its callback and frees the stream's io); NULL otherwise. */
struct pt_io *pt_h2up_fallback(struct pt_h2up_stream *st, struct pt_io *io);
/* Why a stream failed (PT_IO_ERROR): a fixed message for the log and the client (the system's or the
   peer's own words are logged when they come, never returned); *timeout when it was a
   connect timeout; *refused when the backend did not process the stream (GOAWAY past it, or
   REFUSED_STREAM: the request may be sent again). */
const char *pt_h2up_error(const struct pt_h2up_stream *st, bool *timeout, bool *refused);

/* Whether the backend's stream is closed (reset by the backend, or its session gone): it takes no more of
   the request body.  Told by PT_IO_EOF on the stream's io when its response was complete. */
bool pt_h2up_closed(const struct pt_h2up_stream *st);

/* The pool goes: its sessions with it (their streams end as if the backend had closed). */
void pt_h2up_free_pool(struct pt_upool *pool);

#endif
