/* test_store.c - the snapshot store (store/store.h, store.c): creation,
 * the writers' lock, leftovers, begin/commit/abort, list, remove, rename.
 * Where a store goes (its default path, its placement) is tested in
 * test_location.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "tutil.h"

#include "storefx.h"

/* Whole content of a small file, into buf. */
static void get_file(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	fclose(f);
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void open_store(const fx *x, ts_store *s)
{
	ts_err e;

	ts_err_clear(&e);
	if (ts_store_open(x->store, true, s, &e) != TS_OK)
		fail_msg("ts_store_open %s: %s", x->store, e.msg);
	assert_true(s->dirfd >= 0);
	assert_non_null(s->root);
}

static void lock_store(ts_store *s)
{
	ts_err e;

	ts_err_clear(&e);
	if (ts_store_lock(s, 1, &e) != TS_OK)
		fail_msg("ts_store_lock: %s", e.msg);
	assert_true(s->locked);
}

/* Make a complete snapshot NAME with one file "tree/f" holding text, whose
 * directory time is instant. */
static void make_snap(ts_store *s, const char *name, const char *text,
                      const struct timespec *instant)
{
	ts_store_tmp t;
	ts_err e;
	int fd;

	ts_err_clear(&e);
	if (ts_store_begin(s, name, &t, &e) != TS_OK)
		fail_msg("ts_store_begin %s: %s", name, e.msg);
	fd = openat(t.treefd, "f", O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(close(fd), 0);
	fd = openat(t.dirfd, "manifest", O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(close(fd), 0);
	if (ts_store_commit(s, &t, instant, &e) != TS_OK)
		fail_msg("ts_store_commit %s: %s", name, e.msg);
}

/* ---- open ----------------------------------------------------------------- */

static void test_open_create(void **state)
{
	fx *x = *state;
	char path[TBUF], parent[TBUF];
	struct stat st;
	ts_store s, s2;
	ts_err e;
	mode_t old = umask(022);

	tu_fmt(path, sizeof(path), "%s/a/b/c/store", x->top);
	tu_fmt(parent, sizeof(parent), "%s/a/b/c", x->top);

	/* Without create, a missing store is an error. */
	ts_err_clear(&e);
	assert_int_not_equal(ts_store_open(path, false, &s, &e), TS_OK);
	assert_true(e.msg[0] != '\0');
	assert_false(tu_exists(path));
	assert_false(tu_exists(parent));

	ts_err_clear(&e);
	if (ts_store_open(path, true, &s, &e) != TS_OK)
		fail_msg("%s", e.msg);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(stat(parent, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_string_equal(s.root, path);
	assert_true(s.dirfd >= 0);
	assert_false(s.locked);
	assert_int_equal(s.lockfd, -1);

	/* Opening again (create or not) works and keeps the mode. */
	if (ts_store_open(path, true, &s2, &e) != TS_OK)
		fail_msg("%s", e.msg);
	ts_store_close(&s2);
	if (ts_store_open(path, false, &s2, &e) != TS_OK)
		fail_msg("%s", e.msg);
	ts_store_close(&s2);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	ts_store_close(&s);
	assert_int_equal(s.dirfd, -1);
	assert_null(s.root);

	/* Under a restrictive umask too. */
	umask(077);
	tu_fmt(path, sizeof(path), "%s/x/store", x->top);
	if (ts_store_open(path, true, &s, &e) != TS_OK)
		fail_msg("%s", e.msg);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	ts_store_close(&s);
	umask(old);

	/* A relative path gives an absolute root. */
	{
		char cwd[PATH_MAX];

		assert_non_null(getcwd(cwd, sizeof(cwd)));
		assert_int_equal(chdir(x->top), 0);
		if (ts_store_open("rel/store", true, &s, &e) != TS_OK)
			fail_msg("%s", e.msg);
		assert_int_equal(chdir(cwd), 0);
		tu_fmt(path, sizeof(path), "%s/rel/store", x->top);
		assert_string_equal(s.root, path);
		ts_store_close(&s);
	}

	/* A file in the way. */
	tu_fmt(path, sizeof(path), "%s/file", x->top);
	tu_put_file(path, "x");
	ts_err_clear(&e);
	assert_int_not_equal(ts_store_open(path, true, &s, &e), TS_OK);
	assert_true(e.msg[0] != '\0');
}

/* ---- lock ------------------------------------------------------------------ */

static void test_lock_busy(void **state)
{
	fx *x = *state;
	ts_store a, b;
	ts_err e;
	ts_err_code rc;
	char pid[32], path[TBUF], text[64];
	double t0, dt;

	open_store(x, &a);
	open_store(x, &b);
	lock_store(&a);
	assert_true(a.lockfd >= 0);
	/* Taking it again through the same store is a no-op. */
	assert_int_equal(ts_store_lock(&a, 0, &e), TS_OK);

	/* The lock file names the holder. */
	tu_fmt(path, sizeof(path), "%s/.lock", x->store);
	get_file(path, text, sizeof(text));
	tu_fmt(pid, sizeof(pid), "%ld", (long)getpid());
	assert_int_equal(strtol(text, NULL, 10), getpid());

	ts_err_clear(&e);
	t0 = now_s();
	rc = ts_store_lock(&b, 1, &e);
	dt = now_s() - t0;
	assert_int_equal(rc, TS_ERR_BUSY);
	assert_int_equal(e.code, TS_ERR_BUSY);
	assert_false(b.locked);
	if (!strstr(e.msg, pid))
		fail_msg("message does not name pid %s: '%s'", pid, e.msg);
	assert_null(strchr(e.msg, '\n'));
	if (dt > 2.5)
		fail_msg("gave up after %.3f s with a 1 s timeout", dt);

	/* Timeout 0: one try. */
	ts_err_clear(&e);
	t0 = now_s();
	assert_int_equal(ts_store_lock(&b, 0, &e), TS_ERR_BUSY);
	assert_true(now_s() - t0 < 0.5);

	/* After unlock the other one gets it at once. */
	ts_store_unlock(&a);
	assert_false(a.locked);
	ts_err_clear(&e);
	t0 = now_s();
	if (ts_store_lock(&b, 1, &e) != TS_OK)
		fail_msg("after unlock: %s", e.msg);
	assert_true(now_s() - t0 < 0.5);
	assert_true(b.locked);
	/* ... and now a waits for b. */
	assert_int_equal(ts_store_lock(&a, 0, &e), TS_ERR_BUSY);

	/* Closing releases the lock too. */
	ts_store_close(&b);
	if (ts_store_lock(&a, 0, &e) != TS_OK)
		fail_msg("after close: %s", e.msg);
	ts_store_close(&a);
}

/* A waiter gives up only after the whole timeout.  Started just before a
 * whole second of CLOCK_MONOTONIC, so that a wait measured in whole seconds
 * (tv_sec differences) gives up after a few ms instead of 1 s. */
static void test_lock_waits_whole_timeout(void **state)
{
	fx *x = *state;
	ts_store a, b;
	ts_err e;
	struct timespec t;
	double t0, dt;
	int round;

	open_store(x, &a);
	open_store(x, &b);
	lock_store(&a);
	for (round = 0; round < 2; round++) {
		/* Wait for the fraction of the second to be in [0.90, 0.97). */
		for (;;) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			if (t.tv_nsec >= 900000000L && t.tv_nsec < 970000000L)
				break;
			struct timespec nap = { 0, 5000000L };
			nanosleep(&nap, NULL);
		}
		ts_err_clear(&e);
		t0 = now_s();
		assert_int_equal(ts_store_lock(&b, 1, &e), TS_ERR_BUSY);
		dt = now_s() - t0;
		if (dt < 0.9 || dt > 2.5)
			fail_msg("lock_timeout 1 s: gave up after %.3f s", dt);
	}
	ts_store_close(&b);
	ts_store_close(&a);
}

/* Leftovers of a writer that died are removed by the next lock; complete
 * snapshots are not touched. */
static void test_leftovers(void **state)
{
	fx *x = *state;
	ts_store s;
	char p[TBUF], text[64];
	struct stat before, after;
	struct timespec inst = { 1600000000, 0 };

	open_store(x, &s);
	lock_store(&s);
	make_snap(&s, "snap1", "kept", &inst);
	ts_store_unlock(&s);

	tu_fmt(p, sizeof(p), "%s/.tmp-123-4-5", x->store);
	assert_int_equal(mkdir(p, 0700), 0);
	tu_fmt(p, sizeof(p), "%s/.tmp-123-4-5/tree", x->store);
	assert_int_equal(mkdir(p, 0700), 0);
	tu_fmt(p, sizeof(p), "%s/.tmp-123-4-5/tree/x", x->store);
	tu_put_file(p, "partial");
	tu_fmt(p, sizeof(p), "%s/.tmp-123-4-5/tree/ro", x->store);
	assert_int_equal(mkdir(p, 0700), 0);
	tu_fmt(p, sizeof(p), "%s/.tmp-123-4-5/tree/ro/f", x->store);
	tu_put_file(p, "r");
	assert_int_equal(chmod(p, 0444), 0);
	tu_fmt(p, sizeof(p), "%s/.tmp-123-4-5/tree/ro", x->store);
	assert_int_equal(chmod(p, 0555), 0);
	tu_fmt(p, sizeof(p), "%s/.del-9", x->store);
	assert_int_equal(mkdir(p, 0700), 0);
	tu_fmt(p, sizeof(p), "%s/.del-9/y", x->store);
	tu_put_file(p, "dying");

	tu_fmt(p, sizeof(p), "%s/snap1/tree/f", x->store);
	assert_int_equal(stat(p, &before), 0);

	lock_store(&s);
	assert_int_equal(tu_count_prefix(x->store, ".tmp-"), 0);
	assert_int_equal(tu_count_prefix(x->store, ".del-"), 0);
	assert_int_equal(stat(p, &after), 0);
	assert_int_equal(before.st_ino, after.st_ino);
	assert_int_equal(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
	get_file(p, text, sizeof(text));
	assert_string_equal(text, "kept");
	tu_fmt(p, sizeof(p), "%s/snap1/manifest", x->store);
	assert_true(tu_exists(p));
	assert_true(ts_store_exists(&s, "snap1"));
	tu_fmt(p, sizeof(p), "%s/.lock", x->store);
	assert_true(tu_exists(p));
	ts_store_close(&s);
}

/* ---- begin, commit, list ------------------------------------------------ */

static void assert_mtime(const char *path, const struct timespec *want)
{
	struct stat st;

	assert_int_equal(lstat(path, &st), 0);
	if (st.st_mtim.tv_sec != want->tv_sec || st.st_mtim.tv_nsec != want->tv_nsec)
		fail_msg("%s: mtime %lld.%09ld, want %lld.%09ld", path, (long long)st.st_mtim.tv_sec,
		         st.st_mtim.tv_nsec, (long long)want->tv_sec, want->tv_nsec);
}

static void test_begin_commit_list(void **state)
{
	fx *x = *state;
	ts_store s;
	ts_store_tmp t;
	ts_store_snap *v;
	size_t n;
	ts_err e;
	char p[TBUF], text[64];
	struct stat st;
	struct timespec t_new = { 1700000000, 123456789 }, t_old = { 1500000000, 5 },
	                t_mid = { 1600000000, 999999999 };

	open_store(x, &s);
	lock_store(&s);

	/* Empty store: empty list. */
	ts_err_clear(&e);
	assert_int_equal(ts_store_list(&s, &v, &n, &e), TS_OK);
	assert_int_equal(n, 0);
	ts_store_list_free(v, n);

	/* begin: a private directory with tree/, not visible as a snapshot. */
	ts_err_clear(&e);
	if (ts_store_begin(&s, "first", &t, &e) != TS_OK)
		fail_msg("%s", e.msg);
	assert_string_equal(t.name, "first");
	assert_non_null(t.dir);
	assert_true(!strncmp(t.dir, ".tmp-", 5));
	assert_true(t.dirfd >= 0);
	assert_true(t.treefd >= 0);
	assert_int_equal(fstat(t.treefd, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	tu_fmt(p, sizeof(p), "%s/%s/tree", x->store, t.dir);
	assert_true(tu_exists(p));
	assert_false(ts_store_exists(&s, "first"));
	assert_false(ts_store_exists(&s, t.dir));
	assert_int_equal(ts_store_list(&s, &v, &n, &e), TS_OK);
	assert_int_equal(n, 0);
	ts_store_list_free(v, n);

	{
		int fd = openat(t.treefd, "file", O_WRONLY | O_CREAT | O_EXCL, 0644);

		assert_true(fd >= 0);
		assert_int_equal(write(fd, "content", 7), 7);
		assert_int_equal(close(fd), 0);
	}
	ts_err_clear(&e);
	if (ts_store_commit(&s, &t, &t_new, &e) != TS_OK)
		fail_msg("%s", e.msg);
	assert_int_equal(t.dirfd, -1);
	assert_int_equal(t.treefd, -1);
	assert_null(t.dir);
	assert_null(t.name);
	tu_fmt(p, sizeof(p), "%s/first", x->store);
	assert_mtime(p, &t_new);
	tu_fmt(p, sizeof(p), "%s/first/tree/file", x->store);
	get_file(p, text, sizeof(text));
	assert_string_equal(text, "content");
	assert_true(ts_store_exists(&s, "first"));
	assert_int_equal(tu_count_prefix(x->store, ".tmp-"), 0);

	/* A later-created snapshot with an older instant lists first. */
	make_snap(&s, "second", "2", &t_old);
	tu_fmt(p, sizeof(p), "%s/second", x->store);
	assert_mtime(p, &t_old);
	make_snap(&s, "a-third", "3", &t_mid);
	/* Ties go by name. */
	make_snap(&s, "tie-b", "b", &t_mid);

	/* Not snapshots: dot names, files, leftovers. */
	tu_fmt(p, sizeof(p), "%s/.hidden", x->store);
	assert_int_equal(mkdir(p, 0700), 0);
	tu_fmt(p, sizeof(p), "%s/plainfile", x->store);
	tu_put_file(p, "x");

	ts_err_clear(&e);
	assert_int_equal(ts_store_list(&s, &v, &n, &e), TS_OK);
	assert_int_equal(n, 4);
	assert_string_equal(v[0].name, "second");
	assert_int_equal(v[0].time.tv_sec, t_old.tv_sec);
	assert_int_equal(v[0].time.tv_nsec, t_old.tv_nsec);
	assert_string_equal(v[1].name, "a-third");
	assert_int_equal(v[1].time.tv_sec, t_mid.tv_sec);
	assert_int_equal(v[1].time.tv_nsec, t_mid.tv_nsec);
	assert_string_equal(v[2].name, "tie-b");
	assert_string_equal(v[3].name, "first");
	assert_int_equal(v[3].time.tv_sec, t_new.tv_sec);
	assert_int_equal(v[3].time.tv_nsec, t_new.tv_nsec);
	ts_store_list_free(v, n);
	assert_false(ts_store_exists(&s, "plainfile"));
	assert_false(ts_store_exists(&s, ".hidden"));
	assert_false(ts_store_exists(&s, "nothing"));

	/* Listing needs no lock. */
	ts_store_unlock(&s);
	assert_int_equal(ts_store_list(&s, &v, &n, &e), TS_OK);
	assert_int_equal(n, 4);
	ts_store_list_free(v, n);
	ts_store_close(&s);
}

/* Two snapshots begun under the same name get distinct private dirs. */
static void test_begin_twice(void **state)
{
	fx *x = *state;
	ts_store s;
	ts_store_tmp t1, t2;
	ts_err e;

	open_store(x, &s);
	lock_store(&s);
	assert_int_equal(ts_store_begin(&s, "n", &t1, &e), TS_OK);
	assert_int_equal(ts_store_begin(&s, "n", &t2, &e), TS_OK);
	assert_string_not_equal(t1.dir, t2.dir);
	assert_int_equal(tu_count_prefix(x->store, ".tmp-"), 2);
	ts_store_abort(&s, &t1);
	ts_store_abort(&s, &t2);
	assert_int_equal(tu_count_prefix(x->store, ".tmp-"), 0);
	ts_store_close(&s);
}

static void test_commit_exists(void **state)
{
	fx *x = *state;
	ts_store s;
	ts_store_tmp t;
	ts_err e;
	ts_err_code rc;
	char p[TBUF], text[64];
	struct timespec t1 = { 1600000000, 1 }, t2 = { 1700000000, 2 };
	ts_store_snap *v;
	size_t n;

	open_store(x, &s);
	lock_store(&s);
	make_snap(&s, "taken", "original", &t1);

	ts_err_clear(&e);
	assert_int_equal(ts_store_begin(&s, "taken", &t, &e), TS_OK);
	{
		int fd = openat(t.treefd, "f", O_WRONLY | O_CREAT | O_EXCL, 0644);

		assert_true(fd >= 0);
		assert_int_equal(write(fd, "intruder", 8), 8);
		assert_int_equal(close(fd), 0);
	}
	rc = ts_store_commit(&s, &t, &t2, &e);
	assert_int_equal(rc, TS_ERR_EXISTS);
	assert_int_equal(e.code, TS_ERR_EXISTS);
	assert_true(e.msg[0] != '\0');
	assert_int_equal(tu_count_prefix(x->store, ".tmp-"), 0);
	/* The existing snapshot is as it was. */
	tu_fmt(p, sizeof(p), "%s/taken/tree/f", x->store);
	get_file(p, text, sizeof(text));
	assert_string_equal(text, "original");
	tu_fmt(p, sizeof(p), "%s/taken", x->store);
	assert_mtime(p, &t1);
	assert_int_equal(ts_store_list(&s, &v, &n, &e), TS_OK);
	assert_int_equal(n, 1);
	ts_store_list_free(v, n);
	ts_store_close(&s);
}

static void test_abort(void **state)
{
	fx *x = *state;
	ts_store s;
	ts_store_tmp t;
	ts_err e;
	ts_store_snap *v;
	size_t n;
	int fd;

	open_store(x, &s);
	lock_store(&s);
	ts_err_clear(&e);
	assert_int_equal(ts_store_begin(&s, "gone", &t, &e), TS_OK);
	/* Some content, read-only directories included. */
	assert_int_equal(mkdirat(t.treefd, "d", 0755), 0);
	assert_int_equal(mkdirat(t.treefd, "d/e", 0755), 0);
	fd = openat(t.treefd, "d/e/f", O_WRONLY | O_CREAT | O_EXCL, 0444);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	assert_int_equal(close(fd), 0);
	assert_int_equal(symlinkat("/", t.treefd, "d/link"), 0);
	assert_int_equal(fchmodat(t.treefd, "d/e", 0555, 0), 0);
	assert_int_equal(fchmodat(t.treefd, "d", 0555, 0), 0);
	fd = openat(t.dirfd, "manifest", O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(close(fd), 0);

	ts_store_abort(&s, &t);
	assert_int_equal(tu_count_prefix(x->store, ".tmp-"), 0);
	assert_false(ts_store_exists(&s, "gone"));
	assert_int_equal(t.dirfd, -1);
	assert_int_equal(t.treefd, -1);
	assert_null(t.dir);
	assert_null(t.name);
	assert_int_equal(ts_store_list(&s, &v, &n, &e), TS_OK);
	assert_int_equal(n, 0);
	ts_store_list_free(v, n);
	ts_store_close(&s);
}

/* ---- remove, rename ------------------------------------------------------- */

static void test_remove(void **state)
{
	fx *x = *state;
	ts_store s;
	ts_err e;
	ts_err_code rc;
	char p[TBUF], text[64];
	struct timespec t1 = { 1600000000, 0 }, t2 = { 1600000001, 0 };

	open_store(x, &s);
	lock_store(&s);
	make_snap(&s, "old", "o", &t1);
	make_snap(&s, "keep", "k", &t2);
	/* Read-only parts do not stop the removal. */
	tu_fmt(p, sizeof(p), "%s/old/tree/f", x->store);
	assert_int_equal(chmod(p, 0444), 0);
	tu_fmt(p, sizeof(p), "%s/old/tree", x->store);
	assert_int_equal(chmod(p, 0555), 0);

	ts_err_clear(&e);
	if (ts_store_remove(&s, "old", &e) != TS_OK)
		fail_msg("%s", e.msg);
	tu_fmt(p, sizeof(p), "%s/old", x->store);
	assert_false(tu_exists(p));
	assert_false(ts_store_exists(&s, "old"));
	assert_int_equal(tu_count_prefix(x->store, ".del-"), 0);
	tu_fmt(p, sizeof(p), "%s/keep/tree/f", x->store);
	get_file(p, text, sizeof(text));
	assert_string_equal(text, "k");

	ts_err_clear(&e);
	rc = ts_store_remove(&s, "old", &e);
	assert_int_equal(rc, TS_ERR_NOTFOUND);
	assert_int_equal(e.code, TS_ERR_NOTFOUND);
	ts_err_clear(&e);
	assert_int_equal(ts_store_remove(&s, "never", &e), TS_ERR_NOTFOUND);

	/* The store's own files are not snapshots. */
	ts_err_clear(&e);
	assert_int_not_equal(ts_store_remove(&s, ".lock", &e), TS_OK);
	tu_fmt(p, sizeof(p), "%s/.lock", x->store);
	assert_true(tu_exists(p));
	assert_int_not_equal(ts_store_remove(&s, ".", &e), TS_OK);
	assert_int_not_equal(ts_store_remove(&s, "..", &e), TS_OK);
	assert_true(tu_exists(x->store));
	assert_true(ts_store_exists(&s, "keep"));
	ts_store_close(&s);
}

static void test_rename(void **state)
{
	fx *x = *state;
	ts_store s;
	ts_err e;
	ts_err_code rc;
	char p[TBUF], text[64];
	struct timespec t1 = { 1600000000, 11 }, t2 = { 1600000002, 22 };

	open_store(x, &s);
	lock_store(&s);
	make_snap(&s, "a", "A", &t1);
	make_snap(&s, "b", "B", &t2);

	ts_err_clear(&e);
	if (ts_store_rename(&s, "a", "c", &e) != TS_OK)
		fail_msg("%s", e.msg);
	assert_false(ts_store_exists(&s, "a"));
	assert_true(ts_store_exists(&s, "c"));
	tu_fmt(p, sizeof(p), "%s/c/tree/f", x->store);
	get_file(p, text, sizeof(text));
	assert_string_equal(text, "A");
	tu_fmt(p, sizeof(p), "%s/c", x->store);
	assert_mtime(p, &t1); /* the instant travels with it */

	/* Never onto an existing snapshot. */
	ts_err_clear(&e);
	rc = ts_store_rename(&s, "c", "b", &e);
	assert_int_equal(rc, TS_ERR_EXISTS);
	assert_int_equal(e.code, TS_ERR_EXISTS);
	tu_fmt(p, sizeof(p), "%s/c/tree/f", x->store);
	get_file(p, text, sizeof(text));
	assert_string_equal(text, "A");
	tu_fmt(p, sizeof(p), "%s/b/tree/f", x->store);
	get_file(p, text, sizeof(text));
	assert_string_equal(text, "B");
	tu_fmt(p, sizeof(p), "%s/b", x->store);
	assert_mtime(p, &t2);

	/* Missing source. */
	ts_err_clear(&e);
	assert_int_equal(ts_store_rename(&s, "a", "d", &e), TS_ERR_NOTFOUND);
	assert_false(ts_store_exists(&s, "d"));

	/* Dot names are not snapshots, even when they are directories. */
	tu_fmt(p, sizeof(p), "%s/.tmp-77", x->store);
	assert_int_equal(mkdir(p, 0700), 0);
	tu_fmt(p, sizeof(p), "%s/.x", x->store);
	assert_int_equal(mkdir(p, 0700), 0);
	assert_false(ts_store_exists(&s, ".tmp-77"));
	assert_false(ts_store_exists(&s, ".x"));
	assert_false(ts_store_exists(&s, ".lock"));
	assert_false(ts_store_exists(&s, "."));
	assert_false(ts_store_exists(&s, ".."));
	ts_err_clear(&e);
	assert_int_not_equal(ts_store_rename(&s, ".x", "y", &e), TS_OK);
	assert_false(ts_store_exists(&s, "y"));
	tu_fmt(p, sizeof(p), "%s/.x", x->store);
	assert_true(tu_exists(p));
	/* A path through a snapshot is not a snapshot either. */
	assert_false(ts_store_exists(&s, "c/tree"));
	ts_store_close(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_create, stfx_setup, stfx_teardown),
		cmocka_unit_test_setup_teardown(test_lock_busy, stfx_setup, stfx_teardown),
		cmocka_unit_test_setup_teardown(test_lock_waits_whole_timeout, stfx_setup, stfx_teardown),
		cmocka_unit_test_setup_teardown(test_leftovers, stfx_setup, stfx_teardown),
		cmocka_unit_test_setup_teardown(test_begin_commit_list, stfx_setup, stfx_teardown),
		cmocka_unit_test_setup_teardown(test_begin_twice, stfx_setup, stfx_teardown),
		cmocka_unit_test_setup_teardown(test_commit_exists, stfx_setup, stfx_teardown),
		cmocka_unit_test_setup_teardown(test_abort, stfx_setup, stfx_teardown),
		cmocka_unit_test_setup_teardown(test_remove, stfx_setup, stfx_teardown),
		cmocka_unit_test_setup_teardown(test_rename, stfx_setup, stfx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
