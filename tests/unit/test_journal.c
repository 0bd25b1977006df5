/* test_journal.c - which environment files a snapshot never contains. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "db/journal.h"

static void test_database_and_side_files(void **state)
{
	(void)state;
	assert_true(ts_journal_excluded("db/trac.db", "db/trac.db"));
	assert_true(ts_journal_excluded("db/trac.db-journal", "db/trac.db"));
	assert_true(ts_journal_excluded("db/trac.db-wal", "db/trac.db"));
	assert_true(ts_journal_excluded("db/trac.db-shm", "db/trac.db"));
	assert_true(ts_journal_excluded("db/trac.db-stmtjrnl", "db/trac.db"));
	assert_true(ts_journal_excluded("db/trac.db-mj1234", "db/trac.db"));
	assert_true(ts_journal_excluded("db/trac.db-mjA1B2C3D4", "db/trac.db"));
}

/* Only the exact suffixes: everything else is an administrator's file. */
static void test_similar_names_kept(void **state)
{
	(void)state;
	assert_false(ts_journal_excluded("db/trac.db.bak", "db/trac.db"));
	assert_false(ts_journal_excluded("db/trac.db-journalx", "db/trac.db"));
	assert_false(ts_journal_excluded("db/trac.db-journal.old", "db/trac.db"));
	assert_false(ts_journal_excluded("db/trac.db-wal2", "db/trac.db"));
	assert_false(ts_journal_excluded("db/trac.db-shm~", "db/trac.db"));
	assert_false(ts_journal_excluded("db/trac.db-", "db/trac.db"));
	assert_false(ts_journal_excluded("db/trac.db-m", "db/trac.db"));
	assert_false(ts_journal_excluded("db/trac.dbx", "db/trac.db"));
	assert_false(ts_journal_excluded("db/trac.d", "db/trac.db"));
	assert_false(ts_journal_excluded("db/trac", "db/trac.db"));
	assert_false(ts_journal_excluded("db", "db/trac.db"));
	assert_false(ts_journal_excluded("db/trac.db/x", "db/trac.db"));
	assert_false(ts_journal_excluded("db/other.db-journal", "db/trac.db"));
	assert_false(ts_journal_excluded("x/db/trac.db", "db/trac.db"));
	assert_false(ts_journal_excluded("trac.db", "db/trac.db"));
	assert_false(ts_journal_excluded("db/trac.db-JOURNAL", "db/trac.db"));
	assert_false(ts_journal_excluded("conf/trac.ini", "db/trac.db"));
	assert_false(ts_journal_excluded("db/trac.db-wal", "db/trac.db-w"));
}

static void test_no_database(void **state)
{
	(void)state;
	/* External or non-SQLite database: nothing is excluded. */
	assert_false(ts_journal_excluded("db/trac.db", NULL));
	assert_false(ts_journal_excluded("db/trac.db-journal", NULL));
	assert_false(ts_journal_excluded("db/trac.db-wal", NULL));
	assert_false(ts_journal_excluded("", NULL));
	assert_false(ts_journal_excluded("x", ""));
}

static void test_database_elsewhere(void **state)
{
	(void)state;
	/* Top level and deeper subdirectories. */
	assert_true(ts_journal_excluded("trac.db", "trac.db"));
	assert_true(ts_journal_excluded("trac.db-wal", "trac.db"));
	assert_false(ts_journal_excluded("db/trac.db", "trac.db"));
	assert_true(ts_journal_excluded("data/sqlite/main.sqlite", "data/sqlite/main.sqlite"));
	assert_true(ts_journal_excluded("data/sqlite/main.sqlite-shm", "data/sqlite/main.sqlite"));
	assert_true(ts_journal_excluded("data/sqlite/main.sqlite-mj0", "data/sqlite/main.sqlite"));
	assert_false(ts_journal_excluded("data/sqlite/main.sqlite.bak", "data/sqlite/main.sqlite"));
	assert_false(ts_journal_excluded("data/main.sqlite-shm", "data/sqlite/main.sqlite"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_database_and_side_files),
		cmocka_unit_test(test_similar_names_kept),
		cmocka_unit_test(test_no_database),
		cmocka_unit_test(test_database_elsewhere),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
