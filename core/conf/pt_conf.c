/*
 * pt_conf -- configuration schema and validation.
 *
 * The tables below are the configuration reference in data form: each map
 * the file may contain has one table listing its keys.  pt_cf_map() walks a
 * map with its table, reports unknown keys, wrong types, bad values and
 * missing required keys, and stores values by offset.  Lists of entities
 * (listeners, APIs, operations) have small custom readers.  Checks that
 * span several values (unique ids, one API per path) run afterwards.
 */
#include "conf/pt_conf.h"
#include "base/pt_log.h"
#include "conf/pt_router.h"
#include "base/pt_url.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---------------------------------------------------------------- scalars */

static bool want_scalar(struct pt_cfctx *cx, struct pt_node *n, const char *what)
{
    if (n->kind != PT_N_SCALAR || n->null) {
        pt_node_error(cx->errs, n, "expected %s, found %s", what, pt_node_kind_name(n));
        return false;
    }
    return true;
}

bool pt_cf_str(struct pt_cfctx *cx, struct pt_node *n, char **out, bool empty_ok)
{
    if (n->kind == PT_N_SCALAR && n->null && empty_ok && n->len == 0) {
        *out = "";
        return true;
    }
    if (!want_scalar(cx, n, "a string"))
        return false;
    if (!empty_ok && n->len == 0) {
        pt_node_error(cx->errs, n, "must not be empty");
        return false;
    }
    if (memchr(n->str, '\0', n->len)) {
        pt_node_error(cx->errs, n, "must not contain NUL");
        return false;
    }
    *out = n->str;
    return true;
}

bool pt_cf_bool(struct pt_cfctx *cx, struct pt_node *n, bool *out)
{
    if (!want_scalar(cx, n, "true or false"))
        return false;
    if (!n->quoted) {
        if (!strcmp(n->str, "true") || !strcmp(n->str, "True") || !strcmp(n->str, "TRUE")) {
            *out = true;
            return true;
        }
        if (!strcmp(n->str, "false") || !strcmp(n->str, "False") || !strcmp(n->str, "FALSE")) {
            *out = false;
            return true;
        }
    }
    pt_node_error(cx->errs, n, "expected true or false, found '%s'", n->str);
    return false;
}

bool pt_cf_int(struct pt_cfctx *cx, struct pt_node *n, int64_t min, int64_t max, int64_t *out)
{
    if (!want_scalar(cx, n, "an integer"))
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(n->str, &end, 10);
    if (n->quoted || errno || end == n->str || *end || !(isdigit((unsigned char)n->str[0]) || n->str[0] == '-')) {
        pt_node_error(cx->errs, n, "expected an integer, found '%s'", n->str);
        return false;
    }
    if (v < min || v > max) {
        pt_node_error(cx->errs, n, "%lld is out of range (%lld..%lld)", v, (long long)min, (long long)max);
        return false;
    }
    *out = v;
    return true;
}

bool pt_parse_duration_ms(const char *s, uint64_t *ms)
{
    uint64_t total = 0;
    const char *p = s;
    if (!*p)
        return false;
    /* a plain number is seconds */
    while (*p) {
        if (!isdigit((unsigned char)*p))
            return false;
        uint64_t v = 0;
        while (isdigit((unsigned char)*p)) {
            v = v * 10 + (uint64_t)(*p++ - '0');
            if (v > 1000000000ULL)
                return false;
        }
        uint64_t mul;
        if (!*p)
            mul = p == s || total == 0 ? 1000 : 0;
        else if (!strncmp(p, "ms", 2)) {
            mul = 1;
            p += 2;
        } else if (*p == 's') {
            mul = 1000;
            p++;
        } else if (*p == 'm') {
            mul = 60000;
            p++;
        } else if (*p == 'h') {
            mul = 3600000;
            p++;
        } else if (*p == 'd') {
            mul = 86400000;
            p++;
        } else
            return false;
        if (mul == 0)
            return false;
        total += v * mul;
    }
    *ms = total;
    return true;
}

bool pt_parse_size(const char *s, uint64_t *bytes)
{
    char *end;
    if (!isdigit((unsigned char)*s))
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return false;
    uint64_t mul = 1;
    if (*end) {
        switch (tolower((unsigned char)*end)) {
        case 'k': mul = 1024ULL; break;
        case 'm': mul = 1024ULL * 1024; break;
        case 'g': mul = 1024ULL * 1024 * 1024; break;
        default: return false;
        }
        end++;
        if (*end == 'b' || *end == 'B' || ((*end == 'i') && (end[1] == 'b' || end[1] == 'B')))
            end += *end == 'i' ? 2 : 1;
        if (*end)
            return false;
    }
    if (v > UINT64_MAX / mul)
        return false;
    *bytes = v * mul;
    return true;
}

bool pt_cf_size(struct pt_cfctx *cx, struct pt_node *n, uint64_t *out)
{
    if (!want_scalar(cx, n, "a size"))
        return false;
    if (!pt_parse_size(n->str, out)) {
        pt_node_error(cx->errs, n, "expected a size such as 8192, 16k, 1m or 1g, found '%s'", n->str);
        return false;
    }
    return true;
}

bool pt_cf_ms(struct pt_cfctx *cx, struct pt_node *n, uint32_t *out)
{
    uint64_t ms;
    if (!want_scalar(cx, n, "a duration"))
        return false;
    if (!pt_parse_duration_ms(n->str, &ms) || ms > 30ULL * 86400000) {
        pt_node_error(cx->errs, n,
                      "expected a duration such as 30 (seconds), 250ms, 10s, 5m or 1h (at most 30d), found '%s'",
                      n->str);
        return false;
    }
    *out = (uint32_t)ms;
    return true;
}

char *pt_cf_path(struct pt_cfctx *cx, const char *path)
{
    if (path[0] == '/' || !cx->dir || !cx->dir[0] || !strcmp(cx->dir, "."))
        return pt_pool_strdup(cx->pool, path);
    return pt_pool_printf(cx->pool, "%s/%s", cx->dir, path);
}

/* ------------------------------------------------------------------- maps */

static void list_keys(const struct pt_cfkey *keys, char *buf, size_t size)
{
    size_t k = 0;
    buf[0] = '\0';
    for (const struct pt_cfkey *c = keys; c->name && k + 2 < size; c++) {
        int w = snprintf(buf + k, size - k, "%s%s", k ? ", " : "", c->name);
        if (w < 0)
            break;
        k += (size_t)w;
    }
}

static bool set_value(struct pt_cfctx *cx, struct pt_node *v, const struct pt_cfkey *key, void *base)
{
    void *field = (char *)base + key->off;
    switch (key->type) {
    case PT_CT_STR: {
        char *s;
        if (!pt_cf_str(cx, v, &s, key->flags & PT_CF_EMPTY_OK))
            return false;
        *(char **)field = (key->flags & PT_CF_PATH) ? pt_cf_path(cx, s) : s;
        return true;
    }
    case PT_CT_BOOL:
        return pt_cf_bool(cx, v, (bool *)field);
    case PT_CT_INT:
        return pt_cf_int(cx, v, key->min, key->max, (int64_t *)field);
    case PT_CT_SIZE: {
        uint64_t b;
        if (!pt_cf_size(cx, v, &b))
            return false;
        if ((key->min && b < (uint64_t)key->min) || (key->max && b > (uint64_t)key->max)) {
            if (key->max)
                pt_node_error(cx->errs, v, "size out of range (%lld..%lld bytes)", (long long)key->min,
                              (long long)key->max);
            else
                pt_node_error(cx->errs, v, "size must be at least %lld bytes", (long long)key->min);
            return false;
        }
        *(uint64_t *)field = b;
        return true;
    }
    case PT_CT_MS: {
        uint32_t ms;
        if (!pt_cf_ms(cx, v, &ms))
            return false;
        if ((key->min && ms < key->min) || (key->max && ms > key->max)) {
            if (key->max)
                pt_node_error(cx->errs, v, "duration out of range (%lldms..%lldms)", (long long)key->min,
                              (long long)key->max);
            else
                pt_node_error(cx->errs, v, "duration must be at least %lldms", (long long)key->min);
            return false;
        }
        *(uint32_t *)field = ms;
        return true;
    }
    case PT_CT_ENUM: {
        if (!want_scalar(cx, v, "a name"))
            return false;
        for (int i = 0; key->enums[i]; i++)
            if (!strcmp(key->enums[i], v->str)) {
                *(int *)field = i;
                return true;
            }
        char all[256] = "";
        size_t k = 0;
        for (int i = 0; key->enums[i] && k < sizeof(all) - 2; i++)
            k += (size_t)snprintf(all + k, sizeof(all) - k, "%s%s", i ? ", " : "", key->enums[i]);
        pt_node_error(cx->errs, v, "'%s' is not one of: %s", v->str, all);
        return false;
    }
    case PT_CT_MAP:
        return pt_cf_map(cx, v, key->sub, base);
    case PT_CT_CUSTOM:
        return key->fn(cx, v, field);
    }
    return false;
}

bool pt_cf_map(struct pt_cfctx *cx, struct pt_node *node, const struct pt_cfkey *keys, void *base)
{
    if (node->kind != PT_N_MAP) {
        pt_node_error(cx->errs, node, "expected a map, found %s", pt_node_kind_name(node));
        return false;
    }
    bool ok = true;
    for (int i = 0; i < node->n; i++) {
        struct pt_node *k = pt_node_key(node, i), *v = pt_node_val(node, i);
        const struct pt_cfkey *key = NULL;
        for (const struct pt_cfkey *c = keys; c->name; c++)
            if (!strcmp(c->name, k->str)) {
                key = c;
                break;
            }
        if (!key) {
            char all[1024];
            list_keys(keys, all, sizeof(all));
            pt_node_error(cx->errs, k, "unknown key '%s' (expected one of: %s)", k->str, all);
            ok = false;
            continue;
        }
        if (!set_value(cx, v, key, base))
            ok = false;
    }
    for (const struct pt_cfkey *c = keys; c->name; c++)
        if ((c->flags & PT_CF_REQUIRED) && !pt_node_get(node, c->name)) {
            pt_node_error(cx->errs, node, "missing required key '%s'", c->name);
            ok = false;
        }
    return ok;
}

/* --------------------------------------------------------------- listeners */

int pt_listen_backlog(int backlog)
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

bool pt_parse_listen(const char *text, struct sockaddr_storage *sa, socklen_t *salen)
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
    {"certificate", PT_CT_STR, offsetof(struct pt_cert_cf, certificate), PT_CF_REQUIRED | PT_CF_PATH},
    {"key", PT_CT_STR, offsetof(struct pt_cert_cf, key), PT_CF_REQUIRED | PT_CF_PATH},
    {0},
};

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
        ok &= pt_cf_map(cx, n->items[i], cert_keys, &l->certs[i]);
    }
    l->ncerts = n->n;
    return ok;
}

static bool read_tls_opts(struct pt_cfctx *cx, struct pt_node *n, void *field);

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
                    if (pt_cf_str(cx, c, &cs1, false) && pt_cf_str(cx, k, &ks1, false)) {
                        l->certs[0].certificate = pt_cf_path(cx, cs1);
                        l->certs[0].key = pt_cf_path(cx, ks1);
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
                    ok &= pt_cf_str(cx, pt_node_val(it, j), &l->address, false);
                } else if (!strcmp(kn, "certificates")) {
                    ok &= read_certs(cx, pt_node_val(it, j), &l->certs);
                } else if (!strcmp(kn, "clientCertificate")) {
                    static const char *const modes[] = {"none", "optional", "required", "verified", NULL};
                    char *m;
                    int mi = -1;
                    if (pt_cf_str(cx, pt_node_val(it, j), &m, false))
                        for (int q = 0; modes[q]; q++)
                            if (!strcmp(modes[q], m))
                                mi = q;
                    if (mi < 0) {
                        pt_node_error(cx->errs, pt_node_val(it, j), "expected none, optional, required or verified");
                        ok = false;
                    } else
                        l->client_cert = mi;
                } else if (!strcmp(kn, "backlog")) {
                    int64_t bl;
                    if (pt_cf_int(cx, pt_node_val(it, j), 1, 65535, &bl))
                        l->backlog = (int)bl;
                    else
                        ok = false;
                } else if (!strcmp(kn, "tls")) {
                    ok &= read_tls_opts(cx, pt_node_val(it, j), &l->tls);
                } else if (!strcmp(kn, "clientCa")) {
                    char *ca;
                    if (pt_cf_str(cx, pt_node_val(it, j), &ca, false))
                        l->client_ca = pt_cf_path(cx, ca);
                    else
                        ok = false;
                } else {
                    pt_node_error(cx->errs, pt_node_key(it, j),
                                  "unknown key '%s' (expected one of: address, certificate, key, certificates, "
                                  "clientCertificate, clientCa, tls, backlog)",
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
        } else if (!pt_cf_str(cx, it, &l->address, false)) {
            ok = false;
            continue;
        }
        if (!l->address)
            continue;
        if (!pt_parse_listen(l->address, &l->sa, &l->salen)) {
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

/* Keeps a node whose contents are validated later (policy documents). */
static bool read_node(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    *(struct pt_node **)field = n;
    return true;
}

static bool read_list_node(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    if (n->kind != PT_N_SEQ) {
        pt_node_error(cx->errs, n, "expected a list, found %s", pt_node_kind_name(n));
        return false;
    }
    *(struct pt_node **)field = n;
    return true;
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
        if (!pt_cf_str(cx, n->items[i], &s, false)) {
            ok = false;
            continue;
        }
        size_t k = 0;
        while (k < PT_ARRAY_LEN(names) && strcasecmp(names[k].name, s))
            k++;
        if (k == PT_ARRAY_LEN(names)) {
            pt_node_error(cx->errs, n->items[i],
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
    if (!pt_cf_str(cx, n, &s, true))
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
    if (!pt_cf_int(cx, n, 1, 256, &v))
        return false;
    *w = (int)v;
    return true;
}

/* -------------------------------------------------------------------- APIs */

static bool valid_method(const char *m)
{
    if (!strcmp(m, "*"))
        return true;
    if (!*m || strlen(m) > 32)
        return false;
    for (const char *c = m; *c; c++)
        if (!((*c >= 'A' && *c <= 'Z') || *c == '-' || *c == '_'))
            return false;
    return true;
}

static bool valid_id(const char *s)
{
    if (!*s || strlen(s) > 256)
        return false;
    for (const char *c = s; *c; c++)
        if (!(isalnum((unsigned char)*c) || strchr("-_.~", *c)))
            return false;
    return true;
}

static bool read_node(struct pt_cfctx *cx, struct pt_node *n, void *field);
static bool read_list_node(struct pt_cfctx *cx, struct pt_node *n, void *field);

static const struct pt_cfkey op_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_operation_cf, id), PT_CF_REQUIRED},
    {"policies", PT_CT_CUSTOM, offsetof(struct pt_operation_cf, policies), 0, .fn = read_node},
    {"responses", PT_CT_CUSTOM, offsetof(struct pt_operation_cf, responses), 0, .fn = read_list_node},
    {"displayName", PT_CT_STR, offsetof(struct pt_operation_cf, display_name), 0},
    {"description", PT_CT_STR, offsetof(struct pt_operation_cf, description), PT_CF_EMPTY_OK},
    {"method", PT_CT_STR, offsetof(struct pt_operation_cf, method), PT_CF_REQUIRED},
    {"urlTemplate", PT_CT_STR, offsetof(struct pt_operation_cf, url_template), PT_CF_REQUIRED},
    {0},
};

static bool read_ops(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_api_cf *api = (struct pt_api_cf *)((char *)field - offsetof(struct pt_api_cf, ops));
    if (n->kind != PT_N_SEQ) {
        pt_node_error(cx->errs, n, "expected a list of operations");
        return false;
    }
    api->ops = pt_pool_calloc(cx->pool, sizeof(*api->ops) * (size_t)(n->n ? n->n : 1));
    api->nops = n->n;
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        struct pt_operation_cf *op = &api->ops[i];
        op->node = n->items[i];
        if (!pt_cf_map(cx, n->items[i], op_keys, op)) {
            ok = false;
            continue;
        }
        if (!valid_id(op->id)) {
            pt_node_error(cx->errs, pt_node_get(op->node, "id"),
                          "id '%s' may hold only letters, digits and -_.~", op->id);
            ok = false;
        }
        if (!valid_method(op->method)) {
            pt_node_error(cx->errs, pt_node_get(op->node, "method"),
                          "'%s' is not an HTTP method in upper case (GET, POST, ...) or *", op->method);
            ok = false;
        }
        if (op->url_template[0] != '/') {
            pt_node_error(cx->errs, pt_node_get(op->node, "urlTemplate"),
                          "urlTemplate must start with '/'");
            ok = false;
        }
        if (!op->display_name)
            op->display_name = op->id;
        for (int j = 0; j < i; j++)
            if (api->ops[j].id && !strcmp(api->ops[j].id, op->id)) {
                pt_node_error(cx->errs, pt_node_get(op->node, "id"),
                              "operation id '%s' is used twice in this API", op->id);
                ok = false;
            }
    }
    return ok;
}

static bool read_service_url(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    char *s;
    if (!pt_cf_str(cx, n, &s, false))
        return false;
    struct pt_url u;
    const char *why = pt_url_parse(cx->pool, s, &u);
    if (why) {
        pt_node_error(cx->errs, n, "serviceUrl '%s' %s", s, why);
        return false;
    }
    *(char **)field = s;
    return true;
}

static bool read_api_path(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    char *s;
    if (!pt_cf_str(cx, n, &s, true))
        return false;
    /* trim surrounding slashes: "/echo/" and "echo" are the same suffix */
    while (*s == '/')
        s++;
    size_t len = strlen(s);
    while (len && s[len - 1] == '/')
        len--;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || strchr("?#{}*;\\\"<>|^`", c)) {
            pt_node_error(cx->errs, n, "path '%s' has a character not allowed in an API URL suffix", s);
            return false;
        }
    }
    char *p = pt_pool_strndup(cx->pool, s, len);
    for (char *seg = p; *seg;) {
        char *e = strchr(seg, '/');
        size_t sl = e ? (size_t)(e - seg) : strlen(seg);
        if (sl == 0 || (sl == 1 && seg[0] == '.') || (sl == 2 && seg[0] == '.' && seg[1] == '.')) {
            pt_node_error(cx->errs, n, "path '%s' has an empty, '.' or '..' segment", s);
            return false;
        }
        seg += sl + (e ? 1 : 0);
    }
    *(char **)field = p;
    return true;
}

static const struct pt_cfkey keynames_keys[] = {
    {"header", PT_CT_STR, offsetof(struct pt_api_cf, key_header), 0},
    {"query", PT_CT_STR, offsetof(struct pt_api_cf, key_query), 0},
    {0},
};

static bool read_strlist(struct pt_cfctx *cx, struct pt_node *n, void *field);
static bool read_protocols(struct pt_cfctx *cx, struct pt_node *n, void *field);

static const struct pt_cfkey api_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_api_cf, id), PT_CF_REQUIRED},
    {"policies", PT_CT_CUSTOM, offsetof(struct pt_api_cf, policies), 0, .fn = read_node},
    {"workspace", PT_CT_STR, offsetof(struct pt_api_cf, workspace), 0},
    {"protocols", PT_CT_CUSTOM, offsetof(struct pt_api_cf, protocols), 0, .fn = read_protocols},
    {"apiVersion", PT_CT_STR, offsetof(struct pt_api_cf, api_version), 0},
    {"apiVersionSetId", PT_CT_STR, offsetof(struct pt_api_cf, version_set), 0},
    {"apiRevision", PT_CT_STR, offsetof(struct pt_api_cf, revision), 0},
    {"isCurrent", PT_CT_BOOL, offsetof(struct pt_api_cf, is_current), 0},
    {"displayName", PT_CT_STR, offsetof(struct pt_api_cf, display_name), 0},
    {"description", PT_CT_STR, offsetof(struct pt_api_cf, description), PT_CF_EMPTY_OK},
    {"path", PT_CT_CUSTOM, offsetof(struct pt_api_cf, path), PT_CF_REQUIRED, .fn = read_api_path},
    {"host", PT_CT_STR, offsetof(struct pt_api_cf, host), 0},
    {"serviceUrl", PT_CT_CUSTOM, offsetof(struct pt_api_cf, service_url), 0, .fn = read_service_url},
    {"subscriptionRequired", PT_CT_BOOL, offsetof(struct pt_api_cf, subscription_required), 0},
    {"subscriptionKeyParameterNames", PT_CT_MAP, 0, 0, .sub = keynames_keys},
    {"bodySize", PT_CT_SIZE, offsetof(struct pt_api_cf, body_size), 0, 1, INT64_MAX},
    {"secretQueryParameters", PT_CT_CUSTOM, offsetof(struct pt_api_cf, secret_query), 0, .fn = read_strlist},
    {"operations", PT_CT_CUSTOM, offsetof(struct pt_api_cf, ops), 0, .fn = read_ops},
    {0},
};

/* Compiles an API's URL templates into a scratch router: syntax errors and
   operations with the same method and template are reported here, with
   every other error of the file, rather than when the generation is built. */
static bool check_templates(struct pt_cfctx *cx, struct pt_api_cf *api)
{
    struct pt_router *r = pt_router_new();
    if (!r)
        return false;
    int idx = pt_router_add_api(r, "", NULL, NULL);
    bool ok = true;
    for (int i = 0; i < api->nops; i++) {
        struct pt_operation_cf *op = &api->ops[i];
        if (!op->method || !op->url_template || op->url_template[0] != '/')
            continue;
        void *clash = NULL;
        const char *why = pt_router_add_op(r, idx, op->method, op->url_template, op, &clash);
        if (why) {
            struct pt_node *at = pt_node_get(op->node, "urlTemplate");
            if (clash)
                pt_node_error(cx->errs, at, "urlTemplate '%s' %s ('%s')", op->url_template, why,
                              ((struct pt_operation_cf *)clash)->id);
            else
                pt_node_error(cx->errs, at, "urlTemplate '%s' %s", op->url_template, why);
            ok = false;
        }
    }
    pt_router_free(r);
    return ok;
}

static bool read_apis(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, apis));
    if (n->kind != PT_N_SEQ) {
        pt_node_error(cx->errs, n, "expected a list of APIs");
        return false;
    }
    cf->apis = pt_pool_calloc(cx->pool, sizeof(*cf->apis) * (size_t)(n->n ? n->n : 1));
    cf->napis = n->n;
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        struct pt_api_cf *api = &cf->apis[i];
        api->node = n->items[i];
        api->subscription_required = true; /* APIM's default for a new API */
        api->is_current = true;
        api->workspace = "";
        bool valid = pt_cf_map(cx, n->items[i], api_keys, api);
        valid &= check_templates(cx, api);
        if (!valid) {
            ok = false;
            continue;
        }
        if (!valid_id(api->id)) {
            pt_node_error(cx->errs, pt_node_get(api->node, "id"),
                          "id '%s' may hold only letters, digits and -_.~", api->id);
            ok = false;
        }
        if (!api->display_name)
            api->display_name = api->id;
        if (!api->revision)
            api->revision = "1";
        if (!api->key_header)
            api->key_header = "Ocp-Apim-Subscription-Key";
        if (!api->key_query)
            api->key_query = "subscription-key";
        if (api->host) {
            for (char *c = api->host; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            if (!pt_host_valid(pt_str_c(api->host))) {
                pt_node_error(cx->errs, pt_node_get(api->node, "host"), "'%s' is not a valid host name",
                              api->host);
                ok = false;
            } else if (pt_host_strip_port(pt_str_c(api->host)).n != strlen(api->host)) {
                pt_node_error(cx->errs, pt_node_get(api->node, "host"),
                              "host '%s' must not have a port (the Host header's port is not matched)", api->host);
                ok = false;
            }
        }
        for (int j = 0; j < i; j++) {
            struct pt_api_cf *o = &cf->apis[j];
            if (o->id && !strcmp(o->id, api->id)) {
                pt_node_error(cx->errs, pt_node_get(api->node, "id"), "API id '%s' is used twice", api->id);
                ok = false;
            }
            bool same_version = !o->api_version == !api->api_version &&
                                (!o->api_version || !strcmp(o->api_version, api->api_version));
            bool both_current = o->is_current && api->is_current;
            if (o->path && api->path && !strcmp(o->path, api->path) && same_version && both_current &&
                ((!o->host && !api->host) || (o->host && api->host && !strcmp(o->host, api->host)))) {
                if (api->api_version)
                    pt_node_error(cx->errs, pt_node_get(api->node, "path"),
                                  "path '%s' with version '%s' is already used by API '%s'", api->path,
                                  api->api_version, o->id);
                else
                    pt_node_error(cx->errs, pt_node_get(api->node, "path"), "path '%s' is already used by API '%s'",
                                  api->path, o->id);
                ok = false;
            }
        }
    }
    return ok;
}

/* -------------------------------------------------------------- top level */

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};

static bool read_underscores(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    static const char *const modes[] = {"reject", "drop", "allow", NULL};
    char *s;
    if (!pt_cf_str(cx, n, &s, false))
        return false;
    for (int i = 0; modes[i]; i++)
        if (!strcmp(modes[i], s)) {
            *(int *)field = i;
            return true;
        }
    pt_node_error(cx->errs, n, "expected reject, drop or allow");
    return false;
}

static const struct pt_cfkey limits_keys[] = {
    {"bufferSize", PT_CT_SIZE, offsetof(struct pt_conf, limits.buffer_size), 0, 1024, 1LL << 30},
    {"headerSize", PT_CT_SIZE, offsetof(struct pt_conf, limits.header_size), 0, 1024, 1 << 20},
    {"headerLine", PT_CT_SIZE, offsetof(struct pt_conf, limits.header_line), 0, 256, 1 << 20},
    {"headerUnderscores", PT_CT_CUSTOM, offsetof(struct pt_conf, limits.header_underscores), 0,
     .fn = read_underscores},
    {"headerCount", PT_CT_INT, offsetof(struct pt_conf, limits.header_count), 0, 1, 10000},
    {"uriLength", PT_CT_SIZE, offsetof(struct pt_conf, limits.uri_length), 0, 64, 1 << 20},
    {"bodySize", PT_CT_SIZE, offsetof(struct pt_conf, limits.body_size), 0, 0, INT64_MAX},
    {"requestsPerConnection", PT_CT_INT, offsetof(struct pt_conf, limits.requests_per_connection), 0, 1, 100000000},
    {"connectionsPerWorker", PT_CT_INT, offsetof(struct pt_conf, limits.connections_per_worker), 0, 1, 1000000},
    {"counterKeys", PT_CT_INT, offsetof(struct pt_conf, counter_keys), 0, 64, 100000000},
    {0},
};

static const struct pt_cfkey timeouts_keys[] = {
    {"header", PT_CT_MS, offsetof(struct pt_conf, timeouts.header), 0, 1},
    {"bodyIdle", PT_CT_MS, offsetof(struct pt_conf, timeouts.body_idle), 0, 1},
    {"body", PT_CT_MS, offsetof(struct pt_conf, timeouts.body), 0, 0},
    {"keepalive", PT_CT_MS, offsetof(struct pt_conf, timeouts.keepalive), 0, 1},
    {"send", PT_CT_MS, offsetof(struct pt_conf, timeouts.send), 0, 1},
    {"shutdown", PT_CT_MS, offsetof(struct pt_conf, timeouts.shutdown), 0, 0},
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
        if (!pt_cf_str(cx, v, &str, false)) {
            ok = false;
            continue;
        }
        if (!strcmp(k, "minVersion")) {
            if (!strcmp(str, "1.2") || !strcmp(str, "TLSv1.2"))
                t->min_version = 12;
            else if (!strcmp(str, "1.3") || !strcmp(str, "TLSv1.3"))
                t->min_version = 13;
            else {
                pt_node_error(cx->errs, v, "minVersion must be \"1.2\" or \"1.3\" (older versions are not offered)");
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
    {"connectTimeout", PT_CT_MS, offsetof(struct pt_conf, upstream.connect_timeout), 0, 1},
    {"readTimeout", PT_CT_MS, offsetof(struct pt_conf, upstream.read_timeout), 0, 1},
    {"idleTimeout", PT_CT_MS, offsetof(struct pt_conf, upstream.idle_timeout), 0, 1},
    {"maxIdleConnections", PT_CT_INT, offsetof(struct pt_conf, upstream.max_idle), 0, 0, 100000},
    {"caFile", PT_CT_STR, offsetof(struct pt_conf, upstream.ca_file), PT_CF_PATH},
    {"verify", PT_CT_BOOL, offsetof(struct pt_conf, upstream.verify), 0},
    {"tls", PT_CT_CUSTOM, offsetof(struct pt_conf, upstream.tls), 0, .fn = read_tls_opts},
    {"forwardedHeaders", PT_CT_CUSTOM, offsetof(struct pt_conf, upstream.forwarded), 0, .fn = read_forwarded},
    {"requestIdHeader", PT_CT_CUSTOM, offsetof(struct pt_conf, upstream.request_id_header), 0,
     .fn = read_header_name},
    {0},
};

static const struct pt_cfkey log_keys[] = {
    {"level", PT_CT_ENUM, offsetof(struct pt_conf, log.level), 0, .enums = log_levels},
    {"error", PT_CT_STR, offsetof(struct pt_conf, log.error), 0},
    {"access", PT_CT_STR, offsetof(struct pt_conf, log.access), 0},
    {"accessBuffer", PT_CT_SIZE, offsetof(struct pt_conf, log.access_buffer), 0, 0, 16 << 20},
    {"accessFlush", PT_CT_MS, offsetof(struct pt_conf, log.access_flush), 0, 1},
    {0},
};

static bool read_policy_path(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_lua_limits *l = (struct pt_lua_limits *)((char *)field - offsetof(struct pt_lua_limits, policy_path));
    int cnt = n->kind == PT_N_SEQ ? n->n : 1;
    l->policy_path = pt_pool_calloc(cx->pool, sizeof(char *) * (size_t)cnt);
    l->npolicy_path = 0;
    for (int i = 0; i < cnt; i++) {
        char *s;
        if (!pt_cf_str(cx, n->kind == PT_N_SEQ ? n->items[i] : n, &s, false))
            return false;
        l->policy_path[l->npolicy_path++] = pt_cf_path(cx, s);
    }
    return true;
}

static const struct pt_cfkey lua_keys[] = {
    {"timeout", PT_CT_MS, offsetof(struct pt_conf, lua.timeout), 0, 1, 60000},
    {"memory", PT_CT_SIZE, offsetof(struct pt_conf, lua.memory), 0, 1 << 20, 1LL << 34},
    {"patternLimit", PT_CT_SIZE, offsetof(struct pt_conf, lua.pattern_subject), 0, 1, 1LL << 30},
    {"policyPath", PT_CT_CUSTOM, offsetof(struct pt_conf, lua.policy_path), 0, .fn = read_policy_path},
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
        if (!id || id->kind != PT_N_SCALAR || id->null || !valid_id(id->str)) {
            pt_node_error(cx->errs, id ? id : f, "a fragment needs an id of letters, digits and -_.~");
            ok = false;
        }
        for (int k = 0; k < f->n; k++) {
            const char *key = pt_node_key(f, k)->str;
            if (strcmp(key, "id") && strcmp(key, "description") && strcmp(key, "value") && strcmp(key, "policies") &&
                strcmp(key, "workspace")) {
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
        if (!id || id->kind != PT_N_SCALAR || id->null || !valid_id(id->str)) {
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
            if (strcmp(key, "id") && strcmp(key, "displayName") && strcmp(key, "value") && strcmp(key, "secret") &&
                strcmp(key, "tags") && strcmp(key, "workspace")) {
                pt_node_error(cx->errs, pt_node_key(v, k),
                              "unknown key '%s' (expected one of: id, displayName, value, secret, tags, workspace)",
                              key);
                ok = false;
            }
        }
    }
    *(struct pt_node **)field = n;
    return ok;
}

/* ---------------------------------------------------------- entity lists */

const char *const pt_product_states[] = {"notPublished", "published", NULL};
const char *const pt_sub_states[] = {"submitted", "active", "suspended", "cancelled", "rejected", "expired", NULL};
const char *const pt_user_states[] = {"active", "blocked", "pending", "deleted", NULL};
const char *const pt_group_types[] = {"custom", "system", "external", NULL};
const char *const pt_versioning_schemes[] = {"Segment", "Query", "Header", NULL};

static bool read_strlist(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_strlist *l = field;
    if (n->kind != PT_N_SEQ) {
        pt_node_error(cx->errs, n, "expected a list of ids");
        return false;
    }
    l->v = pt_pool_calloc(cx->pool, sizeof(char *) * (size_t)(n->n ? n->n : 1));
    l->n = 0;
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        char *s;
        if (!pt_cf_str(cx, n->items[i], &s, false)) {
            ok = false;
            continue;
        }
        for (int k = 0; k < l->n; k++)
            if (!strcmp(l->v[k], s)) {
                pt_node_error(cx->errs, n->items[i], "'%s' is listed twice", s);
                ok = false;
            }
        l->v[l->n++] = s;
    }
    return ok;
}

static bool read_protocols(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    if (!read_strlist(cx, n, field))
        return false;
    struct pt_strlist *l = field;
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->v[i], "http") && strcmp(l->v[i], "https")) {
            pt_node_error(cx->errs, n->items[i], "'%s' is not a protocol (http or https)", l->v[i]);
            return false;
        }
    return true;
}

/* Reads a list of entities of `size` bytes each with `keys`; init sets defaults. */
struct idref {
    const char *id;
    int index;
};

static int idref_cmp(const void *x, const void *y)
{
    const struct idref *a = x, *b = y;
    int c = strcmp(a->id, b->id);
    return c ? c : a->index - b->index;
}

#define NO_FIELD ((size_t)-1)

/*
 * Reads a list of entities of `size` bytes each with `keys`; init sets
 * defaults.  Every entity struct starts with `char *id`; `node_off` is
 * where its `struct pt_node *node` goes, `name_off` its displayName that
 * defaults to the id (NO_FIELD: none).  Ids must be unique in the list.
 */
static bool read_entity_list(struct pt_cfctx *cx, struct pt_node *n, void **arr, int *count, size_t size,
                             const struct pt_cfkey *keys, void (*init)(void *), const char *what, size_t node_off,
                             size_t name_off)
{
    if (n->kind != PT_N_SEQ) {
        pt_node_error(cx->errs, n, "expected a list of %s", what);
        return false;
    }
    char *a = pt_pool_calloc(cx->pool, size * (size_t)(n->n ? n->n : 1));
    struct idref *ids = calloc((size_t)(n->n ? n->n : 1), sizeof(*ids));
    int nids = 0;
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        char *e = a + size * (size_t)i;
        if (init)
            init(e);
        ok &= pt_cf_map(cx, n->items[i], keys, e);
        *(struct pt_node **)(e + node_off) = n->items[i];
        char *id = *(char **)e;
        if (name_off != NO_FIELD && !*(char **)(e + name_off))
            *(char **)(e + name_off) = id;
        if (id && !valid_id(id)) {
            pt_node_error(cx->errs, pt_node_get(n->items[i], "id"), "id '%s' may hold only letters, digits and -_.~",
                          id);
            ok = false;
        }
        if (id)
            ids[nids++] = (struct idref){id, i};
    }
    /* duplicates, in O(n log n): lists may hold tens of thousands */
    qsort(ids, (size_t)nids, sizeof(*ids), idref_cmp);
    for (int k = 1; k < nids; k++)
        if (!strcmp(ids[k].id, ids[k - 1].id)) {
            pt_node_error(cx->errs, pt_node_get(n->items[ids[k].index], "id"), "%s id '%s' is used twice", what,
                          ids[k].id);
            ok = false;
        }
    free(ids);
    *arr = a;
    *count = n->n;
    return ok;
}

static void product_init(void *p)
{
    struct pt_product_cf *x = p;
    x->subscription_required = true;
    x->workspace = "";
}

static const struct pt_cfkey product_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_product_cf, id), PT_CF_REQUIRED},
    {"workspace", PT_CT_STR, offsetof(struct pt_product_cf, workspace), 0},
    {"displayName", PT_CT_STR, offsetof(struct pt_product_cf, display_name), 0},
    {"description", PT_CT_STR, offsetof(struct pt_product_cf, description), PT_CF_EMPTY_OK},
    {"state", PT_CT_ENUM, offsetof(struct pt_product_cf, state), 0, .enums = pt_product_states},
    {"subscriptionRequired", PT_CT_BOOL, offsetof(struct pt_product_cf, subscription_required), 0},
    {"approvalRequired", PT_CT_BOOL, offsetof(struct pt_product_cf, approval_required), 0},
    {"subscriptionsLimit", PT_CT_INT, offsetof(struct pt_product_cf, subscriptions_limit), 0, 0, 1000000},
    {"terms", PT_CT_STR, offsetof(struct pt_product_cf, terms), PT_CF_EMPTY_OK},
    {"apis", PT_CT_CUSTOM, offsetof(struct pt_product_cf, apis), 0, .fn = read_strlist},
    {"groups", PT_CT_CUSTOM, offsetof(struct pt_product_cf, groups), 0, .fn = read_strlist},
    {"policies", PT_CT_CUSTOM, offsetof(struct pt_product_cf, policies), 0, .fn = read_node},
    {0},
};

static bool read_products(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, products));
    return read_entity_list(cx, n, (void **)&cf->products, &cf->nproducts, sizeof(struct pt_product_cf),
                            product_keys, product_init, "product", offsetof(struct pt_product_cf, node),
                            offsetof(struct pt_product_cf, display_name));
}

static void group_init(void *p)
{
    ((struct pt_group_cf *)p)->workspace = "";
}

static const struct pt_cfkey group_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_group_cf, id), PT_CF_REQUIRED},
    {"workspace", PT_CT_STR, offsetof(struct pt_group_cf, workspace), 0},
    {"displayName", PT_CT_STR, offsetof(struct pt_group_cf, display_name), 0},
    {"description", PT_CT_STR, offsetof(struct pt_group_cf, description), PT_CF_EMPTY_OK},
    {"type", PT_CT_ENUM, offsetof(struct pt_group_cf, type), 0, .enums = pt_group_types},
    {0},
};

static bool read_groups(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, groups));
    return read_entity_list(cx, n, (void **)&cf->groups, &cf->ngroups, sizeof(struct pt_group_cf), group_keys,
                            group_init, "group", offsetof(struct pt_group_cf, node),
                            offsetof(struct pt_group_cf, display_name));
}

static const struct pt_cfkey user_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_user_cf, id), PT_CF_REQUIRED},
    {"email", PT_CT_STR, offsetof(struct pt_user_cf, email), PT_CF_REQUIRED},
    {"firstName", PT_CT_STR, offsetof(struct pt_user_cf, first_name), PT_CF_EMPTY_OK},
    {"lastName", PT_CT_STR, offsetof(struct pt_user_cf, last_name), PT_CF_EMPTY_OK},
    {"state", PT_CT_ENUM, offsetof(struct pt_user_cf, state), 0, .enums = pt_user_states},
    {"note", PT_CT_STR, offsetof(struct pt_user_cf, note), PT_CF_EMPTY_OK},
    {"groups", PT_CT_CUSTOM, offsetof(struct pt_user_cf, groups), 0, .fn = read_strlist},
    {0},
};

static bool read_users(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, users));
    bool ok = read_entity_list(cx, n, (void **)&cf->users, &cf->nusers, sizeof(struct pt_user_cf), user_keys,
                               NULL, "user", offsetof(struct pt_user_cf, node), NO_FIELD);
    for (int i = 0; i < cf->nusers; i++) {
        struct pt_user_cf *u = &cf->users[i];
        if (u->email && (!strchr(u->email, '@') || strchr(u->email, ' '))) {
            pt_node_error(cx->errs, pt_node_get(u->node, "email"), "'%s' is not an email address", u->email);
            ok = false;
        }
        for (int k = 0; k < i; k++)
            if (u->email && cf->users[k].email && !strcasecmp(u->email, cf->users[k].email)) {
                pt_node_error(cx->errs, pt_node_get(u->node, "email"), "email '%s' belongs to user '%s'", u->email,
                              cf->users[k].id);
                ok = false;
            }
    }
    return ok;
}

static void sub_init(void *p)
{
    struct pt_subscription_cf *x = p;
    x->state = PT_SUB_ACTIVE; /* declared in a file: active unless said otherwise */
    x->workspace = "";
}

static bool valid_key(const char *k)
{
    size_t n = strlen(k);
    if (n < 8 || n > 256)
        return false;
    for (const char *c = k; *c; c++)
        if (!(isalnum((unsigned char)*c) || strchr("-_.~", *c)))
            return false;
    return true;
}

static const struct pt_cfkey sub_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_subscription_cf, id), PT_CF_REQUIRED},
    {"workspace", PT_CT_STR, offsetof(struct pt_subscription_cf, workspace), 0},
    {"displayName", PT_CT_STR, offsetof(struct pt_subscription_cf, display_name), 0},
    {"scope", PT_CT_STR, offsetof(struct pt_subscription_cf, scope), PT_CF_REQUIRED},
    {"ownerId", PT_CT_STR, offsetof(struct pt_subscription_cf, owner_id), 0},
    {"state", PT_CT_ENUM, offsetof(struct pt_subscription_cf, state), 0, .enums = pt_sub_states},
    {"primaryKey", PT_CT_STR, offsetof(struct pt_subscription_cf, primary_key), 0},
    {"secondaryKey", PT_CT_STR, offsetof(struct pt_subscription_cf, secondary_key), 0},
    {"allowTracing", PT_CT_BOOL, offsetof(struct pt_subscription_cf, allow_tracing), 0},
    {"createdDate", PT_CT_STR, offsetof(struct pt_subscription_cf, created_date), 0},
    {"stateComment", PT_CT_STR, offsetof(struct pt_subscription_cf, state_comment), PT_CF_EMPTY_OK},
    {"startDate", PT_CT_STR, offsetof(struct pt_subscription_cf, start_date), 0},
    {"expirationDate", PT_CT_STR, offsetof(struct pt_subscription_cf, expiration_date), 0},
    {"endDate", PT_CT_STR, offsetof(struct pt_subscription_cf, end_date), 0},
    {"notificationDate", PT_CT_STR, offsetof(struct pt_subscription_cf, notification_date), 0},
    {0},
};

/* "/products/p" | "/apis/a" | "/apis" (a leading service path is tolerated). */
bool pt_parse_sub_scope(const char *scope, enum pt_sub_scope *kind, const char **id)
{
    const char *s = strstr(scope, "/products/");
    if (s && s[10] && !strchr(s + 10, '/')) {
        *kind = PT_SUB_PRODUCT;
        *id = s + 10;
        return true;
    }
    s = strstr(scope, "/apis");
    if (s && !s[5]) {
        *kind = PT_SUB_ALL_APIS;
        *id = NULL;
        return true;
    }
    if (s && s[5] == '/' && s[6] && !strchr(s + 6, '/')) {
        *kind = PT_SUB_API;
        *id = s + 6;
        return true;
    }
    return false;
}

static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

bool pt_parse_iso8601(const char *s, int64_t *ms)
{
    size_t n = strlen(s);
    if (n < 10 || s[4] != '-' || s[7] != '-')
        return false;
    int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2), h = 0, mi = 0, sec = 0, frac = 0;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
        (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))))
        return false;
    const char *p = s + 10;
    int64_t offset_min = 0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        if (strlen(p) < 6 || p[3] != ':')
            return false;
        h = digits(p + 1, 2);
        mi = digits(p + 4, 2);
        p += 6;
        if (*p == ':') {
            sec = digits(p + 1, 2);
            p += 3;
            if (sec < 0 || sec > 60)
                return false;
            if (*p == '.') {
                int k = 0;
                p++;
                while (*p >= '0' && *p <= '9') {
                    if (k < 3)
                        frac = frac * 10 + (*p - '0');
                    k++;
                    p++;
                }
                if (!k)
                    return false;
                for (; k < 3; k++)
                    frac *= 10;
            }
        }
        if (h < 0 || h > 23 || mi < 0 || mi > 59)
            return false;
        if (*p == 'Z' || *p == 'z')
            p++;
        else if (*p == '+' || *p == '-') {
            int oh = digits(p + 1, 2), om = p[3] == ':' ? digits(p + 4, 2) : digits(p + 3, 2);
            if (oh < 0 || oh > 23 || om < 0 || om > 59)
                return false;
            offset_min = (*p == '-' ? -1 : 1) * (oh * 60 + om);
            p += p[3] == ':' ? 6 : 5;
        }
    }
    if (*p)
        return false;
    /* days from the civil date (proleptic Gregorian) */
    int yy = mo <= 2 ? y - 1 : y;
    int era = yy / 400;
    int yoe = yy - era * 400;
    int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = (int64_t)era * 146097 + doe - 719468;
    *ms = ((days * 86400 + h * 3600 + mi * 60 + sec) - offset_min * 60) * 1000 + frac;
    return true;
}

static bool read_subs(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, subs));
    bool ok = read_entity_list(cx, n, (void **)&cf->subs, &cf->nsubs, sizeof(struct pt_subscription_cf), sub_keys,
                               sub_init, "subscription", offsetof(struct pt_subscription_cf, node),
                               offsetof(struct pt_subscription_cf, display_name));
    for (int i = 0; i < cf->nsubs; i++) {
        struct pt_subscription_cf *s = &cf->subs[i];
        const char *sid = NULL;
        if (s->scope && !pt_parse_sub_scope(s->scope, &s->scope_kind, &sid)) {
            pt_node_error(cx->errs, pt_node_get(s->node, "scope"),
                          "scope '%s' must be /products/ID, /apis/ID or /apis", s->scope);
            ok = false;
        } else if (sid)
            s->scope_id = pt_pool_strdup(cx->pool, sid);
        const char *dates[2] = {s->expiration_date, s->end_date}, *dnames[2] = {"expirationDate", "endDate"};
        for (int k = 0; k < 2; k++) {
            int64_t t;
            if (!dates[k] || !*dates[k])
                continue;
            if (!pt_parse_iso8601(dates[k], &t)) {
                pt_node_error(cx->errs, pt_node_get(s->node, dnames[k]),
                              "%s '%s' is not an ISO 8601 date or time (2027-01-31, 2027-01-31T12:00:00Z)", dnames[k],
                              dates[k]);
                ok = false;
            } else if (!s->ends_ms || t < s->ends_ms)
                s->ends_ms = t ? t : 1;
        }
        if (s->owner_id) {
            const char *u = strstr(s->owner_id, "/users/");
            if (!u || !u[7] || strchr(u + 7, '/')) {
                pt_node_error(cx->errs, pt_node_get(s->node, "ownerId"), "ownerId '%s' must be /users/ID",
                              s->owner_id);
                ok = false;
            } else
                s->owner_user = pt_pool_strdup(cx->pool, u + 7);
        }
        const char *keys[2] = {s->primary_key, s->secondary_key};
        const char *names[2] = {"primaryKey", "secondaryKey"};
        for (int k = 0; k < 2; k++)
            if (keys[k] && !valid_key(keys[k])) {
                pt_node_error(cx->errs, pt_node_get(s->node, names[k]),
                              "%s must be 8 to 256 letters, digits or -_.~", names[k]);
                ok = false;
            }
        if (s->primary_key && s->secondary_key && !strcmp(s->primary_key, s->secondary_key)) {
            pt_node_error(cx->errs, pt_node_get(s->node, "secondaryKey"), "the two keys must differ");
            ok = false;
        }
        for (int j = 0; j < i; j++)
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++) {
                    const char *x = a ? s->secondary_key : s->primary_key;
                    const char *y = b ? cf->subs[j].secondary_key : cf->subs[j].primary_key;
                    if (x && y && !strcmp(x, y)) {
                        pt_node_error(cx->errs, pt_node_get(s->node, a ? "secondaryKey" : "primaryKey"),
                                      "this key is already a key of subscription '%s'", cf->subs[j].id);
                        ok = false;
                    }
                }
    }
    return ok;
}

static void backend_init(void *p)
{
    ((struct pt_backend_cf *)p)->workspace = "";
}

static const struct pt_cfkey backend_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_backend_cf, id), PT_CF_REQUIRED},
    {"workspace", PT_CT_STR, offsetof(struct pt_backend_cf, workspace), 0},
    {"url", PT_CT_CUSTOM, offsetof(struct pt_backend_cf, url), PT_CF_REQUIRED, .fn = read_service_url},
    {"protocol", PT_CT_STR, offsetof(struct pt_backend_cf, protocol), 0},
    {"description", PT_CT_STR, offsetof(struct pt_backend_cf, description), PT_CF_EMPTY_OK},
    {0},
};

static bool read_backends(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, backends));
    return read_entity_list(cx, n, (void **)&cf->backends, &cf->nbackends, sizeof(struct pt_backend_cf),
                            backend_keys, backend_init, "backend", offsetof(struct pt_backend_cf, node), NO_FIELD);
}

static const struct pt_cfkey workspace_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_workspace_cf, id), PT_CF_REQUIRED},
    {"displayName", PT_CT_STR, offsetof(struct pt_workspace_cf, display_name), 0},
    {"description", PT_CT_STR, offsetof(struct pt_workspace_cf, description), PT_CF_EMPTY_OK},
    {"policies", PT_CT_CUSTOM, offsetof(struct pt_workspace_cf, policies), 0, .fn = read_node},
    {0},
};

static bool read_workspaces(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, workspaces));
    return read_entity_list(cx, n, (void **)&cf->workspaces, &cf->nworkspaces, sizeof(struct pt_workspace_cf),
                            workspace_keys, NULL, "workspace", offsetof(struct pt_workspace_cf, node),
                            offsetof(struct pt_workspace_cf, display_name));
}

static void vs_init(void *p)
{
    struct pt_versionset_cf *v = p;
    v->query_name = "api-version";
    v->header_name = "Api-Version";
}

static const struct pt_cfkey vs_keys[] = {
    {"id", PT_CT_STR, offsetof(struct pt_versionset_cf, id), PT_CF_REQUIRED},
    {"displayName", PT_CT_STR, offsetof(struct pt_versionset_cf, display_name), 0},
    {"description", PT_CT_STR, offsetof(struct pt_versionset_cf, description), 0},
    {"versioningScheme", PT_CT_ENUM, offsetof(struct pt_versionset_cf, scheme), PT_CF_REQUIRED,
     .enums = pt_versioning_schemes},
    {"versionQueryName", PT_CT_STR, offsetof(struct pt_versionset_cf, query_name), 0},
    {"versionHeaderName", PT_CT_STR, offsetof(struct pt_versionset_cf, header_name), 0},
    {"workspace", PT_CT_STR, offsetof(struct pt_versionset_cf, workspace), 0},
    {0},
};

static bool read_version_sets(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_conf *cf = (struct pt_conf *)((char *)field - offsetof(struct pt_conf, version_sets));
    return read_entity_list(cx, n, (void **)&cf->version_sets, &cf->nversion_sets, sizeof(struct pt_versionset_cf),
                            vs_keys, vs_init, "version set", offsetof(struct pt_versionset_cf, node),
                            offsetof(struct pt_versionset_cf, display_name));
}

static bool read_mgmt_listen(struct pt_cfctx *cx, struct pt_node *n, void *field)
{
    struct pt_mgmt_cf *m = (struct pt_mgmt_cf *)((char *)field - offsetof(struct pt_mgmt_cf, listen));
    char *s;
    if (!pt_cf_str(cx, n, &s, false))
        return false;
    if (!pt_parse_listen(s, &m->sa, &m->salen)) {
        pt_node_error(cx->errs, n, "'%s' is not a listen address (expected HOST:PORT)", s);
        return false;
    }
    m->listen = s;
    return true;
}

bool pt_parse_cidr(const char *s, struct pt_cidr *out)
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

bool pt_cidr_has(const struct pt_cidr *c, const char *ip)
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
        if (it->kind != PT_N_SCALAR || !pt_parse_cidr(it->str, &cf->trusted[cf->ntrusted])) {
            pt_node_error(cx->errs, it, "'%s' is not an address or a range such as 192.0.2.0/24 or 2001:db8::/32",
                          it->kind == PT_N_SCALAR ? it->str : "(not a scalar)");
            ok = false;
            continue;
        }
        cf->ntrusted++;
    }
    return ok;
}

static const struct pt_cfkey mgmt_keys[] = {
    {"listen", PT_CT_CUSTOM, offsetof(struct pt_conf, mgmt.listen), 0, .fn = read_mgmt_listen},
    {"adminToken", PT_CT_STR, offsetof(struct pt_conf, mgmt.admin_token), 0},
    {"maxBodySize", PT_CT_SIZE, offsetof(struct pt_conf, mgmt.max_body), 0, 1024, 1LL << 30},
    {"certificate", PT_CT_STR, offsetof(struct pt_conf, mgmt.cert.certificate), PT_CF_PATH},
    {"key", PT_CT_STR, offsetof(struct pt_conf, mgmt.cert.key), PT_CF_PATH},
    {"tls", PT_CT_CUSTOM, offsetof(struct pt_conf, mgmt.tls.tls), 0, .fn = read_tls_opts},
    {0},
};

static const struct pt_cfkey top_keys[] = {
    {"listen", PT_CT_CUSTOM, offsetof(struct pt_conf, listen), PT_CF_REQUIRED, .fn = read_listen},
    {"workers", PT_CT_CUSTOM, offsetof(struct pt_conf, workers), 0, .fn = read_workers},
    {"limits", PT_CT_MAP, 0, 0, .sub = limits_keys},
    {"timeouts", PT_CT_MAP, 0, 0, .sub = timeouts_keys},
    {"upstream", PT_CT_MAP, 0, 0, .sub = upstream_keys},
    {"log", PT_CT_MAP, 0, 0, .sub = log_keys},
    {"lua", PT_CT_MAP, 0, 0, .sub = lua_keys},
    {"pluginDir", PT_CT_STR, offsetof(struct pt_conf, plugin_dir), PT_CF_PATH},
    {"data", PT_CT_STR, offsetof(struct pt_conf, data_dir), PT_CF_PATH},
    {"secretKey", PT_CT_STR, offsetof(struct pt_conf, secret_key), 0},
    {"management", PT_CT_MAP, 0, 0, .sub = mgmt_keys},
    {"trustedProxies", PT_CT_CUSTOM, offsetof(struct pt_conf, trusted), 0, .fn = read_trusted},
    {"apis", PT_CT_CUSTOM, offsetof(struct pt_conf, apis), 0, .fn = read_apis},
    {"products", PT_CT_CUSTOM, offsetof(struct pt_conf, products), 0, .fn = read_products},
    {"groups", PT_CT_CUSTOM, offsetof(struct pt_conf, groups), 0, .fn = read_groups},
    {"users", PT_CT_CUSTOM, offsetof(struct pt_conf, users), 0, .fn = read_users},
    {"subscriptions", PT_CT_CUSTOM, offsetof(struct pt_conf, subs), 0, .fn = read_subs},
    {"namedValues", PT_CT_CUSTOM, offsetof(struct pt_conf, named_values), 0, .fn = read_named_values},
    {"policyFragments", PT_CT_CUSTOM, offsetof(struct pt_conf, fragments), 0, .fn = read_fragments},
    {"policies", PT_CT_CUSTOM, offsetof(struct pt_conf, policies), 0, .fn = read_node},
    {"backends", PT_CT_CUSTOM, offsetof(struct pt_conf, backends), 0, .fn = read_backends},
    {"workspaces", PT_CT_CUSTOM, offsetof(struct pt_conf, workspaces), 0, .fn = read_workspaces},
    {"apiVersionSets", PT_CT_CUSTOM, offsetof(struct pt_conf, version_sets), 0, .fn = read_version_sets},
    {0},
};

static void set_defaults(struct pt_conf *cf)
{
    cf->workers = 1;
    cf->limits.buffer_size = 2 * 1024 * 1024;
    cf->lua.timeout = 100;
    cf->lua.memory = 64ULL * 1024 * 1024;
    cf->lua.pattern_subject = 256 * 1024;
    cf->limits.header_size = 32 * 1024;
    cf->limits.header_line = 8 * 1024;
    cf->limits.header_underscores = PT_UNDERSCORES_REJECT;
    cf->limits.header_count = 100;
    cf->limits.uri_length = 8 * 1024;
    cf->limits.body_size = 1024ULL * 1024 * 1024;
    cf->limits.requests_per_connection = 1000;
    cf->counter_keys = 1000000;
    cf->limits.connections_per_worker = 10000;
    cf->timeouts.header = 10000;
    cf->timeouts.body_idle = 30000;
    cf->timeouts.keepalive = 75000;
    cf->timeouts.send = 60000;
    cf->timeouts.shutdown = 30000;
    cf->upstream.connect_timeout = 5000;
    cf->upstream.read_timeout = 300000;
    cf->upstream.idle_timeout = 60000;
    cf->upstream.max_idle = 64;
    cf->upstream.verify = true;
    cf->upstream.forwarded = PT_FWD_XFF | PT_FWD_XFP | PT_FWD_XFH | PT_FWD_FORWARDED;
    cf->upstream.request_id_header = "X-Request-Id";
    cf->log.level = PT_LOG_INFO;
    cf->log.error = "stderr";
    cf->log.access = "stdout";
    cf->log.access_buffer = 32 * 1024;
    cf->log.access_flush = 1000;
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
    pt_cf_map(&cx, root, top_keys, cf);
    if (cf->log.error && strcmp(cf->log.error, "stderr") && strcmp(cf->log.error, "stdout"))
        cf->log.error = pt_cf_path(&cx, cf->log.error);
    if (cf->log.access && strcmp(cf->log.access, "stderr") && strcmp(cf->log.access, "stdout") &&
        strcmp(cf->log.access, "off"))
        cf->log.access = pt_cf_path(&cx, cf->log.access);
    if (!cf->data_dir)
        cf->data_dir = pt_cf_path(&cx, "var");
    if (!cf->mgmt.max_body)
        cf->mgmt.max_body = 4 * 1024 * 1024;
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
    if (errs->n > before)
        return NULL;
    return cf;
}

static const char *const builtin_groups[] = {"administrators", "developers", "guests", NULL};

/*
 * The ids of one kind of entity, for the reference checks: open addressing
 * over the entities' own strings, so a file with many users and
 * subscriptions is checked in linear time.
 */
struct idset {
    const char **v;
    int *ix; /* the item's index in its array */
    size_t mask;
};

#define IDSET(s, arr, n, type) idset_init(s, arr, n, sizeof(type), offsetof(type, id))

static void idset_init(struct idset *s, const void *items, int n, size_t stride, size_t off)
{
    size_t cap = 8;
    while (cap < (size_t)n * 2)
        cap <<= 1;
    s->v = calloc(cap, sizeof(*s->v));
    s->ix = calloc(cap, sizeof(*s->ix));
    s->mask = cap - 1;
    if (!s->ix) {
        free(s->v);
        s->v = NULL;
    }
    for (int i = 0; s->v && i < n; i++) {
        const char *id = *(const char *const *)((const char *)items + (size_t)i * stride + off);
        if (!id)
            continue;
        size_t h = pt_hash(id, strlen(id), false) & s->mask;
        while (s->v[h] && strcmp(s->v[h], id))
            h = (h + 1) & s->mask;
        if (!s->v[h])
            s->ix[h] = i;
        s->v[h] = id;
    }
}

/* The index of the first item with this id, -1 when none (or out of memory). */
static int idset_find(const struct idset *s, const char *id)
{
    if (!s->v)
        return -1;
    size_t h = pt_hash(id, strlen(id), false) & s->mask;
    for (; s->v[h]; h = (h + 1) & s->mask)
        if (!strcmp(s->v[h], id))
            return s->ix[h];
    return -1;
}

static bool idset_has(const struct idset *s, const char *id)
{
    if (!s->v)
        return true; /* out of memory: no false alarms */
    return idset_find(s, id) >= 0;
}

static void idset_free(struct idset *s)
{
    free(s->v);
    free(s->ix);
}

static bool has_group(const struct idset *groups, const char *id)
{
    for (int i = 0; builtin_groups[i]; i++)
        if (!strcmp(builtin_groups[i], id))
            return true;
    return idset_has(groups, id);
}

struct owned {
    const char *product, *owner;
    const struct pt_subscription_cf *sub;
};

static int owned_cmp(const void *x, const void *y)
{
    const struct owned *a = x, *b = y;
    int c = strcmp(a->product, b->product);
    return c ? c : strcmp(a->owner, b->owner);
}

/* A product's subscriptionsLimit: live subscriptions (submitted, active,
   suspended) per user. */
static void check_subscription_limits(const struct pt_conf *cf, struct pt_errors *errs)
{
    bool any = false;
    for (int i = 0; i < cf->nproducts; i++)
        any |= cf->products[i].subscriptions_limit > 0;
    if (!any || cf->nsubs == 0)
        return;
    struct owned *v = calloc((size_t)cf->nsubs, sizeof(*v));
    int n = 0;
    for (int i = 0; i < cf->nsubs; i++) {
        const struct pt_subscription_cf *s = &cf->subs[i];
        if (s->scope_kind == PT_SUB_PRODUCT && s->owner_user &&
            (s->state == PT_SUB_SUBMITTED || s->state == PT_SUB_ACTIVE || s->state == PT_SUB_SUSPENDED))
            v[n++] = (struct owned){s->scope_id, s->owner_user, s};
    }
    qsort(v, (size_t)n, sizeof(*v), owned_cmp);
    for (int i = 0; i < n;) {
        int j = i + 1;
        while (j < n && !owned_cmp(&v[i], &v[j]))
            j++;
        for (int k = 0; k < cf->nproducts; k++) {
            const struct pt_product_cf *p = &cf->products[k];
            if (p->subscriptions_limit > 0 && j - i > p->subscriptions_limit && !strcmp(p->id, v[i].product))
                pt_node_error(errs, v[j - 1].sub->node,
                              "user '%s' would have %d subscriptions to product '%s', whose subscriptionsLimit is %lld",
                              v[i].owner, j - i, p->id, (long long)p->subscriptions_limit);
        }
        i = j;
    }
    free(v);
}

static bool same_ws(const char *a, const char *b)
{
    return !strcmp(a ? a : "", b ? b : "");
}

static const char *ws_phrase(const char *w)
{
    static __thread char buf[2][300];
    static __thread int k;
    k ^= 1;
    if (!w || !*w)
        return "(service level)";
    snprintf(buf[k], sizeof(buf[k]), "(workspace '%s')", w);
    return buf[k];
}

/* a is b's path or b's path continues a's at a segment boundary ("" is the
   root, which every path continues) */
static bool path_within(const char *a, const char *b)
{
    size_t n = strlen(a);
    return n == 0 || (!strncmp(a, b, n) && (b[n] == '\0' || b[n] == '/'));
}

/*
 * A workspace's API must never take requests that an API outside the
 * workspace would otherwise serve: routing picks the longest path suffix,
 * then a host-bound API before a host-less one, so API w (of a workspace)
 * takes requests from API o (outside it) when o's path is a proper prefix of
 * w's and their hosts can meet, or when both have the same path and only w
 * is bound to a host.  Only current revisions route.
 */
static void check_workspace_claims(const struct pt_conf *cf, struct pt_errors *errs)
{
    bool any = false;
    for (int i = 0; i < cf->napis && !any; i++)
        any = cf->apis[i].workspace && *cf->apis[i].workspace;
    if (!any)
        return;
    for (int i = 0; i < cf->napis; i++) {
        const struct pt_api_cf *w = &cf->apis[i];
        if (!w->workspace || !*w->workspace || !w->path || !w->is_current)
            continue;
        for (int j = 0; j < cf->napis; j++) {
            const struct pt_api_cf *o = &cf->apis[j];
            if (i == j || same_ws(w->workspace, o->workspace) || !o->path || !o->is_current)
                continue;
            bool hosts_meet = !w->host || !o->host || !strcmp(w->host, o->host);
            bool same_path = !strcmp(w->path, o->path);
            bool takes = (!same_path && hosts_meet && path_within(o->path, w->path)) ||
                         (same_path && w->host && !o->host);
            if (takes)
                pt_node_error(errs, pt_node_get(w->node, "path"),
                              "API '%s' %s: path '%s'%s%s claims requests of API '%s' %s (path '%s'%s%s); an API "
                              "may not take requests from outside its workspace",
                              w->id, ws_phrase(w->workspace), w->path, w->host ? " on host " : "",
                              w->host ? w->host : "", o->id, ws_phrase(o->workspace), o->path,
                              o->host ? " on host " : "", o->host ? o->host : "");
        }
    }
}

/* An entity's workspace must exist ("" is the service level). */
static void check_workspace(const struct idset *ws, const char *kind, const char *id, const char *w,
                            const struct pt_node *node, struct pt_errors *errs)
{
    if (w && *w && !idset_has(ws, w))
        pt_node_error(errs, pt_node_get(node, "workspace"), "%s '%s': unknown workspace '%s'", kind, id, w);
}

bool pt_conf_check_refs(const struct pt_conf *cf, struct pt_errors *errs)
{
    int before = errs->n;
    struct idset apis, groups, products, users, vsets, wss;
    IDSET(&apis, cf->apis, cf->napis, struct pt_api_cf);
    IDSET(&groups, cf->groups, cf->ngroups, struct pt_group_cf);
    IDSET(&products, cf->products, cf->nproducts, struct pt_product_cf);
    IDSET(&users, cf->users, cf->nusers, struct pt_user_cf);
    IDSET(&vsets, cf->version_sets, cf->nversion_sets, struct pt_versionset_cf);
    IDSET(&wss, cf->workspaces, cf->nworkspaces, struct pt_workspace_cf);
    for (int i = 0; i < cf->nproducts; i++) {
        const struct pt_product_cf *p = &cf->products[i];
        struct pt_node *an = pt_node_get(p->node, "apis"), *gn = pt_node_get(p->node, "groups");
        for (int k = 0; k < p->apis.n; k++) {
            int ai = idset_find(&apis, p->apis.v[k]);
            if (!idset_has(&apis, p->apis.v[k]))
                pt_node_error(errs, an && an->kind == PT_N_SEQ ? an->items[k] : p->node,
                              "product '%s' lists unknown API '%s'", p->id, p->apis.v[k]);
            else if (ai >= 0 && !same_ws(p->workspace, cf->apis[ai].workspace))
                pt_node_error(errs, an && an->kind == PT_N_SEQ ? an->items[k] : p->node,
                              "product '%s' %s cannot hold API '%s' %s: a workspace's products hold its own APIs",
                              p->id, ws_phrase(p->workspace), p->apis.v[k], ws_phrase(cf->apis[ai].workspace));
        }
        for (int k = 0; k < p->groups.n; k++)
            if (!has_group(&groups, p->groups.v[k]))
                pt_node_error(errs, gn && gn->kind == PT_N_SEQ ? gn->items[k] : p->node,
                              "product '%s' lists unknown group '%s'", p->id, p->groups.v[k]);
        check_workspace(&wss, "product", p->id, p->workspace, p->node, errs);
    }
    for (int i = 0; i < cf->ngroups; i++)
        check_workspace(&wss, "group", cf->groups[i].id, cf->groups[i].workspace, cf->groups[i].node, errs);
    struct pt_node *lists[2] = {cf->named_values, cf->fragments};
    for (int l = 0; l < 2; l++)
        for (int i = 0; lists[l] && lists[l]->kind == PT_N_SEQ && i < lists[l]->n; i++) {
            struct pt_node *e = lists[l]->items[i], *id = pt_node_get(e, "id"), *w = pt_node_get(e, "workspace");
            if (w && (w->kind != PT_N_SCALAR || w->null))
                pt_node_error(errs, w, "workspace must be a workspace id");
            else if (id && id->kind == PT_N_SCALAR)
                check_workspace(&wss, l ? "policy fragment" : "named value", id->str, w ? w->str : NULL, e, errs);
        }
    for (int i = 0; i < cf->nbackends; i++)
        check_workspace(&wss, "backend", cf->backends[i].id, cf->backends[i].workspace, cf->backends[i].node, errs);
    for (int i = 0; i < cf->nversion_sets; i++)
        check_workspace(&wss, "version set", cf->version_sets[i].id, cf->version_sets[i].workspace,
                        cf->version_sets[i].node, errs);
    for (int i = 0; i < cf->nusers; i++) {
        const struct pt_user_cf *u = &cf->users[i];
        struct pt_node *gn = pt_node_get(u->node, "groups");
        for (int k = 0; k < u->groups.n; k++)
            if (!has_group(&groups, u->groups.v[k]))
                pt_node_error(errs, gn && gn->kind == PT_N_SEQ ? gn->items[k] : u->node,
                              "user '%s' is in unknown group '%s'", u->id, u->groups.v[k]);
    }
    for (int i = 0; i < cf->nsubs; i++) {
        const struct pt_subscription_cf *s = &cf->subs[i];
        bool found = s->scope_kind == PT_SUB_ALL_APIS ||
                     (s->scope_kind == PT_SUB_API && idset_has(&apis, s->scope_id)) ||
                     (s->scope_kind == PT_SUB_PRODUCT && idset_has(&products, s->scope_id));
        if (!found)
            pt_node_error(errs, pt_node_get(s->node, "scope"), "subscription '%s': scope '%s': there is no %s '%s'",
                          s->id, s->scope, s->scope_kind == PT_SUB_API ? "API" : "product", s->scope_id);
        else if (s->workspace && *s->workspace) {
            /* a workspace's subscription opens only that workspace's APIs */
            const char *tw = NULL;
            int ti = s->scope_kind == PT_SUB_API       ? idset_find(&apis, s->scope_id)
                     : s->scope_kind == PT_SUB_PRODUCT ? idset_find(&products, s->scope_id)
                                                       : -1;
            if (ti >= 0)
                tw = s->scope_kind == PT_SUB_API ? cf->apis[ti].workspace : cf->products[ti].workspace;
            if (s->scope_kind == PT_SUB_ALL_APIS)
                pt_node_error(errs, pt_node_get(s->node, "scope"),
                              "subscription '%s' of workspace '%s': scope /apis (every API of the service) is for "
                              "service-level subscriptions", s->id, s->workspace);
            else if (ti >= 0 && !same_ws(s->workspace, tw))
                pt_node_error(errs, pt_node_get(s->node, "scope"),
                              "subscription '%s' of workspace '%s': scope '%s' is outside the workspace", s->id,
                              s->workspace, s->scope);
        }
        if (s->owner_user && !idset_has(&users, s->owner_user))
            pt_node_error(errs, pt_node_get(s->node, "ownerId"), "subscription '%s': unknown owner '%s'", s->id,
                          s->owner_id);
        check_workspace(&wss, "subscription", s->id, s->workspace, s->node, errs);
    }
    check_subscription_limits(cf, errs);
    for (int i = 0; i < cf->napis; i++) {
        const struct pt_api_cf *a = &cf->apis[i];
        int vi = a->version_set ? idset_find(&vsets, a->version_set) : -1;
        if (a->version_set && !idset_has(&vsets, a->version_set))
            pt_node_error(errs, pt_node_get(a->node, "apiVersionSetId"), "API '%s': unknown version set '%s'", a->id,
                          a->version_set);
        else if (vi >= 0 && !same_ws(a->workspace, cf->version_sets[vi].workspace))
            pt_node_error(errs, pt_node_get(a->node, "apiVersionSetId"),
                          "API '%s' %s cannot use version set '%s' %s: an API's version set is of its own scope",
                          a->id, ws_phrase(a->workspace), a->version_set, ws_phrase(cf->version_sets[vi].workspace));
        check_workspace(&wss, "API", a->id, a->workspace, a->node, errs);
    }
    check_workspace_claims(cf, errs);
    struct idset *all[] = {&apis, &groups, &products, &users, &vsets, &wss};
    for (size_t i = 0; i < PT_ARRAY_LEN(all); i++)
        idset_free(all[i]);
    return errs->n == before;
}

struct pt_conf *pt_conf_parse(const char *name, const char *text, size_t len, struct pt_errors *errs)
{
    struct pt_pool *pool = pt_pool_new(64 * 1024);
    if (!pool)
        return NULL;
    struct pt_node *root = pt_node_parse_yaml(pool, name, text, len, errs);
    struct pt_conf *cf = root ? pt_conf_from_tree(pool, name, root, errs) : NULL;
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
    struct pt_conf *cf = root ? pt_conf_from_tree(pool, path, root, errs) : NULL;
    if (!cf)
        pt_pool_free(pool);
    return cf;
}

void pt_conf_free(struct pt_conf *cf)
{
    if (cf)
        pt_pool_free(cf->pool);
}
