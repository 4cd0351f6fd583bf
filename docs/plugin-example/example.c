/*
 * example.c -- an out-of-tree Portico plugin with two policies.
 *
 *   delay  waits `ms` milliseconds without blocking the worker: run()
 *          starts a timer and returns PT_AGAIN; the timer callback resumes
 *          the pipeline.  Other requests on the same worker are served
 *          meanwhile.
 *   stamp  sets a header (`header`, default X-Stamp) on the current
 *          message to `value`, a literal or an expression.
 *
 * It builds against the installed SDK header alone:
 *
 *     make PORTICO_INCLUDE=/usr/local/include
 *
 * See docs/plugin-guide.md for a walkthrough.
 */
#include <portico/plugin.h>

#include <stdlib.h>
#include <string.h>

/* The gateway's function table, kept by init() for the timer callback,
   which receives only the call. */
static const struct pt_api *api_table;

/* ------------------------------------------------------------- delay */

static const struct pt_attr_def delay_attrs[] = {
    {"ms", PT_ATTR_INT, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 60000, "milliseconds to wait"},
    {0},
};

struct delay {
    uint32_t ms;
};

static int delay_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    /* The schema has already checked that `ms` is an integer in 0..60000.
       A value built from a named value ({{...}}) is only known now, after
       substitution, so check it again. */
    const char *text = api->attr_literal(c, "ms");
    char *end = NULL;
    long ms = text ? strtol(text, &end, 10) : -1;
    if (!text || *end || end == text || ms < 0 || ms > 60000) {
        api->compile_error(c, "ms", "'ms' must be an integer between 0 and 60000");
        return -1;
    }
    struct delay *d = api->compile_alloc(c, sizeof(*d)); /* freed with the generation */
    if (!d) {
        api->compile_error(c, NULL, "out of memory");
        return -1;
    }
    d->ms = (uint32_t)ms;
    *instance = d;
    return 0;
}

static void delay_wake(pt_call *call, void *arg)
{
    (void)arg;
    api_table->resume(call, PT_OK); /* the pipeline continues with the next statement */
}

static pt_status delay_run(const struct pt_api *api, pt_call *call, void *instance)
{
    const struct delay *d = instance;
    if (!api->timer_start(call, d->ms, delay_wake, NULL))
        return api->fail(call, 500, "DelayFailed", "could not start a timer");
    return PT_AGAIN; /* suspended until delay_wake() calls resume() */
}

/* ------------------------------------------------------------- stamp */

static const struct pt_attr_def stamp_attrs[] = {
    {"header", PT_ATTR_STRING, 0, "X-Stamp", NULL, NULL, 0, 0, "name of the header to set"},
    {"value", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0, "the header's value"},
    {0},
};

struct stamp {
    pt_bytes name;
    pt_value *value;
};

/* RFC 9110 token characters. */
static int is_token(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= 0x20 || ch >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", ch))
            return 0;
    }
    return 1;
}

static int stamp_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    /* Defaults in the schema are documentation: absent attributes read as NULL. */
    const char *name = api->attr_literal(c, "header");
    if (!name)
        name = "X-Stamp";
    if (!is_token(name)) {
        api->compile_error(c, "header", "'%s' is not a valid header name", name);
        return -1;
    }
    struct stamp *s = api->compile_alloc(c, sizeof(*s));
    if (!s) {
        api->compile_error(c, NULL, "out of memory");
        return -1;
    }
    s->name = (pt_bytes){name, strlen(name)}; /* compile-time strings live as long as the generation */
    s->value = api->attr_value(c, "value");   /* a literal or a compiled expression */
    if (!s->value)
        return -1; /* an expression that does not compile has been reported already */
    *instance = s;
    return 0;
}

static pt_status stamp_run(const struct pt_api *api, pt_call *call, void *instance)
{
    const struct stamp *s = instance;
    pt_bytes v;
    int rc = api->eval(call, s->value, &v);
    if (rc == PT_AGAIN)
        return PT_AGAIN; /* the expression reads a body not in memory yet: run() comes again */
    if (rc != 0)
        return PT_ERROR; /* the request's error (context.lastError) is already set */
    /* The core checks the name and the value (no CR/LF/NUL) and refuses
       headers it manages; on -1 the request's error is set. */
    if (api->header_set(call, PT_MSG_CURRENT, s->name, &v, 1, PT_HEADER_OVERRIDE) != 0)
        return PT_ERROR;
    return PT_OK;
}

/* ------------------------------------------------------- descriptor */

static const struct pt_policy_def policies[] = {
    {"delay", PT_SECTION_ALL, PT_SCOPE_ALL, 0, delay_attrs, delay_compile, delay_run, NULL,
     "Waits `ms` milliseconds without blocking the worker, then continues."},
    {"stamp", PT_SECTION_INBOUND | PT_SECTION_OUTBOUND, PT_SCOPE_ALL, 0, stamp_attrs, stamp_compile,
     stamp_run, NULL, "Sets a header on the current message (the request inbound, the response outbound)."},
    {0},
};

static int example_init(const struct pt_api *api, const char **err)
{
    /* A gateway with the same ABI major and an equal or newer minor has at
       least every function this plugin uses; check anyway before keeping
       the table. url_base is the last member of ABI 1.0. */
    if (api->size < offsetof(struct pt_api, url_base) + sizeof(void *)) {
        *err = "the gateway's API table is too small";
        return -1;
    }
    api_table = api;
    api->log(PT_LOG_LEVEL_DEBUG, "example plugin ready");
    return 0;
}

static void example_fini(void)
{
    api_table = NULL;
}

PT_PLUGIN("example", "1.0.0", policies, example_init, example_fini);
