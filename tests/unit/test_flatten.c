/*
 * test_flatten -- composing scopes (pt_policy_flatten): documents of the
 * operation, API, product, workspace and global scopes parsed from YAML
 * with pt_policy_doc, spliced by `base`, absent and empty sections, the
 * default forward-request, and policies allowed once per section.
 *
 * Statements carry their `id`, so a composed section is rendered as
 * "name#id@scope, ..." and compared whole.
 */
#include "lua/pt_expr.h"
#include "policy/pt_api.h"
#include "policy/pt_corepol.h"
#include "policy/pt_policy.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

enum { OP, API, PRODUCT, WORKSPACE, GLOBAL, NSCOPES };
static const int scope_bits[NSCOPES] = {PT_SCOPE_OPERATION, PT_SCOPE_API, PT_SCOPE_PRODUCT,
                                        PT_SCOPE_WORKSPACE, PT_SCOPE_GLOBAL};
static const char *const files[NSCOPES] = {"op.yaml", "api.yaml", "product.yaml", "workspace.yaml",
                                           "global.yaml"};

static const struct pt_policy_def test_defs[] = {
    {"alpha", PT_SECTION_ALL, PT_SCOPE_ALL, 0, NULL, NULL, NULL, NULL, "test"},
    {"beta", PT_SECTION_ALL, PT_SCOPE_ALL, 0, NULL, NULL, NULL, NULL, "test"},
    {"only-once", PT_SECTION_ALL, PT_SCOPE_ALL, PT_POLICY_ONCE_PER_SECTION, NULL, NULL, NULL, NULL, "test"},
    {"api-only", PT_SECTION_INBOUND, PT_SCOPE_API, 0, NULL, NULL, NULL, NULL, "test"},
    {0},
};

static struct {
    struct pt_pool *pool;
    struct pt_errors errs;
    struct pt_registry *reg;
    struct pt_polctx pc;
    struct pt_doc *docs[NSCOPES];
    struct pt_pipeline pl;
} F;

static int setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof(F));
    F.pool = pt_pool_new(16 * 1024);
    F.reg = pt_registry_new();
    pt_corepol_register(F.reg);
    for (const struct pt_policy_def *d = test_defs; d->name; d++)
        assert_true(pt_registry_add(F.reg, d, "test", NULL));
    F.pc.pool = F.pool;
    F.pc.errs = &F.errs;
    F.pc.reg = F.reg;
    F.pc.exprs = pt_expr_table_new(F.pool);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pt_policy_release(&F.pc);
    pt_expr_table_free(F.pc.exprs);
    pt_registry_free(F.reg);
    pt_node_errors_clear(&F.errs);
    pt_pool_free(F.pool);
    return 0;
}

static void dump_errors(void)
{
    for (int i = 0; i < F.errs.n; i++)
        print_message("# error: %s\n", F.errs.msgs[i]);
}

static struct pt_node *yaml(const char *file, const char *text)
{
    struct pt_node *n = pt_node_parse_yaml(F.pool, file, text, strlen(text), &F.errs);
    dump_errors();
    assert_non_null(n);
    return n;
}

/* Parses a scope's `policies:` map; NULL text: a scope without policies. */
static struct pt_doc *doc_try(int level, const char *text)
{
    struct pt_node *n = text ? yaml(files[level], text) : NULL;
    return pt_policy_doc(&F.pc, n, scope_bits[level]);
}

static void doc(int level, const char *text)
{
    F.docs[level] = doc_try(level, text);
    dump_errors();
    assert_non_null(F.docs[level]);
    assert_int_equal(F.errs.n, 0);
}

static const char *render(const struct pt_block *b)
{
    static char out[4][1024];
    static int k;
    char *o = out[k++ & 3];
    size_t n = 0;
    o[0] = '\0';
    for (int i = 0; i < b->n; i++) {
        const struct pt_stmt *s = b->s[i];
        n += (size_t)snprintf(o + n, sizeof(out[0]) - n, "%s%s%s%s@%s", i ? ", " : "", s->name,
                              s->id ? "#" : "", s->id ? s->id : "", pt_msg_scope_of(s->scope)->name);
    }
    return o;
}

static bool flatten(void)
{
    return pt_policy_flatten(&F.pc, F.docs, NSCOPES, &F.pl);
}

static void expect_sections(const char *in, const char *be, const char *out, const char *err)
{
    assert_string_equal(render(&F.pl.sec[PT_SEC_INBOUND]), in);
    assert_string_equal(render(&F.pl.sec[PT_SEC_BACKEND]), be);
    assert_string_equal(render(&F.pl.sec[PT_SEC_OUTBOUND]), out);
    assert_string_equal(render(&F.pl.sec[PT_SEC_ON_ERROR]), err);
}

static void expect_error(int i, const char *msg)
{
    dump_errors();
    assert_true(i < F.errs.n);
    assert_string_equal(F.errs.msgs[i], msg);
}

/* ------------------------------------------------------------------ tests */

static void test_defaults(void **state)
{
    (void)state;
    /* no documents at all */
    assert_true(flatten());
    expect_sections("", "forward-request@global", "", "");
    const struct pt_stmt *fw = F.pl.sec[PT_SEC_BACKEND].s[0];
    assert_int_equal(fw->kind, PT_ST_FORWARD);
    assert_null(fw->node);
    assert_null(fw->id);
    const struct pt_forward *f = fw->data;
    assert_non_null(f);
    assert_int_equal(f->timeout_ms, 0); /* upstream.readTimeout applies */
    assert_false(f->buffer_request_body);
    assert_false(f->fail_on_error_status);
    assert_false(f->follow_redirects);

    /* documents without policies, or with `policies:` empty */
    for (int i = 0; i < NSCOPES; i++)
        doc(i, i % 2 ? NULL : "~\n");
    assert_true(flatten());
    expect_sections("", "forward-request@global", "", "");
    assert_int_equal(F.errs.n, 0);
}

static void test_base_splices_outer_scopes(void **state)
{
    (void)state;
    doc(OP, "inbound:\n  - alpha: {id: op1}\n  - base\n  - alpha: {id: op2}\n");
    doc(API, "inbound:\n  - alpha: {id: api1}\n  - base\n");
    doc(PRODUCT, "inbound:\n  - base\n  - beta: {id: prod1}\n");
    F.docs[WORKSPACE] = NULL; /* skipped */
    doc(GLOBAL, "inbound:\n  - alpha: {id: g1}\n  - base\n  - alpha: {id: g2}\n");
    assert_true(flatten());
    expect_sections(
        "alpha#op1@operation, alpha#api1@api, alpha#g1@global, alpha#g2@global, beta#prod1@product, "
        "alpha#op2@operation",
        "forward-request@global", "", "");
}

static void test_base_in_every_section(void **state)
{
    (void)state;
    doc(API, "inbound: [base, {alpha: {id: a-in}}]\n"
             "backend: [{beta: {id: a-be}}, base]\n"
             "outbound: [{alpha: {id: a-out}}, base]\n"
             "on-error: [base, {beta: {id: a-err}}]\n");
    doc(WORKSPACE, "inbound: [{alpha: {id: w-in}}]\n"
                   "outbound: [base, {alpha: {id: w-out}}]\n"
                   "on-error: [{beta: {id: w-err}}, base]\n");
    doc(GLOBAL, "outbound: [{alpha: {id: g-out}}]\n"
                "on-error: [{beta: {id: g-err}}]\n");
    assert_true(flatten());
    expect_sections("alpha#w-in@workspace, alpha#a-in@api", "beta#a-be@api, forward-request@global",
                    "alpha#a-out@api, alpha#g-out@global, alpha#w-out@workspace",
                    "beta#w-err@workspace, beta#g-err@global, beta#a-err@api");
}

static void test_base_at_global_is_nothing(void **state)
{
    (void)state;
    doc(GLOBAL, "inbound: [{alpha: {id: g1}}, base, {alpha: {id: g2}}]\n"
                "backend: [{alpha: {id: g-be}}, base]\n");
    assert_true(flatten());
    /* a global backend section that exists replaces the default, even with base in it */
    expect_sections("alpha#g1@global, alpha#g2@global", "alpha#g-be@global", "", "");
}

static void test_base_twice(void **state)
{
    (void)state;
    /* nothing refuses base twice: the outer statements appear twice */
    doc(OP, "outbound: [base, {beta: {id: mid}}, base]\n");
    doc(GLOBAL, "outbound: [{alpha: {id: g}}]\n");
    assert_true(flatten());
    expect_sections("", "forward-request@global", "alpha#g@global, beta#mid@operation, alpha#g@global", "");
    assert_ptr_equal(F.pl.sec[PT_SEC_OUTBOUND].s[0], F.pl.sec[PT_SEC_OUTBOUND].s[2]);
}

static void test_absent_section_is_base(void **state)
{
    (void)state;
    /* the operation has only inbound; its other sections are the API's, whose
       absent ones are the outer scopes' */
    doc(OP, "inbound: [{alpha: {id: op-in}}]\n");
    doc(API, "outbound: [{alpha: {id: api-out}}]\n");
    doc(PRODUCT, "on-error: [{beta: {id: prod-err}}]\n");
    doc(GLOBAL, "inbound: [{alpha: {id: g-in}}]\n"
                "outbound: [{alpha: {id: g-out}}]\n"
                "on-error: [{beta: {id: g-err}}]\n");
    assert_true(flatten());
    /* the operation's inbound has no base: the global inbound is dropped */
    expect_sections("alpha#op-in@operation", "forward-request@global", "alpha#api-out@api",
                    "beta#prod-err@product");
}

static void test_empty_section_drops_outer_scopes(void **state)
{
    (void)state;
    doc(API, "inbound: []\n"
             "backend: []\n"
             "outbound:\n");
    doc(GLOBAL, "inbound: [{alpha: {id: g-in}}]\n"
                "outbound: [{alpha: {id: g-out}}]\n"
                "on-error: [{beta: {id: g-err}}]\n");
    assert_true(flatten());
    /* `[]` and a key without a value both mean "nothing"; no forward-request either */
    expect_sections("", "", "", "beta#g-err@global");
    assert_int_equal(F.pl.sec[PT_SEC_BACKEND].n, 0);
}

static void test_default_forward_where_base_reaches_global(void **state)
{
    (void)state;
    doc(OP, "backend: [{alpha: {id: op-before}}, base, {alpha: {id: op-after}}]\n");
    doc(API, "backend: [base, {beta: {id: api-after}}]\n");
    doc(GLOBAL, "inbound: [{alpha: {id: g-in}}]\n");
    assert_true(flatten());
    expect_sections("alpha#g-in@global",
                    "alpha#op-before@operation, forward-request@global, beta#api-after@api, "
                    "alpha#op-after@operation",
                    "", "");
    assert_int_equal(F.pl.sec[PT_SEC_BACKEND].s[1]->kind, PT_ST_FORWARD);
    teardown(NULL);
    setup(NULL);

    /* a scope's own forward-request without base: no default */
    doc(PRODUCT, "backend:\n  - forward-request: {timeout: 5, fail-on-error-status-code: true}\n");
    doc(API, "backend: [{alpha: {id: a}}, base]\n");
    assert_true(flatten());
    expect_sections("", "alpha#a@api, forward-request@product", "", "");
    const struct pt_stmt *fw = F.pl.sec[PT_SEC_BACKEND].s[1];
    assert_int_equal(fw->kind, PT_ST_FORWARD);
    assert_non_null(fw->node);
    const struct pt_forward *f = fw->data;
    assert_int_equal(f->timeout_ms, 5000);
    assert_true(f->fail_on_error_status);
}

static void test_once_per_section_against_the_default(void **state)
{
    (void)state;
    doc(API, "backend:\n"
             "  - base\n"
             "  - forward-request: {timeout-ms: 250}\n");
    assert_false(flatten());
    assert_int_equal(F.errs.n, 1);
    expect_error(0,
                 "api.yaml:3:5: backend[1] forward-request: 'forward-request' may appear once per section, "
                 "but base makes the backend "
                 "section hold two (the other is the default of the global scope, whose document has no "
                 "backend section)");
    /* the pipeline is still composed as written */
    expect_sections("", "forward-request@global, forward-request@api", "", "");
    /* said once per statement, however many operations compose it */
    assert_false(flatten());
    assert_int_equal(F.errs.n, 1);
}

static void test_once_per_section_across_scopes(void **state)
{
    (void)state;
    doc(OP, "backend:\n"
            "  - forward-request:\n"
            "  - base\n");
    doc(API, "backend:\n"
             "  - alpha: {id: a}\n"
             "  - forward-request: {timeout: 1}\n");
    assert_false(flatten());
    assert_int_equal(F.errs.n, 1);
    /* reported at the later statement, naming the scope of the earlier one */
    expect_error(0,
                 "api.yaml:3:5: backend[1] forward-request: 'forward-request' may appear once per section, "
                 "but base makes the backend "
                 "section hold two (the other comes from the operation scope)");
    expect_sections("", "forward-request@operation, alpha#a@api, forward-request@api", "", "");
    teardown(NULL);
    setup(NULL);

    /* any policy flagged PT_POLICY_ONCE_PER_SECTION, in any section */
    doc(OP, "inbound:\n"
            "  - base\n"
            "  - only-once: {id: op}\n");
    doc(GLOBAL, "inbound:\n"
                "  - only-once: {id: g}\n");
    assert_false(flatten());
    assert_int_equal(F.errs.n, 1);
    expect_error(0, "op.yaml:3:5: inbound[1] only-once: 'only-once' may appear once per section, but base "
                    "makes the inbound section "
                    "hold two (the other comes from the global scope)");
    teardown(NULL);
    setup(NULL);

    /* the same policy in different sections is fine */
    doc(OP, "inbound: [base, {only-once: {id: op}}]\n");
    doc(GLOBAL, "outbound: [{only-once: {id: g}}]\n");
    assert_true(flatten());
    expect_sections("only-once#op@operation", "forward-request@global", "only-once#g@global", "");
}

static void test_once_per_section_in_one_document(void **state)
{
    (void)state;
    struct pt_doc *d = doc_try(API, "backend:\n"
                                    "  - forward-request:\n"
                                    "  - forward-request: {timeout: 2}\n");
    assert_null(d);
    assert_int_equal(F.errs.n, 1);
    expect_error(0, "api.yaml:3:5: backend[1]: policy 'forward-request' may appear only once per section");
}

static void test_document_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text, *error;
    } cases[] = {
        {"inbond: []\n",
         "api.yaml:1:1: unknown section 'inbond' (expected inbound, backend, outbound, on-error)"},
        {"inbound: [{forward-request: }]\n", "api.yaml:1:12: inbound[0] forward-request: policy "
                                             "'forward-request' is not allowed in the inbound section"},
        {"inbound:\n  - retry:\n      condition: 'true'\n      count: 1\n      interval: 0\n      policies: "
         "[base]\n",
         "api.yaml:6:18: inbound[0] retry policies[0]: 'base' may only appear directly in a section"},
        {"inbound:\n  - choose:\n      - when: 'true'\n        then:\n          - base\n",
         "api.yaml:5:13: inbound[0] choose[0] then[0]: 'base' may only appear directly in a section"},
        {"inbound: [{gamma: {}}]\n", "api.yaml:1:12: inbound[0] gamma: unknown policy 'gamma'"},
        {"inbound: [{alpha: {colour: red}}]\n",
         "api.yaml:1:20: inbound[0] alpha colour: 'alpha' takes no attributes (found 'colour')"},
        {"inbound: base\n", "api.yaml:1:10: inbound: expected a list of statements, found a scalar"},
        {"[]\n", "api.yaml:1:1: policies: expected a map with inbound, backend, outbound, on-error"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("# %s", cases[i].text);
        assert_null(doc_try(API, cases[i].text));
        expect_error(0, cases[i].error);
        assert_int_equal(F.errs.n, 1);
        pt_node_errors_clear(&F.errs);
    }
    /* a policy limited to some scopes */
    assert_non_null(doc_try(API, "inbound: [{api-only: }]\n"));
    assert_int_equal(F.errs.n, 0);
    assert_null(doc_try(GLOBAL, "inbound: [{api-only: }]\n"));
    expect_error(0, "global.yaml:1:12: inbound[0] api-only: policy 'api-only' is not allowed at global scope "
                    "(only: API)");
}

static void test_statements_are_shared_and_scoped(void **state)
{
    (void)state;
    /* two operations of one API: their pipelines point at the same compiled statements */
    doc(API, "inbound: [{alpha: {id: shared}}, base]\n");
    doc(GLOBAL, "inbound: [{beta: {id: g}}]\n");
    struct pt_doc *op1 = doc_try(OP, "inbound: [base, {alpha: {id: one}}]\n");
    struct pt_doc *op2 = doc_try(OP, "inbound: [{alpha: {id: two}}, base]\n");
    assert_non_null(op1);
    assert_non_null(op2);
    struct pt_pipeline p1, p2;
    F.docs[OP] = op1;
    assert_true(flatten());
    p1 = F.pl;
    F.docs[OP] = op2;
    assert_true(flatten());
    p2 = F.pl;
    assert_string_equal(render(&p1.sec[PT_SEC_INBOUND]),
                        "alpha#shared@api, beta#g@global, alpha#one@operation");
    assert_string_equal(render(&p2.sec[PT_SEC_INBOUND]),
                        "alpha#two@operation, alpha#shared@api, beta#g@global");
    assert_ptr_equal(p1.sec[PT_SEC_INBOUND].s[0], p2.sec[PT_SEC_INBOUND].s[1]);
    assert_ptr_equal(p1.sec[PT_SEC_INBOUND].s[1], p2.sec[PT_SEC_INBOUND].s[2]);
    assert_int_equal(p1.sec[PT_SEC_INBOUND].s[0]->scope, PT_SCOPE_API);
    assert_int_equal(p1.sec[PT_SEC_INBOUND].s[1]->scope, PT_SCOPE_GLOBAL);
    assert_int_equal(p1.sec[PT_SEC_INBOUND].s[2]->scope, PT_SCOPE_OPERATION);
    assert_false(p1.uses_lua);
    /* the raw documents keep their base statements; the pipelines have none */
    assert_int_equal(op1->sec[PT_SEC_INBOUND]->s[0]->kind, PT_ST_BASE);
    for (int s = 0; s < PT_SEC_COUNT; s++)
        for (int i = 0; i < p1.sec[s].n; i++)
            assert_int_not_equal(p1.sec[s].s[i]->kind, PT_ST_BASE);
}

static void test_fragment_joins_the_section(void **state)
{
    (void)state;
    F.pc.fragments = yaml("fragments.yaml", "- id: common\n"
                                            "  value:\n"
                                            "    - alpha: {id: f1}\n"
                                            "    - beta: {id: f2}\n"
                                            "- id: fwd\n"
                                            "  value:\n"
                                            "    - forward-request:\n");
    doc(API, "inbound: [{alpha: {id: a}}, {include-fragment: {fragment-id: common}}, base]\n");
    doc(GLOBAL, "inbound: [{beta: {id: g}}]\n");
    assert_true(flatten());
    expect_sections("alpha#a@api, alpha#f1@api, beta#f2@api, beta#g@global", "forward-request@global", "",
                    "");
    teardown(NULL);
    setup(NULL);

    /* a forward-request included after one written in the same section: the
       document is refused at the include */
    F.pc.fragments = yaml("fragments.yaml", "- id: fwd\n"
                                            "  value:\n"
                                            "    - forward-request:\n");
    assert_null(doc_try(API, "backend:\n"
                             "  - forward-request:\n"
                             "  - include-fragment: {fragment-id: fwd}\n"));
    expect_error(
        0,
        "api.yaml:3:5: backend[1]: policy 'forward-request' may appear only once per section (one comes from "
        "the fragment included here)");
    teardown(NULL);
    setup(NULL);

    /* ... whereas in the other order the document itself is refused */
    F.pc.fragments = yaml("fragments.yaml", "- id: fwd\n"
                                            "  value:\n"
                                            "    - forward-request:\n");
    assert_null(doc_try(API, "backend:\n"
                             "  - include-fragment: {fragment-id: fwd}\n"
                             "  - forward-request:\n"));
    expect_error(0, "api.yaml:3:5: backend[1]: policy 'forward-request' may appear only once per section");
}

int main(void)
{
    pt_api_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_base_splices_outer_scopes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_base_in_every_section, setup, teardown),
        cmocka_unit_test_setup_teardown(test_base_at_global_is_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_base_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_absent_section_is_base, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_section_drops_outer_scopes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_forward_where_base_reaches_global, setup, teardown),
        cmocka_unit_test_setup_teardown(test_once_per_section_against_the_default, setup, teardown),
        cmocka_unit_test_setup_teardown(test_once_per_section_across_scopes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_once_per_section_in_one_document, setup, teardown),
        cmocka_unit_test_setup_teardown(test_document_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_statements_are_shared_and_scoped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fragment_joins_the_section, setup, teardown),
    };
    return cmocka_run_group_tests_name("flatten", tests, NULL, NULL);
}
