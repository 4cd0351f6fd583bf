/*
 * fuzz_exprlint -- expression text as a management client may PUT it in a
 * policy (pt_exprlint_check), as an expression and as a block.
 *
 * Whatever the bytes, the check must stay inside them (ASan), end with a
 * NUL-terminated message that fits its buffer, and refuse only with a
 * message.
 */
#include "lua/pt_exprlint.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1); /* exactly the bytes: no NUL after them */
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    for (int block = 0; block < 2; block++) {
        char err[256];
        memset(err, 'x', sizeof(err));
        err[0] = '\0';
        bool ok = pt_exprlint_check(copy, size, block, err, sizeof(err));
        if (!memchr(err, '\0', sizeof(err)) || (!ok && !err[0]))
            abort();
    }
    free(copy);
    return 0;
}

/* Seeds for the standalone runner (standalone.c). */
const char *fuzz_name = "fuzz_exprlint";
const char *const fuzz_seeds[] = {
    "context.Request.Headers.GetValueOrDefault(\"x\", \"\")",
    "(string)context.Variables[\"a\"] != null && !x || y ?? z",
    "context.Request.Body.As<JObject>(preserveContent: true)",
    "'context.Request' .. [==[ x ]==] --[[ c ]] -- d",
    "local context = 1; return context.Nope",
    "context.requets.hedaers.x.y.z:get(",
    "new JObject(); var x = DateTime.UtcNow; string.Format(\"{0}\", 1)",
    "[[",
    "'\\",
    NULL,
};
