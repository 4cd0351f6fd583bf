/*
 * pt_cli_cmds -- the commands that are not plain entity calls: api
 * import|export, report, user-password|user-invite, policy, portal publish,
 * subscription keys|regenerate|approve|..., apply and export.
 */
#include "conf/pt_import.h"
#include "http/pt_fetch.h"
#include "mgmt/pt_cli_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* A GET whose answer is a document for stdout (export): 0, or 1 after
   saying why. */
static int get_document(struct cli *c, const char *path)
{
    struct resp r = {0};
    if (!pt_cli_http_call(c, "GET", path, NULL, NULL, 0, &r))
        return 1;
    int rc = 0;
    if (r.status >= 300)
        rc = pt_cli_http_report(&r);
    else
        pt_cli_out_document(r.body, r.len);
    free(r.body);
    return rc;
}

/* ----------------------------------------------------- api import/export */

const char *const pt_cli_cmds_import_flags[] = {
    "--id", "--path", "--service-url", "--format", "--wsdl-service", "--wsdl-endpoint", "--workspace", NULL};

/* "  created ID" lines (or the warnings) of an import's answer, cleaned. */
static void print_names(FILE *f, const char *head, const json_t *list)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        fputs(head, f);
        pt_cli_out_text(f, json_string_value(v), MESSAGE_MAX);
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
    if (url && !pt_import_is_link(format)) {
        fprintf(stderr, "portico: %s definitions are not fetched from a URL; save the file and import it\n",
                format);
        return 1;
    } else {
        text = pt_cli_file_read(o->src, &len);
        if (!text) {
            fprintf(stderr, "portico: cannot read %s: %s\n", o->src, strerror(errno));
            return 1;
        }
        size_t sl = strlen(o->src);
        if (!format && sl > 6 && !strcmp(o->src + sl - 6, ".proto"))
            format = "grpc"; /* a .proto file is a gRPC API, whatever its first lines say */
        if (!format)
            format = pt_import_guess(text, len);
        if (!format) {
            fprintf(stderr,
                    "portico: the format of %s cannot be told from its content; name it with --format "
                    "(openapi, openapi+json, swagger-json, wsdl, odata, graphql, grpc)\n",
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
    char *path =
        pt_cli_entities_path(c, pt_cli_entities_find("api", NULL), (const char *const[]){o->id, NULL});
    int rc = 0;
    json_t *j = pt_cli_http_json(c, "PUT", path, body, &rc);
    free(body);
    free(path);
    if (!j)
        return rc;
    if (c->json)
        pt_cli_out_doc(c, j);
    else {
        json_t *imp = json_object_get(j, "import");
        printf("imported %s (%s) at /", o->id, format);
        pt_cli_out_text(stdout, json_string_value(json_object_get(j, "path")), MESSAGE_MAX);
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
    char *base = pt_cli_entities_path(c, pt_cli_entities_find("api", NULL), (const char *const[]){id, NULL});
    char *ef = pt_cli_http_enc(format ? format : "openapi"), *path = NULL;
    if (asprintf(&path, "%s?export=true&format=%s", base, ef) < 0)
        exit(1);
    free(base);
    free(ef);
    int rc = get_document(c, path);
    free(path);
    return rc;
}

/* portico api import|export */
int pt_cli_cmds_api(struct cli *c, const char *verb, const char *const *ids, int nids, const struct opts *o)
{
    pt_cli_entities_check_opts(o, "api", NULL, pt_cli_cmds_import_flags);
    if (nids != 1)
        pt_cli_out_usage_error("api %s takes %s", verb, !strcmp(verb, "import") ? "FILE or URL" : "one id");
    if (!strcmp(verb, "export"))
        return api_export(c, ids[0], pt_cli_opts_get(o, "--format"));
    struct import_opts io = {ids[0],
                             pt_cli_opts_get(o, "--id"),
                             pt_cli_opts_get(o, "--path"),
                             pt_cli_opts_get(o, "--service-url"),
                             pt_cli_opts_get(o, "--format"),
                             pt_cli_opts_get(o, "--wsdl-service"),
                             pt_cli_opts_get(o, "--wsdl-endpoint")};
    if (!io.id)
        pt_cli_out_usage_error("api import needs FILE or URL and --id ID");
    return api_import(c, &io);
}

/* --------------------------------------------------------------- reports */

const char *const pt_cli_cmds_report_flags[] = {"--since",        "--from", "--to",        "--interval",
                                                "--top",          "--api",  "--operation", "--product",
                                                "--subscription", "--user", "--workspace", NULL};

const struct report_kind pt_cli_cmds_report_kinds[] = {
    {"by-api", "byApi", "apiId"},
    {"by-operation", "byOperation", "operationId"},
    {"by-product", "byProduct", "productId"},
    {"by-subscription", "bySubscription", "subscriptionId"},
    {"by-user", "byUser", "userId"},
    {"by-time", "byTime", NULL},
    {"by-request", "byRequest", NULL},
};
const size_t pt_cli_cmds_nreport_kinds = PT_ARRAY_LEN(pt_cli_cmds_report_kinds);

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

int pt_cli_cmds_report(struct cli *c, const char *kind, const struct report_opts *o)
{
    int k = -1;
    for (int i = 0; i < (int)pt_cli_cmds_nreport_kinds; i++)
        if (kind && !strcmp(kind, pt_cli_cmds_report_kinds[i].cmd))
            k = i;
    if (k < 0)
        pt_cli_out_usage_error(
            "report takes by-api, by-operation, by-product, by-subscription, by-user, by-time or by-request");
    char from[64], flt[2048];
    if (o->from && strlen(o->from) >= sizeof(from))
        pt_cli_out_usage_error("--from takes a time such as 2026-01-02T03:04:05Z (got %zu bytes)",
                               strlen(o->from));
    if (o->from)
        snprintf(from, sizeof(from), "%s", o->from);
    else {
        long d = cli_duration(o->since ? o->since : "1h");
        if (d < 0)
            pt_cli_out_usage_error("--since takes a duration such as 30m, 1h, 7d (got '%s')", o->since);
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
        pt_cli_out_usage_error("the filter is too long");
    if (o->top) {
        char *end;
        errno = 0;
        long top = strtol(o->top, &end, 10);
        if (!*o->top || *end || errno || top < 1 || top > 1000000)
            pt_cli_out_usage_error("--top takes a whole number from 1 (got '%s')", o->top);
    }
    char interval[64] = "";
    if (!strcmp(pt_cli_cmds_report_kinds[k].name, "byTime")) {
        const char *iv = o->interval ? o->interval : "15m";
        long d = iv[0] == 'P' ? 0 : cli_duration(iv);
        if (iv[0] == 'P')
            snprintf(interval, sizeof(interval), "%s", iv);
        else if (d < 0)
            pt_cli_out_usage_error("--interval takes a duration such as 15m, 1h, 1d (got '%s')", iv);
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
    char *ef = pt_cli_http_enc(flt), *ei = pt_cli_http_enc(interval),
         *ew = pt_cli_http_enc(c->workspace ? c->workspace : ""), *path = NULL;
    if (asprintf(&path, "/management%s%s/reports/%s?$filter=%s%s%s%s%s", c->workspace ? "/workspaces/" : "",
                 ew, pt_cli_cmds_report_kinds[k].name, ef, interval[0] ? "&interval=" : "", ei,
                 o->top ? "&$top=" : "", o->top ? o->top : "") < 0)
        exit(1);
    free(ef);
    free(ei);
    free(ew);
    int rc = 0;
    json_t *j = pt_cli_http_json(c, "GET", path, NULL, &rc);
    free(path);
    if (!j)
        return rc;
    if (c->json) {
        pt_cli_out_doc(c, j);
        json_decref(j);
        return 0;
    }
    json_t *rows = json_array();
    size_t i;
    json_t *it;
    bool by_request = !strcmp(pt_cli_cmds_report_kinds[k].name, "byRequest");
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
            if (pt_cli_cmds_report_kinds[k].id) {
                json_object_set(r, "NAME", json_object_get(it, "name"));
                json_object_set(r, "ID", json_object_get(it, pt_cli_cmds_report_kinds[k].id));
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
    pt_cli_out_table(rows, by_request ? req_cols : pt_cli_cmds_report_kinds[k].id ? agg_cols : time_cols);
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
int pt_cli_cmds_user_portal(struct cli *c, const char *cmd, const char *user)
{
    bool invite = !strcmp(cmd, "user-invite");
    char *path =
        pt_cli_entities_path(c, pt_cli_entities_find("user", NULL), (const char *const[]){user, NULL});
    pt_cli_http_path_add(&path, invite ? "invitation" : "password", true);
    int rc = 0;
    if (invite) {
        rc = pt_cli_http_done(c, "POST", path, NULL, "sent the invitation mail to user ");
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
    json_t *j = pt_cli_http_json(c, "PUT", path, txt, &rc);
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

/* ------------------------------------------------------ policy documents */

const char *const pt_cli_cmds_policy_flags[] = {"--api", "--operation", "--product", "--workspace",
                                                "-f",    "--file",      NULL};

/* portico policy get|set|delete [--api A [--operation O] | --product P | --workspace W] [-f FILE] */
int pt_cli_cmds_policy(struct cli *c, const char *verb, int npos, const struct opts *o)
{
    pt_cli_entities_check_opts(o, "policy", NULL, pt_cli_cmds_policy_flags);
    const char *api = pt_cli_opts_get(o, "--api"), *op = pt_cli_opts_get(o, "--operation"),
               *product = pt_cli_opts_get(o, "--product");
    if (!verb || npos != 2)
        pt_cli_out_usage_error(
            "policy takes get, set or delete, and no id (the scope is --api, --product, --workspace)");
    if ((api && product) || (op && !api))
        pt_cli_out_usage_error("policy: one scope, --api A [--operation O], --product P or --workspace W");
    const char *file = pt_cli_opts_file(o);
    if (strcmp(verb, "set") && strcmp(verb, "get") && strcmp(verb, "delete"))
        pt_cli_out_usage_error("unknown policy command '%s'", verb);
    if (!strcmp(verb, "set") && !file)
        pt_cli_out_usage_error("policy set needs -f FILE (a policy document, YAML or JSON)");
    if (strcmp(verb, "set") && file)
        pt_cli_out_usage_error("policy %s takes no -f", verb);
    char *path;
    if (api || product) {
        const char *ids[3] = {api ? api : product, op, NULL};
        path = pt_cli_entities_path(c,
                                    op ? pt_cli_entities_find("operation", "api")
                                       : pt_cli_entities_find(api ? "api" : "product", NULL),
                                    ids);
    } else if (!(path = strdup("/management")))
        exit(1);
    else if (c->workspace) {
        pt_cli_http_path_add(&path, "workspaces", true);
        pt_cli_http_path_add(&path, c->workspace, false);
    }
    pt_cli_http_path_add(&path, "policies/policy", true);
    int rc = 0;
    if (!strcmp(verb, "set")) {
        json_t *doc = pt_cli_file_doc(file);
        char *txt = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(doc);
        rc = pt_cli_http_done(c, "PUT", path, txt, "set the policy document\n");
        free(txt);
    } else if (!strcmp(verb, "delete")) {
        json_t *j = pt_cli_http_json(c, "DELETE", path, NULL, &rc);
        json_decref(j);
        if (j && !c->json)
            printf("deleted the policy document\n");
    } else {
        /* a document, not a table: YAML for a reader on a terminal */
        struct cli view = *c;
        if (!view.json)
            view.json = view.yaml = true;
        json_t *j = pt_cli_http_json(c, "GET", path, NULL, &rc);
        if (j)
            pt_cli_out_doc(&view, j);
        json_decref(j);
    }
    free(path);
    return rc;
}

/* ------------------------------------------------------------ the portal */

/* portico portal publish [--comment TEXT]: the draft becomes the portal's pages. */
int pt_cli_cmds_portal_publish(struct cli *c, const struct opts *o)
{
    pt_cli_entities_check_opts(o, "portal", NULL, (const char *const[]){"--comment", NULL});
    pt_cli_entities_refuse_workspace(c, "portal");
    json_t *b = json_object();
    if (pt_cli_opts_get(o, "--comment"))
        pt_cli_entities_set_key(b, "comment",
                                pt_cli_entities_text("--comment", pt_cli_opts_get(o, "--comment")));
    return pt_cli_entities_show(c, "POST", "/management/portal/revisions", b);
}

/* --------------------------------------------------------- subscriptions */

/* portico subscription keys|regenerate|approve|reject|suspend|activate|cancel ID */
int pt_cli_cmds_subscription(struct cli *c, const char *verb, const char *id, const struct opts *o)
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
        pt_cli_out_usage_error("unknown subscription command '%s'", verb);
    pt_cli_entities_check_opts(o, "subscription", NULL,
                               state ? (const char *const[]){"--workspace", "--state-comment", NULL}
                               : !strcmp(verb, "regenerate")
                                   ? (const char *const[]){"--workspace", "--secondary", NULL}
                                   : (const char *const[]){"--workspace", NULL});
    const char *ids[2] = {id, NULL};
    char *base = pt_cli_entities_path(c, pt_cli_entities_find("subscription", NULL), ids);
    for (size_t i = 0; i < PT_ARRAY_LEN(states); i++)
        if (!strcmp(verb, states[i][0])) {
            json_t *b = json_pack("{s:s}", "state", states[i][1]);
            if (pt_cli_opts_get(o, "--state-comment"))
                pt_cli_entities_set_key(
                    b, "stateComment",
                    pt_cli_entities_text("--state-comment", pt_cli_opts_get(o, "--state-comment")));
            int rc = pt_cli_entities_show(c, "PATCH", base, b);
            free(base);
            return rc;
        }
    bool secondary = pt_cli_opts_get(o, "--secondary") != NULL;
    int rc = 0;
    char *path = strdup(base);
    if (path && !strcmp(verb, "regenerate")) {
        pt_cli_http_path_add(&path, secondary ? "regenerateSecondaryKey" : "regeneratePrimaryKey", true);
        json_t *j = pt_cli_http_json(c, "POST", path, NULL, &rc);
        json_decref(j);
        free(path);
        path = rc ? NULL : strdup(base);
    }
    if (path)
        pt_cli_http_path_add(&path, "listSecrets", true);
    json_t *j = path ? pt_cli_http_json(c, "POST", path, NULL, &rc) : NULL;
    free(path);
    free(base);
    if (!j)
        return rc ? rc : 1;
    if (c->json)
        pt_cli_out_doc(c, j);
    else
        for (int k = 0; k < 2; k++) {
            const char *name = k ? "secondaryKey" : "primaryKey";
            if (strcmp(verb, "keys") && k != secondary)
                continue;
            printf("%-12s  ", name);
            pt_cli_out_text(stdout, json_string_value(json_object_get(j, name)), MESSAGE_MAX);
            putchar('\n');
        }
    json_decref(j);
    return 0;
}

/* ------------------------------------------------------ apply and export */

/* portico apply -f FILE */
int pt_cli_cmds_apply(struct cli *c, const char *file)
{
    if (!file)
        pt_cli_out_usage_error("apply needs -f FILE");
    size_t len;
    char *text = pt_cli_file_read(file, &len);
    if (!text) {
        if (errno == EFBIG)
            fprintf(stderr, "portico: %s is larger than %u MiB, more than apply sends\n", file,
                    APPLY_MAX >> 20);
        else
            fprintf(stderr, "portico: cannot read %s: %s\n", file, strerror(errno));
        return 1;
    }
    struct resp r = {0};
    bool ok = pt_cli_http_call(c, "POST", "/management/apply", "application/yaml", text, len, &r);
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
        int rc = pt_cli_http_report(&r);
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
        pt_cli_out_doc(c, j);
    else {
        printf("applied %s:", file);
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(j, "applied"), k, v)
        {
            putchar(' ');
            pt_cli_out_text(stdout, k, 200);
            printf(" %lld", (long long)json_integer_value(v));
        }
        printf("\n");
    }
    json_decref(j);
    return 0;
}

/* portico export [--include-file]: YAML unless -o json asks for JSON. */
int pt_cli_cmds_export(struct cli *c, bool include_file)
{
    char ep[128];
    snprintf(ep, sizeof(ep), "/management/export?format=%s%s",
             c->asked && c->json && !c->yaml ? "json" : "yaml", include_file ? "&includeFile=true" : "");
    return get_document(c, ep);
}
