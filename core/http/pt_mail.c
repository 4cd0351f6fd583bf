/*
 * pt_mail -- outgoing mail (see pt_mail.h).
 *
 * Building a message: the headers come from values this file checks itself
 * (addresses character by character, the subject stripped of control
 * characters and RFC 2047-encoded when it is not ASCII, the From's display
 * name re-quoted), the body is quoted-printable with CRLF line ends, so the
 * message is 7-bit clean whatever the text holds and no line is longer
 * than 76 characters.
 *
 * Delivering it: the outbox writes a hidden temporary file, syncs it and
 * renames it to <ms>-<random>.eml (so a folder watcher never reads half a
 * message); SMTP hands the same bytes to libcurl, which speaks the protocol
 * (EHLO, STARTTLS, AUTH, dot-stuffing).
 */
#include "http/pt_mail.h"
#include "base/pt_log.h"
#include "base/pt_sbuf.h"
#include "base/pt_utf8.h"
#include "conf/pt_content.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ templates */

struct builtin {
    const char *id;
    const char *subject;
    const char *body;
};

static const struct builtin builtins[] = {
    {"confirm-signup", "Confirm your account on {{siteTitle}}",
     "Hello {{firstName}},\n\n"
     "thank you for signing up to {{siteTitle}}. Please confirm your e-mail address\n"
     "by opening this link:\n\n"
     "{{link}}\n\n"
     "If you did not sign up, you can ignore this message: no account is opened\n"
     "without the confirmation.\n"},
    {"reset-password", "Reset your password on {{siteTitle}}",
     "Hello {{firstName}},\n\n"
     "someone asked to reset the password of your account on {{siteTitle}}.\n"
     "To choose a new password, open this link:\n\n"
     "{{link}}\n\n"
     "The link works once and expires soon. If you did not ask for it, ignore\n"
     "this message: your password stays as it is.\n"},
    {"account-exists", "Your account on {{siteTitle}}",
     "Hello {{firstName}},\n\n"
     "someone tried to sign up to {{siteTitle}} with this address, which has an\n"
     "account already. To sign in, open this link:\n\n"
     "{{link}}\n\n"
     "If you forgot your password, choose \"Forgot your password?\" there. If you\n"
     "did not try to sign up, you can ignore this message: nothing was changed.\n"},
    {"invite", "You are invited to {{siteTitle}}",
     "Hello {{firstName}},\n\n"
     "an administrator of {{siteTitle}} opened an account for you ({{email}}).\n"
     "To choose your password and sign in, open this link:\n\n"
     "{{link}}\n"},
    {"subscription-submitted", "New subscription request for {{product}}",
     "Hello,\n\n"
     "{{firstName}} {{lastName}} ({{email}}) asked to subscribe to {{product}}\n"
     "(subscription {{subscription}}). It waits for your approval:\n\n"
     "{{link}}\n"},
    {"subscription-approved", "Your subscription to {{product}} is approved",
     "Hello {{firstName}},\n\n"
     "your subscription {{subscription}} to {{product}} on {{siteTitle}} is approved.\n"
     "Your keys are on your subscriptions page:\n\n"
     "{{link}}\n\n"
     "{{comment}}\n"},
    {"subscription-rejected", "Your subscription to {{product}} was not approved",
     "Hello {{firstName}},\n\n"
     "your request {{subscription}} to subscribe to {{product}} on {{siteTitle}}\n"
     "was not approved.\n\n"
     "{{comment}}\n"},
};

const char *const pt_mail_template_ids[] = {
    "confirm-signup",         "reset-password",        "account-exists",        "invite",
    "subscription-submitted", "subscription-approved", "subscription-rejected", NULL};

bool pt_mail_template_default(const char *id, const char **subject, const char **body)
{
    for (size_t i = 0; i < PT_ARRAY_LEN(builtins); i++)
        if (id && strcmp(builtins[i].id, id) == 0) {
            *subject = builtins[i].subject;
            *body = builtins[i].body;
            return true;
        }
    return false;
}

json_t *pt_mail_template_get(struct pt_store *st, const char *id)
{
    const char *subject, *body;
    if (!pt_mail_template_default(id, &subject, &body))
        return NULL;
    json_t *out = json_pack("{s:s, s:s, s:s, s:b}", "id", id, "subject", subject, "body", body, "builtIn", 1);
    json_t *stored = NULL;
    if (out && st && pt_store_get(st, PT_MAIL_TEMPLATE_KIND, "", id, &stored, NULL)) {
        /* a stored template may give one of the two and keep the other built in */
        json_t *s = json_object_get(stored, "subject"), *b = json_object_get(stored, "body");
        if (json_is_string(s))
            json_object_set(out, "subject", s);
        if (json_is_string(b))
            json_object_set(out, "body", b);
        json_object_set_new(out, "builtIn", json_false());
        json_decref(stored);
    }
    return out;
}

static void PT_PRINTF(2, 3) sb_printf(struct pt_sbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        b->failed = true;
    else
        pt_sbuf_add(b, tmp, (size_t)n);
}

static char *sb_take(struct pt_sbuf *b)
{
    if (b->failed || !b->p) {
        free(b->p);
        return b->failed ? NULL : strdup("");
    }
    return b->p;
}

char *pt_mail_fill(const char *text, const json_t *vars)
{
    struct pt_sbuf b = {0};
    const char *p = text ? text : "";
    pt_sbuf_add(&b, "", 0);
    while (*p) {
        const char *open = strstr(p, "{{");
        if (!open) {
            pt_sbuf_str(&b, p);
            break;
        }
        pt_sbuf_add(&b, p, (size_t)(open - p));
        const char *close = strstr(open + 2, "}}");
        /* a name is letters, digits and '_' between optional spaces; anything
           else stays as written */
        const char *n = open + 2;
        while (n < (close ? close : n) && *n == ' ')
            n++;
        const char *e = n;
        while (close && e < close && (isalnum((unsigned char)*e) || *e == '_'))
            e++;
        const char *t = e;
        while (close && t < close && *t == ' ')
            t++;
        if (!close || t != close || e == n || e - n > 64) {
            pt_sbuf_add(&b, "{{", 2);
            p = open + 2;
            continue;
        }
        char name[65];
        memcpy(name, n, (size_t)(e - n));
        name[e - n] = 0;
        const char *v = json_string_value(json_object_get(vars, name));
        if (v)
            pt_sbuf_str(&b, v);
        p = close + 2;
    }
    return sb_take(&b);
}

/* ------------------------------------------------------------ addresses */

static bool addr_char(unsigned char c)
{
    /* printable ASCII without space and the characters that end or join
       addresses in a header or an SMTP command */
    return c > 0x20 && c < 0x7f && !strchr("<>()[]\\,;:\"", c);
}

bool pt_mail_address_ok(const char *s)
{
    if (!s)
        return false;
    size_t n = strlen(s);
    if (n < 3 || n > 254)
        return false;
    const char *at = strchr(s, '@');
    if (!at || at == s || strchr(at + 1, '@') || at - s > 64)
        return false;
    for (const char *p = s; *p; p++)
        if (!addr_char((unsigned char)*p))
            return false;
    /* the domain: labels of letters, digits and '-', joined by single dots */
    const char *d = at + 1;
    if (!*d || *d == '.' || d[strlen(d) - 1] == '.' || strstr(d, ".."))
        return false;
    for (const char *p = d; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
            return false;
    return s[0] != '.' && at[-1] != '.';
}

bool pt_mail_from_address(const char *from, char *out, size_t outlen)
{
    if (!from)
        return false;
    for (const char *p = from; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return false;
    const char *lt = strrchr(from, '<');
    const char *a = from;
    size_t n = strlen(from);
    if (lt) {
        const char *gt = strchr(lt, '>');
        if (!gt || gt[1])
            return false;
        a = lt + 1;
        n = (size_t)(gt - a);
    }
    if (n + 1 > outlen)
        return false;
    memcpy(out, a, n);
    out[n] = 0;
    return pt_mail_address_ok(out);
}

/* ------------------------------------------------------------ headers */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void sb_base64(struct pt_sbuf *b, const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        char q[4] = {b64[(v >> 18) & 63], b64[(v >> 12) & 63], i + 1 < n ? b64[(v >> 6) & 63] : '=',
                     i + 2 < n ? b64[v & 63] : '='};
        pt_sbuf_add(b, q, 4);
    }
}

/* The length of the UTF-8 sequence at s (1 for a byte that does not start a
   valid one: it is then replaced). */
static size_t utf8_len(const unsigned char *s, bool *valid)
{
    size_t n = pt_utf8_seq(s, strnlen((const char *)s, 4)); /* s is NUL-terminated */
    *valid = n > 0;
    return n ? n : 1;
}

/* A header value from user text: control characters (CR, LF, tab...)
   become spaces, invalid UTF-8 becomes '?', runs of spaces are one; trimmed.
   malloc'd. */
static char *clean_text(const char *s, size_t max)
{
    struct pt_sbuf b = {0};
    pt_sbuf_add(&b, "", 0);
    bool space = true; /* drops leading spaces */
    const unsigned char *p = (const unsigned char *)s;
    while (*p && b.len < max) {
        bool valid;
        size_t n = utf8_len(p, &valid);
        if (!valid) {
            pt_sbuf_add(&b, "?", 1);
            space = false;
        } else if (n == 1 && (*p < 0x20 || *p == 0x7f || *p == ' ')) {
            if (!space)
                pt_sbuf_add(&b, " ", 1);
            space = true;
        } else {
            pt_sbuf_add(&b, (const char *)p, n);
            space = false;
        }
        p += n;
    }
    while (b.len && b.p[b.len - 1] == ' ')
        b.p[--b.len] = 0;
    return sb_take(&b);
}

static bool is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

/* RFC 2047 encoded words (UTF-8, base64) of at most 75 characters each,
   split between characters, folded onto continuation lines. */
static void sb_encoded_words(struct pt_sbuf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    bool first = true;
    while (*p) {
        size_t take = 0;
        while (p[take]) {
            bool valid;
            size_t n = utf8_len(p + take, &valid);
            if (take + n > 45) /* 45 bytes = 60 base64 characters + 12 around */
                break;
            take += n;
        }
        if (!first)
            pt_sbuf_str(b, "\r\n ");
        pt_sbuf_str(b, "=?UTF-8?B?");
        sb_base64(b, p, take);
        pt_sbuf_str(b, "?=");
        p += take;
        first = false;
    }
}

/* A display name: as it is when it is plain ASCII words, a quoted string
   when it has other ASCII, encoded words when it is not ASCII. */
static void sb_display_name(struct pt_sbuf *b, const char *name)
{
    if (!is_ascii(name)) {
        sb_encoded_words(b, name);
        return;
    }
    bool plain = true;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr(" !#$%&'*+-/=?^_`{|}~", *p))
            plain = false;
    if (plain) {
        pt_sbuf_str(b, name);
        return;
    }
    pt_sbuf_add(b, "\"", 1);
    for (const char *p = name; *p; p++) {
        if (*p == '"' || *p == '\\')
            pt_sbuf_add(b, "\\", 1);
        pt_sbuf_add(b, p, 1);
    }
    pt_sbuf_add(b, "\"", 1);
}

static void sb_date(struct pt_sbuf *b)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    sb_printf(b, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n", days[tm.tm_wday % 7], tm.tm_mday,
              months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void random_hex(char *out, size_t bytes)
{
    unsigned char r[32];
    if (bytes > sizeof(r))
        bytes = sizeof(r);
    if (RAND_bytes(r, (int)bytes) != 1) {
        /* never expected; a clock-based fallback still gives distinct names */
        uint64_t v = pt_clock_now_us() ^ ((uint64_t)getpid() << 40);
        for (size_t i = 0; i < bytes; i++)
            r[i] = (unsigned char)(v >> (8 * (i % 8)));
    }
    for (size_t i = 0; i < bytes; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
}

/* ------------------------------------------------------------ the body */

/* Quoted-printable (RFC 2045) with CRLF line ends: any line end in text
   (CRLF, LF, CR) becomes CRLF; lines longer than 76 are broken softly. */
static void sb_qp(struct pt_sbuf *b, const char *text)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t col = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '\r' || *p == '\n') {
            if (*p == '\r' && p[1] == '\n')
                p++;
            pt_sbuf_str(b, "\r\n");
            col = 0;
            continue;
        }
        bool at_end = p[1] == 0 || p[1] == '\r' || p[1] == '\n';
        char enc[3];
        size_t n;
        /* literal: printable ASCII but '='; a space or tab unless it ends the
           line (trailing white space may be lost in transit); a '.' starting a
           line is encoded so no reader takes it for SMTP's end of data */
        bool literal = (*p >= 33 && *p <= 126 && *p != '=' && !(*p == '.' && col == 0)) ||
                       ((*p == ' ' || *p == '\t') && !at_end);
        if (literal) {
            enc[0] = (char)*p;
            n = 1;
        } else {
            enc[0] = '=';
            enc[1] = hex[*p >> 4];
            enc[2] = hex[*p & 15];
            n = 3;
        }
        if (col + n > 75) {
            pt_sbuf_str(b, "=\r\n");
            col = 0;
        }
        pt_sbuf_add(b, enc, n);
        col += n;
    }
    if (col)
        pt_sbuf_str(b, "\r\n");
}

static void PT_PRINTF(3, 4) set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

char *pt_mail_format(const struct pt_mail_cf *cf, const char *to, const char *subject, const char *body,
                     char *err, size_t errlen)
{
    const char *from = cf && cf->from ? cf->from : PT_MAIL_DEFAULT_FROM;
    char from_addr[256];
    if (!pt_mail_address_ok(to)) {
        set_err(err, errlen, "not a mail address one can send to: \"%.80s\"", to ? to : "");
        return NULL;
    }
    if (!pt_mail_from_address(from, from_addr, sizeof(from_addr))) {
        set_err(err, errlen, "portal.mail.from holds no usable address: \"%.80s\"", from);
        return NULL;
    }
    if (!subject)
        subject = "";
    if (!body)
        body = "";
    if (strlen(subject) > PT_MAIL_SUBJECT_MAX || strlen(body) > PT_MAIL_BODY_MAX) {
        set_err(err, errlen, "the message is too long (subject at most %d, body at most %d bytes)",
                PT_MAIL_SUBJECT_MAX, PT_MAIL_BODY_MAX);
        return NULL;
    }
    struct pt_sbuf b = {0};
    sb_date(&b);

    /* From: the display name (before '<'), cleaned and re-quoted */
    pt_sbuf_str(&b, "From: ");
    const char *lt = strrchr(from, '<');
    if (lt) {
        char *raw = strndup(from, (size_t)(lt - from));
        char *name = raw ? clean_text(raw, 200) : NULL;
        if (name && name[0] == '"' && strlen(name) >= 2 && name[strlen(name) - 1] == '"') {
            memmove(name, name + 1, strlen(name));
            name[strlen(name) - 1] = 0;
        }
        if (name && *name) {
            sb_display_name(&b, name);
            pt_sbuf_str(&b, " ");
        }
        free(raw);
        free(name);
    }
    sb_printf(&b, "<%s>\r\n", from_addr);
    sb_printf(&b, "To: <%s>\r\n", to);

    char *subj = clean_text(subject, PT_MAIL_SUBJECT_MAX);
    pt_sbuf_str(&b, "Subject: ");
    if (subj && !is_ascii(subj))
        sb_encoded_words(&b, subj);
    else if (subj)
        pt_sbuf_str(&b, subj);
    else
        b.failed = true;
    pt_sbuf_str(&b, "\r\n");
    free(subj);

    char id[33];
    random_hex(id, 16);
    sb_printf(&b, "Message-ID: <%s.%llu@%s>\r\n", id, (unsigned long long)pt_clock_wall_ms(),
              strchr(from_addr, '@') + 1);
    pt_sbuf_str(&b, "MIME-Version: 1.0\r\n"
                    "Content-Type: text/plain; charset=utf-8\r\n"
                    "Content-Transfer-Encoding: quoted-printable\r\n"
                    "\r\n");
    sb_qp(&b, body);
    char *out = sb_take(&b);
    if (!out)
        set_err(err, errlen, "out of memory");
    return out;
}

/* ------------------------------------------------------------ the outbox */

static bool write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static bool to_outbox(const char *dir, const char *msg, char *err, size_t errlen)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        set_err(err, errlen, "outbox %s: %s", dir, strerror(errno));
        return false;
    }
    char rnd[17], tmp[4096], final[4096];
    random_hex(rnd, 8);
    int n1 = snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, rnd);
    int n2 =
        snprintf(final, sizeof(final), "%s/%013llu-%s.eml", dir, (unsigned long long)pt_clock_wall_ms(), rnd);
    if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof(tmp) || (size_t)n2 >= sizeof(final)) {
        set_err(err, errlen, "outbox path too long");
        return false;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        set_err(err, errlen, "outbox %s: %s", tmp, strerror(errno));
        return false;
    }
    bool ok = write_all(fd, msg, strlen(msg)) && fsync(fd) == 0;
    int saved = errno;
    if (close(fd) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    if (!ok || rename(tmp, final) != 0) {
        if (ok)
            saved = errno;
        unlink(tmp);
        set_err(err, errlen, "outbox %s: %s", final, strerror(saved));
        return false;
    }
    /* the rename itself survives a crash once the folder is synced */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return true;
}

/* ------------------------------------------------------------ SMTP */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct upload {
    const char *p;
    size_t left;
};

static size_t read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
    struct upload *u = arg;
    size_t n = size * nitems;
    if (n > u->left)
        n = u->left;
    memcpy(buf, u->p, n);
    u->p += n;
    u->left -= n;
    return n;
}

static bool to_smtp(const struct pt_mail_cf *cf, const char *from_addr, const char *to, const char *msg,
                    char *err, size_t errlen)
{
    const char *url = cf->smtp_url;
    bool implicit = strncasecmp(url, "smtps://", 8) == 0;
    if (!implicit && strncasecmp(url, "smtp://", 7) != 0) {
        set_err(err, errlen, "portal.mail.smtp.url must be smtp:// or smtps://");
        return false;
    }
    bool tls = implicit || cf->starttls;
    if (!tls && cf->smtp_username && *cf->smtp_username) {
        /* a password is never sent in clear text */
        set_err(err, errlen, "smtp: not sending credentials without TLS (set starttls, or use smtps://)");
        return false;
    }
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        set_err(err, errlen, "smtp: libcurl could not start: %s", curl_easy_strerror(curl_init_rc));
        return false;
    }
    CURL *c = curl_easy_init();
    if (!c) {
        set_err(err, errlen, "smtp: out of memory");
        return false;
    }
    char ebuf[CURL_ERROR_SIZE] = "";
    char mfrom[300], rcpt[300];
    snprintf(mfrom, sizeof(mfrom), "<%s>", from_addr);
    snprintf(rcpt, sizeof(rcpt), "<%s>", to);
    struct curl_slist *rcpts = curl_slist_append(NULL, rcpt);
    struct upload u = {msg, strlen(msg)};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)PT_MAIL_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)PT_MAIL_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_USE_SSL, (long)(tls ? CURLUSESSL_ALL : CURLUSESSL_NONE));
    if (cf->smtp_ca_file && *cf->smtp_ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, cf->smtp_ca_file);
    if (cf->smtp_username && *cf->smtp_username) {
        curl_easy_setopt(c, CURLOPT_USERNAME, cf->smtp_username);
        curl_easy_setopt(c, CURLOPT_PASSWORD, cf->smtp_password ? cf->smtp_password : "");
    }
    curl_easy_setopt(c, CURLOPT_MAIL_FROM, mfrom);
    curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpts);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(c, CURLOPT_READDATA, &u);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)u.left);
    CURLcode rc = rcpts ? curl_easy_perform(c) : CURLE_OUT_OF_MEMORY;
    if (rc != CURLE_OK)
        set_err(err, errlen, "smtp: %s%s%s", curl_easy_strerror(rc), ebuf[0] ? ": " : "", ebuf);
    curl_slist_free_all(rcpts);
    curl_easy_cleanup(c);
    return rc == CURLE_OK;
}

/* ------------------------------------------------------------ the queue */

/* SMTP deliveries leave the calling thread (the control thread serves the
   portal and the management API: a slow mail server must not stall them):
   one thread of this file sends them in order from a bounded queue, each
   with its own copy of the settings (a reload may free the caller's). */

struct job {
    struct job *next;
    struct pt_mail_cf cf; /* strings owned by the job */
    char *to, *msg;
};

static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcond = PTHREAD_COND_INITIALIZER; /* a job was queued */
static pthread_cond_t qdone = PTHREAD_COND_INITIALIZER; /* the queue ran empty */
static struct job *qhead, *qtail;
static int qlen;
static bool qbusy, qstarted;

static void job_free(struct job *j)
{
    if (!j)
        return;
    free(j->cf.from);
    free(j->cf.smtp_url);
    free(j->cf.smtp_username);
    free(j->cf.smtp_password);
    free(j->cf.smtp_ca_file);
    free(j->to);
    free(j->msg);
    free(j);
}

static void *mail_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&qlock);
        while (!qhead) {
            qbusy = false;
            pthread_cond_broadcast(&qdone);
            pthread_cond_wait(&qcond, &qlock);
        }
        struct job *j = qhead;
        qhead = j->next;
        if (!qhead)
            qtail = NULL;
        qlen--;
        qbusy = true;
        pthread_mutex_unlock(&qlock);
        char err[512] = "", from_addr[256];
        bool ok = pt_mail_from_address(j->cf.from, from_addr, sizeof(from_addr)) &&
                  to_smtp(&j->cf, from_addr, j->to, j->msg, err, sizeof(err));
        if (ok)
            pt_info("mail: sent to %s by SMTP", j->to);
        else
            pt_err("mail: not sent to %s: %s", j->to, *err ? err : "bad sender address");
        job_free(j);
    }
    return NULL;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static bool enqueue(const struct pt_mail_cf *cf, const char *to, char *msg, char *err, size_t errlen)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j) {
        free(msg);
        set_err(err, errlen, "out of memory");
        return false;
    }
    j->cf.from = strdup(cf->from ? cf->from : PT_MAIL_DEFAULT_FROM);
    j->cf.smtp_url = dup_or_null(cf->smtp_url);
    j->cf.smtp_username = dup_or_null(cf->smtp_username);
    j->cf.smtp_password = dup_or_null(cf->smtp_password);
    j->cf.smtp_ca_file = dup_or_null(cf->smtp_ca_file);
    j->cf.starttls = cf->starttls;
    j->to = strdup(to);
    j->msg = msg;
    if (!j->cf.from || !j->cf.smtp_url || !j->to) {
        job_free(j);
        set_err(err, errlen, "out of memory");
        return false;
    }
    pthread_mutex_lock(&qlock);
    bool ok = qlen < PT_MAIL_QUEUE_MAX;
    if (ok && !qstarted) {
        /* the thread takes no signal: they are the control thread's */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        qstarted = pthread_create(&t, &attr, mail_main, NULL) == 0;
        pthread_attr_destroy(&attr);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        ok = qstarted;
    }
    if (ok) {
        if (qtail)
            qtail->next = j;
        else
            qhead = j;
        qtail = j;
        qlen++;
        qbusy = true;
        pthread_cond_signal(&qcond);
    }
    pthread_mutex_unlock(&qlock);
    if (!ok) {
        set_err(err, errlen,
                qstarted ? "the mail queue is full (%d messages wait for the SMTP server)"
                         : "the mail thread could not start",
                PT_MAIL_QUEUE_MAX);
        job_free(j);
    }
    return ok;
}

bool pt_mail_flush(uint32_t ms)
{
    uint64_t deadline = pt_clock_wall_ms() + ms;
    pthread_mutex_lock(&qlock);
    while ((qhead || qbusy) && pt_clock_wall_ms() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&qdone, &qlock, &ts);
    }
    bool empty = !qhead && !qbusy;
    pthread_mutex_unlock(&qlock);
    return empty;
}

/* ------------------------------------------------------------ sending */

/* The SMTP settings' own mistakes, found before anything is queued. */
static bool smtp_settings_ok(const struct pt_mail_cf *cf, char *err, size_t errlen)
{
    bool implicit = strncasecmp(cf->smtp_url, "smtps://", 8) == 0;
    if (!implicit && strncasecmp(cf->smtp_url, "smtp://", 7) != 0) {
        set_err(err, errlen, "portal.mail.smtp.url must be smtp:// or smtps://");
        return false;
    }
    if (!implicit && !cf->starttls && cf->smtp_username && *cf->smtp_username) {
        set_err(err, errlen, "smtp: not sending credentials without TLS (set starttls, or use smtps://)");
        return false;
    }
    return true;
}

static bool send_message(const struct pt_mail_cf *cf, const char *to, const char *subject, const char *body,
                         bool queue, char *err, size_t errlen)
{
    if (!cf || ((!cf->smtp_url || !*cf->smtp_url) && (!cf->outbox || !*cf->outbox))) {
        set_err(err, errlen, "mail is not configured (portal.mail: outbox or smtp)");
        return false;
    }
    char *msg = pt_mail_format(cf, to, subject, body, err, errlen);
    if (!msg)
        return false;
    if (!cf->smtp_url || !*cf->smtp_url) {
        bool ok = to_outbox(cf->outbox, msg, err, errlen);
        free(msg);
        return ok;
    }
    if (!smtp_settings_ok(cf, err, errlen)) {
        free(msg);
        return false;
    }
    if (queue)
        return enqueue(cf, to, msg, err, errlen); /* takes msg */
    char from_addr[256];
    bool ok =
        pt_mail_from_address(cf->from ? cf->from : PT_MAIL_DEFAULT_FROM, from_addr, sizeof(from_addr)) &&
        to_smtp(cf, from_addr, to, msg, err, errlen);
    free(msg);
    return ok;
}

bool pt_mail_send(const struct pt_mail_cf *cf, const char *to, const char *subject, const char *body,
                  char *err, size_t errlen)
{
    return send_message(cf, to, subject, body, true, err, errlen);
}

bool pt_mail_deliver(const struct pt_mail_cf *cf, const char *to, const char *subject, const char *body,
                     char *err, size_t errlen)
{
    return send_message(cf, to, subject, body, false, err, errlen);
}

bool pt_mail_send_template(struct pt_store *st, const struct pt_mail_cf *cf, const char *id, const char *to,
                           const json_t *vars, char *err, size_t errlen)
{
    json_t *t = pt_mail_template_get(st, id);
    if (!t) {
        set_err(err, errlen, "no mail template \"%.64s\"", id ? id : "");
        return false;
    }
    /* {{siteTitle}} the caller did not give: the published site's title */
    json_t *all = json_is_object(vars) ? json_copy((json_t *)vars) : json_object();
    if (all && !json_is_string(json_object_get(all, "siteTitle"))) {
        json_t *rev = st ? pt_content_revision(st, pt_content_latest(st)) : NULL;
        json_t *site = pt_content_site_full(json_object_get(rev, "site"));
        json_object_set(all, "siteTitle", json_object_get(site, "title"));
        json_decref(site);
        json_decref(rev);
    }
    char *subject = pt_mail_fill(json_string_value(json_object_get(t, "subject")), all);
    char *body = pt_mail_fill(json_string_value(json_object_get(t, "body")), all);
    json_decref(all);
    json_decref(t);
    bool ok = subject && body;
    if (!ok)
        set_err(err, errlen, "out of memory");
    else
        ok = pt_mail_send(cf, to, subject, body, err, errlen);
    free(subject);
    free(body);
    return ok;
}
