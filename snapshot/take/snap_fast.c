/* snap_fast.c - a snapshot from a stage that is the environment as it is.
 *
 * The daemon's stager refreshes the stage once changes settle
 * (stage_refresh.c), and its watch tells whether anything but the database
 * changed since that refresh began its pass (ts_snap_changes'
 * stage_clean, snap.h).  When nothing did, the staged tree and its manifest
 * are the snapshot's already, but for the database: the take adopts them
 * without reading the manifest (ts_stage_adopt_as_is), copies the database
 * under Trac's lock if the watch still says so then, and writes a manifest
 * that lists the database and its directory over the stage's, kept as its
 * base (store/manifest.h).  Nothing of the take is then a pass over every
 * entry: mkdir costs the same at 2,000 files as at 1,000,000.  The seal
 * writes the whole manifest later, off mkdir's way.
 *
 * Why it is sound: the refresh's pass over the environment saw every change
 * made before its mark; the watch saw every one after it (no event lost, no
 * directory unwatched, daemon_journal.h), and the answer under Trac's lock
 * covers every change made before the lock.  What a watch cannot see, a
 * write through a shared mapping, snap_changes.c says.
 *
 * What it gives up: the check of the staged copies before they become the
 * snapshot's (share_check.h) is made by the refresh (stage_refresh.c), not
 * by the snapshot: a copy damaged in the store between the two goes into
 * the snapshot as it is, and verify finds it there.
 */
#include "take/snap_int.h"

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"

ts_err_code snap_fast_locked(snap_run *r, ts_dbsnap *db, const char *db_rel, ts_err *e)
{
	ts_err_code rc = db->ops->lock(db, e);

	if (rc != TS_OK)
		return rc;
	clock_gettime(CLOCK_REALTIME, &r->stats->instant);
	/* No identity to give: the manifest was checked when adopted, and
	 * has moved since. */
	if (r->o->changes->stage_clean(r->o->changes->arg, NULL)) {
		if (!r->o->no_database)
			rc = db->ops->capture(db, r->tmp.treefd, db_rel, e);
		db->ops->release(db);
		r->stats->from_stage = rc == TS_OK;
		return rc;
	}
	db->ops->release(db);
	ts_log(LOG_INFO, "snapshot %s: the environment changed since the stage was refreshed; "
	       "every entry is checked", r->o->name);
	r->fast = false;
	rc = ts_manifest_read_at(r->tmp.dirfd, TS_MANIFEST_BASE, &r->prev, e);
	if (rc == TS_OK && unlinkat(r->tmp.dirfd, TS_MANIFEST_BASE, 0) < 0)
		rc = ts_err_sys(e, errno, "%s/%s: cannot remove", r->tmp.dir, TS_MANIFEST_BASE);
	return rc;
}
