/* sqlite_int.h - what the SQLite backend's files share (dbsnap.h is the
 * interface): dbsnap_sqlite.c (holding Trac's writers and capturing),
 * sqlite_update.c (the raw copy brought up to the file), sqlite_tree.c
 * (where the database is in a snapshot's tree) and sqlite_restore.c
 * (putting it back).  Private to snapshot/db/sqlite/.
 */
#ifndef TS_SQLITE_INT_H
#define TS_SQLITE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <xxhash.h>
#include "db/dbsnap.h"

/* sqlite_update.c */

/* A hash of each block of the copy, as the pass before the lock left it:
 * the pass under the lock reads only the file where they still match.
 * Owned by the open database's state (dbsnap_sqlite.c); h is freed by
 * sqlite_sums_drop.  seed is set once, where the state is made. */
typedef struct sqlite_sums {
	XXH64_hash_t seed;
	XXH128_hash_t *h;   /* n blocks, or NULL: none kept */
	size_t n;
	off_t size;         /* the copy they describe: its size, device and inode */
	dev_t dev;
	ino_t ino;
} sqlite_sums;

/* Bring the copy open on out up to the file open on in (path and rel name
 * them for messages), writing only what differs: the pages of a copy that
 * are rewritten cost most (fresh page cache, and on a filesystem with
 * reflinks new blocks: the copy may share the rest with the previous
 * snapshot's and the live file), the ones compared little.  locked: under
 * Trac's lock, on every core, using and then dropping the sums; otherwise
 * on the caller's thread, keeping new sums. */
ts_err_code sqlite_update(int in, int out, const char *path, const char *rel, bool locked,
                          sqlite_sums *sums, ts_err *e);

/* The sums of the copy open on out (named rel in messages), read whole:
 * for a copy just made without them (in the kernel), so that the pass under
 * the lock, and the next handle's before it, need not read it. */
ts_err_code sqlite_sums_of(int out, const char *rel, sqlite_sums *sums, ts_err *e);

/* Forget the sums (the next pass under the lock compares every block). */
void sqlite_sums_drop(sqlite_sums *s);

/* sqlite_tree.c */
bool sqlite_excluded(const ts_env *env, const char *rel);
const char *sqlite_external_path(const ts_env *env);
ts_err_code sqlite_place(const ts_env *env, int treefd, int envfd, char **rel, const char **dir,
                         ts_err *e);

/* sqlite_restore.c */
ts_err_code sqlite_restore_open(ts_db_restore *r, ts_err *e);
ts_err_code sqlite_restore_fix(ts_db_restore *r, int envfd, int extdirfd, int dirfd, const char *rel,
                               const char *desc, ts_err *e);

#endif
