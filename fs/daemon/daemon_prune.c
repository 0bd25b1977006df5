/* daemon_prune.c - keep=.
 *
 * keep= prunes only after a seal (daemon_seal.c): a snapshot that is not
 * sealed is lost if the machine goes down first, so it must not push out a
 * sealed one (ts_prune_select counts sealed snapshots only).
 */
#include "daemon.h"

#include "base/clock.h"
#include "base/log.h"

static void dmn_prune_line(void *arg, const char *name, ts_prune_verdict v, const char *why)
{
	(void)arg;
	if (v == TS_PRUNE_REMOVE)
		ts_log(LOG_INFO, "pruned %s", name);
	else if (v == TS_PRUNE_BUSY)
		ts_log(LOG_INFO, "kept %s: %s", name, why);
}

/* The names of the current period of every auto format are kept whatever
 * keep= says: otherwise a first access of one (the hour) would prune
 * another's (the day), whose next first access would snapshot and prune the
 * first, and so on.  Under snap_mu, so that no snapshot of ours is half
 * made while prune chooses. */
unsigned dmn_prune(dmn_daemon *d)
{
	char now[DMN_MAX_AUTO][NAME_MAX + 1];
	const char *protect[DMN_MAX_AUTO];
	unsigned busy = 0;
	ts_err e;

	ts_err_clear(&e);
	dmn_writer_lock(d);
	size_t nprotect = dmn_auto_names(&d->autos, ts_clock_name_time(), now, protect);
	ts_prune_opts o = { .lock_timeout_s = d->lock_timeout_s, .protect = protect,
	                    .nprotect = nprotect, .fn = dmn_prune_line };
	if (ts_prune_store(&d->store, &d->keep, &o, &busy, &e) != TS_OK)
		ts_log(LOG_ERR, "prune (keep=) failed: %s", e.msg);
	dmn_writer_unlock(d);
	return busy;
}
