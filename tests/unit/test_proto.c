/*
 * test_proto -- the .proto parser and the gRPC import
 * (core/conf/pt_import_proto.c): a real-looking proto3 file (package,
 * imports, options, nested messages, maps, oneofs, enums, reserved, the
 * four kinds of rpc, comments as descriptions), proto2 groups and
 * extensions, type resolution, errors with line:column, and the bounds;
 * and the pure parts of gRPC calls at the gateway (core/proxy/pt_grpc.c):
 * grpc-timeout, the status mapping, grpc-message's encoding.
 */
#include "conf/pt_import.h"
#include "proxy/pt_grpc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const char *ROUTE =
    "// The route guide example, extended.\n"
    "syntax = \"proto3\";\n"
    "\n"
    "package routeguide.v1;\n"
    "\n"
    "import \"google/protobuf/timestamp.proto\";\n"
    "option java_multiple_files = true;\n"
    "option (my.ext).deep = { a: 1 b: [1, 2] c { d: \"}\" } };\n"
    "\n"
    "// A point on the map.\n"
    "// Latitudes in degrees times 10^7.\n"
    "message Point {\n"
    "  int32 latitude = 1;\n"
    "  int32 longitude = 2 [deprecated = true, json_name = \"lng\"];\n"
    "}\n"
    "\n"
    "message Rectangle { Point lo = 1; Point hi = 2; }\n"
    "\n"
    "/* A feature at a point. */\n"
    "message Feature {\n"
    "  string name = 1;\n"
    "  Point location = 2;\n"
    "  map<string, Tag> tags = 3;\n"
    "  oneof kind { string road = 4; int64 river_id = 5; }\n"
    "  reserved 6, 8 to 10, 0x10;\n"
    "  reserved \"old\";\n"
    "  repeated Nested.Deeper items = 11;\n"
    "  message Nested { message Deeper { optional double d = 1; } enum E { E_UNSPECIFIED = 0; E_X = -1; } }\n"
    "  google.protobuf.Timestamp seen = 12;\n"
    "}\n"
    "\n"
    "enum Tag { option allow_alias = true; TAG_UNSPECIFIED = 0; TAG_A = 1; TAG_B = 1 [deprecated = true]; }\n"
    "message RouteNote { Point location = 1; string message = 2; }\n"
    "message RouteSummary { int32 point_count = 1; float distance = 2; double x = 3; }\n"
    "\n"
    "// Interface exported by the server.\n"
    "service RouteGuide {\n"
    "  option deprecated = false;\n"
    "  // Obtains the feature at a given position.\n"
    "  rpc GetFeature(Point) returns (Feature) {}\n"
    "  // Lists features in a rectangle.\n"
    "  rpc ListFeatures(Rectangle) returns (stream Feature);\n"
    "  rpc RecordRoute(stream Point) returns (RouteSummary) { option idempotency_level = NO_SIDE_EFFECTS; }\n"
    "\n"
    "  // Not a doc comment: a blank line follows.\n"
    "\n"
    "  rpc RouteChat(stream RouteNote) returns (stream .routeguide.v1.RouteNote);\n"
    "}\n";

static char err[512];

static json_t *parse(const char *text, json_t *warnings)
{
    err[0] = '\0';
    json_t *f = pt_import_proto_parse(text, strlen(text), warnings, err, sizeof(err));
    if (!f)
        print_message("# error: %s\n", err);
    return f;
}

static const json_t *find(const json_t *list, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) if (!strcmp(json_string_value(json_object_get(v, "name")), name)) return v;
    return NULL;
}

static const char *str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static void test_parse_file(void **state)
{
    (void)state;
    json_t *w = json_array();
    json_t *f = parse(ROUTE, w);
    assert_non_null(f);
    assert_string_equal(str(f, "syntax"), "proto3");
    assert_string_equal(str(f, "package"), "routeguide.v1");
    assert_int_equal(json_array_size(json_object_get(f, "imports")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(f, "imports"), 0)),
                        "google/protobuf/timestamp.proto");
    /* the import outside the file is a warning with its position */
    assert_int_equal(json_array_size(w), 1);
    assert_non_null(
        strstr(json_string_value(json_array_get(w, 0)), "6:1: import \"google/protobuf/timestamp"));

    const json_t *msgs = json_object_get(f, "messages");
    assert_int_equal(json_array_size(msgs), 5);
    const json_t *point = find(msgs, "Point");
    assert_string_equal(str(point, "fullName"), "routeguide.v1.Point");
    assert_string_equal(str(point, "description"), "A point on the map.\nLatitudes in degrees times 10^7.");
    const json_t *feature = find(msgs, "Feature");
    assert_string_equal(str(feature, "description"), "A feature at a point.");
    const json_t *fields = json_object_get(feature, "fields");
    assert_int_equal(json_array_size(fields), 7);
    const json_t *tags = find(fields, "tags");
    assert_int_equal(json_integer_value(json_object_get(tags, "number")), 3);
    assert_string_equal(str(json_object_get(tags, "map"), "key"), "string");
    assert_string_equal(str(json_object_get(tags, "map"), "value"), "Tag");
    assert_string_equal(str(find(fields, "river_id"), "oneof"), "kind");
    assert_string_equal(str(find(fields, "items"), "label"), "repeated");
    assert_string_equal(str(find(fields, "items"), "type"), "Nested.Deeper");
    const json_t *nested = find(json_object_get(feature, "messages"), "Nested");
    assert_string_equal(str(nested, "fullName"), "routeguide.v1.Feature.Nested");
    const json_t *deeper = find(json_object_get(nested, "messages"), "Deeper");
    assert_string_equal(str(deeper, "fullName"), "routeguide.v1.Feature.Nested.Deeper");
    const json_t *e = find(json_object_get(nested, "enums"), "E");
    assert_int_equal(json_integer_value(json_object_get(find(json_object_get(e, "values"), "E_X"), "number")),
                     -1);
    const json_t *tag = find(json_object_get(f, "enums"), "Tag");
    assert_int_equal(json_array_size(json_object_get(tag, "values")), 3);

    const json_t *svc = json_array_get(json_object_get(f, "services"), 0);
    assert_string_equal(str(svc, "fullName"), "routeguide.v1.RouteGuide");
    assert_string_equal(str(svc, "description"), "Interface exported by the server.");
    const json_t *ms = json_object_get(svc, "methods");
    assert_int_equal(json_array_size(ms), 4);
    static const struct {
        const char *name, *req, *resp;
        bool cs, ss;
    } want[] = {
        {"GetFeature", "routeguide.v1.Point", "routeguide.v1.Feature", false, false},
        {"ListFeatures", "routeguide.v1.Rectangle", "routeguide.v1.Feature", false, true},
        {"RecordRoute", "routeguide.v1.Point", "routeguide.v1.RouteSummary", true, false},
        {"RouteChat", "routeguide.v1.RouteNote", "routeguide.v1.RouteNote", true, true},
    };
    for (size_t i = 0; i < 4; i++) {
        const json_t *m = json_array_get(ms, i);
        assert_string_equal(str(m, "name"), want[i].name);
        assert_string_equal(str(m, "requestType"), want[i].req);
        assert_string_equal(str(m, "responseType"), want[i].resp);
        assert_int_equal(json_is_true(json_object_get(m, "clientStreaming")), want[i].cs);
        assert_int_equal(json_is_true(json_object_get(m, "serverStreaming")), want[i].ss);
    }
    assert_string_equal(str(json_array_get(ms, 0), "description"),
                        "Obtains the feature at a given position.");
    assert_null(json_object_get(json_array_get(ms, 3), "description"));
    json_decref(f);
    json_decref(w);
}

static void test_import_api(void **state)
{
    (void)state;
    struct pt_import_doc d;
    assert_true(pt_import_proto_convert(ROUTE, strlen(ROUTE), &d, err, sizeof(err)));
    assert_string_equal(str(d.api, "apiType"), "grpc");
    assert_string_equal(str(d.api, "displayName"), "routeguide.v1");
    assert_string_equal(str(d.api, "description"), "Interface exported by the server.");
    const json_t *s = json_array_get(json_object_get(d.api, "schemas"), 0);
    assert_string_equal(str(s, "id"), "proto");
    assert_string_equal(str(s, "contentType"), "text/x-protobuf");
    assert_string_equal(str(s, "value"), ROUTE);
    const json_t *ops = json_object_get(d.api, "operations");
    assert_int_equal(json_array_size(ops), 4);
    const json_t *op = json_array_get(ops, 1);
    assert_string_equal(str(op, "id"), "RouteGuide-ListFeatures");
    assert_string_equal(str(op, "method"), "POST");
    assert_string_equal(str(op, "urlTemplate"), "/routeguide.v1.RouteGuide/ListFeatures");
    assert_string_equal(str(op, "displayName"), "ListFeatures");
    assert_string_equal(str(op, "description"), "Lists features in a rectangle.");
    const json_t *g = json_object_get(op, "grpc");
    assert_string_equal(str(g, "kind"), "server-streaming");
    assert_string_equal(str(g, "service"), "routeguide.v1.RouteGuide");
    assert_string_equal(str(g, "requestType"), "routeguide.v1.Rectangle");
    assert_string_equal(str(json_object_get(json_array_get(ops, 2), "grpc"), "kind"), "client-streaming");
    assert_string_equal(str(json_object_get(json_array_get(ops, 3), "grpc"), "kind"), "bidi-streaming");
    assert_string_equal(str(json_object_get(json_array_get(ops, 0), "grpc"), "kind"), "unary");
    pt_import_doc_clear(&d);

    /* no package: /Service/Method; ids made unique and valid */
    const char *p = "service S { rpc M(A) returns (A); }\nservice S_ { rpc M(A) returns (A); }\n"
                    "message A {}\n";
    assert_true(pt_import_proto_convert(p, strlen(p), &d, err, sizeof(err)));
    ops = json_object_get(d.api, "operations");
    assert_string_equal(str(json_array_get(ops, 0), "urlTemplate"), "/S/M");
    assert_string_equal(str(json_array_get(ops, 0), "id"), "S-M");
    assert_string_equal(str(json_array_get(ops, 1), "id"), "S_-M");
    assert_string_equal(str(d.api, "displayName"), "S");
    pt_import_doc_clear(&d);
    /* the format is guessed from the text */
    assert_string_equal(pt_import_guess(ROUTE, strlen(ROUTE)), "grpc");
    assert_string_equal(pt_import_guess(p, strlen(p)), "grpc");
}

static void test_proto2(void **state)
{
    (void)state;
    const char *p = "syntax = 'proto2';\npackage a;\n"
                    "message M {\n"
                    "  required int32 x = 1 [default = -5];\n"
                    "  optional group Result = 2 { required string url = 3; }\n"
                    "  extensions 100 to max;\n"
                    "}\n"
                    "extend M { optional int32 ext = 100; }\n"
                    "message stream {}\n"
                    "service S { rpc A(stream) returns (stream stream); rpc B(M.Result) returns (.a.M); }\n";
    json_t *f = parse(p, NULL);
    assert_non_null(f);
    const json_t *m = find(json_object_get(f, "messages"), "M");
    assert_string_equal(str(find(json_object_get(m, "messages"), "Result"), "fullName"), "a.M.Result");
    assert_string_equal(str(find(json_object_get(m, "fields"), "Result"), "label"), "optional");
    const json_t *ms = json_object_get(json_array_get(json_object_get(f, "services"), 0), "methods");
    assert_string_equal(str(json_array_get(ms, 0), "requestType"), "a.stream");
    assert_false(json_is_true(json_object_get(json_array_get(ms, 0), "clientStreaming")));
    assert_true(json_is_true(json_object_get(json_array_get(ms, 0), "serverStreaming")));
    assert_string_equal(str(json_array_get(ms, 1), "requestType"), "a.M.Result");
    assert_string_equal(str(json_array_get(ms, 1), "responseType"), "a.M");
    json_decref(f);
    /* no syntax statement: proto2, as protoc reads it */
    f = parse("message A {} service S { rpc M(A) returns (A); }", NULL);
    assert_string_equal(str(f, "syntax"), "proto2");
    json_decref(f);
}

static void expect_error(const char *text, const char *want)
{
    json_t *f = pt_import_proto_parse(text, strlen(text), NULL, err, sizeof(err));
    if (f || !strstr(err, want))
        print_message("# for %s\n# got: %s\n# want: %s\n", text, f ? "(parsed)" : err, want);
    assert_null(f);
    assert_non_null(strstr(err, want));
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("syntax = \"proto4\";", "1:10: syntax must be \"proto2\" or \"proto3\"");
    expect_error("syntax = \"proto3\";\nmessage A {\n  int32 x = ;\n}",
                 "3:13: expected a field number, found ';'");
    expect_error("message A {\n  int32 x = 1;\n", "3:1: expected '}', found the end of the file");
    expect_error("message A { int32 x = 0; }", "1:23: field number 0 is not between 1 and 536870911");
    expect_error("message A { int32 x = 536870912; }", "field number 536870912 is not between");
    expect_error("message A {}\nservice S {\n  rpc M(A) returns (A);\n  rpc M(A) returns (A);\n}",
                 "4:7: rpc 'M' is defined twice in this service");
    expect_error("message A {}\nservice S { rpc M(B) returns (A); }",
                 "rpc S.M: message type 'B' is not defined in this file");
    expect_error("message A {}\nservice S { rpc M(A) returns A; }", "2:30: expected '(', found 'A'");
    expect_error("message A {}\nservice S { rpc M(A) retruns (A); }",
                 "2:22: expected 'returns', found 'retruns'");
    expect_error("message A {}", "the file defines no service");
    expect_error("package a;\npackage b;", "2:1: a second package statement");
    expect_error("message A { string s = 1 [default = \"x]; }",
                 "1:37: a string that does not end on its line");
    expect_error("/* open", "1:1: a comment that does not end");
    expect_error("message A { int32 x = 1; }\n@", "2:1: expected 'syntax'");
    expect_error("message A { reserved 5 to 2; }", "1:27: a range that ends before it starts");
    expect_error("package a; syntax = \"proto3\";", "1:12: 'syntax' must be the first statement");
    expect_error("message A { oneof o { repeated int32 x = 1; } }",
                 "1:23: a field of a oneof takes no label");
    expect_error("message A { \x01 }", "1:13: unexpected character 0x01");
    expect_error("message \xc3\xa9 {}", "1:9: unexpected character 0xc3");
    /* a quoted token is cut at a character's boundary: the message stays UTF-8 */
    expect_error("message \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9\xc3\xa9\" {}",
                 "1:9: expected a message name, found 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'");
    json_t *utf8 = json_string(err);
    assert_non_null(utf8);
    json_decref(utf8);
    /* with imports, a type not in the file is kept as written, with a warning */
    json_t *w = json_array();
    const char *p = "import \"other.proto\";\nservice S { rpc M(other.Req) returns (other.Resp); }";
    json_t *f = pt_import_proto_parse(p, strlen(p), w, err, sizeof(err));
    assert_non_null(f);
    assert_int_equal(json_array_size(w), 3);
    assert_string_equal(
        str(json_array_get(json_object_get(json_array_get(json_object_get(f, "services"), 0), "methods"), 0),
            "requestType"),
        "other.Req");
    json_decref(f);
    json_decref(w);
    /* not UTF-8, or a NUL: refused before parsing */
    static const char bad[] = "service S {} // \xc3\x28";
    assert_null(pt_import_proto_parse(bad, sizeof(bad) - 1, NULL, err, sizeof(err)));
    assert_string_equal(err, "1:1: the file is not UTF-8 text");
    assert_null(pt_import_proto_parse("a\0b", 3, NULL, err, sizeof(err)));
    /* where the lexer would let it through (a comment, a string), with its place */
    static const char in_comment[] = "syntax = \"proto3\";\n// a \0 here\nmessage M {}\n";
    assert_null(pt_import_proto_parse(in_comment, sizeof(in_comment) - 1, NULL, err, sizeof(err)));
    assert_string_equal(err, "2:6: the file holds a NUL byte: not .proto text");
    static const char in_string[] = "syntax = \"proto3\";\noption go_package = \"x\0y\";\nmessage M {}\n";
    assert_null(pt_import_proto_parse(in_string, sizeof(in_string) - 1, NULL, err, sizeof(err)));
    assert_string_equal(err, "2:23: the file holds a NUL byte: not .proto text");
    /* a file like them without the NUL is fine */
    static const char fine[] = "syntax = \"proto3\";\n// a here\noption go_package = \"xy\";\nmessage M {}\n"
                               "service S { rpc R(M) returns (M); }\n";
    json_t *ok = pt_import_proto_parse(fine, sizeof(fine) - 1, NULL, err, sizeof(err));
    assert_non_null(ok);
    json_decref(ok);
}

static char *repeat(const char *head, const char *unit, int n, const char *mid, const char *tail_unit,
                    const char *tail)
{
    size_t len =
        strlen(head) + strlen(mid) + strlen(tail) + (size_t)n * (strlen(unit) + strlen(tail_unit)) + 1;
    char *s = malloc(len), *p = s;
    p += sprintf(p, "%s", head);
    for (int i = 0; i < n; i++)
        p += sprintf(p, "%s", unit);
    p += sprintf(p, "%s", mid);
    for (int i = 0; i < n; i++)
        p += sprintf(p, "%s", tail_unit);
    sprintf(p, "%s", tail);
    return s;
}

static void test_bounds(void **state)
{
    (void)state;
    /* nesting: 64 messages deep are read, 65 are not */
    char *ok = repeat("", "message A { ", 63, "", "} ", "service S { rpc M(A) returns (A); }");
    json_t *f = parse(ok, NULL);
    assert_non_null(f);
    json_decref(f);
    free(ok);
    char *deep = repeat("", "message A { ", 65, "", "} ", "service S { rpc M(A) returns (A); }");
    expect_error(deep, "nested more than 64 deep");
    free(deep);
    /* an option aggregate nested deeply */
    char *agg = repeat("option x = ", "{ a ", 100000, "", "} ", ";");
    expect_error(agg, "1:");
    expect_error(agg, "nested more than 64 deep");
    free(agg);
    /* definitions: at most 100000 */
    char *many = repeat("message A { ", "int32 x = 1; ", 100001, "", "", "}");
    expect_error(many, "more than 100000 definitions");
    free(many);
    /* size: beyond 4 MiB, refused before anything is read */
    size_t big = PT_IMPORT_MAX_INLINE + 1;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    assert_null(pt_import_proto_parse(huge, big, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "1:1: the file is 4194305 bytes; at most 4194304 are read"));
    free(huge);
    /* a long name is refused, not cut */
    char *name = repeat("message ", "N", 600, "", "", " {}");
    expect_error(name, "1:9: a name longer than 511 characters");
    free(name);
}

/* Files sized to hurt a quadratic parser: rpcs whose names cut to one id (every one needs a number),
   many rpcs in one service, and types resolved through a 250-level package against 2,000 messages.
   Each is read whole and right; the run takes milliseconds now (it took minutes to hours when every
   check scanned what came before). */
static void test_large_files(void **state)
{
    (void)state;
    char *rpcs = malloc(8 << 20);
    assert_non_null(rpcs);
    int n = sprintf(rpcs, "syntax = \"proto3\";\nmessage M {}\nservice S {\n");
    for (int i = 0; i < 3000; i++)
        n += sprintf(rpcs + n, "  rpc r%0130d%d (M) returns (M);\n", 0, i);
    strcpy(rpcs + n, "}\n");
    struct pt_import_doc d;
    assert_true(pt_import_proto_convert(rpcs, strlen(rpcs), &d, err, sizeof(err)));
    const json_t *ops = json_object_get(d.api, "operations");
    assert_int_equal(json_array_size(ops), 3000);
    json_t *ids = json_object();
    size_t i;
    json_t *op;
    json_array_foreach(ops, i, op) json_object_set(ids, str(op, "id"), json_true());
    assert_int_equal(json_object_size(ids), 3000); /* every id its own */
    char want[160]; /* S-, the rpc name cut at 120 characters, the 3,000th number */
    snprintf(want, sizeof(want), "S-r%0119d-3000", 0);
    assert_string_equal(str(json_array_get(ops, 2999), "id"), want);
    json_decref(ids);
    pt_import_doc_clear(&d);
    /* 60,000 rpcs in one service, then one defined twice at the end */
    n = sprintf(rpcs, "message M {}\nservice S {\n");
    for (int k = 0; k < 60000; k++)
        n += sprintf(rpcs + n, "rpc r%d (M) returns (M);\n", k);
    sprintf(rpcs + n, "rpc r7 (M) returns (M);\n}\n");
    char line[64];
    snprintf(line, sizeof(line), "%d:5: rpc 'r7' is defined twice", 60000 + 3);
    expect_error(rpcs, line);
    /* types looked for in each of 250 scopes among 2,000 messages, for 400 rpcs (an import makes
       the unknown ones warnings, so every lookup walks every scope) */
    n = sprintf(rpcs, "package a");
    for (int k = 0; k < 249; k++)
        n += sprintf(rpcs + n, ".a");
    n += sprintf(rpcs + n, ";\nimport \"x.proto\";\n");
    for (int k = 0; k < 2000; k++)
        n += sprintf(rpcs + n, "message X%d {}\n", k);
    n += sprintf(rpcs + n, "service S {\n");
    for (int k = 0; k < 400; k++)
        n += sprintf(rpcs + n, "rpc q%d (Z) returns (X%d);\n", k, k);
    sprintf(rpcs + n, "}\n");
    json_t *warnings = json_array();
    json_t *f = pt_import_proto_parse(rpcs, strlen(rpcs), warnings, err, sizeof(err));
    assert_non_null(f);
    assert_int_equal(json_array_size(warnings), 400 + 1); /* each unknown Z, and the import */
    const json_t *m =
        json_array_get(json_object_get(json_array_get(json_object_get(f, "services"), 0), "methods"), 5);
    const char *t = str(m, "responseType"); /* the package's own X5: a.a.(...).a.X5 */
    assert_true(strlen(t) == 249 * 2 + 1 + 3 && !strncmp(t, "a.a.", 4) && !strcmp(t + strlen(t) - 3, ".X5"));
    json_decref(f);
    json_decref(warnings);
    free(rpcs);
}

static void test_grpc_timeout(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        bool ok;
        uint64_t us;
    } cases[] = {
        {"10S", true, 10000000},  {"500m", true, 500000}, {"100u", true, 100},
        {"1n", true, 1},          {"1500n", true, 2},     {"2M", true, 120000000},
        {"1H", true, 3600000000}, {"0S", true, 0},        {"99999999H", true, 99999999ull * 3600 * 1000000},
        {"123456789S", false, 0}, {"S", false, 0},        {"10", false, 0},
        {"10s", false, 0},        {"-1S", false, 0},      {"1.5S", false, 0},
        {" 1S", false, 0},        {"1S ", false, 0},      {"", false, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t us = 42;
        bool ok = pt_grpc_timeout_parse(pt_str_c(cases[i].v), &us);
        if (ok != cases[i].ok || (ok && us != cases[i].us))
            print_message("# %s: %d %llu\n", cases[i].v, ok, (unsigned long long)us);
        assert_int_equal(ok, cases[i].ok);
        if (ok)
            assert_int_equal(us, cases[i].us);
    }
}

static void test_grpc_status(void **state)
{
    (void)state;
    static const int map[][2] = {{200, 0},  {204, 0}, {400, 3}, {401, 16}, {403, 7},  {404, 12},
                                 {408, 4},  {413, 8}, {429, 8}, {499, 1},  {500, 13}, {502, 14},
                                 {503, 14}, {504, 4}, {409, 2}, {418, 2},  {505, 2}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        assert_int_equal(pt_grpc_status_of(map[i][0]), map[i][1]);
    struct pt_pool *pool = pt_pool_new(1024);
    struct pt_buf b;
    pt_buf_init(&b, pool, 16);
    pt_grpc_message_encode(&b, "Rate 100% exceeded\r\n caf\xc3\xa9");
    assert_int_equal(b.n, strlen("Rate 100%25 exceeded%0D%0A caf%C3%A9"));
    assert_memory_equal(b.p, "Rate 100%25 exceeded%0D%0A caf%C3%A9", b.n);
    pt_pool_free(pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_file),  cmocka_unit_test(test_import_api),
        cmocka_unit_test(test_proto2),      cmocka_unit_test(test_errors),
        cmocka_unit_test(test_bounds),      cmocka_unit_test(test_grpc_timeout),
        cmocka_unit_test(test_grpc_status), cmocka_unit_test(test_large_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
