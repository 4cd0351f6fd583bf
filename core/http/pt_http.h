/*
 * pt_http -- HTTP/1.1 message heads and body framing, both directions.
 *
 * A head goes through three gates before anyone acts on it:
 *   1. pt_http_scan() finds its end in the input buffer, byte by byte as it
 *      arrives, and refuses what llhttp would let through or what must never
 *      reach a backend: bare LF, bare CR, NUL and other control bytes,
 *      obsolete line folding, and heads or request lines over the limits.
 *   2. The head is copied into the request arena and parsed by llhttp in
 *      strict mode; header names and values become pt_str slices of the copy.
 *   3. pt_http_check_request()/pt_http_check_response() apply the framing
 *      rules: one canonical Content-Length, "chunked" as the only transfer
 *      coding, never both, one valid Host, and so on.
 * Bodies are framed by us, not by llhttp: a byte count for Content-Length,
 * pt_chunked for chunked (strict CRLF, overflow-checked sizes, bounded
 * extensions and trailers).  Chunked data is always re-framed when it is
 * forwarded, never passed through as received.
 */
#ifndef PT_HTTP_H
#define PT_HTTP_H

#include "base/pt.h"
#include "base/pt_buf.h"
#include "base/pt_pool.h"

struct evbuffer;

/* Headers the proxy treats specially, classified once while parsing. */
enum pt_hkind {
    PT_H_OTHER = 0,
    PT_H_HOST,
    PT_H_CONTENT_LENGTH,
    PT_H_TRANSFER_ENCODING,
    PT_H_CONNECTION,
    PT_H_KEEP_ALIVE,
    PT_H_PROXY_CONNECTION,
    PT_H_TE,
    PT_H_TRAILER,
    PT_H_UPGRADE,
    PT_H_EXPECT,
    PT_H_X_FORWARDED_FOR,
    PT_H_X_FORWARDED_PROTO,
    PT_H_X_FORWARDED_HOST,
    PT_H_FORWARDED,
    PT_H_X_REQUEST_ID,
    PT_H_DATE,
    PT_H_SERVER,
};

struct pt_hdr {
    pt_str name;
    pt_str value;
    uint8_t kind; /* enum pt_hkind */
    bool hop;     /* hop-by-hop: never forwarded */
    bool deleted;
};

enum pt_body { PT_BODY_NONE, PT_BODY_LENGTH, PT_BODY_CHUNKED, PT_BODY_EOF };

struct pt_head {
    /* request line */
    pt_str method;
    int method_id; /* llhttp_method_t */
    pt_str target; /* as received */
    pt_str path;   /* normalised path, starting with '/' */
    pt_str query;  /* without '?' */
    pt_str host;   /* Host value, or the authority of an absolute-form target */
    /* status line */
    int status;
    pt_str reason;
    /* both */
    uint8_t major, minor;
    struct pt_hdr *h;
    int nh, caph;
    /* framing, filled by the check functions */
    enum pt_body body;
    int64_t content_length; /* -1 when absent */
    bool keepalive;         /* the peer allows another message on this connection */
    bool upgrade_ws;        /* a WebSocket upgrade was asked for / agreed to */
    bool expect_continue;
    int host_count;
    /* a response that has no body (HEAD, 1xx, 204, 304) but whose head
       announced one (Content-Length > 0 or chunked): the peer may send it
       anyway, so its connection must not carry another exchange */
    bool body_announced;
};

/* An error the client or backend caused; status 0 = none. */
struct pt_http_err {
    int status;
    const char *msg;
};

/* ---- gate 1: finding the head ---- */

struct pt_scan {
    size_t off; /* bytes already scanned */
    size_t line_start;
    bool first_line_done;
    unsigned char prev;
    size_t max_hline; /* longest header line (0: only max_head bounds it); set by the caller */
    bool method_seen; /* requests: the start line began with a plausible method */
};

/*
 * Scans `buf` from where the last call stopped.  Returns 1 with *head_len
 * when the head (request/status line, headers, empty line) is complete, 0
 * when more bytes are needed, -1 with err set.  `max_line` bounds the first
 * line (414 for requests), `max_head` the whole head (431).  For responses
 * pass is_request = false (limits then give 502).
 */
int pt_http_scan(struct pt_scan *s, struct evbuffer *buf, size_t max_head, size_t max_line, bool is_request,
                 size_t *head_len, struct pt_http_err *err);

/* Drains up to a few empty lines a client may send between requests; true if any remain. */
void pt_http_skip_empty_lines(struct evbuffer *buf);

/* ---- gates 2 and 3 ---- */

/*
 * Parses a complete request head held in buf[0..len) (the slices point into
 * it) and checks it.  Returns false with err set (status 400, 405, 413, 417,
 * 431, 501 or 505).  max_headers bounds the header count; max_body refuses
 * a larger Content-Length up front.
 */
bool pt_http_parse_request(struct pt_head *h, char *buf, size_t len, struct pt_pool *pool, int max_headers,
                           uint64_t max_body, struct pt_http_err *err);

/*
 * Parses a response head from a backend.  `head_request` says the request
 * was HEAD (no body follows whatever the headers say).  Errors mean a
 * broken backend (the caller answers 502).
 */
bool pt_http_parse_response(struct pt_head *h, char *buf, size_t len, struct pt_pool *pool, int max_headers,
                            bool head_request, struct pt_http_err *err);

/* First header named `name` (case-insensitive) that is not deleted, or NULL. */
struct pt_hdr *pt_http_head_get(struct pt_head *h, pt_str name);
/* Appends a header (slices must outlive the head). */
struct pt_hdr *pt_http_head_add(struct pt_head *h, struct pt_pool *pool, pt_str name, pt_str value);

/* ---- chunked bodies ---- */

struct pt_chunked {
    int state;
    uint64_t size;    /* size being parsed */
    uint64_t left;    /* payload bytes left in the current chunk */
    uint32_t ext;     /* extension bytes seen on this size line */
    uint32_t trailer; /* trailer bytes seen */
    int digits;
    /* when set (by the caller, before each call): the last chunk, the trailer fields and the final CRLF
       are copied here as they are read ("0\r\n" name: value "\r\n"... "\r\n"), checked as they are */
    struct evbuffer *end_to;
};

/* The most bytes of a chunked body's trailer section (fields, separators and line ends but LF).  An HTTP/2
   trailer block (its header list: names, values and 32 bytes per field) is bounded by the same figure
   before it goes on as such a section, so a block one side accepts the other does too. */
#define PT_HTTP_TRAILERS_MAX (64 * 1024)

#define PT_CHUNKED_MORE 0
#define PT_CHUNKED_DONE (-2)
#define PT_CHUNKED_ERROR (-1)

/*
 * Consumes framing bytes at the front of `in`.  Returns > 0: that many
 * payload bytes are now at the front of `in`, and the caller takes them and
 * calls pt_http_chunked_took(); PT_CHUNKED_MORE: need more input;
 * PT_CHUNKED_DONE: the last chunk and trailers were read; PT_CHUNKED_ERROR:
 * malformed (err->msg says how).
 */
ssize_t pt_http_chunked_next(struct pt_chunked *c, struct evbuffer *in, struct pt_http_err *err);
void pt_http_chunked_took(struct pt_chunked *c, size_t n);

/* pt_buf, the growable output buffer, is in base/pt_buf.h. */

/* "OK", "Not Found", ...; "Unknown" for codes without a standard phrase. */
const char *pt_http_reason(int status);

/* true when s may be a header value: no CR, LF, NUL or other control but HTAB. */
bool pt_http_value_ok(pt_str s);

/* Classifies a header name. */
enum pt_hkind pt_http_classify(pt_str name);

#endif
