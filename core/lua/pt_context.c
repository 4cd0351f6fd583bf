/*
 * pt_context -- the `context` object scripts see: a tree of userdata proxies
 * whose __index is C.  No table is built per request; values are read from
 * the current request (the running runtime's) when asked for.  Expressions
 * get a read-only view; Lua policies may also set headers, bodies,
 * variables and the response status.
 *
 * A body that has not been read cannot be waited for here (a C boundary such
 * as pcall may be on the stack), so reading one records which body is needed
 * and raises a marker error; the runtime reads the body and evaluates the
 * statement again from its start.
 */
#include "base/pt_log.h"
#include "http/pt_msg.h"
#include "lua/pt_lua_int.h"

#include <event2/buffer.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#define NEED_BODY_MARK "\x01portico:need-body"

/* ------------------------------------------------------------- proxies */

enum kind {
    K_CONTEXT,
    K_REQUEST,
    K_RESPONSE,
    K_REQ_HEADERS,
    K_RESP_HEADERS,
    K_URL,
    K_ORIG_URL,
    K_MATCHED,
    K_REQ_BODY,
    K_RESP_BODY,
    K_VARIABLES,
    K_API,
    K_OPERATION,
    K_DEPLOYMENT,
    K_LASTERROR,
    K_QUERY,
    K_ORIG_QUERY,
    K_COUNT
};
_Static_assert(K_COUNT <= (int)(sizeof(((struct pt_lua *)0)->ref_proxies) / sizeof(int)),
               "struct pt_lua anchors too few proxies");

static void push_proxy(lua_State *L, int kind)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, pt_luaguard_rt->ref_proxies[kind]);
}

static int proxy_kind(lua_State *L, int idx)
{
    int *k = lua_touserdata(L, idx);
    return k ? *k : -1;
}

static struct pt_req *cur(lua_State *L)
{
    if (!pt_luaguard_rt->cur)
        luaL_error(L, "no request");
    return pt_luaguard_rt->cur;
}

static void push_str(lua_State *L, pt_str s)
{
    lua_pushlstring(L, s.data ? s.data : "", s.len);
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
    if (!pt_luaguard_rt->in_policy)
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
    pt_luaguard_rt->need_body = which;
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
    if (!pt_luaguard_rt->in_policy)
        return luaL_error(L, "context is read-only in expressions");
    size_t l;
    const char *s = luaL_checklstring(L, 2, &l);
    pt_msg_set_body(cur(L), proxy_kind(L, 1) == K_REQ_BODY ? PT_MSG_REQUEST : PT_MSG_RESPONSE,
                    (pt_str){s, l});
    return 0;
}

/* ------------------------------------------------- response objects */

/*
 * A response held in a variable (PT_VAR_RESPONSE, send-request's
 * response-variable-name) is read as an object shaped like context.response:
 * statusCode, statusReason, headers (get, getAll, has, ["Name"]) and body
 * (asString, asJson, asXml).  It is read-only, and reading its body does not
 * consume it.  The userdata holds the request and the response it was made
 * for, with the request's serial; each access checks that the running
 * request is that one (the serial: a pt_req and its arena are reused for the
 * connection's next request, so the same addresses can come back) and still
 * holds that response in a variable, so an object a script kept somewhere
 * never reads another request's memory.
 */
#define VARRESP_MT "portico.varresp"

enum { VR_RESPONSE, VR_HEADERS, VR_BODY };

struct varresp {
    int kind; /* -1: not a context proxy (the proxies' methods read their kind from here) */
    int part; /* VR_* */
    const struct pt_req *req;
    uint64_t serial; /* req->lua_serial when it was made */
    const struct pt_http_resp *r;
};

/* The running request's serial, given on first use: unique in the process (a reused pt_req is
   zeroed for its next request, so it gets a new one). */
static uint64_t req_serial(struct pt_req *req)
{
    static uint64_t next;
    if (!req->lua_serial)
        req->lua_serial = __atomic_add_fetch(&next, 1, __ATOMIC_RELAXED);
    return req->lua_serial;
}

static const struct pt_http_resp *varresp_check(lua_State *L, int idx, int part)
{
    struct varresp *v = luaL_checkudata(L, idx, VARRESP_MT);
    if (part >= 0 && v->part != part)
        luaL_argerror(L, idx, "wrong response object part");
    struct pt_req *req = cur(L);
    if (v->req == req && v->serial == req_serial(req))
        for (int i = 0; i < req->nvars; i++)
            if (req->vars[i].type == PT_VAR_RESPONSE && req->vars[i].resp == v->r)
                return v->r;
    luaL_error(L, "the response object is no longer held in a variable of this request");
    return NULL;
}

static void varresp_push(lua_State *L, const struct pt_http_resp *r, int part)
{
    struct varresp *v = lua_newuserdata(L, sizeof(*v));
    v->kind = -1;
    v->part = part;
    v->req = cur(L);
    v->serial = req_serial(cur(L));
    v->r = r;
    luaL_getmetatable(L, VARRESP_MT);
    lua_setmetatable(L, -2);
}

/* Pushes the values of header name joined with ',' (as context.response's); false when absent. */
static bool varresp_header(lua_State *L, const struct pt_http_resp *r, pt_str name)
{
    struct pt_buf b;
    bool found = false;
    pt_buf_init(&b, cur(L)->pool, 64);
    for (int i = 0; i < r->nheaders; i++) {
        if (!pt_str_ieq(r->header_names[i], name))
            continue;
        if (found)
            pt_buf_lit(&b, ",");
        pt_buf_str(&b, r->header_values[i]);
        found = true;
    }
    if (found)
        lua_pushlstring(L, b.p, b.n);
    return found;
}

static int varresp_headers_get(lua_State *L)
{
    const struct pt_http_resp *r = varresp_check(L, 1, VR_HEADERS);
    size_t nl;
    const char *n = luaL_checklstring(L, 2, &nl);
    if (varresp_header(L, r, (pt_str){n, nl}))
        return 1;
    lua_settop(L, 3);
    return 1;
}

static int varresp_headers_has(lua_State *L)
{
    const struct pt_http_resp *r = varresp_check(L, 1, VR_HEADERS);
    size_t nl;
    const char *n = luaL_checklstring(L, 2, &nl);
    lua_pushboolean(L, varresp_header(L, r, (pt_str){n, nl}));
    return 1;
}

static int varresp_headers_all(lua_State *L)
{
    const struct pt_http_resp *r = varresp_check(L, 1, VR_HEADERS);
    size_t nl;
    const char *n = luaL_checklstring(L, 2, &nl);
    lua_newtable(L);
    int k = 0;
    for (int i = 0; i < r->nheaders; i++)
        if (pt_str_ieq(r->header_names[i], (pt_str){n, nl})) {
            push_str(L, r->header_values[i]);
            lua_rawseti(L, -2, ++k);
        }
    return 1;
}

static int varresp_body_string(lua_State *L)
{
    const struct pt_http_resp *r = varresp_check(L, 1, VR_BODY);
    push_str(L, r->body);
    return 1;
}

static int varresp_body_json(lua_State *L)
{
    const struct pt_http_resp *r = varresp_check(L, 1, VR_BODY);
    lua_getglobal(L, "\x01pt_json_decode");
    push_str(L, r->body);
    lua_call(L, 1, 2);
    if (lua_isnil(L, -2))
        return luaL_error(L, "body is not JSON: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    lua_pop(L, 1);
    return 1;
}

static int varresp_read_only(lua_State *L)
{
    return luaL_error(L, "a response held in a variable is read-only");
}

static int varresp_index(lua_State *L)
{
    struct varresp *v = luaL_checkudata(L, 1, VARRESP_MT);
    const struct pt_http_resp *r = varresp_check(L, 1, -1);
    size_t kl;
    const char *k = lua_tolstring(L, 2, &kl);
    if (!k) {
        lua_pushnil(L);
        return 1;
    }
    switch (v->part) {
    case VR_RESPONSE:
        if (key_is(k, kl, "statusCode"))
            lua_pushinteger(L, r->status);
        else if (key_is(k, kl, "statusReason")) {
            if (r->reason.len)
                push_str(L, r->reason);
            else
                lua_pushstring(L, pt_http_reason(r->status));
        } else if (key_is(k, kl, "headers"))
            varresp_push(L, r, VR_HEADERS);
        else if (key_is(k, kl, "body"))
            varresp_push(L, r, VR_BODY);
        else if (key_is(k, kl, "setStatus"))
            lua_pushcfunction(L, varresp_read_only);
        else
            lua_pushnil(L);
        return 1;
    case VR_HEADERS:
        if (key_is(k, kl, "get"))
            lua_pushcfunction(L, varresp_headers_get);
        else if (key_is(k, kl, "getAll"))
            lua_pushcfunction(L, varresp_headers_all);
        else if (key_is(k, kl, "has"))
            lua_pushcfunction(L, varresp_headers_has);
        else if (key_is(k, kl, "set") || key_is(k, kl, "append") || key_is(k, kl, "remove"))
            lua_pushcfunction(L, varresp_read_only);
        else if (!varresp_header(L, r, (pt_str){k, kl}))
            lua_pushnil(L);
        return 1;
    default:
        if (key_is(k, kl, "asString") || key_is(k, kl, "asXml"))
            lua_pushcfunction(L, varresp_body_string);
        else if (key_is(k, kl, "asJson"))
            lua_pushcfunction(L, varresp_body_json);
        else if (key_is(k, kl, "set"))
            lua_pushcfunction(L, varresp_read_only);
        else
            lua_pushnil(L);
        return 1;
    }
}

static int varresp_tostring(lua_State *L)
{
    struct varresp *v = luaL_checkudata(L, 1, VARRESP_MT);
    lua_pushfstring(L, "response object (%s)",
                    v->part == VR_RESPONSE  ? "response"
                    : v->part == VR_HEADERS ? "headers"
                                            : "body");
    return 1;
}

static void varresp_install(lua_State *L)
{
    luaL_newmetatable(L, VARRESP_MT);
    lua_pushcfunction(L, varresp_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, varresp_read_only);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, varresp_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
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
    case PT_VAR_NUMBER:
        lua_pushnumber(L, strtod(v->value.data, NULL));
        break;
    case PT_VAR_BOOL:
        lua_pushboolean(L, v->value.len == 4);
        break;
    case PT_VAR_NIL:
        lua_pushnil(L);
        break;
    case PT_VAR_RESPONSE:
        varresp_push(L, v->resp, VR_RESPONSE);
        break;
    default:
        push_str(L, v->value);
    }
    return 1;
}

/* variables:set(name, value) -- Lua policies only */
static int vars_set(lua_State *L)
{
    if (!pt_luaguard_rt->in_policy)
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
    case LUA_TUSERDATA: {
        /* a response object: the new variable holds the same response (read-only, in the arena) */
        struct varresp *ro = luaL_testudata(L, 3, VARRESP_MT);
        if (!ro || ro->part != VR_RESPONSE)
            return luaL_error(L, "variables hold strings, numbers, booleans and response objects");
        const struct pt_http_resp *r = varresp_check(L, 3, VR_RESPONSE);
        if (pt_msg_var_set_response(req, (pt_str){n, nl}, r) < 0)
            return luaL_error(L, "the response could not be stored");
        return 0;
    }
    default:
        return luaL_error(L, "variables hold strings, numbers, booleans and response objects");
    }
    pt_msg_var_set(req, (pt_str){n, nl}, v.type, v.s);
    return 0;
}

/* response:setStatus(code[, reason]) -- Lua policies only */
static int resp_set_status(lua_State *L)
{
    if (!pt_luaguard_rt->in_policy)
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
            char *d = pt_pool_alloc(req->pool, raw.len + 1);
            ssize_t k = pt_url_pct_decode(raw, d, false);
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
    while (q.len) {
        const char *amp = memchr(q.data, '&', q.len);
        size_t len = amp ? (size_t)(amp - q.data) : q.len;
        const char *eq = memchr(q.data, '=', len);
        pt_str k = {q.data, eq ? (size_t)(eq - q.data) : len};
        if (pt_str_eq(k, (pt_str){n, nl})) {
            pt_str raw = eq ? (pt_str){eq + 1, len - k.len - 1} : PT_NULL_STR;
            char *d = pt_pool_alloc(req->pool, raw.len + 1);
            ssize_t dn = pt_url_pct_decode(raw, d, true);
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
        q.data += len + 1;
        q.len -= len + 1;
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
    pt_str host = pt_url_host_strip_port(req->h.host);
    if (key_is(field, fl, "scheme"))
        lua_pushstring(L, req->peer->tls ? "https" : "http");
    else if (key_is(field, fl, "host"))
        push_str(L, host);
    else if (key_is(field, fl, "port")) {
        const char *colon = req->h.host.len > host.len ? req->h.host.data + host.len : NULL;
        lua_pushinteger(L, colon && *colon == ':' ? atoi(colon + 1) : (req->peer->tls ? 443 : 80));
    } else if (key_is(field, fl, "path")) {
        if (original)
            push_str(L, req->h.path);
        else {
            /* the API suffix plus the (possibly rewritten) operation path */
            pt_str full = req->h.path;
            size_t suffix = req->m.rest.data && req->m.rest.data >= full.data
                                ? (size_t)(req->m.rest.data - full.data)
                                : full.len;
            lua_pushlstring(L, full.data, suffix);
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
        v = pt_msg_scope_of(e->scope)->name;
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
    set_str(L, "state", pt_conf_entities_product_states[c->state]);
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
    set_str(L, "state", pt_conf_entities_sub_states[c->state]);
    const struct pt_api_cf *ac = req->api->cf;
    struct pt_hdr *hk = pt_http_head_get(&req->h, pt_str_c(ac->key_header));
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
    set_str(L, "state", pt_conf_entities_user_states[c->state]);
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
            lua_pushnumber(L, (double)(pt_clock_now_us() - req->t0) / 1000.0);
        else if (key_is(k, kl, "requestId"))
            lua_pushlstring(L, req->id, req->idn);
        else if (key_is(k, kl, "timestamp")) {
            char ts[48];
            pt_log_format_time(ts, req->wall0);
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
        else if (key_is(k, kl, "protocol"))
            lua_pushstring(L, req->peer->h2 ? "HTTP/2.0" : req->h.minor == 0 ? "HTTP/1.0" : "HTTP/1.1");
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
            if (req->rh_done && req->rh.reason.len)
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
            a->api_version && * a->api_version ? lua_pushstring(L, a->api_version) : lua_pushnil(L);
        else if (key_is(k, kl, "versionSetId"))
            a->version_set && * a->version_set ? lua_pushstring(L, a->version_set) : lua_pushnil(L);
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

/* See pt_lua_int.h. */
int pt_context_readonly(lua_State *L)
{
    return luaL_error(L, "context is read-only");
}

static int proxy_tostring(lua_State *L)
{
    lua_pushfstring(L, "context object (%d)", proxy_kind(L, 1));
    return 1;
}

/* ------------------------------------------------------------- the object */

/* See pt_lua_int.h. */
void pt_context_install(struct pt_lua *x)
{
    lua_State *L = x->L;
    varresp_install(L);
    lua_newtable(L);
    lua_pushcfunction(L, proxy_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, pt_context_readonly);
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
}

/* See pt_lua_int.h. */
void pt_context_push(lua_State *L)
{
    push_proxy(L, K_CONTEXT);
}
