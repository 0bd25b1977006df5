/* cmd_verify.c - tracsnap verify: re-check stored snapshots against their
 * manifests; one line per difference on stderr, one summary line on stdout,
 * EX_DATAERR when anything differs.  A snapshot of this boot that is not
 * sealed yet is sealed first (seal.h), so that its content is checked
 * against complete hashes; a failure to seal it counts as a difference.
 * All the snapshots are checked in one run (verify.h), so that a store
 * inode several of them share is read once.  --repair then rewrites what
 * it can (ts_verify_repair) and says, file by file, what it did. */
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_progress.h"
#include "base/parse.h"
#include "base/progress.h"
#include "base/log.h"
#include "store/seal.h"
#include "store/verify.h"
#include "take/snap.h"

typedef struct cli_verify_state {
	cli_progress pr;       /* the progress line, as other commands draw it */
	char what[NAME_MAX + 16];   /* its label: "verify NAME" */
	const char **bad;      /* snapshots with problems, in order (not owned) */
	size_t nbad;
} cli_verify_state;

/* Remove the progress line before anything else goes to the terminal. */
static void cli_verify_clear(cli_verify_state *st)
{
	cli_progress_end(&st->pr);
}

static void cli_verify_problem(void *arg, const char *snap, const ts_verify_problem *p)
{
	cli_verify_state *st = arg;
	cli_verify_clear(st);
	fflush(stdout);
	fprintf(stderr, "tracsnap: %s/%s: %s\n", snap, p->path, p->what);
}

static void cli_verify_repaired(void *arg, const ts_verify_repair_note *n)
{
	cli_verify_state *st = arg;
	char shared[64] = "";

	cli_verify_clear(st);
	fflush(stdout);
	if (n->shared > 1)
		snprintf(shared, sizeof shared, " (and %zu other snapshot%s sharing it)", n->shared - 1,
		         n->shared == 2 ? "" : "s");
	switch (n->how) {
	case TS_VERIFY_REPAIRED_ENV:
		fprintf(stderr, "tracsnap: repaired %s/%s from the environment%s\n", n->snap, n->path,
		        shared);
		break;
	case TS_VERIFY_REPAIRED_COPY:
		fprintf(stderr, "tracsnap: repaired %s/%s from %s/%s%s\n", n->snap, n->path,
		        n->from_snap, n->from_path, shared);
		break;
	case TS_VERIFY_REPAIRED_META:
		fprintf(stderr, "tracsnap: repaired %s/%s: mode, owner and mtime as the manifest "
		        "says%s\n", n->snap, n->path, shared);
		break;
	case TS_VERIFY_NOT_REPAIRED:
		fprintf(stderr, "tracsnap: %s/%s: cannot repair: %s%s\n", n->snap, n->path, n->why,
		        shared);
		break;
	}
}

/* n with a comma every three digits: "1,204". */
static const char *cli_verify_count(uint64_t n, char buf[32])
{
	char digits[24];
	int len = snprintf(digits, sizeof digits, "%llu", (unsigned long long)n), o = 0;

	for (int i = 0; i < len; i++) {
		if (i && (len - i) % 3 == 0)
			buf[o++] = ',';
		buf[o++] = digits[i];
	}
	buf[o] = 0;
	return buf;
}

/* Bytes as the other commands print them: "512 B", "2.1 GiB". */
static const char *cli_verify_bytes(uint64_t n, char buf[32])
{
	ts_human_bytes((double)n, buf, 32);
	return buf;
}

/* The one stdout line: what was checked, what was read, what was found.
 * problems: all of them (t's and the seal's refusals); nrepaired/nleft:
 * after --repair (repaired false: not asked). */
static void cli_verify_summary(const cli_verify_state *st, const ts_verify_totals *t,
                               size_t problems, size_t not_checked, bool repaired,
                               size_t nrepaired, size_t nleft)
{
	char b1[32], b2[32], b3[32];

	printf("verified %zu snapshot%s: %s file%s, %s read (%s in the snapshots)", t->snapshots,
	       t->snapshots == 1 ? "" : "s", cli_verify_count(t->files, b1), t->files == 1 ? "" : "s",
	       cli_verify_bytes(t->bytes_read, b2), cli_verify_bytes(t->bytes, b3));
	if (not_checked)
		printf(", %zu snapshot%s not checked", not_checked, not_checked == 1 ? "" : "s");
	if (t->pending)
		printf(", %s file%s not checked for content (not sealed)",
		       cli_verify_count(t->pending, b1), t->pending == 1 ? "" : "s");
	if (t->drift)
		printf(", metadata drift on %s entr%s (mtimes kept to the second)%s",
		       cli_verify_count(t->drift, b1), t->drift == 1 ? "y" : "ies",
		       repaired ? ", set back" : "");
	if (!problems) {
		/* Not "no problem" when a snapshot could not be checked at all. */
		printf("%s\n", not_checked ? "" : ", no problem");
		return;
	}
	printf(", %zu problem%s in ", problems, problems == 1 ? "" : "s");
	for (size_t i = 0; i < st->nbad; i++) {
		if (i == 10) {
			printf(" and %zu more", st->nbad - i);
			break;
		}
		printf("%s%s", i ? ", " : "", st->bad[i]);
	}
	if (repaired && !nleft)
		printf(": all repaired");
	else if (repaired)
		printf(": %zu repaired, %zu left", nrepaired, nleft);
	printf("\n");
}

static void cli_verify_progress(void *arg, const char *snap, size_t files_done, size_t files_total,
                                uint64_t bytes_done, uint64_t bytes_total)
{
	cli_verify_state *st = arg;
	ts_progress p = { files_done, files_total, bytes_done, bytes_total };

	(void)snap;   /* in the label since the snapshot began (cli_verify_begin) */
	cli_progress_show(&st->pr, &p);
}

/* A new snapshot: the progress line's label and clock start again. */
static void cli_verify_begin(cli_verify_state *st, const char *name)
{
	cli_progress_end(&st->pr);
	snprintf(st->what, sizeof st->what, "verify %s", name);
	(void)cli_progress_start(&st->pr, st->what);
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
	if (st->pr.tty) {
		fprintf(stderr, "\r\033[Kseal %s", name);
		st->pr.shown = true;
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

/* --repair: rewrite what can be rewritten, then say what is left. */
static int cli_verify_do_repair(cli_verify_state *vs, ts_verify_run *run, ts_store *store,
                                const ts_env *env, size_t *nrepaired, size_t *nleft)
{
	ts_err e;
	int envfd, status = 0;

	/* ENV by its path, never through a symlink put in its place: the
	 * live files are then reached beneath it (verify_repair.c). */
	envfd = open(env->root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	ts_err_clear(&e);
	if (ts_verify_repair(run, store, envfd, TS_LOCK_TIMEOUT_DEFAULT, cli_verify_repaired,
	                     cli_verify_problem, vs, nrepaired, nleft, &e) != TS_OK) {
		cli_verify_clear(vs);
		status = cli_fail(&e);
	}
	if (envfd >= 0)
		close(envfd);
	return status;
}

int cli_verify(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "store", required_argument, NULL, 's' },
		{ "repair", no_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	const char *store_path = NULL;
	cli_verify_state vs = { .nbad = 0 };
	ts_store_snap *v = NULL;
	ts_verify_run *run = NULL;
	ts_verify_totals tot;
	size_t n = 0, problems = 0, not_checked = 0, nrepaired = 0, nleft = 0;
	bool repair = false;
	ts_env env;
	ts_store store;
	ts_err e;
	int c, status;

	(void)cli_progress_start(&vs.pr, "verify");   /* is stderr a terminal? */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 's')
			store_path = optarg;
		else if (c == 'r')
			repair = true;
		else
			return cli_bad_option("verify", argc, argv);
	}
	status = cli_check_args("verify", argc, argv, 1, -1, "ENV");
	if (status)
		return status;
	status = cli_open_env_store(argv[optind], store_path, false, &env, &store, NULL);
	if (status)
		return status;
	ts_err_clear(&e);
	if (argc - optind == 1 && ts_store_list(&store, &v, &n, &e) != TS_OK) {
		status = cli_fail(&e);
		goto out;
	}
	/* A snapshot the daemon took from its stage as it was has its copies
	 * checked (and one damaged since replaced) before anything seals it
	 * (snapshot/take/snap_adopted.c): the daemon may be gone. */
	if (ts_snap_check_adopted(&store, &env, TS_LOCK_TIMEOUT_DEFAULT, &e) != TS_OK) {
		ts_log(LOG_WARNING, "%s", e.msg);
		ts_err_clear(&e);
	}
	run = ts_verify_run_new(repair);
	vs.bad = calloc(argc - optind > 1 ? (size_t)(argc - optind - 1) : n + 1, sizeof *vs.bad);
	if (!run || !vs.bad) {
		ts_err_set(&e, TS_ERR_NOMEM, "out of memory");
		status = cli_fail(&e);
		goto out;
	}
	/* Named snapshots in the order given, else every one, oldest first. */
	for (size_t i = 0; argc - optind > 1 ? i < (size_t)(argc - optind - 1) : i < n; i++) {
		const char *name = argc - optind > 1 ? argv[optind + 1 + i] : v[i].name;
		size_t np = 0, npending = 0, drift_before;
		ts_verify_run_totals(run, &tot);
		drift_before = tot.drift;
		if (!cli_verify_seal(&vs, &store, name)) {
			problems++;
			vs.bad[vs.nbad++] = name;
			continue;
		}
		ts_err_clear(&e);
		cli_verify_begin(&vs, name);
		if (ts_verify_run_snapshot(run, &store, name, cli_verify_problem, cli_verify_progress,
		                           &vs, &np, &npending, &e) != TS_OK) {
			int s;
			cli_verify_clear(&vs);
			s = cli_fail(&e);
			not_checked++;
			/* A damaged manifest is damage like any other: keep going so
			 * the other snapshots are checked too. */
			if (!status || status == EX_DATAERR)
				status = s;
			continue;
		}
		problems += np;
		if (np)
			vs.bad[vs.nbad++] = name;
		if (npending) {
			cli_verify_clear(&vs);
			fflush(stdout);
			fprintf(stderr, "tracsnap: %s: content of %zu file%s not checked: not sealed "
			        "(hashes pending)\n", name, npending, npending == 1 ? "" : "s");
		}
		ts_verify_run_totals(run, &tot);
		if (tot.drift > drift_before) {
			/* Not damage: one line for the snapshot, not one per entry. */
			size_t nd = tot.drift - drift_before;
			cli_verify_clear(&vs);
			fprintf(stderr, "tracsnap: %s: %zu entr%s whose mtime was kept to the second, the "
			        "content unchanged: metadata drift (as a copy by dump/restore leaves it), "
			        "not damage%s\n", name, nd, nd == 1 ? "y" : "ies",
			        repair ? "" : "; tracsnap verify --repair sets the times back");
		}
	}
	cli_verify_clear(&vs);
	ts_verify_run_totals(run, &tot);
	if (repair && (problems || tot.drift)) {
		int s = cli_verify_do_repair(&vs, run, &store, &env, &nrepaired, &nleft);
		if (s) {
			nrepaired = 0;
			nleft = tot.problems;
			if (!status)
				status = s;
		}
		/* What the seal refused is not in the run: it stays a problem. */
		nleft += problems - tot.problems;
	}
	cli_verify_summary(&vs, &tot, problems, not_checked, repair, nrepaired, nleft);
	if (problems && (!repair || nleft) && !status)
		status = EX_DATAERR;
out:
	ts_verify_run_free(run);
	free(vs.bad);
	ts_store_list_free(v, n);
	ts_store_close(&store);
	ts_env_close(&env);
	return status;
}
