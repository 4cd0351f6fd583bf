/*
 * pt_mgmt_req -- one request of the management API and its answer: the
 * store and hooks being served, the query and the body (JSON, or YAML when
 * the Content-Type says so), JSON replies and errors, and the If-Match /
 * If-None-Match preconditions.  The other files of core/mgmt build on it.
 */
#include "base/pt_log.h"
#include "base/pt_utf8.h"
#include "conf/pt_model.h"
#include "mgmt/pt_mgmt_int.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

struct pt_store *pt_mgmt_req_store;
const struct pt_mgmt_hooks *pt_mgmt_req_hooks;

/* ---------------------------------------------------------------- replies */

void pt_mgmt_req_send_json(struct mreq *m, int code, json_t *j, const char *etag)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(m->r);
    struct evbuffer *b = evbuffer_new();
    if (j) {
        char *txt = json_dumps(j, JSON_INDENT(2) | JSON_ENSURE_ASCII);
        evbuffer_add(b, txt, strlen(txt));
        evbuffer_add(b, "\n", 1);
        free(txt);
        evhttp_add_header(oh, "Content-Type", "application/json; charset=utf-8");
    }
    if (etag) {
        char q[40];
        snprintf(q, sizeof(q), "\"%s\"", etag);
        evhttp_add_header(oh, "ETag", q);
    }
    evhttp_add_header(oh, "Cache-Control", "no-store");
    static const char *const reasons[][2] = {
        {"200", "OK"},
        {"201", "Created"},
        {"204", "No Content"},
        {"400", "Bad Request"},
        {"401", "Unauthorized"},
        {"403", "Forbidden"},
        {"404", "Not Found"},
        {"405", "Method Not Allowed"},
        {"409", "Conflict"},
        {"412", "Precondition Failed"},
        {"413", "Payload Too Large"},
        {"415", "Unsupported Media Type"},
        {"500", "Internal Server Error"},
    };
    const char *reason = "OK";
    char cs[8];
    snprintf(cs, sizeof(cs), "%d", code);
    for (size_t i = 0; i < PT_ARRAY_LEN(reasons); i++)
        if (!strcmp(reasons[i][0], cs))
            reason = reasons[i][1];
    evhttp_send_reply(m->r, code, reason, b);
    evbuffer_free(b);
    json_decref(j);
}

/* A JSON string of text for the client, never NULL: jansson refuses text
   that is not UTF-8, and an error must not lose its message, so such text is
   sent with each byte outside a well-formed sequence written as \xNN. */
static json_t *text_json(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t n = strlen(s), k = 0;
    char *out = malloc(4 * n + 1);
    if (!out)
        return json_string("(message not shown: out of memory)");
    for (size_t i = 0; i < n;) {
        size_t l = pt_utf8_seq((const unsigned char *)s + i, n - i);
        if (l) {
            memcpy(out + k, s + i, l);
            k += l, i += l;
        } else
            k += (size_t)snprintf(out + k, 5, "\\x%02x", (unsigned char)s[i++]);
    }
    out[k] = '\0';
    j = json_stringn(out, k);
    free(out);
    return j ? j : json_string("(message not shown)");
}

static json_t *error_body(const char *code, const char *msg)
{
    return json_pack("{s:{s:s,s:o}}", "error", "code", code, "message", text_json(msg));
}

void pt_mgmt_req_send_error(struct mreq *m, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (status == 401)
        evhttp_add_header(evhttp_request_get_output_headers(m->r), "WWW-Authenticate",
                          "Bearer realm=\"portico\"");
    pt_mgmt_req_send_json(m, status, error_body(code, msg), NULL);
}

/*
 * Errors as details: each "LOCATION: message" becomes {target, message};
 * a location under `strip` loses that prefix (so a request body's errors
 * name its own fields: "path", "operations[0].method").
 */
void pt_mgmt_req_send_errors(struct mreq *m, int status, const char *code, const char *summary,
                             const struct pt_errors *errs, const char *const *strip)
{
    json_t *details = json_array();
    for (int i = 0; i < errs->n; i++) {
        const char *e = errs->msgs[i];
        /* a message about a node has the node's path as its target and names
           the place in words itself; others are "path: message" */
        const char *target = errs->targets ? errs->targets[i] : NULL;
        const char *sep = target ? e : strstr(e, ": ");
        json_t *d = json_object();
        json_object_set_new(d, "code", json_string(code));
        if (sep) {
            char where[512];
            if (target)
                snprintf(where, sizeof(where), "%s", target);
            else
                snprintf(where, sizeof(where), "%.*s", (int)(sep - e), e);
            const char *t = where;
            for (int k = 0; strip && strip[k]; k++) {
                size_t n = strlen(strip[k]);
                if (n && !strncmp(where, strip[k], n) && (where[n] == '.' || where[n] == '[' || !where[n])) {
                    t = where + n + (where[n] == '.');
                    break;
                }
            }
            json_object_set_new(d, "target", text_json(*t ? t : "(body)"));
            /* a position target is not said twice: the message goes on with the words */
            size_t tl = target ? strlen(target) : 0;
            const char *said = !target                                                ? sep + 2
                               : !strncmp(e, target, tl) && !strncmp(e + tl, ": ", 2) ? e + tl + 2
                                                                                      : e;
            json_object_set_new(d, "message", text_json(said));
        } else
            json_object_set_new(d, "message", text_json(e));
        json_array_append_new(details, d);
    }
    json_t *j = error_body(code, summary);
    json_object_set_new(json_object_get(j, "error"), "details", details);
    pt_mgmt_req_send_json(m, status, j, NULL);
}

/* ------------------------------------------------------------ query, body */

const char *pt_mgmt_req_param(struct mreq *m, const char *name)
{
    return m->has_query ? evhttp_find_header(&m->query, name) : NULL;
}

/* The request body as text (NUL-terminated copy) or NULL when empty. */
char *pt_mgmt_req_body_text(struct mreq *m, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(m->r);
    size_t n = evbuffer_get_length(in);
    *len = n;
    if (!n)
        return NULL;
    char *t = malloc(n + 1);
    evbuffer_copyout(in, t, n);
    t[n] = '\0';
    return t;
}

/* After a large refused document, the parse memory goes back to the system
   (glibc keeps freed heap otherwise: repeated bad writes would grow the
   process). */
void pt_mgmt_req_give_back_memory(size_t body_len)
{
#ifdef __GLIBC__
    if (body_len > 256 * 1024)
        malloc_trim(0);
#else
    (void)body_len;
#endif
}

static bool is_yaml(struct mreq *m)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(m->r), "Content-Type");
    return ct && (strstr(ct, "yaml") || strstr(ct, "YAML"));
}

/*
 * The JSON body (YAML when Content-Type says so).  On a bad body the error
 * is sent and NULL returned; `empty_ok` turns an empty body into {}.
 */
json_t *pt_mgmt_req_body(struct mreq *m, bool empty_ok)
{
    if (m->parsed)
        return json_incref(m->parsed);
    size_t len;
    char *text = pt_mgmt_req_body_text(m, &len);
    if (!text) {
        if (empty_ok)
            return json_object();
        pt_mgmt_req_send_error(m, 400, "InvalidRequestBody", "a JSON body is required");
        return NULL;
    }
    json_t *j = NULL;
    if (is_yaml(m)) {
        struct pt_errors errs = {0};
        struct pt_pool *pool = pt_pool_new(8192);
        struct pt_node *n = pt_node_parse_yaml(pool, "body", text, len, &errs);
        if (n)
            j = pt_node_to_json(n);
        else
            pt_mgmt_req_send_errors(m, 400, "InvalidRequestBody", "the YAML body cannot be read", &errs,
                                    NULL);
        pt_pool_free(pool);
        if (!n)
            pt_mgmt_req_give_back_memory(len);
        pt_node_errors_clear(&errs);
    } else {
        json_error_t je;
        /* NULs are let through the decoder only to be refused by name below:
           jansson's own refusal would not say which field carried one */
        j = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
        char where[256];
        if (!j)
            pt_mgmt_req_send_error(m, 400, "InvalidRequestBody", "malformed JSON at line %d, column %d: %s",
                                   je.line, je.column, je.text);
        else if (pt_node_json_nul_path(j, where, sizeof(where))) {
            pt_mgmt_req_send_error(m, 400, "ValidationError", "%s: must not contain a NUL character", where);
            json_decref(j);
            j = NULL;
        }
    }
    /* bodies carry passwords and secret named values: the copy leaves no plaintext in the heap */
    OPENSSL_cleanse(text, len);
    free(text);
    return j;
}

/* ---------------------------------------------------------- preconditions */

/* Does the ETag written in a header, a[0..n) ("\"x\"", W/"x", or bare), name etag? */
static bool etag_is(const char *a, size_t n, const char *etag)
{
    if (n >= 2 && !strncmp(a, "W/", 2)) {
        a += 2;
        n -= 2;
    }
    if (n >= 2 && a[0] == '"' && a[n - 1] == '"') {
        a++;
        n -= 2;
    }
    return n == strlen(etag) && !strncmp(a, etag, n);
}

static bool etag_matches(struct mreq *m, const char *etag)
{
    const char *im = evhttp_find_header(evhttp_request_get_input_headers(m->r), "If-Match");
    if (!im)
        return true;
    if (!strcmp(im, "*"))
        return etag != NULL;
    return etag && etag_is(im, strlen(im), etag);
}

/* If-None-Match on a write: "*" means "only if it does not exist yet" (a
   create that never overwrites); a list of ETags means "only if it is none
   of these".  true when the header allows the write. */
static bool none_match_allows(struct mreq *m, const char *etag)
{
    const char *inm = evhttp_find_header(evhttp_request_get_input_headers(m->r), "If-None-Match");
    if (!inm || !etag)
        return true;
    for (const char *p = inm; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *b = end;
        while (b > p && b[-1] == ' ')
            b--;
        if ((b - p == 1 && *p == '*') || (b > p && etag_is(p, (size_t)(b - p), etag)))
            return false;
        p = end;
    }
    return true;
}

bool pt_mgmt_req_check_etag(struct mreq *m, const char *etag)
{
    if (!none_match_allows(m, etag)) {
        pt_mgmt_req_send_error(m, 412, "PreconditionFailed",
                               "If-None-Match: the entity exists (or has a listed ETag)");
        return false;
    }
    if (etag_matches(m, etag))
        return true;
    pt_mgmt_req_send_error(m, 412, "PreconditionFailed",
                           etag ? "the entity changed: If-Match does not match its ETag"
                                : "If-Match given but there is no entity");
    return false;
}
