/* cmd_restore.c - tracsnap restore [--force] [--store DIR] [--lock-timeout S]
 * SNAPSHOT ENV (doc/contract.md section 6). */
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sysexits.h>

#include "cli.h"
#include "cli_progress.h"
#include "restore/restore.h"

int cli_restore(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "force", no_argument, NULL, 'f' },
		{ "store", required_argument, NULL, 's' },
		{ "lock-timeout", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	ts_restore_opts o = { .force = false };
	ts_restore_out out;
	ts_err e;
	char found_store[PATH_MAX];
	int c, status;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			o.force = true;
			break;
		case 's':
			o.store = optarg;
			break;
		case 't':
			status = cli_parse_lock_timeout(optarg, &o.lock_timeout_s);
			if (status)
				return status;
			break;
		default:
			return cli_bad_option("restore", argc, argv);
		}
	}
	status = cli_check_args("restore", argc, argv, 2, 2,
	                        argc - optind == 1 ? "ENV" : "SNAPSHOT and ENV");
	if (status)
		return status;
	/* SNAPSHOT as a NAME is looked for in the store of ENV's running mount
	 * when there is one (cli_find_mount); ENV itself must be the
	 * environment, not a mount point. */
	if (!o.store) {
		ts_registry_entry *mount = malloc(sizeof *mount);
		const char *env_path, *found = NULL;
		if (!mount)
			return EX_OSERR;
		status = cli_find_mount(argv[optind + 1], &env_path, &found, mount);
		if (!status && found) {
			snprintf(found_store, sizeof found_store, "%s", found);
			o.store = found_store;
		}
		free(mount);
		if (status)
			return status;
	}
	ts_err_clear(&e);
	cli_progress pr;
	ts_progress_sink sink = cli_progress_start(&pr, "restore");
	o.progress = &sink;
	ts_err_code rc = ts_restore(argv[optind], argv[optind + 1], &o, &out, &e);
	cli_progress_end(&pr);
	/* What an interrupted restore left was settled even when this one
	 * then fails: say so first. */
	if (out.recovered[0])
		printf("%s\n", out.recovered);
	if (rc != TS_OK) {
		fflush(stdout);
		return cli_fail(&e);
	}
	if (out.ndamaged)
		fprintf(stderr, "tracsnap: warning: %s (restored anyway: --force; %" PRIu64 " damaged in all)\n",
		        out.damaged, out.ndamaged);
	/* One line; "recorded as snapshot NAME" when the restored state was
	 * recorded (doc/contract.md section 6). */
	char recorded[PATH_MAX + 32] = "";
	if (out.recorded[0])
		snprintf(recorded, sizeof recorded, "recorded as snapshot %s; ", out.recorded);
	if (out.kept[0])
		printf("restored %s into %s (previous state kept as snapshot %s; %s%" PRIu64 " files, %" PRIu64
		       " bytes)\n", out.name, out.env, out.kept, recorded, out.files, out.bytes);
	else
		printf("restored %s into %s (previous state not kept: %s; %s%" PRIu64 " files, %" PRIu64
		       " bytes)\n", out.name, out.env, out.not_kept, recorded, out.files, out.bytes);
	return EX_OK;
}
