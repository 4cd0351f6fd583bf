/*
 * pt_cli -- `portico <command>`: the management API from a shell.
 *
 * The entry points: whether a command line is one of the CLI's, and the
 * dispatch of a command to its file (pt_cli_int.h lists them).  One table of
 * entities drives the create/update/show/list/delete commands of every
 * entity, their help and the candidates of the bash completion; the
 * commands that are not plain entity calls (apply, export, api
 * import|export, subscription keys|approve|..., report, user-password,
 * probe) have their own functions.
 *
 * Options may come before or after the command.  Output: a table on a
 * terminal, JSON when stdout is not one; -o table|json|yaml decides.  Exit
 * status 0 on success, 1 when the server refuses (its message on stderr) or
 * cannot be reached, 2 on a usage error.  docs/cli.md describes it all.
 */
#include "mgmt/pt_cli.h"
#include "mgmt/pt_cli_int.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The commands that are not entities. */
static const char *const cli_commands[] = {"apply", "export", "report", "user-password", "user-invite",
                                           "probe", "help",   "policy", "__complete",    NULL};

static bool is_command(const char *a)
{
    return pt_cli_entities_find(a, NULL) || pt_cli_opts_in_list(cli_commands, a);
}

bool pt_cli_is_command(int argc, char **argv)
{
    /* the CLI's options may come first: `portico --url U api list` */
    int w = pt_cli_opts_first_word(argc, argv, true);
    return w > 0 && w < argc && is_command(argv[w]);
}

int pt_cli_main(int argc, char **argv)
{
    int w = pt_cli_opts_first_word(argc, argv, false);
    if (w < argc && !strcmp(argv[w], "probe"))
        return pt_cli_probe(argc, argv, w); /* a gateway's status path, not the management API */
    if (w < argc && !strcmp(argv[w], "__complete"))
        return pt_cli_help_complete(argc - w - 1, argv + w + 1);
    struct cli c = {0};
    c.url = getenv("PORTICO_URL") && *getenv("PORTICO_URL") ? getenv("PORTICO_URL") : "http://127.0.0.1:8001";
    c.token = getenv("PORTICO_ADMIN_TOKEN");
    c.ca_file = getenv("PORTICO_CA_FILE") && *getenv("PORTICO_CA_FILE") ? getenv("PORTICO_CA_FILE") : NULL;
    if (getenv("PORTICO_TIMEOUT") && *getenv("PORTICO_TIMEOUT"))
        c.timeout_ms = pt_cli_opts_timeout(getenv("PORTICO_TIMEOUT"));
    c.json = !isatty(STDOUT_FILENO); /* tables for a reader, JSON for a program; -o decides */
    static struct opts o;
    const char *pos[8] = {0};
    int npos = pt_cli_opts_parse(argc, argv, &c, &o, pos, 8);
    if (!npos || !strcmp(pos[0], "help"))
        return pt_cli_help(npos > 1 ? pos[1] : NULL);
    if (pt_cli_opts_get(&o, "-h") || pt_cli_opts_get(&o, "--help"))
        return pt_cli_help(pos[0]);
    if (!pt_cli_http_parse_url(&c, c.url))
        pt_cli_out_usage_error(
            "--url must look like http://HOST:PORT or https://HOST:PORT, without user:password@ "
            "(got %zu bytes; not shown, as it may hold a password)",
            strlen(c.url));
    const char *cmd = pos[0];
    if (!strcmp(cmd, "apply")) {
        pt_cli_entities_check_opts(&o, cmd, NULL, (const char *const[]){"-f", "--file", NULL});
        pt_cli_entities_refuse_workspace(&c, cmd);
        if (npos != 1)
            pt_cli_out_usage_error("apply takes no argument but -f FILE");
        return pt_cli_cmds_apply(&c, pt_cli_opts_file(&o));
    }
    if (!strcmp(cmd, "export")) {
        pt_cli_entities_check_opts(&o, cmd, NULL, (const char *const[]){"--include-file", NULL});
        pt_cli_entities_refuse_workspace(&c, cmd);
        return pt_cli_cmds_export(&c, pt_cli_opts_get(&o, "--include-file") != NULL);
    }
    if (!strcmp(cmd, "policy"))
        return pt_cli_cmds_policy(&c, npos > 1 ? pos[1] : NULL, npos, &o);
    if (!strcmp(cmd, "report")) {
        pt_cli_entities_check_opts(&o, cmd, NULL, pt_cli_cmds_report_flags);
        struct report_opts ro = {pt_cli_opts_get(&o, "--since"),
                                 pt_cli_opts_get(&o, "--from"),
                                 pt_cli_opts_get(&o, "--to"),
                                 pt_cli_opts_get(&o, "--interval"),
                                 pt_cli_opts_get(&o, "--top"),
                                 {pt_cli_opts_get(&o, "--api"), pt_cli_opts_get(&o, "--operation"),
                                  pt_cli_opts_get(&o, "--product"), pt_cli_opts_get(&o, "--subscription"),
                                  pt_cli_opts_get(&o, "--user")}};
        return pt_cli_cmds_report(&c, npos > 1 ? pos[1] : NULL, &ro);
    }
    if (!strcmp(cmd, "user-password") || !strcmp(cmd, "user-invite")) {
        pt_cli_entities_check_opts(&o, cmd, NULL, NULL);
        if (npos != 2)
            pt_cli_out_usage_error("%s needs one user id", cmd);
        return pt_cli_cmds_user_portal(&c, cmd, pos[1]);
    }
    const struct entity *e = pt_cli_entities_find(cmd, NULL);
    if (!e)
        pt_cli_out_usage_error("unknown command '%s'", cmd);
    const char *verb = npos > 1 ? pos[1] : "list";
    if (!strcmp(verb, "operation") && pt_cli_entities_find(verb, cmd))
        return pt_cli_entities_verb(&c, pt_cli_entities_find(verb, cmd), npos > 2 ? pos[2] : "list", pos + 3,
                                    npos > 3 ? npos - 3 : 0, &o);
    const char *const *ids = pos + 2;
    int nids = npos > 2 ? npos - 2 : 0;
    for (size_t i = 0; i < pt_cli_entities_nlinks; i++)
        if (!strcmp(pt_cli_entities_links[i].noun, cmd) &&
            (!strcmp(verb, pt_cli_entities_links[i].add) || !strcmp(verb, pt_cli_entities_links[i].remove) ||
             !strcmp(verb, pt_cli_entities_links[i].list)))
            return pt_cli_entities_link(&c, e, &pt_cli_entities_links[i], verb, ids, nids, &o);
    if (!strcmp(cmd, "api") && (!strcmp(verb, "import") || !strcmp(verb, "export")))
        return pt_cli_cmds_api(&c, verb, ids, nids, &o);
    if (!strcmp(cmd, "portal") && !strcmp(verb, "publish"))
        return pt_cli_cmds_portal_publish(&c, &o);
    if (!strcmp(cmd, "subscription") && !pt_cli_opts_in_list(pt_cli_entities_verbs, verb)) {
        if (nids != 1)
            pt_cli_out_usage_error("subscription %s takes one id", verb);
        return pt_cli_cmds_subscription(&c, verb, ids[0], &o);
    }
    return pt_cli_entities_verb(&c, e, verb, ids, nids, &o);
}
