/* trust.h - open a directory only root (or a named account) could have arranged.
 *
 * Root writes, links and chowns in the store, and restore writes in ENV's
 * parent and in an external database's directory.  If a directory on such a
 * path could be changed by another account, that account could swap it (or a
 * parent) for a symlink or a directory of its own between two of our calls
 * and have root write where it chooses (doc/security.md).  So such paths are
 * checked the way sshd checks ~/.ssh: from "/" down, one component at a time
 * with O_NOFOLLOW, each checked through its own descriptor (what is checked
 * is what is used), every directory must be
 *   - a directory, not a symlink;
 *   - owned by root or by the one account the caller names;
 *   - not writable by group or others, unless it is a root-owned sticky
 *     directory such as /tmp (where no one else can rename or remove our
 *     entry).
 *
 * Ownership: the descriptor returned belongs to the caller.
 */
#ifndef TS_TRUST_H
#define TS_TRUST_H

#include <sys/types.h>

#include "base/err.h"

/* Open the absolute directory path, exactly as written (no symlink, "." or
 * ".." on the way), each directory owned by root or owner.  On failure
 * TS_ERR_PERM with "CTX: DIR is WHY" (ctx names the purpose, e.g. "store
 * /x" or "restore"), TS_ERR_USAGE for a path that is not absolute or has
 * "."/"..", or the failed system call's error.  *fd is -1 on failure. */
ts_err_code ts_trust_open_path(const char *path, uid_t owner, const char *ctx, int *fd, ts_err *e);

/* The store: path as the administrator wrote it is resolved first with
 * realpath(3) (their /var/lib -> /data/lib is theirs to make), then opened
 * by ts_trust_open_path with owner = the caller (geteuid()); the store
 * itself must be the caller's and not writable by group or others at all.
 * Messages start "store PATH: ". */
ts_err_code ts_trust_open_dir(const char *path, int *fd, ts_err *e);

#endif
