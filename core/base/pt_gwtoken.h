/*
 * pt_gwtoken -- the tokens of self-hosted gateway nodes (APIM's shape).
 *
 *   token = "GatewayKey " id "&" yyyyMMddHHmm "&" base64(HMAC-SHA512(key, id "\n" yyyyMMddHHmm))
 *
 * id is the gateway's id (1-80 of [A-Za-z0-9._-]), yyyyMMddHHmm the expiry
 * in UTC (minute precision), key the gateway's primary or secondary key as
 * the control plane stores it (text), base64 the standard, padded alphabet
 * (88 characters for the 64 bytes).  The control plane makes them
 * (generateToken) and checks them on the sync endpoints; a node parses its
 * own to know the expiry and gateway id.  Pure (libc and OpenSSL): no clock,
 * no store -- the callers pass the time and the keys.
 */
#ifndef PT_GWTOKEN_H
#define PT_GWTOKEN_H

#include "base/pt.h"

#include <stdint.h>

/* The longest gateway id, and a buffer large enough for any token (NUL included). */
#define PT_GWTOKEN_ID_MAX 80
#define PT_GWTOKEN_MAX 200
/* base64 of the 64 bytes of an HMAC-SHA512, padded */
#define PT_GWTOKEN_SIG_B64 88

/* A token read from untrusted text: only well-formed ones fill this. */
struct pt_gwtoken {
    char id[PT_GWTOKEN_ID_MAX + 1];
    char stamp[13];                       /* yyyyMMddHHmm as written */
    int64_t expiry;                       /* the same, Unix seconds */
    char sig_b64[PT_GWTOKEN_SIG_B64 + 1]; /* the signature as written (a node's backup key derives from it) */
    unsigned char sig[64];                /* decoded */
};

/* Is s a valid gateway id (1-80 of [A-Za-z0-9._-])? */
bool pt_gwtoken_id_ok(pt_str s);

/* A token for gateway id, signed with key, expiring at expiry (Unix
   seconds, rounded down to the minute) into out (NUL-terminated, with the
   "GatewayKey " prefix).  false when the id is not valid, the key is empty
   or the expiry is outside years 1970-9999. */
bool pt_gwtoken_make(const char *id, const char *key, int64_t expiry, char out[PT_GWTOKEN_MAX]);

/* Reads a token: an Authorization value ("GatewayKey" (case-insensitive),
   one or more spaces, then the three parts) or the bare three parts.
   Strict: a valid id, exactly 12 digits naming a real UTC minute, exactly
   88 characters of canonical padded base64; nothing before or after.
   false (and out untouched) for anything else. */
bool pt_gwtoken_parse(pt_str text, struct pt_gwtoken *out);

/* Was t signed with key?  (Constant time in the signature.) */
bool pt_gwtoken_signed_by(const struct pt_gwtoken *t, const char *key);

/* Is t past its expiry at now (Unix seconds)?  (Expired from the expiry minute on.) */
bool pt_gwtoken_expired(const struct pt_gwtoken *t, int64_t now);

/* yyyyMMddHHmm of a time (UTC) into out; false outside years 1970-9999. */
bool pt_gwtoken_stamp(int64_t t, char out[13]);

#endif
