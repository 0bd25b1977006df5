/* inuse.h - which processes use a path: their working directory, root
 * directory, an open descriptor or a mapped file lies at or below it.
 *
 * Read from /proc/PID/{cwd,root,fd/N,map_files/N} by readlink only: the
 * kernel answers from its own records of the names (d_path), so a path on a
 * FUSE mount is named without a request to its daemon.  That matters: the
 * daemon asks this about its own mount (doc/contract.md section 2, rmdir),
 * and a stat through the mount would have it wait on itself.  Nothing is
 * opened, followed or written through the links read.
 *
 * A process we may not look at (another user's, when not root) does not
 * count; nor does one in another mount namespace whose names differ from
 * ours (a bind mount of the path elsewhere): the names are compared as text.
 *
 * Ownership: the caller owns the buffer it passes; nothing is retained.
 * Thread-safe; no state.
 */
#ifndef TS_INUSE_H
#define TS_INUSE_H

#include <stdbool.h>
#include <stddef.h>

/* Is path (absolute, as /proc names it) prefix itself or below it?  A
 * sibling that shares a string prefix ("/mnt/snap2" for "/mnt/snap") is
 * not; a trailing '/' on prefix is ignored. */
bool ts_inuse_path_below(const char *path, const char *prefix);

/* How many processes use prefix (absolute, no "." or ".." components, as
 * realpath(3) gives it).  who (len bytes, may be NULL when len is 0)
 * receives "pid 123 (tar), pid 456 (bash)" (commands with other than
 * printable ASCII shown as '?'), cut short with ", ..." when it does not
 * fit. */
int ts_inuse_find(const char *prefix, char *who, size_t len);

#endif
