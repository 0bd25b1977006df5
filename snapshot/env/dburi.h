/* dburi.h - parse Trac's [trac] database value.
 *
 * Accepted forms (those Trac's own database backends accept):
 *   sqlite:db/trac.db            relative to the environment
 *   sqlite:/abs/path/trac.db     absolute
 *   sqlite:PATH?timeout=30&journal_mode=WAL&synchronous=NORMAL&cursor=...
 *   postgres://user[:password]@host[:port]/database[?schema=NAME][&host=/socket/dir]
 *   postgres://user:pw@/db?host=/var/run/postgresql     (Unix socket)
 *   mysql://...                                          (recognised, unsupported)
 * Malformed values ("sqlite:", "postgres:trac", "postgres://u@h:abc/db") are
 * refused with TS_ERR_CONFIG, as Trac refuses them ("Invalid format").
 *
 * Ownership: ts_dburi_parse() fills *out with heap strings that the caller
 * releases with ts_dburi_free().  No message ever contains the password.
 */
#ifndef TS_DBURI_H
#define TS_DBURI_H

#include "base/err.h"

typedef enum ts_db_kind {
	TS_DB_SQLITE = 1,
	TS_DB_POSTGRES,
	TS_DB_MYSQL,
} ts_db_kind;

typedef struct ts_dburi {
	ts_db_kind kind;
	/* SQLite */
	char *path;        /* as written, query removed, percent-decoded; never NULL for sqlite */
	int timeout_s;     /* ?timeout=, or 10 when absent */
	char *journal_mode;/* ?journal_mode=, or NULL */
	/* PostgreSQL (NULL when absent) */
	char *user;        /* URL-decoded */
	char *password;    /* URL-decoded; secret */
	char *host;        /* TCP host from the authority, or NULL */
	int port;          /* 0 when absent */
	char *socket_dir;  /* ?host=/dir, or NULL */
	char *dbname;
	char *schema;      /* ?schema=, default "public" */
} ts_dburi;

/* Parse text.  what names the setting in messages, e.g.
 * "/srv/trac/x/conf/trac.ini: [trac] database".  On failure *out is left
 * zeroed and e says e.g. "<what>: invalid format 'postgres:trac' (expected
 * postgres://user[:password]@host[:port]/database)" - with any password
 * replaced by "***". */
ts_err_code ts_dburi_parse(const char *text, const char *what, ts_dburi *out, ts_err *e);

void ts_dburi_free(ts_dburi *u);

/* A printable copy of text with the password replaced by "***" (malloc'd;
 * NULL on out of memory).  Use it whenever a database value is logged. */
char *ts_dburi_redact(const char *text);

#endif
