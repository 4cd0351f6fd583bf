/*
 * pt_node -- a small document tree with source positions.
 *
 * Configuration arrives as YAML (files) and later as JSON (management API
 * bodies).  Both become this tree, so one set of validators serves both and
 * every error can name where it happened, in the words of what was written:
 * "api 'orders' › operation 'get-item' › inbound[1] set-header value"
 * (entities by id, statements by section and position, 0-based as in the
 * list), after "file:line:column: " for what a file declared. Management
 * responses also get the machine path ("apis[2].operations[0].method") as
 * the error's target.
 */
#ifndef PT_NODE_H
#define PT_NODE_H

#include "base/pt.h"
#include "base/pt_pool.h"

#include <jansson.h>

enum pt_node_kind { PT_N_SCALAR, PT_N_SEQ, PT_N_MAP };

/* Pointers first, then the ints, then the small fields: 64 bytes, not 72 with the padding of the
   declaration order (a configuration of 10,000 APIs holds millions of nodes). */
struct pt_node {
    char *str; /* scalar text, NUL-terminated */
    size_t len;
    struct pt_node **items; /* seq: n items; map: n pairs as key,value,key,value... */
    const char *file;       /* NULL for trees without a file */
    struct pt_node *parent;
    int n;
    int line, col; /* 1-based; 0 when unknown */
    int index;     /* position in the parent (pair index for maps) */
    enum pt_node_kind kind;
    bool quoted; /* scalar was quoted: never a bool/null/number */
    bool null;   /* `~`, `null` or an empty plain scalar */
};

/* Error collection: every message already carries its location; targets[i]
   is the machine path of the node msgs[i] is about, or NULL. */
struct pt_errors {
    char **msgs;
    char **targets;
    int n, cap;
};

void pt_node_errors_add(struct pt_errors *e, const char *fmt, ...) PT_PRINTF(2, 3);
void pt_node_errors_clear(struct pt_errors *e);
/* Adds "LOCATION: message" for node (see pt_node_where), with the node's
   path as its target. */
void pt_node_error(struct pt_errors *e, const struct pt_node *node, const char *fmt, ...) PT_PRINTF(3, 4);
/* Adds an already located message with the target of message i of `from`. */
void pt_node_errors_copy(struct pt_errors *e, const struct pt_errors *from, int i, const char *fmt, ...)
    PT_PRINTF(4, 5);
/* Writes the location of node into buf, the one format of every message:
   "file:3:7: api 'orders' › path" for a file, "api 'orders' › path" for a
   tree without one. */
void pt_node_where(const struct pt_node *node, char *buf, size_t size);
/* Writes the machine path of node ("apis[0].policies.inbound[1]"). */
void pt_node_path(const struct pt_node *node, char *buf, size_t size);

/*
 * Parses YAML text into a tree allocated from pool.  `file` names the
 * source in messages.  Returns NULL and adds an error on a syntax error,
 * more than one document, or a tree above the size/depth limits (aliases
 * are expanded, so a "billion laughs" file is refused, not expanded).
 */
struct pt_node *pt_node_parse_yaml(struct pt_pool *pool, const char *file, const char *text, size_t len,
                                   struct pt_errors *errs);
/* Reads and parses a YAML file; errors name the file. */
struct pt_node *pt_node_load_file(struct pt_pool *pool, const char *path, struct pt_errors *errs);

/* Whether two keys are the same text: the first bytes told apart inline (most keys differ there),
   strcmp for the rest -- the lookups that read a configuration compare keys by the million. */
static inline bool pt_node_same_key(const char *a, const char *b)
{
    return a[0] == b[0] && (!a[0] || !strcmp(a + 1, b + 1));
}

/* Map access: the value for key, or NULL. */
struct pt_node *pt_node_get(const struct pt_node *map, const char *key);
static inline struct pt_node *pt_node_key(const struct pt_node *map, int i)
{
    return map->items[2 * i];
}
static inline struct pt_node *pt_node_val(const struct pt_node *map, int i)
{
    return map->items[2 * i + 1];
}
const char *pt_node_kind_name(const struct pt_node *n);
/* A scalar's text, or a map/list as JSON (plain scalars that read as
   numbers, booleans or null stay unquoted).  Allocated in pool. */
pt_str pt_node_to_text(struct pt_pool *pool, const struct pt_node *n);

/* Converts between trees and JSON (plain YAML scalars that read as numbers,
   booleans or null become JSON ones; everything else a string).  The tree
   from JSON hangs under parent at index (NULL, 0 for a root). */
json_t *pt_node_to_json(const struct pt_node *n);
struct pt_node *pt_node_from_json(struct pt_pool *pool, const json_t *j, struct pt_node *parent, int index);

/* A 128-bit digest of what pt_node_to_json makes of a tree (kinds, texts, quoting; never the
   positions), without the top-level map keys listed in skip (NULL-terminated, or NULL), seeded
   with `seed` (a digest of what else the caller's result depends on, or zeros).  Two trees with the
   same digest give the same JSON but for a 128-bit collision: the file's application uses it to
   tell an entity given again unchanged without turning it into JSON. */
struct pt_node_digest {
    uint64_t a, b;
};
void pt_node_digest(const struct pt_node *n, const char *const *skip, struct pt_node_digest *d);
/* Mixes text s (NULL reads as "") into d; pt_node_digest_end finishes a digest made of texts alone
   (pt_node_digest finishes its own). */
void pt_node_digest_text(struct pt_node_digest *d, const char *s);
void pt_node_digest_end(struct pt_node_digest *d);

/* Finds the first string (value or key) of j holding an embedded NUL
   (JSON "\u0000", read with JSON_ALLOW_NUL) and writes its path, e.g.
   "inbound[1].ip-filter.address[0]" ("(document)" for the root), to buf.
   false when there is none.  Such strings are refused where the
   management API reads bodies, as the YAML reader refuses them. */
bool pt_node_json_nul_path(const json_t *j, char *buf, size_t size);

#endif
