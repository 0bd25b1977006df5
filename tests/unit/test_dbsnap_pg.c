/* test_dbsnap_pg.c - the PostgreSQL backend's parts that need no server:
 * display URI, messages, password file, pg_dump's environment, command line
 * and version check, and the dump header fix.  pg_dump is played by a shell
 * script put first in PATH; it records what it was given.
 *
 * The backend's helpers are the ones its files share through their private
 * header, db/pg/pg_int.h. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "db/pg/pg_int.h"
#include "tutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* A password with everything a passfile or URI must escape. */
#define PW "p@ss:w\\rd s3cr3t"

typedef struct fx {
	char dir[64];           /* temp dir: bin/ for the fake pg_dump, records */
	char bin[96];
	char *old_path;
	ts_env env;
	ts_dbsnap d;
	pg_impl im;
} fx;

static int setup(void **state)
{
	fx *x = calloc(1, sizeof *x);
	const char *p = getenv("PATH");

	assert_non_null(x);
	strcpy(x->dir, "/tmp/ts-test-pg-XXXXXX");
	assert_non_null(mkdtemp(x->dir));
	snprintf(x->bin, sizeof x->bin, "%s/bin", x->dir);
	assert_int_equal(mkdir(x->bin, 0755), 0);
	x->old_path = strdup(p ? p : "/usr/bin:/bin");
	{
		char *np = NULL;
		assert_true(asprintf(&np, "%s:%s", x->bin, x->old_path) > 0);
		setenv("PATH", np, 1);
		free(np);
	}
	x->env.root = strdup(x->dir);
	x->env.ini_path = strdup("/srv/trac/x/conf/trac.ini");
	x->env.db.kind = TS_DB_POSTGRES;
	x->env.db.user = strdup("trac");
	x->env.db.password = strdup(PW);
	x->env.db.host = strdup("127.0.0.1");
	x->env.db.port = 5433;
	x->env.db.dbname = strdup("tracfx");
	x->env.db.schema = strdup("public");
	x->d.env = &x->env;
	x->d.timeout_s = 7;
	x->d.impl = &x->im;
	x->im.display = pg_display(&x->env.db);
	strcpy(x->im.snapshot, "00000003-0000001B-1");
	x->im.server_version = 150018;
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	fx *x = *state;

	setenv("PATH", x->old_path, 1);
	free(x->old_path);
	free(x->im.display);
	ts_env_close(&x->env);
	tu_rm_rf(x->dir);
	free(x);
	return 0;
}

/* Install bin/pg_dump with this body (after a #!/bin/sh line). */
static void fake_pg_dump(fx *x, const char *body)
{
	char path[160];
	FILE *f;

	snprintf(path, sizeof path, "%s/pg_dump", x->bin);
	unlink(path);
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "#!/bin/sh\nREC='%s'\n%s", x->dir, body);
	fclose(f);
	assert_int_equal(chmod(path, 0755), 0);
}

static bool mem_has(const char *buf, size_t n, const char *needle)
{
	return memmem(buf, n, needle, strlen(needle)) != NULL;
}

/* ---------------------------------------------------------------- text */

static void test_display(void **state)
{
	ts_dburi u;
	char *s;

	(void)state;
	memset(&u, 0, sizeof u);
	u.user = "trac";
	u.password = "secret";
	u.host = "127.0.0.1";
	u.port = 5432;
	u.dbname = "tracfx";
	s = pg_display(&u);
	assert_string_equal(s, "postgres://trac@127.0.0.1:5432/tracfx");
	free(s);
	u.host = "::1";
	s = pg_display(&u);
	assert_string_equal(s, "postgres://trac@[::1]:5432/tracfx");
	free(s);
	u.host = NULL;
	u.port = 0;
	u.socket_dir = "/run/postgresql";
	s = pg_display(&u);
	assert_string_equal(s, "postgres://trac@/tracfx?host=/run/postgresql");
	assert_null(strstr(s, "secret"));
	free(s);
}

static void test_one_line_and_scrub(void **state)
{
	char m[] = "connection to server at \"h\", port 1 failed: Connection refused\n"
	           "\tIs the server running on that host?\n";
	char p[] = "FATAL: xx secret yy secretsecret";

	(void)state;
	pg_one_line(m);
	assert_string_equal(m, "connection to server at \"h\", port 1 failed: Connection refused "
	                       "Is the server running on that host?");
	pg_scrub(p, "secret");
	assert_string_equal(p, "FATAL: xx ****** yy ************");
	pg_scrub(p, NULL);
	pg_scrub(p, "");
}

static void test_passfile_line(void **state)
{
	bool unfit;
	char *l;

	(void)state;
	l = pg_passfile_line("a:b\\c d", &unfit);
	assert_false(unfit);
	assert_string_equal(l, "*:*:*:*:a\\:b\\\\c d\n");
	free(l);
	l = pg_passfile_line("two\nlines", &unfit);
	assert_null(l);
	assert_true(unfit);
}

static void test_versions(void **state)
{
	char v[32];

	(void)state;
	assert_int_equal(pg_dump_parse_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n",
	                                       v, sizeof v), 1500);
	assert_string_equal(v, "15.18");
	assert_int_equal(pg_dump_parse_version("pg_dump (PostgreSQL) 9.6.24\n", v, sizeof v), 906);
	assert_int_equal(pg_dump_parse_version("pg_dump (PostgreSQL) 17devel\n", v, sizeof v), 1700);
	assert_int_equal(pg_dump_parse_version("something else 1.0\n", v, sizeof v), -1);
	assert_int_equal(pg_major_code(150018), 1500);
	assert_int_equal(pg_major_code(90624), 906);
	assert_int_equal(pg_major_code(100001), 1000);
}

static void test_child_env(void **state)
{
	fx *x = *state;
	char *base[] = { "PATH=/usr/bin", "PGPASSWORD=old", "PGHOST=elsewhere", "PGSSLMODE=require",
	                 "HOME=/root", NULL };
	char **env = pg_child_env(&x->env.db, base, "/proc/self/fd/3", false);
	size_t n = 0;
	bool host = false, port = false, db = false, user = false, pf = false, ssl = false;

	assert_non_null(env);
	for (char **p = env; *p; p++, n++) {
		assert_null(strstr(*p, PW));
		assert_int_not_equal(strncmp(*p, "PGPASSWORD=", 11), 0);
		host |= !strcmp(*p, "PGHOST=127.0.0.1");
		port |= !strcmp(*p, "PGPORT=5433");
		db |= !strcmp(*p, "PGDATABASE=tracfx");
		user |= !strcmp(*p, "PGUSER=trac");
		pf |= !strcmp(*p, "PGPASSFILE=/proc/self/fd/3");
		ssl |= !strcmp(*p, "PGSSLMODE=require");   /* the administrator's settings stay */
		assert_int_not_equal(strcmp(*p, "PGHOST=elsewhere"), 0);
	}
	assert_true(host && port && db && user && pf && ssl);
	pg_env_free(env);

	/* Fallback: the password in the environment, never on argv. */
	env = pg_child_env(&x->env.db, base, NULL, true);
	n = 0;
	for (char **p = env; *p; p++)
		n += !strcmp(*p, "PGPASSWORD=" PW);
	assert_int_equal(n, 1);
	pg_env_free(env);

	/* A Unix socket directory is the host. */
	free(x->env.db.host);
	x->env.db.host = NULL;
	x->env.db.socket_dir = strdup("/run/pg");
	env = pg_child_env(&x->env.db, base, NULL, false);
	n = 0;
	for (char **p = env; *p; p++)
		n += !strcmp(*p, "PGHOST=/run/pg");
	assert_int_equal(n, 1);
	pg_env_free(env);
}

/* ------------------------------------------------------ the header fix */

typedef struct feed {
	int fd;
	const char *data;
	size_t len;
} feed;

static void *feeder(void *arg)
{
	feed *f = arg;
	assert_int_equal(pg_write_all(f->fd, f->data, f->len), 0);
	close(f->fd);
	return NULL;
}

/* Run pg_stream over input; return what it wrote (malloc'd). */
static char *stream(fx *x, const char *input, size_t len, size_t *outlen)
{
	int p[2], out;
	char path[160];
	pthread_t th;
	feed f;
	ts_err e;
	char *res;

	snprintf(path, sizeof path, "%s/out.sql", x->dir);
	unlink(path);
	out = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(out >= 0);
	assert_int_equal(pipe(p), 0);
	f.fd = p[1];
	f.data = input;
	f.len = len;
	assert_int_equal(pthread_create(&th, NULL, feeder, &f), 0);
	assert_int_equal(pg_stream(&x->d, p[0], out, "db/x.sql", &e), TS_OK);
	pthread_join(th, NULL);
	close(p[0]);
	close(out);
	res = tu_slurp(path, outlen);
	return res;
}

#define HEAD "--\n-- PostgreSQL database dump\n--\n\nSET lock_timeout = 0;\n\n" \
             "CREATE SCHEMA public;\n\nCOMMENT ON SCHEMA public IS 'standard public schema';\n\n"
#define BODY "CREATE TABLE public.attachment (\n    type text\n);\n" \
             "COPY public.attachment (type) FROM stdin;\nCREATE SCHEMA public;\n\\.\n"

static void test_header_fix_public(void **state)
{
	fx *x = *state;
	size_t n;
	char *out = stream(x, HEAD BODY, strlen(HEAD BODY), &n);

	assert_non_null(strstr(out, "\n-- (tracsnap: every database has the public schema) "
	                            "CREATE SCHEMA public;\n"));
	assert_non_null(strstr(out, "\n-- (tracsnap: every database has the public schema) "
	                            "COMMENT ON SCHEMA public IS 'standard public schema';\n"));
	/* Only the header: data that happens to read the same stays. */
	assert_non_null(strstr(out, "FROM stdin;\nCREATE SCHEMA public;\n\\.\n"));
	assert_non_null(strstr(out, BODY));
	free(out);
}

static void test_header_fix_other_schema_untouched(void **state)
{
	fx *x = *state;
	const char *in = "CREATE SCHEMA trac;\n" BODY;
	size_t n;
	char *out;

	free(x->env.db.schema);
	x->env.db.schema = strdup("trac");
	out = stream(x, in, strlen(in), &n);
	assert_int_equal(n, strlen(in));
	assert_memory_equal(out, in, n);
	free(out);
}

static void test_header_fix_large_dump(void **state)
{
	fx *x = *state;
	size_t blen = 3u << 20, n, hl = strlen(HEAD);
	char *in = malloc(hl + blen + 1), *out;

	/* Megabytes of data after the header pass through unchanged. */
	memcpy(in, HEAD, hl);
	for (size_t i = 0; i < blen; i++)
		in[hl + i] = i % 61 == 60 ? '\n' : (char)('a' + i % 26);
	memcpy(in + hl, "CREATE TABLE t (a int);\n", 24);
	out = stream(x, in, hl + blen, &n);
	assert_int_equal(n, hl + blen + 2 * strlen("-- (tracsnap: every database has the public schema) "));
	assert_memory_equal(out + n - (blen - 24), in + hl + 24, blen - 24);
	free(in);
	free(out);
}

static void test_header_fix_no_table(void **state)
{
	fx *x = *state;
	size_t n;
	char *out = stream(x, HEAD, strlen(HEAD), &n);

	assert_non_null(strstr(out, "-- (tracsnap: every database has the public schema) CREATE SCHEMA public;\n"));
	free(out);
}

/* ---------------------------------------------------- pg_dump itself */

static void test_dump_command_and_password(void **state)
{
	fx *x = *state;
	char path[160], *s;
	size_t n;
	ts_err e;
	int fd;

	fake_pg_dump(x,
	    "tr '\\0' '\\n' < /proc/$$/cmdline > \"$REC/cmdline\"\n"
	    "tr '\\0' '\\n' < /proc/$$/environ > \"$REC/environ\"\n"
	    "cat \"$PGPASSFILE\" > \"$REC/passfile\"\n"
	    "stat -L -c %a \"$PGPASSFILE\" > \"$REC/passmode\"\n"
	    "ls /proc/$$/fd > \"$REC/fds\"\n"
	    "printf -- '--\\nCREATE SCHEMA public;\\nCREATE TABLE public.t (a int);\\n'\n");
	snprintf(path, sizeof path, "%s/dump.sql", x->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	/* A descriptor some library left without close-on-exec. */
	assert_int_equal(dup2(fd, 57), 57);
	ts_err_clear(&e);
	if (pg_run_dump(&x->d, fd, "db/postgres-db-backup.sql", &e) != TS_OK)
		fail_msg("pg_run_dump: %s", e.msg);
	close(fd);
	close(57);

	s = tu_slurp(path, &n);
	assert_string_equal(s, "--\n-- (tracsnap: every database has the public schema) CREATE SCHEMA public;\n"
	                       "CREATE TABLE public.t (a int);\n");
	free(s);

	snprintf(path, sizeof path, "%s/cmdline", x->dir);
	s = tu_slurp(path, &n);
	assert_false(mem_has(s, n, PW));
	assert_false(mem_has(s, n, "s3cr3t"));
	assert_true(mem_has(s, n, "\n--snapshot=00000003-0000001B-1\n"));
	assert_true(mem_has(s, n, "\n--schema=\"public\"\n"));
	assert_true(mem_has(s, n, "\n--no-owner\n"));
	assert_true(mem_has(s, n, "\n--no-privileges\n"));
	assert_true(mem_has(s, n, "\n--format=plain\n"));
	assert_true(mem_has(s, n, "\n--no-password\n"));
	assert_true(mem_has(s, n, "\n--lock-wait-timeout=7000\n"));
	free(s);

	snprintf(path, sizeof path, "%s/environ", x->dir);
	s = tu_slurp(path, &n);
	assert_false(mem_has(s, n, "s3cr3t"));
	assert_false(mem_has(s, n, "PGPASSWORD="));
	assert_true(mem_has(s, n, "PGPASSFILE=/proc/self/fd/3\n"));
	assert_true(mem_has(s, n, "PGUSER=trac\n"));
	free(s);

	snprintf(path, sizeof path, "%s/passfile", x->dir);
	s = tu_slurp(path, &n);
	assert_string_equal(s, "*:*:*:*:p@ss\\:w\\\\rd s3cr3t\n");
	free(s);
	snprintf(path, sizeof path, "%s/passmode", x->dir);
	s = tu_slurp(path, &n);
	assert_string_equal(s, "600\n");
	free(s);

	/* The password file on 3; nothing else of ours leaks into the child. */
	snprintf(path, sizeof path, "%s/fds", x->dir);
	s = tu_slurp(path, &n);
	assert_true(mem_has(s, n, "\n3\n"));
	assert_false(mem_has(s, n, "\n57\n"));
	free(s);
}

static void test_dump_schema_pattern_quoted(void **state)
{
	fx *x = *state;
	char path[160], *s;
	size_t n;
	ts_err e;
	int fd;

	free(x->env.db.schema);
	x->env.db.schema = strdup("Tr\"ac.*");
	fake_pg_dump(x, "tr '\\0' '\\n' < /proc/$$/cmdline > \"$REC/cmdline\"\n");
	snprintf(path, sizeof path, "%s/dump.sql", x->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_int_equal(pg_run_dump(&x->d, fd, "db/x", &e), TS_OK);
	close(fd);
	snprintf(path, sizeof path, "%s/cmdline", x->dir);
	s = tu_slurp(path, &n);
	assert_true(mem_has(s, n, "\n--schema=\"Tr\"\"ac.*\"\n"));
	free(s);
}

static void test_dump_failure_message(void **state)
{
	fx *x = *state;
	char path[160];
	ts_err e;
	int fd;

	fake_pg_dump(x, "printf '%s\\n' 'pg_dump: error: query failed: p@ss:w\\rd s3cr3t' >&2\n"
	                "echo 'pg_dump: detail: second line' >&2\nexit 1\n");
	snprintf(path, sizeof path, "%s/dump.sql", x->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_int_equal(pg_run_dump(&x->d, fd, "db/x", &e), TS_ERR_DB);
	close(fd);
	assert_null(strstr(e.msg, "s3cr3t"));
	assert_null(strchr(e.msg, '\n'));
	assert_string_equal(e.msg, "postgres://trac@127.0.0.1:5433/tracfx: pg_dump failed (exit 1): "
	                           "pg_dump: error: query failed: **************** "
	                           "pg_dump: detail: second line");
}

static void test_probe(void **state)
{
	fx *x = *state;
	char path[160];
	ts_err e;

	fake_pg_dump(x, "echo 'pg_dump (PostgreSQL) 15.3'\n");
	ts_err_clear(&e);
	assert_int_equal(pg_dump_probe(&x->d, &e), TS_OK);
	x->im.server_version = 160001;
	assert_int_equal(pg_dump_probe(&x->d, &e), TS_ERR_UNSUPPORTED);
	assert_non_null(strstr(e.msg, "pg_dump 15.3 cannot dump a PostgreSQL ? server"));
	assert_non_null(strstr(e.msg, "install postgresql-client-16"));
	fake_pg_dump(x, "echo 'pg_dump (PostgreSQL) 9.1.24'\n");
	assert_int_equal(pg_dump_probe(&x->d, &e), TS_ERR_UNSUPPORTED);
	assert_non_null(strstr(e.msg, "too old"));
	fake_pg_dump(x, "echo 'not it'\n");
	assert_int_equal(pg_dump_probe(&x->d, &e), TS_ERR_UNSUPPORTED);
	assert_non_null(strstr(e.msg, "not PostgreSQL's pg_dump"));
	fake_pg_dump(x, "echo broken >&2; exit 3\n");
	assert_int_equal(pg_dump_probe(&x->d, &e), TS_ERR_UNSUPPORTED);
	assert_non_null(strstr(e.msg, "pg_dump --version failed (exit 3): broken"));

	/* Absent: PATH without any pg_dump. */
	snprintf(path, sizeof path, "%s/pg_dump", x->bin);
	unlink(path);
	setenv("PATH", x->bin, 1);
	assert_int_equal(pg_dump_probe(&x->d, &e), TS_ERR_UNSUPPORTED);
	assert_string_equal(e.msg, "postgres://trac@127.0.0.1:5433/tracfx: pg_dump not found in PATH "
	                           "(install postgresql-client)");
}

/* ------------------------------------------------------ connection errors */

static void test_connect_refused(void **state)
{
	fx *x = *state;
	ts_env env;
	ts_dbsnap *d = NULL;
	ts_err e;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;

	/* A port that nobody listens on: bind one, never listen. */
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
	memset(&env, 0, sizeof env);
	env = x->env;
	env.db.port = ntohs(a.sin_port);
	assert_int_equal(ts_dbsnap_open(&env, 5, &d, &e), TS_ERR_DB);
	assert_null(d);
	close(s);
	assert_non_null(strstr(e.msg, "postgres://trac@127.0.0.1:"));
	assert_non_null(strstr(e.msg, ": cannot connect ([trac] database in /srv/trac/x/conf/trac.ini): "));
	assert_null(strstr(e.msg, "s3cr3t"));
	assert_null(strchr(e.msg, '\n'));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_display),
		cmocka_unit_test(test_one_line_and_scrub),
		cmocka_unit_test(test_passfile_line),
		cmocka_unit_test(test_versions),
		cmocka_unit_test_setup_teardown(test_child_env, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_fix_public, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_fix_other_schema_untouched, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_fix_large_dump, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_fix_no_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dump_command_and_password, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dump_schema_pattern_quoted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dump_failure_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_probe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
