/* pg_dumprun.c - running pg_dump (pg_int.h): at open, that it is there and
 * can dump this server; at capture, the dump of the exported snapshot. */
#include "db/pg/pg_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* The major release of PostgreSQL's version number v (PQserverVersion
 * form: 150018, 90624) as a code: 15 -> 1500, 9.6 -> 906. */
int pg_major_code(int v)
{
	return v >= 100000 ? v / 10000 * 100 : v / 100;
}

/* Parse `pg_dump --version` output ("pg_dump (PostgreSQL) 15.18 (Debian
 * ...)") into a major code; the version text (up to the next space) goes to
 * ver.  -1 when it is not that. */
int pg_dump_parse_version(const char *out, char *ver, size_t vlen)
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

/* At open: pg_dump is there and can dump this server (pg_dump refuses a
 * server of a newer major version, and needs 9.2 for --snapshot). */
ts_err_code pg_dump_probe(ts_dbsnap *d, ts_err *e)
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

/* Run pg_dump on B's exported snapshot into fd. */
ts_err_code pg_run_dump(ts_dbsnap *d, int fd, const char *rel, ts_err *e)
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

