/* ioprio.h - run the calling thread's I/O in the idle class.
 *
 * Background copying and sealing run while Trac works: their reads and
 * writeback take the idle I/O class, so that Trac's own commits (an fsync
 * each) go first (honoured by the bfq and mq-deadline schedulers; a no-op
 * with "none").  ioprio_set(2) has no glibc wrapper.
 */
#ifndef TS_IOPRIO_H
#define TS_IOPRIO_H

#include <sys/syscall.h>
#include <unistd.h>

#define TS_IOPRIO_WHO_PROCESS 1   /* with who = 0: the calling thread */
#define TS_IOPRIO_IDLE (3 << 13)  /* IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT */

/* Switch to the idle class; returns the previous priority for ts_ioprio_restore. */
static inline int ts_ioprio_idle(void)
{
	int prev = (int)syscall(SYS_ioprio_get, TS_IOPRIO_WHO_PROCESS, 0);
	(void)syscall(SYS_ioprio_set, TS_IOPRIO_WHO_PROCESS, 0, TS_IOPRIO_IDLE);
	return prev;
}

static inline void ts_ioprio_restore(int prev)
{
	if (prev >= 0)
		(void)syscall(SYS_ioprio_set, TS_IOPRIO_WHO_PROCESS, 0, prev);
}

#endif
