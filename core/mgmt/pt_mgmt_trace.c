/*
 * pt_mgmt_trace -- request tracing through the management API (docs/tracing.md):
 *
 *   POST gateways/managed/listDebugCredentials  {credentialsExpireAfter, apiId, purposes}
 *        -> {"token"}: a debug token for one API (http/pt_tracetoken)
 *   POST gateways/managed/listTrace  {traceId} -> the trace (http/pt_trace's store)
 *   GET  gateways/managed/traces/{id}?expires=&sig=  -> the trace, without a bearer
 *        token while the signature (Ocp-Apim-Trace-Location's) holds; with a
 *        bearer token, as listTrace.
 *
 * Who may: whoever may change the API -- the administrator, and inside their
 * workspace its contributors and API developers (at a workspace path only that
 * workspace's APIs and their traces exist).  Readers may not: a trace holds
 * what policies put in headers and variables, secret named values included,
 * which readers may not see.
 */
#include "base/pt_log.h"
#include "http/pt_trace.h"
#include "http/pt_tracetoken.h"
#include "mgmt/pt_mgmt_int.h"

#include <stdio.h>
#include <stdlib.h>

/* The longest a debug token may live (APIM: one hour). */
#define CREDENTIALS_MAX_MS 3600000ULL

void pt_mgmt_trace_credentials(struct mreq *m)
{
    if (!pt_mgmt_auth_authorize(m, true))
        return;
    json_t *body = pt_mgmt_req_body(m, false);
    if (!body)
        return;
    const char *fail = NULL;
    json_t *exp = json_object_get(body, "credentialsExpireAfter");
    json_t *api = json_object_get(body, "apiId");
    json_t *purposes = json_object_get(body, "purposes");
    uint64_t ms = CREDENTIALS_MAX_MS;
    if (!json_is_object(body))
        fail = "the body must be an object {credentialsExpireAfter, apiId, purposes}";
    else if (!json_is_string(api) || !*json_string_value(api))
        fail = "apiId: required (an API id, or /apis/{id})";
    else if (exp && (!json_is_string(exp) || !pt_tracetoken_duration_ms(json_string_value(exp), &ms) || !ms))
        fail = "credentialsExpireAfter: expected an ISO 8601 duration such as PT1H or PT30M";
    else if (ms > CREDENTIALS_MAX_MS)
        fail = "credentialsExpireAfter: at most PT1H (one hour)";
    else if (purposes && (!json_is_array(purposes) || !json_array_size(purposes)))
        fail = "purposes: expected a list, [\"tracing\"]";
    for (size_t i = 0; !fail && purposes && i < json_array_size(purposes); i++) {
        const char *p = json_string_value(json_array_get(purposes, i));
        if (!p || strcmp(p, "tracing"))
            fail = "purposes: the only purpose is \"tracing\"";
    }
    if (fail) {
        pt_mgmt_req_send_error(m, 400, "ValidationError", "%s", fail);
        json_decref(body);
        return;
    }
    const char *id = pt_tracetoken_api_id(json_string_value(api));
    if (!pt_mgmt_entities_get(m, "api", "", id, NULL, NULL)) {
        pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "api '%s' not found", id);
        json_decref(body);
        return;
    }
    char token[PT_TRACETOKEN_MAX];
    if (!pt_tracetoken_sign(&pt_tracetoken_debug_key, id, pt_clock_wall_ms() + ms, token)) {
        pt_mgmt_req_send_error(m, 500, "InternalError", "cannot make a debug token (no secret key)");
        json_decref(body);
        return;
    }
    pt_info("management: debug credentials for api '%s' (%llu s)", id, (unsigned long long)(ms / 1000));
    pt_mgmt_req_send_json(m, 200, json_pack("{s:s}", "token", token), NULL);
    json_decref(body);
}

/* Answers with the trace `id` when it exists and this request may see its API (else 404). */
static void send_trace(struct mreq *m, const char *id, bool check_scope)
{
    char api[256], ws[128];
    char *text = strlen(id) == 32 ? pt_trace_store_get(id, api, ws) : NULL;
    /* a workspace path sees its own APIs' traces only; the service path, every one */
    if (text && check_scope && m->ws && strcmp(ws, m->ws)) {
        free(text);
        text = NULL;
    }
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    if (!j) {
        pt_mgmt_req_send_error(m, 404, "ResourceNotFound", "trace '%s' not found (unknown, or expired)", id);
        return;
    }
    pt_mgmt_req_send_json(m, 200, j, NULL);
}

void pt_mgmt_trace_list(struct mreq *m)
{
    if (!pt_mgmt_auth_authorize(m, true))
        return;
    json_t *body = pt_mgmt_req_body(m, false);
    if (!body)
        return;
    const char *id = json_string_value(json_object_get(body, "traceId"));
    if (!id || !*id)
        pt_mgmt_req_send_error(m, 400, "ValidationError", "traceId: required");
    else
        send_trace(m, id, true);
    json_decref(body);
}

bool pt_mgmt_trace_signed(struct mreq *m)
{
    const char *sig = pt_mgmt_req_param(m, "sig");
    if (!sig)
        return false; /* a bearer token decides */
    const char *exp = pt_mgmt_req_param(m, "expires");
    char *end = NULL;
    unsigned long long e = exp ? strtoull(exp, &end, 10) : 0;
    if (m->ws || !exp || !*exp || *end || !m->id ||
        !pt_tracetoken_location_ok(&pt_tracetoken_location_key, m->id, e, sig)) {
        pt_mgmt_req_send_error(m, 403, "Forbidden", "the trace location's signature does not hold");
        return true;
    }
    if (pt_clock_wall_ms() / 1000 >= e) {
        pt_mgmt_req_send_error(m, 403, "Forbidden", "the trace location has expired");
        return true;
    }
    send_trace(m, m->id, false);
    return true;
}

void pt_mgmt_trace_get(struct mreq *m)
{
    if (!pt_mgmt_auth_authorize(m, true))
        return;
    send_trace(m, m->id, true);
}
