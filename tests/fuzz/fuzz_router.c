/*
 * fuzz_router -- URL templates and the router (core/conf/pt_router.c): a
 * router built from arbitrary templates, then arbitrary requests matched
 * against it, as operations come from imported or uploaded API
 * definitions and paths from any client.
 *
 * The input is lines (at most MAX_LINES, each at most MAX_LINE bytes):
 *   "@suffix host"        a new API (suffix without leading '/'; host may be absent)
 *   "METHOD template"     an operation of the latest API (the first line
 *                         makes an API with the empty suffix when none is)
 *   ">METHOD path?query"  a request to match, with "host" as its Host when
 *                         given after a space
 * A refused template gives a message; a match reports an API and
 * operation the router was given, at most PT_MAX_PARAMS parameters whose
 * names are non-empty and whose values point into the request's path or
 * query, and a rest inside the path.  A template made only of literal
 * segments matches its own path with its own method.  Never a read or write
 * out of bounds (ASan), never a hang.
 */
#include "conf/pt_router.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINES 64
#define MAX_LINE 512
#define MAX_APIS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct line {
    char text[MAX_LINE + 1];
};

/* Tags handed to the router as API and operation data: the router must give back one of these. */
static char api_tags[MAX_APIS], op_tags[MAX_LINES];

static void inside(pt_str s, pt_str a, pt_str b)
{
    if (!s.len)
        return;
    bool in_a = a.len && s.data >= a.data && s.data + s.len <= a.data + a.len;
    bool in_b = b.len && s.data >= b.data && s.data + s.len <= b.data + b.len;
    if (!in_a && !in_b)
        abort(); /* a slice of neither the path nor the query */
}

static void check_match(enum pt_route_result res, const struct pt_match *m, pt_str path, pt_str query,
                        int napis, int nops)
{
    if (res == PT_ROUTE_NO_API)
        return;
    if (res != PT_ROUTE_OK && res != PT_ROUTE_NO_OPERATION)
        abort();
    const char *api = m->api;
    if (!api || api < api_tags || api >= api_tags + napis)
        abort(); /* an API the router was never given */
    if (res == PT_ROUTE_NO_OPERATION)
        return;
    const char *op = m->op;
    if (!op || op < op_tags || op >= op_tags + nops)
        abort();
    if (m->nparams < 0 || m->nparams > PT_MAX_PARAMS)
        abort();
    for (int i = 0; i < m->nparams; i++) {
        if (!m->params[i].name.len)
            abort();
        inside(m->params[i].value, path, query);
    }
    inside(m->rest, path, PT_NULL_STR);
}

/* Only [a-z0-9-_/]: its own path matches it literally. */
static bool literal_template(const char *t)
{
    if (t[0] != '/' || strstr(t, "//") || strstr(t, "/./") || strstr(t, "/../"))
        return false;
    for (const char *p = t; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '/'))
            return false;
    return true;
}

/* Splits "a b" at its first space into two C strings; b is "" when there is none. */
static char *split(char *s)
{
    char *sp = strchr(s, ' ');
    if (!sp)
        return s + strlen(s);
    *sp = '\0';
    return sp + 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct line lines[MAX_LINES];
    int nlines = 0;
    for (size_t off = 0; off < size && nlines < MAX_LINES;) {
        const uint8_t *nl = memchr(data + off, '\n', size - off);
        size_t n = nl ? (size_t)(nl - (data + off)) : size - off;
        size_t keep = n > MAX_LINE ? MAX_LINE : n;
        memcpy(lines[nlines].text, data + off, keep);
        lines[nlines].text[keep] = '\0';
        if (strlen(lines[nlines].text) == keep) /* no NUL inside: the router takes C strings */
            nlines++;
        off += n + 1;
    }
    struct pt_router *r = pt_router_new();
    if (!r)
        return 0;
    int napis = 0, nops = 0, api = -1;
    /* the literal templates to match once the router is finished: line index, API */
    int literal[MAX_LINES][2], nliteral = 0;
    for (int i = 0; i < nlines; i++) {
        char *t = lines[i].text;
        if (t[0] == '>')
            continue;
        if (t[0] == '@') {
            if (napis == MAX_APIS)
                continue;
            char *host = split(t + 1);
            size_t n = strlen(t + 1);
            if (n && (t[1] == '/' || t[n] == '/' || strstr(t + 1, "//")))
                continue; /* the configuration keeps such suffixes out */
            api = pt_router_add_api(r, t + 1, host, &api_tags[napis++]);
            continue;
        }
        if (api < 0) {
            if (napis == MAX_APIS)
                continue;
            api = pt_router_add_api(r, "", "", &api_tags[napis++]);
        }
        char line[MAX_LINE + 1];
        memcpy(line, t, sizeof(line));
        char *tmpl = split(line);
        void *clash = NULL;
        const char *why = pt_router_add_op(r, api, line, tmpl, &op_tags[nops], &clash);
        if (why && !*why)
            abort(); /* refused without a reason */
        if (!why) {
            if (literal_template(tmpl) && line[0] && strcmp(line, "*"))
                literal[nliteral][0] = i, literal[nliteral++][1] = api;
            nops++;
        }
    }
    pt_router_finish(r);
    for (int i = 0; i < nlines; i++) {
        char *t = lines[i].text;
        if (t[0] != '>')
            continue;
        char *target = split(t + 1), *host = split(target);
        char *q = strchr(target, '?');
        pt_str path = {target, q ? (size_t)(q - target) : strlen(target)};
        pt_str query = q ? pt_str_c(q + 1) : PT_NULL_STR;
        if (!path.len || path.data[0] != '/')
            continue; /* the head parser gives the router only paths starting with '/' */
        struct pt_match m;
        memset(&m, 0x5a, sizeof(m));
        enum pt_route_result res = pt_router_match(r, pt_str_c(host), pt_str_c(t + 1), path, query, &m);
        check_match(res, &m, path, query, napis, nops);
    }
    for (int k = 0; k < nliteral; k++) {
        char line[MAX_LINE + 1];
        memcpy(line, lines[literal[k][0]].text, sizeof(line));
        char *tmpl = split(line);
        struct pt_match m;
        memset(&m, 0x5a, sizeof(m));
        enum pt_route_result res =
            pt_router_match_in(r, literal[k][1], pt_str_c(line), pt_str_c(tmpl), PT_NULL_STR, &m);
        if (res != PT_ROUTE_OK) {
            fprintf(stderr, "%s %s: its own path does not match (%d)\n", line, tmpl, res);
            abort();
        }
        check_match(res, &m, pt_str_c(tmpl), PT_NULL_STR, napis, nops);
    }
    pt_router_free(r);
    return 0;
}

/* Seeds for the standalone runner (standalone.c); its first byte is part of the first line. */
const char *fuzz_name = "fuzz_router";
const char *const fuzz_seeds[] = {
    "\n@echo\nGET /items\nGET /items/{id}\nPOST /items/{id}/parts/{part}.{ext}\nGET /files/*\n* /any\n"
    ">GET /echo/items\n>GET /echo/items/42\n>POST /echo/items/7/parts/a.b.c\n>GET /echo/files/x/y/z\n"
    ">DELETE /echo/any\n>GET /echoes/items\n",
    "\n@api example.com\nGET /search?q={q}&page={page}\nGET /search\nGET /search?mode=fast\n"
    ">GET /api/search?q=a&page=2 example.com\n>GET /api/search?mode=fast example.com\n>GET /api/search\n",
    "\n@\nGET /\nGET /{a}/{b}/{c}\nGET /{a}{b}\nGET /x/{a}.\nGET /{}\nGET /a/../b\nGET //x\nGET /x/*/y\n"
    ">GET /\n>GET /1/2/3\n>GET /%2e%2e/x\n>GET /a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t\n",
    "\n@v1/a\n@v1\nGET /x\n@v1/a/b host\nGET /{p1}-{p2}-{p3}\n>GET /v1/a/b/1-2-3 host\n>GET /v1/a/x\n",
    NULL,
};
