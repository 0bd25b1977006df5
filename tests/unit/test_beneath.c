/* test_beneath.c - names below a directory fd are reached without following
 * a symlink anywhere on the path, with openat2 and with the fallback walk. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/beneath.h"
#include "tutil.h"

typedef struct bx {
	char top[PATH_MAX];
	int fd;       /* top/env */
} bx;

/* top/env/a/b/file, top/env/link -> a, top/env/a/up -> ../.., top/outside/secret */
static int bx_setup(void **state)
{
	static bx x;
	char p[PATH_MAX];

	tu_tmpdir("beneath", x.top);
	tu_mkdir_in(x.top, "env", 0755);
	tu_mkdir_in(x.top, "env/a", 0755);
	tu_mkdir_in(x.top, "env/a/b", 0755);
	tu_put_in(x.top, "env/a/b/file", "in env\n", 0644);
	tu_mkdir_in(x.top, "outside", 0755);
	tu_put_in(x.top, "outside/secret", "root's\n", 0600);
	tu_fmt(p, sizeof p, "%s/env/link", x.top);
	assert_int_equal(symlink("a", p), 0);
	tu_fmt(p, sizeof p, "%s/env/a/out", x.top);
	assert_int_equal(symlink("../../outside", p), 0);
	tu_fmt(p, sizeof p, "%s/env", x.top);
	x.fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(x.fd >= 0);
	*state = &x;
	return 0;
}

static int bx_teardown(void **state)
{
	bx *x = *state;

	ts_beneath_force_walk(false);
	close(x->fd);
	tu_rm_rf(x->top);
	return 0;
}

#define expect_errno(fd, want) expect_errno_(fd, want, __LINE__)
static void expect_errno_(int fd, int want, int line)
{
	if (fd >= 0)
		close(fd);
	assert_true(fd < 0);
	/* ELOOP and ENOTDIR both mean "a link where a directory was" (beneath.h). */
	if (errno != want && !(want == ELOOP && errno == ENOTDIR))
		fail_msg("line %d: errno %d, want %d", line, errno, want);
}

static void check_all(bx *x)
{
	const char *leaf;
	struct stat st;
	int fd, pfd;

	/* A plain path works, also as a directory and as "." */
	fd = ts_beneath_open(x->fd, "a/b/file", O_RDONLY, 0);
	assert_true(fd >= 0);
	close(fd);
	fd = ts_beneath_open(x->fd, "a/b", O_RDONLY | O_DIRECTORY, 0);
	assert_true(fd >= 0);
	close(fd);
	fd = ts_beneath_open(x->fd, ".", O_RDONLY | O_DIRECTORY, 0);
	assert_true(fd >= 0);
	close(fd);

	/* A symlink in the middle, at the end, or leading out: ELOOP. */
	expect_errno(ts_beneath_open(x->fd, "link/b/file", O_RDONLY, 0), ELOOP);
	expect_errno(ts_beneath_open(x->fd, "link", O_RDONLY, 0), ELOOP);
	expect_errno(ts_beneath_open(x->fd, "a/out/secret", O_RDONLY, 0), ELOOP);
	expect_errno(ts_beneath_open(x->fd, "a/../../outside/secret", O_RDONLY, 0), ELOOP);
	expect_errno(ts_beneath_open(x->fd, "/etc/passwd", O_RDONLY, 0), ELOOP);
	/* A file where a directory is expected. */
	expect_errno(ts_beneath_open(x->fd, "a/b/file/x", O_RDONLY, 0), ENOTDIR);

	/* Creating below a symlinked directory is refused, nothing appears outside. */
	expect_errno(ts_beneath_open(x->fd, "a/out/new", O_WRONLY | O_CREAT | O_EXCL, 0600), ELOOP);
	{
		char p[PATH_MAX];

		tu_fmt(p, sizeof p, "%s/outside/new", x->top);
		assert_false(tu_exists(p));
	}

	/* The link itself can be reached as a link. */
	fd = ts_beneath_open_link(x->fd, "a/out");
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	close(fd);
	expect_errno(ts_beneath_open_link(x->fd, "link/out"), ELOOP);

	/* The parent of a one-component name is dirfd itself. */
	pfd = ts_beneath_parent(x->fd, "a", &leaf);
	assert_int_equal(pfd, x->fd);
	assert_string_equal(leaf, "a");
	ts_beneath_parent_close(x->fd, pfd);
	/* ... of a deeper one, its directory; a link in it fails. */
	pfd = ts_beneath_parent(x->fd, "a/b/file", &leaf);
	assert_true(pfd >= 0 && pfd != x->fd);
	assert_string_equal(leaf, "file");
	assert_int_equal(fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISREG(st.st_mode));
	ts_beneath_parent_close(x->fd, pfd);
	errno = 0;
	assert_int_equal(ts_beneath_parent(x->fd, "link/b", &leaf), -1);
	assert_true(errno == ELOOP || errno == ENOTDIR);
}

static void test_openat2(void **state)
{
	ts_beneath_force_walk(false);
	check_all(*state);
}

static void test_fallback_walk(void **state)
{
	ts_beneath_force_walk(true);
	check_all(*state);
}

static void test_parent_refuses(void **state)
{
	bx *x = *state;
	const char *leaf, *bad[] = { "", ".", "a/", "../x", "a/../b", "/abs", "a//b" };

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		errno = 0;
		if (ts_beneath_parent(x->fd, bad[i], &leaf) != -1)
			fail_msg("'%s' accepted", bad[i]);
		assert_int_equal(errno, EINVAL);
	}
}

/* The cache opens a directory once for consecutive names in it, and a
 * link on the way fails as with ts_beneath_parent. */
static void test_cache(void **state)
{
	bx *x = *state;
	ts_beneath_cache c = TS_BENEATH_CACHE_INIT;
	const char *leaf;
	struct stat st;
	int fd, again;

	fd = ts_beneath_cache_parent(&c, x->fd, "a", &leaf);
	assert_int_equal(fd, x->fd);
	assert_string_equal(leaf, "a");
	fd = ts_beneath_cache_parent(&c, x->fd, "a/b/file", &leaf);
	assert_true(fd >= 0 && fd != x->fd);
	assert_string_equal(leaf, "file");
	assert_int_equal(fstatat(fd, leaf, &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISREG(st.st_mode));
	again = ts_beneath_cache_parent(&c, x->fd, "a/b/other", &leaf);
	assert_int_equal(again, fd);   /* the same directory: not opened again */
	assert_string_equal(leaf, "other");
	fd = ts_beneath_cache_parent(&c, x->fd, "a/out", &leaf);
	assert_true(fd >= 0);
	assert_int_equal(fstatat(fd, leaf, &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISLNK(st.st_mode));
	errno = 0;
	assert_int_equal(ts_beneath_cache_parent(&c, x->fd, "a/out/secret", &leaf), -1);
	assert_true(errno == ELOOP || errno == ENOTDIR);
	errno = 0;
	assert_int_equal(ts_beneath_cache_parent(&c, x->fd, "link/b/file", &leaf), -1);
	assert_true(errno == ELOOP || errno == ENOTDIR);
	ts_beneath_cache_drop(&c);
	assert_int_equal(c.depth, 0);
}

/* Siblings share the ancestors c holds; a path deeper than the levels c
 * keeps still resolves, and a link deep down is still refused. */
static void test_cache_deep(void **state)
{
	bx *x = *state;
	ts_beneath_cache c = TS_BENEATH_CACHE_INIT;
	char rel[PATH_MAX] = "", p[PATH_MAX];
	const char *leaf;
	struct stat st;
	int fd, a_fd;

	tu_mkdir_in(x->top, "env/a/c", 0755);
	fd = ts_beneath_cache_parent(&c, x->fd, "a/b/file", &leaf);
	assert_true(fd >= 0);
	assert_int_equal(c.depth, 2);
	a_fd = c.fds[0];
	fd = ts_beneath_cache_parent(&c, x->fd, "a/c/y", &leaf);
	assert_true(fd >= 0);
	assert_int_equal(c.depth, 2);
	assert_int_equal(c.fds[0], a_fd);   /* "a" kept, only "c" opened */
	assert_string_equal(c.dir, "a/c");
	/* 40 levels below env */
	for (int i = 0; i < 40; i++) {
		size_t n = strlen(rel);
		snprintf(rel + n, sizeof rel - n, "%sd%d", n ? "/" : "", i);
		tu_mkdir_in(x->top, (tu_fmt(p, sizeof p, "env/%s", rel), p), 0755);
	}
	tu_put_in(x->top, (tu_fmt(p, sizeof p, "env/%s/f", rel), p), "deep\n", 0644);
	tu_fmt(p, sizeof p, "%s/f", rel);
	fd = ts_beneath_cache_parent(&c, x->fd, p, &leaf);
	assert_true(fd >= 0);
	assert_int_equal(c.depth, TS_BENEATH_CACHE_DEPTH);
	assert_int_equal(fstatat(fd, leaf, &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISREG(st.st_mode));
	/* a link at level 30 */
	{
		char link[PATH_MAX], lrel[PATH_MAX];
		char *cut = rel;

		for (int i = 0; i < 30; i++)
			cut = strchr(cut, '/') + 1;
		cut[-1] = '\0';
		tu_fmt(link, sizeof link, "%s/env/%s/d30", x->top, rel);
		tu_fmt(lrel, sizeof lrel, "%s/env/%s/d30.real", x->top, rel);
		assert_int_equal(rename(link, lrel), 0);
		tu_fmt(p, sizeof p, "%s/outside", x->top);
		assert_int_equal(symlink(p, link), 0);
		cut[-1] = '/';
	}
	ts_beneath_cache_drop(&c);
	tu_fmt(p, sizeof p, "%s/f", rel);
	errno = 0;
	assert_int_equal(ts_beneath_cache_parent(&c, x->fd, p, &leaf), -1);
	assert_true(errno == ELOOP || errno == ENOTDIR);
	ts_beneath_cache_drop(&c);
	assert_int_equal(c.depth, 0);
}

static void test_procpath(void **state)
{
	char buf[32];

	(void)state;
	assert_int_equal(ts_beneath_procpath(buf, sizeof buf, 7, "name"), 0);
	assert_string_equal(buf, "/proc/self/fd/7/name");
	assert_int_equal(ts_beneath_procpath(buf, 16, 7, "name"), -1);
	assert_int_equal(errno, ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_openat2, bx_setup, bx_teardown),
		cmocka_unit_test_setup_teardown(test_fallback_walk, bx_setup, bx_teardown),
		cmocka_unit_test_setup_teardown(test_parent_refuses, bx_setup, bx_teardown),
		cmocka_unit_test_setup_teardown(test_cache, bx_setup, bx_teardown),
		cmocka_unit_test_setup_teardown(test_cache_deep, bx_setup, bx_teardown),
		cmocka_unit_test(test_procpath),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
