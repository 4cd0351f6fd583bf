/*
 * pt_cli -- `portico <command>`: the management API from a shell.
 *
 *   portico apply -f FILE            create or update the entities of FILE
 *   portico export                   every entity as YAML (what apply reads)
 *   portico api|product|user|group list|show ID|delete ID
 *   portico subscription create ID --scope S [--owner U] [--name N] [--state S]
 *   portico subscription list|show ID|keys ID|regenerate ID [--secondary]
 *   portico subscription approve|suspend|cancel|delete ID
 *
 * Options: --url URL (default $PORTICO_URL, else http://127.0.0.1:8001;
 * https:// checks the server's certificate against the system CAs or
 * --ca-file / $PORTICO_CA_FILE), --token TOKEN (default
 * $PORTICO_ADMIN_TOKEN), -o json (raw JSON instead of tables).  Exit status 0 on success, 1 on an error (printed with the
 * server's message), 2 on a usage error.
 */
#include "pt.h"
#include "pt_cli.h"
#include "pt_tls.h"

#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

struct cli {
    char host[256];
    char port[8];
    const char *url;
    const char *token;
    const char *ca_file; /* trusted CAs for an https:// URL (else the system's) */
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
             colon ? colon + 1 : c->tls ? "443" : "80");
    return c->host[0] && c->port[0];
}

/* The connection of one exchange: a socket, with TLS over it for https. */
struct conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
};

static bool tls_start(struct cli *c, struct conn *k)
{
    struct pt_errors errs = {0};
    k->ctx = pt_tls_client_ctx(c->ca_file, true, &errs);
    if (!k->ctx) {
        fprintf(stderr, "portico: %s\n", errs.n ? errs.msgs[0] : "TLS setup failed");
        pt_errors_clear(&errs);
        return false;
    }
    k->ssl = pt_tls_client_ssl(k->ctx, c->host, true);
    if (!k->ssl || SSL_set_fd(k->ssl, k->fd) != 1 || SSL_connect(k->ssl) != 1) {
        long v = k->ssl ? SSL_get_verify_result(k->ssl) : X509_V_OK;
        unsigned long e = ERR_get_error();
        char msg[256] = "handshake failed";
        if (v != X509_V_OK)
            snprintf(msg, sizeof(msg), "certificate not trusted: %s (see --ca-file)", X509_verify_cert_error_string(v));
        else if (e)
            ERR_error_string_n(e, msg, sizeof(msg));
        fprintf(stderr, "portico: TLS with the management API at %s: %s\n", c->url, msg);
        return false;
    }
    return true;
}

static ssize_t conn_write(struct conn *k, const void *p, size_t n)
{
    if (!k->ssl)
        return write(k->fd, p, n);
    int w = SSL_write(k->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
    return w > 0 ? w : -1;
}

static ssize_t conn_read(struct conn *k, void *p, size_t n)
{
    if (!k->ssl)
        return read(k->fd, p, n);
    int r = SSL_read(k->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(k->ssl, r);
    return e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) ? 0 : -1;
}

static void conn_close(struct conn *k)
{
    if (k->ssl) {
        SSL_shutdown(k->ssl);
        SSL_free(k->ssl);
    }
    SSL_CTX_free(k->ctx);
    if (k->fd >= 0)
        close(k->fd);
}

/* One HTTP/1.1 exchange (Connection: close).  false when the server cannot be reached. */
static bool http_call(struct cli *c, const char *method, const char *path, const char *ctype, const char *body,
                      size_t blen, struct resp *r)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = getaddrinfo(c->host, c->port, &hints, &ai);
    if (rc) {
        fprintf(stderr, "portico: cannot resolve %s: %s\n", c->host, gai_strerror(rc));
        return false;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        struct timeval tv = {60, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        fprintf(stderr, "portico: cannot reach the management API at %s: %s\n", c->url, strerror(err));
        return false;
    }
    struct conn k = {fd, NULL, NULL};
    if (c->tls && !tls_start(c, &k)) {
        conn_close(&k);
        return false;
    }
    char head[4096];
    int hn = snprintf(head, sizeof(head),
                      "%s %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\nAccept: application/json\r\n"
                      "User-Agent: portico-cli/%s\r\n",
                      method, path, c->host, c->port, PACKAGE_VERSION);
    if (c->token)
        hn += snprintf(head + hn, sizeof(head) - (size_t)hn, "Authorization: Bearer %s\r\n", c->token);
    if (body)
        hn += snprintf(head + hn, sizeof(head) - (size_t)hn, "Content-Type: %s\r\nContent-Length: %zu\r\n",
                       ctype ? ctype : "application/json", blen);
    else if (strcmp(method, "GET") && strcmp(method, "DELETE"))
        hn += snprintf(head + hn, sizeof(head) - (size_t)hn, "Content-Length: 0\r\n");
    hn += snprintf(head + hn, sizeof(head) - (size_t)hn, "\r\n");
    bool ok = conn_write(&k, head, (size_t)hn) == hn;
    for (size_t off = 0; ok && body && off < blen;) {
        ssize_t w = conn_write(&k, body + off, blen - off);
        if (w <= 0)
            ok = false;
        else
            off += (size_t)w;
    }
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    while (ok) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        ssize_t got = conn_read(&k, buf + n, cap - n);
        if (got < 0 && errno == EINTR && !k.ssl)
            continue;
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    conn_close(&k);
    buf[n] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    if (!ok || strncmp(buf, "HTTP/1.", 7) || !sep) {
        fprintf(stderr, "portico: no valid HTTP answer from %s\n", c->url);
        free(buf);
        return false;
    }
    r->status = atoi(buf + 9);
    size_t hl = (size_t)(sep + 4 - buf);
    r->len = n - hl;
    r->body = malloc(r->len + 1);
    memcpy(r->body, sep + 4, r->len);
    r->body[r->len] = '\0';
    free(buf);
    return true;
}

/* Prints the server's error and returns 1. */
static int report(const struct resp *r)
{
    json_t *j = json_loads(r->body, 0, NULL);
    json_t *e = json_object_get(j, "error");
    if (e) {
        fprintf(stderr, "portico: %d %s: %s\n", r->status, json_string_value(json_object_get(e, "code")) ?: "",
                json_string_value(json_object_get(e, "message")) ?: "");
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(e, "details"), i, d)
        {
            const char *t = json_string_value(json_object_get(d, "target"));
            fprintf(stderr, "  %s%s%s\n", t ? t : "", t ? ": " : "", json_string_value(json_object_get(d, "message")) ?: "");
        }
    } else
        fprintf(stderr, "portico: the server answered %d: %.*s\n", r->status, (int)(r->len > 300 ? 300 : r->len),
                r->body);
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
        printf("%-*s%s", (int)w[k], cols[k], k + 1 < nc ? "  " : "\n");
    json_array_foreach(items, i, it)
    {
        for (int k = 0; k < nc; k++) {
            char *s = cell(json_object_get(it, cols[k]));
            printf("%-*.*s%s", (int)w[k], 60, s, k + 1 < nc ? "  " : "\n");
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
        bool plain = ((ch | 32) >= 'a' && (ch | 32) <= 'z') || (ch >= '0' && ch <= '9') || (ch && strchr("-_.~", ch));
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

static char *read_file(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f)
        return NULL;
    size_t cap = 65536, n = 0;
    char *b = malloc(cap + 1);
    size_t k;
    while ((k = fread(b + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            cap *= 2;
            b = realloc(b, cap + 1);
        }
    }
    if (f != stdin)
        fclose(f);
    b[n] = '\0';
    *len = n;
    return b;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: portico COMMAND [options]   (talks to the management API)\n"
               "  apply -f FILE                    create or update the entities FILE declares (YAML or JSON)\n"
               "  export [--include-file]          print the entities as YAML that apply accepts (those the\n"
               "                                   configuration file declares only with --include-file)\n"
               "  api|product|user|group|named-value|workspace list\n"
               "  api|product|user|group|named-value|workspace show ID | delete ID\n"
               "  subscription create ID --scope /products/P|/apis/A|/apis [--owner USER] [--name NAME] "
               "[--state STATE]\n"
               "  subscription list | show ID | keys ID | regenerate ID [--secondary]\n"
               "  subscription approve ID | suspend ID | cancel ID | delete ID\n"
               "options: --url URL (default $PORTICO_URL, else http://127.0.0.1:8001; https:// for TLS)\n"
               "         --ca-file FILE (default $PORTICO_CA_FILE, else the system CAs: whom to trust over https)\n"
               "         --token TOKEN (default $PORTICO_ADMIN_TOKEN)   -o json (JSON instead of tables)\n");
}

bool pt_cli_is_command(const char *arg)
{
    static const char *const cmds[] = {"apply", "export", "api", "product", "user", "group", "subscription",
                                       "named-value", "workspace", "help", NULL};
    for (int i = 0; cmds[i]; i++)
        if (!strcmp(cmds[i], arg))
            return true;
    return false;
}

int pt_cli_main(int argc, char **argv)
{
    struct cli c = {0};
    c.url = getenv("PORTICO_URL") && *getenv("PORTICO_URL") ? getenv("PORTICO_URL") : "http://127.0.0.1:8001";
    c.token = getenv("PORTICO_ADMIN_TOKEN");
    c.ca_file = getenv("PORTICO_CA_FILE") && *getenv("PORTICO_CA_FILE") ? getenv("PORTICO_CA_FILE") : NULL;
    const char *pos[8] = {0};
    int npos = 0;
    const char *file = NULL, *scope = NULL, *owner = NULL, *name = NULL, *state = NULL;
    bool secondary = false, include_file = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (die_usage("%s needs a value", a), ""))
        if (!strcmp(a, "--url"))
            c.url = NEXT();
        else if (!strcmp(a, "--token"))
            c.token = NEXT();
        else if (!strcmp(a, "--ca-file"))
            c.ca_file = NEXT();
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
            fprintf(stderr, "portico: cannot read %s: %s\n", file, strerror(errno));
            return 1;
        }
        struct resp r = {0};
        bool ok = http_call(&c, "POST", "/management/apply", "application/yaml", text, len, &r);
        free(text);
        if (!ok)
            return 1;
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
    const struct noun *nn = NULL;
    for (size_t i = 0; i < PT_ARRAY_LEN(nouns); i++)
        if (!strcmp(nouns[i].name, cmd))
            nn = &nouns[i];
    if (!nn)
        die_usage("unknown command '%s'", cmd);
    const char *verb = npos > 1 ? pos[1] : "list";
    const char *id = npos > 2 ? pos[2] : NULL;
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
            printf("primaryKey    %s\nsecondaryKey  %s\n", json_string_value(json_object_get(j, "primaryKey")) ?: "",
                   json_string_value(json_object_get(j, "secondaryKey")) ?: "");
            json_decref(j);
            return 0;
        }
    } else if (is_sub && !strcmp(verb, "regenerate")) {
        char p2[1100];
        snprintf(p2, sizeof(p2), "%s/%s", path, secondary ? "regenerateSecondaryKey" : "regeneratePrimaryKey");
        j = call_json(&c, "POST", p2, NULL, &rc);
        if (j) {
            json_decref(j);
            snprintf(p2, sizeof(p2), "%s/listSecrets", path);
            j = call_json(&c, "POST", p2, NULL, &rc);
            if (j && !c.json) {
                printf("%s  %s\n", secondary ? "secondaryKey" : "primaryKey",
                       json_string_value(json_object_get(j, secondary ? "secondaryKey" : "primaryKey")) ?: "");
                json_decref(j);
                return 0;
            }
        }
    } else if (is_sub && (!strcmp(verb, "approve") || !strcmp(verb, "suspend") || !strcmp(verb, "cancel") ||
                          !strcmp(verb, "activate") || !strcmp(verb, "reject"))) {
        const char *ns = !strcmp(verb, "approve") || !strcmp(verb, "activate") ? "active"
                         : !strcmp(verb, "suspend")                          ? "suspended"
                         : !strcmp(verb, "cancel")                           ? "cancelled"
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
