/*
 * pt_worker -- worker threads.
 *
 * Each worker owns an event_base, its own SO_REUSEPORT listening sockets
 * (one per configured address, opened by the control thread so bind errors
 * surface at start), its client connections, its backend connection pools
 * and its access-log buffer.  Workers share nothing mutable on the request
 * path.  The control thread talks to a worker only through its mailbox: a
 * new generation to serve, or a command to drain or stop.
 *
 * Timers: every deadline of a kind has the same length (header timeout,
 * keep-alive, backend read...), so a FIFO list per kind is already sorted;
 * arming is an O(1) move to the tail and a periodic sweep pops expired
 * heads.  No timer touches epoll.
 */
#ifndef PT_WORKER_H
#define PT_WORKER_H

#include "base/pt.h"
#include "http/pt_msg.h"
#include "policy/pt_gen.h"

#include <pthread.h>

struct event_base;
struct event;
struct evconnlistener;

/* ---- control-thread API ---- */

/* Starts n workers serving g (whose listen_fds are open). */
bool pt_workers_start(int n, struct pt_gen *g);
/* Hands g to every worker (each takes its own reference). */
void pt_workers_publish(struct pt_gen *g);
/* Graceful stop: no new connections, finish in-flight requests. */
void pt_workers_drain(void);
/* Whether the node has a configuration to serve (a gateway node waiting for
   its first one is not ready: its status path answers 503).  Any thread. */
void pt_workers_set_ready(bool ready);
bool pt_workers_ready(void);
/* Immediate stop. */
void pt_workers_stop(void);
/* Waits up to timeout_ms for every worker to end; true if they all did. */
bool pt_workers_join(uint32_t timeout_ms);
int pt_workers_count(void);

/* ---- shared by pt_worker.c and pt_proxy.c ---- */

enum pt_tkind {
    PT_T_HEADER,    /* client: whole request head */
    PT_T_BODY,      /* client: between request body reads */
    PT_T_KEEPALIVE, /* client: idle between requests */
    PT_T_SEND,      /* client: not taking our response */
    PT_T_CONNECT,   /* backend: connect (+ TLS handshake) */
    PT_T_READ,      /* backend: between response reads */
    PT_T_IDLE,      /* backend: pooled connection */
    PT_T_TUNNEL,    /* WebSocket tunnel idle */
    PT_T_LINGER,    /* client: reading what it still sends after our last response */
    PT_T_COUNT
};

/* Intrusive doubly linked list; a head points to itself when empty. */
struct pt_list {
    struct pt_list *prev, *next;
};

#define pt_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void pt_list_init(struct pt_list *h)
{
    h->prev = h->next = h;
}

static inline bool pt_list_empty(const struct pt_list *h)
{
    return h->next == h;
}

static inline void pt_list_add_tail(struct pt_list *h, struct pt_list *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static inline void pt_list_del(struct pt_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

struct pt_tnode {
    struct pt_list link;
    uint64_t deadline;
    int8_t kind;                                /* -1 = not armed */
    void (*fire)(struct pt_tnode *t, int kind); /* may free the node */
};

/* A generation as a worker holds it (struct pt_wgen, http/pt_msg.h): requests
   count themselves in `users`. */

struct pt_listener {
    struct pt_worker *w;
    struct evconnlistener *l;
    int fd;
    int index; /* position in the generation's listen list */
};

struct pt_upool;
struct pt_analytics_w;
struct pt_req;
struct pt_conn;

struct pt_worker {
    int id;
    pthread_t thread;
    struct event_base *base;
    struct event *wake;
    struct event *tick;
    pthread_mutex_t mu;     /* guards the mailbox below */
    struct pt_gen *pending; /* mailbox: generation to switch to */
    int command;            /* mailbox: PT_CMD_* */
    bool started, finished;

    struct pt_wgen *cur;
    struct pt_wgen *old;
    struct pt_listener *lst;
    int nlst;
    bool draining;
    bool stopped;     /* past the event loop: the mailbox is no longer read */
    bool paused;      /* listeners disabled: connection limit reached */
    bool paused_node; /* ... because the node was at limits.connections: the tick looks again */

    struct pt_list timers[PT_T_COUNT]; /* one FIFO per kind */
    uint32_t tdur[PT_T_COUNT];

    struct pt_list conns; /* all client connections */
    int nconns;
    int64_t max_conns;
    int64_t node_max_conns; /* limits.connections (0: none) */

    struct pt_upool **pools;
    size_t npools;                   /* chains in pools[] (a power of two) */
    size_t npools_used;              /* pools in the table: at most upstream.maxPools */
    uint64_t pools_reap_at;          /* no scan for unused pools before this (pt_clock_now_ms) */
    struct pt_list upools_transient; /* the pools outside the table (upstream.maxPools reached) */

    struct pt_req *free_reqs;
    int nfree_reqs;

    struct pt_lua *lua;

    char *abuf; /* access-log buffer */
    size_t abuf_n, abuf_cap;
    uint64_t abuf_first; /* when the oldest buffered line was written */
    uint64_t tsec;
    char tstr[48];

    uint64_t rng[2];

    struct pt_analytics_w *an; /* analytics: this worker's chunks (proxy/pt_analytics.c) */
};

enum { PT_CMD_NONE, PT_CMD_DRAIN, PT_CMD_STOP };

static inline void pt_timer_init(struct pt_tnode *t, void (*fire)(struct pt_tnode *, int))
{
    pt_list_init(&t->link);
    t->kind = -1;
    t->fire = fire;
}

static inline void pt_timer_clear(struct pt_tnode *t)
{
    if (t->kind >= 0) {
        pt_list_del(&t->link);
        t->kind = -1;
    }
}

/*
 * (Re)arms t as a timer of `kind`, expiring one kind-length from now.  The
 * list stays sorted: normally the new deadline is the latest and goes to
 * the tail at once; after a reload shortened this kind, it is walked back
 * past the older, longer deadlines (until those expire).
 */
static inline void pt_timer_set(struct pt_worker *w, struct pt_tnode *t, enum pt_tkind kind)
{
    pt_timer_clear(t);
    t->deadline = pt_clock_now_ms() + w->tdur[kind];
    t->kind = (int8_t)kind;
    struct pt_list *head = &w->timers[kind], *at = head->prev;
    while (at != head && pt_container_of(at, struct pt_tnode, link)->deadline > t->deadline)
        at = at->prev;
    pt_list_add_tail(at->next, &t->link);
}

/* The generation new requests use; the caller counts itself as a user. */
struct pt_wgen *pt_worker_gen_acquire(struct pt_worker *w);
void pt_worker_gen_release(struct pt_worker *w, struct pt_wgen *wg);
/* A client connection was taken on / has ended (accounting, drain
   completion): the worker's count and the node's move together. */
void pt_worker_conn_opened(struct pt_worker *w);
void pt_worker_conn_closed(struct pt_worker *w);
/* Appends a finished access-log line (without newline). */
void pt_worker_access(struct pt_worker *w, const char *line, size_t n);

/* pt_proxy.c */
/* Registers the connection layer with the pipeline driver and the message layer (once, at start). */
void pt_conn_init(void);
void pt_conn_accept(struct pt_worker *w, int fd, const struct sockaddr *sa, int socklen, int li);
void pt_conn_drain(struct pt_worker *w); /* close idle connections now */
void pt_conn_stop(struct pt_worker *w);  /* close everything now */
void pt_upstream_free_pools(struct pt_worker *w);

/* The access-log file descriptor shared by all workers: PT_WORKER_ACCESS_OFF, or
   PT_WORKER_ACCESS_LOGGER when lines go to the generation's logger (log.access: logger:ID). */
extern int pt_worker_access_fd;
#define PT_WORKER_ACCESS_OFF (-1)
#define PT_WORKER_ACCESS_LOGGER (-2)

#endif
