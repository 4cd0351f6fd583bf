/*
 * fuzz_validate_body -- validate-content's JSON reader (plugins/validate/
 * body.c, body_parse_json) on arbitrary bytes, as any client may send them
 * as a request body (or a backend as a response body).
 *
 * Whatever the bytes, the reader must never read or write out of bounds
 * (run under ASan), must fail with a terminated message naming a line and a
 * position, and must agree with jansson's own reader: the same verdict and,
 * when both accept, equal values -- except where the two are documented to
 * differ (integers beyond 64 bits become reals here; nesting is bounded at
 * BODY_MAX_DEPTH here and at 2048 in jansson; a UTF-8 byte order mark is
 * skipped here; a raw NUL byte after a value is refused here while jansson
 * takes it for the end of the text).
 */
#include "validate.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a copy of exactly the input's size, so that ASan sees a read past its end */
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    char err[256];
    memset(err, 0x5a, sizeof(err));
    json_t *mine = body_parse_json(text, size, err, sizeof(err));
    if (!mine && (!memchr(err, '\0', sizeof(err)) || !strstr(err, "Line: ") || !strstr(err, "Position: ")))
        abort(); /* a failure without its terminated, located message */
    bool bom = size >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3);
    json_error_t je;
    json_t *theirs = json_loadb(text, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    bool deep = !mine && strstr(err, "nested too deeply");
    bool big = !theirs && strstr(je.text, "too big");
    /* jansson stops at a raw NUL byte as if the text ended there; here it is a stray byte */
    bool nul = !mine && theirs && memchr(text, '\0', size);
    if (!bom && !deep && !big && !nul) {
        if (!mine != !theirs)
            abort(); /* one accepts what the other refuses */
        if (mine && !json_equal(mine, theirs))
            abort();
    }
    json_decref(mine);
    json_decref(theirs);
    free(text);
    return 0;
}

/* Seeds for the standalone runner (standalone.c). */
const char *fuzz_name = "fuzz_validate_body";
const char *const fuzz_seeds[] = {
    "{\"name\": \"rex\", \"age\": 3, \"tags\": [\"a\", \"b\"], \"ok\": true, \"owner\": null}",
    "[1, -0, 0.5, -1.25e+3, 1E-2, 9223372036854775807, -9223372036854775808, 18446744073709551616]",
    "\"\\u00e9\\ud83d\\ude00 \\\" \\\\ \\/ \\b\\f\\n\\r\\t caf\xc3\xa9 \xf0\x9f\x98\x80\"",
    "{\"a\": {\"b\": {\"c\": [[[[{}]]]]}}, \"a\": 2}",
    "  \r\n\t 123 \n",
    "{\"x\": 01}",
    "[1,]",
    "{\"k\" 1}",
    "\"\\ud800\"",
    "\"\xed\xa0\x80\"",
    "\xEF\xBB\xBF{\"bom\": 1}",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
    "]]]]]]]]]]]]]]]]]]]]]]]",
    "nul",
    "{\"\\u0000key\": \"\\u0000\"}",
    NULL,
};
