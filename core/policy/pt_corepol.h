/*
 * pt_corepol -- the policies the core implements itself: control flow
 * (choose, retry, include-fragment), set-variable, return-response,
 * mock-response and forward-request.  Their schemas live in the same
 * registry as plugins' policies and go through the same SDK table
 * (compile() and run()), so validation, the policy reference and the
 * driver treat them alike.  choose, retry and forward-request compile into
 * statement kinds the pipeline driver steps through itself.
 */
#ifndef PT_COREPOL_H
#define PT_COREPOL_H

#include "policy/pt_policy.h"

struct pt_retry {
    struct pt_value *cond;
    int count;
    uint32_t interval_ms, max_interval_ms, delta_ms;
    bool first_fast;
};

struct pt_forward {
    uint32_t timeout_ms; /* 0 = not given: upstream.readTimeout applies */
    bool buffer_request_body;
    bool buffer_response;
    bool fail_on_error_status;
    bool follow_redirects;
    uint8_t http_version; /* PT_FWD_H1, PT_FWD_H2_OR1, PT_FWD_H2, PT_FWD_API (http/pt_msg.h) */
};

/* The frames a lane of wait has: its child and the branches of choose statements nested in it. */
#define PT_COREPOL_LANE_DEPTH 16

struct pt_wait {
    bool any; /* for="any": the first lane to finish ends the wait */
};

struct pt_rr_header {
    struct pt_value *name;
    struct pt_value **values;
    int nvalues;
    pt_header_mode mode;
};

struct pt_return_response {
    const char *var; /* response-variable-name */
    struct pt_value *code, *reason;
    struct pt_rr_header *headers;
    int nheaders;
    struct pt_value *body;
};

/* Adds the core policies to a registry. */
void pt_corepol_register(struct pt_registry *r);
/* The YAML of a statement whose shape is not a map of attributes (choose),
   for the policy reference; NULL for the others. */
const char *pt_corepol_example(const char *name);
/* Milliseconds to wait before retry attempt `n` (1 = the first retry). */
uint32_t pt_corepol_retry_wait(const struct pt_retry *r, int n, uint64_t rnd);

#endif
