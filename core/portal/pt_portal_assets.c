/*
 * pt_portal_assets -- the portal's static files (/assets/...): the shipped
 * ones (the source tree's portal/ folder when the binary runs from its build
 * tree, else $datadir/portico/portal) and the provider's themeDir, whose
 * files replace shipped ones of the same name.
 *
 * Files are read into memory once, with a content hash and a gzip copy:
 * links use hashed names (/assets/portal.3f2a1b9c04.css) that are cached for
 * a year as immutable; the plain name is served too, revalidated with its
 * ETag.  .html files are templates the pages use (footer.html, banner.html),
 * never served.  The folders are looked at again at most once a second, so a
 * provider's edit shows without a restart or a rebuild.
 */
#include "base/pt_log.h"
#include "base/pt_paths.h"
#include "portal/pt_portal_int.h"

#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zlib.h>

#define MAX_ASSETS 128
#define MAX_ASSET_SIZE (4 * 1024 * 1024)

struct asset {
    bool template;    /* an .html template: used by the pages, never served */
    char name[96];    /* "portal.css" */
    char url[160];    /* "/assets/portal.3f2a1b9c04.css" */
    char hash[16];    /* 10 hex digits of the SHA-256 */
    const char *type; /* Content-Type */
    char *data, *gz;  /* bytes; gzip copy (NULL when it would not be smaller) */
    size_t len, gzlen;
};

static struct asset assets[MAX_ASSETS];
static int nassets;
static char *theme_dir;
static time_t checked;       /* when the folders were last looked at */
static uint64_t fingerprint; /* of the folders' names, sizes and times */

static const char *type_of(const char *name)
{
    static const char *const types[][2] = {
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".jpeg", "image/jpeg"},
        {".gif", "image/gif"},
        {".webp", "image/webp"},
        {".ico", "image/x-icon"},
        {".woff2", "font/woff2"},
        {".woff", "font/woff"},
        {".txt", "text/plain; charset=utf-8"},
        {".json", "application/json"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < PT_ARRAY_LEN(types); i++)
        if (!strcmp(dot, types[i][0]))
            return types[i][1];
    return NULL; /* not served: templates, READMEs, editor backups */
}

static bool compressible(const char *type)
{
    return !strncmp(type, "text/", 5) || strstr(type, "svg") || strstr(type, "json");
}

static char *gzip_of(const char *data, size_t len, size_t *out_len)
{
    z_stream z = {0};
    if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    size_t cap = deflateBound(&z, len);
    char *out = malloc(cap);
    if (!out) {
        deflateEnd(&z);
        return NULL;
    }
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    *out_len = z.total_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END || *out_len >= len) {
        free(out);
        return NULL;
    }
    return out;
}

static void clear(void)
{
    for (int i = 0; i < nassets; i++) {
        free(assets[i].data);
        free(assets[i].gz);
    }
    memset(assets, 0, sizeof(assets));
    nassets = 0;
}

static struct asset *find(const char *name)
{
    for (int i = 0; i < nassets; i++)
        if (!strcmp(assets[i].name, name))
            return &assets[i];
    return NULL;
}

/* A name we serve: letters, digits, '-', '_' and dots, not starting with a dot. */
static bool name_ok(const char *n)
{
    if (!*n || *n == '.' || strlen(n) >= sizeof(assets[0].name))
        return false;
    for (const char *p = n; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", *p))
            return false;
    return true;
}

static bool is_template(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && !strcmp(dot, ".html");
}

static bool load_file(const char *dir, const char *name)
{
    const char *type = is_template(name) ? "text/html; charset=utf-8" : type_of(name);
    if (!type || !name_ok(name))
        return true;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return true;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_ASSET_SIZE) {
        if (S_ISREG(st.st_mode))
            pt_warn("portal: %s is larger than %d bytes: not served", path, MAX_ASSET_SIZE);
        fclose(f);
        return true;
    }
    struct asset *a = find(name);
    if (!a) {
        if (nassets == MAX_ASSETS) {
            pt_warn("portal: more than %d assets: %s is not served", MAX_ASSETS, path);
            fclose(f);
            return true;
        }
        a = &assets[nassets++];
    } else {
        free(a->data);
        free(a->gz);
    }
    memset(a, 0, sizeof(*a));
    snprintf(a->name, sizeof(a->name), "%s", name);
    a->type = type;
    a->template = is_template(name);
    a->len = (size_t)st.st_size;
    a->data = malloc(a->len + 1);
    if (!a->data || fread(a->data, 1, a->len, f) != a->len) {
        fclose(f);
        return false;
    }
    fclose(f);
    unsigned char md[32];
    unsigned int mdl = 0;
    EVP_Digest(a->data, a->len, md, &mdl, EVP_sha256(), NULL);
    for (int i = 0; i < 5; i++)
        snprintf(a->hash + 2 * i, 3, "%02x", md[i]);
    const char *dot = strrchr(name, '.');
    snprintf(a->url, sizeof(a->url), "/assets/%.*s.%s%s", (int)(dot - name), name, a->hash, dot);
    a->data[a->len] = '\0'; /* templates are read as text */
    if (!a->template && compressible(type))
        a->gz = gzip_of(a->data, a->len, &a->gzlen);
    return true;
}

/* Names, sizes and times of a folder's files, folded into h. */
static uint64_t fold_dir(uint64_t h, const char *dir)
{
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d)
        return h;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) && n++ < 4 * MAX_ASSETS) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (e->d_name[0] == '.' || stat(path, &st) != 0)
            continue;
        for (const char *p = e->d_name; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        h = (h ^ (uint64_t)st.st_size) * 1099511628211ULL;
        h = (h ^ (uint64_t)st.st_mtim.tv_sec) * 1099511628211ULL;
        h = (h ^ (uint64_t)st.st_mtim.tv_nsec) * 1099511628211ULL;
    }
    closedir(d);
    return h;
}

static bool load_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    struct dirent *e;
    int n = 0;
    bool ok = true;
    while (ok && (e = readdir(d)) && n++ < 4 * MAX_ASSETS)
        ok = load_file(dir, e->d_name);
    closedir(d);
    return ok;
}

static bool load_all(char *err, size_t errlen)
{
    clear();
    const char *shipped = pt_paths_portal();
    /* taken before reading: a file that changes while it is read (a provider's editor writing it) differs
       from this at the next look, and is read again */
    fingerprint = fold_dir(fold_dir(1469598103934665603ULL, shipped), theme_dir);
    if (!load_dir(shipped)) {
        snprintf(err, errlen, "cannot read the portal's assets in %s: %s", shipped, strerror(errno));
        return false;
    }
    if (!find("portal.css")) {
        snprintf(err, errlen, "the portal's assets in %s lack portal.css", shipped);
        return false;
    }
    if (theme_dir && !load_dir(theme_dir))
        pt_warn("portal: themeDir %s cannot be read (%s): the shipped look is used", theme_dir,
                strerror(errno));
    checked = time(NULL);
    return true;
}

/* Reloads when a file of the folders changed (looked at once a second at most). */
static void refresh(void)
{
    time_t now = time(NULL);
    if (now == checked)
        return;
    checked = now;
    uint64_t fp = fold_dir(fold_dir(1469598103934665603ULL, pt_paths_portal()), theme_dir);
    if (fp == fingerprint)
        return;
    char err[256];
    if (!load_all(err, sizeof(err)))
        pt_warn("portal: %s", err);
    else
        pt_info("portal: assets reloaded (a file changed)");
}

bool pt_portal_assets_init(const char *dir, char *err, size_t errlen)
{
    free(theme_dir);
    theme_dir = dir ? strdup(dir) : NULL;
    return load_all(err, errlen);
}

void pt_portal_assets_free(void)
{
    clear();
    free(theme_dir);
    theme_dir = NULL;
}

const char *pt_portal_assets_template(const char *name)
{
    refresh();
    struct asset *a = find(name);
    return a && a->template ? a->data : NULL;
}

const char *pt_portal_assets_url(const char *name)
{
    refresh();
    struct asset *a = find(name);
    if (!a) {
        static char plain[160];
        snprintf(plain, sizeof(plain), "/assets/%s", name);
        return plain;
    }
    return a->url;
}

/* "portal.3f2a1b9c04.css" -> the asset "portal.css" when the hash is its current one. */
static struct asset *by_hashed_name(const char *n, bool *current)
{
    const char *ext = strrchr(n, '.');
    if (!ext || ext == n)
        return NULL;
    const char *h = ext - 1;
    while (h > n && *h != '.')
        h--;
    if (h == n || ext - h - 1 != 10)
        return NULL;
    char base[96];
    snprintf(base, sizeof(base), "%.*s%s", (int)(h - n), n, ext);
    struct asset *a = find(base);
    if (a)
        *current = !strncmp(h + 1, a->hash, 10);
    return a;
}

bool pt_portal_assets_serve(struct pt_portal_req *r)
{
    if (strncmp(r->path, "/assets/", 8))
        return false;
    refresh();
    const char *n = r->path + 8;
    bool current = false;
    struct asset *a = strchr(n, '/') || !name_ok(n) ? NULL : find(n);
    if (!a && name_ok(n))
        a = by_hashed_name(n, &current);
    if (!a || a->template) {
        pt_portal_req_text(r, 404, "Not Found: no such asset.");
        return true;
    }
    /* each encoding is its own representation, with its own ETag */
    bool gz = a->gz && pt_portal_req_accepts_gzip(r);
    char etag[32];
    snprintf(etag, sizeof(etag), "\"%s%s\"", a->hash, gz ? "-gz" : "");
    pt_portal_req_header(r, "ETag", etag);
    pt_portal_req_header(r, "Vary", "Accept-Encoding");
    /* a hashed URL never changes content; a plain one (or an old hash) is revalidated */
    pt_portal_req_header(r, "Cache-Control", current ? "public, max-age=31536000, immutable" : "no-cache");
    r->content_type = a->type;
    const char *inm = pt_portal_req_in_header(r, "If-None-Match");
    if (inm && strstr(inm, etag)) {
        r->status = 304;
        return true;
    }
    if (gz) {
        pt_portal_req_header(r, "Content-Encoding", "gzip");
        evbuffer_add(r->out, a->gz, a->gzlen);
    } else
        evbuffer_add(r->out, a->data, a->len);
    r->status = 200;
    return true;
}
