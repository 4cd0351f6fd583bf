/*
 * main -- the portico command and its control thread.
 *
 *   portico [-c FILE]        run the gateway
 *   portico -t [-c FILE]     check a configuration and exit
 *   portico -v               version and build features
 *
 * With controlPlane: in its file (or $PORTICO_CONTROL_PLANE_URL), the process
 * is a gateway node: an in-memory store, no management API or portal, and
 * its entities from the control plane (http/pt_cpsync.c), each new document
 * applied here like a reload.
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
#include "base/pt.h"
#include "base/pt_log.h"
#include "base/pt_paths.h"
#include "conf/pt_conf.h"
#include "conf/pt_model.h"
#include "conf/pt_samples.h"
#include "conf/pt_store.h"
#include "event/pt_breaker.h"
#include "event/pt_cache.h"
#include "event/pt_counters.h"
#include "event/pt_counters_redis.h"
#include "event/pt_health.h"
#include "event/pt_metrics.h"
#include "event/pt_redis.h"
#include "http/pt_cpsync.h"
#include "http/pt_logsink.h"
#include "http/pt_otel_export.h"
#include "http/pt_trace.h"
#include "http/pt_tracetoken.h"
#include "mgmt/pt_cli.h"
#include "mgmt/pt_mgmt.h"
#include "policy/pt_api.h"
#include "policy/pt_corepol.h"
#include "policy/pt_gen.h"
#include "policy/pt_plugin.h"
#include "policy/pt_policy.h"
#include "portal/pt_portal.h"
#include "proxy/pt_analytics.h"
#include "proxy/pt_worker.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <llhttp.h>
#include <luajit.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <openssl/opensslv.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <yaml.h>
#include <zlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

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
static struct pt_conf *file_conf; /* the file's configuration: settings and declared entities */
static struct pt_store *store;
static const char *conf_path;
static struct event_base *ctl_base;
static struct event *drain_timer;
static uint64_t drain_deadline;
static int nworkers;
static bool node_mode;    /* a gateway node of a control plane */
static bool env_only;     /* a node started with no file: settings from built-in defaults */
static char node_key[65]; /* a node's secret key: random per process (its store is in memory) */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: portico [-c FILE]      run the gateway (default %s/portico/portico.yaml)\n"
        "       portico -t [-c FILE]   check the configuration and exit\n"
        "       portico --ca-file PATH  (with the above) the CA bundle a gateway node checks its control\n"
        "                              plane's certificate against (controlPlane.caFile)\n"
        "       portico -P [-c FILE]   print the reference of every policy available (Markdown)\n"
        "       portico -K             print the reference of every configuration key (Markdown;\n"
        "                              also --config-reference)\n"
        "       portico -v             print the version and build features\n"
        "       portico COMMAND ...    manage a running gateway (apply, export, api, product, user,\n"
        "                              subscription...; `portico help` lists them)\n",
        PT_SYSCONFDIR);
}

static const char *attr_type_name(const struct pt_attr_def *a)
{
    switch (a->type) {
    case PT_ATTR_STRING:
        return "string";
    case PT_ATTR_INT:
        return "integer";
    case PT_ATTR_BOOL:
        return "boolean";
    case PT_ATTR_ENUM:
        return "one of";
    case PT_ATTR_ELEMENT:
        return "element";
    case PT_ATTR_POLICIES:
        return "statements";
    }
    return "?";
}

static void print_attrs(const struct pt_attr_def *attrs, const char *prefix)
{
    for (const struct pt_attr_def *a = attrs; a && a->name; a++) {
        printf("| `%s%s` | %s", prefix, a->name, attr_type_name(a));
        if (a->type == PT_ATTR_ENUM)
            for (int i = 0; a->enums[i]; i++)
                printf("%s`%s`", i ? ", " : " ", a->enums[i]);
        if (a->type == PT_ATTR_INT && (a->min || a->max))
            printf(" (%lld–%lld)", (long long)a->min, (long long)a->max);
        printf(" | %s%s%s | %s | %s |\n", a->flags & PT_ATTR_REQUIRED ? "required" : "optional",
               a->flags & PT_ATTR_MULTI ? ", one or a list" : "",
               a->flags & PT_ATTR_EXPR ? ", expression" : "", a->def ? a->def : "", a->doc ? a->doc : "");
        if (a->type == PT_ATTR_ELEMENT) {
            char p2[128];
            snprintf(p2, sizeof(p2), "%s%s.", prefix, a->name);
            print_attrs(a->children, p2);
        }
    }
}

/* A placeholder that says the attribute's type, as a YAML scalar. */
static void print_placeholder(const struct pt_attr_def *a)
{
    if (a->type == PT_ATTR_ENUM) {
        printf("<");
        for (int i = 0; a->enums[i]; i++)
            printf("%s%s", i ? "|" : "", a->enums[i]);
        printf(">");
    } else
        printf("<%s>", attr_type_name(a));
}

static void print_shape_notes(const struct pt_attr_def *a)
{
    const char *notes[3];
    int k = 0;
    if (a->flags & PT_ATTR_REQUIRED)
        notes[k++] = "required";
    if (a->flags & PT_ATTR_EXPR)
        notes[k++] = "expression";
    if (a->flags & PT_ATTR_MULTI)
        notes[k++] = "one or a list";
    for (int i = 0; i < k; i++)
        printf("%s%s", i ? ", " : "  # ", notes[i]);
    printf("\n");
}

/*
 * The YAML shape of a statement's attributes, from their definitions (so
 * that it cannot drift from what the gateway accepts): every attribute with
 * a placeholder of its type; elements nested (a list item when there may be
 * several); statement lists as a list of statements. `lead` is written
 * before the first line instead of the indent ("- " of a list item).
 */
static void print_shape(const struct pt_attr_def *attrs, int indent, const char *lead)
{
    for (const struct pt_attr_def *a = attrs; a && a->name; a++) {
        if (lead && a == attrs)
            printf("%*s%s", indent - (int)strlen(lead), "", lead);
        else
            printf("%*s", indent, "");
        if (a->flags & PT_ATTR_OR && a != attrs) {
            /* one of the two is written: the other is shown as a comment,
               so that the block can be copied as it is */
            printf("# or: %s:", a->name);
            if (a->type != PT_ATTR_POLICIES && a->type != PT_ATTR_ELEMENT) {
                printf(" ");
                print_placeholder(a);
            }
            print_shape_notes(a);
            continue;
        }
        printf("%s:", a->name);
        if (a->type == PT_ATTR_POLICIES) {
            print_shape_notes(a);
            printf("%*s  - <statement>\n", indent, "");
        } else if (a->type == PT_ATTR_ELEMENT && a->children && a->children->name) {
            print_shape_notes(a);
            if (a->flags & PT_ATTR_MULTI)
                print_shape(a->children, indent + 4, "- ");
            else
                print_shape(a->children, indent + 2, NULL);
        } else if (a->type == PT_ATTR_ELEMENT) {
            printf(" {}");
            print_shape_notes(a);
        } else {
            printf(" ");
            print_placeholder(a);
            print_shape_notes(a);
        }
    }
}

static void print_statement_shape(const struct pt_policy_def *d)
{
    const char *example = pt_corepol_example(d->name);
    printf("\n```yaml\n");
    if (example)
        printf("%s", example);
    else if (!d->attrs || !d->attrs->name)
        printf("- %s: {}\n", d->name);
    else {
        printf("- %s:\n", d->name);
        print_shape(d->attrs, 4, NULL);
    }
    printf("```\n");
}

static int cmp_def(const void *a, const void *b)
{
    return strcmp((*(const struct pt_policy_def *const *)a)->name,
                  (*(const struct pt_policy_def *const *)b)->name);
}

/* The policy reference, generated from the attribute schemas. */
static void print_reference(const struct pt_gen *g)
{
    static const char *const secs[] = {"inbound", "backend", "outbound", "on-error"};
    int n = pt_registry_count(g->reg);
    const struct pt_policy_def **defs = calloc((size_t)n, sizeof(*defs));
    for (int i = 0; i < n; i++)
        defs[i] = pt_registry_at(g->reg, i, NULL);
    qsort(defs, (size_t)n, sizeof(*defs), cmp_def);
    printf("# Policy reference\n\n"
           "Generated by `portico -P` from the policies' own schemas (the core's, the plugins' and the\n"
           "Lua policies' found by this configuration); do not edit by hand. Every policy also accepts\n"
           "an optional `id`, reported as `context.lastError.policyId`. Values marked *expression*\n"
           "may be `@( ... )` or `@{ ... }`; `{{id}}` inserts a named value anywhere (its id, or its\n"
           "displayName when no id is so called; braces around text that cannot be an id stay as\n"
           "written, and so do Mustache sections `{{#...}}`, but a plain `{{name}}` in a set-body that\n"
           "is not a Liquid template must be a named value). Positions in errors count from 0:\n"
           "`inbound[1]` is the second statement. Each policy\n"
           "shows its YAML shape, an item of a section's list: `<type>` stands for a value of that type,\n"
           "`<a|b>` for one of the names, `<statement>` for any statement.\n\n");
    for (int i = 0; i < n; i++)
        printf("- [`%s`](#%s)\n", defs[i]->name, defs[i]->name);
    for (int i = 0; i < n; i++) {
        const struct pt_policy_def *d = defs[i];
        const char *owner = NULL;
        for (int k = 0; k < n; k++)
            if (pt_registry_at(g->reg, k, &owner) == d)
                break;
        printf("\n## %s\n\n%s\n\n", d->name, d->doc ? d->doc : "");
        printf("Sections:");
        for (int s = 0; s < 4; s++)
            if (d->sections & (1u << s))
                printf(" %s", secs[s]);
        if ((d->scopes & PT_SCOPE_ALL) != PT_SCOPE_ALL) {
            printf(". Scopes:");
            for (int s = 0; s < PT_SCOPE_COUNT; s++)
                if (d->scopes & (1u << s))
                    printf(" %s", pt_msg_scope_names[s].label);
        }
        printf(". Provided by: %s.%s\n",
               !owner || !strcmp(owner, "core") ? "the core"
               : strstr(owner, ".lua")          ? "a Lua policy"
                                                : "a plugin",
               d->flags & PT_POLICY_ONCE_PER_SECTION ? " At most once per section." : "");
        print_statement_shape(d);
        if (d->attrs && d->attrs->name) {
            printf("\n| attribute | type | use | default | meaning |\n|---|---|---|---|---|\n");
            print_attrs(d->attrs, "");
        }
    }
    free(defs);
}

static void print_version(void)
{
    printf("portico %s\n", PACKAGE_VERSION);
    printf("  libevent %s, %s, OpenSSL %s, llhttp %d.%d.%d, libyaml %s, zlib %s, SQLite %s\n",
           event_get_version(), LUAJIT_VERSION, OPENSSL_FULL_VERSION_STR, LLHTTP_VERSION_MAJOR,
           LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH, yaml_get_version_string(), zlibVersion(),
           sqlite3_libversion());
    printf("  http2 (nghttp2 %s)\n", nghttp2_version(0)->version_str);
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
   the same (dup2), so workers writing at that moment never see it closed.
   For a logger the descriptor is left as it is: a worker sends its lines to
   its own generation's logger, and one still on the previous generation
   goes on writing to the file until it switches. */
static bool apply_access_log(const char *path)
{
    if (!strncmp(path, "logger:", 7)) { /* the generation's sink (pt_gen_start_loggers) */
        if (pt_worker_access_fd == PT_WORKER_ACCESS_OFF)
            pt_worker_access_fd = PT_WORKER_ACCESS_LOGGER; /* lines are made, for the logger alone */
        return true;
    }
    if (pt_worker_access_fd == PT_WORKER_ACCESS_LOGGER)
        pt_worker_access_fd = PT_WORKER_ACCESS_OFF;
    int fd = open_access(path);
    if (fd < 0 && strcmp(path, "off")) {
        pt_err("cannot open access log %s: %s", path, strerror(errno));
        return false;
    }
    int old = pt_worker_access_fd;
    if (fd > 2 && old > 2) {
        dup2(fd, old);
        close(fd);
    } else
        pt_worker_access_fd = fd;
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
    if (bind(fd, (const struct sockaddr *)&l->sa, l->salen) < 0 ||
        listen(fd, pt_conf_listen_backlog(l->backlog)) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/*
 * Whether nobody listens on the address yet.  Our sockets share a port
 * through SO_REUSEPORT, which would also let a second Portico started by
 * mistake share it silently and take part of the traffic; a probe bound
 * without SO_REUSEPORT finds such a listener (EADDRINUSE) first.
 */
static bool address_free(const struct pt_listen_cf *l)
{
    const struct sockaddr_in *in4 = (const struct sockaddr_in *)&l->sa;
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&l->sa;
    if ((l->sa.ss_family == AF_INET && !in4->sin_port) || (l->sa.ss_family == AF_INET6 && !in6->sin6_port))
        return true; /* port 0: a fresh port anyway */
    int fd = socket(l->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return true; /* let the real attempt report it */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (l->sa.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    bool ok = bind(fd, (const struct sockaddr *)&l->sa, l->salen) == 0;
    int e = errno;
    close(fd);
    errno = e;
    return ok || e != EADDRINUSE;
}

/*
 * Gives g one socket per worker for each address it listens on: existing
 * ones for addresses already open, new ones otherwise.  On failure nothing
 * changes (new sockets are closed) and errs says why.
 */
static bool prepare_listeners(struct pt_gen *g, const struct pt_conf *file, struct pt_errors *errs)
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
            if (!address_free(l)) {
                const struct pt_node *where = file && i < file->nlisten ? file->listen[i].node : l->node;
                pt_node_error(errs, where, "cannot listen on %s: %s (another process listens there)",
                              l->address, strerror(EADDRINUSE));
                ok = false;
                break;
            }
            for (int w = 0; w < nworkers; w++) {
                ls->fds[w] = open_listener(l);
                if (ls->fds[w] < 0) {
                    /* the file's node: its position, not the merged tree's path */
                    const struct pt_node *where = file && i < file->nlisten ? file->listen[i].node : l->node;
                    pt_node_error(errs, where, "cannot listen on %s: %s", l->address, strerror(errno));
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

/* ---------------------------------------------------------- generations */

/*
 * The generation to run: the file's entities are applied to the store and
 * the generation is built from the file's settings plus the store, in one
 * transaction that is left open: the caller commits it once everything
 * else (listening sockets) is ready too, or rolls it back.
 */
/* The secret key sealing the store's secrets: a node's own, else the file's (or its fallbacks). */
static const char *run_key(const struct pt_conf *file)
{
    return node_mode ? node_key : pt_model_secret_key(file);
}

/*
 * A node's generation: `entities` (a control plane's document, or NULL to
 * keep the store's) replace the store's, and the generation is built from
 * the node's file settings plus them.  The transaction is left open as in
 * build_running.
 */
static json_t *node_entities; /* the entity lists of the document the node serves (control thread) */

static struct pt_gen *node_build(const struct pt_conf *file, const json_t *entities, struct pt_errors *errs)
{
    /* the generation comes straight from the document: writing tens of thousands of entities into the
       in-memory store (each key sealed) only to read them back cost as much as the build itself; the
       store stays open for what it also keeps (counters, analytics) and for the transaction callers
       expect */
    if (!pt_store_begin(store)) {
        pt_node_errors_add(errs, "store: %s", pt_store_error(store));
        return NULL;
    }
    json_t *none = NULL;
    const json_t *use = entities ? entities : node_entities ? node_entities : (none = json_object());
    struct pt_conf *doc = pt_model_parse_doc(file, use, NULL, "control plane", errs);
    json_decref(none);
    struct pt_gen *g = doc ? pt_gen_build(doc, errs) : NULL;
    if (doc && !g)
        pt_conf_free(doc);
    if (!g) {
        pt_store_rollback(store);
        return NULL;
    }
    if (entities && entities != node_entities) {
        json_t *old = node_entities;
        node_entities = json_incref((json_t *)entities);
        json_decref(old);
    }
    return g;
}

static struct pt_gen *build_running(struct pt_conf *file, struct pt_errors *errs)
{
    if (node_mode) /* the file has settings only: the entities stay the control plane's */
        return node_build(file, NULL, errs);
    const char *key = pt_model_secret_key(file);
    if (!pt_store_begin(store)) {
        pt_node_errors_add(errs, "store: %s", pt_store_error(store));
        return NULL;
    }
    struct pt_gen *g = NULL;
    enum pt_samples_before before = pt_samples_probe(store); /* before the file writes into it */
    if (pt_model_apply_file(store, file, key, errs) && pt_samples_settle(store, file, key, before, errs)) {
        struct pt_conf *merged = pt_model_build(store, file, key, errs);
        if (merged) {
            g = pt_gen_build(merged, errs);
            if (!g)
                pt_conf_free(merged);
        }
    }
    if (!g) {
        pt_store_rollback(store);
        return NULL;
    }
    return g;
}

/* Commits build_running's transaction; false (and g released) on failure. */
static bool commit_running(struct pt_gen *g, struct pt_errors *errs)
{
    if (pt_store_commit(store))
        return true;
    pt_node_errors_add(errs, "store: cannot commit: %s", pt_store_error(store));
    pt_gen_unref(g);
    return false;
}

/* ------------------------------------------------------------ metrics */

static uint64_t start_wall_ms;

struct plugin_seen {
    struct pt_metrics_sink *s;
    const char *names[64];
    bool loaded[64];
    int n;
};

static void metrics_plugin(void *arg, const char *name, bool loaded)
{
    struct plugin_seen *ps = arg;
    for (int i = 0; i < ps->n; i++)
        if (ps->loaded[i] == loaded && !strcmp(ps->names[i], name))
            return; /* one sample per label set */
    if (ps->n < (int)PT_ARRAY_LEN(ps->names)) {
        ps->names[ps->n] = name;
        ps->loaded[ps->n++] = loaded;
    }
    static const char *const labels[] = {"plugin", "status"};
    pt_str v[2] = {pt_str_c(name), loaded ? PT_STR("loaded") : PT_STR("refused")};
    pt_metrics_sink_sample(ps->s, "portico_plugin_loaded",
                           "Policy plugins found at start: 1 per plugin and status.", PT_METRICS_GAUGE,
                           labels, v, 2, 1);
}

/* portico_certificate_expiry_seconds from the running generation: a node's certificates come in
   its document, never through its store. */
static void metrics_cert_expiry(struct pt_metrics_sink *s)
{
    static const char *const names[] = {"id"};
    int64_t now_ms = (int64_t)pt_clock_wall_ms();
    for (int i = 0; current && i < current->conf->ncerts; i++) {
        const struct pt_storecert_cf *c = &current->conf->certs[i];
        if (!c->chain_pem)
            continue;
        pt_str id = pt_str_c(c->id);
        pt_metrics_sink_sample(s, "portico_certificate_expiry_seconds",
                               "Seconds until each stored certificate expires (negative: expired).",
                               PT_METRICS_GAUGE, names, &id, 1,
                               (double)(c->not_after * 1000 - now_ms) / 1000.0);
    }
}

/* What the control thread knows, read at each scrape.  (Other parts' stats
   are wired here too: a collector per part, see docs/metrics.md.) */
static void metrics_node(struct pt_metrics_sink *s, void *arg)
{
    (void)arg;
    pt_metrics_sink_value(s, "portico_counters_used",
                          "Keys in the rate-limit, quota and concurrency counter table.", PT_METRICS_GAUGE,
                          (double)pt_counters_count());
    pt_metrics_sink_value(s, "portico_counters_capacity",
                          "Keys the counter table holds at most (limits.counterKeys).", PT_METRICS_GAUGE,
                          (double)pt_counters_capacity());
    struct plugin_seen ps = {.s = s};
    pt_plugin_each(metrics_plugin, &ps);
    static const char *const version[] = {"version"};
    pt_str v = PT_STR(PACKAGE_VERSION);
    pt_metrics_sink_sample(s, "portico_build_info", "The running build: always 1.", PT_METRICS_GAUGE, version,
                           &v, 1, 1);
    pt_metrics_sink_value(s, "process_start_time_seconds", "Start time of the process since the Unix epoch.",
                          PT_METRICS_GAUGE, (double)(start_wall_ms / 1000));
    pt_metrics_sink_value(s, "portico_store_memory_bytes",
                          "Memory SQLite holds for the store (a gateway node's store is all in memory).",
                          PT_METRICS_GAUGE, (double)pt_store_memory_used());
    metrics_cert_expiry(s);
}

/* The external cache's settings to the workers (a name that does not resolve or TLS files that do
   not load leave Redis down, counted and logged, never the gateway). */
static void configure_redis(const struct pt_cache_cf *cc)
{
    char err[512];
    if (!pt_redis_configure(cc, err, sizeof(err)))
        pt_warn("cache: %s", err);
}

static void metrics_reload(bool ok)
{
    static const pt_str results[2] = {PT_STR("failed"), PT_STR("ok")};
    struct pt_metrics_family *f = pt_metrics_core[PT_MC_RELOADS];
    if (f)
        pt_metrics_add(f, PT_METRICS_CONTROL, pt_metrics_series(f, NULL, &results[ok], 1), 1);
}

/* Makes g the running generation (the workers switch at their next turn). */
static void publish(struct pt_gen *g)
{
    pt_gen_start_loggers(g);
    apply_logs(g->conf);
    pt_otel_export_configure(&g->conf->telemetry); /* OpenTelemetry (O) */
    pt_trace_configure(g->conf);
    atomic_store(&pt_metrics_enabled, g->conf->metrics.enabled);
    if (pt_metrics_core[PT_MC_CONFIG_GENERATION])
        pt_metrics_set(pt_metrics_core[PT_MC_CONFIG_GENERATION], PT_METRICS_CONTROL, 0, (int64_t)g->serial);
    pt_analytics_configure(&g->conf->analytics);
    pt_workers_publish(g);
    pt_health_from_gen(g);        /* backends' health checks */
    pt_mgmt_gateways_published(); /* self-hosted gateways' nodes: their long-polls */
    struct pt_gen *old = current;
    current = g;
    pt_gen_unref(old);
    pt_model_log_expiry(g->conf, false); /* what this change brings near expiry (committed: it stays) */
}

/* ----------------------------------------------------- certificate expiry */

/* Certificates cross the 30-day mark, and expire, between changes: checked hourly too. */
#define EXPIRY_CHECK_S 3600
static struct event *expiry_timer;

static void on_expiry_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (current)
        pt_model_log_expiry(current->conf, false);
}

/* ------------------------------------------------------ quota counters */

/* Quota counters are kept in the store: written every QUOTA_FLUSH_MS and at
   stop, read back at start, so a restart loses at most that much counting. */
#define QUOTA_FLUSH_MS 5000
static struct event *quota_timer;
static struct event *redis_timer; /* tries a Redis host name again while it does not resolve */

static void save_counter(void *arg, const char *key, int64_t period, int64_t value)
{
    (void)arg;
    pt_store_counter_set(store, key, period, value);
}

static void flush_counters(void)
{
    if (!store || !pt_store_begin(store))
        return;
    pt_counters_each_dirty(save_counter, NULL);
    if (!pt_store_commit(store))
        pt_warn("store: quota counters not saved: %s", pt_store_error(store));
}

static void on_redis_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    pt_redis_retry(pt_clock_now_ms()); /* the resolver runs on a thread of its own */
}

/* A generation's memory is freed where its last user lets go of it (often a worker), into heaps
   that glibc keeps: without giving it back, the process keeps the high-water mark of two complete
   configurations (the running one and the one built beside it) after the first write or reload.
   Checked on the control thread, so that no worker pays for the walk over the heaps. */
#define TRIM_CHECK_MS 100
static struct event *trim_timer;

static void on_trim_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
#ifdef __GLIBC__
    if (pt_gen_take_released())
        malloc_trim(0);
#endif
}

static void on_quota_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    flush_counters();
}

static void seed_counter(void *arg, const char *key, int64_t period, int64_t value)
{
    (void)arg;
    pt_counters_seed(key, period, value);
}

/* -------------------------------------------------------- management API */

static const struct pt_conf *mgmt_file(void)
{
    return file_conf;
}

/*
 * The generation built from the store that was published last (the file's configuration it was
 * built with, the store's write counters then): while it serves, a write of subscriptions alone
 * builds the next one over it (pt_gen_with_subs); anything else -- another kind, a rollback, a
 * reload, a node's document -- builds in full.
 */
static struct {
    uint64_t serial; /* the generation's; 0: none (a node's generations come from documents) */
    const struct pt_conf *file;
    struct pt_model_mark mark;
} built;

static void built_from_store(const struct pt_gen *g)
{
    built.serial = node_mode ? 0 : g->serial;
    built.file = file_conf;
    pt_model_mark_take(store, &built.mark);
}

static bool subs_only(void)
{
    return built.serial && current && current->serial == built.serial && built.file == file_conf &&
           pt_model_subs_only(store, &built.mark);
}

/* The next generation for the management write in the open transaction: its subscriptions alone
   when they are all it wrote, else everything.  NULL with errs when it does not hold. */
static struct pt_gen *mgmt_build(bool fast, struct pt_errors *errs)
{
    const char *key = run_key(file_conf);
    const struct pt_conf *body = current->body ? current->body->conf : current->conf;
    struct pt_conf *merged = fast ? pt_model_build_subs(store, file_conf, body, key, errs)
                                  : pt_model_build(store, file_conf, key, errs);
    struct pt_gen *g = !merged ? NULL
                       : fast  ? pt_gen_with_subs(current, merged, errs)
                               : pt_gen_build(merged, errs);
    if (merged && !g)
        pt_conf_free(merged);
    return g;
}

/* A management write is in the open transaction: build, commit, publish. */
static bool mgmt_publish(struct pt_errors *errs)
{
    bool fast = subs_only();
    struct pt_gen *g = mgmt_build(fast, errs);
    if (g && !prepare_listeners(g, file_conf, errs)) {
        pt_gen_unref(g);
        g = NULL;
    }
    if (!g) {
        pt_store_rollback(store);
        pt_info("management change refused (%d error%s%s): the previous configuration keeps serving", errs->n,
                errs->n == 1 ? "" : "s", fast ? ", subscriptions only" : "");
        return false;
    }
    if (!commit_running(g, errs))
        return false;
    publish(g);
    built_from_store(g);
    pt_info("management change applied (generation %llu%s)", (unsigned long long)g->serial,
            fast ? ", subscriptions only" : "");
    return true;
}

static const struct pt_mgmt_hooks mgmt_hooks = {mgmt_file, mgmt_publish};

/* ------------------------------------------------------------ gateway node */

/* A control plane's document: applied like a reload (the workers switch at their next turn, no
   request fails); on any error the running configuration stays. */
static bool node_apply(const json_t *entities, char *err, size_t errlen)
{
    if (drain_timer) {
        snprintf(err, errlen, "shutting down");
        return false;
    }
    struct pt_errors errs = {0};
    struct pt_gen *g = node_build(file_conf, entities, &errs);
    if (g && !prepare_listeners(g, file_conf, &errs)) {
        pt_store_rollback(store);
        pt_gen_unref(g);
        g = NULL;
    }
    if (g && !commit_running(g, &errs))
        g = NULL;
    if (!g) {
        metrics_reload(false);
        size_t k = 0;
        err[0] = '\0';
        for (int i = 0; i < errs.n && k + 3 < errlen; i++)
            k += (size_t)snprintf(err + k, errlen - k, "%s%s", i ? "; " : "", errs.msgs[i]);
        if (!errs.n)
            snprintf(err, errlen, "the document could not be applied");
        pt_node_errors_clear(&errs);
        return false;
    }
    publish(g);
    metrics_reload(true);
    pt_workers_set_ready(true);
    return true;
}

static json_t *node_take(void)
{
    return pt_analytics_shipment_take();
}

static const struct pt_cpsync_hooks node_hooks = {node_apply, node_take, pt_analytics_shipment_putback};

/* The configuration: the file, or for a node started with no file (a container), built-in defaults
   (listen 0.0.0.0:8080; data /var/lib/portico when it can be written, else var). */
static struct pt_conf *load_conf(struct pt_errors *errs)
{
    if (!env_only)
        return pt_conf_load(conf_path, errs);
    const char *data = access("/var/lib/portico", W_OK) == 0 ? "/var/lib/portico" : "var";
    char text[256];
    int n = snprintf(text, sizeof(text), "listen: \"0.0.0.0:8080\"\ndata: \"%s\"\n", data);
    return pt_conf_parse("(environment)", text, (size_t)n, errs);
}

/* --------------------------------------------------------------- reload */

/* Both NULL, or the same text. */
static bool same_text(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

static void reload(void)
{
    if (drain_timer) {
        pt_warn("reload refused: shutting down");
        return;
    }
    struct pt_errors errs = {0};
    pt_info("reloading %s", env_only ? "the settings (no file: built-in defaults)" : conf_path);
    struct pt_conf *cf = load_conf(&errs);
    struct pt_gen *g = NULL;
    if (!cf && !env_only)
        pt_gen_check_policies(conf_path, &errs);
    if (cf && cf->cp.on != node_mode) {
        pt_node_errors_add(&errs, "controlPlane: %s",
                           node_mode
                               ? "removed: a gateway node becomes a gateway of its own only at a restart"
                               : "added: a gateway becomes a gateway node only at a restart");
        pt_conf_free(cf);
        cf = NULL;
    }
    if (cf) {
        if (cf->workers != nworkers) {
            pt_warn("workers: %d -> %d needs a restart; keeping %d", nworkers, cf->workers, nworkers);
            cf->workers = nworkers;
        }
        const char *od = current->conf->plugin_dir, *nd = cf->plugin_dir;
        if ((od || nd) && (!od || !nd || strcmp(od, nd)))
            pt_warn("pluginDir changed: plugins are loaded at start only; restart to use the new folder");
        if (strcmp(cf->data_dir, file_conf->data_dir))
            pt_warn("data changed: the store is opened at start only; restart to use the new folder");
        if (!same_text(cf->portal.listen, file_conf->portal.listen) ||
            !same_text(cf->portal.cert.certificate, file_conf->portal.cert.certificate) ||
            !same_text(cf->portal.cert.key, file_conf->portal.cert.key) ||
            !same_text(cf->portal.theme_dir, file_conf->portal.theme_dir))
            pt_warn(
                "portal: listen, certificate, key and themeDir are read at start only; restart to use the "
                "new ones (the rest of portal: applies now)");
        /* the file alone first (its errors carry file:line:column, and it refuses what a start
           would refuse: a reference to what only the store holds), then with the store */
        if (pt_gen_validate(cf, false, &errs))
            g = build_running(cf, &errs);
        if (g && !prepare_listeners(g, cf, &errs)) {
            pt_store_rollback(store);
            pt_gen_unref(g);
            g = NULL;
        }
        if (g && !commit_running(g, &errs))
            g = NULL;
        if (!g)
            pt_conf_free(cf);
        else {
            pt_conf_free(file_conf);
            file_conf = cf;
        }
    }
    if (!g) {
        metrics_reload(false);
        for (int i = 0; i < errs.n; i++)
            pt_err("%s", errs.msgs[i]);
        pt_err("reload refused: the previous configuration keeps serving");
        pt_node_errors_clear(&errs);
        return;
    }
    if ((cf->mgmt.listen || current->conf->mgmt.listen) &&
        (!cf->mgmt.listen || !current->conf->mgmt.listen ||
         strcmp(cf->mgmt.listen, current->conf->mgmt.listen)))
        pt_warn(
            "management.listen changed: the management listener is opened at start only; restart to move it");
    const struct pt_metrics_cf *om = &current->conf->metrics, *nm = &cf->metrics;
    if ((om->listen || nm->listen) && (!om->listen || !nm->listen || strcmp(om->listen, nm->listen)))
        pt_warn("metrics.listen changed: the metrics listener is opened at start only; restart to move it");
    if (om->max_series != nm->max_series)
        pt_warn("metrics.maxSeries changed: it is read at start only; restart to apply it");
    pt_model_log_expiry(NULL, true); /* a reload reports near expiry again */
    publish(g);
    built_from_store(g);
    metrics_reload(true);
    pt_counters_init(g->conf->counter_keys);
    pt_cache_node_configure(g->conf->cache.memory, g->conf->cache.max_entry); /* the entries stay */
    configure_redis(&g->conf->cache);
    if (node_mode)
        pt_cpsync_configure(file_conf); /* url, token, caFile...: from the next attempt */
    pt_info("configuration reloaded (generation %llu)", (unsigned long long)g->serial);
}

/* -------------------------------------------------------------- signals */

static void on_drain_check(evutil_socket_t fd, short what, void *arg)
{
    if (pt_workers_join(0)) {
        event_base_loopbreak(ctl_base);
        return;
    }
    if (pt_clock_now_ms() >= drain_deadline) {
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
        pt_logsink_reopen();
        break;
    case SIGTERM:
        if (drain_timer)
            break;
        pt_info("SIGTERM: finishing in-flight requests (at most %u ms)", current->conf->timeouts.shutdown);
        pt_workers_drain();
        drain_deadline = pt_clock_now_ms() + current->conf->timeouts.shutdown;
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
    const char *dir = cf->plugin_dir ? cf->plugin_dir : pt_paths_plugins();
    pt_plugin_load(dir, tmp, &perrs);
    for (int i = 0; i < perrs.n; i++)
        pt_err("%s", perrs.msgs[i]);
    pt_node_errors_clear(&perrs);
    pt_registry_free(tmp);
}

/* ----------------------------------------------------- secrets at rest */

static char seal_key[512];

static char *seal_cb(void *arg, const char *plain)
{
    return pt_model_seal(arg, plain);
}

static char *unseal_cb(void *arg, const char *sealed)
{
    return pt_model_unseal(arg, sealed);
}

/* ----------------------------------------------------------------- main */

/* libevent's own warnings and errors go to the error log, not only to standard error: when libevent
   ends the process on an internal error, the log says why. */
static void libevent_log(int severity, const char *msg)
{
    if (severity >= EVENT_LOG_ERR)
        pt_err("libevent: %s", msg);
    else if (severity >= EVENT_LOG_WARN)
        pt_warn("libevent: %s", msg);
}

int main(int argc, char **argv)
{
    bool test_only = false, reference = false;
    conf_path = PT_SYSCONFDIR "/portico/portico.yaml";
    signal(SIGPIPE, SIG_IGN); /* before any I/O: a peer that leaves is an error, not a death */
    event_set_log_callback(libevent_log);
    if (pt_cli_is_command(argc, argv))
        return pt_cli_main(argc, argv);
    static const struct option longopts[] = {{"config-reference", no_argument, NULL, 'K'},
                                             {"ca-file", required_argument, NULL, 'A'},
                                             {"help", no_argument, NULL, 'h'},
                                             {0}};
    bool conf_given = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:tvhPK", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            conf_path = optarg;
            conf_given = true;
            break;
        case 'A': /* wins over controlPlane.caFile and the variable, at reloads too */
            setenv("PORTICO_CONTROL_PLANE_CA_FILE", optarg, 1);
            break;
        case 't':
            test_only = true;
            break;
        case 'P':
            reference = true;
            break;
        case 'K':
            return pt_conf_reference(stdout, stderr) ? 0 : 1;
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
    pt_conn_init();

    /* From the moment a port listens, a client may think the gateway is up
       and signal it: the control signals wait (blocked) until their
       handlers are in place, below.  Blocked before any thread starts (a
       plugin's, from its init() or while the configuration compiles, and
       the workers), so that every thread inherits the mask and the signals
       are the control thread's. */
    sigset_t ctl_sigs, old_sigs;
    sigemptyset(&ctl_sigs);
    sigaddset(&ctl_sigs, SIGHUP);
    sigaddset(&ctl_sigs, SIGTERM);
    sigaddset(&ctl_sigs, SIGINT);
    sigaddset(&ctl_sigs, SIGUSR1);
    if (!test_only && !reference)
        pthread_sigmask(SIG_BLOCK, &ctl_sigs, &old_sigs);

    struct pt_errors errs = {0};
    if (test_only || reference) {
        pt_log_level = PT_LOG_WARN;  /* checking prints errors, not progress */
        pt_api_checking_only = true; /* and contacts nobody (identity providers...) */
    }
    const char *cp_url = getenv("PORTICO_CONTROL_PLANE_URL");
    env_only = !conf_given && cp_url && *cp_url && access(conf_path, F_OK) < 0 && errno == ENOENT;
    if (env_only)
        conf_path = "(environment)";
    struct pt_conf *cf = load_conf(&errs);
    node_mode = cf && cf->cp.on;
    if (cf && !test_only && !reference && !apply_logs(cf)) {
        pt_conf_free(cf);
        return 1;
    }
    if (cf)
        load_plugins(cf);
    else if (!env_only)
        pt_gen_check_policies(conf_path, &errs); /* report policy errors too */
    /* the file alone: everything it says must hold (refs too when only checking) */
    if (cf && (test_only || reference))
        cf->samples_assumed = true; /* as a new store has them: the server would agree */
    bool valid = cf && pt_gen_validate(cf, test_only || reference, &errs);
    struct pt_gen *g = NULL;
    json_t *backup = NULL; /* a node's last document, when its backup is readable */
    if (valid && (reference || test_only)) {
        if (reference) {
            g = pt_gen_build(cf, &errs);
            print_reference(g);
            pt_gen_unref(g);
        } else {
            printf("portico: configuration %s is valid\n", conf_path);
            pt_conf_free(cf);
        }
        return 0;
    }
    if (valid && node_mode) {
        /* a node: its store in memory, its secrets sealed with a key of this process's; the backup,
           when it can be read, is the first configuration (the control plane may be down) */
        char serr[4400], a[33], b[33];
        pt_model_new_key(a);
        pt_model_new_key(b);
        snprintf(node_key, sizeof(node_key), "%s%s", a, b);
        store = pt_store_open(PT_STORE_MEMORY, serr, sizeof(serr));
        if (!store)
            pt_node_errors_add(&errs, "%s", serr);
        else {
            snprintf(seal_key, sizeof(seal_key), "%s", node_key);
            pt_store_set_sealer(store, seal_cb, unseal_cb, seal_key);
            pt_tracetoken_set_secret(seal_key);
            backup = pt_cpsync_backup_load(&cf->cp, serr, sizeof(serr));
            if (serr[0])
                pt_err("%s", serr);
            if (backup) {
                struct pt_errors berrs = {0};
                g = node_build(cf, json_object_get(backup, "entities"), &berrs);
                for (int i = 0; i < berrs.n; i++)
                    pt_err("configuration backup %s: %s", cf->cp.backup, berrs.msgs[i]);
                if (!g) {
                    pt_err("configuration backup %s: cannot be applied; starting with no APIs",
                           cf->cp.backup);
                    json_decref(backup);
                    backup = NULL;
                } else
                    pt_info(
                        "configuration backup %s: serving generation %lld until the control plane answers",
                        cf->cp.backup, (long long)json_integer_value(json_object_get(backup, "generation")));
                pt_node_errors_clear(&berrs);
            }
            if (!g)
                g = node_build(cf, NULL, &errs);
        }
    } else if (valid) {
        char serr[4400];
        store = pt_store_open(cf->data_dir, serr, sizeof(serr));
        if (!store)
            pt_node_errors_add(&errs, "%s", serr);
        else if (!pt_model_secret_key(cf) && !pt_model_load_keyfile(cf->data_dir, serr, sizeof(serr))) {
            pt_node_errors_add(&errs, "%s", serr);
            pt_store_close(store);
            store = NULL;
        } else {
            /* subscription keys are sealed at rest with the same key as secret named values */
            snprintf(seal_key, sizeof(seal_key), "%s", pt_model_secret_key(cf));
            pt_store_set_sealer(store, seal_cb, unseal_cb, seal_key);
            pt_tracetoken_set_secret(seal_key); /* tracing: debug tokens and trace locations */
            int n = pt_store_reseal(store);
            if (n > 0)
                pt_info("store: sealed the keys of %d subscription%s written before keys were sealed", n,
                        n == 1 ? "" : "s");
            else if (n < 0)
                pt_warn("store: cannot seal the subscription keys written before keys were sealed: %s",
                        pt_store_error(store));
            g = build_running(cf, &errs);
        }
    }
    if (!g) {
        print_errors(&errs, stderr);
        if (cf)
            pt_conf_free(cf);
        fprintf(stderr, "portico: %s: %d error%s\n", conf_path, errs.n, errs.n == 1 ? "" : "s");
        pt_node_errors_clear(&errs);
        pt_store_close(store);
        return 1;
    }
    file_conf = cf;
    nworkers = g->conf->workers;
    raise_fd_limit();
    bool listening = prepare_listeners(g, cf, &errs);
    if (!listening)
        pt_store_rollback(store); /* build_running's transaction: nothing of this start is kept */
    if (!listening || !commit_running(g, &errs)) {
        print_errors(&errs, stderr);
        pt_node_errors_clear(&errs);
        if (!listening)
            pt_gen_unref(g); /* commit_running releases it on its own failure */
        file_conf = NULL;
        pt_conf_free(cf);
        pt_store_close(store);
        store = NULL;
        return 1;
    }
    if (!apply_logs(g->conf)) {
        pt_gen_unref(g);
        return 1;
    }
    current = g;
    built_from_store(g);
    pt_model_log_expiry(g->conf, true);
    pt_trace_configure(g->conf);
    pt_gen_start_loggers(g);
    pt_counters_init(g->conf->counter_keys);
    pt_store_counter_each(store, seed_counter, NULL);
    if (!pt_cache_node_configure(g->conf->cache.memory, g->conf->cache.max_entry)) {
        pt_err("cannot create the internal cache");
        return 1;
    }
    configure_redis(&g->conf->cache);
    pt_otel_export_start(nworkers, &g->conf->telemetry); /* OpenTelemetry (O): queues and exporter */
    start_wall_ms = pt_clock_wall_ms();
    pt_metrics_init(nworkers, (int)g->conf->metrics.max_series);
    pt_metrics_collector(metrics_node, NULL);
    pt_metrics_collector(pt_cache_metrics, NULL);
    char cerr[256];
    if (!pt_counters_redis_start(&g->conf->counters, cerr, sizeof(cerr))) /* counters across nodes (C) */
        pt_warn("%s: rate limits and quotas count per node", cerr);
    pt_breaker_init(); /* backends' state on /metrics */
    atomic_store(&pt_metrics_enabled, g->conf->metrics.enabled);
    pt_metrics_set(pt_metrics_core[PT_MC_CONFIG_GENERATION], PT_METRICS_CONTROL, 0, (int64_t)g->serial);
    ctl_base = event_base_new();
    if (node_mode) {
        pt_workers_set_ready(backup != NULL); /* no APIs yet: not ready until the first document */
        pt_analytics_shipping(true);          /* flushed figures are also kept for the heartbeats */
    }
    if (!ctl_base || !pt_workers_start(nworkers, g)) {
        pt_err("cannot start workers");
        return 1;
    }
    pt_analytics_start(ctl_base, store, &g->conf->analytics);
    pt_health_from_gen(g); /* backends' health checks, on their own thread */
    quota_timer = event_new(ctl_base, -1, EV_PERSIST, on_quota_timer, NULL);
    struct timeval qtv = {QUOTA_FLUSH_MS / 1000, (QUOTA_FLUSH_MS % 1000) * 1000};
    event_add(quota_timer, &qtv);
    expiry_timer = event_new(ctl_base, -1, EV_PERSIST, on_expiry_timer, NULL);
    struct timeval etv = {EXPIRY_CHECK_S, 0};
    if (expiry_timer)
        event_add(expiry_timer, &etv);
    redis_timer = event_new(ctl_base, -1, EV_PERSIST, on_redis_timer, NULL);
    struct timeval rtv = {1, 0};
    if (redis_timer)
        event_add(redis_timer, &rtv);
    trim_timer = event_new(ctl_base, -1, EV_PERSIST, on_trim_timer, NULL);
    struct timeval ttv = {TRIM_CHECK_MS / 1000, (TRIM_CHECK_MS % 1000) * 1000};
    if (trim_timer)
        event_add(trim_timer, &ttv);
    if (!pt_mgmt_start(ctl_base, file_conf, store, &mgmt_hooks, &errs) ||
        !pt_mgmt_metrics_start(ctl_base, file_conf, store, &mgmt_hooks, &errs) ||
        !pt_portal_start(ctl_base, file_conf, store, &mgmt_hooks, &errs)) {
        print_errors(&errs, stderr);
        pt_node_errors_clear(&errs);
        pt_workers_stop();
        pt_workers_join(5000);
        return 1;
    }
    uint64_t backup_gen = backup ? (uint64_t)json_integer_value(json_object_get(backup, "generation")) : 0;
    json_decref(backup);
    if (node_mode && !pt_cpsync_start(ctl_base, file_conf, &node_hooks, backup_gen)) {
        pt_workers_stop();
        pt_workers_join(5000);
        return 1;
    }
    int sigs[] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1};
    struct event *sev[4];
    for (int i = 0; i < 4; i++) {
        sev[i] = evsignal_new(ctl_base, sigs[i], on_signal, NULL);
        event_add(sev[i], NULL);
    }
    pthread_sigmask(SIG_SETMASK, &old_sigs, NULL); /* a signal that came during the start is handled now */
    char addrs[512] = "";
    size_t k = 0;
    for (int i = 0; i < g->conf->nlisten && k < sizeof(addrs) - 2; i++)
        k += (size_t)snprintf(addrs + k, sizeof(addrs) - k, "%s%s%s", i ? ", " : "",
                              g->conf->listen[i].address, g->conf->listen[i].ncerts ? " (tls)" : "");
    pt_info("portico %s started: %d worker%s, listening on %s", PACKAGE_VERSION, nworkers,
            nworkers == 1 ? "" : "s", addrs);

    event_base_dispatch(ctl_base);
    pt_cpsync_stop(); /* its fetches are cancelled: nothing more to apply */

    if (!pt_workers_join(5000)) {
        /* a worker is still running (a Lua call that will not end, say): it may yet write into its
           analytics chunk, span ring, metrics shard and generation, so none of them is freed.  What is
           the control thread's alone is saved, and the process ends here. */
        pt_warn("workers did not stop in time: saving the counters and the figures flushed so far, then "
                "exiting");
        flush_counters();
        pt_analytics_flush();
        pt_store_close(store);
        _exit(1);
    }
    pt_otel_export_stop(5000); /* OpenTelemetry (O): the last spans, within 5 s */
    for (int i = 0; i < 4; i++)
        event_free(sev[i]);
    if (drain_timer)
        event_free(drain_timer);
    pt_mgmt_stop();
    pt_portal_stop();
    pt_trace_store_clear();
    pt_mgmt_metrics_stop();
    if (quota_timer)
        event_free(quota_timer);
    if (redis_timer)
        event_free(redis_timer);
    if (trim_timer)
        event_free(trim_timer);
    if (expiry_timer)
        event_free(expiry_timer);
    pt_counters_redis_stop(); /* the workers are gone: nothing counts any more */
    flush_counters();
    pt_analytics_stop(); /* what the workers counted, before the store closes */
    event_base_free(ctl_base);
    pt_health_stop(); /* before the generation's backend states go */
    pt_gen_unref(current);
    pt_logsink_shutdown(PT_LOGSINK_CLOSE_MS); /* the loggers deliver what they hold */
    while (lsocks) {
        struct lsock *x = lsocks;
        lsocks = x->next;
        free(x->fds);
        free(x);
    }
    pt_plugin_unload();
    pt_conf_free(file_conf);
    pt_model_entities_forget();
    json_decref(node_entities);
    pt_store_close(store);
    pt_counters_free();
    pt_cache_node_free();
    pt_redis_shutdown();
    pt_metrics_free();
    pt_info("stopped");
    return 0;
}
