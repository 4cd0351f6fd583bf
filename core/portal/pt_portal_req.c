/*
 * pt_portal_req -- one request of the developer portal and its answer: the
 * query and form fields, cookies, the CSRF check, redirects that carry a
 * flash message, JSON answers, and the security headers every answer gets.
 * The portal's other files build on it (see pt_portal_int.h).
 */
#include "base/pt_log.h"
#include "http/pt_http.h"
#include <sys/queue.h> /* before libevent's headers: TAILQ_* */

#include "portal/pt_portal_int.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct pt_portal pt_portal_req_srv;

/* Every page's policy: nothing inline, nothing from elsewhere, no framing. */
static const char csp[] = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                          "frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

#define FLASH_COOKIE "pt_flash"
#define FLASH_MAX 300

/* ----------------------------------------------------------------- fields */

/* Reads an urlencoded body into an object of strings (the first of repeated names wins). */
static bool parse_form(struct pt_portal_req *r, const char *text)
{
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    if (evhttp_parse_query_str(text, &q) != 0)
        return false;
    r->form = json_object();
    int n = 0;
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, &q, next)
    {
        if (++n > 200)
            break; /* a form of ours has a few dozen fields at most */
        if (!json_object_get(r->form, kv->key)) {
            json_t *v = json_string(kv->value);
            if (!v) { /* not UTF-8 */
                evhttp_clear_headers(&q);
                return false;
            }
            json_object_set_new(r->form, kv->key, v);
        }
    }
    evhttp_clear_headers(&q);
    return true;
}

bool pt_portal_req_parse(struct pt_portal_req *r, size_t max_body)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(r->r);
    const char *q = evhttp_uri_get_query(uri);
    if (q && evhttp_parse_query_str(q, &r->query) != 0) {
        pt_portal_req_text(r, 400, "Bad Request: the query string is malformed.");
        return false;
    }
    if (r->method != EVHTTP_REQ_POST)
        return true;
    struct evbuffer *in = evhttp_request_get_input_buffer(r->r);
    size_t len = evbuffer_get_length(in);
    if (len > max_body) {
        pt_portal_req_text(r, 413, "Payload Too Large: the form is larger than this page accepts.");
        return false;
    }
    const char *ct = pt_portal_req_in_header(r, "Content-Type");
    if (!ct || strncasecmp(ct, "application/x-www-form-urlencoded", 33))
        return true; /* JSON or multipart: the handler reads the body itself */
    char *text = malloc(len + 1);
    if (!text) {
        pt_portal_req_text(r, 500, "Internal Server Error");
        return false;
    }
    evbuffer_copyout(in, text, len);
    text[len] = '\0';
    bool ok = strlen(text) == len && parse_form(r, text);
    free(text);
    if (!ok) {
        pt_portal_req_text(r, 400, "Bad Request: the form is malformed.");
        return false;
    }
    return true;
}

const char *pt_portal_req_form(struct pt_portal_req *r, const char *name)
{
    return r->form ? json_string_value(json_object_get(r->form, name)) : NULL;
}

const char *pt_portal_req_query(struct pt_portal_req *r, const char *name)
{
    return evhttp_find_header(&r->query, name);
}

const char *pt_portal_req_in_header(struct pt_portal_req *r, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(r->r), name);
}

void pt_portal_req_header(struct pt_portal_req *r, const char *name, const char *value)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(r->r);
    evhttp_remove_header(oh, name);
    evhttp_add_header(oh, name, value);
}

bool pt_portal_req_accepts_gzip(struct pt_portal_req *r)
{
    const char *ae = pt_portal_req_in_header(r, "Accept-Encoding");
    if (!ae)
        return false;
    /* "gzip", "gzip;q=0.5"; "gzip;q=0" refuses it */
    for (const char *p = ae; (p = strcasestr(p, "gzip")); p += 4) {
        bool start = p == ae || p[-1] == ' ' || p[-1] == ',';
        const char *e = p + 4;
        if (!start || (*e && *e != ',' && *e != ';' && *e != ' '))
            continue;
        while (*e == ' ')
            e++;
        if (*e == ';') {
            const char *qv = strstr(e, "q=");
            const char *comma = strchr(e, ',');
            if (qv && (!comma || qv < comma) && strtod(qv + 2, NULL) <= 0)
                return false;
        }
        return true;
    }
    return false;
}

/* ---------------------------------------------------------------- cookies */

bool pt_portal_req_cookie(struct pt_portal_req *r, const char *name, char *buf, size_t len)
{
    const char *c = pt_portal_req_in_header(r, "Cookie");
    size_t nl = strlen(name);
    for (const char *p = c; p && *p;) {
        while (*p == ' ' || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        size_t seg = end ? (size_t)(end - p) : strlen(p);
        if (seg > nl && !strncmp(p, name, nl) && p[nl] == '=') {
            size_t vl = seg - nl - 1;
            if (vl >= len)
                return false; /* longer than any value we set: not ours */
            memcpy(buf, p + nl + 1, vl);
            buf[vl] = '\0';
            return true;
        }
        p = end;
    }
    return false;
}

/* Visitors reach the portal over HTTPS when it has its own certificate, or
   when its public address is https:// (a proxy in front ends TLS and
   forwards plain HTTP): then cookies are Secure, the session cookie takes
   the __Host- prefix and HSTS is sent, as the browser sees HTTPS. */
bool pt_portal_req_https(void)
{
    const struct pt_conf *f = pt_portal_req_srv.file;
    if (!f)
        return false;
    const char *pub = f->portal.public_url;
    return f->portal.tls.ncerts > 0 || (pub && !strncasecmp(pub, "https://", 8));
}

void pt_portal_req_set_cookie(struct pt_portal_req *r, const char *name, const char *value, long max_age_s)
{
    char c[1024], age[48] = "";
    if (max_age_s >= 0)
        snprintf(age, sizeof(age), "; Max-Age=%ld", max_age_s);
    snprintf(c, sizeof(c), "%s=%s; Path=/; HttpOnly; SameSite=Lax%s%s", name, max_age_s ? value : "", age,
             pt_portal_req_https() ? "; Secure" : "");
    evhttp_add_header(evhttp_request_get_output_headers(r->r), "Set-Cookie", c);
}

bool pt_portal_req_take_flash(struct pt_portal_req *r, char *buf, size_t len)
{
    char raw[FLASH_MAX * 3 + 1];
    if (!pt_portal_req_cookie(r, FLASH_COOKIE, raw, sizeof(raw)))
        return false;
    pt_portal_req_set_cookie(r, FLASH_COOKIE, "", 0);
    size_t dl = 0;
    char *dec = evhttp_uridecode(raw, 1, &dl);
    if (!dec)
        return false;
    bool ok = dl == strlen(dec) && dl > 0;
    snprintf(buf, len, "%s", dec);
    free(dec);
    return ok;
}

/* --------------------------------------------------------------- answers */

void pt_portal_req_send(struct pt_portal_req *r)
{
    if (r->deferred)
        return;
    struct evkeyvalq *oh = evhttp_request_get_output_headers(r->r);
    if (!evhttp_find_header(oh, "Content-Type") && r->status != 304 && r->status != 204)
        evhttp_add_header(oh, "Content-Type", r->content_type ? r->content_type : "text/html; charset=utf-8");
    pt_portal_req_header(r, "Content-Security-Policy", csp);
    pt_portal_req_header(r, "X-Content-Type-Options", "nosniff");
    pt_portal_req_header(r, "Referrer-Policy", "same-origin");
    pt_portal_req_header(r, "X-Frame-Options", "DENY");
    if (!evhttp_find_header(oh, "Cache-Control"))
        /* pages show who is signed in: never kept by shared caches */
        evhttp_add_header(oh, "Cache-Control", "no-store");
    if (pt_portal_req_https())
        pt_portal_req_header(r, "Strict-Transport-Security", "max-age=31536000");
    evhttp_send_reply(r->r, r->status ? r->status : 200, pt_http_reason(r->status ? r->status : 200), r->out);
    r->deferred = true; /* sent: nothing more */
}

void pt_portal_req_text(struct pt_portal_req *r, int status, const char *text)
{
    evbuffer_drain(r->out, evbuffer_get_length(r->out));
    evbuffer_add_printf(r->out, "%s\n", text);
    r->status = status;
    r->content_type = "text/plain; charset=utf-8";
}

void pt_portal_req_redirect(struct pt_portal_req *r, const char *path, const char *flash)
{
    /* only our own paths: "/x" but not "//host" or "/\host", which browsers take for another origin */
    if (!path || path[0] != '/' || path[1] == '/' || path[1] == '\\')
        path = "/";
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            path = "/";
            break;
        }
    if (flash && *flash) {
        char cut[FLASH_MAX + 1];
        snprintf(cut, sizeof(cut), "%s", flash);
        char *enc = evhttp_encode_uri(cut);
        if (enc)
            pt_portal_req_set_cookie(r, FLASH_COOKIE, enc, 60);
        free(enc);
    }
    evbuffer_drain(r->out, evbuffer_get_length(r->out));
    pt_portal_req_header(r, "Location", path);
    r->status = 303;
    r->content_type = "text/plain; charset=utf-8";
    evbuffer_add_printf(r->out, "See %s\n", path);
}

void pt_portal_req_json(struct pt_portal_req *r, int status, json_t *body)
{
    evbuffer_drain(r->out, evbuffer_get_length(r->out));
    char *txt = body ? json_dumps(body, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    if (txt) {
        evbuffer_add(r->out, txt, strlen(txt));
        evbuffer_add(r->out, "\n", 1);
    }
    free(txt);
    json_decref(body);
    r->status = status;
    r->content_type = "application/json; charset=utf-8";
}

void pt_portal_req_json_error(struct pt_portal_req *r, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pt_portal_req_json(r, status, json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg));
}

/* ------------------------------------------------------------------- CSRF */

/* Compares without an early exit, so that the time taken says nothing of the token. */
static bool same_secret(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < la && i < lb; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

bool pt_portal_req_check_csrf(struct pt_portal_req *r)
{
    const char *t = pt_portal_req_form(r, "csrf");
    if (!t)
        t = pt_portal_req_in_header(r, "X-CSRF-Token");
    if (r->csrf[0] && t && same_secret(t, r->csrf))
        return true;
    pt_info("portal: %s %s from %s refused: missing or wrong CSRF token", "POST", r->path, r->peer);
    const char *accept = pt_portal_req_in_header(r, "Accept");
    const char *ct = pt_portal_req_in_header(r, "Content-Type");
    if ((ct && strstr(ct, "json")) ||
        (accept && strstr(accept, "application/json") && !strstr(accept, "html")))
        pt_portal_req_json_error(r, 403, "InvalidCsrfToken",
                                 "the request's CSRF token is missing or wrong: reload the page");
    else
        pt_portal_req_text(r, 403,
                           "Forbidden: the form's security token is missing or has expired. Go back, "
                           "reload the page and try again.");
    return false;
}

const char *pt_portal_req_base_url(void)
{
    const struct pt_conf *f = pt_portal_req_srv.file;
    return f && f->portal.public_url ? f->portal.public_url : "";
}
