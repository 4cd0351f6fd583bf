/*
 * pt_cpsync -- a gateway node's side of the control plane: the long-poll and
 * heartbeat threads, the hand-over to the control thread, the encrypted
 * backup.  See pt_cpsync.h.
 */
#include "http/pt_cpsync.h"

#include "base/pt_log.h"
#include "event/pt_metrics.h"
#include "http/pt_fetch.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000
#define EXPIRED_RETRY_MS 60000 /* an expired token: one attempt a minute (the file may change) */
#define DOWN_LOG_MS 60000      /* while down: one log line a minute */
#define WARN_DAYS 3            /* a token with fewer days left is warned about */
#define DOC_MAX (256u << 20)   /* a configuration document larger than this is refused */
#define TOKEN_MAX 4096

/* ------------------------------------------------------------ the token */

char *pt_cpsync_token(const struct pt_cp_cf *cp, char *err, size_t errlen)
{
    if (cp->token)
        return strdup(cp->token);
    if (!cp->token_file) {
        snprintf(err, errlen, "no token (controlPlane.token, tokenFile or $PORTICO_GATEWAY_TOKEN)");
        return NULL;
    }
    int fd = open(cp->token_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot read the token file %s: %s", cp->token_file, strerror(errno));
        return NULL;
    }
    char buf[TOKEN_MAX + 1];
    ssize_t n = read(fd, buf, TOKEN_MAX);
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "cannot read the token file %s: %s", cp->token_file, strerror(errno));
        return NULL;
    }
    buf[n] = '\0';
    char *s = buf;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    size_t len = strlen(s);
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r' || s[len - 1] == '\n'))
        s[--len] = '\0';
    if (!len) {
        snprintf(err, errlen, "the token file %s is empty", cp->token_file);
        return NULL;
    }
    return strdup(s);
}

/* ----------------------------------------------------------- the backup */

/* The backup's key: HKDF-SHA256 of the token's signature part, salt "portico config backup", info
   the gateway id. */
static bool backup_key(const char *token, unsigned char key[32], char *err, size_t errlen)
{
    char id[96];
    int64_t exp;
    const char *sig;
    if (!pt_conf_cp_token_parse(token, id, sizeof(id), &exp, &sig)) {
        snprintf(err, errlen, "the gateway token is not of the form GatewayKey <id>&<expiry>&<sig>");
        return false;
    }
    static const char salt[] = "portico config backup";
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    size_t klen = 32;
    bool ok = pc && EVP_PKEY_derive_init(pc) > 0 && EVP_PKEY_CTX_set_hkdf_md(pc, EVP_sha256()) > 0 &&
              EVP_PKEY_CTX_set1_hkdf_salt(pc, (const unsigned char *)salt, (int)(sizeof(salt) - 1)) > 0 &&
              EVP_PKEY_CTX_set1_hkdf_key(pc, (const unsigned char *)sig, (int)strlen(sig)) > 0 &&
              EVP_PKEY_CTX_add1_hkdf_info(pc, (const unsigned char *)id, (int)strlen(id)) > 0 &&
              EVP_PKEY_derive(pc, key, &klen) > 0 && klen == 32;
    EVP_PKEY_CTX_free(pc);
    if (!ok)
        snprintf(err, errlen, "cannot derive the backup's key");
    return ok;
}

#define MAGIC_LEN (sizeof(PT_CPSYNC_BACKUP_MAGIC) - 1)
#define NONCE_LEN 12
#define TAG_LEN 16

bool pt_cpsync_backup_seal(const char *token, const char *plain, size_t len, unsigned char **out,
                           size_t *outlen, char *err, size_t errlen)
{
    unsigned char key[32];
    if (len > PT_CPSYNC_BACKUP_MAX || !backup_key(token, key, err, errlen)) {
        if (len > PT_CPSYNC_BACKUP_MAX)
            snprintf(err, errlen, "the document is larger than a backup may be");
        return false;
    }
    size_t total = MAGIC_LEN + NONCE_LEN + len + TAG_LEN;
    unsigned char *b = malloc(total);
    if (!b) {
        OPENSSL_cleanse(key, sizeof(key));
        snprintf(err, errlen, "out of memory for the backup");
        return false;
    }
    memcpy(b, PT_CPSYNC_BACKUP_MAGIC, MAGIC_LEN);
    unsigned char *nonce = b + MAGIC_LEN, *ct = nonce + NONCE_LEN, *tag = ct + len;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0;
    bool ok = c && RAND_bytes(nonce, NONCE_LEN) == 1 &&
              EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
              EVP_EncryptInit_ex(c, NULL, NULL, key, nonce) == 1 &&
              EVP_EncryptUpdate(c, NULL, &n, b, (int)MAGIC_LEN) == 1 &&
              EVP_EncryptUpdate(c, ct, &n, (const unsigned char *)plain, (int)len) == 1 &&
              EVP_EncryptFinal_ex(c, ct + n, &fin) == 1 &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    OPENSSL_cleanse(key, sizeof(key));
    if (!ok) {
        free(b);
        snprintf(err, errlen, "cannot encrypt the backup");
        return false;
    }
    *out = b;
    *outlen = total;
    return true;
}

char *pt_cpsync_backup_open(const char *token, const unsigned char *in, size_t len, size_t *outlen, char *err,
                            size_t errlen)
{
    if (len < MAGIC_LEN + NONCE_LEN + TAG_LEN ||
        len > PT_CPSYNC_BACKUP_MAX + MAGIC_LEN + NONCE_LEN + TAG_LEN ||
        memcmp(in, PT_CPSYNC_BACKUP_MAGIC, MAGIC_LEN)) {
        snprintf(err, errlen, "not a Portico configuration backup (corrupted)");
        return NULL;
    }
    unsigned char key[32];
    if (!backup_key(token, key, err, errlen))
        return NULL;
    const unsigned char *nonce = in + MAGIC_LEN, *ct = nonce + NONCE_LEN;
    size_t clen = len - MAGIC_LEN - NONCE_LEN - TAG_LEN;
    unsigned char tag[TAG_LEN];
    memcpy(tag, ct + clen, TAG_LEN);
    char *plain = malloc(clen + 1);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0;
    bool ok = plain && c && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
              EVP_DecryptInit_ex(c, NULL, NULL, key, nonce) == 1 &&
              EVP_DecryptUpdate(c, NULL, &n, in, (int)MAGIC_LEN) == 1 &&
              EVP_DecryptUpdate(c, (unsigned char *)plain, &n, ct, (int)clen) == 1 &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1 &&
              EVP_DecryptFinal_ex(c, (unsigned char *)plain + n, &fin) == 1;
    EVP_CIPHER_CTX_free(c);
    OPENSSL_cleanse(key, sizeof(key));
    if (!ok) {
        free(plain);
        snprintf(err, errlen, "corrupted, or written with another gateway token");
        return NULL;
    }
    plain[clen] = '\0';
    *outlen = clen;
    return plain;
}

/* fsync of the folder holding path, so that the rename itself is durable. */
static void sync_dir(const char *path)
{
    char *tmp = strdup(path);
    if (!tmp)
        return;
    int fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(tmp);
}

/* A new temporary file beside path, of this process's own: "<path>.<pid>.<random>.tmp", created
   exclusively and never through a symbolic link, so two nodes sharing a folder (or a link planted
   there) cannot mix or redirect what is written.  The descriptor, -1 (errno set) when none. */
static int open_temp(const char *path, char *tmp, size_t cap)
{
    for (int i = 0; i < 8; i++) { /* bounded: a name taken eight times in a row is not chance */
        uint32_t r = 0;
        if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
            r = (uint32_t)pt_clock_now_ms() ^ ((uint32_t)i << 24);
        if ((size_t)snprintf(tmp, cap, "%s.%ld.%08x.tmp", path, (long)getpid(), r) >= cap) {
            errno = ENAMETOOLONG;
            return -1;
        }
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    errno = EEXIST;
    return -1;
}

bool pt_cpsync_backup_write(const char *path, const char *token, const char *plain, size_t len, char *err,
                            size_t errlen)
{
    unsigned char *b;
    size_t blen;
    if (!pt_cpsync_backup_seal(token, plain, len, &b, &blen, err, errlen))
        return false;
    char *dtmp = strdup(path);
    if (!dtmp) {
        free(b);
        snprintf(err, errlen, "cannot write %s: out of memory", path);
        return false;
    }
    const char *dir = dirname(dtmp);
    if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        free(dtmp);
        free(b);
        return false;
    }
    free(dtmp);
    char tmp[4200];
    int fd = open_temp(path, tmp, sizeof(tmp));
    bool ok = fd >= 0 && fchmod(fd, 0600) == 0;
    for (size_t off = 0; ok && off < blen;) {
        ssize_t w = write(fd, b + off, blen - off);
        if (w < 0 && errno == EINTR)
            continue;
        ok = w > 0;
        off += ok ? (size_t)w : 0;
    }
    ok = ok && fsync(fd) == 0;
    int e = errno;
    if (fd >= 0)
        close(fd);
    free(b);
    if (ok && rename(tmp, path) < 0) {
        e = errno;
        ok = false;
    }
    if (!ok) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(e));
        if (fd >= 0)
            unlink(tmp); /* ours: the file was created exclusively */
        return false;
    }
    sync_dir(path);
    return true;
}

char *pt_cpsync_backup_read(const char *path, const char *token, size_t *len, char *err, size_t errlen)
{
    *err = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            snprintf(err, errlen, "configuration backup %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        (uint64_t)st.st_size > (uint64_t)PT_CPSYNC_BACKUP_MAX + MAGIC_LEN + NONCE_LEN + TAG_LEN) {
        snprintf(err, errlen, "configuration backup %s: not a regular file of a backup's size", path);
        close(fd);
        return NULL;
    }
    size_t n = (size_t)st.st_size, got = 0;
    unsigned char *b = malloc(n ? n : 1);
    if (!b) {
        snprintf(err, errlen, "configuration backup %s: out of memory", path);
        close(fd);
        return NULL;
    }
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    char why[256];
    char *plain = got == n ? pt_cpsync_backup_open(token, b, n, len, why, sizeof(why)) : NULL;
    if (got != n)
        snprintf(why, sizeof(why), "cannot read it whole");
    free(b);
    if (!plain)
        snprintf(err, errlen, "configuration backup %s: %s; not used", path, why);
    return plain;
}

/* A document as the control plane sends it: {gateway, generation, entities}.  NULL with err. */
static json_t *parse_doc(const char *text, size_t len, const char *gateway, uint64_t *generation, char *err,
                         size_t errlen)
{
    json_error_t je;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        snprintf(err, errlen, "not JSON (%s, line %d)", je.text, je.line);
        return NULL;
    }
    json_t *g = json_object_get(doc, "gateway"), *gen = json_object_get(doc, "generation");
    if (!json_is_string(g) || !json_is_integer(gen) || json_integer_value(gen) < 0 ||
        !json_is_object(json_object_get(doc, "entities"))) {
        snprintf(err, errlen, "not a configuration document ({gateway, generation, entities})");
        json_decref(doc);
        return NULL;
    }
    if (json_integer_value(gen) == 0) {
        snprintf(err, errlen, "generation 0 (a document's generation is above 0)");
        json_decref(doc);
        return NULL;
    }
    if (strcmp(json_string_value(g), gateway)) {
        snprintf(err, errlen, "a document of gateway '%s', not of this node's '%s'", json_string_value(g),
                 gateway);
        json_decref(doc);
        return NULL;
    }
    *generation = (uint64_t)json_integer_value(gen);
    return doc;
}

json_t *pt_cpsync_backup_load(const struct pt_cp_cf *cp, char *err, size_t errlen)
{
    *err = '\0';
    if (!cp->on || !cp->backup || !*cp->backup)
        return NULL;
    char why[512];
    char *token = pt_cpsync_token(cp, why, sizeof(why));
    if (!token) {
        snprintf(err, errlen, "configuration backup %s: %s; not used", cp->backup, why);
        return NULL;
    }
    char id[96];
    int64_t exp;
    const char *sig;
    size_t len;
    char *text = pt_conf_cp_token_parse(token, id, sizeof(id), &exp, &sig)
                     ? pt_cpsync_backup_read(cp->backup, token, &len, err, errlen)
                     : NULL;
    if (!text && !*err && access(cp->backup, F_OK) == 0)
        snprintf(err, errlen, "configuration backup %s: the token is not a gateway token; not used",
                 cp->backup);
    free(token);
    if (!text)
        return NULL;
    uint64_t gen;
    json_t *doc = parse_doc(text, len, id, &gen, why, sizeof(why));
    free(text);
    if (!doc)
        snprintf(err, errlen, "configuration backup %s: %s; not used", cp->backup, why);
    return doc;
}

/* ------------------------------------------------------------ settings */

struct settings {
    struct pt_cp_cf cp; /* strings malloc'd */
    char *listen;       /* JSON list of the listeners' addresses */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct settings cur; /* under mu */
static bool stopping;       /* under mu */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void settings_free(struct settings *s)
{
    free(s->cp.url);
    free(s->cp.token);
    free(s->cp.token_file);
    free(s->cp.backup);
    free(s->cp.ca_file);
    free(s->cp.node_id);
    free(s->listen);
    memset(s, 0, sizeof(*s));
}

static void settings_copy(struct settings *dst, const struct settings *src)
{
    dst->cp = src->cp;
    dst->cp.url = dup_or_null(src->cp.url);
    dst->cp.token = dup_or_null(src->cp.token);
    dst->cp.token_file = dup_or_null(src->cp.token_file);
    dst->cp.backup = dup_or_null(src->cp.backup);
    dst->cp.ca_file = dup_or_null(src->cp.ca_file);
    dst->cp.node_id = dup_or_null(src->cp.node_id);
    dst->cp.node = NULL;
    dst->listen = dup_or_null(src->listen);
}

static void settings_from(struct settings *s, const struct pt_conf *cf)
{
    struct settings tmp = {.cp = cf->cp};
    json_t *l = json_array();
    for (int i = 0; i < cf->nlisten; i++)
        json_array_append_new(l, json_string(cf->listen[i].address));
    tmp.listen = json_dumps(l, JSON_COMPACT);
    json_decref(l);
    settings_copy(s, &tmp);
    free(tmp.listen);
}

/* A snapshot of the settings, for one attempt. */
static void settings_get(struct settings *out)
{
    pthread_mutex_lock(&mu);
    settings_copy(out, &cur);
    pthread_mutex_unlock(&mu);
}

/* ---------------------------------------------------------------- state */

/* ST_BADDOC: it answers 200 with a document the node cannot use (not JSON, another gateway's,
   generation 0, the generation it already named): backed off like ST_DOWN. */
enum cp_state { ST_START, ST_CONNECTED, ST_DOWN, ST_REFUSED, ST_EXPIRED, ST_BADDOC };

static _Atomic int state = ST_START;
static _Atomic uint64_t served_gen;    /* the generation serving (0: none) */
static _Atomic uint64_t sync_failures; /* attempts that failed */
static _Atomic int64_t last_sync_ms;   /* wall clock of the last answer (200 or 304) */
static _Atomic int64_t token_expiry_s; /* the token's own expiry (0: unknown) */
static uint64_t last_down_log;         /* sync thread's */
static char last_bad_why[256];         /* sync thread's: the unusable document last logged */
static char *sealed_token;             /* sync thread's: the token the backup was last sealed with */
static char config_error[1200];        /* under mu: why the last document was not applied, or "" */
static const struct pt_cpsync_hooks *hooks;
static int cancel_pipe[2] = {-1, -1}; /* readable: stop */
static int wake_pipe[2] = {-1, -1};   /* a document waits for the control thread */
static struct event *wake_ev;
static pthread_t sync_thread, hb_thread;
static bool threads_started;

/* The hand-over: one document at a time, under mu. */
static json_t *handed;   /* the document's entities, for the control thread */
static bool handed_done; /* the control thread applied it (or failed) */
static bool handed_ok;
static char handed_err[1024];

/* Asks both threads to stop: the flag under the lock, the condition for those waiting on it, a byte
   on the cancel pipe for those in poll(). */
static void signal_stop(void)
{
    pthread_mutex_lock(&mu);
    stopping = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    char one = 1;
    if (write(cancel_pipe[1], &one, 1) < 0) {
        /* the pipe is empty: a failure would be a closed descriptor, and then nothing waits */
    }
}

/* Sleeps ms, or less when stop is asked; false when it is. */
static bool nap(uint64_t ms)
{
    struct pollfd p = {.fd = cancel_pipe[0], .events = POLLIN};
    uint64_t end = pt_clock_now_ms() + ms;
    for (int i = 0; i < 1000; i++) { /* bounded: EINTR a thousand times is not a nap any more */
        uint64_t now = pt_clock_now_ms();
        if (now >= end)
            return true;
        int r = poll(&p, 1, (int)(end - now > 60000 ? 60000 : end - now));
        if (r > 0)
            return false;
        if (r < 0 && errno != EINTR)
            return true;
    }
    return true;
}

/* One log line per change of state, and one a minute while not connected. */
static void set_state(int s, const char *url, const char *why)
{
    int old = atomic_exchange(&state, s);
    uint64_t now = pt_clock_now_ms();
    if (s == ST_CONNECTED) {
        if (old != ST_CONNECTED)
            pt_info("control plane %s: connected (serving generation %llu)", url,
                    (unsigned long long)atomic_load(&served_gen));
        return;
    }
    /* an unusable document: each new reason once (they say different things), else as the others */
    bool new_why = s == ST_BADDOC && strncmp(last_bad_why, why, sizeof(last_bad_why) - 1);
    if (old == s && !new_why && now - last_down_log < DOWN_LOG_MS)
        return;
    last_down_log = now;
    if (s == ST_BADDOC) {
        snprintf(last_bad_why, sizeof(last_bad_why), "%s", why);
        pt_err("control plane %s: the configuration it sent is refused: %s; the node keeps serving "
               "generation %llu and tries again with backoff",
               url, why, (unsigned long long)atomic_load(&served_gen));
    } else if (s == ST_EXPIRED)
        pt_err("control plane %s: %s; the node keeps serving generation %llu and tries again once a minute",
               url, why, (unsigned long long)atomic_load(&served_gen));
    else
        pt_warn("control plane %s: %s%s (%s); the node keeps serving generation %llu and tries again with "
                "backoff",
                url, s == ST_DOWN ? "unreachable or failing" : "refuses the node", old == s ? ", still" : "",
                why, (unsigned long long)atomic_load(&served_gen));
}

static uint64_t jitter_seed;

/* delay, less up to a quarter at random: nodes that lost the control plane together do not all come
   back at the same instant. */
static uint64_t with_jitter(uint64_t ms)
{
    jitter_seed ^= jitter_seed << 13;
    jitter_seed ^= jitter_seed >> 7;
    jitter_seed ^= jitter_seed << 17;
    return ms - (jitter_seed % (ms / 4 + 1));
}

/* Checks the token's own expiry: the gauge, the warning once a day under WARN_DAYS, and whether it
   has passed. */
static bool token_expired(int64_t exp)
{
    static int64_t last_warn_s;
    atomic_store(&token_expiry_s, exp);
    int64_t now = (int64_t)(pt_clock_wall_ms() / 1000), left = exp - now;
    if (left <= 0)
        return true;
    if (left < WARN_DAYS * 86400 && now - last_warn_s >= 86400) {
        last_warn_s = now;
        pt_warn("the gateway token expires in %lld h %lld min: generate a new one (generateToken) before it "
                "does; an expired token stops the syncing",
                (long long)(left / 3600), (long long)(left % 3600 / 60));
    }
    return false;
}

/* The error's message in a control plane's JSON answer ({"error": {"code", "message"}}). */
static void answer_error(const struct pt_fetch_result *r, char *code, size_t clen, char *msg, size_t mlen)
{
    *code = *msg = '\0';
    json_t *j = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
    json_t *e = json_object_get(j, "error");
    const char *c = json_string_value(json_object_get(e, "code")),
               *m = json_string_value(json_object_get(e, "message"));
    if (c)
        snprintf(code, clen, "%s", c);
    if (m)
        snprintf(msg, mlen, "%s", m);
    json_decref(j);
}

/* "a b" -> "a%20b": the node id in the query. */
static void query_escape(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    for (; *in && k + 4 < cap; in++) {
        unsigned char c = (unsigned char)*in;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-._~:", c))
            out[k++] = (char)c;
        else {
            out[k++] = '%';
            out[k++] = hex[c >> 4];
            out[k++] = hex[c & 15];
        }
    }
    out[k] = '\0';
}

/* Hands the document to the control thread and waits for the result; false when stopping. */
static bool hand_over(json_t *entities, bool *ok, char *err, size_t errlen)
{
    pthread_mutex_lock(&mu);
    handed = json_incref(entities);
    handed_done = false;
    pthread_mutex_unlock(&mu);
    char one = 1;
    if (write(wake_pipe[1], &one, 1) < 0) {
        /* the pipe is never full with one document at a time; a failure here is a bug */
    }
    pthread_mutex_lock(&mu);
    while (!handed_done && !stopping)
        pthread_cond_wait(&cv, &mu);
    bool done = handed_done;
    *ok = handed_ok;
    snprintf(err, errlen, "%s", handed_err);
    if (!done) {
        json_decref(handed);
        handed = NULL;
    }
    pthread_mutex_unlock(&mu);
    return done;
}

/* On the control thread: applies the document waiting, if any. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)what, (void)arg;
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    pthread_mutex_lock(&mu);
    json_t *ents = handed;
    handed = NULL;
    pthread_mutex_unlock(&mu);
    if (!ents)
        return;
    char err[1024] = "";
    bool ok = hooks->apply(ents, err, sizeof(err));
    json_decref(ents);
    pthread_mutex_lock(&mu);
    handed_ok = ok;
    snprintf(handed_err, sizeof(handed_err), "%s", err);
    handed_done = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

/* A 200's document, checked: NULL with why when the node cannot use it (a failure, backed off).  The
   generation it named in If-None-Match answered with 200 is one too: the control plane would answer
   so again at once, and the node would ask again at once. */
static json_t *usable_document(const struct pt_fetch_result *r, const char *gateway, uint64_t known,
                               uint64_t *gen, char *why, size_t whylen)
{
    json_t *doc = parse_doc(r->body, r->len, gateway, gen, why, whylen);
    if (doc && known && *gen == known) {
        snprintf(why, whylen, "answered 200 with generation %llu, the one the node already has",
                 (unsigned long long)known);
        json_decref(doc);
        return NULL;
    }
    return doc;
}

/* Remembers the token the backup is sealed with now (NULL: none, or unknown). */
static void set_sealed(const char *token)
{
    free(sealed_token);
    sealed_token = token ? strdup(token) : NULL;
}

/* A usable 200: the document applied, then saved.  Takes doc. */
static void got_document(const struct settings *s, const char *token, const struct pt_fetch_result *r,
                         json_t *doc, uint64_t gen, uint64_t *known)
{
    char err[1024];
    *known = gen;
    if (gen == atomic_load(&served_gen)) {
        json_decref(doc);
        return;
    }
    bool ok = false;
    if (!hand_over(json_object_get(doc, "entities"), &ok, err, sizeof(err))) {
        json_decref(doc);
        return;
    }
    json_decref(doc);
    if (!ok) {
        pthread_mutex_lock(&mu);
        snprintf(config_error, sizeof(config_error), "generation %llu: %.1024s", (unsigned long long)gen,
                 err);
        pthread_mutex_unlock(&mu);
        pt_err("control plane %s: generation %llu cannot be applied (generation %llu keeps serving): %s",
               s->cp.url, (unsigned long long)gen, (unsigned long long)atomic_load(&served_gen), err);
        return;
    }
    atomic_store(&served_gen, gen);
    pthread_mutex_lock(&mu);
    config_error[0] = '\0';
    pthread_mutex_unlock(&mu);
    pt_info("control plane %s: generation %llu applied", s->cp.url, (unsigned long long)gen);
    if (!s->cp.backup || !*s->cp.backup)
        return;
    if (pt_cpsync_backup_write(s->cp.backup, token, r->body, r->len, err, sizeof(err)))
        set_sealed(token);
    else
        pt_err("configuration backup: %s (the node serves generation %llu; a restart while the control "
               "plane is down would start from an older backup, or none)",
               err, (unsigned long long)gen);
}

/* The control plane answered (200 or 304) to a token other than the one the backup is sealed with (a
   rotated tokenFile): the backup is sealed again with the new one, so that a restart with the new
   token while the control plane is down can read it.  It is read with the old token's key and
   written with the new one's; when that fails, the next applied document writes it afresh. */
static void reseal_backup(const struct settings *s, const char *token)
{
    if (!sealed_token || !strcmp(sealed_token, token) || !s->cp.backup || !*s->cp.backup)
        return;
    char err[1024];
    size_t len;
    char *plain = pt_cpsync_backup_read(s->cp.backup, sealed_token, &len, err, sizeof(err));
    bool ok = plain && pt_cpsync_backup_write(s->cp.backup, token, plain, len, err, sizeof(err));
    if (plain)
        OPENSSL_cleanse(plain, len);
    free(plain);
    if (ok) {
        pt_info("configuration backup %s: sealed again with the new gateway token", s->cp.backup);
        set_sealed(token);
        return;
    }
    pt_err("configuration backup %s: cannot seal it again with the new gateway token (%s); the next "
           "configuration change writes it afresh",
           s->cp.backup, *err ? err : "it is gone");
    set_sealed(NULL); /* not tried at every poll */
}

/* A gzip body (the node asks for one: a large document is much smaller so) inflated in place, at most
   DOC_MAX bytes.  The fetch result carries no headers, but a JSON document never starts with gzip's
   magic bytes, so those say it.  false with err when the body is gzip and broken or too large. */
static bool gunzip_body(struct pt_fetch_result *r, char *err, size_t errlen)
{
    if (r->len < 2 || (unsigned char)r->body[0] != 0x1f || (unsigned char)r->body[1] != 0x8b)
        return true;
    z_stream z = {0};
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
        snprintf(err, errlen, "cannot inflate the gzip body");
        return false;
    }
    size_t cap = r->len > (DOC_MAX - 4096) / 4 ? DOC_MAX : r->len * 4 + 4096, len = 0;
    char *out = malloc(cap + 1);
    z.next_in = (unsigned char *)r->body;
    z.avail_in = (uInt)r->len;
    int rc = Z_OK;
    while (out && rc == Z_OK) {
        if (len == cap) {
            if (cap >= DOC_MAX)
                break;
            cap = cap * 2 > DOC_MAX ? DOC_MAX : cap * 2;
            char *bigger = realloc(out, cap + 1);
            if (!bigger)
                break;
            out = bigger;
        }
        z.next_out = (unsigned char *)out + len;
        z.avail_out = (uInt)(cap - len);
        rc = inflate(&z, Z_NO_FLUSH);
        len = cap - z.avail_out;
        if (rc == Z_BUF_ERROR && z.avail_out) /* no progress with room left: the input ended early */
            break;
        if (rc == Z_BUF_ERROR)
            rc = Z_OK;
    }
    inflateEnd(&z);
    if (rc != Z_STREAM_END || !out) {
        free(out);
        snprintf(err, errlen, "%s",
                 len >= DOC_MAX ? "the gzip document inflates past 256 MiB" : "a broken gzip body");
        return false;
    }
    out[len] = '\0';
    free(r->body);
    r->body = out;
    r->len = len;
    return true;
}

/* The wait after one more failure in a row: 1 s doubling to 30 s, with jitter. */
static uint64_t backoff(int *failures)
{
    uint64_t d = (uint64_t)BACKOFF_MIN_MS << (*failures < 5 ? *failures : 5);
    (*failures)++;
    return with_jitter(d > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d);
}

/* One long-poll.  Returns how long to wait before the next one (0: at once). */
static uint64_t sync_once(uint64_t *known, int *failures)
{
    struct settings s;
    settings_get(&s);
    char err[1024], id[96];
    int64_t exp;
    const char *sig;
    uint64_t wait = 0;
    char *token = pt_cpsync_token(&s.cp, err, sizeof(err));
    if (!token || !pt_conf_cp_token_parse(token, id, sizeof(id), &exp, &sig)) {
        atomic_fetch_add(&sync_failures, 1);
        set_state(ST_REFUSED, s.cp.url,
                  token ? "the token is not of the form GatewayKey <id>&<expiry>&<sig>" : err);
        free(token);
        settings_free(&s);
        return EXPIRED_RETRY_MS;
    }
    if (token_expired(exp)) {
        set_state(ST_EXPIRED, s.cp.url, "the gateway token has expired (its own expiry)");
        free(token);
        settings_free(&s);
        return EXPIRED_RETRY_MS;
    }
    char url[2400], node[600], hdr[128] = "";
    query_escape(s.cp.node_id ? s.cp.node_id : "", node, sizeof(node));
    snprintf(url, sizeof(url), "%s/management/gateways/%s/configuration?wait=%lld&node=%s", s.cp.url, id,
             (long long)s.cp.poll_wait, node);
    if (*known)
        snprintf(hdr, sizeof(hdr), "If-None-Match: \"%llu\"\r\n", (unsigned long long)*known);
    struct pt_fetch_opts o = {
        .timeout_ms = (uint32_t)(s.cp.poll_wait + 15) * 1000,
        .max_body = DOC_MAX,
        .cancel_fd = cancel_pipe[0],
        .authorization = token,
        .ca_file = s.cp.ca_file,
        .headers = *hdr ? hdr : NULL,
        .accept_encoding = "gzip", /* inflated by gunzip_body */
    };
    struct pt_fetch_result r = {0};
    int rc = pt_fetch_get(url, &o, &r, err, sizeof(err));
    if (rc == PT_FETCH_CANCELLED) {
        free(token);
        settings_free(&s);
        return 0;
    }
    char code[64], msg[512], why[1200];
    json_t *doc = NULL;
    uint64_t gen = 0;
    if (rc == PT_FETCH_OK && r.status == 200 &&
        (!gunzip_body(&r, err, sizeof(err)) ||
         !(doc = usable_document(&r, id, *known, &gen, err, sizeof(err))))) {
        /* an answer the node cannot use: a failure like an unreachable control plane's, backed off (at
           once again, it would get the same answer at once) */
        atomic_fetch_add(&sync_failures, 1);
        set_state(ST_BADDOC, s.cp.url, err);
        wait = backoff(failures);
    } else if (rc == PT_FETCH_OK && (r.status == 200 || r.status == 304)) {
        atomic_store(&last_sync_ms, (int64_t)pt_clock_wall_ms());
        *failures = 0;
        set_state(ST_CONNECTED, s.cp.url, NULL); /* it answered: connected, whatever applying gives */
        if (doc)
            got_document(&s, token, &r, doc, gen, known);
        reseal_backup(&s, token); /* it took this token: the backup must open with it */
    } else {
        atomic_fetch_add(&sync_failures, 1);
        int st = ST_DOWN;
        if (rc != PT_FETCH_OK)
            snprintf(why, sizeof(why), "%s", err);
        else {
            answer_error(&r, code, sizeof(code), msg, sizeof(msg));
            snprintf(why, sizeof(why), "answered %d%s%s%s%s", r.status, *code ? " " : "", code,
                     *msg ? ": " : "", msg);
            if (r.status == 401)
                st = !strcmp(code, "TokenExpired") ? ST_EXPIRED : ST_REFUSED;
            else if (r.status == 403 || r.status == 404)
                st = ST_REFUSED;
        }
        set_state(st, s.cp.url, why);
        if (st == ST_EXPIRED)
            wait = EXPIRED_RETRY_MS;
        else
            wait = backoff(failures);
    }
    free(r.body);
    free(token);
    settings_free(&s);
    return wait;
}

static void *sync_main(void *arg)
{
    uint64_t known = (uint64_t)(uintptr_t)arg;
    int failures = 0;
    for (;;) {
        pthread_mutex_lock(&mu);
        bool stop = stopping;
        pthread_mutex_unlock(&mu);
        if (stop)
            break;
        uint64_t wait = sync_once(&known, &failures);
        if (wait && !nap(wait))
            break;
    }
    return NULL;
}

/* ------------------------------------------------------------ heartbeat */

static void heartbeat_once(void)
{
    struct settings s;
    settings_get(&s);
    char err[1024], id[96];
    int64_t exp;
    const char *sig;
    char *token = pt_cpsync_token(&s.cp, err, sizeof(err));
    if (!token || !pt_conf_cp_token_parse(token, id, sizeof(id), &exp, &sig) ||
        atomic_load(&state) == ST_EXPIRED || exp <= (int64_t)(pt_clock_wall_ms() / 1000)) {
        free(token); /* the sync thread says why, once */
        settings_free(&s);
        return;
    }
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    json_t *b = json_object();
    json_object_set_new(b, "nodeId", json_string(s.cp.node_id ? s.cp.node_id : ""));
    json_object_set_new(b, "version", json_string(PACKAGE_VERSION));
    json_object_set_new(b, "generation", json_integer((json_int_t)atomic_load(&served_gen)));
    json_object_set_new(b, "hostname", json_string(host));
    json_t *l = s.listen ? json_loads(s.listen, 0, NULL) : NULL;
    json_object_set_new(b, "listen", l ? l : json_array());
    json_object_set_new(b, "heartbeat",
                        json_integer((json_int_t)s.cp.heartbeat)); /* the CP's "disconnected" */
    pthread_mutex_lock(&mu);
    json_object_set_new(b, "configError", config_error[0] ? json_string(config_error) : json_null());
    pthread_mutex_unlock(&mu);
    json_t *batch = hooks->analytics_take ? hooks->analytics_take() : NULL;
    if (batch)
        json_object_set(b, "analytics", batch);
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    char url[2400];
    snprintf(url, sizeof(url), "%s/management/gateways/%s/heartbeat", s.cp.url, id);
    struct pt_fetch_opts o = {
        .timeout_ms = 10000,
        .max_body = 64 * 1024,
        .cancel_fd = cancel_pipe[0],
        .method = "POST",
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .content_type = "application/json",
        .authorization = token,
        .ca_file = s.cp.ca_file,
    };
    struct pt_fetch_result r = {0};
    int rc = pt_fetch_get(url, &o, &r, err, sizeof(err));
    bool delivered = rc == PT_FETCH_OK && r.status == 200;
    if (!delivered && rc != PT_FETCH_CANCELLED)
        pt_debug("control plane %s: heartbeat not delivered: %s%d", s.cp.url,
                 rc == PT_FETCH_OK ? "status " : err, rc == PT_FETCH_OK ? r.status : 0);
    if (batch) {
        /* delivered, or refused as such (400: it would be refused again): dropped; else sent again */
        if (delivered || (rc == PT_FETCH_OK && r.status == 400)) {
            if (!delivered)
                pt_warn("control plane %s: analytics batch refused (%.200s); dropped", s.cp.url,
                        r.body ? r.body : "");
            json_decref(batch);
        } else if (hooks->analytics_putback)
            hooks->analytics_putback(batch);
        else
            json_decref(batch);
    }
    free(body);
    free(r.body);
    free(token);
    settings_free(&s);
}

static void *hb_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        uint64_t every = (uint64_t)cur.cp.heartbeat * 1000;
        bool stop = stopping;
        pthread_mutex_unlock(&mu);
        if (stop || !nap(every ? every : 5000))
            break;
        heartbeat_once();
    }
    return NULL;
}

/* -------------------------------------------------------------- metrics */

static void collect(struct pt_metrics_sink *s, void *arg)
{
    (void)arg;
    pt_metrics_sink_value(s, "portico_control_plane_connected",
                          "1 while the control plane answers the node's long-polls, else 0.",
                          PT_METRICS_GAUGE, atomic_load(&state) == ST_CONNECTED ? 1 : 0);
    pt_metrics_sink_value(s, "portico_control_plane_sync_failures_total",
                          "Long-polls to the control plane that failed (unreachable, 5xx, refused token, "
                          "a document that could not be read).",
                          PT_METRICS_COUNTER, (double)atomic_load(&sync_failures));
    pt_metrics_sink_value(s, "portico_control_plane_generation",
                          "The control plane's configuration generation the node serves (0: none yet).",
                          PT_METRICS_GAUGE, (double)atomic_load(&served_gen));
    pt_metrics_sink_value(s, "portico_control_plane_last_sync_timestamp_seconds",
                          "When the control plane last answered a long-poll (Unix seconds; 0: never).",
                          PT_METRICS_GAUGE, (double)(atomic_load(&last_sync_ms) / 1000));
    int64_t exp = atomic_load(&token_expiry_s);
    if (exp) {
        int64_t left = exp - (int64_t)(pt_clock_wall_ms() / 1000);
        pt_metrics_sink_value(s, "portico_gateway_token_expiry_seconds",
                              "Seconds until the gateway token expires (0: expired).", PT_METRICS_GAUGE,
                              (double)(left > 0 ? left : 0));
    }
}

/* ------------------------------------------------------------ lifecycle */

/* Is url plain http to a host other than this machine's loopback?  Then the token (a bearer secret
   for up to 30 days) crosses the network in clear. */
static bool clear_text_remote(const char *url)
{
    if (strncasecmp(url, "http://", 7))
        return false;
    const char *h = url + 7, *end;
    char host[256];
    if (*h == '[') { /* [v6]:port */
        end = strchr(h, ']');
        h++;
    } else {
        end = h + strcspn(h, ":/?#");
    }
    if (!end || (size_t)(end - h) >= sizeof(host))
        return true;
    memcpy(host, h, (size_t)(end - h));
    host[end - h] = '\0';
    return strcasecmp(host, "localhost") && strncmp(host, "127.", 4) && strcmp(host, "::1");
}

bool pt_cpsync_start(struct event_base *ctl, const struct pt_conf *cf, const struct pt_cpsync_hooks *h,
                     uint64_t generation)
{
    hooks = h;
    jitter_seed = (pt_clock_wall_ms() ^ ((uint64_t)getpid() << 32)) | 1;
    pthread_mutex_lock(&mu);
    settings_free(&cur);
    settings_from(&cur, cf);
    stopping = false;
    pthread_mutex_unlock(&mu);
    atomic_store(&served_gen, generation);
    if (clear_text_remote(cf->cp.url))
        pt_warn("control plane %s: plain http to another machine: the gateway token is sent in clear text "
                "(use https)",
                cf->cp.url);
    char err[512], id[96];
    int64_t exp;
    const char *sig;
    char *token = pt_cpsync_token(&cf->cp, err, sizeof(err));
    if (token && pt_conf_cp_token_parse(token, id, sizeof(id), &exp, &sig))
        atomic_store(&token_expiry_s, exp);
    set_sealed(generation ? token : NULL); /* the backup served was read with it */
    free(token);
    if (pipe2(cancel_pipe, O_CLOEXEC) < 0 || pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        pt_err("control plane: cannot make a pipe: %s", strerror(errno));
        return false;
    }
    wake_ev = event_new(ctl, wake_pipe[0], EV_READ | EV_PERSIST, on_wake, NULL);
    if (!wake_ev || event_add(wake_ev, NULL) < 0) {
        pt_err("control plane: cannot watch the hand-over pipe");
        return false;
    }
    pt_metrics_collector(collect, NULL);
    if (pthread_create(&sync_thread, NULL, sync_main, (void *)(uintptr_t)generation) != 0) {
        pt_err("control plane: cannot start the sync thread");
        return false;
    }
    if (pthread_create(&hb_thread, NULL, hb_main, NULL) != 0) {
        pt_err("control plane: cannot start the heartbeat thread");
        signal_stop();
        pthread_join(sync_thread, NULL);
        return false;
    }
    threads_started = true;
    pt_info("gateway node %s: syncing with the control plane at %s (generation %llu served)",
            cf->cp.node_id ? cf->cp.node_id : "", cf->cp.url, (unsigned long long)generation);
    return true;
}

void pt_cpsync_configure(const struct pt_conf *cf)
{
    pthread_mutex_lock(&mu);
    settings_free(&cur);
    settings_from(&cur, cf);
    pthread_mutex_unlock(&mu);
}

void pt_cpsync_stop(void)
{
    if (threads_started) {
        signal_stop();
        pthread_join(sync_thread, NULL);
        pthread_join(hb_thread, NULL);
        threads_started = false;
    }
    if (wake_ev)
        event_free(wake_ev);
    wake_ev = NULL;
    for (int i = 0; i < 2; i++) {
        if (cancel_pipe[i] >= 0)
            close(cancel_pipe[i]);
        if (wake_pipe[i] >= 0)
            close(wake_pipe[i]);
        cancel_pipe[i] = wake_pipe[i] = -1;
    }
    json_decref(handed);
    handed = NULL;
    set_sealed(NULL);
    pthread_mutex_lock(&mu);
    settings_free(&cur);
    pthread_mutex_unlock(&mu);
}
