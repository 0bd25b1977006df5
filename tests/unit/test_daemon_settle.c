/* test_daemon_settle.c - when the stager refreshes the stage after changes
 * (fs/daemon/daemon_settle.h): quiet time, files still open, the longest
 * wait, spacing after a refresh, a busy store. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "daemon/daemon_settle.h"

static void test_clean_wants_nothing(void **state)
{
	dmn_settle s = { 0 };
	(void)state;
	assert_int_equal(dmn_settle_due(&s, 0), -1);
	assert_int_equal(dmn_settle_due(&s, 3), -1);
}

/* One event: due once it has been quiet for QUIET_MS; each later event
 * pushes it on. */
static void test_quiet(void **state)
{
	dmn_settle s = { 0 };
	(void)state;
	dmn_settle_event(&s, 10000);
	assert_int_equal(dmn_settle_due(&s, 0), 10000 + DMN_SETTLE_QUIET_MS);
	dmn_settle_event(&s, 10020);
	assert_int_equal(s.first, 10000);
	assert_int_equal(dmn_settle_due(&s, 0), 10020 + DMN_SETTLE_QUIET_MS);
}

/* Events without end: the refresh comes MAX_WAIT_MS after the first. */
static void test_max_wait(void **state)
{
	dmn_settle s = { 0 };
	(void)state;
	for (int64_t t = 5000; t < 5000 + 3 * DMN_SETTLE_MAX_WAIT_MS; t += 10)
		dmn_settle_event(&s, t);
	assert_int_equal(dmn_settle_due(&s, 0), 5000 + DMN_SETTLE_MAX_WAIT_MS);
}

/* A file created and not closed yet: wait for it (up to MAX_WAIT_MS). */
static void test_open_files_wait(void **state)
{
	dmn_settle s = { 0 };
	(void)state;
	dmn_settle_event(&s, 1000);
	assert_int_equal(dmn_settle_due(&s, 1), 1000 + DMN_SETTLE_MAX_WAIT_MS);
	assert_int_equal(dmn_settle_due(&s, 0), 1000 + DMN_SETTLE_QUIET_MS);
}

/* After a refresh: clean; the next one no sooner than GAP_X times the time
 * it took, at least GAP_MS. */
static void test_spacing(void **state)
{
	dmn_settle s = { 0 };
	(void)state;
	dmn_settle_event(&s, 1000);
	dmn_settle_refreshed(&s, 1040, 3);   /* quick: the floor */
	assert_int_equal(dmn_settle_due(&s, 0), -1);
	dmn_settle_event(&s, 1050);
	assert_int_equal(dmn_settle_due(&s, 0), 1040 + DMN_SETTLE_GAP_MS);
	dmn_settle_refreshed(&s, 2000, 500);   /* slow: 10 times as long */
	dmn_settle_event(&s, 2001);
	assert_int_equal(dmn_settle_due(&s, 0), 2000 + 500 * DMN_SETTLE_GAP_X);
	/* The spacing wins over the longest wait too. */
	assert_int_equal(dmn_settle_due(&s, 1), 2000 + 500 * DMN_SETTLE_GAP_X);
}

static void test_busy_and_rebuilt(void **state)
{
	dmn_settle s = { 0 };
	(void)state;
	dmn_settle_event(&s, 100);
	dmn_settle_busy(&s, 200);
	assert_true(s.dirty);
	assert_int_equal(dmn_settle_due(&s, 0), 200 + DMN_SETTLE_BUSY_MS);
	/* A rebuilt stage is refreshed at once (as far as spacing allows). */
	dmn_settle z = { 0 };
	dmn_settle_rebuilt(&z);
	assert_true(z.dirty);
	assert_true(dmn_settle_due(&z, 0) <= DMN_SETTLE_QUIET_MS);
	/* Built as the environment is: nothing pending is wanted any more,
	 * until the next change. */
	dmn_settle_built_clean(&z);
	assert_int_equal(dmn_settle_due(&z, 0), -1);
	dmn_settle_event(&z, 5000);
	assert_true(dmn_settle_due(&z, 0) >= 5000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clean_wants_nothing),
		cmocka_unit_test(test_quiet),
		cmocka_unit_test(test_max_wait),
		cmocka_unit_test(test_open_files_wait),
		cmocka_unit_test(test_spacing),
		cmocka_unit_test(test_busy_and_rebuilt),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
