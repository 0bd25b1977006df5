/* dbsnap.h - how a database backend holds Trac's writers and captures the
 * database for one snapshot instant.  SQLite and PostgreSQL differ only here.
 *
 * Sequence, driven by snap.c:
 *   d = ts_dbsnap_open(env, timeout)    connect; nothing held yet
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
#include "env.h"
#include "err.h"

typedef struct ts_dbsnap ts_dbsnap;

typedef struct ts_dbsnap_ops {
	const char *name;
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

/* Backend constructors. */
ts_err_code ts_dbsnap_sqlite_open(ts_dbsnap *d, ts_err *e);

#endif
