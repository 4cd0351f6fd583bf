/*
 * fuzz_json_xml -- json-to-xml and xml-to-json (plugins/transform/
 * json_xml.c) on arbitrary bodies, as a client or a backend sends them.
 * The policies run against a small stand-in for the gateway's SDK table
 * that holds the body, records what the policy sets and fails with, and
 * allocates from a pool with a limit like a request's arena.
 *
 * The first input byte picks the direction (bit 0), the section (bit 1:
 * inbound or outbound), xml-to-json's kind and always-array (bits 2, 3) and
 * json-to-xml's namespace separator, namespace prefix and attribute block
 * names (bits 4-7); the body is the rest.  Either the policy fails with 400
 * (inbound) or 500 (outbound) and a message, leaving the body alone, or it
 * sets a body: json-to-xml's must be a well-formed XML document (libxml2
 * reads it), xml-to-json's a JSON text jansson reads.  Never a read or
 * write out of bounds (ASan), never unbounded output (the arena's limit).
 */
#include "transform.h"

#include "base/pt_pool.h"

#include <jansson.h>
#include <libxml/parser.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_LIMIT (32u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One statement compiled: the attributes the mode byte picked. */
struct pt_compile {
    unsigned mode;
    struct pt_pool *pool;
};

/* One call: the body in, what the policy did. */
struct pt_call {
    struct pt_pool *pool;
    pt_bytes body;
    bool body_set;
    int fail_status;
    char fail_message[256];
};

static const char *const separators[] = {"_", ":", "", "__"};
static const char *const prefixes[] = {NULL, "xmlns$"};
static const char *const blocks[] = {NULL, "#attrs"};

static const char *f_attr_literal(pt_compile *c, const char *name)
{
    if (!strcmp(name, "namespace-separator"))
        return separators[(c->mode >> 4) & 3];
    if (!strcmp(name, "namespace-prefix"))
        return prefixes[(c->mode >> 6) & 1];
    if (!strcmp(name, "attribute-block-name"))
        return blocks[(c->mode >> 7) & 1];
    return NULL;
}

static int f_attr_bool(pt_compile *c, const char *name, int def)
{
    if (!strcmp(name, "consider-accept-header"))
        return 0; /* convert whatever the Accept header says */
    if (!strcmp(name, "always-array-child-elements"))
        return (c->mode >> 3) & 1;
    return def;
}

static int f_attr_enum(pt_compile *c, const char *name, int def)
{
    if (!strcmp(name, "kind"))
        return (c->mode >> 2) & 1;
    if (!strcmp(name, "apply"))
        return 0; /* always */
    return def;
}

static void *f_compile_alloc(pt_compile *c, size_t n)
{
    return pt_pool_calloc(c->pool, n);
}

static int f_compile_section(pt_compile *c)
{
    return c->mode & 2 ? PT_SECTION_OUTBOUND : PT_SECTION_INBOUND;
}

static int f_header_get(pt_call *call, pt_msg m, pt_bytes name, pt_bytes *values, int max)
{
    return 0;
}

static int f_header_set(pt_call *call, pt_msg m, pt_bytes name, const pt_bytes *values, int nvalues,
                        pt_header_mode mode)
{
    return 0;
}

static int f_body_get(pt_call *call, pt_msg m, pt_bytes *out)
{
    *out = call->body;
    return 0;
}

static int f_body_set(pt_call *call, pt_msg m, pt_bytes data)
{
    if (call->body_set)
        abort(); /* set twice */
    call->body_set = true;
    call->body = data;
    return 0;
}

static pt_status f_fail(pt_call *call, int status, const char *reason, const char *message)
{
    if (call->fail_status || !reason || !*reason || !message)
        abort();
    call->fail_status = status;
    snprintf(call->fail_message, sizeof(call->fail_message), "%s", message);
    return PT_ERROR;
}

static void *f_alloc(pt_call *call, size_t n)
{
    return pt_pool_calloc(call->pool, n); /* zeroed, as the gateway's arena gives it */
}

static void f_log(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap); /* formatted, so that a bad format argument is seen */
    va_end(ap);
}

static pt_bytes f_fact(pt_call *call, int which)
{
    return (pt_bytes){"fuzz", 4};
}

static const struct pt_api api = {
    .size = sizeof(struct pt_api),
    .attr_literal = f_attr_literal,
    .attr_bool = f_attr_bool,
    .attr_enum = f_attr_enum,
    .compile_alloc = f_compile_alloc,
    .compile_section = f_compile_section,
    .header_get = f_header_get,
    .header_set = f_header_set,
    .body_get = f_body_get,
    .body_set = f_body_set,
    .fail = f_fail,
    .alloc = f_alloc,
    .log = f_log,
    .fact = f_fact,
};

static void check_xml(pt_bytes out)
{
    xmlDocPtr doc = xmlReadMemory(out.data, (int)out.len, "out.xml", NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc) {
        const xmlError *e = xmlGetLastError();
        fprintf(stderr, "json-to-xml wrote XML that does not read back (%s): %.*s\n", e ? e->message : "?",
                (int)(out.len > 2000 ? 2000 : out.len), out.data);
        abort();
    }
    xmlFreeDoc(doc);
}

static void check_json(pt_bytes out)
{
    json_error_t je;
    json_t *v = json_loadb(out.data, out.len, 0, &je);
    if (!v) {
        fprintf(stderr, "xml-to-json wrote JSON that does not read back (%s): %.*s\n", je.text,
                (int)(out.len > 2000 ? 2000 : out.len), out.data);
        abort();
    }
    json_decref(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        ready = true;
        json_xml_init();
    }
    if (!size)
        return 0;
    unsigned mode = data[0];
    data++;
    size--;
    bool to_xml = mode & 1;
    struct pt_pool *pool = pt_pool_new(16384);
    pt_pool_set_limit(pool, ARENA_LIMIT);
    struct pt_compile c = {mode, pool};
    void *inst = NULL;
    if ((to_xml ? json_to_xml_compile : xml_to_json_compile)(&api, &c, &inst) != 0 || !inst)
        abort();
    /* exactly the body, so that a read past it is seen */
    char *body = malloc(size ? size : 1);
    if (!body)
        abort();
    memcpy(body, data, size);
    struct pt_call call = {pool, {body, size}, false, 0, ""};
    pt_status st = (to_xml ? json_to_xml_run : xml_to_json_run)(&api, &call, inst);
    if (st == PT_OK && call.body_set)
        (to_xml ? check_xml : check_json)(call.body);
    else if (st == PT_OK && call.fail_status)
        abort();
    else if (st != PT_OK) {
        int want = mode & 2 ? 500 : 400;
        if (call.body_set || (call.fail_status != want && !pt_pool_failed(pool)) || !call.fail_message[0]) {
            fprintf(stderr, "failed with %d (%s)\n", call.fail_status, call.fail_message);
            abort();
        }
    }
    free(body);
    pt_pool_free(pool);
    return 0;
}

/* Seeds for the standalone runner (standalone.c): bodies, after the mode byte it adds. */
const char *fuzz_name = "fuzz_json_xml";
const char *const fuzz_seeds[] = {
    "{\"order\": {\"id\": 7, \"items\": [{\"sku\": \"a&b\", \"qty\": 2}, {\"sku\": \"<c>\"}], \"paid\": "
    "true, "
    "\"note\": null}}",
    "{\"soap:Envelope\": {\"xmlns$soap\": \"http://schemas.xmlsoap.org/soap/envelope/\", \"soap:Body\": "
    "{\"#attrs\": {\"id\": \"1\", \"xml:lang\": \"en\"}, \"x\": [1, 2, [3, []]]}}}",
    "[1, \"two\", {\"3\": {\"\": \"empty name\", \"a b\": \"space\", \"\\u00e9t\\u00e9\": "
    "\"\\u0001\\uffff\"}}]",
    "{\"a\": 1, \"a\": 2, \"#attrs\": {\"x\": \"1\", \"x\": \"2\"}}",
    "\"just a string\"",
    "<?xml version=\"1.0\" encoding=\"utf-8\"?><order id=\"7\" xmlns=\"urn:o\" xmlns:p=\"urn:p\"><p:item "
    "sku=\"a&amp;b\">2</p:item><item/><note>text <b>mixed</b> tail</note><![CDATA[<raw>]]></order>",
    "<a><b>1</b><b>2</b><c x=\"&#233;\">&#x1F600;</c><!-- c --><?pi x?></a>",
    "<!DOCTYPE a [<!ENTITY x \"yy\">]><a>&x;</a>",
    "<a xmlns:x=\"urn:x\" x:y=\"1\" y=\"2\"><x:b/><b x:c=\"\"/>\"\\\t\r\n</a>",
    "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><r>\xe9</r>",
    NULL,
};
