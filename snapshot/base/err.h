/* err.h - typed errors of the tracsnap engine.
 *
 * The engine never returns an errno or prints: every failing function fills a
 * caller-owned struct ts_err with a code and one human line (naming the path or
 * setting and the cause) and returns the code.  Front ends translate the code at
 * their edge: fs/ to an errno, cli/ to a sysexits(3) status.
 */
#ifndef TS_ERR_H
#define TS_ERR_H

#include <stdarg.h>

typedef enum ts_err_code {
	TS_OK = 0,
	TS_ERR_IO,          /* a system call failed (sys_errno says which) */
	TS_ERR_NOMEM,
	TS_ERR_USAGE,       /* bad command-line argument or option value */
	TS_ERR_NOTENV,      /* not a Trac environment */
	TS_ERR_CONFIG,      /* trac.ini or its [trac] database value is wrong */
	TS_ERR_UNSUPPORTED, /* understood but not supported (database scheme) */
	TS_ERR_EXISTS,      /* snapshot name taken */
	TS_ERR_NOTFOUND,    /* snapshot or path does not exist */
	TS_ERR_NAME,        /* snapshot name not allowed */
	TS_ERR_BUSY,        /* a lock could not be taken in time */
	TS_ERR_NOSPC,       /* store full */
	TS_ERR_DB,          /* the database refused or failed */
	TS_ERR_PERM,        /* caller not allowed */
	TS_ERR_CORRUPT,     /* data does not match what was recorded */
	TS_ERR_CANCELLED,   /* stopped on request (signal, unmount) */
} ts_err_code;

/* Size of the message: a path near PATH_MAX plus a sentence. */
#define TS_ERR_MSG_MAX 4608

typedef struct ts_err {
	ts_err_code code;
	int sys_errno;              /* errno behind TS_ERR_IO/NOSPC, else 0 */
	char msg[TS_ERR_MSG_MAX];   /* one line, no "tracsnap: " prefix, no newline */
} ts_err;

/* Reset to TS_OK with an empty message. */
void ts_err_clear(ts_err *e);

/* Record an error and return its code.  e may be NULL (error ignored). */
ts_err_code ts_err_set(ts_err *e, ts_err_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Record a failed system call: the code is derived from errnum (ENOSPC and
 * EDQUOT -> TS_ERR_NOSPC, EEXIST -> TS_ERR_EXISTS, ENOENT -> TS_ERR_NOTFOUND,
 * EACCES/EPERM -> TS_ERR_PERM, ENOMEM -> TS_ERR_NOMEM, else TS_ERR_IO) and
 * ": strerror(errnum)" is appended to the message. */
ts_err_code ts_err_sys(ts_err *e, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Short stable name of a code ("io", "busy", ...), for logs and JSON. */
const char *ts_err_name(ts_err_code code);

#endif
