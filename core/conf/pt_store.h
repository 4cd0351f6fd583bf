/*
 * pt_store -- the entity store: SQLite in the data directory.
 *
 * Every entity (API, operation, product, group, user, subscription, named
 * value, policy fragment, policy document, backend, workspace, version set,
 * token) is one row: its kind, its parent (an operation's API), its id, its
 * workspace, and its JSON representation, with an ETag and the source that
 * wrote it ("config" for the configuration file, "api" for the management
 * API).  Relations (product-API, product-group, group-user) are rows of
 * their own.  The database runs in WAL mode with synchronous=NORMAL: a
 * committed transaction survives the process being killed at any moment.
 * The schema is versioned; migrations run at open.
 *
 * Only the control thread uses the store; workers never touch SQLite.
 */
#ifndef PT_STORE_H
#define PT_STORE_H

#include "base/pt.h"
#include "conf/pt_node.h"

#include <jansson.h>

struct pt_store;

/* Opens (creating the folder and the database if needed) dir/portico.db. */
/* dir PT_STORE_MEMORY: a store in memory only (a gateway node's: its entities come from the control
   plane at each start, or from its backup). */
#define PT_STORE_MEMORY ":memory:"
struct pt_store *pt_store_open(const char *dir, char *err, size_t errlen);
/* Seals secret fields at rest (subscription keys): put seals, get and each
   unseal, with these functions (malloc'd result, NULL on failure). */
typedef char *(*pt_seal_fn)(void *arg, const char *in);
void pt_store_set_sealer(struct pt_store *s, pt_seal_fn seal, pt_seal_fn unseal, void *arg);
/* Rewrites every entity whose secret fields are still plain (stores made
   before sealing); the number rewritten, or -1. */
int pt_store_reseal(struct pt_store *s);
void pt_store_close(struct pt_store *s);

/* Transactions: every write runs inside one.  Nested begin/commit pairs
   join the outer transaction. */
bool pt_store_begin(struct pt_store *s);
bool pt_store_commit(struct pt_store *s);
void pt_store_rollback(struct pt_store *s);

/* An entity row. */
struct pt_entity {
    const char *kind;
    const char *parent; /* "" when none */
    const char *id;
    const char *workspace; /* "" = service level */
    json_t *body;          /* owned by the caller after get/list */
    char etag[24];
    const char *source;
};

/* Reads one entity; body is a new reference (json_decref it).  false when absent. */
bool pt_store_get(struct pt_store *s, const char *kind, const char *parent, const char *id, json_t **body,
                  char etag[24]);
/* Who wrote an entity ("config" or "api") and its workspace; false when absent. */
bool pt_store_info(struct pt_store *s, const char *kind, const char *parent, const char *id, char source[16],
                   char workspace[128]);
/* Inserts or replaces; sets a new ETag (written to etag when not NULL) -- except while
   pt_store_keep_unchanged is on (applying the configuration file again), when a put of what is
   stored already (the same body, workspace and source) writes nothing and keeps its ETag, so that
   the views read again only what changed. */
void pt_store_keep_unchanged(struct pt_store *s, bool on);
/* pt_store_put of an entity the caller read with pt_store_get in this transaction (`stored`, as
   read; NULL when absent): compared with it, not read and unsealed a second time. */
bool pt_store_put_read(struct pt_store *s, const char *kind, const char *parent, const char *id,
                       const char *workspace, const json_t *body, const char *source, char etag[24],
                       const json_t *stored);
bool pt_store_put(struct pt_store *s, const char *kind, const char *parent, const char *id,
                  const char *workspace, const json_t *body, const char *source, char etag[24]);
bool pt_store_delete(struct pt_store *s, const char *kind, const char *parent, const char *id);
/* Calls fn for every entity of a kind (parent NULL = any), in id order. */
typedef bool (*pt_store_fn)(void *arg, const struct pt_entity *e);
bool pt_store_each(struct pt_store *s, const char *kind, const char *parent, pt_store_fn fn, void *arg);
int pt_store_count(struct pt_store *s, const char *kind, const char *parent);
/* How many entities of a kind (with that parent) come before id in pt_store_each's order; -1 when
   the store cannot tell.  Bodies are not read: one that does not load is counted. */
int pt_store_count_before(struct pt_store *s, const char *kind, const char *parent, const char *id);
/* Whether any entity of any kind is stored (true as well when the store cannot tell). */
bool pt_store_has_entities(struct pt_store *s);

/* Relations: kind is "product-api", "product-group", "group-user" or "gateway-api". */
bool pt_store_link(struct pt_store *s, const char *kind, const char *a, const char *b, const char *source);
bool pt_store_unlink(struct pt_store *s, const char *kind, const char *a, const char *b);
bool pt_store_linked(struct pt_store *s, const char *kind, const char *a, const char *b);
bool pt_store_link_source(struct pt_store *s, const char *kind, const char *a, const char *b,
                          char source[16]);
/* Calls fn(arg, a, b) for every pair with a == a_or_null (NULL = all). */
typedef bool (*pt_store_link_fn)(void *arg, const char *a, const char *b);
bool pt_store_links(struct pt_store *s, const char *kind, const char *a, pt_store_link_fn fn, void *arg);
/* An application of the configuration file begins: from now on the store remembers every row
   put (written or kept unchanged) and linked, until the sweep or the transaction's end. */
void pt_store_mark(struct pt_store *s, const char *source);
/* During an application of the file: whether entity kind/parent/id is stored as the last
   application committed made it from what it was given then -- digest d (the caller's digest of
   its input: pt_node_digest) -- with no write to it since; when so, it is declared (the sweep keeps
   it) and nothing needs to be read or written.  Otherwise the caller puts it, then tells
   pt_store_given the digest it put it from (outside an application, that does nothing).  A rollback forgets
   all of it, as do writes the store cannot name (more than its journal remembers between two applications).
 */
bool pt_store_given_same(struct pt_store *s, const char *kind, const char *parent, const char *id,
                         const struct pt_node_digest *d);
void pt_store_given(struct pt_store *s, const char *kind, const char *parent, const char *id,
                    const struct pt_node_digest *d);
/* Deletes the rows of `source` (entities and links) not declared since pt_store_mark, and ends the
   application; -1 when the store cannot tell (no pt_store_mark, out of memory, SQLite failed). */
int pt_store_sweep(struct pt_store *s, const char *source);
/* The entities (kind, parent, id) that pt_store_sweep(s, source) would delete, as a JSON array of
   [kind, parent, id] triples in that order (caller frees); NULL when the store cannot tell. */
json_t *pt_store_stale(struct pt_store *s, const char *source);

/* For the store's other files (pt_store_analytics.c): the SQLite connection,
   and whether an entity transaction is open (their own writes wait then). */
struct sqlite3;
struct sqlite3 *pt_store_sqlite(struct pt_store *s);
bool pt_store_in_transaction(struct pt_store *s);
/* Bytes of memory SQLite holds in this process (every store's pages and caches: on a gateway node,
   the whole in-memory store).  Any thread. */
int64_t pt_store_memory_used(void);

/* The last SQLite error message. */
const char *pt_store_error(struct pt_store *s);
/* Bumped by every committed write (the management API's change counter). */
/* Counts writes of entities and links (and rollbacks, which may undo some): a view built from them
   stays true while this number does not move (also inside a transaction). */
uint64_t pt_store_entity_writes(struct pt_store *s);
uint64_t pt_store_version(struct pt_store *s);
/* Writes of one kind (an entity kind or a link kind such as "product-api"), plus every write that
   may touch any kind (a rollback, a sweep): a view read from a few kinds is still current while
   the sum over them has not moved. */
uint64_t pt_store_kind_writes(struct pt_store *s, const char *kind);
/* The writes counted for every kind (rollbacks, sweeps, reseals, kinds past the table): while this
   has not moved, the kinds whose own counters moved are all that was written. */
uint64_t pt_store_any_writes(struct pt_store *s);
/* The entities of `kind` put or deleted since a view of it was read, when kind_writes
   (pt_store_kind_writes(kind)) and any_writes (pt_store_any_writes) were taken: fn(arg, parent, id)
   for each write, oldest first (an id may come more than once; a put that failed comes too).  false
   when the store cannot tell every one (a rollback, a sweep or a reseal since, or more writes than
   it remembers: a few hundred) or fn returned false: the view is then read again in full. */
typedef bool (*pt_store_id_fn)(void *arg, const char *parent, const char *id);
bool pt_store_written_ids(struct pt_store *s, const char *kind, uint64_t kind_writes, uint64_t any_writes,
                          pt_store_id_fn fn, void *arg);
/* Calls fn as pt_store_each does, for the rows of `kind` that another source than `source` wrote. */
bool pt_store_each_not_from(struct pt_store *s, const char *kind, const char *source, pt_store_fn fn,
                            void *arg);
/* Calls fn for the entity (kind, parent, id) as pt_store_each calls it for each of a kind (not when
   it is absent, or stored but does not load: that is logged as pt_store_each does). */
bool pt_store_each_id(struct pt_store *s, const char *kind, const char *parent, const char *id,
                      pt_store_fn fn, void *arg);
/* Unique among the stores the process opens (never reused, unlike the address after a close):
   what a view kept across calls is keyed on. */
uint64_t pt_store_serial(struct pt_store *s);

/* Counters that must survive restarts (quota): add and read. */
bool pt_store_counter_add(struct pt_store *s, const char *key, int64_t period, int64_t delta, int64_t *total);
/* Sets a counter's value for a period (earlier periods of the key are dropped). */
bool pt_store_counter_set(struct pt_store *s, const char *key, int64_t period, int64_t value);
/* Named numbers that only grow (the gateways' sync generation): read one (false when never set), and
   raise one to value (kept when it is already higher). */
bool pt_store_state_get(struct pt_store *s, const char *name, int64_t *value);
bool pt_store_state_raise(struct pt_store *s, const char *name, int64_t value);
bool pt_store_counter_each(struct pt_store *s,
                           void (*fn)(void *arg, const char *key, int64_t period, int64_t value), void *arg);

#endif
