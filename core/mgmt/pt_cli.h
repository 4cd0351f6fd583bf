/*
 * pt_cli -- the management commands of the portico binary (see pt_cli.c).
 */
#ifndef PT_CLI_H
#define PT_CLI_H

#include <stdbool.h>

/* Is argv[1] one of the management commands? */
bool pt_cli_is_command(const char *arg);
/* Runs one; returns the exit status. */
int pt_cli_main(int argc, char **argv);

#endif
