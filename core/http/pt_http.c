/*
 * pt_http -- heads, framing checks and chunked decoding.
 */
#include "http/pt_http.h"

#include "base/pt_url.h"

#include <event2/buffer.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------ characters */

bool pt_http_value_ok(pt_str s)
{
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.data[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* -------------------------------------------------------------- scanning */

void pt_http_skip_empty_lines(struct evbuffer *buf)
{
    for (int i = 0; i < 4; i++) {
        unsigned char two[2];
        if (evbuffer_copyout(buf, two, 2) != 2 || two[0] != '\r' || two[1] != '\n')
            return;
        evbuffer_drain(buf, 2);
    }
}

/* Bytes the scanner must look at: CR, LF and the control bytes that may
   never appear in a head (HTAB is allowed; it is data). */
static const uint8_t scan_class[256] = {
    [0] = 3,  [1] = 3,    [2] = 3,  [3] = 3,  [4] = 3,    [5] = 3,  [6] = 3,  [7] = 3,
    [8] = 3,  ['\n'] = 1, [11] = 3, [12] = 3, ['\r'] = 2, [14] = 3, [15] = 3, [16] = 3,
    [17] = 3, [18] = 3,   [19] = 3, [20] = 3, [21] = 3,   [22] = 3, [23] = 3, [24] = 3,
    [25] = 3, [26] = 3,   [27] = 3, [28] = 3, [29] = 3,   [30] = 3, [31] = 3, [127] = 3,
};

static int scan_fail(struct pt_http_err *err, bool is_request, int status, const char *msg)
{
    err->status = is_request ? status : 502;
    err->msg = msg;
    return -1;
}

/*
 * A request line starts with a method: upper-case letters and '-' (every
 * method llhttp knows), then a space.  Bytes that cannot begin one (a TLS
 * hello on a plain port, a stray 0xC0, '&') are refused at once instead of
 * waiting for the header timeout.  0: fine so far, -1: refused.
 */
#define METHOD_MAX 20

static int check_method(struct pt_scan *s, struct evbuffer *buf, size_t total, struct pt_http_err *err)
{
    unsigned char b[METHOD_MAX + 1];
    size_t n = PT_MIN(total, sizeof(b));
    if (evbuffer_copyout(buf, b, n) < (ev_ssize_t)n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (b[i] == ' ' && i > 0) {
            s->method_seen = true;
            return 0;
        }
        if (!((b[i] >= 'A' && b[i] <= 'Z') || (b[i] == '-' && i > 0)))
            return scan_fail(err, true, 400,
                             "not an HTTP request: the request line must start with a method");
    }
    if (n > METHOD_MAX)
        return scan_fail(err, true, 400, "not an HTTP request: no method of that length");
    return 0;
}

int pt_http_scan(struct pt_scan *s, struct evbuffer *buf, size_t max_head, size_t max_line, bool is_request,
                 size_t *head_len, struct pt_http_err *err)
{
    size_t total = evbuffer_get_length(buf);
    if (s->off >= total)
        return 0;
    if (is_request && !s->method_seen && check_method(s, buf, total, err) < 0)
        return -1;
    struct evbuffer_ptr ptr;
    if (evbuffer_ptr_set(buf, &ptr, s->off, EVBUFFER_PTR_SET) < 0)
        return 0;
    struct evbuffer_iovec vec[8];
    size_t pos = s->off;
    while (pos < total) {
        int nv = evbuffer_peek(buf, (ev_ssize_t)(total - pos), &ptr, vec, 8);
        if (nv <= 0)
            break;
        if (nv > 8)
            nv = 8;
        size_t consumed = 0;
        for (int v = 0; v < nv; v++) {
            const unsigned char *p = vec[v].iov_base;
            size_t n = vec[v].iov_len, i = 0;
            while (i < n) {
                unsigned char c = p[i];
                if (pos >= max_head)
                    return scan_fail(err, is_request, s->first_line_done ? 431 : 414,
                                     !is_request          ? "response head too large"
                                     : s->first_line_done ? "request header section too large"
                                                          : "request line too long");
                if (s->prev == '\r') {
                    if (c != '\n')
                        return scan_fail(err, is_request, 400, "CR not followed by LF");
                    size_t line_len = pos - s->line_start; /* includes the CR */
                    if (line_len == 1) {
                        if (!s->first_line_done)
                            return scan_fail(err, is_request, 400, "empty start line");
                        *head_len = pos + 1;
                        s->off = pos + 1;
                        return 1;
                    }
                    if (!s->first_line_done) {
                        s->first_line_done = true;
                        if (line_len > max_line)
                            return scan_fail(err, is_request, 414,
                                             is_request ? "request line too long" : "status line too long");
                    } else if (s->max_hline && line_len - 1 > s->max_hline)
                        return scan_fail(err, is_request, 431, "header line too long");
                    s->line_start = pos + 1;
                    s->prev = '\n';
                    i++;
                    pos++;
                    continue;
                }
                if (s->prev == '\n' && (c == ' ' || c == '\t') && s->first_line_done)
                    return scan_fail(err, is_request, 400,
                                     "obsolete line folding (header line starting with whitespace)");
                /* fast path: ordinary bytes up to the next CR, LF or control byte */
                size_t lim = PT_MIN(n, i + (max_head - pos));
                size_t j = i;
                while (j < lim && !scan_class[p[j]])
                    j++;
                if (j > i) {
                    pos += j - i;
                    s->prev = p[j - 1];
                    i = j;
                    if (!s->first_line_done && pos - s->line_start > max_line)
                        return scan_fail(err, is_request, 414,
                                         is_request ? "request line too long" : "status line too long");
                    if (s->first_line_done && s->max_hline && pos - s->line_start > s->max_hline + 1)
                        return scan_fail(err, is_request, 431, "header line too long");
                    continue;
                }
                switch (scan_class[c]) {
                case 1:
                    return scan_fail(err, is_request, 400, "line ending without CR (bare LF)");
                case 2:
                    s->prev = '\r';
                    i++;
                    pos++;
                    break;
                default:
                    return scan_fail(err, is_request, 400,
                                     c == 0 ? "NUL byte in the head" : "control character in the head");
                }
            }
            consumed += n;
        }
        if (evbuffer_ptr_set(buf, &ptr, consumed, EVBUFFER_PTR_ADD) < 0)
            break;
    }
    s->off = pos;
    return 0;
}

/* --------------------------------------------------------------- parsing */

struct pctx {
    struct pt_head *h;
    struct pt_pool *pool;
    int max_headers;
    struct pt_http_err *err;
    bool too_many;
};

static int on_method(llhttp_t *p, const char *at, size_t n)
{
    struct pctx *c = p->data;
    c->h->method = (pt_str){at, n};
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    struct pctx *c = p->data;
    c->h->target = (pt_str){at, n};
    return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t n)
{
    struct pctx *c = p->data;
    c->h->reason = (pt_str){at, n};
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct pctx *c = p->data;
    struct pt_head *h = c->h;
    if (h->nh >= c->max_headers) {
        c->too_many = true;
        return -1;
    }
    struct pt_hdr *grown = pt_pool_grow(c->pool, h->h, sizeof(*h->h), &h->caph, h->nh + 1);
    if (!grown)
        return -1;
    h->h = grown;
    struct pt_hdr *x = &h->h[h->nh++];
    x->name = (pt_str){at, n};
    x->value = (pt_str){at + n, 0};
    x->kind = (uint8_t)pt_http_classify(x->name);
    x->hop = false;
    x->deleted = false;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct pctx *c = p->data;
    c->h->h[c->h->nh - 1].value = pt_str_trim((pt_str){at, n});
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    return HPE_PAUSED;
}

static const llhttp_settings_t parse_settings = {
    .on_method = on_method,
    .on_url = on_url,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
};

/* Trailing whitespace before a line's CR is optional whitespace (RFC 9110
   5.6.3); llhttp 8 refuses a trailing HTAB after some values (Content-Length).
   Tabs there become spaces, which it accepts; the slices are trimmed anyway. */
static void soften_trailing_tabs(char *buf, size_t len)
{
    char *p = buf, *end = buf + len;
    while ((p = memchr(p, '\t', (size_t)(end - p))) != NULL) {
        char *q = p;
        while (q < end && (*q == '\t' || *q == ' '))
            q++;
        if (q < end && *q == '\r')
            for (char *t = p; t < q; t++)
                *t = ' ';
        p = q;
    }
}

static bool run_llhttp(struct pt_head *h, llhttp_type_t type, char *buf, size_t len, struct pt_pool *pool,
                       int max_headers, struct pt_http_err *err)
{
    llhttp_t parser;
    soften_trailing_tabs(buf, len);
    struct pctx c = {h, pool, max_headers, err, false};
    memset(h, 0, sizeof(*h));
    h->content_length = -1;
    llhttp_init(&parser, type, &parse_settings);
    parser.data = &c;
    llhttp_errno_t e = llhttp_execute(&parser, buf, len);
    if (c.too_many) {
        err->status = type == HTTP_REQUEST ? 431 : 502;
        err->msg = "too many header fields";
        return false;
    }
    if (e != HPE_PAUSED) {
        err->status = type == HTTP_REQUEST ? 400 : 502;
        if (e == HPE_INVALID_VERSION && type == HTTP_REQUEST)
            err->status = 505;
        err->msg = llhttp_get_error_reason(&parser);
        if (!err->msg || !*err->msg)
            err->msg = llhttp_errno_name(e);
        return false;
    }
    /* llhttp 8 lets spaces into names ("X : a", "X Y: a") and empty names
       through; a name that is not a token is refused here */
    for (int i = 0; i < h->nh; i++)
        if (!pt_str_is_token(h->h[i].name)) {
            err->status = type == HTTP_REQUEST ? 400 : 502;
            err->msg = "invalid header name";
            return false;
        }
    h->major = parser.http_major;
    h->minor = parser.http_minor;
    if (type == HTTP_REQUEST)
        h->method_id = parser.method;
    else
        h->status = parser.status_code;
    return true;
}

enum pt_hkind pt_http_classify(pt_str n)
{
#define IS(lit) (n.len == sizeof(lit) - 1 && pt_str_ieq(n, PT_STR(lit)))
    switch (n.len) {
    case 2:
        if (IS("te"))
            return PT_H_TE;
        break;
    case 4:
        if (IS("host"))
            return PT_H_HOST;
        if (IS("date"))
            return PT_H_DATE;
        break;
    case 6:
        if (IS("expect"))
            return PT_H_EXPECT;
        if (IS("server"))
            return PT_H_SERVER;
        break;
    case 7:
        if (IS("upgrade"))
            return PT_H_UPGRADE;
        if (IS("trailer"))
            return PT_H_TRAILER;
        break;
    case 9:
        if (IS("forwarded"))
            return PT_H_FORWARDED;
        break;
    case 10:
        if (IS("connection"))
            return PT_H_CONNECTION;
        if (IS("keep-alive"))
            return PT_H_KEEP_ALIVE;
        break;
    case 12:
        if (IS("x-request-id"))
            return PT_H_X_REQUEST_ID;
        break;
    case 14:
        if (IS("content-length"))
            return PT_H_CONTENT_LENGTH;
        break;
    case 15:
        if (IS("x-forwarded-for"))
            return PT_H_X_FORWARDED_FOR;
        break;
    case 16:
        if (IS("proxy-connection"))
            return PT_H_PROXY_CONNECTION;
        if (IS("x-forwarded-host"))
            return PT_H_X_FORWARDED_HOST;
        break;
    case 17:
        if (IS("transfer-encoding"))
            return PT_H_TRANSFER_ENCODING;
        if (IS("x-forwarded-proto"))
            return PT_H_X_FORWARDED_PROTO;
        break;
    }
    return PT_H_OTHER;
#undef IS
}

/* Iterates the comma-separated elements of a list header value; a
   trailing comma yields a last, empty element. */
struct elist {
    pt_str s;
    size_t i;
    bool done;
};

static bool elist_next(struct elist *it, pt_str *el)
{
    if (it->done)
        return false;
    const char *c = memchr(it->s.data + it->i, ',', it->s.len - it->i);
    size_t end = c ? (size_t)(c - it->s.data) : it->s.len;
    *el = pt_str_trim((pt_str){it->s.data + it->i, end - it->i});
    if (c)
        it->i = end + 1;
    else
        it->done = true;
    return true;
}

/* Connection, Upgrade, Content-Length and Transfer-Encoding, both directions. */
static bool check_framing(struct pt_head *h, bool is_request, struct pt_http_err *err)
{
    int bad = is_request ? 400 : 502;
    int ncl = 0, nte = 0;
    bool conn_close = false, conn_keep = false, conn_upgrade = false;
    pt_str upgrade = PT_NULL_STR;
    bool chunked = false;

    for (int i = 0; i < h->nh; i++) {
        struct pt_hdr *x = &h->h[i];
        switch (x->kind) {
        case PT_H_CONTENT_LENGTH: {
            if (++ncl > 1) {
                err->status = bad;
                err->msg = "more than one Content-Length";
                return false;
            }
            pt_str v = x->value;
            if (v.len == 0 || v.len > 18) {
                err->status = bad;
                err->msg = "invalid Content-Length";
                return false;
            }
            int64_t cl = 0;
            for (size_t k = 0; k < v.len; k++) {
                if (v.data[k] < '0' || v.data[k] > '9') {
                    err->status = bad;
                    err->msg = "invalid Content-Length";
                    return false;
                }
                cl = cl * 10 + (v.data[k] - '0');
            }
            h->content_length = cl;
            x->hop = true; /* we write our own framing */
            break;
        }
        case PT_H_TRANSFER_ENCODING: {
            nte++;
            x->hop = true;
            struct elist it = {x->value, 0, false};
            pt_str el;
            int count = 0;
            bool seen = false;
            while (elist_next(&it, &el)) {
                if (!pt_str_is_token(el) || seen) {
                    err->status = bad;
                    err->msg = seen ? "chunked must be the last transfer coding, once"
                                    : "malformed Transfer-Encoding";
                    return false;
                }
                seen = pt_str_ieq_c(el, "chunked");
                count++;
            }
            if (!seen || count != 1) {
                err->status = is_request ? 501 : 502;
                err->msg = "unsupported transfer coding";
                return false;
            }
            chunked = true;
            break;
        }
        case PT_H_CONNECTION: {
            x->hop = true;
            struct elist it = {x->value, 0, false};
            pt_str el;
            while (elist_next(&it, &el)) {
                if (el.len == 0)
                    continue;
                if (pt_str_ieq_c(el, "close"))
                    conn_close = true;
                else if (pt_str_ieq_c(el, "keep-alive"))
                    conn_keep = true;
                else if (pt_str_ieq_c(el, "upgrade"))
                    conn_upgrade = true;
                else {
                    /* a header named here is hop-by-hop too */
                    for (int k = 0; k < h->nh; k++)
                        if (pt_str_ieq(h->h[k].name, el) && h->h[k].kind != PT_H_HOST &&
                            h->h[k].kind != PT_H_CONTENT_LENGTH && h->h[k].kind != PT_H_TRANSFER_ENCODING)
                            h->h[k].hop = true;
                }
            }
            break;
        }
        case PT_H_UPGRADE:
            upgrade = x->value;
            x->hop = true;
            break;
        case PT_H_KEEP_ALIVE:
        case PT_H_PROXY_CONNECTION:
        case PT_H_TE:
        case PT_H_TRAILER:
            x->hop = true;
            break;
        default:
            break;
        }
    }
    if (nte > 1) {
        err->status = bad;
        err->msg = "more than one Transfer-Encoding";
        return false;
    }
    if (nte && ncl) {
        err->status = bad;
        err->msg = "both Content-Length and Transfer-Encoding";
        return false;
    }
    if (nte && h->major == 1 && h->minor == 0) {
        err->status = bad;
        err->msg = "Transfer-Encoding in an HTTP/1.0 message";
        return false;
    }
    if (h->minor >= 1)
        h->keepalive = !conn_close;
    else
        h->keepalive = conn_keep && !conn_close;
    if (chunked)
        h->body = PT_BODY_CHUNKED;
    else if (ncl)
        h->body = h->content_length > 0 ? PT_BODY_LENGTH : PT_BODY_NONE;
    else
        h->body = is_request ? PT_BODY_NONE : PT_BODY_EOF;
    if (conn_upgrade && upgrade.len) {
        struct elist it = {upgrade, 0, false};
        pt_str el;
        while (elist_next(&it, &el))
            if (pt_str_ieq_c(el, "websocket"))
                h->upgrade_ws = true;
    }
    return true;
}

/* Removes "." and ".." segments (RFC 3986 5.2.4); false when ".." climbs above the root. */
static bool normalize_path(struct pt_head *h, struct pt_pool *pool)
{
    pt_str p = h->path;
    bool dots = false;
    for (size_t i = 0; i + 1 < p.len; i++)
        if (p.data[i] == '/' && p.data[i + 1] == '.') {
            dots = true;
            break;
        }
    /* encoded dots are refused outright: they must not become dot segments later */
    for (size_t i = 0; i + 2 < p.len; i++)
        if (p.data[i] == '%' && p.data[i + 1] == '2' && (p.data[i + 2] == 'e' || p.data[i + 2] == 'E')) {
            /* only as a whole segment (%2e, %2e%2e, .%2e, %2e.) */
            size_t s = i, e = i;
            while (s > 0 && p.data[s - 1] != '/')
                s--;
            while (e < p.len && p.data[e] != '/')
                e++;
            pt_str seg = {p.data + s, e - s};
            if (pt_str_ieq_c(seg, "%2e") || pt_str_ieq_c(seg, "%2e%2e") || pt_str_ieq_c(seg, ".%2e") ||
                pt_str_ieq_c(seg, "%2e."))
                return false;
        }
    if (!dots)
        return true;
    char *out = pt_pool_alloc(pool, p.len + 1);
    size_t o = 0;
    size_t i = 0;
    while (i < p.len) {
        /* p.p[i] == '/' */
        size_t j = i + 1;
        while (j < p.len && p.data[j] != '/')
            j++;
        pt_str seg = {p.data + i + 1, j - i - 1};
        bool last = j >= p.len;
        if (seg.len == 1 && seg.data[0] == '.') {
            if (last)
                out[o++] = '/';
        } else if (seg.len == 2 && seg.data[0] == '.' && seg.data[1] == '.') {
            if (o == 0)
                return false;
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--; /* drop the slash too */
            if (last)
                out[o++] = '/';
        } else {
            out[o++] = '/';
            memcpy(out + o, seg.data, seg.len);
            o += seg.len;
        }
        i = j;
    }
    if (o == 0)
        out[o++] = '/';
    h->path = (pt_str){out, o};
    return true;
}

bool pt_http_parse_request(struct pt_head *h, char *buf, size_t len, struct pt_pool *pool, int max_headers,
                           uint64_t max_body, struct pt_http_err *err)
{
    if (!run_llhttp(h, HTTP_REQUEST, buf, len, pool, max_headers, err))
        return false;
    if (h->major != 1) {
        err->status = 505;
        err->msg = "HTTP version not supported";
        return false;
    }
    if (h->method_id == HTTP_CONNECT || h->method_id == HTTP_TRACE) {
        err->status = 405;
        err->msg = h->method_id == HTTP_CONNECT ? "CONNECT is not allowed" : "TRACE is not allowed";
        return false;
    }
    /* request target: origin-form, absolute-form, or "*" for OPTIONS; visible
       ASCII only (llhttp lets HTAB and bytes over 0x7F through) */
    pt_str t = h->target;
    for (size_t i = 0; i < t.len; i++)
        if ((unsigned char)t.data[i] <= 0x20 || (unsigned char)t.data[i] >= 0x7f) {
            err->status = 400;
            err->msg = "invalid character in the request target (percent-encode it)";
            return false;
        }
    pt_str authority = PT_NULL_STR;
    if (t.len && t.data[0] == '/') {
        h->path = t;
    } else if (t.len == 1 && t.data[0] == '*' && h->method_id == HTTP_OPTIONS) {
        h->path = t;
    } else if (t.len > 7 && (strncasecmp(t.data, "http://", 7) == 0 ||
                             (t.len > 8 && strncasecmp(t.data, "https://", 8) == 0))) {
        size_t s = t.data[4] == ':' ? 7 : 8;
        size_t e = s;
        while (e < t.len && t.data[e] != '/' && t.data[e] != '?')
            e++;
        authority = (pt_str){t.data + s, e - s};
        if (!pt_url_host_valid(authority)) {
            err->status = 400;
            err->msg = "invalid authority in the request target";
            return false;
        }
        if (e == t.len || t.data[e] == '?') {
            /* "http://host?q": the path is "/" */
            char *np = pt_pool_alloc(pool, t.len - e + 1);
            np[0] = '/';
            memcpy(np + 1, t.data + e, t.len - e);
            h->path = (pt_str){np, t.len - e + 1};
        } else
            h->path = (pt_str){t.data + e, t.len - e};
    } else {
        err->status = 400;
        err->msg = "invalid request target";
        return false;
    }
    if (memchr(h->path.data, '#', h->path.len)) {
        err->status = 400;
        err->msg = "fragment in the request target";
        return false;
    }
    const char *q = memchr(h->path.data, '?', h->path.len);
    if (q) {
        h->query = (pt_str){q + 1, h->path.len - (size_t)(q + 1 - h->path.data)};
        h->path.len = (size_t)(q - h->path.data);
    }
    if (h->path.data[0] == '/' && !normalize_path(h, pool)) {
        err->status = 400;
        err->msg = "path climbs above the root or has encoded dot segments";
        return false;
    }
    /* Host */
    for (int i = 0; i < h->nh; i++)
        if (h->h[i].kind == PT_H_HOST) {
            if (++h->host_count > 1) {
                err->status = 400;
                err->msg = "more than one Host";
                return false;
            }
            h->host = h->h[i].value;
            h->h[i].hop = true; /* rewritten for the backend */
        }
    if (h->host_count == 0 && h->minor >= 1) {
        err->status = 400;
        err->msg = "missing Host";
        return false;
    }
    if (h->host_count && !pt_url_host_valid(h->host)) {
        err->status = 400;
        err->msg = "invalid Host";
        return false;
    }
    if (authority.len)
        h->host = authority; /* RFC 9112 3.2.2: the request line wins */
    if (!check_framing(h, true, err))
        return false;
    if (h->body == PT_BODY_LENGTH && (uint64_t)h->content_length > max_body) {
        err->status = 413;
        err->msg = "request body larger than the limit";
        return false;
    }
    for (int i = 0; i < h->nh; i++)
        if (h->h[i].kind == PT_H_EXPECT) {
            h->h[i].hop = true;
            if (pt_str_ieq_c(pt_str_trim(h->h[i].value), "100-continue"))
                h->expect_continue = true;
            else {
                err->status = 417;
                err->msg = "unsupported expectation";
                return false;
            }
        }
    if (h->upgrade_ws && h->body != PT_BODY_NONE) {
        err->status = 400;
        err->msg = "upgrade request with a body";
        return false;
    }
    return true;
}

bool pt_http_parse_response(struct pt_head *h, char *buf, size_t len, struct pt_pool *pool, int max_headers,
                            bool head_request, struct pt_http_err *err)
{
    if (!run_llhttp(h, HTTP_RESPONSE, buf, len, pool, max_headers, err))
        return false;
    if (h->major != 1) {
        err->status = 502;
        err->msg = "backend answered with an unsupported HTTP version";
        return false;
    }
    if (h->status < 100 || h->status > 999) {
        err->status = 502;
        err->msg = "invalid status code";
        return false;
    }
    if (!check_framing(h, false, err))
        return false;
    if (head_request || h->status < 200 || h->status == 204 || h->status == 304) {
        h->body_announced =
            h->body == PT_BODY_CHUNKED || (h->body == PT_BODY_LENGTH && h->content_length > 0);
        h->body = PT_BODY_NONE;
    }
    if (h->status == 101 && !h->upgrade_ws) {
        err->status = 502;
        err->msg = "backend switched protocols without a WebSocket upgrade";
        return false;
    }
    return true;
}

struct pt_hdr *pt_http_head_get(struct pt_head *h, pt_str name)
{
    for (int i = 0; i < h->nh; i++)
        if (!h->h[i].deleted && pt_str_ieq(h->h[i].name, name))
            return &h->h[i];
    return NULL;
}

struct pt_hdr *pt_http_head_add(struct pt_head *h, struct pt_pool *pool, pt_str name, pt_str value)
{
    struct pt_hdr *grown = pt_pool_grow(pool, h->h, sizeof(*h->h), &h->caph, h->nh + 1);
    if (!grown || !name.data)
        return NULL; /* malloc refused the arena: the head keeps what it had */
    h->h = grown;
    struct pt_hdr *x = &h->h[h->nh++];
    x->name = name;
    x->value = value;
    x->kind = (uint8_t)pt_http_classify(name);
    x->hop = false;
    x->deleted = false;
    return x;
}

/* --------------------------------------------------------------- chunked */

enum {
    CH_SIZE,
    CH_SIZE_WS,
    CH_EXT,
    CH_SIZE_LF,
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER_START,
    CH_TRAILER,
    CH_TRAILER_LF,
    CH_FINAL_LF,
    CH_DONE
};

#define MAX_CHUNK_EXT 4096

ssize_t pt_http_chunked_next(struct pt_chunked *c, struct evbuffer *in, struct pt_http_err *err)
{
    for (;;) {
        if (c->state == CH_DONE)
            return PT_CHUNKED_DONE;
        if (c->state == CH_DATA) {
            size_t avail = evbuffer_get_length(in);
            if (avail == 0)
                return PT_CHUNKED_MORE;
            return (ssize_t)PT_MIN((uint64_t)avail, c->left);
        }
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
            return PT_CHUNKED_MORE;
        const unsigned char *p = v.iov_base;
        size_t i = 0;
        for (; i < v.iov_len && c->state != CH_DATA && c->state != CH_DONE; i++) {
            unsigned char ch = p[i];
            switch (c->state) {
            case CH_SIZE: {
                int d = pt_hexval(ch);
                if (d >= 0) {
                    if (++c->digits > 15) {
                        err->msg = "chunk size too large";
                        return PT_CHUNKED_ERROR;
                    }
                    c->size = (c->size << 4) | (uint64_t)d;
                } else if (c->digits == 0) {
                    err->msg = "invalid chunk size";
                    return PT_CHUNKED_ERROR;
                } else if (ch == ';') {
                    c->state = CH_EXT;
                } else if (ch == ' ' || ch == '\t') {
                    c->state = CH_SIZE_WS;
                } else if (ch == '\r') {
                    c->state = CH_SIZE_LF;
                } else {
                    err->msg = "invalid chunk size";
                    return PT_CHUNKED_ERROR;
                }
                break;
            }
            case CH_SIZE_WS:
                if (ch == ';')
                    c->state = CH_EXT;
                else if (ch == '\r')
                    c->state = CH_SIZE_LF;
                else if (ch != ' ' && ch != '\t') {
                    err->msg = "invalid chunk size";
                    return PT_CHUNKED_ERROR;
                }
                break;
            case CH_EXT:
                if (ch == '\r')
                    c->state = CH_SIZE_LF;
                else if ((ch < 0x20 && ch != '\t') || ch == 0x7f || ++c->ext > MAX_CHUNK_EXT) {
                    err->msg = ch == '\n' ? "chunk line ending without CR" : "invalid chunk extension";
                    return PT_CHUNKED_ERROR;
                }
                break;
            case CH_SIZE_LF:
                if (ch != '\n') {
                    err->msg = "CR not followed by LF in a chunk line";
                    return PT_CHUNKED_ERROR;
                }
                if (c->size == 0) {
                    c->state = CH_TRAILER_START;
                    if (c->end_to)
                        evbuffer_add(c->end_to, "0\r\n", 3);
                } else {
                    c->left = c->size;
                    c->state = CH_DATA;
                }
                c->size = 0;
                c->digits = 0;
                c->ext = 0;
                break;
            case CH_DATA_CR:
                if (ch != '\r') {
                    err->msg = "chunk data not followed by CRLF";
                    return PT_CHUNKED_ERROR;
                }
                c->state = CH_DATA_LF;
                break;
            case CH_DATA_LF:
                if (ch != '\n') {
                    err->msg = "chunk data not followed by CRLF";
                    return PT_CHUNKED_ERROR;
                }
                c->state = CH_SIZE;
                break;
            case CH_TRAILER_START:
                if (c->end_to && ch != '\r')
                    evbuffer_add(c->end_to, &ch, 1);
                if (ch == '\r')
                    c->state = CH_FINAL_LF;
                else if (ch == '\n' || ch == ' ' || ch == '\t' || !pt_str_tchar[ch]) {
                    err->msg = "malformed trailer";
                    return PT_CHUNKED_ERROR;
                } else
                    c->state = CH_TRAILER;
                if (++c->trailer > PT_HTTP_TRAILERS_MAX) {
                    err->msg = "trailers too large";
                    return PT_CHUNKED_ERROR;
                }
                break;
            case CH_TRAILER:
                if (c->end_to)
                    evbuffer_add(c->end_to, &ch, 1);
                if (ch == '\r')
                    c->state = CH_TRAILER_LF;
                else if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                    err->msg = "malformed trailer";
                    return PT_CHUNKED_ERROR;
                }
                if (++c->trailer > PT_HTTP_TRAILERS_MAX) {
                    err->msg = "trailers too large";
                    return PT_CHUNKED_ERROR;
                }
                break;
            case CH_TRAILER_LF:
                if (ch != '\n') {
                    err->msg = "malformed trailer";
                    return PT_CHUNKED_ERROR;
                }
                if (c->end_to)
                    evbuffer_add(c->end_to, "\n", 1);
                c->state = CH_TRAILER_START;
                break;
            case CH_FINAL_LF:
                if (ch != '\n') {
                    err->msg = "malformed end of chunked body";
                    return PT_CHUNKED_ERROR;
                }
                if (c->end_to)
                    evbuffer_add(c->end_to, "\r\n", 2);
                c->state = CH_DONE;
                break;
            }
        }
        evbuffer_drain(in, i);
    }
}

void pt_http_chunked_took(struct pt_chunked *c, size_t n)
{
    c->left -= n;
    if (c->left == 0)
        c->state = CH_DATA_CR;
}

const char *pt_http_reason(int s)
{
    switch (s) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    }
    return "Unknown";
}
