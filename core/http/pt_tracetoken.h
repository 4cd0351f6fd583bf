/*
 * pt_tracetoken -- the self-contained credentials of request tracing.
 *
 * listDebugCredentials hands out a debug token that names one API and an
 * expiry and carries an HMAC-SHA256 over both made with a key derived from
 * the node's secret key (`secretKey`, $PORTICO_SECRET_KEY or
 * <data>/secret.key): a worker checks it with no lookup and no lock, and
 * nobody without the secret key can make one.  The legacy trace location
 * (Ocp-Apim-Trace-Location) is signed the same way, with a key of its own,
 * over the trace id and the location's expiry.
 *
 *   token = "v1." base64url(apiId) "." expiry (Unix ms, decimal) "." hex(HMAC)
 *
 * Also here: ISO 8601 durations (credentialsExpireAfter) and APIM's forms
 * of an API id.  Pure functions apart from the node key, set once at start.
 */
#ifndef PT_TRACETOKEN_H
#define PT_TRACETOKEN_H

#include "base/pt.h"

/* A key for one purpose, derived from the node's secret. */
struct pt_tracetoken_key {
    unsigned char k[32];
    bool set;
};

/* The node's keys: debug tokens and signed trace locations (set by pt_tracetoken_set_secret). */
extern struct pt_tracetoken_key pt_tracetoken_debug_key, pt_tracetoken_location_key;

/* Derives a key for `purpose` from the node's secret key. */
void pt_tracetoken_derive(const char *secret, const char *purpose, struct pt_tracetoken_key *out);
/* Derives the node's two keys (once, at start, before workers run). */
void pt_tracetoken_set_secret(const char *secret);

/* The longest a token and an API id can be. */
#define PT_TRACETOKEN_MAX 512
#define PT_TRACETOKEN_API_MAX 256

/* A token for api valid until expires_ms (Unix ms) into out (NUL-terminated);
   false when the API id is longer than PT_TRACETOKEN_API_MAX or the key is not set. */
bool pt_tracetoken_sign(const struct pt_tracetoken_key *key, const char *api, uint64_t expires_ms,
                        char out[PT_TRACETOKEN_MAX]);

enum pt_tracetoken_verdict {
    PT_TRACETOKEN_OK,
    PT_TRACETOKEN_INVALID,   /* malformed, or the signature does not match */
    PT_TRACETOKEN_EXPIRED,   /* genuine, past its expiry */
    PT_TRACETOKEN_WRONG_API, /* genuine, for another API */
};

/* Checks a token (untrusted bytes) for the API `api` at now_ms; the
   signature is checked first, in constant time, then the expiry, then the API. */
enum pt_tracetoken_verdict pt_tracetoken_verify(const struct pt_tracetoken_key *key, pt_str token, pt_str api,
                                                uint64_t now_ms);

/* The signature of a trace location: hex(HMAC(id "|" expires_s)) into out. */
void pt_tracetoken_location_sig(const struct pt_tracetoken_key *key, const char *id, uint64_t expires_s,
                                char out[65]);
/* Does sig (untrusted) sign id and expires_s?  (Constant time; the expiry is the caller's check.) */
bool pt_tracetoken_location_ok(const struct pt_tracetoken_key *key, const char *id, uint64_t expires_s,
                               const char *sig);

/* An ISO 8601 duration ("PT1H", "PT30M", "PT0.5S", "P1DT2H", "PT1H30M5S") in
   milliseconds; years, months and weeks are refused (their length varies),
   as are negative or empty durations and anything over 10 years.  false on
   bad syntax. */
bool pt_tracetoken_duration_ms(const char *s, uint64_t *ms);

/* APIM's forms of an API id ("echo", "/apis/echo", "/subscriptions/.../apis/echo"):
   the id itself (a pointer into s). */
const char *pt_tracetoken_api_id(const char *s);

#endif
