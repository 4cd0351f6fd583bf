/*
 * pt_cli_help -- `portico help [COMMAND]` and the candidates the bash completion
 * (contrib/portico.bash) asks for with `portico __complete`, both read from
 * the tables of the entities, the options and the other commands.
 */
#include "mgmt/pt_cli_int.h"

#include <string.h>

/* ------------------------------------------------------------------ help */

static const char *const other_cmds[][2] = {
    {"apply", "apply -f FILE                 create or update the entities FILE declares (YAML or JSON)"},
    {"export", "export [--include-file]        every entity as YAML that apply accepts (-o json for JSON;\n"
               "                                --include-file adds those the configuration file declares)"},
    {"policy",
     "policy get|set|delete [--api A [--operation O] | --product P | --workspace W] [-f FILE]\n"
     "                                the policy document of a scope (none given: the global one);\n"
     "                                set reads a YAML or JSON document, or APIM's envelope"},
    {"report",
     "report by-api|by-operation|by-product|by-subscription|by-user|by-time|by-request\n"
     "       [--since 1h | --from ISO-TIME [--to ISO-TIME]] [--api A] [--operation O] [--product P]\n"
     "       [--subscription S] [--user U] [--interval 15m (by-time)] [--top N] [--workspace W]\n"
     "                                usage figures (docs/analytics.md)"},
    {"user-password", "user-password USER            set USER's portal password, read from stdin (one line,\n"
                      "                                at least 10 characters); their portal sessions end"},
    {"user-invite", "user-invite USER              send USER the portal's invitation mail"},
    {"probe",
     "probe [URL] [--ca-file FILE]  GET a gateway's status path (default\n"
     "                                http://127.0.0.1:8080/status-0123456789abcdef): exit 0 on 200,\n"
     "                                else 1 (3 s at most)"},
    {"help", "help [COMMAND]                this text, or one command's verbs and options"},
};

static const char *const type_names[] = {"TEXT", "true|false", "N", "JSON"};

static void fields_help(FILE *f, const struct entity *e)
{
    for (int i = 0; i < (int)PT_ARRAY_LEN(e->fields) && e->fields[i].flag; i++)
        fprintf(f, "  %-26s %s (%s)\n", e->fields[i].flag, e->fields[i].key, type_names[e->fields[i].type]);
}

static void entity_help(FILE *f, const struct entity *e, bool details)
{
    const char *p = e->parent ? e->parent : "", *sp = e->parent ? " " : "";
    const char *id = e->singleton ? "" : e->parent ? " API OP" : " ID";
    if (e->singleton)
        fprintf(f, "  %s show | update [flags]\n", e->noun);
    else
        fprintf(f, "  %s%s%s list%s | show%s | create%s [flags] | update%s [flags] | delete%s\n", p, sp,
                e->noun, e->parent ? " API" : "", id, id, id, id);
    for (size_t i = 0; i < pt_cli_entities_nlinks; i++) {
        const struct link *l = &pt_cli_entities_links[i];
        if (!strcmp(l->noun, e->noun))
            fprintf(f, "  %s %s %s %s | %s %s %s | %s %s\n", e->noun, l->add, "ID", l->other, l->remove, "ID",
                    l->other, l->list, "ID");
    }
    if (!strcmp(e->noun, "api") && !e->parent) {
        fprintf(f, "  api import FILE|URL --id ID [--path P] [--service-url U] [--format F]\n"
                   "             [--wsdl-service S] [--wsdl-endpoint E]   import or re-import a definition\n"
                   "  api export ID [--format openapi|openapi+json|swagger-json|wsdl|graphql|grpc]\n");
    }
    if (!strcmp(e->noun, "subscription"))
        fprintf(f, "  subscription keys ID | regenerate ID [--secondary]\n"
                   "  subscription approve|reject|suspend|activate|cancel ID [--state-comment TEXT]\n");
    if (!strcmp(e->noun, "portal"))
        fprintf(f, "  portal publish [--comment TEXT]   publish the draft\n");
    if (!details)
        return;
    if (!e->singleton)
        fprintf(f, "create never replaces: an id that exists is refused (exit 1); update changes it\n");
    fprintf(f, "flags of create and update (-f FILE, YAML or JSON, gives the whole body; flags and\n"
               "--set KEY=VALUE, a JSON value or else a string, and --set-string KEY=TEXT, always\n"
               "a string, change it):\n");
    fields_help(f, e);
    if (e->ws)
        fprintf(f, "  %-26s %s\n", "--workspace W", "the entity of workspace W");
    if (!strcmp(e->noun, "subscription"))
        fprintf(f, "a new subscription without --state is `submitted` when its scope is a product with\n"
                   "approvalRequired: true, else `active`\n");
    if (!strcmp(e->noun, "api") && !e->parent) {
        const struct entity *op = pt_cli_entities_find("operation", "api");
        entity_help(f, op, false);
        fprintf(f, "flags of api operation create and update:\n");
        fields_help(f, op);
    }
}

static void global_help(FILE *f)
{
    fprintf(f, "options (before or after the command; --name=value too; `--` ends them):\n");
    for (size_t i = 0; i < pt_cli_opts_nglobals; i++) {
        char left[64];
        const struct global_opt *g = &pt_cli_opts_globals[i];
        if (!g->help)
            continue;
        snprintf(left, sizeof(left), "%s%s%s", g->flag, g->arg ? " " : "", g->arg ? g->arg : "");
        fprintf(f, "  %-18s %s\n", left, g->help);
    }
    fprintf(f,
            "exit status: 0 done, 1 refused by the server (its message on stderr) or no answer, 2 usage\n");
}

static void usage(FILE *f)
{
    fprintf(f, "usage: portico COMMAND [VERB] [ARGS] [options]   (talks to the management API)\n");
    for (size_t i = 0; i < pt_cli_entities_n; i++)
        entity_help(f, &pt_cli_entities[i], false);
    for (size_t i = 0; i < PT_ARRAY_LEN(other_cmds); i++)
        fprintf(f, "  %s\n", other_cmds[i][1]);
    global_help(f);
    fprintf(f, "`portico help COMMAND` lists a command's flags; docs/cli.md describes them all\n");
}

int pt_cli_help(const char *cmd)
{
    if (!cmd) {
        usage(stdout);
        return 0;
    }
    const struct entity *e = pt_cli_entities_find(cmd, NULL);
    bool found = e != NULL;
    if (e)
        entity_help(stdout, e, true);
    for (size_t i = 0; !found && i < PT_ARRAY_LEN(other_cmds); i++)
        if (!strcmp(other_cmds[i][0], cmd)) {
            printf("  %s\n", other_cmds[i][1]);
            found = true;
        }
    if (!found)
        pt_cli_out_usage_error("no command '%s'", cmd);
    global_help(stdout);
    return 0;
}

/* ------------------------------------------------------------ completion */

/* `portico __complete WORD...`: the candidates for the word after WORDs,
   one per line (the bash completion script asks; nothing: complete file names). */
static void print_words(const char *s)
{
    for (; *s; s++)
        putchar(*s == ' ' ? '\n' : *s);
    putchar('\n');
}

static void print_list(const char *const *l)
{
    for (int i = 0; l[i]; i++)
        printf("%s\n", l[i]);
}

static void print_global_flags(void)
{
    for (size_t i = 0; i < pt_cli_opts_nglobals; i++)
        printf("%s\n", pt_cli_opts_globals[i].flag);
}

int pt_cli_help_complete(int argc, char **argv)
{
    const char *pos[4] = {0};
    int npos = 0;
    for (int i = 0; i < argc; i++) {
        bool opt = argv[i][0] == '-' && argv[i][1];
        if (opt && pt_cli_opts_takes_value(argv[i]) && !strchr(argv[i], '=')) {
            if (i + 1 == argc) { /* the word wanted is this option's value */
                if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output"))
                    print_words("table json yaml");
                return 0;
            }
            i++;
        } else if (!opt && npos < 4)
            pos[npos++] = argv[i];
    }
    const struct entity *e = npos ? pt_cli_entities_find(pos[0], NULL) : NULL;
    if (!npos || (npos == 1 && !strcmp(pos[0], "help"))) {
        for (size_t i = 0; i < pt_cli_entities_n; i++)
            if (!pt_cli_entities[i].parent)
                printf("%s\n", pt_cli_entities[i].noun);
        for (size_t i = 0; i < PT_ARRAY_LEN(other_cmds); i++)
            printf("%s\n", other_cmds[i][0]);
        if (!npos)
            print_global_flags();
        return 0;
    }
    if (npos == 1 && e) {
        print_list(pt_cli_entities_verbs);
        if (e->extra)
            print_words(e->extra);
        return 0;
    }
    if (npos == 1 && !strcmp(pos[0], "policy")) {
        print_words("get set delete");
        return 0;
    }
    if (npos == 1 && !strcmp(pos[0], "report")) {
        for (size_t i = 0; i < pt_cli_cmds_nreport_kinds; i++)
            printf("%s\n", pt_cli_cmds_report_kinds[i].cmd);
        return 0;
    }
    if (e && npos == 2 && !strcmp(pos[1], "operation")) {
        print_list(pt_cli_entities_verbs);
        return 0;
    }
    /* the options of the command */
    print_global_flags();
    if (e) {
        const struct entity *f =
            npos > 1 && !strcmp(pos[1], "operation") ? pt_cli_entities_find("operation", "api") : e;
        for (int i = 0; i < (int)PT_ARRAY_LEN(f->fields) && f->fields[i].flag; i++)
            printf("%s\n", f->fields[i].flag);
        print_list(pt_cli_entities_flags);
        if (!strcmp(e->noun, "api") && npos > 1 && !strcmp(pos[1], "import"))
            print_list(pt_cli_cmds_import_flags);
    } else if (!strcmp(pos[0], "policy"))
        print_list(pt_cli_cmds_policy_flags);
    else if (!strcmp(pos[0], "report"))
        print_list(pt_cli_cmds_report_flags);
    else if (!strcmp(pos[0], "apply"))
        print_words("-f");
    else if (!strcmp(pos[0], "export"))
        print_words("--include-file");
    return 0;
}
