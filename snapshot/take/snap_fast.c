/* snap_fast.c - a snapshot from a stage that is the environment as it is.
 *
 * The daemon's stager refreshes the stage once changes settle
 * (stage_refresh.c), and its watch tells whether anything but the database
 * changed since that refresh began its pass (ts_snap_changes'
 * stage_clean, snap.h).  When nothing did, the staged tree and its manifest
 * are the snapshot's already, but for the database and for the few files
 * only written to since (Trac's log): the take adopts them without reading
 * the manifest (ts_stage_adopt_as_is), copies those files, copies the
 * database under Trac's lock if the watch still says so then (and the
 * written files again that changed since their copy), and writes a manifest
 * that lists them over the stage's, kept as its base (store/manifest.h).
 * Nothing of the take is then a pass over every entry: mkdir costs the
 * same at 2,000 files as at 1,000,000.  The seal writes the whole manifest
 * later, off mkdir's way.
 *
 * Why it is sound: the refresh's pass over the environment saw every change
 * made before its mark; the watch saw every one after it (no event lost, no
 * directory unwatched, daemon_journal.h), and the answer under Trac's lock
 * covers every change made before the lock.  The watches follow the
 * directories they were put on, so the journal also checks that ENV's path
 * still names the one watched as its top.  What a watch cannot see: a write
 * through a shared mapping (snap_changes.c), and a write to a file through
 * a hard link to it from outside ENV (the event goes to that link's
 * directory).  Trac does neither; such a change reaches the stage, and the
 * snapshots, with the next refresh, which any other change starts.
 *
 * The check of the staged copies before they become the snapshot's
 * (share_check.h) is made by the refresh (stage_refresh.c) and, for what
 * was damaged since, after the snapshot appeared, before it is sealed
 * (snap_adopted.c): until then a reader may see a damaged copy in it.
 */
#include "take/snap_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/beneath.h"
#include "base/log.h"
#include "store/manifest_stat.h"

/* stage_clean's written callback (snap.h): one item per file only written
 * to since the refresh.  Under the journal's mutex: nothing but memory. */
void snap_fast_written(void *arg, const char *rel)
{
	snap_run *r = arg;
	snap_item it = { .type = 'f', .sha_room = true };   /* owned paths have room (snap_int.h) */
	size_t len = strlen(rel) + 1;

	for (size_t i = 0; i < r->items.n; i++)
		if (!strcmp(r->items.v[i].rel, rel))
			return;
	if ((it.rel = malloc(len + 32)) != NULL)
		memcpy(it.rel, rel, len);
	if (!it.rel || snap_list_push(&r->items, &it, NULL) != TS_OK) {
		free(it.rel);
		r->fast_lost = true;   /* one not kept: the stage cannot be taken as it is */
	}
}

/* Copy item it from the environment (again), if it is still a regular file
 * and, when placed already, changed since its copy or racy.  False: it is
 * not what the watch said (gone, or another type), or the copy failed. */
static bool snap_fast_put(snap_run *r, snap_item *it, ts_err *e, ts_err_code *rc)
{
	const char *leaf;
	struct stat st;
	int pfd = ts_beneath_parent(r->envfd, it->rel, &leaf);
	bool have = pfd >= 0 && fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0;

	ts_beneath_parent_close(r->envfd, pfd);
	*rc = TS_OK;
	if (!have || !S_ISREG(st.st_mode))
		return false;
	if (it->placed && !it->racy && st.st_ino == it->st.st_ino && st.st_size == it->st.st_size &&
	    snap_same_time(&st.st_mtim, &it->st.st_mtim) && snap_same_time(&st.st_ctim, &it->st.st_ctim))
		return true;
	snap_item_stat_set(it, &st);
	/* The stage's copy, or ours from before the lock, makes way. */
	*rc = snap_remove(r, it->rel, e);
	if (*rc == TS_OK)
		*rc = snap_put(r, it, e);
	if (*rc == TS_ERR_NOTFOUND) {
		ts_err_clear(e);
		*rc = TS_OK;
		return false;
	}
	it->placed = *rc == TS_OK;
	return it->placed;
}

/* The stage is not to be taken as it is after all (why: for the log): the
 * take goes on as from any stage, with the stage's manifest as what the
 * tree holds, but for the files copied here already, recorded as copied. */
static ts_err_code snap_fast_abandon(snap_run *r, const char *why, ts_err *e)
{
	ts_err_code rc;

	ts_log(LOG_INFO, "snapshot %s: %s; every entry is checked", r->o->name, why);
	r->fast = false;
	/* From here on the take links whole trees: a plain batch (linklog.h),
	 * which explains the inodes noted so far too. */
	free(r->fast_noted.v);
	memset(&r->fast_noted, 0, sizeof r->fast_noted);
	r->noted = NULL;
	/* The stage's manifest, with the files copied here already as
	 * copied (snap_items_from_stage). */
	snap_list over = r->items;
	memset(&r->items, 0, sizeof r->items);
	qsort(over.v, over.n, sizeof *over.v, snap_item_cmp);
	rc = snap_items_from_stage(r, r->tmp.dirfd, TS_MANIFEST_BASE, &over, e);
	if (rc == TS_OK && unlinkat(r->tmp.dirfd, TS_MANIFEST_BASE, 0) < 0)
		rc = ts_err_sys(e, errno, "%s/%s: cannot remove", r->tmp.dir, TS_MANIFEST_BASE);
	snap_list_free(&over);
	return rc;
}

ts_err_code snap_fast_precopy(snap_run *r, ts_err *e)
{
	ts_err_code rc = TS_OK;

	if (r->fast_lost)
		return snap_fast_abandon(r, "too many files written since the stage was refreshed", e);
	for (size_t i = 0; i < r->items.n; i++)
		if (!snap_fast_put(r, &r->items.v[i], e, &rc))
			return rc != TS_OK ? rc : snap_fast_abandon(r, "a file changed since the stage was "
			                                            "refreshed", e);
	return TS_OK;
}

ts_err_code snap_fast_locked(snap_run *r, ts_dbsnap *db, const char *db_rel, ts_err *e)
{
	ts_err_code rc = db->ops->lock(db, e);
	bool clean;

	if (rc != TS_OK)
		return rc;
	clock_gettime(CLOCK_REALTIME, &r->stats->instant);
	/* No identity to give: the manifest was checked when adopted, and
	 * has moved since.  Files written to meanwhile join the items. */
	clean = r->o->changes->stage_clean(r->o->changes->arg, NULL, snap_fast_written, r) && !r->fast_lost;
	for (size_t i = 0; clean && i < r->items.n; i++)
		clean = snap_fast_put(r, &r->items.v[i], e, &rc);
	if (clean) {
		qsort(r->items.v, r->items.n, sizeof *r->items.v, snap_item_cmp);
		if (!r->o->no_database) {
			snap_changes_db(r, db);
			rc = db->ops->capture(db, r->tmp.treefd, db_rel, e);
			r->stats->db_as_precopied = db->precopy_current;
		}
		snap_changes_stage(r, true);
		db->ops->release(db);
		r->stats->from_stage = rc == TS_OK;
		return rc;
	}
	db->ops->release(db);
	if (rc != TS_OK)
		return rc;
	return snap_fast_abandon(r, "the environment changed since the stage was refreshed", e);
}
