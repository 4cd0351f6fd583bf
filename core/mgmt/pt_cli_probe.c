/*
 * pt_cli_probe -- `portico probe [URL]`: the health check of a container
 * (Dockerfile's HEALTHCHECK, or an exec probe); it does not talk to the
 * management API.  GETs the gateway's status path -- the URL given (one
 * without a path gets /status-0123456789abcdef), else
 * http://127.0.0.1:8080/status-0123456789abcdef -- with one 3 s deadline
 * for all of it, and exits 0 on a 200, else 1 with one line saying why.
 * Never 2 (Docker reserves it), not even for a usage error.
 */
#include "http/pt_fetch.h"
#include "mgmt/pt_cli_int.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

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

int pt_cli_probe(int argc, char **argv, int at)
{
    const char *url = NULL, *ca_file = NULL;
    for (int i = 1; i < argc; i++) {
        if (i == at || (!strcmp(argv[i], "--") && i + 1 == at))
            continue;
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
    if (strlen(url) > 4096 || !pt_cli_http_parse_url(&c, url))
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
