/*
 * pt_portal -- the developer portal: a web site generated from the stored
 * API definitions, served by the control thread on its own listener
 * (portal.listen).  See docs/portal.md.
 */
#ifndef PT_PORTAL_H
#define PT_PORTAL_H

#include "conf/pt_conf.h"
#include "conf/pt_store.h"
#include "mgmt/pt_mgmt.h"

#include <event2/event.h>

/* Starts serving on file->portal.listen (nothing when unset).  Writes (a
   sign-up, a subscription) go through hooks->publish like the management
   API's. */
bool pt_portal_start(struct event_base *base, const struct pt_conf *file, struct pt_store *st,
                     const struct pt_mgmt_hooks *hooks, struct pt_errors *errs);
void pt_portal_stop(void);

#endif
