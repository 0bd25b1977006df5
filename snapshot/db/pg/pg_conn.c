/* pg_conn.c - the PostgreSQL backend's connections (pg_int.h): the
 * display URI and messages that never hold the password, libpq's failures
 * as engine errors, connecting, and the schema check at open. */
#include "db/pg/pg_int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "postgres://user@host:port/db[?host=/dir]", never with the password.
 * malloc'd, NULL on out of memory. */
char *pg_display(const ts_dburi *u)
{
	char *s = NULL, port[16] = "";
	bool v6 = u->host && strchr(u->host, ':');

	if (u->port)
		snprintf(port, sizeof port, ":%d", u->port);
	if (asprintf(&s, "postgres://%s%s%s%s%s%s/%s%s%s", u->user ? u->user : "", u->user ? "@" : "",
	             v6 ? "[" : "", u->host ? u->host : "", v6 ? "]" : "", port,
	             u->dbname ? u->dbname : "", u->socket_dir ? "?host=" : "",
	             u->socket_dir ? u->socket_dir : "") < 0)
		s = NULL;
	return s;
}

/* libpq and pg_dump messages span lines ("...failed: Connection refused\n\t
 * Is the server running...?").  Make one line of s, in place: runs of white
 * space become one space, the ends are trimmed. */
void pg_one_line(char *s)
{
	char *o = s;
	bool space = false;

	for (const char *p = s; *p; p++) {
		if (*p == '\n' || *p == '\r' || *p == '\t' || *p == ' ') {
			space = o > s;
			continue;
		}
		if (space)
			*o++ = ' ';
		space = false;
		*o++ = *p;
	}
	*o = '\0';
}

/* Overwrite every occurrence of the password in s with as many '*'. No
 * server or libpq message is known to echo a password; this makes sure. */
void pg_scrub(char *s, const char *password)
{
	size_t n = password ? strlen(password) : 0;
	char *p;

	if (!n)
		return;
	while ((p = strstr(s, password)) != NULL)
		memset(p, '*', n);
}

/* -------------------------------------------------------------- errors */

/* The one translation of libpq failures into engine errors.  res may be
 * NULL (connection-level failure: the message is the connection's).
 * "<display>: <doing>: <libpq message, one line>", scrubbed. */
ts_err_code pg_fail(ts_err *e, const ts_dbsnap *d, PGconn *c, const PGresult *res,
                           const char *doing)
{
	const pg_impl *im = d->impl;
	const char *msg = res ? PQresultErrorMessage(res) : NULL;
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	char *line;
	ts_err_code code = TS_ERR_DB;

	if (!msg || !*msg)
		msg = c ? PQerrorMessage(c) : "";
	if (!msg || !*msg)
		msg = "unknown error";
	line = strdup(msg);
	if (!line)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	pg_one_line(line);
	if (state) {
		if (!strcmp(state, "55P03") || !strcmp(state, "57014") || !strcmp(state, "40P01"))
			code = TS_ERR_BUSY;       /* lock_not_available, query_canceled, deadlock */
		else if (!strcmp(state, "3D000") || !strcmp(state, "3F000") || !strcmp(state, "42P01"))
			code = TS_ERR_CONFIG;     /* no such database, schema, table */
		/* everything else, the server's full disk included, is the database's */
	}
	ts_err_set(e, code, "%s: %s: %s", im && im->display ? im->display : "postgres", doing, line);
	free(line);
	if (e)
		pg_scrub(e->msg, d->env->db.password);
	return code;
}

/* Run a command that returns no rows; TS_OK or the translated failure. */
ts_err_code pg_cmd(ts_dbsnap *d, PGconn *c, const char *sql, const char *doing, ts_err *e)
{
	PGresult *r = PQexec(c, sql);
	ts_err_code rc = TS_OK;

	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		rc = pg_fail(e, d, c, r, doing);
	PQclear(r);
	return rc;
}

/* Notices ("there is no transaction in progress") are for us only: the
 * daemon's stderr is its log. */
static void pg_notice_quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* ----------------------------------------------------------- connections */

ts_err_code pg_connect(ts_dbsnap *d, PGconn **out, ts_err *e)
{
	const ts_dburi *u = &d->env->db;
	char port[16];
	const char *keys[10], *vals[10];
	int k = 0;
	PGconn *c;
	ts_err_code rc;

	snprintf(port, sizeof port, "%d", u->port);
	keys[k] = "host";             vals[k++] = u->socket_dir ? u->socket_dir : u->host;
	keys[k] = "port";             vals[k++] = u->port ? port : NULL;
	keys[k] = "dbname";           vals[k++] = u->dbname;
	keys[k] = "user";             vals[k++] = u->user;
	keys[k] = "password";         vals[k++] = u->password;
	keys[k] = "connect_timeout";  vals[k++] = PG_CONNECT_TIMEOUT;
	keys[k] = "application_name"; vals[k++] = PG_APP_NAME;
	keys[k] = "client_encoding";  vals[k++] = "UTF8";
	keys[k] = NULL;               vals[k] = NULL;
	/* expand_dbname 0: a database name is a name, never a connection string. */
	c = PQconnectdbParams(keys, vals, 0);
	*out = c;
	if (!c)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	if (PQstatus(c) != CONNECTION_OK) {
		char doing[PATH_MAX + 64];
		snprintf(doing, sizeof doing, "cannot connect ([trac] database in %s)", d->env->ini_path);
		return pg_fail(e, d, c, NULL, doing);
	}
	PQsetNoticeProcessor(c, pg_notice_quiet, NULL);
	/* A server-wide statement or idle timeout must not cut the lock wait
	 * (lock_timeout governs it) or B's idle transaction while pg_dump runs. */
	rc = pg_cmd(d, c, "SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0",
	            "setting session timeouts", e);
	return rc;
}

/* At open: the schema exists and has an attachment table. */
ts_err_code pg_check_schema(ts_dbsnap *d, ts_err *e)
{
	pg_impl *im = d->impl;
	const char *schema = d->env->db.schema;
	const char *params[1] = { schema };
	ts_err_code rc = TS_OK;
	PGresult *r;

	r = PQexecParams(im->a,
	                 "SELECT (SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = $1), "
	                 "(SELECT c.relkind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
	                 "ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = 'attachment')",
	                 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		rc = pg_fail(e, d, im->a, r, "checking the schema");
		goto out;
	}
	if (!strcmp(PQgetvalue(r, 0, 0), "0")) {
		rc = ts_err_set(e, TS_ERR_CONFIG, "%s: schema '%s' does not exist ([trac] database in %s)",
		                im->display, schema, d->env->ini_path);
		goto out;
	}
	if (PQgetisnull(r, 0, 1)) {
		rc = ts_err_set(e, TS_ERR_CONFIG, "%s: schema '%s' has no attachment table "
		                "(not a Trac database?)", im->display, schema);
		goto out;
	}
	if (strcmp(PQgetvalue(r, 0, 1), "r") && strcmp(PQgetvalue(r, 0, 1), "p"))
		rc = ts_err_set(e, TS_ERR_CONFIG, "%s: %s.attachment is not a table", im->display, schema);
out:
	if (rc != TS_OK && e)
		pg_scrub(e->msg, d->env->db.password);
	PQclear(r);
	return rc;
}
