/*
 * cache.h -- what the files of the caching family share (plugins/cache:
 * cache-lookup, cache-store, cache-lookup-value, cache-store-value,
 * cache-remove-value).  The stores themselves are the gateway's (the
 * node's internal cache or Redis, reached through api->cache_get/put/del);
 * this family decides what goes in them, under which key, and what a hit
 * answers.  docs/caching.md describes the behaviour.
 */
#ifndef PORTICO_PLUGINS_CACHE_H
#define PORTICO_PLUGINS_CACHE_H

#include "ptlib.h"

/* The API table, kept by init() for the stores' callbacks (they get only the call). */
extern const struct pt_api *cache_api;
/* SHA-256, fetched once at init (OpenSSL 3 would otherwise look the algorithm up at every key);
   NULL: EVP_sha256(). */
struct evp_md_st;
extern struct evp_md_st *cache_sha256;

/* caching-type's names, in PT_CACHE_* order (prefer-external, external, internal). */
extern const char *const cache_types[];
/* downstream-caching-type's names. */
enum { CACHE_DOWN_NONE = 0, CACHE_DOWN_PRIVATE = 1, CACHE_DOWN_PUBLIC = 2 };
extern const char *const cache_downstream_types[];

/* The longest key a value policy accepts (longer: ExpressionValueEvaluationFailure). */
#define CACHE_KEY_MAX 4096
/* The largest response cache-store keeps: APIM's 2 MiB (the store may cap lower: cache.maxEntry). */
#define CACHE_ENTRY_MAX (2u * 1024 * 1024)
/* The longest duration accepted, in seconds (longer ones are cut to it): ten years. */
#define CACHE_DURATION_MAX (10LL * 365 * 24 * 3600)

/* Keys in the stores: responses under "r:" + a SHA-256 of what they vary by
   (the API's workspace among it), values of service-level APIs under "v:" +
   the policy's key and values of a workspace's APIs under "w:" + the
   workspace's length, ':', the workspace, ':' + the key, so that no value key
   can ever name a cached response or another scope's value. */
#define CACHE_RESPONSE_PREFIX "r:"
#define CACHE_VALUE_PREFIX "v:"
#define CACHE_WORKSPACE_PREFIX "w:"

/* Request variables whose names start with this are the gateway's own (the lookup's ticket): the
   family's variable-name attributes refuse them. */
#define CACHE_RESERVED_VAR_PREFIX "portico."

/* ---- cache.c: what several policies use ---- */

/* Compile time: a duration attribute given as a literal must be a whole number of seconds >= 0;
   0, or -1 after a compile error. */
int cache_check_duration(const struct pt_api *api, pt_compile *c, const char *attr);
/* Request time: evaluates a duration; 0 with *secs (cut to CACHE_DURATION_MAX; <= 0 means "do not
   store"), or the status run() must return (an expression that is not a whole number fails with
   ExpressionValueEvaluationFailure). */
int cache_eval_duration(const struct pt_api *api, pt_call *call, const pt_value *v, int64_t *secs);
/* The wall clock, in seconds. */
int64_t cache_now(void);
/* Appends s to b after its length (4 bytes, little-endian): fields that cannot run into each other. */
void cache_field(struct ptl_buf *b, pt_bytes s);
/* The caching type a policy of this request uses: a workspace's APIs use the internal cache only (as in
   APIM), whatever the statement asks for. */
int cache_type_for(const struct pt_api *api, pt_call *call, int caching_type);
/* HMAC-SHA256, under a secret drawn when the plugin starts, of the fields of `in` (each with
   cache_field), as 64 lower-case hex digits into out[65]; 0, or -1. */
int cache_mac_hex(const struct ptl_buf *in, char out[65]);

/* ---- entry.c: a cached response as bytes ---- */

struct cache_entry {
    int status;
    pt_bytes reason;
    int64_t stored_at; /* wall clock, seconds */
    int64_t ttl;       /* seconds */
    int nheaders;
    pt_bytes *names, *values;
    pt_bytes body;
};

/* Encodes e into arena memory; 0, or -1 when the arena cannot grow. */
int cache_entry_encode(const struct pt_api *api, pt_call *call, const struct cache_entry *e, pt_bytes *out);
/* Decodes what cache_entry_encode wrote (the pointers point into `in`, arrays in the arena); 0, or
   -1 when the bytes are not a well-formed entry (a foreign or damaged value: a miss). */
int cache_entry_decode(const struct pt_api *api, pt_call *call, pt_bytes in, struct cache_entry *e);

/* ---- lookup.c: cache-lookup ---- */

extern const struct pt_attr_def cache_lookup_attrs[];
int cache_lookup_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status cache_lookup_run(const struct pt_api *api, pt_call *call, void *instance);

/* What cache-lookup hands to cache-store through the request (see lookup.c). */
struct cache_ticket {
    int caching_type;    /* PT_CACHE_* */
    int downstream;      /* CACHE_DOWN_* */
    int must_revalidate; /* 0 / 1 */
    int allow_private;   /* 0 / 1: allow-private-response-caching as evaluated */
    pt_bytes key;        /* the store key: "r:" + 64 hex digits */
    pt_bytes vary;       /* the lookup's vary-by-header names, lower-case, comma-separated ("" for none) */
};

/* The ticket a cache-lookup left in this request (a miss of a GET it looked up); 1 when there is one
   and it is authentic: made by a cache-lookup for this request of this API (its HMAC checks); 0 for
   none, or one a policy wrote or copied from another request. */
int cache_ticket_get(const struct pt_api *api, pt_call *call, struct cache_ticket *t);
/* The Cache-Control value downstream-caching-type gives a response that may be cached max_age more
   seconds (NUL-terminated, arena). */
const char *cache_control_value(const struct pt_api *api, pt_call *call, int downstream, int must_revalidate,
                                int64_t max_age);

/* ---- store.c: cache-store ---- */

extern const struct pt_attr_def cache_store_attrs[];
int cache_store_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status cache_store_run(const struct pt_api *api, pt_call *call, void *instance);
/* A response header that is not kept in an entry (connection, framing, cookies, Age, Cache-Control). */
int cache_header_unkept(pt_bytes name);

/* ---- value.c: cache-lookup-value, cache-store-value, cache-remove-value ---- */

extern const struct pt_attr_def cache_lookup_value_attrs[];
int cache_lookup_value_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status cache_lookup_value_run(const struct pt_api *api, pt_call *call, void *instance);

extern const struct pt_attr_def cache_store_value_attrs[];
int cache_store_value_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status cache_store_value_run(const struct pt_api *api, pt_call *call, void *instance);

extern const struct pt_attr_def cache_remove_value_attrs[];
int cache_remove_value_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status cache_remove_value_run(const struct pt_api *api, pt_call *call, void *instance);

#endif
