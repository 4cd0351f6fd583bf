/*
 * pt_mgmt -- the management REST API.
 *
 * Served on its own listener (management.listen) by the control thread,
 * JSON under /management/.  Reads come from the store; every write is one
 * store transaction that is validated by building the complete next
 * generation before it commits, then published to the workers.  So a write
 * either takes effect everywhere or changes nothing.
 */
#ifndef PT_MGMT_H
#define PT_MGMT_H

#include "conf/pt_conf.h"
#include "conf/pt_store.h"

#include <event2/event.h>
#include <jansson.h>

struct evbuffer;
/* doc as a YAML document (block style; strings quoted only where a reader
   could take them for something else) appended to out; false on failure. */
bool pt_mgmt_export_yaml(struct evbuffer *out, const json_t *doc);

struct pt_mgmt_hooks {
    /* The configuration file's settings (for validation). */
    const struct pt_conf *(*file)(void);
    /* Called inside an open store transaction after a change: builds the
       generation from the store and, when it is good, commits and publishes
       it.  On failure it rolls the transaction back and fills errs. */
    bool (*publish)(struct pt_errors *errs);
};

/* Starts serving on file->mgmt.listen (nothing when unset). */
bool pt_mgmt_start(struct event_base *base, const struct pt_conf *file, struct pt_store *st,
                   const struct pt_mgmt_hooks *hooks, struct pt_errors *errs);
void pt_mgmt_stop(void);

/* Opens the metrics' own listener (metrics.listen; nothing when unset): the
   Prometheus text at metrics.path (pt_mgmt_metrics.c). */
bool pt_mgmt_metrics_start(struct event_base *base, const struct pt_conf *file, struct pt_store *st,
                           const struct pt_mgmt_hooks *hooks, struct pt_errors *errs);
void pt_mgmt_metrics_stop(void);

/* After every publish (a management write, a reload): raises the gateways' sync generation (kept in
   the store) and wakes the nodes' long-polls whose document changed (pt_mgmt_gateways.c). */
void pt_mgmt_gateways_published(void);

/* After a subscription's state changed from old_state: when a submitted one
   became active or rejected, mails its owner subscription-approved or
   subscription-rejected (templates of http/pt_mail; vars product,
   subscription, comment = stateComment, link = the portal's /subscriptions).
   `sub` is its stored body.  Failures are logged (pt_mgmt_notify.c). */
void pt_mgmt_notify_sub_state(struct pt_store *st, const struct pt_conf *file, const char *id,
                              const json_t *sub, const char *old_state);

#endif
