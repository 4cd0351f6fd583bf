/*
 * pt_expr -- syntax checks and numbering of expressions.
 */
#include "lua/pt_expr.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>

struct pt_expr_table *pt_expr_table_new(struct pt_pool *pool)
{
    struct pt_expr_table *t = pt_pool_calloc(pool, sizeof(*t));
    t->pool = pool;
    return t;
}

void pt_expr_table_free(struct pt_expr_table *t)
{
    if (t && t->check) {
        lua_close(t->check);
        t->check = NULL;
    }
}

int pt_expr_add(struct pt_expr_table *t, const char *src, size_t len, bool block, const char *chunk,
                char *err, size_t errlen)
{
    if (!t->check) {
        t->check = luaL_newstate();
        if (!t->check) {
            snprintf(err, errlen, "cannot create a Lua state");
            return -1;
        }
    }
    lua_State *L = t->check;
    /* an expression is returned as is; a block must return by itself */
    const char *code;
    size_t clen;
    if (block) {
        code = pt_pool_strndup(t->pool, src, len);
        clen = len;
    } else {
        code = pt_pool_printf(t->pool, "return (%.*s\n)", (int)len, src);
        clen = strlen(code);
    }
    /* text only: binary chunks are never loaded */
    int rc = luaL_loadbufferx(L, code, clen, "=" PT_EXPR_CHUNK, "t");
    if (rc != 0) {
        const char *m = lua_tostring(L, -1);
        /* Lua says "expression:<line>: message"; the caller names the place
           already, the line matters when a block has several */
        size_t cl = strlen(PT_EXPR_CHUNK);
        long line = 0;
        if (m && !strncmp(m, PT_EXPR_CHUNK ":", cl + 1)) {
            char *end = NULL;
            line = strtol(m + cl + 1, &end, 10);
            if (end && !strncmp(end, ": ", 2))
                m = end + 2;
        }
        if (line > 1 && block)
            snprintf(err, errlen, "line %ld of the expression: %s", line, m ? m : "syntax error");
        else
            snprintf(err, errlen, "%s", m ? m : "syntax error");
        lua_pop(L, 1);
        return -1;
    }
    lua_pop(L, 1);
    if (t->n == t->cap) {
        int ncap = t->cap ? t->cap * 2 : 16;
        struct pt_expr *ne = pt_pool_alloc(t->pool, sizeof(*ne) * (size_t)ncap);
        if (t->n)
            memcpy(ne, t->e, sizeof(*ne) * (size_t)t->n);
        t->e = ne;
        t->cap = ncap;
    }
    struct pt_expr *e = &t->e[t->n++];
    e->src = pt_pool_strndup(t->pool, src, len);
    e->len = len;
    e->block = block;
    e->chunk = pt_pool_strdup(t->pool, chunk);
    e->code = code;
    e->code_len = clen;
    e->policy = false; /* the table's memory is not zeroed: pt_luapol sets it for a policy file */
    return t->n;
}
