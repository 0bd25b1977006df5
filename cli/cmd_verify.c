/* cmd_verify.c - tracsnap verify: re-check stored snapshots against their
 * manifests; one line per difference, EX_DATAERR when any.  A snapshot of
 * this boot that is not sealed yet is sealed first (seal.h), so that its
 * content is checked against complete hashes; a failure to seal it counts
 * as a difference. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "store/seal.h"
#include "store/verify.h"

typedef struct cli_verify_state {
	bool tty;              /* stderr is a terminal: show progress */
	bool progress_shown;   /* a progress line is on screen (to be cleared) */
	struct timespec last;  /* when it was last redrawn */
} cli_verify_state;

/* Remove the progress line before anything else goes to the terminal. */
static void cli_verify_clear(cli_verify_state *st)
{
	if (st->progress_shown) {
		fputs("\r\033[K", stderr);
		st->progress_shown = false;
	}
}

static void cli_verify_problem(void *arg, const char *snap, const ts_verify_problem *p)
{
	cli_verify_state *st = arg;
	cli_verify_clear(st);
	fflush(stdout);
	fprintf(stderr, "tracsnap: %s/%s: %s\n", snap, p->path, p->what);
}

static void cli_verify_progress(void *arg, const char *snap, size_t files_done, size_t files_total,
                                uint64_t bytes_done, uint64_t bytes_total)
{
	cli_verify_state *st = arg;
	struct timespec now;

	if (!st->tty)
		return;
	/* Redraw at most ten times a second, and always at the end. */
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (files_done != files_total &&
	    (now.tv_sec - st->last.tv_sec) * 1000000000L + (now.tv_nsec - st->last.tv_nsec) < 100000000L)
		return;
	st->last = now;
	fprintf(stderr, "\r verify %s: %zu/%zu files, %llu/%llu MiB\033[K", snap, files_done,
	        files_total, (unsigned long long)(bytes_done >> 20),
	        (unsigned long long)(bytes_total >> 20));
	st->progress_shown = true;
}

/* Seal snapshot name when it is of this boot and not sealed yet.  Returns
 * false, having printed why, when it could not be sealed. */
static bool cli_verify_seal(cli_verify_state *st, ts_store *store, const char *name)
{
	ts_err e;
	ts_err_code rc;

	/* Only a real snapshot name ("../x" is not one): the check below
	 * reports the others. */
	if (!ts_store_exists(store, name) ||
	    ts_store_seal_state_of(store, name) != TS_STORE_UNSEALED_NOW)
		return true;
	if (st->tty) {
		fprintf(stderr, "\r seal %s\033[K", name);
		st->progress_shown = true;
	}
	ts_err_clear(&e);
	rc = ts_seal(store, name, NULL, NULL, &e);
	cli_verify_clear(st);
	/* Gone meanwhile, or a file missing from its tree: the check below says
	 * which, more precisely than the sealer can. */
	if (rc == TS_OK || rc == TS_ERR_NOTFOUND)
		return true;
	fflush(stdout);
	fprintf(stderr, "tracsnap: %s\n", e.msg);
	return false;
}

static const char verify_usage[] = "usage: tracsnap verify [--store DIR] ENV [NAME...]\n";

int cli_verify(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "store", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	const char *store_path = NULL;
	cli_verify_state vs = { .tty = isatty(STDERR_FILENO) };
	ts_store_snap *v = NULL;
	size_t n = 0, problems = 0;
	ts_env env;
	ts_store store;
	ts_err e;
	int c, status;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 's')
			store_path = optarg;
		else
			return cli_bad_option("verify", verify_usage, argc, argv);
	}
	status = cli_check_args("verify", verify_usage, argc, argv, 1, -1, "ENV");
	if (status)
		return status;
	status = cli_open_env_store(argv[optind], store_path, false, &env, &store);
	if (status)
		return status;
	ts_err_clear(&e);
	if (argc - optind == 1 && ts_store_list(&store, &v, &n, &e) != TS_OK) {
		status = cli_fail(&e);
		goto out;
	}
	/* Named snapshots in the order given, else every one, oldest first. */
	for (size_t i = 0; argc - optind > 1 ? i < (size_t)(argc - optind - 1) : i < n; i++) {
		const char *name = argc - optind > 1 ? argv[optind + 1 + i] : v[i].name;
		size_t np = 0, npending = 0;
		if (!cli_verify_seal(&vs, &store, name)) {
			problems++;
			continue;
		}
		ts_err_clear(&e);
		vs.last.tv_sec = 0;
		if (ts_verify_snapshot(&store, name, cli_verify_problem, cli_verify_progress, &vs,
		                       &np, &npending, &e) != TS_OK) {
			int s;
			cli_verify_clear(&vs);
			s = cli_fail(&e);
			/* A damaged manifest is damage like any other: keep going so
			 * the other snapshots are checked too. */
			if (!status || status == EX_DATAERR)
				status = s;
			continue;
		}
		problems += np;
		if (npending) {
			cli_verify_clear(&vs);
			fflush(stdout);
			fprintf(stderr, "tracsnap: %s: content of %zu file%s not checked: not sealed "
			        "(hashes pending)\n", name, npending, npending == 1 ? "" : "s");
		}
	}
	cli_verify_clear(&vs);
	if (problems && !status)
		status = EX_DATAERR;
out:
	ts_store_list_free(v, n);
	ts_store_close(&store);
	ts_env_close(&env);
	return status;
}
