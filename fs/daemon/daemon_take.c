/* daemon_take.c - the daemon's writes to the store: a snapshot for mkdir or
 * a first access, a delete (rmdir), a rename.
 *
 * Each runs under snap_mu (dmn_writer_lock), the engine taking the store's
 * flock and Trac's lock under it (daemon.h, lock order), and kicks the
 * sealer once snap_mu is released.
 */
#include "daemon.h"
#include "store/hold.h"

#include <stdio.h>

#include "base/clock.h"
#include "base/log.h"
#include "take/snap.h"

static const char *dmn_why_label(dmn_why why)
{
	return why == DMN_WHY_MKDIR ? "mkdir" : "first access";
}

unsigned dmn_auto_mask_now(const dmn_daemon *d, const char *name)
{
	return dmn_auto_mask(&d->autos, name, ts_clock_name_time());
}

/* limited: the caller may not manage snapshots (a first access by another
 * user): it makes at most one snapshot per format and period, so that
 * looking names up cannot make the daemon snapshot and prune in a loop.
 * Managers (mkdir, their first accesses) are not limited. */
ts_err_code dmn_take(dmn_daemon *d, const char *name, dmn_why why, unsigned auto_mask,
                     bool limited, ts_err *e)
{
	ts_snap_opts o = { .name = name, .lock_timeout_s = d->lock_timeout_s,
	                   .no_database = d->no_database, .cancel = &d->cancel };
	ts_snap_changes changes;
	const char *label = dmn_why_label(why);
	ts_snap_stats st;
	char line[512];
	ts_err_code rc;

	ts_err_clear(e);
	dmn_writer_lock(d);
	if (why == DMN_WHY_FIRST_ACCESS && ts_store_exists(&d->store, name)) {
		rc = TS_OK;   /* another first access made it while we waited */
		goto unlock;
	}
	if (limited && dmn_auto_spent(&d->autos, name, auto_mask)) {
		/* made once in this period already (since deleted) */
		rc = ts_err_set(e, TS_ERR_NOTFOUND, "snapshot %s: made once in this period", name);
		goto unlock;
	}
	/* The stager's watch tells what changed, so that under Trac's lock
	 * only that is looked at (snapshot/take/snap_changes.c). */
	if (d->stage.running) {
		dmn_journal_changes(&d->stage.j, &changes);
		o.changes = &changes;
	}
	rc = ts_snap_take(&d->store, &d->env, &o, &st, e);
	if (rc == TS_OK) {
		d->stage.taken_mark = st.stage_mark;
		snprintf(d->stage.taken_name, sizeof d->stage.taken_name, "%s", name);
		d->stage.taken_dev = st.tree_dev;
		d->stage.taken_ino = st.tree_ino;
		ts_snap_format_stats(name, &st, line, sizeof line);
		ts_log(LOG_INFO, "%s (%s)", line, label);
		dmn_auto_record(&d->autos, name, auto_mask);
		/* keep= prunes once the sealer has sealed it (daemon_prune.c). */
	}
	/* A snapshot of a large tree allocates a lot briefly: give it back, so
	 * that the daemon's size does not follow the number of snapshots.  The
	 * stager does, after it has staged the next snapshot (daemon_stage.c),
	 * off mkdir's way; without a stager, here. */
	if (!d->stage.running)
		dmn_trim();
	dmn_writer_unlock(d);
	if (rc == TS_OK) {
		dmn_seal_kick(d);
		goto out;
	}
	if (rc == TS_ERR_NOSPC)
		ts_log(LOG_ERR, "snapshot %s (%s) failed: store %s: no space left (%s); nothing "
		       "was kept", name, label, d->store.root, e->msg);
	else
		ts_log(rc == TS_ERR_EXISTS || rc == TS_ERR_NAME ? LOG_NOTICE : LOG_ERR,
		       "snapshot %s (%s) failed: %s", name, label, e->msg);
	goto out;
unlock:
	dmn_writer_unlock(d);
out:
	return rc;
}

ts_err_code dmn_delete(dmn_daemon *d, const char *name, ts_err *e)
{
	ts_err_code rc;

	char why[600];
	bool refused = false;   /* held, or in use: the user's answer, not a fault */

	ts_err_clear(e);
	dmn_writer_lock(d);
	rc = ts_store_lock(&d->store, d->lock_timeout_s, e);
	if (rc == TS_OK) {
		/* Checked under both locks, right before the rename that hides it;
		 * a reader that starts in between still loses its view. */
		if (ts_hold_is_held(&d->store, name, NULL)) {
			snprintf(why, sizeof why, "held (tracsnap release %s first)", name);
			refused = true;
		} else {
			refused = ts_store_exists(&d->store, name) && dmn_busy(d, name, why, sizeof why);
		}
		if (refused)
			rc = ts_err_set(e, TS_ERR_BUSY, "snapshot %s: %s", name, why);
		else
			rc = ts_store_remove(&d->store, name, e);
		ts_store_unlock(&d->store);
	}
	dmn_writer_unlock(d);
	if (refused) {
		ts_log(LOG_NOTICE, "rmdir %s refused: %s", name, why);
		return rc;
	}
	if (rc != TS_OK) {
		ts_log(LOG_ERR, "rmdir %s failed: %s", name, e->msg);
		return rc;
	}
	ts_log(LOG_INFO, "snapshot %s deleted", name);
	dmn_seal_kick(d);   /* the stage may have gone with it: stage the newest again */
	return TS_OK;
}

ts_err_code dmn_rename(dmn_daemon *d, const char *from, const char *to, ts_err *e)
{
	ts_err_code rc;

	ts_err_clear(e);
	dmn_writer_lock(d);
	rc = ts_store_lock(&d->store, d->lock_timeout_s, e);
	if (rc == TS_OK) {
		rc = ts_store_rename(&d->store, from, to, e);
		ts_store_unlock(&d->store);
	}
	dmn_writer_unlock(d);
	if (rc != TS_OK) {
		ts_log(LOG_NOTICE, "rename %s -> %s failed: %s", from, to, e->msg);
		return rc;
	}
	ts_log(LOG_INFO, "snapshot %s renamed to %s", from, to);
	dmn_seal_kick(d);   /* a pass already running may have missed it under its new name */
	return TS_OK;
}
