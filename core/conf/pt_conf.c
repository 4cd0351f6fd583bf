/*
 * pt_conf -- the configuration proper: the node's settings (listeners,
 * workers, limits, timeouts, upstream, logs, Lua, policies, fragments,
 * named values, management) as key tables, which are the configuration
 * reference in data form (each map the file may contain has one table
 * listing its keys, with their documentation), their custom readers, the
 * defaults, and loading.  The entity lists (APIs, products, users,
 * subscriptions...) are in pt_conf_entities.c; references between entities
 * are checked by pt_conf_check.c, and pt_schema.c is the engine that reads
 * a map with its table.
 */
#include "conf/pt_conf.h"
#include "conf/pt_content.h"
#include "conf/pt_idp.h"

#include "conf/pt_conf_int.h"

#include "base/pt_gwtoken.h"
#include "base/pt_log.h"
#include "base/pt_url.h"
#include "conf/pt_router.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static bool read_listen(struct pt_cfctx *cx, struct pt_node *n, void *field);
static bool read_tls_opts(struct pt_cfctx *cx, struct pt_node *n, void *field);

/* --------------------------------------------------------------- listeners */

int pt_conf_listen_backlog(int backlog)
{
    if (backlog > 0)
        return backlog;
    int n = 4096;
    FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
    if (f) {
        if (fscanf(f, "%d", &n) != 1 || n < 128)
            n = 4096;
        fclose(f);
    }
    return n;
}

bool pt_conf_parse_listen(const char *text, struct sockaddr_storage *sa, socklen_t *salen)
{
    char host[128];
    const char *port;
    bool bracketed = text[0] == '[';
    memset(sa, 0, sizeof(*sa));
    if (bracketed) {
        const char *e = strchr(text, ']');
        if (!e || e[1] != ':' || (size_t)(e - text - 1) >= sizeof(host))
            return false;
        memcpy(host, text + 1, (size_t)(e - text - 1));
        host[e - text - 1] = '\0';
        port = e + 2;
    } else {
        const char *c = strrchr(text, ':');
        if (!c || (size_t)(c - text) >= sizeof(host))
            return false;
        memcpy(host, text, (size_t)(c - text));
        host[c - text] = '\0';
        port = c + 1;
        if (strchr(host, ':'))
            return false; /* IPv6 needs brackets: "fe80::1:8080" is ambiguous */
    }
    long p = 0;
    if (!*port || strlen(port) > 5)
        return false;
    for (const char *c = port; *c; c++) {
        if (*c < '0' || *c > '9')
            return false;
        p = p * 10 + (*c - '0');
    }
    if (p < 1 || p > 65535)
        return false;
    struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
    if (!bracketed && (!host[0] || !strcmp(host, "*"))) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)p);
        s4->sin_addr.s_addr = htonl(INADDR_ANY);
        *salen = sizeof(*s4);
        return true;
    }
    if (!bracketed && inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)p);
        *salen = sizeof(*s4);
        return true;
    }
    if (bracketed && inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)p);
        *salen = sizeof(*s6);
        return true;
    }
    return false;
}

static const struct pt_cfkey cert_keys[] = {
    {"certificate", PT_CT_STR, offsetof(struct pt_cert_cf, certificate), PT_CF_REQUIRED | PT_CF_PATH,
     .doc = "PEM certificate chain."},
    {"key", PT_CT_STR, offsetof(struct pt_cert_cf, key), PT_CF_REQUIRED | PT_CF_PATH,
     .doc = "PEM private key of `certificate`."},
    {0},
};

/* For the reference: read_tls_opts checks these keys itself. */
static const struct pt_cfkey tls_keys[] = {
    {"minVersion", PT_CT_CUSTOM, 0, 0, .form = "`\"1.2\"` or `\"1.3\"`", .def = "`1.2`",
     .doc = "The oldest TLS version offered (`TLSv1.2` and `TLSv1.3` are accepted too); older versions "
            "are never offered."},
    {"ciphers", PT_CT_STR, 0, 0, .def = "forward-secret AEAD suites",
     .doc = "TLS 1.2 suites, as an OpenSSL cipher list. By default forward-secret AEAD suites only "
            "(`ECDHE-{ECDSA,RSA}-AES{128,256}-GCM`, `ECDHE-{ECDSA,RSA}-CHACHA20-POLY1305`: no static RSA "
            "key exchange, no CBC, no SHA-1). A list OpenSSL does not know is a configuration error."},
    {"ciphersuites", PT_CT_STR, 0, 0, .def = "OpenSSL's",
     .doc = "TLS 1.3 suites, as an OpenSSL ciphersuites list. A list OpenSSL does not know is a "
            "configuration error."},
    {0},
};

static const char *const client_cert_modes[] = {"none", "optional", "required", "verified", NULL};

/* For the reference: read_listen checks these keys itself, in this order. */
static const struct pt_cfkey listen_keys[] = {
    {"address", PT_CT_STR, 0, PT_CF_REQUIRED,
     .doc = "`HOST:PORT` to listen on: `127.0.0.1:8080`; `[::1]:8080` (IPv6 only: `IPV6_V6ONLY` is set); "
            "`:8080`, `*:8080` or `0.0.0.0:8080` for every IPv4 address. A listener without TLS may be "
            "written as this string alone. An address may appear once."},
    {"certificate", PT_CT_STR, 0, PT_CF_PATH,
     .doc = "PEM certificate chain: with `key`, a TLS listener (the same as a one-item `certificates`)."},
    {"key", PT_CT_STR, 0, PT_CF_PATH, .doc = "PEM private key of `certificate`."},
    {"certificates", PT_CT_CUSTOM, 0, PT_CF_LIST, .sub = cert_keys, .form = "list of maps",
     .doc = "TLS with several certificates, `{certificate, key}` each, chosen by the client's SNI (see "
            "[Listeners](#listeners)); instead of `certificate` + `key`."},
    {"clientCertificate", PT_CT_ENUM, 0, 0, .enums = client_cert_modes, .def = "`none`",
     .doc = "On a TLS listener, ask clients for a certificate. `optional` and `required` (the handshake "
            "fails without one) check it against `clientCa` but let one that does not verify connect: the "
            "`validate-client-certificate` policy decides; `verified` (needs `clientCa`) refuses a missing, "
            "expired or untrusted certificate at the handshake. See [Listeners](#listeners)."},
    {"clientCa", PT_CT_STR, 0, PT_CF_PATH,
     .doc = "CA bundle (PEM) that client certificates are checked against."},
    {"tls", PT_CT_CUSTOM, 0, 0, .sub = tls_keys, .form = "map",
     .doc = "TLS parameters of this listener (on a TLS listener)."},
    {"backlog", PT_CT_INT, 0, 0, 1, 65535, .def = "the system's maximum",
     .doc = "The listen queue: connections the system holds for the gateway before it accepts them; by "
            "default the system's maximum (`net.core.somaxconn`)."},
    {"protocols", PT_CT_CUSTOM, 0, 0, .form = "list of `http/1.1`, `h2`",
     .def = "`[http/1.1, h2]` with TLS, `[http/1.1]` without",
     .doc = "The HTTP versions served. On a TLS listener they are offered by ALPN (h2 first); on a plain "
            "listener `h2` is HTTP/2 with prior knowledge (h2c: a connection that starts with the HTTP/2 "
            "preface). Without `http/1.1` an HTTP/1 request is answered **505**. See [HTTP/2](http2.md)."},
    {0},
};

/* protocols: [http/1.1, h2] -- a non-empty list of known names */
static bool read_protocols(struct pt_cfctx *cx, struct pt_node *n, struct pt_listen_cf *l)
{
    if (n->kind != PT_N_SEQ || n->n == 0) {
        pt_node_error(cx->errs, n, "expected a non-empty list of protocols (http/1.1, h2)");
        return false;
    }
    l->http1 = l->h2 = false;
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        char *p;
        if (!pt_schema_str(cx, n->items[i], &p, false)) {
            ok = false;
        } else if (!strcmp(p, "http/1.1")) {
            l->http1 = true;
        } else if (!strcmp(p, "h2")) {
            l->h2 = true;
        } else {
            pt_node_error(cx->errs, n->items[i], "unknown protocol '%s' (expected http/1.1 or h2)", p);
            ok = false;
        }
    }
    return ok;
}

static bool read_certs(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_listen_cf *l = (struct pt_listen_cf *)((char *)field - offsetof(struct pt_listen_cf, certs));
    if (n->kind != PT_N_SEQ || n->n == 0) {
        pt_node_error(cx->errs, n, "expected a non-empty list of {certificate, key}");
        return false;
    }
    l->certs = pt_pool_calloc(cx->pool, sizeof(*l->certs) * (size_t)n->n);
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        l->certs[i].node = n->items[i];
        ok &= pt_schema_map(cx, n->items[i], cert_keys, &l->certs[i]);
    }
    l->ncerts = n->n;
    return ok;
}

static bool read_listen(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, listen));
    if (n->kind == PT_N_SCALAR && !n->null) {
        /* a single address is a one-item list */
        struct pt_node *seq = pt_pool_calloc(cx->pool, sizeof(*seq));
        *seq = *n;
        seq->kind = PT_N_SEQ;
        seq->items = pt_pool_alloc(cx->pool, sizeof(*seq->items));
        seq->items[0] = n;
        seq->n = 1;
        n = seq;
    }
    if (n->kind != PT_N_SEQ || n->n == 0) {
        pt_node_error(cx->errs, n, "expected a list of listen addresses");
        return false;
    }
    cf->listen = pt_pool_calloc(cx->pool, sizeof(*cf->listen) * (size_t)n->n);
    cf->nlisten = n->n;
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        struct pt_node *it = n->items[i];
        struct pt_listen_cf *l = &cf->listen[i];
        l->node = it;
        struct pt_node *addr = it;
        bool protocols_set = false;
        if (it->kind == PT_N_MAP) {
            /* certificate + key is shorthand for a one-entry certificates list */
            struct pt_node *c = pt_node_get(it, "certificate"), *k = pt_node_get(it, "key");
            struct pt_node *cs = pt_node_get(it, "certificates");
            if ((c || k) && cs) {
                pt_node_error(cx->errs, it, "use either certificate + key or certificates, not both");
                ok = false;
            } else if (c || k) {
                if (!c || !k) {
                    pt_node_error(cx->errs, it, "a TLS listener needs both certificate and key");
                    ok = false;
                } else {
                    l->certs = pt_pool_calloc(cx->pool, sizeof(*l->certs));
                    l->ncerts = 1;
                    l->certs[0].node = it;
                    char *cs1, *ks1;
                    if (pt_schema_str(cx, c, &cs1, false) && pt_schema_str(cx, k, &ks1, false)) {
                        l->certs[0].certificate = pt_schema_path(cx, cs1);
                        l->certs[0].key = pt_schema_path(cx, ks1);
                    } else
                        ok = false;
                }
            }
            /* check the remaining keys with the table (certificate/key handled above) */
            for (int j = 0; j < it->n; j++) {
                const char *kn = pt_node_key(it, j)->str;
                if (!strcmp(kn, "certificate") || !strcmp(kn, "key"))
                    continue;
                if (!strcmp(kn, "address")) {
                    ok &= pt_schema_str(cx, pt_node_val(it, j), &l->address, false);
                } else if (!strcmp(kn, "certificates")) {
                    ok &= read_certs(cx, pt_node_val(it, j), &l->certs);
                } else if (!strcmp(kn, "clientCertificate")) {
                    static const char *const modes[] = {"none", "optional", "required", "verified", NULL};
                    char *m;
                    int mi = -1;
                    if (pt_schema_str(cx, pt_node_val(it, j), &m, false))
                        for (int q = 0; modes[q]; q++)
                            if (!strcmp(modes[q], m))
                                mi = q;
                    if (mi < 0) {
                        pt_node_error(cx->errs, pt_node_val(it, j),
                                      "expected none, optional, required or verified");
                        ok = false;
                    } else
                        l->client_cert = mi;
                } else if (!strcmp(kn, "backlog")) {
                    int64_t bl;
                    if (pt_schema_int(cx, pt_node_val(it, j), 1, 65535, &bl))
                        l->backlog = (int)bl;
                    else
                        ok = false;
                } else if (!strcmp(kn, "tls")) {
                    ok &= read_tls_opts(cx, pt_node_val(it, j), &l->tls);
                } else if (!strcmp(kn, "protocols")) {
                    ok &= read_protocols(cx, pt_node_val(it, j), l);
                    protocols_set = true;
                } else if (!strcmp(kn, "clientCa")) {
                    char *ca;
                    if (pt_schema_str(cx, pt_node_val(it, j), &ca, false))
                        l->client_ca = pt_schema_path(cx, ca);
                    else
                        ok = false;
                } else {
                    pt_node_error(
                        cx->errs, pt_node_key(it, j),
                        "unknown key '%s' (expected one of: address, certificate, key, certificates, "
                        "clientCertificate, clientCa, tls, backlog, protocols)",
                        kn);
                    ok = false;
                }
            }
            addr = pt_node_get(it, "address");
            if (!addr) {
                pt_node_error(cx->errs, it, "missing required key 'address'");
                ok = false;
                continue;
            }
        } else if (!pt_schema_str(cx, it, &l->address, false)) {
            ok = false;
            continue;
        }
        if (!protocols_set) {
            l->http1 = true;
            l->h2 = l->ncerts > 0;
        }
        if (!l->address)
            continue;
        if (!pt_conf_parse_listen(l->address, &l->sa, &l->salen)) {
            pt_node_error(cx->errs, addr,
                          "'%s' is not a listen address (expected HOST:PORT, [IPV6]:PORT or :PORT)",
                          l->address);
            ok = false;
            continue;
        }
        for (int j = 0; j < i; j++)
            if (cf->listen[j].salen == l->salen && !memcmp(&cf->listen[j].sa, &l->sa, l->salen)) {
                pt_node_error(cx->errs, addr, "address '%s' is listed twice", l->address);
                ok = false;
            }
    }
    return ok;
}

static bool read_forwarded(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"X-Forwarded-For", PT_FWD_XFF},
                 {"X-Forwarded-Proto", PT_FWD_XFP},
                 {"X-Forwarded-Host", PT_FWD_XFH},
                 {"Forwarded", PT_FWD_FORWARDED}};
    unsigned *bits = field;
    if (n->kind != PT_N_SEQ) {
        pt_node_error(cx->errs, n, "expected a list of header names");
        return false;
    }
    *bits = 0;
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        char *s;
        if (!pt_schema_str(cx, n->items[i], &s, false)) {
            ok = false;
            continue;
        }
        size_t k = 0;
        while (k < PT_ARRAY_LEN(names) && strcasecmp(names[k].name, s))
            k++;
        if (k == PT_ARRAY_LEN(names)) {
            pt_node_error(
                cx->errs, n->items[i],
                "'%s' is not one of X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, Forwarded", s);
            ok = false;
        } else
            *bits |= names[k].bit;
    }
    return ok;
}

static bool read_header_name(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    char *s;
    if (!pt_schema_str(cx, n, &s, true))
        return false;
    if (*s && !pt_str_is_token(pt_str_c(s))) {
        pt_node_error(cx->errs, n, "'%s' is not a valid header name", s);
        return false;
    }
    *(char **)field = s;
    return true;
}

static bool read_workers(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    int *w = field;
    if (n->kind == PT_N_SCALAR && !strcmp(n->str, "auto")) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        *w = c > 0 ? (int)PT_MIN(c, 256) : 1;
        return true;
    }
    int64_t v;
    if (!pt_schema_int(cx, n, 1, 256, &v))
        return false;
    *w = (int)v;
    return true;
}

/* -------------------------------------------------------------- top level */

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};

static bool read_underscores(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    static const char *const modes[] = {"reject", "drop", "allow", NULL};
    char *s;
    if (!pt_schema_str(cx, n, &s, false))
        return false;
    for (int i = 0; modes[i]; i++)
        if (!strcmp(modes[i], s)) {
            *(int *)field = i;
            return true;
        }
    pt_node_error(cx->errs, n, "expected reject, drop or allow");
    return false;
}

static const struct pt_cfkey limits_h2_keys[] = {
    {"maxConcurrentStreams", PT_CT_INT, offsetof(struct pt_conf, limits.h2.max_streams), 0, 1, 10000,
     .def = "`100`",
     .doc = "Streams (requests) open at once on one HTTP/2 connection, sent to the client in SETTINGS; a "
            "stream over it is refused (`REFUSED_STREAM`) while the client has not acknowledged them, and "
            "the connection closed (`GOAWAY`) after."},
    {"headerListSize", PT_CT_SIZE, offsetof(struct pt_conf, limits.h2.header_list), 0, 1024, 1 << 20,
     .def = "as headerSize",
     .doc = "The decoded header list of one request (names, values and 32 bytes per field); over it the "
            "stream is answered **431**."},
    {"hpackTableSize", PT_CT_SIZE, offsetof(struct pt_conf, limits.h2.hpack_table), 0, 0, 1 << 16,
     .def = "`4096`", .doc = "The HPACK dynamic table the client may make the gateway keep."},
    {"initialWindow", PT_CT_SIZE, offsetof(struct pt_conf, limits.h2.initial_window), 0, 1024,
     (1LL << 31) - 1, .def = "`65535`",
     .doc = "The flow-control window of each stream: the request body bytes the gateway takes from a client "
            "before the backend has read them (a stream's upload buffer)."},
    {"maxFrameSize", PT_CT_SIZE, offsetof(struct pt_conf, limits.h2.max_frame), 0, 16384, (1 << 24) - 1,
     .def = "`16k`", .doc = "The largest frame the client may send."},
    {"resetsPerSecond", PT_CT_INT, offsetof(struct pt_conf, limits.h2.resets_per_second), 0, 1, 1000000,
     .def = "`100`",
     .doc = "Streams a client may reset (`RST_STREAM`) in one second; past it the connection gets `GOAWAY` "
            "`ENHANCE_YOUR_CALM` and is closed (the rapid reset attack, CVE-2023-44487)."},
    {0},
};

static const struct pt_cfkey limits_keys[] = {
    {"bufferSize", PT_CT_SIZE, offsetof(struct pt_conf, limits.buffer_size), 0, 1024, 1LL << 30,
     .def = "`2m`",
     .doc = "The longest body read into memory when a policy or expression needs it (over it: **413** for "
            "a request, **502** for a response)."},
    {"headerSize", PT_CT_SIZE, offsetof(struct pt_conf, limits.header_size), 0, 1024, 1 << 20, .def = "`32k`",
     .doc = "The request line plus all header lines; over it: **431**, connection closed."},
    {"headerLine", PT_CT_SIZE, offsetof(struct pt_conf, limits.header_line), 0, 256, 1 << 20, .def = "`8k`",
     .doc = "One header line (name, colon, value; without its CRLF); over it: **431**, connection "
            "closed."},
    {"headerUnderscores", PT_CT_CUSTOM, offsetof(struct pt_conf, limits.header_underscores), 0,
     .fn = read_underscores, .form = "one of `reject`, `drop`, `allow`", .def = "`reject`",
     .doc = "Header names with `_` (`X_Foo`, which some backends read as `X-Foo`): `reject` (**400**, "
            "connection closed), `drop` (the field is removed before anything reads it, subscription key "
            "names included), `allow`."},
    {"headerCount", PT_CT_INT, offsetof(struct pt_conf, limits.header_count), 0, 1, 10000, .def = "`100`",
     .doc = "The number of header fields; over it: **431**."},
    {"uriLength", PT_CT_SIZE, offsetof(struct pt_conf, limits.uri_length), 0, 64, 1 << 20, .def = "`8k`",
     .doc = "The request line (the target plus method and version, 32 bytes allowed for those); over it: "
            "**414**."},
    {"requestMemory", PT_CT_SIZE, offsetof(struct pt_conf, limits.request_memory), 0, 64 * 1024, 1LL << 40,
     .def = "16 × `bufferSize`, at least `64m`",
     .doc = "The memory one request's arena may hold: heads, headers, variables and what policies build "
            "(bodies streamed or buffered for expressions are not counted). It is checked between two "
            "statements and before the response goes out: a request past it, or whose allocation the "
            "system refused, is answered **500** with the reason `OutOfMemory`, and its on-error section "
            "does not run. A statement may pass it by what it allocates itself before the check."},
    {"bodySize", PT_CT_SIZE, offsetof(struct pt_conf, limits.body_size), 0, 0, INT64_MAX, .def = "`1g`",
     .doc = "The request body: a larger `Content-Length` gets **413** before any of the body is read; a "
            "chunked body is cut with 413 when it grows past it. An API's `bodySize` may set a smaller "
            "one."},
    {"requestsPerConnection", PT_CT_INT, offsetof(struct pt_conf, limits.requests_per_connection), 0, 1,
     100000000, .def = "`1000`",
     .doc = "Requests served on one connection; the response to the last one carries `Connection: "
            "close`."},
    {"connectionsPerWorker", PT_CT_INT, offsetof(struct pt_conf, limits.connections_per_worker), 0, 1,
     1000000, .def = "`10000`",
     .doc = "Open client connections per worker; at the limit the worker stops accepting until one of its "
            "connections closes (new connections wait in the listen queue)."},
    {"connections", PT_CT_INT, offsetof(struct pt_conf, limits.connections), 0, 0, 100000000, .def = "`0`",
     .doc = "Open client connections on the node, all workers together; `0` is no cap. At the cap every "
            "worker stops accepting (new connections wait in the listen queue, as with "
            "`connectionsPerWorker`) until the count is below it again; two workers taking a connection in "
            "the same instant may pass it by one each. Pauses are counted "
            "(`portico_connections_limit_waits_total`); reaching the cap is logged once, and so is being a "
            "tenth (at least two connections; with a cap of 1 or 2, all) below it again."},
    {"memory", PT_CT_SIZE, offsetof(struct pt_conf, limits.memory), 0, 0, 1LL << 50, .def = "`0` (off)",
     .doc = "The node's memory high-water mark: the bytes held for client connections and their requests "
            "(what was read from or is not yet written to their sockets and their backend connections, "
            "bodies read for a policy, request arenas), summed over the workers every 50 ms "
            "(`portico_memory_buffered_bytes`, 0 while the mark is off). Past it, new requests are "
            "answered **503** `Overloaded` with `Retry-After: 1` and the connection is closed, while "
            "requests already admitted finish; the liveness path still answers 200 and the readiness path "
            "answers 503 so that load balancers send traffic elsewhere. Requests are admitted again once "
            "the figure is below 90 % of the mark and the node has been overloaded for at least a second. "
            "Entering and leaving are logged once each; `0` is off. Sizing: a streamed exchange holds "
            "about 0.5 MiB at most (256 KiB towards the client plus one read from the backend); one whose "
            "bodies a policy reads holds up to 3 × `bufferSize` plus its arena (`requestMemory`). Set the "
            "mark to that per-connection figure times the connections you expect at once, not below it: "
            "a mark below 3 × `bufferSize` + `requestMemory` is warned about at start and reload. Not "
            "counted, each with its own bound: the kernel's socket buffers, OpenSSL's buffers (about 34 "
            "KiB per direction per TLS connection), the allocator's slack around buffered bytes, bodies of "
            "`send-request` and mirror calls, log and analytics queues, the response cache "
            "(`cache.memory`) and Lua states (`lua.memory` per worker)."},
    {"counterKeys", PT_CT_INT, offsetof(struct pt_conf, counter_keys), 0, 64, 100000000, .def = "`1000000`",
     .doc = "The most rate-limit, quota and concurrency keys kept at once on a node; see [Access "
            "restrictions](#access-restrictions-the-client-address-and-counters)."},
    {"http2", PT_CT_MAP, 0, 0, .sub = limits_h2_keys,
     .doc = "HTTP/2 client connections (see [HTTP/2](http2.md))."},
    {0},
};

static const struct pt_cfkey timeouts_keys[] = {
    {"header", PT_CT_MS, offsetof(struct pt_conf, timeouts.header), 0, 1, .def = "`10s`",
     .doc = "The whole request head must arrive within this time, counted from its first byte (from the "
            "connection's start for the first request): otherwise **408** and close. A client trickling one "
            "byte at a time is cut all the same; a connection that sent nothing is closed silently."},
    {"bodyIdle", PT_CT_MS, offsetof(struct pt_conf, timeouts.body_idle), 0, 1, .def = "`30s`",
     .doc = "The longest pause between two reads of a request body: **408** (while no response has "
            "started) and close."},
    {"body", PT_CT_MS, offsetof(struct pt_conf, timeouts.body), 0, 0, .def = "off",
     .doc = "The whole request, from its head to the last byte of its body: **408** once passed, however "
            "the body trickles (`bodyIdle` bounds each pause only); `0` is off."},
    {"keepalive", PT_CT_MS, offsetof(struct pt_conf, timeouts.keepalive), 0, 1, .def = "`75s`",
     .doc = "An idle keep-alive connection is closed after this time."},
    {"send", PT_CT_MS, offsetof(struct pt_conf, timeouts.send), 0, 1, .def = "`60s`",
     .doc = "A client that does not take what we send for this long is dropped."},
    {"shutdown", PT_CT_MS, offsetof(struct pt_conf, timeouts.shutdown), 0, 0, .def = "`30s`",
     .doc = "The longest `SIGTERM` waits for in-flight requests."},
    {0},
};

/* tls: {minVersion: "1.2" | "1.3", ciphers: "...", ciphersuites: "..."} */
static bool read_tls_opts(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_tls_cf *t = field;
    t->node = n;
    if (n->kind != PT_N_MAP) {
        pt_node_error(cx->errs, n, "expected a map {minVersion, ciphers, ciphersuites}");
        return false;
    }
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        const char *k = pt_node_key(n, i)->str;
        struct pt_node *v = pt_node_val(n, i);
        char *str = NULL;
        if (!pt_schema_str(cx, v, &str, false)) {
            ok = false;
            continue;
        }
        if (!strcmp(k, "minVersion")) {
            if (!strcmp(str, "1.2") || !strcmp(str, "TLSv1.2"))
                t->min_version = 12;
            else if (!strcmp(str, "1.3") || !strcmp(str, "TLSv1.3"))
                t->min_version = 13;
            else {
                pt_node_error(cx->errs, v,
                              "minVersion must be \"1.2\" or \"1.3\" (older versions are not offered)");
                ok = false;
            }
        } else if (!strcmp(k, "ciphers"))
            t->ciphers = str;
        else if (!strcmp(k, "ciphersuites"))
            t->ciphersuites = str;
        else {
            pt_node_error(cx->errs, pt_node_key(n, i),
                          "unknown key '%s' (expected one of: minVersion, ciphers, ciphersuites)", k);
            ok = false;
        }
    }
    return ok;
}

static const struct pt_cfkey upstream_keys[] = {
    {"connectTimeout", PT_CT_MS, offsetof(struct pt_conf, upstream.connect_timeout), 0, 1, .def = "`5s`",
     .doc = "Connecting to a backend, and the TLS handshake for https backends: **504** once passed."},
    {"readTimeout", PT_CT_MS, offsetof(struct pt_conf, upstream.read_timeout), 0, 1, .def = "`300s`",
     .doc = "The longest pause while a backend answers, counted from the moment the whole request was "
            "sent: **504** (before the response head) or a cut connection (after it). The same bound "
            "applies while a backend does not take a request body, and to idle WebSocket tunnels."},
    {"idleTimeout", PT_CT_MS, offsetof(struct pt_conf, upstream.idle_timeout), 0, 1, .def = "`60s`",
     .doc = "A pooled connection idle this long is closed."},
    {"maxIdleConnections", PT_CT_INT, offsetof(struct pt_conf, upstream.max_idle), 0, 0, 100000,
     .def = "`64`", .doc = "Pooled connections kept per backend address per worker; `0` disables pooling."},
    {"http2MaxStreams", PT_CT_INT, offsetof(struct pt_conf, upstream.h2_max_streams), 0, 1, 1000,
     .def = "`100`",
     .doc =
         "The most streams the gateway opens at once on one HTTP/2 backend connection (`forward-request` "
         "`http-version` `2` or `2or1`), and fewer when the backend's `SETTINGS_MAX_CONCURRENT_STREAMS` says "
         "so; more concurrent calls open more connections."},
    {"maxPools", PT_CT_INT, offsetof(struct pt_conf, upstream.max_pools), 0, 1, 1000000, .def = "`4096`",
     .doc = "Connection pools (one per backend address, TLS identity and proxy) a worker keeps. Targets "
            "computed per request (`set-backend-service` or `proxy` with expressions) each add one; past "
            "this many, the pools without a connection are dropped, and when none is, calls to a new "
            "target are made without keeping their connection."},
    {"caFile", PT_CT_STR, offsetof(struct pt_conf, upstream.ca_file), PT_CF_PATH, .def = "the system store",
     .doc = "PEM bundle of the CAs trusted for https backends."},
    {"verify", PT_CT_BOOL, offsetof(struct pt_conf, upstream.verify), 0, .def = "`true`",
     .doc = "For https backends, verify the certificate chain and that it names the host of `serviceUrl` "
            "(DNS name or IP address)."},
    {"tls", PT_CT_CUSTOM, offsetof(struct pt_conf, upstream.tls), 0, .fn = read_tls_opts, .sub = tls_keys,
     .form = "map", .doc = "TLS parameters towards https backends, as on listeners (same defaults)."},
    {"sideCallsToPrivateAddresses", PT_CT_BOOL, offsetof(struct pt_conf, upstream.side_private), 0,
     .def = "`true`",
     .doc = "`false`: `send-request` and `send-one-way-request` refuse to connect to loopback, private "
            "(RFC 1918, fc00::/7), link-local (169.254/16, fe80::/10, cloud metadata services) and other "
            "non-public addresses, checked after DNS (BackendConnectionFailure). Calls through a `proxy` are "
            "not checked (the proxy resolves the target). See [routing.md](routing.md#security)."},
    {"forwardedHeaders", PT_CT_CUSTOM, offsetof(struct pt_conf, upstream.forwarded), 0, .fn = read_forwarded,
     .form = "list of header names", .def = "all four",
     .doc = "Which of `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`, `Forwarded` the gateway "
            "sets (see [What the gateway does](#what-the-gateway-does-with-every-request)); `[]` sets none. "
            "A header not in the list passes through as the client sent it."},
    {"requestIdHeader", PT_CT_CUSTOM, offsetof(struct pt_conf, upstream.request_id_header), 0,
     .fn = read_header_name, .form = "header name", .def = "`X-Request-Id`",
     .doc = "The header that carries the request id: read from the client (when valid), sent to the "
            "backend, and returned to the client in every response (proxied, produced by policies, or the "
            "gateway's own errors) unless the response carries that header already; `\"\"` sends none (ids "
            "are then always generated, for the access log)."},
    {0},
};

static const struct pt_cfkey log_keys[] = {
    {"level", PT_CT_ENUM, offsetof(struct pt_conf, log.level), 0, .enums = log_levels, .def = "`info`",
     .doc = "The least severe messages the error log writes."},
    {"error", PT_CT_STR, offsetof(struct pt_conf, log.error), 0, .def = "`stderr`",
     .doc = "The error log: `stderr`, `stdout` or a file (appended)."},
    {"access", PT_CT_STR, offsetof(struct pt_conf, log.access), 0, .def = "`stdout`",
     .doc = "The access log, one JSON object per request (see [Logs](#logs)): `stdout`, `stderr`, `off`, "
            "a file (appended), or `logger:ID` to send each line to one of the `loggers` "
            "([logging.md](logging.md))."},
    {"accessBuffer", PT_CT_SIZE, offsetof(struct pt_conf, log.access_buffer), 0, 0, 16 << 20, .def = "`32k`",
     .doc = "Bytes of access lines a worker buffers before writing; `0` writes each line at once."},
    {"accessFlush", PT_CT_MS, offsetof(struct pt_conf, log.access_flush), 0, 1, .def = "`1s`",
     .doc = "The longest time a buffered access line waits."},
    {0},
};

/* The `trace` policy's severities (APIM's names), least severe first: PT_TRACE_SEV_*. */
const char *const pt_conf_trace_severities[] = {"verbose", "information", "error", NULL};

static const struct pt_cfkey tracing_keys[] = {
    {"enabled", PT_CT_BOOL, offsetof(struct pt_conf, tracing.enabled), 0, .def = "`true`",
     .doc = "Honours `Apim-Debug-Authorization` and `Ocp-Apim-Trace`; when false both are removed from "
            "requests unread. See [tracing.md](tracing.md)."},
    {"maxTraces", PT_CT_INT, offsetof(struct pt_conf, tracing.max_traces), 0, 1, 100000, .def = "`100`",
     .doc = "Traces kept in memory for `listTrace`; a new one pushes out the oldest."},
    {"maxTraceSize", PT_CT_SIZE, offsetof(struct pt_conf, tracing.max_trace_size), 0, 4096, 64LL << 20,
     .def = "`1m`",
     .doc = "The most one trace may take; past it, later steps are left out and the trace says "
            "`\"truncated\": true`."},
    {"ttl", PT_CT_MS, offsetof(struct pt_conf, tracing.ttl), 0, 1000, 86400000, .def = "`1h`",
     .doc = "How long a trace is kept, and how long an `Ocp-Apim-Trace-Location` URL works."},
    {"verbosity", PT_CT_ENUM, offsetof(struct pt_conf, tracing.verbosity), 0,
     .enums = pt_conf_trace_severities, .def = "`information`",
     .doc = "`trace` policy entries of this severity or above also go to the error log (at `info`)."},
    {"locationUrl", PT_CT_STR, offsetof(struct pt_conf, tracing.location_url), 0,
     .def = "`http(s)://` + `management.listen`",
     .doc = "The management API's base URL as clients reach it (`https://apim.example.com:8443`): "
            "`Ocp-Apim-Trace-Location` is this plus `/management/gateways/managed/traces/ID?...`."},
    {0},
};

static bool read_policy_path(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_lua_limits *l =
        (struct pt_lua_limits *)((char *)field - offsetof(struct pt_lua_limits, policy_path));
    int cnt = n->kind == PT_N_SEQ ? n->n : 1;
    l->policy_path = pt_pool_calloc(cx->pool, sizeof(char *) * (size_t)cnt);
    l->npolicy_path = 0;
    for (int i = 0; i < cnt; i++) {
        char *s;
        if (!pt_schema_str(cx, n->kind == PT_N_SEQ ? n->items[i] : n, &s, false))
            return false;
        l->policy_path[l->npolicy_path++] = pt_schema_path(cx, s);
    }
    return true;
}

static const struct pt_cfkey lua_keys[] = {
    {"timeout", PT_CT_MS, offsetof(struct pt_conf, lua.timeout), 0, 1, 60000, .def = "`100ms`",
     .doc = "The longest run of one expression or Lua policy call."},
    {"memory", PT_CT_SIZE, offsetof(struct pt_conf, lua.memory), 0, 1 << 20, 1LL << 34, .def = "`64m`",
     .doc = "How much a worker's Lua state may allocate for scripts."},
    {"patternLimit", PT_CT_SIZE, offsetof(struct pt_conf, lua.pattern_subject), 0, 1, 1LL << 30,
     .def = "`256k`", .doc = "The longest string the pattern functions accept."},
    {"policyPath", PT_CT_CUSTOM, offsetof(struct pt_conf, lua.policy_path), 0, .fn = read_policy_path,
     .form = "path or list of paths", .def = "the shipped `policies/`",
     .doc = "Folders holding Lua policies (`*.lua`, `*/policy.lua`)."},
    {0},
};

/* policyFragments: [{id, description, value: [statements]}] (statements checked with policies) */
static bool read_fragments(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    if (n->kind != PT_N_SEQ) {
        pt_node_error(cx->errs, n, "expected a list of fragments");
        return false;
    }
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        struct pt_node *f = n->items[i];
        if (f->kind != PT_N_MAP) {
            pt_node_error(cx->errs, f, "a fragment is a map {id, value: [statements]}");
            ok = false;
            continue;
        }
        struct pt_node *id = pt_node_get(f, "id");
        if (!id || id->kind != PT_N_SCALAR || id->null || !pt_conf_entities_valid_id(id->str)) {
            pt_node_error(cx->errs, id ? id : f, "a fragment needs an id of letters, digits and -_.~");
            ok = false;
        }
        for (int k = 0; k < f->n; k++) {
            const char *key = pt_node_key(f, k)->str;
            if (strcmp(key, "id") && strcmp(key, "description") && strcmp(key, "value") &&
                strcmp(key, "policies") && strcmp(key, "workspace")) {
                pt_node_error(cx->errs, pt_node_key(f, k),
                              "unknown key '%s' (expected one of: id, description, value, workspace)", key);
                ok = false;
            }
        }
        if (!pt_node_get(f, "value") && !pt_node_get(f, "policies")) {
            pt_node_error(cx->errs, f, "a fragment needs 'value': its list of statements");
            ok = false;
        }
        for (int j = 0; j < i && id; j++) {
            struct pt_node *o = pt_node_get(n->items[j], "id");
            if (o && o->kind == PT_N_SCALAR && !strcmp(o->str, id->str)) {
                pt_node_error(cx->errs, id, "fragment id '%s' is used twice", id->str);
                ok = false;
            }
        }
    }
    *(struct pt_node **)field = n;
    return ok;
}

/* namedValues: [{id, displayName, value, secret}] */
static bool read_named_values(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    if (n->kind != PT_N_SEQ) {
        pt_node_error(cx->errs, n, "expected a list of named values");
        return false;
    }
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        struct pt_node *v = n->items[i];
        if (v->kind != PT_N_MAP) {
            pt_node_error(cx->errs, v, "a named value is a map {id, value}");
            ok = false;
            continue;
        }
        struct pt_node *id = pt_node_get(v, "id"), *val = pt_node_get(v, "value");
        if (!id || id->kind != PT_N_SCALAR || id->null || !pt_conf_entities_valid_id(id->str)) {
            pt_node_error(cx->errs, id ? id : v, "a named value needs an id of letters, digits and -_.~");
            ok = false;
        }
        if (!val || val->kind != PT_N_SCALAR) {
            pt_node_error(cx->errs, val ? val : v, "a named value needs a 'value' (a string)");
            ok = false;
        } else if (strlen(val->str) > 4096) {
            pt_node_error(cx->errs, val, "a named value holds at most 4096 characters");
            ok = false;
        }
        for (int k = 0; k < v->n; k++) {
            const char *key = pt_node_key(v, k)->str;
            if (strcmp(key, "id") && strcmp(key, "displayName") && strcmp(key, "value") &&
                strcmp(key, "secret") && strcmp(key, "tags") && strcmp(key, "workspace")) {
                pt_node_error(
                    cx->errs, pt_node_key(v, k),
                    "unknown key '%s' (expected one of: id, displayName, value, secret, tags, workspace)",
                    key);
                ok = false;
            }
        }
    }
    *(struct pt_node **)field = n;
    return ok;
}

/* For the reference: read_fragments checks these keys itself. */
static const struct pt_cfkey fragment_keys[] = {
    {"id", PT_CT_STR, 0, PT_CF_REQUIRED,
     .doc = "Unique; letters, digits and `-_.~`. Documents include the fragment with `include-fragment "
            "{fragment-id: ID}`."},
    {"description", PT_CT_STR, 0, 0, .doc = "Free text."},
    {"value", PT_CT_CUSTOM, 0, PT_CF_REQUIRED, .form = "list of statements",
     .doc = "The statements; a fragment may not contain `base` or include another fragment."},
    {"policies", PT_CT_CUSTOM, 0, 0, .form = "list of statements",
     .doc = "Read in place of `value` when `value` is absent."},
    {"workspace", PT_CT_STR, 0, 0, .def = "service level",
     .doc = "The workspace the fragment belongs to: only that workspace's documents may include it "
            "(service documents include service fragments)."},
    {0},
};

/* For the reference: read_named_values checks these keys itself. */
static const struct pt_cfkey named_value_keys[] = {
    {"id", PT_CT_STR, 0, PT_CF_REQUIRED,
     .doc = "Unique; letters, digits and `-_.~`. `{{id}}` in any attribute value is replaced by the "
            "value; braces around text that cannot be an id (`{{ a b }}`, `{{\"a\":1}}`) stay as written, "
            "and an unknown id is an error that lists the named values of the scope, the closest first."},
    {"displayName", PT_CT_STR, 0, 0, .def = "the id",
     .doc = "`{{displayName}}` is replaced by the value too."},
    {"value", PT_CT_STR, 0, PT_CF_REQUIRED | PT_CF_EMPTY_OK, .doc = "The value, at most 4096 characters."},
    {"secret", PT_CT_BOOL, 0, 0, .def = "`false`",
     .doc = "A secret value is encrypted at rest in the store (see `secretKey`) and left out of the "
            "management API's reads (`listValue` gives it)."},
    {"tags", PT_CT_CUSTOM, 0, 0, .form = "list of strings", .doc = "Labels, as in APIM."},
    {"workspace", PT_CT_STR, 0, 0, .def = "service level",
     .doc = "The workspace the named value belongs to: a document sees only the named values of its own "
            "scope (a workspace's, or the service's)."},
    {0},
};

/* A listener of the control thread's own (management, metrics): its text and its address. */
static bool read_own_listen(struct pt_cfctx *cx, struct pt_node *n, char **listen,
                            struct sockaddr_storage *sa, socklen_t *salen)
{
    char *s;
    if (!pt_schema_str(cx, n, &s, false))
        return false;
    if (!pt_conf_parse_listen(s, sa, salen)) {
        pt_node_error(cx->errs, n, "'%s' is not a listen address (expected HOST:PORT)", s);
        return false;
    }
    *listen = s;
    return true;
}

static bool read_mgmt_listen(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_mgmt_cf *m = (struct pt_mgmt_cf *)((char *)field - offsetof(struct pt_mgmt_cf, listen));
    return read_own_listen(cx, n, &m->listen, &m->sa, &m->salen);
}

bool pt_conf_parse_cidr(const char *s, struct pt_cidr *out)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->addr) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, buf, out->addr) == 1)
        out->family = AF_INET6;
    else
        return false;
    int max = out->family == AF_INET ? 32 : 128;
    out->bits = max;
    if (slash) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || b < 0 || b > max)
            return false;
        out->bits = (int)b;
    }
    return true;
}

bool pt_conf_cidr_has(const struct pt_cidr *c, const char *ip)
{
    unsigned char a[16];
    int fam = strchr(ip, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(fam, ip, a) != 1)
        return false;
    if (fam == AF_INET6 && c->family == AF_INET && !memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12)) {
        memmove(a, a + 12, 4); /* ::ffff:192.0.2.1 is 192.0.2.1 */
        fam = AF_INET;
    }
    if (fam != c->family)
        return false;
    int full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(a, c->addr, (size_t)full))
        return false;
    if (!rest)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (c->addr[full] & mask);
}

static bool read_trusted(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, trusted));
    if (n->kind != PT_N_SEQ) {
        pt_node_error(cx->errs, n, "expected a list of addresses or ranges (192.0.2.0/24, 2001:db8::/32)");
        return false;
    }
    cf->trusted = pt_pool_calloc(cx->pool, sizeof(*cf->trusted) * (size_t)(n->n ? n->n : 1));
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        struct pt_node *it = n->items[i];
        if (it->kind != PT_N_SCALAR || !pt_conf_parse_cidr(it->str, &cf->trusted[cf->ntrusted])) {
            pt_node_error(cx->errs, it,
                          "'%s' is not an address or a range such as 192.0.2.0/24 or 2001:db8::/32",
                          it->kind == PT_N_SCALAR ? it->str : "(not a scalar)");
            ok = false;
            continue;
        }
        cf->ntrusted++;
    }
    return ok;
}

/* A duration that may be long (days): into uint64_t seconds, at least 1 minute. */
static bool read_long_duration(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    uint64_t ms;
    if (n->kind != PT_N_SCALAR || !pt_schema_parse_duration_ms(n->str, &ms) || ms < 60000 ||
        ms > 3650ULL * 86400000) {
        pt_node_error(cx->errs, n, "expected a duration from 1m to 3650d such as 90d, 48h or 30m, found '%s'",
                      n->kind == PT_N_SCALAR ? n->str : "(not a scalar)");
        return false;
    }
    *(uint64_t *)field = ms / 1000;
    return true;
}

static const struct pt_cfkey analytics_rollup_keys[] = {
    {"hourAfter", PT_CT_CUSTOM, offsetof(struct pt_conf, analytics.hour_after), 0, .fn = read_long_duration,
     .form = "duration (`48h`, `2d`)", .def = "`48h`",
     .doc = "Minute buckets older than this are rolled up into hour buckets."},
    {"dayAfter", PT_CT_CUSTOM, offsetof(struct pt_conf, analytics.day_after), 0, .fn = read_long_duration,
     .form = "duration (`30d`)", .def = "`30d`",
     .doc = "Hour buckets older than this are rolled up into day buckets."},
    {0},
};

static const struct pt_cfkey analytics_request_keys[] = {
    {"maxCount", PT_CT_INT, offsetof(struct pt_conf, analytics.requests_max), 0, 0, 100000000,
     .def = "`100000`",
     .doc = "The most request records kept for the `byRequest` report (the oldest go first); `0` keeps "
            "none."},
    {"maxAge", PT_CT_CUSTOM, offsetof(struct pt_conf, analytics.requests_max_age), 0,
     .fn = read_long_duration, .form = "duration (`7d`, `12h`)", .def = "`7d`",
     .doc = "Request records older than this are deleted."},
    {"maxPerSecond", PT_CT_INT, offsetof(struct pt_conf, analytics.requests_rate), 0, 1, 1000000,
     .def = "`1000`",
     .doc = "The most request records kept per second for the node (shared among the workers); past it, "
            "a second's further requests count in every report but `byRequest`, which then shows a "
            "sample. Bounds what the store writes under load."},
    {0},
};

static const struct pt_cfkey analytics_keys[] = {
    {"enabled", PT_CT_BOOL, offsetof(struct pt_conf, analytics.enabled), 0, .def = "`true`",
     .doc = "Records every request for the usage reports (`/management/reports/...`); `false` records "
            "nothing."},
    {"flushInterval", PT_CT_MS, offsetof(struct pt_conf, analytics.flush_interval), 0, 100, 60000,
     .def = "`1s`",
     .doc = "How often the control thread writes what the workers counted to the store; a report lags "
            "by at most this plus 1 s, and a crash loses at most that much."},
    {"retention", PT_CT_CUSTOM, offsetof(struct pt_conf, analytics.retention), 0, .fn = read_long_duration,
     .form = "duration (`90d`)", .def = "`90d`", .doc = "Aggregates older than this are deleted."},
    {"rollup", PT_CT_MAP, 0, 0, .sub = analytics_rollup_keys,
     .doc = "When minute buckets become hour buckets and hour buckets day buckets."},
    {"requests", PT_CT_MAP, 0, 0, .sub = analytics_request_keys,
     .doc = "The request records behind the `byRequest` report: a ring bounded by count and age."},
    {0},
};

static const struct pt_cfkey mgmt_keys[] = {
    {"listen", PT_CT_CUSTOM, offsetof(struct pt_conf, mgmt.listen), 0, .fn = read_mgmt_listen,
     .form = "`HOST:PORT`", .def = "none",
     .doc = "The management API's listener; without it there is no management API."},
    {"adminToken", PT_CT_STR, offsetof(struct pt_conf, mgmt.admin_token), 0,
     .doc = "The administrator's bearer token; `$PORTICO_ADMIN_TOKEN` wins over it."},
    {"maxBodySize", PT_CT_SIZE, offsetof(struct pt_conf, mgmt.max_body), 0, 1024, 1LL << 30, .def = "`16m`",
     .doc =
         "The largest request body the management API reads (an API definition imported inline is at most 4 "
         "MB of its own; JSON escaping makes the body larger)."},
    {"importPrivateLinks", PT_CT_BOOL, offsetof(struct pt_conf, mgmt.import_private), 0, .def = "`false`",
     .doc = "Lets `-link` imports ([import.md](import.md)) fetch from loopback, private and link-local "
            "addresses; "
            "refused by default, so that a definition URL given to the management API cannot reach the "
            "gateway's own network (a cloud's metadata service, an internal admin page)."},
    {"certificate", PT_CT_STR, offsetof(struct pt_conf, mgmt.cert.certificate), PT_CF_PATH,
     .doc = "PEM certificate chain: with `key`, the listener speaks HTTPS."},
    {"key", PT_CT_STR, offsetof(struct pt_conf, mgmt.cert.key), PT_CF_PATH,
     .doc = "PEM private key of `certificate`."},
    {"tls", PT_CT_CUSTOM, offsetof(struct pt_conf, mgmt.tls.tls), 0, .fn = read_tls_opts, .sub = tls_keys,
     .form = "map", .doc = "TLS parameters of the HTTPS listener, as on listeners."},
    {0},
};

/* ----------------------------------------------------------------- portal */

static bool read_portal_listen(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_portal_cf *p = (struct pt_portal_cf *)((char *)field - offsetof(struct pt_portal_cf, listen));
    return read_own_listen(cx, n, &p->listen, &p->sa, &p->salen);
}

/* A duration into uint64_t milliseconds, from 1s to 365d (sessions, lockouts, token lifetimes). */
static bool read_ms64(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    uint64_t ms;
    if (n->kind != PT_N_SCALAR || !pt_schema_parse_duration_ms(n->str, &ms) || ms < 1000 ||
        ms > 365ULL * 86400000) {
        pt_node_error(cx->errs, n, "expected a duration from 1s to 365d such as 30m, 12h or 2d, found '%s'",
                      n->kind == PT_N_SCALAR ? n->str : "(not a scalar)");
        return false;
    }
    *(uint64_t *)field = ms;
    return true;
}

static bool read_max_failures(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    int64_t v;
    if (!pt_schema_int(cx, n, 1, 1000, &v))
        return false;
    *(int *)field = (int)v;
    return true;
}

/* An absolute http(s) URL without query or fragment, kept without its trailing '/'. */
static bool read_base_url(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    char *s;
    if (!pt_schema_str(cx, n, &s, false))
        return false;
    bool ok = (!strncmp(s, "http://", 7) || !strncmp(s, "https://", 8)) && strlen(s) < 1024 &&
              !strpbrk(s, "?# \t\r\n\"'<>\\");
    if (ok && strchr(s, '/')[2] == '\0')
        ok = false; /* no host */
    if (!ok) {
        pt_node_error(cx->errs, n, "'%s' is not a base URL (http:// or https://, a host, no query)", s);
        return false;
    }
    size_t len = strlen(s);
    while (len > 8 && s[len - 1] == '/')
        s[--len] = '\0';
    *(char **)field = s;
    return true;
}

/* A folder relative to the configuration file (custom: its default depends on `data`). */
static bool read_outbox(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    char *s;
    if (!pt_schema_str(cx, n, &s, false))
        return false;
    *(char **)field = pt_schema_path(cx, s);
    return true;
}

static bool read_mail_url(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    char *s;
    if (!pt_schema_str(cx, n, &s, false))
        return false;
    if ((strncmp(s, "smtp://", 7) && strncmp(s, "smtps://", 8)) || strpbrk(s, " \t\r\n")) {
        pt_node_error(cx->errs, n, "'%s' is not an SMTP URL (smtp://HOST:PORT or smtps://HOST:PORT)", s);
        return false;
    }
    *(char **)field = s;
    return true;
}

/* site, pages, templates: kept as JSON with their node; their content is checked by the portal's content
   code (pt_portal_content), which names the node's position. */
static bool read_portal_json(struct pt_cfctx *cx, struct pt_node *n, void *field, bool list)
{
    if (n->kind != (list ? PT_N_SEQ : PT_N_MAP)) {
        pt_node_error(cx->errs, n, "expected a %s, found %s", list ? "list" : "map", pt_node_kind_name(n));
        return false;
    }
    json_t *j = pt_node_to_json(n);
    if (!j) {
        pt_node_error(cx->errs, n, "cannot read this %s", list ? "list" : "map");
        return false;
    }
    json_t **jf = field;
    json_decref(*jf);
    *jf = j;
    return true;
}

static bool read_portal_site(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_portal_cf *p = (struct pt_portal_cf *)((char *)field - offsetof(struct pt_portal_cf, site));
    if (!read_portal_json(cx, n, field, false))
        return false;
    p->site_node = n; /* only a node of the right kind: the content's checks read it */
    return true;
}

static bool read_portal_pages(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_portal_cf *p = (struct pt_portal_cf *)((char *)field - offsetof(struct pt_portal_cf, pages));
    if (!read_portal_json(cx, n, field, true))
        return false;
    p->pages_node = n; /* only a node of the right kind: the content's checks read it */
    return true;
}

static bool read_portal_templates(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_portal_cf *p =
        (struct pt_portal_cf *)((char *)field - offsetof(struct pt_portal_cf, templates));
    if (!read_portal_json(cx, n, field, true))
        return false;
    p->templates_node = n; /* only a node of the right kind: the content's checks read it */
    return true;
}

static bool read_portal_idps(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_portal_cf *p =
        (struct pt_portal_cf *)((char *)field - offsetof(struct pt_portal_cf, identity_providers));
    if (!read_portal_json(cx, n, field, true))
        return false;
    p->identity_providers_node = n; /* checked by conf/pt_idp.c */
    return true;
}

static const struct pt_cfkey portal_session_keys[] = {
    {"idleTimeout", PT_CT_CUSTOM, offsetof(struct pt_conf, portal.idle_timeout_ms), 0, .fn = read_ms64,
     .form = "duration, 1s–365d", .def = "`30m`",
     .doc = "A session unused this long ends; the visitor signs in again."},
    {"absoluteTimeout", PT_CT_CUSTOM, offsetof(struct pt_conf, portal.absolute_timeout_ms), 0,
     .fn = read_ms64, .form = "duration, 1s–365d", .def = "`12h`",
     .doc = "A session ends this long after its sign-in, used or not."},
    {0},
};

static const struct pt_cfkey portal_signin_keys[] = {
    {"maxFailures", PT_CT_CUSTOM, offsetof(struct pt_conf, portal.max_failures), 0, .fn = read_max_failures,
     .form = "integer, 1–1000", .def = "`5`",
     .doc = "Failed sign-ins in a row for one account (its email, known or not) before it is locked for "
            "`lockout`: a failure adds up when it comes within `lockout` of the one before, and a successful "
            "sign-in (or a password reset by mail) starts the count again. Per client address the limit is "
            "4 × `maxFailures`, counted the same way but not reset by a success (people behind one address "
            "share it). A wrong current password on the profile counts as a failure; sign-ups are limited to "
            "4 × `maxFailures` per client address within `lockout` too."},
    {"lockout", PT_CT_CUSTOM, offsetof(struct pt_conf, portal.lockout_ms), 0, .fn = read_ms64,
     .form = "duration, 1s–365d", .def = "`15m`",
     .doc = "How long a locked account or client address is refused (the same answer whatever the "
            "password), and how far apart failures may be and still add up."},
    {0},
};

static const struct pt_cfkey portal_token_keys[] = {
    {"confirm", PT_CT_CUSTOM, offsetof(struct pt_conf, portal.confirm_ttl_ms), 0, .fn = read_ms64,
     .form = "duration, 1s–365d", .def = "`2d`",
     .doc = "How long the link of a sign-up confirmation or an invitation mail is valid."},
    {"reset", PT_CT_CUSTOM, offsetof(struct pt_conf, portal.reset_ttl_ms), 0, .fn = read_ms64,
     .form = "duration, 1s–365d", .def = "`1h`",
     .doc = "How long the link of a password reset mail is valid."},
    {0},
};

static const struct pt_cfkey portal_media_keys[] = {
    {"maxSize", PT_CT_SIZE, offsetof(struct pt_conf, portal.max_media), 0, 1024, 64 << 20, .def = "`1m`",
     .doc = "The largest media file (logo, favicon, images of pages) an administrator may upload."},
    {0},
};

static const struct pt_cfkey portal_smtp_keys[] = {
    {"url", PT_CT_CUSTOM, offsetof(struct pt_conf, portal.mail.smtp_url), PT_CF_REQUIRED, .fn = read_mail_url,
     .form = "`smtp://HOST:PORT` or `smtps://HOST:PORT`",
     .doc = "The SMTP server; `smtps://` is TLS from the start."},
    {"username", PT_CT_STR, offsetof(struct pt_conf, portal.mail.smtp_username), 0, .def = "none",
     .doc = "The user name for SMTP AUTH; without it no AUTH is sent."},
    {"password", PT_CT_STR, offsetof(struct pt_conf, portal.mail.smtp_password), PT_CF_EMPTY_OK,
     .doc = "The password for SMTP AUTH."},
    {"starttls", PT_CT_BOOL, offsetof(struct pt_conf, portal.mail.starttls), 0, .def = "`true`",
     .doc = "With `smtp://`: upgrade to TLS with STARTTLS before AUTH and the message, or fail."},
    {"caFile", PT_CT_STR, offsetof(struct pt_conf, portal.mail.smtp_ca_file), PT_CF_PATH,
     .def = "the system store", .doc = "PEM bundle of the CAs trusted for the SMTP server's certificate."},
    {0},
};

static const struct pt_cfkey portal_mail_keys[] = {
    {"from", PT_CT_STR, offsetof(struct pt_conf, portal.mail.from), 0, .def = "`Portico <portal@localhost>`",
     .doc = "The sender of the portal's mails."},
    {"outbox", PT_CT_CUSTOM, offsetof(struct pt_conf, portal.mail.outbox), 0, .fn = read_outbox,
     .form = "a folder", .def = "`outbox` in the `data` folder",
     .doc = "Without `smtp`: the folder each message is written to as one `.eml` file."},
    {"smtp", PT_CT_MAP, 0, 0, .sub = portal_smtp_keys,
     .doc = "Send by SMTP instead of writing to the outbox folder."},
    {0},
};

static const struct pt_cfkey portal_keys[] = {
    {"listen", PT_CT_CUSTOM, offsetof(struct pt_conf, portal.listen), 0, .fn = read_portal_listen,
     .form = "`HOST:PORT`", .def = "none",
     .doc = "The developer portal's listener; without it there is no portal."},
    {"certificate", PT_CT_STR, offsetof(struct pt_conf, portal.cert.certificate), PT_CF_PATH,
     .doc = "PEM certificate chain: with `key`, the portal speaks HTTPS (and its cookies are `Secure`)."},
    {"key", PT_CT_STR, offsetof(struct pt_conf, portal.cert.key), PT_CF_PATH,
     .doc = "PEM private key of `certificate`."},
    {"tls", PT_CT_CUSTOM, offsetof(struct pt_conf, portal.tls.tls), 0, .fn = read_tls_opts, .sub = tls_keys,
     .form = "map", .doc = "TLS parameters of the HTTPS listener, as on listeners."},
    {"publicUrl", PT_CT_CUSTOM, offsetof(struct pt_conf, portal.public_url), 0, .fn = read_base_url,
     .form = "http(s) URL", .def = "`http(s)://` + `listen`",
     .doc = "The portal's address as visitors reach it: the links in its mails start with it. When it "
            "starts with `https://` (a proxy in front ends TLS), the portal treats visitors as on HTTPS "
            "even without its own certificate: `Secure` cookies, the `__Host-` session cookie and HSTS."},
    {"gatewayUrl", PT_CT_CUSTOM, offsetof(struct pt_conf, portal.gateway_url), 0, .fn = read_base_url,
     .form = "http(s) URL", .def = "the first gateway listener",
     .doc = "The gateway's address: shown in the code samples and where the console relays calls (a "
            "listener on `0.0.0.0` or `::` is reached on loopback)."},
    {"themeDir", PT_CT_STR, offsetof(struct pt_conf, portal.theme_dir), PT_CF_PATH, .def = "none",
     .doc = "A folder whose files (`portal.css`, `portal.js`, templates) replace the shipped ones of the "
            "same name, without rebuilding; see [portal.md](portal.md#theming)."},
    {"sessions", PT_CT_MAP, 0, 0, .sub = portal_session_keys, .doc = "How long sign-in sessions last."},
    {"signin", PT_CT_MAP, 0, 0, .sub = portal_signin_keys,
     .doc = "Sign-in throttling: failures per account and per address before a lockout."},
    {"tokens", PT_CT_MAP, 0, 0, .sub = portal_token_keys,
     .doc = "Lifetimes of the single-use links sent by mail."},
    {"media", PT_CT_MAP, 0, 0, .sub = portal_media_keys, .doc = "Limits on uploaded media."},
    {"mail", PT_CT_MAP, 0, 0, .sub = portal_mail_keys,
     .doc = "How mail is sent (confirmation, password reset, invitations, subscription states): an outbox "
            "folder or SMTP."},
    {"site", PT_CT_CUSTOM, offsetof(struct pt_conf, portal.site), 0, .fn = read_portal_site, .form = "map",
     .def = "the built-in site",
     .doc = "The site's settings (title, logo, colors, fonts, customCss, home, terms, signupEnabled, "
            "requireSignin); see [portal.md](portal.md#customization)."},
    {"pages", PT_CT_CUSTOM, offsetof(struct pt_conf, portal.pages), PT_CF_LIST, .fn = read_portal_pages,
     .form = "list of maps", .def = "`[]`",
     .doc = "Markdown pages (`{id, title, markdown, groups, menuOrder}`) served at `/pages/ID`."},
    {"templates", PT_CT_CUSTOM, offsetof(struct pt_conf, portal.templates), PT_CF_LIST,
     .fn = read_portal_templates, .form = "list of maps", .def = "the built-in templates",
     .doc = "Mail templates (`{id, subject, body}`) replacing the built-in ones."},
    {"identityProviders", PT_CT_CUSTOM, offsetof(struct pt_conf, portal.identity_providers), PT_CF_LIST,
     .fn = read_portal_idps, .form = "list of maps", .def = "`[]`",
     .doc = "OpenID Connect providers to sign in with (`{id, displayName, issuer, clientId, clientSecret, "
            "scopes, allowSignup, allowInsecure}`); see [portal.md](portal.md#identity-providers)."},
    {0},
};

/* -------------------------------------------------------------- telemetry */

/* An OTLP/HTTP URL: http or https, no query; an empty path gets `suffix`. */
static bool read_otlp_url(struct pt_cfctx *cx, struct pt_node *n, char **field, const char *suffix)
{
    char *s;
    if (!pt_schema_str(cx, n, &s, false))
        return false;
    struct pt_url u;
    const char *bad = pt_url_parse(cx->pool, s, &u);
    if (bad) {
        pt_node_error(cx->errs, n, "'%s' is not an OTLP/HTTP URL: %s", s, bad);
        return false;
    }
    if (!*u.path) {
        size_t k = strlen(s);
        while (k && s[k - 1] == '/')
            k--;
        char *t = pt_pool_alloc(cx->pool, k + strlen(suffix) + 1);
        memcpy(t, s, k);
        strcpy(t + k, suffix);
        s = t;
    }
    *field = s;
    return true;
}

static bool read_otlp_endpoint(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    return read_otlp_url(cx, n, field, "/v1/traces");
}

static bool read_otlp_metrics_endpoint(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    return read_otlp_url(cx, n, field, "/v1/metrics");
}

/* headers: {Name: value}: token names, values without control characters. */
static bool read_otlp_headers(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_strlist *l = field;
    if (n->kind != PT_N_MAP) {
        pt_node_error(cx->errs, n, "expected a map of header names to values");
        return false;
    }
    l->v = pt_pool_calloc(cx->pool, sizeof(char *) * (size_t)(2 * n->n + 1));
    l->n = 0;
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        struct pt_node *k = pt_node_key(n, i);
        char *v;
        if (!pt_str_is_token(pt_str_c(k->str))) {
            pt_node_error(cx->errs, k, "'%s' is not a valid header name", k->str);
            ok = false;
            continue;
        }
        static const char *const ours[] = {
            "host", "content-length", "content-type", "transfer-encoding", "connection", "expect", NULL};
        for (int j = 0; ours[j]; j++)
            if (!strcasecmp(k->str, ours[j])) {
                pt_node_error(cx->errs, k, "'%s' is set by the exporter itself", k->str);
                ok = false;
            }
        if (!pt_schema_str(cx, pt_node_val(n, i), &v, true)) {
            ok = false;
            continue;
        }
        for (const char *c = v; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) {
                pt_node_error(cx->errs, pt_node_val(n, i), "a header value may not hold control characters");
                ok = false;
                break;
            }
        l->v[l->n++] = k->str;
        l->v[l->n++] = v;
    }
    return ok;
}

static bool read_ratio(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    char *end = NULL;
    double r = n->kind == PT_N_SCALAR && !n->null ? strtod(n->str, &end) : -1;
    if (!end || end == n->str || *end || !(r >= 0 && r <= 1)) {
        pt_node_error(cx->errs, n, "expected a number from 0 to 1");
        return false;
    }
    *(double *)field = r;
    return true;
}

static const char *const otlp_protocols[] = {"http/json", "http/protobuf", NULL};

static const struct pt_cfkey sampler_keys[] = {
    {"ratio", PT_CT_CUSTOM, offsetof(struct pt_conf, telemetry.ratio), 0, .fn = read_ratio,
     .form = "number, 0–1", .def = "`1`",
     .doc = "The share of new traces that are sampled, decided from the trace id so that every node "
            "decides the same for one trace; `0` samples none (trace contexts still go to backends)."},
    {"parentBased", PT_CT_BOOL, offsetof(struct pt_conf, telemetry.parent_based), 0, .def = "`true`",
     .doc = "A request whose valid `traceparent` carries a sampling decision follows it (sampled flag "
            "set: sampled; not set: not sampled); `ratio` decides only for traces that start here."},
    {0},
};

static const struct pt_cfkey telemetry_keys[] = {
    {"enabled", PT_CT_BOOL, offsetof(struct pt_conf, telemetry.enabled), 0, .def = "`true`",
     .doc = "Tracing is on when the section is present, unless this is `false`."},
    {"propagate", PT_CT_BOOL, offsetof(struct pt_conf, telemetry.propagate), 0, .def = "`true`",
     .doc = "Send a `traceparent` naming the gateway's backend-call span (and the client's valid "
            "`tracestate`) with every backend request, whether the request is sampled or not."},
    {"endpoint", PT_CT_CUSTOM, offsetof(struct pt_conf, telemetry.endpoint), 0, .fn = read_otlp_endpoint,
     .form = "http(s) URL", .def = "none",
     .doc = "The collector's OTLP/HTTP traces URL (`http://127.0.0.1:4318/v1/traces`; a URL without a "
            "path gets `/v1/traces`); without it no span is recorded or exported."},
    {"protocol", PT_CT_ENUM, offsetof(struct pt_conf, telemetry.protocol), 0, .enums = otlp_protocols,
     .def = "`http/protobuf`", .doc = "The body of export requests: OTLP protobuf or OTLP JSON."},
    {"headers", PT_CT_CUSTOM, offsetof(struct pt_conf, telemetry.headers), 0, .fn = read_otlp_headers,
     .form = "map of header names to values", .def = "none",
     .doc = "Headers sent with every export request (an API key, `Authorization`)."},
    {"serviceName", PT_CT_STR, offsetof(struct pt_conf, telemetry.service_name), 0, .def = "`portico`",
     .doc = "The resource attribute `service.name` of the spans (`service.version` and `host.name` are "
            "set too)."},
    {"timeout", PT_CT_MS, offsetof(struct pt_conf, telemetry.timeout), 0, 1, 600000, .def = "`10s`",
     .doc = "The longest one export request may take, connection included."},
    {"batchSize", PT_CT_INT, offsetof(struct pt_conf, telemetry.batch_size), 0, 1, 65536, .def = "`512`",
     .doc = "Spans per export request at most; a full batch is sent without waiting for `exportInterval`."},
    {"exportInterval", PT_CT_MS, offsetof(struct pt_conf, telemetry.export_interval), 0, 10, 3600000,
     .def = "`1s`", .doc = "The longest a finished span waits before it is sent."},
    {"queueSize", PT_CT_INT, offsetof(struct pt_conf, telemetry.queue_size), 0, 16, 1 << 20, .def = "`2048`",
     .doc = "Finished spans each worker holds for the exporter (rounded up to a power of two); when full, "
            "new spans are dropped and counted, never waited for. Changing it needs a restart."},
    {"sampler", PT_CT_MAP, 0, 0, .sub = sampler_keys, .doc = "Which requests are recorded."},
    {"metricsEndpoint", PT_CT_CUSTOM, offsetof(struct pt_conf, telemetry.metrics_endpoint), 0,
     .fn = read_otlp_metrics_endpoint, .form = "http(s) URL",
     .def = "`endpoint` with `/v1/traces` replaced by `/v1/metrics`",
     .doc = "Where OTLP metrics are posted, when the gateway has metrics to export that way."},
    {"metricsInterval", PT_CT_MS, offsetof(struct pt_conf, telemetry.metrics_interval), 0, 1000, 86400000,
     .def = "`60s`", .doc = "How often OTLP metrics are posted."},
    {0},
};

static bool read_metrics_listen(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_metrics_cf *m =
        (struct pt_metrics_cf *)((char *)field - offsetof(struct pt_metrics_cf, listen));
    return read_own_listen(cx, n, &m->listen, &m->sa, &m->salen);
}

static bool read_metrics_path(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    char *s;
    if (!pt_schema_str(cx, n, &s, false))
        return false;
    bool ok = s[0] == '/' && strncmp(s, "/management/", 12) && strcmp(s, "/management") && strlen(s) < 256;
    for (const char *p = s; ok && *p; p++)
        ok = (unsigned char)*p > 0x20 && *p != '?' && *p != '#' && *p != 0x7f;
    if (!ok) {
        pt_node_error(cx->errs, n,
                      "'%s' is not a path for /metrics (it starts with '/', holds no '?', '#' or "
                      "spaces and is not under /management/)",
                      s);
        return false;
    }
    *(char **)field = s;
    return true;
}

static const char *const metrics_auth_modes[] = {"token", "none", NULL};

static const struct pt_cfkey metrics_keys[] = {
    {"enabled", PT_CT_BOOL, offsetof(struct pt_conf, metrics.enabled), 0, .def = "`true`",
     .doc = "Count requests and serve the Prometheus endpoint; with `false` nothing is counted and the path "
            "is not served."},
    {"path", PT_CT_CUSTOM, offsetof(struct pt_conf, metrics.path), 0, .fn = read_metrics_path,
     .form = "a path", .def = "`/metrics`", .doc = "Where the Prometheus text is served."},
    {"auth", PT_CT_ENUM, offsetof(struct pt_conf, metrics.auth), 0, .enums = metrics_auth_modes,
     .def = "`token`",
     .doc = "`token`: a management bearer token of the administrator or a reader is required (**401** "
            "without one, **403** for workspace roles); `none`: anyone who reaches the listener may read."},
    {"listen", PT_CT_CUSTOM, offsetof(struct pt_conf, metrics.listen), 0, .fn = read_metrics_listen,
     .form = "`HOST:PORT`", .def = "the management listener",
     .doc = "A listener of its own for the metrics (plain HTTP, served by the control thread); opened at "
            "start only."},
    {"maxSeries", PT_CT_INT, offsetof(struct pt_conf, metrics.max_series), 0, 1, 100000, .def = "`500`",
     .doc = "Label sets kept per metric family; past it new ones are counted in a series whose labels are "
            "all `other`. Read at start only."},
    {"gatewayId", PT_CT_STR, offsetof(struct pt_conf, metrics.gateway_id), 0, .def = "the host name",
     .doc = "The value of emit-metric's built-in dimension `Gateway ID`."},
    {"location", PT_CT_STR, offsetof(struct pt_conf, metrics.location), 0, .def = "`local`",
     .doc = "The value of emit-metric's built-in dimension `Location`."},
    {0},
};

/* ------------------------------------------------------------------ cache */

/* "%41" -> "A" in the URL's user and password; false on a broken escape. */
static char *redis_url_part(struct pt_cfctx *cx, const char *p, size_t n)
{
    char *out = pt_pool_alloc(cx->pool, n + 1);
    ssize_t k = pt_url_pct_decode((pt_str){p, n}, out, false);
    if (k < 0 || memchr(out, '\0', (size_t)k))
        return NULL;
    out[k] = '\0';
    return out;
}

/* redis://[[user]:password@]host[:port][/db] or rediss://... */
static bool read_redis_url(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_cache_cf *c = (struct pt_cache_cf *)((char *)field - offsetof(struct pt_cache_cf, redis));
    char *url;
    if (!pt_schema_str(cx, n, &url, false))
        return false;
    const char *why = NULL, *p;
    if (!strncmp(url, "redis://", 8))
        p = url + 8;
    else if (!strncmp(url, "rediss://", 9)) {
        p = url + 9;
        c->tls = true;
    } else {
        pt_node_error(cx->errs, n,
                      "'%s' is not a Redis URL (redis://[user:password@]host:port/db, or rediss:// "
                      "for TLS)",
                      url);
        return false;
    }
    const char *end = p + strcspn(p, "/?#");
    const char *at = memchr(p, '@', (size_t)(end - p));
    char *user = NULL, *pass = NULL; /* `username` and `password` keys win, in whatever order */
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (colon > p && !(user = redis_url_part(cx, p, (size_t)(colon - p))))
                why = "a broken %-escape in the user name";
            if (!(pass = redis_url_part(cx, colon + 1, (size_t)(at - colon - 1))))
                why = "a broken %-escape in the password";
        } else if (at > p && !(pass = redis_url_part(cx, p, (size_t)(at - p))))
            why = "a broken %-escape in the password";
        p = at + 1;
    }
    if (!c->username)
        c->username = user;
    if (!c->password)
        c->password = pass;
    const char *hs = p, *he, *port = NULL;
    if (*p == '[') {
        he = memchr(p, ']', (size_t)(end - p));
        if (!he)
            why = "an IPv6 address without its ']'";
        else {
            hs = p + 1;
            if (he + 1 < end) {
                if (he[1] != ':')
                    why = "text after the IPv6 address";
                port = he + 2;
            }
        }
    } else {
        he = memchr(p, ':', (size_t)(end - p));
        if (he)
            port = he + 1;
        else
            he = end;
    }
    if (!why && he == hs)
        why = "no host";
    c->port = 6379;
    if (!why && port) {
        long v = 0;
        const char *q = port;
        while (q < end && *q >= '0' && *q <= '9' && v <= 65535)
            v = v * 10 + (*q++ - '0');
        if (q != end || q == port || v < 1 || v > 65535)
            why = "a port that is not 1-65535";
        c->port = (int)v;
    }
    if (!why) {
        c->host = pt_pool_alloc(cx->pool, (size_t)(he - hs) + 1);
        memcpy(c->host, hs, (size_t)(he - hs));
        c->host[he - hs] = '\0';
        if (!pt_url_host_valid(pt_str_c(c->host)) && !strchr(c->host, ':'))
            why = "a host name that is not valid";
    }
    c->db = 0;
    if (!why && *end == '/' && end[1]) {
        long v = 0;
        const char *q = end + 1;
        while (*q >= '0' && *q <= '9' && v <= 100000)
            v = v * 10 + (*q++ - '0');
        if (*q || v > 65535)
            why = "a database that is not a number 0-65535";
        c->db = (int)v;
    } else if (!why && (*end == '?' || *end == '#'))
        why = "a query or fragment (not supported: use the cache keys)";
    if (why) {
        pt_node_error(cx->errs, n, "Redis URL: %s (redis://[user:password@]host:port/db)", why);
        return false;
    }
    c->redis = url;
    return true;
}

static const struct pt_cfkey cache_tls_keys[] = {
    {"caFile", PT_CT_STR, offsetof(struct pt_conf, cache.ca_file), PT_CF_PATH, .def = "the system store",
     .doc = "CA bundle (PEM) that the Redis server's certificate is checked against."},
    {"verify", PT_CT_BOOL, offsetof(struct pt_conf, cache.verify), 0, .def = "`true`",
     .doc = "Check the server's certificate chain and that it names the host (or `serverName`)."},
    {"serverName", PT_CT_STR, offsetof(struct pt_conf, cache.server_name), 0, .def = "the URL's host",
     .doc = "The name sent as SNI and checked in the certificate."},
    {0},
};

static const struct pt_cfkey cache_keys[] = {
    {"memory", PT_CT_SIZE, offsetof(struct pt_conf, cache.memory), 0, 0, 1LL << 40, .def = "`64m`",
     .doc = "The internal cache's budget in bytes, every entry's overhead counted; least recently used "
            "entries are evicted past it; `0` turns the internal cache off (lookups miss). Applied at "
            "reload; the entries survive reloads."},
    {"maxEntry", PT_CT_SIZE, offsetof(struct pt_conf, cache.max_entry), 0, 1, 64LL << 20, .def = "`2m`",
     .doc = "The largest value either store accepts (APIM's 2 MiB), the same for both; larger ones are "
            "not stored (counted as skipped), and a larger one found in Redis is a miss. Over `8m`, the "
            "Redis commands waiting per worker may take twice this (caching.md, Bounds)."},
    {"redis", PT_CT_CUSTOM, offsetof(struct pt_conf, cache.redis), 0, .fn = read_redis_url,
     .form = "`redis://[user:password@]host:port/db` or `rediss://...`", .def = "none",
     .doc = "The external cache: a Redis server each worker keeps one connection to (`rediss://`: over "
            "TLS). `caching-type` `prefer-external` uses it when set. See [caching.md](caching.md)."},
    {"username", PT_CT_STR, offsetof(struct pt_conf, cache.username), 0, .def = "the URL's",
     .doc = "The Redis ACL user (Redis 6 and later: `AUTH username password`)."},
    {"password", PT_CT_STR, offsetof(struct pt_conf, cache.password), 0, .def = "the URL's",
     .doc = "The Redis password (`AUTH`), rather than in the URL."},
    {"tls", PT_CT_MAP, 0, 0, .sub = cache_tls_keys, .doc = "TLS towards Redis (`rediss://`)."},
    {"connectTimeout", PT_CT_MS, offsetof(struct pt_conf, cache.connect_timeout), 0, 1, 60000, .def = "`1s`",
     .doc = "The longest a connection to Redis (TCP, TLS, `AUTH`, `SELECT`) may take; a failed one is "
            "tried again later, backing off from 100 ms up to 5 s."},
    {"commandTimeout", PT_CT_MS, offsetof(struct pt_conf, cache.command_timeout), 0, 1, 60000,
     .def = "`250ms`",
     .doc = "The longest a request waits for a Redis answer: past it the lookup is a miss and the "
            "connection is remade."},
    {0},
};

/* --------------------------------------------------------------- counters */

static const struct pt_cfkey counters_tls_keys[] = {
    {"caFile", PT_CT_STR, offsetof(struct pt_conf, counters.redis.ca_file), PT_CF_PATH,
     .def = "the system store",
     .doc = "CA bundle (PEM) that the Redis server's certificate is checked against."},
    {"verify", PT_CT_BOOL, offsetof(struct pt_conf, counters.redis.verify), 0, .def = "`true`",
     .doc = "Check the server's certificate chain and that it names the host (or `serverName`)."},
    {"serverName", PT_CT_STR, offsetof(struct pt_conf, counters.redis.server_name), 0,
     .def = "the URL's host", .doc = "The name sent as SNI and checked in the certificate."},
    {0},
};

static const struct pt_cfkey counters_keys[] = {
    {"redis", PT_CT_CUSTOM, offsetof(struct pt_conf, counters.redis.redis), 0, .fn = read_redis_url,
     .form = "`redis://[user:password@]host:port/db` or `rediss://...`", .def = "none (counters per node)",
     .doc =
         "Counts `rate-limit`, `rate-limit-by-key`, `quota` and `quota-by-key` across every node that names "
         "the same Redis server: a thread of each node reserves tokens there in batches and the requests "
         "are admitted against them, never waiting for Redis. See [access-policies.md](access-policies.md#"
         "counting-across-nodes). Read at start."},
    {"username", PT_CT_STR, offsetof(struct pt_conf, counters.redis.username), 0, .def = "the URL's",
     .doc = "The Redis ACL user (Redis 6 and later: `AUTH username password`)."},
    {"password", PT_CT_STR, offsetof(struct pt_conf, counters.redis.password), 0, .def = "the URL's",
     .doc = "The Redis password (`AUTH`), rather than in the URL."},
    {"tls", PT_CT_MAP, 0, 0, .sub = counters_tls_keys, .doc = "TLS towards Redis (`rediss://`)."},
    {"syncInterval", PT_CT_MS, offsetof(struct pt_conf, counters.sync_interval), 0, 5, 1000, .def = "`50ms`",
     .doc =
         "The time between two rounds of the sync thread (leases renewed, unused tokens given back, counts "
         "pushed); a key that needs its first lease, or ran out, is served at once. It enters the "
         "overshoot bound (access-policies.md)."},
    {"connectTimeout", PT_CT_MS, offsetof(struct pt_conf, counters.redis.connect_timeout), 0, 1, 60000,
     .def = "`1s`",
     .doc = "The longest a connection to Redis (TCP, TLS, `AUTH`, `SELECT`) may take; failed ones are tried "
            "again, backing off from 100 ms up to 2 s, while the counters count per node."},
    {"timeout", PT_CT_MS, offsetof(struct pt_conf, counters.redis.command_timeout), 0, 1, 60000,
     .def = "`250ms`",
     .doc =
         "The longest the sync thread waits for Redis's answer; past it Redis counts as down (counting per "
         "node, merged back when it answers again). Requests never wait for it."},
    {0},
};

/* ---------------------------------------------------------- control plane */

/* "http(s)://host:port" (an optional trailing '/' dropped), nothing after the authority: the control
   plane's management listener, which the node adds /management/gateways/... to. */
static const char *cp_url_problem(char *s)
{
    const char *p = !strncmp(s, "http://", 7) ? s + 7 : !strncmp(s, "https://", 8) ? s + 8 : NULL;
    if (!p)
        return "expected http:// or https://";
    size_t len = strlen(s);
    while (len > (size_t)(p - s) && s[len - 1] == '/')
        s[--len] = '\0';
    if (len > 1024 || strpbrk(p, "/?#@ \t\r\n\"'<>\\"))
        return "expected http(s)://host:port with no path, query or user (the management listener's base, "
               "without /management)";
    if (!*p)
        return "no host";
    const char *port = strrchr(p, ':');
    if (port && (!strchr(port, ']') && port[1] == '\0'))
        return "an empty port";
    return NULL;
}

static bool read_cp_url(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    char *s;
    if (!pt_schema_str(cx, n, &s, false))
        return false;
    const char *why = cp_url_problem(s);
    if (why) {
        pt_node_error(cx->errs, n, "url: %s", why);
        return false;
    }
    *(char **)field = s;
    return true;
}

bool pt_conf_cp_token_parse(const char *text, char *id, size_t idlen, int64_t *expiry_s, const char **sig)
{
    struct pt_gwtoken t;
    if (!text || !pt_gwtoken_parse(pt_str_c(text), &t) || strlen(t.id) >= idlen)
        return false;
    memcpy(id, t.id, strlen(t.id) + 1);
    *expiry_s = t.expiry;
    *sig = text + strlen(text) - PT_GWTOKEN_SIG_B64; /* the signature ends the token */
    return true;
}

static bool read_cp_token(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    char *s, id[96];
    int64_t exp;
    const char *sig;
    if (!pt_schema_str(cx, n, &s, false))
        return false;
    if (!pt_conf_cp_token_parse(s, id, sizeof(id), &exp, &sig)) {
        /* the value is a secret: the message does not repeat it */
        pt_node_error(
            cx->errs, n,
            "token: expected the text generateToken gave (GatewayKey <gatewayId>&<yyyyMMddHHmm>&<sig>)");
        return false;
    }
    *(char **)field = s;
    return true;
}

static const struct pt_cfkey cp_keys[] = {
    {"url", PT_CT_CUSTOM, offsetof(struct pt_conf, cp.url), PT_CF_REQUIRED, .fn = read_cp_url,
     .form = "`http(s)://host:port`",
     .doc = "The control plane's management listener (its base, without `/management`); "
            "`$PORTICO_CONTROL_PLANE_URL` wins over it."},
    {"token", PT_CT_CUSTOM, offsetof(struct pt_conf, cp.token), 0, .fn = read_cp_token,
     .form = "`GatewayKey ...`", .def = "none",
     .doc = "The gateway's token (`generateToken`); `$PORTICO_GATEWAY_TOKEN` wins over it. One of `token` "
            "and `tokenFile` is needed."},
    {"tokenFile", PT_CT_STR, offsetof(struct pt_conf, cp.token_file), PT_CF_PATH, .def = "none",
     .doc = "A file holding the token, read again at every connection attempt (a rotated Kubernetes "
            "Secret takes effect without a restart); `$PORTICO_GATEWAY_TOKEN_FILE` wins over it (and "
            "`$PORTICO_GATEWAY_TOKEN` over both)."},
    {"backup", PT_CT_STR, offsetof(struct pt_conf, cp.backup), PT_CF_PATH | PT_CF_EMPTY_OK,
     .def = "`config-backup` in the `data` folder",
     .doc = "The last configuration applied, encrypted with a key derived from the token, written after "
            "each change and read at start when the control plane cannot be reached; `\"\"`: none. "
            "`$PORTICO_CONFIG_BACKUP` wins over it."},
    {"caFile", PT_CT_STR, offsetof(struct pt_conf, cp.ca_file), PT_CF_PATH, .def = "the system store",
     .doc = "CA bundle (PEM) the control plane's certificate is checked against; "
            "`$PORTICO_CONTROL_PLANE_CA_FILE` and `portico --ca-file` win over it."},
    {"heartbeat", PT_CT_INT, offsetof(struct pt_conf, cp.heartbeat), 0, 1, 3600, .def = "`5`",
     .doc = "Seconds between two heartbeats (the node's status and analytics); the control plane counts a "
            "node disconnected after 3 missed."},
    {"pollWait", PT_CT_INT, offsetof(struct pt_conf, cp.poll_wait), 0, 0, 60, .def = "`25`",
     .doc = "Seconds the control plane holds a long-poll for a change before it answers 304."},
    {"nodeId", PT_CT_STR, offsetof(struct pt_conf, cp.node_id), 0,
     .def = "the host name, a colon and the first listener's port",
     .doc = "The node's name in the control plane's list of nodes; `$PORTICO_NODE_ID` wins over it."},
    {0},
};

/* A variable that is set and not empty. */
static const char *env_set(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* The environment's values over the file's, then the checks across keys. */
static void cp_finish(struct pt_conf *cf, struct pt_cfctx *cx)
{
    struct pt_cp_cf *c = &cf->cp;
    struct pt_node *cn = pt_node_get(cf->root, "controlPlane");
    const char *e;
    c->node = cn;
    if ((e = env_set("PORTICO_CONTROL_PLANE_URL"))) {
        char *s = pt_pool_strdup(cx->pool, e);
        const char *why = cp_url_problem(s);
        if (why)
            pt_node_errors_add(cx->errs, "$PORTICO_CONTROL_PLANE_URL: %s", why);
        c->url = s;
    }
    c->on = cn != NULL || c->url != NULL;
    if (!c->on)
        return;
    const char *tf = env_set("PORTICO_GATEWAY_TOKEN_FILE");
    if ((e = env_set("PORTICO_GATEWAY_TOKEN"))) {
        char id[96];
        int64_t exp;
        const char *sig;
        /* a Secret made from a file usually ends with a newline: trimmed, like tokenFile's text */
        char *t = pt_pool_strdup(cx->pool, e);
        size_t n = strlen(t);
        while (n && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' ' || t[n - 1] == '\t'))
            t[--n] = '\0';
        if (!pt_conf_cp_token_parse(t, id, sizeof(id), &exp, &sig))
            pt_node_errors_add(cx->errs, "$PORTICO_GATEWAY_TOKEN: expected the text generateToken gave "
                                         "(GatewayKey <gatewayId>&<yyyyMMddHHmm>&<sig>)");
        if (tf)
            pt_node_errors_add(cx->errs, "$PORTICO_GATEWAY_TOKEN and $PORTICO_GATEWAY_TOKEN_FILE: give one, "
                                         "not both");
        c->token = t;
        c->token_file = NULL; /* the environment's token wins over both of the file's */
    } else if (tf) {
        /* the environment's token file (a mounted Kubernetes Secret), read at every attempt */
        c->token_file = pt_pool_strdup(cx->pool, tf);
        c->token = NULL;
    } else if (c->token && c->token_file)
        pt_node_error(cx->errs, pt_node_get(cn, "tokenFile"), "tokenFile: give token or tokenFile, not both");
    if ((e = env_set("PORTICO_CONTROL_PLANE_CA_FILE")))
        c->ca_file = pt_pool_strdup(cx->pool, e);
    if ((e = getenv("PORTICO_CONFIG_BACKUP")))
        c->backup = pt_pool_strdup(cx->pool, e); /* "" too: no backup */
    if ((e = env_set("PORTICO_NODE_ID")))
        c->node_id = pt_pool_strdup(cx->pool, e);
    if (!c->url)
        pt_node_errors_add(cx->errs, "controlPlane: url is needed (or $PORTICO_CONTROL_PLANE_URL)");
    if (!c->token && !c->token_file) {
        if (cn)
            pt_node_error(cx->errs, cn,
                          "controlPlane: token or tokenFile is needed (or $PORTICO_GATEWAY_TOKEN)");
        else
            pt_node_errors_add(cx->errs,
                               "$PORTICO_GATEWAY_TOKEN or $PORTICO_GATEWAY_TOKEN_FILE is needed with "
                               "$PORTICO_CONTROL_PLANE_URL");
    }
    if (c->token_file && access(c->token_file, R_OK) < 0) {
        if (tf)
            pt_node_errors_add(cx->errs, "$PORTICO_GATEWAY_TOKEN_FILE: cannot read %s: %s", c->token_file,
                               strerror(errno));
        else
            pt_node_error(cx->errs, pt_node_get(cn, "tokenFile"), "tokenFile: cannot read %s: %s",
                          c->token_file, strerror(errno));
    }
    if (!c->backup)
        c->backup = pt_pool_printf(cx->pool, "%s/config-backup", cf->data_dir);
    if (!c->node_id) {
        char host[256] = "localhost";
        gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        const char *port =
            cf->nlisten > 0 && cf->listen[0].address ? strrchr(cf->listen[0].address, ':') : NULL;
        c->node_id = pt_pool_printf(cx->pool, "%s:%s", host, port ? port + 1 : "0");
    }
}

/* What a node's own file may not hold: its entities come from the control plane, and it has no
   management API or portal. */
static const char *const node_refused_lists[] = {
    "apis",        "products", "groups",          "users",    "subscriptions",
    "namedValues", "schemas",  "policyFragments", "policies", "backends",
    "workspaces",  "loggers",  "apiVersionSets",  "gateways", "certificates",
};

static void node_file_check(struct pt_node *root, struct pt_errors *errs)
{
    if (!root || root->kind != PT_N_MAP ||
        (!pt_node_get(root, "controlPlane") && !env_set("PORTICO_CONTROL_PLANE_URL")))
        return;
    for (int i = 0; i < root->n; i++) {
        struct pt_node *k = pt_node_key(root, i);
        for (size_t j = 0; j < PT_ARRAY_LEN(node_refused_lists); j++)
            if (!strcmp(k->str, node_refused_lists[j]))
                pt_node_error(errs, k, "%s: a gateway node takes its entities from the control plane",
                              k->str);
    }
    static const char *const own[] = {"management", "portal"};
    for (size_t j = 0; j < PT_ARRAY_LEN(own); j++) {
        struct pt_node *m = pt_node_get(root, own[j]), *l = m ? pt_node_get(m, "listen") : NULL;
        if (l)
            pt_node_error(
                errs, l, "%s.listen: a gateway node has no %s (it takes its entities from the control plane)",
                own[j], j ? "portal" : "management API");
    }
}

static const struct pt_cfkey top_keys[] = {
    {"listen", PT_CT_CUSTOM, offsetof(struct pt_conf, listen), PT_CF_REQUIRED | PT_CF_LIST, .fn = read_listen,
     .sub = listen_keys, .form = "list of addresses or maps",
     .doc = "The gateway's listeners: a list of addresses (`HOST:PORT`) or of maps (TLS), or a single "
            "address. See [Listeners](#listeners)."},
    {"workers", PT_CT_CUSTOM, offsetof(struct pt_conf, workers), 0, .fn = read_workers,
     .form = "integer, 1–256, or `auto`", .def = "`1`",
     .doc = "Worker threads; `auto` starts one per CPU. Changing it needs a restart. See "
            "[Workers](#workers)."},
    {"limits", PT_CT_MAP, 0, 0, .sub = limits_keys,
     .doc = "Limits on what clients send and on what is kept."},
    {"timeouts", PT_CT_MAP, 0, 0, .sub = timeouts_keys, .doc = "Timeouts on the client side."},
    {"upstream", PT_CT_MAP, 0, 0, .sub = upstream_keys,
     .doc = "Backend connections; see [Backend connections](#backend-connections)."},
    {"log", PT_CT_MAP, 0, 0, .sub = log_keys, .doc = "The error log and the access log; see [Logs](#logs)."},
    {"lua", PT_CT_MAP, 0, 0, .sub = lua_keys,
     .doc = "Bounds on expressions and Lua policies, and where Lua policies are found."},
    {"pluginDir", PT_CT_STR, offsetof(struct pt_conf, plugin_dir), PT_CF_PATH,
     .def = "the build tree's `plugins/` when running uninstalled, else `$libdir/portico/plugins`",
     .doc = "Where policy plugins (`*.so`) are loaded from, at start (a reload does not reload "
            "plugins)."},
    {"data", PT_CT_STR, offsetof(struct pt_conf, data_dir), PT_CF_PATH, .def = "`var`",
     .doc = "The store's folder (SQLite `portico.db`, `secret.key`), next to the configuration file by "
            "default; created if missing; read at start only."},
    {"secretKey", PT_CT_STR, offsetof(struct pt_conf, secret_key), 0,
     .def = "`$PORTICO_SECRET_KEY`, else generated",
     .doc = "Encrypts secret named values and subscription keys at rest; else `$PORTICO_SECRET_KEY`, else "
            "a random key kept in `<data>/secret.key`."},
    {"samples", PT_CT_BOOL, offsetof(struct pt_conf, samples), 0, .def = "`true`",
     .doc = "A new store starts as a new APIM instance does: the Starter and Unlimited products, an Echo "
            "API on the demo backend and the administrator's subscriptions; `false`: an empty store. "
            "See [Samples](#samples)."},
    {"management", PT_CT_MAP, 0, 0, .sub = mgmt_keys,
     .doc = "The [management API](management-api.md): its listener (HTTPS with `certificate` + `key`), "
            "administrator token and largest request body."},
    {"metrics", PT_CT_MAP, 0, 0, .sub = metrics_keys,
     .doc = "Prometheus metrics and emit-metric's counters; see [metrics.md](metrics.md)."},
    {"trustedProxies", PT_CT_CUSTOM, offsetof(struct pt_conf, trusted), 0, .fn = read_trusted,
     .form = "list of addresses or ranges", .def = "`[]`",
     .doc = "Addresses and ranges (`10.0.0.0/8`, `2001:db8::/32`) of proxies in front of the gateway: "
            "when the peer is one of them, the client address that `ip-filter` checks is the right-most "
            "`X-Forwarded-For` entry that is not a trusted proxy."},
    {"tracing", PT_CT_MAP, 0, 0, .sub = tracing_keys,
     .doc = "Debug traces of single requests (`listDebugCredentials`, `Ocp-Apim-Trace`) and the `trace` "
            "policy's log; see [tracing.md](tracing.md)."},
    {"apis", PT_CT_CUSTOM, offsetof(struct pt_conf, apis), PT_CF_LIST, .fn = pt_conf_entities_read_apis,
     .sub = pt_conf_entities_api_keys, .form = "list of maps", .doc = "The APIs; see [APIs](#apis)."},
    {"products", PT_CT_CUSTOM, offsetof(struct pt_conf, products), PT_CF_LIST,
     .fn = pt_conf_entities_read_products, .sub = pt_conf_entities_product_keys, .form = "list of maps",
     .doc = "Products: groups of APIs that subscriptions open; see [Products, subscriptions and "
            "access](#products-subscriptions-and-access)."},
    {"groups", PT_CT_CUSTOM, offsetof(struct pt_conf, groups), PT_CF_LIST, .fn = pt_conf_entities_read_groups,
     .sub = pt_conf_entities_group_keys, .form = "list of maps",
     .doc = "Groups of users, which products are shown to."},
    {"users", PT_CT_CUSTOM, offsetof(struct pt_conf, users), PT_CF_LIST, .fn = pt_conf_entities_read_users,
     .sub = pt_conf_entities_user_keys, .form = "list of maps", .doc = "Users, the owners of subscriptions."},
    {"subscriptions", PT_CT_CUSTOM, offsetof(struct pt_conf, subs), PT_CF_LIST,
     .fn = pt_conf_entities_read_subs, .sub = pt_conf_entities_sub_keys, .form = "list of maps",
     .doc = "Subscriptions: the keys that open APIs and products."},
    {"namedValues", PT_CT_CUSTOM, offsetof(struct pt_conf, named_values), PT_CF_LIST, .fn = read_named_values,
     .sub = named_value_keys, .form = "list of maps",
     .doc = "Values that `{{id}}` inserts in any attribute value of a policy document."},
    {"schemas", PT_CT_CUSTOM, offsetof(struct pt_conf, schemas), PT_CF_LIST,
     .fn = pt_conf_entities_read_schemas, .form = "list of maps",
     .doc =
         "Service-level schemas (`[{id, schemaType: json | xml, document | value}]`) that `validate-content` "
         "names with `schema-id`; see [API definitions](api-definitions.md#schemas)."},
    {"policyFragments", PT_CT_CUSTOM, offsetof(struct pt_conf, fragments), PT_CF_LIST, .fn = read_fragments,
     .sub = fragment_keys, .form = "list of maps",
     .doc = "Statements shared by documents, included with `include-fragment {fragment-id: ID}`."},
    {"policies", PT_CT_CUSTOM, offsetof(struct pt_conf, policies), 0, .fn = pt_conf_entities_read_node,
     .form = "policy document", .doc = "The global policy document; see [Policies](#policies)."},
    {"certificates", PT_CT_CUSTOM, offsetof(struct pt_conf, certs), PT_CF_LIST,
     .fn = pt_conf_entities_read_certs, .sub = pt_conf_entities_cert_keys, .form = "list of maps",
     .doc = "The certificate store: certificates (with or without a private key) that policies name by id "
            "or thumbprint, and CA certificates for client certificates; see "
            "[certificates.md](certificates.md)."},
    {"backends", PT_CT_CUSTOM, offsetof(struct pt_conf, backends), PT_CF_LIST,
     .fn = pt_conf_entities_read_backends, .sub = pt_conf_entities_backend_keys, .form = "list of maps",
     .doc = "Backends, APIM's entities: kept in the store and served by the management API."},
    {"workspaces", PT_CT_CUSTOM, offsetof(struct pt_conf, workspaces), PT_CF_LIST,
     .fn = pt_conf_entities_read_workspaces, .sub = pt_conf_entities_workspace_keys, .form = "list of maps",
     .doc = "Workspaces: APIs, products, groups, subscriptions, backends, version sets, named values and "
            "fragments of one team, kept apart from the others'."},
    {"loggers", PT_CT_CUSTOM, offsetof(struct pt_conf, loggers), PT_CF_LIST,
     .fn = pt_conf_entities_read_loggers, .sub = pt_conf_entities_logger_keys, .form = "list of maps",
     .doc = "Loggers, APIM's entities: files, syslog servers and HTTP collectors that `log-to-eventhub` "
            "and the access log send messages to; see [logging.md](logging.md)."},
    {"apiVersionSets", PT_CT_CUSTOM, offsetof(struct pt_conf, version_sets), PT_CF_LIST,
     .fn = pt_conf_entities_read_version_sets, .sub = pt_conf_entities_vs_keys, .form = "list of maps",
     .doc = "Version sets: APIs that are versions of one API; see [Versions](#versions)."},
    {"gateways", PT_CT_CUSTOM, offsetof(struct pt_conf, gateways), PT_CF_LIST,
     .fn = pt_conf_entities_read_gateways, .sub = pt_conf_entities_gateway_keys, .form = "list of maps",
     .doc = "Self-hosted gateways (on the control plane): where their nodes run and the APIs they serve; "
            "their keys are made once and kept in the store; see [gateways.md](gateways.md)."},
    {"telemetry", PT_CT_MAP, 0, 0, .sub = telemetry_keys,
     .doc = "OpenTelemetry: W3C trace context towards backends, spans exported over OTLP/HTTP; see "
            "[opentelemetry.md](opentelemetry.md)."},
    {"analytics", PT_CT_MAP, 0, 0, .sub = analytics_keys,
     .doc = "Request records and usage reports; see [analytics.md](analytics.md)."},
    {"portal", PT_CT_MAP, 0, 0, .sub = portal_keys,
     .doc = "The [developer portal](portal.md): its listener (HTTPS with `certificate` + `key`), sessions, "
            "mail and content."},
    {"cache", PT_CT_MAP, 0, 0, .sub = cache_keys,
     .doc = "The caches of `cache-lookup`, `cache-store` and the value policies: the internal store and "
            "Redis; see [caching.md](caching.md)."},
    {"counters", PT_CT_MAP, 0, 0, .sub = counters_keys,
     .doc = "Rate limits and quotas counted across nodes through Redis; see "
            "[access-policies.md](access-policies.md#counting-across-nodes)."},
    {"controlPlane", PT_CT_MAP, 0, 0, .sub = cp_keys,
     .doc = "Makes this process a gateway node of a control plane: its entities come from there, its file "
            "holds settings only; see [Gateway nodes](#gateway-nodes) and [gateways.md](gateways.md)."},
    {0},
};

static void set_defaults(struct pt_conf *cf)
{
    cf->workers = 1;
    cf->samples = true;
    cf->limits.buffer_size = 2 * 1024 * 1024;
    cf->lua.timeout = 100;
    cf->lua.memory = 64ULL * 1024 * 1024;
    cf->lua.pattern_subject = 256 * 1024;
    cf->limits.header_size = 32 * 1024;
    cf->limits.header_line = 8 * 1024;
    cf->limits.header_underscores = PT_UNDERSCORES_REJECT;
    cf->limits.header_count = 100;
    cf->limits.h2.max_streams = 100;
    cf->limits.h2.hpack_table = 4096;
    cf->limits.h2.initial_window = 65535;
    cf->limits.h2.max_frame = 16384;
    cf->limits.h2.resets_per_second = 100;
    cf->limits.uri_length = 8 * 1024;
    cf->limits.body_size = 1024ULL * 1024 * 1024;
    cf->limits.requests_per_connection = 1000;
    cf->counter_keys = 1000000;
    cf->limits.connections_per_worker = 10000;
    cf->limits.memory = 0; /* off: connections' buffers are bounded one by one */
    cf->timeouts.header = 10000;
    cf->timeouts.body_idle = 30000;
    cf->timeouts.keepalive = 75000;
    cf->timeouts.send = 60000;
    cf->timeouts.shutdown = 30000;
    cf->upstream.connect_timeout = 5000;
    cf->upstream.read_timeout = 300000;
    cf->upstream.idle_timeout = 60000;
    cf->upstream.max_idle = 64;
    cf->upstream.max_pools = 4096;
    cf->upstream.h2_max_streams = 100;
    cf->upstream.verify = true;
    cf->upstream.side_private = true;
    cf->upstream.forwarded = PT_FWD_XFF | PT_FWD_XFP | PT_FWD_XFH | PT_FWD_FORWARDED;
    cf->upstream.request_id_header = "X-Request-Id";
    cf->log.level = PT_LOG_INFO;
    cf->log.error = "stderr";
    cf->log.access = "stdout";
    cf->log.access_buffer = 32 * 1024;
    cf->log.access_flush = 1000;
    cf->telemetry.enabled = true;
    cf->telemetry.propagate = true;
    cf->telemetry.protocol = PT_OTLP_PROTOBUF;
    cf->telemetry.service_name = "portico";
    cf->telemetry.timeout = 10000;
    cf->telemetry.batch_size = 512;
    cf->telemetry.export_interval = 1000;
    cf->telemetry.queue_size = 2048;
    cf->telemetry.ratio = 1.0;
    cf->telemetry.parent_based = true;
    cf->telemetry.metrics_interval = 60000;
    cf->tracing.enabled = true;
    cf->tracing.max_traces = 100;
    cf->tracing.max_trace_size = 1024 * 1024;
    cf->tracing.ttl = 3600000;
    cf->tracing.verbosity = PT_TRACE_SEV_INFORMATION;
    cf->log.access_logger = -1;
    cf->metrics.enabled = true;
    cf->metrics.path = "/metrics";
    cf->metrics.max_series = 500;
    cf->metrics.location = "local";
    cf->analytics.enabled = true;
    cf->analytics.flush_interval = 1000;
    cf->analytics.retention = 90 * 86400;
    cf->analytics.hour_after = 48 * 3600;
    cf->analytics.day_after = 30 * 86400;
    cf->analytics.requests_max = 100000;
    cf->analytics.requests_max_age = 7 * 86400;
    cf->analytics.requests_rate = 1000;
    cf->portal.idle_timeout_ms = 30 * 60000;
    cf->portal.absolute_timeout_ms = 12 * 3600000;
    cf->portal.max_failures = 5;
    cf->portal.lockout_ms = 15 * 60000;
    cf->portal.confirm_ttl_ms = 2 * 86400000ULL;
    cf->portal.reset_ttl_ms = 3600000;
    cf->portal.max_media = 1024 * 1024;
    cf->portal.mail.from = "Portico <portal@localhost>";
    cf->portal.mail.starttls = true;
    cf->cache.memory = 64ULL * 1024 * 1024;
    cf->cache.max_entry = 2ULL * 1024 * 1024;
    cf->cache.connect_timeout = 1000;
    cf->cache.command_timeout = 250;
    cf->cache.verify = true;
    cf->cp.heartbeat = 5;
    cf->cp.poll_wait = 25;
    cf->counters.sync_interval = 50;
    cf->counters.redis.connect_timeout = 1000;
    cf->counters.redis.command_timeout = 250;
    cf->counters.redis.verify = true;
}

/* "0.0.0.0:8000" -> "127.0.0.1:8000", "[::]:8000" -> "[::1]:8000", ":8000" -> "127.0.0.1:8000": a
   wildcard listener is reached on loopback. */
static char *reachable_address(struct pt_pool *pool, const char *listen)
{
    const char *port = strrchr(listen, ':');
    if (!port)
        return pt_pool_strdup(pool, listen);
    if (port == listen || !strncmp(listen, "0.0.0.0:", 8) || !strncmp(listen, "*:", 2))
        return pt_pool_printf(pool, "127.0.0.1%s", port);
    if (!strncmp(listen, "[::]:", 5))
        return pt_pool_printf(pool, "[::1]%s", port);
    return pt_pool_strdup(pool, listen);
}

/* The Redis settings' checks across keys (cache, counters). */
static void redis_finish(struct pt_conf *cf, struct pt_cfctx *cx, const char *section, struct pt_cache_cf *c)
{
    struct pt_node *cn = pt_node_get(cf->root, section);
    if (!cn)
        return;
    if (pt_node_get(cn, "tls") && c->redis && !c->tls)
        pt_node_error(cx->errs, pt_node_get(cn, "tls"), "tls applies to a rediss:// URL; '%s' is redis://",
                      c->redis);
    if (c->username && !c->password)
        pt_node_error(cx->errs,
                      pt_node_get(cn, "username") ? pt_node_get(cn, "username") : pt_node_get(cn, "redis"),
                      "a Redis user name needs a password");
    if (!c->redis && (pt_node_get(cn, "username") || pt_node_get(cn, "password")))
        pt_node_error(cx->errs,
                      pt_node_get(cn, "password") ? pt_node_get(cn, "password") : pt_node_get(cn, "username"),
                      "a Redis password or user name without %s.redis", section);
}

/* The portal's derived settings: HTTPS, its default URLs and outbox. */
static void portal_finish(struct pt_conf *cf, struct pt_cfctx *cx)
{
    struct pt_portal_cf *p = &cf->portal;
    struct pt_node *pn = pt_node_get(cf->root, "portal");
    if (p->cert.certificate || p->cert.key) {
        if (!p->cert.certificate || !p->cert.key)
            pt_node_error(cx->errs, pn, "an HTTPS portal listener needs both certificate and key");
        p->cert.node = pt_node_get(pn, "certificate");
        p->tls.certs = &p->cert;
        p->tls.ncerts = 1;
        p->tls.node = pn;
        p->tls.address = p->listen;
    }
    if (!p->public_url && p->listen)
        p->public_url = pt_pool_printf(cx->pool, "%s://%s", p->tls.ncerts ? "https" : "http",
                                       reachable_address(cx->pool, p->listen));
    if (!p->gateway_url && cf->nlisten > 0 && cf->listen[0].address)
        p->gateway_url = pt_pool_printf(cx->pool, "%s://%s", cf->listen[0].ncerts ? "https" : "http",
                                        reachable_address(cx->pool, cf->listen[0].address));
    if (!p->mail.outbox)
        p->mail.outbox = pt_pool_printf(cx->pool, "%s/outbox", cf->data_dir);
    if (p->mail.smtp_url && !strncmp(p->mail.smtp_url, "smtps://", 8))
        p->mail.starttls = false;       /* TLS from the start */
    pt_content_check_file(p, cx->errs); /* site, pages, templates (conf/pt_content.c) */
    pt_idp_check_file(p, cx->errs);     /* identityProviders (conf/pt_idp.c) */
}

static void portal_release(struct pt_conf *cf)
{
    json_decref(cf->portal.site);
    json_decref(cf->portal.pages);
    json_decref(cf->portal.templates);
    json_decref(cf->portal.identity_providers);
    cf->portal.site = cf->portal.pages = cf->portal.templates = cf->portal.identity_providers = NULL;
}

struct pt_conf *pt_conf_from_tree(struct pt_pool *pool, const char *file, struct pt_node *root,
                                  struct pt_errors *errs)
{
    struct pt_conf *cf = pt_pool_calloc(pool, sizeof(*cf));
    cf->pool = pool;
    cf->file = pt_pool_strdup(pool, file);
    char *tmp = pt_pool_strdup(pool, file);
    cf->dir = pt_pool_strdup(pool, dirname(tmp));
    cf->root = root;
    set_defaults(cf);
    struct pt_cfctx cx = {pool, errs, cf->dir};
    int before = errs->n;
    pt_schema_map(&cx, root, top_keys, cf);
    if (cf->log.error && strcmp(cf->log.error, "stderr") && strcmp(cf->log.error, "stdout"))
        cf->log.error = pt_schema_path(&cx, cf->log.error);
    if (cf->log.access && !strncmp(cf->log.access, "logger:", 7)) {
        if (!pt_conf_entities_valid_id(cf->log.access + 7))
            pt_node_error(errs, pt_node_get(pt_node_get(root, "log"), "access"),
                          "access '%s': logger:ID names one of the loggers (letters, digits and -_.~)",
                          cf->log.access);
    } else if (cf->log.access && strcmp(cf->log.access, "stderr") && strcmp(cf->log.access, "stdout") &&
               strcmp(cf->log.access, "off"))
        cf->log.access = pt_schema_path(&cx, cf->log.access);
    if (!cf->data_dir)
        cf->data_dir = pt_schema_path(&cx, "var");
    if (!cf->mgmt.max_body)
        cf->mgmt.max_body = 16 * 1024 * 1024;
    if (cf->mgmt.cert.certificate || cf->mgmt.cert.key) {
        struct pt_node *mn = pt_node_get(root, "management");
        if (!cf->mgmt.cert.certificate || !cf->mgmt.cert.key)
            pt_node_error(errs, mn, "an HTTPS management listener needs both certificate and key");
        cf->mgmt.cert.node = pt_node_get(mn, "certificate");
        cf->mgmt.tls.certs = &cf->mgmt.cert;
        cf->mgmt.tls.ncerts = 1;
        cf->mgmt.tls.node = mn;
        cf->mgmt.tls.address = cf->mgmt.listen;
    }
    portal_finish(cf, &cx);
    redis_finish(cf, &cx, "cache", &cf->cache);
    redis_finish(cf, &cx, "counters", &cf->counters.redis);
    cp_finish(cf, &cx);
    cf->telemetry.on = cf->telemetry.enabled && pt_node_get(root, "telemetry") != NULL;
    if (cf->telemetry.endpoint && !cf->telemetry.metrics_endpoint) {
        /* .../v1/traces -> .../v1/metrics */
        const char *e = cf->telemetry.endpoint;
        size_t n = strlen(e), k = sizeof("/v1/traces") - 1;
        if (n >= k && !strcmp(e + n - k, "/v1/traces")) {
            char *m = pt_pool_alloc(pool, n + 2);
            snprintf(m, n + 2, "%.*s/v1/metrics", (int)(n - k), e);
            cf->telemetry.metrics_endpoint = m;
        }
    }
    if (errs->n > before) {
        portal_release(cf); /* the caller frees the pool */
        return NULL;
    }
    return cf;
}

bool pt_conf_reference(FILE *out, FILE *err)
{
    /* the defaults are those of a file with nothing but a listener */
    static const char text[] = "listen: \":1\"\n";
    struct pt_errors errs = {0};
    struct pt_conf *cf = pt_conf_parse("defaults", text, sizeof(text) - 1, &errs);
    if (!cf) {
        for (int i = 0; i < errs.n; i++)
            fprintf(err, "portico: configuration reference: %s\n", errs.msgs[i]);
        pt_node_errors_clear(&errs);
        return false;
    }
    fputs("### Top-level keys\n\n", out);
    bool ok = pt_schema_reference(out, err, top_keys, cf);
    pt_conf_free(cf);
    return ok;
}

struct pt_conf *pt_conf_parse(const char *name, const char *text, size_t len, struct pt_errors *errs)
{
    struct pt_pool *pool = pt_pool_new(64 * 1024);
    if (!pool)
        return NULL;
    struct pt_node *root = pt_node_parse_yaml(pool, name, text, len, errs);
    int before = errs->n;
    node_file_check(root, errs);
    struct pt_conf *cf = root ? pt_conf_from_tree(pool, name, root, errs) : NULL;
    if (cf && errs->n > before) {
        pt_conf_free(cf);
        return NULL;
    }
    if (!cf)
        pt_pool_free(pool);
    return cf;
}

struct pt_conf *pt_conf_load(const char *path, struct pt_errors *errs)
{
    struct pt_pool *pool = pt_pool_new(64 * 1024);
    if (!pool)
        return NULL;
    struct pt_node *root = pt_node_load_file(pool, path, errs);
    int before = errs->n;
    node_file_check(root, errs);
    struct pt_conf *cf = root ? pt_conf_from_tree(pool, path, root, errs) : NULL;
    if (cf && errs->n > before) {
        pt_conf_free(cf);
        return NULL;
    }
    if (!cf)
        pt_pool_free(pool);
    return cf;
}

void pt_conf_free(struct pt_conf *cf)
{
    if (cf) {
        if (!cf->shares) /* a copy's portal content is its base's */
            portal_release(cf);
        pt_pool_free(cf->pool);
    }
}

struct pt_conf *pt_conf_with_subs(const struct pt_conf *base, struct pt_pool *pool, struct pt_node *subs,
                                  struct pt_errors *errs)
{
    struct pt_conf *cf = pt_pool_alloc(pool, sizeof(*cf));
    if (!cf) {
        pt_node_errors_add(errs, "out of memory building the configuration");
        return NULL;
    }
    *cf = *base;
    cf->pool = pool;
    cf->shares = base;
    cf->subs = NULL;
    cf->nsubs = 0;
    if (!subs)
        return cf;
    const struct pt_cfkey *row = NULL;
    for (const struct pt_cfkey *k = top_keys; k->name && !row; k++)
        if (!strcmp(k->name, "subscriptions"))
            row = k;
    PT_ASSERT(row);
    struct pt_cfctx cx = {pool, errs, cf->dir};
    int before = errs->n;
    bool read = row->fn(&cx, subs, (char *)cf + row->off);
    if (errs->n > before)
        return NULL;
    if (!read) { /* refused without a message: out of memory */
        pt_node_errors_add(errs, "out of memory building the configuration");
        return NULL;
    }
    return cf;
}
