/* sysexit.c - engine error -> sysexits(3) status (see sysexit.h). */
#include "sysexit.h"

#include <sysexits.h>

int cli_sysexit(ts_err_code code)
{
	switch (code) {
	case TS_OK:              return EX_OK;
	case TS_ERR_USAGE:
	case TS_ERR_NAME:        return EX_USAGE;
	case TS_ERR_NOTENV:
	case TS_ERR_NOTFOUND:    return EX_NOINPUT;
	case TS_ERR_CONFIG:      return EX_CONFIG;
	case TS_ERR_UNSUPPORTED: return EX_UNAVAILABLE;
	case TS_ERR_EXISTS:
	case TS_ERR_NOSPC:       return EX_CANTCREAT;
	case TS_ERR_BUSY:
	case TS_ERR_CANCELLED:   return EX_TEMPFAIL;
	case TS_ERR_PERM:        return EX_NOPERM;
	case TS_ERR_DB:          return EX_UNAVAILABLE;   /* unreachable, refused: not damage */
	case TS_ERR_CORRUPT:     return EX_DATAERR;
	case TS_ERR_NOMEM:       return EX_OSERR;
	case TS_ERR_IO:
	default:                 return EX_IOERR;
	}
}
