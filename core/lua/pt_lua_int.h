/*
 * pt_lua_int -- what the files of the Lua runtime share; not for the rest of
 * the core (which sees pt_lua.h).
 *
 *   pt_lua.c       the runtime of a worker: the counting allocator, building
 *                  the state (the sandbox's allow-list), and calls:
 *                  expressions, Lua policies, limits, request coroutines
 *   pt_context.c   the `context` object: userdata proxies over the request
 *                  being evaluated, served by C functions
 *   pt_luaguard.c  the runtime running a call on this thread, and the guards
 *                  user code runs under: the deadline and its count hook,
 *                  pcall and xpcall that cannot swallow a broken limit, and
 *                  bounded string.rep and table.sort
 *
 * A file calls only into the files listed after it, so there is no circle
 * among them.
 */
#ifndef PT_LUA_INT_H
#define PT_LUA_INT_H

#include "conf/pt_genmodel.h"
#include "http/pt_msg.h"
#include "lua/pt_expr.h"
#include "lua/pt_lpat.h"
#include "lua/pt_lua.h"

#include <lua.h>
#include <stdbool.h>
#include <stdint.h>

/* The runtime of a worker (pt_lua_new). */
struct pt_lua {
    int worker;                  /* the worker's number, for messages */
    struct pt_wgen *const *wcur; /* the worker's current generation: its limits */
    lua_State *L;
    uint64_t epoch;             /* bumped when the state is rebuilt */
    struct pt_lua_mem mem;      /* its allocator: lua.memory, enforced once the state is built */
    uint64_t deadline;          /* ms, 0 = none */
    struct pt_lpat_env lpat;    /* pattern functions: subject cap, deadline */
    const char *breach;         /* "time" / "memory" while a limit is broken */
    int need_body;              /* PT_MSG_* asked for while evaluating */
    const struct pt_expr *expr; /* the expression being evaluated (its chunk: where it was written) */
    bool damaged;
    struct pt_req *cur;
    bool in_policy;  /* running a Lua policy: context may be changed */
    int ref_genv;    /* read-only globals for user code */
    int ref_threads; /* table anchoring request coroutines */
    int ref_dirty;   /* globals set by the running evaluation: env, key, env, key, ... */
    int ndirty;
    int ref_json_encode;
    int ref_proxies[32];
};

/* ---- pt_context.c ---- */

/* Creates the proxies of `context` in x's state (one userdata per kind,
   sharing a metatable; x->ref_proxies anchors them). */
void pt_context_install(struct pt_lua *x);
/* Pushes the `context` object of the running runtime (pt_luaguard_rt). */
void pt_context_push(lua_State *L);
/* A __newindex that refuses ("context is read-only"): the context object's,
   also used for the frozen library tables. */
int pt_context_readonly(lua_State *L);

/* ---- pt_luaguard.c ---- */

/* The runtime whose call runs on this thread: set before each evaluation;
   the guards and `context` read it. */
extern __thread struct pt_lua *pt_luaguard_rt;

/* The running call's deadline has passed (and the breach is recorded): the
   count hook and the pattern functions both ask. */
bool pt_luaguard_expired(void);
/* The count hook: raises "time limit exceeded" past the deadline. */
void pt_luaguard_hook(lua_State *L, lua_Debug *ar);
/* pcall(f, ...) and xpcall(f, handler) that cannot swallow a broken limit or
   a body request (the handler is not called for those). */
int pt_luaguard_pcall(lua_State *L);
int pt_luaguard_xpcall(lua_State *L);
/* string.rep and table.sort with bounded work; upvalue 1 is the original. */
int pt_luaguard_rep(lua_State *L);
int pt_luaguard_sort(lua_State *L);

#endif
