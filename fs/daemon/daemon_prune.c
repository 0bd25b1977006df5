/* daemon_prune.c - keep=.
 *
 * keep= prunes only after a seal (daemon_seal.c): a snapshot that is not
 * sealed is lost if the machine goes down first, so pruning as soon as it
 * appears could leave no snapshot at all.
 */
#include "daemon.h"

#include "base/clock.h"
#include "base/log.h"

static void dmn_prune_line(void *arg, const char *name, bool keep)
{
	(void)arg;
	if (!keep)
		ts_log(LOG_INFO, "pruned %s", name);
}

/* The names of the current period of every auto format are kept whatever
 * keep= says: otherwise a first access of one (the hour) would prune
 * another's (the day), whose next first access would snapshot and prune the
 * first, and so on.  Under snap_mu, so that no snapshot of ours is half
 * made while prune chooses. */
void dmn_prune(dmn_daemon *d)
{
	char now[DMN_MAX_AUTO][NAME_MAX + 1];
	const char *protect[DMN_MAX_AUTO];
	ts_err e;

	ts_err_clear(&e);
	dmn_writer_lock(d);
	size_t nprotect = dmn_auto_names(&d->autos, ts_clock_name_time(), now, protect);
	if (ts_prune_store_except(&d->store, &d->keep, protect, nprotect, false,
	                          d->lock_timeout_s, dmn_prune_line, NULL, &e) != TS_OK)
		ts_log(LOG_ERR, "prune (keep=) failed: %s", e.msg);
	dmn_writer_unlock(d);
}
