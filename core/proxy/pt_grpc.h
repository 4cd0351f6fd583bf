/*
 * pt_grpc -- gRPC requests at the gateway: the gateway's own answers as gRPC
 * errors (trailers-only responses: HTTP 200, content-type application/grpc,
 * grpc-status and grpc-message), and the grpc-timeout request header as the
 * backend call's deadline.  See docs/grpc.md.
 */
#ifndef PT_GRPC_H
#define PT_GRPC_H

#include "base/pt.h"
#include "base/pt_buf.h"

struct pt_req;

/* gRPC status codes the gateway answers with. */
enum {
    PT_GRPC_OK = 0,
    PT_GRPC_CANCELLED = 1,
    PT_GRPC_UNKNOWN = 2,
    PT_GRPC_INVALID_ARGUMENT = 3,
    PT_GRPC_DEADLINE_EXCEEDED = 4,
    PT_GRPC_PERMISSION_DENIED = 7,
    PT_GRPC_RESOURCE_EXHAUSTED = 8,
    PT_GRPC_UNIMPLEMENTED = 12,
    PT_GRPC_INTERNAL = 13,
    PT_GRPC_UNAVAILABLE = 14,
    PT_GRPC_UNAUTHENTICATED = 16,
};

/* The gRPC status for an HTTP status of the gateway's own (2xx: OK; docs/grpc.md has the table). */
int pt_grpc_status_of(int http_status);
/* Appends msg percent-encoded as grpc-message wants it (bytes outside 0x20..0x7e, and '%'). */
void pt_grpc_message_encode(struct pt_buf *b, const char *msg);
/* A grpc-timeout value ("10S", "500m", "100u": 1 to 8 digits and one of H M S m u n) in
   microseconds; false when it is not one. */
bool pt_grpc_timeout_parse(pt_str v, uint64_t *us);

/* Is this a gRPC call: a POST to an API of apiType grpc, or a request whose content-type is
   application/grpc[+...]? */
bool pt_grpc_wanted(const struct pt_req *req);
/* The header lines (CRLF between them, none after) that make the gateway's refusal a trailers-only
   gRPC response, to be sent with status 200 and no body: content-type, grpc-status, grpc-message,
   then `extra` (kept). */
pt_str pt_grpc_error_fields(struct pt_req *req, int status, const char *message, pt_str extra);
/* A response the gateway made itself (an error, return-response, mock-response) about to go to a
   gRPC client without being a gRPC response: the grpc-message to answer it with as a gRPC error
   (its status mapped); NULL when the response should go as it is. */
const char *pt_grpc_own_answer(struct pt_req *req);
/* The backend call's deadline in ms: `configured` (forward-request timeout, 0 = none) or what is
   left of the client's grpc-timeout, whichever is sooner (at least 1 once a grpc-timeout is given).
   A malformed grpc-timeout is ignored. */
unsigned pt_grpc_deadline_ms(const struct pt_req *req, unsigned configured);

#endif
