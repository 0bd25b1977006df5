/* dbsnap.h - how a database backend holds Trac's writers and captures the
 * database for one snapshot instant.  SQLite and PostgreSQL differ only here.
 *
 * Sequence, driven by snap.c:
 *   d = ts_dbsnap_open(env, timeout)    connect; nothing held yet
 *   d->ops->precopy(d, treefd, rel)     optional, while Trac runs
 *   d->ops->lock(d)                     Trac's writers wait from here
 *        ... snap.c freezes the files ...
 *   d->ops->capture(d, treefd, rel)     writes the database copy at rel; lets
 *                                       the writers go as early as it can
 *   ts_dbsnap_close(d)                  releases anything still held; always
 *
 * Ownership: ts_dbsnap_open() returns a handle that ts_dbsnap_close() frees.
 */
#ifndef TS_DBSNAP_H
#define TS_DBSNAP_H

#include <stdbool.h>
#include <sys/stat.h>
#include <time.h>
#include "env/env.h"
#include "base/err.h"

typedef struct ts_dbsnap ts_dbsnap;

typedef struct ts_dbsnap_ops {
	const char *name;
	/* Optional: copy the database to rel before the lock (no consistency
	 * needed), or bring a copy already there up to date (the stage's,
	 * stage.h); capture then only brings that copy up to date. */
	ts_err_code (*precopy)(ts_dbsnap *d, int treefd, const char *rel, ts_err *e);
	ts_err_code (*lock)(ts_dbsnap *d, ts_err *e);
	ts_err_code (*capture)(ts_dbsnap *d, int treefd, const char *rel, ts_err *e);
	void (*release)(ts_dbsnap *d);     /* idempotent */
	void (*free)(ts_dbsnap *d);
} ts_dbsnap_ops;

struct ts_dbsnap {
	const ts_dbsnap_ops *ops;
	const ts_env *env;          /* borrowed */
	int timeout_s;
	struct timespec locked_at;  /* CLOCK_MONOTONIC, when the writers' lock was taken */
	struct timespec released_at;/* when it was let go */
	bool held;
	struct stat db_st;          /* the database file at lock time (SQLite) */
	void *impl;
};

ts_err_code ts_dbsnap_open(const ts_env *env, int timeout_s, ts_dbsnap **out, ts_err *e);
void ts_dbsnap_close(ts_dbsnap *d);

/* Milliseconds the writers were held (until now if still held). */
double ts_dbsnap_hold_ms(const ts_dbsnap *d);

/* Where a PostgreSQL environment's dump goes in a snapshot (doc/contract.md section 3):
 * plain SQL, mode 0600, loadable with `psql -U USER -d DATABASE -f FILE`. */
#define TS_DBSNAP_PG_DUMP_REL "db/postgres-db-backup.sql"

/* The place, relative to ENV, of the database copy in a snapshot when that
 * place is inside the environment's own tree: SQLite inside ENV: db_rel;
 * PostgreSQL: TS_DBSNAP_PG_DUMP_REL; otherwise NULL.  The walk never copies
 * an environment file of that name: the capture writes it. */
const char *ts_dbsnap_tree_rel(const ts_env *env);

/* Backend constructors. */
ts_err_code ts_dbsnap_sqlite_open(ts_dbsnap *d, ts_err *e);
/* PostgreSQL through libpq (snapshot/db/pg/): connects, checks the schema and
 * its attachment table and that pg_dump can dump this server. */
ts_err_code ts_dbsnap_pg_open(ts_dbsnap *d, ts_err *e);

/* Restore (restore.c), PostgreSQL only.
 * ts_dbsnap_pg_restore_check: refuse (TS_ERR_BUSY) while other sessions use
 * the database, naming their pids, programs and addresses, and
 * (TS_ERR_EXISTS) when the schema already holds tables; force skips both.
 * ts_dbsnap_pg_load: load the dump open on dump_fd (read from offset 0; the
 * caller has checked it with ts_pgdump_check) as psql's stdin, with `psql
 * -X -v ON_ERROR_STOP=1 --single-transaction`, first dropping what the
 * schema holds (its tables and sequences; a schema other than public as a
 * whole) and last checking that Trac's tables (system with its
 * database_version, ticket, wiki, attachment) are there, all in that same
 * transaction: on failure the database is as it was.  dump_desc names the
 * dump in messages.  The password reaches psql as a password file on a
 * descriptor, never on its command line. */
ts_err_code ts_dbsnap_pg_restore_check(const ts_env *env, bool force, ts_err *e);
ts_err_code ts_dbsnap_pg_load(const ts_env *env, int dump_fd, const char *dump_desc, ts_err *e);

#endif
