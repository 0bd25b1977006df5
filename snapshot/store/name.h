/* name.h - which snapshot names are allowed (doc/contract.md section 2). */
#ifndef TS_NAME_H
#define TS_NAME_H

#include "base/err.h"

/* The one name reserved for the view's symlink to the newest snapshot. */
#define TS_NAME_LATEST "latest"

/* TS_OK, or TS_ERR_NAME with a message such as
 * "snapshot name 'x/y': contains '/'".  Refused: empty, "." and "..", a '/',
 * a leading '.', control characters (bytes < 0x20 and 0x7f), more than 255
 * bytes, and "latest".  Other bytes (UTF-8 or not) are allowed; the message
 * prints refused names with control bytes escaped as \xHH. */
ts_err_code ts_name_check(const char *name, ts_err *e);

#endif
