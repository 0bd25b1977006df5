/* restore.c - copy a snapshot back in place of a Trac environment.
 *
 * Everything is prepared beside the live environment first (a temporary
 * sibling on the same filesystem, synced) so that the only changes to ENV
 * are two renames, each undone when a later step fails.  The database is
 * the backend's part (dbsnap.h, ts_db_restore): it says where the snapshot
 * holds it and where it goes back, checks it, fixes the copy (SQLite's
 * journal mode) and loads it (PostgreSQL).  The load comes last because it
 * is the only step that cannot be undone once it has committed; it runs in
 * one transaction, so a failing load changes nothing and the renames are
 * undone.  The file work (copies, renames, their undoing) is done here for
 * every backend alike, through checked descriptors.
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

/* "<name>.pre-restore-<YYYYmmddTHHMMSS>[-N]" that does not exist in dirfd
 * yet (the rename that uses it refuses to replace one made meanwhile). */
static ts_err_code ts_restore_kept_name(int dirfd, const char *name, const char *desc, char *buf,
                                        size_t len, ts_err *e)
{
	char stamp[32];
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &tm);
	for (int i = 0; i < 100; i++) {
		int n = i ? snprintf(buf, len, "%s.pre-restore-%s-%d", name, stamp, i)
		          : snprintf(buf, len, "%s.pre-restore-%s", name, stamp);
		struct stat st;
		if (n < 0 || (size_t)n >= len || n > NAME_MAX)
			return ts_err_set(e, TS_ERR_IO, "%s: name too long", desc);
		if (fstatat(dirfd, buf, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
			return TS_OK;
	}
	return ts_err_set(e, TS_ERR_EXISTS, "%s: too many earlier restores this second", desc);
}

/* A store's NAME/tree: the manifest beside it records where an external
 * database was, resolved when the snapshot was taken (malloc'd; NULL when
 * there is none, or it cannot be read). */
static char *ts_restore_recorded(const ts_env *snap)
{
	size_t rl = strlen(snap->root);
	char mpath[PATH_MAX], *path = NULL;
	ts_manifest m;
	ts_err ignore;

	if (rl <= 5 || strcmp(snap->root + rl - 5, "/tree"))
		return NULL;
	ts_manifest_init(&m);
	if (snprintf(mpath, sizeof mpath, "%.*s/manifest", (int)(rl - 5), snap->root) < (int)sizeof mpath &&
	    ts_manifest_read(mpath, &m, &ignore) == TS_OK && m.external_db && m.external_db[0] == '/')
		path = strdup(m.external_db);
	ts_manifest_free(&m);
	return path;
}

ts_err_code ts_restore(const char *snapdir, const char *env_path, bool force,
                       const ts_progress_sink *progress, ts_restore_out *out, ts_err *e)
{
	ts_env live = { 0 }, snap = { 0 };
	ts_db_restore db;
	ts_restore_out local;
	char tmp[PATH_MAX], kept[PATH_MAX], ext_dir[PATH_MAX], src_dir[PATH_MAX];
	char tmpname[NAME_MAX + 1], keptname[NAME_MAX + 1], ext_tmpname[64], ext_keptname[NAME_MAX + 1] = "";
	char who[1024], parent[PATH_MAX];
	char *recorded = NULL;
	const char *ext_base = NULL, *envname = NULL;
	bool have_live = false, have_snap = false, have_db = false, made_tmp = false, swapped = false;
	bool ext_swapped = false, made_ext_tmp = false;
	int snapfd = -1, tmpfd = -1, parentfd = -1, envfd = -1, ext_dirfd = -1, ext_tmpfd = -1;
	int n;
	struct stat st, tst, nst;
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
	snapfd = open(snap.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (snapfd < 0 || fstat(snapfd, &st) < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot open", snap.root);
		goto out;
	}
	/* The database copy the snapshot must hold, checked, and where it goes
	 * back: the backend's to say (dbsnap.h). */
	recorded = ts_restore_recorded(&snap);
	rc = ts_db_restore_open(&db, &snap, &live, snapfd, recorded, e);
	if (rc != TS_OK)
		goto out;
	have_db = true;
	if (db.external[0])
		ext_base = strrchr(db.external, '/') + 1;

	/* Where restore will write: ENV's parent, and an external database's
	 * directory, as the snapshot names them (see ts_restore_walk). */
	envname = strrchr(live.root, '/') + 1;
	if (!*envname) {
		rc = ts_err_set(e, TS_ERR_USAGE, "%s: cannot restore over /", live.root);
		goto out;
	}
	snprintf(parent, sizeof parent, "%.*s", (int)(envname - 1 - live.root), live.root);
	parentfd = ts_restore_walk(*parent ? parent : "/", st.st_uid, &rc, e);
	if (parentfd < 0)
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

	/* Busy: the live files, the live database and where the restored one
	 * goes (the same file unless trac.ini changed since); then whatever
	 * the backend knows of (other sessions on a server). */
	n = ts_restore_users(live.root, db.busy_file, who, sizeof who);
	if (!n && ext_base)
		n = ts_restore_users(live.root, db.external, who, sizeof who);
	if (n && !force) {
		rc = ts_err_set(e, TS_ERR_BUSY, "%s: in use by %s; stop Trac first or use --force",
		                live.root, who);
		goto out;
	}
	rc = ts_db_restore_check(&db, force, e);
	if (rc != TS_OK)
		goto out;

	/* The copy, beside ENV, in a directory only root can enter until the
	 * swap. */
	if (snprintf(tmpname, sizeof tmpname, "%s.restore-tmp-%ld", envname, (long)getpid()) >=
	            (int)sizeof tmpname ||
	    snprintf(tmp, sizeof tmp, "%s.restore-tmp-%ld", live.root, (long)getpid()) >= (int)sizeof tmp) {
		rc = ts_err_set(e, TS_ERR_IO, "%s: path too long", live.root);
		goto out;
	}
	tmpfd = ts_restore_mktmp(parentfd, tmpname, tmp, &rc, e);
	if (tmpfd < 0)
		goto out;
	made_tmp = true;
	rc = restore_copy_tree(snapfd, tmpfd, snap.root, db.skip, progress, out, e);
	ts_copy_thread_done();
	if (rc != TS_OK)
		goto out;
	if (!ext_base) {
		rc = ts_db_restore_fix(&db, envfd, -1, tmpfd, db.copy_rel, tmp, e);
		if (rc != TS_OK)
			goto out;
	} else {
		/* The database's own file goes back to its own directory, staged
		 * there the same way: the copy's name is the database's. */
		ts_copy_out co;
		const char *slash = strrchr(db.copy_rel, '/');
		int src;

		snprintf(src_dir, sizeof src_dir, "%.*s", slash ? (int)(slash - db.copy_rel) : 1,
		         slash ? db.copy_rel : ".");
		snprintf(ext_tmpname, sizeof ext_tmpname, ".tracsnap-restore-tmp-%ld", (long)getpid());
		ext_tmpfd = ts_restore_mktmp(ext_dirfd, ext_tmpname, ext_dir, &rc, e);
		if (ext_tmpfd < 0)
			goto out;
		made_ext_tmp = true;
		src = ts_beneath_open(snapfd, src_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
		if (src < 0) {
			rc = ts_err_sys(e, errno, "%s/%s: cannot open the copy of the external database",
			                snap.root, src_dir);
			goto out;
		}
		rc = ts_copy_file(src, ext_tmpfd, ext_base, 0, snap.root, &co, e);
		close(src);
		if (rc == TS_OK)
			rc = ts_db_restore_fix(&db, envfd, ext_dirfd, ext_tmpfd, ext_base, ext_dir, e);
		if (rc == TS_OK && fsync(ext_tmpfd) < 0)
			rc = ts_err_sys(e, errno, "%s: cannot sync", ext_dir);
		if (rc != TS_OK)
			goto out;
	}
	/* Everything on disk before the first rename: a crash after it must
	 * not leave a restored ENV with holes. */
	if (syncfs(tmpfd) < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot sync", tmp);
		goto out;
	}

	/* The swap.  The copy's top gets its owner and mode only now: nothing
	 * of it is read or written by restore after this. */
	rc = ts_restore_kept_name(parentfd, envname, live.root, keptname, sizeof keptname, e);
	if (rc != TS_OK)
		goto out;
	snprintf(kept, sizeof kept, "%.*s%s", (int)(envname - live.root), live.root, keptname);
	rc = ts_copy_dir_meta(snapfd, tmpfd, ".", &st, snap.root, e);
	if (rc != TS_OK)
		goto out;
	if (renameat2(parentfd, envname, parentfd, keptname, RENAME_NOREPLACE) < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot rename to %s", live.root, kept);
		goto out;
	}
	if (renameat2(parentfd, tmpname, parentfd, envname, RENAME_NOREPLACE) < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot rename to %s", tmp, live.root);
		renameat2(parentfd, keptname, parentfd, envname, RENAME_NOREPLACE);
		goto out;
	}
	swapped = true;
	/* The name moved must have been our copy: the parent may belong to
	 * the environment's owner, who can rename in it. */
	if (fstat(tmpfd, &tst) < 0 || fstatat(parentfd, envname, &nst, AT_SYMLINK_NOFOLLOW) < 0 ||
	    tst.st_dev != nst.st_dev || tst.st_ino != nst.st_ino) {
		rc = ts_err_set(e, TS_ERR_PERM, "%s: replaced during the restore; refusing", tmp);
		goto out;
	}
	if (ext_base) {
		rc = ts_restore_kept_name(ext_dirfd, ext_base, db.external, ext_keptname, sizeof ext_keptname, e);
		if (rc != TS_OK)
			goto out;
		if (renameat2(ext_dirfd, ext_base, ext_dirfd, ext_keptname, RENAME_NOREPLACE) < 0) {
			int err = errno;
			ext_keptname[0] = '\0';
			if (err != ENOENT) {
				rc = ts_err_sys(e, err, "%s: cannot rename to its .pre-restore name", db.external);
				goto out;
			}
		}
		if (renameat2(ext_tmpfd, ext_base, ext_dirfd, ext_base, RENAME_NOREPLACE) < 0) {
			rc = ts_err_sys(e, errno, "%s: cannot put the restored database there", db.external);
			goto out;
		}
		ext_swapped = true;
	}
	/* Last: a load cannot be undone once committed (a failing one changes
	 * nothing, and the renames are undone below). */
	rc = ts_db_restore_load(&db, e);
	if (rc != TS_OK)
		goto out;
	snprintf(out->kept, sizeof out->kept, "%s", kept);
out:
	if (rc != TS_OK && swapped) {
		/* Undo in reverse order, by the same descriptors; the restored
		 * copy goes back to tmp and is removed below with the rest. */
		if (ext_swapped)
			renameat2(ext_dirfd, ext_base, ext_tmpfd, ext_base, RENAME_NOREPLACE);
		if (ext_keptname[0])
			renameat2(ext_dirfd, ext_keptname, ext_dirfd, ext_base, RENAME_NOREPLACE);
		if (renameat2(parentfd, envname, parentfd, tmpname, RENAME_NOREPLACE) == 0)
			renameat2(parentfd, keptname, parentfd, envname, RENAME_NOREPLACE);
	}
	if (rc != TS_OK && made_tmp) {
		ts_err ignore;
		ts_copy_remove_tree(parentfd, tmpname, &ignore);
	}
	if (made_ext_tmp) {
		ts_err ignore;
		ts_copy_remove_tree(ext_dirfd, ext_tmpname, &ignore);
	}
	if (have_db)
		ts_db_restore_close(&db);
	free(recorded);
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
	if (have_snap)
		ts_env_close(&snap);
	if (have_live)
		ts_env_close(&live);
	return rc;
}
