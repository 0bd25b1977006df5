/* test_linklog.c - the engine's log of its own hard-link changes
 * (store/linklog.h): append, read, what an interval explains, bad lines,
 * the trim. */
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
#include <time.h>
#include <unistd.h>

#include "store/linklog.h"
#include "tutil.h"

typedef struct lfx {
	char top[PATH_MAX];
	char file[PATH_MAX + 16];
	int dirfd;
} lfx;

static int setup(void **state)
{
	lfx *x = calloc(1, sizeof *x);
	tu_tmpdir("linklog", x->top);
	tu_fmt(x->file, sizeof x->file, "%s/%s", x->top, TS_LINKLOG_FILE);
	x->dirfd = open(x->top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(x->dirfd >= 0);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	lfx *x = *state;
	close(x->dirfd);
	tu_rm_rf(x->top);
	free(x);
	return 0;
}

static struct timespec ts_of(long long sec, long nsec)
{
	struct timespec t = { (time_t)sec, nsec };
	return t;
}

static size_t count_lines(const char *path)
{
	size_t len = 0, n = 0;
	char *text = tu_slurp(path, &len);
	for (size_t i = 0; i < len; i++)
		n += text[i] == '\n';
	free(text);
	return n;
}

/* A batch logged with begin/end explains a ctime set inside it, by a real
 * link(2), and not one set before or long after. */
static void test_append_explains_own_link(void **state)
{
	lfx *x = *state;
	struct timespec start;
	struct stat before, after;
	ts_linklog l;
	char a[PATH_MAX + 8], b[PATH_MAX + 8];

	tu_fmt(a, sizeof a, "%s/a", x->top);
	tu_fmt(b, sizeof b, "%s/b", x->top);
	tu_put_file(a, "content\n");
	assert_int_equal(lstat(a, &before), 0);

	/* Nothing logged yet: nothing explained. */
	ts_linklog_read(x->dirfd, &l);
	assert_int_equal(l.n, 0);
	assert_false(ts_linklog_explains(&l, 0, &before.st_ctim));
	ts_linklog_free(&l);

	struct timespec nap = { 0, 30 * 1000 * 1000 };
	nanosleep(&nap, NULL);
	ts_linklog_begin(&start);
	assert_int_equal(link(a, b), 0);
	ts_linklog_end(x->dirfd, &start);
	assert_int_equal(lstat(a, &after), 0);
	assert_true(after.st_ctim.tv_sec != before.st_ctim.tv_sec ||
	            after.st_ctim.tv_nsec != before.st_ctim.tv_nsec);

	assert_int_equal(count_lines(x->file), 1);
	struct stat fst;
	assert_int_equal(lstat(x->file, &fst), 0);
	assert_int_equal(fst.st_mode & 07777, 0600);
	ts_linklog_read(x->dirfd, &l);
	assert_int_equal(l.n, 1);
	assert_true(ts_linklog_explains(&l, 0, &after.st_ctim));
	assert_false(ts_linklog_explains(&l, 0, &before.st_ctim));
	struct timespec later = after.st_ctim;
	later.tv_sec += 5;
	assert_false(ts_linklog_explains(&l, 0, &later));
	ts_linklog_free(&l);
}

/* Intervals in any order, overlapping or nested; bad lines skipped; a line
 * still being written (no LF) not read. */
static void test_intervals(void **state)
{
	lfx *x = *state;
	ts_linklog l;
	const char *text =
		"100.000000000 200.000000000\n"
		"garbage\n"
		"50.000000000 60.000000000\n"
		"120.000000000 130.000000000\n"     /* nested in the first */
		"300.5 400.000000000\n"             /* bad: 1 digit of ns */
		"500.000000000 400.000000000\n"     /* bad: ends before it starts */
		"-1.000000000 5.000000000\n"        /* bad: negative */
		"1000.000000000 1001.000000000 x\n" /* bad: trailing field */
		"700.000000000 800.000000000\n"
		"900.000000000 950.000000000";       /* not terminated */
	struct timespec t;

	tu_put_bytes(x->file, text, strlen(text), 0600);
	ts_linklog_read(x->dirfd, &l);
	assert_int_equal(l.n, 4);
	t = ts_of(150, 1);
	assert_true(ts_linklog_explains(&l, 0, &t));    /* inside the outer, past the nested */
	t = ts_of(55, 5);
	assert_true(ts_linklog_explains(&l, 0, &t));
	t = ts_of(60, 20000000);                     /* 20 ms past the end */
	assert_false(ts_linklog_explains(&l, 0, &t));
	t = ts_of(49, 995000000);                    /* 5 ms before the start: slack */
	assert_true(ts_linklog_explains(&l, 0, &t));
	t = ts_of(49, 900000000);
	assert_false(ts_linklog_explains(&l, 0, &t));
	t = ts_of(250, 7);
	assert_false(ts_linklog_explains(&l, 0, &t));
	t = ts_of(350, 7);
	assert_false(ts_linklog_explains(&l, 0, &t));
	t = ts_of(925, 7);
	assert_false(ts_linklog_explains(&l, 0, &t));   /* the unterminated line */
	t = ts_of(1000, 500);
	assert_false(ts_linklog_explains(&l, 0, &t));
	/* Whole-second ctimes are truncated: 699 s may have been 699.x, and a
	 * batch that began at 700.0 on a coarse clock could have set it. */
	t = ts_of(699, 0);
	assert_true(ts_linklog_explains(&l, 0, &t));
	t = ts_of(697, 0);
	assert_false(ts_linklog_explains(&l, 0, &t));
	ts_linklog_free(&l);
}

/* A batch that names its inodes: "I" lines explain those inodes' ctimes
 * only; one that touched none logs nothing; past LINKLOG_INOS_PER_LINE the
 * names go on further lines; a lost note makes the batch a plain one. */
static void test_named_batches(void **state)
{
	lfx *x = *state;
	ts_linklog_inos b = { 0 };
	struct timespec start, t;
	ts_linklog l;

	ts_linklog_begin(&start);
	ts_linklog_end_inos(x->dirfd, &start, &b);
	assert_false(tu_exists(x->file));

	ts_linklog_begin(&start);
	for (uint64_t i = 1; i <= 100; i++)
		ts_linklog_note(&b, i * 1000);
	ts_linklog_end_inos(x->dirfd, &start, &b);
	assert_null(b.v);
	assert_int_equal(count_lines(x->file), 2);
	t = start;   /* inside the batch */
	t.tv_nsec |= 1;
	ts_linklog_read(x->dirfd, &l);
	assert_int_equal(l.n, 0);
	assert_int_equal(l.ntouch, 100);
	assert_true(ts_linklog_explains(&l, 1000, &t));
	assert_true(ts_linklog_explains(&l, 64000, &t));
	assert_true(ts_linklog_explains(&l, 65000, &t));   /* the second line */
	assert_true(ts_linklog_explains(&l, 100000, &t));
	assert_false(ts_linklog_explains(&l, 1001, &t));   /* not named */
	assert_false(ts_linklog_explains(&l, 0, &t));
	t.tv_sec -= 5;
	assert_false(ts_linklog_explains(&l, 1000, &t));   /* named, but before */
	ts_linklog_free(&l);

	b.all = true;
	ts_linklog_begin(&start);
	ts_linklog_end_inos(x->dirfd, &start, &b);
	t = start;
	t.tv_nsec |= 1;
	ts_linklog_read(x->dirfd, &l);
	assert_int_equal(l.n, 1);
	assert_true(ts_linklog_explains(&l, 1001, &t));
	ts_linklog_free(&l);
}

/* "I" lines in any order, several naming one inode; bad ones skipped
 * whole. */
static void test_named_lines(void **state)
{
	lfx *x = *state;
	ts_linklog l;
	struct timespec t;
	const char *text =
		"I 300.000000000 310.000000000 7 9\n"
		"I 100.000000000 110.000000000 9\n"
		"I 200.000000000 210.000000000 7\n"
		"I 400.000000000 410.000000000\n"         /* bad: no inode */
		"I 500.000000000 510.000000000 8 x\n"     /* bad: whole line */
		"I 600.000000000 590.000000000 8\n"       /* bad: ends before */
		"I 700.000000000 710.000000000  8\n"      /* bad: two spaces */
		"I 800.000000000 810.000000000 8 \n";     /* bad: trailing space */

	tu_put_bytes(x->file, text, strlen(text), 0600);
	ts_linklog_read(x->dirfd, &l);
	assert_int_equal(l.n, 0);
	assert_int_equal(l.ntouch, 4);
	t = ts_of(105, 0);
	assert_true(ts_linklog_explains(&l, 9, &t));
	assert_false(ts_linklog_explains(&l, 7, &t));
	t = ts_of(205, 1);
	assert_true(ts_linklog_explains(&l, 7, &t));
	assert_false(ts_linklog_explains(&l, 9, &t));
	t = ts_of(305, 1);
	assert_true(ts_linklog_explains(&l, 7, &t));
	assert_true(ts_linklog_explains(&l, 9, &t));
	t = ts_of(250, 1);
	assert_false(ts_linklog_explains(&l, 7, &t));
	for (long long s = 400; s <= 800; s += 100) {
		t = ts_of(s + 5, 1);
		assert_false(ts_linklog_explains(&l, 8, &t));
	}
	ts_linklog_free(&l);
}

/* "S" lines: an inode found changed by someone else at a moment; a record
 * made before that moment is suspect, one made after is not.  Bad S lines
 * are skipped; S lines do not disturb the intervals. */
static void test_suspects(void **state)
{
	lfx *x = *state;
	ts_linklog l;
	struct timespec t;
	const char *text =
		"100.000000000 200.000000000\n"
		"S 42 300.000000000\n"
		"S 42 150.000000000\n"
		"S 7 50.000000000\n"
		"S x 60.000000000\n"          /* bad */
		"S 8 60\n"                    /* bad */
		"S 9  60.000000000\n";        /* bad */

	tu_put_bytes(x->file, text, strlen(text), 0600);
	ts_linklog_read(x->dirfd, &l);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.nsus, 3);
	t = ts_of(299, 0);
	assert_true(ts_linklog_suspected(&l, 42, &t));    /* the latest line counts */
	t = ts_of(300, 0);
	assert_false(ts_linklog_suspected(&l, 42, &t));   /* recorded at or after it */
	t = ts_of(49, 0);
	assert_true(ts_linklog_suspected(&l, 7, &t));
	t = ts_of(1, 0);
	assert_false(ts_linklog_suspected(&l, 8, &t));
	assert_false(ts_linklog_suspected(&l, 9, &t));
	assert_false(ts_linklog_suspected(&l, 41, &t));
	assert_false(ts_linklog_suspected(&l, 43, &t));
	t = ts_of(150, 0);
	assert_true(ts_linklog_explains(&l, 0, &t));
	ts_linklog_free(&l);

	/* Appended: one line, read back, newer than any record so far. */
	ts_linklog_suspect_now(x->dirfd, 123456789012345ULL);
	ts_linklog_read(x->dirfd, &l);
	assert_int_equal(l.nsus, 4);
	clock_gettime(CLOCK_REALTIME, &t);
	t.tv_sec -= 60;
	assert_true(ts_linklog_suspected(&l, 123456789012345ULL, &t));
	t.tv_sec += 120;
	assert_false(ts_linklog_suspected(&l, 123456789012345ULL, &t));
	ts_linklog_free(&l);
}

/* A missing file, a symlink or a directory in its place: nothing read, no
 * crash; appending never goes through a link. */
static void test_missing_and_links(void **state)
{
	lfx *x = *state;
	ts_linklog l;
	struct timespec start = ts_of(1, 0);
	char other[PATH_MAX + 16];

	ts_linklog_read(x->dirfd, &l);
	assert_int_equal(l.n, 0);
	ts_linklog_free(&l);

	tu_fmt(other, sizeof other, "%s/other", x->top);
	tu_put_file(other, "1.000000000 2000000000.000000000\n");
	assert_int_equal(symlink(other, x->file), 0);
	ts_linklog_read(x->dirfd, &l);
	assert_int_equal(l.n, 0);
	ts_linklog_end(x->dirfd, &start);
	assert_int_equal(count_lines(other), 1);   /* not appended through the link */
	unlink(x->file);
}

/* Past TS_LINKLOG_TRIM_AT lines the file is cut to the last
 * TS_LINKLOG_KEEP, which are still read. */
static void test_trim(void **state)
{
	lfx *x = *state;
	size_t n = TS_LINKLOG_TRIM_AT + 10, len = 0;
	char *text = malloc(n * 48), *p = text;
	ts_linklog l;
	struct timespec t;

	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%zu.000000000 %zu.500000000\n", 1000 + i * 10, 1000 + i * 10);
	len = (size_t)(p - text);
	tu_put_bytes(x->file, text, len, 0600);
	free(text);

	ts_linklog_read(x->dirfd, &l);
	assert_int_equal(l.n, n);   /* all read this time */
	ts_linklog_free(&l);
	assert_int_equal(count_lines(x->file), TS_LINKLOG_KEEP);
	assert_false(tu_exists_at(x->dirfd, ".linklog.tmp"));

	ts_linklog_read(x->dirfd, &l);
	assert_int_equal(l.n, TS_LINKLOG_KEEP);
	t = ts_of((long long)(1000 + (n - 1) * 10), 250000000);   /* the newest */
	assert_true(ts_linklog_explains(&l, 0, &t));
	t = ts_of((long long)(1000 + (n - TS_LINKLOG_KEEP) * 10), 250000000);   /* oldest kept */
	assert_true(ts_linklog_explains(&l, 0, &t));
	t = ts_of((long long)(1000 + (n - TS_LINKLOG_KEEP - 1) * 10), 250000000);   /* dropped */
	assert_false(ts_linklog_explains(&l, 0, &t));
	ts_linklog_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_append_explains_own_link, setup, teardown),
		cmocka_unit_test_setup_teardown(test_intervals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_named_batches, setup, teardown),
		cmocka_unit_test_setup_teardown(test_named_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_suspects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_and_links, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trim, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
