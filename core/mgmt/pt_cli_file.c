/*
 * pt_cli_file -- local input: a file or stdin within a bound, and a YAML or JSON
 * document read from one.
 */
#include "conf/pt_node.h"
#include "mgmt/pt_cli_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A file to send or read (apply -f, api import, -f, --token-file): at most
   APPLY_MAX bytes, a regular file or a stream (stdin, a pipe); NULL with
   errno (EISDIR, EFBIG...) otherwise. */
char *pt_cli_file_read(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f)
        return NULL;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        if (f != stdin)
            fclose(f);
        errno = EISDIR;
        return NULL;
    }
    size_t cap = 65536, n = 0;
    char *b = malloc(cap + 1);
    size_t k;
    while (b && (k = fread(b + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n > APPLY_MAX) {
            free(b);
            b = NULL;
            errno = EFBIG;
            break;
        }
        if (n == cap) {
            char *nb = realloc(b, cap * 2 + 1);
            if (!nb) {
                free(b);
                b = NULL;
                errno = ENOMEM;
                break;
            }
            b = nb;
            cap *= 2;
        }
    }
    int ferr = b && ferror(f) ? errno : 0;
    if (f != stdin)
        fclose(f);
    if (ferr) {
        free(b);
        errno = ferr;
        return NULL;
    }
    if (!b)
        return NULL;
    b[n] = '\0';
    *len = n;
    return b;
}

/* A YAML or JSON document (-f FILE, - for stdin) as JSON; exits 1 when it cannot be read. */
json_t *pt_cli_file_doc(const char *file)
{
    size_t len = 0;
    char *text = pt_cli_file_read(file, &len);
    if (!text) {
        fprintf(stderr, "portico: cannot read %s: %s\n", file, strerror(errno));
        exit(1);
    }
    struct pt_pool *pool = pt_pool_new(65536);
    struct pt_errors errs = {0};
    struct pt_node *root = pt_node_parse_yaml(pool, file, text, len, &errs);
    json_t *j = root ? pt_node_to_json(root) : NULL;
    if (!j)
        fprintf(stderr, "portico: %s\n", errs.n ? errs.msgs[0] : "cannot read the document");
    pt_node_errors_clear(&errs);
    pt_pool_free(pool);
    free(text);
    if (!j)
        exit(1);
    return j;
}
