/*
 * value.c -- the value cache: cache-lookup-value, cache-store-value,
 * cache-remove-value.
 *
 * APIM's attributes: key (required, an expression allowed), caching-type
 * (prefer-external | external | internal, no expression), and
 *   cache-lookup-value: variable-name (required, no expression),
 *                       default-value (an expression allowed);
 *   cache-store-value:  value (required, an expression allowed),
 *                       duration (seconds, required, an expression allowed).
 *
 * Keys are the policy's text, prefixed "v:" in the store (responses live
 * under "r:"), 1 to 4096 bytes: an empty or longer key fails the statement
 * with ExpressionValueEvaluationFailure, as an expression that cannot give
 * a usable value does.
 *
 * The miss (APIM's reference contradicts itself: "null is assigned" under
 * default-value, "the variable is not set" under variable-name): with a
 * default-value the variable gets it; without one the variable is not
 * touched, so an expression reading it gets nil unless something set it
 * before -- which is what both readings give a variable nobody set.
 * default-value is evaluated before the lookup (also on a hit), because an
 * expression may need a body, which can only be read before the statement
 * suspends.
 */
#include "cache.h"

#include <stdio.h>
#include <string.h>

#define KEY_ATTR                                                                                             \
    {                                                                                                        \
        "key", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,                      \
            "the key, 1 to 4096 bytes (an expression allowed)"                                               \
    }
#define TYPE_ATTR                                                                                            \
    {                                                                                                        \
        "caching-type", PT_ATTR_ENUM, 0, "prefer-external", cache_types, NULL, 0, 0,                         \
            "internal (the node's cache), external (Redis: cache.redis) or prefer-external (Redis when "     \
            "configured, else internal); an API of a workspace always uses internal"                         \
    }

const struct pt_attr_def cache_lookup_value_attrs[] = {
    KEY_ATTR,
    {"variable-name", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0,
     "the variable that receives the value (not one starting with 'portico.': those are the gateway's)"},
    {"default-value", PT_ATTR_STRING, PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "what the variable gets on a miss (without it the variable is left as it was); an expression allowed"},
    TYPE_ATTR,
    {0},
};

const struct pt_attr_def cache_store_value_attrs[] = {
    KEY_ATTR,
    {"value", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "the value to keep (an expression allowed)"},
    {"duration", PT_ATTR_STRING, PT_ATTR_REQUIRED | PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "how long it is kept, in seconds (an expression allowed; 0 or less: not stored)"},
    TYPE_ATTR,
    {0},
};

const struct pt_attr_def cache_remove_value_attrs[] = {
    KEY_ATTR,
    TYPE_ATTR,
    {0},
};

struct value_pol {
    pt_value *key;
    int caching_type;
    pt_bytes variable; /* cache-lookup-value */
    pt_value *def;     /* cache-lookup-value: NULL = none */
    pt_value *value;   /* cache-store-value */
    pt_value *duration;
};

static struct value_pol *compile_common(const struct pt_api *api, pt_compile *c)
{
    struct value_pol *v = api->compile_alloc(c, sizeof(*v));
    if (!v)
        return NULL;
    v->key = api->attr_value(c, "key");
    v->caching_type = api->attr_enum(c, "caching-type", PT_CACHE_PREFER_EXTERNAL);
    if (!v->key)
        return NULL;
    const char *lit = api->attr_literal(c, "key");
    if (lit && (!*lit || strlen(lit) > CACHE_KEY_MAX)) {
        api->compile_error(c, "key", "a key has 1 to %d bytes", CACHE_KEY_MAX);
        return NULL;
    }
    return v;
}

/* The store key for this call: "v:" + the evaluated key for a service-level API, "w:" + the workspace's
   length + ':' + the workspace + ':' + the key for a workspace's API (so that no workspace reads or
   writes another's values, nor the service's); 0, or the status run() must return. */
static int eval_key(const struct pt_api *api, pt_call *call, const struct value_pol *v, pt_bytes *out)
{
    pt_bytes k;
    int st = ptl_eval(api, call, v->key, &k);
    if (st)
        return st;
    if (k.len == 0 || k.len > CACHE_KEY_MAX)
        return api->fail(call, 500, "ExpressionValueEvaluationFailure",
                         k.len ? "the cache key is longer than 4096 bytes" : "the cache key is empty");
    pt_bytes ws = api->fact(call, PT_FACT_WORKSPACE_ID);
    struct ptl_buf b;
    ptl_buf_init(&b, api, call, k.len + ws.len + 32);
    if (ws.len) {
        char n[24];
        int nl = snprintf(n, sizeof(n), "%zu:", ws.len);
        ptl_buf_lit(&b, CACHE_WORKSPACE_PREFIX);
        ptl_buf_add(&b, n, (size_t)nl);
        ptl_buf_add(&b, ws.data, ws.len);
        ptl_buf_lit(&b, ":");
    } else
        ptl_buf_lit(&b, CACHE_VALUE_PREFIX);
    ptl_buf_add(&b, k.data, k.len);
    if (b.oom)
        return ptl_out_of_memory(api, call);
    *out = ptl_buf_bytes(&b);
    return 0;
}

/* ------------------------------------------------------ cache-lookup-value */

int cache_lookup_value_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct value_pol *v = compile_common(api, c);
    if (!v)
        return -1;
    const char *name = api->attr_literal(c, "variable-name");
    if (!name || !*name) {
        api->compile_error(c, "variable-name", "the variable's name must not be empty");
        return -1;
    }
    if (!strncmp(name, CACHE_RESERVED_VAR_PREFIX, strlen(CACHE_RESERVED_VAR_PREFIX))) {
        api->compile_error(c, "variable-name", "'%s': names starting with '%s' are the gateway's own", name,
                           CACHE_RESERVED_VAR_PREFIX);
        return -1;
    }
    v->variable = (pt_bytes){name, strlen(name)};
    v->def = api->attr_value(c, "default-value");
    *instance = v;
    return 0;
}

/* One lookup in flight (request memory). */
struct value_pending {
    const struct value_pol *v;
    int has_default;
    pt_bytes def;
};

static pt_status value_answered(const struct pt_api *api, pt_call *call, const struct value_pending *p,
                                int found, pt_bytes value)
{
    if ((found && api->var_set(call, p->v->variable, value)) ||
        (!found && p->has_default && api->var_set(call, p->v->variable, p->def)))
        return ptl_out_of_memory(api, call);
    return PT_OK;
}

static void value_done(pt_call *call, void *arg, int found, pt_bytes value)
{
    const struct pt_api *api = cache_api;
    api->resume(call, value_answered(api, call, arg, found, value));
}

pt_status cache_lookup_value_run(const struct pt_api *api, pt_call *call, void *instance)
{
    const struct value_pol *v = instance;
    struct value_pending *p = api->alloc(call, sizeof(*p));
    if (!p)
        return ptl_out_of_memory(api, call);
    p->v = v;
    int st;
    if (v->def) {
        if ((st = ptl_eval(api, call, v->def, &p->def)))
            return (pt_status)st;
        p->has_default = 1;
    }
    pt_bytes key, value = {"", 0};
    if ((st = eval_key(api, call, v, &key)))
        return (pt_status)st;
    int rc = api->cache_get(call, cache_type_for(api, call, v->caching_type), key, &value, value_done, p);
    if (rc == PT_AGAIN)
        return PT_AGAIN; /* value_done resumes */
    return value_answered(api, call, p, rc == 1, value);
}

/* ------------------------------------------------------- cache-store-value */

int cache_store_value_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct value_pol *v = compile_common(api, c);
    if (!v || cache_check_duration(api, c, "duration"))
        return -1;
    v->value = api->attr_value(c, "value");
    v->duration = api->attr_value(c, "duration");
    if (!v->value || !v->duration)
        return -1;
    *instance = v;
    return 0;
}

pt_status cache_store_value_run(const struct pt_api *api, pt_call *call, void *instance)
{
    const struct value_pol *v = instance;
    pt_bytes key, value;
    int64_t ttl;
    int st;
    if ((st = ptl_eval(api, call, v->value, &value)) ||
        (st = cache_eval_duration(api, call, v->duration, &ttl)) || (st = eval_key(api, call, v, &key)))
        return (pt_status)st;
    if (ttl > 0)
        api->cache_put(call, cache_type_for(api, call, v->caching_type), key, value,
                       (uint32_t)ttl); /* skipped ones are counted there */
    return PT_OK;
}

/* ------------------------------------------------------ cache-remove-value */

int cache_remove_value_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct value_pol *v = compile_common(api, c);
    if (!v)
        return -1;
    *instance = v;
    return 0;
}

pt_status cache_remove_value_run(const struct pt_api *api, pt_call *call, void *instance)
{
    const struct value_pol *v = instance;
    pt_bytes key;
    int st = eval_key(api, call, v, &key);
    if (st)
        return (pt_status)st;
    api->cache_del(call, cache_type_for(api, call, v->caching_type), key);
    return PT_OK;
}
