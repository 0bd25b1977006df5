/* clock.c - the clock of snapshot names (see clock.h). */
#include "base/clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

static pthread_once_t ts_clock_once = PTHREAD_ONCE_INIT;
static long long ts_clock_offset;

bool ts_clock_offset_parse(const char *text, long long *out)
{
	char *end;
	long long v;

	/* strtoll alone would take leading blanks; the value must be exact. */
	if (!text || !((text[0] >= '0' && text[0] <= '9') ||
	               ((text[0] == '-' || text[0] == '+') && text[1] >= '0' && text[1] <= '9')))
		return false;
	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno || *end || v < -TS_CLOCK_OFFSET_MAX || v > TS_CLOCK_OFFSET_MAX)
		return false;
	*out = v;
	return true;
}

static void ts_clock_read_offset(void)
{
	const char *text = getenv(TS_CLOCK_OFFSET_ENV);
	long long v;

	if (!text)
		return;
	if (ts_clock_offset_parse(text, &v))
		ts_clock_offset = v;
	else
		ts_log(LOG_WARNING, "%s=%s: not a whole number of seconds; ignored",
		       TS_CLOCK_OFFSET_ENV, text);
}

time_t ts_clock_name_time(void)
{
	pthread_once(&ts_clock_once, ts_clock_read_offset);
	return time(NULL) + (time_t)ts_clock_offset;
}

void ts_clock_iso(time_t t, char *out, size_t len)
{
	struct tm tm;
	size_t n;

	localtime_r(&t, &tm);
	n = strftime(out, len, "%Y-%m-%dT%H:%M:%S%z", &tm);
	if (n >= 5 && n + 2 <= len) {
		memmove(out + n - 1, out + n - 2, 3);   /* "+0100" -> "+01:00" */
		out[n - 2] = ':';
	}
}
