/* beneath.h - reach a name below a directory descriptor, never through a symlink.
 *
 * The environment belongs to an account tracsnap does not trust (doc/security.md),
 * and so may the directory a database sits in.  That account can replace any
 * directory on a path with a symbolic link at any moment, between two system
 * calls of ours.  openat(dirfd, "a/b/c", O_NOFOLLOW) only refuses a link as the
 * *last* component: "a" or "a/b" would still be followed.  Every access below
 * ENV, the store or a database directory therefore goes through this module:
 *
 *   - ts_beneath_open() opens REL with openat2(RESOLVE_BENEATH |
 *     RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) (not RESOLVE_NO_XDEV: a
 *     bind mount below ENV is still ENV); where the kernel lacks openat2
 *     (ENOSYS, before Linux 5.6) it walks one component at a time with
 *     O_NOFOLLOW | O_DIRECTORY.  Either way a symlink anywhere on the path,
 *     ".." or an absolute path fails with ELOOP (or EXDEV for "..": reported
 *     as ELOOP too, so callers test one value).
 *   - ts_beneath_parent() opens the directory that holds REL's last component
 *     and returns that component, for the *at(2) calls that act on a name:
 *     fstatat/fchownat/utimensat with AT_SYMLINK_NOFOLLOW, mkdirat, unlinkat,
 *     linkat, symlinkat, renameat.  Those calls never follow the last
 *     component when given the flag (or by their nature), so together the
 *     path is never followed through a link.
 *
 * ELOOP or ENOTDIR from either means "the tree changed type under us": the
 * caller treats the entry (and its subtree) as changed and reads it again, it
 * never falls back to a plain path.
 *
 * Ownership: every descriptor returned belongs to the caller (close it, or
 * ts_beneath_parent_close() for the parent).  Thread-safe; no state.
 */
#ifndef TS_BENEATH_H
#define TS_BENEATH_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* open(2) flags and mode as for openat; O_NOFOLLOW is implied (a final
 * symlink is refused with ELOOP unless flags has O_PATH and the caller
 * wants the link itself: pass O_PATH | O_NOFOLLOW for that; see
 * ts_beneath_open_link).  rel "" or "." opens dirfd's own directory again.
 * Returns the descriptor, or -1 with errno set. */
int ts_beneath_open(int dirfd, const char *rel, int flags, mode_t mode);

/* An O_PATH descriptor of rel itself, even when rel is a symlink (the last
 * component is not followed; the ones before it must be directories).  For
 * reading a link's or a special file's metadata.  -1 with errno on error. */
int ts_beneath_open_link(int dirfd, const char *rel);

/* The directory that holds rel's last component.  On success *leaf points
 * into rel at that component (never empty, never containing '/') and the
 * returned fd is that directory: dirfd itself when rel has one component
 * (do not close it then: use ts_beneath_parent_close, which knows).
 * rel must not be empty, ".", end in "/" or contain ".." (EINVAL).
 * Returns the fd or -1 with errno set. */
int ts_beneath_parent(int dirfd, const char *rel, const char **leaf);

/* Close what ts_beneath_parent returned for dirfd (nothing when it was
 * dirfd itself); keeps errno. */
void ts_beneath_parent_close(int dirfd, int parentfd);

/* "/proc/self/fd/N/LEAF" for the path-only calls that have no *at form
 * (lgetxattr, llistxattr, lsetxattr, sqlite3_open, fopen): N is a directory
 * fd from ts_beneath_parent, LEAF its leaf; the l* calls do not follow LEAF.
 * The one place such paths are made.  LEAF may have several components only
 * below a directory of tracsnap's own (the store's manifests,
 * ts_manifest_read_at): the kernel follows links on the way.  0, or -1 with
 * ENAMETOOLONG when buf is too small. */
int ts_beneath_procpath(char *buf, size_t size, int dirfd, const char *leaf);

/* A stream over the entries of the directory open on dirfd, on a
 * descriptor of its own (dirfd stays open, its offset unmoved): close it
 * with closedir.  NULL with errno. */
DIR *ts_beneath_list(int dirfd);

/* The directories on the way to the last parent ts_beneath_cache_parent
 * opened, kept for the next names: a pass over sorted paths (consecutive
 * entries share their parent or an ancestor) then opens each directory once,
 * by one O_NOFOLLOW component from its parent's descriptor, instead of
 * resolving a whole path per entry.  Owned by one thread; start it as
 * TS_BENEATH_CACHE_INIT (or zeroed) and ts_beneath_cache_drop() it after.
 * Keep one for the length of one pass only: a descriptor names its
 * directory as it was when opened, wherever it has been moved since (never
 * through a symlink, but maybe stale). */
#define TS_BENEATH_CACHE_DEPTH 16
typedef struct ts_beneath_cache {
	int rootfd;                          /* the dirfd they are below (depth > 0) */
	int depth;                           /* how many of fds[] are open */
	int fds[TS_BENEATH_CACHE_DEPTH];     /* fds[i]: dir[0, ends[i]), O_PATH */
	size_t ends[TS_BENEATH_CACHE_DEPTH]; /* the last level may hold several components */
	char dir[4096];                      /* the deepest one's path below rootfd */
} ts_beneath_cache;
#define TS_BENEATH_CACHE_INIT { .depth = 0 }

/* As ts_beneath_parent, reusing the directories c holds on the way to
 * rel's parent and opening (O_PATH) the rest.  The fd returned belongs to c
 * (or is dirfd): never close it, and it stays valid only until the next call
 * with c.  -1 with errno (ELOOP or ENOTDIR: a link or file on the way). */
int ts_beneath_cache_parent(ts_beneath_cache *c, int dirfd, const char *rel, const char **leaf);

/* Close what c holds; keeps errno.  c can be used again afterwards. */
void ts_beneath_cache_drop(ts_beneath_cache *c);

/* For the unit tests: use the one-component-at-a-time walk as on a kernel
 * without openat2 (true), or openat2 again (false). */
void ts_beneath_force_walk(bool on);

#endif
