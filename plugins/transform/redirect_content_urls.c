/*
 * redirect_content_urls.c -- redirect-content-urls: the backend's base URL
 * in a body becomes the gateway's, or the reverse (with find-and-replace's
 * find_and_replace_all()).
 */
#include "transform.h"

/*
 * Outbound: the backend's base URL (the API's service URL) becomes the
 * gateway's (scheme://host/apiSuffix as the client called it); inbound the
 * reverse.  Only occurrences that end where a URL prefix can end are
 * rewritten ("http://b/base" matches in "http://b/base/x" but not in
 * "http://b/baseball").  Headers, such as Location, are left alone.
 */
static const char inbound_direction; /* its address marks an inbound instance */

int redirect_content_urls_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    *instance = api->compile_section(c) == PT_SECTION_INBOUND ? (void *)&inbound_direction : NULL;
    return 0;
}

pt_status redirect_content_urls_run(const struct pt_api *api, pt_call *call, void *inst)
{
    pt_bytes body;
    int st;
    if ((st = ptl_body_get(api, call, PT_MSG_CURRENT, &body)))
        return (pt_status)st;
    pt_bytes gw = api->url_base(call, PT_URL_GATEWAY), be = api->url_base(call, PT_URL_BACKEND);
    pt_bytes from = inst ? gw : be, to = inst ? be : gw;
    struct ptl_buf out;
    if (!find_and_replace_all(api, call, body, from, to, true, &out))
        return PT_OK;
    if (out.oom)
        return ptl_out_of_memory(api, call);
    return api->body_set(call, PT_MSG_CURRENT, ptl_buf_bytes(&out)) == 0 ? PT_OK : PT_ERROR;
}
