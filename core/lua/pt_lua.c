/*
 * pt_lua -- the LuaJIT runtime of a worker: the counting allocator, building
 * the state, and calls (expressions, Lua policies, their limits, the
 * request's coroutine).  The `context` object is in pt_context.c, the
 * guards user code runs under in pt_luaguard.c (see pt_lua_int.h).
 *
 * The state.  One per worker, created lazily with a counting allocator so a
 * script cannot take more than lua.memory.  The standard libraries are
 * opened for our own use; user code never sees them: it runs in an
 * environment of its own whose missing names are looked up in an allow-list
 * table (see build_user_globals).  The string metatable is locked and points
 * at bounded copies of the string functions: string.rep checks the size of
 * its result, and the pattern functions are pt_lpat's, which poll the same
 * deadline as the hook (LuaJIT's own run in C that no hook interrupts).
 *
 * Calls.  Every evaluation runs in the request's coroutine (created on the
 * first call, kept for the request's life) with a deadline: a count hook
 * checks the clock every 1000 instructions, and user functions run with the
 * JIT off so the hook also fires in loops that would otherwise be traced.
 * pcall and xpcall are replaced by versions that re-raise a broken limit,
 * so a script cannot swallow it.  A call that breaks a limit fails its
 * request; the state is marked damaged and rebuilt before the next call.
 *
 * Bodies.  A body that has not been read cannot be waited for inside an
 * expression (a C boundary such as pcall may be on the stack), so accessing
 * it raises a marker error; the driver reads the body and evaluates the
 * statement again from its start.
 */
#include "base/pt_log.h"
#include "base/pt_paths.h"
#include "event/pt_metrics.h"
#include "http/pt_msg.h"
#include "http/pt_trace.h"
#include "lua/pt_expr.h"
#include "lua/pt_lpat.h"
#include "lua/pt_lua_int.h"
#include "lua/pt_luahelp.h"

#include <ctype.h>
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define HOOK_COUNT 1000

/* -------------------------------------------------------------- allocator */

void *pt_lua_mem_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct pt_lua_mem *m = ud;
    if (nsize == 0) {
        free(ptr);
        m->used -= ptr ? osize : 0;
        return NULL;
    }
    size_t old = ptr ? osize : 0;
    if (m->capped && nsize > old && m->used - old + nsize > m->cap) {
        if (m->breach)
            *m->breach = "memory";
        return NULL;
    }
    void *r = realloc(ptr, nsize);
    if (r)
        m->used = m->used - old + nsize;
    return r;
}

static int at_panic(lua_State *L)
{
    pt_err("Lua panic (unprotected error): %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    abort();
}

/* --------------------------------------------------------- building the state */

static void copy_lib(lua_State *L, const char *name)
{
    /* [user] -> [user]  ; user[name] = shallow copy of _G[name] */
    lua_getglobal(L, name);
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, -3)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
    lua_remove(L, -2);
    lua_setfield(L, -2, name);
}

static const struct pt_lua_limits *limits_of(struct pt_lua *x);

/* The allow-list: everything user code may reach, read-only. */
static void build_user_globals(struct pt_lua *x)
{
    lua_State *L = x->L;
    static const char *const base[] = {"assert",       "error",        "ipairs",   "next", "pairs",
                                       "select",       "tonumber",     "tostring", "type", "unpack",
                                       "getmetatable", "setmetatable", "rawequal", NULL};
    lua_newtable(L); /* [user] */
    int user = lua_gettop(L);
    for (int i = 0; base[i]; i++) {
        lua_getglobal(L, base[i]);
        lua_setfield(L, user, base[i]);
    }
    lua_pushcfunction(L, pt_luaguard_pcall);
    lua_setfield(L, user, "pcall");
    lua_pushcfunction(L, pt_luaguard_xpcall);
    lua_setfield(L, user, "xpcall");
    copy_lib(L, "string");
    copy_lib(L, "table");
    /* table.sort on plain values is C that no hook interrupts: bounded size */
    lua_getfield(L, user, "table");
    lua_getfield(L, -1, "sort");
    lua_pushcclosure(L, pt_luaguard_sort, 1);
    lua_setfield(L, -2, "sort");
    lua_pop(L, 1);
    copy_lib(L, "math");
    copy_lib(L, "bit");
    /* string: no dump; bounded rep and pattern functions */
    lua_getfield(L, user, "string");
    int str = lua_gettop(L);
    lua_pushnil(L);
    lua_setfield(L, str, "dump");
    lua_getfield(L, str, "rep");
    lua_pushcclosure(L, pt_luaguard_rep, 1);
    lua_setfield(L, str, "rep");
    x->lpat.max_subject = (size_t)limits_of(x)->pattern_subject;
    x->lpat.expired = pt_luaguard_expired;
    pt_lpat_install(L, str, &x->lpat);
    /* the string metatable: methods are the bounded ones, and it is locked */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushvalue(L, str);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 3);
    /* os: time only */
    lua_newtable(L);
    static const char *const os_ok[] = {"time", "clock", "date", "difftime", NULL};
    lua_getglobal(L, "os");
    for (int i = 0; os_ok[i]; i++) {
        lua_getfield(L, -1, os_ok[i]);
        lua_setfield(L, -3, os_ok[i]);
    }
    lua_pop(L, 1);
    lua_setfield(L, user, "os");
    /* helpers: json, base64, base64url, url, crypto, jwt, basic */
    pt_luahelp_push(L);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, user);
    }
    lua_getfield(L, -1, "json");
    lua_getfield(L, -1, "decode");
    lua_setglobal(L, "\x01pt_json_decode");
    lua_getfield(L, -1, "encode");
    x->ref_json_encode = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    lua_getfield(L, -1, "jwt");
    lua_getfield(L, -1, "parse");
    lua_setfield(L, user, "asJwt");
    lua_pop(L, 1);
    lua_getfield(L, -1, "basic");
    lua_getfield(L, -1, "parse");
    lua_setfield(L, user, "asBasic");
    lua_pop(L, 2);
    /* our prelude's helpers (split, trim, startsWith, ...) */
    int loaded = luaL_loadfile(L, pt_paths_prelude());
    if (loaded == 0) {
        /* the prelude's string and table functions are the sandbox's bounded
           ones (its helpers capture them when it loads) */
        lua_newtable(L);
        lua_getfield(L, user, "string");
        lua_setfield(L, -2, "string");
        lua_getfield(L, user, "table");
        lua_setfield(L, -2, "table");
        lua_newtable(L);
        lua_pushvalue(L, LUA_GLOBALSINDEX);
        lua_setfield(L, -2, "__index");
        lua_setmetatable(L, -2);
        lua_setfenv(L, -2);
    }
    if (loaded == 0 && lua_pcall(L, 0, 1, 0) == 0 && lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, user);
        }
    } else
        pt_err("cannot load the Lua prelude %s: %s", pt_paths_prelude(),
               lua_tostring(L, -1) ? lua_tostring(L, -1) : "not a table");
    lua_pop(L, 1);
    /* context */
    pt_context_push(L);
    lua_setfield(L, user, "context");
    /* freeze the library tables: writes go nowhere shared */
    static const char *const libs[] = {"string",    "table", "math",   "bit", "os",    "json", "base64",
                                       "base64url", "url",   "crypto", "jwt", "basic", NULL};
    for (int i = 0; libs[i]; i++) {
        lua_getfield(L, user, libs[i]);
        if (!lua_istable(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        /* replace the table by a proxy with no storage of its own: a
           userdata, so that raw writes (table.insert(math, x), rawset)
           have nowhere to go and nothing survives an evaluation */
        lua_newuserdata(L, 0);
        lua_newtable(L);
        lua_pushvalue(L, -3);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, pt_context_readonly);
        lua_setfield(L, -2, "__newindex");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_setmetatable(L, -2);
        lua_setfield(L, user, libs[i]);
        lua_pop(L, 1);
    }
    x->ref_genv = luaL_ref(L, LUA_REGISTRYINDEX);
}

static bool state_build(struct pt_lua *x)
{
    x->mem = (struct pt_lua_mem){0, 0, false, &x->breach};
    lua_State *L = lua_newstate(pt_lua_mem_alloc, &x->mem);
    if (!L)
        return false;
    x->L = L;
    lua_atpanic(L, at_panic);
    luaL_openlibs(L);
    /* the context object: one userdata per kind, sharing a metatable */
    pt_context_install(x);
    build_user_globals(x);
    lua_newtable(L);
    x->ref_threads = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    x->ref_dirty = luaL_ref(L, LUA_REGISTRYINDEX);
    x->ndirty = 0;
    lua_sethook(L, pt_luaguard_hook, LUA_MASKCOUNT, HOOK_COUNT);
    lua_gc(L, LUA_GCCOLLECT, 0);
    x->mem.capped = true;
    x->mem.cap =
        (size_t)limits_of(x)->memory + x->mem.used; /* the cap is for scripts, on top of the runtime */
    x->epoch++;
    x->damaged = false;
    return true;
}

static bool state_ready(struct pt_lua *x)
{
    if (x->L && !x->damaged)
        return true;
    if (x->L) {
        pt_warn("worker %d: rebuilding the Lua state after a script broke a limit", x->worker);
        lua_close(x->L);
        x->L = NULL;
    }
    return state_build(x);
}

struct pt_lua *pt_lua_new(int worker, struct pt_wgen *const *cur)
{
    struct pt_lua *x = calloc(1, sizeof(*x));
    if (x) {
        x->worker = worker;
        x->wcur = cur;
    }
    return x;
}

size_t pt_lua_memory(const struct pt_lua *x)
{
    return x && x->L ? x->mem.used : 0;
}

void pt_lua_free(struct pt_lua *x)
{
    if (!x)
        return;
    if (x->L)
        lua_close(x->L);
    free(x);
}

void pt_lua_drop_gen(struct pt_lua *x, struct pt_wgen *wg)
{
    if (x && x->L && wg->lua_refs && wg->lua_epoch == x->epoch)
        for (int i = 0; i < wg->nlua; i++)
            if (wg->lua_refs[i] > 0)
                luaL_unref(x->L, LUA_REGISTRYINDEX, wg->lua_refs[i]);
    free(wg->lua_refs);
    wg->lua_refs = NULL;
    wg->nlua = 0;
}

void pt_lua_release(struct pt_req *req)
{
    struct pt_lua *x = req->peer->lua;
    if (req->lua_thread && x && x->L && req->lua_epoch == x->epoch) {
        lua_rawgeti(x->L, LUA_REGISTRYINDEX, x->ref_threads);
        lua_pushnil(x->L);
        lua_rawseti(x->L, -2, req->lua_thread);
        lua_pop(x->L, 1);
    }
    req->lua_thread = 0;
}

/* ---------------------------------------------------------------- calls */

static const struct pt_lua_limits *limits_of(struct pt_lua *x)
{
    return &(*x->wcur)->gen->conf->lua;
}

/* A global set by user code: kept in the statement's environment until the
   evaluation ends (see forget_globals), so nothing a script leaves behind
   reaches the next request. */
static int env_newindex(lua_State *L)
{
    lua_settop(L, 3);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_rawset(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, pt_luaguard_rt->ref_dirty);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, ++pt_luaguard_rt->ndirty);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, ++pt_luaguard_rt->ndirty);
    return 0;
}

static void forget_globals(struct pt_lua *x)
{
    if (!x->ndirty)
        return;
    lua_State *L = x->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->ref_dirty);
    for (int i = 1; i < x->ndirty; i += 2) {
        lua_rawgeti(L, -1, i);
        lua_rawgeti(L, -2, i + 1);
        lua_pushnil(L);
        lua_rawset(L, -3);
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_rawseti(L, -2, i);
        lua_pushnil(L);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pop(L, 1);
    x->ndirty = 0;
}

/* Pushes compiled expression `id` of the request's generation onto L. */
static bool push_expr(struct pt_lua *x, struct pt_req *req, int id, const char **err)
{
    lua_State *L = x->L;
    struct pt_wgen *wg = req->wg;
    struct pt_expr_table *t = req_gen(req)->exprs;
    if (wg->lua_epoch != x->epoch || !wg->lua_refs) {
        free(wg->lua_refs);
        wg->nlua = t->n;
        wg->lua_refs = calloc((size_t)(t->n ? t->n : 1), sizeof(int));
        wg->lua_epoch = x->epoch;
    }
    if (id < 1 || id > wg->nlua) {
        *err = "unknown expression";
        return false;
    }
    if (wg->lua_refs[id - 1] > 0) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, wg->lua_refs[id - 1]);
        return true;
    }
    const struct pt_expr *e = &t->e[id - 1];
    /* a policy file is named by its path; Lua cuts chunk names at 60 bytes,
       so an expression's messages name its place by x->where instead
       (expression_message) */
    char name[300];
    snprintf(name, sizeof(name), "=%s", e->policy ? e->chunk : PT_EXPR_CHUNK);
    if (luaL_loadbufferx(L, e->code, e->code_len, name, "t") != 0) {
        *err = lua_tostring(L, -1);
        lua_pop(L, 1);
        return false;
    }
    /* its own environment, reading the allow-list; what it sets lasts one evaluation */
    lua_newtable(L);
    lua_newtable(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->ref_genv);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, env_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_setfenv(L, -2);
    /* user code runs interpreted, so the count hook sees every loop */
    luaJIT_setmode(L, -1, LUAJIT_MODE_ALLFUNC | LUAJIT_MODE_OFF);
    lua_pushvalue(L, -1);
    wg->lua_refs[id - 1] = luaL_ref(L, LUA_REGISTRYINDEX);
    return true;
}

/* The place without the configuration file's directory: what a client may
   learn through context.lastError.message ("portico.yaml:12:9: api …"). */
static const char *place_for_clients(const char *where)
{
    const char *colon = strchr(where, ':');
    if (!colon || !isdigit((unsigned char)colon[1]) || memchr(where, ' ', (size_t)(colon - where)))
        return where; /* no file: the words only */
    const char *base = where;
    for (const char *p = where; p < colon; p++)
        if (*p == '/')
            base = p + 1;
    return base;
}

/* "expression:LINE: text" from Lua becomes "WHERE: text", with the line
   when a block has several; for a client, WHERE leaves out the directory. */
static void expression_message(const struct pt_expr *e, const char *msg, bool for_client, char *buf,
                               size_t size)
{
    const char *where = for_client ? place_for_clients(e->chunk) : e->chunk;
    size_t cl = strlen(PT_EXPR_CHUNK);
    const char *p = msg + cl + 1;
    char *end = NULL;
    long line = strncmp(msg, PT_EXPR_CHUNK ":", cl + 1) ? -1 : strtol(p, &end, 10);
    if (line < 0 || !end || end == p || strncmp(end, ": ", 2))
        pt_str_fmt(buf, size, "%s: %s", where, msg);
    else if (line > 1 && e->block)
        pt_str_fmt(buf, size, "%s (line %ld of the expression): %s", where, line, end + 2);
    else
        pt_str_fmt(buf, size, "%s: %s", where, end + 2);
}

/* The request's coroutine, pushed on L. */
static lua_State *request_thread(struct pt_lua *x, struct pt_req *req)
{
    lua_State *L = x->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->ref_threads);
    if (req->lua_thread && req->lua_epoch == x->epoch) {
        lua_rawgeti(L, -1, req->lua_thread);
        lua_State *co = lua_tothread(L, -1);
        lua_pop(L, 2);
        if (co && lua_status(co) == 0)
            return co;
    }
    lua_State *co = lua_newthread(L);
    int ref = luaL_ref(L, -2);
    lua_pop(L, 1);
    req->lua_thread = ref;
    req->lua_epoch = x->epoch;
    return co;
}

static void set_result(struct pt_req *req, lua_State *co, int idx, struct pt_luaval *out)
{
    memset(out, 0, sizeof(*out));
    switch (lua_type(co, idx)) {
    case LUA_TNIL:
    case LUA_TNONE:
        out->type = PT_VAR_NIL;
        out->s = PT_STR("");
        return;
    case LUA_TBOOLEAN:
        out->type = PT_VAR_BOOL;
        out->b = lua_toboolean(co, idx);
        out->s = out->b ? PT_STR("true") : PT_STR("false");
        return;
    case LUA_TNUMBER: {
        out->type = PT_VAR_NUMBER;
        out->num = lua_tonumber(co, idx);
        char buf[64];
        double n = out->num;
        int k = (n == floor(n) && fabs(n) < 1e15) ? snprintf(buf, sizeof(buf), "%.0f", n)
                                                  : snprintf(buf, sizeof(buf), "%.14g", n);
        out->s = pt_pool_str(req->pool, buf, (size_t)k);
        return;
    }
    default: {
        size_t l;
        const char *s = lua_tolstring(co, idx, &l);
        out->type = PT_VAR_STRING;
        out->s = pt_pool_str(req->pool, s, l);
        return;
    }
    }
}

/*
 * Runs the function on top of co's stack with `nargs` arguments under the
 * limits.  Returns 0 (results on co's stack), PT_AGAIN (a body is needed)
 * or -1 (error recorded on req).
 */
static int call_limited(struct pt_lua *x, struct pt_req *req, lua_State *co, int nargs, int nres)
{
    x->cur = req;
    x->breach = NULL;
    x->need_body = 0;
    x->deadline = pt_clock_now_ms() + limits_of(x)->timeout;
    int base = lua_gettop(co) - nargs - 1;
    int st = lua_resume(co, nargs);
    x->deadline = 0;
    if (x->ndirty && !x->breach)
        forget_globals(x);
    if (st == 0) {
        /* keep exactly nres results */
        int got = lua_gettop(co) - base;
        if (nres >= 0) {
            if (got < nres)
                for (int i = got; i < nres; i++)
                    lua_pushnil(co);
            else if (got > nres)
                lua_pop(co, got - nres);
        }
        return 0;
    }
    /* the coroutine is dead after an error: the next call gets a fresh one */
    const char *msg = lua_tostring(co, -1);
    int need = x->need_body;
    x->need_body = 0;
    req->lua_thread = 0;
    if (need) {
        req->ex.need_body = need;
        return PT_AGAIN;
    }
    char buf[1024], shown[1024];
    shown[0] = '\0';
    if (st == LUA_YIELD)
        snprintf(buf, sizeof(buf), "a script may not yield");
    else if (x->breach) {
        snprintf(buf, sizeof(buf), "script exceeded its %s limit (%s)", x->breach,
                 !strcmp(x->breach, "time") ? "lua.timeout" : "lua.memory");
        if (!strcmp(x->breach, "time") && pt_metrics_core[PT_MC_LUA_TIMEOUTS])
            pt_metrics_add(pt_metrics_core[PT_MC_LUA_TIMEOUTS], pt_metrics_worker_shard(x->worker), 0, 1);
        x->damaged = true;
    } else if (x->expr && msg) {
        expression_message(x->expr, msg, false, buf, sizeof(buf));
        expression_message(x->expr, msg, true, shown, sizeof(shown));
    } else
        snprintf(buf, sizeof(buf), "%s", msg ? msg : "error in a script");
    x->breach = NULL;
    pt_warn("request %.*s: %s", (int)req->idn, req->id, buf);
    pt_msg_set_error(req, 500, "expression", "ExpressionValueEvaluationFailure", shown[0] ? shown : buf);
    return -1;
}

int pt_lua_eval(struct pt_req *req, int id, struct pt_luaval *out)
{
    struct pt_lua *x = req->peer->lua;
    pt_luaguard_rt = x;
    if (!state_ready(x)) {
        pt_msg_set_error(req, 500, "expression", "ExpressionValueEvaluationFailure",
                         "cannot create a Lua state");
        return -1;
    }
    lua_State *co = request_thread(x, req);
    const char *err = NULL;
    if (!push_expr(x, req, id, &err)) {
        pt_msg_set_error(req, 500, "expression", "ExpressionValueEvaluationFailure", err ? err : "?");
        return -1;
    }
    lua_xmove(x->L, co, 1);
    x->expr = &req_gen(req)->exprs->e[id - 1];
    int rc = call_limited(x, req, co, 0, 1);
    x->expr = NULL;
    if (rc != 0)
        return rc;
    if (lua_type(co, -1) == LUA_TTABLE) {
        /* a table becomes its JSON text */
        lua_rawgeti(co, LUA_REGISTRYINDEX, x->ref_json_encode);
        lua_insert(co, -2);
        if (lua_pcall(co, 1, 1, 0) != 0) {
            pt_msg_set_error(req, 500, "expression", "ExpressionValueEvaluationFailure",
                             lua_tostring(co, -1) ? lua_tostring(co, -1) : "cannot encode a table");
            lua_settop(co, 0);
            return -1;
        }
    }
    set_result(req, co, -1, out);
    lua_settop(co, 0);
    if (PT_UNLIKELY(req->trace != NULL)) {
        const struct pt_expr *e = &req_gen(req)->exprs->e[id - 1];
        pt_trace_expr(req, (pt_str){e->src, e->len}, out->type, out->s);
    }
    return 0;
}

int pt_lua_value_eval(struct pt_req *req, const struct pt_value *v, struct pt_luaval *out)
{
    if (!v->expr) {
        out->type = PT_VAR_STRING;
        out->s = (pt_str){v->text, v->len};
        out->num = 0;
        out->b = false;
        return 0;
    }
    return pt_lua_eval(req, v->expr, out);
}

bool pt_lua_value_true(struct pt_req *req, const struct pt_value *v, pt_status *st)
{
    struct pt_luaval out;
    int rc = pt_lua_value_eval(req, v, &out);
    if (rc == PT_AGAIN) {
        *st = PT_AGAIN;
        return false;
    }
    if (rc != 0) {
        *st = PT_ERROR;
        return false;
    }
    *st = PT_OK;
    switch (out.type) {
    case PT_VAR_BOOL:
        return out.b;
    case PT_VAR_NIL:
        return false;
    case PT_VAR_NUMBER:
        return true;
    default:
        return !(out.s.len == 5 && !strncasecmp(out.s.data, "false", 5)) && out.s.len != 0;
    }
}

/* Pushes the declaration table of a Lua policy file onto co (cached per generation). */
static bool push_policy_table(struct pt_lua *x, struct pt_req *req, lua_State *co, int id)
{
    struct pt_wgen *wg = req->wg;
    lua_State *L = x->L;
    const char *err = NULL;
    if (wg->lua_epoch == x->epoch && wg->lua_refs && id <= wg->nlua && wg->lua_refs[id - 1] > 0) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, wg->lua_refs[id - 1]);
        lua_xmove(L, co, 1);
        return true;
    }
    if (!push_expr(x, req, id, &err)) {
        pt_msg_set_error(req, 500, "lua-policy", "PolicyLoadFailure", err ? err : "?");
        return false;
    }
    /* push_expr cached the chunk; the policy caches its table instead */
    luaL_unref(L, LUA_REGISTRYINDEX, wg->lua_refs[id - 1]);
    wg->lua_refs[id - 1] = 0;
    lua_xmove(L, co, 1);
    if (call_limited(x, req, co, 0, 1) != 0)
        return false;
    if (!lua_istable(co, -1)) {
        lua_settop(co, 0);
        pt_msg_set_error(req, 500, "lua-policy", "PolicyLoadFailure",
                         "the policy file did not return a table");
        return false;
    }
    lua_pushvalue(co, -1);
    lua_xmove(co, L, 1);
    wg->lua_refs[id - 1] = luaL_ref(L, LUA_REGISTRYINDEX);
    return true;
}

static void push_luaval(lua_State *co, const struct pt_attr_def *a, const struct pt_luaval *v)
{
    if (v->type == PT_VAR_NIL) {
        lua_pushnil(co);
        return;
    }
    switch (a->type) {
    case PT_ATTR_INT:
        lua_pushnumber(co, v->type == PT_VAR_NUMBER ? v->num : strtod(v->s.data ? v->s.data : "0", NULL));
        return;
    case PT_ATTR_BOOL:
        lua_pushboolean(co, v->type == PT_VAR_BOOL ? v->b
                                                   : (v->s.len == 4 && !strncasecmp(v->s.data, "true", 4)));
        return;
    default:
        lua_pushlstring(co, v->s.data ? v->s.data : "", v->s.len);
    }
}

pt_status pt_lua_run_policy(struct pt_req *req, void *instance, int section, void *unused)
{
    (void)unused;
    const struct pt_luapol_inst *in = instance;
    const struct pt_luapol *lp = in->lp;
    struct pt_lua *x = req->peer->lua;
    pt_luaguard_rt = x;
    /* attribute values first: expressions run in this request's coroutine too */
    struct pt_luaval *vals = pt_pool_calloc(req->pool, sizeof(*vals) * (size_t)(lp->nattrs ? lp->nattrs : 1));
    for (int i = 0; i < lp->nattrs; i++) {
        const struct pt_attr_def *a = &lp->attrs[i];
        if (in->vals[i]) {
            int rc = pt_lua_value_eval(req, in->vals[i], &vals[i]);
            if (rc != 0)
                return rc == PT_AGAIN ? PT_AGAIN : PT_ERROR;
        } else if (a->def)
            vals[i] = (struct pt_luaval){PT_VAR_STRING, pt_str_c(a->def), 0, false};
        else
            vals[i].type = PT_VAR_NIL;
    }
    if (!state_ready(x)) {
        pt_msg_set_error(req, 500, "lua-policy", "PolicyFailure", "cannot create a Lua state");
        return PT_ERROR;
    }
    lua_State *co = request_thread(x, req);
    if (!push_policy_table(x, req, co, lp->expr_id))
        return PT_ERROR;
    lua_getfield(co, -1, pt_msg_section_names[section]);
    lua_remove(co, -2);
    if (!lua_isfunction(co, -1)) {
        lua_settop(co, 0);
        return PT_OK;
    }
    pt_context_push(co);
    lua_createtable(co, 0, lp->nattrs);
    for (int i = 0; i < lp->nattrs; i++) {
        push_luaval(co, &lp->attrs[i], &vals[i]);
        lua_setfield(co, -2, lp->attrs[i].name);
    }
    x->in_policy = true;
    int rc = call_limited(x, req, co, 2, 4);
    x->in_policy = false;
    if (rc != 0)
        return rc == PT_AGAIN ? PT_AGAIN : PT_ERROR;
    /* returns: nothing (continue), "done" (the response is final), or
       "fail", status, reason, message */
    const char *what = lua_tostring(co, 1);
    pt_status st = PT_OK;
    if (what && !strcmp(what, "done")) {
        pt_msg_response(req);
        st = PT_DONE;
    } else if (what && !strcmp(what, "fail")) {
        int status = lua_isnumber(co, 2) ? (int)lua_tointeger(co, 2) : 500;
        const char *reason = lua_tostring(co, 3);
        const char *message = lua_tostring(co, 4);
        pt_msg_set_error(req, status >= 100 && status <= 999 ? status : 500, lp->def.name,
                         pt_pool_strdup(req->pool, reason ? reason : "PolicyFailure"),
                         message ? message : "a Lua policy failed");
        st = PT_ERROR;
    } else if (what) {
        pt_msg_set_error(req, 500, lp->def.name, "PolicyFailure",
                         "a Lua policy returned something other than nothing, \"done\" or \"fail\"");
        st = PT_ERROR;
    }
    lua_settop(co, 0);
    return st;
}
