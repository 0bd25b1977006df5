/* restore.c - copy a snapshot back in place of a Trac environment: the
 * steps of restore.h, in order.
 *
 * Everything is prepared beside the live environment first (a temporary
 * sibling on the same filesystem, checked against the manifest, synced),
 * the state of ENV is kept as a snapshot, and then the only change to ENV
 * is one exchange of names, undone by the same call when a later step
 * fails.  The database is the backend's part (dbsnap.h, ts_db_restore): it
 * says where the snapshot holds it and where it goes back, checks it,
 * fixes the copy (SQLite's journal mode) and loads it (PostgreSQL).  The
 * load comes last because it is the only step that cannot be undone once
 * it has committed; it runs in one transaction, so a failing load changes
 * nothing and the exchange is undone.  The file work (copies, exchanges,
 * their undoing) is done here for every backend alike, through checked
 * descriptors; a journal of root's (restore_journal.c) lets the next
 * restore settle what a killed one left.
 */
#include "restore/restore.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/beneath.h"
#include "base/copy.h"
#include "base/log.h"
#include "base/trust.h"
#include "db/dbsnap.h"
#include "env/env.h"
#include "restore/restore_int.h"
#include "store/manifest.h"

/* ------------------------------------------------ where restore may write
 *
 * Restore writes in two directories: ENV's parent (the copy, then the swap)
 * and, for a database outside ENV (SQLite's external one), its directory.
 * Both are opened with ts_trust_open_path (trust.h): from "/" one component
 * at a time, never through a symbolic link, every directory owned by root
 * or by the snapshot's owner (of the environment or of the database file)
 * and not writable by others.  Anything else is refused with one line
 * naming the directory, before anything is changed.  The descriptor is then
 * used for every later step (mkdirat, renameat2, ...), so that a directory
 * renamed or replaced on the path afterwards changes nothing of what
 * restore does. */
static int ts_restore_walk(const char *dir, uid_t owner, ts_err_code *rc, ts_err *e)
{
	int fd;

	*rc = ts_trust_open_path(dir, owner, "restore refused", &fd, e);
	return fd;
}

/* Make name in dirfd as a directory only we (root) can use, and open it:
 * -1 with *rc set when that fails or what opens is not a directory of ours
 * (the name was taken, or replaced between the two calls). */
static int ts_restore_mktmp(int dirfd, const char *name, const char *desc, ts_err_code *rc, ts_err *e)
{
	struct stat st;
	int fd;

	if (mkdirat(dirfd, name, 0700) < 0) {
		*rc = ts_err_sys(e, errno, "%s: cannot create the restore copy", desc);
		return -1;
	}
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		*rc = ts_err_sys(e, errno, "%s: cannot open", desc);
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
	    fchmod(fd, 0700) < 0) {
		*rc = ts_err_set(e, TS_ERR_PERM, "%s: replaced while restore made it; refusing", desc);
		close(fd);
		return -1;
	}
	*rc = TS_OK;
	return fd;
}

/* ------------------------------------------------------------- the steps */


/* Busy: the live files, the live database and where the restored one goes
 * (the same file unless trac.ini changed since); then whatever the backend
 * knows of (other sessions on a server).  Made before the copy and again
 * just before the exchange: a process that started using ENV meanwhile
 * (Trac's log, an SQLite connection) would write into the old tree. */
static ts_err_code ts_restore_busy(const ts_env *live, ts_db_restore *db, bool force, ts_err *e)
{
	char who[1024];
	int n = ts_restore_users(live->root, db->busy_file, who, sizeof who);

	if (!n && db->external[0])
		n = ts_restore_users(live->root, db->external, who, sizeof who);
	if (n && !force)
		return ts_err_set(e, TS_ERR_BUSY, "%s: in use by %s; stop Trac first or use --force",
		                  live->root, who);
	return ts_db_restore_check(db, force, e);
}

/* The external database's own file, staged in its own directory (extdirfd,
 * ext_dir) in a root-only directory made there (its name into tmpname,
 * open on *tmpfd), checked against the manifest and fixed; *filefd open on
 * the staged file for the exchange.  *made: the directory exists. */
static ts_err_code ts_restore_stage_external(ts_db_restore *db, restore_check *check, int snapfd,
                                             const char *snapdesc, int envfd, int extdirfd,
                                             const char *ext_dir, const char *ext_base, char *tmpname,
                                             size_t len, int *tmpfd, int *filefd, bool *made,
                                             ts_err *e)
{
	char src_dir[PATH_MAX];
	const char *slash = strrchr(db->copy_rel, '/');
	ts_copy_out co;
	ts_err_code rc;
	int src;

	snprintf(src_dir, sizeof src_dir, "%.*s", slash ? (int)(slash - db->copy_rel) : 1,
	         slash ? db->copy_rel : ".");
	snprintf(tmpname, len, ".tracsnap-restore-tmp-%ld", (long)getpid());
	*tmpfd = ts_restore_mktmp(extdirfd, tmpname, ext_dir, &rc, e);
	if (*tmpfd < 0)
		return rc;
	*made = true;
	src = ts_beneath_open(snapfd, src_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (src < 0)
		return ts_err_sys(e, errno, "%s/%s: cannot open the copy of the external database",
		                  snapdesc, src_dir);
	rc = ts_copy_file(src, *tmpfd, ext_base, 0, snapdesc, &co, e);
	close(src);
	if (rc == TS_OK)
		rc = restore_check_entry(check, db->copy_rel, &co.st, *tmpfd, ext_base, NULL, e);
	if (rc == TS_OK)
		rc = ts_db_restore_fix(db, envfd, extdirfd, *tmpfd, ext_base, ext_dir, e);
	if (rc == TS_OK && fsync(*tmpfd) < 0)
		rc = ts_err_sys(e, errno, "%s: cannot sync", ext_dir);
	if (rc == TS_OK) {
		*filefd = openat(*tmpfd, ext_base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (*filefd < 0)
			rc = ts_err_sys(e, errno, "%s/%s: cannot open", ext_dir, ext_base);
	}
	return rc;
}

ts_err_code ts_restore(const char *snapshot, const char *env_path, const ts_restore_opts *o,
                       ts_restore_out *out, ts_err *e)
{
	ts_env live = { 0 }, snap = { 0 };
	ts_db_restore db;
	ts_restore_out local;
	restore_src src;
	restore_check check = { 0 };
	restore_journal journal = { .dirfd = -1, .lockfd = -1 };
	restore_record record;
	char record_failed[TS_ERR_MSG_MAX] = "";
	char tmp[PATH_MAX], ext_dir[PATH_MAX], parent[PATH_MAX];
	char tmpname[NAME_MAX + 1], ext_tmpname[64];
	const char *ext_base = NULL, *envname = NULL;
	bool have_live = false, have_snap = false, have_db = false, made_tmp = false, swapped = false;
	bool ext_swapped = false, ext_moved = false, made_ext_tmp = false, force = o->force, more;
	int snapfd = -1, tmpfd = -1, parentfd = -1, envfd = -1, ext_dirfd = -1, ext_tmpfd = -1;
	int ext_filefd = -1;
	struct stat st, tst;
	ts_err_code rc;

	if (!out)
		out = &local;
	memset(out, 0, sizeof *out);
	memset(&src, 0, sizeof src);
	ts_manifest_init(&src.m);
	restore_record_init(&record);
	rc = ts_env_open(env_path, &live, e);
	if (rc != TS_OK)
		goto out;
	have_live = true;
	snprintf(out->env, sizeof out->env, "%s", live.root);

	/* Step 1: the snapshot, and what its store says of it. */
	rc = restore_src_find(&src, snapshot, o->store, live.root, e);
	if (rc != TS_OK)
		goto out;
	snprintf(out->name, sizeof out->name, "%s", src.name);
	rc = ts_env_open(src.path, &snap, e);
	if (rc != TS_OK)
		goto out;
	have_snap = true;
	if (ts_path_is_under(snap.root, live.root) || ts_path_is_under(live.root, snap.root)) {
		rc = ts_err_set(e, TS_ERR_USAGE, "%s: the snapshot and the environment %s overlap",
		                snapshot, live.root);
		goto out;
	}
	rc = restore_src_check(&src, live.root, force, e);
	if (rc != TS_OK)
		goto out;
	snapfd = restore_src_open_tree(&src);
	if (snapfd < 0 || fstat(snapfd, &st) < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot open", snap.root);
		goto out;
	}
	/* The database copy the snapshot must hold, checked, and where it goes
	 * back: the backend's to say (dbsnap.h). */
	rc = ts_db_restore_open(&db, &snap, &live, snapfd,
	                        src.have_manifest && src.m.external_db && src.m.external_db[0] == '/'
	                        ? src.m.external_db : NULL, e);
	if (rc != TS_OK)
		goto out;
	have_db = true;
	if (db.external[0])
		ext_base = strrchr(db.external, '/') + 1;

	/* Step 3: where restore will write: ENV's parent, and an external
	 * database's directory, as the snapshot names them (see
	 * ts_restore_walk). */
	envname = strrchr(live.root, '/') + 1;
	if (!*envname) {
		rc = ts_err_set(e, TS_ERR_USAGE, "%s: cannot restore over /", live.root);
		goto out;
	}
	snprintf(parent, sizeof parent, "%.*s", (int)(envname - 1 - live.root), live.root);
	parentfd = ts_restore_walk(*parent ? parent : "/", st.st_uid, &rc, e);
	if (parentfd < 0)
		goto out;
	/* Step 0, now that ENV's parent is checked: what a killed restore of
	 * ENV left is settled before ENV is looked at. */
	rc = restore_journal_open(&journal, live.root, parentfd, envname, out, e);
	if (rc != TS_OK)
		goto out;
	envfd = openat(parentfd, envname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (envfd < 0) {
		rc = errno == ELOOP ? ts_err_set(e, TS_ERR_PERM, "%s: a symbolic link now; refusing to restore",
		                                 live.root)
		                    : ts_err_sys(e, errno, "%s: cannot open", live.root);
		goto out;
	}
	/* ENV must be the snapshot owner's own: a path that now leads to
	 * someone else's environment (root's, say) is not the one to replace
	 * with this snapshot's files. */
	if (fstat(envfd, &tst) < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot stat", live.root);
		goto out;
	}
	if (tst.st_uid != st.st_uid) {
		rc = ts_err_set(e, TS_ERR_PERM, "%s: owned by uid %lu, the snapshot's top by uid %lu; refusing to "
		                "restore (chown one of them first)", live.root, (unsigned long)tst.st_uid,
		                (unsigned long)st.st_uid);
		goto out;
	}
	if (ext_base) {
		snprintf(ext_dir, sizeof ext_dir, "%.*s", (int)(ext_base - 1 - db.external), db.external);
		ext_dirfd = ts_restore_walk(*ext_dir ? ext_dir : "/", db.copy_st.st_uid, &rc, e);
		if (ext_dirfd < 0)
			goto out;
	}

	/* Step 2. */
	rc = ts_restore_busy(&live, &db, force, e);
	if (rc != TS_OK)
		goto out;

	/* Step 4: the copy, beside ENV, in a directory only root can enter
	 * until the exchange, checked against the manifest as it is made. */
	if (snprintf(tmpname, sizeof tmpname, "%s.restore-tmp-%ld", envname, (long)getpid()) >=
	            (int)sizeof tmpname ||
	    snprintf(tmp, sizeof tmp, "%s.restore-tmp-%ld", live.root, (long)getpid()) >= (int)sizeof tmp) {
		rc = ts_err_set(e, TS_ERR_IO, "%s: path too long", live.root);
		goto out;
	}
	rc = restore_check_init(&check, src.have_manifest ? &src.m : NULL, src.name, force, out, e);
	if (rc != TS_OK)
		goto out;
	tmpfd = ts_restore_mktmp(parentfd, tmpname, tmp, &rc, e);
	if (tmpfd < 0)
		goto out;
	made_tmp = true;
	/* More than the exchange of ENV makes the restore (a load, an
	 * external database): a killed one is rolled back, not finished. */
	more = db.ops->restore_load != NULL || ext_base != NULL;
	rc = restore_journal_write(&journal, RESTORE_COPYING, tmpname, tmpfd, envfd, more, e);
	if (rc != TS_OK)
		goto out;
	rc = restore_copy_tree(snapfd, tmpfd, snap.root, db.skip, &check, o->progress, out, e);
	ts_copy_thread_done();
	if (rc != TS_OK)
		goto out;
	if (!ext_base) {
		rc = ts_db_restore_fix(&db, envfd, -1, tmpfd, db.copy_rel, tmp, e);
	} else {
		rc = ts_restore_stage_external(&db, &check, snapfd, snap.root, envfd, ext_dirfd, ext_dir,
		                               ext_base, ext_tmpname, sizeof ext_tmpname, &ext_tmpfd,
		                               &ext_filefd, &made_ext_tmp, e);
		if (made_ext_tmp && ext_tmpfd >= 0 && ext_filefd >= 0) {
			ts_err_code jrc;
			restore_journal_set_ext(&journal, *ext_dir ? ext_dir : "/", ext_base, ext_tmpname,
			                        ext_tmpfd, ext_filefd, db.copy_st.st_uid);
			jrc = restore_journal_write(&journal, RESTORE_COPYING, tmpname, tmpfd, envfd, more,
			                            rc == TS_OK ? e : NULL);
			if (rc == TS_OK)
				rc = jrc;
		}
	}
	if (rc == TS_OK)
		rc = restore_check_missing(&check, db.skip, e);
	if (rc != TS_OK)
		goto out;
	/* Everything on disk before the exchange: a crash after it must not
	 * leave a restored ENV with holes. */
	if (syncfs(tmpfd) < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot sync", tmp);
		goto out;
	}

	/* Step 5: the state of ENV, kept as a snapshot. */
	rc = restore_keep(&src, &live, o->store, o->lock_timeout_s, out, e);
	if (rc != TS_OK) {
		if (!force) {
			char why[TS_ERR_MSG_MAX];
			snprintf(why, sizeof why, "%s", e->msg);
			rc = ts_err_set(e, rc == TS_ERR_BUSY ? TS_ERR_BUSY : TS_ERR_IO, "%s: cannot keep its "
			                "present state as a snapshot (%s); --force restores without keeping it",
			                live.root, why);
			goto out;
		}
		snprintf(out->not_kept, sizeof out->not_kept, "%s", e->msg);
		ts_err_clear(e);
	}
	/* What step 8 needs of the copy, taken now: only root can reach it
	 * until the exchange, so its files' identities are the restored
	 * content's. */
	{
		ts_err re;
		ts_err_clear(&re);
		if (restore_record_prepare(&record, &src, &snap, live.root, tmpfd, db.skip, out, &re) != TS_OK)
			snprintf(record_failed, sizeof record_failed, "%s", re.msg);
	}

	/* Step 6: busy again, then the exchange.  The copy's top gets its
	 * owner and mode only now: nothing of it is read or written by restore
	 * after this. */
	rc = ts_restore_busy(&live, &db, force, e);
	if (rc != TS_OK)
		goto out;
	rc = ts_copy_dir_meta(snapfd, tmpfd, ".", &st, snap.root, e);
	if (rc != TS_OK)
		goto out;
	rc = restore_exchange(parentfd, envname, parentfd, tmpname, tmpfd, tmp, e);
	if (rc != TS_OK)
		goto out;
	swapped = true;
	if (ext_base) {
		char desc[PATH_MAX + 80];
		snprintf(desc, sizeof desc, "%s/%s", ext_dir, ext_tmpname);
		if (faccessat(ext_dirfd, ext_base, F_OK, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT) {
			/* No live database there: the restored one simply moves in. */
			if (renameat2(ext_tmpfd, ext_base, ext_dirfd, ext_base, RENAME_NOREPLACE) < 0) {
				rc = ts_err_sys(e, errno, "%s: cannot put the restored database there", db.external);
				goto out;
			}
			ext_moved = true;
		} else {
			rc = restore_exchange(ext_dirfd, ext_base, ext_tmpfd, ext_base, ext_filefd, desc, e);
			if (rc != TS_OK)
				goto out;
			ext_swapped = true;
		}
	}
	/* Step 7, last: a load cannot be undone once committed (a failing one
	 * changes nothing, and the exchanges are undone below). */
	rc = ts_db_restore_load(&db, e);
	if (rc != TS_OK)
		goto out;
	/* Done: the old tree (at the copy's name now) goes, through its own
	 * descriptor. */
	(void)restore_journal_write(&journal, RESTORE_SWAPPED, tmpname, tmpfd, envfd, more, NULL);
	restore_remove_dir(parentfd, tmpname, envfd);
	made_tmp = false;
	/* Step 8: ENV is restored whatever happens here. */
	if (record.want) {
		ts_err re;
		ts_err_clear(&re);
		if (restore_record_make(&record, &src, snapfd, o->lock_timeout_s, out, &re) != TS_OK)
			snprintf(record_failed, sizeof record_failed, "%s", re.msg);
	}
	if (record_failed[0])
		ts_log(LOG_WARNING, "%s: the restored state is not recorded as a snapshot (%s); the next "
		       "snapshot copies every file again", live.root, record_failed);
out:
	if (rc != TS_OK && swapped) {
		/* Undo in reverse order, by the same descriptors; the restored
		 * copy goes back to tmp and is removed below with the rest. */
		ts_err ignore;
		if (ext_swapped)
			(void)restore_exchange(ext_dirfd, ext_base, ext_tmpfd, ext_base, ext_filefd, "", &ignore);
		if (ext_moved)
			(void)renameat2(ext_dirfd, ext_base, ext_tmpfd, ext_base, RENAME_NOREPLACE);
		(void)restore_exchange(parentfd, envname, parentfd, tmpname, envfd, "", &ignore);
	}
	if (rc != TS_OK && made_tmp)
		restore_remove_dir(parentfd, tmpname, tmpfd);
	if (made_ext_tmp) {
		ts_err ignore;
		ts_copy_remove_tree(ext_dirfd, ext_tmpname, &ignore);
	}
	restore_journal_close(&journal);
	restore_check_free(&check);
	restore_record_free(&record);
	if (have_db)
		ts_db_restore_close(&db);
	if (ext_filefd >= 0)
		close(ext_filefd);
	if (ext_tmpfd >= 0)
		close(ext_tmpfd);
	if (ext_dirfd >= 0)
		close(ext_dirfd);
	if (envfd >= 0)
		close(envfd);
	if (parentfd >= 0)
		close(parentfd);
	if (tmpfd >= 0)
		close(tmpfd);
	if (snapfd >= 0)
		close(snapfd);
	restore_src_close(&src);
	if (have_snap)
		ts_env_close(&snap);
	if (have_live)
		ts_env_close(&live);
	return rc;
}
