/*
 * store_helpers.h -- a real SQLite store in a fresh temporary folder for a
 * unit test, and its removal.  Include after <cmocka.h> and
 * "conf/pt_store.h".
 */
#ifndef PT_TEST_STORE_HELPERS_H
#define PT_TEST_STORE_HELPERS_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* `dir` receives the folder; `name` tells the tests' folders apart in /tmp. */
static struct pt_store *open_store(char dir[64], const char *name)
{
    snprintf(dir, 64, "/tmp/pt-%s-XXXXXX", name);
    assert_non_null(mkdtemp(dir));
    char err[256];
    struct pt_store *st = pt_store_open(dir, err, sizeof(err));
    assert_non_null(st);
    return st;
}

static void close_store(struct pt_store *st, const char *dir)
{
    pt_store_close(st);
    char path[128];
    const char *files[] = {"portico.db", "portico.db-wal", "portico.db-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

#endif
