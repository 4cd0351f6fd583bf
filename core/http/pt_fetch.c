/*
 * pt_fetch -- see pt_fetch.h.
 *
 * One fetch: resolve, connect without blocking, TLS handshake, write the
 * request, read until the parser says the response is complete.  Every wait
 * is a poll() on the socket and the cancel descriptor, bounded by what is
 * left of the fetch's deadline, so neither a silent nor a trickling server
 * holds the thread past it.
 */
#include "http/pt_fetch.h"

#include "base/pt_log.h"
#include "base/pt_pool.h"
#include "base/pt_url.h"
#include "event/pt_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_MAX_BODY (1024 * 1024)

static void seterr(char *err, size_t errlen, const char *fmt, ...) PT_PRINTF(3, 4);
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------- parser */

void pt_fetch_parser_init(struct pt_fetch_parser *p, size_t max_body, bool head_request)
{
    memset(p, 0, sizeof(*p));
    p->pool = pt_pool_new(8192);
    p->max_body = max_body ? max_body : DEFAULT_MAX_BODY;
    p->head_request = head_request;
    p->scan.max_hline = PT_FETCH_HEAD_MAX;
    p->body = evbuffer_new();
}

void pt_fetch_parser_free(struct pt_fetch_parser *p)
{
    if (p->body)
        evbuffer_free(p->body);
    if (p->pool)
        pt_pool_free(p->pool);
    p->body = NULL;
    p->pool = NULL;
}

static int take_body(struct pt_fetch_parser *p, struct evbuffer *in, size_t n, char *err, size_t errlen)
{
    if (evbuffer_get_length(p->body) + n > p->max_body) {
        seterr(err, errlen, "the response body is larger than %zu bytes", p->max_body);
        return PT_FETCH_TOO_LARGE;
    }
    evbuffer_remove_buffer(in, p->body, n);
    return 0;
}

int pt_fetch_parse(struct pt_fetch_parser *p, struct evbuffer *in, bool eof, char *err, size_t errlen)
{
    while (!p->head_done) {
        size_t len = 0;
        struct pt_http_err e = {0};
        int r = pt_http_scan(&p->scan, in, PT_FETCH_HEAD_MAX, PT_FETCH_HEAD_MAX, false, &len, &e);
        if (r == 0) {
            if (eof) {
                seterr(err, errlen, "the server closed the connection before a complete response head");
                return PT_FETCH_ERROR;
            }
            return 0;
        }
        if (r < 0) {
            seterr(err, errlen, "invalid response: %s", e.msg ? e.msg : "malformed head");
            return PT_FETCH_ERROR;
        }
        char *head = pt_pool_alloc(p->pool, len);
        if (!head) {
            seterr(err, errlen, "out of memory");
            return PT_FETCH_ERROR;
        }
        evbuffer_remove(in, head, len);
        memset(&p->scan, 0, sizeof(p->scan));
        p->scan.max_hline = PT_FETCH_HEAD_MAX;
        if (!pt_http_parse_response(&p->h, head, len, p->pool, 256, p->head_request, &e)) {
            seterr(err, errlen, "invalid response: %s", e.msg ? e.msg : "malformed head");
            return PT_FETCH_ERROR;
        }
        if (p->h.status >= 100 && p->h.status < 200) {
            if (p->h.status == 101 || ++p->interim > PT_FETCH_INTERIM_MAX) {
                seterr(err, errlen, "invalid response: %s",
                       p->h.status == 101 ? "an unasked protocol switch"
                                          : "too many interim (1xx) responses");
                return PT_FETCH_ERROR;
            }
            continue;
        }
        p->head_done = true;
        p->left = p->h.content_length;
        if (p->h.body == PT_BODY_LENGTH && p->left > (int64_t)p->max_body) {
            seterr(err, errlen, "the response body is larger than %zu bytes", p->max_body);
            return PT_FETCH_TOO_LARGE;
        }
    }
    switch (p->h.body) {
    case PT_BODY_NONE:
        return 1;
    case PT_BODY_LENGTH: {
        size_t n = (size_t)PT_MIN((int64_t)evbuffer_get_length(in), p->left);
        int r = n ? take_body(p, in, n, err, errlen) : 0;
        if (r < 0)
            return r;
        p->left -= (int64_t)n;
        if (p->left == 0)
            return 1;
        if (eof) {
            seterr(err, errlen, "the server closed the connection %lld bytes before the end of the body",
                   (long long)p->left);
            return PT_FETCH_ERROR;
        }
        return 0;
    }
    case PT_BODY_CHUNKED:
        for (;;) {
            struct pt_http_err e = {502, NULL};
            ssize_t r = pt_http_chunked_next(&p->ch, in, &e);
            if (r > 0) {
                int t = take_body(p, in, (size_t)r, err, errlen);
                if (t < 0)
                    return t;
                pt_http_chunked_took(&p->ch, (size_t)r);
            } else if (r == PT_CHUNKED_DONE)
                return 1;
            else if (r == PT_CHUNKED_MORE) {
                if (eof) {
                    seterr(err, errlen, "the server closed the connection inside a chunked body");
                    return PT_FETCH_ERROR;
                }
                return 0;
            } else {
                seterr(err, errlen, "invalid chunked body: %s", e.msg ? e.msg : "malformed");
                return PT_FETCH_ERROR;
            }
        }
    case PT_BODY_EOF: {
        size_t n = evbuffer_get_length(in);
        int r = n ? take_body(p, in, n, err, errlen) : 0;
        if (r < 0)
            return r;
        return eof ? 1 : 0;
    }
    }
    return PT_FETCH_ERROR;
}

/* ------------------------------------------------------------- client */

struct fetch {
    int fd;
    SSL *ssl;
    int cancel_fd;
    uint64_t deadline_ms;
    char *err;
    size_t errlen;
    bool sent_reset; /* the peer closed while we were still sending */
    bool partial;    /* ... and we went on to read its answer */
    bool public_only;
};

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static SSL_CTX *tls_ctx; /* the system's CAs (or SSL_CERT_FILE), made once */

static void tls_init(void)
{
    struct pt_errors errs = {0};
    tls_ctx = pt_tls_client_ctx(NULL, true, NULL, &errs);
    pt_node_errors_clear(&errs);
}

/* Waits until fd is ready for `events`; 0, or a negative PT_FETCH_* code. */
static int wait_fd(struct fetch *f, short events, const char *doing)
{
    for (;;) {
        uint64_t now = pt_clock_now_us() / 1000;
        if (now >= f->deadline_ms) {
            seterr(f->err, f->errlen, "timed out while %s", doing);
            return PT_FETCH_TIMEOUT;
        }
        struct pollfd pf[2] = {{f->fd, events, 0}, {f->cancel_fd, POLLIN, 0}};
        uint64_t left = f->deadline_ms - now;
        int n = poll(pf, f->cancel_fd >= 0 ? 2 : 1, (int)(left > 60000 ? 60000 : left));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            seterr(f->err, f->errlen, "poll: %s", strerror(errno));
            return PT_FETCH_ERROR;
        }
        if (f->cancel_fd >= 0 && pf[1].revents) {
            seterr(f->err, f->errlen, "cancelled");
            return PT_FETCH_CANCELLED;
        }
        if (pf[0].revents)
            return 0;
    }
}

bool pt_fetch_address_private(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const unsigned char *b = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
        return b[0] == 0 || b[0] == 10 || b[0] == 127 || (b[0] == 100 && (b[1] & 0xc0) == 64) ||
               (b[0] == 169 && b[1] == 254) || (b[0] == 172 && (b[1] & 0xf0) == 16) ||
               (b[0] == 192 && b[1] == 168) || (b[0] == 192 && b[1] == 0 && b[2] == 0) || b[0] >= 224;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        const unsigned char *b = a->s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a)) {
            struct sockaddr_in v4 = {.sin_family = AF_INET};
            memcpy(&v4.sin_addr, b + 12, 4);
            return pt_fetch_address_private((const struct sockaddr *)&v4);
        }
        return IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_LOOPBACK(a) ||
               (b[0] & 0xfe) == 0xfc /* fc00::/7 */ ||
               (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) /* fe80::/10 */ || b[0] == 0xff ||
               (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) /* 2001:db8::/32 */ ||
               (b[0] == 0 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b) /* 64:ff9b::/96 */;
    }
    return true;
}

static int do_connect(struct fetch *f, const char *host, int port)
{
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int gr = getaddrinfo(host, portstr, &hints, &ai);
    if (gr != 0 || !ai) {
        seterr(f->err, f->errlen, "cannot resolve %s: %s", host, gai_strerror(gr));
        return PT_FETCH_ERROR;
    }
    int rc = PT_FETCH_ERROR;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        if (f->public_only && pt_fetch_address_private(a->ai_addr)) {
            char addr[INET6_ADDRSTRLEN] = "";
            getnameinfo(a->ai_addr, a->ai_addrlen, addr, sizeof(addr), NULL, 0, NI_NUMERICHOST);
            seterr(f->err, f->errlen, "%s is %s, a loopback, private or link-local address: refused", host,
                   addr);
            continue;
        }
        int fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            continue;
        f->fd = fd;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            rc = 0;
            break;
        }
        if (errno == EINPROGRESS) {
            rc = wait_fd(f, POLLOUT, "connecting");
            if (rc == 0) {
                int soerr = 0;
                socklen_t sl = sizeof(soerr);
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                if (soerr == 0)
                    break;
                seterr(f->err, f->errlen, "cannot connect to %s:%d: %s", host, port, strerror(soerr));
                rc = PT_FETCH_ERROR;
            }
        } else
            seterr(f->err, f->errlen, "cannot connect to %s:%d: %s", host, port, strerror(errno));
        close(fd);
        f->fd = -1;
        if (rc == PT_FETCH_CANCELLED || rc == PT_FETCH_TIMEOUT)
            break;
    }
    freeaddrinfo(ai);
    return rc;
}

/* Runs one TLS step until it completes; 0 or a negative code. */
static int tls_step(struct fetch *f, int (*op)(SSL *, void *, int), void *buf, int n, int *done,
                    const char *doing)
{
    for (;;) {
        ERR_clear_error();
        int r = op(f->ssl, buf, n);
        if (r > 0) {
            *done = r;
            return 0;
        }
        int e = SSL_get_error(f->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            int w = wait_fd(f, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, doing);
            if (w < 0)
                return w;
            continue;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            *done = 0;
            return 0;
        }
        if (e == SSL_ERROR_SYSCALL && r == 0) { /* closed without close_notify */
            *done = 0;
            return 0;
        }
        long v = SSL_get_verify_result(f->ssl);
        unsigned long le = ERR_peek_last_error();
        if (v != X509_V_OK)
            seterr(f->err, f->errlen, "certificate not trusted: %s", X509_verify_cert_error_string(v));
        else
            seterr(f->err, f->errlen, "TLS failed while %s: %s", doing,
                   le && ERR_reason_error_string(le) ? ERR_reason_error_string(le) : "connection lost");
        ERR_clear_error();
        return PT_FETCH_ERROR;
    }
}

static int op_connect(SSL *s, void *b, int n)
{
    (void)b;
    (void)n;
    return SSL_connect(s);
}

static int op_read(SSL *s, void *b, int n)
{
    return SSL_read(s, b, n);
}

static int op_write(SSL *s, void *b, int n)
{
    return SSL_write(s, b, n);
}

static int send_all(struct fetch *f, const char *p, size_t n)
{
    while (n) {
        if (f->ssl) {
            int done = 0;
            int r = tls_step(f, op_write, (void *)p, (int)n, &done, "sending the request");
            if (r < 0)
                return r;
            if (done <= 0) {
                seterr(f->err, f->errlen, "the server closed the connection");
                return PT_FETCH_ERROR;
            }
            p += done;
            n -= (size_t)done;
            continue;
        }
        ssize_t w = send(f->fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            int r = wait_fd(f, POLLOUT, "sending the request");
            if (r < 0)
                return r;
        } else {
            f->sent_reset = errno == EPIPE || errno == ECONNRESET;
            seterr(f->err, f->errlen, "send: %s", strerror(errno));
            return PT_FETCH_ERROR;
        }
    }
    return 0;
}

/* Reads what is there (waiting if nothing is); >0 bytes, 0 at EOF, or a negative code. */
static int recv_some(struct fetch *f, char *buf, size_t cap)
{
    if (f->ssl) {
        int done = 0;
        int r = tls_step(f, op_read, buf, (int)cap, &done, "reading the response");
        return r < 0 ? r : done;
    }
    for (;;) {
        ssize_t r = recv(f->fd, buf, cap, 0);
        if (r >= 0)
            return (int)r;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            seterr(f->err, f->errlen, "recv: %s", strerror(errno));
            return PT_FETCH_ERROR;
        }
        int w = wait_fd(f, POLLIN, "reading the response");
        if (w < 0)
            return w;
    }
}

/* After a head with Expect: 100-continue: waits up to a second for the
   server's word.  *final when its final answer came instead (the body is
   then not sent), *complete when that answer is whole already. */
static int await_continue(struct fetch *f, struct pt_fetch_parser *p, struct evbuffer *in, bool *final,
                          bool *complete)
{
    uint64_t deadline = f->deadline_ms, soon = pt_clock_now_us() / 1000 + 1000;
    if (soon < deadline)
        f->deadline_ms = soon;
    int rc = 0;
    for (;;) {
        char buf[4096];
        int got = recv_some(f, buf, sizeof(buf));
        if (got == PT_FETCH_TIMEOUT && f->deadline_ms < deadline)
            break; /* silence: send the body */
        if (got < 0) {
            rc = got;
            break;
        }
        evbuffer_add(in, buf, (size_t)got);
        int r = pt_fetch_parse(p, in, got == 0, f->err, f->errlen);
        if (r < 0) {
            rc = r;
            break;
        }
        if (r == 1 || p->head_done) {
            *final = true;
            *complete = r == 1;
            break;
        }
        if (p->interim > 0)
            break; /* 100 Continue */
    }
    f->deadline_ms = deadline;
    return rc;
}

/* Splits url into the scheme://authority part (parsed by pt_url_parse) and
   the request target (path and query as given). */
static const char *split_url(struct pt_pool *pool, const char *url, struct pt_url *u, const char **target)
{
    const char *rest = strstr(url, "://");
    if (!rest)
        return "not an http(s) URL";
    rest += 3;
    size_t alen = strcspn(rest, "/?#");
    size_t base_len = (size_t)(rest - url) + alen;
    char *base = pt_pool_alloc(pool, base_len + 1);
    memcpy(base, url, base_len);
    base[base_len] = '\0';
    const char *msg = pt_url_parse(pool, base, u);
    if (msg)
        return msg;
    const char *t = rest + alen;
    size_t tlen = strcspn(t, "#");
    for (size_t i = 0; i < tlen; i++)
        if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
            return "the URL's path holds a space or a control character";
    char *tg = pt_pool_alloc(pool, tlen + 2);
    if (tlen == 0 || t[0] != '/') {
        tg[0] = '/';
        memcpy(tg + 1, t, tlen);
        tg[tlen + 1] = '\0';
    } else {
        memcpy(tg, t, tlen);
        tg[tlen] = '\0';
    }
    *target = tg;
    return NULL;
}

int pt_fetch_get(const char *url, const struct pt_fetch_opts *o, struct pt_fetch_result *r, char *err,
                 size_t errlen)
{
    memset(r, 0, sizeof(*r));
    struct pt_fetch_opts def = {0, 0, NULL, -1};
    if (!o)
        o = &def;
    struct fetch f = {-1,
                      NULL,
                      o->cancel_fd,
                      pt_clock_now_us() / 1000 + (o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS),
                      err,
                      errlen,
                      false,
                      false,
                      o->public_only};
    struct pt_pool *pool = pt_pool_new(4096);
    struct pt_url u;
    const char *target = NULL;
    const char *msg = pool ? split_url(pool, url, &u, &target) : "out of memory";
    if (msg) {
        seterr(err, errlen, "%s", msg);
        pt_pool_free(pool);
        return PT_FETCH_ERROR;
    }
    int rc = do_connect(&f, u.host, u.port);
    SSL_CTX *own_ctx = NULL;
    if (rc == 0 && u.https) {
        SSL_CTX *ctx;
        if (o->ca_file) {
            struct pt_errors errs = {0};
            ctx = own_ctx = pt_tls_client_ctx(o->ca_file, true, NULL, &errs);
            if (!ctx)
                seterr(err, errlen, "%s", errs.n ? errs.msgs[0] : "cannot set up TLS");
            pt_node_errors_clear(&errs);
        } else {
            pthread_once(&tls_once, tls_init);
            ctx = tls_ctx;
            if (!ctx)
                seterr(err, errlen, "cannot load the system CA store");
        }
        f.ssl = ctx ? pt_tls_client_ssl(ctx, u.host, true) : NULL;
        if (!f.ssl) {
            if (ctx)
                seterr(err, errlen, "cannot set up TLS");
            rc = PT_FETCH_ERROR;
        } else {
            SSL_set_fd(f.ssl, f.fd);
            int done = 0;
            rc = tls_step(&f, op_connect, NULL, 0, &done, "in the TLS handshake");
            if (rc == 0 && done <= 0) {
                seterr(err, errlen, "the server closed the connection in the TLS handshake");
                rc = PT_FETCH_ERROR;
            }
        }
    }
    const char *method = o->method ? o->method : "GET";
    bool complete = false;
    struct evbuffer *in = evbuffer_new();
    struct pt_fetch_parser p;
    pt_fetch_parser_init(&p, o->max_body, !strcmp(method, "HEAD"));
    if (rc == 0) {
        char req[8192 + 512];
        int n = snprintf(req, sizeof(req),
                         "%s %s HTTP/1.1\r\nHost: %s\r\nAccept: %s\r\nAccept-Encoding: %s\r\n"
                         "Connection: close\r\nUser-Agent: portico/" PACKAGE_VERSION "\r\n",
                         method, target, u.authority, o->accept ? o->accept : "application/json",
                         o->accept_encoding ? o->accept_encoding : "identity");
        if (n > 0 && (size_t)n < sizeof(req) && o->authorization)
            n += snprintf(req + n, sizeof(req) - (size_t)n, "Authorization: %s\r\n", o->authorization);
        if (n > 0 && (size_t)n < sizeof(req) && o->headers)
            n += snprintf(req + n, sizeof(req) - (size_t)n, "%s", o->headers);
        if (n > 0 && (size_t)n < sizeof(req) && o->body)
            n += snprintf(req + n, sizeof(req) - (size_t)n, "Content-Type: %s\r\nContent-Length: %zu\r\n%s",
                          o->content_type ? o->content_type : "application/json", o->body_len,
                          o->expect_continue ? "Expect: 100-continue\r\n" : "");
        else if (n > 0 && (size_t)n < sizeof(req) && strcmp(method, "GET") && strcmp(method, "HEAD") &&
                 strcmp(method, "DELETE"))
            n += snprintf(req + n, sizeof(req) - (size_t)n, "Content-Length: 0\r\n");
        if (n > 0 && (size_t)n < sizeof(req))
            n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
        if (n < 0 || (size_t)n >= sizeof(req)) {
            seterr(err, errlen, "the URL or a header is too long");
            rc = PT_FETCH_ERROR;
        } else {
            rc = send_all(&f, req, (size_t)n);
            bool final = false;
            if (rc == 0 && o->body && o->body_len && o->expect_continue)
                rc = await_continue(&f, &p, in, &final, &complete);
            if (rc == 0 && o->body && o->body_len && !final)
                rc = send_all(&f, o->body, o->body_len);
            if (rc == PT_FETCH_ERROR && (f.sent_reset)) {
                rc = 0; /* the server stopped reading: its answer (413...) may be waiting */
                f.partial = true;
            }
        }
    }
    while (rc == 0 && !complete) {
        char buf[16384];
        int got = recv_some(&f, buf, sizeof(buf));
        if (got < 0 && f.partial && evbuffer_get_length(in) + (p.head_done ? 1 : 0) > 0)
            got = 0; /* reset after an early answer: take what came as the end */
        if (got < 0) {
            rc = got;
            break;
        }
        evbuffer_add(in, buf, (size_t)got);
        int pr = pt_fetch_parse(&p, in, got == 0, err, errlen);
        if (pr < 0)
            rc = pr;
        else if (pr == 1)
            break;
    }
    if (rc == 0) {
        size_t len = evbuffer_get_length(p.body);
        r->body = malloc(len + 1);
        if (!r->body) {
            seterr(err, errlen, "out of memory");
            rc = PT_FETCH_ERROR;
        } else {
            evbuffer_remove(p.body, r->body, len);
            r->body[len] = '\0';
            r->len = len;
            r->status = p.h.status;
        }
    }
    evbuffer_free(in);
    pt_fetch_parser_free(&p);
    if (f.ssl)
        SSL_free(f.ssl);
    SSL_CTX_free(own_ctx);
    if (f.fd >= 0)
        close(f.fd);
    ERR_clear_error();
    pt_pool_free(pool);
    return rc;
}
