/* main.c - tracsnap: mount the snapshot view, or run one command. */
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "cli.h"
#include "fs.h"
#include "sysexit.h"

static const char usage[] =
	"usage: tracsnap [-f] [-d] [-s] [-o OPT[,OPT...]] ENV MOUNTPOINT\n"
	"       tracsnap snapshot [--store DIR] [--no-database] [--lock-timeout S] ENV [NAME]\n"
	"       tracsnap list     [--store DIR] [--json] ENV\n"
	"       tracsnap verify   [--store DIR] [--repair] ENV [NAME...]\n"
	"       tracsnap prune    [--store DIR] [--keep-last N] [--keep-hourly N] [--keep-daily N]\n"
	"                         [--keep-weekly N] [--keep-monthly N] [--dry-run] ENV\n"
	"       tracsnap restore  [--force] [--store DIR] [--lock-timeout S] SNAPSHOT ENV\n"
	"       tracsnap --help | --version\n"
	"\n"
	"Mount options: store=DIR, auto=FMT[:FMT...] (default %Y-%m-%d:%Y-%m-%dT%H),\n"
	"lock_timeout=SECONDS (default 30), no_database, manage_group=GROUP,\n"
	"keep=WORD:N[:WORD:N...] (prune after each snapshot), allow_other,\n"
	"ro and the usual FUSE options.  See tracsnap(1).\n";

int main(int argc, char **argv)
{
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs(usage, stdout);
		return EX_OK;
	}
	if (argc >= 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))) {
		printf("tracsnap %s\n", TS_VERSION);
		return EX_OK;
	}
	if (argc >= 2 && !strcmp(argv[1], "snapshot"))
		return cli_snapshot(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "list"))
		return cli_list(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "verify"))
		return cli_verify(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "prune"))
		return cli_prune(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "restore"))
		return cli_restore(argc - 1, argv + 1);
	ts_err_code code;
	int status = fs_main(argc, argv, &code);
	if (status == FS_MAIN_NO_STORE)
		return EX_CANTCREAT;
	if (status == FS_MAIN_FAILED)
		return cli_sysexit(code);
	return status;
}
