/*
 * fuzz_jschema -- the JSON Schema validator (pt_jschema) on arbitrary bytes:
 * as an instance against a fixed schema that uses most keywords, and as a
 * schema (compiled, validated against fixed instances, sampled).  Input:
 * one byte of flags, then SCHEMA 0x01 INSTANCE (or bytes without 0x01, used
 * both ways).  Sizes are bounded (64 KiB).
 *
 * Whatever the bytes: no crash, no out-of-bounds access (ASan), the error
 * record terminated, and the same verdict with and without an error record.
 */
#include "base/pt_jschema.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fixed_schema[] =
    "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":[\"integer\",\"null\"],"
    "\"multipleOf\":3,\"maximum\":1000},\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"},"
    "\"maxItems\":5,\"uniqueItems\":true}},\"additionalProperties\":{\"type\":\"string\",\"pattern\":"
    "\"^(a|b)*c?\\\\d{0,3}$\",\"maxLength\":20}}},"
    "\"type\":[\"object\",\"array\",\"string\",\"number\"],"
    "\"anyOf\":[{\"$ref\":\"#/$defs/node\"},{\"type\":\"array\",\"prefixItems\":[{\"const\":1}],"
    "\"contains\":{\"type\":\"string\"},\"minContains\":1,\"unevaluatedItems\":{\"type\":\"number\"}},"
    "{\"type\":\"string\",\"format\":\"date-time\"},{\"not\":{\"type\":\"object\"},\"enum\":[1,2.5,\"x\"]}],"
    "\"if\":{\"required\":[\"v\"]},\"then\":{\"minProperties\":1},\"else\":{\"maxProperties\":4},"
    "\"patternProperties\":{\"^x-\":{}},\"propertyNames\":{\"maxLength\":16},"
    "\"dependentRequired\":{\"a\":[\"b\"]},\"unevaluatedProperties\":{\"type\":\"string\"}}";

static const char *const fixed_instances[] = {
    "{}", "[1,\"a\",2]", "\"text\"", "12", "null", "{\"a\":{\"b\":[1,{\"c\":true}]}}", "[[[[[]]]]]",
};

static void check(const struct pt_jschema *s, const json_t *inst)
{
    struct pt_jschema_error e;
    memset(&e, 0x5a, sizeof(e));
    bool a = pt_jschema_validate(s, inst, &e);
    bool b = pt_jschema_validate(s, inst, NULL);
    if (a != b)
        abort(); /* the verdict must not depend on asking for the error */
    if (!memchr(e.path, '\0', sizeof(e.path)) || !memchr(e.keyword, '\0', sizeof(e.keyword)) ||
        !memchr(e.message, '\0', sizeof(e.message)))
        abort();
    if (!a && !e.message[0])
        abort(); /* a refusal always says why */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    unsigned flags = data[0] & 0x1f;
    data++;
    size--;
    const uint8_t *sep = memchr(data, 0x01, size);
    const uint8_t *sch = data, *ins = data;
    size_t schn = size, insn = size;
    if (sep) {
        schn = (size_t)(sep - data);
        ins = sep + 1;
        insn = size - schn - 1;
    }
    static struct pt_jschema *fixed;
    if (!fixed) {
        json_t *j = json_loads(fixed_schema, 0, NULL);
        char err[256];
        fixed = pt_jschema_compile(j, NULL, 0, err, sizeof(err));
        json_decref(j);
        if (!fixed)
            abort();
    }
    /* the bytes as an instance */
    json_t *inst = json_loadb((const char *)ins, insn, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (inst)
        check(fixed, inst);
    /* the bytes as a schema */
    json_t *schema = json_loadb((const char *)sch, schn, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (schema) {
        char err[256];
        memset(err, 0x5a, sizeof(err));
        struct pt_jschema *s = pt_jschema_compile(schema, NULL, flags, err, sizeof(err));
        if (!memchr(err, '\0', sizeof(err)))
            abort();
        if (s) {
            if (inst)
                check(s, inst);
            for (size_t i = 0; i < sizeof(fixed_instances) / sizeof(fixed_instances[0]); i++) {
                json_t *f = json_loads(fixed_instances[i], JSON_DECODE_ANY, NULL);
                check(s, f);
                json_decref(f);
            }
            pt_jschema_free(s);
        }
        json_t *sample = pt_jschema_sample(schema, NULL);
        json_decref(sample);
        json_decref(schema);
    }
    /* the first part as a regular expression over the second */
    if (sep && schn < 256 && insn < 4096) {
        char pat[256], err[64];
        memcpy(pat, sch, schn);
        pat[schn] = '\0';
        (void)pt_jschema_regex_test(pat, (const char *)ins, insn, err, sizeof(err));
    }
    json_decref(inst);
    return 0;
}

/* Seeds for the standalone runner (standalone.c). */
const char *fuzz_name = "fuzz_jschema";
const char *const fuzz_seeds[] = {
    "{\"v\":3,\"kids\":[{\"v\":6},{\"v\":null,\"kids\":[]}],\"x-a\":\"aab1\"}",
    "[1,\"a\",2.5,3]",
    "\"2024-01-01T00:00:00Z\"",
    "{\"type\":\"object\",\"required\":[\"a\"],\"properties\":{\"a\":{\"type\":\"string\",\"minLength\":2}}}"
    "\001"
    "{\"a\":\"xy\"}",
    "{\"$ref\":\"#/$defs/a\",\"$defs\":{\"a\":{\"items\":{\"$ref\":\"#\"}}}}\001[[[[1]]]]",
    "{\"$dynamicAnchor\":\"m\",\"properties\":{\"p\":{\"$dynamicRef\":\"#m\"}},\"unevaluatedProperties\":"
    "false}\001"
    "{\"p\":{\"p\":{}}}",
    "{\"oneOf\":[{\"multipleOf\":2},{\"multipleOf\":3}],\"not\":{\"const\":0}}\001"
    "6",
    "{\"pattern\":\"^(?:[a-z]+|\\\\d{2,4})(?=x)\\\\w*$\",\"format\":\"email\"}\001\"abcx\"",
    "{\"items\":[{\"type\":\"integer\"}],\"additionalItems\":false,\"exclusiveMinimum\":true,\"minimum\":1,"
    "\"id\":\"http://x/y\",\"nullable\":true}\001[1]",
    "^(a+)+$\001aaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
    "(?<n>a|b)\\k<n>(?<=a)[^\\p{L}\\s]\001aa1",
    "{\"allOf\":[{\"properties\":{\"a\":{}}},{\"properties\":{\"b\":{}}}],\"contains\":{\"maxContains\":1}}"
    "\001"
    "{\"a\":1,\"b\":2,\"c\":3}",
    NULL,
};
