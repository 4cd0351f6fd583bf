/*
 * pt_req -- the connection layer's own state: client connections, backend
 * pools and connections.  A request's exchange (struct pt_req) is in
 * http/pt_msg.h, below; only the files of core/proxy/ include this one.
 */
#ifndef PT_REQ_H
#define PT_REQ_H

#include "conf/pt_router.h"
#include "event/pt_io.h"
#include "http/pt_http.h"
#include "http/pt_msg.h"
#include "policy/pt_gen.h"
#include "policy/pt_pipeline.h"
#include "policy/pt_policy.h"
#include "proxy/pt_worker.h"

#include <portico/plugin.h>

#include <netinet/in.h>

struct pt_h2up_stream;

enum cstate { C_HEAD, C_BODY, C_WAIT, C_TUNNEL, C_CLOSING, C_LINGER, C_H2 };

struct pt_conn {
    struct pt_list link; /* in w->conns */
    struct pt_tnode timer;
    struct pt_worker *w;
    struct pt_io *io;
    struct pt_peer peer; /* what its requests may know of it: address, TLS, worker */
    enum cstate state;
    struct pt_scan scan;
    unsigned nreqs;
    struct pt_req *req;
    bool in_heads;  /* inside conn_heads() */
    bool again;     /* a request finished inside conn_heads(): look for the next */
    bool peer_done; /* the client ended its side (a half-closed tunnel): no lingering read */
    bool probe;     /* its current request is a status probe: kept out of analytics */
    /* HTTP/2: a client connection in C_H2 runs a session; each of its streams is a connection of its
       own (stream: one request, not counted as a client connection) */
    struct pt_h2 *h2;
    bool stream;
    bool chosen;      /* the protocol was chosen (the first bytes, or ALPN) */
    bool http1, h2ok; /* what the listener serves */
};

struct pt_upool {
    struct pt_upool *next; /* hash chain */
    char *key;
    uint64_t hash;
    struct pt_list idle; /* most recently used at the tail */
    int nidle;
    int nconns;           /* its connections, idle or in use: a pool with none may be dropped */
    bool transient;       /* not in the table (upstream.maxPools reached): freed with its last connection */
    struct pt_list tlink; /* a transient pool: in the worker's upools_transient */
    /* the backend sent bytes nobody asked for (after a response ended, or
       to an idle connection): its connections are not reused before this
       (pt_clock_now_us) -- one connection per request until then */
    uint64_t distrust_until;
    /* HTTP/2: its sessions (pt_h2up), and what ALPN told of the backend (2or1 asks only while unknown) */
    struct pt_list h2s;
    enum { PT_UPROTO_UNKNOWN, PT_UPROTO_H1, PT_UPROTO_H2 } proto;
    uint32_t h2_streams; /* the backend's last SETTINGS_MAX_CONCURRENT_STREAMS (0: none seen yet) */
};

struct pt_upconn {
    struct pt_list link; /* in pool->idle while idle */
    struct pt_tnode timer;
    struct pt_worker *w;
    struct pt_upool *pool;
    struct pt_io *io;
    struct pt_req *req;
    struct pt_scan scan;
    bool reused, connected;
    bool tunnel; /* to a proxy, waiting for its answer to our CONNECT (then TLS to the backend) */
    bool broken; /* the exchange left its framing in doubt: never reuse */
    int interim; /* 1xx responses dropped for the current request */
    struct pt_h2up_stream *h2; /* io is a stream of an HTTP/2 session (pt_h2up); not in idle, never pooled */
};

#endif
