/* restore.c - copy a snapshot back in place of a Trac environment.
 *
 * Everything is prepared beside the live environment first (a temporary
 * sibling on the same filesystem, synced) so that the only changes to ENV
 * are two renames, each undone when a later step fails.  PostgreSQL's load
 * comes last because it is the only step that cannot be undone once it has
 * committed; it runs in one transaction, so a failing load changes nothing
 * and the renames are undone.
 */
#include "restore.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "beneath.h"
#include "copy.h"
#include "dbsnap.h"
#include "env.h"
#include "pgdump_check.h"

/* Where a snapshot keeps a database that lives outside the environment
 * (design.md, "Snapshot names"). */
#define TS_RESTORE_EXTDB_DIR "tracsnap-external-db"

/* ------------------------------------------------------------ busy check */

/* link is db itself or one of its journals (db-wal, db-shm, db-journal). */
static bool ts_restore_is_db(const char *link, const char *db)
{
	size_t n = db ? strlen(db) : 0;

	return n && !strncmp(link, db, n) && (link[n] == '\0' || link[n] == '-');
}

/* Does process pid have such a file open? */
static bool ts_restore_pid_uses(const char *pid, const char *root, const char *db)
{
	char dir[300], path[600], link[PATH_MAX];
	bool hit = false;
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof dir, "/proc/%s/fd", pid);
	d = opendir(dir);
	if (!d)
		return false;   /* gone, or not ours to see */
	while (!hit && (de = readdir(d)) != NULL) {
		struct stat st;
		ssize_t n;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		n = readlink(path, link, sizeof link - 1);
		if (n <= 0 || link[0] != '/')
			continue;       /* pipes, sockets, anon inodes */
		link[n] = '\0';
		if (!ts_path_is_under(link, root) && !ts_restore_is_db(link, db))
			continue;
		/* An open directory survives the renames harmlessly. */
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			continue;
		hit = true;
	}
	closedir(d);
	return hit;
}

int ts_restore_users(const char *root, const char *db, char *who, size_t len)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	char self[32];
	size_t off = 0;
	int count = 0;

	if (len)
		who[0] = '\0';
	if (!d)
		return 0;
	snprintf(self, sizeof self, "%ld", (long)getpid());
	while ((de = readdir(d)) != NULL) {
		char comm[64] = "?", path[300];
		FILE *f;
		int w;

		if (!isdigit((unsigned char)de->d_name[0]) || !strcmp(de->d_name, self))
			continue;
		if (!ts_restore_pid_uses(de->d_name, root, db))
			continue;
		snprintf(path, sizeof path, "/proc/%s/comm", de->d_name);
		if ((f = fopen(path, "re")) != NULL) {
			if (fgets(comm, sizeof comm, f))
				comm[strcspn(comm, "\n")] = '\0';
			fclose(f);
		}
		count++;
		if (off < len) {
			w = snprintf(who + off, len - off, "%spid %s (%s)", count > 1 ? ", " : "",
			             de->d_name, comm);
			if (w > 0)
				off += (size_t)w;
		}
	}
	closedir(d);
	return count;
}

/* ------------------------------------------------------------------ copy */

typedef struct ts_restore_copy {
	int src;                   /* the snapshot */
	int dst;                   /* the temporary sibling */
	const char *desc;          /* snapshot path for messages */
	const char *skip;          /* a top-level entry not to copy, or NULL */
	ts_restore_out *out;
	const ts_progress_sink *progress;
	ts_progress pr;            /* totals counted before the copy */
} ts_restore_copy;

/* Count what a copy of rel will take, for the progress line's ETA. */
static void ts_restore_count(ts_restore_copy *c, const char *rel)
{
	struct dirent *de;
	int fd = openat(c->src, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			char sub[PATH_MAX];
			if (snprintf(sub, sizeof sub, "%s/%s", rel, de->d_name) < (int)sizeof sub)
				ts_restore_count(c, sub);
		} else if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
			c->pr.files_total++;
			c->pr.bytes_total += S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
		}
	}
	closedir(d);
}

/* Copy the directory rel ("." for the top) and everything below it; its
 * own metadata last, as adding entries changes a directory's mtime. */
static ts_err_code ts_restore_copy_dir(ts_restore_copy *c, const char *rel, const struct stat *dst_st,
                                       ts_err *e)
{
	ts_err_code rc = TS_OK;
	struct dirent *de;
	DIR *d = NULL;
	int fd = openat(c->src, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0 || !(d = fdopendir(fd))) {
		rc = ts_err_sys(e, errno, "%s/%s: cannot read the directory", c->desc, rel);
		if (fd >= 0)
			close(fd);
		return rc;
	}
	while (rc == TS_OK && (errno = 0, de = readdir(d)) != NULL) {
		char sub[PATH_MAX];
		struct stat st;
		ts_copy_out co;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (!strcmp(rel, ".") && c->skip && !strcmp(de->d_name, c->skip))
			continue;
		if (snprintf(sub, sizeof sub, "%s%s%s", strcmp(rel, ".") ? rel : "",
		             strcmp(rel, ".") ? "/" : "", de->d_name) >= (int)sizeof sub) {
			rc = ts_err_set(e, TS_ERR_IO, "%s/%s/%s: path too long", c->desc, rel, de->d_name);
			break;
		}
		if (fstatat(c->src, sub, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = ts_err_sys(e, errno, "%s/%s: cannot stat", c->desc, sub);
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			if (mkdirat(c->dst, sub, 0700) < 0)
				rc = ts_err_sys(e, errno, "%s/%s: cannot create the directory copy", c->desc, sub);
			else
				rc = ts_restore_copy_dir(c, sub, &st, e);
		} else if (S_ISREG(st.st_mode)) {
			rc = ts_copy_file(c->src, c->dst, sub, 0, c->desc, &co, e);
			if (rc == TS_OK) {
				c->out->files++;
				c->out->bytes += co.bytes;
			}
		} else if (S_ISLNK(st.st_mode)) {
			rc = ts_copy_symlink(c->src, c->dst, sub, c->desc, &co, e);
			if (rc == TS_OK)
				c->out->files++;
		}
		if (c->progress && (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode))) {
			c->pr.files_done = c->out->files;
			c->pr.bytes_done = c->out->bytes;
			ts_progress_report(c->progress, &c->pr);
		}
		/* A snapshot holds no FIFOs, sockets or devices (spec section 3). */
	}
	if (rc == TS_OK && errno)
		rc = ts_err_sys(e, errno, "%s/%s: cannot read the directory", c->desc, rel);
	closedir(d);
	if (rc == TS_OK)
		rc = ts_copy_dir_meta(c->src, c->dst, rel, dst_st, c->desc, e);
	return rc;
}

/* ---------------------------------------------------------------- SQLite */

/* Is the SQLite database at path in WAL mode?  Header bytes 18 and 19 (file
 * format read and write versions) are 2 in WAL mode and 1 otherwise. */
static bool ts_restore_is_wal(const char *path)
{
	unsigned char h[20];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool wal = fd >= 0 && pread(fd, h, sizeof h, 0) == (ssize_t)sizeof h && h[18] == 2 && h[19] == 2;

	if (fd >= 0)
		close(fd);
	return wal;
}

/* A snapshot's database is in rollback-journal mode (spec section 3); give
 * the copy the WAL mode the live database had, as Trac's readers rely on. */
static ts_err_code ts_restore_set_wal(const char *path, ts_err *e)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	ts_err_code rc = TS_OK;
	char dir[PATH_MAX];
	struct stat fst, dst;
	bool have_f, have_d;
	int r;

	/* The -wal and -shm files SQLite makes and removes again change the
	 * directory's mtime, and the header change the file's: put the
	 * snapshot's times back afterwards. */
	snprintf(dir, sizeof dir, "%s", path);
	*strrchr(dir, '/') = '\0';
	have_f = stat(path, &fst) == 0;
	have_d = stat(dir, &dst) == 0;
	r = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);

	if (r == SQLITE_OK)
		r = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
	if (r == SQLITE_OK && (r = sqlite3_step(st)) == SQLITE_ROW) {
		const char *mode = (const char *)sqlite3_column_text(st, 0);
		r = mode && !strcmp(mode, "wal") ? SQLITE_OK : SQLITE_ERROR;
	}
	if (r != SQLITE_OK)
		rc = ts_err_set(e, TS_ERR_DB, "%s: cannot set journal_mode=WAL: %s", path,
		                db ? sqlite3_errmsg(db) : "out of memory");
	sqlite3_finalize(st);
	sqlite3_close(db);
	if (rc == TS_OK && have_f) {
		struct timespec t[2] = { fst.st_atim, fst.st_mtim };
		utimensat(AT_FDCWD, path, t, 0);
	}
	if (rc == TS_OK && have_d) {
		struct timespec t[2] = { dst.st_atim, dst.st_mtim };
		utimensat(AT_FDCWD, dir, t, 0);
	}
	return rc;
}

/* ------------------------------------------------------------- the steps */

/* "<path>.pre-restore-<YYYYmmddTHHMMSS>[-N]" that does not exist yet. */
static ts_err_code ts_restore_kept_name(const char *path, char *buf, size_t len, ts_err *e)
{
	char stamp[32];
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &tm);
	for (int i = 0; i < 100; i++) {
		int n = i ? snprintf(buf, len, "%s.pre-restore-%s-%d", path, stamp, i)
		          : snprintf(buf, len, "%s.pre-restore-%s", path, stamp);
		struct stat st;
		if (n < 0 || (size_t)n >= len)
			return ts_err_set(e, TS_ERR_IO, "%s: path too long", path);
		if (lstat(buf, &st) < 0 && errno == ENOENT)
			return TS_OK;
	}
	return ts_err_set(e, TS_ERR_EXISTS, "%s: too many earlier restores this second", path);
}

/* The external database: copy it into a temporary directory beside its
 * path (same filesystem, so the swap is a rename).  tmpdir gets that
 * directory. */
static ts_err_code ts_restore_ext_copy(int snapfd, const char *snapdir, const char *db_abs,
                                       bool wal, char *tmpdir, size_t len, ts_err *e)
{
	char parent[PATH_MAX], dbtmp[PATH_MAX + 64];
	const char *base = strrchr(db_abs, '/') + 1;
	int src = -1, dst = -1;
	ts_copy_out co;
	ts_err_code rc = TS_OK;

	snprintf(parent, sizeof parent, "%.*s", (int)(base - db_abs - 1), db_abs);
	if (snprintf(tmpdir, len, "%s/.tracsnap-restore-tmp-%ld", *parent ? parent : "",
	             (long)getpid()) >= (int)len)
		return ts_err_set(e, TS_ERR_IO, "%s: path too long", db_abs);
	src = openat(snapfd, TS_RESTORE_EXTDB_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (src < 0) {
		rc = ts_err_sys(e, errno, "%s/%s: cannot open the copy of the external database",
		                snapdir, TS_RESTORE_EXTDB_DIR);
		goto out;
	}
	if (mkdir(tmpdir, 0700) < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot create", tmpdir);
		tmpdir[0] = '\0';
		goto out;
	}
	dst = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dst < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot open", tmpdir);
		goto out;
	}
	rc = ts_copy_file(src, dst, base, 0, snapdir, &co, e);
	if (rc == TS_OK && wal) {
		snprintf(dbtmp, sizeof dbtmp, "%s/%s", tmpdir, base);
		rc = ts_restore_set_wal(dbtmp, e);
	}
	if (rc == TS_OK && fsync(dst) < 0)
		rc = ts_err_sys(e, errno, "%s: cannot sync", tmpdir);
out:
	if (src >= 0)
		close(src);
	if (dst >= 0)
		close(dst);
	return rc;
}

ts_err_code ts_restore(const char *snapdir, const char *env_path, bool force,
                       const ts_progress_sink *progress, ts_restore_out *out, ts_err *e)
{
	ts_env live = { 0 }, snap = { 0 };
	ts_restore_out local;
	char tmp[PATH_MAX], kept[PATH_MAX], ext_tmp[PATH_MAX] = "", ext_kept[PATH_MAX] = "";
	char who[1024], dbrel_buf[PATH_MAX], dumpdesc[PATH_MAX * 2];
	const char *dbrel = NULL, *ext_base = NULL;
	bool have_live = false, have_snap = false, made_tmp = false, swapped = false, ext_swapped = false;
	bool wal = false, pg;
	int snapfd = -1, tmpfd = -1, dumpfd = -1, n;
	struct stat st, dbst;
	ts_err_code rc;

	if (!out)
		out = &local;
	memset(out, 0, sizeof *out);
	rc = ts_env_open(env_path, &live, e);
	if (rc != TS_OK)
		goto out;
	have_live = true;
	rc = ts_env_open(snapdir, &snap, e);
	if (rc != TS_OK)
		goto out;
	have_snap = true;
	snprintf(out->env, sizeof out->env, "%s", live.root);
	if (ts_path_is_under(snap.root, live.root) || ts_path_is_under(live.root, snap.root)) {
		rc = ts_err_set(e, TS_ERR_USAGE, "%s: the snapshot and the environment %s overlap",
		                snapdir, live.root);
		goto out;
	}
	if (snap.db.kind != TS_DB_SQLITE && snap.db.kind != TS_DB_POSTGRES) {
		rc = ts_env_check_supported(&snap, e);
		if (rc == TS_OK)
			rc = ts_err_set(e, TS_ERR_UNSUPPORTED, "%s: cannot restore this database", snap.ini_path);
		goto out;
	}
	pg = snap.db.kind == TS_DB_POSTGRES;
	snapfd = open(snap.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (snapfd < 0 || fstat(snapfd, &st) < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot open", snap.root);
		goto out;
	}
	/* The database copy the snapshot must hold. */
	if (pg) {
		dbrel = TS_DBSNAP_PG_DUMP_REL;
	} else if (snap.db_rel) {
		dbrel = snap.db_rel;
	} else {
		ext_base = strrchr(snap.db_abs, '/') + 1;
		snprintf(dbrel_buf, sizeof dbrel_buf, "%s/%s", TS_RESTORE_EXTDB_DIR, ext_base);
		dbrel = dbrel_buf;
	}
	if (faccessat(snapfd, dbrel, R_OK, 0) < 0) {
		rc = ts_err_sys(e, errno, "%s/%s: the snapshot holds no database (taken with --no-database?)",
		                snap.root, dbrel);
		goto out;
	}
	/* PostgreSQL: the dump psql will read is the snapshot's own (never the
	 * copy in ENV, which belongs to the environment's owner), checked for
	 * psql meta-commands before anything changes. */
	if (pg) {
		snprintf(dumpdesc, sizeof dumpdesc, "%s/%s", snap.root, dbrel);
		dumpfd = ts_beneath_open(snapfd, dbrel, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0);
		if (dumpfd < 0 || fstat(dumpfd, &dbst) < 0) {
			rc = ts_err_sys(e, errno, "%s: cannot open", dumpdesc);
			goto out;
		}
		if (!S_ISREG(dbst.st_mode)) {
			rc = ts_err_set(e, TS_ERR_CORRUPT, "%s: not a regular file", dumpdesc);
			goto out;
		}
		rc = ts_pgdump_check(dumpfd, dumpdesc, e);
		if (rc != TS_OK)
			goto out;
	}

	/* Busy: the live files, the live database and where the restored one
	 * goes (the same file unless trac.ini changed since). */
	n = ts_restore_users(live.root, live.db_abs, who, sizeof who);
	if (!n && snap.db_abs && !snap.db_rel)
		n = ts_restore_users(live.root, snap.db_abs, who, sizeof who);
	if (n && !force) {
		rc = ts_err_set(e, TS_ERR_BUSY, "%s: in use by %s; stop Trac first or use --force",
		                live.root, who);
		goto out;
	}
	if (pg) {
		rc = ts_dbsnap_pg_restore_check(&snap, force, e);
		if (rc != TS_OK)
			goto out;
	}

	/* The copy, beside ENV. */
	if (snprintf(tmp, sizeof tmp, "%s.restore-tmp-%ld", live.root, (long)getpid()) >= (int)sizeof tmp) {
		rc = ts_err_set(e, TS_ERR_IO, "%s: path too long", live.root);
		goto out;
	}
	if (mkdir(tmp, 0700) < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot create the restore copy", tmp);
		goto out;
	}
	made_tmp = true;
	tmpfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (tmpfd < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot open", tmp);
		goto out;
	}
	{
		ts_restore_copy c = { .src = snapfd, .dst = tmpfd, .desc = snap.root,
		                      .skip = ext_base ? TS_RESTORE_EXTDB_DIR : NULL, .out = out,
		                      .progress = progress };
		if (progress)
			ts_restore_count(&c, ".");
		rc = ts_restore_copy_dir(&c, ".", &st, e);
		ts_copy_thread_done();
		if (rc != TS_OK)
			goto out;
	}
	wal = live.db_abs && ts_restore_is_wal(live.db_abs);
	if (!pg && !ext_base && wal) {
		char p[PATH_MAX * 2];
		snprintf(p, sizeof p, "%s/%s", tmp, dbrel);
		rc = ts_restore_set_wal(p, e);
		if (rc != TS_OK)
			goto out;
	}
	if (ext_base) {
		rc = ts_restore_ext_copy(snapfd, snap.root, snap.db_abs, wal, ext_tmp, sizeof ext_tmp, e);
		if (rc != TS_OK)
			goto out;
	}
	/* Everything on disk before the first rename: a crash after it must
	 * not leave a restored ENV with holes. */
	if (syncfs(tmpfd) < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot sync", tmp);
		goto out;
	}

	/* The swap. */
	rc = ts_restore_kept_name(live.root, kept, sizeof kept, e);
	if (rc != TS_OK)
		goto out;
	if (rename(live.root, kept) < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot rename to %s", live.root, kept);
		goto out;
	}
	if (rename(tmp, live.root) < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot rename to %s", tmp, live.root);
		rename(kept, live.root);
		goto out;
	}
	swapped = true;
	if (ext_base) {
		char src[PATH_MAX * 2];
		snprintf(src, sizeof src, "%s/%s", ext_tmp, ext_base);
		rc = ts_restore_kept_name(snap.db_abs, ext_kept, sizeof ext_kept, e);
		if (rc != TS_OK)
			goto out;
		if (rename(snap.db_abs, ext_kept) < 0 && errno != ENOENT) {
			rc = ts_err_sys(e, errno, "%s: cannot rename to %s", snap.db_abs, ext_kept);
			ext_kept[0] = '\0';
			goto out;
		}
		if (rename(src, snap.db_abs) < 0) {
			rc = ts_err_sys(e, errno, "%s: cannot rename to %s", src, snap.db_abs);
			goto out;
		}
		ext_swapped = true;
	}
	if (pg) {
		rc = ts_dbsnap_pg_load(&snap, dumpfd, dumpdesc, e);
		if (rc != TS_OK)
			goto out;
	}
	snprintf(out->kept, sizeof out->kept, "%s", kept);
out:
	if (rc != TS_OK && swapped) {
		/* Undo in reverse order; the restored copy goes back to tmp and is
		 * removed below with the rest. */
		if (ext_kept[0]) {
			if (ext_swapped)
				unlink(snap.db_abs);
			rename(ext_kept, snap.db_abs);
		}
		if (rename(live.root, tmp) == 0)
			rename(kept, live.root);
	}
	if (dumpfd >= 0)
		close(dumpfd);
	if (tmpfd >= 0)
		close(tmpfd);
	if (snapfd >= 0)
		close(snapfd);
	if (rc != TS_OK && made_tmp) {
		ts_err ignore;
		ts_copy_remove_tree(AT_FDCWD, tmp, &ignore);
	}
	if (ext_tmp[0]) {
		ts_err ignore;
		ts_copy_remove_tree(AT_FDCWD, ext_tmp, &ignore);
	}
	if (have_snap)
		ts_env_close(&snap);
	if (have_live)
		ts_env_close(&live);
	return rc;
}
