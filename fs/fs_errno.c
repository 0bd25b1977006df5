/* fs_errno.c - the one translation of engine errors into errno values. */
#include <errno.h>
#include "fs.h"

int fs_errno(const ts_err *e)
{
	switch (e->code) {
	case TS_OK:             return 0;
	case TS_ERR_IO:         return e->sys_errno ? e->sys_errno : EIO;
	case TS_ERR_NOMEM:      return ENOMEM;
	case TS_ERR_USAGE:      return EINVAL;
	case TS_ERR_NAME:       return EINVAL;
	case TS_ERR_UNSUPPORTED:return ENOTSUP;
	case TS_ERR_EXISTS:     return EEXIST;
	case TS_ERR_NOTFOUND:   return ENOENT;
	case TS_ERR_BUSY:       return EBUSY;
	case TS_ERR_NOSPC:      return ENOSPC;
	case TS_ERR_PERM:       return EACCES;
	case TS_ERR_CANCELLED:  return EINTR;
	case TS_ERR_NOTENV:
	case TS_ERR_CONFIG:
	case TS_ERR_DB:
	case TS_ERR_CORRUPT:
	default:                return EIO;
	}
}
