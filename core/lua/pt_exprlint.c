/*
 * pt_exprlint -- APIM (C#) expressions and unknown `context` members.
 *
 * The expression is cut into Lua tokens; rules look at token sequences and
 * may give a token a replacement. The message lists what was found and, when
 * every finding could be rewritten, the whole expression with the
 * replacements applied (the text between tokens is kept as written).
 */
#include "lua/pt_exprlint.h"

#include "base/pt.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* ---------------------------------------------------------------- tokens */

enum tkind { T_NAME, T_STRING, T_NUMBER, T_OP };

struct tok {
    enum tkind kind;
    const char *s;
    size_t n;
    const char *repl; /* replacement text in the Lua equivalent, or NULL */
    bool seen;        /* already part of a finding */
};

/* Room for every name declared() is asked about (checked below the tables). */
enum { DECL_MAX = 128 };

struct lint {
    const char *src;
    size_t len;
    struct tok *t;
    int n, cap;
    struct {
        const char *name;
        bool yes;
    } decl[DECL_MAX]; /* answers of declared(): the names asked about come from fixed tables */
    int ndecl;
    char found[768]; /* the findings, "; "-separated */
    size_t flen;
    bool csharp;  /* something was written for C# */
    bool unknown; /* a finding without a rewrite: no Lua equivalent is shown */
};

static bool is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/* Length of a long bracket opening at p ("[[", "[==["), or 0; *level gets its level. */
static size_t long_open(const char *p, const char *end, int *level)
{
    const char *q = p + 1;
    int l = 0;
    while (q < end && *q == '=') {
        l++;
        q++;
    }
    if (q < end && *q == '[') {
        *level = l;
        return (size_t)(q + 1 - p);
    }
    return 0;
}

/* Skips to the end of a long bracket of the given level (or to the end). */
static const char *long_close(const char *p, const char *end, int level)
{
    for (; p < end; p++) {
        if (*p != ']')
            continue;
        const char *q = p + 1;
        int l = 0;
        while (q < end && *q == '=') {
            l++;
            q++;
        }
        if (l == level && q < end && *q == ']')
            return q + 1;
    }
    return end;
}

static const char *skip_short_string(const char *p, const char *end)
{
    char quote = *p++;
    while (p < end && *p != quote && *p != '\n') {
        if (*p == '\\' && p + 1 < end)
            p++;
        p++;
    }
    return p < end && *p == quote ? p + 1 : p;
}

/* Operators of two characters that C# and Lua use (C#'s are refused by rules). */
static size_t op_len(const char *p, const char *end)
{
    static const char *const two[] = {"==", "~=", "<=", ">=", "..", "::", "!=", "&&", "||", "??", "=>"};
    if (p + 2 < end + 0 && p[0] == '.' && p[1] == '.' && p[2] == '.')
        return 3;
    for (size_t i = 0; i < PT_ARRAY_LEN(two); i++)
        if (p + 1 < end && p[0] == two[i][0] && p[1] == two[i][1])
            return 2;
    return 1;
}

static bool tokenize(struct lint *x)
{
    const char *p = x->src, *end = x->src + x->len;
    while (p < end) {
        char c = *p;
        int level;
        size_t ol;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            p++;
            continue;
        }
        if (c == '-' && p + 1 < end && p[1] == '-') { /* comment */
            p += 2;
            if (p < end && *p == '[' && (ol = long_open(p, end, &level)) > 0)
                p = long_close(p + ol, end, level);
            else
                while (p < end && *p != '\n')
                    p++;
            continue;
        }
        if (x->n == x->cap) {
            int ncap = x->cap ? x->cap * 2 : 64;
            struct tok *nt = realloc(x->t, sizeof(*nt) * (size_t)ncap);
            if (!nt)
                return false;
            x->t = nt;
            x->cap = ncap;
        }
        struct tok *t = &x->t[x->n++];
        memset(t, 0, sizeof(*t));
        t->s = p;
        if (c == '"' || c == '\'') {
            t->kind = T_STRING;
            p = skip_short_string(p, end);
        } else if (c == '[' && (ol = long_open(p, end, &level)) > 0) {
            t->kind = T_STRING;
            p = long_close(p + ol, end, level);
        } else if (is_name_start(c)) {
            t->kind = T_NAME;
            while (p < end && is_name_char(*p))
                p++;
        } else if ((c >= '0' && c <= '9') || (c == '.' && p + 1 < end && p[1] >= '0' && p[1] <= '9')) {
            t->kind = T_NUMBER;
            while (p < end &&
                   (is_name_char(*p) || *p == '.' || ((*p == '+' || *p == '-') && strchr("eEpP", p[-1]))))
                p++;
        } else {
            t->kind = T_OP;
            p += op_len(p, end);
        }
        t->n = (size_t)(p - t->s);
    }
    return true;
}

static bool tok_is(const struct lint *x, int i, const char *text)
{
    if (i < 0 || i >= x->n)
        return false;
    size_t l = strlen(text);
    return x->t[i].n == l && !memcmp(x->t[i].s, text, l);
}

static bool tok_name(const struct lint *x, int i)
{
    return i >= 0 && i < x->n && x->t[i].kind == T_NAME;
}

/* ------------------------------------------------------- declared names */

/* True when the text itself gives `name` a meaning: a local, a parameter,
   a loop variable, an assignment, a field of a table constructor or a
   function defined with that name. Such names are the writer's own. */
static bool scan_declared(const struct lint *x, const char *name)
{
    for (int i = 0; i < x->n; i++) {
        if (!tok_is(x, i, name))
            continue;
        if (tok_is(x, i + 1, "=") && !tok_is(x, i + 2, "="))
            return true;
        if (tok_is(x, i - 1, "function"))
            return true;
        if ((tok_is(x, i - 1, ".") || tok_is(x, i - 1, ":")) && tok_is(x, i - 3, "function"))
            return true;
        /* a list after local / for / function(: walk back over names and commas */
        int j = i - 1;
        while (j >= 1 && tok_is(x, j, ",") && tok_name(x, j - 1))
            j -= 2;
        if (tok_is(x, j, "local") || tok_is(x, j, "for"))
            return true;
        if (tok_is(x, j, "(") &&
            (tok_is(x, j - 1, "function") || (tok_name(x, j - 1) && tok_is(x, j - 2, "function"))))
            return true;
    }
    return false;
}

/* The same, asked once per name (the rules ask for every token they match). */
static bool declared(struct lint *x, const char *name)
{
    for (int k = 0; k < x->ndecl; k++)
        if (!strcmp(x->decl[k].name, name))
            return x->decl[k].yes;
    bool yes = scan_declared(x, name);
    if (x->ndecl < (int)PT_ARRAY_LEN(x->decl)) {
        x->decl[x->ndecl].name = name;
        x->decl[x->ndecl++].yes = yes;
    }
    return yes;
}

/* -------------------------------------------------------------- findings */

static void note(struct lint *x, const char *fmt, ...) PT_PRINTF(2, 3);
#define CSHARP(x, ...) ((x)->csharp = true, note((x), __VA_ARGS__))

static void note(struct lint *x, const char *fmt, ...)
{
    if (x->flen + 8 >= sizeof(x->found))
        return;
    if (x->flen) {
        memcpy(x->found + x->flen, "; ", 2);
        x->flen += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    x->flen += pt_str_vfmt(x->found + x->flen, sizeof(x->found) - x->flen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------ the model of `context` */

enum { M_OPEN = 1, M_METHOD = 2 }; /* any key is a value / called with ':' */

struct member {
    const char *name;
    const struct member *kids; /* NULL: a value (string, number, list) */
    unsigned flags;
};

#define METHOD(n)                                                                                            \
    {                                                                                                        \
        n, NULL, M_METHOD                                                                                    \
    }
static const struct member headers[] = {METHOD("get"),    METHOD("getAll"), METHOD("has"),  METHOD("set"),
                                        METHOD("append"), METHOD("remove"), {NULL, NULL, 0}};
static const struct member getter[] = {METHOD("get"), {NULL, NULL, 0}};
static const struct member url[] = {{"scheme", NULL, 0}, {"host", NULL, 0},        {"port", NULL, 0},
                                    {"path", NULL, 0},   {"queryString", NULL, 0}, {"query", getter, M_OPEN},
                                    {NULL, NULL, 0}};
static const struct member body[] = {
    METHOD("asString"), METHOD("asJson"), METHOD("asXml"), METHOD("set"), {NULL, NULL, 0}};
static const struct member request[] = {{"method", NULL, 0},     {"url", url, 0},
                                        {"originalUrl", url, 0}, {"headers", headers, M_OPEN},
                                        {"ipAddress", NULL, 0},  {"matchedParameters", getter, M_OPEN},
                                        {"body", body, 0},       {"protocol", NULL, 0},
                                        {NULL, NULL, 0}};
static const struct member response[] = {{"statusCode", NULL, 0},      {"statusReason", NULL, 0},
                                         {"headers", headers, M_OPEN}, {"body", body, 0},
                                         METHOD("setStatus"),          {NULL, NULL, 0}};
static const struct member variables[] = {
    METHOD("get"), METHOD("getValueOrDefault"), METHOD("containsKey"), METHOD("set"), {NULL, NULL, 0}};
static const struct member keynames[] = {{"header", NULL, 0}, {"query", NULL, 0}, {NULL, NULL, 0}};
static const struct member api[] = {{"id", NULL, 0},
                                    {"name", NULL, 0},
                                    {"path", NULL, 0},
                                    {"serviceUrl", NULL, 0},
                                    {"subscriptionKeyParameterNames", keynames, 0},
                                    {"isCurrentRevision", NULL, 0},
                                    {"revision", NULL, 0},
                                    {"version", NULL, 0},
                                    {"versionSetId", NULL, 0},
                                    {NULL, NULL, 0}};
static const struct member operation[] = {
    {"id", NULL, 0}, {"name", NULL, 0}, {"method", NULL, 0}, {"urlTemplate", NULL, 0}, {NULL, NULL, 0}};
static const struct member gateway[] = {
    {"id", NULL, 0}, {"instanceId", NULL, 0}, {"isManaged", NULL, 0}, {NULL, NULL, 0}};
static const struct member deployment[] = {{"gatewayId", NULL, 0},
                                           {"serviceName", NULL, 0},
                                           {"region", NULL, 0},
                                           {"gateway", gateway, 0},
                                           {NULL, NULL, 0}};
static const struct member lasterror[] = {{"source", NULL, 0},  {"reason", NULL, 0}, {"message", NULL, 0},
                                          {"section", NULL, 0}, {"path", NULL, 0},   {"policyId", NULL, 0},
                                          {"scope", NULL, 0},   {NULL, NULL, 0}};
static const struct member product[] = {{"id", NULL, 0},
                                        {"name", NULL, 0},
                                        {"state", NULL, 0},
                                        {"approvalRequired", NULL, 0},
                                        {"subscriptionRequired", NULL, 0},
                                        {"subscriptionLimit", NULL, 0},
                                        {"apis", NULL, 0},
                                        {"groups", NULL, 0},
                                        {NULL, NULL, 0}};
static const struct member subscription[] = {
    {"id", NULL, 0},         {"name", NULL, 0},         {"key", NULL, 0},
    {"primaryKey", NULL, 0}, {"secondaryKey", NULL, 0}, {"createdDate", NULL, 0},
    {"scope", NULL, 0},      {"state", NULL, 0},        {NULL, NULL, 0}};
static const struct member user[] = {{"id", NULL, 0},       {"email", NULL, 0}, {"firstName", NULL, 0},
                                     {"lastName", NULL, 0}, {"note", NULL, 0},  {"state", NULL, 0},
                                     {"groups", NULL, 0},   {NULL, NULL, 0}};
static const struct member context_members[] = {{"request", request, 0},
                                                {"response", response, 0},
                                                {"variables", variables, M_OPEN},
                                                {"api", api, 0},
                                                {"operation", operation, 0},
                                                {"product", product, 0},
                                                {"subscription", subscription, 0},
                                                {"user", user, 0},
                                                {"deployment", deployment, 0},
                                                {"lastError", lasterror, 0},
                                                {"elapsed", NULL, 0},
                                                {"requestId", NULL, 0},
                                                {"timestamp", NULL, 0},
                                                {"trace", NULL, 0},
                                                {"tracing", NULL, 0},
                                                {NULL, NULL, 0}};

static bool known_under(const struct member *kids, const char *name, int depth)
{
    for (const struct member *m = kids; depth < 8 && m && m->name; m++)
        if (!strcmp(m->name, name) || known_under(m->kids, name, depth + 1))
            return true;
    return false;
}

bool pt_exprlint_knows_member(const char *name)
{
    return known_under(context_members, name, 0);
}

static const struct member *find_member(const struct member *kids, const struct tok *t, bool any_case)
{
    for (const struct member *m = kids; m && m->name; m++) {
        pt_str name = pt_str_c(m->name), s = {t->s, t->n};
        if (any_case ? pt_str_ieq(name, s) : pt_str_eq(name, s))
            return m;
    }
    return NULL;
}

/* The closest member name, when it is close enough to be what was meant. */
static const struct member *closest_member(const struct member *kids, const struct tok *t)
{
    const struct member *best = NULL;
    int bd = 0;
    for (const struct member *m = kids; m && m->name; m++) {
        int d = pt_str_distance(pt_str_c(m->name), (pt_str){t->s, t->n});
        if (!best || d < bd) {
            best = m;
            bd = d;
        }
    }
    int limit = t->n <= 4 ? 1 : t->n <= 8 ? 2 : 3;
    return best && bd <= limit ? best : NULL;
}

/* ----------------------------------------------------------- C# methods */

struct csharp_method {
    const char *name;
    const char *lua;  /* replacement of ".Name": ":get" etc., or NULL */
    const char *hint; /* what to write instead, when it cannot be rewritten in place */
};

static const struct csharp_method methods[] = {
    {"GetValueOrDefault", ":get", NULL},
    {"ContainsKey", ":containsKey", NULL},
    {"ToLower", ":lower", NULL},
    {"ToLowerInvariant", ":lower", NULL},
    {"ToUpper", ":upper", NULL},
    {"ToUpperInvariant", ":upper", NULL},
    {"AsJObject", NULL, "decode JSON with json.decode(text), or read a body with body:asJson()"},
    {"ToString", NULL, "convert with tostring(x)"},
    {"Trim", NULL, "trim(s)"},
    {"Contains", NULL, "contains(s, part)"},
    {"StartsWith", NULL, "startsWith(s, prefix)"},
    {"EndsWith", NULL, "endsWith(s, suffix)"},
    {"Split", NULL, "split(s, sep)"},
    {"Substring", NULL, "s:sub(first, last) (1-based)"},
    {"Replace", NULL, "s:gsub(pattern, replacement)"},
    {"IndexOf", NULL, "s:find(part, 1, true)"},
    {"Equals", NULL, "a == b"},
    {"Any", NULL, "a Lua loop: for _, v in ipairs(list) do ... end"},
    {"Where", NULL, "a Lua loop: for _, v in ipairs(list) do ... end"},
    {"Select", NULL, "a Lua loop: for _, v in ipairs(list) do ... end"},
    {"First", NULL, "list[1]"},
    {"FirstOrDefault", NULL, "list[1]"},
    {"Last", NULL, "list[#list]"},
    {"Count", NULL, "#list"},
    {"TryGetValue", NULL, "context.variables:get(name)"},
    {"Parse", NULL, "tonumber(s), or json.decode(text)"},
    {"TryParse", NULL, "tonumber(s)"},
    {"AsJwt", NULL, "asJwt(token), a function, not a method"},
    {"AsBasic", NULL, "asBasic(value), a function, not a method"},
    {"Value", NULL, "index the decoded table: t.name or t['name']"},
    {"AsFormUrlEncodedContent", NULL, "url.decodeForm(body:asString())"},
};

/* `As<JObject>` and friends: the body method for the type. */
static const char *as_method(const struct tok *type)
{
    static const char *const json[] = {"JObject", "JArray", "JToken"};
    static const char *const xml[] = {"XElement", "XDocument"};
    for (size_t i = 0; i < PT_ARRAY_LEN(json); i++)
        if (pt_str_eq((pt_str){type->s, type->n}, pt_str_c(json[i])))
            return ":asJson";
    for (size_t i = 0; i < PT_ARRAY_LEN(xml); i++)
        if (pt_str_eq((pt_str){type->s, type->n}, pt_str_c(xml[i])))
            return ":asXml";
    return ":asString";
}

/* Index past a generic argument list `<T>` starting at i (or i itself). */
static int skip_generic(const struct lint *x, int i)
{
    if (!tok_is(x, i, "<"))
        return i;
    for (int j = i + 1; j < x->n && j < i + 8; j++)
        if (tok_is(x, j, ">"))
            return j + 1;
    return i;
}

/* `.Name(` or `.Name<T>(` at i (the dot) with a C# method name the text
   does not define itself. Returns the index after the method's name and
   generic list, or 0 when it is not one. */
static int csharp_call(struct lint *x, int i)
{
    if (!(tok_is(x, i, ".") || tok_is(x, i, ":")) || !tok_name(x, i + 1) || x->t[i].seen || x->t[i + 1].seen)
        return 0;
    const struct tok *name = &x->t[i + 1];
    int after = skip_generic(x, i + 2);
    if (!tok_is(x, after, "("))
        return 0;
    if (pt_str_eq((pt_str){name->s, name->n}, PT_STR("As")) && after > i + 2) {
        if (declared(x, "As"))
            return 0;
        x->t[i].repl = "";
        x->t[i].seen = x->t[i + 1].seen = true;
        x->t[i + 1].repl = as_method(&x->t[i + 3]);
        for (int j = i + 2; j < after; j++)
            x->t[j].repl = "";
        /* the type is echoed only when it is a name, not any text between <> */
        const struct tok *type = &x->t[i + 3];
        bool named = type->kind == T_NAME && type->n <= 64;
        CSHARP(x, "'.As<%.*s>(' is C#; in Lua: '%s('", named ? (int)type->n : 1, named ? type->s : "T",
               x->t[i + 1].repl);
        return after;
    }
    for (size_t k = 0; k < PT_ARRAY_LEN(methods); k++) {
        if (!pt_str_eq((pt_str){name->s, name->n}, pt_str_c(methods[k].name)))
            continue;
        const char *nm = methods[k].name;
        if (declared(x, nm))
            return 0;
        x->t[i].seen = x->t[i + 1].seen = true;
        if (methods[k].lua) {
            x->t[i].repl = "";
            x->t[i + 1].repl = methods[k].lua;
            for (int j = i + 2; j < after; j++)
                x->t[j].repl = "";
            CSHARP(x, "'.%s(' is C#; in Lua: '%s('", nm, methods[k].lua);
        } else {
            x->unknown = true;
            CSHARP(x, "'.%s(' is C#; in Lua: %s", nm, methods[k].hint);
        }
        return after;
    }
    return 0;
}

/* --------------------------------------------------------- context chains */

static void report_unknown(struct lint *x, int first, int last, const struct member *near,
                           const struct member *kids)
{
    char owner[256]; /* the chain before the unknown name, as it reads in Lua */
    size_t k = 0;
    owner[0] = '\0';
    for (int j = first; j < last - 1 && k + 1 < sizeof(owner); j++) {
        const struct tok *t = &x->t[j];
        int w = snprintf(owner + k, sizeof(owner) - k, "%.*s", (int)(t->repl ? strlen(t->repl) : t->n),
                         t->repl ? t->repl : t->s);
        if (w > 0)
            k = PT_MIN(k + (size_t)w, sizeof(owner) - 1);
    }
    const struct tok *name = &x->t[last];
    x->t[last].seen = true;
    x->unknown = true;
    if (near) {
        note(x, "'%s' has no member '%.*s' (did you mean '%s.%s'?)", owner, (int)name->n, name->s, owner,
             near->name);
        return;
    }
    char list[400];
    size_t ll = 0;
    list[0] = '\0';
    for (const struct member *m = kids; m->name && ll + 1 < sizeof(list); m++) {
        int w = snprintf(list + ll, sizeof(list) - ll, "%s%s", ll ? ", " : "", m->name);
        if (w > 0)
            ll = PT_MIN(ll + (size_t)w, sizeof(list) - 1);
    }
    note(x, "'%s' has no member '%.*s' (its members: %s)", owner, (int)name->n, name->s, list);
}

/* Walks `context.a.b:c(` from the token `context` at i, checking each name
   against the model; C# spellings of existing members get their Lua name. */
static void walk_context(struct lint *x, int i)
{
    const struct member *kids = context_members;
    unsigned flags = 0;
    int j = i + 1;
    while ((tok_is(x, j, ".") || tok_is(x, j, ":")) && tok_name(x, j + 1)) {
        const struct tok *name = &x->t[j + 1];
        if (csharp_call(x, j))
            return;
        const struct member *m = find_member(kids, name, false);
        /* in a map of headers or variables any other name is a key: a C#
           spelling is only recognised where a method is called */
        if (!m && kids && (!(flags & M_OPEN) || tok_is(x, j + 2, "("))) {
            m = find_member(kids, name, true);
            if (m) {
                x->t[j + 1].repl = m->name;
                CSHARP(x, "'%.*s' is the C# name; in Lua: '%s'", (int)name->n, name->s, m->name);
            }
        }
        if (!m) {
            if (!kids && pt_str_eq((pt_str){name->s, name->n}, PT_STR("Length")) && tok_is(x, j, ".")) {
                x->unknown = true;
                CSHARP(x, "'.Length' is C#; in Lua: #value");
                return;
            }
            if (!kids && tok_is(x, j, "."))
                x->unknown = true; /* a field of a plain value (a C# property): no rewrite holds */
            if (flags & M_OPEN || !kids)
                return; /* any key: a header, a variable, a query parameter; or a plain value */
            report_unknown(x, i, j + 1, closest_member(kids, name), kids);
            return;
        }
        if (m->flags & M_METHOD && tok_is(x, j, ".") && tok_is(x, j + 2, "(")) {
            x->t[j].repl = ":";
            CSHARP(x, "methods are called with ':' in Lua: ':%s('", m->name);
        }
        kids = m->kids;
        flags = m->flags;
        j += 2;
    }
}

/* ------------------------------------------------------ other C# idioms */

/* `(string)x`: a C# cast before a value. */
static const char *const cast_types[] = {"string",  "int",    "long",    "bool",   "double", "float",
                                         "decimal", "object", "JObject", "JArray", "JToken", "DateTime",
                                         "Guid",    "short",  "byte",    "char",   "uint",   "ulong"};

static void rule_cast(struct lint *x, int i)
{
    const char *const *types = cast_types;
    if (!tok_is(x, i, "(") || !tok_name(x, i + 1) || !tok_is(x, i + 2, ")") || i + 3 >= x->n)
        return;
    if (tok_name(x, i - 1) || tok_is(x, i - 1, ")") || tok_is(x, i - 1, "]"))
        return; /* a call: f(string) */
    const struct tok *next = &x->t[i + 3];
    /* a keyword after `(name)` ends or starts a statement: not a cast */
    static const char *const words[] = {
        "and", "or",  "then",  "do",       "end",    "else",  "elseif", "until", "in",  "return", "local",
        "if",  "for", "while", "function", "repeat", "break", "goto",   "not",   "nil", "true",   "false"};
    if (next->kind == T_OP && !tok_is(x, i + 3, "("))
        return;
    for (size_t k = 0; k < PT_ARRAY_LEN(words); k++)
        if (tok_is(x, i + 3, words[k]))
            return;
    for (size_t k = 0; k < PT_ARRAY_LEN(cast_types); k++) {
        if (!tok_is(x, i + 1, types[k]) || (strcmp(types[k], "string") && declared(x, types[k])))
            continue;
        x->t[i].repl = x->t[i + 1].repl = x->t[i + 2].repl = "";
        CSHARP(x, "the cast '(%s)' is C#; Lua values need none (convert with tostring(x) or tonumber(x))",
               types[k]);
        return;
    }
}

struct idiom {
    const char *first, *second; /* `first.second`, or `first` alone when second is NULL */
    const char *lua;            /* replacement of the whole, or NULL */
    const char *hint;
};

static const struct idiom idioms[] = {
    {"DateTime", "UtcNow", "now()", NULL},
    {"DateTime", "Now", "now()", NULL},
    {"string", "Format", "string.format", "placeholders are %s, not {0}"},
    {"String", "Format", "string.format", "placeholders are %s, not {0}"},
    {"string", "IsNullOrEmpty", NULL, "isBlank(s)"},
    {"String", "IsNullOrEmpty", NULL, "isBlank(s)"},
    {"string", "IsNullOrWhiteSpace", NULL, "isBlank(s)"},
    {"string", "Join", NULL, "join(list, sep)"},
    {"string", "Concat", NULL, "a .. b"},
    {"JObject", "Parse", "json.decode", NULL},
    {"JArray", "Parse", "json.decode", NULL},
    {"JsonConvert", "SerializeObject", "json.encode", NULL},
    {"JsonConvert", "DeserializeObject", "json.decode", NULL},
    {"Convert", "ToBase64String", "base64.encode", NULL},
    {"Convert", "FromBase64String", "base64.decode", NULL},
    {"Guid", "NewGuid", NULL, "crypto.hex(crypto.random(16)), or context.requestId"},
    {"int", "Parse", "tonumber", NULL},
    {"Int32", "Parse", "tonumber", NULL},
    {"Convert", "ToInt32", NULL, "tonumber(x) (math.floor to drop a fraction)"},
    {"Convert", "ToString", NULL, "tostring(x)"},
    {"Regex", "IsMatch", NULL, "s:find(pattern): Lua patterns, not regular expressions"},
    {"Regex", "Match", NULL, "s:match(pattern): Lua patterns, not regular expressions"},
    {"Regex", "Replace", NULL, "s:gsub(pattern, replacement): Lua patterns, not regular expressions"},
    {"Math", "Max", "math.max", NULL},
    {"Math", "Min", "math.min", NULL},
    {"Math", "Abs", "math.abs", NULL},
    {"Math", "Floor", "math.floor", NULL},
    {"Math", "Ceiling", "math.ceil", NULL},
    {"Math", "Round", NULL, "math.floor(x + 0.5)"},
    {"Encoding", "UTF8", NULL, "a Lua string is its bytes already: use the string"},
    {"null", NULL, "nil", NULL},
    {"new", NULL, NULL, "build a Lua table ({key = value}) and json.encode(t)"},
    {"var", NULL, "local", NULL},
};

/* declared() caches one answer per name: the tables' names, "context",
   "As" and "Length" must fit, or every further ask rescans the tokens. */
_Static_assert(PT_ARRAY_LEN(methods) + PT_ARRAY_LEN(idioms) + PT_ARRAY_LEN(cast_types) + 3 <= DECL_MAX,
               "declared() cache too small for the tables");

static void rule_idiom(struct lint *x, int i)
{
    if (!tok_name(x, i) || tok_is(x, i - 1, ".") || tok_is(x, i - 1, ":"))
        return;
    for (size_t k = 0; k < PT_ARRAY_LEN(idioms); k++) {
        const struct idiom *d = &idioms[k];
        if (!tok_is(x, i, d->first) || declared(x, d->first))
            continue;
        if (d->second && !(tok_is(x, i + 1, ".") && tok_is(x, i + 2, d->second)))
            continue;
        if (!d->second && !strcmp(d->first, "new") &&
            !(tok_name(x, i + 1) && i + 1 < x->n && isupper((unsigned char)x->t[i + 1].s[0])) &&
            !tok_is(x, i + 1, "{"))
            continue; /* `new` may be a variable: C# is `new JObject(`, `new {` */
        if (!d->second && !strcmp(d->first, "var") && !(tok_name(x, i + 1) && tok_is(x, i + 2, "=")))
            continue;
        char what[96];
        if (d->second)
            snprintf(what, sizeof(what), "%s.%s", d->first, d->second);
        else
            snprintf(what, sizeof(what), "%s", d->first);
        if (d->lua) {
            x->t[i].repl = d->lua;
            if (d->second)
                x->t[i + 1].repl = x->t[i + 2].repl = "";
            CSHARP(x, "'%s' is C#; in Lua: '%s'%s%s%s", what, d->lua, d->hint ? " (" : "",
                   d->hint ? d->hint : "", d->hint ? ")" : "");
        } else {
            x->unknown = true;
            CSHARP(x, "'%s' is C#; in Lua: %s", what, d->hint);
        }
        return;
    }
}

/* C# operators (all of them syntax errors in Lua). */
static void rule_operator(struct lint *x, int i)
{
    static const char *const ops[][2] = {
        {"!=", "~="}, {"&&", "and"}, {"||", "or"}, {"??", "or"}, {"!", "not "}};
    if (x->t[i].kind != T_OP)
        return;
    for (size_t k = 0; k < PT_ARRAY_LEN(ops); k++) {
        if (!tok_is(x, i, ops[k][0]))
            continue;
        x->t[i].repl = ops[k][1];
        CSHARP(x, "'%s' is C#; in Lua: '%s'", ops[k][0], ops[k][1]);
        return;
    }
    if (tok_is(x, i, "=>")) {
        x->unknown = true;
        CSHARP(x, "'=>' is C#; in Lua: function(x) return ... end");
    } else if (tok_is(x, i, "?") && tok_is(x, i + 1, ".")) {
        x->unknown = true;
        CSHARP(x, "'?.' is C#; in Lua: x and x.name");
    } else if (tok_is(x, i, "?")) {
        x->unknown = true;
        CSHARP(x, "'a ? b : c' is C#; in Lua: a and b or c");
    } else if (tok_is(x, i, "$") && i + 1 < x->n && x->t[i + 1].kind == T_STRING) {
        x->unknown = true;
        CSHARP(x, "$\"...\" is C#; in Lua: '...' .. value .. '...'");
    } else if (tok_is(x, i, "+") &&
               ((i > 0 && x->t[i - 1].kind == T_STRING) || (i + 1 < x->n && x->t[i + 1].kind == T_STRING))) {
        /* Lua's + adds numbers (a string becomes a number or an error) */
        x->t[i].repl = "..";
        CSHARP(x, "'+' joins strings in C#; in Lua: '..'");
    }
}

/* `f(x).Length`, `s[1].Length`: C#'s length of a value a call or an index
   returned (a Lua string has none). */
static void rule_length(struct lint *x, int i)
{
    if (!tok_is(x, i, ".") || !tok_is(x, i + 1, "Length") || tok_is(x, i + 2, "(") || declared(x, "Length"))
        return;
    if (!tok_is(x, i - 1, ")") && !tok_is(x, i - 1, "]"))
        return;
    x->unknown = true;
    x->t[i + 1].seen = true;
    CSHARP(x, "'.Length' is C#; in Lua: #value");
}

/* `name: value` inside a call: a C# named argument (a Lua method call is
   `a:b(`, `a:b"s"` or `a:b{`). */
static void rule_named_argument(struct lint *x, int i)
{
    if (!tok_is(x, i, ":") || !tok_name(x, i - 1) || !(tok_is(x, i - 2, "(") || tok_is(x, i - 2, ",")))
        return;
    if (tok_name(x, i + 1) &&
        (tok_is(x, i + 2, "(") || tok_is(x, i + 2, "{") || (i + 2 < x->n && x->t[i + 2].kind == T_STRING)))
        return;
    x->t[i - 1].repl = x->t[i].repl = "";
    CSHARP(x, "'%.*s:' is a C# named argument; Lua passes arguments by position", (int)x->t[i - 1].n,
           x->t[i - 1].s);
}

/* ----------------------------------------------------------------- check */

/* Writes the text with the replacements applied (gaps kept as written). */
static void rewrite(const struct lint *x, bool block, char *out, size_t size)
{
    size_t k = 0;
    const char *prev = x->src;
    int w = snprintf(out, size, "%s", block ? "@{" : "@(");
    k = w > 0 ? (size_t)w : 0;
    for (int i = 0; i < x->n && k + 1 < size; i++) {
        const struct tok *t = &x->t[i];
        w = snprintf(out + k, size - k, "%.*s%.*s", (int)(t->s - prev), prev,
                     (int)(t->repl ? strlen(t->repl) : t->n), t->repl ? t->repl : t->s);
        if (w > 0)
            k = PT_MIN(k + (size_t)w, size - 1);
        prev = t->s + t->n;
    }
    if (k + 1 < size)
        k += (size_t)PT_MAX(
            0, snprintf(out + k, size - k, "%.*s%s", (int)(x->src + x->len - prev), prev, block ? "}" : ")"));
    if (k + 1 >= size)
        pt_str_utf8_cut(out, size); /* the text did not fit: whole characters, then "…" */
}

bool pt_exprlint_check(const char *src, size_t len, bool block, char *err, size_t errlen)
{
    struct lint x = {.src = src, .len = len};
    if (!tokenize(&x)) {
        free(x.t);
        snprintf(err, errlen, "out of memory");
        return false;
    }
    bool context_ours = declared(&x, "context");
    for (int i = 0; i < x.n; i++) {
        if (!context_ours && tok_is(&x, i, "context") && !tok_is(&x, i - 1, ".") && !tok_is(&x, i - 1, ":"))
            walk_context(&x, i);
        else if ((tok_is(&x, i, ".") || tok_is(&x, i, ":")) && !tok_is(&x, i - 1, "context"))
            csharp_call(&x, i);
        rule_length(&x, i);
        rule_cast(&x, i);
        rule_idiom(&x, i);
        rule_operator(&x, i);
        rule_named_argument(&x, i);
    }
    bool ok = x.flen == 0;
    if (!ok && !x.csharp)
        pt_str_fmt(err, errlen, "%s", x.found);
    else if (!ok && x.unknown)
        pt_str_fmt(err, errlen, "written for APIM (C#), not Lua: %s", x.found);
    else if (!ok) {
        char lua[512];
        rewrite(&x, block, lua, sizeof(lua));
        pt_str_fmt(err, errlen, "written for APIM (C#), not Lua: %s. In Lua: %s", x.found, lua);
    }
    free(x.t);
    return ok;
}
