/*
 * validate_status_code.c -- validate-status-code: the response's status
 * against the statuses the operation's definition declares.
 *
 * A status is declared when a response of the definition has it as its
 * statusCode, or when the definition has a `default` response (OpenAPI's
 * `default` stands for every status not listed).  An undeclared status is
 * handled by its <status-code> override, else unspecified-status-code-action;
 * overrides never apply to declared statuses.  A call that matched no
 * operation has nothing to check against and passes.
 */
#include "validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct pt_attr_def status_code_attrs[] = {
    {"code", PT_ATTR_INT, PT_ATTR_REQUIRED, NULL, NULL, NULL, 100, 599, "the status"},
    {"action", PT_ATTR_ENUM, PT_ATTR_REQUIRED, NULL, report_actions, NULL, 0, 0,
     "ignore, detect or prevent, when the definition does not declare it"},
    {0},
};

const struct pt_attr_def validate_status_code_attrs[] = {
    {"unspecified-status-code-action", PT_ATTR_ENUM, PT_ATTR_REQUIRED, NULL, report_actions, NULL, 0, 0,
     "ignore, detect or prevent, for a status the definition does not declare"},
    {"errors-variable-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0,
     "variable receiving the errors found, a JSON array text of {Name, Type, ValidationRule, Details, "
     "Action}"},
    {"status-code", PT_ATTR_ELEMENT, PT_ATTR_MULTI, NULL, NULL, status_code_attrs, 0, 0,
     "the action for one undeclared status"},
    {0},
};

struct vs {
    struct defs *defs;
    int unspecified;
    const char *var;
    struct override *codes;
    int ncodes;
};

int validate_status_code_compile(const struct pt_api *api, pt_compile *c, void **instance)
{
    struct vs *x = api->compile_alloc(c, sizeof(*x));
    x->defs = defs_new();
    *instance = x;
    if (!x->defs) {
        api->compile_error(c, NULL, "out of memory");
        return -1;
    }
    x->unspecified = api->attr_enum(c, "unspecified-status-code-action", ACT_IGNORE);
    x->var = api->attr_literal(c, "errors-variable-name");
    pt_element **els;
    int n = api->attr_elements(c, "status-code", &els);
    if (report_overrides(api, c, els, n, "code", &x->codes, &x->ncodes))
        return -1;
    for (int i = 0; i < x->ncodes; i++) {
        char *end;
        long v = strtol(x->codes[i].name, &end, 10);
        if (*end || v < 100 || v > 599) {
            api->compile_error(c, "status-code", "status-code: code must be from 100 to 599");
            return -1;
        }
    }
    return 0;
}

void validate_status_code_free(void *inst)
{
    struct vs *x = inst;
    if (x)
        defs_free(x->defs);
}

pt_status validate_status_code_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct vs *x = inst;
    const json_t *op = defs_operation(x->defs, api, call);
    if (!op)
        return PT_OK;
    int status = api->status(call);
    if (defs_response(op, status))
        return PT_OK;
    char code[16];
    snprintf(code, sizeof(code), "%d", status);
    int action =
        report_override_action(x->codes, x->ncodes, (pt_bytes){code, strlen(code)}, false, x->unspecified);
    struct report r;
    report_init(&r, api, call, "validate-status-code", x->var, true);
    report_add(&r, action, code, "StatusCode", "Unspecified",
               report_fmt(api, call, "Response status code %d is not allowed.", status), REPORT_NEUTRAL);
    return report_finish(&r);
}
