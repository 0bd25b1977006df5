/* test_daemon_plus.c - the set of directories listed with attributes
 * (fs/daemon/daemon_plus.h): mark, seen, forget (with the probe runs
 * re-placed), growth, and the start-again bound. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "daemon/daemon_plus.h"

static void test_mark_seen_forget(void **state)
{
	dmn_plus p;
	(void)state;
	dmn_plus_init(&p);
	assert_false(dmn_plus_seen(&p, 1, 2));
	dmn_plus_forget(&p, 1, 2);   /* empty: nothing to do */
	dmn_plus_mark(&p, 1, 2);
	dmn_plus_mark(&p, 1, 2);     /* twice: once */
	assert_int_equal(p.n, 1);
	assert_true(dmn_plus_seen(&p, 1, 2));
	assert_false(dmn_plus_seen(&p, 2, 2));
	assert_false(dmn_plus_seen(&p, 1, 3));
	dmn_plus_forget(&p, 1, 2);
	assert_false(dmn_plus_seen(&p, 1, 2));
	assert_int_equal(p.n, 0);
	dmn_plus_free(&p);
}

/* Many keys: the table grows and keeps them all; forgetting every other
 * one keeps the rest findable (the runs after each hole are re-placed). */
static void test_growth_and_holes(void **state)
{
	dmn_plus p;
	const ino_t n = 20000;
	(void)state;
	dmn_plus_init(&p);
	for (ino_t i = 1; i <= n; i++)
		dmn_plus_mark(&p, 7, i);
	assert_int_equal(p.n, n);
	assert_true(p.cap >= 2 * (size_t)n);
	for (ino_t i = 1; i <= n; i += 2)
		dmn_plus_forget(&p, 7, i);
	assert_int_equal(p.n, n / 2);
	for (ino_t i = 1; i <= n; i++)
		assert_int_equal(dmn_plus_seen(&p, 7, i), i % 2 == 0);
	dmn_plus_free(&p);
	assert_null(p.keys);
}

/* Past DMN_PLUS_MAX the set starts again rather than grow without bound:
 * what was marked before is forgotten (only speed depends on it). */
static void test_bound(void **state)
{
	dmn_plus p;
	(void)state;
	dmn_plus_init(&p);
	for (ino_t i = 1; i <= DMN_PLUS_MAX + 1; i++)
		dmn_plus_mark(&p, 3, i);
	assert_true(p.n <= DMN_PLUS_MAX + 1);
	assert_true(p.cap <= 4 * (size_t)DMN_PLUS_MAX);
	assert_false(dmn_plus_seen(&p, 3, 1));
	assert_true(dmn_plus_seen(&p, 3, DMN_PLUS_MAX + 1));
	dmn_plus_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mark_seen_forget),
		cmocka_unit_test(test_growth_and_holes),
		cmocka_unit_test(test_bound),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
