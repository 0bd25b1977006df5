/* test_pgdump_check.c - which dumps restore lets psql read (pgdump_check.h):
 * the fixture's real pg_dump output passes; psql meta-commands, wherever
 * psql's lexer would see one, are refused; backslashes where psql does not
 * see them (COPY data, comments, quoted identifiers, E'' escapes) pass. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "db/pg/pgdump_check.h"

static int dump_fd(const void *text, size_t len)
{
	int fd = memfd_create("dump", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	return fd;
}

static ts_err_code check_text(const char *text, ts_err *e)
{
	int fd = dump_fd(text, strlen(text));
	ts_err_code rc;

	ts_err_clear(e);
	rc = ts_pgdump_check(fd, "dump.sql", e);
	close(fd);
	return rc;
}

static void ok(const char *text)
{
	ts_err e;

	if (check_text(text, &e) != TS_OK)
		fail_msg("refused: %s\n--- dump:\n%s", e.msg, text);
}

/* Refused with TS_ERR_CORRUPT, one line, naming the line number and want. */
static void bad(const char *text, const char *line, const char *want)
{
	ts_err e;
	char at[32];

	if (check_text(text, &e) != TS_ERR_CORRUPT)
		fail_msg("accepted:\n%s", text);
	snprintf(at, sizeof at, "dump.sql:%s: ", line);
	assert_null(strchr(e.msg, '\n'));
	if (strncmp(e.msg, at, strlen(at)) || !strstr(e.msg, want))
		fail_msg("message '%s' lacks '%s' or '%s'", e.msg, at, want);
}

static void test_fixture_dump_passes(void **state)
{
	/* make unit runs the tests from the top of the tree */
	FILE *z = popen("gzip -dc tests/fixtures/trac-env-postgres.sql.gz", "r");
	size_t cap = 1 << 20, len = 0, n;
	char *buf = malloc(cap);
	ts_err e;
	int fd;

	(void)state;
	assert_non_null(z);
	assert_non_null(buf);
	while ((n = fread(buf + len, 1, cap - len, z)) > 0) {
		len += n;
		if (len == cap)
			assert_non_null(buf = realloc(buf, cap *= 2));
	}
	assert_int_equal(pclose(z), 0);
	assert_true(len > 1000);
	assert_non_null(memmem(buf, len, "FROM stdin;", 11));
	fd = dump_fd(buf, len);
	ts_err_clear(&e);
	if (ts_pgdump_check(fd, "fixture", &e) != TS_OK)
		fail_msg("%s", e.msg);
	close(fd);
	free(buf);
}

static void test_allowed(void **state)
{
	(void)state;
	ok("");
	ok("\\restrict abcDEF123\nSET x = 1;\n\\unrestrict abcDEF123\n");
	ok("\\connect -reuse-previous=on \"dbname='trac'\"\nSELECT 1;\n");
	/* COPY data: anything until the line "\." */
	ok("COPY public.wiki (name, text) FROM stdin;\nA\t\\! id > /tmp/x\nB\t\\\\N\n\\.\nSELECT 1;\n");
	ok("copy t from STDIN ;  \r\nx\r\n\\.\r\n");
	ok("COPY t (a) FROM stdin;\n\\.");
	/* Where psql sees no meta-command. */
	ok("-- a comment \\! id\nSELECT 1; /* \\! id /* nested */ \\o x */\n");
	ok("CREATE TABLE \"we\\ird\" (a int);\n");
	ok("SELECT E'it\\'s \\\\! id';\n");
	ok("SELECT 'it''s';\nSELECT nextval('s'::regclass);\n");
	/* A very long dump: the look-ahead across read chunks. */
	{
		size_t n = (3u << 20) + 5;
		char *big = malloc(n + 64);
		assert_non_null(big);
		memset(big, ' ', n);
		big[n - 3] = '-';   /* "--" split across the 1 MiB boundary is no issue either */
		big[n - 2] = '-';
		strcpy(big + n - 1, "\\! id\nSELECT 1;\n");
		ok(big);
		free(big);
	}
}

static void test_refused(void **state)
{
	(void)state;
	bad("\\! id > /tmp/canary\n", "1", "psql meta-command \\!");
	bad("SELECT 1;\n\n\\o /etc/passwd\n", "3", "psql meta-command \\o");
	bad("SELECT 1; \\! id\n", "1", "\\!");
	bad("SELECT (1 \\! id\n);\n", "1", "\\!");
	bad("\\i /root/x\n", "1", "\\i");
	bad("\\copy t from '/etc/shadow'\n", "1", "\\copy");
	bad("\\set ON_ERROR_STOP 0\n", "1", "\\set");
	bad("\\restrict `id > /tmp/x`\n", "1", "backtick");
	bad("\\connect x \\! id\n", "1", "another backslash");
	bad("\\\\\n", "1", "psql meta-command");
	/* A literal whose end depends on standard_conforming_strings. */
	bad("SELECT 'a\\'; \\! id; --'\n", "1", "backslash in a '...' literal");
	/* A statement that only looks like a COPY to a line-based reader. */
	bad("SELECT '\nCOPY t FROM stdin;\n';\n\\! id\n\\.\n", "4", "\\!");
	bad("COPY t FROM stdin; \\! id\n\\.\n", "1", "text after COPY");
	/* COPY data ends at "\."; what follows is SQL again. */
	bad("COPY t FROM stdin;\nx\n\\.\n\\! id\n", "4", "\\!");
	/* "\." that is not alone on its line does not end it. */
	ok("COPY t FROM stdin;\n\\.x\n\\! id\n");
	bad("SELECT $$ \\! $$;\n", "1", "dollar quoting");
	bad("SELECT :foo;\n", "1", "psql variable");
	bad("SELECT :'foo';\n", "1", "psql variable");
	bad("CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC; SELECT 1; END;\n", "1",
	    "BEGIN");
	bad("COMMIT;\n", "1", "transaction control");
	bad("SELECT 1;\n  begin;\n", "2", "transaction control");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixture_dump_passes),
		cmocka_unit_test(test_allowed),
		cmocka_unit_test(test_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
