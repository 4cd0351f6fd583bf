/*
 * main -- the portico command and its control thread.
 *
 *   portico [-c FILE]        run the gateway
 *   portico -t [-c FILE]     check a configuration and exit
 *   portico -v               version and build features
 *
 * The control thread (this one) loads and validates configurations, opens
 * listening sockets, starts the workers and reacts to signals:
 *   SIGHUP   reload: the new file is validated and built completely first;
 *            on any error the running configuration stays and the errors
 *            are logged.  Listening sockets of unchanged addresses are kept.
 *   SIGTERM  graceful stop: no new connections, in-flight requests finish,
 *            bounded by timeouts.shutdown.
 *   SIGINT   immediate stop.
 *   SIGUSR1  reopen the log files (after rotation).
 */
#include "pt.h"
#include "pt_conf.h"
#include "pt_gen.h"
#include "pt_corepol.h"
#include "pt_log.h"
#include "pt_plugin.h"
#include "pt_policy.h"
#include "pt_worker.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <llhttp.h>
#include <luajit.h>
#include <netinet/in.h>
#include <openssl/opensslv.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <yaml.h>
#include <zlib.h>

#ifndef PT_SYSCONFDIR
#define PT_SYSCONFDIR "/etc"
#endif

/* Listening sockets by address, one per worker, kept across reloads. */
struct lsock {
    struct sockaddr_storage sa;
    socklen_t salen;
    int *fds;
    struct lsock *next;
};

static struct lsock *lsocks;
static struct pt_gen *current;
static const char *conf_path;
static struct event_base *ctl_base;
static struct event *drain_timer;
static uint64_t drain_deadline;
static int nworkers;

static void usage(FILE *f)
{
    fprintf(f, "usage: portico [-c FILE]      run the gateway (default %s/portico/portico.yaml)\n"
               "       portico -t [-c FILE]   check the configuration and exit\n"
               "       portico -v             print the version and build features\n",
            PT_SYSCONFDIR);
}

static void print_version(void)
{
    printf("portico %s\n", PACKAGE_VERSION);
    printf("  libevent %s, %s, OpenSSL %s, llhttp %d.%d.%d, libyaml %s, zlib %s, SQLite %s\n",
           event_get_version(), LUAJIT_VERSION, OPENSSL_FULL_VERSION_STR, LLHTTP_VERSION_MAJOR,
           LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH, yaml_get_version_string(), zlibVersion(),
           sqlite3_libversion());
#ifdef PT_ASAN
    printf("  built with AddressSanitizer and UndefinedBehaviorSanitizer\n");
#endif
#ifdef PT_DEBUG
    printf("  built with debug checks\n");
#endif
}

static void print_errors(const struct pt_errors *e, FILE *f)
{
    for (int i = 0; i < e->n; i++)
        fprintf(f, "%s\n", e->msgs[i]);
}

/* ---------------------------------------------------------------- logs */

static int open_access(const char *path)
{
    if (!strcmp(path, "off"))
        return -1;
    if (!strcmp(path, "stdout"))
        return 1;
    if (!strcmp(path, "stderr"))
        return 2;
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

/* Points the access log at `path`; the descriptor number of a file stays
   the same (dup2), so workers writing at that moment never see it closed. */
static bool apply_access_log(const char *path)
{
    int fd = open_access(path);
    if (fd < 0 && strcmp(path, "off")) {
        pt_err("cannot open access log %s: %s", path, strerror(errno));
        return false;
    }
    int old = pt_access_fd;
    if (fd > 2 && old > 2) {
        dup2(fd, old);
        close(fd);
    } else
        pt_access_fd = fd;
    return true;
}

static bool apply_logs(const struct pt_conf *cf)
{
    pt_log_level = cf->log.level;
    if (pt_log_open(cf->log.error) < 0) {
        pt_err("cannot open error log %s: %s", cf->log.error, strerror(errno));
        return false;
    }
    return apply_access_log(cf->log.access);
}

/* ------------------------------------------------------------ listeners */

static int open_listener(const struct pt_listen_cf *l)
{
    int fd = socket(l->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (l->sa.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&l->sa, l->salen) < 0 || listen(fd, 4096) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/*
 * Gives g one socket per worker for each address it listens on: existing
 * ones for addresses already open, new ones otherwise.  On failure nothing
 * changes (new sockets are closed) and errs says why.
 */
static bool prepare_listeners(struct pt_gen *g, struct pt_errors *errs)
{
    const struct pt_conf *cf = g->conf;
    g->listen_fds = calloc((size_t)(cf->nlisten ? cf->nlisten : 1) * (size_t)nworkers, sizeof(int));
    struct lsock **fresh = calloc((size_t)(cf->nlisten ? cf->nlisten : 1), sizeof(*fresh));
    bool ok = true;
    for (int i = 0; i < cf->nlisten && ok; i++) {
        const struct pt_listen_cf *l = &cf->listen[i];
        struct lsock *ls = NULL;
        for (struct lsock *x = lsocks; x; x = x->next)
            if (x->salen == l->salen && !memcmp(&x->sa, &l->sa, l->salen))
                ls = x;
        if (!ls) {
            ls = calloc(1, sizeof(*ls));
            ls->sa = l->sa;
            ls->salen = l->salen;
            ls->fds = calloc((size_t)nworkers, sizeof(int));
            for (int w = 0; w < nworkers; w++)
                ls->fds[w] = -1;
            fresh[i] = ls;
            for (int w = 0; w < nworkers; w++) {
                ls->fds[w] = open_listener(l);
                if (ls->fds[w] < 0) {
                    pt_node_error(errs, l->node, "cannot listen on %s: %s", l->address, strerror(errno));
                    ok = false;
                    break;
                }
            }
        }
        for (int w = 0; w < nworkers; w++)
            g->listen_fds[i * nworkers + w] = ls->fds[w];
    }
    if (!ok) {
        for (int i = 0; i < cf->nlisten; i++)
            if (fresh[i]) {
                for (int w = 0; w < nworkers; w++)
                    if (fresh[i]->fds[w] >= 0)
                        close(fresh[i]->fds[w]);
                free(fresh[i]->fds);
                free(fresh[i]);
            }
        free(fresh);
        return false;
    }
    /* the registry now lists exactly g's addresses; workers close dropped ones */
    struct lsock *keep = NULL;
    for (int i = 0; i < cf->nlisten; i++) {
        struct lsock *ls = fresh[i];
        if (!ls) {
            struct lsock **pp = &lsocks;
            while (*pp && !((*pp)->salen == cf->listen[i].salen &&
                            !memcmp(&(*pp)->sa, &cf->listen[i].sa, cf->listen[i].salen)))
                pp = &(*pp)->next;
            if (!*pp)
                continue;
            ls = *pp;
            *pp = ls->next;
        }
        ls->next = keep;
        keep = ls;
    }
    while (lsocks) {
        struct lsock *x = lsocks;
        lsocks = x->next;
        free(x->fds);
        free(x);
    }
    lsocks = keep;
    free(fresh);
    return true;
}

/* --------------------------------------------------------------- reload */

static void reload(void)
{
    if (drain_timer) {
        pt_warn("reload refused: shutting down");
        return;
    }
    struct pt_errors errs = {0};
    pt_info("reloading %s", conf_path);
    struct pt_conf *cf = pt_conf_load(conf_path, &errs);
    struct pt_gen *g = NULL;
    if (cf) {
        if (cf->workers != nworkers) {
            pt_warn("workers: %d -> %d needs a restart; keeping %d", nworkers, cf->workers, nworkers);
            cf->workers = nworkers;
        }
        g = pt_gen_build(cf, &errs);
        if (!g)
            pt_conf_free(cf);
    }
    if (g && !prepare_listeners(g, &errs)) {
        pt_gen_unref(g);
        g = NULL;
    }
    if (!g) {
        for (int i = 0; i < errs.n; i++)
            pt_err("%s", errs.msgs[i]);
        pt_err("reload refused: the previous configuration keeps serving");
        pt_errors_clear(&errs);
        return;
    }
    apply_logs(g->conf);
    pt_workers_publish(g);
    struct pt_gen *old = current;
    current = g;
    pt_gen_unref(old);
    pt_info("configuration reloaded (generation %llu)", (unsigned long long)g->serial);
}

/* -------------------------------------------------------------- signals */

static void on_drain_check(evutil_socket_t fd, short what, void *arg)
{
    if (pt_workers_join(0)) {
        event_base_loopbreak(ctl_base);
        return;
    }
    if (pt_now_ms() >= drain_deadline) {
        pt_warn("shutdown timeout reached: closing the remaining connections");
        pt_workers_stop();
        event_base_loopbreak(ctl_base);
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    switch (sig) {
    case SIGHUP:
        reload();
        break;
    case SIGUSR1:
        pt_info("reopening log files");
        apply_logs(current->conf);
        break;
    case SIGTERM:
        if (drain_timer)
            break;
        pt_info("SIGTERM: finishing in-flight requests (at most %u ms)", current->conf->timeouts.shutdown);
        pt_workers_drain();
        drain_deadline = pt_now_ms() + current->conf->timeouts.shutdown;
        drain_timer = event_new(ctl_base, -1, EV_PERSIST, on_drain_check, NULL);
        struct timeval tv = {0, 20000};
        event_add(drain_timer, &tv);
        break;
    case SIGINT:
        pt_info("SIGINT: stopping now");
        pt_workers_stop();
        event_base_loopbreak(ctl_base);
        break;
    }
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Loads the policy plugins once; a refused plugin is reported and skipped
   (statements using its policies are then unknown policies). */
static void load_plugins(const struct pt_conf *cf)
{
    struct pt_errors perrs = {0};
    struct pt_registry *tmp = pt_registry_new();
    pt_corepol_register(tmp); /* plugins may not take the core's names */
    const char *dir = cf->plugin_dir ? cf->plugin_dir : pt_plugins_default_dir();
    pt_plugins_load(dir, tmp, &perrs);
    for (int i = 0; i < perrs.n; i++)
        pt_err("%s", perrs.msgs[i]);
    pt_errors_clear(&perrs);
    pt_registry_free(tmp);
}

/* ----------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    bool test_only = false;
    conf_path = PT_SYSCONFDIR "/portico/portico.yaml";
    int opt;
    while ((opt = getopt(argc, argv, "c:tvh")) != -1) {
        switch (opt) {
        case 'c':
            conf_path = optarg;
            break;
        case 't':
            test_only = true;
            break;
        case 'v':
            print_version();
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "portico: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    pt_api_init();

    struct pt_errors errs = {0};
    struct pt_conf *cf = pt_conf_load(conf_path, &errs);
    if (cf)
        load_plugins(cf);
    struct pt_gen *g = cf ? pt_gen_build(cf, &errs) : NULL;
    if (!g) {
        print_errors(&errs, stderr);
        if (cf)
            pt_conf_free(cf);
        fprintf(stderr, "portico: %s: %d error%s\n", conf_path, errs.n, errs.n == 1 ? "" : "s");
        pt_errors_clear(&errs);
        return 1;
    }
    if (test_only) {
        printf("portico: configuration %s is valid\n", conf_path);
        pt_gen_unref(g);
        return 0;
    }
    nworkers = g->conf->workers;
    raise_fd_limit();
    if (!prepare_listeners(g, &errs)) {
        print_errors(&errs, stderr);
        pt_errors_clear(&errs);
        pt_gen_unref(g);
        return 1;
    }
    if (!apply_logs(g->conf)) {
        pt_gen_unref(g);
        return 1;
    }
    current = g;
    ctl_base = event_base_new();
    if (!ctl_base || !pt_workers_start(nworkers, g)) {
        pt_err("cannot start workers");
        return 1;
    }
    int sigs[] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1};
    struct event *sev[4];
    for (int i = 0; i < 4; i++) {
        sev[i] = evsignal_new(ctl_base, sigs[i], on_signal, NULL);
        event_add(sev[i], NULL);
    }
    char addrs[512] = "";
    size_t k = 0;
    for (int i = 0; i < g->conf->nlisten && k < sizeof(addrs) - 2; i++)
        k += (size_t)snprintf(addrs + k, sizeof(addrs) - k, "%s%s%s", i ? ", " : "", g->conf->listen[i].address,
                              g->conf->listen[i].ncerts ? " (tls)" : "");
    pt_info("portico %s started: %d worker%s, listening on %s", PACKAGE_VERSION, nworkers,
            nworkers == 1 ? "" : "s", addrs);

    event_base_dispatch(ctl_base);

    if (!pt_workers_join(5000))
        pt_warn("workers did not stop in time");
    for (int i = 0; i < 4; i++)
        event_free(sev[i]);
    if (drain_timer)
        event_free(drain_timer);
    event_base_free(ctl_base);
    pt_gen_unref(current);
    while (lsocks) {
        struct lsock *x = lsocks;
        lsocks = x->next;
        free(x->fds);
        free(x);
    }
    pt_plugins_unload();
    pt_info("stopped");
    return 0;
}
