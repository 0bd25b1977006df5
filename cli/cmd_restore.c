/* cmd_restore.c - tracsnap restore [--force] SNAPSHOT-DIR ENV */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <sysexits.h>

#include "cli.h"
#include "cli_progress.h"
#include "restore/restore.h"

static const char restore_usage[] = "usage: tracsnap restore [--force] SNAPSHOT-DIR ENV\n";

int cli_restore(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "force", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	bool force = false;
	ts_restore_out out;
	ts_err e;
	int c, status;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c != 'f')
			return cli_bad_option("restore", restore_usage, argc, argv);
		force = true;
	}
	status = cli_check_args("restore", restore_usage, argc, argv, 2, 2,
	                        argc - optind == 1 ? "ENV" : "SNAPSHOT-DIR and ENV");
	if (status)
		return status;
	ts_err_clear(&e);
	cli_progress pr;
	ts_progress_sink sink = cli_progress_start(&pr, "restore");
	ts_err_code rc = ts_restore(argv[optind], argv[optind + 1], force, &sink, &out, &e);
	cli_progress_end(&pr);
	if (rc != TS_OK)
		return cli_fail(&e);
	printf("restored %s into %s (previous kept as %s; %" PRIu64 " files, %" PRIu64 " bytes)\n",
	       argv[optind], out.env, out.kept, out.files, out.bytes);
	return EX_OK;
}
