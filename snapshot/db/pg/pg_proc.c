/* pg_proc.c - the PostgreSQL backend's child processes, pg_dump and psql
 * (pg_int.h).
 *
 * The password reaches a child as a password file that exists only as a
 * memfd inherited on descriptor PG_PASSFD (PGPASSFILE=/proc/self/fd/3):
 * never on a command line, in the child's environment, on disk or in a
 * message.  A child gets no shell, no descriptor of ours but its stdin,
 * stdout, stderr and that file, and the ordinary signal defaults.
 */
#include "db/pg/pg_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* One passfile line matching any host, port, database and user:
 * "*:*:*:*:" + the password with '\' and ':' escaped.  malloc'd; NULL on
 * out of memory or when the password cannot be written there (a line
 * break), in which case *unfit is set. */
char *pg_passfile_line(const char *password, bool *unfit)
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
char **pg_child_env(const ts_dburi *u, char *const *base, const char *passfile, bool pwenv)
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

void pg_env_free(char **env)
{
	if (!env)
		return;
	for (char **p = env; *p; p++) {
		explicit_bzero(*p, strlen(*p));
		free(*p);
	}
	free(env);
}

void pg_child_done(pg_child *ch)
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
ts_err_code pg_child_prepare(ts_dbsnap *d, pg_child *ch, ts_err *e)
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
		/* No memfd (or a line break in the password): doc/contract.md section 4 allows
		 * the environment, which only the same user can read. */
		pwenv = ch->passfd < 0;
	}
	ch->env = pg_child_env(u, environ, ch->passfd >= 0 ? passfile : NULL, pwenv);
	if (!ch->env)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	return TS_OK;
}

ts_err_code pg_not_found(ts_dbsnap *d, const char *prog, ts_err *e)
{
	return ts_err_set(e, TS_ERR_UNSUPPORTED, "%s: %s not found in PATH (install postgresql-client)",
	                  ((pg_impl *)d->impl)->display, prog);
}

/* Start argv (argv[0] looked up in PATH) with stdout on outfd (or
 * /dev/null when -1), stderr into ch->errfd and the password file on
 * descriptor 3.  No shell, nothing else inherited. */
ts_err_code pg_spawn(ts_dbsnap *d, pg_child *ch, char *const argv[], int outfd, ts_err *e)
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
int pg_wait(pid_t pid, int deadline_s)
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
ts_err_code pg_child_failed(ts_dbsnap *d, const pg_child *ch, int st, const char *what,
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

