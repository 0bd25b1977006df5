/* pool.h - run one job per index on one thread per core.
 *
 * The pre-copy, the directory metadata pass and sealing each work through a
 * list of independent items whose cost is system calls and I/O as much as
 * CPU; this shares them out.  The caller's thread is one of the workers.
 */
#ifndef TS_POOL_H
#define TS_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include "base/err.h"

/* One item.  Called from several threads at once, each index exactly once
 * (until a failure).  Any result but TS_OK stops the pool: no new item is
 * started and that first failure is what ts_pool_run returns. */
typedef ts_err_code (*ts_pool_fn)(void *arg, size_t i, ts_err *e);

/* How the workers yield to Trac. */
enum {
	TS_POOL_IDLE_IO = 1,   /* their I/O takes the idle class (ioprio.h): work done while Trac runs */
	TS_POOL_IDLE_CPU = 2,  /* they run under SCHED_IDLE, on threads of their own (the caller
	                        * only waits): work nobody waits for, such as sealing, so that a
	                        * Trac process woken from an fsync gets a core at once */
};

/* Run fn for i in [0, n).  Fewer than min_parallel items run on one thread
 * (threads are not worth it): the caller's, unless TS_POOL_IDLE_CPU.  flags:
 * TS_POOL_* or 0.  Every worker ends with ts_copy_thread_done(), so no
 * writeback it started is left pending. */
ts_err_code ts_pool_run(size_t n, size_t min_parallel, int flags, ts_pool_fn fn, void *arg,
                        ts_err *e);

#endif
