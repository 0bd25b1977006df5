/* racy.h - how close to a moment a ctime may be and still hide a change.
 *
 * Timestamps come from a coarse clock: a file changed again within one tick
 * of the moment it was read or copied may keep its ctime.  Such a file is
 * "racy": what was read of it cannot be trusted until the window has passed.
 * Filesystems with nanosecond timestamps tick with the kernel's coarse clock
 * (a few ms); ones with whole seconds need two.  The take (take/snap_int.h)
 * and restore's record of the restored state (restore/restore_record.c)
 * use the same window.
 */
#ifndef TS_RACY_H
#define TS_RACY_H

#include <stdint.h>
#include <time.h>

#define TS_RACY_FINE_NS (20LL * 1000000LL)
#define TS_RACY_COARSE_NS (2LL * 1000000000LL)

static inline int64_t ts_racy_timespec_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec;
}

/* The window of a file with this ctime: a ctime with no nanoseconds comes
 * from a filesystem with whole seconds. */
static inline int64_t ts_racy_ns(const struct timespec *ctime)
{
	return ctime->tv_nsec ? TS_RACY_FINE_NS : TS_RACY_COARSE_NS;
}

#endif
