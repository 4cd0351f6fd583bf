/*
 * pt_store_accounts -- the portal's account tables: credentials, sessions,
 * single-use tokens and the sign-in throttle (see the header).
 */
#include "conf/pt_store_accounts.h"

#include "base/pt_log.h"

#include <argon2.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
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

/* Runs a write whose one parameter ?1 is a text key (a user, a session hash, a throttle key). */
static bool done_for(struct pt_store *s, const char *sql, const char *key)
{
    sqlite3_stmt *st = prep(s, sql);
    if (!st)
        return false;
    bind_text(st, 1, key);
    return done(s, st);
}

/* Runs a DELETE whose parameters ?1 (and ?2 when it has one) are integers; the rows it removed, -1 on an
   error. */
static int deleted(struct pt_store *s, const char *sql, int64_t a, int64_t b)
{
    sqlite3_stmt *st = prep(s, sql);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, a);
    if (sqlite3_bind_parameter_count(st) >= 2)
        sqlite3_bind_int64(st, 2, b);
    if (!done(s, st))
        return -1;
    return sqlite3_changes(pt_store_sqlite(s));
}

static void copy_col(sqlite3_stmt *st, int col, char *out, size_t size)
{
    const char *v = (const char *)sqlite3_column_text(st, col);
    snprintf(out, size, "%s", v ? v : "");
}

bool pt_store_accounts_user_by_email(struct pt_store *s, const char *email, char id[128])
{
    /* the same expression as the index entities_user_email (migration 3); a
       closed account (state deleted) keeps its entity but not its address:
       sign-up, invitation, reset and sign-in see the address as free */
    sqlite3_stmt *st = prep(s, "SELECT id FROM entities WHERE kind = 'user'"
                               " AND lower(json_extract(body, '$.email')) = lower(?1)"
                               " AND coalesce(json_extract(body, '$.state'), 'active') != 'deleted'"
                               " ORDER BY id LIMIT 1");
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
    return done_for(s, "DELETE FROM portal_credentials WHERE user = ?1", user);
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
    return done_for(s, "DELETE FROM portal_sessions WHERE id_hash = ?1", id_hash);
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
    int n = deleted(s, "DELETE FROM portal_sessions WHERE seen < ?1 OR created < ?2", idle_before,
                    created_before);
    if (n < 0)
        return -1;
    /* anyone can make guest sessions (opening the sign-in form): past the
       cap the stalest guests go, never a signed-in user */
    int guests =
        deleted(s,
                "DELETE FROM portal_sessions WHERE id_hash IN (SELECT id_hash FROM portal_sessions"
                " WHERE user = '' ORDER BY seen LIMIT max(0, (SELECT count(*) FROM portal_sessions) - ?1))",
                cap, 0);
    return guests < 0 ? -1 : n + guests;
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

/* ------------------------------------------------- secrets and passwords */

/* Argon2id parameters: the OWASP minimum for Argon2id (19 MiB, 2 passes,
   one lane); the encoded hash keeps them, so raising them later still
   verifies older hashes. */
#define A2_T_COST 2
#define A2_M_COST (19 * 1024)
#define A2_LANES 1
#define A2_SALT 16
#define A2_HASH 32

bool pt_store_accounts_random_bytes(unsigned char *out, size_t n)
{
    return RAND_bytes(out, (int)n) == 1;
}

bool pt_store_accounts_random(char *out, size_t size)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[32];
    if (size < PT_STORE_ACCOUNTS_SECRET_CHARS + 1 || RAND_bytes(raw, sizeof(raw)) != 1) {
        if (size)
            out[0] = '\0';
        return false;
    }
    /* base64url without padding: 6 bits per character, 43 for 32 bytes */
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < sizeof(raw); i++) {
        acc = (acc << 8) | raw[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = b64[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = b64[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    return true;
}

bool pt_store_accounts_well_formed(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= PT_STORE_ACCOUNTS_SECRET_CHARS || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                                                     (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return n == PT_STORE_ACCOUNTS_SECRET_CHARS;
}

void pt_store_accounts_secret_hash(const char *secret, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    static const char hx[] = "0123456789abcdef";
    if (!EVP_Digest(secret, strlen(secret), md, &n, EVP_sha256(), NULL) || n != 32) {
        out[0] = '\0';
        return;
    }
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[md[i] >> 4];
        out[2 * i + 1] = hx[md[i] & 15];
    }
    out[64] = '\0';
}

bool pt_store_accounts_password_ok(const char *pw, const char **why)
{
    size_t chars = 0, bytes = strlen(pw);
    for (const unsigned char *p = (const unsigned char *)pw; *p; p++)
        chars += (*p & 0xC0) != 0x80; /* code points, not bytes */
    if (chars < PT_STORE_ACCOUNTS_PASSWORD_MIN) {
        *why = "The password must have at least 10 characters.";
        return false;
    }
    if (bytes > PT_STORE_ACCOUNTS_PASSWORD_MAX) {
        *why = "The password must have at most 1024 bytes.";
        return false;
    }
    return true;
}

bool pt_store_accounts_hash_password(const char *pw, char *out, size_t size)
{
    unsigned char salt[A2_SALT];
    if (size < PT_STORE_ACCOUNTS_HASH_MAX || !pt_store_accounts_random_bytes(salt, sizeof(salt)))
        return false;
    int rc = argon2id_hash_encoded(A2_T_COST, A2_M_COST, A2_LANES, pw, strlen(pw), salt, sizeof(salt),
                                   A2_HASH, out, size);
    if (rc != ARGON2_OK) {
        pt_warn("accounts: argon2: %s", argon2_error_message(rc));
        return false;
    }
    return true;
}

bool pt_store_accounts_verify_password(const char *hash, const char *pw)
{
    return strncmp(hash, "$argon2id$", 10) == 0 && argon2id_verify(hash, pw, strlen(pw)) == ARGON2_OK;
}

bool pt_store_accounts_password_set(struct pt_store *s, const char *user, const char *email, const char *pw)
{
    char hash[PT_STORE_ACCOUNTS_HASH_MAX];
    bool ok = pt_store_accounts_hash_password(pw, hash, sizeof(hash)) &&
              pt_store_accounts_cred_set(s, user, email, hash, NULL);
    OPENSSL_cleanse(hash, sizeof(hash));
    return ok;
}

bool pt_store_accounts_token_new(struct pt_store *s, const char *purpose, const char *user, int64_t expires,
                                 char raw[PT_STORE_ACCOUNTS_SECRET_CHARS + 1])
{
    char h[65];
    if (!pt_store_accounts_random(raw, PT_STORE_ACCOUNTS_SECRET_CHARS + 1))
        return false;
    pt_store_accounts_secret_hash(raw, h);
    return pt_store_accounts_token_put(s, h, purpose, user, expires);
}

/* ------------------------------------------------------------------ tokens */

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

/* Runs `sql` on a token (?1 hash, ?2 purpose, ?3 now) that answers its user; true with `user` set when
   there is one. */
static bool token_user(struct pt_store *s, const char *sql, const char *hash, const char *purpose,
                       int64_t now, char user[128])
{
    sqlite3_stmt *st = prep(s, sql);
    if (!st)
        return false;
    bind_text(st, 1, hash);
    bind_text(st, 2, purpose);
    sqlite3_bind_int64(st, 3, now);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    if (found)
        copy_col(st, 0, user, 128);
    /* RETURNING: an update is complete only once the statement ran to its end */
    while (found && sqlite3_step(st) == SQLITE_ROW)
        ;
    sqlite3_finalize(st);
    return found;
}

bool pt_store_accounts_token_use(struct pt_store *s, const char *hash, const char *purpose, int64_t now,
                                 char user[128])
{
    /* one statement: two requests racing with the same token cannot both
       see it unused */
    return token_user(s,
                      "UPDATE portal_tokens SET used = 1"
                      " WHERE hash = ?1 AND purpose = ?2 AND used = 0 AND expires > ?3 RETURNING user",
                      hash, purpose, now, user);
}

bool pt_store_accounts_token_peek(struct pt_store *s, const char *hash, const char *purpose, int64_t now,
                                  char user[128])
{
    return token_user(s,
                      "SELECT user FROM portal_tokens"
                      " WHERE hash = ?1 AND purpose = ?2 AND used = 0 AND expires > ?3",
                      hash, purpose, now, user);
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
    return deleted(s, "DELETE FROM portal_tokens WHERE expires < ?1", before, 0);
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
    return done_for(s, "DELETE FROM portal_throttle WHERE key = ?1", key);
}

int pt_store_accounts_throttle_sweep(struct pt_store *s, int64_t now, int64_t before, int cap)
{
    int n = deleted(s, "DELETE FROM portal_throttle WHERE locked_until <= ?1 AND updated < ?2", now, before);
    if (n < 0)
        return -1;
    /* rows for made-up emails cost an attacker nothing: keep the table
       bounded, dropping the unlocked ones that changed least recently */
    int stale = deleted(s,
                        "DELETE FROM portal_throttle WHERE key IN (SELECT key FROM portal_throttle"
                        " WHERE locked_until <= ?2 ORDER BY updated"
                        " LIMIT max(0, (SELECT count(*) FROM portal_throttle) - ?1))",
                        cap, now);
    return stale < 0 ? -1 : n + stale;
}
