/* seal_dedupe.h - let a new copy share the blocks it has in common with an
 * older copy of the same file, on a filesystem that can (XFS with
 * reflink=1, btrfs).
 *
 * A snapshot's copy of a file that changed only in part (a database with a
 * few pages rewritten, a log that grew) holds mostly the bytes the previous
 * snapshot's copy holds at the same offsets.  When the copy is a reflink of
 * the environment's file those blocks are shared already; when it is not
 * (the store on another filesystem than the environment, an SQLite database
 * in WAL mode, which the backup API writes anew) every block is new.  Here
 * the kernel's FIDEDUPERANGE makes the new copy use the old copy's blocks
 * wherever the bytes are the same: the kernel compares them itself, under
 * both files' locks, and shares nothing that differs, so a damaged or
 * changed old copy can never alter the new one's content; a later write to
 * either file copies the block first (copy-on-write).  Neither file's
 * inode, size, times or link count changes.
 *
 * Only what is not shared yet is read (FIEMAP), and compared block by block
 * first, so that one differing block does not keep the rest of a range
 * from being shared.
 *
 * Ownership: nothing is kept; the caller's descriptors stay open.
 * Thread-safe.
 */
#ifndef TS_SEAL_DEDUPE_H
#define TS_SEAL_DEDUPE_H

#include <stdint.h>

/* What the store's filesystem can do, as found so far (shared by the
 * threads of one seal: read and written atomically). */
enum {
	TS_DEDUPE_UNKNOWN = 0,
	TS_DEDUPE_YES,
	TS_DEDUPE_NO,          /* no FIDEDUPERANGE here: nothing more is tried */
};

/* Make the blocks of newfd that hold, at the same offset, the same bytes
 * as oldfd's use oldfd's blocks; both open for reading, regular files of
 * one filesystem.  Returns how many bytes were shared; *support (one of the
 * above) is set to TS_DEDUPE_NO when the filesystem cannot, and then
 * nothing more is read. */
uint64_t ts_dedupe_blocks(int oldfd, int newfd, int *support);

#endif
