/*
 * pt_fetch -- the gateway's outbound HTTP/1.1 client for its own needs
 * (identity providers' metadata and keys; documents fetched by URL).
 *
 * It blocks the calling thread, so it runs on background threads only,
 * never in a worker's event loop.  What it guarantees, whatever the server
 * does: one overall deadline for the whole fetch (connect, TLS, request,
 * response), a cap on the body, responses parsed by the same head parser
 * and chunked decoder as the proxy's (byte-counted, no string functions),
 * certificate and name checks for https (system CAs, or SSL_CERT_FILE), no
 * redirects followed, and an optional cancel descriptor that ends the fetch
 * at once (shutdown).
 */
#ifndef PT_FETCH_H
#define PT_FETCH_H

#include "base/pt.h"
#include "http/pt_http.h"

#include <sys/socket.h>

struct evbuffer;
struct pt_pool;

struct pt_fetch_opts {
    uint32_t timeout_ms; /* whole fetch; 0: 10 s */
    size_t max_body;     /* decoded body cap; 0: 1 MiB */
    const char *accept;  /* Accept header; NULL: application/json */
    int cancel_fd;       /* becomes readable: stop now; -1 for none */
    /* requests other than a plain GET (the CLI) */
    const char *method; /* NULL: GET */
    const char *body;   /* sent with Content-Length (NULL: none) */
    size_t body_len;
    const char *content_type;    /* with body */
    const char *authorization;   /* the Authorization header's value, or NULL */
    const char *ca_file;         /* trusted CAs for https (NULL: the system's) */
    bool expect_continue;        /* send the body only after 100 Continue (or 1 s of silence) */
    bool public_only;            /* refuse hosts that resolve to loopback, private, link-local, multicast or
                                    unspecified addresses (checked on the address connected to) */
    const char *headers;         /* more header lines, each "Name: value\r\n" (at most 4 KiB), or NULL */
    const char *accept_encoding; /* Accept-Encoding's value (the caller decodes the body); NULL: identity */
};

/* Is the address one that public_only refuses? */
bool pt_fetch_address_private(const struct sockaddr *sa);

struct pt_fetch_result {
    int status; /* the final response's status */
    char *body; /* malloc'd, NUL-terminated (the NUL is not counted) */
    size_t len;
};

enum {
    PT_FETCH_OK = 0,
    PT_FETCH_ERROR = -1,     /* err says what */
    PT_FETCH_TOO_LARGE = -2, /* the body passed max_body */
    PT_FETCH_CANCELLED = -3,
    PT_FETCH_TIMEOUT = -4,
};

/* Sends one request to url (http:// or https://; GET unless o->method).
   PT_FETCH_OK with r filled (free r->body), whatever the status, or a
   negative code with err set.  A server that answers and closes before it
   has read the whole request body (a 413) is still heard. */
int pt_fetch_get(const char *url, const struct pt_fetch_opts *o, struct pt_fetch_result *r, char *err,
                 size_t errlen);

/* ---- the response parser, on its own for tests and fuzzing ---- */

#define PT_FETCH_HEAD_MAX (64 * 1024)
#define PT_FETCH_INTERIM_MAX 16

struct pt_fetch_parser {
    struct pt_pool *pool;
    size_t max_body;
    bool head_request;
    struct pt_scan scan;
    struct pt_head h;
    bool head_done;
    int interim;
    int64_t left;
    struct pt_chunked ch;
    struct evbuffer *body;
};

void pt_fetch_parser_init(struct pt_fetch_parser *p, size_t max_body, bool head_request);
void pt_fetch_parser_free(struct pt_fetch_parser *p);
/* Consumes what `in` holds; eof says the server closed.  1: the response is
   complete (p->h, p->body); 0: more bytes needed; or a negative PT_FETCH_*
   code with err set. */
int pt_fetch_parse(struct pt_fetch_parser *p, struct evbuffer *in, bool eof, char *err, size_t errlen);

#endif
