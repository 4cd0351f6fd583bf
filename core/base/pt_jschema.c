/*
 * pt_jschema -- JSON Schema validation (draft 4, draft 2020-12, OpenAPI 3.0).
 *
 * Compiling walks the schema documents once: every resource ($id) and anchor
 * is registered, every subschema becomes a `struct node` with its keywords
 * decoded (numbers, compiled regular expressions, sorted property tables,
 * resolved $ref targets).  A node is memoized by the json_t it came from, so
 * $ref cycles compile to cycles of pointers.  Validation only reads the
 * compiled nodes and the instance; its state (instance path, dynamic scope,
 * annotations for unevaluated*) lives in the caller's stack frame, so one
 * compiled schema serves any number of threads.
 *
 * `pattern` uses a small backtracking engine for the ECMA-262 subset schemas
 * use (classes, escapes, groups, alternation, greedy and lazy quantifiers,
 * lookahead, back references, \p{L}-style properties approximated), bounded
 * in steps and recursion; simple repeats of one character run iteratively.
 *
 * Depends only on libc and jansson (compiled into core and plugins/lib).
 */
#include "pt_jschema.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------- */
/* UTF-8                                                                     */

static uint32_t u8dec(const unsigned char *s, size_t len, size_t pos, size_t *np)
{
    unsigned char c = s[pos];
    uint32_t cp;
    size_t n;
    if (c < 0x80) {
        *np = pos + 1;
        return c;
    } else if ((c & 0xe0) == 0xc0) {
        cp = c & 0x1f;
        n = 1;
    } else if ((c & 0xf0) == 0xe0) {
        cp = c & 0x0f;
        n = 2;
    } else if ((c & 0xf8) == 0xf0) {
        cp = c & 0x07;
        n = 3;
    } else {
        *np = pos + 1;
        return 0xfffd;
    }
    if (pos + n >= len) {
        /* cut short by the end: the character ends at the first byte that is not a continuation
           byte, as in the loop below, so an ASCII byte after the lead byte stays its own character
           (rx_back relies on this) */
        size_t i = pos + 1;
        while (i < len && (s[i] & 0xc0) == 0x80)
            i++;
        *np = i;
        return 0xfffd;
    }
    for (size_t i = 1; i <= n; i++) {
        if ((s[pos + i] & 0xc0) != 0x80) {
            *np = pos + i;
            return 0xfffd;
        }
        cp = (cp << 6) | (s[pos + i] & 0x3f);
    }
    *np = pos + n + 1;
    return cp;
}

static size_t u8len(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            n++;
    return n;
}

/* ------------------------------------------------------------------------- */
/* Regular expressions (ECMA-262 subset)                                     */

enum {
    RX_CHAR,
    RX_ANY,
    RX_CLASS,
    RX_BOL,
    RX_EOL,
    RX_WB,
    RX_NWB,
    RX_GROUP,
    RX_ALT,
    RX_REPEAT,
    RX_LOOK,
    RX_BACKREF
};
enum {
    CS_DIGIT = 1,
    CS_WORD = 2,
    CS_SPACE = 4,
    CS_LETTER = 8,
    CS_UPPER = 16,
    CS_LOWER = 32,
    CS_NUMBER = 64,
    CS_ANY = 128,
};

struct rx_class {
    uint32_t (*r)[2];
    int nr, cap;
    unsigned sets, nsets; /* sets the class includes; sets whose complement it includes */
    bool neg;
};

struct rx_node {
    int type;
    struct rx_node *next;
    uint32_t ch;
    struct rx_class *cls;
    struct rx_node *child;
    struct rx_node **alts;
    int nalts;
    int min, max; /* max -1: unbounded */
    bool greedy, neg, behind;
    int group;
    char *name;               /* a named group's name, or the name of a \k<name> reference */
    struct rx_node *all_next; /* every node, for freeing */
};

struct rx {
    struct rx_node *seq;
    struct rx_node *all;
    int ngroups;
    bool bol_anchored;
};

struct rx_parser {
    const char *p, *end;
    struct rx *rx;
    const char *err;
    int depth;
    const char *kname; /* the name of the last \k<name> */
    size_t klen;
};

static struct rx_node *rx_new(struct rx_parser *ps, int type)
{
    struct rx_node *n = calloc(1, sizeof(*n));
    if (!n) {
        ps->err = "out of memory";
        return NULL;
    }
    n->type = type;
    n->group = -1;
    n->all_next = ps->rx->all;
    ps->rx->all = n;
    return n;
}

static bool cls_add(struct rx_class *c, uint32_t lo, uint32_t hi)
{
    if (c->nr == c->cap) {
        int nc = c->cap ? c->cap * 2 : 8;
        void *r = realloc(c->r, sizeof(*c->r) * (size_t)nc);
        if (!r)
            return false;
        c->r = r;
        c->cap = nc;
    }
    c->r[c->nr][0] = lo;
    c->r[c->nr][1] = hi;
    c->nr++;
    return true;
}

static const uint32_t letter_ranges[][2] = {
    {'A', 'Z'},       {'a', 'z'},       {0xaa, 0xaa},     {0xb5, 0xb5},       {0xba, 0xba},
    {0xc0, 0xd6},     {0xd8, 0xf6},     {0xf8, 0x2c1},    {0x2c6, 0x2d1},     {0x2e0, 0x2e4},
    {0x370, 0x374},   {0x376, 0x37d},   {0x386, 0x386},   {0x388, 0x3ff},     {0x400, 0x481},
    {0x48a, 0x52f},   {0x531, 0x556},   {0x561, 0x587},   {0x5d0, 0x5ea},     {0x620, 0x64a},
    {0x671, 0x6d3},   {0x904, 0x939},   {0xe01, 0xe30},   {0x10a0, 0x10ff},   {0x1100, 0x11ff},
    {0x1e00, 0x1fbc}, {0x1fc2, 0x1ffc}, {0x2c00, 0x2ce4}, {0x3041, 0x3096},   {0x30a1, 0x30fa},
    {0x3400, 0x4dbf}, {0x4e00, 0x9fff}, {0xa000, 0xa48c}, {0xac00, 0xd7a3},   {0xf900, 0xfaff},
    {0xff21, 0xff3a}, {0xff41, 0xff5a}, {0xff66, 0xffdc}, {0x10000, 0x1fbff}, {0x20000, 0x3134a},
};

static bool is_space_cp(uint32_t c)
{
    return c == ' ' || (c >= 9 && c <= 13) || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
           c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000 || c == 0xfeff;
}

static bool is_word_cp(uint32_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static bool is_letter_cp(uint32_t c)
{
    for (size_t i = 0; i < sizeof(letter_ranges) / sizeof(letter_ranges[0]); i++)
        if (c >= letter_ranges[i][0] && c <= letter_ranges[i][1])
            return !(c == 0xd7 || c == 0xf7);
    return false;
}

static bool is_upper_cp(uint32_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 0xc0 && c <= 0xde && c != 0xd7) || (c >= 0x391 && c <= 0x3a9) ||
           (c >= 0x410 && c <= 0x42f);
}

static bool is_lower_cp(uint32_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 0xdf && c <= 0xff && c != 0xf7) || (c >= 0x3b1 && c <= 0x3c9) ||
           (c >= 0x430 && c <= 0x44f);
}

static bool is_number_cp(uint32_t c)
{
    static const uint32_t nd[] = {0x660,  0x6f0,  0x7c0,  0x966,  0x9e6,  0xa66,  0xae6,  0xb66,  0xbe6,
                                  0xc66,  0xce6,  0xd66,  0xde6,  0xe50,  0xed0,  0xf20,  0x1040, 0x1090,
                                  0x17e0, 0x1810, 0x1946, 0x19d0, 0x1a80, 0x1a90, 0x1b50, 0x1bb0, 0x1c40,
                                  0x1c50, 0xa620, 0xa8d0, 0xa900, 0xa9d0, 0xa9f0, 0xaa50, 0xabf0, 0xff10};
    if (c >= '0' && c <= '9')
        return true;
    for (size_t i = 0; i < sizeof(nd) / sizeof(nd[0]); i++)
        if (c >= nd[i] && c <= nd[i] + 9)
            return true;
    return c == 0xb2 || c == 0xb3 || c == 0xb9 || (c >= 0xbc && c <= 0xbe) || (c >= 0x2160 && c <= 0x2188);
}

static bool set_has(unsigned sets, uint32_t c)
{
    if ((sets & CS_DIGIT) && c >= '0' && c <= '9')
        return true;
    if ((sets & CS_WORD) && is_word_cp(c))
        return true;
    if ((sets & CS_SPACE) && is_space_cp(c))
        return true;
    if ((sets & CS_LETTER) && is_letter_cp(c))
        return true;
    if ((sets & CS_UPPER) && is_upper_cp(c))
        return true;
    if ((sets & CS_LOWER) && is_lower_cp(c))
        return true;
    if ((sets & CS_NUMBER) && is_number_cp(c))
        return true;
    if (sets & CS_ANY)
        return true;
    return false;
}

static bool cls_test(const struct rx_class *c, uint32_t ch)
{
    bool in = false;
    for (int i = 0; i < c->nr && !in; i++)
        if (ch >= c->r[i][0] && ch <= c->r[i][1])
            in = true;
    if (!in && c->sets && set_has(c->sets, ch))
        in = true;
    if (!in && c->nsets) {
        for (unsigned b = 1; b <= CS_NUMBER; b <<= 1)
            if ((c->nsets & b) && !set_has(b, ch)) {
                in = true;
                break;
            }
    }
    return c->neg ? !in : in;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* reads a code point of the pattern (UTF-8) */
static uint32_t rx_getcp(struct rx_parser *ps)
{
    size_t np;
    size_t len = (size_t)(ps->end - ps->p);
    uint32_t c = u8dec((const unsigned char *)ps->p, len, 0, &np);
    ps->p += np;
    return c;
}

/* \p{...}: the set bit, or 0 when unknown */
static unsigned rx_property(struct rx_parser *ps)
{
    if (ps->p >= ps->end || *ps->p != '{') {
        ps->err = "\\p needs {Name}";
        return 0;
    }
    const char *s = ++ps->p;
    while (ps->p < ps->end && *ps->p != '}')
        ps->p++;
    if (ps->p >= ps->end) {
        ps->err = "unterminated \\p{";
        return 0;
    }
    size_t n = (size_t)(ps->p - s);
    ps->p++;
    static const struct {
        const char *name;
        unsigned set;
    } props[] = {
        {"L", CS_LETTER},          {"Letter", CS_LETTER},
        {"Alphabetic", CS_LETTER}, {"Alpha", CS_LETTER},
        {"Lu", CS_UPPER},          {"Uppercase_Letter", CS_UPPER},
        {"Ll", CS_LOWER},          {"Lowercase_Letter", CS_LOWER},
        {"N", CS_NUMBER},          {"Number", CS_NUMBER},
        {"Nd", CS_NUMBER},         {"Decimal_Number", CS_NUMBER},
        {"digit", CS_NUMBER},      {"White_Space", CS_SPACE},
        {"Any", CS_ANY},           {"Uppercase", CS_UPPER},
        {"Lowercase", CS_LOWER},
    };
    for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++)
        if (strlen(props[i].name) == n && memcmp(props[i].name, s, n) == 0)
            return props[i].set;
    ps->err = "unsupported Unicode property";
    return 0;
}

/*
 * An escape after '\'. Returns 1 with *cp for a character, 2 with *set and *nset
 * for a class escape, 3 for \b, 4 for \B, 5 for a back reference (*cp = n).
 */
static int rx_escape(struct rx_parser *ps, bool in_class, uint32_t *cp, unsigned *set, unsigned *nset)
{
    if (ps->p >= ps->end) {
        ps->err = "trailing backslash";
        return 0;
    }
    char c = *ps->p;
    *set = *nset = 0;
    switch (c) {
    case 'd':
    case 'D':
    case 'w':
    case 'W':
    case 's':
    case 'S': {
        unsigned b = (c == 'd' || c == 'D') ? CS_DIGIT : (c == 'w' || c == 'W') ? CS_WORD : CS_SPACE;
        ps->p++;
        if (islower((unsigned char)c))
            *set = b;
        else
            *nset = b;
        return 2;
    }
    case 'p':
    case 'P': {
        ps->p++;
        unsigned b = rx_property(ps);
        if (!b)
            return 0;
        if (c == 'p')
            *set = b;
        else
            *nset = b;
        return 2;
    }
    case 'b':
        ps->p++;
        if (in_class) {
            *cp = 8;
            return 1;
        }
        return 3;
    case 'B':
        ps->p++;
        if (in_class) {
            ps->err = "\\B in a class";
            return 0;
        }
        return 4;
    case 't':
        ps->p++;
        *cp = '\t';
        return 1;
    case 'n':
        ps->p++;
        *cp = '\n';
        return 1;
    case 'r':
        ps->p++;
        *cp = '\r';
        return 1;
    case 'v':
        ps->p++;
        *cp = '\v';
        return 1;
    case 'f':
        ps->p++;
        *cp = '\f';
        return 1;
    case '0':
        ps->p++;
        *cp = 0;
        return 1;
    case 'c':
        ps->p++;
        if (ps->p < ps->end && isalpha((unsigned char)*ps->p)) {
            *cp = (uint32_t)(*ps->p++ % 32);
            return 1;
        }
        ps->err = "bad \\c escape";
        return 0;
    case 'x': {
        ps->p++;
        if (ps->end - ps->p >= 2 && hexval(ps->p[0]) >= 0 && hexval(ps->p[1]) >= 0) {
            *cp = (uint32_t)(hexval(ps->p[0]) * 16 + hexval(ps->p[1]));
            ps->p += 2;
            return 1;
        }
        ps->err = "bad \\x escape";
        return 0;
    }
    case 'u': {
        ps->p++;
        uint32_t v = 0;
        if (ps->p < ps->end && *ps->p == '{') {
            ps->p++;
            int n = 0;
            while (ps->p < ps->end && hexval(*ps->p) >= 0 && n < 7) {
                v = v * 16 + (uint32_t)hexval(*ps->p++);
                n++;
            }
            if (!n || ps->p >= ps->end || *ps->p != '}' || v > 0x10ffff) {
                ps->err = "bad \\u{} escape";
                return 0;
            }
            ps->p++;
        } else {
            if (ps->end - ps->p < 4) {
                ps->err = "bad \\u escape";
                return 0;
            }
            for (int i = 0; i < 4; i++) {
                int h = hexval(ps->p[i]);
                if (h < 0) {
                    ps->err = "bad \\u escape";
                    return 0;
                }
                v = v * 16 + (uint32_t)h;
            }
            ps->p += 4;
            /* a surrogate pair written as two escapes */
            if (v >= 0xd800 && v <= 0xdbff && ps->end - ps->p >= 6 && ps->p[0] == '\\' && ps->p[1] == 'u') {
                uint32_t lo = 0;
                bool ok = true;
                for (int i = 0; i < 4; i++) {
                    int h = hexval(ps->p[2 + i]);
                    if (h < 0)
                        ok = false;
                    else
                        lo = lo * 16 + (uint32_t)h;
                }
                if (ok && lo >= 0xdc00 && lo <= 0xdfff) {
                    v = 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
                    ps->p += 6;
                }
            }
        }
        *cp = v;
        return 1;
    }
    case 'k':
        if (!in_class && ps->p + 1 < ps->end && ps->p[1] == '<') {
            const char *st = ps->p + 2, *e = st;
            while (e < ps->end && *e != '>')
                e++;
            if (e >= ps->end || e == st) {
                ps->err = "bad \\k<name>";
                return 0;
            }
            ps->kname = st;
            ps->klen = (size_t)(e - st);
            ps->p = e + 1;
            return 6;
        }
        ps->err = "unknown escape";
        return 0;
    default:
        if (c >= '1' && c <= '9' && !in_class) {
            int n = 0;
            while (ps->p < ps->end && isdigit((unsigned char)*ps->p) && n < 1000)
                n = n * 10 + (*ps->p++ - '0');
            *cp = (uint32_t)n;
            return 5;
        }
        if (isalnum((unsigned char)c)) {
            ps->err = "unknown escape";
            return 0;
        }
        *cp = rx_getcp(ps);
        return 1;
    }
}

static struct rx_node *rx_parse_alt(struct rx_parser *ps);

static struct rx_node *rx_parse_class(struct rx_parser *ps)
{
    struct rx_node *n = rx_new(ps, RX_CLASS);
    if (!n)
        return NULL;
    n->cls = calloc(1, sizeof(*n->cls));
    if (!n->cls) {
        ps->err = "out of memory";
        return NULL;
    }
    struct rx_class *c = n->cls;
    if (ps->p < ps->end && *ps->p == '^') {
        c->neg = true;
        ps->p++;
    }
    for (;;) {
        if (ps->p >= ps->end) {
            ps->err = "unterminated character class";
            return NULL;
        }
        if (*ps->p == ']') {
            ps->p++;
            return n;
        }
        uint32_t lo;
        unsigned set, nset;
        bool single = true;
        if (*ps->p == '\\') {
            ps->p++;
            int k = rx_escape(ps, true, &lo, &set, &nset);
            if (!k)
                return NULL;
            if (k == 2) {
                c->sets |= set;
                c->nsets |= nset;
                single = false;
            } else if (k != 1) {
                ps->err = "bad escape in class";
                return NULL;
            }
        } else {
            lo = rx_getcp(ps);
        }
        if (!single)
            continue;
        uint32_t hi = lo;
        if (ps->end - ps->p >= 2 && ps->p[0] == '-' && ps->p[1] != ']') {
            ps->p++;
            if (*ps->p == '\\') {
                ps->p++;
                int k = rx_escape(ps, true, &hi, &set, &nset);
                if (k != 1) {
                    if (!ps->err)
                        ps->err = "bad class range";
                    return NULL;
                }
            } else {
                hi = rx_getcp(ps);
            }
            if (hi < lo) {
                ps->err = "class range out of order";
                return NULL;
            }
        }
        if (!cls_add(c, lo, hi)) {
            ps->err = "out of memory";
            return NULL;
        }
    }
}

static bool rx_parse_count(struct rx_parser *ps, int *min, int *max)
{
    /* at '{': "{n}", "{n,}", "{n,m}"; false (and p unchanged) when not a quantifier */
    const char *s = ps->p + 1;
    long a = 0, b;
    int nd = 0;
    while (s < ps->end && isdigit((unsigned char)*s) && a < 100000) {
        a = a * 10 + (*s++ - '0');
        nd++;
    }
    if (!nd || s >= ps->end)
        return false;
    if (*s == '}') {
        b = a;
    } else if (*s == ',') {
        s++;
        if (s < ps->end && *s == '}') {
            b = -1;
        } else {
            b = 0;
            nd = 0;
            while (s < ps->end && isdigit((unsigned char)*s) && b < 100000) {
                b = b * 10 + (*s++ - '0');
                nd++;
            }
            if (!nd || s >= ps->end || *s != '}')
                return false;
        }
    } else {
        return false;
    }
    if (a > 100000 || b > 100000) {
        ps->err = "repeat count too large";
        return false;
    }
    *min = (int)a;
    *max = (int)b;
    ps->p = s + 1;
    return true;
}

/* one sequence: terms until '|' or ')' or the end */
static struct rx_node *rx_parse_seq(struct rx_parser *ps)
{
    struct rx_node *head = NULL, **tail = &head, *last = NULL;
    while (ps->p < ps->end && *ps->p != '|' && *ps->p != ')') {
        struct rx_node *n = NULL;
        char c = *ps->p;
        uint32_t cp;
        unsigned set, nset;
        bool quantifiable = true;
        switch (c) {
        case '^':
            ps->p++;
            n = rx_new(ps, RX_BOL);
            quantifiable = false;
            break;
        case '$':
            ps->p++;
            n = rx_new(ps, RX_EOL);
            quantifiable = false;
            break;
        case '.':
            ps->p++;
            n = rx_new(ps, RX_ANY);
            break;
        case '[':
            ps->p++;
            n = rx_parse_class(ps);
            break;
        case '(': {
            ps->p++;
            int type = RX_GROUP, group = -1;
            bool neg = false, behind = false;
            const char *gname = NULL;
            size_t gnlen = 0;
            if (ps->p < ps->end && *ps->p == '?') {
                ps->p++;
                if (ps->p < ps->end && *ps->p == ':') {
                    ps->p++;
                } else if (ps->p < ps->end && (*ps->p == '=' || *ps->p == '!')) {
                    type = RX_LOOK;
                    neg = *ps->p == '!';
                    ps->p++;
                    quantifiable = false;
                } else if (ps->end - ps->p >= 2 && ps->p[0] == '<' && (ps->p[1] == '=' || ps->p[1] == '!')) {
                    type = RX_LOOK;
                    behind = true;
                    neg = ps->p[1] == '!';
                    ps->p += 2;
                    quantifiable = false;
                } else if (ps->p < ps->end && *ps->p == '<' && ps->p + 1 < ps->end) {
                    ps->p++;
                    gname = ps->p;
                    while (ps->p < ps->end && *ps->p != '>')
                        ps->p++;
                    if (ps->p >= ps->end || ps->p == gname) {
                        ps->err = "unterminated group name";
                        return NULL;
                    }
                    gnlen = (size_t)(ps->p - gname);
                    ps->p++;
                    group = ps->rx->ngroups++;
                } else {
                    ps->err = "unsupported group (inline flags)";
                    return NULL;
                }
            } else {
                group = ps->rx->ngroups++;
            }
            if (++ps->depth > 100) {
                ps->err = "groups nested too deeply";
                return NULL;
            }
            struct rx_node *inner = rx_parse_alt(ps);
            ps->depth--;
            if (ps->err)
                return NULL;
            if (ps->p >= ps->end || *ps->p != ')') {
                ps->err = "missing )";
                return NULL;
            }
            ps->p++;
            n = rx_new(ps, type);
            if (n) {
                n->child = inner;
                n->group = group;
                n->neg = neg;
                n->behind = behind;
                if (gname && !(n->name = strndup(gname, gnlen))) {
                    ps->err = "out of memory";
                    return NULL;
                }
            }
            break;
        }
        case '\\': {
            ps->p++;
            int k = rx_escape(ps, false, &cp, &set, &nset);
            if (!k)
                return NULL;
            if (k == 1) {
                n = rx_new(ps, RX_CHAR);
                if (n)
                    n->ch = cp;
            } else if (k == 2) {
                n = rx_new(ps, RX_CLASS);
                if (n) {
                    n->cls = calloc(1, sizeof(*n->cls));
                    if (!n->cls) {
                        ps->err = "out of memory";
                        return NULL;
                    }
                    n->cls->sets = set;
                    n->cls->nsets = nset;
                }
            } else if (k == 3 || k == 4) {
                n = rx_new(ps, k == 3 ? RX_WB : RX_NWB);
                quantifiable = false;
            } else if (k == 6) {
                n = rx_new(ps, RX_BACKREF);
                if (n) {
                    n->group = -2; /* resolved by name once every group is known */
                    n->name = strndup(ps->kname, ps->klen);
                    if (!n->name) {
                        ps->err = "out of memory";
                        return NULL;
                    }
                }
            } else {
                n = rx_new(ps, RX_BACKREF);
                if (n)
                    n->group = (int)cp - 1;
            }
            break;
        }
        case '*':
        case '+':
        case '?':
            ps->err = "nothing to repeat";
            return NULL;
        case '{': {
            int a, b;
            if (rx_parse_count(ps, &a, &b)) {
                ps->err = "nothing to repeat";
                return NULL;
            }
            if (ps->err)
                return NULL;
            ps->p++;
            n = rx_new(ps, RX_CHAR);
            if (n)
                n->ch = '{';
            break;
        }
        default:
            cp = rx_getcp(ps);
            n = rx_new(ps, RX_CHAR);
            if (n)
                n->ch = cp;
            break;
        }
        if (!n)
            return NULL;
        /* quantifier */
        if (ps->p < ps->end) {
            int min = -2, max = -1;
            if (*ps->p == '*') {
                min = 0;
                ps->p++;
            } else if (*ps->p == '+') {
                min = 1;
                ps->p++;
            } else if (*ps->p == '?') {
                min = 0;
                max = 1;
                ps->p++;
            } else if (*ps->p == '{') {
                int a, b;
                if (rx_parse_count(ps, &a, &b)) {
                    min = a;
                    max = b;
                    if (max >= 0 && max < min) {
                        ps->err = "numbers out of order in {} quantifier";
                        return NULL;
                    }
                } else if (ps->err) {
                    return NULL;
                }
            }
            if (min != -2) {
                if (!quantifiable && n->type != RX_LOOK) {
                    ps->err = "nothing to repeat";
                    return NULL;
                }
                struct rx_node *r = rx_new(ps, RX_REPEAT);
                if (!r)
                    return NULL;
                r->child = n;
                r->min = min;
                r->max = max;
                r->greedy = true;
                if (ps->p < ps->end && *ps->p == '?') {
                    r->greedy = false;
                    ps->p++;
                }
                n = r;
            }
        }
        *tail = n;
        tail = &n->next;
        last = n;
    }
    (void)last;
    return head;
}

static struct rx_node *rx_parse_alt(struct rx_parser *ps)
{
    struct rx_node *first = rx_parse_seq(ps);
    if (ps->err)
        return NULL;
    if (ps->p >= ps->end || *ps->p != '|')
        return first;
    struct rx_node *alt = rx_new(ps, RX_ALT);
    if (!alt)
        return NULL;
    int cap = 4;
    alt->alts = malloc(sizeof(*alt->alts) * (size_t)cap);
    if (!alt->alts) {
        ps->err = "out of memory";
        return NULL;
    }
    alt->alts[alt->nalts++] = first;
    while (ps->p < ps->end && *ps->p == '|') {
        ps->p++;
        struct rx_node *s = rx_parse_seq(ps);
        if (ps->err)
            return NULL;
        if (alt->nalts == cap) {
            cap *= 2;
            void *a = realloc(alt->alts, sizeof(*alt->alts) * (size_t)cap);
            if (!a) {
                ps->err = "out of memory";
                return NULL;
            }
            alt->alts = a;
        }
        alt->alts[alt->nalts++] = s;
    }
    return alt;
}

static void rx_free(struct rx *rx)
{
    if (!rx)
        return;
    struct rx_node *n = rx->all;
    while (n) {
        struct rx_node *nx = n->all_next;
        if (n->cls) {
            free(n->cls->r);
            free(n->cls);
        }
        free(n->alts);
        free(n->name);
        free(n);
        n = nx;
    }
    free(rx);
}

static struct rx *rx_compile(const char *pat, size_t len, const char **err)
{
    struct rx *rx = calloc(1, sizeof(*rx));
    if (!rx) {
        *err = "out of memory";
        return NULL;
    }
    struct rx_parser ps = {.p = pat, .end = pat + len, .rx = rx};
    rx->seq = rx_parse_alt(&ps);
    if (!ps.err && ps.p < ps.end)
        ps.err = "unmatched )";
    if (ps.err) {
        *err = ps.err;
        rx_free(rx);
        return NULL;
    }
    for (struct rx_node *n = rx->all; n; n = n->all_next) {
        if (n->type != RX_BACKREF || n->group != -2)
            continue;
        for (struct rx_node *g = rx->all; g; g = g->all_next)
            if (g->type == RX_GROUP && g->name && strcmp(g->name, n->name) == 0)
                n->group = g->group;
    }
    for (struct rx_node *n = rx->all; n; n = n->all_next)
        if (n->type == RX_BACKREF && (n->group < 0 || n->group >= rx->ngroups)) {
            *err = "back reference to a missing group";
            rx_free(rx);
            return NULL;
        }
    rx->bol_anchored = rx->seq && rx->seq->type == RX_BOL;
    return rx;
}

/* matching */

#define RX_MAX_STEPS 1000000
#define RX_MAX_DEPTH 2000

enum { RK_SEQ, RK_REP, RK_GROUP, RK_ENDAT };

struct rk {
    int kind;
    const struct rx_node *n; /* RK_SEQ: where to go on; RK_REP: the repeat; RK_GROUP: the group */
    int count;
    size_t start;
    const struct rk *next;
};

struct rxm {
    const unsigned char *s;
    size_t len;
    size_t *caps; /* 2 per group; SIZE_MAX unset */
    long steps;
    int depth;
    bool err;
};

static int rx_m(struct rxm *m, const struct rx_node *n, size_t pos, const struct rk *k);

static bool rx_one(struct rxm *m, const struct rx_node *n, size_t pos, size_t *np)
{
    if (pos >= m->len)
        return false;
    uint32_t c;
    if (m->s[pos] < 0x80) {
        c = m->s[pos];
        *np = pos + 1;
    } else {
        c = u8dec(m->s, m->len, pos, np);
    }
    switch (n->type) {
    case RX_CHAR:
        return c == n->ch;
    case RX_ANY:
        return c != '\n' && c != '\r' && c != 0x2028 && c != 0x2029;
    case RX_CLASS:
        return cls_test(n->cls, c);
    }
    return false;
}

/*
 * The start of the character that ends at pos, as rx_one() read it going
 * forward from `from` (pos > from).  Every byte that is not a continuation
 * byte starts a character (u8dec() never takes one into another's), so the
 * nearest such byte q starts the last character when decoding from q ends
 * at pos; otherwise the last character is a stray continuation byte alone.
 * Invalid UTF-8 is read forward one piece at a time, so stepping back over
 * every continuation byte could pass `from` and even the subject's start.
 */
static size_t rx_back(struct rxm *m, size_t from, size_t pos)
{
    size_t q = pos - 1;
    while (q > from && pos - q < 4 && (m->s[q] & 0xc0) == 0x80)
        q--;
    if ((m->s[q] & 0xc0) != 0x80) {
        size_t np = q + 1;
        if (m->s[q] >= 0x80)
            (void)u8dec(m->s, m->len, q, &np);
        if (np == pos)
            return q;
    }
    return pos - 1;
}

static int rx_rep(struct rxm *m, const struct rx_node *r, int count, size_t pos, const struct rk *k)
{
    const struct rx_node *c = r->child;
    if (count == 0 && !c->next && (c->type == RX_CHAR || c->type == RX_ANY || c->type == RX_CLASS)) {
        /* one character repeated: iterate, no recursion per character */
        size_t p = pos, np;
        int n = 0;
        if (r->greedy) {
            while ((r->max < 0 || n < r->max) && rx_one(m, c, p, &np)) {
                p = np;
                n++;
                if (++m->steps > RX_MAX_STEPS) {
                    m->err = true;
                    return 0;
                }
            }
            if (n < r->min)
                return 0;
            for (;;) {
                if (rx_m(m, r->next, p, k))
                    return 1;
                if (m->err || n == r->min)
                    return 0;
                p = rx_back(m, pos, p);
                n--;
            }
        }
        while (n < r->min) {
            if (!rx_one(m, c, p, &np))
                return 0;
            p = np;
            n++;
        }
        for (;;) {
            if (rx_m(m, r->next, p, k))
                return 1;
            if (m->err || (r->max >= 0 && n >= r->max) || !rx_one(m, c, p, &np))
                return 0;
            p = np;
            n++;
        }
    }
    struct rk f = {.kind = RK_REP, .n = r, .count = count + 1, .start = pos, .next = k};
    if (count < r->min)
        return rx_m(m, c, pos, &f);
    bool more = r->max < 0 || count < r->max;
    if (r->greedy) {
        if (more && rx_m(m, c, pos, &f))
            return 1;
        if (m->err)
            return 0;
        return rx_m(m, r->next, pos, k);
    }
    if (rx_m(m, r->next, pos, k))
        return 1;
    if (m->err || !more)
        return 0;
    return rx_m(m, c, pos, &f);
}

static int rx_m(struct rxm *m, const struct rx_node *n, size_t pos, const struct rk *k)
{
    if (++m->depth > RX_MAX_DEPTH) {
        m->err = true;
        m->depth--;
        return 0;
    }
    int ret = 0;
    for (;;) {
        if (++m->steps > RX_MAX_STEPS) {
            m->err = true;
            break;
        }
        if (!n) {
            if (!k) {
                ret = 1;
                break;
            }
            if (k->kind == RK_SEQ) {
                n = k->n;
                k = k->next;
                continue;
            }
            if (k->kind == RK_ENDAT) { /* a lookbehind's body must end where it started looking */
                ret = pos == k->start;
                break;
            }
            if (k->kind == RK_GROUP) {
                int g = k->n->group;
                size_t old = m->caps[2 * g + 1], olds = m->caps[2 * g];
                m->caps[2 * g] = k->start;
                m->caps[2 * g + 1] = pos;
                ret = rx_m(m, k->n->next, pos, k->next);
                if (!ret) {
                    m->caps[2 * g] = olds;
                    m->caps[2 * g + 1] = old;
                }
                break;
            }
            /* RK_REP: one more iteration done */
            if (pos == k->start && k->count > k->n->min)
                break; /* an empty iteration beyond the minimum fails */
            ret = rx_rep(m, k->n, k->count, pos, k->next);
            break;
        }
        size_t np;
        switch (n->type) {
        case RX_CHAR:
        case RX_ANY:
        case RX_CLASS:
            if (!rx_one(m, n, pos, &np))
                goto out;
            pos = np;
            n = n->next;
            continue;
        case RX_BOL:
            if (pos != 0)
                goto out;
            n = n->next;
            continue;
        case RX_EOL:
            if (pos != m->len)
                goto out;
            n = n->next;
            continue;
        case RX_WB:
        case RX_NWB: {
            bool a = pos > 0 && is_word_cp(m->s[pos - 1]);
            bool b = pos < m->len && is_word_cp(m->s[pos]);
            if ((a != b) != (n->type == RX_WB))
                goto out;
            n = n->next;
            continue;
        }
        case RX_BACKREF: {
            size_t s = m->caps[2 * n->group], e = m->caps[2 * n->group + 1];
            if (s != SIZE_MAX && e != SIZE_MAX && e >= s) {
                size_t l = e - s;
                if (pos + l > m->len || memcmp(m->s + s, m->s + pos, l) != 0)
                    goto out;
                pos += l;
            }
            n = n->next;
            continue;
        }
        case RX_GROUP: {
            if (n->group < 0) {
                struct rk f = {.kind = RK_SEQ, .n = n->next, .next = k};
                ret = rx_m(m, n->child, pos, &f);
            } else {
                struct rk f = {.kind = RK_GROUP, .n = n, .start = pos, .next = k};
                ret = rx_m(m, n->child, pos, &f);
            }
            goto out;
        }
        case RX_ALT: {
            struct rk f = {.kind = RK_SEQ, .n = n->next, .next = k};
            for (int i = 0; i < n->nalts; i++) {
                if (rx_m(m, n->alts[i], pos, &f)) {
                    ret = 1;
                    break;
                }
                if (m->err)
                    break;
            }
            goto out;
        }
        case RX_REPEAT:
            ret = rx_rep(m, n, 0, pos, k);
            goto out;
        case RX_LOOK: {
            int r = 0;
            if (n->behind) {
                struct rk f = {.kind = RK_ENDAT, .start = pos};
                for (size_t st = pos + 1; st-- > 0 && !r && !m->err;) {
                    if (st < m->len && (m->s[st] & 0xc0) == 0x80)
                        continue;
                    r = rx_m(m, n->child, st, &f);
                }
            } else {
                r = rx_m(m, n->child, pos, NULL);
            }
            if (m->err)
                goto out;
            if (r == n->neg)
                goto out;
            n = n->next;
            continue;
        }
        }
    }
out:
    m->depth--;
    return ret;
}

/* 1 found, 0 not, -1 out of steps */
static int rx_search(const struct rx *rx, const char *s, size_t len)
{
    size_t capsbuf[32];
    size_t *caps = capsbuf;
    size_t nc = (size_t)rx->ngroups * 2;
    if (nc > 32) {
        caps = malloc(nc * sizeof(*caps));
        if (!caps)
            return -1;
    }
    struct rxm m = {.s = (const unsigned char *)s, .len = len, .caps = caps};
    int ret = 0;
    for (size_t start = 0; start <= len;) {
        for (size_t i = 0; i < nc; i++)
            caps[i] = SIZE_MAX;
        if (rx_m(&m, rx->seq, start, NULL)) {
            ret = 1;
            break;
        }
        if (m.err) {
            ret = -1;
            break;
        }
        if (rx->bol_anchored || start == len)
            break;
        size_t np;
        (void)u8dec(m.s, len, start, &np);
        start = np;
    }
    if (caps != capsbuf)
        free(caps);
    return ret;
}

int pt_jschema_regex_test(const char *pattern, const char *subject, size_t len, char *err, size_t errlen)
{
    const char *e = NULL;
    struct rx *rx = rx_compile(pattern, strlen(pattern), &e);
    if (!rx) {
        if (err && errlen)
            snprintf(err, errlen, "%s", e);
        return -1;
    }
    int r = rx_search(rx, subject, len);
    if (r < 0 && err && errlen)
        snprintf(err, errlen, "the match ran out of steps");
    rx_free(rx);
    return r;
}

/* ------------------------------------------------------------------------- */
/* URIs (RFC 3986 reference resolution)                                      */

struct uri {
    const char *scheme, *auth, *path, *query, *frag;
    size_t sl, al, pl, ql, fl;
    bool has_scheme, has_auth, has_query, has_frag;
};

static void uri_parse(const char *s, struct uri *u)
{
    memset(u, 0, sizeof(*u));
    const char *p = s;
    if (isalpha((unsigned char)*p)) {
        const char *q = p;
        while (isalnum((unsigned char)*q) || *q == '+' || *q == '-' || *q == '.')
            q++;
        if (*q == ':') {
            u->has_scheme = true;
            u->scheme = p;
            u->sl = (size_t)(q - p);
            p = q + 1;
        }
    }
    if (p[0] == '/' && p[1] == '/') {
        p += 2;
        u->has_auth = true;
        u->auth = p;
        while (*p && *p != '/' && *p != '?' && *p != '#')
            p++;
        u->al = (size_t)(p - u->auth);
    }
    u->path = p;
    while (*p && *p != '?' && *p != '#')
        p++;
    u->pl = (size_t)(p - u->path);
    if (*p == '?') {
        u->has_query = true;
        u->query = ++p;
        while (*p && *p != '#')
            p++;
        u->ql = (size_t)(p - u->query);
    }
    if (*p == '#') {
        u->has_frag = true;
        u->frag = p + 1;
        u->fl = strlen(p + 1);
    }
}

/* removes "." and ".." segments from path (in place, NUL-terminated) */
static void uri_remove_dots(char *path)
{
    char *in = path, *out = path;
    while (*in) {
        if (strncmp(in, "../", 3) == 0) {
            in += 3;
        } else if (strncmp(in, "./", 2) == 0) {
            in += 2;
        } else if (strncmp(in, "/./", 3) == 0) {
            in += 2;
        } else if (strcmp(in, "/.") == 0) {
            in[1] = '\0';
        } else if (strncmp(in, "/../", 4) == 0 || strcmp(in, "/..") == 0) {
            if (in[3] == '\0')
                in[2] = '/', in += 2;
            else
                in += 3;
            while (out > path && out[-1] != '/')
                out--;
            if (out > path)
                out--;
        } else if (strcmp(in, ".") == 0 || strcmp(in, "..") == 0) {
            in += strlen(in);
        } else {
            if (*in == '/')
                *out++ = *in++;
            while (*in && *in != '/')
                *out++ = *in++;
        }
    }
    *out = '\0';
}

static char *uri_resolve(const char *base, const char *ref)
{
    struct uri b, r;
    uri_parse(base, &b);
    uri_parse(ref, &r);
    size_t cap = strlen(base) + strlen(ref) + 8;
    char *out = malloc(cap), *path = malloc(cap);
    if (!out || !path) {
        free(out);
        free(path);
        return NULL;
    }
    const struct uri *sa; /* where scheme and authority come from */
    const char *q = NULL;
    size_t ql = 0;
    bool hq = false;
    path[0] = '\0';
    if (r.has_scheme) {
        sa = &r;
        memcpy(path, r.path, r.pl);
        path[r.pl] = '\0';
        uri_remove_dots(path);
        hq = r.has_query, q = r.query, ql = r.ql;
    } else if (r.has_auth) {
        sa = &r;
        memcpy(path, r.path, r.pl);
        path[r.pl] = '\0';
        uri_remove_dots(path);
        hq = r.has_query, q = r.query, ql = r.ql;
    } else {
        sa = &b;
        if (r.pl == 0) {
            memcpy(path, b.path, b.pl);
            path[b.pl] = '\0';
            if (r.has_query)
                hq = true, q = r.query, ql = r.ql;
            else
                hq = b.has_query, q = b.query, ql = b.ql;
        } else {
            if (r.path[0] == '/') {
                memcpy(path, r.path, r.pl);
                path[r.pl] = '\0';
            } else {
                size_t n = 0;
                if (b.has_auth && b.pl == 0) {
                    path[n++] = '/';
                } else {
                    const char *slash = NULL;
                    for (size_t i = 0; i < b.pl; i++)
                        if (b.path[i] == '/')
                            slash = b.path + i;
                    if (slash) {
                        n = (size_t)(slash - b.path) + 1;
                        memcpy(path, b.path, n);
                    }
                }
                memcpy(path + n, r.path, r.pl);
                path[n + r.pl] = '\0';
            }
            uri_remove_dots(path);
            hq = r.has_query, q = r.query, ql = r.ql;
        }
    }
    size_t n = 0;
    if (sa == &r ? r.has_scheme : b.has_scheme) {
        const struct uri *ss = r.has_scheme ? &r : &b;
        memcpy(out + n, ss->scheme, ss->sl);
        n += ss->sl;
        out[n++] = ':';
    }
    if (sa->has_auth) {
        out[n++] = '/';
        out[n++] = '/';
        memcpy(out + n, sa->auth, sa->al);
        n += sa->al;
    }
    size_t pl = strlen(path);
    memcpy(out + n, path, pl);
    n += pl;
    if (hq) {
        out[n++] = '?';
        memcpy(out + n, q, ql);
        n += ql;
    }
    if (r.has_frag) {
        out[n++] = '#';
        memcpy(out + n, r.frag, r.fl);
        n += r.fl;
    }
    out[n] = '\0';
    free(path);
    return out;
}

/* ------------------------------------------------------------------------- */
/* Compiled schemas                                                          */

enum { T_NULL = 1, T_BOOL = 2, T_OBJ = 4, T_ARR = 8, T_NUM = 16, T_STR = 32, T_INT = 64 };

enum {
    F_NONE,
    F_DATETIME,
    F_DATE,
    F_TIME,
    F_EMAIL,
    F_IDNEMAIL,
    F_HOSTNAME,
    F_IPV4,
    F_IPV6,
    F_URI,
    F_URIREF,
    F_UUID,
    F_REGEX,
    F_BYTE,
    F_INT32,
    F_INT64,
    F_JSONPTR,
    F_DURATION,
};

struct num {
    double d;
    json_int_t i;
    bool is_int, set;
};

struct node;
struct sprop {
    const char *name;
    struct node *s;
};
struct spat {
    struct rx *rx;
    const char *src;
    struct node *s;
};
struct sdepreq {
    const char *name;
    const char **req;
    size_t n;
};

struct node {
    bool is_bool, bval;
    bool nullable;
    unsigned types;
    const json_t *enum_, *const_;
    struct num max, min, xmax, xmin, mult;
    long long maxlen, minlen, maxitems, minitems, maxprops, minprops, mincontains, maxcontains;
    bool unique;
    struct rx *pattern;
    const char *pattern_src;
    struct node **prefix;
    size_t nprefix;
    struct node *items; /* the items after prefix */
    bool items_legacy;  /* additionalItems (draft 4 tuple form) */
    struct node *contains;
    struct sprop *props;
    size_t nprops;
    struct spat *pats;
    size_t npats;
    struct node *addl;
    struct node *pnames;
    const char **req;
    size_t nreq;
    struct sdepreq *depreq;
    size_t ndepreq;
    struct sprop *depsch;
    size_t ndepsch;
    struct node **allof, **anyof, **oneof;
    size_t nall, nany, none;
    struct node *not_, *if_, *then_, *else_;
    struct node *uprops, *uitems;
    struct node *ref;
    struct node *dynref;
    const char *dynname;
    bool dynbook;
    int format;
    const char *format_name;
    int resource;
    bool implicit_noadd;
    bool needs_ann;
    struct node *all_next;
};

struct dyn_anchor {
    char *name;
    const json_t *js;
    struct node *node;
};

struct resource {
    char *uri;
    const json_t *root;
    struct dyn_anchor *dyn;
    size_t ndyn;
};

struct pt_jschema {
    struct node *root;
    struct node *all;
    unsigned flags;
    struct resource *res;
    size_t nres;
    json_t **held;
    size_t nheld;
};

struct reg {
    char *uri;
    const json_t *js;
    bool is_resource;
};

struct ment {
    const json_t *key;
    char *base;
    int res;
    struct node *node;
};

struct comp {
    struct pt_jschema *s;
    unsigned flags;
    bool draft4;
    pt_jschema_loader loader;
    void *ud;
    char *err;
    size_t errlen;
    bool failed;
    bool no_validation; /* the meta-schema leaves out the validation vocabulary */
    struct reg *reg;
    size_t nreg, capreg;
    struct ment *map;
    size_t mapcap, mapn;
    int depth;
};

static void cfail(struct comp *c, const char *fmt, ...)
{
    if (c->failed)
        return;
    c->failed = true;
    if (c->err && c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->errlen, fmt, ap);
        va_end(ap);
    }
}

static size_t ptr_hash(const void *p)
{
    uintptr_t x = (uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static struct ment *map_get(struct comp *c, const json_t *k)
{
    if (!c->mapcap)
        return NULL;
    size_t m = c->mapcap - 1;
    for (size_t i = ptr_hash(k) & m;; i = (i + 1) & m) {
        if (!c->map[i].key)
            return NULL;
        if (c->map[i].key == k)
            return &c->map[i];
    }
}

static struct ment *map_put(struct comp *c, const json_t *k)
{
    if ((c->mapn + 1) * 2 > c->mapcap) {
        size_t nc = c->mapcap ? c->mapcap * 2 : 64;
        struct ment *nm = calloc(nc, sizeof(*nm));
        if (!nm)
            return NULL;
        for (size_t i = 0; i < c->mapcap; i++)
            if (c->map[i].key) {
                size_t j = ptr_hash(c->map[i].key) & (nc - 1);
                while (nm[j].key)
                    j = (j + 1) & (nc - 1);
                nm[j] = c->map[i];
            }
        free(c->map);
        c->map = nm;
        c->mapcap = nc;
    }
    size_t m = c->mapcap - 1;
    size_t i = ptr_hash(k) & m;
    while (c->map[i].key) {
        if (c->map[i].key == k)
            return &c->map[i];
        i = (i + 1) & m;
    }
    c->map[i].key = k;
    c->map[i].res = -1;
    c->mapn++;
    return &c->map[i];
}

static bool reg_add(struct comp *c, const char *uri, const json_t *js, bool is_resource)
{
    for (size_t i = 0; i < c->nreg; i++)
        if (strcmp(c->reg[i].uri, uri) == 0)
            return true; /* the first wins */
    if (c->nreg == c->capreg) {
        size_t nc = c->capreg ? c->capreg * 2 : 16;
        void *r = realloc(c->reg, nc * sizeof(*c->reg));
        if (!r)
            return false;
        c->reg = r;
        c->capreg = nc;
    }
    c->reg[c->nreg].uri = strdup(uri);
    if (!c->reg[c->nreg].uri)
        return false;
    c->reg[c->nreg].js = js;
    c->reg[c->nreg].is_resource = is_resource;
    c->nreg++;
    return true;
}

static const json_t *reg_find(struct comp *c, const char *uri)
{
    for (size_t i = 0; i < c->nreg; i++)
        if (strcmp(c->reg[i].uri, uri) == 0)
            return c->reg[i].js;
    return NULL;
}

static int res_add(struct comp *c, const char *uri, const json_t *root)
{
    struct pt_jschema *s = c->s;
    void *r = realloc(s->res, (s->nres + 1) * sizeof(*s->res));
    if (!r)
        return -1;
    s->res = r;
    memset(&s->res[s->nres], 0, sizeof(s->res[0]));
    s->res[s->nres].uri = strdup(uri);
    s->res[s->nres].root = root;
    return (int)s->nres++;
}

static char *strip_frag(const char *uri)
{
    char *u = strdup(uri);
    if (u) {
        char *h = strchr(u, '#');
        if (h)
            *h = '\0';
    }
    return u;
}

typedef void (*sub_fn)(struct comp *c, const json_t *sub, void *arg);

static bool is_schema_value(const json_t *v)
{
    return json_is_object(v) || json_is_boolean(v);
}

/* calls fn on every subschema that the keywords this validator knows hold */
static void for_each_sub(struct comp *c, const json_t *js, sub_fn fn, void *arg)
{
    static const char *const maps[] = {"properties",  "patternProperties", "$defs",
                                       "definitions", "dependentSchemas",  "dependencies"};
    static const char *const arrays[] = {"allOf", "anyOf", "oneOf", "prefixItems", "items"};
    static const char *const singles[] = {"items",
                                          "additionalItems",
                                          "additionalProperties",
                                          "contains",
                                          "propertyNames",
                                          "not",
                                          "if",
                                          "then",
                                          "else",
                                          "unevaluatedItems",
                                          "unevaluatedProperties",
                                          "contentSchema"};
    for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]) && !c->failed; i++) {
        const json_t *m = json_object_get(js, maps[i]);
        const char *k;
        const json_t *v;
        if (json_is_object(m))
            json_object_foreach((json_t *)m, k, v) if (is_schema_value(v)) fn(c, v, arg);
    }
    for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]) && !c->failed; i++) {
        const json_t *a = json_object_get(js, arrays[i]);
        size_t j;
        const json_t *v;
        if (json_is_array(a))
            json_array_foreach(a, j, v) if (is_schema_value(v)) fn(c, v, arg);
    }
    for (size_t i = 0; i < sizeof(singles) / sizeof(singles[0]) && !c->failed; i++) {
        const json_t *v = json_object_get(js, singles[i]);
        if (is_schema_value(v))
            fn(c, v, arg);
    }
}

struct scan_arg {
    const char *base;
    int res;
};

static void scan(struct comp *c, const json_t *js, const char *base, int res);

static void scan_sub(struct comp *c, const json_t *sub, void *arg)
{
    struct scan_arg *a = arg;
    scan(c, sub, a->base, a->res);
}

static void scan(struct comp *c, const json_t *js, const char *base, int res)
{
    if (c->failed || !is_schema_value(js))
        return;
    if (json_is_boolean(js)) {
        struct ment *e = map_get(c, js);
        if (!e) {
            e = map_put(c, js);
            if (!e)
                return cfail(c, "out of memory");
            e->base = strdup(base);
            e->res = res;
        }
        return;
    }
    if (map_get(c, js))
        return;
    if (++c->depth > 200) {
        cfail(c, "the schema is nested too deeply");
        c->depth--;
        return;
    }
    char *nb = NULL;
    const char *idk = c->draft4 ? "id" : "$id";
    const json_t *id = json_object_get(js, idk);
    if (c->draft4 && json_object_get(js, "$ref"))
        id = NULL;
    if (json_is_string(id)) {
        char *abs = uri_resolve(base, json_string_value(id));
        if (!abs)
            return cfail(c, "out of memory");
        const char *h = strchr(abs, '#');
        if (c->draft4 && h && h[1] && json_string_value(id)[0] == '#') {
            reg_add(c, abs, js, false); /* draft 4 location-independent identifier */
            free(abs);
        } else {
            nb = strip_frag(abs);
            free(abs);
            if (!nb)
                return cfail(c, "out of memory");
            int r = res_add(c, nb, js);
            if (r < 0 || !reg_add(c, nb, js, true)) {
                free(nb);
                return cfail(c, "out of memory");
            }
            res = r;
            base = nb;
        }
    }
    if (!c->draft4) {
        const json_t *an = json_object_get(js, "$anchor");
        const json_t *dan = json_object_get(js, "$dynamicAnchor");
        for (int i = 0; i < 2; i++) {
            const json_t *a = i ? dan : an;
            if (!json_is_string(a))
                continue;
            size_t n = strlen(base) + strlen(json_string_value(a)) + 2;
            char *u = malloc(n);
            if (!u)
                return cfail(c, "out of memory");
            snprintf(u, n, "%s#%s", base, json_string_value(a));
            reg_add(c, u, js, false);
            free(u);
            if (i && res >= 0) {
                struct resource *r = &c->s->res[res];
                void *d = realloc(r->dyn, (r->ndyn + 1) * sizeof(*r->dyn));
                if (!d)
                    return cfail(c, "out of memory");
                r->dyn = d;
                r->dyn[r->ndyn].name = strdup(json_string_value(a));
                r->dyn[r->ndyn].js = js;
                r->dyn[r->ndyn].node = NULL;
                r->ndyn++;
            }
        }
    }
    struct ment *e = map_put(c, js);
    if (!e) {
        free(nb);
        return cfail(c, "out of memory");
    }
    e->base = strdup(base);
    e->res = res;
    struct scan_arg a = {base, res};
    for_each_sub(c, js, scan_sub, &a);
    free(nb);
    c->depth--;
}

/* a whole document at uri */
static void scan_doc(struct comp *c, const json_t *doc, const char *uri)
{
    int r = res_add(c, uri, doc);
    if (r < 0 || !reg_add(c, uri, doc, true))
        return cfail(c, "out of memory");
    scan(c, doc, uri, r);
}

static bool pct_decode(const char *in, char *out)
{
    while (*in) {
        if (*in == '%') {
            int h = hexval(in[1]), l = h >= 0 ? hexval(in[2]) : -1;
            if (h < 0 || l < 0)
                return false;
            *out++ = (char)(h * 16 + l);
            in += 3;
        } else {
            *out++ = *in++;
        }
    }
    *out = '\0';
    return true;
}

/* the json a $ref names, scanned; NULL when it does not resolve */
static const json_t *resolve_ref(struct comp *c, const char *base, const char *ref)
{
    char *abs = uri_resolve(base, ref);
    if (!abs) {
        cfail(c, "out of memory");
        return NULL;
    }
    const json_t *t = NULL;
    char *h = strchr(abs, '#');
    char *frag = h ? h + 1 : NULL;
    bool anchor = frag && *frag && *frag != '/';
    if (anchor && (t = reg_find(c, abs))) {
        free(abs);
        return t;
    }
    if (h)
        *h = '\0';
    const json_t *doc = reg_find(c, abs);
    if (!doc && c->loader) {
        json_t *l = c->loader(abs, c->ud);
        if (l) {
            void *hp = realloc(c->s->held, (c->s->nheld + 1) * sizeof(*c->s->held));
            if (!hp) {
                json_decref(l);
                free(abs);
                cfail(c, "out of memory");
                return NULL;
            }
            c->s->held = hp;
            c->s->held[c->s->nheld++] = l;
            scan_doc(c, l, abs);
            doc = l;
        }
    }
    if (anchor) {
        /* an anchor in a document loaded just now */
        if (doc) {
            *h = '#';
            t = reg_find(c, abs);
        }
        free(abs);
        return t;
    }
    if (!doc || !frag || !*frag) {
        free(abs);
        return doc;
    }
    /* a JSON pointer from the document */
    char *dec = malloc(strlen(frag) + 1);
    if (!dec || !pct_decode(frag, dec)) {
        free(dec);
        free(abs);
        return NULL;
    }
    const json_t *cur = doc;
    struct ment *e = map_get(c, doc);
    const char *cbase = e && e->base ? e->base : abs;
    int cres = e ? e->res : -1;
    char *p = dec + 1;
    char *tok = malloc(strlen(dec) + 1);
    bool ok = tok != NULL;
    while (ok && cur) {
        size_t n = 0;
        while (*p && *p != '/') {
            if (p[0] == '~' && p[1] == '0')
                tok[n++] = '~', p += 2;
            else if (p[0] == '~' && p[1] == '1')
                tok[n++] = '/', p += 2;
            else
                tok[n++] = *p++;
        }
        tok[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            char *end;
            errno = 0;
            unsigned long ix = strtoul(tok, &end, 10);
            cur = (*tok && !*end && !errno) ? json_array_get(cur, ix) : NULL;
        } else {
            cur = NULL;
        }
        if (cur) {
            struct ment *ce = map_get(c, cur);
            if (ce && ce->base && !json_is_boolean(cur)) {
                cbase = ce->base;
                cres = ce->res;
            }
        }
        if (!*p)
            break;
        p++;
    }
    if (ok && cur && !map_get(c, cur)) {
        char *b = strdup(cbase);
        if (b) {
            scan(c, cur, b, cres);
            free(b);
        }
    }
    free(tok);
    free(dec);
    free(abs);
    return cur;
}

static struct node *compile_node(struct comp *c, const json_t *js);

static bool get_num(const json_t *v, struct num *n)
{
    if (!json_is_number(v))
        return false;
    n->set = true;
    n->is_int = json_is_integer(v);
    n->i = n->is_int ? json_integer_value(v) : 0;
    n->d = json_number_value(v);
    return true;
}

static long long get_count(struct comp *c, const json_t *js, const char *k)
{
    const json_t *v = json_object_get(js, k);
    if (!v)
        return -1;
    if (json_is_integer(v) && json_integer_value(v) >= 0)
        return (long long)json_integer_value(v);
    if (json_is_real(v) && json_real_value(v) >= 0 && json_real_value(v) == floor(json_real_value(v)) &&
        json_real_value(v) < 9e18)
        return (long long)json_real_value(v);
    cfail(c, "'%s' must be a non-negative integer", k);
    return -1;
}

static struct node *compile_sub(struct comp *c, const json_t *v, const char *k)
{
    if (!is_schema_value(v)) {
        cfail(c, "'%s' must be a schema (an object or a boolean)", k);
        return NULL;
    }
    return compile_node(c, v);
}

static int cmp_prop(const void *a, const void *b)
{
    return strcmp(((const struct sprop *)a)->name, ((const struct sprop *)b)->name);
}

static const struct {
    const char *name;
    int f;
} formats[] = {
    {"date-time", F_DATETIME},
    {"date", F_DATE},
    {"time", F_TIME},
    {"email", F_EMAIL},
    {"idn-email", F_IDNEMAIL},
    {"hostname", F_HOSTNAME},
    {"ipv4", F_IPV4},
    {"ipv6", F_IPV6},
    {"uri", F_URI},
    {"iri", F_URI},
    {"uri-reference", F_URIREF},
    {"iri-reference", F_URIREF},
    {"uuid", F_UUID},
    {"regex", F_REGEX},
    {"byte", F_BYTE},
    {"int32", F_INT32},
    {"int64", F_INT64},
    {"json-pointer", F_JSONPTR},
    {"duration", F_DURATION},
};

static bool type_bits(const char *t, unsigned *bits)
{
    static const struct {
        const char *n;
        unsigned b;
    } tt[] = {{"null", T_NULL},  {"boolean", T_BOOL}, {"object", T_OBJ}, {"array", T_ARR},
              {"number", T_NUM}, {"string", T_STR},   {"integer", T_INT}};
    for (size_t i = 0; i < sizeof(tt) / sizeof(tt[0]); i++)
        if (strcmp(t, tt[i].n) == 0) {
            *bits |= tt[i].b;
            return true;
        }
    if (strcmp(t, "file") == 0) { /* Swagger 2.0 form uploads: anything */
        *bits |= T_NULL | T_BOOL | T_OBJ | T_ARR | T_NUM | T_STR | T_INT;
        return true;
    }
    return false;
}

static struct node **compile_array(struct comp *c, const json_t *js, const char *k, size_t *n)
{
    const json_t *a = json_object_get(js, k);
    *n = 0;
    if (!a)
        return NULL;
    if (!json_is_array(a) || json_array_size(a) == 0) {
        cfail(c, "'%s' must be a non-empty array of schemas", k);
        return NULL;
    }
    struct node **v = calloc(json_array_size(a), sizeof(*v));
    if (!v) {
        cfail(c, "out of memory");
        return NULL;
    }
    size_t i;
    const json_t *e;
    json_array_foreach(a, i, e)
    {
        v[i] = compile_sub(c, e, k);
        if (c->failed)
            break;
    }
    *n = json_array_size(a);
    return v;
}

static void compile_validation(struct comp *c, struct node *n, const json_t *js);
static void compile_applicators(struct comp *c, struct node *n, const json_t *js);

static void compile_keywords(struct comp *c, struct node *n, const json_t *js, const char *base)
{
    const json_t *v;
    bool d4 = c->draft4;
    if ((c->flags & PT_JSCHEMA_OPENAPI) &&
        (json_is_true(json_object_get(js, "nullable")) || json_is_true(json_object_get(js, "x-nullable"))))
        n->nullable = true; /* OpenAPI 3.0's nullable, Swagger 2.0's x-nullable */
    if ((v = json_object_get(js, "$ref"))) {
        if (!json_is_string(v))
            return cfail(c, "'$ref' must be a string");
        const json_t *t = resolve_ref(c, base, json_string_value(v));
        if (c->failed)
            return;
        if (!t)
            return cfail(c, "cannot resolve $ref '%s'", json_string_value(v));
        n->ref = compile_sub(c, t, "$ref");
        if (d4)
            return; /* draft 4: $ref replaces its siblings */
    }
    if (!d4 && (v = json_object_get(js, "$dynamicRef"))) {
        if (!json_is_string(v))
            return cfail(c, "'$dynamicRef' must be a string");
        const json_t *t = resolve_ref(c, base, json_string_value(v));
        if (c->failed)
            return;
        if (!t)
            return cfail(c, "cannot resolve $dynamicRef '%s'", json_string_value(v));
        n->dynref = compile_sub(c, t, "$dynamicRef");
        const char *h = strchr(json_string_value(v), '#');
        if (h && h[1] && h[1] != '/') {
            n->dynname = h + 1;
            const json_t *da = json_object_get(t, "$dynamicAnchor");
            n->dynbook = json_is_string(da) && strcmp(json_string_value(da), n->dynname) == 0;
        }
    }
    if (!c->no_validation)
        compile_validation(c, n, js);
    if (c->failed)
        return;
    if ((v = json_object_get(js, "format")) && json_is_string(v)) {
        n->format_name = json_string_value(v);
        if (c->flags & PT_JSCHEMA_FORMATS)
            for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
                if (strcmp(formats[i].name, n->format_name) == 0)
                    n->format = formats[i].f;
    }
    compile_applicators(c, n, js);
}

/* the validation vocabulary */
static void compile_validation(struct comp *c, struct node *n, const json_t *js)
{
    const json_t *v;
    bool d4 = c->draft4;
    if ((v = json_object_get(js, "type"))) {
        if (json_is_string(v)) {
            if (!type_bits(json_string_value(v), &n->types))
                return cfail(c, "unknown type '%s'", json_string_value(v));
        } else if (json_is_array(v)) {
            size_t i;
            const json_t *e;
            json_array_foreach(v, i,
                               e) if (!json_is_string(e) ||
                                      !type_bits(json_string_value(e),
                                                 &n->types)) return cfail(c, "'type' must name JSON types");
        } else {
            return cfail(c, "'type' must be a string or an array");
        }
        if (n->types & T_NUM)
            n->types |= T_INT;
    }
    if ((v = json_object_get(js, "enum"))) {
        if (!json_is_array(v))
            return cfail(c, "'enum' must be an array");
        n->enum_ = v;
    }
    if (!d4 && (v = json_object_get(js, "const")))
        n->const_ = v;
    if ((v = json_object_get(js, "multipleOf"))) {
        if (!get_num(v, &n->mult) || n->mult.d <= 0)
            return cfail(c, "'multipleOf' must be a number above 0");
    }
    if ((v = json_object_get(js, "maximum")) && !get_num(v, &n->max))
        return cfail(c, "'maximum' must be a number");
    if ((v = json_object_get(js, "minimum")) && !get_num(v, &n->min))
        return cfail(c, "'minimum' must be a number");
    if ((v = json_object_get(js, "exclusiveMaximum"))) {
        if (json_is_boolean(v)) {
            if (json_is_true(v) && n->max.set) {
                n->xmax = n->max;
                n->max.set = false;
            }
        } else if (!get_num(v, &n->xmax)) {
            return cfail(c, "'exclusiveMaximum' must be a number");
        }
    }
    if ((v = json_object_get(js, "exclusiveMinimum"))) {
        if (json_is_boolean(v)) {
            if (json_is_true(v) && n->min.set) {
                n->xmin = n->min;
                n->min.set = false;
            }
        } else if (!get_num(v, &n->xmin)) {
            return cfail(c, "'exclusiveMinimum' must be a number");
        }
    }
    n->maxlen = get_count(c, js, "maxLength");
    n->minlen = get_count(c, js, "minLength");
    n->maxitems = get_count(c, js, "maxItems");
    n->minitems = get_count(c, js, "minItems");
    n->maxprops = get_count(c, js, "maxProperties");
    n->minprops = get_count(c, js, "minProperties");
    n->mincontains = d4 ? -1 : get_count(c, js, "minContains");
    n->maxcontains = d4 ? -1 : get_count(c, js, "maxContains");
    if (c->failed)
        return;
    n->unique = json_is_true(json_object_get(js, "uniqueItems"));
    if ((v = json_object_get(js, "pattern"))) {
        if (!json_is_string(v))
            return cfail(c, "'pattern' must be a string");
        const char *e = NULL;
        n->pattern = rx_compile(json_string_value(v), json_string_length(v), &e);
        if (!n->pattern)
            return cfail(c, "pattern '%s': %s", json_string_value(v), e);
        n->pattern_src = json_string_value(v);
    }
    if ((v = json_object_get(js, "required"))) {
        if (!json_is_array(v))
            return cfail(c, "'required' must be an array");
        n->req = calloc(json_array_size(v) + 1, sizeof(*n->req));
        if (!n->req)
            return cfail(c, "out of memory");
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e)
        {
            if (!json_is_string(e))
                return cfail(c, "'required' must list strings");
            n->req[n->nreq++] = json_string_value(e);
        }
    }
}

/* the applicator vocabulary (and draft 4's forms of it) */
static void compile_applicators(struct comp *c, struct node *n, const json_t *js)
{
    const json_t *v;
    bool d4 = c->draft4;
    /* arrays */
    const json_t *items = json_object_get(js, "items");
    if (json_is_array(items)) {
        n->prefix = compile_array(c, js, "items", &n->nprefix);
        if (!n->prefix && !c->failed) {
            n->prefix = calloc(1, sizeof(*n->prefix)); /* "items": [] */
            n->nprefix = 0;
        }
        if ((v = json_object_get(js, "additionalItems"))) {
            n->items = compile_sub(c, v, "additionalItems");
            n->items_legacy = true;
        }
    } else {
        if (!d4 && json_object_get(js, "prefixItems"))
            n->prefix = compile_array(c, js, "prefixItems", &n->nprefix);
        if (items)
            n->items = compile_sub(c, items, "items");
    }
    if (c->failed)
        return;
    if (!d4 && (v = json_object_get(js, "contains")))
        n->contains = compile_sub(c, v, "contains");
    /* objects */
    if ((v = json_object_get(js, "properties"))) {
        if (!json_is_object(v))
            return cfail(c, "'properties' must be an object");
        n->props = calloc(json_object_size(v) + 1, sizeof(*n->props));
        if (!n->props)
            return cfail(c, "out of memory");
        const char *k;
        const json_t *e;
        json_object_foreach((json_t *)v, k, e)
        {
            n->props[n->nprops].name = k;
            n->props[n->nprops].s = compile_sub(c, e, "properties");
            n->nprops++;
            if (c->failed)
                return;
        }
        qsort(n->props, n->nprops, sizeof(*n->props), cmp_prop);
    }
    if ((v = json_object_get(js, "patternProperties"))) {
        if (!json_is_object(v))
            return cfail(c, "'patternProperties' must be an object");
        n->pats = calloc(json_object_size(v) + 1, sizeof(*n->pats));
        if (!n->pats)
            return cfail(c, "out of memory");
        const char *k;
        const json_t *e;
        json_object_foreach((json_t *)v, k, e)
        {
            const char *er = NULL;
            n->pats[n->npats].rx = rx_compile(k, strlen(k), &er);
            if (!n->pats[n->npats].rx)
                return cfail(c, "patternProperties '%s': %s", k, er);
            n->pats[n->npats].src = k;
            n->pats[n->npats].s = compile_sub(c, e, "patternProperties");
            n->npats++;
            if (c->failed)
                return;
        }
    }
    if ((v = json_object_get(js, "additionalProperties"))) {
        if (!((c->flags & PT_JSCHEMA_ALLOW_ADDITIONAL) && json_is_false(v)))
            n->addl = compile_sub(c, v, "additionalProperties");
    }
    if (!d4 && (v = json_object_get(js, "propertyNames")))
        n->pnames = compile_sub(c, v, "propertyNames");
    if (c->failed)
        return;
    /* dependentRequired / dependentSchemas and draft 4's dependencies */
    static const char *const depk[] = {"dependencies", "dependentRequired", "dependentSchemas"};
    for (int d = 0; d < 3; d++) {
        if (d4 && d > 0)
            break;
        if (c->no_validation && d == 1)
            continue;
        if (!(v = json_object_get(js, depk[d])))
            continue;
        if (!json_is_object(v))
            return cfail(c, "'%s' must be an object", depk[d]);
        const char *k;
        const json_t *e;
        json_object_foreach((json_t *)v, k, e)
        {
            if (json_is_array(e) && d != 2) {
                void *r = realloc(n->depreq, (n->ndepreq + 1) * sizeof(*n->depreq));
                if (!r)
                    return cfail(c, "out of memory");
                n->depreq = r;
                struct sdepreq *dr = &n->depreq[n->ndepreq++];
                dr->name = k;
                dr->n = 0;
                dr->req = calloc(json_array_size(e) + 1, sizeof(*dr->req));
                if (!dr->req)
                    return cfail(c, "out of memory");
                size_t i;
                const json_t *s;
                json_array_foreach(e, i, s)
                {
                    if (!json_is_string(s))
                        return cfail(c, "'%s' must list strings", depk[d]);
                    dr->req[dr->n++] = json_string_value(s);
                }
            } else if (is_schema_value(e) && d != 1) {
                void *r = realloc(n->depsch, (n->ndepsch + 1) * sizeof(*n->depsch));
                if (!r)
                    return cfail(c, "out of memory");
                n->depsch = r;
                n->depsch[n->ndepsch].name = k;
                n->depsch[n->ndepsch].s = compile_sub(c, e, depk[d]);
                n->ndepsch++;
                if (c->failed)
                    return;
            } else {
                return cfail(c, "'%s' has a bad value for '%s'", depk[d], k);
            }
        }
    }
    /* combinators */
    n->allof = compile_array(c, js, "allOf", &n->nall);
    n->anyof = compile_array(c, js, "anyOf", &n->nany);
    n->oneof = compile_array(c, js, "oneOf", &n->none);
    if (c->failed)
        return;
    if ((v = json_object_get(js, "not")))
        n->not_ = compile_sub(c, v, "not");
    if (!d4 && (v = json_object_get(js, "if"))) {
        n->if_ = compile_sub(c, v, "if");
        if ((v = json_object_get(js, "then")))
            n->then_ = compile_sub(c, v, "then");
        if ((v = json_object_get(js, "else")))
            n->else_ = compile_sub(c, v, "else");
    }
    if (!d4 && (v = json_object_get(js, "unevaluatedProperties"))) {
        if (!((c->flags & PT_JSCHEMA_ALLOW_ADDITIONAL) && json_is_false(v)))
            n->uprops = compile_sub(c, v, "unevaluatedProperties");
    }
    if (!d4 && (v = json_object_get(js, "unevaluatedItems")))
        n->uitems = compile_sub(c, v, "unevaluatedItems");
    if (c->failed)
        return;
    /* the compiled schema's other subschemas ($defs, ...) are compiled when referenced */
    if ((c->flags & PT_JSCHEMA_NO_ADDITIONAL) && !json_object_get(js, "additionalProperties") && !n->uprops &&
        !json_object_get(js, "unevaluatedProperties") &&
        (n->nprops || n->npats || n->nall || n->nany || n->none))
        n->implicit_noadd = true;
    n->needs_ann = n->uprops || n->uitems;
}

static struct node *compile_node(struct comp *c, const json_t *js)
{
    if (c->failed)
        return NULL;
    struct ment *e = map_get(c, js);
    if (!e) {
        scan(c, js, "", 0);
        e = map_get(c, js);
        if (!e) {
            cfail(c, "out of memory");
            return NULL;
        }
    }
    if (e->node)
        return e->node;
    struct node *n = calloc(1, sizeof(*n));
    if (!n) {
        cfail(c, "out of memory");
        return NULL;
    }
    n->all_next = c->s->all;
    c->s->all = n;
    e->node = n;
    n->resource = e->res;
    n->maxlen = n->minlen = n->maxitems = n->minitems = n->maxprops = n->minprops = -1;
    n->mincontains = n->maxcontains = -1;
    if (json_is_boolean(js)) {
        n->is_bool = true;
        n->bval = json_is_true(js);
        n->resource = -1;
        return n;
    }
    if (++c->depth > 200) {
        cfail(c, "the schema is nested too deeply");
        return n;
    }
    char *base = strdup(e->base ? e->base : "");
    if (!base) {
        cfail(c, "out of memory");
        return n;
    }
    compile_keywords(c, n, js, base);
    free(base);
    c->depth--;
    return n;
}

static void node_free(struct node *n)
{
    free(n->prefix);
    if (n->pattern)
        rx_free(n->pattern);
    free(n->props);
    for (size_t i = 0; i < n->npats; i++)
        rx_free(n->pats[i].rx);
    free(n->pats);
    free(n->req);
    for (size_t i = 0; i < n->ndepreq; i++)
        free(n->depreq[i].req);
    free(n->depreq);
    free(n->depsch);
    free(n->allof);
    free(n->anyof);
    free(n->oneof);
    free(n);
}

void pt_jschema_free(struct pt_jschema *s)
{
    if (!s)
        return;
    struct node *n = s->all;
    while (n) {
        struct node *nx = n->all_next;
        node_free(n);
        n = nx;
    }
    for (size_t i = 0; i < s->nres; i++) {
        free(s->res[i].uri);
        for (size_t j = 0; j < s->res[i].ndyn; j++)
            free(s->res[i].dyn[j].name);
        free(s->res[i].dyn);
    }
    free(s->res);
    for (size_t i = 0; i < s->nheld; i++)
        json_decref(s->held[i]);
    free(s->held);
    free(s);
}

static bool hold(struct comp *c, const json_t *j)
{
    void *hp = realloc(c->s->held, (c->s->nheld + 1) * sizeof(*c->s->held));
    if (!hp)
        return false;
    c->s->held = hp;
    c->s->held[c->s->nheld++] = json_incref((json_t *)j);
    return true;
}

struct pt_jschema *pt_jschema_compile_ex(const json_t *schema, const json_t *root, unsigned flags,
                                         pt_jschema_loader loader, void *ud, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!schema || !is_schema_value(schema)) {
        if (err && errlen)
            snprintf(err, errlen, "a schema must be an object or a boolean");
        return NULL;
    }
    struct comp c = {.flags = flags,
                     .draft4 = (flags & PT_JSCHEMA_DRAFT4) != 0,
                     .loader = loader,
                     .ud = ud,
                     .err = err,
                     .errlen = errlen};
    c.s = calloc(1, sizeof(*c.s));
    if (!c.s) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c.s->flags = flags;
    if (!hold(&c, schema) || (root && root != schema && !hold(&c, root)))
        cfail(&c, "out of memory");
    if (root && root != schema && is_schema_value(root))
        scan_doc(&c, root, "");
    else if (root && root != schema && json_is_object(root)) /* not reached: objects are schema values */
        scan_doc(&c, root, "");
    if (!map_get(&c, schema)) {
        if (root && root != schema) {
            scan(&c, schema, "", 0);
        } else {
            scan_doc(&c, schema, "");
        }
    }
    const json_t *ms = json_object_get(schema, "$schema");
    if (!c.draft4 && loader && json_is_string(ms) &&
        strncmp(json_string_value(ms), "https://json-schema.org/", 24) != 0) {
        /* a custom meta-schema: honour a $vocabulary that leaves out validation */
        char *u = strip_frag(json_string_value(ms));
        json_t *m = u ? loader(u, ud) : NULL;
        const json_t *voc = json_object_get(m, "$vocabulary");
        if (json_is_object(voc) &&
            !json_object_get(voc, "https://json-schema.org/draft/2020-12/vocab/validation"))
            c.no_validation = true;
        json_decref(m);
        free(u);
    }
    c.s->root = compile_node(&c, schema);
    /* compile every resource's dynamic anchors, and resources a dynamic scope may enter */
    for (size_t i = 0; i < c.s->nres && !c.failed; i++) {
        if (c.s->res[i].ndyn)
            compile_node(&c, c.s->res[i].root);
        for (size_t j = 0; j < c.s->res[i].ndyn && !c.failed; j++) {
            struct node *dn = compile_node(&c, c.s->res[i].dyn[j].js);
            c.s->res[i].dyn[j].node = dn;
        }
    }
    for (size_t i = 0; i < c.mapcap; i++)
        free(c.map[i].base);
    free(c.map);
    for (size_t i = 0; i < c.nreg; i++)
        free(c.reg[i].uri);
    free(c.reg);
    if (c.failed) {
        pt_jschema_free(c.s);
        return NULL;
    }
    return c.s;
}

struct pt_jschema *pt_jschema_compile(const json_t *schema, const json_t *root, unsigned flags, char *err,
                                      size_t errlen)
{
    return pt_jschema_compile_ex(schema, root, flags, NULL, NULL, err, errlen);
}

/* ------------------------------------------------------------------------- */
/* Validation                                                                */

#define MAX_SCHEMA_DEPTH 1024
#define MAX_STEPS 4000000L
#define MAX_SCOPE 256

/* what in-place subschemas evaluated (for unevaluated* and NO_ADDITIONAL) */
struct ann {
    const char **keys;
    size_t nkeys, cap;
    size_t items; /* items [0, items) evaluated */
    bool items_all;
    unsigned char *marks; /* per item, by contains */
    size_t nmarks;
    bool oom;
};

struct vpath {
    const char *key; /* NULL: an array index */
    size_t idx;
};

struct vctx {
    const struct pt_jschema *s;
    struct pt_jschema_error *e;
    int quiet;
    bool recorded, aborted;
    int depth;
    int np;
    struct vpath path[PT_JSCHEMA_MAX_DEPTH + 1];
    int scope[MAX_SCOPE];
    int nscope;
    long steps;
    char buf[200]; /* scratch for messages: kept out of the recursive frames */
    char list[400];
    char b[40], xb[40];
};

static void ann_free(struct ann *a)
{
    free(a->keys);
    free(a->marks);
}

/*
 * Evaluated property names, a set of key pointers: every keyword at one
 * instance location iterates the same object, whose keys stay put, so the
 * pointer identifies the property (open addressing, at most half full).
 */
static bool ann_has_key(const struct ann *a, const char *k)
{
    if (!a->cap)
        return false;
    size_t m = a->cap - 1;
    for (size_t i = ptr_hash(k) & m;; i = (i + 1) & m) {
        if (!a->keys[i])
            return false;
        if (a->keys[i] == k)
            return true;
    }
}

static void ann_key(struct ann *a, const char *k)
{
    if (!a || a->oom)
        return;
    if ((a->nkeys + 1) * 2 > a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 32;
        const char **nk = calloc(nc, sizeof(*nk));
        if (!nk) {
            a->oom = true;
            return;
        }
        for (size_t i = 0; i < a->cap; i++)
            if (a->keys[i]) {
                size_t j = ptr_hash(a->keys[i]) & (nc - 1);
                while (nk[j])
                    j = (j + 1) & (nc - 1);
                nk[j] = a->keys[i];
            }
        free(a->keys);
        a->keys = nk;
        a->cap = nc;
    }
    size_t m = a->cap - 1;
    size_t i = ptr_hash(k) & m;
    while (a->keys[i]) {
        if (a->keys[i] == k)
            return;
        i = (i + 1) & m;
    }
    a->keys[i] = k;
    a->nkeys++;
}

static void ann_mark(struct ann *a, size_t i, size_t len)
{
    if (!a)
        return;
    if (!a->marks) {
        a->marks = calloc(len ? len : 1, 1);
        if (!a->marks) {
            a->oom = true;
            return;
        }
        a->nmarks = len;
    }
    if (i < a->nmarks)
        a->marks[i] = 1;
}

static void ann_merge(struct ann *d, const struct ann *s)
{
    if (!d)
        return;
    for (size_t i = 0; i < s->cap; i++)
        if (s->keys[i])
            ann_key(d, s->keys[i]);
    if (s->oom)
        d->oom = true;
    if (s->items > d->items)
        d->items = s->items;
    if (s->items_all)
        d->items_all = true;
    for (size_t i = 0; i < s->nmarks; i++)
        if (s->marks[i])
            ann_mark(d, i, s->nmarks);
}

static void path_text(const struct vctx *c, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < c->np; i++) {
        char num[32];
        const char *k = c->path[i].key;
        if (!k) {
            snprintf(num, sizeof(num), "%zu", c->path[i].idx);
            k = num;
        }
        if (n + 1 >= cap)
            break;
        out[n++] = '/';
        for (; *k && n + 2 < cap; k++) {
            if (*k == '~') {
                out[n++] = '~';
                out[n++] = '0';
            } else if (*k == '/') {
                out[n++] = '~';
                out[n++] = '1';
            } else {
                out[n++] = *k;
            }
        }
        out[n] = '\0';
    }
    /* never end inside a UTF-8 sequence */
    if (n + 2 >= cap)
        while (n > 0 && ((unsigned char)out[n - 1] & 0xc0) == 0x80)
            out[--n] = '\0';
    if (n > 0 && ((unsigned char)out[n - 1] & 0xc0) == 0xc0 && n + 2 >= cap)
        out[--n] = '\0';
}

static bool recording(const struct vctx *c)
{
    return c->e && !c->quiet && !c->recorded;
}

static bool fail(struct vctx *c, const char *kw, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(struct vctx *c, const char *kw, const char *fmt, ...)
{
    if (!recording(c))
        return false;
    c->recorded = true;
    path_text(c, c->e->path, sizeof(c->e->path));
    snprintf(c->e->keyword, sizeof(c->e->keyword), "%s", kw);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->e->message, sizeof(c->e->message), fmt, ap);
    va_end(ap);
    return false;
}

/* a hard stop (depth, steps): recorded even inside anyOf/not, and every level fails */
static bool abort_v(struct vctx *c, const char *kw, const char *msg)
{
    if (c->aborted)
        return false;
    c->aborted = true;
    if (c->e) {
        c->recorded = true;
        path_text(c, c->e->path, sizeof(c->e->path));
        snprintf(c->e->keyword, sizeof(c->e->keyword), "%s", kw);
        snprintf(c->e->message, sizeof(c->e->message), "%s", msg);
    }
    return false;
}

static const char *type_name(const json_t *x)
{
    switch (json_typeof(x)) {
    case JSON_OBJECT:
        return "Object";
    case JSON_ARRAY:
        return "Array";
    case JSON_STRING:
        return "String";
    case JSON_INTEGER:
        return "Integer";
    case JSON_REAL:
        return "Number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "Boolean";
    default:
        return "Null";
    }
}

/* a short quotation of a string for messages, cut at a code point */
static void quote(const char *s, size_t len, char *out, size_t cap)
{
    size_t n = len < cap - 4 ? len : cap - 4;
    while (n < len && n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    memcpy(out, s, n);
    if (n < len) {
        memcpy(out + n, "...", 4);
    } else {
        out[n] = '\0';
    }
}

static void value_text(const json_t *x, char *out, size_t cap)
{
    if (json_is_object(x) || json_is_array(x)) { /* never serialize a whole body for a message */
        snprintf(out, cap, "%s", json_is_object(x) ? "{...}" : "[...]");
        return;
    }
    char *t = json_dumps(x, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!t) {
        snprintf(out, cap, "?");
        return;
    }
    quote(t, strlen(t), out, cap);
    free(t);
}

static bool json_eq(const json_t *a, const json_t *b, int depth)
{
    if (depth > 200)
        return false;
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b);
        return json_number_value(a) == json_number_value(b);
    }
    if (json_typeof(a) != json_typeof(b))
        return false;
    switch (json_typeof(a)) {
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    case JSON_ARRAY: {
        size_t n = json_array_size(a);
        if (n != json_array_size(b))
            return false;
        for (size_t i = 0; i < n; i++)
            if (!json_eq(json_array_get(a, i), json_array_get(b, i), depth + 1))
                return false;
        return true;
    }
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b))
            return false;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)a, k, v)
        {
            const json_t *w = json_object_get(b, k);
            if (!w || !json_eq(v, w, depth + 1))
                return false;
        }
        return true;
    }
    default:
        return true;
    }
}

static bool is_integer_value(const json_t *x)
{
    if (json_is_integer(x))
        return true;
    if (json_is_real(x)) {
        double d = json_real_value(x);
        return isfinite(d) && d == floor(d);
    }
    return false;
}

/* -1, 0, 1: instance x against bound b */
static int num_cmp(const json_t *x, const struct num *b)
{
    if (json_is_integer(x) && b->is_int) {
        json_int_t i = json_integer_value(x);
        return i < b->i ? -1 : i > b->i;
    }
    double d = json_number_value(x);
    return d < b->d ? -1 : d > b->d;
}

static void num_text(const struct num *b, char *out, size_t cap)
{
    if (b->is_int)
        snprintf(out, cap, "%lld", (long long)b->i);
    else
        snprintf(out, cap, "%.17g", b->d);
}

static bool multiple_of(const json_t *x, const struct num *m)
{
    if (json_is_integer(x) && m->is_int)
        return m->i != 0 && json_integer_value(x) % m->i == 0;
    double q = json_number_value(x) / m->d;
    if (!isfinite(q))
        return isfinite(json_number_value(x)) && fmod(json_number_value(x), m->d) == 0;
    double r = nearbyint(q);
    return fabs(q - r) <= 1e-9 * (fabs(q) > 1 ? fabs(q) : 1);
}

/* formats ---------------------------------------------------------------- */

static bool digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

static bool fmt_date(const char *s, size_t len)
{
    if (len != 10 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' || !digits(s + 8, 2))
        return false;
    int y = atoi(s), m = atoi(s + 5), d = atoi(s + 8);
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
        return false;
    if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return false;
    return true;
}

static bool fmt_time(const char *s, size_t len)
{
    if (len < 9 || !digits(s, 2) || s[2] != ':' || !digits(s + 3, 2) || s[5] != ':' || !digits(s + 6, 2))
        return false;
    int h = atoi(s), mi = atoi(s + 3), se = atoi(s + 6);
    if (h > 23 || mi > 59 || se > 60)
        return false;
    int oh = 0, om = 0; /* the offset, to check a leap second is at 23:59 UTC */
    size_t i = 8;
    if (s[i] == '.') {
        i++;
        size_t st = i;
        while (i < len && isdigit((unsigned char)s[i]))
            i++;
        if (i == st)
            return false;
    }
    if (i >= len)
        return false;
    if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == len) {
        /* UTC */
    } else if ((s[i] == '+' || s[i] == '-') && len - i == 6 && digits(s + i + 1, 2) && s[i + 3] == ':' &&
               digits(s + i + 4, 2)) {
        oh = atoi(s + i + 1);
        om = atoi(s + i + 4);
        if (oh > 23 || om > 59)
            return false;
        if (s[i] == '-')
            oh = -oh, om = -om;
    } else {
        return false;
    }
    if (se == 60) {
        int m = ((h - oh) * 60 + (mi - om)) % 1440;
        if (m < 0)
            m += 1440;
        return m == 23 * 60 + 59;
    }
    return true;
}

static bool fmt_ipv4(const char *s, size_t len)
{
    int parts = 0;
    size_t i = 0;
    while (i < len) {
        size_t st = i;
        int v = 0;
        while (i < len && isdigit((unsigned char)s[i]) && i - st < 4)
            v = v * 10 + (s[i++] - '0');
        if (i == st || i - st > 3 || v > 255 || (i - st > 1 && s[st] == '0'))
            return false;
        parts++;
        if (i < len) {
            if (s[i] != '.' || parts == 4)
                return false;
            i++;
            if (i == len)
                return false;
        }
    }
    return parts == 4;
}

static bool fmt_ipv6(const char *s, size_t len)
{
    if (len < 2 || len > 45)
        return false;
    int groups = 0;
    bool dbl = false;
    size_t i = 0;
    if (s[0] == ':') {
        if (s[1] != ':')
            return false;
        dbl = true;
        i = 2;
        if (i == len)
            return true;
    }
    while (i < len) {
        size_t st = i;
        while (i < len && isxdigit((unsigned char)s[i]))
            i++;
        if (i < len && s[i] == '.') {
            if (!fmt_ipv4(s + st, len - st))
                return false;
            groups += 2;
            break;
        }
        if (i == st || i - st > 4)
            return false;
        groups++;
        if (i == len)
            break;
        if (s[i] != ':')
            return false;
        i++;
        if (i < len && s[i] == ':') {
            if (dbl)
                return false;
            dbl = true;
            i++;
            if (i == len)
                break;
        } else if (i == len) {
            return false;
        }
    }
    return dbl ? groups < 8 : groups == 8;
}

static bool fmt_hostname(const char *s, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    size_t lab = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (lab == 0 || s[i - 1] == '-')
                return false;
            lab = 0;
            continue;
        }
        if (!(isalnum((unsigned char)ch) || ch == '-'))
            return false;
        if (ch == '-' && lab == 0)
            return false;
        if (++lab > 63)
            return false;
    }
    return lab > 0 && s[len - 1] != '-';
}

/* RFC 3986 characters, percent-encodings, brackets only around an IP literal, numeric port */
static bool fmt_uri(const char *s, size_t len, bool absolute)
{
    static const char ok[] = "-._~:/?#[]@!$&'()*+,;=";
    if (strlen(s) != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '%') {
            if (i + 2 >= len)
                return false;
            if (hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
                return false;
            i += 2;
        } else if (!(isalnum(ch) || (ch && strchr(ok, ch)))) {
            return false;
        }
    }
    struct uri u;
    uri_parse(s, &u);
    if (absolute && !u.has_scheme)
        return false;
    if (!u.has_scheme && !u.has_auth) {
        /* a relative-path reference: no ':' in its first segment */
        const char *colon = memchr(u.path, ':', u.pl), *slash = memchr(u.path, '/', u.pl);
        if (colon && (!slash || colon < slash))
            return false;
    }
    for (size_t i = 0; i < u.pl + u.ql + u.fl + (u.has_query ? 1 : 0) + (u.has_frag ? 1 : 0); i++)
        if (u.path[i] == '[' || u.path[i] == ']')
            return false; /* brackets outside the authority */
    if (u.has_auth) {
        const char *a = u.auth, *end = u.auth + u.al;
        const char *at = NULL;
        for (const char *p = a; p < end; p++)
            if (*p == '@') {
                if (at)
                    return false;
                at = p;
            }
        const char *host = at ? at + 1 : a;
        if (at)
            for (const char *p = a; p < at; p++)
                if (*p == '[' || *p == ']')
                    return false;
        const char *port = NULL;
        if (host < end && *host == '[') {
            const char *rb = memchr(host, ']', (size_t)(end - host));
            if (!rb || !fmt_ipv6(host + 1, (size_t)(rb - host - 1)))
                return false;
            if (rb + 1 < end) {
                if (rb[1] != ':')
                    return false;
                port = rb + 2;
            }
        } else {
            for (const char *p = host; p < end; p++) {
                if (*p == '[' || *p == ']')
                    return false;
                if (*p == ':' && !port)
                    port = p + 1;
            }
        }
        if (port)
            for (const char *p = port; p < end; p++)
                if (!isdigit((unsigned char)*p))
                    return false;
    }
    return true;
}

static bool fmt_check(int f, const json_t *x)
{
    if (f == F_INT32 || f == F_INT64) {
        if (!json_is_number(x))
            return true;
        if (!is_integer_value(x))
            return false;
        if (f == F_INT32) {
            double d = json_number_value(x);
            return d >= -2147483648.0 && d <= 2147483647.0;
        }
        return true;
    }
    if (!json_is_string(x))
        return true;
    const char *s = json_string_value(x);
    size_t len = json_string_length(x);
    switch (f) {
    case F_DATETIME:
        return len > 11 && (s[10] == 'T' || s[10] == 't' || s[10] == ' ') && fmt_date(s, 10) &&
               fmt_time(s + 11, len - 11);
    case F_DATE:
        return fmt_date(s, len);
    case F_IDNEMAIL:
    case F_TIME:
        return fmt_time(s, len);
    case F_EMAIL: {
        const char *at = NULL;
        if (len && s[0] == '"') { /* a quoted local part */
            size_t i = 1;
            while (i < len && s[i] != '"')
                i += s[i] == '\\' ? 2 : 1;
            if (i + 1 >= len || s[i + 1] != '@')
                return false;
            at = s + i + 1;
        } else {
            at = memchr(s, '@', len);
            if (!at || at == s || s[0] == '.' || at[-1] == '.')
                return false;
            for (const char *p = s; p < at; p++)
                if (*p == ' ' || *p == '"' || *p == '(' || *p == ')' || *p == ',' || *p == ':' || *p == ';' ||
                    *p == '<' || *p == '>' || *p == '[' || *p == ']' || *p == '\\' ||
                    (p[0] == '.' && p[1] == '.'))
                    return false;
        }
        size_t dl = len - (size_t)(at - s) - 1;
        const char *dom = at + 1;
        if (dl > 2 && dom[0] == '[' && dom[dl - 1] == ']') {
            if (dl > 7 && strncmp(dom + 1, "IPv6:", 5) == 0)
                return fmt_ipv6(dom + 6, dl - 7);
            return fmt_ipv4(dom + 1, dl - 2);
        }
        if (memchr(dom, '@', dl))
            return false;
        if (f == F_IDNEMAIL)
            return dl > 0;
        return fmt_hostname(dom, dl);
    }
    case F_HOSTNAME:
        return fmt_hostname(s, len);
    case F_IPV4:
        return fmt_ipv4(s, len);
    case F_IPV6:
        return fmt_ipv6(s, len);
    case F_URI:
    case F_URIREF:
        return fmt_uri(s, len, f == F_URI);
    case F_UUID: {
        if (len != 36)
            return false;
        for (size_t i = 0; i < 36; i++) {
            if (i == 8 || i == 13 || i == 18 || i == 23) {
                if (s[i] != '-')
                    return false;
            } else if (!isxdigit((unsigned char)s[i])) {
                return false;
            }
        }
        return true;
    }
    case F_REGEX: {
        const char *e;
        struct rx *rx = rx_compile(s, len, &e);
        rx_free(rx);
        return rx != NULL;
    }
    case F_BYTE: {
        if (len % 4)
            return false;
        for (size_t i = 0; i < len; i++) {
            char ch = s[i];
            if (ch == '=') {
                if (i < len - 2 || (i == len - 2 && s[len - 1] != '='))
                    return false;
            } else if (!(isalnum((unsigned char)ch) || ch == '+' || ch == '/')) {
                return false;
            }
        }
        return true;
    }
    case F_JSONPTR:
        if (len && s[0] != '/')
            return false;
        for (size_t i = 0; i < len; i++)
            if (s[i] == '~' && (i + 1 >= len || (s[i + 1] != '0' && s[i + 1] != '1')))
                return false;
        return true;
    case F_DURATION: {
        if (len < 2 || s[0] != 'P')
            return false;
        bool t = false, any = false;
        const char *order = NULL; /* the units seen must be a run of "YMD", "W" or "HMS" */
        const char *last = NULL;
        for (size_t i = 1; i < len;) {
            if (s[i] == 'T') {
                if (t)
                    return false;
                t = true;
                i++;
                if (i == len)
                    return false;
                continue;
            }
            size_t st = i;
            while (i < len && isdigit((unsigned char)s[i]))
                i++;
            if (i == st || i == len)
                return false;
            char u = s[i++];
            const char *seq = t ? "HMS" : (u == 'W' ? "W" : "YMD");
            const char *at = strchr(seq, u);
            if (!at)
                return false;
            if (order && (order != seq || at != last + 1))
                return false;
            if (order && !t && *order == 'W')
                return false;
            order = seq;
            last = at;
            any = true;
            if (t && i < len && s[i] == 'T')
                return false;
            if (i < len && s[i] == 'T') {
                if (*seq == 'W')
                    return false;
                order = NULL;
            }
        }
        return any;
    }
    }
    return true;
}

/* the validator ---------------------------------------------------------- */

static bool v(struct vctx *c, const struct node *n, const json_t *x, struct ann *a, bool inplace);

/* for errors about one member (an extra property, a duplicate item): its path, when there is room */
static bool path_push(struct vctx *c, const char *key, size_t idx)
{
    if (c->np >= PT_JSCHEMA_MAX_DEPTH)
        return false;
    c->path[c->np].key = key;
    c->path[c->np].idx = idx;
    c->np++;
    return true;
}

static bool v_down_key(struct vctx *c, const struct node *n, const json_t *x, const char *key)
{
    if (c->np >= PT_JSCHEMA_MAX_DEPTH)
        return abort_v(c, "maxDepth", "JSON is nested deeper than the maximum depth of 128.");
    c->path[c->np].key = key;
    c->np++;
    bool ok = v(c, n, x, NULL, false);
    c->np--;
    return ok;
}

static bool v_down_idx(struct vctx *c, const struct node *n, const json_t *x, size_t i)
{
    if (c->np >= PT_JSCHEMA_MAX_DEPTH)
        return abort_v(c, "maxDepth", "JSON is nested deeper than the maximum depth of 128.");
    c->path[c->np].key = NULL;
    c->path[c->np].idx = i;
    c->np++;
    bool ok = v(c, n, x, NULL, false);
    c->np--;
    return ok;
}

static const struct node *find_prop(const struct node *n, const char *k)
{
    size_t lo = 0, hi = n->nprops;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int r = strcmp(k, n->props[mid].name);
        if (r == 0)
            return n->props[mid].s;
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static bool v_object(struct vctx *c, const struct node *n, const json_t *x, struct ann *a)
{
    size_t size = json_object_size(x);
    if (n->maxprops >= 0 && (long long)size > n->maxprops)
        return fail(c, "maxProperties", "Object property count %zu exceeds maximum count of %lld.", size,
                    n->maxprops);
    if (n->minprops >= 0 && (long long)size < n->minprops)
        return fail(c, "minProperties", "Object property count %zu is less than minimum count of %lld.", size,
                    n->minprops);
    if (n->nreq) {
        size_t missing = 0;
        for (size_t i = 0; i < n->nreq; i++)
            if (!json_object_get(x, n->req[i]))
                missing++;
        if (missing) {
            if (!recording(c))
                return false;
            size_t l = 0;
            c->list[0] = '\0';
            for (size_t i = 0; i < n->nreq; i++)
                if (!json_object_get(x, n->req[i])) {
                    int w = snprintf(c->list + l, sizeof(c->list) - l, "%s%s", l ? ", " : "", n->req[i]);
                    if (w < 0 || (size_t)w >= sizeof(c->list) - l) {
                        l = sizeof(c->list) - 1;
                        break;
                    }
                    l += (size_t)w;
                }
            return fail(c, "required", "Required properties are missing from object: %s.", c->list);
        }
    }
    for (size_t i = 0; i < n->ndepreq; i++) {
        if (!json_object_get(x, n->depreq[i].name))
            continue;
        for (size_t j = 0; j < n->depreq[i].n; j++)
            if (!json_object_get(x, n->depreq[i].req[j]))
                return fail(c, "dependentRequired",
                            "Dependencies for property '%s' failed. Missing required keys: '%s'.",
                            n->depreq[i].name, n->depreq[i].req[j]);
    }
    if (n->nprops || n->npats || n->addl || n->pnames || a) {
        const char *k;
        json_t *val;
        json_object_foreach((json_t *)x, k, val)
        {
            bool matched = false;
            const struct node *p = n->nprops ? find_prop(n, k) : NULL;
            if (p) {
                matched = true;
                if (!v_down_key(c, p, val, k))
                    return false;
            }
            for (size_t i = 0; i < n->npats; i++) {
                int r = rx_search(n->pats[i].rx, k, strlen(k));
                if (r < 0)
                    return abort_v(c, "patternProperties", "A patternProperties regex ran out of steps.");
                if (r) {
                    matched = true;
                    if (!v_down_key(c, n->pats[i].s, val, k))
                        return false;
                }
            }
            if (!matched && n->addl) {
                if (n->addl->is_bool && !n->addl->bval) {
                    if (!recording(c))
                        return false;
                    quote(k, strlen(k), c->buf, sizeof(c->buf));
                    bool pu = path_push(c, k, 0);
                    fail(c, "additionalProperties",
                         "Property '%s' has not been defined and the schema does not allow additional "
                         "properties.",
                         c->buf);
                    c->np -= pu;
                    return false;
                }
                if (!v_down_key(c, n->addl, val, k))
                    return false;
                matched = true;
            }
            if (matched)
                ann_key(a, k);
            if (n->pnames) {
                json_t *ks = json_string(k);
                if (!ks)
                    return abort_v(c, "propertyNames", "Out of memory.");
                c->quiet++;
                bool ok = v(c, n->pnames, ks, NULL, false);
                c->quiet--;
                json_decref(ks);
                if (c->aborted)
                    return false;
                if (!ok) {
                    if (!recording(c))
                        return false;
                    quote(k, strlen(k), c->buf, sizeof(c->buf));
                    bool pu = path_push(c, k, 0);
                    fail(c, "propertyNames", "Property name '%s' does not match the propertyNames schema.",
                         c->buf);
                    c->np -= pu;
                    return false;
                }
            }
        }
    }
    for (size_t i = 0; i < n->ndepsch; i++) {
        if (json_object_get(x, n->depsch[i].name) && !v(c, n->depsch[i].s, x, a, true))
            return false;
    }
    return true;
}

/* a hash that equal JSON values share (numbers by value, objects in any order) */
static uint64_t json_hash(const json_t *x, int depth)
{
    uint64_t h =
        0x9e3779b97f4a7c15ULL * (uint64_t)(json_typeof(x) == JSON_REAL ? JSON_INTEGER : json_typeof(x));
    if (depth > 64)
        return h;
    switch (json_typeof(x)) {
    case JSON_STRING: {
        const unsigned char *p = (const unsigned char *)json_string_value(x);
        h ^= 0xcbf29ce484222325ULL;
        for (size_t i = 0, n = json_string_length(x); i < n; i++)
            h = (h ^ p[i]) * 0x100000001b3ULL;
        return h;
    }
    case JSON_INTEGER:
    case JSON_REAL: {
        double d = json_number_value(x);
        uint64_t b;
        if (d == 0)
            d = 0; /* -0 */
        memcpy(&b, &d, sizeof(b));
        return h ^ (b * 0xff51afd7ed558ccdULL);
    }
    case JSON_ARRAY: {
        for (size_t i = 0, n = json_array_size(x); i < n; i++)
            h = (h ^ json_hash(json_array_get(x, i), depth + 1)) * 0x100000001b3ULL + i;
        return h;
    }
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        uint64_t sum = 0;
        json_object_foreach((json_t *)x, k, v)
        {
            uint64_t kh = 0xcbf29ce484222325ULL;
            for (const unsigned char *p = (const unsigned char *)k; *p; p++)
                kh = (kh ^ *p) * 0x100000001b3ULL;
            sum += (kh * 31) ^ json_hash(v, depth + 1);
        }
        return h ^ sum;
    }
    default:
        return h;
    }
}

struct hidx {
    uint64_t h;
    size_t i;
};

static int cmp_hidx(const void *a, const void *b)
{
    const struct hidx *x = a, *y = b;
    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* the smallest index whose item equals an earlier one; 0 when all differ (sorting by hash: n log n) */
static size_t first_duplicate(struct vctx *c, const json_t *x, size_t len)
{
    struct hidx *hs = malloc(len * sizeof(*hs));
    if (!hs) {
        abort_v(c, "uniqueItems", "Out of memory.");
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        hs[i].h = json_hash(json_array_get(x, i), 0);
        hs[i].i = i;
    }
    qsort(hs, len, sizeof(*hs), cmp_hidx);
    size_t best = 0;
    for (size_t s = 0; s < len;) {
        size_t e = s + 1;
        while (e < len && hs[e].h == hs[s].h)
            e++;
        for (size_t p = s + 1; p < e; p++)
            for (size_t q = s; q < p; q++) {
                if (++c->steps > MAX_STEPS) {
                    free(hs);
                    abort_v(c, "uniqueItems", "Validation took too many steps.");
                    return 0;
                }
                if (json_eq(json_array_get(x, hs[p].i), json_array_get(x, hs[q].i), 0)) {
                    size_t later = hs[p].i > hs[q].i ? hs[p].i : hs[q].i;
                    if (!best || later < best)
                        best = later;
                }
            }
        s = e;
    }
    free(hs);
    return best;
}

static bool v_array(struct vctx *c, const struct node *n, const json_t *x, struct ann *a)
{
    size_t len = json_array_size(x);
    if (n->maxitems >= 0 && (long long)len > n->maxitems)
        return fail(c, "maxItems", "Array item count %zu exceeds maximum count of %lld.", len, n->maxitems);
    if (n->minitems >= 0 && (long long)len < n->minitems)
        return fail(c, "minItems", "Array item count %zu is less than minimum count of %lld.", len,
                    n->minitems);
    if (n->unique && len > 1) {
        size_t dup = first_duplicate(c, x, len);
        if (c->aborted)
            return false;
        if (dup) {
            bool pu = path_push(c, NULL, dup);
            fail(c, "uniqueItems", "Non-unique array item at index %zu.", dup);
            c->np -= pu;
            return false;
        }
    }
    size_t i = 0;
    for (; i < len && i < n->nprefix; i++)
        if (!v_down_idx(c, n->prefix[i], json_array_get(x, i), i))
            return false;
    if (a && n->prefix && i > a->items)
        a->items = i;
    if (n->items && i < len) {
        if (n->items->is_bool && !n->items->bval) {
            bool pu = path_push(c, NULL, i);
            fail(c, n->items_legacy ? "additionalItems" : "items",
                 "Index %zu has not been defined and the schema does not allow additional items.", i);
            c->np -= pu;
            return false;
        }
        for (; i < len; i++)
            if (!v_down_idx(c, n->items, json_array_get(x, i), i))
                return false;
    }
    if (a && n->items)
        a->items_all = true;
    if (n->contains) {
        size_t matches = 0;
        c->quiet++;
        for (size_t j = 0; j < len; j++) {
            if (v_down_idx(c, n->contains, json_array_get(x, j), j)) {
                matches++;
                ann_mark(a, j, len);
            }
            if (c->aborted)
                break;
        }
        c->quiet--;
        if (c->aborted)
            return false;
        long long minc = n->mincontains >= 0 ? n->mincontains : 1;
        if ((long long)matches < minc)
            return n->mincontains >= 0
                       ? fail(c, "minContains",
                              "Array contains %zu matching items, less than minContains %lld.", matches, minc)
                       : fail(c, "contains", "No items match contains.");
        if (n->maxcontains >= 0 && (long long)matches > n->maxcontains)
            return fail(c, "maxContains", "Array contains %zu matching items, more than maxContains %lld.",
                        matches, n->maxcontains);
    }
    return true;
}

static bool v_string(struct vctx *c, const struct node *n, const json_t *x)
{
    const char *s = json_string_value(x);
    size_t bl = json_string_length(x);
    /* code points <= bytes <= 4 * code points: count only when the bytes do not decide */
    if ((n->maxlen >= 0 && (long long)bl > n->maxlen) || (n->minlen >= 0 && (long long)bl / 4 < n->minlen)) {
        size_t cl = u8len(s, bl);
        if (n->maxlen >= 0 && (long long)cl > n->maxlen) {
            if (!recording(c))
                return false;
            quote(s, bl, c->buf, sizeof(c->buf));
            return fail(c, "maxLength", "String '%s' exceeds maximum length of %lld.", c->buf, n->maxlen);
        }
        if (n->minlen >= 0 && (long long)cl < n->minlen) {
            if (!recording(c))
                return false;
            quote(s, bl, c->buf, sizeof(c->buf));
            return fail(c, "minLength", "String '%s' is less than minimum length of %lld.", c->buf,
                        n->minlen);
        }
    }
    if (n->pattern) {
        int r = rx_search(n->pattern, s, bl);
        if (r < 0)
            return abort_v(c, "pattern", "The pattern ran out of steps on this string.");
        if (!r) {
            if (!recording(c))
                return false;
            quote(s, bl, c->buf, sizeof(c->buf));
            return fail(c, "pattern", "String '%s' does not match regex pattern '%s'.", c->buf,
                        n->pattern_src);
        }
    }
    return true;
}

static bool v_number(struct vctx *c, const struct node *n, const json_t *x)
{
    const char *tn = json_is_integer(x) ? "Integer" : "Float";
#define NUMTEXT()                                                                                            \
    do {                                                                                                     \
        if (json_is_integer(x))                                                                              \
            snprintf(c->xb, sizeof(c->xb), "%lld", (long long)json_integer_value(x));                        \
        else                                                                                                 \
            snprintf(c->xb, sizeof(c->xb), "%.17g", json_real_value(x));                                     \
    } while (0)
    if (n->max.set && num_cmp(x, &n->max) > 0) {
        NUMTEXT();
        num_text(&n->max, c->b, sizeof(c->b));
        return fail(c, "maximum", "%s %s exceeds maximum value of %s.", tn, c->xb, c->b);
    }
    if (n->xmax.set && num_cmp(x, &n->xmax) >= 0) {
        NUMTEXT();
        num_text(&n->xmax, c->b, sizeof(c->b));
        return fail(c, "exclusiveMaximum", "%s %s equals or exceeds exclusive maximum value of %s.", tn,
                    c->xb, c->b);
    }
    if (n->min.set && num_cmp(x, &n->min) < 0) {
        NUMTEXT();
        num_text(&n->min, c->b, sizeof(c->b));
        return fail(c, "minimum", "%s %s is less than minimum value of %s.", tn, c->xb, c->b);
    }
    if (n->xmin.set && num_cmp(x, &n->xmin) <= 0) {
        NUMTEXT();
        num_text(&n->xmin, c->b, sizeof(c->b));
        return fail(c, "exclusiveMinimum", "%s %s equals or is less than exclusive minimum value of %s.", tn,
                    c->xb, c->b);
    }
    if (n->mult.set && !multiple_of(x, &n->mult)) {
        NUMTEXT();
        num_text(&n->mult, c->b, sizeof(c->b));
        return fail(c, "multipleOf", "%s %s is not a multiple of %s.", tn, c->xb, c->b);
    }
#undef NUMTEXT
    return true;
}

static void types_text(unsigned t, char *out, size_t cap)
{
    static const struct {
        unsigned b;
        const char *n;
    } tt[] = {{T_STR, "String"}, {T_INT, "Integer"}, {T_NUM, "Number"}, {T_BOOL, "Boolean"},
              {T_OBJ, "Object"}, {T_ARR, "Array"},   {T_NULL, "Null"}};
    size_t l = 0;
    out[0] = '\0';
    if ((t & T_NUM))
        t &= ~(unsigned)T_INT;
    for (size_t i = 0; i < sizeof(tt) / sizeof(tt[0]); i++)
        if (t & tt[i].b) {
            int w = snprintf(out + l, cap - l, "%s%s", l ? ", " : "", tt[i].n);
            if (w < 0 || (size_t)w >= cap - l)
                return;
            l += (size_t)w;
        }
}

static bool type_ok(unsigned t, const json_t *x)
{
    switch (json_typeof(x)) {
    case JSON_OBJECT:
        return t & T_OBJ;
    case JSON_ARRAY:
        return t & T_ARR;
    case JSON_STRING:
        return t & T_STR;
    case JSON_INTEGER:
        return t & (T_INT | T_NUM);
    case JSON_REAL:
        return (t & T_NUM) || ((t & T_INT) && is_integer_value(x));
    case JSON_TRUE:
    case JSON_FALSE:
        return t & T_BOOL;
    default:
        return t & T_NULL;
    }
}

/* the node's dynamic-scope resource */
static const struct node *dyn_target(struct vctx *c, const struct node *n)
{
    if (!n->dynbook)
        return n->dynref;
    for (int i = 0; i < c->nscope; i++) {
        const struct resource *r = &c->s->res[c->scope[i]];
        for (size_t j = 0; j < r->ndyn; j++)
            if (r->dyn[j].node && strcmp(r->dyn[j].name, n->dynname) == 0)
                return r->dyn[j].node;
    }
    return n->dynref;
}

static bool v_body(struct vctx *c, const struct node *n, const json_t *x, struct ann *a, bool inplace)
{
    if (n->nullable && json_is_null(x))
        return true;
    if (n->types && !type_ok(n->types, x)) {
        if (!recording(c))
            return false;
        types_text(n->types, c->buf, sizeof(c->buf));
        return fail(c, "type", "Invalid type. Expected %s but got %s.", c->buf, type_name(x));
    }
    if (n->enum_) {
        size_t i;
        const json_t *e;
        bool found = false;
        json_array_foreach(n->enum_, i, e) if (json_eq(e, x, 0))
        {
            found = true;
            break;
        }
        if (!found) {
            if (!recording(c))
                return false;
            value_text(x, c->buf, sizeof(c->buf));
            return fail(c, "enum", "Value %s is not defined in enum.", c->buf);
        }
    }
    if (n->const_ && !json_eq(n->const_, x, 0)) {
        if (!recording(c))
            return false;
        value_text(x, c->buf, sizeof(c->buf));
        return fail(c, "const", "Value %s does not match const.", c->buf);
    }
    /* a $ref alone passes the caller's place on (a property's {$ref: Pet} is Pet's own object); next to
       keywords that evaluate properties it is a part of this schema, like an allOf branch */
    bool refplace = inplace || n->implicit_noadd || n->uprops;
    if (n->ref && !v(c, n->ref, x, a, refplace))
        return false;
    if (n->dynref && !v(c, dyn_target(c, n), x, a, refplace))
        return false;
    switch (json_typeof(x)) {
    case JSON_OBJECT:
        if (!v_object(c, n, x, a))
            return false;
        break;
    case JSON_ARRAY:
        if (!v_array(c, n, x, a))
            return false;
        break;
    case JSON_STRING:
        if (!v_string(c, n, x))
            return false;
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        if (!v_number(c, n, x))
            return false;
        break;
    default:
        break;
    }
    if (n->format && !fmt_check(n->format, x)) {
        if (!recording(c))
            return false;
        value_text(x, c->buf, sizeof(c->buf));
        return fail(c, "format", "Value %s does not validate against format '%s'.", c->buf, n->format_name);
    }
    for (size_t i = 0; i < n->nall; i++)
        if (!v(c, n->allof[i], x, a, true))
            return false;
    if (n->nany) {
        bool any = false;
        c->quiet++;
        for (size_t i = 0; i < n->nany; i++) {
            struct ann t = {0};
            bool ok = v(c, n->anyof[i], x, a ? &t : NULL, true);
            if (ok) {
                any = true;
                ann_merge(a, &t);
            }
            ann_free(&t);
            if (c->aborted || (ok && !a))
                break;
        }
        c->quiet--;
        if (c->aborted)
            return false;
        if (!any)
            return fail(c, "anyOf", "JSON does not match any schemas from 'anyOf'.");
    }
    if (n->none) {
        size_t count = 0, first = 0, second = 0;
        c->quiet++;
        for (size_t i = 0; i < n->none && count < 2; i++) {
            struct ann t = {0};
            if (v(c, n->oneof[i], x, a ? &t : NULL, true)) {
                if (count == 0)
                    first = i;
                else
                    second = i;
                count++;
                if (count == 1)
                    ann_merge(a, &t);
            }
            ann_free(&t);
            if (c->aborted)
                break;
        }
        c->quiet--;
        if (c->aborted)
            return false;
        if (count == 0)
            return fail(c, "oneOf", "JSON is valid against no schemas from 'oneOf'.");
        if (count > 1)
            return fail(
                c, "oneOf",
                "JSON is valid against more than one schema from 'oneOf'. Valid schema indexes: %zu, %zu.",
                first, second);
    }
    if (n->not_) {
        c->quiet++;
        bool ok = v(c, n->not_, x, NULL, true);
        c->quiet--;
        if (c->aborted)
            return false;
        if (ok)
            return fail(c, "not", "JSON is valid against schema from 'not'.");
    }
    if (n->if_) {
        struct ann t = {0};
        c->quiet++;
        bool ok = v(c, n->if_, x, a ? &t : NULL, true);
        c->quiet--;
        if (c->aborted) {
            ann_free(&t);
            return false;
        }
        if (ok)
            ann_merge(a, &t);
        ann_free(&t);
        const struct node *br = ok ? n->then_ : n->else_;
        if (br && !v(c, br, x, a, true)) {
            if (recording(c))
                fail(c, ok ? "then" : "else", "JSON does not match schema from '%s'.", ok ? "then" : "else");
            return false;
        }
    }
    return true;
}

static bool v(struct vctx *c, const struct node *n, const json_t *x, struct ann *a, bool inplace)
{
    if (c->aborted)
        return false;
    if (n->is_bool) {
        if (n->bval)
            return true;
        return fail(c, "false", "Schema always fails validation.");
    }
    if (++c->steps > MAX_STEPS)
        return abort_v(c, "maxSteps", "Validation took too many steps.");
    if (c->depth >= MAX_SCHEMA_DEPTH)
        return abort_v(c, "maxDepth", "The schema nests (through $ref) deeper than the validator allows.");
    c->depth++;
    bool pushed = false;
    if (n->resource >= 0 && (c->nscope == 0 || c->scope[c->nscope - 1] != n->resource) &&
        c->nscope < MAX_SCOPE) {
        c->scope[c->nscope++] = n->resource;
        pushed = true;
    }
    bool own_obj = json_is_object(x) && (n->uprops || (n->implicit_noadd && !inplace));
    bool own_arr = json_is_array(x) && n->uitems;
    bool ok;
    if (own_obj || own_arr) {
        struct ann t = {0};
        ok = v_body(c, n, x, &t, inplace);
        if (ok && t.oom)
            ok = abort_v(c, "unevaluatedProperties", "Out of memory.");
        if (ok && own_obj) {
            const char *k;
            json_t *val;
            json_object_foreach((json_t *)x, k, val)
            {
                if (ann_has_key(&t, k))
                    continue;
                if (!n->uprops) {
                    if (recording(c)) {
                        quote(k, strlen(k), c->buf, sizeof(c->buf));
                        bool pu = path_push(c, k, 0);
                        fail(c, "additionalProperties",
                             "Property '%s' has not been defined and the schema does not allow additional "
                             "properties.",
                             c->buf);
                        c->np -= pu;
                    }
                    ok = false;
                    break;
                }
                if (n->uprops->is_bool && !n->uprops->bval) {
                    if (recording(c)) {
                        quote(k, strlen(k), c->buf, sizeof(c->buf));
                        bool pu = path_push(c, k, 0);
                        fail(
                            c, "unevaluatedProperties",
                            "Property '%s' has not been successfully evaluated and the schema does not allow "
                            "unevaluated properties.",
                            c->buf);
                        c->np -= pu;
                    }
                    ok = false;
                    break;
                }
                if (!v_down_key(c, n->uprops, val, k)) {
                    ok = false;
                    break;
                }
                ann_key(&t, k);
            }
        }
        if (ok && own_arr) {
            size_t len = json_array_size(x);
            for (size_t i = 0; i < len && !t.items_all; i++) {
                if (i < t.items || (i < t.nmarks && t.marks[i]))
                    continue;
                if (n->uitems->is_bool && !n->uitems->bval) {
                    bool pu = path_push(c, NULL, i);
                    fail(
                        c, "unevaluatedItems",
                        "Item at index %zu has not been successfully evaluated and the schema does not allow "
                        "unevaluated items.",
                        i);
                    c->np -= pu;
                    ok = false;
                    break;
                }
                if (!v_down_idx(c, n->uitems, json_array_get(x, i), i)) {
                    ok = false;
                    break;
                }
            }
            t.items_all = true;
        }
        if (ok)
            ann_merge(a, &t);
        ann_free(&t);
    } else {
        ok = v_body(c, n, x, a, inplace);
    }
    if (pushed)
        c->nscope--;
    c->depth--;
    return ok;
}

bool pt_jschema_validate(const struct pt_jschema *s, const json_t *instance, struct pt_jschema_error *e)
{
    struct vctx c;
    c.s = s;
    c.e = e;
    c.quiet = 0;
    c.recorded = c.aborted = false;
    c.depth = 0;
    c.np = 0;
    c.nscope = 0;
    c.steps = 0;
    if (e) {
        e->path[0] = e->keyword[0] = e->message[0] = '\0';
    }
    if (!s || !s->root || !instance) {
        if (e)
            snprintf(e->message, sizeof(e->message), "No schema or no instance.");
        return false;
    }
    bool ok = v(&c, s->root, instance, NULL, false);
    if (c.aborted)
        ok = false;
    if (!ok && e && !e->message[0])
        snprintf(e->message, sizeof(e->message), "JSON does not match the schema.");
    return ok;
}

/* ------------------------------------------------------------------------- */
/* Sample instances                                                          */

#define SAMPLE_MAX_DEPTH 16
#define SAMPLE_OPTIONAL_DEPTH 6

struct sctx {
    const json_t *root;
    long budget; /* values left to make: recursive schemas with several required branches stay small */
};

static json_t *sample(struct sctx *sc, const json_t *s, int depth);

static const json_t *sample_ref(const json_t *root, const char *ref)
{
    if (ref[0] != '#')
        return NULL;
    char dec[512];
    if (strlen(ref) >= sizeof(dec) || !pct_decode(ref + 1, dec))
        return NULL;
    const json_t *cur = root;
    if (!dec[0])
        return cur;
    if (dec[0] != '/')
        return NULL;
    char *p = dec + 1;
    char tok[512];
    while (cur) {
        size_t n = 0;
        while (*p && *p != '/') {
            if (p[0] == '~' && p[1] == '0')
                tok[n++] = '~', p += 2;
            else if (p[0] == '~' && p[1] == '1')
                tok[n++] = '/', p += 2;
            else
                tok[n++] = *p++;
        }
        tok[n] = '\0';
        if (json_is_object(cur))
            cur = json_object_get(cur, tok);
        else if (json_is_array(cur))
            cur = json_array_get(cur, strtoul(tok, NULL, 10));
        else
            cur = NULL;
        if (!*p)
            break;
        p++;
    }
    return cur;
}

static const char *sample_type(const json_t *s)
{
    const json_t *t = json_object_get(s, "type");
    if (json_is_string(t))
        return json_string_value(t);
    if (json_is_array(t)) {
        size_t i;
        const json_t *e;
        json_array_foreach(t, i, e) if (json_is_string(e) && strcmp(json_string_value(e), "null") !=
                                                                 0) return json_string_value(e);
        if (json_array_size(t))
            return "null";
    }
    if (json_object_get(s, "properties") || json_object_get(s, "required") ||
        json_object_get(s, "additionalProperties") || json_object_get(s, "patternProperties"))
        return "object";
    if (json_object_get(s, "items") || json_object_get(s, "prefixItems"))
        return "array";
    if (json_object_get(s, "minLength") || json_object_get(s, "maxLength") || json_object_get(s, "pattern") ||
        json_object_get(s, "format"))
        return "string";
    if (json_object_get(s, "minimum") || json_object_get(s, "maximum") || json_object_get(s, "multipleOf") ||
        json_object_get(s, "exclusiveMinimum") || json_object_get(s, "exclusiveMaximum"))
        return "number";
    return NULL;
}

static json_t *sample_string(const json_t *s)
{
    static const struct {
        const char *f, *v;
    } fv[] = {
        {"date-time", "2024-01-01T00:00:00Z"},
        {"date", "2024-01-01"},
        {"time", "00:00:00Z"},
        {"email", "user@example.com"},
        {"idn-email", "user@example.com"},
        {"uuid", "3fa85f64-5717-4562-b3fc-2c963f66afa6"},
        {"uri", "https://example.com/"},
        {"url", "https://example.com/"},
        {"iri", "https://example.com/"},
        {"uri-reference", "/path"},
        {"hostname", "example.com"},
        {"ipv4", "192.0.2.1"},
        {"ipv6", "2001:db8::1"},
        {"byte", "U3dhZ2dlciByb2Nrcw=="},
        {"binary", "binary"},
        {"password", "password"},
        {"duration", "P1D"},
        {"json-pointer", "/path"},
        {"regex", "^.*$"},
    };
    const char *v = "string";
    const json_t *f = json_object_get(s, "format");
    if (json_is_string(f))
        for (size_t i = 0; i < sizeof(fv) / sizeof(fv[0]); i++)
            if (strcmp(fv[i].f, json_string_value(f)) == 0)
                v = fv[i].v;
    json_int_t minl = json_integer_value(json_object_get(s, "minLength"));
    const json_t *mx = json_object_get(s, "maxLength");
    size_t len = strlen(v);
    if (minl > (json_int_t)len && minl <= 4096) {
        char *b = malloc((size_t)minl + 1);
        if (!b)
            return NULL;
        for (json_int_t i = 0; i < minl; i++)
            b[i] = v[i % (json_int_t)len];
        b[minl] = '\0';
        json_t *r = json_string(b);
        free(b);
        return r;
    }
    if (json_is_integer(mx) && json_integer_value(mx) >= 0 && json_integer_value(mx) < (json_int_t)len)
        return json_stringn(v, (size_t)json_integer_value(mx));
    return json_string(v);
}

static json_t *sample_number(const json_t *s, bool integer)
{
    const json_t *min = json_object_get(s, "minimum"), *max = json_object_get(s, "maximum");
    const json_t *xmin = json_object_get(s, "exclusiveMinimum"),
                 *xmax = json_object_get(s, "exclusiveMaximum");
    double v = 0;
    bool have = false;
    if (json_is_number(min)) {
        v = json_number_value(min);
        if (json_is_true(xmin))
            v += integer ? 1 : 0.5;
        have = true;
    } else if (json_is_number(xmin)) {
        v = integer ? floor(json_number_value(xmin)) + 1 : json_number_value(xmin) + 1;
        have = true;
    }
    if (!have) {
        if (json_is_number(max) && json_number_value(max) < 0)
            v = json_number_value(max) - (json_is_true(xmax) ? 1 : 0);
        else if (json_is_number(xmax) && json_number_value(xmax) <= 0)
            v = json_number_value(xmax) - 1;
    }
    if (integer) {
        v = ceil(v);
        return json_integer((json_int_t)v);
    }
    if (v == floor(v) && fabs(v) < 1e15 && !(json_is_real(min) || json_is_real(xmin) || json_is_real(max)))
        return json_integer((json_int_t)v);
    return json_real(v);
}

static json_t *sample_first_example(const json_t *s)
{
    const json_t *v;
    if ((v = json_object_get(s, "example")))
        return json_deep_copy(v);
    v = json_object_get(s, "examples");
    if (json_is_array(v) && json_array_size(v))
        return json_deep_copy(json_array_get(v, 0));
    if (json_is_object(v) && json_object_size(v)) {
        void *it = json_object_iter((json_t *)v);
        const json_t *e = json_object_iter_value(it);
        const json_t *val = json_object_get(e, "value");
        return json_deep_copy(val ? val : e);
    }
    if ((v = json_object_get(s, "default")))
        return json_deep_copy(v);
    if ((v = json_object_get(s, "const")))
        return json_deep_copy(v);
    v = json_object_get(s, "enum");
    if (json_is_array(v) && json_array_size(v))
        return json_deep_copy(json_array_get(v, 0));
    return NULL;
}

static void sample_merge(json_t **into, json_t *add)
{
    if (!add)
        return;
    if (!*into) {
        *into = add;
        return;
    }
    if (json_is_object(*into) && json_is_object(add))
        json_object_update_missing(*into, add);
    json_decref(add);
}

static json_t *sample_object(struct sctx *sc, const json_t *s, int depth)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    const json_t *props = json_object_get(s, "properties");
    const json_t *req = json_object_get(s, "required");
    size_t i;
    const json_t *r;
    json_array_foreach(req, i, r)
    {
        const json_t *ps = json_is_string(r) ? json_object_get(props, json_string_value(r)) : NULL;
        if (!ps || json_object_get(o, json_string_value(r)))
            continue;
        json_t *v = sample(sc, ps, depth + 1);
        if (v)
            json_object_set_new(o, json_string_value(r), v);
    }
    if (depth < SAMPLE_OPTIONAL_DEPTH && json_is_object(props)) {
        const char *k;
        const json_t *ps;
        json_object_foreach((json_t *)props, k, ps)
        {
            if (json_object_get(o, k))
                continue;
            if (json_is_true(json_object_get(ps, "writeOnly")))
                continue;
            json_t *v = sample(sc, ps, depth + 1);
            if (v)
                json_object_set_new(o, k, v);
        }
    }
    const json_t *ap = json_object_get(s, "additionalProperties");
    if (!props && json_is_object(ap) && depth < SAMPLE_OPTIONAL_DEPTH) {
        json_t *v = sample(sc, ap, depth + 1);
        if (v)
            json_object_set_new(o, "additionalProp1", v);
    }
    return o;
}

static json_t *sample_array(struct sctx *sc, const json_t *s, int depth)
{
    json_t *a = json_array();
    if (!a)
        return NULL;
    const json_t *pre = json_object_get(s, "prefixItems"), *items = json_object_get(s, "items");
    if (json_is_array(items)) {
        pre = items;
        items = NULL;
    }
    size_t i;
    const json_t *e;
    json_array_foreach(pre, i, e)
    {
        json_t *v = sample(sc, e, depth + 1);
        if (!v)
            break;
        json_array_append_new(a, v);
    }
    if (!json_array_size(a) && is_schema_value(items) && !json_is_false(items)) {
        json_int_t n = json_integer_value(json_object_get(s, "minItems"));
        if (n < 1)
            n = 1;
        if (n > 10)
            n = 10;
        for (json_int_t k = 0; k < n; k++) {
            json_t *v = sample(sc, items, depth + 1);
            if (!v)
                break;
            json_array_append_new(a, v);
        }
    }
    return a;
}

static json_t *sample(struct sctx *sc, const json_t *s, int depth)
{
    if (depth > SAMPLE_MAX_DEPTH || --sc->budget < 0)
        return NULL;
    if (json_is_boolean(s))
        return json_is_true(s) ? json_object() : NULL;
    if (!json_is_object(s))
        return NULL;
    json_t *ex = sample_first_example(s);
    if (ex)
        return ex;
    const json_t *ref = json_object_get(s, "$ref");
    if (json_is_string(ref)) {
        const json_t *t = sample_ref(sc->root, json_string_value(ref));
        return t ? sample(sc, t, depth + 1) : json_null();
    }
    const char *type = sample_type(s);
    json_t *out = NULL;
    const json_t *all = json_object_get(s, "allOf");
    if (!type) {
        const json_t *alt = json_object_get(s, "oneOf");
        if (!json_is_array(alt) || !json_array_size(alt))
            alt = json_object_get(s, "anyOf");
        if (json_is_array(alt) && json_array_size(alt))
            out = sample(sc, json_array_get(alt, 0), depth + 1);
    } else if (strcmp(type, "object") == 0) {
        out = sample_object(sc, s, depth);
    } else if (strcmp(type, "array") == 0) {
        out = sample_array(sc, s, depth);
    } else if (strcmp(type, "string") == 0) {
        out = sample_string(s);
    } else if (strcmp(type, "integer") == 0) {
        out = sample_number(s, true);
    } else if (strcmp(type, "number") == 0) {
        out = sample_number(s, false);
    } else if (strcmp(type, "boolean") == 0) {
        out = json_true();
    } else {
        out = json_null();
    }
    if (json_is_array(all)) {
        size_t i;
        const json_t *e;
        json_array_foreach(all, i, e) sample_merge(&out, sample(sc, e, depth + 1));
    }
    if (!out && !type && !json_is_array(all))
        out = json_object();
    return out;
}

json_t *pt_jschema_sample(const json_t *schema, const json_t *root)
{
    if (!schema)
        return NULL;
    struct sctx sc = {root ? root : schema, 20000};
    json_t *r = sample(&sc, schema, 0);
    return r ? r : json_null();
}
