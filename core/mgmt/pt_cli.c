/*
 * pt_cli -- `portico <command>`: the management API from a shell.
 *
 * One table of entities (noun, REST collection, columns, flags) drives the
 * create/update/show/list/delete commands of every entity, their help, and
 * the candidates the bash completion asks for (`portico __complete`); the
 * links between entities (a product's APIs, a group's members) and the
 * policy documents at each scope are two more small tables.  The commands
 * that are not plain entity calls (apply, export, api import|export,
 * subscription keys|approve|..., report, user-password, probe) have their
 * own functions below.
 *
 * Options may come before or after the command.  Output: a table on a
 * terminal, JSON when stdout is not one; -o table|json|yaml decides.  Exit
 * status 0 on success, 1 when the server refuses (its message on stderr) or
 * cannot be reached, 2 on a usage error.  docs/cli.md describes it all.
 */
#include "mgmt/pt_cli.h"
#include "base/pt.h"
#include "conf/pt_conf.h"
#include "conf/pt_import.h"
#include "conf/pt_node.h"
#include "http/pt_fetch.h"
#include "mgmt/pt_mgmt.h"

#include <errno.h>
#include <event2/buffer.h>
#include <jansson.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

struct cli {
    char host[256];
    char port[8];
    const char *url;
    const char *token;
    const char *ca_file; /* trusted CAs for an https:// URL (else the system's) */
    uint32_t timeout_ms; /* one exchange, all of it (--timeout, $PORTICO_TIMEOUT; 60 s) */
    bool tls;
    bool json; /* not a table: JSON, or YAML when yaml is set too */
    bool yaml;
    bool asked;            /* -o (or --json) was given: export follows it, else it is YAML */
    const char *workspace; /* --workspace: entities under /workspaces/{ws}/ */
    const char *headers;   /* more request header lines for the next call ("Name: v\r\n") */
    int status;            /* the last answer's status and size */
    size_t len;
};

struct resp {
    int status;
    char *body;
    size_t len;
};

static void die_usage(const char *fmt, ...) PT_PRINTF(1, 2) __attribute__((noreturn));
static void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "portico: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nsee `portico help` for the commands\n");
    exit(2);
}

static bool parse_url(struct cli *c, const char *url)
{
    c->tls = !strncmp(url, "https://", 8);
    if (strncmp(url, "http://", 7) && !c->tls)
        return false;
    const char *h = url + (c->tls ? 8 : 7), *end = h + strcspn(h, "/");
    const char *colon = NULL;
    if (memchr(h, '@', (size_t)(end - h)))
        return false; /* no user:password@ -- it would show in every message that names the URL */
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (!rb)
            return false;
        snprintf(c->host, sizeof(c->host), "%.*s", (int)(rb - h - 1), h + 1);
        colon = rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        snprintf(c->host, sizeof(c->host), "%.*s", (int)((colon ? colon : end) - h), h);
    }
    snprintf(c->port, sizeof(c->port), "%.*s", colon ? (int)(end - colon - 1) : (c->tls ? 3 : 2),
             colon    ? colon + 1
             : c->tls ? "443"
                      : "80");
    return c->host[0] && c->port[0];
}

/* One exchange with the management API, through the gateway's outbound
   client: one deadline for all of it, a cap on the answer, certificate and
   name checks for https.  false (after saying why) when there is no answer. */
#define CLI_TIMEOUT_MS 60000
#define CLI_MAX_ANSWER (64u << 20)

static bool http_call(struct cli *c, const char *method, const char *path, const char *ctype,
                      const char *body, size_t blen, struct resp *r)
{
    char *url = NULL, *auth = NULL;
    size_t ul = strlen(c->url);
    while (ul && c->url[ul - 1] == '/')
        ul--;
    if (asprintf(&url, "%.*s%s", (int)ul, c->url, path) < 0 ||
        (c->token && asprintf(&auth, "Bearer %s", c->token) < 0)) {
        fprintf(stderr, "portico: out of memory\n");
        exit(1);
    }
    struct pt_fetch_opts o = {.timeout_ms = c->timeout_ms ? c->timeout_ms : CLI_TIMEOUT_MS,
                              .max_body = CLI_MAX_ANSWER,
                              .accept = "application/json",
                              .cancel_fd = -1,
                              .method = method,
                              .body = body,
                              .body_len = blen,
                              .content_type = ctype ? ctype : "application/json",
                              .authorization = auth,
                              .ca_file = c->ca_file,
                              .expect_continue = body && blen > 65536,
                              .headers = c->headers};
    struct pt_fetch_result fr;
    char err[1024];
    int rc = pt_fetch_get(url, &o, &fr, err, sizeof(err));
    free(url);
    if (auth) {
        memset(auth, 0, strlen(auth));
        free(auth);
    }
    if (rc == PT_FETCH_TOO_LARGE)
        fprintf(stderr, "portico: the answer of the management API at %s is larger than %u MiB; refused\n",
                c->url, CLI_MAX_ANSWER >> 20);
    else if (rc == PT_FETCH_TIMEOUT)
        fprintf(stderr, "portico: the management API at %s did not answer within %u s (%s; see --timeout)\n",
                c->url, (c->timeout_ms ? c->timeout_ms : CLI_TIMEOUT_MS) / 1000, err);
    else if (rc != PT_FETCH_OK && strstr(err, "certificate not trusted"))
        fprintf(stderr, "portico: TLS with the management API at %s: %s (see --ca-file)\n", c->url, err);
    else if (rc != PT_FETCH_OK)
        fprintf(stderr, "portico: cannot reach the management API at %s: %s\n", c->url, err);
    if (rc != PT_FETCH_OK)
        return false;
    r->status = c->status = fr.status;
    r->body = fr.body;
    r->len = c->len = fr.len;
    return true;
}

/* Text from the server, for a terminal: the C0 controls, DEL, the C1
   controls (U+0080-U+009F: a terminal acts on U+009B as on ESC [) and bytes
   that are not UTF-8 become '?', so nothing the server sends can drive the
   screen.  The length of the valid UTF-8 sequence at s (1 to 4), 0 if none. */
#define MESSAGE_MAX 2000
#define DETAILS_MAX 100

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
static char *clean_text(const char *s, size_t len, bool keep_lines)
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
static void term_text(FILE *f, const char *s, size_t max)
{
    if (!s)
        return;
    size_t len = strlen(s);
    char *t = clean_text(s, PT_MIN(len, max), false);
    fputs(t, f);
    free(t);
    if (len > max)
        fputs("...", f);
}

/* Prints the server's error and returns 1. */
static int report(const struct resp *r)
{
    json_t *j = json_loads(r->body, 0, NULL);
    json_t *e = json_object_get(j, "error");
    fprintf(stderr, "portico: %d", r->status);
    if (e) {
        fputc(' ', stderr);
        term_text(stderr, json_string_value(json_object_get(e, "code")), 100);
        fputs(": ", stderr);
        term_text(stderr, json_string_value(json_object_get(e, "message")), MESSAGE_MAX);
        fputc('\n', stderr);
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(e, "details"), i, d)
        {
            if (i == DETAILS_MAX) {
                fprintf(stderr, "  (%zu more)\n", json_array_size(json_object_get(e, "details")) - i);
                break;
            }
            const char *t = json_string_value(json_object_get(d, "target"));
            fputs("  ", stderr);
            term_text(stderr, t, 200);
            fputs(t ? ": " : "", stderr);
            term_text(stderr, json_string_value(json_object_get(d, "message")), MESSAGE_MAX);
            fputc('\n', stderr);
        }
    } else {
        fprintf(stderr, " (the server's answer): ");
        char head[301];
        snprintf(head, sizeof(head), "%.*s", (int)(r->len > 300 ? 300 : r->len), r->body ? r->body : "");
        term_text(stderr, head, 300);
        fputc('\n', stderr);
    }
    json_decref(j);
    return 1;
}

/* A call whose success body is JSON (NULL after reporting an error). */
static json_t *call_json(struct cli *c, const char *method, const char *path, const char *body, int *rc)
{
    struct resp r = {0};
    if (!http_call(c, method, path, NULL, body, body ? strlen(body) : 0, &r)) {
        *rc = 1;
        return NULL;
    }
    if (r.status >= 300) {
        *rc = report(&r);
        free(r.body);
        return NULL;
    }
    *rc = 0;
    json_t *j = r.len ? json_loads(r.body, 0, NULL) : json_object();
    free(r.body);
    if (!j) {
        fprintf(stderr, "portico: the server's answer is not JSON\n");
        *rc = 1;
    }
    return j;
}

/* j as JSON, or as YAML with -o yaml. */
/* A document on stdout: as it is in a pipe, cleaned on a terminal. */
static void put_document(const char *text, size_t len)
{
    if (!isatty(STDOUT_FILENO)) {
        fwrite(text, 1, len, stdout);
        return;
    }
    char *t = clean_text(text, len, true);
    fputs(t, stdout);
    free(t);
}

static void print_doc(const struct cli *c, const json_t *j)
{
    if (c->yaml) {
        struct evbuffer *b = evbuffer_new();
        if (b && pt_mgmt_export_yaml(b, j))
            put_document((const char *)evbuffer_pullup(b, -1), evbuffer_get_length(b));
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
    char *t = s ? clean_text(s, strlen(s), false) : strdup("");
    free(s);
    return t;
}

/* A table: one row per item, the given columns, widths from the data. */
static void print_table(const json_t *items, const char *const *cols)
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

static char *enc(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(3 * n + 1), *p = o;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        bool plain =
            ((ch | 32) >= 'a' && (ch | 32) <= 'z') || (ch >= '0' && ch <= '9') || (ch && strchr("-_.~", ch));
        if (plain)
            *p++ = (char)ch;
        else
            p += sprintf(p, "%%%02X", ch);
    }
    *p = '\0';
    return o;
}

/* *p + "/" + the encoded word (raw: as it is), in a new string. */
static void path_add(char **p, const char *word, bool raw)
{
    char *x = raw ? NULL : enc(word), *n = NULL;
    if (asprintf(&n, "%s/%s", *p, raw ? word : x) < 0) {
        fprintf(stderr, "portico: out of memory\n");
        exit(1);
    }
    free(x);
    free(*p);
    *p = n;
}

/* A call whose answer is printed as JSON (-o json|yaml) or as the words
   done on a terminal: the pattern of the verbs that change one thing. */
static int call_done(struct cli *c, const char *method, const char *path, const char *body, const char *done)
{
    int rc = 0;
    json_t *j = call_json(c, method, path, body, &rc);
    if (!j)
        return rc;
    if (c->json)
        print_doc(c, j);
    else
        fputs(done, stdout);
    json_decref(j);
    return 0;
}

/* A document to apply: at most APPLY_MAX bytes, a regular file or a stream
   (stdin, a pipe); NULL with errno (EISDIR, EFBIG...) otherwise. */
#define APPLY_MAX (64u << 20)

static char *read_file(const char *path, size_t *len)
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

/* ------------------------------------------------------ api import/export */

struct entity;
static const struct entity *find_entity(const char *noun, const char *parent);
static char *entity_path(const struct cli *c, const struct entity *e, const char *const *ids);

/* A GET whose answer is a document for stdout (export): 0, or 1 after
   saying why. */
static int get_document(struct cli *c, const char *path)
{
    struct resp r = {0};
    if (!http_call(c, "GET", path, NULL, NULL, 0, &r))
        return 1;
    int rc = 0;
    if (r.status >= 300)
        rc = report(&r);
    else
        put_document(r.body, r.len);
    free(r.body);
    return rc;
}

/* "  created ID" lines (or the warnings) of an import's answer, cleaned. */
static void print_names(FILE *f, const char *head, const json_t *list)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        fputs(head, f);
        term_text(f, json_string_value(v), MESSAGE_MAX);
        fputc('\n', f);
    }
}

struct import_opts {
    const char *src, *id, *path, *service_url, *format, *wsdl_service, *wsdl_endpoint;
};

/* The -link name of a format ("openapi" -> "openapi-link"). */
static const char *link_format(const char *f)
{
    static const char *const pairs[][2] = {
        {"openapi", "openapi-link"},
        {"openapi+json", "openapi+json-link"},
        {"swagger-json", "swagger-link-json"},
        {"wsdl", "wsdl-link"},
        {"odata", "odata-link"},
        {"graphql", "graphql-link"},
    };
    for (size_t i = 0; i < PT_ARRAY_LEN(pairs); i++)
        if (!strcmp(pairs[i][0], f))
            return pairs[i][1];
    return f;
}

/* portico api import FILE|URL --id ID [...]: the file's text (or the URL, for the server to fetch). */
static int api_import(struct cli *c, const struct import_opts *o)
{
    bool url = !strncmp(o->src, "http://", 7) || !strncmp(o->src, "https://", 8);
    const char *format = o->format;
    char *text = NULL;
    size_t len = 0;
    if (url && !format) { /* the content tells the format; the server fetches it again */
        struct pt_fetch_opts fo = {.timeout_ms = c->timeout_ms ? c->timeout_ms : CLI_TIMEOUT_MS,
                                   .max_body = PT_IMPORT_MAX_FETCH,
                                   .accept = "*/*",
                                   .cancel_fd = -1,
                                   .ca_file = c->ca_file};
        struct pt_fetch_result fr;
        char err[512];
        if (pt_fetch_get(o->src, &fo, &fr, err, sizeof(err)) != PT_FETCH_OK) {
            fprintf(stderr, "portico: cannot read %s: %s\n", o->src, err);
            return 1;
        }
        const char *g = fr.status < 300 ? pt_import_guess(fr.body, fr.len) : NULL;
        free(fr.body);
        if (!g) {
            fprintf(stderr,
                    "portico: the format of %s cannot be told from its content; name it with --format "
                    "(graphql-link for a GraphQL endpoint)\n",
                    o->src);
            return 1;
        }
        format = link_format(g);
    } else if (url)
        format = link_format(format);
    else {
        text = read_file(o->src, &len);
        if (!text) {
            fprintf(stderr, "portico: cannot read %s: %s\n", o->src, strerror(errno));
            return 1;
        }
        if (!format)
            format = pt_import_guess(text, len);
        if (!format) {
            fprintf(stderr,
                    "portico: the format of %s cannot be told from its content; name it with --format "
                    "(openapi, openapi+json, swagger-json, wsdl, odata, graphql)\n",
                    o->src);
            free(text);
            return 1;
        }
    }
    json_t *b =
        json_pack("{s:s,s:s%}", "format", format, "value", url ? o->src : text, url ? strlen(o->src) : len);
    free(text);
    if (!b) {
        fprintf(stderr, "portico: %s is not UTF-8 text\n", o->src);
        return 1;
    }
    if (o->path)
        json_object_set_new(b, "path", json_string(o->path));
    if (o->service_url)
        json_object_set_new(b, "serviceUrl", json_string(o->service_url));
    if (o->wsdl_service || o->wsdl_endpoint) {
        json_t *sel = json_object();
        if (o->wsdl_service)
            json_object_set_new(sel, "wsdlServiceName", json_string(o->wsdl_service));
        if (o->wsdl_endpoint)
            json_object_set_new(sel, "wsdlEndpointName", json_string(o->wsdl_endpoint));
        json_object_set_new(b, "wsdlSelector", sel);
    }
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    char *path = entity_path(c, find_entity("api", NULL), (const char *const[]){o->id, NULL});
    int rc = 0;
    json_t *j = call_json(c, "PUT", path, body, &rc);
    free(body);
    free(path);
    if (!j)
        return rc;
    if (c->json)
        print_doc(c, j);
    else {
        json_t *imp = json_object_get(j, "import");
        printf("imported %s (%s) at /", o->id, format);
        term_text(stdout, json_string_value(json_object_get(j, "path")), MESSAGE_MAX);
        printf(": %zu created, %zu updated, %zu deleted, %zu unchanged\n",
               json_array_size(json_object_get(imp, "created")),
               json_array_size(json_object_get(imp, "updated")),
               json_array_size(json_object_get(imp, "deleted")),
               json_array_size(json_object_get(imp, "unchanged")));
        print_names(stdout, "  created ", json_object_get(imp, "created"));
        print_names(stdout, "  updated ", json_object_get(imp, "updated"));
        print_names(stdout, "  deleted ", json_object_get(imp, "deleted"));
        print_names(stderr, "portico: warning: ", json_object_get(imp, "warnings"));
    }
    json_decref(j);
    return 0;
}

/* portico api export ID [--format F]: the document on stdout. */
static int api_export(struct cli *c, const char *id, const char *format)
{
    char *base = entity_path(c, find_entity("api", NULL), (const char *const[]){id, NULL});
    char *ef = enc(format ? format : "openapi"), *path = NULL;
    if (asprintf(&path, "%s?export=true&format=%s", base, ef) < 0)
        exit(1);
    free(base);
    free(ef);
    int rc = get_document(c, path);
    free(path);
    return rc;
}

/* ---------------------------------------------------------------- reports */

struct report_opts {
    const char *since, *from, *to, *interval, *top;
    const char *ids[5]; /* api, operation, product, subscription, user */
};

static const struct {
    const char *cmd, *name, *id; /* the CLI's name, the report's, its id field */
} report_kinds[] = {
    {"by-api", "byApi", "apiId"},
    {"by-operation", "byOperation", "operationId"},
    {"by-product", "byProduct", "productId"},
    {"by-subscription", "bySubscription", "subscriptionId"},
    {"by-user", "byUser", "userId"},
    {"by-time", "byTime", NULL},
    {"by-request", "byRequest", NULL},
};

/* "1h", "15m", "2d", "90s", "1w" into seconds; -1 when it is not one. */
static long cli_duration(const char *v)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || n <= 0 || n > 100000000)
        return -1;
    long unit = !strcmp(end, "s")   ? 1
                : !strcmp(end, "m") ? 60
                : !strcmp(end, "h") ? 3600
                : !strcmp(end, "d") ? 86400
                : !strcmp(end, "w") ? 7 * 86400
                                    : -1;
    return unit < 0 ? -1 : n * unit;
}

static void add_num(json_t *row, const char *col, const json_t *v)
{
    char buf[64];
    if (json_is_real(v))
        snprintf(buf, sizeof(buf), "%.1f", json_real_value(v));
    else if (json_is_integer(v))
        snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
    else
        buf[0] = '\0';
    json_object_set_new(row, col, json_string(buf));
}

static int cli_report(struct cli *c, const char *kind, const struct report_opts *o)
{
    int k = -1;
    for (int i = 0; i < (int)PT_ARRAY_LEN(report_kinds); i++)
        if (kind && !strcmp(kind, report_kinds[i].cmd))
            k = i;
    if (k < 0)
        die_usage(
            "report takes by-api, by-operation, by-product, by-subscription, by-user, by-time or by-request");
    char from[64], flt[2048];
    if (o->from && strlen(o->from) >= sizeof(from))
        die_usage("--from takes a time such as 2026-01-02T03:04:05Z (got %zu bytes)", strlen(o->from));
    if (o->from)
        snprintf(from, sizeof(from), "%s", o->from);
    else {
        long d = cli_duration(o->since ? o->since : "1h");
        if (d < 0)
            die_usage("--since takes a duration such as 30m, 1h, 7d (got '%s')", o->since);
        time_t t = time(NULL) - d;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(from, sizeof(from), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    int n = snprintf(flt, sizeof(flt), "timestamp ge %s", from);
    if (o->to)
        n += snprintf(flt + n, sizeof(flt) - (size_t)n, " and timestamp le %s", o->to);
    static const char *const fields[] = {"apiId", "operationId", "productId", "subscriptionId", "userId"};
    for (int i = 0; i < 5; i++)
        if (o->ids[i] && n < (int)sizeof(flt)) {
            n += snprintf(flt + n, sizeof(flt) - (size_t)n, " and %s eq '", fields[i]);
            /* each ' doubled; past the buffer n only counts, so "too long" below sees it */
            for (const char *p = o->ids[i]; *p; p++)
                for (int twice = *p == '\'' ? 2 : 1; twice--; n++)
                    if (n < (int)sizeof(flt) - 1)
                        flt[n] = *p;
            if (n < (int)sizeof(flt) - 1)
                flt[n] = '\0';
            n += snprintf(flt + PT_MIN(n, (int)sizeof(flt) - 1),
                          sizeof(flt) - (size_t)PT_MIN(n, (int)sizeof(flt) - 1), "'");
        }
    if (n >= (int)sizeof(flt) - 1)
        die_usage("the filter is too long");
    if (o->top) {
        char *end;
        errno = 0;
        long top = strtol(o->top, &end, 10);
        if (!*o->top || *end || errno || top < 1 || top > 1000000)
            die_usage("--top takes a whole number from 1 (got '%s')", o->top);
    }
    char interval[64] = "";
    if (!strcmp(report_kinds[k].name, "byTime")) {
        const char *iv = o->interval ? o->interval : "15m";
        long d = iv[0] == 'P' ? 0 : cli_duration(iv);
        if (iv[0] == 'P')
            snprintf(interval, sizeof(interval), "%s", iv);
        else if (d < 0)
            die_usage("--interval takes a duration such as 15m, 1h, 1d (got '%s')", iv);
        else if (d % 86400 == 0)
            snprintf(interval, sizeof(interval), "P%ldD", d / 86400);
        else if (d % 3600 == 0)
            snprintf(interval, sizeof(interval), "PT%ldH", d / 3600);
        else if (d % 60 == 0)
            snprintf(interval, sizeof(interval), "PT%ldM", d / 60);
        else
            snprintf(interval, sizeof(interval), "PT%ldS", d);
    }
    /* --workspace: the report of that workspace's APIs */
    char *ef = enc(flt), *ei = enc(interval), *ew = enc(c->workspace ? c->workspace : ""), *path = NULL;
    if (asprintf(&path, "/management%s%s/reports/%s?$filter=%s%s%s%s%s", c->workspace ? "/workspaces/" : "",
                 ew, report_kinds[k].name, ef, interval[0] ? "&interval=" : "", ei, o->top ? "&$top=" : "",
                 o->top ? o->top : "") < 0)
        exit(1);
    free(ef);
    free(ei);
    free(ew);
    int rc = 0;
    json_t *j = call_json(c, "GET", path, NULL, &rc);
    free(path);
    if (!j)
        return rc;
    if (c->json) {
        print_doc(c, j);
        json_decref(j);
        return 0;
    }
    json_t *rows = json_array();
    size_t i;
    json_t *it;
    bool by_request = !strcmp(report_kinds[k].name, "byRequest");
    static const char *const agg_cols[] = {"NAME",  "ID",    "TOTAL",  "SUCCESS", "BLOCKED", "FAILED",
                                           "OTHER", "BYTES", "API-MS", "SVC-MS",  NULL};
    static const char *const time_cols[] = {"TIMESTAMP", "TOTAL", "SUCCESS", "BLOCKED", "FAILED",
                                            "OTHER",     "BYTES", "API-MS",  "SVC-MS",  NULL};
    static const char *const req_cols[] = {"TIMESTAMP",    "METHOD",     "URL",    "STATUS",
                                           "BACKEND",      "API-MS",     "SVC-MS", "API",
                                           "SUBSCRIPTION", "REQUEST-ID", NULL};
    json_array_foreach(json_object_get(j, "value"), i, it)
    {
        json_t *r = json_object();
        if (by_request) {
            static const char *const src[] = {"timestamp", "method", "url", NULL};
            for (int x = 0; src[x]; x++) {
                json_t *v = json_object_get(it, src[x]);
                json_object_set_new(r, req_cols[x], v ? json_incref(v) : json_string(""));
            }
            add_num(r, "STATUS", json_object_get(it, "responseCode"));
            add_num(r, "BACKEND", json_object_get(it, "backendResponseCode"));
            add_num(r, "API-MS", json_object_get(it, "apiTime"));
            add_num(r, "SVC-MS", json_object_get(it, "serviceTime"));
            json_object_set(r, "API", json_object_get(it, "apiId"));
            json_object_set(r, "SUBSCRIPTION", json_object_get(it, "subscriptionId"));
            json_object_set(r, "REQUEST-ID", json_object_get(it, "requestId"));
        } else {
            if (report_kinds[k].id) {
                json_object_set(r, "NAME", json_object_get(it, "name"));
                json_object_set(r, "ID", json_object_get(it, report_kinds[k].id));
            } else
                json_object_set(r, "TIMESTAMP", json_object_get(it, "timestamp"));
            static const char *const src[] = {"callCountTotal",  "callCountSuccess", "callCountBlocked",
                                              "callCountFailed", "callCountOther",   "bandwidth",
                                              "apiTimeAvg",      "serviceTimeAvg",   NULL};
            static const char *const dst[] = {"TOTAL", "SUCCESS", "BLOCKED", "FAILED", "OTHER",
                                              "BYTES", "API-MS",  "SVC-MS",  NULL};
            for (int x = 0; src[x]; x++)
                add_num(r, dst[x], json_object_get(it, src[x]));
        }
        json_array_append_new(rows, r);
    }
    print_table(rows, by_request ? req_cols : report_kinds[k].id ? agg_cols : time_cols);
    long long count = json_integer_value(json_object_get(j, "count"));
    if ((long long)json_array_size(rows) < count)
        fprintf(stderr, "(%zu of %lld; see --top)\n", json_array_size(rows), count);
    json_decref(rows);
    json_decref(j);
    return 0;
}

/* ------------------------------------------------------ portal passwords */

#define PASSWORD_READ_MAX 1100 /* more than the server takes (1024 bytes), to refuse with its message */

/* The password on stdin: its first line, without the line end.  On a
   terminal it asks and does not echo. */
static bool read_password(char *out, size_t size)
{
    struct termios old, quiet;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        fprintf(stderr, "New portal password: ");
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    bool ok = fgets(out, (int)size, stdin) != NULL;
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
    }
    if (!ok)
        return false;
    size_t n = strlen(out);
    if (n == size - 1 && out[n - 1] != '\n')
        return false; /* longer than we read: not cut short silently */
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
    return true;
}

/* portico user-password USER / user-invite USER */
static int user_portal(struct cli *c, const char *cmd, const char *user)
{
    bool invite = !strcmp(cmd, "user-invite");
    char *path = entity_path(c, find_entity("user", NULL), (const char *const[]){user, NULL});
    path_add(&path, invite ? "invitation" : "password", true);
    int rc = 0;
    if (invite) {
        rc = call_done(c, "POST", path, NULL, "sent the invitation mail to user ");
        if (!rc && !c->json)
            printf("%s\n", user);
        free(path);
        return rc;
    }
    char pw[PASSWORD_READ_MAX];
    if (!read_password(pw, sizeof(pw))) {
        fprintf(stderr,
                "portico: user-password reads the password from stdin (one line, at most 1024 bytes)\n");
        free(path);
        return 1;
    }
    json_t *b = json_pack("{s:s}", "password", pw);
    char *txt = b ? json_dumps(b, 0) : NULL;
    json_decref(b);
    memset(pw, 0, sizeof(pw));
    if (!txt) {
        fprintf(stderr, "portico: the password is not valid UTF-8\n");
        free(path);
        return 1;
    }
    json_t *j = call_json(c, "PUT", path, txt, &rc);
    memset(txt, 0, strlen(txt));
    free(txt);
    free(path);
    if (!j)
        return rc;
    json_decref(j);
    if (!c->json)
        printf("set the portal password of user %s; their sessions ended\n", user);
    return 0;
}

/* --token-file FILE|-: its first line (so the token is not on the command
   line); held until exit, then wiped. */
static char *token_held;

static void token_forget(void)
{
    if (token_held)
        memset(token_held, 0, strlen(token_held));
    free(token_held);
    token_held = NULL;
}

static const char *read_token(const char *file)
{
    size_t len = 0;
    char *t = read_file(file, &len);
    if (!t) {
        fprintf(stderr, "portico: cannot read the token from %s: %s\n", file, strerror(errno));
        exit(1);
    }
    t[strcspn(t, "\r\n")] = '\0';
    token_forget(); /* the last --token-file wins */
    token_held = t;
    static bool registered;
    if (!registered)
        registered = atexit(token_forget) == 0;
    if (!token_held[0])
        die_usage("%s holds no token", file);
    return t;
}

/* --timeout: whole seconds, 1 to 3600 */
static uint32_t parse_timeout(const char *v)
{
    char *end;
    long t = strtol(v, &end, 10);
    if (*end || t < 1 || t > 3600)
        die_usage("--timeout takes seconds, from 1 to 3600 (got '%s')", v);
    return (uint32_t)t * 1000;
}

/*
 * `portico probe [URL]`: the health check of a container (Dockerfile's
 * HEALTHCHECK, or an exec probe).  GETs the gateway's status path -- the
 * URL given (one without a path gets /status-0123456789abcdef), else
 * http://127.0.0.1:8080/status-0123456789abcdef -- with one 3 s deadline
 * for all of it, and exits 0 on a 200, else 1 with one line saying why.
 * Never 2 (Docker reserves it), not even for a usage error.
 */
#define PROBE_URL "http://127.0.0.1:8080/status-0123456789abcdef"
#define PROBE_PATH "/status-0123456789abcdef"
#define PROBE_TIMEOUT_MS 3000

static int probe_fail(const char *fmt, ...) PT_PRINTF(1, 2);
static int probe_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "portico probe: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

static int cli_probe(int argc, char **argv, int at)
{
    const char *url = NULL, *ca_file = NULL;
    for (int i = 1; i < argc; i++) {
        if (i == at || (!strcmp(argv[i], "--") && i + 1 == at))
            continue;
        if (!strcmp(argv[i], "--ca-file") && i + 1 < argc)
            ca_file = argv[++i];
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: portico probe [URL] [--ca-file FILE]   (default URL %s)\n", PROBE_URL);
            return 0;
        } else if (argv[i][0] == '-' || url)
            return probe_fail("usage: portico probe [URL] [--ca-file FILE] (unexpected '%s')", argv[i]);
        else
            url = argv[i];
    }
    struct cli c = {0};
    if (!url)
        url = PROBE_URL;
    if (strlen(url) > 4096 || !parse_url(&c, url))
        return probe_fail("the URL must look like http://HOST:PORT/PATH or https://... (got '%.200s')", url);
    /* a URL without a path: the liveness path of that listener */
    char full[4200];
    const char *rest = url + (c.tls ? 8 : 7);
    rest += strcspn(rest, "/?#");
    if (!*rest || !strcmp(rest, "/"))
        snprintf(full, sizeof(full), "%.*s%s", (int)(rest - url), url, PROBE_PATH);
    else
        snprintf(full, sizeof(full), "%s", url);
    struct pt_fetch_opts o = {.timeout_ms = PROBE_TIMEOUT_MS,
                              .max_body = 64 * 1024,
                              .accept = "*/*",
                              .cancel_fd = -1,
                              .ca_file = ca_file && *ca_file ? ca_file : getenv("PORTICO_CA_FILE")};
    struct pt_fetch_result fr;
    char err[512];
    int rc = pt_fetch_get(full, &o, &fr, err, sizeof(err));
    if (rc == PT_FETCH_TIMEOUT)
        return probe_fail("%s: no answer within %d s (%s)", full, PROBE_TIMEOUT_MS / 1000, err);
    if (rc == PT_FETCH_TOO_LARGE)
        return probe_fail("%s: the answer is larger than 64 KiB", full);
    if (rc != PT_FETCH_OK)
        return probe_fail("%s: %s", full, err);
    int status = fr.status;
    /* the first line of a refusal's message, if it says one */
    json_t *j = status != 200 && fr.len ? json_loadb(fr.body, fr.len, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(j, "message"));
    int r = status == 200
                ? 0
                : probe_fail("%s: status %d%s%.200s", full, status, msg ? ": " : "", msg ? msg : "");
    json_decref(j);
    free(fr.body);
    return r;
}

/* ----------------------------------------------------------- the options */

/* Every `--flag value` of the command line, in order (the last one of a
   name wins); the switches (no value) are in the same list with value NULL. */
#define MAX_OPTS 64

struct opt {
    const char *name, *value;
};

struct opts {
    struct opt v[MAX_OPTS];
    int n;
};

/* The options of every command, before or after it; `portico help` lists
   them from here.  arg NULL: a switch. */
static const struct global_opt {
    const char *flag, *arg, *help;
} global_opts[] = {
    {"--url", "URL",
     "the management API (default $PORTICO_URL, else http://127.0.0.1:8001;\n"
     "                     https:// for TLS; no user:password@)"},
    {"--token", "TOKEN",
     "the admin token; better $PORTICO_ADMIN_TOKEN or --token-file, as a command\n"
     "                     line is visible to every user of the machine (ps)"},
    {"--token-file", "FILE", "the admin token: the first line of FILE (- for stdin)"},
    {"--ca-file", "FILE", "whom to trust over https (default $PORTICO_CA_FILE, else the system CAs)"},
    {"--timeout", "SECONDS", "the longest one exchange may take (default $PORTICO_TIMEOUT, else 60)"},
    {"-o", "table|json|yaml", "the output (default: a table on a terminal, else JSON)"},
    {"--output", "FORMAT", "the same as -o"},
    {"--json", NULL, "the same as -o json"},
    {"--workspace", "W",
     "the entities of workspace W; a command with no workspace form refuses it\n"
     "                     (exit 2)"},
    {"-h", NULL, "a command's verbs and options (also --help)"},
    {"--help", NULL, NULL},
};

/* The switches (no value) of some commands; they take only their own. */
static const char *const cmd_switches[] = {"--secondary", "--include-file", NULL};

static bool in_list(const char *const *list, const char *s)
{
    for (int i = 0; list[i]; i++)
        if (!strcmp(list[i], s))
            return true;
    return false;
}

static const struct global_opt *global_opt(const char *a)
{
    for (size_t i = 0; i < PT_ARRAY_LEN(global_opts); i++)
        if (!strcmp(global_opts[i].flag, a))
            return &global_opts[i];
    return NULL;
}

/* Does option a take a value (`--path P`), or is it a switch? */
static bool option_takes_value(const char *a)
{
    const struct global_opt *g = global_opt(a);
    return g ? g->arg != NULL : !in_list(cmd_switches, a);
}

/* The index of the first word of argv that is not an option (nor an
   option's value), argc if none; with known_only, -1 at the first option
   that is not one of the CLI's own (the gateway's options: `portico -c F`). */
static int first_word(int argc, char **argv, bool known_only)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--"))
            return i + 1;
        if (a[0] != '-' || !a[1])
            return i;
        size_t n = strncmp(a, "--", 2) ? strlen(a) : strcspn(a, "=");
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)PT_MIN(n, sizeof(name) - 1), a);
        if (known_only && !global_opt(name) && !in_list(cmd_switches, name))
            return -1;
        if (!a[n] && option_takes_value(name))
            i++;
    }
    return argc;
}

static const char *opt_get(const struct opts *o, const char *name)
{
    const char *v = NULL;
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->v[i].name, name))
            v = o->v[i].value ? o->v[i].value : "";
    return v;
}

/* -f FILE or --file FILE (the later one wins, as for every option) */
static const char *opt_file(const struct opts *o)
{
    const char *v = NULL;
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->v[i].name, "-f") || !strcmp(o->v[i].name, "--file"))
            v = o->v[i].value;
    return v;
}

/* --------------------------------------------------------- the entities */

enum ftype { T_STR, T_BOOL, T_INT, T_JSON };

/* A flag of create/update: --flag VALUE sets key (prefix added to a value
   that does not start with it: --owner u1 is "/users/u1"). */
struct field {
    const char *flag, *key;
    enum ftype type;
    const char *prefix;
};

struct entity {
    const char *noun;   /* the command (`api`), or the child's name (`operation`) */
    const char *coll;   /* the REST collection */
    const char *parent; /* a child's parent noun: `portico api operation VERB API OP` */
    bool ws;            /* also under /workspaces/{ws}/ (--workspace) */
    bool singleton;     /* one document, no id (the portal's site) */
    const char *extra;  /* more verbs, for help and completion */
    const char *cols[7];
    struct field fields[12];
};

#define DISPLAY_NAME                                                                                         \
    {                                                                                                        \
        "--display-name", "displayName", T_STR, NULL                                                         \
    }
#define DESCRIPTION                                                                                          \
    {                                                                                                        \
        "--description", "description", T_STR, NULL                                                          \
    }

static const struct entity entities[] = {
    {"api",
     "apis",
     NULL,
     true,
     false,
     "operation import export",
     {"id", "displayName", "path", "serviceUrl", "subscriptionRequired", NULL},
     {DISPLAY_NAME,
      DESCRIPTION,
      {"--path", "path", T_STR, NULL},
      {"--service-url", "serviceUrl", T_STR, NULL},
      {"--subscription-required", "subscriptionRequired", T_BOOL, NULL},
      {"--protocols", "protocols", T_JSON, NULL},
      {"--version-set", "apiVersionSetId", T_STR, NULL},
      {"--api-version", "apiVersion", T_STR, NULL}}},
    {"operation",
     "operations",
     "api",
     true,
     false,
     NULL,
     {"id", "displayName", "method", "urlTemplate", NULL},
     {DISPLAY_NAME,
      DESCRIPTION,
      {"--method", "method", T_STR, NULL},
      {"--url-template", "urlTemplate", T_STR, NULL}}},
    {"product",
     "products",
     NULL,
     true,
     false,
     "add-api remove-api apis add-group remove-group groups",
     {"id", "displayName", "state", "subscriptionRequired", "approvalRequired", NULL},
     {DISPLAY_NAME,
      DESCRIPTION,
      {"--state", "state", T_STR, NULL},
      {"--subscription-required", "subscriptionRequired", T_BOOL, NULL},
      {"--approval-required", "approvalRequired", T_BOOL, NULL},
      {"--subscriptions-limit", "subscriptionsLimit", T_INT, NULL},
      {"--terms", "terms", T_STR, NULL}}},
    {"subscription",
     "subscriptions",
     NULL,
     true,
     false,
     "keys regenerate approve reject suspend activate cancel",
     {"id", "displayName", "scope", "ownerId", "state", NULL},
     {DISPLAY_NAME,
      {"--name", "displayName", T_STR, NULL},
      {"--scope", "scope", T_STR, NULL},
      {"--owner", "ownerId", T_STR, "/users/"},
      {"--state", "state", T_STR, NULL},
      {"--state-comment", "stateComment", T_STR, NULL},
      {"--allow-tracing", "allowTracing", T_BOOL, NULL},
      {"--primary-key", "primaryKey", T_STR, NULL},
      {"--secondary-key", "secondaryKey", T_STR, NULL}}},
    {"user",
     "users",
     NULL,
     false,
     false,
     NULL,
     {"id", "email", "firstName", "lastName", "state", NULL},
     {{"--email", "email", T_STR, NULL},
      {"--first-name", "firstName", T_STR, NULL},
      {"--last-name", "lastName", T_STR, NULL},
      {"--state", "state", T_STR, NULL},
      {"--note", "note", T_STR, NULL}}},
    {"group",
     "groups",
     NULL,
     true,
     false,
     "add-member remove-member members",
     {"id", "displayName", "type", NULL},
     {DISPLAY_NAME, DESCRIPTION, {"--type", "type", T_STR, NULL}}},
    {"named-value",
     "namedValues",
     NULL,
     true,
     false,
     NULL,
     {"id", "displayName", "secret", NULL},
     {DISPLAY_NAME,
      {"--value", "value", T_STR, NULL},
      {"--secret", "secret", T_BOOL, NULL},
      {"--tags", "tags", T_JSON, NULL}}},
    {"backend",
     "backends",
     NULL,
     true,
     false,
     NULL,
     {"id", "url", "protocol", "description", NULL},
     {DESCRIPTION,
      {"--backend-url", "url", T_STR, NULL},
      {"--protocol", "protocol", T_STR, NULL},
      {"--title", "title", T_STR, NULL}}},
    {"policy-fragment",
     "policyFragments",
     NULL,
     true,
     false,
     NULL,
     {"id", "description", NULL},
     {DESCRIPTION, {"--value", "value", T_JSON, NULL}}},
    {"version-set",
     "apiVersionSets",
     NULL,
     true,
     false,
     NULL,
     {"id", "displayName", "versioningScheme", NULL},
     {DISPLAY_NAME,
      DESCRIPTION,
      {"--versioning-scheme", "versioningScheme", T_STR, NULL},
      {"--version-query-name", "versionQueryName", T_STR, NULL},
      {"--version-header-name", "versionHeaderName", T_STR, NULL}}},
    {"workspace",
     "workspaces",
     NULL,
     false,
     false,
     NULL,
     {"id", "displayName", "description", NULL},
     {DISPLAY_NAME, DESCRIPTION}},
    {"logger",
     "loggers",
     NULL,
     false,
     false,
     NULL,
     {"id", "loggerType", "description", NULL},
     {DESCRIPTION, {"--logger-type", "loggerType", T_STR, NULL}}},
    {"gateway",
     "gateways",
     NULL,
     false,
     false,
     "add-api remove-api apis",
     {"id", "description", NULL},
     {DESCRIPTION, {"--location", "locationData.name", T_STR, NULL}}},
    {"portal", "portal/site", NULL, false, true, "publish", {NULL}, {{"--title", "title", T_STR, NULL}}},
    {"token",
     "tokens",
     NULL,
     false,
     false,
     NULL,
     {"id", "role", "workspace", NULL},
     {{"--role", "role", T_STR, NULL}, {"--workspace", "workspace", T_STR, NULL}}},
    {"schema",
     "schemas",
     NULL,
     true,
     false,
     NULL,
     {"id", "schemaType", NULL},
     {{"--schema-type", "schemaType", T_STR, NULL},
      {"--value", "value", T_STR, NULL},
      {"--document", "document", T_JSON, NULL}}},
    {"portal-page",
     "portal/pages",
     NULL,
     false,
     false,
     NULL,
     {"id", "title", "menuOrder", NULL},
     {{"--title", "title", T_STR, NULL},
      {"--markdown", "markdown", T_STR, NULL},
      {"--html", "html", T_STR, NULL},
      {"--menu-order", "menuOrder", T_INT, NULL},
      {"--groups", "groups", T_JSON, NULL}}},
    {"portal-template",
     "portal/templates",
     NULL,
     false,
     false,
     NULL,
     {"id", "subject", "builtIn", NULL},
     {{"--subject", "subject", T_STR, NULL}, {"--body", "body", T_STR, NULL}}},
    {"identity-provider",
     "portal/identityProviders",
     NULL,
     false,
     false,
     NULL,
     {"id", "displayName", "issuer", "clientId", NULL},
     {DISPLAY_NAME,
      {"--issuer", "issuer", T_STR, NULL},
      {"--client-id", "clientId", T_STR, NULL},
      {"--client-secret", "clientSecret", T_STR, NULL},
      {"--scopes", "scopes", T_JSON, NULL},
      {"--allow-signup", "allowSignup", T_BOOL, NULL}}},
};

/* The links between entities: PUT/DELETE {coll}/{id}/{sub}/{other}, GET the list. */
static const struct link {
    const char *noun, *add, *remove, *list, *sub, *other;
} links[] = {
    {"product", "add-api", "remove-api", "apis", "apis", "API"},
    {"product", "add-group", "remove-group", "groups", "groups", "GROUP"},
    {"group", "add-member", "remove-member", "members", "users", "USER"},
    {"gateway", "add-api", "remove-api", "apis", "apis", "API"},
};

static const char *const entity_verbs[] = {"list", "show", "create", "update", "delete", NULL};
static const char *const common_flags[] = {"-f", "--file", "--set", "--set-string", "--workspace", NULL};
static const char *const policy_flags[] = {"--api", "--operation", "--product", "--workspace",
                                           "-f",    "--file",      NULL};
static const char *const import_flags[] = {"--id",           "--path",          "--service-url", "--format",
                                           "--wsdl-service", "--wsdl-endpoint", "--workspace",   NULL};
static const char *const report_flags[] = {"--since",        "--from", "--to",        "--interval",
                                           "--top",          "--api",  "--operation", "--product",
                                           "--subscription", "--user", "--workspace", NULL};

static const struct entity *find_entity(const char *noun, const char *parent)
{
    for (size_t i = 0; i < PT_ARRAY_LEN(entities); i++)
        if (!strcmp(entities[i].noun, noun) &&
            (parent ? entities[i].parent && !strcmp(entities[i].parent, parent) : !entities[i].parent))
            return &entities[i];
    return NULL;
}

static const struct field *find_field(const struct entity *e, const char *flag)
{
    for (int i = 0; i < (int)PT_ARRAY_LEN(e->fields) && e->fields[i].flag; i++)
        if (!strcmp(e->fields[i].flag, flag))
            return &e->fields[i];
    return NULL;
}

/* Every option given must be one this command takes (usage error 2 otherwise). */
static void check_opts(const struct opts *o, const char *what, const struct entity *e,
                       const char *const *more)
{
    for (int i = 0; i < o->n; i++) {
        const char *n = o->v[i].name;
        if (global_opt(n) || (more && in_list(more, n)) ||
            (e && (find_field(e, n) || in_list(common_flags, n))))
            continue;
        die_usage("%s does not take %s (see `portico help %s`)", what, n, what);
    }
}

/* --workspace given to a command that has no workspace form: a usage error,
   never a call to the service-wide entity. */
static void refuse_workspace(const struct cli *c, const char *what)
{
    if (c->workspace)
        die_usage("%s has no workspace form; --workspace does not apply", what);
}

/* /management[/workspaces/W]/COLL[/ID][/CHILD/SUB], ids encoded (malloc'd). */
static char *entity_path(const struct cli *c, const struct entity *e, const char *const *ids)
{
    char *p = strdup("/management");
    if (!p)
        exit(1);
    if (!e->ws)
        refuse_workspace(c, e->parent ? e->parent : e->noun);
    if (c->workspace) {
        path_add(&p, "workspaces", true);
        path_add(&p, c->workspace, false);
    }
    const struct entity *parent = e->parent ? find_entity(e->parent, NULL) : NULL;
    const struct entity *chain[2] = {parent ? parent : e, parent ? e : NULL};
    for (int k = 0, id = 0; k < 2 && chain[k]; k++) {
        path_add(&p, chain[k]->coll, true);
        if (ids[id])
            path_add(&p, ids[id++], false);
    }
    return p;
}

/* A YAML or JSON document (-f FILE, - for stdin) as JSON; exits 1 when it cannot be read. */
static json_t *read_doc(const char *file)
{
    size_t len = 0;
    char *text = read_file(file, &len);
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

/* Sets a dotted key ("locationData.name") in body. */
static void set_key(json_t *body, const char *key, json_t *v)
{
    const char *dot = strchr(key, '.');
    if (!dot) {
        json_object_set_new(body, key, v);
        return;
    }
    char head[256];
    snprintf(head, sizeof(head), "%.*s", (int)PT_MIN((size_t)(dot - key), sizeof(head) - 1), key);
    json_t *inner = json_object_get(body, head);
    if (!json_is_object(inner)) {
        inner = json_object();
        json_object_set_new(body, head, inner);
    }
    set_key(inner, dot + 1, v);
}

/* v as a JSON string; a usage error when it is not UTF-8 (never a field dropped). */
static json_t *text_value(const char *flag, const char *v)
{
    json_t *j = json_string(v);
    if (!j)
        die_usage("%s is not UTF-8 text", flag);
    return j;
}

static json_t *field_value(const struct field *f, const char *v)
{
    switch (f->type) {
    case T_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "yes"))
            return json_true();
        if (!strcmp(v, "false") || !strcmp(v, "no"))
            return json_false();
        die_usage("%s takes true or false (got '%s')", f->flag, v);
    case T_INT: {
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (!*v || *end || errno == ERANGE)
            die_usage("%s takes a whole number (got '%s')", f->flag, v);
        return json_integer(n);
    }
    case T_JSON: {
        json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
        if (!j)
            die_usage("%s takes JSON (got '%s')", f->flag, v);
        return j;
    }
    case T_STR:
        break;
    }
    if (f->prefix && strncmp(v, f->prefix, strlen(f->prefix))) {
        char *t = NULL;
        if (asprintf(&t, "%s%s", f->prefix, v) < 0)
            exit(1);
        json_t *j = text_value(f->flag, t);
        free(t);
        return j;
    }
    return text_value(f->flag, v);
}

/* The value of --set KEY=VALUE (JSON when it parses as JSON, else the
   text) or of --set-string KEY=TEXT (always the text: `=123` stays "123").
   NULL when the option is neither. */
#define SET_KEY_MAX 255

static json_t *set_value(const struct opt *o)
{
    bool text = !strcmp(o->name, "--set-string");
    if (!text && strcmp(o->name, "--set"))
        return NULL;
    const char *eq = strchr(o->value, '=');
    if (!eq || eq == o->value || (size_t)(eq - o->value) > SET_KEY_MAX)
        die_usage("%s takes KEY=VALUE, a KEY of at most %d bytes (got '%.300s')", o->name, SET_KEY_MAX,
                  o->value);
    json_t *j = text ? NULL : json_loads(eq + 1, JSON_DECODE_ANY, NULL);
    return j ? j : text_value(o->name, eq + 1);
}

/* The body of create/update: -f FILE's document, then the flags, then
   --set and --set-string, in the order given. */
static json_t *entity_body(const struct entity *e, const struct opts *o)
{
    /* the flags are checked first: a usage error leaves nothing behind */
    for (int i = 0; i < o->n; i++) {
        const struct field *f = find_field(e, o->v[i].name);
        json_decref(f ? field_value(f, o->v[i].value) : set_value(&o->v[i]));
    }
    const char *file = opt_file(o);
    json_t *body = file ? read_doc(file) : json_object();
    if (!json_is_object(body)) {
        fprintf(stderr, "portico: %s is not a map of properties\n", file);
        json_decref(body);
        exit(1);
    }
    /* APIM's envelope {"properties": {...}}: the server reads only what is
       inside, so the flags and defaults go there too */
    json_t *inner = json_object_get(body, "properties");
    if (json_is_object(inner)) {
        json_incref(inner);
        json_decref(body);
        body = inner;
    }
    for (int i = 0; i < o->n; i++) {
        const struct field *f = find_field(e, o->v[i].name);
        json_t *v;
        if (f)
            set_key(body, f->key, field_value(f, o->v[i].value));
        else if ((v = set_value(&o->v[i]))) {
            char key[SET_KEY_MAX + 1]; /* set_value checked its length */
            snprintf(key, sizeof(key), "%.*s", (int)strcspn(o->v[i].value, "="), o->v[i].value);
            set_key(body, key, v);
        }
    }
    return body;
}

/* A subscription created without a state: `submitted` when its scope is a
   product that requires approval, else `active` (docs/cli.md).  0, or the
   exit status after the product could not be read. */
static int subscription_default_state(struct cli *c, json_t *body)
{
    if (json_object_get(body, "state"))
        return 0;
    const char *scope = json_string_value(json_object_get(body, "scope"));
    bool approval = false;
    /* the scope read as the server reads it (APIM's long form names a
       product too); one it refuses is left to it */
    enum pt_sub_scope kind;
    const char *pid = NULL;
    bool product = scope && pt_conf_entities_parse_sub_scope(scope, &kind, &pid) && kind == PT_SUB_PRODUCT;
    /* a scope too long for an id is left for the server to refuse */
    if (product && strlen(pid) < 512) {
        char *path = entity_path(c, find_entity("product", NULL), (const char *const[]){pid, NULL});
        int rc = 0;
        json_t *p = call_json(c, "GET", path, NULL, &rc);
        free(path);
        if (!p)
            return rc;
        approval = json_is_true(json_object_get(p, "approvalRequired"));
        json_decref(p);
    }
    json_object_set_new(body, "state", json_string(approval ? "submitted" : "active"));
    return 0;
}

/* One entity: every field, one per line. */
static void print_fields(const json_t *j)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)j, k, v)
    {
        char *s = cell(v), *key = clean_text(k, strlen(k), false);
        printf("%-22s %s\n", key, s);
        free(key);
        free(s);
    }
}

static int show_result(const struct cli *c, json_t *j)
{
    if (!json_is_object(j)) {
        fprintf(stderr, "portico: the server's answer is not an entity\n");
        json_decref(j);
        return 1;
    }
    if (c->json)
        print_doc(c, j);
    else
        print_fields(j);
    json_decref(j);
    return 0;
}

/* The JSON body of a call, NULL for none. */
static int call_show(struct cli *c, const char *method, const char *path, json_t *body)
{
    char *txt = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    int rc = 0;
    json_t *j = call_json(c, method, path, txt, &rc);
    free(txt);
    if (!j)
        return rc;
    if (!c->len) { /* call_json reads an empty answer as {}: no entity to show */
        json_decref(j);
        j = json_array();
    }
    return show_result(c, j);
}

/* Every page of a list, as one array, within bounds a hostile server cannot
   stretch: LIST_PAGES_MAX pages, LIST_ITEMS_MAX items, LIST_BYTES_MAX bytes
   of answers; past one, exit 1.  A nextLink is followed only within the
   listed collection, and never to a page already read (any cycle ends). */
#define LIST_PAGES_MAX 1000
#define LIST_ITEMS_MAX 100000
#define LIST_BYTES_MAX (256u << 20)

/* The path and query of nextLink when it is a page of base, else NULL. */
static const char *next_page(const char *next, const char *base)
{
    const char *np = next ? strstr(next, "/management/") : NULL;
    size_t bl = strlen(base);
    return np && !strncmp(np, base, bl) && (!np[bl] || np[bl] == '?') ? np : NULL;
}

static int list_path(struct cli *c, const char *base, const char *const *cols)
{
    json_t *all = json_array();
    char *seen[LIST_PAGES_MAX];
    int pages = 0, rc = 0;
    size_t bytes = 0;
    if (asprintf(&seen[0], "%s?$top=1000", base) < 0)
        exit(1);
    for (;;) {
        json_t *j = call_json(c, "GET", seen[pages++], NULL, &rc);
        bytes += c->len;
        if (j && !json_is_array(json_object_get(j, "value"))) {
            fprintf(stderr, "portico: the server's answer is not a list\n");
            rc = 1;
        }
        if (rc) {
            json_decref(j);
            break;
        }
        json_array_extend(all, json_object_get(j, "value"));
        const char *np = next_page(json_string_value(json_object_get(j, "nextLink")), base);
        bool again = false;
        for (int i = 0; np && i < pages; i++)
            again |= !strcmp(np, seen[i]);
        if (np && !again &&
            (pages == LIST_PAGES_MAX || json_array_size(all) > LIST_ITEMS_MAX || bytes > LIST_BYTES_MAX)) {
            fprintf(stderr,
                    "portico: the list goes on past %d pages, %d items or %u MiB; refused (list fewer)\n",
                    LIST_PAGES_MAX, LIST_ITEMS_MAX, LIST_BYTES_MAX >> 20);
            rc = 1;
        } else if (np && !again && !(seen[pages] = strdup(np)))
            rc = 1;
        json_decref(j);
        if (rc || !np || again)
            break;
    }
    for (int i = 0; i < pages; i++)
        free(seen[i]);
    if (!rc && c->json)
        print_doc(c, all);
    else if (!rc)
        print_table(all, cols);
    json_decref(all);
    return rc;
}

/* create (a PUT that never replaces: If-None-Match: *) or update (a PATCH). */
static int entity_write(struct cli *c, const struct entity *e, bool create, const char *id, const char *path,
                        const struct opts *o)
{
    json_t *body = entity_body(e, o);
    if (create && !strcmp(e->noun, "subscription")) {
        if (!json_object_get(body, "displayName"))
            json_object_set_new(body, "displayName", json_string(id));
        int rc = subscription_default_state(c, body);
        if (rc) {
            json_decref(body);
            return rc;
        }
    }
    c->headers = create ? "If-None-Match: *\r\n" : NULL;
    int rc = call_show(c, create ? "PUT" : "PATCH", path, body);
    c->headers = NULL;
    if (rc && create && c->status == 412)
        fprintf(stderr, "portico: %s %s already exists; `portico %s%s%s update` changes it\n", e->noun, id,
                e->parent ? e->parent : "", e->parent ? " " : "", e->noun);
    return rc;
}

/* portico NOUN [CHILD] VERB [ID [SUBID]]: the five verbs of every entity. */
static int entity_verb(struct cli *c, const struct entity *e, const char *verb, const char *const *ids,
                       int nids, const struct opts *o)
{
    char what[64];
    snprintf(what, sizeof(what), "%s%s%s", e->parent ? e->parent : "", e->parent ? " " : "", e->noun);
    bool writes = !strcmp(verb, "create") || !strcmp(verb, "update");
    /* the flags of a body only where there is one */
    check_opts(o, e->parent ? e->parent : e->noun, writes ? e : NULL,
               (const char *const[]){"--workspace", NULL});
    if (!in_list(entity_verbs, verb) ||
        (e->singleton && (!strcmp(verb, "create") || !strcmp(verb, "delete"))))
        die_usage("unknown %s command '%s'", what, verb);
    int need = (e->parent ? 1 : 0) + (e->singleton ? 0 : 1);
    bool list = !strcmp(verb, "list");
    if (list ? nids != need - 1 : nids != need)
        die_usage("%s %s takes %s", what, verb,
                  e->singleton ? "no id"
                  : e->parent  ? (list ? "the API's id" : "the API's id and the operation's")
                               : (list ? "no id" : "one id"));
    if (writes && find_field(e, "--workspace"))
        c->workspace = NULL; /* a token's --workspace is the token's field, not where it lives */
    const char *pid[3] = {ids[0], nids > 1 ? ids[1] : NULL, NULL};
    char *path = entity_path(c, e, pid);
    int rc = 0;
    if (list && !e->singleton)
        rc = list_path(c, path, e->cols);
    else if (!strcmp(verb, "show") || (list && e->singleton))
        rc = call_show(c, "GET", path, NULL);
    else if (writes)
        rc = entity_write(c, e, !strcmp(verb, "create") && !e->singleton, ids[nids - 1], path, o);
    else { /* delete */
        json_t *j = call_json(c, "DELETE", path, NULL, &rc);
        json_decref(j);
        if (j && !c->json)
            printf("deleted %s %s\n", what, ids[nids - 1]);
    }
    free(path);
    return rc;
}

/* portico product add-api P A | remove-api P A | apis P, and the other links. */
static int link_verb(struct cli *c, const struct entity *e, const struct link *l, const char *verb,
                     const char *const *ids, int nids, const struct opts *o)
{
    check_opts(o, e->noun, NULL, (const char *const[]){"--workspace", NULL});
    bool list = !strcmp(verb, l->list);
    if (nids != (list ? 1 : 2))
        die_usage("%s %s takes %s", e->noun, verb, list ? "one id" : "two ids");
    char *path = entity_path(c, e, (const char *const[]){ids[0], NULL});
    path_add(&path, l->sub, true);
    if (!list)
        path_add(&path, ids[1], false);
    static const char *const cols[] = {"id", "displayName", NULL};
    static const char *const user_cols[] = {"id", "email", "firstName", "lastName", NULL};
    int rc = 0;
    if (list)
        rc = list_path(c, path, strcmp(l->sub, "users") ? cols : user_cols);
    else {
        bool add = !strcmp(verb, l->add);
        char done[160];
        snprintf(done, sizeof(done), "%s %s", add ? "added" : "removed", l->sub);
        rc = call_done(c, add ? "PUT" : "DELETE", path, NULL, done);
        if (!rc && !c->json)
            printf(" %s %s %s\n", ids[1], add ? "to" : "from", ids[0]);
    }
    free(path);
    return rc;
}

/* portico policy get|set|delete [--api A [--operation O] | --product P | --workspace W] [-f FILE] */
static int policy_cmd(struct cli *c, const char *verb, int npos, const struct opts *o)
{
    check_opts(o, "policy", NULL, policy_flags);
    const char *api = opt_get(o, "--api"), *op = opt_get(o, "--operation"),
               *product = opt_get(o, "--product");
    if (!verb || npos != 2)
        die_usage("policy takes get, set or delete, and no id (the scope is --api, --product, --workspace)");
    if ((api && product) || (op && !api))
        die_usage("policy: one scope, --api A [--operation O], --product P or --workspace W");
    const char *file = opt_file(o);
    if (strcmp(verb, "set") && strcmp(verb, "get") && strcmp(verb, "delete"))
        die_usage("unknown policy command '%s'", verb);
    if (!strcmp(verb, "set") && !file)
        die_usage("policy set needs -f FILE (a policy document, YAML or JSON)");
    if (strcmp(verb, "set") && file)
        die_usage("policy %s takes no -f", verb);
    char *path;
    if (api || product) {
        const char *ids[3] = {api ? api : product, op, NULL};
        path = entity_path(
            c, op ? find_entity("operation", "api") : find_entity(api ? "api" : "product", NULL), ids);
    } else if (!(path = strdup("/management")))
        exit(1);
    else if (c->workspace) {
        path_add(&path, "workspaces", true);
        path_add(&path, c->workspace, false);
    }
    path_add(&path, "policies/policy", true);
    int rc = 0;
    if (!strcmp(verb, "set")) {
        json_t *doc = read_doc(file);
        char *txt = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(doc);
        rc = call_done(c, "PUT", path, txt, "set the policy document\n");
        free(txt);
    } else if (!strcmp(verb, "delete")) {
        json_t *j = call_json(c, "DELETE", path, NULL, &rc);
        json_decref(j);
        if (j && !c->json)
            printf("deleted the policy document\n");
    } else {
        /* a document, not a table: YAML for a reader on a terminal */
        struct cli view = *c;
        if (!view.json)
            view.json = view.yaml = true;
        json_t *j = call_json(c, "GET", path, NULL, &rc);
        if (j)
            print_doc(&view, j);
        json_decref(j);
    }
    free(path);
    return rc;
}

/* portico portal publish [--comment TEXT]: the draft becomes the portal's pages. */
static int portal_publish(struct cli *c, const struct opts *o)
{
    check_opts(o, "portal", NULL, (const char *const[]){"--comment", NULL});
    refuse_workspace(c, "portal");
    json_t *b = json_object();
    if (opt_get(o, "--comment"))
        set_key(b, "comment", text_value("--comment", opt_get(o, "--comment")));
    return call_show(c, "POST", "/management/portal/revisions", b);
}
/* ------------------------------------------------------------------ help */

static const char *const other_cmds[][2] = {
    {"apply", "apply -f FILE                 create or update the entities FILE declares (YAML or JSON)"},
    {"export", "export [--include-file]        every entity as YAML that apply accepts (-o json for JSON;\n"
               "                                --include-file adds those the configuration file declares)"},
    {"policy",
     "policy get|set|delete [--api A [--operation O] | --product P | --workspace W] [-f FILE]\n"
     "                                the policy document of a scope (none given: the global one);\n"
     "                                set reads a YAML or JSON document, or APIM's envelope"},
    {"report",
     "report by-api|by-operation|by-product|by-subscription|by-user|by-time|by-request\n"
     "       [--since 1h | --from ISO-TIME [--to ISO-TIME]] [--api A] [--operation O] [--product P]\n"
     "       [--subscription S] [--user U] [--interval 15m (by-time)] [--top N] [--workspace W]\n"
     "                                usage figures (docs/analytics.md)"},
    {"user-password", "user-password USER            set USER's portal password, read from stdin (one line,\n"
                      "                                at least 10 characters); their portal sessions end"},
    {"user-invite", "user-invite USER              send USER the portal's invitation mail"},
    {"probe",
     "probe [URL] [--ca-file FILE]  GET a gateway's status path (default\n"
     "                                http://127.0.0.1:8080/status-0123456789abcdef): exit 0 on 200,\n"
     "                                else 1 (3 s at most)"},
    {"help", "help [COMMAND]                this text, or one command's verbs and options"},
};

static const char *const type_names[] = {"TEXT", "true|false", "N", "JSON"};

static void fields_help(FILE *f, const struct entity *e)
{
    for (int i = 0; i < (int)PT_ARRAY_LEN(e->fields) && e->fields[i].flag; i++)
        fprintf(f, "  %-26s %s (%s)\n", e->fields[i].flag, e->fields[i].key, type_names[e->fields[i].type]);
}

static void entity_help(FILE *f, const struct entity *e, bool details)
{
    const char *p = e->parent ? e->parent : "", *sp = e->parent ? " " : "";
    const char *id = e->singleton ? "" : e->parent ? " API OP" : " ID";
    if (e->singleton)
        fprintf(f, "  %s show | update [flags]\n", e->noun);
    else
        fprintf(f, "  %s%s%s list%s | show%s | create%s [flags] | update%s [flags] | delete%s\n", p, sp,
                e->noun, e->parent ? " API" : "", id, id, id, id);
    for (size_t i = 0; i < PT_ARRAY_LEN(links); i++)
        if (!strcmp(links[i].noun, e->noun))
            fprintf(f, "  %s %s %s %s | %s %s %s | %s %s\n", e->noun, links[i].add, "ID", links[i].other,
                    links[i].remove, "ID", links[i].other, links[i].list, "ID");
    if (!strcmp(e->noun, "api") && !e->parent) {
        fprintf(f, "  api import FILE|URL --id ID [--path P] [--service-url U] [--format F]\n"
                   "             [--wsdl-service S] [--wsdl-endpoint E]   import or re-import a definition\n"
                   "  api export ID [--format openapi|openapi+json|swagger-json|wsdl|graphql]\n");
    }
    if (!strcmp(e->noun, "subscription"))
        fprintf(f, "  subscription keys ID | regenerate ID [--secondary]\n"
                   "  subscription approve|reject|suspend|activate|cancel ID [--state-comment TEXT]\n");
    if (!strcmp(e->noun, "portal"))
        fprintf(f, "  portal publish [--comment TEXT]   publish the draft\n");
    if (!details)
        return;
    if (!e->singleton)
        fprintf(f, "create never replaces: an id that exists is refused (exit 1); update changes it\n");
    fprintf(f, "flags of create and update (-f FILE, YAML or JSON, gives the whole body; flags and\n"
               "--set KEY=VALUE, a JSON value or else a string, and --set-string KEY=TEXT, always\n"
               "a string, change it):\n");
    fields_help(f, e);
    if (e->ws)
        fprintf(f, "  %-26s %s\n", "--workspace W", "the entity of workspace W");
    if (!strcmp(e->noun, "subscription"))
        fprintf(f, "a new subscription without --state is `submitted` when its scope is a product with\n"
                   "approvalRequired: true, else `active`\n");
    if (!strcmp(e->noun, "api") && !e->parent) {
        const struct entity *op = find_entity("operation", "api");
        entity_help(f, op, false);
        fprintf(f, "flags of api operation create and update:\n");
        fields_help(f, op);
    }
}

static void global_help(FILE *f)
{
    fprintf(f, "options (before or after the command; --name=value too; `--` ends them):\n");
    for (size_t i = 0; i < PT_ARRAY_LEN(global_opts); i++) {
        char left[64];
        const struct global_opt *g = &global_opts[i];
        if (!g->help)
            continue;
        snprintf(left, sizeof(left), "%s%s%s", g->flag, g->arg ? " " : "", g->arg ? g->arg : "");
        fprintf(f, "  %-18s %s\n", left, g->help);
    }
    fprintf(f,
            "exit status: 0 done, 1 refused by the server (its message on stderr) or no answer, 2 usage\n");
}

static void usage(FILE *f)
{
    fprintf(f, "usage: portico COMMAND [VERB] [ARGS] [options]   (talks to the management API)\n");
    for (size_t i = 0; i < PT_ARRAY_LEN(entities); i++)
        entity_help(f, &entities[i], false);
    for (size_t i = 0; i < PT_ARRAY_LEN(other_cmds); i++)
        fprintf(f, "  %s\n", other_cmds[i][1]);
    global_help(f);
    fprintf(f, "`portico help COMMAND` lists a command's flags; docs/cli.md describes them all\n");
}

static int help(const char *cmd)
{
    if (!cmd) {
        usage(stdout);
        return 0;
    }
    const struct entity *e = find_entity(cmd, NULL);
    bool found = e != NULL;
    if (e)
        entity_help(stdout, e, true);
    for (size_t i = 0; !found && i < PT_ARRAY_LEN(other_cmds); i++)
        if (!strcmp(other_cmds[i][0], cmd)) {
            printf("  %s\n", other_cmds[i][1]);
            found = true;
        }
    if (!found)
        die_usage("no command '%s'", cmd);
    global_help(stdout);
    return 0;
}

/* ------------------------------------------------------------ completion */

/* `portico __complete WORD...`: the candidates for the word after WORDs,
   one per line (the bash completion script asks; nothing: complete file names). */
static void print_words(const char *s)
{
    for (; *s; s++)
        putchar(*s == ' ' ? '\n' : *s);
    putchar('\n');
}

static void print_list(const char *const *l)
{
    for (int i = 0; l[i]; i++)
        printf("%s\n", l[i]);
}

static void print_global_flags(void)
{
    for (size_t i = 0; i < PT_ARRAY_LEN(global_opts); i++)
        printf("%s\n", global_opts[i].flag);
}

static int complete(int argc, char **argv)
{
    const char *pos[4] = {0};
    int npos = 0;
    for (int i = 0; i < argc; i++) {
        bool opt = argv[i][0] == '-' && argv[i][1];
        if (opt && option_takes_value(argv[i]) && !strchr(argv[i], '=')) {
            if (i + 1 == argc) { /* the word wanted is this option's value */
                if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output"))
                    print_words("table json yaml");
                return 0;
            }
            i++;
        } else if (!opt && npos < 4)
            pos[npos++] = argv[i];
    }
    const struct entity *e = npos ? find_entity(pos[0], NULL) : NULL;
    if (!npos || (npos == 1 && !strcmp(pos[0], "help"))) {
        for (size_t i = 0; i < PT_ARRAY_LEN(entities); i++)
            if (!entities[i].parent)
                printf("%s\n", entities[i].noun);
        for (size_t i = 0; i < PT_ARRAY_LEN(other_cmds); i++)
            printf("%s\n", other_cmds[i][0]);
        if (!npos)
            print_global_flags();
        return 0;
    }
    if (npos == 1 && e) {
        print_list(entity_verbs);
        if (e->extra)
            print_words(e->extra);
        return 0;
    }
    if (npos == 1 && !strcmp(pos[0], "policy")) {
        print_words("get set delete");
        return 0;
    }
    if (npos == 1 && !strcmp(pos[0], "report")) {
        for (size_t i = 0; i < PT_ARRAY_LEN(report_kinds); i++)
            printf("%s\n", report_kinds[i].cmd);
        return 0;
    }
    if (e && npos == 2 && !strcmp(pos[1], "operation")) {
        print_list(entity_verbs);
        return 0;
    }
    /* the options of the command */
    print_global_flags();
    if (e) {
        const struct entity *f =
            npos > 1 && !strcmp(pos[1], "operation") ? find_entity("operation", "api") : e;
        for (int i = 0; i < (int)PT_ARRAY_LEN(f->fields) && f->fields[i].flag; i++)
            printf("%s\n", f->fields[i].flag);
        print_list(common_flags);
        if (!strcmp(e->noun, "api") && npos > 1 && !strcmp(pos[1], "import"))
            print_list(import_flags);
    } else if (!strcmp(pos[0], "policy"))
        print_list(policy_flags);
    else if (!strcmp(pos[0], "report"))
        print_list(report_flags);
    else if (!strcmp(pos[0], "apply"))
        print_words("-f");
    else if (!strcmp(pos[0], "export"))
        print_words("--include-file");
    return 0;
}

/* ------------------------------------------------------------------ main */

static const char *const cli_commands[] = {"apply", "export", "report", "user-password", "user-invite",
                                           "probe", "help",   "policy", "__complete",    NULL};

static bool is_command(const char *a)
{
    return find_entity(a, NULL) || in_list(cli_commands, a);
}

bool pt_cli_is_command(int argc, char **argv)
{
    /* the CLI's options may come first: `portico --url U api list` */
    int w = first_word(argc, argv, true);
    return w > 0 && w < argc && is_command(argv[w]);
}

/* The options and positional words of argv into o and pos; the global options into c. */
static int parse_args(int argc, char **argv, struct cli *c, struct opts *o, const char **pos, int maxpos)
{
    int npos = 0;
    bool words_only = false; /* after `--`: ids that start with '-' */
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (!words_only && !strcmp(a, "--")) {
            words_only = true;
            continue;
        }
        if (words_only || a[0] != '-' || !a[1]) {
            if (npos == maxpos)
                die_usage("too many arguments ('%s')", a);
            pos[npos++] = a;
            continue;
        }
        if (o->n == MAX_OPTS)
            die_usage("too many options");
        char *eq = strncmp(a, "--", 2) ? NULL : strchr(a, '='); /* --name=value */
        if (eq)
            *eq = '\0';
        bool sw = !option_takes_value(a);
        if (sw && eq)
            die_usage("%s takes no value", a);
        if (!sw && !eq && i + 1 >= argc)
            die_usage("%s needs a value", a);
        const char *v = sw ? NULL : eq ? eq + 1 : argv[++i];
        o->v[o->n++] = (struct opt){a, v};
        if (!strcmp(a, "--url"))
            c->url = v;
        else if (!strcmp(a, "--token"))
            c->token = v;
        else if (!strcmp(a, "--token-file"))
            c->token = read_token(v);
        else if (!strcmp(a, "--ca-file"))
            c->ca_file = v;
        else if (!strcmp(a, "--timeout"))
            c->timeout_ms = parse_timeout(v);
        else if (!strcmp(a, "--workspace"))
            c->workspace = v;
        else if (!strcmp(a, "--json"))
            c->json = c->asked = true;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (strcmp(v, "json") && strcmp(v, "table") && strcmp(v, "yaml"))
                die_usage("-o takes table, json or yaml (got '%s')", v);
            c->json = strcmp(v, "table");
            c->yaml = !strcmp(v, "yaml");
            c->asked = true;
        }
    }
    return npos;
}

/* portico subscription keys|regenerate|approve|reject|suspend|activate|cancel ID */
static int subscription_verb(struct cli *c, const char *verb, const char *id, const struct opts *o)
{
    static const char *const states[][2] = {{"approve", "active"},
                                            {"activate", "active"},
                                            {"reject", "rejected"},
                                            {"suspend", "suspended"},
                                            {"cancel", "cancelled"}};
    bool state = false;
    for (size_t i = 0; i < PT_ARRAY_LEN(states); i++)
        state |= !strcmp(verb, states[i][0]);
    if (!state && strcmp(verb, "keys") && strcmp(verb, "regenerate"))
        die_usage("unknown subscription command '%s'", verb);
    check_opts(o, "subscription", NULL,
               state                         ? (const char *const[]){"--workspace", "--state-comment", NULL}
               : !strcmp(verb, "regenerate") ? (const char *const[]){"--workspace", "--secondary", NULL}
                                             : (const char *const[]){"--workspace", NULL});
    const char *ids[2] = {id, NULL};
    char *base = entity_path(c, find_entity("subscription", NULL), ids);
    for (size_t i = 0; i < PT_ARRAY_LEN(states); i++)
        if (!strcmp(verb, states[i][0])) {
            json_t *b = json_pack("{s:s}", "state", states[i][1]);
            if (opt_get(o, "--state-comment"))
                set_key(b, "stateComment", text_value("--state-comment", opt_get(o, "--state-comment")));
            int rc = call_show(c, "PATCH", base, b);
            free(base);
            return rc;
        }
    bool secondary = opt_get(o, "--secondary") != NULL;
    int rc = 0;
    char *path = strdup(base);
    if (path && !strcmp(verb, "regenerate")) {
        path_add(&path, secondary ? "regenerateSecondaryKey" : "regeneratePrimaryKey", true);
        json_t *j = call_json(c, "POST", path, NULL, &rc);
        json_decref(j);
        free(path);
        path = rc ? NULL : strdup(base);
    }
    if (path)
        path_add(&path, "listSecrets", true);
    json_t *j = path ? call_json(c, "POST", path, NULL, &rc) : NULL;
    free(path);
    free(base);
    if (!j)
        return rc ? rc : 1;
    if (c->json)
        print_doc(c, j);
    else
        for (int k = 0; k < 2; k++) {
            const char *name = k ? "secondaryKey" : "primaryKey";
            if (strcmp(verb, "keys") && k != secondary)
                continue;
            printf("%-12s  ", name);
            term_text(stdout, json_string_value(json_object_get(j, name)), MESSAGE_MAX);
            putchar('\n');
        }
    json_decref(j);
    return 0;
}

/* portico apply -f FILE */
static int apply(struct cli *c, const char *file)
{
    if (!file)
        die_usage("apply needs -f FILE");
    size_t len;
    char *text = read_file(file, &len);
    if (!text) {
        if (errno == EFBIG)
            fprintf(stderr, "portico: %s is larger than %u MiB, more than apply sends\n", file,
                    APPLY_MAX >> 20);
        else
            fprintf(stderr, "portico: cannot read %s: %s\n", file, strerror(errno));
        return 1;
    }
    struct resp r = {0};
    bool ok = http_call(c, "POST", "/management/apply", "application/yaml", text, len, &r);
    free(text);
    if (!ok)
        return 1;
    if (r.status == 413) {
        fprintf(stderr,
                "portico: %s (%zu bytes) is larger than the management API accepts "
                "(management.maxBodySize)\n",
                file, len);
        free(r.body);
        return 1;
    }
    if (r.status >= 300) {
        /* positions in the answer are "request:L:C": they are FILE's */
        json_t *j = json_loads(r.body, 0, NULL);
        json_t *d;
        size_t i;
        json_array_foreach(json_object_get(json_object_get(j, "error"), "details"), i, d)
        {
            const char *t = json_string_value(json_object_get(d, "target"));
            if (t && !strncmp(t, "request:", 8)) {
                char *nt = NULL;
                if (asprintf(&nt, "%s:%s", file, t + 8) > 0) {
                    json_object_set_new(d, "target", json_string(nt));
                    free(nt);
                }
            }
        }
        if (j) {
            free(r.body);
            r.body = json_dumps(j, 0);
            r.len = strlen(r.body);
        }
        json_decref(j);
        int rc = report(&r);
        free(r.body);
        return rc;
    }
    json_t *j = json_loads(r.body, 0, NULL);
    free(r.body);
    if (!j) {
        fprintf(stderr, "portico: the server's answer is not JSON\n");
        return 1;
    }
    if (c->json)
        print_doc(c, j);
    else {
        printf("applied %s:", file);
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(j, "applied"), k, v)
        {
            putchar(' ');
            term_text(stdout, k, 200);
            printf(" %lld", (long long)json_integer_value(v));
        }
        printf("\n");
    }
    json_decref(j);
    return 0;
}

/* portico export [--include-file]: YAML unless -o json asks for JSON. */
static int export_all(struct cli *c, bool include_file)
{
    char ep[128];
    snprintf(ep, sizeof(ep), "/management/export?format=%s%s",
             c->asked && c->json && !c->yaml ? "json" : "yaml", include_file ? "&includeFile=true" : "");
    return get_document(c, ep);
}

static int api_verb(struct cli *c, const char *verb, const char *const *ids, int nids, const struct opts *o)
{
    check_opts(o, "api", NULL, import_flags);
    if (nids != 1)
        die_usage("api %s takes %s", verb, !strcmp(verb, "import") ? "FILE or URL" : "one id");
    if (!strcmp(verb, "export"))
        return api_export(c, ids[0], opt_get(o, "--format"));
    struct import_opts io = {ids[0],
                             opt_get(o, "--id"),
                             opt_get(o, "--path"),
                             opt_get(o, "--service-url"),
                             opt_get(o, "--format"),
                             opt_get(o, "--wsdl-service"),
                             opt_get(o, "--wsdl-endpoint")};
    if (!io.id)
        die_usage("api import needs FILE or URL and --id ID");
    return api_import(c, &io);
}

int pt_cli_main(int argc, char **argv)
{
    int w = first_word(argc, argv, false);
    if (w < argc && !strcmp(argv[w], "probe"))
        return cli_probe(argc, argv, w); /* a gateway's status path, not the management API */
    if (w < argc && !strcmp(argv[w], "__complete"))
        return complete(argc - w - 1, argv + w + 1);
    struct cli c = {0};
    c.url = getenv("PORTICO_URL") && *getenv("PORTICO_URL") ? getenv("PORTICO_URL") : "http://127.0.0.1:8001";
    c.token = getenv("PORTICO_ADMIN_TOKEN");
    c.ca_file = getenv("PORTICO_CA_FILE") && *getenv("PORTICO_CA_FILE") ? getenv("PORTICO_CA_FILE") : NULL;
    if (getenv("PORTICO_TIMEOUT") && *getenv("PORTICO_TIMEOUT"))
        c.timeout_ms = parse_timeout(getenv("PORTICO_TIMEOUT"));
    c.json = !isatty(STDOUT_FILENO); /* tables for a reader, JSON for a program; -o decides */
    static struct opts o;
    const char *pos[8] = {0};
    int npos = parse_args(argc, argv, &c, &o, pos, 8);
    if (!npos || !strcmp(pos[0], "help"))
        return help(npos > 1 ? pos[1] : NULL);
    if (opt_get(&o, "-h") || opt_get(&o, "--help"))
        return help(pos[0]);
    if (!parse_url(&c, c.url))
        die_usage("--url must look like http://HOST:PORT or https://HOST:PORT, without user:password@ "
                  "(got %zu bytes; not shown, as it may hold a password)",
                  strlen(c.url));
    const char *cmd = pos[0];
    if (!strcmp(cmd, "apply")) {
        check_opts(&o, cmd, NULL, (const char *const[]){"-f", "--file", NULL});
        refuse_workspace(&c, cmd);
        if (npos != 1)
            die_usage("apply takes no argument but -f FILE");
        return apply(&c, opt_file(&o));
    }
    if (!strcmp(cmd, "export")) {
        check_opts(&o, cmd, NULL, (const char *const[]){"--include-file", NULL});
        refuse_workspace(&c, cmd);
        return export_all(&c, opt_get(&o, "--include-file") != NULL);
    }
    if (!strcmp(cmd, "policy"))
        return policy_cmd(&c, npos > 1 ? pos[1] : NULL, npos, &o);
    if (!strcmp(cmd, "report")) {
        check_opts(&o, cmd, NULL, report_flags);
        struct report_opts ro = {opt_get(&o, "--since"),
                                 opt_get(&o, "--from"),
                                 opt_get(&o, "--to"),
                                 opt_get(&o, "--interval"),
                                 opt_get(&o, "--top"),
                                 {opt_get(&o, "--api"), opt_get(&o, "--operation"), opt_get(&o, "--product"),
                                  opt_get(&o, "--subscription"), opt_get(&o, "--user")}};
        return cli_report(&c, npos > 1 ? pos[1] : NULL, &ro);
    }
    if (!strcmp(cmd, "user-password") || !strcmp(cmd, "user-invite")) {
        check_opts(&o, cmd, NULL, NULL);
        if (npos != 2)
            die_usage("%s needs one user id", cmd);
        return user_portal(&c, cmd, pos[1]);
    }
    const struct entity *e = find_entity(cmd, NULL);
    if (!e)
        die_usage("unknown command '%s'", cmd);
    const char *verb = npos > 1 ? pos[1] : "list";
    if (!strcmp(verb, "operation") && find_entity(verb, cmd))
        return entity_verb(&c, find_entity(verb, cmd), npos > 2 ? pos[2] : "list", pos + 3,
                           npos > 3 ? npos - 3 : 0, &o);
    const char *const *ids = pos + 2;
    int nids = npos > 2 ? npos - 2 : 0;
    for (size_t i = 0; i < PT_ARRAY_LEN(links); i++)
        if (!strcmp(links[i].noun, cmd) &&
            (!strcmp(verb, links[i].add) || !strcmp(verb, links[i].remove) || !strcmp(verb, links[i].list)))
            return link_verb(&c, e, &links[i], verb, ids, nids, &o);
    if (!strcmp(cmd, "api") && (!strcmp(verb, "import") || !strcmp(verb, "export")))
        return api_verb(&c, verb, ids, nids, &o);
    if (!strcmp(cmd, "portal") && !strcmp(verb, "publish"))
        return portal_publish(&c, &o);
    if (!strcmp(cmd, "subscription") && !in_list(entity_verbs, verb)) {
        if (nids != 1)
            die_usage("subscription %s takes one id", verb);
        return subscription_verb(&c, verb, ids[0], &o);
    }
    return entity_verb(&c, e, verb, ids, nids, &o);
}
