/*
 * pt_corepol -- the policies the core implements itself: control flow
 * (choose, retry, include-fragment), set-variable, return-response,
 * mock-response and forward-request.  Their schemas live in the same
 * registry as plugins' policies, so validation and the policy reference
 * treat them alike.
 */
#ifndef PT_COREPOL_H
#define PT_COREPOL_H

#include "policy/pt_policy.h"

struct pt_req;

typedef struct pt_block *(*pt_parse_block_fn)(struct pt_polctx *pc, struct pt_node *list, int section,
                                               int depth, bool top, bool in_fragment);

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
/* Compiles a core statement (sets s->kind and s->data); plugins' statements pass through. */
bool pt_corepol_compile(struct pt_polctx *pc, struct pt_stmt *s, struct pt_node *attrs, int section,
                        int depth, bool in_fragment, pt_parse_block_fn parse_block);
/* Builds the response of a return-response statement into req->rh / resp_body. */
pt_status pt_corepol_return_response(struct pt_req *req, pt_call *call, const struct pt_stmt *s);
/* Milliseconds to wait before retry attempt `n` (1 = the first retry). */
uint32_t pt_corepol_retry_wait(const struct pt_retry *r, int n, uint64_t rnd);

#endif
