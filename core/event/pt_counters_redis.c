/*
 * pt_counters_redis -- the counters' sync thread (see pt_counters_redis.h).
 */
#include "event/pt_counters_redis.h"

#include "base/pt_log.h"
#include "event/pt_counters.h"
#include "event/pt_io.h"
#include "event/pt_metrics.h"
#include "event/pt_redis.h"
#include "event/pt_tls.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <netdb.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/*
 * The script.  ARGV: kind (s: sliding, f: fixed), window or period ms (0: never renewed), limit,
 * tokens wanted, slot of the tokens given back, how many, increments to add, the first period's
 * start.  Slots and periods are counted on Redis's clock, so every node agrees on them; a slot's
 * tokens are given back only while it is in the window.  The grant rule is pt_counters_grant's.
 */
static const char script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local function fs(x) return string.format('%.0f', x) end\n"
    "local k = KEYS[1]\n"
    "local kind, w, limit, want = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local rslot, rn, add, origin = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), "
    "tonumber(ARGV[8])\n"
    "local slot, left, first, sl = 0, -1, 0, 1\n"
    "if kind == 's' then\n"
    "  sl = math.max(math.floor(w / 20), 1)\n"
    "  slot = math.floor(now / sl); left = (slot + 1) * sl - now; first = slot - 19\n"
    "elseif w > 0 then\n"
    "  if now < origin then slot = -1; left = origin - now\n"
    "  else slot = math.floor((now - origin) / w); left = origin + (slot + 1) * w - now end\n"
    "  first = slot\n"
    "end\n"
    "if rn > 0 and rslot >= first and rslot <= slot then\n"
    "  local v = tonumber(redis.call('HGET', k, fs(rslot)) or '0') - rn\n"
    "  if v > 0 then redis.call('HSET', k, fs(rslot), fs(v)) else redis.call('HDEL', k, fs(rslot)) end\n"
    "end\n"
    "local sum, counts = 0, {}\n"
    "local all = redis.call('HGETALL', k)\n"
    "for i = 1, #all, 2 do\n"
    "  local f = tonumber(all[i])\n"
    "  if f == nil or f < first then redis.call('HDEL', k, all[i])\n"
    "  elseif f <= slot then local v = tonumber(all[i + 1]) or 0; sum = sum + v; counts[f] = v end\n"
    "end\n"
    "if add > 0 then redis.call('HINCRBY', k, fs(slot), add); sum = sum + add; "
    "counts[slot] = (counts[slot] or 0) + add end\n"
    "local g = 0\n"
    "if want > 0 and limit > 0 and sum < limit then\n"
    "  g = math.min(want, math.ceil((limit - sum) / 4))\n"
    "  redis.call('HINCRBY', k, fs(slot), g); sum = sum + g; counts[slot] = (counts[slot] or 0) + g\n"
    "end\n"
    "local retry = 0\n"
    "if kind == 's' and limit > 0 and sum >= limit then\n"
    "  local rest = sum\n"
    "  for f = first, slot do\n"
    "    rest = rest - (counts[f] or 0)\n"
    "    if rest + 1 <= limit then retry = (f + 20) * sl - now; break end\n"
    "  end\n"
    "end\n"
    "if kind == 's' then redis.call('PEXPIRE', k, w + sl)\n"
    "elseif left > 0 then redis.call('PEXPIRE', k, left + 60000) end\n"
    "return fs(g) .. ' ' .. fs(sum) .. ' ' .. fs(slot) .. ' ' .. fs(left) .. ' ' .. fs(retry)\n";

#define BACKOFF_MIN_MS 100
#define JOBS_PER_TURN 1024 /* keys taken per turn at most; the rest wait for the next */

enum { ST_OFF, ST_DOWN, ST_CONNECTING, ST_UP };
enum { C_AUTH, C_SELECT, C_LOAD, C_EVAL };

struct cmd {
    int kind;
    uint64_t sent_ms;
    struct pt_counters_job job; /* C_EVAL */
};

static struct {
    /* settings (read only once the thread runs) */
    char *host, *user, *pass, *sni, *ca_file;
    int port, db;
    bool tls, verify;
    uint32_t interval, connect_ms, timeout_ms;
    char sha[41];
    /* the thread's */
    pthread_t thread;
    bool started;
    struct event_base *base;
    struct event *tick, *wake, *stop;
    SSL_CTX *ctx;
    struct sockaddr_storage sa;
    socklen_t salen;
    bool resolved;
    int state;
    bool was_up;
    struct pt_io *io;
    uint64_t connect_deadline, next_attempt;
    uint32_t backoff;
    struct cmd *fifo; /* a ring of PT_COUNTERS_REDIS_INFLIGHT: answers come in order */
    size_t head, count;
    int handshake;
    bool need_load;
    struct pt_counters_job jobs[JOBS_PER_TURN];
} R;

static _Atomic bool stopping;
static _Atomic uint64_t n_syncs, n_leases, n_tokens, n_failures, n_changes;
static _Atomic bool configured_flag, up_flag;

void pt_counters_redis_stats(struct pt_counters_redis_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->configured = atomic_load(&configured_flag);
    st->up = atomic_load(&up_flag);
    st->syncs = atomic_load(&n_syncs);
    st->leases = atomic_load(&n_leases);
    st->tokens = atomic_load(&n_tokens);
    st->failures = atomic_load(&n_failures);
    st->fallbacks = pt_counters_fallbacks();
    st->changes = atomic_load(&n_changes);
}

/* ------------------------------------------------------------ pure parts */

/* A signed decimal integer of 1 to 18 digits at *p, which moves past it. */
static bool take_int(const char **p, const char *end, int64_t *out)
{
    const char *q = *p;
    bool neg = q < end && *q == '-';
    q += neg;
    const char *d = q;
    int64_t v = 0;
    while (q < end && *q >= '0' && *q <= '9' && q - d < 18)
        v = v * 10 + (*q++ - '0');
    if (q == d || (q < end && *q >= '0' && *q <= '9'))
        return false;
    *out = neg ? -v : v;
    *p = q;
    return true;
}

bool pt_counters_redis_answer(const char *p, size_t n, struct pt_counters_answer *a)
{
    const char *end = p + n;
    int64_t v[5];
    for (int i = 0; i < 5; i++) {
        if (i && (p == end || *p++ != ' '))
            return false; /* one space between two numbers */
        if (!take_int(&p, end, &v[i]))
            return false;
    }
    if (p != end || v[0] < 0 || v[1] < 0 || v[4] < 0)
        return false;
    *a = (struct pt_counters_answer){
        .granted = v[0], .total = v[1], .slot = v[2], .left_ms = v[3], .retry_ms = v[4]};
    return true;
}

void pt_counters_redis_key(const char *name, size_t len, char *out)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)name, len, md);
    size_t p = sizeof(PT_COUNTERS_REDIS_PREFIX) - 1;
    memcpy(out, PT_COUNTERS_REDIS_PREFIX, p);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[p++] = hex[md[i] >> 4];
        out[p++] = hex[md[i] & 15];
    }
    out[p] = '\0';
}

/* ------------------------------------------------------------ connection */

static bool said_down; /* one line per change of state */

static void set_state_up(bool up)
{
    pt_counters_set_up(up);
    atomic_store(&up_flag, up);
    if (up == R.was_up)
        return;
    R.was_up = up;
    atomic_fetch_add(&n_changes, 1);
    if (up) {
        said_down = false;
        pt_info("counters: Redis %s:%d answers: rate limits and quotas count across nodes", R.host, R.port);
    }
}

static void fail_cmd(struct cmd *c, uint64_t now)
{
    if (c->kind == C_EVAL) {
        pt_counters_done(&c->job, NULL, now);
        pt_counters_job_free(&c->job);
    }
}

/* The connection is gone or not to be trusted: every job waiting fails (its pushes are pushed
   again), the table counts per node, and the next try comes after the backoff. */
static void drop(const char *why)
{
    uint64_t now = pt_clock_now_ms();
    if (R.io) {
        pt_io_free(R.io);
        R.io = NULL;
    }
    for (; R.count; R.count--) {
        fail_cmd(&R.fifo[R.head], now);
        R.head = (R.head + 1) % PT_COUNTERS_REDIS_INFLIGHT;
    }
    R.head = 0;
    R.handshake = 0;
    atomic_fetch_add(&n_failures, 1);
    if (!said_down) {
        said_down = true;
        pt_warn("counters: Redis %s:%d: %s; counting per node until it answers again (merged back then)",
                R.host, R.port, why);
    }
    R.state = ST_DOWN;
    set_state_up(false);
    R.next_attempt = now + R.backoff;
    R.backoff =
        R.backoff * 2 > PT_COUNTERS_REDIS_BACKOFF_MAX_MS ? PT_COUNTERS_REDIS_BACKOFF_MAX_MS : R.backoff * 2;
}

static bool push_cmd(int kind, struct pt_counters_job *job)
{
    if (R.count == PT_COUNTERS_REDIS_INFLIGHT)
        return false;
    struct cmd *c = &R.fifo[(R.head + R.count++) % PT_COUNTERS_REDIS_INFLIGHT];
    c->kind = kind;
    c->sent_ms = pt_clock_now_ms();
    if (job)
        c->job = *job;
    return true;
}

static void send_load(void)
{
    pt_bytes a[3] = {{"SCRIPT", 6}, {"LOAD", 4}, {script, sizeof(script) - 1}};
    pt_redis_encode(R.io->out, 3, a);
    push_cmd(C_LOAD, NULL);
    R.need_load = false;
}

static void on_connected(void)
{
    struct evbuffer *out = R.io->out;
    R.handshake = 0;
    if (R.pass) {
        pt_bytes a[3] = {{"AUTH", 4}};
        int n = 1;
        if (R.user)
            a[n++] = (pt_bytes){R.user, strlen(R.user)};
        a[n++] = (pt_bytes){R.pass, strlen(R.pass)};
        pt_redis_encode(out, n, a);
        push_cmd(C_AUTH, NULL);
        R.handshake++;
    }
    if (R.db) {
        char db[16];
        int n = snprintf(db, sizeof(db), "%d", R.db);
        pt_bytes a[2] = {{"SELECT", 6}, {db, (size_t)n}};
        pt_redis_encode(out, 2, a);
        push_cmd(C_SELECT, NULL);
        R.handshake++;
    }
    send_load();
    R.handshake++;
    pt_io_flush(R.io);
    R.state = ST_UP; /* commands flow; the table waits for the handshake's answers */
}

/* Sends what the table has for Redis. */
static void sync_turn(void)
{
    if (R.state != ST_UP || R.handshake)
        return;
    uint64_t now = pt_clock_now_ms();
    size_t room = PT_COUNTERS_REDIS_INFLIGHT - R.count;
    if (room > JOBS_PER_TURN)
        room = JOBS_PER_TURN;
    if (!room)
        return;
    if (R.need_load)
        send_load();
    size_t n = pt_counters_take(R.jobs, room - (R.need_load ? 1 : 0), now, R.interval);
    for (size_t i = 0; i < n; i++) {
        struct pt_counters_job *j = &R.jobs[i];
        char key[PT_COUNTERS_REDIS_KEY_LEN + 1], args[8][24];
        pt_counters_redis_key(j->key, j->klen, key);
        int64_t window = j->kind == PT_COUNTER_FIXED && j->window_ms >= INT64_MAX / 8 ? 0 : j->window_ms;
        int64_t v[7] = {window, j->limit, j->want, j->ret_slot, j->ret, j->push, j->origin_ms};
        pt_bytes a[12] = {{"EVALSHA", 7},
                          {R.sha, 40},
                          {"1", 1},
                          {key, strlen(key)},
                          {j->kind == PT_COUNTER_SLIDING ? "s" : "f", 1}};
        for (int k = 0; k < 7; k++)
            a[5 + k] =
                (pt_bytes){args[k], (size_t)snprintf(args[k], sizeof(args[k]), "%lld", (long long)v[k])};
        pt_redis_encode(R.io->out, 12, a);
        push_cmd(C_EVAL, j);
    }
    if (n || R.count)
        pt_io_flush(R.io);
}

static uint64_t last_odd_log; /* the last "Redis answered a sync with ..." line */

/* One answer for the oldest command.  false when the connection was dropped. */
static bool on_answer(struct cmd *c, const struct pt_redis_reply *rp)
{
    uint64_t now = pt_clock_now_ms();
    switch (c->kind) {
    case C_AUTH:
    case C_SELECT:
    case C_LOAD:
        if (rp->type == '-' || (c->kind != C_LOAD && rp->type != '+')) {
            char why[160];
            snprintf(why, sizeof(why), "%s refused: %.*s",
                     c->kind == C_AUTH     ? "AUTH"
                     : c->kind == C_SELECT ? "SELECT"
                                           : "SCRIPT LOAD",
                     (int)PT_MIN(rp->len, 100), rp->str ? rp->str : "");
            drop(why);
            return false;
        }
        if (R.handshake && --R.handshake == 0) {
            R.backoff = BACKOFF_MIN_MS;
            set_state_up(true);
            sync_turn(); /* what was counted while down goes out now */
        }
        return true;
    default: {
        struct pt_counters_answer a;
        if (rp->type == '$' && rp->str && pt_counters_redis_answer(rp->str, rp->len, &a)) {
            pt_counters_done(&c->job, &a, now);
            if (a.granted) {
                atomic_fetch_add(&n_leases, 1);
                atomic_fetch_add(&n_tokens, (uint64_t)a.granted);
            }
            atomic_fetch_add(&n_syncs, 1); /* after the table took the answer: a sync counted is seen */
        } else {
            /* an error answer (NOSCRIPT after a SCRIPT FLUSH, a key of another type, ...) */
            atomic_fetch_add(&n_failures, 1);
            bool noscript = rp->type == '-' && rp->len >= 8 && !memcmp(rp->str, "NOSCRIPT", 8);
            if (noscript) {
                R.need_load = true;
                pt_counters_done(&c->job, NULL, now); /* loaded again: the next turn is answered */
            } else {
                pt_counters_refused(&c->job, now);                  /* this key counts per node for a while */
                if (!last_odd_log || now - last_odd_log >= 30000) { /* at most one line every 30 s */
                    last_odd_log = now;
                    pt_warn("counters: Redis answered a sync with %.*s (said at most every 30 s)",
                            (int)PT_MIN(rp->len, 120),
                            rp->str ? rp->str : "something else than the script's answer");
                }
            }
        }
        pt_counters_job_free(&c->job);
        return true;
    }
    }
}

static void on_readable(void)
{
    struct pt_io *io = R.io;
    struct evbuffer *in = io->in;
    for (;;) { /* each turn takes an answer off the input: bounded by what arrived */
        size_t avail = evbuffer_get_length(in);
        if (!avail)
            return;
        size_t look = PT_MIN(avail, (size_t)PT_REDIS_LINE_MAX + 2);
        const char *p = (const char *)evbuffer_pullup(in, (ssize_t)look);
        struct pt_redis_reply rp;
        ssize_t k = pt_redis_parse(p, look, PT_REDIS_LINE_MAX, &rp);
        if (k == 0 && rp.need && rp.need <= avail) {
            p = (const char *)evbuffer_pullup(in, (ssize_t)rp.need);
            k = p ? pt_redis_parse(p, rp.need, PT_REDIS_LINE_MAX, &rp) : -1;
        }
        if (k == 0)
            return;
        if (k < 0 || !R.count || rp.skip) {
            char why[128];
            snprintf(why, sizeof(why), "a broken answer (%s)",
                     k < 0     ? rp.str
                     : rp.skip ? "too long"
                               : "an answer nobody asked for");
            drop(why);
            return;
        }
        struct cmd c = R.fifo[R.head];
        R.head = (R.head + 1) % PT_COUNTERS_REDIS_INFLIGHT;
        R.count--;
        bool alive = on_answer(&c, &rp);
        if (!alive || R.io != io)
            return;
        evbuffer_drain(in, (size_t)k);
    }
}

/* Stopping: one last turn gives back the tokens held and pushes what is pending (a quota's tokens
   would otherwise be lost until its period ends), waiting for the answers at most counters.timeout. */
static uint64_t stop_deadline;

/* After an answer while stopping: done when nothing waits any more. */
static void stop_when_done(void)
{
    if (stop_deadline && (!R.count || R.state != ST_UP))
        event_base_loopexit(R.base, NULL);
}

static void on_io(struct pt_io *io, int what, void *arg)
{
    (void)arg;
    if (R.io != io)
        return;
    if (what & PT_IO_CONNECTED) {
        on_connected();
        if (R.io != io)
            return;
    }
    if (what & PT_IO_READ) {
        on_readable();
        stop_when_done();
        if (R.io != io)
            return;
    }
    if (what & (PT_IO_ERROR | PT_IO_EOF | PT_IO_HUP))
        drop(what & PT_IO_ERROR ? pt_io_errmsg(io) : "the server closed the connection");
}

/* Resolves the host and loads the TLS context (on this thread: blocking here holds nothing up). */
static bool resolve(void)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%d", R.port);
    int rc = getaddrinfo(R.host, port, &hints, &ai);
    if (rc || !ai || ai->ai_addrlen > sizeof(R.sa)) {
        if (ai)
            freeaddrinfo(ai);
        return false;
    }
    memcpy(&R.sa, ai->ai_addr, ai->ai_addrlen);
    R.salen = (socklen_t)ai->ai_addrlen;
    freeaddrinfo(ai);
    if (R.tls && !R.ctx) {
        struct pt_errors errs = {0};
        R.ctx = pt_tls_client_ctx(R.ca_file, R.verify, NULL, &errs);
        if (!R.ctx)
            pt_warn("counters: Redis TLS: %s", errs.n ? errs.msgs[0] : "no context");
        pt_node_errors_clear(&errs);
        if (!R.ctx)
            return false;
    }
    return true;
}

static void try_connect(uint64_t now)
{
    if (!R.resolved && !(R.resolved = resolve())) {
        drop("the host does not resolve, or its TLS settings do not load");
        return;
    }
    if (R.tls) {
        SSL *ssl = pt_tls_client_ssl(R.ctx, R.sni, R.verify);
        R.io = ssl ? pt_io_tls_connect(R.base, (struct sockaddr *)&R.sa, R.salen, ssl, on_io, NULL) : NULL;
    } else
        R.io = pt_io_connect(R.base, (struct sockaddr *)&R.sa, R.salen, on_io, NULL);
    if (!R.io) {
        drop("no connection could be started");
        return;
    }
    pt_io_read(R.io, true);
    R.state = ST_CONNECTING;
    R.connect_deadline = now + R.connect_ms;
}

/* Every interval: connect when due, time out what waits too long, sync. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    uint64_t now = pt_clock_now_ms();
    if (stop_deadline) {
        if (now >= stop_deadline || R.state != ST_UP)
            event_base_loopexit(R.base, NULL);
        return;
    }
    if (R.state == ST_DOWN && now >= R.next_attempt)
        try_connect(now);
    else if (R.state == ST_CONNECTING && now >= R.connect_deadline)
        drop("no connection within counters.connectTimeout");
    else if (R.state == ST_UP && R.count &&
             now - R.fifo[R.head].sent_ms >= (R.handshake ? R.connect_ms : R.timeout_ms))
        drop("no answer within counters.timeout");
    if (R.state == ST_DOWN)
        pt_counters_take(R.jobs, 0, now, R.interval); /* clears the wake-up flag, sends nothing */
    sync_turn();
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    sync_turn();
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (R.state != ST_UP || R.handshake) {
        event_base_loopexit(R.base, NULL);
        return;
    }
    pt_counters_release();
    stop_deadline = pt_clock_now_ms() + R.timeout_ms;
    sync_turn();
    if (!R.count)
        event_base_loopexit(R.base, NULL);
}

/* Called by the table from any thread: run a turn now. */
static void wake_up(void)
{
    if (R.wake && !atomic_load(&stopping))
        event_active(R.wake, EV_READ, 0);
}

static void metrics(struct pt_metrics_sink *s, void *arg)
{
    (void)arg;
    struct pt_counters_redis_stats st;
    pt_counters_redis_stats(&st);
    pt_metrics_sink_value(s, "portico_counters_redis_up",
                          "1 while Redis answers the counters' sync thread (counters.redis), else 0.",
                          PT_METRICS_GAUGE, st.up ? 1 : 0);
    pt_metrics_sink_value(s, "portico_counters_redis_syncs_total", "Keys synced with Redis (script answers).",
                          PT_METRICS_COUNTER, (double)st.syncs);
    pt_metrics_sink_value(s, "portico_counters_redis_leases_total", "Syncs that reserved tokens.",
                          PT_METRICS_COUNTER, (double)st.leases);
    pt_metrics_sink_value(s, "portico_counters_redis_tokens_total", "Tokens reserved in Redis.",
                          PT_METRICS_COUNTER, (double)st.tokens);
    pt_metrics_sink_value(s, "portico_counters_redis_failures_total",
                          "Connections lost or refused, timeouts and error answers.", PT_METRICS_COUNTER,
                          (double)st.failures);
    pt_metrics_sink_value(s, "portico_counters_redis_fallback_total",
                          "Rate-limit and quota operations counted per node while Redis was down.",
                          PT_METRICS_COUNTER, (double)st.fallbacks);
    pt_metrics_sink_value(s, "portico_counters_redis_state_changes_total",
                          "Changes between answering and down.", PT_METRICS_COUNTER, (double)st.changes);
}

static void *thread_main(void *arg)
{
    (void)arg;
    event_base_dispatch(R.base);
    return NULL;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

bool pt_counters_redis_start(const struct pt_counters_cf *cf, char *err, size_t errlen)
{
    if (errlen)
        err[0] = '\0';
    const struct pt_cache_cf *c = &cf->redis;
    if (!c->redis || R.started)
        return true;
    R.host = strdup(c->host);
    R.user = dup_or_null(c->username);
    R.pass = dup_or_null(c->password);
    R.sni = strdup(c->server_name ? c->server_name : c->host);
    R.ca_file = dup_or_null(c->ca_file);
    R.port = c->port;
    R.db = c->db;
    R.tls = c->tls;
    R.verify = c->verify;
    R.interval = cf->sync_interval ? cf->sync_interval : 50;
    R.connect_ms = c->connect_timeout;
    R.timeout_ms = c->command_timeout;
    R.backoff = BACKOFF_MIN_MS;
    R.fifo = calloc(PT_COUNTERS_REDIS_INFLIGHT, sizeof(*R.fifo));
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)script, sizeof(script) - 1, md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(R.sha + 2 * i, 3, "%02x", md[i]);
    evthread_use_pthreads(); /* the table wakes this loop from the workers' threads */
    R.base = event_base_new();
    if (R.base) {
        R.tick = event_new(R.base, -1, EV_PERSIST, on_tick, NULL);
        R.wake = event_new(R.base, -1, 0, on_wake, NULL);
        R.stop = event_new(R.base, -1, 0, on_stop, NULL);
    }
    if (!R.host || !R.sni || !R.fifo || !R.base || !R.tick || !R.wake || !R.stop) {
        snprintf(err, errlen, "counters: out of memory");
        return false;
    }
    struct timeval tv = {(time_t)(R.interval / 1000), (suseconds_t)((R.interval % 1000) * 1000)};
    event_add(R.tick, &tv);
    R.state = ST_DOWN;
    R.next_attempt = 0;
    /* until the first answer, the node counts per node (merged once Redis answers) */
    pt_counters_set_up(false);
    pt_counters_share(true, wake_up);
    atomic_store(&configured_flag, true);
    if (pthread_create(&R.thread, NULL, thread_main, NULL) != 0) {
        pt_counters_share(false, NULL);
        snprintf(err, errlen, "counters: the sync thread did not start");
        return false;
    }
    R.started = true;
    pt_metrics_collector(metrics, NULL);
    event_active(R.tick, EV_TIMEOUT, 0); /* connect now, not an interval later */
    return true;
}

void pt_counters_redis_stop(void)
{
    if (!R.started)
        return;
    atomic_store(&stopping, true);
    pt_counters_share(false, NULL);
    event_active(R.stop, EV_READ, 0);
    pthread_join(R.thread, NULL);
    R.started = false;
    uint64_t now = pt_clock_now_ms();
    if (R.io)
        pt_io_free(R.io);
    R.io = NULL;
    for (; R.count; R.count--) {
        fail_cmd(&R.fifo[R.head], now);
        R.head = (R.head + 1) % PT_COUNTERS_REDIS_INFLIGHT;
    }
    event_free(R.tick);
    event_free(R.wake);
    event_free(R.stop);
    event_base_free(R.base);
    R.base = NULL;
    R.wake = NULL;
    if (R.ctx)
        SSL_CTX_free(R.ctx);
    free(R.fifo);
    free(R.host);
    free(R.user);
    free(R.pass);
    free(R.sni);
    free(R.ca_file);
    memset(&R, 0, sizeof(R));
    stop_deadline = 0;
}
