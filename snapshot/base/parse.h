/* parse.h - the one parser of each kind of number given on a command line
 * or as a mount option.
 *
 * They say whether the text is valid and what it means; the wording of the
 * refusal belongs to the edge that names the option (cli/, fs/fs_main.c),
 * which may add e->msg to its own "OPTION VALUE: " prefix.
 */
#ifndef TS_PARSE_H
#define TS_PARSE_H

#include <stdbool.h>
#include "base/err.h"

/* A whole decimal number in [lo, hi] (strtol's syntax: leading blanks and a
 * sign are taken); false for "", "5x", overflow, out of range (out
 * untouched then). */
bool ts_parse_int(const char *text, long lo, long hi, int *out);

/* How long to wait for Trac's database lock and the store's lock: the mount
 * option lock_timeout=, `tracsnap snapshot --lock-timeout` and `tracsnap
 * prune --lock-timeout` (man/tracsnap.1).  TS_ERR_USAGE with the message
 * "must be a whole number of seconds from 1 to 86400" otherwise. */
#define TS_LOCK_TIMEOUT_MIN 1
#define TS_LOCK_TIMEOUT_MAX 86400
#define TS_LOCK_TIMEOUT_DEFAULT 30
ts_err_code ts_parse_lock_timeout(const char *text, int *out, ts_err *e);

#endif
