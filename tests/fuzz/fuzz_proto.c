/*
 * fuzz_proto -- the .proto converter (pt_import_proto_convert) on arbitrary
 * bytes, as an API provider may upload them.
 *
 * Whatever the bytes, it either fails with a terminated "line:column:"
 * message and no result, or returns an API whose operations the router
 * accepts (valid templates, no two alike) and whose strings are UTF-8; it
 * never reads or writes out of bounds or leaks (run under ASan).
 */
#include "conf/pt_import.h"
#include "conf/pt_router.h"

#include <ctype.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    struct pt_import_doc d;
    memset(err, 0x5a, sizeof(err));
    bool ok = pt_import_proto_convert((const char *)data, size, &d, err, sizeof(err));
    if (!ok) {
        if (!memchr(err, '\0', sizeof(err)) || d.api || d.warnings || !isdigit((unsigned char)err[0]) ||
            !strchr(err, ':'))
            abort();
        return 0;
    }
    char *s = json_dumps(d.api, 0);
    if (!s || !json_is_array(d.warnings))
        abort();
    free(s);
    struct pt_router *r = pt_router_new();
    int a = pt_router_add_api(r, "x", NULL, NULL);
    size_t i;
    json_t *op;
    json_array_foreach(json_object_get(d.api, "operations"), i, op)
    {
        const char *m = json_string_value(json_object_get(op, "method"));
        const char *t = json_string_value(json_object_get(op, "urlTemplate"));
        const char *why = m && t ? pt_router_add_op(r, a, m, t, op, NULL) : "no method or template";
        if (why) {
            fprintf(stderr, "%s %s: %s\n", m ? m : "", t ? t : "", why);
            abort();
        }
    }
    pt_router_free(r);
    pt_import_doc_clear(&d);
    return 0;
}

/* Seeds for the standalone runner (standalone.c). */
const char *fuzz_name = "fuzz_proto";
const char *const fuzz_seeds[] = {
    "syntax = \"proto3\";\npackage p.v1;\nimport \"x.proto\";\noption (a.b).c = { d: [1, 2] };\n"
    "// doc\nmessage M { map<string, N> m = 1; oneof o { int32 a = 2; string b = 3; } reserved 4 to 9;\n"
    "  message N { enum E { E0 = 0; E1 = -1; } } }\n"
    "service S { rpc U(M) returns (M); rpc SS(M) returns (stream M);\n"
    "  rpc CS(stream M) returns (M) { option deprecated = true; } rpc B(stream M) returns (stream .p.v1.M); "
    "}\n",
    "syntax = 'proto2';\nmessage A { required group G = 1 { optional int32 x = 2 [default = -1]; }\n"
    "  extensions 100 to max; }\nextend A { optional int32 e = 100; }\n"
    "service T { rpc M(A.G) returns (A); }\n",
    "/* unterminated", "message A { int32 x = 0; }", NULL};
