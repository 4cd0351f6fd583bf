/*
 * pt_gen -- configuration generations.
 *
 * A generation is everything a worker needs to serve requests, built from
 * one validated configuration: the router, each API's resolved backend,
 * TLS contexts.  It is immutable and reference-counted.  The control thread
 * builds a new one off the hot path, and only when the whole build succeeds
 * hands it to the workers (pt_worker_publish); a request keeps the
 * generation it started with until it ends.  Its data types are in
 * conf/pt_genmodel.h.
 */
#ifndef PT_GEN_H
#define PT_GEN_H

#include "base/pt.h"
#include "conf/pt_genmodel.h"
#include "policy/pt_policy.h"

/*
 * Checks the policy documents of a configuration file whose other parts
 * have errors (so that every error is reported at once).  Reads the file's
 * raw tree again; adds errors to errs.
 */
void pt_gen_check_policies(const char *path, struct pt_errors *errs);

/* Builds a generation; takes ownership of conf on success. NULL + errs on failure. */
struct pt_gen *pt_gen_build(struct pt_conf *conf, struct pt_errors *errs);
/* A generation that shares everything of prev's body (prev itself when it was built in full) but
   the subscriptions and key table, built from conf (pt_model_build_subs over the body's conf);
   checks the subscriptions' references first (pt_conf_check_subs); takes ownership of conf on
   success.  NULL + errs on failure: prev serves on, conf stays the caller's. */
struct pt_gen *pt_gen_with_subs(struct pt_gen *prev, struct pt_conf *conf, struct pt_errors *errs);
/* Builds and discards a generation to check conf (keeps conf).  With refs
   false, references to entities not in conf are not errors (they may be in
   the store). */
bool pt_gen_validate(struct pt_conf *conf, bool refs, struct pt_errors *errs);
/* The subscription a key belongs to (constant-time comparison), or NULL. */
const struct pt_subscription *pt_gen_find_key(const struct pt_gen *g, pt_str key);
/* An operation's definition as JSON text (what plugins read of it), made at the first call and
   kept with the generation; any thread. */
pt_str pt_gen_op_definition(const struct pt_operation *op);
/* The backend entity with this id (NULL: none); g->backends is sorted by id. */
struct pt_backdef *pt_gen_find_backend(const struct pt_gen *g, pt_str id);
/* true when a policy of `workspace` (NULL or "": the service level) may name backend d: APIM keeps a
   workspace's policies to its own backends and the service's to the service's. */
bool pt_gen_backend_usable(const struct pt_backdef *d, const char *workspace);
/* A base URL written literally in set-backend-service or proxy, resolved with the generation. */
struct pt_backend *pt_gen_find_url(const struct pt_gen *g, pt_str url);
/* Does the product hold the API? */
bool pt_gen_product_has_api(const struct pt_product *p, const struct pt_apidef *api);
/* Gives g a sink for each of its loggers (running ones whose settings did not change are shared):
   call once, before the workers see g.  The sinks are released with g. */
void pt_gen_start_loggers(struct pt_gen *g);
void pt_gen_ref(struct pt_gen *g);
void pt_gen_unref(struct pt_gen *g);
/* Has a generation been freed (on any thread) since the last call?  The control thread gives the
   freed heap back to the system then. */
bool pt_gen_take_released(void);

#endif
