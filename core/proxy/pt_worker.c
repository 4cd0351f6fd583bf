/*
 * pt_worker -- worker threads, their listeners, mailbox, timers and
 * access-log buffer.
 */
#include "proxy/pt_worker.h"

#include "base/pt_log.h"
#include "event/pt_redis.h"
#include "http/pt_hclient.h"
#include "http/pt_logsink.h"
#include "lua/pt_lua.h"
#include "proxy/pt_analytics.h"
#include "proxy/pt_h2.h"
#include "proxy/pt_h2up.h"
#include "proxy/pt_overload.h"
#include "proxy/pt_reqmetrics.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 50

int pt_worker_access_fd = 1;

static struct pt_worker *workers;
static int nworkers;

int pt_workers_count(void)
{
    return nworkers;
}

/* ------------------------------------------------------------ generations */

static void apply_limits(struct pt_worker *w, const struct pt_conf *cf)
{
    w->tdur[PT_T_HEADER] = cf->timeouts.header;
    w->tdur[PT_T_BODY] = cf->timeouts.body_idle;
    w->tdur[PT_T_KEEPALIVE] = cf->timeouts.keepalive;
    w->tdur[PT_T_SEND] = cf->timeouts.send;
    w->tdur[PT_T_CONNECT] = cf->upstream.connect_timeout;
    w->tdur[PT_T_READ] = cf->upstream.read_timeout;
    w->tdur[PT_T_IDLE] = cf->upstream.idle_timeout;
    w->tdur[PT_T_TUNNEL] = cf->upstream.read_timeout;
    w->tdur[PT_T_LINGER] = 2000;
    w->max_conns = cf->limits.connections_per_worker;
    w->node_max_conns = cf->limits.connections;
}

struct pt_wgen *pt_worker_gen_acquire(struct pt_worker *w)
{
    w->cur->users++;
    return w->cur;
}

static void wgen_drop(struct pt_worker *w, struct pt_wgen *wg)
{
    struct pt_wgen **pp = &w->old;
    while (*pp && *pp != wg)
        pp = &(*pp)->next;
    if (*pp)
        *pp = wg->next;
    pt_lua_drop_gen(w->lua, wg);
    pt_gen_unref(wg->gen);
    free(wg);
}

void pt_worker_gen_release(struct pt_worker *w, struct pt_wgen *wg)
{
    if (--wg->users == 0 && wg != w->cur)
        wgen_drop(w, wg);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int socklen,
                      void *arg);
static void on_accept_error(struct evconnlistener *l, void *arg);

static void set_listeners_enabled(struct pt_worker *w, bool on)
{
    for (int i = 0; i < w->nlst; i++)
        if (w->lst[i].l) {
            if (on)
                evconnlistener_enable(w->lst[i].l);
            else
                evconnlistener_disable(w->lst[i].l);
        }
}

/* Accepts again after a pause, once the worker's limit and the node's allow
   it.  Held back by the node's only, the worker looks again at its ticks. */
static void resume_accepting(struct pt_worker *w)
{
    if (!w->paused || w->draining || w->stopped || w->nconns >= w->max_conns)
        return;
    if (pt_overload_conns_capped(w->node_max_conns, false)) {
        w->paused_node = true;
        return;
    }
    w->paused = false;
    w->paused_node = false;
    set_listeners_enabled(w, true);
}

/* Stops accepting when the node is at limits.connections.  Another worker's
   closing connection does not wake this one: its tick looks again. */
static void pause_at_node_cap(struct pt_worker *w)
{
    if (w->paused || w->draining || !pt_overload_conns_capped(w->node_max_conns, true))
        return;
    w->paused = true;
    w->paused_node = true;
    set_listeners_enabled(w, false);
}

/* Makes g this worker's generation: listeners follow its listen list. */
static void switch_gen(struct pt_worker *w, struct pt_gen *g)
{
    int nl = g->conf->nlisten;
    struct pt_listener *nlst = calloc((size_t)(nl ? nl : 1), sizeof(*nlst));
    for (int i = 0; i < nl; i++) {
        int fd = g->listen_fds[i * nworkers + w->id];
        nlst[i].w = w;
        nlst[i].fd = fd;
        nlst[i].index = i;
        for (int k = 0; k < w->nlst; k++)
            if (w->lst[k].l && w->lst[k].fd == fd) {
                nlst[i].l = w->lst[k].l; /* same socket: keep it, nothing is refused */
                w->lst[k].l = NULL;
                evconnlistener_set_cb(nlst[i].l, on_accept, &nlst[i]);
            }
        if (!nlst[i].l && !w->draining) {
            /* 0: listen() was called already, with the configured backlog (-1 would make it 128) */
            nlst[i].l = evconnlistener_new(w->base, on_accept, &nlst[i], LEV_OPT_CLOSE_ON_FREE, 0, fd);
            if (!nlst[i].l)
                pt_err("worker %d: cannot listen on %s: %s", w->id, g->conf->listen[i].address,
                       strerror(errno));
            else
                evconnlistener_set_error_cb(nlst[i].l, on_accept_error);
        }
    }
    for (int k = 0; k < w->nlst; k++)
        if (w->lst[k].l)
            evconnlistener_free(w->lst[k].l); /* an address the new configuration dropped */
    free(w->lst);
    w->lst = nlst;
    w->nlst = nl;
    if (w->paused)
        set_listeners_enabled(w, false);

    struct pt_wgen *wg = calloc(1, sizeof(*wg));
    wg->gen = g; /* the reference the control thread took for us */
    struct pt_wgen *prev = w->cur;
    w->cur = wg;
    if (prev) {
        if (prev->users == 0) {
            pt_lua_drop_gen(w->lua, prev);
            pt_gen_unref(prev->gen);
            free(prev);
        } else {
            prev->next = w->old;
            w->old = prev;
        }
    }
    apply_limits(w, g->conf);
    resume_accepting(w);
}

/* ---------------------------------------------------------------- accept */

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int socklen,
                      void *arg)
{
    struct pt_listener *pl = arg;
    struct pt_worker *w = pl->w;
    if (w->draining || w->stopped) {
        close(fd);
        return;
    }
    pt_conn_accept(w, fd, sa, socklen, pl->index);
    if (w->paused)
        return;
    if (w->nconns >= w->max_conns) {
        w->paused = true;
        set_listeners_enabled(w, false);
        pt_warn("worker %d: %d connections, the configured maximum: not accepting more for now", w->id,
                w->nconns);
    } else
        pause_at_node_cap(w);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct pt_listener *pl = arg;
    int e = EVUTIL_SOCKET_ERROR();
    pt_err("accept: %s", evutil_socket_error_to_string(e));
    if (e == EMFILE || e == ENFILE) {
        /* out of descriptors: stop accepting until a connection closes */
        pl->w->paused = true;
        set_listeners_enabled(pl->w, false);
    }
}

void pt_worker_conn_opened(struct pt_worker *w)
{
    w->nconns++;
    pt_overload_conns_add(1);
}

void pt_worker_conn_closed(struct pt_worker *w)
{
    PT_ASSERT(w->nconns > 0);
    w->nconns--;
    pt_overload_conns_add(-1);
    resume_accepting(w);
    if (w->draining && w->nconns == 0)
        event_base_loopbreak(w->base);
}

/* ------------------------------------------------------------ access log */

static void access_flush(struct pt_worker *w)
{
    const struct pt_gen *g = w->cur ? w->cur->gen : NULL;
    int li = g ? g->conf->log.access_logger : -1;
    if (li >= 0 && li < g->nsinks && w->abuf_n) { /* log.access: logger:ID (the sink's thread writes) */
        pt_logsink_emit(g->sinks[li], PT_LOGSINK_LINES, w->abuf, w->abuf_n, (pt_str){0}, (pt_str){0});
        w->abuf_n = 0;
        return;
    }
    size_t off = 0;
    int fd = pt_worker_access_fd;
    while (off < w->abuf_n && fd >= 0) {
        ssize_t n = write(fd, w->abuf + off, w->abuf_n - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        off += (size_t)n;
    }
    w->abuf_n = 0;
}

void pt_worker_access(struct pt_worker *w, const char *line, size_t n)
{
    if (w->abuf_n + n + 1 > w->abuf_cap) {
        access_flush(w);
        if (n + 1 > w->abuf_cap) {
            size_t cap = PT_MAX(n + 1, (size_t)65536);
            char *nb = realloc(w->abuf, cap);
            if (!nb)
                return;
            w->abuf = nb;
            w->abuf_cap = cap;
        }
    }
    if (w->abuf_n == 0)
        w->abuf_first = pt_clock_now_ms();
    memcpy(w->abuf + w->abuf_n, line, n);
    w->abuf_n += n;
    w->abuf[w->abuf_n++] = '\n';
    const struct pt_conf *cf = w->cur->gen->conf;
    if (w->abuf_n >= cf->log.access_buffer)
        access_flush(w);
}

/* ---------------------------------------------------------------- timers */

static void sweep(struct pt_worker *w)
{
    uint64_t now = pt_clock_now_ms();
    for (int k = 0; k < PT_T_COUNT; k++) {
        struct pt_list *head = &w->timers[k];
        /* bounded: each pass removes the node or stops */
        while (!pt_list_empty(head)) {
            struct pt_tnode *t = pt_container_of(head->next, struct pt_tnode, link);
            if (t->deadline > now)
                break;
            pt_list_del(&t->link);
            t->kind = -1;
            t->fire(t, k); /* may re-arm or free t */
        }
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct pt_worker *w = arg;
    sweep(w);
    pt_reqmetrics_tick(w);
    pt_overload_tick(w);
    /* the node's connection count moves with every worker's connections */
    if (w->paused_node)
        resume_accepting(w);
    else
        pause_at_node_cap(w);
    pt_analytics_tick(w->an);
    pt_redis_worker_tick(w->id); /* Redis settings changed: the old connection goes */
    if (w->abuf_n && pt_clock_now_ms() - w->abuf_first >= w->cur->gen->conf->log.access_flush)
        access_flush(w);
}

/* --------------------------------------------------------------- mailbox */

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct pt_worker *w = arg;
    if (w->stopped)
        return; /* what is pending is released when the thread ends */
    pthread_mutex_lock(&w->mu);
    struct pt_gen *g = w->pending;
    int cmd = w->command;
    w->pending = NULL;
    w->command = PT_CMD_NONE;
    pthread_mutex_unlock(&w->mu);
    if (g)
        switch_gen(w, g);
    if (cmd == PT_CMD_STOP) {
        event_base_loopbreak(w->base);
        return;
    }
    if (cmd == PT_CMD_DRAIN && !w->draining) {
        w->draining = true;
        for (int i = 0; i < w->nlst; i++)
            if (w->lst[i].l) {
                evconnlistener_free(w->lst[i].l);
                w->lst[i].l = NULL;
            }
        pt_conn_drain(w);
        if (w->nconns == 0)
            event_base_loopbreak(w->base);
    }
}

static void post(struct pt_worker *w, struct pt_gen *g, int cmd)
{
    pthread_mutex_lock(&w->mu);
    if (g) {
        if (w->pending)
            pt_gen_unref(w->pending); /* superseded before the worker saw it */
        w->pending = g;
    }
    if (cmd != PT_CMD_NONE && cmd > w->command)
        w->command = cmd;
    pthread_mutex_unlock(&w->mu);
    event_active(w->wake, EV_READ, 0);
}

/* ---------------------------------------------------------------- thread */

static void *worker_main(void *arg)
{
    struct pt_worker *w = arg;
    event_base_dispatch(w->base);
    /* nothing new may start: no accepts, ticks or commands from here on */
    w->stopped = true;
    set_listeners_enabled(w, false);
    if (w->tick)
        event_del(w->tick);
    if (w->wake)
        event_del(w->wake);
    pt_conn_stop(w);
    pt_hclient_worker_end();        /* send-one-way-request's calls still running or queued on this worker */
    pt_analytics_worker_end(w->an); /* after the last request was logged */
    pt_redis_worker_end(w->id);     /* its lookups were cancelled with their requests */
    /* TLS connections are released through libevent's deferred callbacks,
     * which hold a reference until they run: let them run before the base
     * goes (event_base_free drops pending callbacks without running them). */
    for (int i = 0; i < 4 && event_base_get_num_events(w->base, EVENT_BASE_COUNT_ACTIVE); i++)
        event_base_loop(w->base, EVLOOP_NONBLOCK);
    access_flush(w);
    /* release the generations this worker still holds */
    while (w->old)
        wgen_drop(w, w->old);
    if (w->cur) {
        pt_lua_drop_gen(w->lua, w->cur);
        pt_gen_unref(w->cur->gen);
        free(w->cur);
        w->cur = NULL;
    }
    pt_lua_free(w->lua);
    w->lua = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->pending) {
        pt_gen_unref(w->pending);
        w->pending = NULL;
    }
    w->finished = true;
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

bool pt_workers_start(int n, struct pt_gen *g)
{
    evthread_use_pthreads();
    workers = calloc((size_t)n, sizeof(*workers));
    nworkers = n;
    pt_reqmetrics_init(n);
    pt_overload_init(n);
    pt_h2_init();
    pt_h2up_init();
    pt_overload_limits(&g->conf->limits);
    pt_hclient_init(); /* the outbound client's counters on /metrics */
    for (int i = 0; i < n; i++) {
        struct pt_worker *w = &workers[i];
        w->id = i;
        pthread_mutex_init(&w->mu, NULL);
        struct event_config *ec = event_config_new();
        event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER); /* policy timers are never early */
        w->base = event_base_new_with_config(ec);
        event_config_free(ec);
        if (!w->base) {
            pt_err("cannot create an event loop for worker %d", i);
            return false;
        }
        w->wake = event_new(w->base, -1, EV_PERSIST | EV_READ, on_wake, w);
        w->tick = event_new(w->base, -1, EV_PERSIST, on_tick, w);
        struct timeval tv = {0, TICK_MS * 1000};
        event_add(w->tick, &tv);
        event_add(w->wake, NULL);
        for (int k = 0; k < PT_T_COUNT; k++)
            pt_list_init(&w->timers[k]);
        pt_list_init(&w->conns);
        pt_list_init(&w->upools_transient);
        if (getrandom(w->rng, sizeof(w->rng), 0) != sizeof(w->rng)) {
            w->rng[0] = (uint64_t)time(NULL) ^ ((uint64_t)i << 32);
            w->rng[1] = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL;
        }
        w->rng[0] |= 1;
        w->abuf_cap = 64 * 1024;
        w->abuf = malloc(w->abuf_cap);
        w->lua = pt_lua_new(w->id, &w->cur);
        w->an = pt_analytics_worker_new(i);
        pt_gen_ref(g);
        switch_gen(w, g);
    }
    for (int i = 0; i < n; i++) {
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            pt_err("cannot start worker %d: %s", i, strerror(errno));
            return false;
        }
        workers[i].started = true;
    }
    return true;
}

void pt_workers_publish(struct pt_gen *g)
{
    /* one mark for all workers at once: none compares against an older one */
    pt_overload_limits(&g->conf->limits);
    for (int i = 0; i < nworkers; i++) {
        pt_gen_ref(g);
        post(&workers[i], g, PT_CMD_NONE);
    }
}

/* read by every request (pt_conn.c, relaxed): a plain load */
atomic_bool pt_worker_ready_flag = true;

void pt_workers_set_ready(bool ready)
{
    atomic_store(&pt_worker_ready_flag, ready);
}

bool pt_workers_ready(void)
{
    return atomic_load(&pt_worker_ready_flag);
}

void pt_workers_drain(void)
{
    for (int i = 0; i < nworkers; i++)
        post(&workers[i], NULL, PT_CMD_DRAIN);
}

void pt_workers_stop(void)
{
    for (int i = 0; i < nworkers; i++)
        post(&workers[i], NULL, PT_CMD_STOP);
}

bool pt_workers_join(uint32_t timeout_ms)
{
    uint64_t end = pt_clock_now_ms() + timeout_ms;
    for (;;) {
        bool all = true;
        for (int i = 0; i < nworkers; i++) {
            pthread_mutex_lock(&workers[i].mu);
            bool f = workers[i].finished || !workers[i].started;
            pthread_mutex_unlock(&workers[i].mu);
            all &= f;
        }
        if (all)
            break;
        if (pt_clock_now_ms() >= end)
            return false;
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < nworkers; i++)
        if (workers[i].started)
            pthread_join(workers[i].thread, NULL);
    for (int i = 0; i < nworkers; i++) {
        struct pt_worker *w = &workers[i];
        if (w->wake)
            event_free(w->wake);
        if (w->tick)
            event_free(w->tick);
        for (int k = 0; k < w->nlst; k++)
            if (w->lst[k].l)
                evconnlistener_free(w->lst[k].l);
        free(w->lst);
        if (w->base)
            event_base_free(w->base);
        free(w->abuf);
        pthread_mutex_destroy(&w->mu);
    }
    free(workers);
    workers = NULL;
    nworkers = 0;
    return true;
}
