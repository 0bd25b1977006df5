/* pg_int.h - what the PostgreSQL backend's files share (dbsnap.h is the
 * interface; the protocol is described in pg_lock.c).  Private to
 * snapshot/db/pg/ and its unit test (tests/unit/test_dbsnap_pg.c):
 *   pg_conn.c     display URI, messages, connections, the schema check
 *   pg_proc.c     child processes (pg_dump, psql) and the password file
 *   pg_dumprun.c  pg_dump's version check and the dump run
 *   pg_dumphdr.c  the dump header rewrite for the public schema
 *   pg_lock.c     the snapshot lock protocol: the backend's session ops
 *   pg_tree.c     where the dump goes in a snapshot's tree
 *   pg_restore.c  restore: the busy check and the dump load
 *
 * Ownership: a pg_impl belongs to its ts_dbsnap (pg_free); a pg_child to
 * its caller (pg_child_done).
 */
#ifndef TS_PG_INT_H
#define TS_PG_INT_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "db/dbsnap.h"

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

/* pg_conn.c */
/* "postgres://user@host:port/db[?host=/dir]", never with the password.
 * malloc'd, NULL on out of memory. */
char *pg_display(const ts_dburi *u);
/* Make one line of s, in place: runs of white space become one space, the
 * ends are trimmed. */
void pg_one_line(char *s);
/* Overwrite every occurrence of the password in s with as many '*'. */
void pg_scrub(char *s, const char *password);
/* The one translation of libpq failures into engine errors (res may be
 * NULL): "<display>: <doing>: <libpq message, one line>", scrubbed. */
ts_err_code pg_fail(ts_err *e, const ts_dbsnap *d, PGconn *c, const PGresult *res, const char *doing);
/* Run a command that returns no rows; TS_OK or the translated failure. */
ts_err_code pg_cmd(ts_dbsnap *d, PGconn *c, const char *sql, const char *doing, ts_err *e);
/* Connect to d->env's database, session timeouts off. */
ts_err_code pg_connect(ts_dbsnap *d, PGconn **out, ts_err *e);
/* At open: the schema exists and has an attachment table. */
ts_err_code pg_check_schema(ts_dbsnap *d, ts_err *e);

/* pg_proc.c */
/* Everything one child run needs; released by pg_child_done(). */
typedef struct pg_child {
	char **env;
	int passfd;                /* memfd with the password file, or -1 */
	int errfd;                 /* memfd collecting the child's stderr */
	int infd;                  /* the child's stdin when > 0 (restore: the dump), else /dev/null */
	pid_t pid;
} pg_child;

/* One passfile line matching any host, port, database and user (malloc'd);
 * NULL on out of memory or when the password cannot be written there (a
 * line break: *unfit set). */
char *pg_passfile_line(const char *password, bool *unfit);
/* The environment of a child: base minus the PG* variables we set, plus
 * the connection of u; see pg_proc.c.  Free with pg_env_free. */
char **pg_child_env(const ts_dburi *u, char *const *base, const char *passfile, bool pwenv);
void pg_env_free(char **env);
/* Prepare the environment, the password file and the stderr sink. */
ts_err_code pg_child_prepare(ts_dbsnap *d, pg_child *ch, ts_err *e);
void pg_child_done(pg_child *ch);
/* "<display>: <prog> not found in PATH (install postgresql-client)" */
ts_err_code pg_not_found(ts_dbsnap *d, const char *prog, ts_err *e);
/* Start argv (argv[0] looked up in PATH) with stdout on outfd (or
 * /dev/null when -1), stderr into ch->errfd and the password file on
 * descriptor PG_PASSFD. */
ts_err_code pg_spawn(ts_dbsnap *d, pg_child *ch, char *const argv[], int outfd, ts_err *e);
/* The waitpid status, or -1 when killed after deadline_s (0 = none). */
int pg_wait(pid_t pid, int deadline_s);
/* "<display>: <what> failed (exit N): <stderr>" */
ts_err_code pg_child_failed(ts_dbsnap *d, const pg_child *ch, int st, const char *what,
                            ts_err_code code, ts_err *e);

/* pg_dumprun.c */
/* PQserverVersion's form (150018, 90624) as a major code: 1500, 906. */
int pg_major_code(int v);
/* `pg_dump --version` output as a major code (version text into ver);
 * -1 when it is not PostgreSQL's pg_dump. */
int pg_dump_parse_version(const char *out, char *ver, size_t vlen);
/* At open: pg_dump is there and can dump this server. */
ts_err_code pg_dump_probe(ts_dbsnap *d, ts_err *e);
/* Run pg_dump on B's exported snapshot into fd (rel names it). */
ts_err_code pg_run_dump(ts_dbsnap *d, int fd, const char *rel, ts_err *e);

/* pg_dumphdr.c */
/* write(2) all of buf: 0, or -1 with errno. */
int pg_write_all(int fd, const char *buf, size_t len);
/* Copy pg_dump's output from the pipe into fd, fixing the header for the
 * public schema. */
ts_err_code pg_stream(ts_dbsnap *d, int pipefd, int fd, const char *rel, ts_err *e);

/* pg_tree.c */
bool pg_excluded(const ts_env *env, const char *rel);
ts_err_code pg_place(const ts_env *env, int treefd, int envfd, char **rel, const char **dir, ts_err *e);

/* pg_restore.c: the ts_db_restore operations (dbsnap.h) */
ts_err_code pg_restore_open(ts_db_restore *r, ts_err *e);
ts_err_code pg_restore_check(ts_db_restore *r, bool force, ts_err *e);
ts_err_code pg_restore_load(ts_db_restore *r, ts_err *e);
void pg_restore_close(ts_db_restore *r);

#endif
