/* daemon_prune.c - what keeps a snapshot from being removed, and keep=.
 *
 * A snapshot in use is never removed (doc/contract.md section 2): libfuse's
 * path API forgets every node below a removed directory, and whoever was
 * reading there (tar between two files, a shell cd'ed into it) would get
 * ESTALE.  So rmdir answers EBUSY and keep= skips it, retried at the next
 * seal and every retry_s seconds while one is pending (daemon_seal.c).
 *
 * keep= prunes only after a seal: a snapshot that is not sealed is lost if
 * the machine goes down first, so it must not push out a sealed one
 * (ts_prune_select counts sealed snapshots only).
 */
#include "daemon.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "store/mounts.h"

/* How long a handle may take to be released after its process closed it:
 * the kernel sends RELEASE in the background, so `tar ...; rmdir` could
 * otherwise find tar's last file still open. */
#define DMN_RELEASE_GRACE_MS 1000
#define DMN_RELEASE_POLL_MS 10

bool dmn_busy(dmn_daemon *d, const char *name, char *why, size_t len)
{
	char rel[NAME_MAX + 8], who[512];
	unsigned long open_now = 0;
	struct stat st;
	bool busy = false;

	/* Processes first: they are named, and they do not go away by waiting. */
	if (ts_mounts_users(&d->store, name, d->mnt, who, sizeof who) > 0) {
		snprintf(why, len, "in use by %s", who);
		busy = true;
		goto out;
	}
	snprintf(rel, sizeof rel, "%s/tree", name);
	if (name[0] == '.' || fstatat(d->store.dirfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
		goto out;
	for (int waited = 0;; waited += DMN_RELEASE_POLL_MS) {
		open_now = dmn_handles_count(&d->handles, st.st_dev, st.st_ino);
		if (open_now == 0 || waited >= DMN_RELEASE_GRACE_MS)
			break;
		struct timespec nap = { 0, DMN_RELEASE_POLL_MS * 1000000L };
		nanosleep(&nap, NULL);
	}
	if (open_now > 0) {
		snprintf(why, len, "in use: %lu open file%s or director%s through the mount",
		         open_now, open_now == 1 ? "" : "s", open_now == 1 ? "y" : "ies");
		busy = true;
	}
out:
	return busy;
}

static void dmn_prune_line(void *arg, const char *name, ts_prune_verdict v, const char *why)
{
	(void)arg;
	if (v == TS_PRUNE_REMOVE)
		ts_log(LOG_INFO, "pruned %s", name);
	else if (v == TS_PRUNE_BUSY)
		ts_log(LOG_INFO, "kept %s: %s (keep= tries again later)", name, why);
	else if (v == TS_PRUNE_HELD)
		ts_log(LOG_INFO, "kept %s: held (tracsnap release %s lets keep= remove it)", name, name);
}

static bool dmn_prune_busy(void *arg, const char *name, char *why, size_t len)
{
	return dmn_busy(arg, name, why, len);
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
	ts_prune_result res = { 0 };
	ts_err e;

	ts_err_clear(&e);
	dmn_writer_lock(d);
	size_t nprotect = dmn_auto_names(&d->autos, ts_clock_name_time(), now, protect);
	ts_prune_opts o = { .lock_timeout_s = d->lock_timeout_s, .protect = protect,
	                    .nprotect = nprotect, .busy = dmn_prune_busy, .busy_arg = d,
	                    .fn = dmn_prune_line };
	if (ts_prune_store(&d->store, &d->keep, &o, &res, &e) != TS_OK)
		ts_log(LOG_ERR, "prune (keep=) failed: %s", e.msg);
	dmn_writer_unlock(d);
	return res.busy;
}
