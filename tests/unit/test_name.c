/* test_name.c - which snapshot names are allowed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "store/name.h"

static void name_ok(const char *name)
{
	ts_err e;

	ts_err_clear(&e);
	if (ts_name_check(name, &e) != TS_OK)
		fail_msg("'%s' refused: %s", name, e.msg);
	assert_int_equal(e.code, TS_OK);
	assert_string_equal(e.msg, "");
}

/* Refused with TS_ERR_NAME and a message containing want. */
static void name_bad(const char *name, const char *want)
{
	ts_err e;

	ts_err_clear(&e);
	if (ts_name_check(name, &e) != TS_ERR_NAME)
		fail_msg("'%s' accepted", name ? name : "(null)");
	assert_int_equal(e.code, TS_ERR_NAME);
	assert_true(strncmp(e.msg, "snapshot name '", 15) == 0);
	assert_null(strchr(e.msg, '\n'));
	if (!strstr(e.msg, want))
		fail_msg("message '%s' lacks '%s'", e.msg, want);
}

static void test_allowed(void **state)
{
	(void)state;
	name_ok("a");
	name_ok("2024-05-01T120000");
	name_ok("before upgrade");           /* spaces */
	name_ok("x.y..z.");                  /* dots, not leading */
	name_ok("-dash");
	name_ok("latest2");
	name_ok("Latest");                   /* only the exact word is reserved */
	name_ok("latest.old");
	name_ok("\xc3\xa9t\xc3\xa9");        /* UTF-8 */
	name_ok("\xff\xfe bad utf8 \x80");   /* not UTF-8: still allowed */
}

static void test_refused(void **state)
{
	(void)state;
	name_bad("", "empty");
	name_bad(NULL, "empty");
	name_bad(".", "not allowed");
	name_bad("..", "not allowed");
	name_bad(".hidden", "starts with '.'");
	name_bad(".tmp-x", "starts with '.'");
	name_bad("x/y", "snapshot name 'x/y': contains '/'");
	name_bad("/", "contains '/'");
	name_bad("a/", "contains '/'");
	name_bad("latest", "reserved");
	name_bad("a\nb", "control character");
	name_bad("a\tb", "control character");
	name_bad("\x01", "control character");
	name_bad("a\x1f", "control character");
	name_bad("del\x7f", "control character");
	name_bad("c1\xc2\x85x", "control character");   /* U+0085, NEL */
	name_bad("\xc2\x9b[2J", "control character");    /* U+009B, CSI */
	name_ok("caf\xc3\xa9");                          /* é: not a control */
	name_ok("nbsp\xc2\xa0");                         /* U+00A0: printable */
}

static void test_control_escaped(void **state)
{
	ts_err e;

	(void)state;
	assert_int_equal(ts_name_check("a\nb\x7f", &e), TS_ERR_NAME);
	assert_non_null(strstr(e.msg, "'a\\x0ab\\x7f'"));
	assert_null(strchr(e.msg, '\n'));
	assert_null(strchr(e.msg, '\x7f'));
	assert_int_equal(ts_name_check("x\xc2\x85", &e), TS_ERR_NAME);
	assert_non_null(strstr(e.msg, "'x\\xc2\\x85'"));
	assert_null(strchr(e.msg, '\x85'));
}

static void test_length(void **state)
{
	char name[300];
	ts_err e;

	(void)state;
	memset(name, 'n', sizeof(name));
	name[255] = '\0';
	name_ok(name);
	name[255] = 'n';
	name[256] = '\0';
	name_bad(name, "longer than 255 bytes");

	/* Bytes, not characters: 127 two-byte characters and one more byte. */
	for (int i = 0; i < 254; i += 2)
		memcpy(name + i, "\xc3\xa9", 2);
	name[254] = 'x';
	name[255] = '\0';
	name_ok(name);
	name[255] = 'y';
	name[256] = '\0';
	name_bad(name, "longer than 255 bytes");

	/* A huge name does not overflow the message. */
	{
		static char huge[100000];

		memset(huge, 'h', sizeof(huge) - 1);
		assert_int_equal(ts_name_check(huge, &e), TS_ERR_NAME);
		assert_true(strlen(e.msg) < 1000);
	}
}

static void test_null_err(void **state)
{
	(void)state;
	/* e may be NULL: the code alone comes back. */
	assert_int_equal(ts_name_check("x/y", NULL), TS_ERR_NAME);
	assert_int_equal(ts_name_check("ok", NULL), TS_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_allowed),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_control_escaped),
		cmocka_unit_test(test_length),
		cmocka_unit_test(test_null_err),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
