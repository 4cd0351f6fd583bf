/*
 * pt_otel_export -- the OTLP/HTTP exporter thread (see pt_otel_export.h).
 *
 * The control thread hands settings over as a whole (struct xcfg, copied
 * out of the generation's pool, which may be freed while the thread still
 * uses them); the thread picks the latest up before each batch.  The thread
 * sleeps in poll() on a pipe: written at stop, to wake it.  A second pipe is
 * the fetch's cancel descriptor: written when the stop deadline passes, so a
 * collector that does not answer cannot hold the shutdown.
 */
#include "config.h" /* _GNU_SOURCE: pthread_timedjoin_np */

#include "http/pt_otel_export.h"

#include "base/pt_log.h"
#include "base/pt_pool.h"
#include "http/pt_fetch.h"
#include "http/pt_otel.h"
#include "http/pt_otel_encode.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 50 /* how often the thread looks at the queues' fill */
#define RETRIES 2  /* more tries of a failed batch */
#define WARN_EVERY_MS 10000

struct xcfg {
    char *endpoint; /* NULL: spans taken are discarded */
    char *headers;  /* "Name: value\r\n"... */
    int protocol;
    char *service_name;
    uint32_t timeout;
    int batch;
    uint32_t interval;
    char *metrics_endpoint;
    uint32_t metrics_interval;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct xcfg *pending;                 /* guarded by mu: settings not yet picked up */
static pt_otel_export_metrics_fn metrics_fn; /* guarded by mu */
static void *metrics_arg;
static pthread_t thread;
static bool running;
static atomic_bool stopping;
static _Atomic uint64_t stop_by; /* monotonic ms: the flush at stop ends by then */
static int wake_fd[2] = {-1, -1}, cancel_fd[2] = {-1, -1};
static int workers;
static uint32_t queue_size;
static char host_name[256];

static void xcfg_free(struct xcfg *x)
{
    if (!x)
        return;
    free(x->endpoint);
    free(x->headers);
    free(x->service_name);
    free(x->metrics_endpoint);
    free(x);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static struct xcfg *xcfg_new(const struct pt_telemetry_cf *t)
{
    struct xcfg *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->endpoint = t->on ? dup_or_null(t->endpoint) : NULL;
    x->protocol = t->protocol;
    x->service_name = strdup(t->service_name ? t->service_name : "portico");
    x->timeout = t->timeout;
    x->batch = (int)t->batch_size;
    x->interval = t->export_interval;
    x->metrics_endpoint = t->on ? dup_or_null(t->metrics_endpoint) : NULL;
    x->metrics_interval = t->metrics_interval;
    size_t n = 1;
    for (int i = 0; i + 1 < t->headers.n; i += 2)
        n += strlen(t->headers.v[i]) + strlen(t->headers.v[i + 1]) + 4;
    x->headers = malloc(n);
    if (x->headers) {
        size_t o = 0;
        for (int i = 0; i + 1 < t->headers.n; i += 2)
            o += (size_t)snprintf(x->headers + o, n - o, "%s: %s\r\n", t->headers.v[i], t->headers.v[i + 1]);
        x->headers[o] = '\0';
    }
    if (!x->service_name || !x->headers || (t->on && t->endpoint && !x->endpoint)) {
        xcfg_free(x);
        return NULL;
    }
    return x;
}

/* Sleeps up to ms, or until woken (stop).  true when woken. */
static bool nap(uint32_t ms)
{
    struct pollfd p = {wake_fd[0], POLLIN, 0};
    int r = poll(&p, 1, (int)ms);
    if (r > 0) {
        char b[64];
        while (read(wake_fd[0], b, sizeof(b)) > 0)
            ;
        return true;
    }
    return false;
}

static uint64_t warned_at;

/* Posts body to url; true when the collector took it (2xx).  `*retry` says
   whether another try may help. */
static bool post(const struct xcfg *x, const char *url, const char *ctype, const char *body, size_t len,
                 bool *retry, char *why, size_t whylen)
{
    struct pt_fetch_opts o = {0};
    o.timeout_ms = x->timeout;
    o.max_body = 64 * 1024;
    o.accept = ctype;
    o.cancel_fd = cancel_fd[0];
    o.method = "POST";
    o.body = body;
    o.body_len = len;
    o.content_type = ctype;
    o.headers = x->headers;
    if (atomic_load(&stopping)) {
        /* at stop, no fetch runs past the deadline */
        uint64_t now = pt_clock_now_ms(), by = atomic_load(&stop_by);
        uint64_t left = by > now ? by - now : 1;
        if (left < o.timeout_ms)
            o.timeout_ms = (uint32_t)left;
    }
    struct pt_fetch_result r = {0};
    char err[256];
    int rc = pt_fetch_get(url, &o, &r, err, sizeof(err));
    if (rc != PT_FETCH_OK) {
        *retry = rc != PT_FETCH_CANCELLED;
        snprintf(why, whylen, "%s", err);
        return false;
    }
    free(r.body);
    if (r.status >= 200 && r.status < 300)
        return true;
    *retry = r.status == 429 || r.status >= 500 || r.status == 408;
    snprintf(why, whylen, "the collector answered %d", r.status);
    return false;
}

static void warn_failed(const char *what, const char *url, const char *why, int n)
{
    uint64_t now = pt_clock_now_ms();
    if (warned_at && now - warned_at < WARN_EVERY_MS)
        return;
    warned_at = now;
    pt_warn("telemetry: %s to %s failed (%s); %d span%s dropped (said at most every %d s)", what, url, why, n,
            n == 1 ? "" : "s", WARN_EVERY_MS / 1000);
}

/* Sends one batch, with its retries; counts the outcome. */
static void send_batch(const struct xcfg *x, struct pt_pool *pool, const struct pt_otel_span *s, int n)
{
    if (!x->endpoint) {
        pt_otel_count_export(0, 0, (uint64_t)n);
        return;
    }
    static const char *version = PACKAGE_VERSION;
    struct pt_otel_resource res = {x->service_name, version, host_name[0] ? host_name : NULL};
    pt_pool_reset(pool);
    struct pt_buf b;
    pt_buf_init(&b, pool, (size_t)n * 600 + 512);
    bool json = x->protocol == PT_OTLP_JSON;
    if (json)
        pt_otel_encode_json(&b, &res, s, n);
    else
        pt_otel_encode_proto(&b, &res, s, n);
    if (pt_pool_failed(pool)) {
        pt_otel_count_export(0, 1, (uint64_t)n);
        warn_failed("export", x->endpoint, "out of memory", n);
        return;
    }
    char why[300] = "";
    for (int attempt = 0;; attempt++) {
        bool retry = false;
        if (post(x, x->endpoint, json ? "application/json" : "application/x-protobuf", b.p, b.n, &retry, why,
                 sizeof(why))) {
            pt_otel_count_export((uint64_t)n, 0, 0);
            return;
        }
        if (!retry || attempt == RETRIES)
            break;
        uint32_t wait = 200u << (2 * attempt); /* 200 ms, 800 ms */
        if (atomic_load(&stopping)) {
            uint64_t now = pt_clock_now_ms(), by = atomic_load(&stop_by);
            if (now + wait >= by)
                break;
            usleep(wait * 1000);
        } else if (nap(wait)) {
            /* woken for the stop: this batch still gets its retry, within the stop's deadline */
        }
    }
    pt_otel_count_export(0, 1, (uint64_t)n);
    warn_failed("export", x->endpoint, why, n);
}

static void send_metrics(const struct xcfg *x)
{
    pthread_mutex_lock(&mu);
    pt_otel_export_metrics_fn fn = metrics_fn;
    void *arg = metrics_arg;
    pthread_mutex_unlock(&mu);
    if (!fn || !x->metrics_endpoint)
        return;
    size_t len = 0;
    char *body = fn(arg, &len);
    if (!body)
        return;
    char why[300];
    bool retry = false;
    if (!post(x, x->metrics_endpoint, "application/json", body, len, &retry, why, sizeof(why)))
        warn_failed("metrics export", x->metrics_endpoint, why, 0);
    free(body);
}

static void *run(void *arg)
{
    (void)arg;
    struct xcfg *x = NULL;
    struct pt_otel_span *batch = NULL;
    int cap = 0;
    struct pt_pool *pool = pt_pool_new(256 * 1024);
    uint64_t next = 0, next_metrics = 0;
    for (;;) {
        pthread_mutex_lock(&mu);
        if (pending) {
            xcfg_free(x);
            x = pending;
            pending = NULL;
        }
        pthread_mutex_unlock(&mu);
        bool stop = atomic_load(&stopping);
        if (!x || !pool) {
            if (stop)
                break;
            nap(TICK_MS);
            continue;
        }
        if (cap != x->batch) {
            struct pt_otel_span *nb = realloc(batch, sizeof(*batch) * (size_t)x->batch);
            if (nb) {
                batch = nb;
                cap = x->batch;
            }
        }
        uint64_t now = pt_clock_now_ms();
        if (!next) {
            next = now + x->interval;
            next_metrics = now + x->metrics_interval;
        }
        if (batch && (stop || now >= next || pt_otel_queues_pending() >= (uint64_t)cap)) {
            for (;;) {
                int n = pt_otel_queues_take(batch, cap);
                if (n > 0)
                    send_batch(x, pool, batch, n);
                if (n < cap || (stop && pt_clock_now_ms() >= atomic_load(&stop_by)))
                    break;
            }
            next = pt_clock_now_ms() + x->interval;
        }
        if (now >= next_metrics) {
            send_metrics(x);
            next_metrics = pt_clock_now_ms() + x->metrics_interval;
        }
        if (stop)
            break;
        now = pt_clock_now_ms();
        uint64_t until = PT_MIN(next, next_metrics);
        nap((uint32_t)PT_MIN(TICK_MS, until > now ? until - now : 0));
    }
    xcfg_free(x);
    free(batch);
    if (pool)
        pt_pool_free(pool);
    return NULL;
}

static bool make_pipe(int fd[2])
{
    if (pipe(fd) < 0)
        return false;
    for (int i = 0; i < 2; i++) {
        fcntl(fd[i], F_SETFL, fcntl(fd[i], F_GETFL) | O_NONBLOCK);
        fcntl(fd[i], F_SETFD, FD_CLOEXEC);
    }
    return true;
}

/* The queues and the thread, once telemetry first needs them. */
static bool ensure_running(const struct pt_telemetry_cf *t)
{
    if (running)
        return true;
    if (!t->on || !t->endpoint)
        return true; /* nothing to export yet */
    if (!pt_otel_queues_init(workers, (uint32_t)t->queue_size)) {
        pt_err("telemetry: no memory for the span queues; spans are not exported");
        return false;
    }
    queue_size = (uint32_t)t->queue_size;
    if (wake_fd[0] < 0 && !make_pipe(wake_fd))
        return false;
    if (cancel_fd[0] < 0 && !make_pipe(cancel_fd))
        return false;
    if (gethostname(host_name, sizeof(host_name) - 1) < 0)
        host_name[0] = '\0';
    atomic_store(&stopping, false);
    if (pthread_create(&thread, NULL, run, NULL)) {
        pt_err("telemetry: cannot start the exporter thread");
        return false;
    }
    running = true;
    return true;
}

void pt_otel_export_configure(const struct pt_telemetry_cf *t)
{
    struct xcfg *x = xcfg_new(t);
    if (!x) {
        pt_err("telemetry: no memory for the new settings; the old ones stay");
        return;
    }
    if (running && t->on && t->endpoint && (uint32_t)t->queue_size != queue_size)
        pt_warn("telemetry.queueSize: %u -> %u needs a restart; keeping %u", queue_size,
                (unsigned)t->queue_size, queue_size);
    pthread_mutex_lock(&mu);
    xcfg_free(pending);
    pending = x;
    pthread_mutex_unlock(&mu);
    ensure_running(t);
}

bool pt_otel_export_start(int nworkers, const struct pt_telemetry_cf *t)
{
    workers = nworkers;
    pt_otel_export_configure(t);
    return !t->on || !t->endpoint || running;
}

void pt_otel_export_set_metrics(pt_otel_export_metrics_fn fn, void *arg)
{
    pthread_mutex_lock(&mu);
    metrics_fn = fn;
    metrics_arg = arg;
    pthread_mutex_unlock(&mu);
}

void pt_otel_export_stop(uint32_t deadline_ms)
{
    if (running) {
        atomic_store(&stop_by, pt_clock_now_ms() + deadline_ms);
        atomic_store(&stopping, true);
        if (write(wake_fd[1], "x", 1) < 0) {
            /* a full pipe wakes the thread all the same */
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += deadline_ms / 1000;
        ts.tv_nsec += (long)(deadline_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (pthread_timedjoin_np(thread, NULL, &ts)) {
            /* past the deadline: the fetch in flight is cancelled */
            if (write(cancel_fd[1], "x", 1) < 0) {
            }
            pthread_join(thread, NULL);
        }
        running = false;
        struct pt_otel_stats st;
        pt_otel_stats(&st);
        pt_info("telemetry: %llu spans recorded, %llu exported, %llu dropped (queue full), %llu lost in %llu "
                "failed batches, %llu left unsent",
                (unsigned long long)st.started, (unsigned long long)st.exported,
                (unsigned long long)st.dropped, (unsigned long long)st.failed_spans,
                (unsigned long long)st.failed_batches, (unsigned long long)st.queued);
    }
    pthread_mutex_lock(&mu);
    xcfg_free(pending);
    pending = NULL;
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < 2; i++) {
        if (wake_fd[i] >= 0)
            close(wake_fd[i]);
        if (cancel_fd[i] >= 0)
            close(cancel_fd[i]);
        wake_fd[i] = cancel_fd[i] = -1;
    }
    pt_otel_queues_free();
}
