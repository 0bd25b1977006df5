/* dbsnap.h - the one interface to the database backends: SQLite and
 * PostgreSQL differ only behind it.
 *
 * A backend is a ts_db_backend table, chosen once from the environment's
 * [trac] database kind by dbsnap.c, the only place outside the backends
 * that looks at the kind.  Adding a backend is a folder under snapshot/db/
 * with its table and one line in dbsnap.c's selection table.
 *
 * Without a connection (the wrappers below take the environment):
 *   ts_db_excluded(env, rel)    an environment file never copied: the
 *                               database and its journals, or the place the
 *                               capture writes
 *   ts_db_place(...)            where the copy goes in a snapshot tree, its
 *                               directory made there
 *   ts_db_can_precopy(env)      the database can be copied ahead, offline
 *                               (the stage's db.precopy, take/stage.h)
 *
 * Taking a snapshot, driven by snap.c:
 *   d = ts_dbsnap_open(env, timeout)    connect; nothing held yet
 *   d->ops->precopy(d, treefd, rel)     optional, while Trac runs
 *   d->ops->lock(d)                     Trac's writers wait from here
 *        ... snap.c freezes the files ...
 *   d->ops->capture(d, treefd, rel)     writes the database copy at rel; lets
 *                                       the writers go as early as it can
 *   ts_dbsnap_close(d)                  releases anything still held; always
 *
 * Restoring, driven by restore.c (doc/contract.md section 6): see
 * ts_db_restore below.
 *
 * Ownership: ts_dbsnap_open() returns a handle that ts_dbsnap_close() frees;
 * ts_db_restore_open() fills a caller-owned ts_db_restore that
 * ts_db_restore_close() releases.  Backend state lives in impl.
 */
#ifndef TS_DBSNAP_H
#define TS_DBSNAP_H

#include <limits.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <time.h>
#include "env/env.h"
#include "base/err.h"

typedef struct ts_dbsnap ts_dbsnap;
typedef struct ts_db_restore ts_db_restore;

/* Where a PostgreSQL environment's dump goes in a snapshot (doc/contract.md
 * section 3): plain SQL, mode 0600, loadable with `psql -U USER -d DATABASE
 * -f FILE`. */
#define TS_DBSNAP_PG_DUMP_REL "db/postgres-db-backup.sql"

/* Where a database that lives outside the environment goes in a snapshot
 * (design.md, "Snapshot names"): this directory at the tree's top, holding
 * the file under its own name. */
#define TS_DBSNAP_EXTERNAL_DIR "tracsnap-external-db"

typedef struct ts_db_backend {
	const char *name;

	/* --- no connection --- */
	/* Is rel (relative to the environment's root) a file no snapshot
	 * copies from the environment? */
	bool (*excluded)(const ts_env *env, const char *rel);
	/* Where the database copy goes in the tree open on treefd (envfd: the
	 * environment's root).  *rel (malloc'd) is that place; *dir the
	 * directory made for it in the tree (static), or NULL when it was
	 * there already.  A place the environment already uses for something
	 * else is refused (TS_ERR_CONFIG). */
	ts_err_code (*place)(const ts_env *env, int treefd, int envfd, char **rel, const char **dir,
	                     ts_err *e);
	/* Optional (NULL: never): the database file's absolute path when it
	 * lives outside the environment, else NULL.  The manifest records it
	 * so that restore can put the copy back there. */
	const char *(*external)(const ts_env *env);

	/* --- taking a snapshot (ts_dbsnap) --- */
	/* Connect and check; fills d->impl. */
	ts_err_code (*open)(ts_dbsnap *d, ts_err *e);
	/* Optional (NULL: none): copy the database to rel before the lock (no
	 * consistency needed), or bring a copy already there up to date (the
	 * stage's, take/stage.h); capture then only brings that copy up to
	 * date.  Needs no lock, so the daemon's stage may run it offline. */
	ts_err_code (*precopy)(ts_dbsnap *d, int treefd, const char *rel, ts_err *e);
	ts_err_code (*lock)(ts_dbsnap *d, ts_err *e);
	ts_err_code (*capture)(ts_dbsnap *d, int treefd, const char *rel, ts_err *e);
	void (*release)(ts_dbsnap *d);     /* idempotent */
	void (*free)(ts_dbsnap *d);

	/* --- restore (ts_db_restore, in the order restore.c calls them) --- */
	/* Check the snapshot's copy (it is there, and sound) and fill r's
	 * public fields; nothing changed anywhere. */
	ts_err_code (*restore_open)(ts_db_restore *r, ts_err *e);
	/* Optional: refuse while the database is in use beyond the processes
	 * restore.c finds by r->busy_file (TS_ERR_BUSY), or not empty
	 * (TS_ERR_EXISTS); force skips both. */
	ts_err_code (*restore_check)(ts_db_restore *r, bool force, ts_err *e);
	/* Optional: make the restored copy at dirfd/rel (desc names dirfd)
	 * right for the live database, found through envfd (ENV) or extdirfd
	 * (r->external's directory, -1 when none).  dirfd is a directory only
	 * root can enter. */
	ts_err_code (*restore_fix)(ts_db_restore *r, int envfd, int extdirfd, int dirfd, const char *rel,
	                           const char *desc, ts_err *e);
	/* Optional: load the database from the snapshot's copy, after the
	 * files are in place; all or nothing. */
	ts_err_code (*restore_load)(ts_db_restore *r, ts_err *e);
	/* Optional: release r->impl. */
	void (*restore_close)(ts_db_restore *r);
} ts_db_backend;

/* The backend for env's database, or NULL when this build has none. */
const ts_db_backend *ts_db_backend_of(const ts_env *env);

/* The wrappers for the connection-less operations (see the top); an
 * environment without a backend excludes nothing, has no place
 * (TS_ERR_UNSUPPORTED) and no pre-copy. */
bool ts_db_excluded(const ts_env *env, const char *rel);
ts_err_code ts_db_place(const ts_env *env, int treefd, int envfd, char **rel, const char **dir,
                        ts_err *e);
bool ts_db_can_precopy(const ts_env *env);
const char *ts_db_external(const ts_env *env);

/* SQLite's journal tap (db/sqlite/sqlite_tap.c), which lets a pass over the
 * database's copy read only what Trac wrote since the last: by default it
 * lives from a take's pre-copy to the end of that take.  keep: it outlives
 * every handle, from the first pre-copy on, so that a pre-copy made long
 * after the last (the daemon's stage, then its snapshots) reads little
 * too; !keep: it ends now unless a handle still uses it.  The daemon keeps
 * it for its life. */
void ts_db_tap_keep(bool keep);

/* ------------------------------------------------------ taking a snapshot */

struct ts_dbsnap {
	const ts_db_backend *ops;
	const ts_env *env;          /* borrowed */
	int timeout_s;
	struct timespec locked_at;  /* CLOCK_MONOTONIC, when the writers' lock was taken */
	struct timespec released_at;/* when it was let go */
	bool held;
	/* Set by the caller, under the lock, before capture: nothing was
	 * written to the database file since before the pre-copy read it
	 * (the caller's watch says so), so the pre-copy is the file.  capture
	 * leaves it true only if it took the pre-copy as it was. */
	bool precopy_current;
	void *impl;                 /* the backend's */
};

/* Refuses an environment without a backend (TS_ERR_UNSUPPORTED). */
ts_err_code ts_dbsnap_open(const ts_env *env, int timeout_s, ts_dbsnap **out, ts_err *e);
void ts_dbsnap_close(ts_dbsnap *d);

/* Milliseconds the writers were held (until now if still held). */
double ts_dbsnap_hold_ms(const ts_dbsnap *d);

/* ---------------------------------------------------------------- restore
 *
 * restore.c does the file work for every backend alike: it copies the
 * snapshot into ENV (leaving out r->skip), and when r->external is set it
 * puts the file the snapshot holds at r->copy_rel back at r->external,
 * through a directory it checked (trust.h), swapping and undoing as it does
 * for ENV.  The backend says what and where, and does what only it can:
 * check, fix, load. */
struct ts_db_restore {
	const ts_db_backend *ops;
	const ts_env *snap;          /* the snapshot, as an environment (borrowed) */
	const ts_env *live;          /* ENV (borrowed) */
	int snapfd;                  /* the snapshot's top (borrowed) */
	const char *recorded;        /* the external database's path the snapshot's
	                              * manifest recorded, or NULL (borrowed; for
	                              * restore_open only) */
	/* Filled by restore_open: */
	char copy_rel[PATH_MAX];     /* the database copy in the snapshot */
	struct stat copy_st;         /* ... its stat */
	char external[PATH_MAX];     /* where it goes back outside ENV (absolute,
	                              * lexically normal, not resolved), or "" */
	const char *skip;            /* a top-level entry of the snapshot not copied
	                              * into ENV, or NULL */
	const char *busy_file;       /* the live database file: a process with it
	                              * (or a journal of it) open makes ENV busy; or NULL */
	void *impl;                  /* the backend's */
};

/* Choose the backend by the snapshot's database and run its restore_open.
 * A database without a backend: TS_ERR_UNSUPPORTED ("<ini>: cannot restore
 * this database" when the environment check lets it pass).  On failure r
 * holds nothing to release; on success ts_db_restore_close() releases it. */
ts_err_code ts_db_restore_open(ts_db_restore *r, const ts_env *snap, const ts_env *live, int snapfd,
                               const char *recorded, ts_err *e);
/* The optional steps: TS_OK where the backend has none. */
ts_err_code ts_db_restore_check(ts_db_restore *r, bool force, ts_err *e);
ts_err_code ts_db_restore_fix(ts_db_restore *r, int envfd, int extdirfd, int dirfd, const char *rel,
                              const char *desc, ts_err *e);
ts_err_code ts_db_restore_load(ts_db_restore *r, ts_err *e);
void ts_db_restore_close(ts_db_restore *r);

/* For the backends' restore_open: the snapshot holds its copy at rel,
 * readable; its stat into r->copy_st.  Else "<snapshot>/<rel>: the snapshot
 * holds no database (taken with --no-database?)". */
ts_err_code ts_db_restore_has_copy(ts_db_restore *r, const char *rel, ts_err *e);

#endif
