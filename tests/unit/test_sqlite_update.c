/* test_sqlite_update.c - the raw copy of the database brought up to the file
 * (db/sqlite/sqlite_update.c): before Trac's lock block by block, under it
 * by the hashes that pass kept. */
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

#include "db/sqlite/sqlite_int.h"
#include "tutil.h"

#define TBUF (PATH_MAX * 2)
#define BLK (256 * 1024)   /* sqlite_update.c's block */

/* TOP/live stands for the database, TOP/copy for its raw copy. */
typedef struct fx {
	char top[PATH_MAX];
	char live[TBUF], copy[TBUF];
	sqlite_sums sums;
} fx;

static int setup(void **state)
{
	fx *x = calloc(1, sizeof *x);

	assert_non_null(x);
	tu_tmpdir("sqlupd", x->top);
	tu_fmt(x->live, sizeof x->live, "%s/live", x->top);
	tu_fmt(x->copy, sizeof x->copy, "%s/copy", x->top);
	x->sums.seed = 12345;
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	fx *x = *state;

	sqlite_sums_drop(&x->sums);
	tu_rm_rf(x->top);
	free(x);
	return 0;
}

/* One pass of sqlite_update from x->live to x->copy. */
static void pass(fx *x, bool locked)
{
	ts_err e;
	int in = open(x->live, O_RDONLY), out = open(x->copy, O_RDWR);

	assert_true(in >= 0 && out >= 0);
	ts_err_clear(&e);
	assert_int_equal(sqlite_update(in, out, x->live, "copy", locked, &x->sums, NULL, &e), TS_OK);
	close(in);
	close(out);
}

/* Overwrite len bytes at off of path with byte c. */
static void poke(const char *path, off_t off, size_t len, int c)
{
	char *buf = malloc(len);
	int fd = open(path, O_WRONLY);

	assert_non_null(buf);
	assert_true(fd >= 0);
	memset(buf, c, len);
	assert_int_equal(pwrite(fd, buf, len, off), (ssize_t)len);
	close(fd);
	free(buf);
}

/* The file and its copy alike: len bytes of pattern seed. */
static void put_both(fx *x, size_t len, unsigned seed)
{
	unsigned char *data = tu_pattern(len, seed);

	tu_put_bytes(x->live, data, len, 0644);
	tu_put_bytes(x->copy, data, len, 0600);
	free(data);
}

static void assert_same_files(const char *a, const char *b)
{
	size_t na, nb;
	void *da = tu_slurp(a, &na), *db = tu_slurp(b, &nb);

	assert_int_equal(na, nb);
	assert_memory_equal(da, db, na);
	free(da);
	free(db);
}

/* Before the lock the copy is brought up to the file and a sum kept per
 * block; under it a block changed since (same size) is found by its sum
 * and written, the file's growth copied, and the sums are used up. */
static void test_change_under_lock_found(void **state)
{
	fx *x = *state;
	size_t len = 5 * BLK + 1000;
	unsigned char *data = tu_pattern(len, 7);

	tu_put_bytes(x->live, data, len, 0644);
	tu_put_bytes(x->copy, "old", 3, 0600);
	pass(x, false);
	assert_same_files(x->live, x->copy);
	assert_int_equal(x->sums.n, 6);
	assert_non_null(x->sums.h);

	poke(x->live, 2 * BLK + 4096 + 17, 1, 0x5a);   /* one byte of block 2 */
	poke(x->live, 5 * BLK + 1000, 300, 'g');        /* the last block grows */
	pass(x, true);
	assert_same_files(x->live, x->copy);
	assert_null(x->sums.h);   /* one pass under the lock each */
	free(data);
}

/* A shrinking file: the copy is cut to it. */
static void test_shrink_under_lock(void **state)
{
	fx *x = *state;

	put_both(x, 3 * BLK, 9);
	pass(x, false);
	assert_int_equal(truncate(x->live, BLK + 10), 0);
	pass(x, true);
	assert_same_files(x->live, x->copy);
}

/* Under the lock the copy is not read where a block's sum matches: the
 * pass before the lock left it as the sum says, and nothing but the take
 * writes it.  (What the sums save: a changed copy block whose file block
 * did not change stays as it is.) */
static void test_kept_blocks_not_read(void **state)
{
	fx *x = *state;
	size_t len = 4 * BLK, n;
	unsigned char *got;

	put_both(x, len, 11);
	pass(x, false);
	poke(x->copy, BLK + 5, 1, 0x77);
	pass(x, true);
	got = tu_slurp(x->copy, &n);
	assert_int_equal(n, len);
	assert_int_equal(got[BLK + 5], 0x77);
	free(got);
}

/* A copy that is not the file the sums were taken of (another inode, or
 * its size changed) is compared block by block, as with no sums. */
static void test_other_copy_compared(void **state)
{
	fx *x = *state;
	size_t len = 4 * BLK;
	unsigned char *data = tu_pattern(len, 13);
	char side[TBUF];

	tu_put_bytes(x->live, data, len, 0644);
	tu_put_bytes(x->copy, data, len, 0600);
	pass(x, false);
	/* Another file of the same size in its place, one block unlike the file. */
	tu_fmt(side, sizeof side, "%s/side", x->top);
	tu_put_bytes(side, data, len, 0600);
	poke(side, 3 * BLK + 9, 1, 0x11);
	assert_int_equal(rename(side, x->copy), 0);
	pass(x, true);
	assert_same_files(x->live, x->copy);

	/* The same inode with a new size. */
	pass(x, false);
	assert_int_equal(truncate(x->copy, len - 1), 0);
	pass(x, true);
	assert_same_files(x->live, x->copy);
	free(data);
}

/* With no pass before (the pre-copy was a new file), the lock's pass
 * compares every block. */
static void test_no_sums_compared(void **state)
{
	fx *x = *state;

	put_both(x, 2 * BLK + 3, 17);
	poke(x->copy, 7, 1, 0x42);
	pass(x, true);
	assert_same_files(x->live, x->copy);
}

/* A new handle's sums: none yet, another seed (dbsnap_sqlite.c draws one
 * per handle). */
static void new_handle(fx *x)
{
	sqlite_sums_drop(&x->sums);
	x->sums.seed += 1;
}

/* Set path's mtime to t, its atime left. */
static void set_mtime(const char *path, const struct timespec *t)
{
	struct timespec ts[2] = { { 0, UTIME_OMIT }, *t };
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

/* The sums of a pass before the lock outlive its handle: the next handle's
 * pass before the lock reads the copy only where the file changed since
 * (the stage's copy, adopted by a snapshot).  What shows it: a copy block
 * changed behind the sums' back, mtime put back, stays as it is. */
static void test_kept_sums_serve_the_next_handle(void **state)
{
	fx *x = *state;
	size_t len = 4 * BLK, n;
	struct stat st;
	unsigned char *got;

	put_both(x, len, 19);
	pass(x, false);
	new_handle(x);
	assert_int_equal(stat(x->copy, &st), 0);
	poke(x->copy, 3 * BLK + 5, 1, 0x77);
	set_mtime(x->copy, &st.st_mtim);
	poke(x->live, BLK + 100, 10, 'L');   /* the file changed in block 1 */
	pass(x, false);
	got = tu_slurp(x->copy, &n);
	assert_int_equal(n, len);
	assert_int_equal(got[3 * BLK + 5], 0x77);   /* not read: the sums said so */
	assert_int_equal(got[BLK + 100], 'L');       /* written */
	free(got);
	/* The lock's pass of that handle uses them as its own. */
	poke(x->live, 2 * BLK, 1, 'M');
	pass(x, true);
	got = tu_slurp(x->copy, &n);
	assert_int_equal(got[2 * BLK], 'M');
	free(got);
}

/* Kept sums of a copy written since (its mtime moved) are not used: the
 * next pass compares every block. */
static void test_kept_sums_of_a_changed_copy_dropped(void **state)
{
	fx *x = *state;
	struct timespec later = { 1700000000, 1 };

	put_both(x, 3 * BLK, 23);
	pass(x, false);
	new_handle(x);
	poke(x->copy, 2 * BLK + 7, 1, 0x42);
	set_mtime(x->copy, &later);
	pass(x, false);
	assert_same_files(x->live, x->copy);
	/* Nor kept for a copy the lock's pass wrote: a pass before the lock
	 * on it later compares. */
	pass(x, true);
	new_handle(x);
	struct stat st;
	assert_int_equal(stat(x->copy, &st), 0);
	poke(x->copy, 5, 1, 0x43);
	set_mtime(x->copy, &st.st_mtim);   /* as a write in the same tick would */
	pass(x, false);
	assert_same_files(x->live, x->copy);
}

/* A copy made without sums (in the kernel) gets them read from it: the
 * pass under the lock then reads only the file where they match.  What
 * shows it: a copy block changed behind their back stays as it is, the
 * file's change is written. */
static void test_sums_of_a_new_copy(void **state)
{
	fx *x = *state;
	size_t len = 3 * BLK + 77, n;
	ts_err e;
	unsigned char *got;

	put_both(x, len, 29);
	int out = open(x->copy, O_RDONLY);
	assert_true(out >= 0);
	ts_err_clear(&e);
	assert_int_equal(sqlite_sums_of(out, "copy", 0, &x->sums, &e), TS_OK);
	close(out);
	assert_int_equal(x->sums.n, 4);
	assert_int_equal(x->sums.size, (off_t)len);
	poke(x->copy, BLK + 1, 1, 0x66);
	poke(x->live, 3 * BLK + 2, 5, 'N');
	pass(x, true);
	got = tu_slurp(x->copy, &n);
	assert_int_equal(n, len);
	assert_int_equal(got[BLK + 1], 0x66);
	assert_int_equal(got[3 * BLK + 2], 'N');
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_change_under_lock_found, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shrink_under_lock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kept_blocks_not_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_copy_compared, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_sums_compared, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kept_sums_serve_the_next_handle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kept_sums_of_a_changed_copy_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sums_of_a_new_copy, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
