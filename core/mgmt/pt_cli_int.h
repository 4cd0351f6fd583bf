/*
 * pt_cli_int -- what the CLI's files share; the rest of the core sees
 * pt_cli.h only.  Each file calls only the ones listed above it:
 *
 *   pt_cli_out.c       what reaches the terminal: server text made safe,
 *                      documents (JSON, YAML), tables, usage errors
 *   pt_cli_file.c      local input: a file or stdin within a bound, a YAML
 *                      or JSON document
 *   pt_cli_http.c      the management API: the URL, one exchange, the
 *                      server's errors, paths with encoded ids
 *   pt_cli_opts.c      the command line: the options of every command,
 *                      their values (--token-file, --timeout, -o)
 *   pt_cli_entities.c  the entity table and its generic verbs (list, show,
 *                      create, update, delete) and links (add-api, ...)
 *   pt_cli_cmds.c      the commands that are not plain entity calls: api
 *                      import|export, report, user-password|invite, policy,
 *                      portal publish, subscription keys|approve|..., apply,
 *                      export
 *   pt_cli_probe.c     `portico probe`: a gateway's status path
 *   pt_cli_help.c      help and the candidates of the bash completion,
 *                      both read from the tables
 *   pt_cli.c           the entry points: which command, and its dispatch
 */
#ifndef PT_CLI_INT_H
#define PT_CLI_INT_H

#include "base/pt.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The connection to the management API and how to show its answers. */
struct cli {
    char host[256];
    char port[8];
    const char *url;
    const char *token;
    const char *ca_file; /* trusted CAs for an https:// URL (else the system's) */
    uint32_t timeout_ms; /* one exchange, all of it (--timeout, $PORTICO_TIMEOUT; 60 s) */
    bool tls;
    bool json; /* not a table: JSON, or YAML when yaml is set too */
    bool yaml;
    bool asked;            /* -o (or --json) was given: export follows it, else it is YAML */
    const char *workspace; /* --workspace: entities under /workspaces/{ws}/ */
    const char *headers;   /* more request header lines for the next call ("Name: v\r\n") */
    int status;            /* the last answer's status and size */
    size_t len;
};

struct resp {
    int status;
    char *body;
    size_t len;
};

#define CLI_TIMEOUT_MS 60000  /* one exchange, when neither --timeout nor $PORTICO_TIMEOUT says */
#define MESSAGE_MAX 2000      /* the longest message from the server shown */
#define APPLY_MAX (64u << 20) /* the largest file read (apply -f, import, -f, --token-file) */

/* ----------------------------------------------------------- pt_cli_out.c */

/* "portico: ...", the pointer to `portico help` on stderr, exit 2. */
void pt_cli_out_usage_error(const char *fmt, ...) PT_PRINTF(1, 2) __attribute__((noreturn));
/* s[0..len) with what could drive a terminal replaced by '?', in a new string
   (exits 1 without memory); keep_lines keeps line ends and tabs. */
char *pt_cli_out_clean(const char *s, size_t len, bool keep_lines);
/* Server text s on f, cleaned, at most max bytes of it ("..." when cut). */
void pt_cli_out_text(FILE *f, const char *s, size_t max);
/* A document on stdout: as it is in a pipe, cleaned on a terminal. */
void pt_cli_out_document(const char *text, size_t len);
/* j on stdout as JSON, or as YAML with -o yaml. */
void pt_cli_out_doc(const struct cli *c, const json_t *j);
/* A table on stdout: one row per item of items, the columns cols (NULL-ended). */
void pt_cli_out_table(const json_t *items, const char *const *cols);
/* One entity on stdout: every field, one per line. */
void pt_cli_out_fields(const json_t *j);

/* ---------------------------------------------------------- pt_cli_file.c */

/* The bytes of path ("-": stdin), at most APPLY_MAX, NUL-ended; NULL with
   errno (EISDIR, EFBIG...) when they cannot be read. */
char *pt_cli_file_read(const char *path, size_t *len);
/* The YAML or JSON document of file as JSON; exits 1 when it cannot be read. */
json_t *pt_cli_file_doc(const char *file);

/* ---------------------------------------------------------- pt_cli_http.c */

/* c's host, port and tls from url; false when it is not http(s)://HOST[:PORT]. */
bool pt_cli_http_parse_url(struct cli *c, const char *url);
/* One exchange with the management API (body may be NULL); false, after
   saying why on stderr, when there is no answer.  r->body is the caller's. */
bool pt_cli_http_call(struct cli *c, const char *method, const char *path, const char *ctype,
                      const char *body, size_t blen, struct resp *r);
/* Prints the server's error in r on stderr and returns 1. */
int pt_cli_http_report(const struct resp *r);
/* A call whose success body is JSON; NULL after reporting an error, with
   the exit status in *rc. */
json_t *pt_cli_http_json(struct cli *c, const char *method, const char *path, const char *body, int *rc);
/* A call whose answer is printed as JSON (-o json|yaml) or as the words
   done on a terminal; the exit status. */
int pt_cli_http_done(struct cli *c, const char *method, const char *path, const char *body, const char *done);
/* s percent-encoded for a path or a query (malloc'd). */
char *pt_cli_http_enc(const char *s);
/* *p + "/" + the encoded word (raw: as it is), in a new string. */
void pt_cli_http_path_add(char **p, const char *word, bool raw);

/* ---------------------------------------------------------- pt_cli_opts.c */

/* Every `--flag value` of the command line, in order (the last one of a
   name wins); the switches (no value) are in the same list with value NULL. */
#define MAX_OPTS 64

struct opt {
    const char *name, *value;
};

struct opts {
    struct opt v[MAX_OPTS];
    int n;
};

/* An option of every command; arg NULL: a switch. */
struct global_opt {
    const char *flag, *arg, *help;
};
extern const struct global_opt pt_cli_opts_globals[];
extern const size_t pt_cli_opts_nglobals;

/* Is s in list (NULL-ended)? */
bool pt_cli_opts_in_list(const char *const *list, const char *s);
/* The option of every command named a, else NULL. */
const struct global_opt *pt_cli_opts_global(const char *a);
/* Does option a take a value (`--path P`), or is it a switch? */
bool pt_cli_opts_takes_value(const char *a);
/* The index of the first word of argv that is not an option (nor an
   option's value), argc if none; with known_only, -1 at the first option
   that is not one of the CLI's own. */
int pt_cli_opts_first_word(int argc, char **argv, bool known_only);
/* The value of option name ("" for a switch), NULL when not given. */
const char *pt_cli_opts_get(const struct opts *o, const char *name);
/* -f FILE or --file FILE */
const char *pt_cli_opts_file(const struct opts *o);
/* --timeout's value in milliseconds; a usage error unless 1 to 3600 s. */
uint32_t pt_cli_opts_timeout(const char *v);
/* The options and positional words of argv into o and pos (at most maxpos);
   the options of every command into c.  The number of words. */
int pt_cli_opts_parse(int argc, char **argv, struct cli *c, struct opts *o, const char **pos, int maxpos);

/* ------------------------------------------------------ pt_cli_entities.c */

enum ftype { T_STR, T_BOOL, T_INT, T_JSON };

/* A flag of create/update: --flag VALUE sets key (prefix added to a value
   that does not start with it: --owner u1 is "/users/u1"). */
struct field {
    const char *flag, *key;
    enum ftype type;
    const char *prefix;
};

struct entity {
    const char *noun;   /* the command (`api`), or the child's name (`operation`) */
    const char *coll;   /* the REST collection */
    const char *parent; /* a child's parent noun: `portico api operation VERB API OP` */
    bool ws;            /* also under /workspaces/{ws}/ (--workspace) */
    bool singleton;     /* one document, no id (the portal's site) */
    const char *extra;  /* more verbs, for help and completion */
    const char *cols[7];
    struct field fields[12];
};

/* The links between entities: PUT/DELETE {coll}/{id}/{sub}/{other}, GET the list. */
struct link {
    const char *noun, *add, *remove, *list, *sub, *other;
};

extern const struct entity pt_cli_entities[];
extern const size_t pt_cli_entities_n;
extern const struct link pt_cli_entities_links[];
extern const size_t pt_cli_entities_nlinks;
extern const char *const pt_cli_entities_verbs[]; /* list show create update delete */
extern const char *const pt_cli_entities_flags[]; /* the options of every entity's create/update */

/* The entity named noun (a child of parent, or NULL for a top one), else NULL. */
const struct entity *pt_cli_entities_find(const char *noun, const char *parent);
/* Every option given must be one this command takes: those of every command,
   more (NULL-ended, may be NULL) and e's fields (e may be NULL); else a
   usage error naming what. */
void pt_cli_entities_check_opts(const struct opts *o, const char *what, const struct entity *e,
                                const char *const *more);
/* A usage error when --workspace is given to what, which has no workspace form. */
void pt_cli_entities_refuse_workspace(const struct cli *c, const char *what);
/* /management[/workspaces/W]/COLL[/ID][/CHILD/SUB], ids encoded (malloc'd). */
char *pt_cli_entities_path(const struct cli *c, const struct entity *e, const char *const *ids);
/* Sets a dotted key ("locationData.name") in body to v (taken). */
void pt_cli_entities_set_key(json_t *body, const char *key, json_t *v);
/* v as a JSON string; a usage error naming flag when it is not UTF-8. */
json_t *pt_cli_entities_text(const char *flag, const char *v);
/* A call with a JSON body (taken; NULL for none) whose answer is an entity
   to show; the exit status. */
int pt_cli_entities_show(struct cli *c, const char *method, const char *path, json_t *body);
/* portico NOUN [CHILD] VERB [ID [SUBID]]: the five verbs of every entity. */
int pt_cli_entities_verb(struct cli *c, const struct entity *e, const char *verb, const char *const *ids,
                         int nids, const struct opts *o);
/* portico product add-api P A | remove-api P A | apis P, and the other links. */
int pt_cli_entities_link(struct cli *c, const struct entity *e, const struct link *l, const char *verb,
                         const char *const *ids, int nids, const struct opts *o);

/* ---------------------------------------------------------- pt_cli_cmds.c */

struct report_opts {
    const char *since, *from, *to, *interval, *top;
    const char *ids[5]; /* api, operation, product, subscription, user */
};

struct report_kind {
    const char *cmd, *name, *id; /* the CLI's name, the report's, its id field */
};
extern const struct report_kind pt_cli_cmds_report_kinds[];
extern const size_t pt_cli_cmds_nreport_kinds;

/* the options of policy, api import|export and report */
extern const char *const pt_cli_cmds_policy_flags[];
extern const char *const pt_cli_cmds_import_flags[];
extern const char *const pt_cli_cmds_report_flags[];

/* Each returns the exit status (a usage error exits 2). */
int pt_cli_cmds_api(struct cli *c, const char *verb, const char *const *ids, int nids, const struct opts *o);
int pt_cli_cmds_report(struct cli *c, const char *kind, const struct report_opts *o);
int pt_cli_cmds_user_portal(struct cli *c, const char *cmd, const char *user);
int pt_cli_cmds_policy(struct cli *c, const char *verb, int npos, const struct opts *o);
int pt_cli_cmds_portal_publish(struct cli *c, const struct opts *o);
int pt_cli_cmds_subscription(struct cli *c, const char *verb, const char *id, const struct opts *o);
int pt_cli_cmds_apply(struct cli *c, const char *file);
int pt_cli_cmds_export(struct cli *c, bool include_file);

/* --------------------------------------------------------- pt_cli_probe.c */

/* `portico probe [URL]`, the word at index at of argv; exit 0 or 1, never 2. */
int pt_cli_probe(int argc, char **argv, int at);

/* ---------------------------------------------------------- pt_cli_help.c */

/* `portico help [COMMAND]` on stdout; 0 (a usage error for no such command). */
int pt_cli_help(const char *cmd);
/* `portico __complete WORD...`: the candidates for the word after WORDs. */
int pt_cli_help_complete(int argc, char **argv);

#endif
