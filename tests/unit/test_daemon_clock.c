/* test_daemon_clock.c - the clock of snapshot names (base/clock.h): the
 * test hook TRACSNAP_TEST_CLOCK_OFFSET the mount tests use to put the
 * daemon's clock where they want it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <time.h>

#include "base/clock.h"

static void test_parse(void **state)
{
	long long v = 42;
	(void)state;
	assert_true(ts_clock_offset_parse("0", &v));
	assert_int_equal(v, 0);
	assert_true(ts_clock_offset_parse("-3600", &v));
	assert_int_equal(v, -3600);
	assert_true(ts_clock_offset_parse("+17", &v));
	assert_int_equal(v, 17);
	v = 42;
	assert_false(ts_clock_offset_parse("", &v));
	assert_false(ts_clock_offset_parse(" 5", &v));
	assert_false(ts_clock_offset_parse("5 ", &v));
	assert_false(ts_clock_offset_parse("5s", &v));
	assert_false(ts_clock_offset_parse("-", &v));
	assert_false(ts_clock_offset_parse("1.5", &v));
	assert_false(ts_clock_offset_parse("99999999999999999999", &v));
	assert_false(ts_clock_offset_parse("4000000000", &v));   /* over 100 years */
	assert_false(ts_clock_offset_parse(NULL, &v));
	assert_int_equal(v, 42);   /* untouched by refusals */
}

/* The variable is read at the first call and kept: later changes do not
 * move the clock (one process, one offset). */
static void test_offset_applied_once(void **state)
{
	(void)state;
	setenv(TS_CLOCK_OFFSET_ENV, "-7200", 1);
	time_t before = time(NULL);
	time_t t = ts_clock_name_time();
	time_t after = time(NULL);
	assert_true(t >= before - 7200 && t <= after - 7200);
	setenv(TS_CLOCK_OFFSET_ENV, "0", 1);
	before = time(NULL);
	t = ts_clock_name_time();
	after = time(NULL);
	assert_true(t >= before - 7200 && t <= after - 7200);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_offset_applied_once),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
