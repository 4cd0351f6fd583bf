/*
 * test_graphql -- the GraphQL parser (executable documents, SDL), its
 * bounds and error positions, schemas, request validation, depth and field
 * counts, walking, pruning and printing (core/base/pt_graphql.c), and the
 * GraphQL import: SDL and introspection results (core/conf/pt_import_graphql.c).
 */
#include "base/pt_graphql.h"
#include "conf/pt_import.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

static const char *SDL =
    "\"\"\"The root\"\"\" type Query { hero(episode: Episode): Character user(id: ID!): User\n"
    "  users(first: Int = 10, filter: UserFilter): [User!]! search(q: String!): [SearchResult] hello: String "
    "}\n"
    "enum Episode { NEWHOPE EMPIRE JEDI }\n"
    "interface Character { id: ID! name: String friends: [Character] }\n"
    "type Human implements Character { id: ID! name: String friends: [Character] height(unit: String): Float "
    "}\n"
    "type User { id: ID! name: String secret: String posts: [Post] }\n"
    "type Post { title: String author: User }\n"
    "union SearchResult = User | Post\n"
    "input UserFilter { name: String tags: [String!] = [\"a\"] }\n"
    "type Mutation { addUser(name: String!): User }\n"
    "extend type Query { me: User }\n"
    "scalar Date @specifiedBy(url: \"https://example.com\")\n"
    "directive @auth(role: String) repeatable on FIELD_DEFINITION | OBJECT | FIELD\n";

static struct pt_graphql_doc *parse_ok(const char *q)
{
    struct pt_graphql_error e;
    struct pt_graphql_doc *d = pt_graphql_parse(q, strlen(q), PT_GRAPHQL_EXECUTABLE, NULL, &e);
    if (!d)
        fail_msg("parse failed at %d:%d: %s (%s)", e.line, e.column, e.message, q);
    return d;
}

/* Parse error at line:col with a message containing `needle`. */
static void parse_err(const char *q, unsigned what, const struct pt_graphql_limits *lim, int line, int col,
                      const char *needle)
{
    struct pt_graphql_error e;
    struct pt_graphql_doc *d = pt_graphql_parse(q, strlen(q), what, lim, &e);
    if (d)
        fail_msg("parsed, but should not: %s", q);
    if (e.line != line || e.column != col || !strstr(e.message, needle))
        fail_msg("got %d:%d %s, want %d:%d ...%s... (%s)", e.line, e.column, e.message, line, col, needle, q);
}

static char *print_op(struct pt_graphql_doc *d, const char *opname)
{
    struct pt_graphql_error e;
    struct pt_graphql_node *op = pt_graphql_operation(d, opname, &e);
    assert_non_null(op);
    return pt_graphql_print(d, op, NULL);
}

/* Parses, selects, prints: the compact text. */
static void roundtrip(const char *q, const char *want)
{
    struct pt_graphql_doc *d = parse_ok(q);
    char *p = print_op(d, NULL);
    assert_string_equal(p, want);
    /* the printed text parses to the same print */
    struct pt_graphql_doc *d2 = parse_ok(p);
    char *p2 = print_op(d2, NULL);
    assert_string_equal(p2, want);
    free(p);
    free(p2);
    pt_graphql_doc_free(d);
    pt_graphql_doc_free(d2);
}

/* ------------------------------------------------------------- parser */

static void test_executable(void **state)
{
    (void)state;
    roundtrip("{ a }", "{a}");
    roundtrip(
        "query Q($id: ID! = \"x\" @d, $l: [[Int!]]!) @op { f: user(id: $id) @skip(if: false) { name } }",
        "query Q($id:ID!=\"x\"@d,$l:[[Int!]]!)@op{f:user(id:$id)@skip(if:false){name}}");
    roundtrip("mutation { add(input: {a: 1, b: [1.5, -2e3, 0.0], c: ENUM, d: null, e: true, f: $v}) { id } }",
              "mutation{add(input:{a:1,b:[1.5,-2e3,0.0],c:ENUM,d:null,e:true,f:$v}){id}}");
    roundtrip("subscription S { ticks }", "subscription S{ticks}");
    roundtrip("{ a ...F ... on T { b } ... @include(if: true) { c } } fragment F on T { d }",
              "{a ...F ...on T{b}...@include(if:true){c}}fragment F on T{d}");
    /* commas, comments and a BOM are ignored */
    roundtrip("\xEF\xBB\xBF# comment\n{ a, b, # more\n c }", "{a b c}");
    /* strings: escapes, unicode, surrogate pairs, \u{...} */
    roundtrip("{ a(s: \"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00\\u{1F600}\") }",
              "{a(s:\"q\\\"\\\\/\\u0008\\u000C\\n\\r\\t\xC3\xA9\xF0\x9F\x98\x80\xF0\x9F\x98\x80\")}");
    /* block strings: common indentation and blank first and last lines go */
    roundtrip("{ a(s: \"\"\"\n    hello\n      world\n    \\\"\"\" done\n  \"\"\") }",
              "{a(s:\"hello\\n  world\\n\\\"\\\"\\\" done\")}");
    roundtrip("{ a(s: \"\"\"\"\"\") }", "{a(s:\"\")}");
    /* keywords are names elsewhere */
    roundtrip("{ query fragment on: type(on: on) { null: true } }",
              "{query fragment on:type(on:on){null:true}}");
}

static void test_sdl(void **state)
{
    (void)state;
    struct pt_graphql_error e;
    struct pt_graphql_doc *d = pt_graphql_parse(SDL, strlen(SDL), PT_GRAPHQL_SDL, NULL, &e);
    assert_non_null(d);
    int kinds[32], n = 0;
    for (struct pt_graphql_node *x = d->defs; x && n < 32; x = x->next)
        kinds[n++] = x->kind;
    assert_int_equal(n, 12);
    assert_int_equal(kinds[0], PT_GQL_OBJECT_DEF);
    assert_string_equal(d->defs->description, "The root");
    assert_int_equal(kinds[1], PT_GQL_ENUM_DEF);
    assert_int_equal(kinds[2], PT_GQL_INTERFACE_DEF);
    assert_int_equal(kinds[6], PT_GQL_UNION_DEF);
    assert_int_equal(kinds[7], PT_GQL_INPUT_DEF);
    assert_int_equal(kinds[11], PT_GQL_DIRECTIVE_DEF);
    struct pt_graphql_node *ext = d->defs;
    for (int i = 0; i < 9; i++)
        ext = ext->next;
    assert_true(ext->extend);
    assert_string_equal(ext->name, "Query");
    struct pt_graphql_node *dir = ext->next->next;
    assert_true(dir->repeatable);
    assert_string_equal(dir->list->next->next->name, "FIELD");
    pt_graphql_doc_free(d);

    const char *more = "schema @a { query: Q mutation: M }\n"
                       "extend schema { subscription: S }\n"
                       "type Q implements & A & B @x { f(a: Int = 1 @deprecated, \"doc\" b: [In!]!): [T] "
                       "@deprecated(reason: \"r\") }\n"
                       "extend type Q @y\n"
                       "extend union U = | A | B\n"
                       "extend enum E { X @deprecated }\n"
                       "extend input In { z: Int }\n"
                       "extend scalar D @s\n"
                       "extend interface I { g: Int }\n"
                       "\"\"\"block\"\"\" directive @d on | QUERY\n";
    d = pt_graphql_parse(more, strlen(more), PT_GRAPHQL_SDL, NULL, &e);
    if (!d)
        fail_msg("%d:%d %s", e.line, e.column, e.message);
    assert_int_equal(d->defs->kind, PT_GQL_SCHEMA_DEF);
    assert_int_equal(d->defs->list->next->op, PT_GRAPHQL_MUTATION);
    pt_graphql_doc_free(d);
}

static void test_errors_with_positions(void **state)
{
    (void)state;
    unsigned X = PT_GRAPHQL_EXECUTABLE, S = PT_GRAPHQL_SDL;
    parse_err("", X, NULL, 1, 1, "empty");
    parse_err("  # only a comment\n", X, NULL, 2, 1, "empty");
    parse_err("{ a", X, NULL, 1, 4, "expected");
    parse_err("{ a }\n}", X, NULL, 2, 1, "found '}'");
    parse_err("{\n  a(b: )\n}", X, NULL, 2, 8, "expected a value");
    parse_err("{ a(b: \"x\n\") }", X, NULL, 1, 8, "unterminated string");
    parse_err("{ a(b: \"\\q\") }", X, NULL, 1, 9, "invalid escape");
    parse_err("{ a(b: \"\\uD800\") }", X, NULL, 1, 9, "lone surrogate");
    parse_err("{ a(b: \"\\u{110000}\") }", X, NULL, 1, 9, "invalid Unicode");
    parse_err("{ a(b: \"\xC3\x28\") }", X, NULL, 1, 9, "invalid UTF-8");
    parse_err("{ a(b: 012) }", X, NULL, 1, 9, "unexpected digit after 0");
    parse_err("{ a(b: 1.) }", X, NULL, 1, 10, "digit expected after '.'");
    parse_err("{ a(b: 1e) }", X, NULL, 1, 10, "exponent");
    parse_err("{ a(b: 12abc) }", X, NULL, 1, 10, "after it");
    parse_err("{ a(b: 1.5.2) }", X, NULL, 1, 11, "after it");
    parse_err("{ a .. }", X, NULL, 1, 5, "'...'");
    parse_err("{ a ? }", X, NULL, 1, 5, "unexpected character '?'");
    parse_err("{ a \x01 }", X, NULL, 1, 5, "control character");
    parse_err("{ \xC3\xA9t\xC3\xA9 }", X, NULL, 1, 3, "non-ASCII");
    /* columns count code points: é is one */
    parse_err("{ a(s: \"\xC3\xA9\xC3\xA9\") ? }", X, NULL, 1, 14, "'?'");
    parse_err("{ a(s: \"\"\"\nx\n\"\"\" ?) }", X, NULL, 3, 5, "unexpected character '?'");
    parse_err("\"\"\"never closed", X, NULL, 1, 1, "unterminated block string");
    parse_err("\"\"\"never closed", S, NULL, 1, 1, "unterminated block string");
    parse_err("query ($v: Int = $w) { a }", X, NULL, 1, 18, "constant");
    parse_err("fragment on on T { a }", X, NULL, 1, 10, "fragment name");
    parse_err("type T { a: Int }", X, NULL, 1, 1, "not allowed in an executable document");
    parse_err("{ a }", S, NULL, 1, 1, "not allowed in a schema");
    parse_err("enum E { true }", S, NULL, 1, 10, "enum value");
    parse_err("directive @d on NOWHERE", S, NULL, 1, 17, "directive location");
    parse_err("\"d\" extend type T { a: Int }", S, NULL, 1, 5, "description");
    parse_err("type T { a: [Int }", S, NULL, 1, 18, "expected ']'");
    parse_err("type T { a(x): Int }", S, NULL, 1, 13, "expected ':'");
    parse_err("extend directive @d on FIELD", S, NULL, 1, 8, "after 'extend'");
}

static void test_bounds(void **state)
{
    (void)state;
    /* bytes */
    struct pt_graphql_limits lim = {.max_bytes = 10};
    struct pt_graphql_error e;
    assert_null(pt_graphql_parse("{ abcdefghij }", 14, PT_GRAPHQL_EXECUTABLE, &lim, &e));
    assert_non_null(strstr(e.message, "longer than 10 bytes"));
    /* tokens */
    lim = (struct pt_graphql_limits){.max_tokens = 5};
    parse_err("{ a b c d e f }", PT_GRAPHQL_EXECUTABLE, &lim, 1, 11, "more than 5 tokens");
    /* nesting of selections, values, list types: refused at the level that passes the limit */
    lim = (struct pt_graphql_limits){.max_depth = 3};
    parse_err("{ a { b { c { d } } } }", PT_GRAPHQL_EXECUTABLE, &lim, 1, 13, "deeper than 3");
    parse_err("{ a(x: [[[[1]]]]) }", PT_GRAPHQL_EXECUTABLE, &lim, 1, 10, "deeper than 3");
    parse_err("{ a(x: {a: {b: {c: {d: 1}}}}) }", PT_GRAPHQL_EXECUTABLE, &lim, 1, 16, "deeper than 3");
    parse_err("type T { a: [[[[Int]]]] }", PT_GRAPHQL_SDL, &lim, 1, 16, "deeper than 3");
    /* a hostile document with the default limits: a million '{' and '[' end in an error, not a crash */
    size_t n = 1000000;
    char *deep = malloc(n + 8);
    for (size_t i = 0; i < n; i++)
        deep[i] = (i % 2) ? 'a' : '{';
    deep[n] = '\0';
    struct pt_graphql_doc *d = pt_graphql_parse(deep, n, PT_GRAPHQL_EXECUTABLE, NULL, &e);
    assert_null(d);
    if (!strstr(e.message, "deeper than 64"))
        fail_msg("%d:%d %s", e.line, e.column, e.message);
    memcpy(deep, "{ a(x: ", 7);
    memset(deep + 7, '[', n - 7);
    assert_null(pt_graphql_parse(deep, n, PT_GRAPHQL_EXECUTABLE, NULL, &e));
    if (!strstr(e.message, "deeper than 64"))
        fail_msg("%d:%d %s", e.line, e.column, e.message);
    /* a million tokens of one long line: columns stay linear */
    for (size_t i = 0; i < n; i++)
        deep[i] = (i % 2) ? ' ' : 'a';
    deep[0] = '{';
    deep[n - 1] = '}';
    clock_t t0 = clock();
    d = pt_graphql_parse(deep, n, PT_GRAPHQL_EXECUTABLE, NULL, &e);
    assert_non_null(d);
    assert_true(d->tokens > 400000);
    assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 5.0);
    pt_graphql_doc_free(d);
    free(deep);
    /* NULL text */
    assert_null(pt_graphql_parse(NULL, 0, 0, NULL, &e));
}

/* A caller's allocator: zeroed memory from one block, never freed by the parser. */
struct bump {
    char *p;
    size_t used, cap;
    int calls;
};

static void *bump_alloc(void *ctx, size_t n)
{
    struct bump *b = ctx;
    b->calls++;
    n = (n + 15) & ~(size_t)15;
    if (b->cap - b->used < n)
        return NULL;
    void *p = b->p + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

static void test_caller_allocator(void **state)
{
    (void)state;
    struct bump b = {malloc(1 << 20), 0, 1 << 20, 0};
    struct pt_graphql_limits lim = {.alloc = bump_alloc, .alloc_ctx = &b};
    struct pt_graphql_error e;
    const char *q = "query Q($a: Int) { me(x: $a) { ...F } } fragment F on User { name }";
    struct pt_graphql_doc *d = pt_graphql_parse(q, strlen(q), PT_GRAPHQL_EXECUTABLE, &lim, &e);
    assert_non_null(d);
    assert_true(b.calls >= 3 && (char *)d >= b.p && (char *)d < b.p + b.cap);
    struct pt_graphql_node *op = pt_graphql_operation(d, NULL, &e);
    assert_non_null(op);
    assert_int_equal(pt_graphql_depth(d, op), 2);
    pt_graphql_doc_free(d); /* releases nothing: the block does */
    /* errors too leave the memory to the caller */
    assert_null(pt_graphql_parse("{ a(", 4, PT_GRAPHQL_EXECUTABLE, &lim, &e));
    /* an allocator that refuses: an error, not a crash */
    struct bump tiny = {b.p, 0, 64, 0};
    lim.alloc_ctx = &tiny;
    assert_null(pt_graphql_parse(q, strlen(q), PT_GRAPHQL_EXECUTABLE, &lim, &e));
    assert_non_null(strstr(e.message, "out of memory"));
    /* a schema ignores it and owns its memory */
    const char *sdl = "type Query { a: Int }";
    lim.alloc_ctx = &b;
    int before = b.calls;
    struct pt_graphql_schema *s = pt_graphql_schema_parse(sdl, strlen(sdl), &lim, &e);
    assert_non_null(s);
    assert_int_equal(b.calls, before);
    pt_graphql_schema_free(s);
    free(b.p);
}

/* ------------------------------------------------------------- schemas */

static struct pt_graphql_schema *schema(void)
{
    struct pt_graphql_error e;
    struct pt_graphql_schema *s = pt_graphql_schema_parse(SDL, strlen(SDL), NULL, &e);
    if (!s)
        fail_msg("schema: %d:%d %s", e.line, e.column, e.message);
    return s;
}

static void schema_err(const char *sdl, int line, int col, const char *needle)
{
    struct pt_graphql_error e;
    struct pt_graphql_schema *s = pt_graphql_schema_parse(sdl, strlen(sdl), NULL, &e);
    if (s)
        fail_msg("schema built, but should not: %s", sdl);
    if (e.line != line || e.column != col || !strstr(e.message, needle))
        fail_msg("got %d:%d %s, want %d:%d ...%s...", e.line, e.column, e.message, line, col, needle);
}

static void test_schema(void **state)
{
    (void)state;
    struct pt_graphql_schema *s = schema();
    assert_string_equal(pt_graphql_schema_root(s, PT_GRAPHQL_QUERY), "Query");
    assert_string_equal(pt_graphql_schema_root(s, PT_GRAPHQL_MUTATION), "Mutation");
    assert_null(pt_graphql_schema_root(s, PT_GRAPHQL_SUBSCRIPTION));
    assert_int_equal(pt_graphql_schema_type_kind(s, "Episode"), PT_GQL_ENUM_DEF);
    assert_int_equal(pt_graphql_schema_type_kind(s, "String"), PT_GQL_SCALAR_DEF);
    assert_int_equal(pt_graphql_schema_type_kind(s, "__Type"), PT_GQL_OBJECT_DEF);
    assert_int_equal(pt_graphql_schema_type_kind(s, "Nope"), 0);
    /* fields from the extension too */
    const struct pt_graphql_node *me = pt_graphql_schema_field(s, "Query", "me");
    assert_non_null(me);
    assert_string_equal(pt_graphql_type_name(me->type), "User");
    assert_string_equal(pt_graphql_type_name(pt_graphql_schema_field(s, "Query", "users")->type), "User");
    assert_null(pt_graphql_schema_field(s, "Query", "nope"));
    assert_null(pt_graphql_schema_field(s, "Episode", "x"));
    pt_graphql_schema_free(s);

    /* explicit roots */
    const char *r = "schema { query: Q } type Q { a: Int } type Query { b: Int }";
    struct pt_graphql_error e;
    s = pt_graphql_schema_parse(r, strlen(r), NULL, &e);
    assert_non_null(s);
    assert_string_equal(pt_graphql_schema_root(s, PT_GRAPHQL_QUERY), "Q");
    assert_null(pt_graphql_schema_root(s, PT_GRAPHQL_MUTATION));
    pt_graphql_schema_free(s);
    /* a built-in scalar may be declared again */
    r = "scalar String type Query { a: String }";
    s = pt_graphql_schema_parse(r, strlen(r), NULL, &e);
    assert_non_null(s);
    pt_graphql_schema_free(s);

    schema_err("type Query { a: Nope }", 1, 17, "unknown type Nope");
    schema_err("type Query { a: Int } type Query { b: Int }", 1, 23, "defined twice");
    schema_err("type Query { a: Int } extend type User { b: Int }", 1, 23, "not defined");
    schema_err("type Query { a: Int } extend input Query { b: Int }", 1, 23, "different kind");
    schema_err("type Query { a(x: Query): Int }", 1, 19, "not an input type");
    schema_err("input I { a: Int } type Query { a: I }", 1, 36, "not an output type");
    schema_err("type Query { a: U } type A { x: Int } union U = A | Int", 1, 53, "not an object type");
    schema_err("type Query implements String { a: Int }", 1, 23, "not an interface");
    schema_err("type Mutation { a: Int }", 0, 0, "no query type");
    schema_err("type __Mine { a: Int } type Query { a: Int }", 1, 1, "reserved");
    schema_err("schema { query: Q query: Q } type Q { a: Int }", 1, 19, "twice");
    schema_err("schema { query: E } enum E { A }", 0, 0, "not an object type");
    schema_err("type Query { a: Int } directive @d on FIELD directive @d on QUERY", 1, 45, "defined twice");
}

/* ------------------------------------------------------------- validation */

static void valid(struct pt_graphql_schema *s, const char *q, const char *opname)
{
    struct pt_graphql_error e;
    struct pt_graphql_doc *d = parse_ok(q);
    struct pt_graphql_node *op = pt_graphql_operation(d, opname, &e);
    if (!op)
        fail_msg("no operation: %d:%d %s (%s)", e.line, e.column, e.message, q);
    if (!pt_graphql_validate(s, d, op, &e))
        fail_msg("invalid: %d:%d %s (%s)", e.line, e.column, e.message, q);
    pt_graphql_doc_free(d);
}

static void invalid(struct pt_graphql_schema *s, const char *q, const char *opname, int line, int col,
                    const char *needle)
{
    struct pt_graphql_error e;
    struct pt_graphql_doc *d = parse_ok(q);
    struct pt_graphql_node *op = pt_graphql_operation(d, opname, &e);
    if (op && pt_graphql_validate(s, d, op, &e))
        fail_msg("valid, but should not be: %s", q);
    if (e.line != line || e.column != col || !strstr(e.message, needle))
        fail_msg("got %d:%d %s, want %d:%d ...%s... (%s)", e.line, e.column, e.message, line, col, needle, q);
    pt_graphql_doc_free(d);
}

static void test_validation(void **state)
{
    (void)state;
    struct pt_graphql_schema *s = schema();
    valid(s, "{ me { name posts { title author { id } } } }", NULL);
    valid(
        s,
        "query Q($id: ID!, $f: UserFilter, $e: Episode = JEDI) { user(id: $id) { ...U } "
        "users(filter: $f) { id } hero(episode: $e) { id ... on Human { height(unit: \"m\") } __typename } } "
        "fragment U on User { name @include(if: true) secret @auth(role: \"x\") }",
        NULL);
    valid(s, "{ search(q: \"x\") { __typename ... on User { name } ... on Post { title } } }", NULL);
    valid(s,
          "{ __schema { queryType { name } types { name fields { name type { kind ofType { name } } } } } "
          "__type(name: \"User\") { name kind } }",
          NULL);
    valid(s, "query A { me { id } } query B { hello }", "B");
    valid(s, "mutation M($n: String!) { addUser(name: $n) { id } }", NULL);
    valid(s, "{ users { id } }", NULL); /* first has a default */
    /* the standard introspection query is valid against any schema */
    valid(s, pt_import_graphql_introspection_query, NULL);

    invalid(s, "{ me { nme } }", NULL, 1, 8, "cannot query field nme on type User");
    invalid(s, "{ search(q: \"x\") { name } }", NULL, 1, 20, "union type SearchResult");
    invalid(s, "{ user { id } }", NULL, 1, 3, "required argument id");
    invalid(s, "{ user(id: null) { id } }", NULL, 1, 3, "required argument id");
    invalid(s, "{ user(id: 1, x: 2) { id } }", NULL, 1, 15, "unknown argument x on field user");
    invalid(s, "{ user(id: 1, id: 2) { id } }", NULL, 1, 15, "given twice");
    invalid(s, "{ me }", NULL, 1, 3, "must have a selection");
    invalid(s, "{ hello { x } }", NULL, 1, 3, "must not have a selection");
    invalid(s, "{ me { ... on Nope { id } } }", NULL, 1, 8, "unknown type Nope");
    invalid(s, "{ me { ... on Episode { id } } }", NULL, 1, 8, "non composite type Episode");
    invalid(s, "{ me { ...F } } fragment F on String { id }", NULL, 1, 17, "non composite");
    invalid(s, "{ me { name @nope } }", NULL, 1, 13, "unknown directive @nope");
    invalid(s, "{ me { name @skip } }", NULL, 1, 13, "required argument if");
    invalid(s, "{ me { name @skip(if: true, x: 1) } }", NULL, 1, 29, "unknown argument x on directive skip");
    invalid(s, "query { me { name @skip(if: $b) } }", NULL, 1, 29, "variable $b is not defined");
    invalid(s, "query Q($u: Int) { me { name } }", NULL, 1, 9, "never used in operation Q");
    invalid(s, "query Q($u: User) { me { name } }", NULL, 1, 13, "non-input type User");
    invalid(s, "query Q($u: Nope) { me { name } }", NULL, 1, 13, "unknown type Nope");
    invalid(s, "query Q($u: Int, $u: Int) { me { name } }", NULL, 1, 18, "only one variable");
    invalid(s, "subscription { me { id } }", NULL, 1, 1, "does not support subscription");
    invalid(s, "{ __schema { nope } }", NULL, 1, 14, "on type __Schema");
    invalid(s, "{ me { __schema { types { name } } } }", NULL, 1, 8,
            "cannot query field __schema on type User");
    invalid(s, "{ __type { name } }", NULL, 1, 3, "required argument name");
    invalid(s, "{ __typename(x: 1) }", NULL, 1, 14, "unknown argument x");
    /* variables used inside fragments count */
    valid(s, "query Q($id: ID!) { ...F } fragment F on Query { user(id: $id) { id } }", NULL);
    invalid(s, "query Q { ...F } fragment F on Query { user(id: $id) { id } }", NULL, 1, 49,
            "$id is not defined");

    /* document rules (pt_graphql_operation) */
    invalid(s, "query A { hello } query A { hello }", NULL, 1, 19, "only one operation named A");
    invalid(s, "{ hello } query B { hello }", NULL, 1, 1, "anonymous operation");
    invalid(s, "query A { hello } query B { hello }", NULL, 0, 0, "operation name is required");
    invalid(s, "query A { hello }", "C", 0, 0, "unknown operation named C");
    invalid(s, "fragment F on Query { hello }", NULL, 0, 0, "no operation");
    invalid(s, "{ ...F } fragment F on Query { hello } fragment F on Query { hello }", NULL, 1, 40,
            "only one fragment");
    invalid(s, "{ ...G }", NULL, 1, 3, "unknown fragment G");
    invalid(s, "{ hello } fragment F on Query { hello }", NULL, 1, 11, "never used");
    invalid(s, "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }", NULL, 1, 61,
            "spreads itself");
    invalid(s, "{ ...A } fragment A on Query { me { ...A } }", NULL, 1, 37, "spreads itself");
    /* fragment chains are bounded */
    char chain[4096];
    int o = snprintf(chain, sizeof(chain), "{ ...F0 }");
    for (int i = 0; i < 20; i++)
        o += snprintf(chain + o, sizeof(chain) - (size_t)o, " fragment F%d on Query { ...F%d }", i, i + 1);
    snprintf(chain + o, sizeof(chain) - (size_t)o, " fragment F20 on Query { hello }");
    struct pt_graphql_error e;
    struct pt_graphql_doc *d = parse_ok(chain);
    assert_null(pt_graphql_operation(d, NULL, &e));
    assert_non_null(strstr(e.message, "more than 16 deep"));
    pt_graphql_doc_free(d);
    /* a chain of 100,000 fragments is refused at the 17th, not followed to its end */
    size_t cap = 100000 * 40 + 64, len = 0;
    char *longchain = malloc(cap);
    len += (size_t)snprintf(longchain, cap, "{ ...F0 }");
    for (int i = 0; i < 100000; i++)
        len += (size_t)snprintf(longchain + len, cap - len, " fragment F%d on Query { ...F%d }", i, i + 1);
    snprintf(longchain + len, cap - len, " fragment F100000 on Query { hello }");
    d = parse_ok(longchain);
    assert_null(pt_graphql_operation(d, NULL, &e));
    assert_non_null(strstr(e.message, "more than 16 deep"));
    pt_graphql_doc_free(d);
    free(longchain);
    pt_graphql_schema_free(s);

    /* without a schema: the document's own rules and variables only */
    valid(NULL, "query($a: Int) { anything(x: $a) { at { all } } }", NULL);
    invalid(NULL, "query { anything(x: $a) }", NULL, 1, 21, "$a is not defined");
    invalid(NULL, "query($a: Int) { anything }", NULL, 1, 7, "never used");
}

static int depth_of(const char *q)
{
    struct pt_graphql_error e;
    struct pt_graphql_doc *d = parse_ok(q);
    struct pt_graphql_node *op = pt_graphql_operation(d, NULL, &e);
    assert_non_null(op);
    int n = pt_graphql_depth(d, op);
    pt_graphql_doc_free(d);
    return n;
}

static int fields_of(const char *q)
{
    struct pt_graphql_error e;
    struct pt_graphql_doc *d = parse_ok(q);
    struct pt_graphql_node *op = pt_graphql_operation(d, NULL, &e);
    assert_non_null(op);
    int n = pt_graphql_field_count(d, op);
    pt_graphql_doc_free(d);
    return n;
}

static void test_depth_and_counts(void **state)
{
    (void)state;
    assert_int_equal(depth_of("{ a }"), 1);
    assert_int_equal(depth_of("{ a { b } c }"), 2);
    assert_int_equal(depth_of("{ a { b { c { d } } } e }"), 4);
    /* fragments and inline fragments add no level */
    assert_int_equal(depth_of("{ a { ...F } } fragment F on T { b { c } }"), 3);
    assert_int_equal(depth_of("{ a { ... on T { ... { b } } } }"), 2);
    assert_int_equal(depth_of("{ __schema { types { fields { name } } } }"), 4);
    assert_int_equal(fields_of("{ a { b c } d }"), 4);
    assert_int_equal(fields_of("{ a { ...F } b { ...F } } fragment F on T { x y }"), 6);
    /* a fragment bomb: each fragment spreads the next twice; counted without expanding */
    char bomb[8192];
    int o = snprintf(bomb, sizeof(bomb), "{ ...F0 }");
    for (int i = 0; i < 15; i++)
        o += snprintf(bomb + o, sizeof(bomb) - (size_t)o,
                      " fragment F%d on T { a%d: x ...F%d b%d: y { ...F%d } c%d: z { ...F%d } }", i, i, i + 1,
                      i, i + 1, i, i + 1);
    snprintf(bomb + o, sizeof(bomb) - (size_t)o, " fragment F15 on T { z }");
    clock_t t0 = clock();
    assert_int_equal(fields_of(bomb), 1000000); /* saturated */
    assert_int_equal(depth_of(bomb), 16);
    assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 1.0);
}

/* ------------------------------------------------------------- walk, prune, print */

struct seen {
    char log[1024];
};

static int remove_secret(void *arg, struct pt_graphql_node *f, const char *type, bool top)
{
    struct seen *s = arg;
    size_t n = strlen(s->log);
    snprintf(s->log + n, sizeof(s->log) - n, "%s%s.%s ", top ? "^" : "", type ? type : "?", f->name);
    if (!strcmp(f->name, "secret") || !strcmp(f->name, "gone"))
        f->removed = true;
    return 0;
}

static void walk_prune_print(struct pt_graphql_schema *s, const char *q, const char *log, const char *want)
{
    struct pt_graphql_error e;
    struct pt_graphql_doc *d = parse_ok(q);
    struct pt_graphql_node *op = pt_graphql_operation(d, NULL, &e);
    assert_non_null(op);
    struct seen seen = {{0}};
    assert_int_equal(pt_graphql_walk(s, d, op, remove_secret, &seen), 0);
    assert_string_equal(seen.log, log);
    bool left = pt_graphql_prune(d, op);
    if (!want) {
        assert_false(left);
    } else {
        assert_true(left);
        char *p = pt_graphql_print(d, op, NULL);
        assert_string_equal(p, want);
        free(p);
    }
    pt_graphql_doc_free(d);
}

static void test_walk_prune_print(void **state)
{
    (void)state;
    struct pt_graphql_schema *s = schema();
    walk_prune_print(s, "{ me { name secret posts { title } } hello }",
                     "^Query.me User.name User.secret User.posts Post.title ^Query.hello ",
                     "{me{name posts{title}}hello}");
    /* a selection left empty takes its field (and its fragment, and the spread) with it */
    walk_prune_print(s, "{ me { secret } hello ...F } fragment F on Query { user(id: 1) { gone } }",
                     "^Query.me User.secret ^Query.hello ^Query.user User.gone ", "{hello}");
    walk_prune_print(s, "{ me { ... on User { secret } } }", "^Query.me User.secret ", NULL);
    /* fragments are walked once, used fragments printed after the operation */
    walk_prune_print(
        s, "query Q($id: ID!) { a: user(id: $id) { ...U } b: me { ...U } } fragment U on User { id secret }",
        "^Query.user User.id User.secret ^Query.me ",
        "query Q($id:ID!){a:user(id:$id){...U}b:me{...U}}fragment U on User{id}");
    /* without a schema: root type, type conditions, unknown below */
    walk_prune_print(NULL, "mutation { x { y ... on T { z } } }", "^Mutation.x ?.y T.z ",
                     "mutation{x{y ...on T{z}}}");
    walk_prune_print(NULL, "{ __schema { types { name } } }", "^Query.__schema __Schema.types ?.name ",
                     "{__schema{types{name}}}");
    pt_graphql_schema_free(s);
}

/* ------------------------------------------------------------- import */

static void test_import_sdl(void **state)
{
    (void)state;
    struct pt_import_doc out;
    char err[300];
    assert_true(pt_import_graphql_convert(SDL, strlen(SDL), &out, err, sizeof(err)));
    assert_string_equal(json_string_value(json_object_get(out.api, "apiType")), "graphql");
    json_t *sc = json_array_get(json_object_get(out.api, "schemas"), 0);
    assert_string_equal(json_string_value(json_object_get(sc, "id")), "graphql");
    assert_string_equal(json_string_value(json_object_get(sc, "contentType")),
                        "application/vnd.ms-azure-apim.graphql.schema");
    assert_string_equal(json_string_value(json_object_get(sc, "value")), SDL);
    json_t *ops = json_object_get(out.api, "operations");
    assert_int_equal(json_array_size(ops), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ops, 0), "id")), "graphql-post");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ops, 0), "method")), "POST");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ops, 1), "method")), "GET");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ops, 1), "urlTemplate")), "/");
    assert_null(json_object_get(out.api, "id"));
    assert_int_equal(json_array_size(out.warnings), 0);
    json_decref(out.api);
    json_decref(out.warnings);

    const char *bad = "type Query {\n  a: Int\n  b: \n}";
    assert_false(pt_import_graphql_convert(bad, strlen(bad), &out, err, sizeof(err)));
    assert_string_equal(err, "line 4, column 1: expected a name, found '}'");
    bad = "type Query { a: Nope }";
    assert_false(pt_import_graphql_convert(bad, strlen(bad), &out, err, sizeof(err)));
    assert_string_equal(err, "line 1, column 17: unknown type Nope");
    assert_false(pt_import_graphql_convert("", 0, &out, err, sizeof(err)));
    assert_non_null(strstr(err, "line 1, column 1"));
}

/* An introspection result from a real-looking server for SDL round trips. */
static const char *INTRO =
    "{\"data\":{\"__schema\":{\"queryType\":{\"name\":\"Root\"},\"mutationType\":null,\"subscriptionType\":"
    "null,"
    "\"types\":["
    "{\"kind\":\"OBJECT\",\"name\":\"Root\",\"description\":\"The \\\"\\\"\\\" root\\nsecond\",\"fields\":["
    "{\"name\":\"user\",\"description\":null,\"args\":[{\"name\":\"id\",\"description\":null,\"type\":{"
    "\"kind\":\"NON_NULL\","
    "\"name\":null,\"ofType\":{\"kind\":\"SCALAR\",\"name\":\"ID\",\"ofType\":null}},\"defaultValue\":null},"
    "{\"name\":\"kind\",\"type\":{\"kind\":\"ENUM\",\"name\":\"Kind\"},\"defaultValue\":\"A\"},"
    "{\"name\":\"f\",\"type\":{\"kind\":\"INPUT_OBJECT\",\"name\":\"F\"},\"defaultValue\":\"{tags: "
    "[\\\"x\\\"]}\"}],"
    "\"type\":{\"kind\":\"OBJECT\",\"name\":\"User\",\"ofType\":null},\"isDeprecated\":false,"
    "\"deprecationReason\":null},"
    "{\"name\":\"list\",\"args\":[],\"type\":{\"kind\":\"NON_NULL\",\"ofType\":{\"kind\":\"LIST\",\"ofType\":"
    "{\"kind\":"
    "\"NON_NULL\",\"ofType\":{\"kind\":\"UNION\",\"name\":\"U\"}}}},\"isDeprecated\":true,"
    "\"deprecationReason\":\"use user\"}],"
    "\"inputFields\":null,\"interfaces\":[],\"enumValues\":null,\"possibleTypes\":null},"
    "{\"kind\":\"OBJECT\",\"name\":\"User\",\"fields\":[{\"name\":\"id\",\"args\":[],\"type\":{\"kind\":"
    "\"SCALAR\",\"name\":\"ID\"}},"
    "{\"name\":\"when\",\"args\":[],\"type\":{\"kind\":\"SCALAR\",\"name\":\"Date\"}}],\"interfaces\":[{"
    "\"kind\":\"INTERFACE\",\"name\":\"Node\"}]},"
    "{\"kind\":\"INTERFACE\",\"name\":\"Node\",\"fields\":[{\"name\":\"id\",\"args\":[],\"type\":{\"kind\":"
    "\"SCALAR\",\"name\":\"ID\"}}],"
    "\"possibleTypes\":[{\"kind\":\"OBJECT\",\"name\":\"User\"}]},"
    "{\"kind\":\"UNION\",\"name\":\"U\",\"possibleTypes\":[{\"kind\":\"OBJECT\",\"name\":\"User\"}]},"
    "{\"kind\":\"ENUM\",\"name\":\"Kind\",\"enumValues\":[{\"name\":\"A\",\"isDeprecated\":false},{\"name\":"
    "\"B\","
    "\"isDeprecated\":true,\"deprecationReason\":\"No longer supported\"}]},"
    "{\"kind\":\"INPUT_OBJECT\",\"name\":\"F\",\"inputFields\":[{\"name\":\"tags\",\"type\":{\"kind\":"
    "\"LIST\",\"ofType\":"
    "{\"kind\":\"SCALAR\",\"name\":\"String\"}},\"defaultValue\":null}]},"
    "{\"kind\":\"SCALAR\",\"name\":\"Date\",\"specifiedByURL\":\"https://example.com/date\"},"
    "{\"kind\":\"SCALAR\",\"name\":\"String\"},{\"kind\":\"SCALAR\",\"name\":\"ID\"},"
    "{\"kind\":\"OBJECT\",\"name\":\"__Schema\",\"fields\":[]}"
    "],\"directives\":[{\"name\":\"skip\",\"locations\":[\"FIELD\"],\"args\":[]},"
    "{\"name\":\"cached\",\"description\":\"cache "
    "it\",\"isRepeatable\":true,\"locations\":[\"FIELD_DEFINITION\",\"OBJECT\"],"
    "\"args\":[{\"name\":\"ttl\",\"type\":{\"kind\":\"SCALAR\",\"name\":\"Int\"},\"defaultValue\":\"60\"}]}]}"
    "}}";

static const char *INTRO_SDL = "schema {\n  query: Root\n}\n"
                               "\n\"\"\"\nThe \\\"\"\" root\nsecond\n\"\"\"\n"
                               "type Root {\n"
                               "  user(id: ID!, kind: Kind = A, f: F = {tags: [\"x\"]}): User\n"
                               "  list: [U!]! @deprecated(reason: \"use user\")\n"
                               "}\n"
                               "\ntype User implements Node {\n  id: ID\n  when: Date\n}\n"
                               "\ninterface Node {\n  id: ID\n}\n"
                               "\nunion U = User\n"
                               "\nenum Kind {\n  A\n  B @deprecated\n}\n"
                               "\ninput F {\n  tags: [String]\n}\n"
                               "\nscalar Date @specifiedBy(url: \"https://example.com/date\")\n"
                               "\n\"\"\"\ncache it\n\"\"\"\n"
                               "directive @cached(ttl: Int = 60) repeatable on FIELD_DEFINITION | OBJECT\n";

static void test_import_introspection(void **state)
{
    (void)state;
    struct pt_import_doc out;
    char err[300];
    if (!pt_import_graphql_convert(INTRO, strlen(INTRO), &out, err, sizeof(err)))
        fail_msg("%s", err);
    json_t *sc = json_array_get(json_object_get(out.api, "schemas"), 0);
    const char *sdl = json_string_value(json_object_get(sc, "value"));
    assert_string_equal(sdl, INTRO_SDL);
    /* the SDL builds a schema whose description survived */
    struct pt_graphql_error e;
    struct pt_graphql_schema *s = pt_graphql_schema_parse(sdl, strlen(sdl), NULL, &e);
    assert_non_null(s);
    assert_string_equal(pt_graphql_schema_root(s, PT_GRAPHQL_QUERY), "Root");
    pt_graphql_schema_free(s);
    json_decref(out.api);
    json_decref(out.warnings);

    /* {"__schema": ...} without data, and leading whitespace */
    const char *bare =
        "  {\"__schema\":{\"queryType\":{\"name\":\"Query\"},\"types\":[{\"kind\":\"OBJECT\",\"name\":"
        "\"Query\",\"fields\":[{\"name\":\"a\",\"args\":[],\"type\":{\"kind\":\"SCALAR\",\"name\":\"Int\"}}]}"
        "]}}";
    assert_true(pt_import_graphql_convert(bare, strlen(bare), &out, err, sizeof(err)));
    sc = json_array_get(json_object_get(out.api, "schemas"), 0);
    assert_string_equal(json_string_value(json_object_get(sc, "value")), "\ntype Query {\n  a: Int\n}\n");
    json_decref(out.api);
    json_decref(out.warnings);

    struct {
        const char *json, *err;
    } bad[] = {
        {"{\"errors\":[{\"message\":\"introspection is disabled\"}]}",
         "/errors/0/message: the introspection query failed: introspection is disabled"},
        {"{\"data\":{}}", "/data/__schema: an introspection result is required"},
        {"{\"data\":{\"__schema\":{\"types\":[]}}}",
         "/data/__schema/queryType: the schema has no query type"},
        {"{\"data\":{\"__schema\":{\"queryType\":{\"name\":\"Q\"},\"types\":[{\"kind\":\"OBJECT\",\"name\":"
         "\"Q x\"}]}}}",
         "/data/__schema/types/0/name: not a GraphQL name"},
        /* a default value that would smuggle definitions in */
        {"{\"data\":{\"__schema\":{\"queryType\":{\"name\":\"Q\"},\"types\":[{\"kind\":\"OBJECT\",\"name\":"
         "\"Q\",\"fields\":"
         "[{\"name\":\"a\",\"args\":[{\"name\":\"x\",\"type\":{\"kind\":\"SCALAR\",\"name\":\"Int\"},"
         "\"defaultValue\":"
         "\"1) : Int } type Evil { x: Int } type Z { a(b: Int = "
         "1\"}],\"type\":{\"kind\":\"SCALAR\",\"name\":\"Int\"}}]}]}}}",
         "/data/__schema/types/0/fields/0/args/0/defaultValue: not a GraphQL constant value"},
        {"{\"data\":{\"__schema\":{\"queryType\":{\"name\":\"Q\"},\"types\":[{\"kind\":\"OBJECT\",\"name\":"
         "\"Q\",\"fields\":"
         "[{\"name\":\"a\",\"type\":{\"kind\":\"NON_NULL\",\"ofType\":null}}]}]}}}",
         "/data/__schema/types/0/fields/0/type/ofType: a type reference {kind, name, ofType} is required"},
        {"{\"data\":{\"__schema\":{\"queryType\":{\"name\":\"Q\"},\"types\":[{\"kind\":\"WEIRD\",\"name\":"
         "\"Q\"}]}}}",
         "/data/__schema/types/0/kind: unknown kind WEIRD"},
        {"{\"data\":{\"__schema\":{\"queryType\":{\"name\":\"Q\"},\"types\":[{\"kind\":\"OBJECT\",\"name\":"
         "\"Q\",\"fields\":"
         "[{\"name\":\"a\",\"type\":{\"kind\":\"OBJECT\",\"name\":\"Missing\"}}]}]}}}",
         "line 6, column 6: unknown type Missing (in the SDL made from the introspection result)"},
        {"{\"data\": [}", "line 1, column 11: unexpected token near '}'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (pt_import_graphql_convert(bad[i].json, strlen(bad[i].json), &out, err, sizeof(err)))
            fail_msg("converted, but should not: %s", bad[i].json);
        if (strcmp(err, bad[i].err))
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, err, bad[i].err);
    }
    /* a type reference nested without end is bounded */
    char deep[40000];
    int o = snprintf(deep, sizeof(deep),
                     "{\"__schema\":{\"queryType\":{\"name\":\"Q\"},\"types\":[{\"kind\":\"OBJECT\","
                     "\"name\":\"Q\",\"fields\":[{\"name\":\"a\",\"type\":");
    for (int i = 0; i < 100; i++)
        o += snprintf(deep + o, sizeof(deep) - (size_t)o, "{\"kind\":\"LIST\",\"ofType\":");
    o += snprintf(deep + o, sizeof(deep) - (size_t)o, "{\"kind\":\"SCALAR\",\"name\":\"Int\"}");
    for (int i = 0; i < 100; i++)
        o += snprintf(deep + o, sizeof(deep) - (size_t)o, "}");
    snprintf(deep + o, sizeof(deep) - (size_t)o, "}]}]}}");
    assert_false(pt_import_graphql_convert(deep, strlen(deep), &out, err, sizeof(err)));
    assert_non_null(strstr(err, "deeper than 32"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_executable),
        cmocka_unit_test(test_sdl),
        cmocka_unit_test(test_errors_with_positions),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_caller_allocator),
        cmocka_unit_test(test_schema),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_depth_and_counts),
        cmocka_unit_test(test_walk_prune_print),
        cmocka_unit_test(test_import_sdl),
        cmocka_unit_test(test_import_introspection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
