/*
 * pt_lpat -- Lua string patterns with a budget (see pt_lpat.h).
 *
 * The matcher is a backtracking interpreter over the pattern text, as the
 * language is defined: single-character classes (".", "%a" and friends,
 * "[sets]"), each optionally followed by "*", "+", "-" or "?"; captures
 * "(...)" and position captures "()"; "%b" balanced pairs; "%f" frontiers;
 * back-references "%1".."%9"; "^" and "$" anchors.  It never longjmps:
 * errors and an expired budget are recorded in the match state and every
 * level returns NULL, so the Lua error is raised once, at the top, with no
 * C frame of the matcher left in between.
 */
#include "config.h" /* _GNU_SOURCE: memmem */

#include "lua/pt_lpat.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdint.h>
#include <string.h>

#define MAXCAPTURES 32
#define MAXDEPTH 200    /* nested matcher calls, as LuaJIT: "pattern too complex" */
#define POLL_EVERY 4096 /* steps between two looks at the clock */

enum { CAP_UNFINISHED = -1, CAP_POSITION = -2 };

struct mstate {
    const char *src_init, *src_end; /* the subject */
    const char *p_end;              /* end of the pattern */
    int level;                      /* captures opened so far */
    int depth;
    unsigned steps;
    const char *err; /* set once: the message of the Lua error */
    bool timeout;
    const struct pt_lpat_env *env;
    struct {
        const char *init;
        ptrdiff_t len;
    } cap[MAXCAPTURES];
};

static void fail(struct mstate *ms, const char *msg)
{
    if (!ms->err)
        ms->err = msg;
}

/* Counts one step; false once the budget is gone (or an error is pending). */
static bool step(struct mstate *ms)
{
    if (ms->err)
        return false;
    if (++ms->steps % POLL_EVERY == 0 && ms->env->expired && ms->env->expired()) {
        ms->timeout = true;
        fail(ms, "time limit exceeded");
        return false;
    }
    return true;
}

/* The end of the single-character class starting at p (p < p_end). */
static const char *class_end(struct mstate *ms, const char *p)
{
    char c = *p++;
    if (c == '%') {
        if (p >= ms->p_end) {
            fail(ms, "malformed pattern (ends with '%')");
            return NULL;
        }
        return p + 1;
    }
    if (c == '[') {
        if (p < ms->p_end && *p == '^')
            p++;
        for (;;) { /* the first character of a set is a member, even ']' */
            if (p >= ms->p_end) {
                fail(ms, "malformed pattern (missing ']')");
                return NULL;
            }
            c = *p++;
            if (c == '%' && p < ms->p_end)
                p++;
            if (p >= ms->p_end) {
                fail(ms, "malformed pattern (missing ']')");
                return NULL;
            }
            if (*p == ']')
                return p + 1;
        }
    }
    return p;
}

/* %a, %d, ... (upper case: the complement); any other letter is itself. */
static bool class_match(int c, int cl)
{
    bool r;
    switch (tolower(cl)) {
    case 'a':
        r = isalpha(c);
        break;
    case 'c':
        r = iscntrl(c);
        break;
    case 'd':
        r = isdigit(c);
        break;
    case 'g': /* LuaJIT 2.1 has it (printable but space), as Lua 5.2 does */
        r = isgraph(c);
        break;
    case 'l':
        r = islower(c);
        break;
    case 'p':
        r = ispunct(c);
        break;
    case 's':
        r = isspace(c);
        break;
    case 'u':
        r = isupper(c);
        break;
    case 'w':
        r = isalnum(c);
        break;
    case 'x':
        r = isxdigit(c);
        break;
    case 'z':
        r = c == 0;
        break;
    default:
        return cl == c;
    }
    return isupper(cl) ? !r : r;
}

/* c against the set [p .. ec] (p at '[', ec at the closing ']'). */
static bool set_match(int c, const char *p, const char *ec)
{
    bool in = true;
    p++;
    if (*p == '^') {
        in = false;
        p++;
    }
    while (p < ec) {
        /* an escape takes the next character even when it is the closing
           ']' (as LuaJIT does: "[a-%%]" is 'a'-'%' then "%]", a literal ']') */
        if (*p == '%') {
            if (class_match(c, (unsigned char)p[1]))
                return in;
            p += 2;
        } else if (p + 2 < ec && p[1] == '-') {
            if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2])
                return in;
            p += 3;
        } else {
            if ((unsigned char)*p == c)
                return in;
            p++;
        }
    }
    return !in;
}

/* The subject character at s against the class [p, ep). */
static bool single_match(const struct mstate *ms, const char *s, const char *p, const char *ep)
{
    if (s >= ms->src_end)
        return false;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.':
        return true;
    case '%':
        return class_match(c, (unsigned char)p[1]);
    case '[':
        return set_match(c, p, ep - 1);
    default:
        return (unsigned char)*p == c;
    }
}

static const char *match(struct mstate *ms, const char *s, const char *p);

static const char *match_balance(struct mstate *ms, const char *s, const char *p)
{
    if (p + 1 >= ms->p_end) {
        fail(ms, "malformed pattern (missing arguments to '%b')");
        return NULL;
    }
    if (s >= ms->src_end || *s != p[0])
        return NULL;
    int open = 1;
    while (++s < ms->src_end) {
        if (!step(ms))
            return NULL;
        if (*s == p[1]) {
            if (--open == 0)
                return s + 1;
        } else if (*s == p[0])
            open++;
    }
    return NULL;
}

static const char *match_capture(struct mstate *ms, const char *s, int digit)
{
    int l = digit - '1';
    if (l < 0 || l >= ms->level || ms->cap[l].len == CAP_UNFINISHED) {
        fail(ms, "invalid capture index");
        return NULL;
    }
    ptrdiff_t len = ms->cap[l].len;
    if (len >= 0 && ms->src_end - s >= len && memcmp(ms->cap[l].init, s, (size_t)len) == 0)
        return s + len;
    return NULL;
}

static const char *max_expand(struct mstate *ms, const char *s, const char *p, const char *ep)
{
    ptrdiff_t i = 0;
    while (single_match(ms, s + i, p, ep)) {
        if (!step(ms))
            return NULL;
        i++;
    }
    for (; i >= 0; i--) { /* the longest run first, then shorter ones */
        const char *r = match(ms, s + i, ep + 1);
        if (r || ms->err)
            return r;
    }
    return NULL;
}

static const char *min_expand(struct mstate *ms, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *r = match(ms, s, ep + 1);
        if (r || ms->err)
            return r;
        if (!single_match(ms, s, p, ep))
            return NULL;
        s++;
    }
}

static const char *start_capture(struct mstate *ms, const char *s, const char *p, ptrdiff_t what)
{
    if (ms->level >= MAXCAPTURES) {
        fail(ms, "too many captures");
        return NULL;
    }
    ms->cap[ms->level].init = s;
    ms->cap[ms->level].len = what;
    ms->level++;
    const char *r = match(ms, s, p);
    if (!r)
        ms->level--;
    return r;
}

static const char *end_capture(struct mstate *ms, const char *s, const char *p)
{
    int l = ms->level - 1;
    while (l >= 0 && ms->cap[l].len != CAP_UNFINISHED)
        l--;
    if (l < 0) {
        fail(ms, "invalid pattern capture");
        return NULL;
    }
    ms->cap[l].len = s - ms->cap[l].init;
    const char *r = match(ms, s, p);
    if (!r)
        ms->cap[l].len = CAP_UNFINISHED;
    return r;
}

static const char *match_body(struct mstate *ms, const char *s, const char *p)
{
    for (;;) {
        if (!step(ms))
            return NULL;
        if (p == ms->p_end)
            return s;
        const char *ep;
        switch (*p) {
        case '(':
            if (p + 1 < ms->p_end && p[1] == ')')
                return start_capture(ms, s, p + 2, CAP_POSITION);
            return start_capture(ms, s, p + 1, CAP_UNFINISHED);
        case ')':
            return end_capture(ms, s, p + 1);
        case '$':
            if (p + 1 == ms->p_end)
                return s == ms->src_end ? s : NULL;
            break; /* elsewhere a '$' is itself */
        case '%':
            if (p + 1 >= ms->p_end)
                break; /* class_end reports it */
            if (p[1] == 'b') {
                s = match_balance(ms, s, p + 2);
                if (!s)
                    return NULL;
                p += 4;
                continue;
            }
            if (p[1] == 'f') {
                p += 2;
                if (p >= ms->p_end || *p != '[') {
                    fail(ms, "missing '[' after '%f' in pattern");
                    return NULL;
                }
                ep = class_end(ms, p);
                if (!ep)
                    return NULL;
                int prev = s == ms->src_init ? 0 : (unsigned char)s[-1];
                int here = s < ms->src_end ? (unsigned char)*s : 0;
                if (set_match(prev, p, ep - 1) || !set_match(here, p, ep - 1))
                    return NULL;
                p = ep;
                continue;
            }
            if (isdigit((unsigned char)p[1])) {
                s = match_capture(ms, s, (unsigned char)p[1]);
                if (!s)
                    return NULL;
                p += 2;
                continue;
            }
            break;
        default:
            break;
        }
        /* a single-character class, maybe with a quantifier */
        ep = class_end(ms, p);
        if (!ep)
            return NULL;
        bool m = single_match(ms, s, p, ep);
        char q = ep < ms->p_end ? *ep : '\0';
        switch (q) {
        case '?':
            if (m) {
                const char *r = match(ms, s + 1, ep + 1);
                if (r || ms->err)
                    return r;
            }
            p = ep + 1;
            continue;
        case '*':
            return max_expand(ms, s, p, ep);
        case '+':
            return m ? max_expand(ms, s + 1, p, ep) : NULL;
        case '-':
            return min_expand(ms, s, p, ep);
        default:
            if (!m)
                return NULL;
            s++;
            p = ep;
            continue;
        }
    }
}

static const char *match(struct mstate *ms, const char *s, const char *p)
{
    if (++ms->depth > MAXDEPTH) {
        fail(ms, "pattern too complex");
        ms->depth--;
        return NULL;
    }
    const char *r = match_body(ms, s, p);
    ms->depth--;
    return ms->err ? NULL : r;
}

/* ------------------------------------------------------------ Lua side */

static void init_state(struct mstate *ms, lua_State *L, const char *s, size_t ls, const char *p, size_t lp)
{
    memset(ms, 0, offsetof(struct mstate, cap));
    ms->src_init = s;
    ms->src_end = s + ls;
    ms->p_end = p + strnlen(p, lp); /* a NUL ends the pattern, as in LuaJIT (use %z for the byte) */
    ms->env = lua_touserdata(L, lua_upvalueindex(1));
}

/* Raises the pending error of a match, if any. */
static void raise_if(lua_State *L, struct mstate *ms)
{
    if (ms->err)
        luaL_error(L, "%s", ms->err);
}

static void check_subject(lua_State *L, const struct pt_lpat_env *env, size_t l)
{
    if (env->max_subject && l > env->max_subject)
        luaL_error(L, "pattern matching on a string of %d bytes exceeds the limit (lua.patternLimit)",
                   (int)(l > INT32_MAX ? INT32_MAX : l));
}

/* find, match and gsub: the subject checked, a leading '^' taken as the
   anchor it is (gmatch has none), the state ready. */
static bool begin(struct mstate *ms, lua_State *L, const struct pt_lpat_env *env, const char *s, size_t ls,
                  const char **p, size_t lp)
{
    check_subject(L, env, ls);
    bool anchor = **p == '^';
    if (anchor) {
        (*p)++;
        lp--;
    }
    init_state(ms, L, s, ls, *p, lp);
    return anchor;
}

static void push_onecapture(lua_State *L, struct mstate *ms, int i, const char *s, const char *e)
{
    if (i >= ms->level) {
        if (i != 0)
            luaL_error(L, "invalid capture index");
        lua_pushlstring(L, s, (size_t)(e - s)); /* no captures: the whole match */
        return;
    }
    ptrdiff_t l = ms->cap[i].len;
    if (l == CAP_UNFINISHED)
        luaL_error(L, "unfinished capture");
    if (l == CAP_POSITION)
        lua_pushinteger(L, ms->cap[i].init - ms->src_init + 1);
    else
        lua_pushlstring(L, ms->cap[i].init, (size_t)l);
}

static int push_captures(lua_State *L, struct mstate *ms, const char *s, const char *e)
{
    int n = ms->level == 0 && s ? 1 : ms->level;
    luaL_checkstack(L, n, "too many captures");
    for (int i = 0; i < n; i++)
        push_onecapture(L, ms, i, s, e);
    return n;
}

static bool has_specials(const char *p, size_t lp)
{
    for (size_t i = 0; i < lp; i++)
        if (strchr("^$*+?.([%-", p[i]) && p[i])
            return true;
    return false;
}

/*
 * A plain search.  LuaJIT's own is O(n * m) and cannot be interrupted (a
 * 1 MB needle in a 2 MB subject held a worker for 25 s), so the subject is
 * searched window by window with memmem (linear for long needles), and the
 * deadline is polled between windows.  A window is at least the needle's
 * length, so the whole search stays linear.
 */
#define PLAIN_WINDOW (64 * 1024)

static int plain_find(lua_State *L, const struct pt_lpat_env *env, const char *s, size_t ls, const char *p,
                      size_t lp, size_t init)
{
    if (lp == 0) {
        lua_pushinteger(L, (lua_Integer)init + 1);
        lua_pushinteger(L, (lua_Integer)init);
        return 2;
    }
    if (lp <= ls - init) {
        const char *start = s + init;
        size_t left = ls - init, win = lp > PLAIN_WINDOW ? lp : PLAIN_WINDOW;
        for (size_t off = 0; off + lp <= left; off += win) {
            size_t span = left - off;
            if (span > win + lp - 1)
                span = win + lp - 1; /* matches starting in [off, off + win) */
            const char *hit = memmem(start + off, span, p, lp);
            if (hit) {
                lua_pushinteger(L, (lua_Integer)(hit - s) + 1);
                lua_pushinteger(L, (lua_Integer)(hit - s) + (lua_Integer)lp);
                return 2;
            }
            if (env->expired && env->expired())
                return luaL_error(L, "time limit exceeded");
        }
    }
    lua_pushnil(L);
    return 1;
}

static int find_aux(lua_State *L, bool find)
{
    const struct pt_lpat_env *env = lua_touserdata(L, lua_upvalueindex(1));
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    lua_Integer init = luaL_optinteger(L, 3, 1);
    if (init < 0)
        init += (lua_Integer)ls;
    else
        init--;
    if (init < 0)
        init = 0;
    else if ((size_t)init > ls)
        init = (lua_Integer)ls; /* past the end: the end, as LuaJIT 2.1 does */
    if (find && (lua_toboolean(L, 4) || !has_specials(p, lp)))
        return plain_find(L, env, s, ls, p, lp, (size_t)init);
    struct mstate ms;
    bool anchor = begin(&ms, L, env, s, ls, &p, lp);
    const char *s1 = s + init;
    do {
        ms.level = 0;
        ms.depth = 0;
        const char *e = match(&ms, s1, p);
        raise_if(L, &ms);
        if (e) {
            if (find) {
                lua_pushinteger(L, s1 - s + 1);
                lua_pushinteger(L, e - s);
                return push_captures(L, &ms, NULL, NULL) + 2;
            }
            return push_captures(L, &ms, s1, e);
        }
    } while (s1++ < ms.src_end && !anchor);
    lua_pushnil(L);
    return 1;
}

static int l_find(lua_State *L)
{
    return find_aux(L, true);
}

static int l_match(lua_State *L)
{
    return find_aux(L, false);
}

static int gmatch_next(lua_State *L)
{
    size_t ls, lp;
    const char *s = lua_tolstring(L, lua_upvalueindex(2), &ls);
    const char *p = lua_tolstring(L, lua_upvalueindex(3), &lp);
    struct mstate ms;
    init_state(&ms, L, s, ls, p, lp);
    for (const char *src = s + lua_tointeger(L, lua_upvalueindex(4)); src <= ms.src_end; src++) {
        ms.level = 0;
        ms.depth = 0;
        const char *e = match(&ms, src, p);
        raise_if(L, &ms);
        if (e) {
            lua_Integer next = e - s;
            if (e == src)
                next++; /* an empty match: move on at least one character */
            lua_pushinteger(L, next);
            lua_replace(L, lua_upvalueindex(4));
            return push_captures(L, &ms, src, e);
        }
    }
    return 0;
}

static int l_gmatch(lua_State *L)
{
    const struct pt_lpat_env *env = lua_touserdata(L, lua_upvalueindex(1));
    size_t ls;
    luaL_checklstring(L, 1, &ls);
    luaL_checkstring(L, 2);
    check_subject(L, env, ls);
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, gmatch_next, 4);
    return 1;
}

static void add_s(lua_State *L, struct mstate *ms, luaL_Buffer *b, const char *s, const char *e)
{
    size_t lr;
    const char *r = lua_tolstring(L, 3, &lr);
    for (size_t i = 0; i < lr; i++) {
        if (r[i] != '%') {
            luaL_addchar(b, r[i]);
            continue;
        }
        if (++i == lr) { /* a final '%' stands for the string's terminating NUL, as in LuaJIT */
            luaL_addchar(b, '\0');
            break;
        }
        if (!isdigit((unsigned char)r[i]))
            luaL_addchar(b, r[i]);
        else if (r[i] == '0')
            luaL_addlstring(b, s, (size_t)(e - s));
        else {
            push_onecapture(L, ms, r[i] - '1', s, e);
            luaL_addvalue(b);
        }
    }
}

static void add_value(lua_State *L, struct mstate *ms, luaL_Buffer *b, const char *s, const char *e)
{
    switch (lua_type(L, 3)) {
    case LUA_TNUMBER:
    case LUA_TSTRING:
        add_s(L, ms, b, s, e);
        return;
    case LUA_TFUNCTION: {
        lua_pushvalue(L, 3);
        int n = push_captures(L, ms, s, e);
        lua_call(L, n, 1);
        break;
    }
    default: /* a table */
        push_onecapture(L, ms, 0, s, e);
        lua_gettable(L, 3);
        break;
    }
    if (!lua_toboolean(L, -1)) { /* nil or false: the match stays as it was */
        lua_pop(L, 1);
        lua_pushlstring(L, s, (size_t)(e - s));
    } else if (!lua_isstring(L, -1))
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    luaL_addvalue(b);
}

static int l_gsub(lua_State *L)
{
    const struct pt_lpat_env *env = lua_touserdata(L, lua_upvalueindex(1));
    size_t ls, lp;
    const char *src = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    int tr = lua_type(L, 3);
    lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    luaL_argcheck(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION || tr == LUA_TTABLE, 3,
                  "string/function/table expected");
    struct mstate ms;
    bool anchor = begin(&ms, L, env, src, ls, &p, lp);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_Integer n = 0;
    while (n < max_n) {
        ms.level = 0;
        ms.depth = 0;
        const char *e = match(&ms, src, p);
        raise_if(L, &ms);
        if (e) {
            n++;
            add_value(L, &ms, &b, src, e);
        }
        if (e && e > src)
            src = e;
        else if (src < ms.src_end)
            luaL_addchar(&b, *src++);
        else
            break;
        if (anchor)
            break;
    }
    luaL_addlstring(&b, src, (size_t)(ms.src_end - src));
    luaL_pushresult(&b);
    lua_pushinteger(L, n);
    return 2;
}

void pt_lpat_install(lua_State *L, int tbl, const struct pt_lpat_env *env)
{
    tbl = tbl < 0 && tbl > LUA_REGISTRYINDEX ? lua_gettop(L) + tbl + 1 : tbl;
    lua_pushlightuserdata(L, (void *)env);
    lua_pushcclosure(L, l_find, 1);
    lua_setfield(L, tbl, "find");
    static const struct {
        const char *name;
        lua_CFunction f;
    } fns[] = {{"match", l_match}, {"gmatch", l_gmatch}, {"gsub", l_gsub}};
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
        lua_pushlightuserdata(L, (void *)env);
        lua_pushcclosure(L, fns[i].f, 1);
        lua_setfield(L, tbl, fns[i].name);
    }
}
