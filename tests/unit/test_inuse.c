/* test_inuse.c - which processes use a path (snapshot/base/inuse.c) and the
 * store's record of its mount points (snapshot/store/mounts.c).
 *
 * Child processes hold a working directory, an open file or a mapping below
 * a directory of a scratch tree; /proc must name them for that prefix and
 * not for a sibling that shares a string prefix (/x/snap vs /x/snap2).  No
 * mount is needed: the names are compared as text. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/inuse.h"
#include "store/mounts.h"
#include "tutil.h"

#define TBUF (PATH_MAX * 2)

typedef enum { HOLD_CWD, HOLD_FD, HOLD_MAP } hold_kind;

typedef struct holder {
	pid_t pid;
} holder;

/* A child that holds path (its cwd, an open fd, or a mapping whose fd it
 * closed) until released. */
static holder hold(const char *path, hold_kind how)
{
	int ready[2];
	holder h;
	char c = 0;

	assert_int_equal(pipe(ready), 0);
	h.pid = fork();
	assert_true(h.pid >= 0);
	if (h.pid == 0) {
		int fd;
		void *m;
		close(ready[0]);
		if (chdir("/") != 0)
			_exit(1);
		if (how == HOLD_CWD && chdir(path) != 0)
			_exit(1);
		if (how != HOLD_CWD) {
			fd = open(path, O_RDONLY);
			if (fd < 0)
				_exit(1);
			if (how == HOLD_MAP) {
				m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
				if (m == MAP_FAILED)
					_exit(1);
				close(fd);
			}
		}
		if (write(ready[1], &c, 1) != 1)
			_exit(1);
		for (;;)
			pause();   /* until release() kills it */
	}
	close(ready[1]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	return h;
}

static void release(holder h)
{
	int status;
	assert_int_equal(kill(h.pid, SIGKILL), 0);
	assert_int_equal(waitpid(h.pid, &status, 0), h.pid);
}

/* Does who name pid? */
static bool names(const char *who, pid_t pid)
{
	char want[32];
	snprintf(want, sizeof want, "pid %ld (", (long)pid);
	return strstr(who, want) != NULL;
}

static void test_path_below(void **state)
{
	(void)state;
	assert_true(ts_inuse_path_below("/mnt/snap", "/mnt/snap"));
	assert_true(ts_inuse_path_below("/mnt/snap/a/b", "/mnt/snap"));
	assert_true(ts_inuse_path_below("/mnt/snap/a", "/mnt/snap/"));
	assert_false(ts_inuse_path_below("/mnt/snap2", "/mnt/snap"));
	assert_false(ts_inuse_path_below("/mnt/sna", "/mnt/snap"));
	assert_false(ts_inuse_path_below("/mnt", "/mnt/snap"));
	assert_false(ts_inuse_path_below("pipe:[123]", "/mnt/snap"));
	assert_true(ts_inuse_path_below("/anything", "/"));
}

/* A cwd, an open file and a mapping below snap are found; none of them for
 * snap2, nor a holder in snap2 for snap. */
static void test_find(void **state)
{
	char top[PATH_MAX], snap[TBUF], snap2[TBUF], file[TBUF], map[TBUF], who[512];
	holder cwd, fd, mp, other;
	char page[4096] = { 1 };
	(void)state;

	tu_tmpdir("inuse", top);
	tu_fmt(snap, sizeof snap, "%s/snap", top);
	tu_fmt(snap2, sizeof snap2, "%s/snap2", top);
	tu_mkdir_in(top, "snap", 0755);
	tu_mkdir_in(top, "snap/d", 0755);
	tu_mkdir_in(top, "snap2", 0755);
	tu_put_in(top, "snap/d/f", "data\n", 0644);
	tu_put_bytes_at(AT_FDCWD, (tu_fmt(map, sizeof map, "%s/snap/m", top), map), page,
	                sizeof page, 0644);
	tu_fmt(file, sizeof file, "%s/snap/d/f", top);

	assert_int_equal(ts_inuse_find(snap, who, sizeof who), 0);
	assert_string_equal(who, "");

	cwd = hold((tu_fmt(file, sizeof file, "%s/snap/d", top), file), HOLD_CWD);
	fd = hold((tu_fmt(file, sizeof file, "%s/snap/d/f", top), file), HOLD_FD);
	mp = hold(map, HOLD_MAP);
	other = hold(snap2, HOLD_CWD);

	assert_int_equal(ts_inuse_find(snap, who, sizeof who), 3);
	assert_true(names(who, cwd.pid));
	assert_true(names(who, fd.pid));
	assert_true(names(who, mp.pid));
	assert_false(names(who, other.pid));
	assert_int_equal(ts_inuse_find(snap2, who, sizeof who), 1);
	assert_true(names(who, other.pid));
	/* Too small a buffer: cut short with ", ...", still counted. */
	assert_int_equal(ts_inuse_find(snap, who, 30), 3);
	assert_non_null(strstr(who, ", ..."));
	assert_true(strlen(who) < 30);
	assert_int_equal(ts_inuse_find(snap, NULL, 0), 3);

	release(cwd);
	release(fd);
	release(mp);
	release(other);
	assert_int_equal(ts_inuse_find(snap, who, sizeof who), 0);
	tu_rm_rf(top);
}

static bool store_has(ts_store *s, const char *name)
{
	return tu_exists_at(s->dirfd, name);
}

/* The record: written 0600 with the mount point, found by ts_mounts_users,
 * removed by unrecord; a record of a dead pid or of a pid now another
 * process is ignored and removed by the next record. */
static void test_mounts(void **state)
{
	char top[PATH_MAX], path[TBUF], mine[64], stale[64], reused[64], rec[TBUF + 32], who[512];
	ts_store s;
	ts_err e;
	holder h;
	struct stat st;
	char *text;
	(void)state;

	ts_err_clear(&e);
	tu_tmpdir("mounts", top);
	tu_fmt(path, sizeof path, "%s/store", top);
	if (ts_store_open(path, true, &s, &e) != TS_OK)
		fail_msg("ts_store_open: %s", e.msg);
	tu_mkdir_in(top, "mnt", 0755);
	tu_mkdir_in(top, "mnt/a", 0755);
	tu_mkdir_in(top, "mnt2", 0755);
	tu_mkdir_in(top, "mnt2/a", 0755);
	tu_fmt(path, sizeof path, "%s/mnt", top);
	assert_int_equal(ts_mounts_record(&s, path, &e), TS_OK);
	tu_fmt(mine, sizeof mine, "%s%ld", TS_MOUNTS_PREFIX, (long)getpid());
	assert_int_equal(fstatat(s.dirfd, mine, &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	tu_fmt(rec, sizeof rec, "%s/store/%s", top, mine);
	text = tu_slurp(rec, NULL);
	assert_int_equal(strncmp(text, path, strlen(path)), 0);
	assert_int_equal(text[strlen(path)], '\n');
	free(text);

	/* Someone in MNT/a: a is in use, b is not. */
	tu_fmt(path, sizeof path, "%s/mnt/a", top);
	h = hold(path, HOLD_CWD);
	assert_int_equal(ts_mounts_users(&s, "a", NULL, who, sizeof who), 1);
	assert_true(names(who, h.pid));
	assert_int_equal(ts_mounts_users(&s, "b", NULL, who, sizeof who), 0);
	assert_int_equal(ts_mounts_users(&s, "a/", NULL, who, sizeof who), 1);
	release(h);

	/* Records of mnt2 by a pid that cannot exist, and by a live pid that
	 * did not write it (its start time differs): both ignored. */
	tu_fmt(path, sizeof path, "%s/mnt2/a", top);
	h = hold(path, HOLD_CWD);
	tu_fmt(stale, sizeof stale, "%s%d", TS_MOUNTS_PREFIX, 2147483647);
	tu_fmt(reused, sizeof reused, "%s%ld", TS_MOUNTS_PREFIX, (long)h.pid);
	tu_fmt(rec, sizeof rec, "%s/mnt2\n1\n", top);
	tu_put_bytes_at(s.dirfd, stale, rec, strlen(rec), 0600);
	tu_put_bytes_at(s.dirfd, reused, rec, strlen(rec), 0600);
	assert_int_equal(ts_mounts_users(&s, "a", NULL, who, sizeof who), 0);
	/* ... but the caller's own mount point is always looked at. */
	tu_fmt(path, sizeof path, "%s/mnt2", top);
	assert_int_equal(ts_mounts_users(&s, "a", path, who, sizeof who), 1);
	release(h);
	assert_true(store_has(&s, stale));
	tu_fmt(path, sizeof path, "%s/mnt", top);
	assert_int_equal(ts_mounts_record(&s, path, &e), TS_OK);
	assert_false(store_has(&s, stale));
	assert_false(store_has(&s, reused));
	assert_true(store_has(&s, mine));

	ts_mounts_unrecord(&s);
	assert_false(store_has(&s, mine));
	ts_store_close(&s);
	tu_rm_rf(top);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_below),
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_mounts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
