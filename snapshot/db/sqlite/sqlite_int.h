/* sqlite_int.h - what the SQLite backend's files share (dbsnap.h is the
 * interface): dbsnap_sqlite.c (holding Trac's writers and capturing),
 * sqlite_tree.c (where the database is in a snapshot's tree) and
 * sqlite_restore.c (putting it back).  Private to snapshot/db/sqlite/.
 */
#ifndef TS_SQLITE_INT_H
#define TS_SQLITE_INT_H

#include <stdbool.h>
#include "db/dbsnap.h"

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
