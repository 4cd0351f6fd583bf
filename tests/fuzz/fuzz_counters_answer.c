/*
 * fuzz_counters_answer -- the counters' sync thread reads the answer of its
 * Lua script from Redis (pt_counters_redis_answer): whatever bytes a server,
 * or something pretending to be one, puts in that bulk.
 *
 * The reader must never read past what it was given (ASan: the input is
 * copied to a buffer of exactly its size), must refuse negative grants,
 * totals and waits, and an answer it accepts, written back in the script's
 * form, must read back as the same five numbers.
 */
#include "event/pt_counters.h"
#include "event/pt_counters_redis.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    struct pt_counters_answer a, b;
    if (pt_counters_redis_answer(buf, size, &a)) {
        if (a.granted < 0 || a.total < 0 || a.retry_ms < 0)
            abort();
        char again[160];
        int n = snprintf(again, sizeof(again), "%lld %lld %lld %lld %lld", (long long)a.granted,
                         (long long)a.total, (long long)a.slot, (long long)a.left_ms, (long long)a.retry_ms);
        if (n <= 0 || !pt_counters_redis_answer(again, (size_t)n, &b) || memcmp(&a, &b, sizeof(a)))
            abort();
    }
    free(buf);
    return 0;
}

const char *fuzz_name = "fuzz_counters_answer";
const char *const fuzz_seeds[] = {
    "25 75 86644983333 1234 0",
    "0 100 86644983333 2999 41000",
    "1 1 0 -1 0",
    "3 3 -1 1500 0",
    "1 2 3 4 5 ",
    "123456789012345678 0 0 0 0",
    "1 2 3 4 1234567890123456789",
    "-0 -0 -0 -0 -0",
    NULL,
};
