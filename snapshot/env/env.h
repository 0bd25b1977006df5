/* env.h - open and check a Trac environment directory.
 *
 * A directory is a Trac environment when VERSION's first line is
 * "Trac Environment Version 1" and conf/trac.ini has a [trac] database value.
 * The check reads only; it never changes the environment.
 *
 * Ownership: ts_env_open() fills a caller-owned struct; ts_env_close() frees
 * what it allocated.  db_text may hold a password: never print it, use
 * ts_dburi_redact().
 */
#ifndef TS_ENV_H
#define TS_ENV_H

#include <stdbool.h>
#include "env/dburi.h"
#include "base/err.h"

typedef struct ts_env {
	char *root;      /* absolute, symlinks resolved, no trailing slash */
	char *ini_path;  /* root + "/conf/trac.ini" */
	char *db_text;   /* the raw [trac] database value (secret) */
	ts_dburi db;     /* parsed db_text */
	/* SQLite only (NULL otherwise): */
	char *db_abs;    /* absolute path of the database file */
	char *db_rel;    /* path relative to root when the database lies inside
	                    the environment, else NULL (external database) */
} ts_env;

/* Check path and fill env.  Errors (all TS_ERR_NOTENV or TS_ERR_CONFIG, one
 * line naming the path):
 *   "<path>: no such directory" / "<path>: not a directory"
 *   "<path>: not a Trac environment (VERSION missing)"
 *   "<path>: not a Trac environment (VERSION does not start with 'Trac Environment Version 1')"
 *   "<path>/conf/trac.ini: missing" / "...: cannot read: Permission denied"
 *   "<path>/conf/trac.ini: no [trac] database setting"
 *   "<path>/conf/trac.ini: [trac] database: invalid format '...'"
 * ini parsing uses inih (Python configparser rules: "key = value" and
 * "key: value", ';' and '#' comment lines, continuation lines ignored). */
ts_err_code ts_env_open(const char *path, ts_env *env, ts_err *e);

/* Refuse engines this build cannot snapshot (TS_ERR_UNSUPPORTED): SQLite and
 * PostgreSQL pass; e.g. "<ini>: [trac] database: MySQL is not supported
 * (tracsnap supports SQLite and PostgreSQL)". */
ts_err_code ts_env_check_supported(const ts_env *env, ts_err *e);

void ts_env_close(ts_env *env);

/* True when path (absolute, resolved) is dir itself or lies below it. */
bool ts_path_is_under(const char *path, const char *dir);

#endif
