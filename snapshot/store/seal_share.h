/* seal_share.h - at seal time, give back to the store what a snapshot copied
 * but did not need to (doc/contract.md section 5).
 *
 * A snapshot shares a file with the previous one when the file's stat says
 * it did not change (take/snap_put.c); everything else is copied.  Some of
 * those copies hold what the previous snapshot holds already: the database
 * copy when nothing was written to it (the capture always writes one), a
 * file whose stat changed but not its content or metadata (a chmod put
 * back, every file after `tracsnap restore`: new inodes, same bytes), and
 * files of which only a part changed.  Sealing hashes every copy anyway, so
 * it finds them for the price of a manifest lookup per copy:
 *
 *   - Same content (size and SHA-256 as the previous sealed snapshot's
 *     entry at the same path) and same metadata (type, mode, owner, mtime,
 *     extended attributes): the copy is replaced by a hard link to the
 *     previous copy, once that copy is proven to be what its manifest
 *     sealed: the inode, size, mtime, mode and owner it recorded, and its
 *     ctime as recorded, or else its content hashed again.  (Stricter than
 *     take/share_check.h, which trusts a ctime moved inside the engine's
 *     own link batches: a seal comes after the take of its snapshot, whose
 *     batch, logged at its end, covers a change made to the previous copy
 *     just before it, and which may have found that copy damaged.)  The
 *     link is made under the store's writers' lock (taken on a descriptor
 *     of its own: the sealer runs beside the daemon's writers), so that no
 *     snapshot being taken reads the manifest while its copy is replaced;
 *     it goes to a temporary name in the snapshot's directory (never in the
 *     tree the view shows) and is renamed over the copy, atomically for
 *     readers, the directory's times put back.  The links are one batch of
 *     STORE/.linklog naming the inodes they touch (linklog.h).  The
 *     manifest records the linked copy's identity.
 *   - Otherwise, on a filesystem that can (seal_dedupe.h), the copy's
 *     blocks that hold the same bytes as the previous copy's at the same
 *     offsets are shared with it; no lock, no link, nothing a reader can
 *     see.
 *
 * Sharing is only ever a saving: whatever fails (no lock within
 * SEAL_SHARE_LOCK_WAIT_S, a previous copy that does not pass, no reflinks)
 * leaves the copy as it is and the seal goes on.  The price: an identical
 * copy whose previous copy's ctime moved (the daemon's stage links every
 * file of the newest snapshot) costs hashing that previous copy once.
 *
 * Trust: everything is reached beneath the store's descriptor, which is
 * root's and checked to be (base/trust.h); manifests are read as data.
 *
 * Ownership: a ts_seal_share is the caller's, initialised by
 * ts_seal_share_init and released (the lock too) by ts_seal_share_end.
 * Used by one sealing thread (its pool's threads for the blocks).
 */
#ifndef TS_SEAL_SHARE_H
#define TS_SEAL_SHARE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/manifest.h"
#include "store/store.h"

/* Tests that kill a process at its N-th system call of a kind (strace's
 * inject, tests/mount/test_restore_safe.py) need the same calls in two
 * runs over different content: set to 1, sealing shares nothing. */
#define SEAL_SHARE_OFF_ENV "TRACSNAP_TEST_NO_SEAL_SHARE"

/* Seconds a seal waits for the writers' lock before it leaves its
 * identical copies as they are. */
#define SEAL_SHARE_LOCK_WAIT_S 10
/* Files smaller than this are not worth comparing block by block. */
#define SEAL_SHARE_BLOCKS_MIN (64u * 1024)

typedef struct ts_seal_share_cand {
	ts_manifest_entry cur;     /* the sealed snapshot's entry, hashed (path owned) */
	ts_manifest_entry prev;    /* the previous snapshot's entry at that path (path: NULL) */
	bool same;                 /* same content and metadata: a hard link will do */
	bool proven;               /* the previous copy is what its manifest sealed ... */
	struct timespec proof_ctime; /* ... as long as its ctime is still this */
	bool done;                 /* linked */
} ts_seal_share_cand;

typedef struct ts_seal_share {
	char *prev_name;           /* the previous sealed snapshot, or NULL */
	int prevfd;                /* its tree */
	ts_manifest_cursor *pc;    /* on its manifest, while candidates are found */
	const ts_manifest_entry *pe; /* pc's entry (NULL: none left) */
	bool pfailed;              /* its manifest is damaged: nothing is shared */
	ts_seal_share_cand *v;     /* in path order */
	size_t n, cap;
	int dedupe;                /* seal_dedupe.h: TS_DEDUPE_* */
	ts_store lock;             /* the store again, for the lock on a descriptor of its own */
	bool locked;
	uint64_t files_linked;     /* results (blocks: atomic) */
	uint64_t bytes_linked;
	uint64_t bytes_blocks;
} ts_seal_share;

void ts_seal_share_init(ts_seal_share *sh);

/* Before the copies of snapshot name are hashed: find the previous sealed
 * snapshot, and open its manifest to go through it beside name's (both are
 * sorted).  Never fails: without a previous snapshot or its manifest there
 * is nothing to share. */
void ts_seal_share_begin(ts_seal_share *sh, ts_store *s, const char *name);

/* me, an entry of name's manifest that was pending (copied) and is hashed
 * now, in path order: a candidate if the previous snapshot has a copy at
 * the same path (see the top).  The previous manifest is read up to me's
 * path only: only the candidates' entries are kept, not its every entry. */
void ts_seal_share_consider(ts_seal_share *sh, const ts_manifest_entry *me);

/* Every copy considered: the previous manifest is read to its end and so
 * checked whole; a damaged one drops every candidate. */
void ts_seal_share_found(ts_seal_share *sh);

/* Share blocks (seal_dedupe.h) of the candidates of kind same (and not
 * linked), on the pool's threads in the idle classes.  treefd: the sealed
 * snapshot's tree.  Stops early when *cancel (may be NULL) is set. */
void ts_seal_share_blocks(ts_seal_share *sh, int treefd, bool same, volatile sig_atomic_t *cancel);

/* Prove the previous copies of the candidates of kind same to be what
 * their manifest sealed (see the top), on the pool's threads in the idle
 * classes, without the lock: hashing may take long. */
void ts_seal_share_prove(ts_seal_share *sh, volatile sig_atomic_t *cancel);

/* Are there copies a hard link could replace?  Then take the writers'
 * lock (waiting up to SEAL_SHARE_LOCK_WAIT_S) and return true; the caller
 * links (ts_seal_share_files) and swaps the manifest holding it, then
 * unlocks. */
bool ts_seal_share_lock(ts_seal_share *sh, ts_store *s);

/* With the lock: replace each identical copy by a hard link to the
 * previous copy and record its identity in the candidate's entry (done).
 * dirfd: the snapshot's directory (name in the store), treefd its tree.
 * Syncs the store when it linked anything (the sealed manifest must not
 * outlive its links in a crash). */
void ts_seal_share_files(ts_seal_share *sh, ts_store *s, const char *name, int dirfd, int treefd);

/* Release the lock (the blocks of copies left unlinked may still be
 * shared after). */
void ts_seal_share_unlock(ts_seal_share *sh);

/* Release the lock and everything held. */
void ts_seal_share_end(ts_seal_share *sh);

/* The prefix of the temporary link names in a snapshot's directory; a
 * sealer killed between the link and the rename leaves one, named
 * "<prefix><pid>-<tid>", which the next seal of that snapshot removes. */
#define SEAL_SHARE_TMP_PREFIX "share.seal-"

#endif
