/* manifest_stat.h - a manifest entry (manifest.h) against a struct stat:
 * the one conversion each way, and the comparisons.
 *
 * An entry records two files: the store's copy (type, mode, owner, size,
 * mtime: what `tracsnap verify` checks and the view shows) and the
 * environment file it was copied from (src_ino, src_ctime, with the same
 * type, mode, owner, size and mtime as the copy was given).  Hence two
 * comparisons, with different questions:
 *   - ts_manifest_copy_matches: is the store's copy still what the entry
 *     says, as far as stat tells (st is the copy's lstat)?
 *   - ts_manifest_same_source: is the environment file the same one, not
 *     changed since it was copied (st is the source's lstat)?
 * ts_manifest_entry_diff lists every field that differs, for verify's
 * reports; ts_manifest_copy_matches is built on it.
 *
 * Ownership: nothing is allocated; no state.
 */
#ifndef TS_MANIFEST_STAT_H
#define TS_MANIFEST_STAT_H

#include <stdbool.h>
#include <sys/stat.h>
#include "store/manifest.h"

/* 'd', 'f' or 'l' for a directory, regular file or symlink; 0 for any other
 * type (never in a snapshot). */
char ts_manifest_type_of(mode_t mode);

/* me's metadata from st: permission bits, owner, size (0 for a directory)
 * and mtime.  me->type must be set. */
void ts_manifest_entry_set_meta(ts_manifest_entry *me, const struct stat *st);

/* me's source from st, the environment file's stat: src_ino, src_ctime. */
void ts_manifest_entry_set_source(ts_manifest_entry *me, const struct stat *st);

/* me's store identity from st, the lstat of the store's copy just placed
 * (copied, or hard-linked into the new tree): store_ino, store_ctime.
 * Only for 'f' entries; others keep 0 (manifest.h). */
void ts_manifest_entry_set_store(ts_manifest_entry *me, const struct stat *st);

/* The inverse of the two above: the environment file's stat as me recorded
 * it (type and mode, owner, size, mtime, st_ino = src_ino, st_ctim =
 * src_ctime); every other field zero (st_dev is the caller's to set). */
void ts_manifest_entry_to_stat(const ts_manifest_entry *me, struct stat *st);

/* ts_manifest_entry_diff's bits. */
#define TS_MDIFF_TYPE  1u   /* st is not of me's type */
#define TS_MDIFF_MODE  2u   /* permission bits (never for a symlink: always 0777) */
#define TS_MDIFF_OWNER 4u   /* uid or gid */
#define TS_MDIFF_SIZE  8u   /* never for a directory: its size is the filesystem's */
#define TS_MDIFF_MTIME 16u  /* to the nanosecond, but for TS_MDIFF_MTIME_SEC */
/* The same mtime to the second, st's without its fraction: what a copy by a
 * tool that keeps whole seconds gives (dump/restore, some archivers).  The
 * one difference verify counts as metadata drift rather than damage when
 * nothing else differs (verify.h). */
#define TS_MDIFF_MTIME_SEC 32u

/* Which of the fields above differ between me and st (0: none). */
unsigned ts_manifest_entry_diff(const ts_manifest_entry *me, const struct stat *st);

/* Is the store copy whose lstat is st still what entry me records, as far
 * as stat tells?  A regular file or directory: type, mode, mtime, size (not
 * a directory's) and, when owners (only root can keep them), uid/gid.  A
 * symlink: type and size (its target's length) only: its mode is always
 * 0777 and its owner and mtime are not what sharing or a stage relies on.
 * Damage that stat cannot see needs `tracsnap verify`. */
bool ts_manifest_copy_matches(const ts_manifest_entry *me, const struct stat *st, bool owners);

/* Is the environment file whose lstat is st the one me was copied from, not
 * changed since: same type, inode, ctime and mtime; and for a regular file
 * or symlink also size, mode and owner as recorded.  A directory's size is
 * the filesystem's, and a change of its mode or owner moves its ctime.
 * Whether st's ctime is too recent to trust is the caller's question
 * (take/snap_int.h: racy). */
bool ts_manifest_same_source(const ts_manifest_entry *me, const struct stat *st);

#endif
