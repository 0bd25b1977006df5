/* mounts.h - where daemons show a store, so that any tracsnap can tell
 * whether a snapshot is in use through a mount before it removes it.
 *
 * A daemon records its mount point in STORE/.mount-PID (the daemon's pid
 * after it detached; one line: the absolute mount point as realpath(3) gave
 * it at mount), 0600, written to a temporary name and renamed into place,
 * and removes it at unmount.  A record whose pid is gone, or is no longer a
 * tracsnap (the pid was reused), is stale: ignored, and removed by the next
 * daemon that records its own.
 *
 * "In use" (doc/contract.md sections 2 and 5): a process's working
 * directory, root, an open descriptor or a mapped file lies at or below
 * MNT/NAME for a live mount point MNT of the store (base/inuse.h).  The
 * recorded path is only compared as text with what /proc names; nothing is
 * ever opened through it.  The store is root's (or the caller's) alone
 * (base/trust.h), so only they can write a record.
 *
 * Ownership: nothing is retained; the caller owns every buffer.
 */
#ifndef TS_MOUNTS_H
#define TS_MOUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include "base/err.h"
#include "store/store.h"

#define TS_MOUNTS_PREFIX ".mount-"

/* Record mnt for this process (getpid()); removes stale records first. */
ts_err_code ts_mounts_record(ts_store *s, const char *mnt, ts_err *e);

/* Remove this process's record, if any; never fails. */
void ts_mounts_unrecord(ts_store *s);

/* How many processes use snapshot name through a live mount of the store,
 * and also through also_mnt (may be NULL: the caller's own mount point,
 * for when its record could not be written).  who as for ts_inuse_find. */
int ts_mounts_users(ts_store *s, const char *name, const char *also_mnt, char *who, size_t len);

/* The start time of process pid (field 22 of /proc/PID/stat, clock ticks
 * since boot); false when it is gone or unreadable. */
bool ts_mounts_start_time(long pid, unsigned long long *start);

/* Is the process that recorded this start time still there?  A process we
 * cannot look at (hidepid) but that exists counts as live.  Also for the
 * registry's entries (registry.h). */
bool ts_mounts_pid_live(long pid, unsigned long long start);

#endif
