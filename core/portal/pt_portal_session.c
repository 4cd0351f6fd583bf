/*
 * pt_portal_session -- sessions and CSRF tokens.
 *
 * PLACEHOLDER (H-A) so that the server builds: everyone is a guest and there
 * are no sessions.  H-B's version (sessions in the store, rotation, idle and
 * absolute limits) replaces this file.
 */
#include "portal/pt_portal_int.h"

void pt_portal_session_load(struct pt_portal_req *r)
{
    r->user = NULL;
    r->session_id[0] = '\0';
    r->csrf[0] = '\0';
}

bool pt_portal_session_start(struct pt_portal_req *r, const char *user_id)
{
    (void)r;
    (void)user_id;
    return false;
}

void pt_portal_session_end(struct pt_portal_req *r)
{
    (void)r;
}

void pt_portal_session_end_user(const char *user_id)
{
    (void)user_id;
}

bool pt_portal_session_guest(struct pt_portal_req *r)
{
    (void)r;
    return false;
}
