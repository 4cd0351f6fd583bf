/*
 * pt_store -- SQLite behind the entity store.
 */
#include "conf/pt_store.h"

#include "base/pt_log.h"
#include "conf/pt_node.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_JOURNAL 256 /* entity writes remembered by id (a bulk import is read again in full) */

/* A set of rows (entities and links) by a 128-bit digest of what names them (type, kind, and the
   two names: parent and id, or a and b), each with the digest of what the file gave for it (zeros
   when not known); open addressing, a zero key an empty slot.  A row is told from another by its
   name's digest alone: the chance that two of a store's rows share one is that of a 128-bit
   collision. */
struct row {
    struct pt_node_digest key, d;
};

struct rowset {
    struct row *v;
    size_t cap, n;
    bool failed; /* out of memory: not to be trusted */
};

struct pt_store {
    sqlite3 *db;
    int depth;   /* nested begin/commit */
    bool failed; /* a nested part failed: the outer commit rolls back */
    uint64_t version;
    bool keep_same; /* pt_store_keep_unchanged: a put of what is stored writes nothing */
    /* from pt_store_mark to the transaction's end: the rows the file's application declared (put,
       kept or linked: the sweep keeps them), with the digest each was made from where known */
    struct {
        bool on;       /* from pt_store_mark to the sweep */
        bool building; /* from pt_store_mark to the transaction's end */
        bool unlinked; /* a link was deleted meanwhile: perhaps one declared */
        bool covered;  /* given_all_declared said yes (declaring more cannot make it no) */
        struct rowset rows;
    } decl;
    /* the rows the last committed application declared, with their digests (pt_store_given_same) */
    struct {
        struct rowset last;
        bool valid;       /* `last` tells what is stored (decided at pt_store_mark) */
        bool links_valid; /* ... and so do its links: no link was written since either */
        bool links_kept;  /* no link was deleted during the application `last` is of */
        bool have;        /* `last` was committed: the counters below are when */
        uint64_t at_all, at_writes;
        int at_njournal;
    } given;
    char err[512];
    /* sealing of secrets at rest (pt_store_set_sealer) */
    pt_seal_fn seal, unseal;
    void *seal_arg;
    /* prepared statements, kept by their SQL text's address (each is a literal):
       preparing cost more than running for an import of a thousand rows */
    struct {
        const char *sql;
        sqlite3_stmt *st;
        bool busy; /* in use (a callback of pt_store_each may run the same query: it gets its own) */
    } cache[48];
    uint64_t entity_writes; /* entity and link writes, and rollbacks: what materialized views depend on */
    /* the same per kind (entity or link kind), for views that read a few kinds only; `all` moves
       for what may touch any kind (a rollback, a sweep, a reseal, a kind past the table) */
    struct {
        char kind[32];
        uint64_t writes;
    } kinds[48];
    int nkinds;
    uint64_t all;
    uint64_t serial; /* this store among all opened by the process: views kept name it, not an address */
    /* the entities put or deleted lately, oldest overwritten first: a view of one kind patches the
       entities written since it was read instead of reading the kind again (pt_store_written_ids) */
    struct {
        int kind;     /* index in kinds */
        uint64_t seq; /* the kind's counter after this write */
        char *parent, *id;
    } journal[STORE_JOURNAL];
    int njournal; /* writes recorded in all; the next goes to journal[njournal % STORE_JOURNAL] */
};

static void decl_clear(struct pt_store *s);
static void given_reset(struct pt_store *s);
static void given_committed(struct pt_store *s);
static void given_deleted(struct pt_store *s, char type, const char *kind, const char *a, const char *b);

/* A write of `kind` (NULL: of any kind); the kind's place in kinds, or -1 when it was counted in
   `all`. */
static int written(struct pt_store *s, const char *kind)
{
    s->entity_writes++;
    for (int i = 0; kind && i < s->nkinds; i++)
        if (!strcmp(s->kinds[i].kind, kind)) {
            s->kinds[i].writes++;
            return i;
        }
    if (kind && s->nkinds < (int)PT_ARRAY_LEN(s->kinds) && strlen(kind) < sizeof(s->kinds[0].kind)) {
        snprintf(s->kinds[s->nkinds].kind, sizeof(s->kinds[0].kind), "%s", kind);
        s->kinds[s->nkinds].writes = 1;
        return s->nkinds++;
    }
    s->all++;
    return -1;
}

/* An entity put or deleted: counted, and recorded in the journal.  A record that cannot be made
   (no memory) leaves a gap, which pt_store_written_ids sees by counting. */
static void entity_written(struct pt_store *s, const char *kind, const char *parent, const char *id)
{
    int k = written(s, kind);
    if (k < 0)
        return;
    int slot = s->njournal % STORE_JOURNAL;
    free(s->journal[slot].parent);
    free(s->journal[slot].id);
    s->journal[slot].kind = k;
    s->journal[slot].seq = s->kinds[k].writes;
    s->journal[slot].parent = strdup(parent ? parent : "");
    s->journal[slot].id = strdup(id ? id : "");
    if (!s->journal[slot].parent || !s->journal[slot].id) {
        free(s->journal[slot].parent);
        free(s->journal[slot].id);
        s->journal[slot].parent = s->journal[slot].id = NULL;
        s->journal[slot].seq = 0; /* never after a reader's mark: the count comes out short */
    }
    s->njournal++;
}

bool pt_store_written_ids(struct pt_store *s, const char *kind, uint64_t kind_writes, uint64_t any_writes,
                          pt_store_id_fn fn, void *arg)
{
    if (any_writes != s->all)
        return false; /* a rollback, a sweep, a reseal...: what moved is unknown */
    int k = -1;
    for (int i = 0; i < s->nkinds; i++)
        if (!strcmp(s->kinds[i].kind, kind))
            k = i;
    uint64_t now = k < 0 ? 0 : s->kinds[k].writes;
    uint64_t then = kind_writes - any_writes; /* the kind's own counter when the view was read */
    if (then > now)
        return false;
    /* every write since must still be in the journal: as many records after `then` as writes */
    int first = s->njournal > STORE_JOURNAL ? s->njournal - STORE_JOURNAL : 0;
    uint64_t found = 0;
    for (int n = first; n < s->njournal; n++) {
        const int slot = n % STORE_JOURNAL;
        found += s->journal[slot].kind == k && s->journal[slot].seq > then && s->journal[slot].id;
    }
    if (found != now - then)
        return false;
    for (int n = first; n < s->njournal; n++) {
        const int slot = n % STORE_JOURNAL;
        if (s->journal[slot].kind == k && s->journal[slot].seq > then && s->journal[slot].id &&
            !fn(arg, s->journal[slot].parent, s->journal[slot].id))
            return false;
    }
    return true;
}

uint64_t pt_store_kind_writes(struct pt_store *s, const char *kind)
{
    for (int i = 0; i < s->nkinds; i++)
        if (!strcmp(s->kinds[i].kind, kind))
            return s->all + s->kinds[i].writes; /* both only grow: the sum moves when either does */
    return s->all;
}

/* Fields held sealed at rest: a sealed value starts with "v1:" (a character
   no key may hold), so plain values written before sealing existed are
   still read, and sealed on their next write. */
static const struct {
    const char *kind, *field;
} sealed_fields[] = {{"subscription", "primaryKey"},
                     {"subscription", "secondaryKey"},
                     {"portal-idp", "clientSecret"}, /* conf/pt_idp.h: PT_IDP_KIND */
                     {"gateway", "primaryKey"},
                     {"gateway", "secondaryKey"}};

static bool has_sealed_fields(const char *kind)
{
    for (size_t i = 0; i < PT_ARRAY_LEN(sealed_fields); i++)
        if (!strcmp(sealed_fields[i].kind, kind))
            return true;
    return false;
}

/* Whether a stored body's text (as a put writes it: compact) holds one of the kind's secret fields
   in plain (written before sealing existed, or left so by a reseal that failed): such a row is
   written again, sealed, whatever it says. */
static bool stored_plain_secret(const char *kind, const char *text)
{
    for (size_t i = 0; i < PT_ARRAY_LEN(sealed_fields); i++) {
        if (strcmp(sealed_fields[i].kind, kind))
            continue;
        char want[64];
        snprintf(want, sizeof(want), "\"%s\":\"", sealed_fields[i].field);
        const char *at = strstr(text, want);
        if (at && strncmp(at + strlen(want), "v1:", 3))
            return true;
    }
    return false;
}

/* Seals (to_store) or unseals the kind's secret fields of body in place;
   false when a value cannot be (un)sealed. */
static bool seal_body(struct pt_store *s, const char *kind, json_t *body, bool to_store)
{
    bool ok = true;
    for (size_t i = 0; body && s->seal && i < PT_ARRAY_LEN(sealed_fields); i++) {
        if (strcmp(sealed_fields[i].kind, kind))
            continue;
        const char *v = json_string_value(json_object_get(body, sealed_fields[i].field));
        if (!v || !strncmp(v, "v1:", 3) != !to_store)
            continue; /* absent, or already in the wanted form */
        char *out = to_store ? s->seal(s->seal_arg, v) : s->unseal(s->seal_arg, v);
        if (!out) {
            ok = false;
            continue;
        }
        json_object_set_new(body, sealed_fields[i].field, json_string(out));
        free(out);
    }
    return ok;
}

void pt_store_set_sealer(struct pt_store *s, pt_seal_fn seal, pt_seal_fn unseal, void *arg)
{
    written(s, NULL); /* what the secret fields read as may change: every view is stale */
    s->seal = seal;
    s->unseal = unseal;
    s->seal_arg = arg;
}

/* Migrations: index i brings the schema from version i to i + 1. */
static const char *const migrations[] = {
    /* 1: entities, links, counters */
    "CREATE TABLE entities ("
    "  kind TEXT NOT NULL, parent TEXT NOT NULL DEFAULT '', id TEXT NOT NULL,"
    "  workspace TEXT NOT NULL DEFAULT '', body TEXT NOT NULL, etag TEXT NOT NULL,"
    "  source TEXT NOT NULL DEFAULT 'api', touched INTEGER NOT NULL DEFAULT 0,"
    "  updated INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (kind, parent, id));"
    "CREATE INDEX entities_workspace ON entities(workspace, kind);"
    "CREATE TABLE links ("
    "  kind TEXT NOT NULL, a TEXT NOT NULL, b TEXT NOT NULL,"
    "  source TEXT NOT NULL DEFAULT 'api', touched INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (kind, a, b));"
    "CREATE INDEX links_b ON links(kind, b);"
    "CREATE TABLE counters (key TEXT NOT NULL, period INTEGER NOT NULL, value INTEGER NOT NULL,"
    "  PRIMARY KEY (key, period));",
    /* 2: analytics (pt_store_analytics.c): aggregate buckets by grain, raw request records */
    "CREATE TABLE analytics_buckets ("
    "  grain INTEGER NOT NULL, ts INTEGER NOT NULL,"
    "  api TEXT NOT NULL, op TEXT NOT NULL, product TEXT NOT NULL, sub TEXT NOT NULL, user TEXT NOT NULL,"
    "  success INTEGER NOT NULL, blocked INTEGER NOT NULL, failed INTEGER NOT NULL, other INTEGER NOT NULL,"
    "  bandwidth INTEGER NOT NULL, cache_hit INTEGER NOT NULL, cache_miss INTEGER NOT NULL,"
    "  api_sum INTEGER NOT NULL, api_min INTEGER, api_max INTEGER,"
    "  svc_n INTEGER NOT NULL, svc_sum INTEGER NOT NULL, svc_min INTEGER, svc_max INTEGER,"
    "  PRIMARY KEY (grain, ts, api, op, product, sub, user));"
    "CREATE TABLE analytics_requests ("
    "  seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, request_id TEXT NOT NULL,"
    "  api TEXT NOT NULL, op TEXT NOT NULL, product TEXT NOT NULL, sub TEXT NOT NULL, user TEXT NOT NULL,"
    "  method TEXT NOT NULL, url TEXT NOT NULL, ip TEXT NOT NULL, status INTEGER NOT NULL,"
    "  backend_status INTEGER, request_size INTEGER NOT NULL, response_size INTEGER NOT NULL,"
    "  cache INTEGER NOT NULL, api_time INTEGER NOT NULL, service_time INTEGER, reason TEXT NOT NULL);"
    "CREATE INDEX analytics_requests_ts ON analytics_requests(ts);",
    /* 3: the portal's accounts (pt_store_accounts.c): password hashes with a
       security stamp, sessions (only a hash of each id), single-use tokens
       (only a hash), the sign-in throttle; and users found by email */
    "CREATE TABLE portal_credentials ("
    "  user TEXT PRIMARY KEY, email TEXT NOT NULL, hash TEXT NOT NULL, stamp INTEGER NOT NULL,"
    "  updated INTEGER NOT NULL);"
    "CREATE TABLE portal_sessions ("
    "  id_hash TEXT PRIMARY KEY, user TEXT NOT NULL, created INTEGER NOT NULL, seen INTEGER NOT NULL,"
    "  csrf TEXT NOT NULL, stamp INTEGER NOT NULL);"
    "CREATE INDEX portal_sessions_user ON portal_sessions(user);"
    "CREATE INDEX portal_sessions_seen ON portal_sessions(seen);"
    "CREATE TABLE portal_tokens ("
    "  hash TEXT PRIMARY KEY, purpose TEXT NOT NULL, user TEXT NOT NULL, expires INTEGER NOT NULL,"
    "  used INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX portal_tokens_user ON portal_tokens(user, purpose);"
    "CREATE INDEX portal_tokens_expires ON portal_tokens(expires);"
    "CREATE TABLE portal_throttle ("
    "  key TEXT PRIMARY KEY, failures INTEGER NOT NULL, locked_until INTEGER NOT NULL,"
    "  updated INTEGER NOT NULL);"
    "CREATE INDEX portal_throttle_updated ON portal_throttle(updated);"
    "CREATE INDEX entities_user_email ON entities(lower(json_extract(body, '$.email'))) WHERE kind = 'user';",
    /* 4: numbers that must only grow across restarts (the self-hosted gateways' sync generation) */
    "CREATE TABLE sync_state (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    /* 5: the analytics batches taken from each gateway node (pt_analytics.c): a batch sent again after
       a restart of the control plane is still recognised */
    "CREATE TABLE analytics_senders (key TEXT PRIMARY KEY, high INTEGER NOT NULL, last INTEGER NOT NULL,"
    "  bits BLOB NOT NULL);"
    "CREATE INDEX analytics_senders_last ON analytics_senders(last);",
};

static bool exec(struct pt_store *s, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(s->err, sizeof(s->err), "%s", msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return false;
    }
    return true;
}

static int user_version(struct pt_store *s)
{
    sqlite3_stmt *st;
    int v = -1;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    return v;
}

static bool migrate(struct pt_store *s)
{
    int v = user_version(s);
    int target = (int)PT_ARRAY_LEN(migrations);
    if (v < 0)
        return false;
    if (v > target) {
        snprintf(s->err, sizeof(s->err), "the database has schema version %d, newer than this portico (%d)",
                 v, target);
        return false;
    }
    for (; v < target; v++) {
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d;", v + 1);
        if (!exec(s, "BEGIN IMMEDIATE") || !exec(s, migrations[v]) || !exec(s, pragma) ||
            !exec(s, "COMMIT")) {
            exec(s, "ROLLBACK");
            return false;
        }
        pt_info("store: schema migrated to version %d", v + 1);
    }
    return true;
}

static struct pt_store *open_db(const char *path, char *err, size_t errlen);

struct pt_store *pt_store_open(const char *dir, char *err, size_t errlen)
{
    if (!strcmp(dir, PT_STORE_MEMORY))
        return open_db(":memory:", err, errlen);
    if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create the data folder %s: %s", dir, strerror(errno));
        return NULL;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/portico.db", dir);
    /* the database and its WAL files are the owner's alone: SQLite gives the
       -wal and -shm files the database file's mode */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (fchmod(fd, 0600) < 0)
            pt_warn("store: cannot make %s private: %s", path, strerror(errno));
        close(fd);
    }
    for (const char *sfx = "-wal"; sfx; sfx = strcmp(sfx, "-wal") ? NULL : "-shm") {
        char side[4200];
        snprintf(side, sizeof(side), "%s%s", path, sfx);
        if (chmod(side, 0600) < 0 && errno != ENOENT)
            pt_warn("store: cannot make %s private: %s", side, strerror(errno));
    }
    return open_db(path, err, errlen);
}

/* Opens (creating) the database at path, or an in-memory one (":memory:"), at the current schema. */
static struct pt_store *open_db(const char *path, char *err, size_t errlen)
{
    static uint64_t opened;
    struct pt_store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "cannot open %s: out of memory", path);
        return NULL;
    }
    s->serial = __atomic_add_fetch(&opened, 1, __ATOMIC_RELAXED);
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
        pt_store_close(s);
        return NULL;
    }
    sqlite3_busy_timeout(s->db, 5000);
    if (!exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
                 " PRAGMA secure_delete=ON;") ||
        !migrate(s)) {
        snprintf(err, errlen, "%s: %s", path, s->err);
        pt_store_close(s);
        return NULL;
    }
    return s;
}

void pt_store_close(struct pt_store *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < PT_ARRAY_LEN(s->cache); i++)
        sqlite3_finalize(s->cache[i].st);
    if (s->db)
        sqlite3_close(s->db);
    for (int i = 0; i < STORE_JOURNAL; i++) {
        free(s->journal[i].parent);
        free(s->journal[i].id);
    }
    decl_clear(s);
    given_reset(s);
    free(s);
}

const char *pt_store_error(struct pt_store *s)
{
    return s->err;
}

struct sqlite3 *pt_store_sqlite(struct pt_store *s)
{
    return s->db;
}

int64_t pt_store_memory_used(void)
{
    return (int64_t)sqlite3_memory_used();
}

bool pt_store_in_transaction(struct pt_store *s)
{
    return s->depth > 0;
}

uint64_t pt_store_version(struct pt_store *s)
{
    return s->version;
}

uint64_t pt_store_serial(struct pt_store *s)
{
    return s->serial;
}

uint64_t pt_store_entity_writes(struct pt_store *s)
{
    return s->entity_writes;
}

uint64_t pt_store_any_writes(struct pt_store *s)
{
    return s->all;
}

bool pt_store_begin(struct pt_store *s)
{
    if (s->depth++ > 0)
        return true;
    s->failed = false;
    if (!exec(s, "BEGIN IMMEDIATE")) {
        s->depth = 0;
        return false;
    }
    return true;
}

/* A transaction ended in ROLLBACK: it may have undone writes of any kind, and a view read inside it
   holds them, so every view counts as stale. */
static void rolled_back(struct pt_store *s)
{
    written(s, NULL);
    given_reset(s);
    exec(s, "ROLLBACK");
}

bool pt_store_commit(struct pt_store *s)
{
    if (s->depth == 0)
        return false;
    if (--s->depth > 0)
        return !s->failed;
    if (s->failed || !exec(s, "COMMIT")) {
        rolled_back(s);
        decl_clear(s);
        return false;
    }
    s->version++;
    given_committed(s);
    decl_clear(s); /* an application of the file ends with its transaction */
    return true;
}

void pt_store_rollback(struct pt_store *s)
{
    written(s, NULL);
    decl_clear(s);
    given_reset(s);
    if (s->depth == 0)
        return;
    if (--s->depth > 0) {
        s->failed = true;
        return;
    }
    rolled_back(s);
}

static sqlite3_stmt *prep(struct pt_store *s, const char *sql)
{
    int free_slot = -1;
    for (size_t i = 0; i < PT_ARRAY_LEN(s->cache); i++) {
        if (s->cache[i].sql == sql && !s->cache[i].busy) {
            s->cache[i].busy = true;
            return s->cache[i].st;
        }
        if (!s->cache[i].sql && free_slot < 0)
            free_slot = (int)i;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(s->err, sizeof(s->err), "%s", sqlite3_errmsg(s->db));
        return NULL;
    }
    if (free_slot >= 0) {
        s->cache[free_slot].sql = sql;
        s->cache[free_slot].st = st;
        s->cache[free_slot].busy = true;
    }
    return st;
}

/* Gives a statement back: a cached one is reset for its next use, another finalized. */
static void release(struct pt_store *s, sqlite3_stmt *st)
{
    for (size_t i = 0; i < PT_ARRAY_LEN(s->cache); i++)
        if (s->cache[i].st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            s->cache[i].busy = false;
            return;
        }
    sqlite3_finalize(st);
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    sqlite3_bind_text(st, i, v ? v : "", -1, SQLITE_TRANSIENT);
}

static bool done(struct pt_store *s, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        snprintf(s->err, sizeof(s->err), "%s", sqlite3_errmsg(s->db));
        release(s, st);
        return false;
    }
    release(s, st);
    return true;
}

static void new_etag(char etag[24])
{
    unsigned char r[8];
    if (RAND_bytes(r, sizeof(r)) != 1)
        memset(r, 0, sizeof(r));
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) {
        etag[2 * i] = hx[r[i] >> 4];
        etag[2 * i + 1] = hx[r[i] & 15];
    }
    etag[16] = '\0';
}

bool pt_store_get(struct pt_store *s, const char *kind, const char *parent, const char *id, json_t **body,
                  char etag[24])
{
    sqlite3_stmt *st = prep(s, "SELECT body, etag FROM entities WHERE kind = ?1 AND parent = ?2 AND id = ?3");
    if (!st)
        return false;
    bind_text(st, 1, kind);
    bind_text(st, 2, parent);
    bind_text(st, 3, id);
    bool found = false;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *txt = (const char *)sqlite3_column_text(st, 0);
        if (body) {
            *body = json_loads(txt ? txt : "{}", 0, NULL);
            seal_body(s, kind, *body, false);
        }
        if (etag)
            snprintf(etag, 24, "%s", (const char *)sqlite3_column_text(st, 1));
        found = true;
    }
    release(s, st);
    return found;
}

/* ------------------------------------------------ the rows the file declared */

static struct pt_node_digest row_key(char type, const char *kind, const char *a, const char *b)
{
    struct pt_node_digest k = {(uint64_t)(unsigned char)type, 0};
    pt_node_digest_text(&k, kind);
    pt_node_digest_text(&k, a);
    pt_node_digest_text(&k, b);
    pt_node_digest_end(&k);
    if (!k.a && !k.b)
        k.a = 1;
    return k;
}

static struct row *row_slot(const struct rowset *r, const struct pt_node_digest *key)
{
    size_t i = key->a & (r->cap - 1);
    while ((r->v[i].key.a || r->v[i].key.b) && (r->v[i].key.a != key->a || r->v[i].key.b != key->b))
        i = (i + 1) & (r->cap - 1);
    return &r->v[i];
}

static struct row *row_find(const struct rowset *r, const struct pt_node_digest *key)
{
    if (!r->cap)
        return NULL;
    struct row *x = row_slot(r, key);
    return x->key.a || x->key.b ? x : NULL;
}

/* Adds key (or finds it); NULL when out of memory (r->failed). */
static struct row *row_add(struct rowset *r, const struct pt_node_digest *key)
{
    if (r->failed)
        return NULL;
    if ((r->n + 1) * 4 > r->cap * 3) {
        size_t cap = r->cap ? r->cap * 2 : 1024;
        struct row *v = calloc(cap, sizeof(*v));
        if (!v) {
            r->failed = true;
            return NULL;
        }
        struct rowset bigger = {v, cap, r->n, false};
        for (size_t i = 0; i < r->cap; i++)
            if (r->v[i].key.a || r->v[i].key.b)
                *row_slot(&bigger, &r->v[i].key) = r->v[i];
        free(r->v);
        *r = bigger;
    }
    struct row *x = row_slot(r, key);
    if (!x->key.a && !x->key.b) {
        x->key = *key;
        r->n++;
    }
    return x;
}

/* What row key was made from no longer tells what is stored: its digest is forgotten (the row
   stays in the set). */
static void row_forget(struct rowset *r, const struct pt_node_digest *key)
{
    struct row *x = row_find(r, key);
    if (x)
        memset(&x->d, 0, sizeof(x->d));
}

static void rows_free(struct rowset *r)
{
    free(r->v);
    memset(r, 0, sizeof(*r));
}

/* Ends an application of the file: its declared rows are forgotten. */
static void decl_clear(struct pt_store *s)
{
    rows_free(&s->decl.rows);
    s->decl.on = s->decl.building = s->decl.unlinked = s->decl.covered = false;
}

/* Out of memory remembering the declared rows: the sweep refuses (the application is rolled back). */
static void decl_failed(struct pt_store *s)
{
    s->decl.rows.failed = true;
    snprintf(s->err, sizeof(s->err), "out of memory remembering the rows the file declares");
}

/* Row key declared by the file's application (*added: whether it was not yet); NULL when out of
   memory (the sweep then refuses). */
static struct row *decl_row(struct pt_store *s, const struct pt_node_digest *key, bool *added)
{
    size_t before = s->decl.rows.n;
    struct row *x = row_add(&s->decl.rows, key);
    if (!x)
        decl_failed(s);
    if (added)
        *added = s->decl.rows.n != before;
    return x;
}

/* A row declared by the file's application (type 'E' an entity, 'L' a link), made from what has
   digest d (NULL: not known; a known one stays). */
static void decl_add_given(struct pt_store *s, char type, const char *kind, const char *a, const char *b,
                           const struct pt_node_digest *d)
{
    if (!s->decl.on)
        return;
    struct pt_node_digest key = row_key(type, kind, a ? a : "", b ? b : "");
    struct row *x = decl_row(s, &key, NULL);
    if (x && d)
        x->d = *d;
}

static bool decl_has(struct pt_store *s, char type, const char *kind, const char *a, const char *b)
{
    struct pt_node_digest key = row_key(type, kind, a, b);
    return row_find(&s->decl.rows, &key) != NULL;
}

/* ----------------------------------------------------- what the file gave */

/* A rollback (of any part), or a failure: nothing is known any more. */
static void given_reset(struct pt_store *s)
{
    rows_free(&s->given.last);
    s->given.valid = s->given.links_valid = s->given.have = false;
}

/* The transaction of a file application was committed: the rows it declared are what is stored
   of the file's. */
static void given_committed(struct pt_store *s)
{
    if (!s->decl.building)
        return;
    rows_free(&s->given.last);
    s->given.last = s->decl.rows;
    memset(&s->decl.rows, 0, sizeof(s->decl.rows));
    s->given.valid = s->given.links_valid = false;
    s->given.have = !s->given.last.failed;
    s->given.links_kept = !s->decl.unlinked;
    s->given.at_all = s->all;
    s->given.at_writes = s->entity_writes;
    s->given.at_njournal = s->njournal;
}

/* A row deleted during an application: what it was made from no longer tells what is stored. */
static void given_deleted(struct pt_store *s, char type, const char *kind, const char *a, const char *b)
{
    if (!s->decl.building)
        return;
    struct pt_node_digest key = row_key(type, kind, a, b);
    row_forget(&s->decl.rows, &key);
}

/* At pt_store_mark: whether `last` still tells what is stored.  Every entity write since it was
   committed must be in the journal (a rollback, a sweep or a reseal since moved `all`); each
   row so written is forgotten in it.  Its links are trusted only when no link was written since
   (links are not journaled): every write counted since is then a journaled entity write. */
static bool given_current(struct pt_store *s)
{
    struct rowset *r = &s->given.last;
    s->given.links_valid = false;
    if (!s->given.have || r->failed || s->all != s->given.at_all ||
        s->njournal - s->given.at_njournal > STORE_JOURNAL)
        return false;
    for (int n = s->given.at_njournal; n < s->njournal; n++) {
        const int slot = n % STORE_JOURNAL;
        if (!s->journal[slot].id)
            return false;
        struct pt_node_digest key =
            row_key('E', s->kinds[s->journal[slot].kind].kind, s->journal[slot].parent, s->journal[slot].id);
        row_forget(r, &key);
    }
    s->given.links_valid = s->given.links_kept && s->entity_writes - s->given.at_writes ==
                                                      (uint64_t)(s->njournal - s->given.at_njournal);
    s->given.at_njournal = s->njournal;
    s->given.at_writes = s->entity_writes;
    return true;
}

/* Whether the application declared every row the last one did: then none of the file's rows is
   left undeclared (the last one's sweep took the rest, and nothing but the file writes them).
   Asked by the stale list and by both passes of the sweep: a yes is kept. */
static bool given_all_declared(struct pt_store *s)
{
    const struct rowset *r = &s->given.last;
    if (s->decl.covered)
        return true;
    if (!s->given.valid || s->decl.rows.failed || r->n > s->decl.rows.n)
        return false;
    for (size_t i = 0; i < r->cap; i++)
        if ((r->v[i].key.a || r->v[i].key.b) && !row_find(&s->decl.rows, &r->v[i].key))
            return false;
    return s->decl.covered = true;
}

bool pt_store_given_same(struct pt_store *s, const char *kind, const char *parent, const char *id,
                         const struct pt_node_digest *d)
{
    if (!s->given.valid || !s->decl.on || (!d->a && !d->b))
        return false;
    struct pt_node_digest key = row_key('E', kind, parent, id);
    bool added;
    struct row *x = decl_row(s, &key, &added); /* declared either way: the caller puts it else */
    if (!x || !added) /* not added: given twice in this application (a repeated id), each put */
        return false;
    const struct row *was = row_find(&s->given.last, &key);
    if (!was || was->d.a != d->a || was->d.b != d->b)
        return false;
    x->d = *d;
    return true;
}

void pt_store_given(struct pt_store *s, const char *kind, const char *parent, const char *id,
                    const struct pt_node_digest *d)
{
    decl_add_given(s, 'E', kind, parent, id, d);
}

void pt_store_keep_unchanged(struct pt_store *s, bool on)
{
    s->keep_same = on;
}

/*
 * Whether kind/parent/id is stored as it would be put: the same workspace and source, and the
 * same body -- the text `plain` a put writes, or for a kind with sealed fields the body itself,
 * compared with `known` (the row as the caller read it) or else the stored one, unsealed (sealing
 * is randomized: the texts always differ), and never the same while a secret is stored in plain.
 * When it is, etag gets its ETag (the row is declared: the sweep keeps it).  -1: the store failed.
 */
static int stored_same(struct pt_store *s, const char *kind, const char *parent, const char *id,
                       const char *workspace, const json_t *body, const char *plain, const json_t *known,
                       const char *source, char etag[24])
{
    sqlite3_stmt *st;
    if (known && !json_equal(known, body)) /* read (and unsealed) by the caller in this transaction */
        return 0;
    if (plain) { /* compared by SQLite */
        st = prep(s, "SELECT etag FROM entities WHERE kind = ?1 AND parent = ?2 AND id = ?3"
                     " AND workspace = ?4 AND source = ?5 AND body = ?6");
        if (!st)
            return -1;
        bind_text(st, 1, kind);
        bind_text(st, 2, parent);
        bind_text(st, 3, id);
        bind_text(st, 4, workspace);
        bind_text(st, 5, source);
        bind_text(st, 6, plain);
        bool hit = sqlite3_step(st) == SQLITE_ROW;
        if (hit && etag)
            snprintf(etag, 24, "%s", (const char *)sqlite3_column_text(st, 0));
        release(s, st);
        return hit;
    }
    st = prep(
        s, "SELECT workspace, body, source, etag FROM entities WHERE kind = ?1 AND parent = ?2 AND id = ?3");
    if (!st)
        return -1;
    bind_text(st, 1, kind);
    bind_text(st, 2, parent);
    bind_text(st, 3, id);
    bool same = false;
    if (sqlite3_step(st) == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(st, 0), workspace) &&
        !strcmp((const char *)sqlite3_column_text(st, 2), source)) {
        const char *text = (const char *)sqlite3_column_text(st, 1);
        if (stored_plain_secret(kind, text))
            same = false;
        else if (known)
            same = true; /* compared above */
        else {
            json_t *old = json_loads(text, 0, NULL);
            same = old && seal_body(s, kind, old, false) && json_equal(old, body);
            json_decref(old);
        }
        if (same && etag)
            snprintf(etag, 24, "%s", (const char *)sqlite3_column_text(st, 3));
    }
    release(s, st);
    return same;
}

bool pt_store_put(struct pt_store *s, const char *kind, const char *parent, const char *id,
                  const char *workspace, const json_t *body, const char *source, char etag[24])
{
    return pt_store_put_read(s, kind, parent, id, workspace, body, source, etag, NULL);
}

bool pt_store_put_read(struct pt_store *s, const char *kind, const char *parent, const char *id,
                       const char *workspace, const json_t *body, const char *source, char etag[24],
                       const json_t *stored)
{
    /* what cannot be written as JSON that loads again must not be stored:
       entity lists skip bodies that do not load, so it would vanish */
    char where[256];
    if (pt_node_json_nul_path(body, where, sizeof(where))) {
        entity_written(s, kind, parent, id);
        snprintf(s->err, sizeof(s->err), "%s '%s': %s: must not contain a NUL character", kind, id, where);
        return false;
    }
    decl_add_given(s, 'E', kind, parent, id, NULL);
    char *txt;
    bool sealed = s->seal && has_sealed_fields(kind);
    txt = sealed ? NULL : json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    if (s->keep_same && (txt || sealed)) {
        int same = stored_same(s, kind, parent, id, workspace ? workspace : "", body, txt, stored,
                               source ? source : "api", etag);
        if (same) { /* unchanged: no new ETag, nothing for the views to read again */
            free(txt);
            return same > 0;
        }
    }
    entity_written(s, kind, parent, id);
    if (sealed) {
        json_t *copy = json_deep_copy(body);
        if (!seal_body(s, kind, copy, true)) {
            json_decref(copy);
            snprintf(s->err, sizeof(s->err), "cannot seal the %s's secrets", kind);
            return false;
        }
        txt = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(copy);
    }
    if (!txt)
        return false;
    char tag[24];
    new_etag(tag);
    sqlite3_stmt *st =
        prep(s, "INSERT INTO entities (kind, parent, id, workspace, body, etag, source, updated)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, strftime('%s','now'))"
                " ON CONFLICT (kind, parent, id) DO UPDATE SET workspace = excluded.workspace,"
                " body = excluded.body, etag = excluded.etag, source = excluded.source,"
                " updated = excluded.updated");
    if (!st) {
        free(txt);
        return false;
    }
    bind_text(st, 1, kind);
    bind_text(st, 2, parent);
    bind_text(st, 3, id);
    bind_text(st, 4, workspace);
    bind_text(st, 5, txt);
    bind_text(st, 6, tag);
    bind_text(st, 7, source ? source : "api");
    free(txt);
    if (!done(s, st))
        return false;
    if (etag)
        memcpy(etag, tag, 24);
    return true;
}

bool pt_store_delete(struct pt_store *s, const char *kind, const char *parent, const char *id)
{
    sqlite3_stmt *st = prep(s, "DELETE FROM entities WHERE kind = ?1 AND parent = ?2 AND id = ?3");
    if (!st) {
        entity_written(s, kind, parent, id);
        return false;
    }
    bind_text(st, 1, kind);
    bind_text(st, 2, parent);
    bind_text(st, 3, id);
    bool ok = done(s, st), gone = ok && sqlite3_changes(s->db) > 0;
    if (!ok || gone) { /* nothing deleted: nothing for the views to read again */
        entity_written(s, kind, parent, id);
        given_deleted(s, 'E', kind, parent, id);
    }
    return gone;
}

/* Calls fn for each row of st (parent, id, workspace, body, etag, source) of `kind`, then gives st
   back: one reading of rows for a whole kind and for one entity. */
static bool each_row(struct pt_store *s, sqlite3_stmt *st, const char *kind, pt_store_fn fn, void *arg)
{
    bool ok = true;
    while (ok && sqlite3_step(st) == SQLITE_ROW) {
        struct pt_entity e;
        e.kind = kind;
        e.parent = (const char *)sqlite3_column_text(st, 0);
        e.id = (const char *)sqlite3_column_text(st, 1);
        e.workspace = (const char *)sqlite3_column_text(st, 2);
        e.body = json_loads((const char *)sqlite3_column_text(st, 3), 0, NULL);
        seal_body(s, kind, e.body, false);
        snprintf(e.etag, sizeof(e.etag), "%s", (const char *)sqlite3_column_text(st, 4));
        e.source = (const char *)sqlite3_column_text(st, 5);
        if (e.body)
            ok = fn(arg, &e);
        else /* never silently: a missing policy document is an open API */
            pt_err("store: the %s '%s' does not load and is left out", kind, e.id ? e.id : "");
        json_decref(e.body);
    }
    release(s, st);
    return ok;
}

bool pt_store_each(struct pt_store *s, const char *kind, const char *parent, pt_store_fn fn, void *arg)
{
    sqlite3_stmt *st = prep(s, parent ? "SELECT parent, id, workspace, body, etag, source FROM entities"
                                        " WHERE kind = ?1 AND parent = ?2 ORDER BY parent, id"
                                      : "SELECT parent, id, workspace, body, etag, source FROM entities"
                                        " WHERE kind = ?1 ORDER BY parent, id");
    if (!st)
        return false;
    bind_text(st, 1, kind);
    if (parent)
        bind_text(st, 2, parent);
    return each_row(s, st, kind, fn, arg);
}

bool pt_store_each_not_from(struct pt_store *s, const char *kind, const char *source, pt_store_fn fn,
                            void *arg)
{
    sqlite3_stmt *st = prep(s, "SELECT parent, id, workspace, body, etag, source FROM entities"
                               " WHERE kind = ?1 AND source <> ?2 ORDER BY parent, id");
    if (!st)
        return false;
    bind_text(st, 1, kind);
    bind_text(st, 2, source);
    return each_row(s, st, kind, fn, arg);
}

bool pt_store_each_id(struct pt_store *s, const char *kind, const char *parent, const char *id,
                      pt_store_fn fn, void *arg)
{
    sqlite3_stmt *st = prep(s, "SELECT parent, id, workspace, body, etag, source FROM entities"
                               " WHERE kind = ?1 AND parent = ?2 AND id = ?3");
    if (!st)
        return false;
    bind_text(st, 1, kind);
    bind_text(st, 2, parent);
    bind_text(st, 3, id);
    return each_row(s, st, kind, fn, arg);
}

bool pt_store_has_entities(struct pt_store *s)
{
    sqlite3_stmt *st = prep(s, "SELECT 1 FROM entities LIMIT 1");
    if (!st)
        return true; /* unknown: taken as not new, which adds nothing */
    bool any = sqlite3_step(st) == SQLITE_ROW;
    release(s, st);
    return any;
}

int pt_store_count(struct pt_store *s, const char *kind, const char *parent)
{
    sqlite3_stmt *st = prep(s, parent ? "SELECT count(*) FROM entities WHERE kind = ?1 AND parent = ?2"
                                      : "SELECT count(*) FROM entities WHERE kind = ?1");
    if (!st)
        return -1;
    bind_text(st, 1, kind);
    if (parent)
        bind_text(st, 2, parent);
    int n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    release(s, st);
    return n;
}

int pt_store_count_before(struct pt_store *s, const char *kind, const char *parent, const char *id)
{
    /* ids compare as pt_store_each orders them: SQLite's BINARY collation, byte by byte */
    sqlite3_stmt *st = prep(s, "SELECT count(*) FROM entities WHERE kind = ?1 AND parent = ?2 AND id < ?3");
    if (!st)
        return -1;
    bind_text(st, 1, kind);
    bind_text(st, 2, parent);
    bind_text(st, 3, id);
    int n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    release(s, st);
    return n;
}

bool pt_store_link(struct pt_store *s, const char *kind, const char *a, const char *b, const char *source)
{
    /* a link there already is kept as it is (its source stays): no write for the views */
    if (s->decl.on) {
        struct pt_node_digest key = row_key('L', kind, a, b);
        if (decl_row(s, &key, NULL) && s->given.valid && s->given.links_valid &&
            row_find(&s->given.last, &key)) /* the last application's, no link written since */
            return true;
    }
    sqlite3_stmt *st = prep(s, "SELECT 1 FROM links WHERE kind = ?1 AND a = ?2 AND b = ?3");
    if (!st)
        return false;
    bind_text(st, 1, kind);
    bind_text(st, 2, a);
    bind_text(st, 3, b);
    int rc = sqlite3_step(st);
    release(s, st);
    if (rc == SQLITE_ROW)
        return true;
    if (rc != SQLITE_DONE) {
        snprintf(s->err, sizeof(s->err), "%s", sqlite3_errmsg(s->db));
        return false;
    }
    written(s, kind);
    st = prep(s, "INSERT INTO links (kind, a, b, source) VALUES (?1, ?2, ?3, ?4)");
    if (!st)
        return false;
    bind_text(st, 1, kind);
    bind_text(st, 2, a);
    bind_text(st, 3, b);
    bind_text(st, 4, source ? source : "api");
    return done(s, st);
}

bool pt_store_unlink(struct pt_store *s, const char *kind, const char *a, const char *b)
{
    sqlite3_stmt *st = prep(s, b ? "DELETE FROM links WHERE kind = ?1 AND a = ?2 AND b = ?3"
                                 : "DELETE FROM links WHERE kind = ?1 AND a = ?2");
    if (!st) {
        written(s, kind);
        return false;
    }
    bind_text(st, 1, kind);
    bind_text(st, 2, a);
    if (b)
        bind_text(st, 3, b);
    bool ok = done(s, st);
    if (!ok || sqlite3_changes(s->db) > 0) { /* nothing unlinked: nothing for the views to read again */
        written(s, kind);
        /* during an application (a row taken over, a removal's links): this one's links are looked
           up again, and the next one's too (the link deleted may have been declared before) */
        s->given.links_valid = false;
        s->decl.unlinked = s->decl.building;
    }
    return ok;
}

bool pt_store_linked(struct pt_store *s, const char *kind, const char *a, const char *b)
{
    sqlite3_stmt *st = prep(s, a ? "SELECT 1 FROM links WHERE kind = ?1 AND a = ?2 AND b = ?3"
                                 : "SELECT 1 FROM links WHERE kind = ?1 AND b = ?3");
    if (!st)
        return false;
    bind_text(st, 1, kind);
    if (a)
        bind_text(st, 2, a);
    bind_text(st, 3, b);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    release(s, st);
    return found;
}

bool pt_store_info(struct pt_store *s, const char *kind, const char *parent, const char *id, char source[16],
                   char workspace[128])
{
    sqlite3_stmt *st =
        prep(s, "SELECT source, workspace FROM entities WHERE kind = ?1 AND parent = ?2 AND id = ?3");
    if (!st)
        return false;
    bind_text(st, 1, kind);
    bind_text(st, 2, parent);
    bind_text(st, 3, id);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    if (found) {
        if (source)
            snprintf(source, 16, "%s", (const char *)sqlite3_column_text(st, 0));
        if (workspace)
            snprintf(workspace, 128, "%s", (const char *)sqlite3_column_text(st, 1));
    }
    release(s, st);
    return found;
}

bool pt_store_link_source(struct pt_store *s, const char *kind, const char *a, const char *b, char source[16])
{
    sqlite3_stmt *st = prep(s, "SELECT source FROM links WHERE kind = ?1 AND a = ?2 AND b = ?3");
    if (!st)
        return false;
    bind_text(st, 1, kind);
    bind_text(st, 2, a);
    bind_text(st, 3, b);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    if (found)
        snprintf(source, 16, "%s", (const char *)sqlite3_column_text(st, 0));
    release(s, st);
    return found;
}

bool pt_store_links(struct pt_store *s, const char *kind, const char *a, pt_store_link_fn fn, void *arg)
{
    sqlite3_stmt *st = prep(s, a ? "SELECT a, b FROM links WHERE kind = ?1 AND a = ?2 ORDER BY a, b"
                                 : "SELECT a, b FROM links WHERE kind = ?1 ORDER BY a, b");
    if (!st)
        return false;
    bind_text(st, 1, kind);
    if (a)
        bind_text(st, 2, a);
    bool ok = true;
    while (ok && sqlite3_step(st) == SQLITE_ROW)
        ok = fn(arg, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1));
    release(s, st);
    return ok;
}

void pt_store_mark(struct pt_store *s, const char *source)
{
    (void)source;
    decl_clear(s);
    s->decl.on = s->decl.building = true;
    s->given.valid = given_current(s);
    if (s->given.last.cap) { /* as many rows again, most likely: no table grown row by row */
        s->decl.rows.v = calloc(s->given.last.cap, sizeof(struct row));
        s->decl.rows.cap = s->decl.rows.v ? s->given.last.cap : 0;
    }
}

static int triple_cmp(const void *x, const void *y)
{
    const json_t *a = *(json_t *const *)x, *b = *(json_t *const *)y;
    for (size_t i = 0; i < 3; i++) {
        int c = strcmp(json_string_value(json_array_get(a, i)), json_string_value(json_array_get(b, i)));
        if (c)
            return c;
    }
    return 0;
}

/* The rows of `source` the file's application did not declare since pt_store_mark, as
   [kind, parent, id] (entities) or [kind, a, b] (links) triples; NULL when the store cannot tell. */
static json_t *undeclared(struct pt_store *s, const char *source, bool links)
{
    if (!s->decl.on) {
        snprintf(s->err, sizeof(s->err), "no application of the file under way (pt_store_mark)");
        return NULL;
    }
    if (given_all_declared(s))
        return json_array(); /* nothing to read */
    sqlite3_stmt *st = prep(s, links ? "SELECT kind, a, b FROM links WHERE source = ?1"
                                     : "SELECT kind, parent, id FROM entities WHERE source = ?1");
    if (!st)
        return NULL;
    bind_text(st, 1, source);
    json_t *all = json_array();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *c[3];
        for (int i = 0; i < 3; i++)
            c[i] = (const char *)sqlite3_column_text(st, i);
        if (!c[0] || !c[1] || !c[2]) { /* NOT NULL columns: out of memory */
            decl_failed(s);
            break;
        }
        if (!decl_has(s, links ? 'L' : 'E', c[0], c[1], c[2]))
            json_array_append_new(all, json_pack("[sss]", c[0], c[1], c[2]));
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        snprintf(s->err, sizeof(s->err), "%s", sqlite3_errmsg(s->db));
    release(s, st);
    if (rc != SQLITE_DONE || s->decl.rows.failed) {
        json_decref(all);
        return NULL;
    }
    /* in (kind, parent, id) order, as the marks' query lists them: the few found are sorted here,
       not the whole scan */
    size_t n = json_array_size(all);
    json_t **v = malloc(sizeof(*v) * (n ? n : 1));
    if (!v) {
        decl_failed(s);
        json_decref(all);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(all, i));
    qsort(v, n, sizeof(*v), triple_cmp);
    json_array_clear(all);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(all, v[i]);
    free(v);
    return all;
}

int pt_store_sweep(struct pt_store *s, const char *source)
{
    int n = 0;
    for (int links = 0; links < 2; links++) {
        json_t *gone = undeclared(s, source, links);
        if (!gone) {
            written(s, NULL);
            return -1;
        }
        size_t i;
        json_t *k;
        json_array_foreach(gone, i, k)
        {
            sqlite3_stmt *st =
                prep(s, links ? "DELETE FROM links WHERE kind = ?1 AND a = ?2 AND b = ?3"
                              : "DELETE FROM entities WHERE kind = ?1 AND parent = ?2 AND id = ?3");
            if (st)
                for (int c = 0; c < 3; c++)
                    bind_text(st, c + 1, json_string_value(json_array_get(k, (size_t)c)));
            if (!st || !done(s, st)) {
                json_decref(gone);
                written(s, NULL);
                return -1;
            }
            n += sqlite3_changes(s->db);
            given_deleted(s, links ? 'L' : 'E', json_string_value(json_array_get(k, 0)),
                          json_string_value(json_array_get(k, 1)), json_string_value(json_array_get(k, 2)));
        }
        json_decref(gone);
    }
    if (n) /* what it deleted is not journaled: every view is stale */
        written(s, NULL);
    s->decl.on = false; /* the application's last step (its rows are kept to the commit) */
    return n;
}

json_t *pt_store_stale(struct pt_store *s, const char *source)
{
    return undeclared(s, source, false);
}

bool pt_store_counter_add(struct pt_store *s, const char *key, int64_t period, int64_t delta, int64_t *total)
{
    sqlite3_stmt *st = prep(s, "INSERT INTO counters (key, period, value) VALUES (?1, ?2, ?3)"
                               " ON CONFLICT (key, period) DO UPDATE SET value = value + excluded.value"
                               " RETURNING value");
    if (!st)
        return false;
    bind_text(st, 1, key);
    sqlite3_bind_int64(st, 2, period);
    sqlite3_bind_int64(st, 3, delta);
    bool ok = sqlite3_step(st) == SQLITE_ROW;
    if (ok && total)
        *total = sqlite3_column_int64(st, 0);
    release(s, st);
    return ok;
}

bool pt_store_counter_set(struct pt_store *s, const char *key, int64_t period, int64_t value)
{
    sqlite3_stmt *st = prep(s, "INSERT INTO counters (key, period, value) VALUES (?1, ?2, ?3)"
                               " ON CONFLICT (key, period) DO UPDATE SET value = excluded.value");
    if (!st)
        return false;
    bind_text(st, 1, key);
    sqlite3_bind_int64(st, 2, period);
    sqlite3_bind_int64(st, 3, value);
    bool ok = done(s, st);
    /* earlier periods of the key are over: only the current one matters */
    st = prep(s, "DELETE FROM counters WHERE key = ?1 AND period < ?2");
    if (st) {
        bind_text(st, 1, key);
        sqlite3_bind_int64(st, 2, period);
        done(s, st);
    }
    return ok;
}

bool pt_store_counter_each(struct pt_store *s,
                           void (*fn)(void *arg, const char *key, int64_t period, int64_t value), void *arg)
{
    sqlite3_stmt *st = prep(s, "SELECT key, period, value FROM counters ORDER BY key, period");
    if (!st)
        return false;
    while (sqlite3_step(st) == SQLITE_ROW)
        fn(arg, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1),
           sqlite3_column_int64(st, 2));
    release(s, st);
    return true;
}

bool pt_store_state_get(struct pt_store *s, const char *name, int64_t *value)
{
    sqlite3_stmt *st = prep(s, "SELECT value FROM sync_state WHERE name = ?1");
    if (!st)
        return false;
    bind_text(st, 1, name);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    if (found)
        *value = sqlite3_column_int64(st, 0);
    release(s, st);
    return found;
}

bool pt_store_state_raise(struct pt_store *s, const char *name, int64_t value)
{
    sqlite3_stmt *st = prep(s, "INSERT INTO sync_state (name, value) VALUES (?1, ?2)"
                               " ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)");
    if (!st)
        return false;
    bind_text(st, 1, name);
    sqlite3_bind_int64(st, 2, value);
    return done(s, st);
}

int pt_store_reseal(struct pt_store *s)
{
    written(s, NULL);
    if (!s->seal)
        return 0;
    struct item {
        char *kind, *parent, *id, *workspace, *source;
        json_t *body;
    } *v = NULL;
    int n = 0, cap = 0;
    for (size_t f = 0; f < PT_ARRAY_LEN(sealed_fields); f++) {
        if (f && !strcmp(sealed_fields[f].kind, sealed_fields[f - 1].kind))
            continue;
        const char *kind = sealed_fields[f].kind;
        sqlite3_stmt *st =
            prep(s, "SELECT parent, id, workspace, body, source FROM entities WHERE kind = ?1");
        if (!st)
            return -1;
        bind_text(st, 1, kind);
        while (sqlite3_step(st) == SQLITE_ROW) {
            json_t *b = json_loads((const char *)sqlite3_column_text(st, 3), 0, NULL);
            bool plain = false;
            for (size_t k = 0; b && k < PT_ARRAY_LEN(sealed_fields); k++) {
                const char *x = json_string_value(json_object_get(b, sealed_fields[k].field));
                plain |= !strcmp(sealed_fields[k].kind, kind) && x && strncmp(x, "v1:", 3);
            }
            if (!plain) {
                json_decref(b);
                continue;
            }
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                v = realloc(v, sizeof(*v) * (size_t)cap);
            }
            v[n++] = (struct item){strdup(kind),
                                   strdup((const char *)sqlite3_column_text(st, 0)),
                                   strdup((const char *)sqlite3_column_text(st, 1)),
                                   strdup((const char *)sqlite3_column_text(st, 2)),
                                   strdup((const char *)sqlite3_column_text(st, 4)),
                                   b};
        }
        release(s, st);
    }
    bool ok = n == 0 || pt_store_begin(s);
    for (int i = 0; i < n; i++) {
        if (ok)
            ok = pt_store_put(s, v[i].kind, v[i].parent, v[i].id, v[i].workspace, v[i].body, v[i].source,
                              NULL);
        free(v[i].kind);
        free(v[i].parent);
        free(v[i].id);
        free(v[i].workspace);
        free(v[i].source);
        json_decref(v[i].body);
    }
    free(v);
    if (n && ok)
        ok = pt_store_commit(s);
    else if (n)
        pt_store_rollback(s);
    /* the plain copies: overwritten (secure_delete) once the WAL is folded in */
    if (n && ok)
        exec(s, "PRAGMA wal_checkpoint(TRUNCATE);");
    return ok ? n : -1;
}
