/* trust.h - open a directory only root (or the caller) could have arranged.
 *
 * The store holds copies of 0600 files and the next snapshot's tree; root
 * writes into it.  If any directory on its path could be changed by another
 * account, that account could swap the store (or a parent) for a symlink or
 * a directory of its own between two runs and have root write, chown or link
 * where it chooses (doc/security.md).  So the store's path is checked the way
 * sshd checks ~/.ssh: every directory from / down to it belongs to root or to
 * the caller, and none is writable by group or others unless it is a
 * root-owned sticky directory such as /tmp (where no one else can rename or
 * remove our entry).  The store itself must belong to the caller.
 *
 * Symlinks in the path as the administrator wrote it (/var/lib -> /data/lib)
 * are resolved first with realpath(3); the resolved path is then opened one
 * component at a time with O_NOFOLLOW, each checked through its descriptor,
 * so what is checked is what is used.
 *
 * Ownership: the descriptor returned belongs to the caller.
 */
#ifndef TS_TRUST_H
#define TS_TRUST_H

#include "err.h"

/* Open directory path (absolute or relative to the cwd) as described above.
 * On success *fd is an O_DIRECTORY descriptor; on failure TS_ERR_PERM naming
 * the first untrusted directory and why ("owned by uid 33", "writable by
 * others", "a symlink appeared"), or the failed system call's error. */
ts_err_code ts_trust_open_dir(const char *path, int *fd, ts_err *e);

#endif
