/*
 * fuzz_resp -- the Redis replies the external cache reads (pt_redis_parse):
 * whatever bytes a server (or something pretending to be one) sends.
 *
 * The bytes are read as the client reads them: reply after reply from the
 * start, first with the head-sized look, then with the length a bulk asks
 * for.  The reader must never read past what it was given (ASan: the input
 * is copied to a buffer of exactly its size), must only return lengths
 * within it, never accept a bulk over the cap, and for every reply it
 * accepts, the same bytes with one more byte after them must give the same
 * reply (a reply's end never depends on what follows).
 */
#include "event/pt_redis.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CAP 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    size_t at = 0;
    for (int guard = 0; at < size && guard < 100000; guard++) {
        struct pt_redis_reply r;
        size_t n = size - at, look = n < PT_REDIS_LINE_MAX + 2 ? n : PT_REDIS_LINE_MAX + 2;
        ssize_t k = pt_redis_parse(buf + at, look, CAP, &r);
        if (k == 0 && r.need) {
            if (r.need <= look || r.need > CAP + 64)
                abort(); /* a bulk's size is known only past the head, and within the cap */
            if (r.need > n)
                break;
            k = pt_redis_parse(buf + at, r.need, CAP, &r);
        }
        if (k <= 0)
            break;
        if ((size_t)k > n)
            abort();
        if (r.type == '$' && r.str && (r.len > CAP || r.str < buf + at || r.str + r.len > buf + at + k))
            abort();
        if (r.skip && (r.type != '$' || r.str || r.skip <= CAP + 2 || r.skip > PT_REDIS_BULK_ABSURD + 2))
            abort(); /* only a bulk over the cap is skipped, read as nil */
        /* the same reply with a byte after it */
        char *more = malloc((size_t)k + 1);
        memcpy(more, buf + at, (size_t)k);
        more[k] = '*';
        struct pt_redis_reply r2;
        ssize_t k2 = pt_redis_parse(more, (size_t)k + 1, CAP, &r2);
        if (k2 != k || r2.type != r.type || r2.len != r.len || r2.integer != r.integer ||
            (r.str == NULL) != (r2.str == NULL) || r2.skip != r.skip)
            abort();
        free(more);
        at += (size_t)k;
        if (r.skip > size - at)
            break;
        at += r.skip; /* the client throws these away (checking only the final CRLF) */
    }
    free(buf);
    return 0;
}

const char *fuzz_name = "fuzz_resp";
const char *const fuzz_seeds[] = {
    "+OK\r\n",
    "-ERR wrong number of arguments\r\n",
    ":42\r\n:-1\r\n",
    "$5\r\nhello\r\n",
    "$-1\r\n",
    "$0\r\n\r\n",
    "+OK\r\n$3\r\nabc\r\n:1\r\n-NOAUTH Authentication required.\r\n",
    "*2\r\n$1\r\na\r\n$1\r\nb\r\n",
    "$4096\r\n",
    "$4097\r\n",
    "$5000\r\nxxxx\r\n+OK\r\n",
    "$99999999999999999999\r\n",
    NULL,
};
