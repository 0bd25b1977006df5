/* registry.h - which environment is mounted where, with which store.
 *
 * Every command takes ENV or the mount point, and must find the store the
 * running mount uses, which need not be the default one (store=).  So each
 * daemon, once it serves, registers itself in the run directory:
 * /run/tracsnap for root (made 0755 if missing), $XDG_RUNTIME_DIR/tracsnap
 * for another account; TRACSNAP_RUN_DIR overrides both (tests).  One file
 * per daemon, "mount-PID", written to a temporary name and renamed, 0644:
 *
 *   "tracsnap-mount 1" NUL START NUL ENV NUL MOUNTPOINT NUL STORE NUL
 *
 * START is the daemon's start time (mounts.h), so that an entry whose pid
 * was reused is stale; ENV, MOUNTPOINT and STORE are absolute, resolved.
 * NUL-separated: a path may hold any other byte.  The daemon removes its
 * entry when it stops; a stale one is ignored, and removed by the next
 * daemon that registers.
 *
 * Trust: the run directory is opened as trust.h demands (root's or the
 * caller's all the way from "/", not writable by others), and an entry is
 * read only when owned by the caller or root.  The store found is then
 * opened as any --store is (ts_store_open), so an entry can at worst point
 * a command at a store the same account could name itself.
 *
 * Ownership: entries are the caller's buffers; nothing is retained.
 */
#ifndef TS_REGISTRY_H
#define TS_REGISTRY_H

#include <limits.h>
#include <stdbool.h>

#include "base/err.h"

typedef struct ts_registry_entry {
	long pid;
	char env[PATH_MAX];
	char mnt[PATH_MAX];
	char store[PATH_MAX];
} ts_registry_entry;

/* Register this process (getpid()) as serving env on mnt with store (all
 * absolute).  Removes stale entries first. */
ts_err_code ts_registry_add(const char *env, const char *mnt, const char *store, ts_err *e);

/* Remove this process's entry, if any; never fails. */
void ts_registry_remove(void);

/* The live mount whose environment or mount point is path (compared after
 * realpath(3)), into *out, *found true.  None: TS_OK, *found false.  Two
 * live mounts of that environment with different stores: TS_ERR_USAGE
 * naming both ("give --store").  A missing run directory is no mount. */
ts_err_code ts_registry_find(const char *path, ts_registry_entry *out, bool *found, ts_err *e);

#endif
