/* test_dburi.c - parsing of Trac's [trac] database value. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "env/dburi.h"

#define WHAT "/srv/trac/x/conf/trac.ini: [trac] database"

static void parse_ok(const char *text, ts_dburi *u)
{
	ts_err e;

	ts_err_clear(&e);
	if (ts_dburi_parse(text, WHAT, u, &e) != TS_OK)
		fail_msg("'%s' refused: %s", text, e.msg);
	assert_int_equal(e.code, TS_OK);
}

/* Refused with TS_ERR_CONFIG, *out left zeroed, message names the setting;
 * returns the message for further checks. */
static const char *parse_bad(const char *text, ts_err *e)
{
	ts_dburi u, zero;

	memset(&u, 0x5a, sizeof(u));
	memset(&zero, 0, sizeof(zero));
	ts_err_clear(e);
	if (ts_dburi_parse(text, WHAT, &u, e) == TS_OK)
		fail_msg("'%s' accepted", text);
	assert_int_equal(e->code, TS_ERR_CONFIG);
	assert_memory_equal(&u, &zero, sizeof(u));
	assert_non_null(strstr(e->msg, WHAT ": "));
	assert_null(strchr(e->msg, '\n'));
	return e->msg;
}

static void test_sqlite_relative(void **state)
{
	ts_dburi u;

	(void)state;
	parse_ok("sqlite:db/trac.db", &u);
	assert_int_equal(u.kind, TS_DB_SQLITE);
	assert_string_equal(u.path, "db/trac.db");
	assert_int_equal(u.timeout_s, 10);
	assert_null(u.journal_mode);
	assert_null(u.user);
	assert_null(u.password);
	assert_null(u.dbname);
	assert_null(u.schema);
	ts_dburi_free(&u);
	assert_null(u.path);
}

static void test_sqlite_absolute_and_params(void **state)
{
	ts_dburi u;

	(void)state;
	parse_ok("sqlite:/abs/path/trac.db", &u);
	assert_string_equal(u.path, "/abs/path/trac.db");
	ts_dburi_free(&u);

	parse_ok("sqlite:db/trac.db?timeout=30&journal_mode=WAL&synchronous=NORMAL&cursor=x&bogus=1", &u);
	assert_string_equal(u.path, "db/trac.db");
	assert_int_equal(u.timeout_s, 30);
	assert_string_equal(u.journal_mode, "WAL");
	ts_dburi_free(&u);

	/* Unknown parameters alone; parameter without '='. */
	parse_ok("sqlite:x.db?foo&bar=", &u);
	assert_string_equal(u.path, "x.db");
	assert_int_equal(u.timeout_s, 10);
	ts_dburi_free(&u);

	/* A decimal timeout rounds up, never down to zero. */
	parse_ok("sqlite:x.db?timeout=2.5", &u);
	assert_int_equal(u.timeout_s, 3);
	ts_dburi_free(&u);
	parse_ok("sqlite:x.db?timeout=0", &u);
	assert_int_equal(u.timeout_s, 0);
	ts_dburi_free(&u);

	/* sqlite:// is not special: what follows ':' is the path. */
	parse_ok("sqlite://x.db", &u);
	assert_string_equal(u.path, "//x.db");
	ts_dburi_free(&u);

	/* Percent-decoded path. */
	parse_ok("sqlite:db/my%20trac.db", &u);
	assert_string_equal(u.path, "db/my trac.db");
	ts_dburi_free(&u);
	parse_ok("sqlite:db/100%.db", &u);
	assert_string_equal(u.path, "db/100%.db");
	ts_dburi_free(&u);
}

static void test_sqlite_bad(void **state)
{
	ts_err e;

	(void)state;
	assert_non_null(strstr(parse_bad("sqlite:", &e), "invalid format 'sqlite:'"));
	assert_non_null(strstr(parse_bad("sqlite:?timeout=3", &e), "invalid format"));
	assert_non_null(strstr(parse_bad("sqlite:x.db?timeout=abc", &e), "timeout 'abc'"));
	parse_bad("sqlite:x.db?timeout=", &e);
	parse_bad("sqlite:x.db?timeout=-1", &e);
	parse_bad("sqlite:x.db?timeout=10s", &e);
	parse_bad("sqlite:x.db?timeout=99999999999", &e);
	parse_bad("sqlite:x%00y.db", &e);
}

static void test_postgres_full(void **state)
{
	ts_dburi u;

	(void)state;
	parse_ok("postgres://trac:tracpw@127.0.0.1:5432/tracfx", &u);
	assert_int_equal(u.kind, TS_DB_POSTGRES);
	assert_string_equal(u.user, "trac");
	assert_string_equal(u.password, "tracpw");
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 5432);
	assert_string_equal(u.dbname, "tracfx");
	assert_string_equal(u.schema, "public");
	assert_null(u.socket_dir);
	assert_null(u.path);
	ts_dburi_free(&u);

	parse_ok("postgresql://u@db.example.org/trac?schema=tracschema", &u);
	assert_int_equal(u.kind, TS_DB_POSTGRES);
	assert_string_equal(u.user, "u");
	assert_null(u.password);
	assert_string_equal(u.host, "db.example.org");
	assert_int_equal(u.port, 0);
	assert_string_equal(u.schema, "tracschema");
	ts_dburi_free(&u);
}

static void test_postgres_decoding(void **state)
{
	ts_dburi u;

	(void)state;
	parse_ok("postgres://us%65r:p%40ss@h/db", &u);
	assert_string_equal(u.user, "user");
	assert_string_equal(u.password, "p@ss");
	assert_string_equal(u.host, "h");
	ts_dburi_free(&u);

	/* A raw '@' in the password: the last '@' ends the user part. */
	parse_ok("postgres://u:p@ss@h/db", &u);
	assert_string_equal(u.user, "u");
	assert_string_equal(u.password, "p@ss");
	assert_string_equal(u.host, "h");
	ts_dburi_free(&u);

	/* Empty password is a password. */
	parse_ok("postgres://u:@h/db", &u);
	assert_string_equal(u.password, "");
	ts_dburi_free(&u);
}

static void test_postgres_socket(void **state)
{
	ts_dburi u;

	(void)state;
	parse_ok("postgres://user:pw@/trac?host=/var/run/postgresql", &u);
	assert_null(u.host);
	assert_int_equal(u.port, 0);
	assert_string_equal(u.socket_dir, "/var/run/postgresql");
	assert_string_equal(u.dbname, "trac");
	assert_string_equal(u.schema, "public");
	ts_dburi_free(&u);

	parse_ok("postgres://u@:5433/trac?schema=s&host=/tmp", &u);
	assert_null(u.host);
	assert_int_equal(u.port, 5433);
	assert_string_equal(u.socket_dir, "/tmp");
	assert_string_equal(u.schema, "s");
	ts_dburi_free(&u);

	/* No user at all: libpq's default, and no '@'. */
	parse_ok("postgres://localhost/trac", &u);
	assert_null(u.user);
	assert_null(u.password);
	assert_string_equal(u.host, "localhost");
	ts_dburi_free(&u);

	parse_ok("postgres:///trac?host=/run/pg", &u);
	assert_null(u.user);
	assert_null(u.host);
	assert_string_equal(u.socket_dir, "/run/pg");
	ts_dburi_free(&u);

	parse_ok("postgres://u@[::1]:6000/trac", &u);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 6000);
	ts_dburi_free(&u);
}

static void test_postgres_bad(void **state)
{
	ts_err e;

	(void)state;
	assert_non_null(strstr(parse_bad("postgres:trac", &e),
	                       "invalid format 'postgres:trac' (expected postgres://"));
	assert_non_null(strstr(parse_bad("postgres://u@h:abc/db", &e), "invalid format"));
	parse_bad("postgres://u@h:0/db", &e);
	parse_bad("postgres://u@h:65536/db", &e);
	parse_bad("postgres://u@h:/db", &e);
	parse_bad("postgres://u@h:-5/db", &e);
	parse_bad("postgres://u@h:1:2/db", &e);
	parse_bad("postgres://u@h/", &e);
	parse_bad("postgres://u@h", &e);
	parse_bad("postgres://u@h/?schema=x", &e);
	parse_bad("postgres://@h/db", &e);
	parse_bad("postgres://u@h/db?schema=", &e);
	parse_bad("postgres:/h/db", &e);
}

static void test_port_bounds(void **state)
{
	ts_dburi u;

	(void)state;
	parse_ok("postgres://u@h:1/db", &u);
	assert_int_equal(u.port, 1);
	ts_dburi_free(&u);
	parse_ok("postgres://u@h:65535/db", &u);
	assert_int_equal(u.port, 65535);
	ts_dburi_free(&u);
}

static void test_mysql_and_others(void **state)
{
	ts_dburi u;
	ts_err e;

	(void)state;
	parse_ok("mysql://trac:s3cret@localhost/trac?charset=utf8mb4", &u);
	assert_int_equal(u.kind, TS_DB_MYSQL);
	assert_null(u.path);
	ts_dburi_free(&u);

	assert_string_equal(parse_bad("oracle://u:pw@h/db", &e),
	                    WHAT ": unsupported database scheme 'oracle' "
	                    "(tracsnap supports sqlite: and postgres://)");
	/* The scheme is case-sensitive, as in Trac. */
	assert_non_null(strstr(parse_bad("SQLITE:db/trac.db", &e), "scheme 'SQLITE'"));
	assert_non_null(strstr(parse_bad("db/trac.db", &e), "invalid format 'db/trac.db'"));
	parse_bad("", &e);
}

/* No refusal may show the password, in any of its spellings. */
static void test_password_never_in_messages(void **state)
{
	static const char *const bad[] = {
		"postgres://u:Sekr1t@h:abc/db",
		"postgres://u:Sekr1t@h:99999/db",
		"postgres://u:Sekr1t@h/",
		"postgres://u:Sekr1t@h/db?schema=",
		"postgres://u:Sekr1t@h/d%00b",
		"postgres://u:Sek/r1t@h/db",   /* raw '/' confuses the parse */
		"postgres://u:Sek?r1t@h:x/db", /* raw '?' too */
		"postgres:u:Sekr1t@h/db",
		"postgres://h:x/db?password=Sekr1t",
		"postgresX://u:Sekr1t@h/db",
	};
	size_t i;
	ts_err e;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *msg = parse_bad(bad[i], &e);

		if (strstr(msg, "Sekr1t") || strstr(msg, "r1t"))
			fail_msg("password shown for '%s': %s", bad[i], msg);
	}
	/* The redacted value is what the message shows. */
	parse_bad("postgres://u:Sekr1t@h:abc/db", &e);
	assert_non_null(strstr(e.msg, "'postgres://u:***@h:abc/db'"));
}

static void redact_is(const char *text, const char *want)
{
	char *r = ts_dburi_redact(text);

	assert_non_null(r);
	assert_string_equal(r, want);
	free(r);
}

static void test_redact(void **state)
{
	(void)state;
	redact_is("postgres://trac:tracpw@127.0.0.1:5432/tracfx",
	          "postgres://trac:***@127.0.0.1:5432/tracfx");
	redact_is("postgres://u:p%40ss@/trac?host=/var/run/postgresql",
	          "postgres://u:***@/trac?host=/var/run/postgresql");
	redact_is("postgres://u:p@ss@h/db", "postgres://u:***@h/db");
	redact_is("postgres://u@h/db", "postgres://u@h/db");
	redact_is("postgres://u:@h/db", "postgres://u:***@h/db");
	redact_is("postgres://h/db?password=x&schema=s", "postgres://h/db?password=***&schema=s");
	redact_is("postgres://u:pw@h/db?schema=s&PASSWORD=y", "postgres://u:***@h/db?schema=s&PASSWORD=***");
	redact_is("mysql://trac:s3cret@localhost/trac?charset=utf8mb4",
	          "mysql://trac:***@localhost/trac?charset=utf8mb4");
	/* SQLite paths are shown as they are, even with ':' and '@'. */
	redact_is("sqlite:db/a:b@c.db?timeout=3", "sqlite:db/a:b@c.db?timeout=3");
	redact_is("no colon", "no colon");
	redact_is("", "");
	assert_null(ts_dburi_redact(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sqlite_relative),
		cmocka_unit_test(test_sqlite_absolute_and_params),
		cmocka_unit_test(test_sqlite_bad),
		cmocka_unit_test(test_postgres_full),
		cmocka_unit_test(test_postgres_decoding),
		cmocka_unit_test(test_postgres_socket),
		cmocka_unit_test(test_postgres_bad),
		cmocka_unit_test(test_port_bounds),
		cmocka_unit_test(test_mysql_and_others),
		cmocka_unit_test(test_password_never_in_messages),
		cmocka_unit_test(test_redact),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
