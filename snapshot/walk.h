/* walk.h - list a directory tree on one thread per core.
 *
 * Listing is system calls (getdents, one fstatat per entry), which cost
 * microseconds each on a VM: a snapshot walks the environment two or three
 * times, once under Trac's lock, so the walk runs on every core.  Entries
 * come in no particular order; the caller sorts.
 */
#ifndef TS_WALK_H
#define TS_WALK_H

#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include "err.h"

/* Called for every entry below the root (not the root itself), from several
 * threads at once: it must serialise its own state.  rel is relative to the
 * root ("a/b"), valid during the call only.  Return TS_OK to go on (into a
 * directory too), TS_ERR_NOTFOUND to leave a directory out, anything else to
 * stop the walk with that error. */
typedef ts_err_code (*ts_walk_fn)(void *arg, const char *rel, const struct stat *st, ts_err *e);

/* Walk below rootfd.  Entries that vanish while walking are left out.
 * desc names the root in messages.  cancel (may be NULL) stops the walk with
 * TS_ERR_CANCELLED; cancel_msg is its message.  A path longer than PATH_MAX
 * stops the walk with TS_ERR_IO ("path too long"). */
ts_err_code ts_walk(int rootfd, const char *desc, ts_walk_fn fn, void *arg,
                    volatile sig_atomic_t *cancel, const char *cancel_msg, ts_err *e);

#endif
