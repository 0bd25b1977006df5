/* commands.h - the one description of tracsnap's command line.
 *
 * Every usage text tracsnap prints comes from the table in commands.c: the
 * overview (`tracsnap`, `tracsnap help`, `tracsnap --help`), one command's
 * help (`tracsnap help CMD`, `tracsnap CMD --help`) and the usage line after
 * a command-line error.  The SYNOPSIS of man/tracsnap.1 is checked against
 * it by tests/mount/test_cli.py, so that the two cannot drift apart again.
 *
 * Ownership: the table is static and read-only; nothing is allocated.
 */
#ifndef TS_CLI_COMMANDS_H
#define TS_CLI_COMMANDS_H

#include <stdio.h>

typedef struct cli_command {
	const char *name;       /* the command word; "mount" for the mount form */
	const char *args;       /* its synopsis after "tracsnap NAME" */
	const char *summary;    /* one line for the overview */
	const char *help;       /* what `tracsnap help NAME` adds: options, one per line */
	int (*run)(int argc, char **argv);   /* NULL: the mount form, handled by fs_main */
} cli_command;

/* The command named name, or NULL. */
const cli_command *cli_command_find(const char *name);

/* The known command closest to name (edit distance at most 2, or name a
 * prefix of it), for "did you mean"; NULL when none is close. */
const cli_command *cli_command_closest(const char *name);

/* "usage: tracsnap NAME ARGS", wrapped, for the command named name. */
void cli_usage_print(FILE *f, const char *name);

/* The overview: the mount form, every command with its summary. */
void cli_help_overview(FILE *f);

/* One command's usage, summary and options. */
void cli_help_command(FILE *f, const cli_command *c);

/* Is argv[1..] asking for help (-h or --help before any "--")? */
int cli_wants_help(int argc, char **argv);

#endif
