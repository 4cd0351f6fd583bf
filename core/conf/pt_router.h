/*
 * pt_router -- from (host, method, path, query) to an API and an operation.
 *
 * APIs are found by their URL suffix: the longest suffix that is a whole
 * segment prefix of the path wins ("echo" takes /echo and /echo/x, never
 * /echoes); an API bound to a host beats one that is not; the empty suffix
 * is the root.  Each API then owns a trie of its operations' URL templates.
 * At every segment the trie tries, in order: a literal segment, a segment
 * mixing literals and parameters ("{name}.{ext}"), a whole-segment
 * parameter ("{id}"), and a trailing wildcard segment ("*").  At the end of the
 * path an operation with the request's method beats one declared with "*";
 * among those, one whose template names query parameters that the request
 * carries beats one that names none.
 *
 * A router is built once per configuration generation and is read-only
 * afterwards, so any number of threads may match against it at once.
 * Lookup cost depends on the number of segments of the path, not on the
 * number of operations.
 */
#ifndef PT_ROUTER_H
#define PT_ROUTER_H

#include "base/pt.h"

#define PT_MAX_PARAMS 16
#define PT_MAX_SEGMENTS 128

struct pt_router;

struct pt_param {
    pt_str name;
    pt_str value; /* raw, still percent-encoded */
};

struct pt_match {
    void *api;
    void *op;
    pt_str rest; /* the path after the API suffix: "" or "/..." */
    int nparams;
    struct pt_param params[PT_MAX_PARAMS];
};

struct pt_router *pt_router_new(void);
void pt_router_free(struct pt_router *r);

/* Adds an API; returns its index.  `path` has no leading/trailing '/'. */
int pt_router_add_api(struct pt_router *r, const char *path, const char *host, void *data);
/*
 * Adds an operation to API `api`.  Returns NULL, or a message saying what
 * is wrong with the template (syntax, or the same method and template as
 * an earlier operation, whose data is then stored in *clash).
 */
const char *pt_router_add_op(struct pt_router *r, int api, const char *method, const char *tmpl, void *data,
                             void **clash);
/* Call once after the last add and before the first match. */
void pt_router_finish(struct pt_router *r);

/* Result of a match. */
enum pt_route_result {
    PT_ROUTE_OK,
    PT_ROUTE_NO_API,
    PT_ROUTE_NO_OPERATION,
};

/*
 * Matches a request.  `host` is the Host value without port (may be empty),
 * `path` the raw path starting with '/', `query` the raw query without '?'.
 * Parameter slices point into path and query.
 */
enum pt_route_result pt_router_match(const struct pt_router *r, pt_str host, pt_str method, pt_str path,
                                     pt_str query, struct pt_match *m);
/* Matches `rest` (what follows the API suffix) against the operations of
   API `api` only (an index from pt_router_add_api). */
enum pt_route_result pt_router_match_in(const struct pt_router *r, int api, pt_str method, pt_str rest,
                                        pt_str query, struct pt_match *m);

#endif
