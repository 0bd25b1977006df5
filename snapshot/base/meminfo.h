/* meminfo.h - the memory budget of a copy: how much may go dirty in the
 * page cache before copies bound their own writeback (copy.h,
 * TS_COPY_BOUNDED).
 *
 * Ownership: no state; reads /proc/sys/vm and /proc/meminfo on each call.
 */
#ifndef TS_MEMINFO_H
#define TS_MEMINFO_H

#include <stdint.h>

/* How much a snapshot may copy into the page cache without bounding its
 * writeback: 90% of what the kernel lets be dirty before its flusher starts
 * (dirty_background_bytes, or dirty_background_ratio of available memory),
 * less what is dirty already.  Below that threshold our pages stay
 * unallocated in the page cache (delayed allocation), so Trac's fsyncs never
 * wait for them; the seal writes them back at a bounded pace.  Beyond it the
 * flusher would write them back in bulk, so copies bound their own. */
uint64_t ts_dirty_budget(void);

#endif
