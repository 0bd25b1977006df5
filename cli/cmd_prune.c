/* cmd_prune.c - tracsnap prune: remove the snapshots a retention policy does
 * not keep (restic's meaning of the words; see snapshot/store/prune.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <sysexits.h>

#include "cli.h"
#include "base/parse.h"
#include "base/progress.h"
#include "store/prune.h"

/* One line per snapshot.  A snapshot kept only because a process uses it
 * through a mount is said so, with who; the exit status stays 0 (the
 * policy was applied as far as it safely could be: the next prune removes
 * it once its readers are done).  A held one is said so too. */
static void cli_prune_line(void *arg, const char *name, ts_prune_verdict v, const char *why)
{
	const bool *dry_run = arg;
	const char *word = v == TS_PRUNE_REMOVE ? (*dry_run ? "would remove" : "remove") :
	                   v == TS_PRUNE_BUSY || v == TS_PRUNE_HELD ? "kept" : "keep";

	printf("%s ", word);
	cli_term_name(stdout, name);
	if (v == TS_PRUNE_BUSY) {
		printf(": %s", why);
	} else if (v == TS_PRUNE_HELD) {
		fputs(": held (tracsnap release ", stdout);
		cli_term_name(stdout, name);
		putchar(')');
	} else if (v == TS_PRUNE_UNSEALED) {
		fputs(" (not sealed yet: not counted)", stdout);
	}
	putchar('\n');
}

/* The last line: how many went (or would), the space they held alone
 * (space.h), and what stayed for reasons other than the policy. */
static void cli_prune_summary(const ts_prune_result *r, bool dry_run)
{
	char freed[32], why[64] = "";

	ts_human_bytes((double)r->freed, freed, sizeof freed);
	if (r->held && r->busy)
		snprintf(why, sizeof why, " (%u held, %u in use)", r->held, r->busy);
	else if (r->held || r->busy)
		snprintf(why, sizeof why, " (%u %s)", r->held + r->busy, r->held ? "held" : "in use");
	printf("%s %u snapshot%s, %s %s; %u kept%s\n", dry_run ? "would remove" : "removed", r->removed,
	       r->removed == 1 ? "" : "s", dry_run ? "would free" : "freed", freed, r->kept, why);
}

int cli_prune(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "store", required_argument, NULL, 's' },
		{ "keep-last", required_argument, NULL, 'l' },
		{ "keep-hourly", required_argument, NULL, 'H' },
		{ "keep-daily", required_argument, NULL, 'D' },
		{ "keep-weekly", required_argument, NULL, 'W' },
		{ "keep-monthly", required_argument, NULL, 'M' },
		{ "lock-timeout", required_argument, NULL, 't' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	const char *store_path = NULL;
	ts_prune_policy p = { 0 };
	const char *given = NULL;   /* the first --keep-* option given */
	bool dry_run = false;
	int lock_timeout = TS_LOCK_TIMEOUT_DEFAULT;
	ts_env env;
	ts_store store;
	ts_err e;
	int c, status, idx;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, &idx)) != -1) {
		int *slot = NULL;
		switch (c) {
		case 's': store_path = optarg; continue;
		case 'n': dry_run = true; continue;
		case 'l': slot = &p.last; break;
		case 'H': slot = &p.hourly; break;
		case 'D': slot = &p.daily; break;
		case 'W': slot = &p.weekly; break;
		case 'M': slot = &p.monthly; break;
		case 't':
			status = cli_parse_lock_timeout(optarg, &lock_timeout);
			if (status)
				return status;
			continue;
		default:
			return cli_bad_option("prune", argc, argv);
		}
		if (!given)
			given = longopts[idx].name;
		if (!ts_parse_int(optarg, 0, 1000000, slot)) {
			fprintf(stderr, "tracsnap: --%s %s: must be a number from 0 to 1000000\n",
			        longopts[idx].name, optarg);
			return EX_USAGE;
		}
	}
	status = cli_check_args("prune", argc, argv, 1, 1, "ENV");
	if (status)
		return status;
	if (!given) {
		fprintf(stderr, "tracsnap: prune: no --keep-* option given: refusing to remove every snapshot\n");
		return EX_USAGE;
	}
	if (ts_prune_policy_empty(&p)) {
		fprintf(stderr, "tracsnap: prune: --%s 0 keeps nothing: refusing to remove every snapshot "
		        "(give one --keep-* option above 0)\n", given);
		return EX_USAGE;
	}
	status = cli_open_env_store(argv[optind], store_path, false, &env, &store, NULL);
	if (status)
		return status;
	ts_err_clear(&e);
	ts_prune_opts o = { .dry_run = dry_run, .lock_timeout_s = lock_timeout,
	                    .fn = cli_prune_line, .arg = &dry_run, .measure = true };
	ts_prune_result res;
	if (ts_prune_store(&store, &p, &o, &res, &e) != TS_OK) {
		fflush(stdout);
		status = cli_fail(&e);
	} else {
		cli_prune_summary(&res, dry_run);
	}
	ts_store_close(&store);
	ts_env_close(&env);
	return status;
}
