/*
 * pt_schema -- the schema engine of the configuration file.
 *
 * A map the file may contain is described by a key table (struct pt_cfkey):
 * each key's name, type, bounds, where its value goes, and its documentation.
 * pt_schema_map() walks a parsed map (pt_node) with its table, reports unknown
 * keys, wrong types, bad values and missing required keys as
 * "file:line:column: message", and stores values by offset.  The same tables
 * print the configuration key reference (pt_schema_reference).
 */
#ifndef PT_SCHEMA_H
#define PT_SCHEMA_H

#include "base/pt.h"
#include "base/pt_pool.h"
#include "conf/pt_node.h"

#include <stdio.h>

enum pt_cftype {
    PT_CT_STR,    /* char *, non-empty unless PT_CF_EMPTY_OK */
    PT_CT_BOOL,   /* bool */
    PT_CT_INT,    /* int64_t within [min, max] */
    PT_CT_SIZE,   /* uint64_t bytes: 123, "16k", "1m", "2g" */
    PT_CT_MS,     /* uint32_t milliseconds: 5 (seconds), "250ms", "10s", "5m", "1h" */
    PT_CT_ENUM,   /* int: index into enums[] */
    PT_CT_MAP,    /* nested keys, stored into the same base struct */
    PT_CT_CUSTOM, /* fn parses the node; field = base + off */
};

#define PT_CF_REQUIRED 0x1
#define PT_CF_EMPTY_OK 0x2
#define PT_CF_PATH 0x4 /* PT_CT_STR relative to the config file's folder */
#define PT_CF_LIST 0x8 /* PT_CT_CUSTOM: a list (of maps of `sub` when set); for the reference only */

struct pt_cfctx;

struct pt_cfkey {
    const char *name;
    enum pt_cftype type;
    size_t off;
    unsigned flags;
    int64_t min, max;
    const char *const *enums;
    /* PT_CT_MAP: the nested keys.  PT_CT_CUSTOM: the keys its reader accepts (each item's, with
       PT_CF_LIST), listed for the reference only: the reader checks them itself. */
    const struct pt_cfkey *sub;
    bool (*fn)(struct pt_cfctx *cx, struct pt_node *node, void *field);
    /* For the reference: */
    const char *doc; /* what the key does (Markdown, one line): required for every key */
    const char
        *def; /* the default, Markdown; "`32k`" (a literal in backquotes) is checked against the code */
    const char *form; /* PT_CT_CUSTOM: what the value looks like ("list of strings"); required */
};

struct pt_cfctx {
    struct pt_pool *pool;
    struct pt_errors *errs;
    const char *dir; /* folder of the config file, for relative paths */
};

/* Validates map `node` against keys (NULL-name terminated) into base. */
bool pt_schema_map(struct pt_cfctx *cx, struct pt_node *node, const struct pt_cfkey *keys, void *base);
/* Single-value readers; each reports its own error and returns false. */
bool pt_schema_str(struct pt_cfctx *cx, struct pt_node *n, char **out, bool empty_ok);
bool pt_schema_bool(struct pt_cfctx *cx, struct pt_node *n, bool *out);
bool pt_schema_int(struct pt_cfctx *cx, struct pt_node *n, int64_t min, int64_t max, int64_t *out);
bool pt_schema_size(struct pt_cfctx *cx, struct pt_node *n, uint64_t *out);
bool pt_schema_ms(struct pt_cfctx *cx, struct pt_node *n, uint32_t *out);
/* Parses "10s"-style durations and "16k"-style sizes; false on bad syntax. */
bool pt_schema_parse_duration_ms(const char *s, uint64_t *ms);
bool pt_schema_parse_size(const char *s, uint64_t *bytes);
/* Resolves path against dir unless absolute; result in pool. */
char *pt_schema_path(struct pt_cfctx *cx, const char *path);

/*
 * Prints the Markdown reference of keys and of their sub-tables, recursively:
 * a table of the keys, then a section for each key that has a sub-table,
 * listing every key below it by its full path ("apis[].operations[].method").
 * `base`, when not NULL, is what keys reads into, holding the defaults: a
 * literal default ("`32k`") of a typed key must equal the value there, and a
 * typed key whose value there is not zero must state it.  Every problem (a key
 * without doc, a custom key without form, a default the code contradicts) is
 * written to err; returns false when there was one.
 */
bool pt_schema_reference(FILE *out, FILE *err, const struct pt_cfkey *keys, const void *base);

#endif
