/* test_log.c - one message, one line, no control characters (base/log.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"

/* What ts_log writes to stderr for one message. */
static void logged(const char *msg, char *out, size_t len)
{
	FILE *tmp = tmpfile();
	int saved = dup(STDERR_FILENO);
	size_t n;

	assert_non_null(tmp);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
	ts_log(LOG_INFO, "%s", msg);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	rewind(tmp);
	n = fread(out, 1, len - 1, tmp);
	out[n] = '\0';
	fclose(tmp);
}

static void test_controls(void **state)
{
	char out[256];
	(void)state;

	logged("mkdir /a\nb refused", out, sizeof out);
	assert_string_equal(out, "tracsnap: mkdir /a b refused\n");
	logged("esc \x1b[2J del \x7f bell \a", out, sizeof out);
	assert_string_equal(out, "tracsnap: esc ?[2J del ? bell ?\n");
	/* C1 (U+0085 NEL, U+009B CSI) as UTF-8: both bytes replaced. */
	logged("nel \xc2\x85 csi \xc2\x9b" "2J", out, sizeof out);
	assert_string_equal(out, "tracsnap: nel ?? csi ??2J\n");
	/* Printable UTF-8 is kept: é, U+00A0. */
	logged("caf\xc3\xa9 nbsp\xc2\xa0", out, sizeof out);
	assert_string_equal(out, "tracsnap: caf\xc3\xa9 nbsp\xc2\xa0\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_controls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
