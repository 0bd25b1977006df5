/* pg_restore.c - the PostgreSQL backend's part of restore (dbsnap.h,
 * ts_db_restore, doc/contract.md section 6): the snapshot's own dump checked
 * before anything changes, the busy check (other sessions, tables in the
 * schema) and the load.  It reuses the connection, message and psql
 * plumbing of the other files through a handle that only has a connection:
 * no lock, no exported snapshot.
 */
#include "db/pg/pg_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/beneath.h"
#include "db/pg/pgdump_check.h"

typedef struct pg_session {
	ts_dbsnap d;
	pg_impl im;
	PGconn *c;
} pg_session;

static ts_err_code pg_session_open(pg_session *r, const ts_env *env, ts_err *e)
{
	memset(r, 0, sizeof *r);
	r->d.env = env;
	r->d.impl = &r->im;
	r->im.display = pg_display(&env->db);
	if (!r->im.display)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	return pg_connect(&r->d, &r->c, e);
}

static void pg_session_close(pg_session *r)
{
	PQfinish(r->c);
	r->c = NULL;
	free(r->im.display);
	r->im.display = NULL;
}

/* One query with text parameters that must return rows. */
static PGresult *pg_session_query(pg_session *r, const char *sql, int n, const char *const *params,
                                  const char *doing, ts_err *e)
{
	PGresult *res = PQexecParams(r->c, sql, n, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		pg_fail(e, &r->d, r->c, res, doing);
		PQclear(res);
		return NULL;
	}
	return res;
}

/* Other sessions on the database; "pid 12 (psql from 10.0.0.1), ..." in
 * who (truncated to len), the count returned (-1 on failure). */
static int pg_busy_sessions(pg_session *r, char *who, size_t len, ts_err *e)
{
	PGresult *res = pg_session_query(r,
	        "SELECT pid, coalesce(nullif(application_name, ''), backend_type, '?'), "
	        "coalesce(host(client_addr), 'local') FROM pg_catalog.pg_stat_activity "
	        "WHERE datname = current_database() AND pid <> pg_catalog.pg_backend_pid() ORDER BY pid",
	        0, NULL, "listing the sessions on the database", e);
	int n;
	size_t off = 0;

	who[0] = '\0';
	if (!res)
		return -1;
	n = PQntuples(res);
	for (int i = 0; i < n && off < len; i++) {
		int w = snprintf(who + off, len - off, "%spid %s (%s from %s)", i ? ", " : "",
		                 PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));
		if (w < 0)
			break;
		off += (size_t)w;
	}
	PQclear(res);
	return n;
}

/* The relations of the schema that the dump would collide with (tables,
 * views, sequences), as one quoted, comma-separated list per kind. */
static ts_err_code pg_schema_relations(pg_session *r, char **tables, char **seqs, int *ntables,
                                        ts_err *e)
{
	const char *params[1] = { r->d.env->db.schema };
	PGresult *res = pg_session_query(r,
	        "SELECT c.relkind IN ('S'), pg_catalog.quote_ident(n.nspname) || '.' || "
	        "pg_catalog.quote_ident(c.relname) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
	        "ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
	        "ORDER BY 1, 2",
	        1, params, "listing the tables of the schema", e);
	size_t tl = 1, sl = 1;
	ts_err_code rc = TS_OK;

	*tables = *seqs = NULL;
	*ntables = 0;
	if (!res)
		return e ? e->code : TS_ERR_DB;
	for (int i = 0; i < PQntuples(res); i++) {
		bool seq = PQgetvalue(res, i, 0)[0] == 't';
		*(seq ? &sl : &tl) += strlen(PQgetvalue(res, i, 1)) + 2;
		if (!seq)
			(*ntables)++;
	}
	*tables = calloc(1, tl);
	*seqs = calloc(1, sl);
	if (!*tables || !*seqs) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		char *dst = PQgetvalue(res, i, 0)[0] == 't' ? *seqs : *tables;
		if (*dst)
			strcat(dst, ", ");
		strcat(dst, PQgetvalue(res, i, 1));
	}
out:
	PQclear(res);
	if (rc != TS_OK) {
		free(*tables);
		free(*seqs);
		*tables = *seqs = NULL;
	}
	return rc;
}

/* Refuse (TS_ERR_BUSY) while other sessions use the database, naming
 * their pids, programs and addresses, and (TS_ERR_EXISTS) when the schema
 * already holds tables; force skips both. */
static ts_err_code pg_busy(const ts_env *env, bool force, ts_err *e)
{
	pg_session r;
	char who[1024];
	char *tables = NULL, *seqs = NULL;
	int n, ntables = 0;
	ts_err_code rc = pg_session_open(&r, env, e);

	if (rc != TS_OK)
		goto out;
	n = pg_busy_sessions(&r, who, sizeof who, e);
	if (n < 0) {
		rc = e ? e->code : TS_ERR_DB;
		goto out;
	}
	if (n > 0 && !force) {
		rc = ts_err_set(e, TS_ERR_BUSY, "%s: in use by %d other session%s: %s; stop Trac first "
		                "or use --force", r.im.display, n, n == 1 ? "" : "s", who);
		goto out;
	}
	rc = pg_schema_relations(&r, &tables, &seqs, &ntables, e);
	if (rc == TS_OK && ntables > 0 && !force)
		rc = ts_err_set(e, TS_ERR_EXISTS, "%s: schema '%s' already holds %d table%s; restore loads "
		                "into an empty schema: use --force to drop them", r.im.display,
		                env->db.schema, ntables, ntables == 1 ? "" : "s");
out:
	free(tables);
	free(seqs);
	if (rc != TS_OK && e)
		pg_scrub(e->msg, env->db.password);
	pg_session_close(&r);
	return rc;
}

/* Runs after the dump, in psql's single transaction: Trac's tables must be
 * in the schema, with a database_version, or the whole load is rolled
 * back.  NULL on out of memory or a schema name we cannot quote here. */
static char *pg_load_post(PGconn *c, const char *schema, const char *qschema)
{
	static const char *const names[] = { "system", "ticket", "wiki", "attachment" };
	char *lit[4] = { NULL }, *slit = NULL, *post = NULL;
	bool ok = true;

	for (int i = 0; i < 4 && ok; i++) {
		char *q = NULL;
		ok = asprintf(&q, "%s.%s", qschema, names[i]) >= 0 &&
		     (lit[i] = PQescapeLiteral(c, q, strlen(q))) != NULL;
		if (ok)
			free(q);
	}
	ok = ok && (slit = PQescapeLiteral(c, schema, strlen(schema))) != NULL;
	if (ok && !strstr(qschema, "$tracsnap$") && !strstr(slit, "$tracsnap$") &&
	    asprintf(&post,
	             "DO $tracsnap$ BEGIN IF pg_catalog.to_regclass(%s) IS NULL OR pg_catalog.to_regclass(%s) "
	             "IS NULL OR pg_catalog.to_regclass(%s) IS NULL OR pg_catalog.to_regclass(%s) IS NULL THEN "
	             "RAISE EXCEPTION 'tracsnap: the dump did not create Trac''s tables (system, ticket, wiki, "
	             "attachment) in schema %%', %s; END IF; IF NOT EXISTS (SELECT 1 FROM %s.system WHERE name "
	             "= 'database_version') THEN RAISE EXCEPTION 'tracsnap: the dump left no database_version "
	             "in %%.system', %s; END IF; END $tracsnap$;",
	             lit[0], lit[1], lit[2], lit[3], slit, qschema, slit) < 0)
		post = NULL;
	for (int i = 0; i < 4; i++)
		PQfreemem(lit[i]);
	PQfreemem(slit);
	return post;
}

/* Load the dump open on dump_fd (read from offset 0; checked with
 * ts_pgdump_check) as psql's stdin, with `psql -X -v ON_ERROR_STOP=1
 * --single-transaction`, first dropping what the schema holds (its tables
 * and sequences; a schema other than public as a whole) and last checking
 * that Trac's tables (system with its database_version, ticket, wiki,
 * attachment) are there, all in that same transaction: on failure the
 * database is as it was.  dump_desc names the dump in messages.  The
 * password reaches psql as a password file on a descriptor (pg_proc.c),
 * never on its command line. */
static ts_err_code pg_load(const ts_env *env, int dump_fd, const char *dump_desc, ts_err *e)
{
	pg_session r;
	pg_child ch = { .passfd = -1, .errfd = -1, .pid = -1 };
	char *tables = NULL, *seqs = NULL, *pre = NULL, *post = NULL, *qschema = NULL;
	int ntables, st;
	bool public = !strcmp(env->db.schema, "public");
	ts_err_code rc = pg_session_open(&r, env, e);

	if (rc != TS_OK)
		goto out;
	rc = pg_schema_relations(&r, &tables, &seqs, &ntables, e);
	if (rc != TS_OK)
		goto out;
	qschema = PQescapeIdentifier(r.c, env->db.schema, strlen(env->db.schema));
	if (!qschema) {
		rc = pg_fail(e, &r.d, r.c, NULL, "quoting the schema name");
		goto out;
	}
	post = pg_load_post(r.c, env->db.schema, qschema);
	if (!post) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "%s: cannot build the check of schema '%s'", r.im.display,
		                env->db.schema);
		goto out;
	}
	/* Runs inside psql's single transaction, before the dump: a failing
	 * load leaves the old tables in place.  A schema other than public is
	 * created by the dump itself, so it goes as a whole. */
	if (public)
		rc = asprintf(&pre, "SET client_min_messages = warning;%s%s%s%s%s%s",
		              *tables ? " DROP TABLE IF EXISTS " : "", tables, *tables ? " CASCADE;" : "",
		              *seqs ? " DROP SEQUENCE IF EXISTS " : "", seqs, *seqs ? " CASCADE;" : "") < 0
		     ? TS_ERR_NOMEM : TS_OK;
	else
		rc = asprintf(&pre, "SET client_min_messages = warning; DROP SCHEMA IF EXISTS %s CASCADE;",
		              qschema) < 0 ? TS_ERR_NOMEM : TS_OK;
	if (rc != TS_OK) {
		pre = NULL;
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* Our own session would only hold the tables' locks' way: let go. */
	PQfinish(r.c);
	r.c = NULL;
	rc = pg_child_prepare(&r.d, &ch, e);
	if (rc != TS_OK)
		goto out;
	/* The dump reaches psql as its stdin ("-f -"), the caller's descriptor
	 * (checked by ts_pgdump_check), never a path another account could
	 * change. */
	if (lseek(dump_fd, 0, SEEK_SET) < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot read", dump_desc);
		goto out;
	}
	ch.infd = dump_fd;
	{
		char *argv[] = { "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
		                 "-c", pre, "-f", "-", "-c", post, NULL };
		char what[PATH_MAX + 32];
		rc = pg_spawn(&r.d, &ch, argv, -1, e);
		if (rc != TS_OK)
			goto out;
		st = pg_wait(ch.pid, 0);
		ch.pid = -1;
		if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			/* psql's 3: a statement of the dump failed (ON_ERROR_STOP): the
			 * snapshot's data, not the server, is at fault (exit 65, not 69). */
			bool dump_bad = st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 3;
			snprintf(what, sizeof what, "loading %s with psql", dump_desc);
			rc = pg_child_failed(&r.d, &ch, st, what, dump_bad ? TS_ERR_CORRUPT : TS_ERR_DB, e);
		}
	}
out:
	pg_child_done(&ch);
	free(tables);
	free(seqs);
	free(pre);
	free(post);
	PQfreemem(qschema);
	if (rc != TS_OK && e)
		pg_scrub(e->msg, env->db.password);
	pg_session_close(&r);
	return rc;
}


/* ------------------------------------------------- the ts_db_restore ops */

typedef struct pg_rs {
	int dumpfd;                /* the snapshot's dump, checked */
	char desc[PATH_MAX * 2];   /* <snapshot>/<dump> for messages */
} pg_rs;

/* The dump psql will read is the snapshot's own (never the copy in ENV,
 * which belongs to the environment's owner), checked for psql
 * meta-commands before anything changes. */
ts_err_code pg_restore_open(ts_db_restore *r, ts_err *e)
{
	pg_rs *p = calloc(1, sizeof *p);
	ts_err_code rc;

	if (!p)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	p->dumpfd = -1;
	r->impl = p;
	rc = ts_db_restore_has_copy(r, TS_DBSNAP_PG_DUMP_REL, e);
	if (rc != TS_OK)
		return rc;
	snprintf(p->desc, sizeof p->desc, "%s/%s", r->snap->root, r->copy_rel);
	p->dumpfd = ts_beneath_open(r->snapfd, r->copy_rel, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0);
	if (p->dumpfd < 0 || fstat(p->dumpfd, &r->copy_st) < 0)
		return ts_err_sys(e, errno, "%s: cannot open", p->desc);
	if (!S_ISREG(r->copy_st.st_mode))
		return ts_err_set(e, TS_ERR_CORRUPT, "%s: not a regular file", p->desc);
	return ts_pgdump_check(p->dumpfd, p->desc, e);
}

ts_err_code pg_restore_check(ts_db_restore *r, bool force, ts_err *e)
{
	return pg_busy(r->snap, force, e);
}

ts_err_code pg_restore_load(ts_db_restore *r, ts_err *e)
{
	pg_rs *p = r->impl;
	return pg_load(r->snap, p->dumpfd, p->desc, e);
}

void pg_restore_close(ts_db_restore *r)
{
	pg_rs *p = r->impl;

	if (!p)
		return;
	if (p->dumpfd >= 0)
		close(p->dumpfd);
	free(p);
	r->impl = NULL;
}
