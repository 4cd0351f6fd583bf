/*
 * pt_health -- active health checks on a thread of their own (see pt_health.h).
 */
#include "event/pt_health.h"

#include "base/pt_log.h"
#include "conf/pt_genmodel.h"
#include "event/pt_breaker.h"
#include "event/pt_io.h"
#include "event/pt_tls.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATUS_LINE_MAX 1024 /* a status line longer than this is a failure */
#define MAX_PROBES 4096

struct probe {
    struct pt_health_probe p; /* strings owned */
    struct event *tick, *deadline;
    struct pt_io *io;
};

struct set {
    struct probe *v;
    int n;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_t thread;
static bool running;
static struct event_base *base;
static struct event *wake;
static struct set *pending; /* handed over by the control thread, taken by the thread */
static bool pending_set, stopping;
static struct set *cur; /* the thread's own */

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

static void set_free(struct set *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++) {
        struct probe *q = &s->v[i];
        if (q->tick)
            event_free(q->tick);
        if (q->deadline)
            event_free(q->deadline);
        if (q->io)
            pt_io_free(q->io);
        free((char *)q->p.id);
        free((char *)q->p.host);
        free((char *)q->p.authority);
        free((char *)q->p.path);
        if (q->p.tls)
            SSL_CTX_free(q->p.tls);
        pt_breaker_state_put(q->p.state);
    }
    free(s->v);
    free(s);
}

/* One probe's end: the connection goes, the result is counted. */
static void probe_done(struct probe *q, bool ok, const char *why)
{
    if (q->io) {
        pt_io_free(q->io);
        q->io = NULL;
    }
    event_del(q->deadline);
    int change = pt_breaker_health(q->p.state, ok, q->p.healthy, q->p.unhealthy);
    if (change < 0)
        pt_warn("backend %s is down: %d health check%s failed in a row (last: %s)", q->p.id, q->p.unhealthy,
                q->p.unhealthy == 1 ? "" : "s", why);
    else if (change > 0)
        pt_info("backend %s is up again: %d health check%s passed in a row", q->p.id, q->p.healthy,
                q->p.healthy == 1 ? "" : "s");
}

/* "HTTP/1.x NNN ..." at the start of the input: 1 ok, 0 failed, -1 more needed. */
static int status_of(struct probe *q, char *why, size_t whylen)
{
    struct evbuffer *in = q->io->in;
    size_t n = evbuffer_get_length(in);
    struct evbuffer_ptr eol = evbuffer_search(in, "\r\n", 2, NULL);
    if (eol.pos < 0) {
        if (n > STATUS_LINE_MAX) {
            snprintf(why, whylen, "status line too long");
            return 0;
        }
        return -1;
    }
    char line[16] = {0};
    size_t take = (size_t)eol.pos < sizeof(line) - 1 ? (size_t)eol.pos : sizeof(line) - 1;
    evbuffer_copyout(in, line, take);
    if (take < 12 || memcmp(line, "HTTP/1.", 7) || line[8] != ' ' || line[9] < '1' || line[9] > '5' ||
        line[10] < '0' || line[10] > '9' || line[11] < '0' || line[11] > '9') {
        snprintf(why, whylen, "not an HTTP/1.x status line");
        return 0;
    }
    int status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    snprintf(why, whylen, "status %d", status);
    return status >= 200 && status < 400;
}

static void io_cb(struct pt_io *io, int what, void *arg)
{
    (void)io;
    struct probe *q = arg;
    char why[64];
    if (what & PT_IO_CONNECTED) {
        evbuffer_add_printf(q->io->out,
                            "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: portico-health-check\r\n"
                            "Accept: */*\r\nConnection: close\r\n\r\n",
                            q->p.path, q->p.authority);
        pt_io_flush(q->io);
        return;
    }
    if (what & PT_IO_READ) {
        int r = status_of(q, why, sizeof(why));
        if (r >= 0)
            probe_done(q, r == 1, why);
        return;
    }
    if (what & (PT_IO_EOF | PT_IO_ERROR | PT_IO_HUP)) {
        snprintf(why, sizeof(why), "%s", (what & PT_IO_ERROR) ? pt_io_errmsg(q->io) : "connection closed");
        probe_done(q, false, why);
    }
}

static void deadline_cb(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd;
    (void)ev;
    struct probe *q = arg;
    if (q->io)
        probe_done(q, false, "timed out");
}

static void tick_cb(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd;
    (void)ev;
    struct probe *q = arg;
    if (q->io)
        return; /* the last one is still running (its deadline ends it) */
    if (q->p.tls) {
        SSL *ssl = pt_tls_client_ssl(q->p.tls, q->p.host, q->p.verify);
        q->io = ssl ? pt_io_tls_connect(base, (struct sockaddr *)&q->p.sa, q->p.salen, ssl, io_cb, q) : NULL;
    } else
        q->io = pt_io_connect(base, (struct sockaddr *)&q->p.sa, q->p.salen, io_cb, q);
    if (!q->io) {
        probe_done(q, false, "cannot open a connection");
        return;
    }
    pt_io_read(q->io, true);
    struct timeval tv = {q->p.timeout_ms / 1000, (q->p.timeout_ms % 1000) * 1000};
    event_add(q->deadline, &tv);
}

/* The thread takes the set the control thread left (on its own base). */
static void wake_cb(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd;
    (void)ev;
    (void)arg;
    pthread_mutex_lock(&mu);
    bool stop = stopping;
    struct set *next = pending_set ? pending : cur;
    bool changed = pending_set;
    pending = NULL;
    pending_set = false;
    pthread_mutex_unlock(&mu);
    if (stop) {
        if (changed)
            set_free(next);
        event_base_loopbreak(base);
        return;
    }
    if (!changed)
        return;
    set_free(cur);
    cur = next;
    for (int i = 0; cur && i < cur->n; i++) {
        struct probe *q = &cur->v[i];
        q->tick = event_new(base, -1, EV_PERSIST, tick_cb, q);
        q->deadline = event_new(base, -1, 0, deadline_cb, q);
        struct timeval tv = {q->p.interval_ms / 1000, (q->p.interval_ms % 1000) * 1000};
        event_add(q->tick, &tv);
        event_active(q->tick, EV_TIMEOUT, 0); /* a first check at once */
    }
}

static void *run(void *arg)
{
    (void)arg;
    /* the loop waits for the first set even with nothing pending (the wake event
       alone does not keep a libevent loop running) */
    event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
    set_free(cur);
    cur = NULL;
    return NULL;
}

void pt_health_set(const struct pt_health_probe *p, int n)
{
    if (n > MAX_PROBES)
        n = MAX_PROBES;
    if (!running && n == 0)
        return;
    struct set *s = calloc(1, sizeof(*s));
    if (!s)
        return;
    s->v = n ? calloc((size_t)n, sizeof(*s->v)) : NULL;
    for (int i = 0; i < n && s->v; i++) {
        struct probe *q = &s->v[s->n++];
        q->p = p[i];
        q->p.id = dup_or_empty(p[i].id);
        q->p.host = dup_or_empty(p[i].host);
        q->p.authority = dup_or_empty(p[i].authority);
        q->p.path = dup_or_empty(p[i].path && *p[i].path == '/' ? p[i].path : "/");
        if (q->p.tls)
            SSL_CTX_up_ref(q->p.tls);
        pt_breaker_state_ref(q->p.state);
        if (q->p.interval_ms < 10)
            q->p.interval_ms = 10;
        if (q->p.timeout_ms < 1)
            q->p.timeout_ms = 1;
    }
    if (!running) {
        evthread_use_pthreads(); /* the control thread wakes this base */
        base = event_base_new();
        wake = base ? event_new(base, -1, 0, wake_cb, NULL) : NULL;
        if (!wake) {
            pt_warn("health checks: cannot create their event loop");
            set_free(s);
            return;
        }
        if (pthread_create(&thread, NULL, run, NULL)) {
            pt_warn("health checks: cannot start their thread");
            set_free(s);
            return;
        }
        running = true;
    }
    pthread_mutex_lock(&mu);
    struct set *old = pending_set ? pending : NULL;
    pending = s;
    pending_set = true;
    pthread_mutex_unlock(&mu);
    set_free(old); /* never taken by the thread */
    event_active(wake, 0, 0);
}

void pt_health_stop(void)
{
    if (!running)
        return;
    pthread_mutex_lock(&mu);
    stopping = true;
    pthread_mutex_unlock(&mu);
    event_active(wake, 0, 0);
    pthread_join(thread, NULL);
    running = false;
    event_free(wake);
    wake = NULL;
    event_base_free(base);
    base = NULL;
    pthread_mutex_lock(&mu);
    set_free(pending);
    pending = NULL;
    pending_set = false;
    stopping = false;
    pthread_mutex_unlock(&mu);
}

void pt_health_from_gen(const struct pt_gen *g)
{
    int n = 0;
    for (int i = 0; i < g->nbackends; i++)
        if (g->backends[i].health.on && g->backends[i].target && g->backends[i].state)
            n++;
    if (n > MAX_PROBES)
        n = MAX_PROBES;
    struct pt_health_probe *v = n ? calloc((size_t)n, sizeof(*v)) : NULL;
    char **paths = n ? calloc((size_t)n, sizeof(*paths)) : NULL;
    int k = 0;
    for (int i = 0; i < g->nbackends && k < n && v && paths; i++) {
        const struct pt_backdef *d = &g->backends[i];
        if (!d->health.on || !d->target || !d->state)
            continue;
        const struct pt_backend *t = d->target;
        const char *hp = d->health.path && *d->health.path ? d->health.path : "/";
        size_t len = strlen(t->url.path) + strlen(hp) + 2;
        paths[k] = malloc(len);
        if (!paths[k])
            break;
        /* the backend's own path, then the check's */
        snprintf(paths[k], len, "%s%s%s", t->url.path, *hp == '/' ? "" : "/", hp);
        struct pt_health_probe *p = &v[k];
        p->id = d->id;
        p->host = t->url.host;
        p->authority = t->url.authority;
        p->path = paths[k];
        p->sa = t->sa;
        p->salen = t->salen;
        p->tls = t->url.https ? (d->tls ? d->tls : g->client_tls) : NULL;
        p->verify = g->conf->upstream.verify && d->verify_name;
        p->interval_ms = d->health.interval_ms;
        p->timeout_ms = d->health.timeout_ms;
        p->healthy = d->health.healthy_threshold;
        p->unhealthy = d->health.unhealthy_threshold;
        p->state = d->state;
        k++;
    }
    pt_health_set(v, k);
    for (int i = 0; i < k; i++)
        free(paths[i]);
    free(paths);
    free(v);
}
