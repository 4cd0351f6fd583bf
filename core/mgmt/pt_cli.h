/*
 * pt_cli -- the management commands of the portico binary (see pt_cli.c).
 */
#ifndef PT_CLI_H
#define PT_CLI_H

#include <stdbool.h>

/* Is the command line one of the management commands (after the CLI's options, if any)? */
bool pt_cli_is_command(int argc, char **argv);
/* Runs one; returns the exit status. */
int pt_cli_main(int argc, char **argv);

#endif
