/* test_daemon_policy.c - the daemon's snapshot policy that needs no store:
 * which names are first-access names at a given time (auto=), the
 * per-period limit on users who may not manage, and who may manage
 * (fs/daemon/daemon_auto.h, fs/daemon/daemon.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/daemon.h"

/* 2026-03-04 05:06:07 UTC; the tests run with TZ=UTC. */
#define T0 ((time_t)1772600767)

static int setup_tz(void **state)
{
	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	return 0;
}

static void parse(dmn_auto *a, const char *spec)
{
	ts_err e;
	memset(a, 0, sizeof *a);
	ts_err_clear(&e);
	assert_int_equal(dmn_auto_parse(a, spec, &e), TS_OK);
}

static void test_parse_default(void **state)
{
	dmn_auto a;
	(void)state;
	parse(&a, DMN_AUTO_DEFAULT);
	assert_int_equal(a.n, 2);
	assert_string_equal(a.fmts[0], "%Y-%m-%d");
	assert_string_equal(a.fmts[1], "%Y-%m-%dT%H");
	dmn_auto_free(&a);
	assert_int_equal(a.n, 0);
}

static void test_parse_too_many(void **state)
{
	dmn_auto a;
	ts_err e;
	(void)state;
	memset(&a, 0, sizeof a);
	ts_err_clear(&e);
	assert_int_equal(dmn_auto_parse(&a, "a:b:c:d:e:f:g:h:i", &e), TS_ERR_USAGE);
	assert_non_null(strstr(e.msg, "at most 8 formats"));
	dmn_auto_free(&a);
	/* Empty pieces are no formats (strtok): "::x" is one. */
	parse(&a, "::x:");
	assert_int_equal(a.n, 1);
	dmn_auto_free(&a);
}

static void test_mask(void **state)
{
	dmn_auto a;
	(void)state;
	parse(&a, DMN_AUTO_DEFAULT);
	assert_int_equal(dmn_auto_mask(&a, "2026-03-04", T0), 1u);
	assert_int_equal(dmn_auto_mask(&a, "2026-03-04T05", T0), 2u);
	/* The previous hour and the next day are not first-access names now. */
	assert_int_equal(dmn_auto_mask(&a, "2026-03-04T04", T0), 0u);
	assert_int_equal(dmn_auto_mask(&a, "2026-03-05", T0), 0u);
	assert_int_equal(dmn_auto_mask(&a, "anything", T0), 0u);
	/* An hour later the hour's name moves on, the day's stays. */
	assert_int_equal(dmn_auto_mask(&a, "2026-03-04T06", T0 + 3600), 2u);
	assert_int_equal(dmn_auto_mask(&a, "2026-03-04", T0 + 3600), 1u);
	dmn_auto_free(&a);
	/* Two formats that give one name: both bits. */
	parse(&a, "%Y:%Y");
	assert_int_equal(dmn_auto_mask(&a, "2026", T0), 3u);
	dmn_auto_free(&a);
}

static void test_names(void **state)
{
	dmn_auto a;
	char buf[DMN_MAX_AUTO][NAME_MAX + 1];
	const char *ptrs[DMN_MAX_AUTO];
	(void)state;
	parse(&a, DMN_AUTO_DEFAULT);
	assert_int_equal(dmn_auto_names(&a, T0, buf, ptrs), 2);
	assert_string_equal(ptrs[0], "2026-03-04");
	assert_string_equal(ptrs[1], "2026-03-04T05");
	dmn_auto_free(&a);
}

/* The per-period limit: once a snapshot was made under this period's name
 * of a format, that name is spent for that format until the period moves
 * on; other formats and other names are not. */
static void test_spent(void **state)
{
	dmn_auto a;
	const char *hour = "2026-03-04T05";
	(void)state;
	parse(&a, DMN_AUTO_DEFAULT);
	unsigned mask = dmn_auto_mask(&a, hour, T0);
	assert_false(dmn_auto_spent(&a, hour, mask));
	dmn_auto_record(&a, hour, mask);
	assert_true(dmn_auto_spent(&a, hour, mask));
	assert_false(dmn_auto_spent(&a, "2026-03-04", dmn_auto_mask(&a, "2026-03-04", T0)));
	/* The next hour: a new name, not spent; the old one is no
	 * first-access name any more (mask 0: never spent, never taken). */
	const char *next = "2026-03-04T06";
	unsigned m2 = dmn_auto_mask(&a, next, T0 + 3600);
	assert_int_equal(m2, 2u);
	assert_false(dmn_auto_spent(&a, next, m2));
	assert_int_equal(dmn_auto_mask(&a, hour, T0 + 3600), 0u);
	dmn_auto_record(&a, next, m2);
	assert_true(dmn_auto_spent(&a, next, m2));
	assert_false(dmn_auto_spent(&a, hour, mask));   /* only the last period is kept */
	dmn_auto_free(&a);
}

static void test_may_manage(void **state)
{
	dmn_managers m = { .owner = 1000, .owner_gid = 1000 };
	gid_t groups[] = { 5, 6, 7 };
	(void)state;
	assert_true(dmn_may_manage(&m, 0, 0, NULL, 0));
	assert_true(dmn_may_manage(&m, 1000, 1, NULL, 0));
	assert_false(dmn_may_manage(&m, 1001, 1000, groups, 3));   /* the owner's group is not enough */
	assert_false(dmn_may_manage_needs_groups(&m, 1001, 1000));
	m.has_group = true;
	m.group = 7;
	assert_true(dmn_may_manage(&m, 1001, 7, NULL, 0));
	assert_false(dmn_may_manage_needs_groups(&m, 1001, 7));
	assert_true(dmn_may_manage_needs_groups(&m, 1001, 8));
	assert_false(dmn_may_manage(&m, 1001, 8, NULL, 0));
	assert_true(dmn_may_manage(&m, 1001, 8, groups, 3));
	assert_false(dmn_may_manage(&m, 1001, 8, groups, 2));
	assert_false(dmn_may_manage_needs_groups(&m, 0, 8));
	assert_false(dmn_may_manage_needs_groups(&m, 1000, 8));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_default),
		cmocka_unit_test(test_parse_too_many),
		cmocka_unit_test(test_mask),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_spent),
		cmocka_unit_test(test_may_manage),
	};

	return cmocka_run_group_tests(tests, setup_tz, NULL);
}
