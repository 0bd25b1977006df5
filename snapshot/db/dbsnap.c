/* dbsnap.c - backend selection and shared bookkeeping (see dbsnap.h). */
#include "db/dbsnap.h"

#include <stdlib.h>

ts_err_code ts_dbsnap_open(const ts_env *env, int timeout_s, ts_dbsnap **out, ts_err *e)
{
	ts_err_code rc;
	ts_dbsnap *d = calloc(1, sizeof *d);

	*out = NULL;
	if (!d)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	d->env = env;
	d->timeout_s = timeout_s;
	switch (env->db.kind) {
	case TS_DB_SQLITE:
		rc = ts_dbsnap_sqlite_open(d, e);
		break;
	case TS_DB_POSTGRES:
		rc = ts_dbsnap_pg_open(d, e);
		break;
	default:
		rc = ts_env_check_supported(env, e);
		if (rc == TS_OK)
			rc = ts_err_set(e, TS_ERR_UNSUPPORTED, "%s: [trac] database: no backend", env->ini_path);
		break;
	}
	if (rc != TS_OK) {
		free(d);
		return rc;
	}
	*out = d;
	return TS_OK;
}

const char *ts_dbsnap_tree_rel(const ts_env *env)
{
	switch (env->db.kind) {
	case TS_DB_SQLITE:
		return env->db_rel;
	case TS_DB_POSTGRES:
		return TS_DBSNAP_PG_DUMP_REL;
	default:
		return NULL;
	}
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
