/* test_trust.c - a store is opened only when no other account could have
 * arranged its path (trust.h).  Runs as root (the tests chown to nobody). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/trust.h"
#include "tutil.h"

#define NOBODY 65534

static char top[PATH_MAX];

static int setup(void **state)
{
	(void)state;
	tu_tmpdir("trust", top);
	tu_mkdir_in(top, "a", 0755);
	tu_mkdir_in(top, "a/store", 0700);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tu_rm_rf(top);
	return 0;
}

static void p_in(char *buf, const char *rel)
{
	tu_fmt(buf, PATH_MAX, "%s/%s", top, rel);
}

static void want_ok(const char *rel)
{
	char p[PATH_MAX];
	ts_err e;
	int fd;

	p_in(p, rel);
	ts_err_clear(&e);
	if (ts_trust_open_dir(p, &fd, &e) != TS_OK)
		fail_msg("%s refused: %s", p, e.msg);
	assert_true(fd >= 0);
	close(fd);
}

/* Refused with TS_ERR_PERM naming the directory bad_rel and why. */
static void want_refused(const char *rel, const char *bad_rel, const char *why)
{
	char p[PATH_MAX], bad[PATH_MAX], want[2 * PATH_MAX];
	ts_err e;
	int fd = 7;

	p_in(p, rel);
	p_in(bad, bad_rel);
	tu_fmt(want, sizeof want, "store %s: %s is %s", p, bad, why);
	ts_err_clear(&e);
	assert_int_equal(ts_trust_open_dir(p, &fd, &e), TS_ERR_PERM);
	assert_int_equal(fd, -1);
	assert_string_equal(e.msg, want);
}

static void test_trusted_path(void **state)
{
	char p[PATH_MAX], l[PATH_MAX];

	(void)state;
	want_ok("a/store");
	/* An administrator's symlink is resolved first, then checked. */
	p_in(p, "a");
	p_in(l, "link");
	assert_int_equal(symlink(p, l), 0);
	want_ok("link/store");
	/* A root-owned sticky directory (as /tmp) may be world-writable. */
	p_in(p, "a");
	assert_int_equal(chmod(p, 01777), 0);
	want_ok("a/store");
}

static void test_untrusted_parent(void **state)
{
	char p[PATH_MAX];

	(void)state;
	p_in(p, "a");
	assert_int_equal(chmod(p, 0775), 0);
	want_refused("a/store", "a", "writable by group or others (mode 0775)");
	assert_int_equal(chmod(p, 0755), 0);
	assert_int_equal(chown(p, NOBODY, NOBODY), 0);
	want_refused("a/store", "a", "owned by uid 65534, neither root nor uid 0");
	/* sticky does not help a directory another account owns */
	assert_int_equal(chmod(p, 01777), 0);
	want_refused("a/store", "a", "owned by uid 65534, neither root nor uid 0");
}

static void test_untrusted_store(void **state)
{
	char p[PATH_MAX];

	(void)state;
	p_in(p, "a/store");
	assert_int_equal(chown(p, NOBODY, NOBODY), 0);
	want_refused("a/store", "a/store", "owned by uid 65534, neither root nor uid 0");
	assert_int_equal(chown(p, 0, 0), 0);
	assert_int_equal(chmod(p, 0770), 0);
	want_refused("a/store", "a/store", "writable by group or others (mode 0770)");
	/* root's sticky directory is fine on the way, not as the store */
	assert_int_equal(chmod(p, 01777), 0);
	want_refused("a/store", "a/store", "writable by group or others");
	tu_put_in(top, "file", "x", 0600);
	{
		ts_err e;
		int fd;

		p_in(p, "file");
		assert_int_equal(ts_trust_open_dir(p, &fd, &e), TS_ERR_PERM);
		assert_non_null(strstr(e.msg, "is not a directory"));
		assert_int_equal(fd, -1);
		p_in(p, "missing");
		assert_int_equal(ts_trust_open_dir(p, &fd, &e), TS_ERR_NOTFOUND);
		assert_non_null(strstr(e.msg, "cannot resolve"));
	}
}

/* The literal form restore uses: no symlink at all, another owner allowed. */
static void test_open_path(void **state)
{
	char p[PATH_MAX], l[PATH_MAX], want[2 * PATH_MAX];
	ts_err e;
	int fd;

	(void)state;
	p_in(p, "a/store");
	assert_int_equal(chown(p, NOBODY, NOBODY), 0);
	assert_int_equal(ts_trust_open_path(p, NOBODY, "restore", &fd, &e), TS_OK);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(ts_trust_open_path(p, 1234, "restore", &fd, &e), TS_ERR_PERM);
	tu_fmt(want, sizeof want, "restore: %s is owned by uid 65534, neither root nor uid 1234", p);
	assert_string_equal(e.msg, want);
	p_in(p, "a");
	p_in(l, "link");
	assert_int_equal(symlink(p, l), 0);
	p_in(p, "link/store");
	assert_int_equal(ts_trust_open_path(p, NOBODY, "restore", &fd, &e), TS_ERR_PERM);
	tu_fmt(want, sizeof want, "restore: %s is a symbolic link", l);
	assert_string_equal(e.msg, want);
	assert_int_equal(fd, -1);
	p_in(p, "a/../a/store");
	assert_int_equal(ts_trust_open_path(p, NOBODY, "restore", &fd, &e), TS_ERR_USAGE);
	assert_int_equal(ts_trust_open_path("rel/path", NOBODY, "restore", &fd, &e), TS_ERR_USAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_trusted_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_untrusted_parent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_untrusted_store, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_path, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
