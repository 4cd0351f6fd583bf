/*
 * fuzz_tracetoken -- Apim-Debug-Authorization values as any client may send
 * them (pt_tracetoken_verify), and the same bytes as credentialsExpireAfter
 * (pt_tracetoken_duration_ms) and as a trace location's signature.
 *
 * Whatever the bytes, the check must never read out of bounds (ASan), must
 * call a token genuine only when it is one this key made (a mutation of a
 * genuine token that still verifies must equal it), and the bytes signed
 * again must verify.
 */
#include "http/pt_tracetoken.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct pt_tracetoken_key key;
    if (!key.set)
        pt_tracetoken_derive("fuzz-secret", "portico debug token v1", &key);
    const uint64_t now = 1796000000000ULL;
    char genuine[PT_TRACETOKEN_MAX];
    pt_tracetoken_sign(&key, "echo", now + 1000, genuine);
    /* as a header value: exactly the bytes, not NUL-terminated */
    char *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    enum pt_tracetoken_verdict v = pt_tracetoken_verify(&key, (pt_str){copy, size}, pt_str_c("echo"), now);
    if (v != PT_TRACETOKEN_INVALID && (size != strlen(genuine) || memcmp(copy, genuine, size)))
        abort(); /* accepted bytes this key never signed */
    /* as text */
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    uint64_t ms;
    if (pt_tracetoken_duration_ms(text, &ms) && ms > 10ULL * 366 * 86400000)
        abort();
    (void)pt_tracetoken_location_ok(&key, "0123456789abcdef0123456789abcdef", 1796000000, text);
    (void)pt_tracetoken_api_id(text);
    /* as an API id: what is signed verifies */
    char tok[PT_TRACETOKEN_MAX];
    if (strlen(text) && pt_tracetoken_sign(&key, text, now + 1, tok) &&
        pt_tracetoken_verify(&key, pt_str_c(tok), pt_str_c(text), now) != PT_TRACETOKEN_OK)
        abort();
    free(text);
    free(copy);
    return 0;
}

/* Seeds for the standalone runner (standalone.c). */
const char *fuzz_name = "fuzz_tracetoken";
const char *const fuzz_seeds[] = {
    "v1.ZWNobw.1796000001000.0000000000000000000000000000000000000000000000000000000000000000",
    "v1.b3RoZXI.1796000001000.ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "v1....",
    "PT1H",
    "P1DT2H30M0.5S",
    "PT0.001S",
    "garbage",
    "v1.",
    "/apis/echo",
    NULL,
};
