/* dbsnap.c - backend selection and shared bookkeeping (see dbsnap.h).  The
 * only place outside the backends that looks at the database kind. */
#include "db/dbsnap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The backends (snapshot/db/<name>/). */
extern const ts_db_backend ts_db_sqlite;
extern const ts_db_backend ts_db_postgres;

static const struct {
	ts_db_kind kind;
	const ts_db_backend *backend;
} db_backends[] = {
	{ TS_DB_SQLITE, &ts_db_sqlite },
	{ TS_DB_POSTGRES, &ts_db_postgres },
};

const ts_db_backend *ts_db_backend_of(const ts_env *env)
{
	for (size_t i = 0; i < sizeof db_backends / sizeof db_backends[0]; i++)
		if (db_backends[i].kind == env->db.kind)
			return db_backends[i].backend;
	return NULL;
}

/* No backend: the environment check's message ("MySQL is not supported"),
 * else what names the missing piece. */
static ts_err_code db_unsupported(const ts_env *env, const char *what, ts_err *e)
{
	ts_err_code rc = ts_env_check_supported(env, e);
	if (rc == TS_OK)
		rc = ts_err_set(e, TS_ERR_UNSUPPORTED, "%s: %s", env->ini_path, what);
	return rc;
}

bool ts_db_excluded(const ts_env *env, const char *rel)
{
	const ts_db_backend *b = ts_db_backend_of(env);
	return b && b->excluded(env, rel);
}

ts_err_code ts_db_place(const ts_env *env, int treefd, int envfd, char **rel, const char **dir,
                        ts_err *e)
{
	const ts_db_backend *b = ts_db_backend_of(env);

	*rel = NULL;
	*dir = NULL;
	if (!b)
		return db_unsupported(env, "[trac] database: no backend", e);
	return b->place(env, treefd, envfd, rel, dir, e);
}

bool ts_db_can_precopy(const ts_env *env)
{
	const ts_db_backend *b = ts_db_backend_of(env);
	return b && b->precopy;
}

const char *ts_db_external(const ts_env *env)
{
	const ts_db_backend *b = ts_db_backend_of(env);
	return b && b->external ? b->external(env) : NULL;
}

/* ------------------------------------------------------ taking a snapshot */

ts_err_code ts_dbsnap_open(const ts_env *env, int timeout_s, ts_dbsnap **out, ts_err *e)
{
	ts_err_code rc;
	const ts_db_backend *b = ts_db_backend_of(env);
	ts_dbsnap *d;

	*out = NULL;
	if (!b)
		return db_unsupported(env, "[trac] database: no backend", e);
	d = calloc(1, sizeof *d);
	if (!d)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	d->ops = b;
	d->env = env;
	d->timeout_s = timeout_s;
	rc = b->open(d, e);
	if (rc != TS_OK) {
		free(d);
		return rc;
	}
	*out = d;
	return TS_OK;
}

void ts_dbsnap_close(ts_dbsnap *d)
{
	if (!d)
		return;
	d->ops->release(d);
	d->ops->free(d);
	free(d);
}

double ts_dbsnap_hold_ms(const ts_dbsnap *d)
{
	struct timespec end = d->released_at;
	if (d->held)
		clock_gettime(CLOCK_MONOTONIC, &end);
	if (!d->locked_at.tv_sec && !d->locked_at.tv_nsec)
		return 0;
	return (double)(end.tv_sec - d->locked_at.tv_sec) * 1e3 +
	       (double)(end.tv_nsec - d->locked_at.tv_nsec) / 1e6;
}

/* ---------------------------------------------------------------- restore */

ts_err_code ts_db_restore_open(ts_db_restore *r, const ts_env *snap, const ts_env *live, int snapfd,
                               const char *recorded, ts_err *e)
{
	const ts_db_backend *b = ts_db_backend_of(snap);
	ts_err_code rc;

	memset(r, 0, sizeof *r);
	if (!b)
		return db_unsupported(snap, "cannot restore this database", e);
	r->ops = b;
	r->snap = snap;
	r->live = live;
	r->snapfd = snapfd;
	r->recorded = recorded;
	rc = b->restore_open(r, e);
	if (rc != TS_OK) {
		ts_db_restore_close(r);
		memset(r, 0, sizeof *r);
	}
	return rc;
}

ts_err_code ts_db_restore_check(ts_db_restore *r, bool force, ts_err *e)
{
	return r->ops->restore_check ? r->ops->restore_check(r, force, e) : TS_OK;
}

ts_err_code ts_db_restore_fix(ts_db_restore *r, int envfd, int extdirfd, int dirfd, const char *rel,
                              const char *desc, ts_err *e)
{
	return r->ops->restore_fix ? r->ops->restore_fix(r, envfd, extdirfd, dirfd, rel, desc, e) : TS_OK;
}

ts_err_code ts_db_restore_load(ts_db_restore *r, ts_err *e)
{
	return r->ops->restore_load ? r->ops->restore_load(r, e) : TS_OK;
}

void ts_db_restore_close(ts_db_restore *r)
{
	if (r->ops && r->ops->restore_close)
		r->ops->restore_close(r);
	r->impl = NULL;
}

ts_err_code ts_db_restore_has_copy(ts_db_restore *r, const char *rel, ts_err *e)
{
	if ((size_t)snprintf(r->copy_rel, sizeof r->copy_rel, "%s", rel) >= sizeof r->copy_rel)
		return ts_err_set(e, TS_ERR_IO, "%s/%s: path too long", r->snap->root, rel);
	if (faccessat(r->snapfd, rel, R_OK, 0) < 0 || fstatat(r->snapfd, rel, &r->copy_st, 0) < 0)
		return ts_err_sys(e, errno, "%s/%s: the snapshot holds no database (taken with --no-database?)",
		                  r->snap->root, rel);
	return TS_OK;
}
