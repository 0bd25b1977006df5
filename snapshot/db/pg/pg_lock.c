/* pg_lock.c - hold Trac's PostgreSQL attachment writers and dump the
 * database at the snapshot instant (doc/contract.md section 4).
 *
 * Two libpq connections:
 *   A  BEGIN; LOCK TABLE <schema>.attachment IN SHARE MODE
 *      SHARE conflicts only with the row-changing modes: attachment uploads,
 *      deletes and moves wait, every other table (tickets, wiki) goes on.
 *      Once it is granted, no transaction that changed an attachment row is
 *      still open, so each committed row has its file complete on disk.
 *   B  BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;
 *      SELECT pg_export_snapshot()
 *      taken while A holds the lock: the database state of the instant.
 * snap.c then freezes the files; capture() commits A (the writers resume)
 * and runs `pg_dump --snapshot=ID`, which imports B's snapshot and so dumps
 * exactly that state however long it takes.  B stays open until pg_dump has
 * exited: an exported snapshot lives only as long as its transaction.
 *
 * The password goes to libpq in memory (pg_conn.c) and to pg_dump as a
 * password file on a descriptor (pg_proc.c); every message names the
 * database by a display URI without the password and is scrubbed of it all
 * the same.  The dump is plain SQL, mode 0600, of the Trac schema only,
 * streamed through this process (pg_dumphdr.c).
 *
 * This file is the backend's table (ts_db_postgres, dbsnap.h) and its
 * session operations: open, lock, capture, release.
 */
#include "db/pg/pg_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void pg_release(ts_dbsnap *d)
{
	pg_impl *im = d->impl;

	if (im->a_open) {
		PQclear(PQexec(im->a, "ROLLBACK"));
		im->a_open = false;
	}
	if (d->held) {
		d->held = false;
		clock_gettime(CLOCK_MONOTONIC, &d->released_at);
	}
	if (im->b_open) {
		PQclear(PQexec(im->b, "ROLLBACK"));
		im->b_open = false;
	}
}

static void pg_free(ts_dbsnap *d)
{
	pg_impl *im = d->impl;

	if (!im)
		return;
	PQfinish(im->a);
	PQfinish(im->b);
	free(im->display);
	PQfreemem(im->qschema);
	free(im);
	d->impl = NULL;
}

/* Who holds a conflicting lock on attachment?  Only a hint for the message. */
static long pg_lock_holder(ts_dbsnap *d)
{
	pg_impl *im = d->impl;
	const char *params[1] = { d->env->db.schema };
	long pid = 0;
	PGresult *r = PQexecParams(im->b,
	        "SELECT l.pid FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid = l.relation "
	        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
	        "WHERE n.nspname = $1 AND c.relname = 'attachment' AND l.granted "
	        "AND l.mode NOT IN ('AccessShareLock', 'RowShareLock', 'ShareLock') "
	        "AND l.pid <> pg_catalog.pg_backend_pid() LIMIT 1", 1, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		pid = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return pid;
}

static double pg_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Take the SHARE lock on attachment within d->timeout_s.
 *
 * A LOCK request that waits is queued, and every attachment writer that
 * comes after it queues behind it, also when what it waits for is not a
 * writer: an autovacuum or ANALYZE of the table (which the server cancels
 * only after deadlock_timeout, 1 s by default).  So for the first half of the
 * time each try waits at most PG_LOCK_TRY_MS and then steps aside (ROLLBACK
 * TO SAVEPOINT), letting the queued writers through; only then does one try
 * wait for the rest of the time, as Trac's own writers would. */
#define PG_LOCK_TRY_MS 100
#define PG_LOCK_GAP_MS 10
static ts_err_code pg_take_lock(ts_dbsnap *d, ts_err *e)
{
	pg_impl *im = d->impl;
	char lock[128 + 2 * NAME_MAX], set[96];
	double start = pg_now(), deadline = start + d->timeout_s, patient = start + d->timeout_s / 2.0;
	ts_err_code rc;
	PGresult *r;

	snprintf(lock, sizeof lock, "LOCK TABLE %s.attachment IN SHARE MODE", im->qschema);
	rc = pg_cmd(d, im->a, "SAVEPOINT tracsnap_lock", "setting a savepoint", e);
	if (rc != TS_OK)
		return rc;
	for (;;) {
		double now = pg_now();
		long ms = now >= patient ? (long)((deadline - now) * 1000) : PG_LOCK_TRY_MS;
		const char *state;

		if (ms < 1)
			ms = 1;
		/* Inside the savepoint: undone with it, set again each time. */
		snprintf(set, sizeof set, "SET LOCAL lock_timeout = %ld", ms);
		rc = pg_cmd(d, im->a, set, "setting lock_timeout", e);
		if (rc != TS_OK)
			return rc;
		r = PQexec(im->a, lock);
		if (PQresultStatus(r) == PGRES_COMMAND_OK) {
			PQclear(r);
			return TS_OK;
		}
		state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		if (!state || strcmp(state, "55P03") != 0 || pg_now() >= deadline) {
			rc = pg_fail(e, d, im->a, r, "locking the attachment table");
			PQclear(r);
			return rc;
		}
		PQclear(r);
		rc = pg_cmd(d, im->a, "ROLLBACK TO SAVEPOINT tracsnap_lock", "retrying the lock", e);
		if (rc != TS_OK)
			return rc;
		if (pg_now() < patient) {
			struct timespec gap = { 0, PG_LOCK_GAP_MS * 1000000L };
			nanosleep(&gap, NULL);
		}
	}
}

static ts_err_code pg_lock(ts_dbsnap *d, ts_err *e)
{
	pg_impl *im = d->impl;
	PGresult *r = NULL;
	ts_err_code rc;

	rc = pg_cmd(d, im->a, "BEGIN", "starting the lock transaction", e);
	if (rc != TS_OK)
		goto out;
	im->a_open = true;
	rc = pg_take_lock(d, e);
	if (rc == TS_ERR_BUSY) {
		long pid = pg_lock_holder(d);
		char who[64] = "";
		if (pid > 0)
			snprintf(who, sizeof who, " (held by server process %ld?)", pid);
		rc = ts_err_set(e, TS_ERR_BUSY, "could not lock %s.attachment in %s within %d s%s",
		                d->env->db.schema, im->display, d->timeout_s, who);
	}
	if (rc != TS_OK)
		goto out;
	clock_gettime(CLOCK_MONOTONIC, &d->locked_at);
	clock_gettime(CLOCK_REALTIME, &im->instant);
	d->held = true;
	/* The snapshot starts with B's first statement: now, under the lock. */
	rc = pg_cmd(d, im->b, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
	            "starting the snapshot transaction", e);
	if (rc != TS_OK)
		goto out;
	im->b_open = true;
	r = PQexec(im->b, "SELECT pg_catalog.pg_export_snapshot()");
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 ||
	    PQgetlength(r, 0, 0) >= (int)sizeof im->snapshot) {
		rc = pg_fail(e, d, im->b, r, "exporting the snapshot");
		goto out;
	}
	memcpy(im->snapshot, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0) + 1);
out:
	PQclear(r);
	if (rc != TS_OK)
		pg_release(d);
	return rc;
}

static ts_err_code pg_capture(ts_dbsnap *d, int treefd, const char *rel, ts_err *e)
{
	pg_impl *im = d->impl;
	ts_err_code rc = TS_OK;
	int fd = -1;

	/* The files are frozen and B holds the instant: the writers may go. */
	if (im->a_open) {
		rc = pg_cmd(d, im->a, "COMMIT", "releasing the lock", e);
		im->a_open = false;
	}
	if (d->held) {
		d->held = false;
		clock_gettime(CLOCK_MONOTONIC, &d->released_at);
	}
	if (rc != TS_OK)
		goto out;
	/* Never write into what the walk may have put there (or linked from
	 * an older snapshot). */
	if (unlinkat(treefd, rel, 0) < 0 && errno != ENOENT) {
		rc = ts_err_sys(e, errno, "%s: cannot replace in the store", rel);
		goto out;
	}
	fd = openat(treefd, rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot create in the store", rel);
		goto out;
	}
	rc = pg_run_dump(d, fd, rel, e);
	if (rc != TS_OK)
		goto out;
	{
		struct timespec times[2] = { im->instant, im->instant };
		if ((im->have_ini_st && fchown(fd, im->ini_st.st_uid, im->ini_st.st_gid) < 0 &&
		     geteuid() == 0) || fchmod(fd, 0600) < 0 || futimens(fd, times) < 0)
			rc = ts_err_sys(e, errno, "%s: cannot set metadata of the dump", rel);
	}
out:
	if (fd >= 0)
		close(fd);
	/* pg_dump has imported the snapshot and is done with it. */
	if (im->b_open) {
		PQclear(PQexec(im->b, "COMMIT"));
		im->b_open = false;
	}
	return rc;
}


static ts_err_code pg_open(ts_dbsnap *d, ts_err *e)
{
	ts_err_code rc = TS_OK;
	const ts_dburi *u = &d->env->db;
	pg_impl *im = calloc(1, sizeof *im);

	d->impl = im;
	if (!im)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	im->display = pg_display(u);
	if (!im->display)
		goto nomem;
	if (stat(d->env->ini_path, &im->ini_st) == 0)
		im->have_ini_st = true;
	rc = pg_connect(d, &im->a, e);
	if (rc != TS_OK)
		goto out;
	im->server_version = PQserverVersion(im->a);
	if (im->server_version < 90200) {
		rc = ts_err_set(e, TS_ERR_UNSUPPORTED, "%s: PostgreSQL %d.%d cannot export snapshots "
		                "(9.2 or later needed)", im->display, im->server_version / 10000,
		                im->server_version / 100 % 100);
		goto out;
	}
	im->qschema = PQescapeIdentifier(im->a, u->schema, strlen(u->schema));
	if (!im->qschema) {
		rc = pg_fail(e, d, im->a, NULL, "quoting the schema name");
		goto out;
	}
	rc = pg_check_schema(d, e);
	if (rc != TS_OK)
		goto out;
	rc = pg_connect(d, &im->b, e);
	if (rc != TS_OK)
		goto out;
	rc = pg_dump_probe(d, e);
	goto out;
nomem:
	rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
out:
	if (rc != TS_OK)
		pg_free(d);
	return rc;
}


const ts_db_backend ts_db_postgres = {
	.name = "postgres",
	.excluded = pg_excluded,
	.place = pg_place,
	.open = pg_open,
	.lock = pg_lock,
	.capture = pg_capture,
	.release = pg_release,
	.free = pg_free,
	.restore_open = pg_restore_open,
	.restore_check = pg_restore_check,
	.restore_load = pg_restore_load,
	.restore_close = pg_restore_close,
};
