/*
 * pt_access -- which API, version, pipeline and product a request reaches,
 * and whether its subscription key lets it in: the access decision as APIM
 * makes it.
 */
#include "base/pt_log.h"
#include "base/pt_url.h"
#include "conf/pt_import_wsdl.h"
#include "conf/pt_router.h"
#include "event/pt_io.h"
#include "event/pt_tls.h"
#include "http/pt_http.h"
#include "http/pt_msg.h"
#include "lua/pt_lua.h"
#include "policy/pt_corepol.h"
#include "policy/pt_gen.h"
#include "policy/pt_pipeline.h"
#include "proxy/pt_proxy.h"
#include "proxy/pt_worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * The access decision, as APIM makes it.  A key (the API's header, else its
 * query parameter) must belong to an active subscription whose scope is all
 * APIs, this API, or a product holding this API (that product is then the
 * request's context); anything else is SubscriptionKeyInvalid.  Without a
 * key, an API in an open product runs in that product's context, an API
 * that does not require a subscription runs without one, and otherwise the
 * answer is SubscriptionKeyNotFound.  Returns NULL when the request may
 * go on, else the refusal (status 401) for the caller to answer.
 */
const struct pt_access_refusal *pt_access_check_key(struct pt_req *req)
{
    static const struct pt_access_refusal invalid = {
        401, "SubscriptionKeyInvalid",
        "Access denied due to invalid subscription key. Make sure to provide a valid key for an active "
        "subscription."};
    static const struct pt_access_refusal missing = {
        401, "SubscriptionKeyNotFound",
        "Access denied due to missing subscription key. Make sure to include subscription key when making "
        "requests to an API."};
    const struct pt_apidef *api = req->api;
    const struct pt_api_cf *ac = api->cf;
    struct pt_hdr *hk = pt_http_head_get(&req->h, pt_str_c(ac->key_header));
    pt_str key = PT_NULL_STR;
    bool present = false;
    if (hk) {
        key = hk->value;
        present = true;
    } else
        present = pt_url_query_param(req->h.query, pt_str_c(ac->key_query), &key);
    if (present) {
        const struct pt_subscription *s = pt_gen_find_key(req_gen(req), key);
        /* a blocked or deleted owner cannot call APIs */
        bool ok = s && s->cf->state == PT_SUB_ACTIVE && (!s->owner || s->owner->cf->state == 0) &&
                  (!s->cf->ends_ms || (int64_t)pt_clock_wall_ms() < s->cf->ends_ms); /* expired as APIM */
        if (ok) {
            switch (s->cf->scope_kind) {
            case PT_SUB_ALL_APIS:
                break;
            case PT_SUB_API:
                ok = s->api == api;
                break;
            case PT_SUB_PRODUCT:
                ok = s->product && pt_gen_product_has_api(s->product, api);
                if (ok)
                    req->product = s->product;
                break;
            }
        }
        if (!ok) {
            req->product = NULL;
            return &invalid;
        }
        req->sub = s;
        req->key = key;
        return NULL;
    }
    if (api->open_product) {
        req->product = api->open_product;
        return NULL;
    }
    if (!ac->subscription_required)
        return NULL;
    return &missing;
}

/*
 * The API answering at this suffix is one of the versions (one or more)
 * told apart by a query parameter or a header (the version set's names):
 * picks the one asked for (no version: the one without a version, the
 * "original"; none such, or another version: no API, 404) and matches the
 * operation within it.
 */
enum pt_route_result pt_access_match_version(struct pt_req *req)
{
    const struct pt_apidef *first = req->m.api;
    const struct pt_versionset_cf *vs = first->vset;
    pt_str want = PT_NULL_STR;
    bool given;
    if (vs->scheme == 1)
        given = pt_url_query_param(req->h.query, pt_str_c(vs->query_name), &want);
    else {
        struct pt_hdr *h = pt_http_head_get(&req->h, pt_str_c(vs->header_name));
        given = h != NULL;
        if (h)
            want = h->value;
    }
    for (int i = 0; i < first->nvgroup; i++) {
        const struct pt_apidef *a = first->vgroup[i];
        const char *v = a->cf->api_version ? a->cf->api_version : "";
        if (given ? pt_str_eq(want, pt_str_c(v)) && *v : !*v)
            return pt_router_match_in(req_gen(req)->router, a->ridx, req->h.method, req->m.rest, req->h.query,
                                      &req->m);
    }
    req->m.op = NULL;
    return PT_ROUTE_NO_API;
}

/*
 * An API of apiType soap (SOAP pass-through, docs/import.md) tells its
 * operations apart by the request's SOAP action, as APIM does: each
 * operation's template is "/?soapAction=ACTION".  The router matches query
 * constraints, so a POST is matched with the query "soapAction=ACTION"
 * made from the SOAPAction header (SOAP 1.1, quotes removed) or the action
 * parameter of Content-Type (SOAP 1.2), encoded as the WSDL import encodes
 * the templates; without an action, the operation imported without one
 * ("/") takes it.
 */
enum pt_route_result pt_access_match_soap(struct pt_req *req)
{
    const struct pt_apidef *a = req->m.api;
    pt_str action = PT_NULL_STR;
    struct pt_hdr *h = pt_http_head_get(&req->h, pt_str_c("SOAPAction"));
    if (h)
        action = h->value;
    else if ((h = pt_http_head_get(&req->h, pt_str_c("Content-Type")))) {
        /* application/soap+xml; charset=utf-8; action="urn:x" */
        const char *p = h->value.data, *end = h->value.data + h->value.len;
        while (p && p < end && (p = memchr(p, ';', (size_t)(end - p)))) {
            p++;
            while (p < end && (*p == ' ' || *p == '\t'))
                p++;
            if (end - p > 7 && !strncasecmp(p, "action=", 7)) {
                const char *v = p + 7, *e = memchr(v, ';', (size_t)(end - v));
                action = (pt_str){v, (size_t)((e ? e : end) - v)};
                break;
            }
        }
    }
    while (action.len && (action.data[action.len - 1] == ' ' || action.data[action.len - 1] == '\t'))
        action.len--;
    if (action.len >= 2 && action.data[0] == '"' && action.data[action.len - 1] == '"')
        action = (pt_str){action.data + 1, action.len - 2};
    size_t n = pt_import_wsdl_action_query(action.data, action.len, NULL, 0);
    char *q = pt_pool_alloc(req->pool, 11 + n + 1);
    if (!q)
        return PT_ROUTE_NO_OPERATION;
    memcpy(q, "soapAction=", 11);
    pt_import_wsdl_action_query(action.data, action.len, q + 11, n + 1);
    return pt_router_match_in(req_gen(req)->router, a->ridx, req->h.method, req->m.rest, (pt_str){q, 11 + n},
                              &req->m);
}

bool pt_access_protocol_allowed(const struct pt_api_cf *ac, bool tls)
{
    if (ac->protocols.n == 0)
        return true;
    for (int i = 0; i < ac->protocols.n; i++)
        if (!strcmp(ac->protocols.v[i], tls ? "https" : "http"))
            return true;
    return false;
}

/* The pipeline for the request's operation in its product context. */
const struct pt_pipeline *pt_access_pipeline(const struct pt_req *req)
{
    if (req->product)
        for (int i = 0; i < req->op->nprod; i++)
            if (req->op->prod[i].product == req->product)
                return req->op->prod[i].pipeline;
    return req->op->pipeline;
}

/* The request-body limit: the API's bodySize when it has one, else limits.bodySize. */
uint64_t pt_access_body_limit(struct pt_req *req)
{
    uint64_t global = req_gen(req)->conf->limits.body_size;
    uint64_t own = req->api ? req->api->cf->body_size : 0;
    return own && own < global ? own : global;
}

/*
 * The status paths of APIM's self-hosted gateway, answered on every gateway
 * listener before routing: GET or HEAD of exactly one of the two paths,
 * whatever the query (the path here has none).  Any other method goes on to
 * routing, so an API may still take POST there.  Most requests leave at the
 * length comparison.
 */
enum pt_access_status pt_access_status_path(pt_str method, pt_str path)
{
    static const char live[] = "/status-0123456789abcdef", ready[] = "/internal-status-0123456789abcdef";
    _Static_assert(sizeof(live) - 1 == PT_ACCESS_STATUS_LIVE_LEN &&
                       sizeof(ready) - 1 == PT_ACCESS_STATUS_READY_LEN,
                   "the status paths' lengths");
    if (PT_LIKELY(path.len != PT_ACCESS_STATUS_LIVE_LEN && path.len != PT_ACCESS_STATUS_READY_LEN))
        return PT_ACCESS_STATUS_NONE;
    if (!pt_str_eq(method, PT_STR("GET")) && !pt_str_eq(method, PT_STR("HEAD")))
        return PT_ACCESS_STATUS_NONE;
    if (pt_str_eq(path, PT_STR(live)))
        return PT_ACCESS_STATUS_LIVE;
    if (pt_str_eq(path, PT_STR(ready)))
        return PT_ACCESS_STATUS_READY;
    return PT_ACCESS_STATUS_NONE;
}
