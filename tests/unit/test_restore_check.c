/* test_restore_check.c - restore's copy against the manifest
 * (snapshot/restore/restore_check.c through restore_copy_tree): a tree
 * that matches passes, and a changed byte, a changed size, a missing and an
 * extra entry, and a changed type are each refused with one line naming the
 * snapshot and the path; with force they are counted instead. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/copy.h"
#include "restore/restore_int.h"
#include "store/manifest.h"
#include "store/manifest_stat.h"
#include "tutil.h"

typedef struct fx {
	char top[PATH_MAX];
	char src[PATH_MAX + 8];
	ts_manifest m;
	int sfd;
} fx;

static void add(ts_manifest *m, char type, const char *path, const char *content)
{
	ts_manifest_entry *me = ts_manifest_add(m, type, path);
	unsigned int n;

	assert_non_null(me);
	if (content) {
		me->size = strlen(content);
		assert_int_equal(EVP_Digest(content, me->size, me->sha256, &n, EVP_sha256(), NULL), 1);
	}
}

/* TOP/src: a/, a/one (text "one"), link -> target, two ("two"), and the
 * manifest that matches it. */
static int setup(void **state)
{
	fx *x = calloc(1, sizeof *x);

	tu_tmpdir("restore-check", x->top);
	tu_fmt(x->src, sizeof x->src, "%s/src", x->top);
	tu_mkdir_in(x->top, "src", 0755);
	tu_mkdir_in(x->src, "a", 0755);
	tu_put_in(x->src, "a/one", "one", 0644);
	tu_put_in(x->src, "two", "two", 0644);
	{
		char l[PATH_MAX + 16];
		tu_fmt(l, sizeof l, "%s/link", x->src);
		assert_int_equal(symlink("target", l), 0);
	}
	ts_manifest_init(&x->m);
	add(&x->m, 'd', ".", NULL);
	add(&x->m, 'd', "a", NULL);
	add(&x->m, 'f', "a/one", "one");
	add(&x->m, 'l', "link", "target");
	add(&x->m, 'f', "two", "two");
	ts_manifest_sort(&x->m);
	x->sfd = open(x->src, O_RDONLY | O_DIRECTORY);
	assert_true(x->sfd >= 0);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	fx *x = *state;

	close(x->sfd);
	ts_manifest_free(&x->m);
	tu_rm_rf(x->top);
	free(x);
	return 0;
}

/* Copy src into a fresh TOP/dstN with the check; the code, e's message and
 * out in *o. */
static ts_err_code copy_checked(fx *x, bool force, ts_restore_out *o, ts_err *e)
{
	static int n;
	char dst[PATH_MAX + 16];
	restore_check c;
	ts_err_code rc;
	int dfd;

	tu_fmt(dst, sizeof dst, "%s/dst%d", x->top, n++);
	assert_int_equal(mkdir(dst, 0700), 0);
	dfd = open(dst, O_RDONLY | O_DIRECTORY);
	assert_true(dfd >= 0);
	memset(o, 0, sizeof *o);
	ts_err_clear(e);
	assert_int_equal(restore_check_init(&c, &x->m, "snap", force, o, e), TS_OK);
	rc = restore_copy_tree(x->sfd, dfd, x->src, NULL, &c, NULL, o, e);
	if (rc == TS_OK)
		rc = restore_check_missing(&c, NULL, e);
	restore_check_free(&c);
	ts_copy_thread_done();
	close(dfd);
	return rc;
}

static void test_matching_tree_passes(void **state)
{
	fx *x = *state;
	ts_restore_out o;
	ts_err e;

	assert_int_equal(copy_checked(x, false, &o, &e), TS_OK);
	assert_int_equal(o.files, 3);
	assert_int_equal(o.ndamaged, 0);
}

static void expect_damage(fx *x, const char *line)
{
	ts_restore_out o;
	ts_err e;

	assert_int_equal(copy_checked(x, false, &o, &e), TS_ERR_CORRUPT);
	assert_string_equal(e.msg, line);
	assert_int_equal(copy_checked(x, true, &o, &e), TS_OK);
	assert_int_equal(o.ndamaged, 1);
	assert_string_equal(o.damaged, line);
}

static void test_flipped_byte(void **state)
{
	fx *x = *state;

	tu_put_in(x->src, "a/one", "onE", 0644);
	expect_damage(x, "snap/a/one: damaged (content differs from the manifest); see tracsnap verify --repair");
}

static void test_other_size(void **state)
{
	fx *x = *state;

	tu_put_in(x->src, "two", "three", 0644);
	expect_damage(x, "snap/two: damaged (5 bytes, the manifest says 3); see tracsnap verify --repair");
}

static void test_missing_and_extra(void **state)
{
	fx *x = *state;
	char p[PATH_MAX + 16];

	tu_fmt(p, sizeof p, "%s/two", x->src);
	assert_int_equal(unlink(p), 0);
	expect_damage(x, "snap/two: damaged (missing: the manifest lists a regular file); see tracsnap verify "
	              "--repair");
	tu_put_in(x->src, "two", "two", 0644);
	tu_put_in(x->src, "a/planted", "x", 0644);
	expect_damage(x, "snap/a/planted: damaged (not in the manifest); see tracsnap verify --repair");
}

static void test_link_target_and_type(void **state)
{
	fx *x = *state;
	char p[PATH_MAX + 16];

	tu_fmt(p, sizeof p, "%s/link", x->src);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(symlink("TARGET", p), 0);
	expect_damage(x, "snap/link: damaged (content differs from the manifest); see tracsnap verify --repair");
	assert_int_equal(unlink(p), 0);
	tu_put_in(x->src, "link", "target", 0644);
	expect_damage(x, "snap/link: damaged (a regular file, the manifest says a symlink); see tracsnap verify "
	              "--repair");
}

static void test_no_manifest_checks_nothing(void **state)
{
	fx *x = *state;
	char dst[PATH_MAX + 16];
	restore_check c;
	ts_restore_out o;
	ts_err e;
	int dfd;

	tu_put_in(x->src, "a/one", "changed", 0644);
	tu_fmt(dst, sizeof dst, "%s/unchecked", x->top);
	assert_int_equal(mkdir(dst, 0700), 0);
	dfd = open(dst, O_RDONLY | O_DIRECTORY);
	memset(&o, 0, sizeof o);
	assert_int_equal(restore_check_init(&c, NULL, "snap", false, &o, &e), TS_OK);
	assert_int_equal(restore_copy_tree(x->sfd, dfd, x->src, NULL, &c, NULL, &o, &e), TS_OK);
	assert_int_equal(restore_check_missing(&c, NULL, &e), TS_OK);
	restore_check_free(&c);
	ts_copy_thread_done();
	close(dfd);
	assert_int_equal(o.files, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_matching_tree_passes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flipped_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_and_extra, setup, teardown),
		cmocka_unit_test_setup_teardown(test_link_target_and_type, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_manifest_checks_nothing, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
