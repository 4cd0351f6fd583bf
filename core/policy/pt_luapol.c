/*
 * pt_luapol -- custom policies written in Lua.
 *
 * A policy file returns a table that declares the policy:
 *
 *     return {
 *       name = "add-greeting",                      -- kebab-case, unique
 *       description = "Adds a greeting header.",
 *       sections = {"inbound", "outbound"},         -- where it may be used
 *       attributes = {                              -- the schema, checked like any policy's
 *         greeting = {type = "string", required = true, expression = true},
 *         header = {type = "string", default = "X-Greeting"},
 *       },
 *       inbound = function(context, attrs) ... end, -- one function per section
 *     }
 *
 * Files are found in the folders of lua.policyPath: every file ending in
 * ".lua", and every "policy.lua" one folder down.  When a generation is built each file is evaluated
 * in a scratch state (standard library only, one second at most) to read
 * its declaration; the policy is then registered next to the plugins'
 * policies and validated the same way.  Workers load the file's code in
 * their own sandboxed state (pt_lua.c) and call the section's function with
 * the request's `context` and the evaluated attributes.
 */
#include "policy/pt_luapol.h"

#include "base/pt_log.h"
#include "http/pt_msg.h"
#include "lua/pt_expr.h"
#include "lua/pt_lpat.h"
#include "lua/pt_lua.h"

#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#define MAX_POLICY_FILE (1u << 20)

static const char *const type_names[] = {"string", "int", "bool", "enum", NULL};
static const pt_attr_type type_values[] = {PT_ATTR_STRING, PT_ATTR_INT, PT_ATTR_BOOL, PT_ATTR_ENUM};

/* ------------------------------------------------------------ compile/run */

static int luapol_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    const struct pt_policy_def *def = pt_policy_compile_def(c);
    const struct pt_luapol *lp = (const struct pt_luapol *)def; /* def is the first member */
    struct pt_luapol_inst *in = api->compile_alloc(c, sizeof(*in));
    in->lp = lp;
    in->vals = api->compile_alloc(c, sizeof(*in->vals) * (size_t)(lp->nattrs ? lp->nattrs : 1));
    for (int i = 0; i < lp->nattrs; i++) {
        struct pt_node *n = pt_policy_compile_attr(c, lp->attrs[i].name);
        if (n) {
            in->vals[i] = pt_policy_value_compile(pt_policy_compile_ctx(c), n);
            if (!in->vals[i])
                return -1;
        }
    }
    *instance = in;
    return 0;
}

static pt_status luapol_run(const struct pt_api *api, pt_call *call, void *instance)
{
    return pt_lua_run_policy(call->req, instance, call->section, NULL);
}

/* ---------------------------------------------------------------- loading */

/* Reading a declaration: one second and 16 MB at most, the JIT off so the
   count hook sees every loop, and bounded pattern functions. */
static __thread uint64_t decl_deadline;

static bool decl_expired(void)
{
    return decl_deadline && pt_clock_now_ms() > decl_deadline;
}

static void tl_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    if (decl_expired()) {
        lua_pushstring(L, "the policy file took too long to evaluate");
        lua_error(L);
    }
}

static const struct pt_lpat_env decl_patterns = {1u << 20, decl_expired};

#define DECL_MEMORY (16u << 20)

static int decl_panic(lua_State *L)
{
    pt_err("Lua panic while reading a policy file: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    abort();
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(MAX_POLICY_FILE + 1);
    size_t n = buf ? fread(buf, 1, MAX_POLICY_FILE + 1, f) : 0;
    fclose(f);
    if (!buf || n > MAX_POLICY_FILE) {
        free(buf);
        errno = EFBIG;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static bool valid_policy_name(const char *s)
{
    if (!*s || strlen(s) > 64)
        return false;
    for (const char *c = s; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
            return false;
    return s[0] != '-';
}

static int cmp_attr(const void *a, const void *b)
{
    return strcmp(((const struct pt_attr_def *)a)->name, ((const struct pt_attr_def *)b)->name);
}

/* Reads the declaration table on top of L into a definition. */
static bool read_declaration(struct pt_polctx *pc, lua_State *L, const char *file, struct pt_luapol *lp)
{
    struct pt_pool *pool = pc->pool;
    lua_getfield(L, -1, "name");
    const char *name = lua_tostring(L, -1);
    if (!name || !valid_policy_name(name)) {
        pt_node_errors_add(pc->errs, "%s: a Lua policy needs a name of lower-case letters, digits and '-'",
                           file);
        return false;
    }
    lp->def.name = pt_pool_strdup(pool, name);
    lua_pop(L, 1);
    lua_getfield(L, -1, "description");
    lp->def.doc = lua_isstring(L, -1) ? pt_pool_strdup(pool, lua_tostring(L, -1)) : "A Lua policy.";
    lua_pop(L, 1);
    /* sections, and a function for each */
    lua_getfield(L, -1, "sections");
    if (!lua_istable(L, -1)) {
        pt_node_errors_add(pc->errs, "%s: policy '%s' needs 'sections', a list such as {\"inbound\"}", file,
                           name);
        return false;
    }
    for (int i = 1;; i++) {
        lua_rawgeti(L, -1, i);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            break;
        }
        const char *sec = lua_tostring(L, -1);
        int k = -1;
        for (int j = 0; sec && j < PT_SEC_COUNT; j++)
            if (!strcmp(sec, pt_msg_section_names[j]))
                k = j;
        if (k < 0) {
            pt_node_errors_add(pc->errs, "%s: policy '%s': unknown section '%s'", file, name,
                               sec ? sec : "?");
            return false;
        }
        lua_getfield(L, -3, sec);
        bool fn = lua_isfunction(L, -1);
        lua_pop(L, 2);
        if (!fn) {
            pt_node_errors_add(pc->errs, "%s: policy '%s' lists section '%s' but has no function '%s'", file,
                               name, sec, sec);
            return false;
        }
        lp->def.sections |= 1u << k;
    }
    lua_pop(L, 1);
    if (!lp->def.sections) {
        pt_node_errors_add(pc->errs, "%s: policy '%s' is allowed in no section", file, name);
        return false;
    }
    /* attributes */
    lua_getfield(L, -1, "attributes");
    int n = 0;
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            n++;
            lua_pop(L, 1);
        }
    } else if (!lua_isnil(L, -1)) {
        pt_node_errors_add(pc->errs, "%s: policy '%s': 'attributes' must be a table", file, name);
        return false;
    }
    lp->attrs = pt_pool_calloc(pool, sizeof(*lp->attrs) * (size_t)(n + 1));
    lp->nattrs = 0;
    if (n) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            const char *an = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
            if (!an || !lua_istable(L, -1)) {
                pt_node_errors_add(pc->errs, "%s: policy '%s': each attribute is name = {type = ...}", file,
                                   name);
                return false;
            }
            struct pt_attr_def *a = &lp->attrs[lp->nattrs++];
            a->name = pt_pool_strdup(pool, an);
            lua_getfield(L, -1, "type");
            const char *t = lua_isstring(L, -1) ? lua_tostring(L, -1) : "string";
            int ti = -1;
            for (int k = 0; type_names[k]; k++)
                if (!strcmp(type_names[k], t))
                    ti = k;
            lua_pop(L, 1);
            if (ti < 0) {
                pt_node_errors_add(pc->errs, "%s: policy '%s': attribute '%s' has unknown type '%s'", file,
                                   name, an, t);
                return false;
            }
            a->type = type_values[ti];
            lua_getfield(L, -1, "required");
            if (lua_toboolean(L, -1))
                a->flags |= PT_ATTR_REQUIRED;
            lua_pop(L, 1);
            lua_getfield(L, -1, "expression");
            if (lua_toboolean(L, -1))
                a->flags |= PT_ATTR_EXPR;
            lua_pop(L, 1);
            lua_getfield(L, -1, "default");
            if (!lua_isnil(L, -1)) {
                lua_pushvalue(L, -1);
                a->def = pt_pool_strdup(pool, lua_isboolean(L, -1) ? (lua_toboolean(L, -1) ? "true" : "false")
                                                                   : luaL_checkstring(L, -1));
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
            lua_getfield(L, -1, "doc");
            a->doc = lua_isstring(L, -1) ? pt_pool_strdup(pool, lua_tostring(L, -1)) : NULL;
            lua_pop(L, 1);
            lua_getfield(L, -1, "min");
            a->min = (int64_t)lua_tonumber(L, -1);
            lua_pop(L, 1);
            lua_getfield(L, -1, "max");
            a->max = (int64_t)lua_tonumber(L, -1);
            lua_pop(L, 1);
            if (a->type == PT_ATTR_ENUM) {
                lua_getfield(L, -1, "values");
                int nv = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
                if (!nv) {
                    pt_node_errors_add(pc->errs, "%s: policy '%s': enum attribute '%s' needs 'values'", file,
                                       name, an);
                    return false;
                }
                const char **vals = pt_pool_calloc(pool, sizeof(char *) * (size_t)(nv + 1));
                for (int k = 0; k < nv; k++) {
                    lua_rawgeti(L, -1, k + 1);
                    vals[k] = pt_pool_strdup(pool, lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
                    lua_pop(L, 1);
                }
                a->enums = vals;
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    /* Lua tables have no order: sort, so messages and the reference are stable */
    qsort(lp->attrs, (size_t)lp->nattrs, sizeof(*lp->attrs), cmp_attr);
    lp->def.attrs = lp->attrs;
    lp->def.scopes = PT_SCOPE_ALL;
    lp->def.compile = luapol_compile;
    lp->def.run = luapol_run;
    return true;
}

static bool load_file(struct pt_polctx *pc, struct pt_registry *reg, const char *path)
{
    size_t len;
    char *src = read_file(path, &len);
    if (!src) {
        pt_node_errors_add(pc->errs, "%s: cannot read: %s", path, strerror(errno));
        return false;
    }
    struct pt_lua_mem mem = {0, DECL_MEMORY, true, NULL};
    lua_State *L = lua_newstate(pt_lua_mem_alloc, &mem);
    if (!L) {
        free(src);
        pt_node_errors_add(pc->errs, "%s: cannot create a Lua state", path);
        return false;
    }
    lua_atpanic(L, decl_panic);
    luaL_openlibs(L);
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    lua_getglobal(L, "string");
    pt_lpat_install(L, -1, &decl_patterns);
    lua_pop(L, 1);
    /* the declaration is data: no io, os, require, debug while reading it */
    static const char *const gone[] = {"io",   "os",         "require", "debug",  "dofile", "loadfile",
                                       "load", "loadstring", "package", "module", NULL};
    for (int i = 0; gone[i]; i++) {
        lua_pushnil(L);
        lua_setglobal(L, gone[i]);
    }
    decl_deadline = pt_clock_now_ms() + 1000;
    lua_sethook(L, tl_hook, LUA_MASKCOUNT, 1000);
    char chunk[PATH_MAX + 2];
    snprintf(chunk, sizeof(chunk), "@%s", path);
    bool ok = false;
    struct pt_luapol *lp = pt_pool_calloc(pc->pool, sizeof(*lp));
    if (luaL_loadbufferx(L, src, len, chunk, "t") != 0 || lua_pcall(L, 0, 1, 0) != 0) {
        const char *m = lua_tostring(L, -1) ? lua_tostring(L, -1) : "error";
        if (strncmp(m, path, strlen(path))) /* a limit's message has no position: name the file */
            pt_node_errors_add(pc->errs, "%s: %s", path, m);
        else
            pt_node_errors_add(pc->errs, "%s", m);
    } else if (!lua_istable(L, -1))
        pt_node_errors_add(pc->errs, "%s: a Lua policy file must return a table declaring the policy", path);
    else if (read_declaration(pc, L, path, lp)) {
        char err[512];
        int id = pt_expr_add(pc->exprs, src, len, true, path, err, sizeof(err));
        if (id < 0)
            pt_node_errors_add(pc->errs, "%s: %s", path, err);
        else {
            pc->exprs->e[id - 1].policy = true;
            lp->expr_id = id;
            lp->file = pt_pool_strdup(pc->pool, path);
            const char *taken = NULL;
            if (!pt_registry_add(reg, &lp->def, lp->file, &taken))
                pt_node_errors_add(pc->errs, "%s: policy '%s' is already provided by %s", path, lp->def.name,
                                   taken ? taken : "another policy");
            else
                ok = true;
        }
    }
    decl_deadline = 0;
    lua_close(L);
    free(src);
    return ok;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

bool pt_luapol_load(struct pt_polctx *pc, struct pt_registry *reg, char **dirs, int ndirs)
{
    int before = pc->errs->n;
    for (int d = 0; d < ndirs; d++) {
        DIR *dir = opendir(dirs[d]);
        if (!dir)
            continue; /* a missing folder holds no policies */
        char **files = NULL;
        int n = 0, cap = 0;
        struct dirent *e;
        while ((e = readdir(dir))) {
            if (e->d_name[0] == '.')
                continue;
            char path[PATH_MAX];
            snprintf(path, sizeof(path), "%s/%s", dirs[d], e->d_name);
            struct stat st;
            if (stat(path, &st) < 0)
                continue;
            if (S_ISDIR(st.st_mode)) {
                snprintf(path, sizeof(path), "%s/%s/policy.lua", dirs[d], e->d_name);
                if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
                    continue;
            } else {
                size_t l = strlen(e->d_name);
                if (l < 5 || strcmp(e->d_name + l - 4, ".lua"))
                    continue;
            }
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                files = realloc(files, sizeof(char *) * (size_t)cap);
            }
            files[n++] = strdup(path);
        }
        closedir(dir);
        if (n > 1)
            qsort(files, (size_t)n, sizeof(char *), cmp_str);
        for (int i = 0; i < n; i++) {
            load_file(pc, reg, files[i]);
            free(files[i]);
        }
        free(files);
    }
    return pc->errs->n == before;
}
