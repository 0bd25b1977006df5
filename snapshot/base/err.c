/* err.c - typed errors of the tracsnap engine (see err.h). */
#include "base/err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void ts_err_clear(ts_err *e)
{
	if (!e)
		return;
	e->code = TS_OK;
	e->sys_errno = 0;
	e->msg[0] = '\0';
}

/* The message is one line by contract: a path with a newline in it (they
 * exist) must not split a log line or a JSON field in two. */
static void err_one_line(char *s)
{
	for (; *s; s++)
		if (*s == '\n' || *s == '\r')
			*s = '?';
}

static void err_vformat(ts_err *e, const char *fmt, va_list ap)
{
	int n = vsnprintf(e->msg, sizeof(e->msg), fmt, ap);

	if (n < 0)
		e->msg[0] = '\0';
	err_one_line(e->msg);
}

ts_err_code ts_err_set(ts_err *e, ts_err_code code, const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	if (!e)
		return code;
	e->code = code;
	e->sys_errno = 0;
	va_start(ap, fmt);
	err_vformat(e, fmt, ap);
	va_end(ap);
	/* Callers often report and then look at errno again. */
	errno = saved;
	return code;
}

static ts_err_code err_code_of_errno(int errnum)
{
	switch (errnum) {
	case ENOSPC:
	case EDQUOT:
		return TS_ERR_NOSPC;
	case EEXIST:
		return TS_ERR_EXISTS;
	case ENOENT:
		return TS_ERR_NOTFOUND;
	case EACCES:
	case EPERM:
		return TS_ERR_PERM;
	case ENOMEM:
		return TS_ERR_NOMEM;
	default:
		return TS_ERR_IO;
	}
}

ts_err_code ts_err_sys(ts_err *e, int errnum, const char *fmt, ...)
{
	ts_err_code code = err_code_of_errno(errnum);
	va_list ap;
	int saved = errno;
	char buf[256];
	const char *why;
	size_t len;

	if (!e)
		return code;
	e->code = code;
	e->sys_errno = (code == TS_ERR_IO || code == TS_ERR_NOSPC) ? errnum : 0;
	va_start(ap, fmt);
	err_vformat(e, fmt, ap);
	va_end(ap);
	/* GNU strerror_r: thread-safe, returns the string to use. */
	why = strerror_r(errnum, buf, sizeof(buf));
	len = strlen(e->msg);
	if (len < sizeof(e->msg) - 1)
		snprintf(e->msg + len, sizeof(e->msg) - len, ": %s", why);
	errno = saved;
	return code;
}

const char *ts_err_name(ts_err_code code)
{
	switch (code) {
	case TS_OK:              return "ok";
	case TS_ERR_IO:          return "io";
	case TS_ERR_NOMEM:       return "nomem";
	case TS_ERR_USAGE:       return "usage";
	case TS_ERR_NOTENV:      return "notenv";
	case TS_ERR_CONFIG:      return "config";
	case TS_ERR_UNSUPPORTED: return "unsupported";
	case TS_ERR_EXISTS:      return "exists";
	case TS_ERR_NOTFOUND:    return "notfound";
	case TS_ERR_NAME:        return "name";
	case TS_ERR_BUSY:        return "busy";
	case TS_ERR_NOSPC:       return "nospc";
	case TS_ERR_DB:          return "db";
	case TS_ERR_PERM:        return "perm";
	case TS_ERR_CORRUPT:     return "corrupt";
	case TS_ERR_CANCELLED:   return "cancelled";
	}
	return "unknown";
}
