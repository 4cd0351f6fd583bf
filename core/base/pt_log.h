/*
 * pt_log -- the error log.
 *
 * One line per event: "2026-11-26T15:09:23.123Z [warn] worker 1: message".
 * Lines are written with a single write(2) so threads never interleave.
 * The destination is stderr until pt_log_open() says otherwise.
 */
#ifndef PT_LOG_H
#define PT_LOG_H

#include "base/pt.h"

enum pt_log_level { PT_LOG_ERROR = 0, PT_LOG_WARN, PT_LOG_INFO, PT_LOG_DEBUG };

extern int pt_log_level;

/* Parses "error", "warn", "info", "debug"; -1 when unknown. */
int pt_log_level_parse(const char *name);
/* Sends the log to `path` ("stderr" or a file, appended); -1 with errno on failure. */
int pt_log_open(const char *path);
void pt_log_write(int level, const char *fmt, ...) PT_PRINTF(2, 3);

#define pt_log(level, ...)                                                                                   \
    do {                                                                                                     \
        if ((level) <= pt_log_level)                                                                         \
            pt_log_write((level), __VA_ARGS__);                                                              \
    } while (0)
#define pt_err(...) pt_log(PT_LOG_ERROR, __VA_ARGS__)
#define pt_warn(...) pt_log(PT_LOG_WARN, __VA_ARGS__)
#define pt_info(...) pt_log(PT_LOG_INFO, __VA_ARGS__)
#define pt_debug(...) pt_log(PT_LOG_DEBUG, __VA_ARGS__)

/* Formats a wall-clock time in ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" (25 bytes with NUL). */
void pt_log_format_time(char out[48], uint64_t wall_ms);

#endif
