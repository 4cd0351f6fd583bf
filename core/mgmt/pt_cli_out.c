/*
 * pt_cli_out -- what reaches the terminal: text from the server made safe
 * for it, documents (JSON, YAML), tables, and the usage error.
 */
#include "mgmt/pt_cli_int.h"
#include "mgmt/pt_mgmt.h"

#include <event2/buffer.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void pt_cli_out_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "portico: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nsee `portico help` for the commands\n");
    exit(2);
}

/* Text from the server, for a terminal: the C0 controls, DEL, the C1
   controls (U+0080-U+009F: a terminal acts on U+009B as on ESC [) and bytes
   that are not UTF-8 become '?', so nothing the server sends can drive the
   screen.  The length of the valid UTF-8 sequence at s (1 to 4), 0 if none. */
static size_t utf8_len(const unsigned char *s, size_t left)
{
    size_t n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
    if (s[0] > 0xf4 || !n || n > left)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) || (s[0] == 0xf0 && s[1] < 0x90) ||
        (s[0] == 0xf4 && s[1] >= 0x90))
        return 0; /* overlong, a surrogate, past U+10FFFF */
    return n;
}

/* s[0..len) cleaned into a new string; keep_lines leaves line ends (a
   document), else tabs and line ends become spaces (a cell, a message). */
char *pt_cli_out_clean(const char *s, size_t len, bool keep_lines)
{
    char *o = malloc(len + 1);
    if (!o) {
        fprintf(stderr, "portico: out of memory\n");
        exit(1);
    }
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        const unsigned char *u = (const unsigned char *)s + i;
        if (*u < 0x80) {
            bool line = *u == '\n' || *u == '\t';
            o[n++] = line ? (keep_lines ? (char)*u : ' ') : *u < 0x20 || *u == 0x7f ? '?' : (char)*u;
            i++;
            continue;
        }
        size_t k = utf8_len(u, len - i);
        if (!k || (u[0] == 0xc2 && u[1] < 0xa0)) { /* not UTF-8, or a C1 control */
            o[n++] = '?';
            i += k ? k : 1;
            continue;
        }
        memcpy(o + n, u, k);
        n += k;
        i += k;
    }
    o[n] = '\0';
    return o;
}

/* Server text on f, cleaned, at most max bytes of it ("..." when cut). */
void pt_cli_out_text(FILE *f, const char *s, size_t max)
{
    if (!s)
        return;
    size_t len = strlen(s);
    char *t = pt_cli_out_clean(s, PT_MIN(len, max), false);
    fputs(t, f);
    free(t);
    if (len > max)
        fputs("...", f);
}

/* A document on stdout: as it is in a pipe, cleaned on a terminal. */
void pt_cli_out_document(const char *text, size_t len)
{
    if (!isatty(STDOUT_FILENO)) {
        fwrite(text, 1, len, stdout);
        return;
    }
    char *t = pt_cli_out_clean(text, len, true);
    fputs(t, stdout);
    free(t);
}

/* j as JSON, or as YAML with -o yaml. */
void pt_cli_out_doc(const struct cli *c, const json_t *j)
{
    if (c->yaml) {
        struct evbuffer *b = evbuffer_new();
        if (b && pt_mgmt_export_yaml(b, j))
            pt_cli_out_document((const char *)evbuffer_pullup(b, -1), evbuffer_get_length(b));
        if (b)
            evbuffer_free(b);
        return;
    }
    /* on a terminal the C1 controls too are written as \\u escapes */
    char *t =
        json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY | (isatty(STDOUT_FILENO) ? JSON_ENSURE_ASCII : 0));
    printf("%s\n", t);
    free(t);
}

static char *cell(const json_t *v)
{
    if (!v || json_is_null(v))
        return strdup("");
    char *s =
        json_is_string(v) ? strdup(json_string_value(v)) : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    /* one line per cell, no escape sequences from the server on the terminal */
    char *t = s ? pt_cli_out_clean(s, strlen(s), false) : strdup("");
    free(s);
    return t;
}

/* A table: one row per item, the given columns, widths from the data. */
void pt_cli_out_table(const json_t *items, const char *const *cols)
{
    int nc = 0;
    while (cols[nc])
        nc++;
    size_t w[16] = {0};
    for (int k = 0; k < nc; k++)
        w[k] = strlen(cols[k]);
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        for (int k = 0; k < nc; k++) {
            char *s = cell(json_object_get(it, cols[k]));
            if (strlen(s) > w[k])
                w[k] = strlen(s) > 60 ? 60 : strlen(s);
            free(s);
        }
    }
    for (int k = 0; k < nc; k++)
        printf("%-*s%s", k + 1 < nc ? (int)w[k] : 0, cols[k], k + 1 < nc ? "  " : "\n");
    json_array_foreach(items, i, it)
    {
        for (int k = 0; k < nc; k++) {
            char *s = cell(json_object_get(it, cols[k]));
            printf("%-*.*s%s", k + 1 < nc ? (int)w[k] : 0, 60, s, k + 1 < nc ? "  " : "\n");
            free(s);
        }
    }
}

/* One entity: every field, one per line. */
void pt_cli_out_fields(const json_t *j)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)j, k, v)
    {
        char *s = cell(v), *key = pt_cli_out_clean(k, strlen(k), false);
        printf("%-22s %s\n", key, s);
        free(key);
        free(s);
    }
}
