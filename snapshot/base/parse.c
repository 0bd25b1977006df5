/* parse.c - numbers from command lines and mount options (see parse.h). */
#include "base/parse.h"

#include <errno.h>
#include <stdlib.h>

bool ts_parse_int(const char *text, long lo, long hi, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(text, &end, 10);
	if (end == text || *end || errno || v < lo || v > hi)
		return false;
	*out = (int)v;
	return true;
}

ts_err_code ts_parse_lock_timeout(const char *text, int *out, ts_err *e)
{
	if (ts_parse_int(text, TS_LOCK_TIMEOUT_MIN, TS_LOCK_TIMEOUT_MAX, out))
		return TS_OK;
	return ts_err_set(e, TS_ERR_USAGE, "must be a whole number of seconds from %d to %d",
	                  TS_LOCK_TIMEOUT_MIN, TS_LOCK_TIMEOUT_MAX);
}
