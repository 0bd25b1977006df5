/* sqlite_tree.c - where an SQLite database is in a snapshot's tree: its own
 * place when it lies inside the environment, else TS_DBSNAP_EXTERNAL_DIR
 * (dbsnap.h).  The walk never copies the database or its journals: the
 * capture writes the copy (dbsnap_sqlite.c). */
#include "db/sqlite/sqlite_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "db/journal.h"

bool sqlite_excluded(const ts_env *env, const char *rel)
{
	return ts_journal_excluded(rel, env->db_rel);
}

const char *sqlite_external_path(const ts_env *env)
{
	return env->db_rel ? NULL : env->db_abs;
}

ts_err_code sqlite_place(const ts_env *env, int treefd, int envfd, char **rel, const char **dir,
                         ts_err *e)
{
	const char *base;

	(void)envfd;
	*rel = NULL;
	*dir = NULL;
	if (env->db_rel) {
		*rel = strdup(env->db_rel);
		return *rel ? TS_OK : ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	}
	base = strrchr(env->db_abs, '/');
	base = base ? base + 1 : env->db_abs;
	if (mkdirat(treefd, TS_DBSNAP_EXTERNAL_DIR, 0755) < 0) {
		if (errno == EEXIST)
			return ts_err_set(e, TS_ERR_CONFIG, "%s/%s: exists in the environment; it is where "
			                  "tracsnap puts the external database %s", env->root,
			                  TS_DBSNAP_EXTERNAL_DIR, env->db_abs);
		return ts_err_sys(e, errno, "%s: cannot create in the store", TS_DBSNAP_EXTERNAL_DIR);
	}
	*dir = TS_DBSNAP_EXTERNAL_DIR;
	if (asprintf(rel, "%s/%s", TS_DBSNAP_EXTERNAL_DIR, base) < 0) {
		*rel = NULL;
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	}
	return TS_OK;
}
