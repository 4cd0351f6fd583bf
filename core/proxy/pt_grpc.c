/*
 * pt_grpc -- the gateway's own answers to gRPC clients, and grpc-timeout
 * (see pt_grpc.h).
 *
 * A gRPC client reads the outcome of a call from grpc-status, not from the
 * HTTP status: a 401 with a JSON body reaches it as a protocol error
 * (or, at best, a status its library guesses from the HTTP code).  So a
 * refusal of the gateway's own -- no key, rate limit, no such method,
 * backend down -- goes out as gRPC's "trailers-only" response: HTTP 200,
 * content-type application/grpc, grpc-status and grpc-message, no body.
 * Over HTTP/2 the stream driver sends a body-less response as one HEADERS
 * frame with END_STREAM, which is exactly that shape.  The access log keeps
 * the HTTP status the refusal had (and its reason).
 */
#include "proxy/pt_grpc.h"

#include "http/pt_http.h"
#include "http/pt_msg.h"
#include "policy/pt_gen.h"

#include <stdio.h>
#include <string.h>

int pt_grpc_status_of(int http_status)
{
    if (http_status >= 200 && http_status < 300)
        return PT_GRPC_OK;
    switch (http_status) {
    case 400:
        return PT_GRPC_INVALID_ARGUMENT;
    case 401:
        return PT_GRPC_UNAUTHENTICATED;
    case 403:
        return PT_GRPC_PERMISSION_DENIED;
    case 404: /* no such API or method: gRPC's own mapping of 404 */
    case 405:
    case 501:
        return PT_GRPC_UNIMPLEMENTED;
    case 408:
    case 504:
        return PT_GRPC_DEADLINE_EXCEEDED;
    case 413:
    case 414:
    case 429:
    case 431:
        return PT_GRPC_RESOURCE_EXHAUSTED;
    case 499: /* the client went away */
        return PT_GRPC_CANCELLED;
    case 500:
        return PT_GRPC_INTERNAL;
    case 502:
    case 503:
        return PT_GRPC_UNAVAILABLE;
    }
    return PT_GRPC_UNKNOWN;
}

void pt_grpc_message_encode(struct pt_buf *b, const char *msg)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)msg; p && *p; p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '%')
            pt_buf_add(b, p, 1);
        else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            pt_buf_add(b, e, 3);
        }
    }
}

bool pt_grpc_timeout_parse(pt_str v, uint64_t *us)
{
    if (v.len < 2 || v.len > 9)
        return false;
    uint64_t n = 0;
    for (size_t i = 0; i + 1 < v.len; i++) {
        if (v.data[i] < '0' || v.data[i] > '9')
            return false;
        n = n * 10 + (uint64_t)(v.data[i] - '0');
    }
    switch (v.data[v.len - 1]) { /* at most 99999999 hours: fits in 64 bits of microseconds */
    case 'H':
        *us = n * 3600 * 1000000;
        return true;
    case 'M':
        *us = n * 60 * 1000000;
        return true;
    case 'S':
        *us = n * 1000000;
        return true;
    case 'm':
        *us = n * 1000;
        return true;
    case 'u':
        *us = n;
        return true;
    case 'n':
        *us = (n + 999) / 1000;
        return true;
    }
    return false;
}

bool pt_grpc_wanted(const struct pt_req *req)
{
    /* every gRPC call is a POST: a preflight or a GET to a gRPC API is answered as HTTP */
    const struct pt_apidef *api = req->api;
    if (api && api->cf->api_type == PT_APITYPE_GRPC && pt_str_eq(req->h.method, PT_STR("POST")))
        return true;
    struct pt_hdr *ct = pt_http_head_get((struct pt_head *)&req->h, pt_str_c("Content-Type"));
    return ct && ct->value.len >= 16 && !strncasecmp(ct->value.data, "application/grpc", 16) &&
           (ct->value.len == 16 || ct->value.data[16] == '+' || ct->value.data[16] == ';');
}

pt_str pt_grpc_error_fields(struct pt_req *req, int status, const char *message, pt_str extra)
{
    struct pt_buf h;
    pt_buf_init(&h, req->pool, 128 + extra.len);
    pt_buf_lit(&h, "Content-Type: application/grpc\r\ngrpc-status: ");
    pt_buf_u64(&h, (uint64_t)pt_grpc_status_of(status));
    if (message && *message && status >= 300) {
        pt_buf_lit(&h, "\r\ngrpc-message: ");
        pt_grpc_message_encode(&h, message);
    }
    if (extra.len) {
        pt_buf_lit(&h, "\r\n");
        pt_buf_str(&h, extra);
    }
    return (pt_str){h.p, h.n};
}

/* Is the response already a gRPC one (its content-type says so)? */
static bool grpc_response(struct pt_req *req)
{
    struct pt_hdr *ct = pt_http_head_get(&req->rh, pt_str_c("Content-Type"));
    return ct && ct->value.len >= 16 && !strncasecmp(ct->value.data, "application/grpc", 16);
}

const char *pt_grpc_own_answer(struct pt_req *req)
{
    if (req->rh_backend || !pt_grpc_wanted(req) || grpc_response(req))
        return NULL;
    int status = req->rh.status;
    const struct pt_lasterror *e = &req->ex.err;
    /* the error's message, as the JSON body has it (a 500 says no more than that) */
    if (req->ex.has_error && e->status == status && status != 500 && e->message && *e->message)
        return e->message;
    return pt_http_reason(status);
}

unsigned pt_grpc_deadline_ms(const struct pt_req *req, unsigned configured)
{
    struct pt_hdr *h = pt_http_head_get((struct pt_head *)&req->h, pt_str_c("grpc-timeout"));
    uint64_t us;
    if (!h || !pt_grpc_timeout_parse(h->value, &us))
        return configured;
    uint64_t spent = pt_clock_now_us() - req->t0;
    uint64_t left_ms = us > spent ? (us - spent + 999) / 1000 : 1; /* past: the timer fires at once */
    if (configured && configured < left_ms)
        return configured;
    return left_ms > UINT32_MAX ? UINT32_MAX : (unsigned)left_ms;
}
