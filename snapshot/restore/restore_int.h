/* restore_int.h - what restore's files share: restore.c (the steps) and
 * restore_copy.c (the snapshot's files into the temporary copy).  Private to
 * snapshot/restore/; restore.h is the interface. */
#ifndef TS_RESTORE_INT_H
#define TS_RESTORE_INT_H

#include "base/err.h"
#include "base/progress.h"
#include "restore/restore.h"

/* Copy everything below the snapshot's top src into dst (a directory only
 * root can enter), but for the top-level entry skip (may be NULL): modes,
 * owners, mtimes, symlinks, xattrs; directories' metadata after their
 * contents, the top's left to the caller.  Counts into out, reports to
 * progress (may be NULL) from the calling thread.  desc names src in
 * messages. */
ts_err_code restore_copy_tree(int src, int dst, const char *desc, const char *skip,
                              const ts_progress_sink *progress, ts_restore_out *out, ts_err *e);

#endif
