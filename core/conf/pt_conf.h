/*
 * pt_conf -- the configuration file: schema, validation, defaults.
 *
 * Loading is two steps.  pt_node parses YAML into a tree with positions;
 * pt_conf walks the tree with key tables (pt_cfkey) that say, as data, which
 * keys a map accepts, their types, bounds and where each value goes.  Every
 * problem is reported, not only the first, as "file:line:column: message".
 *
 * A struct pt_conf and everything it points to lives in conf->pool and is
 * immutable once loaded: generations (pt_gen) share it read-only between
 * threads.
 */
#ifndef PT_CONF_H
#define PT_CONF_H

#include "base/pt.h"
#include "base/pt_pool.h"
#include "conf/pt_node.h"
#include "conf/pt_schema.h" /* the key tables and value readers, also for pt_conf's callers */

#include <jansson.h>
#include <sys/socket.h>

/* ---- the configuration ---- */

struct pt_strlist {
    char **v;
    int n;
};

struct pt_cert_cf {
    char *certificate; /* PEM chain */
    char *key;         /* PEM private key */
    struct pt_node *node;
};

/* TLS parameters (listen[].tls, management.tls, upstream.tls); zeros and
   NULLs mean the defaults: TLS 1.2 and 1.3, forward-secret AEAD suites. */
struct pt_tls_cf {
    int min_version;    /* 0 default (1.2), 12, 13 */
    char *ciphers;      /* TLS 1.2 and below: an OpenSSL cipher list */
    char *ciphersuites; /* TLS 1.3: an OpenSSL ciphersuites list */
    struct pt_node *node;
};

struct pt_listen_cf {
    char *address; /* as written: "127.0.0.1:8080", "[::1]:8443", ":8080" */
    struct sockaddr_storage sa;
    socklen_t salen;
    struct pt_cert_cf *certs; /* TLS when ncerts > 0; several = SNI */
    int ncerts;
    int client_cert; /* clientCertificate: 0 none, 1 optional, 2 required, 3 verified */
    char *client_ca; /* clientCa: CA bundle client certificates are checked against */
    struct pt_tls_cf tls;
    int backlog;    /* listen queue; 0: the system's maximum (net.core.somaxconn) */
    bool http1, h2; /* protocols: by default HTTP/1.1, and h2 (ALPN) on TLS listeners */
    struct pt_node *node;
};

struct pt_operation_cf {
    struct pt_node *policies;        /* the operation's policy document (validated with the generation) */
    struct pt_node *responses;       /* response descriptions and examples (mock-response) */
    struct pt_node *template_params; /* templateParameters: [{name, type, required, values, schema...}] */
    struct pt_node *request;         /* {description, queryParameters, headers, representations} */
    struct pt_node *grpc;            /* a gRPC method: {service, method, requestType, ..., kind} */
    char *id;
    char *display_name;
    char *description;
    char *method;       /* upper-case method or "*" */
    char *url_template; /* "/items/{id}", "/get?a={b}", or ending in a wildcard segment */
    struct pt_node *node;
};

struct pt_api_cf {
    struct pt_node *policies;
    char *workspace;             /* "" = service level */
    struct pt_strlist protocols; /* "http", "https"; empty = both */
    char *api_version;           /* "v1" within its version set */
    char *version_set;           /* apiVersionSetId */
    char *revision;              /* "1" unless set */
    bool is_current;             /* the current revision */
    char *id;
    char *display_name;
    char *description;
    char *path;        /* URL suffix without leading/trailing '/'; "" = root */
    char *host;        /* optional: only requests for this host */
    char *service_url; /* backend base URL */
    char *backend_id;  /* backendId: a backend entity, which wins over serviceUrl */
    bool subscription_required;
    char *key_header;   /* subscription key header name */
    char *key_query;    /* subscription key query parameter */
    uint64_t body_size; /* bodySize: a smaller request-body limit for this API (0: limits.bodySize) */
    struct pt_strlist secret_query; /* secretQueryParameters: query values the access log writes REDACTED */
    struct pt_operation_cf *ops;
    int nops;
    int api_type;            /* PT_APITYPE_* */
    struct pt_node *schemas; /* the API's schemas: [{id, contentType, document | value}] */
    struct pt_node *node;
};

/* apiType: how requests to the API are understood (pt_conf_entities_api_types names them). */
enum { PT_APITYPE_HTTP, PT_APITYPE_SOAP, PT_APITYPE_GRAPHQL, PT_APITYPE_WEBSOCKET, PT_APITYPE_GRPC };

enum { PT_UNDERSCORES_REJECT, PT_UNDERSCORES_DROP, PT_UNDERSCORES_ALLOW };

/* limits.http2: what one HTTP/2 client connection may hold or do */
struct pt_h2_cf {
    int64_t max_streams;       /* SETTINGS_MAX_CONCURRENT_STREAMS */
    uint64_t header_list;      /* SETTINGS_MAX_HEADER_LIST_SIZE; 0: limits.headerSize */
    uint64_t hpack_table;      /* SETTINGS_HEADER_TABLE_SIZE */
    uint64_t initial_window;   /* SETTINGS_INITIAL_WINDOW_SIZE: a stream's upload buffer bound */
    uint64_t max_frame;        /* SETTINGS_MAX_FRAME_SIZE */
    int64_t resets_per_second; /* streams a client may reset per second before it is cut off */
};

struct pt_limits_cf {
    struct pt_h2_cf h2;
    uint64_t buffer_size;    /* a body read into memory for a policy */
    uint64_t header_size;    /* request line + headers, 431 */
    uint64_t header_line;    /* one header line, 431 */
    int header_underscores;  /* PT_UNDERSCORES_*: header names with '_' */
    int64_t header_count;    /* 431 */
    uint64_t uri_length;     /* 414 */
    uint64_t body_size;      /* 413, before reading the body */
    uint64_t request_memory; /* a request's arena: past it, 500 OutOfMemory */
    int64_t requests_per_connection;
    int64_t connections_per_worker;
    int64_t connections; /* open client connections on the node; 0 = no cap */
    uint64_t memory;     /* bytes the node may hold for connections and requests: past it, 503 */
};

/* The arena one request may hold: requestMemory, or by default 16 x
   bufferSize and at least 64 MiB. */
static inline uint64_t pt_conf_request_memory(const struct pt_limits_cf *lim)
{
    return lim->request_memory ? lim->request_memory : PT_MAX(64ull << 20, 16 * lim->buffer_size);
}

struct pt_timeouts_cf {
    uint32_t header;    /* whole request head, from its first byte: 408 */
    uint32_t body_idle; /* between two reads of a request body: 408 */
    uint32_t body;      /* the whole request (head to last body byte); 0 = no bound (the default) */
    uint32_t keepalive; /* idle keep-alive connection */
    uint32_t send;      /* client not reading our response */
    uint32_t shutdown;  /* graceful drain bound */
};

struct pt_upstream_cf {
    uint32_t connect_timeout;
    uint32_t read_timeout;  /* between two reads from the backend: 504 */
    uint32_t idle_timeout;  /* pooled keep-alive connections */
    int64_t max_idle;       /* pooled connections per backend per worker */
    int64_t max_pools;      /* connection pools (targets) per worker; past it, unused ones are dropped */
    int64_t h2_max_streams; /* streams at once on one HTTP/2 backend connection (below the backend's own) */
    char *ca_file;          /* for https backends; NULL = system store */
    bool verify;
    struct pt_tls_cf tls;    /* towards https backends */
    unsigned forwarded;      /* PT_FWD_* bits: which forwarding headers are set */
    char *request_id_header; /* "" = the request id is not sent */
    bool side_private;       /* sideCallsToPrivateAddresses: side calls may reach internal addresses */
};

#define PT_FWD_XFF 0x1 /* X-Forwarded-For */
#define PT_FWD_XFP 0x2 /* X-Forwarded-Proto */
#define PT_FWD_XFH 0x4 /* X-Forwarded-Host */
#define PT_FWD_FORWARDED 0x8

struct pt_log_cf {
    int level;         /* PT_LOG_* */
    char *error;       /* "stderr" or a path */
    char *access;      /* "stdout", "stderr", "off", "logger:ID" or a path */
    int access_logger; /* "logger:ID": index of the logger in loggers (set by the reference check), else -1 */
    uint64_t access_buffer; /* bytes buffered per worker before a write */
    uint32_t access_flush;  /* longest time a line waits in the buffer */
};

/* tracing: debug traces of single requests (http/pt_trace.c, docs/tracing.md) */
struct pt_tracing_cf {
    bool enabled;            /* the debug headers are honoured (else dropped, unread) */
    int64_t max_traces;      /* traces kept (the oldest go first) */
    uint64_t max_trace_size; /* bytes of one trace's recording; past it, entries are left out */
    uint32_t ttl;            /* how long a trace is kept, and a trace location is valid */
    int verbosity;           /* PT_TRACE_SEV_*: the least severe `trace` policy entry written to the log */
    char *location_url;      /* the base of Ocp-Apim-Trace-Location (else from management.listen) */
};

struct pt_product_cf {
    char *id;
    char *workspace;
    char *display_name;
    char *description;
    int state; /* 0 notPublished, 1 published */
    bool subscription_required;
    bool approval_required;
    int64_t subscriptions_limit; /* 0 = unlimited */
    char *terms;
    struct pt_strlist apis;   /* API ids */
    struct pt_strlist groups; /* group ids that see it */
    struct pt_node *policies;
    struct pt_node *node;
};

struct pt_group_cf {
    char *id;
    char *workspace;
    char *display_name;
    char *description;
    int type; /* 0 custom, 1 system, 2 external */
    struct pt_node *node;
};

struct pt_user_cf {
    char *id;
    char *email;
    char *first_name;
    char *last_name;
    int state; /* 0 active, 1 blocked, 2 pending, 3 deleted */
    char *note;
    struct pt_strlist groups;
    struct pt_node *node;
};

enum pt_sub_scope { PT_SUB_ALL_APIS, PT_SUB_API, PT_SUB_PRODUCT };
enum pt_sub_state {
    PT_SUB_SUBMITTED,
    PT_SUB_ACTIVE,
    PT_SUB_SUSPENDED,
    PT_SUB_CANCELLED,
    PT_SUB_REJECTED,
    PT_SUB_EXPIRED
};

struct pt_subscription_cf {
    char *id;
    char *workspace;
    char *display_name;
    char *scope; /* "/products/p", "/apis/a", "/apis" */
    enum pt_sub_scope scope_kind;
    char *scope_id;
    char *owner_id;   /* "/users/u" or NULL */
    char *owner_user; /* "u" */
    int state;        /* enum pt_sub_state */
    char *primary_key;
    char *secondary_key;
    bool allow_tracing;
    char *allow_tracing_since; /* when allowTracing was turned on (ISO 8601; set by the gateway) */
    int64_t trace_until_ms;    /* allowTracing holds until then (Unix ms): 1 h after it was turned on */
    char *state_comment, *start_date, *expiration_date, *end_date, *notification_date;
    int64_t
        ends_ms; /* the earlier of expirationDate and endDate (Unix ms); 0 = never: no key works after it */
    char *created_date;
    struct pt_node *node;
};

struct pt_cbrule; /* conf/pt_genmodel.h */

/* A pool's member as written (its id is checked with the other references). */
struct pt_cfmember {
    char *id;
    int weight, priority;
    struct pt_node *node;
};

/* certificates: [{id, data, password, ca, crl, description}] read into PEM
   (conf/pt_cert.h); the key stays in pool memory only while the generation lives. */
struct pt_storecert_cf {
    char *id;
    struct pt_node *node;
    char *data, *password, *crl, *description;
    bool ca;
    char *chain_pem; /* the certificate, then its chain */
    char *key_pem;   /* NULL when none */
    char thumbprint[41];
    char *subject, *issuer, *expiration;
    int64_t not_after;
};

struct pt_backend_cf {
    char *id;
    char *workspace;
    char *url; /* NULL for a pool */
    char *protocol;
    char *description;
    int type;                    /* PT_BE_SINGLE | PT_BE_POOL (conf/pt_genmodel.h) */
    struct pt_node *credentials; /* {header, query, certificate, authorization}: checked by the reader */
    bool tls_chain, tls_name;    /* tls.validateCertificateChain / validateCertificateName */
    struct pt_node *breaker;     /* circuitBreaker: {rules: [...]} */
    struct pt_cbrule *rules;     /* ... compiled by the reader */
    int nrules;
    struct pt_node *pool;        /* pool: {services: [{id, weight, priority}]} */
    struct pt_cfmember *members; /* ... read */
    int nmembers;
    bool hc_on; /* healthCheck is present */
    char *hc_path;
    uint32_t hc_interval, hc_timeout;
    int64_t hc_healthy, hc_unhealthy;
    struct pt_node *node;
};

/* loggers: where log-to-eventhub (log-to) and the access log send messages; service level
   (docs/logging.md).  The sinks that deliver them live in http/pt_logsink.c. */
enum { PT_LOGGER_FILE, PT_LOGGER_SYSLOG, PT_LOGGER_HTTP };
enum { PT_SYSLOG_UDP, PT_SYSLOG_TCP, PT_SYSLOG_UNIX };

struct pt_logger_cf {
    char *id; /* first: the entity readers take it from there */
    char *description;
    int type;                     /* PT_LOGGER_* (loggerType) */
    bool is_buffered;             /* APIM's isBuffered: kept; delivery is always off the request path */
    int64_t max_queue;            /* messages waiting for the sink at most; more are dropped */
    uint64_t max_queue_bytes;     /* bytes waiting at most */
    char *file_path;              /* file.path (resolved against the configuration's folder) */
    char *syslog_address;         /* syslog.address: udp://host:port, tcp://host:port, unix:///path */
    int syslog_transport;         /* PT_SYSLOG_* */
    char *syslog_host;            /* udp and tcp */
    int syslog_port;              /* udp and tcp */
    char *syslog_path;            /* unix */
    int syslog_facility;          /* 0..23 */
    int syslog_severity;          /* 0..7 */
    char *syslog_app;             /* APP-NAME */
    char *syslog_hostname;        /* HOSTNAME; NULL: the machine's */
    uint64_t syslog_max;          /* longest frame (without TCP's length prefix); 0: by transport */
    char *http_url;               /* http.url */
    struct pt_node *http_headers; /* http.headers: {name: value} (values may hold {{named values}}) */
    char *http_header_text;       /* "Name: value\r\n"..., named values substituted (set by pt_gen) */
    int64_t http_batch;           /* messages per POST at most */
    uint32_t http_flush;          /* the longest a message waits for its batch */
    int64_t http_retries;         /* further attempts of a failed POST */
    uint32_t http_timeout;        /* one POST, whole */
    int http_format;              /* 0 ndjson, 1 a JSON array */
    struct pt_node *node;
};

struct pt_workspace_cf {
    char *id;
    char *display_name;
    char *description;
    struct pt_node *policies; /* workspace scope: between global and product */
    struct pt_node *node;
};

/* gateways: self-hosted gateways (control plane side); their keys live in the store only */
struct pt_gateway_cf {
    char *id; /* 1-80 of [A-Za-z0-9._-], not "managed" */
    char *description;
    char *loc_name, *loc_city, *loc_district, *loc_country; /* locationData */
    struct pt_strlist apis;                                 /* the API ids its nodes serve */
    struct pt_node *node;
};

struct pt_versionset_cf {
    char *id;
    char *display_name;
    char *description;
    int scheme;        /* 0 Segment, 1 Query, 2 Header */
    char *query_name;  /* versionQueryName, default api-version */
    char *header_name; /* versionHeaderName, default Api-Version */
    char *workspace;   /* "" = service level */
    struct pt_node *node;
};

struct pt_mgmt_cf {
    char *listen; /* "127.0.0.1:8001"; NULL = no management API */
    struct sockaddr_storage sa;
    socklen_t salen;
    char *admin_token; /* or PORTICO_ADMIN_TOKEN */
    uint64_t max_body;
    bool import_private;     /* importPrivateLinks: -link imports may fetch from private addresses */
    struct pt_cert_cf cert;  /* certificate + key: the listener speaks HTTPS */
    struct pt_listen_cf tls; /* tls.ncerts == 1 when it does */
};

/* portal.mail: how the portal (and the management API's notifications) send mail; read by
   http/pt_mail.c.  An outbox folder (one .eml per message) unless smtp_url is set. */
struct pt_mail_cf {
    char *from;          /* "Portico <portal@localhost>" */
    char *outbox;        /* folder; default <data>/outbox */
    char *smtp_url;      /* smtp:// or smtps://; NULL = the outbox */
    char *smtp_username; /* NULL = no AUTH */
    char *smtp_password;
    bool starttls;      /* smtp://: STARTTLS required (default true) */
    char *smtp_ca_file; /* smtp.caFile: CA bundle the server's certificate is checked against (NULL: the
                           system's) */
};

/* portal: the developer portal (core/portal, docs/portal.md).  The content
   (site, pages, templates) is kept as JSON, with the nodes it came from so
   that its checks can name file:line:column. */
struct pt_portal_cf {
    char *listen; /* "127.0.0.1:8002"; NULL = no portal */
    struct sockaddr_storage sa;
    socklen_t salen;
    struct pt_cert_cf cert;  /* certificate + key: the listener speaks HTTPS */
    struct pt_listen_cf tls; /* tls.ncerts == 1 when it does */
    char *public_url;        /* no trailing '/'; default http(s)://<listen> */
    char *gateway_url;       /* no trailing '/'; default the first gateway listener */
    char *theme_dir;         /* the provider's CSS and templates; NULL = none */
    uint64_t idle_timeout_ms;
    uint64_t absolute_timeout_ms;
    int max_failures; /* sign-in failures before the lockout */
    uint64_t lockout_ms;
    uint64_t confirm_ttl_ms; /* sign-up confirmation and invitation tokens */
    uint64_t reset_ttl_ms;   /* password reset tokens */
    uint64_t max_media;      /* bytes of one media upload */
    struct pt_mail_cf mail;
    json_t *site; /* object or NULL (owned: pt_conf_free releases it) */
    json_t *pages;
    json_t *templates;
    struct pt_node *site_node, *pages_node, *templates_node;
    json_t *identity_providers; /* list or NULL (OpenID Connect sign-in: conf/pt_idp.c) */
    struct pt_node *identity_providers_node;
};

/* telemetry: OpenTelemetry tracing (http/pt_otel.c, http/pt_otel_export.c). */
enum { PT_OTLP_JSON, PT_OTLP_PROTOBUF };

struct pt_telemetry_cf {
    bool on;                   /* the section is present and enabled: trace contexts are kept */
    bool enabled;              /* telemetry.enabled */
    bool propagate;            /* traceparent goes to backends */
    char *endpoint;            /* OTLP/HTTP traces URL; NULL: nothing is exported */
    int protocol;              /* PT_OTLP_* */
    struct pt_strlist headers; /* name, value, name, value... */
    char *service_name;
    uint32_t timeout;         /* one export request */
    int64_t batch_size;       /* spans per export request at most */
    uint32_t export_interval; /* the longest a span waits */
    int64_t queue_size;       /* spans per worker queue (restart) */
    double ratio;             /* sampler.ratio */
    bool parent_based;        /* sampler.parentBased */
    char *metrics_endpoint;   /* NULL: endpoint with /v1/traces -> /v1/metrics */
    uint32_t metrics_interval;
};

/* metrics: (docs/metrics.md): /metrics and emit-metric. */
enum { PT_METRICS_AUTH_TOKEN, PT_METRICS_AUTH_NONE };

struct pt_metrics_cf {
    bool enabled; /* requests are counted and /metrics is served */
    char *path;   /* "/metrics" */
    int auth;     /* PT_METRICS_AUTH_*: a management token, or nothing */
    char *listen; /* a listener of its own; NULL: the management listener */
    struct sockaddr_storage sa;
    socklen_t salen;
    int64_t max_series; /* series per family before "other" (read at start) */
    char *gateway_id;   /* emit-metric's "Gateway ID" (default: the host name) */
    char *location;     /* emit-metric's "Location" */
};

/* analytics: request records and usage reports (docs/analytics.md).  Read by
   the workers (enabled) and the control thread (the rest) from the running
   generation, so a reload applies every key. */
struct pt_analytics_cf {
    bool enabled;
    uint32_t flush_interval;   /* ms between two writes to the store */
    uint64_t retention;        /* s: aggregates older than this are deleted */
    uint64_t hour_after;       /* s: minute buckets older than this become hour buckets */
    uint64_t day_after;        /* s: hour buckets older than this become day buckets */
    int64_t requests_max;      /* raw request records kept at most (0: none kept) */
    uint64_t requests_max_age; /* s: raw request records older than this are deleted */
    int64_t requests_rate;     /* raw request records kept per second, node-wide, at most */
};

/* cache: the node's stores (docs/caching.md).  The internal store's limits apply at each reload;
   the Redis connection is remade on the workers when any Redis setting changes. */
struct pt_cache_cf {
    uint64_t memory;          /* the internal store's byte budget; 0: off */
    uint64_t max_entry;       /* the largest value stored (both stores) */
    char *redis;              /* the URL as written; NULL: no Redis */
    char *host;               /* from the URL: a name or an address (IPv6 without brackets) */
    int port;                 /* 6379 */
    int db;                   /* SELECTed after connecting when not 0 */
    bool tls;                 /* rediss:// */
    char *username;           /* ACL user (Redis 6): `username`, else the URL's */
    char *password;           /* AUTH: `password`, else the URL's */
    uint32_t connect_timeout; /* ms: TCP, TLS and AUTH */
    uint32_t command_timeout; /* ms: one command's answer */
    char *ca_file;            /* tls.caFile: the CA bundle (NULL: the system store) */
    bool verify;              /* tls.verify: the certificate chain and the host name */
    char *server_name;        /* tls.serverName: SNI and the name checked (default: host) */
};

/* controlPlane: a gateway node of a control plane (http/pt_cpsync.c, docs/gateways.md).  `on` when
   the file has the map or $PORTICO_CONTROL_PLANE_URL is set; the environment's values win. */
struct pt_cp_cf {
    bool on;
    char *url;         /* http(s)://host:port, no trailing '/' */
    char *token;       /* "GatewayKey ..." (never logged) */
    char *token_file;  /* or a file holding it, re-read at each connection attempt */
    char *backup;      /* the encrypted backup; "" = none */
    char *ca_file;     /* trusted CAs for https (NULL: the system's) */
    int64_t heartbeat; /* seconds */
    int64_t poll_wait; /* seconds a long-poll waits */
    char *node_id;     /* default <hostname>:<port of the first listener> */
    struct pt_node *node;
};

/* counters: rate limits and quotas counted across nodes through Redis (docs/access-policies.md,
   "Counting across nodes").  The Redis part is the cache's (same URL reader and TLS keys):
   commandTimeout is `timeout`, memory and maxEntry are unused.  Read at start only. */
struct pt_counters_cf {
    struct pt_cache_cf redis; /* redis.redis NULL: counters are per node */
    uint32_t sync_interval;   /* ms between two rounds of leases and pushes */
};

struct pt_lua_limits {
    uint32_t timeout;         /* per call, ms */
    uint64_t memory;          /* per worker state, bytes */
    uint64_t pattern_subject; /* longest string pattern functions accept */
    char **policy_path;       /* folders with Lua policies */
    int npolicy_path;
};

struct pt_conf {
    struct pt_pool *pool;
    /* pt_conf_with_subs: the configuration this one is a copy of with its own subscriptions (its
       pool holds only them); everything else points into `shares`, which must outlive it */
    const struct pt_conf *shares;
    /* pt_model's memo of a file configuration's entity lists sorted by id (in the pool; NULL until
       a build from the file needs it) */
    struct pt_model_ids *model_ids;
    struct pt_node *policies;     /* global policy document */
    struct pt_node *fragments;    /* policyFragments list */
    struct pt_node *named_values; /* namedValues list */
    struct pt_node *schemas;      /* service-level schemas: [{id, schemaType, document | value}] */
    char *plugin_dir;
    struct pt_lua_limits lua;
    char *file;
    char *dir;
    struct pt_node *root;
    struct pt_listen_cf *listen;
    int nlisten;
    int workers; /* resolved: "auto" becomes the number of CPUs */
    struct pt_limits_cf limits;
    struct pt_timeouts_cf timeouts;
    struct pt_upstream_cf upstream;
    struct pt_log_cf log;
    struct pt_api_cf *apis;
    int napis;
    struct pt_product_cf *products;
    int nproducts;
    struct pt_group_cf *groups;
    int ngroups;
    struct pt_user_cf *users;
    int nusers;
    struct pt_subscription_cf *subs;
    int nsubs;
    struct pt_backend_cf *backends;
    int nbackends;
    struct pt_storecert_cf *certs; /* certificates: the certificate store */
    int ncerts;
    struct pt_workspace_cf *workspaces;
    int nworkspaces;
    struct pt_versionset_cf *version_sets;
    int nversion_sets;
    struct pt_logger_cf *loggers; /* loggers (L) */
    int nloggers;
    struct pt_gateway_cf *gateways; /* self-hosted gateways (issue 14) */
    int ngateways;
    char *data_dir;       /* the store's folder */
    char *secret_key;     /* encrypts secret named values at rest */
    bool samples;         /* a new store gets APIM's sample products and Echo API (pt_samples.c) */
    bool samples_assumed; /* checking the file alone (-t): references to the samples hold, as on a new
                             store (set by main, never read from the file) */
    struct pt_mgmt_cf mgmt;
    struct pt_cidr *trusted; /* trustedProxies: peers whose X-Forwarded-For is believed */
    int ntrusted;
    uint64_t counter_keys; /* limits.counterKeys: rate-limit and quota keys kept at most */
    struct pt_telemetry_cf telemetry;
    struct pt_tracing_cf tracing;
    struct pt_metrics_cf metrics;
    struct pt_analytics_cf analytics;
    struct pt_portal_cf portal;
    struct pt_cache_cf cache;
    struct pt_cp_cf cp;
    struct pt_counters_cf counters;
};

/* An address range: family AF_INET or AF_INET6, network bytes, prefix bits. */
struct pt_cidr {
    int family;
    unsigned char addr[16];
    int bits;
};
/* "192.0.2.0/24", "2001:db8::/32", or one address; false when malformed. */
bool pt_conf_parse_cidr(const char *s, struct pt_cidr *out);
/* Is the address (text) inside the range? */
bool pt_conf_cidr_has(const struct pt_cidr *c, const char *ip);

/* Names of the enums above, for JSON and YAML. */
extern const char *const pt_conf_entities_product_states[];
extern const char *const pt_conf_entities_sub_states[];
/* The `trace` policy's severities: "verbose", "information", "error" (PT_TRACE_SEV_*). */
extern const char *const pt_conf_trace_severities[];
enum { PT_TRACE_SEV_VERBOSE, PT_TRACE_SEV_INFORMATION, PT_TRACE_SEV_ERROR };
/* A subscription's allowTracing lapses this long after it was turned on (APIM: 1 hour). */
#define PT_CONF_TRACING_WINDOW_MS 3600000LL
extern const char *const pt_conf_entities_user_states[];
extern const char *const pt_conf_entities_group_types[];
extern const char *const pt_conf_entities_versioning_schemes[];
extern const char *const pt_conf_entities_api_types[];
extern const char *const pt_conf_entities_backend_types[];
extern const char *const pt_conf_entities_logger_types[];
/* Schema content types whose schema is a JSON `document` (the others carry text in `value`). */
bool pt_conf_entities_json_schema_type(const char *content_type);

/*
 * Loads and validates a configuration file.  On failure returns NULL with
 * every problem in errs.  The result owns its pool (pt_conf_free).
 */
struct pt_conf *pt_conf_load(const char *path, struct pt_errors *errs);
/* Validates a tree (from a file, or built from the store) into a configuration
   whose pool is `pool` (freed by pt_conf_free). */
struct pt_conf *pt_conf_from_tree(struct pt_pool *pool, const char *file, struct pt_node *root,
                                  struct pt_errors *errs);
/* Checks that references between entities resolve (product apis, subscription
   scopes and owners, user groups, version sets, workspaces). */
bool pt_conf_check_refs(const struct pt_conf *cf, struct pt_errors *errs);
/* The part of pt_conf_check_refs about subscriptions (scopes, owners, workspaces, the products'
   subscriptionsLimit), with the same messages. */
bool pt_conf_check_subs(const struct pt_conf *cf, struct pt_errors *errs);
/*
 * `base` with the subscriptions of `subs` (a list as the file's `subscriptions:`, NULL: none) read
 * as a whole configuration's are (the same table row, the same messages); the references are
 * pt_conf_check_subs's, as pt_conf_check_refs's are for a whole one.  A write of subscriptions
 * alone needs nothing else read again.  The result owns `pool` (pt_conf_free frees only it) and
 * points into base for everything else.  NULL with errs (pool left to the caller) when the
 * subscriptions do not read.
 */
struct pt_conf *pt_conf_with_subs(const struct pt_conf *base, struct pt_pool *pool, struct pt_node *subs,
                                  struct pt_errors *errs);
/* Parses an ISO 8601 date ("2027-01-31") or time ("2027-01-31T12:00:00Z",
   fractions, "+02:00" offsets; no zone = UTC) into Unix ms; false if invalid. */
bool pt_conf_entities_parse_iso8601(const char *s, int64_t *ms);
/* An ISO 8601 duration (PT30S, PT1M, P1DT2H, PT0.5S) or the configuration's own forms (30s, 250ms),
   in milliseconds; false when it is neither or passes a day. */
bool pt_conf_entities_parse_duration(const char *s, uint64_t *ms);
bool pt_conf_entities_parse_sub_scope(const char *scope, enum pt_sub_scope *kind, const char **id);
/* The user id of a subscription's ownerId ("/users/ID", perhaps after a service path; the id holds no
   "/"), pointing into owner_id; NULL when it names no user. The one rule for "whose subscription". */
const char *pt_conf_entities_owner_user(const char *owner_id);
/* administrators, developers, guests: the groups that exist without being declared (NULL-ended). */
extern const char *const pt_conf_entities_builtin_groups[];
bool pt_conf_entities_builtin_group(const char *id);
/* Is s free of control characters (C0, DEL, C1, U+2028/U+2029)?  Names go into page titles and mail
   bodies sent to any address, where a line break could forge text. */
bool pt_conf_entities_text_ok(const char *s);
/* Same, from text already in memory (tests; `name` names it in messages). */
struct pt_conf *pt_conf_parse(const char *name, const char *text, size_t len, struct pt_errors *errs);
void pt_conf_free(struct pt_conf *conf);
/* Prints the Markdown reference of every key of the file (portico --config-reference); false, with
   each problem written to err, when a key has no documentation or a documented default is not the
   code's. */
bool pt_conf_reference(FILE *out, FILE *err);
/* The listen queue to ask for: backlog, else the system's maximum
   (/proc/sys/net/core/somaxconn; 4096 when it cannot be read). */
int pt_conf_listen_backlog(int backlog);
/* A gateway token "GatewayKey <id>&<yyyyMMddHHmm>&<sig>" (read by base/pt_gwtoken.c): its gateway id
   (into id), its expiry (Unix seconds, UTC) and its signature part as written (pointing into text);
   false when it has not that shape. */
bool pt_conf_cp_token_parse(const char *text, char *id, size_t idlen, int64_t *expiry_s, const char **sig);
/* Parses "host:port" for listening; false on bad syntax. */
bool pt_conf_parse_listen(const char *text, struct sockaddr_storage *sa, socklen_t *salen);

#endif
