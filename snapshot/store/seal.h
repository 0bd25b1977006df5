/* seal.h - finish a snapshot after it has appeared: hash what is pending and
 * make it durable.
 *
 * A snapshot appears (ts_snap_take) as soon as its tree is complete and
 * consistent, with the content hashes of what was copied still pending and
 * its data possibly only in the page cache, like a file that `cp -a` has just
 * written.  Sealing then hashes the pending files from the store, writes
 * them back to the disk with bounded writeback (Trac's fsyncs keep going
 * first), replaces the manifest with the complete one (the marker still
 * says unsealed, so the unsealed manifest need never reach the disk), runs
 * one syncfs and removes the unsealed marker (store.h).  Until then the snapshot is whole
 * for anyone who reads it in this boot; after a crash it is discarded.
 *
 * Sealing also gives back to the store what the snapshot copied but did not
 * need to (seal_share.h): a copy identical to the previous sealed
 * snapshot's becomes a hard link to it, and on a filesystem with reflinks
 * a copy that changed in part shares its unchanged blocks with it.
 *
 * Sealing needs no store lock to hash: it only reads the tree and swaps
 * the manifest by rename, so a snapshot made, deleted or renamed meanwhile
 * does not disturb it.  Two sealers of one snapshot (the daemon's and
 * tracsnap verify's) take turns: each holds an flock(2) on the snapshot's
 * unsealed marker from start to end, and the one that waited finds the
 * marker gone and leaves the manifest as it is.  Only when it replaces a
 * copy by a hard link does it take the writers' lock, for those links and
 * the manifest that records them (seal_share.h).  So never call it holding
 * the store's lock.
 */
#ifndef TS_SEAL_H
#define TS_SEAL_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include "base/err.h"
#include "store/store.h"

typedef struct ts_seal_stats {
	uint64_t files_hashed;
	uint64_t bytes_hashed;
	uint64_t files_linked;     /* copies found unchanged, now hard links to the
	                            * previous snapshot's (seal_share.h) */
	uint64_t bytes_linked;
	uint64_t bytes_blocks;     /* bytes of other copies now sharing the previous
	                            * copy's blocks (seal_dedupe.h) */
	double ms;
} ts_seal_stats;

/* Seal snapshot NAME of the store.  TS_OK at once when it is sealed already;
 * TS_ERR_NOTFOUND when it is gone (deleted or renamed meanwhile);
 * TS_ERR_CORRUPT when a stored file no longer has its recorded size;
 * TS_ERR_CANCELLED when *cancel was set (it stays unsealed).  stats may be
 * NULL. */
ts_err_code ts_seal(ts_store *s, const char *name, volatile sig_atomic_t *cancel,
                    ts_seal_stats *stats, ts_err *e);

/* Seal every snapshot of this boot that is not sealed, oldest first.
 * Snapshots that vanish meanwhile are skipped; the first other failure is
 * returned after trying the rest.  *sealed (may be NULL) counts the sealed.
 * share false: nothing is given back to the store (seal_share.h), so that
 * a stopping daemon's backlog seals as fast as hashing and one sync allow;
 * the copies stay copies, which costs only space. */
ts_err_code ts_seal_all(ts_store *s, volatile sig_atomic_t *cancel, bool share, unsigned *sealed,
                        ts_err *e);

#endif
