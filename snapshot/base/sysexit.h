/* sysexit.h - the one mapping of engine errors to process exit statuses
 * (sysexits(3)), shared by the daemon's start-up and the commands. */
#ifndef TS_SYSEXIT_H
#define TS_SYSEXIT_H

#include "base/err.h"

int ts_sysexit(ts_err_code code);

#endif
