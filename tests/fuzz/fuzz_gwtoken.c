/*
 * fuzz_gwtoken -- Authorization values as any node (or anybody) may send
 * them to the sync endpoints (pt_gwtoken_parse, pt_gwtoken_signed_by).
 *
 * Whatever the bytes, reading must never go out of bounds (ASan), a token
 * must count as signed by the key only when it is the very text the key
 * makes for its id and expiry, and what is read must be made again the
 * same way (id, stamp and expiry agree).
 */
#include "base/pt_gwtoken.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exactly the bytes, not NUL-terminated */
    char *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    struct pt_gwtoken t;
    if (pt_gwtoken_parse((pt_str){copy, size}, &t)) {
        if (!pt_gwtoken_id_ok(pt_str_c(t.id)) || strlen(t.stamp) != 12 || strlen(t.sig_b64) != 88)
            abort();
        char again[PT_GWTOKEN_MAX], stamp[13];
        if (!pt_gwtoken_stamp(t.expiry, stamp) || strcmp(stamp, t.stamp))
            abort(); /* the expiry read is not the minute written */
        if (!pt_gwtoken_make(t.id, "fuzz-key", t.expiry, again))
            abort();
        bool same = strcmp(strrchr(again, '&') + 1, t.sig_b64) == 0;
        if (pt_gwtoken_signed_by(&t, "fuzz-key") != same)
            abort(); /* accepted a signature the key never made, or refused its own */
    }
    free(copy);
    return 0;
}

/* Seeds for the standalone runner (standalone.c). */
const char *fuzz_name = "fuzz_gwtoken";
const char *const fuzz_seeds[] = {
    "GatewayKey gw-1&202701050000&"
    "5f6vCgDTDi5piumTd+0h8wr9FJ7CfSn23KWn9+wWA9HHXcgGPkTRm3YP3HORdy9K5N7byvqmgKcY4gQeo26TcA==",
    /* genuine for "fuzz-key" */
    "GatewayKey gw&202701050000&"
    "Fhvy0b+y/zz9O4CPG44QGhV0tgr7Cv95HfP3Wl5RLKCv1DImBJ6orX02zevNMmCaJ6cfiu+lrb0VO0AeqEZU+g==",
    "gw-1&202802292359&"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
    "GatewayKey ",
    "GatewayKey a&&",
    "Bearer x",
    NULL,
};
