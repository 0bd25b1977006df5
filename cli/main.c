/* main.c - tracsnap: mount the snapshot view, or run one command.
 *
 * The first argument decides: a command word (commands.h) runs that
 * command; help and version options answer at once; anything else is the
 * mount form, `tracsnap [OPTIONS] ENV MOUNTPOINT`, handed to fs_main.  A
 * first argument that is neither a command nor a path that exists is taken
 * for a mistyped command rather than an ENV: "tracsnap snapshots" should
 * say so, not "missing MOUNTPOINT".
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>

#include "cli.h"
#include "commands.h"
#include "fs.h"
#include "sysexit.h"

static int cli_unknown_command(const char *word)
{
	const cli_command *near = cli_command_closest(word);

	if (near && !strcmp(near->name, word))   /* "mount": the form without a word */
		fprintf(stderr, "tracsnap: the mount form has no command word: tracsnap [-o OPT[,OPT...]] "
		        "ENV MOUNTPOINT (see 'tracsnap help mount')\n");
	else if (near)
		fprintf(stderr, "tracsnap: '%s' is not a tracsnap command; did you mean '%s'? "
		        "(see 'tracsnap help')\n", word, near->name);
	else
		fprintf(stderr, "tracsnap: '%s' is not a tracsnap command, nor an existing ENV "
		        "(see 'tracsnap help')\n", word);
	return EX_USAGE;
}

int cli_help(int argc, char **argv)
{
	const cli_command *c;

	if (argc < 2) {
		cli_help_overview(stdout);
		return EX_OK;
	}
	if (argc > 2)
		return cli_usage_error("help", "unexpected argument '%s'", argv[2]);
	c = cli_command_find(argv[1]);
	if (!c)
		return cli_unknown_command(argv[1]);
	cli_help_command(stdout, c);
	return EX_OK;
}

int main(int argc, char **argv)
{
	const char *first = argc >= 2 ? argv[1] : NULL;
	const cli_command *c;
	struct stat st;

	if (!first) {
		/* Nothing to do: the overview, and a status that says so (as git). */
		cli_help_overview(stdout);
		return EX_USAGE;
	}
	if (!strcmp(first, "--help") || !strcmp(first, "-h"))
		return cli_help(1, argv);
	if (!strcmp(first, "--version") || !strcmp(first, "-V")) {
		printf("tracsnap %s\n", TS_VERSION);
		return EX_OK;
	}
	c = cli_command_find(first);
	if (c && c->run) {
		if (cli_wants_help(argc - 1, argv + 1)) {
			cli_help_command(stdout, c);
			return EX_OK;
		}
		return c->run(argc - 1, argv + 1);
	}
	if (first[0] != '-' && !strchr(first, '/') && lstat(first, &st) != 0)
		return cli_unknown_command(first);
	if (cli_wants_help(argc, argv)) {
		/* Ours, then what libfuse says of its own options (fs_main). */
		cli_help_command(stdout, cli_command_find("mount"));
		fflush(stdout);
	}
	ts_err_code code;
	int status = fs_main(argc, argv, &code);
	if (status == FS_MAIN_NO_STORE)
		return EX_CANTCREAT;
	if (status == FS_MAIN_FAILED)
		return cli_sysexit(code);
	/* fs_serve's statuses (fs_main.c): libfuse or the kernel refused the
	 * mount (it said why), or the request loop failed. */
	return status ? EX_OSERR : EX_OK;
}
