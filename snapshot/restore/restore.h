/* restore.h - put a snapshot back in place of a Trac environment
 * (doc/contract.md section 6).
 *
 * SNAPSHOT-DIR is one snapshot as the mount shows it (MNT/NAME) or as the
 * store keeps it (STORE/NAME/tree); ENV is the live environment, which must
 * exist.  Steps, each failure leaving ENV as it was:
 *   1. both are checked as Trac environments; the snapshot must hold its
 *      database (a --no-database snapshot is refused);
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
 *      before the swap; the database put back into the journal mode (WAL)
 *      the live one was in, by descriptor; syncfs;
 *   5. the copy's top gets the snapshot's owner and mode, then rename ENV ->
 *      ENV.pre-restore-<YYYYmmddTHHMMSS>, the copy -> ENV (renameat2,
 *      RENAME_NOREPLACE; the name must then hold the copy itself); an
 *      external SQLite database is swapped the same way in its directory;
 *   6. PostgreSQL: the snapshot's own dump (never ENV's copy), refused if it
 *      holds a psql meta-command (pgdump_check.h), is loaded from its
 *      descriptor in one transaction (after dropping what the schema holds,
 *      and checking Trac's tables are there at the end); when it fails,
 *      step 5 is undone.
 * Open directories (a shell's cwd, the snapshot daemon's handle on ENV) do
 * not count as busy: the renames do not disturb them.
 */
#ifndef TS_RESTORE_H
#define TS_RESTORE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/err.h"
#include "base/progress.h"

typedef struct ts_restore_out {
	char env[PATH_MAX];        /* ENV, resolved */
	char kept[PATH_MAX];       /* where the previous ENV now is */
	uint64_t files;            /* regular files and symlinks copied */
	uint64_t bytes;            /* bytes of content copied */
} ts_restore_out;

/* out and progress may be NULL.  Errors: TS_ERR_NOTENV/CONFIG (either side is no Trac
 * environment), TS_ERR_PERM (a directory restore would write in fails the
 * checks of step 3, or was replaced meanwhile), TS_ERR_CORRUPT (the dump
 * holds a psql meta-command), TS_ERR_BUSY ("<ENV>: in use by pid 123 (tracd), ...; stop
 * Trac first or use --force"), TS_ERR_EXISTS (PostgreSQL schema not
 * empty), TS_ERR_IO/NOSPC/PERM while copying, TS_ERR_DB from the load. */
ts_err_code ts_restore(const char *snapdir, const char *env_path, bool force,
                       const ts_progress_sink *progress, ts_restore_out *out, ts_err *e);

/* The processes that have a non-directory file below root, or the file db
 * (or its -wal/-shm/-journal), open: "pid 123 (tracd), pid 456 (python3)"
 * into who (empty when none; truncated to len).  db may be NULL.  Returns
 * how many. */
int ts_restore_users(const char *root, const char *db, char *who, size_t len);

#endif
