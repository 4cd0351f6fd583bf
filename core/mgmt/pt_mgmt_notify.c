/*
 * pt_mgmt_notify -- mails about a subscription's state: when a submitted
 * subscription becomes active (approved) or rejected, its owner gets the
 * subscription-approved or subscription-rejected mail.
 *
 * Both ways of deciding end here: the management API (a PUT or PATCH that
 * moves a subscription from submitted to active or rejected) and the
 * portal's approvals page.  A mail that cannot be sent is logged; the
 * decision stands (it is already published).  Without a portal (no
 * portal.listen) nothing is sent.
 */
#include "base/pt_log.h"
#include "conf/pt_content.h"
#include "http/pt_mail.h"
#include "mgmt/pt_mgmt_int.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static const char *str(const json_t *o, const char *k, const char *def)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : def;
}

/* The portal's address for links in mails: portal.publicUrl, else from its
   listen address; "" when there is no portal. */
static void portal_url(const struct pt_conf *file, char *out, size_t size)
{
    const struct pt_portal_cf *p = &file->portal;
    if (p->public_url && *p->public_url) {
        snprintf(out, size, "%s", p->public_url);
    } else if (p->listen && *p->listen) {
        const char *addr = p->listen;
        bool tls = p->cert.certificate != NULL;
        /* ":8002" and "0.0.0.0:8002" are reached on loopback */
        if (*addr == ':')
            snprintf(out, size, "%s://127.0.0.1%s", tls ? "https" : "http", addr);
        else if (!strncmp(addr, "0.0.0.0:", 8))
            snprintf(out, size, "%s://127.0.0.1:%s", tls ? "https" : "http", addr + 8);
        else
            snprintf(out, size, "%s://%s", tls ? "https" : "http", addr);
    } else
        *out = '\0';
    size_t n = strlen(out);
    while (n && out[n - 1] == '/')
        out[--n] = '\0';
}

void pt_mgmt_notify_sub_state(struct pt_store *st, const struct pt_conf *file, const char *id,
                              const json_t *sub, const char *old_state)
{
    const char *state = str(sub, "state", "");
    if (!old_state || strcmp(old_state, "submitted"))
        return;
    const char *tpl = !strcmp(state, "active")     ? "subscription-approved"
                      : !strcmp(state, "rejected") ? "subscription-rejected"
                                                   : NULL;
    if (!tpl)
        return;
    if (!file->portal.listen) /* no portal: nowhere to point the owner, no mail set up */
        return;
    const char *owner = str(sub, "ownerId", "");
    const char *uid = strstr(owner, "/users/");
    json_t *user = NULL;
    if (!uid || !pt_store_get(st, "user", "", uid + 7, &user, NULL) || !str(user, "email", NULL)) {
        json_decref(user);
        pt_info("subscription %s is %s; its owner has no email address to tell", id, state);
        return;
    }
    /* the product's name for people */
    const char *scope = str(sub, "scope", ""), *pid = strstr(scope, "/products/");
    json_t *product = NULL;
    if (pid)
        pt_store_get(st, "product", "", pid + 10, &product, NULL);
    const char *pname = product ? str(product, "displayName", pid + 10) : scope;
    char base[1024], link[1100];
    portal_url(file, base, sizeof(base));
    snprintf(link, sizeof(link), "%s/subscriptions", base);
    /* the site's title as guests see it: the published revision's, else the file's */
    json_t *rev = pt_content_revision(st, pt_content_latest(st));
    const char *title = json_string_value(json_object_get(json_object_get(rev, "site"), "title"));
    if (!title || !*title)
        title = json_string_value(json_object_get(file->portal.site, "title"));
    json_t *vars =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "firstName", str(user, "firstName", ""), "lastName",
                  str(user, "lastName", ""), "email", str(user, "email", ""), "product", pname,
                  "subscription", str(sub, "displayName", id), "comment", str(sub, "stateComment", ""),
                  "link", link, "siteTitle", title ? title : "Portico developer portal");
    char err[256];
    if (!pt_mail_send_template(st, &file->portal.mail, tpl, str(user, "email", ""), vars, err, sizeof(err)))
        pt_warn("subscription %s: the %s mail to %s was not sent: %s", id, tpl, str(user, "email", ""), err);
    json_decref(vars);
    json_decref(rev);
    json_decref(product);
    json_decref(user);
}
