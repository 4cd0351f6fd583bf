/*
 * standalone -- runs a fuzz driver without libFuzzer, for `make check`:
 * every file named on the command line, or in a folder named there (a
 * corpus; with no argument, the driver's committed corpus,
 * tests/fuzz/corpus/<driver>/, which also holds the inputs of crashes
 * found and fixed), then a fixed number of inputs made by mutating built-in
 * seeds with a seeded generator, so a run is repeatable (PT_FUZZ_RUNS
 * inputs, default 20000; PT_FUZZ_SEED).  It prints one TAP line.
 * PT_FUZZ_WRITE_SEEDS=DIR writes the built-in seeds into DIR instead (to
 * start a corpus) and runs nothing.
 * Coverage-guided runs use the same driver linked with libFuzzer instead
 * (configure --enable-fuzzing; docs/testing.md).
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

/* Runs the driver on one file; false when it cannot be read. */
static bool run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    static uint8_t file[1 << 20];
    size_t n = fread(file, 1, sizeof(file), f);
    fclose(f);
    /* exactly the file's bytes, so that a read past them is seen */
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy)
        return false;
    memcpy(copy, file, n);
    LLVMFuzzerTestOneInput(copy, n);
    free(copy);
    return true;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs a file, or every file of a folder (in name order, so that a run is repeatable); the count run. */
static long run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return 0;
    if (!S_ISDIR(st.st_mode))
        return run_file(path);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **grown = realloc(names, cap * sizeof(*names));
            if (!grown)
                break;
            names = grown;
        }
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        if (!(names[n] = malloc(len)))
            break;
        snprintf(names[n++], len, "%s/%s", path, e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(*names), by_name);
    long count = 0;
    for (size_t i = 0; i < n; i++) {
        count += run_file(names[i]);
        free(names[i]);
    }
    free(names);
    return count;
}

/* Writes each built-in seed twice (first byte 0 and 1) as a corpus for libFuzzer: dir/seed-NN-B. */
static int write_seeds(const char *dir)
{
    for (int i = 0; fuzz_seeds[i]; i++)
        for (int b = 0; b < 2; b++) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/seed-%02d-%d", dir, i, b);
            FILE *f = fopen(path, "wb");
            if (!f || fputc(b, f) == EOF ||
                fwrite(fuzz_seeds[i], 1, strlen(fuzz_seeds[i]), f) != strlen(fuzz_seeds[i])) {
                perror(path);
                return 1;
            }
            fclose(f);
        }
    return 0;
}

int main(int argc, char **argv)
{
    const char *seeds_out = getenv("PT_FUZZ_WRITE_SEEDS");
    if (seeds_out)
        return write_seeds(seeds_out);
    long corpus = 0;
    for (int i = 1; i < argc; i++)
        corpus += run_path(argv[i]);
#ifdef PT_SRCDIR
    if (argc < 2) {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/%s", PT_SRCDIR, fuzz_name);
        corpus += run_path(dir);
        /* a missing or misnamed folder would silently skip the regression inputs */
        if (corpus == 0) {
            printf("1..1\nnot ok 1 - %s: no corpus files in %s\n", fuzz_name, dir);
            return 1;
        }
    }
#endif
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
