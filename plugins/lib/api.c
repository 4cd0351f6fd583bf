/*
 * api.c -- small conveniences over the gateway's API table that both
 * policy families use: evaluating a value, reading a body, copying bytes
 * into the arena, setting one header, refusing for lack of memory.
 */
#include "ptlib.h"

#include <string.h>

int ptl_eval(const struct pt_api *api, pt_call *call, const pt_value *v, pt_bytes *out)
{
    if (!v) {
        *out = (pt_bytes){"", 0};
        return 0;
    }
    int rc = api->eval(call, v, out);
    if (rc == 0)
        return 0;
    return rc == PT_AGAIN ? PT_AGAIN : PT_ERROR;
}

int ptl_body_get(const struct pt_api *api, pt_call *call, pt_msg m, pt_bytes *out)
{
    int rc = api->body_get(call, m, out);
    if (rc == 0)
        return 0;
    return rc == PT_AGAIN ? PT_AGAIN : PT_ERROR;
}

char *ptl_dup_bytes(const struct pt_api *api, pt_call *call, pt_bytes b)
{
    char *s = api->alloc(call, b.len + 1);
    if (s) {
        memcpy(s, b.data, b.len);
        s[b.len] = '\0';
    }
    return s;
}

int ptl_header_put(const struct pt_api *api, pt_call *call, pt_msg m, const char *name, const char *value)
{
    pt_bytes v = {value, strlen(value)};
    return api->header_set(call, m, (pt_bytes){name, strlen(name)}, &v, 1, PT_HEADER_OVERRIDE);
}

pt_status ptl_out_of_memory(const struct pt_api *api, pt_call *call)
{
    return api->fail(call, 500, "OutOfMemory", "the request arena could not grow");
}
