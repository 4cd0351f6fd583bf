/*
 * pt_cli -- `portico <command>`: the management API from a shell.
 *
 *   portico apply -f FILE            create or update the entities of FILE
 *   portico export                   every entity as YAML (what apply reads)
 *   portico api|product|user|group list|show ID|delete ID
 *   portico subscription create ID --scope S [--owner U] [--name N] [--state S]
 *   portico subscription list|show ID|keys ID|regenerate ID [--secondary]
 *   portico subscription approve|suspend|cancel|delete ID
 *   portico report by-api|by-operation|by-product|by-subscription|by-user|by-time|by-request
 *           [--since 1h | --from T [--to T]] [--api A] [--operation O] [--product P]
 *           [--subscription S] [--user U] [--interval 15m] [--top N] [--json]
 *   portico probe [URL] [--ca-file FILE]
 *                                    GET a gateway's status path (a container's
 *                                    health check); exit 0 on 200, else 1
 *
 * Options: --url URL (default $PORTICO_URL, else http://127.0.0.1:8001;
 * https:// checks the server's certificate against the system CAs or
 * --ca-file / $PORTICO_CA_FILE), --token TOKEN (default
 * $PORTICO_ADMIN_TOKEN), --timeout SECONDS (default $PORTICO_TIMEOUT, else 60),
 * -o json (raw JSON instead of tables).  Exit status 0 on success, 1 on an error (printed with the
 * server's message), 2 on a usage error.
 */
#include "mgmt/pt_cli.h"
#include "base/pt.h"
#include "conf/pt_import.h"
#include "http/pt_fetch.h"

#include <errno.h>
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
    bool json;
};

struct resp {
    int status;
    char *body;
    size_t len;
};

static void die_usage(const char *fmt, ...) PT_PRINTF(1, 2);
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
    char url[8192], auth[1024];
    size_t ul = strlen(c->url);
    while (ul && c->url[ul - 1] == '/')
        ul--;
    snprintf(url, sizeof(url), "%.*s%s", (int)ul, c->url, path);
    if (c->token)
        snprintf(auth, sizeof(auth), "Bearer %s", c->token);
    struct pt_fetch_opts o = {c->timeout_ms ? c->timeout_ms : CLI_TIMEOUT_MS,
                              CLI_MAX_ANSWER,
                              "application/json",
                              -1,
                              method,
                              body,
                              blen,
                              ctype ? ctype : "application/json",
                              c->token ? auth : NULL,
                              c->ca_file,
                              body && blen > 65536};
    struct pt_fetch_result fr;
    char err[1024];
    int rc = pt_fetch_get(url, &o, &fr, err, sizeof(err));
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
    r->status = fr.status;
    r->body = fr.body;
    r->len = fr.len;
    return true;
}

/* Prints the server's error and returns 1. */
static int report(const struct resp *r)
{
    json_t *j = json_loads(r->body, 0, NULL);
    json_t *e = json_object_get(j, "error");
    if (e) {
        fprintf(stderr, "portico: %d %s: %s\n", r->status,
                json_string_value(json_object_get(e, "code")) ?: "",
                json_string_value(json_object_get(e, "message")) ?: "");
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(e, "details"), i, d)
        {
            const char *t = json_string_value(json_object_get(d, "target"));
            fprintf(stderr, "  %s%s%s\n", t ? t : "", t ? ": " : "",
                    json_string_value(json_object_get(d, "message")) ?: "");
        }
    } else
        fprintf(stderr, "portico: the server answered %d: %.*s\n", r->status,
                (int)(r->len > 300 ? 300 : r->len), r->body);
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

static void print_json(const json_t *j)
{
    char *t = json_dumps(j, JSON_INDENT(2));
    printf("%s\n", t);
    free(t);
}

static char *cell(const json_t *v)
{
    if (!v || json_is_null(v))
        return strdup("");
    if (json_is_string(v))
        return strdup(json_string_value(v));
    return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
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

struct noun {
    const char *name, *coll;
    const char *cols[8];
};
static const struct noun nouns[] = {
    {"api", "apis", {"id", "displayName", "path", "serviceUrl", "subscriptionRequired", NULL}},
    {"product", "products", {"id", "displayName", "state", "subscriptionRequired", "approvalRequired", NULL}},
    {"user", "users", {"id", "email", "firstName", "lastName", "state", NULL}},
    {"group", "groups", {"id", "displayName", "type", NULL}},
    {"subscription", "subscriptions", {"id", "displayName", "scope", "ownerId", "state", NULL}},
    {"named-value", "namedValues", {"id", "displayName", "secret", NULL}},
    {"workspace", "workspaces", {"id", "displayName", NULL}},
};

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

static int list_all(struct cli *c, const struct noun *nn)
{
    json_t *all = json_array();
    char path[2048];
    snprintf(path, sizeof(path), "/management/%s?$top=1000", nn->coll);
    int rc = 0;
    for (int pages = 0; pages < 10000; pages++) {
        json_t *j = call_json(c, "GET", path, NULL, &rc);
        if (!j) {
            json_decref(all);
            return rc;
        }
        json_array_extend(all, json_object_get(j, "value"));
        const char *next = json_string_value(json_object_get(j, "nextLink"));
        if (next)
            snprintf(path, sizeof(path), "%s", next);
        json_decref(j);
        if (!next)
            break;
    }
    if (c->json)
        print_json(all);
    else
        print_table(all, nn->cols);
    json_decref(all);
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
    char *eid = enc(o->id);
    char path[1024];
    snprintf(path, sizeof(path), "/management/apis/%s", eid);
    free(eid);
    int rc = 0;
    json_t *j = call_json(c, "PUT", path, body, &rc);
    free(body);
    if (!j)
        return rc ? rc : 1;
    if (c->json)
        print_json(j);
    else {
        json_t *imp = json_object_get(j, "import");
        printf("imported %s (%s) at /%s: %zu created, %zu updated, %zu deleted, %zu unchanged\n", o->id,
               format, json_string_value(json_object_get(j, "path")) ?: "",
               json_array_size(json_object_get(imp, "created")),
               json_array_size(json_object_get(imp, "updated")),
               json_array_size(json_object_get(imp, "deleted")),
               json_array_size(json_object_get(imp, "unchanged")));
        static const char *const lists[] = {"created", "updated", "deleted"};
        for (size_t l = 0; l < PT_ARRAY_LEN(lists); l++) {
            size_t i;
            json_t *v;
            json_array_foreach(json_object_get(imp, lists[l]), i, v)
                printf("  %s %s\n", lists[l], json_string_value(v));
        }
        size_t i;
        json_t *w;
        json_array_foreach(json_object_get(imp, "warnings"), i, w)
            fprintf(stderr, "portico: warning: %s\n", json_string_value(w));
    }
    json_decref(j);
    return 0;
}

/* portico api export ID [--format F]: the document on stdout. */
static int api_export(struct cli *c, const char *id, const char *format)
{
    char *eid = enc(id);
    char *ef = enc(format ? format : "openapi");
    char path[1200];
    snprintf(path, sizeof(path), "/management/apis/%s?export=true&format=%s", eid, ef);
    free(eid);
    free(ef);
    struct resp r = {0};
    if (!http_call(c, "GET", path, NULL, NULL, 0, &r))
        return 1;
    int rc = 0;
    if (r.status >= 300)
        rc = report(&r);
    else
        fwrite(r.body, 1, r.len, stdout);
    free(r.body);
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
            for (const char *p = o->ids[i]; *p && n < (int)sizeof(flt) - 3; p++) {
                if (*p == '\'')
                    flt[n++] = '\'';
                flt[n++] = *p;
            }
            n += snprintf(flt + n, sizeof(flt) - (size_t)PT_MIN(n, (int)sizeof(flt)), "'");
        }
    if (n >= (int)sizeof(flt))
        die_usage("the filter is too long");
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
    char *ef = enc(flt), *ei = enc(interval), path[4096];
    snprintf(path, sizeof(path), "/management/reports/%s?$filter=%s%s%s%s%s", report_kinds[k].name, ef,
             interval[0] ? "&interval=" : "", ei, o->top ? "&$top=" : "", o->top ? o->top : "");
    free(ef);
    free(ei);
    int rc = 0;
    json_t *j = call_json(c, "GET", path, NULL, &rc);
    if (!j)
        return rc;
    if (c->json) {
        print_json(j);
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
    char *eid = enc(user), path[1024];
    bool invite = !strcmp(cmd, "user-invite");
    snprintf(path, sizeof(path), "/management/users/%s/%s", eid, invite ? "invitation" : "password");
    free(eid);
    int rc = 0;
    if (invite) {
        json_t *j = call_json(c, "POST", path, NULL, &rc);
        if (!j)
            return rc ? rc : 1;
        if (c->json)
            print_json(j);
        else
            printf("sent the invitation mail to user %s\n", user);
        json_decref(j);
        return 0;
    }
    char pw[PASSWORD_READ_MAX];
    if (!read_password(pw, sizeof(pw))) {
        fprintf(stderr,
                "portico: user-password reads the password from stdin (one line, at most 1024 bytes)\n");
        return 1;
    }
    json_t *b = json_pack("{s:s}", "password", pw);
    char *txt = b ? json_dumps(b, 0) : NULL;
    json_decref(b);
    memset(pw, 0, sizeof(pw));
    if (!txt) {
        fprintf(stderr, "portico: the password is not valid UTF-8\n");
        return 1;
    }
    json_t *j = call_json(c, "PUT", path, txt, &rc);
    memset(txt, 0, strlen(txt));
    free(txt);
    if (!j)
        return rc ? rc : 1;
    json_decref(j);
    if (!c->json)
        printf("set the portal password of user %s; their sessions ended\n", user);
    return 0;
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

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: portico COMMAND [options]   (talks to the management API)\n"
        "  apply -f FILE                    create or update the entities FILE declares (YAML or JSON)\n"
        "  export [--include-file]          print the entities as YAML that apply accepts (those the\n"
        "                                   configuration file declares only with --include-file)\n"
        "  api import FILE|URL --id ID [--path P] [--service-url U] [--format F]\n"
        "             [--wsdl-service S] [--wsdl-endpoint E]\n"
        "                                   import (or re-import) a definition: OpenAPI, Swagger, WSDL,\n"
        "                                   OData $metadata, GraphQL; the format is guessed when not given\n"
        "  api export ID [--format openapi|openapi+json|swagger-json|wsdl|graphql]\n"
        "  api|product|user|group|named-value|workspace list\n"
        "  api|product|user|group|named-value|workspace show ID | delete ID\n"
        "  subscription create ID --scope /products/P|/apis/A|/apis [--owner USER] [--name NAME] "
        "[--state STATE]\n"
        "  subscription list | show ID | keys ID | regenerate ID [--secondary]\n"
        "  subscription approve ID | suspend ID | cancel ID | delete ID\n"
        "  user-password USER               set USER's developer portal password, read from stdin (one\n"
        "                                   line, at least 10 characters); their portal sessions end\n"
        "  user-invite USER                 send USER the portal's invitation mail (a link to set a\n"
        "                                   password)\n"
        "  report by-api|by-operation|by-product|by-subscription|by-user|by-time|by-request\n"
        "         [--since 1h | --from ISO-TIME [--to ISO-TIME]] [--api A] [--operation O] [--product P]\n"
        "         [--subscription S] [--user U] [--interval 15m (by-time)] [--top N] [--json]\n"
        "                                   usage figures as a table (docs/analytics.md)\n"
        "  probe [URL] [--ca-file FILE]     GET a gateway's status path (default\n"
        "                                   http://127.0.0.1:8080/status-0123456789abcdef; a URL without a\n"
        "                                   path gets /status-0123456789abcdef): exit 0 on 200, else 1\n"
        "                                   (3 s at most)\n"
        "options: --url URL (default $PORTICO_URL, else http://127.0.0.1:8001; https:// for TLS)\n"
        "         --ca-file FILE (default $PORTICO_CA_FILE, else the system CAs: whom to trust over https)\n"
        "         --token TOKEN (default $PORTICO_ADMIN_TOKEN)   -o json (JSON instead of tables)\n"
        "         --timeout SECONDS (default $PORTICO_TIMEOUT, else 60: the longest one exchange may take)\n"
        "answers over 64 MiB and documents to apply over 64 MiB are refused\n");
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

static int cli_probe(int argc, char **argv)
{
    const char *url = NULL, *ca_file = NULL;
    for (int i = 2; i < argc; i++) {
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

bool pt_cli_is_command(const char *arg)
{
    static const char *const cmds[] = {"apply",  "export",        "api",         "product",   "user",
                                       "group",  "subscription",  "named-value", "workspace", "help",
                                       "report", "user-password", "user-invite", "probe",     NULL};
    for (int i = 0; cmds[i]; i++)
        if (!strcmp(cmds[i], arg))
            return true;
    return false;
}

int pt_cli_main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "probe"))
        return cli_probe(argc, argv); /* a gateway's status path, not the management API */
    struct cli c = {0};
    c.url = getenv("PORTICO_URL") && *getenv("PORTICO_URL") ? getenv("PORTICO_URL") : "http://127.0.0.1:8001";
    c.token = getenv("PORTICO_ADMIN_TOKEN");
    c.ca_file = getenv("PORTICO_CA_FILE") && *getenv("PORTICO_CA_FILE") ? getenv("PORTICO_CA_FILE") : NULL;
    if (getenv("PORTICO_TIMEOUT") && *getenv("PORTICO_TIMEOUT"))
        c.timeout_ms = parse_timeout(getenv("PORTICO_TIMEOUT"));
    const char *pos[8] = {0};
    int npos = 0;
    const char *file = NULL, *scope = NULL, *owner = NULL, *name = NULL, *state = NULL;
    struct import_opts io = {0};
    bool secondary = false, include_file = false;
    struct report_opts ro = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (die_usage("%s needs a value", a), ""))
        if (!strcmp(a, "--url"))
            c.url = NEXT();
        else if (!strcmp(a, "--token"))
            c.token = NEXT();
        else if (!strcmp(a, "--ca-file"))
            c.ca_file = NEXT();
        else if (!strcmp(a, "--timeout"))
            c.timeout_ms = parse_timeout(NEXT());
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            const char *o = NEXT();
            if (strcmp(o, "json") && strcmp(o, "table"))
                die_usage("-o takes json or table");
            c.json = !strcmp(o, "json");
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file"))
            file = NEXT();
        else if (!strcmp(a, "--scope"))
            scope = NEXT();
        else if (!strcmp(a, "--owner"))
            owner = NEXT();
        else if (!strcmp(a, "--name"))
            name = NEXT();
        else if (!strcmp(a, "--state"))
            state = NEXT();
        else if (!strcmp(a, "--id"))
            io.id = NEXT();
        else if (!strcmp(a, "--path"))
            io.path = NEXT();
        else if (!strcmp(a, "--service-url"))
            io.service_url = NEXT();
        else if (!strcmp(a, "--format"))
            io.format = NEXT();
        else if (!strcmp(a, "--wsdl-service"))
            io.wsdl_service = NEXT();
        else if (!strcmp(a, "--wsdl-endpoint"))
            io.wsdl_endpoint = NEXT();
        else if (!strcmp(a, "--since"))
            ro.since = NEXT();
        else if (!strcmp(a, "--from"))
            ro.from = NEXT();
        else if (!strcmp(a, "--to"))
            ro.to = NEXT();
        else if (!strcmp(a, "--interval"))
            ro.interval = NEXT();
        else if (!strcmp(a, "--top"))
            ro.top = NEXT();
        else if (!strcmp(a, "--api"))
            ro.ids[0] = NEXT();
        else if (!strcmp(a, "--operation"))
            ro.ids[1] = NEXT();
        else if (!strcmp(a, "--product"))
            ro.ids[2] = NEXT();
        else if (!strcmp(a, "--subscription"))
            ro.ids[3] = NEXT();
        else if (!strcmp(a, "--user"))
            ro.ids[4] = NEXT();
        else if (!strcmp(a, "--json"))
            c.json = true;
        else if (!strcmp(a, "--include-file"))
            include_file = true;
        else if (!strcmp(a, "--secondary"))
            secondary = true;
        else if (!strcmp(a, "--primary"))
            secondary = false;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-' && a[1])
            die_usage("unknown option %s", a);
        else if (npos < 8)
            pos[npos++] = a;
        else
            die_usage("too many arguments");
#undef NEXT
    }
    if (!npos || !strcmp(pos[0], "help")) {
        usage(stdout);
        return 0;
    }
    if (!parse_url(&c, c.url))
        die_usage("--url must look like http://HOST:PORT or https://HOST:PORT (got '%s')", c.url);
    const char *cmd = pos[0];
    int rc = 0;
    if (!strcmp(cmd, "apply")) {
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
        bool ok = http_call(&c, "POST", "/management/apply", "application/yaml", text, len, &r);
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
            rc = report(&r);
            free(r.body);
            return rc;
        }
        json_t *j = json_loads(r.body, 0, NULL);
        free(r.body);
        if (c.json)
            print_json(j);
        else {
            printf("applied %s:", file);
            const char *k;
            json_t *v;
            json_object_foreach(json_object_get(j, "applied"), k, v)
            {
                printf(" %s %lld", k, (long long)json_integer_value(v));
            }
            printf("\n");
        }
        json_decref(j);
        return 0;
    }
    if (!strcmp(cmd, "export")) {
        struct resp r = {0};
        char ep[128];
        snprintf(ep, sizeof(ep), "/management/export?format=%s%s", c.json ? "json" : "yaml",
                 include_file ? "&includeFile=true" : "");
        if (!http_call(&c, "GET", ep, NULL, NULL, 0, &r))
            return 1;
        if (r.status >= 300)
            rc = report(&r);
        else
            fwrite(r.body, 1, r.len, stdout);
        free(r.body);
        return rc;
    }
    if (!strcmp(cmd, "report"))
        return cli_report(&c, npos > 1 ? pos[1] : NULL, &ro);
    if (!strcmp(cmd, "user-password") || !strcmp(cmd, "user-invite")) {
        if (npos != 2)
            die_usage("%s needs one user id", cmd);
        return user_portal(&c, cmd, pos[1]);
    }
    const struct noun *nn = NULL;
    for (size_t i = 0; i < PT_ARRAY_LEN(nouns); i++)
        if (!strcmp(nouns[i].name, cmd))
            nn = &nouns[i];
    if (!nn)
        die_usage("unknown command '%s'", cmd);
    const char *verb = npos > 1 ? pos[1] : "list";
    const char *id = npos > 2 ? pos[2] : NULL;
    if (!strcmp(cmd, "api") && !strcmp(verb, "import")) {
        if (!id || !io.id)
            die_usage("api import needs FILE or URL and --id ID");
        io.src = id;
        return api_import(&c, &io);
    }
    if (!strcmp(cmd, "api") && !strcmp(verb, "export")) {
        if (!id)
            die_usage("api export needs an id");
        return api_export(&c, id, io.format);
    }
    if (!strcmp(verb, "list"))
        return list_all(&c, nn);
    if (!id)
        die_usage("%s %s needs an id", cmd, verb);
    char *eid = enc(id);
    char path[1024];
    snprintf(path, sizeof(path), "/management/%s/%s", nn->coll, eid);
    free(eid);
    json_t *j = NULL;
    bool is_sub = !strcmp(cmd, "subscription");
    if (!strcmp(verb, "show")) {
        j = call_json(&c, "GET", path, NULL, &rc);
    } else if (!strcmp(verb, "delete")) {
        j = call_json(&c, "DELETE", path, NULL, &rc);
        if (j && !c.json) {
            printf("deleted %s %s\n", cmd, id);
            json_decref(j);
            return 0;
        }
    } else if (is_sub && !strcmp(verb, "create")) {
        if (!scope)
            die_usage("subscription create needs --scope");
        json_t *b = json_pack("{s:s}", "scope", scope);
        json_object_set_new(b, "displayName", json_string(name ? name : id));
        if (owner)
            json_object_set_new(b, "ownerId", json_string(strncmp(owner, "/users/", 7) ? "" : owner));
        if (owner && strncmp(owner, "/users/", 7)) {
            char o[512];
            snprintf(o, sizeof(o), "/users/%s", owner);
            json_object_set_new(b, "ownerId", json_string(o));
        }
        json_object_set_new(b, "state", json_string(state ? state : "active"));
        char *txt = json_dumps(b, 0);
        json_decref(b);
        j = call_json(&c, "PUT", path, txt, &rc);
        free(txt);
    } else if (is_sub && !strcmp(verb, "keys")) {
        strncat(path, "/listSecrets", sizeof(path) - strlen(path) - 1);
        j = call_json(&c, "POST", path, NULL, &rc);
        if (j && !c.json) {
            printf("primaryKey    %s\nsecondaryKey  %s\n",
                   json_string_value(json_object_get(j, "primaryKey")) ?: "",
                   json_string_value(json_object_get(j, "secondaryKey")) ?: "");
            json_decref(j);
            return 0;
        }
    } else if (is_sub && !strcmp(verb, "regenerate")) {
        char p2[1100];
        snprintf(p2, sizeof(p2), "%s/%s", path,
                 secondary ? "regenerateSecondaryKey" : "regeneratePrimaryKey");
        j = call_json(&c, "POST", p2, NULL, &rc);
        if (j) {
            json_decref(j);
            snprintf(p2, sizeof(p2), "%s/listSecrets", path);
            j = call_json(&c, "POST", p2, NULL, &rc);
            if (j && !c.json) {
                printf("%s  %s\n", secondary ? "secondaryKey" : "primaryKey",
                       json_string_value(json_object_get(j, secondary ? "secondaryKey" : "primaryKey"))
                           ?: "");
                json_decref(j);
                return 0;
            }
        }
    } else if (is_sub && (!strcmp(verb, "approve") || !strcmp(verb, "suspend") || !strcmp(verb, "cancel") ||
                          !strcmp(verb, "activate") || !strcmp(verb, "reject"))) {
        const char *ns = !strcmp(verb, "approve") || !strcmp(verb, "activate") ? "active"
                         : !strcmp(verb, "suspend")                            ? "suspended"
                         : !strcmp(verb, "cancel")                             ? "cancelled"
                                                                               : "rejected";
        char body[64];
        snprintf(body, sizeof(body), "{\"state\": \"%s\"}", ns);
        j = call_json(&c, "PATCH", path, body, &rc);
    } else
        die_usage("unknown %s command '%s'", cmd, verb);
    if (!j)
        return rc ? rc : 1;
    if (c.json)
        print_json(j);
    else {
        json_t *one = json_array();
        json_array_append(one, j);
        if (!strcmp(verb, "show")) {
            /* every field, one per line */
            const char *k;
            json_t *v;
            json_object_foreach(j, k, v)
            {
                char *s = cell(v);
                printf("%-22s %s\n", k, s);
                free(s);
            }
        } else
            print_table(one, nn->cols);
        json_decref(one);
    }
    json_decref(j);
    return 0;
}
