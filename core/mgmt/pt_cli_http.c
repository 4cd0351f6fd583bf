/*
 * pt_cli_http -- the management API: its URL, one exchange through the
 * gateway's outbound client, the server's errors, paths with encoded ids.
 */
#include "http/pt_fetch.h"
#include "mgmt/pt_cli_int.h"

#include <stdlib.h>
#include <string.h>

bool pt_cli_http_parse_url(struct cli *c, const char *url)
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
#define CLI_MAX_ANSWER (64u << 20)

bool pt_cli_http_call(struct cli *c, const char *method, const char *path, const char *ctype,
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

#define DETAILS_MAX 100 /* the most details of one error shown */

/* Prints the server's error and returns 1. */
int pt_cli_http_report(const struct resp *r)
{
    json_t *j = json_loads(r->body, 0, NULL);
    json_t *e = json_object_get(j, "error");
    fprintf(stderr, "portico: %d", r->status);
    if (e) {
        fputc(' ', stderr);
        pt_cli_out_text(stderr, json_string_value(json_object_get(e, "code")), 100);
        fputs(": ", stderr);
        pt_cli_out_text(stderr, json_string_value(json_object_get(e, "message")), MESSAGE_MAX);
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
            pt_cli_out_text(stderr, t, 200);
            fputs(t ? ": " : "", stderr);
            pt_cli_out_text(stderr, json_string_value(json_object_get(d, "message")), MESSAGE_MAX);
            fputc('\n', stderr);
        }
    } else {
        fprintf(stderr, " (the server's answer): ");
        char head[301];
        snprintf(head, sizeof(head), "%.*s", (int)(r->len > 300 ? 300 : r->len), r->body ? r->body : "");
        pt_cli_out_text(stderr, head, 300);
        fputc('\n', stderr);
    }
    json_decref(j);
    return 1;
}

/* A call whose success body is JSON (NULL after reporting an error). */
json_t *pt_cli_http_json(struct cli *c, const char *method, const char *path, const char *body, int *rc)
{
    struct resp r = {0};
    if (!pt_cli_http_call(c, method, path, NULL, body, body ? strlen(body) : 0, &r)) {
        *rc = 1;
        return NULL;
    }
    if (r.status >= 300) {
        *rc = pt_cli_http_report(&r);
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

char *pt_cli_http_enc(const char *s)
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
void pt_cli_http_path_add(char **p, const char *word, bool raw)
{
    char *x = raw ? NULL : pt_cli_http_enc(word), *n = NULL;
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
int pt_cli_http_done(struct cli *c, const char *method, const char *path, const char *body, const char *done)
{
    int rc = 0;
    json_t *j = pt_cli_http_json(c, method, path, body, &rc);
    if (!j)
        return rc;
    if (c->json)
        pt_cli_out_doc(c, j);
    else
        fputs(done, stdout);
    json_decref(j);
    return 0;
}
