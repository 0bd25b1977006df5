/* verify_inodes.h - what one verify run remembers of each store inode it
 * hashed, so that an inode shared by several snapshots (hard links in the
 * store, doc/contract.md section 5) is read once per run, not once per
 * snapshot.  Private to snapshot/store (verify.c, verify_repair.c).
 *
 * A record holds the inode (st_dev, st_ino), its stat when it was hashed
 * (type and mode, owner, link count, size, mtime and ctime), and the SHA-256
 * of its content; no path.  A lookup gives the hash back only while the
 * inode's stat still shows that size, mtime and ctime: a write, a
 * truncation or a utimens since moves the ctime, so a changed inode is
 * hashed again.
 *
 * Memory: one 96-byte slot per recorded inode in an open-addressed table
 * kept at most 3/4 full (doubling when it grows): between about 128 and
 * 256 bytes per inode.  The walk records only inodes with more than one
 * link (st_nlink > 1): a file with one name cannot be met twice in a run,
 * so a store whose snapshots share nothing costs nothing here.
 *
 * Ownership: the caller owns the struct (TS_VERIFY_INODES_INIT or zeroed)
 * and releases its table with ts_verify_inodes_free.  Not thread-safe.
 */
#ifndef TS_VERIFY_INODES_H
#define TS_VERIFY_INODES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "base/err.h"

typedef struct ts_verify_inode {
	uint64_t dev, ino;          /* ino 0 and dev 0: an empty slot */
	int64_t size;
	int64_t mtime_sec, ctime_sec;
	uint32_t mtime_nsec, ctime_nsec;
	uint32_t mode, uid, gid, nlink;
	unsigned char sha256[32];
} ts_verify_inode;

typedef struct ts_verify_inodes {
	ts_verify_inode *slots;     /* owned; cap slots, NULL while empty */
	size_t cap, n;
} ts_verify_inodes;
#define TS_VERIFY_INODES_INIT { .slots = NULL }

void ts_verify_inodes_free(ts_verify_inodes *t);

/* The hash remembered for st's inode (st_dev, st_ino) when st's size, mtime
 * and ctime are those recorded with it; NULL otherwise.  The pointer is
 * valid until the next put. */
const unsigned char *ts_verify_inodes_get(const ts_verify_inodes *t, const struct stat *st);

/* The stat recorded with inode (dev, ino) by the last put: st_dev, st_ino,
 * st_mode, st_uid, st_gid, st_nlink, st_size, st_mtim and st_ctim set, the
 * rest zero.  False when the inode has no record. */
bool ts_verify_inodes_stat(const ts_verify_inodes *t, dev_t dev, ino_t ino, struct stat *st);

/* Remember (or replace) sha256 as the content of st's inode as st shows it.
 * TS_ERR_NOMEM when the table cannot grow. */
ts_err_code ts_verify_inodes_put(ts_verify_inodes *t, const struct stat *st,
                                 const unsigned char sha256[32], ts_err *e);

#endif
