/*
 * pt_idp -- the developer portal's identity providers (OpenID Connect), an
 * entity of the portal's content: the file's portal.identityProviders, the
 * management API's /management/portal/identityProviders[/{id}], and the
 * links from a provider's subject (sub) to a portal user.  The portal's
 * sign-in flow is core/portal/pt_portal_oidc.c; docs/portal.md#identity-providers.
 *
 * Stored as entities of kind "portal-idp" (id = the provider's id; the store
 * seals clientSecret at rest like subscription keys) and "portal-identity"
 * (id = SHA-256 of provider and sub; body {provider, sub, user}).  The
 * client secret never leaves through the API or `export`: GET shows
 * `hasClientSecret`, export leaves it out (an applied document without it
 * keeps the stored one).
 */
#ifndef PT_IDP_H
#define PT_IDP_H

#include "conf/pt_conf.h"
#include "conf/pt_node.h"
#include "conf/pt_store.h"

#include <jansson.h>

#define PT_IDP_KIND "portal-idp"
#define PT_IDP_LINK_KIND "portal-identity"
#define PT_IDP_MAX 32 /* providers one portal keeps */
#define PT_IDP_DEFAULT_SCOPES "openid email profile"

/* Checks one provider (a node from the file, with file:line:column, or made
   from a JSON body; id: the id it is stored under, or NULL to take its
   own).  Every problem goes to errs. */
bool pt_idp_check(const struct pt_node *n, const char *id, struct pt_errors *errs);
/* The file's portal.identityProviders (pt_conf calls it while loading). */
bool pt_idp_check_file(const struct pt_portal_cf *p, struct pt_errors *errs);
/* The stored form of a checked provider (defaults not filled in: allowSignup
   absent follows site.signupEnabled). */
json_t *pt_idp_json(const struct pt_node *n, const char *id);
/* What the API shows of a stored provider: defaults filled in, clientSecret
   replaced by hasClientSecret (a new object). */
json_t *pt_idp_public(const json_t *stored);
/* The stored providers sorted by id (clientSecret unsealed: for the portal). */
json_t *pt_idp_list(struct pt_store *st);
/* One stored provider (clientSecret unsealed) or NULL. */
json_t *pt_idp_get(struct pt_store *st, const char *id);
/* Writes a provider (checked); a body without clientSecret keeps the stored
   one.  No transaction of its own. */
bool pt_idp_put(struct pt_store *st, json_t *idp, const char *source);
/* May this issuer (or an endpoint its discovery names) be contacted: https,
   or http to a loopback host when insecure is allowed?  *why when not. */
bool pt_idp_url_ok(const char *url, bool allow_insecure, const char **why);

/* Applies a document's portal.identityProviders (inside pt_model_apply's
   transaction, before its sweep, which drops what the file no longer has). */
bool pt_idp_apply(struct pt_store *st, const struct pt_conf *f, const char *source, struct pt_errors *errs);
/* The providers for `export` (without clientSecret), NULL when none; `only`
   ("api") leaves out what the file declares. */
json_t *pt_idp_export(struct pt_store *st, const char *only);

/* The user linked to provider + sub (false when none). */
bool pt_idp_link_get(struct pt_store *st, const char *provider, const char *sub, char user[128]);
/* Links provider + sub to user (inside the caller's transaction). */
bool pt_idp_link_put(struct pt_store *st, const char *provider, const char *sub, const char *user);
/* Drops the link (its user is gone). */
bool pt_idp_link_delete(struct pt_store *st, const char *provider, const char *sub);

#endif
