/*
 * pt_graphql.h -- GraphQL documents: a bounded lexer and parser for
 * executable documents (operations, fragments) and for the schema
 * definition language (SDL), schemas built from SDL, validation of a
 * request against a schema, query depth and field counts, and printing a
 * (pruned) operation back to text.
 *
 * Depends on the C library only (no other Portico file), so the same
 * source is compiled into the core and into the plugins' libptl.
 *
 * Bounds: a document is refused past lim->max_bytes bytes, past
 * lim->max_tokens tokens and past lim->max_depth levels of nesting
 * (selection sets, list and object values, list types); every refusal is a
 * pt_graphql_error with the line and column (1-based, counted in code
 * points) of the token where it happened.  Nothing recurses deeper than
 * max_depth, whatever the input.
 *
 * Memory: a document (and a schema) owns an arena; nodes and strings live
 * until pt_graphql_doc_free.  A parsed schema is immutable and may be
 * read by several threads at once; a request document is one thread's.
 */
#ifndef PT_GRAPHQL_H
#define PT_GRAPHQL_H

#include <stdbool.h>
#include <stddef.h>

/* What pt_graphql_parse accepts (bits). */
#define PT_GRAPHQL_EXECUTABLE 1 /* operations and fragments */
#define PT_GRAPHQL_SDL 2        /* type system definitions and extensions */

/* Defaults used when a limit is 0. */
#define PT_GRAPHQL_MAX_BYTES (8u << 20)
#define PT_GRAPHQL_MAX_TOKENS 2000000u
#define PT_GRAPHQL_MAX_DEPTH 64

struct pt_graphql_limits {
    size_t max_bytes;  /* 0: PT_GRAPHQL_MAX_BYTES */
    size_t max_tokens; /* 0: PT_GRAPHQL_MAX_TOKENS */
    int max_depth;     /* 0: PT_GRAPHQL_MAX_DEPTH */
    /* pt_graphql_parse only: where the document's memory comes from (zeroed memory, or NULL when
       there is none, that lives at least as long as the document: a request's arena); NULL: the
       heap, released by pt_graphql_doc_free (which then releases nothing). */
    void *(*alloc)(void *ctx, size_t n);
    void *alloc_ctx;
};

struct pt_graphql_error {
    int line, column; /* 0 when the error has no place in the text */
    char message[320];
};

enum pt_graphql_kind {
    /* executable */
    PT_GQL_OPERATION = 1, /* op, name?, vars, directives, sel */
    PT_GQL_FRAGMENT,      /* name, type_cond, directives, sel */
    PT_GQL_FIELD,         /* alias?, name, args, directives, sel? */
    PT_GQL_SPREAD,        /* name, directives */
    PT_GQL_INLINE,        /* type_cond?, directives, sel */
    PT_GQL_VARIABLE_DEF,  /* name, type, value? (default), directives */
    PT_GQL_ARGUMENT,      /* name, value */
    PT_GQL_DIRECTIVE,     /* name, args */
    /* type references */
    PT_GQL_NAMED_TYPE, /* name */
    PT_GQL_LIST_TYPE,  /* type */
    PT_GQL_NON_NULL,   /* type */
    /* values */
    PT_GQL_VARIABLE, /* name */
    PT_GQL_INT,      /* text */
    PT_GQL_FLOAT,    /* text */
    PT_GQL_STRING,   /* text (decoded, block strings too), len */
    PT_GQL_BOOLEAN,  /* text "true"/"false" */
    PT_GQL_NULL,
    PT_GQL_ENUM,         /* name */
    PT_GQL_LIST,         /* list: values */
    PT_GQL_OBJECT,       /* list: OBJECT_FIELDs */
    PT_GQL_OBJECT_FIELD, /* name, value */
    /* type system (SDL) */
    PT_GQL_SCHEMA_DEF,      /* directives, list: ROOT_TYPEs */
    PT_GQL_ROOT_TYPE,       /* op, name (the type) */
    PT_GQL_SCALAR_DEF,      /* name, directives */
    PT_GQL_OBJECT_DEF,      /* name, interfaces, directives, list: FIELD_DEFs */
    PT_GQL_INTERFACE_DEF,   /* same */
    PT_GQL_UNION_DEF,       /* name, directives, list: NAMED_TYPEs (members) */
    PT_GQL_ENUM_DEF,        /* name, directives, list: ENUM_VALUE_DEFs */
    PT_GQL_INPUT_DEF,       /* name, directives, list: INPUT_VALUE_DEFs */
    PT_GQL_DIRECTIVE_DEF,   /* name, args (INPUT_VALUE_DEFs), list: NAMED_TYPEs (locations), repeatable */
    PT_GQL_FIELD_DEF,       /* name, args (INPUT_VALUE_DEFs), type, directives */
    PT_GQL_INPUT_VALUE_DEF, /* name, type, value? (default), directives */
    PT_GQL_ENUM_VALUE_DEF,  /* name, directives */
};

enum { PT_GRAPHQL_QUERY = 0, PT_GRAPHQL_MUTATION = 1, PT_GRAPHQL_SUBSCRIPTION = 2 };

struct pt_graphql_node {
    int kind; /* enum pt_graphql_kind */
    int op;   /* OPERATION, ROOT_TYPE: PT_GRAPHQL_QUERY...; */
    int line, column;
    bool extend;     /* SDL: an `extend` definition */
    bool repeatable; /* DIRECTIVE_DEF */
    bool removed;    /* FIELD, SPREAD, INLINE: left out when printed (pt_graphql_prune) */
    const char *name, *alias, *type_cond, *description;
    const char *text; /* literal values */
    size_t len;       /* text's length (strings may hold NUL) */
    struct pt_graphql_node *args, *directives, *sel, *vars, *interfaces, *list;
    struct pt_graphql_node *type, *value;
    struct pt_graphql_node *next; /* the next sibling in its list */
    int memo_depth, memo_fields;  /* FRAGMENT: cached by the walks */
    int mark;                     /* scratch for the walks */
};

struct pt_graphql_doc {
    struct pt_graphql_node *defs;   /* definitions, in order */
    size_t tokens;                  /* tokens read */
    struct pt_graphql_node **frags; /* fragments by name (pt_graphql_operation) */
    size_t nfrags;
    struct pt_graphql_arena *arena;
};

/* Parses a document; `what` is PT_GRAPHQL_EXECUTABLE, PT_GRAPHQL_SDL or both.
   NULL with *err on a syntax error, a limit passed or no memory. */
struct pt_graphql_doc *pt_graphql_parse(const char *text, size_t len, unsigned what,
                                        const struct pt_graphql_limits *lim, struct pt_graphql_error *err);
void pt_graphql_doc_free(struct pt_graphql_doc *doc);

/* ------------------------------------------------------------ schemas */

struct pt_graphql_schema; /* immutable once built: safe to share between threads */

/* Builds a schema from SDL text: definitions and extensions merged, the
   built-in scalars, directives and introspection types added, every type
   reference resolved, the root types found (schema { } or Query, Mutation,
   Subscription).  NULL with *err. */
struct pt_graphql_schema *pt_graphql_schema_parse(const char *sdl, size_t len,
                                                  const struct pt_graphql_limits *lim,
                                                  struct pt_graphql_error *err);
void pt_graphql_schema_free(struct pt_graphql_schema *s);

/* The name of the root type for an operation kind; NULL when the schema has none. */
const char *pt_graphql_schema_root(const struct pt_graphql_schema *s, int op);

/* The kind of a named type (PT_GQL_SCALAR_DEF, _OBJECT_DEF, ...), 0 when unknown. */
int pt_graphql_schema_type_kind(const struct pt_graphql_schema *s, const char *name);

/* A field of an object or interface type (its FIELD_DEF), NULL when absent
   (meta-fields __typename, __schema, __type are not FIELD_DEFs: see
   pt_graphql_validate). */
const struct pt_graphql_node *pt_graphql_schema_field(const struct pt_graphql_schema *s, const char *type,
                                                      const char *field);

/* The named type under a type reference's list and non-null wrappers. */
const char *pt_graphql_type_name(const struct pt_graphql_node *type);

/* -------------------------------------------------- requests (executable) */

/* The operation to run: the one named `name`, or the only one when name is
   NULL or empty.  Also checks the document's own rules: unique operation
   and fragment names, an anonymous operation alone, every spread names a
   fragment, no fragment spreads itself (directly or not), every fragment
   used.  NULL with *err. */
struct pt_graphql_node *pt_graphql_operation(struct pt_graphql_doc *doc, const char *name,
                                             struct pt_graphql_error *err);

/* Validates the operation `op` of doc (and the fragments it reaches)
   against a schema: fields exist on their parent type (__typename on any
   composite type, __schema and __type on the query root), leaf fields have
   no selections and composite ones have, arguments exist on their field or
   directive and required ones are given, directives exist, fragments'
   type conditions name composite types, variables are defined (and used),
   with input types.  false with *err. */
bool pt_graphql_validate(const struct pt_graphql_schema *s, struct pt_graphql_doc *doc,
                         const struct pt_graphql_node *op, struct pt_graphql_error *err);

/* The depth of an operation: the most fields nested in one another, a
   top-level field counting 1 (`{ a { b } }` is 2); fragments and inline
   fragments add no level of their own.  Needs pt_graphql_operation first
   (no fragment cycles).  Saturates at 1,000,000. */
int pt_graphql_depth(struct pt_graphql_doc *doc, const struct pt_graphql_node *op);

/* The number of fields the operation selects, fragments counted at each
   spread (so `...F` twice counts F's fields twice).  Saturates at 1,000,000. */
int pt_graphql_field_count(struct pt_graphql_doc *doc, const struct pt_graphql_node *op);

/* Visits every field the operation reaches (each fragment's fields once),
   in document order, with the name of its parent type: the schema's (when
   s is given and the type is known), else the operation's root type name
   (Query, Mutation, Subscription) for top-level fields, a fragment's or
   inline fragment's type condition, or NULL.  `top` is true for a field
   selected directly on the root type.  fn returns 0 to go on (into the
   field's selections), 1 to skip them, -1 to stop (walk returns -1). */
typedef int (*pt_graphql_visit_fn)(void *arg, struct pt_graphql_node *field, const char *parent_type,
                                   bool top);
int pt_graphql_walk(const struct pt_graphql_schema *s, struct pt_graphql_doc *doc, struct pt_graphql_node *op,
                    pt_graphql_visit_fn fn, void *arg);

/* After fields were marked removed: a selection set left empty removes its
   field, inline fragment or spread (fragments whose selections are all
   removed count as removed).  Returns false when nothing of the operation
   is left. */
bool pt_graphql_prune(struct pt_graphql_doc *doc, struct pt_graphql_node *op);

/* The operation and the fragments it still uses as compact text, removed
   nodes left out (malloc'd, NUL-terminated; NULL when out of memory). */
char *pt_graphql_print(struct pt_graphql_doc *doc, const struct pt_graphql_node *op, size_t *len);

#endif
