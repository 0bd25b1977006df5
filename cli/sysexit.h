/* sysexit.h - the one mapping of engine errors to process exit statuses
 * (sysexits(3)).  Exit statuses are the command line's edge: the commands
 * and, through cli/main.c, the daemon's start-up (fs_main) use it. */
#ifndef TS_CLI_SYSEXIT_H
#define TS_CLI_SYSEXIT_H

#include "base/err.h"

int cli_sysexit(ts_err_code code);

#endif
