/* test_pathset.c - a few paths, sorted and each once (base/pathset.h):
 * added in and out of order, twice, as directories of others; found, and
 * nothing else found. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "base/pathset.h"

static void test_sorted_once(void **state)
{
	static const char *const add[] = { "files/b", "files/a", "zz", "files/b", ".", "files/a/x", "files/a" };
	static const char *const want[] = { ".", "files/a", "files/a/x", "files/b", "zz" };
	ts_pathset s = { 0 };

	(void)state;
	for (size_t i = 0; i < sizeof add / sizeof *add; i++)
		assert_true(ts_pathset_add(&s, add[i]));
	assert_int_equal(s.n, 5);
	for (size_t i = 0; i < s.n; i++)
		assert_string_equal(s.v[i], want[i]);
	for (size_t i = 0; i < s.n; i++)
		assert_true(ts_pathset_has(&s, want[i]));
	assert_false(ts_pathset_has(&s, "files"));
	assert_false(ts_pathset_has(&s, "files/c"));
	assert_false(ts_pathset_has(&s, "a"));
	assert_false(ts_pathset_has(&s, "zzz"));
	ts_pathset_free(&s);
	assert_int_equal(s.n, 0);
	assert_false(ts_pathset_has(&s, "."));
}

static void test_dir_of(void **state)
{
	ts_pathset s = { 0 };

	(void)state;
	assert_true(ts_pathset_add_dir_of(&s, "files/attachments/ticket/1/a.txt"));
	assert_true(ts_pathset_add_dir_of(&s, "files/attachments/ticket/1/b.txt"));
	assert_true(ts_pathset_add_dir_of(&s, "VERSION"));
	assert_int_equal(s.n, 2);
	assert_string_equal(s.v[0], ".");
	assert_string_equal(s.v[1], "files/attachments/ticket/1");
	ts_pathset_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sorted_once),
		cmocka_unit_test(test_dir_of),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
