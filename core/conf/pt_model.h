/*
 * pt_model -- the entity model between the configuration file, the store
 * and generations.
 *
 * A generation is built from one configuration tree: the file's settings
 * (listeners, limits, timeouts...) plus every entity in the store, in the
 * same shape as the file (apis with their operations and policies,
 * products with their apis and groups...).  So the file, the store and the
 * management API share one set of validators.
 *
 * Entities declared in the file are owned by it: applying the file upserts
 * them (source "config") and removes the ones it no longer declares;
 * entities written through the management API (source "api") are left
 * alone.  Subscription keys that the file does not give are generated once
 * and kept.
 */
#ifndef PT_MODEL_H
#define PT_MODEL_H

#include "conf/pt_conf.h"
#include "conf/pt_store.h"

#include <jansson.h>

/* Entity kinds as stored, and their lists in the configuration tree. */
struct pt_kind {
    const char *kind; /* "api", "product", ... */
    const char *list; /* "apis", "products", ... */
    const char *path; /* REST collection: "apis", "products", ... */
};
extern const struct pt_kind pt_model_kinds[];

/* Applies the file's entity lists to the store (one transaction). */
bool pt_model_apply_file(struct pt_store *st, const struct pt_conf *file, const char *secret_key,
                         struct pt_errors *errs);
/* The same for a document sent to the management API (source "api"):
   upserts only; entities the file declares are refused. */
bool pt_model_apply(struct pt_store *st, const struct pt_conf *doc, const char *secret_key,
                    const char *source, struct pt_errors *errs);
/* Whether two API paths are one: leading and trailing slashes do not count, as for routing. */
bool pt_model_same_path(const char *a, const char *b);
/* Deletes an entity and what goes with it, as a management DELETE does: an API's operations and
   policy documents, a product's or workspace's policy, and every link (of any source) from or to
   it.  Subscriptions are not links: they stay, and the next check names them. */
bool pt_model_remove(struct pt_store *st, const char *kind, const char *parent, const char *id);
/*
 * The configuration to run: the file's settings and the store's entities,
 * validated (errors name JSON paths).  NULL with errs on failure.
 */
struct pt_conf *pt_model_build(struct pt_store *st, const struct pt_conf *file, const char *secret_key,
                               struct pt_errors *errs);

/*
 * What a new generation must read again.  A mark is taken when a generation built from the store
 * is published; pt_model_subs_only then says whether every write since touched subscriptions only
 * (no rollback, sweep or reseal, no other kind): the next generation may share everything of the
 * marked one but its subscriptions and key table (pt_model_build_subs).
 */
struct pt_model_mark {
    uint64_t store;  /* pt_store_serial */
    uint64_t any;    /* pt_store_any_writes */
    uint64_t entity; /* pt_store_entity_writes */
    uint64_t subs;   /* pt_store_kind_writes("subscription") */
    bool taken;
};
void pt_model_mark_take(struct pt_store *st, struct pt_model_mark *m);
bool pt_model_subs_only(struct pt_store *st, const struct pt_model_mark *m);
/* `base` (the configuration of the marked generation, built by pt_model_build from the same file)
   with the store's subscriptions as they are now, read as pt_model_build reads them (the same
   messages; their references are checked by pt_conf_check_subs).  NULL with errs when they do
   not read. */
struct pt_conf *pt_model_build_subs(struct pt_store *st, const struct pt_conf *file,
                                    const struct pt_conf *base, const char *secret_key,
                                    struct pt_errors *errs);

/* Every entity in the store as the configuration file's lists (apis with
   operations and policies, products with apis and groups, subscriptions
   with their keys, secret named values decrypted): what `export` writes.
   `only` ("api") leaves out what another source (the file) declares. */
json_t *pt_model_entities(struct pt_store *st, const char *secret_key, const char *only,
                          struct pt_errors *errs);

/* The same (only NULL), shared and read-only: built again only when the store's entities were
   written since the last call (pt_store_entity_writes).  Never change what it returns; release it
   with json_decref.  pt_model_entities_forget drops the copy kept (at exit). */
json_t *pt_model_entities_shared(struct pt_store *st, const char *secret_key, struct pt_errors *errs);
void pt_model_entities_forget(void);

/* A document of entity lists (a management request) read with the file's
   settings, validated as the file is.  `positions` (the parsed YAML, when
   the body was text) gives errors NAME:line:column; without it errors
   name paths such as "apis[0].path". */
struct pt_conf *pt_model_parse_doc(const struct pt_conf *file, const json_t *doc,
                                   const struct pt_node *positions, const char *name, struct pt_errors *errs);

/* A new random subscription key (32 hex characters). */
void pt_model_new_key(char out[33]);
/* A subscription's allowTracingSince as the gateway keeps it: when `sub`
   (being written) has allowTracing on, the time it was turned on (kept from
   `old`, the stored subscription or NULL, when it was on there too; else now);
   removed when allowTracing is off. */
void pt_model_trace_since(json_t *sub, const json_t *old);
/* Encrypts / decrypts a secret named value with the secret key (AES-256-GCM). */
char *pt_model_seal(const char *secret_key, const char *plain);
char *pt_model_unseal(const char *secret_key, const char *sealed);
/* A stored certificate (its body o) back to what the configuration reads: data with the private key
   unsealed; false with a reason when the key cannot be unsealed. */
/* Logs the certificates of cf near or past expiry, each once: fresh (a start or a reload) logs
   them all again. */
void pt_model_log_expiry(const struct pt_conf *cf, bool fresh);
bool pt_model_cert_unseal(const char *secret_key, json_t *o, char *err, size_t errlen);
/* The effective secret key: the configuration's, else $PORTICO_SECRET_KEY,
   else the key file's (see below), else NULL. */
const char *pt_model_secret_key(const struct pt_conf *cf);
/* Reads dir/secret.key, creating it (mode 0600, random) when absent. */
bool pt_model_load_keyfile(const char *dir, char *err, size_t errlen);

#endif
