/*
 * access.h -- what the files of the access-restriction family share.
 *
 * Names.  A policy's file offers its attributes, compile() and run() named
 * after the policy (rate-limit-by-key: rate_limit_by_key_attrs,
 * rate_limit_by_key_compile, rate_limit_by_key_run); anything else a file
 * offers the family is prefixed after the file (limits_, oidc_); the rest
 * is static.  Helpers both families use are in plugins/lib (ptl_).
 */
#ifndef PORTICO_PLUGINS_ACCESS_H
#define PORTICO_PLUGINS_ACCESS_H

#include "pt_jwt.h" /* core/base/pt_jwt.c, compiled into the family */
#include "ptlib.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>

/* The gateway's table, set by the family's init: for callbacks that are not handed it. */
extern const struct pt_api *access_api;

/* ---- limits.c: what the rate limits and quotas share ---- */

/* A limit: the policy's own level [0] and nested api/operation ones. */
struct level {
    const char *api, *op; /* NULL = every API / operation */
    int64_t calls, period_s, kb;
};

/* The instance of rate-limit, rate-limit-by-key, quota and quota-by-key. */
struct limit {
    bool by_key, quota;
    struct level *levels; /* [0] is the policy's own */
    int nlevels;
    pt_value *calls_v, *period_v; /* by-key: expressions allowed */
    pt_value *key, *cond, *count_v;
    const char *first_start; /* quota-by-key */
    int64_t origin_ms;
    const char *retry_hdr, *retry_var, *remain_hdr, *remain_var, *total_hdr;
};

/* Headers added to the response once it is known (success or refusal); see limits_add_headers. */
struct resp_headers {
    const char *names[3];
    long long values[3];
};

/* The nested <api> element (with its <operation>s) of rate-limit and quota. */
extern const struct pt_attr_def limits_api_level_attrs[];

void limits_add_level(struct limit *l, const char *api_id, const char *op_id, int64_t calls, int64_t period,
                      int64_t kb);
/* The policy's own level and the nested ones (l->levels); -1 after a compile error. */
int limits_compile_levels(const struct pt_api *api, pt_compile *c, struct limit *l, int64_t top_calls,
                          int64_t top_period, int64_t top_kb);
bool limits_level_applies(const struct level *v, pt_bytes api_id, pt_bytes op_id);
pt_bytes limits_counter_key(const struct pt_api *api, pt_call *call, const char *kind, pt_bytes key,
                            const struct level *v, int64_t calls, int64_t period, int64_t origin);
int64_t limits_wait_for_room(const struct pt_api *api, struct pt_counter_op *op, int64_t limit);
int64_t limits_count_call(const struct pt_api *api, struct pt_counter_op *op, int64_t n, int64_t limit,
                          int64_t *retry_ms);
void limits_count_on_response(const struct pt_api *api, pt_call *call, const struct limit *l,
                              const struct pt_counter_op *op, int64_t n);
/* at_response callback: a struct resp_headers onto the response */
void limits_add_headers(pt_call *call, void *arg);

/* ---- rate_limit.c ---- */

extern const struct pt_attr_def rate_limit_attrs[];
int rate_limit_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status rate_limit_run(const struct pt_api *api, pt_call *call, void *inst);

extern const struct pt_attr_def rate_limit_by_key_attrs[];
int rate_limit_by_key_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status rate_limit_by_key_run(const struct pt_api *api, pt_call *call, void *inst);

/* ---- quota.c ---- */

extern const struct pt_attr_def quota_attrs[];
int quota_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status quota_run(const struct pt_api *api, pt_call *call, void *inst);

extern const struct pt_attr_def quota_by_key_attrs[];
int quota_by_key_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status quota_by_key_run(const struct pt_api *api, pt_call *call, void *inst);

/* ---- limit_concurrency.c ---- */

extern const struct pt_attr_def limit_concurrency_attrs[];
int limit_concurrency_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status limit_concurrency_run(const struct pt_api *api, pt_call *call, void *inst);

/* ---- ip_filter.c ---- */

extern const struct pt_attr_def ip_filter_attrs[];
int ip_filter_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status ip_filter_run(const struct pt_api *api, pt_call *call, void *inst);

/* ---- check_header.c ---- */

extern const struct pt_attr_def check_header_attrs[];
int check_header_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status check_header_run(const struct pt_api *api, pt_call *call, void *inst);

/* ---- cors.c ---- */

extern const struct pt_attr_def cors_attrs[];
int cors_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status cors_run(const struct pt_api *api, pt_call *call, void *inst);

/* ---- validate_client_certificate.c ---- */

extern const struct pt_attr_def validate_client_certificate_attrs[];
int validate_client_certificate_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status validate_client_certificate_run(const struct pt_api *api, pt_call *call, void *inst);
void validate_client_certificate_free(void *inst);

/* ---- authentication_certificate.c ---- */

extern const struct pt_attr_def authentication_certificate_attrs[];
int authentication_certificate_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status authentication_certificate_run(const struct pt_api *api, pt_call *call, void *inst);

/* ---- authentication_basic.c ---- */

extern const struct pt_attr_def authentication_basic_attrs[];
int authentication_basic_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status authentication_basic_run(const struct pt_api *api, pt_call *call, void *inst);

/* ---- validate_jwt.c ---- */

extern const struct pt_attr_def validate_jwt_attrs[];
int validate_jwt_compile(const struct pt_api *api, pt_compile *c, void **instance);
pt_status validate_jwt_run(const struct pt_api *api, pt_call *call, void *inst);
void validate_jwt_free(void *inst);

/* ---- oidc.c: signing keys, read from configuration or fetched from identity providers ---- */

struct jwt_key {
    const char *id;
    unsigned char *secret; /* HS */
    size_t secret_len;
    EVP_PKEY *pkey; /* RS/PS/ES */
};

/* A provider's key set, shared by reference (oidc_keys, oidc_keyset_unref). */
struct keyset {
    int refs; /* under the providers' lock */
    int n;
    struct jwt_key *keys;
};

struct oidc; /* one identity provider (openid-config url) */

/* CLOCK_MONOTONIC in ms */
int64_t oidc_now_ms(void);
void oidc_keyset_unref(struct keyset *k);
/* The provider entry for url (one per URL for the plugin's life); its thread starts fetching. */
struct oidc *oidc_get(const char *url);
/* The provider's current keys (a reference, or NULL); *never: no fetch has finished yet. */
struct keyset *oidc_keys(struct oidc *o, bool *never);
/* Asks for a refetch (an unknown kid). */
void oidc_want(struct oidc *o);
/* Stops the providers' threads and frees them (the family's fini). */
void oidc_fini(void);

#endif
