/*
 * pt_h2 -- HTTP/2 client connections (nghttp2 server sessions).
 *
 * Each stream of a session runs as a connection of its own: a stream pt_io
 * (event/pt_io.h) carrying one HTTP/1.1 exchange and a normal pt_conn on
 * it.  The session writes an HTTP/1.1 request head built from the stream's
 * HEADERS into the stream's input, then its DATA (chunked when the client
 * gave no length); it reads the HTTP/1.1 response the pipeline writes to
 * the stream's output, sends its head as HEADERS and its body (de-chunked)
 * as DATA.  Flow control follows the pipeline: a stream's window reopens
 * only as the pipeline takes its body, and its response is taken only as
 * the client's window allows.
 */
#ifndef PT_H2_H
#define PT_H2_H

#include "base/pt.h"
#include "http/pt_h2head.h"

#include <nghttp2/nghttp2.h>
#include <sys/types.h>

struct pt_conn;
struct pt_h2;
struct evbuffer;
struct pt_h2_cf;
struct pt_head;
struct pt_pool;

/* The 24 bytes every HTTP/2 client starts with. */
#define PT_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define PT_H2_PREFACE_LEN 24

/* Whether buf starts with the preface: 1 yes, 0 no, -1 too few bytes to tell. */
int pt_h2_preface(struct evbuffer *buf);

/* Registers the HTTP/2 figures of /metrics (once, at start). */
void pt_h2_init(void);
/* Takes over client connection c (plain or TLS, nothing consumed but what is in its input): NULL when
   the session cannot be made. */
struct pt_h2 *pt_h2_start(struct pt_conn *c);
/* The connection's io reported `what` (PT_IO_*): false when the connection is to be freed now. */
bool pt_h2_io(struct pt_h2 *h, int what);
/* The worker drains (reload, stop): GOAWAY; the connection ends once its streams have. */
void pt_h2_drain(struct pt_h2 *h);
/* The connection is freed: every stream still running ends as if its client had left. */
void pt_h2_free(struct pt_h2 *h);
/* Whether no stream is open (the connection is idle). */
bool pt_h2_idle(const struct pt_h2 *h);

/* ---- the pure pieces, separate for tests (the head conversions: http/pt_h2head.h) ---- */

/* The end of a chunked body as pt_http_chunked_next copies it (pt_chunked.end_to: "0\r\n", trailer
   fields, "\r\n"), consumed, as HTTP/2 fields (pool memory, names in lower case, connection-specific
   ones left out): their number, 0 when there is none, -1 when they cannot be read. */
int pt_h2_trailer_fields(struct evbuffer *sec, struct pt_pool *pool, nghttp2_nv **out);

/* Inside a data source's read callback at the end of a chunked body: its trailer section (consumed) as a
   trailing HEADERS of stream id; false when there is none or it cannot be read (the stream then ends with
   its last DATA). */
bool pt_h2_submit_trailers(nghttp2_session *s, int32_t id, struct evbuffer *sec);

#endif
