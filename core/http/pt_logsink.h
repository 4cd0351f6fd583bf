/*
 * pt_logsink -- log sinks: the delivery side of the `loggers` entities
 * (file, syslog over UDP, TCP or a unix socket, HTTP batches).
 *
 * A worker never waits for a logger: pt_logsink_emit copies the message
 * into a bounded lock-free queue (many producers, one consumer) and
 * returns; each sink has one thread of its own that drains the queue and
 * does the I/O.  A full queue drops the new message and counts it.
 *
 * Sinks are reference-counted and shared by the generations that use them:
 * a generation whose logger is configured exactly as the running one's
 * takes the same sink (its queue and its connection go on), a changed or
 * removed logger's sink is released with the last generation holding it and
 * gets PT_LOGSINK_CLOSE_MS to deliver what it holds.  Per-logger counters
 * (pt_logsink_stats) outlive the sinks: they are kept by logger id for the
 * life of the process.
 */
#ifndef PT_LOGSINK_H
#define PT_LOGSINK_H

#include "base/pt.h"
#include "conf/pt_conf.h"

struct pt_logsink;

/* What a queued piece of text is. */
enum {
    PT_LOGSINK_MESSAGE = 0, /* one message (log-to-eventhub) */
    PT_LOGSINK_LINES = 1,   /* newline-terminated lines, each one message (the access log's buffer) */
};

/* The largest message a policy hands over: APIM's 200 KB limit of log-to-eventhub.  Longer
   messages are cut to it (pt_logsink_cut). */
#define PT_LOGSINK_MESSAGE_MAX (200 * 1024)
/* How long a released sink (and every sink at stop, at most) keeps delivering what it holds. */
#define PT_LOGSINK_CLOSE_MS 5000

/* The sink for a logger: the running one when its settings are the same, else a new one with its
   thread started (the destination is opened by that thread, so this never blocks).  A new
   reference; NULL when no thread can be started. */
struct pt_logsink *pt_logsink_get(const struct pt_logger_cf *l);
/* Drops a reference; the last one lets the sink deliver what it holds (at most
   PT_LOGSINK_CLOSE_MS) and end.  Cheap: may be called from a worker. */
void pt_logsink_put(struct pt_logsink *s);
/* Queues a copy of data (kind PT_LOGSINK_*) with its partition id and key (empty: none) and the
   current time.  Never blocks and takes no lock.  false when it was dropped (queue full or out of
   memory), which is counted. */
bool pt_logsink_emit(struct pt_logsink *s, int kind, const char *data, size_t len, pt_str partition_id,
                     pt_str partition_key);
/* Asks file sinks to reopen their files (SIGUSR1). */
void pt_logsink_reopen(void);
/* At stop, after the last generation is released: waits until every sink has delivered and ended,
   at most ms. */
void pt_logsink_shutdown(uint32_t ms);

/* One logger's counters (since the process started, across reloads and changes). */
struct pt_logsink_stats {
    const char *id;   /* the logger's id (lives as long as the process) */
    uint64_t sent;    /* messages delivered (written, sent, accepted by the HTTP receiver) */
    uint64_t dropped; /* messages refused because the queue was full, or left at stop */
    uint64_t failed;  /* messages given up on after an error (and the retries) */
    uint64_t queued;  /* messages waiting now */
};
/* Fills out with up to max loggers' counters (every id that ever had a sink); returns how many there
   are.  For /metrics (portico_logger_messages_total{logger, outcome}). */
int pt_logsink_stats(struct pt_logsink_stats *out, int max);

/* ---- pure helpers, for tests ---- */

/* The longest prefix of s[0..len) that is at most max bytes and does not split a UTF-8
   sequence. */
size_t pt_logsink_cut(const char *s, size_t len, size_t max);

/* An SD-PARAM of RFC 5424 structured data. */
struct pt_logsink_sd {
    const char *name; /* an SD-NAME: printable ASCII but = ] " and space, at most 32 */
    pt_str value;     /* escaped as the RFC says: " \ and ] get a backslash */
};

/*
 * Formats one RFC 5424 message into out (cap bytes): "<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID
 * MSGID SD MSG".  HOSTNAME, APP-NAME and MSGID are cut to 255, 48 and 32 characters and bytes
 * outside printable ASCII become '_' ("-" when empty); the structured data is one element
 * [sd_id ...] with the params whose value is not empty ("-" when none, or when it would not fit in
 * max).  The message follows as it is, cut (at a UTF-8 boundary) so that the whole frame is at most
 * max bytes.  Returns the frame's length (no terminator; cap must be at least max).
 */
size_t pt_logsink_syslog_format(char *out, size_t max, int pri, uint64_t wall_ms, const char *hostname,
                                const char *app, int procid, const char *msgid, const char *sd_id,
                                const struct pt_logsink_sd *params, int nparams, const char *msg, size_t len);

#endif
