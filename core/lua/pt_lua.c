/*
 * pt_lua -- the LuaJIT runtime of a worker.
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
 *
 * The `context` object is a tree of userdata proxies whose __index is C:
 * no table is built per request; values are read from the current request
 * when asked for.
 */
#include "lua/pt_lua.h"
#include "base/pt_log.h"
#include "base/pt_paths.h"
#include "http/pt_msg.h"
#include "lua/pt_expr.h"
#include "lua/pt_lpat.h"
#include "lua/pt_luahelp.h"
#include "policy/pt_gen.h"

#include <event2/buffer.h>
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define HOOK_COUNT 1000
#define NEED_BODY_MARK "\x01portico:need-body"

struct pt_lua {
    int worker;                  /* the worker's number, for messages */
    struct pt_wgen *const *wcur; /* the worker's current generation: its limits */
    lua_State *L;
    uint64_t epoch;   /* bumped when the state is rebuilt */
    struct pt_lua_mem mem; /* its allocator: lua.memory, enforced once the state is built */
    uint64_t deadline; /* ms, 0 = none */
    struct pt_lpat_env lpat; /* pattern functions: subject cap, deadline */
    const char *breach; /* "time" / "memory" while a limit is broken */
    int need_body;      /* PT_MSG_* asked for while evaluating */
    bool damaged;
    struct pt_req *cur;
    bool in_policy;     /* running a Lua policy: context may be changed */
    int ref_genv;       /* read-only globals for user code */
    int ref_threads;    /* table anchoring request coroutines */
    int ref_dirty;      /* globals set by the running evaluation: env, key, env, key, ... */
    int ndirty;
    int ref_json_encode;
    int ref_proxies[32];
};

static __thread struct pt_lua *tl;

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

/* The running call's deadline has passed (and the breach is recorded): the
   count hook and the pattern functions both ask. */
static bool deadline_passed(void)
{
    struct pt_lua *x = tl;
    if (x && x->deadline && pt_now_ms() >= x->deadline) {
        x->breach = "time";
        return true;
    }
    return false;
}

static void hook(lua_State *L, lua_Debug *ar)
{
    if (deadline_passed()) {
        lua_pushstring(L, "time limit exceeded");
        lua_error(L);
    }
}

/* Re-raises a broken limit or a body request that a pcall caught. */
static void rethrow_if_sticky(lua_State *L)
{
    if (tl->breach || tl->need_body)
        lua_error(L);
}

/* pcall(f, ...) that cannot swallow a broken limit. */
static int safe_pcall(lua_State *L)
{
    luaL_checkany(L, 1);
    int st = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    if (st != 0)
        rethrow_if_sticky(L);
    lua_pushboolean(L, st == 0);
    lua_insert(L, 1);
    return lua_gettop(L);
}

/* xpcall(f, handler): the handler is not called for a broken limit. */
static int safe_xpcall(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    lua_pushvalue(L, 1);
    int st = lua_pcall(L, 0, LUA_MULTRET, 0);
    if (st != 0) {
        rethrow_if_sticky(L);
        lua_pushvalue(L, 2);
        lua_insert(L, -2);
        lua_call(L, 1, 1);
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_replace(L, 1);
    lua_remove(L, 2);
    return lua_gettop(L);
}

/* ---------------------------------------------------- bounded string lib */

static size_t max_string(void)
{
    return tl && tl->mem.cap ? tl->mem.cap / 4 : (16u << 20);
}

static int safe_sort(lua_State *L);

static int safe_rep(lua_State *L)
{
    size_t l, ls = 0;
    luaL_checklstring(L, 1, &l);
    lua_Number n = luaL_checknumber(L, 2);
    if (lua_type(L, 3) == LUA_TSTRING)
        lua_tolstring(L, 3, &ls);
    double total = n > 0 ? (double)l * n + (double)ls * (n - 1) : 0;
    if (total > (double)max_string())
        return luaL_error(L, "string.rep: result too large (%f bytes)", total);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* table.sort: at most SORT_MAX elements.  Without a comparator the sort
   runs in C, where the deadline cannot reach; this many sort in a few ms. */
#define SORT_MAX 100000

static int safe_sort(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t n = lua_objlen(L, 1);
    if (n > SORT_MAX)
        return luaL_error(L, "table.sort: %d elements, more than the %d allowed", (int)(n > INT32_MAX ? INT32_MAX : n),
                          SORT_MAX);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 0);
    return 0;
}

/* ------------------------------------------------------------- proxies */

enum kind {
    K_CONTEXT, K_REQUEST, K_RESPONSE, K_REQ_HEADERS, K_RESP_HEADERS, K_URL, K_ORIG_URL, K_MATCHED,
    K_REQ_BODY, K_RESP_BODY, K_VARIABLES, K_API, K_OPERATION, K_DEPLOYMENT, K_LASTERROR, K_QUERY,
    K_ORIG_QUERY, K_COUNT
};

static void push_proxy(lua_State *L, int kind)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, tl->ref_proxies[kind]);
}

static int proxy_kind(lua_State *L, int idx)
{
    int *k = lua_touserdata(L, idx);
    return k ? *k : -1;
}

static struct pt_req *cur(lua_State *L)
{
    if (!tl->cur)
        luaL_error(L, "no request");
    return tl->cur;
}

static void push_str(lua_State *L, pt_str s)
{
    lua_pushlstring(L, s.p ? s.p : "", s.n);
}

static bool key_is(const char *k, size_t kl, const char *lit)
{
    return kl == strlen(lit) && !memcmp(k, lit, kl);
}

/* Joined values of a header, or nothing (returns false). */
static bool push_header(lua_State *L, struct pt_head *h, pt_str name, bool request)
{
    struct pt_buf b;
    bool found = false;
    pt_buf_init(&b, cur(L)->pool, 64);
    for (int i = 0; i < h->nh; i++) {
        struct pt_hdr *x = &h->h[i];
        if (x->deleted || !pt_str_ieq(x->name, name))
            continue;
        if (request && x->hop && x->kind != PT_H_HOST)
            continue;
        if (found)
            pt_buf_lit(&b, ",");
        pt_buf_str(&b, x->value);
        found = true;
    }
    if (found)
        lua_pushlstring(L, b.p, b.n);
    return found;
}

static struct pt_head *headers_of(lua_State *L, int kind)
{
    struct pt_req *req = cur(L);
    if (kind == K_REQ_HEADERS)
        return &req->h;
    return req->rh_done ? &req->rh : NULL;
}

/* headers:get(name, default) */
static int headers_get(lua_State *L)
{
    int kind = proxy_kind(L, 1);
    size_t nl;
    const char *n = luaL_checklstring(L, 2, &nl);
    struct pt_head *h = headers_of(L, kind);
    if (h && push_header(L, h, (pt_str){n, nl}, kind == K_REQ_HEADERS))
        return 1;
    lua_settop(L, 3);
    return 1;
}

static int headers_has(lua_State *L)
{
    int kind = proxy_kind(L, 1);
    size_t nl;
    const char *n = luaL_checklstring(L, 2, &nl);
    struct pt_head *h = headers_of(L, kind);
    bool found = h && push_header(L, h, (pt_str){n, nl}, kind == K_REQ_HEADERS);
    lua_pushboolean(L, found);
    return 1;
}

static int headers_all(lua_State *L)
{
    int kind = proxy_kind(L, 1);
    size_t nl;
    const char *n = luaL_checklstring(L, 2, &nl);
    struct pt_head *h = headers_of(L, kind);
    lua_newtable(L);
    int k = 0;
    for (int i = 0; h && i < h->nh; i++) {
        struct pt_hdr *x = &h->h[i];
        if (x->deleted || !pt_str_ieq(x->name, (pt_str){n, nl}) ||
            (kind == K_REQ_HEADERS && x->hop && x->kind != PT_H_HOST))
            continue;
        push_str(L, x->value);
        lua_rawseti(L, -2, ++k);
    }
    return 1;
}

/* headers:set(name, value[, mode]) -- Lua policies only */
static int headers_change(lua_State *L)
{
    if (!tl->in_policy)
        return luaL_error(L, "context is read-only in expressions");
    int kind = proxy_kind(L, 1);
    int mode = (int)lua_tointeger(L, lua_upvalueindex(1));
    size_t nl, vl = 0;
    const char *n = luaL_checklstring(L, 2, &nl);
    const char *v = mode == PT_HEADER_DELETE ? "" : luaL_checklstring(L, 3, &vl);
    pt_bytes val = {v, vl};
    struct pt_req *req = cur(L);
    if (pt_msg_header_set(req, kind == K_REQ_HEADERS ? PT_MSG_REQUEST : PT_MSG_RESPONSE, (pt_bytes){n, nl},
                          &val, mode == PT_HEADER_DELETE ? 0 : 1, (pt_header_mode)mode) < 0)
        return luaL_error(L, "%s", req->ex.err.message);
    return 0;
}

static void need_body(lua_State *L, int which)
{
    tl->need_body = which;
    lua_pushstring(L, NEED_BODY_MARK);
    lua_error(L);
}

/* Pushes a message body as a string; consumes it unless preserve. */
static void push_body(lua_State *L, int kind, bool preserve)
{
    struct pt_req *req = cur(L);
    struct evbuffer *b;
    if (kind == K_REQ_BODY) {
        if (pt_msg_body_unread(req, PT_MSG_REQUEST))
            need_body(L, PT_MSG_REQUEST);
        b = req->req_body;
    } else {
        if (pt_msg_body_unread(req, PT_MSG_RESPONSE))
            need_body(L, PT_MSG_RESPONSE);
        b = req->resp_body;
    }
    size_t n = b ? evbuffer_get_length(b) : 0;
    lua_pushlstring(L, n ? (const char *)evbuffer_pullup(b, -1) : "", n);
    if (!preserve) /* APIM: reading a body consumes it */
        pt_msg_set_body(req, kind == K_REQ_BODY ? PT_MSG_REQUEST : PT_MSG_RESPONSE, PT_NULL_STR);
}

static int body_as_string(lua_State *L)
{
    push_body(L, proxy_kind(L, 1), lua_toboolean(L, 2));
    return 1;
}

static int body_as_json(lua_State *L)
{
    push_body(L, proxy_kind(L, 1), lua_toboolean(L, 2));
    lua_getglobal(L, "\x01pt_json_decode");
    lua_insert(L, -2);
    lua_call(L, 1, 2);
    if (lua_isnil(L, -2))
        return luaL_error(L, "body is not JSON: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    lua_pop(L, 1);
    return 1;
}

/* body:set(text) -- Lua policies only */
static int body_set(lua_State *L)
{
    if (!tl->in_policy)
        return luaL_error(L, "context is read-only in expressions");
    size_t l;
    const char *s = luaL_checklstring(L, 2, &l);
    pt_msg_set_body(cur(L), proxy_kind(L, 1) == K_REQ_BODY ? PT_MSG_REQUEST : PT_MSG_RESPONSE, (pt_str){s, l});
    return 0;
}

static int vars_get(lua_State *L)
{
    size_t nl;
    const char *n = luaL_checklstring(L, 2, &nl);
    const struct pt_var *v = pt_msg_var_get(cur(L), (pt_str){n, nl});
    if (!v) {
        lua_settop(L, 3);
        return 1;
    }
    switch (v->type) {
    case PT_VAR_NUMBER: lua_pushnumber(L, strtod(v->value.p, NULL)); break;
    case PT_VAR_BOOL: lua_pushboolean(L, v->value.n == 4); break;
    case PT_VAR_NIL: lua_pushnil(L); break;
    default: push_str(L, v->value);
    }
    return 1;
}

/* variables:set(name, value) -- Lua policies only */
static int vars_set(lua_State *L)
{
    if (!tl->in_policy)
        return luaL_error(L, "context is read-only in expressions");
    size_t nl;
    const char *n = luaL_checklstring(L, 2, &nl);
    struct pt_req *req = cur(L);
    struct pt_luaval v;
    memset(&v, 0, sizeof(v));
    switch (lua_type(L, 3)) {
    case LUA_TBOOLEAN:
        v.type = PT_VAR_BOOL;
        v.b = lua_toboolean(L, 3);
        v.s = v.b ? PT_STR("true") : PT_STR("false");
        break;
    case LUA_TNUMBER:
    case LUA_TSTRING: {
        size_t l;
        const char *s = lua_tolstring(L, 3, &l);
        v.type = lua_type(L, 3) == LUA_TNUMBER ? PT_VAR_NUMBER : PT_VAR_STRING;
        v.s = (pt_str){s, l};
        break;
    }
    case LUA_TNIL:
        v.type = PT_VAR_NIL;
        v.s = PT_STR("");
        break;
    default:
        return luaL_error(L, "variables hold strings, numbers and booleans");
    }
    pt_msg_var_set(req, (pt_str){n, nl}, v.type, v.s);
    return 0;
}

/* response:setStatus(code[, reason]) -- Lua policies only */
static int resp_set_status(lua_State *L)
{
    if (!tl->in_policy)
        return luaL_error(L, "context is read-only in expressions");
    int code = (int)luaL_checkinteger(L, 2);
    size_t rl = 0;
    const char *r = luaL_optlstring(L, 3, "", &rl);
    if (pt_msg_set_status(cur(L), code, (pt_str){r, rl}, "lua-policy") < 0)
        return luaL_error(L, "invalid status code or reason");
    return 0;
}

static int vars_contains(lua_State *L)
{
    size_t nl;
    const char *n = luaL_checklstring(L, 2, &nl);
    lua_pushboolean(L, pt_msg_var_get(cur(L), (pt_str){n, nl}) != NULL);
    return 1;
}

static int matched_get(lua_State *L)
{
    struct pt_req *req = cur(L);
    size_t nl;
    const char *n = luaL_checklstring(L, 2, &nl);
    for (int i = 0; i < req->m.nparams; i++)
        if (pt_str_eq(req->m.params[i].name, (pt_str){n, nl})) {
            pt_str raw = req->m.params[i].value;
            char *d = pt_pool_alloc(req->pool, raw.n + 1);
            ssize_t k = pt_pct_decode(raw, d, false);
            if (k < 0)
                push_str(L, raw);
            else
                lua_pushlstring(L, d, (size_t)k);
            return 1;
        }
    lua_settop(L, 3);
    return 1;
}

static int query_get(lua_State *L)
{
    struct pt_req *req = cur(L);
    size_t nl;
    const char *n = luaL_checklstring(L, 2, &nl);
    pt_str q = proxy_kind(L, 1) == K_QUERY ? req->bquery : req->h.query;
    struct pt_buf b;
    pt_buf_init(&b, req->pool, 32);
    bool found = false;
    while (q.n) {
        const char *amp = memchr(q.p, '&', q.n);
        size_t len = amp ? (size_t)(amp - q.p) : q.n;
        const char *eq = memchr(q.p, '=', len);
        pt_str k = {q.p, eq ? (size_t)(eq - q.p) : len};
        if (pt_str_eq(k, (pt_str){n, nl})) {
            pt_str raw = eq ? (pt_str){eq + 1, len - k.n - 1} : PT_NULL_STR;
            char *d = pt_pool_alloc(req->pool, raw.n + 1);
            ssize_t dn = pt_pct_decode(raw, d, true);
            if (found)
                pt_buf_lit(&b, ",");
            if (dn >= 0)
                pt_buf_add(&b, d, (size_t)dn);
            else
                pt_buf_str(&b, raw);
            found = true;
        }
        if (!amp)
            break;
        q.p += len + 1;
        q.n -= len + 1;
    }
    if (found)
        lua_pushlstring(L, b.p, b.n);
    else
        lua_settop(L, 3);
    return 1;
}

static int ctx_trace(lua_State *L)
{
    size_t l;
    const char *m = luaL_optlstring(L, 1, "", &l);
    struct pt_req *req = cur(L);
    pt_info("trace %.*s: %.*s", (int)req->idn, req->id, (int)PT_MIN(l, (size_t)2000), m);
    return 0;
}

static void push_method(lua_State *L, lua_CFunction f, int upv)
{
    if (upv >= 0) {
        lua_pushinteger(L, upv);
        lua_pushcclosure(L, f, 1);
    } else
        lua_pushcfunction(L, f);
}

static void push_url(lua_State *L, bool original, const char *field, size_t fl)
{
    struct pt_req *req = cur(L);
    pt_str host = pt_host_strip_port(req->h.host);
    if (key_is(field, fl, "scheme"))
        lua_pushstring(L, req->peer->tls ? "https" : "http");
    else if (key_is(field, fl, "host"))
        push_str(L, host);
    else if (key_is(field, fl, "port")) {
        const char *colon = req->h.host.n > host.n ? req->h.host.p + host.n : NULL;
        lua_pushinteger(L, colon && *colon == ':' ? atoi(colon + 1) : (req->peer->tls ? 443 : 80));
    } else if (key_is(field, fl, "path")) {
        if (original)
            push_str(L, req->h.path);
        else {
            /* the API suffix plus the (possibly rewritten) operation path */
            pt_str full = req->h.path;
            size_t suffix = req->m.rest.p && req->m.rest.p >= full.p ? (size_t)(req->m.rest.p - full.p) : full.n;
            lua_pushlstring(L, full.p, suffix);
            push_str(L, req->bpath);
            lua_concat(L, 2);
        }
    } else if (key_is(field, fl, "queryString"))
        push_str(L, original ? req->h.query : req->bquery);
    else if (key_is(field, fl, "query"))
        push_proxy(L, original ? K_ORIG_QUERY : K_QUERY);
    else
        lua_pushnil(L);
}

static void push_lasterror(lua_State *L, const char *f, size_t fl)
{
    struct pt_lasterror *e = &cur(L)->ex.err;
    const char *v = NULL;
    if (key_is(f, fl, "source"))
        v = e->source;
    else if (key_is(f, fl, "reason"))
        v = e->reason;
    else if (key_is(f, fl, "message"))
        v = e->message;
    else if (key_is(f, fl, "section"))
        v = e->section;
    else if (key_is(f, fl, "path"))
        v = e->path;
    else if (key_is(f, fl, "policyId"))
        v = e->policy_id;
    else if (key_is(f, fl, "scope"))
        v = pt_scope_of(e->scope)->name;
    if (v)
        lua_pushstring(L, v);
    else
        lua_pushnil(L);
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    if (v) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, k);
    }
}

static void set_bool(lua_State *L, const char *k, bool v)
{
    lua_pushboolean(L, v);
    lua_setfield(L, -2, k);
}

static void push_strlist(lua_State *L, const struct pt_strlist *l)
{
    lua_createtable(L, l->n, 0);
    for (int i = 0; i < l->n; i++) {
        lua_pushstring(L, l->v[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

/* context.product: APIM's IProduct */
static void push_product(lua_State *L, const struct pt_product *p)
{
    const struct pt_product_cf *c = p->cf;
    lua_createtable(L, 0, 9);
    set_str(L, "id", c->id);
    set_str(L, "name", c->display_name);
    set_str(L, "state", pt_product_states[c->state]);
    set_bool(L, "approvalRequired", c->approval_required);
    set_bool(L, "subscriptionRequired", c->subscription_required);
    if (c->subscriptions_limit) {
        lua_pushinteger(L, (lua_Integer)c->subscriptions_limit);
        lua_setfield(L, -2, "subscriptionLimit");
    }
    push_strlist(L, &c->apis);
    lua_setfield(L, -2, "apis");
    push_strlist(L, &c->groups);
    lua_setfield(L, -2, "groups");
}

/* context.subscription: APIM's ISubscription (key: the one used) */
static void push_subscription(lua_State *L, struct pt_req *req, const struct pt_subscription *s)
{
    const struct pt_subscription_cf *c = s->cf;
    lua_createtable(L, 0, 8);
    set_str(L, "id", c->id);
    set_str(L, "name", c->display_name);
    set_str(L, "primaryKey", c->primary_key);
    set_str(L, "secondaryKey", c->secondary_key);
    set_str(L, "createdDate", c->created_date);
    set_str(L, "scope", c->scope);
    set_str(L, "state", pt_sub_states[c->state]);
    const struct pt_api_cf *ac = req->api->cf;
    struct pt_hdr *hk = pt_head_get(&req->h, pt_str_c(ac->key_header));
    if (hk) {
        push_str(L, hk->value);
        lua_setfield(L, -2, "key");
    } else
        set_str(L, "key", c->primary_key);
}

/* context.user: APIM's IUser */
static void push_user(lua_State *L, const struct pt_user *u)
{
    const struct pt_user_cf *c = u->cf;
    lua_createtable(L, 0, 7);
    set_str(L, "id", c->id);
    set_str(L, "email", c->email);
    set_str(L, "firstName", c->first_name);
    set_str(L, "lastName", c->last_name);
    set_str(L, "note", c->note);
    set_str(L, "state", pt_user_states[c->state]);
    lua_createtable(L, c->groups.n + 1, 0);
    lua_pushstring(L, "developers");
    lua_rawseti(L, -2, 1);
    for (int i = 0; i < c->groups.n; i++) {
        lua_pushstring(L, c->groups.v[i]);
        lua_rawseti(L, -2, i + 2);
    }
    lua_setfield(L, -2, "groups");
}

static int proxy_index(lua_State *L)
{
    int kind = proxy_kind(L, 1);
    size_t kl;
    const char *k = lua_tolstring(L, 2, &kl);
    if (!k) {
        lua_pushnil(L);
        return 1;
    }
    struct pt_req *req = cur(L);
    switch (kind) {
    case K_CONTEXT:
        if (key_is(k, kl, "request"))
            push_proxy(L, K_REQUEST);
        else if (key_is(k, kl, "response"))
            push_proxy(L, K_RESPONSE);
        else if (key_is(k, kl, "variables"))
            push_proxy(L, K_VARIABLES);
        else if (key_is(k, kl, "api"))
            req->api ? push_proxy(L, K_API) : lua_pushnil(L);
        else if (key_is(k, kl, "operation"))
            req->op ? push_proxy(L, K_OPERATION) : lua_pushnil(L);
        else if (key_is(k, kl, "deployment"))
            push_proxy(L, K_DEPLOYMENT);
        else if (key_is(k, kl, "lastError"))
            req->ex.has_error ? push_proxy(L, K_LASTERROR) : lua_pushnil(L);
        else if (key_is(k, kl, "elapsed"))
            lua_pushnumber(L, (double)(pt_now_us() - req->t0) / 1000.0);
        else if (key_is(k, kl, "requestId"))
            lua_pushlstring(L, req->id, req->idn);
        else if (key_is(k, kl, "timestamp")) {
            char ts[48];
            pt_format_time(ts, req->wall0);
            lua_pushstring(L, ts);
        } else if (key_is(k, kl, "trace"))
            lua_pushcfunction(L, ctx_trace);
        else if (key_is(k, kl, "tracing"))
            lua_pushboolean(L, 0);
        else if (key_is(k, kl, "product"))
            req->product ? push_product(L, req->product) : lua_pushnil(L);
        else if (key_is(k, kl, "subscription"))
            req->sub ? push_subscription(L, req, req->sub) : lua_pushnil(L);
        else if (key_is(k, kl, "user"))
            req->sub && req->sub->owner ? push_user(L, req->sub->owner) : lua_pushnil(L);
        else
            lua_pushnil(L);
        return 1;
    case K_REQUEST:
        if (key_is(k, kl, "method"))
            push_str(L, req->h.method);
        else if (key_is(k, kl, "url"))
            push_proxy(L, K_URL);
        else if (key_is(k, kl, "originalUrl"))
            push_proxy(L, K_ORIG_URL);
        else if (key_is(k, kl, "headers"))
            push_proxy(L, K_REQ_HEADERS);
        else if (key_is(k, kl, "ipAddress"))
            lua_pushstring(L, req->peer->ip);
        else if (key_is(k, kl, "matchedParameters"))
            push_proxy(L, K_MATCHED);
        else if (key_is(k, kl, "body"))
            push_proxy(L, K_REQ_BODY);
        else
            lua_pushnil(L);
        return 1;
    case K_RESPONSE:
        if (key_is(k, kl, "statusCode"))
            lua_pushinteger(L, req->rh_done ? req->rh.status : 0);
        else if (key_is(k, kl, "statusReason")) {
            if (req->rh_done && req->rh.reason.n)
                push_str(L, req->rh.reason);
            else
                lua_pushstring(L, req->rh_done ? pt_http_reason(req->rh.status) : "");
        } else if (key_is(k, kl, "headers"))
            push_proxy(L, K_RESP_HEADERS);
        else if (key_is(k, kl, "body"))
            push_proxy(L, K_RESP_BODY);
        else if (key_is(k, kl, "setStatus"))
            push_method(L, resp_set_status, -1);
        else
            lua_pushnil(L);
        return 1;
    case K_REQ_HEADERS:
    case K_RESP_HEADERS:
        if (key_is(k, kl, "get"))
            push_method(L, headers_get, -1);
        else if (key_is(k, kl, "getAll"))
            push_method(L, headers_all, -1);
        else if (key_is(k, kl, "has"))
            push_method(L, headers_has, -1);
        else if (key_is(k, kl, "set"))
            push_method(L, headers_change, PT_HEADER_OVERRIDE);
        else if (key_is(k, kl, "append"))
            push_method(L, headers_change, PT_HEADER_APPEND);
        else if (key_is(k, kl, "remove"))
            push_method(L, headers_change, PT_HEADER_DELETE);
        else {
            struct pt_head *h = headers_of(L, kind);
            if (!h || !push_header(L, h, (pt_str){k, kl}, kind == K_REQ_HEADERS))
                lua_pushnil(L);
        }
        return 1;
    case K_URL:
    case K_ORIG_URL:
        push_url(L, kind == K_ORIG_URL, k, kl);
        return 1;
    case K_QUERY:
    case K_ORIG_QUERY:
        if (key_is(k, kl, "get"))
            push_method(L, query_get, -1);
        else {
            lua_pushvalue(L, 1);
            lua_pushvalue(L, 2);
            lua_pushnil(L);
            lua_replace(L, 1);
            lua_pushcfunction(L, query_get);
            lua_insert(L, -3);
            lua_call(L, 2, 1);
        }
        return 1;
    case K_MATCHED:
        if (key_is(k, kl, "get"))
            push_method(L, matched_get, -1);
        else {
            lua_pushcfunction(L, matched_get);
            lua_pushvalue(L, 1);
            lua_pushvalue(L, 2);
            lua_call(L, 2, 1);
        }
        return 1;
    case K_REQ_BODY:
    case K_RESP_BODY:
        if (key_is(k, kl, "asString") || key_is(k, kl, "asXml"))
            push_method(L, body_as_string, -1);
        else if (key_is(k, kl, "asJson"))
            push_method(L, body_as_json, -1);
        else if (key_is(k, kl, "set"))
            push_method(L, body_set, -1);
        else
            lua_pushnil(L);
        return 1;
    case K_VARIABLES:
        if (key_is(k, kl, "get") || key_is(k, kl, "getValueOrDefault"))
            push_method(L, vars_get, -1);
        else if (key_is(k, kl, "containsKey"))
            push_method(L, vars_contains, -1);
        else if (key_is(k, kl, "set"))
            push_method(L, vars_set, -1);
        else {
            lua_pushcfunction(L, vars_get);
            lua_pushvalue(L, 1);
            lua_pushvalue(L, 2);
            lua_call(L, 2, 1);
        }
        return 1;
    case K_API: {
        const struct pt_api_cf *a = req->api->cf;
        if (key_is(k, kl, "id"))
            lua_pushstring(L, a->id);
        else if (key_is(k, kl, "name"))
            lua_pushstring(L, a->display_name);
        else if (key_is(k, kl, "path"))
            lua_pushstring(L, a->path);
        else if (key_is(k, kl, "serviceUrl"))
            a->service_url ? lua_pushstring(L, a->service_url) : lua_pushnil(L);
        else if (key_is(k, kl, "subscriptionKeyParameterNames")) {
            lua_createtable(L, 0, 2);
            lua_pushstring(L, a->key_header);
            lua_setfield(L, -2, "header");
            lua_pushstring(L, a->key_query);
            lua_setfield(L, -2, "query");
        } else if (key_is(k, kl, "isCurrentRevision"))
            lua_pushboolean(L, a->is_current);
        else if (key_is(k, kl, "revision"))
            lua_pushstring(L, a->revision && *a->revision ? a->revision : "1");
        else if (key_is(k, kl, "version"))
            a->api_version && *a->api_version ? lua_pushstring(L, a->api_version) : lua_pushnil(L);
        else if (key_is(k, kl, "versionSetId"))
            a->version_set && *a->version_set ? lua_pushstring(L, a->version_set) : lua_pushnil(L);
        else
            lua_pushnil(L);
        return 1;
    }
    case K_OPERATION: {
        const struct pt_operation_cf *o = req->op->cf;
        if (key_is(k, kl, "id"))
            lua_pushstring(L, o->id);
        else if (key_is(k, kl, "name"))
            lua_pushstring(L, o->display_name);
        else if (key_is(k, kl, "method"))
            lua_pushstring(L, o->method);
        else if (key_is(k, kl, "urlTemplate"))
            lua_pushstring(L, o->url_template);
        else
            lua_pushnil(L);
        return 1;
    }
    case K_DEPLOYMENT:
        if (key_is(k, kl, "gatewayId") || key_is(k, kl, "serviceName"))
            lua_pushstring(L, "portico");
        else if (key_is(k, kl, "region"))
            lua_pushstring(L, "local");
        else if (key_is(k, kl, "gateway")) {
            lua_createtable(L, 0, 3);
            lua_pushstring(L, "portico");
            lua_setfield(L, -2, "id");
            lua_pushinteger(L, req->peer->worker);
            lua_setfield(L, -2, "instanceId");
            lua_pushboolean(L, 0);
            lua_setfield(L, -2, "isManaged");
        } else
            lua_pushnil(L);
        return 1;
    case K_LASTERROR:
        push_lasterror(L, k, kl);
        return 1;
    }
    lua_pushnil(L);
    return 1;
}

static int proxy_readonly(lua_State *L)
{
    return luaL_error(L, "context is read-only");
}

static int proxy_tostring(lua_State *L)
{
    lua_pushfstring(L, "context object (%d)", proxy_kind(L, 1));
    return 1;
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
    static const char *const base[] = {"assert", "error", "ipairs", "next", "pairs", "select", "tonumber",
                                       "tostring", "type", "unpack", "getmetatable", "setmetatable",
                                       "rawequal", NULL};
    lua_newtable(L); /* [user] */
    int user = lua_gettop(L);
    for (int i = 0; base[i]; i++) {
        lua_getglobal(L, base[i]);
        lua_setfield(L, user, base[i]);
    }
    lua_pushcfunction(L, safe_pcall);
    lua_setfield(L, user, "pcall");
    lua_pushcfunction(L, safe_xpcall);
    lua_setfield(L, user, "xpcall");
    copy_lib(L, "string");
    copy_lib(L, "table");
    /* table.sort on plain values is C that no hook interrupts: bounded size */
    lua_getfield(L, user, "table");
    lua_getfield(L, -1, "sort");
    lua_pushcclosure(L, safe_sort, 1);
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
    lua_pushcclosure(L, safe_rep, 1);
    lua_setfield(L, str, "rep");
    x->lpat.max_subject = (size_t)limits_of(x)->pattern_subject;
    x->lpat.expired = deadline_passed;
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
    push_proxy(L, K_CONTEXT);
    lua_setfield(L, user, "context");
    /* freeze the library tables: writes go nowhere shared */
    static const char *const libs[] = {"string", "table", "math", "bit", "os", "json", "base64", "base64url",
                                       "url", "crypto", "jwt", "basic", NULL};
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
        lua_pushcfunction(L, proxy_readonly);
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
    /* proxies: one userdata per kind, sharing a metatable */
    lua_newtable(L);
    lua_pushcfunction(L, proxy_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, proxy_readonly);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, proxy_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    for (int k = 0; k < K_COUNT; k++) {
        int *ud = lua_newuserdata(L, sizeof(int));
        *ud = k;
        lua_pushvalue(L, -2);
        lua_setmetatable(L, -2);
        x->ref_proxies[k] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pop(L, 1);
    build_user_globals(x);
    lua_newtable(L);
    x->ref_threads = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    x->ref_dirty = luaL_ref(L, LUA_REGISTRYINDEX);
    x->ndirty = 0;
    lua_sethook(L, hook, LUA_MASKCOUNT, HOOK_COUNT);
    lua_gc(L, LUA_GCCOLLECT, 0);
    x->mem.capped = true;
    x->mem.cap = (size_t)limits_of(x)->memory + x->mem.used; /* the cap is for scripts, on top of the runtime */
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
    lua_rawgeti(L, LUA_REGISTRYINDEX, tl->ref_dirty);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, ++tl->ndirty);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, ++tl->ndirty);
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
    char name[300];
    snprintf(name, sizeof(name), "=%s", e->chunk);
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
        out->s = (pt_str){pt_pool_strndup(req->pool, buf, (size_t)k), (size_t)k};
        return;
    }
    default: {
        size_t l;
        const char *s = lua_tolstring(co, idx, &l);
        out->type = PT_VAR_STRING;
        out->s = (pt_str){pt_pool_strndup(req->pool, s ? s : "", s ? l : 0), s ? l : 0};
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
    x->deadline = pt_now_ms() + limits_of(x)->timeout;
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
    char buf[512];
    if (st == LUA_YIELD)
        snprintf(buf, sizeof(buf), "a script may not yield");
    else if (x->breach) {
        snprintf(buf, sizeof(buf), "script exceeded its %s limit (%s)", x->breach,
                 !strcmp(x->breach, "time") ? "lua.timeout" : "lua.memory");
        x->damaged = true;
    } else
        snprintf(buf, sizeof(buf), "%s", msg ? msg : "error in a script");
    x->breach = NULL;
    pt_warn("request %.*s: %s", (int)req->idn, req->id, buf);
    pt_msg_set_error(req, 500, "expression", "ExpressionValueEvaluationFailure", buf);
    return -1;
}

int pt_lua_eval(struct pt_req *req, int id, struct pt_luaval *out)
{
    struct pt_lua *x = req->peer->lua;
    tl = x;
    if (!state_ready(x)) {
        pt_msg_set_error(req, 500, "expression", "ExpressionValueEvaluationFailure", "cannot create a Lua state");
        return -1;
    }
    lua_State *co = request_thread(x, req);
    const char *err = NULL;
    if (!push_expr(x, req, id, &err)) {
        pt_msg_set_error(req, 500, "expression", "ExpressionValueEvaluationFailure", err ? err : "?");
        return -1;
    }
    lua_xmove(x->L, co, 1);
    int rc = call_limited(x, req, co, 0, 1);
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
    return 0;
}

int pt_value_eval(struct pt_req *req, const struct pt_value *v, struct pt_luaval *out)
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

bool pt_value_eval_true(struct pt_req *req, const struct pt_value *v, pt_status *st)
{
    struct pt_luaval out;
    int rc = pt_value_eval(req, v, &out);
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
    case PT_VAR_BOOL: return out.b;
    case PT_VAR_NIL: return false;
    case PT_VAR_NUMBER: return true;
    default: return !(out.s.n == 5 && !strncasecmp(out.s.p, "false", 5)) && out.s.n != 0;
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
        pt_msg_set_error(req, 500, "lua-policy", "PolicyLoadFailure", "the policy file did not return a table");
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
        lua_pushnumber(co, v->type == PT_VAR_NUMBER ? v->num : strtod(v->s.p ? v->s.p : "0", NULL));
        return;
    case PT_ATTR_BOOL:
        lua_pushboolean(co, v->type == PT_VAR_BOOL ? v->b : (v->s.n == 4 && !strncasecmp(v->s.p, "true", 4)));
        return;
    default:
        lua_pushlstring(co, v->s.p ? v->s.p : "", v->s.n);
    }
}

int pt_lua_run_policy(struct pt_req *req, void *instance, int section, void *unused)
{
    (void)unused;
    const struct pt_luapol_inst *in = instance;
    const struct pt_luapol *lp = in->lp;
    struct pt_lua *x = req->peer->lua;
    tl = x;
    /* attribute values first: expressions run in this request's coroutine too */
    struct pt_luaval *vals = pt_pool_calloc(req->pool, sizeof(*vals) * (size_t)(lp->nattrs ? lp->nattrs : 1));
    for (int i = 0; i < lp->nattrs; i++) {
        const struct pt_attr_def *a = &lp->attrs[i];
        if (in->vals[i]) {
            int rc = pt_value_eval(req, in->vals[i], &vals[i]);
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
    lua_getfield(co, -1, pt_section_names[section]);
    lua_remove(co, -2);
    if (!lua_isfunction(co, -1)) {
        lua_settop(co, 0);
        return PT_OK;
    }
    push_proxy(co, K_CONTEXT);
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
    int st = PT_OK;
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
