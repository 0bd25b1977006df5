/* test_events.c - the store's short log of problems (store/events.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "store/events.h"
#include "tutil.h"

typedef struct lines {
	char v[64][128];
	size_t n;
} lines;

static void keep(void *arg, const char *line)
{
	lines *l = arg;
	if (l->n < 64)
		snprintf(l->v[l->n++], sizeof l->v[0], "%s", line);
}

/* "TIME LEVEL MESSAGE": the message part of a line. */
static const char *msg_of(const char *line)
{
	const char *sp = strchr(line, ' ');
	return sp ? strchr(sp + 1, ' ') + 1 : "";
}

static void test_append_and_tail(void **state)
{
	char top[PATH_MAX];
	lines l = { .n = 0 };
	struct stat st;
	int dfd;
	(void)state;

	tu_tmpdir("events", top);
	dfd = open(top, O_RDONLY | O_DIRECTORY);
	assert_true(dfd >= 0);
	assert_int_equal(ts_events_tail(dfd, 10, keep, &l), 0);   /* none yet */
	ts_events_append(dfd, LOG_ERR, "sealing failed: x");
	ts_events_append(dfd, LOG_WARNING, "stage: y");
	ts_events_append(dfd, LOG_NOTICE, "mkdir /.h refused: z");
	assert_int_equal(ts_events_tail(dfd, 10, keep, &l), 3);
	assert_non_null(strstr(l.v[0], " error sealing failed: x"));
	assert_non_null(strstr(l.v[1], " warning stage: y"));
	assert_non_null(strstr(l.v[2], " notice mkdir /.h refused: z"));
	assert_int_equal(l.v[0][10], 'T');   /* ISO 8601, local time with its offset */
	assert_int_equal(fstatat(dfd, TS_EVENTS_FILE, &st, 0), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* Only the last two. */
	l.n = 0;
	assert_int_equal(ts_events_tail(dfd, 2, keep, &l), 2);
	assert_string_equal(msg_of(l.v[0]), "stage: y");
	assert_string_equal(msg_of(l.v[1]), "mkdir /.h refused: z");
	close(dfd);
	tu_rm_rf(top);
}

/* Past TS_EVENTS_MAX the file becomes .events.1 and a new one starts: the
 * tail reads across both, in order, and at most twice the limit is kept. */
static void test_rotation(void **state)
{
	char top[PATH_MAX], msg[200];
	lines l = { .n = 0 };
	struct stat a, b;
	int dfd;
	size_t n = 3 * TS_EVENTS_MAX / 150;
	(void)state;

	tu_tmpdir("events", top);
	dfd = open(top, O_RDONLY | O_DIRECTORY);
	for (size_t i = 0; i < n; i++) {
		snprintf(msg, sizeof msg, "event %06zu %0100d", i, 0);
		ts_events_append(dfd, LOG_NOTICE, msg);
	}
	assert_int_equal(fstatat(dfd, TS_EVENTS_FILE, &a, 0), 0);
	assert_int_equal(fstatat(dfd, TS_EVENTS_OLD, &b, 0), 0);
	assert_true(a.st_size <= TS_EVENTS_MAX && b.st_size <= TS_EVENTS_MAX);
	assert_int_equal(ts_events_tail(dfd, 5, keep, &l), 5);
	for (size_t i = 0; i < 5; i++) {
		char want[32];
		snprintf(want, sizeof want, "event %06zu ", n - 5 + i);
		assert_memory_equal(msg_of(l.v[i]), want, strlen(want));
	}
	/* A tail longer than the newer file reaches into the older one. */
	l.n = 0;
	size_t in_new = (size_t)a.st_size / (strlen(l.v[0]) + 1);
	assert_int_equal(ts_events_tail(dfd, in_new + 3, keep, &l) > in_new, 1);
	close(dfd);
	tu_rm_rf(top);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append_and_tail),
		cmocka_unit_test(test_rotation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
