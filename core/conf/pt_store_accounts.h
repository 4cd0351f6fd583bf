/*
 * pt_store_accounts -- the developer portal's account tables in the store
 * (schema version 3), beside the entities:
 *
 *   portal_credentials  a user's Argon2id hash (encoded form), the address
 *                       it was set for, and security stamp; the stamp grows on every password change,
 *                       reset or closing, which ends the sessions made with
 *                       an older stamp
 *   portal_sessions     one row per session, keyed by the SHA-256 of its id
 *                       (the id itself is only in the visitor's cookie): the
 *                       user ("" for a guest), when it began and was last
 *                       seen (ms), its CSRF token, the stamp it began with
 *   portal_tokens       single-use tokens (confirm, reset, invite), keyed by
 *                       their SHA-256: the user, the expiry (ms), whether used
 *   portal_throttle     failed sign-ins per key ("account:<email>",
 *                       "address:<ip>"): failures, locked until (ms)
 *
 * The writes are single statements outside pt_store_begin's transactions
 * (they do not change the entities, so the management API's change counter
 * stays), or join one when the caller has opened it (a sign-up writes the
 * user and its password together).  Only the control thread calls these.
 * Times are Unix milliseconds.
 */
#ifndef PT_STORE_ACCOUNTS_H
#define PT_STORE_ACCOUNTS_H

#include "base/pt.h"
#include "conf/pt_store.h"

#include <jansson.h>

/* The id of the user whose email is `email` (compared without case). */
bool pt_store_accounts_user_by_email(struct pt_store *s, const char *email, char id[128]);
/* Appends to `groups` (an array) the ids of the groups user is in. */
bool pt_store_accounts_user_groups(struct pt_store *s, const char *user, json_t *groups);

/* A user's password hash (encoded Argon2id) and stamp; false when the user
   has no password, or when it was set for another address than `email`
   (compared without case): a user deleted and made again with the same id
   for someone else does not inherit the password, and an address changed
   by an administrator needs a new password (by the reset mail). */
bool pt_store_accounts_cred_get(struct pt_store *s, const char *user, const char *email, char *hash,
                                size_t hashlen, int64_t *stamp);
/* Sets a user's password hash for their address and moves the stamp on (the
   time in ms, or the last stamp + 1 when that is higher); the new stamp in
   *stamp when not NULL. */
bool pt_store_accounts_cred_set(struct pt_store *s, const char *user, const char *email, const char *hash,
                                int64_t *stamp);
/* Removes a user's password (closing); their sessions no longer load. */
bool pt_store_accounts_cred_delete(struct pt_store *s, const char *user);

struct pt_store_accounts_session {
    char user[128]; /* "" for a guest */
    int64_t created, seen, stamp;
    char csrf[80];
};
bool pt_store_accounts_session_put(struct pt_store *s, const char *id_hash,
                                   const struct pt_store_accounts_session *se);
bool pt_store_accounts_session_get(struct pt_store *s, const char *id_hash,
                                   struct pt_store_accounts_session *se);
bool pt_store_accounts_session_seen(struct pt_store *s, const char *id_hash, int64_t now);
bool pt_store_accounts_session_delete(struct pt_store *s, const char *id_hash);
/* Ends every session of a user; how many ended, or -1. */
int pt_store_accounts_session_delete_user(struct pt_store *s, const char *user);
/* Drops sessions idle since before `idle_before` or begun before
   `created_before`; then, past `cap` sessions, the least recently seen
   guest sessions.  How many were dropped, or -1. */
int pt_store_accounts_session_sweep(struct pt_store *s, int64_t idle_before, int64_t created_before, int cap);
int pt_store_accounts_session_count(struct pt_store *s, const char *user);

/* A single-use token: purpose "confirm", "reset" or "invite". */
bool pt_store_accounts_token_put(struct pt_store *s, const char *hash, const char *purpose, const char *user,
                                 int64_t expires);
/* Uses a token: true (and its user) only once, for its purpose, before its
   expiry; it is marked used in the same statement. */
bool pt_store_accounts_token_use(struct pt_store *s, const char *hash, const char *purpose, int64_t now,
                                 char user[128]);
/* Whether a token would be accepted now (the forms that a link opens), and
   its user; nothing is changed. */
bool pt_store_accounts_token_peek(struct pt_store *s, const char *hash, const char *purpose, int64_t now,
                                  char user[128]);
/* Drops a user's unused tokens of a purpose (NULL = every purpose). */
bool pt_store_accounts_token_drop_user(struct pt_store *s, const char *user, const char *purpose);
/* Drops tokens expired before `before`. */
int pt_store_accounts_token_sweep(struct pt_store *s, int64_t before);

struct pt_store_accounts_throttle {
    int64_t failures;
    int64_t locked_until;
    int64_t updated;
};
/* A throttle row (all zero when the key has none). */
bool pt_store_accounts_throttle_get(struct pt_store *s, const char *key,
                                    struct pt_store_accounts_throttle *t);
bool pt_store_accounts_throttle_put(struct pt_store *s, const char *key,
                                    const struct pt_store_accounts_throttle *t);
bool pt_store_accounts_throttle_clear(struct pt_store *s, const char *key);
/* Drops rows not locked and not updated since `before`; then past `cap`
   rows, the oldest.  How many were dropped, or -1. */
int pt_store_accounts_throttle_sweep(struct pt_store *s, int64_t now, int64_t before, int cap);

#endif
