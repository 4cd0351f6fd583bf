/*
 * pt_portal -- the developer portal's server (see pt_portal.h and
 * docs/portal.md): the listener (HTTP, or HTTPS like the management API),
 * the route table, the dispatch of a request to its handler, start and stop.
 * The handlers live in the other pt_portal_*.c files (pt_portal_int.h).
 *
 * Bounds: the request head is at most 16 KiB, a form body 64 KiB (a media
 * upload portal.media.maxSize and a little), the path 2 KiB; a path with
 * "." or ".." segments, a NUL or a backslash is refused before routing.
 */
#include "portal/pt_portal.h"
#include "base/pt_log.h"
#include "event/pt_io.h"
#include "event/pt_tls.h"
#include <sys/queue.h> /* before libevent's headers: TAILQ_* */

#include "portal/pt_portal_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEADERS_MAX (16 * 1024)
#define PATH_MAX_LEN 2048
#define SEGS_MAX 12

/* ----------------------------------------------------------------- routes */

/* flags of a route */
#define R_OPEN 0x1 /* served to guests even when site.requireSignin is set */
#define R_BIG 0x2  /* the body may be as large as a media upload (else PT_PORTAL_FORM_MAX) */

struct route {
    const char *methods; /* "GET", "GET POST", ...; HEAD goes with GET */
    const char *pattern; /* "/apis/{}/operations/{}"; a trailing "/..." takes the rest */
    pt_portal_handler h;
    unsigned flags;
};

static void serve_theme(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1;
    (void)a2;
    pt_portal_render_theme_css(r);
}

static void serve_asset(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1;
    (void)a2;
    pt_portal_assets_serve(r);
}

/* One line per route, grouped by the file whose handler it calls; keep it one flat array. */
static const struct route routes[] = {
    /* assets and theme (pt_portal_assets.c, pt_portal_render.c) */
    {"GET", "/assets/...", serve_asset, R_OPEN},
    {"GET", "/theme.css", serve_theme, R_OPEN},
    /* browsing (pt_portal_browse.c) */
    {"GET", "/", pt_portal_browse_home, 0},
    {"GET", "/apis", pt_portal_browse_apis, 0},
    {"GET", "/apis/{}", pt_portal_browse_api, 0},
    {"GET", "/apis/{}/operations/{}", pt_portal_browse_operation, 0},
    {"GET", "/apis/{}/definition", pt_portal_browse_definition, 0},
    {"GET", "/products", pt_portal_browse_products, 0},
    {"GET", "/products/{}", pt_portal_browse_product, 0},
    {"GET", "/pages/{}", pt_portal_browse_page, 0},
    {"GET", "/terms", pt_portal_browse_terms, R_OPEN},
    {"GET", "/media/{}", pt_portal_browse_media, R_OPEN},
    /* accounts (pt_portal_account.c) */
    {"GET POST", "/signup", pt_portal_account_signup, 0},
    {"GET POST", "/confirm", pt_portal_account_confirm, 0},
    {"GET POST", "/signin", pt_portal_account_signin, 0},
    {"POST", "/signout", pt_portal_account_signout, 0},
    {"GET POST", "/reset-password", pt_portal_account_reset, 0},
    {"GET POST", "/reset-password/confirm", pt_portal_account_reset_confirm, 0},
    {"GET POST", "/profile", pt_portal_account_profile, 0},
    {"POST", "/profile/password", pt_portal_account_password, 0},
    {"POST", "/profile/close", pt_portal_account_close, 0},
    {"GET POST", "/admin/invite", pt_portal_account_invite, 0},
    {"GET POST", "/invitation", pt_portal_account_invitation, 0},
    /* OpenID Connect sign-in (pt_portal_oidc.c) */
    {"GET", "/signin/oidc/{}", pt_portal_oidc_start, R_OPEN},
    {"GET", "/signin/oidc/{}/callback", pt_portal_oidc_callback, R_OPEN},
    {"POST", "/signin/oidc/{}/signup", pt_portal_oidc_signup, R_OPEN},
    /* subscriptions, console, usage (pt_portal_subs.c) */
    {"POST", "/products/{}/subscribe", pt_portal_subs_subscribe, 0},
    {"GET", "/subscriptions", pt_portal_subs_list, 0},
    {"POST", "/subscriptions/{}/show", pt_portal_subs_show, 0},
    {"POST", "/subscriptions/{}/regenerate", pt_portal_subs_regenerate, 0},
    {"POST", "/subscriptions/{}/rename", pt_portal_subs_rename, 0},
    {"POST", "/subscriptions/{}/cancel", pt_portal_subs_cancel, 0},
    {"GET", "/api/subscriptions", pt_portal_subs_api_list, 0},
    {"GET", "/api/subscriptions/{}/keys", pt_portal_subs_keys, 0},
    {"POST", "/api/console", pt_portal_subs_console, R_BIG}, /* bodies up to 256 KiB */
    {"GET", "/usage", pt_portal_subs_usage, 0},
    {"GET", "/admin/subscriptions", pt_portal_subs_admin_list, 0},
    {"POST", "/admin/subscriptions/{}/{}", pt_portal_subs_admin_decide, 0},
    /* administration (pt_portal_admin.c) */
    {"GET", "/admin", pt_portal_admin_home, 0},
    {"GET POST", "/admin/site", pt_portal_admin_site, R_BIG},
    {"POST", "/admin/media", pt_portal_admin_media, R_BIG},
    {"GET", "/admin/pages", pt_portal_admin_pages, 0},
    {"GET POST", "/admin/pages/{}", pt_portal_admin_page, R_BIG},
    {"POST", "/admin/pages/{}/delete", pt_portal_admin_page_delete, 0},
    {"POST", "/api/preview", pt_portal_admin_preview, R_BIG},
    {"POST", "/admin/publish", pt_portal_admin_publish, 0},
    {"GET", "/admin/revisions", pt_portal_admin_revisions, 0},
    {"POST", "/admin/revisions/{}/restore", pt_portal_admin_restore, 0},
};

/* --------------------------------------------------------------- dispatch */

static bool method_allowed(const struct route *rt, enum evhttp_cmd_type m)
{
    const char *name = m == EVHTTP_REQ_POST ? "POST" : "GET"; /* HEAD is a GET without the body */
    size_t nl = strlen(name);
    for (const char *p = rt->methods; (p = strstr(p, name)); p += nl)
        if ((p == rt->methods || p[-1] == ' ') && (p[nl] == ' ' || !p[nl]))
            return true;
    return false;
}

/* Matches the path's segments against a pattern, capturing "{}" (two at most) or the "..." rest. */
static bool match(const char *pattern, char **segs, int n, const char *rest[], const char **a1,
                  const char **a2)
{
    const char *p = pattern + 1;
    int k = 0, caps = 0;
    const char *got[2] = {NULL, NULL};
    while (*p) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 3 && !strncmp(p, "...", 3)) {
            if (k >= n)
                return false;
            got[caps < 2 ? caps : 1] = rest[k];
            caps++;
            k = n;
            break;
        }
        if (k >= n)
            return false;
        if (len == 2 && !strncmp(p, "{}", 2)) {
            if (caps < 2)
                got[caps] = segs[k];
            caps++;
        } else if (strlen(segs[k]) != len || strncmp(p, segs[k], len))
            return false;
        k++;
        p += len;
        if (*p == '/')
            p++;
    }
    if (k != n)
        return false;
    *a1 = got[0];
    *a2 = got[1];
    return true;
}

/* A decoded path we are willing to route: absolute, bounded, no NUL, backslash, "." or ".." segment. */
static bool path_ok(const char *p, size_t len)
{
    if (len != strlen(p) || p[0] != '/' || strchr(p, '\\'))
        return false;
    for (const char *s = p; s; s = strchr(s + 1, '/')) {
        if (!strncmp(s, "/./", 3) || !strcmp(s, "/.") || !strncmp(s, "/../", 4) || !strcmp(s, "/.."))
            return false;
    }
    for (const char *s = p; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

static void peer_of(struct evhttp_request *req, char *buf, size_t len)
{
    struct evhttp_connection *c = evhttp_request_get_connection(req);
    const struct sockaddr *sa = c ? evhttp_connection_get_addr(c) : NULL;
    buf[0] = '\0';
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)len);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, (socklen_t)len);
}

/* Paths guests may open when the site requires sign-in (besides routes marked R_OPEN). */
static bool open_path(const char *p)
{
    static const char *const open[] = {"/signin",     "/signup", "/confirm",
                                       "/invitation", "/terms",  "/theme.css"};
    for (size_t i = 0; i < PT_ARRAY_LEN(open); i++)
        if (!strcmp(p, open[i]))
            return true;
    return !strncmp(p, "/reset-password", 15) || !strncmp(p, "/assets/", 8) || !strncmp(p, "/media/", 7);
}

static void route_request(struct pt_portal_req *r)
{
    struct evhttp_request *req = r->r;
    const char *raw = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (!raw || !*raw)
        raw = "/";
    if (strlen(raw) > PATH_MAX_LEN) {
        pt_portal_req_text(r, 414, "URI Too Long");
        return;
    }
    size_t dl = 0;
    r->path = evhttp_uridecode(raw, 0, &dl);
    if (!r->path || !path_ok(r->path, dl)) {
        pt_portal_req_text(r, 400, "Bad Request: the path is malformed.");
        return;
    }
    if (r->method != EVHTTP_REQ_GET && r->method != EVHTTP_REQ_HEAD && r->method != EVHTTP_REQ_POST) {
        pt_portal_req_header(r, "Allow", "GET, HEAD, POST");
        pt_portal_req_text(r, 405, "Method Not Allowed");
        return;
    }
    /* segments of the decoded path, and where each starts (for a "..." rest) */
    char copy[PATH_MAX_LEN + 1];
    snprintf(copy, sizeof(copy), "%s", r->path);
    char *segs[SEGS_MAX];
    const char *rest[SEGS_MAX];
    int n = 0;
    for (char *save = NULL, *s = strtok_r(copy, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
        if (n == SEGS_MAX) {
            pt_portal_render_not_found(r);
            return;
        }
        rest[n] = r->path + (s - copy);
        segs[n++] = s;
    }
    const struct route *rt = NULL;
    const char *a1 = NULL, *a2 = NULL;
    bool path_known = false;
    for (size_t i = 0; i < PT_ARRAY_LEN(routes) && !rt; i++) {
        const char *x1, *x2;
        if (!match(routes[i].pattern, segs, n, rest, &x1, &x2))
            continue;
        path_known = true;
        if (method_allowed(&routes[i], r->method)) {
            rt = &routes[i];
            a1 = x1;
            a2 = x2;
        }
    }
    if (!rt) {
        if (path_known) {
            pt_portal_req_header(r, "Allow", "GET, HEAD, POST");
            pt_portal_req_text(r, 405, "Method Not Allowed");
        } else {
            pt_portal_session_load(r);
            pt_portal_render_not_found(r);
        }
        return;
    }
    size_t max_body = PT_PORTAL_FORM_MAX;
    if (rt->flags & R_BIG)
        max_body = (size_t)pt_portal_req_srv.file->portal.max_media + 64 * 1024;
    if (!pt_portal_req_parse(r, max_body))
        return;
    if (strncmp(r->path, "/assets/", 8))
        pt_portal_session_load(
            r); /* open pages still show who is signed in; a preview's theme is the draft's */
    const char *pv = pt_portal_req_query(r, "preview");
    r->preview = pv && !strcmp(pv, "1") && r->user && r->user->admin;
    if (!r->user && !(rt->flags & R_OPEN) && !open_path(r->path)) {
        const json_t *site = json_object_get(pt_portal_content_get(r), "site");
        if (json_is_true(json_object_get(site, "requireSignin"))) {
            pt_portal_req_redirect(r, "/signin", NULL);
            return;
        }
    }
    rt->h(r, a1, a2);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct pt_portal *srv = &pt_portal_req_srv;
    srv->file = srv->hooks->file(); /* the running file: a reload replaces it */
    struct pt_portal_req r = {.r = req, .method = evhttp_request_get_command(req), .out = evbuffer_new()};
    TAILQ_INIT(&r.query);
    peer_of(req, r.peer, sizeof(r.peer));
    if (!r.out) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    route_request(&r);
    pt_portal_req_send(&r);
    evbuffer_free(r.out);
    json_decref(r.form);
    evhttp_clear_headers(&r.query);
    free(r.path);
    if (r.user) {
        json_decref(r.user->groups);
        free(r.user);
    }
}

/* ------------------------------------------------------------------ start */

static struct evhttp *http;
static struct pt_tls_server *tls;

bool pt_portal_start(struct event_base *base, const struct pt_conf *file, struct pt_store *st,
                     const struct pt_mgmt_hooks *hooks, struct pt_errors *errs)
{
    const struct pt_portal_cf *p = &file->portal;
    if (!p->listen)
        return true;
    pt_portal_req_srv = (struct pt_portal){base, file, st, hooks};
    char err[512];
    if (!pt_portal_assets_init(p->theme_dir, err, sizeof(err))) {
        pt_node_errors_add(errs, "portal: %s", err);
        return false;
    }
    int fd = socket(p->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        /* accepted sockets inherit it: a page written in two pieces must not wait for the client's
           delayed ACK (40 ms a page) */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (fd < 0 || bind(fd, (const struct sockaddr *)&p->sa, p->salen) < 0 ||
        listen(fd, pt_conf_listen_backlog(0)) < 0) {
        pt_node_errors_add(errs, "portal: cannot listen on %s: %s", p->listen, strerror(errno));
        if (fd >= 0)
            close(fd);
        pt_portal_assets_free();
        return false;
    }
    if (p->tls.ncerts && !(tls = pt_tls_server_new(&p->tls, errs))) {
        close(fd);
        pt_portal_assets_free();
        return false;
    }
    http = evhttp_new(base);
    if (tls)
        evhttp_set_bevcb(http, pt_io_tls_evhttp_bev, tls);
    evhttp_set_max_body_size(http, (ev_ssize_t)(p->max_media + 64 * 1024));
    evhttp_set_max_headers_size(http, HEADERS_MAX);
    evhttp_set_timeout(http, 30);
    /* the others are answered 405 by the dispatcher, with Allow */
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                         EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(http, on_request, NULL);
    if (!evhttp_accept_socket_with_handle(http, fd)) {
        pt_node_errors_add(errs, "portal: cannot serve on %s", p->listen);
        pt_portal_stop();
        close(fd);
        return false;
    }
    pt_info("developer portal listening on %s%s (%s)", p->listen, tls ? " (HTTPS)" : "", p->public_url);
    return true;
}

void pt_portal_stop(void)
{
    pt_portal_subs_stop(); /* console calls in flight hold requests of this server */
    pt_portal_oidc_stop(); /* before the server: its waiting requests are answered */
    if (http)
        evhttp_free(http);
    http = NULL;
    pt_tls_server_free(tls);
    tls = NULL;
    pt_portal_assets_free();
    pt_portal_browse_free();
    pt_portal_content_free();
}
