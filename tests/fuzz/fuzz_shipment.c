/*
 * fuzz_shipment -- a gateway node's analytics batch as the control plane
 * receives it in a heartbeat (pt_analytics_shipment_ingest, checks only:
 * no store).  Whatever the bytes, the check must not read out of bounds
 * (ASan) or leak, and what it accepts must hold what the store may take:
 * at most 5,000 buckets, each starting on a minute, with at least one call,
 * no negative count, strings without NUL of at most 256 bytes.
 */
#include "proxy/pt_analytics.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_accepted(const json_t *batch)
{
    const json_t *bs = json_object_get(batch, "buckets");
    if (!json_is_array(bs) || json_array_size(bs) > 5000)
        abort();
    size_t i;
    const json_t *b;
    json_array_foreach(bs, i, b)
    {
        json_int_t start = json_integer_value(json_object_get(b, "start"));
        if (!json_is_integer(json_object_get(b, "start")) || start < 0 || start % 60)
            abort();
        json_int_t calls = 0;
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)b, k, v)
        {
            if (json_is_integer(v) && json_integer_value(v) < 0)
                abort();
            if (json_is_string(v) &&
                (json_string_length(v) > 256 || strlen(json_string_value(v)) != json_string_length(v)))
                abort();
            if (!strcmp(k, "success") || !strcmp(k, "blocked") || !strcmp(k, "failed") || !strcmp(k, "other"))
                calls += json_integer_value(v);
        }
        if (calls < 1)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0;
    /* the first byte is the driver's own (standalone.c sets it): whether a
       NUL inside strings is let through the JSON reader */
    size_t flags = JSON_DECODE_ANY | (data[0] & 1 ? JSON_ALLOW_NUL : 0);
    json_t *j = json_loadb((const char *)data + 1, size - 1, flags, NULL);
    if (!j)
        return 0;
    char err[256];
    err[0] = '\0';
    if (pt_analytics_shipment_ingest(NULL, j, "gw", err, sizeof(err)))
        check_accepted(j);
    else if (!err[0])
        abort(); /* a refusal always says why */
    json_decref(j);
    return 0;
}

/* Seeds for the standalone runner (standalone.c). */
const char *fuzz_name = "fuzz_shipment";
const char *const fuzz_seeds[] = {
    "{\"version\":1,\"id\":\"0123abcd-1\",\"dropped\":0,\"buckets\":[{\"start\":1796558340,\"api\":\"echo\","
    "\"operation\":\"get\",\"success\":5,\"failed\":1,\"bandwidth\":600,\"timeSum\":2800,\"timeMin\":400,"
    "\"timeMax\":900,\"backendCount\":6,\"backendSum\":1200,\"backendMin\":100,\"backendMax\":300}]}",
    "{\"version\":1,\"id\":\"x-1\",\"buckets\":[{\"start\":60,\"product\":\"gold\",\"subscription\":\"s1\","
    "\"user\":\"ann\",\"blocked\":3,\"cacheHit\":1,\"cacheMiss\":2,\"other\":1}]}",
    "{\"version\":1,\"id\":\"e-2\",\"dropped\":12,\"buckets\":[]}",
    "{\"version\":1,\"id\":\"a\",\"buckets\":[{\"start\":60,\"success\":1,\"timeMin\":5,\"timeMax\":3}]}",
    "{\"version\":2,\"id\":\"a\",\"buckets\":[{\"start\":60,\"success\":9007199254740993}]}",
    "{\"version\":1,\"id\":\"a\\u0000\",\"buckets\":[{\"start\":-60,\"user\":\"\\u0000\",\"success\":1}]}",
    "[{\"start\":60}]",
    NULL,
};
