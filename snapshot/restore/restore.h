/* restore.h - put a snapshot back in place of a Trac environment
 * (doc/contract.md section 6).
 *
 * SNAPSHOT is one snapshot as the mount shows it (MNT/NAME), as the store
 * keeps it (STORE/NAME/tree), or a NAME in a store (--store, else ENV's
 * default store); ENV is the live environment, which must exist.  Steps,
 * each failure leaving ENV as it was:
 *   0. a journal of an earlier restore of ENV that was interrupted is
 *      finished or rolled back (restore_journal.c);
 *   1. both are checked as Trac environments; the snapshot must hold its
 *      database (a --no-database snapshot is refused).  The snapshot's
 *      manifest is found through its store, which must be root's (a mount's
 *      store comes from its root-run daemon, restore_find.c): no manifest,
 *      unsealed, discarded after a restart, or of another environment is
 *      refused unless force;
 *   2. busy check: no process may have a file of ENV, or the SQLite database
 *      (also outside ENV, journals included), open; PostgreSQL: no other
 *      session on the database and no tables in the schema; force skips it;
 *   3. where restore writes is checked: ENV's parent and, for an external
 *      SQLite database, its directory (the path the manifest recorded, else
 *      trac.ini's taken lexically) are opened from / one component at a
 *      time, no symlink followed, each directory owned by root or by the
 *      snapshot's owner (of ENV, of the database file) and not writable by
 *      group or others unless root's and sticky; ENV itself a directory
 *      of the same owner as the snapshot's top; otherwise a one-line
 *      refusal naming the directory, nothing changed.  Every later step
 *      goes through those descriptors;
 *   4. copy into ENV.restore-tmp-<pid> beside ENV (modes, owners, mtimes,
 *      symlinks, xattrs), a directory only root can enter (0700) until just
 *      before the swap; every file's content is hashed as it lands in the
 *      copy and, with the tree's entries, compared with the manifest
 *      (restore_check.c): a difference removes the copy and refuses unless
 *      force; the database put back into the journal mode (WAL) the live
 *      one was in, by descriptor; syncfs;
 *   5. the state of ENV is kept as an ordinary snapshot
 *      pre-restore-<YYYY-MM-DDTHHMMSS> of the store, taken and sealed the
 *      normal way (restore_keep.c); when ENV cannot be snapshotted restore
 *      refuses, unless force (then nothing is kept);
 *   6. busy check again (as step 2), then the copy's top gets the
 *      snapshot's owner and mode and is exchanged with ENV in one
 *      renameat2(RENAME_EXCHANGE): at every instant ENV is one tree or the
 *      other.  An external SQLite database is exchanged the same way in its
 *      directory.  The old tree is then removed through its descriptor;
 *   7. PostgreSQL: the snapshot's own dump (never ENV's copy), refused if it
 *      holds a psql meta-command (pgdump_check.h), is loaded from its
 *      descriptor in one transaction (after dropping what the schema holds,
 *      and checking Trac's tables are there at the end); when it fails,
 *      step 6 is undone by a second exchange.
 *   8. the restored state is recorded as the sealed snapshot
 *      restored-<YYYY-MM-DDTHHMMSS> of the snapshot's store, when restore
 *      vouched for every entry (in a store, sealed, of ENV, nothing
 *      damaged): the snapshot's entries with the source identity of each
 *      file step 4 wrote (taken before the exchange, while only root could
 *      reach the copy), its files hard links to the snapshot's stored
 *      copies (restore_record.c).  The next snapshot shares with it every
 *      file not changed since.  Its failure never fails the restore: one
 *      warning line, nothing of it left in the store.
 * Open directories (a shell's cwd, the snapshot daemon's handle on ENV) do
 * not count as busy: the exchange does not disturb them.
 */
#ifndef TS_RESTORE_H
#define TS_RESTORE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/err.h"
#include "base/progress.h"

/* The restored state is recorded as the snapshot restored-<time> (step 8). */
#define TS_RESTORE_RECORD_PREFIX "restored-"

/* The extended attribute a tracsnap mount's root answers to root with the
 * path of its store (fs/fs_xattr.c); restore finds MNT/NAME's manifest by
 * it. */
#define TS_MOUNT_STORE_XATTR "trusted.tracsnap.store"

/* What ts_restore is told. */
typedef struct ts_restore_opts {
	bool force;                       /* see doc/contract.md section 6 */
	const char *store;                /* --store: SNAPSHOT is a NAME there, and
	                                   * the pre-restore snapshot goes there; or NULL */
	int lock_timeout_s;               /* for the pre-restore snapshot; 0: default */
	const ts_progress_sink *progress; /* may be NULL */
} ts_restore_opts;

typedef struct ts_restore_out {
	char env[PATH_MAX];        /* ENV, resolved */
	char name[PATH_MAX];       /* the snapshot restored, as messages name it */
	char kept[PATH_MAX];       /* the pre-restore snapshot's name, "" when none */
	char kept_store[PATH_MAX]; /* ... its store */
	char not_kept[TS_ERR_MSG_MAX];  /* with force: why nothing was kept, or "" */
	char recorded[PATH_MAX];   /* the restored state's snapshot (in the snapshot's
	                            * store), "" when none was recorded */
	char recovered[TS_ERR_MSG_MAX]; /* "rolled back/finished an interrupted
	                                 * restore of ENV: ..." or "" */
	char damaged[TS_ERR_MSG_MAX];   /* with force: the first damage found, or "" */
	uint64_t ndamaged;
	uint64_t files;            /* regular files and symlinks copied */
	uint64_t bytes;            /* bytes of content copied */
} ts_restore_out;

/* out may be NULL.  Errors: TS_ERR_NOTENV/CONFIG (either side is no Trac
 * environment), TS_ERR_PERM (a directory restore would write in fails the
 * checks of step 3, or was replaced meanwhile), TS_ERR_CORRUPT (the dump
 * holds a psql meta-command; the snapshot differs from its manifest:
 * "NAME/PATH: damaged (...)"; no manifest; discarded after a restart),
 * TS_ERR_BUSY ("<ENV>: in use by pid 123 (tracd), ...; stop Trac first or
 * use --force"; not sealed yet; another restore of ENV running),
 * TS_ERR_EXISTS (PostgreSQL schema not empty), TS_ERR_USAGE (a snapshot of
 * another environment),
 * TS_ERR_IO/NOSPC/PERM while copying, TS_ERR_DB from the load. */
ts_err_code ts_restore(const char *snapshot, const char *env_path, const ts_restore_opts *o,
                       ts_restore_out *out, ts_err *e);

/* The processes that have a non-directory file below root, or the file db
 * (or its -wal/-shm/-journal), open: "pid 123 (tracd), pid 456 (python3)"
 * into who (empty when none; truncated to len).  db may be NULL.  Returns
 * how many. */
int ts_restore_users(const char *root, const char *db, char *who, size_t len);

#endif
