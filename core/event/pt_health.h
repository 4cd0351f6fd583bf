/*
 * pt_health -- active health checks of backends, on a thread of its own
 * (never a worker, never the control thread's loop): each probe sends
 * `GET path` to its backend every `interval_ms` and waits at most
 * `timeout_ms` for a status line; 200-399 is a success, anything else
 * (another status, refused, reset, timeout, TLS failure) a failure.  The
 * results go to the backend's node-wide state (pt_breaker_health), which
 * marks it down after `unhealthy` failures in a row and up again after
 * `healthy` successes in a row; changes are logged.
 *
 * The control thread hands over the probes of each new generation
 * (pt_health_set copies them); the thread takes them at its next turn.
 */
#ifndef PT_HEALTH_H
#define PT_HEALTH_H

#include "base/pt.h"

#include <sys/socket.h>

struct pt_bestate;
typedef struct ssl_ctx_st SSL_CTX;

struct pt_health_probe {
    const char *id;        /* the backend's id, for the log */
    const char *host;      /* TLS name (SNI, verification) */
    const char *authority; /* the Host header */
    const char *path;      /* starts with '/' */
    struct sockaddr_storage sa;
    socklen_t salen;
    SSL_CTX *tls; /* NULL: plain */
    bool verify;
    uint32_t interval_ms, timeout_ms;
    int healthy, unhealthy;
    struct pt_bestate *state;
};

/* Replaces the probes (control thread); the thread starts at the first call
   with probes.  Takes references to the states and TLS contexts. */
void pt_health_set(const struct pt_health_probe *p, int n);
/* The probes of a generation's backends (each Single with a healthCheck),
   handed over with pt_health_set. */
struct pt_gen;
void pt_health_from_gen(const struct pt_gen *g);
/* Stops the thread and drops every probe. */
void pt_health_stop(void);

#endif
