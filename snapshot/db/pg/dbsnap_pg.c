/* dbsnap_pg.c - hold Trac's PostgreSQL attachment writers and dump the
 * database at the snapshot instant (doc/contract.md section 4).
 *
 * Two libpq connections:
 *   A  BEGIN; LOCK TABLE <schema>.attachment IN SHARE MODE
 *      SHARE conflicts only with the row-changing modes: attachment uploads,
 *      deletes and moves wait, every other table (tickets, wiki) goes on.
 *      Once it is granted, no transaction that changed an attachment row is
 *      still open, so each committed row has its file complete on disk.
 *   B  BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;
 *      SELECT pg_export_snapshot()
 *      taken while A holds the lock: the database state of the instant.
 * snap.c then freezes the files; capture() commits A (the writers resume)
 * and runs `pg_dump --snapshot=ID`, which imports B's snapshot and so dumps
 * exactly that state however long it takes.  B stays open until pg_dump has
 * exited: an exported snapshot lives only as long as its transaction.
 *
 * The password goes to libpq in memory, and to pg_dump as a password file
 * that exists only as a memfd inherited on descriptor 3 (PGPASSFILE=
 * /proc/self/fd/3): never on a command line, in the child's environment, on
 * disk or in a message.  Every message names the database by a display URI
 * without the password and is scrubbed of it all the same.
 *
 * The dump is plain SQL, mode 0600, of the Trac schema only, streamed through
 * this process so that it loads with `psql -U USER -d DATABASE -f FILE` into
 * an empty database: pg_dump writes `CREATE SCHEMA public;` for an explicitly
 * selected public schema, which every new database already has, so that
 * statement (and the default comment on it) is turned into a comment.
 */
#include "db/dbsnap.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define PG_CONNECT_TIMEOUT "10"
#define PG_APP_NAME "tracsnap"
#define PG_DUMP "pg_dump"
#define PG_PROBE_TIMEOUT_S 20
/* Descriptor on which pg_dump finds its password file. */
#define PG_PASSFD 3
/* How far into the dump the public schema's header may be looked for. */
#define PG_HEADER_MAX (1u << 20)

typedef struct pg_impl {
	PGconn *a;                 /* holds the SHARE lock on attachment */
	PGconn *b;                 /* holds the exported snapshot */
	bool a_open;               /* A's transaction is open */
	bool b_open;               /* B's transaction is open */
	char *display;             /* postgres://user@host:port/db (no password) */
	char *qschema;             /* the schema as a quoted identifier */
	char snapshot[128];        /* pg_export_snapshot() */
	int server_version;        /* PQserverVersion */
	struct timespec instant;   /* CLOCK_REALTIME when the lock was granted */
	struct stat ini_st;        /* conf/trac.ini: owner of the dump */
	bool have_ini_st;
} pg_impl;

/* ------------------------------------------------------------------ text */

/* "postgres://user@host:port/db[?host=/dir]", never with the password.
 * malloc'd, NULL on out of memory. */
static char *pg_display(const ts_dburi *u)
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
static void pg_one_line(char *s)
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
static void pg_scrub(char *s, const char *password)
{
	size_t n = password ? strlen(password) : 0;
	char *p;

	if (!n)
		return;
	while ((p = strstr(s, password)) != NULL)
		memset(p, '*', n);
}

/* One passfile line matching any host, port, database and user:
 * "*:*:*:*:" + the password with '\' and ':' escaped.  malloc'd; NULL on
 * out of memory or when the password cannot be written there (a line
 * break), in which case *unfit is set. */
static char *pg_passfile_line(const char *password, bool *unfit)
{
	size_t n = strlen(password);
	char *out = malloc(8 + 2 * n + 2), *o;

	*unfit = strpbrk(password, "\n\r") != NULL;
	if (!out || *unfit) {
		free(out);
		return NULL;
	}
	memcpy(out, "*:*:*:*:", 8);
	o = out + 8;
	for (const char *p = password; *p; p++) {
		if (*p == '\\' || *p == ':')
			*o++ = '\\';
		*o++ = *p;
	}
	*o++ = '\n';
	*o = '\0';
	return out;
}

/* The major release of PostgreSQL's version number v (PQserverVersion
 * form: 150018, 90624) as a code: 15 -> 1500, 9.6 -> 906. */
static int pg_major_code(int v)
{
	return v >= 100000 ? v / 10000 * 100 : v / 100;
}

/* Parse `pg_dump --version` output ("pg_dump (PostgreSQL) 15.18 (Debian
 * ...)") into a major code; the version text (up to the next space) goes to
 * ver.  -1 when it is not that. */
static int pg_dump_parse_version(const char *out, char *ver, size_t vlen)
{
	const char *p = strstr(out, "(PostgreSQL) ");
	char *end;
	long major, minor = 0;
	size_t n;

	ver[0] = '\0';
	if (!p)
		return -1;
	p += strlen("(PostgreSQL) ");
	n = strcspn(p, " \n");
	snprintf(ver, vlen, "%.*s", (int)(n < vlen ? n : vlen - 1), p);
	major = strtol(p, &end, 10);
	if (end == p || major < 6 || major > 999)
		return -1;
	if (major < 10 && *end == '.')
		minor = strtol(end + 1, NULL, 10);
	return (int)(major < 10 ? major * 100 + minor : major * 100);
}

/* -------------------------------------------------------------- errors */

/* The one translation of libpq failures into engine errors.  res may be
 * NULL (connection-level failure: the message is the connection's).
 * "<display>: <doing>: <libpq message, one line>", scrubbed. */
static ts_err_code pg_fail(ts_err *e, const ts_dbsnap *d, PGconn *c, const PGresult *res,
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
static ts_err_code pg_cmd(ts_dbsnap *d, PGconn *c, const char *sql, const char *doing, ts_err *e)
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

static ts_err_code pg_connect(ts_dbsnap *d, PGconn **out, ts_err *e)
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
static ts_err_code pg_check_schema(ts_dbsnap *d, ts_err *e)
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

/* --------------------------------------------------------------- pg_dump */

/* A descriptor >= 10 for fd, close-on-exec, so that the child's dup2()s to
 * 1, 2 and 3 can never overwrite a source before it is used. */
static int pg_high_fd(int fd)
{
	return fcntl(fd, F_DUPFD_CLOEXEC, 10);
}

/* The environment of pg_dump: ours, minus the PG* variables we set, plus
 * the connection of the environment's URI.  passfile: a path for PGPASSFILE
 * or NULL; pwenv: put the password in PGPASSWORD instead (only when it
 * cannot be written to a password file).  NULL-terminated, malloc'd strings
 * in a malloc'd array; free with pg_env_free (which wipes them). */
static char **pg_child_env(const ts_dburi *u, char *const *base, const char *passfile, bool pwenv)
{
	static const char *const ours[] = { "PGHOST=", "PGHOSTADDR=", "PGPORT=", "PGDATABASE=",
	                                    "PGUSER=", "PGPASSWORD=", "PGPASSFILE=", "PGAPPNAME=",
	                                    "PGCONNECT_TIMEOUT=", "PGCLIENTENCODING=" };
	size_t n = 0, k = 0;
	char **env;

	for (char *const *p = base; p && *p; p++)
		n++;
	env = calloc(n + 12, sizeof *env);
	if (!env)
		return NULL;
	for (char *const *p = base; p && *p; p++) {
		bool skip = false;
		for (size_t i = 0; i < sizeof ours / sizeof ours[0] && !skip; i++)
			skip = !strncmp(*p, ours[i], strlen(ours[i]));
		if (skip)
			continue;
		if (!(env[k++] = strdup(*p)))
			goto nomem;
	}
#define PG_PUT(...) do { if (asprintf(&env[k], __VA_ARGS__) < 0) { env[k] = NULL; goto nomem; } k++; } while (0)
	if (u->socket_dir || u->host)
		PG_PUT("PGHOST=%s", u->socket_dir ? u->socket_dir : u->host);
	if (u->port)
		PG_PUT("PGPORT=%d", u->port);
	if (u->dbname)
		PG_PUT("PGDATABASE=%s", u->dbname);
	if (u->user)
		PG_PUT("PGUSER=%s", u->user);
	if (passfile)
		PG_PUT("PGPASSFILE=%s", passfile);
	if (pwenv && u->password)
		PG_PUT("PGPASSWORD=%s", u->password);
	PG_PUT("PGAPPNAME=%s", PG_APP_NAME);
	PG_PUT("PGCONNECT_TIMEOUT=%s", PG_CONNECT_TIMEOUT);
	PG_PUT("PGCLIENTENCODING=UTF8");
#undef PG_PUT
	env[k] = NULL;
	return env;
nomem:
	for (size_t i = 0; i < k; i++)
		free(env[i]);
	free(env);
	return NULL;
}

static void pg_env_free(char **env)
{
	if (!env)
		return;
	for (char **p = env; *p; p++) {
		explicit_bzero(*p, strlen(*p));
		free(*p);
	}
	free(env);
}

/* Everything one pg_dump run needs; released by pg_child_done(). */
typedef struct pg_child {
	char **env;
	int passfd;                /* memfd with the password file, or -1 */
	int errfd;                 /* memfd collecting the child's stderr */
	int infd;                  /* the child's stdin when > 0 (restore: the dump), else /dev/null */
	pid_t pid;
} pg_child;

static void pg_child_done(pg_child *ch)
{
	pg_env_free(ch->env);
	ch->env = NULL;
	if (ch->passfd >= 0)
		close(ch->passfd);
	if (ch->errfd >= 0)
		close(ch->errfd);
	ch->passfd = ch->errfd = -1;
}

/* Prepare the environment, the password file and the stderr sink. */
static ts_err_code pg_child_prepare(ts_dbsnap *d, pg_child *ch, ts_err *e)
{
	const ts_dburi *u = &d->env->db;
	char passfile[32];
	bool pwenv = false;
	int fd;

	memset(ch, 0, sizeof *ch);
	ch->passfd = ch->errfd = -1;
	ch->pid = -1;
	fd = memfd_create("pg_dump-stderr", MFD_CLOEXEC);
	if (fd < 0)
		return ts_err_sys(e, errno, "cannot create a buffer for pg_dump's messages");
	ch->errfd = pg_high_fd(fd);
	close(fd);
	if (ch->errfd < 0)
		return ts_err_sys(e, errno, "cannot create a buffer for pg_dump's messages");
	snprintf(passfile, sizeof passfile, "/proc/self/fd/%d", PG_PASSFD);
	if (u->password) {
		bool unfit;
		char *line = pg_passfile_line(u->password, &unfit);
		if (!line && !unfit)
			return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		if (line) {
			size_t len = strlen(line);
			/* libpq ignores a password file that others could read. */
			fd = memfd_create("pgpass", MFD_CLOEXEC);
			if (fd >= 0 && (fchmod(fd, 0600) < 0 || write(fd, line, len) != (ssize_t)len)) {
				close(fd);
				fd = -1;
			}
			explicit_bzero(line, len);
			free(line);
			if (fd >= 0) {
				ch->passfd = pg_high_fd(fd);
				close(fd);
			}
		}
		/* No memfd (or a line break in the password): doc/contract.md
		 * section 4 allows the environment, which only the same user
		 * can read. */
		pwenv = ch->passfd < 0;
	}
	ch->env = pg_child_env(u, environ, ch->passfd >= 0 ? passfile : NULL, pwenv);
	if (!ch->env)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	return TS_OK;
}

static ts_err_code pg_not_found(ts_dbsnap *d, const char *prog, ts_err *e)
{
	return ts_err_set(e, TS_ERR_UNSUPPORTED, "%s: %s not found in PATH (install postgresql-client)",
	                  ((pg_impl *)d->impl)->display, prog);
}

/* Start argv (argv[0] looked up in PATH) with stdout on outfd (or
 * /dev/null when -1), stderr into ch->errfd and the password file on
 * descriptor 3.  No shell, nothing else inherited. */
static ts_err_code pg_spawn(ts_dbsnap *d, pg_child *ch, char *const argv[], int outfd, ts_err *e)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, dfl;
	int err, hout = -1, hin = -1;

	if (outfd >= 0 && (hout = pg_high_fd(outfd)) < 0)
		return ts_err_sys(e, errno, "cannot start %s", argv[0]);
	if (ch->infd > 0 && (hin = pg_high_fd(ch->infd)) < 0) {
		err = errno;
		if (hout >= 0)
			close(hout);
		return ts_err_sys(e, err, "cannot start %s", argv[0]);
	}
	/* The caller may be a FUSE worker with every signal blocked and the
	 * daemon ignores SIGPIPE: pg_dump gets the ordinary defaults. */
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGHUP);
	sigaddset(&dfl, SIGQUIT);
	posix_spawnattr_init(&at);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &dfl);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	posix_spawn_file_actions_init(&fa);
	if (hin >= 0)
		posix_spawn_file_actions_adddup2(&fa, hin, 0);
	else
		posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (hout >= 0)
		posix_spawn_file_actions_adddup2(&fa, hout, 1);
	else
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, ch->errfd, 2);
	if (ch->passfd >= 0)
		posix_spawn_file_actions_adddup2(&fa, ch->passfd, PG_PASSFD);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
	/* Descriptors without close-on-exec from a library stay ours. */
	posix_spawn_file_actions_addclosefrom_np(&fa, ch->passfd >= 0 ? PG_PASSFD + 1 : 3);
#endif
	err = posix_spawnp(&ch->pid, argv[0], &fa, &at, argv, ch->env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (hout >= 0)
		close(hout);
	if (hin >= 0)
		close(hin);
	if (err == ENOENT)
		return pg_not_found(d, argv[0], e);
	if (err) {
		ch->pid = -1;
		return ts_err_sys(e, err, "%s: cannot start %s", ((pg_impl *)d->impl)->display, argv[0]);
	}
	return TS_OK;
}

/* Wait for the child; with a deadline (seconds, 0 = none) it is killed when
 * late.  Returns the waitpid status, or -1 when it had to be killed. */
static int pg_wait(pid_t pid, int deadline_s)
{
	struct timespec t0, now, nap = { 0, 5 * 1000000L };
	int st = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		pid_t w = waitpid(pid, &st, deadline_s ? WNOHANG : 0);
		if (w == pid)
			return st;
		if (w < 0 && errno != EINTR)
			return -1;
		if (w == 0) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec - t0.tv_sec >= deadline_s) {
				kill(pid, SIGKILL);
				while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
					;
				return -1;
			}
			nanosleep(&nap, NULL);
		}
	}
}

/* What the child wrote to stderr, as one scrubbed line (malloc'd). */
static char *pg_child_stderr(ts_dbsnap *d, const pg_child *ch)
{
	char buf[2048];
	ssize_t n = pread(ch->errfd, buf, sizeof buf - 1, 0);
	char *s;

	if (n < 0)
		n = 0;
	buf[n] = '\0';
	s = strdup(buf);
	if (s) {
		pg_one_line(s);
		pg_scrub(s, d->env->db.password);
	}
	return s;
}

/* Describe a failed child run: "<display>: <what> failed (exit N): <stderr>". */
static ts_err_code pg_child_failed(ts_dbsnap *d, const pg_child *ch, int st, const char *what,
                                   ts_err_code code, ts_err *e)
{
	pg_impl *im = d->impl;
	char how[64];
	char *msg = pg_child_stderr(d, ch);

	if (st == -1)
		snprintf(how, sizeof how, "did not finish in %d s", PG_PROBE_TIMEOUT_S);
	else if (WIFEXITED(st))
		snprintf(how, sizeof how, "exit %d", WEXITSTATUS(st));
	else
		snprintf(how, sizeof how, "killed by signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	ts_err_set(e, code, "%s: %s failed (%s)%s%s", im->display, what, how,
	           msg && *msg ? ": " : "", msg ? msg : "");
	free(msg);
	if (e)
		pg_scrub(e->msg, d->env->db.password);
	return code;
}

/* At open: pg_dump is there and can dump this server (pg_dump refuses a
 * server of a newer major version, and needs 9.2 for --snapshot). */
static ts_err_code pg_dump_probe(ts_dbsnap *d, ts_err *e)
{
	pg_impl *im = d->impl;
	char *argv[] = { PG_DUMP, "--version", NULL };
	char out[512], ver[64], srv[64];
	pg_child ch;
	ts_err_code rc;
	int outfd = -1, st, code;
	ssize_t n;
	const char *sv = PQparameterStatus(im->a, "server_version");

	snprintf(srv, sizeof srv, "%.*s", (int)strcspn(sv ? sv : "?", " "), sv ? sv : "?");
	rc = pg_child_prepare(d, &ch, e);
	if (rc != TS_OK)
		goto out;
	outfd = memfd_create("pg_dump-version", MFD_CLOEXEC);
	if (outfd < 0) {
		rc = ts_err_sys(e, errno, "cannot run pg_dump --version");
		goto out;
	}
	rc = pg_spawn(d, &ch, argv, outfd, e);
	if (rc != TS_OK)
		goto out;
	st = pg_wait(ch.pid, PG_PROBE_TIMEOUT_S);
	if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 127 && pread(ch.errfd, out, 1, 0) == 0) {
		/* Where posix_spawn cannot report a failed exec (under valgrind,
		 * say) the child exits 127 without a word. */
		rc = pg_not_found(d, argv[0], e);
		goto out;
	}
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		rc = pg_child_failed(d, &ch, st, "pg_dump --version", TS_ERR_UNSUPPORTED, e);
		goto out;
	}
	n = pread(outfd, out, sizeof out - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	code = pg_dump_parse_version(out, ver, sizeof ver);
	if (code < 0) {
		pg_one_line(out);
		rc = ts_err_set(e, TS_ERR_UNSUPPORTED, "%s: pg_dump --version says '%.200s': not "
		                "PostgreSQL's pg_dump", im->display, out);
		goto out;
	}
	if (code < 902) {
		rc = ts_err_set(e, TS_ERR_UNSUPPORTED, "%s: pg_dump %s is too old (9.2 or later needed "
		                "for --snapshot)", im->display, ver);
		goto out;
	}
	if (code < pg_major_code(im->server_version)) {
		int m = pg_major_code(im->server_version);
		char want[16];
		if (m >= 1000)
			snprintf(want, sizeof want, "%d", m / 100);
		else
			snprintf(want, sizeof want, "%d.%d", m / 100, m % 100);
		rc = ts_err_set(e, TS_ERR_UNSUPPORTED, "%s: pg_dump %s cannot dump a PostgreSQL %s "
		                "server (pg_dump refuses newer servers): install postgresql-client-%s",
		                im->display, ver, srv, want);
	}
out:
	if (outfd >= 0)
		close(outfd);
	pg_child_done(&ch);
	return rc;
}

/* write(2) all of buf. */
static int pg_write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Lines of pg_dump's header that would fail in an empty database, where
 * the public schema exists already. */
static const char *pg_header_drop(const char *line, size_t len)
{
	static const char *const drop[] = {
		"CREATE SCHEMA public;",
		"COMMENT ON SCHEMA public IS 'standard public schema';",
	};
	for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
		if (len == strlen(drop[i]) && !memcmp(line, drop[i], len))
			return drop[i];
	return NULL;
}

/* Write the header (the first n bytes, whole lines) of a dump of the public
 * schema, with its CREATE SCHEMA public and default comment turned into SQL
 * comments. */
static int pg_write_header(int fd, const char *buf, size_t n)
{
	const char *p = buf, *end = buf + n;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *hit = pg_header_drop(p, len);
		if (hit) {
			static const char pre[] = "-- (tracsnap: every database has the public schema) ";
			if (pg_write_all(fd, pre, sizeof pre - 1) < 0)
				return -1;
		}
		if (pg_write_all(fd, p, len + (nl ? 1 : 0)) < 0)
			return -1;
		p += len + (nl ? 1 : 0);
	}
	return 0;
}

/* Does the header end before offset n of buf?  It ends with the first line
 * that creates anything but the schema (pg_dump writes the schema's entries
 * first) or copies data. */
static bool pg_header_done(const char *buf, size_t n, size_t *hlen)
{
	const char *p = buf, *end = buf + n;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len;
		if (!nl)
			return false;
		len = (size_t)(nl - p);
		if ((len >= 7 && !memcmp(p, "CREATE ", 7) && !pg_header_drop(p, len)) ||
		    (len >= 5 && !memcmp(p, "COPY ", 5)) ||
		    (len >= 6 && !memcmp(p, "ALTER ", 6))) {
			*hlen = (size_t)(p - buf);
			return true;
		}
		p = nl + 1;
	}
	return false;
}

/* Copy pg_dump's output from the pipe into fd, fixing the header for the
 * public schema. */
static ts_err_code pg_stream(ts_dbsnap *d, int pipefd, int fd, const char *rel, ts_err *e)
{
	bool fix = !strcmp(d->env->db.schema, "public");
	size_t cap = 1u << 17, n = 0, hlen;
	char *buf = malloc(cap);
	ts_err_code rc = TS_OK;
	bool eof = false;

	if (!buf)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	/* The header: collect whole, fix, write. */
	while (fix && !eof) {
		ssize_t r;
		if (n == cap) {
			char *nb = cap >= PG_HEADER_MAX ? NULL : realloc(buf, cap * 2);
			if (!nb)
				break;      /* no header end found: leave the rest as it is */
			buf = nb;
			cap *= 2;
		}
		r = read(pipefd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = ts_err_sys(e, errno, "%s: reading pg_dump's output", rel);
			goto out;
		}
		eof = r == 0;
		n += (size_t)r;
		if (pg_header_done(buf, n, &hlen)) {
			if (pg_write_header(fd, buf, hlen) < 0 || pg_write_all(fd, buf + hlen, n - hlen) < 0)
				goto werr;
			n = 0;
			break;
		}
	}
	if (n > 0) {
		/* Ended (or too long) before anything but the schema: fix all. */
		size_t whole = n;
		while (whole > 0 && buf[whole - 1] != '\n')
			whole--;
		if (pg_write_header(fd, buf, whole) < 0 || pg_write_all(fd, buf + whole, n - whole) < 0)
			goto werr;
	}
	while (!eof) {
		ssize_t r = read(pipefd, buf, cap);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = ts_err_sys(e, errno, "%s: reading pg_dump's output", rel);
			goto out;
		}
		if (r == 0)
			break;
		if (pg_write_all(fd, buf, (size_t)r) < 0)
			goto werr;
	}
	goto out;
werr:
	rc = ts_err_sys(e, errno, "%s: cannot write the dump", rel);
out:
	free(buf);
	return rc;
}

/* Run pg_dump on B's exported snapshot into fd. */
static ts_err_code pg_run_dump(ts_dbsnap *d, int fd, const char *rel, ts_err *e)
{
	pg_impl *im = d->impl;
	const char *schema = d->env->db.schema;
	char *snap_arg = NULL, *schema_arg = NULL, *lockwait_arg = NULL, *q;
	pg_child ch;
	ts_err_code rc;
	int pfd[2] = { -1, -1 }, st;

	rc = pg_child_prepare(d, &ch, e);
	if (rc != TS_OK)
		goto out;
	/* --schema takes a pattern: double quotes make the name literal
	 * (case, '.', '*', '?'), with '"' doubled. */
	schema_arg = malloc(strlen("--schema=") + 2 * strlen(schema) + 3);
	if (!schema_arg)
		goto nomem;
	q = schema_arg + sprintf(schema_arg, "--schema=\"");
	for (const char *s = schema; *s; s++) {
		if (*s == '"')
			*q++ = '"';
		*q++ = *s;
	}
	strcpy(q, "\"");
	if (asprintf(&snap_arg, "--snapshot=%s", im->snapshot) < 0) {
		snap_arg = NULL;
		goto nomem;
	}
	if (asprintf(&lockwait_arg, "--lock-wait-timeout=%d", d->timeout_s * 1000) < 0) {
		lockwait_arg = NULL;
		goto nomem;
	}
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		rc = ts_err_sys(e, errno, "cannot start pg_dump");
		goto out;
	}
	{
		char *argv[] = { PG_DUMP, "--no-password", snap_arg, schema_arg, "--no-owner",
		                 "--no-privileges", "--format=plain", lockwait_arg, NULL };
		rc = pg_spawn(d, &ch, argv, pfd[1], e);
	}
	close(pfd[1]);
	pfd[1] = -1;
	if (rc != TS_OK)
		goto out;
	rc = pg_stream(d, pfd[0], fd, rel, e);
	close(pfd[0]);          /* a writer still going gets EPIPE and ends */
	pfd[0] = -1;
	st = pg_wait(ch.pid, 0);
	if (rc == TS_OK && (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0))
		rc = pg_child_failed(d, &ch, st, "pg_dump", TS_ERR_DB, e);
	goto out;
nomem:
	rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
out:
	if (pfd[0] >= 0)
		close(pfd[0]);
	if (pfd[1] >= 0)
		close(pfd[1]);
	pg_child_done(&ch);
	free(snap_arg);
	free(schema_arg);
	free(lockwait_arg);
	return rc;
}

/* ------------------------------------------------------------ the protocol */

static void pg_release(ts_dbsnap *d)
{
	pg_impl *im = d->impl;

	if (im->a_open) {
		PQclear(PQexec(im->a, "ROLLBACK"));
		im->a_open = false;
	}
	if (d->held) {
		d->held = false;
		clock_gettime(CLOCK_MONOTONIC, &d->released_at);
	}
	if (im->b_open) {
		PQclear(PQexec(im->b, "ROLLBACK"));
		im->b_open = false;
	}
}

static void pg_free(ts_dbsnap *d)
{
	pg_impl *im = d->impl;

	if (!im)
		return;
	PQfinish(im->a);
	PQfinish(im->b);
	free(im->display);
	PQfreemem(im->qschema);
	free(im);
	d->impl = NULL;
}

/* Who holds a conflicting lock on attachment?  Only a hint for the message. */
static long pg_lock_holder(ts_dbsnap *d)
{
	pg_impl *im = d->impl;
	const char *params[1] = { d->env->db.schema };
	long pid = 0;
	PGresult *r = PQexecParams(im->b,
	        "SELECT l.pid FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid = l.relation "
	        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
	        "WHERE n.nspname = $1 AND c.relname = 'attachment' AND l.granted "
	        "AND l.mode NOT IN ('AccessShareLock', 'RowShareLock', 'ShareLock') "
	        "AND l.pid <> pg_catalog.pg_backend_pid() LIMIT 1", 1, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		pid = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return pid;
}

static double pg_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Take the SHARE lock on attachment within d->timeout_s.
 *
 * A LOCK request that waits is queued, and every attachment writer that
 * comes after it queues behind it, also when what it waits for is not a
 * writer: an autovacuum or ANALYZE of the table (which the server cancels
 * only after deadlock_timeout, 1 s by default).  So for the first half of the
 * time each try waits at most PG_LOCK_TRY_MS and then steps aside (ROLLBACK
 * TO SAVEPOINT), letting the queued writers through; only then does one try
 * wait for the rest of the time, as Trac's own writers would. */
#define PG_LOCK_TRY_MS 100
#define PG_LOCK_GAP_MS 10
static ts_err_code pg_take_lock(ts_dbsnap *d, ts_err *e)
{
	pg_impl *im = d->impl;
	char lock[128 + 2 * NAME_MAX], set[96];
	double start = pg_now(), deadline = start + d->timeout_s, patient = start + d->timeout_s / 2.0;
	ts_err_code rc;
	PGresult *r;

	snprintf(lock, sizeof lock, "LOCK TABLE %s.attachment IN SHARE MODE", im->qschema);
	rc = pg_cmd(d, im->a, "SAVEPOINT tracsnap_lock", "setting a savepoint", e);
	if (rc != TS_OK)
		return rc;
	for (;;) {
		double now = pg_now();
		long ms = now >= patient ? (long)((deadline - now) * 1000) : PG_LOCK_TRY_MS;
		const char *state;

		if (ms < 1)
			ms = 1;
		/* Inside the savepoint: undone with it, set again each time. */
		snprintf(set, sizeof set, "SET LOCAL lock_timeout = %ld", ms);
		rc = pg_cmd(d, im->a, set, "setting lock_timeout", e);
		if (rc != TS_OK)
			return rc;
		r = PQexec(im->a, lock);
		if (PQresultStatus(r) == PGRES_COMMAND_OK) {
			PQclear(r);
			return TS_OK;
		}
		state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		if (!state || strcmp(state, "55P03") != 0 || pg_now() >= deadline) {
			rc = pg_fail(e, d, im->a, r, "locking the attachment table");
			PQclear(r);
			return rc;
		}
		PQclear(r);
		rc = pg_cmd(d, im->a, "ROLLBACK TO SAVEPOINT tracsnap_lock", "retrying the lock", e);
		if (rc != TS_OK)
			return rc;
		if (pg_now() < patient) {
			struct timespec gap = { 0, PG_LOCK_GAP_MS * 1000000L };
			nanosleep(&gap, NULL);
		}
	}
}

static ts_err_code pg_lock(ts_dbsnap *d, ts_err *e)
{
	pg_impl *im = d->impl;
	PGresult *r = NULL;
	ts_err_code rc;

	rc = pg_cmd(d, im->a, "BEGIN", "starting the lock transaction", e);
	if (rc != TS_OK)
		goto out;
	im->a_open = true;
	rc = pg_take_lock(d, e);
	if (rc == TS_ERR_BUSY) {
		long pid = pg_lock_holder(d);
		char who[64] = "";
		if (pid > 0)
			snprintf(who, sizeof who, " (held by server process %ld?)", pid);
		rc = ts_err_set(e, TS_ERR_BUSY, "could not lock %s.attachment in %s within %d s%s",
		                d->env->db.schema, im->display, d->timeout_s, who);
	}
	if (rc != TS_OK)
		goto out;
	clock_gettime(CLOCK_MONOTONIC, &d->locked_at);
	clock_gettime(CLOCK_REALTIME, &im->instant);
	d->held = true;
	/* The snapshot starts with B's first statement: now, under the lock. */
	rc = pg_cmd(d, im->b, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
	            "starting the snapshot transaction", e);
	if (rc != TS_OK)
		goto out;
	im->b_open = true;
	r = PQexec(im->b, "SELECT pg_catalog.pg_export_snapshot()");
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 ||
	    PQgetlength(r, 0, 0) >= (int)sizeof im->snapshot) {
		rc = pg_fail(e, d, im->b, r, "exporting the snapshot");
		goto out;
	}
	memcpy(im->snapshot, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0) + 1);
out:
	PQclear(r);
	if (rc != TS_OK)
		pg_release(d);
	return rc;
}

static ts_err_code pg_capture(ts_dbsnap *d, int treefd, const char *rel, ts_err *e)
{
	pg_impl *im = d->impl;
	ts_err_code rc = TS_OK;
	int fd = -1;

	/* The files are frozen and B holds the instant: the writers may go. */
	if (im->a_open) {
		rc = pg_cmd(d, im->a, "COMMIT", "releasing the lock", e);
		im->a_open = false;
	}
	if (d->held) {
		d->held = false;
		clock_gettime(CLOCK_MONOTONIC, &d->released_at);
	}
	if (rc != TS_OK)
		goto out;
	/* Never write into what the walk may have put there (or linked from
	 * an older snapshot). */
	if (unlinkat(treefd, rel, 0) < 0 && errno != ENOENT) {
		rc = ts_err_sys(e, errno, "%s: cannot replace in the store", rel);
		goto out;
	}
	fd = openat(treefd, rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot create in the store", rel);
		goto out;
	}
	rc = pg_run_dump(d, fd, rel, e);
	if (rc != TS_OK)
		goto out;
	{
		struct timespec times[2] = { im->instant, im->instant };
		if ((im->have_ini_st && fchown(fd, im->ini_st.st_uid, im->ini_st.st_gid) < 0 &&
		     geteuid() == 0) || fchmod(fd, 0600) < 0 || futimens(fd, times) < 0)
			rc = ts_err_sys(e, errno, "%s: cannot set metadata of the dump", rel);
	}
out:
	if (fd >= 0)
		close(fd);
	/* pg_dump has imported the snapshot and is done with it. */
	if (im->b_open) {
		PQclear(PQexec(im->b, "COMMIT"));
		im->b_open = false;
	}
	return rc;
}

static const ts_dbsnap_ops pg_ops = {
	.name = "postgres",
	.lock = pg_lock,
	.capture = pg_capture,
	.release = pg_release,
	.free = pg_free,
};

ts_err_code ts_dbsnap_pg_open(ts_dbsnap *d, ts_err *e)
{
	ts_err_code rc = TS_OK;
	const ts_dburi *u = &d->env->db;
	pg_impl *im = calloc(1, sizeof *im);

	d->ops = &pg_ops;
	d->impl = im;
	if (!im)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	im->display = pg_display(u);
	if (!im->display)
		goto nomem;
	if (stat(d->env->ini_path, &im->ini_st) == 0)
		im->have_ini_st = true;
	rc = pg_connect(d, &im->a, e);
	if (rc != TS_OK)
		goto out;
	im->server_version = PQserverVersion(im->a);
	if (im->server_version < 90200) {
		rc = ts_err_set(e, TS_ERR_UNSUPPORTED, "%s: PostgreSQL %d.%d cannot export snapshots "
		                "(9.2 or later needed)", im->display, im->server_version / 10000,
		                im->server_version / 100 % 100);
		goto out;
	}
	im->qschema = PQescapeIdentifier(im->a, u->schema, strlen(u->schema));
	if (!im->qschema) {
		rc = pg_fail(e, d, im->a, NULL, "quoting the schema name");
		goto out;
	}
	rc = pg_check_schema(d, e);
	if (rc != TS_OK)
		goto out;
	rc = pg_connect(d, &im->b, e);
	if (rc != TS_OK)
		goto out;
	rc = pg_dump_probe(d, e);
	goto out;
nomem:
	rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
out:
	if (rc != TS_OK)
		pg_free(d);
	return rc;
}

/* ---------------------------------------------------------------- restore
 *
 * `tracsnap restore` (restore.c) reuses the connection, message and psql
 * plumbing above through a handle that only has a connection: no lock, no
 * exported snapshot. */

typedef struct pg_restore {
	ts_dbsnap d;
	pg_impl im;
	PGconn *c;
} pg_restore;

static ts_err_code pg_restore_open(pg_restore *r, const ts_env *env, ts_err *e)
{
	memset(r, 0, sizeof *r);
	r->d.env = env;
	r->d.impl = &r->im;
	r->im.display = pg_display(&env->db);
	if (!r->im.display)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	return pg_connect(&r->d, &r->c, e);
}

static void pg_restore_close(pg_restore *r)
{
	PQfinish(r->c);
	r->c = NULL;
	free(r->im.display);
	r->im.display = NULL;
}

/* One query with text parameters that must return rows. */
static PGresult *pg_restore_query(pg_restore *r, const char *sql, int n, const char *const *params,
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
static int pg_restore_sessions(pg_restore *r, char *who, size_t len, ts_err *e)
{
	PGresult *res = pg_restore_query(r,
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
static ts_err_code pg_restore_relations(pg_restore *r, char **tables, char **seqs, int *ntables,
                                        ts_err *e)
{
	const char *params[1] = { r->d.env->db.schema };
	PGresult *res = pg_restore_query(r,
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

ts_err_code ts_dbsnap_pg_restore_check(const ts_env *env, bool force, ts_err *e)
{
	pg_restore r;
	char who[1024];
	char *tables = NULL, *seqs = NULL;
	int n, ntables = 0;
	ts_err_code rc = pg_restore_open(&r, env, e);

	if (rc != TS_OK)
		goto out;
	n = pg_restore_sessions(&r, who, sizeof who, e);
	if (n < 0) {
		rc = e ? e->code : TS_ERR_DB;
		goto out;
	}
	if (n > 0 && !force) {
		rc = ts_err_set(e, TS_ERR_BUSY, "%s: in use by %d other session%s: %s; stop Trac first "
		                "or use --force", r.im.display, n, n == 1 ? "" : "s", who);
		goto out;
	}
	rc = pg_restore_relations(&r, &tables, &seqs, &ntables, e);
	if (rc == TS_OK && ntables > 0 && !force)
		rc = ts_err_set(e, TS_ERR_EXISTS, "%s: schema '%s' already holds %d table%s; restore loads "
		                "into an empty schema: use --force to drop them", r.im.display,
		                env->db.schema, ntables, ntables == 1 ? "" : "s");
out:
	free(tables);
	free(seqs);
	if (rc != TS_OK && e)
		pg_scrub(e->msg, env->db.password);
	pg_restore_close(&r);
	return rc;
}

/* Runs after the dump, in psql's single transaction: Trac's tables must be
 * in the schema, with a database_version, or the whole load is rolled
 * back.  NULL on out of memory or a schema name we cannot quote here. */
static char *pg_restore_post(PGconn *c, const char *schema, const char *qschema)
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

ts_err_code ts_dbsnap_pg_load(const ts_env *env, int dump_fd, const char *dump_desc, ts_err *e)
{
	pg_restore r;
	pg_child ch = { .passfd = -1, .errfd = -1, .pid = -1 };
	char *tables = NULL, *seqs = NULL, *pre = NULL, *post = NULL, *qschema = NULL;
	int ntables, st;
	bool public = !strcmp(env->db.schema, "public");
	ts_err_code rc = pg_restore_open(&r, env, e);

	if (rc != TS_OK)
		goto out;
	rc = pg_restore_relations(&r, &tables, &seqs, &ntables, e);
	if (rc != TS_OK)
		goto out;
	qschema = PQescapeIdentifier(r.c, env->db.schema, strlen(env->db.schema));
	if (!qschema) {
		rc = pg_fail(e, &r.d, r.c, NULL, "quoting the schema name");
		goto out;
	}
	post = pg_restore_post(r.c, env->db.schema, qschema);
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
			snprintf(what, sizeof what, "loading %s with psql", dump_desc);
			rc = pg_child_failed(&r.d, &ch, st, what, TS_ERR_DB, e);
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
	pg_restore_close(&r);
	return rc;
}
