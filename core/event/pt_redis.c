/*
 * pt_redis -- the external cache's client (see pt_redis.h).
 */
#include "event/pt_redis.h"

#include "base/pt_log.h"
#include "event/pt_io.h"
#include "event/pt_tls.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* Bytes that may wait for the connection (queued while connecting, or not yet taken by the
   socket): past it stores are skipped, so a slow Redis cannot make the gateway hoard memory.  At
   least 16 MiB, and room for two of the largest values (out_max): every value cache.maxEntry
   admits can be sent. */
#define OUT_MAX (16u << 20)

uint64_t pt_redis_out_max(uint64_t max_entry)
{
    /* a SET: the key (at most 8 KiB and the prefix), the value, its framing and EX */
    uint64_t two = 2 * (max_entry + 8192 + 256);
    return two > OUT_MAX ? two : OUT_MAX;
}

/* ------------------------------------------------------------- protocol */

/* An optional '-' and 1..19 digits. */
static bool parse_int(const char *p, size_t n, int64_t *out)
{
    bool neg = n && p[0] == '-';
    size_t i = neg;
    if (i == n || n - i > 18)
        return false;
    int64_t v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    *out = neg ? -v : v;
    return true;
}

ssize_t pt_redis_parse(const char *p, size_t n, size_t max_bulk, struct pt_redis_reply *r)
{
    memset(r, 0, sizeof(*r));
    if (!n)
        return 0;
    char t = p[0];
    if (t != '+' && t != '-' && t != ':' && t != '$') {
        r->str = t == '*' ? "an array reply" : "an unknown reply type";
        return -1;
    }
    r->type = t;
    size_t linemax = t == '+' || t == '-' ? PT_REDIS_LINE_MAX : 20;
    size_t i = 1;
    while (i < n && i <= linemax && p[i] != '\r')
        i++;
    if (i > linemax) {
        r->str = "a reply line too long";
        return -1;
    }
    if (i + 1 >= n)
        return 0; /* the line (or its LF) is not all here yet */
    if (p[i + 1] != '\n') {
        r->str = "a CR without LF";
        return -1;
    }
    const char *line = p + 1;
    size_t len = i - 1;
    if (memchr(line, '\n', len)) {
        r->str = "an LF inside a line";
        return -1;
    }
    size_t head = i + 2;
    int64_t v;
    switch (t) {
    case '+':
    case '-':
        r->str = line;
        r->len = len;
        return (ssize_t)head;
    case ':':
        if (!parse_int(line, len, &v)) {
            r->str = "an integer reply that is not a number";
            return -1;
        }
        r->integer = v;
        return (ssize_t)head;
    default: /* '$' */
        if (!parse_int(line, len, &v) || v < -1) {
            r->str = "a bulk length that is not a number";
            return -1;
        }
        if (v == -1)
            return (ssize_t)head; /* nil: str stays NULL */
        if ((uint64_t)v > PT_REDIS_BULK_ABSURD) {
            r->str = "a bulk length past anything a cache could hold";
            return -1;
        }
        if ((uint64_t)v > max_bulk) {
            /* larger than we keep, but well formed: the head is read, the bulk and its CRLF are
               the caller's to discard as they come (never buffered) */
            r->skip = (size_t)v + 2;
            return (ssize_t)head;
        }
        size_t total = head + (size_t)v + 2;
        if (n < total) {
            r->need = total;
            return 0;
        }
        if (p[total - 2] != '\r' || p[total - 1] != '\n') {
            r->str = "a bulk reply without its CRLF";
            return -1;
        }
        r->str = p + head;
        r->len = (size_t)v;
        return (ssize_t)total;
    }
}

void pt_redis_encode(struct evbuffer *out, int argc, const pt_bytes *argv)
{
    evbuffer_add_printf(out, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        evbuffer_add_printf(out, "$%zu\r\n", argv[i].len);
        evbuffer_add(out, argv[i].data, argv[i].len);
        evbuffer_add(out, "\r\n", 2);
    }
}

/* -------------------------------------------------------------- counters */

struct wstats {
    _Atomic uint64_t hits, misses, stores, removals, skipped;
    _Atomic uint64_t timeouts, conn_errors, protocol_errors, error_replies, auth_errors, connects;
    _Atomic uint64_t too_large;
    _Atomic uint64_t up;
} __attribute__((aligned(64)));

/* Per worker, written only by that worker (no read-modify-write), summed by readers; never freed,
   so a scrape during a stop reads nothing stale. */
static struct wstats wstats[PT_REDIS_MAX_WORKERS];

static void bump(_Atomic uint64_t *s)
{
    atomic_store_explicit(s, atomic_load_explicit(s, memory_order_relaxed) + 1, memory_order_relaxed);
}

void pt_redis_stats(struct pt_redis_stats *st)
{
    memset(st, 0, sizeof(*st));
    for (int i = 0; i < PT_REDIS_MAX_WORKERS; i++) {
        struct wstats *w = &wstats[i];
        st->hits += atomic_load_explicit(&w->hits, memory_order_relaxed);
        st->misses += atomic_load_explicit(&w->misses, memory_order_relaxed);
        st->stores += atomic_load_explicit(&w->stores, memory_order_relaxed);
        st->removals += atomic_load_explicit(&w->removals, memory_order_relaxed);
        st->skipped += atomic_load_explicit(&w->skipped, memory_order_relaxed);
        st->timeouts += atomic_load_explicit(&w->timeouts, memory_order_relaxed);
        st->conn_errors += atomic_load_explicit(&w->conn_errors, memory_order_relaxed);
        st->protocol_errors += atomic_load_explicit(&w->protocol_errors, memory_order_relaxed);
        st->error_replies += atomic_load_explicit(&w->error_replies, memory_order_relaxed);
        st->auth_errors += atomic_load_explicit(&w->auth_errors, memory_order_relaxed);
        st->connects += atomic_load_explicit(&w->connects, memory_order_relaxed);
        st->too_large += atomic_load_explicit(&w->too_large, memory_order_relaxed);
        st->connections += atomic_load_explicit(&w->up, memory_order_relaxed);
    }
}

/* ------------------------------------------------------------- settings */

struct rconf {
    int refs;  /* under conf_mu: the current pointer's and each worker's */
    char *sig; /* every setting as text: a reload that changes none keeps the connections */
    char *host, *user, *pass, *sni, *ca_file;
    int port, db;
    bool tls, verify, ok;
    uint32_t connect_ms, command_ms;
    uint64_t max_entry;
    struct sockaddr_storage sa;
    socklen_t salen;
    SSL_CTX *ctx;
};

static pthread_mutex_t conf_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rconf *conf_cur;
static _Atomic uint64_t conf_version = 1;

static void conf_free(struct rconf *r)
{
    if (!r)
        return;
    if (r->ctx)
        SSL_CTX_free(r->ctx);
    free(r->sig);
    free(r->host);
    free(r->user);
    free(r->pass);
    free(r->sni);
    free(r->ca_file);
    free(r);
}

static void conf_unref(struct rconf *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&conf_mu);
    bool last = --r->refs == 0;
    pthread_mutex_unlock(&conf_mu);
    if (last)
        conf_free(r);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static char *signature(const struct pt_cache_cf *cf)
{
    char *s = NULL;
    if (asprintf(&s, "%s|%s|%s|%s|%s|%d|%u|%u|%llu", cf->redis, cf->username ? cf->username : "",
                 cf->password ? cf->password : "", cf->ca_file ? cf->ca_file : "",
                 cf->server_name ? cf->server_name : "", (int)cf->verify, (unsigned)cf->connect_timeout,
                 (unsigned)cf->command_timeout, (unsigned long long)cf->max_entry) < 0)
        return NULL;
    return s;
}

static int (*resolver)(const char *, const char *, const struct addrinfo *, struct addrinfo **) = getaddrinfo;

void pt_redis_set_resolver(int (*fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **))
{
    resolver = fn ? fn : getaddrinfo;
}

/* Resolves r's host and builds its TLS context: r->ok, or false with a message.  Blocks for the
   resolver: called on the control thread (configure) or the retry thread, never on a worker. */
static bool resolve(struct rconf *r, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%d", r->port);
    int rc = resolver(r->host, port, &hints, &ai);
    if (rc || !ai || ai->ai_addrlen > sizeof(r->sa)) {
        snprintf(err, errlen, "Redis host '%s' does not resolve (%s): the external cache is down", r->host,
                 rc ? gai_strerror(rc) : "no address");
        if (ai)
            freeaddrinfo(ai);
        return false;
    }
    memcpy(&r->sa, ai->ai_addr, ai->ai_addrlen);
    r->salen = (socklen_t)ai->ai_addrlen;
    freeaddrinfo(ai);
    if (r->tls) {
        struct pt_errors errs = {0};
        r->ctx = pt_tls_client_ctx(r->ca_file, r->verify, NULL, &errs);
        if (!r->ctx)
            snprintf(err, errlen, "Redis TLS: %s: the external cache is down",
                     errs.n ? errs.msgs[0] : "no context");
        pt_node_errors_clear(&errs);
        if (!r->ctx)
            return false;
    }
    r->ok = true;
    return true;
}

/* Makes r the node's settings (the workers take them at their next turn). */
static void publish(struct rconf *r)
{
    pthread_mutex_lock(&conf_mu);
    struct rconf *old = conf_cur;
    conf_cur = r;
    atomic_fetch_add(&conf_version, 1);
    pthread_mutex_unlock(&conf_mu);
    conf_unref(old);
}

bool pt_redis_configure(const struct pt_cache_cf *cf, char *err, size_t errlen)
{
    if (errlen)
        err[0] = '\0';
    char *sig = cf->redis ? signature(cf) : NULL;
    pthread_mutex_lock(&conf_mu);
    /* settings that did not resolve are never "the same": each reload tries the name again */
    bool same = (!cf->redis && !conf_cur) || (sig && conf_cur && conf_cur->ok && !strcmp(conf_cur->sig, sig));
    pthread_mutex_unlock(&conf_mu);
    if (same) {
        free(sig);
        return true;
    }
    struct rconf *r = NULL;
    bool ok = true;
    if (cf->redis) {
        r = calloc(1, sizeof(*r));
        if (!r) {
            free(sig);
            snprintf(err, errlen, "out of memory");
            return false;
        }
        r->sig = sig;
        r->host = strdup(cf->host);
        r->user = dup_or_null(cf->username);
        r->pass = dup_or_null(cf->password);
        r->sni = strdup(cf->server_name ? cf->server_name : cf->host);
        r->ca_file = dup_or_null(cf->ca_file);
        r->port = cf->port;
        r->db = cf->db;
        r->tls = cf->tls;
        r->verify = cf->verify;
        r->connect_ms = cf->connect_timeout;
        r->command_ms = cf->command_timeout;
        r->max_entry = cf->max_entry;
        r->refs = 1;
        /* resolved here, on the control thread, so that no worker ever waits for a name */
        ok = r->host && r->sni && resolve(r, err, errlen);
    } else
        free(sig);
    publish(r);
    return ok;
}

/* ---- retrying a name that did not resolve ---- */

static _Atomic bool retry_running;
static uint64_t retry_version, retry_next_ms; /* pt_redis_retry's (the control thread's) */
static uint32_t retry_wait_ms;

/* A copy of r's settings, not yet resolved (NULL when out of memory). */
static struct rconf *conf_clone(const struct rconf *o)
{
    struct rconf *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    *r = (struct rconf){.refs = 1,
                        .sig = strdup(o->sig),
                        .host = strdup(o->host),
                        .user = dup_or_null(o->user),
                        .pass = dup_or_null(o->pass),
                        .sni = strdup(o->sni),
                        .ca_file = dup_or_null(o->ca_file),
                        .port = o->port,
                        .db = o->db,
                        .tls = o->tls,
                        .verify = o->verify,
                        .connect_ms = o->connect_ms,
                        .command_ms = o->command_ms,
                        .max_entry = o->max_entry};
    if (!r->sig || !r->host || !r->sni || (o->user && !r->user) || (o->pass && !r->pass) ||
        (o->ca_file && !r->ca_file)) {
        conf_free(r);
        return NULL;
    }
    return r;
}

/* The retry thread: resolves a copy of the settings that failed, and publishes it when it
   resolves and those settings are still the node's (a reload meanwhile wins). */
static void *retry_main(void *arg)
{
    struct rconf *old = arg; /* a reference of ours */
    struct rconf *r = conf_clone(old);
    char err[512];
    bool ok = r && resolve(r, err, sizeof(err));
    bool taken = false;
    char msg[300] = "";
    if (ok) { /* said from a copy: once published, r may be replaced and freed by a reload */
        snprintf(msg, sizeof(msg), "cache: Redis host '%s' resolves now: the external cache is used again",
                 r->host);
        pthread_mutex_lock(&conf_mu);
        if (conf_cur == old) {
            conf_cur = r;
            atomic_fetch_add(&conf_version, 1);
            old->refs--; /* conf_cur's; ours is dropped below, never the last one here */
            taken = true;
        }
        pthread_mutex_unlock(&conf_mu);
    }
    if (taken)
        pt_info("%s", msg);
    else
        conf_free(r);
    conf_unref(old);
    atomic_store(&retry_running, false);
    return NULL;
}

bool pt_redis_retry(uint64_t now_ms)
{
    pthread_mutex_lock(&conf_mu);
    struct rconf *r = conf_cur;
    bool down = r && !r->ok;
    uint64_t v = atomic_load(&conf_version);
    if (down && v != retry_version) {
        /* settings that failed just now (at a reload or the last retry): try again after a while */
        retry_version = v;
        retry_wait_ms = PT_REDIS_RETRY_MIN_MS;
        retry_next_ms = now_ms + retry_wait_ms;
    }
    bool go = down && now_ms >= retry_next_ms && !atomic_load(&retry_running);
    if (go) {
        r->refs++;
        retry_wait_ms = PT_MIN(retry_wait_ms * 2, PT_REDIS_RETRY_MAX_MS);
        retry_next_ms = now_ms + retry_wait_ms;
    }
    pthread_mutex_unlock(&conf_mu);
    if (!go)
        return false;
    atomic_store(&retry_running, true);
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    bool started = pthread_create(&t, &at, retry_main, r) == 0;
    pthread_attr_destroy(&at);
    if (!started) {
        atomic_store(&retry_running, false);
        conf_unref(r);
    }
    return started;
}

bool pt_redis_retrying(void)
{
    return atomic_load(&retry_running);
}

bool pt_redis_resolved(void)
{
    pthread_mutex_lock(&conf_mu);
    bool ok = conf_cur && conf_cur->ok;
    pthread_mutex_unlock(&conf_mu);
    return ok;
}

bool pt_redis_configured(void)
{
    pthread_mutex_lock(&conf_mu);
    bool on = conf_cur != NULL;
    pthread_mutex_unlock(&conf_mu);
    return on;
}

void pt_redis_shutdown(void)
{
    pthread_mutex_lock(&conf_mu);
    struct rconf *old = conf_cur;
    conf_cur = NULL;
    pthread_mutex_unlock(&conf_mu);
    conf_unref(old);
}

/* ---------------------------------------------------------------- client */

enum { ST_DOWN, ST_CONNECTING, ST_UP };
enum { CMD_GET, CMD_SET, CMD_DEL, CMD_AUTH, CMD_SELECT };

struct cmd {
    struct cmd *next;
    int kind;
    uint64_t deadline;  /* answer by then (lookups) */
    uint64_t sent_ms;   /* 0 while not written to the connection */
    pt_redis_get_cb cb; /* NULL once answered or cancelled */
    void *arg;
};

struct client {
    struct event_base *base;
    int worker;
    struct wstats *st;
    struct rconf *conf;
    uint64_t version;
    int state;
    struct pt_io *io;
    struct evbuffer *pending; /* commands asked while connecting */
    struct cmd *head, *tail;  /* in the order their answers come */
    int ncmds;
    int handshake; /* AUTH / SELECT answers still due */
    size_t skip;   /* bytes of a too large bulk (and its CRLF) still to be discarded */
    uint64_t connect_deadline, next_attempt;
    uint32_t backoff;
    bool was_down;
    int dispatching; /* inside a reply's callback: the settings are not changed under it */
    struct event *timer;
    uint64_t armed;            /* the timer's deadline; 0 when not armed */
    struct event *defer;       /* runs answered commands' callbacks from the loop */
    struct cmd *dead, **dtail; /* ... these */
};

static struct client *clients[PT_REDIS_MAX_WORKERS];

static _Atomic uint64_t last_down_log, last_up_log;

/* At most one line every PT_REDIS_LOG_MS of each kind across the node. */
static bool log_allowed(_Atomic uint64_t *last)
{
    uint64_t now = pt_clock_now_ms(), prev = atomic_load_explicit(last, memory_order_relaxed);
    if (prev && now - prev < PT_REDIS_LOG_MS)
        return false;
    return atomic_compare_exchange_strong(last, &prev, now ? now : 1);
}

static void log_down(struct client *c, const char *fmt, ...) PT_PRINTF(2, 3);
static void log_down(struct client *c, const char *fmt, ...)
{
    c->was_down = true;
    if (!log_allowed(&last_down_log))
        return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pt_warn("redis %s:%d: %s; lookups miss and stores are skipped while it is down (said at most every %d s)",
            c->conf ? c->conf->host : "?", c->conf ? c->conf->port : 0, msg, PT_REDIS_LOG_MS / 1000);
}

static void arm_at(struct client *c, uint64_t t)
{
    if (!t || (c->armed && c->armed <= t))
        return;
    uint64_t now = pt_clock_now_ms(), d = t > now ? t - now : 0;
    struct timeval tv = {(time_t)(d / 1000), (suseconds_t)((d % 1000) * 1000)};
    event_base_update_cache_time(c->base);
    evtimer_add(c->timer, &tv);
    c->armed = t;
}

/* Answers a command with a miss from the event loop (never inside the caller's call). */
static void answer_later(struct client *c, struct cmd *cmd)
{
    cmd->next = NULL;
    *c->dtail = cmd;
    c->dtail = &cmd->next;
    event_active(c->defer, EV_TIMEOUT, 0);
}

static void on_defer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct client *c = arg;
    struct cmd *cmd = c->dead;
    c->dead = NULL;
    c->dtail = &c->dead;
    while (cmd) {
        struct cmd *next = cmd->next;
        if (cmd->cb) {
            bump(&c->st->misses);
            cmd->cb(cmd->arg, 0, (pt_bytes){"", 0});
        }
        free(cmd);
        cmd = next;
    }
}

static void set_up(struct client *c, bool up)
{
    atomic_store_explicit(&c->st->up, up ? 1 : 0, memory_order_relaxed);
}

/* The connection is gone or not to be trusted: every command waiting is a miss, and the next one
   connects again after the backoff (none after a quiet close by the server of an idle
   connection, nor after a change of settings). */
static void drop_conn(struct client *c, bool backoff)
{
    if (c->io) {
        pt_io_free(c->io);
        c->io = NULL;
    }
    evbuffer_drain(c->pending, evbuffer_get_length(c->pending));
    struct cmd *cmd = c->head;
    c->head = c->tail = NULL;
    c->ncmds = 0;
    c->handshake = 0;
    c->skip = 0;
    while (cmd) {
        struct cmd *next = cmd->next;
        answer_later(c, cmd);
        cmd = next;
    }
    c->state = ST_DOWN;
    set_up(c, false);
    uint64_t now = pt_clock_now_ms();
    if (backoff) {
        c->next_attempt = now + c->backoff;
        c->backoff = c->backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff * 2;
    } else
        c->next_attempt = now;
}

static void on_io(struct pt_io *io, int what, void *arg);

/* Writes AUTH and SELECT first, then what was asked while connecting. */
static void on_connected(struct client *c)
{
    struct rconf *r = c->conf;
    struct evbuffer *out = c->io->out;
    struct cmd *hs[2];
    int nhs = 0;
    uint64_t now = pt_clock_now_ms();
    if (r->pass) {
        pt_bytes a[3] = {{"AUTH", 4}};
        int n = 1;
        if (r->user)
            a[n++] = (pt_bytes){r->user, strlen(r->user)};
        a[n++] = (pt_bytes){r->pass, strlen(r->pass)};
        pt_redis_encode(out, n, a);
        hs[nhs++] = calloc(1, sizeof(struct cmd));
        if (hs[nhs - 1])
            hs[nhs - 1]->kind = CMD_AUTH;
    }
    if (r->db) {
        char db[16];
        int n = snprintf(db, sizeof(db), "%d", r->db);
        pt_bytes a[2] = {{"SELECT", 6}, {db, (size_t)n}};
        pt_redis_encode(out, 2, a);
        hs[nhs++] = calloc(1, sizeof(struct cmd));
        if (hs[nhs - 1])
            hs[nhs - 1]->kind = CMD_SELECT;
    }
    for (int i = nhs - 1; i >= 0; i--) {
        if (!hs[i]) {
            for (int k = 0; k < nhs; k++)
                free(hs[k]);
            drop_conn(c, true);
            return;
        }
    }
    for (int i = nhs - 1; i >= 0; i--) {
        hs[i]->next = c->head;
        c->head = hs[i];
        if (!c->tail)
            c->tail = hs[i];
        c->ncmds++;
    }
    c->handshake = nhs;
    evbuffer_add_buffer(out, c->pending);
    for (struct cmd *x = c->head; x; x = x->next)
        x->sent_ms = now;
    c->state = ST_UP;
    pt_io_flush(c->io);
    if (c->head)
        arm_at(c, now + (nhs ? r->connect_ms : r->command_ms));
    if (!nhs) {
        bump(&c->st->connects);
        set_up(c, true);
        c->backoff = BACKOFF_MIN_MS;
        if (c->was_down && log_allowed(&last_up_log))
            pt_info("redis %s:%d: reachable again", r->host, r->port);
        c->was_down = false;
    }
}

/* A reply for the oldest command.  false when the connection was dropped. */
static bool on_reply(struct client *c, struct cmd *cmd, const struct pt_redis_reply *rp)
{
    struct rconf *r = c->conf;
    switch (cmd->kind) {
    case CMD_AUTH:
    case CMD_SELECT:
        if (rp->type != '+') {
            bump(cmd->kind == CMD_AUTH ? &c->st->auth_errors : &c->st->error_replies);
            log_down(c, "%s refused: %.*s", cmd->kind == CMD_AUTH ? "AUTH" : "SELECT",
                     (int)PT_MIN(rp->len, 120), rp->str ? rp->str : "");
            drop_conn(c, true);
            return false;
        }
        if (--c->handshake == 0) {
            bump(&c->st->connects);
            set_up(c, true);
            c->backoff = BACKOFF_MIN_MS;
            if (c->was_down && log_allowed(&last_up_log))
                pt_info("redis %s:%d: reachable again", r->host, r->port);
            c->was_down = false;
        }
        return true;
    case CMD_GET:
        if (rp->type == '-')
            bump(&c->st->error_replies);
        if (cmd->cb) {
            bool hit = rp->type == '$' && rp->str;
            bump(hit ? &c->st->hits : &c->st->misses);
            pt_redis_get_cb cb = cmd->cb;
            cmd->cb = NULL;
            c->dispatching++;
            cb(cmd->arg, hit, hit ? (pt_bytes){rp->str, rp->len} : (pt_bytes){"", 0});
            c->dispatching--;
        }
        return true;
    default: /* SET, DEL */
        if (rp->type == '-')
            bump(&c->st->error_replies);
        return true;
    }
}

/* Throws away what arrived of a too large bulk, checking the CRLF that ends it.  false when that
   CRLF is not there. */
static bool discard(struct client *c, struct evbuffer *in)
{
    size_t avail = evbuffer_get_length(in);
    if (c->skip > 2) {
        size_t n = PT_MIN(avail, c->skip - 2);
        evbuffer_drain(in, n);
        c->skip -= n;
        avail -= n;
    }
    while (c->skip && c->skip <= 2 && avail) { /* at most twice */
        char ch;
        evbuffer_remove(in, &ch, 1);
        if (ch != (c->skip == 2 ? '\r' : '\n'))
            return false;
        c->skip--;
        avail--;
    }
    return true;
}

static void on_readable(struct client *c)
{
    struct pt_io *io = c->io;
    struct evbuffer *in = io->in;
    /* each turn takes a reply's bytes off the input: bounded by what arrived */
    for (;;) {
        if (c->skip) {
            if (!discard(c, in)) {
                bump(&c->st->protocol_errors);
                log_down(c, "a broken answer (a bulk reply without its CRLF)");
                drop_conn(c, true);
                return;
            }
            if (c->skip)
                return; /* the rest of it has not come yet */
        }
        size_t avail = evbuffer_get_length(in);
        if (!avail)
            return;
        size_t look = PT_MIN(avail, (size_t)PT_REDIS_LINE_MAX + 2);
        const char *p = (const char *)evbuffer_pullup(in, (ssize_t)look);
        struct pt_redis_reply rp;
        ssize_t k = pt_redis_parse(p, look, c->conf->max_entry, &rp);
        if (k == 0 && rp.need && rp.need <= avail) {
            p = (const char *)evbuffer_pullup(in, (ssize_t)rp.need);
            k = p ? pt_redis_parse(p, rp.need, c->conf->max_entry, &rp) : -1;
        }
        if (k == 0)
            return;
        struct cmd *cmd = c->head;
        if (k < 0 || !cmd) {
            bump(&c->st->protocol_errors);
            log_down(c, "a broken answer (%s)", k < 0 ? rp.str : "a reply nobody asked for");
            drop_conn(c, true);
            return;
        }
        c->head = cmd->next;
        if (!c->head)
            c->tail = NULL;
        c->ncmds--;
        if (rp.skip)
            bump(&c->st->too_large); /* answered as nil: a miss, the connection stays */
        bool alive = on_reply(c, cmd, &rp);
        free(cmd);
        if (!alive || c->io != io)
            return; /* dropped (in or under the callback): the input went with it */
        evbuffer_drain(in, (size_t)k);
        c->skip = rp.skip;
    }
}

static void on_io(struct pt_io *io, int what, void *arg)
{
    struct client *c = arg;
    if (c->io != io)
        return;
    if (what & PT_IO_CONNECTED) {
        on_connected(c);
        if (c->io != io)
            return;
    }
    if (what & PT_IO_READ) {
        on_readable(c);
        if (c->io != io)
            return;
    }
    if (what & (PT_IO_ERROR | PT_IO_EOF | PT_IO_HUP)) {
        bool quiet = !(what & PT_IO_ERROR) && !c->head && c->state == ST_UP;
        if (!quiet) {
            bump(&c->st->conn_errors);
            log_down(c, "%s", what & PT_IO_ERROR ? pt_io_errmsg(io) : "the server closed the connection");
        }
        drop_conn(c, !quiet);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct client *c = arg;
    c->armed = 0;
    uint64_t now = pt_clock_now_ms(), next = 0;
    struct rconf *r = c->conf;
    /* lookups past their deadline: a miss now, one at a time, looked for from the head again after
       each callback (it may cancel others, or ask again); they keep their place for their answer */
    bool late = false;
    for (int guard = 0; guard < 2 * PT_REDIS_QUEUE_MAX; guard++) {
        struct cmd *x = c->head;
        while (x && !(x->cb && x->deadline <= now))
            x = x->next;
        if (!x)
            break;
        pt_redis_get_cb cb = x->cb;
        x->cb = NULL;
        bump(&c->st->timeouts);
        bump(&c->st->misses);
        late = true;
        c->dispatching++;
        cb(x->arg, 0, (pt_bytes){"", 0});
        c->dispatching--;
    }
    for (struct cmd *x = c->head; x; x = x->next)
        if (x->cb && (!next || x->deadline < next))
            next = x->deadline;
    r = c->conf;
    if (c->state == ST_CONNECTING && c->connect_deadline <= now) {
        bump(&c->st->conn_errors);
        log_down(c, "no connection within cache.connectTimeout (%u ms)", r->connect_ms);
        drop_conn(c, true);
        return;
    }
    if (c->state == ST_UP && c->head && c->head->sent_ms) {
        uint64_t limit = c->head->sent_ms + (c->handshake ? r->connect_ms : r->command_ms);
        if (limit <= now) {
            if (!late)
                bump(&c->st->timeouts);
            log_down(c, "no answer within cache.commandTimeout (%u ms)", r->command_ms);
            drop_conn(c, true);
            return;
        }
        if (!next || limit < next)
            next = limit;
    }
    if (c->state == ST_CONNECTING && (!next || c->connect_deadline < next))
        next = c->connect_deadline;
    arm_at(c, next);
}

static void client_free(struct client *c)
{
    if (c->io)
        pt_io_free(c->io);
    struct cmd *lists[2] = {c->head, c->dead};
    for (int i = 0; i < 2; i++)
        for (struct cmd *x = lists[i], *next; x; x = next) {
            next = x->next;
            free(x);
        }
    if (c->timer)
        event_free(c->timer);
    if (c->defer)
        event_free(c->defer);
    if (c->pending)
        evbuffer_free(c->pending);
    set_up(c, false);
    conf_unref(c->conf);
    free(c);
}

/* The worker's client, with the node's current settings. */
static struct client *client_of(struct event_base *base, int worker)
{
    if (worker < 0 || worker >= PT_REDIS_MAX_WORKERS)
        return NULL;
    struct client *c = clients[worker];
    if (!c) {
        c = calloc(1, sizeof(*c));
        if (!c)
            return NULL;
        c->base = base;
        c->worker = worker;
        c->st = &wstats[worker];
        c->backoff = BACKOFF_MIN_MS;
        c->dtail = &c->dead;
        c->pending = evbuffer_new();
        c->timer = evtimer_new(base, on_timer, c);
        c->defer = event_new(base, -1, 0, on_defer, c);
        if (!c->pending || !c->timer || !c->defer) {
            client_free(c);
            return NULL;
        }
        clients[worker] = c;
    }
    uint64_t v = atomic_load_explicit(&conf_version, memory_order_acquire);
    if (c->version != v && !c->dispatching) {
        /* new settings: the old connection is closed, the next command makes a new one */
        drop_conn(c, false);
        c->backoff = BACKOFF_MIN_MS;
        c->was_down = false;
        conf_unref(c->conf);
        pthread_mutex_lock(&conf_mu);
        c->conf = conf_cur;
        if (c->conf)
            c->conf->refs++;
        c->version = atomic_load(&conf_version);
        pthread_mutex_unlock(&conf_mu);
    }
    return c;
}

/* Ready to take a command: connected, or connecting (the command waits).  Starts a connection
   when the backoff allows. */
static bool usable(struct client *c)
{
    if (!c || !c->conf || !c->conf->ok)
        return false;
    if (c->state != ST_DOWN)
        return c->ncmds < PT_REDIS_QUEUE_MAX;
    uint64_t now = pt_clock_now_ms();
    if (now < c->next_attempt)
        return false;
    struct rconf *r = c->conf;
    if (r->tls) {
        SSL *ssl = pt_tls_client_ssl(r->ctx, r->sni, r->verify);
        c->io = ssl ? pt_io_tls_connect(c->base, (struct sockaddr *)&r->sa, r->salen, ssl, on_io, c) : NULL;
    } else
        c->io = pt_io_connect(c->base, (struct sockaddr *)&r->sa, r->salen, on_io, c);
    if (!c->io) {
        bump(&c->st->conn_errors);
        drop_conn(c, true);
        return false;
    }
    pt_io_read(c->io, true);
    c->state = ST_CONNECTING;
    c->connect_deadline = now + r->connect_ms;
    arm_at(c, c->connect_deadline);
    return true;
}

/* Where a command's bytes go: the connection, or the queue while connecting; NULL when that is
   full. */
static struct evbuffer *out_of(struct client *c, size_t more)
{
    struct evbuffer *out = c->state == ST_UP ? c->io->out : c->pending;
    return evbuffer_get_length(out) + more > pt_redis_out_max(c->conf->max_entry) ? NULL : out;
}

static struct cmd *push_cmd(struct client *c, int kind)
{
    struct cmd *cmd = calloc(1, sizeof(*cmd));
    if (!cmd)
        return NULL;
    uint64_t now = pt_clock_now_ms();
    cmd->kind = kind;
    cmd->deadline = now + c->conf->command_ms;
    cmd->sent_ms = c->state == ST_UP ? now : 0;
    if (c->tail)
        c->tail->next = cmd;
    else
        c->head = cmd;
    c->tail = cmd;
    c->ncmds++;
    if (c->state == ST_UP)
        pt_io_flush(c->io);
    arm_at(c, cmd->deadline); /* also while connecting: a lookup never waits past commandTimeout */
    return cmd;
}

/* "portico:" + key, in a buffer of the caller's */
static bool prefixed(pt_bytes key, char *buf, size_t cap, pt_bytes *out)
{
    size_t p = sizeof(PT_REDIS_KEY_PREFIX) - 1;
    if (!key.len || key.len + p > cap)
        return false;
    memcpy(buf, PT_REDIS_KEY_PREFIX, p);
    memcpy(buf + p, key.data, key.len);
    *out = (pt_bytes){buf, key.len + p};
    return true;
}

#define KEY_CAP (8192 + 16)

int pt_redis_get(struct event_base *base, int worker, pt_bytes key, pt_redis_get_cb cb, void *arg,
                 void **handle)
{
    struct client *c = client_of(base, worker);
    char kb[KEY_CAP];
    pt_bytes k;
    struct evbuffer *out = NULL;
    /* no cb: nobody could take the answer, so nothing is asked (a miss now, as when down) */
    if (!cb || !usable(c) || !prefixed(key, kb, sizeof(kb), &k) || !(out = out_of(c, k.len + 32))) {
        if (c) {
            bump(&c->st->skipped);
            bump(&c->st->misses);
        }
        return 0;
    }
    pt_bytes a[2] = {{"GET", 3}, k};
    pt_redis_encode(out, 2, a);
    struct cmd *cmd = push_cmd(c, CMD_GET);
    if (!cmd) {
        /* the bytes are queued: the answer will find no command, so the connection must go */
        drop_conn(c, true);
        bump(&c->st->misses);
        return 0;
    }
    cmd->cb = cb;
    cmd->arg = arg;
    *handle = cmd;
    return 1;
}

void pt_redis_cancel(void *handle)
{
    if (handle)
        ((struct cmd *)handle)->cb = NULL;
}

/* A command whose answer nobody waits for (SET, DEL). */
static int send_simple(struct client *c, int kind, int argc, pt_bytes *a, size_t size)
{
    struct evbuffer *out = NULL;
    if (!usable(c) || !(out = out_of(c, size))) {
        if (c)
            bump(&c->st->skipped);
        return -1;
    }
    pt_redis_encode(out, argc, a);
    if (!push_cmd(c, kind)) {
        /* the bytes are queued: the answer would find no command, so the connection must go */
        drop_conn(c, true);
        return -1;
    }
    bump(kind == CMD_SET ? &c->st->stores : &c->st->removals);
    return 0;
}

int pt_redis_set(struct event_base *base, int worker, pt_bytes key, pt_bytes value, uint32_t ttl_s)
{
    char kb[KEY_CAP], ttl[16];
    pt_bytes k;
    struct client *c = client_of(base, worker);
    if (!c || !c->conf || value.len > c->conf->max_entry || !prefixed(key, kb, sizeof(kb), &k)) {
        if (c)
            bump(&c->st->skipped);
        return -1;
    }
    int n = snprintf(ttl, sizeof(ttl), "%u", (unsigned)ttl_s);
    pt_bytes a[5] = {{"SET", 3}, k, value, {"EX", 2}, {ttl, (size_t)n}};
    return send_simple(c, CMD_SET, ttl_s ? 5 : 3, a, k.len + value.len + 64);
}

int pt_redis_del(struct event_base *base, int worker, pt_bytes key)
{
    char kb[KEY_CAP];
    pt_bytes k;
    struct client *c = client_of(base, worker);
    if (!c || !prefixed(key, kb, sizeof(kb), &k)) {
        if (c)
            bump(&c->st->skipped);
        return -1;
    }
    pt_bytes a[2] = {{"DEL", 3}, k};
    return send_simple(c, CMD_DEL, 2, a, k.len + 32);
}

void pt_redis_worker_tick(int worker)
{
    /* only a client that exists: a worker that never used Redis never connects */
    if (worker >= 0 && worker < PT_REDIS_MAX_WORKERS && clients[worker])
        client_of(clients[worker]->base, worker);
}

void pt_redis_worker_end(int worker)
{
    if (worker < 0 || worker >= PT_REDIS_MAX_WORKERS || !clients[worker])
        return;
    client_free(clients[worker]);
    clients[worker] = NULL;
}
