/*
 * pt_log -- error log and the small clock helpers every subsystem uses.
 */
#include "base/pt_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int pt_log_level = PT_LOG_INFO;
static int log_fd = 2;

static const char *level_names[] = {"error", "warn", "info", "debug"};

void pt_log_panic(const char *file, int line, const char *what)
{
    char buf[512];
    int n = snprintf(buf, sizeof(buf), "portico: internal error at %s:%d: %s\n", file, line, what);
    if (n > 0 && write(2, buf, (size_t)n) < 0) {
        /* nothing more we can do */
    }
    abort();
}

void pt_log_format_time(char out[48], uint64_t wall_ms)
{
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, 48, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(wall_ms % 1000));
}

int pt_log_level_parse(const char *name)
{
    for (size_t i = 0; i < PT_ARRAY_LEN(level_names); i++)
        if (strcmp(name, level_names[i]) == 0)
            return (int)i;
    return -1;
}

int pt_log_open(const char *path)
{
    int fd;
    if (!path || strcmp(path, "stderr") == 0)
        fd = 2;
    else if (strcmp(path, "stdout") == 0)
        fd = 1;
    else {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            return -1;
    }
    int old = log_fd;
    log_fd = fd;
    if (old > 2)
        close(old);
    return 0;
}

/*
 * Copies a formatted message into a log line with every control byte
 * written out ("\r", "\n", "\x1b"): peer data (a backend's status line,
 * a header, a provider's answer) reaches messages, and a raw CR or LF in
 * it would forge log lines.  One pass here covers every caller.
 */
static size_t escape_into(char *out, size_t cap, const char *msg, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)msg[i];
        if (c >= 0x20 && c != 0x7f) {
            if (o + 1 > cap)
                break;
            out[o++] = (char)c;
            continue;
        }
        if (o + 4 > cap)
            break;
        out[o++] = '\\';
        if (c == '\n')
            out[o++] = 'n';
        else if (c == '\r')
            out[o++] = 'r';
        else if (c == '\t')
            out[o++] = 't';
        else {
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    return o;
}

void pt_log_write(int level, const char *fmt, ...)
{
    char msg[2048];
    char buf[2048 + 128];
    char ts[48];
    int saved = errno;
    pt_log_format_time(ts, pt_clock_wall_ms());
    int n = snprintf(buf, sizeof(buf), "%s [%s] ", ts, level_names[level < 0 ? 0 : level > 3 ? 3 : level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    if ((size_t)m >= sizeof(msg))
        m = sizeof(msg) - 1;
    size_t len = (size_t)n + escape_into(buf + n, sizeof(buf) - (size_t)n - 1, msg, (size_t)m);
    buf[len++] = '\n';
    if (write(log_fd, buf, len) < 0) {
        /* the log itself failed: nowhere left to report it */
    }
    errno = saved;
}
