/*
 * fuzz_config -- the YAML configuration loader and its schema checks on
 * arbitrary bytes, through the path `portico -t` takes (pt_conf_parse, then
 * pt_gen_validate with references checked, in checking-only mode so that
 * nothing is contacted), from memory: no file is written.
 *
 * The first byte says whether references between entities are checked
 * (as `portico -t` does) or not; the document is the rest.  Whatever the
 * bytes (at most MAX_INPUT), the loader either returns a
 * configuration that then validates or not, or fails with at least one
 * message, each terminated, non-empty and naming where (the document's
 * name, a line and a column, or a key path).  Never a read or write out of
 * bounds or a leak (ASan), never a hang.  Once per run, the configuration
 * file the project ships (conf/portico.yaml) must load and validate.
 */
#include "conf/pt_conf.h"
#include "conf/pt_node.h"
#include "policy/pt_gen.h"

#include "policies_setup.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUT (64 * 1024)
#define NAME "fuzz.yaml"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_messages(const struct pt_errors *errs, bool failed)
{
    if (failed && errs->n == 0)
        abort(); /* refused without a word */
    for (int i = 0; i < errs->n; i++)
        if (!errs->msgs[i] || !errs->msgs[i][0]) {
            fprintf(stderr, "an empty message\n");
            abort();
        }
}

/* Loads and validates text; true when it is a valid configuration. */
static bool load(const char *name, const char *text, size_t len, bool refs, struct pt_errors *errs)
{
    struct pt_conf *cf = pt_conf_parse(name, text, len, errs);
    check_messages(errs, !cf);
    if (!cf)
        return false;
    int before = errs->n;
    bool valid = pt_gen_validate(cf, refs, errs);
    if (!valid && errs->n == before)
        abort(); /* invalid without a word */
    check_messages(errs, !valid);
    pt_conf_free(cf);
    return valid;
}

/* The shipped configuration is valid: the driver reaches the checks past the loader. */
static void check_shipped(void)
{
    FILE *f = fopen(PT_SRCDIR "/conf/portico.yaml", "rb");
    if (!f)
        return; /* an installed tree without sources */
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof(text), f);
    fclose(f);
    struct pt_errors errs = {0};
    if (!load(PT_SRCDIR "/conf/portico.yaml", text, n, true, &errs)) {
        for (int i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        abort();
    }
    pt_node_errors_clear(&errs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        ready = true;
        fuzz_policies_setup();
        check_shipped();
    }
    if (!size || size > MAX_INPUT)
        return 0;
    bool refs = !(data[0] & 1); /* as `portico -t` (references too), or as a start (file alone) */
    data++;
    size--;
    /* exactly the bytes, not NUL-terminated, so that a read past them is seen */
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    struct pt_errors errs = {0};
    load(NAME, text, size, refs, &errs);
    pt_node_errors_clear(&errs);
    free(text);
    return 0;
}

/* Seeds for the standalone runner (standalone.c): documents, after the byte it adds. */
const char *fuzz_name = "fuzz_config";
const char *const fuzz_seeds[] = {
    "listen: ':8080'\n",
    "listen:\n  - address: 127.0.0.1:8080\nbackends:\n  - id: b\n    url: http://127.0.0.1:9000\napis:\n"
    "  - id: echo\n    path: echo\n    backend: b\n    subscriptionRequired: false\n    operations:\n"
    "      - id: get\n        method: GET\n        urlTemplate: /items/{id}\n        policies:\n"
    "          inbound:\n            - base\n            - set-header: {name: X-A, value: '1'}\n",
    "listen: [':8080']\nproducts:\n  - id: p\n    name: P\n    apis: [a]\napis:\n  - id: a\n    path: a\n"
    "    serviceUrl: http://127.0.0.1:1\nsubscriptions:\n  - id: s\n    scope: /products/p\n    primaryKey: "
    "k\n",
    "listen: ':8080'\nnamedValues:\n  - {id: nv, value: x, secret: true}\npolicies:\n  inbound:\n"
    "    - rate-limit: {calls: 5, renewal-period: 60}\n    - choose:\n        - when: '@(true)'\n"
    "          then: [return-response: {status: 200}]\n",
    "&a [*a, *a]\n",
    "listen: !!binary AAAA\n? [a, b]\n: c\n",
    "%YAML 1.1\n---\nlisten: ':1'\n...\n---\nlisten: ':2'\n",
    NULL,
};
