/*
 * pt_cli_opts -- the command line: the options every command takes (before or
 * after it), the lookups of the rest, and the values that set up the
 * connection (--url, --token, --token-file, --timeout, -o).
 */
#include "mgmt/pt_cli_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The options of every command, before or after it; `portico help` lists
   them from here.  arg NULL: a switch. */
const struct global_opt pt_cli_opts_globals[] = {
    {"--url", "URL",
     "the management API (default $PORTICO_URL, else http://127.0.0.1:8001;\n"
     "                     https:// for TLS; no user:password@)"},
    {"--token", "TOKEN",
     "the admin token; better $PORTICO_ADMIN_TOKEN or --token-file, as a command\n"
     "                     line is visible to every user of the machine (ps)"},
    {"--token-file", "FILE", "the admin token: the first line of FILE (- for stdin)"},
    {"--ca-file", "FILE", "whom to trust over https (default $PORTICO_CA_FILE, else the system CAs)"},
    {"--timeout", "SECONDS", "the longest one exchange may take (default $PORTICO_TIMEOUT, else 60)"},
    {"-o", "table|json|yaml", "the output (default: a table on a terminal, else JSON)"},
    {"--output", "FORMAT", "the same as -o"},
    {"--json", NULL, "the same as -o json"},
    {"--workspace", "W",
     "the entities of workspace W; a command with no workspace form refuses it\n"
     "                     (exit 2)"},
    {"-h", NULL, "a command's verbs and options (also --help)"},
    {"--help", NULL, NULL},
};
const size_t pt_cli_opts_nglobals = PT_ARRAY_LEN(pt_cli_opts_globals);

/* The switches (no value) of some commands; they take only their own. */
static const char *const cmd_switches[] = {"--secondary", "--include-file", NULL};

bool pt_cli_opts_in_list(const char *const *list, const char *s)
{
    for (int i = 0; list[i]; i++)
        if (!strcmp(list[i], s))
            return true;
    return false;
}

const struct global_opt *pt_cli_opts_global(const char *a)
{
    for (size_t i = 0; i < pt_cli_opts_nglobals; i++)
        if (!strcmp(pt_cli_opts_globals[i].flag, a))
            return &pt_cli_opts_globals[i];
    return NULL;
}

/* Does option a take a value (`--path P`), or is it a switch? */
bool pt_cli_opts_takes_value(const char *a)
{
    const struct global_opt *g = pt_cli_opts_global(a);
    return g ? g->arg != NULL : !pt_cli_opts_in_list(cmd_switches, a);
}

/* The index of the first word of argv that is not an option (nor an
   option's value), argc if none; with known_only, -1 at the first option
   that is not one of the CLI's own (the gateway's options: `portico -c F`). */
int pt_cli_opts_first_word(int argc, char **argv, bool known_only)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--"))
            return i + 1;
        if (a[0] != '-' || !a[1])
            return i;
        size_t n = strncmp(a, "--", 2) ? strlen(a) : strcspn(a, "=");
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)PT_MIN(n, sizeof(name) - 1), a);
        if (known_only && !pt_cli_opts_global(name) && !pt_cli_opts_in_list(cmd_switches, name))
            return -1;
        if (!a[n] && pt_cli_opts_takes_value(name))
            i++;
    }
    return argc;
}

const char *pt_cli_opts_get(const struct opts *o, const char *name)
{
    const char *v = NULL;
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->v[i].name, name))
            v = o->v[i].value ? o->v[i].value : "";
    return v;
}

/* -f FILE or --file FILE (the later one wins, as for every option) */
const char *pt_cli_opts_file(const struct opts *o)
{
    const char *v = NULL;
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->v[i].name, "-f") || !strcmp(o->v[i].name, "--file"))
            v = o->v[i].value;
    return v;
}

/* --token-file FILE|-: its first line (so the token is not on the command
   line); held until exit, then wiped. */
static char *token_held;

static void token_forget(void)
{
    if (token_held)
        memset(token_held, 0, strlen(token_held));
    free(token_held);
    token_held = NULL;
}

static const char *read_token(const char *file)
{
    size_t len = 0;
    char *t = pt_cli_file_read(file, &len);
    if (!t) {
        fprintf(stderr, "portico: cannot read the token from %s: %s\n", file, strerror(errno));
        exit(1);
    }
    t[strcspn(t, "\r\n")] = '\0';
    token_forget(); /* the last --token-file wins */
    token_held = t;
    static bool registered;
    if (!registered)
        registered = atexit(token_forget) == 0;
    if (!token_held[0])
        pt_cli_out_usage_error("%s holds no token", file);
    return t;
}

/* --timeout: whole seconds, 1 to 3600 */
uint32_t pt_cli_opts_timeout(const char *v)
{
    char *end;
    long t = strtol(v, &end, 10);
    if (*end || t < 1 || t > 3600)
        pt_cli_out_usage_error("--timeout takes seconds, from 1 to 3600 (got '%s')", v);
    return (uint32_t)t * 1000;
}

/* The options and positional words of argv into o and pos; the global options into c. */
int pt_cli_opts_parse(int argc, char **argv, struct cli *c, struct opts *o, const char **pos, int maxpos)
{
    int npos = 0;
    bool words_only = false; /* after `--`: ids that start with '-' */
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (!words_only && !strcmp(a, "--")) {
            words_only = true;
            continue;
        }
        if (words_only || a[0] != '-' || !a[1]) {
            if (npos == maxpos)
                pt_cli_out_usage_error("too many arguments ('%s')", a);
            pos[npos++] = a;
            continue;
        }
        if (o->n == MAX_OPTS)
            pt_cli_out_usage_error("too many options");
        char *eq = strncmp(a, "--", 2) ? NULL : strchr(a, '='); /* --name=value */
        if (eq)
            *eq = '\0';
        bool sw = !pt_cli_opts_takes_value(a);
        if (sw && eq)
            pt_cli_out_usage_error("%s takes no value", a);
        if (!sw && !eq && i + 1 >= argc)
            pt_cli_out_usage_error("%s needs a value", a);
        const char *v = sw ? NULL : eq ? eq + 1 : argv[++i];
        o->v[o->n++] = (struct opt){a, v};
        if (!strcmp(a, "--url"))
            c->url = v;
        else if (!strcmp(a, "--token"))
            c->token = v;
        else if (!strcmp(a, "--token-file"))
            c->token = read_token(v);
        else if (!strcmp(a, "--ca-file"))
            c->ca_file = v;
        else if (!strcmp(a, "--timeout"))
            c->timeout_ms = pt_cli_opts_timeout(v);
        else if (!strcmp(a, "--workspace"))
            c->workspace = v;
        else if (!strcmp(a, "--json"))
            c->json = c->asked = true;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (strcmp(v, "json") && strcmp(v, "table") && strcmp(v, "yaml"))
                pt_cli_out_usage_error("-o takes table, json or yaml (got '%s')", v);
            c->json = strcmp(v, "table");
            c->yaml = !strcmp(v, "yaml");
            c->asked = true;
        }
    }
    return npos;
}
