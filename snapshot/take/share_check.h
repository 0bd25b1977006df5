/* share_check.h - is a stored copy still the content its manifest sealed?
 *
 * A snapshot shares each file unchanged since the newest snapshot by a hard
 * link to that snapshot's copy (snap_put.c), and the daemon's stage links
 * every file ahead of time (stage.h).  A copy damaged in the store (a
 * flipped byte, a restored mtime) would so spread into every later
 * snapshot.  Before a stored copy becomes part of a new snapshot (shared by
 * a take, linked into the stage, adopted from the stage) it is checked
 * against the identity its manifest recorded when it was placed (inode,
 * size, mtime, ctime: manifest.h), from one lstat:
 *
 *   - type, size, mtime, mode (or, as root, owner) differ: damaged;
 *   - the same inode and its ctime as recorded: good;
 *   - ctime moved, but to a moment inside an interval of the engine's own
 *     link and unlink batches (store/linklog.h): good;
 *   - but neither when a removal since the record found the inode changed
 *     by someone else (linklog.h, "S" lines: store/linkguard.h);
 *   - otherwise (another inode, as after the store was brought back by
 *     dump/restore; a ctime moved by someone else), or with no identity
 *     recorded (a version 1 manifest): the copy is hashed and compared with
 *     the manifest's SHA-256; a copy not hashed yet (pending) has nothing to
 *     prove it and counts as damaged.
 *
 * A damaged copy is never linked: the caller copies the file afresh from
 * the environment, by its normal copy path, and logs one line
 * (ts_share_log_damaged).  The damaged copy itself is left as it is for
 * `tracsnap verify` to report.
 *
 * Ownership: nothing is allocated; no state.  Thread-safe.
 */
#ifndef TS_SHARE_CHECK_H
#define TS_SHARE_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "store/linklog.h"
#include "store/manifest.h"

/* Room for what ts_share_check names as different. */
#define TS_SHARE_WHAT_MAX 96

/* Is the stored copy of me (a regular file), whose lstat is st (NULL: it
 * is missing), provably the content me records?  links: the engine's
 * intervals (read once by the caller); owners: compare uid/gid (only root
 * keeps them); dirfd/leaf: where the copy is, for hashing it (leaf one
 * component).  False: what (TS_SHARE_WHAT_MAX bytes) says what differs,
 * e.g. "size, mtime", "content". */
bool ts_share_check(const ts_manifest_entry *me, const struct stat *st, const ts_linklog *links,
                    bool owners, int dirfd, const char *leaf, char *what);

/* The one line for a damaged copy (warning level): "NAME/PATH: stored copy
 * damaged (WHAT), copied afresh from the environment". */
void ts_share_log_damaged(const char *name, const char *path, const char *what);

#endif
