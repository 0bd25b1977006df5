/* stage_refresh.c - keep the stage up to the environment (stage.h): the
 * checks a snapshot would make before Trac's lock, made ahead of it. */
#include "base/beneath.h"
#include "take/stage.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/meminfo.h"
#include "db/dbsnap.h"
#include "take/snap_int.h"

/* A raw copy of an SQLite database beside the tree, brought up to date
 * (dbsnap_sqlite.c), so that the snapshot's pre-copy rewrites only the
 * pages that changed since.  PostgreSQL has no pre-copy. */
static ts_err_code stage_db(const ts_env *env, int stagefd, ts_err *e)
{
	ts_dbsnap *db = NULL;
	ts_err_code rc;

	if (!ts_db_can_precopy(env))
		return TS_OK;   /* not even a connection (PostgreSQL) */
	rc = ts_dbsnap_open(env, 1, &db, e);
	if (rc == TS_OK)
		rc = db->ops->precopy(db, stagefd, TS_STAGE_DB_PRECOPY, e);
	if (db)
		ts_dbsnap_close(db);
	return rc;
}

ts_err_code ts_stage_refresh(ts_store *s, const ts_env *env, const ts_snap_opts *o, bool all_dirs,
                             ts_stage_dir_fn dir_fn, void *arg, ts_stage_refresh_out *out, ts_err *e)
{
	ts_err_code rc;
	ts_store_snap *v = NULL;
	size_t n = 0;
	ts_snap_stats stats;
	snap_run r;
	bool busy = false;
	int basefd = -1;
	char path[PATH_MAX], mrel[PATH_MAX];
	struct timespec start;
	ts_linklog_inos noted = { 0 };
	uint64_t mark = 0;
	bool marked = false;
	struct stat mst;

	memset(out, 0, sizeof *out);
	memset(&stats, 0, sizeof stats);
	memset(&r, 0, sizeof r);
	r.env = env;
	r.o = o;
	r.store = s;
	r.stats = &stats;
	r.envfd = r.prevfd = r.tmp.dirfd = r.tmp.treefd = -1;
	r.root = geteuid() == 0;
	/* What the staged tree holds: as a snapshot's previous one, it says
	 * which directories still have the metadata it records (snap_put.c). */
	r.staged = r.stage_refresh = true;
	ts_manifest_init(&r.prev);

	rc = ts_store_lock(s, 0, e);
	if (rc == TS_ERR_BUSY) {
		ts_err_clear(e);
		out->busy = true;
		return TS_OK;
	}
	if (rc != TS_OK)
		return rc;
	rc = ts_store_list(s, &v, &n, e);
	if (rc != TS_OK)
		goto out;
	if (n > 0 && v[n - 1].sealed) {
		snprintf(path, sizeof path, "%s/tree", v[n - 1].name);
		basefd = ts_beneath_open(s->dirfd, path, O_RDONLY | O_DIRECTORY, 0);
	}
	if (basefd < 0 || !ts_stage_of(s, v[n - 1].name, basefd)) {
		out->none = true;
		goto out;
	}
	r.prev_name = strdup(v[n - 1].name);   /* whose copies the stage links, for messages */
	ts_stage_tree_manifest_rel(s, v[n - 1].name, mrel, sizeof mrel);
	r.envfd = open(env->root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);  /* as snap.c */
	r.tmp.dirfd = ts_beneath_open(s->dirfd, TS_STORE_STAGE, O_RDONLY | O_DIRECTORY, 0);
	r.tmp.treefd = ts_beneath_open(s->dirfd, TS_STORE_STAGE_TREE, O_RDONLY | O_DIRECTORY, 0);
	if (r.envfd < 0 || r.tmp.dirfd < 0 || r.tmp.treefd < 0) {
		rc = ts_err_sys(e, errno, "stage: cannot open %s", r.envfd < 0 ? env->root : s->root);
		goto out;
	}
	/* From here on the tree is neither what m says nor yet what the new
	 * manifest will: not adoptable until done. */
	if (renameat(s->dirfd, TS_STORE_STAGE_BASE, s->dirfd, TS_STORE_STAGE_BUSY) < 0) {
		rc = ts_err_sys(e, errno, "stage: %s/%s: cannot rename", s->root, TS_STORE_STAGE_BASE);
		goto out;
	}
	busy = true;
	/* What changed is unlinked from the staged tree, moving the ctime of
	 * the base's copies: one batch that names them (linklog.h).  Refreshes
	 * run all the time while Trac writes, and take as long as their
	 * copies: a plain batch would explain a change made to any copy
	 * meanwhile. */
	ts_linklog_begin(&r.link_start);
	r.links_begun = true;
	r.noted = &noted;
	r.dirty_budget = ts_dirty_budget();
	rc = snap_items_from_stage(&r, s->dirfd, mrel, NULL, e);
	if (rc == TS_OK)
		rc = snap_items_remove_db(&r, e);
	/* The staged copies are checked as a snapshot adopting the stage
	 * would check them (share_check.h): one taken from this stage as it
	 * is (snap_fast.c) checks none.  A damaged one is copied again below. */
	ts_linklog_read(s->dirfd, &r.links);
	if (rc == TS_OK)
		rc = snap_check_staged(&r, e);
	stats.bytes_copied = 0;   /* what earlier refreshes copied is not ours */
	/* The new manifest's time: before anything is looked at, so that
	 * whatever changes from here on is racy or newer (snap_recheck.c). */
	clock_gettime(CLOCK_REALTIME, &start);
	/* What changes from here on, the watch sees: if nothing does, a
	 * snapshot can take this stage as it is (snap_fast.c). */
	if (rc == TS_OK && o->changes && o->changes->stage_mark) {
		mark = o->changes->stage_mark(o->changes->arg);
		marked = true;
	}
	if (rc == TS_OK)
		rc = snap_recheck(&r, false, e);
	/* Directories that changed get their metadata now, so that the
	 * snapshot finds them as its own pass would leave them and, reading
	 * this stage's manifest only, leaves them be (stage.h). */
	if (rc == TS_OK)
		rc = snap_dir_meta(&r, e);
	if (rc == TS_OK && !o->no_database)
		rc = stage_db(env, r.tmp.dirfd, e);
	if (rc == TS_OK && o->cancel && *o->cancel)
		rc = ts_err_set(e, TS_ERR_CANCELLED, "stage: cancelled (tracsnap is stopping)");
	if (rc != TS_OK)
		goto out;
	stats.instant = start;
	rc = snap_manifest(&r, NULL, e);
	if (rc == TS_OK) {
		/* Done with links: the batch ends before the refreshed stage
		 * can be seen (linklog.h), as a stage build's does. */
		ts_linklog_end_inos(s->dirfd, &r.link_start, &noted);
		r.links_begun = false;
	}
	if (rc == TS_OK && renameat(s->dirfd, TS_STORE_STAGE_BUSY, s->dirfd, TS_STORE_STAGE_BASE) < 0)
		rc = ts_err_sys(e, errno, "stage: %s/%s: cannot rename", s->root, TS_STORE_STAGE_BUSY);
	if (rc != TS_OK)
		goto out;
	busy = false;
	/* A directory its owner cannot add to keeps the stage's own mode in
	 * the staged tree (snap_put.c): a snapshot must give it the rest, so
	 * the stage is not one to take as it is. */
	for (size_t i = 0; marked && i < r.items.n; i++)
		if (r.items.v[i].type == 'd' &&
		    (r.items.v[i].st.st_mode & (S_IWUSR | S_IXUSR)) != (S_IWUSR | S_IXUSR))
			marked = false;
	if (marked && fstatat(s->dirfd, TS_STORE_STAGE_MANIFEST, &mst, AT_SYMLINK_NOFOLLOW) == 0)
		o->changes->stage_done(o->changes->arg, mark, &mst);
	out->bytes_copied = stats.bytes_copied;
	for (size_t i = 0; dir_fn && (all_dirs || r.dirs_added) && i < r.items.n; i++)
		if (r.items.v[i].type == 'd')
			dir_fn(arg, r.items.v[i].rel);
out:
	/* A stage half refreshed goes (a stop leaves it to the next build:
	 * removing a large tree would hold up the unmount). */
	if (r.links_begun)   /* before the drop's guard looks (linkguard.h) */
		ts_linklog_end_inos(s->dirfd, &r.link_start, &noted);
	if (busy && rc != TS_ERR_CANCELLED)
		ts_store_stage_drop(s);
	if (r.envfd >= 0)
		close(r.envfd);
	if (r.tmp.dirfd >= 0)
		close(r.tmp.dirfd);
	if (r.tmp.treefd >= 0)
		close(r.tmp.treefd);
	if (basefd >= 0)
		close(basefd);
	snap_list_free(&r.items);
	snap_paths_free(&r.paths);   /* after the items, whose paths these are */
	ts_pathset_free(&r.db_gone);
	ts_manifest_free(&r.prev);
	ts_linklog_free(&r.links);
	free(r.prev_name);
	ts_store_list_free(v, n);
	ts_store_unlock(s);
	return rc;
}
