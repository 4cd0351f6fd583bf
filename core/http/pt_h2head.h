/*
 * pt_h2head -- the HTTP/2 <-> HTTP/1.1 head conversions shared by the
 * gateway's HTTP/2 sessions (proxy/pt_h2.c for clients, proxy/pt_h2up.c for
 * backends) and the side-call client (http/pt_hclient.c): pure functions
 * over nghttp2 fields, evbuffers and parsed heads, nothing of a session.
 */
#ifndef PT_H2HEAD_H
#define PT_H2HEAD_H

#include "base/pt.h"

#include <nghttp2/nghttp2.h>

struct evbuffer;
struct pt_head;
struct pt_pool;

/* One request's HEADERS on their way to an HTTP/1.1 head. */
struct pt_h2_reqhead {
    struct evbuffer *fields; /* "name: value\r\n" lines but Host and Cookie */
    struct evbuffer *cookie; /* cookie values joined with "; " */
    char *method, *path, *authority, *host;
    char *status; /* a response's :status */
    size_t size;  /* the header list size (RFC 9113 6.5.2: name + value + 32 per field) */
    size_t limit; /* past it, too_big and the rest is not kept */
    bool too_big, has_length;
};
void pt_h2head_init(struct pt_h2_reqhead *r, size_t limit);
void pt_h2head_free(struct pt_h2_reqhead *r);
/* One field as nghttp2 gives it; false when out of memory or when the field could not be written into
   an HTTP/1.1 head as it is (CR, LF or NUL in it, a name not a lower-case token).  nghttp2 refuses such
   fields already; this does not depend on its options or release. */
bool pt_h2head_field(struct pt_h2_reqhead *r, const uint8_t *name, size_t nlen, const uint8_t *value,
                     size_t vlen);
/* The HTTP/1.1 head into out; *chunked says whether the body that follows must be chunked (no length
   given and more to come: !end_stream).  false: no :method or :path. */
bool pt_h2head_req_write(struct pt_h2_reqhead *r, bool end_stream, struct evbuffer *out, bool *chunked);

/* The fields but pseudo-fields and Host (Cookie joined into one line), as HTTP/1.1 lines, into out. */
void pt_h2head_lines(struct pt_h2_reqhead *r, struct evbuffer *out);
/* A response's HEADERS as an HTTP/1.1 head: chunked when no length is given and a body follows (so that
   trailers can too: *chunked), "Content-Length: 0" when the HEADERS end the stream.  Returns the status,
   -1 when :status is missing or not three digits. */
int pt_h2head_resp_write(struct pt_h2_reqhead *r, bool end_stream, bool head_req, struct evbuffer *out,
                         bool *chunked);

/* A head as HTTP/2 fields in pool memory, names in lower case, the connection-specific fields left out:
   a response's (scheme NULL: ":status" first) or a request's (":method", ":scheme" = scheme,
   ":authority" from Host, ":path" the target as written; TE kept only as "trailers").  Returns their
   number, -1 when out of memory. */
int pt_h2head_nv(const struct pt_head *h, const char *scheme, struct pt_pool *pool, nghttp2_nv **out);

/* The guard against header blocks without end (CVE-2024-28182): a block far past a header list limit
   is not read on to its end, whatever the nghttp2 release bounds by itself; the session is cut.
   Counted both as received and as decoded, since HPACK amplifies.  True when `size` bytes are that far
   past `limit`. */
bool pt_h2head_flood(uint64_t size, uint64_t limit);

/* A frame begins: a HEADERS frame starts the block `*block` counts, a CONTINUATION adds to it, others
   leave it.  True when the block is a flood (pt_h2head_flood). */
bool pt_h2head_block_frame(uint64_t *block, const nghttp2_frame_hd *hd, uint64_t limit);

#endif
