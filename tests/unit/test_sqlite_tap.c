/* test_sqlite_tap.c - which blocks of an SQLite database a window wrote,
 * told by the journals SQLite writes (db/sqlite/sqlite_tap.c), and the
 * passes over the copy that read only those (sqlite_update.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db/sqlite/sqlite_int.h"
#include "tutil.h"

#define TBUF (PATH_MAX * 2)
#define ROWS 3000   /* of 1 KiB: a database of a dozen blocks */

typedef struct fx {
	char top[PATH_MAX];
	char db[TBUF], copy[TBUF];
	sqlite3 *w;          /* the writer, as Trac's */
	sqlite_tap *tap;
	int in;
} fx;

static int setup(void **state)
{
	fx *x = calloc(1, sizeof *x);

	assert_non_null(x);
	tu_tmpdir("sqltap", x->top);
	tu_fmt(x->db, sizeof x->db, "%s/trac.db", x->top);
	tu_fmt(x->copy, sizeof x->copy, "%s/copy", x->top);
	x->w = tu_db_open(x->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
	tu_sql(x->w, "PRAGMA journal_mode=DELETE");
	tu_sql(x->w, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
	tu_sql(x->w, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) "
	             "INSERT INTO t SELECT i, randomblob(1024) FROM n");
	x->in = open(x->db, O_RDONLY | O_CLOEXEC);
	assert_true(x->in >= 0);
	x->tap = sqlite_tap_get(x->db);
	assert_non_null(x->tap);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	fx *x = *state;

	sqlite_tap_put(x->tap);
	sqlite3_close(x->w);
	close(x->in);
	tu_rm_rf(x->top);
	free(x);
	return 0;
}

/* Descriptors of this process open on the journal: SQLite's, and the
 * tap's once it has opened it. */
static int journal_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		char p[300], to[PATH_MAX];
		snprintf(p, sizeof p, "/proc/self/fd/%s", de->d_name);
		ssize_t len = readlink(p, to, sizeof to - 1);
		if (len <= 0)
			continue;
		to[len] = '\0';
		n += strstr(to, "trac.db-journal") != NULL;
	}
	closedir(d);
	return n;
}

/* One write transaction of the writer, as Trac's: committed once the tap
 * holds its journal (which it opens as soon as it sees it; the wait only
 * makes the test certain of what a running Trac gives it by the time
 * SQLite syncs). */
static void commit(fx *x, const char *sql, int want_fds)
{
	struct timespec nap = { 0, 2 * 1000 * 1000 };

	tu_sql(x->w, "BEGIN");
	tu_sql(x->w, sql);
	for (int i = 0; i < 5000 && journal_fds() < want_fds; i++)
		nanosleep(&nap, NULL);
	assert_true(journal_fds() >= want_fds);
	tu_sql(x->w, "COMMIT");
}

static unsigned char *slurp(const char *path, size_t *n)
{
	unsigned char *b = tu_slurp(path, n);
	assert_non_null(b);
	return b;
}

/* Every block whose bytes differ between a and b (na, nb bytes) is one
 * the change names; how many the change names that did not change. */
static size_t check_covers(const sqlite_tap_chg *c, const unsigned char *a, size_t na,
                           const unsigned char *b, size_t nb)
{
	size_t spare = 0, n = na > nb ? na : nb;

	for (off_t off = 0; (size_t)off < n; off += SQLITE_BLOCK) {
		size_t la = (size_t)off < na ? (na - off < SQLITE_BLOCK ? na - off : SQLITE_BLOCK) : 0;
		size_t lb = (size_t)off < nb ? (nb - off < SQLITE_BLOCK ? nb - off : SQLITE_BLOCK) : 0;
		bool differs = la != lb || memcmp(a + off, b + off, la);
		if (differs)
			assert_true(sqlite_tap_changed(c, off));
		else
			spare += !sqlite_tap_changed(c, off);
	}
	return spare;
}

/* Commits seen through their journals: every block they wrote is named,
 * and most of the database is not. */
static void test_commits_named(void **state)
{
	fx *x = *state;
	sqlite_tap_chg c;
	size_t na, nb;

	sqlite_tap_rotate(x->tap, x->in, false, &c);
	sqlite_tap_chg_free(&c);
	unsigned char *a = slurp(x->db, &na);
	commit(x, "UPDATE t SET v = randomblob(1024) WHERE id IN (7, 1500, 2900)", 2);
	commit(x, "INSERT INTO t VALUES (NULL, randomblob(3000))", 2);
	commit(x, "DELETE FROM t WHERE id = 2000", 2);
	unsigned char *b = slurp(x->db, &nb);
	sqlite_tap_rotate(x->tap, x->in, true, &c);
	assert_true(c.known);
	assert_true(c.ended != 0 && c.started == c.ended + 1);
	assert_true(check_covers(&c, a, na, b, nb) >= 4);
	sqlite_tap_chg_free(&c);
	free(a);
	free(b);

	/* A window nothing wrote names nothing. */
	sqlite_tap_rotate(x->tap, x->in, true, &c);
	assert_true(c.known);
	for (off_t off = 0; off + SQLITE_BLOCK <= (off_t)nb; off += SQLITE_BLOCK)
		assert_false(sqlite_tap_changed(&c, off));
	sqlite_tap_chg_free(&c);
}

/* The first window of a tap has nothing before it. */
static void test_first_window_unknown(void **state)
{
	fx *x = *state;
	sqlite_tap_chg c;

	sqlite_tap_rotate(x->tap, x->in, false, &c);
	assert_false(c.known);
	assert_int_equal(c.ended, 0);
	sqlite_tap_chg_free(&c);
}

/* One rotation of a window in which the writer ran sql in journal mode
 * mode; the window must be unknown, for why. */
static void expect_unknown(fx *x, const char *mode, const char *sql, int fds, const char *why)
{
	sqlite_tap_chg c;
	char q[64];

	sqlite_tap_rotate(x->tap, x->in, false, &c);
	sqlite_tap_chg_free(&c);
	snprintf(q, sizeof q, "PRAGMA journal_mode=%s", mode);
	tu_sql(x->w, q);
	commit(x, sql, fds);
	sqlite_tap_rotate(x->tap, x->in, false, &c);
	assert_false(c.known);
	assert_non_null(c.why);
	if (!strstr(c.why, why))
		fail_msg("why: %s, not %s", c.why, why);
	sqlite_tap_chg_free(&c);
}

/* A journal left in place at commit holds nothing of it. */
static void test_truncate_mode_unknown(void **state)
{
	expect_unknown(*state, "TRUNCATE", "UPDATE t SET v = randomblob(1024) WHERE id = 9", 2,
	               "kept at commit");
}

static void test_persist_mode_unknown(void **state)
{
	expect_unknown(*state, "PERSIST", "UPDATE t SET v = randomblob(1024) WHERE id = 9", 2,
	               "kept at commit");
}

/* No journal file at all. */
static void test_memory_journal_unknown(void **state)
{
	expect_unknown(*state, "MEMORY", "UPDATE t SET v = randomblob(1024) WHERE id = 9", 0,
	               "no journal was open");
}

/* A write that bypasses SQLite. */
static void test_raw_write_unknown(void **state)
{
	fx *x = *state;
	sqlite_tap_chg c;
	int fd = open(x->db, O_WRONLY);

	sqlite_tap_rotate(x->tap, x->in, false, &c);
	sqlite_tap_chg_free(&c);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "x", 1, 5 * SQLITE_BLOCK), 1);
	close(fd);
	sqlite_tap_rotate(x->tap, x->in, false, &c);
	assert_false(c.known);
	assert_non_null(strstr(c.why, "no journal was open"));
	sqlite_tap_chg_free(&c);
}

/* The owner puts a FIFO where the journal goes: not read, not waited
 * on, and the window cannot tell. */
static void test_fifo_journal_unknown(void **state)
{
	fx *x = *state;
	sqlite_tap_chg c;
	char j[TBUF];

	tu_fmt(j, sizeof j, "%s-journal", x->db);
	sqlite_tap_rotate(x->tap, x->in, false, &c);
	sqlite_tap_chg_free(&c);
	assert_int_equal(mkfifo(j, 0600), 0);
	sqlite_tap_rotate(x->tap, x->in, false, &c);
	assert_false(c.known);
	assert_non_null(strstr(c.why, "not a regular file"));
	sqlite_tap_chg_free(&c);
	unlink(j);
}

/* The database replaced by another file. */
static void test_replaced_database_unknown(void **state)
{
	fx *x = *state;
	sqlite_tap_chg c;
	char other[TBUF];
	size_t n;

	sqlite_tap_rotate(x->tap, x->in, false, &c);
	sqlite_tap_chg_free(&c);
	unsigned char *b = slurp(x->db, &n);
	tu_fmt(other, sizeof other, "%s/other", x->top);
	tu_put_bytes(other, b, n, 0644);
	free(b);
	assert_int_equal(rename(other, x->db), 0);
	sqlite_tap_rotate(x->tap, x->in, false, &c);
	assert_false(c.known);
	sqlite_tap_chg_free(&c);
	/* The path leads to another file now: the next user gets a tap of
	 * its own, not this one's unknown windows for ever. */
	sqlite_tap *again = sqlite_tap_get(x->db);
	assert_non_null(again);
	assert_ptr_not_equal(again, x->tap);
	sqlite_tap_put(again);
}

/* The passes with the tap: the copy ends as the file, and under the lock
 * a block no journal named is not read (a byte changed in the copy there
 * stays: that block was not looked at). */
static void test_update_reads_only_named(void **state)
{
	fx *x = *state;
	sqlite_sums sums = { .seed = 99 };
	ts_err e;
	size_t nf, nc;
	int out = open(x->copy, O_RDWR | O_CREAT | O_EXCL, 0600);

	assert_true(out >= 0);
	ts_err_clear(&e);
	/* The first pass's window has nothing before it: all read. */
	assert_int_equal(sqlite_update(x->in, out, x->db, "copy", false, &sums, x->tap, &e), TS_OK);
	commit(x, "UPDATE t SET v = randomblob(1024) WHERE id = 2", 2);
	/* A block far from page 1 and from what the update wrote. */
	unsigned char *f = slurp(x->db, &nf);
	off_t far = (off_t)(nf / SQLITE_BLOCK / 2) * SQLITE_BLOCK + 100;
	unsigned char keep = (unsigned char)(f[far] ^ 0x5a);
	assert_int_equal(pwrite(out, &keep, 1, far), 1);
	assert_int_equal(sqlite_update(x->in, out, x->db, "copy", true, &sums, x->tap, &e), TS_OK);
	unsigned char *c = slurp(x->copy, &nc);
	assert_int_equal(nc, nf);
	assert_int_equal(c[far], keep);
	c[far] = f[far];
	assert_memory_equal(c, f, nf);
	free(c);
	free(f);
	sqlite_sums_drop(&sums);
	close(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_commits_named, setup, teardown),
		cmocka_unit_test_setup_teardown(test_first_window_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncate_mode_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_persist_mode_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_memory_journal_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_raw_write_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fifo_journal_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replaced_database_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_reads_only_named, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
