/* dbsnap_sqlite.c - hold Trac's SQLite writers and capture the database.
 *
 * Connection W takes the write lock exactly as Trac's writers contend for it
 * (BEGIN IMMEDIATE with a busy timeout), so Trac's writers wait and its readers
 * go on.  Connection R then opens a read transaction, which fixes the database
 * state of the snapshot instant.  The copy is made from R with the backup API
 * in a single step (so no other connection's commit can restart it), into a
 * fresh file that is then switched to rollback-journal mode: a snapshot must
 * open with `sqlite3 -readonly` on a read-only mount, which a WAL file cannot.
 *
 * WAL mode: R's snapshot survives W's release, so the writers are let go before
 * the copy.  Rollback-journal mode: a committing writer rewrites the database
 * file in place and would have to wait for R's shared lock anyway, so W keeps
 * the writers waiting until the copy is done and both end together.
 */
#include "base/beneath.h"
#include "db/sqlite/sqlite_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "base/copy.h"

typedef struct sqlite_impl {
	sqlite3 *w;      /* holds the write lock */
	sqlite3 *r;      /* holds the read snapshot */
	bool r_open;     /* R's read transaction is open */
	bool wal;
	bool precopied;  /* a raw copy of the file is in place at the destination */
	struct stat db_st; /* the database file at lock time: the copy's metadata */
	sqlite_sums sums;  /* of the pre-copy's blocks (sqlite_update.c) */
	sqlite_tap *tap;   /* the process's, from the pre-copy on (NULL: none) */
	struct timespec busy_from;  /* W's first failed try for the lock */
	int busy_limit_ms;
} sqlite_impl;

/* How W waits for a writer's transaction to end.  SQLite's own busy
 * timeout sleeps 1, 2, 5, 10 ms... between tries: a commit of 2 ms could
 * keep the snapshot waiting 8, all of which mkdir waits too.  W tries
 * every SQLITE_POLL_US for the first SQLITE_POLL_FAST_MS, then, so as not
 * to spin through a long wait, every SQLITE_POLL_SLOW_US until the
 * timeout. */
#define SQLITE_POLL_US 200
#define SQLITE_POLL_FAST_MS 100
#define SQLITE_POLL_SLOW_US 5000

static int sqlite_busy(void *arg, int tries)
{
	sqlite_impl *im = arg;
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (tries == 0)
		im->busy_from = now;
	double ms = (double)(now.tv_sec - im->busy_from.tv_sec) * 1e3 +
	            (double)(now.tv_nsec - im->busy_from.tv_nsec) / 1e6;
	if (ms >= im->busy_limit_ms)
		return 0;
	long us = ms < SQLITE_POLL_FAST_MS ? SQLITE_POLL_US : SQLITE_POLL_SLOW_US;
	struct timespec nap = { 0, us * 1000 };
	nanosleep(&nap, NULL);
	return 1;
}

/* One translation of SQLite result codes into engine errors. */
static ts_err_code sqlite_err(ts_err *e, sqlite3 *db, int rc, const char *dbpath, const char *doing)
{
	const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return ts_err_set(e, TS_ERR_BUSY, "%s: %s: %s", dbpath, doing, msg);
	case SQLITE_NOTADB:
		return ts_err_set(e, TS_ERR_DB, "%s: not an SQLite database (%s)", dbpath, doing);
	case SQLITE_CORRUPT:
		return ts_err_set(e, TS_ERR_DB, "%s: database is corrupt (%s: %s)", dbpath, doing, msg);
	case SQLITE_FULL:
		return ts_err_set(e, TS_ERR_NOSPC, "%s: %s: %s", dbpath, doing, msg);
	case SQLITE_NOMEM:
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	default:
		return ts_err_set(e, TS_ERR_DB, "%s: %s: %s", dbpath, doing, msg);
	}
}

/* Who holds a POSIX lock on path (or on its -shm in WAL mode)?  Only a hint
 * for the message, so any failure just yields 0. */
static long sqlite_lock_holder(const char *path)
{
	char shm[PATH_MAX + 8], line[512];
	struct stat st[2];
	int have[2];
	long pid = 0;
	FILE *f;

	snprintf(shm, sizeof shm, "%s-shm", path);
	have[0] = stat(path, &st[0]) == 0;
	have[1] = stat(shm, &st[1]) == 0;
	f = fopen("/proc/locks", "re");
	if (!f)
		return 0;
	while (!pid && fgets(line, sizeof line, f)) {
		long p;
		unsigned maj, min;
		unsigned long ino;
		char kind[16];
		if (sscanf(line, "%*d: %15s %*s %*s %ld %x:%x:%lu", kind, &p, &maj, &min, &ino) != 5)
			continue;
		if (p == (long)getpid())
			continue;
		for (int i = 0; i < 2; i++)
			if (have[i] && st[i].st_ino == ino && major(st[i].st_dev) == maj &&
			    minor(st[i].st_dev) == min)
				pid = p;
	}
	fclose(f);
	return pid;
}

static int sqlite_exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static void sqlite_release(ts_dbsnap *d)
{
	sqlite_impl *im = d->impl;
	if (im->r_open) {
		sqlite_exec(im->r, "COMMIT");
		im->r_open = false;
	}
	if (d->held) {
		sqlite_exec(im->w, "ROLLBACK");
		d->held = false;
		clock_gettime(CLOCK_MONOTONIC, &d->released_at);
	}
}

static void sqlite_free(ts_dbsnap *d)
{
	sqlite_impl *im = d->impl;
	sqlite3_close(im->w);
	sqlite3_close(im->r);
	sqlite_sums_drop(&im->sums);
	sqlite_tap_put(im->tap);
	free(im);
	d->impl = NULL;
}

static ts_err_code sqlite_lock(ts_dbsnap *d, ts_err *e)
{
	sqlite_impl *im = d->impl;
	const char *path = d->env->db_abs;
	sqlite3_stmt *st = NULL;
	ts_err_code rc = TS_OK;
	int src;

	im->busy_limit_ms = d->timeout_s * 1000;
	sqlite3_busy_handler(im->w, sqlite_busy, im);
	src = sqlite_exec(im->w, "BEGIN IMMEDIATE");
	if ((src & 0xff) == SQLITE_BUSY) {
		long pid = sqlite_lock_holder(path);
		char who[48] = "";
		if (pid > 0)
			snprintf(who, sizeof who, " (held by pid %ld?)", pid);
		rc = ts_err_set(e, TS_ERR_BUSY, "could not take the write lock on %s within %d s%s",
		                path, d->timeout_s, who);
		goto out;
	}
	if (src != SQLITE_OK) {
		rc = sqlite_err(e, im->w, src, path, "taking the write lock");
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &d->locked_at);
	d->held = true;
	if (stat(path, &im->db_st) < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot stat", path);
		goto out;
	}
	/* The read transaction starts now, while no writer can commit: its view
	 * is the snapshot instant. */
	sqlite3_busy_timeout(im->r, d->timeout_s * 1000);
	src = sqlite_exec(im->r, "BEGIN");
	if (src == SQLITE_OK)
		src = sqlite3_prepare_v2(im->r, "PRAGMA journal_mode", -1, &st, NULL);
	if (src == SQLITE_OK) {
		im->r_open = true;
		src = sqlite3_step(st);
		if (src == SQLITE_ROW) {
			const char *m = (const char *)sqlite3_column_text(st, 0);
			im->wal = m && !strcmp(m, "wal");
			src = SQLITE_OK;
		}
	}
	if (src == SQLITE_OK)
		src = sqlite_exec(im->r, "SELECT count(*) FROM sqlite_master");
	if (src != SQLITE_OK)
		rc = sqlite_err(e, im->r, src, path, "opening the read snapshot");
out:
	sqlite3_finalize(st);
	if (rc != TS_OK)
		sqlite_release(d);
	return rc;
}

/* Rollback-journal mode: copy the file as it is now, before the lock.  It
 * need not be consistent: capture brings it up to the file under the lock
 * and rewrites what differs (sqlite_refresh), reading the copy only where
 * a block no longer has the hash this pass kept (sqlite_update.c).  A
 * copy already at rel (the daemon's stage keeps one, stage.h) is brought
 * up to date instead of made anew. */
static ts_err_code sqlite_precopy(ts_dbsnap *d, int treefd, const char *rel, ts_err *e)
{
	sqlite_impl *im = d->impl;
	const char *path = d->env->db_abs;
	const char *base = strrchr(path, '/');   /* db_abs is absolute */
	char dir[PATH_MAX];
	unsigned char hdr[20];
	ts_err_code rc = TS_OK;
	uint64_t bytes = 0;
	int in = -1, out = -1, pfd;
	bool made = false;
	const char *leaf;

	/* The copy's directory beneath treefd: the environment may have had a
	 * link where the database's directory is (beneath.h). */
	pfd = ts_beneath_parent(treefd, rel, &leaf);
	if (pfd < 0)
		return ts_err_sys(e, errno, "%s: cannot reach its directory in the store", rel);
	in = open(path, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot open", path);
		goto out;
	}
	/* Header bytes 18-19 are 2 in WAL mode, where the copy is made from the
	 * read snapshot after the lock instead (into a new file). */
	if (pread(in, hdr, sizeof hdr, 0) == (ssize_t)sizeof hdr && hdr[18] == 2) {
		(void)unlinkat(pfd, leaf, 0);
		goto out;
	}
	/* From here on the tap says what Trac writes (sqlite_tap.c). */
	if (!im->tap)
		im->tap = sqlite_tap_get(path);
	out = openat(pfd, leaf, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (out >= 0) {
		rc = sqlite_update(in, out, path, rel, false, &im->sums, im->tap, e);
	} else {
		out = openat(pfd, leaf, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (out < 0) {
			rc = ts_err_sys(e, errno, "%s: cannot create the database copy", rel);
			goto out;
		}
		made = true;
		/* The copy's sums name the tap's window begun before it. */
		sqlite_tap_chg chg = { 0 };
		if (im->tap)
			sqlite_tap_rotate(im->tap, in, false, &chg);
		sqlite_tap_chg_free(&chg);
		/* In the kernel where it can: one copy of each page, not two
		 * (the pre-copy runs beside the walk, on the same cores). */
		snprintf(dir, sizeof dir, "%.*s", (int)(base - path), path);
		rc = ts_copy_fd(in, out, &bytes, dir, base + 1, e);
		/* Its sums, read back from the page cache it is still in:
		 * the pass under the lock then reads the file alone. */
		if (rc == TS_OK)
			rc = sqlite_sums_of(out, rel, chg.started, &im->sums, e);
		/* A copy the kernel cannot make (the store on another
		 * filesystem) goes through this thread's copy buffer, and the
		 * pre-copy may run on a thread of its own that ends after it
		 * (take/snap.c): give the buffer back. */
		ts_copy_thread_done();
	}
	im->precopied = rc == TS_OK;
out:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	if (rc != TS_OK && out >= 0 && made)
		unlinkat(pfd, leaf, 0);
	ts_beneath_parent_close(treefd, pfd);
	return rc;
}

/* Under the lock, rollback-journal mode: W's reserved lock means no writer can
 * commit, R's read transaction means any hot journal was rolled back: the file
 * is exactly the committed state.  Bring the pre-copy up to it. */
static ts_err_code sqlite_refresh(ts_dbsnap *d, int treefd, const char *rel, ts_err *e)
{
	sqlite_impl *im = d->impl;
	const char *path = d->env->db_abs;
	ts_err_code rc;
	int in = open(path, O_RDONLY | O_CLOEXEC);
	int out = ts_beneath_open(treefd, rel, O_RDWR, 0);

	if (in < 0 || out < 0)
		rc = ts_err_sys(e, errno, "%s: cannot open for the copy", in < 0 ? path : rel);
	else
		rc = sqlite_update(in, out, path, rel, true, &im->sums, im->tap, e);
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return rc;
}

static ts_err_code sqlite_capture(ts_dbsnap *d, int treefd, const char *rel, ts_err *e)
{
	sqlite_impl *im = d->impl;
	const char *path = d->env->db_abs;
	char dest[PATH_MAX + 32], side[PATH_MAX + 48];
	sqlite3 *out = NULL;
	sqlite3_backup *bk = NULL;
	ts_err_code rc = TS_OK;
	int src, fd = -1;
	const char *leaf;
	/* Everything below by the copy's directory, beneath treefd (beneath.h). */
	int pfd = ts_beneath_parent(treefd, rel, &leaf);

	if (pfd < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot reach its directory in the store", rel);
		sqlite_release(d);
		return rc;
	}
	if (im->wal && d->held) {
		/* R pins the state: Trac's writers may go on now. */
		sqlite_exec(im->w, "ROLLBACK");
		d->held = false;
		clock_gettime(CLOCK_MONOTONIC, &d->released_at);
	}
	/* Said of the pre-copy only when there is one (dbsnap.h): the caller
	 * reports it. */
	d->precopy_current = d->precopy_current && !im->wal && im->precopied;
	if (!im->wal && im->precopied) {
		/* Nothing written to the file since before the pre-copy read
		 * it: under the lock there is nothing to bring up to date. */
		if (!d->precopy_current)
			rc = sqlite_refresh(d, treefd, rel, e);
		goto out;
	}
	if (im->precopied)
		unlinkat(pfd, leaf, 0);   /* switched to WAL since: copy afresh */
	if (ts_beneath_procpath(dest, sizeof dest, pfd, leaf) < 0) {
		rc = ts_err_set(e, TS_ERR_IO, "%s: path too long", rel);
		goto out;
	}
	src = sqlite3_open_v2(dest, &out, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (src != SQLITE_OK) {
		rc = sqlite_err(e, out, src, rel, "creating the copy");
		goto out;
	}
	/* No fsync while Trac's writers may be waiting on us: the store is
	 * synced once before the snapshot appears. */
	src = sqlite_exec(out, "PRAGMA synchronous=OFF");
	if (src == SQLITE_OK)
		src = sqlite_exec(out, "PRAGMA journal_mode=OFF");
	if (src != SQLITE_OK) {
		rc = sqlite_err(e, out, src, rel, "preparing the copy");
		goto out;
	}
	bk = sqlite3_backup_init(out, "main", im->r, "main");
	if (!bk) {
		rc = sqlite_err(e, out, sqlite3_errcode(out), path, "starting the copy");
		goto out;
	}
	/* All pages in one step: a multi-step backup restarts when another
	 * connection commits, and would not be the snapshot instant. */
	src = sqlite3_backup_step(bk, -1);
	sqlite3_backup_finish(bk);
	bk = NULL;
	if (src != SQLITE_DONE) {
		rc = sqlite_err(e, out, src, path, "copying the database");
		goto out;
	}
	/* The copy carries the source's WAL header bytes; make it a rollback-
	 * journal database, readable on a read-only mount. */
	src = sqlite_exec(out, "PRAGMA journal_mode=DELETE");
	if (src != SQLITE_OK) {
		rc = sqlite_err(e, out, src, rel, "switching the copy to journal_mode=delete");
		goto out;
	}
out:
	if (out)
		sqlite3_close(out);
	sqlite_release(d);
	if (rc == TS_OK) {
		static const char *const sfx[] = { "-journal", "-wal", "-shm" };
		for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
			snprintf(side, sizeof side, "%s%s", leaf, sfx[i]);
			unlinkat(pfd, side, 0);
		}
		fd = openat(pfd, leaf, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		struct timespec times[2] = { im->db_st.st_atim, im->db_st.st_mtim };
		if (fd < 0 || (fchown(fd, im->db_st.st_uid, im->db_st.st_gid) < 0 && geteuid() == 0) ||
		    fchmod(fd, im->db_st.st_mode & 07777) < 0 || futimens(fd, times) < 0)
			rc = ts_err_sys(e, errno, "%s: cannot set metadata of the database copy", rel);
		if (fd >= 0)
			close(fd);
	}
	ts_beneath_parent_close(treefd, pfd);
	return rc;
}

static ts_err_code sqlite_open(ts_dbsnap *d, ts_err *e)
{
	ts_err_code rc = TS_OK;
	const char *path = d->env->db_abs;
	sqlite_impl *im = calloc(1, sizeof *im);
	struct stat st;
	int src;

	d->impl = im;
	if (!im)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	/* The sums' seed, drawn where no one sees it (sqlite_update.c says why);
	 * should the kernel not give one, the clock still varies it. */
	if (getrandom(&im->sums.seed, sizeof im->sums.seed, GRND_NONBLOCK) != (ssize_t)sizeof im->sums.seed) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		im->sums.seed = (XXH64_hash_t)now.tv_nsec * 1000003u ^ (XXH64_hash_t)now.tv_sec;
	}
	if (stat(path, &st) < 0) {
		rc = ts_err_sys(e, errno, "%s: database file ([trac] database in %s)", path, d->env->ini_path);
		if (rc == TS_ERR_NOTFOUND)
			rc = ts_err_set(e, TS_ERR_CONFIG, "%s: database file missing ([trac] database in %s)",
			                path, d->env->ini_path);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = ts_err_set(e, TS_ERR_CONFIG, "%s: database is not a regular file", path);
		goto out;
	}
	/* SQLite would take an empty or foreign file for a new database and
	 * write a journal beside it: check the header before opening. */
	{
		static const char magic[16] = "SQLite format 3";
		char hdr[16];
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd >= 0 ? pread(fd, hdr, sizeof hdr, 0) : -1;
		if (fd >= 0)
			close(fd);
		if (n != (ssize_t)sizeof hdr || memcmp(hdr, magic, sizeof magic)) {
			rc = ts_err_set(e, TS_ERR_DB, "%s: not an SQLite database", path);
			goto out;
		}
	}
	/* Never SQLITE_OPEN_CREATE: a missing database must stay missing. */
	src = sqlite3_open_v2(path, &im->w, SQLITE_OPEN_READWRITE, NULL);
	if (src == SQLITE_OK)
		src = sqlite3_open_v2(path, &im->r, SQLITE_OPEN_READWRITE, NULL);
	if (src != SQLITE_OK)
		rc = sqlite_err(e, im->r ? im->r : im->w, src, path, "opening");
out:
	if (rc != TS_OK && im) {
		sqlite_free(d);
	}
	return rc;
}

const ts_db_backend ts_db_sqlite = {
	.name = "sqlite",
	.excluded = sqlite_excluded,
	.place = sqlite_place,
	.external = sqlite_external_path,
	.open = sqlite_open,
	.precopy = sqlite_precopy,
	.lock = sqlite_lock,
	.capture = sqlite_capture,
	.release = sqlite_release,
	.free = sqlite_free,
	.restore_open = sqlite_restore_open,
	.restore_fix = sqlite_restore_fix,
};
