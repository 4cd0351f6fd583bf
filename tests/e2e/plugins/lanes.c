/*
 * lanes.c -- a test plugin for tests/e2e/test_wait.py: statements that
 * suspend on a timer (so that wait's lanes have something to wait for
 * before send-request exists) and that put a response in a variable.
 * Built by the test with the SDK header alone; never installed.
 *
 *   test-sleep:   {ms, name, value, fail, response, inline, cancel-at-end, hook}
 *       waits ms milliseconds (a timer of its call), then sets variable
 *       name to value (with response: true, to a response object whose
 *       status is 200 and whose body is value), writes "test-sleep NAME
 *       fired" to the log and resumes; fail: true resumes with an error
 *       (reason TestFailure).  inline: true resumes from inside run().
 *       cancel-at-end: true cancels the timer from an at_end hook when it
 *       has not fired (a lane that lost keeps its handle), logging "test-sleep
 *       NAME cancelled at end".  hook: true registers an at_response hook
 *       that sets the response header X-Hook-NAME: 1.
 *   test-respvar: {name, status, reason, body, header-name, header-value, nil}
 *       sets variable name to a response object at once (nil: to nil).
 */
#include <portico/plugin.h>

#include <stdio.h>
#include <string.h>

static const struct pt_attr_def sleep_attrs[] = {
    {"ms", PT_ATTR_INT, 0, "0", NULL, NULL, 0, 60000, "milliseconds to wait"},
    {"name", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "variable to set"},
    {"value", PT_ATTR_STRING, PT_ATTR_EXPR, "done", NULL, NULL, 0, 0, "its value"},
    {"fail", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0, "resume with an error"},
    {"response", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0, "set a response object"},
    {"inline", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0, "resume from inside run()"},
    {"cancel-at-end", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0, "cancel the timer from at_end"},
    {"hook", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0, "an at_response hook setting X-Hook-NAME"},
    {0},
};

static const struct pt_attr_def respvar_attrs[] = {
    {"name", PT_ATTR_STRING, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "variable to set"},
    {"status", PT_ATTR_INT, 0, "200", NULL, NULL, 0, 2000, "status"},
    {"reason", PT_ATTR_STRING, 0, "", NULL, NULL, 0, 0, "reason phrase"},
    {"body", PT_ATTR_STRING, PT_ATTR_EXPR, "", NULL, NULL, 0, 0, "body"},
    {"header-name", PT_ATTR_STRING, 0, NULL, NULL, NULL, 0, 0, "one header's name"},
    {"header-value", PT_ATTR_STRING, PT_ATTR_EXPR, NULL, NULL, NULL, 0, 0,
     "its value (given twice: two fields)"},
    {"nil", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0, "set nil instead"},
    {0},
};

struct sleep_cf {
    int64_t ms;
    const char *name;
    pt_value *value;
    int fail, response, inline_resume, cancel_at_end, hook;
};

/* One run's timer, for cancel-at-end (request memory). */
struct sleep_run {
    const struct sleep_cf *s;
    pt_timer *t; /* NULL once fired */
};

struct respvar_cf {
    const char *name;
    int64_t status;
    const char *reason;
    pt_value *body;
    const char *hname;
    pt_value *hvalue;
    int nil;
};

static int sleep_compile(const struct pt_api *api, pt_compile *c, void **inst)
{
    struct sleep_cf *s = api->compile_alloc(c, sizeof(*s));
    s->ms = api->attr_int(c, "ms", 0);
    s->name = api->attr_literal(c, "name");
    s->value = api->attr_value(c, "value");
    s->fail = api->attr_bool(c, "fail", 0);
    s->response = api->attr_bool(c, "response", 0);
    s->inline_resume = api->attr_bool(c, "inline", 0);
    s->cancel_at_end = api->attr_bool(c, "cancel-at-end", 0);
    s->hook = api->attr_bool(c, "hook", 0);
    *inst = s;
    return 0;
}

static const struct pt_api *A;

/* Sets the variable; 0 or -1 (the error is set). */
static int finish(pt_call *call, const struct sleep_cf *s)
{
    pt_bytes v = {"done", 4};
    if (s->value && A->eval(call, s->value, &v) != 0)
        return -1;
    pt_bytes name = {s->name, strlen(s->name)};
    if (s->response) {
        pt_bytes hn[1] = {{"X-Lane", 6}}, hv[1] = {{s->name, strlen(s->name)}};
        struct pt_http_resp r = {200, {"OK", 2}, hn, hv, 1, v};
        return A->var_set_response(call, name, &r);
    }
    return A->var_set(call, name, v);
}

static void fired(pt_call *call, void *arg)
{
    struct sleep_run *r = arg;
    const struct sleep_cf *s = r->s;
    r->t = NULL; /* the handle is spent */
    A->log(PT_LOG_LEVEL_INFO, "test-sleep %s fired", s->name);
    if (s->fail) {
        A->fail(call, 502, "TestFailure", "test-sleep was told to fail");
        A->resume(call, PT_ERROR);
        return;
    }
    A->resume(call, finish(call, s) == 0 ? PT_OK : PT_ERROR);
}

static void cancel_at_end(void *arg, int status, uint64_t in, uint64_t out)
{
    (void)status;
    (void)in;
    (void)out;
    struct sleep_run *r = arg;
    if (!r->t)
        return;
    A->timer_cancel(r->t);
    r->t = NULL;
    A->log(PT_LOG_LEVEL_INFO, "test-sleep %s cancelled at end", r->s->name);
}

static void hook(pt_call *call, void *arg)
{
    const struct sleep_cf *s = arg;
    char name[80];
    snprintf(name, sizeof(name), "X-Hook-%s", s->name);
    pt_bytes v = {"1", 1};
    A->header_set(call, PT_MSG_RESPONSE, (pt_bytes){name, strlen(name)}, &v, 1, PT_HEADER_OVERRIDE);
}

static pt_status sleep_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct sleep_cf *s = inst;
    api->log(PT_LOG_LEVEL_INFO, "test-sleep %s started", s->name);
    if (s->hook)
        api->at_response(call, hook, (void *)s);
    if (s->inline_resume) {
        if (finish(call, s) != 0)
            return PT_ERROR;
        api->resume(call, PT_OK);
        return PT_AGAIN;
    }
    struct sleep_run *r = api->alloc(call, sizeof(*r));
    if (!r)
        return api->fail(call, 500, "TestFailure", "no memory");
    r->s = s;
    r->t = api->timer_start(call, (uint32_t)s->ms, fired, r);
    if (!r->t)
        return api->fail(call, 500, "TestFailure", "no timer");
    if (s->cancel_at_end)
        api->at_end(call, cancel_at_end, r);
    return PT_AGAIN;
}

static int respvar_compile(const struct pt_api *api, pt_compile *c, void **inst)
{
    struct respvar_cf *r = api->compile_alloc(c, sizeof(*r));
    r->name = api->attr_literal(c, "name");
    r->status = api->attr_int(c, "status", 200);
    r->reason = api->attr_literal(c, "reason");
    r->body = api->attr_value(c, "body");
    r->hname = api->attr_literal(c, "header-name");
    r->hvalue = api->attr_value(c, "header-value");
    r->nil = api->attr_bool(c, "nil", 0);
    *inst = r;
    return 0;
}

static pt_status respvar_run(const struct pt_api *api, pt_call *call, void *inst)
{
    const struct respvar_cf *r = inst;
    pt_bytes name = {r->name, strlen(r->name)};
    if (r->nil)
        return api->var_set_response(call, name, NULL) == 0 ? PT_OK : PT_ERROR;
    pt_bytes body = {"", 0};
    if (r->body) {
        int rc = api->eval(call, r->body, &body);
        if (rc == PT_AGAIN)
            return PT_AGAIN;
        if (rc != 0)
            return PT_ERROR;
    }
    pt_bytes hn[3] = {{"Content-Type", 12}, {0, 0}, {0, 0}};
    pt_bytes hv[3] = {{"application/json", 16}, {0, 0}, {0, 0}};
    int nh = 1;
    if (r->hname) {
        pt_bytes v = {"", 0};
        if (r->hvalue && api->eval(call, r->hvalue, &v) != 0)
            return PT_ERROR;
        hn[1] = hn[2] = (pt_bytes){r->hname, strlen(r->hname)};
        hv[1] = hv[2] = v;
        nh = 3;
    }
    struct pt_http_resp resp = {
        (int)r->status, {r->reason ? r->reason : "", r->reason ? strlen(r->reason) : 0}, hn, hv, nh, body};
    if (api->var_set_response(call, name, &resp) != 0)
        return api->fail(call, 500, "TestRefused", "var_set_response refused the response");
    /* read it back: what a plugin sees */
    struct pt_http_resp back;
    if (api->var_get_response(call, name, &back) != 1 || back.status != resp.status ||
        back.body.len != body.len)
        return api->fail(call, 500, "TestRefused", "var_get_response does not return it");
    return PT_OK;
}

static int init(const struct pt_api *api, const char **err)
{
    (void)err;
    A = api;
    return 0;
}

static const struct pt_policy_def policies[] = {
    {"test-sleep", PT_SECTION_ALL, PT_SCOPE_ALL, 0, sleep_attrs, sleep_compile, sleep_run, NULL,
     "Test only: waits, then sets a variable."},
    {"test-respvar", PT_SECTION_ALL, PT_SCOPE_ALL, 0, respvar_attrs, respvar_compile, respvar_run, NULL,
     "Test only: puts a response in a variable."},
    {0},
};

PT_PLUGIN("test-lanes", "1.0", policies, init, NULL);
