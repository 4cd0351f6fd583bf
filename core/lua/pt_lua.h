/*
 * pt_lua -- the LuaJIT runtime of a worker: expressions and Lua policies.
 *
 * One lua_State per worker, created with a counting allocator (the memory
 * cap), a coroutine per request that uses Lua.  User code is loaded from
 * source text only, runs with the JIT off for its functions under a count
 * hook that checks a per-call deadline, in a per-statement environment
 * built from an allow-list; `context` is a read-only view of the request
 * served by C functions, created lazily.  A call that breaks a limit fails
 * its request only; the state is then rebuilt before the next request.
 * docs/lua-api.md describes what scripts see.
 */
#ifndef PT_LUA_H
#define PT_LUA_H

#include "base/pt.h"

#include <portico/plugin.h>

struct pt_req;
struct pt_value;
struct pt_worker;
struct pt_wgen;

/* A value produced by an expression (or a literal): its string form is
   always set; numbers and booleans keep their type for variables. */
struct pt_luaval {
    int type; /* PT_VAR_STRING, PT_VAR_NUMBER, PT_VAR_BOOL, PT_VAR_NIL */
    pt_str s;
    double num;
    bool b;
};

struct pt_lua;

/* A Lua allocator (lua_newstate's, with &mem as its ud) that refuses to grow
   past `cap` bytes while `capped`; a refusal sets *breach to "memory" when
   breach is given.  Workers' states and policy-file readers use it. */
struct pt_lua_mem {
    size_t used, cap;
    bool capped;
    const char **breach;
};
void *pt_lua_mem_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* Creates the runtime of a worker (the state itself is created on first use). */
/* Creates the runtime of a worker (the state itself is created on first use);
   cur is where the worker keeps its current generation (its Lua limits). */
struct pt_lua *pt_lua_new(int worker, struct pt_wgen *const *cur);
void pt_lua_free(struct pt_lua *L);
/* The bytes its state holds now (0 before it is built); the worker's own thread only. */
size_t pt_lua_memory(const struct pt_lua *L);
/* Forgets what was compiled for a generation a worker no longer holds. */
void pt_lua_drop_gen(struct pt_lua *L, struct pt_wgen *wg);
/* Releases a finished request's coroutine. */
void pt_lua_release(struct pt_req *req);

/*
 * Evaluates expression number `id` of the request's generation.  Returns
 * 0 with *out filled (strings live in the request arena), PT_AGAIN when
 * the expression needs a body that has not been read yet (the caller
 * returns PT_AGAIN; evaluation restarts once the body is there), or -1
 * with the request's error set (ExpressionValueEvaluationFailure).
 */
int pt_lua_eval(struct pt_req *req, int id, struct pt_luaval *out);

/* Evaluates a compiled value: literals cost nothing. Same returns. */
int pt_lua_value_eval(struct pt_req *req, const struct pt_value *v, struct pt_luaval *out);
/* Evaluates v as a condition (true, a number, a non-empty string other than
   "false"); *st is PT_OK, PT_AGAIN (a body must be read first) or PT_ERROR. */
bool pt_lua_value_true(struct pt_req *req, const struct pt_value *v, pt_status *st);

/* ---- Lua policies: compiled by policy/pt_luapol.c, run here ---- */

struct pt_value;

/* A Lua policy: the definition the registry holds comes first. */
struct pt_luapol {
    struct pt_policy_def def;
    struct pt_attr_def *attrs;
    int nattrs;
    int expr_id; /* the file's code in the generation's expression table */
    const char *file;
};

/* One statement using a Lua policy: its compiled attribute values. */
struct pt_luapol_inst {
    const struct pt_luapol *lp;
    struct pt_value **vals; /* per attribute of lp, NULL when absent */
};

/* Runs a Lua policy's section function; returns a pt_status. */
pt_status pt_lua_run_policy(struct pt_req *req, void *policy, int section, void *attrs);

#endif
