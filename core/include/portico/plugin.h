/*
 * portico/plugin.h -- the Portico policy plugin SDK.
 *
 * A plugin is a shared object that exports one symbol, PT_PLUGIN_SYMBOL
 * ("portico_plugin"), a `struct pt_plugin` describing the policies it
 * provides.  The gateway loads it with dlopen(RTLD_NOW | RTLD_LOCAL),
 * checks the ABI numbers and the struct size before touching anything
 * else, and hands it a `struct pt_api` function table: plugins never link
 * against the gateway.  Build one with nothing but this header:
 *
 *     cc -shared -fPIC -fvisibility=hidden -o myplugin.so myplugin.c \
 *        $(pkg-config --cflags portico)      (or -I$prefix/include)
 *
 * (`make install` puts this header in $includedir/portico and portico.pc in
 * $libdir/pkgconfig.)
 *
 * and put it in the plugin directory (`pluginDir:` in the configuration).
 * docs/plugin-guide.md walks through a complete example.
 *
 * ABI rules: a plugin loads when it was built for the same MAJOR and an
 * older or equal MINOR.  MINOR grows only by adding functions at the end
 * of struct pt_api (whose `size` tells a plugin what the gateway has) and
 * new enum values or flags; the layouts of struct pt_plugin,
 * pt_policy_def and pt_attr_def (arrays of the last two live in plugins)
 * change only with MAJOR.
 *
 * ABI changelog:
 *   1.0  2026-11-26  first version: policies with attribute schemas,
 *                    compile/run/free, asynchronous run with resume,
 *                    headers, URL, method, status, bodies, variables,
 *                    expressions, logging, arena, timers.
 *   1.1              facts, counters, at_end/at_response, nested elements,
 *                    backend client certificates.
 *   1.2              original_query_param.
 *   1.3  2026-12-06  http_get (the gateway's outbound client for plugin
 *                    threads), checking_only.
 *   1.4  2026-12-06  policy flags PT_POLICY_PREFLIGHT and
 *                    PT_POLICY_CLIENT_CERT: what the gateway needs to know
 *                    of a policy it does not implement.
 *   1.5  2026-12-06  operation_definition and schema_definition: the API
 *                    definition (parameters, representations, responses,
 *                    schemas) the validation policies check against.
 *   1.6  2026-12-06  metric_emit: emit-metric's custom counters on /metrics;
 *                    trace_emit: an entry in the request's debug trace and
 *                    the gateway's log (the trace policy); logger_find
 *                    and log_emit: messages to the configured
 *                    loggers (log-to-eventhub).
 *   1.7  2026-12-06  backend_set and forward_proxy_set (set-backend-service,
 *                    proxy); http_send, http_cancel and http_send_detached
 *                    (send-request, send-one-way-request: the worker's own
 *                    non-blocking client); var_set_response and
 *                    var_get_response (a response held in a variable);
 *                    cache_get, cache_put, cache_del and cache_mark (the
 *                    node's caches, internal or Redis); the facts
 *                    PT_FACT_USER_GROUPS, PT_FACT_BUFFER_SIZE and
 *                    PT_FACT_WORKSPACE_ID; the policy flag
 *                    PT_POLICY_HTTP_SEND.
 *   1.8  2026-12-06  the counter flag PT_COUNTER_COUNT_REFUSED (a call
 *                    counted whether its limit admits it or not, decided
 *                    in the same operation: what counters.redis's leases
 *                    need to know).
 *   1.9  2026-12-06  cert_find and tls_client_cert_pem: the certificate
 *                    store (authentication-certificate certificate-id,
 *                    validate-client-certificate's issuer and CA
 *                    certificates, revocation lists).
 *   1.10 2026-12-07  pt_http_req.http_version and the policy flag
 *                    PT_POLICY_HTTP_VERSION (send-request's http-version:
 *                    side calls over HTTP/2).
 */
#ifndef PORTICO_PLUGIN_H
#define PORTICO_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PT_ABI_MAJOR 1
#define PT_ABI_MINOR 10

#define PT_PLUGIN_SYMBOL portico_plugin
#define PT_PLUGIN_SYMBOL_NAME "portico_plugin"
#define PT_PLUGIN_EXPORT __attribute__((visibility("default")))

/* ------------------------------------------------------------ statuses */

/* What a policy's run() returns; only the pipeline driver interprets it. */
typedef enum pt_status {
    PT_OK = 0,       /* done; continue with the next statement */
    PT_ERROR = 1,    /* failed (set the reason with api->fail); on-error runs */
    PT_AGAIN = 2,    /* suspended; api->resume() continues the pipeline later */
    PT_DECLINED = 3, /* nothing to do here; continue (same as PT_OK) */
    PT_DONE = 4,     /* a response was produced (api->respond); stop the pipeline */
} pt_status;

/* Sections of a policy document, as bits. */
enum {
    PT_SECTION_INBOUND = 1,
    PT_SECTION_BACKEND = 2,
    PT_SECTION_OUTBOUND = 4,
    PT_SECTION_ON_ERROR = 8,
    PT_SECTION_ALL = 15,
};

/* Scopes where a policy document can be attached, as bits. */
enum {
    PT_SCOPE_GLOBAL = 1,
    PT_SCOPE_WORKSPACE = 2,
    PT_SCOPE_PRODUCT = 4,
    PT_SCOPE_API = 8,
    PT_SCOPE_OPERATION = 16,
    PT_SCOPE_ALL = 31,
};

/* --------------------------------------------------- attribute schemas */

/*
 * A policy's attributes are described as data: the gateway validates
 * configurations against the schema (reporting file:line:column), generates
 * documentation from it, and hands compile() only values that passed.
 * A YAML statement `{set-header: {name: X, exists-action: override, value: [a, b]}}`
 * is checked against set-header's attribute list.
 */
typedef enum pt_attr_type {
    PT_ATTR_STRING = 1, /* a string (or an expression, with PT_ATTR_EXPR) */
    PT_ATTR_INT,        /* an integer within [min, max] */
    PT_ATTR_BOOL,       /* true / false */
    PT_ATTR_ENUM,       /* one of enums[] */
    PT_ATTR_ELEMENT,    /* a nested element with its own attributes (children) */
    PT_ATTR_POLICIES,   /* nested statements: they run after this policy's run() returns PT_OK */
} pt_attr_type;

#define PT_ATTR_REQUIRED 0x01 /* must be present */
#define PT_ATTR_EXPR 0x02     /* may be an expression @(...) / @{...} */
#define PT_ATTR_MULTI 0x04    /* a list of values is accepted (several <value> elements) */
#define PT_ATTR_SCALAR 0x08   /* PT_ATTR_ELEMENT: may also be written as a bare value */
#define PT_ATTR_OR 0x10       /* written instead of the attribute before it (the reference shows it so) */

struct pt_attr_def {
    const char *name;
    pt_attr_type type;
    unsigned flags;
    const char *def;                    /* default, as text; NULL = none */
    const char *const *enums;           /* PT_ATTR_ENUM: NULL-terminated names */
    const struct pt_attr_def *children; /* PT_ATTR_ELEMENT: NULL-name terminated */
    int64_t min, max;                   /* PT_ATTR_INT bounds (both 0 = any) */
    const char *doc;                    /* one line for the policy reference */
};

/* ------------------------------------------------------ opaque handles */

typedef struct pt_compile pt_compile; /* one statement being compiled */
typedef struct pt_call pt_call;       /* one statement running for one request */
typedef struct pt_value pt_value;     /* a compiled attribute value (literal or expression) */
typedef struct pt_element pt_element; /* a nested element of a statement */
typedef struct pt_timer pt_timer;
struct pt_http_get_opts; /* api->http_get's options, below */
struct pt_http_req;      /* api->http_send's request (ABI 1.7), below */
struct pt_http_resp;     /* ... and its response */

/* A byte string that is not NUL-terminated. */
typedef struct pt_bytes {
    const char *data;
    size_t len;
} pt_bytes;

/* Which message an accessor works on. */
typedef enum pt_msg {
    PT_MSG_CURRENT = 0, /* the request in inbound/backend, the response in outbound/on-error */
    PT_MSG_REQUEST = 1,
    PT_MSG_RESPONSE = 2,
} pt_msg;

/* set_header modes (APIM's exists-action). */
typedef enum pt_header_mode {
    PT_HEADER_OVERRIDE = 0,
    PT_HEADER_SKIP = 1,
    PT_HEADER_APPEND = 2,
    PT_HEADER_DELETE = 3,
} pt_header_mode;

/* ------------------------------------------------------------- the API */

/* Node-wide counters (ABI 1.1), shared by every worker; see api->counter. */
enum { PT_COUNTER_SLIDING = 0, PT_COUNTER_FIXED = 1, PT_COUNTER_GAUGE = 2 };
/* A flag on kind (ABI 1.8), with limit > 0 and add > 0: the addition is made even when it passes
   the limit (APIM counts refused calls too), and the result says whether the call is admitted.
   With counters.redis a node admits such a call only against tokens it reserved in Redis, so the
   limit holds across nodes (docs/access-policies.md); without the flag, an addition past the
   limit is not made, and an addition without a limit is counted as it comes. */
#define PT_COUNTER_COUNT_REFUSED 0x100
#define PT_COUNTER_KIND_MASK 0xff

struct pt_counter_op {
    pt_bytes key;
    int kind;          /* PT_COUNTER_* */
    int persist;       /* fixed: kept in the store across restarts (quotas) */
    int64_t window_ms; /* sliding: the window; fixed: the period */
    int64_t origin_ms; /* fixed: wall-clock start of the first period */
    int64_t limit;     /* > 0: the addition is made only if the count stays <= limit */
    int64_t add;       /* what to add (negative for a gauge going down); 0 = read */
    /* results */
    int64_t count;         /* the count after the operation (unchanged when refused) */
    int64_t retry_ms;      /* when the limit is reached: until room frees up */
    int64_t period_end_ms; /* fixed: the wall-clock end of the current period */
};

/*
 * The gateway's services.  Every function taking a pt_call may only be
 * used during that call's run() (or from a timer/resume callback of that
 * call); pointers returned into request data stay valid until the request
 * ends.  Functions returning int return 0 on success, -1 on error.
 */
struct pt_api {
    uint32_t size; /* sizeof(struct pt_api) of the gateway */
    uint16_t abi_major, abi_minor;

    /* -- compile time (inside compile()) -- */

    /* The attribute's value when it is a literal (NULL if absent or an expression). */
    const char *(*attr_literal)(pt_compile *c, const char *name);
    /* The attribute as a compiled value (literal or expression); NULL if absent. */
    pt_value *(*attr_value)(pt_compile *c, const char *name);
    /* All values of a PT_ATTR_MULTI attribute; returns the count. */
    int (*attr_values)(pt_compile *c, const char *name, pt_value ***out);
    int64_t (*attr_int)(pt_compile *c, const char *name, int64_t def);
    int (*attr_bool)(pt_compile *c, const char *name, int def);
    /* Index of an enum attribute's value in its enums[], or def. */
    int (*attr_enum)(pt_compile *c, const char *name, int def);
    /* Nested elements named `name` (several when written as a list). */
    int (*attr_elements)(pt_compile *c, const char *name, pt_element ***out);
    /* Accessors on a nested element, same meaning as above. */
    const char *(*elem_literal)(pt_element *e, const char *name);
    pt_value *(*elem_value)(pt_element *e, const char *name);
    int (*elem_values)(pt_element *e, const char *name, pt_value ***out);
    /* Reports a configuration error at the attribute (NULL: the statement). */
    void (*compile_error)(pt_compile *c, const char *attr, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    /* Memory that lives as long as the configuration generation. */
    void *(*compile_alloc)(pt_compile *c, size_t n);
    /* The section this statement is compiled for (PT_SECTION_*). */
    int (*compile_section)(pt_compile *c);

    /* -- values -- */

    /* Evaluates a value to a string (arena memory).  Returns 0; PT_AGAIN
       when an expression needs a body not read yet (return PT_AGAIN: run()
       is called again once it is); -1 when the expression failed (the
       request's error is set: return PT_ERROR). */
    /* (With a NULL call, at compile time: a literal value's text; -1 for an expression.) */
    int (*eval)(pt_call *call, const pt_value *v, pt_bytes *out);
    /* Evaluates to a boolean (Lua truthiness; literal "true"/"false"); same returns as eval. */
    int (*eval_bool)(pt_call *call, const pt_value *v, int *out);
    /* true when the value is a literal (no per-request cost). */
    int (*value_is_literal)(const pt_value *v);

    /* -- messages -- */

    /* Number of values of header `name` (case-insensitive); fills up to max. */
    int (*header_get)(pt_call *call, pt_msg m, pt_bytes name, pt_bytes *values, int max);
    /*
     * Sets a header with APIM's set-header semantics: OVERRIDE replaces,
     * SKIP leaves an existing header alone, APPEND adds, DELETE removes
     * (values ignored).  Several values are joined with ", " into one field,
     * except for headers that must stay separate lines (Set-Cookie, Cookie,
     * User-Agent, WWW-Authenticate, Date, Expires, ...).  The name must be a
     * token and values may not hold CR, LF or NUL; Connection,
     * Content-Length, Keep-Alive and Transfer-Encoding cannot be set.
     * Returns 0, or -1 with the request's error set (return PT_ERROR).
     */
    int (*header_set)(pt_call *call, pt_msg m, pt_bytes name, const pt_bytes *values, int nvalues,
                      pt_header_mode mode);
    /* Iterates headers: index from 0; returns 0 while there are more. */
    int (*header_at)(pt_call *call, pt_msg m, int index, pt_bytes *name, pt_bytes *value);
    /* The request's method and URL pieces (path and query as sent to the backend). */
    pt_bytes (*method)(pt_call *call);
    int (*set_method)(pt_call *call, pt_bytes method);
    pt_bytes (*path)(pt_call *call);
    int (*set_path)(pt_call *call, pt_bytes path);
    pt_bytes (*query)(pt_call *call);
    int (*set_query)(pt_call *call, pt_bytes query);
    /* A query parameter's raw value (0 when present). */
    int (*query_param)(pt_call *call, pt_bytes name, pt_bytes *value);
    /* A matched template parameter (decoded). */
    int (*matched_param)(pt_call *call, pt_bytes name, pt_bytes *value);
    /* The response status (0 before there is a response). */
    int (*status)(pt_call *call);
    int (*set_status)(pt_call *call, int code, pt_bytes reason);
    /*
     * The whole body of a message.  When it has not been read yet the call
     * returns PT_AGAIN: return PT_AGAIN from run(); the gateway reads the
     * body (up to limits.bufferSize) and calls run() again from the start.
     * A missing body is an empty one.
     */
    int (*body_get)(pt_call *call, pt_msg m, pt_bytes *out);
    /* Replaces the body (Content-Length follows). */
    int (*body_set)(pt_call *call, pt_msg m, pt_bytes data);

    /* -- variables (context.variables) -- */
    int (*var_get)(pt_call *call, pt_bytes name, pt_bytes *out);
    int (*var_set)(pt_call *call, pt_bytes name, pt_bytes value);

    /* -- outcome -- */

    /* Sets the request's error (context.lastError) and returns PT_ERROR. */
    pt_status (*fail)(pt_call *call, int status, const char *reason, const char *message);
    /* Makes the current response final (return-response style) and returns PT_DONE. */
    pt_status (*respond)(pt_call *call);

    /* -- asynchronous work -- */

    /* Continues a run() that returned PT_AGAIN, with its final status. */
    void (*resume)(pt_call *call, pt_status st);
    /* Calls fn after ms milliseconds on the request's thread. */
    pt_timer *(*timer_start)(pt_call *call, uint32_t ms, void (*fn)(pt_call *call, void *arg), void *arg);
    void (*timer_cancel)(pt_timer *t);

    /* -- utilities -- */
    void *(*alloc)(pt_call *call, size_t n); /* request arena */
    void (*log)(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
    /* Per-statement state that a plugin keeps for one request (NULL first). */
    void **(*call_state)(pt_call *call);

    /* -- routing facts -- */
    /* The matched operation's URL template ("/items/{id}?x={y}"); empty if none. */
    pt_bytes (*operation_template)(pt_call *call);
    /* Base URLs: PT_URL_GATEWAY = scheme://host[:port]/apiSuffix as the client
       called it; PT_URL_BACKEND = the API's service URL (no trailing '/'). */
    pt_bytes (*url_base)(pt_call *call, int which);

    /* -- ABI 1.1 -- */
    /* A fact about the call (PT_FACT_*). */
    pt_bytes (*fact)(pt_call *call, int which);
    /* Counts (struct pt_counter_op): 1 when done, 0 when refused by op->limit. */
    int (*counter)(struct pt_counter_op *op);
    /* fn(arg, status, bytes received, bytes sent) once the request is over,
       however it ended (also when the client went away); 0 or -1. */
    int (*at_end)(pt_call *call, void (*fn)(void *arg, int status, uint64_t bytes_in, uint64_t bytes_out),
                  void *arg);
    /* fn(call, arg) just before the response head goes to the client
       (after outbound and on-error): it may still set response headers. */
    int (*at_response)(pt_call *call, void (*fn)(pt_call *call, void *arg), void *arg);
    /* Nested elements of an element (compile time), like attr_elements. */
    int (*elem_elements)(pt_element *e, const char *name, pt_element ***out);
    /* Compile time: a client certificate (PEM chain and key files, relative
       to the configuration's folder) for backend TLS; NULL after a
       compile error.  It lives as long as the generation. */
    void *(*tls_client_cert)(pt_compile *c, const char *certificate, const char *key);
    /* Request time: the backend connection of this request presents it
       (connections with it are pooled apart). */
    int (*use_client_cert)(pt_call *call, void *cert);

    /* -- ABI 1.2 -- */
    /* Like query_param, in the query string the client sent, whatever
       inbound policies did to the backend's. */
    int (*original_query_param)(pt_call *call, pt_bytes name, pt_bytes *value);

    /* -- ABI 1.3 -- */
    /* A blocking GET for a plugin's own threads (never from run() or any
       other callback on a worker): http or https (certificate and name
       checked against the system's CAs or SSL_CERT_FILE), no redirects
       followed, the whole fetch bounded by o->timeout_ms and the body by
       o->max_body; o->cancel_fd becoming readable ends it at once.  Returns
       the final response's status with *body (malloc'd, NUL-terminated,
       free() it) and *len, or a negative PT_HTTP_GET_* code with err. */
    int (*http_get)(const char *url, const struct pt_http_get_opts *o, char **body, size_t *len, char *err,
                    size_t errlen);
    /* 1 while the gateway only checks a configuration (portico -t, the
       policy reference): compile() must not reach the network then. */
    int (*checking_only)(void);

    /* -- ABI 1.5 -- */
    /* The matched operation's definition as compact JSON text: {"api", "apiType", "id", "method",
       "urlTemplate", "templateParameters", "request", "responses"} with the fields as stored
       (docs/api-definitions.md; absent ones left out).  The text lives as long as the configuration
       generation and sits at one address for every request to that operation in it, so a plugin
       may key what it compiles from it by .data.  Empty when no operation matched. */
    pt_bytes (*operation_definition)(pt_call *call);
    /* A schema as JSON text: scope PT_SCHEMA_API, one of the call's API's schemas {"id",
       "contentType", "document" | "value"} (an empty id: its first); PT_SCHEMA_SERVICE, a
       service-level schema {"id", "schemaType", "document" | "value"}.  Same lifetime and address
       rule as operation_definition; empty when there is none. */
    pt_bytes (*schema_definition)(pt_call *call, int scope, pt_bytes id);

    /* -- ABI 1.6 -- */
    /* Adds value to the custom counter `name` in namespace `ns` (emit-metric), in the series of the
       ndims dimensions dim_names[i] = dim_values[i] (at most 10).  A dim_values[i] whose data is NULL
       takes the request's value of the built-in dimension dim_names[i] ("API ID", "Operation ID",
       "Product ID", "User ID", "Subscription ID", "Location", "Gateway ID"; names compared without
       case).  Names become Prometheus names (ASCII letters lower-cased, other runs '_'; the metric is
       namespace_name; docs/metrics.md).  Returns 0, or -1 when value is not a finite number >= 0, a
       name is empty once made a Prometheus name (or the metric's is over 200 characters or starts with
       "portico_" or "process_"), two dimensions get the same name, there are more than 10, or a NULL value
       names no built-in dimension.  With a NULL call (compile time) it only checks the names and counts
       nothing. */
    int (*metric_emit)(pt_call *call, const char *ns, const char *name, double value,
                       const pt_bytes *dim_names, const pt_bytes *dim_values, int ndims);
    /* The trace policy's sink: when the request is traced (docs/tracing.md) its trace gets an entry
       {source, severity, message, metadata}; when severity (PT_TRACE_SEVERITY_*) is at least the
       configured tracing.verbosity, the message goes to the gateway's log.  nmeta name/value pairs
       (0..n).  Returns 0. */
    int (*trace_emit)(pt_call *call, pt_bytes source, int severity, pt_bytes message,
                      const pt_bytes *meta_names, const pt_bytes *meta_values, int nmeta);
    /* Compile time: the configuration's logger `id` (`loggers:`) as a handle that lives as long as
       the configuration generation; NULL after reporting a compile error at attribute `attr` when
       there is no such logger. */
    const void *(*logger_find)(pt_compile *c, const char *attr, const char *id);
    /* Request time: queues a copy of message for the logger (its own thread delivers it; this never
       waits).  A message longer than PT_LOG_MESSAGE_MAX bytes is cut to it, at a UTF-8 character
       boundary.  partition_id and partition_key travel with it (empty: none).  0 when queued, -1
       when dropped (the logger's queue is full; counted). */
    int (*log_emit)(pt_call *call, const void *logger, pt_bytes message, pt_bytes partition_id,
                    pt_bytes partition_key);

    /* -- ABI 1.7 -- */
    /* set-backend-service: where forward-request sends this request.  A non-empty backend_id names a
       configured backend (a single one or a pool, docs/backends.md); otherwise base_url is an http(s)
       base URL (the operation's path is appended to it).  0, or -1 with the request's error set. */
    int (*backend_set)(pt_call *call, pt_bytes base_url, pt_bytes backend_id);
    /* The proxy policy: forward-request goes through the HTTP proxy url (http://host[:port]), with
       Basic credentials when username is not empty.  0, or -1 with the request's error set. */
    int (*forward_proxy_set)(pt_call *call, pt_bytes url, pt_bytes username, pt_bytes password);
    /* send-request: starts r on the request's worker without blocking it; done(call, arg, err, resp)
       runs later on the same worker (never from inside http_send), with err 0 and the response, or
       a PT_HTTP_ERR_* code and resp NULL.  Everything r points to is copied.  Returns a handle for
       http_cancel (done is not called after a cancel), or NULL with the request's error set.  Calls
       still running when the request ends are cancelled. */
    void *(*http_send)(pt_call *call, const struct pt_http_req *r,
                       void (*done)(pt_call *call, void *arg, int err, const struct pt_http_resp *resp),
                       void *arg);
    void (*http_cancel)(void *handle);
    /* send-one-way-request: r is copied to a bounded queue of the worker and sent whatever becomes of
       the request; 0 when queued, -1 when dropped (counted on /metrics). */
    int (*http_send_detached)(pt_call *call, const struct pt_http_req *r);
    /* A response kept in a variable (send-request's response-variable-name): copied into the request;
       context.variables[name] is then a response object in expressions (docs/lua-api.md).  A NULL
       resp sets the variable to nil (ignore-error).  0 or -1. */
    int (*var_set_response)(pt_call *call, pt_bytes name, const struct pt_http_resp *resp);
    /* The response held in variable name: 1 and *out filled (pointers valid until the request
       ends), 0 when the variable is not a response. */
    int (*var_get_response)(pt_call *call, pt_bytes name, struct pt_http_resp *out);
    /* The node's caches (docs/caching.md).  caching_type is PT_CACHE_*.  cache_get: 1 with *value
       (request memory) on a hit, 0 on a miss, PT_AGAIN when the answer comes later through
       done(call, arg, found, value) on the request's worker, never from inside cache_get (then
       return PT_AGAIN from run() and resume from done); done is not called when the request ends
       first.  A store that is down answers a miss.  done may be NULL (a plugin that cannot wait):
       then cache_get never returns PT_AGAIN; the internal store answers as always, and a lookup
       that Redis would answer (external, or prefer-external with cache.redis) is a miss at once,
       Redis not asked (counted as a Redis miss and a skipped command).  cache_put and cache_del
       never wait: 0 when handed to the store, -1 when skipped (too large, store down; counted). */
    int (*cache_get)(pt_call *call, int caching_type, pt_bytes key, pt_bytes *value,
                     void (*done)(pt_call *call, void *arg, int found, pt_bytes value), void *arg);
    int (*cache_put)(pt_call *call, int caching_type, pt_bytes key, pt_bytes value, uint32_t ttl_s);
    int (*cache_del)(pt_call *call, int caching_type, pt_bytes key);
    /* Records whether the response cache answered this request (PT_CACHE_HIT / PT_CACHE_MISS): the
       analytics' and access log's cache field. */
    void (*cache_mark)(pt_call *call, int status);

    /* -- ABI 1.9 -- */
    /* Compile time: a certificate of the store (`certificates:`) by id, or when id is NULL by
       thumbprint (hexadecimal, any case, colons and spaces ignored); NULL after a compile error on
       attr when there is none.  With id and thumbprint both NULL: the index-th certificate (no
       error past the end), to walk the store.  A found certificate with a NULL pem: the
       configuration is only being checked and the certificate may be in the store (the statement
       never runs).  It lives as long as the generation. */
    const struct pt_stored_cert *(*cert_find)(pt_compile *c, const char *attr, const char *id,
                                              const char *thumbprint, int index);
    /* Compile time: like tls_client_cert, from PEM text (the certificate, then its chain; its key). */
    void *(*tls_client_cert_pem)(pt_compile *c, const char *chain_pem, const char *key_pem);
};

/* A certificate of the store (ABI 1.9). */
struct pt_stored_cert {
    const char *id;
    const char *thumbprint; /* SHA-1, upper-case hexadecimal */
    const char *pem;        /* the certificate, then its chain */
    const char *key_pem;    /* its private key, or NULL */
    const char *crl;        /* PEM revocation lists it publishes, or NULL */
    int ca;                 /* 1: client certificates may chain to it */
};

/* caching-type (ABI 1.7): prefer-external uses Redis when `cache.redis` is configured, else the
   internal cache. */
enum { PT_CACHE_PREFER_EXTERNAL = 0, PT_CACHE_EXTERNAL = 1, PT_CACHE_INTERNAL = 2 };
/* cache_mark's statuses (ABI 1.7). */
enum { PT_CACHE_HIT = 1, PT_CACHE_MISS = 2 };

/* api->http_send's request (ABI 1.7).  Zeros are defaults. */
struct pt_http_req {
    pt_bytes method; /* GET */
    pt_bytes url;    /* absolute http:// or https:// URL */
    const pt_bytes *header_names, *header_values;
    int nheaders;
    pt_bytes body;
    uint32_t timeout_ms; /* the whole exchange (60 s) */
    size_t max_body;     /* the response body (limits.bufferSize) */
    pt_bytes proxy_url;  /* empty: direct */
    pt_bytes proxy_username, proxy_password;
    void *client_cert; /* from tls_client_cert, or NULL */
    /* ABI 1.10: PT_HTTP_VERSION_*; read only from a policy whose definition has PT_POLICY_HTTP_VERSION
       (older plugins do not have the field) */
    int http_version;
};

/* pt_http_req.http_version (ABI 1.10), as forward-request's http-version: HTTP/1.1; HTTP/2 when the
   server agrees by ALPN (https), else HTTP/1.1; HTTP/2 only (h2c with prior knowledge to http://). */
enum { PT_HTTP_VERSION_1 = 0, PT_HTTP_VERSION_2OR1 = 1, PT_HTTP_VERSION_2 = 2 };

/* api->http_send's response (ABI 1.7). */
struct pt_http_resp {
    int status;
    pt_bytes reason;
    const pt_bytes *header_names, *header_values;
    int nheaders;
    pt_bytes body;
};

/* http_send's errors (ABI 1.7): APIM's lastError reasons in brackets. */
enum {
    PT_HTTP_ERR_TIMEOUT = 1,   /* Timeout */
    PT_HTTP_ERR_CONNECT = 2,   /* BackendConnectionFailure: could not connect (or proxy refused) */
    PT_HTTP_ERR_PROTOCOL = 3,  /* BackendConnectionFailure: a broken response */
    PT_HTTP_ERR_TOO_LARGE = 4, /* the response body passed max_body */
    PT_HTTP_ERR_URL = 5,       /* not an http(s) URL, or a host that does not resolve */
};

/* trace_emit's severities (ABI 1.6), APIM's. */
enum { PT_TRACE_SEVERITY_VERBOSE = 0, PT_TRACE_SEVERITY_INFORMATION = 1, PT_TRACE_SEVERITY_ERROR = 2 };

/* log_emit's longest message (ABI 1.6): APIM's 200 KB of log-to-eventhub. */
#define PT_LOG_MESSAGE_MAX (200 * 1024)

/* schema_definition's scopes (ABI 1.5). */
enum { PT_SCHEMA_API = 0, PT_SCHEMA_SERVICE = 1 };

/* api->http_get's options (ABI 1.3); zeros mean the defaults. */
struct pt_http_get_opts {
    uint32_t timeout_ms; /* the whole fetch (10 s) */
    size_t max_body;     /* decoded body (1 MiB) */
    const char *accept;  /* Accept (application/json) */
    int cancel_fd;       /* -1: none */
};

enum {
    PT_HTTP_GET_ERROR = -1,
    PT_HTTP_GET_TOO_LARGE = -2, /* the body passed max_body */
    PT_HTTP_GET_CANCELLED = -3,
    PT_HTTP_GET_TIMEOUT = -4,
};

enum { PT_URL_GATEWAY = 0, PT_URL_BACKEND = 1 };

/* Facts about a call, for api->fact (ABI 1.1); empty when there is none. */
enum {
    PT_FACT_CLIENT_IP = 0,      /* the client's address ("192.0.2.7", "2001:db8::7") */
    PT_FACT_SUBSCRIPTION_ID,    /* the subscription of the key the call carried */
    PT_FACT_SUBSCRIPTION_KEY,   /* that key */
    PT_FACT_SUBSCRIPTION_START, /* its createdDate (ISO 8601) */
    PT_FACT_PRODUCT_ID,         /* the product context */
    PT_FACT_API_ID,
    PT_FACT_OPERATION_ID,
    PT_FACT_USER_ID, /* the subscription's owner */
    PT_FACT_REQUEST_ID,
    PT_FACT_CLIENT_CERT, /* the TLS client certificate (PEM), then the intermediates it sent; empty without
                            one */
    PT_FACT_CLIENT_CERT_VERIFY, /* "ok", or why it does not verify against the listener's clientCa */
    PT_FACT_USER_GROUPS,        /* ABI 1.7: the subscription owner's group ids, comma-separated, sorted */
    PT_FACT_BUFFER_SIZE,  /* ABI 1.7: limits.bufferSize in bytes (decimal): the largest body body_get reads */
    PT_FACT_WORKSPACE_ID, /* ABI 1.7: the API's workspace, empty for a service-level API */
};

/* Log levels for api->log. */
enum { PT_LOG_LEVEL_ERROR = 0, PT_LOG_LEVEL_WARN, PT_LOG_LEVEL_INFO, PT_LOG_LEVEL_DEBUG };

/* ---------------------------------------------------------- descriptors */

/* Policy flags. */
#define PT_POLICY_ONCE_PER_SECTION 0x01 /* at most one per section */
/* ABI 1.4: the policy answers CORS preflights.  A preflight (OPTIONS with
   Origin and Access-Control-Request-Method, to an API without an OPTIONS
   operation) whose inbound section holds such a statement runs only those
   statements; when none of them answered, it gets an empty 200 and the
   backend is not called.  Ignored by gateways older than 1.4. */
#define PT_POLICY_PREFLIGHT 0x02
/* ABI 1.4: the policy checks the client's TLS certificate.  A listener with
   clientCertificate: required lets any certificate through the handshake;
   the gateway warns when no statement with this flag is configured. */
#define PT_POLICY_CLIENT_CERT 0x04
/* ABI 1.7: the policy makes side calls (http_send, http_send_detached).  The
   generation then builds the https client context (upstream.caFile,
   upstream.verify, upstream.tls) when it is loaded, on the control thread;
   without the flag, an https side call fails (BackendConnectionFailure)
   unless a backend already needed that context. */
#define PT_POLICY_HTTP_SEND 0x08
/* ABI 1.10: the policy's side calls set pt_http_req.http_version; without the flag the gateway sends
   them over HTTP/1.1 (a plugin built for an older ABI has no such field). */
#define PT_POLICY_HTTP_VERSION 0x10

struct pt_policy_def {
    const char *name;                /* kebab-case, as in YAML */
    unsigned sections;               /* PT_SECTION_* allowed */
    unsigned scopes;                 /* PT_SCOPE_* allowed */
    unsigned flags;                  /* PT_POLICY_* */
    const struct pt_attr_def *attrs; /* NULL-name terminated */
    /* Builds an instance from validated attributes; 0 or -1 (after
       compile_error).  *instance may stay NULL. */
    int (*compile)(const struct pt_api *api, pt_compile *c, void **instance);
    /* Runs the policy for one request. */
    pt_status (*run)(const struct pt_api *api, pt_call *call, void *instance);
    /* Frees an instance when its generation ends (may be NULL); also after a
       compile() that failed, with what it had set in *instance by then. */
    void (*free)(void *instance);
    const char *doc; /* one paragraph for the policy reference */
};

struct pt_plugin {
    uint16_t abi_major; /* PT_ABI_MAJOR */
    uint16_t abi_minor; /* PT_ABI_MINOR */
    uint32_t size;      /* sizeof(struct pt_plugin) */
    const char *name;
    const char *version;
    const struct pt_policy_def *policies; /* NULL-name terminated */
    /* Optional: called once after loading; 0 or -1 with *err (static text). */
    int (*init)(const struct pt_api *api, const char **err);
    /* Optional: called before unloading. */
    void (*fini)(void);
};

/* Declares the descriptor; use once per plugin. */
#define PT_PLUGIN(pname, pversion, ppolicies, pinit, pfini)                                                  \
    PT_PLUGIN_EXPORT const struct pt_plugin PT_PLUGIN_SYMBOL = {                                             \
        PT_ABI_MAJOR, PT_ABI_MINOR, sizeof(struct pt_plugin), (pname), (pversion), (ppolicies),              \
        (pinit),      (pfini)}

#ifdef __cplusplus
}
#endif

#endif
