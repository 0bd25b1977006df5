/* sqlite_int.h - what the SQLite backend's files share (dbsnap.h is the
 * interface): dbsnap_sqlite.c (holding Trac's writers and capturing),
 * sqlite_update.c (the raw copy brought up to the file), sqlite_tap.c
 * (which blocks of the file were written since a point), sqlite_tree.c
 * (where the database is in a snapshot's tree) and sqlite_restore.c
 * (putting it back).  Private to snapshot/db/sqlite/.
 */
#ifndef TS_SQLITE_INT_H
#define TS_SQLITE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <xxhash.h>
#include "db/dbsnap.h"

/* The unit in which the raw copy is compared with the file, and the tap
 * says what was written (sqlite_update.c says why this size). */
#define SQLITE_BLOCK (256 * 1024)

/* sqlite_tap.c */

/* A watch on the database's directory that reads the rollback journals
 * SQLite writes before it writes the file, and so can say which blocks a
 * window of time wrote (sqlite_tap.c says how, and when it cannot).  One
 * per process, for one database at a time: sqlite_tap_get returns it
 * (made on first use; NULL when none can be had), sqlite_tap_put gives it
 * back; it ends at the last put unless the process keeps it
 * (ts_db_tap_keep, dbsnap.h). */
typedef struct sqlite_tap sqlite_tap;

/* What a window wrote.  bits is owned by the caller once returned
 * (sqlite_tap_chg_free). */
typedef struct sqlite_tap_chg {
	uint64_t ended;         /* the window that ended (0: none had begun) */
	uint64_t started;       /* the window that began */
	bool known;             /* ended's writes are all within what follows */
	const char *why;        /* !known: why not (static) */
	unsigned char *bits;    /* block k written: bit k % 8 of bits[k / 8] */
	size_t nbits;
	off_t tail;             /* every block from this byte on may be written */
} sqlite_tap_chg;

sqlite_tap *sqlite_tap_get(const char *path);
void sqlite_tap_put(sqlite_tap *t);
/* End the current window and begin the next, at once: what the window
 * wrote into *out.  in: the database file as the caller reads it (the
 * window is unknown when the watched file is another).  locked: Trac's
 * writers are held, so no journal may be open. */
void sqlite_tap_rotate(sqlite_tap *t, int in, bool locked, sqlite_tap_chg *out);
/* May the block at off have been written, by c? */
bool sqlite_tap_changed(const sqlite_tap_chg *c, off_t off);
void sqlite_tap_chg_free(sqlite_tap_chg *c);

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
	/* The tap's window begun before the pass that made them read the
	 * file (0: none): the file differs from the copy only where that
	 * window says it was written. */
	uint64_t win;
} sqlite_sums;

/* Bring the copy open on out up to the file open on in (path and rel name
 * them for messages), writing only what differs: the pages of a copy that
 * are rewritten cost most (fresh page cache, and on a filesystem with
 * reflinks new blocks: the copy may share the rest with the previous
 * snapshot's and the live file), the ones compared little.  locked: under
 * Trac's lock, on every core, using and then dropping the sums; otherwise
 * on the caller's thread, keeping new sums.  tap (NULL: none): the
 * blocks neither the sums nor the tap say are unchanged are all read. */
ts_err_code sqlite_update(int in, int out, const char *path, const char *rel, bool locked,
                          sqlite_sums *sums, sqlite_tap *tap, ts_err *e);

/* The sums of the copy open on out (named rel in messages), read whole:
 * for a copy just made without them (in the kernel), so that the pass under
 * the lock, and the next handle's before it, need not read it.  win: the
 * tap's window begun before the copy read the file (0: none). */
ts_err_code sqlite_sums_of(int out, const char *rel, uint64_t win, sqlite_sums *sums, ts_err *e);

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
