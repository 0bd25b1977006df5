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
#include "base/err.h"

/* Called for every entry below the root (not the root itself), from several
 * threads at once: it must serialise its own state.  rel is relative to the
 * root ("a/b"), valid during the call only.  Return TS_OK to go on (into a
 * directory too), TS_ERR_NOTFOUND to leave a directory out, anything else to
 * stop the walk with that error. */
typedef ts_err_code (*ts_walk_fn)(void *arg, const char *rel, const struct stat *st, ts_err *e);

/* Walk below rootfd.  Entries that vanish while walking are left out.
 * Every directory is opened beneath rootfd (beneath.h): one that is not
 * the directory fn was given the stat of when its turn comes (a symlink or
 * a file put in its place, or in an ancestor's; gone; another directory
 * moved in) is left out too, and *retyped (unless NULL) set to true, so
 * that the caller can look at that subtree again: what fn was told of it
 * says nothing of what it holds now.  A symlink is never followed.
 * desc names the root in messages.  cancel (may be NULL) stops the walk with
 * TS_ERR_CANCELLED; cancel_msg is its message.  A path longer than PATH_MAX
 * stops the walk with TS_ERR_IO ("path too long"). */
ts_err_code ts_walk(int rootfd, const char *desc, ts_walk_fn fn, void *arg,
                    volatile sig_atomic_t *cancel, const char *cancel_msg, bool *retyped,
                    ts_err *e);

/* From inside fn only: the calling walk thread's parent-directory cache i
 * (i < TS_WALK_CACHES), for fn's own accesses below other roots (the store
 * tree, say) by paths of the same directory; the walk drops them when it
 * ends. */
#define TS_WALK_CACHES 2
struct ts_beneath_cache *ts_walk_cache(int i);

#endif
