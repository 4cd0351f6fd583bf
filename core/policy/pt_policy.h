/*
 * pt_policy -- policy documents: the registry of policies, parsing and
 * validating documents, composing scopes, and compiling pipelines.
 *
 * A document has four sections; each section is a list of statements.  In
 * YAML a statement is `{policy-name: {attributes...}}` or the bare word
 * `base`.  Every statement is validated against its policy's attribute
 * schema (portico/plugin.h) and compiled once per generation.
 *
 * Scopes compose like APIM: the effective section of an operation starts
 * from the operation's section, where `base` splices in the API's section,
 * whose `base` splices in the product's, then the workspace's, then the
 * global one (`base` at global scope is nothing).  A scope without a section
 * behaves as `[base]`; an empty list means "nothing".  The global backend
 * section defaults to `[forward-request]`.  The result for one (operation,
 * product) pair is a pt_pipeline: four flat blocks of pointers to the shared
 * compiled statements.
 */
#ifndef PT_POLICY_H
#define PT_POLICY_H

#include "base/pt.h"
#include "base/pt_pool.h"
#include "conf/pt_node.h"

#include "http/pt_msg.h"
#include "lua/pt_expr.h"
#include "policy/pt_registry.h"

#include <portico/plugin.h>

/* PT_SEC_*, PT_SCOPE_COUNT and the section and scope name tables are in http/pt_msg.h. */

/* Internal policy flag: the statement's value is not an attribute map and is
   parsed by the core (choose). */
#define PT_POLICY_CORE_SYNTAX 0x8000

/* Statement kinds the pipeline driver knows; everything else is PT_ST_POLICY. */
enum pt_stmt_kind {
    PT_ST_POLICY,  /* a plugin or Lua policy: def->run */
    PT_ST_BASE,    /* only in raw documents, replaced when flattening */
    PT_ST_CHOOSE,  /* when/then blocks and otherwise */
    PT_ST_RETRY,   /* children re-run while a condition holds */
    PT_ST_FORWARD, /* forward-request: the backend call */
    PT_ST_WRAP,    /* a policy with child statements (limit-concurrency) */
    PT_ST_WAIT,    /* wait: its children run side by side (lanes) */
};

struct pt_stmt;

struct pt_block {
    struct pt_stmt **s;
    int n;
};

struct pt_when {
    struct pt_value *cond; /* NULL for otherwise */
    struct pt_block body;
};

struct pt_stmt {
    enum pt_stmt_kind kind;
    const struct pt_policy_def *def;
    const char *name;      /* policy name, for paths and messages */
    const char *id;        /* the optional `id` attribute (lastError.policyId) */
    int scope;             /* PT_SCOPE_* of the document it came from */
    const char *workspace; /* that document's workspace; NULL: the service level */
    void *instance;        /* from def->compile */
    struct pt_node *node;
    bool dup_reported; /* a composed section held it twice: said once, not per operation */
    /* PT_ST_CHOOSE */
    struct pt_when *whens;
    int nwhens;
    /* PT_ST_RETRY, PT_ST_WRAP, PT_ST_WAIT children */
    struct pt_block body;
    /* kind-specific data (retry, forward-request, wait) */
    void *data;
};

/* A scope's document: four raw sections (NULL = absent, i.e. [base]). */
struct pt_doc {
    struct pt_block *sec[PT_SEC_COUNT];
    int scope;
};

struct pt_pipeline {
    struct pt_block sec[PT_SEC_COUNT];
    bool uses_lua;
};

/* struct pt_value, a compiled attribute value, is in lua/pt_expr.h. */

/* One statement being compiled (pt_compile in the SDK).  The core's own
   policies read the fields past `section` to compile nested blocks. */
struct pt_compile {
    struct pt_polctx *pc;
    struct pt_node *attrs; /* the statement's attribute map (or scalar shorthand) */
    const struct pt_policy_def *def;
    struct pt_stmt *stmt;
    int section;       /* PT_SECTION_* bit, for api->compile_section */
    int section_index; /* PT_SEC_* */
    int depth;         /* nesting depth of the statement */
    bool in_fragment;  /* inside a policy fragment */
};

/* Compiles a list of statements nested in the statement being compiled (choose's
   branches, retry's policies); NULL with errors added when it is refused. */
struct pt_block *pt_policy_parse_block(pt_compile *c, struct pt_node *list);

/* The registry of policies is in policy/pt_registry.h. */

/* ---- compiling ---- */

struct pt_expr_table; /* expressions of a generation, see pt_lua.h */

/* Everything compilation needs; one per generation build. */
/* A client certificate a policy presents to backends (its own TLS context);
   `serial` keeps connections made with it in pools of their own. */
struct pt_clientcert {
    void *ctx; /* SSL_CTX */
    uint64_t serial;
    struct pt_clientcert *next;
};

struct pt_polctx {
    struct pt_pool *pool;
    struct pt_errors *errs;
    const struct pt_registry *reg;
    struct pt_node *fragments;    /* the policyFragments list node (may be NULL) */
    struct pt_node *named_values; /* the namedValues list node (may be NULL) */
    const char *workspace;        /* the scope being compiled: its workspace, NULL or "" for the service; a
                                     document sees only the named values and fragments of its own scope */
    struct pt_expr_table *exprs;  /* where expressions are registered */
    int scope;
    const char *base_dir;        /* relative files in policies are relative to the configuration's folder */
    const char *ca_file;         /* upstream.caFile (NULL: the system store) */
    bool verify;                 /* upstream.verify */
    const struct pt_tls_cf *tls; /* upstream.tls */
    struct pt_clientcert *certs; /* client certificates for backends (authentication-certificate) */
    struct pt_stmt *default_forward;    /* the backend section's forward-request when no scope has one */
    const struct pt_logger_cf *loggers; /* the loggers log-to-eventhub may name (L) */
    int nloggers;
    bool loggers_open; /* only the file is checked: a logger may be in the store, any id passes */
    const struct pt_storecert_cf *store_certs; /* the certificate store (cert_find) */
    int nstore_certs;
    bool certs_open;               /* as loggers_open, for certificates */
    struct pt_stored_cert *stored; /* store_certs as plugins see them, made at the first cert_find */
    /* instances to free with the generation */
    struct pt_stmt **all;
    int nall, capall;
};

/* true when a namedValues / policyFragments entry belongs to pc's scope. */
bool pt_policy_same_scope(const struct pt_polctx *pc, const struct pt_node *entry);
/* Parses and compiles a `policies:` map for one scope.  Returns NULL on
   errors (reported). */
struct pt_doc *pt_policy_doc(struct pt_polctx *pc, struct pt_node *policies, int scope);
/* Composes documents (narrowest first: operation, API, product, workspace,
   global; NULL entries skipped) into a pipeline. */
bool pt_policy_flatten(struct pt_polctx *pc, struct pt_doc *const *docs, int ndocs, struct pt_pipeline *out);
/* Checks a fragment's statements without using them (unused fragments). */
void pt_policy_check_fragment(struct pt_polctx *pc, struct pt_node *frag);
/* Frees every compiled instance (at the end of a generation). */
void pt_policy_release(struct pt_polctx *pc);
/* A scalar's text with named values substituted (NULL after an error). */
const char *pt_policy_text(struct pt_polctx *pc, struct pt_node *n);
/* Compiles one attribute value (expressions are checked and registered). */
struct pt_value *pt_policy_value_compile(struct pt_polctx *pc, struct pt_node *n);
/* For the core's generic policies (Lua policies): the definition being
   compiled and the attribute node of a name. */
const struct pt_policy_def *pt_policy_compile_def(pt_compile *c);
struct pt_node *pt_policy_compile_attr(pt_compile *c, const char *name);
struct pt_polctx *pt_policy_compile_ctx(pt_compile *c);
/* The default pipeline: inbound/outbound/on-error empty, backend forward-request. */

/* The table every policy compiles and runs against; filled by pt_api_init()
   (policy/pt_api.c) at start. */
extern struct pt_api pt_policy_api_table;
/* Set while the gateway only checks a configuration (portico -t, the policy
   reference): plugins see it through api->checking_only. */
extern bool pt_api_checking_only;

#endif
