/* test_env.c - opening and checking Trac environment directories. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "env/env.h"
#include "tutil.h"

/* Room for a scratch path plus what the tests append. */
#define TBUF (PATH_MAX * 2)

/* A scratch directory per test: TOP/env is the environment, TOP itself is
 * "outside" it. */
typedef struct fx {
	char top[PATH_MAX];   /* realpath'd */
	char env[TBUF];
	char ini[TBUF];
} fx;

static void put_ini(fx *x, const char *text)
{
	tu_put_file(x->ini, text);
}

static int setup(void **state)
{
	fx *x = calloc(1, sizeof(*x));
	char path[TBUF];

	assert_non_null(x);
	tu_tmpdir("env", x->top);
	tu_fmt(x->env, sizeof(x->env), "%s/env", x->top);
	tu_fmt(x->ini, sizeof(x->ini), "%s/conf/trac.ini", x->env);
	assert_int_equal(mkdir(x->env, 0755), 0);
	tu_fmt(path, sizeof(path), "%s/conf", x->env);
	assert_int_equal(mkdir(path, 0755), 0);
	tu_fmt(path, sizeof(path), "%s/db", x->env);
	assert_int_equal(mkdir(path, 0755), 0);
	tu_fmt(path, sizeof(path), "%s/VERSION", x->env);
	tu_put_file(path, "Trac Environment Version 1\n");
	put_ini(x, "[trac]\nbase_url =\ndatabase = sqlite:db/trac.db\n");
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	fx *x = *state;

	tu_rm_rf(x->top);
	free(x);
	return 0;
}

/* Open path expecting code, then check the message contains want; a failed
 * open leaves env zeroed. */
static void open_bad(const char *path, ts_err_code code, const char *want)
{
	ts_env env, zero;
	ts_err e;

	memset(&zero, 0, sizeof(zero));
	ts_err_clear(&e);
	if (ts_env_open(path, &env, &e) == TS_OK) {
		ts_env_close(&env);
		fail_msg("%s: opened", path);
	}
	assert_memory_equal(&env, &zero, sizeof(env));
	if (e.code != code || !strstr(e.msg, want))
		fail_msg("%s: got %s '%s', want %s '%s'", path, ts_err_name(e.code), e.msg,
		         ts_err_name(code), want);
	assert_null(strchr(e.msg, '\n'));
}

static void open_ok(const char *path, ts_env *env)
{
	ts_err e;

	ts_err_clear(&e);
	if (ts_env_open(path, env, &e) != TS_OK)
		fail_msg("%s: %s", path, e.msg);
}

static void test_good_sqlite(void **state)
{
	fx *x = *state;
	char want[TBUF];
	ts_env env;
	ts_err e;

	open_ok(x->env, &env);
	assert_string_equal(env.root, x->env);
	assert_string_equal(env.ini_path, x->ini);
	assert_string_equal(env.db_text, "sqlite:db/trac.db");
	assert_int_equal(env.db.kind, TS_DB_SQLITE);
	assert_string_equal(env.db.path, "db/trac.db");
	tu_fmt(want, sizeof(want), "%s/db/trac.db", x->env);
	assert_string_equal(env.db_abs, want);
	assert_string_equal(env.db_rel, "db/trac.db");
	assert_int_equal(ts_env_check_supported(&env, &e), TS_OK);
	ts_env_close(&env);
	assert_null(env.root);
	ts_env_close(&env); /* twice is harmless */
}

static void test_path_forms(void **state)
{
	fx *x = *state;
	char cwd[PATH_MAX], path[TBUF];
	ts_env env;

	/* Relative, with a trailing slash, and through a symlink: root is
	 * always the resolved absolute path. */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(x->top), 0);
	open_ok("env", &env);
	assert_string_equal(env.root, x->env);
	ts_env_close(&env);
	open_ok("./env/", &env);
	assert_string_equal(env.root, x->env);
	ts_env_close(&env);
	assert_int_equal(symlink("env", "link"), 0);
	open_ok("link", &env);
	assert_string_equal(env.root, x->env);
	assert_string_equal(env.db_rel, "db/trac.db");
	ts_env_close(&env);
	assert_int_equal(chdir(cwd), 0);

	tu_fmt(path, sizeof(path), "%s/nope", x->top);
	open_bad(path, TS_ERR_NOTENV, "nope: no such directory");
	tu_fmt(path, sizeof(path), "%s/VERSION", x->env);
	open_bad(path, TS_ERR_NOTENV, "VERSION: not a directory");
}

static void test_version(void **state)
{
	fx *x = *state;
	char path[TBUF];
	ts_env env;

	tu_fmt(path, sizeof(path), "%s/VERSION", x->env);

	/* Only the first line counts, trailing white space aside. */
	tu_put_file(path, "Trac Environment Version 1\r\nsomething else\n");
	open_ok(x->env, &env);
	ts_env_close(&env);
	tu_put_file(path, "Trac Environment Version 1");
	open_ok(x->env, &env);
	ts_env_close(&env);

	tu_put_file(path, "Trac Environment Version 2\n");
	open_bad(x->env, TS_ERR_NOTENV,
	         "not a Trac environment (VERSION does not start with 'Trac Environment Version 1')");
	tu_put_file(path, "Trac Environment Version 10\n");
	open_bad(x->env, TS_ERR_NOTENV, "VERSION does not start with");
	tu_put_file(path, "\nTrac Environment Version 1\n");
	open_bad(x->env, TS_ERR_NOTENV, "VERSION does not start with");
	tu_put_file(path, "");
	open_bad(x->env, TS_ERR_NOTENV, "VERSION does not start with");

	assert_int_equal(unlink(path), 0);
	open_bad(x->env, TS_ERR_NOTENV, "not a Trac environment (VERSION missing)");
}

static void test_ini_unreadable(void **state)
{
	fx *x = *state;
	char want[TBUF];

	assert_int_equal(unlink(x->ini), 0);
	tu_fmt(want, sizeof(want), "%s: missing", x->ini);
	open_bad(x->env, TS_ERR_CONFIG, want);

	/* Root reads anything, so a directory stands in for an unreadable file. */
	assert_int_equal(mkdir(x->ini, 0700), 0);
	tu_fmt(want, sizeof(want), "%s: cannot read: Is a directory", x->ini);
	open_bad(x->env, TS_ERR_CONFIG, want);
	assert_int_equal(rmdir(x->ini), 0);

	/* A FIFO must not hang the check. */
	assert_int_equal(mkfifo(x->ini, 0600), 0);
	open_bad(x->env, TS_ERR_CONFIG, "cannot read: not a regular file");
	assert_int_equal(unlink(x->ini), 0);
}

/* ts_env_open as an account that may not read trac.ini (in a child that
 * drops to nobody: permissions do not stop root).  0: refused with
 * TS_ERR_CONFIG and the message; 1: opened; 2: another error. */
typedef struct perm_case {
	const char *env;
	const char *want;
} perm_case;

static int open_refused(void *arg)
{
	const perm_case *c = arg;
	ts_env env;
	ts_err e;

	ts_err_clear(&e);
	if (ts_env_open(c->env, &env, &e) == TS_OK) {
		ts_env_close(&env);
		return 1;
	}
	if (e.code != TS_ERR_CONFIG || !strstr(e.msg, c->want)) {
		fprintf(stderr, "got %s '%s'\n", ts_err_name(e.code), e.msg);
		return 2;
	}
	return 0;
}

static void test_ini_permission(void **state)
{
	fx *x = *state;
	char want[TBUF];
	perm_case c = { .env = x->env, .want = want };

	/* Everything on the way searchable by nobody, but trac.ini. */
	assert_int_equal(chmod(x->top, 0755), 0);
	tu_fmt(want, sizeof(want), "%s: cannot read: Permission denied", x->ini);
	assert_int_equal(tu_as_nobody(open_refused, &c), 1);   /* readable: opens */
	assert_int_equal(chmod(x->ini, 0), 0);
	assert_int_equal(tu_as_nobody(open_refused, &c), 0);
}

static void test_ini_no_setting(void **state)
{
	fx *x = *state;
	char want[TBUF];

	tu_fmt(want, sizeof(want), "%s: no [trac] database setting", x->ini);
	put_ini(x, "");
	open_bad(x->env, TS_ERR_CONFIG, want);
	put_ini(x, "[logging]\nlog_type = none\n");
	open_bad(x->env, TS_ERR_CONFIG, want);
	put_ini(x, "[trac]\nbase_url = http://x/\n[other]\ndatabase = sqlite:db/trac.db\n");
	open_bad(x->env, TS_ERR_CONFIG, want);
	/* Section names are case-sensitive. */
	put_ini(x, "[Trac]\ndatabase = sqlite:db/trac.db\n");
	open_bad(x->env, TS_ERR_CONFIG, want);
	/* Commented out. */
	put_ini(x, "[trac]\n# database = sqlite:db/trac.db\n; database = sqlite:db/trac.db\n");
	open_bad(x->env, TS_ERR_CONFIG, want);
	/* Before any section. */
	put_ini(x, "database = sqlite:db/trac.db\n[trac]\n");
	open_bad(x->env, TS_ERR_CONFIG, want);
}

static void test_ini_syntax(void **state)
{
	fx *x = *state;
	char line[1024];
	char want[TBUF];
	ts_env env;

	/* "key: value", keys case-insensitive, values trimmed. */
	put_ini(x, "; comment\n[trac]\nDataBase:   sqlite:db/other.db  \t\n");
	open_ok(x->env, &env);
	assert_string_equal(env.db_text, "sqlite:db/other.db");
	assert_string_equal(env.db_rel, "db/other.db");
	ts_env_close(&env);

	/* Continuation lines are ignored, other sections do not interfere,
	 * and a later [trac] section still counts. */
	put_ini(x, "[trac]\nbase_url = x\n[components]\ndatabase = sqlite:wrong.db\n"
	           "[trac]\ndatabase = sqlite:db/trac.db\n  continued\n");
	open_ok(x->env, &env);
	assert_string_equal(env.db_text, "sqlite:db/trac.db");
	ts_env_close(&env);

	/* configparser keeps " ;..." in a value (no inline comments). */
	put_ini(x, "[trac]\ndatabase = sqlite:db/trac.db ;x\n");
	open_ok(x->env, &env);
	assert_string_equal(env.db.path, "db/trac.db ;x");
	ts_env_close(&env);

	/* A line longer than inih's 200-byte buffer is read whole. */
	memset(line, 'p', sizeof(line));
	memcpy(line, "[trac]\ndatabase = sqlite:db/", 28);
	memcpy(line + 500, ".db\n", 5);
	put_ini(x, line);
	open_ok(x->env, &env);
	assert_int_equal(strlen(env.db_text), 500 - 18 + 3);
	tu_fmt(want, sizeof(want), "%s/db/%.*s.db", x->env, 500 - 28, line + 28);
	assert_string_equal(env.db_abs, want);
	ts_env_close(&env);

	/* Malformed value. */
	put_ini(x, "[trac]\ndatabase = postgres:trac\n");
	tu_fmt(want, sizeof(want), "%s: [trac] database: invalid format 'postgres:trac'", x->ini);
	open_bad(x->env, TS_ERR_CONFIG, want);
	put_ini(x, "[trac]\ndatabase =\n");
	open_bad(x->env, TS_ERR_CONFIG, "invalid format ''");
	put_ini(x, "[trac]\ndatabase = postgres://trac:Sekr1t@h:bad/trac\n");
	open_bad(x->env, TS_ERR_CONFIG, "trac:***@h:bad/trac");
}

static void test_sqlite_paths(void **state)
{
	fx *x = *state;
	char text[TBUF], want[TBUF];
	ts_env env;

	/* Lexical normalisation. */
	put_ini(x, "[trac]\ndatabase = sqlite:./db/../db//./trac.db?timeout=5\n");
	open_ok(x->env, &env);
	tu_fmt(want, sizeof(want), "%s/db/trac.db", x->env);
	assert_string_equal(env.db_abs, want);
	assert_string_equal(env.db_rel, "db/trac.db");
	assert_int_equal(env.db.timeout_s, 5);
	ts_env_close(&env);

	/* Absolute path inside the environment. */
	tu_fmt(text, sizeof(text), "[trac]\ndatabase = sqlite:%s/db/abs.db\n", x->env);
	put_ini(x, text);
	open_ok(x->env, &env);
	assert_string_equal(env.db_rel, "db/abs.db");
	ts_env_close(&env);

	/* Absolute path outside: external. */
	tu_fmt(text, sizeof(text), "[trac]\ndatabase = sqlite:%s/elsewhere/x.db\n", x->top);
	put_ini(x, text);
	open_ok(x->env, &env);
	tu_fmt(want, sizeof(want), "%s/elsewhere/x.db", x->top);
	assert_string_equal(env.db_abs, want);
	assert_null(env.db_rel);
	ts_env_close(&env);

	/* Relative but leaving the environment. */
	put_ini(x, "[trac]\ndatabase = sqlite:../x.db\n");
	open_ok(x->env, &env);
	tu_fmt(want, sizeof(want), "%s/x.db", x->top);
	assert_string_equal(env.db_abs, want);
	assert_null(env.db_rel);
	ts_env_close(&env);

	/* A sibling whose name starts like the environment is outside. */
	put_ini(x, "[trac]\ndatabase = sqlite:../env2/x.db\n");
	open_ok(x->env, &env);
	assert_null(env.db_rel);
	ts_env_close(&env);

	/* Top-level file. */
	put_ini(x, "[trac]\ndatabase = sqlite:trac.db\n");
	open_ok(x->env, &env);
	assert_string_equal(env.db_rel, "trac.db");
	ts_env_close(&env);
}

static void test_sqlite_symlinked_dir(void **state)
{
	fx *x = *state;
	char path[TBUF], want[TBUF];
	ts_env env;

	/* db/ is a link to a directory outside: the database is external. */
	tu_fmt(path, sizeof(path), "%s/realdb", x->top);
	assert_int_equal(mkdir(path, 0755), 0);
	tu_fmt(path, sizeof(path), "%s/db", x->env);
	assert_int_equal(rmdir(path), 0);
	assert_int_equal(symlink("../realdb", path), 0);
	open_ok(x->env, &env);
	tu_fmt(want, sizeof(want), "%s/realdb/trac.db", x->top);
	assert_string_equal(env.db_abs, want);
	assert_null(env.db_rel);
	ts_env_close(&env);

	/* A link inside the environment: db_rel is where the file really is. */
	assert_int_equal(unlink(path), 0);
	tu_fmt(path, sizeof(path), "%s/data", x->env);
	assert_int_equal(mkdir(path, 0755), 0);
	tu_fmt(path, sizeof(path), "%s/db", x->env);
	assert_int_equal(symlink("data", path), 0);
	open_ok(x->env, &env);
	assert_string_equal(env.db_rel, "data/trac.db");
	ts_env_close(&env);
}

/* The environment's owner may not make root read a file outside it:
 * VERSION, conf/ and trac.ini are never read through a symlink. */
static void test_no_symlink_reads(void **state)
{
	fx *x = *state;
	char p[TBUF], t[TBUF];

	tu_mkdir_in(x->top, "outside", 0700);
	tu_put_in(x->top, "outside/VERSION", "Trac Environment Version 1\n", 0600);
	tu_put_in(x->top, "outside/trac.ini", "[trac]\ndatabase = sqlite:/root/secret.db\n", 0600);

	tu_fmt(p, sizeof p, "%s/VERSION", x->env);
	tu_fmt(t, sizeof t, "%s/outside/VERSION", x->top);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(symlink(t, p), 0);
	open_bad(x->env, TS_ERR_NOTENV, "(VERSION is a symlink)");
	assert_int_equal(unlink(p), 0);
	tu_put_file(p, "Trac Environment Version 1\n");

	tu_fmt(t, sizeof t, "%s/outside/trac.ini", x->top);
	assert_int_equal(unlink(x->ini), 0);
	assert_int_equal(symlink(t, x->ini), 0);
	open_bad(x->env, TS_ERR_CONFIG, "trac.ini: cannot read: a symlink");
	assert_int_equal(unlink(x->ini), 0);

	/* conf/ itself a link to a directory outside holding a trac.ini */
	tu_fmt(p, sizeof p, "%s/conf", x->env);
	assert_int_equal(rmdir(p), 0);
	tu_fmt(t, sizeof t, "%s/outside", x->top);
	assert_int_equal(symlink(t, p), 0);
	tu_put_in(x->top, "outside/trac.ini", "[trac]\ndatabase = sqlite:/root/secret.db\n", 0600);
	open_bad(x->env, TS_ERR_CONFIG, "trac.ini: cannot read: a symlink");
}

static void test_postgres_and_mysql(void **state)
{
	fx *x = *state;
	char want[TBUF];
	ts_env env;
	ts_err e;

	put_ini(x, "[trac]\ndatabase = postgres://trac:tracpw@127.0.0.1:5432/tracfx\n");
	open_ok(x->env, &env);
	assert_int_equal(env.db.kind, TS_DB_POSTGRES);
	assert_string_equal(env.db.dbname, "tracfx");
	assert_null(env.db_abs);
	assert_null(env.db_rel);
	assert_string_equal(env.db.schema, "public");
	/* PostgreSQL is snapshotted through libpq and pg_dump now. */
	assert_int_equal(ts_env_check_supported(&env, &e), TS_OK);
	ts_env_close(&env);

	put_ini(x, "[trac]\ndatabase = postgres://trac:pw@/tracfx?host=/run/pg&schema=trac\n");
	open_ok(x->env, &env);
	assert_int_equal(env.db.kind, TS_DB_POSTGRES);
	assert_string_equal(env.db.socket_dir, "/run/pg");
	assert_string_equal(env.db.schema, "trac");
	assert_int_equal(ts_env_check_supported(&env, &e), TS_OK);
	ts_env_close(&env);

	put_ini(x, "[trac]\ndatabase = mysql://trac:pw@localhost/trac\n");
	open_ok(x->env, &env);
	assert_int_equal(env.db.kind, TS_DB_MYSQL);
	assert_null(env.db_abs);
	assert_int_equal(ts_env_check_supported(&env, &e), TS_ERR_UNSUPPORTED);
	tu_fmt(want, sizeof(want), "%s: [trac] database: MySQL is not supported "
	         "(tracsnap supports SQLite and PostgreSQL)", x->ini);
	assert_string_equal(e.msg, want);
	ts_env_close(&env);
}

static void test_path_is_under(void **state)
{
	(void)state;
	assert_true(ts_path_is_under("/srv/trac", "/srv/trac"));
	assert_true(ts_path_is_under("/srv/trac/db/trac.db", "/srv/trac"));
	assert_true(ts_path_is_under("/srv/trac/db", "/srv/trac/"));
	assert_false(ts_path_is_under("/srv/trac2", "/srv/trac"));
	assert_false(ts_path_is_under("/srv/tra", "/srv/trac"));
	assert_false(ts_path_is_under("/srv", "/srv/trac"));
	assert_false(ts_path_is_under("/other/x", "/srv/trac"));
	assert_true(ts_path_is_under("/anything", "/"));
	assert_true(ts_path_is_under("/", "/"));
	assert_false(ts_path_is_under("/x", ""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_good_sqlite, setup, teardown),
		cmocka_unit_test_setup_teardown(test_path_forms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ini_unreadable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ini_permission, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ini_no_setting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ini_syntax, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sqlite_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sqlite_symlinked_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_symlink_reads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_postgres_and_mysql, setup, teardown),
		cmocka_unit_test(test_path_is_under),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
