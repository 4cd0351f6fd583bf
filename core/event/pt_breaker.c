/*
 * pt_breaker -- node-wide backend state (see pt_breaker.h).
 */
#include "event/pt_breaker.h"

#include "event/pt_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- registry */

#define NBUCKETS 64

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pt_bestate *reg[NBUCKETS];

static size_t bucket(const char *id, const char *key)
{
    return (pt_hash(id, strlen(id), false) ^ pt_hash(key, strlen(key), false)) & (NBUCKETS - 1);
}

static void clear_windows(struct pt_bestate *s)
{
    memset(s->win, 0, sizeof(s->win));
}

struct pt_bestate *pt_breaker_state(const char *id, const char *key, uint64_t rules_sig, int nmembers)
{
    if (nmembers > PT_BREAKER_MAX_MEMBERS)
        nmembers = PT_BREAKER_MAX_MEMBERS;
    size_t b = bucket(id, key);
    pthread_mutex_lock(&reg_mu);
    for (struct pt_bestate *s = reg[b]; s; s = s->next) {
        if (strcmp(s->id, id) || strcmp(s->key, key) || s->nmembers != nmembers)
            continue;
        s->refs++;
        if (s->rules_sig != rules_sig) {
            /* other rules: their counts start over (a trip in progress ends) */
            pthread_mutex_lock(&s->mu);
            clear_windows(s);
            s->rules_sig = rules_sig;
            atomic_store(&s->open_until, 0);
            pthread_mutex_unlock(&s->mu);
        }
        pthread_mutex_unlock(&reg_mu);
        return s;
    }
    struct pt_bestate *s = calloc(1, sizeof(*s));
    if (s) {
        s->id = strdup(id);
        s->key = strdup(key);
        if (!s->id || !s->key) {
            free(s->id);
            free(s->key);
            free(s);
            pthread_mutex_unlock(&reg_mu);
            return NULL;
        }
        pthread_mutex_init(&s->mu, NULL);
        static uint64_t births;
        s->born = ++births; /* under reg_mu */
        s->refs = 1;
        s->rules_sig = rules_sig;
        s->nmembers = nmembers;
        if (nmembers && !(s->cur = calloc((size_t)nmembers, sizeof(*s->cur)))) {
            pthread_mutex_destroy(&s->mu);
            free(s->id);
            free(s->key);
            free(s);
            pthread_mutex_unlock(&reg_mu);
            return NULL;
        }
        s->next = reg[b];
        reg[b] = s;
    }
    pthread_mutex_unlock(&reg_mu);
    return s;
}

void pt_breaker_state_ref(struct pt_bestate *s)
{
    pthread_mutex_lock(&reg_mu);
    s->refs++;
    pthread_mutex_unlock(&reg_mu);
}

void pt_breaker_state_put(struct pt_bestate *s)
{
    if (!s)
        return;
    size_t b = bucket(s->id, s->key);
    pthread_mutex_lock(&reg_mu);
    if (--s->refs > 0) {
        pthread_mutex_unlock(&reg_mu);
        return;
    }
    for (struct pt_bestate **p = &reg[b]; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    pthread_mutex_unlock(&reg_mu);
    pthread_mutex_destroy(&s->mu);
    free(s->cur);
    free(s->id);
    free(s->key);
    free(s);
}

uint64_t pt_breaker_rules_sig(const struct pt_cbrule *rules, int n)
{
    /* FNV-1a over the fields that change what is counted */
    uint64_t h = 1469598103934665603ull;
#define MIX(v)                                                                                               \
    do {                                                                                                     \
        h ^= (uint64_t)(v);                                                                                  \
        h *= 1099511628211ull;                                                                               \
    } while (0)
    MIX(n);
    for (int i = 0; i < n; i++) {
        const struct pt_cbrule *r = &rules[i];
        MIX(r->count);
        MIX(r->percentage);
        MIX(r->interval_ms);
        MIX(r->trip_ms);
        MIX(r->accept_retry_after);
        for (int k = 0; k < r->nranges; k++) {
            MIX(r->ranges[k].min);
            MIX(r->ranges[k].max);
        }
        for (int k = 0; k < r->nreasons; k++)
            MIX(pt_hash(r->reasons[k], strlen(r->reasons[k]), true));
    }
#undef MIX
    return h;
}

static uint64_t mix_str(uint64_t h, const char *s)
{
    return (h ^ pt_hash(s, strlen(s), false)) * 1099511628211ull;
}

void pt_breaker_attach(struct pt_backdef *defs, int n)
{
    for (int i = 0; i < n; i++) {
        struct pt_backdef *d = &defs[i];
        if (d->state)
            continue;
        uint64_t sig = pt_breaker_rules_sig(d->rules, d->nrules);
        if (d->type != PT_BE_POOL) {
            d->state = pt_breaker_state(d->id, d->cf && d->cf->url ? d->cf->url : "", sig, 0);
            if (d->state && !d->health.on)
                atomic_store(&d->state->down, false); /* no checks any more: nothing would bring it up */
            continue;
        }
        /* a pool's key: its members, weights and priorities */
        char key[64];
        uint64_t h = 1469598103934665603ull;
        for (int k = 0; k < d->nmembers; k++) {
            h = mix_str(h, d->members[k].be->id);
            h = (h ^ (uint64_t)d->members[k].weight) * 1099511628211ull;
            h = (h ^ (uint64_t)d->members[k].priority) * 1099511628211ull;
        }
        snprintf(key, sizeof(key), "pool:%d:%016llx", d->nmembers, (unsigned long long)h);
        d->state = pt_breaker_state(d->id, key, sig, d->nmembers);
    }
}

void pt_breaker_detach(struct pt_backdef *defs, int n)
{
    for (int i = 0; i < n; i++) {
        pt_breaker_state_put(defs[i].state);
        defs[i].state = NULL;
    }
}

/* ---------------------------------------------------------------- breaker */

int64_t pt_breaker_open_ms(struct pt_bestate *s, int64_t now)
{
    if (!s)
        return 0; /* no state (out of memory at build): never refused */
    int64_t until = atomic_load_explicit(&s->open_until, memory_order_relaxed);
    return until > now ? until - now : 0;
}

bool pt_breaker_available(struct pt_bestate *s, int64_t now)
{
    return !s || (!atomic_load_explicit(&s->down, memory_order_relaxed) && pt_breaker_open_ms(s, now) == 0);
}

bool pt_breaker_is_failure(const struct pt_cbrule *r, int status, const char *reason)
{
    if (!r->nranges && !r->nreasons) /* neither given: server errors and every failed call */
        return reason ? true : status >= 500 && status <= 599;
    if (reason) {
        for (int i = 0; i < r->nreasons; i++)
            if (!strcasecmp(r->reasons[i], reason))
                return true;
        return false;
    }
    for (int i = 0; i < r->nranges; i++)
        if (status >= r->ranges[i].min && status <= r->ranges[i].max)
            return true;
    return false;
}

/* Moves a window's ring to `slot`, zeroing the slots that went by. */
static void advance(struct pt_brk_window *w, int64_t slot)
{
    int64_t d = slot - w->epoch;
    if (d <= 0)
        return;
    if (d >= PT_BREAKER_SLOTS) {
        memset(w->total, 0, sizeof(w->total));
        memset(w->fail, 0, sizeof(w->fail));
    } else
        for (int64_t i = 1; i <= d; i++) {
            w->total[(w->epoch + i) % PT_BREAKER_SLOTS] = 0;
            w->fail[(w->epoch + i) % PT_BREAKER_SLOTS] = 0;
        }
    w->epoch = slot;
}

/* Counts one outcome in a rule's window; true when the rule trips. */
static bool count(struct pt_brk_window *w, const struct pt_cbrule *r, bool failed, int64_t now)
{
    int64_t slot_ms = r->interval_ms / PT_BREAKER_SLOTS;
    if (slot_ms < 1)
        slot_ms = 1;
    int64_t slot = now / slot_ms;
    advance(w, slot);
    int i = (int)(slot % PT_BREAKER_SLOTS);
    w->total[i]++;
    if (!failed)
        return false;
    w->fail[i]++;
    uint64_t total = 0, fail = 0;
    for (int k = 0; k < PT_BREAKER_SLOTS; k++) {
        total += w->total[k];
        fail += w->fail[k];
    }
    if (r->count > 0 && fail >= (uint64_t)r->count)
        return true;
    if (r->percentage > 0 && fail * 100 >= (uint64_t)r->percentage * total)
        return true;
    return false;
}

bool pt_breaker_record(struct pt_bestate *s, const struct pt_cbrule *rules, int nrules, int status,
                       const char *reason, int64_t retry_after_ms, int64_t now)
{
    if (!s || nrules <= 0)
        return false;
    if (nrules > PT_BREAKER_MAX_RULES)
        nrules = PT_BREAKER_MAX_RULES;
    bool tripped = false;
    pthread_mutex_lock(&s->mu);
    if (atomic_load_explicit(&s->open_until, memory_order_relaxed) > now) {
        pthread_mutex_unlock(&s->mu); /* a call that started before the trip */
        return false;
    }
    for (int i = 0; i < nrules && !tripped; i++) {
        const struct pt_cbrule *r = &rules[i];
        if (!count(&s->win[i], r, pt_breaker_is_failure(r, status, reason), now))
            continue;
        int64_t len = r->trip_ms;
        if (r->accept_retry_after && retry_after_ms > 0)
            len = retry_after_ms; /* the backend says how long it needs */
        if (len > PT_BREAKER_MAX_TRIP_MS)
            len = PT_BREAKER_MAX_TRIP_MS;
        if (len < 1)
            len = 1;
        atomic_store(&s->open_until, now + len);
        atomic_fetch_add(&s->trips, 1);
        clear_windows(s); /* after the trip, counting starts afresh */
        tripped = true;
    }
    pthread_mutex_unlock(&s->mu);
    return tripped;
}

/* ---------------------------------------------------------------- pools */

int pt_breaker_pick(struct pt_bestate *pool, const struct pt_bemember *m, int n, int64_t now,
                    int64_t *wait_ms)
{
    *wait_ms = 0;
    if (n > PT_BREAKER_MAX_MEMBERS)
        n = PT_BREAKER_MAX_MEMBERS;
    bool avail[PT_BREAKER_MAX_MEMBERS];
    int best = 0, any = 0;
    int64_t wait = 0;
    for (int i = 0; i < n; i++) {
        avail[i] = pt_breaker_available(m[i].be->state, now);
        if (avail[i] && (!any || m[i].priority < best)) {
            best = m[i].priority;
            any = 1;
        }
        if (!avail[i]) {
            int64_t left = pt_breaker_open_ms(m[i].be->state, now);
            if (left && (!wait || left < wait))
                wait = left;
        }
    }
    if (!any) {
        *wait_ms = wait;
        return -1;
    }
    int chosen = -1;
    int64_t total = 0;
    pthread_mutex_lock(&pool->mu);
    for (int i = 0; i < n && i < pool->nmembers; i++) {
        if (!avail[i] || m[i].priority != best)
            continue;
        pool->cur[i] += m[i].weight;
        total += m[i].weight;
        if (chosen < 0 || pool->cur[i] > pool->cur[chosen])
            chosen = i;
    }
    if (chosen >= 0)
        pool->cur[chosen] -= total;
    pthread_mutex_unlock(&pool->mu);
    return chosen;
}

/* ---------------------------------------------------------------- health */

int pt_breaker_health(struct pt_bestate *s, bool ok, int healthy, int unhealthy)
{
    if (healthy < 1)
        healthy = 1;
    if (unhealthy < 1)
        unhealthy = 1;
    bool down = atomic_load(&s->down);
    atomic_store(&s->checked, true);
    if (ok) {
        s->hc_fail = 0;
        if (s->hc_ok < healthy)
            s->hc_ok++;
        if (down && s->hc_ok >= healthy) {
            atomic_store(&s->down, false);
            return 1;
        }
        return 0;
    }
    atomic_fetch_add(&s->hc_failures, 1);
    s->hc_ok = 0;
    if (s->hc_fail < unhealthy)
        s->hc_fail++;
    if (!down && s->hc_fail >= unhealthy) {
        atomic_store(&s->down, true);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- Retry-After */

static int month_of(const char *m)
{
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int i = 0; i < 12; i++)
        if (!strncmp(names + i * 3, m, 3))
            return i;
    return -1;
}

/* IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT" (the form RFC 9110 says to send). */
static bool http_date(const char *p, size_t n, time_t *out)
{
    if (n != 29 || p[3] != ',' || p[4] != ' ' || p[7] != ' ' || p[11] != ' ' || p[16] != ' ' ||
        p[19] != ':' || p[22] != ':' || p[25] != ' ' || memcmp(p + 26, "GMT", 3))
        return false;
    int v[7];
    const int at[7] = {5, 12, 17, 20, 23, -1, -1};
    for (int i = 0; i < 5; i++) {
        int w = i == 1 ? 4 : 2;
        v[i] = 0;
        for (int k = 0; k < w; k++) {
            char c = p[at[i] + k];
            if (c < '0' || c > '9')
                return false;
            v[i] = v[i] * 10 + (c - '0');
        }
    }
    char mon[4] = {p[8], p[9], p[10], 0};
    int mo = month_of(mon);
    if (mo < 0 || v[0] < 1 || v[0] > 31 || v[2] > 23 || v[3] > 59 || v[4] > 60)
        return false;
    struct tm tm = {.tm_year = v[1] - 1900,
                    .tm_mon = mo,
                    .tm_mday = v[0],
                    .tm_hour = v[2],
                    .tm_min = v[3],
                    .tm_sec = v[4]};
    *out = timegm(&tm);
    return *out != (time_t)-1;
}

int64_t pt_breaker_retry_after(pt_str v, time_t wall_s)
{
    while (v.len && (v.data[0] == ' ' || v.data[0] == '\t')) {
        v.data++;
        v.len--;
    }
    while (v.len && (v.data[v.len - 1] == ' ' || v.data[v.len - 1] == '\t'))
        v.len--;
    if (!v.len)
        return 0;
    int64_t secs = 0;
    if (v.data[0] >= '0' && v.data[0] <= '9') {
        for (size_t i = 0; i < v.len; i++) {
            if (v.data[i] < '0' || v.data[i] > '9')
                return 0;
            if (secs < PT_BREAKER_MAX_TRIP_MS / 1000 + 1)
                secs = secs * 10 + (v.data[i] - '0');
        }
    } else {
        time_t t;
        if (!http_date(v.data, v.len, &t) || t <= wall_s)
            return 0;
        secs = (int64_t)(t - wall_s);
    }
    int64_t ms = secs * 1000;
    return ms > PT_BREAKER_MAX_TRIP_MS ? PT_BREAKER_MAX_TRIP_MS : ms;
}

/* ---------------------------------------------------------------- metrics */

/* Newest first within an id: while an old generation ends, an id may have two states (its url
   changed); the series shows the newest. */
static int by_id_newest(const void *a, const void *b)
{
    const struct pt_bestate *x = *(const struct pt_bestate *const *)a,
                            *y = *(const struct pt_bestate *const *)b;
    int c = strcmp(x->id, y->id);
    if (c)
        return c;
    return x->born < y->born ? 1 : x->born > y->born ? -1 : 0;
}

static void collect(struct pt_metrics_sink *sink, void *arg)
{
    (void)arg;
    static const char *const names[] = {"backend"};
    int64_t now = (int64_t)pt_clock_now_ms();
    pthread_mutex_lock(&reg_mu);
    size_t n = 0;
    for (size_t b = 0; b < NBUCKETS; b++)
        for (struct pt_bestate *s = reg[b]; s; s = s->next)
            n += s->nmembers == 0; /* a pool: its members have their own series */
    struct pt_bestate **v = n ? malloc(n * sizeof(*v)) : NULL;
    size_t k = 0;
    for (size_t b = 0; v && b < NBUCKETS; b++)
        for (struct pt_bestate *s = reg[b]; s; s = s->next)
            if (!s->nmembers)
                v[k++] = s;
    if (k)
        qsort(v, k, sizeof(*v), by_id_newest);
    for (int pass = 0; pass < 3; pass++)
        for (size_t i = 0; i < k; i++) {
            struct pt_bestate *s = v[i];
            if (i && !strcmp(v[i - 1]->id, s->id))
                continue;
            pt_str id = pt_str_c(s->id);
            if (pass == 0)
                pt_metrics_sink_sample(sink, "portico_backend_up",
                                       "1 when the backend takes calls: circuit closed and not marked "
                                       "down by health checks",
                                       PT_METRICS_GAUGE, names, &id, 1, pt_breaker_available(s, now));
            else if (pass == 1)
                pt_metrics_sink_sample(sink, "portico_backend_trips_total",
                                       "times the backend's circuit breaker tripped", PT_METRICS_COUNTER,
                                       names, &id, 1, (double)atomic_load(&s->trips));
            else
                pt_metrics_sink_sample(sink, "portico_backend_health_check_failures_total",
                                       "failed active health checks of the backend", PT_METRICS_COUNTER,
                                       names, &id, 1, (double)atomic_load(&s->hc_failures));
        }
    pthread_mutex_unlock(&reg_mu);
    free(v);
}

void pt_breaker_init(void)
{
    static bool once;
    if (once)
        return;
    once = true;
    pt_metrics_collector(collect, NULL);
}
