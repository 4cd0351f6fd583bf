/*
 * fuzz_graphql -- the GraphQL parsers on arbitrary bytes: the input is read
 * as a request (executable document) and, when it parses, its operation is
 * selected, validated against a fixed schema and without one, measured,
 * walked (removing some fields), pruned and printed -- and the printed text
 * must parse again to the same print.  The same bytes are read as SDL and,
 * when they build a schema, a fixed request is validated against it; and
 * they go through the GraphQL import (SDL or introspection JSON).
 *
 * Whatever the bytes: no crash, no read or write out of bounds (run under
 * ASan), no unbounded recursion (small limits here make the nesting bound
 * reachable), and every error has a message.
 */
#include "base/pt_graphql.h"
#include "conf/pt_import.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char SCHEMA[] =
    "type Query { me: User users(first: Int = 1, f: F): [User!]! s(q: String!): [R] hello: String }\n"
    "type User implements N { id: ID! name: String secret: String posts: [Post] }\n"
    "interface N { id: ID! } type Post { title: String author: User }\n"
    "union R = User | Post input F { name: String tags: [String!] }\n"
    "type Mutation { add(name: String!): User } type Subscription { t: Int }\n"
    "directive @d(x: Int) on FIELD\n";

static struct pt_graphql_schema *schema;

static int visit(void *arg, struct pt_graphql_node *f, const char *type, bool top)
{
    (void)arg;
    (void)top;
    if (!f->name)
        abort();
    /* remove a field now and then, by a property of the input */
    if ((strlen(f->name) + (type ? strlen(type) : 0)) % 3 == 0)
        f->removed = true;
    return 0;
}

static void check_error(const struct pt_graphql_error *e)
{
    if (!e->message[0] || !memchr(e->message, '\0', sizeof(e->message)) || e->line < 0 || e->column < 0)
        abort();
}

static void request(const char *text, size_t len, const struct pt_graphql_limits *lim)
{
    struct pt_graphql_error e;
    struct pt_graphql_doc *d = pt_graphql_parse(text, len, PT_GRAPHQL_EXECUTABLE, lim, &e);
    if (!d) {
        check_error(&e);
        return;
    }
    struct pt_graphql_node *op = pt_graphql_operation(d, NULL, &e);
    if (!op) {
        check_error(&e);
        pt_graphql_doc_free(d);
        return;
    }
    if (!pt_graphql_validate(schema, d, op, &e))
        check_error(&e);
    if (!pt_graphql_validate(NULL, d, op, &e))
        check_error(&e);
    int depth = pt_graphql_depth(d, op), fields = pt_graphql_field_count(d, op);
    if (depth < 0 || fields < 0 || depth > 1000000 || fields > 1000000)
        abort();
    char *before = pt_graphql_print(d, op, NULL);
    if (!before)
        abort();
    /* the print parses to the same print (with default limits: printing never nests deeper) */
    struct pt_graphql_doc *d2 = pt_graphql_parse(before, strlen(before), PT_GRAPHQL_EXECUTABLE, NULL, &e);
    if (!d2)
        abort();
    struct pt_graphql_node *op2 = pt_graphql_operation(d2, op->name, &e);
    if (!op2)
        abort();
    char *again = pt_graphql_print(d2, op2, NULL);
    if (!again || strcmp(before, again))
        abort();
    free(again);
    pt_graphql_doc_free(d2);
    free(before);
    pt_graphql_walk(schema, d, op, visit, NULL);
    if (pt_graphql_prune(d, op)) {
        char *p = pt_graphql_print(d, op, NULL);
        if (!p)
            abort();
        free(p);
    }
    pt_graphql_doc_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!schema) {
        struct pt_graphql_error e;
        schema = pt_graphql_schema_parse(SCHEMA, sizeof(SCHEMA) - 1, NULL, &e);
        if (!schema)
            abort();
    }
    const char *text = (const char *)data;
    struct pt_graphql_limits small = {.max_bytes = 65536, .max_tokens = 4096, .max_depth = 12};
    request(text, size, &small);
    request(text, size, NULL);

    struct pt_graphql_error e;
    struct pt_graphql_schema *s = pt_graphql_schema_parse(text, size, &small, &e);
    if (s) {
        static const char q[] = "query Q($a: Int) { __typename a(x: $a) { b ... on T { c } } }";
        struct pt_graphql_doc *d = pt_graphql_parse(q, sizeof(q) - 1, PT_GRAPHQL_EXECUTABLE, NULL, &e);
        struct pt_graphql_node *op = d ? pt_graphql_operation(d, NULL, &e) : NULL;
        if (!op)
            abort();
        if (!pt_graphql_validate(s, d, op, &e))
            check_error(&e);
        pt_graphql_doc_free(d);
        pt_graphql_schema_free(s);
    } else
        check_error(&e);

    struct pt_import_doc out;
    char err[256];
    if (pt_import_graphql_convert(text, size, &out, err, sizeof(err))) {
        if (!json_is_object(out.api))
            abort();
        json_decref(out.api);
        json_decref(out.warnings);
    } else if (!err[0])
        abort();
    return 0;
}

/* Seeds for the standalone runner (standalone.c). */
const char *fuzz_name = "fuzz_graphql";
const char *const fuzz_seeds[] = {
    "query Q($id: ID! = \"x\", $l: [Int!]) @d { a: me { name ...F ... on User { secret } posts { title } } "
    "users(first: 2, f: {name: \"n\", tags: [\"a\", \"b\"]}) { id } } fragment F on User { id __typename }",
    "{ s(q: \"\\u00e9\\uD83D\\uDE00\") { ... on User { name } ... on Post { title author { id } } } }",
    "mutation { add(name: \"\"\"\n  block\n    string \\\"\"\" \"\"\") { id } }",
    "subscription { t } # comment",
    "{ __schema { types { name fields(includeDeprecated: true) { name } } } __type(name: \"User\") { kind } "
    "}",
    "{ a { ...A } } fragment A on T { ...B } fragment B on T { x ...C } fragment C on T { y }",
    "{ a(x: [1, -2.5e10, true, null, ENUM, {k: [[]]}]) }",
    "\"\"\"doc\"\"\" type Query implements & A & B @x { f(a: Int = 1, \"d\" b: [In!]! @deprecated): [T] } "
    "interface A { f: Int } interface B { f: Int } type T { x: Int } input In { z: Int = 3 }",
    "schema { query: Q mutation: M } type Q { a: Int } type M { b(x: E = A): U } enum E { A B @deprecated } "
    "union U = Q | M extend type Q { c: String } scalar D directive @r(x: Int) repeatable on FIELD | OBJECT",
    "{\"data\":{\"__schema\":{\"queryType\":{\"name\":\"Query\"},\"types\":[{\"kind\":\"OBJECT\",\"name\":"
    "\"Query\","
    "\"fields\":[{\"name\":\"a\",\"args\":[{\"name\":\"x\",\"type\":{\"kind\":\"NON_NULL\",\"ofType\":{"
    "\"kind\":"
    "\"SCALAR\",\"name\":\"Int\"}},\"defaultValue\":\"1\"}],\"type\":{\"kind\":\"LIST\",\"ofType\":{\"kind\":"
    "\"SCALAR\",\"name\":\"String\"}}}]}],\"directives\":[]}}}",
    "{ a { b { c { d { e { f { g { h { i { j { k { l { m { n } } } } } } } } } } } } } }",
    NULL,
};
