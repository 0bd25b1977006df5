/* pg_tree.c - where a PostgreSQL environment's dump is in a snapshot's tree
 * (TS_DBSNAP_PG_DUMP_REL, dbsnap.h).  The walk never copies an environment
 * file of that name, nor one named like its journals: the capture writes
 * it (pg_lock.c). */
#include "db/pg/pg_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db/journal.h"

bool pg_excluded(const ts_env *env, const char *rel)
{
	(void)env;
	return ts_journal_excluded(rel, TS_DBSNAP_PG_DUMP_REL);
}

/* Trac makes no db/ for PostgreSQL: when the environment has none, the
 * tree gets one, 0755 and owned like the environment's root (snap.c dates
 * it like the dump). */
ts_err_code pg_place(const ts_env *env, int treefd, int envfd, char **rel, const char **dir, ts_err *e)
{
	struct stat st, root;
	const char *db = "db";

	*rel = NULL;
	*dir = NULL;
	if (fstatat(treefd, db, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (!S_ISDIR(st.st_mode))
			return ts_err_set(e, TS_ERR_CONFIG, "%s/%s: not a directory; it is where tracsnap "
			                  "puts the PostgreSQL dump", env->root, db);
	} else if (errno != ENOENT) {
		return ts_err_sys(e, errno, "%s: cannot stat in the store", db);
	} else {
		if (mkdirat(treefd, db, 0755) < 0 || fchmodat(treefd, db, 0755, 0) < 0)
			return ts_err_sys(e, errno, "%s: cannot create in the store", db);
		if (fstat(envfd, &root) == 0 &&
		    fchownat(treefd, db, root.st_uid, root.st_gid, AT_SYMLINK_NOFOLLOW) < 0 &&
		    geteuid() == 0)
			return ts_err_sys(e, errno, "%s: cannot set the owner in the store", db);
		*dir = db;
	}
	*rel = strdup(TS_DBSNAP_PG_DUMP_REL);
	return *rel ? TS_OK : ts_err_set(e, TS_ERR_NOMEM, "out of memory");
}
