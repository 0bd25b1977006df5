/* cmd_hold.c - tracsnap hold and release: keep snapshots from every removal
 * (prune, keep=, rmdir) until released (snapshot/store/hold.h). */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <sysexits.h>

#include "cli.h"
#include "base/parse.h"
#include "store/hold.h"

/* One line per name: "held NAME", "NAME: held already", "released NAME",
 * "NAME: not held".  Every name is tried; the status is the first
 * failure's. */
static int cli_hold_run(const char *cmd, bool on, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "store", required_argument, NULL, 's' },
		{ "lock-timeout", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	const char *store_path = NULL;
	int lock_timeout = TS_LOCK_TIMEOUT_DEFAULT;
	ts_env env;
	ts_store store;
	ts_err e;
	int c, status;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 's') {
			store_path = optarg;
		} else if (c == 't') {
			status = cli_parse_lock_timeout(optarg, &lock_timeout);
			if (status)
				return status;
		} else {
			return cli_bad_option(cmd, argc, argv);
		}
	}
	status = cli_check_args(cmd, argc, argv, 2, -1, argc - optind == 1 ? "NAME" : "ENV and NAME");
	if (status)
		return status;
	status = cli_open_env_store(argv[optind], store_path, false, &env, &store, NULL);
	if (status)
		return status;
	ts_err_clear(&e);
	/* The writers' lock, as every removal takes it: a prune never sees
	 * half a hold. */
	if (ts_store_lock(&store, lock_timeout, &e) != TS_OK) {
		status = cli_fail(&e);
		goto out;
	}
	for (int i = optind + 1; i < argc; i++) {
		bool changed;
		ts_err_clear(&e);
		if (ts_hold_set(&store, argv[i], on, &changed, &e) != TS_OK) {
			int st = cli_fail(&e);
			if (!status)
				status = st;
		} else if (changed) {
			printf("%s ", on ? "held" : "released");
			cli_term_name(stdout, argv[i]);
			putchar('\n');
		} else {
			cli_term_name(stdout, argv[i]);
			printf(": %s\n", on ? "held already" : "not held");
		}
	}
out:
	ts_store_close(&store);
	ts_env_close(&env);
	return status;
}

int cli_hold(int argc, char **argv)
{
	return cli_hold_run("hold", true, argc, argv);
}

int cli_release(int argc, char **argv)
{
	return cli_hold_run("release", false, argc, argv);
}
