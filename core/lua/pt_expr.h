/*
 * pt_expr -- the expressions of one configuration generation.
 *
 * Every `@( expression )` and `@{ statements }` attribute value is checked
 * for Lua syntax when the configuration is loaded (so `portico -t` reports
 * it with its position) and numbered; workers compile them into their own
 * LuaJIT states on first use (pt_lua).
 */
#ifndef PT_EXPR_H
#define PT_EXPR_H

#include "base/pt.h"
#include "base/pt_pool.h"

struct pt_expr {
    const char *src; /* the text between @( ) or @{ } */
    size_t len;
    bool block;        /* statements that return a value, rather than an expression */
    const char *chunk; /* where it was written, for error messages */
    const char *code;  /* the Lua chunk actually compiled */
    size_t code_len;
    bool policy; /* a Lua policy file: workers keep the table it returns */
};

struct pt_expr_table {
    struct pt_pool *pool;
    struct pt_expr *e; /* e[0] is expression number 1 */
    int n, cap;
    void *check; /* a bare lua_State used only for syntax checks */
};

struct pt_node;

/* A compiled attribute value: literal text, or an expression (numbered in
   the generation's table; evaluated by lua/pt_lua.c). */
struct pt_value {
    const char *text; /* literal value, or the expression's source */
    size_t len;
    int expr;      /* 0 = literal; else the expression's number (1-based) in the generation */
    bool is_block; /* @{ ... } rather than @( ... ) */
    struct pt_node *node;
};

/* The chunk name expressions are compiled under (Lua cuts chunk names at 60
   bytes: messages name the place themselves). */
#define PT_EXPR_CHUNK "expression"

struct pt_expr_table *pt_expr_table_new(struct pt_pool *pool);
void pt_expr_table_free(struct pt_expr_table *t);
/* Checks and adds an expression; returns its number (>= 1), or -1 with a
   message in err. */
int pt_expr_add(struct pt_expr_table *t, const char *src, size_t len, bool block, const char *chunk,
                char *err, size_t errlen);

#endif
