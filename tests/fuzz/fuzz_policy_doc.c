/*
 * fuzz_policy_doc -- policy documents as the management API checks a
 * policy body (core/mgmt/pt_mgmt_entities.c, PUT .../policies/policy):
 * Portico's document as JSON, or as a YAML text, made a one-entity
 * document and read with the file's settings (pt_model_parse_doc), then
 * compiled into a generation as publishing it would (pt_gen_validate, in
 * checking-only mode so that nothing is contacted).
 *
 * The first input byte picks JSON (even) or YAML (odd); the document is
 * the rest (at most MAX_INPUT bytes).  Whatever the bytes, each step either
 * goes through or fails with at least one non-empty message; never a read
 * or write out of bounds or a leak (ASan), never a hang.  Once per run a
 * known-good document must compile.
 */
#include "conf/pt_conf.h"
#include "conf/pt_model.h"
#include "conf/pt_node.h"
#include "policy/pt_gen.h"

#include "policies_setup.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUT (32 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char GOOD[] =
    "{\"inbound\": [\"base\", {\"set-header\": {\"name\": \"X-A\", \"value\": \"1\"}},"
    " {\"set-variable\": {\"name\": \"v\", \"value\": \"@(1 + 2)\"}}],"
    " \"backend\": [{\"forward-request\": {\"timeout\": 10}}], \"outbound\": [\"base\"]}";

static struct pt_conf *file;

static void check_messages(const struct pt_errors *errs, int before)
{
    if (errs->n <= before)
        abort(); /* refused without a word */
    for (int i = 0; i < errs->n; i++)
        if (!errs->msgs[i] || !errs->msgs[i][0])
            abort();
}

/* The body's document: JSON, or YAML read into JSON (as the API reads format yaml); NULL when unreadable. */
static json_t *read_doc(const char *text, size_t len, bool yaml)
{
    if (!yaml)
        return json_loadb(text, len, JSON_DECODE_ANY, NULL);
    struct pt_errors errs = {0};
    struct pt_pool *pool = pt_pool_new(8192);
    struct pt_node *n = pt_node_parse_yaml(pool, "value", text, len, &errs);
    if (!n)
        check_messages(&errs, 0);
    json_t *doc = n ? pt_node_to_json(n) : NULL;
    pt_pool_free(pool);
    pt_node_errors_clear(&errs);
    return doc;
}

/* Checks and compiles a policy document at the global scope; true when it would be published. */
static bool compile(json_t *policies, bool report)
{
    struct pt_errors errs = {0};
    json_t *doc = json_pack("{s:O}", "policies", policies);
    struct pt_conf *cf = pt_model_parse_doc(file, doc, NULL, "body", &errs);
    json_decref(doc);
    bool ok = false;
    if (!cf)
        check_messages(&errs, 0);
    else {
        ok = pt_gen_validate(cf, true, &errs);
        if (!ok)
            check_messages(&errs, 0);
        pt_conf_free(cf);
    }
    for (int i = 0; report && i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    pt_node_errors_clear(&errs);
    return ok;
}

static void setup(void)
{
    fuzz_policies_setup();
    static const char conf[] = "listen: '127.0.0.1:8080'\n";
    struct pt_errors errs = {0};
    file = pt_conf_parse("portico.yaml", conf, sizeof(conf) - 1, &errs);
    if (!file)
        abort();
    json_t *good = json_loads(GOOD, 0, NULL);
    if (!good || !compile(good, true)) {
        fprintf(stderr, "a known-good policy document does not compile\n");
        abort();
    }
    json_decref(good);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!file)
        setup();
    if (!size || size > MAX_INPUT)
        return 0;
    bool yaml = data[0] & 1;
    data++;
    size--;
    char *text = malloc(size ? size : 1); /* exactly the bytes: a read past them is seen */
    if (!text)
        return 0;
    memcpy(text, data, size);
    json_t *doc = read_doc(text, size, yaml);
    if (json_is_object(doc)) /* the API refuses anything else with a 400 before this */
        compile(doc, false);
    json_decref(doc);
    free(text);
    return 0;
}

/* Seeds for the standalone runner (standalone.c): documents, after the format byte it adds. */
const char *fuzz_name = "fuzz_policy_doc";
const char *const fuzz_seeds[] = {
    "{\"inbound\": [\"base\", {\"set-header\": {\"name\": \"X-A\", \"value\": \"1\", \"exists-action\": "
    "\"override\"}}, {\"rate-limit\": {\"calls\": 5, \"renewal-period\": 60}}], \"backend\": "
    "[{\"forward-request\": {\"timeout\": 10}}], \"outbound\": [\"base\"], \"on-error\": [\"base\"]}",
    "inbound:\n  - base\n  - choose:\n      - when: '@(context.Request.Method == \"GET\")'\n        then:\n"
    "          - return-response:\n              status: 200\n              body: hi\n      - otherwise:\n"
    "          - set-variable: {name: v, value: '@(1 + 2)'}\n",
    "inbound:\n  - check-header: {name: X-K, failed-check-httpcode: 401, failed-check-error-message: no}\n"
    "  - set-body: '@{ return context.Request.Body; }'\n  - cors: {allowed-origins: ['*']}\n"
    "backend:\n  - retry: {condition: '@(true)', count: 3, interval: 1, then: [forward-request: {}]}\n",
    "{\"inbound\": [{\"include-fragment\": {\"fragment-id\": \"missing\"}}, {\"unknown-policy\": {}}]}",
    "{\"inbound\": {\"not\": \"a list\"}, \"bogus\": []}",
    "inbound: [{set-variable: {name: a, value: '@(context.Variables[\"a\"'}}]\n",
    NULL,
};
