/*
 * pt_store_accounts -- the portal's account tables: credentials, sessions,
 * single-use tokens and the sign-in throttle (see the header).
 */
#include "conf/pt_store_accounts.h"

#include "base/pt_log.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A statement for one call, finalized by the caller (done() or
   sqlite3_finalize): none outlives the call, so closing the store finds no
   statement of this file open. */
static sqlite3_stmt *prep(struct pt_store *s, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(pt_store_sqlite(s), sql, -1, &st, NULL) != SQLITE_OK) {
        pt_warn("store: accounts: %s", sqlite3_errmsg(pt_store_sqlite(s)));
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    sqlite3_bind_text(st, i, v ? v : "", -1, SQLITE_TRANSIENT);
}

/* Runs a write; true when it ran (not whether it changed a row). */
static bool done(struct pt_store *s, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        pt_warn("store: accounts: %s", sqlite3_errmsg(pt_store_sqlite(s)));
        return false;
    }
    return true;
}

static void copy_col(sqlite3_stmt *st, int col, char *out, size_t size)
{
    const char *v = (const char *)sqlite3_column_text(st, col);
    snprintf(out, size, "%s", v ? v : "");
}

bool pt_store_accounts_user_by_email(struct pt_store *s, const char *email, char id[128])
{
    /* the same expression as the index entities_user_email (migration 3) */
    sqlite3_stmt *st = prep(s, "SELECT id FROM entities WHERE kind = 'user'"
                               " AND lower(json_extract(body, '$.email')) = lower(?1) ORDER BY id LIMIT 1");
    if (!st)
        return false;
    bind_text(st, 1, email);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    if (found)
        copy_col(st, 0, id, 128);
    sqlite3_finalize(st);
    return found;
}

bool pt_store_accounts_user_groups(struct pt_store *s, const char *user, json_t *groups)
{
    sqlite3_stmt *st =
        prep(s, "SELECT a FROM links WHERE kind = 'group-user' AND b = ?1 ORDER BY a LIMIT 1000");
    if (!st)
        return false;
    bind_text(st, 1, user);
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(groups, json_string((const char *)sqlite3_column_text(st, 0)));
    sqlite3_finalize(st);
    return true;
}

/* ------------------------------------------------------------ credentials */

bool pt_store_accounts_cred_get(struct pt_store *s, const char *user, const char *email, char *hash,
                                size_t hashlen, int64_t *stamp)
{
    sqlite3_stmt *st =
        prep(s, "SELECT hash, stamp FROM portal_credentials WHERE user = ?1 AND email = lower(?2)");
    if (!st)
        return false;
    bind_text(st, 1, user);
    bind_text(st, 2, email);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    if (found) {
        if (hash)
            copy_col(st, 0, hash, hashlen);
        if (stamp)
            *stamp = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    return found;
}

bool pt_store_accounts_cred_set(struct pt_store *s, const char *user, const char *email, const char *hash,
                                int64_t *stamp)
{
    /* stamps come from the clock, so one set after the row was deleted
       (closing) still starts above the stamps sessions held before */
    sqlite3_stmt *st =
        prep(s, "INSERT INTO portal_credentials (user, email, hash, stamp, updated)"
                " VALUES (?1, lower(?2), ?3, ?4, ?4)"
                " ON CONFLICT (user) DO UPDATE SET email = excluded.email, hash = excluded.hash,"
                " stamp = max(portal_credentials.stamp + 1, excluded.stamp), updated = excluded.updated"
                " RETURNING stamp");
    if (!st)
        return false;
    bind_text(st, 1, user);
    bind_text(st, 2, email);
    bind_text(st, 3, hash);
    sqlite3_bind_int64(st, 4, (int64_t)pt_clock_wall_ms());
    bool ok = sqlite3_step(st) == SQLITE_ROW;
    if (ok && stamp)
        *stamp = sqlite3_column_int64(st, 0);
    if (!ok)
        pt_warn("store: accounts: %s", sqlite3_errmsg(pt_store_sqlite(s)));
    while (ok && sqlite3_step(st) == SQLITE_ROW)
        ;
    sqlite3_finalize(st);
    return ok;
}

bool pt_store_accounts_cred_delete(struct pt_store *s, const char *user)
{
    sqlite3_stmt *st = prep(s, "DELETE FROM portal_credentials WHERE user = ?1");
    if (!st)
        return false;
    bind_text(st, 1, user);
    return done(s, st);
}

/* --------------------------------------------------------------- sessions */

bool pt_store_accounts_session_put(struct pt_store *s, const char *id_hash,
                                   const struct pt_store_accounts_session *se)
{
    sqlite3_stmt *st =
        prep(s, "INSERT OR REPLACE INTO portal_sessions (id_hash, user, created, seen, csrf, stamp)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    if (!st)
        return false;
    bind_text(st, 1, id_hash);
    bind_text(st, 2, se->user);
    sqlite3_bind_int64(st, 3, se->created);
    sqlite3_bind_int64(st, 4, se->seen);
    bind_text(st, 5, se->csrf);
    sqlite3_bind_int64(st, 6, se->stamp);
    return done(s, st);
}

bool pt_store_accounts_session_get(struct pt_store *s, const char *id_hash,
                                   struct pt_store_accounts_session *se)
{
    sqlite3_stmt *st =
        prep(s, "SELECT user, created, seen, csrf, stamp FROM portal_sessions WHERE id_hash = ?1");
    if (!st)
        return false;
    bind_text(st, 1, id_hash);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    if (found) {
        copy_col(st, 0, se->user, sizeof(se->user));
        se->created = sqlite3_column_int64(st, 1);
        se->seen = sqlite3_column_int64(st, 2);
        copy_col(st, 3, se->csrf, sizeof(se->csrf));
        se->stamp = sqlite3_column_int64(st, 4);
    }
    sqlite3_finalize(st);
    return found;
}

bool pt_store_accounts_session_seen(struct pt_store *s, const char *id_hash, int64_t now)
{
    sqlite3_stmt *st = prep(s, "UPDATE portal_sessions SET seen = ?2 WHERE id_hash = ?1");
    if (!st)
        return false;
    bind_text(st, 1, id_hash);
    sqlite3_bind_int64(st, 2, now);
    return done(s, st);
}

bool pt_store_accounts_session_delete(struct pt_store *s, const char *id_hash)
{
    sqlite3_stmt *st = prep(s, "DELETE FROM portal_sessions WHERE id_hash = ?1");
    if (!st)
        return false;
    bind_text(st, 1, id_hash);
    return done(s, st);
}

int pt_store_accounts_session_delete_user(struct pt_store *s, const char *user)
{
    if (!user || !*user)
        return 0; /* guests share the user "": never all of them at once */
    sqlite3_stmt *st = prep(s, "DELETE FROM portal_sessions WHERE user = ?1");
    if (!st)
        return -1;
    bind_text(st, 1, user);
    if (!done(s, st))
        return -1;
    return sqlite3_changes(pt_store_sqlite(s));
}

int pt_store_accounts_session_sweep(struct pt_store *s, int64_t idle_before, int64_t created_before, int cap)
{
    sqlite3_stmt *st = prep(s, "DELETE FROM portal_sessions WHERE seen < ?1 OR created < ?2");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, idle_before);
    sqlite3_bind_int64(st, 2, created_before);
    if (!done(s, st))
        return -1;
    int n = sqlite3_changes(pt_store_sqlite(s));
    /* anyone can make guest sessions (opening the sign-in form): past the
       cap the stalest guests go, never a signed-in user */
    st = prep(s, "DELETE FROM portal_sessions WHERE id_hash IN (SELECT id_hash FROM portal_sessions"
                 " WHERE user = '' ORDER BY seen LIMIT max(0, (SELECT count(*) FROM portal_sessions) - ?1))");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, cap);
    if (!done(s, st))
        return -1;
    return n + sqlite3_changes(pt_store_sqlite(s));
}

int pt_store_accounts_session_count(struct pt_store *s, const char *user)
{
    sqlite3_stmt *st = prep(s, user ? "SELECT count(*) FROM portal_sessions WHERE user = ?1"
                                    : "SELECT count(*) FROM portal_sessions");
    if (!st)
        return -1;
    if (user)
        bind_text(st, 1, user);
    int n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    return n;
}

/* ----------------------------------------------------------------- tokens */

bool pt_store_accounts_token_put(struct pt_store *s, const char *hash, const char *purpose, const char *user,
                                 int64_t expires)
{
    sqlite3_stmt *st = prep(s, "INSERT INTO portal_tokens (hash, purpose, user, expires, used)"
                               " VALUES (?1, ?2, ?3, ?4, 0)");
    if (!st)
        return false;
    bind_text(st, 1, hash);
    bind_text(st, 2, purpose);
    bind_text(st, 3, user);
    sqlite3_bind_int64(st, 4, expires);
    return done(s, st);
}

bool pt_store_accounts_token_use(struct pt_store *s, const char *hash, const char *purpose, int64_t now,
                                 char user[128])
{
    /* one statement: two requests racing with the same token cannot both
       see it unused */
    sqlite3_stmt *st =
        prep(s, "UPDATE portal_tokens SET used = 1"
                " WHERE hash = ?1 AND purpose = ?2 AND used = 0 AND expires > ?3 RETURNING user");
    if (!st)
        return false;
    bind_text(st, 1, hash);
    bind_text(st, 2, purpose);
    sqlite3_bind_int64(st, 3, now);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    if (found)
        copy_col(st, 0, user, 128);
    /* RETURNING: the update is complete only once the statement ran to its end */
    while (found && sqlite3_step(st) == SQLITE_ROW)
        ;
    sqlite3_finalize(st);
    return found;
}

bool pt_store_accounts_token_peek(struct pt_store *s, const char *hash, const char *purpose, int64_t now,
                                  char user[128])
{
    sqlite3_stmt *st = prep(s, "SELECT user FROM portal_tokens"
                               " WHERE hash = ?1 AND purpose = ?2 AND used = 0 AND expires > ?3");
    if (!st)
        return false;
    bind_text(st, 1, hash);
    bind_text(st, 2, purpose);
    sqlite3_bind_int64(st, 3, now);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    if (found)
        copy_col(st, 0, user, 128);
    sqlite3_finalize(st);
    return found;
}

bool pt_store_accounts_token_drop_user(struct pt_store *s, const char *user, const char *purpose)
{
    sqlite3_stmt *st = prep(s, purpose ? "DELETE FROM portal_tokens WHERE user = ?1 AND purpose = ?2"
                                       : "DELETE FROM portal_tokens WHERE user = ?1");
    if (!st)
        return false;
    bind_text(st, 1, user);
    if (purpose)
        bind_text(st, 2, purpose);
    return done(s, st);
}

int pt_store_accounts_token_sweep(struct pt_store *s, int64_t before)
{
    sqlite3_stmt *st = prep(s, "DELETE FROM portal_tokens WHERE expires < ?1");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, before);
    if (!done(s, st))
        return -1;
    return sqlite3_changes(pt_store_sqlite(s));
}

/* --------------------------------------------------------------- throttle */

bool pt_store_accounts_throttle_get(struct pt_store *s, const char *key, struct pt_store_accounts_throttle *t)
{
    memset(t, 0, sizeof(*t));
    sqlite3_stmt *st = prep(s, "SELECT failures, locked_until, updated FROM portal_throttle WHERE key = ?1");
    if (!st)
        return false;
    bind_text(st, 1, key);
    if (sqlite3_step(st) == SQLITE_ROW) {
        t->failures = sqlite3_column_int64(st, 0);
        t->locked_until = sqlite3_column_int64(st, 1);
        t->updated = sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    return true;
}

bool pt_store_accounts_throttle_put(struct pt_store *s, const char *key,
                                    const struct pt_store_accounts_throttle *t)
{
    sqlite3_stmt *st = prep(s, "INSERT OR REPLACE INTO portal_throttle (key, failures, locked_until, updated)"
                               " VALUES (?1, ?2, ?3, ?4)");
    if (!st)
        return false;
    bind_text(st, 1, key);
    sqlite3_bind_int64(st, 2, t->failures);
    sqlite3_bind_int64(st, 3, t->locked_until);
    sqlite3_bind_int64(st, 4, t->updated);
    return done(s, st);
}

bool pt_store_accounts_throttle_clear(struct pt_store *s, const char *key)
{
    sqlite3_stmt *st = prep(s, "DELETE FROM portal_throttle WHERE key = ?1");
    if (!st)
        return false;
    bind_text(st, 1, key);
    return done(s, st);
}

int pt_store_accounts_throttle_sweep(struct pt_store *s, int64_t now, int64_t before, int cap)
{
    sqlite3_stmt *st = prep(s, "DELETE FROM portal_throttle WHERE locked_until <= ?1 AND updated < ?2");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, before);
    if (!done(s, st))
        return -1;
    int n = sqlite3_changes(pt_store_sqlite(s));
    /* rows for made-up emails cost an attacker nothing: keep the table
       bounded, dropping the unlocked ones that changed least recently */
    st = prep(s, "DELETE FROM portal_throttle WHERE key IN (SELECT key FROM portal_throttle"
                 " WHERE locked_until <= ?2 ORDER BY updated"
                 " LIMIT max(0, (SELECT count(*) FROM portal_throttle) - ?1))");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, cap);
    sqlite3_bind_int64(st, 2, now);
    if (!done(s, st))
        return -1;
    return n + sqlite3_changes(pt_store_sqlite(s));
}
