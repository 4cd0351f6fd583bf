/*
 * pt_mgmt_metrics -- the Prometheus endpoint (metrics.path, /metrics by
 * default): on the management listener, or on a listener of its own
 * (metrics.listen), both served by the control thread with evhttp.
 *
 * With metrics.auth `token` (the default) the caller shows a management
 * bearer token of the administrator or a reader: the figures cover every
 * workspace, so workspace roles are refused.  The settings are read from
 * the running file's configuration at each request, so a reload applies
 * them (the listener itself is opened at start only).
 */
#include "base/pt_log.h"
#include "event/pt_metrics.h"
#include "mgmt/pt_mgmt_int.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <sys/socket.h>
#include <unistd.h>

static struct evhttp *own; /* metrics.listen */

/* Answers a metrics request on either listener. */
static void serve(struct evhttp_request *r, const struct pt_conf *cf)
{
    struct mreq m = {.r = r, .method = evhttp_request_get_command(r)};
    m.method_name = m.method == EVHTTP_REQ_HEAD ? "HEAD" : "GET";
    if (m.method != EVHTTP_REQ_GET && m.method != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(r), "Allow", "GET, HEAD");
        pt_mgmt_req_send_error(&m, 405, "MethodNotAllowed", "the metrics are read with GET");
        return;
    }
    if (cf->metrics.auth == PT_METRICS_AUTH_TOKEN) {
        if (!pt_mgmt_auth_authenticate(&m))
            return;
        if (m.role != R_ADMIN && m.role != R_READER) {
            pt_mgmt_req_send_error(&m, 403, "Forbidden",
                                   "the metrics cover every workspace: an administrator or reader token is "
                                   "required");
            return;
        }
    }
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(r, 500, NULL);
        return;
    }
    pt_metrics_render(b);
    evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_add_header(evhttp_request_get_output_headers(r), "Cache-Control", "no-store");
    evhttp_send_reply(r, 200, "OK", b);
    evbuffer_free(b);
}

static bool is_metrics_path(struct evhttp_request *r, const struct pt_conf *cf)
{
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(r));
    return cf->metrics.enabled && path && !strcmp(path, cf->metrics.path);
}

bool pt_mgmt_metrics_serve(struct evhttp_request *r)
{
    const struct pt_conf *cf = pt_mgmt_req_hooks->file();
    if (cf->metrics.listen || !is_metrics_path(r, cf))
        return false;
    serve(r, cf);
    return true;
}

static void on_own(struct evhttp_request *r, void *arg)
{
    (void)arg;
    const struct pt_conf *cf = pt_mgmt_req_hooks->file();
    if (!is_metrics_path(r, cf)) {
        struct mreq m = {.r = r, .method = evhttp_request_get_command(r), .method_name = "GET"};
        pt_mgmt_req_send_error(&m, 404, "RouteNotFound", "this listener serves %s only", cf->metrics.path);
        return;
    }
    serve(r, cf);
}

bool pt_mgmt_metrics_start(struct event_base *base, const struct pt_conf *file, struct pt_store *st,
                           const struct pt_mgmt_hooks *h, struct pt_errors *errs)
{
    if (!file->metrics.listen) {
        if (file->metrics.enabled && !file->mgmt.listen)
            pt_info("metrics: no management listener and no metrics.listen: %s is not served",
                    file->metrics.path);
        return true;
    }
    pt_mgmt_req_store = st;
    pt_mgmt_req_hooks = h;
    int fd = socket(file->metrics.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, (const struct sockaddr *)&file->metrics.sa, file->metrics.salen) < 0 ||
        listen(fd, pt_conf_listen_backlog(0)) < 0) {
        pt_node_errors_add(errs, "metrics: cannot listen on %s: %s", file->metrics.listen, strerror(errno));
        if (fd >= 0)
            close(fd);
        return false;
    }
    own = evhttp_new(base);
    evhttp_set_max_body_size(own, 1024);
    evhttp_set_max_headers_size(own, 16 * 1024);
    evhttp_set_timeout(own, 30);
    evhttp_set_allowed_methods(own, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                        EVHTTP_REQ_DELETE);
    evhttp_set_gencb(own, on_own, NULL);
    if (!evhttp_accept_socket_with_handle(own, fd)) {
        pt_node_errors_add(errs, "metrics: cannot serve on %s", file->metrics.listen);
        evhttp_free(own);
        own = NULL;
        close(fd);
        return false;
    }
    pt_info("metrics listening on %s%s", file->metrics.listen, file->metrics.path);
    return true;
}

void pt_mgmt_metrics_stop(void)
{
    if (own)
        evhttp_free(own);
    own = NULL;
}
