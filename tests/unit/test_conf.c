/*
 * test_conf -- configuration parsing, validation, defaults and messages.
 */
#include "base/pt.h"
#include "base/pt_log.h"
#include "conf/pt_conf.h"
#include "conf/pt_genmodel.h"
#include "conf/pt_model.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#define FILE_NAME "t.yaml"

static struct pt_conf *parse(const char *text, struct pt_errors *errs)
{
    return pt_conf_parse(FILE_NAME, text, strlen(text), errs);
}

/* Prints every message so a failing test shows what the parser said. */
static void dump_errors(const struct pt_errors *e)
{
    for (int i = 0; i < e->n; i++)
        print_message("# error[%d]: %s\n", i, e->msgs[i]);
}

/* The text must be refused with exactly the messages given (NULL-terminated). */
static void expect_errors(const char *text, ...)
{
    struct pt_errors e = {0};
    struct pt_conf *cf = parse(text, &e);
    if (cf)
        pt_conf_free(cf);
    assert_null(cf);
    va_list ap;
    va_start(ap, text);
    int n = 0;
    for (const char *m; (m = va_arg(ap, const char *)) != NULL; n++) {
        if (n >= e.n || strcmp(e.msgs[n], m) != 0)
            dump_errors(&e);
        assert_true(n < e.n);
        assert_string_equal(e.msgs[n], m);
    }
    va_end(ap);
    if (e.n != n)
        dump_errors(&e);
    assert_int_equal(e.n, n);
    pt_node_errors_clear(&e);
}

#define expect_error(text, msg) expect_errors((text), (msg), (const char *)NULL)

/* Exactly one error, starting with prefix and not containing `never`. */
static void expect_error_like(const char *text, const char *prefix, const char *never)
{
    struct pt_errors e = {0};
    struct pt_conf *cf = parse(text, &e);
    if (cf)
        pt_conf_free(cf);
    assert_null(cf);
    dump_errors(&e);
    assert_int_equal(e.n, 1);
    assert_int_equal(strncmp(e.msgs[0], prefix, strlen(prefix)), 0);
    assert_null(strstr(e.msgs[0], never));
    pt_node_errors_clear(&e);
}

static struct pt_conf *parse_ok(const char *text)
{
    struct pt_errors e = {0};
    struct pt_conf *cf = parse(text, &e);
    if (!cf || e.n)
        dump_errors(&e);
    assert_non_null(cf);
    assert_int_equal(e.n, 0);
    pt_node_errors_clear(&e);
    return cf;
}

/* ------------------------------------------------------------ valid files */

static void test_defaults(void **state)
{
    struct pt_conf *cf = parse_ok("listen: ':8080'\n");
    assert_int_equal(cf->nlisten, 1);
    assert_string_equal(cf->listen[0].address, ":8080");
    assert_int_equal(cf->listen[0].ncerts, 0);
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&cf->listen[0].sa;
    assert_int_equal(s4->sin_family, AF_INET);
    assert_int_equal(ntohs(s4->sin_port), 8080);
    assert_int_equal(ntohl(s4->sin_addr.s_addr), INADDR_ANY);
    assert_int_equal(cf->listen[0].salen, sizeof(struct sockaddr_in));

    assert_int_equal(cf->workers, 1);
    assert_int_equal(cf->limits.header_size, 32768);
    assert_int_equal(cf->limits.header_count, 100);
    assert_int_equal(cf->limits.uri_length, 8192);
    assert_true(cf->limits.body_size == 1024ULL * 1024 * 1024);
    assert_int_equal(cf->limits.requests_per_connection, 1000);
    assert_int_equal(cf->limits.connections_per_worker, 10000);
    assert_int_equal(cf->timeouts.header, 10000);
    assert_int_equal(cf->timeouts.body_idle, 30000);
    assert_int_equal(cf->timeouts.keepalive, 75000);
    assert_int_equal(cf->timeouts.send, 60000);
    assert_int_equal(cf->timeouts.shutdown, 30000);
    assert_int_equal(cf->upstream.connect_timeout, 5000);
    assert_int_equal(cf->upstream.read_timeout, 300000);
    assert_int_equal(cf->upstream.idle_timeout, 60000);
    assert_int_equal(cf->upstream.max_idle, 64);
    assert_int_equal(cf->upstream.max_pools, 4096);
    assert_true(cf->upstream.verify);
    assert_null(cf->upstream.ca_file);
    assert_int_equal(cf->log.level, PT_LOG_INFO);
    assert_string_equal(cf->log.error, "stderr");
    assert_string_equal(cf->log.access, "stdout");
    assert_int_equal(cf->log.access_buffer, 32768);
    assert_int_equal(cf->log.access_flush, 1000);
    assert_int_equal(cf->napis, 0);
    assert_string_equal(cf->file, FILE_NAME);
    pt_conf_free(cf);
}

static const char full_yaml[] = "listen:\n"
                                "  - 127.0.0.1:8080\n"
                                "  - '[::1]:8443'\n"
                                "  - address: '*:9443'\n"
                                "    certificate: /etc/c.pem\n"
                                "    key: k.pem\n"
                                "workers: 3\n"
                                "limits:\n"
                                "  headerSize: 16k\n"
                                "  headerCount: 50\n"
                                "  uriLength: 2KiB\n"
                                "  bodySize: 10m\n"
                                "timeouts:\n"
                                "  header: 250ms\n"
                                "  keepalive: 2m\n"
                                "  send: 7\n"
                                "upstream:\n"
                                "  connectTimeout: 1m30s\n"
                                "  verify: false\n"
                                "log:\n"
                                "  level: debug\n"
                                "  access: 'off'\n"
                                "apis:\n"
                                "  - id: echo\n"
                                "    path: /echo/\n"
                                "    serviceUrl: http://127.0.0.1:9000/base/\n"
                                "    operations:\n"
                                "      - id: get-item\n"
                                "        method: GET\n"
                                "        urlTemplate: /items/{id}\n"
                                "      - id: any\n"
                                "        displayName: Anything\n"
                                "        method: '*'\n"
                                "        urlTemplate: /*\n"
                                "  - id: root\n"
                                "    displayName: The root\n"
                                "    path: ''\n"
                                "    host: Example.COM\n"
                                "    subscriptionRequired: false\n"
                                "    subscriptionKeyParameterNames:\n"
                                "      header: X-Key\n"
                                "      query: key\n"
                                "    serviceUrl: https://backend.example:8443\n"
                                "  - id: deep\n"
                                "    path: a/b/c\n"
                                "    serviceUrl: https://backend.example\n";

static void test_full_config(void **state)
{
    struct pt_conf *cf = parse_ok(full_yaml);

    assert_int_equal(cf->nlisten, 3);
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&cf->listen[0].sa;
    assert_int_equal(s4->sin_family, AF_INET);
    assert_int_equal(ntohs(s4->sin_port), 8080);
    assert_int_equal(ntohl(s4->sin_addr.s_addr), INADDR_LOOPBACK);
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&cf->listen[1].sa;
    assert_int_equal(s6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(s6->sin6_port), 8443);
    assert_true(IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr));
    assert_int_equal(cf->listen[1].salen, sizeof(struct sockaddr_in6));
    assert_string_equal(cf->listen[2].address, "*:9443");
    assert_int_equal(cf->listen[2].ncerts, 1);
    assert_string_equal(cf->listen[2].certs[0].certificate, "/etc/c.pem");
    /* relative to the folder of the file ("." here) */
    assert_string_equal(cf->listen[2].certs[0].key, "k.pem");

    assert_int_equal(cf->workers, 3);
    assert_int_equal(cf->limits.header_size, 16384);
    assert_int_equal(cf->limits.header_count, 50);
    assert_int_equal(cf->limits.uri_length, 2048);
    assert_int_equal(cf->limits.body_size, 10 * 1024 * 1024);
    assert_int_equal(cf->timeouts.header, 250);
    assert_int_equal(cf->timeouts.keepalive, 120000);
    assert_int_equal(cf->timeouts.send, 7000);
    assert_int_equal(cf->timeouts.body_idle, 30000); /* untouched default */
    assert_int_equal(cf->upstream.connect_timeout, 90000);
    assert_false(cf->upstream.verify);
    assert_int_equal(cf->log.level, PT_LOG_DEBUG);
    assert_string_equal(cf->log.access, "off");

    assert_int_equal(cf->napis, 3);
    struct pt_api_cf *a = &cf->apis[0];
    assert_string_equal(a->id, "echo");
    assert_string_equal(a->display_name, "echo");
    assert_string_equal(a->path, "echo");
    assert_null(a->host);
    assert_string_equal(a->service_url, "http://127.0.0.1:9000/base/");
    assert_true(a->subscription_required);
    assert_string_equal(a->key_header, "Ocp-Apim-Subscription-Key");
    assert_string_equal(a->key_query, "subscription-key");
    assert_int_equal(a->nops, 2);
    assert_string_equal(a->ops[0].id, "get-item");
    assert_string_equal(a->ops[0].display_name, "get-item");
    assert_string_equal(a->ops[0].method, "GET");
    assert_string_equal(a->ops[0].url_template, "/items/{id}");
    assert_string_equal(a->ops[1].display_name, "Anything");
    assert_string_equal(a->ops[1].method, "*");
    assert_string_equal(a->ops[1].url_template, "/*");

    a = &cf->apis[1];
    assert_string_equal(a->id, "root");
    assert_string_equal(a->display_name, "The root");
    assert_string_equal(a->path, "");
    assert_string_equal(a->host, "example.com");
    assert_false(a->subscription_required);
    assert_string_equal(a->key_header, "X-Key");
    assert_string_equal(a->key_query, "key");
    assert_int_equal(a->nops, 0);

    a = &cf->apis[2];
    assert_string_equal(a->path, "a/b/c");
    assert_true(a->subscription_required);
    pt_conf_free(cf);
}

static void test_workers_and_misc(void **state)
{
    struct pt_conf *cf = parse_ok("listen: [':1', ':2']\nworkers: auto\n");
    assert_true(cf->workers >= 1 && cf->workers <= 256);
    assert_int_equal(cf->nlisten, 2);
    pt_conf_free(cf);

    /* an empty description is allowed; "///" is the root API */
    cf = parse_ok("listen: ':1'\napis:\n  - id: r\n    path: ///\n    description: ''\n");
    assert_string_equal(cf->apis[0].path, "");
    pt_conf_free(cf);

    /* size and duration limits at their bounds */
    cf = parse_ok("listen: ':1'\nlimits:\n  headerSize: 1024\n  uriLength: 1m\n"
                  "timeouts:\n  shutdown: 0\n  header: 30d\n");
    assert_int_equal(cf->limits.header_size, 1024);
    assert_int_equal(cf->limits.uri_length, 1 << 20);
    assert_int_equal(cf->timeouts.shutdown, 0);
    assert_int_equal(cf->timeouts.header, 30u * 86400000u);
    pt_conf_free(cf);
}

/* ----------------------------------------------------------------- errors */

static void test_unknown_keys(void **state)
{
    /* the top-level list grows with every feature: its start and a few names */
    expect_error_like("listen: ':80'\nfoo: 1\n", "t.yaml:2:1: unknown key 'foo' (expected one of: ", "\n");
    expect_error_like("listen: ':80'\nfoo: 1\n", "t.yaml:2:1: unknown key 'foo' (expected one of: ", "bogus");
    expect_error("listen: ':80'\nlimits:\n  headerSiz: 1k\n",
                 "t.yaml:3:3: unknown key 'headerSiz' (expected one of: bufferSize, headerSize, headerLine, "
                 "headerUnderscores, headerCount, uriLength, requestMemory, bodySize, requestsPerConnection, "
                 "connectionsPerWorker, connections, memory, counterKeys, http2)");
    expect_error(
        "listen: ':80'\napis:\n  - id: a\n    path: a\n    operations:\n"
        "      - id: o\n        method: GET\n        urlTemplate: /\n        verb: GET\n",
        "t.yaml:9:9: api 'a' › operation 'o' › verb: unknown key 'verb' (expected one of: id, policies, "
        "responses, "
        "templateParameters, request, grpc, displayName, "
        "description, method, urlTemplate)");
    expect_error("listen:\n  - address: ':80'\n    ssl: yes\n",
                 "t.yaml:3:5: unknown key 'ssl' (expected one of: address, certificate, key, "
                 "certificates, clientCertificate, clientCa, tls, backlog, protocols)");
    expect_error("listen:\n  - address: ':80'\n    tls: yes\n",
                 "t.yaml:3:10: expected a map {minVersion, ciphers, ciphersuites}");
}

static void test_missing_required(void **state)
{
    expect_error("workers: 2\n", "t.yaml:1:1: missing required key 'listen'");
    expect_error("", "t.yaml:1:1: missing required key 'listen'");
    expect_error("listen: ':80'\napis:\n  - id: a\n", "t.yaml:3:5: api 'a': missing required key 'path'");
    expect_error("listen:\n  - certificate: c\n    key: k\n", "t.yaml:2:5: missing required key 'address'");
    expect_error("listen:\n  - address: ':443'\n    certificate: c\n",
                 "t.yaml:2:5: a TLS listener needs both certificate and key");
}

static void test_wrong_types(void **state)
{
    expect_error("listen: ':80'\nworkers: [1]\n", "t.yaml:2:10: expected an integer, found a list");
    expect_error("listen: ':80'\nworkers: abc\n", "t.yaml:2:10: expected an integer, found 'abc'");
    expect_error("listen: ':80'\nworkers: '2'\n", "t.yaml:2:10: expected an integer, found '2'");
    expect_error("listen: ':80'\nlimits: 5\n", "t.yaml:2:9: expected a map, found a scalar");
    expect_error("listen: ':80'\nlimits:\n", "t.yaml:2:8: expected a map, found null");
    expect_error("listen: ':80'\nupstream:\n  verify: yes\n",
                 "t.yaml:3:11: expected true or false, found 'yes'");
    expect_error("listen: ':80'\nupstream:\n  verify: 'true'\n",
                 "t.yaml:3:11: expected true or false, found 'true'");
    expect_error("listen: ':80'\napis: {}\n", "t.yaml:2:7: expected a list of APIs");
    expect_error("listen: {}\n", "t.yaml:1:9: expected a list of listen addresses");
    expect_error("listen: ':80'\napis:\n  - id: a\n    path: [x]\n",
                 "t.yaml:4:11: api 'a' › path: expected a string, found a list");
    expect_error("listen: ':80'\napis:\n  - id: ''\n    path: a\n", "t.yaml:3:9: must not be empty");
}

static void test_out_of_range(void **state)
{
    expect_error("listen: ':80'\nworkers: 0\n", "t.yaml:2:10: 0 is out of range (1..256)");
    expect_error("listen: ':80'\nworkers: 257\n", "t.yaml:2:10: 257 is out of range (1..256)");
    expect_error("listen: ':80'\nlimits:\n  headerCount: 20000\n",
                 "t.yaml:3:16: 20000 is out of range (1..10000)");
    expect_error("listen: ':80'\nlimits:\n  headerCount: 99999999999999999999\n",
                 "t.yaml:3:16: expected an integer, found '99999999999999999999'");
    expect_error("listen: ':80'\nlimits:\n  headerSize: 100\n",
                 "t.yaml:3:15: size out of range (1024..1048576 bytes)");
    expect_error("listen: ':80'\ntimeouts:\n  header: 31d\n",
                 "t.yaml:3:11: expected a duration such as 30 (seconds), 250ms, 10s, 5m or 1h "
                 "(at most 30d), found '31d'");
}

/* A key without an upper bound must not print one: not "(1ms..0ms)". */
static void test_unbounded_range_message(void **state)
{
    expect_error_like("listen: ':80'\ntimeouts:\n  header: 0\n", "t.yaml:3:11: duration must be at least 1ms",
                      "..0ms)");
}

static void test_bad_values(void **state)
{
    expect_error("listen: ':80'\ntimeouts:\n  header: 10x\n",
                 "t.yaml:3:11: expected a duration such as 30 (seconds), 250ms, 10s, 5m or 1h "
                 "(at most 30d), found '10x'");
    expect_error("listen: ':80'\nlimits:\n  bodySize: 12q\n",
                 "t.yaml:3:13: expected a size such as 8192, 16k, 1m or 1g, found '12q'");
    expect_error("listen: ':80'\nlog:\n  level: verbose\n",
                 "t.yaml:3:10: 'verbose' is not one of: error, warn, info, debug");
    expect_error("listen: 1.2.3.4:99999\n",
                 "t.yaml:1:9: '1.2.3.4:99999' is not a listen address (expected HOST:PORT, "
                 "[IPV6]:PORT or :PORT)");
    expect_error("listen:\n  - ':80'\n  - localhost:80\n",
                 "t.yaml:3:5: 'localhost:80' is not a listen address (expected HOST:PORT, "
                 "[IPV6]:PORT or :PORT)");
    expect_error("listen:\n  - ':80'\n  - '0.0.0.0:80'\n",
                 "t.yaml:3:5: address '0.0.0.0:80' is listed twice");
}

static const char *api_with(const char *extra)
{
    static char buf[1024];
    snprintf(buf, sizeof(buf), "listen: ':80'\napis:\n  - id: a\n    path: a\n%s", extra);
    return buf;
}

static void test_service_url(void **state)
{
    expect_error(
        api_with("    serviceUrl: ftp://h/\n"),
        "t.yaml:5:17: api 'a' › serviceUrl: serviceUrl 'ftp://h/' must start with http:// or https://");
    expect_error(
        api_with("    serviceUrl: http://h/p?q=1\n"),
        "t.yaml:5:17: api 'a' › serviceUrl: serviceUrl 'http://h/p?q=1' must not have a query or fragment");
    expect_error(
        api_with("    serviceUrl: http://h/p#f\n"),
        "t.yaml:5:17: api 'a' › serviceUrl: serviceUrl 'http://h/p#f' must not have a query or fragment");
    expect_error(
        api_with("    serviceUrl: http://user:pw@h/\n"),
        "t.yaml:5:17: api 'a' › serviceUrl: serviceUrl 'http://user:pw@h/' must not carry user information");
    expect_error(api_with("    serviceUrl: http://h:99999/\n"),
                 "t.yaml:5:17: api 'a' › serviceUrl: serviceUrl 'http://h:99999/' has a port above 65535");
    expect_error(api_with("    serviceUrl: http://h:8o/\n"),
                 "t.yaml:5:17: api 'a' › serviceUrl: serviceUrl 'http://h:8o/' has an invalid port");
    expect_error(api_with("    serviceUrl: http://h:0\n"),
                 "t.yaml:5:17: api 'a' › serviceUrl: serviceUrl 'http://h:0' has port 0");
    expect_error(api_with("    serviceUrl: http://\n"),
                 "t.yaml:5:17: api 'a' › serviceUrl: serviceUrl 'http://' has no host");
}

static void test_api_checks(void **state)
{
    expect_error(api_with("    operations:\n      - id: o\n        method: get\n        urlTemplate: /\n"),
                 "t.yaml:7:17: api 'a' › operation 'o' › method: 'get' is not an HTTP method in upper case "
                 "(GET, POST, ...) or *");
    expect_error(api_with("    operations:\n      - id: o\n        method: GET\n        urlTemplate: x\n"),
                 "t.yaml:8:22: api 'a' › operation 'o' › urlTemplate: urlTemplate must start with '/'");
    expect_error(
        api_with("    operations:\n      - id: o p\n        method: GET\n        urlTemplate: /\n"),
        "t.yaml:6:13: api 'a' › operation 'o p' › id: id 'o p' may hold only letters, digits and -_.~");
    expect_error(api_with("    operations:\n"
                          "      - {id: o, method: GET, urlTemplate: /a}\n"
                          "      - {id: o, method: PUT, urlTemplate: /a}\n"),
                 "t.yaml:7:14: api 'a' › operation 'o' › id: operation id 'o' is used twice in this API");
    expect_error("listen: ':80'\napis:\n  - id: a\n    path: a\n  - id: a\n    path: b\n",
                 "t.yaml:5:9: api 'a' › id: API id 'a' is used twice");
    expect_error("listen: ':80'\napis:\n  - id: a\n    path: /x/\n  - id: b\n    path: x\n",
                 "t.yaml:6:11: api 'b' › path: path 'x' is already used by API 'a'");
    /* found by sorting: each later duplicate names the first, whatever lies between */
    expect_errors("listen: ':80'\napis:\n  - {id: a, path: x}\n  - {id: b, path: y}\nproducts:\n"
                  "  - {id: p, apis: [a, b, a, a]}\n",
                  "t.yaml:6:26: product 'p' › apis[2]: 'a' is listed twice",
                  "t.yaml:6:29: product 'p' › apis[3]: 'a' is listed twice", (const char *)NULL);
    expect_errors("listen: ':80'\napis:\n  - {id: d, path: x}\n  - {id: a, path: y}\n  - {id: b, path: x}\n"
                  "  - {id: c, path: x}\n  - {id: a, path: z}\n",
                  "t.yaml:7:10: api 'a' › id: API id 'a' is used twice",
                  "t.yaml:5:19: api 'b' › path: path 'x' is already used by API 'd'",
                  "t.yaml:6:19: api 'c' › path: path 'x' is already used by API 'd'", (const char *)NULL);
    expect_errors(
        "listen: ':80'\napis:\n  - {id: a, path: x}\nsubscriptions:\n"
        "  - {id: s1, scope: /apis, primaryKey: key-one-1, secondaryKey: key-two-2}\n"
        "  - {id: s2, scope: /apis, primaryKey: key-three, secondaryKey: key-three}\n"
        "  - {id: s3, scope: /apis, primaryKey: key-two-2, secondaryKey: key-one-1}\n",
        "t.yaml:6:65: subscription 's2' › secondaryKey: the two keys must differ",
        "t.yaml:7:40: subscription 's3' › primaryKey: this key is already a key of subscription 's1'",
        "t.yaml:7:65: subscription 's3' › secondaryKey: this key is already a key of subscription 's1'",
        (const char *)NULL);
    /* a key held three times, by the secondary key first: each later holder names that first one */
    expect_errors(
        "listen: ':80'\napis:\n  - {id: a, path: x}\nsubscriptions:\n"
        "  - {id: s1, scope: /apis, primaryKey: key-zero-0, secondaryKey: key-many-9}\n"
        "  - {id: s2, scope: /apis, primaryKey: key-many-9, secondaryKey: key-one-11}\n"
        "  - {id: s3, scope: /apis, primaryKey: key-two-22, secondaryKey: key-many-9}\n",
        "t.yaml:6:40: subscription 's2' › primaryKey: this key is already a key of subscription 's1'",
        "t.yaml:7:66: subscription 's3' › secondaryKey: this key is already a key of subscription 's1'",
        (const char *)NULL);
    /* the same path on another host is fine */
    struct pt_conf *cf = parse_ok("listen: ':80'\napis:\n  - id: a\n    path: x\n"
                                  "  - id: b\n    path: x\n    host: h.example\n");
    pt_conf_free(cf);
    expect_error(api_with("    host: 'bad host'\n"),
                 "t.yaml:5:11: api 'a' › host: 'bad host' is not a valid host name");
    expect_error("listen: ':80'\napis:\n  - id: a\n    path: a/../b\n",
                 "t.yaml:4:11: api 'a' › path: path 'a/../b' has an empty, '.' or '..' segment");
    expect_error("listen: ':80'\napis:\n  - id: a\n    path: a?b\n",
                 "t.yaml:4:11: api 'a' › path: path 'a?b' has a character not allowed in an API URL suffix");
}

/* The router compares an API's host with the request's Host without its
   port, so a host with a port could never match: refuse it (or drop the port). */
static void test_api_host_port(void **state)
{
    struct pt_errors e = {0};
    const char *text = api_with("    host: example.com:8080\n");
    struct pt_conf *cf = parse(text, &e);
    dump_errors(&e);
    if (cf) {
        assert_null(strchr(cf->apis[0].host, ':'));
        pt_conf_free(cf);
    } else {
        assert_int_equal(e.n, 1);
        assert_int_equal(strncmp(e.msgs[0], "t.yaml:5:11: ", 13), 0);
    }
    pt_node_errors_clear(&e);
}

/* URL templates are compiled while loading: errors point at urlTemplate. */
static void test_template_errors(void **state)
{
    expect_error(
        api_with("    operations:\n      - {id: o, method: GET, urlTemplate: '/a/{id'}\n"),
        "t.yaml:6:43: api 'a' › operation 'o' › urlTemplate: urlTemplate '/a/{id' has an unclosed '{'");
    expect_error(api_with("    operations:\n"
                          "      - {id: o1, method: GET, urlTemplate: '/x/{id}'}\n"
                          "      - {id: o2, method: GET, urlTemplate: '/x/{other}'}\n"),
                 "t.yaml:7:44: api 'a' › operation 'o2' › urlTemplate: urlTemplate '/x/{other}' has the same "
                 "method and URL template as another "
                 "operation ('o1')");
    /* another method, or the same template in another API, is fine */
    struct pt_conf *cf = parse_ok("listen: ':80'\napis:\n"
                                  "  - id: a\n    path: a\n    operations:\n"
                                  "      - {id: o1, method: GET, urlTemplate: '/x/{id}'}\n"
                                  "      - {id: o2, method: PUT, urlTemplate: '/x/{id}'}\n"
                                  "  - id: b\n    path: b\n    operations:\n"
                                  "      - {id: o1, method: GET, urlTemplate: '/x/{id}'}\n");
    pt_conf_free(cf);
}

static void test_yaml_errors(void **state)
{
    expect_error("listen: ':80'\nlisten: ':81'\n", "t.yaml:2:1: duplicate key 'listen'");
    expect_error("listen: ':80'\nlog:\n  level: info\n  level: warn\n", "t.yaml:4:3: duplicate key 'level'");
    expect_error("listen: ':80'\nworkers: 2: 3\n",
                 "t.yaml:2:11: mapping values are not allowed in this context");
    expect_error("listen: ':80'\nworkers: [1\n",
                 "t.yaml:3:1: did not find expected ',' or ']' while parsing a flow sequence");
    expect_error("listen: ':80'\n---\nworkers: 2\n", "t.yaml:3:1: only one YAML document is allowed");
    expect_error("listen: ':80'\n? [a]\n: b\n", "t.yaml:2:3: map keys must be plain strings");
}

/* A NUL spelled in a double-quoted scalar ("\\0", "\\u0000") is refused
   where it stands, naming its key: the rest of the program reads strings
   up to the NUL, so what was checked would not be what runs. */
static void test_nul_characters(void **state)
{
    (void)state;
    expect_error(
        "listen: ':80'\npolicies:\n  inbound:\n    - ip-filter: {action: allow, address: "
        "[\"10.0.0.1\\0\"]}\n",
        "t.yaml:4:44: global policy › inbound[0] ip-filter address[0]: must not contain a NUL character");
    expect_error("listen: ':80'\napis:\n  - id: \"a\\u0000b\"\n",
                 "t.yaml:3:9: apis[0].id: must not contain a NUL character");
    expect_error("listen: ':80'\nlog:\n  \"level\\0\": info\n",
                 "t.yaml:3:3: log: a map key must not contain a NUL character");
    expect_error("\"\\0\"\n", "t.yaml:1:1: must not contain a NUL character");
    expect_error("[\"a\", \"\\x00\"]\n", "t.yaml:1:7: [1]: must not contain a NUL character");
    /* single quotes and plain scalars have no escapes: "\0" is two characters there */
    struct pt_errors e = {0};
    struct pt_conf *cf =
        parse("listen: ':80'\nnamedValues:\n  - {id: a, displayName: a, value: '\\0'}\n", &e);
    dump_errors(&e);
    assert_non_null(cf);
    pt_conf_free(cf);
    pt_node_errors_clear(&e);
}

/* The management API's JSON bodies: the first string with a NUL, by path. */
static void test_json_nul_path(void **state)
{
    (void)state;
    char buf[64];
    json_error_t je;
    json_t *j = json_loads("{\"inbound\": [\"base\", {\"ip-filter\": {\"address\": [\"10.0.0.1\\u0000\"]}}]}",
                           JSON_ALLOW_NUL, &je);
    assert_non_null(j);
    assert_true(pt_node_json_nul_path(j, buf, sizeof(buf)));
    assert_string_equal(buf, "inbound[1].ip-filter.address[0]");
    /* a short buffer truncates the path, never the answer */
    char tiny[8];
    assert_true(pt_node_json_nul_path(j, tiny, sizeof(tiny)));
    assert_string_equal(tiny, "inbound");
    assert_true(pt_node_json_nul_path(j, NULL, 0));
    json_decref(j);
    j = json_loads("{\"a\": [1, true, null, {\"b\": \"\\u0001\"}], \"c\": \"x\"}", JSON_ALLOW_NUL, &je);
    assert_false(pt_node_json_nul_path(j, buf, sizeof(buf)));
    assert_string_equal(buf, "");
    json_decref(j);
    j = json_stringn("\0", 1);
    assert_true(pt_node_json_nul_path(j, buf, sizeof(buf)));
    assert_string_equal(buf, "(document)");
    json_decref(j);
    j = json_object();
    json_object_setn_new(j, "k\0x", 3, json_string("v"));
    assert_true(pt_node_json_nul_path(j, buf, sizeof(buf)));
    assert_string_equal(buf, "k");
    json_decref(j);
    assert_false(pt_node_json_nul_path(NULL, buf, sizeof(buf)));
}

/* The digest of a YAML tree, seeded and with keys skipped as the file's application takes it. */
static struct pt_node_digest digest_of(const char *yaml, const char *const *skip, const char *seed)
{
    struct pt_pool *pool = pt_pool_new(4096);
    struct pt_errors errs = {0};
    struct pt_node *n = pt_node_parse_yaml(pool, NULL, yaml, strlen(yaml), &errs);
    assert_non_null(n);
    assert_int_equal(errs.n, 0);
    struct pt_node_digest d = {0, 0};
    pt_node_digest_text(&d, seed);
    pt_node_digest(n, skip, &d);
    pt_pool_free(pool);
    return d;
}

static bool same_digest(const char *a, const char *b)
{
    struct pt_node_digest x = digest_of(a, NULL, NULL), y = digest_of(b, NULL, NULL);
    return x.a == y.a && x.b == y.b;
}

static int digest_cmp(const void *x, const void *y)
{
    const struct pt_node_digest *a = x, *b = y;
    return a->a != b->a ? (a->a < b->a ? -1 : 1) : a->b != b->b ? (a->b < b->b ? -1 : 1) : 0;
}

/* The digest the file's application tells an entity given unchanged by: the same for the same
   tree wherever it sits in the file, different wherever pt_node_to_json would differ (a quoted
   number, a null, texts cut elsewhere, a list's length, one more key), blind to the keys skipped,
   moved by the seed; and 10,000 entities told apart. */
static void test_node_digest(void **state)
{
    (void)state;
    assert_true(same_digest("{id: a1, path: x, n: 5}", "id: a1\npath: x\nn: 5\n"));
    assert_true(same_digest("a: [1, 2]", "\n\na:\n  - 1\n  - 2\n"));
    assert_false(same_digest("a: 1", "a: \"1\""));
    assert_false(same_digest("a: ~", "a: ''"));
    assert_false(same_digest("a: [ab, c]", "a: [a, bc]"));
    assert_false(same_digest("a: [x, x]", "a: [x, x, x]"));
    assert_false(same_digest("a: {b: 1}", "a: {b: 1, c: 2}"));
    assert_false(same_digest("a: {b: 1}", "a: [b, 1]"));
    assert_false(same_digest("a: true", "a: 'true'"));
    assert_false(same_digest("a: x", "b: x"));
    static const char *const skip[] = {"operations", "policies", NULL};
    struct pt_node_digest with = digest_of("{id: a, path: p, operations: [{id: o}], policies: {inbound: []}}",
                                           skip, NULL),
                          bare = digest_of("{id: a, path: p}", skip, NULL),
                          other = digest_of("{id: a, path: q, operations: [{id: o}]}", skip, NULL),
                          seeded = digest_of("{id: a, path: p}", skip, "ws1");
    assert_true(with.a == bare.a && with.b == bare.b);
    assert_false(other.a == bare.a && other.b == bare.b);
    assert_false(seeded.a == bare.a && seeded.b == bare.b);
    enum { N = 10000 };
    struct pt_node_digest *all = calloc(N, sizeof(*all));
    assert_non_null(all);
    for (int i = 0; i < N; i++) {
        char yaml[96];
        snprintf(yaml, sizeof(yaml), "{id: e%d, path: e%d, serviceUrl: 'http://127.0.0.1:1'}", i, i);
        all[i] = digest_of(yaml, NULL, NULL);
    }
    qsort(all, N, sizeof(*all), digest_cmp);
    for (int i = 1; i < N; i++)
        assert_true(all[i].a != all[i - 1].a && all[i].b != all[i - 1].b);
    free(all);
}

static void test_many_errors(void **state)
{
    expect_errors(
        "listen: ':0'\n"
        "workers: many\n"
        "bogus: 1\n"
        "timeouts:\n"
        "  header: 5y\n"
        "log:\n"
        "  level: LOUD\n"
        "apis:\n"
        "  - id: a\n"
        "    path: a\n"
        "    serviceUrl: ftp://x\n"
        "    operations:\n"
        "      - {id: o, method: get, urlTemplate: /}\n"
        "      - {id: o, method: GET, urlTemplate: /}\n",
        "t.yaml:1:9: ':0' is not a listen address (expected HOST:PORT, [IPV6]:PORT or :PORT)",
        "t.yaml:2:10: expected an integer, found 'many'",
        "t.yaml:3:1: unknown key 'bogus' (expected one of: listen, workers, limits, timeouts, "
        "upstream, log, lua, pluginDir, data, secretKey, samples, management, metrics, trustedProxies, "
        "tracing, apis, "
        "products, groups, users, subscriptions, namedValues, schemas, policyFragments, policies, "
        "certificates, "
        "backends, "
        "workspaces, loggers, "
        "apiVersionSets, gateways, telemetry, analytics, portal, cache, counters, controlPlane)",
        "t.yaml:5:11: expected a duration such as 30 (seconds), 250ms, 10s, 5m or 1h (at most "
        "30d), found '5y'",
        "t.yaml:7:10: 'LOUD' is not one of: error, warn, info, debug",
        "t.yaml:11:17: api 'a' › serviceUrl: serviceUrl 'ftp://x' must start with http:// or https://",
        "t.yaml:13:25: api 'a' › operation 'o' › method: 'get' is not an HTTP method in upper case (GET, "
        "POST, ...) or *",
        "t.yaml:14:14: api 'a' › operation 'o' › id: operation id 'o' is used twice in this API",
        (const char *)NULL);
}

/* ---------------------------------------------------------- value parsers */

static void test_parse_duration(void **state)
{
    static const struct {
        const char *s;
        uint64_t ms;
    } good[] = {
        {"250ms", 250}, {"10s", 10000},   {"1m30s", 90000},       {"2h", 7200000}, {"5", 5000},
        {"0", 0},       {"1d", 86400000}, {"1h1m1s1ms", 3661001}, {"0ms", 0},      {"007s", 7000},
    };
    int fails = 0;
    for (size_t i = 0; i < PT_ARRAY_LEN(good); i++) {
        uint64_t ms = 12345;
        if (!pt_schema_parse_duration_ms(good[i].s, &ms) || ms != good[i].ms) {
            print_message("# FAIL: duration '%s' should be %llu ms\n", good[i].s,
                          (unsigned long long)good[i].ms);
            fails++;
        }
    }
    static const char *const bad[] = {"",     "s",  "10x",  "-1",  "1.5s", "10 s", " 10s",
                                      "10s ", "ms", "1m30", "10S", "1w",   "h1",   "99999999999s"};
    for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++) {
        uint64_t ms = 12345;
        if (pt_schema_parse_duration_ms(bad[i], &ms) || ms != 12345) {
            print_message("# FAIL: duration '%s' should be refused\n", bad[i]);
            fails++;
        }
    }
    assert_int_equal(fails, 0);
}

static void test_parse_size(void **state)
{
    static const struct {
        const char *s;
        uint64_t n;
    } good[] = {
        {"0", 0},
        {"123", 123},
        {"16k", 16384},
        {"16K", 16384},
        {"1m", 1048576},
        {"1g", 1073741824ULL},
        {"1kb", 1024},
        {"1KiB", 1024},
        {"1MB", 1048576},
        {"2GiB", 2147483648ULL},
        {"18446744073709551615", UINT64_MAX},
    };
    int fails = 0;
    for (size_t i = 0; i < PT_ARRAY_LEN(good); i++) {
        uint64_t n = 12345;
        if (!pt_schema_parse_size(good[i].s, &n) || n != good[i].n) {
            print_message("# FAIL: size '%s' should be %llu\n", good[i].s, (unsigned long long)good[i].n);
            fails++;
        }
    }
    static const char *const bad[] = {"",
                                      "k",
                                      "1x",
                                      "1kk",
                                      "-1",
                                      " 1",
                                      "1 k",
                                      "1.5k",
                                      "1ki",
                                      "1kbb",
                                      "1t",
                                      "+1",
                                      "18446744073709551616",
                                      "17179869184g",
                                      "1k "};
    for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++) {
        uint64_t n = 12345;
        if (pt_schema_parse_size(bad[i], &n) || n != 12345) {
            print_message("# FAIL: size '%s' should be refused\n", bad[i]);
            fails++;
        }
    }
    assert_int_equal(fails, 0);
}

static void test_parse_listen(void **state)
{
    struct sockaddr_storage sa;
    socklen_t len = 0;
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&sa;
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&sa;

    assert_true(pt_conf_parse_listen("127.0.0.1:8080", &sa, &len));
    assert_int_equal(s4->sin_family, AF_INET);
    assert_int_equal(ntohs(s4->sin_port), 8080);
    assert_int_equal(ntohl(s4->sin_addr.s_addr), INADDR_LOOPBACK);
    assert_int_equal(len, sizeof(struct sockaddr_in));

    assert_true(pt_conf_parse_listen("[::1]:8443", &sa, &len));
    assert_int_equal(s6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(s6->sin6_port), 8443);
    assert_true(IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr));
    assert_int_equal(len, sizeof(struct sockaddr_in6));

    assert_true(pt_conf_parse_listen("[::]:1", &sa, &len));
    assert_int_equal(s6->sin6_family, AF_INET6);
    assert_true(IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr));

    static const char *const any[] = {":8080", "*:8080", "0.0.0.0:8080"};
    for (size_t i = 0; i < PT_ARRAY_LEN(any); i++) {
        print_message("# listen '%s'\n", any[i]);
        assert_true(pt_conf_parse_listen(any[i], &sa, &len));
        assert_int_equal(s4->sin_family, AF_INET);
        assert_int_equal(ntohs(s4->sin_port), 8080);
        assert_int_equal(ntohl(s4->sin_addr.s_addr), INADDR_ANY);
    }
    assert_true(pt_conf_parse_listen("10.1.2.3:65535", &sa, &len));
    assert_int_equal(ntohs(s4->sin_port), 65535);
    assert_true(pt_conf_parse_listen(":1", &sa, &len));

    static const char *const bad[] = {
        ":0",          ":65536",       ":99999999999999999999",
        "1.2.3.4:",    "1.2.3.4",      "",
        ":",           "localhost:80", "[::1]8080",
        "[::1]",       "[::1:80",      "1.2.3.4:80x",
        "1.2.3.4:-80", "garbage",      "1.2.3.4.5:80",
        "[zz::1]:80",  "1.2.3.4:80 ",  "[::1]:",
    };
    int fails = 0;
    for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++)
        if (pt_conf_parse_listen(bad[i], &sa, &len)) {
            print_message("# FAIL: listen address '%s' should be refused\n", bad[i]);
            fails++;
        }
    assert_int_equal(fails, 0);
}

/* Only the documented forms: HOST:PORT (IPv4), [IPV6]:PORT, :PORT, *:PORT; PORT is digits. */
static void test_parse_listen_strict(void **state)
{
    struct sockaddr_storage sa;
    socklen_t len = 0;
    static const char *const bad[] = {
        "::1:80",         /* IPv6 without brackets: ambiguous ("fe80::1:8080") */
        "[127.0.0.1]:80", /* brackets are for IPv6 only */
        ":+80",           /* a sign is not a digit */
        ": 80",           /* nor is a space */
    };
    int fails = 0;
    for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++)
        if (pt_conf_parse_listen(bad[i], &sa, &len)) {
            print_message("# FAIL: listen address '%s' should be refused\n", bad[i]);
            fails++;
        }
    assert_int_equal(fails, 0);
}

/* ---------------------------------------------------------------- portal */

static void test_portal_defaults(void **state)
{
    (void)state;
    struct pt_conf *cf = parse_ok("listen: [\"0.0.0.0:8080\"]\nportal: {listen: \"127.0.0.1:8002\"}\n");
    const struct pt_portal_cf *p = &cf->portal;
    assert_string_equal(p->listen, "127.0.0.1:8002");
    assert_string_equal(p->public_url, "http://127.0.0.1:8002");
    assert_string_equal(p->gateway_url,
                        "http://127.0.0.1:8080"); /* a wildcard listener is reached on loopback */
    assert_int_equal(p->tls.ncerts, 0);
    assert_int_equal(p->idle_timeout_ms, 30 * 60000);
    assert_int_equal(p->absolute_timeout_ms, 12 * 3600000);
    assert_int_equal(p->max_failures, 5);
    assert_int_equal(p->lockout_ms, 15 * 60000);
    assert_int_equal(p->confirm_ttl_ms, 2 * 86400000LL);
    assert_int_equal(p->reset_ttl_ms, 3600000);
    assert_int_equal(p->max_media, 1024 * 1024);
    assert_string_equal(p->mail.from, "Portico <portal@localhost>");
    assert_true(p->mail.starttls);
    assert_null(p->mail.smtp_url);
    size_t ol = strlen(p->mail.outbox);
    assert_true(ol >= 10 && !strcmp(p->mail.outbox + ol - 10, "var/outbox")); /* in the data folder */
    assert_null(p->site);
    assert_null(p->pages);
    pt_conf_free(cf);
    /* no portal: nothing set up */
    cf = parse_ok("listen: [\"127.0.0.1:8080\"]\n");
    assert_null(cf->portal.listen);
    assert_null(cf->portal.public_url);
    pt_conf_free(cf);
}

static void test_portal_full(void **state)
{
    (void)state;
    struct pt_conf *cf = parse_ok("listen: [\"127.0.0.1:8080\"]\n"
                                  "portal:\n"
                                  "  listen: \"[::]:8002\"\n"
                                  "  publicUrl: \"https://dev.example.com/\"\n"
                                  "  gatewayUrl: \"https://api.example.com\"\n"
                                  "  themeDir: theme\n"
                                  "  sessions: {idleTimeout: 10m, absoluteTimeout: 2d}\n"
                                  "  signin: {maxFailures: 3, lockout: 1h}\n"
                                  "  tokens: {confirm: 1d, reset: 30m}\n"
                                  "  media: {maxSize: 2m}\n"
                                  "  mail:\n"
                                  "    from: \"Dev <dev@example.com>\"\n"
                                  "    smtp: {url: \"smtps://127.0.0.1:465\", username: u, password: \"\"}\n"
                                  "  site: {title: Acme}\n"
                                  "  pages: [{id: about, title: About, markdown: Hi}]\n");
    const struct pt_portal_cf *p = &cf->portal;
    assert_string_equal(p->public_url, "https://dev.example.com"); /* no trailing '/' */
    assert_string_equal(p->gateway_url, "https://api.example.com");
    size_t tl = strlen(p->theme_dir);
    assert_true(tl >= 5 && !strcmp(p->theme_dir + tl - 5, "theme"));
    assert_int_equal(p->idle_timeout_ms, 600000);
    assert_int_equal(p->absolute_timeout_ms, 2 * 86400000LL);
    assert_int_equal(p->max_failures, 3);
    assert_int_equal(p->lockout_ms, 3600000);
    assert_int_equal(p->confirm_ttl_ms, 86400000);
    assert_int_equal(p->reset_ttl_ms, 1800000);
    assert_int_equal(p->max_media, 2 * 1024 * 1024);
    assert_string_equal(p->mail.from, "Dev <dev@example.com>");
    assert_string_equal(p->mail.smtp_url, "smtps://127.0.0.1:465");
    assert_string_equal(p->mail.smtp_username, "u");
    assert_string_equal(p->mail.smtp_password, "");
    assert_false(p->mail.starttls); /* smtps:// is TLS from the start */
    assert_string_equal(json_string_value(json_object_get(p->site, "title")), "Acme");
    assert_int_equal(json_array_size(p->pages), 1);
    assert_non_null(p->site_node);
    assert_int_equal(p->site_node->line, 14);
    pt_conf_free(cf);
}

static void test_portal_errors(void **state)
{
    (void)state;
    expect_error("listen: [\":1\"]\nportal: {listen: nowhere}\n",
                 "t.yaml:2:18: 'nowhere' is not a listen address (expected HOST:PORT)");
    expect_error("listen: [\":1\"]\nportal: {publicUrl: \"ftp://x\"}\n",
                 "t.yaml:2:21: 'ftp://x' is not a base URL (http:// or https://, a host, no query)");
    expect_error("listen: [\":1\"]\nportal: {gatewayUrl: \"http://\"}\n",
                 "t.yaml:2:22: 'http://' is not a base URL (http:// or https://, a host, no query)");
    expect_error("listen: [\":1\"]\nportal:\n  sessions: {idleTimeout: 5y}\n",
                 "t.yaml:3:27: expected a duration from 1s to 365d such as 30m, 12h or 2d, found '5y'");
    expect_error("listen: [\":1\"]\nportal:\n  signin: {maxFailures: 0}\n",
                 "t.yaml:3:25: 0 is out of range (1..1000)");
    expect_error("listen: [\":1\"]\nportal:\n  mail: {smtp: {url: \"http://x\"}}\n",
                 "t.yaml:3:22: 'http://x' is not an SMTP URL (smtp://HOST:PORT or smtps://HOST:PORT)");
    expect_error("listen: [\":1\"]\nportal:\n  pages: {id: a}\n",
                 "t.yaml:3:10: expected a list, found a map");
    expect_error("listen: [\":1\"]\nportal:\n  site: [a]\n", "t.yaml:3:9: expected a map, found a list");
    expect_error("listen: [\":1\"]\nportal:\n  listen: \"127.0.0.1:8002\"\n  certificate: c.pem\n",
                 "t.yaml:3:3: an HTTPS portal listener needs both certificate and key");
    expect_error(
        "listen: [\":1\"]\nportal:\n  bogus: 1\n",
        "t.yaml:3:3: unknown key 'bogus' (expected one of: listen, certificate, key, tls, publicUrl, "
        "gatewayUrl, themeDir, sessions, signin, tokens, media, mail, site, pages, templates, "
        "identityProviders)");
    expect_error(
        "listen: [\":1\"]\nportal:\n  identityProviders:\n    - {id: x, issuer: \"http://idp.example\", "
        "clientId: c}\n",
        "t.yaml:4:23: issuer must be an https:// URL (allowInsecure permits http:// on loopback)");
}

/* A user's names go into pages and mail bodies: a line break or another control character (C0, DEL,
   C1, U+2028) is refused where the name is written, with its position; accents are names. */
static void test_user_names(void **state)
{
    (void)state;
    expect_error(
        "listen: ':80'\nusers:\n  - id: u1\n    email: u1@example.com\n    firstName: \"Eve\\r\\nClick\"\n",
        "t.yaml:5:16: user 'u1' › firstName: firstName holds a control character");
    expect_error(
        "listen: ':80'\nusers:\n  - id: u1\n    email: u1@example.com\n    lastName: \"A\\u2028B\"\n",
        "t.yaml:5:15: user 'u1' › lastName: lastName holds a control character");
    struct pt_conf *cf = parse_ok("listen: ':80'\nusers:\n  - id: u1\n    email: u1@example.com\n"
                                  "    firstName: \"Zo\\u00eb\"\n    lastName: \"O'Brien\"\n");
    assert_string_equal(cf->users[0].first_name, "Zo\xc3\xab");
    pt_conf_free(cf);
}

/* An address belongs to one user (compared without case); a closed account (deleted) gives its
   address back.  Each later holder is refused naming every earlier one, in the file's order. */
static void test_user_emails_unique(void **state)
{
    (void)state;
    expect_errors("listen: ':80'\nusers:\n"
                  "  - {id: a, email: x@example.com}\n"
                  "  - {id: b, email: y@example.com}\n"
                  "  - {id: c, email: X@Example.com}\n"
                  "  - {id: d, email: Y@example.COM}\n"
                  "  - {id: e, email: x@example.com}\n",
                  "t.yaml:5:20: user 'c' › email: email 'X@Example.com' belongs to user 'a'",
                  "t.yaml:6:20: user 'd' › email: email 'Y@example.COM' belongs to user 'b'",
                  "t.yaml:7:20: user 'e' › email: email 'x@example.com' belongs to user 'a'",
                  "t.yaml:7:20: user 'e' › email: email 'x@example.com' belongs to user 'c'",
                  (const char *)NULL);
    struct pt_conf *cf = parse_ok("listen: ':80'\nusers:\n"
                                  "  - {id: a, email: x@example.com, state: deleted}\n"
                                  "  - {id: b, email: X@example.com}\n"
                                  "  - {id: c, email: x@example.com, state: deleted}\n");
    assert_int_equal(cf->nusers, 3);
    pt_conf_free(cf);
    /* a deleted holder between two live ones: the later live one is told about the first, never
       about the deleted one */
    expect_errors("listen: ':80'\nusers:\n"
                  "  - {id: a, email: x@example.com}\n"
                  "  - {id: b, email: X@example.com, state: deleted}\n"
                  "  - {id: c, email: x@EXAMPLE.com}\n",
                  "t.yaml:5:20: user 'c' › email: email 'x@EXAMPLE.com' belongs to user 'a'",
                  (const char *)NULL);
}

/* cache: the stores' settings, the Redis URL and its parts, the checks across keys. */
static void test_cache_conf(void **state)
{
    (void)state;
    struct pt_conf *cf = parse_ok("listen: ':80'\n");
    assert_int_equal(cf->cache.memory, 64ULL << 20);
    assert_int_equal(cf->cache.max_entry, 2ULL << 20);
    assert_null(cf->cache.redis);
    assert_int_equal(cf->cache.connect_timeout, 1000);
    assert_int_equal(cf->cache.command_timeout, 250);
    pt_conf_free(cf);
    cf = parse_ok("listen: ':80'\ncache: {memory: 0, redis: \"redis://us%3Aer:p%40ss@127.0.0.1:6390/3\", "
                  "commandTimeout: 50ms}\n");
    assert_int_equal(cf->cache.memory, 0);
    assert_string_equal(cf->cache.host, "127.0.0.1");
    assert_int_equal(cf->cache.port, 6390);
    assert_int_equal(cf->cache.db, 3);
    assert_string_equal(cf->cache.username, "us:er");
    assert_string_equal(cf->cache.password, "p@ss");
    assert_false(cf->cache.tls);
    assert_int_equal(cf->cache.command_timeout, 50);
    pt_conf_free(cf);
    /* the keys win over the URL, whatever their order */
    cf = parse_ok("listen: ':80'\ncache:\n  password: key\n  redis: \"rediss://:url@[::1]\"\n"
                  "  tls: {verify: false}\n");
    assert_string_equal(cf->cache.password, "key");
    assert_null(cf->cache.username);
    assert_string_equal(cf->cache.host, "::1");
    assert_int_equal(cf->cache.port, 6379);
    assert_true(cf->cache.tls);
    assert_false(cf->cache.verify);
    pt_conf_free(cf);
    cf = parse_ok("listen: ':80'\ncache: {redis: \"redis://secret@cache.internal\"}\n");
    assert_string_equal(cf->cache.password, "secret");
    assert_string_equal(cf->cache.host, "cache.internal");
    pt_conf_free(cf);
    expect_error("listen: ':80'\ncache: {redis: \"http://x\"}\n",
                 "t.yaml:2:16: 'http://x' is not a Redis URL (redis://[user:password@]host:port/db, or "
                 "rediss:// for TLS)");
    expect_error("listen: ':80'\ncache: {redis: \"redis://h:0\"}\n",
                 "t.yaml:2:16: Redis URL: a port that is not 1-65535 (redis://[user:password@]host:port/db)");
    expect_error("listen: ':80'\ncache: {redis: \"redis://h:6379/x\"}\n",
                 "t.yaml:2:16: Redis URL: a database that is not a number 0-65535 "
                 "(redis://[user:password@]host:port/db)");
    expect_error("listen: ':80'\ncache: {redis: \"redis://:pw@\"}\n",
                 "t.yaml:2:16: Redis URL: no host (redis://[user:password@]host:port/db)");
    expect_error(
        "listen: ':80'\ncache: {redis: \"redis://:p%zz@h\"}\n",
        "t.yaml:2:16: Redis URL: a broken %-escape in the password (redis://[user:password@]host:port/db)");
    expect_error(
        "listen: ':80'\ncache: {redis: \"redis://h\\r\\nx\"}\n",
        "t.yaml:2:16: Redis URL: a host name that is not valid (redis://[user:password@]host:port/db)");
    expect_error("listen: ':80'\ncache: {redis: \"redis://h?x=1\"}\n",
                 "t.yaml:2:16: Redis URL: a query or fragment (not supported: use the cache keys) "
                 "(redis://[user:password@]host:port/db)");
    expect_error("listen: ':80'\ncache: {redis: \"redis://h\", tls: {verify: false}}\n",
                 "t.yaml:2:34: tls applies to a rediss:// URL; 'redis://h' is redis://");
    expect_error("listen: ':80'\ncache: {redis: \"redis://h\", username: u}\n",
                 "t.yaml:2:39: a Redis user name needs a password");
    expect_error("listen: ':80'\ncache: {password: p}\n",
                 "t.yaml:2:19: a Redis password or user name without cache.redis");
    expect_error("listen: ':80'\ncache: {maxEntry: 0}\n",
                 "t.yaml:2:19: size out of range (1..67108864 bytes)");
    expect_error("listen: ':80'\ncache: {commandTimeout: 0}\n",
                 "t.yaml:2:25: duration out of range (1ms..60000ms)");
}

/* Backends (13): ISO 8601 durations and the entity's own checks (references are pt_conf_check's). */
static void test_backend_durations(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t ms;
    } good[] = {{"PT30S", 30000},  {"PT1M", 60000},   {"PT1M30S", 90000},  {"PT0.5S", 500},
                {"P1D", 86400000}, {"PT2H", 7200000}, {"P0DT1H", 3600000}, {"30s", 30000},
                {"250ms", 250},    {"pt1s", 1000}};
    int fails = 0;
    for (size_t i = 0; i < PT_ARRAY_LEN(good); i++) {
        uint64_t ms = 1;
        if (!pt_conf_entities_parse_duration(good[i].s, &ms) || ms != good[i].ms) {
            print_message("# FAIL: '%s' should be %llu ms\n", good[i].s, (unsigned long long)good[i].ms);
            fails++;
        }
    }
    static const char *const bad[] = {"",    "P",     "PT",    "PT1X",   "P1W",      "PT1M1M",  "PT1S1M",
                                      "P1H", "PT1D",  "PT-1S", "PT1.5M", "P2D",      "PT0x10S", "PT1e2S",
                                      "1w",  "PT1S ", " PT1S", "P1Y",    "PT99999H", "TP1S",    "PTT1S"};
    for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++) {
        uint64_t ms = 7;
        if (pt_conf_entities_parse_duration(bad[i], &ms) || ms != 7) {
            print_message("# FAIL: '%s' should be refused\n", bad[i]);
            fails++;
        }
    }
    assert_int_equal(fails, 0);
}

static void test_backend_checks(void **state)
{
    (void)state;
    expect_error("listen: ':80'\nbackends:\n  - id: b\n",
                 "t.yaml:3:9: backend 'b' › id: backend 'b': a Single backend needs a url");
    expect_error("listen: ':80'\nbackends:\n  - id: b\n    url: ftp://h/\n",
                 "t.yaml:4:10: backend 'b' › url: url 'ftp://h/' must start with http:// or https://");
    expect_error("listen: ':80'\nbackends:\n  - id: b\n    type: Pool\n",
                 "t.yaml:4:11: backend 'b' › type: backend 'b': a Pool needs pool.services");
    expect_error(
        "listen: ':80'\nbackends:\n  - id: b\n    type: Pool\n    pool: {services: []}\n",
        "t.yaml:5:22: backend 'b' › pool.services: a pool needs services: a list of 1 to 256 backends");
    expect_error(
        "listen: ':80'\nbackends:\n  - id: b\n    type: Pool\n    url: http://h\n"
        "    pool: {services: [{id: a}]}\n",
        "t.yaml:5:10: backend 'b' › url: backend 'b': a Pool has no url of its own (its services have)");
    expect_error(
        "listen: ':80'\nbackends:\n  - id: b\n    type: Pool\n"
        "    pool: {services: [{id: a, weight: 0}]}\n",
        "t.yaml:5:39: backend 'b' › pool.services[0].weight: weight must be an integer from 1 to 1000");
    expect_error("listen: ':80'\nbackends:\n  - id: b\n    type: Pool\n"
                 "    pool: {services: [{id: a}, {id: a}]}\n",
                 "t.yaml:5:37: backend 'b' › pool.services[1].id: backend 'a' is listed twice in this pool");
    const char *cb = "listen: ':80'\nbackends:\n  - id: b\n    url: http://h\n    circuitBreaker:\n"
                     "      rules:\n        - tripDuration: PT1M\n          failureCondition:\n";
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s            interval: PT1M\n            errorReasons: [Timeout]\n", cb);
    expect_error(buf, "t.yaml:9:13: backend 'b' › circuitBreaker.rules[0].failureCondition: failureCondition "
                      "needs count or percentage");
    snprintf(buf, sizeof(buf),
             "%s            count: 1\n            percentage: 5\n            interval: PT1M\n"
             "            errorReasons: [Timeout]\n",
             cb);
    expect_error(buf, "t.yaml:10:25: backend 'b' › circuitBreaker.rules[0].failureCondition.percentage: "
                      "failureCondition takes count or percentage, not both");
    snprintf(buf, sizeof(buf),
             "%s            count: 1\n            interval: PT1M\n"
             "            statusCodeRanges: [{min: 500, max: 600}]\n",
             cb);
    expect_error_like(buf, "t.yaml:11:", "count");
    snprintf(buf, sizeof(buf),
             "%s            count: 1\n            interval: PT1M\n"
             "            statusCodeRanges: [{min: 504, max: 500}]\n",
             cb);
    expect_error(
        buf, "t.yaml:11:38: backend 'b' › circuitBreaker.rules[0].failureCondition.statusCodeRanges[0].min: "
             "min 504 is above max 500");
    snprintf(buf, sizeof(buf),
             "%s            count: 1\n            interval: PT1Q\n"
             "            errorReasons: [Timeout]\n",
             cb);
    expect_error(buf, "t.yaml:10:23: backend 'b' › circuitBreaker.rules[0].failureCondition.interval: "
                      "interval 'PT1Q' is not a duration (ISO 8601 such as PT30S, PT1M, PT0.5S, or "
                      "30s, 250ms; above 0, at most a day)");
    snprintf(buf, sizeof(buf), "%s            count: 1\n            interval: PT1M\n", cb);
    expect_error(buf, "t.yaml:9:13: backend 'b' › circuitBreaker.rules[0].failureCondition: failureCondition "
                      "needs statusCodeRanges or errorReasons (what is a failure)");
    expect_error("listen: ':80'\nbackends:\n  - id: b\n    url: http://h\n"
                 "    credentials: {header: {Host: [x]}}\n",
                 "t.yaml:5:28: backend 'b' › credentials.header.Host: Host is set by the gateway; a "
                 "credential cannot set it");
    expect_error("listen: ':80'\nbackends:\n  - id: b\n    url: http://h\n"
                 "    credentials: {header: {X-A: [\"a\\r\\nb\"]}}\n",
                 "t.yaml:5:34: backend 'b' › credentials.header.X-A[0]: a value of X-A is a string without "
                 "CR, LF or NUL");
    expect_error("listen: ':80'\nbackends:\n  - id: b\n    url: http://h\n"
                 "    healthCheck: {interval: 1s, timeout: 2s}\n",
                 "t.yaml:5:42: backend 'b' › healthCheck.timeout: backend 'b': healthCheck.timeout is longer "
                 "than its interval");
    /* a full one reads into the runtime fields */
    struct pt_conf *cf =
        parse_ok("listen: ':80'\nbackends:\n  - id: m\n    url: http://h/x\n"
                 "    tls: {validateCertificateName: false}\n"
                 "    healthCheck: {path: /h}\n"
                 "    circuitBreaker:\n      rules:\n        - name: r\n"
                 "          tripDuration: PT1M\n          acceptRetryAfter: true\n"
                 "          failureCondition: {percentage: 40, interval: PT10S,\n"
                 "            statusCodeRanges: [{min: 500, max: 599}], errorReasons: [Timeout]}\n"
                 "  - id: p\n    type: Pool\n"
                 "    pool: {services: [{id: m, weight: 3, priority: 1}]}\n");
    assert_int_equal(cf->nbackends, 2);
    const struct pt_backend_cf *m = &cf->backends[0], *p = &cf->backends[1];
    assert_true(m->tls_chain && !m->tls_name && m->hc_on);
    assert_string_equal(m->hc_path, "/h");
    assert_int_equal(m->nrules, 1);
    assert_int_equal(m->rules[0].percentage, 40);
    assert_int_equal(m->rules[0].interval_ms, 10000);
    assert_int_equal(m->rules[0].trip_ms, 60000);
    assert_true(m->rules[0].accept_retry_after);
    assert_int_equal(m->rules[0].nranges, 1);
    assert_int_equal(m->rules[0].ranges[0].max, 599);
    assert_string_equal(m->rules[0].reasons[0], "Timeout");
    assert_int_equal(p->type, 1);
    assert_int_equal(p->nmembers, 1);
    assert_int_equal(p->members[0].weight, 3);
    assert_int_equal(p->members[0].priority, 1);
    pt_conf_free(cf);
}

/* Lines of the log file at path that contain what. */
static int log_lines_with(const char *path, const char *what)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    int n = 0;
    while (f && fgets(line, sizeof(line), f))
        n += strstr(line, what) != NULL;
    if (f)
        fclose(f);
    return n;
}

/* The expiry check runs hourly and at each publish: once per certificate and state (near expiry,
   expired), again after it crosses into the next state or after it was deleted and came back. */
static void test_expiry_logged_once_per_crossing(void **state)
{
    (void)state;
    char path[] = "/tmp/portico-expiry-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(pt_log_open(path), 0);
    int64_t now = (int64_t)(pt_clock_wall_ms() / 1000);
    struct pt_storecert_cf cert = {.id = "soon",
                                   .chain_pem = "pem",
                                   .thumbprint = "AB",
                                   .expiration = "then",
                                   .not_after = now + 10 * 86400};
    struct pt_conf cf = {.certs = &cert, .ncerts = 1}, none = {0};
    pt_model_log_expiry(&cf, true);
    pt_model_log_expiry(&cf, false); /* the hourly check: nothing new */
    assert_int_equal(log_lines_with(path, "certificate 'soon' expires on"), 1);
    cert.not_after = now - 60; /* it crossed into expired between two checks */
    pt_model_log_expiry(&cf, false);
    pt_model_log_expiry(&cf, false);
    assert_int_equal(log_lines_with(path, "certificate 'soon' expired on"), 1);
    pt_model_log_expiry(&none, false); /* deleted: forgotten */
    pt_model_log_expiry(&cf, false);
    assert_int_equal(log_lines_with(path, "certificate 'soon' expired on"), 2);
    pt_model_log_expiry(&cf, true); /* a reload tells again */
    assert_int_equal(log_lines_with(path, "certificate 'soon' expired on"), 3);
    pt_log_open("stderr");
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_expiry_logged_once_per_crossing),
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_workers_and_misc),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_unbounded_range_message),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_service_url),
        cmocka_unit_test(test_api_checks),
        cmocka_unit_test(test_api_host_port),
        cmocka_unit_test(test_template_errors),
        cmocka_unit_test(test_yaml_errors),
        cmocka_unit_test(test_nul_characters),
        cmocka_unit_test(test_json_nul_path),
        cmocka_unit_test(test_node_digest),
        cmocka_unit_test(test_many_errors),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_listen),
        cmocka_unit_test(test_parse_listen_strict),
        cmocka_unit_test(test_portal_defaults),
        cmocka_unit_test(test_portal_full),
        cmocka_unit_test(test_portal_errors),
        cmocka_unit_test(test_user_names),
        cmocka_unit_test(test_cache_conf),
        cmocka_unit_test(test_backend_durations),
        cmocka_unit_test(test_backend_checks),
        cmocka_unit_test(test_user_emails_unique),
    };
    return cmocka_run_group_tests_name("conf", tests, NULL, NULL);
}
