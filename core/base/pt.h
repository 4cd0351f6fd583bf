/*
 * pt.h -- definitions every part of the core shares.
 *
 * Request data is never assumed to be NUL-terminated: it travels as pt_str,
 * a (data, len) slice into a buffer owned by someone else (usually the
 * request arena).  Helpers here are small and inline; anything larger lives
 * in its own subsystem file.
 */
#ifndef PT_H
#define PT_H

#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include <portico/plugin.h>

/* The core's byte string is the SDK's pt_bytes {data, len}: one type from
   the socket to the plugins, passed along without conversions. */
typedef pt_bytes pt_str;

#define PT_STR(lit) ((pt_str){(lit), sizeof(lit) - 1})
#define PT_NULL_STR ((pt_str){NULL, 0})
#define PT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define PT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PT_MAX(a, b) ((a) > (b) ? (a) : (b))
#define PT_UNUSED __attribute__((unused))
#define PT_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define PT_LIKELY(x) __builtin_expect(!!(x), 1)
#define PT_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Abort with a message: for broken internal invariants only, never for input. */
#define PT_ASSERT(cond)                                                                                      \
    do {                                                                                                     \
        if (PT_UNLIKELY(!(cond)))                                                                            \
            pt_log_panic(__FILE__, __LINE__, #cond);                                                         \
    } while (0)
void pt_log_panic(const char *file, int line, const char *what) __attribute__((noreturn));

/* Checks made only in --enable-debug builds (where they cost something). */
#ifdef PT_DEBUG
#define PT_DCHECK(cond) PT_ASSERT(cond)
#else
#define PT_DCHECK(cond) ((void)0)
#endif

static inline pt_str pt_str_c(const char *s)
{
    return (pt_str){s, s ? strlen(s) : 0};
}

static inline bool pt_str_eq(pt_str a, pt_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

/* ASCII case-insensitive comparison (header names, schemes, tokens). */
static inline bool pt_str_ieq(pt_str a, pt_str b)
{
    if (a.len != b.len)
        return false;
    for (size_t i = 0; i < a.len; i++) {
        unsigned char x = (unsigned char)a.data[i], y = (unsigned char)b.data[i];
        if (x != y) {
            if (x >= 'A' && x <= 'Z')
                x |= 0x20;
            if (y >= 'A' && y <= 'Z')
                y |= 0x20;
            if (x != y)
                return false;
        }
    }
    return true;
}

static inline bool pt_str_ieq_c(pt_str a, const char *lit)
{
    return pt_str_ieq(a, pt_str_c(lit));
}

static inline pt_str pt_str_trim(pt_str s)
{
    while (s.len && (s.data[0] == ' ' || s.data[0] == '\t')) {
        s.data++;
        s.len--;
    }
    while (s.len && (s.data[s.len - 1] == ' ' || s.data[s.len - 1] == '\t'))
        s.len--;
    return s;
}

/* An RFC 9110 token: not empty, tchar only (pt_str.c). */
extern const uint8_t pt_str_tchar[256];
bool pt_str_is_token(pt_str s);
/* The edit distance (Levenshtein) between a and b ignoring ASCII case, for
   "did you mean" suggestions; names are short, longer inputs are cut at 64. */
int pt_str_distance(pt_str a, pt_str b);
/* vsnprintf for text shown to people: output that does not fit is cut at a
   UTF-8 character boundary and ends in "…" (when size allows), so a message
   stays valid UTF-8.  Returns the length written, always < size. */
size_t pt_str_vfmt(char *buf, size_t size, const char *fmt, va_list ap) PT_PRINTF(3, 0);
size_t pt_str_fmt(char *buf, size_t size, const char *fmt, ...) PT_PRINTF(3, 4);
/* Ends buf (size bytes, full: its text was cut at size - 1) at a character
   boundary followed by "…"; returns the new length. */
size_t pt_str_utf8_cut(char *buf, size_t size);

/* qsort, but an array already in order (as the store lists entities: by id) is left as it is after
   one pass, not sorted again. */
void pt_str_sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *));

/* The value of a hex digit, or -1. */
static inline int pt_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* FNV-1a over bytes, optionally lowercasing ASCII. */
static inline uint64_t pt_hash(const void *data, size_t n, bool fold)
{
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (fold && c >= 'A' && c <= 'Z')
            c |= 0x20;
        h ^= c;
        h *= 1099511628211ULL;
    }
    return h;
}

/* Monotonic and wall clocks in milliseconds / microseconds (pt_clock.c). */
uint64_t pt_clock_now_ms(void);  /* coarse monotonic, for deadlines */
uint64_t pt_clock_now_us(void);  /* precise monotonic, for measuring */
uint64_t pt_clock_wall_ms(void); /* realtime, for timestamps */

#endif
