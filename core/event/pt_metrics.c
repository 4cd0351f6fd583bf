/*
 * pt_metrics -- the metrics registry, its text exposition and the OTLP
 * rendering of emit-metric's counters (see pt_metrics.h).
 */
#include "event/pt_metrics.h"
#include "base/pt_utf8.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_FAMILIES (64 + PT_METRICS_MAX_CUSTOM)
#define MAX_COLLECTORS 32
#define NAME_MAX_LEN 64 /* a label name */
#define KEY_MAX (PT_METRICS_MAX_LABELS * (NAME_MAX_LEN + 4 + 2 * PT_METRICS_VALUE_MAX) + 1)

const uint64_t pt_metrics_buckets_us[PT_METRICS_NBUCKETS] = {
    1000,   2500,    5000,    10000,   25000,    50000,    100000,   250000,
    500000, 1000000, 2500000, 5000000, 10000000, 30000000, 60000000,
};

struct pt_metrics_family *pt_metrics_core[PT_MC_COUNT];
_Atomic bool pt_metrics_enabled = true;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct pt_metrics_family *fams[MAX_FAMILIES];
static _Atomic int nfams;
static int nshards;
static int max_series = PT_METRICS_DEFAULT_SERIES;
static uint64_t start_ns; /* wall clock at init */

/* emit-metric families by name: hash (high 32) | family index + 1, lock-free reads */
#define CUSTOM_SLOTS (PT_METRICS_MAX_CUSTOM * 4)
static _Atomic uint64_t custom_index[CUSTOM_SLOTS];
static int ncustom;

static struct {
    pt_metrics_collect_fn fn;
    void *arg;
} collectors[MAX_COLLECTORS];
static int ncollectors;

/* --------------------------------------------------------------- names */

size_t pt_metrics_sanitize(pt_str in, char *out, size_t cap)
{
    size_t n = 0;
    bool gap = false;
    for (size_t i = 0; i < in.len && cap > 1; i++) {
        unsigned char c = (unsigned char)in.data[i];
        if (c >= 'A' && c <= 'Z')
            c |= 0x20;
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!ok) {
            gap = n > 0;
            continue;
        }
        if (n == 0 && c >= '0' && c <= '9' && n + 2 < cap)
            out[n++] = '_';
        if (gap && n + 2 < cap)
            out[n++] = '_';
        gap = false;
        if (n + 1 < cap)
            out[n++] = (char)c;
    }
    if (cap)
        out[n] = '\0';
    return n;
}

size_t pt_metrics_escape(pt_str v, char *out)
{
    size_t len = PT_MIN(v.len, (size_t)PT_METRICS_VALUE_MAX), n = 0;
    const unsigned char *p = (const unsigned char *)v.data;
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        if (c == '\\' || c == '"') {
            out[n++] = '\\';
            out[n++] = (char)c;
            i++;
        } else if (c == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            out[n++] = '?';
            i++;
        } else {
            size_t k = pt_utf8_seq(p + i, len - i);
            if (!k) {
                out[n++] = '?';
                i++;
            } else {
                memcpy(out + n, p + i, k);
                n += k;
                i += k;
            }
        }
    }
    out[n] = '\0';
    return n;
}

/* ------------------------------------------------------------ families */

static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void family_free(struct pt_metrics_family *f)
{
    if (!f)
        return;
    for (int s = 0; f->shards && s < nshards; s++)
        free(f->shards[s]);
    free(f->shards);
    for (int i = 0; f->series && i < f->nseries; i++)
        free((char *)f->series[i].key);
    free(f->series);
    free((void *)f->index);
    for (int i = 0; i < f->nlabels; i++)
        free((char *)f->labels[i]);
    free(f->name);
    free(f->help);
    free(f);
}

/* A family, not yet listed; mu held (or single-threaded). */
static struct pt_metrics_family *family_make(const char *name, const char *help, int type,
                                             const char *const *labels, unsigned flags)
{
    struct pt_metrics_family *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->type = type;
    f->flags = flags;
    for (int i = 0; labels && labels[i] && i < PT_METRICS_MAX_LABELS; i++)
        f->labels[f->nlabels++] = strdup(labels[i]);
    f->stride = type == PT_METRICS_HISTOGRAM ? PT_METRICS_NBUCKETS + 2 : 1; /* buckets, +Inf, sum */
    /* a family without labels has exactly one series */
    f->cap = (f->nlabels || (flags & PT_METRICS_CUSTOM)) ? max_series : 1;
    f->max = f->cap + PT_METRICS_OTHER_SLOTS;
    uint32_t slots = 16;
    while (slots < (uint32_t)f->max * 2)
        slots <<= 1;
    f->index_mask = slots - 1;
    f->index = calloc(slots, sizeof(*f->index));
    f->series = calloc((size_t)f->max, sizeof(*f->series));
    f->shards = calloc((size_t)nshards, sizeof(*f->shards));
    bool ok = f->name && f->help && f->index && f->series && f->shards;
    for (int s = 0; ok && s < nshards; s++)
        ok = (f->shards[s] = calloc((size_t)f->max * (size_t)f->stride, sizeof(uint64_t))) != NULL;
    if (!ok) {
        family_free(f);
        return NULL;
    }
    return f;
}

static bool name_taken(const char *name)
{
    for (int i = 0; i < nfams; i++)
        if (!strcmp(fams[i]->name, name))
            return true;
    return false;
}

static struct pt_metrics_family *family_add(const char *name, const char *help, int type,
                                            const char *const *labels, unsigned flags)
{
    if (nfams >= MAX_FAMILIES || name_taken(name))
        return NULL;
    struct pt_metrics_family *f = family_make(name, help, type, labels, flags);
    if (f) {
        fams[nfams] = f;
        atomic_store_explicit(&nfams, nfams + 1, memory_order_release);
    }
    return f;
}

struct pt_metrics_family *pt_metrics_family_new(const char *name, const char *help, int type,
                                                const char *const *labels, unsigned flags)
{
    pthread_mutex_lock(&mu);
    struct pt_metrics_family *f = family_add(name, help, type, labels, flags);
    pthread_mutex_unlock(&mu);
    return f;
}

static const struct {
    const char *name, *help;
    int type;
    const char *labels[5];
} core_defs[PT_MC_COUNT] = {
    [PT_MC_REQUESTS] = {"portico_requests_total",
                        "Requests answered, by API, operation, product and status class.",
                        PT_METRICS_COUNTER,
                        {"api", "operation", "product", "status_class"}},
    [PT_MC_REQUEST_DURATION] = {"portico_request_duration_seconds",
                                "Time from the first byte of a request to the end of its response.",
                                PT_METRICS_HISTOGRAM,
                                {"api", "operation", "product", "status_class"}},
    [PT_MC_BACKEND_REQUESTS] = {"portico_backend_requests_total",
                                "Backend calls, by API and the backend's status class (none: no answer).",
                                PT_METRICS_COUNTER,
                                {"api", "status_class"}},
    [PT_MC_BACKEND_DURATION] = {"portico_backend_duration_seconds",
                                "Time from sending a request to the backend to the end of its response.",
                                PT_METRICS_HISTOGRAM,
                                {"api"}},
    [PT_MC_CONNECTIONS] = {"portico_connections_active", "Open client connections.", PT_METRICS_GAUGE, {0}},
    [PT_MC_UPSTREAM_IDLE] = {"portico_upstream_connections_idle",
                             "Idle keep-alive backend connections in the pools.",
                             PT_METRICS_GAUGE,
                             {0}},
    [PT_MC_LUA_MEMORY] = {"portico_lua_memory_bytes",
                          "Memory held by the workers' Lua states.",
                          PT_METRICS_GAUGE,
                          {0}},
    [PT_MC_LUA_TIMEOUTS] = {"portico_lua_timeouts_total",
                            "Lua calls stopped by lua.timeout.",
                            PT_METRICS_COUNTER,
                            {0}},
    [PT_MC_CONFIG_GENERATION] = {"portico_config_generation",
                                 "The running configuration generation.",
                                 PT_METRICS_GAUGE,
                                 {0}},
    [PT_MC_RELOADS] = {"portico_reloads_total",
                       "Configuration reloads (SIGHUP), by result.",
                       PT_METRICS_COUNTER,
                       {"result"}},
};

void pt_metrics_free(void)
{
    pthread_mutex_lock(&mu);
    for (int i = 0; i < nfams; i++)
        family_free(fams[i]);
    nfams = 0;
    memset(fams, 0, sizeof(fams));
    memset((void *)custom_index, 0, sizeof(custom_index));
    ncustom = 0;
    ncollectors = 0;
    memset(pt_metrics_core, 0, sizeof(pt_metrics_core));
    pthread_mutex_unlock(&mu);
}

bool pt_metrics_init(int nworkers, int maxs)
{
    pt_metrics_free();
    pthread_mutex_lock(&mu);
    nshards = nworkers + 1;
    max_series = maxs > 0 ? maxs : PT_METRICS_DEFAULT_SERIES;
    start_ns = wall_ns();
    bool ok = true;
    for (int i = 0; i < PT_MC_COUNT && ok; i++)
        ok = (pt_metrics_core[i] = family_add(core_defs[i].name, core_defs[i].help, core_defs[i].type,
                                              core_defs[i].labels, 0)) != NULL;
    pthread_mutex_unlock(&mu);
    /* the unlabelled families' one series exists from the start (0 is a value worth showing) */
    for (int i = 0; i < PT_MC_COUNT && ok; i++)
        if (!pt_metrics_core[i]->nlabels)
            pt_metrics_series(pt_metrics_core[i], NULL, NULL, 0);
    return ok;
}

struct pt_metrics_family *pt_metrics_custom(pt_str name)
{
    if (!name.len || name.len > PT_METRICS_NAME_MAX)
        return NULL;
    uint64_t h = pt_hash(name.data, name.len, false);
    uint32_t h32 = (uint32_t)(h >> 32);
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t i = (uint32_t)h & (CUSTOM_SLOTS - 1), k = 0; k < CUSTOM_SLOTS;
             k++, i = (i + 1) & (CUSTOM_SLOTS - 1)) {
            uint64_t v = atomic_load_explicit(&custom_index[i], memory_order_acquire);
            if (!v)
                break;
            if ((uint32_t)(v >> 32) != h32)
                continue;
            struct pt_metrics_family *f = fams[(uint32_t)v - 1];
            if (strlen(f->name) == name.len && !memcmp(f->name, name.data, name.len))
                return f;
        }
        if (pass)
            return NULL;
        /* not there: create it under the lock (again looking first) */
        pthread_mutex_lock(&mu);
        struct pt_metrics_family *f = NULL;
        uint32_t i = (uint32_t)h & (CUSTOM_SLOTS - 1);
        for (uint64_t v; (v = atomic_load_explicit(&custom_index[i], memory_order_relaxed));
             i = (i + 1) & (CUSTOM_SLOTS - 1)) {
            struct pt_metrics_family *g = fams[(uint32_t)v - 1];
            if ((uint32_t)(v >> 32) == h32 && strlen(g->name) == name.len &&
                !memcmp(g->name, name.data, name.len))
                f = g;
        }
        if (!f && ncustom < PT_METRICS_MAX_CUSTOM && nshards > 0) {
            char nm[256];
            memcpy(nm, name.data, name.len);
            nm[name.len] = '\0';
            if (strncmp(nm, "portico_", 8) && strncmp(nm, "process_", 8)) { /* the gateway's own names */
                int at = nfams;
                f = family_add(nm, "emit-metric", PT_METRICS_COUNTER, NULL,
                               PT_METRICS_DOUBLE | PT_METRICS_CUSTOM);
                if (f) {
                    ncustom++;
                    atomic_store_explicit(&custom_index[i], ((uint64_t)h32 << 32) | (uint64_t)(at + 1),
                                          memory_order_release);
                }
            }
        }
        pthread_mutex_unlock(&mu);
        return f;
    }
    return NULL;
}

/* ------------------------------------------------------------- series */

/* Renders name="value",... into key; returns its length. */
static size_t render_key(char *key, const char *const *fixed, const pt_str *names, const pt_str *values,
                         int n, bool other)
{
    size_t k = 0;
    for (int i = 0; i < n && i < PT_METRICS_MAX_LABELS; i++) {
        if (i)
            key[k++] = ',';
        pt_str nm = names ? names[i] : pt_str_c(fixed[i]);
        size_t nl = PT_MIN(nm.len, (size_t)NAME_MAX_LEN);
        memcpy(key + k, nm.data, nl);
        k += nl;
        key[k++] = '=';
        key[k++] = '"';
        k += pt_metrics_escape(other ? PT_STR("other") : values[i], key + k);
        key[k++] = '"';
    }
    key[k] = '\0';
    return k;
}

/* Looks key up without a lock: the series number or -1. */
static int find(struct pt_metrics_family *f, const char *key, size_t len, uint64_t h)
{
    uint32_t h32 = (uint32_t)(h >> 32);
    for (uint32_t i = (uint32_t)h & f->index_mask;; i = (i + 1) & f->index_mask) {
        uint64_t v = atomic_load_explicit(&f->index[i], memory_order_acquire);
        if (!v)
            return -1;
        if ((uint32_t)(v >> 32) != h32)
            continue;
        const struct pt_metrics_series *s = &f->series[(uint32_t)v - 1];
        if (s->keylen == len && !memcmp(s->key, key, len))
            return (int)(uint32_t)v - 1;
    }
}

/* Adds key as a new series when there is room below `limit`; mu held.  -1 if full. */
static int insert(struct pt_metrics_family *f, const char *key, size_t len, uint64_t h, int limit)
{
    int id = find(f, key, len, h);
    if (id >= 0)
        return id;
    int n = atomic_load_explicit(&f->nseries, memory_order_relaxed);
    if (n >= limit)
        return -1;
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, key, len + 1);
    f->series[n].key = copy;
    f->series[n].keylen = len;
    uint32_t i = (uint32_t)h & f->index_mask;
    while (atomic_load_explicit(&f->index[i], memory_order_relaxed))
        i = (i + 1) & f->index_mask;
    atomic_store_explicit(&f->nseries, n + 1, memory_order_release);
    atomic_store_explicit(&f->index[i], ((h >> 32) << 32) | (uint64_t)(n + 1), memory_order_release);
    return n;
}

int pt_metrics_series(struct pt_metrics_family *f, const pt_str *names, const pt_str *values, int n)
{
    char key[KEY_MAX];
    if (!names)
        n = f->nlabels;
    size_t len = render_key(key, (const char *const *)f->labels, names, values, n, false);
    uint64_t h = pt_hash(key, len, false);
    int id = find(f, key, len, h);
    if (PT_LIKELY(id >= 0))
        return id;
    if (atomic_load_explicit(&f->nseries, memory_order_acquire) >= f->cap) {
        /* full: the "other" series, found without the lock once it exists (label values a client
           chooses must not make every request take the registry's lock) */
        char okey[KEY_MAX];
        size_t olen = render_key(okey, (const char *const *)f->labels, names, values, n, true);
        int oid = find(f, okey, olen, pt_hash(okey, olen, false));
        if (oid >= 0)
            return oid;
    }
    pthread_mutex_lock(&mu);
    id = insert(f, key, len, h, f->cap);
    if (id < 0) {
        len = render_key(key, (const char *const *)f->labels, names, values, n, true);
        h = pt_hash(key, len, false);
        id = insert(f, key, len, h, f->max);
    }
    pthread_mutex_unlock(&mu);
    if (id < 0)
        atomic_fetch_add_explicit(&f->dropped, 1, memory_order_relaxed);
    return id;
}

void pt_metrics_add_double(struct pt_metrics_family *f, int shard, int series, double v)
{
    if (series < 0)
        return;
    _Atomic uint64_t *s = pt_metrics_slot(f, shard, series);
    uint64_t bits = atomic_load_explicit(s, memory_order_relaxed);
    double d;
    memcpy(&d, &bits, sizeof(d));
    d += v;
    memcpy(&bits, &d, sizeof(d));
    atomic_store_explicit(s, bits, memory_order_relaxed);
}

/* ------------------------------------------------------------- render */

struct pt_metrics_sink {
    struct evbuffer *out;
    char last[128]; /* the family whose header was written last */
};

void pt_metrics_collector(pt_metrics_collect_fn fn, void *arg)
{
    pthread_mutex_lock(&mu);
    if (ncollectors < MAX_COLLECTORS) {
        collectors[ncollectors].fn = fn;
        collectors[ncollectors].arg = arg;
        ncollectors++;
    }
    pthread_mutex_unlock(&mu);
}

static const char *type_name(int t)
{
    return t == PT_METRICS_COUNTER ? "counter" : t == PT_METRICS_GAUGE ? "gauge" : "histogram";
}

static void put_help(struct evbuffer *out, const char *name, const char *help, int type)
{
    evbuffer_add_printf(out, "# HELP %s ", name);
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            evbuffer_add(out, "\\\\", 2);
        else if (*p == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, p, 1);
    }
    evbuffer_add_printf(out, "\n# TYPE %s %s\n", name, type_name(type));
}

/* A float as the text format writes it. */
static void put_double(struct evbuffer *out, double v)
{
    if (isnan(v))
        evbuffer_add(out, "NaN", 3);
    else if (isinf(v))
        evbuffer_add_printf(out, "%s", v > 0 ? "+Inf" : "-Inf");
    else if (v == (double)(int64_t)v && fabs(v) < 1e15)
        evbuffer_add_printf(out, "%lld", (long long)v);
    else {
        char b[40];
        snprintf(b, sizeof(b), "%.15g", v); /* the shortest of the two that reads back the same */
        if (strtod(b, NULL) != v)
            snprintf(b, sizeof(b), "%.17g", v);
        evbuffer_add(out, b, strlen(b));
    }
}

/* Microseconds as seconds, exactly. */
static void put_seconds(struct evbuffer *out, uint64_t us)
{
    evbuffer_add_printf(out, "%llu.%06llu", (unsigned long long)(us / 1000000),
                        (unsigned long long)(us % 1000000));
}

static void put_sample(struct evbuffer *out, const char *name, const char *suffix, const char *key,
                       size_t keylen, const char *extra)
{
    evbuffer_add_printf(out, "%s%s", name, suffix);
    if (keylen || extra) {
        evbuffer_add(out, "{", 1);
        evbuffer_add(out, key, keylen);
        if (extra)
            evbuffer_add_printf(out, "%s%s", keylen ? "," : "", extra);
        evbuffer_add(out, "}", 1);
    }
    evbuffer_add(out, " ", 1);
}

static uint64_t sum_slot(const struct pt_metrics_family *f, int series, int k)
{
    uint64_t t = 0;
    for (int s = 0; s < nshards; s++)
        t += atomic_load_explicit(&f->shards[s][(size_t)series * (size_t)f->stride + (size_t)k],
                                  memory_order_relaxed);
    return t;
}

static double sum_double(const struct pt_metrics_family *f, int series)
{
    double t = 0;
    for (int s = 0; s < nshards; s++) {
        uint64_t bits = atomic_load_explicit(&f->shards[s][(size_t)series], memory_order_relaxed);
        double d;
        memcpy(&d, &bits, sizeof(d));
        t += d;
    }
    return t;
}

static void render_family(struct evbuffer *out, const struct pt_metrics_family *f)
{
    int n = atomic_load_explicit(&f->nseries, memory_order_acquire);
    if (!n)
        return;
    put_help(out, f->name, f->help, f->type);
    for (int i = 0; i < n; i++) {
        const struct pt_metrics_series *s = &f->series[i];
        if (f->type == PT_METRICS_HISTOGRAM) {
            uint64_t cum = 0;
            for (int b = 0; b <= PT_METRICS_NBUCKETS; b++) {
                cum += sum_slot(f, i, b);
                char le[48];
                if (b < PT_METRICS_NBUCKETS)
                    snprintf(le, sizeof(le), "le=\"%g\"", (double)pt_metrics_buckets_us[b] / 1e6);
                else
                    snprintf(le, sizeof(le), "le=\"+Inf\"");
                put_sample(out, f->name, "_bucket", s->key, s->keylen, le);
                evbuffer_add_printf(out, "%llu\n", (unsigned long long)cum);
            }
            put_sample(out, f->name, "_sum", s->key, s->keylen, NULL);
            put_seconds(out, sum_slot(f, i, PT_METRICS_NBUCKETS + 1));
            evbuffer_add(out, "\n", 1);
            put_sample(out, f->name, "_count", s->key, s->keylen, NULL);
            evbuffer_add_printf(out, "%llu\n", (unsigned long long)cum); /* the +Inf bucket, as read */
            continue;
        }
        put_sample(out, f->name, "", s->key, s->keylen, NULL);
        if (f->flags & PT_METRICS_DOUBLE)
            put_double(out, sum_double(f, i));
        else if (f->type == PT_METRICS_GAUGE)
            evbuffer_add_printf(out, "%lld", (long long)sum_slot(f, i, 0));
        else
            evbuffer_add_printf(out, "%llu", (unsigned long long)sum_slot(f, i, 0));
        evbuffer_add(out, "\n", 1);
    }
}

void pt_metrics_sink_sample(struct pt_metrics_sink *s, const char *name, const char *help, int type,
                            const char *const *names, const pt_str *values, int n, double v)
{
    if (strcmp(s->last, name)) {
        put_help(s->out, name, help, type);
        snprintf(s->last, sizeof(s->last), "%s", name);
    }
    char key[KEY_MAX];
    size_t len = n > 0 ? render_key(key, names, NULL, values, n, false) : 0;
    put_sample(s->out, name, "", key, len, NULL);
    put_double(s->out, v);
    evbuffer_add(s->out, "\n", 1);
}

void pt_metrics_sink_value(struct pt_metrics_sink *s, const char *name, const char *help, int type, double v)
{
    pt_metrics_sink_sample(s, name, help, type, NULL, NULL, 0, v);
}

void pt_metrics_render(struct evbuffer *out)
{
    int n = atomic_load_explicit(&nfams, memory_order_acquire);
    for (int i = 0; i < n; i++)
        render_family(out, fams[i]);
    struct pt_metrics_sink sink = {.out = out};
    pthread_mutex_lock(&mu);
    int nc = ncollectors;
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < nc; i++)
        collectors[i].fn(&sink, collectors[i].arg);
}

/* --------------------------------------------------------------- OTLP */

/* Reads back a series key (name="value",...) into attributes. */
static json_t *key_attributes(const char *key)
{
    json_t *attrs = json_array();
    const char *p = key;
    while (*p) {
        const char *eq = strchr(p, '=');
        if (!eq || eq[1] != '"')
            break;
        char name[NAME_MAX_LEN + 1];
        size_t nl = PT_MIN((size_t)(eq - p), (size_t)NAME_MAX_LEN);
        memcpy(name, p, nl);
        name[nl] = '\0';
        char val[2 * PT_METRICS_VALUE_MAX + 1];
        size_t vl = 0;
        p = eq + 2;
        while (*p && *p != '"') {
            char c = *p++;
            if (c == '\\' && *p) {
                c = *p++;
                if (c == 'n')
                    c = '\n';
            }
            if (vl < sizeof(val) - 1)
                val[vl++] = c;
        }
        val[vl] = '\0';
        if (*p == '"')
            p++;
        if (*p == ',')
            p++;
        json_array_append_new(attrs, json_pack("{s:s, s:{s:s}}", "key", name, "value", "stringValue", val));
    }
    return attrs;
}

static json_t *str_attr(const char *k, const char *v)
{
    return json_pack("{s:s, s:{s:s}}", "key", k, "value", "stringValue", v);
}

bool pt_metrics_has_custom(void)
{
    int n = atomic_load_explicit(&nfams, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if ((fams[i]->flags & PT_METRICS_CUSTOM) &&
            atomic_load_explicit(&fams[i]->nseries, memory_order_acquire))
            return true;
    return false;
}

char *pt_metrics_otlp_json(const char *service, const char *instance, uint64_t now_ns, size_t *len)
{
    if (!now_ns)
        now_ns = wall_ns();
    char t0[24], t1[24];
    snprintf(t0, sizeof(t0), "%llu", (unsigned long long)start_ns);
    snprintf(t1, sizeof(t1), "%llu", (unsigned long long)now_ns);
    json_t *metrics = json_array();
    int n = atomic_load_explicit(&nfams, memory_order_acquire);
    for (int i = 0; i < n; i++) {
        const struct pt_metrics_family *f = fams[i];
        if (!(f->flags & PT_METRICS_CUSTOM))
            continue;
        int ns = atomic_load_explicit(&f->nseries, memory_order_acquire);
        if (!ns)
            continue;
        json_t *points = json_array();
        for (int k = 0; k < ns; k++)
            json_array_append_new(points, json_pack("{s:o, s:s, s:s, s:f}", "attributes",
                                                    key_attributes(f->series[k].key), "startTimeUnixNano", t0,
                                                    "timeUnixNano", t1, "asDouble", sum_double(f, k)));
        json_array_append_new(metrics,
                              json_pack("{s:s, s:s, s:s, s:{s:o, s:i, s:b}}", "name", f->name, "description",
                                        "emit-metric", "unit", "1", "sum", "dataPoints", points,
                                        "aggregationTemporality", 2 /* AGGREGATION_TEMPORALITY_CUMULATIVE */,
                                        "isMonotonic", 1));
    }
    json_t *rattrs = json_array();
    json_array_append_new(rattrs, str_attr("service.name", service ? service : "portico"));
    if (instance && *instance)
        json_array_append_new(rattrs, str_attr("service.instance.id", instance));
    json_t *doc = json_pack("{s:[{s:{s:o}, s:[{s:{s:s, s:s}, s:o}]}]}", "resourceMetrics", "resource",
                            "attributes", rattrs, "scopeMetrics", "scope", "name", "portico.emit-metric",
                            "version", PACKAGE_VERSION, "metrics", metrics);
    if (!doc)
        return NULL;
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (text && len)
        *len = strlen(text);
    return text;
}
