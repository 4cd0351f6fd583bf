/*
 * ptlib.h -- helpers the in-tree plugin families share (plugins/lib).
 *
 * A libtool convenience library linked into each family's shared object
 * (access.so, transform.so).  It depends on nothing but the SDK header and
 * the C library, so linking it pulls no OpenSSL, jansson or libxml2 into a
 * family that does not use them.  Every name starts with ptl_ and has
 * hidden visibility: nothing here leaves a plugin (only portico_plugin
 * does).  Memory handed out comes from the request arena (api->alloc).
 *
 *   api.c    calls through the API table: eval, body_get, headers, refusals
 *   bytes.c  comparing and trimming pt_bytes, RFC 9110 tokens
 *   hex.c    hex digits
 *   buf.c    a growable byte buffer in the request arena
 *   utf8.c   decoding and encoding one UTF-8 code point
 *   url.c    percent-encoding and raw query strings
 *   json.c   the plugins' JSON reader (why not jansson: see there)
 *   core/base/pt_graphql.c  GraphQL documents, schemas, validation (the core's own
 *            source, libc only; its header is core/base/pt_graphql.h, names pt_graphql_)
 */
#ifndef PORTICO_PLUGINS_PTLIB_H
#define PORTICO_PLUGINS_PTLIB_H

#include <portico/plugin.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#pragma GCC visibility push(hidden)

#define PTL_LIT(s) ((pt_bytes){(s), sizeof(s) - 1})

/* ---- api.c ---- */

/* Evaluates a value (NULL: the empty string); 0 on success, else the status run() must return. */
int ptl_eval(const struct pt_api *api, pt_call *call, const pt_value *v, pt_bytes *out);

/* A message's body; 0, or the status run() must return (PT_AGAIN until it has been read). */
int ptl_body_get(const struct pt_api *api, pt_call *call, pt_msg m, pt_bytes *out);

/* A NUL-terminated copy in the arena; NULL when it cannot grow. */
char *ptl_dup_bytes(const struct pt_api *api, pt_call *call, pt_bytes b);

/* Sets (overrides) one header of message m to a NUL-terminated value; header_set's result. */
int ptl_header_put(const struct pt_api *api, pt_call *call, pt_msg m, const char *name, const char *value);

/* Fails the call with 500 OutOfMemory (the arena could not grow). */
pt_status ptl_out_of_memory(const struct pt_api *api, pt_call *call);

/* ---- bytes.c ---- */

bool ptl_bytes_eq(pt_bytes a, pt_bytes b);
/* a equals the C string b */
bool ptl_bytes_is(pt_bytes a, const char *b);
/* a equals the C string b, ASCII letters compared case-insensitively */
bool ptl_bytes_ieq(pt_bytes a, const char *b);
char ptl_lower(char c);
/* without leading and trailing spaces and tabs */
pt_bytes ptl_trim(pt_bytes b);
/* an RFC 9110 token (header names, methods) */
bool ptl_is_token(const char *s, size_t n);

/* ---- hex.c ---- */

extern const char ptl_hex_upper[17]; /* "0123456789ABCDEF" */
extern const char ptl_hex_lower[17]; /* "0123456789abcdef" */

/* A hex digit's value, or -1. */
int ptl_hexval(char c);
/* Four hex digits' value, or -1. */
int ptl_hex4(const char *p);
/* n bytes as 2n upper-case hex digits and a NUL. */
void ptl_hex_encode(const unsigned char *d, size_t n, char *out);

/* ---- buf.c ---- */

/* A growable byte buffer in the request arena.  It doubles, so at most
   twice the final size is held; once an allocation fails `oom` stays set
   and every later addition is dropped (check it once at the end). */
struct ptl_buf {
    const struct pt_api *api;
    pt_call *call;
    char *p;
    size_t n, cap;
    bool oom;
};

void ptl_buf_init(struct ptl_buf *b, const struct pt_api *api, pt_call *call, size_t hint);
bool ptl_buf_reserve(struct ptl_buf *b, size_t extra);
void ptl_buf_add(struct ptl_buf *b, const void *p, size_t n);
void ptl_buf_ch(struct ptl_buf *b, char c);
void ptl_buf_str(struct ptl_buf *b, const char *s);
pt_bytes ptl_buf_bytes(const struct ptl_buf *b);
#define ptl_buf_lit(b, s) ptl_buf_add((b), (s), sizeof(s) - 1)

/* ---- utf8.c ---- */

/* Decodes one code point; returns its length, 0 when invalid (overlong, surrogate, > U+10FFFF). */
size_t ptl_utf8_next(const unsigned char *s, size_t n, uint32_t *cp);
/* Appends one code point. */
void ptl_utf8_put(struct ptl_buf *b, uint32_t cp);

/* ---- url.c ---- */

/* Path segments may also keep RFC 3986 sub-delims, ':' and '@' ('/' is encoded). */
#define PTL_PATH_KEEP "!$&'()*+,;=:@"

/* Appends s with every byte but the unreserved ones (and those in keep) as %XX. */
void ptl_pct_encode(struct ptl_buf *b, pt_bytes s, const char *keep);
/* Decodes %XX (only; '+' stays) into arena memory; malformed escapes stay literal. */
pt_bytes ptl_pct_decode(const struct pt_api *api, pt_call *call, pt_bytes s);

/* One segment of a raw query string: raw bytes kept. */
struct ptl_qseg {
    pt_bytes raw; /* the whole "key=value" */
    pt_bytes key; /* raw key */
};

/* Splits a raw query into its non-empty '&'-separated segments (arena array); the count, -1 out of memory. */
int ptl_query_split(const struct pt_api *api, pt_call *call, pt_bytes q, struct ptl_qseg **out);
/* Does a raw query key name `name` (compared after %-decoding)? */
bool ptl_qkey_is(const struct pt_api *api, pt_call *call, pt_bytes rawkey, pt_bytes name);
/* Appends a segment, with '&' when b holds one already. */
void ptl_query_join(struct ptl_buf *b, pt_bytes seg);

/* ---- json.c ---- */

enum { PTL_J_NULL, PTL_J_FALSE, PTL_J_TRUE, PTL_J_NUM, PTL_J_STR, PTL_J_ARR, PTL_J_OBJ };

/* A parsed JSON value in the arena; containers keep their children as a list, in document order. */
struct ptl_jv {
    int t;         /* PTL_J_* */
    const char *s; /* PTL_J_STR: decoded UTF-8; PTL_J_NUM/TRUE/FALSE/NULL: the source text */
    size_t n;
    const char *key; /* as a member: its decoded name */
    size_t klen;
    struct ptl_jv *first, *next;
    size_t count;
};

#define PTL_JSON_MAX_DEPTH 256

/* Parses a whole document (RFC 8259, a UTF-8 BOM tolerated); NULL with *err. */
struct ptl_jv *ptl_json_parse(const struct pt_api *api, pt_call *call, pt_bytes text, const char **err);

#pragma GCC visibility pop

#endif
