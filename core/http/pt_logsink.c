/*
 * pt_logsink -- log sinks (see pt_logsink.h for the contract).
 *
 * The queue is Vyukov's bounded queue: a ring of cells, each with a
 * sequence number; producers claim a position with one compare-and-swap
 * on the tail, the single consumer (the sink's thread) reads cells in
 * order.  A message is one malloc'd block (the text, its partition id and
 * key, its time); a byte budget bounds what the queue holds besides its
 * count.
 *
 * The thread sleeps in poll() on an eventfd.  A producer writes to it only
 * when the thread said it is going to sleep (the `sleeping` flag, with a
 * fence on both sides so that a message pushed while the thread decides to
 * sleep is always seen): a busy sink costs its producers no system call.
 *
 * Delivery per kind:
 *   file    one write(2) per message (O_APPEND), the message and "\n";
 *           the access log's lines in one write.
 *   syslog  RFC 5424 frames; UDP and unix datagram sockets one frame per
 *           datagram, TCP and unix stream sockets with RFC 6587 octet
 *           counting.  A stream that breaks is reconnected, at most once
 *           a second; messages wait in the queue meanwhile.
 *   http    batches (batchSize messages, 1 MiB, flushInterval) POSTed with
 *           pt_fetch as JSON lines or a JSON array; a failure (no answer,
 *           429, 5xx) is retried with doubling waits, then the batch's
 *           messages count as failed.
 */
#define _GNU_SOURCE
#include "http/pt_logsink.h"
#include "base/pt_utf8.h"

#include "base/pt_log.h"
#include "base/pt_sbuf.h"
#include "http/pt_fetch.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#define HTTP_BATCH_BYTES (1024 * 1024)
#define SD_ID "portico@32473" /* 32473: the example enterprise number of RFC 5612 */

/* ------------------------------------------------------------- counters */

struct ctr {
    char *id;
    atomic_uint_fast64_t sent, dropped, failed;
    atomic_long queued;
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reg_cv = PTHREAD_COND_INITIALIZER;
static struct ctr **ctrs; /* by id, never freed: /metrics reads them while sinks come and go */
static int nctrs, capctrs;
static struct pt_logsink *live; /* sinks generations may still take */
static int threads;             /* sink threads running */
static atomic_uint reopen_serial;
static _Atomic uint64_t stop_deadline; /* ms; 0 = not stopping */

static struct ctr *ctr_of(const char *id) /* under reg_mu */
{
    for (int i = 0; i < nctrs; i++)
        if (!strcmp(ctrs[i]->id, id))
            return ctrs[i];
    if (nctrs == capctrs) {
        int cap = capctrs ? capctrs * 2 : 16;
        struct ctr **n = realloc(ctrs, sizeof(*n) * (size_t)cap);
        if (!n)
            return NULL;
        ctrs = n;
        capctrs = cap;
    }
    struct ctr *c = calloc(1, sizeof(*c));
    if (!c || !(c->id = strdup(id))) {
        free(c);
        return NULL;
    }
    ctrs[nctrs++] = c;
    return c;
}

int pt_logsink_stats(struct pt_logsink_stats *out, int max)
{
    pthread_mutex_lock(&reg_mu);
    int n = nctrs;
    for (int i = 0; i < n && i < max; i++) {
        struct ctr *c = ctrs[i];
        long q = atomic_load(&c->queued);
        out[i] = (struct pt_logsink_stats){c->id, atomic_load(&c->sent), atomic_load(&c->dropped),
                                           atomic_load(&c->failed), q > 0 ? (uint64_t)q : 0};
    }
    pthread_mutex_unlock(&reg_mu);
    return n;
}

/* --------------------------------------------------------------- a sink */

struct msg {
    uint64_t wall_ms;
    uint32_t len;
    uint16_t pid_len, pkey_len;
    uint32_t count; /* messages it holds (lines of the access log) */
    uint8_t kind;
    char data[]; /* text, partition id, partition key */
};

struct cell {
    atomic_size_t seq;
    struct msg *m;
};

struct pt_logsink {
    struct pt_logsink *next; /* in `live` */
    atomic_long refs;
    char *fingerprint; /* the settings: a generation with the same ones takes this sink */
    struct ctr *ctr;
    /* settings (copied: the sink may outlive the configuration) */
    char *id;
    int type;
    char *path;
    int transport;
    char *host;
    int port;
    char *upath;
    int pri;
    char *app, *hostname;
    size_t max_frame;
    char *url, *headers;
    size_t batch;
    uint32_t flush_ms, timeout_ms;
    int retries;
    int format;
    /* the queue */
    struct cell *cells;
    size_t mask;
    atomic_size_t tail; /* producers */
    size_t head;        /* the consumer */
    atomic_size_t bytes;
    size_t max_bytes;
    int efd;
    atomic_int sleeping;
    atomic_int closing;
    uint64_t close_deadline; /* ms, once closing */
    /* the thread's */
    int fd;            /* file or socket, -1 */
    int stream;        /* the socket is a stream (octet counting) */
    uint64_t retry_at; /* ms: no reconnection before */
    unsigned reopen_seen;
    uint64_t warned_at;
    char *frame;
    struct msg **pend; /* http: the batch being filled */
    size_t npend, pend_bytes;
    uint64_t pend_since;
    struct msg *held; /* syslog: waiting for the connection */
};

static bool q_push(struct pt_logsink *s, struct msg *m)
{
    size_t pos = atomic_load_explicit(&s->tail, memory_order_relaxed);
    for (;;) {
        struct cell *c = &s->cells[pos & s->mask];
        size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)seq - (intptr_t)pos;
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&s->tail, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed)) {
                c->m = m;
                atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
                return true;
            }
        } else if (dif < 0)
            return false; /* full */
        else
            pos = atomic_load_explicit(&s->tail, memory_order_relaxed);
    }
}

static struct msg *q_pop(struct pt_logsink *s)
{
    struct cell *c = &s->cells[s->head & s->mask];
    size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
    if (seq != s->head + 1)
        return NULL;
    struct msg *m = c->m;
    atomic_store_explicit(&c->seq, s->head + s->mask + 1, memory_order_release);
    s->head++;
    atomic_fetch_sub(&s->bytes, m->len);
    atomic_fetch_sub(&s->ctr->queued, (long)m->count);
    return m;
}

static bool q_empty(struct pt_logsink *s)
{
    struct cell *c = &s->cells[s->head & s->mask];
    return atomic_load_explicit(&c->seq, memory_order_acquire) != s->head + 1;
}

static void wake(struct pt_logsink *s)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&s->sleeping, memory_order_relaxed) && atomic_exchange(&s->sleeping, 0)) {
        uint64_t one = 1;
        ssize_t n = write(s->efd, &one, sizeof(one));
        (void)n;
    }
}

static uint32_t count_lines(const char *p, size_t len)
{
    uint32_t n = 0;
    for (const char *e = p + len; (p = memchr(p, '\n', (size_t)(e - p))); p++)
        n++;
    return n;
}

bool pt_logsink_emit(struct pt_logsink *s, int kind, const char *data, size_t len, pt_str partition_id,
                     pt_str partition_key)
{
    if (!s)
        return false;
    uint32_t count = kind == PT_LOGSINK_LINES ? count_lines(data, len) : 1;
    if (!count)
        return true;
    if (partition_id.len > 1024)
        partition_id.len = pt_logsink_cut(partition_id.data, partition_id.len, 1024);
    if (partition_key.len > 1024)
        partition_key.len = pt_logsink_cut(partition_key.data, partition_key.len, 1024);
    size_t before = atomic_fetch_add(&s->bytes, len);
    struct msg *m = NULL;
    if (before + len <= s->max_bytes && len <= UINT32_MAX)
        m = malloc(sizeof(*m) + len + partition_id.len + partition_key.len);
    if (m) {
        m->wall_ms = pt_clock_wall_ms();
        m->len = (uint32_t)len;
        m->pid_len = (uint16_t)partition_id.len;
        m->pkey_len = (uint16_t)partition_key.len;
        m->count = count;
        m->kind = (uint8_t)kind;
        memcpy(m->data, data, len);
        if (partition_id.len)
            memcpy(m->data + len, partition_id.data, partition_id.len);
        if (partition_key.len)
            memcpy(m->data + len + partition_id.len, partition_key.data, partition_key.len);
        atomic_fetch_add(&s->ctr->queued, (long)count);
        if (q_push(s, m)) {
            wake(s);
            return true;
        }
        atomic_fetch_sub(&s->ctr->queued, (long)count);
        free(m);
    }
    atomic_fetch_sub(&s->bytes, len);
    atomic_fetch_add(&s->ctr->dropped, count);
    return false;
}

/* ------------------------------------------------------------- helpers */

size_t pt_logsink_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    /* s[n] is the first byte left out: when it continues a sequence, the sequence goes too */
    size_t n = max;
    for (int k = 0; k < 3 && n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80; k++)
        n--;
    if (((unsigned char)s[n] & 0xC0) == 0x80)
        n = max; /* not UTF-8 there anyway */
    return n;
}

static size_t put_field(char *out, const char *s, size_t maxlen)
{
    size_t n = 0;
    for (; s && s[n] && n < maxlen; n++) {
        unsigned char c = (unsigned char)s[n];
        out[n] = c >= 33 && c <= 126 ? (char)c : '_';
    }
    if (!n)
        out[n++] = '-';
    out[n++] = ' ';
    return n;
}

size_t pt_logsink_syslog_format(char *out, size_t max, int pri, uint64_t wall_ms, const char *hostname,
                                const char *app, int procid, const char *msgid, const char *sd_id,
                                const struct pt_logsink_sd *params, int nparams, const char *msg, size_t len)
{
    char ts[48];
    pt_log_format_time(ts, wall_ms);
    char head[512];
    size_t h = (size_t)snprintf(head, sizeof(head), "<%d>1 %s ", pri < 0 ? 0 : pri > 191 ? 191 : pri, ts);
    h += put_field(head + h, hostname, 255);
    h += put_field(head + h, app, 48);
    h += (size_t)snprintf(head + h, sizeof(head) - h, "%d ", procid);
    h += put_field(head + h, msgid, 32);
    if (h >= max)
        return 0;
    memcpy(out, head, h);
    size_t n = h;
    /* structured data, or "-" when none or when it would not fit */
    size_t sd0 = n;
    bool any = false;
    for (int i = 0; i < nparams; i++) {
        if (!params[i].value.len)
            continue;
        size_t need =
            strlen(params[i].name) + 4 + params[i].value.len * 2 + 2 + (any ? 0 : strlen(sd_id) + 1);
        if (n + need + 2 >= max) {
            any = false;
            n = sd0;
            break;
        }
        if (!any) {
            n += (size_t)sprintf(out + n, "[%s", sd_id);
            any = true;
        }
        n += (size_t)sprintf(out + n, " %s=\"", params[i].name);
        for (size_t k = 0; k < params[i].value.len; k++) {
            char c = params[i].value.data[k];
            if (c == '"' || c == '\\' || c == ']')
                out[n++] = '\\';
            out[n++] = c;
        }
        out[n++] = '"';
    }
    if (any)
        out[n++] = ']';
    else
        out[n++] = '-';
    if (len && n + 1 < max) {
        out[n++] = ' ';
        size_t take = pt_logsink_cut(msg, len, max - n);
        memcpy(out + n, msg, take);
        n += take;
    }
    return n;
}

static void json_str(struct pt_sbuf *b, const char *s, size_t len)
{
    pt_sbuf_add(b, "\"", 1);
    size_t i = 0, run = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        size_t k =
            c >= 0x20 && c != '"' && c != '\\' ? pt_utf8_seq((const unsigned char *)s + i, len - i) : 0;
        if (k) {
            i += k;
            run += k;
            continue;
        }
        pt_sbuf_add(b, s + i - run, run);
        run = 0;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            pt_sbuf_add(b, esc, 2);
        } else if (c == '\n')
            pt_sbuf_add(b, "\\n", 2);
        else if (c == '\r')
            pt_sbuf_add(b, "\\r", 2);
        else if (c == '\t')
            pt_sbuf_add(b, "\\t", 2);
        else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            pt_sbuf_add(b, esc, 6);
        } else
            pt_sbuf_add(b, "\\ufffd", 6);
        i++;
    }
    pt_sbuf_add(b, s + i - run, run);
    pt_sbuf_add(b, "\"", 1);
}

static void warn_sink(struct pt_logsink *s, const char *fmt, ...) PT_PRINTF(2, 3);
static void warn_sink(struct pt_logsink *s, const char *fmt, ...)
{
    uint64_t now = pt_clock_now_ms();
    if (s->warned_at && now - s->warned_at < 10000)
        return; /* at most one warning per logger every 10 s */
    s->warned_at = now;
    char m[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof(m), fmt, ap);
    va_end(ap);
    pt_warn("logger %s: %s", s->id, m);
}

static void done(struct pt_logsink *s, struct msg *m, bool ok)
{
    if (ok)
        atomic_fetch_add(&s->ctr->sent, m->count);
    else
        atomic_fetch_add(&s->ctr->failed, m->count);
    free(m);
}

/* ------------------------------------------------------------------ file */

static void file_deliver(struct pt_logsink *s, struct msg *m)
{
    unsigned rs = atomic_load(&reopen_serial);
    if (s->fd >= 0 && rs != s->reopen_seen) {
        close(s->fd);
        s->fd = -1;
    }
    s->reopen_seen = rs;
    if (s->fd < 0)
        s->fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (s->fd < 0) {
        warn_sink(s, "cannot open %s: %s", s->path, strerror(errno));
        done(s, m, false);
        return;
    }
    struct iovec iov[2] = {{m->data, m->len}, {"\n", 1}};
    int niov = m->kind == PT_LOGSINK_LINES ? 1 : 2;
    size_t want = m->len + (niov == 2 ? 1 : 0);
    ssize_t w;
    do
        w = writev(s->fd, iov, niov);
    while (w < 0 && errno == EINTR);
    if (w < 0 || (size_t)w != want)
        warn_sink(s, "cannot write to %s: %s", s->path, w < 0 ? strerror(errno) : "short write");
    done(s, m, w >= 0 && (size_t)w == want);
}

/* ---------------------------------------------------------------- syslog */

static void sock_close(struct pt_logsink *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* Connects within 2 s; false (and no retry for a second) when it cannot. */
static bool sock_open(struct pt_logsink *s)
{
    uint64_t now = pt_clock_now_ms();
    if (now < s->retry_at)
        return false;
    s->retry_at = now + 1000;
    if (s->transport == PT_SYSLOG_UNIX) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->upath);
        int types[2] = {SOCK_DGRAM, SOCK_STREAM};
        for (int i = 0; i < 2; i++) {
            int fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);
            if (fd < 0)
                continue;
            if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
                s->fd = fd;
                s->stream = types[i] == SOCK_STREAM;
                return true;
            }
            int e = errno;
            close(fd);
            if (e != EPROTOTYPE) {
                warn_sink(s, "cannot connect to unix://%s: %s", s->upath, strerror(e));
                return false;
            }
        }
        warn_sink(s, "cannot connect to unix://%s", s->upath);
        return false;
    }
    struct addrinfo hints = {.ai_socktype = s->transport == PT_SYSLOG_UDP ? SOCK_DGRAM : SOCK_STREAM},
                    *res = NULL;
    char port[16];
    snprintf(port, sizeof(port), "%d", s->port);
    int rc = getaddrinfo(s->host, port, &hints, &res);
    if (rc != 0) {
        warn_sink(s, "cannot resolve %s: %s", s->host, gai_strerror(rc));
        return false;
    }
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    bool ok = fd >= 0;
    if (ok && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        ok = errno == EINPROGRESS;
        if (ok) {
            struct pollfd p = {fd, POLLOUT, 0};
            int err = 0;
            socklen_t el = sizeof(err);
            ok = poll(&p, 1, 2000) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0;
            if (!ok)
                errno = err ? err : ETIMEDOUT;
        }
    }
    freeaddrinfo(res);
    if (!ok) {
        warn_sink(s, "cannot connect to %s:%d: %s", s->host, s->port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return false;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    s->fd = fd;
    s->stream = s->transport == PT_SYSLOG_TCP;
    return true;
}

static bool send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Sends one message (text p, len); false when the connection is gone (the caller keeps it). */
static bool syslog_send(struct pt_logsink *s, const struct msg *m, const char *p, size_t len, bool *sent)
{
    struct pt_logsink_sd sd[3] = {
        {"logger", {s->id, strlen(s->id)}},
        {"partitionId", {m->data + m->len, m->pid_len}},
        {"partitionKey", {m->data + m->len + m->pid_len, m->pkey_len}},
    };
    size_t n = pt_logsink_syslog_format(s->frame + 24, s->max_frame, s->pri, m->wall_ms, s->hostname, s->app,
                                        (int)getpid(), m->kind == PT_LOGSINK_LINES ? "access" : "log-to",
                                        SD_ID, sd, 3, p, len);
    char *f = s->frame + 24;
    if (s->stream) {
        char pre[24];
        int k = snprintf(pre, sizeof(pre), "%zu ", n);
        f -= k;
        memcpy(f, pre, (size_t)k);
        n += (size_t)k;
    }
    *sent = false;
    if (s->stream) {
        if (!send_all(s->fd, f, n))
            return false;
    } else {
        ssize_t w = send(s->fd, f, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == ECONNREFUSED || errno == ENOTCONN || errno == EBADF || errno == ECONNRESET))
            return false;
        if (w < 0) {
            warn_sink(s, "cannot send: %s", strerror(errno));
            return true; /* this datagram is lost (counted as failed), the socket stays */
        }
    }
    *sent = true;
    return true;
}

/* true when m is done with (sent or failed); false: keep it until the connection is back. */
static bool syslog_deliver(struct pt_logsink *s, struct msg *m)
{
    if (s->fd < 0 && !sock_open(s))
        return false;
    if (m->kind != PT_LOGSINK_LINES) {
        bool sent;
        if (!syslog_send(s, m, m->data, m->len, &sent)) {
            warn_sink(s, "the connection broke: %s; reconnecting", strerror(errno));
            sock_close(s);
            return false;
        }
        done(s, m, sent);
        return true;
    }
    /* the access log's lines: one message each; what was sent is taken off the front */
    char *p = m->data, *e = m->data + m->len;
    while (p < e) {
        char *nl = memchr(p, '\n', (size_t)(e - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(e - p);
        bool sent;
        if (!syslog_send(s, m, p, l, &sent)) {
            warn_sink(s, "the connection broke: %s; reconnecting", strerror(errno));
            sock_close(s);
            size_t left = (size_t)(e - p);
            memmove(m->data, p, left + m->pid_len + m->pkey_len);
            m->len = (uint32_t)left;
            return false;
        }
        m->count--;
        atomic_fetch_add(sent ? &s->ctr->sent : &s->ctr->failed, 1);
        p += l + (nl ? 1 : 0);
    }
    free(m);
    return true;
}

/* ------------------------------------------------------------------ http */

static void http_record(struct pt_logsink *s, struct pt_sbuf *b, const struct msg *m, const char *p,
                        size_t len)
{
    char ts[48];
    pt_log_format_time(ts, m->wall_ms);
    pt_sbuf_str(b, "{\"time\":\"");
    pt_sbuf_str(b, ts);
    pt_sbuf_str(b, "\",\"logger\":");
    json_str(b, s->id, strlen(s->id));
    pt_sbuf_str(b, m->kind == PT_LOGSINK_LINES ? ",\"source\":\"access\"" : ",\"source\":\"log-to\"");
    if (m->pid_len) {
        pt_sbuf_str(b, ",\"partitionId\":");
        json_str(b, m->data + m->len, m->pid_len);
    }
    if (m->pkey_len) {
        pt_sbuf_str(b, ",\"partitionKey\":");
        json_str(b, m->data + m->len + m->pid_len, m->pkey_len);
    }
    pt_sbuf_str(b, ",\"message\":");
    json_str(b, p, len);
    pt_sbuf_str(b, "}");
}

static uint64_t deadline_of(struct pt_logsink *s)
{
    uint64_t d = atomic_load(&s->closing) ? s->close_deadline : 0;
    uint64_t g = atomic_load(&stop_deadline);
    if (g && (!d || g < d))
        d = g;
    return d;
}

/* Sleeps ms, or until the eventfd is written (a message, or the sink asked to close). */
static void nap(struct pt_logsink *s, uint64_t ms)
{
    struct pollfd p = {s->efd, POLLIN, 0};
    poll(&p, 1, (int)ms);
    if (p.revents & POLLIN) {
        uint64_t v;
        ssize_t n = read(s->efd, &v, sizeof(v));
        (void)n;
    }
}

static void http_flush(struct pt_logsink *s)
{
    if (!s->npend)
        return;
    struct pt_sbuf b = {.first = 4096}; /* a batch of records */
    size_t count = 0;
    if (s->format == 1)
        pt_sbuf_add(&b, "[", 1);
    for (size_t i = 0; i < s->npend; i++) {
        struct msg *m = s->pend[i];
        count += m->count;
        if (m->kind != PT_LOGSINK_LINES) {
            if (s->format == 1 && b.len > 1)
                pt_sbuf_add(&b, ",", 1);
            http_record(s, &b, m, m->data, m->len);
            if (s->format == 0)
                pt_sbuf_add(&b, "\n", 1);
            continue;
        }
        for (char *p = m->data, *e = m->data + m->len; p < e;) {
            char *nl = memchr(p, '\n', (size_t)(e - p));
            size_t l = nl ? (size_t)(nl - p) : (size_t)(e - p);
            if (s->format == 1 && b.len > 1)
                pt_sbuf_add(&b, ",", 1);
            http_record(s, &b, m, p, l);
            if (s->format == 0)
                pt_sbuf_add(&b, "\n", 1);
            p += l + 1;
        }
    }
    if (s->format == 1)
        pt_sbuf_add(&b, "]", 1);
    bool ok = false;
    for (int attempt = 0; !b.failed; attempt++) {
        uint64_t now = pt_clock_now_ms(), dl = deadline_of(s);
        uint32_t t = s->timeout_ms;
        if (dl && dl <= now)
            break;
        if (dl && dl - now < t)
            t = (uint32_t)(dl - now);
        struct pt_fetch_opts o = {.timeout_ms = t,
                                  .max_body = 64 * 1024,
                                  .accept = "*/*",
                                  .cancel_fd = -1,
                                  .method = "POST",
                                  .body = b.p,
                                  .body_len = b.len,
                                  .content_type =
                                      s->format == 1 ? "application/json" : "application/x-ndjson",
                                  .headers = s->headers};
        struct pt_fetch_result r;
        char err[256] = "";
        int rc = pt_fetch_get(s->url, &o, &r, err, sizeof(err));
        int status = rc == PT_FETCH_OK ? r.status : 0;
        if (rc == PT_FETCH_OK)
            free(r.body);
        if (status >= 200 && status < 300) {
            ok = true;
            break;
        }
        bool again = status == 0 || status == 429 || status >= 500;
        if (status)
            warn_sink(s, "%s answered %d", s->url, status);
        else
            warn_sink(s, "%s: %s", s->url, err);
        if (!again || attempt >= s->retries)
            break;
        uint64_t wait = 200ULL << (attempt < 6 ? attempt : 6);
        if (wait > 10000)
            wait = 10000;
        now = pt_clock_now_ms();
        dl = deadline_of(s);
        if (dl && now + wait >= dl)
            break;
        nap(s, wait);
    }
    free(b.p);
    atomic_fetch_add(ok ? &s->ctr->sent : &s->ctr->failed, count);
    for (size_t i = 0; i < s->npend; i++)
        free(s->pend[i]);
    s->npend = 0;
    s->pend_bytes = 0;
}

static void http_take(struct pt_logsink *s, struct msg *m)
{
    if (s->npend && s->pend_bytes + m->len > HTTP_BATCH_BYTES)
        http_flush(s);
    if (!s->npend)
        s->pend_since = pt_clock_now_ms();
    s->pend[s->npend++] = m;
    s->pend_bytes += m->len;
    if (s->npend >= s->batch)
        http_flush(s);
}

/* ---------------------------------------------------------------- thread */

static void sink_free(struct pt_logsink *s)
{
    struct msg *m;
    while (s->cells && (m = q_pop(s))) {
        atomic_fetch_add(&s->ctr->dropped, m->count);
        free(m);
    }
    for (size_t i = 0; i < s->npend; i++) {
        atomic_fetch_add(&s->ctr->dropped, s->pend[i]->count);
        free(s->pend[i]);
    }
    if (s->held) {
        atomic_fetch_add(&s->ctr->dropped, s->held->count);
        free(s->held);
    }
    if (s->fd >= 0)
        close(s->fd);
    if (s->efd >= 0)
        close(s->efd);
    free(s->cells);
    free(s->pend);
    free(s->frame);
    free(s->fingerprint);
    free(s->id);
    free(s->path);
    free(s->host);
    free(s->upath);
    free(s->app);
    free(s->hostname);
    free(s->url);
    free(s->headers);
    free(s);
}

static void *sink_main(void *arg)
{
    struct pt_logsink *s = arg;
    for (;;) {
        bool closing = atomic_load(&s->closing);
        uint64_t now = pt_clock_now_ms(), dl = deadline_of(s);
        if (dl && now >= dl)
            break; /* what is left is dropped (counted) */
        /* syslog: a message waiting for its connection goes first */
        if (s->held) {
            if (!syslog_deliver(s, s->held)) {
                nap(s, 200);
                continue;
            }
            s->held = NULL;
        }
        struct msg *m;
        while (!s->held && (m = q_pop(s))) {
            if (s->type == PT_LOGGER_FILE)
                file_deliver(s, m);
            else if (s->type == PT_LOGGER_SYSLOG) {
                if (!syslog_deliver(s, m))
                    s->held = m;
            } else
                http_take(s, m);
        }
        now = pt_clock_now_ms();
        if (s->npend && (closing || now - s->pend_since >= s->flush_ms))
            http_flush(s);
        if (closing && !s->held && !s->npend && q_empty(s))
            break;
        if (s->held)
            continue;
        /* sleep until a message comes, or the batch's time */
        int timeout = closing ? 50 : 1000;
        if (s->npend) {
            uint64_t due = s->pend_since + s->flush_ms;
            timeout = due > now ? (int)PT_MIN(due - now, (uint64_t)timeout) : 0;
        }
        atomic_store(&s->sleeping, 1);
        atomic_thread_fence(memory_order_seq_cst);
        if (q_empty(s) && !atomic_load(&s->closing))
            nap(s, (uint64_t)timeout);
        atomic_store(&s->sleeping, 0);
    }
    pthread_mutex_lock(&reg_mu);
    sink_free(s);
    threads--;
    pthread_cond_broadcast(&reg_cv);
    pthread_mutex_unlock(&reg_mu);
    return NULL;
}

/* ------------------------------------------------------------ lifecycle */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static char *fingerprint_of(const struct pt_logger_cf *l)
{
    char *fp = NULL;
    int n = asprintf(&fp, "%s|%d|%lld|%llu|%s|%s|%d|%d|%s|%s|%llu|%s|%s|%lld|%u|%lld|%u|%d", l->id, l->type,
                     (long long)l->max_queue, (unsigned long long)l->max_queue_bytes,
                     l->file_path ? l->file_path : "", l->syslog_address ? l->syslog_address : "",
                     l->syslog_facility, l->syslog_severity, l->syslog_app ? l->syslog_app : "",
                     l->syslog_hostname ? l->syslog_hostname : "", (unsigned long long)l->syslog_max,
                     l->http_url ? l->http_url : "", l->http_header_text ? l->http_header_text : "",
                     (long long)l->http_batch, l->http_flush, (long long)l->http_retries, l->http_timeout,
                     l->http_format);
    return n < 0 ? NULL : fp;
}

struct pt_logsink *pt_logsink_get(const struct pt_logger_cf *l)
{
    char *fp = fingerprint_of(l);
    if (!fp)
        return NULL;
    pthread_mutex_lock(&reg_mu);
    for (struct pt_logsink *s = live; s; s = s->next) {
        if (strcmp(s->fingerprint, fp))
            continue;
        /* a sink whose last reference is being dropped (pt_logsink_put, not yet unlinked) is not
           taken back: only a count above zero goes up */
        long r = atomic_load(&s->refs);
        while (r > 0 && !atomic_compare_exchange_weak(&s->refs, &r, r + 1))
            ;
        if (r > 0) {
            pthread_mutex_unlock(&reg_mu);
            free(fp);
            return s;
        }
    }
    struct pt_logsink *s = calloc(1, sizeof(*s));
    struct ctr *c = ctr_of(l->id);
    size_t cap = 2;
    while (cap < (size_t)l->max_queue)
        cap *= 2;
    if (!s || !c)
        goto fail;
    s->efd = -1;
    s->fingerprint = fp;
    fp = NULL;
    s->ctr = c;
    atomic_init(&s->refs, 1);
    s->id = strdup(l->id);
    s->type = l->type;
    s->fd = -1;
    s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->cells = calloc(cap, sizeof(*s->cells));
    s->mask = cap - 1;
    s->max_bytes = l->max_queue_bytes;
    for (size_t i = 0; s->cells && i < cap; i++)
        atomic_init(&s->cells[i].seq, i);
    if (l->type == PT_LOGGER_FILE)
        s->path = dup_or_null(l->file_path);
    else if (l->type == PT_LOGGER_SYSLOG) {
        s->transport = l->syslog_transport;
        s->host = dup_or_null(l->syslog_host);
        s->port = l->syslog_port;
        s->upath = dup_or_null(l->syslog_path);
        s->pri = l->syslog_facility * 8 + l->syslog_severity;
        s->app = dup_or_null(l->syslog_app);
        char hn[256] = "";
        if (!l->syslog_hostname && gethostname(hn, sizeof(hn) - 1) != 0)
            hn[0] = '\0';
        s->hostname = strdup(l->syslog_hostname ? l->syslog_hostname : hn);
        s->max_frame = l->syslog_max                          ? l->syslog_max
                       : l->syslog_transport == PT_SYSLOG_TCP ? 256 * 1024
                                                              : 8192;
        s->frame = malloc(s->max_frame + 32);
    } else {
        s->url = dup_or_null(l->http_url);
        s->headers = dup_or_null(l->http_header_text);
        s->batch = (size_t)l->http_batch;
        s->flush_ms = l->http_flush;
        s->timeout_ms = l->http_timeout;
        s->retries = (int)l->http_retries;
        s->format = l->http_format;
        s->pend = calloc(s->batch, sizeof(*s->pend));
    }
    if (s->efd < 0 || !s->cells || (l->type == PT_LOGGER_SYSLOG && !s->frame) ||
        (l->type == PT_LOGGER_HTTP && !s->pend))
        goto fail;
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, sink_main, s);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        goto fail;
    char name[16];
    snprintf(name, sizeof(name), "log-%s", l->id);
    pthread_setname_np(t, name);
    threads++;
    s->next = live;
    live = s;
    pthread_mutex_unlock(&reg_mu);
    return s;
fail:
    pthread_mutex_unlock(&reg_mu);
    pt_err("logger %s: cannot start its sink", l->id);
    free(fp);
    if (s && s->ctr)
        sink_free(s);
    else
        free(s);
    return NULL;
}

void pt_logsink_put(struct pt_logsink *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    pthread_mutex_lock(&reg_mu);
    for (struct pt_logsink **pp = &live; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    s->close_deadline = pt_clock_now_ms() + PT_LOGSINK_CLOSE_MS;
    atomic_store(&s->closing, 1);
    uint64_t one = 1;
    ssize_t n = write(s->efd, &one, sizeof(one));
    (void)n;
    pthread_mutex_unlock(&reg_mu);
}

void pt_logsink_reopen(void)
{
    atomic_fetch_add(&reopen_serial, 1);
}

void pt_logsink_shutdown(uint32_t ms)
{
    uint64_t dl = pt_clock_now_ms() + ms;
    atomic_store(&stop_deadline, dl);
    pthread_mutex_lock(&reg_mu);
    while (threads > 0) {
        uint64_t now = pt_clock_now_ms();
        if (now >= dl + 100)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&reg_cv, &reg_mu, &ts);
    }
    int left = threads;
    pthread_mutex_unlock(&reg_mu);
    if (left)
        pt_warn("%d logger%s did not finish delivering in time", left, left == 1 ? "" : "s");
}
