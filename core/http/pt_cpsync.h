/*
 * pt_cpsync -- a gateway node's side of the control plane (docs/gateways.md).
 *
 * Two threads of its own, both blocking in pt_fetch (cancelled at once at
 * stop through a pipe):
 *   - the sync thread long-polls GET .../configuration with the generation it
 *     has; each new document is handed to the control thread (a pipe wakes
 *     it), applied there like a reload through the caller's hook, and, once
 *     applied, written to the encrypted backup;
 *   - the heartbeat thread POSTs the node's status (and its analytics batch)
 *     every controlPlane.heartbeat seconds.
 * A control plane that cannot be reached or answers 5xx changes nothing that
 * is served: the sync thread backs off (1 s doubling to 30 s, with jitter),
 * logs each change of state (and once a minute while it lasts) and counts it.
 * An expired token (its own expiry, or 401 TokenExpired) stops the syncing,
 * one attempt a minute in case the token file changed, never the serving.
 *
 * The backup: "PTCB1\n", a random 12-byte nonce, then the document
 * AES-256-GCM-encrypted (the magic as additional data) with its 16-byte tag;
 * the key is HKDF-SHA256 of the token's signature part (its text), salt
 * "portico config backup", info the gateway id.  Written to a temporary file,
 * fsync'd and renamed (mode 0600).
 */
#ifndef PT_CPSYNC_H
#define PT_CPSYNC_H

#include "base/pt.h"
#include "conf/pt_conf.h"

#include <jansson.h>

struct event_base;

struct pt_cpsync_hooks {
    /* On the control thread: serve `entities` (a document's entity lists).  False, with err, when
       they cannot be applied (the running configuration stays). */
    bool (*apply)(const json_t *entities, char *err, size_t errlen);
    /* The analytics batch to ship with a heartbeat (NULL: none), and the way back for a batch that
       was not delivered (ownership goes with it).  Any thread. */
    json_t *(*analytics_take)(void);
    void (*analytics_putback)(json_t *batch);
};

/* Starts both threads with cf's controlPlane settings.  generation: the one served already (from
   the backup), 0 for none.  False (logged) when the threads cannot start. */
bool pt_cpsync_start(struct event_base *ctl, const struct pt_conf *cf, const struct pt_cpsync_hooks *hooks,
                     uint64_t generation);
/* New settings (SIGHUP): used from the next attempt on. */
void pt_cpsync_configure(const struct pt_conf *cf);
/* Ends both threads (their fetches are cancelled); on the control thread. */
void pt_cpsync_stop(void);

/* The token: controlPlane.token, or tokenFile's text (trimmed).  malloc'd; NULL with err. */
char *pt_cpsync_token(const struct pt_cp_cf *cp, char *err, size_t errlen);

/* The backup at start: the document it holds (an object with gateway, generation, entities), or
   NULL: err empty when there is none (or none configured), else why it is not used. */
json_t *pt_cpsync_backup_load(const struct pt_cp_cf *cp, char *err, size_t errlen);

/* ---- the backup format, on its own for tests ---- */
#define PT_CPSYNC_BACKUP_MAGIC "PTCB1\n"
#define PT_CPSYNC_BACKUP_MAX (512u << 20) /* a backup larger than this is refused */

/* plain -> the backup's bytes (malloc'd, *outlen set); false with err. */
bool pt_cpsync_backup_seal(const char *token, const char *plain, size_t len, unsigned char **out,
                           size_t *outlen, char *err, size_t errlen);
/* The backup's bytes -> the document's text (malloc'd, NUL-terminated, *outlen set); NULL with err. */
char *pt_cpsync_backup_open(const char *token, const unsigned char *in, size_t len, size_t *outlen, char *err,
                            size_t errlen);
/* Writes the backup atomically (temp file, fsync, rename; mode 0600). */
bool pt_cpsync_backup_write(const char *path, const char *token, const char *plain, size_t len, char *err,
                            size_t errlen);
/* Reads and decrypts a backup; NULL with err ("" when the file does not exist). */
char *pt_cpsync_backup_read(const char *path, const char *token, size_t *len, char *err, size_t errlen);

#endif
