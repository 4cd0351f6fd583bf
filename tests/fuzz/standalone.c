/*
 * standalone -- runs a fuzz driver without libFuzzer, for `make check`:
 * every file named on the command line (a corpus), then a fixed number of
 * inputs made by mutating built-in seeds with a seeded generator, so a run
 * is repeatable (PT_FUZZ_RUNS inputs, default 20000; PT_FUZZ_SEED).  It
 * prints one TAP line.  Coverage-guided runs use the same driver linked
 * with libFuzzer instead (configure --enable-fuzzing; docs/testing.md).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
extern const char *const fuzz_seeds[];
extern const char *fuzz_name;

static uint64_t rng;

static uint32_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static size_t mutate(uint8_t *buf, size_t n, size_t cap)
{
    int edits = 1 + (int)(next() % 8);
    for (int e = 0; e < edits; e++) {
        size_t at = n ? next() % n : 0;
        switch (next() % 6) {
        case 0: /* flip a byte */
            if (n)
                buf[at] ^= (uint8_t)(1u << (next() % 8));
            break;
        case 1: /* an interesting byte */
            if (n) {
                static const uint8_t pick[] = {0, '\r', '\n', ' ', ':', ';', '0', 'f', 0xff, '\t', '-'};
                buf[at] = pick[next() % sizeof(pick)];
            }
            break;
        case 2: /* delete a run */
            if (n) {
                size_t len = 1 + next() % 16;
                if (at + len > n)
                    len = n - at;
                memmove(buf + at, buf + at + len, n - at - len);
                n -= len;
            }
            break;
        case 3: /* duplicate a run */
            if (n && n < cap) {
                size_t len = 1 + next() % 64;
                if (at + len > n)
                    len = n - at;
                if (n + len > cap)
                    len = cap - n;
                memmove(buf + at + len, buf + at, n - at);
                n += len;
            }
            break;
        case 4: /* truncate */
            n = n ? next() % (n + 1) : 0;
            break;
        default: /* a big hex number somewhere */
            if (n + 16 < cap) {
                const char *hx = "fffffffffffffff";
                memmove(buf + at + 15, buf + at, n - at);
                memcpy(buf + at, hx, 15);
                n += 15;
            }
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    long corpus = 0;
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f)
            continue;
        static uint8_t file[1 << 20];
        size_t n = fread(file, 1, sizeof(file), f);
        fclose(f);
        LLVMFuzzerTestOneInput(file, n);
        corpus++;
    }
    const char *runs_env = getenv("PT_FUZZ_RUNS"), *seed_env = getenv("PT_FUZZ_SEED");
    long runs = runs_env ? atol(runs_env) : 20000;
    rng = seed_env ? strtoull(seed_env, NULL, 10) : 0x9e3779b97f4a7c15ull;
    if (!rng)
        rng = 1;
    int nseeds = 0;
    while (fuzz_seeds[nseeds])
        nseeds++;
    enum { CAP = 1 << 16 };
    static uint8_t buf[CAP];
    for (long r = 0; r < runs; r++) {
        const char *s = fuzz_seeds[next() % (uint32_t)nseeds];
        size_t n = strlen(s);
        if (n + 1 > CAP)
            n = CAP - 1;
        buf[0] = (uint8_t)next(); /* the driver's own first byte */
        memcpy(buf + 1, s, n);
        n = mutate(buf + 1, n, CAP - 1) + 1;
        LLVMFuzzerTestOneInput(buf, n);
    }
    printf("1..1\nok 1 - %s: %ld corpus files, %ld generated inputs\n", fuzz_name, corpus, runs);
    return 0;
}
